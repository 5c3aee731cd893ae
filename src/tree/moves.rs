//! Moving a subtree: [`Bus::detach`] takes a component out of its parent with its subtree intact
//! (circuits' `unregister`, which moves a component rather than destroying it, with its
//! two-stage `prepare_unregister`), and [`Bus::attach`] puts it under another parent (circuits'
//! `register` of a component that already lives).

use actix::Message;

use super::component::ComponentInfo;
use super::state::lifecycle_target;
use super::STOP_TIMEOUT;
use crate::bus::{Bus, BusError};
use crate::channel::ComponentId;
use crate::value::{promise, Value};

/// The first stage of a [`detach`](Bus::detach): fired to every component of the subtree,
/// children first, on its channel and its parent's, and awaited (each handler's answer, at most
/// the bus's stop timeout) before the subtree leaves its parent (circuits' `prepare_unregister`).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct PrepareUnregister(pub ComponentInfo);

/// A component moved with its subtree: out of a parent ([`Bus::detach`]: `to` is `None`) or
/// under one ([`Bus::attach`]). Fired on its channel and on the channels of the parents it left
/// and joined; `component` is as it is now.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Moved {
    /// The component, with its new parent.
    pub component: ComponentInfo,
    /// The parent it left, if it had one.
    pub from: Option<ComponentId>,
    /// The parent it joined, if any.
    pub to: Option<ComponentId>,
}

impl Bus {
    /// Takes `id` out of its parent with its whole subtree, which stays registered: components,
    /// subscriptions and children are kept, and `id` becomes a root that
    /// [`attach`](Bus::attach) can put under another parent (circuits' `unregister`, which
    /// detaches rather than destroys). First every component of the subtree gets
    /// [`PrepareUnregister`] (children first, each awaited); then the subtree moves and [`Moved`]
    /// is fired. The value resolves to the component as it is now. Use
    /// [`unregister`](Bus::unregister) to remove a subtree for good.
    ///
    /// ```
    /// use circuits::{Bus, Component};
    ///
    /// # #[actix::main] async fn main() -> Result<(), circuits::BusError> {
    /// let bus = Bus::new();
    /// let app = bus.register(Component::new("app"))?;
    /// let cache = bus.register(Component::new("cache").parent(app))?;
    /// let shard = bus.register(Component::new("shard").parent(cache))?;
    /// let moved = bus.detach(cache).await?;
    /// assert_eq!(moved.parent, None);
    /// assert!(bus.children(app).is_empty());
    /// assert_eq!(bus.children(cache), vec![shard]); // the subtree is intact
    /// let other = bus.register(Component::new("other"))?;
    /// bus.attach(cache, other)?;
    /// assert_eq!(bus.parent(cache), Some(other));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`BusError::UnknownComponent`] when `id` is not registered (at once, or after the first
    /// stage if it was unregistered meanwhile); [`BusError::Stopped`] on a stopped bus.
    pub fn detach(&self, id: ComponentId) -> Value<ComponentInfo, BusError> {
        if self.is_stopped() {
            return Value::ready(Err(BusError::Stopped));
        }
        let steps = {
            let tree = self.tree();
            if !tree.nodes.contains_key(&id) {
                return Value::ready(Err(BusError::UnknownComponent(id)));
            }
            tree.stop_steps(id, &Default::default())
        };
        let (tx, value) = promise();
        let bus = self.clone();
        self.spawn(async move {
            let limit = bus.tree().stop_timeout.unwrap_or(STOP_TIMEOUT);
            for (target, info, _) in steps {
                let prepare = bus.fire_plain(&target, PrepareUnregister(info));
                let _ = tokio::time::timeout(limit, prepare).await;
            }
            tx.complete(bus.move_under(id, None));
        });
        value
    }

    /// Puts `id`, with its subtree, under `parent` (leaving its parent, if it had one), and fires
    /// [`Moved`]. Lifecycle events of the subtree go to its new parent's channel from now on.
    ///
    /// # Errors
    ///
    /// [`BusError::UnknownComponent`] when either is not registered; [`BusError::WouldCycle`]
    /// when `parent` is `id` or in its subtree. Nothing changes then.
    pub fn attach(&self, id: ComponentId, parent: ComponentId) -> Result<(), BusError> {
        self.move_under(id, Some(parent)).map(|_| ())
    }

    /// Moves `id` under `to` (or to the root), in one lock, and announces it.
    fn move_under(
        &self,
        id: ComponentId,
        to: Option<ComponentId>,
    ) -> Result<ComponentInfo, BusError> {
        let mut tree = self.tree();
        let node = tree.nodes.get(&id).ok_or(BusError::UnknownComponent(id))?;
        let (from, seq, old_target) = (
            node.info.parent,
            node.seq,
            lifecycle_target(&node.info, &tree),
        );
        if let Some(p) = to {
            if !tree.nodes.contains_key(&p) {
                return Err(BusError::UnknownComponent(p));
            }
            // `p` must not be `id` or below it.
            let mut up = Some(p);
            while let Some(a) = up {
                if a == id {
                    return Err(BusError::WouldCycle(id, p));
                }
                up = tree.nodes.get(&a).and_then(|n| n.info.parent);
            }
        }
        if let Some(old) = from.and_then(|f| tree.nodes.get_mut(&f)) {
            old.children.remove(&seq);
        }
        if let Some(new) = to.and_then(|t| tree.nodes.get_mut(&t)) {
            new.children.insert(seq, id);
        }
        let info = {
            let node = tree
                .nodes
                .get_mut(&id)
                .ok_or(BusError::UnknownComponent(id))?;
            node.info.parent = to;
            node.info.clone()
        };
        // The channels of both parents hear it (the one it left, the one it joined).
        let mut target = lifecycle_target(&info, &tree);
        if let (crate::bus::Target::Channels(now), crate::bus::Target::Channels(before)) =
            (&mut target, old_target)
        {
            for c in before {
                if !now.contains(&c) {
                    now.push(c);
                }
            }
        }
        let moved = Moved {
            component: info.clone(),
            from,
            to,
        };
        self.announce_in(&mut tree, id, target, moved);
        Ok(info)
    }
}
