//! The host thread's loop: take messages (tasks, stops, the reader's news), send jobs ahead to the
//! child in one write per burst, and wake for the running job's timeout or a restart's back-off.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::shared::{lock, InFlight, Msg, Relay};
use super::state::Host;
use crate::task::{Inputs, TaskError};
use crate::wire::{self, Frame, FrameSink, Greeting, Payload, WireError};
use crate::worker::{Shutdown, LINGER};

fn linger_recv(rx: &Receiver<Msg>) -> Result<Msg, crossbeam_channel::RecvError> {
    let until = Instant::now() + LINGER;
    while Instant::now() < until {
        if let Ok(m) = rx.try_recv() {
            return Ok(m);
        }
        std::thread::yield_now();
    }
    rx.recv()
}

/// The host thread's loop: take messages (waiting without the host's lock, so that pushers and
/// the reader can relay meanwhile), handle them, and send what is pending.
pub(super) fn serve(host: &Mutex<Host>, rx: &Receiver<Msg>) {
    serve_until_done(host, rx);
    // Tasks sent to this thread from now on would never run: `submit` hands them back once it
    // sees `closed`, and the ones already on their way fail here.
    let shared = lock(host).shared.clone();
    shared.closed.store(true, Ordering::SeqCst);
    let fin = shared.lock().fin.clone();
    while shared.in_hand.load(Ordering::SeqCst) > 0 {
        match rx.recv_timeout(std::time::Duration::from_millis(1)) {
            Ok(Msg::Run(task)) => {
                shared.in_hand.fetch_sub(1, Ordering::SeqCst);
                shared.settle_fail(&fin, task, TaskError::Cancelled);
            }
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}

fn serve_until_done(host: &Mutex<Host>, rx: &Receiver<Msg>) {
    loop {
        let deadline = lock(host).deadline();
        let msg = match deadline {
            Some(at) => match rx.recv_deadline(at) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Msg::Stop(Shutdown::Drain)),
            },
            None => Some(linger_recv(rx).unwrap_or(Msg::Stop(Shutdown::Drain))),
        };
        let mut host = lock(host);
        match msg {
            Some(m) => host.handle(m),
            None => host.expire(),
        }
        // Take everything else already waiting before writing, so that a burst of tasks goes
        // to the child in one write.
        while let Ok(m) = rx.try_recv() {
            host.handle(m);
        }
        host.watch_memory();
        if host.stopping == Some(Shutdown::Abort) {
            host.kill_all();
            return;
        }
        host.pump();
        host.recycle_if_idle();
        let idle = host.shared.lock().inflight.is_empty();
        if host.stopping.is_some() && host.pending.is_empty() && idle {
            host.close();
            return;
        }
    }
}

