//! A job inside a task: its encoded input(s) as a worker process receives them, and how to decode
//! the answer.

use super::error::TaskError;

/// Encoded job inputs: one job, or a chunk of jobs of one type run as one task (see
/// [`PoolHandle::map`](crate::PoolHandle::map)).
#[derive(Debug, Clone)]
pub(crate) enum Inputs {
    One(Vec<u8>),
    /// Boxed: a single job's entry stays the size of its buffer.
    Batch(Box<Batch>),
}

/// A chunk's encoded inputs in one buffer, one after another (a `map` of 100,000 tiny jobs
/// allocates per chunk, not per job).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
    /// Where each input ends in `bytes`.
    ends: Vec<usize>,
}

impl Batch {
    /// Encodes `value` as the next input; returns its size.
    ///
    /// # Errors
    ///
    /// When `value` does not encode (nothing is added then).
    pub(crate) fn push<T: serde::Serialize>(
        &mut self,
        value: &T,
    ) -> Result<usize, crate::wire::WireError> {
        let size = crate::wire::encode_value_into(value, &mut self.bytes)?;
        self.ends.push(self.bytes.len());
        Ok(size)
    }

    /// Takes the last input out.
    pub(crate) fn pop(&mut self) -> Option<Vec<u8>> {
        let end = self.ends.pop()?;
        let start = self.ends.last().copied().unwrap_or(0);
        let input = self.bytes[start..end].to_vec();
        self.bytes.truncate(start);
        Some(input)
    }

    /// Adds an input encoded elsewhere.
    pub(crate) fn push_encoded(&mut self, input: &[u8]) {
        self.bytes.extend_from_slice(input);
        self.ends.push(self.bytes.len());
    }

    /// The inputs, in order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.ends.len()).map(|i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.bytes[start..self.ends[i]]
        })
    }
}

/// The encoded form of a job, as a worker process receives it.
#[derive(Debug, Clone)]
pub(crate) struct JobPayload {
    pub(crate) name: &'static str,
    /// The encoded input(s), or why they could not be encoded.
    pub(crate) inputs: Result<Inputs, String>,
    /// What the job may know of its run (a remote host's delivery), passed to the worker process.
    pub(crate) context: Option<Box<JobContext>>,
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

#[cfg(test)]
mod tests {
    use super::Batch;

    #[test]
    fn a_batch_keeps_each_input_whole_and_in_order() {
        let mut batch = Batch::default();
        assert_eq!(batch.iter().count(), 0);
        assert_eq!(batch.push(&7u64).unwrap(), 1);
        assert_eq!(batch.push(&"hello").unwrap(), 6);
        batch.push_encoded(&[]);
        batch.push_encoded(&[1, 2, 3]);
        let inputs: Vec<&[u8]> = batch.iter().collect();
        assert_eq!(inputs, vec![&[7][..], b"\x05hello", &[], &[1, 2, 3]]);
        assert_eq!(batch.iter().len(), 4);
        assert_eq!(batch.pop(), Some(vec![1, 2, 3]));
        assert_eq!(batch.pop(), Some(vec![]));
        assert_eq!(batch.iter().last(), Some(&b"\x05hello"[..]));
        assert_eq!(batch.pop().map(|b| b.len()), Some(6));
        assert_eq!(batch.pop(), Some(vec![7]));
        assert_eq!(batch.pop(), None);
    }
}
