//! The component tree: components register under a parent, so a subtree is unregistered or
//! stopped as one, and the tree announces [`Registered`], [`Started`], [`Stopped`] and
//! [`Unregistered`] on the bus.
//!
//! A component is usually an actix actor. It registers with a name, a channel and optionally a
//! parent and a [`Recipient<Stop>`](Stop) so that [`Bus::stop_component`] can stop it. Lifecycle
//! events are fired on the component's own channel and on its parent's channel.
//!
//! ```
//! use circuits::{Bus, Component};
//!
//! let bus = Bus::new();
//! let app = bus.register(Component::new("app").channel("app")).unwrap();
//! let db = bus.register(Component::new("db").parent(app)).unwrap();
//! assert_eq!(bus.children(app), vec![db]);
//! let removed = bus.unregister(app).unwrap();
//! assert_eq!(removed, vec![db, app]); // children first
//! assert!(bus.components().is_empty());
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::{Message, Recipient, WeakRecipient};

use crate::bus::{after, Bus, BusError, Lane, Target};
use crate::channel::Channel;
pub use crate::channel::ComponentId;
use crate::value::{promise, Promise, Value};

/// The message the tree sends to stop a component. Implement `Handler<Stop>` (usually calling
/// `ctx.stop()`) and register with [`Component::stopper`] to be stoppable with the tree.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Stop;

/// A description of a component to register: name, channel, parent, and how to stop it.
#[derive(Clone)]
pub struct Component {
    name: String,
    channel: Option<Channel>,
    parent: Option<ComponentId>,
    stopper: Option<Stopper>,
}

/// Where the tree sends [`Stop`]: an address that keeps the actor alive while it is registered, or
/// one that does not.
#[derive(Clone)]
enum Stopper {
    Strong(Recipient<Stop>),
    Weak(WeakRecipient<Stop>),
}

impl Stopper {
    fn get(&self) -> Option<Recipient<Stop>> {
        match self {
            Stopper::Strong(r) => Some(r.clone()),
            Stopper::Weak(w) => w.upgrade(),
        }
    }
}

impl Component {
    /// A component named `name`, on a fresh UUID channel unless [`channel`](Component::channel)
    /// names one, with no parent.
    pub fn new(name: impl Into<String>) -> Self {
        Component {
            name: name.into(),
            channel: None,
            parent: None,
            stopper: None,
        }
    }
    /// The channel the component lives on.
    pub fn channel(mut self, channel: impl Into<Channel>) -> Self {
        self.channel = Some(channel.into());
        self
    }
    /// The parent it registers under.
    pub fn parent(mut self, parent: ComponentId) -> Self {
        self.parent = Some(parent);
        self
    }
    /// Where to send [`Stop`] when the component (or an ancestor) is stopped. The tree holds this
    /// address, so the actor lives at least as long as it is registered.
    pub fn stopper(mut self, stopper: Recipient<Stop>) -> Self {
        self.stopper = Some(Stopper::Strong(stopper));
        self
    }
    /// Like [`stopper`](Component::stopper), but the tree does not keep the actor alive: an actor
    /// that stopped for want of other addresses is skipped when the tree is stopped. Pools register
    /// this way, so that a pool nobody can reach any more stops itself.
    pub fn weak_stopper(mut self, stopper: WeakRecipient<Stop>) -> Self {
        self.stopper = Some(Stopper::Weak(stopper));
        self
    }
}

/// What the tree knows of a registered component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    /// Its id.
    pub id: ComponentId,
    /// Its name.
    pub name: String,
    /// Its channel.
    pub channel: Channel,
    /// Its parent, if any.
    pub parent: Option<ComponentId>,
}

/// Fired when a component registers.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Registered(pub ComponentInfo);

/// Fired when a component says it is ready ([`Bus::mark_started`]).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Started(pub ComponentInfo);

/// Fired when a component has been sent [`Stop`] and handled it (or did not answer in time: then
/// [`StopTimedOut`] comes first).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Stopped(pub ComponentInfo);

/// Fired when a component did not answer [`Stop`] within the bus's stop timeout
/// ([`Bus::set_stop_timeout`]): the stop went on without it (its actor may still run; the tree no
/// longer holds it).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct StopTimedOut(pub ComponentInfo);

