//! Cancelling one task: [`Cancel`], the handle a [cancellable](crate::Task::cancellable) task
//! comes with, and the cell it shares with whoever holds the task (the worker's queue, the
//! future running it, the process host that sent it).

use std::sync::{Arc, Mutex};

/// Cancels one task: [`Task::cancellable`](crate::Task::cancellable) gives it beside the task.
///
/// [`cancel`](Self::cancel) ends the task with [`TaskError::Cancelled`](crate::TaskError::Cancelled)
/// at once, with its one `TaskFailure` and `TaskComplete`, and stops its work where that is
/// possible:
///
/// | the task is | what cancelling does |
/// | --- | --- |
/// | queued (or waiting for a retry) | it fails now and never runs (its queue entry is dropped when a worker reaches it) |
/// | an async task, running | its future is dropped: real cancellation |
/// | a job running in a child process | the child is killed and replaced (the price of stopping it; jobs queued behind it run on the new child) |
/// | a blocking closure, running | a thread cannot be interrupted: the value resolves `Cancelled` now, the closure runs to its end and its result is discarded |
/// | already settled | nothing (`cancel` returns `false`) |
///
/// Cancelling before the task is pushed cancels it as soon as it is. The handle is cheap to
/// clone and may be used from any thread; [`guard`](Self::guard) cancels when dropped, for work
/// that should end with whoever asked for it (an HTTP request whose client went away).
///
/// ```
/// use circuits::prelude::*;
///
/// # #[actix::main] async fn main() -> Result<(), circuits::Error> {
/// let pool = Pool::builder().min(1).async_workers(16).start();
/// let (task, cancel) = Task::future(async {
///     tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
///     1
/// })
/// .cancellable();
/// let value = pool.push(task)?;
/// assert!(cancel.cancel()); // the sleeping future is dropped
/// assert_eq!(value.await, Err(TaskError::Cancelled));
/// assert!(!cancel.cancel()); // already ended
/// pool.stop().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Cancel(Arc<CancelCell>);

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// What the handle and the task's holders share.
#[derive(Default)]
pub(crate) struct CancelCell {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    cancelled: bool,
    /// Settles the task `Cancelled` with its events; `true` if that ended it. Set (again) each time
    /// the task is queued on a worker.
    settle: Option<Box<dyn FnOnce() -> bool + Send>>,
    /// Stops the work running now (drops a future, kills a child); set while it runs.
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl Cancel {
    /// Cancels the task (see [`Cancel`]): `true` if it was still unsettled and is now cancelled
    /// (or will be as soon as it is pushed), `false` if it had ended already or was cancelled
    /// before.
    pub fn cancel(&self) -> bool {
        let (ended, stop) = {
            let mut st = self.0.lock();
            if st.cancelled {
                return false;
            }
            st.cancelled = true;
            // Settled first, and under the lock: whoever awaits the value sees `Cancelled`, not
            // what the stopped work leaves behind (a killed child reads as a crash), and work
            // that starts meanwhile sees `cancelled` (in `on_stop`, which stops it at once) only
            // once the value is settled. (Settled after the lock, a future starting in between
            // was aborted and settled `Cancelled` by its worker first, and `cancel` said
            // `false`: the `Cancel` example failed so once in CI.)
            let ended = st.settle.take().is_none_or(|settle| settle());
            (ended, st.stop.take())
        };
        if let Some(stop) = stop {
            stop();
        }
        ended
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.lock().cancelled
    }

    /// A guard that cancels the task when it is dropped (unless the task ended before, which
    /// makes the cancel a no-op): tie it to whatever the work is for.
    pub fn guard(&self) -> CancelGuard {
        CancelGuard(self.clone())
    }

    pub(crate) fn cell(&self) -> &CancelCell {
        &self.0
    }
}

/// Cancels its task when dropped: see [`Cancel::guard`].
#[derive(Debug)]
#[must_use = "the guard cancels its task when dropped: bind it to a variable that lives as long as the work is wanted"]
pub struct CancelGuard(Cancel);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl CancelCell {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How to settle the task `Cancelled` now that it is queued (replacing an earlier way, from
    /// an earlier worker or attempt). Already cancelled: settles it at once.
    pub(crate) fn arm(&self, settle: Box<dyn FnOnce() -> bool + Send>) {
        let mut st = self.lock();
        if st.cancelled {
            drop(st);
            settle();
        } else {
            st.settle = Some(settle);
        }
    }

    /// How to stop the work while it runs. Already cancelled: stops it at once.
    pub(crate) fn on_stop(&self, stop: Box<dyn FnOnce() + Send>) {
        let mut st = self.lock();
        if st.cancelled {
            drop(st);
            stop();
        } else {
            st.stop = Some(stop);
        }
    }

    /// The work stopped running (it ended, or it failed over to a retry): nothing to stop.
    pub(crate) fn ran(&self) {
        self.lock().stop = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Barrier};

    use super::Cancel;

    #[test]
    fn work_stopped_by_a_cancel_finds_its_task_settled_already() {
        // A cancel racing the start of the task's work: whenever the work sees the cancel (its
        // stop runs), the cancel's settling has happened, and the cancel says it ended the task.
        for _ in 0..500 {
            let cancel = Cancel::default();
            let settled = Arc::new(AtomicBool::new(false));
            let s = settled.clone();
            cancel.cell().arm(Box::new(move || {
                // Settling takes a while (it fires events): long enough for the work to start.
                std::thread::sleep(std::time::Duration::from_micros(20));
                s.store(true, Ordering::SeqCst);
                true
            }));
            let go = Arc::new(Barrier::new(2));
            let (cell, g, s) = (cancel.clone(), go.clone(), settled.clone());
            let worker = std::thread::spawn(move || {
                g.wait();
                let stopped_unsettled = Arc::new(AtomicBool::new(false));
                let bad = stopped_unsettled.clone();
                cell.cell().on_stop(Box::new(move || {
                    bad.store(!s.load(Ordering::SeqCst), Ordering::SeqCst);
                }));
                stopped_unsettled.load(Ordering::SeqCst)
            });
            go.wait();
            assert!(cancel.cancel());
            assert!(
                !worker.join().unwrap(),
                "the work was stopped before its task was settled"
            );
            assert!(settled.load(Ordering::SeqCst));
        }
    }
}
