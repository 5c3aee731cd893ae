//! Thread mode: one dedicated OS thread per worker, fed by lock-free queues, with work stealing.
//!
//! The pool pushes tasks straight onto the worker's crossbeam channels (no actor mailbox on the hot
//! path); the thread runs them in order, catching panics, and settles each task's value. Each
//! worker has two queues: **pinned** tasks (fired at its channel, or carrying an affinity key) run
//! only there; **shared** tasks (balanced by the strategy) may be stolen by an idle sibling, and
//! go to the pool's injector instead when their worker sleeps (see `crew`). So a placement that
//! turned out badly (a long task ahead of short ones) is corrected at run time, the way a single
//! shared queue would, without a shared queue's contention on every push.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};

use super::crew::{Bell, Sibling, Siblings};
use super::early::EarlySearch;
use super::restart::Restart;
use super::urgent::{Msg, Urgent};
use super::{Backend, Shutdown, LINGER};
use crate::state::Setups;
use crate::task::{ErasedTask, Finisher, LaneTurn, RunningSlot, StartStage, TaskError};
use crate::value::{promise, Promise, Value};

/// A worker thread and its queues.
pub(crate) struct ThreadWorker {
    pinned: Sender<Msg>,
    /// Our own pinned queue, to cancel what it holds when the pool is aborted.
    pinned_rx: Receiver<Msg>,
    /// The task the thread is running, to fail at once on abort.
    running: Arc<RunningSlot>,
    fin: Arc<Finisher>,
    load: Arc<AtomicUsize>,
    shared: Sender<Box<dyn ErasedTask>>,
    /// Our own shared queue, to hand its tasks back when the worker retires.
    shared_rx: Receiver<Box<dyn ErasedTask>>,
    busy: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
    /// Resolves `done` when the thread exits, or at once on abort.
    exit: Promise<Result<(), TaskError>>,
    done: Mutex<Option<Value<(), TaskError>>>,
    siblings: Siblings,
    id: u64,
    /// The `High` and `Low` queues.
    urgent: Urgent,
    /// Wakes the thread when it sleeps.
    bell: Arc<Bell>,
    /// The thread, to wake from a failed start's back-off on abort.
    thread: std::thread::Thread,
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

impl ThreadWorker {
    /// Starts the thread and makes its shared queue stealable by `siblings`. `load` is decremented
    /// as each of its tasks ends (by whichever thread ran it).
    pub(crate) fn spawn(
        fin: Arc<Finisher>,
        load: Arc<AtomicUsize>,
        siblings: Siblings,
        start: Start,
    ) -> std::io::Result<Self> {
        let (pinned_tx, pinned_rx) = crossbeam_channel::unbounded();
        let (shared_tx, shared_rx) = crossbeam_channel::unbounded();
        let abort = Arc::new(AtomicBool::new(false));
        let (exit, done) = promise::<(), TaskError>();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed) as u64;
        let me = Sibling {
            id,
            shared: shared_rx,
            load,
            busy: Arc::new(AtomicBool::new(false)),
            bell: Arc::new(siblings.bell()),
            urgent: Urgent::new(),
        };
        let (shared_rx, busy, own_load) = (me.shared.clone(), me.busy.clone(), me.load.clone());
        let bell = me.bell.clone();
        let early = Arc::new(EarlySearch::new(siblings.clone(), me.clone()));
        let running = Arc::new(RunningSlot::with_value_hook(Box::new({
            let early = early.clone();
            move || early.value_due()
        })));
        let worker = Worker {
            me: me.clone(),
            pinned: pinned_rx.clone(),
            siblings: siblings.clone(),
            fin: fin.clone(),
            abort: abort.clone(),
            running: running.clone(),
            early,
            turn: std::cell::Cell::new(LaneTurn::default()),
            start,
        };
        let urgent = me.urgent.clone();
        let name = worker.fin.worker().as_str();
        let exited = exit.share();
        let thread = std::thread::Builder::new()
            .name(format!("circuits-worker-{}", &name[..8.min(name.len())]))
            .spawn(move || {
                worker.serve();
                exited.complete(Ok(()));
            })?
            .thread()
            .clone();
        siblings.join(me);
        Ok(ThreadWorker {
            pinned: pinned_tx,
            pinned_rx,
            running,
            fin,
            load: own_load,
            shared: shared_tx,
            shared_rx,
            busy,
            abort,
            exit,
            done: Mutex::new(Some(done)),
            siblings,
            id,
            urgent,
            bell,
            thread,
        })
    }
}

