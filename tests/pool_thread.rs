//! Thread-mode pools: routing, exactly-once outcomes and events, panics, stop and abort.

mod common;

use common::{bounded, collect, one_outcome_each, Gate, Seen, BOUND};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use circuits::prelude::*;
use circuits::{TaskId, WaitError};
use common::Square;
use proptest::prelude::*;

/// The worker that ran a task, from its events: the terminal event's, which its `TaskComplete`
/// repeats.
fn worker_of(seen: &[Seen<u64>]) -> Channel {
    match seen {
        [Seen::Success(w, _) | Seen::Failure(w, _), Seen::Complete(c, _)] => {
            assert_eq!(w, c, "TaskComplete names the worker of the terminal event");
            w.clone()
        }
        other => panic!("not one terminal event then TaskComplete: {other:?}"),
    }
}

#[actix_rt::test]
async fn three_ways_in_push_addr_and_bus_all_run_tasks() {
    let pool = Pool::builder().min(2).start();
    let a = pool.push(Task::new(|| 1u64)).expect("accepted");
    let b = pool.addr().send(Task::new(|| 2u64));
    let c = pool
        .bus()
        .call("pool", Task::new(|| 3u64))
        .expect("accepted");
    assert_eq!(bounded(a).await, Ok(1));
    assert_eq!(bounded(b).await.expect("the pool actor answers"), Ok(2));
    assert_eq!(bounded(c).await, Ok(3));
    pool.stop().await;
}

#[actix_rt::test]
async fn a_pool_starts_min_workers_on_uuid_channels_under_its_component() {
    let pool = Pool::builder().min(3).max(6).channel("crunch").start();
    let workers = pool.workers();
    assert_eq!(workers.len(), 3);
    for w in &workers {
        assert!(
            uuid::Uuid::parse_str(w.as_str()).is_ok(),
            "{w} is not a UUID"
        );
    }
    let bus = pool.bus();
    let pool_component = bus
        .components()
        .into_iter()
        .find(|c| c.channel.as_str() == "crunch")
        .expect("the pool is registered under its channel");
    let children: Vec<Channel> = bus
        .children(pool_component.id)
        .into_iter()
        .map(|c| bus.component(c).unwrap().channel)
        .collect();
    assert_eq!(children, workers);
    pool.stop().await;
    assert!(
        bus.components().is_empty(),
        "stop unregisters the pool and its workers"
    );
}

#[actix_rt::test]
async fn a_task_fired_at_a_workers_channel_runs_on_that_worker() {
    let pool = Pool::builder().min(4).start();
    let mut events = collect::<u64>(&pool);
    let target = pool.workers()[2].clone();
    let mut values = Vec::new();
    for i in 0..20u64 {
        values.push(
            pool.bus()
                .call(&target, Task::new(move || i))
                .expect("accepted"),
        );
    }
    values.push(
        pool.push_to(&target, Task::new(|| 99u64))
            .expect("accepted"),
    );
    for v in values {
        bounded(v).await.unwrap();
    }
    let seen = events.until_complete(21).await;
    one_outcome_each(&seen, 21);
    assert!(seen.values().all(|s| worker_of(s) == target));
    // No route: the task is handed back whole, with the channel that has none; nothing ran and no
    // event was fired for it.
    let unknown = pool
        .bus()
        .call("no-such-worker", Task::new(|| 0u64))
        .unwrap_err();
    assert_eq!(
        unknown.refusal(),
        &Refusal::NoRoute("no-such-worker".into())
    );
    let unknown_worker = pool
        .push_to(&Channel::from("no-such-worker"), unknown.into_task())
        .unwrap_err();
    assert_eq!(
        unknown_worker.refusal(),
        &Refusal::NoRoute("no-such-worker".into())
    );
    // A call at more than one channel has no single route: the first channel is named.
    let two = pool
        .bus()
        .call([target.as_str(), "pool"], unknown_worker.into_task())
        .unwrap_err();
    assert_eq!(two.refusal(), &Refusal::NoRoute(target.clone()));
    // The handed-back task runs where it has a route.
    let again = pool.push_to(&target, two.into_task()).expect("accepted");
    assert_eq!(bounded(again).await, Ok(0));
    let seen = events.until_complete(22).await;
    one_outcome_each(&seen, 22);
    assert_eq!(worker_of(&seen[&TaskId(22)]), target);
    pool.stop().await;
}

#[actix_rt::test]
async fn round_robin_places_tasks_on_workers_in_order() {
    // Placement shows in the load counters (a task counts on the worker it was placed on until it
    // ends, even if an idle sibling steals it), so gated tasks make the order visible.
    let pool = Pool::builder().min(3).strategy(RoundRobin::new()).start();
    let gate = Gate::new();
    let expected = [
        [1, 0, 0],
        [1, 1, 0],
        [1, 1, 1],
        [2, 1, 1],
        [2, 2, 1],
        [2, 2, 2],
    ];
    let mut values = Vec::new();
    for want in expected {
        values.push(pool.push(gate.task(0u64)).expect("accepted"));
        assert_eq!(pool.loads(), want.to_vec());
    }
    gate.open();
    for v in values {
        assert_eq!(bounded(v).await, Ok(0));
    }
    pool.stop().await;
}

