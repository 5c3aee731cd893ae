//! Chaos: nothing is lost or doubled while children are SIGKILLed at random, tasks panic, and
//! children write garbage, close their pipe mid-frame, or produce outputs that cannot be encoded.
//! Own `main` (`harness = false`): worker processes are this binary, re-executed.

mod common;

use common::{bounded, children, collect, eventually, one_outcome_each, Seen, BOUND};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use circuits::prelude::*;
use circuits::{Exit, ProcessConfig, WireError};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Spins for about `us` microseconds, then answers `n`.
#[derive(Serialize, Deserialize)]
struct Work {
    n: u64,
    us: u64,
}
impl Job for Work {
    const NAME: &'static str = "work";
    type Output = u64;
    fn run(self) -> u64 {
        let until = Instant::now() + Duration::from_micros(self.us);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        self.n
    }
}

/// Misbehaves on the wire.
#[derive(Serialize, Deserialize)]
enum Hostile {
    /// Writes bytes that are no frame onto the protocol pipe.
    Garbage,
    /// Writes half a frame, then exits.
    HalfFrame,
    /// Returns an output whose serialization fails.
    Unencodable,
}

/// An output that refuses to be serialized.
#[derive(Debug, Clone, Deserialize)]
struct Refuses;
impl Serialize for Refuses {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this output refuses to be encoded",
        ))
    }
}

/// The child's protocol output: the only write-only pipe among fds 3 and up.
fn protocol_fd() -> Option<i32> {
    (3..256).find(|&fd| {
        // SAFETY: fcntl and fstat on a descriptor number only read its flags and status.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            let mut st: libc::stat = std::mem::zeroed();
            flags >= 0
                && flags & libc::O_ACCMODE == libc::O_WRONLY
                && libc::fstat(fd, &mut st) == 0
                && st.st_mode & libc::S_IFMT == libc::S_IFIFO
        }
    })
}

/// The shared-memory rings' memory, when this child has them (`/proc/self/fd/N`).
fn ring_memory() -> Option<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("/memfd:circuits-ring"))
        })
        .map(|e| e.path())
}

/// Writes `bytes` into the shared-memory answers ring at its tail and publishes them, as a child
/// that ignores the protocol would (the layout of `src/wire/ring`: a 4 KiB header with the
/// capacity at byte 12 and the answers ring's tail at byte 384, then the jobs ring, then the
/// answers ring).
fn ring_write(memory: &std::path::Path, bytes: &[u8]) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(memory)
        .unwrap();
    let len = file.metadata().unwrap().len() as usize;
    // SAFETY: maps the ring's memfd shared, writes inside its length, and unmaps it; the tail is
    // an 8-byte aligned word the parent reads atomically.
    unsafe {
        use std::os::fd::AsRawFd;
        let base = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
        .cast::<u8>();
        assert_ne!(base.cast(), libc::MAP_FAILED);
        let cap = base.add(12).cast::<u32>().read() as usize;
        let tail = &*base.add(384).cast::<std::sync::atomic::AtomicU64>();
        let at = tail.load(Ordering::Acquire);
        let data = base.add(4096 + cap);
        for (i, b) in bytes.iter().enumerate() {
            *data.add((at as usize + i) & (cap - 1)) = *b;
        }
        tail.store(at + bytes.len() as u64, Ordering::Release);
        libc::munmap(base.cast(), len);
    }
}

fn raw_write(fd: i32, bytes: &[u8]) {
    // SAFETY: writing a buffer we own to a descriptor we found open for writing.
    unsafe {
        libc::write(fd, bytes.as_ptr().cast(), bytes.len());
    }
}

impl Job for Hostile {
    const NAME: &'static str = "hostile";
    type Output = Refuses;
    fn run(self) -> Refuses {
        match self {
            Hostile::Garbage => {
                // A length prefix of 5 and five bytes that decode to no frame.
                let garbage = [5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff];
                if let Some(ring) = ring_memory() {
                    // Published into the shared memory without waking the parent: it reads it
                    // when it sees this process end.
                    ring_write(&ring, &garbage);
                    std::process::exit(0);
                }
                let fd = protocol_fd().expect("the protocol pipe is open");
                raw_write(fd, &garbage);
                // Wait to be killed by the parent, which now knows this child is broken.
                std::thread::sleep(Duration::from_secs(30));
                Refuses
            }
            Hostile::HalfFrame => {
                let half = [100, 0, 0, 0, 1, 2, 3];
                match ring_memory() {
                    Some(ring) => ring_write(&ring, &half),
                    None => raw_write(protocol_fd().expect("the protocol pipe is open"), &half),
                }
                std::process::exit(0);
            }
            Hostile::Unencodable => Refuses,
        }
    }
}

