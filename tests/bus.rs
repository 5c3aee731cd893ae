//! The event bus: the behaviours of the circuits core test suite, in Rust.

mod common;

use common::{bounded, eventually, listen, Record, BOUND};

use std::time::Duration;

use actix::prelude::*;
use circuits::{
    Bus, BusError, Complete, Component, Derived, Failure, Subscribe, Success, WaitError,
};

/// What handlers saw, in order; tests await its length instead of polling it.
type Log = Record<String>;

fn log() -> Log {
    Record::new()
}

fn entries(log: &Log) -> Vec<String> {
    log.get()
}

/// Asks for a number; each handler answers with its own.
#[derive(Clone, Message)]
#[rtype(result = "u32")]
struct Hello;

/// A handler that may fail.
#[derive(Clone, Message)]
#[rtype(result = "Result<u32, String>")]
struct Check(u32);

/// A handler that answers late.
#[derive(Clone, Message)]
#[rtype(result = "u32")]
struct Slow(u64);

/// Records what it receives, answers with its number.
struct Probe {
    name: &'static str,
    answer: u32,
    log: Log,
}

impl Probe {
    fn start(name: &'static str, answer: u32, log: &Log) -> Addr<Probe> {
        Probe {
            name,
            answer,
            log: log.clone(),
        }
        .start()
    }
}

impl Actor for Probe {
    type Context = Context<Self>;
}

impl Handler<Hello> for Probe {
    type Result = u32;
    fn handle(&mut self, _: Hello, _: &mut Context<Self>) -> u32 {
        self.log.push(self.name.to_string());
        self.answer
    }
}

impl Handler<Check> for Probe {
    type Result = Result<u32, String>;
    fn handle(&mut self, c: Check, _: &mut Context<Self>) -> Result<u32, String> {
        if c.0 == self.answer {
            Err(format!("{} refuses {}", self.name, c.0))
        } else {
            Ok(self.answer)
        }
    }
}

impl Handler<Slow> for Probe {
    type Result = ResponseFuture<u32>;
    fn handle(&mut self, s: Slow, _: &mut Context<Self>) -> Self::Result {
        let answer = self.answer;
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(s.0)).await;
            answer
        })
    }
}

impl Handler<Success<Check>> for Probe {
    type Result = ();
    fn handle(&mut self, s: Success<Check>, _: &mut Context<Self>) {
        self.log.push(format!("success {}", s.event.0));
    }
}

impl Handler<Failure<Check>> for Probe {
    type Result = ();
    fn handle(&mut self, f: Failure<Check>, _: &mut Context<Self>) {
        self.log.push(format!("failure {}", f.error));
    }
}

impl Handler<Complete<Check>> for Probe {
    type Result = ();
    fn handle(&mut self, c: Complete<Check>, _: &mut Context<Self>) {
        self.log
            .push(format!("complete {}/{}", c.failures, c.handlers));
    }
}

#[actix_rt::test]
async fn fire_returns_the_handlers_values() {
    let bus = Bus::new();
    let l = log();
    bus.subscribe("app", Probe::start("a", 7, &l).recipient::<Hello>())
        .unwrap();
    let answers = bounded(bus.fire("app", Hello)).await.unwrap();
    assert_eq!(answers, vec![7]);
    assert_eq!(entries(&l), vec!["a"]);
}

#[actix_rt::test]
async fn handlers_run_highest_priority_first_ties_in_subscription_order() {
    let bus = Bus::new();
    let l = log();
    let low = Probe::start("low", 1, &l);
    let high = Probe::start("high", 2, &l);
    let tie1 = Probe::start("tie1", 3, &l);
    let tie2 = Probe::start("tie2", 4, &l);
    bus.subscribe_with(
        "app",
        low.recipient::<Hello>(),
        Subscribe::new().priority(-5),
    )
    .unwrap();
    bus.subscribe_with("app", tie1.recipient::<Hello>(), Subscribe::new())
        .unwrap();
    bus.subscribe_with(
        "app",
        high.recipient::<Hello>(),
        Subscribe::new().priority(10),
    )
    .unwrap();
    bus.subscribe_with("app", tie2.recipient::<Hello>(), Subscribe::new())
        .unwrap();
    let answers = bounded(bus.fire("app", Hello)).await.unwrap();
    assert_eq!(answers, vec![2, 3, 4, 1]);
    assert_eq!(entries(&l), vec!["high", "tie1", "tie2", "low"]);
}

