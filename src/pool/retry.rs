//! Retries on the pool's side: a worker hands a failed task back through its finisher's hook
//! ([`install`]); the pool waits out the back-off, then queues the task again, keeping its id.
//! A stop that begins meanwhile ends the retries (the task fails with its last error, or
//! `Cancelled` on an abort), and waits for each such task to be settled.

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::{select, Either};

use super::core::PoolCore;
use crate::task::{ErasedTask, Finisher, RetryHook, TaskError};
use crate::worker::WorkerSlot;

/// Gives a new worker's finisher the pool's retry hook (before the worker takes any task).
pub(crate) fn install(core: &Arc<PoolCore>, slot: &Arc<WorkerSlot>, fin: &Finisher) {
    let (pool, from) = (Arc::downgrade(core), Arc::downgrade(slot));
    let requeue = move |task: Box<dyn Any + Send>, delay: Duration, error: TaskError| {
        let Ok(task) = task.downcast::<Box<dyn ErasedTask>>() else {
            unreachable!("a retry hands back a queue entry");
        };
        match pool.upgrade() {
            Some(core) => core.retry_later(*task, delay, error, from.clone()),
            // The pool is gone: nothing can run it again.
            None => task.reject(error),
        }
    };
    let _ = fin.retry.set(Arc::new(RetryHook {
        default: core.retry.clone(),
        requeue: Arc::new(requeue),
    }));
}

impl PoolCore {
    /// Counts a task waiting out a retry's back-off in or out (see [`park`](Self::park)).
    pub(crate) fn park_retry(&self, waiting: bool) {
        self.park(waiting);
        if waiting {
            self.retrying.fetch_add(1, Ordering::SeqCst);
        } else {
            self.retrying.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Tasks waiting out a retry's back-off.
    pub(crate) fn retrying(&self) -> u64 {
        self.retrying.load(Ordering::SeqCst)
    }

    /// Queues `task` again after `delay`, on the worker it was bound to (if it was, and that
    /// worker is still in the pool) or on one the strategy picks. `error` ended its last attempt:
    /// the task fails with it if a stop begins first.
    fn retry_later(
        self: &Arc<Self>,
        task: Box<dyn ErasedTask>,
        delay: Duration,
        error: TaskError,
        from: Weak<WorkerSlot>,
    ) {
        // Counted before the state is read: a stop that begins after this read waits for it.
        self.park_retry(true);
        if self.is_stopped() {
            self.end_retries(task, error, &from);
            return self.park_retry(false);
        }
        let core = self.clone();
        let mut stopping = self.stopping_signal();
        self.bus.spawn(async move {
            let stop = std::pin::pin!(stopping.wait_for(|s| *s));
            let wait = std::pin::pin!(tokio::time::sleep(delay));
            let due = matches!(select(wait, stop).await, Either::Left(_));
            if due && !core.is_stopped() {
                core.queue_again(task, &from);
            } else {
                core.end_retries(task, error, &from);
            }
            core.park_retry(false);
        });
    }

    /// Queues a retried task: where it was bound, else where the strategy says.
    /// Counted as a push: a worker that retires meanwhile waits for the task to be queued and
    /// moves it with the rest of its queue.
    fn queue_again(&self, mut task: Box<dyn ErasedTask>, from: &Weak<WorkerSlot>) {
        task.next_attempt();
        self.as_push(|| {
            let home = from
                .upgrade()
                .filter(|s| task.pinned() && !s.retired.load(std::sync::atomic::Ordering::SeqCst));
            match home {
                Some(slot) => self.enqueue_or_resubmit(&slot, task, true),
                None => {
                    let fallback = self.fallback_fin(from);
                    match fallback {
                        Some(fin) => self.resubmit(task, &fin),
                        None => task.reject(TaskError::Cancelled),
                    }
                }
            }
        });
    }

    /// Fails a task whose retries a stop ended: with its last error, or `Cancelled` on an abort.
    fn end_retries(&self, task: Box<dyn ErasedTask>, error: TaskError, from: &Weak<WorkerSlot>) {
        let error = if self.is_aborting() {
            TaskError::Cancelled
        } else {
            error
        };
        match self.fallback_fin(from) {
            Some(fin) => task.fail_final(error, &fin),
            None => task.reject(error),
        }
    }

    /// The finisher of the worker a task last ran on, or of any worker left.
    fn fallback_fin(&self, from: &Weak<WorkerSlot>) -> Option<Arc<Finisher>> {
        from.upgrade()
            .map(|s| s.fin())
            .or_else(|| self.workers().first().map(|w| w.fin()))
    }
}
