//! [`ThreadKind`]: the kind of worker a thread pool makes (see `thread` for the workers).

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use super::crew::Siblings;
use super::restart::Restart;
use super::thread::{Start, ThreadWorker};
use super::Backend;
use crate::state::Setups;
use crate::task::{ErasedTask, Finisher, Refusal};

/// Thread workers: each one a dedicated OS thread; the pool's workers steal from each other.
#[derive(Default)]
pub(crate) struct ThreadKind {
    siblings: Siblings,
    start: Start,
}

impl ThreadKind {
    /// Thread workers that set up `setups` when they start, under the restart policy `restart`.
    pub(crate) fn new(setups: Setups, restart: Restart) -> Self {
        ThreadKind {
            siblings: Siblings::default(),
            start: Start { setups, restart },
        }
    }
}

impl std::fmt::Debug for ThreadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Thread")
    }
}

impl super::Kind for ThreadKind {
    fn refuse_start(&self) -> Option<super::StartRefused> {
        None
    }
    fn spawn(
        &self,
        fin: Arc<Finisher>,
        load: Arc<AtomicUsize>,
    ) -> std::io::Result<Box<dyn Backend>> {
        Ok(Box::new(ThreadWorker::spawn(
            fin,
            load,
            self.siblings.clone(),
            self.start.clone(),
        )?))
    }
    fn check(&self, _: &dyn ErasedTask) -> Result<(), Refusal> {
        Ok(())
    }
    fn payload_budget(&self, _: &str) -> Option<usize> {
        None
    }
    fn runs_closures(&self) -> bool {
        true
    }

    fn stuck_is_timeout(&self) -> bool {
        false
    }
}
