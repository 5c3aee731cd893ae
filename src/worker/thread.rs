//! Thread mode: one dedicated OS thread per worker, fed by a lock-free queue.
//!
//! The pool pushes tasks straight onto the worker's crossbeam channel (no actor mailbox on the hot
//! path); the thread runs them in order, catching panics, and settles each task's value.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

use super::{Backend, Shutdown};
use crate::task::{ErasedTask, Finisher, TaskError};
use crate::value::{promise, Value};

enum Msg {
    Run(Box<dyn ErasedTask>),
    Stop,
}

/// A worker thread and its queue.
pub(crate) struct ThreadWorker {
    tx: Sender<Msg>,
    abort: Arc<AtomicBool>,
    done: Mutex<Option<Value<(), TaskError>>>,
}

impl ThreadWorker {
    /// Starts the thread. `load` is decremented as each task ends.
    pub(crate) fn spawn(fin: Arc<Finisher>, load: Arc<AtomicUsize>) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let abort = Arc::new(AtomicBool::new(false));
        let (exit, done) = promise::<(), TaskError>();
        let flag = abort.clone();
        std::thread::Builder::new()
            .name(format!(
                "circuits-worker-{}",
                &fin.worker.as_str()[..8.min(fin.worker.as_str().len())]
            ))
            .spawn(move || {
                serve(&rx, &fin, &load, &flag);
                exit.complete(Ok(()));
            })?;
        Ok(ThreadWorker {
            tx,
            abort,
            done: Mutex::new(Some(done)),
        })
    }
}

fn serve(rx: &Receiver<Msg>, fin: &Arc<Finisher>, load: &AtomicUsize, abort: &AtomicBool) {
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Run(task) => {
                if abort.load(Ordering::Acquire) {
                    task.fail(TaskError::Cancelled, fin);
                } else {
                    task.run(fin);
                }
                load.fetch_sub(1, Ordering::Relaxed);
            }
            Msg::Stop => break,
        }
    }
    // The pool's stop protocol queues nothing after Stop; should anything still be there, it gets
    // an outcome rather than vanishing.
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Run(task) = msg {
            task.fail(TaskError::Cancelled, fin);
            load.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Backend for ThreadWorker {
    fn submit(&self, task: Box<dyn ErasedTask>) -> Result<(), Box<dyn ErasedTask>> {
        self.tx.send(Msg::Run(task)).map_err(|e| match e.0 {
            Msg::Run(t) => t,
            // Only Run is sent here, so only Run comes back.
            Msg::Stop => unreachable!("submit sends only Run"),
        })
    }

    fn shutdown(&self, how: Shutdown) {
        if how != Shutdown::Drain {
            self.abort.store(true, Ordering::Release);
        }
        // A send error means the thread is gone already, which is what we want.
        let _ = self.tx.send(Msg::Stop);
    }

    fn finished(&self) -> Value<(), TaskError> {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        match done.take() {
            Some(v) => v,
            // Asked twice: the first caller holds the real signal.
            None => Value::ready(Ok(())),
        }
    }
}
