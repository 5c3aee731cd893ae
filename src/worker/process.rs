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
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::child::{MAX_FRAME_ENV, PARENT_ENV, WORKER_ENV};
use super::{Backend, Shutdown, WorkerSlot};
use crate::job::Inputs;
use crate::pool::core::PoolCore;
use crate::task::{ErasedTask, Finisher, StartStage, TaskError};
use crate::value::{promise, Value};
use crate::wire::{self, Frame, FrameIn, WireError, PROTOCOL_VERSION};

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
    backoff_first: Duration,
    backoff_max: Duration,
    max_start_failures: usize,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            max_frame: wire::DEFAULT_MAX_FRAME,
            pipeline: 32,
            kill_grace: Duration::from_millis(100),
            handshake_timeout: Duration::from_secs(10),
            backoff_first: Duration::from_millis(10),
            backoff_max: Duration::from_secs(5),
            max_start_failures: 5,
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
    /// How long to wait before starting a worker's child again after a failed start: `first`
    /// after the first failure, doubling with each failure in a row, at most `max` (defaults 10 ms
    /// and 5 s). A start fails when the OS refuses the process, when the child ends or answers
    /// wrongly before its handshake, or when it dies before answering its first job. A child that
    /// crashes after it answered a job is replaced at once.
    pub fn restart_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff_first = first.max(Duration::from_millis(1));
        self.backoff_max = max.max(self.backoff_first);
        self
    }
    /// How many failed starts in a row a worker may have before the tasks waiting on it fail with
    /// [`TaskError::WorkerStartFailed`] (default 5, at least 1). Past it the worker tries again
    /// only at the slowest back-off, and tasks given to it meanwhile fail at once with the same
    /// error; the first child that starts and answers ends that state.
    pub fn max_start_failures(mut self, n: usize) -> Self {
        self.max_start_failures = n.max(1);
        self
    }
    /// The frame size limit in bytes.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame
    }
    /// The back-off before the `n`th start after `n` failures in a row (0: none).
    fn backoff(&self, failures: usize) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let doublings = (failures - 1).min(30) as u32;
        self.backoff_first
            .saturating_mul(1 << doublings)
            .min(self.backoff_max)
    }
}

enum Msg {
    Run(Box<dyn ErasedTask>),
    Stop(Shutdown),
    Attach(Weak<PoolCore>, Weak<WorkerSlot>),
    /// The first frame of child generation `gen`: its handshake.
    Hello(u64, Vec<u8>),
    /// Child generation `gen`'s output ended or broke the protocol.
    Gone(u64, WireError),
    /// The reader settled answers; there may be room to send more, or a stop to finish.
    Answered,
    /// The worker leaves the pool: queued tasks go back to the pool, in-flight ones finish.
    Retire,
}

