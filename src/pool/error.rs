//! [`PoolError`]: why a pool could not start.

use crate::bus::BusError;
use crate::channel::Channel;

/// Why a pool could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// `min` must be at least 1 and `max` at least `min`.
    #[error("invalid pool size: min {min}, max {max} (need 1 <= min <= max)")]
    InvalidSize {
        /// The requested minimum.
        min: usize,
        /// The requested maximum.
        max: usize,
    },
    /// `start` was called outside an actix `System` (use `#[actix::main]` or `System::new`).
    #[error("a pool starts inside an actix System; call it from #[actix::main] or System::new().block_on")]
    NoSystem,
    /// This process is a pool's worker process, yet it reached code that starts a process pool: the
    /// binary's `main` does not call [`init`](crate::init) first.
    #[error("this is a worker process but circuits::init was not called first in main; call it before anything else")]
    NotInitialized,
    /// Another pool (or anything that routes tasks) already takes tasks on this channel of the
    /// bus; give the pool another channel, or stop the other one first.
    #[error("channel {0:?} already routes tasks on this bus; a pool needs a channel of its own")]
    ChannelTaken(Channel),
    /// Process mode is not available in this build: it needs Linux and the crate's `process`
    /// feature (on by default). Thread mode works everywhere.
    #[error("process mode needs Linux and the `process` feature; use thread mode here")]
    Unsupported,
    /// The OS refused a worker thread or process.
    #[error("could not start a worker: {0}")]
    Spawn(String),
    /// The bus refused the pool's registration.
    #[error(transparent)]
    Bus(#[from] BusError),
}
