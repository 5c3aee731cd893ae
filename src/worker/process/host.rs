//! The host thread of one process worker: it owns the worker's queue and its child, pipelines
//! jobs to it, and replaces it when it dies, through the restart policy.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::config::ProcessConfig;
use super::reader::{read_child, Output};
use super::reap::{describe, reap, signal_group};
use super::shared::{InFlight, Msg, Shared, State};
use crate::task::Inputs;
use crate::task::{ErasedTask, Finisher, StartStage, TaskError};
use crate::value::{promise, Value};
use crate::wire::{self, Frame, FrameSink, Payload, PipeSink, PipeSource, WireError};
use crate::worker::child::{MAX_FRAME_ENV, PARENT_ENV, WORKER_ENV};
use crate::worker::{Backend, PoolLink, Shutdown, WorkerSlot};

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
            link: None,
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
    fn submit(
        &self,
        mut task: Box<dyn ErasedTask>,
        pinned: bool,
    ) -> Result<(), Box<dyn ErasedTask>> {
        if pinned {
            task.pin(); // it stays on this worker if the worker retires
        }
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

    fn attach(&self, link: Arc<dyn PoolLink>, slot: Weak<WorkerSlot>) {
        let _ = self.tx.send(Msg::Attach(link, slot));
    }

    fn retire(&self) -> Vec<Box<dyn ErasedTask>> {
        self.leaving.store(true, Ordering::SeqCst);
        // The host holds the queue: it answers with the tasks to move (at once, unless it is
        // ending a child within its kill grace).
        let (reply, moved) = crossbeam_channel::bounded(1);
        if self.tx.send(Msg::Retire(reply)).is_err() {
            return Vec::new();
        }
        moved.recv().unwrap_or_default()
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

/// A live child and the write end of its input.
struct Conn {
    child: Child,
    input: PipeSink<ChildStdin>,
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
    link: Option<Arc<dyn PoolLink>>,
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
            Msg::Attach(link, slot) => {
                self.link = Some(link);
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
                    // Framed from the task's own buffers: the input is copied once, into the frame.
                    Ok(Inputs::One(input)) => wire::encode(
                        &Frame::Run {
                            id: self.next_run,
                            job: Cow::Borrowed(job.name),
                            input: Payload::borrowed(input),
                        },
                        input.len(),
                    )
                    .map_err(|e| TaskError::Wire(e.to_string())),
                    Ok(Inputs::Batch(inputs)) => wire::encode(
                        &Frame::RunBatch {
                            id: self.next_run,
                            job: Cow::Borrowed(job.name),
                            inputs: inputs.iter().map(|i| Payload::borrowed(i)).collect(),
                        },
                        inputs.iter().map(|i| i.len() + 5).sum(),
                    )
                    .map_err(|e| TaskError::Wire(e.to_string())),
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
            written = conn.input.send(body);
            if written.is_err() {
                break;
            }
        }
        if written.is_ok() {
            written = conn.input.flush();
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
        let mut input = PipeSink::new(stdin, self.cfg.max_frame);
        let sent = wire::hello(Vec::new())
            .and_then(|b| input.send(&b))
            .and_then(|()| input.flush());
        // A child that already died (a broken pipe) failed its handshake, not its spawn: its
        // reader sees the end of its output and says how it ended.
        let broken = sent.is_err();
        let shared = self.shared.clone();
        let output = PipeSource::new(Output::new(stdout, child.id()), self.cfg.max_frame);
        let spawned = std::thread::Builder::new()
            .name("circuits-process-reader".into())
            .spawn(move || read_child(shared, generation, output));
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
            broken,
        })
    }

    /// A start failed (the OS refused the child, or it ended before answering a job): wait the
    /// back-off before the next one; past the limit of failures in a row, fail the tasks waiting.
    fn start_failed(&mut self, stage: StartStage, reason: String) {
        self.failures += 1;
        // Past the limit, only the slowest back-off: the worker keeps trying, slowly.
        let wait = if self.failures >= self.cfg.max_start_failures {
            self.cfg.backoff_max
        } else {
            self.cfg.backoff(self.failures)
        };
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
        if let (Some(link), Some(slot)) = (&self.link, self.slot.upgrade()) {
            if let Some(fin) = link.restarted(&slot, reason) {
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
