//! [`PoolBuilder`]: sizes, channel, strategy, mode, and starting the pool.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use actix::prelude::*;

use super::core::{Mode, PoolCore, PoolRoute, WorkerRoute};
use super::{Pool, PoolHandle};
use crate::bus::{Bus, BusError};
use crate::channel::Channel;
use crate::pool::balance::{LeastLoaded, Strategy};
use crate::task::Finisher;
use crate::tree::Component;
use crate::worker::process::{ProcessConfig, ProcessWorker};
use crate::worker::thread::ThreadWorker;
use crate::worker::{Backend, Worker, WorkerSlot};

/// Why a pool could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// `min` must be at least 1 and `max` at least `min`.
    #[error("invalid pool size: min {min}, max {max} (need 1 <= min <= max)")]
    InvalidSize {
        /// The requested minimum.
        min: usize,
        /// The requested maximum.
        max: usize,
    },
    /// `start` was called outside an actix `System` (use `#[actix::main]` or `System::new`).
    #[error("a pool starts inside an actix System; call it from #[actix::main] or System::new().block_on")]
    NoSystem,
    /// This process is a pool's worker process, yet it reached code that starts a process pool: the
    /// binary's `main` does not call [`init`](crate::init) first.
    #[error("this is a worker process but circuits::init was not called first in main; call it before anything else")]
    NotInitialized,
    /// The OS refused a worker thread or process.
    #[error("could not start a worker: {0}")]
    Spawn(String),
    /// The bus refused the pool's registration.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Configures and starts a [`Pool`]. Get one from [`Pool::builder`].
///
/// ```
/// use std::time::Duration;
/// use circuits::prelude::*;
///
/// # #[actix::main] async fn main() {
/// let pool = Pool::builder()
///     .min(2)
///     .max(4)
///     .channel("crunch")
///     .strategy(RoundRobin::new())
///     .task_timeout(Duration::from_secs(30))
///     .start();
/// assert_eq!(pool.workers().len(), 2);
/// assert_eq!(pool.channel().as_str(), "crunch");
/// pool.stop().await;
/// # }
/// ```
pub struct PoolBuilder {
    min: usize,
    max: Option<usize>,
    channel: Channel,
    strategy: Box<dyn Strategy>,
    bus: Option<Bus>,
    timeout: Option<Duration>,
    mode: Mode,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("min", &self.min)
            .field("max", &self.max)
            .field("channel", &self.channel)
            .field("strategy", &self.strategy.name())
            .field("mode", &self.mode)
            .finish()
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            min: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max: None,
            channel: Channel::from("pool"),
            strategy: Box::new(LeastLoaded),
            bus: None,
            timeout: None,
            mode: Mode::Thread,
        }
    }
}

