//! Past one machine, for real: a Ballista scheduler and two executors (the `convoscope`
//! binary's `scheduler` and `executor` commands) over a store on a real S3 server, and three
//! collectors sharing one S3 store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// The JSON of `convoscope report NAME` with this environment (and engine flag, if any).
async fn report(name: &str, env: &[(String, String)], engine: Option<&str>) -> Result<Value, String> {
    let mut args = vec!["report", name, "--format", "json"];
    if let Some(e) = engine {
        args.extend(["--engine", e]);
    }
    let (ok, out, err) = convoscope(&args, env).await;
    if !ok {
        return Err(err);
    }
    serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))
}

fn count_lines(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter(|l| l.contains(needle)).count()
}

/// Every object in the store under `dir/s3`, with its size: what a run may not change.
fn objects(dir: &Path) -> BTreeMap<String, u64> {
    all_files(&dir.join("s3"))
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains(".s3s"))
        .map(|p| (p.to_string_lossy().into_owned(), std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0)))
        .collect()
}

#[tokio::test]
async fn reports_on_a_ballista_cluster_over_s3_equal_the_local_engine() {
    let dir = test_dir();
    let d = dir.path();
    let s3 = S3Server::start(d).await;
    let mut env = s3.env("cluster");
    env.push(("CONVOSCOPE_STATE_DIR".into(), d.join("state").display().to_string()));
    // Two executors on one machine: each a small share, not Ballista's default of most of it.
    env.push(("CONVOSCOPE_QUERY_MEMORY_BYTES".into(), (256u64 << 20).to_string()));
    let (ok, _, err) = convoscope(&["generate", "--events", "60000", "--days", "14"], &env).await;
    assert!(ok, "generate: {err}");

    let scheduler_port = free_port();
    let scheduler = format!("127.0.0.1:{scheduler_port}");
    let engine = format!("ballista://{scheduler}");
    let scheduler_log = d.join("scheduler.log");
    let mut info = env.clone();
    info.push(("CONVOSCOPE_LOG".into(), "info".into()));
    let sched = spawn_convoscope(&["scheduler", "--bind", &scheduler], &info, &scheduler_log);
    let mut executors = Vec::new();
    for n in 0..2 {
        let (flight, grpc) = (free_port(), free_port());
        let log = d.join(format!("executor-{n}.log"));
        let work = d.join(format!("executor-{n}"));
        let args = [
            "executor",
            "--scheduler",
            &scheduler,
            "--bind",
            &format!("127.0.0.1:{flight}"),
            "--grpc-port",
            &grpc.to_string(),
            "--slots",
            "2",
            "--work-dir",
            &work.display().to_string(),
        ];
        executors.push((spawn_convoscope(&args, &info, &log), log));
    }
    for (_, log) in &executors {
        let registered =
            eventually(async || count_lines(log, "Executor registration succeed") > 0, Duration::from_secs(60)).await;
        assert!(registered, "an executor did not register: {}", std::fs::read_to_string(log).unwrap_or_default());
    }
    let before = objects(d);

    // Every report: the same answer from the cluster as from this process.
    let names = convoscope::analytics::reports::names();
    for name in &names {
        let local = report(name, &env, None).await.unwrap_or_else(|e| panic!("{name} locally: {e}"));
        let jobs = count_lines(&scheduler_log, "Job queued");
        let remote = report(name, &env, Some(&engine)).await.unwrap_or_else(|e| panic!("{name} on the cluster: {e}"));
        assert_eq!(count_lines(&scheduler_log, "Job queued"), jobs + 1, "{name} did not run on the cluster");
        let (l, r) = (sorted_rows(&local), sorted_rows(&remote));
        assert!(!l.is_empty(), "{name} has no rows to compare");
        assert_eq!(l.len(), r.len(), "{name}: row counts differ");
        for (a, b) in l.iter().zip(&r) {
            assert!(rows_equal(a, b), "{name}: local {a} != cluster {b}");
        }
    }
    // Both executors took tasks.
    for (_, log) in &executors {
        assert!(count_lines(log, "Execute task") > 0, "an executor ran no task");
    }

    // Ad hoc queries: answered by the cluster; a statement that writes is refused before it
    // reaches the scheduler.
    let sql = "SELECT event_type, count(*) AS n FROM events GROUP BY event_type ORDER BY event_type";
    let (ok, local, err) = convoscope(&["query", sql, "--format", "json"], &env).await;
    assert!(ok, "{err}");
    let jobs = count_lines(&scheduler_log, "Job queued");
    let (ok, remote, err) = convoscope(&["query", sql, "--format", "json", "--engine", &engine], &env).await;
    assert!(ok, "{err}");
    assert_eq!(local, remote);
    for write in ["DELETE FROM events", "CREATE TABLE t AS SELECT 1", "COPY (SELECT 1) TO '/tmp/x.csv'"] {
        let (ok, _, err) = convoscope(&["query", write, "--engine", &engine], &env).await;
        assert!(!ok && !err.is_empty(), "{write} was not refused");
    }
    assert_eq!(count_lines(&scheduler_log, "Job queued"), jobs + 1, "a refused statement reached the scheduler");

    // A tenant's session on the cluster: its filtered views travel inside the plan, and give
    // what they give here (the generator's rows are one account's: the tenant's, and none of
    // the other's).
    let conf = d.join("tenants.toml");
    std::fs::write(
        &conf,
        "[[tenant]]\nname = \"gen\"\naccount_ids = [\"100200300400500\"]\n\
         [[tenant]]\nname = \"none\"\nphone_number_ids = [\"no-such-number\"]\n",
    )
    .unwrap();
    let conf = conf.display().to_string();
    for (tenant, name) in [("gen", "funnel"), ("gen", "experiment"), ("none", "funnel")] {
        let run = async |engine: Option<&str>| {
            let mut args = vec!["--config", conf.as_str(), "report", name, "--format", "json", "--tenant", tenant];
            args.extend(engine.map(|e| ["--engine", e]).into_iter().flatten());
            let (ok, out, err) = convoscope(&args, &env).await;
            assert!(ok, "{tenant} {name}: {err}");
            serde_json::from_str::<Value>(&out).unwrap()
        };
        let (l, r) = (sorted_rows(&run(None).await), sorted_rows(&run(Some(&engine)).await));
        assert_eq!(l.is_empty(), tenant == "none", "{tenant} {name}");
        assert!(
            l.len() == r.len() && l.iter().zip(&r).all(|(a, b)| rows_equal(a, b)),
            "{tenant} {name} differs on the cluster"
        );
    }

    // The service on the cluster: /v1/reports, /v1/query and the report page.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut serve_env = env.clone();
    serve_env.extend([
        ("CONVOSCOPE_ENGINE".to_string(), engine.clone()),
        ("CONVOSCOPE_LISTEN".into(), format!("127.0.0.1:{port}")),
        ("CONVOSCOPE_TOKENS".into(), format!("read:{READ},admin:{ADMIN}")),
        ("CONVOSCOPE_PII_KEY".into(), "cluster-test-key".into()),
        ("CONVOSCOPE_STATE_DIR".into(), d.join("serve-state").display().to_string()),
    ]);
    let serve = spawn_convoscope(&["serve"], &serve_env, &d.join("serve.log"));
    let c = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    wait_healthy(&c, &base).await;
    let jobs = count_lines(&scheduler_log, "Job queued");
    let api: Value = c
        .get(format!("{base}/v1/reports/cost?format=json"))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let local = report("cost", &env, None).await.unwrap();
    let (l, r) = (sorted_rows(&local), sorted_rows(&api));
    assert!(l.len() == r.len() && l.iter().zip(&r).all(|(a, b)| rows_equal(a, b)), "/v1/reports/cost differs");
    let count = "SELECT count(*) AS n FROM events";
    let r = c.post(format!("{base}/v1/query")).bearer_auth(READ).json(&json!({"sql": count})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let n: Value = r.json().await.unwrap();
    let (ok, local_count, err) = convoscope(&["query", count, "--format", "csv"], &env).await;
    assert!(ok, "{err}");
    assert_eq!(n["rows"][0][0].as_i64().map(|n| n.to_string()).as_deref(), local_count.lines().nth(1));
    let r = c
        .post(format!("{base}/v1/query"))
        .bearer_auth(READ)
        .json(&json!({"sql": "DROP TABLE events"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a writing statement must be refused");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "bad_query");
    let page = c.get(format!("{base}/")).bearer_auth(READ).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("data-report=\"funnel\""));
    // cost and the count, then the page's reports (cost perhaps from the page's cache).
    assert!(count_lines(&scheduler_log, "Job queued") >= jobs + 1 + names.len(), "the service did not use the cluster");
    drop(serve);

    // An executor killed during a report: the report finishes on the other (once the scheduler
    // has given the lost executor up, within its executor timeout), with the same answer.
    let local = report("cost", &env, None).await.unwrap();
    let jobs = count_lines(&scheduler_log, "Job queued");
    let running = {
        // A minute's limit: the outcome when Ballista loses the job (below) comes at the limit.
        let mut env = env.clone();
        env.push(("CONVOSCOPE_REPORT_TIMEOUT_SECS".into(), "60".into()));
        let engine = engine.clone();
        tokio::spawn(async move { report("cost", &env, Some(&engine)).await })
    };
    let queued = eventually(async || count_lines(&scheduler_log, "Job queued") > jobs, Duration::from_secs(30)).await;
    assert!(queued, "the report never reached the scheduler");
    // Killed once it runs a task of this job.
    let (victim, victim_log) = executors.pop().expect("two executors");
    let tasks = count_lines(&victim_log, "Execute task");
    let working = eventually(async || count_lines(&victim_log, "Execute task") > tasks, Duration::from_secs(30)).await;
    assert!(working, "the executor to kill was given no task of the report");
    drop(victim); // SIGKILL
    let started = Instant::now();
    // The documented outcomes: it finishes on the other executor with the same answer (most
    // runs), or, when Ballista 55 loses a task's status while it reruns a stage whose output
    // died with the executor, it fails at its time limit with an error that says so.
    match running.await.unwrap() {
        Ok(remote) => {
            let (l, r) = (sorted_rows(&local), sorted_rows(&remote));
            assert!(
                l.len() == r.len() && l.iter().zip(&r).all(|(a, b)| rows_equal(a, b)),
                "cost differs after the kill"
            );
        }
        Err(e) => assert!(e.contains("report_timeout_secs"), "the report failed unclearly after the kill: {e}"),
    }
    eprintln!("cost with an executor killed under it ended {:.1}s after the kill", started.elapsed().as_secs_f64());
    let remote = report("cost", &env, Some(&engine)).await.expect("the next run");
    let (l, r) = (sorted_rows(&local), sorted_rows(&remote));
    assert!(l.len() == r.len() && l.iter().zip(&r).all(|(a, b)| rows_equal(a, b)), "the next run differs");
    let lost = eventually(async || count_lines(&scheduler_log, "Removing executor") > 0, Duration::from_secs(90)).await;
    assert!(lost, "the scheduler never gave the killed executor up");

    // Reports write nothing to the store.
    assert_eq!(objects(d), before, "the cluster changed the store");

    // After `compact`, the experiment report sums the table compaction kept, on the cluster
    // as here, with the answer it computed before.
    let computed = sorted_rows(&report("experiment", &env, None).await.unwrap());
    let (ok, out, err) = convoscope(&["compact"], &env).await;
    assert!(ok && out.contains("kept the experiment report's rows"), "{out}{err}");
    for engine in [None, Some(engine.as_str())] {
        let kept = sorted_rows(&report("experiment", &env, engine).await.unwrap());
        assert!(
            kept.len() == computed.len() && kept.iter().zip(&computed).all(|(a, b)| rows_equal(a, b)),
            "the experiment report from the kept table differs ({engine:?})"
        );
    }

    // A scheduler that is down: a clear error naming it, at once.
    drop(sched);
    let started = Instant::now();
    let e = report("funnel", &env, Some(&engine)).await.expect_err("no scheduler");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?} to fail", started.elapsed());
    assert!(e.contains(&scheduler) && e.contains("not reachable"), "{e}");
    drop(executors);
}

/// A signed Meta webhook with a `sent` and a `delivered` status for each message.
fn statuses(ids: &[String]) -> Vec<u8> {
    let statuses: Vec<Value> = ids
        .iter()
        .flat_map(|id| {
            ["sent", "delivered"].into_iter().enumerate().map(move |(k, s)| {
                json!({"id": id, "status": s, "timestamp": (1_767_254_400 + k as i64 * 30).to_string(),
                       "recipient_id": "15550109876"})
            })
        })
        .collect();
    json!({"object": "whatsapp_business_account", "entry": [{"id": "100200300400500", "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "15550101234", "phone_number_id": "600700800900111"},
                  "statuses": statuses}}]}]})
    .to_string()
    .into_bytes()
}

