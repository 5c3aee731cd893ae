//! Async mode: each worker is one OS thread with a current-thread Tokio runtime (or an actix
//! `Arbiter`, which is that plus actix's context), running up to `in_flight` tasks at once.
//!
//! The queues are a thread worker's: pinned and shared, with `High` and `Low` lanes beside them.
//! The worker takes from them only while it has room, so the rest stays queued (stealable by a
//! sibling with room, handed back on retire), and its load is queued + in flight. Its loop polls
//! the running futures and wakes on a `Notify` that every submit rings. A future that blocks the
//! thread is found by a watchdog on the bus (when the pool has `stuck_after`): the worker's tasks
//! fail `TimedOut` and the pool replaces it.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use futures::future::{select, LocalBoxFuture};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Notify;

use self::watch::{watch_for_blocking, Watched};
use super::urgent::{Msg, Urgent};
use super::{Backend, Shutdown};
use crate::task::{ErasedTask, Finisher, LaneTurn, RunningSet, RunningSlot, TaskError};
use crate::value::{promise, Promise, Value};

#[path = "async_watch.rs"]
mod watch;

/// A sibling's stealable queues.
#[derive(Clone)]
pub(super) struct Sibling {
    id: u64,
    shared: Receiver<Box<dyn ErasedTask>>,
    urgent: Urgent,
    load: Arc<AtomicUsize>,
}

/// The pool's async workers' stealable queues (shared by its `AsyncKind`).
pub(super) type Siblings = Arc<RwLock<Vec<Sibling>>>;

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// How many times a worker that ran dry yields its thread, looking for a task, before it sleeps
/// (see `Side::linger`).
const LINGER_YIELDS: usize = 8;

/// What the backend (the pool's side) and the worker's loop share.
struct Shared {
    fin: Arc<Finisher>,
    /// The future running a blocking task, if one runs (it holds the thread).
    running: Arc<RunningSlot>,
    /// The async tasks running.
    set: Arc<RunningSet>,
    wake: Notify,
    /// The loop found nothing to do and is about to wait: a submit must ring `wake`. While it is
    /// false the loop will look at the queues again by itself, and submits skip the ring (a
    /// futex wake-up of the thread, most of the time).
    sleeping: AtomicBool,
    abort: AtomicBool,
    /// The abort has settled every value of the futures that were running (set after `abort`).
    aborted: AtomicBool,
    /// While the loop polls its futures: when that poll began (ns since `base`, plus 1); 0
    /// while it waits. A future that blocks the thread keeps it set.
    polling_since: AtomicU64,
    base: Instant,
    ended: AtomicBool,
}

/// An async worker: its queues and the thread (or arbiter) that runs them.
pub(crate) struct AsyncWorker {
    pinned: Sender<Msg>,
    pinned_rx: Receiver<Msg>,
    shared_tx: Sender<Box<dyn ErasedTask>>,
    shared_rx: Receiver<Box<dyn ErasedTask>>,
    urgent: Urgent,
    load: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    exit: Promise<Result<(), TaskError>>,
    done: Mutex<Option<Value<(), TaskError>>>,
    siblings: Siblings,
    id: u64,
}

/// The loop's side, on the worker's thread.
struct Side {
    me: Sibling,
    pinned: Receiver<Msg>,
    siblings: Siblings,
    shared: Arc<Shared>,
    limit: usize,
    turn: Cell<LaneTurn>,
}

enum Take {
    Task(Box<dyn ErasedTask>, Arc<AtomicUsize>),
    Stop,
}

