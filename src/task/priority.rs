//! Task priorities: [`Priority`], and the rule every worker queue takes its next task by
//! ([`LaneTurn`]): the highest lane first, with a turn now and then for the lower lanes so that
//! none waits for ever.

use std::collections::VecDeque;

/// How urgent a task is (Celery's `priority`, Sidekiq's weighted queues): a worker takes its
/// `High` tasks before its `Normal` ones and those before its `Low` ones.
///
/// No lane starves: while higher lanes are full, every 4th task a worker takes comes from
/// `Normal` or below, and every 16th from `Low` first (see [`Task::priority`](crate::Task::priority)).
/// Priority orders a worker's *queue*: it does not move a task from one worker to another (the
/// strategy placed it), but an idle worker steals a busy sibling's highest lane first.
///
/// ```
/// use circuits::Priority;
///
/// assert!(Priority::High > Priority::Normal && Priority::Normal > Priority::Low);
/// assert_eq!(Priority::default(), Priority::Normal);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    /// Taken after the other lanes (but at least every 16th task while it has any).
    Low,
    /// The default.
    #[default]
    Normal,
    /// Taken first.
    High,
}

/// The number of lanes, one per [`Priority`].
pub(crate) const LANES: usize = 3;

impl Priority {
    /// The lane index: 0 is taken first.
    pub(crate) fn lane(self) -> usize {
        match self {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Low => 2,
        }
    }
}

/// The order in which a worker looks at its lanes for its next task: usually high to low; every
/// 4th turn normal first, every 16th low first, so a lower lane gets a share under any load.
#[derive(Debug, Default)]
pub(crate) struct LaneTurn(u32);

impl LaneTurn {
    /// The lanes to look at, in order, for the next task.
    pub(crate) fn next(&mut self) -> [usize; LANES] {
        self.0 = self.0.wrapping_add(1);
        if self.0.is_multiple_of(16) {
            [2, 1, 0]
        } else if self.0.is_multiple_of(4) {
            [1, 2, 0]
        } else {
            [0, 1, 2]
        }
    }
}

/// Something queued with a priority.
pub(crate) trait Prioritized {
    fn priority(&self) -> Priority;
}

/// A queue in lanes, one per priority, taken from by [`LaneTurn`]; the same operations as the
/// `VecDeque` it replaces (a process worker's tasks not yet sent to its child).
pub(crate) struct Lanes<T> {
    lanes: [VecDeque<T>; LANES],
    turn: LaneTurn,
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Lanes {
            lanes: Default::default(),
            turn: LaneTurn::default(),
        }
    }
}

impl<T: Prioritized> Lanes<T> {
    /// Queues `item` at the back of its lane.
    pub(crate) fn push_back(&mut self, item: T) {
        self.lanes[item.priority().lane()].push_back(item);
    }

    /// Puts `item` back at the front of its lane (it was taken, and could not be sent).
    pub(crate) fn push_front(&mut self, item: T) {
        self.lanes[item.priority().lane()].push_front(item);
    }

    /// The next item by lane turn.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        if self.lanes[0].is_empty() && self.lanes[2].is_empty() {
            return self.lanes[1].pop_front(); // no priorities in use: no turn taken
        }
        let order = self.turn.next();
        order.iter().find_map(|&l| self.lanes[l].pop_front())
    }
}

impl<T> Lanes<T> {
    pub(crate) fn len(&self) -> usize {
        self.lanes.iter().map(VecDeque::len).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lanes.iter().all(VecDeque::is_empty)
    }
}

impl<T> IntoIterator for Lanes<T> {
    type Item = T;
    type IntoIter = std::iter::Flatten<std::array::IntoIter<VecDeque<T>, LANES>>;

    /// Every item, highest lane first.
    fn into_iter(self) -> Self::IntoIter {
        self.lanes.into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct P(Priority, u32);
    impl Prioritized for P {
        fn priority(&self) -> Priority {
            self.0
        }
    }

    #[test]
    fn higher_lanes_go_first_and_no_lane_starves() {
        let mut q = Lanes::default();
        for i in 0..100 {
            q.push_back(P(Priority::High, i));
            q.push_back(P(Priority::Normal, i));
            q.push_back(P(Priority::Low, i));
        }
        let first: Vec<_> = (0..16).map(|_| q.pop_front().unwrap().0).collect();
        let count = |p| first.iter().filter(|&&x| x == p).count();
        assert_eq!((count(Priority::High), count(Priority::Normal)), (12, 3));
        assert_eq!(count(Priority::Low), 1);
        assert_eq!(first[0], Priority::High);
        // Within a lane, first in first out.
        let rest: Vec<_> = std::iter::from_fn(|| q.pop_front()).collect();
        let highs: Vec<_> = rest
            .iter()
            .filter(|p| p.0 == Priority::High)
            .map(|p| p.1)
            .collect();
        assert_eq!(highs, (12..100).collect::<Vec<_>>());
        assert!(q.is_empty());
    }

    #[test]
    fn a_queue_without_priorities_is_plain_fifo() {
        let mut q = Lanes::default();
        for i in 0..10 {
            q.push_back(P(Priority::Normal, i));
        }
        q.push_front(P(Priority::Normal, 99));
        let order: Vec<_> = std::iter::from_fn(|| q.pop_front()).map(|p| p.1).collect();
        assert_eq!(order, [99, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(q.len(), 0);
    }
}
