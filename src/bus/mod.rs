//! The event bus: named channels, typed subscriptions, fire and call.
//!
//! A [`Bus`] is a cheap, cloneable handle. Actix actors subscribe a [`Recipient<E>`](actix::Recipient) to an event type
//! `E` on a channel; [`Bus::fire`] delivers an event to every subscriber of its type on the target
//! channels and on the wildcard channel `"*"`, one handler after another, **highest priority first,
//! ties in subscription order**, and returns a [`Value`](crate::Value) resolving to the handlers' answers in that
//! order. A fire with no subscriber resolves at once with an empty result. Firing works from any
//! thread, inside or outside an actix arbiter: delivery runs on the bus's own dispatch thread,
//! and every subscriber gets the fires made from one thread in the order they were made (see
//! [`Ordered`] for fires that must not even overlap).
//!
//! ```
//! use actix::prelude::*;
//! use circuits::Bus;
//!
//! #[derive(Clone, Message)]
//! #[rtype(result = "String")]
//! struct Hello(&'static str);
//!
//! struct Greeter;
//! impl Actor for Greeter { type Context = Context<Self>; }
//! impl Handler<Hello> for Greeter {
//!     type Result = String;
//!     fn handle(&mut self, msg: Hello, _: &mut Context<Self>) -> String {
//!         format!("Hello, {}!", msg.0)
//!     }
//! }
//!
//! # #[actix::main] async fn main() -> Result<(), circuits::BusError> {
//! let bus = Bus::new();
//! let greeter = Greeter.start();
//! bus.subscribe("app", greeter.recipient())?;
//! let answers = bus.fire("app", Hello("world")).await?;
//! assert_eq!(answers, vec!["Hello, world!".to_string()]);
//! # Ok(()) }
//! ```
//!
//! Files: `any` (catch-all subscriptions, waiting for an event, the debugger), `core` (the shared
//! state), `target`, `error`, `subscriptions` (the API), `table` (the
//! indexed subscription table), `sync` (lock helpers), `fire`, `ordered` (fires delivered in
//! order), `dispatch` (the dispatch thread, the delivery of one event, lanes that keep deliveries
//! in order).

mod any;
mod core;
mod dispatch;
mod error;
mod fire;
mod ordered;
mod subscriptions;
mod sync;
mod table;
mod target;

pub use self::core::Bus;
pub use any::{AnyEvent, Debugger};
pub use error::BusError;
pub use fire::Dispatch;
pub use ordered::Ordered;
pub use target::{Subscribe, SubscriptionId, Target};

pub(crate) use dispatch::{after, Lane};
pub(crate) use target::Route;
