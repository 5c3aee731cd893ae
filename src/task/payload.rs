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
    /// What the job may know of its run (a remote host's delivery), passed to the worker process.
    pub(crate) context: Option<JobContext>,
}

/// What a job knows of its run on a remote worker host ([`job_context`]): a stable id and which
/// delivery this is, so that a job with side effects can be idempotent (delivery is at least
/// once: a job whose host died runs again elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobContext {
    pub(crate) id: String,
    pub(crate) delivery: u64,
}

impl JobContext {
    /// The job's id: the same on every delivery of the same attempt of the same task (a
    /// [retry](crate::Retry) is a new attempt with a new id).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Which delivery of the job this is, from 1: above 1 when a host that held it was lost (or
    /// handed it back on a graceful stop).
    pub fn delivery(&self) -> u64 {
        self.delivery
    }
}

thread_local! {
    static CONTEXT: std::cell::RefCell<Option<JobContext>> = const { std::cell::RefCell::new(None) };
}

/// The context of the job running on this thread, when it runs on a remote worker host
/// ([`PoolBuilder::nats`](crate::PoolBuilder::nats)); `None` in thread and process pools, and
/// outside a job.
///
/// ```
/// use circuits::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Charge { account: u64, cents: u64 }
///
/// impl Job for Charge {
///     const NAME: &'static str = "charge";
///     type Output = String;
///     fn run(self) -> String {
///         match circuits::job_context() {
///             // Remote: charge once per job id, whatever the delivery.
///             Some(ctx) => format!("charge {} once under key {}", self.cents, ctx.id()),
///             None => format!("charge {} locally", self.cents),
///         }
///     }
/// }
///
/// # #[actix::main] async fn main() -> Result<(), RunError> {
/// let pool = Pool::builder().min(1).start();
/// let said = pool.run(Task::job(Charge { account: 1, cents: 250 })).await?;
/// assert_eq!(said, "charge 250 locally");
/// pool.stop().await;
/// # Ok(()) }
/// ```
pub fn job_context() -> Option<JobContext> {
    CONTEXT.with(|c| c.borrow().clone())
}

/// Runs `f` with `context` as the [`job_context`] of this thread.
pub(crate) fn with_context<T>(context: Option<JobContext>, f: impl FnOnce() -> T) -> T {
    CONTEXT.with(|c| *c.borrow_mut() = context);
    let out = f();
    CONTEXT.with(|c| *c.borrow_mut() = None);
    out
}

/// A job inside a task: its payload and how to decode the answer.
pub(crate) struct JobCall<R> {
    pub(crate) payload: JobPayload,
    pub(crate) decode: fn(&[u8]) -> Result<R, TaskError>,
    /// Decodes the inputs and runs the job(s) again on this thread (a retry in thread mode).
    pub(crate) rerun: fn(&Inputs) -> Result<R, TaskError>,
}
