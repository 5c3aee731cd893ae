//! The [`Pool`] actor and the [`PoolHandle`] a started pool is used through.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;

use crate::bus::Bus;
use crate::channel::Channel;
use crate::task::{Task, TaskError, TaskOutput};
use crate::tree::Stop;
use crate::value::Value;
use crate::worker::Shutdown;

use super::core::{PoolCore, Refused};
use super::stats::PoolStats;

/// A pool of workers (threads or child processes) that runs [`Task`]s, as an actix actor.
///
/// `Addr<Pool>` handles [`Task<R>`] messages (balanced onto the workers) and [`Stop`] (drains and
/// stops the pool). Build one with [`Pool::builder`]; the started pool is used through its
/// [`PoolHandle`], which also gives the actor's address ([`PoolHandle::addr`]).
///
/// ```
/// use circuits::prelude::*;
///
/// # #[actix::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool: PoolHandle = Pool::builder().min(2).start();
/// let addr: actix::Addr<Pool> = pool.addr();
/// // The mailbox error first (the actor is gone), then the task's own result.
/// let n = addr.send(Task::new(|| 6 * 7)).await??;
/// assert_eq!(n, 42);
/// pool.stop().await;
/// # Ok(()) }
/// ```
pub struct Pool {
    pub(crate) core: Arc<PoolCore>,
}

impl Actor for Pool {
    type Context = Context<Self>;

    /// The actor stops when the pool is stopped, when no `Addr<Pool>` (and so no [`PoolHandle`])
    /// is left, or when its actix `System` stops: in each case the pool drains and ends.
    fn stopped(&mut self, _: &mut Context<Self>) {
        self.core.begin_stop(Shutdown::Drain);
    }
}

impl<R: TaskOutput> Handler<Task<R>> for Pool {
    type Result = ResponseFuture<Result<R, TaskError>>;

    /// On a bounded pool that is full, the task fails at once with [`TaskError::Full`].
    fn handle(&mut self, task: Task<R>, _: &mut Context<Self>) -> Self::Result {
        let (cell, value) = task.into_cell(Default::default());
        self.core.admit(cell, None);
        Box::pin(value)
    }
}

impl Handler<Stop> for Pool {
    type Result = ();

    /// Starts a draining stop of the pool (if none is under way) and stops this actor.
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        self.core.begin_stop(Shutdown::Drain);
        ctx.stop();
    }
}

/// [`PoolHandle::try_push`] found the pool full; the task is handed back.
pub struct Full<R>(pub Task<R>);

impl<R> std::fmt::Debug for Full<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Full(..)")
    }
}

impl<R> std::fmt::Display for Full<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the pool's queue is full; the task was not queued")
    }
}

impl<R> std::error::Error for Full<R> {}

/// The handle a started pool is used through: push tasks, map jobs, resize, watch, stop. Cheap to
/// clone; every clone is the same pool. Get one from [`PoolBuilder::start`](crate::PoolBuilder::start).
///
/// The pool lives while a handle or an `Addr<Pool>` does: when the last is dropped, it drains and
/// stops in the background.
///
/// ```
/// use circuits::prelude::*;
///
/// # #[actix::main] async fn main() -> Result<(), TaskError> {
/// let pool = Pool::builder().min(2).queue_bound(64).start();
/// let same = pool.clone();
/// let a = pool.push(Task::new(|| 1)); // queued at once (parks if the pool is full)
/// let b = same.send(Task::new(|| 2)).await; // waits for room first
/// assert_eq!(a.await? + b.await?, 3);
/// assert_eq!(pool.workers().len(), 2);
/// pool.stop().await; // drains, then stops every worker
/// assert!(same.is_stopped());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PoolHandle {
    pub(crate) core: Arc<PoolCore>,
    pub(crate) addr: Addr<Pool>,
}

impl std::fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolHandle")
            .field("channel", &self.core.channel)
            .field("workers", &self.workers().len())
            .field("strategy", &self.core.strategy.name())
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

