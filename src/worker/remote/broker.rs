//! What pools and hosts do with the server: connect, and make (or find) the streams (jobs,
//! results, and the pools' exhausted jobs) and the hosts' consumer with the settings of
//! [`NatsConfig`].

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use super::config::NatsConfig;

/// A connected client and its JetStream context.
pub(crate) struct Broker {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
}

/// Connects to the server, retrying in the background: the client is returned at once and
/// requests made before the server answers wait (up to their own timeouts).
pub(crate) async fn connect(cfg: &NatsConfig) -> Result<Broker, String> {
    let client = async_nats::ConnectOptions::new()
        .name("circuits")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(Duration::from_secs(5)))
        .connect(cfg.url.split(',').map(str::trim).collect::<Vec<_>>())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", cfg.url))?;
    let js = jetstream::new(client.clone());
    Ok(Broker { client, js })
}

impl Broker {
    /// The work stream: a work queue (a job is gone once a host acknowledges it), refusing new
    /// jobs when full, deduplicating by message id for two minutes.
    pub(crate) async fn jobs_stream(&self, cfg: &NatsConfig) -> Result<stream::Stream, String> {
        self.js
            .get_or_create_stream(stream::Config {
                name: cfg.jobs_stream(),
                subjects: vec![cfg.jobs_subject()],
                retention: stream::RetentionPolicy::WorkQueue,
                discard: stream::DiscardPolicy::New,
                max_messages: cfg.max_jobs,
                max_bytes: cfg.max_bytes,
                num_replicas: cfg.replicas,
                duplicate_window: Duration::from_secs(120),
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("the work stream {}: {e}", cfg.jobs_stream()))
    }

    /// The results stream: a work queue too (an answer is gone once its pool has it), with
    /// answers for pools that went away dropped after a day.
    pub(crate) async fn results_stream(&self, cfg: &NatsConfig) -> Result<stream::Stream, String> {
        self.js
            .get_or_create_stream(stream::Config {
                name: cfg.results_stream(),
                subjects: vec![format!("{}.results.>", cfg.prefix)],
                retention: stream::RetentionPolicy::WorkQueue,
                max_age: Duration::from_secs(24 * 3600),
                num_replicas: cfg.replicas,
                duplicate_window: Duration::from_secs(120),
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("the results stream {}: {e}", cfg.results_stream()))
    }

    /// The exhausted stream: the server's advisories of jobs that used up their deliveries,
    /// kept for a day. An advisory is a plain message, lost to a pool disconnected when it is
    /// sent; kept here, it is read when the pool is back.
    pub(crate) async fn exhausted_stream(
        &self,
        cfg: &NatsConfig,
    ) -> Result<stream::Stream, String> {
        self.js
            .get_or_create_stream(stream::Config {
                name: cfg.exhausted_stream(),
                subjects: vec![max_deliveries_advisory(cfg)],
                max_age: Duration::from_secs(24 * 3600),
                num_replicas: cfg.replicas,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("the exhausted stream {}: {e}", cfg.exhausted_stream()))
    }
}

/// The consumer every host pulls jobs from, shared (durable), with the redelivery settings.
pub(crate) fn hosts_consumer(cfg: &NatsConfig) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(cfg.hosts_consumer()),
        filter_subject: cfg.jobs_subject(),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: cfg.ack_wait,
        max_deliver: cfg.max_deliver,
        max_ack_pending: cfg.max_ack_pending,
        ..Default::default()
    }
}

/// The subject of the server's advisory for a job that used up its deliveries.
pub(crate) fn max_deliveries_advisory(cfg: &NatsConfig) -> String {
    format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
        cfg.jobs_stream(),
        cfg.hosts_consumer()
    )
}