/// What a thread worker does when it starts: set up its state, retrying under the restart policy.
#[derive(Clone, Default)]
pub(crate) struct Start {
    pub(crate) setups: Setups,
    pub(crate) restart: Restart,
}

/// The thread's side.
struct Worker {
    me: Sibling,
    pinned: Receiver<Msg>,
    siblings: Siblings,
    fin: Arc<Finisher>,
    abort: Arc<AtomicBool>,
    running: Arc<RunningSlot>,
    early: Arc<EarlySearch>,
    /// Whose turn it is among the priority lanes.
    turn: std::cell::Cell<LaneTurn>,
    start: Start,
}

/// What to do next.
enum Next {
    /// A task, and the load counter it was counted on: `None` for this worker's own (no clone of
    /// the counter's `Arc`, whose line the pushers read), else the sibling's it was stolen from.
    Task(Box<dyn ErasedTask>, Option<Arc<AtomicUsize>>),
    Stop,
}

impl Worker {
    fn serve(&self) {
        self.me.bell.hang();
        if let Err(error) = self.start() {
            return self.leave_failing(&error);
        }
        let armed = self.early.arm();
        while let Next::Task(task, load) = self.next() {
            self.run(task, load.as_deref().unwrap_or(&self.me.load));
        }
        drop(armed);
        // Stop came after every pinned task queued before it; run (or cancel) what is still in the
        // queues (a retiring worker's shared queue was already handed back).
        while let Ok(Msg::Run(task)) = self.pinned.try_recv() {
            self.run(task, &self.me.load);
        }
        while let Ok(task) = self.me.shared.try_recv() {
            self.run(task, &self.me.load);
        }
        for task in self.me.urgent.drain(true, true) {
            self.run(task, &self.me.load);
        }
        // Leave the stealing list, then take anything a last-moment steal missed, and what the
        // crew's injector holds (when the whole pool stops, nothing is left there).
        self.siblings.leave(self.me.id);
        while let Ok(task) = self.me.shared.try_recv() {
            self.run(task, &self.me.load);
        }
        for task in self.me.urgent.drain(true, true) {
            self.run(task, &self.me.load);
        }
        while let Some((task, load)) = self.siblings.injected() {
            self.run(task, &load);
        }
    }

    /// The next task by lane turn, when the `High` or `Low` queues hold any (see [`LaneTurn`]).
    fn by_priority(&self) -> Option<Next> {
        let urgent = &self.me.urgent;
        Some(
            match urgent.next_by_turn(&self.turn, &self.pinned, &self.me.shared)? {
                Some(t) => Next::Task(t, None),
                None => Next::Stop,
            },
        )
    }

    /// Sets up the worker's state on this thread before it takes a task. A failed set-up is a
    /// failed start: wait the back-off (the tasks stay queued) and try again; past the limit of
    /// failures in a row, fail every task queued and every one that comes, at once, until the next
    /// try (at the slowest back-off) succeeds.
    ///
    /// # Errors
    ///
    /// The worker was stopped (or its pool dropped) while past the limit: the error its remaining
    /// tasks fail with. An abort ends it too (its tasks were cancelled by the abort).
    fn start(&self) -> Result<(), TaskError> {
        let mut failures = 0;
        loop {
            let reason = match self.start.setups.install() {
                Ok(()) => return Ok(()),
                Err(reason) => reason,
            };
            failures += 1;
            let wait = self.start.restart.wait(failures);
            tracing::debug!(worker = %self.fin.worker(), failures, ?wait, %reason, "worker thread start failed");
            let until = Instant::now() + wait;
            if !self.start.restart.past_limit(failures) {
                // Parked, not sleeping: an abort wakes the thread.
                while Instant::now() < until && !self.abort.load(Ordering::Acquire) {
                    std::thread::park_timeout(until.saturating_duration_since(Instant::now()));
                }
                if self.abort.load(Ordering::Acquire) {
                    return Err(TaskError::Cancelled);
                }
                continue;
            }
            let error = TaskError::WorkerStartFailed {
                worker: self.fin.worker().clone(),
                stage: StartStage::WorkerState,
                reason,
            };
            loop {
                loop {
                    match self.pinned.try_recv() {
                        Ok(Msg::Run(task)) => self.fail(task, error.clone(), &self.me.load),
                        Ok(Msg::Stop) => return Err(error),
                        Err(TryRecvError::Empty) => break,
                        // The pool was dropped without a stop.
                        Err(TryRecvError::Disconnected) => return Err(error),
                    }
                }
                let shared = self.me.shared.try_iter();
                for task in shared.chain(self.me.urgent.drain(true, true)) {
                    self.fail(task, error.clone(), &self.me.load);
                }
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let mut sel = Select::new();
                sel.recv(&self.pinned);
                sel.recv(&self.me.shared);
                for q in self.me.urgent.pinned.iter().chain(&self.me.urgent.shared) {
                    sel.recv(&q.1);
                }
                // Wakes when a task (or the stop) comes, or for the next try; the loop takes it.
                let _ = sel.ready_timeout(left);
            }
        }
    }

