//! What a pool is doing: [`PoolStats`], from counters that cost the hot path nothing shared.
//!
//! Each worker counts the tasks it settled (done, failed) in counters of its own, so no cache line
//! is shared between workers; the number of tasks pushed is the pool's task-id counter. Latency
//! percentiles are kept only when the pool was built with
//! [`track_latency`](crate::PoolBuilder::track_latency), in a log-scale histogram per worker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::Message;

/// 64 power-of-two buckets of nanoseconds: bucket `i` holds durations in `[2^i, 2^(i+1))`.
const BUCKETS: usize = 64;

/// One worker's (or the retired workers') settled-task counters.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) done: AtomicU64,
    pub(crate) failed: AtomicU64,
    histogram: Option<Box<[AtomicU64; BUCKETS]>>,
}

impl Counters {
    pub(crate) fn new(track_latency: bool) -> Self {
        Counters {
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            histogram: track_latency.then(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0)))),
        }
    }

    pub(crate) fn tracks_latency(&self) -> bool {
        self.histogram.is_some()
    }

    pub(crate) fn record(&self, ok: bool) {
        if ok { &self.done } else { &self.failed }.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn latency(&self, d: Duration) {
        if let Some(h) = &self.histogram {
            let ns = (d.as_nanos() as u64).max(1);
            h[63 - ns.leading_zeros() as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn add_histogram(&self, sum: &mut [u64; BUCKETS]) {
        if let Some(h) = &self.histogram {
            for (s, b) in sum.iter_mut().zip(h.iter()) {
                *s += b.load(Ordering::Relaxed);
            }
        }
    }
}

/// Task run-time percentiles (from when a worker starts a task to its answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Tasks measured.
    pub count: u64,
    /// Median (upper edge of its power-of-two bucket).
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

/// A snapshot of a pool, from [`PoolHandle::stats`](crate::PoolHandle::stats), and the event fired
/// periodically on the pool's channel with [`stats_every`](crate::PoolBuilder::stats_every).
///
/// At any moment when no task is starting or ending, `done + failed + queued + running == pushed`.
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
    /// Run-time percentiles, when the pool tracks latency.
    pub latency: Option<Latency>,
}

/// Folds per-worker counters into percentiles.
pub(crate) fn latency<'a>(counters: impl Iterator<Item = &'a Counters>) -> Option<Latency> {
    let mut sum = [0u64; BUCKETS];
    let mut any = false;
    for c in counters {
        any |= c.tracks_latency();
        c.add_histogram(&mut sum);
    }
    let count: u64 = sum.iter().sum();
    if !any || count == 0 {
        return None;
    }
    let at = |q: f64| {
        let rank = ((count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in sum.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(1u64 << (i + 1).min(63));
            }
        }
        Duration::MAX
    };
    Some(Latency {
        count,
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
    })
}
