//! Helpers shared by the integration tests:
//!
//! * time: [`BOUND`] for every wait ([`bounded`]), and [`eventually`] for the few conditions that
//!   have no event to await (/proc, thread lists, an actor's end);
//! * events: [`collect`] a pool's result events per task, [`listen`] to one event type, a
//!   [`Record`] that actors append to and tests await;
//! * tasks: a [`Gate`] that blocked tasks wait on;
//! * processes: /proc look-ups for the no-orphans checks;
//! * the runner of the `harness = false` targets: [`run_main`], with [`async_tests!`] and
//!   [`sync_tests!`].
//!
//! Nothing here sleeps in a loop except [`eventually`].

#![allow(dead_code)] // each test file uses the part it needs

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use circuits::prelude::*;
use circuits::{Event, SubscriptionId, TaskId, TaskOutput};
use tokio::sync::{mpsc, oneshot, watch};

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// The longest any single wait in a test may take.
pub const BOUND: Duration = Duration::from_secs(60);

/// Awaits `f`, failing the test if it takes longer than [`BOUND`].
pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("the test went past its time bound")
}

/// Polls `done` every few milliseconds until it holds or `secs` seconds pass; returns its last
/// answer. The one polling loop of the tests: only for conditions with no event to await (a
/// process's end in /proc, this process's threads, an actor's end).
pub async fn eventually(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if done() {
            return true;
        }
        if Instant::now() > until {
            return done();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// [`eventually`] for a plain thread outside any runtime (a test whose System has ended).
///
/// # Panics
///
/// Inside a Tokio runtime (use [`eventually`] there).
pub fn eventually_blocking(secs: u64, done: impl FnMut() -> bool) -> bool {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime for the wait starts")
        .block_on(eventually(secs, done))
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// One result event of a task, with the channel of the worker it names.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen<R> {
    /// `TaskSuccess`: the worker and the value.
    Success(Channel, R),
    /// `TaskFailure`: the worker and the error.
    Failure(Channel, TaskError),
    /// `TaskComplete`: the worker and whether the task succeeded.
    Complete(Channel, bool),
}

impl<R> Seen<R> {
    /// The worker the event names.
    pub fn worker(&self) -> &Channel {
        match self {
            Seen::Success(w, _) | Seen::Failure(w, _) | Seen::Complete(w, _) => w,
        }
    }
}

/// The events seen so far, per task, in the order they arrived.
pub type SeenPerTask<R> = HashMap<TaskId, Vec<Seen<R>>>;

/// Forwards a pool's result events into the channel a [`Collector`] reads.
struct Forwarder<R>(mpsc::UnboundedSender<(TaskId, Seen<R>)>);

impl<R: TaskOutput> Actor for Forwarder<R> {
    type Context = Context<Self>;
}
impl<R: TaskOutput> Handler<TaskSuccess<R>> for Forwarder<R> {
    type Result = ();
    fn handle(&mut self, e: TaskSuccess<R>, _: &mut Context<Self>) {
        let _ = self.0.send((e.id, Seen::Success(e.worker, e.value)));
    }
}
impl<R: TaskOutput> Handler<TaskFailure> for Forwarder<R> {
    type Result = ();
    fn handle(&mut self, e: TaskFailure, _: &mut Context<Self>) {
        let _ = self.0.send((e.id, Seen::Failure(e.worker, e.error)));
    }
}
impl<R: TaskOutput> Handler<TaskComplete> for Forwarder<R> {
    type Result = ();
    fn handle(&mut self, e: TaskComplete, _: &mut Context<Self>) {
        let _ = self.0.send((e.id, Seen::Complete(e.worker, e.ok)));
    }
}

/// A pool's result events for tasks of type `R`, as they arrive: see [`collect`].
pub struct Collector<R> {
    rx: mpsc::UnboundedReceiver<(TaskId, Seen<R>)>,
    seen: SeenPerTask<R>,
    completed: usize,
    subscriptions: Vec<SubscriptionId>,
}

/// Subscribes a collector to `TaskSuccess<R>`, `TaskFailure` and `TaskComplete` on the pool's
/// channel. Events of tasks that ended before this call are not seen.
pub fn collect<R: TaskOutput>(pool: &PoolHandle) -> Collector<R> {
    let (tx, rx) = mpsc::unbounded_channel();
    let f = Forwarder(tx).start();
    let (bus, ch) = (pool.bus(), pool.channel());
    let subscriptions = vec![
        bus.subscribe(ch, f.clone().recipient::<TaskSuccess<R>>())
            .expect("the collector subscribes to TaskSuccess"),
        bus.subscribe(ch, f.clone().recipient::<TaskFailure>())
            .expect("the collector subscribes to TaskFailure"),
        bus.subscribe(ch, f.recipient::<TaskComplete>())
            .expect("the collector subscribes to TaskComplete"),
    ];
    Collector {
        rx,
        seen: HashMap::new(),
        completed: 0,
        subscriptions,
    }
}

impl<R: TaskOutput> Collector<R> {
    fn record(&mut self, (id, s): (TaskId, Seen<R>)) {
        if matches!(s, Seen::Complete(..)) {
            self.completed += 1;
        }
        self.seen.entry(id).or_default().push(s);
    }

    async fn receive(&mut self) {
        let e = self
            .rx
            .recv()
            .await
            .expect("the collector's actor stopped (unsubscribed?)");
        self.record(e);
    }

    /// Awaits events (within [`BOUND`]) until `n` `TaskComplete`s in all have arrived since the
    /// collector started; returns every event seen so far, per task.
    pub async fn until_complete(&mut self, n: usize) -> SeenPerTask<R> {
        bounded(async {
            while self.completed < n {
                self.receive().await;
            }
        })
        .await;
        self.seen.clone()
    }

    /// Awaits the next `n` `TaskComplete`s (within [`BOUND`]); returns the events of those `n`
    /// tasks.
    pub async fn next_n(&mut self, n: usize) -> SeenPerTask<R> {
        let mut done = Vec::with_capacity(n);
        bounded(async {
            while done.len() < n {
                let (id, s) = self
                    .rx
                    .recv()
                    .await
                    .expect("the collector's actor stopped (unsubscribed?)");
                if matches!(s, Seen::Complete(..)) {
                    done.push(id);
                }
                self.record((id, s));
            }
        })
        .await;
        done.into_iter()
            .map(|id| (id, self.seen[&id].clone()))
            .collect()
    }

    /// Every event seen so far, per task, after taking in those that arrived (without waiting).
    pub fn seen(&mut self) -> SeenPerTask<R> {
        while let Ok(e) = self.rx.try_recv() {
            self.record(e);
        }
        self.seen.clone()
    }

    /// The collector's three subscriptions.
    pub fn subscriptions(&self) -> &[SubscriptionId] {
        &self.subscriptions
    }

    /// Ends the collector's subscriptions (each must still exist).
    pub fn unsubscribe(&self, bus: &Bus) {
        for s in &self.subscriptions {
            assert!(bus.unsubscribe(*s), "the collector's subscription {s:?}");
        }
    }
}

/// Checks that tasks 1..=n, and no other, each have exactly one terminal event followed by one
/// `TaskComplete` that agrees with it (same worker, `ok` as the terminal event says); returns the
/// terminal events.
pub fn one_outcome_each<R: Clone + Debug>(
    seen: &SeenPerTask<R>,
    n: usize,
) -> HashMap<TaskId, Seen<R>> {
    let mut terminal = HashMap::with_capacity(n);
    for i in 1..=n as u64 {
        let s = seen
            .get(&TaskId(i))
            .unwrap_or_else(|| panic!("task {i} has no events"));
        match &s[..] {
            [t @ Seen::Success(w, _), Seen::Complete(c, true)]
            | [t @ Seen::Failure(w, _), Seen::Complete(c, false)]
                if w == c =>
            {
                terminal.insert(TaskId(i), t.clone());
            }
            other => panic!("task {i}: {other:?}"),
        }
    }
    assert_eq!(seen.len(), n, "one entry per task id, ids 1..={n}");
    terminal
}

/// Forwards each event of one type into the channel a [`Listener`] reads.
struct Forward<E>(mpsc::UnboundedSender<E>);

impl<E: 'static> Actor for Forward<E> {
    type Context = Context<Self>;
}
impl<E: Event + Message<Result = ()>> Handler<E> for Forward<E> {
    type Result = ();
    fn handle(&mut self, e: E, _: &mut Context<Self>) {
        let _ = self.0.send(e);
    }
}

/// The events of one type fired on one channel, as they arrive: see [`listen`].
pub struct Listener<E> {
    rx: mpsc::UnboundedReceiver<E>,
    subscription: SubscriptionId,
}

/// Subscribes a listener to `E` on `channel`. Events fired before this call are not seen.
pub fn listen<E: Event + Message<Result = ()>>(
    bus: &Bus,
    channel: impl Into<Channel>,
) -> Listener<E> {
    let (tx, rx) = mpsc::unbounded_channel();
    let subscription = bus
        .subscribe(channel, Forward(tx).start().recipient::<E>())
        .expect("the listener subscribes");
    Listener { rx, subscription }
}

impl<E: Event + Message<Result = ()>> Listener<E> {
    /// The next event (within [`BOUND`]).
    pub async fn next(&mut self) -> E {
        bounded(self.rx.recv())
            .await
            .expect("the listener's actor stopped")
    }

    /// Awaits events (within [`BOUND`]) until one satisfies `done`; returns it and every event
    /// before it.
    pub async fn until(&mut self, mut done: impl FnMut(&E) -> bool) -> Vec<E> {
        bounded(async {
            let mut seen = Vec::new();
            loop {
                let e = self.rx.recv().await.expect("the listener's actor stopped");
                let last = done(&e);
                seen.push(e);
                if last {
                    return seen;
                }
            }
        })
        .await
    }

    /// An event already received, if any (without waiting).
    pub fn try_next(&mut self) -> Result<E, mpsc::error::TryRecvError> {
        self.rx.try_recv()
    }

    /// The listener's subscription.
    pub fn subscription(&self) -> SubscriptionId {
        self.subscription
    }
}

/// A list that handlers append to and tests await (a watch channel: no polling).
pub struct Record<T>(Arc<watch::Sender<Vec<T>>>);

impl<T> Clone for Record<T> {
    fn clone(&self) -> Self {
        Record(self.0.clone())
    }
}

impl<T: Clone> Default for Record<T> {
    fn default() -> Self {
        Record(Arc::new(watch::channel(Vec::new()).0))
    }
}

impl<T: Clone> Record<T> {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `item` and wakes whoever waits.
    pub fn push(&self, item: T) {
        self.0.send_modify(|v| v.push(item));
    }

    /// What the record holds now.
    pub fn get(&self) -> Vec<T> {
        self.0.borrow().clone()
    }

    /// Awaits (within [`BOUND`]) the record satisfying `done`; returns what it holds then.
    pub async fn wait_for(&self, mut done: impl FnMut(&[T]) -> bool) -> Vec<T> {
        let mut rx = self.0.subscribe();
        let held = bounded(rx.wait_for(|v| done(v.as_slice())))
            .await
            .expect("the record's sender lives as long as the record");
        held.to_vec()
    }

    /// Awaits (within [`BOUND`]) at least `n` items; returns what the record holds then.
    pub async fn at_least(&self, n: usize) -> Vec<T> {
        self.wait_for(|v| v.len() >= n).await
    }
}

// ---------------------------------------------------------------------------------------------
// Gated tasks
// ---------------------------------------------------------------------------------------------

/// A gate that tasks block on (a condition variable, no polling) until the test opens it.
/// Dropping it opens it too (on purpose, or when a failing test unwinds), so no worker thread is
/// left blocked.
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Default for Gate {
    fn default() -> Self {
        Gate(Arc::new((Mutex::new(false), Condvar::new())))
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens the gate: every task waiting on it goes on, and later ones do not wait.
    pub fn open(&self) {
        let (open, cv) = &*self.0;
        *open.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
    }

    /// A thread-mode task that blocks until the gate opens, then answers `answer`.
    pub fn task<R: TaskOutput>(&self, answer: R) -> Task<R> {
        self.task_started(answer).0
    }

    /// As [`task`](Self::task), with a receiver that resolves when the task starts running.
    pub fn task_started<R: TaskOutput>(&self, answer: R) -> (Task<R>, oneshot::Receiver<()>) {
        let (started_tx, started_rx) = oneshot::channel();
        let gate = self.0.clone();
        let task = Task::new(move || {
            let _ = started_tx.send(());
            let (open, cv) = &*gate;
            let guard = open.lock().unwrap_or_else(|p| p.into_inner());
            drop(
                cv.wait_while(guard, |open| !*open)
                    .unwrap_or_else(|p| p.into_inner()),
            );
            answer
        });
        (task, started_rx)
    }
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// The state letter and parent pid of `pid`, from /proc/<pid>/stat.
fn stat(pid: u32) -> Option<(char, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let mut rest = s[s.rfind(')')? + 2..].split(' ');
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The parent of `pid`, while `pid` exists.
pub fn parent(pid: u32) -> Option<u32> {
    stat(pid).map(|(_, ppid)| ppid)
}

/// Whether `pid` runs (a zombie nobody reaped yet runs nothing).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// The live child processes of `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
                .filter(|p| stat(*p).is_some_and(|(s, pp)| pp == parent && s != 'Z' && s != 'X'))
                .collect()
        })
        .unwrap_or_default()
}

/// The live child processes of this process.
pub fn children() -> Vec<u32> {
    children_of(std::process::id())
}

/// Waits (up to 10 s, polling /proc: a child's start has no event) until this process has `n`
/// live children, and returns them (fewer or more if the deadline passed).
pub async fn await_children(n: usize) -> Vec<u32> {
    eventually(10, || children().len() == n).await;
    children()
}

/// Waits (up to 10 s, polling /proc: a child's end has no event) until this process has no
/// child process; returns those left.
pub async fn wait_for_no_children() -> Vec<u32> {
    eventually(10, || children().is_empty()).await;
    children()
}

/// Waits (up to 10 s, polling /proc) for `pid` to end; returns whether it did.
pub async fn ended(pid: u32) -> bool {
    eventually(10, || !alive(pid)).await
}

// ---------------------------------------------------------------------------------------------
// The runner of the `harness = false` targets
// ---------------------------------------------------------------------------------------------

/// An async test: run in a fresh actix `System`.
pub type AsyncTest = fn() -> Pin<Box<dyn Future<Output = ()>>>;

/// A test that runs on the main thread as it is (it makes its own System, or none).
pub type SyncTest = fn();

/// `async_tests![a, b]`: the async tests `a` and `b` (async fns), named as their functions.
#[allow(unused_macros)] // not every target has async tests
macro_rules! async_tests {
    ($($name:ident),* $(,)?) => {{
        let tests: Vec<(&'static str, $crate::common::AsyncTest)> =
            vec![$((stringify!($name), || Box::pin($name()))),*];
        tests
    }};
}
#[allow(unused_imports)] // not every target has async tests
pub(crate) use async_tests;

/// `sync_tests![a, b]`: the plain tests `a` and `b` (fns), named as their functions.
#[allow(unused_macros)] // not every target has plain tests
macro_rules! sync_tests {
    ($($name:ident),* $(,)?) => {{
        let tests: Vec<(&'static str, $crate::common::SyncTest)> =
            vec![$((stringify!($name), $name as $crate::common::SyncTest)),*];
        tests
    }};
}
#[allow(unused_imports)] // not every target has plain tests
pub(crate) use sync_tests;

/// The `main` of a `harness = false` target, after its own `circuits::init` and hooks: runs the
/// async tests (each in a fresh actix `System`), then the plain ones, those whose name contains
/// the first argument if one is given (one not starting with `-`). Prints
/// `test NAME ... ok (N.N s)` or `test NAME ... FAILED` for each, then `TARGET: N passed, M
/// failed` (CI reads that line), and exits with status 1 if any failed.
pub fn run_main(
    target: &str,
    async_tests: Vec<(&'static str, AsyncTest)>,
    sync_tests: Vec<(&'static str, SyncTest)>,
) {
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let (mut passed, mut failed) = (0, 0);
    let mut run = |name: &str, f: &dyn Fn()| {
        let started = Instant::now();
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(()) => {
                println!(
                    "test {name} ... ok ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    };
    for (name, t) in async_tests.into_iter().filter(|(n, _)| wanted(n)) {
        run(name, &|| actix::System::new().block_on(t()));
    }
    for (name, t) in sync_tests.into_iter().filter(|(n, _)| wanted(n)) {
        run(name, &t);
    }
    println!("\n{target}: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

/// The job most process-mode tests run: squares its number. Each test binary registers it in its
/// own `circuits::init` (worker processes are that binary).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Square(pub u64);

impl Job for Square {
    const NAME: &'static str = "square";
    type Output = u64;
    fn run(self) -> u64 {
        self.0 * self.0
    }
}

/// Answers the process it runs in: a worker process's pid, or the test's in thread mode.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Pid;

impl Job for Pid {
    const NAME: &'static str = "pid";
    type Output = u32;
    fn run(self) -> u32 {
        std::process::id()
    }
}

/// A resizer that never acts within a test's time: the test resizes by hand.
pub fn resized_by_hand() -> circuits::Resizer {
    circuits::Resizer::default().interval(Duration::from_secs(3600))
}

/// `builder`'s pool of one to two workers, resized by hand only, started and grown to two; their
/// channels.
pub fn grown_to_two(builder: circuits::PoolBuilder) -> (PoolHandle, Channel, Channel) {
    let pool = builder.min(1).max(2).resizer(resized_by_hand()).start();
    assert_eq!(pool.resize(2), 2);
    let [w0, w1] = <[Channel; 2]>::try_from(pool.workers()).expect("two workers");
    (pool, w0, w1)
}

/// Shrinks a pool of `w0` and `w1` to one worker, which retires `w1` (the test made it the
/// less loaded).
pub fn retire_second(pool: &PoolHandle, w0: &Channel) {
    assert_eq!(pool.resize(1), 1);
    assert_eq!(
        pool.workers(),
        vec![w0.clone()],
        "the second worker retired"
    );
}

/// Aborts the worker process that runs it (registered, like [`Square`], by the binaries that use
/// it).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Crash;

impl Job for Crash {
    const NAME: &'static str = "crash";
    type Output = u32;
    fn run(self) -> u32 {
        std::process::abort()
    }
}

/// The values of the successes among `terminal` events, sorted (to compare with the values the
/// pushers got back).
pub fn success_values<R: Ord + Clone>(terminal: &HashMap<TaskId, Seen<R>>) -> Vec<R> {
    let mut values: Vec<R> = terminal
        .values()
        .filter_map(|s| match s {
            Seen::Success(_, v) => Some(v.clone()),
            _ => None,
        })
        .collect();
    values.sort_unstable();
    values
}
