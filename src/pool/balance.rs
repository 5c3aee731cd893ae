//! Balancing: which worker gets the next task.
//!
//! A [`Strategy`] picks a worker index from the workers' current loads (tasks queued or running on
//! each). The pool keeps those loads in atomic counters, so picking costs a few loads and no lock.
//! A strategy places a task; in thread mode an unkeyed task placed on a sleeping worker is run by
//! whichever worker looks for work first, and an idle worker may steal one queued on a busy
//! sibling (keyed tasks and tasks fired at a worker's channel never move).
//!
//! | strategy | rule |
//! | --- | --- |
//! | [`BelowAverage`] | the seed's: the first worker whose load is below the mean, else a random one |
//! | [`LeastLoaded`] (default) | the worker with the smallest load, the first on ties |
//! | [`RoundRobin`] | each worker in turn |
//! | [`Random`] | uniformly at random |
//! | [`PowerOfTwo`] | the less loaded of two random workers |
//! | [`KeyAffinity`] | tasks with equal [`key`](crate::Task::key)s always go to the same worker |
//!
//! ```
//! use circuits::{BelowAverage, LeastLoaded, Strategy};
//!
//! let loads = [3usize, 1, 2];
//! assert_eq!(LeastLoaded.pick(&loads, None), 1);
//! // mean is 2: worker 1 (load 1) is the first below it
//! assert_eq!(BelowAverage.pick(&loads, None), 1);
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rand::Rng;

use crate::worker::WorkerSlot;

/// The loads of the workers, as a strategy sees them.
pub trait Loads {
    /// How many workers there are (at least one when a strategy is asked).
    fn len(&self) -> usize;
    /// The load (tasks queued or running) of worker `i`, `i < len()`.
    fn load(&self, i: usize) -> usize;
    /// Whether there are no workers.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The loads of a pool's workers, as the strategies read them.
pub(crate) struct SlotLoads<'a>(pub(crate) &'a [Arc<WorkerSlot>]);

impl Loads for SlotLoads<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn load(&self, i: usize) -> usize {
        self.0[i].load.load(Ordering::Relaxed)
    }
}

impl SlotLoads<'_> {
    /// Whether every worker but `slot` has nothing queued or running (a lone task in flight). The
    /// loads are read until one is not zero.
    pub(crate) fn idle_but(&self, slot: &Arc<WorkerSlot>) -> bool {
        self.0
            .iter()
            .all(|w| Arc::ptr_eq(w, slot) || w.load.load(Ordering::Relaxed) == 0)
    }
}

impl<const N: usize> Loads for [usize; N] {
    fn len(&self) -> usize {
        N
    }
    fn load(&self, i: usize) -> usize {
        self[i]
    }
}

impl Loads for Vec<usize> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn load(&self, i: usize) -> usize {
        self[i]
    }
}

/// Picks the worker for a task.
///
/// `pick` is called with at least one worker and must return an index below `loads.len()` (the pool
/// clamps anything else). `key` is the task's affinity key, if it has one.
pub trait Strategy: Send + Sync + 'static {
    /// The index of the worker to give the task to.
    ///
    /// # Panics
    ///
    /// The pool never asks with no workers. Called by hand with empty `loads`, the strategies of
    /// this module panic, since there is no index to return; except [`LeastLoaded`], which answers
    /// 0, and [`KeyAffinity`] for a task without a key, which answers as its fallback.
    fn pick(&self, loads: &dyn Loads, key: Option<u64>) -> usize;
    /// A short name: what [`PoolHandle::strategy`](crate::PoolHandle::strategy) answers, and
    /// what the pool's `Debug` output shows.
    fn name(&self) -> &'static str;
}

/// The seed's rule: the first worker whose load is below the mean load, else a random worker.
///
/// With equal loads nobody is below the mean, so an idle pool spreads tasks at random.
#[derive(Debug, Clone, Copy, Default)]
pub struct BelowAverage;

impl Strategy for BelowAverage {
    fn pick(&self, loads: &dyn Loads, _key: Option<u64>) -> usize {
        let n = loads.len();
        let total: usize = (0..n).map(|i| loads.load(i)).sum();
        // load < total / n, kept in integers: load * n < total
        (0..n)
            .find(|&i| loads.load(i) * n < total)
            .unwrap_or_else(|| rand::thread_rng().gen_range(0..n))
    }
    fn name(&self) -> &'static str {
        "below-average"
    }
}

