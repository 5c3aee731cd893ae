//! The cell a [`Value`](super::Value) shares with whoever resolves it: its [`Slot`] and the
//! resolving side, [`Promise`].
//!
//! No lock: one atomic word says what the cell holds, and each side writes a part of the cell
//! only while that word says the part is its own (as in tokio's `oneshot`):
//!
//! - A resolver first **claims** the cell ([`CLAIMED`], the first of several racing resolvers
//!   wins), writes the result, then **publishes** it ([`READY`]). Nobody reads the result before
//!   it is published, and nothing writes it after.
//! - The waiting side owns the waker while [`WAKER`] is clear: it writes its waker there, then
//!   sets the bit. A resolver that publishes while the bit is set wakes that waker (by reference;
//!   it stays in the cell until the cell is dropped or the waiter clears the bit to replace it).
//!   The waiting side clears the bit before it replaces its waker, and touches the waker no more
//!   if the result was published meanwhile (the resolver may be waking it right then).
//! - Only the waiting side takes the result out ([`TAKEN`]), and only after it was published.
//!
//! So resolving costs two atomic operations and, only when someone waits, one wake; a look at a
//! pending value costs one load.

use std::mem::MaybeUninit;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;

use self::cell::{yield_now, AtomicU32, UnsafeCell};
use crate::spent::Spent;

/// The state words and cells: std's, or loom's when the protocol is model-checked
/// (`RUSTFLAGS="--cfg circuits_loom" cargo test -p circuits --lib value::slot::model`, which
/// `.ci/run` runs).
#[cfg(not(circuits_loom))]
mod cell {
    pub(super) use std::sync::atomic::AtomicU32;
    pub(super) use std::thread::yield_now;

    /// `std`'s `UnsafeCell`, reached as loom's is: through a pointer lent to a closure.
    pub(super) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(super) fn new(value: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }
        pub(super) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }
        pub(super) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

#[cfg(circuits_loom)]
mod cell {
    pub(super) use loom::cell::UnsafeCell;
    pub(super) use loom::sync::atomic::AtomicU32;
    pub(super) use loom::thread::yield_now;
}

/// A resolver won the cell: the result is being written (or is published).
const CLAIMED: u32 = 1;
/// The result is published: it is in the cell, or the value was abandoned.
const READY: u32 = 1 << 1;
/// Published without a result: every resolver went away without resolving.
const ABANDONED: u32 = 1 << 2;
/// The waiting side's waker is in the cell (and the waiting side leaves it alone).
const WAKER: u32 = 1 << 3;
/// The waiting side took the result out.
const TAKEN: u32 = 1 << 4;

/// How a result is kept in its slot: the error boxed. Most values never fail, and the pool's
/// error is several words large, so a task's slot costs about what its success value costs (S9,
/// memory per queued task); a failure pays one allocation.
pub(crate) trait Outcome: Sized {
    /// The form kept in the slot.
    type Kept;
    /// Into the kept form.
    fn keep(self) -> Self::Kept;
    /// Back out of it.
    fn unkeep(kept: Self::Kept) -> Self;
}

impl<U, E> Outcome for Result<U, E> {
    type Kept = Result<U, Box<E>>;
    fn keep(self) -> Self::Kept {
        self.map_err(Box::new)
    }
    fn unkeep(kept: Self::Kept) -> Self {
        kept.map_err(|e| *e)
    }
}

/// What the waiting side found in a slot.
pub(super) enum Took<K> {
    /// Nothing published yet.
    Pending,
    /// The result, taken out now.
    Got(K),
    /// Every resolver went away without resolving (this reads the same every time).
    Abandoned,
    /// The result was taken before.
    Taken,
}

