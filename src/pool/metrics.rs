//! Pool metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`), for
//! the exporters operators already run (Prometheus with `metrics-exporter-prometheus`, StatsD, ...).
//!
//! With the feature on, every pool reports once a second, labelled `pool="<its channel>"`:
//!
//! | metric | kind | what |
//! | --- | --- | --- |
//! | `circuits_tasks_submitted_total` | counter | tasks accepted |
//! | `circuits_tasks_succeeded_total` | counter | tasks that succeeded |
//! | `circuits_tasks_failed_total` | counter | tasks that failed, labelled `kind` too ([`TaskError::kind`](crate::TaskError::kind)) |
//! | `circuits_tasks_retried_total` | counter | attempts after a task's first |
//! | `circuits_worker_restarts_total` | counter | workers replaced (children that died, were killed or recycled; lost threads) |
//! | `circuits_workers` | gauge | workers |
//! | `circuits_workers_busy` | gauge | workers running a task |
//! | `circuits_tasks_queued` | gauge | tasks waiting in queues |
//! | `circuits_tasks_running` | gauge | tasks running |
//! | `circuits_tasks_retrying` | gauge | tasks waiting out a retry's back-off |
//! | `circuits_task_duration_seconds` | histogram | run times, with [`track_latency`](crate::PoolBuilder::track_latency) |
//!
//! Where it hooks in: the pool already counts all of this, per worker, for
//! [`stats`](crate::PoolHandle::stats); a timer reads those totals once a period and sets the
//! counters (`absolute`) and gauges. So a task pays nothing for metrics: no shared counter is
//! touched on its path (the workers' own counters stay unshared), and no result event is built,
//! as a bus subscriber would cause. The run times of a period are the difference of the pool's
//! latency totals, fed to the histogram in one go. Metrics are at most a period old; handles are
//! looked up each period, so a recorder installed after the pool started is used from then on.

use std::sync::Arc;
use std::time::Duration;

use super::core::PoolCore;
use super::stats::LatencyWindow;

/// How often a pool reports.
const PERIOD: Duration = Duration::from_secs(1);

/// Reports `core`'s metrics every [`PERIOD`] until the pool stops or is dropped (once more as it
/// stops, so the last counts are not lost).
pub(crate) fn run(core: &Arc<PoolCore>) {
    let weak = Arc::downgrade(core);
    let pool = core.channel.as_str().to_string();
    core.bus.spawn(async move {
        let mut window = LatencyWindow::default();
        loop {
            tokio::time::sleep(PERIOD).await;
            let Some(core) = weak.upgrade() else { return };
            report(&core, &pool, &mut window);
            if core.is_stopped() {
                return;
            }
        }
    });
}

fn report(core: &PoolCore, pool: &str, window: &mut LatencyWindow) {
    describe();
    let s = core.stats();
    let label = || [("pool", pool.to_string())];
    metrics::counter!("circuits_tasks_submitted_total", &label()).absolute(s.pushed);
    metrics::counter!("circuits_tasks_succeeded_total", &label()).absolute(s.done);
    for (kind, n) in &s.failed_by {
        let labels = [("pool", pool.to_string()), ("kind", kind.to_string())];
        metrics::counter!("circuits_tasks_failed_total", &labels).absolute(*n);
    }
    metrics::counter!("circuits_tasks_retried_total", &label()).absolute(s.retried);
    metrics::counter!("circuits_worker_restarts_total", &label()).absolute(s.restarted);
    let busy = core
        .workers()
        .iter()
        .filter(|w| w.backend.running() > 0)
        .count();
    metrics::gauge!("circuits_workers", &label()).set(s.workers as f64);
    metrics::gauge!("circuits_workers_busy", &label()).set(busy as f64);
    metrics::gauge!("circuits_tasks_queued", &label()).set(s.queued as f64);
    metrics::gauge!("circuits_tasks_running", &label()).set(s.running as f64);
    metrics::gauge!("circuits_tasks_retrying", &label()).set(s.retrying as f64);
    if let Some(period) = window.next(core).filter(|h| !h.is_empty()) {
        let histogram = metrics::histogram!("circuits_task_duration_seconds", &label());
        // A recorder may take each sample apart (the Prometheus exporter does): off the bus's
        // dispatch thread, which delivers events.
        tokio::task::spawn_blocking(move || {
            for v in period.iter_recorded() {
                let secs = v.value_iterated_to() as f64 / 1e9;
                let n = usize::try_from(v.count_since_last_iteration()).unwrap_or(usize::MAX);
                histogram.record_many(secs, n);
            }
        });
    }
}

/// Says what each metric is (once per period: a recorder installed late gets them too).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "circuits_tasks_submitted_total",
        "Tasks a circuits pool accepted."
    );
    describe_counter!("circuits_tasks_succeeded_total", "Tasks that succeeded.");
    describe_counter!(
        "circuits_tasks_failed_total",
        "Tasks that failed, by kind of error."
    );
    describe_counter!(
        "circuits_tasks_retried_total",
        "Attempts after a task's first."
    );
    describe_counter!("circuits_worker_restarts_total", "Workers replaced.");
    describe_gauge!("circuits_workers", "Workers in the pool.");
    describe_gauge!("circuits_workers_busy", "Workers running a task.");
    describe_gauge!("circuits_tasks_queued", "Tasks waiting in queues.");
    describe_gauge!("circuits_tasks_running", "Tasks running.");
    describe_gauge!(
        "circuits_tasks_retrying",
        "Tasks waiting out a retry's back-off."
    );
    describe_histogram!(
        "circuits_task_duration_seconds",
        Unit::Seconds,
        "Task run times (pools built with track_latency)."
    );
}
