//! [`Value`]: the future result of a fire or a task.
//!
//! A `Value<T, E>` resolves exactly once to `Result<T, E>`. It can be awaited, waited on with a
//! bound ([`Value::wait`], [`Value::wait_blocking`]), or polled without blocking
//! ([`Value::try_take`]). Waiting on a value that has already resolved returns at once.
//!
//! ```
//! use std::time::Duration;
//! use circuits::Bus;
//!
//! #[derive(Clone, actix::Message)]
//! #[rtype(result = "()")]
//! struct Ping;
//!
//! # #[actix::main] async fn main() -> Result<(), circuits::Error> {
//! let bus = Bus::new();
//! // No subscriber: the fire resolves at once with an empty result.
//! let mut v = bus.fire("nobody", Ping);
//! assert!(v.is_ready());
//! // The outer `?` is the wait's (it had a bound), the inner the fire's own.
//! let results = v.wait(Duration::from_secs(1)).await??;
//! assert!(results.is_empty());
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::spent::Spent;

/// Why a bounded wait on a [`Value`] returned without the value's result (the result itself, a
/// success or the value's own error, comes inside `Ok`, as with `tokio::time::timeout`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// A zero duration was given; waiting needs a positive bound.
    #[error("waiting needs a positive timeout, got zero")]
    ZeroTimeout,
    /// The bound passed before the value resolved; the value can be waited on again.
    #[error("the value did not resolve within {0:?}")]
    Elapsed(Duration),
    /// The result was already taken out of this value.
    #[error("the value's result was already taken")]
    Taken,
}

/// What a [`Value`] resolves to when whatever was to resolve it went away without doing so (for
/// example the runtime it ran on shut down). A value's error type says how it shows this:
/// [`TaskError::Abandoned`](crate::TaskError::Abandoned), [`BusError::Abandoned`](crate::BusError::Abandoned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the value was abandoned before it resolved")]
pub struct Abandoned;

enum State<T> {
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
struct Slot<T: Outcome> {
    state: Mutex<State<T::Kept>>,
    /// Live promises; the last one to drop without resolving abandons the value.
    promises: AtomicUsize,
}

impl<T: Outcome> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T::Kept>> {
        // A poisoned lock only means a panic elsewhere while holding it; the state is still whole
        // because every critical section below is a plain assignment.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The resolving side of a [`Value`]. The first `complete` wins; later ones are refused, so
/// several racing completers (a worker and a timeout, say) still produce one outcome.
pub(crate) struct Promise<T: Outcome> {
    slot: Arc<Slot<T>>,
}

/// A new promise and the value it resolves.
pub(crate) fn promise<U, E>() -> (Promise<Result<U, E>>, Value<U, E>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State::Pending(None)),
        promises: AtomicUsize::new(1),
    });
    (
        Promise { slot: slot.clone() },
        Value {
            inner: Inner::Slot(slot),
        },
    )
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

enum Inner<T, E> {
    Slot(Arc<Slot<Result<T, E>>>),
    /// Resolved from the start (boxed: rare, and it keeps every `Value` two words small).
    Ready(Option<Box<Result<T, E>>>),
}

/// The future result of a fire or a task: resolves once to `Result<T, E>`.
///
/// * Awaiting it (`value.await`) waits without a bound; the crate guarantees that every value it
///   hands out is resolved eventually (a task ends in success or failure, a fire ends when its
///   handlers have answered).
/// * [`wait`](Value::wait) waits at most a [`Duration`]: `Ok` with the result, or a
///   [`WaitError`] beside it ([`Elapsed`](WaitError::Elapsed): the value stays usable and can be
///   waited on again).
/// * [`wait_blocking`](Value::wait_blocking) does the same from a plain thread, without a runtime.
/// * [`try_take`](Value::try_take) looks without waiting.
///
/// Dropping a `Value` does not cancel what it waits for. Every wait takes `&mut self`: one waiter
/// at a time, and the result is taken by whoever gets it first.
///
/// ```
/// use std::time::Duration;
/// use circuits::prelude::*;
/// use circuits::WaitError;
///
/// # #[actix::main] async fn main() -> Result<(), circuits::Error> {
/// let pool = Pool::builder().min(1).start();
/// let (go, gate) = std::sync::mpsc::channel::<()>();
/// let mut v = pool.push(Task::new(move || { gate.recv().unwrap(); 7 }))?;
/// assert!(v.try_take().is_none()); // still running
/// let waited = v.wait(Duration::from_millis(10)).await;
/// assert!(matches!(waited, Err(WaitError::Elapsed(_))));
/// go.send(()).unwrap(); // let it finish; the value is still usable
/// assert_eq!(v.await?, 7);
/// pool.stop().await;
/// # Ok(()) }
/// ```
#[must_use = "a Value does nothing unless awaited or waited on; dropping it does not cancel the work"]
pub struct Value<T, E> {
    inner: Inner<T, E>,
}

