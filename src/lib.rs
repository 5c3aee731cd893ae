//! # circuits
//!
//! The design of the Python [circuits] framework, brought to [actix]: an **event bus of named
//! channels**, a **component tree**, and **worker pools** whose workers run as threads, as child
//! processes or as async tasks on their own runtimes, with results published as events.
//!
//! ```
//! use circuits::prelude::*;
//!
//! fn count() -> u64 { (0..1_000_000u64).fold(0, |x, _| x + 1) }
//!
//! #[actix::main]
//! async fn main() -> Result<(), circuits::Error> {
//!     let pool = Pool::builder().min(5).max(10).start();   // thread mode; channel "pool"
//!     let x = pool.push(Task::new(count))?;               // accepted: a Value<u64, TaskError>
//!     println!("{}", x.await?);                           // after a while...
//!     pool.stop().await;                                  // drains, then stops every worker
//!     Ok(())
//! }
//! ```
//!
//! * [`Bus`]: subscribe actix recipients to typed events on channels, [`fire`](Bus::fire) and
//!   [`call`](Bus::call); handlers run highest priority first, ties in subscription order.
//! * The component tree ([`Bus::register`], [`Bus::unregister`], [`Bus::stop_component`]) with
//!   lifecycle events [`Registered`], [`Started`], [`Stopped`], [`Unregistered`].
//! * [`Pool`]: `min` workers on UUID channels, tasks balanced by a [`Strategy`], results as
//!   [`TaskSuccess`], [`TaskFailure`] and [`TaskComplete`] events on the pool's channel.
//! * Process mode ([`PoolBuilder::process`]): [`Job`]s run in child processes of the same binary,
//!   with crash isolation and real cancellation; call [`init`] first thing in `main`.
//! * Async tasks ([`Task::future`]): many in flight per worker with
//!   [`PoolBuilder::async_workers`]; one task cancelled with [`Task::cancellable`] ([`Cancel`]).
//! * Per-worker state set up once per worker (Python's `initializer=`): [`with_worker_state`],
//!   set up by [`PoolBuilder::worker_state`] (threads) or [`Jobs::worker_state`] (processes).
//! * Production options: [`Retry`], [`Priority`], recycling and resource limits in
//!   [`ProcessConfig`], [`Task::expires_after`].
//! * Looking at a pool: [`PoolHandle::stats`], [`PoolHandle::worker_info`],
//!   [`PoolHandle::recent_failures`]; with the `actix-web` feature a live dashboard page
//!   (`web::Dashboard`), with the `metrics` feature metrics through the `metrics` facade
//!   (`pool::metrics`).
//!
//! Every public type is re-exported at the crate root, and the common ones in [`prelude`]. The
//! modules explain each part at length, with examples: [`bus`], [`channel`], [`event`], [`tree`],
//! [`value`], [`task`], [`job`], [`pool`] (with [`balance`]), and with the `actix-web`
//! feature, `web`.
//!
//! Further reading, in the `docs/` directory of the crate's source: `docs/guide.md`, a tutorial
//! from `cargo add` to an elastic process pool whose results any actor can watch (every Rust
//! snippet in it is compiled as a doctest, and run unless marked `no_run`), and
//! `docs/architecture.md`, how the bus, the tree, the pools and process mode work inside.
//!
//! Platforms: thread mode and the bus run wherever actix does. Process mode needs Linux and the
//! `process` feature (on by default); elsewhere a process pool fails to start with
//! [`PoolError::Unsupported`].
//!
//! [circuits]: https://pypi.org/project/circuits/
//! [actix]: https://docs.rs/actix

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without process mode, the job encoding that only worker processes read is still built (jobs run
// in thread pools too) but parts of the wire go unused.
#![cfg_attr(
    not(all(feature = "process", target_os = "linux")),
    allow(dead_code, unused_imports)
)]
#![forbid(unsafe_op_in_unsafe_fn)]
// Docs of items every build has link to remote mode's (`PoolBuilder::nats`, `NatsConfig`), which
// exist only with the `nats` feature. The build with every feature (docs.rs's, and CI's with
// warnings denied) checks every link; without `nats` only those links break.
#![cfg_attr(not(feature = "nats"), allow(rustdoc::broken_intra_doc_links))]