#[actix_rt::test]
async fn key_affinity_is_sticky() {
    let pool = Pool::builder().min(4).strategy(KeyAffinity::new()).start();
    let mut events = collect::<u64>(&pool);
    let mut values = Vec::new();
    for i in 0..60u64 {
        let key = format!("user-{}", i % 5);
        let task = Task::new(move || i).key(key.clone());
        values.push((key, pool.push(task).expect("accepted")));
    }
    let mut keys = HashMap::new();
    for (key, v) in values {
        let i = bounded(v).await.unwrap();
        keys.insert(TaskId(i + 1), key);
    }
    let seen = events.until_complete(60).await;
    one_outcome_each(&seen, 60);
    let mut home: HashMap<String, Channel> = HashMap::new();
    for (id, key) in keys {
        let w = worker_of(&seen[&id]);
        assert_eq!(
            home.entry(key.clone()).or_insert(w.clone()),
            &w,
            "{key} moved"
        );
    }
    assert_eq!(home.len(), 5);
    pool.stop().await;
}

#[actix_rt::test]
async fn below_average_sends_work_to_the_idle_worker() {
    // Worker loads are crafted by parking tasks on a gate: worker 0 holds 3, worker 1 holds 0.
    let pool = Pool::builder().min(2).strategy(BelowAverage).start();
    let gate = Gate::new();
    let w0 = pool.workers()[0].clone();
    let parked: Vec<_> = (0..3)
        .map(|_| pool.push_to(&w0, gate.task(0u64)).expect("accepted"))
        .collect();
    assert_eq!(pool.loads(), vec![3, 0]);
    let mut events = collect::<u64>(&pool);
    // Mean load 1.5: worker 1 (load 0) is the first below it, for each of these pushes while its
    // load stays below the mean.
    let quick = pool.push(Task::new(|| 7u64)).expect("accepted");
    assert_eq!(bounded(quick).await, Ok(7));
    let seen = events.next_n(1).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), vec![&TaskId(4)]);
    assert_eq!(worker_of(&seen[&TaskId(4)]), pool.workers()[1]);
    gate.open();
    for p in parked {
        bounded(p).await.unwrap();
    }
    pool.stop().await;
}

/// Blocks worker 0 with a task that answers 0 once the gate opens, and returns when it runs. The
/// blocker is fired at worker 0: a task placed there by the strategy could be taken by another
/// worker while worker 0 sleeps.
async fn block_worker_0(pool: &PoolHandle) -> (Gate, Channel, Value<u64, TaskError>) {
    let gate = Gate::new();
    let w0 = pool.workers()[0].clone();
    let (blocker, started) = gate.task_started(0u64);
    let blocker = pool.push_to(&w0, blocker).expect("accepted");
    bounded(started).await.expect("the blocker started");
    (gate, w0, blocker)
}

#[actix_rt::test]
async fn an_idle_worker_steals_queued_work_from_a_busy_one_but_never_pinned_work() {
    let pool = Pool::builder().min(2).strategy(RoundRobin::new()).start();
    // Then round robin, which starts at worker 0: one task queued behind the blocker, one for
    // worker 1.
    let (gate, w0, blocker) = block_worker_0(&pool).await;
    let behind_blocker = pool.push(Task::new(|| 2u64)).expect("accepted");
    let on_w1 = pool.push(Task::new(|| 1u64)).expect("accepted");
    let pinned = pool.push_to(&w0, Task::new(|| 3u64)).expect("accepted");
    // Worker 1 is idle after its own task and takes the one stuck behind the blocker.
    assert_eq!(bounded(on_w1).await, Ok(1));
    assert_eq!(bounded(behind_blocker).await, Ok(2));
    let mut pinned = pinned;
    assert!(
        !pinned.is_ready(),
        "a task fired at worker 0 waits for worker 0"
    );
    gate.open();
    assert_eq!(bounded(blocker).await, Ok(0));
    assert_eq!(bounded(&mut pinned).await, Ok(3));
    pool.stop().await;
}

#[actix_rt::test]
async fn a_task_behind_a_busy_worker_runs_while_the_others_would_sleep() {
    // Worker 0 is blocked; round robin places every fourth task behind it. Each of those must be
    // taken by another worker, awake or woken for it (a push behind a busy worker wakes a sleeper
    // when nobody is looking for work), never left for the blocker's end.
    let pool = Pool::builder().min(4).strategy(RoundRobin::new()).start();
    let (gate, _, blocker) = block_worker_0(&pool).await;
    for i in 1..=400u64 {
        let v = pool.push(Task::new(move || i)).expect("accepted");
        assert_eq!(
            bounded(v).await,
            Ok(i),
            "task {i} ran while worker 0 was blocked"
        );
    }
    gate.open();
    assert_eq!(bounded(blocker).await, Ok(0));
    pool.stop().await;
}

