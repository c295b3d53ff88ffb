//! Where queries and reports run: threads of their own, a number at once, a time limit.
//!
//! The collector's promise (a webhook is answered as soon as its events are fsynced) must hold
//! whatever readers do. So queries never run on the service's runtime: each runs as a task on
//! a runtime of its own ([`Executor`]), whose threads ask the kernel for a lower priority, so
//! webhook handlers, the log writer and the flusher are scheduled first when the cores are
//! busy. At most `max_concurrent_queries` run at once, and the next is refused at once
//! ([`Error::QueryBusy`], 429) rather than queued: a queue that grows holds memory and gives
//! answers nobody waits for any more. A query past its time limit is cancelled: its task is
//! aborted, which drops DataFusion's streams and stops the tasks they spawned; so is a query
//! whose caller goes away (the HTTP handler's future is dropped with its [`AbortOnDrop`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::QueryLimits;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// The nice value query threads ask for: below the collector's threads, so that under load the
/// kernel runs a webhook handler before a scan, while an idle machine still gives queries
/// every core.
const QUERY_THREAD_NICE: i32 = 10;

/// What is run: an ad hoc query or a report. They share the threads and the slots; their
/// time limits and metric labels differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    Query,
    Report,
}

impl Work {
    /// Its `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            Work::Query => "query",
            Work::Report => "report",
        }
    }
}

/// The runtime queries run on. Shut down in the background when dropped, since the last
/// handle may be dropped inside another runtime, where a blocking shutdown would panic.
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Aborts a task when dropped: a caller that stops waiting stops the work.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Counts a running query while it lives.
struct Running(Option<prometheus::IntGauge>);

impl Running {
    fn new(gauge: Option<prometheus::IntGauge>) -> Self {
        if let Some(g) = &gauge {
            g.inc();
        }
        Running(gauge)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

/// Counts a query cancelled by its caller, if dropped before it is disarmed.
struct Unanswered(Option<prometheus::IntCounter>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.inc();
        }
    }
}

/// Runs queries and reports within [`QueryLimits`].
pub struct Executor {
    runtime: QueryRuntime,
    /// One thread that checks statements before they run. A query that never yields (a join
    /// that emits billions of rows from one input batch) can hold every query thread for its
    /// whole time limit; a statement checked on those threads would wait for it, and be cut
    /// at its own limit instead of refused at once.
    checker: QueryRuntime,
    slots: Arc<Semaphore>,
    limits: QueryLimits,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").field("limits", &self.limits).finish()
    }
}

