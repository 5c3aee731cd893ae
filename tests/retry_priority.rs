//! Retries and priorities (issue #19), in thread and process mode: a retried task keeps its id
//! and value and fires exactly one terminal event carrying its attempt number; a stop ends the
//! retries; a worker takes `High` before `Normal` before `Low` without starving any lane. Its own
//! `main` (`harness = false`): process-mode tests need `circuits::init` first.

mod common;
use common::{bounded, listen, Crash, Gate, Listener};

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use circuits::prelude::*;
use circuits::{ProcessConfig, TaskOutput, WorkerRestarted};
use serde::{Deserialize, Serialize};

/// Crashes its child (abort) the first time it runs, answers its pid the next: the first run
/// leaves a marker file behind.
#[derive(Serialize, Deserialize)]
struct CrashOnce(PathBuf);
impl Job for CrashOnce {
    const NAME: &'static str = "crash-once";
    type Output = u32;
    fn run(self) -> u32 {
        if std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.0)
            .is_ok()
        {
            std::process::abort();
        }
        std::process::id()
    }
}

/// Hangs the first time it runs (until its timeout kills the child), answers 7 the next.
#[derive(Serialize, Deserialize)]
struct HangOnce(PathBuf);
impl Job for HangOnce {
    const NAME: &'static str = "hang-once";
    type Output = u32;
    fn run(self) -> u32 {
        if std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.0)
            .is_ok()
        {
            loop {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        7
    }
}

/// Panics until it has run `fails + 1` times in this process (counted in a static: thread mode).
#[derive(Serialize, Deserialize)]
struct PanicTimes(u32);
static PANIC_RUNS: AtomicU32 = AtomicU32::new(0);
impl Job for PanicTimes {
    const NAME: &'static str = "panic-times";
    type Output = u32;
    fn run(self) -> u32 {
        let run = PANIC_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
        if run <= self.0 {
            std::panic::resume_unwind(Box::new(format!("run {run} fails")));
        }
        run
    }
}

/// Waits until its file exists (a gate for process mode: the test creates it), answers `n`.
#[derive(Serialize, Deserialize)]
struct WaitFor(PathBuf, u32);
impl Job for WaitFor {
    const NAME: &'static str = "wait-for";
    type Output = u32;
    fn run(self) -> u32 {
        while !self.0.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.1
    }
}

/// Appends its number to a file (the run order, as the child saw it) and answers it.
#[derive(Serialize, Deserialize)]
struct Log(PathBuf, u32);
impl Job for Log {
    const NAME: &'static str = "log";
    type Output = u32;
    fn run(self) -> u32 {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.0)
            .expect("the log opens");
        writeln!(f, "{}", self.1).expect("the log is written");
        self.1
    }
}

fn jobs() -> Jobs {
    Jobs::new()
        .register::<CrashOnce>()
        .register::<Crash>()
        .register::<HangOnce>()
        .register::<PanicTimes>()
        .register::<WaitFor>()
        .register::<Log>()
}

fn quick(attempts: u32) -> Retry {
    Retry::attempts(attempts).backoff(Duration::from_millis(1), Duration::from_millis(5))
}

/// A temporary path, unique to this process and `name` (removed by the test).
fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("circuits-{}-{name}", std::process::id()))
}

/// The terminal and completion events of one task, with their attempt numbers, once it
/// completed: `(successes, failures, completions)`.
struct Outcomes<R> {
    ok: Listener<TaskSuccess<R>>,
    failed: Listener<TaskFailure>,
    done: Listener<TaskComplete>,
}

fn outcomes<R: TaskOutput>(pool: &PoolHandle) -> Outcomes<R> {
    Outcomes {
        ok: listen(pool.bus(), pool.channel()),
        failed: listen(pool.bus(), pool.channel()),
        done: listen(pool.bus(), pool.channel()),
    }
}

impl<R: TaskOutput> Outcomes<R> {
    /// Waits for `n` completions, then returns every event seen (the terminal event of a task is
    /// fired before its completion, so each is in by then).
    async fn after(
        &mut self,
        n: usize,
    ) -> (Vec<TaskSuccess<R>>, Vec<TaskFailure>, Vec<TaskComplete>) {
        let mut done = Vec::new();
        for _ in 0..n {
            done.push(self.done.next().await);
        }
        let mut ok = Vec::new();
        while let Ok(e) = self.ok.try_next() {
            ok.push(e);
        }
        let mut failed = Vec::new();
        while let Ok(e) = self.failed.try_next() {
            failed.push(e);
        }
        (ok, failed, done)
    }
}

// ---------------------------------------------------------------------------------------------
// Retries
// ---------------------------------------------------------------------------------------------

