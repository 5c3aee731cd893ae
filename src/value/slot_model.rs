//! The slot's protocol, model-checked with loom: every interleaving of a resolver, a racing
//! resolver or abandoning promise, and the waiting side (up to loom's preemption bound), checked
//! for lost wake-ups, a result taken twice or never, and data races on the cells.
//!
//! Run: `RUSTFLAGS="--cfg circuits_loom" cargo test -p circuits --lib value::slot::model`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Wake, Waker};

use loom::sync::Arc;
use loom::thread;

use super::{Slot, Took};

/// Set when woken (read only after the waking thread was joined).
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn flag() -> (std::sync::Arc<Flag>, Waker) {
    let f = std::sync::Arc::new(Flag(AtomicBool::new(false)));
    (f.clone(), Waker::from(f))
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

type Cell = Slot<Result<u32, ()>>;

/// The waiting side: registers `first`, then replaces it with `second` if still pending; after
/// `resolver` is joined, a value still not taken must have woken `second`.
fn wait_around(slot: &Cell, resolver: thread::JoinHandle<bool>) -> Took<Result<u32, Box<()>>> {
    let (_, first) = flag();
    let (woken, second) = flag();
    // SAFETY (here and below): this thread is the one waiting side.
    let mut got = unsafe { slot.take_or_wake(&first) };
    if matches!(got, Took::Pending) {
        got = unsafe { slot.take_or_wake(&second) };
    }
    resolver.join().unwrap();
    if matches!(got, Took::Pending) {
        assert!(woken.0.load(Ordering::SeqCst), "a wake-up was lost");
        got = unsafe { slot.take() };
    }
    got
}

#[test]
fn a_resolution_racing_a_registration_and_its_replacement_is_never_lost() {
    model(|| {
        let slot: Arc<Cell> = Arc::new(Slot::new());
        let s = slot.clone();
        let resolver = thread::spawn(move || s.resolve(Ok(7), || {}, None));
        let got = wait_around(&slot, resolver);
        assert!(matches!(got, Took::Got(Ok(7))));
        // SAFETY: the one waiting side.
        assert!(matches!(unsafe { slot.take() }, Took::Taken));
    });
}

#[test]
fn two_racing_resolvers_give_one_result_and_the_loser_returns_after_it_is_published() {
    model(|| {
        let slot: Arc<Cell> = Arc::new(Slot::new());
        let (a, b) = (slot.clone(), slot.clone());
        let loser_saw = Arc::new(loom::sync::atomic::AtomicBool::new(true));
        let seen = loser_saw.clone();
        let other = thread::spawn(move || {
            let won = b.resolve(Ok(2), || {}, None);
            if !won {
                seen.store(b.is_ready(), Ordering::SeqCst);
            }
            won
        });
        let first = thread::spawn(move || a.resolve(Ok(1), || {}, None));
        let got = wait_around(&slot, first);
        let second_won = other.join().unwrap();
        assert!(
            loser_saw.load(Ordering::SeqCst),
            "a loser returned before publication"
        );
        let got = match got {
            Took::Got(r) => r,
            // The first resolver lost and the waiter looked before the second published.
            Took::Pending => match unsafe { slot.take() } {
                Took::Got(r) => r,
                _ => panic!("resolved once"),
            },
            _ => panic!("resolved once"),
        };
        assert_eq!(got, if second_won { Ok(2) } else { Ok(1) });
    });
}

#[test]
fn a_promise_let_go_beside_a_resolving_one_never_abandons_the_value() {
    model(|| {
        let slot: Arc<Cell> = Arc::new(Slot::new());
        slot.promises.fetch_add(1, Ordering::Relaxed); // two promises
        let s = slot.clone();
        let resolver = thread::spawn(move || {
            let won = s.resolve(Ok(5), || {}, None);
            s.let_go();
            won
        });
        let other = slot.clone();
        let dropped = thread::spawn(move || other.let_go());
        let got = wait_around(&slot, resolver);
        dropped.join().unwrap();
        assert!(matches!(got, Took::Got(Ok(5))));
    });
}

#[test]
fn the_last_promise_let_go_unresolved_abandons_the_value_and_wakes_the_waiter() {
    model(|| {
        let slot: Arc<Cell> = Arc::new(Slot::new());
        let s = slot.clone();
        let dropped = thread::spawn(move || {
            s.let_go();
            true
        });
        let got = wait_around(&slot, dropped);
        assert!(matches!(got, Took::Abandoned));
        // SAFETY: the one waiting side.
        assert!(matches!(unsafe { slot.take() }, Took::Abandoned));
    });
}
