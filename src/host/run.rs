//! One job on a host: it waits for a worker of the local pool, is kept alive with progress acks,
//! and is acknowledged once its answer is stored.
//!
//! A job's task lives as long as the host holds the job, so its size is what each held job costs,
//! and tokio copies it whole at its spawn and at its end. async-nats's publish and acknowledgement
//! futures are half a kilobyte to a kilobyte each, and its message 408 bytes: awaited in place,
//! they made the task 4.3 KB (`-Zprint-type-sizes`), and in a profile of a busy host (issue #13's
//! S10, single jobs) `memcpy` and `malloc` together took a third of its main thread, the tasks'
//! copies the largest part of the `memcpy`. So the message is boxed, the work `alive_until` waits
//! for is pinned where it is made (moved in, it takes its room twice), and what runs once at the
//! end or seldom (the answer and the ack, a progress ack, a nak) is boxed when it starts: the task
//! is 0.84 KB. That saved less than the profile promised: about 4% of the host's CPU per job (about
//! 1 us of 25; the rest of `malloc` and `memcpy` is async-nats's own), indicative only (4 pairs on
//! a noisy machine). What a held job costs in memory fell the most: 512 held jobs (the default on
//! two workers) keep 0.4 MB of tasks, not 2.2 MB.

use std::future::Future;
use std::pin::Pin;
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
use crate::worker::remote::NatsConfig;

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
            // In a block of its own, so that the finished wait shares its room in the task with
            // the wait for the value.
            let worker = {
                let wait = std::pin::pin!(async {
                    tokio::select! {
                        biased;
                        _ = stop.wait_for(|s| *s) => None,
                        permit = running.acquire() => permit.ok(),
                    }
                });
                alive_until(&message, ctx.cfg.ack_wait, wait).await
            };
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
            let outcome = alive_until(&message, ctx.cfg.ack_wait, std::pin::pin!(value)).await;
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
    Box::pin(answer_and_ack(ctx, &request, &answer, message)).await;
}

/// Awaits `work`, telling the server the host is alive every third of `ack_wait`.
async fn alive_until<F: Future>(
    message: &Message,
    ack_wait: Duration,
    mut work: Pin<&mut F>,
) -> F::Output {
    let every = (ack_wait / 3).max(Duration::from_millis(100));
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
    let _ = Box::pin(message.ack_with(kind)).await;
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
        let _ = ctx.broker.client.publish(subject.clone(), bytes).await;
        let _ = message.ack().await;
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
        // Awaited in place, not moved into a block: the publish future is 824 bytes.
        let stored = match ctx.broker.js.send_publish(subject.clone(), publish).await {
            Ok(confirmation) => confirmation.await,
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
    let _ = message.ack().await;
}
