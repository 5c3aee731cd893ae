//! Lifecycle promises of pools: dropped pools clean up after themselves; a worker process that
//! cannot start backs off and fails its tasks with a named error; `abort` cancels running tasks at
//! once and escalates a draining `stop`; `stop_within` bounds a drain; bounded queues release their
//! permits in time; `map` respects the frame limit and per-job timeouts; a channel takes one pool;
//! a worker's whole process group ends with it; jobs see an ordinary environment; stats agree with
//! outcomes.
//!
//! Own `main` (`harness = false`): worker processes are this binary, re-executed, and some tests
//! make those re-executed copies misbehave before `circuits::init` through environment variables.

mod common;
use common::{Crash, Square};

use common::{
    alive, await_children, bounded, children, ended, eventually, eventually_blocking, grown_to_two,
    listen, retire_second, wait_for_no_children, Gate,
};

use std::io::Write;
use std::panic::catch_unwind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use circuits::prelude::*;
use circuits::{
    Exit, MapStream, PoolError, ProcessConfig, StartStage, TaskOutput, WorkerRestarted,
};
use futures::future::Either;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------------

/// Writes its process id to `mark` (when given), then never returns.
#[derive(Serialize, Deserialize)]
struct Hang {
    mark: Option<String>,
}
impl Job for Hang {
    const NAME: &'static str = "hang";
    type Output = u32;
    fn run(self) -> u32 {
        if let Some(path) = &self.mark {
            write_pid_file(path, std::process::id());
        }
        loop {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Carries bytes; answers how many.
#[derive(Serialize, Deserialize)]
struct Blob(Vec<u8>);
impl Job for Blob {
    const NAME: &'static str = "blob";
    type Output = u32;
    fn run(self) -> u32 {
        self.0.len() as u32
    }
}

/// Sleeps 10 ms, then answers its number.
#[derive(Serialize, Deserialize)]
struct Nap(u32);
impl Job for Nap {
    const NAME: &'static str = "nap";
    type Output = u32;
    fn run(self) -> u32 {
        std::thread::sleep(Duration::from_millis(10));
        self.0
    }
}

/// Starts `sleep 300`, writes its pid to `pid_file`, then hangs (`hang`) or answers the pid.
#[derive(Serialize, Deserialize)]
struct SpawnSleep {
    pid_file: String,
    hang: bool,
}
impl Job for SpawnSleep {
    const NAME: &'static str = "spawn_sleep";
    type Output = u32;
    fn run(self) -> u32 {
        let child = std::process::Command::new("sleep")
            .arg("300")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("`sleep 300` starts");
        let pid = child.id();
        // Not waited for on purpose: what the job started must end with the worker's group.
        drop(child);
        write_pid_file(&self.pid_file, pid);
        if self.hang {
            loop {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        pid
    }
}

/// Forks without exec (the copy keeps the protocol pipes and sleeps 30 s), writes the copy's pid
/// to `pid_file`, then aborts the worker.
#[derive(Serialize, Deserialize)]
struct ForkThenAbort {
    pid_file: String,
}
impl Job for ForkThenAbort {
    const NAME: &'static str = "fork_then_abort";
    type Output = u32;
    fn run(self) -> u32 {
        // SAFETY: the forked copy only sleeps and leaves with `_exit`, running no destructor, no
        // atexit handler and nothing that could need a lock another thread held at the fork.
        let pid = unsafe { libc::fork() };
        match pid {
            0 => {
                std::thread::sleep(Duration::from_secs(30));
                // SAFETY: ends the forked copy at once, as intended.
                unsafe { libc::_exit(0) }
            }
            p if p > 0 => {
                write_pid_file(&self.pid_file, p as u32);
                std::process::abort()
            }
            _ => panic!("fork failed: {}", std::io::Error::last_os_error()),
        }
    }
}

/// The worker-protocol variables still set in the job's environment, and (prefixed with
/// `subprocess:`) in the environment of a subprocess the job starts.
#[derive(Serialize, Deserialize)]
struct WorkerEnv;
impl Job for WorkerEnv {
    const NAME: &'static str = "worker_env";
    type Output = Vec<String>;
    fn run(self) -> Vec<String> {
        const VARS: [&str; 3] = [
            "CIRCUITS_WORKER",
            "CIRCUITS_MAX_FRAME",
            "CIRCUITS_PARENT_PID",
        ];
        let mut set: Vec<String> = VARS
            .into_iter()
            .filter(|v| std::env::var_os(v).is_some())
            .map(String::from)
            .collect();
        let env = std::process::Command::new("env")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("`env` runs");
        let listed = String::from_utf8_lossy(&env.stdout);
        for v in VARS {
            if listed.lines().any(|l| l.starts_with(&format!("{v}="))) {
                set.push(format!("subprocess:{v}"));
            }
        }
        set
    }
}

/// Starts a process pool of its own inside the job and squares its number there.
#[derive(Serialize, Deserialize)]
struct Nested(u64);
impl Job for Nested {
    const NAME: &'static str = "nested";
    type Output = u64;
    fn run(self) -> u64 {
        let n = self.0;
        let r = actix::System::new().block_on(async move {
            let p = Pool::builder().min(1).process().start();
            let r = bounded(p.run(Task::job(Square(n)))).await;
            bounded(p.stop()).await;
            r
        });
        match r {
            Ok(v) => v,
            Err(e) => panic!("the pool inside the job failed its task: {e}"),
        }
    }
}

/// Ignores SIGTERM, writes its process id to `mark`, then never returns.
#[derive(Serialize, Deserialize)]
struct IgnoreTerm {
    mark: String,
}
impl Job for IgnoreTerm {
    const NAME: &'static str = "ignore_term";
    type Output = u32;
    fn run(self) -> u32 {
        // SAFETY: installs SIG_IGN for SIGTERM in this worker process: no handler code runs.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
        write_pid_file(&self.mark, std::process::id());
        loop {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Answers its worker process's id once the file `gate` exists (polling it: the job runs in
/// another process than the test).
#[derive(Serialize, Deserialize)]
struct WaitFor {
    gate: String,
}
impl Job for WaitFor {
    const NAME: &'static str = "wait_for";
    type Output = u32;
    fn run(self) -> u32 {
        while !Path::new(&self.gate).exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::process::id()
    }
}

/// Answers its worker process's id.
#[derive(Serialize, Deserialize)]
struct WhoAmI;
impl Job for WhoAmI {
    const NAME: &'static str = "who_am_i";
    type Output = u32;
    fn run(self) -> u32 {
        std::process::id()
    }
}

fn jobs() -> Jobs {
    Jobs::new()
        .register::<WaitFor>()
        .register::<WhoAmI>()
        .register::<IgnoreTerm>()
        .register::<Square>()
        .register::<Hang>()
        .register::<Blob>()
        .register::<Nap>()
        .register::<SpawnSleep>()
        .register::<ForkThenAbort>()
        .register::<Crash>()
        .register::<WorkerEnv>()
        .register::<Nested>()
}

// ---------------------------------------------------------------------------------------------
// Children that fail before `circuits::init`
// ---------------------------------------------------------------------------------------------

/// Set in the test process while a test wants its worker processes to exit before `init`.
const DIE_EARLY_ENV: &str = "LIFECYCLE_DIE_EARLY";
/// Set while a test wants its worker processes to claim a huge first frame before `init`.
const HUGE_FRAME_ENV: &str = "LIFECYCLE_HUGE_FRAME";
/// The file each misbehaving worker process appends its pid to, one line per start.
const COUNT_ENV: &str = "LIFECYCLE_COUNT";

/// In a worker process, when asked: count this start, then fail it. Runs before `circuits::init`.
fn misbehave_before_init_if_asked() {
    if std::env::var_os(circuits::WORKER_ENV).is_none() {
        return;
    }
    let die_early = std::env::var_os(DIE_EARLY_ENV).is_some();
    let huge_frame = std::env::var_os(HUGE_FRAME_ENV).is_some();
    if !die_early && !huge_frame {
        return;
    }
    if let Some(path) = std::env::var_os(COUNT_ENV) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            // One write of one short line to an O_APPEND file: lines from racing children do not mix.
            let _ = f.write_all(format!("{}\n", std::process::id()).as_bytes());
        }
    }
    if die_early {
        std::process::exit(7);
    }
    // A length prefix of 4 GiB on the protocol output (still fd 1 before `init`), then silence.
    let bytes = [0xffu8; 4];
    // SAFETY: writes a buffer we own to fd 1, which the pool opened for this process.
    unsafe {
        libc::write(1, bytes.as_ptr().cast(), bytes.len());
    }
    std::thread::sleep(Duration::from_secs(30));
    std::process::exit(0);
}

/// Sets environment variables for the length of a test; removes them when dropped, even when the
/// test panics, so that later tests' workers start normally.
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

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The names of this process's threads that start with `circuits-`.
fn circuits_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
                .map(|n| n.trim_end().to_string())
                .filter(|n| n.starts_with("circuits-"))
                .collect()
        })
        .unwrap_or_default()
}

/// The thread ids of this process's threads named `name` (as the kernel keeps it: cut to its
/// first 15 bytes).
fn threads_named(name: &str) -> std::collections::BTreeSet<u32> {
    let name = &name[..name.len().min(15)];
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("comm"))
                        .is_ok_and(|n| n.trim_end() == name)
                })
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A fresh scratch file path for this run and `tag` (nothing there yet).
fn scratch(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("circuits-lifecycle-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Writes `pid` to `path` whole (through a rename), so a reader never sees half of it.
fn write_pid_file(path: &str, pid: u32) {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, pid.to_string()).expect("the pid file is written");
    std::fs::rename(&tmp, path).expect("the pid file is renamed into place");
}

/// The pid a job wrote to `path`, waiting up to 30 s for it to appear (worker start included; the
/// job runs in another process, so the file is polled).
async fn pid_from(path: &Path) -> u32 {
    let read = || {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
    };
    eventually(30, || read().is_some()).await;
    let pid = read().unwrap_or_else(|| panic!("no pid was written to {}", path.display()));
    let _ = std::fs::remove_file(path);
    pid
}

/// How many lines `path` holds (0 when it does not exist).
fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

fn process_pool(n: usize) -> PoolHandle {
    Pool::builder().min(n).process().start()
}

/// Pushes `task`, which the pool must accept (it runs and has room); returns its value.
#[track_caller]
fn accepted<R: TaskOutput>(pool: &PoolHandle, task: Task<R>) -> Value<R, TaskError> {
    pool.push(task)
        .unwrap_or_else(|e| panic!("the pool refused a task it had room for: {e}"))
}

/// The stream of a `map` that a running pool must accept.
#[track_caller]
fn mapped<O>(stream: Result<MapStream<O>, Refusal>) -> MapStream<O> {
    stream.unwrap_or_else(|r| panic!("a running pool refused a map: {r}"))
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

async fn dropped_pools_leave_no_thread_and_no_child() {
    for i in 0..50 {
        let pool = Pool::builder().min(2).start();
        assert_eq!(bounded(pool.run(Task::new(move || i))).await, Ok(i));
        drop(pool);
    }
    for i in 0..10u64 {
        let pool = process_pool(2);
        assert_eq!(bounded(pool.run(Task::job(Square(i)))).await, Ok(i * i));
        drop(pool);
    }
    // Threads and processes that end fire no event: /proc is polled.
    eventually(30, || {
        circuits_threads().is_empty() && children().is_empty()
    })
    .await;
    assert_eq!(
        circuits_threads(),
        Vec::<String>::new(),
        "threads of dropped pools still run"
    );
    assert_eq!(
        children(),
        Vec::<u32>::new(),
        "children of dropped pools still run"
    );
}

/// Starts a process pool whose every child fails its start the way `mode` says, and checks the
/// named error, the back-off, that past the limit only a task makes the worker try again, and
/// that nothing is left after `abort`.
async fn failed_starts_are_bounded(mode: &'static str, tag: &str, expect_init_hint: bool) {
    const LIMIT: usize = 3;
    let count = scratch(tag);
    let one = std::ffi::OsStr::new("1");
    let _env = EnvVars::set(&[(COUNT_ENV, count.as_os_str()), (mode, one)]);
    let mut cfg = ProcessConfig::default()
        .max_start_failures(LIMIT)
        .restart_backoff(Duration::from_millis(10), Duration::from_millis(20));
    if mode == HUGE_FRAME_ENV {
        // The claim goes onto the protocol's pipe: frames must travel through the pipes (with
        // the shared-memory rings, stdout is not the protocol's and the claim goes nowhere).
        cfg = cfg.shared_memory(0);
    }
    let pool = Pool::builder()
        .min(1)
        .process_with(cfg)
        .try_start()
        .expect("the pool starts (its child fails afterwards)");
    let first = bounded(accepted(&pool, Task::job(Square(3)))).await;
    let starts_at_failure = lines_in(&count);
    match &first {
        Err(TaskError::WorkerStartFailed { stage, reason, .. }) => {
            assert_eq!(*stage, StartStage::Handshake, "reason: {reason}");
            if expect_init_hint {
                assert!(
                    reason.contains("circuits::init()"),
                    "the reason {reason:?} should point at circuits::init()"
                );
            }
        }
        other => panic!("expected WorkerStartFailed at the handshake, got {other:?}"),
    }
    assert!(
        starts_at_failure >= LIMIT,
        "the task failed after {starts_at_failure} starts, before the limit of {LIMIT}"
    );
    // Past the limit an idle worker starts no child: at most one in a second in which its
    // back-off (20 ms at most) would allow dozens (the one: if the test pushed its task only
    // after the limit, that task asked for a try). (Not a wait for an event: a window in which a
    // restart storm would show in the count.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = lines_in(&count);
    assert!(
        idle <= starts_at_failure + 1,
        "{idle} starts after {starts_at_failure}: an idle worker past the limit started children"
    );
    // A task pushed past the limit fails with the same error, and makes the worker try again.
    let again = bounded(accepted(&pool, Task::job(Square(4)))).await;
    assert!(
        matches!(
            &again,
            Err(TaskError::WorkerStartFailed {
                stage: StartStage::Handshake,
                ..
            })
        ),
        "a task pushed past the limit: {again:?}"
    );
    // A child writes its line as it starts: no event says so.
    eventually(30, || lines_in(&count) > idle).await;
    let asked = lines_in(&count);
    assert!(asked > idle, "the task made the worker try again");
    // That try failed too; then the worker waits for the next task again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let starts = lines_in(&count);
    assert!(
        starts <= asked + 1,
        "{starts} starts after {asked}: the worker keeps starting children nobody asked for"
    );
    bounded(pool.abort()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
    let _ = std::fs::remove_file(&count);
}

async fn a_child_that_dies_before_its_handshake_backs_off_and_fails_with_a_named_error() {
    failed_starts_are_bounded(DIE_EARLY_ENV, "die-early", true).await;
}

async fn a_child_that_claims_a_huge_frame_is_a_failed_start() {
    failed_starts_are_bounded(HUGE_FRAME_ENV, "huge-frame", false).await;
}

async fn abort_cancels_running_thread_tasks_at_once() {
    let pool = Pool::builder().min(1).start();
    let gate = Gate::new();
    let (task, started) = gate.task_started(1u32);
    let running = accepted(&pool, task);
    bounded(started).await.expect("the gated task started");
    let queued: Vec<_> = (0..5u32)
        .map(|i| accepted(&pool, Task::new(move || i)))
        .collect();
    // The running task is still blocked: abort must not wait for it.
    bounded(pool.abort()).await;
    assert_eq!(bounded(running).await, Err(TaskError::Cancelled));
    for v in queued {
        assert_eq!(bounded(v).await, Err(TaskError::Cancelled));
    }
    gate.open();
}

async fn abort_kills_a_hanging_process_job() {
    let pool = process_pool(1);
    let mark = scratch("abort-hang");
    let hang = accepted(
        &pool,
        Task::job(Hang {
            mark: Some(path_arg(&mark)),
        }),
    );
    let pid = pid_from(&mark).await; // the job is running in that child
    bounded(pool.abort()).await;
    assert_eq!(bounded(hang).await, Err(TaskError::Cancelled));
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
    assert!(!alive(pid), "the hung child {pid} is gone");
}

/// A job pinned to worker `w` that waits for the file `gate`, then answers its process's id.
fn wait_at(pool: &PoolHandle, w: &Channel, gate: &Path) -> Value<u32, TaskError> {
    pool.push_to(
        w,
        Task::job(WaitFor {
            gate: path_arg(gate),
        }),
    )
    .expect("the worker takes the job")
}

/// The backend contract, for process workers as for threads: a retiring worker hands its
/// unpinned queued tasks back (they run on the others) and keeps its pinned ones (they run there).
async fn a_retiring_process_worker_keeps_pinned_tasks_and_hands_back_the_rest() {
    let (pool, w0, w1) = grown_to_two(Pool::builder().strategy(RoundRobin::new()).process());
    let gate = scratch("retire-gate");
    let wait = |w: &Channel| wait_at(&pool, w, &gate);
    let busy0: Vec<_> = (0..4).map(|_| wait(&w0)).collect();
    let busy_w1 = wait(&w1);
    // w0: four waiting jobs and two unpinned (round robin): load 6; w1: one waiting job, two
    // pinned and two unpinned: load 5.
    let pinned: Vec<_> = (0..2)
        .map(|_| {
            pool.push_to(&w1, Task::job(WhoAmI))
                .expect("the worker takes the job")
        })
        .collect();
    let unpinned: Vec<_> = (0..4).map(|_| accepted(&pool, Task::job(WhoAmI))).collect();
    // The least loaded worker (w1) retires while everything above is still queued behind a gate.
    retire_second(&pool, &w0);
    std::fs::write(&gate, b"open").unwrap();
    let mut pids0 = Vec::new();
    for b in busy0 {
        pids0.push(bounded(b).await.unwrap());
    }
    let pid0 = pids0[0];
    assert!(pids0.iter().all(|p| *p == pid0));
    let pid1 = bounded(busy_w1).await.unwrap();
    assert_ne!(pid0, pid1);
    for p in pinned {
        assert_eq!(
            bounded(p).await,
            Ok(pid1),
            "a pinned task runs on its worker"
        );
    }
    for u in unpinned {
        assert_eq!(
            bounded(u).await,
            Ok(pid0),
            "an unpinned task moved to the remaining worker"
        );
    }
    let _ = std::fs::remove_file(&gate);
    bounded(pool.stop()).await;
}

/// A process worker retired while it runs a job: a draining stop that comes meanwhile waits for
/// that job too (the pool's own worker may be done long before), and its child ends with the pool.
async fn a_draining_stop_waits_for_a_process_worker_retired_mid_job() {
    let (pool, w0, w1) = grown_to_two(Pool::builder().process());
    let (stays, leaves) = (scratch("stays-gate"), scratch("leaves-gate"));
    let wait = |w: &Channel, gate: &Path| wait_at(&pool, w, gate);
    // w0: two jobs (load 2); w1: one (load 1), so the resize retires w1 while its job waits.
    let on_w0 = [wait(&w0, &stays), wait(&w0, &stays)];
    let mut on_w1 = wait(&w1, &leaves);
    retire_second(&pool, &w0);
    std::fs::write(&stays, b"open").unwrap();
    let mut stop = std::pin::pin!(pool.stop());
    let mut w0_pids = Vec::new();
    for v in on_w0 {
        // The stop runs while w0 drains.
        match futures::future::select(stop.as_mut(), v).await {
            Either::Left(_) => panic!("the stop returned before the retired worker's job ended"),
            Either::Right((pid, _)) => w0_pids.push(pid.expect("w0's job succeeds")),
        }
    }
    // w0 is done: a stop that forgot the retired worker returns now (given a moment to).
    let moment = std::pin::pin!(tokio::time::sleep(Duration::from_millis(300)));
    if let Either::Left(_) = futures::future::select(stop.as_mut(), moment).await {
        panic!("the stop returned before the retired worker's job ended");
    }
    std::fs::write(&leaves, b"open").unwrap();
    bounded(stop).await;
    let pid = match on_w1.try_take() {
        Some(Ok(pid)) => pid,
        other => panic!("the stop returned before the retired worker's job ended: {other:?}"),
    };
    assert!(!w0_pids.contains(&pid), "w0's jobs ran on w0's child");
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
    let _ = std::fs::remove_file(&stays);
    let _ = std::fs::remove_file(&leaves);
}

/// A retired process worker whose child dies while it drains replaces the child for its pinned
/// jobs without coming back to the bus: no new channel, no `WorkerRestarted`, nothing counted.
async fn a_retired_process_worker_replacing_its_child_stays_off_the_bus() {
    let (pool, w0, w1) = grown_to_two(Pool::builder().process());
    let (stays, leaves) = (scratch("stays-crash-gate"), scratch("leaves-crash-gate"));
    let wait = |w: &Channel, gate: &Path| wait_at(&pool, w, gate);
    // w0: four waiting jobs (load 4); w1: a waiting job, then a crash and one more job, all three
    // pinned to it (load 3): the resize retires w1, which keeps its pinned jobs.
    let on_w0: Vec<_> = (0..4).map(|_| wait(&w0, &stays)).collect();
    let first = wait(&w1, &leaves);
    let crash = pool
        .push_to(&w1, Task::job(Crash))
        .expect("the worker takes the job");
    let after = pool
        .push_to(&w1, Task::job(WhoAmI))
        .expect("the worker takes the job");
    retire_second(&pool, &w0);
    let mut restarted = listen::<WorkerRestarted>(pool.bus(), pool.channel());
    std::fs::write(&leaves, b"open").unwrap();
    let pid = bounded(first).await.expect("the first job succeeds");
    assert!(
        matches!(bounded(crash).await, Err(TaskError::WorkerCrashed { .. })),
        "the crash fails its task"
    );
    // The pinned job after it runs on the retired worker's new child.
    let replacement = bounded(after)
        .await
        .expect("the pinned job runs after the crash");
    assert_ne!(replacement, pid);
    std::fs::write(&stays, b"open").unwrap();
    for v in on_w0 {
        bounded(v).await.expect("w0's job succeeds");
    }
    bounded(pool.stop()).await;
    assert_eq!(
        pool.stats().restarted,
        0,
        "nothing counted for a retired worker"
    );
    assert!(
        restarted.try_next().is_err(),
        "no WorkerRestarted for a retired worker"
    );
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
    let _ = std::fs::remove_file(&stays);
    let _ = std::fs::remove_file(&leaves);
}

async fn a_timeout_fails_its_task_when_it_fires_whatever_the_kill_grace() {
    // The child ignores SIGTERM, so ending it takes the whole grace (8 s). The task must fail when
    // its 300 ms timeout fires: checked as an order, not a clock: the task has failed while the
    // child it ran in is still alive, inside its grace.
    let pool = Pool::builder()
        .min(1)
        .process_with(ProcessConfig::default().kill_grace(Duration::from_secs(8)))
        .start();
    let mark = scratch("ignore-term");
    let stubborn = accepted(
        &pool,
        Task::job(IgnoreTerm {
            mark: path_arg(&mark),
        })
        .timeout(Duration::from_millis(300)),
    );
    let pid = pid_from(&mark).await;
    assert_eq!(
        bounded(stubborn).await,
        Err(TaskError::TimedOut(Duration::from_millis(300)))
    );
    assert!(
        alive(pid),
        "the task failed only once its child was gone, after the kill grace"
    );
    // The next task waits for the replacement child, which starts after the grace.
    assert_eq!(bounded(pool.run(Task::job(Square(4)))).await, Ok(16));
    assert!(!alive(pid), "the child that ignored SIGTERM was killed");
    bounded(pool.stop()).await;
}

async fn abort_during_a_draining_stop_escalates_it() {
    let pool = Pool::builder().min(1).start();
    let gate = Gate::new();
    let (task, started) = gate.task_started(0usize);
    let running = accepted(&pool, task);
    bounded(started).await.expect("the gated task started");
    let queued: Vec<_> = (1..=1000usize)
        .map(|i| accepted(&pool, Task::new(move || i)))
        .collect();
    // The stop begins at its first poll (and goes on in the background); the running task holds
    // the drain.
    let mut stopping = Box::pin(pool.stop());
    assert!(
        futures::poll!(stopping.as_mut()).is_pending(),
        "the drain waits for the gated task"
    );
    assert!(pool.is_stopped(), "the draining stop began");
    bounded(pool.abort()).await;
    gate.open();
    assert_eq!(bounded(running).await, Err(TaskError::Cancelled));
    for (i, v) in queued.into_iter().enumerate() {
        assert_eq!(
            bounded(v).await,
            Err(TaskError::Cancelled),
            "queued task {}",
            i + 1
        );
    }
    bounded(stopping).await; // the escalated stop completes
}

async fn stop_within_aborts_a_drain_past_its_budget() {
    let pool = process_pool(1);
    let mark = scratch("stop-within-hang");
    let hang = accepted(
        &pool,
        Task::job(Hang {
            mark: Some(path_arg(&mark)),
        }),
    );
    let pid = pid_from(&mark).await;
    assert!(
        !bounded(pool.stop_within(Duration::from_millis(500))).await,
        "a drain with a hanging job cannot finish within its budget"
    );
    assert_eq!(bounded(hang).await, Err(TaskError::Cancelled));
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
    assert!(!alive(pid), "the hung child {pid} is gone");

    let pool = Pool::builder().min(2).start();
    let values: Vec<_> = (0..100u64)
        .map(|i| accepted(&pool, Task::new(move || i)))
        .collect();
    assert!(
        bounded(pool.stop_within(Duration::from_secs(30))).await,
        "a drain of quick tasks finishes within 30 s"
    );
    for (i, v) in values.into_iter().enumerate() {
        assert_eq!(bounded(v).await, Ok(i as u64));
    }
}

/// Work accepted while a bounded pool is full waits inside the pool for room, and a draining stop
/// runs it. `push` does not park any more (it refuses with `Refusal::Full`): the work parked here
/// is a `map` batch, whose chunks beyond the bound wait inside the pool as accepted tasks. A
/// `send` still waiting for room when the stop begins was not accepted: it gets its task back,
/// refused as `Refusal::Stopped`.
async fn an_abort_cancels_parked_map_chunks_with_their_events() {
    let pool = Pool::builder().min(1).queue_bound(2).start();
    let mut events = common::collect::<u64>(&pool);
    let gate = Gate::new();
    let (task, started) = gate.task_started(0u64);
    let first = accepted(&pool, task);
    bounded(started).await.expect("the gated task started");
    // One chunk takes the last room; nine park outside the queues.
    let chunks = mapped(pool.map_chunked((0..10u64).map(Square), 1));
    assert_eq!(pool.loads(), vec![2]);
    bounded(pool.abort()).await;
    assert_eq!(bounded(first).await, Err(TaskError::Cancelled));
    let results: Vec<_> = bounded(chunks.collect()).await;
    assert_eq!(results, vec![Err(TaskError::Cancelled); 10]);
    // Every accepted task ends with its events, parked chunks included: 11 failures, 11
    // completions (the old pool resolved parked chunks' values and fired nothing for them).
    let seen = events.until_complete(11).await;
    let cancelled = common::one_outcome_each(&seen, 11)
        .values()
        .filter(|s| matches!(s, common::Seen::Failure(_, TaskError::Cancelled)))
        .count();
    assert_eq!(cancelled, 11);
    let s = pool.stats();
    assert_eq!((s.done, s.failed), (0, 11));
}

async fn a_parked_push_runs_during_the_drain() {
    let pool = Pool::builder().min(1).queue_bound(2).start();
    let gate = Gate::new();
    let (task, started) = gate.task_started(u64::MAX);
    let first = accepted(&pool, task);
    bounded(started).await.expect("the gated task started");
    // Ten chunks of one job each: the first takes the last room, the other nine park.
    let parked = mapped(pool.map_chunked((0..10u64).map(Square), 1));
    let full = pool.push(Task::new(|| 0u64)).unwrap_err();
    assert_eq!(
        full.refusal(),
        &Refusal::Full,
        "the pool is full, so the chunks were parked"
    );
    assert_eq!(
        pool.loads(),
        vec![2],
        "the gated task and the first chunk are in the worker's queue; nine chunks wait outside"
    );
    // A producer waiting for room when the stop begins (polled once here, so that it waits
    // before the stop, then driven by the runtime).
    let mut waiting = Box::pin({
        let pool = pool.clone();
        let task = full.into_task();
        async move { pool.send(task).await }
    });
    assert!(
        futures::poll!(waiting.as_mut()).is_pending(),
        "send waits for room"
    );
    let waiting = actix::spawn(waiting);
    let mut stopping = Box::pin(pool.stop());
    assert!(
        futures::poll!(stopping.as_mut()).is_pending(),
        "the drain waits for the gated task"
    );
    assert!(pool.is_stopped(), "the draining stop began");
    assert_eq!(
        pool.push(Task::new(|| 1u64)).unwrap_err().refusal(),
        &Refusal::Stopped,
        "a draining pool takes no new task"
    );
    gate.open();
    assert_eq!(bounded(first).await, Ok(u64::MAX));
    let results: Vec<_> = bounded(parked.collect()).await;
    assert_eq!(results.len(), 10);
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r, Ok((i * i) as u64), "parked task {i}");
    }
    bounded(stopping).await; // the stop completes
    let refused = bounded(waiting)
        .await
        .expect("the waiting send's task did not panic")
        .expect_err("a send still waiting for room when the stop began is refused");
    assert_eq!(refused.refusal(), &Refusal::Stopped);
    // The task comes back whole: another pool runs it.
    let other = Pool::builder().min(1).start();
    assert_eq!(bounded(other.run(refused.into_task())).await, Ok(0));
    bounded(other.stop()).await;
}

async fn a_permit_is_free_before_the_value_resolves() {
    let pool = Pool::builder().min(1).queue_bound(1).start();
    for i in 0..2_000 {
        let v = pool.push(Task::new(|| 1)).unwrap_or_else(|e| {
            panic!("no room for task {i} after the previous value resolved: {e}")
        });
        assert_eq!(bounded(v).await, Ok(1));
    }
    bounded(pool.stop()).await;
}

async fn a_stuck_task_releases_its_permit_when_declared_stuck() {
    let pool = Pool::builder()
        .min(1)
        .max(2)
        .queue_bound(1)
        // Seconds: a quick task preempted on a busy machine must not count as stuck.
        .stuck_after(Duration::from_secs(3))
        .start();
    let gate = Gate::new();
    let stuck = bounded(accepted(&pool, gate.task(1u32))).await;
    assert!(
        matches!(stuck, Err(TaskError::TimedOut(_))),
        "the stuck task: {stuck:?}"
    );
    let next = pool
        .push(Task::new(|| 2u32))
        .expect("the stuck task's permit is free once its value resolved");
    assert_eq!(bounded(next).await, Ok(2));
    gate.open();
    bounded(pool.stop()).await;
}

async fn map_chunks_stay_under_the_frame_limit() {
    let pool = Pool::builder()
        .min(2)
        .process_with(ProcessConfig::default().max_frame(64 * 1024))
        .start();
    let out: Vec<Result<u32, TaskError>> =
        bounded(mapped(pool.map((0..10_000).map(|_| Blob(vec![1; 100])))).collect()).await;
    assert_eq!(out.len(), 10_000);
    if let Some((i, r)) = out.iter().enumerate().find(|(_, r)| **r != Ok(100)) {
        panic!("job {i} of 10,000 small ones: {r:?}");
    }

    let mixed = vec![
        Blob(vec![1; 100]),
        Blob(vec![2; 100 * 1024]),
        Blob(vec![3; 100]),
    ];
    let out: Vec<Result<u32, TaskError>> = bounded(mapped(pool.map(mixed)).collect()).await;
    assert_eq!(out.len(), 3);
    assert_eq!(out[0], Ok(100));
    assert!(
        matches!(&out[1], Err(TaskError::Wire(_))),
        "the job over the frame limit: {:?}",
        out[1]
    );
    assert_eq!(out[2], Ok(100));

    // Among many small jobs, the one too big for any frame fails alone.
    let many = (0..1000).map(|i| {
        if i == 500 {
            Blob(vec![4; 100 * 1024])
        } else {
            Blob(vec![5; 100])
        }
    });
    let out: Vec<Result<u32, TaskError>> = bounded(mapped(pool.map(many)).collect()).await;
    assert_eq!(out.len(), 1000);
    for (i, r) in out.iter().enumerate() {
        if i == 500 {
            assert!(matches!(r, Err(TaskError::Wire(_))), "job 500: {r:?}");
        } else {
            assert_eq!(*r, Ok(100), "job {i}");
        }
    }
    assert_eq!(bounded(pool.run(Task::job(Square(9)))).await, Ok(81));
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

/// 250 jobs of 10 ms in one chunk on one worker: the chunk takes 2.5 s, each job 10 ms, and the
/// pool's timeout (2 s) lies between, so a timeout applied to the chunk would fail every job.
async fn each_job_of_a_map_gets_the_whole_timeout(pool: PoolHandle, mode: &str) {
    let out: Vec<Result<u32, TaskError>> =
        bounded(mapped(pool.map_chunked((0..250).map(Nap), 250)).collect()).await;
    assert_eq!(out.len(), 250);
    for (i, r) in out.into_iter().enumerate() {
        assert_eq!(r, Ok(i as u32), "{mode} pool, job {i}");
    }
    bounded(pool.stop()).await;
}

async fn a_pool_timeout_applies_to_each_job_of_a_map() {
    let timeout = Duration::from_secs(2);
    let threads = Pool::builder().min(1).task_timeout(timeout).start();
    each_job_of_a_map_gets_the_whole_timeout(threads, "thread").await;
    let procs = Pool::builder()
        .min(1)
        .task_timeout(timeout)
        .process()
        .start();
    each_job_of_a_map_gets_the_whole_timeout(procs, "process").await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

async fn a_second_pool_on_a_channel_fails_to_start() {
    let bus = Bus::new();
    let first = Pool::builder()
        .min(1)
        .bus(&bus)
        .channel("work")
        .try_start()
        .expect("the first pool on \"work\" starts");
    match Pool::builder().min(1).bus(&bus).channel("work").try_start() {
        Err(PoolError::ChannelTaken(c)) => assert_eq!(c.as_str(), "work"),
        Ok(second) => {
            bounded(second.stop()).await;
            panic!("a second pool started on channel \"work\"");
        }
        Err(e) => panic!("expected ChannelTaken, got {e:?}"),
    }
    assert_eq!(
        bounded(call(&bus, "work", Task::new(|| 1))).await,
        Ok(1),
        "the first pool still answers on its channel"
    );

    let a = Pool::builder()
        .min(1)
        .bus(&bus)
        .channel("a")
        .try_start()
        .expect("a pool on \"a\" starts");
    let b = Pool::builder()
        .min(1)
        .bus(&bus)
        .channel("b")
        .try_start()
        .expect("a pool on \"b\" starts");
    bounded(a.stop()).await;
    assert_eq!(
        bounded(call(&bus, "b", Task::new(|| 2))).await,
        Ok(2),
        "stopping the pool on \"a\" left \"b\" routed"
    );
    assert_eq!(
        bounded(call(&bus, "work", Task::new(|| 3))).await,
        Ok(3),
        "stopping the pool on \"a\" left \"work\" routed"
    );
    // The stop has finished, and its pool's route went with it: nothing takes tasks on "a".
    let gone = bus.call("a", Task::new(|| 4)).unwrap_err();
    assert_eq!(
        gone.refusal(),
        &Refusal::NoRoute(Channel::from("a")),
        "a task for the stopped pool's channel"
    );
    let again = Pool::builder()
        .min(1)
        .bus(&bus)
        .channel("a")
        .try_start()
        .expect("channel \"a\" is free again once its pool stopped");
    // The task refused on "a" comes back whole: the new pool there runs it.
    assert_eq!(bounded(call(&bus, "a", gone.into_task())).await, Ok(4));
    assert_eq!(bounded(call(&bus, "a", Task::new(|| 5))).await, Ok(5));
    bounded(again.stop()).await;
    bounded(b.stop()).await;
    bounded(first.stop()).await;
}

/// Calls `task` on `channel`, which must route it; returns its value.
#[track_caller]
fn call<R: TaskOutput>(bus: &Bus, channel: &str, task: Task<R>) -> Value<R, TaskError> {
    bus.call(channel, task)
        .unwrap_or_else(|e| panic!("channel {channel:?} did not take the task: {e}"))
}

async fn max_below_the_default_min_lowers_min() {
    let pool = Pool::builder()
        .max(1)
        .try_start()
        .expect("max(1) alone starts a pool on any machine");
    assert_eq!(pool.workers().len(), 1);
    assert_eq!(pool.resize(2), 1, "max stays 1");
    assert_eq!(bounded(pool.run(Task::new(|| 5))).await, Ok(5));
    bounded(pool.stop()).await;
}

async fn a_timeout_ends_what_the_job_started() {
    let pool = process_pool(1);
    let first = scratch("timeout-sleep");
    // Seconds: long enough for the job to start `sleep` and write its pid on a busy machine.
    let hung = bounded(
        pool.run(
            Task::job(SpawnSleep {
                pid_file: path_arg(&first),
                hang: true,
            })
            .timeout(Duration::from_secs(2)),
        ),
    )
    .await;
    assert_eq!(
        hung,
        Err(RunError::Task(TaskError::TimedOut(Duration::from_secs(2)))),
        "the hanging job"
    );
    let sleep1 = pid_from(&first).await;
    assert!(
        ended(sleep1).await,
        "the `sleep 300` (pid {sleep1}) started by a timed-out job still runs"
    );

    let second = scratch("stop-sleep");
    let sleep2 = bounded(pool.run(Task::job(SpawnSleep {
        pid_file: path_arg(&second),
        hang: false,
    })))
    .await
    .expect("the job that returns at once succeeds");
    let _ = std::fs::remove_file(&second);
    assert!(
        alive(sleep2),
        "a job that ended normally leaves what it started running until the worker ends"
    );
    bounded(pool.stop()).await;
    assert!(
        ended(sleep2).await,
        "the `sleep 300` (pid {sleep2}) started by a job outlived the pool's stop"
    );
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

async fn a_fork_without_exec_then_abort_fails_worker_crashed_at_once() {
    let pool = process_pool(1);
    let file = scratch("forked");
    let worker = pool.workers()[0].clone();
    let crashed = bounded(accepted(
        &pool,
        Task::job(ForkThenAbort {
            pid_file: path_arg(&file),
        }),
    ))
    .await;
    assert_eq!(
        crashed,
        Err(TaskError::WorkerCrashed {
            worker,
            exit: Exit::Signal(libc::SIGABRT),
        }),
        "the job whose worker aborted"
    );
    let forked = pid_from(&file).await;
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
    assert!(
        ended(forked).await,
        "the forked copy (pid {forked}) outlived its worker's group"
    );
}

async fn a_worker_whose_children_crash_starts_no_new_thread() {
    // Through the rings and through the pipes: children that abort are replaced by the same host
    // thread and read by the same reader thread. (Threads of earlier tests' pools may still be
    // ending: only new threads are looked for.) A child the host kills for its timeout is
    // replaced before its reader has seen it end, so its replacement may get a reader thread of
    // its own (which then stays for the next children): that kill comes first, before the count.
    for (carrier, config) in [
        ("rings", ProcessConfig::default()),
        ("pipes", ProcessConfig::default().shared_memory(0)),
    ] {
        let pool = Pool::builder().min(1).process_with(config).start();
        assert_eq!(bounded(accepted(&pool, Task::job(Square(3)))).await, Ok(9));
        let limit = Duration::from_millis(200);
        let hung = accepted(&pool, Task::job(Hang { mark: None }).timeout(limit));
        assert_eq!(
            bounded(hung).await,
            Err(TaskError::TimedOut(limit)),
            "{carrier}"
        );
        assert_eq!(
            bounded(accepted(&pool, Task::job(Square(5)))).await,
            Ok(25),
            "{carrier}: the child after the timeout's kill"
        );
        // The host and reader threads (both "circuits-proces" to the kernel).
        let threads = || threads_named("circuits-process-reader");
        let before = threads();
        assert!(
            !before.is_empty(),
            "{carrier}: no thread of the pool was found"
        );
        for i in 0..4u64 {
            let worker = pool.workers()[0].clone();
            let crashed = bounded(accepted(&pool, Task::job(Crash))).await;
            assert_eq!(
                crashed,
                Err(TaskError::WorkerCrashed {
                    worker,
                    exit: Exit::Signal(libc::SIGABRT),
                }),
                "{carrier}: crash {i}"
            );
            // The replacement answers, through whichever reader reads it.
            assert_eq!(
                bounded(accepted(&pool, Task::job(Square(i)))).await,
                Ok(i * i),
                "{carrier}: the child after crash {i}"
            );
        }
        let new: Vec<u32> = threads().difference(&before).copied().collect();
        assert_eq!(
            new,
            Vec::<u32>::new(),
            "{carrier}: threads started for the replacement children"
        );
        bounded(pool.stop()).await;
    }
}

async fn a_job_subprocess_is_an_ordinary_process() {
    let pool = process_pool(1);
    assert_eq!(
        bounded(pool.run(Task::job(WorkerEnv))).await,
        Ok(Vec::<String>::new()),
        "worker-protocol variables left in a job's environment"
    );
    bounded(pool.stop()).await;
}

async fn a_process_pool_inside_a_job_works() {
    let pool = process_pool(1);
    assert_eq!(bounded(pool.run(Task::job(Nested(7)))).await, Ok(49));
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

/// Pushes 3,000 squares while another thread resizes the pool 2→4→2→4→2, awaits every value, then
/// checks that the stats count every outcome.
async fn stats_agree(pool: PoolHandle, mode: &str) {
    const N: u64 = 3_000;
    const SIZES: [usize; 4] = [4, 2, 4, 2];
    let (size_tx, size_rx) = std::sync::mpsc::channel::<usize>();
    let (resized_tx, resized_rx) = tokio::sync::oneshot::channel::<()>();
    let resizer = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            for n in size_rx {
                pool.resize(n);
            }
            let _ = resized_tx.send(());
        })
    };
    let per_round = N / (SIZES.len() as u64 + 1);
    let mut values = Vec::with_capacity(N as usize);
    let mut next = 0u64;
    for round in 0..=SIZES.len() {
        let end = if round == SIZES.len() {
            N
        } else {
            next + per_round
        };
        for i in next..end {
            values.push((i, accepted(&pool, Task::job(Square(i)))));
        }
        next = end;
        if let Some(&n) = SIZES.get(round) {
            size_tx.send(n).expect("the resizer thread listens");
        }
        tokio::task::yield_now().await;
    }
    drop(size_tx);
    let mut ok = 0u64;
    for (i, v) in values {
        if let Ok(x) = bounded(v).await {
            assert_eq!(x, i * i, "{mode} pool, task {i}");
            ok += 1;
        }
    }
    bounded(resized_rx)
        .await
        .expect("the resizer thread finished");
    resizer.join().expect("the resizer thread did not panic");
    let s = pool.stats();
    assert_eq!(s.pushed, N, "{mode} pool: {s:?}");
    assert_eq!(s.done + s.failed, N, "{mode} pool: {s:?}");
    assert_eq!(s.done, ok, "{mode} pool: {s:?}");
    bounded(pool.stop()).await;
}

async fn stats_agree_with_outcomes_after_every_value_resolved() {
    stats_agree(Pool::builder().min(2).max(4).process().start(), "process").await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
    stats_agree(Pool::builder().min(2).max(4).start(), "thread").await;
}

// ---------------------------------------------------------------------------------------------
// Plain tests, and the runner
// ---------------------------------------------------------------------------------------------

/// A pool that cannot start panics at the caller's line (`#[track_caller]`), not inside the
/// library.
fn a_failed_start_panics_at_the_callers_line() {
    let location = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let previous = std::panic::take_hook();
    let seen = location.clone();
    std::panic::set_hook(Box::new(move |info| {
        *seen.lock().unwrap() = info.location().map(|l| l.file().to_string());
    }));
    let line = line!() + 1;
    let outcome = catch_unwind(|| Pool::builder().min(0).start());
    std::panic::set_hook(previous);
    assert!(outcome.is_err(), "min(0) cannot start");
    let file = location.lock().unwrap().clone();
    assert_eq!(
        file.as_deref(),
        Some(file!()),
        "the panic names the caller's file (line {line}), not the library's"
    );
}

/// An application keeps its handle past the end of its actix `System` (in a global, say): the
/// System's stop still ends the pool, its threads and its children.
fn stopping_the_system_ends_a_pool_whose_handle_is_still_held() {
    let system = actix::System::new();
    let kept = system.block_on(async {
        let pool = process_pool(2);
        assert_eq!(bounded(pool.run(Task::job(Square(5)))).await, Ok(25));
        assert_eq!(await_children(2).await.len(), 2);
        pool
    });
    system.block_on(async { actix::System::current().stop() });
    system.run().expect("the System stops cleanly");
    // The System is gone: poll /proc from this plain thread (a child's end has no event).
    eventually_blocking(10, || children().is_empty());
    assert_eq!(
        children(),
        Vec::<u32>::new(),
        "no child outlives the System"
    );
    assert!(
        kept.is_stopped(),
        "the pool behind the kept handle is stopped"
    );
    let refused = kept.push(Task::job(Square(2))).unwrap_err();
    assert_eq!(
        refused.refusal(),
        &Refusal::Stopped,
        "the stopped pool refuses"
    );
    assert!(refused.is_stopped());
}

fn main() {
    misbehave_before_init_if_asked(); // before init, as a binary that forgot it would
    circuits::init(jobs()); // worker processes serve jobs here and never return

    common::run_main(
        "lifecycle",
        common::async_tests![
            // First: no other test has started a bus or a pool yet.
            dropped_pools_leave_no_thread_and_no_child,
            a_child_that_dies_before_its_handshake_backs_off_and_fails_with_a_named_error,
            a_child_that_claims_a_huge_frame_is_a_failed_start,
            abort_cancels_running_thread_tasks_at_once,
            abort_kills_a_hanging_process_job,
            a_timeout_fails_its_task_when_it_fires_whatever_the_kill_grace,
            a_retiring_process_worker_keeps_pinned_tasks_and_hands_back_the_rest,
            a_draining_stop_waits_for_a_process_worker_retired_mid_job,
            a_retired_process_worker_replacing_its_child_stays_off_the_bus,
            abort_during_a_draining_stop_escalates_it,
            stop_within_aborts_a_drain_past_its_budget,
            a_parked_push_runs_during_the_drain,
            an_abort_cancels_parked_map_chunks_with_their_events,
            a_permit_is_free_before_the_value_resolves,
            a_stuck_task_releases_its_permit_when_declared_stuck,
            map_chunks_stay_under_the_frame_limit,
            a_pool_timeout_applies_to_each_job_of_a_map,
            a_second_pool_on_a_channel_fails_to_start,
            max_below_the_default_min_lowers_min,
            a_timeout_ends_what_the_job_started,
            a_fork_without_exec_then_abort_fails_worker_crashed_at_once,
            a_worker_whose_children_crash_starts_no_new_thread,
            a_job_subprocess_is_an_ordinary_process,
            a_process_pool_inside_a_job_works,
            stats_agree_with_outcomes_after_every_value_resolved,
        ],
        common::sync_tests![
            a_failed_start_panics_at_the_callers_line,
            stopping_the_system_ends_a_pool_whose_handle_is_still_held,
        ],
    );
}
