//! What a pool is doing: [`PoolStats`], from counters that cost the hot path nothing shared.
//!
//! Each worker counts the tasks it settled (done, failed) in counters of its own, so no cache line
//! is shared between workers; the number of tasks pushed is the pool's task-id counter. Latency
//! percentiles are kept only when the pool was built with
//! [`track_latency`](crate::PoolBuilder::track_latency), in an HDR histogram per worker (two
//! significant digits: at most 1% off).

use std::collections::BTreeMap;
use std::time::Duration;

use actix::Message;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::core::PoolCore;
use crate::task::{histogram, Counters};

/// Task run-time percentiles (from when a worker starts a task to its answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Tasks measured.
    pub count: u64,
    /// Median (to two significant digits: at most 1% off).
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

/// A snapshot of a pool, from [`PoolHandle::stats`](crate::PoolHandle::stats), and the event fired
/// periodically on the pool's channel with [`stats_every`](crate::PoolBuilder::stats_every).
///
/// At any moment when no task is starting or ending,
/// `done + failed + queued + running + retrying == pushed`. A task that was
/// [cancelled](crate::Cancel) is counted as failed at once, but it is ending until its worker lets
/// it go: a blocking closure still runs to its end, a killed child is still being replaced, a
/// cancelled queue entry is dropped when its worker reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct PoolStats {
    /// The number of workers.
    pub workers: usize,
    /// Each worker's load (queued + running), in worker order.
    pub loads: Vec<usize>,
    /// Tasks accepted since the pool started.
    pub pushed: u64,
    /// Tasks that succeeded.
    pub done: u64,
    /// Tasks that failed (any reason).
    pub failed: u64,
    /// Tasks waiting in queues.
    pub queued: u64,
    /// Tasks a worker is running right now.
    pub running: u64,
    /// Tasks waiting out a [retry](crate::Retry)'s back-off before their next attempt.
    pub retrying: u64,
    /// Attempts after a task's first, since the pool started (a task that ran three times
    /// counts 2).
    pub retried: u64,
    /// Worker processes replaced by recycling
    /// ([`ProcessConfig::recycle_after_jobs`](crate::ProcessConfig::recycle_after_jobs) and
    /// [`recycle_above_memory`](crate::ProcessConfig::recycle_above_memory)).
    pub recycled: u64,
    /// Workers replaced since the pool started: a process worker's child that died, was killed
    /// (a timeout, a cancel, a limit) or was recycled, each announced by a
    /// [`WorkerRestarted`](crate::WorkerRestarted); a thread worker lost to a stuck task.
    pub restarted: u64,
    /// Of `failed`, how many of each [`TaskError::kind`](crate::TaskError::kind) (kinds with none
    /// are left out).
    pub failed_by: BTreeMap<&'static str, u64>,
    /// Run-time percentiles, when the pool tracks latency.
    pub latency: Option<Latency>,
}

