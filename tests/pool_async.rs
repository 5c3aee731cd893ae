//! Async tasks and cancellation (issue #14): many futures in flight per worker, timeouts and
//! cancels that drop the future, a cancel for every kind of task with exactly one terminal event,
//! aborts, panics, futures that block their thread, non-`Send` futures, actors started from a
//! task. Its own `main` (`harness = false`): the process-mode cancel needs `circuits::init` first.

mod common;
use common::{bounded, eventually, grown_to_two, listen, retire_second, Gate, Listener, Pid};

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use circuits::prelude::*;
use circuits::{Cancel, TaskOutput, WorkerRestarted, WorkerStopped};
use serde::{Deserialize, Serialize};

/// Creates its marker file (it started), then hangs until its child is killed.
#[derive(Serialize, Deserialize)]
struct HangAfter(PathBuf);
impl Job for HangAfter {
    const NAME: &'static str = "hang-after";
    type Output = u32;
    fn run(self) -> u32 {
        std::fs::write(&self.0, std::process::id().to_string()).expect("the marker is written");
        loop {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Sets its flag when dropped: proves a future was dropped (not left running).
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A future that never ends, holding a drop flag; sets `started` when first polled.
async fn forever(flag: DropFlag, started: Arc<AtomicBool>) -> u32 {
    let _flag = flag;
    started.store(true, Ordering::SeqCst);
    futures::future::pending::<()>().await;
    0
}

/// The result events of a pool (for tasks returning `R`), to count terminal events.
struct Events<R> {
    ok: Listener<TaskSuccess<R>>,
    failed: Listener<TaskFailure>,
    done: Listener<TaskComplete>,
}

fn events<R: TaskOutput>(pool: &PoolHandle) -> Events<R> {
    Events {
        ok: listen(pool.bus(), pool.channel()),
        failed: listen(pool.bus(), pool.channel()),
        done: listen(pool.bus(), pool.channel()),
    }
}

impl<R: TaskOutput> Events<R> {
    /// After `n` completions: (successes, failures, completions) seen so far.
    async fn after(&mut self, n: usize) -> (usize, Vec<TaskFailure>, Vec<TaskComplete>) {
        let mut done = Vec::new();
        for _ in 0..n {
            done.push(self.done.next().await);
        }
        let mut ok = 0;
        while self.ok.try_next().is_ok() {
            ok += 1;
        }
        let mut failed = Vec::new();
        while let Ok(f) = self.failed.try_next() {
            failed.push(f);
        }
        (ok, failed, done)
    }
}

async fn ten_thousand_sleeps_run_128_at_a_time_on_two_workers() {
    let pool = Pool::builder().min(2).async_workers(64).start();
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let values: Vec<_> = (0..10_000u64)
        .map(|i| {
            let (now, most) = (now.clone(), most.clone());
            pool.push(Task::future(async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                i
            }))
            .unwrap()
        })
        .collect();
    let mut sum = 0;
    for v in values {
        sum += bounded(v).await.unwrap();
    }
    let took = started.elapsed();
    assert_eq!(sum, 9_999 * 10_000 / 2);
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 128, "no more than 64 in flight per worker: {most}");
    assert!(most >= 64, "the workers ran many at once: {most}");
    // 10,000 / 128 x 10 ms is about 0.8 s; one at a time would be 100 s.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(pool.stats().done, 10_000);
    // The last tasks leave the load counters just after their values resolve.
    assert!(eventually(60, || pool.stats().queued + pool.stats().running == 0).await);
    bounded(pool.stop()).await;
}

async fn a_timeout_drops_the_future() {
    let pool = Pool::builder().min(1).async_workers(4).start();
    let (dropped, started) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let task = Task::future(forever(DropFlag(dropped.clone()), started))
        .timeout(Duration::from_millis(50));
    assert_eq!(
        bounded(pool.run(task)).await.unwrap_err().task_error(),
        Some(&TaskError::TimedOut(Duration::from_millis(50)))
    );
    assert!(
        dropped.load(Ordering::SeqCst),
        "the future was dropped before the value resolved"
    );
    // The worker goes on.
    assert_eq!(bounded(pool.run(Task::future(async { 5 }))).await, Ok(5));
    bounded(pool.stop()).await;
}

async fn cancelling_a_queued_async_task_ends_it_before_it_starts() {
    let pool = Pool::builder().min(1).async_workers(1).start();
    let mut seen = events::<u32>(&pool);
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let first = pool
        .push(Task::future(async move {
            let _ = wait.await;
            1u32
        }))
        .unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    let (queued, cancel) = Task::future(async move {
        s.store(true, Ordering::SeqCst);
        2u32
    })
    .cancellable();
    let queued = pool.push(queued).unwrap();
    assert!(cancel.cancel());
    assert_eq!(
        bounded(queued).await,
        Err(TaskError::Cancelled),
        "resolved at once"
    );
    let (ok, failed, done) = seen.after(1).await;
    assert_eq!((ok, failed.len(), done[0].ok), (0, 1, false));
    assert_eq!(failed[0].error, TaskError::Cancelled);
    release.send(()).unwrap();
    assert_eq!(bounded(first).await, Ok(1));
    seen.after(1).await;
    assert!(
        !started.load(Ordering::SeqCst),
        "the cancelled task never ran"
    );
    assert!(!cancel.cancel(), "a second cancel does nothing");
    // The cancelled entry counts as queued until the worker reaches it and drops it (see
    // `PoolStats`), which may come just after the first task's events.
    assert!(
        eventually(30, || pool.stats().queued == 0).await,
        "the worker drops the cancelled entry: {:?}",
        pool.stats()
    );
    let stats = pool.stats();
    assert_eq!((stats.done, stats.failed, stats.queued), (1, 1, 0));
    bounded(pool.stop()).await;
}

async fn cancelling_a_running_async_task_drops_its_future() {
    let pool = Pool::builder().min(1).async_workers(8).start();
    let mut seen = events::<u32>(&pool);
    let (dropped, started) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (task, cancel) =
        Task::future(forever(DropFlag(dropped.clone()), started.clone())).cancellable();
    let value = pool.push(task).unwrap();
    assert!(eventually(60, || started.load(Ordering::SeqCst)).await);
    assert!(cancel.cancel());
    assert_eq!(bounded(value).await, Err(TaskError::Cancelled));
    assert!(
        eventually(60, || dropped.load(Ordering::SeqCst)).await,
        "the running future was dropped"
    );
    let (ok, failed, _) = seen.after(1).await;
    assert_eq!((ok, failed.len()), (0, 1));
    assert_eq!(bounded(pool.run(Task::future(async { 3u32 }))).await, Ok(3));
    let (_, failed, _) = seen.after(1).await;
    assert!(failed.is_empty(), "no second event for the cancelled task");
    bounded(pool.stop()).await;
}

async fn cancelling_a_running_job_kills_its_child_and_the_next_runs_on_a_new_one() {
    let marker = std::env::temp_dir().join(format!("circuits-{}-cancel", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let pool = Pool::builder().min(1).process().start();
    let mut seen = events::<u32>(&pool);
    let mut restarts: Listener<WorkerRestarted> = listen(pool.bus(), pool.channel());
    let (task, cancel) = Task::job(HangAfter(marker.clone())).cancellable();
    let value = pool.push(task).unwrap();
    let behind = pool.push(Task::job(Pid)).unwrap(); // sent ahead to the same child
    assert!(eventually(60, || marker.exists()).await, "the job started");
    let pid: u32 = std::fs::read_to_string(&marker).unwrap().parse().unwrap();
    assert!(cancel.cancel());
    assert_eq!(bounded(value).await, Err(TaskError::Cancelled));
    let restart = restarts.next().await;
    assert_eq!(restart.reason, "its running task was cancelled");
    assert!(common::ended(pid).await, "the child running it was killed");
    let next = bounded(behind).await.unwrap();
    assert_ne!(next, pid, "the job queued behind it ran on the new child");
    let (ok, failed, _) = seen.after(2).await;
    assert_eq!((ok, failed.len()), (1, 1), "one terminal event each");
    assert_eq!(failed[0].error, TaskError::Cancelled);
    bounded(pool.stop()).await;
    let _ = std::fs::remove_file(&marker);
}

async fn a_job_cancelled_while_queued_is_never_sent_to_a_child() {
    let dir = std::env::temp_dir();
    let first = dir.join(format!("circuits-{}-queued-1", std::process::id()));
    let second = dir.join(format!("circuits-{}-queued-2", std::process::id()));
    let _ = (std::fs::remove_file(&first), std::fs::remove_file(&second));
    // One job in the child at a time: the second waits in its worker's queue.
    let cfg = circuits::ProcessConfig::default().pipeline(1);
    let pool = Pool::builder().min(1).process_with(cfg).start();
    let mut seen = events::<u32>(&pool);
    let (running, stop_it) = Task::job(HangAfter(first.clone())).cancellable();
    let running = pool.push(running).unwrap();
    let (queued, cancel) = Task::job(HangAfter(second.clone())).cancellable();
    let queued = pool.push(queued).unwrap();
    assert!(
        eventually(60, || first.exists()).await,
        "the first job started"
    );
    assert!(cancel.cancel());
    assert_eq!(bounded(queued).await, Err(TaskError::Cancelled));
    assert!(stop_it.cancel()); // frees the child
    assert_eq!(bounded(running).await, Err(TaskError::Cancelled));
    let pid = bounded(pool.run(Task::job(Pid))).await.unwrap();
    assert!(pid > 0);
    assert!(!second.exists(), "the cancelled job never ran");
    let (ok, failed, _) = seen.after(3).await;
    assert_eq!((ok, failed.len()), (1, 2), "one terminal event each");
    bounded(pool.stop()).await;
    let _ = (std::fs::remove_file(&first), std::fs::remove_file(&second));
}

async fn cancelling_a_running_thread_closure_resolves_at_once_and_discards_its_result() {
    let pool = Pool::builder().min(1).start();
    let mut seen = events::<u32>(&pool);
    let gate = Gate::new();
    let (task, started) = gate.task_started(7u32);
    let (task, cancel) = task.cancellable();
    let value = pool.push(task).unwrap();
    bounded(started).await.unwrap();
    assert!(cancel.cancel());
    assert_eq!(
        bounded(value).await,
        Err(TaskError::Cancelled),
        "before the closure ends"
    );
    gate.open();
    assert_eq!(bounded(pool.run(Task::new(|| 8u32))).await, Ok(8));
    let (ok, failed, done) = seen.after(2).await;
    assert_eq!(
        (ok, failed.len(), done.len()),
        (1, 1, 2),
        "the discarded result fired nothing"
    );
    let stats = pool.stats();
    assert_eq!((stats.done, stats.failed), (1, 1));
    bounded(pool.stop()).await;
}

async fn an_abort_cancels_every_future_in_flight_and_queued() {
    let pool = Pool::builder().min(2).async_workers(5).start();
    let mut seen = events::<u32>(&pool);
    let mut flags = Vec::new();
    let mut values = Vec::new();
    for _ in 0..15 {
        let (dropped, started) = (Arc::new(AtomicBool::new(false)), Arc::default());
        values.push(
            pool.push(Task::future(forever(DropFlag(dropped.clone()), started)))
                .unwrap(),
        );
        flags.push(dropped);
    }
    // 10 run (5 per worker), 5 wait in the queues.
    assert!(eventually(60, || pool.stats().running == 10).await);
    bounded(pool.abort()).await;
    for v in values {
        assert_eq!(bounded(v).await, Err(TaskError::Cancelled));
    }
    let running_dropped = || flags.iter().filter(|f| f.load(Ordering::SeqCst)).count() == 15;
    assert!(
        eventually(60, running_dropped).await,
        "every future was dropped"
    );
    let (ok, failed, _) = seen.after(15).await;
    assert_eq!((ok, failed.len()), (0, 15));
}

async fn a_panicking_future_fails_panicked_and_the_worker_goes_on() {
    let pool = Pool::builder().min(1).async_workers(4).start();
    let boom = Task::future(async {
        tokio::task::yield_now().await;
        if true {
            std::panic::resume_unwind(Box::new("the future panicked"));
        }
        1u32
    });
    let err = bounded(pool.run(boom)).await.unwrap_err();
    assert_eq!(
        err.task_error(),
        Some(&TaskError::Panicked("the future panicked".into()))
    );
    assert_eq!(bounded(pool.run(Task::future(async { 2u32 }))).await, Ok(2));
    bounded(pool.stop()).await;
}

async fn a_future_that_blocks_its_thread_is_found_and_its_worker_replaced() {
    let pool = Pool::builder()
        .min(1)
        .async_workers(4)
        .stuck_after(Duration::from_millis(300))
        .start();
    let mut stopped: Listener<WorkerStopped> = listen(pool.bus(), pool.channel());
    let first = pool.workers()[0].clone();
    let (go, hold) = std::sync::mpsc::channel::<()>();
    let hold = Arc::new(std::sync::Mutex::new(hold));
    let beside_started = Arc::new(AtomicBool::new(false));
    let seen_beside = beside_started.clone();
    let blocker = pool
        .push(Task::future(async move {
            // Once the other task runs beside it, block the thread (a synchronous wait inside a
            // future): nothing else there runs.
            while !seen_beside.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let _ = hold.lock().unwrap().recv();
            1u32
        }))
        .unwrap();
    let beside = pool
        .push(Task::future(async move {
            beside_started.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            2u32
        }))
        .unwrap();
    let limit = TaskError::TimedOut(Duration::from_millis(300));
    assert_eq!(bounded(blocker).await, Err(limit.clone()));
    assert_eq!(
        bounded(beside).await,
        Err(limit),
        "every task of the held worker fails"
    );
    let gone = stopped.next().await;
    assert_eq!(gone.worker, first);
    assert!(gone.reason.starts_with("lost"), "{gone:?}");
    assert_ne!(pool.workers()[0], first, "a replacement took its place");
    assert_eq!(bounded(pool.run(Task::future(async { 3u32 }))).await, Ok(3));
    go.send(()).unwrap();
    bounded(pool.stop()).await;
}

async fn blocking_tasks_taken_together_are_each_timed_on_their_own() {
    // 32 closures of 50 ms, queued while the worker is held, then taken together: 1.6 s of work
    // in a row, each closure far under the pool's 1 s limit.
    let pool = Pool::builder()
        .min(1)
        .async_workers(32)
        .stuck_after(Duration::from_secs(1))
        .start();
    let first = pool.workers()[0].clone();
    let gate = Gate::new();
    let (task, started) = gate.task_started(0u32);
    let held = pool.push(task).unwrap();
    bounded(started).await.unwrap();
    let values: Vec<_> = (1..=32u32)
        .map(|i| {
            pool.push(Task::new(move || {
                std::thread::sleep(Duration::from_millis(50));
                i
            }))
            .unwrap()
        })
        .collect();
    gate.open();
    assert_eq!(bounded(held).await, Ok(0));
    for (i, v) in (1..=32u32).zip(values) {
        assert_eq!(bounded(v).await, Ok(i), "no task was taken for a stuck one");
    }
    assert_eq!(pool.workers()[0], first, "the worker was not replaced");
}

async fn an_abort_starts_no_blocking_task_taken_behind_a_running_one() {
    let pool = Pool::builder().min(1).async_workers(8).start();
    // Held first, so that the next eight are queued and then taken together.
    let gate = Gate::new();
    let (task, started) = gate.task_started(0u32);
    let held = pool.push(task).unwrap();
    bounded(started).await.unwrap();
    let hold = Gate::new();
    let (task, blocking) = hold.task_started(1u32);
    let blocker = pool.push(task).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let behind: Vec<_> = (2..9u32)
        .map(|i| {
            let ran = ran.clone();
            pool.push(Task::new(move || {
                ran.fetch_add(1, Ordering::SeqCst);
                i
            }))
            .unwrap()
        })
        .collect();
    gate.open();
    assert_eq!(bounded(held).await, Ok(0));
    // The worker took the eight and runs the first of them, which holds its thread.
    bounded(blocking).await.unwrap();
    let aborting = actix::spawn({
        let pool = pool.clone();
        async move { pool.abort().await }
    });
    // The abort resolves the running closure at once; it ends only when released.
    assert_eq!(bounded(blocker).await, Err(TaskError::Cancelled));
    hold.open();
    bounded(aborting).await.unwrap();
    for v in behind {
        assert_eq!(
            bounded(v).await,
            Err(TaskError::Cancelled),
            "a task taken but not started fails as the abort promises"
        );
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0, "none of them started");
}

async fn futures_that_are_not_send_run_on_their_worker() {
    let pool = Pool::builder().min(2).async_workers(8).start();
    let v = pool
        .run(Task::future_local(|| async {
            let counter = Rc::new(std::cell::RefCell::new(0));
            for _ in 0..10 {
                *counter.borrow_mut() += 1;
                tokio::task::yield_now().await;
            }
            let n = *counter.borrow();
            n
        }))
        .await;
    assert_eq!(v, Ok(10));
    bounded(pool.stop()).await;
}

struct Doubler;
impl Actor for Doubler {
    type Context = Context<Self>;
}
#[derive(Message)]
#[rtype(result = "u32")]
struct Double(u32);
impl Handler<Double> for Doubler {
    type Result = u32;
    fn handle(&mut self, m: Double, _: &mut Context<Self>) -> u32 {
        m.0 * 2
    }
}

async fn a_task_on_an_arbiter_worker_starts_an_actor() {
    let pool = Pool::builder().min(1).async_workers_on_arbiters(8).start();
    let v = pool
        .run(Task::future_local(|| async {
            let addr = Doubler.start(); // needs actix's context: the worker is an arbiter
            addr.send(Double(21)).await.unwrap_or(0)
        }))
        .await;
    assert_eq!(v, Ok(42));
    bounded(pool.stop()).await;
}

async fn async_tasks_also_run_on_thread_pools_and_process_pools_refuse_them() {
    let pool = Pool::builder().min(1).start();
    let v = pool
        .run(Task::future(async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            9u32
        }))
        .await;
    assert_eq!(
        v,
        Ok(9),
        "a thread worker runs it to its end in its own runtime"
    );
    let (dropped, started) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let timed = Task::future(forever(DropFlag(dropped.clone()), started))
        .timeout(Duration::from_millis(20));
    assert!(bounded(pool.run(timed)).await.is_err());
    assert!(
        dropped.load(Ordering::SeqCst),
        "a timeout drops it there too"
    );
    bounded(pool.stop()).await;

    let pool = Pool::builder().min(1).process().start();
    let refused = pool.push(Task::future(async { 1u32 })).unwrap_err();
    assert_eq!(refused.refusal(), &Refusal::ClosureInProcessPool);
    bounded(pool.stop()).await;
}

async fn a_cancel_before_the_push_cancels_on_arrival_and_a_guard_cancels_on_drop() {
    let pool = Pool::builder().min(1).async_workers(2).start();
    let (task, cancel) = Task::future(async { 1u32 }).cancellable();
    assert!(cancel.cancel() && cancel.is_cancelled());
    assert_eq!(
        bounded(pool.push(task).unwrap()).await,
        Err(TaskError::Cancelled)
    );

    let (dropped, started) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (task, cancel): (_, Cancel) =
        Task::future(forever(DropFlag(dropped.clone()), started.clone())).cancellable();
    let value = pool.push(task).unwrap();
    {
        let _guard = cancel.guard();
        assert!(eventually(60, || started.load(Ordering::SeqCst)).await);
    } // the request that wanted it went away
    assert_eq!(bounded(value).await, Err(TaskError::Cancelled));
    assert!(eventually(60, || dropped.load(Ordering::SeqCst)).await);
    bounded(pool.stop()).await;
}

/// An async worker retired while its future waits: a draining stop waits for that future too,
/// and an abort cancels it (dropping it), as for the pool's own workers.
async fn a_stop_waits_for_an_async_worker_a_resize_retired_and_an_abort_cancels_it() {
    for abort in [false, true] {
        let (pool, w0, w1) = grown_to_two(Pool::builder().async_workers(4));
        let (stays, stays_rx) = tokio::sync::watch::channel(false);
        let (leaves, leaves_rx) = tokio::sync::watch::channel(false);
        let waiting = |w: &Channel, gate: &tokio::sync::watch::Receiver<bool>, answer: u32| {
            let mut gate = gate.clone();
            pool.push_to(
                w,
                Task::future(async move {
                    let _ = gate.wait_for(|open| *open).await;
                    answer
                }),
            )
            .expect("the worker takes the task")
        };
        // Two futures on w0 (load 2), one on w1 (load 1): the resize retires w1 while it waits.
        let on_w0 = [waiting(&w0, &stays_rx, 1), waiting(&w0, &stays_rx, 2)];
        let mut on_w1 = waiting(&w1, &leaves_rx, 3);
        retire_second(&pool, &w0);
        if abort {
            bounded(pool.abort()).await;
            assert_eq!(on_w1.try_take(), Some(Err(TaskError::Cancelled)));
            for v in on_w0 {
                assert_eq!(bounded(v).await, Err(TaskError::Cancelled));
            }
            continue;
        }
        stays.send_replace(true);
        let mut stop = std::pin::pin!(pool.stop());
        for (v, answer) in on_w0.into_iter().zip([1, 2]) {
            match futures::future::select(stop.as_mut(), v).await {
                futures::future::Either::Left(_) => panic!("the stop returned before w1's task"),
                futures::future::Either::Right((got, _)) => assert_eq!(got, Ok(answer)),
            }
        }
        // w0 is done: a stop that forgot the retired worker returns now (given a moment to).
        let moment = std::pin::pin!(tokio::time::sleep(Duration::from_millis(300)));
        if let futures::future::Either::Left(_) =
            futures::future::select(stop.as_mut(), moment).await
        {
            panic!("the stop returned before the retired worker's task ended");
        }
        leaves.send_replace(true);
        bounded(stop).await;
        assert_eq!(on_w1.try_take(), Some(Ok(3)));
    }
}

fn main() {
    circuits::init(Jobs::new().register::<HangAfter>().register::<Pid>());
    common::run_main(
        "pool_async",
        common::async_tests![
            ten_thousand_sleeps_run_128_at_a_time_on_two_workers,
            a_timeout_drops_the_future,
            cancelling_a_queued_async_task_ends_it_before_it_starts,
            cancelling_a_running_async_task_drops_its_future,
            cancelling_a_running_job_kills_its_child_and_the_next_runs_on_a_new_one,
            a_job_cancelled_while_queued_is_never_sent_to_a_child,
            cancelling_a_running_thread_closure_resolves_at_once_and_discards_its_result,
            an_abort_cancels_every_future_in_flight_and_queued,
            a_panicking_future_fails_panicked_and_the_worker_goes_on,
            a_future_that_blocks_its_thread_is_found_and_its_worker_replaced,
            blocking_tasks_taken_together_are_each_timed_on_their_own,
            an_abort_starts_no_blocking_task_taken_behind_a_running_one,
            futures_that_are_not_send_run_on_their_worker,
            a_task_on_an_arbiter_worker_starts_an_actor,
            async_tasks_also_run_on_thread_pools_and_process_pools_refuse_them,
            a_cancel_before_the_push_cancels_on_arrival_and_a_guard_cancels_on_drop,
            a_stop_waits_for_an_async_worker_a_resize_retired_and_an_abort_cancels_it,
        ],
        common::sync_tests![],
    );
}