    /// A worker that never started leaves: out of the stealing list, failing what is still queued.
    fn leave_failing(&self, error: &TaskError) {
        self.siblings.leave(self.me.id);
        let pinned = self.pinned.try_iter().filter_map(|m| match m {
            Msg::Run(t) => Some(t),
            Msg::Stop => None,
        });
        let queued = pinned.chain(self.me.shared.try_iter());
        for task in queued
            .chain(self.me.urgent.drain(true, true))
            .collect::<Vec<_>>()
        {
            self.fail(task, error.clone(), &self.me.load);
        }
    }

    fn fail(&self, task: Box<dyn ErasedTask>, error: TaskError, load: &AtomicUsize) {
        let error = if self.abort.load(Ordering::Acquire) {
            TaskError::Cancelled
        } else {
            error
        };
        task.fail(error, &self.fin);
        load.fetch_sub(1, Ordering::Relaxed);
    }

    fn run(&self, task: Box<dyn ErasedTask>, load: &AtomicUsize) {
        if self.abort.load(Ordering::Acquire) {
            task.fail(TaskError::Cancelled, &self.fin);
        } else {
            // Busy, then a look at what waits behind this task (a push that saw the worker idle
            // left it there): a sleeper comes to steal it when nobody searches.
            self.me.busy.swap(true, Ordering::SeqCst);
            if !self.me.shared.is_empty() || self.me.urgent.has_shared() {
                self.siblings.behind_busy();
            }
            task.run(&self.fin, &self.running);
            self.me.busy.store(false, Ordering::Relaxed);
        }
        load.fetch_sub(1, Ordering::Relaxed);
    }

    /// Own queues first, then a steal from a busy or sleeping sibling (the fullest first). With
    /// nothing to take, search a little (as one of the crew's few searchers), then sleep until a
    /// push rings (see `crew`).
    fn next(&self) -> Next {
        // Searching already if it claimed a searcher's place as its last task's value was set.
        let mut search = self.early.take().then(|| Instant::now() + LINGER);
        loop {
            let found = match self.own() {
                Some(next) => Some(next),
                None if self.me.bell.closed() => Some(Next::Stop),
                None => self
                    .siblings
                    .steal(self.me.id)
                    .map(|(task, load)| Next::Task(task, Some(load))),
            };
            if let Some(next) = found {
                // The last searcher to find work wakes another worker while work is left.
                if search.is_some() {
                    self.siblings.end_search();
                }
                return next;
            }
            match search {
                None if self.siblings.start_searching() => {
                    search = Some(Instant::now() + LINGER);
                    continue;
                }
                Some(until) if Instant::now() < until => {
                    self.siblings.pause(|| self.holds_work());
                    continue;
                }
                _ => {}
            }
            let bell = &self.me.bell;
            bell.lie_down();
            if search.take().is_some() {
                self.siblings.stop_searching();
            }
            // A push that left its task to others relies on whoever lies down to see it.
            let left_for_us = self.siblings.take_mark() && self.siblings.any_stealable();
            if left_for_us || self.holds_work() || bell.closed() {
                bell.wake();
                continue;
            }
            bell.sleep();
            // Woken: search, as the worker that rang expects.
            if self.siblings.start_searching() {
                search = Some(Instant::now() + LINGER);
            }
        }
    }

