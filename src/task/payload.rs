//! A job inside a task: its encoded input(s) as a worker process receives them, and how to decode
//! the answer.

use super::error::TaskError;

/// Encoded job inputs: one job, or a chunk of jobs of one type run as one task (see
/// [`PoolHandle::map`](crate::PoolHandle::map)).
#[derive(Debug, Clone)]
pub(crate) enum Inputs {
    One(Vec<u8>),
    Batch(Vec<serde_bytes::ByteBuf>),
}

/// The encoded form of a job, as a worker process receives it.
#[derive(Debug, Clone)]
pub(crate) struct JobPayload {
    pub(crate) name: &'static str,
    /// The encoded input(s), or why they could not be encoded.
    pub(crate) inputs: Result<Inputs, String>,
}

/// A job inside a task: its payload and how to decode the answer.
pub(crate) struct JobCall<R> {
    pub(crate) payload: JobPayload,
    pub(crate) decode: fn(&[u8]) -> Result<R, TaskError>,
    /// Decodes the inputs and runs the job(s) again on this thread (a retry in thread mode).
    pub(crate) rerun: fn(&Inputs) -> Result<R, TaskError>,
}
