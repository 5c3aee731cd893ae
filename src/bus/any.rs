//! Every event, whatever its type: [`AnyEvent`] (a catch-all subscription sees each event fired
//! on its channel, circuits' `_on_event`), [`Bus::next`] (wait for the next event of a type on a
//! channel, circuits' `wait`), and the [`Debugger`] that logs every event through `tracing`.

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use actix::prelude::*;

use super::core::Bus;
use super::error::BusError;
use super::target::{SubscriptionId, Target};
use crate::channel::Channel;
use crate::event::Event;
use crate::value::{promise, Promise, Value};

/// An event of any type, as a catch-all subscription gets it: subscribe a `Recipient<AnyEvent>`
/// on a channel (or `"*"`) and it sees every event fired there, before or beside its typed
/// handlers, answering nothing to the fire (circuits' `_on_event` handlers, its `Debugger`).
///
/// It carries the event's type name, the channels it was fired on, and the event itself, which
/// [`downcast`](Self::downcast) gives back as its own type. The catch-all delivery does not count
/// as a handler of the fire: it is not in the fire's answers, and its actor's speed holds back
/// nothing. A bus that never had a catch-all subscription pays one atomic load per fire.
///
/// ```
/// use actix::prelude::*;
/// use circuits::prelude::*;
/// use circuits::AnyEvent;
///
/// #[derive(Clone, Message)]
/// #[rtype(result = "()")]
/// struct Ping(u32);
///
/// struct Seen(tokio::sync::mpsc::UnboundedSender<String>);
/// impl Actor for Seen { type Context = Context<Self>; }
/// impl Handler<AnyEvent> for Seen {
///     type Result = ();
///     fn handle(&mut self, e: AnyEvent, _: &mut Context<Self>) {
///         let n = e.downcast::<Ping>().map_or(0, |p| p.0);
///         let _ = self.0.send(format!("{} {n}", e.type_name()));
///     }
/// }
///
/// # #[actix::main] async fn main() -> Result<(), circuits::Error> {
/// let bus = Bus::new();
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// bus.subscribe("*", Seen(tx).start().recipient::<AnyEvent>())?;
/// bus.fire("jobs", Ping(7)).await?; // no typed handler at all
/// let seen = rx.recv().await.unwrap();
/// assert!(seen.ends_with("Ping 7"), "{seen}");
/// # Ok(()) }
/// ```
#[derive(Clone, Message)]
#[rtype(result = "()")]
pub struct AnyEvent {
    type_name: &'static str,
    channels: Vec<Channel>,
    /// The event, cloned out by `downcast` (behind a lock: events are `Send`, not always `Sync`).
    event: Arc<Mutex<Box<dyn Any + Send>>>,
}

impl std::fmt::Debug for AnyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnyEvent")
            .field("type_name", &self.type_name)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl AnyEvent {
    fn of<E: Event>(event: &E, target: &Target) -> Self {
        AnyEvent {
            type_name: std::any::type_name::<E>(),
            channels: target.channels().to_vec(),
            event: Arc::new(Mutex::new(Box::new(event.clone()))),
        }
    }

    /// The event's Rust type name (`std::any::type_name`).
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The channels it was fired on (empty when it targeted one component).
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// Whether the event is an `E`.
    pub fn is<E: Event>(&self) -> bool {
        self.event
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is::<E>()
    }

    /// The event as its own type (a clone), if it is an `E`.
    pub fn downcast<E: Event>(&self) -> Option<E> {
        let event = self.event.lock().unwrap_or_else(|p| p.into_inner());
        event.downcast_ref::<E>().cloned()
    }
}

impl Bus {
    /// Gives the catch-all subscriptions of `target`'s channels their copy of `event` (none for an
    /// `AnyEvent` itself). Costs one atomic load on a bus that never had one.
    pub(crate) fn echo<E: Event>(&self, target: &Target, event: &E) {
        if !self.inner.catch_all.load(Ordering::Relaxed)
            || std::any::TypeId::of::<E>() == std::any::TypeId::of::<AnyEvent>()
        {
            return;
        }
        if let Ok(handlers) = self.select::<AnyEvent>(target) {
            if !handlers.is_empty() {
                drop(super::dispatch::deliver(
                    handlers,
                    AnyEvent::of(event, target),
                ));
            }
        }
    }

