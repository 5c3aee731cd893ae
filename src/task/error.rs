//! [`TaskError`]: why a task did not produce its result, and [`StartStage`].

use std::fmt;
use std::time::Duration;

use crate::value::WaitError;

/// Why a task did not produce its result: the error of every task's [`Value`](crate::Value), of
/// [`TaskFailure`](crate::TaskFailure) events and of [`MapStream`](crate::MapStream) items.
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
    /// The task ran and returned an error (see [`Task::fallible`](crate::Task::fallible)).
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
