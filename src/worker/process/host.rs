//! The backend of one process worker, and the host thread it starts, which owns the worker's queue
//! and its child (see `serve` and `life`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crossbeam_channel::Sender;

use super::config::ProcessConfig;
use super::reader::Readers;
use super::serve::serve;
use super::shared::{lock, try_lock, Msg, Relay, Shared};
use super::state::Host;
use crate::task::{ErasedTask, Finisher, TaskError};
use crate::value::{promise, Value};
use crate::worker::{Backend, PoolLink, Shutdown, WorkerSlot};

/// A worker backed by a child process.
pub(crate) struct ProcessWorker {
    tx: Sender<Msg>,
    /// The host's state: the host thread holds it while it handles messages; a pusher that
    /// finds it free sends its task to the child itself (see [`Backend::submit`]).
    host: Arc<Mutex<Host>>,
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
        let shared = Arc::new(Shared::new(
            fin,
            load,
            tx.clone(),
            cfg.pipeline,
            cfg.answer_spin,
        ));
        let host = Host {
            cfg,
            shared: shared.clone(),
            link: None,
            slot: Weak::new(),
            conn: None,
            next_run: 1,
            pending: Default::default(),
            stopping: None,
            retry_at: None,
            asked: false,
            failures: 0,
            last_failure: None,
            encoded: Vec::new(),
            readers: Readers::new(),
        };
        let host = Arc::new(Mutex::new(host));
        let relay: Arc<Mutex<dyn Relay>> = host.clone();
        let _ = shared.relay.set(Arc::downgrade(&relay));
        let serving = host.clone();
        std::thread::Builder::new()
            .name("circuits-process-host".into())
            .spawn(move || {
                // Children are started from this thread, which lives as long as the worker: the
                // kernel's parent-death signal is tied to it.
                lock(&serving).connect();
                serve(&serving, &rx);
                // No child starts from now on: the reader threads end with the last one's output.
                lock(&serving).readers.close();
                exit.complete(Ok(()));
            })?;
        Ok(ProcessWorker {
            tx,
            host,
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
        // The host is free and holds every task pushed before this one: queue the task there and
        // send it to the child from this thread, without waking the host thread. (`in_hand`
        // counts the tasks still on their way to the host through the channel.)
        // (A stopping host goes through the channel, which refuses the task once the host
        // thread has ended.)
        if let Some(mut host) = try_lock(&self.host) {
            if host.stopping.is_none() && self.shared.in_hand.load(Ordering::SeqCst) == 0 {
                host.pending.push_back(task);
                let idle = host.relay();
                // Sent to an idle child: its value, polled on this thread, may read the answer.
                if idle && host.pending.is_empty() {
                    if let Some((answers, awake)) = host.answers() {
                        answers.sent_alone(awake);
                    }
                }
                return Ok(());
            }
        }
        // Counted before the host thread's end is checked (and the end is marked before it
        // counts what is still coming, see `serve`): a task is either handed back or received.
        self.shared.in_hand.fetch_add(1, Ordering::SeqCst);
        if self.shared.closed.load(Ordering::SeqCst) {
            self.shared.in_hand.fetch_sub(1, Ordering::SeqCst);
            return Err(task);
        }
        self.tx.send(Msg::Run(task)).map_err(|e| {
            self.shared.in_hand.fetch_sub(1, Ordering::SeqCst);
            match e.0 {
                Msg::Run(t) => t,
                // Only Run is sent here, so only Run comes back.
                _ => unreachable!("submit sends only Run"),
            }
        })
    }

    fn shutdown(&self, how: Shutdown) {
        self.leaving.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Msg::Stop(how));
    }

    fn finished(&self) -> Value<(), TaskError> {
        let mut done = lock(&self.done);
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

    /// A child that is up and answered its last job quickly: a task sent to it while it is idle
    /// may be answered to the awaiting thread itself (see `answers`).
    fn starts_at_once(&self) -> bool {
        self.shared.phase.load(Ordering::Relaxed) == super::shared::READY
            && super::answers::quick(&self.shared)
    }

    fn probe(&self) -> crate::worker::info::Probe {
        use crate::worker::info::{Probe, WorkerMode, WorkerState};
        let task = {
            let st = self.shared.lock();
            st.inflight
                .front()
                .map(|f| (f.task.id(), Some(st.front_since)))
        };
        let pid = self.shared.pid.load(Ordering::Relaxed);
        let state = match self.shared.phase.load(Ordering::Relaxed) {
            super::shared::BACKING_OFF if pid == 0 => Some(WorkerState::BackingOff),
            super::shared::READY if pid != 0 => None,
            _ => Some(WorkerState::Starting),
        };
        Probe {
            mode: WorkerMode::Process,
            pid: (pid != 0).then_some(pid),
            state,
            running: usize::from(task.is_some()),
            task,
        }
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
