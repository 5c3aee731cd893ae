//! What a process worker's host thread and its reader thread share: the in-flight table, and the
//! messages the reader (and the pool) send to the host.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::task::{ErasedTask, Finisher, TaskError};
use crate::wire::WireError;
use crate::worker::{PoolLink, Shutdown, WorkerSlot};

pub(super) enum Msg {
    Run(Box<dyn ErasedTask>),
    Stop(Shutdown),
    Attach(Arc<dyn PoolLink>, Weak<WorkerSlot>),
    /// The first frame of child generation `gen`: its handshake.
    Hello(u64, Vec<u8>),
    /// Child generation `gen`'s output ended or broke the protocol.
    Gone(u64, WireError),
    /// The reader settled answers; there may be room to send more, or a stop to finish.
    Answered,
    /// The task sent as run `run` was cancelled (it is settled already).
    Cancel(u64),
    /// The worker leaves the pool: queued tasks go back to the pool, in-flight ones finish.
    Retire(Sender<Vec<Box<dyn ErasedTask>>>),
}

/// What sends pending tasks from a thread other than the host's (the host, seen from here).
pub(super) trait Relay: Send {
    /// Sends what is pending, if the child is ready and has room; never starts a child or waits.
    /// Returns whether a job became the first in flight (the child was idle).
    fn relay(&mut self) -> bool;
}

pub(super) struct InFlight {
    pub(super) run: u64,
    pub(super) task: Box<dyn ErasedTask>,
    /// Its frame's bytes, length prefix included (what it holds of the pipe until the child
    /// reads it).
    pub(super) bytes: usize,
}

/// What the host thread and the current child's reader thread share.
pub(super) struct State {
    /// Bumped whenever a child is replaced, so the old child's reader settles nothing more.
    pub(super) generation: u64,
    pub(super) fin: Arc<Finisher>,
    /// Tasks sent to the child, in order; the first is the one it is running.
    pub(super) inflight: VecDeque<InFlight>,
    /// When the first in-flight task became first (its start, as near as the parent can tell).
    pub(super) front_since: Instant,
    pub(super) stopping: Option<Shutdown>,
    /// Tasks the host holds that are not sent yet (so the reader knows when to ask for more).
    pub(super) backlog: usize,
    /// The current child answered at least one job (so it started well).
    pub(super) answered: bool,
    /// The child is being recycled: wake the host when its last job is answered.
    pub(super) recycling: bool,
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) load: Arc<AtomicUsize>,
    pub(super) host: Sender<Msg>,
    pub(super) window: usize,
    /// The live child's process id, 0 while there is none (for `WorkerInfo`).
    pub(super) pid: AtomicU32,
    /// Where the child's start is: [`STARTING`], [`READY`] or [`BACKING_OFF`] (for `WorkerInfo`).
    pub(super) phase: AtomicU8,
    /// Tasks sent to the host thread as `Msg::Run` and not in its `pending` yet: while there are
    /// any, nobody relays (a relayed task would overtake them).
    pub(super) in_hand: AtomicUsize,
    /// The host, for the reader to relay pending tasks itself after settling answers.
    pub(super) relay: OnceLock<Weak<Mutex<dyn Relay>>>,
    /// The host thread has ended: a task sent to it now would be lost, so `submit` hands it back.
    pub(super) closed: AtomicBool,
    /// How long the last answered job took, in nanoseconds, as the parent saw it (whether an
    /// awaiting thread may wait for the next one's answer, see `answers`).
    pub(super) last_run: AtomicU64,
    /// How long a thread awaiting an answer may read it itself (`ProcessConfig::answer_spin`).
    pub(super) answer_spin: std::time::Duration,
}

