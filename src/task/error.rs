//! The errors of tasks, one per operation: [`TaskError`] (how an accepted task ended without its
//! result), [`Refusal`] and [`SubmitError`] (why a task was not accepted, with the task handed
//! back), [`RunError`] (the one-await paths that submit and wait), and what they carry: [`Exit`],
//! [`StartStage`], [`Limit`].

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use crate::channel::Channel;
use crate::value::Abandoned;
use crate::wire::WireError;

use super::Task;

/// How an accepted task ended without producing its result: the error of every task's
/// [`Value`](crate::Value), of [`TaskFailure`](crate::TaskFailure) events and of
/// [`MapStream`](crate::MapStream) items.
///
/// Only run outcomes: a task that was never accepted is a [`SubmitError`] (it is handed back), and
/// waiting with a bound fails with a [`WaitError`](crate::WaitError) beside this. Some variants come
/// from the task itself (`Panicked`, `Failed`, `TimedOut`), some from the pool (`Cancelled`), some
/// from process mode only (`WorkerCrashed`, `LimitExceeded`, `UnknownJob`, `Wire`), and
/// `WorkerStartFailed` from a worker that could not start. It converts into
/// [`Error`](crate::Error) for `?`.
///
/// ```
/// use circuits::prelude::*;
///
/// # #[actix::main] async fn main() -> Result<(), circuits::Error> {
/// let pool = Pool::builder().min(1).start();
/// let failed = pool.run(Task::fallible(|| "x".parse::<u32>())).await;
/// assert!(matches!(failed, Err(RunError::Task(TaskError::Failed(_)))));
/// let panicked = pool.push(Task::new(|| -> u32 { panic!("boom") }))?.await;
/// assert_eq!(panicked, Err(TaskError::Panicked("boom".into())));
/// pool.stop().await;
/// // A stopped pool does not accept the task: it is handed back, with the reason.
/// let refused = pool.push(Task::new(|| 1)).unwrap_err();
/// assert_eq!(refused.refusal(), &Refusal::Stopped);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the message is the panic payload. The worker lives on.
    #[error("the task panicked: {0}")]
    Panicked(String),
    /// The task ran and returned an error (see [`Task::fallible`](crate::Task::fallible)).
    #[error("the task failed: {0}")]
    Failed(String),
    /// The task ran past its timeout. In thread mode the thread cannot be stopped and finishes in
    /// the background (its result is discarded); in process mode the child was killed.
    #[error("the task timed out after {0:?}")]
    TimedOut(Duration),
    /// The task was still queued past its deadline ([`Task::expires_after`](crate::Task::expires_after))
    /// and never ran.
    #[error("the task expired before it started")]
    Expired,
    /// The task was cancelled, queued or running: by its [`Cancel`](crate::Cancel) handle, or by
    /// an abort of its pool (or a [`stop_within`](crate::PoolHandle::stop_within) past its
    /// budget).
    #[error("the task was cancelled")]
    Cancelled,
    /// The worker process died while running the task (a panic that aborts, a signal, the OOM
    /// killer, a broken protocol...). A replacement worker was started.
    #[error("the worker process {worker} died while running the task: {exit}")]
    WorkerCrashed {
        /// The channel of the worker that died.
        worker: Channel,
        /// How it ended.
        exit: Exit,
    },
    /// The task went over one of its worker process's resource limits (set in
    /// [`ProcessConfig`](crate::ProcessConfig): [`limit_cpu_per_job`](crate::ProcessConfig::limit_cpu_per_job),
    /// [`limit_resident_memory`](crate::ProcessConfig::limit_resident_memory)), and the process
    /// was killed for it. As after a crash, only this task fails, and a replacement worker was
    /// started.
    #[error("the task went over its worker process's limit, and the process was killed: {0}")]
    LimitExceeded(Limit),
    /// A worker could not be started, several times in a row (see
    /// [`ProcessConfig::max_start_failures`](crate::ProcessConfig::max_start_failures) and
    /// [`PoolBuilder::max_start_failures`](crate::PoolBuilder::max_start_failures)): the tasks
    /// waiting on that worker fail with this instead of waiting for ever. The pool keeps trying to
    /// start it at the slowest back-off (a process worker whose children failed their handshake,
    /// only once a task came for it). A worker process fails to start in several ways (see
    /// [`StartStage`]); a thread worker only when its
    /// [worker state](crate::PoolBuilder::worker_state) set-up fails.
    #[error("the worker {worker} could not be started ({stage}): {reason}")]
    WorkerStartFailed {
        /// The channel of the worker that could not start.
        worker: Channel,
        /// Where the last attempt failed.
        stage: StartStage,
        /// What happened, in words: the OS's error, the exit status or signal, and the likely cause.
        reason: String,
    },
    /// The worker process does not know the job's name (register it in the binary's job set).
    #[error("the worker does not know a job named {0:?}; register it in the binary's jobs")]
    UnknownJob(String),
    /// A job's input or output could not be encoded or decoded, or its frame is over the limit.
    #[error("wire error: {0}")]
    Wire(#[source] WireError),
    /// The task was dropped without an outcome: what held it (a worker, the runtime it ran on)
    /// went away. Not expected while the pool and its actix `System` run.
    #[error("the task was dropped without an outcome (its worker or runtime went away)")]
    Abandoned,
    /// Remote mode ([`PoolBuilder::nats`](crate::PoolBuilder::nats)): every host the job was
    /// delivered to went away before answering (killed, cut off), as many times as the work
    /// stream allows deliveries. The job may have run, in part or whole, that many times.
    #[error("the job was lost with its host {deliveries} times (its deliveries are exhausted)")]
    HostLost {
        /// How many times the job was delivered to a host.
        deliveries: u64,
    },
    /// Remote mode: the broker did not take the job, or could not be reached before the
    /// publish deadline ([`NatsConfig::publish_deadline`](crate::NatsConfig::publish_deadline));
    /// the job never ran.
    #[error("the broker did not take the job: {0}")]
    Broker(BrokerError),
}