impl PoolHandle {
    /// Queues `task` on the worker the strategy picks and returns its value at once.
    ///
    /// Never blocks. A task pushed to a stopped pool resolves at once to
    /// [`TaskError::PoolStopped`]; a closure pushed to a process pool to
    /// [`TaskError::ClosureInProcessPool`].
    ///
    /// On a pool with a [`queue_bound`](crate::PoolBuilder::queue_bound) that is full, the task waits
    /// (asynchronously, in order) for room, and its value resolves after it ran. To slow a producer
    /// down until there is room, use [`send`](Self::send); to fail at once, [`try_push`](Self::try_push).
    ///
    /// # Errors
    ///
    /// The value resolves to a [`TaskError`]:
    ///
    /// * from the task itself: [`Panicked`](TaskError::Panicked), [`Failed`](TaskError::Failed)
    ///   (a [`Task::fallible`] returned `Err`), [`TimedOut`](TaskError::TimedOut) (its
    ///   [`timeout`](Task::timeout), the pool's [`task_timeout`](crate::PoolBuilder::task_timeout) or
    ///   [`stuck_after`](crate::PoolBuilder::stuck_after));
    /// * [`PoolStopped`](TaskError::PoolStopped): the pool is stopping or stopped; the task never
    ///   ran;
    /// * [`Cancelled`](TaskError::Cancelled): an [`abort`](Self::abort) (or a
    ///   [`stop_within`](Self::stop_within) past its budget) ended it, queued, parked or running;
    /// * process pools only: [`ClosureInProcessPool`](TaskError::ClosureInProcessPool) for a
    ///   closure task, [`WorkerCrashed`](TaskError::WorkerCrashed) when the child died running it,
    ///   [`WorkerStartFailed`](TaskError::WorkerStartFailed) when its worker cannot start a child,
    ///   [`UnknownJob`](TaskError::UnknownJob) and [`Wire`](TaskError::Wire) (see [`Task::job`]);
    /// * [`Wait`](TaskError::Wait): only from a bounded [`Value::wait`].
    pub fn push<R: TaskOutput>(&self, task: Task<R>) -> Value<R, TaskError> {
        let (cell, value) = task.into_cell(Default::default());
        self.core.push(cell, None);
        value
    }

    /// Queues `task` only if there is room: on a bounded pool that is full, gives the task back in
    /// [`Full`]. On an unbounded pool this is [`push`](Self::push).
    ///
    /// # Errors
    ///
    /// `Err(Full(task))` when the pool is bounded ([`queue_bound`](crate::PoolBuilder::queue_bound)) and
    /// has no room now: nothing was queued, and the task is handed back to try again later. A
    /// stopped pool is not an `Err`: the value resolves to [`TaskError::PoolStopped`]. The value
    /// resolves to errors as for [`push`](Self::push).
    pub fn try_push<R: TaskOutput>(&self, task: Task<R>) -> Result<Value<R, TaskError>, Full<R>> {
        let permit = match self.core.gate() {
            Ok(permit) => permit,
            // Nothing was handed to the pool; give the caller its task back.
            Err(Refused::Full) => return Err(Full(task)),
            Err(Refused::Stopped) => None,
        };
        let (mut cell, value) = task.into_cell(Default::default());
        if let Some(p) = permit {
            cell.hold(p);
        }
        // A stopped pool refuses it here, resolving the value to `PoolStopped`.
        self.core.submit(cell, None, false);
        Ok(value)
    }

    /// Waits (asynchronously) until the pool has room for `task`, queues it, and returns its
    /// value: the way for a producer to be slowed down by a bounded pool. Returns at once on an
    /// unbounded pool. If the pool stops while this waits, the value resolves to
    /// [`TaskError::PoolStopped`] (the task was never accepted).
    ///
    /// # Errors
    ///
    /// The value resolves to errors as for [`push`](Self::push), including
    /// [`PoolStopped`](TaskError::PoolStopped) when the pool stopped before there was room. Never
    /// [`Full`](TaskError::Full): it waits instead.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it waits for room drops the task: it was not queued and never
    /// runs. Once the future has returned, the task is queued.
    pub async fn send<R: TaskOutput>(&self, task: Task<R>) -> Value<R, TaskError> {
        let (mut cell, value) = task.into_cell(Default::default());
        let permit = match self.core.gate() {
            Ok(permit) => permit,
            Err(Refused::Stopped) => {
                cell.reject(TaskError::PoolStopped);
                return value;
            }
            Err(Refused::Full) => {
                // Only a bounded pool is full. Wait for room, keeping the permit that frees, or
                // for the pool to stop (or the bound to close, an abort).
                let bound = self
                    .core
                    .bound
                    .clone()
                    .expect("only a bounded pool is full");
                let mut stopped = self.core.stopped_signal();
                let room = std::pin::pin!(bound.acquire_owned());
                let stop = std::pin::pin!(stopped.wait_for(|s| *s));
                let room = match futures::future::select(room, stop).await {
                    futures::future::Either::Left((Ok(permit), _)) => Some(permit),
                    _ => None,
                };
                if room.is_none() {
                    cell.reject(TaskError::PoolStopped);
                    return value;
                }
                room
            }
        };
        if let Some(p) = permit {
            cell.hold(p);
        }
        // A pool that began stopping while this waited refuses the task with `PoolStopped`.
        self.core.submit(cell, None, false);
        value
    }

    /// Grows or shrinks the pool to `n` workers, clamped to `min..=max`, and returns the new size.
    /// New workers get fresh UUID channels; a retired worker finishes its running task, and its
    /// queued tasks move to the others. Blocks while workers start (threads or processes) and
    /// while another resize (such as the [`Resizer`](crate::Resizer)'s) is under way; it works from any thread.
    ///
    /// It does not fail: the size it returns says what it reached. A stopped pool is not resized;
    /// if the OS refuses a new worker, growing stops there.
    pub fn resize(&self, n: usize) -> usize {
        self.core.resize_to(n)
    }