impl AsyncWorker {
    /// Starts a worker running up to `in_flight` tasks at once (on an actix arbiter if
    /// `arbiters`), stealing from and stolen from by `siblings`.
    pub(super) fn spawn(
        fin: Arc<Finisher>,
        load: Arc<AtomicUsize>,
        (in_flight, arbiters, siblings): (usize, bool, &Siblings),
    ) -> std::io::Result<Self> {
        let (pinned, pinned_rx) = crossbeam_channel::unbounded();
        let (shared_tx, shared_rx) = crossbeam_channel::unbounded();
        let (exit, done) = promise::<(), TaskError>();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed) as u64;
        let me = Sibling {
            id,
            shared: shared_rx.clone(),
            urgent: Urgent::new(),
            load: load.clone(),
        };
        let shared = Arc::new(Shared {
            fin: fin.clone(),
            running: Arc::default(),
            set: Arc::default(),
            wake: Notify::new(),
            sleeping: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            polling_since: AtomicU64::new(0),
            base: Instant::now(),
            ended: AtomicBool::new(false),
        });
        let side = Side {
            me: me.clone(),
            pinned: pinned_rx.clone(),
            siblings: siblings.clone(),
            shared: shared.clone(),
            limit: in_flight,
            turn: Cell::new(LaneTurn::default()),
        };
        let exited = exit.share();
        let name = fin.worker().as_str();
        let name = format!("circuits-async-{}", &name[..8.min(name.len())]);
        if arbiters {
            let arbiter = actix::Arbiter::new();
            let started = arbiter.spawn_fn(move || {
                actix::spawn(async move {
                    side.serve().await;
                    exited.complete(Ok(()));
                    actix::Arbiter::current().stop();
                });
            });
            if !started {
                return Err(std::io::Error::other("the worker's arbiter did not start"));
            }
        } else {
            std::thread::Builder::new().name(name).spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build();
                match rt {
                    Ok(rt) => rt.block_on(side.serve()),
                    Err(e) => tracing::error!(%e, "an async worker's runtime did not start"),
                }
                exited.complete(Ok(()));
            })?;
        }
        let urgent = me.urgent.clone();
        siblings.write().unwrap_or_else(|p| p.into_inner()).push(me);
        Ok(AsyncWorker {
            pinned,
            pinned_rx,
            shared_tx,
            shared_rx,
            urgent,
            load,
            shared,
            exit,
            done: Mutex::new(Some(done)),
            siblings: siblings.clone(),
            id,
        })
    }
}

