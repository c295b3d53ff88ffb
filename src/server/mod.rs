//! The HTTP service: collector, metrics, query and report API in one process.
//!
//! Read in this order: [`App`] (what a running server holds and how it starts and stops),
//! [`run`] (serve until shutdown, then flush), then one module per resource:
//! [`health`] (`/healthz`, `/readyz`, `/metrics`), [`webhooks`] (one handler for every provider),
//! [`events`] (`/v1/events`), [`query`] (`/v1/query`, `/v1/admin/flush`), [`pages`] (`/`,
//! `/login`, `/v1/reports/{name}`, `/v1/experiments`), [`send`] (`/v1/send`), [`erase`]
//! (`/v1/admin/erase`), [`consent`] (`/v1/consent/{phone}`). Who may call what is in
//! [`auth`] (roles, tenants, sessions); every `/v1` call's audit record in [`audit`].

pub mod audit;
pub mod auth;
mod autostop;
pub mod consent;
pub mod erase;
pub mod error;
pub mod events;
pub mod experiments;
pub mod health;
pub mod observe;
pub mod pages;
pub mod query;
pub mod send;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use self::error::ApiError;
use crate::analytics::Analytics;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::flush::Flusher;
use crate::ingest::{Batch, Normalizer};
use crate::metrics::Metrics;
use crate::pii::PiiKey;
use crate::store::Storage;
use crate::store::tombstones::Tombstones;
use crate::wal::{Appended, Wal, WalConfig};

/// Everything a running server shares between requests.
pub struct App {
    pub config: Config,
    pub normalizer: Normalizer,
    pub storage: Storage,
    pub wal: Arc<Wal>,
    pub flusher: Arc<Flusher>,
    pub metrics: Arc<Metrics>,
    pub tokens: auth::Tokens,
    pub analytics: Analytics,
    /// The send path, when a provider is configured.
    pub sender: Option<crate::send::Sender>,
    /// Page sessions (signed cookies).
    pub sessions: auth::Sessions,
    /// Erased contacts, whose events are dropped at ingest and at flush.
    pub tombstones: Tombstones,
    /// The tenant whose consent the send path honours: the owner of its number, if a tenant.
    consent_scope: Option<Arc<crate::config::Tenant>>,
    /// Where erasures go to run between compaction rounds (none without compaction).
    erasures: Option<tokio::sync::mpsc::Sender<crate::maintenance::EraseRequest>>,
    report_cache: pages::ReportCache,
    stop_flusher: watch::Sender<bool>,
    flusher_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Background compaction of small files (none when `compact_every_secs` is 0).
    compactor: std::sync::Mutex<Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>>,
}

/// Shared handle given to every handler.
pub type AppState = Arc<App>;

impl App {
    /// Opens storage, the PII key and the log, replays what an earlier run left, and starts
    /// the flusher.
    pub async fn start(config: Config) -> Result<AppState> {
        let provider = crate::send::provider::client(&config.provider())?;
        Self::start_with_provider(config, provider).await
    }

