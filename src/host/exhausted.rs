//! Taking the jobs that used up their deliveries out of the work stream (a work queue keeps them
//! otherwise): a host is there when that happens (the server notices it when a host asks for
//! work); the pool that sent the job may not be. Each host reads the server's advisories from the
//! exhausted stream through a durable consumer of its own.

use std::time::Duration;

use async_nats::jetstream::stream::Stream;

use crate::worker::remote::durable::read_exhausted;

/// How long a host's consumer outlives its last pull: the server removes that of a host that was
/// killed (one that stops gracefully deletes its own).
const FORGOTTEN_AFTER: Duration = Duration::from_secs(3600);

/// A new host's consumer of the exhausted stream.
pub(super) fn consumer_name() -> String {
    format!("exhausted-host-{}", uuid::Uuid::new_v4().simple())
}

/// Reads the exhausted stream through the consumer `name`, deleting from `jobs` each job an
/// advisory names (best effort: each pool and each host does it too).
pub(super) async fn take_out(jobs: Stream, exhausted: Stream, name: String) {
    read_exhausted(exhausted, name, FORGOTTEN_AFTER, |advisory| {
        let jobs = jobs.clone();
        async move {
            let _ = jobs.delete_message(advisory.stream_seq).await;
        }
    })
    .await;
}
