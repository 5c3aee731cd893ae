//! How answers reach a remote pool's tasks: from the results stream or as plain messages
//! ([`settle`]), and the server's advisories for jobs whose deliveries ran out, kept in a stream.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

use super::pending::{Entry, Shared};
use super::ready::Ready;
use super::wire::{self, Answer};
use crate::task::TaskError;

/// Reads the pool's answers sent as plain messages ([`NatsConfig::fast_answers`]).
pub(super) async fn fast_answers(shared: Arc<Shared>, mut answers: async_nats::Subscriber) {
    while let Some(message) = answers.next().await {
        match wire::decode::<Answer>(&message.payload) {
            Ok(answer) => settle(&shared, answer),
            Err(e) => tracing::warn!("circuits remote pool: an undecodable answer: {e}"),
        }
    }
}

/// The pool's pulls (of answers, and of exhausted jobs): each waits this long on the server at
/// most, ...
const PULL_EXPIRY: Duration = Duration::from_secs(5);

/// ... and the server tells it is alive this often while nothing comes. A pull can be lost
/// without a word (a cluster node dies with it); two missed heartbeats end it here, and a new
/// one is made, instead of waiting for its expiry.
const PULL_HEARTBEAT: Duration = Duration::from_secs(1);

/// How soon a message delivered to a pull this side gave up on (its heartbeats missed: the
/// server paused, a cluster node died) comes again: the server delivers it to that pull, which
/// nobody reads any more. With the server paused for 3 s mid-flood (`tests/remote_nats.rs`), some
/// runs wait for this once: they took 8.2 s where the others took 3.3 s when it was 5 s, and take
/// 5.2 s at 2 s (2 runs of 8). A message read and acknowledged later than this comes twice: the
/// second is absorbed.
const REDELIVER_AFTER: Duration = Duration::from_secs(2);

/// How many messages one pull asks for.
const PULL_BATCH: usize = 256;

/// How long a pool's durable consumers outlive the pool's last pull: the server removes those of
/// a pool that ended without deleting them (its process was killed). A pool away for longer makes
/// them again; the answers wait in the results stream meanwhile.
const FORGOTTEN_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The pool's consumer of the results stream.
pub(super) fn results_consumer(pool: &str) -> String {
    format!("results-{pool}")
}

/// The pool's consumer of the stream of jobs that used up their deliveries.
pub(super) fn exhausted_consumer(pool: &str) -> String {
    format!("exhausted-{pool}")
}

/// Reads the pool's answers from the results stream for as long as the link lives.
pub(super) async fn read_results(shared: Arc<Shared>, results: jetstream::stream::Stream) {
    let config = consumer::pull::Config {
        durable_name: Some(results_consumer(&shared.pool)),
        filter_subject: shared.cfg.results_subject(&shared.pool),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: REDELIVER_AFTER,
        inactive_threshold: FORGOTTEN_AFTER,
        ..Default::default()
    };
    read_durable(results, config, |payload| {
        match wire::decode::<Answer>(&payload) {
            Ok(answer) => settle(&shared, answer),
            Err(e) => tracing::warn!("circuits remote pool: an undecodable answer: {e}"),
        }
        std::future::ready(())
    })
    .await;
}

/// Reads a durable consumer of `stream` made with `config` for as long as the link lives (made
/// again if it is gone, a new pull stream after any error), handing each message's payload to
/// `each`, then acknowledging it: a message read twice (after a reconnect) must be absorbed.
async fn read_durable<F, Fut>(
    stream: jetstream::stream::Stream,
    config: consumer::pull::Config,
    mut each: F,
) where
    F: FnMut(bytes::Bytes) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let name = config.durable_name.clone().unwrap_or_default();
    let again = Duration::from_millis(200);
    loop {
        let consumer: consumer::PullConsumer =
            match stream.get_or_create_consumer(&name, config.clone()).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("circuits remote pool: the consumer {name}: {e}");
                    tokio::time::sleep(again).await;
                    continue;
                }
            };
        let pulled = consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .expires(PULL_EXPIRY)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await;
        let mut messages = match pulled {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("circuits remote pool: reading {name}: {e}");
                tokio::time::sleep(again).await;
                continue;
            }
        };
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    // A lost pull (missed heartbeats), a failed one, a deleted consumer: the
                    // stream asks for nothing more, so a new one does.
                    tracing::debug!("circuits remote pool: {name}: {e}; pulling anew");
                    tokio::time::sleep(again / 4).await;
                    break;
                }
            };
            each(message.payload.clone()).await;
            tokio::task::spawn_local(async move {
                let _ = message.ack().await;
            });
        }
    }
}

/// Settles a task with its answer, if it is still pending and the answer is for its attempt.
pub(super) fn settle(shared: &Shared, answer: Answer) {
    let Some(entry) = shared.take_attempt(answer.task, answer.attempt) else {
        return; // settled already (a duplicate, a late answer, a cancel)
    };
    let Entry { task, owner, .. } = entry;
    owner.ended();
    match answer.outcome {
        Ok(bytes) => task.finish_encoded(Ok(&bytes), &owner.fin),
        Err(error) => task.finish_encoded(Err(error), &owner.fin),
    }
}

/// Fails the tasks whose jobs used up their deliveries (every host they went to was lost), and
/// takes those jobs, and other pools', out of the stream (a work queue keeps them otherwise).
///
/// The server's advisory for such a job is a plain message, lost to a pool that is disconnected
/// when it is sent; the exhausted stream keeps it, and the pool reads it from there, from `start`
/// (the stream's next sequence before the pool published its first job), through a durable
/// consumer: one read while the pool was away is still there when it is back.
pub(super) async fn watch_deliveries(
    shared: Arc<Shared>,
    ready: Rc<Ready>,
    exhausted: jetstream::stream::Stream,
    start: u64,
) {
    #[derive(serde::Deserialize)]
    struct Advisory {
        stream_seq: u64,
        deliveries: u64,
    }
    let config = consumer::pull::Config {
        durable_name: Some(exhausted_consumer(&shared.pool)),
        deliver_policy: consumer::DeliverPolicy::ByStartSequence {
            start_sequence: start,
        },
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: REDELIVER_AFTER,
        inactive_threshold: FORGOTTEN_AFTER,
        ..Default::default()
    };
    read_durable(exhausted, config, |payload| {
        let (shared, ready) = (shared.clone(), ready.clone());
        async move {
            let Ok(advisory) = serde_json::from_slice::<Advisory>(&payload) else {
                return;
            };
            let entry = {
                let mut p = shared.lock();
                let id = p.by_seq.get(&advisory.stream_seq).copied();
                id.and_then(|id| p.remove(id))
            };
            // Every pool takes out every exhausted job it hears of, its own or another pool's:
            // that pool may be gone, and nothing else would (no host gets the job again).
            ready.forget(advisory.stream_seq).await;
            if let Some(entry) = entry {
                let error = TaskError::HostLost {
                    deliveries: advisory.deliveries,
                };
                Shared::fail(entry, error);
            }
        }
    })
    .await;
}