/// How long a stop waits for one component's answer to [`Stop`] by default.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Fired when a component leaves the tree.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Unregistered(pub ComponentInfo);

struct Node {
    info: ComponentInfo,
    /// When it registered, in the tree's own count (its key among its parent's children).
    seq: u64,
    /// Its children by registration order: in order, and each removed without a scan.
    children: BTreeMap<u64, ComponentId>,
    stopper: Option<Stopper>,
    /// The component's last lifecycle announcement: the next one is delivered after it, so every
    /// subscriber sees `Registered`, `Started` and `Unregistered` of one component in that order,
    /// whatever threads register, start and unregister it.
    lane: Option<Lane>,
}

/// The tree itself, kept inside the bus.
#[derive(Default)]
pub(crate) struct TreeState {
    nodes: HashMap<ComponentId, Node>,
    /// Registrations so far (gives each node its `seq`).
    registered: u64,
    /// Stops under way: the callers waiting for each (a second stop of the same component joins
    /// the first instead of stopping everything twice).
    stopping: HashMap<ComponentId, Vec<StopWaiter>>,
    /// How long a stop waits for one component's answer (`None`: the default).
    stop_timeout: Option<Duration>,
}

/// A caller waiting for a stop under way.
type StopWaiter = Promise<Result<Vec<ComponentId>, BusError>>;

/// One component to stop: where its lifecycle events go, what it is, its stopper.
type StopStep = (Target, ComponentInfo, Option<Recipient<Stop>>);

/// A component that left the tree: where its `Unregistered` goes, what it was, its last
/// announcement (to come after).
type Farewell = (Target, ComponentInfo, Option<Lane>);

impl TreeState {
    /// The components of `id`'s subtree not in `skip`, children first, with what stopping each
    /// needs.
    fn stop_steps(&self, id: ComponentId, skip: &HashSet<ComponentId>) -> Vec<StopStep> {
        let mut order = Vec::new();
        self.post_order(id, &mut order);
        order
            .into_iter()
            .filter(|c| !skip.contains(c))
            .filter_map(|c| {
                self.nodes.get(&c).map(|n| {
                    (
                        lifecycle_target(&n.info, self),
                        n.info.clone(),
                        n.stopper.as_ref().and_then(Stopper::get),
                    )
                })
            })
            .collect()
    }

    /// Takes `id`'s subtree out of the tree; returns its ids (children first) and the
    /// `Unregistered` announcements to make (each after its component's earlier ones).
    fn remove_subtree(&mut self, id: ComponentId) -> (Vec<ComponentId>, Vec<Farewell>) {
        let root = self
            .nodes
            .get(&id)
            .and_then(|n| Some((n.info.parent?, n.seq)));
        let mut removed = Vec::new();
        self.post_order(id, &mut removed);
        let targets: Vec<_> = removed
            .iter()
            .filter_map(|c| Some(lifecycle_target(&self.nodes.get(c)?.info, self)))
            .collect();
        let announcements: Vec<Farewell> = removed
            .iter()
            .filter_map(|c| self.nodes.remove(c))
            .zip(targets)
            .map(|(node, target)| (target, node.info, node.lane))
            .collect();
        if let Some((parent, seq)) = root {
            if let Some(p) = self.nodes.get_mut(&parent) {
                p.children.remove(&seq);
            }
        }
        // Memory returns when components go, not only their entries.
        if self.nodes.capacity() > 64 && self.nodes.len() < self.nodes.capacity() / 4 {
            self.nodes.shrink_to_fit();
        }
        (removed, announcements)
    }

    /// The subtree under `id`, children before parents (the order things stop in).
    ///
    /// Iterative (an explicit stack, no recursion), so a tree of any depth is walked without
    /// growing the thread's stack.
    fn post_order(&self, id: ComponentId, out: &mut Vec<ComponentId>) {
        if !self.nodes.contains_key(&id) {
            return;
        }
        // Each entry: a node and its children not pushed yet.
        let children = |c: &ComponentId| self.nodes.get(c).map(|n| n.children.values());
        let mut stack = vec![(id, children(&id))];
        while let Some((node, rest)) = stack.last_mut() {
            match rest.as_mut().and_then(Iterator::next) {
                Some(child) => {
                    if self.nodes.contains_key(child) {
                        stack.push((*child, children(child)));
                    }
                }
                None => {
                    out.push(*node);
                    stack.pop();
                }
            }
        }
    }
}

