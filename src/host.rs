//! Worker hosts (feature `nats`): the other side of [`PoolBuilder::nats`](crate::PoolBuilder::nats).
//!
//! A host is the user's own binary started as a host: [`host`] called from `main`, or any binary
//! whose `main` calls [`init`](crate::init) with [`HOST_ENV`] set to the server's URL. It pulls jobs
//! from the work stream through the durable consumer all hosts share, never more than it has free
//! slots, and runs each in a local process pool (so a job that crashes is isolated on the host
//! too). While a job runs it tells the server it is alive every third of the ack wait; when the
//! job ends it publishes the answer to the submitting pool's results subject, waits for the
//! server's confirmation, and only then acknowledges the job. On SIGTERM or SIGINT it stops
//! pulling, hands back (naks) what it pulled and did not start, lets the running jobs finish and
//! answer, and returns.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use async_nats::jetstream::{consumer, AckKind, Message};
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::job::{forwarded, Jobs};
use crate::pool::{Pool, PoolError, PoolHandle};
use crate::task::{JobContext, TaskError};
use crate::worker::process::ProcessConfig;
use crate::worker::remote::broker::{self, Broker};
use crate::worker::remote::wire::{self, Answer, Input, Request};
use crate::worker::remote::NatsConfig;

/// The environment variable that makes [`init`](crate::init) run the binary as a worker host:
/// the server's URL. [`HostConfig::from_env`] reads the others (`CIRCUITS_NATS_SLOTS`,
/// `CIRCUITS_NATS_WORKERS`, `CIRCUITS_NATS_PIPELINE`, `CIRCUITS_NATS_PREFIX`, `CIRCUITS_NATS_ACK_WAIT_MS`,
/// `CIRCUITS_NATS_MAX_DELIVER`, `CIRCUITS_NATS_REPLICAS`).
pub const HOST_ENV: &str = "CIRCUITS_NATS_HOST";

/// How long an idle host's pull waits for a job; also the longest a graceful stop waits for its
/// open pull to end.
const IDLE_POLL: Duration = Duration::from_secs(3);

/// The expiry of a busy host's pull (which takes what is there and returns at once when jobs
/// are waiting): it bounds a pull whose answer never comes.
const BUSY_POLL: Duration = Duration::from_secs(1);

/// How long after its expiry a pull is given up on this side. A pull request can be lost
/// without a word: a cluster node dies with it, or it reaches a consumer whose leader is not
/// elected yet. Without a bound the host would wait for it for ever, pulling nothing.
const PULL_GRACE: Duration = Duration::from_secs(1);

/// How a worker host runs: which server and stream, how many jobs at once, and the settings of
/// its local process pool.
#[derive(Debug, Clone)]
pub struct HostConfig {
    nats: NatsConfig,
    workers: usize,
    pipeline: usize,
    slots: Option<usize>,
    process: ProcessConfig,
}

impl HostConfig {
    /// A host of the stream described by `nats` (the submitting pools' settings), with as many
    /// worker processes as the machine has CPUs, each holding up to 32 jobs.
    pub fn new(nats: NatsConfig) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        HostConfig {
            nats,
            workers: cpus,
            pipeline: 4,
            slots: None,
            process: ProcessConfig::default(),
        }
    }

    /// The settings in this process's environment: [`HOST_ENV`] (the URL; `None` without it),
    /// `CIRCUITS_NATS_WORKERS`, `CIRCUITS_NATS_PIPELINE`, `CIRCUITS_NATS_SLOTS`, `CIRCUITS_NATS_PREFIX`,
    /// `CIRCUITS_NATS_ACK_WAIT_MS`, `CIRCUITS_NATS_MAX_DELIVER` and `CIRCUITS_NATS_REPLICAS`.
    pub fn from_env() -> Option<Self> {
        let url = std::env::var(HOST_ENV).ok()?;
        let var = |name| std::env::var(name).ok();
        let num = |name| var(name).and_then(|v| v.parse::<u64>().ok());
        let mut nats = NatsConfig::new(url);
        if let Some(prefix) = var("CIRCUITS_NATS_PREFIX") {
            nats = nats.prefix(prefix);
        }
        if let Some(ms) = num("CIRCUITS_NATS_ACK_WAIT_MS") {
            nats = nats.ack_wait(Duration::from_millis(ms));
        }
        if let Some(n) = num("CIRCUITS_NATS_REPLICAS") {
            nats = nats.replicas(usize::try_from(n).unwrap_or(1));
        }
        if let Some(n) = num("CIRCUITS_NATS_MAX_DELIVER") {
            nats = nats.max_deliver(u32::try_from(n).unwrap_or(u32::MAX));
        }
        let mut config = HostConfig::new(nats);
        if let Some(n) = num("CIRCUITS_NATS_WORKERS") {
            config = config.workers(usize::try_from(n).unwrap_or(1));
        }
        if let Some(n) = num("CIRCUITS_NATS_PIPELINE") {
            config = config.pipeline(usize::try_from(n).unwrap_or(1));
        }
        if let Some(n) = num("CIRCUITS_NATS_SLOTS") {
            config = config.slots(usize::try_from(n).unwrap_or(1));
        }
        Some(config)
    }

    /// How many jobs the host runs at once (at least 1): its local pool's worker processes.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// How many jobs each worker is handed at once (default 4, at least 1): the one it runs and
    /// the next ones, already on their way to its process, so that it never waits for the host
    /// between short jobs. A graceful stop lets these run; it hands back the rest.
    pub fn pipeline(mut self, jobs: usize) -> Self {
        self.pipeline = jobs.max(1);
        self
    }

    /// The most jobs the host holds at once, handed to a worker or waiting for one (default 32
    /// per worker, at least the pipelines' worth): it pulls no more than it has free slots, a
    /// quarter of them at a time while its workers are busy. Jobs waiting here are handed back
    /// to the stream (nak) on a graceful stop; more slots save round trips to the server for
    /// short jobs, fewer leave more jobs to other hosts.
    pub fn slots(mut self, slots: usize) -> Self {
        self.slots = Some(slots.max(1));
        self
    }

    /// The settings of the host's local process pool (limits, frame size, grace period).
    pub fn process(mut self, config: ProcessConfig) -> Self {
        self.process = config;
        self
    }
}

