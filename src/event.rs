//! Events: what travels on the bus, how a handler's answer counts as success or failure, and the
//! derived events `Success`, `Failure` and `Complete`.
//!
//! Any actix [`Message`] that is `Clone + Send + 'static` and whose result implements [`Outcome`] is an
//! [`Event`]; nothing needs to be implemented by hand for the usual result types.
//!
//! ```
//! use circuits::{Event, Outcome};
//!
//! #[derive(Clone, actix::Message)]
//! #[rtype(result = "Result<u32, String>")]
//! struct Parse(String);
//!
//! fn is_event<E: Event>() {}
//! is_event::<Parse>();
//! assert_eq!(Err::<u32, String>("bad".into()).failure().as_deref(), Some("bad"));
//! ```

use actix::Message;

use crate::channel::Channel;

/// How the bus tells whether a handler's answer is a failure.
///
/// `Result<T, E>` fails with `E`'s message when it is `Err`; every other implementation provided here
/// always succeeds. Implement it (usually with an empty body) for your own result types.
pub trait Outcome {
    /// `Some(message)` when the answer means the handler failed.
    fn failure(&self) -> Option<String> {
        None
    }
}

impl<T, E: std::fmt::Display> Outcome for Result<T, E> {
    fn failure(&self) -> Option<String> {
        self.as_ref().err().map(|e| e.to_string())
    }
}

macro_rules! always_succeeds {
    ($($t:ty),* $(,)?) => { $(impl Outcome for $t {})* };
}
always_succeeds!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    &'static str,
    Channel
);

impl<T> Outcome for Vec<T> {}
impl<T> Outcome for Option<T> {}
impl<T: ?Sized> Outcome for Box<T> {}
impl<T: ?Sized> Outcome for std::sync::Arc<T> {}

/// Something that can be fired on the bus: a cloneable actix message whose answer is an [`Outcome`].
///
/// Implemented automatically; it exists to name the bound in one place.
pub trait Event: Message<Result: Outcome + Send + 'static> + Clone + Send + 'static {}

impl<E> Event for E
where
    E: Message + Clone + Send + 'static,
    E::Result: Outcome + Send + 'static,
{
}

/// Which derived events a fire asks for, as in circuits' `success`, `failure` and `complete` flags.
///
/// ```
/// use circuits::Derived;
/// let d = Derived::none().success().complete();
/// assert!(d.success && d.complete && !d.failure);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Derived {
    /// Fire [`Success<E>`] when every handler answered without failure.
    pub success: bool,
    /// Fire [`Failure<E>`] for every handler that failed.
    pub failure: bool,
    /// Fire [`Complete<E>`] once every handler (and the work it awaited) is done.
    pub complete: bool,
}

impl Derived {
    /// No derived events (what a plain fire does).
    pub fn none() -> Self {
        Derived::default()
    }
    /// All three derived events.
    pub fn all() -> Self {
        Derived {
            success: true,
            failure: true,
            complete: true,
        }
    }
    /// Also fire [`Success<E>`].
    pub fn success(mut self) -> Self {
        self.success = true;
        self
    }
    /// Also fire [`Failure<E>`].
    pub fn failure(mut self) -> Self {
        self.failure = true;
        self
    }
    /// Also fire [`Complete<E>`].
    pub fn complete(mut self) -> Self {
        self.complete = true;
        self
    }
    pub(crate) fn any(&self) -> bool {
        self.success || self.failure || self.complete
    }
}

/// Fired on the original channels when every handler of `event` answered without failure.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Success<E> {
    /// The event that succeeded.
    pub event: E,
    /// The channels it was fired on (empty when it targeted one component).
    pub channels: Vec<Channel>,
}

/// Fired on the original channels once per handler of `event` that failed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Failure<E> {
    /// The event whose handler failed.
    pub event: E,
    /// The channels it was fired on (empty when it targeted one component).
    pub channels: Vec<Channel>,
    /// What went wrong: the handler's error message, or that its actor stopped before answering.
    pub error: String,
}

/// Fired on the original channels when `event` is done: every handler answered, including handlers
/// that answer asynchronously after awaiting fires of their own.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Complete<E> {
    /// The event that completed.
    pub event: E,
    /// The channels it was fired on (empty when it targeted one component).
    pub channels: Vec<Channel>,
    /// How many handlers answered.
    pub handlers: usize,
    /// How many of them failed.
    pub failures: usize,
}
