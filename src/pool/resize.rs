//! An elastic pool: workers added and retired between `min` and `max`, by hand
//! ([`PoolHandle::resize`](crate::PoolHandle::resize)) or by a [`Resizer`] watching the pressure;
//! lost (stuck) workers replaced; [`WorkerStarted`] and [`WorkerStopped`] announced.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::PoolCore;
use crate::bus::Target;

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
