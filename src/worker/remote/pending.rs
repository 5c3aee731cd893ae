//! The pending table a remote pool's link keeps: each task published and not settled, who it
//! belongs to, and its place in the work stream. "First outcome wins" is this table: whoever takes
//! a task out of it settles the task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::config::NatsConfig;
use crate::task::{ErasedTask, Finisher, TaskError};
use crate::value::{promise, Promise, Value};

/// One worker of a remote pool, as the link sees it: where its tasks settle and are counted.
pub(crate) struct Owner {
    pub(crate) fin: Arc<Finisher>,
    pub(crate) load: Arc<AtomicUsize>,
    /// Its tasks published and not settled.
    pub(crate) running: AtomicUsize,
    /// Set by a stop or a retire: no more tasks, and `done` resolves once `running` is 0.
    pub(crate) stopping: AtomicBool,
    pub(crate) done: Promise<Result<(), TaskError>>,
    pub(crate) done_value: Mutex<Option<Value<(), TaskError>>>,
}

impl Owner {
    pub(crate) fn new(fin: Arc<Finisher>, load: Arc<AtomicUsize>) -> Arc<Self> {
        let (done, value) = promise();
        Arc::new(Owner {
            fin,
            load,
            running: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            done,
            done_value: Mutex::new(Some(value)),
        })
    }

    /// One of its tasks ended (settled, or never published).
    pub(super) fn ended(&self) {
        self.load.fetch_sub(1, Ordering::Relaxed);
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.maybe_done();
        }
    }

    pub(crate) fn maybe_done(&self) {
        if self.stopping.load(Ordering::Acquire) && self.running.load(Ordering::Acquire) == 0 {
            self.done.complete(Ok(()));
        }
    }
}

/// A task published (or being published) and not settled.
pub(super) struct Entry {
    pub(super) task: Box<dyn ErasedTask>,
    pub(super) owner: Arc<Owner>,
    pub(super) attempt: u32,
    /// Its sequence number in the work stream, once the server confirmed it.
    pub(super) seq: Option<u64>,
}

#[derive(Default)]
pub(super) struct Pending {
    pub(super) by_id: HashMap<u64, Entry>,
    pub(super) by_seq: HashMap<u64, u64>,
}

impl Pending {
    /// Takes a task out of the table, and its sequence number with it.
    pub(super) fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.by_id.remove(&id)?;
        if let Some(seq) = entry.seq {
            self.by_seq.remove(&seq);
        }
        Some(entry)
    }
}

/// What the pool's side and the link's thread share.
pub(super) struct Shared {
    pub(super) pool: String,
    pub(super) cfg: NatsConfig,
    pub(super) pending: Mutex<Pending>,
    /// Ticks as the pool reads each answer from the results stream: an advisory of a job whose
    /// deliveries ran out waits for the answers kept before it (see `answers_first`).
    pub(super) answered: tokio::sync::watch::Sender<()>,
}

impl Shared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a task out of the pending table (its one outcome is being decided by the caller).
    pub(super) fn take(&self, id: u64) -> Option<Entry> {
        self.lock().remove(id)
    }

    /// [`take`](Self::take), only while the task is at `attempt`: an answer, a timeout or a
    /// publish of an earlier attempt must not end the task's next one.
    pub(super) fn take_attempt(&self, id: u64, attempt: u32) -> Option<Entry> {
        let mut p = self.lock();
        if p.by_id.get(&id)?.attempt != attempt {
            return None;
        }
        p.remove(id)
    }

    /// Fails a task taken out of the table (a retry policy may send it round again).
    pub(super) fn fail(entry: Entry, error: TaskError) {
        let Entry { task, owner, .. } = entry;
        owner.ended();
        task.fail(error, &owner.fin);
    }
}
