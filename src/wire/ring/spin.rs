//! How long a side of a ring spins for the other before it sleeps on its bell.
//!
//! A wake-up from sleep costs 20-25 us on a VM (often more), and a round trip of a 64 KiB
//! payload leaves each side idle for about 100 us between frames: with a fixed linger both sides
//! slept and paid two wake-ups per round trip. So a side whose last frame came after `took`
//! spins up to twice that next time, within [`MAX_SPIN`] times the linger; frames further apart
//! bring it back to the linger time, so an idle side sleeps as soon as before. Spinning past the
//! linger is for at most as many waits of this process at once as it has CPUs: with more workers
//! than CPUs, the extra spinners would take the time slices the children need.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// A wait spins for at most this many times the linger time.
pub(super) const MAX_SPIN: u32 = 5;

/// One side's spin: the linger time, and what it learned from its last wait.
#[derive(Debug, Clone)]
pub(super) struct Spin {
    linger: Duration,
    next: Cell<Duration>,
}

/// Waits of this process spinning past their linger time now.
static EXTENDED: AtomicUsize = AtomicUsize::new(0);

/// A claim on one of the places of a count of spinners (this process's: [`EXTENDED`]), given
/// back when dropped.
pub(super) struct Extended(&'static AtomicUsize);

impl Drop for Extended {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One of `count`'s places, if fewer than `places` are taken.
pub(super) fn claim(count: &'static AtomicUsize, places: usize) -> Option<Extended> {
    count
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < places).then_some(n + 1)
        })
        .ok()
        .map(|_| Extended(count))
}

fn cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl Spin {
    pub(super) fn new(linger: Duration) -> Self {
        Spin {
            linger,
            next: Cell::new(linger),
        }
    }

    /// How long this wait spins, with the claim that lets it spin past the linger time (keep it
    /// while spinning, drop it before sleeping).
    pub(super) fn budget(&self) -> (Duration, Option<Extended>) {
        let next = self.next.get();
        if next <= self.linger {
            return (next, None);
        }
        match claim(&EXTENDED, cpus()) {
            Some(claim) => (next, Some(claim)),
            None => (self.linger, None),
        }
    }

    /// Learns from a wait that took `took`.
    pub(super) fn learn(&self, took: Duration) {
        self.next.set(next_spin(self.linger, took));
    }
}

/// How long the next wait spins when the last one took `took`.
pub(super) fn next_spin(linger: Duration, took: Duration) -> Duration {
    let max = linger * MAX_SPIN;
    if took <= max {
        (took * 2).clamp(linger, max)
    } else {
        linger
    }
}
