//! How answers reach a remote pool's tasks: from the results stream or as plain messages
//! ([`settle`]), and the server's advisory for jobs whose deliveries ran out.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

use super::broker::{self, Broker};
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

/// The results consumer's pulls: each waits this long on the server at most, ...
const RESULTS_EXPIRY: Duration = Duration::from_secs(5);

/// ... and the server tells it is alive this often while no answer comes. A pull can be lost
/// without a word (a cluster node dies with it); two missed heartbeats end it here, and a new
/// one is made, instead of waiting for its expiry.
const RESULTS_HEARTBEAT: Duration = Duration::from_secs(1);

/// How many answers one pull asks for.
const RESULTS_BATCH: usize = 256;

/// The pool's consumer of the results stream.
pub(super) fn results_consumer(pool: &str) -> String {
    format!("results-{pool}")
}

/// Reads the pool's answers from the results stream for as long as the link lives: through its
/// durable consumer (made again if it is gone), a new pull stream after any error.
pub(super) async fn read_results(shared: Arc<Shared>, results: jetstream::stream::Stream) {
    let name = results_consumer(&shared.pool);
    let again = Duration::from_millis(200);
    loop {
        let config = consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: shared.cfg.results_subject(&shared.pool),
            ack_policy: consumer::AckPolicy::Explicit,
            // An answer delivered to a pull this side gave up on comes again this soon (a
            // duplicate is absorbed).
            ack_wait: RESULTS_EXPIRY,
            ..Default::default()
        };
        let consumer: consumer::PullConsumer =
            match results.get_or_create_consumer(&name, config).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("circuits remote pool: the results consumer: {e}");
                    tokio::time::sleep(again).await;
                    continue;
                }
            };
        let pulled = consumer
            .stream()
            .max_messages_per_batch(RESULTS_BATCH)
            .expires(RESULTS_EXPIRY)
            .heartbeat(RESULTS_HEARTBEAT)
            .messages()
            .await;
        let mut answers = match pulled {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("circuits remote pool: reading answers: {e}");
                tokio::time::sleep(again).await;
                continue;
            }
        };
        while let Some(message) = answers.next().await {
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    // A lost pull (missed heartbeats), a failed one, a deleted consumer: the
                    // stream asks for nothing more, so a new one does.
                    tracing::debug!("circuits remote pool: answers: {e}; pulling anew");
                    tokio::time::sleep(again / 4).await;
                    break;
                }
            };
            match wire::decode::<Answer>(&message.payload) {
                Ok(answer) => settle(&shared, answer),
                Err(e) => tracing::warn!("circuits remote pool: an undecodable answer: {e}"),
            }
            // Stored until acknowledged: an answer read twice (after a reconnect) is absorbed.
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
/// takes those jobs out of the stream (a work queue keeps them otherwise).
pub(super) async fn watch_deliveries(shared: Arc<Shared>, broker: Rc<Broker>, ready: Rc<Ready>) {
    #[derive(serde::Deserialize)]
    struct Advisory {
        stream_seq: u64,
        deliveries: u64,
    }
    let subject = broker::max_deliveries_advisory(&shared.cfg);
    let mut advisories = loop {
        match broker.client.subscribe(subject.clone()).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!("circuits remote pool: {subject}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    while let Some(message) = advisories.next().await {
        let Ok(advisory) = serde_json::from_slice::<Advisory>(&message.payload) else {
            continue;
        };
        let entry = {
            let mut p = shared.lock();
            let Some(&id) = p.by_seq.get(&advisory.stream_seq) else {
                continue; // another pool's job
            };
            p.remove(id)
        };
        ready.forget(advisory.stream_seq).await;
        if let Some(entry) = entry {
            let error = TaskError::HostLost {
                deliveries: advisory.deliveries,
            };
            Shared::fail(entry, error);
        }
    }
}
