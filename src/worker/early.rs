//! A thread worker's claim to a searcher's place, taken just before its task's value is set.

use std::sync::atomic::{AtomicBool, Ordering};

use super::crew::{Sibling, Siblings};

/// A worker's claim to a searcher's place, taken just before an awaited task's value is set: after
/// the task's own code (its body, its retry policy's check, the drop of its extras), so that
/// nothing the user wrote runs while the crew counts the worker as looking for work.
///
/// The caller awaiting that value pushes its next task as soon as it has it, often before the
/// worker is back in its loop. Without the claim, that push finds nobody searching and wakes a
/// sleeping sibling for its task (a futex call, and a second awake worker that makes the first
/// yield instead of spin, see [`Crew::pause`](super::crew::Crew::pause)); with it, the push
/// leaves the task to the worker about to look.
pub(crate) struct EarlySearch {
    crew: Siblings,
    /// The worker's queues: with a task queued it takes that next and claims nothing (a claim
    /// costs a few shared atomics per task, which a pool with work queued should not pay).
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

    /// Claims a place, if the loop runs, nothing waits in the worker's shared queue, its priority
    /// lanes or the injector (a pinned task is not looked at: the search finds it at once), and
    /// a place is free. Called on the worker's thread, by the task, just before its value is set.
    pub(crate) fn value_due(&self) {
        if self.armed.load(Ordering::Relaxed)
            && !self.crew.queued_for(&self.me)
            && self.crew.start_searching()
        {
            self.claimed.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a place was claimed; the caller searches in it from now on (and gives it back).
    pub(crate) fn take(&self) -> bool {
        self.claimed.swap(false, Ordering::Relaxed)
    }

    /// Arms the claim while the returned guard lives. Dropped, it gives back a place claimed and
    /// not taken over (the loop unwound), as a search that ends does: a push that saw the claim
    /// and left its task to the searchers gets a sleeper woken for it.
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
            self.0.crew.end_search();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use super::*;
    use crate::task::{ErasedTask, TaskId};
    use crate::worker::crew::Crew;
    use crate::worker::urgent::Urgent;

    type Queue = crossbeam_channel::Sender<Box<dyn ErasedTask>>;

    /// A new member of `crew`, and the sending end of its shared queue.
    fn join(crew: &Siblings, id: u64) -> (Sibling, Queue) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let me = Sibling {
            id,
            shared: rx,
            load: Arc::new(AtomicUsize::new(0)),
            busy: Arc::new(AtomicBool::new(true)),
            bell: Arc::new(crew.bell()),
            urgent: Urgent::new(),
        };
        crew.join(me.clone());
        (me, tx)
    }

    /// A crew of one member (whose queue the test keeps), and that member's claim.
    fn member() -> (Siblings, Queue, EarlySearch) {
        let crew: Siblings = Arc::new(Crew::default());
        let (me, tx) = join(&crew, 1);
        let early = EarlySearch::new(crew.clone(), me);
        (crew, tx, early)
    }

    fn task() -> Box<dyn ErasedTask> {
        crate::task::Task::new(|| ()).into_cell(TaskId(1)).0
    }

    #[test]
    fn a_value_due_in_the_loop_with_nothing_queued_claims_a_place_the_search_takes_over() {
        let (crew, _tx, early) = member();
        let armed = early.arm();
        early.value_due();
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
        early.value_due();
        assert_eq!(crew.searchers(), 1);
        drop(armed);
        assert_eq!(crew.searchers(), 0);
        assert!(!early.take());
    }

    #[test]
    fn nothing_is_claimed_outside_the_loop_with_work_queued_or_with_no_place_free() {
        let (crew, tx, early) = member();
        // Not armed: a stopping worker's last tasks.
        early.value_due();
        assert_eq!(crew.searchers(), 0);
        let armed = early.arm();
        // A task queued on the worker: it takes that next, and searches for nothing.
        tx.send(task()).unwrap();
        early.value_due();
        assert_eq!(crew.searchers(), 0);
        drop(tx);
        // Every place taken (as many searchers as CPUs).
        let (crew, _tx, early) = member();
        let _armed2 = early.arm();
        while crew.start_searching() {}
        let full = crew.searchers();
        early.value_due();
        assert_eq!(crew.searchers(), full);
        assert!(!early.take());
        drop(armed);
    }

    #[test]
    fn a_place_given_back_by_the_guard_wakes_a_sleeper_for_a_task_a_push_left_to_it() {
        let (crew, _tx, early) = member();
        let (sleeper, _queue) = join(&crew, 2);
        sleeper.bell.lie_down();
        let armed = early.arm();
        early.value_due();
        // A push to the sleeper while the place is claimed: its task goes to the injector, and
        // nobody is woken (a searcher, the claimant, will take it).
        let load = sleeper.load.clone();
        assert!(crew.inject(task(), &sleeper.bell, &load).is_none());
        crew.queued(&sleeper.bell, false, false);
        assert!(sleeper.bell.sleeping());
        // The loop unwinds before it looks: the place goes back, and the sleeper is woken for
        // the task (not left asleep beside it).
        drop(armed);
        assert_eq!(crew.searchers(), 0);
        assert!(!sleeper.bell.sleeping());
        assert!(crew.injected().is_some());
    }
}
