//! [`NatsConfig`]: where the broker is and how its work stream behaves, shared by the submitting
//! pools ([`PoolBuilder::nats`](crate::PoolBuilder::nats)) and the worker hosts
//! ([`host`](crate::host)), which must agree on it.

use std::time::Duration;

/// How a pool reaches its remote worker hosts through a NATS JetStream server, and how the work
/// stream behaves. The submitting pools and every host use the same settings (the first one to
/// start creates the streams and the hosts' consumer with them).
///
/// ```
/// use std::time::Duration;
/// use circuits::NatsConfig;
///
/// let config = NatsConfig::new("nats://127.0.0.1:4222")
///     .ack_wait(Duration::from_secs(10))
///     .max_deliver(3)
///     .max_jobs(100_000);
/// assert_eq!(config.url(), "nats://127.0.0.1:4222");
/// ```
#[derive(Debug, Clone)]
pub struct NatsConfig {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) ack_wait: Duration,
    pub(crate) max_deliver: i64,
    pub(crate) max_ack_pending: i64,
    pub(crate) publish_deadline: Duration,
    pub(crate) replicas: usize,
    pub(crate) max_jobs: i64,
    pub(crate) max_bytes: i64,
    pub(crate) fast_answers: bool,
}

impl NatsConfig {
    /// Settings for the server at `url` (`nats://host:port`; several, comma-separated, for a
    /// cluster), with the defaults below.
    pub fn new(url: impl Into<String>) -> Self {
        NatsConfig {
            url: url.into(),
            prefix: "circuits".into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 3,
            max_ack_pending: 4096,
            publish_deadline: Duration::from_secs(30),
            replicas: 1,
            max_jobs: -1,
            max_bytes: -1,
            fast_answers: false,
        }
    }

    /// The server's address, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The name the streams, subjects and the hosts' consumer are made from (default
    /// `circuits`): the work stream is `<PREFIX>_JOBS` on subject `<prefix>.jobs`, the results
    /// stream `<PREFIX>_RESULTS` on `<prefix>.results.<pool id>`. Pools and hosts with another
    /// prefix do not see each other's jobs. Letters, digits, `-` and `_` only.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a host may hold a job without a sign of life before the server gives it to
    /// another host (default 30 s). A host signals progress every third of this while a job runs,
    /// so long jobs are fine; this is how long a dead host's job waits before its redelivery.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// How many times a job is delivered at most (default 3). A job whose hosts all went away
    /// that many times fails with [`TaskError::HostLost`](crate::TaskError::HostLost) and is
    /// removed from the stream.
    pub fn max_deliver(mut self, deliveries: u32) -> Self {
        self.max_deliver = i64::from(deliveries.max(1));
        self
    }

    /// How many jobs all hosts together may hold unacknowledged (default 4096): the server hands
    /// out no more. Each host also pulls no more than it has free slots.
    pub fn max_ack_pending(mut self, jobs: u32) -> Self {
        self.max_ack_pending = i64::from(jobs.max(1));
        self
    }

    /// How long a pool keeps trying to get a job confirmed by the server (default 30 s) before
    /// the task fails with [`BrokerError::Unreachable`](crate::BrokerError::Unreachable). Retried
    /// publishes carry the same message id, so the server stores the job once.
    pub fn publish_deadline(mut self, deadline: Duration) -> Self {
        self.publish_deadline = deadline;
        self
    }

    /// How many servers of a JetStream cluster keep each stream (default 1; 3 survives the loss
    /// of one server).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// The most jobs the work stream holds (default: no limit); past it a job fails with
    /// [`BrokerError::Full`](crate::BrokerError::Full).
    pub fn max_jobs(mut self, jobs: i64) -> Self {
        self.max_jobs = jobs;
        self
    }

    /// The most bytes the work stream holds (default: no limit); past it a job fails with
    /// [`BrokerError::Full`](crate::BrokerError::Full).
    pub fn max_bytes(mut self, bytes: i64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Answers travel as plain NATS messages to the pool, not through the results stream (default:
    /// off). Faster (the server stores and removes nothing per answer) but at most once: an answer
    /// sent while the pool is disconnected from the server is lost, and its task ends only by its
    /// own [timeout](crate::Task::timeout) (give every task one). The job itself stays
    /// durable: a host acknowledges it only after sending the answer.
    pub fn fast_answers(mut self, on: bool) -> Self {
        self.fast_answers = on;
        self
    }

    /// The subject of a pool's answers without the results stream.
    pub(crate) fn answers_subject(&self, pool: &str) -> String {
        format!("{}.answers.{pool}", self.prefix)
    }

    pub(crate) fn jobs_stream(&self) -> String {
        format!("{}_JOBS", self.prefix.to_uppercase())
    }

    pub(crate) fn jobs_subject(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    pub(crate) fn results_stream(&self) -> String {
        format!("{}_RESULTS", self.prefix.to_uppercase())
    }

    /// The stream that keeps the server's advisories of jobs whose deliveries ran out.
    pub(crate) fn exhausted_stream(&self) -> String {
        format!("{}_EXHAUSTED", self.prefix.to_uppercase())
    }

    pub(crate) fn results_subject(&self, pool: &str) -> String {
        format!("{}.results.{pool}", self.prefix)
    }

    /// The durable consumer every host pulls from.
    pub(crate) fn hosts_consumer(&self) -> String {
        format!("{}-hosts", self.prefix)
    }
}
