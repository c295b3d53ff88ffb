//! Settings, from lowest to highest precedence: built-in defaults, `convoscope.toml` (or the
//! file given with `--config`), `CONVOSCOPE_*` environment variables, command-line flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

mod provider;
mod tenant;
pub use provider::ProviderSettings;
pub use tenant::Tenant;

/// Every setting. Field names are the keys of `convoscope.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Object storage URL (`file://`, `memory://`, `s3://`, `gs://`, `az://`).
    pub storage: String,
    /// Address the server listens on.
    pub listen: String,
    /// Local state: the PII key, and the log unless `wal_dir` is set.
    pub state_dir: PathBuf,
    /// Write-ahead log directory (default `<state_dir>/wal`).
    pub wal_dir: Option<PathBuf>,
    /// Meta app secret; Meta webhooks are refused until it is set.
    pub meta_app_secret: Option<String>,
    /// Token Meta's GET handshake must present.
    pub meta_verify_token: Option<String>,
    /// Token UltraMsg webhooks must carry in `?token=`.
    pub ultramsg_token: Option<String>,
    /// Twilio auth token: Twilio webhooks are refused until it is set (`X-Twilio-Signature`).
    pub twilio_auth_token: Option<String>,
    /// Base URL providers call this service at (`https://hooks.example.com`), as Twilio signs
    /// it; without it a Twilio signature is checked against the request's own URL.
    pub public_url: Option<String>,
    /// 360dialog's secret: its webhooks are refused until it is set (`x-360dialog-signature`).
    pub dialog360_secret: Option<String>,
    /// Token Gupshup webhooks must carry in `?token=`.
    pub gupshup_token: Option<String>,
    /// Secret for `contact_key` (default: generated into `<state_dir>/pii.key`).
    pub pii_key: Option<String>,
    /// API tokens as `role:token` (the operator's: every tenant) or `role:token@tenant` (one
    /// tenant's rows and numbers only); roles `ingest`, `read`, `send`, `admin`.
    pub tokens: Vec<String>,
    /// The tenants (`[[tenant]]`): brands served from this deployment, each owning its business
    /// account and phone number ids.
    #[serde(rename = "tenant")]
    pub tenants: Vec<Tenant>,
    /// Days of audit records `retention` keeps (regulators ask for more than the events).
    pub audit_retention_days: u32,
    /// Days consent changes (`consent.opt_in`, `consent.opt_out`) are kept, past the events
    /// around them: the proof of consent is asked for long after the messages.
    pub consent_retention_days: u32,
    /// Seconds a client may take to send its request headers (slow-loris guard).
    pub header_read_timeout_secs: f64,
    /// Seconds a request may take in all, body included (answered 408 past that).
    pub request_timeout_secs: f64,
    /// Connections served at once; past that new connections wait in the listen backlog.
    pub max_connections: usize,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Seal a log segment at this size.
    pub wal_segment_bytes: u64,
    /// Seal a log segment (and so flush it) at this age.
    pub flush_interval_secs: f64,
    /// Refuse new events (503) once the log holds this many bytes.
    pub wal_budget_bytes: u64,
    /// Whole-message replies that mean "stop messaging me".
    pub opt_out_keywords: Vec<String>,
    /// Keep inbound message text in `attributes` (off: text is personal data).
    pub store_message_text: bool,
    /// Refuse events timestamped further than this in the future.
    pub max_future_secs: i64,
    /// Distinct error codes with their own metric series.
    pub max_error_codes: usize,
    /// Days after a send in which a conversion is attributed to it.
    pub attribution_days: i64,
    /// Experiment definitions (read when the file exists).
    pub experiments: PathBuf,
    /// CSV `category,country,price` replacing the shipped rate card.
    pub rate_card: Option<PathBuf>,
    /// Cost of an hour of agent time (cost report).
    pub agent_cost_per_hour: f64,
    /// Cost of a bot-answered conversation (cost report).
    pub bot_cost_per_conversation: f64,
    /// The ISO 4217 code of the rate card's and these costs' currency: the report pages show
    /// money in it.
    pub currency: String,
    /// Provider the send path uses: `meta`, `twilio` or `ultramsg` (none: `/v1/send` answers
    /// 503).
    pub provider: Option<String>,
    /// Cloud API base URL (the sandbox's URL for local runs).
    pub meta_api_base: String,
    pub meta_api_version: String,
    pub meta_phone_number_id: Option<String>,
    /// System-user token for the Cloud API.
    pub meta_access_token: Option<String>,
    pub ultramsg_api_base: String,
    pub ultramsg_instance: Option<String>,
    pub ultramsg_api_token: Option<String>,
    /// Twilio's API base URL (the sandbox's URL for local runs).
    pub twilio_api_base: String,
    pub twilio_account_sid: Option<String>,
    /// The WhatsApp sender Twilio sends from (`whatsapp:+15550100`), or a Messaging Service
    /// (`MG…`).
    pub twilio_from: Option<String>,
    /// Sends per second per sending number, enforced locally.
    pub send_rate_per_sec: f64,
    /// Seconds the circuit to a provider stays open before one probe is let through.
    pub breaker_open_secs: f64,
    /// Categories that need a recorded opt-in before a send.
    pub require_opt_in: Vec<String>,
    /// Seconds a computed report is served from cache.
    pub report_cache_secs: u64,
    /// Seconds between checks of the guardrails of experiments with `auto_stop`.
    pub auto_stop_check_secs: u64,
    /// Days of partitions `retention` keeps.
    pub retention_days: u32,
    /// `retention` refuses to keep fewer days than this.
    pub min_retention_days: u32,
    /// Seconds between `serve`'s rounds of merging small files (0: never).
    pub compact_every_secs: u64,
    /// Most events `serve` merges into one file (it holds ~0.5 KB per event meanwhile).
    pub compact_max_events: u64,
    /// Memory all queries and reports together may hold (DataFusion's memory pool); past it
    /// they spill to `spill_dir`, and a query that still does not fit fails alone. Default: a
    /// quarter of the machine's memory.
    pub query_memory_bytes: Option<u64>,
    /// Where queries spill (default `<state_dir>/spill`).
    pub spill_dir: Option<PathBuf>,
    /// Disk the spill files of all queries together may take.
    pub query_spill_bytes: u64,
    /// Threads that run queries and reports, apart from the collector's (default: the cores).
    pub query_threads: Option<usize>,
    /// Queries and reports run at once; the next is answered 429 at once.
    pub max_concurrent_queries: usize,
    /// Seconds a `/v1/query` statement may run before it is cancelled.
    pub query_timeout_secs: f64,
    /// Seconds a report may run before it is cancelled.
    pub report_timeout_secs: f64,
    /// A join without an equality condition (nested-loop or cross join) whose inputs' row
    /// counts multiply past this is refused before it runs (0: no guard).
    pub max_unkeyed_join_rows: u64,
    /// Rows `/v1/query` returns at most; a larger result is refused (aggregate, or LIMIT).
    pub max_result_rows: usize,
    /// Where reports and queries run: `local` (this process) or `ballista://HOST:PORT` (the
    /// scheduler of an Apache DataFusion Ballista cluster: `convoscope scheduler`).
    pub engine: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            storage: "file://./data".into(),
            listen: "127.0.0.1:8080".into(),
            state_dir: PathBuf::from("./data"),
            wal_dir: None,
            meta_app_secret: None,
            meta_verify_token: None,
            ultramsg_token: None,
            twilio_auth_token: None,
            public_url: None,
            dialog360_secret: None,
            gupshup_token: None,
            pii_key: None,
            tokens: Vec::new(),
            tenants: Vec::new(),
            // An audit trail outlives a year of events: a question about who read what comes
            // after the fact.
            audit_retention_days: 400,
            // Five years: the longest limitation period proof of consent is commonly kept for.
            consent_retention_days: 1826,
            // Meta and UltraMsg send headers at once; 10 s only cuts off clients that dribble.
            header_read_timeout_secs: 10.0,
            // An 8 MiB body over a slow link takes seconds, not half a minute.
            request_timeout_secs: 30.0,
            max_connections: 1024,
            max_body_bytes: 8 << 20,
            // 8 MiB of log is 30-60k events: Parquet files large enough to compress well, and
            // a flush (which holds one segment's events in memory) stays within ~100 MiB.
            wal_segment_bytes: 8 << 20,
            // A minute bounds how stale reports are and keeps quiet systems from writing a
            // file every few seconds (compaction merges what remains small).
            flush_interval_secs: 60.0,
            // 1 GiB rides out an object-store outage of hours at typical webhook rates.
            wal_budget_bytes: 1 << 30,
            opt_out_keywords: vec!["STOP".into(), "UNSUBSCRIBE".into(), "CANCEL".into()],
            store_message_text: false,
            // Provider clocks drift by seconds, never by minutes, so an event further in the
            // future is a bug or a forgery.
            max_future_secs: 300,
            // Distinct error codes that get their own series; the rest count under `other`.
            max_error_codes: 50,
            attribution_days: 7,
            experiments: PathBuf::from("experiments.toml"),
            rate_card: None,
            agent_cost_per_hour: 20.0,
            bot_cost_per_conversation: 0.10,
            currency: "USD".into(),
            provider: None,
            meta_api_base: "https://graph.facebook.com".into(),
            meta_api_version: "v23.0".into(),
            meta_phone_number_id: None,
            meta_access_token: None,
            ultramsg_api_base: "https://api.ultramsg.com".into(),
            ultramsg_instance: None,
            ultramsg_api_token: None,
            twilio_api_base: "https://api.twilio.com".into(),
            twilio_account_sid: None,
            twilio_from: None,
            send_rate_per_sec: 80.0,
            breaker_open_secs: 10.0,
            require_opt_in: vec!["marketing".into()],
            report_cache_secs: 30,
            auto_stop_check_secs: 300,
            retention_days: 400,
            min_retention_days: 7,
            // Hourly: today's partition holds at most an hour of flushes besides its merged
            // files, and a day's last files are merged within an hour of its end.
            compact_every_secs: 3600,
            // A merge reads its files a few thousand rows at a time, but holds the columns the
            // rollups read and the Parquet writer's encoded row group: ~0.5 KB per event at its
            // peak, so 200,000 events is ~100 MB. A quiet day's 1,440 minute-by-minute files
            // become one; a busy day's, a file per 100,000-200,000 events.
            compact_max_events: 200_000,
            query_memory_bytes: None,
            spill_dir: None,
            // Spilling is for queries a little over their memory, not for a disk-sized result.
            query_spill_bytes: 16 << 30,
            query_threads: None,
            // Two cores: two queries at once keep both busy; a third only waits for them.
            max_concurrent_queries: 2,
            // An analyst's query runs for seconds; half a minute is a mistake or a scan of
            // everything, and holds a slot from everyone else.
            query_timeout_secs: 30.0,
            // Reports scan every day of the range; a year on one machine takes minutes.
            report_timeout_secs: 300.0,
            // A hundred million pairs take seconds; the statements that take hours are joins
            // of the whole store with itself.
            max_unkeyed_join_rows: 100_000_000,
            // A JSON answer of 100,000 rows is tens of megabytes: more is an export, not a query.
            max_result_rows: 100_000,
            engine: "local".into(),
        }
    }
}