    /// [`App::start`] with the send path's provider given (the demo and tests pass the
    /// sandbox's client).
    pub async fn start_with_provider(
        config: Config,
        provider: Option<Arc<dyn crate::send::provider::Provider>>,
    ) -> Result<AppState> {
        let storage = Storage::open(&config.storage)?;
        let pii = PiiKey::load_or_create(config.pii_key.as_deref(), &config.state_dir)?;
        let tokens = auth::Tokens::new(&auth::parse_tokens(&config.tokens, &config.tenants)?, &config.tenants, &pii);
        let normalizer =
            Normalizer::new(pii, &config.opt_out_keywords, config.store_message_text, config.max_future_secs);
        let metrics = Arc::new(Metrics::new(config.max_error_codes, crate::metrics::DEFAULT_LATENCY_TRACKED));
        let (wal, rec) = Wal::open(WalConfig {
            dir: config.wal_dir(),
            segment_bytes: config.wal_segment_bytes,
            max_age: config.flush_interval(),
            budget_bytes: config.wal_budget_bytes,
        })?;
        metrics.init_api_routes(observe::API_ROUTES);
        metrics.wal_budget_bytes.set(i64::try_from(config.wal_budget_bytes).unwrap_or(i64::MAX));
        for _ in rec.cut_tails.iter().chain(&rec.set_aside) {
            metrics.error("corrupt_segment");
        }
        if rec.segments > 0 {
            tracing::info!(
                segments = rec.segments,
                events = rec.events,
                "replaying write-ahead log segments left by the last run"
            );
        }
        let wal = Arc::new(wal);
        // Read before anything is flushed (a flush waits for them otherwise): replayed segments
        // may hold events of a contact erased meanwhile.
        let tombstones = Tombstones::default();
        if let Err(e) = tombstones.refresh(&storage).await {
            tracing::warn!(error = %e, "could not read the erased contacts yet; flushes wait until they are read");
        }
        let flusher = Arc::new(Flusher::new(
            wal.clone(),
            storage.clone(),
            metrics.clone(),
            wal.log_id().to_string(),
            tombstones.clone(),
        )?);
        if rec.segments > 0
            && let Err(e) = flusher.flush_sealed().await
        {
            tracing::warn!(error = %e, "could not flush replayed segments yet; will retry");
        }
        let (stop_flusher, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(flusher.clone().run(async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }));
        let analytics = Analytics::from_settings(storage.clone(), &config.analytics(), Some(metrics.clone()))?;
        let (erasures, erase_requests) = tokio::sync::mpsc::channel(16);
        let compactor = (config.compact_every_secs > 0).then(|| {
            let (stop, stopped) = watch::channel(false);
            let upkeep = crate::maintenance::Upkeep {
                storage: storage.clone(),
                every: std::time::Duration::from_secs(config.compact_every_secs),
                max_events: config.compact_max_events,
                // Files a merge replaced stay until no query that listed them can still run:
                // every query and report of `serve`'s is cancelled at its time limit.
                wait: std::time::Duration::try_from_secs_f64(
                    config.request_timeout_secs.max(config.query_timeout_secs).max(config.report_timeout_secs).max(0.0)
                        + 1.0,
                )
                .unwrap_or(std::time::Duration::from_secs(86_400)),
                holder: wal.log_id().to_string(),
                tombstones: tombstones.clone(),
                metrics: metrics.clone(),
                retention: crate::maintenance::Policy::of(&config, None),
                last_step: Some(("experiment_table", keep_experiment_contacts(analytics.clone()))),
            };
            let task = tokio::spawn(crate::maintenance::compact_every(upkeep, erase_requests, stopped));
            (stop, task)
        });
        // Erasures run in the compaction task, between its rounds; without one, on their own.
        let erasures = compactor.is_some().then_some(erasures);
        // With tenants, the send path honours the consent given to the tenant whose number it
        // sends from, not another brand's.
        let consent_scope = config
            .tenants
            .iter()
            .find(|t| t.owns(sending_account(&config).as_deref(), sending_number(&config).as_deref()))
            .cloned()
            .map(Arc::new);
        let sender = match provider {
            Some(p) => {
                let cfg = crate::send::SendConfig {
                    per_number_per_sec: config.send_rate_per_sec,
                    require_opt_in: config.require_opt_in.clone(),
                    breaker_open_for: std::time::Duration::from_secs_f64(config.breaker_open_secs.max(0.0)),
                    account_id: sending_account(&config),
                    phone_number_id: sending_number(&config),
                    ..Default::default()
                };
                let s = crate::send::Sender::new(
                    analytics.experiments.clone(),
                    p,
                    cfg,
                    normalizer.pii().clone(),
                    metrics.clone(),
                    tombstones.clone(),
                    &config.state_dir,
                )
                .map_err(|e| Error::io("opening the send path's idempotency record", e))?;
                if !load_consent(&analytics.clone().for_tenant(consent_scope.clone()), &s, None).await {
                    metrics.error("consent_refresh");
                }
                Some(s)
            }
            None => None,
        };
        let app = Arc::new(App {
            sender,
            config,
            normalizer,
            storage,
            wal,
            flusher,
            metrics,
            tokens,
            analytics,
            sessions: auth::Sessions::default(),
            tombstones,
            erasures,
            consent_scope,
            report_cache: pages::ReportCache::default(),
            stop_flusher,
            flusher_task: std::sync::Mutex::new(Some(task)),
            compactor: std::sync::Mutex::new(compactor),
        });
        tokio::spawn(refresh_from_store(Arc::downgrade(&app)));
        if app.sender.is_some() {
            let every = std::time::Duration::from_secs(app.config.auto_stop_check_secs.max(1));
            tokio::spawn(autostop::watch(Arc::downgrade(&app), every));
        }
        Ok(app)
    }