/// The worker with the smallest load; the lowest index on ties.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeastLoaded;

impl Strategy for LeastLoaded {
    fn pick(&self, loads: &dyn Loads, _key: Option<u64>) -> usize {
        let mut best = 0;
        let mut best_load = usize::MAX;
        for i in 0..loads.len() {
            let l = loads.load(i);
            if l < best_load {
                best = i;
                best_load = l;
                if l == 0 {
                    break;
                }
            }
        }
        best
    }
    fn name(&self) -> &'static str {
        "least-loaded"
    }
}

/// Each worker in turn: 0, 1, 2, ..., 0, 1, ...
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// Starts at worker 0.
    pub fn new() -> Self {
        RoundRobin::default()
    }
}

impl Strategy for RoundRobin {
    fn pick(&self, loads: &dyn Loads, _key: Option<u64>) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % loads.len()
    }
    fn name(&self) -> &'static str {
        "round-robin"
    }
}

/// A worker chosen uniformly at random.
#[derive(Debug, Clone, Copy, Default)]
pub struct Random;

impl Strategy for Random {
    fn pick(&self, loads: &dyn Loads, _key: Option<u64>) -> usize {
        rand::thread_rng().gen_range(0..loads.len())
    }
    fn name(&self) -> &'static str {
        "random"
    }
}

/// The less loaded of two workers chosen at random ("the power of two choices").
#[derive(Debug, Clone, Copy, Default)]
pub struct PowerOfTwo;

impl Strategy for PowerOfTwo {
    fn pick(&self, loads: &dyn Loads, _key: Option<u64>) -> usize {
        let n = loads.len();
        let mut rng = rand::thread_rng();
        let a = rng.gen_range(0..n);
        let b = rng.gen_range(0..n);
        if loads.load(b) < loads.load(a) {
            b
        } else {
            a
        }
    }
    fn name(&self) -> &'static str {
        "power-of-two"
    }
}

/// Tasks with equal keys always go to the same worker (while the number of workers stays the same);
/// tasks without a key go where `fallback` says.
pub struct KeyAffinity {
    fallback: Box<dyn Strategy>,
}

impl std::fmt::Debug for KeyAffinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAffinity")
            .field("fallback", &self.fallback.name())
            .finish()
    }
}

impl KeyAffinity {
    /// Key affinity, with [`LeastLoaded`] for tasks without a key.
    pub fn new() -> Self {
        Self::with_fallback(LeastLoaded)
    }
    /// Key affinity with another strategy for tasks without a key.
    pub fn with_fallback(fallback: impl Strategy) -> Self {
        KeyAffinity {
            fallback: Box::new(fallback),
        }
    }
}

impl Default for KeyAffinity {
    fn default() -> Self {
        Self::new()
    }
}

impl Strategy for KeyAffinity {
    fn pick(&self, loads: &dyn Loads, key: Option<u64>) -> usize {
        match key {
            // The key is already a hash; reduce it onto the workers.
            Some(k) => (k % loads.len() as u64) as usize,
            None => self.fallback.pick(loads, None),
        }
    }
    fn name(&self) -> &'static str {
        "key-affinity"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_average_takes_first_below_mean() {
        assert_eq!(BelowAverage.pick(&[4usize, 4, 1, 0], None), 2);
        assert_eq!(BelowAverage.pick(&[0usize, 5], None), 0);
    }

    #[test]
    fn below_average_is_random_when_all_equal() {
        let loads = [2usize, 2, 2, 2];
        let mut seen = [false; 4];
        for _ in 0..1000 {
            seen[BelowAverage.pick(&loads, None)] = true;
        }
        assert_eq!(seen, [true; 4]);
    }

    #[test]
    fn power_of_two_never_picks_the_busier_of_two() {
        // With two workers, it can pick the busy one only when both draws hit it.
        let loads = [100usize, 0];
        let busy = (0..4000)
            .filter(|_| PowerOfTwo.pick(&loads, None) == 0)
            .count();
        assert!(busy > 0 && busy < 2000, "busy picked {busy} times of 4000");
    }
}
