//! The pool's shared core: the worker list, the hot path (`submit`), and stopping.
//!
//! Every way into the pool (`PoolHandle::push`, `Addr<Pool>`, the bus, a worker's channel) ends in
//! [`PoolCore::submit`]: pick a worker from the atomic load counters, bump its counter, and hand the
//! task straight to its backend's queue. No lock is held while a task runs, and no actor mailbox is
//! crossed.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, Weak};
use std::time::Duration;

use crate::bus::{Bus, Route, Target};
use crate::channel::Channel;
use crate::pool::balance::{Loads, Strategy};
use crate::task::{ErasedTask, Finisher, TaskError, TaskId};
use crate::tree::{Component, ComponentId};
use crate::worker::{Shutdown, WorkerSlot};

/// Fired on the pool's channel when a process worker's child died or was killed and a new child
/// took its place under a fresh channel.
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
pub struct WorkerRestarted {
    /// The worker's old channel.
    pub old: Channel,
    /// Its new channel.
    pub new: Channel,
    /// Why the old child ended (exit code, signal, timeout, protocol violation).
    pub reason: String,
}

const RUNNING: u8 = 0;
const STOPPING: u8 = 1;
const STOPPED: u8 = 2;

/// Thread or process workers.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    Thread,
    Process(crate::worker::process::ProcessConfig),
}

/// What a pool is configured with (from the builder).
pub(crate) struct Settings {
    pub(crate) min: usize,
    pub(crate) max: usize,
    pub(crate) strategy: Box<dyn Strategy>,
    pub(crate) mode: Mode,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) queue_bound: Option<usize>,
    pub(crate) stuck_after: Option<Duration>,
    pub(crate) track_latency: bool,
}

pub(crate) struct PoolCore {
    pub(crate) bus: Bus,
    pub(crate) channel: Channel,
    pub(crate) component: OnceLock<ComponentId>,
    pub(crate) workers: RwLock<Vec<Arc<WorkerSlot>>>,
    pub(crate) strategy: Box<dyn Strategy>,
    pub(crate) mode: Mode,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) min: usize,
    pub(crate) max: usize,
    /// Permits for queued tasks when the pool is bounded; a task holds one until it ends.
    pub(crate) bound: Option<Arc<tokio::sync::Semaphore>>,
    pub(crate) stuck_after: Option<Duration>,
    pub(crate) track_latency: bool,
    /// Where worker actors live (the arbiter the pool started on), so workers can be added from
    /// any thread.
    pub(crate) arbiter: actix::ArbiterHandle,
    /// Counters of workers that left the pool (still counting what they finish while they drain),
    /// so stats survive resizes.
    pub(crate) retired: std::sync::Mutex<Vec<Arc<crate::pool::stats::Counters>>>,
    /// One resize at a time.
    pub(crate) resizing: std::sync::Mutex<()>,
    /// Thread workers that may steal each other's unpinned tasks.
    pub(crate) siblings: crate::worker::thread::Siblings,
    next_id: AtomicU64,
    state: AtomicU8,
    /// Pushes between their state check and their enqueue; stop waits for zero so that nothing is
    /// queued behind a worker's stop message.
    inflight: AtomicUsize,
    stopped: tokio::sync::watch::Sender<bool>,
}

struct SlotLoads<'a>(&'a [Arc<WorkerSlot>]);

impl Loads for SlotLoads<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn load(&self, i: usize) -> usize {
        self.0[i].load.load(Ordering::Relaxed)
    }
}

impl PoolCore {
    pub(crate) fn new(bus: Bus, channel: Channel, s: Settings) -> Self {
        let stuck_timeout = match s.mode {
            // A process worker's stuck task is ended by the timeout rule (the child is killed).
            Mode::Process(_) => s.default_timeout.or(s.stuck_after),
            Mode::Thread => s.default_timeout,
        };
        PoolCore {
            bus,
            channel,
            component: OnceLock::new(),
            workers: RwLock::new(Vec::new()),
            strategy: s.strategy,
            mode: s.mode,
            default_timeout: stuck_timeout,
            min: s.min,
            max: s.max,
            bound: s
                .queue_bound
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
            stuck_after: s.stuck_after,
            track_latency: s.track_latency,
            arbiter: actix::Arbiter::current(),
            retired: Default::default(),
            resizing: std::sync::Mutex::new(()),
            siblings: Default::default(),
            next_id: AtomicU64::new(1),
            state: AtomicU8::new(RUNNING),
            inflight: AtomicUsize::new(0),
            stopped: tokio::sync::watch::channel(false).0,
        }
    }

