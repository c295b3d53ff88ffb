//! Starting servers and talking to them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use convoscope::config::Config;
use convoscope::server;
use serde_json::Value;
use tokio::sync::oneshot;

pub const META_SECRET: &str = "meta-app-secret-for-tests";
pub const VERIFY_TOKEN: &str = "verify-me-please";
pub const ULTRAMSG_TOKEN: &str = "ultramsg-url-token";
pub const INGEST: &str = "ingest-token-123";
pub const READ: &str = "read-token-4567";
pub const ADMIN: &str = "admin-token-890";

/// A scratch directory for one test. Under `CONVOSCOPE_TEST_ROOT` (scripts/test.sh sets it)
/// the directory is kept after the test, so the privacy scan can read every data directory,
/// log directory and server log the suite leaves behind.
pub fn test_dir() -> tempfile::TempDir {
    match std::env::var_os("CONVOSCOPE_TEST_ROOT") {
        Some(root) => {
            std::fs::create_dir_all(&root).expect("create CONVOSCOPE_TEST_ROOT");
            let mut d = tempfile::Builder::new().prefix("it-").tempdir_in(root).expect("test dir");
            d.disable_cleanup(true);
            d
        }
        None => tempfile::tempdir().expect("test dir"),
    }
}

/// Sends the log of servers run inside the test process to `CONVOSCOPE_TEST_ROOT/it-servers.log`,
/// once per process, when that variable is set.
fn init_server_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Some(root) = std::env::var_os("CONVOSCOPE_TEST_ROOT") else { return };
        let _ = std::fs::create_dir_all(&root);
        let Ok(file) =
            std::fs::OpenOptions::new().create(true).append(true).open(Path::new(&root).join("it-servers.log"))
        else {
            return;
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,hyper=info,h2=info,reqwest=info,datafusion=info",
            ))
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .try_init();
    });
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the real `convoscope serve` storing under `dir`, with every token set, the PII key
/// given, and `env` on top; its standard error is appended to `dir/serve.log`.
pub fn spawn_serve(dir: &Path, port: u16, env: &[(&str, &str)]) -> std::process::Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("serve.log")).expect("serve.log");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_convoscope"));
    cmd.arg("serve")
        .env("CONVOSCOPE_STORAGE", format!("file://{}", dir.join("store").display()))
        .env("CONVOSCOPE_STATE_DIR", dir.join("state"))
        .env("CONVOSCOPE_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONVOSCOPE_TOKENS", format!("ingest:{INGEST},read:{READ},admin:{ADMIN}"))
        .env("CONVOSCOPE_META_APP_SECRET", META_SECRET)
        .env("CONVOSCOPE_PII_KEY", "child-test-key")
        .stdout(std::process::Stdio::null())
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn convoscope")
}

/// Waits until a server answers `/healthz`.
pub async fn wait_healthy(c: &reqwest::Client, base: &str) {
    let ok = eventually(async || c.get(format!("{base}/healthz")).send().await.is_ok(), Duration::from_secs(30)).await;
    assert!(ok, "server at {base} did not come up");
}

/// Path of a fixture file.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
}

/// A configuration with every secret set, storing under `dir`.
pub fn config(dir: &Path) -> Config {
    Config {
        storage: format!("file://{}", dir.join("store").display()),
        listen: "127.0.0.1:0".into(),
        state_dir: dir.join("state"),
        meta_app_secret: Some(META_SECRET.into()),
        meta_verify_token: Some(VERIFY_TOKEN.into()),
        ultramsg_token: Some(ULTRAMSG_TOKEN.into()),
        tokens: vec![format!("ingest:{INGEST}"), format!("read:{READ}"), format!("admin:{ADMIN}")],
        // Tests flush explicitly; a long age keeps segments from sealing under them.
        flush_interval_secs: 3600.0,
        max_body_bytes: 1 << 20,
        ..Config::default()
    }
}

/// A server running in this process.
pub struct TestServer {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub client: reqwest::Client,
}

