//! A value's first poll may help its own task along: a worker that handed the task to its
//! process on the pushing thread offers a [`Help`] there (see `worker::process::answers`), and the
//! value, polled on that thread right after the push, reads its answer itself instead of parking
//! and being woken by the worker's reader thread. On a VM a wake-up costs 5-25 us, a round trip to
//! a waiting process a few.
//!
//! An offer belongs to the value of the push that made it: the push's own
//! [`Value::spin_first`](super::Value::spin_first) claims it for that value (by its slot's
//! address), or withdraws it when the value will not spin (the pool had other tasks in flight),
//! and only that value takes it. The next push on the thread forgets any offer, claimed or not
//! (a value pushed before another one is rarely first polled in time to use it). An offer that
//! goes unused is told so ([`Help::declined`]).

use std::cell::RefCell;
use std::sync::{Arc, Weak};

/// Something that reads answers on the calling thread, for a bounded time, until `done` says the
/// value it helps is set (or there is nothing it can do).
pub(crate) trait Help: Send + Sync {
    /// Reads and settles answers until `done()` holds or its time is up; returns at once when
    /// another thread reads them.
    fn help(&self, done: &dyn Fn() -> bool);
    /// The offer was dropped unused (withdrawn, forgotten, or replaced).
    fn declined(&self);
}

/// An offer, and the value it is for (its slot's address; 0 until the push claims it).
struct Offer {
    help: Weak<dyn Help>,
    owner: usize,
}

thread_local! {
    /// The help offered by the last push on this thread. A weak reference: help never keeps a
    /// worker's child (its memory and descriptors) alive.
    static OFFERED: RefCell<Option<Offer>> = const { RefCell::new(None) };
}

/// Offers `help` to the value of the push under way on this thread.
pub(crate) fn offer(help: Weak<dyn Help>) {
    let replaced = OFFERED
        .try_with(|o| o.borrow_mut().replace(Offer { help, owner: 0 }))
        .ok()
        .flatten();
    decline(replaced);
}

/// A push starts on this thread: an offer left from an earlier push is not for the value this
/// one returns.
pub(crate) fn forget() {
    decline(OFFERED.try_with(|o| o.borrow_mut().take()).ok().flatten());
}

/// Tells an offer dropped unused that it was.
fn decline(offer: Option<Offer>) {
    if let Some(help) = offer.and_then(|o| o.help.upgrade()) {
        help.declined();
    }
}

/// The push under way on this thread returns the value `owner`: an offer it made is that value's
/// if it will spin (`wanted`), and withdrawn if not.
pub(super) fn claim(owner: usize, wanted: bool) {
    let withdrawn = OFFERED
        .try_with(|o| {
            let mut o = o.borrow_mut();
            match o.as_mut() {
                Some(offer) if offer.owner == 0 && wanted => {
                    offer.owner = owner;
                    None
                }
                Some(offer) if offer.owner == 0 => o.take(),
                _ => None,
            }
        })
        .ok()
        .flatten();
    decline(withdrawn);
}

/// Takes the help offered to value `owner` on this thread, if any (and its worker is still
/// there).
pub(super) fn take(owner: usize) -> Option<Arc<dyn Help>> {
    OFFERED
        .try_with(|o| {
            let mut o = o.borrow_mut();
            match o.as_ref() {
                Some(offer) if offer.owner == owner => o.take(),
                _ => None,
            }
        })
        .ok()
        .flatten()
        .and_then(|offer| offer.help.upgrade())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the offers it was told it lost.
    #[derive(Default)]
    struct Declines(AtomicUsize);
    impl Help for Declines {
        fn help(&self, _done: &dyn Fn() -> bool) {}
        fn declined(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn an_offer_goes_only_to_the_value_its_push_claimed_it_for() {
        let counter = Arc::new(Declines::default());
        let help: Arc<dyn Help> = counter.clone();
        let declines = || counter.0.load(Ordering::Relaxed);
        // Claimed by the push's value: only that value takes it, once.
        offer(Arc::downgrade(&help));
        claim(1, true);
        assert!(take(2).is_none());
        assert!(take(1).is_some());
        assert!(take(1).is_none());
        assert_eq!(declines(), 0);
        // Withdrawn: the value will not spin.
        offer(Arc::downgrade(&help));
        claim(1, false);
        assert!(take(1).is_none());
        assert_eq!(declines(), 1);
        // Claimed, then forgotten by the next push, whose value claims nothing.
        offer(Arc::downgrade(&help));
        claim(3, true);
        forget();
        claim(4, true);
        assert!(take(3).is_none() && take(4).is_none());
        assert_eq!(declines(), 2);
        // Replaced by the next offer before anyone claimed it.
        offer(Arc::downgrade(&help));
        offer(Arc::downgrade(&help));
        assert_eq!(declines(), 3);
        forget();
        assert_eq!(declines(), 4);
        // Its worker gone, an offer gives nothing.
        let gone: Arc<dyn Help> = Arc::new(Declines::default());
        offer(Arc::downgrade(&gone));
        claim(5, true);
        drop(gone);
        assert!(take(5).is_none());
    }
}
