//! Reports for people and scripts over HTTP: `GET /` (the report page with charts), `POST /login`
//! (trade a read token for a page session), `GET /v1/reports/{name}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::audit::Note;
use super::auth::{Caller, Role, SESSION_COOKIE, SESSION_TTL, Sessions};
use super::{ApiError, AppState};
use crate::analytics::reports::{Computed, Params, Report};
use crate::render::{chart, html};

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/login", post(login)).route("/v1/reports/{name}", get(one))
}

/// Read access by bearer token or page session: who is reading.
pub(super) fn authorize_read(app: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if let Some(caller) = Sessions::cookie(headers).and_then(|c| app.sessions.caller(c, &app.tokens)) {
        return Ok(caller);
    }
    app.tokens.authorize(headers, Role::Read)
}

#[derive(Deserialize, Default)]
struct Filters {
    #[serde(flatten)]
    filters: crate::analytics::reports::Filters,
    format: Option<String>,
}

impl Filters {
    fn params(&self) -> Result<Params, ApiError> {
        self.filters.parse().map_err(|e| ApiError::bad_request("bad_parameter", e.to_string()))
    }
}

/// Computed reports kept for `report_cache_secs`, so page loads and scrapes do not rescan.
#[derive(Default)]
pub struct ReportCache {
    entries: std::sync::Mutex<HashMap<String, (Instant, Arc<Computed>)>>,
}

impl crate::server::App {
    /// A report over what `caller` may read, from the cache when fresh (cached per tenant).
    pub async fn report(&self, name: &str, params: &Params, caller: &Caller) -> Result<Arc<Computed>, ApiError> {
        let key = format!("{}|{name}|{params:?}", caller.tenant_name());
        let ttl = Duration::from_secs(self.config.report_cache_secs);
        if let Ok(c) = self.report_cache.entries.lock()
            && let Some((at, r)) = c.get(&key)
            && at.elapsed() < ttl
        {
            return Ok(r.clone());
        }
        let r = Arc::new(self.analytics_for(caller).report(name, params).await.map_err(|e| match e {
            crate::error::Error::NotFound(m) => ApiError::NotFound(m),
            crate::error::Error::Invalid(m) => ApiError::bad_request("bad_parameter", m),
            other => ApiError::Internal(other),
        })?);
        if let Ok(mut c) = self.report_cache.entries.lock() {
            c.retain(|_, (at, _)| at.elapsed() < ttl);
            c.insert(key, (Instant::now(), r.clone()));
        }
        Ok(r)
    }
}

