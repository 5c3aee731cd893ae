//! An elastic, bounded, observable pool: resizing within bounds, backpressure, stuck workers, stats.

mod common;

use common::{
    bounded, eventually, grown_to_two, listen, resized_by_hand, retire_second, Gate, Record,
};

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use circuits::prelude::*;
use circuits::{PoolStats, Resizer, WorkerStarted, WorkerStopped};
use proptest::prelude::*;

fn quick_resizer() -> Resizer {
    Resizer::default()
        .interval(Duration::from_millis(5))
        .cooldown(Duration::from_millis(10))
}

#[actix_rt::test]
async fn the_pool_grows_to_max_under_a_burst_and_back_to_min_when_idle() {
    let pool = Pool::builder()
        .min(1)
        .max(4)
        .resizer(quick_resizer())
        .start();
    let mut started = listen::<WorkerStarted>(pool.bus(), pool.channel());
    let mut stopped = listen::<WorkerStopped>(pool.bus(), pool.channel());
    let gate = Gate::new();
    let burst: Vec<_> = (0..40u64)
        .map(|i| pool.push(gate.task(i)).expect("accepted"))
        .collect();
    let grown = started.until(|e| e.workers == 4).await;
    assert_eq!(pool.workers().len(), 4);
    gate.open();
    for (i, v) in burst.into_iter().enumerate() {
        assert_eq!(bounded(v).await, Ok(i as u64));
    }
    let shrunk = stopped.until(|e| e.workers == 1).await;
    let sizes: Vec<usize> = grown
        .iter()
        .map(|e| e.workers)
        .chain(shrunk.iter().map(|e| e.workers))
        .collect();
    assert!(
        sizes.iter().all(|n| (1..=4).contains(n)),
        "sizes announced: {sizes:?}"
    );
    assert!(shrunk.iter().all(|e| e.reason == "resized"), "{shrunk:?}");
    assert_eq!(pool.workers().len(), 1);
    pool.stop().await;
}

#[actix_rt::test]
async fn resizing_by_hand_stays_within_the_bounds_and_announces_workers() {
    /// Both worker events in one list, in the order they arrive.
    struct Watch(Record<String>);
    impl Actor for Watch {
        type Context = Context<Self>;
    }
    impl Handler<WorkerStarted> for Watch {
        type Result = ();
        fn handle(&mut self, e: WorkerStarted, _: &mut Context<Self>) {
            self.0.push(format!("started {}", e.workers));
        }
    }
    impl Handler<WorkerStopped> for Watch {
        type Result = ();
        fn handle(&mut self, e: WorkerStopped, _: &mut Context<Self>) {
            self.0.push(format!("stopped {} {}", e.workers, e.reason));
        }
    }
    let pool = Pool::builder()
        .min(2)
        .max(5)
        .resizer(resized_by_hand())
        .start();
    let seen = Record::new();
    let w = Watch(seen.clone()).start();
    pool.bus()
        .subscribe(pool.channel(), w.clone().recipient::<WorkerStarted>())
        .unwrap();
    pool.bus()
        .subscribe(pool.channel(), w.recipient::<WorkerStopped>())
        .unwrap();
    let first = pool.workers();
    assert_eq!(pool.resize(50), 5);
    assert_eq!(pool.workers().len(), 5);
    assert!(
        first.iter().all(|c| pool.workers().contains(c)),
        "growing keeps the old workers"
    );
    let bus = pool.bus();
    let pool_component = bus
        .components()
        .into_iter()
        .find(|c| c.name == "pool")
        .unwrap();
    assert_eq!(
        bus.children(pool_component.id).len(),
        5,
        "new workers join the tree"
    );
    assert_eq!(pool.resize(0), 2);
    assert_eq!(bus.children(pool_component.id).len(), 2);
    for i in 0..20u64 {
        assert_eq!(bounded(pool.run(Task::new(move || i))).await, Ok(i));
    }
    let expected = [
        "started 3",
        "started 4",
        "started 5",
        "stopped 4 resized",
        "stopped 3 resized",
        "stopped 2 resized",
    ];
    let expected = expected.map(String::from);
    let seen = seen.wait_for(|s| s.ends_with(&expected)).await;
    // The start-up workers' own announcements may arrive after the subscription too.
    let early = &seen[..seen.len() - expected.len()];
    assert!(
        early.iter().all(|e| e == "started 1" || e == "started 2"),
        "{seen:?}"
    );
    pool.stop().await;
}

