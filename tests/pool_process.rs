//! Process-mode pools: jobs across a process boundary, crash isolation, real cancellation, no
//! orphans. This test target has its own `main` (`harness = false`) because worker processes are
//! this very binary re-executed: `circuits::init` must run first.

mod common;
use common::Square;

use common::{
    alive, await_children, bounded, children, collect, eventually_blocking, listen,
    one_outcome_each, wait_for_no_children, Listener, Seen,
};

use std::time::Duration;

use circuits::prelude::*;
use circuits::{Exit, Limit, MapStream, ProcessConfig, TaskOutput, WireError, WorkerRestarted};
use serde::{Deserialize, Serialize};

/// Dies in one of several ways, or answers with its process id.
#[derive(Serialize, Deserialize)]
enum Misbehave {
    Pid,
    Abort,
    Segfault,
    Panic,
    Hang,
    Exit(i32),
}
impl Job for Misbehave {
    const NAME: &'static str = "misbehave";
    type Output = u32;
    fn run(self) -> u32 {
        match self {
            Misbehave::Pid => std::process::id(),
            Misbehave::Abort => std::process::abort(),
            Misbehave::Segfault => {
                // SAFETY: not safe at all: a real invalid write, which is the point of this job.
                // (`raise(SIGSEGV)` would not do: std's handler returns from a signal it did not
                // cause by a fault.)
                unsafe { std::ptr::null_mut::<u32>().write_volatile(1) };
                0
            }
            // An unwinding panic, raised without the panic hook so that the test output shows no
            // backtrace of a panic that is expected.
            Misbehave::Panic => std::panic::resume_unwind(Box::new("job panicked on purpose")),
            Misbehave::Hang => loop {
                std::thread::sleep(Duration::from_millis(10));
            },
            Misbehave::Exit(code) => std::process::exit(code),
        }
    }
}

/// Sends bytes there and `n` bytes back.
#[derive(Serialize, Deserialize)]
struct Echo {
    data: Vec<u8>,
    reply: usize,
}
impl Job for Echo {
    const NAME: &'static str = "echo";
    type Output = Vec<u8>;
    fn run(self) -> Vec<u8> {
        vec![7; self.reply]
    }
}

/// Keeps `mib` MiB of touched memory for the rest of the child's life; answers with its pid.
#[derive(Serialize, Deserialize)]
struct Leak {
    mib: usize,
}
impl Job for Leak {
    const NAME: &'static str = "leak";
    type Output = u32;
    fn run(self) -> u32 {
        // Written to, so the pages are resident, not only reserved.
        std::mem::forget(vec![1u8; self.mib << 20]);
        std::process::id()
    }
}

/// Spins on the CPU for up to `secs` seconds of wall-clock time (a CPU limit should stop it
/// long before); answers with how many rounds it made.
#[derive(Serialize, Deserialize)]
struct Spin {
    secs: u64,
}
impl Job for Spin {
    const NAME: &'static str = "spin";
    type Output = u64;
    fn run(self) -> u64 {
        let until = std::time::Instant::now() + Duration::from_secs(self.secs);
        let mut rounds = 0u64;
        while std::time::Instant::now() < until {
            for _ in 0..10_000 {
                rounds = std::hint::black_box(rounds.wrapping_add(1));
            }
        }
        rounds
    }
}

/// Grows its memory by `step_mib` MiB (written to, so resident) every `pause_ms` up to `max_mib`,
/// then holds it for up to `hold_secs` (a memory limit should stop it long before); answers with
/// the MiB it reached.
#[derive(Serialize, Deserialize)]
struct Grow {
    step_mib: usize,
    max_mib: usize,
    pause_ms: u64,
    hold_secs: u64,
}
impl Job for Grow {
    const NAME: &'static str = "grow";
    type Output = usize;
    fn run(self) -> usize {
        let mut held = Vec::new();
        while held.len() * self.step_mib < self.max_mib {
            held.push(vec![1u8; self.step_mib << 20]);
            std::thread::sleep(Duration::from_millis(self.pause_ms));
        }
        std::thread::sleep(Duration::from_secs(self.hold_secs));
        held.len() * self.step_mib
    }
}

/// Opens /dev/null `n` times at once; answers with how many it opened, or the first error's
/// text.
#[derive(Serialize, Deserialize)]
struct OpenMany {
    n: usize,
}
impl Job for OpenMany {
    const NAME: &'static str = "open-many";
    type Output = Result<usize, String>;
    fn run(self) -> Result<usize, String> {
        let mut open = Vec::with_capacity(self.n);
        for _ in 0..self.n {
            open.push(std::fs::File::open("/dev/null").map_err(|e| e.to_string())?);
        }
        Ok(open.len())
    }
}

