//! `convoscope demo`: the whole loop on one machine with nothing configured.
//!
//! Starts the service and the sandbox provider on free loopback ports, records opt-ins for a
//! few thousand synthetic recipients, sends the `spring_cta` experiment to them through the
//! real send path (`POST /v1/send`), waits for the sandbox's signed callbacks, then writes every
//! report to `./demo-out/` and prints the page's URL and the key numbers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::analytics::reports::{Computed, Params, Report};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::render::{chart, html};
use crate::sandbox::{self, SandboxConfig};
use crate::send::provider::{MetaClient, Provider, TwilioClient};
use crate::server::{self, App};

/// The experiment definitions the demo runs when `experiments.toml` is absent.
pub const DEFAULT_EXPERIMENTS: &str = include_str!("../experiments.toml");

/// Demo settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub sends: usize,
    pub out_dir: PathBuf,
    pub seed: u64,
    /// Exit after writing the reports instead of serving until Ctrl-C.
    pub exit: bool,
    /// Run the loop through Twilio (its send API, signatures and callbacks) instead of Meta.
    pub twilio: bool,
}

/// The demo's PII key. Its recipients are synthetic, so a fixed key costs no privacy and makes
/// their contact keys, and so every number the demo shows, the same on every run of the same
/// command. A real deployment's key is its own secret (`pii_key`, or the state directory's).
const DEMO_PII_KEY: &str = "convoscope-demo-only-synthetic-recipients";

fn token() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    hex::encode(b)
}

/// Synthetic recipients across countries, avoiding the sandbox's test suffixes.
fn recipients(n: usize, seed: u64) -> Vec<String> {
    let prefixes = ["1555", "447700", "5511", "9198", "5255", "6281", "4915"];
    (0..)
        .map(|i: u64| {
            let p = prefixes[(i as usize + seed as usize) % prefixes.len()];
            format!("{p}{:07}", (i * 7919 + seed * 104_729) % 10_000_000)
        })
        .filter(|r| !(r.ends_with("0429") || r.ends_with("0500") || r.ends_with("2001")))
        .take(n)
        .collect()
}

async fn bind() -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| Error::io("binding a loopback port", e))
}

