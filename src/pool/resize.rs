//! An elastic pool: workers added and retired between `min` and `max`, by hand
//! ([`PoolHandle::resize`](crate::PoolHandle::resize)) or by a [`Resizer`] watching the pressure;
//! lost (stuck) workers replaced; [`WorkerStarted`] and [`WorkerStopped`] announced.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::core::{Link, PoolCore};
use super::error::PoolError;
use crate::bus::Target;
use crate::channel::Channel;
use crate::task::StuckHook;
use crate::tree::Stop;
use crate::worker::{Shutdown, Worker, WorkerSlot};

/// Fired on the pool's channel when a worker joins the pool.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct WorkerStarted {
    /// The new worker's channel.
    pub worker: Channel,
    /// How many workers the pool has now.
    pub workers: usize,
}

/// Fired on the pool's channel when a worker leaves the pool (retired by a resize, or lost to a
/// stuck task).
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct WorkerStopped {
    /// The worker's channel.
    pub worker: Channel,
    /// How many workers the pool has now.
    pub workers: usize,
    /// Why: `"resized"` or `"lost: ..."`.
    pub reason: String,
}

/// How the pool resizes itself from measured pressure, in the spirit of Akka's `DefaultResizer`.
///
/// Every `interval` the resizer counts the busy workers (load at least `pressure_threshold`). When
/// every worker is busy and tasks are waiting, it grows by `rampup_rate` of the current size (at
/// least one worker); when fewer than `backoff_threshold` of the workers are busy, it shrinks by
/// `backoff_rate` (at least one). After a resize it waits `cooldown` before the next. Always within
/// `min..=max`.
///
/// ```
/// use std::time::Duration;
/// use circuits::prelude::*;
/// use circuits::Resizer;
///
/// # #[actix::main] async fn main() {
/// let pool = Pool::builder()
///     .min(1)
///     .max(4)
///     .resizer(Resizer::default().cooldown(Duration::from_millis(50)))
///     .start();
/// pool.stop().await;
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resizer {
    /// A worker with at least this many tasks (queued + running) counts as busy (default 1).
    pub pressure_threshold: usize,
    /// Grow by this fraction of the current size when all workers are busy (default 0.2).
    pub rampup_rate: f64,
    /// Shrink when fewer than this fraction of the workers are busy (default 0.3).
    pub backoff_threshold: f64,
    /// Shrink by this fraction of the current size (default 0.1).
    pub backoff_rate: f64,
    /// How often pressure is measured (default 100 ms).
    pub interval: Duration,
    /// The least time between two resizes (default 1 s).
    pub cooldown: Duration,
}

impl Default for Resizer {
    fn default() -> Self {
        Resizer {
            pressure_threshold: 1,
            rampup_rate: 0.2,
            backoff_threshold: 0.3,
            backoff_rate: 0.1,
            interval: Duration::from_millis(100),
            cooldown: Duration::from_secs(1),
        }
    }
}

impl Resizer {
    /// Sets how often pressure is measured.
    pub fn interval(mut self, every: Duration) -> Self {
        self.interval = every.max(Duration::from_millis(1));
        self
    }
    /// Sets the least time between two resizes.
    pub fn cooldown(mut self, wait: Duration) -> Self {
        self.cooldown = wait;
        self
    }
    /// Sets the busy threshold, in tasks per worker.
    pub fn pressure_threshold(mut self, tasks: usize) -> Self {
        self.pressure_threshold = tasks.max(1);
        self
    }

    /// The size to move to from each worker's `(load, running)`, or `None` to stay. A worker is
    /// busy when its load reaches the threshold or it is running a task (a task it stole counts
    /// on its victim's load); tasks are waiting when the loads exceed what is running.
    pub(crate) fn decide(
        &self,
        workers: &[(usize, usize)],
        min: usize,
        max: usize,
    ) -> Option<usize> {
        let n = workers.len();
        if n == 0 {
            return Some(min);
        }
        let busy = workers
            .iter()
            .filter(|(load, running)| *load >= self.pressure_threshold || *running > 0)
            .count();
        let load: usize = workers.iter().map(|w| w.0).sum();
        let running: usize = workers.iter().map(|w| w.1).sum();
        let waiting = load > running;
        let step = |rate: f64| ((n as f64 * rate).ceil() as usize).max(1);
        let target = if busy == n && waiting {
            (n + step(self.rampup_rate)).min(max)
        } else if (busy as f64) < n as f64 * self.backoff_threshold {
            n.saturating_sub(step(self.backoff_rate)).max(min)
        } else {
            n
        };
        (target != n).then_some(target)
    }
}