impl Side {
    async fn serve(self) {
        let mut running: FuturesUnordered<LocalBoxFuture<'static, ()>> = FuturesUnordered::new();
        let mut stopping = false;
        loop {
            if self.shared.abort.load(Ordering::Acquire) {
                // The futures are dropped here, once the abort has settled their values: a
                // future dropped first drops its task's last promise, which would resolve the
                // value `Abandoned` instead of `Cancelled`. (The aborting thread is a few
                // settles away.)
                while !self.shared.aborted.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                break;
            }
            while running.len() < self.limit {
                match self.take() {
                    Some(Take::Task(task, load)) => running.push(self.start(task, load)),
                    Some(Take::Stop) => stopping = true,
                    None => break,
                }
            }
            if running.is_empty() {
                if stopping {
                    break; // nothing queued (there was room) and nothing running
                }
                if self.linger() {
                    continue;
                }
                if self.about_to_sleep(true) {
                    self.shared.wake.notified().await;
                    self.shared.sleeping.store(false, Ordering::Relaxed);
                }
                continue;
            }
            let room = running.len() < self.limit;
            let watched = self.shared.fin.stuck.get().is_some();
            let next = Drain {
                running: &mut running,
                budget: self.limit,
                side: watched.then_some(&*self.shared),
                abort: &self.shared.abort,
            };
            let rung = std::pin::pin!(self.shared.wake.notified());
            let mut wait = std::pin::pin!(select(next, rung));
            // One poll first: most of the time futures end or a task is queued already, and the
            // worker never announces that it sleeps.
            if std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx).is_ready())).await {
                continue;
            }
            if self.about_to_sleep(room) {
                let _ = wait.await;
                self.shared.sleeping.store(false, Ordering::Relaxed);
            }
        }
        drop(running);
        self.shared.ended.store(true, Ordering::Release);
        self.siblings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| s.id != self.me.id);
    }

    /// Whether a task is queued for this worker.
    fn queued(&self) -> bool {
        !self.pinned.is_empty()
            || !self.me.shared.is_empty()
            || self.me.urgent.queued.load(Ordering::Relaxed) > 0
    }

    /// Before the loop sleeps with nothing to run: yields the thread a few times, looking at its
    /// queues after each, and says whether a task came. A submitter that keeps many tasks in
    /// flight refills the queue a moment after the worker drained it; finding the task here
    /// spares the submitter a wake-up (a futex call and a context switch, the largest cost per
    /// task in S11) and costs an idle worker a few `sched_yield`s each time it runs dry.
    fn linger(&self) -> bool {
        (0..LINGER_YIELDS).any(|_| {
            std::thread::yield_now();
            self.queued()
        })
    }

    /// Says the loop is about to wait, then looks at its queues once more (a submit that did not
    /// see the flag queued its task before this look; see `AsyncWorker::ring`). `false` when
    /// there is work to take after all (`room`: the loop may take some).
    fn about_to_sleep(&self, room: bool) -> bool {
        self.shared.sleeping.store(true, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
        if room && self.queued() {
            self.shared.sleeping.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn start(
        &self,
        task: Box<dyn ErasedTask>,
        load: Arc<AtomicUsize>,
    ) -> LocalBoxFuture<'static, ()> {
        let s = &self.shared;
        if s.abort.load(Ordering::Acquire) {
            task.fail(TaskError::Cancelled, &s.fin);
            load.fetch_sub(1, Ordering::Relaxed);
            return Box::pin(std::future::ready(()));
        }
        let set: Arc<dyn crate::task::Registry> = s.set.clone();
        task.run_async(&s.fin, &s.running, set, Some(load))
    }

    /// The next task: by lane turn while `High`/`Low` hold any, else own pinned (or the stop),
    /// own shared, then a sibling's shared queue (its highest lane first).
    fn take(&self) -> Option<Take> {
        let own = &self.me.load;
        if self.me.urgent.queued.load(Ordering::Acquire) > 0 {
            let urgent = &self.me.urgent;
            if let Some(next) = urgent.next_by_turn(&self.turn, &self.pinned, &self.me.shared) {
                return Some(match next {
                    Some(t) => Take::Task(t, own.clone()),
                    None => Take::Stop,
                });
            }
        }
        match self.pinned.try_recv() {
            Ok(Msg::Run(t)) => return Some(Take::Task(t, own.clone())),
            Ok(Msg::Stop) => return Some(Take::Stop),
            Err(_) => {}
        }
        if let Ok(t) = self.me.shared.try_recv() {
            return Some(Take::Task(t, own.clone()));
        }
        let siblings = self.siblings.read().unwrap_or_else(|p| p.into_inner());
        let victim = siblings
            .iter()
            .filter(|s| s.id != self.me.id && (!s.shared.is_empty() || s.urgent.has_shared()))
            .max_by_key(|s| s.shared.len())?;
        let task = victim.urgent.steal(&victim.shared)?;
        Some(Take::Task(task, victim.load.clone()))
    }
}

/// Polls the running futures until none is ready or `budget` have ended; ready once at least one
/// ended (or none is left). So the futures that end at once end before the loop takes more tasks:
/// one ending per turn of the loop kept as many taken tasks waiting behind it as the worker has
/// room for, where no sibling could steal them. (The set may still give way with futures ready,
/// after it polled many: the next turn takes them.)
struct Drain<'a> {
    running: &'a mut FuturesUnordered<LocalBoxFuture<'static, ()>>,
    budget: usize,
    /// For the blocking watchdog, when the pool has one.
    side: Option<&'a Shared>,
    abort: &'a AtomicBool,
}

impl Future for Drain<'_> {
    type Output = usize;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let this = &mut *self;
        let mut ended = 0;
        while ended < this.budget {
            // An abort ends the drain: the loop's top ends the worker, and a blocking task taken
            // but not started must not run after the abort.
            if this.abort.load(Ordering::Acquire) {
                return Poll::Ready(ended);
            }
            // Each poll of the set is a window of its own for the watchdog: it returns at the
            // first future that ends, so a run of short blocking tasks is not taken for one
            // that holds the thread.
            let mut next = Watched {
                inner: this.running.next(),
                side: this.side,
            };
            match Pin::new(&mut next).poll(cx) {
                Poll::Ready(Some(())) => ended += 1,
                Poll::Ready(None) => return Poll::Ready(ended),
                Poll::Pending => break,
            }
        }
        if ended > 0 {
            Poll::Ready(ended)
        } else {
            Poll::Pending
        }
    }
}

