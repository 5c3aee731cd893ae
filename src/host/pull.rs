//! Pulling jobs: never more than the host's free slots, and about [`HOLD`](super::pace::HOLD) of
//! its workers' work (see `pace`); fetching what is there while jobs come, long-polling once the
//! stream ran dry; and on SIGTERM or SIGINT handing back what was pulled and not started.

use std::rc::Rc;
use std::time::Duration;

use async_nats::jetstream::{consumer, AckKind};
use futures::StreamExt;
use tokio::sync::Semaphore;

use super::config::{HostConfig, MIN_HELD_BYTES};
use super::error::HostError;
use super::exhausted;
use super::pace::Slot;
use super::run::{run, Ctx};
use crate::job::Jobs;
use crate::pool::Pool;
use crate::worker::remote::broker;

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

/// How long a stopping host waits for its last acks and naks to be written to the connection.
const FLUSH: Duration = Duration::from_secs(2);

/// The most jobs a host holds per worker unless [`HostConfig::slots`] says otherwise; it holds
/// fewer while its jobs are not short (see `pace`).
const MOST_PER_WORKER: usize = 256;

pub(super) async fn serve(jobs: Jobs, config: HostConfig) -> Result<(), HostError> {
    let HostConfig {
        nats: cfg,
        workers,
        pipeline,
        slots,
        held_bytes,
        process,
    } = config;
    let slots = slots
        .unwrap_or(workers * MOST_PER_WORKER)
        .max(workers * pipeline);
    let broker = broker::connect(&cfg).await.map_err(HostError::Broker)?;
    // A host waits for its broker, as a service does: a server (or a cluster electing its
    // leader) that comes up after the host is found when it does.
    let mut wait = Duration::from_millis(100);
    let (consumer, jobs_stream, exhausted): (consumer::PullConsumer, _, _) = loop {
        let made = async {
            broker.results_stream(&cfg).await?;
            let exhausted = broker.exhausted_stream(&cfg).await?;
            let stream = broker.jobs_stream(&cfg).await?;
            let consumer = stream
                .get_or_create_consumer(&cfg.hosts_consumer(), broker::hosts_consumer(&cfg))
                .await
                .map_err(|e| format!("the hosts' consumer: {e}"))?;
            Ok::<_, String>((consumer, stream, exhausted))
        };
        match made.await {
            Ok(made) => break made,
            Err(e) => {
                tracing::warn!("worker host: {e}; trying again in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    };
    // The jobs that use up their deliveries from now on leave the stream, whoever sent them.
    let cleaner = exhausted::consumer_name();
    let cleaning = actix::spawn(exhausted::take_out(
        jobs_stream,
        exhausted.clone(),
        cleaner.clone(),
    ));
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
        pace: Rc::default(),
    });
    let free = std::sync::Arc::new(Semaphore::new(slots));
    let capacity = workers * pipeline;
    let running = Rc::new(Semaphore::new(capacity));
    let (stopping, stop_seen) = tokio::sync::watch::channel(false);
    let mut stop = std::pin::pin!(stopped());
    let mut idle = false;
    'pulling: loop {
        // How many jobs the host may hold: what its workers finish in about `HOLD` at the pace
        // of its recent jobs (see `pace`); at least the pipelines' worth and one more job per
        // worker (a job keeps its slot until its answer is stored and acked, and its worker
        // starts the next one meanwhile); at most its slots. While its workers have jobs waiting
        // it pulls once a quarter of that is free, then all the room it has, not one job per
        // finished job: each pull is a request and an answer through the server.
        let limit = ctx.pace.limit(capacity, capacity + workers, slots);
        let held = slots - free.available_permits();
        let refill = if held > capacity {
            (limit / 4).max(1)
        } else {
            1
        };
        // And no more bytes than it may hold: a pull asks for the room left, and waits while that
        // is less than the largest job.
        let bytes = held_bytes.saturating_sub(ctx.pace.held_bytes());
        if held + refill > limit || bytes < MIN_HELD_BYTES {
            tokio::select! {
                _ = &mut stop => break 'pulling,
                _ = ctx.pace.left() => continue 'pulling,
            }
        }
        // held + refill <= limit <= slots, and held jobs can only leave meanwhile: these
        // permits are free now.
        let mut permits = tokio::select! {
            _ = &mut stop => break 'pulling,
            permits = free.clone().acquire_many_owned(refill as u32) => permits.expect("never closed"),
        };
        let room = (limit - held - refill).min(free.available_permits());
        if let Ok(more) = free.clone().try_acquire_many_owned(room as u32) {
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
                .max_bytes(bytes)
                .expires(expiry)
                .messages()
                .await
        };
        // The server ends every pull by its expiry; one that outlives it was lost.
        let given_up = tokio::time::Instant::now() + expiry + PULL_GRACE;
        // A pull whose bytes the jobs filled exactly is over without a word from the server
        // (nats-server 2.9): it ends here when they did.
        let mut bytes_left = (!idle).then_some(bytes);
        let mut batch = match fetched {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("worker host: pulling jobs: {e}");
                drop(permits);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let was_idle = std::mem::replace(&mut idle, true);
        loop {
            let next = tokio::select! {
                _ = &mut stop => {
                    // Pulled and not started: back to the stream for another host.
                    let until = tokio::time::Instant::now() + IDLE_POLL + Duration::from_secs(2);
                    hand_back(batch, until).await;
                    break 'pulling;
                }
                next = tokio::time::timeout_at(given_up, batch.next()) => match next {
                    Ok(next) => next,
                    Err(_) => {
                        tracing::debug!("worker host: a pull not ended by the server; another");
                        // The server may still deliver to it: paused, it reads the pull only
                        // as it resumes. The client drops what comes for a pull dropped here,
                        // and those jobs would wait out the ack wait; read on, they go back at
                        // once. Past the ack wait the server redelivers by itself.
                        let until = tokio::time::Instant::now() + ctx.cfg.ack_wait;
                        actix::spawn(hand_back(batch, until));
                        break;
                    }
                },
            };
            let message = match next {
                Some(Ok(m)) => {
                    if was_idle && idle {
                        // The stream ran dry before this job: it may be of another kind.
                        ctx.pace.forget();
                    }
                    idle = false; // jobs are coming: the next pull takes what is there
                    m
                }
                Some(Err(e)) => {
                    tracing::debug!("worker host: a pull: {e}");
                    continue;
                }
                None => break,
            };
            let length = message.length;
            match permits.split(1) {
                Some(permit) => {
                    let (ctx, running, stop) = (ctx.clone(), running.clone(), stop_seen.clone());
                    let slot = Slot::new(permit, ctx.pace.clone(), length);
                    // Boxed: the job's task holds the 408-byte message to its end (see `run`).
                    let message = Box::new(message);
                    actix::spawn(async move {
                        run(&ctx, message, &running, stop).await;
                        drop(slot);
                    });
                }
                None => {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                }
            }
            if let Some(left) = &mut bytes_left {
                *left = left.saturating_sub(length);
                if *left == 0 {
                    break;
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
    // Every job's ack and nak is with the client now (a job's slot comes back after them): sent
    // before the host goes, unless the server is away (the client would wait for it for ever).
    let _ = tokio::time::timeout(FLUSH, ctx.broker.client.flush()).await;
    cleaning.abort();
    let _ = tokio::time::timeout(FLUSH, exhausted.delete_consumer(&cleaner)).await;
    pool.stop().await;
    Ok(())
}

/// Hands back (naks) what the pull `batch` brings until it ends or `until`. The pull ends first
/// (at its expiry at the latest): a job handed back while it is open would be delivered to it
/// again.
async fn hand_back(mut batch: consumer::pull::Batch, until: tokio::time::Instant) {
    let mut pulled = Vec::new();
    while let Ok(Some(next)) = tokio::time::timeout_at(until, batch.next()).await {
        pulled.extend(next.ok());
    }
    if !pulled.is_empty() {
        tracing::debug!("worker host: {} jobs handed back from a pull", pulled.len());
    }
    for m in pulled {
        let _ = m.ack_with(AckKind::Nak(None)).await;
    }
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
