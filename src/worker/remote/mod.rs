//! Remote mode (feature `nats`), the submitting side: workers whose jobs run on other machines'
//! worker hosts, through a NATS JetStream server.
//!
//! Each worker of a remote pool is a [`Backend`] in front of the pool's one [`link::Link`]: a
//! submit publishes the task's job on the work stream at once (nothing waits in the worker), and
//! the task is pending until its answer comes back on the pool's results subject, its deliveries
//! run out, its timeout passes, or it is cancelled. Its load is its pending count, so the pool's
//! strategies, queue bound and stop work as for local workers. The host's side is
//! [`host`](crate::host), above the pool layer (it runs a local process pool).
//!
//! Files: `config` ([`NatsConfig`]), `broker` (connecting, the streams and the hosts' consumer),
//! `wire` (the request and answer messages), `link` (the connection's thread), `pending` (the
//! table of unsettled tasks), `publish` (a job out, its timeout), `answers` (answers in, and the
//! exhausted jobs, the server's advisories kept in a stream), `durable` (reading a durable
//! consumer, as hosts do too).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Awaits a future from a box of its own, so that the awaiting task holds a pointer, not the
/// future: async-nats's futures are half a kilobyte to a kilobyte each, and a task that holds
/// them is over the kilobyte from which glibc's `malloc` takes its large-chunk path (see
/// `host::run`). The box is bound to a name in a statement of its own: `Box::pin(f()).await`
/// keeps `f()`'s future, moved out or not, in the awaiting task until the statement ends
/// (measured with `size_of_val`: a host's job task 1,592 bytes that way, 552 this way).
macro_rules! await_boxed {
    ($future:expr) => {{
        let boxed = Box::pin($future);
        boxed.await
    }};
}
pub(crate) use await_boxed;

use super::{Backend, Shutdown};
use crate::task::{ErasedTask, Finisher, Refusal, TaskError};
use crate::value::Value;

mod answers;
pub(crate) mod broker;
pub(crate) mod config;
pub(crate) mod durable;
mod link;
mod pending;
mod publish;
mod ready;
pub(crate) mod wire;

pub use config::NatsConfig;

/// The biggest message a job may be, whole: the server's default `max_payload` (1 MiB), less room
/// for the request's other fields.
const MAX_MESSAGE: usize = 1024 * 1024 - 512;

/// Remote workers: a pool's jobs run on worker hosts reached through a NATS server.
#[derive(Debug)]
pub(crate) struct RemoteKind {
    config: NatsConfig,
    /// The pool's id on the broker (results come back on a subject named after it).
    pool: String,
    link: Mutex<Option<Arc<link::Link>>>,
}

impl RemoteKind {
    pub(crate) fn new(config: NatsConfig) -> Self {
        RemoteKind {
            config,
            pool: uuid::Uuid::new_v4().simple().to_string(),
            link: Mutex::new(None),
        }
    }

    /// The pool's link, started with its first worker.
    fn link(&self) -> std::io::Result<Arc<link::Link>> {
        let mut link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = &*link {
            return Ok(l.clone());
        }
        let l = link::Link::start(self.pool.clone(), self.config.clone())?;
        *link = Some(l.clone());
        Ok(l)
    }
}

impl std::fmt::Debug for link::Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Link")
    }
}

impl super::Kind for RemoteKind {
    fn refuse_start(&self) -> Option<super::StartRefused> {
        None
    }

    fn spawn(
        &self,
        fin: Arc<Finisher>,
        load: Arc<AtomicUsize>,
    ) -> std::io::Result<Box<dyn Backend>> {
        Ok(Box::new(RemoteWorker {
            link: self.link()?,
            owner: pending::Owner::new(fin, load),
        }))
    }

    fn check(&self, task: &dyn ErasedTask) -> Result<(), Refusal> {
        match task.job() {
            Some(_) => Ok(()),
            None => Err(Refusal::ClosureInProcessPool),
        }
    }

    fn payload_budget(&self, job_name: &str) -> Option<usize> {
        Some(MAX_MESSAGE.saturating_sub(64 + job_name.len()))
    }

    fn runs_closures(&self) -> bool {
        false
    }

    fn stuck_is_timeout(&self) -> bool {
        true
    }
}

/// One worker of a remote pool.
struct RemoteWorker {
    link: Arc<link::Link>,
    owner: Arc<pending::Owner>,
}

impl Backend for RemoteWorker {
    fn submit(&self, task: Box<dyn ErasedTask>, _pinned: bool) -> Result<(), Box<dyn ErasedTask>> {
        if self.owner.stopping.load(Ordering::Acquire) {
            return Err(task);
        }
        self.link.submit(task, &self.owner)
    }

    fn shutdown(&self, how: Shutdown) {
        self.owner.stopping.store(true, Ordering::Release);
        if how == Shutdown::Abort {
            self.link.abort(&self.owner);
        }
        self.owner.maybe_done();
    }

    fn finished(&self) -> Value<(), TaskError> {
        let mut done = self
            .owner
            .done_value
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        done.take().unwrap_or_else(|| Value::ready(Ok(())))
    }

    fn retire(&self) -> Vec<Box<dyn ErasedTask>> {
        // Nothing waits here (every task was published); the worker ends with its last answer.
        self.owner.stopping.store(true, Ordering::Release);
        self.owner.maybe_done();
        Vec::new()
    }

    fn running(&self) -> usize {
        self.owner.running.load(Ordering::Acquire)
    }

    fn probe(&self) -> super::info::Probe {
        super::info::Probe {
            mode: super::info::WorkerMode::Remote,
            pid: None,
            state: None,
            // Its jobs are out on the broker or on hosts; which one runs is not known here.
            running: self.running(),
            task: None,
        }
    }
}
