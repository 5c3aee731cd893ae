//! The thread workers of one pool as a crew: who may steal from whom, who looks for work while
//! idle, who sleeps, and whom a push wakes.
//!
//! A wide pool on a small machine has most of its workers idle. If every idle worker spun looking
//! for work, they would take the CPU from the threads that push tasks; if every push woke the
//! worker it placed its task on, each task would pay a wake-up and a context switch. So, as in
//! tokio's and rayon's schedulers:
//!
//! - At most [`Crew::max_searching`] idle workers **search** (look at their own queues and steal
//!   from their siblings) for a short while ([`LINGER`](super::LINGER)), spinning on the CPU
//!   while the rest of the crew sleeps and yielding it in between otherwise ([`Crew::pause`]).
//!   A worker about to set an awaited task's value claims a searcher's place first
//!   ([`EarlySearch`](super::early::EarlySearch)). The others sleep at once, each parked on its own [`Bell`].
//! - A task the strategy places on a sleeping worker goes to the crew's **injector**, a queue every
//!   worker looks at after its own: the next worker to look for work takes it, as with a single
//!   shared queue (the workers that are awake keep working; the sleepers sleep). Its load stays
//!   counted on the worker it was placed on until it ends, as with a steal.
//! - A push wakes the worker it placed its task on only when that worker sleeps and either the
//!   task is pinned (only that worker may run it) or no worker is searching (nobody would take
//!   it). Otherwise a searcher takes it, and the sleeper sleeps on.
//! - A push that leaves its task to others marks it ([`Crew::skipped`]). A worker about to sleep
//!   takes the mark and, if some task may be waiting, steals it instead of sleeping. The last
//!   searcher to find work takes it too and wakes a sleeper when the injector holds work or the
//!   mark is set (the woken worker searches in turn, so a burst placed on sleeping workers wakes
//!   as many workers as it needs, one after another). The mark is one flag for any number of
//!   tasks: several tasks behind busy workers at once may wake fewer workers than tasks, and one
//!   of them then waits for its worker's running task (never lost).
//! - A worker that starts a task with more of its own queued behind it does what a push behind a
//!   busy worker does: wakes a sleeper to steal them when nobody searches.
//!
//! Lost wake-ups are ruled out by pairs of "write, fence, read" on each side (Dekker's pattern):
//! a push writes its task, then reads whether the worker sleeps, while a worker falling asleep
//! writes that it sleeps, then reads its queues and the injector; a push that leaves its task to
//! others writes the mark, then reads the numbers of searchers and sleepers, while a worker
//! falling asleep or no longer searching writes those numbers, then reads the mark; a worker
//! starting a task writes that it is busy, then reads its queue, while a push writes its task,
//! then reads whether the worker is busy. In each pair at least one side sees the other's write.

use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::thread::Thread;

use crossbeam_channel::{Receiver, Sender};

use super::urgent::Urgent;
use crate::task::ErasedTask;

/// What an idle worker can take work from: a sibling's shared queue and the counter the sibling's
/// tasks were counted on.
#[derive(Clone)]
pub(crate) struct Sibling {
    pub(crate) id: u64,
    pub(crate) shared: Receiver<Box<dyn ErasedTask>>,
    pub(crate) load: Arc<AtomicUsize>,
    /// Running a task right now. Only a busy or sleeping worker's queue is stolen from: an idle
    /// one that is awake takes its own next task at once, and stealing it would only move it away
    /// from where it was placed.
    pub(crate) busy: Arc<AtomicBool>,
    /// Whether it sleeps, and how to wake it. A task placed on a sleeping worker goes to the
    /// injector, where a worker that is awake takes it without a wake-up.
    pub(crate) bell: Arc<Bell>,
    /// Its `High` and `Low` queues.
    pub(crate) urgent: Urgent,
}

impl Sibling {
    /// Holds a task some sibling may steal: a busy or sleeping worker with a shared task queued.
    fn stealable(&self) -> bool {
        (self.busy.load(Ordering::Relaxed) || self.bell.sleeping())
            && (!self.shared.is_empty() || self.urgent.has_shared())
    }
}

