//! Chaos: nothing is lost or doubled while children are SIGKILLed at random, tasks panic, and
//! children write garbage, close their pipe mid-frame, or produce outputs that cannot be encoded.
//! Own `main` (`harness = false`): worker processes are this binary, re-executed.

mod common;

use common::{bounded, children, BOUND};

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use circuits::prelude::*;
use circuits::{ProcessConfig, TaskId};
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
                let fd = protocol_fd().expect("the protocol pipe is open");
                // A length prefix of 5 and five bytes that decode to no frame.
                raw_write(fd, &[5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff]);
                // Wait to be killed by the parent, which now knows this child is broken.
                std::thread::sleep(Duration::from_secs(30));
                Refuses
            }
            Hostile::HalfFrame => {
                let fd = protocol_fd().expect("the protocol pipe is open");
                raw_write(fd, &[100, 0, 0, 0, 1, 2, 3]);
                std::process::exit(0);
            }
            Hostile::Unencodable => Refuses,
        }
    }
}

fn jobs() -> Jobs {
    Jobs::new().register::<Work>().register::<Hostile>()
}

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Success,
    Failure(TaskError),
    Complete(bool),
}

type Events = Arc<Mutex<HashMap<TaskId, Vec<Seen>>>>;

struct Collector(Events);
impl Actor for Collector {
    type Context = Context<Self>;
}
impl Handler<TaskSuccess<u64>> for Collector {
    type Result = ();
    fn handle(&mut self, e: TaskSuccess<u64>, _: &mut Context<Self>) {
        self.0
            .lock()
            .unwrap()
            .entry(e.id)
            .or_default()
            .push(Seen::Success);
    }
}
impl Handler<TaskFailure> for Collector {
    type Result = ();
    fn handle(&mut self, e: TaskFailure, _: &mut Context<Self>) {
        self.0
            .lock()
            .unwrap()
            .entry(e.id)
            .or_default()
            .push(Seen::Failure(e.error));
    }
}
impl Handler<TaskComplete> for Collector {
    type Result = ();
    fn handle(&mut self, e: TaskComplete, _: &mut Context<Self>) {
        self.0
            .lock()
            .unwrap()
            .entry(e.id)
            .or_default()
            .push(Seen::Complete(e.ok));
    }
}

fn collect(pool: &PoolHandle) -> Events {
    let events: Events = Default::default();
    let c = Collector(events.clone()).start();
    let (bus, ch) = (pool.bus(), pool.channel());
    bus.subscribe(ch, c.clone().recipient::<TaskSuccess<u64>>())
        .unwrap();
    bus.subscribe(ch, c.clone().recipient::<TaskFailure>())
        .unwrap();
    bus.subscribe(ch, c.recipient::<TaskComplete>()).unwrap();
    events
}

