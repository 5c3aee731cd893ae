//! Process mode's per-worker state (`Jobs::worker_state`, `circuits::with_worker_state`): each
//! child sets its state up once, before its handshake, and every job it runs sees it; a failing
//! set-up is a failed start whose reason reaches the parent, under the bounded restart policy.
//! Own `main` (`harness = false`): worker processes are this binary re-executed, and the set-up
//! is in the jobs given to `circuits::init`.

mod common;

use common::{bounded, wait_for_no_children};

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use circuits::prelude::*;
use circuits::{ProcessConfig, StartStage};
use serde::{Deserialize, Serialize};

/// Set while a test wants each set-up to append its process id to this file (one line per set-up).
const LOG_ENV: &str = "STATE_TEST_LOG";
/// Set while a test wants the set-ups to fail, with this text in their error.
const FAIL_ENV: &str = "STATE_TEST_FAIL";

/// Set-ups run in this process so far.
static SETUPS_HERE: AtomicUsize = AtomicUsize::new(0);

/// The per-process state: the process that set it up, which of its set-ups this is, its uses.
struct Proc {
    pid: u32,
    setup: usize,
    uses: u64,
}

fn set_up() -> Result<Proc, String> {
    if let Some(path) = std::env::var_os(LOG_ENV) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| e.to_string())?;
        // One short write to an O_APPEND file: lines of racing children do not mix.
        f.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(|e| e.to_string())?;
    }
    if let Ok(why) = std::env::var(FAIL_ENV) {
        return Err(format!("model file missing: {why}"));
    }
    Ok(Proc {
        pid: std::process::id(),
        setup: SETUPS_HERE.fetch_add(1, Ordering::SeqCst) + 1,
        uses: 0,
    })
}

/// Answers (this process, the state's process, which set-up of this process made the state, the
/// state's uses so far).
#[derive(Serialize, Deserialize)]
struct WhoAmI;
impl Job for WhoAmI {
    const NAME: &'static str = "who-am-i";
    type Output = (u32, u32, usize, u64);
    fn run(self) -> Self::Output {
        circuits::with_worker_state(|p: &mut Proc| {
            p.uses += 1;
            (std::process::id(), p.pid, p.setup, p.uses)
        })
    }
}

/// A state type no set-up makes.
struct NotSetUp;

/// Asks for the state nobody set up.
#[derive(Serialize, Deserialize)]
struct AskMissing;
impl Job for AskMissing {
    const NAME: &'static str = "ask-missing";
    type Output = ();
    fn run(self) {
        circuits::with_worker_state(|_: &mut NotSetUp| ())
    }
}

fn jobs() -> Jobs {
    Jobs::new()
        .register::<WhoAmI>()
        .register::<AskMissing>()
        .worker_state(set_up)
}

