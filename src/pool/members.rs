//! A pool's members: adding a worker (its backend, actor, component and route), removing one
//! (its queue moves to the others), replacing a lost one, resizing by hand, renaming a worker whose
//! child was replaced; the routes of the pool's and the workers' channels; the link workers
//! talk to their pool through.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use actix::prelude::*;

use super::core::PoolCore;
use super::error::PoolError;
use super::events::{WorkerRestarted, WorkerStarted, WorkerStopped};
use crate::bus::Route;
use crate::channel::Channel;
use crate::task::{ErasedTask, Finisher, Refusal, StuckHook};
use crate::tree::{Component, ComponentId, Stop};
use crate::worker::{PoolLink, Shutdown, Worker, WorkerSlot};

/// Starts one worker: its backend, its actor, its component and its route; fires `WorkerStarted`.
pub(crate) fn add_worker(core: &Arc<PoolCore>) -> Result<Arc<WorkerSlot>, PoolError> {
    let channel = Channel::unique();
    let fin = Arc::new(core.finisher(&channel));
    let load = Arc::new(AtomicUsize::new(0));
    let backend = core
        .kind
        .spawn(fin.clone(), load.clone())
        .map_err(|e| PoolError::Spawn(e.to_string()))?;
    let slot = Arc::new(WorkerSlot {
        channel: RwLock::new(channel.clone()),
        load,
        fin: RwLock::new(fin.clone()),
        backend,
        component: Mutex::new(None),
        stopper: OnceLock::new(),
        route: Mutex::new(None),
        retired: std::sync::atomic::AtomicBool::new(false),
    });
    super::retry::install(core, &slot, &fin);
    let link: Arc<dyn crate::worker::PoolLink> = Arc::new(Link(Arc::downgrade(core)));
    let watched = core.stuck_after.filter(|_| !core.kind.stuck_is_timeout());
    if let Some(after) = watched {
        let (core, slot) = (Arc::downgrade(core), Arc::downgrade(&slot));
        let lost = move || {
            if let (Some(core), Some(slot)) = (core.upgrade(), slot.upgrade()) {
                // At once, before anyone who saw the task time out can begin a stop.
                core.leaving.mark_lost(&slot);
                // Replacing a worker starts a thread and takes the resize lock: not on the bus's
                // dispatch thread, where the stuck timer fires.
                let _ = std::thread::Builder::new()
                    .name("circuits-replace".into())
                    .spawn(move || core.worker_lost(&slot));
            }
        };
        let _ = fin.stuck.set(StuckHook {
            after,
            lost: Arc::new(lost),
        });
    }
    // Attached once the hooks are set (an async worker starts its blocking watchdog here).
    slot.backend.attach(link, Arc::downgrade(&slot));
    // Worker actors live on the pool's arbiter, so a worker can be added from any thread.
    let actor = Worker { slot: slot.clone() };
    let addr = Worker::start_in_arbiter(&core.arbiter, move |_| actor);
    let _ = slot.stopper.set(addr.recipient::<Stop>());
    let id = core.register_worker(&slot, &channel)?;
    let workers = {
        let mut w = core.workers.write().unwrap_or_else(|p| p.into_inner());
        w.push(slot.clone());
        w.len()
    };
    core.bus.mark_started(id)?;
    tracing::debug!(pool = %core.channel, worker = %channel, workers, "worker started");
    core.announce(WorkerStarted {
        worker: channel,
        workers,
    });
    Ok(slot)
}

impl PoolCore {
    /// Removes the routes this pool owns (its channel's and its workers').
    pub(crate) fn release_routes(&self, workers: &[Arc<WorkerSlot>]) {
        if let Some(route) = self.route.get() {
            self.bus.remove_route(&self.channel, route);
        }
        for w in workers {
            self.release_worker_route(w, &w.channel());
        }
    }