    /// The next task from this worker's own queues; the stop when its pool is gone.
    fn own(&self) -> Option<Next> {
        if self.me.urgent.queued.load(Ordering::Acquire) > 0 {
            if let Some(next) = self.by_priority() {
                return Some(next);
            }
        }
        match self.pinned.try_recv() {
            Ok(Msg::Run(t)) => return Some(Next::Task(t, None)),
            Ok(Msg::Stop) => return Some(Next::Stop),
            // The pool was dropped without a stop (its queues' senders are gone); `serve` runs
            // what is left.
            Err(TryRecvError::Disconnected) => return Some(Next::Stop),
            Err(TryRecvError::Empty) => {}
        }
        if let Ok(task) = self.me.shared.try_recv() {
            return Some(Next::Task(task, None));
        }
        let (task, load) = self.siblings.injected()?;
        Some(Next::Task(task, Some(load)))
    }

    /// Something is queued on this worker (or its pinned queue is closed).
    fn holds_work(&self) -> bool {
        !self.pinned.is_empty() || self.siblings.queued_for(&self.me)
    }
}

impl Backend for ThreadWorker {
    fn submit(&self, task: Box<dyn ErasedTask>, pinned: bool) -> Result<(), Box<dyn ErasedTask>> {
        if let Some(side) = Urgent::side(task.priority()) {
            self.urgent.push(task, side, pinned)?;
        } else if pinned {
            self.pinned.send(Msg::Run(task)).map_err(|e| match e.0 {
                Msg::Run(t) => t,
                // Only Run is sent here, so only Run comes back.
                Msg::Stop => unreachable!("submit sends only Run"),
            })?;
        } else if let Some(task) = self.siblings.inject(task, &self.bell, &self.load) {
            self.shared.send(task).map_err(|e| e.0)?;
        }
        let busy = self.busy.load(Ordering::Relaxed);
        self.siblings.queued(&self.bell, pinned, busy);
        Ok(())
    }

    fn starts_at_once(&self) -> bool {
        self.siblings
            .starts_at_once(&self.bell, self.busy.load(Ordering::Relaxed))
    }

    fn shutdown(&self, how: Shutdown) {
        if how == Shutdown::Abort {
            // Everything this worker holds is settled now: the running task's value resolves
            // `Cancelled` (the thread finishes the closure detached and exits), and so does every
            // queued task. The thread cancels whatever it takes from here on.
            self.abort.store(true, Ordering::Release);
            self.running.fail(TaskError::Cancelled, &self.fin);
            let queued = self
                .shared_rx
                .try_iter()
                .chain(self.pinned_rx.try_iter().filter_map(|m| {
                    if let Msg::Run(t) = m {
                        Some(t)
                    } else {
                        None
                    }
                }))
                .chain(self.urgent.drain(true, true));
            for task in queued {
                task.fail(TaskError::Cancelled, &self.fin);
                self.load.fetch_sub(1, Ordering::Relaxed);
            }
            // Tasks placed on sleeping workers (the whole pool is aborting).
            while let Some((task, load)) = self.siblings.injected() {
                task.fail(TaskError::Cancelled, &self.fin);
                load.fetch_sub(1, Ordering::Relaxed);
            }
            self.exit.complete(Ok(()));
            // A thread waiting out a failed start's back-off ends now.
            self.thread.unpark();
        }
        // A send error means the thread is gone already, which is what we want.
        let _ = self.pinned.send(Msg::Stop);
        self.siblings.queued(&self.bell, true, false);
    }

    fn finished(&self) -> Value<(), TaskError> {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        match done.take() {
            Some(v) => v,
            // Asked twice: the first caller holds the real signal.
            None => Value::ready(Ok(())),
        }
    }

    fn retire(&self) -> Vec<Box<dyn ErasedTask>> {
        // Unpinned tasks move to other workers; pinned ones run here before the stop message.
        let mut moved: Vec<_> = self.urgent.drain(true, false);
        moved.extend(self.shared_rx.try_iter());
        let _ = self.pinned.send(Msg::Stop);
        self.siblings.queued(&self.bell, true, false);
        moved
    }

    fn running(&self) -> usize {
        usize::from(self.busy.load(Ordering::Relaxed))
    }

    fn probe(&self) -> super::info::Probe {
        // The running slot, not the busy flag: the slot is cleared before the task's value
        // resolves, so whoever awaited the value sees the worker idle.
        let task = self.running.peek();
        super::info::Probe {
            mode: super::info::WorkerMode::Thread,
            pid: None,
            state: None,
            running: usize::from(task.is_some()),
            task,
        }
    }
}

impl Drop for ThreadWorker {
    fn drop(&mut self) {
        self.siblings.leave(self.id);
        // The queues' senders go with this worker: the thread runs what they hold, and ends.
        self.bell.close();
    }
}