/// The settings the analytics read ([`Config::analytics`]): one small struct, so the analytics
/// depend on what they use and not on every setting of the service.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsSettings {
    /// Days after a send in which a conversion is attributed to it.
    pub attribution_days: i64,
    /// Experiment definitions (read when the file exists).
    pub experiments: PathBuf,
    /// CSV `category,country,price` replacing the shipped rate card.
    pub rate_card: Option<PathBuf>,
    /// Cost of an hour of agent time.
    pub agent_cost_per_hour: f64,
    /// Cost of a bot-answered conversation.
    pub bot_cost_per_conversation: f64,
    /// Where and how queries and reports run.
    pub limits: QueryLimits,
    /// Which engine runs them.
    pub engine: Engine,
}

/// The engine reports and queries run on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Engine {
    /// DataFusion in this process.
    #[default]
    Local,
    /// An Apache DataFusion Ballista cluster, by its scheduler's `HOST:PORT`.
    Ballista(String),
}

impl Engine {
    /// Parses `local` or `ballista://HOST:PORT`.
    pub fn parse(text: &str) -> Result<Engine> {
        let text = text.trim();
        if text.is_empty() || text == "local" {
            return Ok(Engine::Local);
        }
        let bad = |why: &str| Error::Config(format!("engine {text:?}: {why}; use local or ballista://HOST:PORT"));
        let addr = text.strip_prefix("ballista://").ok_or_else(|| bad("unknown engine"))?.trim_end_matches('/');
        match host_port(addr, "the scheduler's address") {
            Ok((_, port)) if port > 0 => Ok(Engine::Ballista(addr.to_string())),
            _ => Err(bad("the scheduler's address must be HOST:PORT")),
        }
    }
}

