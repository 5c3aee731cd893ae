//! Tests of the value's slot: resolution, racing resolvers, wakers, drops.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use super::{Promise, Slot, Took};

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

type Cell = Slot<Result<Counted, ()>>;

fn pair() -> (Promise<Result<Counted, ()>>, Arc<Cell>) {
    let slot = Arc::new(Slot::new());
    (Promise { slot: slot.clone() }, slot)
}

struct Flag(AtomicBool);
impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}
fn flag() -> (Arc<Flag>, Waker) {
    let f = Arc::new(Flag(AtomicBool::new(false)));
    (f.clone(), Waker::from(f))
}

#[test]
fn the_first_resolver_wins_and_every_result_is_dropped_exactly_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (promise, slot) = pair();
    let late = promise.share();
    let mut firsts = 0;
    assert!(promise.complete_then(Ok(Counted(drops.clone())), || firsts += 1));
    assert!(!late.complete_then(Ok(Counted(drops.clone())), || firsts += 1));
    assert_eq!(firsts, 1, "only the winner's `first` runs");
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the loser's result is dropped"
    );
    // SAFETY (here and below): the test is the one waiting side.
    let Took::Got(Ok(got)) = (unsafe { slot.take() }) else {
        panic!("the winner's result")
    };
    assert!(matches!(unsafe { slot.take() }, Took::Taken));
    drop(got);
    drop((promise, late, slot));
    assert_eq!(
        drops.load(Ordering::SeqCst),
        2,
        "the taken one is dropped by its taker only"
    );

    // Never taken: dropped with the cell.
    let (promise, slot) = pair();
    assert!(promise.complete(Ok(Counted(drops.clone()))));
    drop(promise);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    drop(slot);
    assert_eq!(drops.load(Ordering::SeqCst), 3);
}

#[test]
fn a_replaced_waker_is_not_woken_and_the_newest_one_is() {
    let (promise, slot) = pair();
    let (old, old_waker) = flag();
    let (new, new_waker) = flag();
    // SAFETY (here and below): the test is the one waiting side.
    assert!(matches!(
        unsafe { slot.take_or_wake(&old_waker) },
        Took::Pending
    ));
    assert!(matches!(
        unsafe { slot.take_or_wake(&new_waker) },
        Took::Pending
    ));
    // The same waker again changes nothing.
    assert!(matches!(
        unsafe { slot.take_or_wake(&new_waker) },
        Took::Pending
    ));
    assert!(promise.complete(Ok(Counted(Arc::default()))));
    assert!(new.0.load(Ordering::SeqCst), "the newest waker is woken");
    assert!(!old.0.load(Ordering::SeqCst), "the replaced one is not");
    assert!(matches!(
        unsafe { slot.take_or_wake(&old_waker) },
        Took::Got(Ok(_))
    ));
}

#[test]
fn a_waiter_is_never_left_asleep_when_resolution_races_its_registration() {
    // Each round, a resolver thread and the waiter start together (a barrier), each after
    // its own short delay (varied by round), so that the publish lands on every step of the
    // waiter's registration. The waiter's first poll registers a waker, its second replaces
    // it with another (clearing and setting the waker bit while the publish may land), and
    // from then on it sleeps until its current waker is woken before it looks again. A lost
    // wake-up leaves it waiting: the bound (seconds) only turns that hang into a failure.
    let delays = [0u32, 1, 3, 10, 30, 100, 300];
    for round in 0..3_000usize {
        let drops = Arc::new(AtomicUsize::new(0));
        let (promise, slot) = pair();
        let value = Counted(drops.clone());
        let start = Arc::new(std::sync::Barrier::new(2));
        let go = start.clone();
        let resolver_delay = delays[round % delays.len()];
        let waiter_delay = delays[(round / delays.len()) % delays.len()];
        let resolver = std::thread::spawn(move || {
            go.wait();
            for _ in 0..resolver_delay {
                std::hint::spin_loop();
            }
            promise.complete(Ok(value))
        });
        start.wait();
        for _ in 0..waiter_delay {
            std::hint::spin_loop();
        }
        let mut polls = 0;
        let got = loop {
            let (woken, waker) = flag();
            // SAFETY: the test is the one waiting side.
            match unsafe { slot.take_or_wake(&waker) } {
                Took::Got(r) => break r,
                Took::Pending => {}
                Took::Abandoned | Took::Taken => panic!("round {round}: resolved once"),
            }
            polls += 1;
            if polls == 1 {
                continue; // replaced at once by the next poll's waker
            }
            let until = Instant::now() + Duration::from_secs(20);
            while !woken.0.load(Ordering::SeqCst) {
                assert!(Instant::now() < until, "round {round}: a wake-up was lost");
                std::thread::yield_now();
            }
        };
        assert!(resolver.join().unwrap());
        assert!(got.is_ok());
        drop(got);
        drop(slot);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "round {round}");
    }
}

#[test]
fn the_waker_and_an_untaken_result_go_with_the_cell() {
    let (promise, slot) = pair();
    let (flag, waker) = flag();
    // SAFETY: the test is the one waiting side.
    assert!(matches!(
        unsafe { slot.take_or_wake(&waker) },
        Took::Pending
    ));
    drop(waker);
    assert_eq!(Arc::strong_count(&flag), 2, "the cell holds the waker");
    // With what carried the result (freed with the cell: only memory).
    let (_, spent) = crate::spent::Spent::hollow(Box::new([0u64; 4]));
    assert!(spent.is_some());
    let drops = Arc::new(AtomicUsize::new(0));
    assert!(promise.complete_spent(Ok(Counted(drops.clone())), || {}, spent));
    assert!(flag.0.load(Ordering::SeqCst), "woken");
    drop(promise);
    assert_eq!(drops.load(Ordering::SeqCst), 0, "kept for the waiter");
    drop(slot);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the untaken result");
    assert_eq!(Arc::strong_count(&flag), 1, "the waker");
}
