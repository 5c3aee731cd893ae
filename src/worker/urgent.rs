//! A thread worker's queues for tasks that are not `Normal` ([`Urgent`]): its `High` and `Low`
//! lanes, pinned and shared, beside the normal queues that `thread` keeps as they were.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::task::{ErasedTask, LaneTurn, Priority};

/// What a worker's pinned queue carries: tasks, and the stop that comes after them.
pub(crate) enum Msg {
    Run(Box<dyn ErasedTask>),
    Stop,
}

pub(crate) type Queue = (Sender<Box<dyn ErasedTask>>, Receiver<Box<dyn ErasedTask>>);

/// A worker's queues for the tasks that are not `Normal`: `High` and `Low`, each pinned and
/// shared, and how many tasks they hold (zero almost always: then the worker looks only at its
/// normal queues, as if priorities did not exist).
#[derive(Clone)]
pub(crate) struct Urgent {
    /// `[High, Low]`.
    pub(crate) pinned: [Queue; 2],
    /// `[High, Low]`; stealable.
    pub(crate) shared: [Queue; 2],
    pub(crate) queued: Arc<AtomicUsize>,
}

impl Urgent {
    pub(crate) fn new() -> Self {
        let q = crossbeam_channel::unbounded;
        Urgent {
            pinned: [q(), q()],
            shared: [q(), q()],
            queued: Arc::default(),
        }
    }

    /// The index in `[High, Low]` of a priority that is not `Normal`.
    pub(crate) fn side(priority: Priority) -> Option<usize> {
        match priority {
            Priority::High => Some(0),
            Priority::Normal => None,
            Priority::Low => Some(1),
        }
    }

    pub(crate) fn push(
        &self,
        task: Box<dyn ErasedTask>,
        side: usize,
        pinned: bool,
    ) -> Result<(), Box<dyn ErasedTask>> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        let q = if pinned {
            &self.pinned[side]
        } else {
            &self.shared[side]
        };
        q.0.send(task).map_err(|e| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            e.0
        })
    }

    /// Takes from one side: pinned first, then shared.
    pub(crate) fn take(&self, side: usize) -> Option<Box<dyn ErasedTask>> {
        let task = self.pinned[side]
            .1
            .try_recv()
            .or_else(|_| self.shared[side].1.try_recv())
            .ok()?;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        Some(task)
    }

    /// A steal from a sibling whose lanes these are and whose normal shared queue is `shared`:
    /// its highest lane first (`High`, normal, `Low`).
    pub(crate) fn steal(
        &self,
        shared: &Receiver<Box<dyn ErasedTask>>,
    ) -> Option<Box<dyn ErasedTask>> {
        self.take_shared(0)
            .or_else(|| shared.try_recv().ok())
            .or_else(|| self.take_shared(1))
    }

    /// Takes from one side's shared queue only (a steal).
    fn take_shared(&self, side: usize) -> Option<Box<dyn ErasedTask>> {
        let task = self.shared[side].1.try_recv().ok()?;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        Some(task)
    }

    pub(crate) fn has_shared(&self) -> bool {
        self.queued.load(Ordering::Acquire) > 0 && self.shared.iter().any(|q| !q.1.is_empty())
    }

    /// Everything queued, shared (stealable) first, then pinned; the count follows.
    pub(crate) fn drain(&self, shared: bool, pinned: bool) -> Vec<Box<dyn ErasedTask>> {
        let mut all = Vec::new();
        let sides = self
            .shared
            .iter()
            .filter(|_| shared)
            .chain(self.pinned.iter().filter(|_| pinned));
        for q in sides {
            all.extend(q.1.try_iter());
        }
        self.queued.fetch_sub(all.len(), Ordering::AcqRel);
        all
    }
}

impl Urgent {
    /// A worker's next task by lane turn, while its `High` or `Low` queues hold any: `High`, then
    /// the normal queues (`pinned` first, which may hold the stop, then `shared`), then `Low`, in
    /// the order the turn gives. `Some(None)` is the stop; `None`, nothing in any lane.
    pub(crate) fn next_by_turn(
        &self,
        turn: &std::cell::Cell<LaneTurn>,
        pinned: &Receiver<Msg>,
        shared: &Receiver<Box<dyn ErasedTask>>,
    ) -> Option<Option<Box<dyn ErasedTask>>> {
        let mut t = turn.take();
        let order = t.next();
        turn.set(t);
        for lane in order {
            let found = match lane {
                0 => self.take(0),
                2 => self.take(1),
                _ => match pinned.try_recv() {
                    Ok(Msg::Run(task)) => Some(task),
                    Ok(Msg::Stop) => return Some(None),
                    Err(_) => shared.try_recv().ok(),
                },
            };
            if found.is_some() {
                return Some(found);
            }
        }
        None
    }
}