/// A worker backed by a child process.
pub(crate) struct ProcessWorker {
    tx: Sender<Msg>,
    done: Mutex<Option<Value<(), TaskError>>>,
    shared: Arc<Shared>,
    /// A stop or a retirement is under way: dropping this handle must not kill what it drains.
    leaving: std::sync::atomic::AtomicBool,
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
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                generation: 0,
                fin,
                inflight: VecDeque::new(),
                front_since: Instant::now(),
                stopping: None,
                backlog: 0,
                answered: false,
            }),
            load,
            host: tx.clone(),
            window: cfg.pipeline,
        });
        let mut host = Host {
            cfg,
            shared: shared.clone(),
            core: Weak::new(),
            slot: Weak::new(),
            conn: None,
            next_run: 1,
            pending: VecDeque::new(),
            stopping: None,
            retry_at: None,
            failures: 0,
            last_failure: None,
        };
        std::thread::Builder::new()
            .name("circuits-process-host".into())
            .spawn(move || {
                // Children are started from this thread, which lives as long as the worker: the
                // kernel's parent-death signal is tied to it.
                host.connect();
                host.serve(&rx);
                exit.complete(Ok(()));
            })?;
        Ok(ProcessWorker {
            tx,
            done: Mutex::new(Some(done)),
            shared,
            leaving: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

impl Backend for ProcessWorker {
    fn submit(&self, task: Box<dyn ErasedTask>, _pinned: bool) -> Result<(), Box<dyn ErasedTask>> {
        self.tx.send(Msg::Run(task)).map_err(|e| match e.0 {
            Msg::Run(t) => t,
            // Only Run is sent here, so only Run comes back.
            _ => unreachable!("submit sends only Run"),
        })
    }

    fn shutdown(&self, how: Shutdown) {
        self.leaving.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Msg::Stop(how));
    }

    fn finished(&self) -> Value<(), TaskError> {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        done.take().unwrap_or_else(|| Value::ready(Ok(())))
    }

    fn attach(&self, core: Weak<PoolCore>, slot: Weak<WorkerSlot>) {
        let _ = self.tx.send(Msg::Attach(core, slot));
    }

    fn retire(&self) -> Vec<Box<dyn ErasedTask>> {
        self.leaving.store(true, Ordering::SeqCst);
        // The host holds the queue; it hands it back to the pool itself.
        let _ = self.tx.send(Msg::Retire);
        Vec::new()
    }

    fn running(&self) -> usize {
        usize::from(!self.shared.lock().inflight.is_empty())
    }
}

impl Drop for ProcessWorker {
    /// The last handle to a worker going away kills its child (no orphans), unless a stop or a
    /// retirement is draining it: the host ends the child itself when that is done.
    fn drop(&mut self) {
        if !self.leaving.load(Ordering::SeqCst) {
            let _ = self.tx.send(Msg::Stop(Shutdown::Drain));
        }
    }
}

struct InFlight {
    run: u64,
    task: Box<dyn ErasedTask>,
}

/// What the host thread and the current child's reader thread share.
struct State {
    /// Bumped whenever a child is replaced, so the old child's reader settles nothing more.
    generation: u64,
    fin: Arc<Finisher>,
    /// Tasks sent to the child, in order; the first is the one it is running.
    inflight: VecDeque<InFlight>,
    /// When the first in-flight task became first (its start, as near as the parent can tell).
    front_since: Instant,
    stopping: Option<Shutdown>,
    /// Tasks the host holds that are not sent yet (so the reader knows when to ask for more).
    backlog: usize,
    /// The current child answered at least one job (so it started well).
    answered: bool,
}

struct Shared {
    state: Mutex<State>,
    load: Arc<AtomicUsize>,
    host: Sender<Msg>,
    window: usize,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Critical sections only move entries between queues; a poisoned lock still holds them.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn settle_fail(&self, fin: &Finisher, task: Box<dyn ErasedTask>, error: TaskError) {
        task.fail(error, fin);
        self.load.fetch_sub(1, Ordering::Relaxed);
    }

    /// The reader's side: settle the answer to run `run` of child `generation`. Returns false on a
    /// protocol violation (an answer for something that is not running).
    fn answer(&self, generation: u64, run: u64, result: Result<&[u8], TaskError>) -> bool {
        let mut st = self.lock();
        if st.generation != generation {
            return true; // a replaced child's late answer: its task was already settled
        }
        match st.inflight.front() {
            Some(f) if f.run == run => {}
            _ => return false,
        }
        let Some(done) = st.inflight.pop_front() else {
            return false;
        };
        st.answered = true;
        st.front_since = Instant::now();
        let fin = st.fin.clone();
        // An abort finishes the running task and cancels the ones sent after it.
        let cancelled = if st.stopping == Some(Shutdown::Abort) {
            std::mem::take(&mut st.inflight)
        } else {
            VecDeque::new()
        };
        let wake = (st.backlog > 0 && st.inflight.len() <= self.window / 2)
            || (st.stopping.is_some() && st.inflight.is_empty());
        drop(st);
        done.task.finish_encoded(result, &fin);
        self.load.fetch_sub(1, Ordering::Relaxed);
        for f in cancelled {
            self.settle_fail(&fin, f.task, TaskError::Cancelled);
        }
        if wake {
            let _ = self.host.send(Msg::Answered);
        }
        true
    }
}

/// A live child and the write end of its input.
struct Conn {
    child: Child,
    input: BufWriter<ChildStdin>,
    /// Job names it serves; `None` until its handshake arrived.
    jobs: Option<HashSet<String>>,
    started: Instant,
    generation: u64,
    /// Writing to it failed: it is dying, and its reader will say so.
    broken: bool,
}

struct Host {
    cfg: ProcessConfig,
    shared: Arc<Shared>,
    core: Weak<PoolCore>,
    slot: Weak<WorkerSlot>,
    conn: Option<Conn>,
    next_run: u64,
    /// Tasks accepted but not yet sent to the child.
    pending: VecDeque<Box<dyn ErasedTask>>,
    stopping: Option<Shutdown>,
    /// After a failed start: when to try again.
    retry_at: Option<Instant>,
    /// Failed starts in a row, and the last one's stage and reason.
    failures: usize,
    last_failure: Option<(StartStage, String)>,
}

/// Whether `pid` (our unreaped child) has exited, without reaping it.
fn exited(pid: libc::pid_t) -> bool {
    // SAFETY: waitid writes only into `info`, which lives on this stack; WNOWAIT leaves the child
    // unreaped, so its pid stays ours.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        r == 0 && info.si_pid() == pid
    }
}