impl AsyncWorker {
    /// Wakes the loop for a task just queued, if it sleeps or is about to (the fence pairs with
    /// the one in `Side::about_to_sleep`: either the loop sees the task, or this sees the flag).
    fn ring(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        let sleeping = &self.shared.sleeping;
        if sleeping.load(Ordering::Relaxed) && sleeping.swap(false, Ordering::AcqRel) {
            self.shared.wake.notify_one();
        }
    }
}

impl Backend for AsyncWorker {
    fn submit(&self, task: Box<dyn ErasedTask>, pinned: bool) -> Result<(), Box<dyn ErasedTask>> {
        let sent = if let Some(side) = Urgent::side(task.priority()) {
            self.urgent.push(task, side, pinned)
        } else if pinned {
            self.pinned.send(Msg::Run(task)).map_err(|e| match e.0 {
                Msg::Run(t) => t,
                Msg::Stop => unreachable!("submit sends only Run"),
            })
        } else {
            self.shared_tx.send(task).map_err(|e| e.0)
        };
        if sent.is_ok() {
            self.ring();
        }
        sent
    }

    fn shutdown(&self, how: Shutdown) {
        let s = &self.shared;
        if how == Shutdown::Abort {
            // Every value resolves now: the running ones (their futures are dropped by the loop)
            // and the queued ones.
            s.abort.store(true, Ordering::Release);
            s.set.fail_all(TaskError::Cancelled, &s.fin);
            s.running.fail(TaskError::Cancelled, &s.fin);
            s.aborted.store(true, Ordering::Release);
            let queued = self
                .shared_rx
                .try_iter()
                .chain(self.pinned_rx.try_iter().filter_map(|m| match m {
                    Msg::Run(t) => Some(t),
                    Msg::Stop => None,
                }))
                .chain(self.urgent.drain(true, true));
            for task in queued {
                task.fail(TaskError::Cancelled, &s.fin);
                self.load.fetch_sub(1, Ordering::Relaxed);
            }
            self.exit.complete(Ok(()));
        }
        let _ = self.pinned.send(Msg::Stop);
        s.wake.notify_one();
    }

    fn finished(&self) -> Value<(), TaskError> {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        done.take().unwrap_or_else(|| Value::ready(Ok(())))
    }

    fn retire(&self) -> Vec<Box<dyn ErasedTask>> {
        let mut moved = self.urgent.drain(true, false);
        moved.extend(self.shared_rx.try_iter());
        let _ = self.pinned.send(Msg::Stop);
        self.shared.wake.notify_one();
        moved
    }

    fn running(&self) -> usize {
        self.shared.set.len() + usize::from(self.shared.running.lock().is_some())
    }

    fn probe(&self) -> super::info::Probe {
        let oldest = [self.shared.set.oldest(), self.shared.running.peek()]
            .into_iter()
            .flatten()
            .min_by_key(|(id, since)| (*since, id.0));
        super::info::Probe {
            mode: super::info::WorkerMode::Async,
            pid: None,
            state: None,
            running: self.running(),
            task: oldest,
        }
    }

    fn attach(&self, _: Arc<dyn super::PoolLink>, _: std::sync::Weak<super::WorkerSlot>) {
        watch_for_blocking(&self.shared); // the pool set its stuck hook, if it has one
    }
}

impl Drop for AsyncWorker {
    fn drop(&mut self) {
        self.siblings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| s.id != self.id);
        // A worker dropped without a stop (its pool went away) drains and ends.
        let _ = self.pinned.send(Msg::Stop);
        self.shared.wake.notify_one();
    }
}
