//! Process mode, the parent's side: one child process per worker, behind the same [`Backend`]
//! interface as a thread.
//!
//! Each worker has one host thread that owns the worker's queue and its child. The parent keeps the
//! queue: it sends up to [`ProcessConfig::pipeline`] jobs ahead to the child (batched in one write)
//! and knows which one the child is running — the first one without an answer, because the child
//! writes each answer before it starts the next job. So when the child dies, exactly that task fails
//! with [`TaskError::WorkerCrashed`]; the jobs sent after it never started and go to the replacement
//! child, which starts at once under a fresh channel. A per-task timeout kills the child (SIGTERM,
//! then SIGKILL after a grace period): real cancellation.
//!
//! Files: [`config`] (settings, on every platform), `host` (the host thread: queue, pipeline,
//! restarts), `shared` (what the host and the reader share), `reader` (a child's output, watched
//! through its pidfd), `reap` (ending a child and its process group). Process mode needs Linux
//! and the `process` feature (on by default); elsewhere a process pool fails to start with
//! [`PoolError::Unsupported`](crate::PoolError::Unsupported).

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use super::Backend;
use crate::task::Finisher;

pub(crate) mod config;
#[cfg(all(feature = "process", target_os = "linux"))]
mod host;
#[cfg(all(feature = "process", target_os = "linux"))]
mod reader;
#[cfg(all(feature = "process", target_os = "linux"))]
mod reap;
#[cfg(all(feature = "process", target_os = "linux"))]
mod shared;

pub use config::ProcessConfig;

/// Whether this build can run process workers.
pub(crate) const SUPPORTED: bool = cfg!(all(feature = "process", target_os = "linux"));

/// Starts a process worker: its host thread, which starts the child.
pub(crate) fn spawn(
    cfg: ProcessConfig,
    fin: Arc<Finisher>,
    load: Arc<AtomicUsize>,
) -> std::io::Result<Box<dyn Backend>> {
    #[cfg(all(feature = "process", target_os = "linux"))]
    {
        Ok(Box::new(host::ProcessWorker::spawn(cfg, fin, load)?))
    }
    #[cfg(not(all(feature = "process", target_os = "linux")))]
    {
        let _ = (cfg, fin, load);
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "process mode needs Linux and the `process` feature",
        ))
    }
}