#[actix_rt::test]
async fn a_pool_of_one_worker_runs_its_tasks_in_the_order_they_came() {
    // A task placed on a sleeping worker may wait in the pool's shared injector, which a worker
    // reads after its own queue; a worker alone gets every task in its own queue, in order.
    let pool = Pool::builder().min(1).start();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut next = 0u64;
    for round in 0..300u64 {
        let values: Vec<_> = (0..1 + round % 5)
            .map(|_| {
                let (seen, i) = (seen.clone(), next);
                next += 1;
                pool.push(Task::new(move || seen.lock().unwrap().push(i)))
                    .expect("accepted")
            })
            .collect();
        for v in values {
            bounded(v).await.expect("ran");
        }
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        (0..next).collect::<Vec<_>>(),
        "tasks ran in push order"
    );
    pool.stop().await;
}

#[actix_rt::test]
async fn a_wide_pool_under_many_clients_ends_every_task_and_keeps_every_worker() {
    // 64 clients awaiting one task after another on 32 workers: most workers sleep between tasks
    // (only a few idle ones look for work), and siblings steal from one another all the time. A
    // worker woken by a task that a sibling stole at that moment must go back to sleep, not exit.
    let pool = Pool::builder().min(32).start();
    let clients: Vec<_> = (0..64u64)
        .map(|c| {
            let pool = pool.clone();
            actix::spawn(async move {
                for i in 0..2_000u64 {
                    let v = pool
                        .push(Task::new(move || c * 1000 + i))
                        .expect("accepted");
                    assert_eq!(v.await, Ok(c * 1000 + i));
                }
            })
        })
        .collect();
    for client in clients {
        bounded(client).await.expect("a client ran to its end");
    }
    // Every worker is still there to take a task fired at it.
    for w in pool.workers() {
        let v = pool.push_to(&w, Task::new(|| 7u64)).expect("accepted");
        assert_eq!(bounded(v).await, Ok(7), "worker {w} took its task");
    }
    pool.stop().await;
}

#[actix_rt::test]
async fn tasks_placed_on_sleeping_workers_run_and_settle_on_stop_and_abort() {
    // Round robin over 16 workers places nearly every task on a worker that has slept since its
    // last one. Such a task goes to the pool's shared injector, and its worker is woken only when
    // no other worker is looking for work. A lost wake-up would leave a task queued with every
    // worker asleep, and the bounded wait below would fail.
    let pool = Pool::builder().min(16).strategy(RoundRobin::new()).start();
    for i in 0..3_000u64 {
        let v = pool.push(Task::new(move || i)).expect("accepted");
        assert_eq!(bounded(v).await, Ok(i), "task {i} ran");
    }
    // A burst, then a stop at once: the stop runs every task, wherever it waits.
    let burst: Vec<_> = (0..5_000u64)
        .map(|i| pool.push(Task::new(move || i)).expect("accepted"))
        .collect();
    bounded(pool.stop()).await;
    for (i, v) in (0u64..).zip(burst) {
        assert_eq!(bounded(v).await, Ok(i), "burst task {i} ran");
    }
    // The same with an abort: every task settles, run or cancelled, none is left waiting.
    let pool = Pool::builder().min(16).strategy(RoundRobin::new()).start();
    let burst: Vec<_> = (0..5_000u64)
        .map(|i| pool.push(Task::new(move || i)).expect("accepted"))
        .collect();
    bounded(pool.abort()).await;
    for (i, v) in (0u64..).zip(burst) {
        let out = bounded(v).await;
        assert!(
            out == Ok(i) || out == Err(TaskError::Cancelled),
            "burst task {i} settled: {out:?}"
        );
    }
}

#[actix_rt::test]
async fn a_panic_fails_only_that_task_and_the_worker_lives_on() {
    let pool = Pool::builder().min(1).start();
    let mut events = collect::<u64>(&pool);
    let bad = pool
        .push(Task::new(|| -> u64 { panic!("boom") }))
        .expect("accepted");
    assert_eq!(bounded(bad).await, Err(TaskError::Panicked("boom".into())));
    let good = pool.push(Task::new(|| 5u64)).expect("accepted");
    assert_eq!(bounded(good).await, Ok(5));
    let seen = events.until_complete(2).await;
    let terminal = one_outcome_each(&seen, 2);
    assert!(matches!(
        &terminal[&TaskId(1)],
        Seen::Failure(_, TaskError::Panicked(m)) if m == "boom"
    ));
    assert!(matches!(&terminal[&TaskId(2)], Seen::Success(_, 5)));
    assert_eq!(pool.workers().len(), 1);
    pool.stop().await;
}