    /// Takes a worker's route off its channel (if it still has one).
    pub(crate) fn release_worker_route(&self, slot: &WorkerSlot, channel: &Channel) {
        let route = slot.route.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(route) = route {
            self.bus.remove_route(channel, &route);
        }
    }

    /// Takes `slot` out of the pool: no new task is routed to it, its queued tasks move to the
    /// others, it finishes its running task and stops (a stop waits for it, unless it is `lost`;
    /// see [`LeavingWorkers`](super::leaving::LeavingWorkers)). Fires `WorkerStopped`.
    pub(crate) fn remove_worker(
        self: &Arc<Self>,
        slot: &Arc<WorkerSlot>,
        reason: String,
        lost: bool,
    ) -> bool {
        let workers = {
            let mut w = self.workers.write().unwrap_or_else(|p| p.into_inner());
            let before = w.len();
            w.retain(|s| !Arc::ptr_eq(s, slot));
            if w.len() == before {
                return false; // already gone
            }
            // Its counters move to the retired ones in the same step, so `stats` never misses
            // or doubles them.
            self.retired
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(slot.fin().counters.clone());
            w.len()
        };
        let channel = slot.channel();
        self.unregister_worker(slot, &channel);
        // A push that took this worker from its route before now either sees `retired` and goes
        // elsewhere, or has finished enqueuing here once this returns: nothing is left behind.
        slot.retired.store(true, Ordering::SeqCst);
        self.quiesce_pushes();
        let fin = slot.fin();
        for task in slot.backend.retire() {
            slot.load.fetch_sub(1, Ordering::Relaxed);
            self.resubmit(task, &fin);
        }
        if let Some(stopper) = slot.stopper.get() {
            stopper.do_send(Stop);
        }
        self.leaving.add(slot, lost);
        tracing::debug!(pool = %self.channel, worker = %channel, workers, %reason, "worker stopped");
        self.announce(WorkerStopped {
            worker: channel,
            workers,
            reason,
        });
        true
    }

    /// Grows or shrinks to `n`, clamped to `min..=max`; returns the new size. Shrinking retires the
    /// least loaded workers first.
    pub(crate) fn resize_to(self: &Arc<Self>, n: usize) -> usize {
        let target = n.clamp(self.min, self.max);
        let _guard = self.resizing.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.is_stopped() {
                break;
            }
            let current = self.workers().len();
            if current < target {
                if add_worker(self).is_err() {
                    break;
                }
            } else if current > target {
                let victim = self
                    .workers()
                    .iter()
                    .min_by_key(|w| w.load.load(Ordering::Relaxed))
                    .cloned();
                match victim {
                    Some(v) => {
                        self.remove_worker(&v, "resized".into(), false);
                    }
                    None => break,
                }
            } else {
                break;
            }
        }
        self.workers().len()
    }

    /// A thread worker ran one task past `stuck_after`: replace it. The stuck thread keeps running
    /// its task and exits when it returns.
    pub(crate) fn worker_lost(self: &Arc<Self>, slot: &Arc<WorkerSlot>) {
        let _guard = self.resizing.lock().unwrap_or_else(|p| p.into_inner());
        // Looked at under the lock: a stop takes it before it takes the workers to drain, so
        // a replacement made here is either among them or not made at all.
        if self.is_stopped() {
            return;
        }
        let limit = self.stuck_after.unwrap_or_default();
        if !self.workers().iter().any(|w| Arc::ptr_eq(w, slot)) {
            // Already gone: retired by a resize. Its task was found stuck (the timer marked it
            // lost, unless the resize was still retiring it then): a stop must not wait for it.
            self.leaving.mark_lost(slot);
            return;
        }
        // The replacement first, so that the stuck worker's queued tasks have somewhere to go.
        let _ = add_worker(self);
        let reason = format!("lost: a task ran longer than {limit:?}");
        if self.remove_worker(slot, reason, true) {
            self.restarted.fetch_add(1, Ordering::Relaxed);
            slot.backend.shutdown(Shutdown::Drain);
        }
    }
}

