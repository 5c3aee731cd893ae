//! The event bus: named channels, typed subscriptions, fire and call.
//!
//! A [`Bus`] is a cheap, cloneable handle. Actix actors subscribe a [`Recipient<E>`] to an event type
//! `E` on a channel; [`Bus::fire`] delivers an event to every subscriber of its type on the target
//! channels and on the wildcard channel `"*"`, one handler after another, **highest priority first,
//! ties in subscription order**, and returns a [`Value`] resolving to the handlers' answers in that
//! order. A fire with no subscriber resolves at once with an empty result. Firing works from any
//! thread, inside or outside an actix arbiter: delivery runs on the bus's own dispatch thread.
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

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use actix::Recipient;

use crate::channel::Channel;
use crate::channel::ComponentId;
use crate::event::{Complete, Derived, Event, Failure, Outcome, Success};
use crate::value::{promise, Value, WaitError};

/// What went wrong on the bus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// A channel name was empty; give the channel a name (or use `"*"` for every channel).
    #[error("channel names must not be empty")]
    EmptyChannel,
    /// A fire named no channel at all.
    #[error("a fire needs at least one target channel")]
    NoTarget,
    /// The actor behind a recipient has stopped, so it cannot subscribe.
    #[error("the recipient's actor has stopped; subscribe a running actor")]
    RecipientStopped,
    /// The bus was stopped with [`Bus::stop`]; it takes no more fires or subscriptions.
    #[error("the bus is stopped")]
    Stopped,
    /// No component with that id is registered.
    #[error("no component {0} is registered on this bus")]
    UnknownComponent(ComponentId),
    /// The bus could not start its dispatch thread (the OS refused a thread or a runtime).
    #[error("the bus could not start its dispatch thread: {0}")]
    Dispatcher(String),
    /// Waiting on a value failed (timeout, zero timeout, abandoned).
    #[error(transparent)]
    Wait(#[from] WaitError),
}

/// Identifies one subscription, for [`Bus::unsubscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(u64);

/// Options for [`Bus::subscribe_with`].
///
/// ```
/// use circuits::Subscribe;
/// let opts = Subscribe::new().priority(10);
/// assert_eq!(opts.priority, 10);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Subscribe {
    /// Handlers with a higher priority run first; the default is 0.
    pub priority: i32,
    /// The component the subscription belongs to: it can then be targeted directly with
    /// [`Target::Component`], and it is removed when the component is unregistered.
    pub component: Option<ComponentId>,
}

impl Subscribe {
    /// Default options: priority 0, no component.
    pub fn new() -> Self {
        Subscribe::default()
    }
    /// Sets the priority (higher runs first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
    /// Marks the subscription as belonging to a registered component.
    pub fn component(mut self, id: ComponentId) -> Self {
        self.component = Some(id);
        self
    }
}

/// Where a fire goes: one or more channels, or one component directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every subscriber of the event type on these channels, and on `"*"`. Naming `"*"` itself
    /// reaches the subscribers on every channel.
    Channels(Vec<Channel>),
    /// Only the subscriptions that belong to this component, whatever their channel.
    Component(ComponentId),
}

impl Target {
    /// The channels of a channel target (empty for a component target).
    pub fn channels(&self) -> &[Channel] {
        match self {
            Target::Channels(c) => c,
            Target::Component(_) => &[],
        }
    }
}

impl From<&str> for Target {
    fn from(s: &str) -> Self {
        Target::Channels(vec![Channel::from(s)])
    }
}
impl From<String> for Target {
    fn from(s: String) -> Self {
        Target::Channels(vec![Channel::from(s)])
    }
}
impl From<Channel> for Target {
    fn from(c: Channel) -> Self {
        Target::Channels(vec![c])
    }
}
impl From<&Channel> for Target {
    fn from(c: &Channel) -> Self {
        Target::Channels(vec![c.clone()])
    }
}
impl<C: Into<Channel>> From<Vec<C>> for Target {
    fn from(v: Vec<C>) -> Self {
        Target::Channels(v.into_iter().map(Into::into).collect())
    }
}
impl<C: Into<Channel>, const N: usize> From<[C; N]> for Target {
    fn from(v: [C; N]) -> Self {
        Target::Channels(v.into_iter().map(Into::into).collect())
    }
}
impl From<ComponentId> for Target {
    fn from(id: ComponentId) -> Self {
        Target::Component(id)
    }
}

/// Anything [`Bus::call`] can send: every [`Event`] (fired to its subscribers) and
/// [`Task`](crate::Task) (routed to the pool or worker registered under the target channel).
pub trait Dispatch {
    /// What the caller gets back.
    type Output;
    /// Sends `self` to `target` on `bus`.
    ///
    /// # Errors
    ///
    /// The crate's implementations answer with a [`Value`] that can resolve to an error, as
    /// described under [`Bus::call`].
    fn dispatch(self, bus: &Bus, target: Target) -> Self::Output;
}

