//! The cell a [`Value`](super::Value) shares with whoever resolves it: its [`Slot`] and the
//! resolving side, [`Promise`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use crate::spent::Spent;

pub(super) enum State<T> {
    Pending(Option<Waker>),
    /// The result, and what carried it (freed when the result is taken).
    Ready(T, Option<Spent>),
    Taken,
    Abandoned,
}

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

/// The shared cell between the resolving side ([`Promise`]) and the waiting side ([`Value`]).
///
/// One waiter at a time (a `Value` is waited on through `&mut self`), registered as a [`Waker`]:
/// an async task's, or for a blocking wait one that unparks the waiting thread. So resolving costs
/// one uncontended lock and, only when someone waits, one wake.
pub(super) struct Slot<T: Outcome> {
    pub(super) state: Mutex<State<T::Kept>>,
    /// Live promises; the last one to drop without resolving abandons the value.
    pub(super) promises: AtomicUsize,
}

impl<T: Outcome> Slot<T> {
    pub(super) fn lock(&self) -> MutexGuard<'_, State<T::Kept>> {
        // A poisoned lock only means a panic elsewhere while holding it; the state is still whole
        // because every critical section below is a plain assignment.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The resolving side of a [`Value`]. The first `complete` wins; later ones are refused, so
/// several racing completers (a worker and a timeout, say) still produce one outcome.
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
        Arc::strong_count(&self.slot) > self.slot.promises.load(Ordering::Acquire)
    }

    /// Whether the value is still unresolved.
    pub(crate) fn is_pending(&self) -> bool {
        matches!(*self.slot.lock(), State::Pending(_))
    }

    /// Resolves the value; `false` when it was already resolved (the value `v` is dropped).
    pub(crate) fn complete(&self, v: T) -> bool {
        self.complete_then(v, || {})
    }

    /// Resolves the value and, only if this call is the one that resolves it, runs `first` before
    /// anyone waiting can see the result (so counters bumped there are visible to whoever awaited
    /// the value). `first` runs under the value's lock: keep it to a few atomic operations.
    pub(crate) fn complete_then(&self, v: T, first: impl FnOnce()) -> bool {
        self.slot.resolve(v, first, None)
    }

    /// As [`complete_then`](Self::complete_then), keeping `spent` (what carried `v`) with the
    /// result until it is taken, so that its memory is freed where the value is read.
    pub(crate) fn complete_spent(&self, v: T, first: impl FnOnce(), spent: Option<Spent>) -> bool {
        self.slot.resolve(v, first, spent)
    }
}

impl<T: Outcome> Slot<T> {
    /// The one way a value resolves: if still pending, run `first`, store `v`, wake the waiter.
    fn resolve(&self, v: T, first: impl FnOnce(), spent: Option<Spent>) -> bool {
        let waker = {
            let mut st = self.lock();
            match &mut *st {
                State::Pending(w) => {
                    let w = w.take();
                    first();
                    *st = State::Ready(v.keep(), spent);
                    w
                }
                _ => return false,
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
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
        if self.slot.promises.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let waker = {
            let mut st = self.slot.lock();
            match &mut *st {
                State::Pending(w) => {
                    let w = w.take();
                    *st = State::Abandoned;
                    w
                }
                _ => None,
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}
