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
//!
//! Files: `component` (what is registered, the lifecycle events), `state` (the tree's nodes and
//! walks), and here the bus's tree API: register, start, unregister, stop, and the ordered
//! announcements.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::bus::{after, Bus, BusError, Lane, Target};
use crate::channel::Channel;
pub use crate::channel::ComponentId;
use crate::value::{promise, Value};
pub use moves::{Moved, PrepareUnregister};

mod component;
mod moves;
mod state;

pub use component::{
    Component, ComponentInfo, Registered, Started, Stop, StopTimedOut, Stopped, Unregistered,
};
use state::{lifecycle_target, Farewell, Node, StopStep, TreeState};

/// How long a stop waits for one component's answer to [`Stop`] by default.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(10);

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
