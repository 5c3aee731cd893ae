//! Retries: [`Retry`], the policy a task (or a pool, as its default) gives for running a task
//! again after a transient failure, and the hook through which a worker hands a task back to its
//! pool for its next attempt ([`RetryHook`]).

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::error::TaskError;

/// When and how often a failed task runs again (Celery's `autoretry_for` with `retry_backoff`,
/// Sidekiq's retries): up to [`attempts`](Retry::attempts) runs in all, after an exponential
/// back-off with jitter, for the errors [`when`](Retry::when) accepts (by default
/// [`Retry::transient`]: a crashed worker process, a timeout).
///
/// A retried task keeps its [`TaskId`](crate::TaskId) and its [`Value`](crate::Value); only its
/// last attempt settles it, so it fires exactly one terminal event, which carries the attempt
/// number (`TaskSuccess::attempt`, `TaskFailure::attempt`, `TaskComplete::attempt`). Give the
/// policy to one task with [`Task::retry`](crate::Task::retry) or to every task of a pool with
/// [`PoolBuilder::retry`](crate::PoolBuilder::retry).
///
/// What can run again: a [`Job`](crate::Job) (its encoded input is kept) and a closure made with
/// [`Task::repeatable`](crate::Task::repeatable). A closure made with `Task::new` or
/// `Task::fallible` runs once (it is `FnOnce`), and so does an async task (its future is
/// consumed): the policy does not apply to them. Never retried,
/// whatever `when` says: `Cancelled` (an abort), `Expired`, `Abandoned`, and in thread mode
/// `TimedOut` (the thread still runs the first attempt: a second would run beside it). A pool
/// that begins stopping ends the retries: a task waiting for its next attempt fails at once with
/// the error of its last one (`Cancelled` on an abort).
///
/// ```
/// use std::time::Duration;
/// use circuits::prelude::*;
///
/// let policy = Retry::attempts(3)
///     .backoff(Duration::from_millis(100), Duration::from_secs(5))
///     .when(|e| Retry::transient(e) || matches!(e, TaskError::Failed(_)));
/// assert_eq!(policy.max_attempts(), 3);
/// ```
#[derive(Clone)]
pub struct Retry {
    attempts: u32,
    first: Duration,
    max: Duration,
    when: fn(&TaskError) -> bool,
}

impl fmt::Debug for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("attempts", &self.attempts)
            .field("first", &self.first)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Retry {
    /// Up to `n` runs in all (the first and `n - 1` retries; at least 1), with the default
    /// back-off (100 ms doubling up to 10 s) and errors ([`Retry::transient`]).
    pub fn attempts(n: u32) -> Self {
        Retry {
            attempts: n.max(1),
            first: Duration::from_millis(100),
            max: Duration::from_secs(10),
            when: Retry::transient,
        }
    }

    /// The wait before the first retry is about `first`, doubling with each retry, at most `max`.
    /// Each wait is drawn between half of that and all of it (jitter), so tasks that failed
    /// together do not all come back together.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first = first;
        self.max = max.max(first);
        self
    }

    /// Which errors are worth another attempt (a plain function: `|e| matches!(e, ..)`). Replaces
    /// the default, [`Retry::transient`].
    pub fn when(mut self, retry_on: fn(&TaskError) -> bool) -> Self {
        self.when = retry_on;
        self
    }

    /// The default of [`when`](Self::when): the failures that say nothing about the task itself,
    /// [`TaskError::WorkerCrashed`] and [`TaskError::TimedOut`].
    pub fn transient(error: &TaskError) -> bool {
        matches!(
            error,
            TaskError::WorkerCrashed { .. } | TaskError::TimedOut(_)
        )
    }

    /// The most runs a task gets.
    pub fn max_attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether a task whose attempt `attempt` (from 1) failed with `error` runs again.
    pub(crate) fn retries(&self, error: &TaskError, attempt: u32) -> bool {
        let final_error = matches!(
            error,
            TaskError::Cancelled | TaskError::Expired | TaskError::Abandoned
        );
        attempt < self.attempts && !final_error && (self.when)(error)
    }

    /// The wait after failed attempt `attempt` (from 1): `first * 2^(attempt-1)`, at most `max`,
    /// less a random share of up to half.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        let full = self.first.saturating_mul(1 << doublings).min(self.max);
        let half = full / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=nanos);
        full - Duration::from_nanos(jitter)
    }
}

/// How a worker's tasks reach their pool again for a retry: the pool's default policy, and the
/// pool's requeue (it waits `delay`, then queues the task on a worker its strategy picks; or, if
/// the pool began stopping, fails the task with the error given). Set by the pool when it makes
/// the worker, so this layer knows nothing of pools.
pub(crate) struct RetryHook {
    pub(crate) default: Option<Retry>,
    pub(crate) requeue: Requeue,
}

/// The pool's requeue: the task (its attempt count already raised), the wait, and the error its
/// failed attempt ended with. The task is a `Box<dyn ErasedTask>` inside the `Any` (the queue
/// entry's module builds on this one, so it cannot be named here without an import cycle).
pub(crate) type Requeue = Arc<dyn Fn(Box<dyn Any + Send>, Duration, TaskError) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_within_its_jitter_and_stops_at_the_cap() {
        let r = Retry::attempts(10).backoff(Duration::from_millis(100), Duration::from_millis(350));
        for _ in 0..100 {
            let d1 = r.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d2 = r.delay(2);
            assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200));
            let d5 = r.delay(5);
            assert!(d5 >= Duration::from_millis(175) && d5 <= Duration::from_millis(350));
        }
        assert!(r.delay(u32::MAX) <= Duration::from_millis(350));
    }

    #[test]
    fn the_policy_counts_attempts_and_never_retries_final_errors() {
        let r = Retry::attempts(3).when(|_| true);
        let crash = TaskError::TimedOut(Duration::from_secs(1));
        assert!(r.retries(&crash, 1) && r.retries(&crash, 2) && !r.retries(&crash, 3));
        for e in [
            TaskError::Cancelled,
            TaskError::Expired,
            TaskError::Abandoned,
        ] {
            assert!(!r.retries(&e, 1), "{e:?}");
        }
        let default = Retry::attempts(3);
        assert!(!default.retries(&TaskError::Failed("no".into()), 1));
        assert!(!default.retries(&TaskError::Panicked("no".into()), 1));
        assert!(default.retries(&crash, 1));
    }
}