/// Sets environment variables for the length of a test (the children inherit them); removes them
/// when dropped, even when the test panics.
struct EnvVars(Vec<&'static str>);
impl EnvVars {
    fn set(vars: &[(&'static str, &std::ffi::OsStr)]) -> Self {
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        EnvVars(vars.iter().map(|(k, _)| *k).collect())
    }
}
impl Drop for EnvVars {
    fn drop(&mut self) {
        for k in &self.0 {
            std::env::remove_var(k);
        }
    }
}

/// A fresh scratch file path for this run and `tag`.
fn scratch(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("circuits-state-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// The pids a set-up log holds, one per set-up.
fn logged(path: &PathBuf) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().expect("a pid per line"))
        .collect()
}

async fn each_child_sets_its_state_up_once_and_its_jobs_see_it() {
    let log = scratch("once");
    let _env = EnvVars::set(&[(LOG_ENV, log.as_os_str())]);
    let pool = Pool::builder().min(2).process().start();
    // One job on each worker, so that both children surely serve; then 300 balanced ones.
    let mut values = Vec::new();
    for w in pool.workers() {
        values.push(pool.push_to(&w, Task::job(WhoAmI)).expect("accepted"));
    }
    for _ in 0..300 {
        values.push(pool.push(Task::job(WhoAmI)).expect("accepted"));
    }
    let mut uses: HashMap<u32, Vec<u64>> = HashMap::new();
    for v in values {
        let (pid, state_pid, setup, n) = bounded(v).await.expect("the job ran");
        assert_eq!(
            pid, state_pid,
            "a job saw a state set up in another process"
        );
        assert_eq!(setup, 1, "child {pid} set its state up more than once");
        uses.entry(pid).or_default().push(n);
    }
    assert_eq!(uses.len(), 2, "both children served: {:?}", uses.keys());
    for (pid, mut counts) in uses.clone() {
        counts.sort_unstable();
        let expected: Vec<u64> = (1..=counts.len() as u64).collect();
        assert_eq!(
            counts, expected,
            "child {pid}'s state was replaced or shared"
        );
    }
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
    // Counted by the children themselves: one set-up per child, each in its own process.
    let mut setups = logged(&log);
    setups.sort_unstable();
    let served: Vec<u32> = uses
        .keys()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(setups, served, "one set-up line per child, and only those");
    let _ = std::fs::remove_file(&log);
}

async fn a_failing_set_up_fails_the_tasks_with_its_reason_after_bounded_tries() {
    let log = scratch("fail");
    let _env = EnvVars::set(&[
        (LOG_ENV, log.as_os_str()),
        (FAIL_ENV, "/models/m.bin".as_ref()),
    ]);
    let config = ProcessConfig::default()
        .restart_backoff(Duration::from_millis(1), Duration::from_millis(50))
        .max_start_failures(3);
    let pool = Pool::builder().min(1).process_with(config).start();
    let failed = bounded(pool.push(Task::job(WhoAmI)).expect("accepted")).await;
    match failed {
        Err(TaskError::WorkerStartFailed { stage, reason, .. }) => {
            assert_eq!(stage, StartStage::WorkerState);
            assert!(
                reason.contains("model file missing: /models/m.bin"),
                "the set-up's own message: {reason}"
            );
            assert!(
                reason.contains("Proc"),
                "the reason names the state: {reason}"
            );
            assert!(
                !reason.contains("circuits::init()"),
                "not mistaken for a missing init: {reason}"
            );
        }
        other => panic!("expected WorkerStartFailed, got {other:?}"),
    }
    let tries = logged(&log);
    assert!(tries.len() >= 3, "it tried up to the limit: {tries:?}");
    assert_eq!(
        tries.iter().collect::<BTreeSet<_>>().len(),
        tries.len(),
        "each try was a new child"
    );
    // Past the limit, a job given to it fails the same way, and the pool stops cleanly.
    let again = bounded(pool.run(Task::job(WhoAmI))).await;
    let text = again.expect_err("no child could run it").to_string();
    assert!(
        text.contains("could not be started (worker state)"),
        "{text}"
    );
    println!("  {text}");
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
    let _ = std::fs::remove_file(&log);
}

async fn a_draining_stop_during_a_failed_start_ends_with_the_waiting_task_failed() {
    let _env = EnvVars::set(&[(FAIL_ENV, "stop test".as_ref())]);
    let config = ProcessConfig::default()
        .restart_backoff(Duration::from_millis(1), Duration::from_millis(50))
        .max_start_failures(3);
    let pool = Pool::builder().min(1).process_with(config).start();
    let waiting = pool.push(Task::job(WhoAmI)).expect("accepted");
    // Stopped at once, before the worker's tries reach the limit: the stop keeps trying to start
    // it for the waiting task, and ends when that task fails.
    bounded(pool.stop()).await;
    match bounded(waiting).await {
        Err(TaskError::WorkerStartFailed { stage, .. }) => {
            assert_eq!(stage, StartStage::WorkerState)
        }
        other => panic!("expected WorkerStartFailed, got {other:?}"),
    }
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

async fn a_job_asking_for_an_absent_state_fails_panicked_naming_the_type() {
    let pool = Pool::builder().min(1).process().start();
    match bounded(pool.run(Task::job(AskMissing))).await {
        Err(RunError::Task(TaskError::Panicked(m))) => {
            assert!(m.contains("no state of type"), "{m}");
            assert!(m.contains("NotSetUp"), "the message names the type: {m}");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    // The child lives on with its state.
    let (pid, state_pid, setup, _) = bounded(pool.run(Task::job(WhoAmI)))
        .await
        .expect("the job ran");
    assert_eq!((pid, setup), (state_pid, 1));
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

fn main() {
    circuits::init(jobs()); // worker processes set up their state and serve jobs here
    common::run_main(
        "pool_process_state",
        common::async_tests![
            each_child_sets_its_state_up_once_and_its_jobs_see_it,
            a_failing_set_up_fails_the_tasks_with_its_reason_after_bounded_tries,
            a_draining_stop_during_a_failed_start_ends_with_the_waiting_task_failed,
            a_job_asking_for_an_absent_state_fails_panicked_naming_the_type,
        ],
        common::sync_tests![],
    );
}