/// How a worker sleeps and is woken: a flag and the worker's thread, parked while the flag is set.
pub(crate) struct Bell {
    sleeping: AtomicBool,
    /// The crew's count of sleeping workers: whoever sets or clears `sleeping` counts.
    sleepers: Arc<AtomicUsize>,
    /// The worker's owner is gone: nothing more will be queued.
    closed: AtomicBool,
    thread: OnceLock<Thread>,
}

impl Bell {
    /// Called on the worker's thread before it first sleeps.
    pub(crate) fn hang(&self) {
        let _ = self.thread.set(std::thread::current());
    }

    pub(crate) fn sleeping(&self) -> bool {
        self.sleeping.load(Ordering::Relaxed)
    }

    pub(crate) fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Wakes the worker if it sleeps. Whoever clears the flag unparks the thread.
    pub(crate) fn ring(&self) {
        if self.clear() {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
    }

    /// Clears the flag; `true` for the one caller that did (and counted it).
    fn clear(&self) -> bool {
        let cleared = self
            .sleeping
            .compare_exchange(true, false, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if cleared {
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
        }
        cleared
    }

    /// Nothing more will be queued on this worker: it wakes to run what it holds, and ends.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        fence(Ordering::SeqCst);
        self.ring();
    }

    /// Marks the worker asleep. The caller then looks at its queues once more (the push's side of
    /// the pattern reads this flag after writing its task) and either [`wake`](Self::wake)s itself
    /// or [`sleep`](Self::sleep)s.
    pub(crate) fn lie_down(&self) {
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Gets up again without sleeping (something came after all).
    pub(crate) fn wake(&self) {
        self.clear();
    }

    /// Parks the worker's thread until someone [`ring`](Self::ring)s.
    pub(crate) fn sleep(&self) {
        while self.sleeping.load(Ordering::Acquire) {
            std::thread::park();
        }
    }
}

/// Pause hints a searcher alone awake spins between two full looks for work (its queues, the
/// injector, its siblings' queues, the clock): a task pushed to it is taken within a few of them,
/// not after a steal's scan and a clock read.
const SPINS_PER_LOOK: usize = 64;

/// A task in the injector, and the load counter of the worker it was placed on.
pub(crate) type Injected = (Box<dyn ErasedTask>, Arc<AtomicUsize>);

/// The thread workers of one pool.
pub(crate) struct Crew {
    members: RwLock<Vec<Sibling>>,
    /// How many members there are.
    size: AtomicUsize,
    /// Tasks placed on sleeping workers, for whichever worker looks first.
    injector: (Sender<Injected>, Receiver<Injected>),
    /// Idle workers looking for work right now.
    searching: AtomicUsize,
    /// The mark: a push (or a worker starting a task with more queued behind it) left a task to
    /// others, a searcher or whoever lies down next, instead of waking a worker for it.
    skipped: AtomicBool,
    /// Workers asleep now.
    sleepers: Arc<AtomicUsize>,
    /// At most this many idle workers search at once: as many as there are CPUs (on 2 cores, 1 and
    /// 4 measured worse than 2 at 8 to 128 workers).
    max_searching: usize,
}

impl Default for Crew {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Crew {
            members: RwLock::default(),
            size: AtomicUsize::new(0),
            injector: crossbeam_channel::unbounded(),
            searching: AtomicUsize::new(0),
            skipped: AtomicBool::new(false),
            sleepers: Arc::default(),
            max_searching: cpus,
        }
    }
}

impl Crew {
    /// A bell for a new member, counted among the crew's sleepers while it sleeps.
    pub(crate) fn bell(&self) -> Bell {
        Bell {
            sleeping: AtomicBool::new(false),
            sleepers: self.sleepers.clone(),
            closed: AtomicBool::new(false),
            thread: OnceLock::new(),
        }
    }

    pub(crate) fn join(&self, me: Sibling) {
        let mut members = self.members.write().unwrap_or_else(|p| p.into_inner());
        members.push(me);
        self.size.store(members.len(), Ordering::Relaxed);
    }