impl Host {
    /// The next moment something must happen without a message: the running task's timeout, the
    /// child's handshake limit, or the next reading of its memory.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let Some(conn) = self.conn.as_ref() else {
            // The next try, unless nothing will make one (no stop under way, nothing asked).
            return self
                .retry_at
                .filter(|_| self.stopping.is_some() || self.wants_start());
        };
        if conn.jobs.is_none() {
            return Some(conn.started + self.cfg.handshake_timeout);
        }
        let timeout = {
            let st = self.shared.lock();
            let limit = st.inflight.front().and_then(|f| f.task.timeout());
            limit.map(|limit| st.front_since + limit)
        };
        timeout.into_iter().chain(self.memory_check_at()).min()
    }

    pub(super) fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Run(task) => {
                self.pending.push_back(task);
                // In `pending` now: a relay may go on (see `ProcessWorker::submit`).
                self.shared.in_hand.fetch_sub(1, Ordering::SeqCst);
            }
            Msg::Stop(how) => {
                // A harder stop wins over a softer one.
                let rank = |s: Option<Shutdown>| match s {
                    None => 0,
                    Some(Shutdown::Drain) => 1,
                    Some(Shutdown::Abort) => 2,
                };
                if rank(Some(how)) > rank(self.stopping) {
                    self.stopping = Some(how);
                    self.shared.lock().stopping = Some(how);
                }
                if how != Shutdown::Drain {
                    let fin = self.fin();
                    for task in std::mem::take(&mut self.pending) {
                        self.shared.settle_fail(&fin, task, TaskError::Cancelled);
                    }
                }
            }
            Msg::Attach(link, slot) => {
                self.link = Some(link);
                self.slot = slot;
            }
            Msg::Hello(generation, body) => {
                let Some(conn) = self.conn.as_mut().filter(|c| c.generation == generation) else {
                    return;
                };
                match wire::greeting(&body) {
                    Ok(Greeting::Ready(jobs)) => {
                        conn.jobs = Some(jobs.into_iter().collect());
                        self.shared
                            .phase
                            .store(super::shared::READY, Ordering::Relaxed);
                    }
                    Ok(Greeting::StateFailed(reason)) => self.state_failed(reason),
                    Err(e) => self.crashed(Some(e)),
                }
            }
            Msg::Gone(generation, why) => {
                if self
                    .conn
                    .as_ref()
                    .is_some_and(|c| c.generation == generation)
                {
                    let reason = match why {
                        WireError::Closed | WireError::Truncated => None,
                        other => Some(other),
                    };
                    self.crashed(reason);
                }
            }
            Msg::Answered => {}
            Msg::Cancel(run) => self.cancel_run(run),
            Msg::Retire(reply) => {
                // Unpinned tasks not yet sent go back to the pool (which moves them to the other
                // workers); pinned ones run here before the stop, as on a thread worker.
                let mut moved = Vec::new();
                for task in std::mem::take(&mut self.pending) {
                    if task.pinned() {
                        self.pending.push_back(task);
                    } else {
                        moved.push(task);
                    }
                }
                let _ = reply.send(moved);
                self.handle(Msg::Stop(Shutdown::Drain));
            }
        }
    }

    /// Sends pending tasks to the child, up to the pipeline depth, in one write.
    pub(super) fn pump(&mut self) {
        self.send_pending(false);
    }
}

impl Relay for Host {
    /// Sends what is pending from a thread other than the host's (a pusher, or the reader that
    /// just settled answers), when the child is ready and its ring has room: one thread hop
    /// fewer for each job. Never starts a child and never waits; what it cannot do it leaves to
    /// the host thread, which it wakes when nothing else will.
    fn relay(&mut self) -> bool {
        // (Recycling by memory reads the child's memory before each send: the host thread's.)
        let ready = self.stopping.is_none()
            && self.cfg.recycle_memory.is_none()
            && self.conn.as_ref().is_some_and(|c| {
                c.jobs.is_some() && !c.broken && c.recycling.is_none() && c.input.room().is_some()
            });
        if !ready {
            if !self.pending.is_empty() {
                let _ = self.shared.host.send(Msg::Answered);
            }
            return false;
        }
        let new_front = self.send_pending(true);
        let (full, timed) = {
            let st = self.shared.lock();
            let timed = st
                .inflight
                .front()
                .is_some_and(|f| f.task.timeout().is_some());
            (st.inflight.len() >= self.cfg.pipeline, timed)
        };
        // Tasks left for another reason than a full pipeline (whose answers bring the reader
        // back): the ring's space, a recycling child. A new first job in flight: the host must
        // watch its timeout or the child's memory.
        let left = !self.pending.is_empty() && !full;
        if left || (new_front && (timed || self.cfg.max_resident.is_some())) {
            let _ = self.shared.host.send(Msg::Answered);
        }
        new_front
    }
}