/// `HOST:PORT` split into its host (IPv6 brackets removed) and port; the error names `what`.
pub fn host_port(addr: &str, what: &str) -> Result<(String, u16)> {
    let bad = || Error::Config(format!("{what} {addr:?} must be HOST:PORT"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::Local => f.write_str("local"),
            Engine::Ballista(addr) => write!(f, "ballista://{addr}"),
        }
    }
}

/// Where and how queries and reports run, so that no reader can hurt the collector: on threads
/// of their own, within a memory budget, a time limit and a number at once.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryLimits {
    /// Memory all queries together may hold before they spill.
    pub memory_bytes: u64,
    /// Where they spill.
    pub spill_dir: PathBuf,
    /// Disk their spill files may take.
    pub spill_bytes: u64,
    /// Threads that run them.
    pub threads: usize,
    /// How many run at once.
    pub max_concurrent: usize,
    /// How long an ad hoc query may run.
    pub query_timeout: Duration,
    /// How long a report may run.
    pub report_timeout: Duration,
    /// The guard on joins without an equality condition (0: off).
    pub max_unkeyed_join_rows: u64,
    /// Rows an ad hoc query returns at most.
    pub max_result_rows: usize,
}

impl Default for QueryLimits {
    /// The limits of a default configuration, with the spill directory in the system's
    /// temporary directory (the service puts it under its state directory).
    fn default() -> Self {
        Config::default().query_limits(std::env::temp_dir().join("convoscope-spill"))
    }
}