impl PoolBuilder {
    /// Workers started at startup (default: the number of CPUs).
    pub fn min(mut self, n: usize) -> Self {
        self.min = n;
        self
    }
    /// The most workers the pool may grow to (default: `min`).
    pub fn max(mut self, n: usize) -> Self {
        self.max = Some(n);
        self
    }
    /// The pool's channel on the bus (default `"pool"`).
    pub fn channel(mut self, channel: impl Into<Channel>) -> Self {
        self.channel = channel.into();
        self
    }
    /// The balancing strategy (default [`LeastLoaded`]; see [`balance`](crate::balance)).
    pub fn strategy(mut self, strategy: impl Strategy) -> Self {
        self.strategy = Box::new(strategy);
        self
    }
    /// The bus to register on (default: a new bus of the pool's own, see
    /// [`PoolHandle::bus`]).
    pub fn bus(mut self, bus: &Bus) -> Self {
        self.bus = Some(bus.clone());
        self
    }
    /// A timeout for every task that does not set its own ([`Task::timeout`](crate::Task::timeout)).
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }
    /// Process mode with default settings: each worker is a child process of this binary, which
    /// must call [`init`](crate::init) first thing in `main`. Only [`Job`](crate::Job) tasks run here.
    pub fn process(self) -> Self {
        self.process_with(ProcessConfig::default())
    }
    /// Process mode with explicit settings (frame size limit, kill grace period).
    pub fn process_with(mut self, config: ProcessConfig) -> Self {
        self.mode = Mode::Process(config);
        self
    }

    /// Starts the pool: its actor, its `min` workers on fresh UUID channels, and their components
    /// in the tree.
    ///
    /// # Panics
    ///
    /// With the message of [`PoolError`] if the pool cannot start: an invalid size, no actix
    /// `System` running, or the OS refusing a thread or process. Use
    /// [`try_start`](PoolBuilder::try_start) to handle these as errors.
    pub fn start(self) -> PoolHandle {
        match self.try_start() {
            Ok(p) => p,
            Err(e) => panic!("circuits: the pool could not start: {e}"),
        }
    }

    /// Starts the pool, or says why it could not.
    pub fn try_start(self) -> Result<PoolHandle, PoolError> {
        let max = self.max.unwrap_or(self.min);
        if self.min == 0 || max < self.min {
            return Err(PoolError::InvalidSize { min: self.min, max });
        }
        if System::try_current().is_none() {
            return Err(PoolError::NoSystem);
        }
        if matches!(self.mode, Mode::Process(_))
            && std::env::var_os(crate::worker::child::WORKER_ENV).is_some()
        {
            // A worker process got past `init`: it would start workers of its own, and so on.
            return Err(PoolError::NotInitialized);
        }
        if self.channel.is_empty() {
            return Err(BusError::EmptyChannel.into());
        }
        let bus = self.bus.unwrap_or_default();
        let core = Arc::new(PoolCore::new(
            bus.clone(),
            self.channel.clone(),
            self.strategy,
            self.mode,
            self.timeout,
        ));
        let addr = Pool { core: core.clone() }.start();
        let pool_id = bus.register(
            Component::new("pool")
                .channel(self.channel.clone())
                .stopper(addr.clone().recipient()),
        )?;
        let _ = core.component.set(pool_id);
        for _ in 0..self.min {
            if let Err(e) = add_worker(&core) {
                // Leave nothing half-started behind.
                core.bus.spawn({
                    let core = core.clone();
                    async move { core.stop(crate::worker::Shutdown::Abort).await }
                });
                return Err(e);
            }
        }
        bus.add_route(
            self.channel.clone(),
            Arc::new(PoolRoute(Arc::downgrade(&core))),
        );
        bus.mark_started(pool_id)?;
        Ok(PoolHandle { core, addr })
    }
}

/// Starts one worker: its backend, its actor, its component and its route.
pub(crate) fn add_worker(core: &Arc<PoolCore>) -> Result<Arc<WorkerSlot>, PoolError> {
    let channel = Channel::unique();
    let fin = Arc::new(Finisher::new(&core.bus, &core.channel, &channel));
    let load = Arc::new(AtomicUsize::new(0));
    let backend: Box<dyn Backend> = match &core.mode {
        Mode::Thread => Box::new(
            ThreadWorker::spawn(fin.clone(), load.clone(), core.siblings.clone())
                .map_err(|e| PoolError::Spawn(e.to_string()))?,
        ),
        Mode::Process(cfg) => Box::new(
            ProcessWorker::spawn(cfg.clone(), fin.clone(), load.clone())
                .map_err(|e| PoolError::Spawn(e.to_string()))?,
        ),
    };
    let slot = Arc::new(WorkerSlot {
        channel: RwLock::new(channel.clone()),
        load,
        fin: RwLock::new(fin),
        backend,
        component: Mutex::new(None),
        stopper: OnceLock::new(),
    });
    slot.backend
        .attach(Arc::downgrade(core), Arc::downgrade(&slot));
    let addr = Worker {
        slot: slot.clone(),
        core: core.clone(),
    }
    .start();
    let stopper = addr.recipient::<crate::tree::Stop>();
    let _ = slot.stopper.set(stopper.clone());
    let mut component = Component::new("worker")
        .channel(channel.clone())
        .stopper(stopper);
    if let Some(parent) = core.component.get() {
        component = component.parent(*parent);
    }
    let id = core.bus.register(component)?;
    *slot.component.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
    core.workers
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .push(slot.clone());
    core.bus.add_route(
        channel,
        Arc::new(WorkerRoute {
            core: Arc::downgrade(core),
            slot: Arc::downgrade(&slot),
        }),
    );
    core.bus.mark_started(id)?;
    Ok(slot)
}
