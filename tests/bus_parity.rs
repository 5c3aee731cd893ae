//! The bus at parity with circuits (issue #18): a handler that stops the rest of a fire
//! (`event.stop()`, filters), the failing handler named in `Failure`, catch-all subscriptions
//! (`_on_event`), waiting for the next event (`wait`), and the `Debugger`.

mod common;

use common::{bounded, Record};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use circuits::prelude::*;
use circuits::{
    Answered, AnyEvent, BusError, Complete, Component, Debugger, Derived, Failure, Flow, Moved,
    PrepareUnregister, Subscribe, SubscriptionId, WaitError,
};

/// A request that a handler may consume.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Flow<u32>")]
struct Request(u32);

/// Answers `Stop` for the numbers it owns, `Continue` for the rest; logs what it saw.
struct Filter {
    name: &'static str,
    owns: u32,
    log: Record<String>,
}

impl Actor for Filter {
    type Context = Context<Self>;
}

impl Handler<Request> for Filter {
    type Result = Flow<u32>;
    fn handle(&mut self, r: Request, _: &mut Context<Self>) -> Flow<u32> {
        self.log.push(format!("{} {}", self.name, r.0));
        if r.0 == self.owns {
            Flow::Stop(r.0)
        } else {
            Flow::Continue(0)
        }
    }
}

impl Handler<Complete<Request>> for Filter {
    type Result = ();
    fn handle(&mut self, c: Complete<Request>, _: &mut Context<Self>) {
        self.log.push(format!(
            "{} complete {} handlers={} stopped={}",
            self.name, c.event.0, c.handlers, c.stopped
        ));
    }
}

fn filter(name: &'static str, owns: u32, log: &Record<String>) -> Addr<Filter> {
    Filter {
        name,
        owns,
        log: log.clone(),
    }
    .start()
}

#[actix_rt::test]
async fn a_handler_that_stops_the_fire_keeps_it_from_the_handlers_after_it() {
    let (bus, log) = (Bus::new(), Record::new());
    let first = filter("first", 1, &log);
    let second = filter("second", 2, &log);
    let watcher = filter("watcher", 0, &log);
    let high = Subscribe::new().priority(10);
    bus.subscribe_with("req", first.recipient::<Request>(), high)
        .unwrap();
    bus.subscribe("req", second.recipient::<Request>()).unwrap();
    bus.subscribe("req", watcher.recipient::<Complete<Request>>())
        .unwrap();

    // Owned by the first handler: the second never sees it.
    let answers = bounded(bus.fire_with("req", Request(1), Derived::none().complete()))
        .await
        .unwrap();
    assert_eq!(answers, vec![Flow::Stop(1)]);
    log.wait_for(|l| l.iter().any(|e| e.starts_with("watcher complete 1")))
        .await;
    // Owned by the second: both see it, in priority order.
    let answers = bounded(bus.fire_with("req", Request(2), Derived::none().complete()))
        .await
        .unwrap();
    assert_eq!(answers, vec![Flow::Continue(0), Flow::Stop(2)]);
    let seen = log
        .wait_for(|l| l.iter().any(|e| e.starts_with("watcher complete 2")))
        .await;
    assert_eq!(
        seen,
        vec![
            "first 1",
            "watcher complete 1 handlers=1 stopped=true",
            "first 2",
            "second 2",
            "watcher complete 2 handlers=2 stopped=true",
        ]
    );
    // Owned by nobody: everyone, and not stopped.
    let answers = bounded(bus.fire("req", Request(3))).await.unwrap();
    assert_eq!(answers, vec![Flow::Continue(0), Flow::Continue(0)]);
}

/// Fails on odd numbers; panics on 13.
#[derive(Clone, Message)]
#[rtype(result = "Result<u32, String>")]
struct Check(u32);

struct Checker;
impl Actor for Checker {
    type Context = Context<Self>;
}
impl Handler<Check> for Checker {
    type Result = Result<u32, String>;
    fn handle(&mut self, c: Check, _: &mut Context<Self>) -> Self::Result {
        if c.0 == 13 {
            std::panic::resume_unwind(Box::new("unlucky"));
        }
        if c.0 % 2 == 1 {
            Err(format!("{} is odd", c.0))
        } else {
            Ok(c.0)
        }
    }
}

/// Collects `Failure<Check>` events.
struct Failures(Record<(SubscriptionId, String)>);
impl Actor for Failures {
    type Context = Context<Self>;
}
impl Handler<Failure<Check>> for Failures {
    type Result = ();
    fn handle(&mut self, f: Failure<Check>, _: &mut Context<Self>) {
        self.0.push((f.handler, f.error));
    }
}

