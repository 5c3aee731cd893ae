//! Waiting for a ring's frames without reading them: the reader thread of a worker whose answers
//! a helper may read (an awaiting thread, see `worker::process::answers`) waits with a [`Watch`],
//! and takes the ring's source only to read.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use super::bell::Bell;
use super::{Dir, End};
use crate::wire::error::WireError;

/// Waits for frames in one ring, as the source's own waits do, and defers to a helper: while
/// `helped` is set it neither spins nor asks the writer to ring it (the helper reads, and says
/// when it stops, see [`RingSource::help_end`](super::RingSource::help_end)).
pub(crate) struct Watch {
    end: End,
    dir: Dir,
}

impl Watch {
    pub(super) fn new(end: End, dir: Dir) -> Self {
        Watch { end, dir }
    }

    /// Waits until the ring holds bytes past `head` (the source's position when it was last
    /// read), or its bell rang (a helper asks to look), or the writer is gone. `Ok(true)`: look
    /// at the ring (it may hold nothing: a helper read it meanwhile); `Ok(false)`: the writer is
    /// gone and nothing past `head` is there.
    ///
    /// # Errors
    ///
    /// When waiting on the descriptors fails.
    pub(crate) fn wait(&self, head: u64, helped: &AtomicBool) -> Result<bool, WireError> {
        let tail = self.end.tail(self.dir);
        let waiter = self.end.data_waiter(self.dir);
        let ready = || tail.load(Ordering::Acquire) != head;
        let start = std::time::Instant::now();
        if !helped.load(Ordering::SeqCst) {
            let (spin, extended) = self.end.spin.budget();
            let until = start + spin;
            loop {
                if ready() {
                    self.end.spin.learn(start.elapsed());
                    return Ok(true);
                }
                if helped.load(Ordering::Relaxed) || std::time::Instant::now() >= until {
                    break;
                }
                std::thread::yield_now();
            }
            drop(extended);
        }
        // Asleep. Armed (the writer rings for its next frame) unless a helper reads: the helper
        // arms it, or rings, when it stops.
        let armed = !helped.load(Ordering::SeqCst);
        if armed {
            waiter.store(1, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
        }
        if ready() {
            if armed {
                waiter.store(0, Ordering::Relaxed);
            }
            return Ok(true);
        }
        let gone = self.end.own.sleep(self.end.watch.as_raw_fd())?;
        if armed {
            waiter.store(0, Ordering::Relaxed);
        }
        if ready() {
            self.end.spin.learn(start.elapsed());
            return Ok(true);
        }
        Ok(!gone)
    }
}

/// Wakes the reader thread of a ring from any thread (its bell), for it to look at the ring and
/// spin for what comes next.
pub(crate) struct Knock(std::sync::Arc<Bell>);

impl Knock {
    pub(super) fn new(bell: std::sync::Arc<Bell>) -> Self {
        Knock(bell)
    }

    /// Rings the reader's bell.
    pub(crate) fn knock(&self) {
        self.0.ring();
    }
}
