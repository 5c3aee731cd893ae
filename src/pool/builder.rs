//! [`PoolBuilder`]: sizes, channel, strategy, mode, and starting the pool.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::core::{PoolCore, Settings};
use super::error::PoolError;
use super::handle::{Pool, PoolHandle};
use super::members::{add_worker, PoolRoute};
use super::resize::Resizer;
use crate::bus::Route;
use crate::bus::{Bus, BusError};
use crate::channel::Channel;
use crate::pool::balance::{LeastLoaded, Strategy};
use crate::state::Setups;
use crate::tree::Component;
use crate::worker::async_kind::AsyncKind;
use crate::worker::process::ProcessConfig;
use crate::worker::process::ProcessKind;
use crate::worker::restart::Restart;
use crate::worker::thread_kind::ThreadKind;
use crate::worker::{Kind, StartRefused};

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
    /// `None` until set: then the number of CPUs, lowered to `max` if that is smaller.
    min: Option<usize>,
    max: Option<usize>,
    channel: Channel,
    strategy: Box<dyn Strategy>,
    bus: Option<Bus>,
    timeout: Option<Duration>,
    /// Process mode's settings; thread mode without them.
    pub(super) process: Option<ProcessConfig>,
    /// Async workers: tasks in flight per worker, and whether on actix arbiters.
    pub(super) asynchronous: Option<(usize, bool)>,
    /// Another kind of worker (remote hosts), set by its own builder method.
    pub(super) other: Option<Arc<dyn Kind>>,
    /// Thread mode: what each worker thread sets up when it starts, and how it retries.
    setups: Setups,
    restart: Restart,
    queue_bound: Option<usize>,
    stuck_after: Option<Duration>,
    track_latency: bool,
    retry: Option<crate::task::Retry>,
    resizer: Option<Resizer>,
    stats_every: Option<Duration>,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("min", &self.min)
            .field("max", &self.max)
            .field("channel", &self.channel)
            .field("strategy", &self.strategy.name())
            .field("process", &self.process)
            .field("worker_states", &self.setups)
            .finish()
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            min: None,
            max: None,
            channel: Channel::from("pool"),
            strategy: Box::new(LeastLoaded),
            bus: None,
            timeout: None,
            process: None,
            asynchronous: None,
            other: None,
            setups: Setups::default(),
            restart: Restart::default(),
            queue_bound: None,
            stuck_after: None,
            track_latency: false,
            retry: None,
            resizer: None,
            stats_every: None,
        }
    }
}

impl Pool {
    /// A builder with the defaults: `min` = number of CPUs, `max` = `min`, channel `"pool"`,
    /// [`LeastLoaded`](crate::LeastLoaded), thread mode.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }
}

