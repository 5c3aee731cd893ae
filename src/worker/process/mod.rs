//! Process mode, the parent's side: one child process per worker, behind the same [`Backend`]
//! interface as a thread.
//!
//! Each worker has one host thread that owns the worker's queue and its child. With the
//! shared-memory rings, the hot path skips it: a pusher that finds the host's state free (and no
//! task of its own still on the way to the host thread) queues its job there and sends it to the
//! child itself, and the reader, having settled answers, sends what waits. Neither ever starts a
//! child or waits for ring space; what they cannot do they leave to the host thread, which also
//! watches timeouts and memory and starts and ends children. The answer to a quick job sent to an
//! idle child often skips the reader too: the awaiting thread reads it (see `answers`).
//!
//! The parent keeps the queue: it sends up to [`ProcessConfig::pipeline`] jobs ahead to the child
//! (batched in one write) and knows which one the child is running — the first one without an
//! answer, because the child writes each answer before it starts the next job. So when the child
//! dies, exactly that task fails with [`TaskError::WorkerCrashed`]; the jobs sent after it never
//! started and go to the replacement child, which starts at once under a fresh channel, from the
//! same host thread and read by the same reader thread (a worker whose children keep crashing
//! starts no new threads). A per-task timeout kills the child (SIGTERM, then SIGKILL after a grace
//! period): real cancellation.
//!
//! Files: [`config`] (settings, on every platform), `host` (the worker's backend, which starts the
//! host thread), `state` (what the host holds), `serve` (the host's loop: queue and pipeline, and
//! the relay from other threads), `carrier` (the rings or the pipes to one child),
//! `life` (a child's start, end and replacement, through the restart policy), `limits` (a child's
//! resource limits: telling a limit's kill from a crash, watching its memory), `shared` (what the
//! host and the reader share), `reader` (the reader threads, kept across children, and a child's
//! output, watched through its pidfd), `answers` (the ring's answers, which the thread awaiting a
//! job sent to an idle child reads itself), `reap` (ending a child and its process group). Process
//! mode needs Linux and the `process` feature (on by default); elsewhere a process pool fails to
//! start with [`PoolError::Unsupported`](crate::PoolError::Unsupported).

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use super::Backend;
use crate::task::{ErasedTask, Finisher};

#[cfg(all(feature = "process", target_os = "linux"))]
mod answers;
#[cfg(all(feature = "process", target_os = "linux"))]
mod carrier;
pub(crate) mod config;
#[cfg(all(feature = "process", target_os = "linux"))]
mod host;
#[cfg(all(feature = "process", target_os = "linux"))]
mod life;
#[cfg(all(feature = "process", target_os = "linux"))]
mod limits;
#[cfg(all(feature = "process", target_os = "linux"))]
mod reader;
#[cfg(all(feature = "process", target_os = "linux"))]
mod reap;
#[cfg(all(feature = "process", target_os = "linux"))]
mod serve;
#[cfg(all(feature = "process", target_os = "linux"))]
mod shared;
#[cfg(all(feature = "process", target_os = "linux"))]
mod state;

pub use config::ProcessConfig;

/// Whether this build can run process workers.
pub(crate) const SUPPORTED: bool = cfg!(all(feature = "process", target_os = "linux"));

/// Process workers: each one a child process of this binary, running [`Job`](crate::Job)s.
#[derive(Debug)]
pub(crate) struct ProcessKind(pub(crate) ProcessConfig);

impl super::Kind for ProcessKind {
    fn refuse_start(&self) -> Option<super::StartRefused> {
        if !SUPPORTED {
            return Some(super::StartRefused::Unsupported);
        }
        // A worker process that got past `init` would start workers of its own, and so on.
        std::env::var_os(super::child::WORKER_ENV)
            .is_some()
            .then_some(super::StartRefused::NotInitialized)
    }

    fn spawn(
        &self,
        fin: Arc<Finisher>,
        load: Arc<AtomicUsize>,
    ) -> std::io::Result<Box<dyn Backend>> {
        #[cfg(all(feature = "process", target_os = "linux"))]
        {
            Ok(Box::new(host::ProcessWorker::spawn(
                self.0.clone(),
                fin,
                load,
            )?))
        }
        #[cfg(not(all(feature = "process", target_os = "linux")))]
        {
            let _ = (fin, load);
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "process mode needs Linux and the `process` feature",
            ))
        }
    }

    fn check(&self, task: &dyn ErasedTask) -> Result<(), crate::task::Refusal> {
        match task.job() {
            Some(_) => Ok(()),
            None => Err(crate::task::Refusal::ClosureInProcessPool),
        }
    }

    fn payload_budget(&self, job_name: &str) -> Option<usize> {
        // A chunk frame's bytes besides its inputs: tag, id, the job's name and the count
        // (postcard varints, generously rounded up).
        Some(self.0.max_frame_bytes().saturating_sub(32 + job_name.len()))
    }

    fn runs_closures(&self) -> bool {
        false
    }

    fn stuck_is_timeout(&self) -> bool {
        true
    }
}
