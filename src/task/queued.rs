//! The queued form of a task: [`ErasedTask`], one type for every result type, so one worker queue
//! carries them all; how a [`Task`] becomes one, and how it is routed through the bus.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::cancel::Cancel;
use super::erased::{ErasedTask, Refused};
use super::error::{Refusal, SubmitError, TaskError};
use super::extra::{retry_due, Extra};
use super::finish::Registry;
use super::finish::{release, Finisher, Permit, Running, RunningSlot};
use super::future::{block_on_here, drive, leave, Parts};
use super::output::{panic_message, TaskId, TaskOutput, Work};
use super::payload::JobPayload;
use super::priority::Priority;
use super::retry::RetryHook;
use super::Task;
use crate::bus::{Bus, Target};
use crate::channel::Channel;
use crate::spent::Spent;
use crate::value::{promise, Promise, Value};

impl<R: TaskOutput> Task<R> {
    /// Turns the task into its type-erased queue entry and the value its caller awaits.
    pub(crate) fn into_cell(self, id: TaskId) -> (Box<dyn ErasedTask>, Value<R, TaskError>) {
        let (promise, value) = promise();
        let plain = self.job.is_none()
            && self.key.is_none()
            && self.timeout.is_none()
            && self.deadline.is_none()
            && self.priority == Priority::Normal
            && self.retry.is_none()
            && self.again.is_none()
            && self.cancel.is_none();
        (
            Box::new(TaskCell {
                id,
                run: self.run,
                promise,
                extra: (!plain).then(|| {
                    Box::new(Extra {
                        job: self.job,
                        key: self.key,
                        timeout: self.timeout,
                        deadline: self.deadline,
                        permit: None,
                        pinned: false,
                        priority: self.priority,
                        retry: self.retry.map(Box::new),
                        again: self.again,
                        attempt: 1,
                        cancel: self.cancel,
                    })
                }),
            }),
            value,
        )
    }
}

impl<R: TaskOutput> crate::bus::Dispatch for Task<R> {
    type Output = Result<Value<R, TaskError>, SubmitError<R>>;

    /// Routes the task to the pool or worker registered under the one target channel.
    fn dispatch(self, bus: &Bus, target: Target) -> Self::Output {
        let channel = match &target {
            Target::Channels(chs) if chs.len() == 1 => chs[0].clone(),
            other => {
                let first = other.channels().first().cloned();
                let channel = first.unwrap_or_else(|| Channel::from(""));
                return Err(SubmitError::new(Refusal::NoRoute(channel), self));
            }
        };
        let Some(route) = bus.route(&channel) else {
            return Err(SubmitError::new(Refusal::NoRoute(channel), self));
        };
        let (cell, value) = self.into_cell(TaskId::default());
        // The route (a pool's) knows the work is a task, and hands it back as a `Refused`.
        match route.submit(Box::new(cell)) {
            Ok(at_once) => Ok(value.spin_first(at_once)),
            Err(back) => match back.downcast::<Refused>() {
                Ok(refused) => Err(hand_back(*refused)),
                Err(_) => unreachable!("a task route hands back only refused tasks"),
            },
        }
    }
}

/// The typed task back out of a refused queue entry (which was made from a `Task<R>`).
pub(crate) fn hand_back<R: TaskOutput>((refusal, cell): Refused) -> SubmitError<R> {
    let cell = cell
        .into_any()
        .downcast::<TaskCell<R>>()
        .unwrap_or_else(|_| unreachable!("a refused entry goes back to where its type is known"));
    SubmitError::new(refusal, cell.into_task())
}

impl<R: TaskOutput> TaskCell<R> {
    /// The task this entry was made from. Its value (the promise) is dropped: a refused task's
    /// caller gets the task back instead. A bounded pool's permit, if it held one, is released.
    fn into_task(self) -> Task<R> {
        let mut task = Task::from_work(self.run);
        if let Some(extra) = self.extra {
            release(extra.permit.as_ref());
            task.job = extra.job;
            task.key = extra.key;
            task.timeout = extra.timeout;
            task.deadline = extra.deadline;
            task.priority = extra.priority;
            task.retry = extra.retry.map(|r| *r);
            task.again = extra.again;
            task.cancel = extra.cancel;
        }
        task
    }
}