fn lifecycle_target(info: &ComponentInfo, tree: &TreeState) -> Target {
    let mut chans = vec![info.channel.clone()];
    if let Some(p) = info.parent.and_then(|p| tree.nodes.get(&p)) {
        if p.info.channel != info.channel {
            chans.push(p.info.channel.clone());
        }
    }
    Target::Channels(chans)
}

impl Bus {
    /// How long [`stop_component`](Bus::stop_component) waits for each component to answer
    /// [`Stop`] (default 10 s). A component that does not answer in time gets [`StopTimedOut`],
    /// then [`Stopped`], and the stop goes on.
    pub fn set_stop_timeout(&self, limit: Duration) {
        self.tree().stop_timeout = Some(limit);
    }

    fn tree(&self) -> std::sync::MutexGuard<'_, TreeState> {
        // The bus knows nothing of the tree: the tree keeps its state in the bus's extension slot.
        let state = self
            .inner
            .tree
            .get_or_init(|| Arc::new(std::sync::Mutex::new(TreeState::default())));
        let state = state
            .downcast_ref::<std::sync::Mutex<TreeState>>()
            .expect("the bus's tree slot holds the tree's state");
        // Every critical section leaves the tree whole, so a poisoned lock is still usable.
        state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a component and fires [`Registered`] on its channel and its parent's. Returns
    /// its new id.
    ///
    /// # Errors
    ///
    /// Nothing is registered when:
    ///
    /// * [`BusError::UnknownComponent`]: the [`parent`](Component::parent) is not registered on
    ///   this bus;
    /// * [`BusError::EmptyChannel`]: the [`channel`](Component::channel) is the empty name;
    /// * [`BusError::Stopped`]: the bus was [stopped](Bus::stop).
    pub fn register(&self, component: Component) -> Result<ComponentId, BusError> {
        if self.is_stopped() {
            return Err(BusError::Stopped);
        }
        let channel = component.channel.unwrap_or_else(Channel::unique);
        if channel.is_empty() {
            return Err(BusError::EmptyChannel);
        }
        let id = ComponentId::new();
        let info = ComponentInfo {
            id,
            name: component.name,
            channel,
            parent: component.parent,
        };
        let mut tree = self.tree();
        let seq = tree.registered;
        if let Some(p) = component.parent {
            match tree.nodes.get_mut(&p) {
                Some(parent) => parent.children.insert(seq, id),
                None => return Err(BusError::UnknownComponent(p)),
            };
        }
        tree.registered += 1;
        let target = lifecycle_target(&info, &tree);
        tree.nodes.insert(
            id,
            Node {
                info: info.clone(),
                seq,
                children: BTreeMap::new(),
                stopper: component.stopper,
                lane: None,
            },
        );
        self.announce_in(&mut tree, id, target, Registered(info));
        Ok(id)
    }

    /// Fires [`Started`] for a registered component (call it once the component is ready).
    ///
    /// # Errors
    ///
    /// [`BusError::UnknownComponent`] when `id` is not registered on this bus (never was, or was
    /// unregistered); nothing is fired.
    pub fn mark_started(&self, id: ComponentId) -> Result<(), BusError> {
        let mut tree = self.tree();
        let node = tree.nodes.get(&id).ok_or(BusError::UnknownComponent(id))?;
        let (target, info) = (lifecycle_target(&node.info, &tree), node.info.clone());
        self.announce_in(&mut tree, id, target, Started(info));
        Ok(())
    }