/// The memory this process may use in bytes, where the platform says: the machine's, or the
/// container's limit where that is lower (cgroup v2's `memory.max`).
fn physical_memory() -> Option<u64> {
    let mut memory = None;
    #[cfg(unix)]
    {
        // SAFETY: sysconf only reads system constants.
        let (pages, size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
        if pages > 0 && size > 0 {
            memory = Some(pages as u64 * size as u64);
        }
    }
    let limit = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|s| s.trim().parse::<u64>().ok());
    match (memory, limit) {
        (Some(m), Some(l)) => Some(m.min(l)),
        (m, l) => m.or(l),
    }
}

/// Flag values that override everything else (`None`: not given).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub storage: Option<String>,
    pub listen: Option<String>,
    pub wal_dir: Option<PathBuf>,
    pub engine: Option<String>,
}

const ENV: &[(&str, &str)] = &[
    ("CONVOSCOPE_STORAGE", "storage"),
    ("CONVOSCOPE_LISTEN", "listen"),
    ("CONVOSCOPE_STATE_DIR", "state_dir"),
    ("CONVOSCOPE_WAL_DIR", "wal_dir"),
    ("CONVOSCOPE_META_APP_SECRET", "meta_app_secret"),
    ("CONVOSCOPE_META_VERIFY_TOKEN", "meta_verify_token"),
    ("CONVOSCOPE_ULTRAMSG_TOKEN", "ultramsg_token"),
    ("CONVOSCOPE_TWILIO_AUTH_TOKEN", "twilio_auth_token"),
    ("CONVOSCOPE_PUBLIC_URL", "public_url"),
    ("CONVOSCOPE_360DIALOG_SECRET", "dialog360_secret"),
    ("CONVOSCOPE_GUPSHUP_TOKEN", "gupshup_token"),
    ("CONVOSCOPE_PII_KEY", "pii_key"),
    ("CONVOSCOPE_TOKENS", "tokens"),
    ("CONVOSCOPE_EXPERIMENTS", "experiments"),
    ("CONVOSCOPE_PROVIDER", "provider"),
    ("CONVOSCOPE_META_API_BASE", "meta_api_base"),
    ("CONVOSCOPE_META_PHONE_NUMBER_ID", "meta_phone_number_id"),
    ("CONVOSCOPE_META_ACCESS_TOKEN", "meta_access_token"),
    ("CONVOSCOPE_ULTRAMSG_API_BASE", "ultramsg_api_base"),
    ("CONVOSCOPE_ULTRAMSG_INSTANCE", "ultramsg_instance"),
    ("CONVOSCOPE_ULTRAMSG_API_TOKEN", "ultramsg_api_token"),
    ("CONVOSCOPE_TWILIO_API_BASE", "twilio_api_base"),
    ("CONVOSCOPE_TWILIO_ACCOUNT_SID", "twilio_account_sid"),
    ("CONVOSCOPE_TWILIO_FROM", "twilio_from"),
    ("CONVOSCOPE_FLUSH_INTERVAL_SECS", "flush_interval_secs"),
    ("CONVOSCOPE_WAL_BUDGET_BYTES", "wal_budget_bytes"),
    ("CONVOSCOPE_WAL_SEGMENT_BYTES", "wal_segment_bytes"),
    ("CONVOSCOPE_MAX_BODY_BYTES", "max_body_bytes"),
    ("CONVOSCOPE_QUERY_MEMORY_BYTES", "query_memory_bytes"),
    ("CONVOSCOPE_SPILL_DIR", "spill_dir"),
    ("CONVOSCOPE_QUERY_THREADS", "query_threads"),
    ("CONVOSCOPE_MAX_CONCURRENT_QUERIES", "max_concurrent_queries"),
    ("CONVOSCOPE_QUERY_TIMEOUT_SECS", "query_timeout_secs"),
    ("CONVOSCOPE_REPORT_TIMEOUT_SECS", "report_timeout_secs"),
    ("CONVOSCOPE_ENGINE", "engine"),
    ("CONVOSCOPE_CURRENCY", "currency"),
];