/// Starts one worker: its backend, its actor, its component and its route; fires `WorkerStarted`.
pub(crate) fn add_worker(core: &Arc<PoolCore>) -> Result<Arc<WorkerSlot>, PoolError> {
    let channel = Channel::unique();
    let fin = Arc::new(core.finisher(&channel));
    let load = Arc::new(AtomicUsize::new(0));
    let backend = core
        .kind
        .spawn(fin.clone(), load.clone())
        .map_err(|e| PoolError::Spawn(e.to_string()))?;
    let slot = Arc::new(WorkerSlot {
        channel: RwLock::new(channel.clone()),
        load,
        fin: RwLock::new(fin.clone()),
        backend,
        component: Mutex::new(None),
        stopper: OnceLock::new(),
        route: Mutex::new(None),
        retired: std::sync::atomic::AtomicBool::new(false),
    });
    let link: Arc<dyn crate::worker::PoolLink> = Arc::new(Link(Arc::downgrade(core)));
    slot.backend.attach(link.clone(), Arc::downgrade(&slot));
    let watched = core.stuck_after.filter(|_| !core.kind.stuck_is_timeout());
    if let Some(after) = watched {
        let (core, slot) = (Arc::downgrade(core), Arc::downgrade(&slot));
        let lost = move || {
            if let (Some(core), Some(slot)) = (core.upgrade(), slot.upgrade()) {
                // Replacing a worker starts a thread and takes the resize lock: not on the bus's
                // dispatch thread, where the stuck timer fires.
                let _ = std::thread::Builder::new()
                    .name("circuits-replace".into())
                    .spawn(move || core.worker_lost(&slot));
            }
        };
        let _ = fin.stuck.set(StuckHook {
            after,
            lost: Arc::new(lost),
        });
    }
    // Worker actors live on the pool's arbiter, so a worker can be added from any thread.
    let actor = Worker {
        slot: slot.clone(),
        link,
    };
    let addr = Worker::start_in_arbiter(&core.arbiter, move |_| actor);
    let _ = slot.stopper.set(addr.recipient::<Stop>());
    let id = core.register_worker(&slot, &channel)?;
    let workers = {
        let mut w = core.workers.write().unwrap_or_else(|p| p.into_inner());
        w.push(slot.clone());
        w.len()
    };
    core.bus.mark_started(id)?;
    tracing::debug!(pool = %core.channel, worker = %channel, workers, "worker started");
    core.announce(WorkerStarted {
        worker: channel,
        workers,
    });
    Ok(slot)
}

impl PoolCore {
    /// Takes `slot` out of the pool: no new task is routed to it, its queued tasks move to the
    /// others, it finishes its running task and stops. Fires `WorkerStopped`.
    pub(crate) fn remove_worker(self: &Arc<Self>, slot: &Arc<WorkerSlot>, reason: String) -> bool {
        let workers = {
            let mut w = self.workers.write().unwrap_or_else(|p| p.into_inner());
            let before = w.len();
            w.retain(|s| !Arc::ptr_eq(s, slot));
            if w.len() == before {
                return false; // already gone
            }
            // Its counters move to the retired ones in the same step, so `stats` never misses
            // or doubles them.
            self.retired
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(slot.fin().counters.clone());
            w.len()
        };
        let channel = slot.channel();
        self.unregister_worker(slot, &channel);
        // A push that took this worker from its route before now either sees `retired` and goes
        // elsewhere, or has finished enqueuing here once this returns: nothing is left behind.
        slot.retired.store(true, Ordering::SeqCst);
        self.quiesce_pushes();
        let fin = slot.fin();
        for task in slot.backend.retire() {
            slot.load.fetch_sub(1, Ordering::Relaxed);
            self.resubmit(task, &fin);
        }
        if let Some(stopper) = slot.stopper.get() {
            stopper.do_send(Stop);
        }
        tracing::debug!(pool = %self.channel, worker = %channel, workers, %reason, "worker stopped");
        self.announce(WorkerStopped {
            worker: channel,
            workers,
            reason,
        });
        true
    }

