//! Firing: events to channels or a component, with their derived events, and [`Dispatch`], the
//! trait behind [`Bus::call`] (events, and tasks routed to a pool).

use super::core::Bus;
use super::dispatch::{after, deliver, Lane, Report};
use super::error::BusError;
use super::sync::lock;
use super::target::Target;
use crate::event::{Complete, Derived, Event, Failure, Success};
use crate::value::{promise, Promise, Value};

/// Fires `Answered<E>` with a copy of a fire's answers (see [`Bus::fire_with_answers`]): a plain
/// function, made where `E::Result: Clone` is known.
type Feedback<E> =
    fn(&Bus, &Target, &E, &[<E as actix::Message>::Result]) -> super::dispatch::BoxFuture;

fn answered<E: Event>(
    bus: &Bus,
    target: &Target,
    event: &E,
    answers: &[E::Result],
) -> super::dispatch::BoxFuture
where
    E::Result: Clone,
{
    let a = crate::event::Answered {
        event: event.clone(),
        channels: target.channels().to_vec(),
        answers: answers.to_vec(),
    };
    let (bus, target) = (bus.clone(), target.clone());
    Box::pin(async move {
        bus.fire_plain(&target, a).await;
    })
}

/// Anything [`Bus::call`] can send: every [`Event`] (fired to its subscribers) and
/// [`Task`](crate::Task) (routed to the pool or worker registered under the target channel).
pub trait Dispatch {
    /// What the caller gets back.
    type Output;
    /// Sends `self` to `target` on `bus`.
    ///
    /// # Errors
    ///
    /// The crate's implementations answer with a [`Value`] that can resolve to an error, as
    /// described under [`Bus::call`].
    fn dispatch(self, bus: &Bus, target: Target) -> Self::Output;
}

impl<E: Event> Dispatch for E {
    type Output = Value<Vec<E::Result>, BusError>;
    fn dispatch(self, bus: &Bus, target: Target) -> Self::Output {
        bus.fire_with(target, self, Derived::none())
    }
}

impl Bus {
    /// Fires `event` at `target` (a channel name, several, or a component) and returns the future
    /// of the handlers' answers, in dispatch order.
    ///
    /// Handlers whose actor stopped before answering are left out of the answers. A handler that
    /// answers with a failure (an `Err`, see [`Outcome`](crate::Outcome)) is not an error of the fire: its answer
    /// is in the list like any other. Dropping the value does not cancel the delivery.
    ///
    /// # Errors
    ///
    /// The value resolves at once to an error, and nothing is delivered, when:
    ///
    /// * [`BusError::Stopped`]: the bus was [stopped](Bus::stop);
    /// * [`BusError::EmptyChannel`]: one of the target channels is the empty name;
    /// * [`BusError::NoTarget`]: the target names no channel at all (an empty list).
    ///
    /// It resolves to [`BusError::Abandoned`] on a bus whose dispatch thread could not start.
    /// Waiting on it with a bound ([`Value::wait`]) can also fail with a
    /// [`WaitError`](crate::WaitError), beside the fire's own result.
    pub fn fire<E: Event>(
        &self,
        target: impl Into<Target>,
        event: E,
    ) -> Value<Vec<E::Result>, BusError> {
        self.fire_with(target, event, Derived::none())
    }

    /// Fires like [`fire`](Bus::fire) and also fires the [`Derived`] events asked for:
    /// [`Success<E>`], [`Failure<E>`] (once per failed handler) and [`Complete<E>`], on the same
    /// channels. `Complete` comes last, after every handler has answered.
    ///
    /// # Errors
    ///
    /// As [`fire`](Bus::fire); a fire refused that way fires no derived event either.
    pub fn fire_with<E: Event>(
        &self,
        target: impl Into<Target>,
        event: E,
        derived: Derived,
    ) -> Value<Vec<E::Result>, BusError> {
        self.fire_after(target.into(), event, derived, None, None)
    }

