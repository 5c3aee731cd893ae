//! Bulk `map`: many jobs of one type, results as a stream in input order.
//!
//! The jobs are cut into chunks; each chunk is one task (one queue entry, and in process mode one
//! frame each way), which is what makes floods of tiny jobs cheap. A job that panics fails alone; a
//! worker process that dies fails every job of the chunk it was running (with
//! [`TaskError::WorkerCrashed`]), as Python's `Pool.map` fails the whole call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::stream::{FuturesOrdered, Stream, StreamExt};

use super::core::PoolCore;
use super::handle::PoolHandle;
use crate::job::{batch_task, Job};
use crate::task::{Batch, ErasedTask, Refusal, TaskError};

type Chunk<O> = Pin<Box<dyn Future<Output = Vec<Result<O, TaskError>>> + Send>>;

/// The results of [`PoolHandle::map`], in input order: a [`Stream`] of `Result<O, TaskError>`.
///
/// Every chunk is queued when `map` is called; the stream only collects. Dropping it does not
/// cancel the jobs.
#[must_use = "a MapStream yields the results; the jobs run whether or not it is polled"]
pub struct MapStream<O> {
    chunks: FuturesOrdered<Chunk<O>>,
    /// The current chunk's results not yielded yet.
    ready: std::vec::IntoIter<Result<O, TaskError>>,
    remaining: usize,
}

impl<O> std::fmt::Debug for MapStream<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapStream")
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl<O> MapStream<O> {
    /// How many results are still to come.
    pub fn remaining(&self) -> usize {
        self.remaining
    }
}

