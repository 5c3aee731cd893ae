//! A value's first poll may help its own task along: a worker that handed the task to its
//! process on the pushing thread offers a [`Help`] there (see `worker::process::answers`), and the
//! value, polled on that thread right after the push, reads its answer itself instead of parking
//! and being woken by the worker's reader thread. On a VM a wake-up costs 5-25 us, a round trip to
//! a waiting process a few.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

/// Something that reads answers on the calling thread, for a bounded time, until `done` says the
/// value it helps is set (or there is nothing it can do).
pub(crate) trait Help: Send + Sync {
    /// Reads and settles answers until `done()` holds or its time is up; returns at once when
    /// another thread reads them.
    fn help(&self, done: &dyn Fn() -> bool);
}

thread_local! {
    /// The help offered by the last push on this thread, for the value it returned. A weak
    /// reference: help never keeps a worker's child (its memory and descriptors) alive.
    static OFFERED: RefCell<Option<Weak<dyn Help>>> = const { RefCell::new(None) };
}

/// Offers `help` to the next value polled first on this thread (the one just pushed).
pub(crate) fn offer(help: Weak<dyn Help>) {
    OFFERED.with(|o| *o.borrow_mut() = Some(help));
}

/// Takes the help offered on this thread, if any (and its worker is still there).
pub(super) fn take() -> Option<Arc<dyn Help>> {
    OFFERED
        .try_with(|o| o.borrow_mut().take())
        .ok()
        .flatten()
        .and_then(|w| w.upgrade())
}
