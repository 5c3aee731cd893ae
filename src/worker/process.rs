//! Process mode, the parent's side: one child process per worker, behind the same [`Backend`]
//! interface as a thread.
//!
//! Each worker has one host thread that owns the worker's queue and its child. The parent keeps the
//! queue: it sends up to [`ProcessConfig::pipeline`] jobs ahead to the child (batched in one write)
//! and knows which one the child is running — the first one without an answer, because the child
//! writes each answer before it starts the next job. So when the child dies, exactly that task fails
//! with [`TaskError::WorkerCrashed`]; the jobs sent after it never started and go to the replacement
//! child, which starts at once under a fresh channel. A per-task timeout kills the child (SIGTERM,
//! then SIGKILL after a grace period): real cancellation.

use std::collections::{HashSet, VecDeque};
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::child::{MAX_FRAME_ENV, WORKER_ENV};
use super::{Backend, Shutdown, WorkerSlot};
use crate::job::Inputs;
use crate::pool::core::PoolCore;
use crate::task::{ErasedTask, Finisher, TaskError};
use crate::value::{promise, Value};
use crate::wire::{self, Frame, WireError, PROTOCOL_VERSION};

/// Settings for process-mode workers.
///
/// ```
/// use std::time::Duration;
/// use circuits::ProcessConfig;
///
/// let cfg = ProcessConfig::default()
///     .max_frame(1 << 20)
///     .pipeline(16)
///     .kill_grace(Duration::from_millis(50));
/// assert_eq!(cfg.max_frame_bytes(), 1 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    max_frame: usize,
    pipeline: usize,
    kill_grace: Duration,
    handshake_timeout: Duration,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            max_frame: wire::DEFAULT_MAX_FRAME,
            pipeline: 32,
            kill_grace: Duration::from_millis(100),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl ProcessConfig {
    /// The largest frame either side may send (default 64 MiB). A job whose input is larger fails
    /// with [`TaskError::Wire`] before it is sent; a child that sends a larger frame is treated as
    /// crashed.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes.max(64);
        self
    }
    /// How many jobs may be sent ahead to one child (default 32, at least 1). More hides the pipe's
    /// latency for floods of small jobs.
    pub fn pipeline(mut self, jobs: usize) -> Self {
        self.pipeline = jobs.max(1);
        self
    }
    /// How long a child gets between SIGTERM and SIGKILL when a timeout or a kill stops it
    /// (default 100 ms).
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }
    /// How long a new child may take to answer the handshake (default 10 s).
    pub fn handshake_timeout(mut self, limit: Duration) -> Self {
        self.handshake_timeout = limit;
        self
    }
    /// The frame size limit in bytes.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame
    }
}

enum Msg {
    Run(Box<dyn ErasedTask>),
    Stop(Shutdown),
    Attach(Weak<PoolCore>, Weak<WorkerSlot>),
    /// A frame from child generation `gen`.
    Frame(u64, Vec<u8>),
    /// Child generation `gen`'s output ended or broke.
    Gone(u64, WireError),
}

/// A worker backed by a child process.
pub(crate) struct ProcessWorker {
    tx: Sender<Msg>,
    done: Mutex<Option<Value<(), TaskError>>>,
}

impl ProcessWorker {
    /// Starts the host thread, which starts the child (without waiting for its handshake).
    pub(crate) fn spawn(
        cfg: ProcessConfig,
        fin: Arc<Finisher>,
        load: Arc<AtomicUsize>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (exit, done) = promise::<(), TaskError>();
        let mut host = Host {
            cfg,
            fin,
            load,
            tx: tx.clone(),
            core: Weak::new(),
            slot: Weak::new(),
            conn: None,
            generation: 0,
            next_run: 1,
            pending: VecDeque::new(),
            inflight: VecDeque::new(),
            front_since: Instant::now(),
            stopping: None,
        };
        // Start the first child now so that its start-up overlaps the pool's.
        host.connect();
        std::thread::Builder::new()
            .name("circuits-process-host".into())
            .spawn(move || {
                host.serve(&rx);
                exit.complete(Ok(()));
            })?;
        Ok(ProcessWorker {
            tx,
            done: Mutex::new(Some(done)),
        })
    }
}

