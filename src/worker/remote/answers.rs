//! How answers reach a remote pool's tasks: from the results stream or as plain messages
//! ([`settle`]), and the server's advisories for jobs whose deliveries ran out, kept in a stream.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

use super::durable::{read_durable, read_exhausted, REDELIVER_AFTER};
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
        shared.answered.send_replace(());
        std::future::ready(())
    })
    .await;
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
/// An answer stored before the advisory wins over it (see [`answers_first`]): a host answers
/// before it acknowledges, so a job can run out of deliveries while its answer is already kept.
///
/// The server's advisory for such a job is a plain message, lost to a pool that is disconnected
/// when it is sent; the exhausted stream keeps it, and the pool reads it from there (from before
/// it published its first job) through a durable consumer: one read while the pool was away is
/// still there when it is back.
pub(super) async fn watch_deliveries(
    shared: Arc<Shared>,
    ready: Rc<Ready>,
    exhausted: jetstream::stream::Stream,
    results: Option<jetstream::stream::Stream>,
) {
    let name = exhausted_consumer(&shared.pool);
    let results = Rc::new(results);
    read_exhausted(exhausted, name, FORGOTTEN_AFTER, |advisory| {
        let (shared, ready, results) = (shared.clone(), ready.clone(), results.clone());
        async move {
            if let Some(results) = &*results {
                answers_first(&shared, results, advisory.stream_seq).await;
            }
            let entry = {
                let mut p = shared.lock();
                let id = p.by_seq.get(&advisory.stream_seq).copied();
                id.and_then(|id| p.remove(id))
            };
            // Every pool takes out every exhausted job it hears of, its own or another pool's
            // (that pool may be gone), as the hosts do.
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

/// How long an advisory waits at most for the pool's answers kept in the results stream: longer
/// than a kept answer takes to come again after the pull it went to was lost (see
/// `REDELIVER_AFTER`).
const ANSWERS_FIRST: Duration = Duration::from_secs(5);

/// An advisory that waits looks again at the pool's consumer of answers at each answer read, but
/// no sooner than this after its last look (answers come by the thousand in a flood), ...
const LOOK_AT_MOST_EVERY: Duration = Duration::from_millis(10);

/// ... and at least this often (an answer's ack reaches the server after the answer is read).
const LOOK_AT_LEAST_EVERY: Duration = Duration::from_millis(50);

/// Waits while the job at `job_seq` in the work stream is still pending and the pool has not read
/// every answer the results stream kept when this was called (at most [`ANSWERS_FIRST`]): its
/// consumer of the pool's answers has acknowledged every message up to the stream's last
/// sequence then, or holds nothing of the pool's at all.
///
/// A host publishes a job's answer, waits for the server to keep it, then acknowledges the job.
/// Between the two, the job can run out of deliveries: a server paused for longer than the ack
/// wait redelivers it, and the redelivery can reach a pull its host has given up on, which hands
/// it back (a nak counts as a delivery). The answer is kept by then; read first, it settles the
/// task, and the advisory finds nothing left to fail. Another pool's job, or one settled already,
/// costs no look at the server; with the server out of reach, nothing is waited for.
async fn answers_first(shared: &Shared, results: &jetstream::stream::Stream, job_seq: u64) {
    let pending = || shared.lock().by_seq.contains_key(&job_seq);
    if !pending() {
        return;
    }
    let Ok(kept) = results.get_info().await else {
        return;
    };
    let last = kept.state.last_sequence;
    let consumer = results_consumer(&shared.pool);
    let deadline = tokio::time::Instant::now() + ANSWERS_FIRST;
    let mut read = shared.answered.subscribe();
    loop {
        read.mark_unchanged();
        match results.consumer_info(&consumer).await {
            Ok(info)
                if info.ack_floor.stream_sequence < last
                    && (info.num_pending > 0 || info.num_ack_pending > 0) => {}
            _ => return,
        }
        let next = async {
            let _ = tokio::time::timeout(LOOK_AT_LEAST_EVERY, read.changed()).await;
            tokio::time::sleep(LOOK_AT_MOST_EVERY).await;
        };
        if tokio::time::timeout_at(deadline, next).await.is_err() || !pending() {
            return; // out of time, or settled (by its answer, or otherwise)
        }
    }
}
