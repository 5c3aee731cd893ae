//! The pool's shared core: the worker list, the hot path (`submit`), and stopping.
//!
//! Every way into the pool (`PoolHandle::push`, `Addr<Pool>`, the bus, a worker's channel) ends in
//! [`PoolCore::submit`]: pick a worker from the atomic load counters, bump its counter, and hand the
//! task straight to its backend's queue. No lock is held while a task runs, and no actor mailbox is
//! crossed.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard};
use std::time::Duration;

use crate::bus::{Bus, Route, Target};
use crate::channel::Channel;
use crate::pool::balance::{SlotLoads, Strategy};
use crate::task::{ErasedTask, Finisher, Refusal, Refused, TaskError, TaskId};
use crate::tree::ComponentId;
use crate::worker::{Kind, Shutdown, WorkerSlot};

const RUNNING: u8 = 0;
const STOPPING: u8 = 1;
const STOPPED: u8 = 2;

/// What a pool is configured with (from the builder).
pub(crate) struct Settings {
    pub(crate) min: usize,
    pub(crate) max: usize,
    pub(crate) strategy: Box<dyn Strategy>,
    pub(crate) kind: Arc<dyn Kind>,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) queue_bound: Option<usize>,
    pub(crate) stuck_after: Option<Duration>,
    pub(crate) track_latency: bool,
    pub(crate) retry: Option<crate::task::Retry>,
}

pub(crate) struct PoolCore {
    pub(crate) bus: Bus,
    pub(crate) channel: Channel,
    pub(crate) component: OnceLock<ComponentId>,
    pub(crate) workers: RwLock<Vec<Arc<WorkerSlot>>>,
    pub(crate) strategy: Box<dyn Strategy>,
    /// What kind of workers this pool has (chosen once, at build time).
    pub(crate) kind: Arc<dyn Kind>,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) min: usize,
    pub(crate) max: usize,
    /// Permits for queued tasks when the pool is bounded; a task holds one until it is settled.
    pub(crate) bound: Option<Arc<tokio::sync::Semaphore>>,
    /// The bound itself (how many permits there are in all).
    pub(crate) queue_bound: Option<usize>,
    /// The pool's last failures, written by its workers' finishers.
    pub(crate) recent: Arc<crate::task::RecentFailures>,
    /// Workers replaced: process workers' children (each `WorkerRestarted`) and lost threads.
    pub(crate) restarted: AtomicU64,
    pub(crate) stuck_after: Option<Duration>,
    pub(crate) track_latency: bool,
    /// The retry policy of tasks that have none of their own.
    pub(crate) retry: Option<crate::task::Retry>,
    /// Where worker actors live (the arbiter the pool started on), so workers can be added from
    /// any thread.
    pub(crate) arbiter: actix::ArbiterHandle,
    /// Counters of workers that left the pool (still counting what they finish while they drain),
    /// so stats survive resizes. Changed only while `workers` is write-locked, so a reader holding
    /// `workers` sees each worker's counters exactly once.
    pub(crate) retired: std::sync::Mutex<Vec<Arc<crate::task::Counters>>>,
    /// One resize at a time; a stop waits for the one under way before it takes the workers.
    pub(crate) resizing: std::sync::Mutex<()>,
    /// Workers that left the pool and may still run a task: a stop ends them too.
    pub(crate) leaving: super::leaving::LeavingWorkers,
    /// The route of the pool's channel, once it is taken (to remove only our own).
    pub(crate) route: OnceLock<Arc<dyn Route>>,
    next_id: AtomicU64,
    state: AtomicU8,
    /// An abort was asked for (by `abort`, a deadline, or escalating a draining stop).
    aborting: AtomicBool,
    /// Pushes between their state check and their enqueue; stop waits for zero so that nothing is
    /// queued behind a worker's stop message.
    inflight: AtomicUsize,
    /// Map chunks accepted on a full bounded pool, waiting for room: a draining stop waits for
    /// them to be queued (they run during the drain); an abort cancels them.
    parked: tokio::sync::watch::Sender<usize>,
    /// Of the parked tasks, those waiting out a retry's back-off (see `retry.rs`).
    pub(super) retrying: AtomicU64,
    stopped: tokio::sync::watch::Sender<bool>,
    /// Turns `true` when a stop begins (producers waiting for room give up).
    stopping: tokio::sync::watch::Sender<bool>,
}