#[actix_rt::test]
async fn a_failing_or_panicking_handler_is_named_in_its_failure_event() {
    let bus = Bus::new();
    let (ok_one, failing) = (Checker.start(), Checker.start());
    let first = bus.subscribe("c", ok_one.recipient::<Check>()).unwrap();
    let record = Record::new();
    bus.subscribe("c", Failures(record.clone()).start().recipient())
        .unwrap();
    bounded(bus.fire_with("c", Check(3), Derived::none().failure()))
        .await
        .unwrap();
    let seen = record.at_least(1).await;
    assert_eq!(seen, vec![(first, "3 is odd".to_string())]);

    // A panicking handler stops its actor: its failure names it, with what happened.
    let panicky = Arbiter::new();
    let addr = Checker::start_in_arbiter(&panicky.handle(), |_| Checker);
    let second = bus.subscribe("c", addr.recipient::<Check>()).unwrap();
    let answers = bounded(bus.fire_with("c", Check(13), Derived::none().failure()))
        .await
        .unwrap();
    assert!(answers.is_empty(), "{answers:?}");
    let seen = record.at_least(3).await;
    assert_eq!(seen[1].0, first);
    assert_eq!(seen[2].0, second);
    assert!(seen[2].1.contains("stopped before answering"), "{seen:?}");
    drop(failing);
}

/// Counts `AnyEvent`s by type name.
struct CatchAll(Record<String>);
impl Actor for CatchAll {
    type Context = Context<Self>;
}
impl Handler<AnyEvent> for CatchAll {
    type Result = ();
    fn handle(&mut self, e: AnyEvent, _: &mut Context<Self>) {
        let name = e
            .type_name()
            .replace("circuits::event::", "")
            .replace("bus_parity::", "");
        let name = name.rsplit("::").next().unwrap_or("").to_string();
        let channels: Vec<_> = e
            .channels()
            .iter()
            .map(|c| c.as_str().to_string())
            .collect();
        self.0.push(format!("{name} {}", channels.join(",")));
    }
}

#[actix_rt::test]
async fn a_catch_all_subscription_sees_every_event_type_on_its_channel() {
    let bus = Bus::new();
    let seen = Record::new();
    bus.subscribe(
        "orders",
        CatchAll(seen.clone()).start().recipient::<AnyEvent>(),
    )
    .unwrap();
    let checker = Checker.start();
    bus.subscribe("orders", checker.recipient::<Check>())
        .unwrap();
    // A typed event with a handler, one with none, and the derived events of the first.
    let answers = bounded(bus.fire_with("orders", Check(2), Derived::all()))
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![Ok(2)],
        "the catch-all is not among the answers"
    );
    bounded(bus.fire("orders", Request(9))).await.unwrap();
    bounded(bus.fire("elsewhere", Request(10))).await.unwrap();
    let all = seen.at_least(4).await;
    for expected in [
        "Check orders",
        "Request orders",
        "Success<Check> orders",
        "Complete<Check> orders",
    ] {
        assert!(
            all.iter().any(|e| e.ends_with(expected) || e == expected),
            "{expected} in {all:?}"
        );
    }
    assert!(!all.iter().any(|e| e.contains("elsewhere")), "{all:?}");

    // A pool's events too, on the pool's channel.
    let pool = Pool::builder().min(1).bus(&bus).channel("orders").start();
    bounded(pool.run(Task::new(|| 1u8))).await.unwrap();
    let all = seen
        .wait_for(|l| l.iter().any(|e| e.starts_with("TaskComplete")))
        .await;
    assert!(
        all.iter().any(|e| e.starts_with("WorkerStarted")),
        "{all:?}"
    );
    bounded(pool.stop()).await;
}

#[actix_rt::test]
async fn waiting_for_the_next_event_of_a_type_gets_it_or_elapses() {
    let bus = Bus::new();
    let mut next = bus.next::<Request>("req").unwrap();
    // Another type on the channel and the right type elsewhere do not count.
    bounded(bus.fire("req", Check(1))).await.unwrap();
    bounded(bus.fire("other", Request(1))).await.unwrap();
    bounded(bus.fire("req", Request(7))).await.unwrap();
    let got = bounded(next.wait(Duration::from_secs(30))).await;
    assert_eq!(got.unwrap().unwrap().0, 7);
    // The waiter left: its catch-all subscription is gone.
    assert!(common::eventually(60, || bus.subscriptions() == 0).await);

    let mut never = bus.next::<Request>("quiet").unwrap();
    let waited = never.wait(Duration::from_millis(50)).await;
    assert!(matches!(waited, Err(WaitError::Elapsed(_))), "{waited:?}");
    assert!(matches!(
        bus.next::<Request>(""),
        Err(BusError::EmptyChannel)
    ));
}

