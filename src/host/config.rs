//! [`HostConfig`]: how a worker host runs, from code or from its environment.

use std::time::Duration;

use crate::worker::process::ProcessConfig;
use crate::worker::remote::NatsConfig;

/// The environment variable that makes [`init`](crate::init) run the binary as a worker host:
/// the server's URL. [`HostConfig::from_env`] reads the others (`CIRCUITS_NATS_SLOTS`,
/// `CIRCUITS_NATS_HELD_BYTES`, `CIRCUITS_NATS_WORKERS`, `CIRCUITS_NATS_PIPELINE`,
/// `CIRCUITS_NATS_PREFIX`, `CIRCUITS_NATS_ACK_WAIT_MS`, `CIRCUITS_NATS_MAX_DELIVER`,
/// `CIRCUITS_NATS_REPLICAS`).
pub const HOST_ENV: &str = "CIRCUITS_NATS_HOST";

/// The most bytes of jobs a host holds at once unless [`HostConfig::held_bytes`] says otherwise.
const DEFAULT_HELD_BYTES: usize = 64 << 20;

/// The most [`HostConfig::held_bytes`] can be: the server reads a pull's byte limit as an `i64`.
const MAX_HELD_BYTES: usize = i64::MAX as usize;

/// The least room in bytes a pull asks for: more than the largest job a pool sends (the server's
/// default `max_payload`, 1 MiB), so that a pull is never refused a job for its size.
pub(super) const MIN_HELD_BYTES: usize = 2 << 20;

/// How a worker host runs: which server and stream, how many jobs at once, and the settings of
/// its local process pool.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub(super) nats: NatsConfig,
    pub(super) workers: usize,
    pub(super) pipeline: usize,
    pub(super) slots: Option<usize>,
    pub(super) held_bytes: usize,
    pub(super) process: ProcessConfig,
}

impl HostConfig {
    /// A host of the stream described by `nats` (the submitting pools' settings), with as many
    /// worker processes as the machine has CPUs, each handed 4 jobs at once; the host holds
    /// about 20 ms of their work, at least 5 jobs and at most 256 per worker (see
    /// [`slots`](Self::slots)).
    pub fn new(nats: NatsConfig) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        HostConfig {
            nats,
            workers: cpus,
            pipeline: 4,
            slots: None,
            held_bytes: DEFAULT_HELD_BYTES,
            // The host's one thread also runs its server connection: it does not spin for a
            // job's answer (see `process`).
            process: ProcessConfig::default().answer_spin(std::time::Duration::ZERO),
        }
    }

    /// The settings in this process's environment: [`HOST_ENV`] (the URL; `None` without it),
    /// `CIRCUITS_NATS_WORKERS`, `CIRCUITS_NATS_PIPELINE`, `CIRCUITS_NATS_SLOTS`,
    /// `CIRCUITS_NATS_HELD_BYTES`, `CIRCUITS_NATS_PREFIX`,
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
        if let Some(n) = num("CIRCUITS_NATS_HELD_BYTES") {
            config = config.held_bytes(usize::try_from(n).unwrap_or(usize::MAX));
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
    /// per worker, at least the pipelines' worth). Within that, it holds what its workers finish
    /// in about 20 ms at the pace of its recent jobs (timed from their handing to the local pool
    /// to their outcome, so their wait in a worker's pipeline counts), and never fewer than the
    /// pipelines' worth and one more job per worker: all its slots for jobs of a few hundred
    /// microseconds or less (fewer round trips to the server), that least for jobs of a few
    /// milliseconds or more (the other jobs stay in the stream for any host that is free). While
    /// its workers are busy it pulls once a quarter of that is free, all the room it has. Jobs
    /// waiting here are handed back to the stream (nak) on a graceful stop.
    ///
    /// The pace comes from jobs that ended, and once the stream ran dry the host holds only the
    /// least again until one of the next jobs ended. Long jobs that follow short ones without
    /// such a pause are found out once none of them ended for longer than the recent average:
    /// the host then pulls no more, but what its last pull brought stays (up to these slots).
    /// Streams that mix jobs of microseconds and of minutes want a lower value.
    pub fn slots(mut self, slots: usize) -> Self {
        self.slots = Some(slots.max(1));
        self
    }

    /// The most bytes of jobs the host holds at once, counted as the server sends them (default
    /// 64 MiB; at least 2 MiB, room for the largest job a pool sends, which is under 1 MiB; at
    /// most `i64::MAX`, the server's limit, which is as good as none). A busy pull asks the server
    /// for no more than the room left, and none goes out while the room is under 2 MiB (the
    /// long poll of an idle host asks for one job), so a host of many workers and short jobs with
    /// large inputs does not hold its slots' worth of them. Give it several MiB: with a cap near
    /// 2 MiB the host pulls again only once nearly all it holds has left. A job held takes about
    /// twice its size in memory (the message and its decoded input).
    pub fn held_bytes(mut self, bytes: usize) -> Self {
        self.held_bytes = bytes.clamp(MIN_HELD_BYTES, MAX_HELD_BYTES);
        self
    }

    /// The settings of the host's local process pool (limits, frame size, grace period). The
    /// host's default turns [`ProcessConfig::answer_spin`] off: its one thread also runs its
    /// connection to the server, which a spin for one job's answer would hold up, and a few
    /// microseconds are nothing next to a round trip through the broker. A configuration given
    /// here is taken as it is.
    pub fn process(mut self, config: ProcessConfig) -> Self {
        self.process = config;
        self
    }
}