async fn a_repeatable_closure_retries_and_fires_one_success_with_its_attempt() {
    let pool = Pool::builder().min(2).start();
    let mut seen = outcomes::<u32>(&pool);
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let task = Task::repeatable(move || match r.fetch_add(1, Ordering::SeqCst) + 1 {
        n @ (1 | 2) => Err(format!("run {n}: not yet")),
        n => Ok(n),
    })
    .retry(quick(5).when(|e| matches!(e, TaskError::Failed(_))));
    let value = pool.push(task).unwrap();
    assert_eq!(bounded(value).await, Ok(3), "the third run succeeded");
    let (ok, failed, done) = seen.after(1).await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert_eq!(ok.len(), 1, "one success event");
    assert!(
        failed.is_empty(),
        "no failure event for the failed attempts"
    );
    assert_eq!((ok[0].attempt, done[0].attempt, done[0].ok), (3, 3, true));
    assert_eq!(ok[0].id, done[0].id, "the same task throughout");
    let stats = pool.stats();
    assert_eq!(
        (stats.done, stats.failed),
        (1, 0),
        "counted once, as a success"
    );
    bounded(pool.stop()).await;
}

async fn retries_end_after_the_last_attempt_with_one_failure() {
    let pool = Pool::builder()
        .min(1)
        .retry(quick(3).when(|e| matches!(e, TaskError::Failed(_))))
        .start();
    let mut seen = outcomes::<u32>(&pool);
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let always = Task::repeatable(move || {
        r.fetch_add(1, Ordering::SeqCst);
        Err::<u32, _>("down")
    });
    let value = pool.push(always).unwrap();
    assert_eq!(bounded(value).await, Err(TaskError::Failed("down".into())));
    let (ok, failed, done) = seen.after(1).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "the pool's default policy: 3 runs"
    );
    assert!(ok.is_empty());
    assert_eq!(failed.len(), 1, "one failure event, after the last attempt");
    assert_eq!((failed[0].attempt, done[0].attempt), (3, 3));
    // A task made with `Task::fallible` is FnOnce: the policy does not apply to it.
    let once = Arc::new(AtomicU32::new(0));
    let o = once.clone();
    let fallible = Task::fallible(move || {
        o.fetch_add(1, Ordering::SeqCst);
        Err::<u32, _>("once")
    });
    assert!(bounded(pool.push(fallible).unwrap()).await.is_err());
    let (_, failed, _) = seen.after(1).await;
    assert_eq!((once.load(Ordering::SeqCst), failed[0].attempt), (1, 1));
    bounded(pool.stop()).await;
}

async fn a_job_is_retried_in_a_thread_pool_from_its_encoded_input() {
    PANIC_RUNS.store(0, Ordering::SeqCst);
    let pool = Pool::builder()
        .min(1)
        .retry(quick(4).when(|e| matches!(e, TaskError::Panicked(_))))
        .start();
    let mut seen = outcomes::<u32>(&pool);
    assert_eq!(bounded(pool.run(Task::job(PanicTimes(2)))).await, Ok(3));
    let (ok, _, _) = seen.after(1).await;
    assert_eq!(ok[0].attempt, 3);
    // The default policy does not retry a panic.
    PANIC_RUNS.store(0, Ordering::SeqCst);
    let plain = Task::job(PanicTimes(1)).retry(quick(4));
    let err = bounded(pool.run(plain)).await.unwrap_err();
    assert!(
        matches!(err.task_error(), Some(TaskError::Panicked(_))),
        "{err:?}"
    );
    bounded(pool.stop()).await;
}

async fn a_crashed_child_s_job_runs_again_on_the_replacement() {
    let marker = temp("crash-once");
    let _ = std::fs::remove_file(&marker);
    // Crashes are transient by default.
    let pool = Pool::builder().min(1).process().retry(quick(2)).start();
    let mut seen = outcomes::<u32>(&pool);
    let mut restarts: Listener<WorkerRestarted> = listen(pool.bus(), pool.channel());
    let pid = bounded(pool.run(Task::job(CrashOnce(marker.clone())))).await;
    let pid = pid.expect("the second attempt, on a new child, succeeds");
    let restart = restarts.next().await;
    assert!(restart.reason.contains("SIGABRT"), "{restart:?}");
    let (ok, failed, done) = seen.after(1).await;
    assert!(failed.is_empty());
    assert_eq!((ok.len(), ok[0].attempt, done[0].attempt), (1, 2, 2));
    assert_eq!(ok[0].value, pid);
    // A job that crashes every child fails after its last attempt, with the crash.
    let err = bounded(pool.run(Task::job(Crash))).await.unwrap_err();
    assert!(
        matches!(err.task_error(), Some(TaskError::WorkerCrashed { .. })),
        "{err:?}"
    );
    let (_, failed, _) = seen.after(1).await;
    assert_eq!(failed[0].attempt, 2);
    bounded(pool.stop()).await;
    let _ = std::fs::remove_file(&marker);
}