    pub(crate) fn workers(&self) -> RwLockReadGuard<'_, Vec<Arc<WorkerSlot>>> {
        // Critical sections only push or read the list; a poisoned lock still holds a whole list.
        self.workers.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_process(&self) -> bool {
        matches!(self.mode, Mode::Process(_))
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.state.load(Ordering::SeqCst) != RUNNING
    }

    /// Tasks accepted so far (ids are handed out in order from 1).
    pub(crate) fn pushed(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed) - 1
    }

    /// A finisher for a worker on `channel`, with its own counters.
    pub(crate) fn finisher(&self, channel: &Channel) -> Finisher {
        Finisher::new(&self.bus, &self.channel, channel, self.track_latency)
    }

    /// Admits a task that must not wait: with a bound, takes a permit or fails with `Full`.
    pub(crate) fn admit(&self, mut task: Box<dyn ErasedTask>, to: Option<&Arc<WorkerSlot>>) {
        if let Some(bound) = &self.bound {
            match bound.clone().try_acquire_owned() {
                Ok(permit) => task.hold(permit),
                Err(tokio::sync::TryAcquireError::Closed) => {
                    return task.reject(TaskError::PoolStopped)
                }
                Err(tokio::sync::TryAcquireError::NoPermits) => {
                    return task.reject(TaskError::Full)
                }
            }
        }
        self.submit(task, to);
    }

    /// The hot path: accept `task` and queue it on `to`, or on the worker the strategy picks.
    pub(crate) fn submit(&self, mut task: Box<dyn ErasedTask>, to: Option<&Arc<WorkerSlot>>) {
        if self.is_process() && task.job().is_none() {
            return task.reject(TaskError::ClosureInProcessPool);
        }
        self.inflight.fetch_add(1, Ordering::SeqCst);
        if self.state.load(Ordering::SeqCst) != RUNNING {
            self.inflight.fetch_sub(1, Ordering::SeqCst);
            return task.reject(TaskError::PoolStopped);
        }
        task.prepare(
            TaskId(self.next_id.fetch_add(1, Ordering::Relaxed)),
            self.default_timeout,
        );
        match to {
            // A worker that is leaving the pool takes nothing more; its tasks go elsewhere.
            Some(slot) if !slot.retired.load(Ordering::SeqCst) => self.enqueue(slot, task, true),
            Some(slot) => self.resubmit(task, &slot.fin()),
            None => {
                let workers = self.workers();
                if workers.is_empty() {
                    task.reject(TaskError::PoolStopped);
                } else {
                    let key = task.key();
                    let i = self.strategy.pick(&SlotLoads(&workers), key);
                    // A keyed task stays where its key sends it; others may be stolen.
                    self.enqueue(&workers[i.min(workers.len() - 1)], task, key.is_some());
                }
            }
        }
        self.inflight.fetch_sub(1, Ordering::SeqCst);
    }

    fn enqueue(&self, slot: &WorkerSlot, task: Box<dyn ErasedTask>, pinned: bool) {
        slot.load.fetch_add(1, Ordering::Relaxed);
        if let Err(task) = slot.backend.submit(task, pinned) {
            // That worker left the pool (retired or lost) after the task was routed to it.
            slot.load.fetch_sub(1, Ordering::Relaxed);
            self.resubmit(task, &slot.fin());
        }
    }

    /// Waits until every push that already passed the state check has finished enqueuing (a few
    /// instructions each), so that a worker leaving the pool sees all it will ever be given.
    pub(crate) fn quiesce_pushes(&self) {
        while self.inflight.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }

    /// Queues an already accepted task on a worker the strategy picks (a retiring worker's queue
    /// moving to the others); fails it if no worker is left.
    pub(crate) fn resubmit(&self, task: Box<dyn ErasedTask>, fallback: &Finisher) {
        let workers = self.workers();
        if workers.is_empty() || self.state.load(Ordering::SeqCst) == STOPPED {
            drop(workers);
            return task.fail(TaskError::Cancelled, fallback);
        }
        let i = self.strategy.pick(&SlotLoads(&workers), task.key());
        let slot = workers[i.min(workers.len() - 1)].clone();
        drop(workers);
        slot.load.fetch_add(1, Ordering::Relaxed);
        if let Err(task) = slot.backend.submit(task, false) {
            slot.load.fetch_sub(1, Ordering::Relaxed);
            task.fail(TaskError::Cancelled, fallback);
        }
    }

    /// Puts a worker into the tree (as the pool's child, stoppable through its actor) and routes
    /// its channel to it.
    pub(crate) fn register_worker(
        self: &Arc<Self>,
        slot: &Arc<WorkerSlot>,
        channel: &Channel,
    ) -> Result<ComponentId, crate::bus::BusError> {
        let mut component = Component::new("worker").channel(channel.clone());
        if let Some(parent) = self.component.get() {
            component = component.parent(*parent);
        }
        if let Some(stopper) = slot.stopper.get() {
            component = component.stopper(stopper.clone());
        }
        let id = self.bus.register(component)?;
        *slot.component.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
        self.bus.add_route(
            channel.clone(),
            Arc::new(WorkerRoute {
                core: Arc::downgrade(self),
                slot: Arc::downgrade(slot),
            }),
        );
        Ok(id)
    }

    /// Takes a worker's channel off the routes and its component out of the tree.
    pub(crate) fn unregister_worker(&self, slot: &WorkerSlot, channel: &Channel) {
        self.bus.remove_route(channel);
        let component = slot
            .component
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(id) = component {
            let _ = self.bus.unregister(id);
        }
    }

    /// Fires `event` on the pool's channel (from the bus's dispatch thread).
    pub(crate) fn announce<E: crate::Event>(&self, event: E) {
        let bus = self.bus.clone();
        let target = Target::from(&self.channel);
        self.bus
            .spawn(async move { bus.fire_plain(&target, event).await });
    }

    /// A process worker replaced its child: give the worker a fresh channel (route, component,
    /// finisher) and fire [`WorkerRestarted`]. Returns the finisher for the new channel.
    pub(crate) fn worker_restarted(
        self: &Arc<Self>,
        slot: &Arc<WorkerSlot>,
        reason: String,
    ) -> Option<Arc<Finisher>> {
        if self.state.load(Ordering::SeqCst) == STOPPED {
            return None;
        }
        let old = slot.channel();
        let new = Channel::unique();
        let fin = Arc::new(slot.fin().renamed(&new));
        *slot.channel.write().unwrap_or_else(|p| p.into_inner()) = new.clone();
        *slot.fin.write().unwrap_or_else(|p| p.into_inner()) = fin.clone();
        self.unregister_worker(slot, &old);
        if let Ok(id) = self.register_worker(slot, &new) {
            let _ = self.bus.mark_started(id);
        }
        self.announce(WorkerRestarted { old, new, reason });
        Some(fin)
    }

    /// Stops the pool: refuses new tasks, drains or aborts every worker, waits for them, removes the
    /// routes and unregisters the pool's subtree. A second caller waits for the first to finish.
    pub(crate) async fn stop(&self, how: Shutdown) {
        if self
            .state
            .compare_exchange(RUNNING, STOPPING, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            let mut rx = self.stopped.subscribe();
            let _ = rx.wait_for(|done| *done).await;
            return;
        }
        if let Some(bound) = &self.bound {
            // Producers waiting for room get PoolStopped instead of waiting for ever.
            bound.close();
        }
        // Pushes that saw RUNNING finish enqueuing within a few instructions; none can start now.
        self.quiesce_pushes();
        let workers: Vec<_> = self.workers().clone();
        for w in &workers {
            w.backend.shutdown(how);
        }
        for w in &workers {
            let _ = w.backend.finished().await;
        }
        self.bus.remove_route(&self.channel);
        for w in &workers {
            self.bus.remove_route(&w.channel());
        }
        self.state.store(STOPPED, Ordering::SeqCst);
        if let Some(id) = self.component.get() {
            // Stops the Pool and Worker actors (children first) and unregisters them.
            let _ = self.bus.stop_component(*id).await;
        }
        self.stopped.send_replace(true);
    }
}

