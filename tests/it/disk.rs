//! Disk trouble under the write-ahead log, with the real binary and a real small file system
//! (tmpfs) as the log directory: a full or read-only log answers 503 with Retry-After, says why
//! in `/readyz` and in its log, recovers by itself, and loses no acknowledged event.
//!
//! Mounting needs root (CI runs as root). Elsewhere the test fails and says so, unless
//! `CONVOSCOPE_NO_MOUNT_TESTS=1` asks to skip it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(path: &Path, size: &str) -> Option<Mount> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        if out.status.success() {
            return Some(Mount(path.to_path_buf()));
        }
        let why = String::from_utf8_lossy(&out.stderr);
        if std::env::var_os("CONVOSCOPE_NO_MOUNT_TESTS").is_some() {
            eprintln!("skipped: cannot mount a tmpfs ({why}) and CONVOSCOPE_NO_MOUNT_TESTS is set");
            return None;
        }
        panic!("this test mounts a tmpfs and needs root: {why} (set CONVOSCOPE_NO_MOUNT_TESTS=1 to skip it)");
    }

    fn remount(&self, opts: &str) {
        let st = Command::new("mount").args(["-o", &format!("remount,{opts}")]).arg(&self.0).status().expect("mount");
        assert!(st.success(), "remount {opts} failed");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills what is left of the file system at `path` with one file.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("create filler");
    let chunk = vec![7u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

struct Client {
    c: reqwest::Client,
    base: String,
    next: u64,
    acked: BTreeSet<String>,
}

impl Client {
    /// Posts a batch of 40 new events; returns the status, the answer and the batch's ids.
    async fn post(&mut self) -> (u16, Value, Vec<String>) {
        self.post_n(40).await
    }

    /// Posts a batch of `n` new events.
    async fn post_n(&mut self, n: usize) -> (u16, Value, Vec<String>) {
        let ids: Vec<String> = (0..n)
            .map(|_| {
                self.next += 1;
                format!("disk-{}", self.next)
            })
            .collect();
        let body: String = ids
            .iter()
            .map(|id| {
                json!({"event_id": id, "event_type": "conversion", "occurred_at": "2026-01-06T10:00:00Z", "revenue_micros": 100})
                    .to_string()
                    + "\n"
            })
            .collect();
        let r = self.c.post(format!("{}/v1/events", self.base)).bearer_auth(INGEST).body(body).send().await.unwrap();
        let status = r.status().as_u16();
        if status == 503 {
            assert!(r.headers().contains_key("retry-after"), "503 without Retry-After");
        }
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status == 200 {
            self.acked.extend(ids.iter().cloned());
        }
        (status, v, ids)
    }

    /// Posts until the log refuses; returns the refusal's message.
    async fn post_until_refused(&mut self) -> String {
        for _ in 0..2000 {
            let (status, v, _) = self.post().await;
            match status {
                200 => {}
                503 => return v["message"].as_str().unwrap_or_default().to_string(),
                s => panic!("unexpected {s}: {v}"),
            }
        }
        panic!("the log never filled");
    }

    /// Posts until the log takes writes again (the flusher makes room by itself); returns the
    /// accepted batch's ids.
    async fn post_until_accepted(&mut self) -> Vec<String> {
        for _ in 0..300 {
            let (status, _, ids) = self.post().await;
            if status == 200 {
                return ids;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the log did not recover");
    }

    async fn readyz(&self) -> (u16, String) {
        let r = self.c.get(format!("{}/readyz", self.base)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn flush(&self) {
        let r = self.c.post(format!("{}/v1/admin/flush", self.base)).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
}

#[tokio::test]
async fn full_or_read_only_log_answers_503_recovers_and_loses_nothing() {
    let dir = test_dir();
    let wal = dir.path().join("wal");
    std::fs::create_dir_all(&wal).unwrap();
    let Some(mount) = Mount::tmpfs(&wal, "256k") else { return };
    // The object store on its own file system, so step 1 can hold the flusher back.
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let Some(store_mount) = Mount::tmpfs(&store, "64m") else { return };
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = [("CONVOSCOPE_WAL_DIR", wal.to_str().unwrap()), ("CONVOSCOPE_FLUSH_INTERVAL_SECS", "3600")];
    let mut child = spawn_serve(dir.path(), port, &env);
    let c = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    wait_healthy(&c, &base).await;
    let mut cl = Client { c, base: base.clone(), next: 0, acked: BTreeSet::new() };

    // 1. The log's disk fills: 503, and readiness says why. The failed segment is sealed and
    //    flushed, which makes room, so the log takes writes again on its own. The object store
    //    is read-only until readiness has been read: otherwise the flusher can make room first
    //    and readiness rightly says 200.
    store_mount.remount("ro");
    let reserve = wal.join("reserve");
    std::fs::write(&reserve, [1u8; 8192]).unwrap();
    let msg = cl.post_until_refused().await;
    assert!(msg.contains("No space left on device"), "{msg}");
    let (status, why) = cl.readyz().await;
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("No space left on device"), "{why}");
    // Two pages free again, too few for a big batch: readiness stays 503 while the write that
    // failed still would not fit, though a one-page probe would pass.
    std::fs::remove_file(&reserve).unwrap();
    let (status, v, _) = cl.post_n(400).await;
    assert_eq!(status, 503, "{v}");
    let (status, why) = cl.readyz().await;
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("No space left on device"), "{why}");
    store_mount.remount("rw");
    // This batch lands in the segment that step 2 flushes with the disk full.
    let before_full = cl.post_until_accepted().await;
    assert_eq!(cl.readyz().await.0, 200);

    // 2. Full again, with no room left even for the record of flushed ids: the flusher deletes
    //    the flushed segment first to make room, then records the ids.
    fill(&wal.join("filler"));
    let msg = cl.post_until_refused().await;
    assert!(msg.contains("No space left on device"), "{msg}");
    cl.post_until_accepted().await;

    // 3. Read-only (flushed first: a file open for writing keeps a remount from succeeding).
    cl.flush().await;
    mount.remount("ro");
    let (status, v, _) = cl.post().await;
    assert_eq!(status, 503, "{v}");
    assert!(v["message"].as_str().unwrap().contains("Read-only file system"), "{v}");
    let (status, why) = cl.readyz().await;
    assert_eq!(status, 503);
    assert!(why.contains("Read-only file system"), "{why}");
    mount.remount("rw");
    // Readiness probes the disk itself, so it turns 200 before any write arrives.
    assert_eq!(cl.readyz().await.0, 200);
    cl.post_until_accepted().await;

    // 4. Every acknowledged event is stored exactly once.
    cl.flush().await;
    let rows = query_at(&cl.c, &base, "SELECT event_id, count(*) FROM events GROUP BY event_id").await;
    let stored: BTreeSet<String> = rows.iter().map(|r| r[0].as_str().unwrap().to_string()).collect();
    assert!(rows.iter().all(|r| r[1] == 1), "an event was stored twice");
    let lost: Vec<_> = cl.acked.difference(&stored).take(5).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?} of {}", cl.acked.len());
    let extra: Vec<_> = stored.difference(&cl.acked).take(5).collect();
    assert!(extra.is_empty(), "stored but refused: {extra:?}");

    // 5. The ids recorded after the disk-full flush survive a restart.
    let _ = child.kill();
    let _ = child.wait();
    let mut child = spawn_serve(dir.path(), port, &env);
    wait_healthy(&cl.c, &base).await;
    let body: String = before_full
        .iter()
        .map(|id| {
            json!({"event_id": id, "event_type": "conversion", "occurred_at": "2026-01-06T10:00:00Z"}).to_string()
                + "\n"
        })
        .collect();
    let v = post_events_at(&cl.c, &base, body).await;
    assert_eq!(v["duplicates"], before_full.len(), "{v}");
    let _ = child.kill();
    let _ = child.wait();

    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    for line in [
        "write-ahead log write failed",
        "No space left on device",
        "Read-only file system",
        "cannot record flushed ids",
    ] {
        assert!(log.contains(line), "server log lacks {line:?}:\n{log}");
    }
    assert!(!log.contains("panicked"), "{log}");
    drop(mount);
    drop(store_mount);
}