    /// Unregisters `id` and everything below it, children first: removes their subscriptions and
    /// fires [`Unregistered`] for each. Returns the removed ids in that order.
    ///
    /// It does not stop the components' actors: [`stop_component`](Bus::stop_component) does.
    ///
    /// # Errors
    ///
    /// [`BusError::UnknownComponent`] when `id` is not registered on this bus (never was, or was
    /// unregistered already); nothing changes.
    pub fn unregister(&self, id: ComponentId) -> Result<Vec<ComponentId>, BusError> {
        let (removed, announcements) = {
            let mut tree = self.tree();
            if !tree.nodes.contains_key(&id) {
                return Err(BusError::UnknownComponent(id));
            }
            tree.remove_subtree(id)
        };
        self.removed(&removed, announcements);
        Ok(removed)
    }

    /// After a subtree left the tree: its subscriptions go, `Unregistered` is announced.
    fn removed(&self, removed: &[ComponentId], announcements: Vec<Farewell>) {
        for c in removed {
            self.unsubscribe_component(*c);
        }
        for (target, info, lane) in announcements {
            if !self.is_stopped() {
                // Spawned: it runs whether or not anyone awaits it.
                drop(self.deliver_after(lane, target, Unregistered(info)));
            }
        }
    }

    /// Unregisters the subtree of `id` if every component in it is in `stopped`; otherwise says
    /// which are not (registered while the stop was under way) without removing anything. One
    /// lock: nothing can join the subtree between the check and the removal.
    fn unregister_stopped(
        &self,
        id: ComponentId,
        stopped: &HashSet<ComponentId>,
    ) -> Result<Result<Vec<ComponentId>, Vec<StopStep>>, BusError> {
        let (removed, announcements) = {
            let mut tree = self.tree();
            if !tree.nodes.contains_key(&id) {
                return Err(BusError::UnknownComponent(id));
            }
            let more = tree.stop_steps(id, stopped);
            if !more.is_empty() {
                return Ok(Err(more));
            }
            tree.remove_subtree(id)
        };
        self.removed(&removed, announcements);
        Ok(Ok(removed))
    }

    /// Stops `id` and its subtree, children first: sends each component that registered a stopper
    /// the [`Stop`] message and waits for it to be handled, fires [`Stopped`] for each, then
    /// unregisters the subtree. The value resolves to the stopped ids, children first.
    ///
    /// A component registered into the subtree while the stop runs is stopped too (after the
    /// others), before the subtree leaves the tree.
    ///
    /// The stop runs on the bus's dispatch thread: dropping the value does not cancel it. A second
    /// stop of the same component while one is under way joins it: each component gets one `Stop`
    /// and one `Stopped`, and both callers get the same answer.
    ///
    /// # Errors
    ///
    /// The value resolves to [`BusError::UnknownComponent`] at once, stopping nothing, when `id`
    /// is not registered on this bus; and to the same error after the stop messages were sent if
    /// the subtree was unregistered by someone else meanwhile. A stopper whose actor has already
    /// stopped is not an error. [`BusError::Abandoned`] comes from a bus whose dispatch thread could
    /// not start.
    pub fn stop_component(&self, id: ComponentId) -> Value<Vec<ComponentId>, BusError> {
        let (promise, value) = promise();
        let first = {
            let mut tree = self.tree();
            if let Some(waiting) = tree.stopping.get_mut(&id) {
                // A stop of this component is under way: join it.
                waiting.push(promise);
                return value;
            }
            if !tree.nodes.contains_key(&id) {
                return Value::ready(Err(BusError::UnknownComponent(id)));
            }
            tree.stopping.insert(id, Vec::new());
            tree.stop_steps(id, &HashSet::new())
        };
        let bus = self.clone();
        self.spawn(async move {
            let mut stopped = Vec::new();
            let mut done = HashSet::new();
            let mut steps = first;
            let result = loop {
                let limit = bus.tree().stop_timeout.unwrap_or(STOP_TIMEOUT);
                for (target, info, stopper) in steps {
                    // Its earlier announcements (`Registered`, `Started`) reach subscribers
                    // first; bounded, in case one of their handlers waits for this stop.
                    let lane = bus.tree().nodes.get(&info.id).and_then(|n| n.lane.clone());
                    if let Some(lane) = lane {
                        let _ = tokio::time::timeout(limit, lane).await;
                    }
                    if let Some(s) = stopper {
                        // An actor that already stopped has nothing left to stop: not an error.
                        // One that does not answer in time is said so, and the stop goes on.
                        if tokio::time::timeout(limit, s.send(Stop)).await.is_err() {
                            bus.fire_plain(&target, StopTimedOut(info.clone())).await;
                        }
                    }
                    done.insert(info.id);
                    stopped.push(info.id);
                    bus.fire_plain(&target, Stopped(info)).await;
                }
                // Components registered into the subtree meanwhile are stopped too, before the
                // subtree leaves the tree.
                match bus.unregister_stopped(id, &done) {
                    Ok(Ok(_)) => break Ok(std::mem::take(&mut stopped)),
                    Ok(Err(more)) => steps = more,
                    Err(e) => break Err(e),
                }
            };
            let joined = bus.tree().stopping.remove(&id).unwrap_or_default();
            for other in joined {
                other.complete(result.clone());
            }
            promise.complete(result);
        });
        value
    }

