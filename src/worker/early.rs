//! A thread worker's claim to a searcher's place, taken as its task's body returns.

use std::sync::atomic::{AtomicBool, Ordering};

use super::crew::{Sibling, Siblings};

/// A worker's claim to a searcher's place, taken the moment its task's body returns, before the
/// task's value is set.
///
/// The caller awaiting that value pushes its next task as soon as it has it, often before the
/// worker is back in its loop. Without the claim, that push finds nobody searching and wakes a
/// sleeping sibling for its task (a futex call, and a second awake worker that makes the first
/// yield instead of spin, see [`Crew::pause`](super::crew::Crew::pause)); with it, the push leaves the task to the worker
/// about to look.
pub(crate) struct EarlySearch {
    crew: Siblings,
    /// The worker's queues: with a task queued it takes that next and claims nothing (a claim
    /// costs a few shared atomics per task, which a busy pool should not pay).
    me: Sibling,
    /// The worker's main loop runs: it looks for work after each task (a stopping worker's last
    /// tasks run outside it, and claim nothing).
    armed: AtomicBool,
    /// A place is claimed, and not yet taken over by the worker's search.
    claimed: AtomicBool,
}

impl EarlySearch {
    pub(crate) fn new(crew: Siblings, me: Sibling) -> Self {
        EarlySearch {
            crew,
            me,
            armed: AtomicBool::new(false),
            claimed: AtomicBool::new(false),
        }
    }

    /// Claims a place, if the loop runs, nothing waits in the worker's queues or the injector,
    /// and a place is free. Called on the worker's thread, by the task as its body returns.
    pub(crate) fn body_ended(&self) {
        let idle = self.me.shared.is_empty()
            && self.me.urgent.queued.load(Ordering::Relaxed) == 0
            && !self.crew.has_injected();
        if self.armed.load(Ordering::Relaxed) && idle && self.crew.start_searching() {
            self.claimed.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a place was claimed; the caller searches in it from now on (and gives it back).
    pub(crate) fn take(&self) -> bool {
        self.claimed.swap(false, Ordering::Relaxed)
    }

    /// Arms the claim while the returned guard lives. Dropped, it gives back a place claimed and
    /// not taken over (the loop ended, or unwound).
    pub(crate) fn arm(&self) -> Armed<'_> {
        self.armed.store(true, Ordering::Relaxed);
        Armed(self)
    }
}

/// See [`EarlySearch::arm`].
pub(crate) struct Armed<'a>(&'a EarlySearch);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.0.armed.store(false, Ordering::Relaxed);
        if self.0.take() {
            self.0.crew.stop_searching();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use super::*;
    use crate::worker::crew::Crew;
    use crate::worker::urgent::Urgent;

    /// A crew of one member (whose queue the test keeps), and that member's claim.
    fn member() -> (
        Siblings,
        crossbeam_channel::Sender<Box<dyn crate::task::ErasedTask>>,
        EarlySearch,
    ) {
        let crew: Siblings = Arc::new(Crew::default());
        let (tx, rx) = crossbeam_channel::unbounded();
        let me = Sibling {
            id: 1,
            shared: rx,
            load: Arc::new(AtomicUsize::new(0)),
            busy: Arc::new(AtomicBool::new(true)),
            bell: Arc::new(crew.bell()),
            urgent: Urgent::new(),
        };
        crew.join(me.clone());
        let early = EarlySearch::new(crew.clone(), me);
        (crew, tx, early)
    }

    #[test]
    fn a_body_ending_in_the_loop_with_nothing_queued_claims_a_place_the_search_takes_over() {
        let (crew, _tx, early) = member();
        let armed = early.arm();
        early.body_ended();
        // The place is taken: a push now sees a searcher (and leaves its task to it).
        assert_eq!(crew.searchers(), 1);
        assert!(early.take());
        assert!(!early.take(), "a claim is taken over once");
        // The search gives the place back itself; the guard has nothing left to give.
        crew.stop_searching();
        drop(armed);
        assert_eq!(crew.searchers(), 0);
    }

    #[test]
    fn the_guard_gives_back_a_place_the_loop_did_not_take_over() {
        let (crew, _tx, early) = member();
        let armed = early.arm();
        early.body_ended();
        assert_eq!(crew.searchers(), 1);
        drop(armed);
        assert_eq!(crew.searchers(), 0);
        assert!(!early.take());
    }

    #[test]
    fn nothing_is_claimed_outside_the_loop_with_work_queued_or_with_no_place_free() {
        let (crew, tx, early) = member();
        // Not armed: a stopping worker's last tasks.
        early.body_ended();
        assert_eq!(crew.searchers(), 0);
        let armed = early.arm();
        // A task queued on the worker: it takes that next, and searches for nothing.
        let (task, _value) = crate::task::Task::new(|| ()).into_cell(crate::task::TaskId(1));
        tx.send(task).unwrap();
        early.body_ended();
        assert_eq!(crew.searchers(), 0);
        drop(tx);
        // Every place taken (as many searchers as CPUs).
        let (crew, _tx, early) = member();
        let _armed2 = early.arm();
        while crew.start_searching() {}
        let full = crew.searchers();
        early.body_ended();
        assert_eq!(crew.searchers(), full);
        assert!(!early.take());
        drop(armed);
    }
}