impl<T, E: From<Abandoned>> Value<T, E> {
    /// A value that is already resolved.
    pub fn ready(result: Result<T, E>) -> Self {
        Value {
            inner: Inner::Ready(Some(Box::new(result))),
        }
    }

    /// Whether the result is there (awaiting or waiting would return at once).
    pub fn is_ready(&self) -> bool {
        match &self.inner {
            Inner::Ready(_) => true,
            Inner::Slot(s) => !matches!(*s.lock(), State::Pending(_)),
        }
    }

    /// Takes the result if it is there, without waiting: `None` while the value is pending.
    /// A value whose resolver went away without resolving it gives `Some(Err(E::from(Abandoned)))`.
    ///
    /// # Panics
    ///
    /// When the result was already taken out of this value (by `try_take`, a wait or an await),
    /// as a future panics when polled after it completed.
    pub fn try_take(&mut self) -> Option<Result<T, E>> {
        match self.take() {
            Taking::Pending => None,
            Taking::Got(r) => Some(r),
            Taking::Taken => panic!("{TAKEN}"),
        }
    }

    fn take(&mut self) -> Taking<T, E> {
        match &mut self.inner {
            Inner::Ready(r) => r.take().map_or(Taking::Taken, |b| Taking::Got(*b)),
            Inner::Slot(s) => {
                let mut st = s.lock();
                Self::take_state(&mut st)
            }
        }
    }

    fn take_state(st: &mut State<Result<T, Box<E>>>) -> Taking<T, E> {
        match std::mem::replace(st, State::Taken) {
            // What carried the result is freed here, on the reading thread.
            State::Ready(r, _spent) => Taking::Got(Result::unkeep(r)),
            State::Taken => Taking::Taken,
            State::Abandoned => {
                *st = State::Abandoned;
                Taking::Got(Err(Abandoned.into()))
            }
            pending @ State::Pending(_) => {
                *st = pending;
                Taking::Pending
            }
        }
    }

    /// Waits at most `timeout` for the result: `Ok` with the value's own `Result`, or a
    /// [`WaitError`] when there is none to give.
    ///
    /// Returns at once when the value is already resolved. Inside a Tokio (or actix) runtime the
    /// wait is asynchronous; with no runtime around it falls back to
    /// [`wait_blocking`](Value::wait_blocking), which blocks the thread that polls it.
    ///
    /// The bound is a timer of the runtime it is awaited on, so it holds wherever that runtime
    /// runs; it cannot hold when that runtime's own thread is blocked on this future (for example
    /// `futures::executor::block_on(value.wait(..))` inside an actix handler, on a value that
    /// needs the same arbiter): await it there, or use [`wait_blocking`](Value::wait_blocking)
    /// on a plain thread.
    ///
    /// # Errors
    ///
    /// * [`ZeroTimeout`](WaitError::ZeroTimeout): `timeout` is zero; nothing was waited for;
    /// * [`Elapsed`](WaitError::Elapsed): the bound passed first; the value is untouched and can
    ///   be waited on again;
    /// * [`Taken`](WaitError::Taken): the result was already taken out of this value.
    ///
    /// # Panics
    ///
    /// Inside a Tokio runtime built without its time driver (no `enable_time` or `enable_all`),
    /// when the value is still pending: Tokio's timer panics. The actix runtime has timers. With
    /// no runtime, this waits as [`wait_blocking`](Value::wait_blocking) does.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropping the future before it completes takes nothing out of the value: a
    /// result that arrives meanwhile stays there for the next wait, await or
    /// [`try_take`](Value::try_take).
    pub async fn wait(&mut self, timeout: Duration) -> Result<Result<T, E>, WaitError> {
        if timeout.is_zero() {
            return Err(WaitError::ZeroTimeout);
        }
        match self.take() {
            Taking::Got(r) => return Ok(r),
            Taking::Taken => return Err(WaitError::Taken),
            Taking::Pending => {}
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return self.wait_blocking(timeout);
        }
        tokio::time::timeout(timeout, &mut *self)
            .await
            .map_err(|_| WaitError::Elapsed(timeout))
    }

