//! Thread mode's per-worker state (`PoolBuilder::worker_state`, `circuits::with_worker_state`):
//! set up once per worker thread, seen by every task that thread runs, and a failing set-up is a
//! failed start under the bounded restart policy.

mod common;

use common::bounded;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration;

use circuits::prelude::*;
use circuits::StartStage;

/// Stands for a connection: which set-up made it, on which thread, and how often it was used.
struct Conn {
    id: usize,
    thread: ThreadId,
    uses: u64,
}

/// Uses the worker's connection: (which set-up made it, whether it was made on this very thread,
/// its uses so far).
fn use_conn() -> (usize, bool, u64) {
    circuits::with_worker_state(|c: &mut Conn| {
        c.uses += 1;
        (c.id, c.thread == std::thread::current().id(), c.uses)
    })
}

#[actix_rt::test]
async fn state_is_set_up_once_per_worker_and_every_task_sees_its_workers() {
    let setups = Arc::new(AtomicUsize::new(0));
    let counter = setups.clone();
    let pool = Pool::builder()
        .min(3)
        .worker_state(move || {
            Ok::<_, String>(Conn {
                id: counter.fetch_add(1, Ordering::SeqCst),
                thread: std::thread::current().id(),
                uses: 0,
            })
        })
        .start();
    // One task on each worker, so that every worker has surely started; then 300 balanced ones.
    let mut values = Vec::new();
    for w in pool.workers() {
        values.push(pool.push_to(&w, Task::new(use_conn)).expect("accepted"));
    }
    for _ in 0..300 {
        values.push(pool.push(Task::new(use_conn)).expect("accepted"));
    }
    let mut uses: HashMap<usize, Vec<u64>> = HashMap::new();
    for v in values {
        let (id, same_thread, n) = bounded(v).await.expect("the task ran");
        assert!(same_thread, "a task saw a state set up on another thread");
        uses.entry(id).or_default().push(n);
    }
    assert_eq!(setups.load(Ordering::SeqCst), 3, "one set-up per worker");
    assert_eq!(
        uses.len(),
        3,
        "each worker's state was used: {:?}",
        uses.keys()
    );
    // Each state was used by its own worker only, once per task: its counts are 1..=n.
    for (id, mut counts) in uses.clone() {
        counts.sort_unstable();
        let expected: Vec<u64> = (1..=counts.len() as u64).collect();
        assert_eq!(counts, expected, "state {id} was shared or set up twice");
    }
    assert_eq!(uses.values().map(Vec::len).sum::<usize>(), 303);
    bounded(pool.stop()).await;
    assert_eq!(setups.load(Ordering::SeqCst), 3);
}

