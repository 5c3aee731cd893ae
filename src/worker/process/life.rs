//! A child's life, seen from its host: start it (through the restart policy), notice its end,
//! fail or keep the tasks it held, replace it under a fresh channel, and end it with its process
//! group.

use std::collections::VecDeque;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::carrier;
use super::config::ProcessConfig;
use super::limits::{limit_reason, resident_bytes};
use super::reap::{exit_of, reap, signal_group};
use super::shared::{InFlight, PidMark, BACKING_OFF, STARTING};
use super::state::{Conn, Host};
use crate::task::{Exit, StartStage, TaskError};
use crate::wire::{self, FrameSink, WireError};
use crate::worker::child::{
    CPU_PER_JOB_ENV, MAX_FRAME_ENV, OPEN_FILES_ENV, PARENT_ENV, WORKER_ENV,
};
use crate::worker::Shutdown;

impl Host {
    /// Starts a child and its reader thread; the handshake completes later. A start the OS
    /// refuses goes through the restart policy like any other failed start.
    pub(super) fn connect(&mut self) {
        self.retry_at = None;
        self.asked = false;
        self.shared.phase.store(STARTING, Ordering::Relaxed);
        let generation = {
            let mut st = self.shared.lock();
            st.generation += 1;
            st.answered = false;
            st.recycling = false;
            st.generation
        };
        match self.start_child(generation) {
            Ok(conn) => self.conn = Some(conn),
            Err(e) => {
                let program = self.cfg.program_named();
                self.start_failed(
                    StartStage::Spawn,
                    format!("could not start a worker process ({program}): {e}"),
                )
            }
        }
    }

    pub(super) fn start_child(&mut self, generation: u64) -> std::io::Result<Conn> {
        let exe = match &self.cfg.program {
            Some(program) => program.clone(),
            None => std::env::current_exe()?,
        };
        let mut command = Command::new(exe);
        command
            .args(&self.cfg.program_args)
            .env(WORKER_ENV, "1")
            .env(MAX_FRAME_ENV, self.cfg.max_frame.to_string())
            .env(PARENT_ENV, std::process::id().to_string());
        // The limits the child sets on itself.
        if let Some(limit) = self.cfg.cpu_per_job {
            // In u64 nanoseconds, which the child reads (584 years at most).
            let nanos = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
            command.env(CPU_PER_JOB_ENV, nanos.to_string());
        }
        if let Some(n) = self.cfg.open_files {
            command.env(OPEN_FILES_ENV, n.to_string());
        }
        let max = self.cfg.max_frame;
        command
            // Its own process group, so that ending it ends whatever its jobs started.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // (The rings' offer replaces the pipes.)
        let rings = carrier::offer_rings(&self.cfg, &mut command);
        let mut child = command.spawn()?;
        drop(command); // our copy of the child's end of the socket, if any
        let mut input = match carrier::connect(
            &mut child,
            rings,
            &self.shared,
            &self.readers,
            generation,
            max,
        ) {
            Ok(input) => input,
            Err(e) => {
                reap(&mut child, Duration::ZERO);
                return Err(e);
            }
        };
        let sent = wire::hello(Vec::new())
            .and_then(|b| input.send(&b))
            .and_then(|()| input.flush());
        // A child that already died (a broken pipe) failed its handshake, not its spawn: its
        // reader sees the end of its output and says how it ended.
        let broken = sent.is_err();
        let pid = child.id();
        self.shared.pid.store(pid, Ordering::Relaxed);
        Ok(Conn {
            _pid: PidMark {
                shared: self.shared.clone(),
                pid,
            },
            child,
            input,
            jobs: None,
            started: Instant::now(),
            generation,
            broken,
            sent: 0,
            quota: self.cfg.job_quota(),
            recycling: None,
            memory_read: Instant::now(),
        })
    }

    /// A start failed (the OS refused the child, or it ended before answering a job): wait the
    /// back-off before the next one; past the limit of failures in a row, fail the tasks waiting.
    pub(super) fn start_failed(&mut self, stage: StartStage, reason: String) {
        self.failures += 1;
        self.shared.phase.store(BACKING_OFF, Ordering::Relaxed);
        // Past the limit, only the slowest back-off: the worker keeps trying, slowly (after a
        // failed handshake, only when asked: see `wants_start`).
        let wait = self.cfg.restart.wait(self.failures);
        self.retry_at = Some(Instant::now() + wait);
        tracing::debug!(worker = %self.fin().worker(), failures = self.failures, ?wait, %stage, %reason, "worker process start failed");
        self.last_failure = Some((stage, reason));
        if self.cfg.restart.past_limit(self.failures) {
            self.fail_waiting();
        }
    }