/// Why the broker did not take a job (see [`TaskError::Broker`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum BrokerError {
    /// The work stream is at its limit ([`NatsConfig::max_jobs`](crate::NatsConfig::max_jobs) or
    /// [`max_bytes`](crate::NatsConfig::max_bytes)) and refuses new jobs.
    #[error("the work stream is full")]
    Full,
    /// No confirmation from the broker before the publish deadline; the last error seen.
    #[error("no confirmation from the broker within {deadline:?}: {last}")]
    Unreachable {
        /// The deadline that passed.
        deadline: Duration,
        /// The last error of a publish attempt.
        last: String,
    },
}

impl TaskError {
    /// Every [`kind`](TaskError::kind), in a fixed order (what per-kind counts are kept by).
    pub const KINDS: [&'static str; 14] = [
        "panicked",
        "failed",
        "timed_out",
        "expired",
        "cancelled",
        "worker_crashed",
        "limit_exceeded",
        "worker_start_failed",
        "unknown_job",
        "wire",
        "abandoned",
        "host_lost",
        "broker",
        "other",
    ];

    /// The error's kind as a short, stable name (`"panicked"`, `"timed_out"`, `"worker_crashed"`,
    /// ...; one of [`KINDS`](TaskError::KINDS)): a label for metrics and dashboards, where the
    /// message itself (user data, unbounded) does not belong.
    ///
    /// ```
    /// use circuits::TaskError;
    /// assert_eq!(TaskError::Cancelled.kind(), "cancelled");
    /// assert_eq!(TaskError::Failed("bad input".into()).kind(), "failed");
    /// ```
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.kind_index()]
    }

    /// The index of [`kind`](TaskError::kind) in [`KINDS`](TaskError::KINDS).
    pub(crate) fn kind_index(&self) -> usize {
        match self {
            TaskError::Panicked(_) => 0,
            TaskError::Failed(_) => 1,
            TaskError::TimedOut(_) => 2,
            TaskError::Expired => 3,
            TaskError::Cancelled => 4,
            TaskError::WorkerCrashed { .. } => 5,
            TaskError::LimitExceeded(_) => 6,
            TaskError::WorkerStartFailed { .. } => 7,
            TaskError::UnknownJob(_) => 8,
            TaskError::Wire(_) => 9,
            TaskError::Abandoned => 10,
            TaskError::HostLost { .. } => 11,
            TaskError::Broker(_) => 12,
            #[allow(unreachable_patterns)]
            _ => 13,
        }
    }
}

impl From<Abandoned> for TaskError {
    fn from(_: Abandoned) -> Self {
        TaskError::Abandoned
    }
}

