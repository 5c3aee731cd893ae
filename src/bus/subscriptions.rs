//! The subscription table: subscribing, unsubscribing, pruning stopped recipients, counting, and
//! selecting the handlers of one fire in dispatch order.

use std::any::TypeId;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::Recipient;

use super::core::Bus;
use super::dispatch::{HandlerOf, Inbox};
use super::error::BusError;
use super::sync::{lock, read, write};
use super::table::Entry;
use super::target::{Subscribe, SubscriptionId, Target};
use crate::channel::{Channel, ComponentId};
use crate::event::Event;

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("subscriptions", &self.subscriptions())
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

impl Bus {
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
        if TypeId::of::<E>() == TypeId::of::<super::AnyEvent>() {
            self.inner.catch_all.store(true, Ordering::Relaxed);
        }
        let id = SubscriptionId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        self.gauge(&channel).fetch_add(1, Ordering::SeqCst);
        let actor = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            recipient.hash(&mut h);
            h.finish()
        };
        let insert = || {
            write(&self.inner.subs).insert(
                TypeId::of::<E>(),
                channel.clone(),
                Entry {
                    id,
                    priority: opts.priority,
                    component: opts.component,
                    recipient: Arc::new(recipient),
                    actor,
                    inbox: std::sync::OnceLock::new(),
                },
            )
        };
        match opts.component {
            None => insert(),
            // Inserted while the tree holds the component: an unregister removes the component
            // first and its subscriptions after, so this one cannot be left behind.
            Some(c) => {
                if self.while_registered(c, insert).is_none() {
                    self.uncount(std::slice::from_ref(&channel));
                    return Err(BusError::UnknownComponent(c));
                }
            }
        }
        Ok(id)
    }

    /// Removes a subscription; `false` if there was none with that id.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let Some(channel) = write(&self.inner.subs).remove(id) else {
            return false;
        };
        self.uncount(std::slice::from_ref(&channel));
        true
    }

    /// Removes every subscription that belongs to `component`; returns how many.
    pub(crate) fn unsubscribe_component(&self, component: ComponentId) -> usize {
        let ids = read(&self.inner.subs).of_component(component);
        self.remove_ids(&ids)
    }

    fn remove_ids(&self, ids: &[SubscriptionId]) -> usize {
        if ids.is_empty() {
            return 0;
        }
        let removed: Vec<Channel> = {
            let mut subs = write(&self.inner.subs);
            ids.iter().filter_map(|id| subs.remove(*id)).collect()
        };
        self.uncount(&removed);
        removed.len()
    }

    /// Counts one subscription fewer on each of `channels`, and removes the counter of a channel
    /// left with none, unless a pool still reads it (its finishers hold the counter). All under
    /// the write lock, so one lookup per channel: a subscribe that took the counter first holds it
    /// too, so it is not removed under its feet.
    fn uncount(&self, channels: &[Channel]) {
        if channels.is_empty() {
            return;
        }
        let mut gauges = write(&self.inner.gauges);
        for c in channels {
            let unused = gauges.get(c).is_some_and(|g| {
                g.fetch_sub(1, Ordering::SeqCst) == 1 && Arc::strong_count(g) == 1
            });
            if unused {
                gauges.remove(c);
            }
        }
        if gauges.capacity() > 64 && gauges.len() < gauges.capacity() / 4 {
            gauges.shrink_to_fit();
        }
    }

    /// Removes the subscriptions whose actor has stopped.
    fn prune(&self) {
        let dead = read(&self.inner.subs).dead();
        self.remove_ids(&dead);
    }

    /// The number of live subscriptions on the bus, after pruning those whose actor has stopped
    /// (this looks at every subscription).
    pub fn subscriptions(&self) -> usize {
        self.prune();
        read(&self.inner.subs).len()
    }

    /// The number of live subscribers to `E` on `channel` (not counting the wildcard channel).
    pub fn subscribers<E: Event>(&self, channel: impl Into<Channel>) -> usize {
        let channel = channel.into();
        read(&self.inner.subs)
            .list::<E>(&channel)
            .iter()
            .filter(|e| e.recipient.connected())
            .count()
    }

    /// The inbox of the actor `actor`, shared by its subscriptions (started if it has none).
    fn inbox_of(&self, actor: u64) -> Arc<Inbox> {
        let mut inboxes = lock(&self.inner.inboxes);
        if let Some(inbox) = inboxes.get(&actor).and_then(std::sync::Weak::upgrade) {
            return inbox;
        }
        // Forget the inboxes of actors that have no subscription left, now and then.
        if inboxes.len() >= 64 && inboxes.len() >= 2 * inboxes.capacity() / 3 {
            inboxes.retain(|_, w| w.strong_count() > 0);
            inboxes.shrink_to_fit();
        }
        let inbox = Arc::new(Inbox::start(|run| self.spawn(run)));
        inboxes.insert(actor, Arc::downgrade(&inbox));
        inbox
    }

    /// The live handlers of `E` for `target`, in dispatch order; subscriptions found dead on the
    /// way are pruned. Reads only the lists of `E` on the target's channels and the wildcard's.
    #[allow(clippy::type_complexity)]
    pub(super) fn select<E: Event>(&self, target: &Target) -> Result<Vec<HandlerOf<E>>, BusError> {
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
        let mut picked: Vec<(i32, u64, HandlerOf<E>)> = Vec::new();
        let mut dead = Vec::new();
        {
            let subs = read(&self.inner.subs);
            let mut take = |e: &Entry| {
                if !e.recipient.connected() {
                    dead.push(e.id);
                } else if let Some(r) = e.recipient.as_any().downcast_ref::<Recipient<E>>() {
                    let inbox = e.inbox.get_or_init(|| self.inbox_of(e.actor)).clone();
                    picked.push((e.priority, e.id.0, (r.clone(), inbox, e.id)));
                }
            };
            match target {
                Target::Component(c) => {
                    for id in subs.of_component(*c) {
                        if let Some(e) = subs.entry::<E>(id) {
                            take(e);
                        }
                    }
                }
                Target::Channels(chs) if chs.iter().any(Channel::is_wildcard) => {
                    subs.lists::<E>().flatten().for_each(&mut take);
                }
                Target::Channels(chs) => {
                    let wildcard = Channel::from("*");
                    for (i, c) in chs.iter().enumerate() {
                        // A channel named twice is one channel.
                        if !chs[..i].contains(c) {
                            subs.list::<E>(c).iter().for_each(&mut take);
                        }
                    }
                    subs.list::<E>(&wildcard).iter().for_each(&mut take);
                }
            }
        }
        if !dead.is_empty() {
            self.remove_ids(&dead);
        }
        // Higher priority first; ties in subscription order (ids grow with time).
        picked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(picked.into_iter().map(|(_, _, r)| r).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::prelude::*;

    #[derive(Clone, Message)]
    #[rtype(result = "()")]
    struct Ping;

    struct Sink;
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<Ping> for Sink {
        type Result = ();
        fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
    }

    #[actix_rt::test]
    async fn a_channel_leaves_no_counter_behind_once_its_last_subscription_goes() {
        let bus = Bus::new();
        let sink = Sink.start();
        for i in 0..2_000 {
            let id = bus
                .subscribe(format!("fresh-{i}"), sink.clone().recipient::<Ping>())
                .unwrap();
            assert!(bus.unsubscribe(id));
        }
        assert_eq!(
            read(&bus.inner.gauges).len(),
            0,
            "per-channel counters kept"
        );
        // A counter someone still reads (a pool's finisher) stays.
        let held = bus.gauge(&Channel::from("pool"));
        let id = bus.subscribe("pool", sink.recipient::<Ping>()).unwrap();
        assert!(bus.unsubscribe(id));
        assert_eq!(read(&bus.inner.gauges).len(), 1);
        assert_eq!(held.load(Ordering::SeqCst), 0);
    }
}
