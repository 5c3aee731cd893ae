//! Worker pools: the [`Pool`] actor, its [`PoolHandle`], the [`PoolBuilder`], and balancing.
//!
//! A pool registers on the bus under its channel (default `"pool"`) and starts `min` workers, each an
//! actor on a fresh UUID channel registered as the pool's child. Tasks reach it four ways, all
//! ending on the same hot path:
//!
//! * [`PoolHandle::push`] returns a [`Value`] at once;
//! * `Addr<Pool>::send(task)` as with any actix actor ([`PoolHandle::addr`]);
//! * [`Bus::call`](crate::Bus::call) at the pool's channel (balanced) or at one worker's channel
//!   (runs there);
//! * `Addr<Worker>::send(task)` (runs on that worker).
//!
//! When a task ends, its value resolves and, if anyone subscribed on the pool's channel, the pool
//! fires exactly one [`TaskSuccess`](crate::TaskSuccess) or [`TaskFailure`](crate::TaskFailure),
//! then [`TaskComplete`](crate::TaskComplete).
//!
//! ```
//! use circuits::prelude::*;
//!
//! fn count() -> u64 { (0..1_000_000u64).fold(0, |x, _| x + 1) }
//!
//! # #[actix::main] async fn main() -> Result<(), circuits::Error> {
//! let pool = Pool::builder().min(2).start();
//! let a = pool.push(Task::new(count));                      // a Value<u64, TaskError>
//! let b = pool.addr().send(Task::new(count)).await;          // through the actor
//! let c = pool.bus().call("pool", Task::new(count));         // through the bus
//! assert_eq!(a.await? + b.map_err(|_| TaskError::PoolStopped)?? + c.await?, 3_000_000);
//! pool.stop().await;
//! # Ok(()) }
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;

use crate::bus::Bus;
use crate::channel::Channel;
use crate::task::{Task, TaskError, TaskOutput};
use crate::tree::Stop;
use crate::value::Value;
use crate::worker::Shutdown;

pub mod balance;
pub(crate) mod builder;
pub(crate) mod core;
pub(crate) mod map;
pub(crate) mod resize;
pub(crate) mod stats;

pub use self::core::WorkerRestarted;
pub use self::map::MapStream;
pub use self::resize::{Resizer, WorkerStarted, WorkerStopped};
pub use self::stats::{Latency, PoolStats};
pub use builder::{PoolBuilder, PoolError};

use self::core::PoolCore;

/// The pool actor. `Addr<Pool>` handles [`Task<R>`] messages (balanced onto the workers) and
/// [`Stop`] (drains and stops the pool). Build one with [`Pool::builder`].
pub struct Pool {
    core: Arc<PoolCore>,
}

impl Pool {
    /// A builder with the defaults: `min` = number of CPUs, `max` = `min`, channel `"pool"`,
    /// [`LeastLoaded`](crate::LeastLoaded), thread mode.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }
}

impl Actor for Pool {
    type Context = Context<Self>;
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
        if !self.core.is_stopped() {
            let core = self.core.clone();
            actix::spawn(async move { core.stop(Shutdown::Drain).await });
        }
        ctx.stop();
    }
}

