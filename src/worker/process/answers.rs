//! A child's answers through the shared-memory ring, read by the worker's reader thread or, for a
//! job pushed to an idle child, by the thread that awaits it.
//!
//! A round trip through the reader thread crosses three threads (the awaiting one, the child, the
//! reader) where a pipe ping-pong crosses two, and on two cores the three take turns: S6's p50 was
//! 9-10 us or 16-22 us by how the scheduler placed them, against a floor of 5-9 us. So when a job
//! goes alone to an idle, awake child that answered its last job quickly ([`Answers::sent_alone`]),
//! its value reads the answer itself at its first poll on the pushing thread (see `value::help`),
//! for a bounded time (`ProcessConfig::answer_spin`), while the reader thread sleeps: the child
//! and the awaiting thread are the only ones on the path, and nobody is woken.
//!
//! Whoever reads holds the source (`Answers::inner`); the reader thread waits without it, through
//! a [`Watch`] that defers to a helper (no spinning, no bell) while `helped` is set. Crash
//! attribution stays with the reader: only it sees the child's end (the `pidfd`), and it takes
//! the source to read every answer left before it calls the child gone. However the reader ends
//! (the child's end, a protocol error), it first sets `ending`, which stops a helper at its next
//! look and turns every later one away. A helper that finds a protocol error leaves it to the
//! reader (`poison`) and wakes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::shared::{lock, try_lock, Msg, Shared};
use crate::task::TaskError;
use crate::value::help::{self, Help};
use crate::wire::ring::{Knock, RingSource, Watch};
use crate::wire::{self, Frame, FrameSource, WireError};

/// How long a helper spins before it may yield between looks. After that it spins on only while
/// the child has taken the job (it runs on the other CPU: on this one it would have answered
/// before it let this thread run again), and yields while the child has not (it is asleep, or
/// waiting for this CPU).
const PURE_SPIN: Duration = Duration::from_micros(1);

/// Pause hints between two looks at the ring.
const SPINS_PER_LOOK: usize = 8;

/// Whether the thread awaiting a job sent now to `shared`'s idle child should read the answer
/// itself: it may ([`ProcessConfig::answer_spin`](super::ProcessConfig::answer_spin)), and the
/// child's last job took at most a quarter of that (it spins for no job likely to outlast its
/// spin: a help that gives up costs more than none, see `sent_alone`). In S6 a half let 64 KiB
/// round trips, which take 10-40 us, flip between helped and not: 1.3x slower than with no help.
pub(super) fn quick(shared: &Shared) -> bool {
    let spin = u64::try_from(shared.answer_spin.as_nanos()).unwrap_or(u64::MAX);
    spin > 0 && shared.last_run.load(Ordering::Relaxed) <= spin / 4
}

/// One child's answers, and who reads them.
pub(super) struct Answers {
    shared: Arc<Shared>,
    generation: u64,
    inner: Mutex<Inner>,
    /// A helper reads: the reader thread neither spins nor asks the child to ring it.
    helped: AtomicBool,
    /// The reader ends (the child is gone, or broke the protocol): a helper stops at once, and
    /// none starts again.
    ending: AtomicBool,
    /// A helper left the reader asleep (for the child to wake with its next answer).
    parked: AtomicBool,
    /// Wakes the reader thread.
    knock: Knock,
}

struct Inner {
    source: RingSource,
    /// The next frame is the child's handshake (the reader's to hand to the host).
    first: bool,
    /// A protocol error a helper found, for the reader to end the child with.
    poison: Option<WireError>,
}

impl Answers {
    pub(super) fn new(shared: Arc<Shared>, generation: u64, source: RingSource) -> Self {
        Answers {
            knock: source.knock(),
            parked: AtomicBool::new(false),
            shared,
            generation,
            inner: Mutex::new(Inner {
                source,
                first: true,
                poison: None,
            }),
            helped: AtomicBool::new(false),
            ending: AtomicBool::new(false),
        }
    }

    /// A job was just sent to the idle child from this thread, alone; `awake`: the child did not
    /// have to be woken for it. Offers the value's first poll to read the answer when the child
    /// is likely to answer within the spin: awake, and quick with its last job. Otherwise, if a
    /// helper left the reader asleep, wakes the reader now, while the child works: it would
    /// otherwise be woken only by the answer, a wake-up later than it used to spin for it.
    pub(super) fn sent_alone(self: &Arc<Self>, awake: bool) {
        if awake && quick(&self.shared) && self.shared.lock().inflight.len() == 1 {
            let answers: Arc<dyn Help> = self.clone();
            help::offer(Arc::downgrade(&answers));
        } else {
            self.declined();
        }
    }