/// How a worker process ended (see [`TaskError::WorkerCrashed`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it (the number; [`Exit::signal_name`] names the common ones).
    Signal(i32),
    /// It broke the wire protocol, and the pool killed it; what was wrong.
    Protocol(WireError),
    /// The pool killed it: the task before this one timed out just as this one started.
    KilledAfterTimeout,
    /// Its pipe closed without an exit status that could be read.
    Unknown,
}

impl Exit {
    /// The name of the signal that ended the process, for the common ones (Linux numbering).
    pub fn signal_name(&self) -> Option<&'static str> {
        let Exit::Signal(s) = self else { return None };
        Some(match s {
            4 => "SIGILL",
            6 => "SIGABRT",
            7 => "SIGBUS",
            8 => "SIGFPE",
            9 => "SIGKILL",
            11 => "SIGSEGV",
            15 => "SIGTERM",
            24 => "SIGXCPU",
            _ => return None,
        })
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exited with code {c}"),
            Exit::Signal(s) => match self.signal_name() {
                Some(name) => write!(f, "killed by signal {s} ({name})"),
                None => write!(f, "killed by signal {s}"),
            },
            Exit::Protocol(e) => write!(f, "broke the protocol ({e}) and was killed"),
            Exit::KilledAfterTimeout => {
                f.write_str("killed because the task before it timed out as it finished")
            }
            Exit::Unknown => f.write_str("its pipe closed without an exit status"),
        }
    }
}

/// A per-process resource limit that a job went over (see [`TaskError::LimitExceeded`]). Set with
/// [`ProcessConfig`](crate::ProcessConfig); process mode only.
///
/// ```
/// use std::time::Duration;
/// use circuits::{Limit, TaskError};
///
/// let e = TaskError::LimitExceeded(Limit::CpuTime(Duration::from_secs(2)));
/// assert!(e.to_string().ends_with("CPU time: more than 2s in one job"));
/// let m = Limit::ResidentMemory { limit: 64 << 20, resident: 70 << 20 };
/// assert_eq!(m.to_string(), "resident memory: 73400320 bytes, above the limit of 67108864");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Limit {
    /// The job used more CPU time (user and system, all its threads) than
    /// [`limit_cpu_per_job`](crate::ProcessConfig::limit_cpu_per_job) allows: the kernel sent
    /// the process SIGXCPU. The limit as configured.
    CpuTime(Duration),
    /// The worker process's resident memory was above
    /// [`limit_resident_memory`](crate::ProcessConfig::limit_resident_memory) while the job ran.
    ResidentMemory {
        /// The limit, in bytes.
        limit: u64,
        /// The resident memory the pool saw, in bytes (above the limit).
        resident: u64,
    },
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::CpuTime(limit) => write!(f, "CPU time: more than {limit:?} in one job"),
            Limit::ResidentMemory { limit, resident } => write!(
                f,
                "resident memory: {resident} bytes, above the limit of {limit}"
            ),
        }
    }
}

/// Where starting a worker failed (see [`TaskError::WorkerStartFailed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum StartStage {
    /// The OS refused to start the process (or a thread to read it).
    Spawn,
    /// The process started but ended, or answered wrongly, before completing the handshake.
    Handshake,
    /// The process completed the handshake but died before answering its first job.
    FirstJob,
    /// The worker's state set-up (its initializer) returned an error or panicked, in a worker
    /// process ([`Jobs::worker_state`](crate::Jobs::worker_state)) or a worker thread
    /// ([`PoolBuilder::worker_state`](crate::PoolBuilder::worker_state)); the reason is its message.
    WorkerState,
}

impl fmt::Display for StartStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StartStage::Spawn => "spawn",
            StartStage::Handshake => "handshake",
            StartStage::FirstJob => "first job",
            StartStage::WorkerState => "worker state",
        })
    }
}

/// Why a pool (or the bus) did not accept a task. Nothing ran; see [`SubmitError`] for the task
/// itself, handed back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The pool is bounded ([`queue_bound`](crate::PoolBuilder::queue_bound)) and has no room now.
    /// [`PoolHandle::send`](crate::PoolHandle::send) and [`run`](crate::PoolHandle::run) wait
    /// for room instead.
    #[error("the pool's queue is full")]
    Full,
    /// The pool is stopping or stopped.
    #[error("the pool is stopped; it takes no new tasks")]
    Stopped,
    /// No pool or worker takes tasks on this channel (or the target was not exactly one channel:
    /// then the channel is the first of them, or empty).
    #[error("no pool or worker takes tasks on channel {0:?}")]
    NoRoute(Channel),
    /// A closure task was sent to a process pool, which can only run [`Job`](crate::Job)s.
    #[error("a process pool runs only Jobs; build the task with Task::job instead of a closure")]
    ClosureInProcessPool,
}