#[actix_rt::test]
async fn stop_drains_every_queued_task_and_later_pushes_fail_at_once() {
    let pool = Pool::builder().min(2).start();
    let values: Vec<_> = (0..200u64)
        .map(|i| {
            pool.push(Task::new(move || {
                std::thread::sleep(Duration::from_micros(200));
                i
            }))
            .expect("accepted")
        })
        .collect();
    bounded(pool.stop()).await;
    for (i, v) in values.into_iter().enumerate() {
        let mut v = v;
        assert!(v.is_ready(), "stop resolves every value before it returns");
        assert_eq!(v.try_take(), Some(Ok(i as u64)));
    }
    // Refused at once, the task handed back whole: it runs on another pool.
    let late = pool.push(Task::new(|| 1u64)).unwrap_err();
    assert_eq!(late.refusal(), &Refusal::Stopped);
    assert!(late.is_stopped() && !late.is_full());
    let via_actor = pool.addr().send(Task::new(|| 1u64)).await;
    assert!(
        matches!(
            via_actor,
            Err(_) | Ok(Err(RunError::Refused(Refusal::Stopped)))
        ),
        "{via_actor:?}"
    );
    let other = Pool::builder().min(1).start();
    assert_eq!(bounded(other.run(late.into_task())).await, Ok(1));
    other.stop().await;
    // A second stop returns once the pool is stopped.
    bounded(pool.stop()).await;
}

#[actix_rt::test]
async fn abort_cancels_queued_tasks_and_fires_their_failures() {
    let pool = Pool::builder().min(1).start();
    let mut events = collect::<u64>(&pool);
    let gate = Gate::new();
    let (running, started) = gate.task_started(1u64);
    let running = pool.push(running).expect("accepted");
    let queued: Vec<_> = (0..10u64)
        .map(|i| pool.push(Task::new(move || i)).expect("accepted"))
        .collect();
    bounded(started).await.expect("the running task started");
    // The abort returns while the running closure is still blocked: its value resolves at once
    // and the thread finishes it detached.
    bounded(pool.abort()).await;
    assert_eq!(
        bounded(running).await,
        Err(TaskError::Cancelled),
        "the running task's value resolves at once"
    );
    gate.open();
    for q in queued {
        assert_eq!(bounded(q).await, Err(TaskError::Cancelled));
    }
    let seen = events.until_complete(11).await;
    let cancelled = one_outcome_each(&seen, 11)
        .values()
        .filter(|s| matches!(s, Seen::Failure(_, TaskError::Cancelled)))
        .count();
    assert_eq!(cancelled, 11);
}

#[actix_rt::test]
async fn a_task_queued_past_its_deadline_fails_expired_without_running() {
    let pool = Pool::builder().min(1).start();
    let mut events = collect::<u64>(&pool);
    let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let gate = Gate::new();
    let (blocker, started) = gate.task_started(0u64);
    let blocker = pool.push(blocker).expect("accepted");
    bounded(started).await.expect("the worker is busy");
    let count = |i: u64| {
        let ran = ran.clone();
        move || {
            ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            i
        }
    };
    // Queued behind the busy worker: one whose deadline has passed, one with time to spare.
    let stale = pool
        .push(Task::new(count(1)).expires_after(Duration::ZERO))
        .expect("accepted");
    let fresh = pool
        .push(Task::new(count(2)).expires_after(BOUND))
        .expect("accepted");
    gate.open();
    assert_eq!(bounded(blocker).await, Ok(0));
    assert_eq!(bounded(stale).await, Err(TaskError::Expired));
    assert_eq!(bounded(fresh).await, Ok(2));
    assert_eq!(
        ran.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the expired one never ran"
    );
    // The expiry is a failure like any other: one TaskFailure, then TaskComplete.
    let seen = events.until_complete(3).await;
    let expired = one_outcome_each(&seen, 3)
        .values()
        .filter(|s| matches!(s, Seen::Failure(_, TaskError::Expired)))
        .count();
    assert_eq!(expired, 1);
    let s = pool.stats();
    assert_eq!((s.done, s.failed), (2, 1));
    pool.stop().await;
}

#[actix_rt::test]
async fn a_timed_out_task_fails_once_and_the_late_result_is_discarded() {
    let pool = Pool::builder().min(1).start();
    let mut events = collect::<u64>(&pool);
    // The task cannot end before its timeout: it waits for a gate opened only after it failed.
    let (open, gate) = std::sync::mpsc::channel::<()>();
    let slow = pool
        .push(
            Task::new(move || {
                let _ = gate.recv();
                1u64
            })
            .timeout(Duration::from_millis(20)),
        )
        .expect("accepted");
    assert_eq!(
        bounded(slow).await,
        Err(TaskError::TimedOut(Duration::from_millis(20)))
    );
    open.send(()).unwrap();
    // The next task runs after the slow one really ends on the one worker.
    assert_eq!(bounded(pool.run(Task::new(|| 2u64))).await, Ok(2));
    let seen = events.until_complete(2).await;
    let terminal = one_outcome_each(&seen, 2);
    assert!(matches!(
        &terminal[&TaskId(1)],
        Seen::Failure(_, TaskError::TimedOut(d)) if *d == Duration::from_millis(20)
    ));
    assert!(
        matches!(&terminal[&TaskId(2)], Seen::Success(_, 2)),
        "the late result of task 1 fired no event"
    );
    pool.stop().await;
}