/// A blocking task on an async worker, until its future first runs (it is in the worker's running
/// set meanwhile, where an abort fails it at once). An abort stops the worker's loop with tasks
/// taken but not started and drops their futures: such a task fails with the error its worker's
/// tasks were failed with (`Cancelled`, as an abort promises), rather than reading `Abandoned`.
/// Dropped for another reason (the loop itself went away), it reads `Abandoned` as before.
struct Unstarted<R: TaskOutput> {
    task: Option<Box<TaskCell<R>>>,
    fin: Arc<Finisher>,
    /// The worker's running set, which knows whether an abort (or a stuck worker) failed it.
    set: Arc<dyn Registry>,
    load: Option<Arc<std::sync::atomic::AtomicUsize>>,
}

impl<R: TaskOutput> Unstarted<R> {
    /// Takes the task out of the running set and hands it to `start`, unless the set was failed
    /// meanwhile (an abort, a stuck worker): the task then fails with that error and must not run.
    /// Once only; the load counter goes down either way.
    fn end(&mut self, start: impl FnOnce(Box<TaskCell<R>>, &Arc<Finisher>)) {
        if let Some(task) = self.task.take() {
            self.set.leave(task.id);
            match self.set.failed() {
                Some(error) => task.fail_final(error, &self.fin),
                None => start(task, &self.fin),
            }
            leave(&self.load);
        }
    }
}

impl<R: TaskOutput> Drop for Unstarted<R> {
    fn drop(&mut self) {
        // Not failed: the task is dropped with its future, and reads `Abandoned`.
        self.end(|task, _| drop(task));
    }
}

struct TaskCell<R> {
    id: TaskId,
    run: Work<R>,
    promise: Promise<Result<R, TaskError>>,
    /// What most tasks do not have, boxed so a plain closure task stays four words.
    extra: Option<Box<Extra<R>>>,
}

impl<R: TaskOutput> TaskCell<R> {
    fn permit(&self) -> Option<&Permit> {
        self.extra.as_ref()?.permit.as_ref()
    }

    fn attempt(&self) -> u32 {
        self.extra.as_ref().map_or(1, |e| e.attempt)
    }

    /// Hands the task to its pool for its next attempt after `delay` (`error` ended this one).
    fn requeue(
        self: Box<Self>,
        delay: Duration,
        error: TaskError,
        fin: &Finisher,
        hook: &RetryHook,
    ) {
        fin.counters.retried.fetch_add(1, Ordering::Relaxed);
        let task: Box<dyn ErasedTask> = self;
        (hook.requeue)(Box::new(task), delay, error);
    }
}

impl<R: TaskOutput> ErasedTask for TaskCell<R> {
    fn prepare(&mut self, id: TaskId, default_timeout: Option<Duration>) {
        self.id = id;
        if let Some(limit) = default_timeout {
            let extra = self.extra.get_or_insert_with(Extra::empty);
            extra.timeout.get_or_insert(limit);
        }
    }
    fn id(&self) -> TaskId {
        self.id
    }
    fn attempt(&self) -> u32 {
        TaskCell::attempt(self)
    }
    fn key(&self) -> Option<u64> {
        self.extra.as_ref().and_then(|e| e.key)
    }
    fn timeout(&self) -> Option<Duration> {
        self.extra.as_ref().and_then(|e| e.timeout)
    }
    fn expired(&self) -> bool {
        self.extra
            .as_ref()
            .and_then(|e| e.deadline)
            .is_some_and(|d| std::time::Instant::now() >= d)
    }
    fn job(&self) -> Option<&JobPayload> {
        self.extra.as_ref()?.job.as_ref().map(|j| &j.payload)
    }

