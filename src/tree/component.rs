//! What the tree is made of and what it says: [`Component`] (a description to register),
//! [`ComponentInfo`] (a registered one), the [`Stop`] message, and the lifecycle events.

use actix::{Message, Recipient, WeakRecipient};

use crate::channel::{Channel, ComponentId};

/// The message the tree sends to stop a component. Implement `Handler<Stop>` (usually calling
/// `ctx.stop()`) and register with [`Component::stopper`] to be stoppable with the tree.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Stop;

/// A description of a component to register: name, channel, parent, and how to stop it.
#[derive(Clone)]
pub struct Component {
    pub(super) name: String,
    pub(super) channel: Option<Channel>,
    pub(super) parent: Option<ComponentId>,
    pub(super) stopper: Option<Stopper>,
}

/// Where the tree sends [`Stop`]: an address that keeps the actor alive while it is registered, or
/// one that does not.
#[derive(Clone)]
pub(super) enum Stopper {
    Strong(Recipient<Stop>),
    Weak(WeakRecipient<Stop>),
}

impl Stopper {
    pub(super) fn get(&self) -> Option<Recipient<Stop>> {
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

/// Fired when a component says it is ready ([`Bus::mark_started`](crate::Bus::mark_started)).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Started(pub ComponentInfo);

/// Fired when a component has been sent [`Stop`] and handled it (or did not answer in time: then
/// [`StopTimedOut`] comes first).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Stopped(pub ComponentInfo);

/// Fired when a component did not answer [`Stop`] within the bus's stop timeout
/// ([`Bus::set_stop_timeout`](crate::Bus::set_stop_timeout)): the stop went on without it (its actor may still run; the tree no
/// longer holds it).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct StopTimedOut(pub ComponentInfo);

/// Fired when a component leaves the tree.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Unregistered(pub ComponentInfo);