#[actix_rt::test]
async fn unsubscribed_collectors_hear_nothing_more() {
    let pool = Pool::builder().min(2).start();
    let mut first = collect::<u64>(&pool);
    bounded(pool.run(Task::new(|| 1u64))).await.unwrap();
    let before = first.until_complete(1).await;
    first.unsubscribe(pool.bus());
    let mut second = collect::<u64>(&pool);
    for i in 0..10u64 {
        bounded(pool.run(Task::new(move || i))).await.unwrap();
    }
    let heard = second.until_complete(10).await;
    assert_eq!(heard.len(), 10);
    assert!(!heard.contains_key(&TaskId(1)), "task 1 ended before");
    assert_eq!(
        first.seen(),
        before,
        "the first collector heard nothing more"
    );
    pool.stop().await;
}

#[actix_rt::test]
async fn waiting_on_a_task_value_is_bounded() {
    let pool = Pool::builder().min(1).start();
    // The task cannot end before the gate opens, which happens after the bounded wait elapsed.
    let (open, gate) = std::sync::mpsc::channel::<()>();
    let mut v = pool
        .push(Task::new(move || {
            let _ = gate.recv();
            3u64
        }))
        .expect("accepted");
    assert_eq!(
        v.wait(Duration::from_millis(1)).await,
        Err(WaitError::Elapsed(Duration::from_millis(1)))
    );
    open.send(()).unwrap();
    assert_eq!(v.wait(BOUND).await, Ok(Ok(3)));
    pool.stop().await;
}

#[actix_rt::test]
async fn run_returns_the_result_in_one_await() {
    let pool = Pool::builder().min(2).start();
    let mut events = collect::<u64>(&pool);
    assert_eq!(bounded(pool.run(Task::new(|| 6u64 * 7))).await, Ok(42));
    let failed = bounded(pool.run(Task::fallible(|| "x".parse::<u64>()))).await;
    assert!(
        matches!(&failed, Err(RunError::Task(TaskError::Failed(m))) if m.contains("invalid digit")),
        "{failed:?}"
    );
    assert!(matches!(
        failed.unwrap_err().task_error(),
        Some(TaskError::Failed(_))
    ));
    let panicked = bounded(pool.run(Task::new(|| -> u64 { panic!("boom") }))).await;
    assert_eq!(
        panicked,
        Err(RunError::Task(TaskError::Panicked("boom".into())))
    );
    // The tasks run accepted: each fires its events as a pushed one does.
    let seen = events.until_complete(3).await;
    let terminal = one_outcome_each(&seen, 3);
    assert!(matches!(&terminal[&TaskId(1)], Seen::Success(_, 42)));
    assert!(matches!(
        &terminal[&TaskId(2)],
        Seen::Failure(_, TaskError::Failed(_))
    ));
    assert!(matches!(
        &terminal[&TaskId(3)],
        Seen::Failure(_, TaskError::Panicked(_))
    ));
    pool.stop().await;
    let refused = bounded(pool.run(Task::new(|| 1u64))).await.unwrap_err();
    assert_eq!(refused, RunError::Refused(Refusal::Stopped));
    assert_eq!(refused.task_error(), None);
}

