//! [`Pace`]: how many jobs a host holds. Enough that its workers never wait for the next pull,
//! few enough that a job does not wait here while another host idles: about [`HOLD`] of its
//! workers' work, from how long its recent jobs took.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit};

/// How much of its workers' work a host holds, handed to them or waiting for them.
pub(super) const HOLD: Duration = Duration::from_millis(20);

/// How much each job moves the average (1 / this): the last few dozen jobs count.
const WEIGHT: f64 = 16.0;

/// A host's pace: the average time of its recent jobs, what its local pool is doing now, and a
/// signal when a job leaves the host.
#[derive(Default)]
pub(super) struct Pace {
    /// Seconds from a job's handing to the local pool to its outcome (its run and its wait in
    /// the worker's pipeline); `None` until a job ended, and again once the stream ran dry.
    mean: Cell<Option<f64>>,
    /// Jobs in the local pool now.
    in_pool: Cell<usize>,
    /// Since when the local pool has not been without jobs and has seen none end.
    waiting_since: Cell<Option<Instant>>,
    /// The bytes of the jobs held.
    bytes: Cell<usize>,
    /// Rung when a job leaves the host (answered and acknowledged, or handed back).
    left: Notify,
}

impl Pace {
    /// A job goes to the local pool.
    pub(super) fn handed(&self) {
        self.in_pool.set(self.in_pool.get() + 1);
        if self.waiting_since.get().is_none() {
            self.waiting_since.set(Some(Instant::now()));
        }
    }

    /// A job handed to the local pool came back after `took`.
    pub(super) fn ended(&self, took: Duration) {
        let took = took.as_secs_f64();
        let mean = match self.mean.get() {
            None => took,
            Some(mean) => mean + (took - mean) / WEIGHT,
        };
        self.mean.set(Some(mean));
        let in_pool = self.in_pool.get().saturating_sub(1);
        self.in_pool.set(in_pool);
        self.waiting_since.set((in_pool > 0).then(Instant::now));
    }

    /// The stream ran dry: the next jobs may be of another kind, so the host holds only `least`
    /// of them until one of them ended.
    pub(super) fn forget(&self) {
        self.mean.set(None);
    }

    /// How many jobs the host may hold now: what its `running` places in the local pool finish
    /// in [`HOLD`] at the recent pace, at least `least` and at most `most` (its slots). While no
    /// job in the pool ended for longer than the recent average, that wait is the pace: jobs
    /// that became long stop the pulls before the first of them ends.
    pub(super) fn limit(&self, running: usize, least: usize, most: usize) -> usize {
        let least = least.min(most);
        let Some(mean) = self.mean.get() else {
            return least;
        };
        let stalled = self
            .waiting_since
            .get()
            .map_or(0.0, |since| since.elapsed().as_secs_f64());
        let per_second = running as f64 / mean.max(stalled).max(1e-9);
        let held = (per_second * HOLD.as_secs_f64()).min(most as f64);
        (held as usize).clamp(least, most)
    }

    /// The bytes of the jobs the host holds.
    pub(super) fn held_bytes(&self) -> usize {
        self.bytes.get()
    }

    /// Waits until a job leaves the host (at once if one left since the last wait).
    pub(super) async fn left(&self) {
        self.left.notified().await;
    }
}

/// A job's slot on the host, and its bytes: given back, and the host's pulls woken, when the job
/// leaves it in any way (answered, handed back, or its task gone).
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    pace: Rc<Pace>,
    bytes: usize,
}

impl Slot {
    /// Counts a job that the host now holds (before its task starts: the next pull must see it).
    pub(super) fn new(permit: OwnedSemaphorePermit, pace: Rc<Pace>, bytes: usize) -> Self {
        pace.bytes.set(pace.bytes.get() + bytes);
        Slot {
            _permit: permit,
            pace,
            bytes,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let pace = &self.pace;
        pace.bytes.set(pace.bytes.get().saturating_sub(self.bytes));
        // The permit goes back right after this (fields drop after `drop`), before the woken
        // pull loop runs: it runs on this thread.
        self.pace.left.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(took: Duration) -> Pace {
        let pace = Pace::default();
        pace.handed();
        pace.ended(took);
        pace
    }

    #[test]
    fn short_jobs_fill_the_slots_and_long_ones_keep_the_least() {
        assert_eq!(
            Pace::default().limit(8, 10, 512),
            10,
            "before any job ended: the least"
        );
        // 8 places, 100 us a job: 80,000 jobs/s, 1,600 in 20 ms, capped by the slots.
        assert_eq!(after(Duration::from_micros(100)).limit(8, 10, 512), 512);
        // 2 ms a job: 4,000 jobs/s, 80 in 20 ms.
        assert_eq!(after(Duration::from_millis(2)).limit(8, 10, 512), 80);
        // A second a job: 8 jobs/s, fewer than the least.
        assert_eq!(after(Duration::from_secs(1)).limit(8, 10, 512), 10);
        // The least never passes the slots.
        assert_eq!(Pace::default().limit(8, 10, 6), 6);
    }

    #[test]
    fn the_average_follows_the_recent_jobs_and_is_forgotten_when_the_stream_ran_dry() {
        let pace = after(Duration::from_millis(2));
        for _ in 0..200 {
            pace.handed();
            pace.ended(Duration::from_secs(1));
        }
        assert_eq!(
            pace.limit(8, 10, 512),
            10,
            "jobs became long: the host holds less"
        );
        for _ in 0..200 {
            pace.handed();
            pace.ended(Duration::from_micros(100));
        }
        assert_eq!(pace.limit(8, 10, 512), 512, "and short again: more");
        pace.forget();
        assert_eq!(pace.limit(8, 10, 512), 10, "the next jobs may be long");
    }

    #[test]
    fn a_pool_where_no_job_ends_holds_the_least() {
        let pace = after(Duration::from_micros(100));
        pace.handed();
        assert_eq!(pace.limit(8, 10, 512), 512, "the job has just gone in");
        // No job ended for longer than the 100 us average: the wait is the pace now.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(pace.limit(8, 10, 512), 10);
        pace.ended(Duration::from_millis(50));
        assert!(
            pace.limit(8, 10, 512) > 10,
            "no job in the pool: the average again"
        );
    }
}