impl Host {
    /// The body of [`pump`](Self::pump) and [`relay`](Relay::relay). `relay`: stop at a frame
    /// that does not fit in the ring's free space (the host thread sends it). Returns whether a
    /// job became the first in flight.
    fn send_pending(&mut self, relay: bool) -> bool {
        if self.pending.is_empty() || self.stopping.is_some_and(|s| s != Shutdown::Drain) {
            self.shared.lock().backlog = self.pending.len();
            return false;
        }
        if self.conn.is_none() {
            if self.retry_at.is_some() {
                // Waiting out a failed start's back-off; past the limit, nobody waits for it,
                // and the task that came asks for one more try.
                if self.cfg.restart.past_limit(self.failures) {
                    self.fail_waiting();
                    self.asked = true;
                }
                return false;
            }
            if relay {
                return false;
            }
            self.connect();
        }
        let Some(conn) = self.conn.as_mut().filter(|c| !c.broken) else {
            return false;
        };
        if conn.jobs.is_none() {
            return false; // handshake not in yet; its frame wakes us
        }
        if self.recycle_due() {
            self.shared.lock().backlog = self.pending.len();
            return false; // it gets no more jobs; a new child takes the queue once it is done
        }
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let Some(jobs) = conn.jobs.as_ref() else {
            return false;
        };
        // What the carrier takes without waiting for the child. The host thread writes more only
        // while the child is idle (it reads the frame as it is written): waiting behind a job
        // that hangs, it could not fire that job's timeout. A relay never waits, and writes only
        // to the ring. The ring says how much it has free; the pipe holds at most the frames
        // sent behind the one the child runs (that one is read), so the rest of it is free.
        let quota_left = conn.quota.map_or(u64::MAX, |q| q.saturating_sub(conn.sent));
        let (room, idle, bytes_room) = {
            let st = self.shared.lock();
            let room = self.cfg.pipeline.saturating_sub(st.inflight.len());
            let room = room.min(usize::try_from(quota_left).unwrap_or(usize::MAX));
            let bytes_room = match (conn.input.room(), conn.input.pipe_capacity()) {
                (Some(free), _) => free,
                (None, Some(capacity)) if !relay => {
                    let behind: usize = st.inflight.iter().skip(1).map(|f| f.bytes).sum();
                    capacity.saturating_sub(behind)
                }
                // (A relay never reaches the pipe: `relay` checks for the ring first.)
                _ => 0,
            };
            (room, st.inflight.is_empty(), bytes_room)
        };
        // Encode outside the lock (the reader settles answers meanwhile).
        let mut placer = Placer {
            buf: std::mem::take(&mut self.encoded),
            ends: Vec::new(),
            buffering: false,
            bytes_room,
            may_stream: !relay && idle,
            max_frame: self.cfg.max_frame,
        };
        placer.buf.clear();
        let mut sent = Vec::new();
        let mut refused = Vec::new();
        while sent.len() < room {
            let Some(task) = self.pending.pop_front() else {
                break;
            };
            if task.expired() {
                refused.push((task, TaskError::Expired));
                continue;
            }
            if task.settled() {
                // Cancelled while it waited here: not sent (no event: it had its own).
                refused.push((task, TaskError::Cancelled));
                continue;
            }
            let first = sent.is_empty();
            let placed = match task.job() {
                None => Err(TaskError::Wire(WireError::Unexpected(
                    "a closure task reached a process worker".into(),
                ))),
                Some(job) if !jobs.contains(job.name) => {
                    Err(TaskError::UnknownJob(job.name.to_string()))
                }
                Some(job) => match &job.inputs {
                    Err(e) => Err(TaskError::Wire(WireError::Encode(e.clone()))),
                    // Framed from the task's own buffers: the input is copied once, into the ring
                    // (or into the buffer written after the loop).
                    Ok(Inputs::One(input)) => placer.place(
                        &mut conn.input,
                        &Frame::Run {
                            id: self.next_run,
                            job: Cow::Borrowed(job.name),
                            input: Payload::borrowed(input),
                            context: run_context(job),
                        },
                        first,
                    ),
                    Ok(Inputs::Batch(inputs)) => placer.place(
                        &mut conn.input,
                        &Frame::RunBatch {
                            id: self.next_run,
                            job: Cow::Borrowed(job.name),
                            inputs: inputs.iter().map(Payload::borrowed).collect(),
                            context: run_context(job),
                        },
                        first,
                    ),
                },
            };
            match placed {
                Ok(None) => {
                    // Not without waiting behind a job: sent when answers make room (the reader
                    // wakes the host thread, or relays it).
                    self.pending.push_front(task);
                    break;
                }
                Ok(Some(bytes)) => {
                    if let Some(cancel) = task.cancel_handle() {
                        // A cancel while the child runs it kills the child (see `cancel_run`).
                        let (host, run) = (self.shared.host.clone(), self.next_run);
                        cancel.cell().on_stop(Box::new(move || {
                            let _ = host.send(Msg::Cancel(run));
                        }));
                    }
                    sent.push(InFlight {
                        run: self.next_run,
                        task,
                        bytes,
                    });
                    self.next_run += 1;
                }
                Err(e) => refused.push((task, e)),
            }
        }
        let placed = sent.len() as u64;
        let new_front;
        let fin = {
            // In flight before it is written, so that its answer always finds it.
            let mut st = self.shared.lock();
            new_front = st.inflight.is_empty() && !sent.is_empty();
            if new_front {
                st.front_since = Instant::now();
            }
            st.inflight.extend(sent);
            st.backlog = self.pending.len();
            st.fin.clone()
        };
        for (task, e) in refused {
            self.shared.settle_fail(&fin, task, e);
        }
        // Frames placed in the ring are published with the buffered ones (none follow them).
        let Placer { buf, ends, .. } = placer;
        let mut written = Ok(());
        let mut start = 0;
        for &end in &ends {
            written = conn.input.send(&buf[start..end]);
            if written.is_err() {
                break;
            }
            start = end;
        }
        if written.is_ok() {
            written = conn.input.flush();
        }
        conn.sent += placed;
        wire::transport::retain(&mut self.encoded, buf);
        if written.is_err() {
            // The pipe broke: the child is gone. Its reader still holds the answers it wrote before
            // dying; the reader's `Gone`, after those are settled, says which task it died in.
            conn.broken = true;
        }
        new_front
    }
}

