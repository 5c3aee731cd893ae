//! Channel names: the addresses of the event bus.
//!
//! A [`Channel`] is a cheap, cloneable name (an `Arc<str>` inside). Components subscribe to events on
//! a channel; firing at a channel reaches the subscribers of that event type there and on the
//! wildcard channel [`Channel::WILDCARD`] (`"*"`). Anonymous components, such as pool workers, get a
//! fresh UUID channel from [`Channel::unique`].
//!
//! ```
//! use circuits::Channel;
//!
//! let app = Channel::from("app");
//! assert_eq!(app.as_str(), "app");
//! assert!(Channel::from("*").is_wildcard());
//! assert_ne!(Channel::unique(), Channel::unique());
//! ```

use std::fmt;
use std::sync::Arc;

/// The name of a channel on the bus.
///
/// Any string converts into a `Channel`; the bus rejects the empty name with
/// [`BusError::EmptyChannel`](crate::BusError::EmptyChannel) when it is used.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(Arc<str>);

impl serde::Serialize for Channel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Channel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Channel::from)
    }
}

impl Channel {
    /// The wildcard channel name: subscribers here receive an event type fired on any channel.
    pub const WILDCARD: &'static str = "*";

    /// A channel with the given name.
    pub fn new(name: impl AsRef<str>) -> Self {
        Channel(Arc::from(name.as_ref()))
    }

    /// The wildcard channel `"*"`.
    pub fn wildcard() -> Self {
        Channel::new(Self::WILDCARD)
    }

    /// A fresh channel named by a random (v4) UUID, for anonymous components such as workers.
    pub fn unique() -> Self {
        Channel::new(uuid::Uuid::new_v4().to_string())
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the wildcard channel.
    pub fn is_wildcard(&self) -> bool {
        &*self.0 == Self::WILDCARD
    }

    /// Whether the name is empty (the bus rejects such a channel).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Channel({:?})", &*self.0)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Channel {
    fn from(s: &str) -> Self {
        Channel::new(s)
    }
}

impl From<String> for Channel {
    fn from(s: String) -> Self {
        Channel(Arc::from(s))
    }
}

impl From<&String> for Channel {
    fn from(s: &String) -> Self {
        Channel::new(s)
    }
}

impl From<&Channel> for Channel {
    fn from(c: &Channel) -> Self {
        c.clone()
    }
}

impl AsRef<str> for Channel {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Identifies a registered component.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId(uuid::Uuid);

impl ComponentId {
    pub(crate) fn new() -> Self {
        ComponentId(uuid::Uuid::new_v4())
    }
}

impl fmt::Debug for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ComponentId({})", self.0)
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