#[actix_rt::test]
async fn push_on_a_full_pool_gives_the_task_back() {
    let pool = Pool::builder().min(1).queue_bound(2).start();
    let mut events = common::collect::<u64>(&pool);
    let gate = Gate::new();
    let a = pool.push(gate.task(1u64)).expect("accepted");
    let b = pool.push(gate.task(2u64)).expect("accepted");
    // One admission gate: push, push_to, the bus (at the pool's channel and at a worker's) and the
    // actor all refuse at once with Full, and all but the actor hand the task back.
    let pushed = pool.push(Task::new(|| 3u64)).unwrap_err();
    assert_eq!(pushed.refusal(), &Refusal::Full);
    assert!(pushed.is_full() && !pushed.is_stopped());
    let worker = pool.workers()[0].clone();
    let pushed_to = pool.push_to(&worker, Task::new(|| 4u64)).unwrap_err();
    assert_eq!(pushed_to.refusal(), &Refusal::Full);
    // The actor path gets the same refusal, as its answer.
    assert_eq!(
        bounded(pool.addr().send(Task::new(|| 5u64)))
            .await
            .expect("the pool actor answers"),
        Err(RunError::Refused(Refusal::Full))
    );
    let called = pool.bus().call("pool", Task::new(|| 6u64)).unwrap_err();
    assert_eq!(called.refusal(), &Refusal::Full);
    let called_worker = pool.bus().call(&worker, Task::new(|| 7u64)).unwrap_err();
    assert_eq!(called_worker.refusal(), &Refusal::Full);
    let (refusal, task) = called_worker.into_parts();
    assert_eq!(refusal, Refusal::Full);
    gate.open();
    assert_eq!(bounded(a).await, Ok(1));
    assert_eq!(bounded(b).await, Ok(2));
    // The tasks handed back are whole: each runs once there is room (a permit is released before
    // the value resolves, so there is room now for one at a time).
    let again = pool.push(pushed.into_task()).expect("room again");
    assert_eq!(bounded(again).await, Ok(3));
    let again = pool
        .push_to(&worker, pushed_to.into_task())
        .expect("room again");
    assert_eq!(bounded(again).await, Ok(4));
    let again = pool
        .bus()
        .call("pool", called.into_task())
        .expect("room again");
    assert_eq!(bounded(again).await, Ok(6));
    assert_eq!(bounded(pool.run(task)).await, Ok(7));
    // Only the accepted tasks fired events: a and b, then the four that were handed back.
    let seen = events.until_complete(6).await;
    common::one_outcome_each(&seen, 6);
    pool.stop().await;
}

#[actix_rt::test]
async fn a_producer_waiting_for_room_resumes_when_room_frees() {
    let pool = Pool::builder().min(1).queue_bound(1).start();
    let gate = Gate::new();
    let order = Record::new();
    let first = pool.push(gate.task(1u64)).expect("accepted");
    let log = order.clone();
    let mut waiting = Box::pin(pool.send(Task::new(move || {
        log.push(2u64);
        2u64
    })));
    assert!(
        futures::poll!(waiting.as_mut()).is_pending(),
        "no room: send waits"
    );
    // push does not wait: it refuses at once and hands the task back...
    let log = order.clone();
    let refused = pool
        .push(Task::new(move || {
            log.push(3u64);
            3u64
        }))
        .unwrap_err();
    assert_eq!(refused.refusal(), &Refusal::Full);
    // ...which run waits with, behind the send that began waiting first.
    let mut running = Box::pin(pool.run(refused.into_task()));
    assert!(
        futures::poll!(running.as_mut()).is_pending(),
        "no room: run waits"
    );
    gate.open();
    assert_eq!(bounded(first).await, Ok(1));
    let second = bounded(waiting).await.expect("accepted once room freed");
    assert_eq!(bounded(second).await, Ok(2));
    assert_eq!(bounded(running).await, Ok(3));
    assert_eq!(order.get(), vec![2, 3], "room goes to the waiters in order");
    pool.stop().await;
}