impl Backend for ProcessWorker {
    fn submit(&self, task: Box<dyn ErasedTask>) -> Result<(), Box<dyn ErasedTask>> {
        self.tx.send(Msg::Run(task)).map_err(|e| match e.0 {
            Msg::Run(t) => t,
            // Only Run is sent here, so only Run comes back.
            _ => unreachable!("submit sends only Run"),
        })
    }

    fn shutdown(&self, how: Shutdown) {
        let _ = self.tx.send(Msg::Stop(how));
    }

    fn finished(&self) -> Value<(), TaskError> {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        done.take().unwrap_or_else(|| Value::ready(Ok(())))
    }

    fn attach(&self, core: Weak<PoolCore>, slot: Weak<WorkerSlot>) {
        let _ = self.tx.send(Msg::Attach(core, slot));
    }
}

impl Drop for ProcessWorker {
    /// The last handle to a worker going away kills its child: no orphans.
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop(Shutdown::Kill));
    }
}

/// A live child and the write end of its input.
struct Conn {
    child: Child,
    input: BufWriter<ChildStdin>,
    /// Job names it serves; `None` until its handshake arrived.
    jobs: Option<HashSet<String>>,
    started: Instant,
}

struct InFlight {
    run: u64,
    task: Box<dyn ErasedTask>,
}

struct Host {
    cfg: ProcessConfig,
    fin: Arc<Finisher>,
    load: Arc<AtomicUsize>,
    tx: Sender<Msg>,
    core: Weak<PoolCore>,
    slot: Weak<WorkerSlot>,
    conn: Option<Conn>,
    generation: u64,
    next_run: u64,
    /// Tasks accepted but not yet sent to the child.
    pending: VecDeque<Box<dyn ErasedTask>>,
    /// Tasks sent to the child, in order; the first is the one it is running.
    inflight: VecDeque<InFlight>,
    /// When the first in-flight task became first (its start, as near as the parent can tell).
    front_since: Instant,
    stopping: Option<Shutdown>,
}

/// How a child ended, in words.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("killed by signal {s} ({})", signal_name(s)),
        _ => format!("ended ({status})"),
    }
}

fn signal_name(s: i32) -> &'static str {
    match s {
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        _ => "signal",
    }
}