#[actix_rt::test]
async fn a_stopping_or_stopped_pool_refuses_every_entry_point_and_hands_the_task_back() {
    let pool = Pool::builder().min(2).start();
    let mut events = collect::<u64>(&pool);
    let gate = Gate::new();
    let (held, started) = gate.task_started(7u64);
    let held = pool.push(held).expect("accepted");
    bounded(started).await.expect("the held task started");
    // A draining stop begins at its first poll, and waits for the held task.
    let mut stopping = Box::pin(pool.stop());
    assert!(futures::poll!(stopping.as_mut()).is_pending());
    assert!(pool.is_stopped());
    let worker = pool.workers()[0].clone();
    // While it drains, every entry point refuses with Stopped; one task goes through them all,
    // handed back each time.
    let pushed = pool.push(Task::new(|| 1u64)).unwrap_err();
    assert_eq!(pushed.refusal(), &Refusal::Stopped);
    let pushed_to = pool.push_to(&worker, pushed.into_task()).unwrap_err();
    assert_eq!(pushed_to.refusal(), &Refusal::Stopped);
    let called = pool.bus().call("pool", pushed_to.into_task()).unwrap_err();
    assert_eq!(called.refusal(), &Refusal::Stopped);
    let called_worker = pool.bus().call(&worker, called.into_task()).unwrap_err();
    assert_eq!(called_worker.refusal(), &Refusal::Stopped);
    let sent = bounded(pool.send(called_worker.into_task()))
        .await
        .unwrap_err();
    assert_eq!(sent.refusal(), &Refusal::Stopped);
    assert_eq!(
        bounded(pool.run(Task::new(|| 2u64))).await,
        Err(RunError::Refused(Refusal::Stopped))
    );
    assert_eq!(
        bounded(pool.addr().send(Task::new(|| 3u64)))
            .await
            .expect("the pool actor answers while the pool drains"),
        Err(RunError::Refused(Refusal::Stopped))
    );
    assert_eq!(
        pool.map((0..3u64).map(Square)).err(),
        Some(Refusal::Stopped)
    );
    // The draining stop still runs the task it had accepted.
    gate.open();
    assert_eq!(bounded(held).await, Ok(7));
    bounded(stopping).await;
    // Stopped: the same refusals. Its channels have no route on the bus any more.
    let pushed = pool.push(sent.into_task()).unwrap_err();
    assert_eq!(pushed.refusal(), &Refusal::Stopped);
    let pushed_to = pool.push_to(&worker, pushed.into_task()).unwrap_err();
    assert_eq!(
        pushed_to.refusal(),
        &Refusal::Stopped,
        "push_to after the stop"
    );
    let sent = bounded(pool.send(pushed_to.into_task())).await.unwrap_err();
    assert_eq!(sent.refusal(), &Refusal::Stopped);
    assert_eq!(
        bounded(pool.run(Task::new(|| 2u64))).await,
        Err(RunError::Refused(Refusal::Stopped))
    );
    assert_eq!(
        pool.map((0..3u64).map(Square)).err(),
        Some(Refusal::Stopped)
    );
    let called = pool.bus().call("pool", sent.into_task()).unwrap_err();
    assert_eq!(called.refusal(), &Refusal::NoRoute("pool".into()));
    let via_actor = pool.addr().send(Task::new(|| 3u64)).await;
    assert!(
        matches!(
            via_actor,
            Err(_) | Ok(Err(RunError::Refused(Refusal::Stopped)))
        ),
        "{via_actor:?}"
    );
    // Nothing refused fired an event: the held task is the only one the collector heard of.
    let seen = events.until_complete(1).await;
    one_outcome_each(&seen, 1);
    // The task that went through every refusal is whole: it runs on another pool.
    let other = Pool::builder().min(1).channel("other").start();
    assert_eq!(bounded(other.run(called.into_task())).await, Ok(1));
    other.stop().await;
}

async fn push_then_await(pool: &PoolHandle, task: Task<u64>) -> Result<u64, circuits::Error> {
    let value = pool.push(task)?;
    Ok(value.await?)
}

async fn push_then_await_boxed(
    pool: &PoolHandle,
    task: Task<u64>,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let value = pool.push(task)?;
    Ok(value.await?)
}

async fn push_then_await_run_error(pool: &PoolHandle, task: Task<u64>) -> Result<u64, RunError> {
    let value = pool.push(task)?;
    Ok(value.await?)
}

async fn run_then_wait(pool: &PoolHandle, task: Task<u64>) -> Result<u64, circuits::Error> {
    Ok(pool.run(task).await?)
}

#[actix_rt::test]
async fn a_submit_error_converts_with_question_mark() {
    let pool = Pool::builder().min(1).start();
    assert_eq!(
        bounded(push_then_await(&pool, Task::new(|| 4u64))).await,
        Ok(4)
    );
    assert!(matches!(
        bounded(push_then_await(
            &pool,
            Task::fallible(|| "x".parse::<u64>())
        ))
        .await,
        Err(circuits::Error::Task(TaskError::Failed(_)))
    ));
    assert_eq!(
        bounded(push_then_await_boxed(&pool, Task::new(|| 5u64)))
            .await
            .expect("ran"),
        5
    );
    assert_eq!(
        bounded(run_then_wait(&pool, Task::new(|| 6u64))).await,
        Ok(6)
    );
    pool.stop().await;
    assert_eq!(
        bounded(push_then_await(&pool, Task::new(|| 1u64))).await,
        Err(circuits::Error::Refused(Refusal::Stopped))
    );
    assert_eq!(
        bounded(push_then_await_run_error(&pool, Task::new(|| 1u64))).await,
        Err(RunError::Refused(Refusal::Stopped))
    );
    assert_eq!(
        bounded(run_then_wait(&pool, Task::new(|| 1u64))).await,
        Err(circuits::Error::Refused(Refusal::Stopped))
    );
    // Boxed, it is the SubmitError itself (Send and Sync whatever the task), reason and message.
    let boxed = bounded(push_then_await_boxed(&pool, Task::new(|| 1u64)))
        .await
        .unwrap_err();
    let submit = boxed
        .downcast_ref::<SubmitError<u64>>()
        .expect("the box holds the SubmitError");
    assert_eq!(submit.refusal(), &Refusal::Stopped);
    assert_eq!(
        boxed.to_string(),
        "the task was not accepted: the pool is stopped; it takes no new tasks"
    );
    let source = boxed.source().expect("the refusal is the source");
    assert_eq!(source.downcast_ref::<Refusal>(), Some(&Refusal::Stopped));
    // An accepted task's own error boxes as the TaskError.
    let other = Pool::builder().min(1).channel("other").start();
    let failed = bounded(push_then_await_boxed(
        &other,
        Task::fallible(|| "x".parse::<u64>()),
    ))
    .await
    .unwrap_err();
    assert!(matches!(
        failed.downcast_ref::<TaskError>(),
        Some(TaskError::Failed(_))
    ));
    other.stop().await;
}

