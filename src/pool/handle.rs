//! The [`Pool`] actor and the [`PoolHandle`] a started pool is used through.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;

use crate::bus::Bus;
use crate::channel::Channel;
use crate::task::{
    hand_back, RecentFailure, Refusal, RunError, SubmitError, Task, TaskError, TaskOutput,
};
use crate::tree::Stop;
use crate::value::Value;
use crate::worker::info::WorkerInfo;
use crate::worker::Shutdown;

use super::core::PoolCore;
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
/// // The mailbox error first (the actor is gone), then the task's: a `RunError`.
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
    type Result = ResponseFuture<Result<R, RunError>>;

    /// Balances the task onto a worker and answers with its result. A task that is not accepted
    /// answers [`RunError::Refused`] at once: on a bounded pool that is full, with
    /// [`Refusal::Full`] (a message does not wait for room; [`PoolHandle::run`] does).
    fn handle(&mut self, task: Task<R>, _: &mut Context<Self>) -> Self::Result {
        let (cell, value) = task.into_cell(Default::default());
        match self.core.admit(cell, None) {
            Ok(at_once) => {
                // Now, not at the future's first poll: the actor may handle other pushes first,
                // and the help a worker offered belongs to this push's value (see `Value`).
                let value = value.spin_first(at_once);
                Box::pin(async move { Ok(value.await?) })
            }
            Err((refusal, _)) => Box::pin(std::future::ready(Err(RunError::Refused(refusal)))),
        }
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

/// The handle a started pool is used through: push tasks, map jobs, resize, watch, stop. Cheap to
/// clone; every clone is the same pool. Get one from [`PoolBuilder::start`](crate::PoolBuilder::start).
///
/// The pool lives while a handle or an `Addr<Pool>` does: when the last is dropped, it drains and
/// stops in the background.
///
/// ```
/// use circuits::prelude::*;
///
/// # #[actix::main] async fn main() -> Result<(), circuits::Error> {
/// let pool = Pool::builder().min(2).queue_bound(64).start();
/// let same = pool.clone();
/// let a = pool.push(Task::new(|| 1))?; // queued at once, or handed back (full, stopped)
/// let b = same.send(Task::new(|| 2)).await?; // waits for room first
/// let c = pool.run(Task::new(|| 3)).await?; // waits for room, then for the result
/// assert_eq!(a.await? + b.await? + c, 6);
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
    /// Queues `task` on the worker the strategy picks and returns its value, or hands the task
    /// back. Never blocks and never waits: the entry point for code that is not async, and for
    /// callers that would rather shed load than wait.
    ///
    /// # Errors
    ///
    /// `Err(`[`SubmitError`]`)` when the task was not accepted; it holds the task, and its
    /// [`refusal`](SubmitError::refusal) says why:
    ///
    /// * [`Refusal::Full`]: the pool is bounded ([`queue_bound`](crate::PoolBuilder::queue_bound))
    ///   and has no room now ([`send`](Self::send) and [`run`](Self::run) wait for room instead);
    /// * [`Refusal::Stopped`]: the pool is stopping or stopped;
    /// * [`Refusal::ClosureInProcessPool`]: a closure task sent to a process pool.
    ///
    /// Once accepted, the value resolves to the task's result or to a [`TaskError`]:
    ///
    /// * from the task itself: [`Panicked`](TaskError::Panicked), [`Failed`](TaskError::Failed)
    ///   (a [`Task::fallible`] returned `Err`), [`TimedOut`](TaskError::TimedOut) (its
    ///   [`timeout`](Task::timeout), the pool's [`task_timeout`](crate::PoolBuilder::task_timeout) or
    ///   [`stuck_after`](crate::PoolBuilder::stuck_after));
    /// * [`Cancelled`](TaskError::Cancelled): an [`abort`](Self::abort) (or a
    ///   [`stop_within`](Self::stop_within) past its budget) ended it, queued or running;
    /// * process pools only: [`WorkerCrashed`](TaskError::WorkerCrashed) when the child died
    ///   running it, [`WorkerStartFailed`](TaskError::WorkerStartFailed) when its worker cannot
    ///   start a child, [`UnknownJob`](TaskError::UnknownJob) and [`Wire`](TaskError::Wire) (see
    ///   [`Task::job`]).
    pub fn push<R: TaskOutput>(
        &self,
        task: Task<R>,
    ) -> Result<Value<R, TaskError>, SubmitError<R>> {
        let (cell, value) = task.into_cell(Default::default());
        match self.core.admit(cell, None) {
            Ok(at_once) => Ok(value.spin_first(at_once)),
            Err(refused) => Err(hand_back(refused)),
        }
    }

    /// Waits (asynchronously) until the pool has room for `task`, queues it, and returns its
    /// value: the way for a producer to be slowed down by a bounded pool. Returns at once on an
    /// unbounded pool. Producers waiting for room get it in the order they began waiting.
    ///
    /// # Errors
    ///
    /// `Err(`[`SubmitError`]`)` hands the task back when the pool is stopped, or begins stopping
    /// while this waits (at once, not when the drain ends: [`Refusal::Stopped`]), and for a closure sent to a process pool
    /// ([`Refusal::ClosureInProcessPool`], at once). Never [`Refusal::Full`]: it waits instead.
    /// The value resolves as for [`push`](Self::push).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future while it waits for room drops the task (it was not
    /// queued and never runs, and nothing is fired for it). Once the future has returned, the
    /// task is queued. To keep the task when giving up, use [`push`](Self::push) in a loop or
    /// race this against your own timer knowing the task is lost.
    pub async fn send<R: TaskOutput>(
        &self,
        task: Task<R>,
    ) -> Result<Value<R, TaskError>, SubmitError<R>> {
        let (mut cell, value) = task.into_cell(Default::default());
        if let Err(refusal) = self.core.kind.check(&*cell) {
            return Err(hand_back((refusal, cell)));
        }
        let permit = match self.core.gate() {
            Ok(permit) => permit,
            Err(Refusal::Full) => match self.core.room().await {
                Some(permit) => permit,
                None => return Err(hand_back((Refusal::Stopped, cell))),
            },
            Err(refusal) => return Err(hand_back((refusal, cell))),
        };
        if let Some(p) = permit {
            cell.hold(p);
        }
        // A pool that began stopping while this waited hands the task back.
        match self.core.submit(cell, None, false) {
            Ok(at_once) => Ok(value.spin_first(at_once)),
            Err(refused) => Err(hand_back(refused)),
        }
    }

    /// Submits `task` as [`send`](Self::send) does (waiting for room on a bounded pool) and
    /// awaits its result: the common case, in one await.
    ///
    /// ```
    /// use circuits::prelude::*;
    ///
    /// # #[actix::main] async fn main() -> Result<(), RunError> {
    /// let pool = Pool::builder().min(2).queue_bound(8).start();
    /// assert_eq!(pool.run(Task::new(|| 6 * 7)).await?, 42);
    /// pool.stop().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`RunError::Refused`] when the task was not accepted (as for [`send`](Self::send); the
    /// task is dropped), [`RunError::Task`] with the task's [`TaskError`] when it was accepted and
    /// failed (as for [`push`](Self::push)).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe while waiting for room (the task is dropped, as with
    /// [`send`](Self::send)); once queued, dropping the future does not cancel the task: it runs,
    /// and its result events fire.
    pub async fn run<R: TaskOutput>(&self, task: Task<R>) -> Result<R, RunError> {
        Ok(self.send(task).await?.await?)
    }

    /// Grows or shrinks the pool to `n` workers, clamped to `min..=max`, and returns the new size.
    /// New workers get fresh UUID channels. A retired worker finishes its running task and the
    /// tasks pinned to it (keyed, or sent to its channel; in process mode also the jobs already
    /// sent to its child), and its other queued tasks move to the others; a
    /// [`stop`](Self::stop) waits for what it still runs, an [`abort`](Self::abort) cancels it.
    /// Blocks while workers start (threads or processes) and while another resize (such as the
    /// [`Resizer`](crate::Resizer)'s) is under way; it works from any thread.
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

    /// Each worker now, in worker order: its channel, mode, process id, state, load, and the
    /// task it runs with how long it has been running (see [`WorkerInfo`] for when that is known).
    /// Read from what the workers keep anyway: calling it costs the workers nothing but a brief
    /// look under the lock each keeps around its running task.
    ///
    /// ```
    /// use circuits::prelude::*;
    /// use circuits::{WorkerMode, WorkerState};
    ///
    /// # #[actix::main] async fn main() {
    /// let pool = Pool::builder().min(2).start();
    /// let workers = pool.worker_info();
    /// assert_eq!(workers.len(), 2);
    /// assert!(workers.iter().all(|w| w.mode == WorkerMode::Thread && w.pid.is_none()));
    /// assert!(workers.iter().all(|w| w.state == WorkerState::Idle));
    /// pool.stop().await;
    /// # }
    /// ```
    pub fn worker_info(&self) -> Vec<WorkerInfo> {
        self.core.workers().iter().map(|w| w.info()).collect()
    }

    /// The pool's last failed tasks (up to 32), oldest first, with their errors. Kept on the
    /// failure path only (a success costs nothing for it), whether or not anyone subscribed to
    /// [`TaskFailure`](crate::TaskFailure) events.
    ///
    /// ```
    /// use circuits::prelude::*;
    ///
    /// # #[actix::main] async fn main() {
    /// let pool = Pool::builder().min(1).start();
    /// let _ = pool.run(Task::fallible(|| "x".parse::<u32>())).await;
    /// let last = pool.recent_failures();
    /// assert_eq!(last.len(), 1);
    /// assert_eq!(last[0].error.kind(), "failed");
    /// pool.stop().await;
    /// # }
    /// ```
    pub fn recent_failures(&self) -> Vec<RecentFailure> {
        self.core.recent.list()
    }

    /// The pool's [queue bound](crate::PoolBuilder::queue_bound), if it has one.
    pub fn queue_bound(&self) -> Option<usize> {
        self.core.queue_bound
    }

    /// The fewest and the most workers the pool may have (`min..=max`).
    pub fn size_limits(&self) -> std::ops::RangeInclusive<usize> {
        self.core.min..=self.core.max
    }

    /// Queues `task` on the worker registered under `worker` (one of [`workers`](Self::workers)).
    /// The task stays on that worker (no balancing, no stealing), unless the worker leaves the
    /// pool before running it.
    ///
    /// # Errors
    ///
    /// As for [`push`](Self::push), and [`Refusal::NoRoute`] when `worker` is not one of the pool's
    /// workers (never was, was retired by a resize, or is a process worker's channel from before
    /// its child was replaced).
    pub fn push_to<R: TaskOutput>(
        &self,
        worker: &Channel,
        task: Task<R>,
    ) -> Result<Value<R, TaskError>, SubmitError<R>> {
        let slot = self
            .core
            .workers()
            .iter()
            .find(|w| &w.channel() == worker)
            .cloned();
        let Some(slot) = slot else {
            return Err(SubmitError::new(Refusal::NoRoute(worker.clone()), task));
        };
        let (cell, value) = task.into_cell(Default::default());
        match self.core.admit(cell, Some(&slot)) {
            Ok(_) => Ok(value),
            Err(refused) => Err(hand_back(refused)),
        }
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
    /// or a chunk of a [`map`](Self::map) waiting for room) runs to its end and every value
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

    /// Stops the pool now: queued tasks (and `map` chunks waiting for room) fail with
    /// [`TaskError::Cancelled`], and so do
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