    pub(crate) fn leave(&self, id: u64) {
        let mut members = self.members.write().unwrap_or_else(|p| p.into_inner());
        members.retain(|s| s.id != id);
        self.size.store(members.len(), Ordering::Relaxed);
    }

    /// Queues a task placed on a sleeping worker in the injector; gives it back when that worker
    /// is awake (it is queued on the worker then, which takes it next or lets it be stolen), or
    /// works alone.
    pub(crate) fn inject(
        &self,
        task: Box<dyn ErasedTask>,
        bell: &Bell,
        load: &Arc<AtomicUsize>,
    ) -> Option<Box<dyn ErasedTask>> {
        // A worker alone takes its tasks in the order they came (the injector is looked at after
        // its own queue): nobody else could take them anyway.
        if !bell.sleeping() || self.size.load(Ordering::Relaxed) < 2 {
            return Some(task);
        }
        // The crew holds the receiver: the send cannot fail.
        let _ = self.injector.0.send((task, load.clone()));
        None
    }

    /// The oldest task in the injector.
    pub(crate) fn injected(&self) -> Option<Injected> {
        self.injector.1.try_recv().ok()
    }

    /// Whether the injector holds a task.
    pub(crate) fn has_injected(&self) -> bool {
        !self.injector.1.is_empty()
    }

    /// A task was just queued on the worker that rings `bell`: wake it if it sleeps, unless the
    /// task may be stolen and a searcher will steal it. A task that may be stolen, queued behind
    /// a `busy` worker's running task while nobody searches, wakes a sleeping worker to steal it
    /// (so a long task does not hold up the tasks placed after it while workers sleep).
    pub(crate) fn queued(&self, bell: &Bell, pinned: bool, busy: bool) {
        fence(Ordering::SeqCst);
        if bell.sleeping() {
            if pinned || !self.left_for_searchers() {
                bell.ring();
            }
        } else if !pinned && busy {
            self.behind_busy();
        }
    }

    /// A task that may be stolen waits behind a busy worker's running task: wake a sleeper to
    /// steal it, unless a searcher will.
    pub(crate) fn behind_busy(&self) {
        if !self.left_for_searchers() && self.sleepers.load(Ordering::Relaxed) > 0 {
            self.wake_one_holding_work();
        }
    }

    /// Marks that a task waits for someone to look ([`Crew::skipped`]), then says whether a
    /// worker is searching (which, or the next worker to lie down, will see the mark). The mark
    /// is written only when it is not set already: most pushes only read it.
    fn left_for_searchers(&self) -> bool {
        if !self.skipped.load(Ordering::Relaxed) {
            self.skipped.store(true, Ordering::Release);
        }
        fence(Ordering::SeqCst);
        self.searching.load(Ordering::Relaxed) > 0
    }

    /// Asks to search; `false` when enough workers search already (the caller sleeps instead).
    pub(crate) fn start_searching(&self) -> bool {
        self.searching
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |n| {
                (n < self.max_searching).then_some(n + 1)
            })
            .is_ok()
    }

    /// One turn of a searcher's wait between two looks for work. Alone awake (every other member
    /// sleeps), it spins on its CPU with pause hints, looking meanwhile only at what `holds_work`
    /// reads (its own queues and the injector, where a push to a sleeping worker puts its task;
    /// a sleeping sibling's priority lanes are seen at the next full look); beside other awake
    /// members it yields the CPU.
    ///
    /// Measured on this 2-core VM with one task in flight (a caller awaiting one task after
    /// another, S1): a searcher that yields enters the kernel on every turn and took 9-16 us a
    /// round trip; spinning in place, 4.5-9 us (actix's `SyncArbiter`, whose threads park,
    /// 7-13 us). Beside other awake members (many tasks in flight), spinners that keep their CPUs
    /// take them from the workers and the pushing threads that have work: S12's wide pools lost
    /// three quarters of their rate.
    ///
    /// On a single CPU it always yields: the thread that would push the next task needs that CPU.
    pub(crate) fn pause(&self, holds_work: impl Fn() -> bool) {
        let alone = self.sleepers.load(Ordering::Relaxed) + 1 >= self.size.load(Ordering::Relaxed);
        if alone && self.spare_cpu() {
            for _ in 0..SPINS_PER_LOOK {
                if holds_work() {
                    return;
                }
                std::hint::spin_loop();
            }
        } else {
            std::thread::yield_now();
        }
    }