impl PoolCore {
    pub(crate) fn new(bus: Bus, channel: Channel, s: Settings) -> Self {
        // Where a worker can be ended (a child process), a stuck task is ended by the timeout rule.
        let stuck_timeout = if s.kind.stuck_is_timeout() {
            s.default_timeout.or(s.stuck_after)
        } else {
            s.default_timeout
        };
        PoolCore {
            bus,
            channel,
            component: OnceLock::new(),
            workers: RwLock::new(Vec::new()),
            strategy: s.strategy,
            kind: s.kind,
            default_timeout: stuck_timeout,
            min: s.min,
            max: s.max,
            bound: s
                .queue_bound
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
            queue_bound: s.queue_bound,
            recent: Default::default(),
            restarted: AtomicU64::new(0),
            stuck_after: s.stuck_after,
            track_latency: s.track_latency,
            retry: s.retry,
            arbiter: actix::Arbiter::current(),
            retired: Default::default(),
            resizing: std::sync::Mutex::new(()),
            leaving: Default::default(),
            route: OnceLock::new(),
            next_id: AtomicU64::new(1),
            state: AtomicU8::new(RUNNING),
            aborting: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            parked: tokio::sync::watch::channel(0).0,
            retrying: AtomicU64::new(0),
            stopped: tokio::sync::watch::channel(false).0,
            stopping: tokio::sync::watch::channel(false).0,
        }
    }

