//! Worker pools: the [`Pool`] actor, its [`PoolHandle`], the [`PoolBuilder`], and balancing.
//!
//! A pool registers on the bus under its channel (default `"pool"`) and starts `min` workers, each an
//! actor on a fresh UUID channel registered as the pool's child. Tasks reach it these ways, all
//! through one admission gate onto the same hot path:
//!
//! * [`PoolHandle::run`]: submit (waiting for room on a bounded pool) and await the result;
//! * [`PoolHandle::push`] (never waits) and [`PoolHandle::send`] (waits for room): the task's
//!   [`Value`](crate::Value), or the task handed back in a [`SubmitError`](crate::SubmitError);
//! * `Addr<Pool>::send(task)` as with any actix actor ([`PoolHandle::addr`]);
//! * [`Bus::call`](crate::Bus::call) at the pool's channel (balanced) or at one worker's channel
//!   (runs there);
//! * [`PoolHandle::push_to`]: to one worker, by its channel (runs there).
//!
//! Each operation has its own error: a [`Refusal`](crate::Refusal) (full, stopped, no route,
//! closure sent to a process pool) when the task was not accepted, a [`TaskError`](crate::TaskError)
//! when it was accepted and did not produce its result, a [`RunError`](crate::RunError) (one of the
//! two) where one await does both.
//!
//! When an accepted task ends, its value resolves and, if anyone subscribed on the pool's channel,
//! the pool fires exactly one [`TaskSuccess`](crate::TaskSuccess) or
//! [`TaskFailure`](crate::TaskFailure), then [`TaskComplete`](crate::TaskComplete).
//!
//! ```
//! use circuits::prelude::*;
//!
//! fn count() -> u64 { (0..1_000_000u64).fold(0, |x, _| x + 1) }
//!
//! # #[actix::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder().min(2).start();
//! let a = pool.run(Task::new(count)).await?;                  // one await
//! let b = pool.push(Task::new(count))?;                       // a Value<u64, TaskError>
//! let c = pool.addr().send(Task::new(count)).await??;         // through the actor
//! let d = pool.bus().call("pool", Task::new(count))?;         // through the bus
//! assert_eq!(a + b.await? + c + d.await?, 4_000_000);
//! pool.stop().await;
//! # Ok(()) }
//! ```
//!
//! Files: `handle` (the [`Pool`] actor and [`PoolHandle`]), `builder`, `error`, `core` (the hot
//! path and stopping), `resize` (members, the resizer, stats), `map`, `stats`, `balance`, and
//! with the `metrics` feature `metrics` (what each pool reports to the `metrics` facade).

pub mod balance;
pub(crate) mod builder;
pub(crate) mod core;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod handle;
mod leaving;
pub(crate) mod map;
pub(crate) mod members;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "nats")]
mod remote;
pub(crate) mod resize;
pub(crate) mod retry;
pub(crate) mod stats;

pub use self::events::{WorkerRestarted, WorkerStarted, WorkerStopped};
pub use self::map::MapStream;
pub use self::resize::Resizer;
pub use self::stats::{Latency, PoolStats};
pub use builder::PoolBuilder;
pub use error::PoolError;
pub use handle::{Pool, PoolHandle};
