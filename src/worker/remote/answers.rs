//! How answers reach a remote pool's tasks: from the results stream or as plain messages
//! ([`settle`]), and the server's advisory for jobs whose deliveries ran out.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;

use super::broker::{self, Broker};
use super::pending::{Entry, Shared};
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
pub(super) async fn watch_deliveries(
    shared: Arc<Shared>,
    broker: Rc<Broker>,
    ready: Rc<tokio::sync::OnceCell<jetstream::stream::Stream>>,
) {
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
        if let Some(stream) = ready.get() {
            let _ = stream.delete_message(advisory.stream_seq).await;
        }
        if let Some(entry) = entry {
            let error = TaskError::HostLost {
                deliveries: advisory.deliveries,
            };
            Shared::fail(entry, error);
        }
    }
}
