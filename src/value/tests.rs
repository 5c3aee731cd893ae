//! Tests of `Value`: the first-poll spin, taking, abandoning, racing resolvers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use super::*;
use crate::task::TaskError;

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A thread resolving `promise` with `result` that stops inside `first`, having claimed the value
/// and not yet published it; returned once it is held there, with the sender that lets it go on.
/// Its join says whether it won.
fn held_resolver(
    promise: Promise<Result<u32, TaskError>>,
    result: Result<u32, TaskError>,
) -> (std::thread::JoinHandle<bool>, std::sync::mpsc::Sender<()>) {
    let (claimed_tx, claimed) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel::<()>();
    let resolver = std::thread::spawn(move || {
        promise.complete_then(result, || {
            claimed_tx.send(()).unwrap();
            go_rx.recv().unwrap();
        })
    });
    claimed.recv().unwrap();
    (resolver, go)
}

fn poll(value: &mut Value<u32, TaskError>, flag: &Arc<Flag>) -> Poll<Result<u32, TaskError>> {
    let waker = Waker::from(flag.clone());
    Pin::new(value).poll(&mut Context::from_waker(&waker))
}

#[test]
fn a_first_poll_that_spins_in_vain_leaves_its_waker_and_only_the_first_poll_spins() {
    let (promise, value) = promise::<u32, TaskError>();
    let mut value = value.spin_first(true);
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    // Nothing resolves it while the first poll looks: it gives up after its bound, with its
    // waker left (the resolution right after must wake it).
    assert!(poll(&mut value, &flag).is_pending());
    assert!(
        matches!(value.inner, Inner::Slot(_, false)),
        "only the first poll spins"
    );
    assert!(promise.complete(Ok(7)));
    assert!(
        flag.0.load(Ordering::SeqCst),
        "the resolution wakes the waiting task"
    );
    assert!(matches!(poll(&mut value, &flag), Poll::Ready(Ok(7))));
}

#[test]
fn the_spin_takes_a_result_that_is_there_and_gives_up_after_its_bound_otherwise() {
    let (promise, value) = promise::<u32, TaskError>();
    let Inner::Slot(slot, _) = &value.inner else {
        unreachable!("a promised value has a slot")
    };
    let started = Instant::now();
    // SAFETY (here and below): this test is the value's one waiting side.
    assert!(matches!(
        unsafe { Value::<u32, TaskError>::spin(slot) },
        Took::Pending
    ));
    assert!(
        started.elapsed() >= FIRST_POLL_SPIN,
        "it looked for its whole bound"
    );
    assert!(promise.complete(Ok(3)));
    assert!(matches!(
        unsafe { Value::<u32, TaskError>::spin(slot) },
        Took::Got(Ok(3))
    ));
    assert_eq!(slot.describe(), "taken", "taken out of the slot");
}

#[test]
fn a_result_being_written_reads_as_pending_until_published_and_the_spin_never_waits_for_it() {
    let (promise, mut value) = promise::<u32, TaskError>();
    let Inner::Slot(slot, _) = &value.inner else {
        unreachable!("a promised value has a slot")
    };
    let slot = slot.clone();
    // The resolver claims the value, then stops inside `first` (before publishing).
    let (resolver, go) = held_resolver(promise, Ok(5));
    // SAFETY: this test is the value's one waiting side.
    assert!(matches!(
        unsafe { Value::<u32, TaskError>::spin(&slot) },
        Took::Pending
    ));
    assert!(!value.is_ready());
    assert!(value.try_take().is_none());
    assert_eq!(format!("{value:?}"), "Value { state: \"pending\" }");
    go.send(()).unwrap();
    assert!(resolver.join().unwrap(), "the only resolver wins");
    assert!(matches!(value.try_take(), Some(Ok(5))));
}

#[test]
fn a_value_whose_promises_all_went_away_reads_as_abandoned_every_time() {
    let (promise, mut value) = promise::<u32, TaskError>();
    let second = promise.share();
    drop(promise);
    assert!(!value.is_ready(), "one promise is left");
    drop(second);
    assert!(value.is_ready());
    let Inner::Slot(slot, _) = &value.inner else {
        unreachable!("a promised value has a slot")
    };
    // SAFETY: this test is the value's one waiting side.
    assert!(matches!(
        unsafe { Value::<u32, TaskError>::spin(slot) },
        Took::Abandoned
    ));
    assert!(matches!(value.try_take(), Some(Err(TaskError::Abandoned))));
    assert_eq!(format!("{value:?}"), "Value { state: \"abandoned\" }");
}

#[test]
fn a_taken_value_lets_go_of_its_slot_and_the_waker_left_there() {
    let (promise, mut value) = promise::<u32, TaskError>();
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    assert!(poll(&mut value, &flag).is_pending());
    assert_eq!(Arc::strong_count(&flag), 2, "the slot holds the waker");
    assert!(promise.complete(Ok(4)));
    drop(promise);
    assert!(flag.0.load(Ordering::SeqCst));
    assert!(matches!(poll(&mut value, &flag), Poll::Ready(Ok(4))));
    assert_eq!(
        Arc::strong_count(&flag),
        1,
        "the slot, and the waker in it, went with the taking"
    );
    assert_eq!(format!("{value:?}"), "Value { state: \"taken\" }");
    assert!(value.is_ready());
}

#[test]
fn abandoning_wakes_the_waiter_and_a_panic_in_first_still_publishes_the_result() {
    let (only, mut value) = promise::<u32, TaskError>();
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    assert!(poll(&mut value, &flag).is_pending());
    drop(only);
    assert!(flag.0.load(Ordering::SeqCst), "the abandoning woke it");
    assert!(matches!(
        poll(&mut value, &flag),
        Poll::Ready(Err(TaskError::Abandoned))
    ));

    let (promise, mut value) = promise::<u32, TaskError>();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        promise.complete_then(Ok(5), || panic!("a count that fails"))
    }));
    assert!(panicked.is_err());
    assert!(matches!(value.try_take(), Some(Ok(5))), "published anyway");
}

#[test]
fn a_losing_resolver_returns_only_once_the_winner_has_published() {
    let (promise, mut value) = promise::<u32, TaskError>();
    let late = promise.share();
    let (winner, go) = held_resolver(promise, Ok(1));
    let (lost_tx, lost) = std::sync::mpsc::channel();
    let loser = std::thread::spawn(move || {
        let won = late.complete(Ok(2));
        lost_tx.send(()).unwrap();
        won
    });
    // The winner is held inside `first`: the loser cannot return, however long this waits.
    assert!(
        lost.recv_timeout(Duration::from_millis(200)).is_err(),
        "the loser returned before the winner published"
    );
    assert!(value.try_take().is_none());
    go.send(()).unwrap();
    assert!(winner.join().unwrap());
    assert!(!loser.join().unwrap());
    assert!(matches!(value.try_take(), Some(Ok(1))));
}
