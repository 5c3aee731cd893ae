//! The dashboard's side of the pools: a [`Hub`] that samples each pool once a period (stats,
//! workers, last failures, the period's latencies), keeps the last minutes of samples, and hands
//! every connected page the same JSON: a snapshot when it connects, a tick each period.
//!
//! Everything is read from what the pools keep anyway (`stats`, `worker_info`,
//! `recent_failures`, the latency totals): the hub subscribes to nothing on the bus, so a pool's
//! tasks cost the same with a dashboard connected as without (no result event is built for it).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value as Json};

use crate::pool::core::PoolCore;
use crate::pool::stats::LatencyWindow;
use crate::task::TaskId;

/// One pool as the hub watches it: weakly (a dashboard never keeps a pool alive).
pub(crate) struct Watched {
    pub(crate) core: Weak<PoolCore>,
    pub(crate) name: String,
    pub(crate) bound: Option<usize>,
    pub(crate) min: usize,
    pub(crate) max: usize,
}

/// What the hub remembers of one pool between samples.
#[derive(Default)]
struct Memory {
    history: VecDeque<Json>,
    /// done + failed at the last sample, and when.
    settled: Option<(u64, Instant)>,
    window: LatencyWindow,
    /// Per worker channel: the running task first seen there, and when (for workers that do not
    /// know their task's start: an age to within one period).
    seen: HashMap<String, (TaskId, Instant)>,
    mode: &'static str,
    /// The last tick's state of the pool (the snapshot's starting point).
    last: Json,
}

/// The pools of one dashboard, their memory, and the connected pages.
pub(crate) struct Hub {
    pub(crate) pools: Vec<Watched>,
    memory: Mutex<Vec<Memory>>,
    /// Each tick, serialized once for every page.
    pub(crate) ticks: tokio::sync::broadcast::Sender<Arc<str>>,
    pub(crate) every: Duration,
    keep: usize,
    pub(crate) actions: bool,
}