/// Sends `signal` to the child's whole process group (it leads one of its own), so that whatever
/// its jobs started goes with it. Call only before the child is reaped: until then its pid, and
/// so its group id, cannot belong to anyone else.
fn signal_group(child: &Child, signal: libc::c_int) {
    // SAFETY: signalling a process group we created (the child's pid as its group id); the child
    // is not reaped yet.
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), signal);
    }
}

/// Waits up to `within` for `child` to exit, then SIGKILLs its whole process group (the child if
/// it still runs, and anything its jobs left behind) and reaps the child. The one way every child
/// ends.
fn reap(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let pid = child.id() as libc::pid_t;
    let until = Instant::now() + within;
    while !exited(pid) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    signal_group(child, libc::SIGKILL);
    child.wait().ok()
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

/// A child's output pipe, read until it ends or the child itself has exited: a process that the
/// child forked (and that still holds the pipe) cannot hide the child's death. Answers the child
/// wrote before it died are read first.
struct Output {
    pipe: ChildStdout,
    /// The child's pidfd (Linux 5.3 and later; without it, the pipe's end alone tells).
    pidfd: Option<std::os::fd::OwnedFd>,
}

impl Output {
    fn new(pipe: ChildStdout, pid: u32) -> Self {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor (close-on-exec) or
        // -1; a returned descriptor is owned by nobody else.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let pidfd = (fd >= 0).then(|| {
            // SAFETY: see above: a fresh descriptor we own.
            unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as std::os::fd::RawFd) }
        });
        Output { pipe, pidfd }
    }
}

impl std::io::Read for Output {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(pidfd) = &self.pidfd {
            loop {
                let mut fds = [
                    libc::pollfd {
                        fd: self.pipe.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: pidfd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                // SAFETY: two valid pollfd entries on this stack, both descriptors open.
                let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                if r < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                if fds[0].revents != 0 {
                    break; // data, or the pipe's end: read it
                }
                if fds[1].revents != 0 {
                    return Ok(0); // the child exited and left nothing more to read
                }
            }
        }
        self.pipe.read(buf)
    }
}

/// Reads child generation `generation`'s frames: the handshake goes to the host, answers are
/// settled right here (one thread hop fewer on every task), the end goes to the host.
fn read_child(shared: Arc<Shared>, generation: u64, stdout: Output, max_frame: usize) {
    let mut out = BufReader::with_capacity(64 << 10, stdout);
    let mut first = true;
    loop {
        let body = match wire::read_frame(&mut out, max_frame) {
            Ok(body) => body,
            Err(e) => {
                let _ = shared.host.send(Msg::Gone(generation, e));
                return;
            }
        };
        if first {
            first = false;
            let _ = shared.host.send(Msg::Hello(generation, body));
            continue;
        }
        let settled = match wire::decode_borrowed(&body) {
            Ok(FrameIn::Done { id, result }) => {
                shared.answer(generation, id, result.map_err(TaskError::from))
            }
            Ok(_) => {
                let what = "a frame other than Done from a worker".to_string();
                let _ = shared
                    .host
                    .send(Msg::Gone(generation, WireError::Unexpected(what)));
                return;
            }
            Err(e) => {
                let _ = shared.host.send(Msg::Gone(generation, e));
                return;
            }
        };
        if !settled {
            let what = "an answer for a job that is not running".to_string();
            let _ = shared
                .host
                .send(Msg::Gone(generation, WireError::Unexpected(what)));
            return;
        }
    }
}

/// How long the host looks for the next message before it sleeps: a caller awaiting one job at a
/// time sends the next one within about a round trip, and a sleeping thread costs a wake-up.
const LINGER: Duration = Duration::from_micros(50);

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

impl Host {
    fn serve(&mut self, rx: &Receiver<Msg>) {
        loop {
            let msg = match self.deadline() {
                Some(at) => match rx.recv_deadline(at) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(Msg::Stop(Shutdown::Drain)),
                },
                None => Some(linger_recv(rx).unwrap_or(Msg::Stop(Shutdown::Drain))),
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
            if self.stopping == Some(Shutdown::Abort) {
                self.kill_all();
                return;
            }
            self.pump();
            let idle = self.shared.lock().inflight.is_empty();
            if self.stopping.is_some() && self.pending.is_empty() && idle {
                self.close();
                return;
            }
        }
    }