    /// A snapshot: workers, loads, tasks pushed, done, failed, queued, running, and latency
    /// percentiles if the pool tracks them.
    pub fn stats(&self) -> PoolStats {
        self.core.stats()
    }

    /// Queues `task` on the worker registered under `worker` (one of [`workers`](Self::workers)).
    /// The task stays on that worker (no balancing, no stealing), unless the worker leaves the
    /// pool before running it.
    ///
    /// # Errors
    ///
    /// The value resolves to [`TaskError::NoRoute`] when `worker` is not one of the pool's workers
    /// (never was, was retired by a resize, or is a process worker's channel from before its child
    /// was replaced); otherwise to errors as for [`push`](Self::push).
    pub fn push_to<R: TaskOutput>(&self, worker: &Channel, task: Task<R>) -> Value<R, TaskError> {
        let slot = self
            .core
            .workers()
            .iter()
            .find(|w| &w.channel() == worker)
            .cloned();
        let (cell, value) = task.into_cell(Default::default());
        match slot {
            Some(slot) => self.core.push(cell, Some(&slot)),
            None => cell.reject(TaskError::NoRoute(worker.to_string())),
        }
        value
    }

    /// The pool actor's address: `addr.send(Task::new(f)).await` works as with any actor.
    pub fn addr(&self) -> Addr<Pool> {
        self.addr.clone()
    }

    /// The bus the pool is registered on.
    pub fn bus(&self) -> &Bus {
        &self.core.bus
    }

    /// The pool's channel.
    pub fn channel(&self) -> &Channel {
        &self.core.channel
    }

    /// The workers' channels, in worker order.
    pub fn workers(&self) -> Vec<Channel> {
        self.core.workers().iter().map(|w| w.channel()).collect()
    }

    /// Each worker's load (tasks queued or running), in worker order.
    pub fn loads(&self) -> Vec<usize> {
        self.core
            .workers()
            .iter()
            .map(|w| w.load.load(Ordering::Relaxed))
            .collect()
    }

    /// The balancing strategy's name.
    pub fn strategy(&self) -> &'static str {
        self.core.strategy.name()
    }

    /// Whether the pool is stopping or stopped.
    pub fn is_stopped(&self) -> bool {
        self.core.is_stopped()
    }

    /// Stops the pool, draining: new tasks are refused at once, every task accepted before (queued,
    /// or parked by [`push`](Self::push) on a full bounded pool) runs to its end and every value
    /// resolves, then the workers stop and leave the tree. Resolves when all that is done; a second
    /// call waits for the first. A job that never ends keeps a draining stop waiting: use
    /// [`stop_within`](Self::stop_within) or [`abort`](Self::abort) when that matters.
    ///
    /// # Cancel safety
    ///
    /// The stop runs in the background once started: dropping this future does not undo or
    /// interrupt it.
    pub async fn stop(&self) {
        self.core.stop(Shutdown::Drain).await
    }

    /// Stops the pool now: queued and parked tasks fail with [`TaskError::Cancelled`], and so do
    /// running ones, at once (a process worker's child is killed with its process group; a thread
    /// worker's value resolves and the thread finishes the closure detached, then exits). Each
    /// cancelled task fires its failure event. Called during a draining [`stop`](Self::stop), it
    /// escalates that stop. Resolves when the pool is stopped.
    ///
    /// # Cancel safety
    ///
    /// As for [`stop`](Self::stop): the abort runs in the background once started.
    pub async fn abort(&self) {
        self.core.stop(Shutdown::Abort).await
    }

    /// Stops the pool within a budget, for servers with a shutdown deadline: drains as
    /// [`stop`](Self::stop) does and, if that is not done within `budget`, aborts what is left as
    /// [`abort`](Self::abort) does. Resolves to `true` if the drain finished in time.
    ///
    /// # Panics
    ///
    /// When polled outside a Tokio runtime with timers (for example under
    /// `futures::executor::block_on`): the budget is a Tokio timer. The draining stop has begun
    /// by then. Inside an actix `System` it works; [`stop`](Self::stop) and
    /// [`abort`](Self::abort) need no runtime.
    ///
    /// # Cancel safety
    ///
    /// The drain runs in the background once started; dropping this future before the budget
    /// passed leaves it draining without a deadline.
    pub async fn stop_within(&self, budget: std::time::Duration) -> bool {
        let mut stopped = self.core.stopped_signal();
        self.core.begin_stop(Shutdown::Drain);
        let drained = tokio::time::timeout(budget, stopped.wait_for(|done| *done))
            .await
            .is_ok();
        if !drained {
            self.core.stop(Shutdown::Abort).await;
        }
        drained
    }
}