async fn a_timed_out_job_runs_again_in_process_mode_but_a_thread_closure_does_not() {
    let marker = temp("hang-once");
    let _ = std::fs::remove_file(&marker);
    let pool = Pool::builder().min(1).process().retry(quick(3)).start();
    let mut seen = outcomes::<u32>(&pool);
    let task = Task::job(HangOnce(marker.clone())).timeout(Duration::from_millis(500));
    assert_eq!(
        bounded(pool.run(task)).await,
        Ok(7),
        "the child was killed, the job ran again"
    );
    let (ok, failed, _) = seen.after(1).await;
    assert!(failed.is_empty());
    assert_eq!(ok[0].attempt, 2);
    bounded(pool.stop()).await;
    let _ = std::fs::remove_file(&marker);

    // A thread cannot be stopped: the first attempt still runs, so a timeout is final there.
    let pool = Pool::builder().min(1).start();
    let mut seen = outcomes::<u32>(&pool);
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let runs = Arc::new(AtomicU32::new(0));
    let (g, r) = (gate.clone(), runs.clone());
    let blocked = Task::repeatable(move || {
        r.fetch_add(1, Ordering::SeqCst);
        let (open, cv) = &*g;
        drop(cv.wait_while(open.lock().unwrap(), |open| !*open).unwrap());
        Ok::<_, String>(0u32)
    })
    .timeout(Duration::from_millis(50))
    .retry(quick(3).when(|_| true));
    assert_eq!(
        bounded(pool.push(blocked).unwrap()).await,
        Err(TaskError::TimedOut(Duration::from_millis(50)))
    );
    let (_, failed, done) = seen.after(1).await;
    assert_eq!((failed[0].attempt, done[0].attempt), (1, 1));
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    // The one thread ran the first attempt to its end before this task.
    assert_eq!(bounded(pool.run(Task::new(|| 1u8))).await, Ok(1));
    assert_eq!((runs.load(Ordering::SeqCst), pool.stats().retried), (1, 0));
    bounded(pool.stop()).await;
}

async fn a_stop_ends_the_retries_of_a_task_waiting_for_its_next_attempt() {
    // A back-off far longer than the test's bound: only the stop can end the wait.
    let long = Retry::attempts(5)
        .backoff(Duration::from_secs(3600), Duration::from_secs(3600))
        .when(|e| matches!(e, TaskError::Failed(_)));
    let pool = Pool::builder().min(1).retry(long.clone()).start();
    let mut seen = outcomes::<u32>(&pool);
    let value = pool
        .push(Task::repeatable(|| Err::<u32, _>("first attempt")))
        .unwrap();
    // The failure of the first attempt is not settled: the task waits for its second.
    assert!(common::eventually(60, || pool.stats().retrying == 1).await);
    let stats = pool.stats();
    assert_eq!(
        (stats.pushed, stats.retried, stats.done + stats.failed),
        (1, 1, 0)
    );
    bounded(pool.stop()).await;
    assert_eq!(
        bounded(value).await,
        Err(TaskError::Failed("first attempt".into())),
        "a draining stop fails it with its last error"
    );
    let (_, failed, done) = seen.after(1).await;
    assert_eq!((failed.len(), failed[0].attempt, done[0].ok), (1, 1, false));

    // An abort cancels it.
    let pool = Pool::builder().min(1).retry(long).start();
    let value = pool
        .push(Task::repeatable(|| Err::<u32, _>("first attempt")))
        .unwrap();
    assert!(bounded(pool.run(Task::new(|| 1u32))).await.is_ok());
    bounded(pool.abort()).await;
    assert_eq!(bounded(value).await, Err(TaskError::Cancelled));
}

// ---------------------------------------------------------------------------------------------
// Priorities
// ---------------------------------------------------------------------------------------------

/// Where each lane's tasks ended in the order of runs: the positions of each priority.
fn positions(order: &[Priority], p: Priority) -> Vec<usize> {
    order
        .iter()
        .enumerate()
        .filter(|(_, &q)| q == p)
        .map(|(i, _)| i)
        .collect()
}

/// Checks the lane rule on a run order of 30 tasks per lane queued behind a gate.
fn check_lane_order(order: &[Priority]) {
    assert_eq!(order.len(), 90);
    let (high, normal, low) = (
        positions(order, Priority::High),
        positions(order, Priority::Normal),
        positions(order, Priority::Low),
    );
    assert_eq!(order[0], Priority::High, "{order:?}");
    assert!(
        high.last() < normal.last() && normal.last() < low.last(),
        "{order:?}"
    );
    // No lane starves: among the first 32 runs, while `High` is full, every 4th is `Normal` or
    // `Low`, and `Low` has had its turn.
    let first = &order[..32];
    assert!(
        first.iter().filter(|&&p| p == Priority::High).count() >= 24,
        "{order:?}"
    );
    assert!(
        first.contains(&Priority::Normal) && first.contains(&Priority::Low),
        "{order:?}"
    );
    assert!(low[0] < 16, "{order:?}");
}

