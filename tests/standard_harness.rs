//! Process pools under the standard test harness (`#[test]`, `#[actix_rt::test]`), where libtest
//! owns `main`: the worker processes run this test binary again with arguments that select the
//! one test that calls `circuits::init` (`ProcessConfig::program_args`), as the guide shows
//! users. Also the worker program of `ProcessConfig::program`: one that cannot be started, and
//! one that never calls `circuits::init`, each named in the failure.

use std::time::Duration;

use circuits::prelude::*;
use circuits::{ProcessConfig, StartStage};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Square(u64);

impl Job for Square {
    const NAME: &'static str = "square";
    type Output = u64;
    fn run(self) -> u64 {
        self.0 * self.0
    }
}

/// Answers the process it runs in.
#[derive(Serialize, Deserialize)]
struct Pid;

impl Job for Pid {
    const NAME: &'static str = "pid";
    type Output = u32;
    fn run(self) -> u32 {
        std::process::id()
    }
}

/// What the worker processes run: `init` serves the jobs there and never returns. In the test
/// run itself (not a worker process) it returns at once, and this test passes.
#[test]
fn worker_process() {
    circuits::init(Jobs::new().register::<Square>().register::<Pid>());
}

/// A process pool whose children are this test binary, running only `worker_process`.
fn config() -> ProcessConfig {
    ProcessConfig::default().program_args(["worker_process", "--exact", "--nocapture"])
}

/// Fails fast: starts retried after 1 ms, at most 10 ms apart.
fn failing(program: &str) -> ProcessConfig {
    ProcessConfig::default()
        .program(program)
        .restart_backoff(Duration::from_millis(1), Duration::from_millis(10))
}

/// Runs `task` and returns how its worker failed to start (the test fails otherwise).
async fn start_failure(pool: &PoolHandle) -> (StartStage, String) {
    let outcome = tokio::time::timeout(Duration::from_secs(60), pool.run(Task::job(Square(2))))
        .await
        .expect("the task ends within a minute");
    match outcome {
        Err(RunError::Task(TaskError::WorkerStartFailed { stage, reason, .. })) => (stage, reason),
        other => panic!("expected a failed start, got {other:?}"),
    }
}

#[actix_rt::test]
async fn jobs_run_in_worker_processes_that_are_the_test_binary() {
    let pool = Pool::builder().min(2).process_with(config()).start();
    assert_eq!(pool.run(Task::job(Square(12))).await, Ok(144));
    let pid = pool
        .run(Task::job(Pid))
        .await
        .expect("a worker process answers");
    assert_ne!(pid, std::process::id(), "the job ran in a child process");
    let squares: Vec<_> = pool.map((0..1_000u64).map(Square)).unwrap().collect().await;
    assert_eq!(squares.len(), 1_000);
    assert!(squares
        .iter()
        .enumerate()
        .all(|(i, s)| *s == Ok(i as u64 * i as u64)));
    pool.stop().await;
}

#[actix_rt::test]
async fn a_program_named_explicitly_runs_the_jobs() {
    let me = std::env::current_exe().expect("this test binary's path");
    let pool = Pool::builder()
        .min(1)
        .process_with(config().program(&me))
        .start();
    assert_eq!(pool.run(Task::job(Square(9))).await, Ok(81));
    pool.stop().await;
}

#[actix_rt::test]
async fn a_program_that_cannot_be_started_fails_its_tasks_naming_it() {
    let missing = "/nonexistent/circuits-worker";
    let pool = Pool::builder()
        .min(1)
        .process_with(failing(missing))
        .start();
    let (stage, reason) = start_failure(&pool).await;
    assert_eq!(stage, StartStage::Spawn);
    assert!(reason.contains(missing), "{reason}");
    pool.abort().await;
}

#[actix_rt::test]
async fn a_program_that_never_calls_init_fails_at_its_handshake_naming_it() {
    // Starts, prints nothing and exits 0: what a binary without `circuits::init` looks like
    // from the pool, minus running its `main` again.
    let program = "/bin/true";
    let pool = Pool::builder()
        .min(1)
        .process_with(failing(program))
        .start();
    let (stage, reason) = start_failure(&pool).await;
    assert_eq!(stage, StartStage::Handshake);
    assert!(
        reason.contains("the program /bin/true") && reason.contains("circuits::init()"),
        "{reason}"
    );
    pool.abort().await;
}
