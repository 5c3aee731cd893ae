//! [`Pace`]: how many jobs a host holds. Enough that its workers never wait for the next pull,
//! few enough that a job does not wait here while another host idles: about [`HOLD`] of its
//! workers' work, from how long its recent jobs took.

use std::cell::Cell;
use std::time::Duration;

use tokio::sync::Notify;

/// How much of its workers' work a host holds, handed to them or waiting for them.
pub(super) const HOLD: Duration = Duration::from_millis(20);

/// How much each job moves the average (1 / this): the last few dozen jobs count.
const WEIGHT: f64 = 16.0;

/// A host's pace: the average time of its recent jobs, and a signal when one ends.
#[derive(Default)]
pub(super) struct Pace {
    /// Seconds from a job's handing to the local pool to its outcome (its run and its wait in
    /// the worker's pipeline); `None` until a job ended.
    mean: Cell<Option<f64>>,
    /// Rung when a job leaves the host (answered and acknowledged, or handed back).
    pub(super) left: Notify,
}

impl Pace {
    /// A job took `took` in the local pool.
    pub(super) fn record(&self, took: Duration) {
        let took = took.as_secs_f64();
        let mean = match self.mean.get() {
            None => took,
            Some(mean) => mean + (took - mean) / WEIGHT,
        };
        self.mean.set(Some(mean));
    }

    /// How many jobs the host may hold now: the jobs its `running` pipeline places finish in
    /// [`HOLD`] at the recent pace, at least `running` (the pipelines' worth, also before any job
    /// ended) and at most `most` (the host's slots).
    pub(super) fn limit(&self, running: usize, most: usize) -> usize {
        let least = running.min(most);
        let Some(mean) = self.mean.get() else {
            return least;
        };
        let per_second = running as f64 / mean.max(1e-9);
        let held = (per_second * HOLD.as_secs_f64()).min(most as f64);
        (held as usize).clamp(least, most)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_jobs_fill_the_slots_and_long_ones_keep_the_pipelines_worth() {
        let pace = Pace::default();
        assert_eq!(
            pace.limit(8, 512),
            8,
            "before any job ended: the pipelines' worth"
        );
        // 8 places, jobs of 100 us each: 80k jobs/s, 1,600 in 20 ms, capped by the slots.
        pace.record(Duration::from_micros(100));
        assert_eq!(pace.limit(8, 512), 512);
        assert_eq!(
            pace.limit(8, 1000),
            1000.min((8.0 / 100e-6 * 0.020) as usize)
        );
        // Jobs of a second: 8 jobs/s, never fewer than the pipelines' worth.
        let slow = Pace::default();
        slow.record(Duration::from_secs(1));
        assert_eq!(slow.limit(8, 512), 8);
        // 2 ms jobs: 4,000 jobs/s, 80 in 20 ms.
        let mid = Pace::default();
        mid.record(Duration::from_millis(2));
        assert_eq!(mid.limit(8, 512), 80);
    }

    #[test]
    fn the_average_follows_the_recent_jobs() {
        let pace = Pace::default();
        pace.record(Duration::from_millis(2));
        for _ in 0..200 {
            pace.record(Duration::from_secs(1));
        }
        assert_eq!(
            pace.limit(8, 512),
            8,
            "jobs became long: the host holds less"
        );
        for _ in 0..200 {
            pace.record(Duration::from_micros(100));
        }
        assert_eq!(pace.limit(8, 512), 512, "and short again: more");
    }
}