    /// The analytics as `caller` may read them: a tenant's token reads its tenant's rows only.
    pub fn analytics_for(&self, caller: &auth::Caller) -> Analytics {
        self.analytics.clone().for_tenant(caller.tenant.clone())
    }

    /// Appends an audit record to the log ([`crate::audit`]); one that cannot be made durable
    /// is logged as an error (the call it records has been answered).
    pub async fn audit(&self, record: crate::audit::Record) {
        if let Err(e) = self.wal.append(vec![record.to_event()]).await {
            self.metrics.error("audit");
            tracing::error!(error = %e, action = %record.action, "an audit record could not be made durable");
        }
    }

    /// Appends normalised events to the log and records metrics. Counts `batch.rejected`.
    pub async fn ingest(&self, source: &str, batch: Batch) -> Result<Appended, ApiError> {
        for r in &batch.rejected {
            self.metrics.rejected(source, r.reason.as_str(), 1);
        }
        self.store(source, batch.events).await
    }

    /// Appends events durably (fsynced) and records metrics. Events of an erased contact are
    /// dropped and counted ([`Tombstones`]); a new opt-in of one reopens it.
    pub async fn store(&self, source: &str, mut events: Vec<Event>) -> Result<Appended, ApiError> {
        if !self.tombstones.is_empty() {
            let before = events.len();
            events.retain(|e| !self.tombstones.drops(e));
            if events.len() < before {
                self.metrics.rejected(source, "erased", (before - events.len()) as u64);
            }
        }
        let n = events.len() as u64;
        match self.wal.append(events).await {
            Ok(done) => {
                self.metrics.record_stored(&done.events, &done.duplicate);
                if let Some(s) = &self.sender {
                    match &self.consent_scope {
                        None => s.consent.observe(&done.events),
                        Some(t) => {
                            let own: Vec<Event> = done
                                .events
                                .iter()
                                .filter(|e| t.owns(e.account_id.as_deref(), e.phone_number_id.as_deref()))
                                .cloned()
                                .collect();
                            s.consent.observe(&own);
                        }
                    }
                }
                for t in self.tombstones.reopen(&done.events) {
                    let reopened = t.reopened_at;
                    let saved = self.tombstones.update(&self.storage, &t, |latest| latest.reopened_at = reopened).await;
                    if let Err(e) = saved {
                        tracing::warn!(error = %e, "could not record an erased contact's new opt-in; the next one retries");
                    }
                }
                Ok(done)
            }
            Err(e @ Error::WalFull { .. }) => {
                self.metrics.refused(source, "wal_full");
                self.metrics.rejected(source, "wal_full", n);
                Err(ApiError::Unavailable(e.to_string()))
            }
            Err(e) => {
                self.metrics.refused(source, "wal_error");
                self.metrics.rejected(source, "wal_error", n);
                Err(ApiError::Unavailable(format!("events could not be made durable: {e}")))
            }
        }
    }

    /// Seals the log and flushes everything in it to object storage now.
    pub async fn flush_now(&self) -> Result<usize> {
        self.wal.seal().await?;
        self.flusher.flush_sealed().await
    }

    /// Flushes what can be flushed, then stops the flusher and the log writer.
    pub async fn shutdown(&self) {
        // The compaction round stops: a merge under way finishes (one that takes too long is
        // dropped, which loses nothing), files a merge replaced stay for the next round to
        // merge again (other processes may be reading them), and the lease is given up.
        let compactor = self.compactor.lock().ok().and_then(|mut c| c.take());
        if let Some((stop, mut task)) = compactor {
            let _ = stop.send(true);
            if tokio::time::timeout(COMPACTOR_STOP, &mut task).await.is_err() {
                task.abort();
            }
        }
        match self.flush_now().await {
            Ok(n) => tracing::info!(events = n, "flushed the write-ahead log"),
            Err(e) => tracing::warn!(error = %e, "could not flush everything; the log keeps it for the next start"),
        }
        let _ = self.stop_flusher.send(true);
        let task = self.flusher_task.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = task {
            let _ = t.await;
        }
        let wal = self.wal.clone();
        let _ = tokio::task::spawn_blocking(move || wal.close()).await;
    }
}

