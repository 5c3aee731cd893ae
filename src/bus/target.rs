//! Where things go on the bus: [`Target`]s, [`SubscriptionId`]s, the options of a
//! subscription ([`Subscribe`]), and the [`Route`] a channel's tasks take.

use std::any::Any;

use crate::channel::{Channel, ComponentId};

/// Identifies one subscription, for [`Bus::unsubscribe`](crate::Bus::unsubscribe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub(super) u64);

/// Options for [`Bus::subscribe_with`](crate::Bus::subscribe_with).
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

/// Something that accepts work fired at a channel (a pool or a worker), registered by whoever
/// routes. The bus knows nothing of tasks: it hands over what the firing side gave it, and the
/// route (from the same layer as the firing side) knows its type.
pub(crate) trait Route: Send + Sync {
    /// Takes the work (queues it), or hands it back refused, in a form the router and the one
    /// who dispatched the work agree on (the bus does not look inside). `Ok(true)` when the work
    /// starts at once with nothing else in flight (a pool's lone task on an idle worker: its value
    /// may spin on its first poll, see `Value::spin_first`).
    fn submit(&self, work: Box<dyn Any + Send>) -> Result<bool, Box<dyn Any + Send>>;
}
