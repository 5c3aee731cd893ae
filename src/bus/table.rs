//! The subscription table, indexed so that every operation costs what it touches: a fire reads
//! only the lists of its event type on its channels (and the wildcard's), an unsubscribe finds its
//! entry through its id, a component's subscriptions are found through the component. Nothing
//! scans the subscriptions of other channels, types or components.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use actix::Recipient;

use super::target::SubscriptionId;
use crate::channel::{Channel, ComponentId};
use crate::event::Event;

/// A type-erased recipient, so subscriptions of every event type share one table.
pub(super) trait AnyRecipient: Send + Sync {
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

pub(super) struct Entry {
    pub(super) id: SubscriptionId,
    pub(super) priority: i32,
    pub(super) component: Option<ComponentId>,
    pub(super) recipient: Arc<dyn AnyRecipient>,
    /// Which actor the recipient leads to (its mailbox's identity, as actix hashes it).
    pub(super) actor: u64,
    /// That actor's [`Inbox`](super::dispatch::Inbox), found with the first delivery.
    pub(super) inbox: std::sync::OnceLock<Arc<super::dispatch::Inbox>>,
}

/// Where one subscription lives.
struct Place {
    event: TypeId,
    channel: Channel,
    component: Option<ComponentId>,
}

/// The subscriptions of one event type: a list per channel, in subscription order.
type Lists = HashMap<Channel, Vec<Entry>>;

#[derive(Default)]
pub(super) struct Table {
    by_type: HashMap<TypeId, Lists>,
    by_id: HashMap<SubscriptionId, Place>,
    by_component: HashMap<ComponentId, Vec<SubscriptionId>>,
}

impl Table {
    pub(super) fn insert(&mut self, event: TypeId, channel: Channel, entry: Entry) {
        self.by_id.insert(
            entry.id,
            Place {
                event,
                channel: channel.clone(),
                component: entry.component,
            },
        );
        if let Some(c) = entry.component {
            self.by_component.entry(c).or_default().push(entry.id);
        }
        self.by_type
            .entry(event)
            .or_default()
            .entry(channel)
            // Most channels have one subscriber of a type: room for one, not the four a first
            // push would make (a bus may hold many thousands of channels).
            .or_insert_with(|| Vec::with_capacity(1))
            .push(entry);
    }

    /// Removes one subscription; returns its channel if it was there.
    pub(super) fn remove(&mut self, id: SubscriptionId) -> Option<Channel> {
        let place = self.by_id.remove(&id)?;
        shrink(&mut self.by_id);
        if let Some(c) = place.component {
            if let Some(ids) = self.by_component.get_mut(&c) {
                ids.retain(|x| *x != id);
                if ids.is_empty() {
                    self.by_component.remove(&c);
                    shrink(&mut self.by_component);
                }
            }
        }
        if let Some(lists) = self.by_type.get_mut(&place.event) {
            if let Some(list) = lists.get_mut(&place.channel) {
                list.retain(|e| e.id != id);
                if list.is_empty() {
                    lists.remove(&place.channel);
                    shrink(lists);
                } else if list.capacity() > 64 && list.len() < list.capacity() / 4 {
                    list.shrink_to_fit();
                }
            }
            if lists.is_empty() {
                self.by_type.remove(&place.event);
            }
        }
        Some(place.channel)
    }

    /// The ids of a component's subscriptions.
    pub(super) fn of_component(&self, component: ComponentId) -> Vec<SubscriptionId> {
        self.by_component
            .get(&component)
            .cloned()
            .unwrap_or_default()
    }

    /// The lists of event type `E` on `channel`.
    pub(super) fn list<E: Event>(&self, channel: &Channel) -> &[Entry] {
        self.by_type
            .get(&TypeId::of::<E>())
            .and_then(|l| l.get(channel))
            .map_or(&[], Vec::as_slice)
    }

    /// Every list of event type `E`, whatever the channel.
    pub(super) fn lists<E: Event>(&self) -> impl Iterator<Item = &[Entry]> {
        self.by_type
            .get(&TypeId::of::<E>())
            .into_iter()
            .flat_map(|l| l.values().map(Vec::as_slice))
    }

    /// The entry of subscription `id` if it is of event type `E`.
    pub(super) fn entry<E: Event>(&self, id: SubscriptionId) -> Option<&Entry> {
        let place = self.by_id.get(&id)?;
        if place.event != TypeId::of::<E>() {
            return None;
        }
        self.by_type
            .get(&place.event)?
            .get(&place.channel)?
            .iter()
            .find(|e| e.id == id)
    }

    /// Every subscription whose recipient's actor has stopped.
    pub(super) fn dead(&self) -> Vec<SubscriptionId> {
        self.by_type
            .values()
            .flat_map(|l| l.values().flatten())
            .filter(|e| !e.recipient.connected())
            .map(|e| e.id)
            .collect()
    }

    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// Gives a map's memory back once most of it is unused (a table that held 100k subscriptions
/// once does not keep their room for ever).
fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to_fit();
    }
}