async fn index(State(app): State<AppState>, headers: HeaderMap, Query(f): Query<Filters>) -> Response {
    let Ok(caller) = authorize_read(&app, &headers) else {
        return (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html::login(None))
            .into_response();
    };
    let page = |status: StatusCode, body: String| {
        (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
    };
    let look = html::Page { currency: &app.config.currency, links: html::Links::Api };
    // Filters that cannot be applied: the form again, with what is wrong, and no reports.
    let params = match f.filters.parse() {
        Ok(p) => p,
        Err(e) => {
            let shown = Params::default();
            return page(
                StatusCode::BAD_REQUEST,
                html::index(&[], &shown, Some(&choices(&app, &caller, &shown, &[]).await), Some(&e.to_string()), &look),
            );
        }
    };
    let mut out = Vec::new();
    for report in Report::ALL {
        let name = report.name();
        match app.report(name, &params.for_report(report), &caller).await {
            Ok(r) => {
                let svg = chart::for_report(&r, &app.config.currency).unwrap_or_else(|e| {
                    tracing::warn!(report = name, error = %e, "chart failed");
                    None
                });
                out.push(((*r).clone(), svg));
            }
            Err(ApiError::BadRequest { message, .. }) => {
                let c = choices(&app, &caller, &params, &out).await;
                return page(StatusCode::BAD_REQUEST, html::index(&[], &params, Some(&c), Some(&message), &look));
            }
            Err(e) => return e.into_response(),
        }
    }
    let c = choices(&app, &caller, &params, &out).await;
    page(StatusCode::OK, html::index(&out, &params, Some(&c), None, &look))
}

/// The campaigns of the date range (the funnel's, over every campaign) and the experiments
/// defined or seen, for the page's selectors.
async fn choices(
    app: &AppState,
    caller: &Caller,
    params: &Params,
    shown: &[(Computed, Option<String>)],
) -> html::Choices {
    let column = |r: &Computed, name: &str| -> Vec<String> {
        let Some(i) = r.columns.iter().position(|c| c == name) else { return Vec::new() };
        r.rows.iter().filter_map(|row| row[i].as_str().map(str::to_string)).collect()
    };
    let all = Params { campaign: None, experiment: None, by: None, then_by: None, compare: false, ..params.clone() };
    let mut campaigns = match app.report(Report::Funnel.name(), &all.for_report(Report::Funnel), caller).await {
        Ok(r) => column(&r, "campaign"),
        Err(_) => Vec::new(),
    };
    campaigns.sort();
    campaigns.dedup();
    let mut experiments: Vec<String> =
        app.analytics_for(caller).experiments.experiments.iter().map(|e| e.name.clone()).collect();
    for (r, _) in shown.iter().filter(|(r, _)| r.report == Report::Experiment) {
        experiments.extend(column(r, "experiment"));
    }
    experiments.sort();
    experiments.dedup();
    html::Choices { campaigns, experiments }
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

/// The sign-in form's answer. A post without a token (or not a form at all) gets the form back
/// with a word on what is missing, not the extractor's plain-text rejection.
async fn login(
    State(app): State<AppState>,
    Extension(note): Extension<Note>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let html =
        |status, message| (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html::login(Some(message)));
    let token = match &form {
        Ok(Form(f)) if !f.token.trim().is_empty() => f.token.trim(),
        _ => return html(StatusCode::BAD_REQUEST, "Enter a read token to see the reports.").into_response(),
    };
    match app.tokens.check(token, Role::Read) {
        Ok(caller) => {
            note.caller(&caller);
            let cookie = format!(
                "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                app.sessions.issue(&caller),
                SESSION_TTL.as_secs()
            );
            let mut resp = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(_) => html(StatusCode::UNAUTHORIZED, "That token is not a read token.").into_response(),
    }
}

async fn one(
    State(app): State<AppState>,
    Extension(note): Extension<Note>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(f): Query<Filters>,
) -> Result<Response, ApiError> {
    let caller = authorize_read(&app, &headers)?;
    note.caller(&caller);
    note.target(&name);
    let params = f.params()?;
    note.detail(params.to_json().to_string());
    let r = app.report(&name, &params, &caller).await?;
    note.count(r.rows.len());
    let typed = |ct: &'static str, body: String| ([(header::CONTENT_TYPE, ct)], body).into_response();
    Ok(match f.format.as_deref().unwrap_or("json") {
        "json" => Json(r.to_json()).into_response(),
        // A download gets a file name; the report's name is one of the fixed names, safe in a header.
        "csv" => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}.csv\"", r.report.name())),
            ],
            r.to_csv(),
        )
            .into_response(),
        "svg" => match chart::for_report(&r, &app.config.currency)
            .map_err(|e| ApiError::bad_request("chart", e.to_string()))?
        {
            Some(svg) => typed("image/svg+xml", svg),
            None => return Err(ApiError::NotFound("this report has no rows to chart for these filters".into())),
        },
        "html" => typed(
            "text/html; charset=utf-8",
            html::single(
                &r,
                chart::for_report(&r, &app.config.currency).ok().flatten().as_deref(),
                &html::Page { currency: &app.config.currency, links: html::Links::Api },
            ),
        ),
        "png" => match chart::for_report(&r, &app.config.currency)
            .map_err(|e| ApiError::bad_request("chart", e.to_string()))?
        {
            Some(svg) => {
                let png = chart::png(&svg).map_err(|e| ApiError::bad_request("chart", e.to_string()))?;
                ([(header::CONTENT_TYPE, "image/png")], png).into_response()
            }
            None => return Err(ApiError::NotFound("this report has no rows to chart for these filters".into())),
        },
        other => {
            return Err(ApiError::bad_request(
                "bad_parameter",
                format!("unknown format {other:?}; use json, csv, svg, png or html"),
            ));
        }
    })
}