    /// Fires like [`fire_with`](Bus::fire_with) and, once every handler has answered, also fires
    /// [`Answered<E>`](crate::Answered) on the same channels with every answer (circuits'
    /// feedback: the handlers' values reach the subscribers of the outcome, not only the caller).
    /// It comes before the other derived events. The answers are cloned for it, hence the bound.
    ///
    /// ```
    /// use actix::prelude::*;
    /// use circuits::prelude::*;
    /// use circuits::{Answered, Derived};
    ///
    /// #[derive(Clone, Message)]
    /// #[rtype(result = "u32")]
    /// struct Double(u32);
    ///
    /// struct Doubler;
    /// impl Actor for Doubler { type Context = Context<Self>; }
    /// impl Handler<Double> for Doubler {
    ///     type Result = u32;
    ///     fn handle(&mut self, d: Double, _: &mut Context<Self>) -> u32 { d.0 * 2 }
    /// }
    ///
    /// struct Audit(tokio::sync::mpsc::UnboundedSender<Vec<u32>>);
    /// impl Actor for Audit { type Context = Context<Self>; }
    /// impl Handler<Answered<Double>> for Audit {
    ///     type Result = ();
    ///     fn handle(&mut self, a: Answered<Double>, _: &mut Context<Self>) {
    ///         let _ = self.0.send(a.answers);
    ///     }
    /// }
    ///
    /// # #[actix::main] async fn main() -> Result<(), circuits::Error> {
    /// let bus = Bus::new();
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// bus.subscribe("math", Doubler.start().recipient::<Double>())?;
    /// bus.subscribe("math", Audit(tx).start().recipient::<Answered<Double>>())?;
    /// let answers = bus.fire_with_answers("math", Double(21), Derived::none()).await?;
    /// assert_eq!(answers, vec![42]);
    /// assert_eq!(rx.recv().await, Some(vec![42])); // the audit saw the value too
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`fire`](Bus::fire).
    pub fn fire_with_answers<E: Event>(
        &self,
        target: impl Into<Target>,
        event: E,
        derived: Derived,
    ) -> Value<Vec<E::Result>, BusError>
    where
        E::Result: Clone,
    {
        self.fire_after(target.into(), event, derived, None, Some(answered::<E>))
    }

    /// Fires as [`fire_with`](Bus::fire_with); with `lane`, the delivery waits for the lane's
    /// last one and becomes its last; with `feedback`, `Answered<E>` is fired too.
    pub(super) fn fire_after<E: Event>(
        &self,
        target: Target,
        event: E,
        derived: Derived,
        lane: Option<&std::sync::Mutex<Option<Lane>>>,
        feedback: Option<Feedback<E>>,
    ) -> Value<Vec<E::Result>, BusError> {
        let handlers = match self.select::<E>(&target) {
            Ok(h) => h,
            Err(e) => return Value::ready(Err(e)),
        };
        self.echo(&target, &event);
        if handlers.is_empty() && !derived.any() && feedback.is_none() {
            return Value::ready(Ok(Vec::new()));
        }
        let (promise, value) = promise();
        let bus = self.clone();
        match lane {
            // Handed to the first handler's inbox now, so fires made from one thread reach every
            // subscriber in the order they were made.
            None => {
                let delivered = deliver(handlers, event);
                self.spawn(async move {
                    bus.settle_fire(target, derived, promise, delivered.await, feedback)
                        .await
                });
            }
            Some(lane) => {
                let mut last = lock(lane);
                let next = after(last.take(), async move {
                    let delivered = deliver(handlers, event).await;
                    bus.settle_fire(target, derived, promise, delivered, feedback)
                        .await
                });
                *last = Some(next.clone());
                // Spawned under the lane's lock: the lane's order is the order of the calls.
                self.spawn(next);
            }
        }
        value
    }

    /// A fire's handlers have answered: resolve its value, then fire the derived events asked for.
    async fn settle_fire<E: Event>(
        &self,
        target: Target,
        derived: Derived,
        promise: Promise<Result<Vec<E::Result>, BusError>>,
        delivered: Option<(Report<E::Result>, E)>,
        feedback: Option<Feedback<E>>,
    ) {
        // Abandoned (the dispatch thread went away): the value says so when the promise drops.
        let Some((report, event)) = delivered else {
            return;
        };
        let channels = target.channels().to_vec();
        let failures = report.failures.len();
        let answered = feedback.map(|f| f(self, &target, &event, &report.answers));
        promise.complete(Ok(report.answers));
        if let Some(answered) = answered {
            answered.await;
        }
        if derived.failure {
            for (handler, error) in report.failures {
                let f = Failure {
                    event: event.clone(),
                    channels: channels.clone(),
                    error,
                    handler,
                };
                self.fire_plain(&target, f).await;
            }
        }
        if derived.success && failures == 0 {
            let s = Success {
                event: event.clone(),
                channels: channels.clone(),
            };
            self.fire_plain(&target, s).await;
        }
        if derived.complete {
            let c = Complete {
                event,
                channels,
                handlers: report.reached,
                failures,
                stopped: report.stopped,
            };
            self.fire_plain(&target, c).await;
        }
    }

    /// The delivery of an event without derived events to the handlers subscribed now, to run
    /// later (a subscription made in between does not get it, as with a fire).
    pub(crate) fn plain_delivery<E: Event>(
        &self,
        target: &Target,
        event: E,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let handlers = self.select::<E>(target).unwrap_or_default();
        self.echo(target, &event);
        async move {
            if !handlers.is_empty() {
                deliver(handlers, event).await;
            }
        }
    }

    /// Delivers an event without derived events, handed to the first handler now, and waits for
    /// nothing (no value, errors dropped).
    pub(crate) fn deliver_now<E: Event>(&self, target: &Target, event: E) {
        self.echo(target, &event);
        if let Ok(handlers) = self.select::<E>(target) {
            if !handlers.is_empty() {
                drop(deliver(handlers, event));
            }
        }
    }

    /// Delivers an event without derived events and waits for it (used for derived and lifecycle
    /// events; errors have nowhere to go and are dropped).
    /// Returns how many handlers it was delivered to.
    pub(crate) async fn fire_plain<E: Event>(&self, target: &Target, event: E) -> usize {
        self.echo(target, &event);
        match self.select::<E>(target) {
            Ok(handlers) if !handlers.is_empty() => {
                let n = handlers.len();
                deliver(handlers, event).await;
                n
            }
            _ => 0,
        }
    }

    /// Sends anything [`Dispatch`]able: an event (as [`fire`](Bus::fire)) or a
    /// [`Task`](crate::Task), which runs on the pool or worker registered under the target channel
    /// and resolves to the task's own result.
    ///
    /// ```
    /// use circuits::prelude::*;
    ///
    /// # #[actix::main] async fn main() -> Result<(), circuits::Error> {
    /// let pool = Pool::builder().min(1).channel("math").start();
    /// let answer = pool.bus().call("math", Task::new(|| 6 * 7))?; // accepted
    /// assert_eq!(answer.await?, 42);
    /// pool.stop().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// For an event, as [`fire`](Bus::fire). For a task, as
    /// [`PoolHandle::push`](crate::PoolHandle::push): `Err(`[`SubmitError`]`)` hands the task back
    /// when it was not accepted, with [`Refusal::NoRoute`](crate::Refusal::NoRoute) when the
    /// target is not exactly one channel on which a pool or one of its workers takes tasks, and
    /// [`Refusal::Full`](crate::Refusal::Full) when that pool is bounded and full (a call never
    /// waits for room); the value then resolves to the task's [`TaskError`] if it fails.
    ///
    /// [`TaskError`]: crate::TaskError
    /// [`SubmitError`]: crate::SubmitError
    pub fn call<D: Dispatch>(&self, target: impl Into<Target>, message: D) -> D::Output {
        message.dispatch(self, target.into())
    }
}
