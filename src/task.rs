//! Tasks and their outcomes: [`Task`], [`TaskId`], [`TaskError`], and the result events
//! [`TaskSuccess`], [`TaskFailure`] and [`TaskComplete`].
//!
//! A `Task<R>` is an actix message carrying the work: a closure (thread pools) or a serializable
//! [`Job`](crate::Job) (both modes). It resolves to `Result<R, TaskError>`.
//!
//! ```
//! use circuits::prelude::*;
//!
//! # #[actix::main] async fn main() -> Result<(), circuits::Error> {
//! let pool = Pool::builder().min(2).start();
//! let n = pool.push(Task::new(|| 6 * 7)).await?;
//! assert_eq!(n, 42);
//! let err = pool.push(Task::fallible(|| "x".parse::<u32>())).await.unwrap_err();
//! assert!(matches!(err, TaskError::Failed(_)));
//! pool.stop().await;
//! # Ok(()) }
//! ```

use std::fmt;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Message;

use crate::bus::{Bus, Target};
use crate::channel::Channel;
use crate::job::JobCall;
use crate::value::{promise, FailSlot, Promise, Value, WaitError};

/// Identifies a task within its pool (ids count up from 1 in push order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TaskId(pub u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task#{}", self.0)
    }
}

/// Why a task did not produce its result: the error of every task's [`Value`], of
/// [`TaskFailure`] events and of [`MapStream`](crate::MapStream) items.
///
/// Some variants come from the task itself (`Panicked`, `Failed`, `TimedOut`), some from the
/// pool (`PoolStopped`, `Full`, `Cancelled`, `NoRoute`), some from process mode only
/// (`ClosureInProcessPool`, `WorkerCrashed`, `WorkerStartFailed`, `UnknownJob`, `Wire`). It
/// converts into [`Error`](crate::Error) for `?`.
///
/// ```
/// use circuits::prelude::*;
///
/// # #[actix::main] async fn main() {
/// let pool = Pool::builder().min(1).start();
/// let failed = pool.push(Task::fallible(|| "x".parse::<u32>())).await;
/// assert!(matches!(failed, Err(TaskError::Failed(_))));
/// let panicked = pool.push(Task::new(|| -> u32 { panic!("boom") })).await;
/// assert_eq!(panicked, Err(TaskError::Panicked("boom".into())));
/// pool.stop().await;
/// let late = pool.push(Task::new(|| 1)).await;
/// assert_eq!(late, Err(TaskError::PoolStopped));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The task panicked; the message is the panic payload. The worker lives on.
    #[error("the task panicked: {0}")]
    Panicked(String),
    /// The task ran and returned an error (see [`Task::fallible`]).
    #[error("the task failed: {0}")]
    Failed(String),
    /// The task ran past its timeout. In thread mode the thread cannot be stopped and finishes in
    /// the background (its result is discarded); in process mode the child was killed.
    #[error("the task timed out after {0:?}")]
    TimedOut(Duration),
    /// The task was queued when the pool was aborted, and never ran.
    #[error("the task was cancelled before it ran (the pool was aborted)")]
    Cancelled,
    /// The pool is stopping or stopped and takes no new tasks.
    #[error("the pool is stopped; it takes no new tasks")]
    PoolStopped,
    /// No pool or worker is registered under the channel the task was fired at.
    #[error("no pool or worker takes tasks on channel {0:?}")]
    NoRoute(String),
    /// A closure task was sent to a process pool, which can only run [`Job`](crate::Job)s.
    #[error("a process pool runs only Jobs; build the task with Task::job instead of a closure")]
    ClosureInProcessPool,
    /// The worker process died while running the task (panic with abort, signal, OOM kill...).
    /// A replacement worker was started.
    #[error("the worker process {worker} died while running the task: {reason}")]
    WorkerCrashed {
        /// The channel of the worker that died.
        worker: String,
        /// How it died: an exit code or a signal.
        reason: String,
    },
    /// A worker process could not be started, several times in a row (see
    /// [`ProcessConfig::max_start_failures`](crate::ProcessConfig::max_start_failures)): the tasks
    /// waiting on that worker fail with this instead of waiting for ever. The pool keeps trying to
    /// start it at the slowest back-off.
    #[error("the worker process {worker} could not be started ({stage}): {reason}")]
    WorkerStartFailed {
        /// The channel of the worker that could not start.
        worker: String,
        /// Where the last attempt failed.
        stage: StartStage,
        /// What happened (the OS's error, the exit status or signal, and the likely cause).
        reason: String,
    },
    /// The worker process does not know the job's name (register it in the binary's job set).
    #[error("the worker does not know a job named {0:?}; register it in the binary's jobs")]
    UnknownJob(String),
    /// A job's input or output could not be encoded or decoded, or a frame broke the protocol.
    #[error("wire error: {0}")]
    Wire(String),
    /// The pool's queue bound is reached; the task was not queued.
    #[error("the pool's queue is full")]
    Full,
    /// Waiting on the task's value failed (timeout while waiting, or abandoned).
    #[error(transparent)]
    Wait(#[from] WaitError),
}