#[actix_rt::test]
async fn a_producer_waiting_for_room_gets_its_task_back_when_the_pool_stops() {
    let pool = Pool::builder().min(1).queue_bound(1).start();
    let gate = Gate::new();
    let (first, started) = gate.task_started(1u64);
    let first = pool.push(first).expect("accepted");
    bounded(started).await.expect("the first task started");
    let mut waiting = Box::pin(pool.send(Task::new(|| 2u64)));
    assert!(
        futures::poll!(waiting.as_mut()).is_pending(),
        "no room: send waits"
    );
    let mut running = Box::pin(pool.run(Task::new(|| 3u64)));
    assert!(
        futures::poll!(running.as_mut()).is_pending(),
        "no room: run waits"
    );
    // A draining stop: the accepted task runs to its end, the waiting ones are refused.
    let mut stopping = Box::pin(pool.stop());
    assert!(futures::poll!(stopping.as_mut()).is_pending());
    gate.open();
    assert_eq!(bounded(first).await, Ok(1));
    let refused = bounded(waiting).await.unwrap_err();
    assert_eq!(refused.refusal(), &Refusal::Stopped);
    assert_eq!(
        bounded(running).await,
        Err(RunError::Refused(Refusal::Stopped))
    );
    bounded(stopping).await;
    // The task handed back is whole.
    let other = Pool::builder().min(1).channel("other").start();
    assert_eq!(bounded(other.run(refused.into_task())).await, Ok(2));
    other.stop().await;
}

#[actix_rt::test]
async fn an_abort_gives_a_waiting_producer_its_task_back() {
    let pool = Pool::builder().min(1).queue_bound(1).start();
    let gate = Gate::new();
    let (first, started) = gate.task_started(1u64);
    let first = pool.push(first).expect("accepted");
    bounded(started).await.expect("the first task started");
    let mut waiting = Box::pin(pool.send(Task::new(|| 2u64)));
    assert!(
        futures::poll!(waiting.as_mut()).is_pending(),
        "no room: send waits"
    );
    // The gate stays shut: the abort, not room, ends the wait.
    bounded(pool.abort()).await;
    assert_eq!(bounded(first).await, Err(TaskError::Cancelled));
    let refused = bounded(waiting).await.unwrap_err();
    assert_eq!(refused.refusal(), &Refusal::Stopped);
    gate.open();
}

#[actix_rt::test]
async fn a_stuck_task_is_detected_and_the_pool_keeps_its_worker_count() {
    let pool = Pool::builder()
        .min(2)
        // Seconds: a quick task preempted on a busy machine must not count as stuck.
        .stuck_after(Duration::from_secs(3))
        .start();
    let mut stopped = listen::<WorkerStopped>(pool.bus(), pool.channel());
    let gate = Gate::new();
    let before = pool.workers();
    let stuck = pool
        .push(gate.task(1u64).key("stuck")) // keyed: it stays on its worker
        .expect("accepted");
    assert_eq!(
        bounded(stuck).await,
        Err(TaskError::TimedOut(Duration::from_secs(3)))
    );
    // The replacement joins before the lost worker leaves: once it left, the pool is whole.
    let lost = stopped
        .until(|e| e.reason.starts_with("lost"))
        .await
        .pop()
        .expect("the lost worker's WorkerStopped");
    assert!(before.contains(&lost.worker), "{lost:?}");
    assert!(!pool.workers().contains(&lost.worker));
    assert_eq!(pool.workers().len(), 2);
    assert_ne!(pool.workers(), before);
    for i in 0..20u64 {
        assert_eq!(bounded(pool.run(Task::new(move || i))).await, Ok(i));
    }
    // A draining stop does not wait for the lost worker, whose task may never end.
    bounded(pool.stop()).await;
    gate.open(); // the stuck thread finishes on its own and exits
}