    /// Grows or shrinks to `n`, clamped to `min..=max`; returns the new size. Shrinking retires the
    /// least loaded workers first.
    pub(crate) fn resize_to(self: &Arc<Self>, n: usize) -> usize {
        let target = n.clamp(self.min, self.max);
        let _guard = self.resizing.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.is_stopped() {
                break;
            }
            let current = self.workers().len();
            if current < target {
                if add_worker(self).is_err() {
                    break;
                }
            } else if current > target {
                let victim = self
                    .workers()
                    .iter()
                    .min_by_key(|w| w.load.load(Ordering::Relaxed))
                    .cloned();
                match victim {
                    Some(v) => {
                        self.remove_worker(&v, "resized".into());
                    }
                    None => break,
                }
            } else {
                break;
            }
        }
        self.workers().len()
    }

    /// A thread worker ran one task past `stuck_after`: replace it. The stuck thread keeps running
    /// its task and exits when it returns.
    pub(crate) fn worker_lost(self: &Arc<Self>, slot: &Arc<WorkerSlot>) {
        if self.is_stopped() {
            return;
        }
        let _guard = self.resizing.lock().unwrap_or_else(|p| p.into_inner());
        let limit = self.stuck_after.unwrap_or_default();
        if !self.workers().iter().any(|w| Arc::ptr_eq(w, slot)) {
            return; // already gone
        }
        // The replacement first, so that the stuck worker's queued tasks have somewhere to go.
        let _ = add_worker(self);
        if self.remove_worker(slot, format!("lost: a task ran longer than {limit:?}")) {
            slot.backend.shutdown(Shutdown::Drain);
        }
    }

    /// A snapshot of the pool.
    pub(crate) fn stats(&self) -> super::stats::PoolStats {
        let workers = self.workers();
        let loads: Vec<usize> = workers
            .iter()
            .map(|w| w.load.load(Ordering::Relaxed))
            .collect();
        let mut counters: Vec<Arc<crate::task::Counters>> =
            workers.iter().map(|w| w.fin().counters.clone()).collect();
        counters.extend(
            self.retired
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        let running: u64 = workers.iter().map(|w| w.backend.running() as u64).sum();
        let done = counters
            .iter()
            .map(|c| c.done.load(Ordering::Relaxed))
            .sum::<u64>();
        let failed = counters
            .iter()
            .map(|c| c.failed.load(Ordering::Relaxed))
            .sum::<u64>();
        let load: u64 = loads.iter().map(|l| *l as u64).sum();
        super::stats::PoolStats {
            workers: workers.len(),
            loads,
            pushed: self.pushed(),
            done,
            failed,
            running: running.min(load),
            queued: load.saturating_sub(running),
            latency: super::stats::latency(counters.iter().map(|c| &**c)),
        }
    }
}

/// Runs the resizer on the bus's dispatch thread until the pool stops or is dropped.
pub(crate) fn run_resizer(core: &Arc<PoolCore>, r: Resizer) {
    let weak = Arc::downgrade(core);
    core.bus.spawn(async move {
        let mut last = Instant::now() - r.cooldown;
        loop {
            tokio::time::sleep(r.interval).await;
            let Some(core) = weak.upgrade() else { return };
            if core.is_stopped() {
                return;
            }
            if last.elapsed() < r.cooldown {
                continue;
            }
            let pressure: Vec<(usize, usize)> = core
                .workers()
                .iter()
                .map(|w| (w.load.load(Ordering::Relaxed), w.backend.running()))
                .collect();
            if let Some(n) = r.decide(&pressure, core.min, core.max) {
                // Starting workers (threads, processes) blocks briefly; keep it off this thread.
                let c = core.clone();
                let _ = tokio::task::spawn_blocking(move || c.resize_to(n)).await;
                last = Instant::now();
            }
        }
    });
}

/// Fires `PoolStats` on the pool's channel every `period` until the pool stops or is dropped.
pub(crate) fn run_stats_events(core: &Arc<PoolCore>, period: Duration) {
    let weak = Arc::downgrade(core);
    core.bus.spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let Some(core) = weak.upgrade() else { return };
            if core.is_stopped() {
                return;
            }
            let stats = core.stats();
            let target = Target::from(&core.channel);
            core.bus.fire_plain(&target, stats).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resizer_grows_when_all_are_busy_and_shrinks_when_few_are() {
        let r = Resizer::default();
        // all busy, tasks waiting: +20% (at least one)
        assert_eq!(r.decide(&[(3, 1), (2, 1)], 1, 10), Some(3));
        // busy but nothing waiting
        assert_eq!(r.decide(&[(1, 1), (1, 1)], 1, 10), None);
        // a worker running a stolen task is busy though its own load is 0
        assert_eq!(r.decide(&[(5, 1), (0, 1)], 1, 10), Some(3));
        // at max
        assert_eq!(r.decide(&[(5, 1); 10], 1, 10), None);
        // 25% busy < 30%: -10% (at least one)
        assert_eq!(r.decide(&[(0, 0), (0, 0), (0, 0), (1, 1)], 1, 10), Some(3));
        // at min
        assert_eq!(r.decide(&[(0, 0)], 1, 10), None);
        // 50% busy: stay
        assert_eq!(r.decide(&[(1, 1), (0, 0)], 1, 10), None);
    }
}
