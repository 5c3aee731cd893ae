//! What most queued tasks do not have ([`Extra`]): a queue entry's options (job, key, timeout,
//! deadline, priority, retry policy, cancel handle) and its run state (permit, pin, attempt),
//! boxed so a plain closure task stays small; and the retry decision that reads them.

use std::sync::Arc;
use std::time::Duration;

use super::cancel::Cancel;
use super::error::TaskError;
use super::finish::{Finisher, Permit};
use super::output::{Again, Closure, TaskOutput};
use super::payload::{Inputs, JobCall};
use super::priority::Priority;
use super::retry::{Retry, RetryHook};
use crate::spent::Spent;

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
    pub(super) retry: Option<Box<Retry>>,
    /// The work again, for a retry in thread mode ([`Task::repeatable`]).
    pub(super) again: Option<Again<R>>,
    /// Which run this is, from 1.
    pub(super) attempt: u32,
    pub(super) cancel: Option<Cancel>,
}

// A job's extras box, which its value holds until it is read (see `Spent`): the rare parts (a
// chunk's inputs, a remote run's context, a retry policy) are boxed within it. 248 bytes before.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Extra<u64>>() <= 168);

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

    /// Drops a settled task's extras here (they may hold user code: a retry's closure, a cancel
    /// handle), and chains their memory and the job's input buffer to `spent`, the task's own
    /// box, to be freed where the value is read.
    pub(super) fn spend(extra: Option<Box<Self>>, spent: Option<Spent>) -> Option<Spent>
    where
        R: TaskOutput,
    {
        let Some(extra) = extra else {
            return spent;
        };
        let (mut contents, own) = Spent::hollow(extra);
        let inputs = contents
            .job
            .as_mut()
            .map(|j| std::mem::replace(&mut j.payload.inputs, Err(String::new())));
        let input = match inputs {
            Some(Ok(Inputs::One(bytes))) => Spent::bytes(bytes),
            _ => None,
        };
        drop(contents);
        let rest = match own {
            Some(own) => Some(own.then(input)),
            None => input,
        };
        match spent {
            Some(spent) => Some(spent.then(rest)),
            None => rest,
        }
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
        .and_then(|e| e.retry.as_deref())
        .or(hook.default.as_ref())?;
    let attempt = extra.map_or(1, |e| e.attempt);
    policy
        .retries(error, attempt)
        .then(|| (policy.delay(attempt), hook.clone()))
}

#[cfg(test)]
mod tests {
    use super::Extra;
    use crate::spent::{Spent, SMALLEST_BYTES};
    use crate::task::payload::{Inputs, JobCall, JobPayload};
    use crate::task::TaskError;

    #[test]
    fn a_settled_jobs_extras_and_input_follow_its_box() {
        let job = |bytes: Vec<u8>| {
            let mut extra = Extra::<u64>::empty();
            extra.job = Some(JobCall {
                payload: JobPayload {
                    name: "j",
                    inputs: Ok(Inputs::One(bytes)),
                    context: None,
                },
                decode: |_| Err(TaskError::Abandoned),
                rerun: |_| Err(TaskError::Abandoned),
            });
            Some(extra)
        };
        let cell = || Spent::hollow(Box::new([0u64; 4])).1;
        let blocks = |s: Option<Spent>| s.map_or(0, |s| s.blocks());
        // The task's box, its extras' box, its input.
        let input = Vec::with_capacity(SMALLEST_BYTES);
        assert_eq!(blocks(Extra::spend(job(input), cell())), 3);
        // An input too small to carry its memory back, or too large to be held, is freed at once.
        assert_eq!(blocks(Extra::spend(job(Vec::new()), cell())), 2);
        assert_eq!(blocks(Extra::spend(job(vec![0; 4096]), cell())), 2);
        // No extras: the box alone; no box either: the extras.
        assert_eq!(blocks(Extra::<u64>::spend(None, cell())), 1);
        let input = Vec::with_capacity(SMALLEST_BYTES);
        assert_eq!(blocks(Extra::spend(job(input), None)), 2);
    }
}