#[actix_rt::test]
async fn fire_reaches_only_the_named_channels() {
    let bus = Bus::new();
    let l = log();
    bus.subscribe("a", Probe::start("on-a", 1, &l).recipient::<Hello>())
        .unwrap();
    bus.subscribe("b", Probe::start("on-b", 2, &l).recipient::<Hello>())
        .unwrap();
    bus.subscribe("c", Probe::start("on-c", 3, &l).recipient::<Hello>())
        .unwrap();

    assert_eq!(bounded(bus.fire("a", Hello)).await.unwrap(), vec![1]);
    let mut two = bounded(bus.fire(["a", "b"], Hello)).await.unwrap();
    two.sort();
    assert_eq!(two, vec![1, 2]);
    let mut unknown = bus.fire("nowhere", Hello);
    assert!(
        unknown.is_ready(),
        "a fire with no subscriber resolves at once"
    );
    assert_eq!(bounded(&mut unknown).await.unwrap(), Vec::<u32>::new());
    assert_eq!(entries(&l), vec!["on-a", "on-a", "on-b"]);
}

#[actix_rt::test]
async fn direct_targeting_reaches_one_component_only() {
    let bus = Bus::new();
    let l = log();
    let a = bus.register(Component::new("a").channel("shared")).unwrap();
    let b = bus.register(Component::new("b").channel("shared")).unwrap();
    let opts_a = Subscribe::new().component(a);
    let opts_b = Subscribe::new().component(b);
    bus.subscribe_with(
        "shared",
        Probe::start("a", 1, &l).recipient::<Hello>(),
        opts_a,
    )
    .unwrap();
    bus.subscribe_with(
        "shared",
        Probe::start("b", 2, &l).recipient::<Hello>(),
        opts_b,
    )
    .unwrap();
    assert_eq!(bounded(bus.fire(b, Hello)).await.unwrap(), vec![2]);
    assert_eq!(bounded(bus.fire(a, Hello)).await.unwrap(), vec![1]);
    assert_eq!(entries(&l), vec!["b", "a"]);
}

#[actix_rt::test]
async fn wildcard_subscribers_hear_every_channel_and_firing_at_wildcard_reaches_all() {
    let bus = Bus::new();
    let l = log();
    bus.subscribe("*", Probe::start("any", 0, &l).recipient::<Hello>())
        .unwrap();
    bus.subscribe("x", Probe::start("x", 1, &l).recipient::<Hello>())
        .unwrap();
    bus.subscribe("y", Probe::start("y", 2, &l).recipient::<Hello>())
        .unwrap();
    assert_eq!(bounded(bus.fire("x", Hello)).await.unwrap(), vec![0, 1]);
    assert_eq!(bounded(bus.fire("z", Hello)).await.unwrap(), vec![0]);
    assert_eq!(bounded(bus.fire("*", Hello)).await.unwrap(), vec![0, 1, 2]);
}