    /// Whether a worker whose last start failed tries again once its back-off is over: always
    /// below the limit of failures in a row (the pool keeps its size), and past it too unless
    /// its children fail their handshake, that is, never speak the protocol: then only when a
    /// task came since the last try. A program without `circuits::init` runs its whole `main` at
    /// each start, which an idle pool must not repeat every few seconds for ever; a set-up or a
    /// spawn that failed may have had a passing cause, and the pool heals by itself when it
    /// passes.
    pub(super) fn wants_start(&self) -> bool {
        let handshake = matches!(self.last_failure, Some((StartStage::Handshake, _)));
        !(self.cfg.restart.past_limit(self.failures) && handshake) || self.asked
    }

    /// Fails every task waiting for a child with the last start failure.
    pub(super) fn fail_waiting(&mut self) {
        let Some((stage, reason)) = self.last_failure.clone() else {
            return;
        };
        let fin = self.fin();
        let error = TaskError::WorkerStartFailed {
            worker: fin.worker().clone(),
            stage,
            reason,
        };
        for task in std::mem::take(&mut self.pending) {
            self.shared.settle_fail(&fin, task, error.clone());
        }
    }

    /// The running task's timeout passed (or the handshake's): fail the task at once, then kill the
    /// child and start a replacement (the kill grace delays only the replacement).
    pub(super) fn expire(&mut self) {
        let Some(conn) = self.conn.as_ref() else {
            // A failed start's back-off is over: try again, so the pool keeps its size, or so that
            // a draining stop's waiting tasks run (or fail past the limit) and the stop ends.
            let wanted = match self.stopping {
                None => self.wants_start(),
                Some(Shutdown::Drain) => !self.pending.is_empty(),
                Some(Shutdown::Abort) => false,
            };
            if wanted && self.retry_at.is_some_and(|t| Instant::now() >= t) {
                self.connect();
            }
            return;
        };
        if conn.jobs.is_none() {
            let limit = self.cfg.handshake_timeout;
            return self.crashed(Some(WireError::NoHandshake(limit)));
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
                    worker: fin.worker().clone(),
                    exit: Exit::KilledAfterTimeout,
                }
            };
            self.shared.settle_fail(&fin, v.task, error);
        }
        self.terminate();
        self.failures = 0;
        self.replace(rest, "the running task timed out".to_string());
    }

    /// SIGTERM to the child's group, then SIGKILL after the grace period; reaps the child.
    pub(super) fn terminate(&mut self) -> Option<ExitStatus> {
        let mut conn = self.conn.take()?;
        signal_group(&conn.child, libc::SIGTERM);
        reap(&mut conn.child, self.cfg.kill_grace)
    }

    /// The child died, broke the protocol or failed its handshake: fail the task it was running,
    /// keep the rest, and start a replacement (at once if the child had answered a job or went
    /// over a limit in one, after the restart back-off if not).
    pub(super) fn crashed(&mut self, protocol: Option<WireError>) {
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        let piped = conn.input.pipe_capacity().is_some();
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
        let exit = match (protocol, status) {
            (Some(p), _) => Exit::Protocol(p),
            (None, Some(s)) => exit_of(s),
            (None, None) => Exit::Unknown,
        };
        let limit = self.limit_of(&exit);
        // A child that went over a limit in a job started well: the job is at fault, not the start.
        let stage = stage.filter(|s| limit.is_none() || *s != StartStage::FirstJob);
        let mut reason = match &limit {
            Some(limit) => limit_reason(limit),
            None => exit.to_string(),
        };
        if stage == Some(StartStage::Handshake) {
            let broke_pipes = piped && matches!(exit, Exit::Protocol(_));
            reason = format!(
                "{reason} before its handshake; {}",
                handshake_hint(&self.cfg, broke_pipes)
            );
        }
        let (fin, victim, rest) = self.take_inflight();
        if let Some(v) = victim {
            let error = match limit {
                Some(limit) => TaskError::LimitExceeded(limit),
                None => TaskError::WorkerCrashed {
                    worker: fin.worker().clone(),
                    exit,
                },
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

    /// The child's worker state set-up failed (it said why in place of its handshake, and is
    /// exiting): a failed start, whose reason is the set-up's.
    pub(super) fn state_failed(&mut self, reason: String) {
        // Nothing was sent to it before its handshake; its reader's news about its end is stale
        // from here (a new generation).
        let (_, _, rest) = self.take_inflight();
        self.close();
        self.requeue(rest);
        self.start_failed(StartStage::WorkerState, reason.clone());
        self.renamed(reason);
    }

    /// Puts never-started in-flight tasks back at the head of the queue.
    pub(super) fn requeue(&mut self, never_started: VecDeque<InFlight>) {
        for f in never_started.into_iter().rev() {
            self.pending.push_front(f.task);
        }
    }

    /// The worker's child changed: a fresh channel, announced with [`WorkerRestarted`].
    pub(super) fn renamed(&mut self, reason: String) {
        if let (Some(link), Some(slot)) = (&self.link, self.slot.upgrade()) {
            if let Some(fin) = link.restarted(&slot, reason) {
                self.shared.lock().fin = fin;
            }
        }
    }

    /// Puts the never-started in-flight tasks back at the head of the queue, gives the worker a
    /// fresh channel, and starts a new child unless the pool is stopping.
    pub(super) fn replace(&mut self, never_started: VecDeque<InFlight>, reason: String) {
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

    /// The task sent as run `run` was cancelled (its value is settled already). If the child is
    /// running it, the child is killed and replaced: the jobs sent after it go to the new child.
    /// If it was only sent ahead, the child runs it when it comes and its answer is discarded.
    pub(super) fn cancel_run(&mut self, run: u64) {
        let running = self.shared.lock().inflight.front().map(|f| f.run);
        if running != Some(run) || self.conn.is_none() {
            return;
        }
        let (fin, victim, rest) = self.take_inflight();
        if let Some(v) = victim {
            self.shared.settle_fail(&fin, v.task, TaskError::Cancelled); // no second event
        }
        self.terminate();
        self.failures = 0;
        self.replace(rest, "its running task was cancelled".to_string());
    }

    /// Whether the child is due for recycling (its job count reached, or its memory above the
    /// limit); once it is, it stays so, gets no more jobs, and the reader wakes the host when its
    /// last job is answered.
    pub(super) fn recycle_due(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut().filter(|c| c.jobs.is_some() && !c.broken) else {
            return false;
        };
        if conn.recycling.is_none() {
            conn.recycling = match (conn.quota, self.cfg.recycle_memory) {
                (Some(q), _) if conn.sent >= q => {
                    Some(format!("recycled after {} jobs", conn.sent))
                }
                (_, Some(limit)) => resident_bytes(conn.child.id())
                    .filter(|rss| *rss > limit)
                    .map(|rss| format!("recycled at {rss} bytes resident (limit {limit})")),
                _ => None,
            };
            if conn.recycling.is_some() {
                self.shared.lock().recycling = true;
            }
        }
        conn.recycling.is_some()
    }

    /// Replaces a child due for recycling once it has answered every job it was given: it ends
    /// at the end of its input, and a new child takes the queue. No task fails.
    pub(super) fn recycle_if_idle(&mut self) {
        let due = self.conn.as_ref().and_then(|c| c.recycling.clone());
        let Some(reason) = due else { return };
        if !self.shared.lock().inflight.is_empty() {
            return; // its reader wakes the host when the last answer is in
        }
        self.shared.lock().recycling = false;
        // It started and answered: whatever failed before it is over.
        self.failures = 0;
        self.close();
        self.fin().counters.recycled.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(worker = %self.fin().worker(), %reason, "worker process recycled");
        self.replace(VecDeque::new(), reason);
    }

    /// A draining stop is done: close the child's input (it exits at the end of input) and reap it
    /// with its process group.
    pub(super) fn close(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            drop(conn.input);
            reap(
                &mut conn.child,
                self.cfg.kill_grace.max(Duration::from_secs(1)),
            );
        }
    }

    /// An abort: kill the child's group at once and cancel everything, running tasks included.
    pub(super) fn kill_all(&mut self) {
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

/// What a child that failed its handshake likely did, for the reason: which program (and
/// arguments) never called `circuits::init`, or, when its frames went through its stdout, that
/// what it printed before `init` broke them.
fn handshake_hint(cfg: &ProcessConfig, broke_pipes: bool) -> String {
    let program = cfg.program_named();
    let mut hint = if cfg.program_args.is_empty() {
        format!(
            "does {program}'s main call circuits::init() first? (a worker process that does not \
             runs main again)"
        )
    } else {
        format!(
            "does {program}, run with the arguments {:?}, call circuits::init() first? (with the \
             test harness, they must name the test that calls it, by its full path)",
            cfg.program_args
        )
    };
    if broke_pipes {
        hint.push_str(
            "; its frames went through its stdout, as no shared memory could be had, so anything \
             it printed before circuits::init() broke them",
        );
    }
    hint
}