impl<E: Event> Dispatch for E {
    type Output = Value<Vec<E::Result>, BusError>;
    fn dispatch(self, bus: &Bus, target: Target) -> Self::Output {
        bus.fire_with(target, self, Derived::none())
    }
}

/// A type-erased recipient, so subscriptions of every event type share one table.
trait AnyRecipient: Send + Sync {
    fn connected(&self) -> bool;
    fn as_any(&self) -> &dyn Any;
}

impl<E: Event> AnyRecipient for Recipient<E> {
    fn connected(&self) -> bool {
        Recipient::connected(self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Entry {
    id: SubscriptionId,
    channel: Channel,
    priority: i32,
    component: Option<ComponentId>,
    recipient: Arc<dyn AnyRecipient>,
}

/// Something that accepts work fired at a channel (a pool or a worker), registered by whoever
/// routes. The bus knows nothing of tasks: it hands over what the firing side gave it, and the
/// route (from the same layer as the firing side) knows its type.
pub(crate) trait Route: Send + Sync {
    /// Takes the work: queues it, or resolves it with the reason it was refused.
    fn submit(&self, work: Box<dyn Any + Send>);
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The bus's dispatch thread: a single-threaded Tokio runtime that drives deliveries, so a fire works
/// from any thread and handlers are awaited one after another.
struct Dispatcher {
    handle: tokio::runtime::Handle,
    // Dropping the sender (with the bus) ends the thread.
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Dispatcher {
    fn start() -> Result<Dispatcher, BusError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| BusError::Dispatcher(e.to_string()))?;
        let handle = rt.handle().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("circuits-bus".into())
            .spawn(move || {
                let _ = rt.block_on(rx);
            })
            .map_err(|e| BusError::Dispatcher(e.to_string()))?;
        Ok(Dispatcher {
            handle,
            _shutdown: tx,
        })
    }
}

pub(crate) struct BusInner {
    subs: RwLock<HashMap<TypeId, Vec<Entry>>>,
    /// Live subscriptions per channel, read lock-free by pools to skip building result events.
    gauges: RwLock<HashMap<Channel, Arc<AtomicUsize>>>,
    routes: RwLock<HashMap<Channel, Arc<dyn Route>>>,
    /// The component tree's state, kept here by the tree (the bus does not look inside).
    pub(crate) tree: OnceLock<Arc<dyn Any + Send + Sync>>,
    next_id: AtomicU64,
    stopped: AtomicBool,
    dispatcher: OnceLock<Result<Dispatcher, BusError>>,
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

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("subscriptions", &self.subscriptions())
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // Poisoning only records a panic elsewhere; every critical section here leaves the map whole.
    l.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Bus {
    /// A new, empty bus. Its dispatch thread starts with the first delivery.
    pub fn new() -> Bus {
        Bus {
            inner: Arc::new(BusInner {
                subs: RwLock::new(HashMap::new()),
                gauges: RwLock::new(HashMap::new()),
                routes: RwLock::new(HashMap::new()),
                tree: OnceLock::new(),
                next_id: AtomicU64::new(1),
                stopped: AtomicBool::new(false),
                dispatcher: OnceLock::new(),
            }),
        }
    }

    /// Subscribes `recipient` to events of type `E` on `channel`, with priority 0.
    ///
    /// The subscription lasts until [`unsubscribe`](Bus::unsubscribe) or until the recipient's
    /// actor stops (it is then pruned).
    ///
    /// # Errors
    ///
    /// Nothing is subscribed when:
    ///
    /// * [`BusError::EmptyChannel`]: `channel` is the empty name;
    /// * [`BusError::RecipientStopped`]: the recipient's actor has already stopped;
    /// * [`BusError::Stopped`]: the bus was [stopped](Bus::stop).
    pub fn subscribe<E: Event>(
        &self,
        channel: impl Into<Channel>,
        recipient: Recipient<E>,
    ) -> Result<SubscriptionId, BusError> {
        self.subscribe_with(channel, recipient, Subscribe::default())
    }

    /// Subscribes with a priority and/or an owning component (see [`Subscribe`]).
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Bus::subscribe), and [`BusError::UnknownComponent`] when
    /// [`Subscribe::component`] names a component that is not registered on this bus.
    pub fn subscribe_with<E: Event>(
        &self,
        channel: impl Into<Channel>,
        recipient: Recipient<E>,
        opts: Subscribe,
    ) -> Result<SubscriptionId, BusError> {
        let channel = channel.into();
        if channel.is_empty() {
            return Err(BusError::EmptyChannel);
        }
        if self.is_stopped() {
            return Err(BusError::Stopped);
        }
        if !recipient.connected() {
            return Err(BusError::RecipientStopped);
        }
        if let Some(c) = opts.component {
            if !self.is_registered(c) {
                return Err(BusError::UnknownComponent(c));
            }
        }
        let id = SubscriptionId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        self.gauge(&channel).fetch_add(1, Ordering::SeqCst);
        write(&self.inner.subs)
            .entry(TypeId::of::<E>())
            .or_default()
            .push(Entry {
                id,
                channel,
                priority: opts.priority,
                component: opts.component,
                recipient: Arc::new(recipient),
            });
        Ok(id)
    }

    /// Removes a subscription; `false` if there was none with that id.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.remove_where(|e| e.id == id) > 0
    }

    /// Removes every subscription that belongs to `component`; returns how many.
    pub(crate) fn unsubscribe_component(&self, component: ComponentId) -> usize {
        self.remove_where(|e| e.component == Some(component))
    }

    fn remove_where(&self, pred: impl Fn(&Entry) -> bool) -> usize {
        let mut removed = Vec::new();
        {
            let mut subs = write(&self.inner.subs);
            for list in subs.values_mut() {
                list.retain(|e| {
                    if pred(e) {
                        removed.push(e.channel.clone());
                        false
                    } else {
                        true
                    }
                });
            }
            subs.retain(|_, l| !l.is_empty());
        }
        for c in &removed {
            self.gauge(c).fetch_sub(1, Ordering::SeqCst);
        }
        removed.len()
    }

    /// The number of live subscriptions on the bus, after pruning those whose actor has stopped.
    pub fn subscriptions(&self) -> usize {
        self.remove_where(|e| !e.recipient.connected());
        read(&self.inner.subs).values().map(Vec::len).sum()
    }

    /// The number of live subscribers to `E` on `channel` (not counting the wildcard channel).
    pub fn subscribers<E: Event>(&self, channel: impl Into<Channel>) -> usize {
        let channel = channel.into();
        read(&self.inner.subs)
            .get(&TypeId::of::<E>())
            .map(|l| {
                l.iter()
                    .filter(|e| e.channel == channel && e.recipient.connected())
                    .count()
            })
            .unwrap_or(0)
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

    /// Fires `event` at `target` (a channel name, several, or a component) and returns the future
    /// of the handlers' answers, in dispatch order.
    ///
    /// Handlers whose actor stopped before answering are left out of the answers. A handler that
    /// answers with a failure (an `Err`, see [`Outcome`]) is not an error of the fire: its answer
    /// is in the list like any other. Dropping the value does not cancel the delivery.
    ///
    /// # Errors
    ///
    /// The value resolves at once to an error, and nothing is delivered, when:
    ///
    /// * [`BusError::Stopped`]: the bus was [stopped](Bus::stop);
    /// * [`BusError::EmptyChannel`]: one of the target channels is the empty name;
    /// * [`BusError::NoTarget`]: the target names no channel at all (an empty list).
    ///
    /// Waiting on it with a bound ([`Value::wait`]) adds [`BusError::Wait`]; so does a bus whose
    /// dispatch thread could not start ([`WaitError::Abandoned`]).
    pub fn fire<E: Event>(
        &self,
        target: impl Into<Target>,
        event: E,
    ) -> Value<Vec<E::Result>, BusError> {
        self.fire_with(target, event, Derived::none())
    }

    /// Fires like [`fire`](Bus::fire) and also fires the [`Derived`] events asked for:
    /// [`Success<E>`], [`Failure<E>`] (once per failed handler) and [`Complete<E>`], on the same
    /// channels. `Complete` comes last, after every handler has answered.
    ///
    /// # Errors
    ///
    /// As [`fire`](Bus::fire); a fire refused that way fires no derived event either.
    pub fn fire_with<E: Event>(
        &self,
        target: impl Into<Target>,
        event: E,
        derived: Derived,
    ) -> Value<Vec<E::Result>, BusError> {
        let target = target.into();
        let handlers = match self.select::<E>(&target) {
            Ok(h) => h,
            Err(e) => return Value::ready(Err(e)),
        };
        if handlers.is_empty() && !derived.any() {
            return Value::ready(Ok(Vec::new()));
        }
        let (promise, value) = promise();
        let bus = self.clone();
        self.spawn(async move {
            let channels = target.channels().to_vec();
            let handler_count = handlers.len();
            let (report, event) = deliver(handlers, event).await;
            let failures = report.failures.len();
            promise.complete(Ok(report.answers));
            if derived.failure {
                for error in report.failures {
                    let f = Failure {
                        event: event.clone(),
                        channels: channels.clone(),
                        error,
                    };
                    bus.fire_plain(&target, f).await;
                }
            }
            if derived.success && failures == 0 {
                let s = Success {
                    event: event.clone(),
                    channels: channels.clone(),
                };
                bus.fire_plain(&target, s).await;
            }
            if derived.complete {
                let c = Complete {
                    event,
                    channels,
                    handlers: handler_count,
                    failures,
                };
                bus.fire_plain(&target, c).await;
            }
        });
        value
    }

    /// Delivers an event without derived events and waits for it (used for derived and lifecycle
    /// events; errors have nowhere to go and are dropped).
    pub(crate) async fn fire_plain<E: Event>(&self, target: &Target, event: E) {
        if let Ok(handlers) = self.select::<E>(target) {
            if !handlers.is_empty() {
                deliver(handlers, event).await;
            }
        }
    }

    /// Sends anything [`Dispatch`]able: an event (as [`fire`](Bus::fire)) or a
    /// [`Task`](crate::Task), which runs on the pool or worker registered under the target channel
    /// and resolves to the task's own result.
    ///
    /// ```
    /// use circuits::prelude::*;
    ///
    /// # #[actix::main] async fn main() -> Result<(), TaskError> {
    /// let pool = Pool::builder().min(1).channel("math").start();
    /// let answer = pool.bus().call("math", Task::new(|| 6 * 7));
    /// assert_eq!(answer.await?, 42);
    /// pool.stop().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// For an event, as [`fire`](Bus::fire). For a task, the value resolves to a [`TaskError`]:
    /// [`NoRoute`](crate::TaskError::NoRoute) when the target is not exactly one channel on which
    /// a pool or one of its workers takes tasks; [`Full`](crate::TaskError::Full) when that pool is
    /// bounded and full (a call never waits for room); otherwise as
    /// [`PoolHandle::push`](crate::PoolHandle::push).
    ///
    /// [`TaskError`]: crate::TaskError
    pub fn call<D: Dispatch>(&self, target: impl Into<Target>, message: D) -> D::Output {
        message.dispatch(self, target.into())
    }

    /// The subscribers of `E` that a fire at `target` reaches, in dispatch order.
    fn select<E: Event>(&self, target: &Target) -> Result<Vec<Recipient<E>>, BusError> {
        if self.is_stopped() {
            return Err(BusError::Stopped);
        }
        if let Target::Channels(chs) = target {
            if chs.is_empty() {
                return Err(BusError::NoTarget);
            }
            if chs.iter().any(Channel::is_empty) {
                return Err(BusError::EmptyChannel);
            }
        }
        let everywhere = target.channels().iter().any(Channel::is_wildcard);
        let mut picked: Vec<(i32, u64, Recipient<E>)> = Vec::new();
        let mut dead = false;
        {
            let subs = read(&self.inner.subs);
            let Some(list) = subs.get(&TypeId::of::<E>()) else {
                return Ok(Vec::new());
            };
            for e in list {
                let hit = match target {
                    Target::Component(c) => e.component == Some(*c),
                    Target::Channels(chs) => {
                        everywhere || e.channel.is_wildcard() || chs.contains(&e.channel)
                    }
                };
                if !hit {
                    continue;
                }
                if !e.recipient.connected() {
                    dead = true;
                    continue;
                }
                if let Some(r) = e.recipient.as_any().downcast_ref::<Recipient<E>>() {
                    picked.push((e.priority, e.id.0, r.clone()));
                }
            }
        }
        if dead {
            self.remove_where(|e| !e.recipient.connected());
        }
        // Higher priority first; ties in subscription order (ids grow with time).
        picked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(picked.into_iter().map(|(_, _, r)| r).collect())
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

struct Report<R> {
    answers: Vec<R>,
    failures: Vec<String>,
}

/// Sends `event` to each handler in turn, awaiting each answer before the next handler runs.
///
/// Takes the event by value and hands it back, so the future is `Send` without `E: Sync`.
async fn deliver<E: Event>(handlers: Vec<Recipient<E>>, event: E) -> (Report<E::Result>, E) {
    let mut report = Report {
        answers: Vec::with_capacity(handlers.len()),
        failures: Vec::new(),
    };
    for h in handlers {
        match h.send(event.clone()).await {
            Ok(answer) => {
                if let Some(f) = answer.failure() {
                    report.failures.push(f);
                }
                report.answers.push(answer);
            }
            Err(e) => report
                .failures
                .push(format!("the handler's actor stopped before answering: {e}")),
        }
    }
    (report, event)
}