    /// The next moment something must happen without a message: the running task's timeout or the
    /// child's handshake limit.
    fn deadline(&self) -> Option<Instant> {
        let Some(conn) = self.conn.as_ref() else {
            return self.retry_at;
        };
        if conn.jobs.is_none() {
            return Some(conn.started + self.cfg.handshake_timeout);
        }
        let st = self.shared.lock();
        let limit = st.inflight.front()?.task.timeout()?;
        Some(st.front_since + limit)
    }

    fn fin(&self) -> Arc<Finisher> {
        self.shared.lock().fin.clone()
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
            Msg::Attach(core, slot) => {
                self.core = core;
                self.slot = slot;
            }
            Msg::Hello(generation, body) => {
                let Some(conn) = self.conn.as_mut().filter(|c| c.generation == generation) else {
                    return;
                };
                match wire::check_hello(&body) {
                    Ok(jobs) => conn.jobs = Some(jobs.into_iter().collect()),
                    Err(e) => self.crashed(Some(format!("its handshake was wrong: {e}"))),
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
                        other => Some(format!("protocol violation: {other}")),
                    };
                    self.crashed(reason);
                }
            }
            Msg::Answered => {}
            Msg::Retire => {
                let fin = self.fin();
                for task in std::mem::take(&mut self.pending) {
                    self.shared.load.fetch_sub(1, Ordering::Relaxed);
                    match self.core.upgrade() {
                        Some(core) => core.resubmit(task, &fin),
                        None => task.fail(TaskError::Cancelled, &fin),
                    }
                }
                self.handle(Msg::Stop(Shutdown::Drain));
            }
        }
    }

    /// Sends pending tasks to the child, up to the pipeline depth, in one write.
    fn pump(&mut self) {
        if self.pending.is_empty() || self.stopping.is_some_and(|s| s != Shutdown::Drain) {
            self.shared.lock().backlog = self.pending.len();
            return;
        }
        if self.conn.is_none() {
            if self.retry_at.is_some() {
                // Waiting out a failed start's back-off; past the limit, nobody waits for it.
                if self.failures >= self.cfg.max_start_failures {
                    self.fail_waiting();
                }
                return;
            }
            self.connect();
        }
        let Some(conn) = self.conn.as_mut().filter(|c| !c.broken) else {
            return;
        };
        let Some(jobs) = conn.jobs.as_ref() else {
            return; // handshake not in yet; its frame wakes us
        };
        let room = {
            let st = self.shared.lock();
            self.cfg.pipeline.saturating_sub(st.inflight.len())
        };
        // Encode outside the lock; the reader settles answers meanwhile.
        let mut frames = Vec::new();
        let mut sent = Vec::new();
        let mut refused = Vec::new();
        while sent.len() < room {
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
                    Ok(Inputs::One(input)) => wire::encode_run(self.next_run, job.name, input)
                        .map_err(|e| TaskError::Wire(e.to_string())),
                    Ok(Inputs::Batch(inputs)) => {
                        wire::encode_run_batch(self.next_run, job.name, inputs)
                            .map_err(|e| TaskError::Wire(e.to_string()))
                    }
                },
            }
            .and_then(|body| {
                if body.len() > self.cfg.max_frame {
                    Err(TaskError::Wire(format!(
                        "the job's frame is {} bytes, over the limit of {}",
                        body.len(),
                        self.cfg.max_frame
                    )))
                } else {
                    Ok(body)
                }
            });
            match frame {
                Ok(body) => {
                    frames.push(body);
                    sent.push(InFlight {
                        run: self.next_run,
                        task,
                    });
                    self.next_run += 1;
                }
                Err(e) => refused.push((task, e)),
            }
        }
        let fin = {
            // In flight before it is written, so that its answer always finds it.
            let mut st = self.shared.lock();
            if st.inflight.is_empty() && !sent.is_empty() {
                st.front_since = Instant::now();
            }
            st.inflight.extend(sent);
            st.backlog = self.pending.len();
            st.fin.clone()
        };
        for (task, e) in refused {
            self.shared.settle_fail(&fin, task, e);
        }
        let mut written = Ok(());
        for body in &frames {
            written = wire::write_frame(&mut conn.input, body, self.cfg.max_frame);
            if written.is_err() {
                break;
            }
        }
        if written.is_ok() {
            written = conn.input.flush().map_err(WireError::from);
        }
        if written.is_err() {
            // The pipe broke: the child is gone. Its reader still holds the answers it wrote before
            // dying; the reader's `Gone`, after those are settled, says which task it died in.
            conn.broken = true;
        }
    }

    /// Starts a child and its reader thread; the handshake completes later. A start the OS
    /// refuses goes through the restart policy like any other failed start.
    fn connect(&mut self) {
        self.retry_at = None;
        let generation = {
            let mut st = self.shared.lock();
            st.generation += 1;
            st.answered = false;
            st.generation
        };
        match self.start_child(generation) {
            Ok(conn) => self.conn = Some(conn),
            Err(e) => self.start_failed(
                StartStage::Spawn,
                format!("could not start a worker process: {e}"),
            ),
        }
    }

    fn start_child(&mut self, generation: u64) -> std::io::Result<Conn> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .env(WORKER_ENV, "1")
            .env(MAX_FRAME_ENV, self.cfg.max_frame.to_string())
            .env(PARENT_ENV, std::process::id().to_string())
            // Its own process group, so that ending it ends whatever its jobs started.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            reap(&mut child, Duration::ZERO);
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
            reap(&mut child, Duration::ZERO);
            return Err(std::io::Error::other(e.to_string()));
        }
        let shared = self.shared.clone();
        let max_frame = self.cfg.max_frame;
        let output = Output::new(stdout, child.id());
        let spawned = std::thread::Builder::new()
            .name("circuits-process-reader".into())
            .spawn(move || read_child(shared, generation, output, max_frame));
        if let Err(e) = spawned {
            reap(&mut child, Duration::ZERO);
            return Err(e);
        }
        Ok(Conn {
            child,
            input,
            jobs: None,
            started: Instant::now(),
            generation,
            broken: false,
        })
    }

    /// A start failed (the OS refused the child, or it ended before answering a job): wait the
    /// back-off before the next one; past the limit of failures in a row, fail the tasks waiting.
    fn start_failed(&mut self, stage: StartStage, reason: String) {
        self.failures += 1;
        let wait = self.cfg.backoff(self.failures);
        self.retry_at = Some(Instant::now() + wait);
        tracing::debug!(worker = %self.fin().worker(), failures = self.failures, ?wait, %stage, %reason, "worker process start failed");
        self.last_failure = Some((stage, reason));
        if self.failures >= self.cfg.max_start_failures {
            self.fail_waiting();
        }
    }

    /// Fails every task waiting for a child with the last start failure.
    fn fail_waiting(&mut self) {
        let Some((stage, reason)) = self.last_failure.clone() else {
            return;
        };
        let fin = self.fin();
        let error = TaskError::WorkerStartFailed {
            worker: fin.worker().to_string(),
            stage,
            reason,
        };
        for task in std::mem::take(&mut self.pending) {
            self.shared.settle_fail(&fin, task, error.clone());
        }
    }

    /// The running task's timeout passed (or the handshake's): fail the task at once, then kill the
    /// child and start a replacement (the kill grace delays only the replacement).
    fn expire(&mut self) {
        let Some(conn) = self.conn.as_ref() else {
            // A failed start's back-off is over: try again, so the pool keeps its size.
            if self.retry_at.is_some_and(|t| Instant::now() >= t) && self.stopping.is_none() {
                self.connect();
            }
            return;
        };
        if conn.jobs.is_none() {
            let limit = self.cfg.handshake_timeout;
            return self.crashed(Some(format!("it sent no handshake within {limit:?}")));
        }
        let Some((run, limit)) = ({
            let st = self.shared.lock();
            st.inflight.front().and_then(|f| {
                let limit = f.task.timeout()?;
                (st.front_since.elapsed() >= limit).then_some((f.run, limit))
            })
        }) else {
            return; // the task finished meanwhile, or another one is first now
        };
        // From here the child's answers are ignored: the task fails now, whatever it does.
        let (fin, victim, rest) = self.take_inflight();
        if let Some(v) = victim {
            // Normally the task that timed out; if it answered in the instant before, the one
            // that had just started is killed with the child.
            let error = if v.run == run {
                TaskError::TimedOut(limit)
            } else {
                TaskError::WorkerCrashed {
                    worker: fin.worker().to_string(),
                    reason: "killed because the task before it timed out as it finished"
                        .to_string(),
                }
            };
            self.shared.settle_fail(&fin, v.task, error);
        }
        self.terminate();
        self.failures = 0;
        self.replace(rest, "the running task timed out".to_string());
    }

    /// Detaches the in-flight tasks from the current child (whose reader now settles nothing):
    /// the running one, and the ones sent after it, which never started.
    fn take_inflight(&mut self) -> (Arc<Finisher>, Option<InFlight>, VecDeque<InFlight>) {
        let mut st = self.shared.lock();
        st.generation += 1;
        let mut all = std::mem::take(&mut st.inflight);
        (st.fin.clone(), all.pop_front(), all)
    }

    /// SIGTERM to the child's group, then SIGKILL after the grace period; reaps the child.
    fn terminate(&mut self) -> Option<ExitStatus> {
        let mut conn = self.conn.take()?;
        signal_group(&conn.child, libc::SIGTERM);
        reap(&mut conn.child, self.cfg.kill_grace)
    }

    /// The child died, broke the protocol or failed its handshake: fail the task it was running,
    /// keep the rest, and start a replacement (at once if the child had answered a job, after the
    /// restart back-off if not).
    fn crashed(&mut self, protocol: Option<String>) {
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        let stage = if conn.jobs.is_none() {
            Some(StartStage::Handshake)
        } else if !self.shared.lock().answered {
            Some(StartStage::FirstJob)
        } else {
            None
        };
        let status = match (self.conn.as_mut(), &protocol) {
            (Some(conn), None) => {
                // Its output ended, so it is exiting; give it a moment to be reaped, then make sure.
                let status = reap(&mut conn.child, Duration::from_secs(2));
                self.conn = None;
                status
            }
            _ => self.terminate(),
        };
        let mut reason = match (protocol, status) {
            (Some(p), _) => p,
            (None, Some(s)) => describe(s),
            (None, None) => "its pipe closed".to_string(),
        };
        if stage == Some(StartStage::Handshake) {
            reason = format!(
                "{reason} before its handshake; does this binary's main call circuits::init() \
                 first? (a worker process that does not runs main again)"
            );
        }
        let (fin, victim, rest) = self.take_inflight();
        if let Some(v) = victim {
            let error = TaskError::WorkerCrashed {
                worker: fin.worker().to_string(),
                reason: reason.clone(),
            };
            self.shared.settle_fail(&fin, v.task, error);
        }
        match stage {
            Some(stage) => {
                self.requeue(rest);
                self.start_failed(stage, reason.clone());
                self.renamed(reason);
            }
            None => {
                self.failures = 0;
                self.replace(rest, reason);
            }
        }
    }

    /// Puts never-started in-flight tasks back at the head of the queue.
    fn requeue(&mut self, never_started: VecDeque<InFlight>) {
        for f in never_started.into_iter().rev() {
            self.pending.push_front(f.task);
        }
    }

    /// The worker's child changed: a fresh channel, announced with [`WorkerRestarted`].
    fn renamed(&mut self, reason: String) {
        if let (Some(core), Some(slot)) = (self.core.upgrade(), self.slot.upgrade()) {
            if let Some(fin) = core.worker_restarted(&slot, reason) {
                self.shared.lock().fin = fin;
            }
        }
    }

    /// Puts the never-started in-flight tasks back at the head of the queue, gives the worker a
    /// fresh channel, and starts a new child unless the pool is stopping.
    fn replace(&mut self, never_started: VecDeque<InFlight>, reason: String) {
        self.conn = None;
        self.requeue(never_started);
        if self.stopping.is_some_and(|s| s != Shutdown::Drain) {
            let fin = self.fin();
            for task in std::mem::take(&mut self.pending) {
                self.shared.settle_fail(&fin, task, TaskError::Cancelled);
            }
            return;
        }
        self.renamed(reason);
        if self.stopping.is_none() || !self.pending.is_empty() {
            self.connect();
        }
    }

    /// A draining stop is done: close the child's input (it exits at the end of input) and reap it
    /// with its process group.
    fn close(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            drop(conn.input);
            reap(
                &mut conn.child,
                self.cfg.kill_grace.max(Duration::from_secs(1)),
            );
        }
    }

    /// An abort: kill the child's group at once and cancel everything, running tasks included.
    fn kill_all(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            reap(&mut conn.child, Duration::ZERO);
        }
        let (fin, victim, rest) = self.take_inflight();
        let tasks = victim.into_iter().chain(rest).map(|f| f.task);
        for task in tasks.chain(std::mem::take(&mut self.pending)) {
            self.shared.settle_fail(&fin, task, TaskError::Cancelled);
        }
    }
}
