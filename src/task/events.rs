//! The result events a pool fires on its channel: [`TaskSuccess`], [`TaskFailure`],
//! [`TaskComplete`].

use actix::Message;

use super::error::TaskError;
use super::output::TaskId;
use crate::channel::Channel;

/// Fired on the pool's channel when a task succeeds (only when someone subscribed).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct TaskSuccess<R> {
    /// The task.
    pub id: TaskId,
    /// The channel of the worker that ran it.
    pub worker: Channel,
    /// Its result.
    pub value: R,
}

/// Fired on the pool's channel when a task fails, for whatever reason.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct TaskFailure {
    /// The task.
    pub id: TaskId,
    /// The channel of the worker it was given to.
    pub worker: Channel,
    /// What went wrong.
    pub error: TaskError,
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
}
