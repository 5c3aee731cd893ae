//! Settling a task: resolving its value exactly once, counting it, releasing its queue permit,
//! and firing its result events ([`Finisher`]); the running task an abort can fail
//! ([`RunningSlot`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::counters::Counters;
use super::error::TaskError;
use super::events::{TaskComplete, TaskFailure, TaskSuccess};
use super::output::{TaskId, TaskOutput};
use super::recent::RecentFailures;
use super::retry::RetryHook;
use crate::bus::{Bus, Target};
use crate::channel::Channel;
use crate::spent::Spent;
use crate::value::{FailSlot, Promise};

/// Where a task's outcome goes: its bus, the pool's channel, the worker's channel, and the counters
/// that say whether anyone listens on the pool's channel at all.
pub(crate) struct Finisher {
    pub(crate) bus: Bus,
    pub(crate) pool: Channel,
    pub(crate) worker: Channel,
    pub(crate) listeners: [Arc<AtomicUsize>; 2],
    /// This worker's own settled-task counters (no cache line shared with other workers); kept
    /// across a process worker's child replacements.
    pub(crate) counters: Arc<Counters>,
    /// Thread mode with stuck detection: how long a task may run before its worker is declared
    /// lost, and how to tell the pool.
    pub(crate) stuck: std::sync::OnceLock<StuckHook>,
    /// Where a failed task goes for its next attempt, and the pool's default retry policy (set
    /// by the pool; kept across a process worker's child replacements).
    pub(crate) retry: std::sync::OnceLock<Arc<RetryHook>>,
    /// The pool's last failures (shared by its workers' finishers).
    pub(crate) recent: Arc<RecentFailures>,
    /// A success found no subscriber of its type while the channel had some (said once, in a
    /// debug-level trace).
    unheard: Arc<std::sync::atomic::AtomicBool>,
}

/// What a thread worker's stuck-task timer needs: the limit, and what to call when a task passes
/// it (the pool replaces the worker; given by the pool, so this layer knows nothing of pools).
pub(crate) struct StuckHook {
    pub(crate) after: Duration,
    pub(crate) lost: Arc<dyn Fn() + Send + Sync>,
}

impl Finisher {
    pub(crate) fn new(
        bus: &Bus,
        pool: &Channel,
        worker: &Channel,
        track_latency: bool,
        recent: Arc<RecentFailures>,
    ) -> Self {
        Finisher {
            recent,
            listeners: [bus.gauge(pool), bus.gauge(&Channel::wildcard())],
            bus: bus.clone(),
            pool: pool.clone(),
            worker: worker.clone(),
            counters: Arc::new(Counters::new(track_latency)),
            stuck: std::sync::OnceLock::new(),
            retry: std::sync::OnceLock::new(),
            unheard: Default::default(),
        }
    }

    /// The same worker's finisher under a new channel (a process worker's replacement child),
    /// keeping its counters.
    pub(crate) fn renamed(&self, worker: &Channel) -> Self {
        Finisher {
            worker: worker.clone(),
            counters: self.counters.clone(),
            listeners: self.listeners.clone(),
            bus: self.bus.clone(),
            pool: self.pool.clone(),
            stuck: std::sync::OnceLock::new(),
            retry: self.retry.clone(),
            recent: self.recent.clone(),
            unheard: self.unheard.clone(),
        }
    }

    /// The channel of the worker this finisher settles for.
    pub(crate) fn worker(&self) -> &Channel {
        &self.worker
    }

    /// Whether any subscription exists on the pool's channel or the wildcard: result events are
    /// only built when this is true, so an unobserved pool pays two atomic loads per task.
    fn observed(&self) -> bool {
        self.listeners.iter().any(|g| g.load(Ordering::Relaxed) > 0)
    }

    /// Resolves the task's value with `result` and, if that was its one outcome, counts it and (when
    /// someone listens) fires the terminal event then `TaskComplete`. A bounded pool's permit is
    /// released first, and the count is made before the value resolves, so whoever awaited the
    /// value finds room in the pool and the task in [`stats`](crate::PoolHandle::stats).
    ///
    /// `attempt` is the run that gave the result (from 1; above 1 after retries).
    pub(crate) fn settle<R: TaskOutput>(
        &self,
        run: (TaskId, u32),
        promise: &Promise<Result<R, TaskError>>,
        result: Result<R, TaskError>,
        permit: Option<&Permit>,
    ) {
        self.settle_spent(run, promise, result, permit, None);
    }

