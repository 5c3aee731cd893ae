//! Reading a durable consumer for as long as its reader lives ([`read_durable`]: the pools'
//! answers, and the jobs that used up their deliveries, which pools and hosts both read), and the
//! server's advisory of such a job ([`Exhausted`]).

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;

/// The pulls of [`read_durable`]: each waits this long on the server at most, ...
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
pub(crate) const REDELIVER_AFTER: Duration = Duration::from_secs(2);

/// How many messages one pull asks for.
const PULL_BATCH: usize = 256;

/// The server's advisory of a job that used up its deliveries, as the exhausted stream keeps it.
#[derive(serde::Deserialize)]
pub(crate) struct Exhausted {
    /// The job's sequence in the work stream.
    pub(crate) stream_seq: u64,
    /// How many times it was delivered.
    pub(crate) deliveries: u64,
}

/// Reads the exhausted stream through the durable consumer `name` (removed by the server after
/// `idle` with no pull), handing each advisory to `each`. It reads from the stream's next
/// sequence as `exhausted` was made or found (its cached info): its reader makes it before the
/// first job it cares about goes out, so every advisory of those jobs comes later.
pub(crate) async fn read_exhausted<F, Fut>(
    exhausted: jetstream::stream::Stream,
    name: String,
    idle: Duration,
    mut each: F,
) where
    F: FnMut(Exhausted) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let config = consumer::pull::Config {
        durable_name: Some(name),
        deliver_policy: consumer::DeliverPolicy::ByStartSequence {
            start_sequence: exhausted.cached_info().state.last_sequence + 1,
        },
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: REDELIVER_AFTER,
        inactive_threshold: idle,
        ..Default::default()
    };
    read_durable(exhausted, config, |payload| {
        let advisory = serde_json::from_slice(&payload).ok().map(&mut each);
        async move {
            if let Some(handled) = advisory {
                handled.await;
            }
        }
    })
    .await;
}

/// Reads a durable consumer of `stream` made with `config` for as long as the task it runs in (made
/// again if it is gone, a new pull stream after any error), handing each message's payload to
/// `each`, then acknowledging it: a message read twice (after a reconnect) must be absorbed.
///
/// The ack is awaited here, as the floor's loop does (`benches/suite/remote.rs`): it waits only
/// while the client's queue of commands is full, and a task spawned for each one (the 408-byte
/// message and the 624-byte ack future) cost an allocation of over a kilobyte per answer.
pub(crate) async fn read_durable<F, Fut>(
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
                    tracing::warn!("circuits: the consumer {name}: {e}");
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
                tracing::warn!("circuits: reading {name}: {e}");
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
                    tracing::debug!("circuits: {name}: {e}; pulling anew");
                    tokio::time::sleep(again / 4).await;
                    break;
                }
            };
            each(message.payload.clone()).await;
            let _ = message.ack().await;
        }
    }
}