/// Queues a task; on a bounded pool that is full, parks it until a permit frees (its value
/// resolves after it was admitted and ran).
fn push<R: TaskOutput>(
    core: &Arc<PoolCore>,
    task: Task<R>,
    to: Option<&Arc<crate::worker::WorkerSlot>>,
) -> Value<R, TaskError> {
    let (mut cell, value) = task.into_cell(Default::default());
    let Some(bound) = &core.bound else {
        core.submit(cell, to);
        return value;
    };
    match bound.clone().try_acquire_owned() {
        Ok(permit) => {
            cell.hold(permit);
            core.submit(cell, to);
        }
        Err(tokio::sync::TryAcquireError::Closed) => cell.reject(TaskError::PoolStopped),
        Err(tokio::sync::TryAcquireError::NoPermits) => {
            let (core2, bound, to) = (core.clone(), bound.clone(), to.cloned());
            core.bus.spawn(async move {
                match bound.acquire_owned().await {
                    Ok(permit) => {
                        cell.hold(permit);
                        core2.submit(cell, to.as_ref());
                    }
                    Err(_) => cell.reject(TaskError::PoolStopped),
                }
            });
        }
    }
    value
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

/// The handle a started pool is used through. Cheap to clone; every clone is the same pool.
#[derive(Clone)]
pub struct PoolHandle {
    core: Arc<PoolCore>,
    addr: Addr<Pool>,
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
    /// On a pool with a [`queue_bound`](PoolBuilder::queue_bound) that is full, the task waits
    /// (asynchronously, in order) for room, and its value resolves after it ran. To slow a producer
    /// down until there is room, use [`send`](Self::send); to fail at once, [`try_push`](Self::try_push).
    pub fn push<R: TaskOutput>(&self, task: Task<R>) -> Value<R, TaskError> {
        push(&self.core, task, None)
    }

    /// Queues `task` only if there is room: on a bounded pool that is full, gives the task back in
    /// [`Full`]. On an unbounded pool this is [`push`](Self::push).
    pub fn try_push<R: TaskOutput>(&self, task: Task<R>) -> Result<Value<R, TaskError>, Full<R>> {
        let Some(bound) = &self.core.bound else {
            return Ok(self.push(task));
        };
        match bound.clone().try_acquire_owned() {
            Ok(permit) => {
                let (mut cell, value) = task.into_cell(Default::default());
                cell.hold(permit);
                self.core.submit(cell, None);
                Ok(value)
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => Err(Full(task)),
            Err(tokio::sync::TryAcquireError::Closed) => Ok(self.push(task)),
        }
    }

    /// Waits (asynchronously) until the pool has room for `task`, queues it, and returns its
    /// value: the way for a producer to be slowed down by a bounded pool. Returns at once on an
    /// unbounded pool.
    pub async fn send<R: TaskOutput>(&self, task: Task<R>) -> Value<R, TaskError> {
        let Some(bound) = &self.core.bound else {
            return self.push(task);
        };
        let (mut cell, value) = task.into_cell(Default::default());
        match bound.clone().acquire_owned().await {
            Ok(permit) => {
                cell.hold(permit);
                self.core.submit(cell, None);
            }
            Err(_) => cell.reject(TaskError::PoolStopped),
        }
        value
    }

    /// Grows or shrinks the pool to `n` workers, clamped to `min..=max`, and returns the new size.
    /// New workers get fresh UUID channels; a retired worker finishes its running task, and its
    /// queued tasks move to the others. Blocks while workers start (threads or processes).
    pub fn resize(&self, n: usize) -> usize {
        self.core.resize_to(n)
    }

    /// A snapshot: workers, loads, tasks pushed, done, failed, queued, running, and latency
    /// percentiles if the pool tracks them.
    pub fn stats(&self) -> PoolStats {
        self.core.stats()
    }

    /// Queues `task` on the worker registered under `worker` (one of [`workers`](Self::workers)).
    /// An unknown channel resolves to [`TaskError::NoRoute`].
    pub fn push_to<R: TaskOutput>(&self, worker: &Channel, task: Task<R>) -> Value<R, TaskError> {
        let slot = self
            .core
            .workers()
            .iter()
            .find(|w| &w.channel() == worker)
            .cloned();
        match slot {
            Some(slot) => push(&self.core, task, Some(&slot)),
            None => {
                let (cell, value) = task.into_cell(Default::default());
                cell.reject(TaskError::NoRoute(worker.to_string()));
                value
            }
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

    /// Stops the pool, draining: new tasks are refused at once, every queued task runs to its end
    /// and every value resolves, then the workers stop and leave the tree. Resolves when all that
    /// is done; a second call waits for the first.
    pub async fn stop(&self) {
        self.core.stop(Shutdown::Drain).await
    }

    /// Stops the pool, aborting: running tasks finish, queued tasks fail with
    /// [`TaskError::Cancelled`] (each with its failure event), then the workers stop.
    pub async fn abort(&self) {
        self.core.stop(Shutdown::Abort).await
    }
}
