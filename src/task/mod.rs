//! Tasks and their outcomes: [`Task`], [`TaskId`], the errors of each operation ([`SubmitError`]
//! and its [`Refusal`] when a task is not accepted, [`TaskError`] when an accepted task ends
//! without its result, [`RunError`] for the paths that do both in one await), and the result
//! events [`TaskSuccess`], [`TaskFailure`] and [`TaskComplete`].
//!
//! A `Task<R>` is an actix message carrying the work: a closure (thread pools) or a serializable
//! [`Job`](crate::Job) (both modes). An accepted task resolves to `Result<R, TaskError>`.
//!
//! ```
//! use circuits::prelude::*;
//!
//! # #[actix::main] async fn main() -> Result<(), circuits::Error> {
//! let pool = Pool::builder().min(2).start();
//! let n = pool.run(Task::new(|| 6 * 7)).await?; // submit, then await the result
//! assert_eq!(n, 42);
//! let value = pool.push(Task::fallible(|| "x".parse::<u32>()))?; // accepted (or handed back)
//! let err = value.await.unwrap_err(); // ran, and failed
//! assert!(matches!(err, TaskError::Failed(_)));
//! pool.stop().await;
//! # Ok(()) }
//! ```
//!
//! Files: `output` (ids, outputs, what a task runs), `error`, `events`, `payload` (a job's
//! encoded form), `counters` and `finish` (settling), `erased` (the queue entry's trait),
//! `queued` (its one implementation), `extra` (an entry's options and run state), `future`
//! (async tasks), `cancel`, `priority`, `retry`.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use actix::Message;

mod cancel;
mod counters;
mod erased;
mod error;
mod events;
mod extra;
mod finish;
mod future;
mod output;
mod payload;
mod priority;
mod queued;
mod recent;
mod retry;

pub use cancel::{Cancel, CancelGuard};
pub use error::{BrokerError, Exit, Limit, Refusal, RunError, StartStage, SubmitError, TaskError};
pub use events::{TaskComplete, TaskFailure, TaskSuccess};
pub use output::{TaskId, TaskOutput};
pub use priority::Priority;
pub use recent::RecentFailure;
pub use retry::Retry;

pub(crate) use counters::{histogram, Counters};
pub(crate) use erased::{ErasedTask, Refused};
pub(crate) use finish::{Finisher, Registry, RunningSet, RunningSlot, StuckHook};
pub(crate) use output::panic_message;
pub(crate) use output::{Again, Closure, Work};
pub use payload::{job_context, JobContext};
pub(crate) use payload::{with_context, Batch, Inputs, JobCall, JobPayload};
pub(crate) use priority::{LaneTurn, Lanes};
pub(crate) use queued::hand_back;
pub(crate) use recent::RecentFailures;
pub(crate) use retry::RetryHook;

/// A unit of work for a pool, resolving to `Result<R, TaskError>` once accepted.
///
/// Build it from a closure ([`Task::new`], [`Task::fallible`]) for thread pools, or from a
/// [`Job`](crate::Job) ([`Task::job`]) for either mode. Send it with
/// [`PoolHandle::run`](crate::PoolHandle::run) (one await for the result),
/// [`push`](crate::PoolHandle::push) / [`send`](crate::PoolHandle::send) (a [`Value`](crate::Value)
/// to await later), `Addr<Pool>::send` (as any actix message, answered with
/// `Result<R, `[`RunError`]`>`), or [`Bus::call`](crate::Bus::call) at the pool's channel
/// (balanced) or a worker's channel.
///
/// ```
/// use std::time::Duration;
/// use circuits::prelude::*;
///
/// # #[actix::main] async fn main() -> Result<(), RunError> {
/// let pool = Pool::builder().min(2).strategy(KeyAffinity::new()).start();
/// let (a, b) = (20, 22);
/// let sum = Task::new(move || a + b) // arguments travel in the captures
///     .key("user-42") // equal keys, same worker (with KeyAffinity)
///     .timeout(Duration::from_secs(5)); // fails with TimedOut past this
/// assert_eq!(pool.run(sum).await?, 42);
/// pool.stop().await;
/// # Ok(()) }
/// ```
#[must_use = "a Task does nothing until it is pushed to a pool"]
pub struct Task<R> {
    pub(crate) run: Work<R>,
    pub(crate) job: Option<JobCall<R>>,
    pub(crate) key: Option<u64>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) deadline: Option<std::time::Instant>,
    pub(crate) priority: Priority,
    pub(crate) retry: Option<Retry>,
    /// The work again, for a retry ([`Task::repeatable`]).
    pub(crate) again: Option<Again<R>>,
    /// The shared cell of its [`Cancel`] handle ([`Task::cancellable`]).
    pub(crate) cancel: Option<Cancel>,
}