    /// The reader thread: waits for the child's frames past `head` (where the source was when
    /// this thread last had it) and reads them, until the child is gone; returns the child's end,
    /// for the host.
    pub(super) fn read(&self, watch: &Watch, mut head: u64) -> Msg {
        // However the reader ends, no helper reads this child after it: one that has the source
        // now stops at its next look, and none takes it again (the host may still send this
        // child a job before it hears the end).
        let gone = |e| {
            self.ending.store(true, Ordering::SeqCst);
            Msg::Gone(self.generation, e)
        };
        loop {
            let more = match watch.wait(head, &self.helped) {
                Ok(more) => more,
                Err(e) => {
                    let end = gone(e);
                    // Not called gone while a helper may still be settling its answers.
                    drop(lock(&self.inner));
                    return end;
                }
            };
            self.parked.store(false, Ordering::Relaxed);
            if !more {
                // The child is gone: a helper spinning for an answer that will not come gives the
                // source back now.
                self.ending.store(true, Ordering::SeqCst);
            }
            let mut inner = lock(&self.inner);
            if let Some(e) = inner.poison.take() {
                return gone(e);
            }
            // Until the ring is empty; once the child is gone (`!more`), until its end: every
            // answer it wrote is read before it is called gone.
            loop {
                match inner.source.has_data() {
                    Ok(true) => {}
                    Ok(false) if more => break,
                    Ok(false) => {}
                    Err(e) => return gone(e),
                }
                // Waits only inside a frame (a large one streams through the ring), or for the
                // child's end.
                let body = match inner.source.recv() {
                    Ok(delivery) => delivery.ack(),
                    Err(e) => return gone(e),
                };
                if let Err(e) = self.settle(&mut inner, body) {
                    return gone(e);
                }
            }
            head = inner.source.head();
        }
    }

    /// One frame from the child: the handshake goes to the host, an answer is settled here.
    fn settle(&self, inner: &mut Inner, body: Vec<u8>) -> Result<(), WireError> {
        if std::mem::take(&mut inner.first) {
            let _ = self.shared.host.send(Msg::Hello(self.generation, body));
            return Ok(());
        }
        settle(&self.shared, self.generation, &body)?;
        // The answer is decoded into its own value: the next frame is read into the same memory.
        inner.source.recycle(body);
        Ok(())
    }
}

/// Settles the answer in `body` from child `generation`.
///
/// # Errors
///
/// When the frame is not an answer, or answers a job that is not running: the child broke the
/// protocol.
pub(super) fn settle(shared: &Shared, generation: u64, body: &[u8]) -> Result<(), WireError> {
    let settled = match wire::decode(body)? {
        Frame::Done { id, result } => shared.answer(
            generation,
            id,
            result
                .as_ref()
                .map(|p| &p.0[..])
                .map_err(|f| TaskError::from(f.clone())),
        ),
        _ => {
            let what = "a frame other than Done from a worker".to_string();
            return Err(WireError::Unexpected(what));
        }
    };
    if !settled {
        let what = "an answer for a job that is not running".to_string();
        return Err(WireError::Unexpected(what));
    }
    Ok(())
}

/// Gives the reading back to the reader thread however a help ends (a panic in a value's
/// decoding included).
struct Helping<'a> {
    answers: &'a Answers,
    inner: std::sync::MutexGuard<'a, Inner>,
}

impl Drop for Helping<'_> {
    fn drop(&mut self) {
        self.answers.helped.store(false, Ordering::SeqCst);
        // The reader looks at once if a job is still out (it spins for its answer as before a
        // help), or the helper left an error; otherwise the child rings it for its next answer.
        let look = self.inner.poison.is_some() || !self.answers.shared.lock().inflight.is_empty();
        self.answers.parked.store(!look, Ordering::Relaxed);
        self.inner.source.help_end(look);
    }
}

impl Help for Answers {
    /// Wakes the reader if a helper left it asleep: nobody else will read the answer to the job
    /// just sent before it arrives, and the reader would be woken only then.
    fn declined(&self) {
        if self.parked.swap(false, Ordering::AcqRel) {
            self.knock.knock();
        }
    }

    fn help(&self, done: &dyn Fn() -> bool) {
        let Some(inner) = try_lock(&self.inner) else {
            return; // the reader is reading (so it is awake)
        };
        if inner.first || inner.poison.is_some() || self.ending.load(Ordering::Relaxed) {
            drop(inner);
            self.declined();
            return;
        }
        self.helped.store(true, Ordering::SeqCst);
        inner.source.help_begin();
        let mut helping = Helping {
            answers: self,
            inner,
        };
        let start = Instant::now();
        let until = start + self.shared.answer_spin;
        let pure = start + PURE_SPIN;
        loop {
            let got = match helping.inner.source.try_recv() {
                Ok(Some(body)) => {
                    if let Err(e) = self.settle(&mut helping.inner, body) {
                        helping.inner.poison = Some(e);
                        return;
                    }
                    true
                }
                Ok(None) => false,
                Err(e) => {
                    helping.inner.poison = Some(e);
                    return;
                }
            };
            if done() || Instant::now() >= until || self.ending.load(Ordering::Relaxed) {
                return;
            }
            if !got {
                // See `PURE_SPIN`.
                if Instant::now() < pure || helping.inner.source.peer_took_all() {
                    for _ in 0..SPINS_PER_LOOK {
                        std::hint::spin_loop();
                    }
                } else {
                    // Yielding: a child that shares this CPU runs its job now.
                    std::thread::yield_now();
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "answers_tests.rs"]
mod tests;
