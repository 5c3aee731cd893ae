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
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

pub(crate) mod help;
mod slot;

pub(crate) use slot::{FailSlot, Outcome, Promise};
use slot::{Slot, Took};

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

/// A new promise and the value it resolves.
pub(crate) fn promise<U, E>() -> (Promise<Result<U, E>>, Value<U, E>) {
    let slot = Arc::new(Slot::new());
    (
        Promise { slot: slot.clone() },
        Value {
            inner: Inner::Slot(slot, false),
        },
    )
}

enum Inner<T, E> {
    /// Shared with the resolving side; `true` while the first poll is to spin
    /// ([`Value::spin_first`]).
    Slot(Arc<Slot<Result<T, E>>>, bool),
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
            Inner::Slot(s, _) => s.is_ready(),
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
        Self::got(self.take())
    }

    /// The result a look found, `None` while pending; a second taking panics, as a future polled
    /// after it completed does.
    fn got(taking: Taking<T, E>) -> Option<Result<T, E>> {
        match taking {
            Taking::Pending => None,
            Taking::Got(r) => Some(r),
            Taking::Taken => panic!("{TAKEN}"),
        }
    }

    fn take(&mut self) -> Taking<T, E> {
        match &mut self.inner {
            Inner::Ready(r) => r.take().map_or(Taking::Taken, |b| Taking::Got(*b)),
            Inner::Slot(s, _) => {
                // SAFETY: this value is its slot's one waiting side, taking through `&mut self`.
                let took = unsafe { s.take() };
                self.took(took)
            }
        }
    }

    /// What the slot gave, as the value's own result. Once the result is taken out, the value
    /// lets go of its slot, and so of the waker left there (a task's, which would otherwise stay
    /// alive as long as this value).
    fn took(&mut self, took: Took<Result<T, Box<E>>>) -> Taking<T, E> {
        match took {
            Took::Pending => Taking::Pending,
            Took::Got(r) => {
                self.inner = Inner::Ready(None);
                Taking::Got(Result::unkeep(r))
            }
            Took::Abandoned => Taking::Got(Err(Abandoned.into())),
            Took::Taken => Taking::Taken,
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
            Inner::Slot(s, _) => s.clone(),
        };
        // A bound too far to be a time on this clock (`Duration::MAX`) is no bound at all.
        let deadline = Instant::now().checked_add(timeout);
        let waker = Waker::from(Arc::new(Unparker(std::thread::current())));
        loop {
            // SAFETY: this value is its slot's one waiting side, waiting through `&mut self`.
            let took = unsafe { slot.take_or_wake(&waker) };
            match self.took(took) {
                Taking::Got(r) => return Ok(r),
                Taking::Taken => return Err(WaitError::Taken),
                Taking::Pending => {}
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

impl<T, E> Value<T, E> {
    /// When `at_once` (the pool placed its task on an idle worker that takes it at once, and no
    /// other task of the pool is in flight), the first poll looks for the result for up to
    /// [`FIRST_POLL_SPIN`] before it registers its waker and returns `Pending`: that poll blocks
    /// the thread polling it (an actix runtime thread, say, with whatever else it runs) for up to
    /// a microsecond.
    ///
    /// A short task's value is set within about a microsecond of its push; by then the awaiting
    /// runtime thread has often parked, and waking it costs 5-20 us on a VM. Spinning that
    /// microsecond in place took S1 (one task in flight) from 10-15 us a round trip to 0.6-2.5 us
    /// (medians of full reports). With other tasks of the pool in flight no value spins: the pool
    /// is busy, and its callers would only take turns at spinning.
    ///
    /// The push's worker may have offered to have this first poll read the result itself (see
    /// `help`): the offer becomes this value's when it spins, and is withdrawn when it does not.
    pub(crate) fn spin_first(mut self, at_once: bool) -> Self {
        if let Inner::Slot(s, spin) = &mut self.inner {
            *spin = at_once;
            help::claim(Arc::as_ptr(s) as usize, at_once);
        }
        self
    }
}

impl<T, E: From<Abandoned>> Value<T, E> {
    /// Looks for the result for up to [`FIRST_POLL_SPIN`] (each look one atomic load);
    /// `Took::Pending` when it is not there by then.
    ///
    /// # Safety
    ///
    /// Called by the slot's one waiting side (its value, through `&mut self`).
    unsafe fn spin(s: &Slot<Result<T, E>>) -> Took<Result<T, Box<E>>> {
        let until = Instant::now() + FIRST_POLL_SPIN;
        loop {
            // SAFETY: the caller is the one waiting side.
            let took = unsafe { s.take() };
            if !matches!(took, Took::Pending) {
                return took;
            }
            if Instant::now() >= until {
                return Took::Pending;
            }
            for _ in 0..SPINS_PER_LOOK {
                std::hint::spin_loop();
            }
        }
    }
}

/// How long the first poll of a value whose task starts at once looks for its result before it
/// parks (see [`Value::spin_first`]).
const FIRST_POLL_SPIN: Duration = Duration::from_micros(1);

/// Pause hints between two looks: a few dozen to a few hundred nanoseconds, by CPU.
const SPINS_PER_LOOK: usize = 4;

// The spin's flag lives in the variant's padding: a `Value` is still two words.
const _: () = assert!(std::mem::size_of::<Value<u64, Abandoned>>() == 16);

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
            Inner::Slot(s, spin) => {
                let mut took = Took::Pending;
                if std::mem::take(spin) {
                    // Its worker may have offered to read its answer on this thread.
                    if let Some(help) = help::take(Arc::as_ptr(s) as usize) {
                        help.help(&|| s.is_ready());
                    }
                    // SAFETY: this value is its slot's one waiting side, polled through `&mut`.
                    took = unsafe { Self::spin(s) };
                }
                if matches!(took, Took::Pending) {
                    // SAFETY: as above.
                    took = unsafe { s.take_or_wake(cx.waker()) };
                }
                match Self::got(this.took(took)) {
                    Some(r) => Poll::Ready(r),
                    None => Poll::Pending,
                }
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
            Inner::Slot(s, _) => s.describe(),
        };
        f.debug_struct("Value").field("state", &state).finish()
    }
}

#[cfg(test)]
mod tests;
