//! [`BusError`]: what the bus refused.

use crate::channel::ComponentId;
use crate::value::Abandoned;

/// What went wrong on the bus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// The bus was stopped with [`Bus::stop`](crate::Bus::stop); it takes no more fires or subscriptions.
    #[error("the bus is stopped")]
    Stopped,
    /// No component with that id is registered.
    #[error("no component {0} is registered on this bus")]
    UnknownComponent(ComponentId),
    /// Attaching the component there would make it its own ancestor.
    #[error("component {0} cannot go under {1}: {1} is in its subtree")]
    WouldCycle(ComponentId, ComponentId),
    /// The bus could not start its dispatch thread (the OS refused a thread or a runtime).
    #[error("the bus could not start its dispatch thread: {0}")]
    Dispatcher(String),
    /// The fire was dropped before its handlers answered (the bus's dispatch thread could not
    /// start, or it ended).
    #[error("the fire was dropped before its handlers answered")]
    Abandoned,
}

impl From<Abandoned> for BusError {
    fn from(_: Abandoned) -> Self {
        BusError::Abandoned
    }
}
