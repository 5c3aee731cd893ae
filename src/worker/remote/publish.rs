//! Publishing a task's job: retried with the same message id until the server confirms it, then
//! its timeout watched (no host may have taken it).

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;

use super::broker::Broker;
use super::config::NatsConfig;
use super::pending::{Entry, Shared};
use super::ready::Ready;
use super::wire::{self, Request};
use crate::task::{BrokerError, TaskError};

/// Publishes a task's job until the server confirms it (the same message id each time, so the
/// stream stores it once), or fails the task at the publish deadline; then watches its timeout.
///
/// Each task's publish is a task of its own on the link's thread, alive until the server stored its
/// job (and until its timeout, when it has one): what it awaits seldom or once is boxed when it
/// starts (`await_boxed!`). Awaited in place, those waits made it 1,944 bytes (`size_of_val`,
/// session 23), past the kilobyte from which glibc's `malloc` takes its large-chunk path; now 392:
/// 5,000 tasks being published at once hold about 2 MB of these tasks, not 9.7 MB.
pub(super) async fn publish(shared: Arc<Shared>, broker: Rc<Broker>, ready: Rc<Ready>, id: u64) {
    let cfg = &shared.cfg;
    let built = {
        let p = shared.lock();
        let Some(entry) = p.by_id.get(&id) else {
            return; // settled before it was sent (cancelled)
        };
        request(cfg, &shared.pool, id, entry).map(|r| (r, entry.task.timeout(), entry.attempt))
    };
    let (bytes, timeout, attempt) = match built {
        Ok(built) => built,
        Err(error) => {
            if let Some(entry) = shared.take(id) {
                Shared::fail(entry, error);
            }
            return;
        }
    };
    let started = Instant::now();
    // Published before the work stream is made, a job would be refused ("no stream"): every
    // task would retry at once, a storm at a pool's start or a cluster's.
    if await_boxed!(tokio::time::timeout(cfg.publish_deadline, ready.wait())).is_err() {
        unreachable(&shared, id, attempt, ready.last_error());
        return;
    }
    let message_id = wire::job_id(&shared.pool, id, attempt);
    let payload = bytes::Bytes::from(bytes);
    let mut wait = Duration::from_millis(20);
    let seq = loop {
        let send = broker.js.send_publish(
            cfg.jobs_subject(),
            jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .message_id(&message_id),
        );
        // async-nats's publish future is about 800 bytes.
        let last = match await_boxed!(async { send.await?.await }) {
            Ok(ack) => break ack.sequence,
            Err(e) => e.to_string(),
        };
        if last.contains("maximum messages") || last.contains("maximum bytes") {
            if let Some(entry) = shared.take_attempt(id, attempt) {
                Shared::fail(entry, TaskError::Broker(BrokerError::Full));
            }
            return;
        }
        if started.elapsed() >= cfg.publish_deadline {
            unreachable(&shared, id, attempt, last);
            return;
        }
        tracing::debug!("circuits remote pool: publishing task {id}: {last}; again");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(500));
    };
    let recorded = {
        let mut p = shared.lock();
        match p.by_id.get_mut(&id) {
            Some(entry) if entry.attempt == attempt => {
                entry.seq = Some(seq);
                p.by_seq.insert(seq, id);
                true
            }
            _ => false,
        }
    };
    if !recorded {
        // Settled while it was being published (a cancel, its timeout): no host should run it.
        await_boxed!(ready.forget(seq));
        return;
    }
    if let Some(limit) = timeout {
        // The host enforces the timeout on the run; this ends a task that no host took in time.
        tokio::time::sleep(limit.saturating_sub(started.elapsed())).await;
        if let Some(entry) = shared.take_attempt(id, attempt) {
            let seq = entry.seq;
            Shared::fail(entry, TaskError::TimedOut(limit));
            if let Some(seq) = seq {
                await_boxed!(ready.forget(seq));
            }
        }
    }
}

/// Fails the task's `attempt` with the server unreachable past the publish deadline (`last`:
/// the last error).
fn unreachable(shared: &Shared, id: u64, attempt: u32, last: String) {
    if let Some(entry) = shared.take_attempt(id, attempt) {
        let error = BrokerError::Unreachable {
            deadline: shared.cfg.publish_deadline,
            last,
        };
        Shared::fail(entry, TaskError::Broker(error));
    }
}

/// A task's job as a message: its encoded request.
fn request(cfg: &NatsConfig, pool: &str, id: u64, entry: &Entry) -> Result<Vec<u8>, TaskError> {
    let Some(job) = entry.task.job() else {
        return Err(TaskError::Wire(crate::wire::WireError::Unexpected(
            "a task without a job in a remote pool".into(),
        )));
    };
    let inputs = job
        .inputs
        .clone()
        .map_err(|e| TaskError::Wire(crate::wire::WireError::Encode(e)))?;
    let request = Request {
        pool: pool.to_string(),
        task: id,
        attempt: entry.attempt,
        name: job.name.to_string(),
        input: inputs.into(),
        timeout_ns: entry
            .task
            .timeout()
            .map(|t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)),
        fast_answer: cfg.fast_answers.then(|| cfg.answers_subject(pool)),
    };
    wire::encode(&request).map_err(|e| TaskError::Wire(crate::wire::WireError::Encode(e)))
}
