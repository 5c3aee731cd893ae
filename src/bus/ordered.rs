//! [`Ordered`]: a handle whose fires are delivered one after another, in the order they were made.

use std::sync::{Arc, Mutex};

use super::core::Bus;
use super::dispatch::Lane;
use super::error::BusError;
use super::target::Target;
use crate::event::{Derived, Event};
use crate::value::Value;

/// A handle on a bus whose fires are delivered strictly one after another, in the order they were
/// made: a fire's delivery (every handler, then its derived events) starts once the previous
/// fire's has ended. So every subscriber sees the fires of one `Ordered` in the order they were
/// made, whatever their handlers do; clones share the order. Get one with [`Bus::ordered`].
///
/// Plain [`Bus::fire`]s made from one thread already reach every subscriber in order, but they
/// overlap: a handler may get the next fire before the handlers after it got the previous one,
/// and an async handler that answers the second of two fires first lets it reach the next handler
/// first (what lets a handler await a fire of its own on the same channel). Use an `Ordered`
/// where fires must not overlap at all (state changes whose handlers read each other's results),
/// and do not await, inside a handler of one of its fires, another fire of the same `Ordered`: it
/// waits for the first one, which waits for the handler.
///
/// ```
/// use actix::prelude::*;
/// use circuits::Bus;
///
/// #[derive(Clone, Message)]
/// #[rtype(result = "()")]
/// struct Line(u32);
///
/// struct Log(Vec<u32>);
/// impl Actor for Log { type Context = Context<Self>; }
/// impl Handler<Line> for Log {
///     type Result = ();
///     fn handle(&mut self, l: Line, _: &mut Context<Self>) { self.0.push(l.0) }
/// }
///
/// # #[actix::main] async fn main() -> Result<(), circuits::BusError> {
/// let bus = Bus::new();
/// bus.subscribe("log", Log(Vec::new()).start().recipient())?;
/// let ordered = bus.ordered();
/// let fires: Vec<_> = (0..100).map(|i| ordered.fire("log", Line(i))).collect();
/// for f in fires {
///     f.await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Ordered {
    bus: Bus,
    last: Arc<Mutex<Option<Lane>>>,
}

impl std::fmt::Debug for Ordered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ordered").finish_non_exhaustive()
    }
}

impl Bus {
    /// A new [`Ordered`] handle: its fires reach every subscriber in the order they were made.
    pub fn ordered(&self) -> Ordered {
        Ordered {
            bus: self.clone(),
            last: Arc::new(Mutex::new(None)),
        }
    }
}

impl Ordered {
    /// Fires as [`Bus::fire`] does, delivered after this handle's earlier fires.
    ///
    /// # Errors
    ///
    /// As [`Bus::fire`].
    pub fn fire<E: Event>(
        &self,
        target: impl Into<Target>,
        event: E,
    ) -> Value<Vec<E::Result>, BusError> {
        self.fire_with(target, event, Derived::none())
    }

    /// Fires as [`Bus::fire_with`] does (with derived events), delivered after this handle's
    /// earlier fires; the next fire waits for these derived events too.
    ///
    /// # Errors
    ///
    /// As [`Bus::fire`].
    pub fn fire_with<E: Event>(
        &self,
        target: impl Into<Target>,
        event: E,
        derived: Derived,
    ) -> Value<Vec<E::Result>, BusError> {
        self.bus
            .fire_after(target.into(), event, derived, Some(&self.last), None)
    }

    /// The bus this handle fires on.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }
}
