//! `convoscope send --experiment X --recipients FILE.csv`: a campaign from a CSV, through a
//! running server's `POST /v1/send`, concurrently within its rate limit.
//!
//! The CSV has a header; column `to` is the recipient, `idempotency_key` is optional (default
//! `<experiment>:<to>`, so running the same file twice sends nothing twice), every other
//! column is a template parameter. A bad row is reported with its line number and skipped.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// What a batch did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub sent: u64,
    /// Refused sends by reason (opted out, no opt-in, ...).
    pub rejected: BTreeMap<String, u64>,
    /// Provider failures by error code.
    pub failed: BTreeMap<String, u64>,
    /// Rows skipped: (line number, why).
    pub bad_rows: Vec<(u64, String)>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "sent: {}", self.sent)?;
        writeln!(f, "rejected: {}", self.rejected.values().sum::<u64>())?;
        for (k, v) in &self.rejected {
            writeln!(f, "  {k}: {v}")?;
        }
        writeln!(f, "failed: {}", self.failed.values().sum::<u64>())?;
        for (k, v) in &self.failed {
            writeln!(f, "  code {k}: {v}")?;
        }
        writeln!(f, "bad rows: {}", self.bad_rows.len())?;
        for (line, why) in &self.bad_rows {
            writeln!(f, "  line {line}: {why}")?;
        }
        Ok(())
    }
}

/// Rows of a recipients file: (line, request body) per good row, and (line, why) per bad one.
pub type Rows = (Vec<(u64, Value)>, Vec<(u64, String)>);

/// Reads the recipients file.
pub fn read_recipients(path: &Path, experiment: &str) -> Result<Rows> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    let headers = rdr.headers().map_err(|e| Error::Invalid(format!("{}: header: {e}", path.display())))?.clone();
    let Some(to_col) = headers.iter().position(|h| h == "to") else {
        return Err(Error::Invalid(format!("{}: the header needs a `to` column", path.display())));
    };
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                bad.push((line, e.to_string()));
                continue;
            }
        };
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.len() != headers.len() {
            bad.push((line, format!("{} fields, the header has {}", rec.len(), headers.len())));
            continue;
        }
        let to = rec.get(to_col).unwrap_or("");
        if crate::pii::e164_digits(to).len() < 6 {
            bad.push((line, "`to` is not a phone number".into()));
            continue;
        }
        let mut params = serde_json::Map::new();
        let mut key = format!("{experiment}:{}", crate::pii::e164_digits(to));
        for (h, v) in headers.iter().zip(rec.iter()) {
            match h {
                "to" => {}
                "idempotency_key" if !v.is_empty() => key = v.to_string(),
                _ => {
                    params.insert(h.to_string(), json!(v));
                }
            }
        }
        good.push((line, json!({"experiment": experiment, "to": to, "params": params, "idempotency_key": key})));
    }
    Ok((good, bad))
}

/// Paces sends to a server's rate limit instead of retrying every 429 at once. Requests leave
/// one per `gap`. A refused one waits the `Retry-After` it was given. When the number's limit
/// refuses, the gap becomes what the server let through in the last second (the first refusal
/// comes once the server's burst is spent, so from the second on this is its rate), widened a
/// tenth, once: the other requests already on their way when it widened are refused for the
/// same overload and change nothing. A recipient's own limit (a few messages to one person)
/// holds that request alone. Each accepted send narrows the gap by a thousandth, probing for a
/// limit raised meanwhile. So a batch meets a refusal now and then (each one a
/// `rate_limited` send in the server's metrics), not several per send.
#[derive(Debug)]
pub struct Pacer {
    state: std::sync::Mutex<PacerState>,
    refusals: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct PacerState {
    /// When the next request may leave.
    next: tokio::time::Instant,
    gap: Duration,
    /// When the gap was last widened: requests that left before then were paced by the old gap.
    widened: tokio::time::Instant,
    /// When the server accepted sends, over the last second.
    accepted: std::collections::VecDeque<tokio::time::Instant>,
}

/// The gap a pacer starts from and never narrows below: 1,000 sends a second.
const PACER_MIN_GAP: Duration = Duration::from_millis(1);
/// The widest gap: one send a second, the slowest a number's limit allows.
const PACER_MAX_GAP: Duration = Duration::from_secs(1);

impl Default for Pacer {
    fn default() -> Self {
        let now = tokio::time::Instant::now();
        Pacer {
            state: std::sync::Mutex::new(PacerState {
                next: now,
                gap: PACER_MIN_GAP,
                widened: now,
                accepted: std::collections::VecDeque::new(),
            }),
            refusals: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl PacerState {
    /// Forgets acceptances more than a second old.
    fn last_second(&mut self, now: tokio::time::Instant) {
        while self.accepted.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1)) {
            self.accepted.pop_front();
        }
    }
}

impl Pacer {
    /// Waits for this request's turn; returns when it left.
    pub async fn turn(&self) -> tokio::time::Instant {
        let at = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let at = s.next.max(tokio::time::Instant::now());
            s.next = at + s.gap;
            at
        };
        tokio::time::sleep_until(at).await;
        at
    }

    /// How many times the server refused a send over its rate.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The gap between requests now.
    pub fn gap(&self) -> Duration {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).gap
    }