/// Where starting a worker process failed (see [`TaskError::WorkerStartFailed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StartStage {
    /// The OS refused to start the process (or a thread to read it).
    Spawn,
    /// The process started but ended, or answered wrongly, before completing the handshake.
    Handshake,
    /// The process completed the handshake but died before answering its first job.
    FirstJob,
}

impl fmt::Display for StartStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StartStage::Spawn => "spawn",
            StartStage::Handshake => "handshake",
            StartStage::FirstJob => "first job",
        })
    }
}

impl From<crate::wire::Fault> for TaskError {
    fn from(f: crate::wire::Fault) -> Self {
        match f {
            crate::wire::Fault::Panicked(m) => TaskError::Panicked(m),
            crate::wire::Fault::UnknownJob(n) => TaskError::UnknownJob(n),
            crate::wire::Fault::Wire(m) => TaskError::Wire(m),
        }
    }
}

/// What a task may return: a value that can be sent across threads and cloned into result events.
pub trait TaskOutput: Send + Clone + 'static {}
impl<T: Send + Clone + 'static> TaskOutput for T {}

type Closure<R> = Box<dyn FnOnce() -> Result<R, TaskError> + Send + 'static>;

/// A unit of work for a pool, resolving to `Result<R, TaskError>`.
///
/// Build it from a closure ([`Task::new`], [`Task::fallible`]) for thread pools, or from a
/// [`Job`](crate::Job) ([`Task::job`]) for either mode. Send it with
/// [`PoolHandle::push`](crate::PoolHandle::push), `Addr<Pool>::send`, or
/// [`Bus::call`](crate::Bus::call) at the pool's channel (balanced) or a worker's channel.
///
/// ```
/// use std::time::Duration;
/// use circuits::prelude::*;
///
/// # #[actix::main] async fn main() -> Result<(), TaskError> {
/// let pool = Pool::builder().min(2).strategy(KeyAffinity::new()).start();
/// let (a, b) = (20, 22);
/// let sum = Task::new(move || a + b) // arguments travel in the captures
///     .key("user-42") // equal keys, same worker (with KeyAffinity)
///     .timeout(Duration::from_secs(5)); // fails with TimedOut past this
/// assert_eq!(pool.push(sum).await?, 42);
/// pool.stop().await;
/// # Ok(()) }
/// ```
#[must_use = "a Task does nothing until it is pushed to a pool"]
pub struct Task<R> {
    pub(crate) run: Closure<R>,
    pub(crate) job: Option<JobCall<R>>,
    pub(crate) key: Option<u64>,
    pub(crate) timeout: Option<Duration>,
}

impl<R> fmt::Debug for Task<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("job", &self.job.as_ref().map(|j| j.payload.name))
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<R: TaskOutput> Message for Task<R> {
    type Result = Result<R, TaskError>;
}

impl<R: TaskOutput> Task<R> {
    /// A task running `f`; a panic in `f` fails the task with [`TaskError::Panicked`].
    /// Arguments travel in the closure's captures: `Task::new(move || work(a, b))`.
    pub fn new<F>(f: F) -> Self
    where
        F: FnOnce() -> R + Send + 'static,
    {
        Self::from_closure(Box::new(move || Ok(f())))
    }