    /// Blocks the current thread for at most `timeout` waiting for the result.
    ///
    /// For plain threads outside any runtime; inside an async task prefer [`wait`](Value::wait),
    /// which does not block the executor.
    ///
    /// A `timeout` too large to be a time on the clock (such as [`Duration::MAX`]) waits without
    /// a bound.
    ///
    /// # Errors
    ///
    /// As [`wait`](Value::wait): [`WaitError::ZeroTimeout`], [`WaitError::Elapsed`] (the value
    /// can be waited on again) or [`WaitError::Taken`]; the value's own error comes inside `Ok`.
    pub fn wait_blocking(&mut self, timeout: Duration) -> Result<Result<T, E>, WaitError> {
        if timeout.is_zero() {
            return Err(WaitError::ZeroTimeout);
        }
        let slot = match &mut self.inner {
            Inner::Ready(r) => return r.take().map(|b| *b).ok_or(WaitError::Taken),
            Inner::Slot(s) => s.clone(),
        };
        // A bound too far to be a time on this clock (`Duration::MAX`) is no bound at all.
        let deadline = Instant::now().checked_add(timeout);
        let waker = Waker::from(Arc::new(Unparker(std::thread::current())));
        loop {
            {
                let mut st = slot.lock();
                match Self::take_state(&mut st) {
                    Taking::Got(r) => return Ok(r),
                    Taking::Taken => return Err(WaitError::Taken),
                    Taking::Pending => {}
                }
                if let State::Pending(w) = &mut *st {
                    *w = Some(waker.clone());
                }
            }
            // Spurious wake-ups only cost another look at the state.
            match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(WaitError::Elapsed(timeout));
                    }
                    std::thread::park_timeout(deadline - now);
                }
                None => std::thread::park(),
            }
        }
    }
}

const TAKEN: &str = "the Value's result was already taken (a Value resolves once)";

/// What looking into a value found.
enum Taking<T, E> {
    Pending,
    Got(Result<T, E>),
    Taken,
}

/// Wakes a thread blocked in [`Value::wait_blocking`].
struct Unparker(std::thread::Thread);

impl std::task::Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

impl<T, E: From<Abandoned>> Future for Value<T, E> {
    type Output = Result<T, E>;

    /// # Panics
    ///
    /// When polled again after it returned `Ready` (or after the result was taken by
    /// [`try_take`](Value::try_take) or a wait), as futures may.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Value holds no self-references, so it is Unpin and this is plain access.
        let this = self.get_mut();
        match &mut this.inner {
            Inner::Ready(r) => Poll::Ready(r.take().map(|b| *b).expect(TAKEN)),
            Inner::Slot(s) => {
                let mut st = s.lock();
                match Self::take_state(&mut st) {
                    Taking::Got(r) => return Poll::Ready(r),
                    Taking::Taken => panic!("{TAKEN}"),
                    Taking::Pending => {}
                }
                if let State::Pending(w) = &mut *st {
                    match w {
                        Some(old) if old.will_wake(cx.waker()) => {}
                        _ => *w = Some(cx.waker().clone()),
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl<T, E> Unpin for Value<T, E> {}

impl<T, E> std::fmt::Debug for Value<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.inner {
            Inner::Ready(Some(_)) => "ready",
            Inner::Ready(None) => "taken",
            Inner::Slot(s) => match *s.lock() {
                State::Pending(_) => "pending",
                State::Ready(..) => "ready",
                State::Taken => "taken",
                State::Abandoned => "abandoned",
            },
        };
        f.debug_struct("Value").field("state", &state).finish()
    }
}
