//! A child's resource limits, seen from its host: the CPU limit the child sets on itself is told
//! from other deaths by its signal (SIGXCPU), the resident-memory limit is watched from here
//! (`/proc/<pid>/statm`, read while the child runs a job), and either fails the running job with
//! [`TaskError::LimitExceeded`] and replaces the child as after a crash.

use std::time::{Duration, Instant};

use super::reap::reap;
use super::state::Host;
use crate::task::{Exit, Limit, TaskError};

impl Host {
    /// The limit a child that ended as `exit` went over, if that is how it ended: SIGXCPU while
    /// a CPU limit is set. (Without one, SIGXCPU is an ordinary crash: a job set a limit itself.)
    pub(super) fn limit_of(&self, exit: &Exit) -> Option<Limit> {
        match (self.cfg.cpu_per_job, exit) {
            (Some(limit), Exit::Signal(libc::SIGXCPU)) => Some(Limit::CpuTime(limit)),
            _ => None,
        }
    }

    /// When the child's resident memory is next due to be read: with a memory limit, while the
    /// child has a job.
    pub(super) fn memory_check_at(&self) -> Option<Instant> {
        self.cfg.max_resident?;
        let conn = self
            .conn
            .as_ref()
            .filter(|c| c.jobs.is_some() && !c.broken)?;
        if self.shared.lock().inflight.is_empty() {
            return None;
        }
        Some(conn.memory_read + self.cfg.memory_poll)
    }

    /// Reads the child's resident memory if it is due; above the limit, the running job fails
    /// and the child is killed at once (SIGKILL: a runaway allocation gets no grace) and replaced.
    pub(super) fn watch_memory(&mut self) {
        let (Some(at), Some(limit)) = (self.memory_check_at(), self.cfg.max_resident) else {
            return;
        };
        let Some(conn) = self.conn.as_mut().filter(|_| Instant::now() >= at) else {
            return;
        };
        conn.memory_read = Instant::now();
        if let Some(resident) = resident_bytes(conn.child.id()).filter(|r| *r > limit) {
            self.over_limit(Limit::ResidentMemory { limit, resident });
        }
    }

    /// The running job went over `limit` (seen from here): fail it, kill the child's group, and
    /// start a replacement for the jobs sent after it, which never started.
    fn over_limit(&mut self, limit: Limit) {
        // From here the child's answers are ignored: the job fails now, whatever it does.
        let (fin, victim, rest) = self.take_inflight();
        if let Some(v) = victim {
            self.shared
                .settle_fail(&fin, v.task, TaskError::LimitExceeded(limit.clone()));
        }
        if let Some(mut conn) = self.conn.take() {
            reap(&mut conn.child, Duration::ZERO);
        }
        tracing::debug!(worker = %fin.worker(), %limit, "worker process killed over a limit");
        self.failures = 0;
        self.replace(rest, limit_reason(&limit));
    }
}

/// The reason of the [`WorkerRestarted`](crate::WorkerRestarted) that follows a limit's kill.
pub(super) fn limit_reason(limit: &Limit) -> String {
    format!("killed: the running job went over a limit ({limit})")
}

/// A process's resident memory in bytes, from `/proc/<pid>/statm` (`None` if it cannot be read).
pub(super) fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096))
}