impl PoolCore {
    /// A snapshot of the pool.
    pub(crate) fn stats(&self) -> PoolStats {
        let workers = self.workers();
        let loads: Vec<usize> = workers
            .iter()
            .map(|w| w.load.load(Ordering::Relaxed))
            .collect();
        let mut counters: Vec<Arc<crate::task::Counters>> =
            workers.iter().map(|w| w.fin().counters.clone()).collect();
        counters.extend(
            self.retired
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        let running: u64 = workers.iter().map(|w| w.backend.running() as u64).sum();
        let done = counters
            .iter()
            .map(|c| c.done.load(Ordering::Relaxed))
            .sum::<u64>();
        let failed = counters
            .iter()
            .map(|c| c.failed.load(Ordering::Relaxed))
            .sum::<u64>();
        let sum = |f: fn(&crate::task::Counters) -> &std::sync::atomic::AtomicU64| {
            counters
                .iter()
                .map(|c| f(c).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        let load: u64 = loads.iter().map(|l| *l as u64).sum();
        PoolStats {
            workers: workers.len(),
            loads,
            pushed: self.pushed(),
            done,
            failed,
            running: running.min(load),
            queued: load.saturating_sub(running),
            retrying: self.retrying(),
            retried: sum(|c| &c.retried),
            recycled: sum(|c| &c.recycled),
            restarted: self.restarted.load(Ordering::Relaxed),
            failed_by: failed_by(&counters),
            latency: latency(counters.iter().map(|c| &**c)),
        }
    }

    /// Every run time measured so far (workers retired included), when the pool tracks latency:
    /// what the dashboard and the metrics take the difference of, period by period.
    #[cfg(any(feature = "actix-web", feature = "metrics"))]
    pub(crate) fn latency_histogram(&self) -> Option<hdrhistogram::Histogram<u64>> {
        if !self.track_latency {
            return None;
        }
        let workers = self.workers();
        let mut sum = histogram();
        for w in workers.iter() {
            w.fin().counters.add_histogram(&mut sum);
        }
        for c in self
            .retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            c.add_histogram(&mut sum);
        }
        Some(sum)
    }
}

/// The run times of one period: each [`next`](LatencyWindow::next) gives those measured since the
/// one before, as the difference of the pool's running totals (so nothing is recorded twice and
/// a task's path pays nothing for it).
#[cfg(any(feature = "actix-web", feature = "metrics"))]
#[derive(Default)]
pub(crate) struct LatencyWindow {
    last: Option<hdrhistogram::Histogram<u64>>,
}

#[cfg(any(feature = "actix-web", feature = "metrics"))]
impl LatencyWindow {
    /// The run times measured since the last call (`None` when the pool does not track latency).
    pub(crate) fn next(&mut self, core: &PoolCore) -> Option<hdrhistogram::Histogram<u64>> {
        let now = core.latency_histogram()?;
        let mut delta = now.clone();
        if let Some(last) = self.last.replace(now) {
            // The totals only grow (retired workers' counters are kept), so this cannot fail;
            // if it did, the period would count everything since the start.
            let _ = delta.subtract(&last);
        }
        Some(delta)
    }
}

/// Failures by kind, summed over the workers' counters.
fn failed_by(counters: &[Arc<Counters>]) -> BTreeMap<&'static str, u64> {
    let kinds = crate::task::TaskError::KINDS;
    (0..kinds.len())
        .map(|k| {
            let n = counters
                .iter()
                .map(|c| c.failed_by[k].load(Ordering::Relaxed));
            (kinds[k], n.sum::<u64>())
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Folds per-worker counters into percentiles.
pub(crate) fn latency<'a>(counters: impl Iterator<Item = &'a Counters>) -> Option<Latency> {
    let mut sum = histogram();
    let mut any = false;
    for c in counters {
        any |= c.tracks_latency();
        c.add_histogram(&mut sum);
    }
    if !any || sum.is_empty() {
        return None;
    }
    let at = |q: f64| Duration::from_nanos(sum.value_at_quantile(q));
    Some(Latency {
        count: sum.len(),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_one_percent() {
        let c = Counters::new(true);
        // 1..=1000 microseconds: p50 = 500 us, p90 = 900 us, p99 = 990 us.
        for us in 1..=1000u64 {
            c.latency(Duration::from_micros(us));
        }
        let l = latency(std::iter::once(&c)).unwrap();
        assert_eq!(l.count, 1000);
        for (got, want) in [(l.p50, 500.0), (l.p90, 900.0), (l.p99, 990.0)] {
            let us = got.as_nanos() as f64 / 1000.0;
            assert!((us - want).abs() / want <= 0.01, "{us} us, want {want} us");
        }
    }

    #[test]
    fn no_tracking_no_percentiles() {
        let c = Counters::new(false);
        c.latency(Duration::from_millis(1));
        assert_eq!(latency(std::iter::once(&c)), None);
    }
}