/// Why a worker host stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The server could not be reached, or refused the streams or the consumer.
    #[error("worker host: {0}")]
    Broker(String),
    /// The local process pool could not start.
    #[error("worker host: the local pool: {0}")]
    Pool(#[from] PoolError),
}

/// Runs this process as a worker host until SIGTERM or SIGINT: it pulls jobs from the work stream
/// of [`PoolBuilder::nats`](crate::PoolBuilder::nats) pools, never more than it has free slots,
/// runs each in a local process pool, answers it, and acknowledges it once the answer is stored.
/// On SIGTERM or SIGINT it hands back the jobs it has not started, lets the running ones finish,
/// and returns. (The guide's section 16 has the whole picture.) Call it from `main`, after [`init`](crate::init) (its local workers are this binary too), and
/// outside any actix `System`: it runs one of its own.
///
/// ```no_run
/// use circuits::{HostConfig, Jobs, NatsConfig};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Square(u64);
/// # impl circuits::Job for Square { const NAME: &'static str = "square"; type Output = u64;
/// #     fn run(self) -> u64 { self.0 * self.0 } }
///
/// fn main() -> Result<(), circuits::HostError> {
///     let jobs = Jobs::new().register::<Square>();
///     circuits::init(jobs.clone());
///     circuits::host(jobs, HostConfig::new(NatsConfig::new("nats://127.0.0.1:4222")).workers(4))
/// }
/// ```
///
/// # Errors
///
/// [`HostError::Broker`] when the server's address is not one (a server that is away, or the
/// streams and the hosts' consumer that cannot be made yet, are retried until they can be, or
/// until SIGTERM), [`HostError::Pool`] when the local pool cannot start.
pub fn host(jobs: Jobs, config: HostConfig) -> Result<(), HostError> {
    actix::System::new().block_on(serve(jobs, config))
}

/// What each job's run needs.
struct Ctx {
    jobs: Jobs,
    cfg: NatsConfig,
    broker: Broker,
    pool: PoolHandle,
}