    pub(crate) fn workers(&self) -> RwLockReadGuard<'_, Vec<Arc<WorkerSlot>>> {
        // Critical sections only push or read the list; a poisoned lock still holds a whole list.
        self.workers.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.state.load(Ordering::SeqCst) != RUNNING
    }

    /// Whether the pool has finished stopping (nothing of it runs any more).
    pub(crate) fn is_ended(&self) -> bool {
        self.state.load(Ordering::SeqCst) == STOPPED
    }

    /// Tasks accepted so far (ids are handed out in order from 1).
    pub(crate) fn pushed(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed) - 1
    }

    /// A finisher for a worker on `channel`, with its own counters.
    pub(crate) fn finisher(&self, channel: &Channel) -> Finisher {
        Finisher::new(
            &self.bus,
            &self.channel,
            channel,
            self.track_latency,
            self.recent.clone(),
        )
    }

    /// The one admission gate of every entry point: a stopped pool refuses; a bounded pool gives the
    /// task a permit (room for it) or says it is full. What `Full` means is the entry point's rule:
    /// `send` and `run` wait for room, `map` parks the batch's chunks (accepted as a whole), every
    /// other entry point hands the task back.
    pub(crate) fn gate(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Refusal> {
        if self.is_stopped() {
            return Err(Refusal::Stopped);
        }
        match &self.bound {
            None => Ok(None),
            Some(bound) => match bound.clone().try_acquire_owned() {
                Ok(permit) => Ok(Some(permit)),
                Err(tokio::sync::TryAcquireError::Closed) => Err(Refusal::Stopped),
                Err(tokio::sync::TryAcquireError::NoPermits) => Err(Refusal::Full),
            },
        }
    }

    /// Waits for room in a bounded pool: the permit, or `None` when the pool begins stopping first
    /// (or an abort closes the bound). At once on an unbounded pool.
    pub(crate) async fn room(&self) -> Option<Option<tokio::sync::OwnedSemaphorePermit>> {
        let Some(bound) = self.bound.clone() else {
            return Some(None);
        };
        // Refused as soon as a stop begins (a drain does not keep producers waiting).
        let mut stopping = self.stopping.subscribe();
        let room = std::pin::pin!(bound.acquire_owned());
        let stop = std::pin::pin!(stopping.wait_for(|s| *s));
        let permit = match futures::future::select(room, stop).await {
            futures::future::Either::Left((Ok(permit), _)) => Some(Some(permit)),
            _ => None,
        };
        permit
    }

    /// Every entry point that does not wait: through the gate and into a queue, or handed back.
    /// `Ok(true)` when the task starts at once on an otherwise idle pool (see [`submit`](Self::submit)).
    pub(crate) fn admit(
        &self,
        task: Box<dyn ErasedTask>,
        to: Option<&Arc<WorkerSlot>>,
    ) -> Result<bool, Refused> {
        let task = self.pass_gate(task)?;
        self.submit(task, to, false)
    }

    /// Takes `task` through the [`gate`](Self::gate): with its permit (if bounded), or refused.
    pub(crate) fn pass_gate(
        &self,
        mut task: Box<dyn ErasedTask>,
    ) -> Result<Box<dyn ErasedTask>, Refused> {
        match self.gate() {
            Ok(permit) => {
                if let Some(p) = permit {
                    task.hold(p);
                }
                Ok(task)
            }
            Err(r) => Err((r, task)),
        }
    }

    /// A fresh task id (ids count up from 1 in acceptance order).
    pub(crate) fn next_task_id(&self) -> TaskId {
        TaskId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// The hot path: accept `task` and queue it on `to`, or on the worker the strategy picks; or
    /// hand it back, unprepared, with the reason. `accepted` tasks (parked chunks) were accepted
    /// before a stop began, so a draining stop still takes them.
    ///
    /// `Ok(true)` when the strategy placed the task on an idle worker that takes it at once (an
    /// awake thread worker: see [`Backend::starts_at_once`](crate::worker::Backend)) and no other
    /// task of the pool is in flight: a caller awaiting it may find its value set within a
    /// microsecond (see `Value::spin_first`).
    pub(crate) fn submit(
        &self,
        mut task: Box<dyn ErasedTask>,
        to: Option<&Arc<WorkerSlot>>,
        accepted: bool,
    ) -> Result<bool, Refused> {
        if let Err(refusal) = self.kind.check(&*task) {
            return Err((refusal, task));
        }
        crate::value::help::forget();
        // Counted while it places the task (see `quiesce_pushes`).
        self.as_push(|| {
            let state = self.state.load(Ordering::SeqCst);
            let open = state == RUNNING
                || (accepted && state == STOPPING && !self.aborting.load(Ordering::SeqCst));
            if !open {
                return Err((Refusal::Stopped, task));
            }
            let id = TaskId(self.next_id.fetch_add(1, Ordering::Relaxed));
            match to {
                // A worker that is leaving the pool takes nothing more; its tasks go elsewhere.
                Some(slot) => {
                    task.prepare(id, self.default_timeout);
                    if slot.retired.load(Ordering::SeqCst) {
                        self.resubmit(task, &slot.fin());
                    } else {
                        self.enqueue_or_resubmit(slot, task, true);
                    }
                    Ok(false)
                }
                None => {
                    let workers = self.workers();
                    if workers.is_empty() {
                        // Only between a stop's end and the state saying so.
                        return Err((Refusal::Stopped, task));
                    }
                    task.prepare(id, self.default_timeout);
                    let key = task.key();
                    let i = self.strategy.pick(&SlotLoads(&workers), key);
                    let slot = &workers[i.min(workers.len() - 1)];
                    // A keyed task stays where its key sends it; others may be stolen.
                    match self.enqueue(slot, task, key.is_some()) {
                        Ok(at_once) => Ok(at_once && SlotLoads(&workers).idle_but(slot)),
                        Err(task) => {
                            // Not under the list's read lock: `resubmit` takes it again, and a
                            // second read lock waits behind a resize waiting for the first.
                            let fin = slot.fin();
                            drop(workers);
                            self.resubmit(task, &fin);
                            Ok(false)
                        }
                    }
                }
            }
        })
    }

    /// Queues `task` on `slot`; `Ok(true)` when the worker had nothing and takes it at once (as
    /// its backend said just before: see [`Backend::starts_at_once`](crate::worker::Backend)).
    /// `Err` hands the task back when that worker left the pool (retired or lost) after the task
    /// was routed to it: the caller [`resubmit`](Self::resubmit)s it, holding no lock on the list
    /// of workers.
    pub(crate) fn enqueue(
        &self,
        slot: &WorkerSlot,
        mut task: Box<dyn ErasedTask>,
        pinned: bool,
    ) -> Result<bool, Box<dyn ErasedTask>> {
        if task.cancellable() {
            task.arm(&slot.fin()); // its Cancel handle settles it on this worker from now on
        }
        // Read before the task is queued: queueing may ring a sleeping worker, which then looks
        // awake but is still a wake-up away from the task.
        let at_once =
            slot.load.fetch_add(1, Ordering::Relaxed) == 0 && slot.backend.starts_at_once();
        match slot.backend.submit(task, pinned) {
            Ok(()) => Ok(at_once),
            Err(task) => {
                slot.load.fetch_sub(1, Ordering::Relaxed);
                Err(task)
            }
        }
    }

    /// Queues `task` on `slot`, or elsewhere if that worker left meanwhile (holding no list lock).
    pub(crate) fn enqueue_or_resubmit(&self, slot: &WorkerSlot, t: Box<dyn ErasedTask>, pin: bool) {
        if let Err(task) = self.enqueue(slot, t, pin) {
            self.resubmit(task, &slot.fin());
        }
    }

    /// Runs `queue` counted as a push under way (every push, and a retry queued again): a worker
    /// retiring meanwhile (see `remove_worker`) waits for it to finish before it hands its queue
    /// back, so a task that `queue` places on the worker moves with the rest instead of staying
    /// behind on a worker that has stopped; a stop waits for it likewise.
    pub(crate) fn as_push<T>(&self, queue: impl FnOnce() -> T) -> T {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        let out = queue();
        self.inflight.fetch_sub(1, Ordering::SeqCst);
        out
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
    pub(crate) fn resubmit(&self, mut task: Box<dyn ErasedTask>, fallback: &Finisher) {
        let workers = self.workers();
        if workers.is_empty() || self.state.load(Ordering::SeqCst) == STOPPED {
            drop(workers);
            return task.fail(TaskError::Cancelled, fallback);
        }
        let i = self.strategy.pick(&SlotLoads(&workers), task.key());
        let slot = workers[i.min(workers.len() - 1)].clone();
        drop(workers);
        if task.cancellable() {
            task.arm(&slot.fin());
        }
        slot.load.fetch_add(1, Ordering::Relaxed);
        if let Err(task) = slot.backend.submit(task, false) {
            slot.load.fetch_sub(1, Ordering::Relaxed);
            task.fail(TaskError::Cancelled, fallback);
        }
    }

    /// Fires `event` on the pool's channel, handed to its subscribers' inboxes now (so the pool's
    /// announcements reach each subscriber in the order they were made).
    pub(crate) fn announce<E: crate::Event>(&self, event: E) {
        self.bus.deliver_now(&Target::from(&self.channel), event);
    }

    /// Whether an abort was asked for.
    pub(crate) fn is_aborting(&self) -> bool {
        self.aborting.load(Ordering::SeqCst)
    }

    /// Counts a task waiting outside the queues (a parked map chunk, a retry's back-off) in or
    /// out: a stop waits for none to be left before it stops the workers.
    pub(crate) fn park(&self, waiting: bool) {
        self.parked
            .send_modify(|n| *n = if waiting { *n + 1 } else { *n - 1 });
    }

    /// A receiver that turns `true` when a stop begins.
    pub(crate) fn stopping_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// A receiver that turns `true` when the pool has stopped.
    pub(crate) fn stopped_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopped.subscribe()
    }

    /// Stops the pool and resolves when it is stopped. The first call starts the stop in the
    /// background (so it completes even if every caller goes away); `Abort` during a draining stop
    /// escalates it; every caller waits for the one stop to finish.
    pub(crate) async fn stop(self: &Arc<Self>, how: Shutdown) {
        self.begin_stop(how);
        let mut rx = self.stopped.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Starts stopping (or escalates a draining stop to an abort) without waiting.
    pub(crate) fn begin_stop(self: &Arc<Self>, how: Shutdown) {
        if how == Shutdown::Abort {
            self.escalate();
        }
        if self
            .state
            .compare_exchange(RUNNING, STOPPING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.stopping.send_replace(true);
            let core = self.clone();
            self.bus.spawn(async move { core.run_stop().await });
        }
    }

    /// Turns whatever stop is under way into an abort: parked tasks and queued tasks are cancelled,
    /// running tasks end now.
    fn escalate(&self) {
        if self.aborting.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(bound) = &self.bound {
            bound.close(); // parked map chunks and waiting sends give up
        }
        if self.state.load(Ordering::SeqCst) == STOPPING {
            // Workers the stop has already asked to drain: abort them too.
            for w in self.workers().iter() {
                w.backend.shutdown(Shutdown::Abort);
            }
            self.leaving.abort();
        }
    }

    async fn run_stop(self: &Arc<Self>) {
        // Map chunks parked before the stop are queued as room frees (the workers still run).
        let mut parked = self.parked.subscribe();
        let _ = parked.wait_for(|n| *n == 0).await;
        // Pushes that saw RUNNING finish enqueuing within a few instructions; none can start now.
        self.quiesce_pushes();
        // A resize (or a lost worker's replacement) that began before the stop finishes first:
        // one that retired a worker has moved its queue to workers this stop then drains, and
        // one that added a worker has it in the list below. Any later one sees the stop and
        // changes nothing. (On a blocking thread: a process worker's retirement can wait out its
        // child's kill grace.)
        let core = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            drop(core.resizing.lock().unwrap_or_else(|p| p.into_inner()));
        })
        .await;
        let how = if self.aborting.load(Ordering::SeqCst) {
            Shutdown::Abort
        } else {
            Shutdown::Drain
        };
        let workers: Vec<_> = self.workers().clone();
        for w in &workers {
            w.backend.shutdown(how);
        }
        if how == Shutdown::Abort {
            self.leaving.abort();
        }
        for w in &workers {
            let _ = w.backend.finished().await;
        }
        // Workers retired before the stop may still be finishing a task.
        self.leaving.wait(how).await;
        self.state.store(STOPPED, Ordering::SeqCst);
        self.release_routes(&workers);
        if let Some(id) = self.component.get() {
            // Stops the Pool and Worker actors (children first) and unregisters them.
            let _ = self.bus.stop_component(*id).await;
        }
        self.stopped.send_replace(true);
    }
}

impl Drop for PoolCore {
    /// A pool that nothing can reach any more (every handle and `Addr<Pool>` dropped) stops itself
    /// in the background: its workers drain what is queued, then every thread and child ends; its
    /// routes and components leave the bus.
    fn drop(&mut self) {
        if self.state.swap(STOPPED, Ordering::SeqCst) == STOPPED {
            return;
        }
        let workers = std::mem::take(self.workers.get_mut().unwrap_or_else(|p| p.into_inner()));
        for w in &workers {
            w.backend.shutdown(Shutdown::Drain);
        }
        self.release_routes(&workers);
        if let Some(id) = self.component.get() {
            let _ = self.bus.unregister(*id);
        }
        self.stopped.send_replace(true);
    }
}