impl<O> Stream for MapStream<O> {
    type Item = Result<O, TaskError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(r) = self.ready.next() {
                self.remaining -= 1;
                return Poll::Ready(Some(r));
            }
            match self.chunks.poll_next_unpin(cx) {
                Poll::Ready(Some(results)) => self.ready = results.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<O> Unpin for MapStream<O> {}

impl PoolHandle {
    /// Runs `job` over every input, in chunks sized for the pool, and streams the results in input
    /// order. Works in both modes; in process mode each chunk travels as one frame.
    ///
    /// ```
    /// use circuits::prelude::*;
    /// use futures::StreamExt;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Square(u64);
    /// # impl Job for Square { const NAME: &'static str = "square"; type Output = u64;
    /// #     fn run(self) -> u64 { self.0 * self.0 } }
    ///
    /// # #[actix::main] async fn main() -> Result<(), circuits::Error> {
    /// let pool = Pool::builder().min(2).start();
    /// let squares: Vec<_> = pool.map((0..1000).map(Square))?.collect().await;
    /// assert_eq!(squares[999], Ok(998_001));
    /// pool.stop().await;
    /// # Ok(()) }
    /// ```
    ///
    /// The batch is accepted as a whole: on a bounded pool, chunks beyond the bound wait inside the
    /// pool for room, in order (they count as accepted: a draining stop runs them, an abort
    /// cancels them).
    ///
    /// # Errors
    ///
    /// [`Refusal::Stopped`](crate::Refusal::Stopped) when the pool is stopping or stopped: nothing
    /// was accepted (jobs run in both modes, so a map is never refused for its kind of task).
    ///
    /// Each item is then the job's output or the [`TaskError`] that ended it. A job that panics
    /// fails alone ([`TaskError::Panicked`]). Whatever ends a whole chunk fails each of its jobs
    /// with the same error: a worker process that died ([`TaskError::WorkerCrashed`]), a chunk
    /// whose inputs do not encode ([`TaskError::Wire`]), an abort ([`TaskError::Cancelled`]), and
    /// the other task errors of [`push`](PoolHandle::push).
    pub fn map<J, I>(&self, jobs: I) -> Result<MapStream<J::Output>, Refusal>
    where
        J: Job,
        I: IntoIterator<Item = J>,
    {
        // About four chunks per worker keeps every worker busy to the end without paying per job.
        let chunk = |jobs: usize| (jobs / (self.workers().len().max(1) * 4)).clamp(1, 4096);
        let jobs = jobs.into_iter();
        match jobs.size_hint() {
            // The count known up front: the jobs are not gathered first.
            (low, Some(high)) if low == high => self.map_chunked(jobs, chunk(low)),
            _ => {
                let jobs: Vec<J> = jobs.collect();
                let chunk = chunk(jobs.len());
                self.map_chunked(jobs, chunk)
            }
        }
    }

    /// Like [`map`](Self::map) with an explicit chunk size (at least 1).
    ///
    /// Chunks are cut by bytes as well as by count: in a process pool no chunk's frame goes over
    /// [`ProcessConfig::max_frame`](crate::ProcessConfig::max_frame) (a single job over the limit
    /// travels alone and fails alone with [`TaskError::Wire`]). On a pool with a
    /// [`task_timeout`](crate::PoolBuilder::task_timeout) the limit applies to each job: every job
    /// is then its own task, so that a job is timed (and in process mode killed) on its own.
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    pub fn map_chunked<J, I>(&self, jobs: I, chunk: usize) -> Result<MapStream<J::Output>, Refusal>
    where
        J: Job,
        I: IntoIterator<Item = J>,
    {
        if self.core.is_stopped() {
            return Err(Refusal::Stopped);
        }
        let chunk = if self.core.default_timeout.is_some() {
            1
        } else {
            chunk.max(1)
        };
        // What a chunk's inputs may add up to so that its frame fits (unbounded in thread mode).
        let budget = self.core.kind.payload_budget(J::NAME).unwrap_or(usize::MAX);
        // A pool whose jobs travel encoded never runs the jobs themselves: only their inputs
        // are kept (thread mode keeps both: the jobs run, the inputs serve a retry).
        let keep_jobs = self.core.kind.runs_closures();
        let mut chunks = FuturesOrdered::new();
        let mut remaining = 0;
        let mut part = Part::<J>::default();
        let mut flush = |part: &mut Part<J>| {
            let Part {
                jobs,
                count: n,
                inputs,
                ..
            } = std::mem::take(part);
            remaining += n;
            let task = batch_task(keep_jobs.then_some(jobs), inputs);
            let (cell, value) = task.into_cell(Default::default());
            self.core.accept_chunk(cell);
            chunks.push_back(Box::pin(async move {
                match value.await {
                    Ok(results) => results,
                    // The chunk as a whole failed (crash, timeout, stop): each job shares that fate.
                    Err(e) => vec![Err(e); n],
                }
            }) as Chunk<J::Output>);
        };
        for job in jobs {
            if part.count >= chunk {
                flush(&mut part);
            }
            if let Ok(batch) = &mut part.inputs {
                // Encoded straight into the chunk's buffer; a job that would take the chunk over
                // its budget moves, encoded, to the next chunk.
                match batch.push(&job) {
                    Ok(size) => {
                        let size = size + ITEM_HEADROOM;
                        if part.count > 0 && part.bytes.saturating_add(size) > budget {
                            let moved = batch.pop().unwrap_or_default();
                            flush(&mut part);
                            if let Ok(next) = &mut part.inputs {
                                next.push_encoded(&moved);
                            }
                        }
                        part.bytes = part.bytes.saturating_add(size);
                    }
                    Err(e) => {
                        part.inputs = Err(format!(
                            "the input of job {:?} does not encode: {e}",
                            J::NAME
                        ))
                    }
                }
            }
            part.count += 1;
            if keep_jobs {
                part.jobs.push(job);
            }
        }
        if part.count > 0 {
            flush(&mut part);
        }
        Ok(MapStream {
            chunks,
            ready: Vec::new().into_iter(),
            remaining,
        })
    }
}

/// The chunk being cut: its jobs (thread mode), how many, their inputs and the inputs' bytes.
struct Part<J> {
    jobs: Vec<J>,
    count: usize,
    inputs: Result<Batch, String>,
    bytes: usize,
}

impl<J> Default for Part<J> {
    fn default() -> Self {
        Part {
            jobs: Vec::new(),
            count: 0,
            inputs: Ok(Batch::default()),
            bytes: 0,
        }
    }
}

/// Each input's length prefix (a varint).
const ITEM_HEADROOM: usize = 5;

/// `map`'s admission of its chunks (they were accepted as a batch; some may park on a full pool).
impl PoolCore {
    /// `map`'s rule for the chunks of a batch it accepted: each goes through the gate, and one that
    /// finds the pool full parks until room frees. Parked chunks were accepted: a draining stop
    /// queues and runs them; an abort cancels them.
    pub(crate) fn accept_chunk(self: &Arc<Self>, task: Box<dyn ErasedTask>) {
        match self.pass_gate(task) {
            Ok(task) => self.submit_accepted(task),
            Err((Refusal::Full, mut task)) => {
                let Some(bound) = self.bound.clone() else {
                    return self.submit_accepted(task);
                };
                self.park(true);
                let core = self.clone();
                self.bus.spawn(async move {
                    match bound.acquire_owned().await {
                        Ok(permit) => {
                            task.hold(permit);
                            core.submit_accepted(task);
                        }
                        // Closed by an abort.
                        Err(_) => core.cancel_accepted(task),
                    }
                    core.park(false);
                });
            }
            // The pool began stopping after the batch was accepted.
            Err((_, task)) => self.submit_accepted(task),
        }
    }

    /// Queues a task that was accepted earlier (a parked chunk): a draining stop still takes it, an
    /// abort or a stopped pool cancels it.
    fn submit_accepted(&self, task: Box<dyn ErasedTask>) {
        if let Err((_, task)) = self.submit(task, None, true) {
            self.cancel_accepted(task);
        }
    }

    /// Ends an accepted task that never reached a worker (a parked map chunk an abort cancels):
    /// it gets an id and fails `Cancelled` with its events, counted on a worker of the pool (any:
    /// it ran on none). With no worker left, only its value resolves.
    fn cancel_accepted(&self, mut task: Box<dyn ErasedTask>) {
        let fin = self.workers().first().map(|w| w.fin());
        match fin {
            Some(fin) => {
                task.prepare(self.next_task_id(), None);
                task.fail(TaskError::Cancelled, &fin);
            }
            None => task.reject(TaskError::Cancelled),
        }
    }
}