#[actix_rt::test]
async fn a_failing_handler_next_to_a_succeeding_one_shows_both_and_fires_failure() {
    let bus = Bus::new();
    let l = log();
    let ok = Probe::start("ok", 1, &l);
    let bad = Probe::start("bad", 9, &l);
    let watcher = Probe::start("watcher", 0, &l);
    bus.subscribe("app", ok.recipient::<Check>()).unwrap();
    bus.subscribe("app", bad.recipient::<Check>()).unwrap();
    bus.subscribe("app", watcher.clone().recipient::<Failure<Check>>())
        .unwrap();
    bus.subscribe("app", watcher.clone().recipient::<Success<Check>>())
        .unwrap();
    bus.subscribe("app", watcher.recipient::<Complete<Check>>())
        .unwrap();

    let answers = bounded(bus.fire_with("app", Check(9), Derived::all()))
        .await
        .unwrap();
    assert_eq!(answers, vec![Ok(1), Err("bad refuses 9".to_string())]);
    // Derived events are delivered after the value resolves; Complete comes last.
    assert_eq!(
        l.at_least(2).await,
        vec![
            "failure bad refuses 9".to_string(),
            "complete 1/2".to_string()
        ]
    );
}

#[actix_rt::test]
async fn success_and_complete_fire_when_every_handler_succeeds() {
    let bus = Bus::new();
    let l = log();
    let watcher = Probe::start("watcher", 0, &l);
    bus.subscribe("app", Probe::start("ok", 1, &l).recipient::<Check>())
        .unwrap();
    bus.subscribe("app", watcher.clone().recipient::<Success<Check>>())
        .unwrap();
    bus.subscribe("app", watcher.clone().recipient::<Failure<Check>>())
        .unwrap();
    bus.subscribe("app", watcher.recipient::<Complete<Check>>())
        .unwrap();
    // Without asking, no derived events.
    bounded(bus.fire("app", Check(5))).await.unwrap();
    bounded(bus.fire_with("app", Check(5), Derived::none().success().complete()))
        .await
        .unwrap();
    assert_eq!(l.at_least(2).await, vec!["success 5", "complete 0/1"]);
}

/// A component whose handler fires a nested event and awaits it before answering.
struct Relay {
    bus: Bus,
    log: Log,
}

impl Actor for Relay {
    type Context = Context<Self>;
}

#[derive(Clone, Message)]
#[rtype(result = "Result<u32, String>")]
struct Outer;

impl Handler<Outer> for Relay {
    type Result = ResponseFuture<Result<u32, String>>;
    fn handle(&mut self, _: Outer, _: &mut Context<Self>) -> Self::Result {
        let nested = self.bus.fire("inner", Slow(50));
        let log = self.log.clone();
        Box::pin(async move {
            let answers = nested.await.map_err(|e| e.to_string())?;
            log.push("nested done".into());
            // A value that is a chain of fires: the outer answer comes from the inner one.
            Ok(answers.iter().sum::<u32>() + 1)
        })
    }
}

impl Handler<Complete<Outer>> for Relay {
    type Result = ();
    fn handle(&mut self, _: Complete<Outer>, _: &mut Context<Self>) {
        self.log.push("complete".into());
    }
}

#[actix_rt::test]
async fn complete_fires_only_after_nested_fires_finish_and_values_chain() {
    let bus = Bus::new();
    let l = log();
    let relay = Relay {
        bus: bus.clone(),
        log: l.clone(),
    }
    .start();
    bus.subscribe("outer", relay.clone().recipient::<Outer>())
        .unwrap();
    bus.subscribe("outer", relay.recipient::<Complete<Outer>>())
        .unwrap();
    bus.subscribe("inner", Probe::start("inner", 41, &l).recipient::<Slow>())
        .unwrap();
    let answers = bounded(bus.fire_with("outer", Outer, Derived::none().complete()))
        .await
        .unwrap();
    assert_eq!(answers, vec![Ok(42)]);
    assert_eq!(l.at_least(2).await, vec!["nested done", "complete"]);
}