#[actix_rt::test]
async fn stats_add_up_and_are_fired_periodically() {
    let pool = Pool::builder()
        .min(2)
        .track_latency()
        .stats_every(Duration::from_millis(10))
        .start();
    let mut periodic = listen::<PoolStats>(pool.bus(), pool.channel());
    let gate = Gate::new();
    let held: Vec<_> = (0..4u64)
        .map(|i| pool.push(gate.task(i)).expect("accepted"))
        .collect();
    // Both workers held at the gate before the rest comes, so that nothing finishes while the
    // counters are read below. (A worker that woke late could otherwise take tasks from its own
    // queue before a gate task waiting for it in the pool's injector, and finish them meanwhile.)
    assert!(
        eventually(30, || pool.stats().running == 2).await,
        "both workers start a gate task: {:?}",
        pool.stats()
    );
    let values: Vec<_> = (0..100u64)
        .map(|i| {
            pool.push(Task::fallible(
                move || if i % 4 == 0 { Err("no") } else { Ok(i) },
            ))
            .expect("accepted")
        })
        .collect();
    let s = pool.stats();
    assert_eq!(s.pushed, 104);
    assert_eq!(s.done + s.failed + s.queued + s.running, s.pushed, "{s:?}");
    gate.open();
    for v in held.into_iter().chain(values) {
        let _ = bounded(v).await;
    }
    // A worker lowers its load after the task's value resolved and its events were sent: no
    // event follows it, so the counters are polled.
    assert!(
        eventually(10, || pool.stats().loads.iter().all(|l| *l == 0)).await,
        "loads: {:?}",
        pool.loads()
    );
    let s = pool.stats();
    assert_eq!((s.done, s.failed, s.queued, s.running), (79, 25, 0, 0));
    assert_eq!(s.done + s.failed, s.pushed);
    assert_eq!(s.latency.map(|l| l.count), Some(104));
    let fired = periodic.until(|s| s.done + s.failed >= 104).await;
    let last = fired.last().expect("one PoolStats at least");
    assert_eq!(last.workers, 2);
    assert_eq!((last.done, last.failed, last.pushed), (79, 25, 104));
    pool.stop().await;
}

#[derive(Debug, Clone)]
enum Step {
    Push(usize),
    Resize(usize),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        prop_oneof![
            (1usize..200).prop_map(Step::Push),
            (0usize..8).prop_map(Step::Resize)
        ],
        5..20,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_task_is_lost_or_run_twice_across_resizes(plan in steps()) {
        actix::System::new().block_on(async move {
            let pool = Pool::builder().min(1).max(6).resizer(resized_by_hand()).start();
            let total: usize = plan.iter().map(|s| if let Step::Push(n) = s { *n } else { 0 }).sum();
            let runs: Arc<Vec<AtomicU32>> = Arc::new((0..total).map(|_| AtomicU32::new(0)).collect());
            let mut values = Vec::new();
            let mut next = 0usize;
            for step in &plan {
                match step {
                    Step::Push(n) => {
                        for _ in 0..*n {
                            let (runs, i) = (runs.clone(), next);
                            values.push((i, pool.push(Task::new(move || {
                                runs[i].fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_micros(50));
                                i as u64
                            })).expect("accepted")));
                            next += 1;
                        }
                    }
                    Step::Resize(n) => {
                        let size = pool.resize(*n);
                        assert!((1..=6).contains(&size));
                    }
                }
            }
            for (i, v) in values {
                assert_eq!(bounded(v).await, Ok(i as u64));
            }
            assert!(runs.iter().all(|r| r.load(Ordering::SeqCst) == 1), "every task ran exactly once");
            pool.stop().await;
        });
    }
}

#[actix_rt::test]
async fn tasks_fired_at_a_retiring_worker_are_never_lost() {
    let pool = Pool::builder()
        .min(1)
        .max(4)
        .resizer(resized_by_hand())
        .start();
    for _ in 0..20 {
        pool.resize(4);
        let targets = pool.workers();
        let (bus, fire) = (pool.bus().clone(), targets.clone());
        // Fire at every worker's channel from another thread while the pool shrinks under it.
        let shooter = std::thread::spawn(move || {
            (0..400u64)
                .map(|i| bus.call(&fire[i as usize % fire.len()], Task::new(move || i)))
                .collect::<Vec<_>>()
        });
        pool.resize(1);
        for (i, called) in shooter.join().unwrap().into_iter().enumerate() {
            match called {
                Ok(v) => assert_eq!(bounded(v).await, Ok(i as u64)),
                // Fired after its worker's channel was gone: refused and handed back, never
                // lost; it runs on the pool.
                Err(refused) => {
                    assert_eq!(
                        refused.refusal(),
                        &Refusal::NoRoute(targets[i % targets.len()].clone()),
                        "task {i}"
                    );
                    assert_eq!(bounded(pool.run(refused.into_task())).await, Ok(i as u64));
                }
            }
        }
    }
    pool.stop().await;
}

