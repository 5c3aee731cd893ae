//! One job on a host: it waits for a worker of the local pool, is kept alive with progress acks,
//! and its answer goes to the host's answerer, which stores it and then acknowledges the job.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use async_nats::jetstream::{AckKind, Message};
use tokio::sync::Semaphore;

use super::answer::{Job, Replies};
use super::pace::{Pace, Slot};
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
    /// Where answers and acknowledgements go.
    pub(super) replies: Replies,
}

/// Runs one job once a worker is free (or hands it back if the host stops first), and hands its
/// answer to the answerer. The job keeps `slot` until it is acknowledged.
pub(super) async fn run(
    ctx: &Ctx,
    message: Box<Message>,
    slot: Slot,
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
            ctx.replies.ack(Job::new(message, slot), AckKind::Term);
            return;
        }
    };
    let outcome = match ctx.jobs.known(&request.name) {
        None => Err(TaskError::UnknownJob(request.name.clone())),
        Some(name) => {
            let worker = std::pin::pin!(async {
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => None,
                    permit = running.acquire() => permit.ok(),
                }
            });
            let Some(_worker) = alive_until(ctx, &message, worker).await else {
                // Not started: back to the stream for another host, now.
                ctx.replies.ack(Job::new(message, slot), AckKind::Nak(None));
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
                    ctx.replies.ack(Job::new(message, slot), AckKind::Nak(None));
                    return;
                }
            };
            ctx.pace.handed();
            let handed = std::time::Instant::now();
            let outcome = alive_until(ctx, &message, std::pin::pin!(value)).await;
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
    answer_and_ack(ctx, &request, &answer, Job::new(message, slot));
}

/// Awaits `work`, telling the server the host is alive every third of the ack wait. (`work` is
/// pinned by the caller: moved in, it would take its room in the job's task twice.)
async fn alive_until<F: Future>(ctx: &Ctx, message: &Message, mut work: Pin<&mut F>) -> F::Output {
    let every = (ctx.cfg.ack_wait / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            outcome = &mut work => return outcome,
            _ = tokio::time::sleep(every) => ctx.replies.progress(message),
        }
    }
}

/// Hands the answer to the answerer: stored (deduplicated by the attempt's id), or sent at most
/// once when the pool asked for that; the job is acknowledged after.
fn answer_and_ack(ctx: &Ctx, request: &Request, answer: &Answer, job: Job) {
    let bytes = match wire::encode(answer) {
        Ok(b) => bytes::Bytes::from(b),
        Err(e) => {
            tracing::error!("worker host: an answer does not encode: {e}");
            return;
        }
    };
    if let Some(subject) = &request.fast_answer {
        ctx.replies.fast(job, subject.clone(), bytes);
        return;
    }
    let subject = ctx.cfg.results_subject(&request.pool);
    let id = format!(
        "{}.answer",
        wire::job_id(&request.pool, request.task, request.attempt)
    );
    ctx.replies.stored(job, subject, id, bytes);
}