impl Config {
    /// Loads settings: `file` if given (it must exist), else `./convoscope.toml` if present;
    /// then the environment, then `flags`.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<Config> {
        Self::load_with_env(file, flags, |k| std::env::var(k).ok())
    }

    /// [`Config::load`] with the environment supplied by the caller (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        flags: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        let mut table = match file {
            Some(p) => read_toml(p)?,
            None if Path::new("convoscope.toml").exists() => read_toml(Path::new("convoscope.toml"))?,
            None => toml::Table::new(),
        };
        for (var, key) in ENV {
            let Some(val) = env(var) else { continue };
            let v = match *key {
                "tokens" => toml::Value::Array(
                    val.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.into()))
                        .collect(),
                ),
                "flush_interval_secs" | "query_timeout_secs" | "report_timeout_secs" => toml::Value::Float(
                    val.parse().map_err(|_| Error::Config(format!("{var}={val:?} is not a number of seconds")))?,
                ),
                "max_concurrent_queries" | "query_threads" => toml::Value::Integer(
                    val.parse().map_err(|_| Error::Config(format!("{var}={val:?} is not a whole number")))?,
                ),
                "wal_budget_bytes" | "wal_segment_bytes" | "max_body_bytes" | "query_memory_bytes" => {
                    toml::Value::Integer(
                        val.parse().map_err(|_| Error::Config(format!("{var}={val:?} is not a number of bytes")))?,
                    )
                }
                _ => toml::Value::String(val),
            };
            table.insert((*key).into(), v);
        }
        let mut cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| Error::Config(e.message().to_string()))?;
        if let Some(s) = &flags.storage {
            cfg.storage = s.clone();
        }
        if let Some(l) = &flags.listen {
            cfg.listen = l.clone();
        }
        if let Some(w) = &flags.wal_dir {
            cfg.wal_dir = Some(w.clone());
        }
        if let Some(e) = &flags.engine {
            cfg.engine = e.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        Engine::parse(&self.engine)?;
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::Config(format!("currency {:?} must be an ISO 4217 code such as USD", self.currency)));
        }
        Tenant::check_all(&self.tenants)?;
        let periods = [
            ("retention_days", self.retention_days),
            ("consent_retention_days", self.consent_retention_days),
            ("audit_retention_days", self.audit_retention_days),
        ];
        let tenants = self.tenants.iter().filter_map(|t| Some(("a tenant's retention_days", t.retention_days?)));
        for (name, days) in periods.into_iter().chain(tenants) {
            if days < self.min_retention_days {
                return Err(Error::Config(format!(
                    "{name} ({days}) is below min_retention_days ({})",
                    self.min_retention_days
                )));
            }
        }
        if self.flush_interval_secs <= 0.0 || !self.flush_interval_secs.is_finite() {
            return Err(Error::Config("flush_interval_secs must be a positive number".into()));
        }
        if self.wal_budget_bytes < self.max_body_bytes as u64 * 2 {
            return Err(Error::Config("wal_budget_bytes must be at least twice max_body_bytes".into()));
        }
        if self.attribution_days < 0 {
            return Err(Error::Config("attribution_days must not be negative".into()));
        }
        for (name, secs) in
            [("query_timeout_secs", self.query_timeout_secs), ("report_timeout_secs", self.report_timeout_secs)]
        {
            if secs <= 0.0 || !secs.is_finite() {
                return Err(Error::Config(format!("{name} must be a positive number")));
            }
        }
        if self.query_memory_bytes.is_some_and(|m| m < 16 << 20) {
            return Err(Error::Config("query_memory_bytes must be at least 16 MiB".into()));
        }
        for (name, n) in [
            ("query_threads", self.query_threads.unwrap_or(1)),
            ("max_concurrent_queries", self.max_concurrent_queries),
            ("max_result_rows", self.max_result_rows),
            ("query_spill_bytes", usize::try_from(self.query_spill_bytes).unwrap_or(usize::MAX)),
        ] {
            if n == 0 {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
        }
        Ok(())
    }

    /// What the analytics need: attribution, costs, where the experiments are defined, and the
    /// limits queries run within.
    pub fn analytics(&self) -> AnalyticsSettings {
        AnalyticsSettings {
            attribution_days: self.attribution_days,
            experiments: self.experiments.clone(),
            rate_card: self.rate_card.clone(),
            agent_cost_per_hour: self.agent_cost_per_hour,
            bot_cost_per_conversation: self.bot_cost_per_conversation,
            limits: self.query_limits(self.spill_dir.clone().unwrap_or_else(|| self.state_dir.join("spill"))),
            // Checked when the settings were loaded.
            engine: Engine::parse(&self.engine).unwrap_or_default(),
        }
    }

    fn query_limits(&self, spill_dir: PathBuf) -> QueryLimits {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        // A quarter of the machine: the collector, the flusher and the page cache keep the rest.
        let memory = physical_memory().map(|m| m / 4).unwrap_or(2 << 30);
        let secs = |s: f64| Duration::try_from_secs_f64(s.max(0.001)).unwrap_or(Duration::from_secs(86_400));
        QueryLimits {
            memory_bytes: self.query_memory_bytes.unwrap_or(memory),
            spill_dir,
            spill_bytes: self.query_spill_bytes,
            threads: self.query_threads.filter(|n| *n > 0).unwrap_or(cores),
            max_concurrent: self.max_concurrent_queries.max(1),
            query_timeout: secs(self.query_timeout_secs),
            report_timeout: secs(self.report_timeout_secs),
            max_unkeyed_join_rows: self.max_unkeyed_join_rows,
            max_result_rows: self.max_result_rows.max(1),
        }
    }

    /// The log directory.
    pub fn wal_dir(&self) -> PathBuf {
        self.wal_dir.clone().unwrap_or_else(|| self.state_dir.join("wal"))
    }

    /// Seal age of log segments.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_secs_f64(self.flush_interval_secs)
    }
}