    /// Whether the machine has a CPU besides the one a pushing thread uses (more than one
    /// searcher is allowed only then): a worker may spin, or be counted on to start a task at
    /// once, only with one.
    fn spare_cpu(&self) -> bool {
        self.max_searching > 1
    }

    /// How many workers search now.
    #[cfg(test)]
    pub(crate) fn searchers(&self) -> usize {
        self.searching.load(Ordering::SeqCst)
    }

    /// Whether a task queued now on the worker that rings `bell` (`busy` or not) would start at
    /// once: some worker searches (it takes a task pushed to a sleeping worker), or that worker is
    /// awake and idle. Never on one CPU, where the worker would need the pushing thread's CPU.
    pub(crate) fn starts_at_once(&self, bell: &Bell, busy: bool) -> bool {
        self.spare_cpu()
            && (self.searching.load(Ordering::Relaxed) > 0 || !(bell.sleeping() || busy))
    }

    /// Whether a task waits for the worker `me` outside its pinned queue: in its shared queue, its
    /// priority lanes, or the injector (which every worker looks at).
    pub(crate) fn queued_for(&self, me: &Sibling) -> bool {
        !me.shared.is_empty() || me.urgent.queued.load(Ordering::Acquire) > 0 || self.has_injected()
    }

    /// Ends a search that found work (or gives back a claimed place): the last searcher to go
    /// wakes a sleeper while the injector holds work or a push left its mark, since that push
    /// counted on a searcher.
    pub(crate) fn end_search(&self) {
        if self.stop_searching() && (self.has_injected() || self.take_mark()) {
            self.wake_one_holding_work();
        }
    }

    /// Stops searching; `true` for the last searcher.
    pub(crate) fn stop_searching(&self) -> bool {
        self.searching.fetch_sub(1, Ordering::SeqCst) == 1
    }

    /// Takes the mark a push left ([`Crew::skipped`]): `true` when a task may be waiting with
    /// nobody looking for it. Called after the caller's own write (lying down, or no longer
    /// searching), so that a push either sees that write or leaves its mark for this read.
    pub(crate) fn take_mark(&self) -> bool {
        fence(Ordering::SeqCst);
        self.skipped.load(Ordering::Relaxed) && self.skipped.swap(false, Ordering::AcqRel)
    }

    /// Some sibling holds a task that may be stolen.
    pub(crate) fn any_stealable(&self) -> bool {
        if self.has_injected() {
            return true;
        }
        let members = self.members.read().unwrap_or_else(|p| p.into_inner());
        members.iter().any(Sibling::stealable)
    }

    /// Wakes a sleeping worker when some worker holds a task that may be stolen, or the injector
    /// holds one: the sleeper that holds it, if one does.
    pub(crate) fn wake_one_holding_work(&self) {
        let members = self.members.read().unwrap_or_else(|p| p.into_inner());
        let sleeper = || members.iter().find(|s| s.bell.sleeping());
        let holder = members.iter().find(|s| s.bell.sleeping() && s.stealable());
        let woken = match holder {
            Some(s) => Some(s),
            None if self.has_injected() || members.iter().any(Sibling::stealable) => sleeper(),
            None => None,
        };
        if let Some(s) = woken {
            s.bell.ring();
        }
    }

    /// A task to steal for the worker `me`: from the busy or sleeping sibling with the most shared
    /// tasks queued, its highest lane first; and the load counter it was counted on.
    pub(crate) fn steal(&self, me: u64) -> Option<(Box<dyn ErasedTask>, Arc<AtomicUsize>)> {
        let members = self.members.read().unwrap_or_else(|p| p.into_inner());
        let victim = members
            .iter()
            .filter(|s| s.id != me && s.stealable())
            .max_by_key(|s| s.shared.len())?;
        let task = victim.urgent.steal(&victim.shared)?;
        Some((task, victim.load.clone()))
    }
}

/// The crew of one pool's thread workers.
pub(crate) type Siblings = Arc<Crew>;
