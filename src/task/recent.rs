//! A pool's last failures ([`RecentFailure`]), kept for people looking at the pool (the
//! dashboard, a status endpoint): a small ring written on the failure path only, so a task that
//! succeeds costs nothing here.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use super::error::TaskError;
use super::output::TaskId;
use crate::channel::Channel;

/// One of a pool's last failed tasks, from
/// [`PoolHandle::recent_failures`](crate::PoolHandle::recent_failures).
///
/// The error's message is the task's own text (a panic message, an `Err`'s `Display`): user data.
/// Show it as text, never as markup.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecentFailure {
    /// The task.
    pub id: TaskId,
    /// The worker it failed on (its channel then).
    pub worker: Channel,
    /// Why.
    pub error: TaskError,
    /// Its attempt that failed (from 1; above 1 after [retries](crate::Retry)).
    pub attempt: u32,
    /// When it failed (wall clock).
    pub at: SystemTime,
    /// The failure's number in the pool's count of failures (from 1), so a reader can tell the
    /// failures it has seen from new ones.
    pub seq: u64,
}

/// The last [`CAPACITY`] failures of one pool, shared by its workers' finishers.
pub(crate) struct RecentFailures {
    ring: Mutex<(u64, VecDeque<RecentFailure>)>,
}

/// How many failures a pool keeps.
pub(crate) const CAPACITY: usize = 32;

impl Default for RecentFailures {
    fn default() -> Self {
        RecentFailures {
            ring: Mutex::new((0, VecDeque::with_capacity(CAPACITY))),
        }
    }
}

impl RecentFailures {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, VecDeque<RecentFailure>)> {
        // A poisoned ring still holds whole entries.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a failure (dropping the oldest past the capacity).
    pub(crate) fn note(&self, id: TaskId, worker: &Channel, error: TaskError, attempt: u32) {
        let at = SystemTime::now();
        let mut ring = self.lock();
        ring.0 += 1;
        let seq = ring.0;
        if ring.1.len() == CAPACITY {
            ring.1.pop_front();
        }
        ring.1.push_back(RecentFailure {
            id,
            worker: worker.clone(),
            error,
            attempt,
            at,
            seq,
        });
    }

    /// The failures kept, oldest first.
    pub(crate) fn list(&self) -> Vec<RecentFailure> {
        self.lock().1.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_failures_in_order_with_their_numbers() {
        let r = RecentFailures::default();
        let w = Channel::from("w");
        for i in 1..=(CAPACITY as u64 + 3) {
            r.note(TaskId(i), &w, TaskError::Cancelled, 1);
        }
        let list = r.list();
        assert_eq!(list.len(), CAPACITY);
        assert_eq!(list[0].id, TaskId(4));
        assert_eq!(list[0].seq, 4);
        assert_eq!(list.last().map(|f| f.seq), Some(CAPACITY as u64 + 3));
    }
}
