//! Async tasks: [`Task::future`], [`Task::try_future`] and [`Task::future_local`], and how one
//! runs ([`drive`]): built on the worker's thread, polled there, dropped on a timeout, a cancel
//! or an abort.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{AbortHandle, Abortable, LocalBoxFuture};
use futures::FutureExt;

use super::cancel::Cancel;
use super::error::TaskError;
use super::finish::{Finisher, Permit, Registry, Running};
use super::output::panic_message;
use super::output::{Fut, Maker, TaskId, TaskOutput, Work};
use super::Task;
use crate::value::Promise;

impl<R: TaskOutput> Task<R> {
    /// An async task: `fut` runs on a worker's thread and its output is the task's result.
    ///
    /// In a pool of [async workers](crate::PoolBuilder::async_workers) each worker runs many at
    /// once (up to its limit of tasks in flight); in a thread pool a worker runs one at a time, to
    /// its end. Either way it resolves the same [`Value`](crate::Value) and fires the same result
    /// events as a blocking task. A [timeout](Self::timeout) or a [cancel](Self::cancellable)
    /// drops the future: real cancellation. A panic fails the task with
    /// [`TaskError::Panicked`]. Tokio's timers work inside (each worker thread has a Tokio
    /// runtime); to start actix actors from the task, use
    /// [`async_workers_on_arbiters`](crate::PoolBuilder::async_workers_on_arbiters). Process pools
    /// refuse async tasks (they run only [jobs](crate::Job)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use circuits::prelude::*;
    ///
    /// # #[actix::main] async fn main() -> Result<(), RunError> {
    /// let pool = Pool::builder().min(2).async_workers(64).start();
    /// let n = pool
    ///     .run(Task::future(async {
    ///         tokio::time::sleep(Duration::from_millis(10)).await; // an HTTP call, a query...
    ///         42
    ///     }))
    ///     .await?;
    /// assert_eq!(n, 42);
    /// pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn future<F>(fut: F) -> Self
    where
        F: Future<Output = R> + Send + 'static,
    {
        Self::from_work(Work::Async(Box::new(Fut::Ready(Box::pin(fut.map(Ok))))))
    }

    /// An async task that may fail: `Err(e)` fails it with [`TaskError::Failed`] carrying `e`'s
    /// message (as [`Task::fallible`] does for closures). See [`Task::future`].
    pub fn try_future<F, E>(fut: F) -> Self
    where
        F: Future<Output = Result<R, E>> + Send + 'static,
        E: fmt::Display,
    {
        let fut = fut.map(|r| r.map_err(|e| TaskError::Failed(e.to_string())));
        Self::from_work(Work::Async(Box::new(Fut::Ready(Box::pin(fut)))))
    }

    /// An async task whose future is not `Send` (it holds an `Rc`, a `RefCell` borrow across an
    /// await, an actix address of a local actor...): `make` runs on the worker's thread and builds
    /// it there, where it stays. See [`Task::future`].
    ///
    /// ```
    /// use std::rc::Rc;
    /// use circuits::prelude::*;
    ///
    /// # #[actix::main] async fn main() -> Result<(), RunError> {
    /// let pool = Pool::builder().min(1).async_workers(8).start();
    /// let n = pool
    ///     .run(Task::future_local(|| async {
    ///         let shared = Rc::new(20); // not Send
    ///         tokio::task::yield_now().await;
    ///         *shared + 22
    ///     }))
    ///     .await?;
    /// assert_eq!(n, 42);
    /// pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn future_local<M, F>(make: M) -> Self
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = R> + 'static,
    {
        let make: Maker<R> = Box::new(move || Box::pin(make().map(Ok)));
        Self::from_work(Work::Async(Box::new(Fut::Make(make))))
    }

    /// The task and a [`Cancel`] handle that ends it (see [`Cancel`] for what cancelling does to
    /// a queued task, a running future, a job in a child process, a blocking closure).
    ///
    /// ```
    /// use circuits::prelude::*;
    ///
    /// # #[actix::main] async fn main() -> Result<(), circuits::Error> {
    /// let pool = Pool::builder().min(1).start();
    /// let (task, cancel) = Task::new(|| 1).cancellable();
    /// cancel.cancel(); // before it is pushed: it is cancelled as soon as it is
    /// assert_eq!(pool.push(task)?.await, Err(TaskError::Cancelled));
    /// pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn cancellable(mut self) -> (Self, Cancel) {
        let cancel = self.cancel.get_or_insert_with(Cancel::default).clone();
        (self, cancel)
    }
}

