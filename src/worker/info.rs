//! What a pool's workers are doing, one [`WorkerInfo`] each, from
//! [`PoolHandle::worker_info`](crate::PoolHandle::worker_info): for people looking at a pool (the
//! dashboard, a status endpoint). Read on demand from what the workers keep anyway; nothing is
//! added to a task's path for it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::channel::Channel;
use crate::task::TaskId;

use super::WorkerSlot;

/// How a worker runs its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkerMode {
    /// A dedicated OS thread, one task at a time.
    Thread,
    /// A child process of the application's binary ([`PoolBuilder::process`](crate::PoolBuilder::process)).
    Process,
    /// A thread with its own runtime, many async tasks at a time
    /// ([`PoolBuilder::async_workers`](crate::PoolBuilder::async_workers)).
    Async,
    /// A lane of jobs published to remote worker hosts
    /// ([`PoolBuilder::nats`](crate::PoolBuilder::nats)).
    Remote,
}

impl WorkerMode {
    /// `"thread"`, `"process"`, `"async"` or `"remote"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            WorkerMode::Thread => "thread",
            WorkerMode::Process => "process",
            WorkerMode::Async => "async",
            WorkerMode::Remote => "remote",
        }
    }
}

/// What a worker is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkerState {
    /// Running nothing.
    Idle,
    /// Running at least one task.
    Busy,
    /// A process worker whose child is starting (spawned, its handshake not yet in).
    Starting,
    /// A process worker whose last starts failed, waiting out its restart back-off (past the limit
    /// of failed handshakes, waiting for a task to ask for the next try).
    BackingOff,
}

impl WorkerState {
    /// `"idle"`, `"busy"`, `"starting"` or `"backing-off"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            WorkerState::Idle => "idle",
            WorkerState::Busy => "busy",
            WorkerState::Starting => "starting",
            WorkerState::BackingOff => "backing-off",
        }
    }
}

/// One worker of a pool, now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The worker's channel (a process worker gets a fresh one with each new child).
    pub channel: Channel,
    /// How it runs tasks.
    pub mode: WorkerMode,
    /// The child's process id (process workers, while a child is up).
    pub pid: Option<u32>,
    /// What it is doing.
    pub state: WorkerState,
    /// Tasks queued on it or running there (what the balancing strategy reads).
    pub load: usize,
    /// Tasks it is running (0 or 1; up to its limit for an async worker).
    pub running: usize,
    /// The task it is running (for an async worker, the one running longest).
    pub task: Option<TaskId>,
    /// How long that task has been running, where the worker knows: always for a process worker
    /// (since the child began it, as near as the parent can tell), for thread and async workers
    /// when the pool [tracks latency](crate::PoolBuilder::track_latency) (they read the clock
    /// at a task's start only for that).
    pub running_for: Option<Duration>,
}

/// What a backend tells about itself (the slot adds the channel and the load).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    pub(crate) mode: WorkerMode,
    pub(crate) pid: Option<u32>,
    /// `None`: busy when something runs, else idle.
    pub(crate) state: Option<WorkerState>,
    pub(crate) running: usize,
    /// The running task (the oldest), and when it started if known.
    pub(crate) task: Option<(TaskId, Option<Instant>)>,
}

impl WorkerSlot {
    /// The worker as the pool sees it now.
    pub(crate) fn info(&self) -> WorkerInfo {
        let p = self.backend.probe();
        let running = p.running;
        WorkerInfo {
            channel: self.channel(),
            mode: p.mode,
            pid: p.pid,
            state: p.state.unwrap_or(if running > 0 {
                WorkerState::Busy
            } else {
                WorkerState::Idle
            }),
            load: self.load.load(Ordering::Relaxed),
            running,
            task: p.task.map(|t| t.0),
            running_for: p.task.and_then(|t| t.1).map(|since| since.elapsed()),
        }
    }
}
