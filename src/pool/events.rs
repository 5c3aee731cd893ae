//! The worker lifecycle events a pool fires on its channel: [`WorkerStarted`], [`WorkerStopped`],
//! [`WorkerRestarted`]. (Task results are the task layer's: `TaskSuccess` and friends.)

use actix::prelude::*;

use crate::channel::Channel;

/// Fired on the pool's channel when a worker joins the pool.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct WorkerStarted {
    /// The new worker's channel.
    pub worker: Channel,
    /// How many workers the pool has now.
    pub workers: usize,
}

/// Fired on the pool's channel when a worker leaves the pool (retired by a resize, or lost to a
/// stuck task).
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct WorkerStopped {
    /// The worker's channel.
    pub worker: Channel,
    /// How many workers the pool has now.
    pub workers: usize,
    /// Why: `"resized"` or `"lost: ..."`.
    pub reason: String,
}

/// Fired on the pool's channel when a process worker's child died or was killed and a new child
/// took its place under a fresh channel.
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
pub struct WorkerRestarted {
    /// The worker's old channel.
    pub old: Channel,
    /// Its new channel.
    pub new: Channel,
    /// Why the old child ended (exit code, signal, timeout, protocol violation).
    pub reason: String,
}
