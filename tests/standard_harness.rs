//! Process pools under the standard test harness (`#[test]`, `#[actix_rt::test]`), where libtest
//! owns `main`: the worker processes run this test binary again with arguments that select the
//! one test that calls `circuits::init` (`ProcessConfig::program_args`), as the guide shows
//! users. Also the worker program of `ProcessConfig::program`: the one the children run, one
//! that cannot be started, and arguments that never reach `circuits::init`, each named in the
//! failure.

mod common;
use common::{bounded, Pid, Square};

use std::time::Duration;

use circuits::prelude::*;
use circuits::{ProcessConfig, StartStage};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// Answers the worker process's arguments (the program as it was named, then the rest).
#[derive(Serialize, Deserialize)]
struct Args;

impl Job for Args {
    const NAME: &'static str = "args";
    type Output = Vec<String>;
    fn run(self) -> Vec<String> {
        std::env::args().collect()
    }
}

/// Answers the name of the thread that runs the job.
#[derive(Serialize, Deserialize)]
struct ThreadName;

impl Job for ThreadName {
    const NAME: &'static str = "thread-name";
    type Output = Option<String>;
    fn run(self) -> Option<String> {
        std::thread::current().name().map(String::from)
    }
}

/// What the worker processes run: `init` serves the jobs there and never returns. In the test
/// run itself (not a worker process) it returns at once, and this test passes.
#[test]
fn worker_process() {
    circuits::init(
        Jobs::new()
            .register::<Square>()
            .register::<Pid>()
            .register::<Args>()
            .register::<ThreadName>(),
    );
}

/// The arguments that make this test binary run only `worker_process`.
const ARGS: [&str; 3] = ["worker_process", "--exact", "--nocapture"];

/// A process pool whose children are this test binary, running only `worker_process`.
fn config() -> ProcessConfig {
    ProcessConfig::default().program_args(ARGS)
}

/// `config` for children that fail their start: tried again after 1 ms, at most 10 ms apart.
fn failing(config: ProcessConfig) -> ProcessConfig {
    config.restart_backoff(Duration::from_millis(1), Duration::from_millis(10))
}

/// Runs `task` and returns how its worker failed to start (the test fails otherwise).
async fn start_failure(pool: &PoolHandle) -> (StartStage, String) {
    match bounded(pool.run(Task::job(Square(2)))).await {
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
    let args = pool
        .run(Task::job(Args))
        .await
        .expect("a worker process answers");
    assert_eq!(args[1..], ARGS, "the children got the arguments");
    // `init` was called on the harness's thread for the test (named after it), and serves on a
    // thread of its own, with a main thread's stack.
    let thread = pool.run(Task::job(ThreadName)).await;
    assert_eq!(thread, Ok(Some("circuits-serve".to_string())));
    let squares: Vec<_> = pool.map((0..1_000u64).map(Square)).unwrap().collect().await;
    assert_eq!(squares.len(), 1_000);
    assert!(squares
        .iter()
        .enumerate()
        .all(|(i, s)| *s == Ok(i as u64 * i as u64)));
    pool.stop().await;
}

#[actix_rt::test]
async fn a_program_named_explicitly_is_the_one_the_children_run() {
    // This test binary under another name: the children's first argument is the name they
    // were started by.
    let me = std::env::current_exe().expect("this test binary's path");
    let dir = std::env::temp_dir().join(format!("circuits-program-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let link = dir.join("worker");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&me, &link).expect("a link to this test binary");
    let pool = Pool::builder()
        .min(1)
        .process_with(config().program(&link))
        .start();
    assert_eq!(pool.run(Task::job(Square(9))).await, Ok(81));
    let args = pool
        .run(Task::job(Args))
        .await
        .expect("a worker process answers");
    assert_eq!(args[0], link.display().to_string());
    assert_eq!(args[1..], ARGS);
    pool.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn a_program_that_cannot_be_started_fails_its_tasks_naming_it() {
    let missing = "/nonexistent/circuits-worker";
    let pool = Pool::builder()
        .min(1)
        .process_with(failing(ProcessConfig::default().program(missing)))
        .start();
    let (stage, reason) = start_failure(&pool).await;
    assert_eq!(stage, StartStage::Spawn);
    assert!(reason.contains(missing), "{reason}");
    pool.abort().await;
}

#[actix_rt::test]
async fn arguments_that_name_no_test_fail_at_the_handshake_naming_them() {
    // The harness finds no such test, prints "running 0 tests" and exits 0: what a program
    // without `circuits::init` looks like from the pool.
    let me = std::env::current_exe().expect("this test binary's path");
    let config = ProcessConfig::default()
        .program(&me)
        .program_args(["--exact", "no_such_test"]);
    let config = failing(config);
    let pool = Pool::builder().min(1).process_with(config).start();
    let (stage, reason) = start_failure(&pool).await;
    assert_eq!(stage, StartStage::Handshake);
    assert!(
        reason.contains(&me.display().to_string())
            && reason.contains("no_such_test")
            && reason.contains("circuits::init()"),
        "{reason}"
    );
    pool.abort().await;
}

#[actix_rt::test]
async fn a_harness_child_whose_frames_go_through_its_stdout_fails_saying_so() {
    // Without the shared-memory rings the child's stdout carries the frames, and the harness
    // writes "running 1 test" there before `circuits::init` runs.
    let config = failing(config().shared_memory(0));
    let pool = Pool::builder().min(1).process_with(config).start();
    let (stage, reason) = start_failure(&pool).await;
    assert_eq!(stage, StartStage::Handshake);
    assert!(reason.contains("went through its stdout"), "{reason}");
    pool.abort().await;
}
