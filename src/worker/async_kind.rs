//! [`AsyncKind`]: the kind of worker an async pool makes (see `async_worker` for the workers).

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use super::async_worker::{AsyncWorker, Siblings};
use super::Backend;
use crate::task::{ErasedTask, Finisher, Refusal};

/// Async workers: each one thread (or arbiter) running up to `in_flight` tasks at once.
#[derive(Default)]
pub(crate) struct AsyncKind {
    in_flight: usize,
    arbiters: bool,
    siblings: Siblings,
}

impl AsyncKind {
    pub(crate) fn new(in_flight: usize, arbiters: bool) -> Self {
        AsyncKind {
            in_flight: in_flight.max(1),
            arbiters,
            siblings: Siblings::default(),
        }
    }
}

impl std::fmt::Debug for AsyncKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Async")
            .field("in_flight", &self.in_flight)
            .field("arbiters", &self.arbiters)
            .finish()
    }
}

impl super::Kind for AsyncKind {
    fn refuse_start(&self) -> Option<super::StartRefused> {
        None
    }
    fn spawn(
        &self,
        fin: Arc<Finisher>,
        load: Arc<AtomicUsize>,
    ) -> std::io::Result<Box<dyn Backend>> {
        Ok(Box::new(AsyncWorker::spawn(
            fin,
            load,
            (self.in_flight, self.arbiters, &self.siblings),
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