/// What [`drive`] needs of an async task's queue entry.
pub(crate) struct Parts<R> {
    pub(crate) id: TaskId,
    pub(crate) attempt: u32,
    pub(crate) promise: Promise<Result<R, TaskError>>,
    pub(crate) fut: Fut<R>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) permit: Option<Permit>,
    pub(crate) cancel: Option<Cancel>,
    /// The load counter it was counted on, decremented as it ends (before its value resolves, so
    /// whoever awaited the value finds the worker's load without it).
    pub(crate) load: Option<Arc<std::sync::atomic::AtomicUsize>>,
}

/// Runs an async task to its end on this thread and settles it: its future is built here, polled
/// under `catch_unwind`, and dropped at its timeout, on a cancel, or when the worker drops this
/// future (an abort). While it runs it is in `registry`, where an abort fails it at once.
pub(crate) fn drive<R: TaskOutput>(
    parts: Parts<R>,
    fin: Arc<Finisher>,
    registry: Arc<dyn Registry>,
) -> LocalBoxFuture<'static, ()> {
    let Parts {
        id,
        attempt,
        promise,
        fut,
        timeout,
        permit,
        cancel,
        load,
    } = parts;
    let ended = move || leave(&load);
    if !promise.is_pending() {
        ended();
        return Box::pin(std::future::ready(())); // cancelled while queued
    }
    // Registered now, not at its first poll: a worker whose thread a sibling future holds fails
    // this one too.
    let started = fin.counters.tracks_latency().then(std::time::Instant::now);
    let entered = registry.enter(Running {
        id,
        since: started,
        attempt,
        slot: promise.fail_slot(),
        permit: permit.clone(),
    });
    if let Err(error) = entered {
        // Its worker was aborted (or found stuck) as it started: it fails as the others did.
        ended();
        fin.settle((id, attempt), &promise, Err(error), permit.as_ref());
        return Box::pin(std::future::ready(()));
    }
    Box::pin(async move {
        let work = AssertUnwindSafe(async move { fut.start().await }).catch_unwind();
        // Only a cancellable task pays for the abort handle its cancel drops the future with.
        let outcome = match &cancel {
            Some(c) => {
                let (abort, reg) = AbortHandle::new_pair();
                c.cell().on_stop(Box::new(move || abort.abort()));
                let work = Abortable::new(work, reg);
                // Aborted: the cancel settled it already.
                within(timeout, async {
                    work.await.unwrap_or(Ok(Err(TaskError::Cancelled)))
                })
                .await
            }
            None => within(timeout, work).await,
        };
        let result = match outcome {
            Ok(result) => result,
            Err(panic) => Err(TaskError::Panicked(panic_message(&*panic))),
        };
        if let Some(c) = &cancel {
            c.cell().ran();
        }
        registry.leave(id);
        if let Some(t) = started {
            fin.counters.latency(t.elapsed());
        }
        ended();
        fin.settle((id, attempt), &promise, result, permit.as_ref());
    })
}

/// Takes a task that ends off the load counter it was counted on, if it was given one.
pub(crate) fn leave(load: &Option<Arc<std::sync::atomic::AtomicUsize>>) {
    if let Some(l) = load {
        l.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `work` with its timeout, if it has one: past it, the future is dropped and the task fails
/// `TimedOut`.
async fn within<R, P>(
    limit: Option<Duration>,
    work: impl Future<Output = Result<Result<R, TaskError>, P>>,
) -> Result<Result<R, TaskError>, P> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .unwrap_or(Ok(Err(TaskError::TimedOut(limit)))),
        None => work.await,
    }
}

thread_local! {
    /// A thread worker's runtime for the async tasks it is given (one at a time), built when the
    /// first one comes.
    static RUNTIME: std::cell::OnceCell<tokio::runtime::Runtime> = const { std::cell::OnceCell::new() };
}

/// Runs `f` to its end on this (non-async) thread, in its own current-thread Tokio runtime.
pub(crate) fn block_on_here<F: Future>(f: F) -> F::Output {
    RUNTIME.with(|rt| {
        rt.get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("a current-thread runtime builds")
        })
        .block_on(f)
    })
}