impl Host {
    fn serve(&mut self, rx: &Receiver<Msg>) {
        loop {
            let msg = match self.deadline() {
                Some(at) => match rx.recv_deadline(at) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(Msg::Stop(Shutdown::Kill)),
                },
                None => Some(rx.recv().unwrap_or(Msg::Stop(Shutdown::Kill))),
            };
            match msg {
                Some(m) => self.handle(m),
                None => self.expire(),
            }
            // Take everything else already waiting before writing, so that a burst of tasks goes
            // to the child in one write.
            while let Ok(m) = rx.try_recv() {
                self.handle(m);
            }
            if self.stopping == Some(Shutdown::Kill) {
                self.kill_all();
                return;
            }
            self.pump();
            if self.stopping.is_some() && self.pending.is_empty() && self.inflight.is_empty() {
                self.close();
                return;
            }
        }
    }

    /// The next moment something must happen without a message: the running task's timeout or the
    /// child's handshake limit.
    fn deadline(&self) -> Option<Instant> {
        let conn = self.conn.as_ref()?;
        if conn.jobs.is_none() {
            return Some(conn.started + self.cfg.handshake_timeout);
        }
        let limit = self.inflight.front()?.task.timeout()?;
        Some(self.front_since + limit)
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Run(task) => self.pending.push_back(task),
            Msg::Stop(how) => {
                // A harder stop wins over a softer one.
                let rank = |s: Option<Shutdown>| match s {
                    None => 0,
                    Some(Shutdown::Drain) => 1,
                    Some(Shutdown::Abort) => 2,
                    Some(Shutdown::Kill) => 3,
                };
                if rank(Some(how)) > rank(self.stopping) {
                    self.stopping = Some(how);
                }
                if how != Shutdown::Drain {
                    for task in std::mem::take(&mut self.pending) {
                        self.settle_fail(task, TaskError::Cancelled);
                    }
                }
            }
            Msg::Attach(core, slot) => {
                self.core = core;
                self.slot = slot;
            }
            Msg::Frame(generation, body) if generation == self.generation => self.on_frame(body),
            Msg::Gone(generation, why) if generation == self.generation => {
                let reason = match why {
                    WireError::Closed | WireError::Truncated => None,
                    other => Some(format!("protocol violation: {other}")),
                };
                self.crashed(reason);
            }
            // Frames and ends of children already replaced.
            Msg::Frame(..) | Msg::Gone(..) => {}
        }
    }

    fn on_frame(&mut self, body: Vec<u8>) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if conn.jobs.is_none() {
            match wire::check_hello(&body) {
                Ok(jobs) => conn.jobs = Some(jobs.into_iter().collect()),
                Err(e) => self.start_failed(format!("handshake failed: {e}")),
            }
            return;
        }
        let (run, result) = match wire::decode(&body) {
            Ok(Frame::Done { id, result }) => (id, result),
            Ok(other) => {
                return self.crashed(Some(format!(
                    "protocol violation: unexpected {} frame",
                    wire::frame_name(&other)
                )))
            }
            Err(e) => return self.crashed(Some(format!("protocol violation: {e}"))),
        };
        match self.inflight.front() {
            Some(f) if f.run == run => {}
            _ => {
                return self.crashed(Some(format!(
                    "protocol violation: answer for run {run}, which is not the running one"
                )))
            }
        }
        let Some(done) = self.inflight.pop_front() else {
            return;
        };
        self.front_since = Instant::now();
        let answer = result.map_err(TaskError::from);
        done.task.finish_encoded(answer, &self.fin);
        self.load.fetch_sub(1, Ordering::Relaxed);
        if self.stopping == Some(Shutdown::Abort) {
            // The running task is done; the ones sent after it never started: cancel them.
            self.cancel_inflight();
        }
    }

    fn settle_fail(&self, task: Box<dyn ErasedTask>, error: TaskError) {
        task.fail(error, &self.fin);
        self.load.fetch_sub(1, Ordering::Relaxed);
    }

    fn cancel_inflight(&mut self) {
        for f in std::mem::take(&mut self.inflight) {
            self.settle_fail(f.task, TaskError::Cancelled);
        }
    }

    /// Sends pending tasks to the child, up to the pipeline depth, in one write.
    fn pump(&mut self) {
        if self.pending.is_empty() || self.stopping == Some(Shutdown::Abort) {
            return;
        }
        if self.conn.is_none() {
            self.connect();
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let Some(jobs) = conn.jobs.as_ref() else {
            return; // handshake not in yet; its frame wakes us
        };
        let was_idle = self.inflight.is_empty();
        let mut refused = Vec::new();
        let mut broken = None;
        while self.inflight.len() < self.cfg.pipeline {
            let Some(task) = self.pending.pop_front() else {
                break;
            };
            let frame = match task.job() {
                None => Err(TaskError::ClosureInProcessPool),
                Some(job) if !jobs.contains(job.name) => {
                    Err(TaskError::UnknownJob(job.name.to_string()))
                }
                Some(job) => match &job.inputs {
                    Err(e) => Err(TaskError::Wire(e.clone())),
                    Ok(Inputs::One(input)) => wire::encode(&Frame::Run {
                        id: self.next_run,
                        job: job.name.to_string(),
                        input: input.clone(),
                    })
                    .map_err(|e| TaskError::Wire(e.to_string())),
                    Ok(Inputs::Batch(inputs)) => wire::encode(&Frame::RunBatch {
                        id: self.next_run,
                        job: job.name.to_string(),
                        inputs: inputs.clone(),
                    })
                    .map_err(|e| TaskError::Wire(e.to_string())),
                },
            };
            let body = match frame {
                Ok(b) => b,
                Err(e) => {
                    refused.push((task, e));
                    continue;
                }
            };
            match wire::write_frame(&mut conn.input, &body, self.cfg.max_frame) {
                Ok(()) => {
                    self.inflight.push_back(InFlight {
                        run: self.next_run,
                        task,
                    });
                    self.next_run += 1;
                }
                Err(WireError::FrameTooLarge { size, limit }) => refused.push((
                    task,
                    TaskError::Wire(format!(
                        "the job's frame is {size} bytes, over the limit of {limit}"
                    )),
                )),
                Err(e) => {
                    // The pipe broke: the child is gone. Its end comes as a Gone message.
                    self.pending.push_front(task);
                    broken = Some(e);
                    break;
                }
            }
        }
        if broken.is_none() {
            if let Err(e) = conn.input.flush() {
                broken = Some(e.into());
            }
        }
        if was_idle {
            self.front_since = Instant::now();
        }
        for (task, e) in refused {
            self.settle_fail(task, e);
        }
        if broken.is_some() {
            self.crashed(None);
        }
    }

    /// Starts a child (generation + 1) and its reader thread; the handshake completes later.
    fn connect(&mut self) {
        self.generation += 1;
        match self.start_child() {
            Ok(conn) => self.conn = Some(conn),
            Err(e) => self.start_failed(format!("could not start a worker process: {e}")),
        }
    }

    fn start_child(&mut self) -> std::io::Result<Conn> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .env(WORKER_ENV, "1")
            .env(MAX_FRAME_ENV, self.cfg.max_frame.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("the child's pipes were not set up"));
        };
        let mut input = BufWriter::with_capacity(64 << 10, stdin);
        let hello = Frame::Hello {
            version: PROTOCOL_VERSION,
            jobs: Vec::new(),
        };
        let sent = wire::encode(&hello)
            .and_then(|b| wire::write_frame(&mut input, &b, self.cfg.max_frame))
            .and_then(|()| input.flush().map_err(WireError::from));
        if let Err(e) = sent {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other(e.to_string()));
        }
        let tx = self.tx.clone();
        let generation = self.generation;
        let max_frame = self.cfg.max_frame;
        let spawned = std::thread::Builder::new()
            .name("circuits-process-reader".into())
            .spawn(move || {
                let mut out = BufReader::with_capacity(64 << 10, stdout);
                loop {
                    match wire::read_frame(&mut out, max_frame) {
                        Ok(body) => {
                            if tx.send(Msg::Frame(generation, body)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Msg::Gone(generation, e));
                            return;
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(Conn {
            child,
            input,
            jobs: None,
            started: Instant::now(),
        })
    }

    /// A child could not be started or failed its handshake: the tasks waiting for it fail with the
    /// reason (rather than waiting for ever); the next task tries a new child.
    fn start_failed(&mut self, reason: String) {
        if let Some(mut conn) = self.conn.take() {
            let _ = conn.child.kill();
            let _ = conn.child.wait();
        }
        let worker = self.fin.worker().to_string();
        for f in std::mem::take(&mut self.inflight) {
            self.settle_fail(
                f.task,
                TaskError::WorkerCrashed {
                    worker: worker.clone(),
                    reason: reason.clone(),
                },
            );
        }
        for task in std::mem::take(&mut self.pending) {
            self.settle_fail(
                task,
                TaskError::WorkerCrashed {
                    worker: worker.clone(),
                    reason: reason.clone(),
                },
            );
        }
    }

    /// The running task's timeout passed (or the handshake's): kill the child, fail the task, and
    /// start a replacement.
    fn expire(&mut self) {
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        if conn.jobs.is_none() {
            let limit = self.cfg.handshake_timeout;
            return self.start_failed(format!("no handshake within {limit:?}"));
        }
        let Some(limit) = self.inflight.front().and_then(|f| f.task.timeout()) else {
            return;
        };
        self.terminate();
        if let Some(f) = self.inflight.pop_front() {
            self.settle_fail(f.task, TaskError::TimedOut(limit));
        }
        self.replace("the running task timed out".to_string());
    }

    /// SIGTERM, then SIGKILL after the grace period; reaps the child.
    fn terminate(&mut self) -> Option<ExitStatus> {
        let mut conn = self.conn.take()?;
        let pid = conn.child.id() as libc::pid_t;
        // SAFETY: signalling our own child, which has not been reaped yet (so the pid is still ours).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let until = Instant::now() + self.cfg.kill_grace;
        while Instant::now() < until {
            if let Ok(Some(status)) = conn.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = conn.child.kill();
        conn.child.wait().ok()
    }

    /// The child died (or broke the protocol): fail the task it was running, keep the rest, and
    /// start a replacement.
    fn crashed(&mut self, protocol: Option<String>) {
        let status = match self.conn.as_mut() {
            Some(conn) if protocol.is_none() => {
                // Its output ended, so it is exiting; give it a moment to be reaped, then make sure.
                let until = Instant::now() + Duration::from_secs(2);
                let mut status = None;
                while Instant::now() < until {
                    if let Ok(Some(s)) = conn.child.try_wait() {
                        status = Some(s);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                if status.is_none() {
                    let _ = conn.child.kill();
                    status = conn.child.wait().ok();
                }
                self.conn = None;
                status
            }
            _ => self.terminate(),
        };
        let reason = match (protocol, status) {
            (Some(p), _) => p,
            (None, Some(s)) => describe(s),
            (None, None) => "its pipe closed".to_string(),
        };
        if let Some(f) = self.inflight.pop_front() {
            let worker = self.fin.worker().to_string();
            self.settle_fail(
                f.task,
                TaskError::WorkerCrashed {
                    worker,
                    reason: reason.clone(),
                },
            );
        }
        self.replace(reason);
    }

    /// Puts the never-started in-flight tasks back at the head of the queue, gives the worker a
    /// fresh channel, and starts a new child unless the pool is stopping.
    fn replace(&mut self, reason: String) {
        self.conn = None;
        for f in std::mem::take(&mut self.inflight).into_iter().rev() {
            self.pending.push_front(f.task);
        }
        if self.stopping == Some(Shutdown::Abort) || self.stopping == Some(Shutdown::Kill) {
            for task in std::mem::take(&mut self.pending) {
                self.settle_fail(task, TaskError::Cancelled);
            }
            return;
        }
        if let (Some(core), Some(slot)) = (self.core.upgrade(), self.slot.upgrade()) {
            if let Some(fin) = core.worker_restarted(&slot, reason) {
                self.fin = fin;
            }
        }
        if self.stopping.is_none() || !self.pending.is_empty() {
            self.connect();
        }
    }

    /// A draining stop is done: close the child's input (it exits at the end of input) and reap it.
    fn close(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            drop(conn.input);
            let until = Instant::now() + self.cfg.kill_grace.max(Duration::from_secs(1));
            while Instant::now() < until {
                if let Ok(Some(_)) = conn.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = conn.child.kill();
            let _ = conn.child.wait();
        }
    }

    /// An immediate stop: kill the child and cancel everything.
    fn kill_all(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = conn.child.kill();
            let _ = conn.child.wait();
        }
        self.cancel_inflight();
        for task in std::mem::take(&mut self.pending) {
            self.settle_fail(task, TaskError::Cancelled);
        }
    }
}
