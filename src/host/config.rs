//! [`HostConfig`]: how a worker host runs, from code or from its environment.

use std::time::Duration;

use crate::worker::process::ProcessConfig;
use crate::worker::remote::NatsConfig;

/// The environment variable that makes [`init`](crate::init) run the binary as a worker host:
/// the server's URL. [`HostConfig::from_env`] reads the others (`CIRCUITS_NATS_SLOTS`,
/// `CIRCUITS_NATS_WORKERS`, `CIRCUITS_NATS_PIPELINE`, `CIRCUITS_NATS_PREFIX`, `CIRCUITS_NATS_ACK_WAIT_MS`,
/// `CIRCUITS_NATS_MAX_DELIVER`, `CIRCUITS_NATS_REPLICAS`).
pub const HOST_ENV: &str = "CIRCUITS_NATS_HOST";

/// How a worker host runs: which server and stream, how many jobs at once, and the settings of
/// its local process pool.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub(super) nats: NatsConfig,
    pub(super) workers: usize,
    pub(super) pipeline: usize,
    pub(super) slots: Option<usize>,
    pub(super) process: ProcessConfig,
}

impl HostConfig {
    /// A host of the stream described by `nats` (the submitting pools' settings), with as many
    /// worker processes as the machine has CPUs, each handed 4 jobs at once, the host holding
    /// about 20 ms of their work and at most 256 jobs per worker.
    pub fn new(nats: NatsConfig) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        HostConfig {
            nats,
            workers: cpus,
            pipeline: 4,
            slots: None,
            process: ProcessConfig::default(),
        }
    }

    /// The settings in this process's environment: [`HOST_ENV`] (the URL; `None` without it),
    /// `CIRCUITS_NATS_WORKERS`, `CIRCUITS_NATS_PIPELINE`, `CIRCUITS_NATS_SLOTS`, `CIRCUITS_NATS_PREFIX`,
    /// `CIRCUITS_NATS_ACK_WAIT_MS`, `CIRCUITS_NATS_MAX_DELIVER` and `CIRCUITS_NATS_REPLICAS`.
    pub fn from_env() -> Option<Self> {
        let url = std::env::var(HOST_ENV).ok()?;
        let var = |name| std::env::var(name).ok();
        let num = |name| var(name).and_then(|v| v.parse::<u64>().ok());
        let mut nats = NatsConfig::new(url);
        if let Some(prefix) = var("CIRCUITS_NATS_PREFIX") {
            nats = nats.prefix(prefix);
        }
        if let Some(ms) = num("CIRCUITS_NATS_ACK_WAIT_MS") {
            nats = nats.ack_wait(Duration::from_millis(ms));
        }
        if let Some(n) = num("CIRCUITS_NATS_REPLICAS") {
            nats = nats.replicas(usize::try_from(n).unwrap_or(1));
        }
        if let Some(n) = num("CIRCUITS_NATS_MAX_DELIVER") {
            nats = nats.max_deliver(u32::try_from(n).unwrap_or(u32::MAX));
        }
        let mut config = HostConfig::new(nats);
        if let Some(n) = num("CIRCUITS_NATS_WORKERS") {
            config = config.workers(usize::try_from(n).unwrap_or(1));
        }
        if let Some(n) = num("CIRCUITS_NATS_PIPELINE") {
            config = config.pipeline(usize::try_from(n).unwrap_or(1));
        }
        if let Some(n) = num("CIRCUITS_NATS_SLOTS") {
            config = config.slots(usize::try_from(n).unwrap_or(1));
        }
        Some(config)
    }

    /// How many jobs the host runs at once (at least 1): its local pool's worker processes.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// How many jobs each worker is handed at once (default 4, at least 1): the one it runs and
    /// the next ones, already on their way to its process, so that it never waits for the host
    /// between short jobs. A graceful stop lets these run; it hands back the rest.
    pub fn pipeline(mut self, jobs: usize) -> Self {
        self.pipeline = jobs.max(1);
        self
    }

    /// The most jobs the host holds at once, handed to a worker or waiting for one (default 256
    /// per worker, at least the pipelines' worth). Within that, the host holds about 20 ms of
    /// its workers' work, from how long its recent jobs took: all its slots while jobs take
    /// microseconds (fewer round trips to the server), no more than the pipelines' worth once
    /// they take tens of milliseconds or more (the other jobs stay in the stream for any host
    /// that is free). It pulls no more than that, a quarter of it at a time while its workers are
    /// busy. Jobs waiting here are handed back to the stream (nak) on a graceful stop.
    pub fn slots(mut self, slots: usize) -> Self {
        self.slots = Some(slots.max(1));
        self
    }

    /// The settings of the host's local process pool (limits, frame size, grace period).
    pub fn process(mut self, config: ProcessConfig) -> Self {
        self.process = config;
        self
    }
}
