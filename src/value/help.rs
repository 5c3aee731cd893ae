//! A value's first poll may help its own task along: a worker that handed the task to its
//! process on the pushing thread offers a [`Help`] there (see `worker::process::answers`), and the
//! value, polled on that thread right after the push, reads its answer itself instead of parking
//! and being woken by the worker's reader thread. On a VM a wake-up costs 5-25 us, a round trip to
//! a waiting process a few.
//!
//! An offer belongs to the value of the push that made it: the push's own
//! [`Value::spin_first`](super::Value::spin_first) claims it for that value (by its slot's
//! address), or withdraws it when the value will not spin (the pool had other tasks in flight),
//! and only that value takes it; the next push forgets an offer nobody claimed. A value awaited elsewhere, or dropped, leaves a claimed offer
//! that the next offer replaces; it holds only a weak reference.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

/// Something that reads answers on the calling thread, for a bounded time, until `done` says the
/// value it helps is set (or there is nothing it can do).
pub(crate) trait Help: Send + Sync {
    /// Reads and settles answers until `done()` holds or its time is up; returns at once when
    /// another thread reads them.
    fn help(&self, done: &dyn Fn() -> bool);
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
    let _ = OFFERED.try_with(|o| *o.borrow_mut() = Some(Offer { help, owner: 0 }));
}

/// A push starts on this thread: an offer no push claimed (one made for a task whose value does
/// not spin, a `map`'s chunk say) is not for the value this one returns.
pub(crate) fn forget_unclaimed() {
    let _ = OFFERED.try_with(|o| {
        let mut o = o.borrow_mut();
        if o.as_ref().is_some_and(|offer| offer.owner == 0) {
            *o = None;
        }
    });
}

/// The push under way on this thread returns the value `owner`: an offer it made is that value's
/// if it will spin (`wanted`), and withdrawn if not.
pub(super) fn claim(owner: usize, wanted: bool) {
    let _ = OFFERED.try_with(|o| {
        let mut o = o.borrow_mut();
        if let Some(offer) = o.as_mut().filter(|offer| offer.owner == 0) {
            if wanted {
                offer.owner = owner;
            } else {
                *o = None;
            }
        }
    });
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

    struct Nothing;
    impl Help for Nothing {
        fn help(&self, _done: &dyn Fn() -> bool) {}
    }

    #[test]
    fn an_offer_goes_only_to_the_value_its_push_claimed_it_for() {
        let help: Arc<dyn Help> = Arc::new(Nothing);
        // Claimed by the push's value: only that value takes it, once.
        offer(Arc::downgrade(&help));
        claim(1, true);
        assert!(take(2).is_none());
        assert!(take(1).is_some());
        assert!(take(1).is_none());
        // Withdrawn: the value will not spin.
        offer(Arc::downgrade(&help));
        claim(1, false);
        assert!(take(1).is_none());
        // Never claimed (a push whose value does not spin and says nothing): the next push
        // forgets it, and its value claims nothing.
        offer(Arc::downgrade(&help));
        forget_unclaimed();
        claim(3, true);
        assert!(take(3).is_none());
        // A claimed offer outlives the next push's start.
        offer(Arc::downgrade(&help));
        claim(4, true);
        forget_unclaimed();
        assert!(take(4).is_some());
        // Its worker gone, an offer gives nothing.
        offer(Arc::downgrade(&help));
        claim(5, true);
        drop(help);
        assert!(take(5).is_none());
    }
}