#[actix_rt::test]
async fn waiting_with_a_timeout_elapses_then_the_value_still_resolves() {
    let bus = Bus::new();
    let l = log();
    bus.subscribe("app", Probe::start("slow", 3, &l).recipient::<Slow>())
        .unwrap();
    // Two seconds of handler against a 5 ms bound: the bound elapses first even on a busy machine.
    let mut v = bus.fire("app", Slow(2_000));
    let early = v.wait(Duration::from_millis(5)).await;
    assert_eq!(early, Err(WaitError::Elapsed(Duration::from_millis(5))));
    // The wait's outcome outside, the fire's own result inside.
    assert_eq!(v.wait(BOUND).await, Ok(Ok(vec![3])));
    // The result was taken; asking again says so rather than hanging.
    assert_eq!(v.wait(BOUND).await, Err(WaitError::Taken));
    assert_eq!(v.wait_blocking(BOUND), Err(WaitError::Taken));
}

#[actix_rt::test]
async fn after_an_elapsed_wait_the_fire_can_still_be_awaited() {
    let bus = Bus::new();
    let l = log();
    bus.subscribe("app", Probe::start("slow", 4, &l).recipient::<Slow>())
        .unwrap();
    // Two seconds of handler against 5 ms bounds: each bound elapses first.
    let short = Duration::from_millis(5);
    let mut v = bus.fire("app", Slow(2_000));
    assert_eq!(v.wait(short).await, Err(WaitError::Elapsed(short)));
    // From a plain thread too; the value comes back untouched.
    let (waited, mut v) = tokio::task::spawn_blocking(move || {
        let waited = v.wait_blocking(short);
        (waited, v)
    })
    .await
    .unwrap();
    assert_eq!(waited, Err(WaitError::Elapsed(short)));
    assert!(v.try_take().is_none(), "nothing was taken");
    assert_eq!(bounded(v).await, Ok(vec![4]));
}

#[actix_rt::test]
async fn waiting_on_a_finished_value_returns_at_once() {
    let bus = Bus::new();
    let l = log();
    bus.subscribe("app", Probe::start("a", 5, &l).recipient::<Hello>())
        .unwrap();
    let mut complete = listen::<Complete<Hello>>(&bus, "app");
    let mut v = bus.fire_with("app", Hello, Derived::none().complete());
    // `Complete` is fired after the value resolved.
    let c = complete.next().await;
    assert_eq!((c.handlers, c.failures), (1, 0));
    assert!(v.is_ready());
    // Already resolved: the answer is there without waiting (try_take never waits).
    assert_eq!(v.try_take(), Some(Ok(vec![5])));
    let mut none = bus.fire("empty", Hello);
    assert!(none.is_ready());
    assert_eq!(none.wait(Duration::from_nanos(1)).await, Ok(Ok(vec![])));
}

#[actix_rt::test]
async fn a_zero_timeout_is_a_clear_error() {
    let bus = Bus::new();
    let mut v = bus.fire("empty", Hello);
    assert_eq!(v.wait(Duration::ZERO).await, Err(WaitError::ZeroTimeout));
    assert_eq!(v.wait_blocking(Duration::ZERO), Err(WaitError::ZeroTimeout));
    // Nothing was waited for or taken: the result is still there.
    assert_eq!(v.wait(BOUND).await, Ok(Ok(vec![])));
}

#[actix_rt::test]
async fn subscribe_and_unsubscribe_leave_no_subscription_behind() {
    let bus = Bus::new();
    let l = log();
    let p = Probe::start("p", 1, &l);
    let s1 = bus
        .subscribe("app", p.clone().recipient::<Hello>())
        .unwrap();
    let s2 = bus
        .subscribe("app", p.clone().recipient::<Check>())
        .unwrap();
    assert_eq!(bus.subscriptions(), 2);
    assert_eq!(bus.subscribers::<Hello>("app"), 1);
    assert_eq!(bounded(bus.fire("app", Hello)).await.unwrap(), vec![1]);
    assert!(bus.unsubscribe(s1));
    assert!(!bus.unsubscribe(s1), "a second unsubscribe finds nothing");
    assert_eq!(
        bounded(bus.fire("app", Hello)).await.unwrap(),
        Vec::<u32>::new()
    );
    assert!(bus.unsubscribe(s2));
    assert_eq!(bus.subscriptions(), 0);

    // A subscriber whose actor stops is pruned automatically.
    let gone = Probe::start("gone", 2, &l);
    bus.subscribe("app", gone.clone().recipient::<Hello>())
        .unwrap();
    let stopper = StopMe.start();
    stopper.send(Kill(gone)).await.unwrap();
    // An actor's end fires no event: the count (which prunes) is polled.
    assert!(
        eventually(10, || bus.subscriptions() == 0).await,
        "the stopped subscriber was not pruned"
    );
    assert_eq!(
        bounded(bus.fire("app", Hello)).await.unwrap(),
        Vec::<u32>::new()
    );
}