/// The business account the send path's provider sends from, as its webhooks name it:
/// UltraMsg's instance, Twilio's account; none for Meta (whose sends name the number).
fn sending_account(config: &Config) -> Option<String> {
    match config.provider.as_deref() {
        Some("ultramsg") => config.ultramsg_instance.as_ref().map(|i| i.trim_start_matches("instance").to_string()),
        Some("twilio") => config.twilio_account_sid.clone(),
        _ => None,
    }
}

/// The phone number id the send path's provider sends from, as its webhooks name it: Meta's
/// number id, Twilio's Messaging Service (its webhooks name no number).
fn sending_number(config: &Config) -> Option<String> {
    match config.provider.as_deref() {
        Some("ultramsg") => None,
        Some("twilio") => config.twilio_from.clone().filter(|f| f.starts_with("MG")),
        _ => config.meta_phone_number_id.clone(),
    }
}

/// How often the send path reads the consent stored by other collectors: a deployment of
/// many collectors ingests an opt-out on any of them, and the one that sends must honour it
/// once it is flushed (within `flush_interval_secs`, a minute by default), not at its restart.
const CONSENT_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

/// Days of partitions a refresh reads: consent is stored under the day it was given, and an
/// opt-out is flushed within minutes, so two days cover it across midnight with room to spare.
const CONSENT_REFRESH_DAYS: i64 = 2;

/// Reads the latest consent of every contact from storage into the send path: all of it, or
/// only the partitions from `since`. Always in this process, whatever the engine: the
/// collector's own state never waits on a cluster. False when it could not be read (logged).
async fn load_consent(analytics: &Analytics, sender: &crate::send::Sender, since: Option<chrono::NaiveDate>) -> bool {
    let range = since.map(|d| format!(" AND date >= '{}'", d.format("%Y-%m-%d"))).unwrap_or_default();
    let sql = format!(
        "SELECT contact_key, event_type, CAST(occurred_at AS BIGINT) AS at FROM events \
         WHERE event_type IN ('consent.opt_in', 'consent.opt_out') AND contact_key IS NOT NULL{range}"
    );
    let local = analytics.clone().with_engine(crate::config::Engine::Local);
    match local.read(&sql).await {
        Ok((_, batches)) => {
            let rows = crate::analytics::format::rows(&batches).unwrap_or_default();
            let events: Vec<Event> = rows
                .into_iter()
                .map(|r| {
                    let mut e =
                        Event::new(String::new(), r[1].as_str().unwrap_or(""), r[2].as_i64().unwrap_or(0), 0, "");
                    e.contact_key = r[0].as_str().map(str::to_string);
                    e
                })
                .collect();
            sender.consent.observe(&events);
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read stored consent; only consent ingested from now on counts");
            false
        }
    }
}

/// Every [`CONSENT_REFRESH`], what other collectors stored that this one acts on, until the
/// service is gone: the erased contacts ([`Tombstones`]), and the consent of the last
/// [`CONSENT_REFRESH_DAYS`] days into the send path (applying one twice changes nothing: the
/// latest per contact wins).
async fn refresh_from_store(app: std::sync::Weak<App>) {
    loop {
        tokio::time::sleep(CONSENT_REFRESH).await;
        let Some(app) = app.upgrade() else { return };
        if let Err(e) = app.tombstones.refresh(&app.storage).await {
            app.metrics.error("consent_refresh");
            tracing::warn!(error = %e, "could not read the erased contacts; the next refresh retries");
        }
        if let Some(sender) = &app.sender {
            let since = chrono::Utc::now().date_naive() - chrono::Duration::days(CONSENT_REFRESH_DAYS);
            let analytics = app.analytics.clone().for_tenant(app.consent_scope.clone());
            if !load_consent(&analytics, sender, Some(since)).await {
                app.metrics.error("consent_refresh");
            }
        }
    }
}