    /// As [`settle`](Self::settle), handing the value `spent` (the task's emptied box) to free
    /// where the value is read.
    pub(crate) fn settle_spent<R: TaskOutput>(
        &self,
        (id, attempt): (TaskId, u32),
        promise: &Promise<Result<R, TaskError>>,
        result: Result<R, TaskError>,
        permit: Option<&Permit>,
        spent: Option<Spent>,
    ) {
        release(permit);
        // Only a failure pays for its record (a clone of the error, for the pool's last failures).
        let failed = result.as_ref().err().cloned();
        let count = || self.count(id, attempt, failed);
        if !self.observed() {
            promise.complete_spent(result, count, spent);
            return;
        }
        let terminal = match &result {
            Ok(v) => Ok(TaskSuccess {
                id,
                worker: self.worker.clone(),
                value: v.clone(),
                attempt,
            }),
            Err(e) => Err(self.failure(id, attempt, e.clone())),
        };
        if promise.complete_spent(result, count, spent) {
            self.fire(id, attempt, terminal);
        }
    }

    /// Counts a task's one outcome; a failure is also kept among the pool's last failures.
    fn count(&self, id: TaskId, attempt: u32, failed: Option<TaskError>) {
        match failed {
            None => self.counters.record(None),
            Some(error) => {
                self.counters.record(Some(error.kind_index()));
                self.recent.note(id, &self.worker, error, attempt);
            }
        }
    }

    /// [`settle`](Self::settle) with an error, for a value whose type is not known here.
    pub(crate) fn settle_err(
        &self,
        (id, attempt): (TaskId, u32),
        slot: &dyn FailSlot<TaskError>,
        error: TaskError,
        permit: Option<&Permit>,
    ) -> bool {
        release(permit);
        let failure = self
            .observed()
            .then(|| self.failure(id, attempt, error.clone()));
        let mut failed = Some(error.clone());
        let first = slot.fail_then(error, &mut || {
            if let Some(e) = failed.take() {
                self.count(id, attempt, Some(e)); // called once, on the first resolution
            }
        });
        if first {
            if let Some(f) = failure {
                self.fire::<()>(id, attempt, Err(f));
            }
        }
        first
    }

    fn failure(&self, id: TaskId, attempt: u32, error: TaskError) -> TaskFailure {
        TaskFailure {
            id,
            worker: self.worker.clone(),
            error,
            attempt,
        }
    }

    /// Fires the terminal event, then `TaskComplete`, on the pool's channel.
    fn fire<R: TaskOutput>(
        &self,
        id: TaskId,
        attempt: u32,
        terminal: Result<TaskSuccess<R>, TaskFailure>,
    ) {
        let bus = self.bus.clone();
        let target = Target::from(&self.pool);
        let complete = TaskComplete {
            id,
            worker: self.worker.clone(),
            ok: terminal.is_ok(),
            attempt,
        };
        let unheard = self.unheard.clone();
        self.bus.spawn(async move {
            match terminal {
                Ok(s) => {
                    let pool = s.worker.clone();
                    if bus.fire_plain(&target, s).await == 0
                        && !unheard.swap(true, Ordering::Relaxed)
                    {
                        // Someone listens on the pool's channel, but not to this result type: a
                        // subscriber of TaskSuccess<u32> hears nothing from tasks returning u64.
                        tracing::debug!(
                            pool = %target_name(&target),
                            worker = %pool,
                            result = std::any::type_name::<R>(),
                            "a TaskSuccess had no subscriber although the pool's channel has some: \
                             TaskSuccess<T> subscribers hear only tasks that return exactly T"
                        );
                    }
                }
                Err(f) => {
                    bus.fire_plain(&target, f).await;
                }
            }
            bus.fire_plain(&target, complete).await;
        });
    }
}

fn target_name(target: &Target) -> String {
    match target {
        Target::Channels(c) => c.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(","),
        other => format!("{other:?}"),
    }
}

/// A bounded pool's queue permit, shared by whoever may settle the task (the worker, a timer, an
/// abort): the first to settle it frees the room, before the value resolves.
pub(crate) type Permit = Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>;