impl PoolBuilder {
    /// Workers started at startup (default: the number of CPUs, or `max` if that is smaller).
    pub fn min(mut self, n: usize) -> Self {
        self.min = Some(n);
        self
    }
    /// The most workers the pool may grow to (default: `min`). Without an explicit
    /// [`min`](Self::min), a `max` below the number of CPUs lowers the default `min` to it.
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
    /// Bounds the tasks queued or running in the pool to `n` (at least 1). When full,
    /// [`PoolHandle::send`] and [`PoolHandle::run`] wait for room (in order); [`PoolHandle::push`],
    /// [`PoolHandle::push_to`], the bus and the `Pool` actor refuse at once with
    /// [`Refusal::Full`](crate::Refusal::Full), handing the task back; the chunks of a
    /// [`PoolHandle::map`] wait inside the pool (the batch was accepted as a whole).
    pub fn queue_bound(mut self, n: usize) -> Self {
        self.queue_bound = Some(n.max(1));
        self
    }
    /// Declares a worker lost when one task runs longer than `limit`: the task fails with
    /// `TimedOut`, a replacement worker starts, and (thread mode) the stuck thread is left to finish
    /// on its own and then exits. In process mode this is a default task timeout, which kills the
    /// child.
    pub fn stuck_after(mut self, limit: Duration) -> Self {
        self.stuck_after = Some(limit);
        self
    }
    /// The retry policy of every task that has none of its own ([`Task::retry`](crate::Task::retry)):
    /// a job or a [repeatable](crate::Task::repeatable) closure that fails with an error the policy
    /// accepts runs again, keeping its id and value, and fires one terminal event with its attempt
    /// number (see [`Retry`](crate::Retry)). Costs nothing until a task fails.
    ///
    /// ```
    /// use std::time::Duration;
    /// use circuits::prelude::*;
    ///
    /// # #[actix::main] async fn main() {
    /// let pool = Pool::builder()
    ///     .min(2)
    ///     .retry(Retry::attempts(3).backoff(Duration::from_millis(50), Duration::from_secs(2)))
    ///     .start();
    /// # pool.stop().await;
    /// # }
    /// ```
    pub fn retry(mut self, policy: crate::task::Retry) -> Self {
        self.retry = Some(policy);
        self
    }
    /// Keeps run-time percentiles for [`PoolHandle::stats`] (two clock reads per task in thread
    /// and async workers; a process worker times each job from the parent, from its start in the
    /// child, as near as the parent can tell, to its answer).
    pub fn track_latency(mut self) -> Self {
        self.track_latency = true;
        self
    }
    /// How the pool grows and shrinks between `min` and `max` (a default [`Resizer`] runs whenever
    /// `max > min`).
    pub fn resizer(mut self, resizer: Resizer) -> Self {
        self.resizer = Some(resizer);
        self
    }
    /// Fires a [`PoolStats`](crate::PoolStats) event on the pool's channel every `period`.
    pub fn stats_every(mut self, period: Duration) -> Self {
        self.stats_every = Some(period);
        self
    }
    /// Process mode with default settings: each worker is a child process of this binary, which
    /// must call [`init`](crate::init) first thing in `main`. Only [`Job`](crate::Job) tasks run here.
    ///
    /// Needs Linux and the `process` feature; elsewhere [`try_start`](Self::try_start) fails with
    /// [`PoolError::Unsupported`].
    ///
    /// ```no_run
    /// use circuits::prelude::*;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Square(u64);
    ///
    /// impl Job for Square {
    ///     const NAME: &'static str = "square";
    ///     type Output = u64;
    ///     fn run(self) -> u64 { self.0 * self.0 }
    /// }
    ///
    /// fn main() {
    ///     circuits::init(Jobs::new().register::<Square>()); // first: worker processes stop here
    ///     actix::System::new().block_on(async {
    ///         let pool = Pool::builder().min(2).process().start();
    ///         assert_eq!(pool.run(Task::job(Square(9))).await, Ok(81));
    ///         pool.stop().await;
    ///     });
    /// }
    /// ```
    pub fn process(self) -> Self {
        self.process_with(ProcessConfig::default())
    }
    /// Process mode with explicit settings (frame size limit, kill grace period).
    pub fn process_with(mut self, config: ProcessConfig) -> Self {
        (self.process, self.asynchronous, self.other) = (Some(config), None, None);
        self
    }