async fn within(v: &mut Value<u64, TaskError>, d: Duration) -> Result<u64, circuits::Error> {
    Ok(v.wait(d).await??)
}

#[actix_rt::test]
async fn a_bounded_wait_gives_the_result_inside_ok_and_the_value_outlives_an_elapsed_wait() {
    let pool = Pool::builder().min(1).start();
    let gate = Gate::new();
    let (task, started) = gate.task_started(3u64);
    let mut v = pool.push(task).expect("accepted");
    bounded(started).await.expect("the task started");
    let short = Duration::from_millis(1);
    assert_eq!(v.wait(short).await, Err(WaitError::Elapsed(short)));
    assert_eq!(v.wait_blocking(short), Err(WaitError::Elapsed(short)));
    assert_eq!(
        within(&mut v, short).await,
        Err(circuits::Error::Wait(WaitError::Elapsed(short)))
    );
    assert_eq!(v.wait(Duration::ZERO).await, Err(WaitError::ZeroTimeout));
    assert!(v.try_take().is_none(), "still pending, nothing taken");
    gate.open();
    // After the elapsed waits, the value resolves for a plain await.
    assert_eq!(bounded(v).await, Ok(3));
    // A resolved value: the result at once, inside Ok, the task's own error included; then Taken.
    let mut failed = pool
        .push(Task::fallible(|| "x".parse::<u64>()))
        .expect("accepted");
    assert!(
        matches!(failed.wait(BOUND).await, Ok(Err(TaskError::Failed(_)))),
        "the task's error comes inside Ok"
    );
    assert_eq!(failed.wait(BOUND).await, Err(WaitError::Taken));
    assert_eq!(failed.wait_blocking(BOUND), Err(WaitError::Taken));
    let mut done = pool.push(Task::new(|| 8u64)).expect("accepted");
    assert_eq!(within(&mut done, BOUND).await, Ok(8));
    pool.stop().await;
}

#[test]
fn starting_a_pool_outside_a_system_or_with_bad_sizes_is_an_error() {
    assert!(matches!(
        Pool::builder().min(1).try_start(),
        Err(circuits::PoolError::NoSystem)
    ));
    actix::System::new().block_on(async {
        assert!(matches!(
            Pool::builder().min(0).try_start(),
            Err(circuits::PoolError::InvalidSize { min: 0, max: 0 })
        ));
        assert!(matches!(
            Pool::builder().min(3).max(2).try_start(),
            Err(circuits::PoolError::InvalidSize { min: 3, max: 2 })
        ));
    });
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Ok,
    Err,
    Panic,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Ok), Just(Kind::Err), Just(Kind::Panic)]
}

/// Runs `kinds.len()` tasks split over 4 concurrent pushers; checks that each task has exactly one
/// value outcome matching its kind and exactly one terminal event followed by one `TaskComplete`.
fn exactly_once(kinds: Vec<Kind>) {
    actix::System::new().block_on(async move {
        let pool = Pool::builder().min(3).strategy(PowerOfTwo).start();
        let mut events = collect::<u64>(&pool);
        let kinds = Arc::new(kinds);
        let mut pushers = Vec::new();
        for p in 0..4usize {
            let pool = pool.clone();
            let kinds = kinds.clone();
            pushers.push(std::thread::spawn(move || {
                let mut out = Vec::new();
                for i in (p..kinds.len()).step_by(4) {
                    let k = kinds[i];
                    let n = i as u64;
                    let task = Task::fallible(move || match k {
                        Kind::Ok => Ok(n),
                        Kind::Err => Err(format!("no {n}")),
                        Kind::Panic => panic!("panic {n}"),
                    });
                    out.push((i, pool.push(task).expect("accepted")));
                }
                out.into_iter()
                    .map(|(i, mut v)| (i, v.wait_blocking(BOUND).expect("in time")))
                    .collect::<Vec<_>>()
            }));
        }
        let mut results = Vec::new();
        for p in pushers {
            results.extend(p.join().unwrap());
        }
        assert_eq!(results.len(), kinds.len());
        for (i, r) in &results {
            match (kinds[*i], r) {
                (Kind::Ok, Ok(n)) => assert_eq!(*n, *i as u64),
                (Kind::Err, Err(TaskError::Failed(m))) => assert_eq!(m, &format!("no {i}")),
                (Kind::Panic, Err(TaskError::Panicked(m))) => assert_eq!(m, &format!("panic {i}")),
                (k, r) => panic!("task {i} of kind {k:?} ended as {r:?}"),
            }
        }
        let seen = events.until_complete(kinds.len()).await;
        let terminal = one_outcome_each(&seen, kinds.len());
        let ok = kinds.iter().filter(|k| matches!(k, Kind::Ok)).count();
        let succeeded = common::success_values(&terminal);
        assert_eq!(succeeded.len(), ok);
        let mut ok_values: Vec<u64> = results
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().copied())
            .collect();
        ok_values.sort_unstable();
        assert_eq!(succeeded, ok_values, "the success events carry the values");
        pool.stop().await;
    });
}

