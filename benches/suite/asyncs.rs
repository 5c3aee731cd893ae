//! S11: async tasks (issue #14). No-op futures and 1 ms `tokio::time::sleep` futures on 2 async
//! workers, 1, 16, 64 and 256 in flight per worker (2, 32, 128 and 512 in all), kept in flight from
//! the submitting side: tasks per second and the p99 of each task's latency (submit -> result seen
//! by the submitter).
//!
//! Contenders, all with 2 threads that run the futures and the submitter on the main thread:
//! - ours: `Pool::builder().min(2).async_workers(in_flight)`, `pool.push(Task::future(..))`;
//! - `tokio::spawn` on a 2-thread multi-thread runtime, bounded by a `Semaphore` of 2 x in_flight
//!   permits (the permit is taken before the spawn, the result sent back on a channel);
//! - actix: two `Arbiter`s, `Arbiter::spawn` round robin, the result on a oneshot;
//! - the floor: a `JoinSet` on the same 2-thread runtime, refilled as each task is joined.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use circuits::prelude::*;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::measure::{Config, Kind, Scenario};

const OURS: &str = "circuits async_workers, pool.push(Task::future)";
const SEMAPHORE: &str = "tokio::spawn + Semaphore";
const ARBITER: &str = "actix Arbiter::spawn + oneshot";
const FLOOR: &str = "floor: tokio JoinSet";

/// An unbounded, running pool accepts every task.
const RUNNING: &str = "an unbounded, running pool accepts every task";

/// The task: returns at once, or sleeps on the running thread's Tokio timer.
async fn work(sleep: Option<Duration>) {
    if let Some(d) = sleep {
        tokio::time::sleep(d).await;
    }
}

/// One sample: tasks per second and each task's latency.
struct Sample {
    rate: f64,
    latencies: Vec<Duration>,
}

impl Sample {
    /// The p99 latency in microseconds.
    fn p99_us(&mut self) -> f64 {
        let n = self.latencies.len();
        if n == 0 {
            return f64::NAN;
        }
        let i = (n * 99).div_ceil(100) - 1;
        let (_, p, _) = self.latencies.select_nth_unstable(i);
        p.as_secs_f64() * 1e6
    }
}

/// Keeps `inflight` calls going until `n` are done (each call submits one task and resolves with
/// its result); the latency of a task runs from its call to its result.
async fn pipelined<F, Fut>(n: usize, inflight: usize, mut call: F) -> Sample
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut latencies = Vec::with_capacity(n);
    let t = Instant::now();
    let mut running = FuturesUnordered::new();
    let mut submit = |running: &mut FuturesUnordered<_>| {
        let t0 = Instant::now();
        let f = call();
        running.push(async move {
            f.await;
            t0.elapsed()
        });
    };
    let mut started = 0;
    while started < n.min(inflight) {
        submit(&mut running);
        started += 1;
    }
    while let Some(lat) = running.next().await {
        latencies.push(lat);
        if started < n {
            submit(&mut running);
            started += 1;
        }
    }
    Sample {
        rate: n as f64 / t.elapsed().as_secs_f64(),
        latencies,
    }
}

/// `tokio::spawn` bounded by a semaphore: the submitter takes a permit, then spawns; the task sends
/// its submit time back on a channel and drops its permit. The submitter receives the results
/// concurrently (same thread).
async fn semaphore(n: usize, inflight: usize, sleep: Option<Duration>) -> Sample {
    let sem = Arc::new(Semaphore::new(inflight));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let t = Instant::now();
    let submit = async {
        for _ in 0..n {
            let permit = sem.clone().acquire_owned().await.expect("never closed");
            let tx = tx.clone();
            let t0 = Instant::now();
            tokio::spawn(async move {
                work(sleep).await;
                let _ = tx.send(t0);
                drop(permit);
            });
        }
    };
    let collect = async {
        let mut latencies = Vec::with_capacity(n);
        while latencies.len() < n {
            let t0 = rx.recv().await.expect("every task answers");
            latencies.push(t0.elapsed());
        }
        latencies
    };
    // The collector is polled first: results are taken before the submitter refills (as in the
    // other contenders' loops), so a long run of refills does not count against their latency.
    let (latencies, ()) = futures::join!(collect, submit);
    Sample {
        rate: n as f64 / t.elapsed().as_secs_f64(),
        latencies,
    }
}

