//! [`HostError`]: why a worker host stopped.

use crate::pool::PoolError;

/// Why a worker host stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The server could not be reached, or refused the streams or the consumer.
    #[error("worker host: {0}")]
    Broker(String),
    /// The local process pool could not start.
    #[error("worker host: the local pool: {0}")]
    Pool(#[from] PoolError),
}