/// One collector of the three: its address, state and logs (one per life).
struct Collector {
    base: String,
    env: Vec<(String, String)>,
    dir: std::path::PathBuf,
    lives: usize,
    proc: Option<Proc>,
}

impl Collector {
    fn start(&mut self) {
        self.lives += 1;
        let log = self.dir.join(format!("serve-{}.log", self.lives));
        self.proc = Some(spawn_convoscope(
            &["--config", &self.dir.join("convoscope.toml").display().to_string(), "serve"],
            &self.env,
            &log,
        ));
    }

    fn logs(&self) -> Vec<(usize, String)> {
        (1..=self.lives)
            .map(|life| (life, std::fs::read_to_string(self.dir.join(format!("serve-{life}.log"))).unwrap_or_default()))
            .collect()
    }
}

/// Posts `body` to the collectors from `first` on until one acknowledges it, as a load
/// balancer retries on another; `None` when none did.
async fn post_to_any(c: &reqwest::Client, bases: &[String], first: usize, body: &[u8]) -> Option<usize> {
    let sig = convoscope::signature::sign_meta(META_SECRET, body);
    for k in 0..bases.len() * 3 {
        let n = (first + k) % bases.len();
        let sent = c
            .post(format!("{}/webhooks/meta", bases[n]))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", &sig)
            .body(body.to_vec())
            .send()
            .await;
        if sent.is_ok_and(|r| r.status() == 200) {
            return Some(n);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn three_collectors_share_one_s3_store() {
    let dir = test_dir();
    let d = dir.path();
    let s3 = S3Server::start(d).await;
    let env = s3.env("shared");
    let mut collectors: Vec<Collector> = (0..3)
        .map(|n| {
            let cdir = d.join(format!("collector-{n}"));
            std::fs::create_dir_all(&cdir).unwrap();
            // Compaction every two seconds, with a short grace period: many rounds, on all
            // three, while the load runs.
            std::fs::write(
                cdir.join("convoscope.toml"),
                "compact_every_secs = 2\ncompact_max_events = 100000\nflush_interval_secs = 1\n\
                 request_timeout_secs = 2\nquery_timeout_secs = 2\nreport_timeout_secs = 3\n",
            )
            .unwrap();
            let port = free_port();
            let mut env = env.clone();
            env.extend([
                ("CONVOSCOPE_LISTEN".to_string(), format!("127.0.0.1:{port}")),
                ("CONVOSCOPE_STATE_DIR".into(), cdir.join("state").display().to_string()),
                ("CONVOSCOPE_TOKENS".into(), format!("ingest:{INGEST},read:{READ},admin:{ADMIN}")),
                ("CONVOSCOPE_META_APP_SECRET".into(), META_SECRET.into()),
                // One key for all: a contact is the same contact whichever collector saw it.
                ("CONVOSCOPE_PII_KEY".into(), "shared-store-key".into()),
                ("CONVOSCOPE_LOG".into(), "info".into()),
            ]);
            Collector { base: format!("http://127.0.0.1:{port}"), env, dir: cdir, lives: 0, proc: None }
        })
        .collect();
    let c = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    for col in &mut collectors {
        col.start();
        wait_healthy(&c, &col.base).await;
    }
    let bases: Vec<String> = collectors.iter().map(|c| c.base.clone()).collect();

    // Writers spread webhooks over the three; every fifth body is also delivered to the next
    // collector, as Meta retrying onto another one behind the load balancer.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..6 {
        let (c, bases, stop) = (c.clone(), bases.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = BTreeSet::new();
            let mut twice = 0;
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ids: Vec<String> = (0..4).map(|k| format!("wamid.shared-{w}-{i}-{k}")).collect();
                let body = statuses(&ids);
                let first = (w + i) % bases.len();
                if let Some(n) = post_to_any(&c, &bases, first, &body).await {
                    acked.extend(ids);
                    if i % 5 == 0 && post_to_any(&c, &bases, n + 1, &body).await.is_some() {
                        twice += 1;
                    }
                }
                i += 1;
            }
            (acked, twice)
        }));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    // SIGKILL one mid-load, and bring it back on the same log.
    collectors[0].proc.take();
    tokio::time::sleep(Duration::from_millis(500)).await;
    collectors[0].start();
    wait_healthy(&c, &collectors[0].base).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Stop the collector that merges now, as a deploy does: it gives the lease up, and
    // another one takes the upkeep over while the load goes on.
    let last_merge = |col: &Collector| {
        col.logs()
            .iter()
            .flat_map(|(_, log)| {
                log.lines().filter(|l| l.contains("merged files")).map(|l| l[..27].to_string()).collect::<Vec<_>>()
            })
            .max()
    };
    let holder = (0..collectors.len()).max_by_key(|n| last_merge(&collectors[*n])).expect("collectors");
    assert!(last_merge(&collectors[holder]).is_some(), "no collector has merged anything yet");
    if let Some(p) = collectors[holder].proc.take() {
        p.terminate();
    }
    // Six seconds: the stopped holder's terms would last longer than that, had it not given
    // the lease up.
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut acked, mut twice) = (BTreeSet::new(), 0);
    for w in writers {
        let (a, t) = w.await.unwrap();
        acked.extend(a);
        twice += t;
    }
    assert!(
        acked.len() > 500 && twice > 20,
        "too little load to mean anything: {} messages, {twice} twice",
        acked.len()
    );

    // Everything acknowledged reaches the store; a few more rounds of compaction run on it.
    for col in collectors.iter().filter(|col| col.proc.is_some()) {
        let r = c.post(format!("{}/v1/admin/flush", col.base)).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    for col in &mut collectors {
        if let Some(p) = col.proc.take() {
            p.terminate();
        }
    }

    // Every acknowledged message is stored; every report counts each once.
    let stored = convoscope(
        &["query", "SELECT DISTINCT message_id FROM events WHERE event_type = 'message.delivered'", "--format", "csv"],
        &env,
    )
    .await;
    assert!(stored.0, "{}", stored.2);
    let stored: BTreeSet<String> = stored.1.lines().skip(1).map(str::to_string).collect();
    let lost: Vec<_> = acked.difference(&stored).take(5).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?} (of {})", acked.len());
    let funnel = report("funnel", &env, None).await.expect("funnel");
    let total =
        |col: &str| funnel["rows"].as_array().unwrap().iter().map(|r| r[col].as_i64().unwrap_or(0)).sum::<i64>();
    assert_eq!(total("sent"), acked.len() as i64, "funnel counted a message other than once");
    assert_eq!(total("delivered"), acked.len() as i64);

    // Compaction ran under the lease. One collector at a time: ordered by time, each
    // collector's merges are one run, the lease passing on only when its holder stopped. No
    // file went into two merges, but for a merge whose maker stopped before deleting what it
    // replaced (the SIGKILLed life, the stopped holder's last round), which the next merges
    // again.
    let stopped_lives = [(0, 1), (holder, collectors[holder].lives)];
    let mut merges: Vec<(String, usize, usize, Vec<String>)> = Vec::new();
    for (n, col) in collectors.iter().enumerate() {
        for (life, log) in col.logs() {
            assert!(!log.contains("could not compact the day"), "collector {n} failed a merge:\n{log}");
            for line in log.lines().filter(|l| l.contains("merged files")) {
                let inputs = line.split("inputs=").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("");
                let inputs = inputs.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
                merges.push((line[..27].to_string(), n, life, inputs));
            }
        }
    }
    merges.sort();
    assert!(merges.len() >= 3, "only {} merges ran: the test did not exercise compaction", merges.len());
    let mut runs: Vec<usize> = merges.iter().map(|m| m.1).collect();
    runs.dedup();
    let distinct: BTreeSet<usize> = runs.iter().copied().collect();
    assert_eq!(runs.len(), distinct.len(), "collectors merged by turns, not one at a time: {runs:?}");
    assert!(runs.len() >= 2, "the lease never passed on when its holder ({holder}) stopped: merges by {runs:?}");
    let mut merged_by: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    for (_, n, life, inputs) in &merges {
        for input in inputs {
            merged_by.entry(input.as_str()).or_default().push((*n, *life));
        }
    }
    for (file, by) in &merged_by {
        let again = by.iter().filter(|who| !stopped_lives.contains(who)).count();
        assert!(again <= 1, "{file} was merged {} times: {by:?}", by.len());
    }

    // A last compaction by the command (taking the lease as the collectors did) leaves each
    // event once, and no event was lost to any merge.
    let (ok, _, err) = convoscope(&["compact"], &env).await;
    assert!(ok, "{err}");
    let (ok, out, err) = convoscope(
        &["query", "SELECT count(*) AS rows, count(DISTINCT event_id) AS ids FROM events", "--format", "csv"],
        &env,
    )
    .await;
    assert!(ok, "{err}");
    let counts: Vec<i64> = out.lines().nth(1).unwrap_or("").split(',').filter_map(|v| v.parse().ok()).collect();
    assert_eq!(counts.len(), 2, "{out}");
    assert_eq!(counts[0], counts[1], "duplicates left after compaction: {out}");
    assert_eq!(counts[1], acked.len() as i64 * 2, "events lost or invented: {out}");
}
