//! The commands of the `convoscope` binary.

mod plan;
mod report;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::analytics::{Analytics, format};
use crate::config::{Config, Overrides};
use crate::store::Storage;

/// Analytics and observability for WhatsApp business messaging.
#[derive(Debug, Parser)]
#[command(name = "convoscope", version, about)]
pub struct Cli {
    /// Object storage URL: file://DIR, memory://, s3://bucket/prefix, gs://..., az://...
    #[arg(long, global = true, env = "CONVOSCOPE_STORAGE")]
    pub storage: Option<String>,
    /// Settings file (default: ./convoscope.toml when present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Where reports and queries run: local, or ballista://HOST:PORT (a cluster's scheduler).
    #[arg(long, global = true, env = "CONVOSCOPE_ENGINE")]
    pub engine: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// One command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Collector, metrics and API in one process.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "CONVOSCOPE_LISTEN")]
        listen: Option<String>,
        /// Write-ahead log directory.
        #[arg(long, env = "CONVOSCOPE_WAL_DIR")]
        wal_dir: Option<PathBuf>,
    },
    /// Runs one report over the stored events.
    Report(report::ReportArgs),
    /// Writes a synthetic, realistic event set straight to storage (same seed, same data).
    Generate {
        /// How many events, at least.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// Over how many days.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// First day of the data.
        #[arg(long, default_value = "2026-01-01")]
        start: String,
    },
    /// The whole loop on one machine: service + sandbox provider, an A/B campaign through the
    /// send path, signed callbacks, then the reports in ./demo-out/.
    Demo {
        /// Messages to send.
        #[arg(long, default_value_t = 3000)]
        sends: usize,
        /// Where the reports (and the demo's data) go.
        #[arg(long, default_value = "demo-out")]
        out: PathBuf,
        /// Seed of the simulated provider.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Exit once the reports are written instead of serving the page until Ctrl-C.
        #[arg(long)]
        exit: bool,
        /// The provider the loop runs through: Meta's Cloud API or Twilio (its send API, its
        /// signed status callbacks and inbound messages), both simulated by the sandbox.
        #[arg(long, value_parser = ["meta", "twilio"], default_value = "meta")]
        provider: String,
    },
    /// Sends an experiment to the recipients of a CSV through a running server.
    Send {
        /// Experiment to send.
        #[arg(long)]
        experiment: String,
        /// CSV with a header: `to`, optional `idempotency_key`, other columns are parameters.
        #[arg(long)]
        recipients: PathBuf,
        /// Server to send through.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Token of role send.
        #[arg(long, env = "CONVOSCOPE_SEND_TOKEN")]
        token: String,
        /// Sends in flight at once (the server's rate limit still applies).
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Only the simulated WhatsApp provider (send endpoints + signed webhooks back).
    Sandbox {
        /// Whose webhooks to send: Meta's (to /webhooks/meta) or Twilio's (to the status
        /// callback URL of each send and /webhooks/twilio). Both send APIs are served.
        #[arg(long = "as", value_parser = ["meta", "twilio"], default_value = "meta")]
        speaks: String,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: String,
        /// Collector to call back.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        collector: String,
        /// Secret to sign webhooks with: the collector's meta_app_secret, or its
        /// twilio_auth_token with `--as twilio`.
        #[arg(long, env = "CONVOSCOPE_META_APP_SECRET")]
        app_secret: String,
        /// Token of role ingest, for conversions and conversations via /v1/events.
        #[arg(long, env = "CONVOSCOPE_SANDBOX_INGEST_TOKEN")]
        ingest_token: Option<String>,
        /// Seed of the simulated outcomes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Sends per second before answering 429 (code 130429).
        #[arg(long, default_value_t = 200.0)]
        throughput: f64,
        /// Multiplier of simulated delays (1 = real time).
        #[arg(long, default_value_t = 0.01)]
        time_scale: f64,
    },
    /// Merges small Parquet files per date partition, dropping duplicate event ids, and writes
    /// the rollups of any events file without them (files of earlier versions).
    Compact {
        /// Only partitions from this date.
        #[arg(long)]
        from: Option<String>,
        /// Only partitions up to this date.
        #[arg(long)]
        to: Option<String>,
        /// Merge only files of fewer than half this many events, into files of at most this
        /// many (compaction holds ~0.5 KB per event it merges at its peak); default: each day
        /// into one file.
        #[arg(long)]
        max_events: Option<u64>,
    },
    /// Erases one contact: every event and rollup row of theirs from every file, and a tombstone
    /// that keeps their later events out and the send path away until they opt in again.
    Erase {
        /// The contact's phone number, as E.164 (+15550100001).
        #[arg(long)]
        contact: String,
        /// Erase only this tenant's rows of the contact (a [[tenant]] name).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Consent for an auditor.
    Consent {
        #[command(subcommand)]
        action: ConsentCommand,
    },
    /// Deletes partitions older than the retention period.
    Retention {
        /// Days of partitions to keep (default: retention_days from the configuration).
        #[arg(long)]
        keep_days: Option<u32>,
    },
    /// Benchmark baseline: an HTTP server that reads each body and answers 200, nothing else
    /// (see `scripts/bench_ingest.py`).
    BenchCeiling {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8099")]
        listen: String,
    },
    /// A cluster's scheduler (Apache DataFusion Ballista): executors register with it, and
    /// `--engine ballista://HOST:PORT` sends reports and queries to it.
    #[cfg(feature = "cluster")]
    Scheduler {
        /// Address to listen on (gRPC).
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: String,
    },
    /// A cluster's executor: runs the tasks its scheduler hands it over the store.
    #[cfg(feature = "cluster")]
    Executor {
        /// The scheduler, HOST:PORT.
        #[arg(long)]
        scheduler: String,
        /// Address it serves results and shuffle data on (Arrow Flight).
        #[arg(long, default_value = "127.0.0.1:50051")]
        bind: String,
        /// Port it takes tasks on (gRPC; default: the --bind port + 1).
        #[arg(long)]
        grpc_port: Option<u16>,
        /// Host the scheduler, the other executors and clients reach it by (default: the
        /// --bind host).
        #[arg(long)]
        advertise: Option<String>,
        /// Tasks it runs at once (default: its cores).
        #[arg(long)]
        slots: Option<usize>,
        /// Its shuffle files and spills (default: <state_dir>/executor).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
    /// How many contacts an experiment needs per arm for the power asked, the power at a
    /// recipients file's size, and the days at a send rate.
    Plan(plan::PlanArgs),
    /// Ad hoc read-only SQL over the `events` table.
    Query {
        /// The SQL statement.
        sql: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
        /// Only this tenant's rows (a [[tenant]] name), with its tokens' limits.
        #[arg(long)]
        tenant: Option<String>,
        /// Run the CTEs marked `AS MATERIALIZED` once, before the statement, as the reports
        /// run theirs (otherwise they are read where referenced: the same rows); their results
        /// are held outside the query memory budget.
        #[arg(long, conflicts_with = "tenant")]
        materialize: bool,
    },
}

/// Output formats of `query`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum QueryFormat {
    Table,
    Json,
    Csv,
}

/// Runs a parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> std::process::ExitCode {
    crate::util::traces::init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // A command that ends (a report past its time limit among them) first sees its jobs on
    // a cluster cancelled.
    let ran = rt.block_on(async {
        let ran = run(cli).await;
        crate::analytics::cluster::settle().await;
        ran
    });
    crate::util::traces::flush();
    match ran {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `convoscope consent ...`.
#[derive(Subcommand, Debug)]
pub enum ConsentCommand {
    /// Writes every contact's current consent per category as CSV
    /// (contact_key,category,state,since,source), erased contacts included.
    Export {
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// How long `compact` and `retention` wait for the store's maintenance lease: a collector's
/// round holds it for its merges and then for the grace period of its queries (up to
/// `report_timeout_secs`, five minutes by default).
const COMMAND_LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// The experiment report's kept rows brought up to date under `lease` (held for as long as
/// reading every events file may take); `Err` when the lease passed to another process.
async fn keep_experiment_contacts(
    config: &Config,
    storage: &Storage,
    lease: &mut crate::maintenance::Lease,
) -> crate::error::Result<crate::analytics::reports::Kept> {
    let bytes = storage.list_event_files().await?.iter().map(|(_, m)| m.size).sum();
    if !lease.hold_until(crate::maintenance::STEP.max(crate::maintenance::step_for(bytes))).await? {
        return Err(crate::error::Error::Invalid(
            "the maintenance lease passed to another process; run compact again".into(),
        ));
    }
    Analytics::from_settings(storage.clone(), &config.analytics(), None)?.keep_experiment_contacts().await
}

/// The maintenance lease for a command run by hand (see [`crate::maintenance::Lease`]), named
/// so that a collector's log says who holds it.
async fn command_lease(storage: &Storage, command: &str) -> anyhow::Result<crate::maintenance::Lease> {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    // A run of its own: two containers may share a host name and a pid.
    let holder =
        format!("convoscope {command} on {host} (pid {}, run {:016x})", std::process::id(), rand::random::<u64>());
    let mut lease = crate::maintenance::Lease::new(storage.clone(), holder);
    lease.wait_for(crate::maintenance::STEP, COMMAND_LEASE_WAIT).await?;
    Ok(lease)
}

/// After `convoscope demo`, `report` and `query` would read an empty `./data` and show
/// nothing: say where the demo's data is (on standard error, so the output stays the report).
fn hint_demo_data(config: &Config) {
    let default = Config::default().storage;
    // A store without events: `./data` may hold only the query spill folder.
    let no_events = |dir: &str| !std::path::Path::new(dir).join("events").is_dir();
    let demo = std::path::Path::new("demo-out/data");
    if config.storage == default && no_events("data") && !no_events("demo-out/data") {
        let at = std::fs::canonicalize(demo).unwrap_or_else(|_| demo.to_path_buf());
        eprintln!(
            "./data holds no events; the demo's data is in {}: run with --storage file://{} (or CONVOSCOPE_STORAGE)",
            at.display(),
            at.display()
        );
    }
}

/// The `[[tenant]]` named `name`, for a command run on one tenant's behalf.
fn tenant_named(config: &Config, name: Option<&str>) -> anyhow::Result<Option<std::sync::Arc<crate::config::Tenant>>> {
    let Some(name) = name else { return Ok(None) };
    let t = config
        .tenants
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| anyhow::anyhow!("no [[tenant]] is named {name:?}"))?;
    Ok(Some(std::sync::Arc::new(t.clone())))
}

/// Appends a command's audit record to the store's `_audit/` ([`crate::audit`]): what ran,
/// for whom (`tenant`), and its detail and count, or that it failed. A record that cannot be
/// written is logged: the command's own work is done.
async fn audit_command(storage: &Storage, action: &str, tenant: Option<&str>, outcome: (String, Result<usize, ()>)) {
    let (detail, count) = outcome;
    let record = crate::audit::Record {
        at: crate::event::now_micros(),
        token_id: "cli".into(),
        role: "admin".into(),
        tenant: tenant.unwrap_or("*").into(),
        action: action.into(),
        target: None,
        detail: Some(crate::pii::redact_numbers(&detail)),
        outcome: if count.is_ok() { "ok" } else { "failed" }.into(),
        status: 0,
        count: count.ok().and_then(|n| i64::try_from(n).ok()),
    };
    if let Err(e) = storage.put_audit(&[record]).await {
        tracing::error!(error = %e, "the audit record of {action} could not be written");
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut flags = Overrides { storage: cli.storage.clone(), engine: cli.engine.clone(), ..Default::default() };
    match cli.command {
        Command::Serve { listen, wal_dir } => {
            flags.listen = listen;
            flags.wal_dir = wal_dir;
            let config = Config::load(cli.config.as_deref(), &flags)?;
            let listener = tokio::net::TcpListener::bind(&config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            let app = crate::server::App::start(config).await?;
            crate::server::run(listener, app, crate::server::shutdown_signal()).await?;
            Ok(())
        }
        Command::Report(args) => {
            let config = Config::load(cli.config.as_deref(), &flags)?;
            hint_demo_data(&config);
            let tenant = tenant_named(&config, args.tenant.as_deref())?;
            report::run(args, &config, tenant).await
        }
        Command::Generate { events, days, seed, start } => {
            let config = Config::load(cli.config.as_deref(), &flags)?;
            let start = chrono::NaiveDate::parse_from_str(&start, "%Y-%m-%d")
                .with_context(|| format!("--start must be a date like 2026-01-01, got {start:?}"))?;
            let storage = Storage::open(&config.storage)?;
            let spec = crate::generate::Spec { events, days, seed, start };
            let t = std::time::Instant::now();
            let s = crate::generate::generate(&storage, &spec).await?;
            println!(
                "wrote {} events ({} sends, {} conversations) in {} files to {} in {:.1}s",
                s.events,
                s.sends,
                s.conversations,
                s.files,
                storage.url,
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Compact { from, to, max_events } => {
            let config = Config::load(cli.config.as_deref(), &flags)?;
            let storage = Storage::open(&config.storage)?;
            let p = crate::analytics::reports::Params::parse(from.as_deref(), to.as_deref(), None, None)?;
            let range = match (p.from, p.to) {
                (None, None) => None,
                (f, t) => Some((f.unwrap_or(chrono::NaiveDate::MIN), t.unwrap_or(chrono::NaiveDate::MAX))),
            };
            // Under the store's maintenance lease, given back however the run ends.
            let mut lease = command_lease(&storage, "compact").await?;
            let done = crate::maintenance::compact(&storage, range, max_events, &mut lease).await;
            let healed = match &done {
                Ok(_) if lease.hold_until(crate::maintenance::STEP).await.unwrap_or(false) => {
                    Some(crate::maintenance::heal_rollups(&storage, &mut lease).await)
                }
                _ => None,
            };
            // The experiment report's rows per contact, from the files just settled.
            let kept = match &healed {
                Some(Ok(_)) => Some(keep_experiment_contacts(&config, &storage, &mut lease).await),
                _ => None,
            };
            lease.release().await;
            audit_command(
                &storage,
                "convoscope compact",
                None,
                match &done {
                    Ok(d) => (format!("{} merged files", d.len()), Ok(d.len())),
                    Err(e) => (e.to_string(), Err(())),
                },
            )
            .await;
            let done = done?;
            for c in &done {
                println!(
                    "{}: {} files, {} rows -> 1 file, {} rows ({} duplicates dropped)",
                    c.date,
                    c.files_before,
                    c.rows_before,
                    c.rows_after,
                    c.rows_before - c.rows_after
                );
            }
            println!("wrote {} merged files", done.len());
            let healed = healed.ok_or_else(|| anyhow::anyhow!("the maintenance lease passed to another process before the rollups were brought up to date; run compact again"))??;
            if healed.written > 0 {
                println!("wrote {} rollup files that events files lacked", healed.written);
            }
            if healed.deleted > 0 {
                println!("deleted {} rollup files of an older layout", healed.deleted);
            }
            match kept {
                Some(Ok(crate::analytics::reports::Kept::Built { contacts, events_files })) => println!(
                    "kept the experiment report's rows of {contacts} exposed contacts ({events_files} events files)"
                ),
                Some(Ok(crate::analytics::reports::Kept::Current { contacts })) => {
                    println!("the experiment report's kept rows ({contacts} exposed contacts) cover every events file")
                }
                Some(Ok(crate::analytics::reports::Kept::Moved)) => println!(
                    "events files were merged or erased while the experiment report's rows were kept; the report computes them until compact or serve's round runs again"
                ),
                Some(Ok(crate::analytics::reports::Kept::NotKept)) => {}
                Some(Err(e)) => {
                    return Err(anyhow::anyhow!("could not keep the experiment report's rows per contact: {e}"));
                }
                // Compaction or healing failed: returned above.
                None => {}
            }
            Ok(())
        }
        Command::Erase { contact, tenant } => {
            let config = Config::load(cli.config.as_deref(), &flags)?;
            let storage = Storage::open(&config.storage)?;
            let tenant = tenant_named(&config, tenant.as_deref())?;
            let pii = crate::pii::PiiKey::load_existing(config.pii_key.as_deref(), &config.state_dir)?;
            let (contact_key, _) =
                pii.contact(&contact).ok_or_else(|| anyhow::anyhow!("--contact is not a phone number"))?;
            let tombstones = crate::store::tombstones::Tombstones::load(&storage).await?;
            let mut lease = command_lease(&storage, "erase").await?;
            let stone = crate::store::tombstones::Tombstone::new(contact_key.clone(), tenant.as_deref());
            let done = crate::maintenance::erase(&storage, &tombstones, stone, &mut lease).await;
            lease.release().await;
            let record = match &done {
                Ok(e) => (
                    serde_json::json!({"contact_key": contact_key, "files": e.files, "rows": e.rows}).to_string(),
                    Ok(e.rows),
                ),
                Err(e) => (format!("contact_key {contact_key}: {e}"), Err(())),
            };
            audit_command(&storage, "convoscope erase", tenant.as_ref().map(|t| t.name.as_str()), record).await;
            let done = done?;
            println!(
                "erased contact {contact_key}: {} rows from {} files; its later events are dropped, and a running \
                 collector sweeps once more within {} s for files flushed meanwhile",
                done.rows,
                done.files,
                crate::maintenance::SETTLE.as_secs() + config.compact_every_secs,
            );
            Ok(())
        }
        Command::Consent { action: ConsentCommand::Export { out } } => {
            let config = Config::load(cli.config.as_deref(), &flags)?;
            let storage = Storage::open(&config.storage)?;
            let tombstones = crate::store::tombstones::Tombstones::load(&storage).await?;
            let analytics = Analytics::from_settings(storage.clone(), &config.analytics(), None)?;
            let mut csv = crate::analytics::consent::current_csv(&analytics).await?;
            for t in tombstones.all() {
                let since = crate::event::micros_to_datetime(t.erased_at).to_rfc3339();
                csv.push_str(&format!("{},all,erased,{since},erasure\n", t.contact_key));
            }
            let rows = csv.lines().count().saturating_sub(1);
            match out {
                Some(path) => std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?,
                None => print!("{csv}"),
            }
            audit_command(&storage, "convoscope consent export", None, (format!("{rows} rows"), Ok(rows))).await;
            Ok(())
        }
        Command::Retention { keep_days } => {
            let config = Config::load(cli.config.as_deref(), &flags)?;
            let storage = Storage::open(&config.storage)?;
            let policy = crate::maintenance::Policy::of(&config, keep_days);
            let today = chrono::Utc::now().date_naive();
            let mut lease = command_lease(&storage, "retention").await?;
            let gone = crate::maintenance::retention(&storage, &policy, today, &mut lease).await;
            lease.release().await;
            audit_command(
                &storage,
                "convoscope retention",
                None,
                match &gone {
                    Ok(r) => (
                        format!("{} partitions deleted, {} trimmed", r.deleted.len(), r.trimmed.len()),
                        Ok(r.trimmed.iter().map(|t| t.rows).sum()),
                    ),
                    Err(e) => (e.to_string(), Err(())),
                },
            )
            .await;
            let gone = gone?;
            for g in &gone.deleted {
                println!("deleted {}: {} files, {} bytes", g.date, g.files, g.bytes);
            }
            for t in &gone.trimmed {
                println!("trimmed {}: {} rows past their period from {} files", t.date, t.rows, t.files);
            }
            println!(
                "deleted {} and trimmed {} partitions (events kept {} days, consent {}, audit {})",
                gone.deleted.len(),
                gone.trimmed.len(),
                policy.keep_days,
                policy.consent_days,
                policy.audit_days
            );
            Ok(())
        }
        Command::Send { experiment, recipients, url, token, concurrency } => {
            let summary = crate::send::batch::run(&url, &token, &experiment, &recipients, concurrency).await?;
            print!("{summary}");
            Ok(())
        }
        Command::Demo { sends, out, seed, exit, provider } => {
            let twilio = provider == "twilio";
            crate::demo::run(crate::demo::Options { sends, out_dir: out, seed, exit, twilio }).await?;
            Ok(())
        }
        Command::Sandbox { speaks, listen, collector, app_secret, ingest_token, seed, throughput, time_scale } => {
            let listener =
                tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
            let (router, _handle) = crate::sandbox::start(crate::sandbox::SandboxConfig {
                collector_url: collector.clone(),
                app_secret,
                speaks: if speaks == "twilio" { crate::sandbox::Speaks::Twilio } else { crate::sandbox::Speaks::Meta },
                ingest_token,
                seed,
                throughput_per_sec: throughput,
                time_scale,
            });
            tracing::info!(%listen, %collector, speaks, "sandbox provider: POST /{{version}}/{{phone_number_id}}/messages (Meta), POST /2010-04-01/Accounts/{{sid}}/Messages.json (Twilio); stats at /sandbox/stats");
            axum::serve(listener, router).with_graceful_shutdown(crate::server::shutdown_signal()).await?;
            Ok(())
        }
        Command::BenchCeiling { listen } => {
            let listener =
                tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(%listen, "benchmark baseline: every request answered 200 after reading its body");
            crate::util::ceiling::serve(listener, crate::server::shutdown_signal()).await?;
            Ok(())
        }
        #[cfg(feature = "cluster")]
        Command::Scheduler { bind } => {
            let config = Config::load(cli.config.as_deref(), &flags)?;
            let storage = Storage::open(&config.storage)?;
            let listener =
                tokio::net::TcpListener::bind(&bind).await.with_context(|| format!("cannot listen on {bind}"))?;
            let spill = config.analytics().limits.spill_dir;
            crate::cluster::run_scheduler(listener, storage, spill, crate::server::shutdown_signal()).await?;
            Ok(())
        }
        #[cfg(feature = "cluster")]
        Command::Executor { scheduler, bind, grpc_port, advertise, slots, work_dir } => {
            let config = Config::load(cli.config.as_deref(), &flags)?;
            let storage = Storage::open(&config.storage)?;
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
            let options = crate::cluster::ExecutorOptions {
                scheduler,
                bind,
                grpc_port,
                advertise,
                slots: slots.filter(|n| *n > 0).unwrap_or(cores),
                work_dir: work_dir.unwrap_or_else(|| config.state_dir.join("executor")),
                memory_bytes: config.query_memory_bytes,
            };
            crate::cluster::run_executor(options, storage).await?;
            Ok(())
        }
        Command::Plan(args) => {
            let config = Config::load(cli.config.as_deref(), &flags)?;
            print!("{}", plan::run(&args, &config.experiments)?);
            Ok(())
        }
        Command::Query { sql, format: fmt, tenant, materialize } => {
            let config = Config::load(cli.config.as_deref(), &flags)?;
            hint_demo_data(&config);
            let analytics = Analytics::from_settings(Storage::open(&config.storage)?, &config.analytics(), None)?
                .for_tenant(tenant_named(&config, tenant.as_deref())?);
            let (schema, batches) =
                if materialize { analytics.query_materialized(&sql).await? } else { analytics.query(&sql).await? };
            let (columns, rows) = (format::columns(&schema), format::rows(&batches)?);
            let out = match fmt {
                QueryFormat::Table => format::table(&columns, &rows),
                QueryFormat::Csv => format::csv(&columns, &rows),
                QueryFormat::Json => format!("{}\n", serde_json::json!({"columns": columns, "rows": rows})),
            };
            print!("{out}");
            Ok(())
        }
    }
}