/// The shared cell between the resolving side ([`Promise`]) and the waiting side
/// ([`Value`](super::Value)): one waiter at a time (a `Value` is waited on through `&mut self`),
/// registered as a [`Waker`] (an async task's, or for a blocking wait one that unparks the
/// waiting thread).
pub(super) struct Slot<T: Outcome> {
    state: AtomicU32,
    /// Live promises; the last one to drop without resolving abandons the value. (A handful
    /// at most: the worker's and a timeout's or a cancel handle's; 32 bits keep the cell as
    /// small as it was with a lock, for S9's memory per queued task.)
    promises: AtomicU32,
    /// The waiting side's waker; see the module's rules for who touches it when.
    waker: UnsafeCell<Option<Waker>>,
    /// The result, written by the resolver that claimed the cell.
    kept: UnsafeCell<MaybeUninit<T::Kept>>,
    /// What carried the result (freed where the result is taken, or with the cell).
    spent: UnsafeCell<Option<Spent>>,
}

// SAFETY: the cells are shared between threads only under the protocol above: each part is
// written by one side at a time, and handed over by the release and acquire of `state`. What
// crosses threads is the result (`Kept: Send`), a `Waker` (`Send + Sync`) and a `Spent` (`Send`).
unsafe impl<T: Outcome> Send for Slot<T> where T::Kept: Send {}
// SAFETY: as above; no part is read through `&Slot` while another thread may write it.
unsafe impl<T: Outcome> Sync for Slot<T> where T::Kept: Send {}

impl<T: Outcome> Slot<T> {
    /// A pending slot with one promise.
    pub(super) fn new() -> Self {
        Slot {
            state: AtomicU32::new(0),
            promises: AtomicU32::new(1),
            waker: UnsafeCell::new(None),
            kept: UnsafeCell::new(MaybeUninit::uninit()),
            spent: UnsafeCell::new(None),
        }
    }