pub(crate) fn release(permit: Option<&Permit>) {
    if let Some(p) = permit {
        drop(p.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

/// The task a thread worker is running, so that an abort can resolve its value at once (the
/// thread finishes the closure on its own and its result is discarded).
#[derive(Default)]
pub(crate) struct RunningSlot {
    running: std::sync::Mutex<Option<Running>>,
    /// Called on the worker's thread just before an awaited task's value is set.
    value_due: Option<Box<dyn Fn() + Send + Sync>>,
}

pub(crate) struct Running {
    pub(crate) id: TaskId,
    /// When it started, if the worker read the clock for it (it does when the pool tracks
    /// latency, for that measurement: no clock read is added for this).
    pub(crate) since: Option<std::time::Instant>,
    pub(crate) attempt: u32,
    pub(crate) slot: Arc<dyn FailSlot<TaskError>>,
    pub(crate) permit: Option<Permit>,
}

impl RunningSlot {
    /// A slot whose worker is told, by `hook`, just before an awaited task's value is set.
    pub(crate) fn with_value_hook(hook: Box<dyn Fn() + Send + Sync>) -> Self {
        RunningSlot {
            running: Default::default(),
            value_due: Some(hook),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An awaited task's value is set next (its body, its retry policy and its extras are done):
    /// the worker is told.
    pub(crate) fn value_due(&self) {
        if let Some(hook) = &self.value_due {
            hook();
        }
    }

    /// The running task's id and start, if a task runs.
    pub(crate) fn peek(&self) -> Option<(TaskId, Option<std::time::Instant>)> {
        self.lock().as_ref().map(|r| (r.id, r.since))
    }

    /// Fails the running task (if any, and if still pending) with `error`.
    pub(crate) fn fail(&self, error: TaskError, fin: &Finisher) {
        let running = self.lock().take();
        if let Some(r) = running {
            fin.settle_err((r.id, r.attempt), &*r.slot, error, r.permit.as_ref());
        }
    }
}

/// Where a running task is registered so that an abort (or a stuck worker) can fail it at once:
/// a thread worker's one [`RunningSlot`], an async worker's [`RunningSet`].
pub(crate) trait Registry: Send + Sync {
    /// Registers a task that starts; `Err` with the error to settle it with when the registry
    /// was failed already (an abort or a stuck worker failed everything it held before this
    /// task came: the task must not run, and its value must not wait for the future's drop).
    fn enter(&self, running: Running) -> Result<(), TaskError>;
    fn leave(&self, id: TaskId);
    /// The error the registry was failed with (an abort, a stuck worker), if it was: a task not
    /// started yet fails with it instead of starting.
    fn failed(&self) -> Option<TaskError> {
        None
    }
}

impl Registry for RunningSlot {
    fn enter(&self, running: Running) -> Result<(), TaskError> {
        *self.lock() = Some(running);
        Ok(())
    }
    fn leave(&self, _: TaskId) {
        *self.lock() = None;
    }
}

/// The tasks an async worker is running, by id, so that an abort or a stuck worker fails them all
/// at once (their futures are dropped by the worker).
#[derive(Default)]
pub(crate) struct RunningSet(std::sync::Mutex<Held>);

/// What a [`RunningSet`] holds: the running tasks, and once it failed them all, the error that any
/// task entering later is failed with at once.
#[derive(Default)]
struct Held {
    tasks: std::collections::HashMap<u64, Running>,
    failed: Option<TaskError>,
}

impl RunningSet {
    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many tasks run now.
    pub(crate) fn len(&self) -> usize {
        self.lock().tasks.len()
    }

    /// The longest-running task's id and start (the lowest id when no start is known).
    pub(crate) fn oldest(&self) -> Option<(TaskId, Option<std::time::Instant>)> {
        self.lock()
            .tasks
            .values()
            .map(|r| (r.id, r.since))
            .min_by_key(|(id, since)| (*since, id.0))
    }

    /// Fails every running task (still pending) with `error`, and every task that enters from
    /// now on (a worker's loop can be starting one as this runs: it would otherwise register
    /// after the drain, and its value would read `Abandoned` when the future is dropped).
    pub(crate) fn fail_all(&self, error: TaskError, fin: &Finisher) {
        let all: Vec<Running> = {
            let mut held = self.lock();
            held.failed.get_or_insert_with(|| error.clone());
            held.tasks.drain().map(|(_, r)| r).collect()
        };
        for r in all {
            fin.settle_err(
                (r.id, r.attempt),
                &*r.slot,
                error.clone(),
                r.permit.as_ref(),
            );
        }
    }
}

impl Registry for RunningSet {
    fn enter(&self, running: Running) -> Result<(), TaskError> {
        let mut held = self.lock();
        if let Some(error) = &held.failed {
            return Err(error.clone());
        }
        held.tasks.insert(running.id.0, running);
        Ok(())
    }
    fn leave(&self, id: TaskId) {
        self.lock().tasks.remove(&id.0);
    }
    fn failed(&self) -> Option<TaskError> {
        self.lock().failed.clone()
    }
}

#[cfg(test)]
mod tests {
    use crate::spent::Spent;
    use crate::task::TaskError;

    #[test]
    fn a_value_resolved_on_another_thread_with_its_spent_box_gives_its_result() {
        // The box's memory travels with the result (where it is freed cannot be watched from
        // here; the soak and S2's profile show it).
        let (promise, mut value) = crate::value::promise::<u32, TaskError>();
        let (_contents, spent) = Spent::hollow(Box::new([0u64; 4]));
        assert!(spent.is_some());
        std::thread::spawn(move || {
            assert!(promise.complete_spent(Ok(5), || {}, spent));
        })
        .join()
        .expect("the resolving thread ends");
        assert_eq!(value.try_take(), Some(Ok(5)));
    }
}