impl PoolCore {
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
        let route: Arc<dyn Route> = Arc::new(WorkerRoute {
            core: Arc::downgrade(self),
            slot: Arc::downgrade(slot),
        });
        // A fresh UUID channel: nobody else routes it.
        if self.bus.add_route(channel.clone(), route.clone()).is_ok() {
            *slot.route.lock().unwrap_or_else(|p| p.into_inner()) = Some(route);
        }
        Ok(id)
    }

    /// Takes a worker's channel off the routes and its component out of the tree.
    pub(crate) fn unregister_worker(&self, slot: &WorkerSlot, channel: &Channel) {
        self.release_worker_route(slot, channel);
        let component = slot
            .component
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(id) = component {
            let _ = self.bus.unregister(id);
        }
    }

    /// A process worker replaced its child: give the worker a fresh channel (route, component,
    /// finisher) and fire [`WorkerRestarted`]. Returns the finisher for the new channel; `None`,
    /// with nothing renamed or fired, for a worker that left the pool or a pool that has ended.
    pub(crate) fn worker_restarted(
        self: &Arc<Self>,
        slot: &Arc<WorkerSlot>,
        reason: String,
    ) -> Option<Arc<Finisher>> {
        // A retired worker replacing its child while it drains stays off the bus: it is no longer
        // one of the pool's workers (and nothing would take its new route off again).
        if self.is_ended() || slot.retired.load(Ordering::SeqCst) {
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
        self.restarted.fetch_add(1, Ordering::Relaxed);
        self.announce(WorkerRestarted { old, new, reason });
        Some(fin)
    }
}

/// The route for tasks fired at the pool's channel: balanced.
pub(crate) struct PoolRoute(pub(crate) Weak<PoolCore>);

/// What a task route takes from the bus: only tasks are fired at routed channels
/// (`Task::dispatch`).
fn as_task(
    work: Box<dyn std::any::Any + Send>,
) -> Result<Box<dyn ErasedTask>, Box<dyn std::any::Any + Send>> {
    let task = work.downcast::<Box<dyn ErasedTask>>().map(|t| *t);
    debug_assert!(
        task.is_ok(),
        "a route was given something other than a task"
    );
    task
}

impl Route for PoolRoute {
    fn submit(
        &self,
        work: Box<dyn std::any::Any + Send>,
    ) -> Result<bool, Box<dyn std::any::Any + Send>> {
        let task = as_task(work)?;
        let refused = match self.0.upgrade() {
            Some(core) => core.admit(task, None),
            None => Err((Refusal::Stopped, task)),
        };
        refused.map_err(|r| Box::new(r) as _)
    }
}

/// The route for tasks fired at one worker's channel: run there.
pub(crate) struct WorkerRoute {
    pub(crate) core: Weak<PoolCore>,
    pub(crate) slot: Weak<WorkerSlot>,
}

impl Route for WorkerRoute {
    fn submit(
        &self,
        work: Box<dyn std::any::Any + Send>,
    ) -> Result<bool, Box<dyn std::any::Any + Send>> {
        let task = as_task(work)?;
        let refused = match (self.core.upgrade(), self.slot.upgrade()) {
            (Some(core), Some(slot)) => core.admit(task, Some(&slot)),
            _ => Err((Refusal::Stopped, task)),
        };
        refused.map_err(|r| Box::new(r) as _)
    }
}

/// What a pool's workers hold to talk to it: the core, weakly (workers never keep a pool alive).
pub(crate) struct Link(pub(crate) Weak<PoolCore>);

impl PoolLink for Link {
    fn restarted(&self, slot: &Arc<WorkerSlot>, reason: String) -> Option<Arc<Finisher>> {
        self.0.upgrade()?.worker_restarted(slot, reason)
    }
}
