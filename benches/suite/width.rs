//! S12, width: a pool of many workers must cost no more per task than a pool of few (issue #16).
//!
//! 64 concurrent clients, each an actix task awaiting one no-op task after another (the shape of
//! a web server handing work to a pool), against pools of 2, 8, 32 and 128 workers: our default
//! strategy, ours with `RoundRobin`, and actix's `SyncArbiter` (one shared queue) of as many
//! threads. Interleaved by round; each width is a scenario of its own.

use std::future::Future;
use std::time::Instant;

use actix::prelude::*;
use circuits::prelude::*;

use crate::measure::{Config, Kind, Scenario};
use crate::threads::{noop, Noop, SyncWorker};

const CLIENTS: usize = 64;
const WIDTHS: [usize; 4] = [2, 8, 32, 128];

const DEFAULT: &str = "circuits pool.push().await, default strategy";
const ROUND_ROBIN: &str = "circuits pool.push().await, RoundRobin";
const SYNC: &str = "actix SyncArbiter send().await";
/// At the widest width, our 2-worker pool again, in the same rounds: the target compares the two
/// rates, and this machine's speed drifts between scenarios a minute apart.
const TWO: &str = "circuits pool.push().await, default strategy, 2 workers (same rounds)";

/// Every pool here is unbounded and running while tasks are pushed.
const RUNNING: &str = "an unbounded, running pool accepts every task";

/// `CLIENTS` actix tasks, each making `n / CLIENTS` calls one after another: calls per second.
async fn clients<F, Fut>(n: usize, call: F) -> f64
where
    F: Fn() -> Fut + Clone + 'static,
    Fut: Future + 'static,
{
    let each = n / CLIENTS;
    let t = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let call = call.clone();
            actix::spawn(async move {
                for _ in 0..each {
                    call().await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("a client ran to its end");
    }
    (each * CLIENTS) as f64 / t.elapsed().as_secs_f64()
}

pub fn s12(cfg: &Config) -> Vec<Scenario> {
    let n = cfg.size(256_000, 64_000);
    let sys = System::new();
    let mut out = Vec::new();
    let mut two_workers = None;
    for width in WIDTHS {
        let widest = width == WIDTHS[WIDTHS.len() - 1];
        let mut s = Scenario::new(
            &format!("S12 {width}"),
            &format!(
                "width: {CLIENTS} clients awaiting one no-op task after another, {width} workers{}",
                if widest { " (and our 2-worker pool, same rounds)" } else { "" }
            ),
            "tasks/s",
            true,
            "default strategy at least 1.0x SyncArbiter at every width; at 128 workers at least 0.8x our 2-worker rate",
        );
        for (name, kind) in [
            (DEFAULT, Kind::Ours),
            (ROUND_ROBIN, Kind::Ours),
            (SYNC, Kind::Peer),
        ] {
            s.add(name, kind);
        }
        if widest {
            s.add(TWO, Kind::Ours);
        }
        let two = widest.then(|| sys.block_on(async { Pool::builder().min(2).start() }));
        let (pool, rr, sync) = sys.block_on(async move {
            (
                Pool::builder().min(width).start(),
                Pool::builder()
                    .min(width)
                    .strategy(circuits::RoundRobin::new())
                    .start(),
                SyncArbiter::start(width, || SyncWorker),
            )
        });
        for _ in 0..cfg.rounds {
            let p = pool.clone();
            let v = sys.block_on(clients(n, move || p.push(Task::new(noop)).expect(RUNNING)));
            s.push(DEFAULT, v);
            let p = rr.clone();
            let v = sys.block_on(clients(n, move || p.push(Task::new(noop)).expect(RUNNING)));
            s.push(ROUND_ROBIN, v);
            let a = sync.clone();
            let v = sys.block_on(clients(n, move || a.send(Noop)));
            s.push(SYNC, v);
            if let Some(two) = &two {
                let p = two.clone();
                let v = sys.block_on(clients(n, move || p.push(Task::new(noop)).expect(RUNNING)));
                s.push(TWO, v);
            }
        }
        let ours = s.median_of(DEFAULT);
        let vs_sync = ours / s.median_of(SYNC);
        let base = *two_workers.get_or_insert(ours);
        let vs_two = if widest {
            ours / s.median_of(TWO)
        } else {
            ours / base
        };
        let ok = vs_sync >= 1.0 && (!widest || vs_two >= 0.8);
        let text = if widest {
            format!("{vs_sync:.2}x SyncArbiter (target >= 1.0x); {vs_two:.2}x our 2-worker rate in the same rounds (target >= 0.8x)")
        } else {
            format!("{vs_sync:.2}x SyncArbiter (target >= 1.0x); {vs_two:.2}x our 2-worker rate")
        };
        s.judge(ok, text);
        sys.block_on(async move {
            pool.stop().await;
            rr.stop().await;
            if let Some(two) = two {
                two.stop().await;
            }
        });
        out.push(s);
    }
    out
}