/// Waits for `n` tasks to have their `TaskComplete`, then checks each has exactly one terminal event
/// followed by one `TaskComplete`, ids 1..=n with none missing; returns the terminal events.
async fn exactly_one_event_each(events: &Events, n: usize) -> HashMap<TaskId, Seen> {
    let seen = bounded(async {
        loop {
            {
                let e = events.lock().unwrap();
                let done = e
                    .values()
                    .filter(|v| v.iter().any(|s| matches!(s, Seen::Complete(_))))
                    .count();
                if done >= n {
                    return e.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(seen.len(), n, "one entry per task id");
    let mut terminal = HashMap::new();
    for i in 1..=n as u64 {
        let s = seen
            .get(&TaskId(i))
            .unwrap_or_else(|| panic!("task {i} has no events"));
        match &s[..] {
            [Seen::Success, Seen::Complete(true)] => terminal.insert(TaskId(i), Seen::Success),
            [Seen::Failure(e), Seen::Complete(false)] => {
                terminal.insert(TaskId(i), Seen::Failure(e.clone()))
            }
            other => panic!("task {i}: {other:?}"),
        };
    }
    terminal
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
    let events = collect(&pool);
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
                        (n, pool.push(Task::job(Work { n, us: 40 })))
                    })
                    .collect();
                values
                    .into_iter()
                    .map(|(n, mut v)| (n, v.wait_blocking(BOUND)))
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
            Err(TaskError::WorkerCrashed { .. }) => crashed += 1,
            Err(e) => panic!("job {n} ended with {e:?}"),
        }
    }
    let terminal = exactly_one_event_each(&events, PER * PRODUCERS).await;
    let successes = terminal
        .values()
        .filter(|s| matches!(s, Seen::Success))
        .count();
    assert_eq!(successes, ok, "events agree with values");
    let k = kills.load(Ordering::Relaxed);
    assert!(k > 10, "the killer killed only {k} children");
    // A kill fails at most the one task its child was running (none if it was idle or starting).
    assert!(crashed <= k, "{crashed} tasks failed for {k} kills");
    println!(
        "  process chaos: {} jobs, {k} kills, {ok} succeeded, {crashed} crashed",
        results.len()
    );
    // The pool is whole again and serves.
    bounded(async {
        while children().len() != 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(pool.workers().len(), 3);
    for i in 0..100 {
        assert_eq!(
            bounded(pool.push(Task::job(Work { n: i, us: 0 }))).await,
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
    let events = collect(&pool);
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
                        (n, pool.push(task))
                    })
                    .collect();
                values
                    .into_iter()
                    .map(|(n, mut v)| (n, v.wait_blocking(BOUND)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut panicked = 0;
    for p in producers {
        for (n, r) in p.join().unwrap() {
            match r {
                Ok(v) => assert_eq!(v, n),
                Err(TaskError::Panicked(m)) => {
                    assert_eq!(m, format!("chaos {n}"));
                    panicked += 1;
                }
                Err(e) => panic!("task {n} ended with {e:?}"),
            }
        }
    }
    assert_eq!(panicked, 2_000);
    let terminal = exactly_one_event_each(&events, PER * 4).await;
    assert_eq!(
        terminal
            .values()
            .filter(|s| matches!(s, Seen::Failure(_)))
            .count(),
        2_000
    );
    assert_eq!(pool.workers().len(), 3);
    bounded(pool.stop()).await;
}

async fn hostile_children_are_treated_as_crashed_and_replaced() {
    let pool = Pool::builder().min(1).process().start();
    let garbage = bounded(pool.push(Task::job(Hostile::Garbage))).await;
    match garbage {
        Err(TaskError::WorkerCrashed { reason, .. }) => {
            assert!(reason.contains("protocol violation"), "{reason}")
        }
        other => panic!("garbage on the wire: {other:?}"),
    }
    let half = bounded(pool.push(Task::job(Hostile::HalfFrame))).await;
    assert!(
        matches!(half, Err(TaskError::WorkerCrashed { .. })),
        "{half:?}"
    );
    let unencodable = bounded(pool.push(Task::job(Hostile::Unencodable))).await;
    assert!(
        matches!(&unencodable, Err(TaskError::Wire(m)) if m.contains("does not encode")),
        "{unencodable:?}"
    );
    for i in 0..50 {
        assert_eq!(
            bounded(pool.push(Task::job(Work { n: i, us: 0 }))).await,
            Ok(i)
        );
    }
    bounded(pool.stop()).await;
    assert!(children().is_empty());
}

type AsyncTest = fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

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
    let tests: Vec<(&str, AsyncTest)> = vec![
        ("process_chaos_loses_and_doubles_nothing", || {
            Box::pin(process_chaos_loses_and_doubles_nothing())
        }),
        ("thread_chaos_loses_and_doubles_nothing", || {
            Box::pin(thread_chaos_loses_and_doubles_nothing())
        }),
        (
            "hostile_children_are_treated_as_crashed_and_replaced",
            || Box::pin(hostile_children_are_treated_as_crashed_and_replaced()),
        ),
    ];
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let (mut passed, mut failed) = (0, 0);
    for (name, t) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let started = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| actix::System::new().block_on(t()))) {
            Ok(()) => {
                println!(
                    "test {name} ... ok ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("\nchaos: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