/// Counts the debugger's records.
struct Counting(Arc<AtomicUsize>);
impl tracing::Subscriber for Counting {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        m.target() == "circuits::debugger"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        if e.metadata().target() == "circuits::debugger" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[actix_rt::test]
async fn the_debugger_logs_every_event_through_tracing() {
    let logged = Arc::new(AtomicUsize::new(0));
    tracing::subscriber::set_global_default(Counting(logged.clone()))
        .expect("the only global subscriber of this test binary");
    let bus = Bus::new();
    let _debugger = Debugger::attach(&bus, "*").unwrap();
    for i in 0..5 {
        bounded(bus.fire(format!("ch{i}").as_str(), Request(i)))
            .await
            .unwrap();
    }
    assert!(common::eventually(60, || logged.load(Ordering::SeqCst) >= 5).await);
}

/// Records `Answered<Request>` and `Complete<Request>` in arrival order.
struct Feedback(Record<String>);
impl Actor for Feedback {
    type Context = Context<Self>;
}
impl Handler<Answered<Request>> for Feedback {
    type Result = ();
    fn handle(&mut self, a: Answered<Request>, _: &mut Context<Self>) {
        self.0.push(format!("answered {:?}", a.answers));
    }
}
impl Handler<Complete<Request>> for Feedback {
    type Result = ();
    fn handle(&mut self, _: Complete<Request>, _: &mut Context<Self>) {
        self.0.push("complete".into());
    }
}

#[actix_rt::test]
async fn the_handlers_values_reach_the_subscribers_of_the_outcome() {
    let (bus, log, seen) = (Bus::new(), Record::new(), Record::new());
    bus.subscribe("req", filter("a", 0, &log).recipient::<Request>())
        .unwrap();
    bus.subscribe("req", filter("b", 5, &log).recipient::<Request>())
        .unwrap();
    let feedback = Feedback(seen.clone()).start();
    bus.subscribe("req", feedback.clone().recipient::<Answered<Request>>())
        .unwrap();
    bus.subscribe("req", feedback.recipient::<Complete<Request>>())
        .unwrap();
    let answers = bounded(bus.fire_with_answers("req", Request(5), Derived::none().complete()))
        .await
        .unwrap();
    assert_eq!(answers, vec![Flow::Continue(0), Flow::Stop(5)]);
    let got = seen.at_least(2).await;
    assert_eq!(
        got,
        vec![
            "answered [Continue(0), Stop(5)]".to_string(),
            "complete".into()
        ],
        "the answers first, then the completion"
    );
}

/// Records the tree's move events in arrival order.
struct Mover(Record<String>);
impl Actor for Mover {
    type Context = Context<Self>;
}
impl Handler<PrepareUnregister> for Mover {
    type Result = ();
    fn handle(&mut self, p: PrepareUnregister, _: &mut Context<Self>) {
        self.0.push(format!("prepare {}", p.0.name));
    }
}
impl Handler<Moved> for Mover {
    type Result = ();
    fn handle(&mut self, m: Moved, _: &mut Context<Self>) {
        self.0.push(format!("moved {}", m.component.name));
    }
}

#[actix_rt::test]
async fn detach_moves_a_subtree_out_whole_after_preparing_it_and_attach_puts_it_back() {
    let bus = Bus::new();
    let app = bus.register(Component::new("app").channel("app")).unwrap();
    let cache = bus
        .register(Component::new("cache").channel("cache").parent(app))
        .unwrap();
    let shard = bus
        .register(Component::new("shard").channel("shard").parent(cache))
        .unwrap();
    let seen = Record::new();
    let mover = Mover(seen.clone()).start();
    for ch in ["app", "cache", "shard"] {
        bus.subscribe(ch, mover.clone().recipient::<PrepareUnregister>())
            .unwrap();
        bus.subscribe(ch, mover.clone().recipient::<Moved>())
            .unwrap();
    }
    // A subscription owned by a component of the subtree lives on after the move.
    let owned = Subscribe::new().component(shard);
    bus.subscribe_with(
        "shard",
        filter("shard", 0, &Record::new()).recipient::<Request>(),
        owned,
    )
    .unwrap();

    let moved = bounded(bus.detach(cache)).await.unwrap();
    assert_eq!((moved.id, moved.parent), (cache, None));
    assert!(bus.children(app).is_empty());
    assert_eq!(bus.children(cache), vec![shard], "the subtree is whole");
    assert!(bus.is_registered(shard));
    assert_eq!(
        bounded(bus.fire("shard", Request(1))).await.unwrap().len(),
        1
    );
    let events = seen
        .wait_for(|l| l.iter().any(|e| e == "moved cache"))
        .await;
    // Children first, each prepared (on its channel and its parent's) before the move.
    let first_prepare_cache = events.iter().position(|e| e == "prepare cache").unwrap();
    let last_prepare_shard = events.iter().rposition(|e| e == "prepare shard").unwrap();
    let moved_at = events.iter().position(|e| e == "moved cache").unwrap();
    assert!(last_prepare_shard < first_prepare_cache, "{events:?}");
    assert!(first_prepare_cache < moved_at, "{events:?}");

    let other = bus.register(Component::new("other")).unwrap();
    bus.attach(cache, other).unwrap();
    assert_eq!(bus.parent(cache), Some(other));
    assert_eq!(bus.children(other), vec![cache]);
    assert!(matches!(bus.attach(app, shard), Ok(())));
    // `app` is now under `shard`; putting `cache` (above `shard`) under `app` would cycle.
    assert!(matches!(
        bus.attach(cache, app),
        Err(BusError::WouldCycle(c, a)) if c == cache && a == app
    ));
    let gone = bus.register(Component::new("gone")).unwrap();
    bus.unregister(gone).unwrap();
    assert!(matches!(
        bounded(bus.detach(gone)).await,
        Err(BusError::UnknownComponent(c)) if c == gone
    ));
}