    fn run(self: Box<Self>, fin: &Arc<Finisher>, running: &Arc<RunningSlot>) {
        if self.expired() {
            return self.fail(TaskError::Expired, fin);
        }
        if self.is_async() {
            // A thread worker runs an async task to its end, in the thread's own runtime.
            let registry: Arc<dyn Registry> = running.clone();
            return block_on_here(self.run_async(fin, running, registry, None));
        }
        let timeout = self.timeout();
        let attempt = self.attempt();
        // The box's memory goes back with the result, to be freed where the value is read.
        let (
            TaskCell {
                id,
                run,
                promise,
                extra,
            },
            spent,
        ) = Spent::hollow(self);
        let permit = extra.as_ref().and_then(|e| e.permit.clone());
        if !promise.is_pending() {
            return; // already settled (cancelled while queued)
        }
        if let Some(limit) = timeout {
            let (expire, fin2, permit2) = (promise.share(), fin.clone(), permit.clone());
            fin.bus.spawn(async move {
                tokio::time::sleep(limit).await;
                if expire.is_pending() {
                    let error = Err(TaskError::TimedOut(limit));
                    fin2.settle((id, attempt), &expire, error, permit2.as_ref());
                }
            });
        }
        let finished = fin.stuck.get().map(|hook| {
            // Stuck detection: if the task still runs after the limit, the worker is lost.
            let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (done, expire, fin2) = (finished.clone(), promise.share(), fin.clone());
            let (limit, permit2, lost) = (hook.after, permit.clone(), hook.lost.clone());
            fin.bus.spawn(async move {
                tokio::time::sleep(limit).await;
                if done.load(Ordering::Acquire) {
                    return;
                }
                if expire.is_pending() {
                    let error = Err(TaskError::TimedOut(limit));
                    fin2.settle((id, attempt), &expire, error, permit2.as_ref());
                }
                lost();
            });
            finished
        });
        let started = fin.counters.tracks_latency().then(std::time::Instant::now);
        *running.lock() = Some(Running {
            id,
            since: started,
            attempt,
            slot: promise.fail_slot(),
            permit: permit.clone(),
        });
        // A span per task for `tracing` subscribers that enable TRACE here; with none (or TRACE
        // off) this is one load. Not `trace_span!` alone: with tracing's `log` feature (which
        // actix-web turns on) and no subscriber, an unused span still calls the `log` fallback's
        // checks as it is made, entered, left and dropped, on every task.
        let _span = tracing::enabled!(tracing::Level::TRACE).then(|| {
            tracing::trace_span!("circuits.task", id = id.0, worker = %fin.worker).entered()
        });
        let Work::Block(run) = run else {
            unreachable!("an async task runs by run_async");
        };
        let result = match catch_unwind(AssertUnwindSafe(run)) {
            Ok(r) => r,
            Err(payload) => Err(TaskError::Panicked(panic_message(&*payload))),
        };
        *running.lock() = None;
        if let Some(t) = started {
            fin.counters.latency(t.elapsed());
        }
        if let Some(f) = finished {
            f.store(true, Ordering::Release);
        }
        if let Err(error) = &result {
            // Another attempt, if the policy gives one and the work can run again (a timer or
            // an abort that settled the task meanwhile ends it).
            let again = retry_due(extra.as_deref(), error, fin)
                .filter(|_| promise.is_pending())
                .and_then(|next| Some((next, extra.as_ref()?.rebuild()?)));
            if let Some(((delay, hook), run)) = again {
                let cell = Box::new(TaskCell {
                    id,
                    run: Work::Block(run),
                    promise,
                    extra,
                });
                let error = result.err().unwrap_or(TaskError::Abandoned);
                return cell.requeue(delay, error, fin, &hook);
            }
        }
        let spent = Extra::spend(extra, spent);
        if promise.is_wanted() {
            // Someone awaits the value (so its result is not dropped here): the worker learns
            // that it is set next, with no user code left to run before it looks for work.
            running.value_due();
        }
        fin.settle_spent((id, attempt), &promise, result, permit.as_ref(), spent);
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }

    fn reject(self: Box<Self>, error: TaskError) {
        release(self.permit());
        self.promise.complete(Err(error));
    }

    fn pin(&mut self) {
        self.extra.get_or_insert_with(Extra::empty).pinned = true;
    }

