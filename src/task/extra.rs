//! What most queued tasks do not have ([`Extra`]): a queue entry's options (job, key, timeout,
//! deadline, priority, retry policy, cancel handle) and its run state (permit, pin, attempt),
//! boxed so a plain closure task stays small; and the retry decision that reads them.

use std::sync::Arc;
use std::time::Duration;

use super::cancel::Cancel;
use super::error::TaskError;
use super::finish::{Finisher, Permit};
use super::output::{Again, Closure, TaskOutput};
use super::payload::JobCall;
use super::priority::Priority;
use super::retry::{Retry, RetryHook};

pub(super) struct Extra<R> {
    pub(super) job: Option<JobCall<R>>,
    pub(super) key: Option<u64>,
    pub(super) timeout: Option<Duration>,
    /// When the task expires if it has not started.
    pub(super) deadline: Option<std::time::Instant>,
    /// A bounded pool's permit: room frees when the task is settled.
    pub(super) permit: Option<Permit>,
    /// Bound to the worker it was queued on (process workers; thread workers keep a queue of
    /// their own for these).
    pub(super) pinned: bool,
    pub(super) priority: Priority,
    /// Its own retry policy (else the pool's default applies).
    pub(super) retry: Option<Retry>,
    /// The work again, for a retry in thread mode ([`Task::repeatable`]).
    pub(super) again: Option<Again<R>>,
    /// Which run this is, from 1.
    pub(super) attempt: u32,
    pub(super) cancel: Option<Cancel>,
}

impl<R> Extra<R> {
    pub(super) fn empty() -> Box<Self> {
        Box::new(Extra {
            job: None,
            key: None,
            timeout: None,
            deadline: None,
            permit: None,
            pinned: false,
            priority: Priority::Normal,
            retry: None,
            again: None,
            attempt: 1,
            cancel: None,
        })
    }

    /// The task's work again, after its first run consumed the closure (thread mode): a
    /// repeatable closure, or a job decoded again from its input.
    pub(super) fn rebuild(&self) -> Option<Closure<R>>
    where
        R: TaskOutput,
    {
        if let Some(again) = &self.again {
            let again = again.clone();
            return Some(Box::new(move || again()));
        }
        let job = self.job.as_ref()?;
        let inputs = job.payload.inputs.as_ref().ok()?.clone();
        let rerun = job.rerun;
        Some(Box::new(move || rerun(&inputs)))
    }
}

/// Whether a run that failed with `error` earns another attempt: the wait before it, and where
/// to hand the task (the pool's hook). `None` without a hook, a policy, or attempts left.
pub(super) fn retry_due<R>(
    extra: Option<&Extra<R>>,
    error: &TaskError,
    fin: &Finisher,
) -> Option<(Duration, Arc<RetryHook>)> {
    let hook = fin.retry.get()?;
    let policy = extra
        .and_then(|e| e.retry.as_ref())
        .or(hook.default.as_ref())?;
    let attempt = extra.map_or(1, |e| e.attempt);
    policy
        .retries(error, attempt)
        .then(|| (policy.delay(attempt), hook.clone()))
}
