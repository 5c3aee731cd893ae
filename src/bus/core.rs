//! The [`Bus`] itself: its shared state (subscriptions, gauges, routes, the dispatch thread, a
//! slot the component tree keeps its state in), and what needs nothing but that state.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use super::dispatch::{BoxFuture, Dispatcher};
use super::error::BusError;
use super::sync::{read, write};
use super::table::Table;
use super::target::Route;
use crate::channel::Channel;

pub(crate) struct BusInner {
    pub(super) subs: RwLock<Table>,
    /// Each subscribed actor's inbox (see `dispatch::Inbox`), held by its subscriptions.
    pub(super) inboxes: Mutex<HashMap<u64, std::sync::Weak<super::dispatch::Inbox>>>,
    /// Live subscriptions per channel, read lock-free by pools to skip building result events.
    pub(super) gauges: RwLock<HashMap<Channel, Arc<AtomicUsize>>>,
    pub(super) routes: RwLock<HashMap<Channel, Arc<dyn Route>>>,
    /// The component tree's state, kept here by the tree (the bus does not look inside).
    pub(crate) tree: OnceLock<Arc<dyn Any + Send + Sync>>,
    pub(super) next_id: AtomicU64,
    pub(super) stopped: AtomicBool,
    /// Set by the first catch-all (`AnyEvent`) subscription: only then do fires look for them.
    pub(super) catch_all: AtomicBool,
    pub(super) dispatcher: OnceLock<Result<Dispatcher, BusError>>,
}

/// The event bus: actix recipients subscribed to event types on named channels, fires and calls
/// that reach them, and the [component tree](crate::tree). Cloning gives another handle to the
/// same bus.
///
/// A [`Pool`](crate::Pool) registers on a bus (its own, or the one given to
/// [`PoolBuilder::bus`](crate::PoolBuilder::bus)) so that tasks can be [`call`](Bus::call)ed at
/// its channel and its result events reach the bus's subscribers.
///
/// ```
/// use actix::prelude::*;
/// use circuits::{Bus, Subscribe};
///
/// #[derive(Clone, Message)]
/// #[rtype(result = "String")]
/// struct Who;
///
/// struct Named(&'static str);
/// impl Actor for Named { type Context = Context<Self>; }
/// impl Handler<Who> for Named {
///     type Result = String;
///     fn handle(&mut self, _: Who, _: &mut Context<Self>) -> String { self.0.into() }
/// }
///
/// # #[actix::main] async fn main() -> Result<(), circuits::BusError> {
/// let bus = Bus::new();
/// bus.subscribe("app", Named("low").start().recipient())?;
/// bus.subscribe_with("app", Named("high").start().recipient(), Subscribe::new().priority(10))?;
/// bus.subscribe("*", Named("anywhere").start().recipient())?; // the wildcard channel
/// // Highest priority first, ties in subscription order.
/// assert_eq!(bus.fire("app", Who).await?, vec!["high", "low", "anywhere"]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Bus {
    pub(crate) inner: Arc<BusInner>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

impl Bus {
    /// A new, empty bus. Its dispatch thread starts with the first delivery.
    pub fn new() -> Bus {
        Bus {
            inner: Arc::new(BusInner {
                subs: RwLock::new(Table::default()),
                inboxes: Mutex::new(HashMap::new()),
                gauges: RwLock::new(HashMap::new()),
                routes: RwLock::new(HashMap::new()),
                tree: OnceLock::new(),
                next_id: AtomicU64::new(1),
                stopped: AtomicBool::new(false),
                catch_all: AtomicBool::new(false),
                dispatcher: OnceLock::new(),
            }),
        }
    }

    /// The live-subscription counter of a channel (created on first use).
    pub(crate) fn gauge(&self, channel: &Channel) -> Arc<AtomicUsize> {
        if let Some(g) = read(&self.inner.gauges).get(channel) {
            return g.clone();
        }
        write(&self.inner.gauges)
            .entry(channel.clone())
            .or_default()
            .clone()
    }

    /// Stops the bus: later fires resolve to [`BusError::Stopped`], subscriptions are refused.
    /// Deliveries already under way finish.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
    }

    /// Whether [`stop`](Bus::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    /// Runs a future on the bus's dispatch thread.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let fut: BoxFuture = Box::pin(fut);
        match self.inner.dispatcher.get_or_init(Dispatcher::start) {
            Ok(d) => {
                d.handle.spawn(fut);
            }
            // Without a dispatch thread the future is dropped: the promises inside it resolve as
            // abandoned, so no caller hangs.
            Err(_) => drop(fut),
        }
    }

    /// Registers the task route for a channel (a pool or one of its workers); a channel that is
    /// routed already keeps its route, and the channel comes back as the error.
    pub(crate) fn add_route(&self, channel: Channel, route: Arc<dyn Route>) -> Result<(), Channel> {
        match write(&self.inner.routes).entry(channel) {
            std::collections::hash_map::Entry::Occupied(e) => Err(e.key().clone()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(route);
                Ok(())
            }
        }
    }

    /// Removes the task route of a channel if it is `route` (a pool removes only its own).
    pub(crate) fn remove_route(&self, channel: &Channel, route: &Arc<dyn Route>) {
        let mut routes = write(&self.inner.routes);
        if routes.get(channel).is_some_and(|r| Arc::ptr_eq(r, route)) {
            routes.remove(channel);
        }
    }

    pub(crate) fn route(&self, channel: &Channel) -> Option<Arc<dyn Route>> {
        read(&self.inner.routes).get(channel).cloned()
    }
}