/// The floor: a `JoinSet` refilled as each task is joined.
async fn join_set(n: usize, inflight: usize, sleep: Option<Duration>) -> Sample {
    let mut latencies = Vec::with_capacity(n);
    let t = Instant::now();
    let mut set = JoinSet::new();
    let spawn = |set: &mut JoinSet<Instant>| {
        let t0 = Instant::now();
        set.spawn(async move {
            work(sleep).await;
            t0
        });
    };
    let mut started = 0;
    while started < n.min(inflight) {
        spawn(&mut set);
        started += 1;
    }
    while let Some(t0) = set.join_next().await {
        latencies.push(t0.expect("the task ran").elapsed());
        if started < n {
            spawn(&mut set);
            started += 1;
        }
    }
    Sample {
        rate: n as f64 / t.elapsed().as_secs_f64(),
        latencies,
    }
}

pub fn s11(cfg: &Config) -> Vec<Scenario> {
    let sys = System::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("the tokio runtime starts");
    let arbiters = sys.block_on(async { [Arbiter::new(), Arbiter::new()] });
    let mut out = Vec::new();
    for (label, sleep) in [
        ("no-op", None),
        ("1 ms sleep", Some(Duration::from_millis(1))),
    ] {
        let short = if sleep.is_some() { "sleep" } else { "noop" };
        for per_worker in [1usize, 16, 64, 256] {
            let inflight = 2 * per_worker;
            // Each sample bounded in time. No-op: a fixed count, fewer at 2 in flight (every task
            // is then a round trip between threads: 30-130k per second here, against 0.5-1.2M
            // with more in flight). Sleep: a fixed number of generations of `inflight` tasks, so
            // a sample lasts about as long whatever the concurrency (at 2 in flight, 1 ms sleeps
            // run at ~900 per second: the timer's 1 ms resolution rounds each up).
            let n = match (sleep, per_worker) {
                (None, 1) => cfg.size(8_000, 3_000),
                (None, _) => cfg.size(60_000, 15_000),
                (Some(_), _) => inflight * cfg.size(100, 30),
            };
            let what = format!(
                "async {label} tasks, 2 workers, {per_worker} in flight per worker ({inflight} in all), {n} tasks"
            );
            let mut rate = Scenario::new(
                &format!("S11 {short} {per_worker}/w"),
                &format!("{what}: throughput"),
                "tasks/s",
                true,
                "within 1.5x of the floor's throughput",
            );
            let mut p99 = Scenario::new(
                &format!("S11 {short} {per_worker}/w p99"),
                &format!("{what}: p99 latency, submit to result"),
                "us (p99)",
                false,
                "report only (the issue sets no latency target)",
            );
            for s in [&mut rate, &mut p99] {
                s.add(OURS, Kind::Ours);
                s.add(SEMAPHORE, Kind::Peer);
                s.add(ARBITER, Kind::Peer);
                s.add(FLOOR, Kind::Floor);
            }
            let pool =
                sys.block_on(async { Pool::builder().min(2).async_workers(per_worker).start() });
            for _ in 0..cfg.rounds {
                let mut record = |name: &str, mut sample: Sample| {
                    assert_eq!(sample.latencies.len(), n, "{name}: every task answered");
                    rate.push(name, sample.rate);
                    p99.push(name, sample.p99_us());
                };
                let v = sys.block_on(pipelined(n, inflight, || {
                    let v = pool.push(Task::future(work(sleep))).expect(RUNNING);
                    async move { v.await.expect("the task ran") }
                }));
                record(OURS, v);
                record(SEMAPHORE, rt.block_on(semaphore(n, inflight, sleep)));
                let mut next = 0usize;
                let v = sys.block_on(pipelined(n, inflight, || {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    next += 1;
                    let spawned = arbiters[next % 2].spawn(async move {
                        work(sleep).await;
                        let _ = tx.send(());
                    });
                    assert!(spawned, "the arbiter runs");
                    async move { rx.await.expect("the arbiter answered") }
                }));
                record(ARBITER, v);
                record(FLOOR, rt.block_on(join_set(n, inflight, sleep)));
            }
            sys.block_on(pool.stop());
            let behind = rate.advantage(FLOOR, OURS);
            let (ours_p99, floor_p99) = (p99.median_of(OURS), p99.median_of(FLOOR));
            rate.judge(
                behind <= 1.5,
                format!(
                    "floor / ours = {behind:.2}x (target <= 1.5x); {:.2}x tokio::spawn + Semaphore, {:.2}x actix Arbiter",
                    rate.advantage(OURS, SEMAPHORE),
                    rate.advantage(OURS, ARBITER)
                ),
            );
            p99.judge(
                true,
                format!(
                    "ours {ours_p99:.0} us, floor {floor_p99:.0} us ({:.2}x the floor's)",
                    ours_p99 / floor_p99
                ),
            );
            out.push(rate);
            out.push(p99);
        }
    }
    for a in arbiters {
        a.stop();
    }
    out
}