    /// A task running `f`, which may fail: `Err(e)` fails the task with
    /// [`TaskError::Failed`] carrying `e`'s message.
    pub fn fallible<F, E>(f: F) -> Self
    where
        F: FnOnce() -> Result<R, E> + Send + 'static,
        E: fmt::Display,
    {
        Self::from_closure(Box::new(move || {
            f().map_err(|e| TaskError::Failed(e.to_string()))
        }))
    }

    pub(crate) fn from_closure(run: Closure<R>) -> Self {
        Task {
            run,
            job: None,
            key: None,
            timeout: None,
        }
    }

    /// Gives the task an affinity key: with the [`KeyAffinity`](crate::KeyAffinity) strategy, tasks
    /// with equal keys always run on the same worker.
    pub fn key(mut self, key: impl Hash) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        self.key = Some(h.finish());
        self
    }

    /// Fails the task with [`TaskError::TimedOut`] if it runs longer than `limit` (counted from the
    /// moment a worker starts it). Thread mode cannot stop the thread: the task finishes in the
    /// background and its result is discarded. Process mode kills the child: real cancellation.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Turns the task into its type-erased queue entry and the value its caller awaits.
    pub(crate) fn into_cell(self, id: TaskId) -> (Box<dyn ErasedTask>, Value<R, TaskError>) {
        let (promise, value) = promise();
        (
            Box::new(TaskCell {
                id,
                run: self.run,
                promise,
                extra: (self.job.is_some() || self.key.is_some() || self.timeout.is_some()).then(
                    || {
                        Box::new(Extra {
                            job: self.job,
                            key: self.key,
                            timeout: self.timeout,
                            permit: None,
                        })
                    },
                ),
            }),
            value,
        )
    }
}

impl<R: TaskOutput> crate::bus::Dispatch for Task<R> {
    type Output = Value<R, TaskError>;

    /// Routes the task to the pool or worker registered under the one target channel.
    fn dispatch(self, bus: &Bus, target: Target) -> Value<R, TaskError> {
        let (cell, value) = self.into_cell(TaskId::default());
        match target {
            Target::Channels(chs) if chs.len() == 1 => match bus.route(&chs[0]) {
                Some(route) => route.submit(cell),
                None => cell.reject(TaskError::NoRoute(chs[0].to_string())),
            },
            other => cell.reject(TaskError::NoRoute(format!("{other:?}"))),
        }
        value
    }
}

/// Fired on the pool's channel when a task succeeds (only when someone subscribed).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct TaskSuccess<R> {
    /// The task.
    pub id: TaskId,
    /// The channel of the worker that ran it.
    pub worker: Channel,
    /// Its result.
    pub value: R,
}

/// Fired on the pool's channel when a task fails, for whatever reason.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct TaskFailure {
    /// The task.
    pub id: TaskId,
    /// The channel of the worker it was given to.
    pub worker: Channel,
    /// What went wrong.
    pub error: TaskError,
}

/// Fired on the pool's channel after the task's `TaskSuccess` or `TaskFailure`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct TaskComplete {
    /// The task.
    pub id: TaskId,
    /// The channel of the worker it was given to.
    pub worker: Channel,
    /// Whether it succeeded.
    pub ok: bool,
}

/// Where a task's outcome goes: its bus, the pool's channel, the worker's channel, and the counters
/// that say whether anyone listens on the pool's channel at all.
pub(crate) struct Finisher {
    pub(crate) bus: Bus,
    pub(crate) pool: Channel,
    pub(crate) worker: Channel,
    pub(crate) listeners: [Arc<AtomicUsize>; 2],
    /// This worker's own settled-task counters (no cache line shared with other workers); kept
    /// across a process worker's child replacements.
    pub(crate) counters: Arc<crate::pool::stats::Counters>,
    /// Thread mode with stuck detection: how long a task may run before its worker is declared
    /// lost, and how to tell the pool.
    pub(crate) stuck: std::sync::OnceLock<StuckHook>,
}

/// What a thread worker's stuck-task timer needs: the limit, and what to call when a task passes
/// it (the pool replaces the worker; given by the pool, so this layer knows nothing of pools).
pub(crate) struct StuckHook {
    pub(crate) after: Duration,
    pub(crate) lost: Arc<dyn Fn() + Send + Sync>,
}