impl Drop for PoolCore {
    /// A pool dropped without `stop` aborts its workers (threads finish their running task and
    /// exit; process workers are killed), so nothing outlives it.
    fn drop(&mut self) {
        if self.state.swap(STOPPED, Ordering::SeqCst) != STOPPED {
            for w in self
                .workers
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                w.backend.shutdown(Shutdown::Abort);
            }
        }
    }
}

/// The route for tasks fired at the pool's channel: balanced.
pub(crate) struct PoolRoute(pub(crate) Weak<PoolCore>);

impl Route for PoolRoute {
    fn submit(&self, task: Box<dyn ErasedTask>) {
        match self.0.upgrade() {
            Some(core) => core.admit(task, None),
            None => task.reject(TaskError::PoolStopped),
        }
    }
}

/// The route for tasks fired at one worker's channel: run there.
pub(crate) struct WorkerRoute {
    pub(crate) core: Weak<PoolCore>,
    pub(crate) slot: Weak<WorkerSlot>,
}

impl Route for WorkerRoute {
    fn submit(&self, task: Box<dyn ErasedTask>) {
        match (self.core.upgrade(), self.slot.upgrade()) {
            (Some(core), Some(slot)) => core.admit(task, Some(&slot)),
            _ => task.reject(TaskError::PoolStopped),
        }
    }
}