/// Stops a probe from the inside by sending it a `circuits::Stop`-like message.
struct StopMe;
impl Actor for StopMe {
    type Context = Context<Self>;
}
#[derive(Message)]
#[rtype(result = "()")]
struct Kill(Addr<Probe>);
impl Handler<Kill> for StopMe {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, k: Kill, _: &mut Context<Self>) -> Self::Result {
        Box::pin(async move {
            let _ = k.0.send(Halt).await;
        })
    }
}
#[derive(Message)]
#[rtype(result = "()")]
struct Halt;
impl Handler<Halt> for Probe {
    type Result = ();
    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[actix_rt::test]
async fn firing_from_a_plain_os_thread_works() {
    let bus = Bus::new();
    let l = log();
    bus.subscribe("app", Probe::start("a", 11, &l).recipient::<Hello>())
        .unwrap();
    let b = bus.clone();
    let answers = tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || b.fire("app", Hello).wait_blocking(BOUND))
            .join()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(answers, Ok(Ok(vec![11])));
}

#[actix_rt::test]
async fn bad_input_gets_a_clear_error() {
    let bus = Bus::new();
    let l = log();
    let p = Probe::start("p", 1, &l);
    assert_eq!(
        bus.subscribe("", p.clone().recipient::<Hello>()),
        Err(BusError::EmptyChannel)
    );
    assert_eq!(
        bounded(bus.fire("", Hello)).await,
        Err(BusError::EmptyChannel)
    );
    assert_eq!(
        bounded(bus.fire(Vec::<&str>::new(), Hello)).await,
        Err(BusError::NoTarget)
    );

    p.send(Halt).await.unwrap();
    // An actor's end fires no event: its address is polled.
    assert!(
        eventually(10, || !p.connected()).await,
        "the halted probe still runs"
    );
    assert_eq!(
        bus.subscribe("app", p.recipient::<Hello>()),
        Err(BusError::RecipientStopped)
    );

    bus.stop();
    assert!(bus.is_stopped());
    assert_eq!(
        bounded(bus.fire("app", Hello)).await,
        Err(BusError::Stopped)
    );
    let q = Probe::start("q", 2, &l);
    assert_eq!(
        bus.subscribe("app", q.recipient::<Hello>()),
        Err(BusError::Stopped)
    );
}

/// A numbered event; the first handler answers later the smaller the number, the second records.
#[derive(Clone, Message)]
#[rtype(result = "()")]
struct Numbered(u64);

/// Answers `Numbered(i)` after a pause that shrinks as `i` grows (so later fires overtake earlier
/// ones at the next handler, unless something keeps them in order).
struct Staggered;
impl Actor for Staggered {
    type Context = Context<Self>;
}
impl Handler<Numbered> for Staggered {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, n: Numbered, _: &mut Context<Self>) -> Self::Result {
        let pause = Duration::from_micros((10 - n.0 % 10) * 200);
        Box::pin(async move { actix::clock::sleep(pause).await })
    }
}

struct Recorder(Record<u64>);
impl Actor for Recorder {
    type Context = Context<Self>;
}
impl Handler<Numbered> for Recorder {
    type Result = ();
    fn handle(&mut self, n: Numbered, _: &mut Context<Self>) {
        self.0.push(n.0);
    }
}