fn read_toml(p: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
    text.parse::<toml::Table>().map_err(|e| Error::Config(format!("{}: {}", p.display(), e.message())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_defaults_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:9000\"\nstorage = \"memory://\"\nflush_interval_secs = 2\n").unwrap();
        let env = |k: &str| match k {
            "CONVOSCOPE_LISTEN" => Some("127.0.0.1:9100".to_string()),
            "CONVOSCOPE_TOKENS" => Some("read:abcdefgh, ingest:ijklmnop".to_string()),
            _ => None,
        };
        let flags = Overrides { storage: Some("file:///tmp/x".into()), ..Default::default() };
        let c = Config::load_with_env(Some(&f), &flags, env).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9100");
        assert_eq!(c.storage, "file:///tmp/x");
        assert_eq!(c.flush_interval(), Duration::from_secs(2));
        assert_eq!(c.tokens, vec!["read:abcdefgh".to_string(), "ingest:ijklmnop".to_string()]);
        assert_eq!(c.wal_dir(), PathBuf::from("./data/wal"));
    }

    #[test]
    fn engines_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(Engine::parse("local").unwrap(), Engine::Local);
        assert_eq!(Engine::parse("ballista://10.0.0.5:50050").unwrap(), Engine::Ballista("10.0.0.5:50050".into()));
        assert_eq!(
            Engine::parse("ballista://sched.internal:50050/").unwrap().to_string(),
            "ballista://sched.internal:50050"
        );
        for bad in ["ballista://", "ballista://host", "ballista://host:0", "spark://host:7077", "df://h:1"] {
            let e = Engine::parse(bad).unwrap_err().to_string();
            assert!(e.contains("ballista://HOST:PORT"), "{bad}: {e}");
        }
        let env = |k: &str| (k == "CONVOSCOPE_ENGINE").then(|| "ballista://127.0.0.1:50050".to_string());
        let c = Config::load_with_env(None, &Overrides::default(), env).unwrap();
        assert_eq!(c.analytics().engine, Engine::Ballista("127.0.0.1:50050".into()));
    }

    #[test]
    fn addresses_split_or_say_what_is_wrong() {
        assert_eq!(host_port("10.1.2.3:50050", "--bind").unwrap(), ("10.1.2.3".to_string(), 50050));
        assert_eq!(host_port("[::1]:7", "--bind").unwrap(), ("::1".to_string(), 7));
        for bad in ["50050", ":50050", "host:", "host:99999"] {
            assert!(host_port(bad, "--scheduler").unwrap_err().to_string().contains("--scheduler"), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "lisen = 1").unwrap();
        let e = Config::load_with_env(Some(&f), &Overrides::default(), |_| None).unwrap_err().to_string();
        assert!(e.contains("lisen"), "{e}");
    }
}