/// Answers how many jobs of its kind this child ran before it (its place in the child's order).
#[derive(Serialize, Deserialize)]
struct Place;
impl Job for Place {
    const NAME: &'static str = "place";
    type Output = u64;
    fn run(self) -> u64 {
        static RAN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        RAN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

/// Sleeps `ms` milliseconds; answers with them.
#[derive(Serialize, Deserialize)]
struct Nap {
    ms: u64,
}
impl Job for Nap {
    const NAME: &'static str = "nap";
    type Output = u64;
    fn run(self) -> u64 {
        std::thread::sleep(Duration::from_millis(self.ms));
        self.ms
    }
}

/// Known to the parent's code but not registered in the children's job set.
#[derive(Serialize, Deserialize)]
struct Unregistered;
impl Job for Unregistered {
    const NAME: &'static str = "unregistered";
    type Output = ();
    fn run(self) {}
}

fn jobs() -> Jobs {
    Jobs::new()
        .register::<Square>()
        .register::<Misbehave>()
        .register::<Echo>()
        .register::<Leak>()
        .register::<Spin>()
        .register::<Grow>()
        .register::<OpenMany>()
        .register::<Place>()
        .register::<Nap>()
}

/// The pool's `WorkerRestarted` events from now on.
fn watch_restarts(pool: &PoolHandle) -> Listener<WorkerRestarted> {
    listen(pool.bus(), pool.channel())
}

fn process_pool(n: usize) -> PoolHandle {
    Pool::builder().min(n).process().start()
}

/// Pushes `task`, which the running, unbounded pool must accept; returns its value.
#[track_caller]
fn accepted<R: TaskOutput>(pool: &PoolHandle, task: Task<R>) -> Value<R, TaskError> {
    pool.push(task)
        .unwrap_or_else(|e| panic!("a running unbounded pool refused a task: {e}"))
}

/// The stream of a `map` that a running pool must accept.
#[track_caller]
fn mapped<O>(stream: Result<MapStream<O>, Refusal>) -> MapStream<O> {
    stream.unwrap_or_else(|r| panic!("a running pool refused a map: {r}"))
}

async fn results_are_correct_for_1000_jobs_on_2_children() {
    let pool = process_pool(2);
    let values: Vec<_> = (0..1000u64)
        .map(|i| accepted(&pool, Task::job(Square(i))))
        .collect();
    for (i, v) in values.into_iter().enumerate() {
        assert_eq!(bounded(v).await, Ok((i * i) as u64));
    }
    let via_bus = pool
        .bus()
        .call("pool", Task::job(Square(12)))
        .expect("the pool's channel routes the job");
    assert_eq!(bounded(via_bus).await, Ok(144));
    let via_actor = bounded(pool.addr().send(Task::job(Square(5))))
        .await
        .expect("the pool actor answers");
    assert_eq!(via_actor, Ok(25));
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

async fn crash_fails_only_its_task(how: Misbehave, exit: Exit, expect: &str) {
    let pool = process_pool(2);
    let mut restarts = watch_restarts(&pool);
    let before: Vec<_> = (0..50u64)
        .map(|i| accepted(&pool, Task::job(Square(i))))
        .collect();
    let bad = accepted(&pool, Task::job(how));
    let after: Vec<_> = (0..100u64)
        .map(|i| accepted(&pool, Task::job(Square(i))))
        .collect();
    let error = bounded(bad)
        .await
        .expect_err("the job that kills its child fails");
    let TaskError::WorkerCrashed {
        worker: crashed_worker,
        exit: got,
    } = &error
    else {
        panic!("expected WorkerCrashed, got {error:?}");
    };
    assert_eq!(*got, exit, "how the child ended");
    assert!(
        error.to_string().contains(expect),
        "the error should say {expect:?}: \"{error}\""
    );
    for (i, v) in before.into_iter().chain(after).enumerate() {
        let i = if i < 50 { i } else { i - 50 } as u64;
        assert_eq!(bounded(v).await, Ok(i * i));
    }
    assert_eq!(pool.workers().len(), 2, "the pool keeps its size");
    let r = restarts.next().await;
    assert!(
        r.reason.contains(expect),
        "the restart's reason {:?} should say {expect:?}",
        r.reason
    );
    assert!(pool.workers().contains(&r.new) && !pool.workers().contains(&r.old));
    assert_eq!(
        &r.old, crashed_worker,
        "the error names the worker that restarted"
    );
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

async fn abort_fails_only_its_task_and_the_pool_goes_on() {
    crash_fails_only_its_task(Misbehave::Abort, Exit::Signal(libc::SIGABRT), "SIGABRT").await;
}

async fn a_segfault_fails_only_its_task_and_the_pool_goes_on() {
    crash_fails_only_its_task(Misbehave::Segfault, Exit::Signal(libc::SIGSEGV), "SIGSEGV").await;
}

async fn an_exit_fails_only_its_task_and_the_pool_goes_on() {
    crash_fails_only_its_task(Misbehave::Exit(17), Exit::Code(17), "code 17").await;
}

/// A child that dies right after answering a burst of jobs: its answers are still in the
/// shared-memory ring (the reader may not have read them yet when the child is gone), and every
/// one of them arrives; only the job it died in fails.
async fn answers_in_the_ring_when_a_child_dies_all_arrive() {
    let pool = process_pool(1);
    for round in 0..30u64 {
        let quick: Vec<_> = (0..20u64)
            .map(|i| accepted(&pool, Task::job(Square(round * 100 + i))))
            .collect();
        let crash = accepted(&pool, Task::job(Misbehave::Abort));
        for (i, v) in quick.into_iter().enumerate() {
            let n = round * 100 + i as u64;
            assert_eq!(bounded(v).await, Ok(n * n), "round {round}, job {i}");
        }
        assert!(
            matches!(
                bounded(crash).await,
                Err(TaskError::WorkerCrashed {
                    exit: Exit::Signal(libc::SIGABRT),
                    ..
                })
            ),
            "round {round}: the job it died in fails"
        );
    }
    bounded(pool.stop()).await;
}

/// One job at a time, each awaited as soon as it is pushed: the thread awaiting a quick job's
/// answer reads it from the shared memory itself (`ProcessConfig::answer_spin`), the reader thread
/// answers the others. Whoever reads, every answer is the right one; a job slower than the spin
/// is answered all the same; a child that dies in a job awaited this way fails exactly that job,
/// and the next one runs on its replacement. With the spin off, at its default and at its most.
async fn jobs_awaited_one_at_a_time_are_answered_whoever_reads_them() {
    for spin in [
        Duration::ZERO,
        ProcessConfig::default().answer_spin_time(),
        Duration::from_millis(1),
    ] {
        let config = ProcessConfig::default().answer_spin(spin);
        let pool = Pool::builder().min(1).process_with(config).start();
        let mut restarts = watch_restarts(&pool);
        for round in 0..5u64 {
            for i in 0..200 {
                let n = round * 1000 + i;
                let got = bounded(accepted(&pool, Task::job(Square(n)))).await;
                assert_eq!(got, Ok(n * n), "spin {spin:?}, round {round}, job {i}");
            }
            // Slower than any spin: after quick ones, an awaiting thread starts reading it.
            let slow = bounded(accepted(&pool, Task::job(Nap { ms: 5 }))).await;
            assert_eq!(slow, Ok(5), "spin {spin:?}, round {round}");
            for i in 0..20 {
                let got = bounded(accepted(&pool, Task::job(Square(i)))).await;
                assert_eq!(got, Ok(i * i), "spin {spin:?}, round {round}, job {i}");
            }
            // Dies while its answer is awaited, right after quick jobs.
            let crash = bounded(accepted(&pool, Task::job(Misbehave::Abort))).await;
            assert!(
                matches!(
                    crash,
                    Err(TaskError::WorkerCrashed {
                        exit: Exit::Signal(libc::SIGABRT),
                        ..
                    })
                ),
                "spin {spin:?}, round {round}: {crash:?}"
            );
            let r = restarts.next().await;
            assert!(r.reason.contains("SIGABRT"), "{:?}", r.reason);
        }
        bounded(pool.stop()).await;
    }
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

async fn an_unwinding_panic_is_a_plain_failure_and_the_child_lives() {
    let pool = process_pool(1);
    let pid = bounded(pool.run(Task::job(Misbehave::Pid))).await.unwrap();
    assert_eq!(
        bounded(pool.run(Task::job(Misbehave::Panic))).await,
        Err(RunError::Task(TaskError::Panicked(
            "job panicked on purpose".into()
        )))
    );
    let again = bounded(pool.run(Task::job(Misbehave::Pid))).await.unwrap();
    assert_eq!(pid, again, "the same child serves on");
    for i in 0..100u64 {
        assert_eq!(bounded(pool.run(Task::job(Square(i)))).await, Ok(i * i));
    }
    bounded(pool.stop()).await;
}

async fn a_timeout_kills_the_child_and_replaces_it() {
    let pool = process_pool(1);
    let mut restarts = watch_restarts(&pool);
    let first = pool.workers()[0].clone();
    let pid = bounded(pool.run(Task::job(Misbehave::Pid))).await.unwrap();
    let hang = accepted(
        &pool,
        Task::job(Misbehave::Hang).timeout(Duration::from_millis(100)),
    );
    let queued: Vec<_> = (0..20u64)
        .map(|i| accepted(&pool, Task::job(Square(i))))
        .collect();
    assert_eq!(
        bounded(hang).await,
        Err(TaskError::TimedOut(Duration::from_millis(100)))
    );
    for (i, v) in queued.into_iter().enumerate() {
        assert_eq!(bounded(v).await, Ok((i * i) as u64), "queued tasks go on");
    }
    let new_pid = bounded(pool.run(Task::job(Misbehave::Pid))).await.unwrap();
    assert_ne!(pid, new_pid, "a new child took over");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the hung child is gone"
    );
    assert_ne!(pool.workers()[0], first, "under a fresh channel");
    let r = restarts.next().await;
    assert_eq!(r.old, first);
    assert_eq!(r.new, pool.workers()[0]);
    assert!(
        r.reason.contains("timed out"),
        "the restart's reason: {:?}",
        r.reason
    );
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

async fn stop_abort_and_drop_leave_no_child_process() {
    let pool = process_pool(3);
    bounded(pool.run(Task::job(Square(2)))).await.unwrap();
    assert_eq!(await_children(3).await.len(), 3);
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());

    let pool = process_pool(2);
    let hang = accepted(
        &pool,
        Task::job(Misbehave::Hang).timeout(Duration::from_millis(200)),
    );
    let queued: Vec<_> = (0..10u64)
        .map(|i| accepted(&pool, Task::job(Square(i))))
        .collect();
    bounded(pool.abort()).await;
    // Cancelled by the abort, or timed out first on a slow machine.
    let hung = bounded(hang).await;
    assert!(
        matches!(hung, Err(TaskError::Cancelled | TaskError::TimedOut(_))),
        "the hanging job: {hung:?}"
    );
    for v in queued {
        let r = bounded(v).await;
        assert!(
            matches!(r, Ok(_) | Err(TaskError::Cancelled)),
            "each task has one outcome: {r:?}"
        );
    }
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

fn dropped_pools_leave_no_child_process() {
    // A whole System with its pool, dropped without stop: the pool's drop kills its children.
    actix::System::new().block_on(async {
        let pool = process_pool(2);
        bounded(pool.run(Task::job(Square(3)))).await.unwrap();
        assert_eq!(await_children(2).await.len(), 2);
    });
    // The System is gone: poll /proc from this plain thread (a child's end has no event).
    eventually_blocking(10, || children().is_empty());
    assert_eq!(children(), Vec::<u32>::new());
}

async fn bad_input_gets_named_errors() {
    let pool = Pool::builder()
        .min(1)
        .process_with(ProcessConfig::default().max_frame(4096))
        .start();
    assert_eq!(
        bounded(pool.run(Task::job(Unregistered))).await,
        Err(RunError::Task(TaskError::UnknownJob("unregistered".into())))
    );
    // A closure is refused at once (nothing ran), and handed back.
    let closure = pool.push(Task::new(|| 1u64)).unwrap_err();
    assert_eq!(closure.refusal(), &Refusal::ClosureInProcessPool);
    // The task handed back is whole: a thread pool runs it.
    let threads = Pool::builder().min(1).start();
    assert_eq!(bounded(threads.run(closure.into_task())).await, Ok(1));
    bounded(threads.stop()).await;
    // The job's input frame (10,000 bytes and more) is over the limit: it never leaves.
    let too_big_in = bounded(pool.run(Task::job(Echo {
        data: vec![1; 10_000],
        reply: 0,
    })))
    .await;
    assert!(
        matches!(
            too_big_in,
            Err(RunError::Task(TaskError::Wire(WireError::FrameTooLarge { size, limit: 4096 })))
                if size > 10_000
        ),
        "the input over the frame limit: {too_big_in:?}"
    );
    // The child's answer (10,000 bytes and more) is over the limit: the child says so instead.
    let too_big_out = bounded(pool.run(Task::job(Echo {
        data: vec![],
        reply: 10_000,
    })))
    .await;
    assert!(
        matches!(
            too_big_out,
            Err(RunError::Task(TaskError::Wire(WireError::FrameTooLarge { size, limit: 4096 })))
                if size > 10_000
        ),
        "the output over the frame limit: {too_big_out:?}"
    );
    let at_limit = bounded(pool.run(Task::job(Echo {
        data: vec![1; 1000],
        reply: 1000,
    })))
    .await;
    assert_eq!(at_limit.map(|v| v.len()), Ok(1000));
    assert_eq!(bounded(pool.run(Task::job(Square(4)))).await, Ok(16));
    bounded(pool.stop()).await;
}

async fn the_same_job_gives_the_same_result_in_both_modes() {
    let threads = Pool::builder().min(2).start();
    let procs = process_pool(2);
    for i in [0u64, 1, 7, 1 << 20] {
        let a = bounded(threads.run(Task::job(Square(i)))).await;
        let b = bounded(procs.run(Task::job(Square(i)))).await;
        assert_eq!(a, b);
        assert_eq!(a, Ok(i * i));
    }
    let a = bounded(threads.run(Task::job(Echo {
        data: vec![],
        reply: 3,
    })))
    .await;
    let b = bounded(procs.run(Task::job(Echo {
        data: vec![],
        reply: 3,
    })))
    .await;
    assert_eq!(a, b);
    assert_eq!(a, Ok(vec![7; 3]));
    bounded(threads.stop()).await;
    bounded(procs.stop()).await;
}

async fn map_streams_results_in_input_order_in_chunks() {
    use futures::StreamExt;
    let pool = process_pool(2);
    let squares: Vec<_> = bounded(mapped(pool.map((0..20_000u64).map(Square))).collect()).await;
    assert_eq!(squares.len(), 20_000);
    for (i, r) in squares.into_iter().enumerate() {
        assert_eq!(r, Ok((i * i) as u64));
    }
    // A panic inside a chunk fails only its own job.
    let mixed = [Misbehave::Pid, Misbehave::Panic, Misbehave::Pid];
    let out: Vec<_> = bounded(mapped(pool.map_chunked(mixed, 3)).collect()).await;
    assert!(out[0].is_ok() && out[2].is_ok());
    assert_eq!(
        out[1],
        Err(TaskError::Panicked("job panicked on purpose".into()))
    );
    // A crash fails the whole chunk it was running, and nothing else.
    let crashy = [Misbehave::Pid, Misbehave::Abort, Misbehave::Pid];
    let out: Vec<_> = bounded(mapped(pool.map_chunked(crashy, 3)).collect()).await;
    assert_eq!(out.len(), 3);
    // Every job of the chunk shares its fate: the same crash, of the same worker, by SIGABRT.
    assert!(
        out.iter().all(|r| matches!(
            r,
            Err(TaskError::WorkerCrashed {
                exit: Exit::Signal(libc::SIGABRT),
                ..
            })
        )) && out.iter().all(|r| r == &out[0]),
        "{out:?}"
    );
    let after: Vec<_> = bounded(mapped(pool.map((0..10u64).map(Square))).collect()).await;
    assert_eq!(after[9], Ok(81));
    // Jobs whose number is not known up front (a filter) are gathered first, same results.
    let odd = (0..5_001u64).filter(|i| i % 2 == 1);
    let want: Vec<_> = odd.clone().map(|i| Ok(i * i)).collect();
    let out: Vec<_> = bounded(mapped(pool.map(odd.clone().map(Square))).collect()).await;
    assert_eq!(out, want);
    bounded(pool.stop()).await;
    // A thread pool runs the jobs themselves, chunked the same way.
    let threads = Pool::builder().min(2).start();
    let out: Vec<_> = bounded(mapped(threads.map(odd.map(Square))).collect()).await;
    assert_eq!(out, want);
    bounded(threads.stop()).await;
}

const ORPHAN_PARENT_ENV: &str = "CIRCUITS_TEST_ORPHAN_PARENT";

/// Runs as a separate parent process: starts a process pool, prints its children's pids, waits to
/// be killed.
fn orphan_parent_if_asked() {
    if std::env::var_os(ORPHAN_PARENT_ENV).is_none() {
        return;
    }
    actix::System::new().block_on(async {
        let pool = process_pool(2);
        for w in pool.workers() {
            let v = pool
                .push_to(&w, Task::job(Square(1)))
                .expect("the worker takes the job");
            v.await.unwrap();
        }
        let pids: Vec<String> = children().iter().map(u32::to_string).collect();
        println!("{}", pids.join(" "));
        // Until the test kills this process.
        std::future::pending::<()>().await;
    });
}

fn children_die_with_their_parent() {
    use std::io::BufRead;
    let mut parent = std::process::Command::new(std::env::current_exe().unwrap())
        .env(ORPHAN_PARENT_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(parent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pids: Vec<u32> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(
        pids.len(),
        2,
        "the parent reported its two workers: {line:?}"
    );
    assert!(pids.iter().all(|p| alive(*p)));
    parent.kill().unwrap(); // SIGKILL: no destructor, no clean-up of its own
    parent.wait().unwrap();
    // Another process's children: /proc is all there is to watch.
    eventually_blocking(10, || !pids.iter().any(|p| alive(*p)));
    let running: Vec<_> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(
        running.is_empty(),
        "orphaned workers still running: {running:?}"
    );
}

async fn resizing_a_process_pool_loses_nothing() {
    let pool = Pool::builder().min(1).max(3).process().start();
    assert_eq!(pool.resize(3), 3);
    let values: Vec<_> = (0..3000u64)
        .map(|i| accepted(&pool, Task::job(Square(i))))
        .collect();
    // Retiring workers hand back their queued jobs and finish the ones their child holds.
    assert_eq!(pool.resize(1), 1);
    for (i, v) in values.into_iter().enumerate() {
        assert_eq!(bounded(v).await, Ok((i * i) as u64));
    }
    let s = pool.stats();
    assert_eq!((s.pushed, s.done, s.failed), (3000, 3000, 0));
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

async fn a_child_is_recycled_after_its_jobs_and_no_task_fails() {
    let config = ProcessConfig::default()
        .recycle_after_jobs(10)
        .recycle_jitter(0);
    let pool = Pool::builder().min(1).process_with(config).start();
    let mut restarts = watch_restarts(&pool);
    // Pushed at once: the child gets its ten, the other jobs wait for the next child.
    let values: Vec<_> = (0..35)
        .map(|_| accepted(&pool, Task::job(Misbehave::Pid)))
        .collect();
    let mut pids = Vec::new();
    for v in values {
        pids.push(bounded(v).await.expect("no task fails for a recycling"));
    }
    let mut served: Vec<(u32, usize)> = Vec::new();
    for pid in &pids {
        match served.last_mut() {
            Some((p, n)) if p == pid => *n += 1,
            _ => served.push((*pid, 1)),
        }
    }
    // In order, ten jobs per child, the last one takes the rest.
    let counts: Vec<usize> = served.iter().map(|s| s.1).collect();
    assert_eq!(counts, vec![10, 10, 10, 5], "jobs per child: {served:?}");
    for _ in 0..3 {
        let r = restarts.next().await;
        assert_eq!(r.reason, "recycled after 10 jobs");
    }
    let s = pool.stats();
    assert_eq!((s.done, s.failed), (35, 0));
    assert_eq!(
        s.recycled, 3,
        "three children recycled, counted in the stats"
    );
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

async fn a_child_above_its_memory_limit_is_recycled_between_jobs() {
    let config = ProcessConfig::default().recycle_above_memory(64 << 20);
    let pool = Pool::builder().min(1).process_with(config).start();
    let mut restarts = watch_restarts(&pool);
    // One at a time: 40 MiB stays under the limit, 80 MiB is above it.
    let mut pids = Vec::new();
    for _ in 0..4 {
        pids.push(
            bounded(pool.run(Task::job(Leak { mib: 40 })))
                .await
                .unwrap(),
        );
    }
    assert_eq!(pids[0], pids[1], "below the limit the child stays");
    assert_ne!(
        pids[1], pids[2],
        "above it, the next job goes to a new child"
    );
    assert_eq!(pids[2], pids[3]);
    let r = restarts.next().await;
    assert!(r.reason.starts_with("recycled at "), "{}", r.reason);
    assert!(
        r.reason.ends_with(&format!("(limit {})", 64 << 20)),
        "{}",
        r.reason
    );
    assert!(!alive(pids[0]), "the recycled child ended");
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

/// A pusher sends its task to the child itself when the host thread is free, and through the host
/// thread when it is not: either way one worker's child runs one pusher's tasks in the order they
/// were pushed (a task sent by the pusher never overtakes one still on its way to the host).
async fn one_child_runs_one_pushers_tasks_in_the_order_they_came() {
    const N: u64 = 3_000;
    let pool = Pool::builder().min(1).process().start();
    bounded(pool.run(Task::job(Place))).await.unwrap(); // the child is up: place 0
    let pusher = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            (0..N)
                .map(|_| accepted(&pool, Task::job(Place)))
                .collect::<Vec<_>>()
        })
    };
    let values = pusher.join().unwrap();
    for (i, v) in values.into_iter().enumerate() {
        assert_eq!(
            bounded(v).await,
            Ok(i as u64 + 1),
            "task {i} ran out of order"
        );
    }
    bounded(pool.stop()).await;
}

/// A job with a timeout queued behind one without: when it starts, its timeout is watched (the
/// host thread must hear of it, though nobody sends it anything then).
async fn a_timeout_is_watched_for_a_job_that_starts_behind_another() {
    let pool = Pool::builder().min(1).process().start();
    bounded(pool.run(Task::job(Square(2)))).await.unwrap(); // the child is up
    let first = accepted(&pool, Task::job(Spin { secs: 1 }));
    let timed = accepted(
        &pool,
        Task::job(Spin { secs: 120 }).timeout(Duration::from_millis(300)),
    );
    assert!(bounded(first).await.is_ok());
    assert_eq!(
        bounded(timed).await,
        Err(TaskError::TimedOut(Duration::from_millis(300)))
    );
    bounded(pool.stop()).await;
}

/// A job whose input is larger than the ring's free space, queued behind a job that hangs: the
/// host thread does not wait for the hung child to read it, so the hung job's timeout fires and
/// the large job runs on the replacement child.
async fn a_large_job_behind_a_hung_one_does_not_block_its_timeout() {
    // Through a 64 KiB ring, and through the pipes (whose buffer is 64 KiB too).
    for config in [
        ProcessConfig::default().shared_memory(64 << 10),
        ProcessConfig::default().shared_memory(0),
    ] {
        large_job_behind_a_hung_one(config).await;
    }
}

async fn large_job_behind_a_hung_one(config: ProcessConfig) {
    let pool = Pool::builder().min(1).process_with(config).start();
    bounded(pool.run(Task::job(Square(2)))).await.unwrap(); // the child is up
    let limit = Duration::from_millis(300);
    let hung = accepted(&pool, Task::job(Spin { secs: 120 }).timeout(limit));
    let large = accepted(
        &pool,
        Task::job(Echo {
            data: vec![1; 200 << 10],
            reply: 3,
        }),
    );
    assert_eq!(bounded(hung).await, Err(TaskError::TimedOut(limit)));
    assert_eq!(bounded(large).await, Ok(vec![7; 3]));
    // Small jobs sent one by one behind a hung job: through a pipe, each write of one can take a
    // page of the pipe's buffer of its own, filling it at about half its bytes.
    let hung = accepted(&pool, Task::job(Spin { secs: 120 }).timeout(limit));
    let mut small = Vec::new();
    for _ in 0..24 {
        small.push(accepted(
            &pool,
            Task::job(Echo {
                data: vec![1; 3000],
                reply: 3,
            }),
        ));
        // Apart, so that the host writes each on its own (what it is given at once it writes
        // at once).
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(bounded(hung).await, Err(TaskError::TimedOut(limit)));
    for s in small {
        assert_eq!(bounded(s).await, Ok(vec![7; 3]));
    }
    bounded(pool.stop()).await;
}

async fn a_job_queued_past_its_deadline_is_never_sent_to_a_child() {
    let pool = Pool::builder().min(1).process().start();
    let stale = accepted(&pool, Task::job(Square(3)).expires_after(Duration::ZERO));
    assert_eq!(bounded(stale).await, Err(TaskError::Expired));
    let fresh = Task::job(Square(4)).expires_after(Duration::from_secs(60));
    assert_eq!(bounded(pool.run(fresh)).await, Ok(16));
    let s = pool.stats();
    assert_eq!((s.done, s.failed), (1, 1));
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

async fn a_job_over_its_cpu_limit_fails_naming_it_and_the_pool_goes_on() {
    let limit = Duration::from_secs(1);
    let config = ProcessConfig::default().limit_cpu_per_job(limit);
    let pool = Pool::builder().min(1).process_with(config).start();
    let mut restarts = watch_restarts(&pool);
    let mut events = collect::<u64>(&pool);
    let worker = pool.workers()[0].clone();
    let started = std::time::Instant::now();
    // The spinning job is the child's first: going over a limit is the job's fault, not a failed
    // start. The jobs queued behind it never started; a new child runs them.
    let spin = accepted(&pool, Task::job(Spin { secs: 60 }));
    let queued: Vec<_> = (0..10u64)
        .map(|i| accepted(&pool, Task::job(Square(i))))
        .collect();
    assert_eq!(
        bounded(spin).await,
        Err(TaskError::LimitExceeded(Limit::CpuTime(limit)))
    );
    println!(
        "    the spinning job failed after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    for (i, v) in queued.into_iter().enumerate() {
        assert_eq!(bounded(v).await, Ok((i * i) as u64), "queued tasks go on");
    }
    assert_eq!(bounded(pool.run(Task::job(Square(7)))).await, Ok(49));
    let r = restarts.next().await;
    assert_eq!(r.old, worker);
    assert!(
        r.reason.contains("CPU time"),
        "the restart's reason: {:?}",
        r.reason
    );
    let terminal = one_outcome_each(&events.until_complete(12).await, 12);
    let failures: Vec<_> = terminal
        .values()
        .filter(|s| matches!(s, Seen::Failure(..)))
        .collect();
    assert_eq!(
        failures,
        vec![&Seen::Failure(
            worker,
            TaskError::LimitExceeded(Limit::CpuTime(limit))
        )],
        "exactly one TaskFailure, for the spinning job"
    );
    let s = pool.stats();
    assert_eq!((s.done, s.failed), (11, 1));
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

async fn a_job_over_its_memory_limit_fails_naming_it_and_the_pool_goes_on() {
    let limit = 64u64 << 20;
    let config = ProcessConfig::default().limit_resident_memory(limit);
    let pool = Pool::builder().min(1).process_with(config).start();
    let mut restarts = watch_restarts(&pool);
    let worker = pool.workers()[0].clone();
    let pid = bounded(pool.run(Task::job(Misbehave::Pid))).await.unwrap();
    // 4 MiB every 5 ms, held once it is at 512 MiB: however late the pool looks, it is over.
    let grow = accepted(
        &pool,
        Task::job(Grow {
            step_mib: 4,
            max_mib: 512,
            pause_ms: 5,
            hold_secs: 60,
        }),
    );
    let queued: Vec<_> = (0..10u64)
        .map(|i| accepted(&pool, Task::job(Square(i))))
        .collect();
    let error = bounded(grow).await.expect_err("the growing job fails");
    let TaskError::LimitExceeded(Limit::ResidentMemory {
        limit: named,
        resident,
    }) = error
    else {
        panic!("expected LimitExceeded(ResidentMemory), got {error:?}");
    };
    assert_eq!(named, limit);
    assert!(resident > limit, "{resident} bytes resident, limit {limit}");
    println!(
        "    killed at {:.1} MiB resident ({:.1} MiB over the limit)",
        resident as f64 / f64::from(1 << 20),
        (resident - limit) as f64 / f64::from(1 << 20)
    );
    for (i, v) in queued.into_iter().enumerate() {
        assert_eq!(bounded(v).await, Ok((i * i) as u64), "queued tasks go on");
    }
    let r = restarts.next().await;
    assert_eq!(r.old, worker);
    assert!(
        r.reason.contains("resident memory"),
        "the restart's reason: {:?}",
        r.reason
    );
    let new_pid = bounded(pool.run(Task::job(Misbehave::Pid))).await.unwrap();
    assert_ne!(pid, new_pid, "a new child took over");
    assert!(common::ended(pid).await, "the child over its limit is gone");
    let s = pool.stats();
    assert_eq!((s.done, s.failed), (12, 1));
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

async fn a_job_over_the_open_files_limit_gets_the_os_error_and_the_child_lives() {
    let config = ProcessConfig::default().limit_open_files(64);
    let pool = Pool::builder().min(1).process_with(config).start();
    let pid = bounded(pool.run(Task::job(Misbehave::Pid))).await.unwrap();
    let opened = bounded(pool.run(Task::job(OpenMany { n: 200 })))
        .await
        .expect("the job itself sees the error");
    let error = opened.expect_err("200 files do not fit under a limit of 64");
    assert!(error.contains("Too many open files"), "{error}");
    // Under the limit, it opens them; and the same child serves on.
    let some = bounded(pool.run(Task::job(OpenMany { n: 32 }))).await;
    assert_eq!(some, Ok(Ok(32)));
    let again = bounded(pool.run(Task::job(Misbehave::Pid))).await.unwrap();
    assert_eq!(pid, again, "the same child serves on");
    let s = pool.stats();
    assert_eq!((s.done, s.failed), (4, 0));
    bounded(pool.stop()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

fn main() {
    circuits::init(jobs()); // worker processes serve jobs here and never return
    orphan_parent_if_asked();
    common::run_main(
        "pool_process",
        common::async_tests![
            results_are_correct_for_1000_jobs_on_2_children,
            one_child_runs_one_pushers_tasks_in_the_order_they_came,
            answers_in_the_ring_when_a_child_dies_all_arrive,
            jobs_awaited_one_at_a_time_are_answered_whoever_reads_them,
            a_timeout_is_watched_for_a_job_that_starts_behind_another,
            a_large_job_behind_a_hung_one_does_not_block_its_timeout,
            abort_fails_only_its_task_and_the_pool_goes_on,
            a_segfault_fails_only_its_task_and_the_pool_goes_on,
            an_exit_fails_only_its_task_and_the_pool_goes_on,
            an_unwinding_panic_is_a_plain_failure_and_the_child_lives,
            a_timeout_kills_the_child_and_replaces_it,
            stop_abort_and_drop_leave_no_child_process,
            map_streams_results_in_input_order_in_chunks,
            resizing_a_process_pool_loses_nothing,
            bad_input_gets_named_errors,
            the_same_job_gives_the_same_result_in_both_modes,
            a_child_is_recycled_after_its_jobs_and_no_task_fails,
            a_child_above_its_memory_limit_is_recycled_between_jobs,
            a_job_queued_past_its_deadline_is_never_sent_to_a_child,
            a_job_over_its_cpu_limit_fails_naming_it_and_the_pool_goes_on,
            a_job_over_its_memory_limit_fails_naming_it_and_the_pool_goes_on,
            a_job_over_the_open_files_limit_gets_the_os_error_and_the_child_lives,
        ],
        common::sync_tests![
            children_die_with_their_parent,
            dropped_pools_leave_no_child_process,
        ],
    );
}