/// A task that was not accepted, handed back with the [`Refusal`] that says why (in the manner of
/// crossbeam-channel's `TrySendError`). Nothing of it ran and no event was fired for it.
///
/// It is `Send` and `Sync` (whatever the task's closure is), so `?` turns it into
/// `Box<dyn Error + Send + Sync>`, `anyhow::Error` or [`circuits::Error`](crate::Error) (which keep
/// the reason and drop the task).
///
/// ```
/// use circuits::prelude::*;
///
/// # #[actix::main] async fn main() {
/// let pool = Pool::builder().min(1).queue_bound(1).start();
/// let (go, gate) = std::sync::mpsc::channel::<()>();
/// let first = pool.push(Task::new(move || gate.recv().unwrap())).unwrap(); // takes the room
/// let refused = pool.push(Task::new(|| ())).unwrap_err();
/// assert_eq!(refused.refusal(), &Refusal::Full);
/// let task = refused.into_task(); // try again once there is room
/// go.send(()).unwrap();
/// first.await.unwrap();
/// pool.send(task).await.unwrap().await.unwrap();
/// pool.stop().await;
/// # }
/// ```
pub struct SubmitError<R> {
    refusal: Refusal,
    // Behind a lock only so that the error is `Sync` while the task's closure need not be; the
    // lock is never contended (the task is only reached by value). Boxed: refusals are rare, and
    // a small error keeps `push`'s `Result` small.
    task: Mutex<Box<Task<R>>>,
}

impl<R> SubmitError<R> {
    pub(crate) fn new(refusal: Refusal, task: Task<R>) -> Self {
        SubmitError {
            refusal,
            task: Mutex::new(Box::new(task)),
        }
    }

    /// Why the task was not accepted.
    pub fn refusal(&self) -> &Refusal {
        &self.refusal
    }

    /// The task, to submit again or to drop.
    pub fn into_task(self) -> Task<R> {
        *self.task.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    /// The reason and the task.
    pub fn into_parts(self) -> (Refusal, Task<R>) {
        let refusal = self.refusal.clone();
        (refusal, self.into_task())
    }

    /// Whether the pool was full (it is bounded and had no room).
    pub fn is_full(&self) -> bool {
        self.refusal == Refusal::Full
    }

    /// Whether the pool was stopping or stopped.
    pub fn is_stopped(&self) -> bool {
        self.refusal == Refusal::Stopped
    }
}

impl<R> fmt::Debug for SubmitError<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitError")
            .field("refusal", &self.refusal)
            .finish_non_exhaustive()
    }
}

impl<R> fmt::Display for SubmitError<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the task was not accepted: {}", self.refusal)
    }
}

impl<R> std::error::Error for SubmitError<R> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.refusal)
    }
}

impl<R> From<SubmitError<R>> for Refusal {
    fn from(e: SubmitError<R>) -> Self {
        e.refusal
    }
}

/// The error of the paths that submit a task and wait for its result in one await
/// ([`PoolHandle::run`](crate::PoolHandle::run), `Addr<Pool>::send(task)`): it was not
/// accepted, or it ran and failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The task was not accepted; nothing ran.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The task was accepted and ended without its result.
    #[error(transparent)]
    Task(#[from] TaskError),
}

impl RunError {
    /// The task's own error, if it was accepted.
    pub fn task_error(&self) -> Option<&TaskError> {
        match self {
            RunError::Task(e) => Some(e),
            RunError::Refused(_) => None,
        }
    }

    /// Why the task was not accepted, if it was not.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            RunError::Refused(r) => Some(r),
            RunError::Task(_) => None,
        }
    }
}

impl<R> From<SubmitError<R>> for RunError {
    fn from(e: SubmitError<R>) -> Self {
        RunError::Refused(e.refusal)
    }
}

impl From<crate::wire::Fault> for TaskError {
    fn from(f: crate::wire::Fault) -> Self {
        match f {
            crate::wire::Fault::Panicked(m) => TaskError::Panicked(m),
            crate::wire::Fault::UnknownJob(n) => TaskError::UnknownJob(n),
            crate::wire::Fault::Wire(e) => TaskError::Wire(e),
        }
    }
}