    /// Whether the result is published (or the value abandoned): taking it would not wait.
    pub(super) fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) & READY != 0
    }

    /// Takes the result if it is published.
    ///
    /// # Safety
    ///
    /// Called only by the waiting side (the one `Value`, through its `&mut self`), never twice at
    /// once.
    pub(super) unsafe fn take(&self) -> Took<T::Kept> {
        let s = self.state.load(Ordering::Acquire);
        if s & READY == 0 {
            return Took::Pending;
        }
        // SAFETY: published, and the caller is the one waiting side.
        unsafe { self.take_published(s) }
    }

    /// Takes the result if it is published; otherwise leaves `waker` to be woken when it is
    /// (replacing an earlier waker unless that one wakes the same task).
    ///
    /// # Safety
    ///
    /// As for [`take`](Self::take).
    pub(super) unsafe fn take_or_wake(&self, waker: &Waker) -> Took<T::Kept> {
        let mut s = self.state.load(Ordering::Acquire);
        if s & READY != 0 {
            // SAFETY: published, and the caller is the one waiting side.
            return unsafe { self.take_published(s) };
        }
        if s & WAKER != 0 {
            // SAFETY: while the bit is set, only the waiting side (the caller) writes the waker,
            // and a resolver at most wakes it by reference: reading it here is shared access.
            let same = self.waker.with(|w| {
                // SAFETY: as just said.
                unsafe { (*w).as_ref() }.is_some_and(|w| w.will_wake(waker))
            });
            if same {
                return Took::Pending;
            }
            s = self.state.fetch_and(!WAKER, Ordering::AcqRel);
            if s & READY != 0 {
                // Published before the bit was cleared: its resolver may be waking the old waker
                // right now, so it stays where it is.
                // SAFETY: published, and the caller is the one waiting side.
                return unsafe { self.take_published(s) };
            }
        }
        // SAFETY: the bit is clear, so no resolver reads the waker: a resolver that publishes
        // from here on sees the bit clear (it is set again below only after this write).
        self.waker.with_mut(|w| unsafe { *w = Some(waker.clone()) });
        let s = self.state.fetch_or(WAKER, Ordering::AcqRel);
        if s & READY != 0 {
            // Published while the waker was written: its resolver saw no waker to wake.
            // SAFETY: published, and the caller is the one waiting side.
            return unsafe { self.take_published(s) };
        }
        Took::Pending
    }

    /// # Safety
    ///
    /// `s` is a state read (with acquire) that has [`READY`]; the caller is the one waiting side.
    unsafe fn take_published(&self, s: u32) -> Took<T::Kept> {
        if s & ABANDONED != 0 {
            return Took::Abandoned;
        }
        if s & TAKEN != 0 {
            return Took::Taken;
        }
        // A store, not a read-modify-write (which would stall on the line the resolver just
        // wrote): after publishing, the only other writes are racing resolvers' and a last
        // promise's claims, which change no bit (`CLAIMED` is set), so none is lost.
        self.state.store(s | TAKEN, Ordering::Relaxed);
        // SAFETY: published with a result (not abandoned), not taken before, and nobody writes
        // the result or what carried it after publishing: the waiting side owns both now. The
        // `TAKEN` bit keeps the drop below from dropping the result again.
        unsafe {
            // What carried the result is freed here, on the reading thread.
            drop(self.spent.with_mut(|s| (*s).take()));
            Took::Got(self.kept.with(|k| (*k).assume_init_read()))
        }
    }

    /// What the value holds, for `Debug`: pending, ready, taken or abandoned.
    pub(super) fn describe(&self) -> &'static str {
        let s = self.state.load(Ordering::Acquire);
        match (s & READY != 0, s & ABANDONED != 0, s & TAKEN != 0) {
            (false, ..) => "pending",
            (true, true, _) => "abandoned",
            (true, false, true) => "taken",
            (true, false, false) => "ready",
        }
    }

    /// The one way a value resolves: if no resolver claimed it before, store `v`, run `first`,
    /// publish the result and wake the waiter. A resolver that loses returns once the winner
    /// has published (as it did when a lock ordered them): whoever lost to a timeout, a cancel
    /// or a worker then finds the value resolved and the winner's `first` done.
    fn resolve(&self, v: T, first: impl FnOnce(), spent: Option<Spent>) -> bool {
        if self.state.fetch_or(CLAIMED, Ordering::Acquire) & CLAIMED != 0 {
            drop((v, spent));
            self.until_published();
            return false;
        }
        // SAFETY: this resolver won the claim: it alone writes the result and what carried it,
        // and nobody reads them before `READY` is published below.
        unsafe {
            self.kept.with_mut(|k| (*k).write(v.keep()));
            self.spent.with_mut(|s| *s = spent);
        }
        // Published when this ends, even if `first` panics (the result is written: the value
        // must not stay claimed and pending for ever).
        let _publish = PublishOnDrop(self);
        first();
        true
    }

    /// Waits (spinning, then yielding) until the resolver that claimed the cell has published:
    /// a few atomic operations and its `first` away.
    fn until_published(&self) {
        // (No spinning when model-checked: each look would be another step to explore.)
        const SPINS: u32 = if cfg!(circuits_loom) { 0 } else { 64 };
        let mut spins = 0u32;
        while self.state.load(Ordering::Acquire) & READY == 0 {
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                yield_now();
            }
        }
    }

    /// Publishes what the claimed cell holds (`READY`, with `ABANDONED` when nothing) and wakes
    /// the waiter.
    fn publish(&self, bits: u32) {
        let s = self.state.fetch_or(bits, Ordering::AcqRel);
        if s & WAKER != 0 {
            // SAFETY: the waker bit was set as this published: the waiting side no longer writes
            // the waker (it clears the bit first, and then sees the publication), and the cell
            // outlives this call (the caller holds a promise).
            self.waker.with(|w| {
                if let Some(w) = unsafe { (*w).as_ref() } {
                    w.wake_by_ref();
                }
            });
        }
    }
}

/// Publishes the claimed cell's result when dropped (see [`Slot::resolve`]).
struct PublishOnDrop<'a, T: Outcome>(&'a Slot<T>);

impl<T: Outcome> Drop for PublishOnDrop<'_, T> {
    fn drop(&mut self) {
        self.0.publish(READY);
    }
}