async fn serve(jobs: Jobs, config: HostConfig) -> Result<(), HostError> {
    let HostConfig {
        nats: cfg,
        workers,
        pipeline,
        slots,
        process,
    } = config;
    let slots = slots.unwrap_or(workers * 32).max(workers * pipeline);
    let broker = broker::connect(&cfg).await.map_err(HostError::Broker)?;
    // A host waits for its broker, as a service does: a server (or a cluster electing its
    // leader) that comes up after the host is found when it does.
    let mut wait = Duration::from_millis(100);
    let consumer: consumer::PullConsumer = loop {
        let made = async {
            broker.results_stream(&cfg).await?;
            let stream = broker.jobs_stream(&cfg).await?;
            stream
                .get_or_create_consumer(&cfg.hosts_consumer(), broker::hosts_consumer(&cfg))
                .await
                .map_err(|e| format!("the hosts' consumer: {e}"))
        };
        match made.await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!("worker host: {e}; trying again in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    };
    let pool = Pool::builder()
        .channel("circuits-host")
        .min(workers)
        .process_with(process)
        .try_start()?;
    let ctx = Rc::new(Ctx {
        jobs,
        cfg,
        broker,
        pool: pool.clone(),
    });
    let free = std::sync::Arc::new(Semaphore::new(slots));
    let capacity = workers * pipeline;
    let running = Rc::new(Semaphore::new(capacity));
    let (stopping, stop_seen) = tokio::sync::watch::channel(false);
    let mut stop = std::pin::pin!(stopped());
    let mut idle = false;
    'pulling: loop {
        // While the workers have jobs waiting, pull a quarter of the slots at a time, not one job
        // per finished job: each pull is a request and an answer through the server.
        let held = slots - free.available_permits();
        let refill = if held > capacity {
            (slots / 4).max(1)
        } else {
            1
        };
        let mut permits = tokio::select! {
            _ = &mut stop => break 'pulling,
            permits = free.clone().acquire_many_owned(refill as u32) => permits.expect("never closed"),
        };
        if let Ok(more) = free
            .clone()
            .try_acquire_many_owned(free.available_permits() as u32)
        {
            permits.merge(more);
        }
        // While jobs come, take what is there (no wait); once the stream ran dry, wait for the
        // next one (a long poll: an idle host sends one request per few seconds).
        let expiry = if idle { IDLE_POLL } else { BUSY_POLL };
        let fetched = if idle {
            let pull = consumer.batch().max_messages(1);
            pull.expires(expiry).messages().await
        } else {
            let want = permits.num_permits();
            consumer
                .fetch()
                .max_messages(want)
                .expires(expiry)
                .messages()
                .await
        };
        // The server ends every pull by its expiry; one that outlives it was lost.
        let given_up = tokio::time::Instant::now() + expiry + PULL_GRACE;
        let mut batch = match fetched {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("worker host: pulling jobs: {e}");
                drop(permits);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        idle = true;
        loop {
            let next = tokio::select! {
                _ = &mut stop => {
                    // Pulled and not started: back to the stream for another host. The pull
                    // request ends first (at its expiry at the latest): a job handed back while
                    // it is open would be delivered to it again, and wait out the ack wait.
                    let mut pulled = Vec::new();
                    let until = tokio::time::Instant::now() + IDLE_POLL + Duration::from_secs(2);
                    while let Ok(Some(next)) = tokio::time::timeout_at(until, batch.next()).await {
                        pulled.extend(next.ok());
                    }
                    for m in pulled {
                        let _ = m.ack_with(AckKind::Nak(None)).await;
                    }
                    break 'pulling;
                }
                next = tokio::time::timeout_at(given_up, batch.next()) => match next {
                    Ok(next) => next,
                    Err(_) => {
                        tracing::debug!("worker host: a pull not ended by the server; another");
                        break;
                    }
                },
            };
            let message = match next {
                Some(Ok(m)) => {
                    idle = false; // jobs are coming: the next pull takes what is there
                    m
                }
                Some(Err(e)) => {
                    tracing::debug!("worker host: a pull: {e}");
                    continue;
                }
                None => break,
            };
            match permits.split(1) {
                Some(permit) => {
                    let (ctx, running, stop) = (ctx.clone(), running.clone(), stop_seen.clone());
                    actix::spawn(async move {
                        run(&ctx, message, &running, stop).await;
                        drop(permit);
                    });
                }
                None => {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                }
            }
        }
    }
    // The jobs waiting for a worker go back; the running ones finish and answer; then the local
    // pool stops.
    let _ = stopping.send(true);
    let _ = free
        .acquire_many(u32::try_from(slots).unwrap_or(u32::MAX))
        .await;
    pool.stop().await;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Runs one job once a worker is free (or hands it back if the host stops first) and answers it:
/// the answer is stored before the job is acknowledged.
async fn run(
    ctx: &Ctx,
    message: Message,
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
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let outcome = match ctx.jobs.known(&request.name) {
        None => Err(TaskError::UnknownJob(request.name.clone())),
        Some(name) => {
            let worker = async {
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => None,
                    permit = running.acquire() => permit.ok(),
                }
            };
            let Some(_worker) = alive_until(&message, ctx.cfg.ack_wait, worker).await else {
                // Not started: back to the stream for another host, now.
                let _ = message.ack_with(AckKind::Nak(None)).await;
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
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                    return;
                }
            };
            alive_until(&message, ctx.cfg.ack_wait, value).await
        }
    };
    let answer = Answer {
        task: request.task,
        attempt: request.attempt,
        delivery,
        outcome,
    };
    answer_and_ack(ctx, &request, &answer, message).await;
}

/// Awaits `work`, telling the server the host is alive every third of `ack_wait`.
async fn alive_until<T>(message: &Message, ack_wait: Duration, work: impl Future<Output = T>) -> T {
    let mut work = std::pin::pin!(work);
    let every = (ack_wait / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            outcome = &mut work => return outcome,
            _ = tokio::time::sleep(every) => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    }
}

/// Publishes the answer until the server stores it (deduplicated by the attempt's id), then
/// acknowledges the job.
async fn answer_and_ack(ctx: &Ctx, request: &Request, answer: &Answer, message: Message) {
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
        let sent = ctx.broker.js.send_publish(
            subject.clone(),
            async_nats::jetstream::message::PublishMessage::build()
                .payload(bytes.clone())
                .message_id(&id),
        );
        match async { sent.await?.await }.await {
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
