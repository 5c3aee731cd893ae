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
    /// Whether the answer stops the fire: the handlers after this one (lower priority, later
    /// subscription) do not get the event (circuits' `event.stop()`). `false` unless the answer is
    /// a [`Flow::Stop`].
    fn stops(&self) -> bool {
        false
    }
}

/// A handler's answer that can stop its fire (circuits' `event.stop()`, and its filters: a handler
/// that consumed the event stops it): answer `Flow::Stop(v)` and the handlers after this one do
/// not get the event; `Flow::Continue(v)` lets it go on. The answers so far, this one included,
/// are the fire's answers, and [`Complete::stopped`] says it was stopped.
///
/// ```
/// use actix::prelude::*;
/// use circuits::prelude::*;
/// use circuits::{Flow, Subscribe};
///
/// #[derive(Clone, Message)]
/// #[rtype(result = "Flow<&'static str>")]
/// struct Request(u32);
///
/// struct Cache;
/// impl Actor for Cache { type Context = Context<Self>; }
/// impl Handler<Request> for Cache {
///     type Result = Flow<&'static str>;
///     fn handle(&mut self, r: Request, _: &mut Context<Self>) -> Self::Result {
///         if r.0 == 1 { Flow::Stop("cached") } else { Flow::Continue("miss") }
///     }
/// }
/// struct Origin;
/// impl Actor for Origin { type Context = Context<Self>; }
/// impl Handler<Request> for Origin {
///     type Result = Flow<&'static str>;
///     fn handle(&mut self, _: Request, _: &mut Context<Self>) -> Self::Result {
///         Flow::Continue("fetched")
///     }
/// }
///
/// # #[actix::main] async fn main() -> Result<(), circuits::Error> {
/// let bus = Bus::new();
/// bus.subscribe_with("web", Cache.start().recipient(), Subscribe::new().priority(10))?;
/// bus.subscribe("web", Origin.start().recipient())?;
/// let hit = bus.fire("web", Request(1)).await?;
/// assert_eq!(hit, vec![Flow::Stop("cached")]); // the origin never saw it
/// let miss = bus.fire("web", Request(2)).await?;
/// assert_eq!(miss, vec![Flow::Continue("miss"), Flow::Continue("fetched")]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flow<T> {
    /// Let the next handlers have the event too.
    Continue(T),
    /// The handlers after this one do not get the event.
    Stop(T),
}

impl<T> Flow<T> {
    /// The answer, whichever way the fire goes on.
    pub fn into_inner(self) -> T {
        match self {
            Flow::Continue(v) | Flow::Stop(v) => v,
        }
    }
}

impl<T: Outcome> Outcome for Flow<T> {
    fn failure(&self) -> Option<String> {
        match self {
            Flow::Continue(v) | Flow::Stop(v) => v.failure(),
        }
    }
    fn stops(&self) -> bool {
        matches!(self, Flow::Stop(_))
    }
}

// `Flow<T>` is what a handler returns: actix sends it back as the message's answer.
impl<A, M, T> actix::dev::MessageResponse<A, M> for Flow<T>
where
    A: actix::Actor,
    M: actix::Message<Result = Flow<T>>,
    T: 'static,
{
    fn handle(self, _: &mut A::Context, tx: Option<actix::dev::OneshotSender<M::Result>>) {
        if let Some(tx) = tx {
            let _ = tx.send(self);
        }
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

/// Fired on the original channels, by [`Bus::fire_with_answers`](crate::Bus::fire_with_answers),
/// once every handler of `event` has answered: the answers, in dispatch order (circuits'
/// feedback of a handler's value).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Answered<E: Message> {
    /// The event that was answered.
    pub event: E,
    /// The channels it was fired on (empty when it targeted one component).
    pub channels: Vec<Channel>,
    /// Every handler's answer, in dispatch order (those whose actor stopped are left out).
    pub answers: Vec<E::Result>,
}

/// Fired on the original channels once per handler of `event` that failed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Failure<E> {
    /// The event whose handler failed.
    pub event: E,
    /// The channels it was fired on (empty when it targeted one component).
    pub channels: Vec<Channel>,
    /// What went wrong: the handler's error message, or that its actor stopped before answering
    /// (a panicking handler stops its actor).
    pub error: String,
    /// The subscription of the handler that failed.
    pub handler: crate::bus::SubscriptionId,
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
    /// How many handlers it reached (all its handlers, unless one [stopped](Flow::Stop) it).
    pub handlers: usize,
    /// How many of them failed.
    pub failures: usize,
    /// A handler stopped it ([`Flow::Stop`]): the handlers after that one did not get it.
    pub stopped: bool,
}
