//! One worker's settled-task counters: done, failed, retried, recycled children, and (when the pool tracks latency) an HDR
//! histogram of run times. Each worker has its own, so the hot path shares no cache line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Run times kept to two significant digits (at most 1% off), from 1 ns to an hour (longer ones
/// count as an hour).
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HOUR_NS, 2).expect("valid histogram bounds")
}

const HOUR_NS: u64 = 3_600_000_000_000;

/// How many kinds of task error are counted apart.
const KINDS: usize = super::error::TaskError::KINDS.len();

/// One worker's (or the retired workers') settled-task counters.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) done: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Attempts after a task's first ([`Retry`](crate::Retry)).
    pub(crate) retried: AtomicU64,
    /// Child processes replaced by recycling (process mode).
    pub(crate) recycled: AtomicU64,
    /// Failed tasks by [`TaskError::kind`](super::error::TaskError::kind) (counted on the failure path
    /// only, so a success costs nothing more).
    pub(crate) failed_by: [AtomicU64; KINDS],
    /// Only the worker's own thread records, so the lock is uncontended but for `stats()`.
    histogram: Option<Mutex<Histogram<u64>>>,
}

impl Counters {
    pub(crate) fn new(track_latency: bool) -> Self {
        Counters {
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            recycled: AtomicU64::new(0),
            failed_by: Default::default(),
            histogram: track_latency.then(|| Mutex::new(histogram())),
        }
    }

    pub(crate) fn tracks_latency(&self) -> bool {
        self.histogram.is_some()
    }

    /// Counts a settled task: a success, or a failure of the kind at `failed` (an index into
    /// [`TaskError::KINDS`](super::error::TaskError::KINDS)).
    pub(crate) fn record(&self, failed: Option<usize>) {
        match failed {
            None => self.done.fetch_add(1, Ordering::Relaxed),
            Some(kind) => {
                self.failed_by[kind.min(KINDS - 1)].fetch_add(1, Ordering::Relaxed);
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    pub(crate) fn latency(&self, d: Duration) {
        if let Some(h) = &self.histogram {
            let ns = u64::try_from(d.as_nanos())
                .unwrap_or(u64::MAX)
                .clamp(1, HOUR_NS);
            h.lock()
                .unwrap_or_else(|p| p.into_inner())
                .saturating_record(ns);
        }
    }

    pub(crate) fn add_histogram(&self, sum: &mut Histogram<u64>) {
        if let Some(h) = &self.histogram {
            // Same bounds on both sides: adding cannot fail.
            let _ = sum.add(&*h.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }
}
