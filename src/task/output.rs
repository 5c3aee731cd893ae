//! What every task has: its id, what it may return, and the closure it runs.

use std::fmt;

use super::error::TaskError;

/// Identifies a task within its pool (ids count up from 1 in push order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TaskId(pub u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task#{}", self.0)
    }
}

/// What a task may return: a value that can be sent across threads and cloned into result events.
pub trait TaskOutput: Send + Clone + 'static {}
impl<T: Send + Clone + 'static> TaskOutput for T {}

pub(crate) type Closure<R> = Box<dyn FnOnce() -> Result<R, TaskError> + Send + 'static>;

/// What an async task holds until a worker runs it: how to build its future, on the worker's
/// thread (so the future itself need not be `Send`).
pub(crate) type Maker<R> = Box<
    dyn FnOnce() -> futures::future::LocalBoxFuture<'static, Result<R, TaskError>> + Send + 'static,
>;

/// What a task runs: a blocking closure, or an async task's future (boxed once more: so `Work`
/// is two words, the closure's, and a plain task's cell one allocation size smaller; S9).
pub(crate) enum Work<R> {
    Block(Closure<R>),
    Async(Box<Fut<R>>),
}

/// An async task's future: made already (a `Send` future, boxed once, where the task was made),
/// or made on the worker's thread by its maker (a future that is not `Send`).
pub(crate) enum Fut<R> {
    Ready(futures::future::BoxFuture<'static, Result<R, TaskError>>),
    Make(Maker<R>),
}

impl<R> Fut<R> {
    /// The future, made now if it has a maker (call it where a panic is caught).
    pub(crate) fn start(self) -> futures::future::LocalBoxFuture<'static, Result<R, TaskError>> {
        match self {
            Fut::Ready(f) => f,
            Fut::Make(make) => make(),
        }
    }
}

/// A closure that can run again (a repeatable task's work, for its retries).
pub(crate) type Again<R> = std::sync::Arc<dyn Fn() -> Result<R, TaskError> + Send + Sync + 'static>;

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}