impl Finisher {
    pub(crate) fn new(bus: &Bus, pool: &Channel, worker: &Channel, track_latency: bool) -> Self {
        Finisher {
            listeners: [bus.gauge(pool), bus.gauge(&Channel::wildcard())],
            bus: bus.clone(),
            pool: pool.clone(),
            worker: worker.clone(),
            counters: Arc::new(crate::pool::stats::Counters::new(track_latency)),
            stuck: std::sync::OnceLock::new(),
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
    fn settle<R: TaskOutput>(
        &self,
        id: TaskId,
        promise: &Promise<Result<R, TaskError>>,
        result: Result<R, TaskError>,
        permit: Option<&Permit>,
    ) {
        release(permit);
        let ok = result.is_ok();
        if !self.observed() {
            promise.complete_then(result, || self.counters.record(ok));
            return;
        }
        let terminal = match &result {
            Ok(v) => Ok(TaskSuccess {
                id,
                worker: self.worker.clone(),
                value: v.clone(),
            }),
            Err(e) => Err(self.failure(id, e.clone())),
        };
        if promise.complete_then(result, || self.counters.record(ok)) {
            self.fire(id, terminal);
        }
    }

    /// [`settle`](Self::settle) with an error, for a value whose type is not known here.
    fn settle_err(
        &self,
        id: TaskId,
        slot: &dyn FailSlot<TaskError>,
        error: TaskError,
        permit: Option<&Permit>,
    ) {
        release(permit);
        let failure = self.observed().then(|| self.failure(id, error.clone()));
        if slot.fail_then(error, &mut || self.counters.record(false)) {
            if let Some(f) = failure {
                self.fire::<()>(id, Err(f));
            }
        }
    }

    fn failure(&self, id: TaskId, error: TaskError) -> TaskFailure {
        TaskFailure {
            id,
            worker: self.worker.clone(),
            error,
        }
    }

    /// Fires the terminal event, then `TaskComplete`, on the pool's channel.
    fn fire<R: TaskOutput>(&self, id: TaskId, terminal: Result<TaskSuccess<R>, TaskFailure>) {
        let bus = self.bus.clone();
        let target = Target::from(&self.pool);
        let complete = TaskComplete {
            id,
            worker: self.worker.clone(),
            ok: terminal.is_ok(),
        };
        self.bus.spawn(async move {
            match terminal {
                Ok(s) => bus.fire_plain(&target, s).await,
                Err(f) => bus.fire_plain(&target, f).await,
            }
            bus.fire_plain(&target, complete).await;
        });
    }
}

/// A bounded pool's queue permit, shared by whoever may settle the task (the worker, a timer, an
/// abort): the first to settle it frees the room, before the value resolves.
pub(crate) type Permit = Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>;

fn release(permit: Option<&Permit>) {
    if let Some(p) = permit {
        drop(p.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

/// The task a thread worker is running, so that an abort can resolve its value at once (the
/// thread finishes the closure on its own and its result is discarded).
#[derive(Default)]
pub(crate) struct RunningSlot(std::sync::Mutex<Option<Running>>);

struct Running {
    id: TaskId,
    slot: Arc<dyn FailSlot<TaskError>>,
    permit: Option<Permit>,
}

impl RunningSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fails the running task (if any, and if still pending) with `error`.
    pub(crate) fn fail(&self, error: TaskError, fin: &Finisher) {
        let running = self.lock().take();
        if let Some(r) = running {
            fin.settle_err(r.id, &*r.slot, error, r.permit.as_ref());
        }
    }
}

/// A queued task with its type erased, so one worker queue carries tasks of every result type.
pub(crate) trait ErasedTask: Send {
    /// Gives the task its id, and the pool's default timeout if it has none of its own.
    fn prepare(&mut self, id: TaskId, default_timeout: Option<Duration>);
    fn key(&self) -> Option<u64>;
    fn timeout(&self) -> Option<Duration>;
    /// The job to send to a worker process, if the task is a job.
    fn job(&self) -> Option<&crate::job::JobPayload>;
    /// Runs the closure on this thread and settles the task (thread mode). While it runs, the
    /// task is in `running`, where an abort can fail it at once.
    fn run(self: Box<Self>, fin: &Arc<Finisher>, running: &RunningSlot);
    /// Refuses the task: resolves its value with `error` and fires no event (it was never
    /// accepted).
    fn reject(self: Box<Self>, error: TaskError);
    /// Keeps a bounded pool's queue permit until the task is settled.
    fn hold(&mut self, permit: tokio::sync::OwnedSemaphorePermit);
    /// Settles the task with an error without running it.
    fn fail(self: Box<Self>, error: TaskError, fin: &Finisher);
    /// Settles the task with a worker process's encoded answer (process mode).
    fn finish_encoded(self: Box<Self>, answer: Result<&[u8], TaskError>, fin: &Finisher);
}

struct TaskCell<R> {
    id: TaskId,
    run: Closure<R>,
    promise: Promise<Result<R, TaskError>>,
    /// What most tasks do not have, boxed so a plain closure task stays four words.
    extra: Option<Box<Extra<R>>>,
}

struct Extra<R> {
    job: Option<JobCall<R>>,
    key: Option<u64>,
    timeout: Option<Duration>,
    /// A bounded pool's permit: room frees when the task is settled.
    permit: Option<Permit>,
}

impl<R> Extra<R> {
    fn empty() -> Box<Self> {
        Box::new(Extra {
            job: None,
            key: None,
            timeout: None,
            permit: None,
        })
    }
}

impl<R> TaskCell<R> {
    fn permit(&self) -> Option<&Permit> {
        self.extra.as_ref()?.permit.as_ref()
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
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
    fn key(&self) -> Option<u64> {
        self.extra.as_ref().and_then(|e| e.key)
    }
    fn timeout(&self) -> Option<Duration> {
        self.extra.as_ref().and_then(|e| e.timeout)
    }
    fn job(&self) -> Option<&crate::job::JobPayload> {
        self.extra.as_ref()?.job.as_ref().map(|j| &j.payload)
    }

    fn run(self: Box<Self>, fin: &Arc<Finisher>, running: &RunningSlot) {
        let timeout = self.timeout();
        let TaskCell {
            id,
            run,
            promise,
            extra,
        } = *self;
        let permit = extra.and_then(|e| e.permit);
        if !promise.is_pending() {
            return; // already settled (cancelled while queued)
        }
        if let Some(limit) = timeout {
            let (expire, fin2, permit2) = (promise.share(), fin.clone(), permit.clone());
            fin.bus.spawn(async move {
                tokio::time::sleep(limit).await;
                if expire.is_pending() {
                    let error = Err(TaskError::TimedOut(limit));
                    fin2.settle(id, &expire, error, permit2.as_ref());
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
                    fin2.settle(id, &expire, error, permit2.as_ref());
                }
                lost();
            });
            finished
        });
        *running.lock() = Some(Running {
            id,
            slot: promise.fail_slot(),
            permit: permit.clone(),
        });
        // A span per task for `tracing` subscribers; with none (or TRACE off) this is one load.
        let _span =
            tracing::trace_span!("circuits.task", id = id.0, worker = %fin.worker).entered();
        let started = fin.counters.tracks_latency().then(std::time::Instant::now);
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
        fin.settle(id, &promise, result, permit.as_ref());
    }

    fn reject(self: Box<Self>, error: TaskError) {
        release(self.permit());
        self.promise.complete(Err(error));
    }

    fn hold(&mut self, permit: tokio::sync::OwnedSemaphorePermit) {
        self.extra.get_or_insert_with(Extra::empty).permit =
            Some(Arc::new(std::sync::Mutex::new(Some(permit))));
    }

    fn fail(self: Box<Self>, error: TaskError, fin: &Finisher) {
        fin.settle(self.id, &self.promise, Err(error), self.permit());
    }

    fn finish_encoded(self: Box<Self>, answer: Result<&[u8], TaskError>, fin: &Finisher) {
        let job = self.extra.as_ref().and_then(|e| e.job.as_ref());
        let result = match (answer, job) {
            (Ok(bytes), Some(j)) => (j.decode)(bytes),
            (Ok(_), None) => Err(TaskError::ClosureInProcessPool),
            (Err(e), _) => Err(e),
        };
        fin.settle(self.id, &self.promise, result, self.permit());
    }
}