#[actix_rt::test]
async fn resizes_racing_a_stop_leave_no_task_behind() {
    // A resize moves a retired worker's queue to the others; a draining stop drains the workers
    // it finds. However the two interleave, every queued task runs: none is moved to a worker
    // that has already stopped (where it would wait forever), and none is cancelled.
    for round in 0..40 {
        let pool = Pool::builder()
            .min(1)
            .max(4)
            .resizer(resized_by_hand())
            .start();
        pool.resize(4);
        let values: Vec<_> = (0..200u64)
            .map(|i| {
                pool.push(Task::new(move || {
                    std::thread::sleep(Duration::from_micros(20));
                    i
                }))
                .expect("a running pool accepts the task")
            })
            .collect();
        let resizer = pool.clone();
        let resizing = std::thread::spawn(move || {
            for _ in 0..20 {
                resizer.resize(1);
                resizer.resize(4);
            }
        });
        bounded(pool.stop()).await;
        resizing.join().expect("the resizing thread ends");
        for (i, v) in values.into_iter().enumerate() {
            assert_eq!(bounded(v).await, Ok(i as u64), "round {round}, task {i}");
        }
    }
}

#[actix_rt::test]
async fn a_stop_waits_for_the_task_of_a_worker_a_resize_retired_and_an_abort_cancels_it() {
    for abort in [false, true] {
        let (pool, w0, w1) = grown_to_two(Pool::builder());
        // Two gated tasks on the first worker and one on the second, each fired at its worker's
        // channel: shrinking to one worker retires the least loaded, the second, while its task
        // runs.
        let (stays, leaves) = (Arc::new(Gate::new()), Arc::new(Gate::new()));
        let (first, first_started) = stays.task_started(1u64);
        let (second, second_started) = leaves.task_started(2u64);
        let on_first = pool.bus().call(&w0, first).expect("routed");
        let on_second = pool.bus().call(&w1, second).expect("routed");
        let queued = pool.bus().call(&w0, stays.task(3u64)).expect("routed");
        bounded(first_started).await.expect("the first task starts");
        bounded(second_started)
            .await
            .expect("the second task starts");
        retire_second(&pool, &w0);
        let mut retired = on_second;
        if abort {
            bounded(pool.abort()).await;
            // Ended with the pool, though it left the pool before the abort.
            assert_eq!(retired.try_take(), Some(Err(TaskError::Cancelled)));
        } else {
            // The pool's own worker may finish at once; the retired one's task ends later, and
            // the stop must not return before it.
            stays.open();
            let opener = {
                let leaves = leaves.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(300));
                    leaves.open();
                })
            };
            bounded(pool.stop()).await;
            assert_eq!(
                retired.try_take(),
                Some(Ok(2)),
                "the stop returned before it"
            );
            opener.join().expect("the gate opens");
        }
        let expected = |v| {
            if abort {
                Err(TaskError::Cancelled)
            } else {
                Ok(v)
            }
        };
        assert_eq!(bounded(on_first).await, expected(1));
        assert_eq!(bounded(queued).await, expected(3));
        leaves.open();
    }
}

#[actix_rt::test]
async fn a_draining_stop_does_not_wait_for_a_retired_worker_found_stuck() {
    // Seconds: a quick task preempted on a busy machine must not count as stuck.
    let (pool, w0, w1) = grown_to_two(Pool::builder().stuck_after(Duration::from_secs(3)));
    // Two quick tasks on the first worker, one that never ends on the second: the resize retires
    // the second while it runs.
    let (stays, stuck) = (Gate::new(), Gate::new());
    let quick: Vec<_> = (0..2u64)
        .map(|i| pool.bus().call(&w0, stays.task(i)).expect("routed"))
        .collect();
    let (task, started) = stuck.task_started(9u64);
    let on_retired = pool.bus().call(&w1, task).expect("routed");
    bounded(started).await.expect("the stuck task starts");
    retire_second(&pool, &w0);
    stays.open();
    for (i, v) in quick.into_iter().enumerate() {
        assert_eq!(bounded(v).await, Ok(i as u64));
    }
    assert_eq!(
        bounded(on_retired).await,
        Err(TaskError::TimedOut(Duration::from_secs(3)))
    );
    // Found stuck after it left the pool: the stop does not wait for it.
    bounded(pool.stop()).await;
    stuck.open(); // the stuck thread finishes on its own and exits
}