    /// Async mode: each worker is one OS thread with a current-thread Tokio runtime, running up
    /// to `in_flight` tasks at once (at least 1), for [async tasks](crate::Task::future): HTTP
    /// calls, queries, anything that waits more than it computes. A worker takes from its queue
    /// only while it runs fewer than `in_flight`, so the rest stays queued (stolen by a sibling
    /// with room, moved on a resize); its load, which the strategy balances, is queued + in
    /// flight. Blocking tasks run there too, holding the thread (and every future on it) while
    /// they run. With [`stuck_after`](Self::stuck_after), a worker whose thread is held that long
    /// (a future that blocks, a long blocking task) has its tasks failed `TimedOut` and is
    /// replaced. Replaces an earlier [`process`](Self::process).
    ///
    /// ```
    /// use std::time::Duration;
    /// use circuits::prelude::*;
    ///
    /// # #[actix::main] async fn main() -> Result<(), circuits::Error> {
    /// let pool = Pool::builder().min(2).async_workers(64).start();
    /// let values: Vec<_> = (0..256u64)
    ///     .map(|i| pool.push(Task::future(async move {
    ///         tokio::time::sleep(Duration::from_millis(10)).await;
    ///         i
    ///     })))
    ///     .collect::<Result<_, _>>()?;
    /// let mut sum = 0;
    /// for v in values {
    ///     sum += v.await?; // 128 at a time: about 20 ms in all, not 2.5 s
    /// }
    /// assert_eq!(sum, 255 * 256 / 2);
    /// pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn async_workers(mut self, in_flight: usize) -> Self {
        (self.process, self.asynchronous, self.other) = (None, Some((in_flight, false)), None);
        self
    }

    /// [Async mode](Self::async_workers) on actix arbiters: each worker is an `actix::Arbiter`,
    /// so its tasks can start actors (`Actor::start`) and use actix's context. The rest is the
    /// same.
    pub fn async_workers_on_arbiters(mut self, in_flight: usize) -> Self {
        (self.process, self.asynchronous, self.other) = (None, Some((in_flight, true)), None);
        self
    }

    /// Adds a per-worker state of type `S`, set up by `setup` once on each worker thread before it
    /// takes its first task (Python's `ThreadPoolExecutor(initializer=...)`): open a connection or
    /// load a model once per worker, not once per task. Tasks, closures and
    /// [`Job`](crate::Job)s alike, reach it with [`with_worker_state`](crate::with_worker_state).
    /// Several types may be set up, in the order given; a later set-up of the same type replaces
    /// an earlier one. A replacement worker (one that took the place of a
    /// [stuck](Self::stuck_after) thread, or one the pool grew by) sets up its own.
    ///
    /// The set-up runs on the worker's thread, so `S` need not be `Send`. Thread mode only: the
    /// worker processes of a process pool set up the states of the [`Jobs`](crate::Jobs) their
    /// binary passes to [`init`](crate::init) ([`Jobs::worker_state`](crate::Jobs::worker_state)).
    ///
    /// ```
    /// use circuits::prelude::*;
    ///
    /// # #[actix::main] async fn main() -> Result<(), circuits::Error> {
    /// let pool = Pool::builder()
    ///     .min(2)
    ///     .worker_state(|| Ok::<_, String>(Vec::<u64>::with_capacity(1 << 10))) // a scratch buffer
    ///     .start();
    /// let sum = pool
    ///     .run(Task::new(|| {
    ///         circuits::with_worker_state(|buf: &mut Vec<u64>| {
    ///             buf.clear();
    ///             buf.extend(1..=10);
    ///             buf.iter().sum::<u64>()
    ///         })
    ///     }))
    ///     .await?;
    /// assert_eq!(sum, 55);
    /// pool.stop().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// A set-up that returns an error (or panics) fails the worker's start: the worker tries
    /// again after a back-off ([`restart_backoff`](Self::restart_backoff)) while its tasks wait,
    /// and after [`max_start_failures`](Self::max_start_failures) in a row they fail with
    /// [`TaskError::WorkerStartFailed`](crate::TaskError::WorkerStartFailed), whose `stage` is
    /// [`StartStage::WorkerState`](crate::StartStage::WorkerState) and whose `reason` carries the
    /// error's message; tasks given to it meanwhile fail at once, and it keeps trying at the
    /// slowest back-off. The pool itself starts (`start` does not wait for the set-ups).
    pub fn worker_state<S, E, F>(mut self, setup: F) -> Self
    where
        S: 'static,
        E: std::fmt::Display,
        F: Fn() -> Result<S, E> + Send + Sync + 'static,
    {
        self.setups.add(setup);
        self
    }

    /// How long a worker whose start failed waits before it tries again: `first` after the first
    /// failure, doubling with each failure in a row, at most `max` (defaults 10 ms and 5 s). A
    /// thread worker's start fails only in its [`worker_state`](Self::worker_state) set-up. After
    /// [`process`](Self::process) or [`process_with`](Self::process_with) this sets the process
    /// config's too (see [`ProcessConfig::restart_backoff`]).
    pub fn restart_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.restart = self.restart.with_backoff(first, max);
        if let Some(cfg) = self.process.take() {
            self.process = Some(cfg.restart_backoff(first, max));
        }
        self
    }

    /// How many failed starts in a row a worker may have before the tasks waiting on it fail with
    /// [`TaskError::WorkerStartFailed`](crate::TaskError::WorkerStartFailed) (default 5, at least
    /// 1); see [`worker_state`](Self::worker_state). After [`process`](Self::process) or
    /// [`process_with`](Self::process_with) this sets the process config's too (see
    /// [`ProcessConfig::max_start_failures`]).
    pub fn max_start_failures(mut self, n: usize) -> Self {
        self.restart = self.restart.with_max_failures(n);
        if let Some(cfg) = self.process.take() {
            self.process = Some(cfg.max_start_failures(n));
        }
        self
    }

    /// Starts the pool: its actor, its `min` workers on fresh UUID channels, and their components
    /// in the tree.
    ///
    /// # Panics
    ///
    /// With the message of [`PoolError`] if the pool cannot start: an invalid size, no actix
    /// `System` running, or the OS refusing a thread or process. Use
    /// [`try_start`](PoolBuilder::try_start) to handle these as errors. The panic points at the
    /// caller's line.
    #[track_caller]
    pub fn start(self) -> PoolHandle {
        match self.try_start() {
            Ok(p) => p,
            Err(e) => panic!("circuits: the pool could not start: {e}"),
        }
    }

    /// Starts the pool, or says why it could not.
    ///
    /// # Errors
    ///
    /// [`PoolError::InvalidSize`] unless `1 <= min <= max`; [`PoolError::NoSystem`] outside an
    /// actix `System`; [`PoolError::NotInitialized`] for a process pool in a worker process whose
    /// `main` skipped [`init`](crate::init); [`PoolError::Unsupported`] for a process pool where
    /// process mode is not built; [`PoolError::ChannelTaken`] when the channel already
    /// routes tasks on the bus; [`PoolError::Spawn`] when the OS refuses a worker thread or
    /// process; [`PoolError::Bus`] for an empty channel name or a bus that refuses the pool.
    ///
    pub fn try_start(self) -> Result<PoolHandle, PoolError> {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let min = self
            .min
            .unwrap_or_else(|| self.max.map_or(cpus, |max| cpus.min(max)));
        let max = self.max.unwrap_or(min);
        if min == 0 || max < min {
            return Err(PoolError::InvalidSize { min, max });
        }
        // A System must exist and be running on this thread (inside its `block_on`, an actor or
        // `#[actix::main]`): starting an actor anywhere else panics.
        if System::try_current().is_none()
            || actix::Arbiter::try_current().is_none()
            || tokio::runtime::Handle::try_current().is_err()
        {
            return Err(PoolError::NoSystem);
        }
        let kind: Arc<dyn Kind> = match (self.other, self.process, self.asynchronous) {
            (Some(other), _, _) => other,
            (None, None, Some((in_flight, arbiters))) => {
                if !self.setups.names().is_empty() {
                    tracing::warn!(states = ?self.setups, "PoolBuilder::worker_state is for thread \
                        pools; async workers do not set up worker states");
                }
                Arc::new(AsyncKind::new(in_flight, arbiters))
            }
            (None, Some(config), _) => {
                if !self.setups.names().is_empty() {
                    tracing::warn!(states = ?self.setups, "PoolBuilder::worker_state is for thread pools; \
                        the workers of a process pool set up the states of Jobs::worker_state");
                }
                Arc::new(ProcessKind(config))
            }
            (None, None, None) => Arc::new(ThreadKind::new(self.setups, self.restart)),
        };
        match kind.refuse_start() {
            Some(StartRefused::Unsupported) => return Err(PoolError::Unsupported),
            Some(StartRefused::NotInitialized) => return Err(PoolError::NotInitialized),
            None => {}
        }
        if self.channel.is_empty() {
            return Err(BusError::EmptyChannel.into());
        }
        let bus = self.bus.unwrap_or_default();
        let core = Arc::new(PoolCore::new(
            bus.clone(),
            self.channel.clone(),
            Settings {
                min,
                max,
                strategy: self.strategy,
                kind,
                default_timeout: self.timeout,
                queue_bound: self.queue_bound,
                stuck_after: self.stuck_after,
                track_latency: self.track_latency,
                retry: self.retry,
            },
        ));
        // The channel first: a pool that cannot have it starts nothing.
        let route: Arc<dyn Route> = Arc::new(PoolRoute(Arc::downgrade(&core)));
        bus.add_route(self.channel.clone(), route.clone())
            .map_err(PoolError::ChannelTaken)?;
        let _ = core.route.set(route);
        let addr = Pool { core: core.clone() }.start();
        // The tree does not keep the pool alive: the handles and addresses do.
        let registered = bus.register(
            Component::new("pool")
                .channel(self.channel.clone())
                .weak_stopper(addr.downgrade().recipient()),
        );
        let pool_id = match registered {
            Ok(id) => id,
            Err(e) => {
                core.begin_stop(crate::worker::Shutdown::Abort);
                return Err(e.into());
            }
        };
        let _ = core.component.set(pool_id);
        for _ in 0..min {
            if let Err(e) = add_worker(&core) {
                // Leave nothing half-started behind.
                core.begin_stop(crate::worker::Shutdown::Abort);
                return Err(e);
            }
        }
        bus.mark_started(pool_id)?;
        let resizer = match self.resizer {
            Some(r) => Some(r),
            None if max > min => Some(Resizer::default()),
            None => None,
        };
        if let Some(r) = resizer {
            super::resize::run_resizer(&core, r);
        }
        if let Some(every) = self.stats_every {
            super::resize::run_stats_events(&core, every);
        }
        #[cfg(feature = "metrics")]
        super::metrics::run(&core);
        Ok(PoolHandle { core, addr })
    }
}
