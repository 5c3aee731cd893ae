//! What a process worker's host thread holds: its live child ([`Conn`]) and its state ([`Host`]).
//! The host's loop is in `serve`, the child's life (start, failure, replacement, end) in `life`.

use std::collections::{HashSet, VecDeque};
use std::process::Child;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::carrier::Input;
use super::config::ProcessConfig;
use super::reader::Readers;
use super::shared::{InFlight, PidMark, Shared};
use crate::task::{ErasedTask, Finisher, Lanes, StartStage};
use crate::worker::{PoolLink, Shutdown, WorkerSlot};

/// A live child and the write end of its input.
pub(super) struct Conn {
    pub(super) child: Child,
    pub(super) input: Input,
    /// Job names it serves; `None` until its handshake arrived.
    pub(super) jobs: Option<HashSet<String>>,
    pub(super) started: Instant,
    pub(super) generation: u64,
    /// Writing to it failed: it is dying, and its reader will say so.
    pub(super) broken: bool,
    /// Jobs sent to it so far.
    pub(super) sent: u64,
    /// Jobs it may run before it is recycled, if it is.
    pub(super) quota: Option<u64>,
    /// Why it is being recycled, once it is: it gets no more jobs.
    pub(super) recycling: Option<String>,
    /// When its resident memory was last read for the memory limit.
    pub(super) memory_read: Instant,
    /// Its pid, shown while it lives.
    pub(super) _pid: PidMark,
}

pub(super) struct Host {
    pub(super) cfg: ProcessConfig,
    pub(super) shared: Arc<Shared>,
    pub(super) link: Option<Arc<dyn PoolLink>>,
    pub(super) slot: Weak<WorkerSlot>,
    pub(super) conn: Option<Conn>,
    pub(super) next_run: u64,
    /// Tasks accepted but not yet sent to the child, in priority lanes.
    pub(super) pending: Lanes<Box<dyn ErasedTask>>,
    pub(super) stopping: Option<Shutdown>,
    /// After a failed start: when to try again.
    pub(super) retry_at: Option<Instant>,
    /// A task came since the last start, which past the limit of failed handshakes is what
    /// makes the worker try again (see `Host::wants_start`).
    pub(super) asked: bool,
    /// Failed starts in a row, and the last one's stage and reason.
    pub(super) failures: usize,
    pub(super) last_failure: Option<(StartStage, String)>,
    /// The buffer jobs' frames are encoded into before they are written, reused from one send
    /// to the next (up to [`RETAIN`](crate::wire::transport::RETAIN) bytes).
    pub(super) encoded: Vec<u8>,
    /// The threads reading its children's output, kept from one child to the next.
    pub(super) readers: Readers,
}

impl Host {
    /// The current child's answers, when it is up and they come through the ring, and whether
    /// it was awake for the last jobs sent (see [`Input::answers`]).
    pub(super) fn answers(&self) -> Option<(&Arc<super::answers::Answers>, bool)> {
        let conn = self
            .conn
            .as_ref()
            .filter(|c| !c.broken && c.jobs.is_some())?;
        conn.input.answers()
    }

    pub(super) fn fin(&self) -> Arc<Finisher> {
        self.shared.lock().fin.clone()
    }

    /// Detaches the in-flight tasks from the current child (whose reader now settles nothing):
    /// the running one, and the ones sent after it, which never started.
    pub(super) fn take_inflight(
        &mut self,
    ) -> (Arc<Finisher>, Option<InFlight>, VecDeque<InFlight>) {
        let mut st = self.shared.lock();
        st.generation += 1;
        let mut all = std::mem::take(&mut st.inflight);
        (st.fin.clone(), all.pop_front(), all)
    }
}
