//! The subscription table: subscribing, unsubscribing, pruning stopped recipients, counting, and
//! selecting the handlers of one fire in dispatch order.

use std::any::TypeId;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::Recipient;

use super::core::{read, write, Bus, Entry};
use super::error::BusError;
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
            for list in subs.values_mut() {
                // Memory returns when subscriptions go, not only the entries.
                if list.capacity() > 64 && list.len() < list.capacity() / 4 {
                    list.shrink_to_fit();
                }
            }
        }
        let mut emptied = Vec::new();
        for c in &removed {
            if self.gauge(c).fetch_sub(1, Ordering::SeqCst) == 1 {
                emptied.push(c);
            }
        }
        if !emptied.is_empty() {
            // A channel's counter goes with its last subscription, unless a pool still reads it
            // (its finishers hold the counter). Checked under the write lock: a subscribe that
            // took the counter first holds it too, so it is not removed under its feet.
            let mut gauges = write(&self.inner.gauges);
            for c in emptied {
                let unused = gauges
                    .get(c)
                    .is_some_and(|g| g.load(Ordering::SeqCst) == 0 && Arc::strong_count(g) == 1);
                if unused {
                    gauges.remove(c);
                }
            }
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

    /// The subscribers of `E` that a fire at `target` reaches, in dispatch order.
    pub(super) fn select<E: Event>(&self, target: &Target) -> Result<Vec<Recipient<E>>, BusError> {
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
