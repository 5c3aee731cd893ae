//! What a pool shows a person looking at it (the dashboard, a status endpoint): each worker's
//! mode, process id, state and running task with its age (`worker_info`), the last failures with
//! their errors (`recent_failures`), failures by kind and workers replaced (`stats`). This target
//! has its own `main` (`harness = false`): its process pools re-execute it.

mod common;
use common::{bounded, children, eventually, Gate, Square};

use std::time::Duration;

use circuits::prelude::*;
use circuits::{TaskId, WorkerMode, WorkerState};
use serde::{Deserialize, Serialize};

/// Aborts its worker process.
#[derive(Serialize, Deserialize)]
struct Abort;
impl Job for Abort {
    const NAME: &'static str = "abort";
    type Output = ();
    fn run(self) {
        std::process::abort()
    }
}

/// Waits in its worker process until its time is up.
#[derive(Serialize, Deserialize)]
struct Sleep(u64);
impl Job for Sleep {
    const NAME: &'static str = "sleep";
    type Output = u64;
    fn run(self) -> u64 {
        std::thread::sleep(Duration::from_millis(self.0));
        self.0
    }
}

async fn a_thread_worker_shows_its_running_task_and_how_long_it_has_run() {
    let pool = Pool::builder().min(2).track_latency().start();
    let info = pool.worker_info();
    assert_eq!(info.len(), 2);
    for w in &info {
        assert_eq!(
            (w.mode, w.pid, w.state, w.load, w.running, w.task),
            (WorkerMode::Thread, None, WorkerState::Idle, 0, 0, None),
            "{w:?}"
        );
    }
    assert_eq!(
        pool.workers(),
        info.iter().map(|w| w.channel.clone()).collect::<Vec<_>>()
    );

    // Fired at a worker: a task the strategy placed could be taken by the other worker while
    // the first sleeps, and stay counted on the first's load.
    let gate = Gate::new();
    let (task, started) = gate.task_started(7u32);
    let value = pool.push_to(&pool.workers()[0], task).unwrap();
    bounded(started).await.unwrap();
    let busy: Vec<_> = pool
        .worker_info()
        .into_iter()
        .filter(|w| w.state == WorkerState::Busy)
        .collect();
    assert_eq!(busy.len(), 1, "{busy:?}");
    assert_eq!((busy[0].running, busy[0].load), (1, 1));
    assert_eq!(busy[0].task, Some(TaskId(1)));
    let first = busy[0]
        .running_for
        .expect("a pool that tracks latency knows");
    // Its age grows while it runs (await a later reading rather than sleep a set time).
    assert!(
        eventually(30, || {
            pool.worker_info()
                .iter()
                .any(|w| w.running_for.is_some_and(|d| d > first))
        })
        .await
    );
    gate.open();
    assert_eq!(bounded(value).await, Ok(7));
    assert!(pool
        .worker_info()
        .iter()
        .all(|w| w.state == WorkerState::Idle && w.task.is_none()));
    pool.stop().await;
}

async fn without_latency_tracking_the_running_task_is_known_but_not_its_age() {
    let pool = Pool::builder().min(1).start();
    let gate = Gate::new();
    let (task, started) = gate.task_started(());
    let value = pool.push(task).unwrap();
    bounded(started).await.unwrap();
    let w = &pool.worker_info()[0];
    assert_eq!(
        (w.state, w.task, w.running_for),
        (WorkerState::Busy, Some(TaskId(1)), None)
    );
    gate.open();
    bounded(value).await.unwrap();
    pool.stop().await;
}

async fn failures_are_kept_with_their_text_and_counted_by_kind() {
    let pool = Pool::builder().min(1).start();
    let _ = pool.run(Task::fallible(|| "x".parse::<u32>())).await;
    // Raised without the panic hook, so the output shows no backtrace of an expected panic.
    let boom = || -> u32 { std::panic::resume_unwind(Box::new("<b>boom</b>")) };
    let _ = pool.run(Task::new(boom)).await;
    assert_eq!(pool.run(Task::new(|| 1)).await, Ok(1));
    let stats = pool.stats();
    assert_eq!(stats.failed, 2);
    assert_eq!(
        stats.failed_by.into_iter().collect::<Vec<_>>(),
        vec![("failed", 1), ("panicked", 1)]
    );
    let last = pool.recent_failures();
    assert_eq!(last.len(), 2);
    assert_eq!(
        (last[0].id, last[0].seq, last[0].error.kind()),
        (TaskId(1), 1, "failed")
    );
    assert_eq!(last[1].error, TaskError::Panicked("<b>boom</b>".into()));
    assert_eq!(
        (last[1].id, last[1].seq, last[1].attempt),
        (TaskId(2), 2, 1)
    );
    assert_eq!(stats.restarted, 0);
    pool.stop().await;
}

async fn a_process_worker_shows_its_pid_and_a_crash_counts_a_restart() {
    let pool = Pool::builder().min(1).process().start();
    // The child is up once it answered a job.
    assert_eq!(pool.run(Task::job(Square(3))).await, Ok(9));
    let before = pool.worker_info().remove(0);
    assert_eq!(before.mode, WorkerMode::Process);
    assert_eq!(before.state, WorkerState::Idle, "{before:?}");
    let pid = before.pid.expect("a live child has a pid");
    assert!(
        children().contains(&pid),
        "{pid} is not one of {:?}",
        children()
    );

    // A job that runs: the worker is busy with it, and the parent knows since when.
    let sleeping = pool.push(Task::job(Sleep(300))).unwrap();
    assert!(
        eventually(30, || pool.worker_info()[0].state == WorkerState::Busy).await,
        "{:?}",
        pool.worker_info()
    );
    let busy = pool.worker_info().remove(0);
    assert_eq!(busy.task, Some(TaskId(2)));
    assert!(busy.running_for.is_some(), "{busy:?}");
    assert_eq!(bounded(sleeping).await, Ok(300));

    // A crash: that task fails, the child is replaced under a new pid, and it counts.
    let crashed = pool.run(Task::job(Abort)).await;
    assert!(matches!(
        crashed,
        Err(RunError::Task(TaskError::WorkerCrashed { .. }))
    ));
    assert_eq!(pool.run(Task::job(Square(4))).await, Ok(16));
    let after = pool.worker_info().remove(0);
    assert!(after.pid.is_some_and(|p| p != pid), "{after:?}, was {pid}");
    assert_ne!(after.channel, before.channel);
    let stats = pool.stats();
    assert_eq!(stats.restarted, 1);
    assert_eq!(stats.failed_by.get("worker_crashed"), Some(&1));
    let last = pool.recent_failures();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].worker, before.channel);
    assert!(
        last[0].error.to_string().contains("died"),
        "{}",
        last[0].error
    );
    pool.stop().await;
}

fn main() {
    circuits::init(
        Jobs::new()
            .register::<Square>()
            .register::<Abort>()
            .register::<Sleep>(),
    );
    common::run_main(
        "observe",
        common::async_tests![
            a_thread_worker_shows_its_running_task_and_how_long_it_has_run,
            without_latency_tracking_the_running_task_is_known_but_not_its_age,
            failures_are_kept_with_their_text_and_counted_by_kind,
            a_process_worker_shows_its_pid_and_a_crash_counts_a_restart,
        ],
        vec![],
    );
}