#[actix_rt::test]
async fn a_task_asking_for_an_absent_state_fails_panicked_naming_the_type() {
    struct Missing;
    let pool = Pool::builder()
        .min(1)
        .worker_state(|| Ok::<_, String>(7u32))
        .start();
    let absent = pool.push(Task::new(|| {
        circuits::with_worker_state(|_: &mut Missing| 1u8)
    }));
    match bounded(absent.expect("accepted")).await {
        Err(TaskError::Panicked(m)) => {
            assert!(m.contains("no state of type"), "{m}");
            assert!(m.contains("Missing"), "the message names the type: {m}");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    // The worker lives on, its state intact; the optional form answers None.
    let both = pool.run(Task::new(|| {
        (
            circuits::try_with_worker_state(|_: &mut Missing| ()),
            circuits::with_worker_state(|n: &mut u32| *n),
        )
    }));
    assert_eq!(bounded(both).await, Ok((None, 7)));
    bounded(pool.stop()).await;
}

#[actix_rt::test]
async fn a_failing_set_up_fails_the_tasks_with_its_reason_after_bounded_tries() {
    let tries = Arc::new(AtomicUsize::new(0));
    let counter = tries.clone();
    let pool = Pool::builder()
        .min(1)
        .restart_backoff(Duration::from_millis(1), Duration::from_millis(20))
        .max_start_failures(3)
        .worker_state(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Err::<Conn, _>("database unreachable at db:5432")
        })
        .start();
    let worker = pool.workers().remove(0);
    let first = pool.push(Task::new(use_conn)).expect("accepted");
    match bounded(first).await {
        Err(TaskError::WorkerStartFailed {
            worker: w,
            stage,
            reason,
        }) => {
            assert_eq!(w, worker);
            assert_eq!(stage, StartStage::WorkerState);
            assert!(
                reason.contains("database unreachable at db:5432"),
                "{reason}"
            );
            assert!(
                reason.contains("Conn"),
                "the reason names the state: {reason}"
            );
        }
        other => panic!("expected WorkerStartFailed, got {other:?}"),
    }
    assert!(
        tries.load(Ordering::SeqCst) >= 3,
        "it tried up to the limit"
    );
    // Past the limit, a task given to it fails too (at once, or after the next try fails), and the
    // error's text says what failed.
    let second = bounded(pool.run(Task::new(use_conn))).await;
    let text = second.expect_err("no worker could run it").to_string();
    assert!(
        text.contains("could not be started (worker state)"),
        "{text}"
    );
    println!("  {text}");
    assert!(text.contains("database unreachable"), "{text}");
    bounded(pool.stop()).await;
}

#[actix_rt::test]
async fn a_set_up_that_fails_then_succeeds_runs_the_waiting_tasks() {
    let tries = Arc::new(AtomicUsize::new(0));
    let counter = tries.clone();
    let pool = Pool::builder()
        .min(1)
        .restart_backoff(Duration::from_millis(1), Duration::from_millis(20))
        .max_start_failures(5)
        .worker_state(move || match counter.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => Err("not yet".to_string()),
            n => Ok(Conn {
                id: n,
                thread: std::thread::current().id(),
                uses: 0,
            }),
        })
        .start();
    let values: Vec<_> = (0..10)
        .map(|_| pool.push(Task::new(use_conn)).expect("accepted"))
        .collect();
    let mut seen = HashSet::new();
    for v in values {
        let (id, same_thread, _) = bounded(v).await.expect("the third try set it up");
        assert!(same_thread);
        seen.insert(id);
    }
    assert_eq!(seen, HashSet::from([2]));
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    bounded(pool.stop()).await;
}

/// Says so when the thread that holds it ends (a thread-local's destructor runs at thread exit).
struct OnExit(Option<tokio::sync::oneshot::Sender<()>>);
impl Drop for OnExit {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}
thread_local! {
    static ON_EXIT: std::cell::RefCell<Option<OnExit>> = const { std::cell::RefCell::new(None) };
}

#[actix_rt::test]
async fn an_abort_during_a_failed_starts_back_off_cancels_the_waiting_task_and_ends_the_thread() {
    let tries = Arc::new(AtomicUsize::new(0));
    let counter = tries.clone();
    let (exit_tx, exited) = tokio::sync::oneshot::channel();
    let exit_tx = std::sync::Mutex::new(Some(exit_tx));
    let pool = Pool::builder()
        .min(1)
        // Long enough that only the abort can end the wait.
        .restart_backoff(Duration::from_secs(600), Duration::from_secs(600))
        .worker_state(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let tx = exit_tx.lock().unwrap().take();
            ON_EXIT.with(|g| *g.borrow_mut() = Some(OnExit(tx)));
            Err::<Conn, _>("down")
        })
        .start();
    let waiting = pool.push(Task::new(use_conn)).expect("accepted");
    bounded(pool.abort()).await;
    assert_eq!(bounded(waiting).await, Err(TaskError::Cancelled));
    bounded(exited)
        .await
        .expect("the worker thread left its back-off and ended");
    assert_eq!(
        tries.load(Ordering::SeqCst),
        1,
        "no second try after the abort"
    );
}

#[actix_rt::test]
async fn a_draining_stop_during_a_failed_start_ends_with_the_waiting_task_failed() {
    let pool = Pool::builder()
        .min(1)
        .restart_backoff(Duration::from_millis(1), Duration::from_millis(20))
        .max_start_failures(3)
        .worker_state(|| Err::<Conn, _>("down"))
        .start();
    let waiting = pool.push(Task::new(use_conn)).expect("accepted");
    // Stopped at once, before the tries reach the limit: the stop ends when the task fails.
    bounded(pool.stop()).await;
    match bounded(waiting).await {
        Err(TaskError::WorkerStartFailed { stage, .. }) => {
            assert_eq!(stage, StartStage::WorkerState)
        }
        other => panic!("expected WorkerStartFailed, got {other:?}"),
    }
}