impl TestServer {
    pub async fn start(cfg: Config) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        Self::start_on(listener, cfg, None).await
    }

    /// Starts on a bound listener, with the send path's provider.
    pub async fn start_on(
        listener: tokio::net::TcpListener,
        cfg: Config,
        provider: Option<std::sync::Arc<dyn convoscope::send::provider::Provider>>,
    ) -> TestServer {
        init_server_log();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = server::App::start_with_provider(cfg, provider).await.expect("server starts");
        let (stop, rx) = oneshot::channel();
        let a = app.clone();
        let task = tokio::spawn(async move {
            server::run(listener, a, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        TestServer { base, stop: Some(stop), task: Some(task), client: reqwest::Client::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Graceful stop: finishes requests and flushes.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    pub async fn post_meta(&self, body: &[u8]) -> reqwest::Response {
        post_meta_at(&self.client, &self.base, body).await
    }

    pub async fn flush(&self) -> Value {
        let r = self.client.post(self.url("/v1/admin/flush")).bearer_auth(ADMIN).send().await.expect("request");
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Posts SQL to `/v1/query` with `token`: the status and the JSON answer.
    pub async fn sql_as(&self, token: &str, sql: &str) -> (u16, Value) {
        let r = self
            .client
            .post(self.url("/v1/query"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "sql": sql }))
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// GETs `path` with `token`: the status and the JSON answer.
    pub async fn get_as(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).bearer_auth(token).send().await.expect("request");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Runs SQL through `/v1/query`; returns the rows.
    pub async fn query(&self, sql: &str) -> Vec<Vec<Value>> {
        query_at(&self.client, &self.base, sql).await
    }
}

/// Runs SQL through `/v1/query` of the server at `base` with the read token; returns the rows.
pub async fn query_at(client: &reqwest::Client, base: &str, sql: &str) -> Vec<Vec<Value>> {
    let r = client
        .post(format!("{base}/v1/query"))
        .bearer_auth(READ)
        .json(&serde_json::json!({ "sql": sql }))
        .send()
        .await
        .expect("request");
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    serde_json::from_value(v["rows"].clone()).unwrap()
}

/// Posts a body signed as Meta signs it to `/webhooks/meta` of the server at `base`.
pub async fn post_meta_at(c: &reqwest::Client, base: &str, body: &[u8]) -> reqwest::Response {
    let sig = convoscope::signature::sign_meta(META_SECRET, body);
    c.post(format!("{base}/webhooks/meta"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sig)
        .body(body.to_vec())
        .send()
        .await
        .expect("request")
}

/// Posts a body to `/v1/events` of the server at `base` with the ingest token; returns the
/// JSON answer.
pub async fn post_events_at(c: &reqwest::Client, base: &str, body: impl Into<reqwest::Body>) -> Value {
    let r = c.post(format!("{base}/v1/events")).bearer_auth(INGEST).body(body).send().await.expect("request");
    r.json().await.expect("JSON answer")
}

/// Every file under a directory, recursively.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Waits until `f` is true or the time is up.
pub async fn eventually(mut f: impl AsyncFnMut() -> bool, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Access key and secret of the test S3 server.
pub const S3_KEY: &str = "convoscope-test";
pub const S3_SECRET: &str = "convoscope-test-secret";

/// A child process killed (SIGKILL) when dropped, however the test ends.
pub struct Proc(pub std::process::Child);

impl Proc {
    /// Stops it with SIGTERM and waits for it, as a supervisor would.
    pub fn terminate(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real S3-compatible server (s3s-fs, which `scripts/test.sh` installs) on a loopback port,
/// serving bucket `events` from `dir/s3`.
pub struct S3Server {
    pub endpoint: String,
    _proc: Proc,
}

impl S3Server {
    pub async fn start(dir: &Path) -> S3Server {
        let tools = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/convoscope-tools/bin/s3s-fs"));
        let bin = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join("s3s-fs"))
            .chain(tools)
            .find(|p| p.is_file())
            .expect("s3s-fs is not installed: scripts/test.sh installs it into ~/.cache/convoscope-tools/bin");
        std::fs::create_dir_all(dir.join("s3/events")).expect("bucket dir");
        let port = free_port();
        let log = std::fs::File::create(dir.join("s3s-fs.log")).expect("s3s-fs.log");
        let child = std::process::Command::new(bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                S3_KEY,
                "--secret-key",
                S3_SECRET,
            ])
            .arg(dir.join("s3"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn s3s-fs");
        let up = eventually(
            async || tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok(),
            Duration::from_secs(20),
        )
        .await;
        assert!(up, "s3s-fs did not come up");
        S3Server { endpoint: format!("http://127.0.0.1:{port}"), _proc: Proc(child) }
    }

    /// The environment a `convoscope` process needs to use `s3://events/<prefix>` here.
    pub fn env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("CONVOSCOPE_STORAGE", format!("s3://events/{prefix}")),
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", S3_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// The `convoscope` binary with this environment, run to completion: (exit ok, stdout, stderr).
pub async fn convoscope(args: &[&str], env: &[(String, String)]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_convoscope"));
    cmd.args(args).env("CONVOSCOPE_LOG", "warn").kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("run convoscope");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `convoscope ARGS` in the background with this environment, its standard error
/// appended to `log`.
pub fn spawn_convoscope(args: &[&str], env: &[(String, String)], log: &Path) -> Proc {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_convoscope"));
    cmd.args(args).stdout(std::process::Stdio::null()).stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc(cmd.spawn().expect("spawn convoscope"))
}

/// Whether two report rows (JSON objects) are equal, numbers to a relative 1e-9.
pub fn rows_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| rows_equal(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| rows_equal(v, w)))
        }
        _ => a == b,
    }
}

/// A report's rows in a canonical order (sorted by their JSON text with numbers rounded to
/// nine significant digits, so float noise does not reorder them).
pub fn sorted_rows(report: &Value) -> Vec<Value> {
    fn key(v: &Value) -> String {
        match v {
            Value::Number(n) => n.as_f64().map(|f| format!("{f:.9e}")).unwrap_or_else(|| n.to_string()),
            Value::Array(a) => a.iter().map(key).collect::<Vec<_>>().join(","),
            Value::Object(o) => o.iter().map(|(k, v)| format!("{k}={}", key(v))).collect::<Vec<_>>().join(";"),
            other => other.to_string(),
        }
    }
    let mut rows = report["rows"].as_array().cloned().unwrap_or_default();
    rows.sort_by_cached_key(key);
    rows
}

/// The events of a generated data set (`convoscope::generate`, starting 2026-01-01), as the
/// batches of its files.
pub async fn generated_batches(events: usize, days: u32, seed: u64) -> Vec<arrow::array::RecordBatch> {
    use object_store::ObjectStoreExt;
    let generated = convoscope::store::Storage::open("memory://").unwrap();
    let spec =
        convoscope::generate::Spec { events, days, seed, start: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() };
    convoscope::generate::generate(&generated, &spec).await.unwrap();
    let mut out = Vec::new();
    for (_, meta) in generated.list_event_files().await.unwrap() {
        let bytes = generated.store.get(&meta.location).await.unwrap().bytes().await.unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap();
        out.extend(reader.map(|b| b.unwrap()));
    }
    out
}

/// A collector started with `cfg` whose send path sends from `phone_number_id` through a
/// sandbox provider on loopback that calls it back; returns the server and the sandbox.
pub async fn with_sandbox(cfg: Config, phone_number_id: &str, seed: u64) -> (TestServer, convoscope::sandbox::Handle) {
    with_sandbox_as(cfg, convoscope::sandbox::Speaks::Meta, phone_number_id, seed).await
}

/// The auth token of the Twilio account the sandbox plays.
pub const TWILIO_TOKEN: &str = "twilio-auth-token-for-tests";

/// [`with_sandbox`] through the provider the sandbox `speaks`: Meta's Cloud API, or Twilio's
/// Messages API (the collector then checks Twilio's signatures, over its own URL).
pub async fn with_sandbox_as(
    mut cfg: Config,
    speaks: convoscope::sandbox::Speaks,
    phone_number_id: &str,
    seed: u64,
) -> (TestServer, convoscope::sandbox::Handle) {
    use convoscope::sandbox::Speaks;
    use convoscope::send::provider::{MetaClient, Provider, TwilioClient};
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_url = format!("http://{}", collector.local_addr().unwrap());
    let sandbox_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let twilio = speaks == Speaks::Twilio;
    let (router, sb) = convoscope::sandbox::start(convoscope::sandbox::SandboxConfig {
        collector_url: collector_url.clone(),
        app_secret: if twilio { TWILIO_TOKEN } else { META_SECRET }.into(),
        speaks,
        ingest_token: Some(INGEST.into()),
        seed,
        throughput_per_sec: 1000.0,
        time_scale: 0.001,
    });
    let sandbox_url = format!("http://{}", sandbox_listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(sandbox_listener, router).await });
    let provider: std::sync::Arc<dyn Provider> = if twilio {
        cfg.twilio_auth_token = Some(TWILIO_TOKEN.into());
        cfg.public_url = Some(collector_url.clone());
        std::sync::Arc::new(TwilioClient::new(
            &sandbox_url,
            "AC0123456789abcdef0123456789abcdef",
            TWILIO_TOKEN,
            "whatsapp:+15550000000",
            Some(format!("{collector_url}/webhooks/twilio")),
            Duration::from_secs(5),
        ))
    } else {
        std::sync::Arc::new(MetaClient::new(&sandbox_url, "v23.0", phone_number_id, "t", Duration::from_secs(5)))
    };
    (TestServer::start_on(collector, cfg, Some(provider)).await, sb)
}