/// Runs the demo.
pub async fn run(opts: Options) -> Result<()> {
    let out = &opts.out_dir;
    for sub in ["data", "state"] {
        let p = out.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p).map_err(|e| Error::io(format!("clearing {}", p.display()), e))?;
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
    let experiments_file = out.join("experiments.toml");
    let experiments = if std::path::Path::new("experiments.toml").exists() {
        std::fs::read_to_string("experiments.toml").map_err(|e| Error::io("reading experiments.toml", e))?
    } else {
        DEFAULT_EXPERIMENTS.to_string()
    };
    std::fs::write(&experiments_file, &experiments).map_err(|e| Error::io("writing the demo's experiments", e))?;
    let defs = crate::experiments::Experiments::parse(&experiments, "experiments.toml")?;
    let experiment = defs
        .experiments
        .iter()
        .find(|e| e.status == crate::experiments::Status::Running)
        .ok_or_else(|| Error::Config("the demo needs a running experiment in experiments.toml".into()))?
        .name
        .clone();

    let (ingest, read, send, admin) = (token(), token(), token(), token());
    let secret = token();
    let collector = bind().await?;
    let collector_url = format!("http://{}", collector.local_addr().map_err(|e| Error::io("reading address", e))?);
    let sandbox_listener = bind().await?;
    let sandbox_url = format!("http://{}", sandbox_listener.local_addr().map_err(|e| Error::io("reading address", e))?);

    let (router, sb) = sandbox::start(SandboxConfig {
        collector_url: collector_url.clone(),
        app_secret: secret.clone(),
        speaks: if opts.twilio { sandbox::Speaks::Twilio } else { sandbox::Speaks::Meta },
        ingest_token: Some(ingest.clone()),
        seed: opts.seed,
        throughput_per_sec: 200.0,
        time_scale: 0.002,
    });
    tokio::spawn(async move {
        let _ = axum::serve(sandbox_listener, router).await;
    });

    let config = Config {
        storage: format!("file://{}", out.join("data").display()),
        state_dir: out.join("state"),
        pii_key: Some(DEMO_PII_KEY.into()),
        meta_app_secret: Some(secret.clone()),
        twilio_auth_token: Some(secret.clone()),
        // Twilio signs the URL it calls, which is the collector's here.
        public_url: Some(collector_url.clone()),
        tokens: vec![
            format!("ingest:{ingest}"),
            format!("read:{read}"),
            format!("send:{send}"),
            format!("admin:{admin}"),
        ],
        flush_interval_secs: 2.0,
        experiments: experiments_file,
        report_cache_secs: 5,
        ..Config::default()
    };
    let provider: Arc<dyn Provider> = if opts.twilio {
        Arc::new(TwilioClient::new(
            &sandbox_url,
            &format!("AC{:032x}", opts.seed),
            &secret,
            "whatsapp:+15550000000",
            config.provider().twilio_status_callback,
            Duration::from_secs(10),
        ))
    } else {
        Arc::new(MetaClient::new(&sandbox_url, "v23.0", "600700800900111", "sandbox-token", Duration::from_secs(10)))
    };
    let app = App::start_with_provider(config, Some(provider)).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_app = app.clone();
    let server_task = tokio::spawn(async move {
        server::run(collector, server_app, async {
            let _ = stop_rx.await;
        })
        .await
    });

    let started = Instant::now();
    let http = reqwest::Client::new();
    let people = recipients(opts.sends, opts.seed);
    println!("convoscope demo: collector {collector_url}, sandbox provider {sandbox_url}");
    println!("recording opt-ins and sending {} messages of experiment {experiment:?} ...", people.len());
    for chunk in people.chunks(1000) {
        let body: String = chunk
            .iter()
            .map(|p| {
                json!({"event_id": format!("demo-optin-{p}"), "event_type": "consent.opt_in",
                       "occurred_at": chrono::Utc::now().to_rfc3339(), "contact": p, "category": "marketing"})
                .to_string()
                    + "\n"
            })
            .collect();
        let r = http
            .post(format!("{collector_url}/v1/events"))
            .bearer_auth(&ingest)
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Invalid(format!("posting opt-ins: {e}")))?;
        if !r.status().is_success() {
            return Err(Error::Invalid(format!("opt-ins refused: {}", r.status())));
        }
    }
    // Paced to the send path's rate as `convoscope send` is, so the dashboards show a sender
    // that keeps to its limit rather than thousands of refused sends.
    let pacer = crate::send::batch::Pacer::default();
    let send_url = format!("{collector_url}/v1/send");
    let results: Vec<(u16, Value)> = futures::stream::iter(people.iter().enumerate())
        .map(|(i, p)| {
            let (http, url, send, experiment, pacer) = (http.clone(), &send_url, &send, experiment.clone(), &pacer);
            async move {
                let body = json!({"experiment": experiment, "to": p, "params": {"name": format!("Customer {i}")},
                                  "idempotency_key": format!("demo-{i}")});
                pacer.post(&http, url, send, &body).await.unwrap_or_else(|e| (0, json!({"error": e})))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let accepted = results.iter().filter(|(s, _)| *s == 200).count();
    println!(
        "sent {accepted} of {} in {:.1}s ({} refused over the send rate and sent later); waiting for the provider's callbacks ...",
        people.len(),
        started.elapsed().as_secs_f64(),
        pacer.refusals()
    );
    if !sb.settle(Duration::from_secs(120)).await {
        tracing::warn!(pending = sb.pending(), "some sandbox callbacks were still pending");
    }
    app.flush_now().await?;

    let params = Params::default();
    let files = html::Page { currency: &app.config.currency, links: html::Links::Files };
    let mut page = Vec::new();
    for report in Report::ALL {
        let name = report.name();
        let r = app
            .report(name, &params, &crate::server::auth::Caller::operator("demo"))
            .await
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let svg = chart::for_report(&r, &app.config.currency).map_err(|e| Error::Invalid(e.to_string()))?;
        let write = |file: String, body: String| {
            std::fs::write(out.join(&file), body).map_err(|e| Error::io(format!("writing {file}"), e))
        };
        write(format!("{name}.json"), serde_json::to_string_pretty(&r.to_json()).unwrap_or_default())?;
        write(format!("{name}.csv"), r.to_csv())?;
        write(format!("{name}.html"), html::single(&r, svg.as_deref(), &files))?;
        if let Some(svg) = &svg {
            write(format!("{name}.svg"), svg.clone())?;
            let png = chart::png(svg).map_err(|e| Error::Invalid(e.to_string()))?;
            std::fs::write(out.join(format!("{name}.png")), png)
                .map_err(|e| Error::io(format!("writing {name}.png"), e))?;
        }
        page.push(((*r).clone(), svg));
    }
    std::fs::write(out.join("index.html"), html::index(&page, &params, None, None, &files))
        .map_err(|e| Error::io("writing index.html", e))?;
    summarize(&page, out, started.elapsed());
    if !opts.exit {
        println!("report page: {collector_url}/  (sign in with the read token {read})");
        println!("metrics:     {collector_url}/metrics");
    }

    if !opts.exit {
        println!("serving the report page until Ctrl-C ...");
        server::shutdown_signal().await;
    }
    let _ = stop_tx.send(());
    match server_task.await {
        Ok(r) => r?,
        Err(e) => return Err(Error::Invalid(format!("server task failed: {e}"))),
    }
    Ok(())
}

fn summarize(page: &[(Computed, Option<String>)], out: &std::path::Path, took: Duration) {
    let get = |report: Report| page.iter().find(|(r, _)| r.report == report).map(|(r, _)| r);
    if let Some(f) = get(Report::Funnel) {
        let sum = |col: &str| -> i64 {
            let Some(i) = f.columns.iter().position(|c| c == col) else { return 0 };
            f.rows.iter().filter_map(|r| r[i].as_i64()).sum()
        };
        println!(
            "\nfunnel: sent {}, delivered {}, read {}, replied {}",
            sum("sent"),
            sum("delivered"),
            sum("read"),
            sum("replied"),
        );
    }
    // The funnel counts a conversion once its attribution window has closed, days from now;
    // the cost report counts those seen so far.
    if let Some(c) = get(Report::Cost)
        && let Some(i) = c.columns.iter().position(|n| n == "conversions")
    {
        let seen: i64 = c.rows.iter().filter_map(|r| r[i].as_i64()).sum();
        println!(
            "conversions so far: {seen} (the funnel's conversion rate waits for the attribution windows to close)"
        );
    }
    if let Some(x) = get(Report::Experiment) {
        let col = |c: &str| x.columns.iter().position(|n| n == c);
        if let (Some(v), Some(m), Some(rate), Some(n), Some(d), Some(why), Some(slice)) = (
            col("variant"),
            col("metric"),
            col("conversion_rate"),
            col("exposures"),
            col("decision"),
            col("decision_reason"),
            col("slice"),
        ) {
            // The decision is the always-valid test's, not a fixed-horizon "winner": it may be
            // read at every look. One line of rates per variant, then each decision and why.
            let whole: Vec<&Vec<Value>> = x.rows.iter().filter(|r| r[slice].is_null()).collect();
            let mut metrics: Vec<&str> = Vec::new();
            let mut variants: Vec<&str> = Vec::new();
            for r in &whole {
                let (mm, vv) = (r[m].as_str().unwrap_or(""), r[v].as_str().unwrap_or(""));
                if !metrics.contains(&mm) {
                    metrics.push(mm);
                }
                if !variants.contains(&vv) {
                    variants.push(vv);
                }
            }
            println!("experiment (decided on the always-valid test):");
            println!(
                "  {:<10} {:>9}  {}",
                "variant",
                "exposures",
                metrics.iter().map(|mm| format!("{mm:>10}")).collect::<String>()
            );
            for vv in &variants {
                let of = |mm: &str| whole.iter().find(|r| r[v] == *vv && r[m] == mm);
                let exposures = of(metrics[0]).and_then(|r| r[n].as_i64()).unwrap_or(0);
                let rates: String = metrics
                    .iter()
                    .map(|mm| format!("{:>9.2}%", of(mm).and_then(|r| r[rate].as_f64()).unwrap_or(0.0) * 100.0))
                    .collect();
                println!("  {vv:<10} {exposures:>9}  {rates}");
            }
            for vv in &variants {
                if let Some(r) = whole.iter().find(|r| r[v] == *vv && r[d].is_string()) {
                    println!("  {vv}: {} — {}", r[d].as_str().unwrap_or(""), r[why].as_str().unwrap_or(""));
                }
            }
        }
    }
    println!(
        "\nreports written to {}/ (open index.html; each report as .json, .csv, .html, .svg, .png)",
        out.display()
    );
    let data = std::fs::canonicalize(out.join("data")).unwrap_or_else(|_| out.join("data"));
    println!(
        "the demo's data: {} (`convoscope report` and `query` read it with --storage file://{})",
        data.display(),
        data.display()
    );
    println!("took {:.1}s", took.as_secs_f64());
}