impl<T: Outcome> Drop for Slot<T> {
    fn drop(&mut self) {
        // (`&mut self`: nothing races this load.)
        let s = self.state.load(Ordering::Acquire);
        if s & (READY | ABANDONED | TAKEN) == READY {
            // SAFETY: published with a result that was never taken: it is initialized, and this
            // is the last reference to it.
            self.kept.with_mut(|k| unsafe { (*k).assume_init_drop() });
        }
    }
}

/// The resolving side of a [`Value`](super::Value). The first `complete` wins; later ones are
/// refused, so several racing completers (a worker and a timeout, say) still produce one outcome.
pub(crate) struct Promise<T: Outcome> {
    pub(super) slot: Arc<Slot<T>>,
}

impl<T: Outcome> Promise<T> {
    /// Another handle able to resolve the same value.
    pub(crate) fn share(&self) -> Promise<T> {
        self.slot.promises.fetch_add(1, Ordering::Relaxed);
        Promise {
            slot: self.slot.clone(),
        }
    }

    /// Whether anyone still holds the value (its `Value` was not dropped).
    pub(crate) fn is_wanted(&self) -> bool {
        Arc::strong_count(&self.slot) > self.slot.promises.load(Ordering::Acquire) as usize
    }

    /// Whether the value is still unresolved (no resolver has claimed it yet).
    pub(crate) fn is_pending(&self) -> bool {
        self.slot.state.load(Ordering::Acquire) & CLAIMED == 0
    }

    /// Resolves the value; `false` when it was already resolved (the value `v` is dropped).
    pub(crate) fn complete(&self, v: T) -> bool {
        self.complete_then(v, || {})
    }

    /// Resolves the value and, only if this call is the one that resolves it, runs `first` before
    /// anyone waiting can see the result (so counters bumped there are visible to whoever awaited
    /// the value). A racing resolver that loses returns at once, possibly before `first` ran.
    pub(crate) fn complete_then(&self, v: T, first: impl FnOnce()) -> bool {
        self.slot.resolve(v, first, None)
    }

    /// As [`complete_then`](Self::complete_then), keeping `spent` (what carried `v`) with the
    /// result until it is taken, so that its memory is freed where the value is read.
    pub(crate) fn complete_spent(&self, v: T, first: impl FnOnce(), spent: Option<Spent>) -> bool {
        self.slot.resolve(v, first, spent)
    }
}

/// A pending value's slot seen only as "something that can fail with `E`": lets code that does
/// not know the value's type (a worker aborting its running task) resolve it with an error.
pub(crate) trait FailSlot<E>: Send + Sync {
    /// Resolves the value with `Err(e)` if it is still pending, running `first` just before (see
    /// [`Promise::complete_then`]); `false` when it was already resolved.
    fn fail_then(&self, e: E, first: &mut dyn FnMut()) -> bool;
}

impl<U: Send, E: Send> FailSlot<E> for Slot<Result<U, E>> {
    fn fail_then(&self, e: E, first: &mut dyn FnMut()) -> bool {
        self.resolve(Err(e), first, None)
    }
}

impl<U: Send + 'static, E: Send + 'static> Promise<Result<U, E>> {
    /// This value's slot as a [`FailSlot`] (no allocation: the same shared cell).
    pub(crate) fn fail_slot(&self) -> Arc<dyn FailSlot<E>> {
        self.slot.clone()
    }
}

impl<T: Outcome> Drop for Promise<T> {
    fn drop(&mut self) {
        self.slot.let_go();
    }
}

impl<T: Outcome> Slot<T> {
    /// A promise goes away: the last one abandons the value unless some resolver claimed it.
    fn let_go(&self) {
        if self.promises.fetch_sub(1, Ordering::AcqRel) == 1
            && self.state.fetch_or(CLAIMED, Ordering::Acquire) & CLAIMED == 0
        {
            self.publish(READY | ABANDONED);
        }
    }
}

#[cfg(all(test, not(circuits_loom)))]
#[path = "slot_tests.rs"]
mod tests;

#[cfg(all(test, circuits_loom))]
#[path = "slot_model.rs"]
mod model;
