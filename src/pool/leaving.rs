//! Workers that left a pool (retired by a resize, or lost) and may still be running a task. The
//! pool keeps them until they have ended, so that a stop waits for them as for its own workers, and
//! an abort cancels their tasks too.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::task::TaskError;
use crate::value::Value;
use crate::worker::{Shutdown, WorkerSlot};

/// One worker that left the pool.
struct Leaving {
    slot: Arc<WorkerSlot>,
    /// Resolves when it has ended; taken by the stop that waits for it.
    finished: Option<Value<(), TaskError>>,
    /// Found stuck (a task ran past `stuck_after`): a draining stop does not wait for it (its task
    /// may never end); an abort settles it.
    lost: bool,
}

/// The workers that left a pool and have not ended yet (see the module's documentation).
#[derive(Default)]
pub(crate) struct LeavingWorkers(Mutex<Vec<Leaving>>);

impl LeavingWorkers {
    fn lock(&self) -> MutexGuard<'_, Vec<Leaving>> {
        // Every critical section is a plain update of the list: a poisoned lock still holds it.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `slot`, which just left the pool, until it has ended; forgets those that have (so a
    /// pool that resizes for months keeps only the few still finishing a task).
    pub(crate) fn add(&self, slot: &Arc<WorkerSlot>, lost: bool) {
        let finished = slot.backend.finished();
        let mut leaving = self.lock();
        leaving.retain(|l| l.finished.as_ref().is_some_and(|f| !f.is_ready()));
        leaving.push(Leaving {
            slot: slot.clone(),
            finished: Some(finished),
            lost,
        });
    }

    /// `slot`, if it already left the pool, ran a task past `stuck_after`: a draining stop must
    /// not wait for it.
    pub(crate) fn mark_lost(&self, slot: &Arc<WorkerSlot>) {
        if let Some(l) = self.lock().iter_mut().find(|l| Arc::ptr_eq(&l.slot, slot)) {
            l.lost = true;
        }
    }

    /// Aborts them (an aborting stop): their tasks are cancelled.
    pub(crate) fn abort(&self) {
        for l in self.lock().iter() {
            l.slot.backend.shutdown(Shutdown::Abort);
        }
    }

    /// Waits until they have ended: every one after an abort, all but the lost ones after a
    /// drain. Then forgets them.
    pub(crate) async fn wait(&self, how: Shutdown) {
        let waits: Vec<_> = self
            .lock()
            .iter_mut()
            .filter(|l| how == Shutdown::Abort || !l.lost)
            .filter_map(|l| l.finished.take())
            .collect();
        for finished in waits {
            let _ = finished.await;
        }
        self.lock().clear();
    }
}