#[actix_rt::test]
async fn an_ordered_handle_delivers_its_fires_to_every_subscriber_in_order() {
    let bus = Bus::new();
    bus.subscribe_with(
        "stream",
        Staggered.start().recipient(),
        Subscribe::new().priority(10),
    )
    .unwrap();
    let seen = Record::new();
    bus.subscribe("stream", Recorder(seen.clone()).start().recipient())
        .unwrap();
    let ordered = bus.ordered();
    let n = 300;
    let fires: Vec<_> = (0..n)
        .map(|i| ordered.fire("stream", Numbered(i)))
        .collect();
    for f in fires {
        bounded(f).await.unwrap();
    }
    // The second handler saw them as fired, although the first answered later ones sooner.
    assert_eq!(seen.at_least(n as usize).await, (0..n).collect::<Vec<_>>());
    // A clone shares the order; an ordered fire with no subscriber resolves at once.
    let again = ordered.clone();
    assert_eq!(bounded(again.fire("nobody", Numbered(0))).await, Ok(vec![]));
}

/// Answers at once (on its own arbiter).
struct Quick;
impl Actor for Quick {
    type Context = Context<Self>;
}
impl Handler<Numbered> for Quick {
    type Result = ();
    fn handle(&mut self, _: Numbered, _: &mut Context<Self>) {}
}

#[actix_rt::test]
async fn every_subscriber_gets_one_threads_fires_in_the_order_they_were_made() {
    // Two handlers on one channel (priorities 10 and 0), each on an arbiter of its own, 5,000
    // fires from one thread, four rounds: the second handler sees them in order too. The old bus
    // ran each fire as its own task, and a fire whose first handler answered sooner overtook an
    // earlier one: 14-155 inversions a round.
    for _ in 0..4 {
        let bus = Bus::new();
        let (first, second) = (Arbiter::new(), Arbiter::new());
        let quick = Quick::start_in_arbiter(&first.handle(), |_| Quick);
        bus.subscribe_with("c", quick.recipient(), Subscribe::new().priority(10))
            .unwrap();
        let seen = Record::new();
        let into = seen.clone();
        let recorder = Recorder::start_in_arbiter(&second.handle(), move |_| Recorder(into));
        bus.subscribe("c", recorder.recipient()).unwrap();
        let firing = bus.clone();
        let fires = std::thread::spawn(move || {
            (0..5_000u64)
                .map(|i| firing.fire("c", Numbered(i)))
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap();
        for f in fires {
            bounded(f).await.unwrap();
        }
        let got = seen.at_least(5_000).await;
        let inversions = got.windows(2).filter(|w| w[0] > w[1]).count();
        assert_eq!(inversions, 0, "the second handler saw fires out of order");
        first.stop();
        second.stop();
    }
}

/// Never answers `Numbered(0)`; answers every other at once.
struct Stuck;
impl Actor for Stuck {
    type Context = Context<Self>;
}
impl Handler<Numbered> for Stuck {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, n: Numbered, _: &mut Context<Self>) -> Self::Result {
        if n.0 == 0 {
            Box::pin(futures::future::pending())
        } else {
            Box::pin(async {})
        }
    }
}

#[actix_rt::test]
async fn a_handler_that_never_answers_one_fire_holds_back_none_after_it() {
    let bus = Bus::new();
    bus.subscribe_with(
        "c",
        Stuck.start().recipient(),
        Subscribe::new().priority(10),
    )
    .unwrap();
    let seen = Record::new();
    bus.subscribe("c", Recorder(seen.clone()).start().recipient())
        .unwrap();
    let _never = bus.fire("c", Numbered(0));
    let later: Vec<_> = (1..200u64).map(|i| bus.fire("c", Numbered(i))).collect();
    for f in later {
        bounded(f).await.unwrap();
    }
    // The next handler got every later fire, in order; fire 0 is still with the first handler.
    assert_eq!(seen.at_least(199).await, (1..200u64).collect::<Vec<_>>());
}