    /// The next event of type `E` fired on `channel` (or on any channel, with `"*"`), as a value
    /// to await or to [`wait`](Value::wait) on with a bound (circuits' `wait("event")`). Events
    /// fired before this call are not seen; the event's own handlers get it as usual.
    ///
    /// ```
    /// use std::time::Duration;
    /// use circuits::prelude::*;
    ///
    /// #[derive(Clone, actix::Message)]
    /// #[rtype(result = "()")]
    /// struct Ready;
    ///
    /// # #[actix::main] async fn main() -> Result<(), circuits::Error> {
    /// let bus = Bus::new();
    /// let mut ready = bus.next::<Ready>("app")?;
    /// bus.fire("app", Ready).await?;
    /// ready.wait(Duration::from_secs(30)).await??;
    /// # Ok(()) }
    /// ```
    ///
    /// The wait is a small actor with a catch-all subscription, which leaves when the event
    /// comes. Dropping the value before that leaves it subscribed until the next event of any
    /// type on the channel reaches it (then it sees nobody waits and goes); so do not ask for the
    /// next event of a channel that may stay silent for ever, in a loop that gives up on it.
    ///
    /// # Errors
    ///
    /// [`BusError::EmptyChannel`] for the empty name, [`BusError::Stopped`] on a stopped bus.
    /// The value resolves to [`BusError::Abandoned`] if the bus's actix `System` goes away
    /// first.
    ///
    /// # Panics
    ///
    /// Outside a running actix `System` (the waiter is an actor).
    pub fn next<E: Event>(
        &self,
        channel: impl Into<Channel>,
    ) -> Result<Value<E, BusError>, BusError> {
        let (tx, value) = promise::<E, BusError>();
        let waiter = Waiter::<E> {
            tx: Some(tx),
            id: None,
            bus: self.clone(),
        };
        let addr = Waiter::start_in_arbiter(System::current().arbiter(), |_| waiter);
        let id = self.subscribe(channel, addr.clone().recipient::<AnyEvent>())?;
        addr.do_send(Subscribed(id));
        Ok(value)
    }
}

/// Waits for one event of type `E` among the events of a catch-all subscription.
struct Waiter<E: Event> {
    tx: Option<Promise<Result<E, BusError>>>,
    id: Option<SubscriptionId>,
    bus: Bus,
}

impl<E: Event> Actor for Waiter<E> {
    type Context = Context<Self>;
    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(id) = self.id {
            self.bus.unsubscribe(id);
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Subscribed(SubscriptionId);

impl<E: Event> Handler<Subscribed> for Waiter<E> {
    type Result = ();
    fn handle(&mut self, m: Subscribed, ctx: &mut Context<Self>) {
        self.id = Some(m.0);
        if self.tx.is_none() {
            ctx.stop(); // it came before this message
        }
    }
}

impl<E: Event> Handler<AnyEvent> for Waiter<E> {
    type Result = ();
    fn handle(&mut self, e: AnyEvent, ctx: &mut Context<Self>) {
        if self.tx.as_ref().is_some_and(|tx| !tx.is_wanted()) {
            self.tx = None; // nobody waits any more
            if self.id.is_some() {
                ctx.stop();
            }
            return;
        }
        if let Some(event) = e.downcast::<E>() {
            if let Some(tx) = self.tx.take() {
                tx.complete(Ok(event));
            }
            if self.id.is_some() {
                ctx.stop();
            }
        }
    }
}

/// Logs every event fired on a channel through `tracing` (circuits' `Debugger` component): one
/// `debug` record per event, target `circuits::debugger`, with its type name and channels.
///
/// ```
/// use circuits::prelude::*;
/// use circuits::Debugger;
///
/// # #[actix::main] async fn main() -> Result<(), circuits::Error> {
/// let bus = Bus::new();
/// let _debugger = Debugger::attach(&bus, "*")?; // every event on every channel
/// # Ok(()) }
/// ```
pub struct Debugger {
    seen: u64,
}

impl Actor for Debugger {
    type Context = Context<Self>;
}

impl Debugger {
    /// Starts a debugger and subscribes it to every event on `channel` (`"*"`: all channels).
    /// It lives as long as the returned address (or the bus's subscription) does.
    ///
    /// # Errors
    ///
    /// As [`Bus::subscribe`].
    pub fn attach(bus: &Bus, channel: impl Into<Channel>) -> Result<Addr<Debugger>, BusError> {
        let addr = Debugger { seen: 0 }.start();
        bus.subscribe(channel, addr.clone().recipient::<AnyEvent>())?;
        Ok(addr)
    }
}

impl Handler<AnyEvent> for Debugger {
    type Result = ();
    fn handle(&mut self, e: AnyEvent, _: &mut Context<Self>) {
        self.seen += 1;
        let channels: Vec<&str> = e.channels().iter().map(Channel::as_str).collect();
        tracing::debug!(
            target: "circuits::debugger",
            n = self.seen,
            event = e.type_name(),
            channels = ?channels,
            "event"
        );
    }
}