/// Where one send's frames go: encoded straight into the ring's free space while they fit there,
/// into the host's buffer otherwise (the pipe, or a frame larger than the free space, which the
/// host thread streams through the ring while the child is idle), to be written after the loop.
struct Placer {
    buf: Vec<u8>,
    /// Where each buffered frame ends in `buf`.
    ends: Vec<usize>,
    /// A frame went to the buffer: the ones after it follow it there, to stay in order.
    buffering: bool,
    /// What the ring takes without waiting for the child (see `send_pending`).
    bytes_room: usize,
    /// A first frame larger than `bytes_room` may still be written (it streams).
    may_stream: bool,
    max_frame: usize,
}

impl Placer {
    /// Places one frame and says how many bytes it takes, length prefix included; `Ok(None)`
    /// when it must wait for room (nothing placed). `first`: no frame was placed before it in
    /// this send.
    fn place(
        &mut self,
        input: &mut super::carrier::Input,
        frame: &Frame<'_>,
        first: bool,
    ) -> Result<Option<usize>, TaskError> {
        let size = wire::encoded_size(frame).map_err(TaskError::Wire)?;
        if size > self.max_frame {
            return Err(TaskError::Wire(WireError::FrameTooLarge {
                size,
                limit: self.max_frame,
            }));
        }
        let fits = size + 4 <= self.bytes_room;
        let streams = self.may_stream && first;
        if !(fits || streams) {
            return Ok(None);
        }
        // Straight into the ring when it fits there. (A carrier that fails here fails again,
        // and is seen, when the buffered frame is written.)
        let direct = fits
            && !self.buffering
            && match input.send_value(frame, size) {
                Ok(placed) => placed,
                Err(e @ WireError::Encode(_)) => return Err(TaskError::Wire(e)),
                Err(_) => false,
            };
        if !direct {
            let before = self.buf.len();
            let written = wire::encode_value_into(frame, &mut self.buf).map_err(TaskError::Wire)?;
            if written != size {
                // The room was counted for `size` bytes: never write more than that.
                self.buf.truncate(before);
                return Err(TaskError::Wire(WireError::Encode(format!(
                    "a frame said to take {size} bytes took {written}"
                ))));
            }
            self.buffering = true;
            self.ends.push(self.buf.len());
        }
        self.bytes_room = self.bytes_room.saturating_sub(size + 4);
        if direct && first {
            // What the ring says it has left, which may be less: a first frame written to an empty
            // ring may have gone back to its start, and the bytes it skipped stay in use until
            // the child reads past them. (Only a first frame: the ring is not empty after it.)
            self.bytes_room = self.bytes_room.min(input.room().unwrap_or(usize::MAX));
        }
        Ok(Some(size + 4))
    }
}

/// A job's context as its frame carries it.
fn run_context(job: &crate::task::JobPayload) -> Option<wire::RunContext<'_>> {
    job.context.as_ref().map(|c| wire::RunContext {
        id: Cow::Borrowed(c.id()),
        delivery: c.delivery(),
    })
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