fn jobs() -> Jobs {
    Jobs::new().register::<Work>().register::<Hostile>()
}

/// 20,000 jobs from 4 producers while a killer SIGKILLs a random child after every 150 settled
/// tasks (paced by progress, not by the clock, so a busy machine gets as many kills per task).
async fn process_chaos_loses_and_doubles_nothing() {
    const PER: usize = 5_000;
    const PRODUCERS: usize = 4;
    const KILL_EVERY: u64 = 150;
    // The killer also kills children that are still starting: enough kills in a row trip the
    // limit of failed starts (whose tasks then fail `WorkerStartFailed`, see tests/lifecycle.rs).
    // This test checks crash attribution, so it raises that limit and keeps the back-off short.
    let config = ProcessConfig::default()
        .max_start_failures(1_000)
        .restart_backoff(Duration::from_millis(10), Duration::from_millis(50));
    let pool = Pool::builder().min(3).process_with(config).start();
    let mut events = collect::<u64>(&pool);
    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (done, kills, pool) = (done.clone(), kills.clone(), pool.clone());
        std::thread::spawn(move || {
            let mut rng = rand::thread_rng();
            let mut last = 0;
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
                let stats = pool.stats();
                let settled = stats.done + stats.failed;
                if settled < last + KILL_EVERY {
                    continue;
                }
                last = settled;
                let c = children();
                if let Some(&pid) = c.get(rng.gen_range(0..c.len().max(1))) {
                    // SAFETY: SIGKILL to our own child process, found in /proc just now.
                    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0 {
                        kills.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let values: Vec<_> = (0..PER)
                    .map(|i| {
                        let n = (p * PER + i) as u64;
                        let v = pool
                            .push(Task::job(Work { n, us: 40 }))
                            .unwrap_or_else(|e| panic!("job {n} was refused: {e}"));
                        (n, v)
                    })
                    .collect();
                values
                    .into_iter()
                    .map(|(n, mut v)| {
                        let r = v
                            .wait_blocking(BOUND)
                            .unwrap_or_else(|e| panic!("job {n}: {e}"));
                        (n, r)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut results = Vec::new();
    for p in producers {
        results.extend(p.join().unwrap());
    }
    done.store(true, Ordering::Release);
    killer.join().unwrap();
    let (mut ok, mut crashed) = (0, 0);
    for (n, r) in &results {
        match r {
            Ok(v) => {
                assert_eq!(v, n);
                ok += 1;
            }
            // Only the killer's SIGKILLs end children here.
            Err(TaskError::WorkerCrashed {
                exit: Exit::Signal(9),
                ..
            }) => crashed += 1,
            Err(e) => panic!("job {n} ended with {e:?}"),
        }
    }
    let seen = events.until_complete(PER * PRODUCERS).await;
    let terminal = one_outcome_each(&seen, PER * PRODUCERS);
    // The events agree with the values: the same outputs succeeded, the rest crashed.
    let succeeded = common::success_values(&terminal);
    let mut ok_values: Vec<u64> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().copied())
        .collect();
    ok_values.sort_unstable();
    assert_eq!(succeeded.len(), ok, "events agree with values");
    assert_eq!(succeeded, ok_values, "the success events carry the values");
    let crashed_events = terminal
        .values()
        .filter(|s| {
            // The event names the worker the error names: the one whose child was killed.
            matches!(
                s,
                Seen::Failure(w, TaskError::WorkerCrashed { worker, exit: Exit::Signal(9) })
                    if w == worker
            )
        })
        .count();
    assert_eq!(
        crashed_events + succeeded.len(),
        terminal.len(),
        "every failure event is a crash"
    );
    assert_eq!(crashed_events, crashed, "crash events agree with values");
    let k = kills.load(Ordering::Relaxed);
    assert!(k > 10, "the killer killed only {k} children");
    // A kill fails at most the one task its child was running (none if it was idle or starting).
    assert!(crashed <= k, "{crashed} tasks failed for {k} kills");
    println!(
        "  process chaos: {} jobs, {k} kills, {ok} succeeded, {crashed} crashed",
        results.len()
    );
    // The pool is whole again and serves (a child's start has no event: /proc is polled).
    assert!(
        eventually(30, || children().len() == 3).await,
        "the pool has its 3 children again: {:?}",
        children()
    );
    assert_eq!(pool.workers().len(), 3);
    for i in 0..100 {
        assert_eq!(
            bounded(pool.run(Task::job(Work { n: i, us: 0 }))).await,
            Ok(i)
        );
    }
    bounded(pool.stop()).await;
    assert!(children().is_empty(), "no orphans: {:?}", children());
}

/// Thread mode: 20,000 tasks from 4 producers, one in ten panicking.
async fn thread_chaos_loses_and_doubles_nothing() {
    const PER: usize = 5_000;
    let pool = Pool::builder().min(3).start();
    let mut events = collect::<u64>(&pool);
    let producers: Vec<_> = (0..4usize)
        .map(|p| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let values: Vec<_> = (0..PER)
                    .map(|i| {
                        let n = (p * PER + i) as u64;
                        let task = Task::new(move || {
                            if n % 10 == 3 {
                                panic!("chaos {n}");
                            }
                            n
                        });
                        let v = pool
                            .push(task)
                            .unwrap_or_else(|e| panic!("task {n} was refused: {e}"));
                        (n, v)
                    })
                    .collect();
                values
                    .into_iter()
                    .map(|(n, mut v)| {
                        let r = v
                            .wait_blocking(BOUND)
                            .unwrap_or_else(|e| panic!("task {n}: {e}"));
                        (n, r)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut panicked = 0;
    let mut ok_values = Vec::new();
    for p in producers {
        for (n, r) in p.join().unwrap() {
            match r {
                Ok(v) => {
                    assert_eq!(v, n);
                    ok_values.push(v);
                }
                Err(TaskError::Panicked(m)) => {
                    assert_eq!(m, format!("chaos {n}"));
                    panicked += 1;
                }
                Err(e) => panic!("task {n} ended with {e:?}"),
            }
        }
    }
    assert_eq!(panicked, 2_000);
    let seen = events.until_complete(PER * 4).await;
    let terminal = one_outcome_each(&seen, PER * 4);
    let failures = terminal
        .values()
        .filter(
            |s| matches!(s, Seen::Failure(_, TaskError::Panicked(m)) if m.starts_with("chaos ")),
        )
        .count();
    assert_eq!(failures, 2_000);
    let succeeded = common::success_values(&terminal);
    ok_values.sort_unstable();
    assert_eq!(succeeded, ok_values, "the success events carry the values");
    assert_eq!(pool.workers().len(), 3);
    bounded(pool.stop()).await;
}

/// Frames through the pipes.
async fn hostile_children_on_pipes_are_treated_as_crashed_and_replaced() {
    hostile_children_are_treated_as_crashed_and_replaced(ProcessConfig::default().shared_memory(0))
        .await;
}

/// Frames through the shared-memory rings (the default).
async fn hostile_children_on_shared_memory_are_treated_as_crashed_and_replaced() {
    hostile_children_are_treated_as_crashed_and_replaced(ProcessConfig::default()).await;
}

async fn hostile_children_are_treated_as_crashed_and_replaced(config: ProcessConfig) {
    let pool = Pool::builder().min(1).process_with(config).start();
    let first = pool.workers()[0].clone();
    let garbage = bounded(pool.run(Task::job(Hostile::Garbage))).await;
    match garbage {
        // The five bytes are no frame: the child broke the protocol and the pool killed it.
        Err(RunError::Task(
            ref e @ TaskError::WorkerCrashed {
                ref worker,
                exit: Exit::Protocol(WireError::Decode(_)),
            },
        )) => {
            assert_eq!(
                *worker, first,
                "the error names the worker that ran the job"
            );
            assert!(e.to_string().contains("broke the protocol"), "{e}");
        }
        other => panic!("garbage on the wire: {other:?}"),
    }
    let half = bounded(pool.run(Task::job(Hostile::HalfFrame))).await;
    assert!(
        // Its output ended mid-frame because it exited (with code 0, as the job does).
        matches!(
            half,
            Err(RunError::Task(TaskError::WorkerCrashed {
                exit: Exit::Code(0),
                ..
            }))
        ),
        "{half:?}"
    );
    let unencodable = bounded(pool.run(Task::job(Hostile::Unencodable))).await;
    assert!(
        matches!(
            &unencodable,
            // postcard keeps no custom message: the variant says "does not encode", the text
            // names the job.
            Err(RunError::Task(TaskError::Wire(WireError::Encode(m))))
                if m.contains("\"hostile\"")
        ),
        "{unencodable:?}"
    );
    for i in 0..50 {
        assert_eq!(
            bounded(pool.run(Task::job(Work { n: i, us: 0 }))).await,
            Ok(i)
        );
    }
    bounded(pool.stop()).await;
    assert!(children().is_empty());
}

fn main() {
    circuits::init(jobs());
    // Deliberate panics would flood the output; their outcomes are asserted.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("circuits-worker"))
        {
            default(info);
        }
    }));
    common::run_main(
        "chaos",
        common::async_tests![
            process_chaos_loses_and_doubles_nothing,
            thread_chaos_loses_and_doubles_nothing,
            hostile_children_on_pipes_are_treated_as_crashed_and_replaced,
            hostile_children_on_shared_memory_are_treated_as_crashed_and_replaced,
        ],
        Vec::new(),
    );
}