impl Hub {
    pub(crate) fn new(
        pools: Vec<Watched>,
        every: Duration,
        window: Duration,
        actions: bool,
    ) -> Self {
        let keep = (window.as_secs_f64() / every.as_secs_f64()).ceil().max(2.0) as usize;
        let memory = pools.iter().map(|_| Memory::default()).collect();
        Hub {
            pools,
            memory: Mutex::new(memory),
            ticks: tokio::sync::broadcast::channel(16).0,
            every,
            keep,
            actions,
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Vec<Memory>> {
        // Samples are whole values: a poisoned lock still holds a usable memory.
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Samples every pool once a period, on the first pool's bus, for as long as the hub lives.
    pub(crate) fn start(self: &Arc<Self>) {
        let Some(bus) = self
            .pools
            .iter()
            .find_map(|p| p.core.upgrade())
            .map(|c| c.bus.clone())
        else {
            return;
        };
        self.sample(); // the history starts now, and a page that connects at once sees a state
        let hub = Arc::downgrade(self);
        let every = self.every;
        bus.spawn(async move {
            let mut timer = tokio::time::interval(every);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer.tick().await;
            loop {
                timer.tick().await;
                let Some(hub) = hub.upgrade() else { return };
                hub.sample();
            }
        });
    }

    /// Takes one sample of every pool and sends it to the connected pages as a tick.
    fn sample(&self) {
        let t = unix_ms(SystemTime::now());
        let mut memory = self.memory();
        let pools: Vec<Json> = self
            .pools
            .iter()
            .zip(memory.iter_mut())
            .map(|(pool, mem)| sample_pool(pool, mem, t, self.keep))
            .collect();
        drop(memory);
        let tick = json!({ "t": t, "pools": pools }).to_string();
        let _ = self.ticks.send(tick.into()); // no page connected: nobody to tell
    }

    /// Everything a page needs to draw itself: the pools, their history, their last state.
    pub(crate) fn snapshot(&self) -> String {
        let memory = self.memory();
        let pools: Vec<Json> = self
            .pools
            .iter()
            .zip(memory.iter())
            .map(|(p, m)| {
                json!({
                    "name": p.name,
                    "mode": m.mode,
                    "bound": p.bound,
                    "min": p.min,
                    "max": p.max,
                    "history": m.history,
                    "state": m.last,
                })
            })
            .collect();
        json!({
            "t": unix_ms(SystemTime::now()),
            "every_ms": self.every.as_millis() as u64,
            "keep": self.keep,
            "actions": self.actions,
            "pools": pools,
        })
        .to_string()
    }
}

/// One pool's sample: appended to its history; returns the tick's part for this pool.
fn sample_pool(pool: &Watched, mem: &mut Memory, t: u64, keep: usize) -> Json {
    let Some(core) = pool.core.upgrade() else {
        mem.last = json!({ "gone": true, "stopped": true, "workers": [], "failures": [] });
        return json!({ "sample": Json::Null, "state": mem.last });
    };
    let stats = core.stats();
    let workers: Vec<_> = core.workers().iter().map(|w| w.info()).collect();
    if let Some(w) = workers.first() {
        mem.mode = w.mode.as_str();
    }
    let now = Instant::now();
    let settled = stats.done + stats.failed;
    let rate = match mem.settled.replace((settled, now)) {
        Some((before, at)) => {
            let secs = now.duration_since(at).as_secs_f64();
            (secs > 0.0).then(|| settled.saturating_sub(before) as f64 / secs)
        }
        None => None,
    };
    let period = mem.window.next(&core);
    let quantile = |q: f64| {
        period
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(q) as f64 / 1_000.0) // microseconds
    };
    let busy = workers.iter().filter(|w| w.running > 0).count();
    let sample = json!({
        "t": t,
        "rate": rate,
        "p50": quantile(0.50),
        "p99": quantile(0.99),
        "queued": stats.queued,
        "running": stats.running,
        "workers": stats.workers,
        "busy": busy,
    });
    mem.history.push_back(sample.clone());
    while mem.history.len() > keep {
        mem.history.pop_front();
    }
    // The age of each running task: the worker's own clock where it has one, else since this
    // hub first saw the task there.
    let mut seen = HashMap::new();
    let workers: Vec<Json> = workers
        .iter()
        .map(|w| {
            let channel = w.channel.as_str().to_string();
            let age = w.task.map(|task| match w.running_for {
                Some(d) => (d, true),
                None => {
                    let since = match mem.seen.get(&channel) {
                        Some((id, since)) if *id == task => *since,
                        _ => now,
                    };
                    seen.insert(channel.clone(), (task, since));
                    (now.duration_since(since), false)
                }
            });
            json!({
                "channel": channel,
                "mode": w.mode.as_str(),
                "pid": w.pid,
                "state": w.state.as_str(),
                "load": w.load,
                "running": w.running,
                "task": w.task.map(|t| t.0),
                "age_ms": age.map(|(d, _)| d.as_millis() as u64),
                "age_exact": age.map(|(_, exact)| exact),
            })
        })
        .collect();
    mem.seen = seen;
    let failures: Vec<Json> = core
        .recent
        .list()
        .iter()
        .rev()
        .map(|f| {
            json!({
                "seq": f.seq,
                "task": f.id.0,
                "worker": f.worker.as_str(),
                "kind": f.error.kind(),
                "error": f.error.to_string(),
                "attempt": f.attempt,
                "at": unix_ms(f.at),
            })
        })
        .collect();
    mem.last = json!({
        "stopped": core.is_stopped(),
        "gone": false,
        "totals": {
            "workers": stats.workers,
            "busy": busy,
            "pushed": stats.pushed,
            "done": stats.done,
            "failed": stats.failed,
            "queued": stats.queued,
            "running": stats.running,
            "retrying": stats.retrying,
            "retried": stats.retried,
            "restarted": stats.restarted,
            "recycled": stats.recycled,
        },
        "latency": stats.latency.map(|l| json!({
            "count": l.count,
            "p50": l.p50.as_nanos() as f64 / 1_000.0,
            "p99": l.p99.as_nanos() as f64 / 1_000.0,
        })),
        "workers": workers,
        "failures": failures,
    });
    json!({ "sample": sample, "state": mem.last })
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