async fn a_thread_worker_takes_higher_lanes_first_without_starving_the_low_one() {
    let pool = Pool::builder().min(1).start();
    let gate = Gate::new();
    let (blocker, started) = gate.task_started(0u32);
    let blocker = pool.push(blocker).unwrap();
    bounded(started).await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut values = Vec::new();
    for p in [Priority::Low, Priority::Normal, Priority::High] {
        for _ in 0..30 {
            let o = order.clone();
            let t = Task::new(move || o.lock().unwrap().push(p)).priority(p);
            values.push(pool.push(t).unwrap());
        }
    }
    gate.open();
    bounded(blocker).await.unwrap();
    for v in values {
        bounded(v).await.unwrap();
    }
    check_lane_order(&order.lock().unwrap());
    bounded(pool.stop()).await;
}

async fn an_idle_thread_worker_steals_the_highest_lane_first() {
    // Two workers, each blocked on its own gate; round robin gives each 2 tasks per lane.
    let pool = Pool::builder().min(2).strategy(RoundRobin::new()).start();
    let (first, second) = (Gate::new(), Gate::new());
    let (a, a_started) = first.task_started(0u32);
    let a = pool.push(a).unwrap();
    bounded(a_started).await.unwrap();
    let (b, b_started) = second.task_started(0u32);
    let b = pool.push(b).unwrap();
    bounded(b_started).await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut values = Vec::new();
    for p in [Priority::Low, Priority::Normal, Priority::High] {
        for _ in 0..4 {
            let o = order.clone();
            let t = Task::new(move || o.lock().unwrap().push(p)).priority(p);
            values.push(pool.push(t).unwrap());
        }
    }
    // The freed worker runs its own six by lanes, then steals the blocked one's six: its
    // highest lane first.
    second.open();
    bounded(b).await.unwrap();
    for v in values {
        bounded(v).await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(order[0], Priority::High, "{order:?}");
    use Priority::{High, Low, Normal};
    assert_eq!(
        &order[6..],
        &[High, High, Normal, Normal, Low, Low],
        "{order:?}"
    );
    first.open();
    bounded(a).await.unwrap();
    bounded(pool.stop()).await;
}

async fn a_process_worker_sends_higher_lanes_first() {
    let (open, log) = (temp("priority-gate"), temp("priority-log"));
    let _ = (std::fs::remove_file(&open), std::fs::remove_file(&log));
    // One job in the child at a time: the order of the rest is the host's lanes.
    let cfg = ProcessConfig::default().pipeline(1);
    let pool = Pool::builder().min(1).process_with(cfg).start();
    let blocker = pool.push(Task::job(WaitFor(open.clone(), 0))).unwrap();
    let mut values = Vec::new();
    for (k, p) in [Priority::Low, Priority::Normal, Priority::High]
        .into_iter()
        .enumerate()
    {
        for i in 0..30 {
            let job = Log(log.clone(), k as u32 * 100 + i);
            values.push(pool.push(Task::job(job).priority(p)).unwrap());
        }
    }
    std::fs::write(&open, b"").unwrap();
    assert_eq!(bounded(blocker).await, Ok(0));
    for v in values {
        bounded(v).await.unwrap();
    }
    let lane = |n: u32| match n / 100 {
        0 => Priority::Low,
        1 => Priority::Normal,
        _ => Priority::High,
    };
    let text = std::fs::read_to_string(&log).unwrap();
    let order: Vec<_> = text.lines().map(|l| lane(l.parse().unwrap())).collect();
    check_lane_order(&order);
    bounded(pool.stop()).await;
    let _ = (std::fs::remove_file(&open), std::fs::remove_file(&log));
}

fn main() {
    circuits::init(jobs()); // worker processes serve jobs here and never return
    common::run_main(
        "retry_priority",
        common::async_tests![
            a_repeatable_closure_retries_and_fires_one_success_with_its_attempt,
            retries_end_after_the_last_attempt_with_one_failure,
            a_job_is_retried_in_a_thread_pool_from_its_encoded_input,
            a_crashed_child_s_job_runs_again_on_the_replacement,
            a_timed_out_job_runs_again_in_process_mode_but_a_thread_closure_does_not,
            a_stop_ends_the_retries_of_a_task_waiting_for_its_next_attempt,
            a_thread_worker_takes_higher_lanes_first_without_starving_the_low_one,
            an_idle_thread_worker_steals_the_highest_lane_first,
            a_process_worker_sends_higher_lanes_first,
        ],
        common::sync_tests![],
    );
}