/// All routes.
///
/// A request that sends a body has `request_timeout_secs` in all (408 past it), so a slow or
/// stalled client cannot hold a connection. Queries and reports are bounded by their own time
/// limits instead (`query_timeout_secs`, `report_timeout_secs`: the analytics' executor), so
/// they answer with what stopped them; the bodies of `/v1/query` and the page's sign-in form
/// alone have the request's time.
pub fn router(app: AppState) -> Router {
    let limit = app.config.max_body_bytes;
    let request_time = std::time::Duration::from_secs_f64(app.config.request_timeout_secs.max(0.001));
    // Every `/v1` call and sign-in leaves an audit record; the webhooks and probes, which
    // carry no caller, pass by it.
    let audited = Router::new()
        .merge(events::router())
        .merge(send::router())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            request_time,
        ))
        .merge(
            query::router()
                .merge(erase::router())
                .merge(pages::router())
                .merge(experiments::router())
                .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(request_time)),
        )
        .merge(consent::router())
        .layer(axum::middleware::from_fn_with_state(app.clone(), audit::record));
    let webhooks = webhooks::router().layer(tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        request_time,
    ));
    Router::new()
        .merge(health::router())
        .merge(webhooks)
        .merge(audited)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(app.clone(), observe::requests))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(app)
}

/// The span of a request in the service's log: its method and route as declared
/// (`/v1/consent/{phone}`), never the path itself, which may hold a phone number.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let route = req.extensions().get::<axum::extract::MatchedPath>().map_or("(no route)", |m| m.as_str());
    tracing::debug_span!("request", method = %req.method(), route)
}

/// How long shutdown waits for a background merge under way (one of `compact_max_events`
/// events takes a few seconds).
const COMPACTOR_STOP: std::time::Duration = std::time::Duration::from_secs(30);

/// How long in-flight requests get to finish after shutdown begins.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves on `listener` until `shutdown` resolves, then finishes in-flight requests, flushes
/// the log to object storage and stops.
///
/// Connections are served by hyper directly (not `axum::serve`) for three guards a collector
/// on the internet needs: a header-read timeout against slow-loris clients, the request
/// timeouts of [`router`], and a cap on concurrent connections.
pub async fn run(
    listener: TcpListener,
    app: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let addr = listener.local_addr().map_err(|e| Error::io("reading the listen address", e))?;
    tracing::info!(
        %addr,
        storage = %app.storage.url,
        wal = %app.config.wal_dir().display(),
        meta = app.config.meta_app_secret.is_some(),
        dialog360 = app.config.dialog360_secret.is_some(),
        gupshup = app.config.gupshup_token.is_some(),
        twilio = app.config.twilio_auth_token.is_some(),
        ultramsg = app.config.ultramsg_token.is_some(),
        api_tokens = app.config.tokens.len(),
        send = app.sender.is_some(),
        huge_pages = %crate::util::alloc::mode().map_or("not managed".to_string(), |m| m.to_string()),
        "convoscope listening: webhooks at /webhooks/<provider> (meta, 360dialog, gupshup, twilio, ultramsg), API at /v1"
    );
    let secs = |s: f64| std::time::Duration::from_secs_f64(s.max(0.001));
    let router = router(app.clone());
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(secs(app.config.header_read_timeout_secs));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(app.config.max_connections.max(1)));
    tokio::pin!(shutdown);
    let mut accept_backoff = std::time::Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    accept_backoff = std::time::Duration::from_millis(5);
                    stream
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(accept_backoff).await;
                    accept_backoff = (accept_backoff * 2).min(std::time::Duration::from_secs(1));
                    continue;
                }
            },
        };
        let conn =
            builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open after the shutdown grace period");
    }
    app.shutdown().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing requests, then flushing");
}

/// The compaction round's last step: the experiment report's kept table brought up to date
/// with the settled files (`analytics::reports`' experiment `kept`).
fn keep_experiment_contacts(analytics: Analytics) -> crate::maintenance::Step {
    std::sync::Arc::new(move || {
        let analytics = analytics.clone();
        Box::pin(async move {
            match analytics.keep_experiment_contacts().await? {
                crate::analytics::reports::Kept::Built { contacts, events_files } => {
                    tracing::info!(contacts, events_files, "kept the experiment report's rows per contact")
                }
                crate::analytics::reports::Kept::Moved => {
                    tracing::debug!(
                        "events files were merged or erased during the experiment table's build; the next round builds it"
                    )
                }
                _ => {}
            }
            Ok(())
        })
    })
}
