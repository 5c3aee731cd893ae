//! Workers: where tasks run.
//!
//! Each worker is an actix actor ([`Worker`]) registered under its own UUID channel as a child of its
//! pool, in front of a backend that runs the tasks: a dedicated OS thread ([`thread`]), a child
//! process ([`process`], with the child's side in [`child`]), or a thread running many async tasks
//! ([`async_worker`]). The pool talks to all of them through one interface, [`Backend`]; it does
//! not branch on the mode.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use actix::prelude::*;

use crate::channel::Channel;
use crate::task::{ErasedTask, Finisher, Refusal, TaskError};
use crate::tree::{ComponentId, Stop};
use crate::value::Value;

pub(crate) mod async_kind;
pub(crate) mod async_worker;
pub(crate) mod child;
mod crew;
mod early;
pub(crate) mod info;
pub(crate) mod process;
#[cfg(feature = "nats")]
pub(crate) mod remote;
pub(crate) mod restart;
pub(crate) mod thread;
pub(crate) mod thread_kind;
mod urgent;

/// How long an idle worker thread (a thread worker, a process worker's host) keeps looking for its
/// next message before it sleeps. A sleeping thread costs a futex wake-up (several microseconds
/// here) on the next push; a caller awaiting one task at a time pushes the next one within about
/// this long.
pub(crate) const LINGER: std::time::Duration = std::time::Duration::from_micros(50);

/// How a worker should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shutdown {
    /// Run every queued task, then stop.
    Drain,
    /// Stop now: cancel the queued tasks and the running one (a child process is killed; a
    /// thread finishes its closure detached), then stop.
    Abort,
}

/// One worker's execution engine, thread or process.
pub(crate) trait Backend: Send + Sync {
    /// Queues a task; gives it back when the backend has stopped. A `pinned` task must run on this
    /// worker; others may be taken by an idle sibling.
    fn submit(&self, task: Box<dyn ErasedTask>, pinned: bool) -> Result<(), Box<dyn ErasedTask>>;
    /// Asks the backend to stop, draining or aborting its queue.
    fn shutdown(&self, how: Shutdown);
    /// Resolves once the backend has settled every task it was given and stopped (after an abort,
    /// once everything is settled: an aborted thread may still finish a closure, detached).
    fn finished(&self) -> Value<(), TaskError>;
    /// Leaves the pool: hands back every unpinned task still queued (to be moved to other
    /// workers), keeps the pinned ones, and stops after them; tasks that reach it later come back
    /// through `submit`'s error. Every kind of worker does the same.
    fn retire(&self) -> Vec<Box<dyn ErasedTask>>;
    /// How many tasks it is running right now (0 or 1; up to its limit for an async worker).
    fn running(&self) -> usize;
    /// What it is and what it runs, for [`WorkerInfo`](info::WorkerInfo) (read on demand; not
    /// on a task's path).
    fn probe(&self) -> info::Probe;
    /// Tells the backend which pool and slot it serves, once both exist (process workers need them
    /// to announce a replacement child).
    fn attach(&self, _link: Arc<dyn PoolLink>, _slot: Weak<WorkerSlot>) {}
    /// Whether a task queued here now would start within a few hundred nanoseconds: a worker awake
    /// and idle would take it (thread workers; the others answer `false`). Asked just before the
    /// task is queued; see `PoolCore::submit`.
    fn starts_at_once(&self) -> bool {
        false
    }
}

/// A kind of worker (threads, child processes; next remote hosts and async tasks), chosen once
/// when the pool is built. The pool starts, feeds and stops every kind the same way; what differs
/// is here, so a new kind is a new implementation, not a branch in the pool.
pub(crate) trait Kind: Send + Sync + std::fmt::Debug {
    /// Why a pool of this kind cannot start here, if it cannot.
    fn refuse_start(&self) -> Option<StartRefused>;
    /// Starts one worker's backend; `fin` settles its tasks, `load` counts them.
    fn spawn(
        &self,
        fin: Arc<Finisher>,
        load: Arc<AtomicUsize>,
    ) -> std::io::Result<Box<dyn Backend>>;
    /// Refuses a task this kind cannot run (process workers run only jobs).
    fn check(&self, task: &dyn ErasedTask) -> Result<(), Refusal>;
    /// How many bytes of job inputs one task may carry (a frame's budget), if bounded.
    fn payload_budget(&self, job_name: &str) -> Option<usize>;
    /// Whether its workers run a task's closure (threads, async tasks). The others run jobs
    /// from their encoded inputs only, so a `map` keeps only those.
    fn runs_closures(&self) -> bool;
    /// Whether the pool's `stuck_after` is a timeout that ends the task's worker (processes), rather
    /// than a watch that replaces a worker whose thread cannot be stopped (threads).
    fn stuck_is_timeout(&self) -> bool;
}

/// Why a kind of worker cannot start in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartRefused {
    /// Not built for this platform or without its feature.
    Unsupported,
    /// This is a worker process whose `main` did not call `circuits::init` first.
    NotInitialized,
}

/// The one way a worker talks to its pool, upward (the pool implements it; a worker holds it
/// without keeping the pool alive).
pub(crate) trait PoolLink: Send + Sync {
    /// The worker's child was replaced: the pool gives the worker a fresh channel and returns its
    /// finisher (`None` once the pool is stopped).
    fn restarted(&self, slot: &Arc<WorkerSlot>, reason: String) -> Option<Arc<Finisher>>;
}

/// What the pool keeps for each worker: its channel, its load counter, and its backend.
pub(crate) struct WorkerSlot {
    /// The worker's channel; a process worker gets a fresh one when its child is replaced.
    pub(crate) channel: RwLock<Channel>,
    /// Tasks queued on or running in this worker; read by the balancing strategy.
    pub(crate) load: Arc<AtomicUsize>,
    pub(crate) fin: RwLock<Arc<Finisher>>,
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) component: Mutex<Option<ComponentId>>,
    pub(crate) stopper: OnceLock<Recipient<Stop>>,
    /// The route of the worker's channel on the bus, while it has one.
    pub(crate) route: Mutex<Option<Arc<dyn crate::bus::Route>>>,
    /// Set when the worker leaves the pool: tasks aimed at it are placed elsewhere.
    pub(crate) retired: std::sync::atomic::AtomicBool,
}

impl WorkerSlot {
    pub(crate) fn channel(&self) -> Channel {
        self.channel
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub(crate) fn fin(&self) -> Arc<Finisher> {
        self.fin.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The actor of one worker: its component in the tree, under its channel, as a child of its
/// pool's. Tasks reach a worker without it, straight onto its queue: through
/// [`PoolHandle::push_to`](crate::PoolHandle::push_to), or [`Bus::call`](crate::Bus::call) at
/// the worker's channel.
pub struct Worker {
    pub(crate) slot: Arc<WorkerSlot>,
}

impl Worker {
    /// The worker's channel.
    pub fn channel(&self) -> Channel {
        self.slot.channel()
    }
}

impl Actor for Worker {
    type Context = Context<Self>;
}

impl Handler<Stop> for Worker {
    type Result = ();
    /// Stops this actor; the backend is stopped by the pool (`PoolHandle::stop`).
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