impl Executor {
    /// Starts the query threads.
    pub fn new(limits: QueryLimits, metrics: Option<Arc<Metrics>>) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.threads.max(1))
            .thread_name("convoscope-query")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the query threads", e))?;
        let checker = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("convoscope-query-check")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the query checker", e))?;
        Ok(Executor {
            runtime: QueryRuntime(Some(runtime)),
            checker: QueryRuntime(Some(checker)),
            slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            limits,
            metrics,
        })
    }

    /// The limits it runs within.
    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Runs `work` on the query threads, if a slot is free, within its time limit.
    pub async fn run<T, F>(&self, kind: Work, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        self.run_after(kind, async { Ok(()) }, false, move |()| work).await
    }

    /// [`Executor::run`], with `check` run first on the checker thread: `work` runs, with what
    /// the check made (the plan it checked), only if it passes, and the time limit covers both.
    pub async fn run_checked<T, X, C, W, F>(&self, kind: Work, check: C, work: W) -> Result<T>
    where
        T: Send + 'static,
        X: Send + 'static,
        C: Future<Output = Result<X>> + Send + 'static,
        W: FnOnce(X) -> F + Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        self.run_after(kind, check, true, work).await
    }

    /// Runs `check`, on the checker thread where `on_checker` (else in place: [`Executor::run`]
    /// has nothing to check), then `work` with what it made on the query threads.
    async fn run_after<T, X, C, W, F>(&self, kind: Work, check: C, on_checker: bool, work: W) -> Result<T>
    where
        T: Send + 'static,
        X: Send + 'static,
        C: Future<Output = Result<X>> + Send + 'static,
        W: FnOnce(X) -> F + Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let label = kind.label();
        let count = |outcome: &str| {
            if let Some(m) = &self.metrics {
                m.queries_total.with_label_values(&[label, outcome]).inc();
            }
        };
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            count("busy");
            return Err(Error::QueryBusy(self.limits.max_concurrent));
        };
        let (limit, setting) = match kind {
            Work::Query => (self.limits.query_timeout, "query_timeout_secs"),
            Work::Report => (self.limits.report_timeout, "report_timeout_secs"),
        };
        let (Some(rt), Some(checker)) = (&self.runtime.0, &self.checker.0) else {
            return Err(Error::Task("the query threads have stopped".into()));
        };
        let running = Running::new(self.metrics.as_ref().map(|m| m.queries_running.with_label_values(&[label])));
        // Counted `cancelled` unless it ends here: the caller stopped waiting (a client that
        // went away drops this future, and with it the query's task).
        let mut unanswered =
            Unanswered(self.metrics.as_ref().map(|m| m.queries_total.with_label_values(&[label, "cancelled"])));
        let both = async {
            let made = if on_checker {
                let checked = checker.spawn(check);
                let _abort_check = AbortOnDrop(checked.abort_handle());
                checked.await.map_err(|e| Error::Task(format!("the {label}'s check stopped: {e}")))??
            } else {
                check.await?
            };
            let task = rt.spawn(async move {
                let _slot = permit;
                let _running = running;
                work(made).await
            });
            let _abort = AbortOnDrop(task.abort_handle());
            task.await.map_err(|e| Error::Task(format!("the {label} stopped: {e}")))?
        };
        let out = match tokio::time::timeout(limit, both).await {
            Err(_) => Err(Error::QueryTimeout(format!(
                "the {label} ran past its time limit of {} and was cancelled ({setting}): narrow it \
                 (a shorter date range, one campaign, fewer columns) or raise {setting}",
                seconds(limit)
            ))),
            Ok(r) => r,
        };
        unanswered.0 = None;
        count(match &out {
            Ok(_) => "ok",
            Err(Error::QueryTimeout(_)) => "timeout",
            Err(Error::QueryMemory(_)) => "memory",
            Err(Error::QueryRefused(_)) => "refused",
            Err(_) => "error",
        });
        out
    }

    /// Adds bytes a query spilled to the metrics.
    pub fn spilled(&self, kind: Work, bytes: usize) {
        if let Some(m) = &self.metrics
            && bytes > 0
        {
            m.query_spilled_bytes_total.with_label_values(&[kind.label()]).inc_by(bytes as u64);
        }
    }
}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// Asks the kernel to schedule the calling thread after the collector's ([`QUERY_THREAD_NICE`]).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take no pointers; on Linux a thread id names the one
        // thread, so only this query thread is affected. Failing (a container without the
        // right) leaves it at normal priority, which only weakens the preference.
        unsafe {
            let tid = libc::gettid() as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, QUERY_THREAD_NICE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_concurrent: usize, timeout_ms: u64) -> QueryLimits {
        QueryLimits {
            max_concurrent,
            query_timeout: Duration::from_millis(timeout_ms),
            threads: 1,
            ..QueryLimits::default()
        }
    }

    #[tokio::test]
    async fn a_slow_query_is_cancelled_at_its_limit_and_frees_its_slot() {
        let metrics = Arc::new(Metrics::new(10, 10));
        let ex = Executor::new(limits(1, 100), Some(metrics.clone())).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let started = std::time::Instant::now();
        let out = ex
            .run(Work::Query, async move {
                // Dropped (and so `rx` sees the sender gone) only when the task is aborted.
                let _tx = tx;
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            })
            .await;
        assert!(matches!(out, Err(Error::QueryTimeout(ref m)) if m.contains("query_timeout_secs")), "{out:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(rx.await.is_err(), "the aborted task dropped what it held");
        // The slot is free again once the aborted task's state is dropped, on another thread.
        let mut again = ex.run(Work::Query, async { Ok(7) }).await;
        for _ in 0..100 {
            if !matches!(again, Err(Error::QueryBusy(_))) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            again = ex.run(Work::Query, async { Ok(7) }).await;
        }
        assert_eq!(again.unwrap(), 7, "the slot is free again");
        assert_eq!(metrics.queries_total.with_label_values(&["query", "timeout"]).get(), 1);
        assert_eq!(metrics.queries_total.with_label_values(&["query", "ok"]).get(), 1);
        assert_eq!(metrics.queries_running.with_label_values(&["query"]).get(), 0);
    }

    #[tokio::test]
    async fn past_the_slots_the_next_is_refused_at_once() {
        let metrics = Arc::new(Metrics::new(10, 10));
        let ex = Arc::new(Executor::new(limits(1, 10_000), Some(metrics.clone())).unwrap());
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let first = tokio::spawn({
            let ex = ex.clone();
            async move { ex.run(Work::Report, async move { wait.await.map_err(|e| Error::Invalid(e.to_string())) }).await }
        });
        while metrics.queries_running.with_label_values(&["report"]).get() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(matches!(ex.run(Work::Query, async { Ok(()) }).await, Err(Error::QueryBusy(1))));
        assert_eq!(metrics.queries_total.with_label_values(&["query", "busy"]).get(), 1);
        go.send(()).unwrap();
        first.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_cancels_its_query() {
        let metrics = Arc::new(Metrics::new(10, 10));
        let ex = Executor::new(limits(1, 60_000), Some(metrics.clone())).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let call = ex.run(Work::Query, async move {
            let _tx = tx;
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        // The caller waits 50 ms, then drops the call (as axum drops a handler on disconnect).
        assert!(tokio::time::timeout(Duration::from_millis(50), call).await.is_err());
        tokio::time::timeout(Duration::from_secs(5), rx).await.expect("cancelled").unwrap_err();
        assert_eq!(metrics.queries_total.with_label_values(&["query", "cancelled"]).get(), 1);
    }
}
