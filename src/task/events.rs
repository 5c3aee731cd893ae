//! The result events a pool fires on its channel: [`TaskSuccess`], [`TaskFailure`],
//! [`TaskComplete`].

use actix::Message;

use super::error::TaskError;
use super::output::TaskId;
use crate::channel::Channel;

/// Fired on the pool's channel when a task succeeds (only when someone subscribed).
///
/// `R` is the task's result type, exactly: a subscriber of `TaskSuccess<u32>` hears nothing from
/// tasks that return `u64` (an event type is a Rust type). The first success that no subscriber
/// of its type hears, while the pool's channel has subscribers, is said in a `tracing` debug event
/// naming the result type. Subscribe once per result type the pool's tasks return;
/// [`TaskFailure`] and [`TaskComplete`] carry no result and reach everyone.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct TaskSuccess<R> {
    /// The task.
    pub id: TaskId,
    /// The channel of the worker that ran it.
    pub worker: Channel,
    /// Its result.
    pub value: R,
    /// Which run gave it: 1, or more after [retries](crate::Retry).
    pub attempt: u32,
}

/// Fired on the pool's channel when a task fails, for whatever reason.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct TaskFailure {
    /// The task.
    pub id: TaskId,
    /// The channel of the worker it was given to.
    pub worker: Channel,
    /// What went wrong (in the last attempt).
    pub error: TaskError,
    /// Which run failed last: 1, or more after [retries](crate::Retry).
    pub attempt: u32,
}

/// Fired on the pool's channel after the task's `TaskSuccess` or `TaskFailure`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct TaskComplete {
    /// The task.
    pub id: TaskId,
    /// The channel of the worker it was given to.
    pub worker: Channel,
    /// Whether it succeeded.
    pub ok: bool,
    /// How many runs it took: 1, or more after [retries](crate::Retry).
    pub attempt: u32,
}