pub mod bus;
pub mod channel;
mod entry;
pub mod event;
#[cfg(feature = "nats")]
mod host;
pub mod job;
pub mod pool;
mod spent;
mod state;
pub mod task;
pub mod tree;
pub mod value;
#[cfg(feature = "actix-web")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix-web")))]
pub mod web;
mod wire;
mod worker;

pub use bus::{
    AnyEvent, Bus, BusError, Debugger, Dispatch, Ordered, Subscribe, SubscriptionId, Target,
};
pub use channel::Channel;
pub use entry::init;
pub use event::{Answered, Complete, Derived, Event, Failure, Flow, Outcome, Success};
#[cfg(feature = "nats")]
pub use host::{host, HostConfig, HostError, HOST_ENV};
pub use job::{Job, Jobs};
pub use pool::balance::{
    self, BelowAverage, KeyAffinity, LeastLoaded, Loads, PowerOfTwo, Random, RoundRobin, Strategy,
};
pub use pool::{
    Latency, MapStream, Pool, PoolBuilder, PoolError, PoolHandle, PoolStats, Resizer,
    WorkerRestarted, WorkerStarted, WorkerStopped,
};
pub use state::{try_with_worker_state, with_worker_state};
pub use task::{
    job_context, BrokerError, Cancel, CancelGuard, Exit, JobContext, Limit, Priority,
    RecentFailure, Refusal, Retry, RunError, StartStage, SubmitError, Task, TaskComplete,
    TaskError, TaskFailure, TaskId, TaskOutput, TaskSuccess,
};
pub use tree::{
    Component, ComponentId, ComponentInfo, Moved, PrepareUnregister, Registered, Started, Stop,
    StopTimedOut, Stopped, Unregistered,
};
pub use value::{Abandoned, Value, WaitError};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use wire::fuzzing;
pub use wire::WireError;
pub use worker::child::WORKER_ENV;
pub use worker::info::{WorkerInfo, WorkerMode, WorkerState};
pub use worker::process::ProcessConfig;
#[cfg(feature = "nats")]
pub use worker::remote::NatsConfig;
pub use worker::Worker;

/// Any error of this crate, for `?` in applications: each operation has its own error type, and
/// every one of them converts into this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A task was accepted and ended without its result.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// A task was not accepted (the task itself, which a [`SubmitError`] hands back, is dropped
    /// by this conversion).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A bounded wait on a [`Value`] returned without its result.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// The bus refused something.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A pool could not start.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A frame broke the wire protocol.
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl<R> From<SubmitError<R>> for Error {
    fn from(e: SubmitError<R>) -> Self {
        Error::Refused(e.into_parts().0)
    }
}

impl From<RunError> for Error {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Refused(r) => Error::Refused(r),
            RunError::Task(t) => Error::Task(t),
        }
    }
}

/// The names most programs need: `use circuits::prelude::*;`.
pub mod prelude {
    pub use crate::{
        BelowAverage, Bus, Cancel, Channel, Derived, Job, Jobs, KeyAffinity, LeastLoaded, Pool,
        PoolHandle, PowerOfTwo, Priority, Random, Refusal, Retry, RoundRobin, RunError,
        SubmitError, Subscribe, Task, TaskComplete, TaskError, TaskFailure, TaskSuccess, Value,
    };
}

/// The README's examples, compiled as doctests (its dashboard needs the `actix-web` feature).
#[cfg(all(doctest, feature = "process", feature = "actix-web"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The guide's examples, compiled and run as doctests (the actix-web section needs that feature,
/// process mode its own, remote hosts `nats`).
#[cfg(all(doctest, feature = "process", feature = "actix-web", feature = "nats"))]
#[doc = include_str!("../docs/guide.md")]
pub struct GuideDoctests;

/// The guide (`docs/guide.md`): from `cargo add` to a process pool whose results any actor can
/// watch, rendered with the API docs. Its examples run as tests.
#[cfg(all(doc, not(doctest)))]
pub mod guide {
    #![doc = include_str!("../docs/guide.md")]
}

/// The architecture (`docs/architecture.md`): how the bus, the tree, the pool and the wire fit,
/// and the layer rule.
#[cfg(all(doc, not(doctest)))]
pub mod architecture {
    #![doc = include_str!("../docs/architecture.md")]
}
