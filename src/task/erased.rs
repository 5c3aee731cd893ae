//! [`ErasedTask`]: a queued task with its result type erased, as every queue, worker and pool
//! sees it (the one implementation, for `Task<R>`, is in `queued`).

use std::sync::Arc;
use std::time::Duration;

use super::cancel::Cancel;
use super::error::{Refusal, TaskError};
use super::finish::{Finisher, Registry, RunningSlot};
use super::output::TaskId;
use super::payload::JobPayload;
use super::priority::{Prioritized, Priority};

/// A task the pool did not accept, with the reason: what the pool's entry points and routes hand
/// back, turned into a [`SubmitError`] where the task's type is known ([`hand_back`]).
pub(crate) type Refused = (Refusal, Box<dyn ErasedTask>);

/// A queued task with its type erased, so one worker queue carries tasks of every result type.
pub(crate) trait ErasedTask: Send {
    /// Gives the task its id, and the pool's default timeout if it has none of its own.
    fn prepare(&mut self, id: TaskId, default_timeout: Option<Duration>);
    /// Its id within its pool (given by `prepare`).
    fn id(&self) -> TaskId;
    /// Which run this is, from 1 (above 1 after retries). Read by the remote link.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    fn attempt(&self) -> u32;
    fn key(&self) -> Option<u64>;
    fn timeout(&self) -> Option<Duration>;
    /// Whether the task's deadline ([`Task::expires_after`]) has passed: it must not start.
    fn expired(&self) -> bool;
    /// The job to send to a worker process, if the task is a job.
    fn job(&self) -> Option<&JobPayload>;
    /// Runs the closure on this thread and settles the task (thread mode). While it runs, the
    /// task is in `running`, where an abort can fail it at once.
    fn run(self: Box<Self>, fin: &Arc<Finisher>, running: &Arc<RunningSlot>);
    /// Ends the task with `error` before it had an id or a worker (a parked map chunk that an
    /// abort cancels): resolves its value and fires no event.
    fn reject(self: Box<Self>, error: TaskError);
    /// Marks the task as bound to the worker it was queued on (fired at its channel, or keyed): a
    /// retiring worker keeps it instead of handing it back.
    fn pin(&mut self);
    /// Whether [`pin`](ErasedTask::pin) was called.
    fn pinned(&self) -> bool;
    /// Keeps a bounded pool's queue permit until the task is settled.
    fn hold(&mut self, permit: tokio::sync::OwnedSemaphorePermit);
    /// Its priority: which lane of a worker's queue it waits in.
    fn priority(&self) -> Priority;
    /// Ends the run with an error without running it (process mode: the error of its run in a
    /// child): settles the task, or, if its retry policy says so, hands it to the pool for its
    /// next attempt.
    fn fail(self: Box<Self>, error: TaskError, fin: &Finisher);
    /// Settles the task with an error, with no further attempt (a stop ended its retries).
    fn fail_final(self: Box<Self>, error: TaskError, fin: &Finisher);
    /// Counts the start of the task's next attempt (the pool queues it again after a back-off).
    fn next_attempt(&mut self);
    /// Whether its value is resolved already (cancelled while queued): nothing to run.
    fn settled(&self) -> bool;
    /// Whether it is an async task (its work is a future).
    fn is_async(&self) -> bool;
    /// Whether it has a [`Cancel`] handle, which must be [armed](ErasedTask::arm) when it is queued.
    fn cancellable(&self) -> bool;
    /// Tells its [`Cancel`] handle how to settle it, now that it is queued on `fin`'s worker.
    fn arm(&mut self, fin: &Arc<Finisher>);
    /// Its [`Cancel`] handle, if it has one (a process host tells it how to kill the child).
    fn cancel_handle(&self) -> Option<&Cancel>;
    /// The future that runs the task on this thread and settles it (an async worker polls it
    /// among others). A blocking task runs inside it, holding the thread. `load`, the counter the
    /// task was counted on, is decremented as it ends, before its value resolves.
    fn run_async(
        self: Box<Self>,
        fin: &Arc<Finisher>,
        running: &Arc<RunningSlot>,
        set: Arc<dyn Registry>,
        load: Option<Arc<std::sync::atomic::AtomicUsize>>,
    ) -> futures::future::LocalBoxFuture<'static, ()>;
    /// The entry as `Any`, to take the typed task back out of a refused one ([`hand_back`]).
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
    /// Settles the task with a worker process's encoded answer (process mode).
    fn finish_encoded(self: Box<Self>, answer: Result<&[u8], TaskError>, fin: &Finisher);
}

impl Prioritized for Box<dyn ErasedTask> {
    fn priority(&self) -> Priority {
        ErasedTask::priority(&**self)
    }
}