    /// The server refused a send that left at `left`: over the number's rate (`per_number`),
    /// or one recipient's.
    pub fn refused(&self, left: tokio::time::Instant, per_number: bool) {
        self.refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !per_number || left < s.widened {
            return;
        }
        let now = tokio::time::Instant::now();
        s.last_second(now);
        let through = Duration::from_secs(1) / (s.accepted.len() as u32).max(1);
        s.gap = through.max(s.gap).mul_f64(1.1).clamp(PACER_MIN_GAP, PACER_MAX_GAP);
        s.widened = now;
    }

    /// The server took a send.
    pub fn accepted(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = tokio::time::Instant::now();
        s.accepted.push_back(now);
        s.last_second(now);
        s.gap = s.gap.mul_f64(0.999).max(PACER_MIN_GAP);
    }

    /// Posts `body` to `url` until the server answers other than 429, in turn.
    pub async fn post(
        &self,
        http: &reqwest::Client,
        url: &str,
        token: &str,
        body: &Value,
    ) -> std::result::Result<(u16, Value), String> {
        loop {
            let left = self.turn().await;
            match http.post(url).bearer_auth(token).json(body).send().await {
                Ok(r) if r.status() == 429 => {
                    let wait = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map_or(Duration::from_secs(1), Duration::from_secs);
                    // The send path names the limit that refused; anything else is taken as
                    // the whole server's.
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    self.refused(left, v["limit"] != "per-recipient");
                    tokio::time::sleep(wait).await;
                }
                Ok(r) => {
                    self.accepted();
                    let s = r.status().as_u16();
                    return Ok((s, r.json().await.unwrap_or(Value::Null)));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// Sends every good row through `base_url`'s `/v1/send`, paced to its rate limit.
pub async fn run(base_url: &str, token: &str, experiment: &str, file: &Path, concurrency: usize) -> Result<Summary> {
    let (rows, bad) = read_recipients(file, experiment)?;
    let bar = indicatif::ProgressBar::new(rows.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} sends  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap_or_default();
    let url = format!("{}/v1/send", base_url.trim_end_matches('/'));
    let pacer = Pacer::default();
    let outcomes: Vec<std::result::Result<(u16, Value), String>> = futures::stream::iter(rows)
        .map(|(_, body)| {
            let (http, url, bar, pacer) = (http.clone(), url.clone(), bar.clone(), &pacer);
            async move {
                let out = pacer.post(&http, &url, token, &body).await;
                bar.inc(1);
                out
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    let mut s = Summary { bad_rows: bad, ..Default::default() };
    for o in outcomes {
        match o {
            Ok((200, _)) => s.sent += 1,
            Ok((401 | 403, v)) | Ok((404, v)) => {
                return Err(Error::Invalid(format!(
                    "the server refused the batch: {}",
                    v["message"].as_str().unwrap_or("")
                )));
            }
            Ok((409, v)) => *s.rejected.entry(v["message"].as_str().unwrap_or("refused").to_string()).or_default() += 1,
            Ok((502, v)) => {
                let msg = v["message"].as_str().unwrap_or("");
                let code = msg.split("error ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("unknown");
                *s.failed.entry(code.to_string()).or_default() += 1;
            }
            Ok((status, v)) => {
                *s.failed.entry(format!("http {status}: {}", v["error"].as_str().unwrap_or(""))).or_default() += 1
            }
            Err(e) => *s.failed.entry(format!("transport: {e}")).or_default() += 1,
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pacer_widens_once_per_overload_and_not_for_one_recipient() {
        let p = Pacer::default();
        let left = p.turn().await;
        for _ in 0..80 {
            p.accepted();
        }
        // Sixteen sends on their way when the number's limit was reached: one widening, to the
        // rate the server let through (80 in the last second), a tenth wider.
        for _ in 0..16 {
            p.refused(left, true);
        }
        let once = p.gap();
        assert!(once >= Duration::from_millis(13) && once < Duration::from_millis(14), "{once:?}");
        // A recipient's own limit changes nothing for the batch.
        let later = p.turn().await;
        p.refused(later, false);
        assert_eq!(p.gap(), once);
        // A send that left after the widening and is refused again widens it again.
        p.refused(later, true);
        assert!(p.gap() > once);
        assert_eq!(p.refusals(), 18);
        // Accepted sends narrow it slowly.
        let before = p.gap();
        p.accepted();
        assert!(p.gap() < before);
    }

    #[test]
    fn bad_rows_are_reported_by_line_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.csv");
        std::fs::write(&f, "to,name\n+15550001001,Ana\nnot-a-number,Bo\n+15550001002\n+15550001003,Cy\n").unwrap();
        let (good, bad) = read_recipients(&f, "spring_cta").unwrap();
        assert_eq!(good.len(), 2);
        assert_eq!(good[0].1["params"]["name"], "Ana");
        assert_eq!(good[0].1["idempotency_key"], "spring_cta:15550001001");
        assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), [3, 4]);
        std::fs::write(&f, "phone\n1\n").unwrap();
        assert!(read_recipients(&f, "x").unwrap_err().to_string().contains("`to`"));
    }
}