impl<R> fmt::Debug for Task<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("job", &self.job.as_ref().map(|j| j.payload.name))
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .field("deadline", &self.deadline)
            .field("priority", &self.priority)
            .field("retry", &self.retry)
            .field("async", &matches!(self.run, Work::Async(_)))
            .field("cancel", &self.cancel)
            .finish()
    }
}

impl<R: TaskOutput> Message for Task<R> {
    type Result = Result<R, RunError>;
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

    /// A task running `f`, which may fail, and which may run more than once: a task that
    /// [retries](Self::retry) (in a thread pool) must be made with this or [`Task::job`]. `Err(e)`
    /// fails the attempt with [`TaskError::Failed`] carrying `e`'s message.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use circuits::prelude::*;
    ///
    /// # #[actix::main] async fn main() -> Result<(), RunError> {
    /// let pool = Pool::builder().min(1).start();
    /// let tries = Arc::new(AtomicU32::new(0));
    /// let t = tries.clone();
    /// let flaky = Task::repeatable(move || match t.fetch_add(1, Ordering::SeqCst) {
    ///     0 => Err("the database was not ready"),
    ///     n => Ok(n + 1),
    /// })
    /// .retry(Retry::attempts(3).backoff(Duration::ZERO, Duration::ZERO).when(|e| {
    ///     matches!(e, TaskError::Failed(_))
    /// }));
    /// assert_eq!(pool.run(flaky).await?, 2); // the second attempt succeeded
    /// pool.stop().await;
    /// # Ok(()) }
    /// # use std::time::Duration;
    /// ```
    pub fn repeatable<F, E>(f: F) -> Self
    where
        F: Fn() -> Result<R, E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        let again: Again<R> =
            std::sync::Arc::new(move || f().map_err(|e| TaskError::Failed(e.to_string())));
        let first = again.clone();
        let mut task = Self::from_closure(Box::new(move || first()));
        task.again = Some(again);
        task
    }

    pub(crate) fn from_closure(run: Closure<R>) -> Self {
        Self::from_work(Work::Block(run))
    }

    pub(crate) fn from_work(run: Work<R>) -> Self {
        Task {
            run,
            job: None,
            key: None,
            timeout: None,
            deadline: None,
            priority: Priority::Normal,
            retry: None,
            again: None,
            cancel: None,
        }
    }

    /// Sets the task's [`Priority`] (default `Normal`): a worker takes its `High` tasks first and
    /// its `Low` ones last, without starving them (see [`Priority`]). In process mode the order
    /// holds among the tasks not yet sent to the child: up to
    /// [`ProcessConfig::pipeline`](crate::ProcessConfig::pipeline) tasks are sent ahead, so set
    /// `pipeline(1)` where strict order matters more than throughput.
    ///
    /// ```
    /// use circuits::prelude::*;
    ///
    /// # #[actix::main] async fn main() -> Result<(), RunError> {
    /// let pool = Pool::builder().min(1).start();
    /// let urgent = Task::new(|| "now").priority(Priority::High);
    /// assert_eq!(pool.run(urgent).await?, "now");
    /// pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Runs the task again after a failure its policy calls transient (see [`Retry`]), instead
    /// of the pool's default policy ([`PoolBuilder::retry`](crate::PoolBuilder::retry)). It keeps
    /// its id and its value; its one terminal event carries the attempt number. Applies to jobs
    /// and to [`Task::repeatable`] closures.
    pub fn retry(mut self, policy: Retry) -> Self {
        self.retry = Some(policy);
        self
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

    /// Expires the task if it has not started within `limit` from now (Celery's `expires`): a
    /// task still queued past its deadline fails with [`TaskError::Expired`] without running (its
    /// failure events fire as for any failure). A task that started runs to its end (see
    /// [`timeout`](Self::timeout) for that). A `limit` too large for the clock never expires.
    ///
    /// ```
    /// use std::time::Duration;
    /// use circuits::prelude::*;
    ///
    /// # #[actix::main] async fn main() -> Result<(), circuits::Error> {
    /// let pool = Pool::builder().min(1).start();
    /// let stale = Task::new(|| 1).expires_after(Duration::ZERO); // expired before it can start
    /// assert_eq!(pool.push(stale)?.await, Err(TaskError::Expired));
    /// let fresh = Task::new(|| 2).expires_after(Duration::from_secs(60));
    /// assert_eq!(pool.run(fresh).await?, 2);
    /// pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn expires_after(mut self, limit: Duration) -> Self {
        self.deadline = std::time::Instant::now().checked_add(limit);
        self
    }
}