    /// Announces `event` of component `id` after its earlier announcements (called under the
    /// tree's lock, so the order of announcements is the order of the changes).
    fn announce_in<E: crate::event::Event>(
        &self,
        tree: &mut TreeState,
        id: ComponentId,
        target: Target,
        event: E,
    ) {
        if self.is_stopped() {
            return;
        }
        let Some(node) = tree.nodes.get_mut(&id) else {
            return;
        };
        let previous = node.lane.take();
        node.lane = Some(self.deliver_after(previous, target, event));
    }

    /// Delivers `event` on the dispatch thread once `previous` is delivered; returns the delivery.
    fn deliver_after<E: crate::event::Event>(
        &self,
        previous: Option<Lane>,
        target: Target,
        event: E,
    ) -> Lane {
        // The handlers are taken now, as a fire takes them when it is made.
        let delivery = self.plain_delivery(&target, event);
        let lane = after(previous, async move {
            delivery.await;
        });
        self.spawn(lane.clone());
        lane
    }

    /// What the tree knows of `id`, if it is registered.
    pub fn component(&self, id: ComponentId) -> Option<ComponentInfo> {
        self.tree().nodes.get(&id).map(|n| n.info.clone())
    }

    /// Whether `id` is registered.
    pub fn is_registered(&self, id: ComponentId) -> bool {
        self.tree().nodes.contains_key(&id)
    }

    /// Runs `f` while the tree holds `id` (under the tree's lock), or returns `None` if it does
    /// not. Locks are taken tree first, subscriptions second, everywhere.
    pub(crate) fn while_registered<R>(&self, id: ComponentId, f: impl FnOnce() -> R) -> Option<R> {
        let tree = self.tree();
        tree.nodes.contains_key(&id).then(f)
    }

    /// The children of `id`, in registration order (empty if none or unknown).
    pub fn children(&self, id: ComponentId) -> Vec<ComponentId> {
        self.tree()
            .nodes
            .get(&id)
            .map(|n| n.children.values().copied().collect())
            .unwrap_or_default()
    }

    /// The parent of `id`, if it has one.
    pub fn parent(&self, id: ComponentId) -> Option<ComponentId> {
        self.tree().nodes.get(&id).and_then(|n| n.info.parent)
    }

    /// Every registered component, in no particular order.
    pub fn components(&self) -> Vec<ComponentInfo> {
        self.tree().nodes.values().map(|n| n.info.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_that_left_give_their_memory_back() {
        let bus = Bus::new();
        let parent = bus.register(Component::new("parent")).unwrap();
        let ids: Vec<_> = (0..20_000)
            .map(|i| {
                bus.register(Component::new(format!("c{i}")).parent(parent))
                    .unwrap()
            })
            .collect();
        for id in ids {
            bus.unregister(id).unwrap();
        }
        let tree = bus.tree();
        assert_eq!(tree.nodes.len(), 1);
        // The old tree kept room for all 20,000 (about 129 bytes each) for ever.
        assert!(
            tree.nodes.capacity() < 1_000,
            "room kept for {} components",
            tree.nodes.capacity()
        );
        assert!(tree.nodes[&parent].children.is_empty());
    }
}