    fn pinned(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| e.pinned)
    }

    fn hold(&mut self, permit: tokio::sync::OwnedSemaphorePermit) {
        self.extra.get_or_insert_with(Extra::empty).permit =
            Some(Arc::new(std::sync::Mutex::new(Some(permit))));
    }

    fn priority(&self) -> Priority {
        self.extra.as_ref().map_or(Priority::Normal, |e| e.priority)
    }

    fn fail(self: Box<Self>, error: TaskError, fin: &Finisher) {
        // The closure was not consumed: the cell runs again as it is.
        if let Some((delay, hook)) = retry_due(self.extra.as_deref(), &error, fin) {
            if self.promise.is_pending() {
                return self.requeue(delay, error, fin, &hook);
            }
        }
        self.fail_final(error, fin);
    }

    fn settled(&self) -> bool {
        !self.promise.is_pending()
    }

    fn is_async(&self) -> bool {
        matches!(self.run, Work::Async(_))
    }

    fn cancellable(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| e.cancel.is_some())
    }

    fn arm(&mut self, fin: &Arc<Finisher>) {
        let Some(extra) = self.extra.as_ref() else {
            return;
        };
        let Some(cancel) = extra.cancel.as_ref() else {
            return;
        };
        let (fin, key) = (fin.clone(), (self.id, extra.attempt));
        let (slot, permit) = (self.promise.fail_slot(), extra.permit.clone());
        cancel.cell().arm(Box::new(move || {
            fin.settle_err(key, &*slot, TaskError::Cancelled, permit.as_ref())
        }));
    }

    fn cancel_handle(&self) -> Option<&Cancel> {
        self.extra.as_ref()?.cancel.as_ref()
    }

    fn run_async(
        self: Box<Self>,
        fin: &Arc<Finisher>,
        running: &Arc<RunningSlot>,
        set: Arc<dyn Registry>,
        load: Option<Arc<std::sync::atomic::AtomicUsize>>,
    ) -> futures::future::LocalBoxFuture<'static, ()> {
        if self.expired() {
            self.fail(TaskError::Expired, fin);
            leave(&load);
            return Box::pin(std::future::ready(()));
        }
        if !self.is_async() {
            // A blocking task holds the thread (and every future on it) until it returns.
            // Registered now, as an async task is: an abort (or a stuck worker) fails it at once,
            // from the thread that aborts, though it has not started.
            let entered = set.enter(Running {
                id: self.id,
                since: fin.counters.tracks_latency().then(std::time::Instant::now),
                attempt: self.attempt(),
                slot: self.promise.fail_slot(),
                permit: self.permit().cloned(),
            });
            if let Err(error) = entered {
                self.fail_final(error, fin);
                leave(&load);
                return Box::pin(std::future::ready(()));
            }
            let running = running.clone();
            let mut unstarted = Unstarted {
                task: Some(self),
                fin: fin.clone(),
                set,
                load,
            };
            return Box::pin(async move {
                unstarted.end(|task, fin| task.run(fin, &running));
            });
        }
        let timeout = self.timeout();
        let attempt = self.attempt();
        let TaskCell {
            id,
            run,
            promise,
            extra,
        } = *self;
        let Work::Async(fut) = run else {
            unreachable!("an async task has its future");
        };
        let (permit, cancel) = match extra {
            Some(mut e) => (e.permit.take(), e.cancel.take()),
            None => (None, None),
        };
        let parts = Parts {
            id,
            attempt,
            promise,
            fut: *fut,
            timeout,
            permit,
            cancel,
            load,
        };
        drive(parts, fin.clone(), set)
    }

    fn next_attempt(&mut self) {
        let extra = self.extra.get_or_insert_with(Extra::empty);
        extra.attempt += 1;
        extra.deadline = None; // it started once: its deadline to start is met
    }

    fn fail_final(self: Box<Self>, error: TaskError, fin: &Finisher) {
        let key = (self.id, self.attempt());
        fin.settle(key, &self.promise, Err(error), self.permit());
    }

    fn finish_encoded(self: Box<Self>, answer: Result<&[u8], TaskError>, fin: &Finisher) {
        let bytes = match answer {
            Ok(bytes) => bytes,
            Err(e) => return self.fail(e, fin),
        };
        let (key, permit) = ((self.id, self.attempt()), self.permit().cloned());
        // The box's memory goes back with the result, to be freed where the value is read.
        let (cell, spent) = Spent::hollow(self);
        let job = cell.extra.as_ref().and_then(|e| e.job.as_ref());
        let result = match job {
            Some(j) => (j.decode)(bytes),
            None => Err(TaskError::Wire(crate::wire::WireError::Unexpected(
                "an encoded answer for a task that is not a job".into(),
            ))),
        };
        let TaskCell { promise, extra, .. } = cell;
        let spent = Extra::spend(extra, spent);
        fin.settle_spent(key, &promise, result, permit.as_ref(), spent);
    }
}
