//! The restart policy of a worker whose start failed, shared by both kinds: a thread worker whose
//! state set-up failed, a process worker whose child did not start. Back off, doubling; past a
//! number of failures in a row, fail the tasks waiting and keep trying at the slowest back-off.

use std::time::Duration;

/// How a worker whose start failed tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Restart {
    /// The back-off after the first failure; it doubles with each failure in a row.
    pub(crate) first: Duration,
    /// The longest back-off, and the one used past the limit.
    pub(crate) max: Duration,
    /// Failed starts in a row after which the tasks waiting on the worker fail.
    pub(crate) max_failures: usize,
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            first: Duration::from_millis(10),
            max: Duration::from_secs(5),
            max_failures: 5,
        }
    }
}

impl Restart {
    /// The policy with back-off `first` doubling up to `max` (at least 1 ms, and `max` at least
    /// `first`).
    pub(crate) fn with_backoff(self, first: Duration, max: Duration) -> Self {
        let first = first.max(Duration::from_millis(1));
        Restart {
            first,
            max: max.max(first),
            ..self
        }
    }

    /// The policy that fails the waiting tasks after `n` failed starts in a row (at least 1).
    pub(crate) fn with_max_failures(self, n: usize) -> Self {
        Restart {
            max_failures: n.max(1),
            ..self
        }
    }

    /// Whether `failures` failed starts in a row are past the limit: the tasks waiting fail.
    pub(crate) fn past_limit(&self, failures: usize) -> bool {
        failures >= self.max_failures
    }

    /// How long to wait before the next start after `failures` failures in a row (0: none; past
    /// the limit, the slowest back-off).
    pub(crate) fn wait(&self, failures: usize) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        if self.past_limit(failures) {
            return self.max;
        }
        let doublings = (failures - 1).min(30) as u32;
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_up_to_its_max_and_stays_there_past_the_limit() {
        let r = Restart::default()
            .with_backoff(Duration::from_millis(10), Duration::from_millis(50))
            .with_max_failures(5);
        let waits: Vec<_> = (0..7).map(|n| r.wait(n).as_millis()).collect();
        assert_eq!(waits, vec![0, 10, 20, 40, 50, 50, 50]);
        assert!(!r.past_limit(4) && r.past_limit(5));
        let r = Restart::default()
            .with_backoff(Duration::from_secs(1), Duration::from_secs(60))
            .with_max_failures(2);
        assert_eq!(
            r.wait(2),
            Duration::from_secs(60),
            "past the limit: the slowest"
        );
        assert_eq!(Restart::default().with_max_failures(0).max_failures, 1);
    }
}
