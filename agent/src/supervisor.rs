//! Every long-lived task of the agent runs under the [`Supervisor`], by name. A task that
//! panics or stops when it should not is logged with its name and counted
//! (`agent_task_failures_total{task}`), then restarted after a backoff; a task the agent
//! cannot run without instead stops the agent, which exits non-zero so that its service
//! manager restarts it. Nothing dies silently.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::metrics::{AgentMetrics, TaskLabels};

/// First pause before a failed task runs again.
pub const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest pause between restarts (the pause doubles with each failure in a row).
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run this long counts as healthy: the next failure starts from the shortest pause.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// What a supervised task is expected to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifetime {
    /// Runs as long as the agent: any end is a failure.
    Forever,
    /// Runs until it completes its job: only a panic is a failure.
    UntilDone,
}

/// Owns the agent's long-lived tasks.
#[derive(Clone)]
pub struct Supervisor {
    metrics: Arc<AgentMetrics>,
    /// The first essential task that ended, and why.
    fatal: watch::Sender<Option<String>>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Supervisor {
    /// A supervisor counting failures in `metrics`.
    pub fn new(metrics: Arc<AgentMetrics>) -> Self {
        Supervisor {
            metrics,
            fatal: watch::channel(None).0,
            tasks: Arc::default(),
        }
    }

    /// Runs the task `start` makes for as long as the agent runs: after a panic or an
    /// exit it is counted and started again after a backoff.
    pub fn keep_running<F, Fut>(&self, name: &'static str, start: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.restarting(name, Lifetime::Forever, start);
    }

    /// Runs the task `start` makes until it completes: after a panic it is counted and
    /// started again after a backoff.
    pub fn run_until_done<F, Fut>(&self, name: &'static str, start: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.restarting(name, Lifetime::UntilDone, start);
    }

    /// Runs `task`, which the agent cannot run without: if it panics or ends, it is
    /// counted and the agent stops ([`Supervisor::essential_failed`] completes).
    pub fn essential(&self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.watch_essential(name, tokio::spawn(task));
    }

    /// Watches an essential task already running (one another module spawned).
    pub fn watch_essential(&self, name: &'static str, task: JoinHandle<()>) {
        let this = self.clone();
        self.spawn(async move {
            let why = match task.await {
                Ok(()) => "stopped".to_string(),
                Err(e) => describe(&e),
            };
            this.count(name);
            tracing::error!(task = name, %why, "an essential task ended; stopping the agent");
            this.set_fatal(format!("task {name} {why}"));
        });
    }

    /// Stops the agent (as an essential task's end does): it cannot go on, for `why`.
    pub fn stop_agent(&self, why: String) {
        tracing::error!(%why, "stopping the agent");
        self.set_fatal(why);
    }

    /// Records the first reason the agent must stop (later ones are dropped).
    fn set_fatal(&self, why: String) {
        self.fatal.send_if_modified(|fatal| {
            let first = fatal.is_none();
            if first {
                *fatal = Some(why);
            }
            first
        });
    }

    /// Completes when an essential task ended, with the reason.
    pub async fn essential_failed(&self) -> String {
        let mut fatal = self.fatal.subscribe();
        loop {
            if let Some(why) = fatal.borrow_and_update().clone() {
                return why;
            }
            if fatal.changed().await.is_err() {
                return "the supervisor stopped".to_string();
            }
        }
    }

    /// Stops every task (at shutdown).
    pub fn stop_all(&self) {
        self.lock().abort_all();
    }

    fn restarting<F, Fut>(&self, name: &'static str, lifetime: Lifetime, mut start: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let this = self.clone();
        self.spawn(async move {
            let mut backoff = RESTART_BACKOFF_MIN;
            loop {
                let started = Instant::now();
                // The task runs in a set of its own, so stopping the supervisor stops it.
                let mut run = JoinSet::new();
                run.spawn(start());
                let why = match run.join_next().await {
                    Some(Ok(())) if lifetime == Lifetime::UntilDone => return,
                    Some(Ok(())) => "stopped".to_string(),
                    Some(Err(e)) => describe(&e),
                    None => "vanished".to_string(),
                };
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = RESTART_BACKOFF_MIN;
                }
                this.count(name);
                tracing::error!(task = name, %why, restart_in = ?backoff, "task failed; restarting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
            }
        });
    }

    fn count(&self, name: &'static str) {
        self.metrics
            .task_failures
            .get_or_create(&TaskLabels { task: name })
            .inc();
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.lock().spawn(task);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        // Nothing panics while holding it.
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What ended a task: its panic and message, or that it was cancelled.
fn describe(e: &JoinError) -> String {
    if e.is_panic() {
        e.to_string()
    } else {
        "was cancelled".to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn failures(metrics: &AgentMetrics, task: &'static str) -> u64 {
        metrics
            .task_failures
            .get_or_create(&TaskLabels { task })
            .get()
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_counted_and_restarted_with_backoff() {
        let metrics = Arc::new(AgentMetrics::new());
        let supervisor = Supervisor::new(metrics.clone());
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        supervisor.keep_running("flaky", move || {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if run < 2 {
                    panic!("injected failure {run}");
                }
                std::future::pending::<()>().await;
            }
        });
        tokio::time::sleep(RESTART_BACKOFF_MIN / 2).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(failures(&metrics, "flaky"), 1);
        // Second run after 100 ms, third after another 200 ms.
        tokio::time::sleep(RESTART_BACKOFF_MIN).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        tokio::time::sleep(RESTART_BACKOFF_MIN * 3).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(failures(&metrics, "flaky"), 2);
        tokio::time::sleep(RESTART_BACKOFF_MAX).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "the healthy run stays");
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_completes_its_job_is_not_restarted_but_a_forever_one_is() {
        let metrics = Arc::new(AgentMetrics::new());
        let supervisor = Supervisor::new(metrics.clone());
        let (once, forever) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (o, f) = (once.clone(), forever.clone());
        supervisor.run_until_done("once", move || {
            o.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        supervisor.keep_running("forever", move || {
            f.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(once.load(Ordering::SeqCst), 1);
        assert_eq!(failures(&metrics, "once"), 0);
        assert!(forever.load(Ordering::SeqCst) >= 3);
        assert!(failures(&metrics, "forever") >= 3);
    }

    #[tokio::test]
    async fn an_essential_task_that_ends_stops_the_agent() {
        let metrics = Arc::new(AgentMetrics::new());
        let supervisor = Supervisor::new(metrics.clone());
        supervisor.essential("gossip", async { panic!("socket gone") });
        let why = supervisor.essential_failed().await;
        assert!(
            why.contains("gossip") && why.contains("socket gone"),
            "{why}"
        );
        assert_eq!(failures(&metrics, "gossip"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_the_supervisor_stops_its_tasks() {
        let supervisor = Supervisor::new(Arc::new(AgentMetrics::new()));
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        supervisor.keep_running("ticker", move || {
            let counted = counted.clone();
            async move {
                loop {
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(55)).await;
        supervisor.stop_all();
        tokio::task::yield_now().await;
        let at_stop = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(runs.load(Ordering::SeqCst), at_stop);
    }
}