/// `lock`, taking a poisoned lock too: the host's and the shared state's critical sections only
/// move tasks between queues, so a panic in one leaves them whole.
pub(super) fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// [`lock`] without waiting: `None` while someone else holds it.
pub(super) fn try_lock<T: ?Sized>(m: &Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// A child is being started (or none is up yet).
pub(super) const STARTING: u8 = 0;
/// The child answered its handshake.
pub(super) const READY: u8 = 1;
/// The last start failed; the next waits out the back-off.
pub(super) const BACKING_OFF: u8 = 2;

/// Clears [`Shared::pid`] when its child's `Conn` goes, whichever way it goes.
pub(super) struct PidMark {
    pub(super) shared: Arc<Shared>,
    pub(super) pid: u32,
}

impl Drop for PidMark {
    fn drop(&mut self) {
        // Only our own child's: a newer child may have set its pid already.
        let _ = self
            .shared
            .pid
            .compare_exchange(self.pid, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
}

impl Shared {
    /// A worker's shared state before its first child: nothing in flight, messages for the host
    /// going to `host`, up to `window` jobs sent ahead.
    pub(super) fn new(
        fin: Arc<Finisher>,
        load: Arc<AtomicUsize>,
        host: Sender<Msg>,
        window: usize,
        answer_spin: std::time::Duration,
    ) -> Self {
        Shared {
            state: Mutex::new(State {
                generation: 0,
                fin,
                inflight: VecDeque::new(),
                front_since: Instant::now(),
                stopping: None,
                backlog: 0,
                answered: false,
                recycling: false,
            }),
            load,
            host,
            window,
            pid: Default::default(),
            phase: Default::default(),
            in_hand: Default::default(),
            relay: Default::default(),
            closed: Default::default(),
            last_run: Default::default(),
            answer_spin,
        }
    }

    /// For the tests: a worker's shared state with no host thread (its messages come out of the
    /// receiver) and nothing in flight.
    #[cfg(test)]
    pub(super) fn for_tests(
        answer_spin: std::time::Duration,
    ) -> (Arc<Shared>, crossbeam_channel::Receiver<Msg>) {
        let bus = crate::bus::Bus::new();
        let channel = crate::channel::Channel::new("test");
        let fin = Finisher::new(&bus, &channel, &channel, false, Arc::default());
        let (host, rx) = crossbeam_channel::unbounded();
        let shared = Shared::new(Arc::new(fin), Arc::default(), host, 32, answer_spin);
        (Arc::new(shared), rx)
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub(super) fn settle_fail(&self, fin: &Finisher, task: Box<dyn ErasedTask>, error: TaskError) {
        task.fail(error, fin);
        self.load.fetch_sub(1, Ordering::Relaxed);
    }

    /// The reader's side: settle the answer to run `run` of child `generation`. Returns false on a
    /// protocol violation (an answer for something that is not running).
    pub(super) fn answer(
        &self,
        generation: u64,
        run: u64,
        result: Result<&[u8], TaskError>,
    ) -> bool {
        let mut st = self.lock();
        if st.generation != generation {
            return true; // a replaced child's late answer: its task was already settled
        }
        match st.inflight.front() {
            Some(f) if f.run == run => {}
            _ => return false,
        }
        let Some(done) = st.inflight.pop_front() else {
            return false;
        };
        st.answered = true;
        // The clock is read here for every answer anyway (the next task's start): the run time
        // of this one comes with it.
        let now = Instant::now();
        let ran = now.saturating_duration_since(st.front_since);
        st.front_since = now;
        let ran_ns = u64::try_from(ran.as_nanos()).unwrap_or(u64::MAX);
        self.last_run.store(ran_ns, Ordering::Relaxed);
        let fin = st.fin.clone();
        fin.counters.latency(ran); // kept only when the pool tracks latency
                                   // An abort under way (the host is killing the child): the tasks sent after this one are
                                   // cancelled now.
        let cancelled = if st.stopping == Some(Shutdown::Abort) {
            std::mem::take(&mut st.inflight)
        } else {
            VecDeque::new()
        };
        // The next job runs now: the host thread must watch its timeout (it computed its
        // deadline from the one before).
        let timed = st
            .inflight
            .front()
            .is_some_and(|f| f.task.timeout().is_some());
        let stop_or_recycle = (st.stopping.is_some() || st.recycling) && st.inflight.is_empty();
        let wake = (st.backlog > 0 && st.inflight.len() <= self.window / 2) || stop_or_recycle;
        drop(st);
        done.task.finish_encoded(result, &fin);
        self.load.fetch_sub(1, Ordering::Relaxed);
        for f in cancelled {
            self.settle_fail(&fin, f.task, TaskError::Cancelled);
        }
        // Room in the pipeline for what is pending: send it from here if the host is free (one
        // thread hop fewer), else wake the host thread.
        let relayed = wake
            && !stop_or_recycle
            && self.in_hand.load(Ordering::SeqCst) == 0
            && self
                .relay
                .get()
                .and_then(Weak::upgrade)
                .is_some_and(|host| try_lock(&*host).map(|mut h| h.relay()).is_some());
        if (wake && !relayed) || timed {
            let _ = self.host.send(Msg::Answered);
        }
        true
    }
}