fn quiet_panics() {
    // Thousands of deliberate task panics would flood the output; the outcomes are asserted.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let worker = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("circuits-worker"));
        if !worker {
            default(info);
        }
    }));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ten_thousand_tasks_from_four_pushers_each_end_exactly_once(
        kinds in proptest::collection::vec(kind(), 10_000)
    ) {
        quiet_panics();
        exactly_once(kinds);
    }
}

#[cfg(not(feature = "process"))]
#[actix_rt::test]
async fn process_mode_says_it_is_unsupported_without_its_feature() {
    let started = Pool::builder().min(1).process().try_start();
    assert_eq!(started.err(), Some(circuits::PoolError::Unsupported));
}

#[test]
fn a_pool_started_where_no_system_runs_is_an_error_not_a_panic() {
    // No System at all.
    let none = Pool::builder().min(1).try_start();
    assert_eq!(none.err(), Some(circuits::PoolError::NoSystem));
    // A System created but not running on this thread (outside its block_on).
    let _system = actix::System::new();
    let idle = Pool::builder().min(1).try_start();
    assert_eq!(idle.err(), Some(circuits::PoolError::NoSystem));
}

#[actix_rt::test]
async fn waiting_without_a_bound_is_a_duration_that_saturates() {
    // Duration::MAX is no time on the clock: it waits without a bound instead of panicking.
    let pool = Pool::builder().min(1).start();
    let gate = common::Gate::new();
    let mut v = pool.push(gate.task(5u64)).expect("accepted");
    let waiter = std::thread::spawn(move || v.wait_blocking(Duration::MAX));
    gate.open();
    assert_eq!(waiter.join().expect("no overflow panic"), Ok(Ok(5)));
    pool.stop().await;
}

/// Set by the retry check below when it starts, then by the task pushed while it waits.
static CHECKING: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());
static SECOND_RAN: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());
/// The retry check gave up waiting for the second task.
static GAVE_UP: AtomicBool = AtomicBool::new(false);

fn set(flag: &(Mutex<bool>, Condvar)) {
    *flag.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
    flag.1.notify_all();
}

/// Waits up to 20 s for `flag`; `false` if it did not come.
fn wait(flag: &(Mutex<bool>, Condvar)) -> bool {
    let guard = flag.0.lock().unwrap_or_else(|p| p.into_inner());
    let (guard, _) = flag
        .1
        .wait_timeout_while(guard, Duration::from_secs(20), |set| !*set)
        .unwrap_or_else(|p| p.into_inner());
    *guard
}

/// A retry check that says it runs, then waits for the second task; it retries nothing.
fn wait_for_the_second_task(_: &TaskError) -> bool {
    set(&CHECKING);
    if !wait(&SECOND_RAN) {
        GAVE_UP.store(true, Ordering::SeqCst);
    }
    false
}

#[actix_rt::test]
async fn a_task_pushed_while_a_worker_runs_a_tasks_retry_check_runs_on_another_worker() {
    // A worker about to set a task's value counts as looking for work, so that a push meanwhile
    // leaves its task to it rather than waking a sleeper. It must not count so while the task's
    // own code still runs (here a retry check that waits for the next task): a task pushed then
    // to a sleeping worker would wait for the check instead of waking that worker.
    let pool = Pool::builder().min(2).start();
    assert_eq!(
        bounded(pool.push(Task::new(|| 0u64)).expect("accepted")).await,
        Ok(0)
    );
    let failing = Task::repeatable(|| Err::<u64, String>("fails".into()))
        .retry(Retry::attempts(2).when(wait_for_the_second_task));
    let first = pool.push(failing).expect("accepted");
    assert!(wait(&CHECKING), "the retry check started");
    let second = pool
        .push(Task::new(|| {
            set(&SECOND_RAN);
            2u64
        }))
        .expect("accepted");
    assert_eq!(bounded(second).await, Ok(2));
    assert!(matches!(bounded(first).await, Err(TaskError::Failed(_))));
    assert!(
        !GAVE_UP.load(Ordering::SeqCst),
        "the second task ran while the first one's retry check waited"
    );
    pool.stop().await;
}
