//! One job on a host: it waits for a worker of the local pool, is kept alive with progress acks,
//! and is acknowledged once its answer is stored.
//!
//! A job's task lives as long as the host holds the job, so its size is what each held job costs,
//! and tokio copies it whole at its spawn and at its end. async-nats's publish and acknowledgement
//! futures are half a kilobyte to a kilobyte each, and its message 408 bytes: awaited in place,
//! they made the task 4.3 KB (`-Zprint-type-sizes`, session 17). So the message is boxed, and every
//! wait of a job is boxed when it starts: the wait for a worker and for the value (with their
//! progress acks), the answer's publish, its confirmation, the ack, each through `await_boxed!`,
//! which binds the box to a name before it awaits it: `Box::pin(f()).await` keeps `f()`'s future,
//! moved out or not, in the awaiting task's state until the statement ends, so boxing it that way
//! saved nothing. Measured with `size_of_val` (session 23): the job's task was 1,592 bytes and the
//! boxed answer 1,152; now 552 and 448. From about a kilobyte on, glibc's `malloc` takes its
//! large-chunk path and first merges all its freed small chunks (`malloc_consolidate`, 1.6% of a
//! busy host's samples, with its `unlink_chunk` 1.1%); under it, both come from its per-thread
//! cache. The host's CPU over 800,000 single jobs fell about 3% (14.1 against 14.5 s, one pair of
//! runs): within the noise. What a held job costs in memory fell the most: 512 held jobs (the
//! default on two workers) keep 0.28 MB of tasks, not 0.82 MB, beside the boxed wait each one is
//! in.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use async_nats::jetstream::{AckKind, Message};
use tokio::sync::Semaphore;

use super::pace::Pace;
use crate::job::{forwarded, Jobs};
use crate::pool::PoolHandle;
use crate::task::{JobContext, TaskError};
use crate::worker::remote::broker::Broker;
use crate::worker::remote::wire::{self, Answer, Input, Request};
use crate::worker::remote::{await_boxed, NatsConfig};

/// What each job's run needs.
pub(super) struct Ctx {
    pub(super) jobs: Jobs,
    pub(super) cfg: NatsConfig,
    pub(super) broker: Broker,
    pub(super) pool: PoolHandle,
    /// How long jobs take here: how many the host holds.
    pub(super) pace: Rc<Pace>,
}

/// Runs one job once a worker is free (or hands it back if the host stops first) and answers it:
/// the answer is stored before the job is acknowledged.
pub(super) async fn run(
    ctx: &Ctx,
    message: Box<Message>,
    running: &Semaphore,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let delivery = message
        .info()
        .map_or(1, |i| u64::try_from(i.delivered).unwrap_or(1));
    let mut request: Request = match wire::decode(&message.payload) {
        Ok(r) => r,
        Err(e) => {
            // Nobody can be answered: the job is taken out of the stream.
            tracing::error!("worker host: an undecodable job ({e}); dropped");
            ack_with(&message, AckKind::Term).await;
            return;
        }
    };
    let outcome = match ctx.jobs.known(&request.name) {
        None => Err(TaskError::UnknownJob(request.name.clone())),
        Some(name) => {
            let waiting = wait_for_worker(running, &mut stop);
            let worker = await_boxed!(alive_until(&message, ctx.cfg.ack_wait, waiting));
            let Some(_worker) = worker else {
                // Not started: back to the stream for another host, now.
                ack_with(&message, AckKind::Nak(None)).await;
                return;
            };
            let context = JobContext {
                id: wire::job_id(&request.pool, request.task, request.attempt),
                delivery,
            };
            // The input moves into the task: the answer needs only the request's ids.
            let input = std::mem::replace(&mut request.input, Input::Batch(Vec::new()));
            let mut task = forwarded(name, input.into(), context);
            if let Some(ns) = request.timeout_ns {
                task = task.timeout(Duration::from_nanos(ns));
            }
            let value = match ctx.pool.push(task) {
                Ok(v) => v,
                Err(refused) => {
                    tracing::warn!("worker host: {}; the job goes back", refused.refusal());
                    ack_with(&message, AckKind::Nak(None)).await;
                    return;
                }
            };
            ctx.pace.handed();
            let handed = std::time::Instant::now();
            let outcome = await_boxed!(alive_until(&message, ctx.cfg.ack_wait, value));
            ctx.pace.ended(handed.elapsed());
            outcome
        }
    };
    let answer = Answer {
        task: request.task,
        attempt: request.attempt,
        delivery,
        outcome,
    };
    await_boxed!(answer_and_ack(ctx, &request, &answer, message));
}

/// A place among the jobs that run at once, or `None` when the host stops first.
async fn wait_for_worker<'a>(
    running: &'a Semaphore,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::sync::SemaphorePermit<'a>> {
    tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => None,
        permit = running.acquire() => permit.ok(),
    }
}

/// Awaits `work`, telling the server the host is alive every third of `ack_wait`.
async fn alive_until<F: Future>(message: &Message, ack_wait: Duration, work: F) -> F::Output {
    let every = (ack_wait / 3).max(Duration::from_millis(100));
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            outcome = &mut work => return outcome,
            _ = tokio::time::sleep(every) => {
                ack_with(message, AckKind::Progress).await;
            }
        }
    }
}

/// Sends `kind` for the job (a nak, a term, a progress ack), best effort. Boxed when it starts:
/// async-nats's ack future is 624 bytes, and awaited in place it would take that room in every
/// held job's task (see the module's note).
async fn ack_with(message: &Message, kind: AckKind) {
    let _ = await_boxed!(message.ack_with(kind));
}

/// Publishes the answer until the server stores it (deduplicated by the attempt's id), then
/// acknowledges the job.
async fn answer_and_ack(ctx: &Ctx, request: &Request, answer: &Answer, message: Box<Message>) {
    let bytes = match wire::encode(answer) {
        Ok(b) => bytes::Bytes::from(b),
        Err(e) => {
            tracing::error!("worker host: an answer does not encode: {e}");
            return;
        }
    };
    if let Some(subject) = &request.fast_answer {
        // At most once, by the pool's choice: sent (in order, before the ack), not stored.
        let _ = await_boxed!(ctx.broker.client.publish(subject.clone(), bytes));
        let _ = await_boxed!(message.ack());
        return;
    }
    let subject = ctx.cfg.results_subject(&request.pool);
    let id = format!(
        "{}.answer",
        wire::job_id(&request.pool, request.task, request.attempt)
    );
    let mut wait = Duration::from_millis(20);
    let started = std::time::Instant::now();
    loop {
        let publish = async_nats::jetstream::message::PublishMessage::build()
            .payload(bytes.clone())
            .message_id(&id);
        let stored = match await_boxed!(ctx.broker.js.send_publish(subject.clone(), publish)) {
            Ok(confirmation) => await_boxed!(std::future::IntoFuture::into_future(confirmation)),
            Err(e) => Err(e),
        };
        match stored {
            Ok(_) => break,
            Err(e) if started.elapsed() >= ctx.cfg.publish_deadline => {
                // Not acknowledged: the server gives the job to a host again after its ack wait
                // (and a host that is stopping does not hang on a server that is gone).
                tracing::warn!("worker host: an answer not stored within the deadline ({e})");
                return;
            }
            Err(e) => {
                tracing::debug!("worker host: publishing an answer: {e}; again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
        }
    }
    // A lost ack only means a second delivery, whose answer the pool absorbs.
    let _ = await_boxed!(message.ack());
}
