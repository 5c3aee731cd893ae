//! The answers ring read by a helper beside the reader thread, against a writer in this process:
//! the handshake stays the reader's, a helper's protocol error ends the child through the
//! reader, and a child's death stops a helper however long it may spin.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::task::{Context, Poll, Waker};

use super::super::shared::{lock, InFlight, Msg, Shared};
use super::Answers;
use crate::task::{TaskError, TaskId};
use crate::value::help::Help;
use crate::value::Value;
use crate::wire::ring::{watch_pipe, RingSink, Rings, MIN_CAPACITY};
use crate::wire::{Frame, FrameSink, Payload, WireError};
use crate::{Job, Task};

const MAX: usize = 1 << 20;
const BOUND: Duration = Duration::from_secs(20);

/// A child's answers as the parent reads them, the child's writing end, the host's receiver, and
/// the descriptor whose drop says the child is gone.
struct Child {
    answers: Arc<Answers>,
    out: RingSink,
    host: crossbeam_channel::Receiver<Msg>,
    dies: OwnedFd,
    _rings: Rings,
    _parent: OwnedFd,
}

fn child(answer_spin: Duration) -> Child {
    let rings = Rings::new(MIN_CAPACITY).unwrap();
    let ((child_gone, dies), (parent_gone, parent)) = (watch_pipe(), watch_pipe());
    let (_jobs, source) = rings.parent_ends(child_gone, MAX, Duration::from_micros(50));
    let (_job_in, out) = rings.child_side(parent_gone, MAX, Duration::ZERO);
    let (shared, host) = Shared::for_tests(answer_spin);
    shared.lock().generation = 7; // the worker's current child
    Child {
        answers: Arc::new(Answers::new(shared, 7, source)),
        out,
        host,
        dies,
        _rings: rings,
        _parent: parent,
    }
}

/// The reader thread over `answers`; its end comes back on the receiver.
fn reader(answers: &Arc<Answers>) -> std::sync::mpsc::Receiver<Msg> {
    let (tx, rx) = std::sync::mpsc::channel();
    let answers = answers.clone();
    let (watch, head) = {
        let inner = lock(&answers.inner);
        (inner.source.watch(), inner.source.head())
    };
    std::thread::spawn(move || {
        let _ = tx.send(answers.read(&watch, head));
    });
    rx
}

#[test]
fn the_handshake_is_the_readers_and_a_helpers_protocol_error_ends_the_child() {
    let mut c = child(Duration::from_millis(1));
    c.out.send(b"hello").unwrap();
    c.out.flush().unwrap();
    // Before the handshake is read, a helper reads nothing.
    c.answers.help(&|| false);
    assert!(lock(&c.answers.inner).first, "the handshake is still there");
    let end = reader(&c.answers);
    match c.host.recv_timeout(BOUND) {
        Ok(Msg::Hello(7, body)) => assert_eq!(body, b"hello"),
        _ => panic!("the reader hands the handshake to the host"),
    }
    // The reader now waits for answers; a helper takes the token while it sleeps, or after it
    // read what is there. A frame that is no answer:
    c.out.send(&[0xff, 0xff, 0xff]).unwrap();
    c.out.flush().unwrap();
    // Whoever reads it, the child is called gone with the decode error: the helper leaves it to
    // the reader (and wakes it), the reader ends the child with it.
    c.answers.help(&|| false);
    match end.recv_timeout(BOUND) {
        Ok(Msg::Gone(7, WireError::Decode(_))) => {}
        Ok(Msg::Gone(g, e)) => panic!("gone with {e:?} (generation {g})"),
        _ => panic!("the reader ends"),
    }
}

#[test]
fn a_helper_hands_its_error_to_the_reader_it_wakes() {
    let mut c = child(Duration::from_millis(1));
    lock(&c.answers.inner).first = false; // as if the handshake was read
    c.out.send(&[0xff, 0xff, 0xff]).unwrap();
    c.out.flush().unwrap();
    // No reader thread yet: the helper reads the frame, and keeps its error for the reader.
    c.answers.help(&|| false);
    assert!(matches!(
        lock(&c.answers.inner).poison,
        Some(WireError::Decode(_))
    ));
    // The reader, which the helper's end rang, looks at once and ends the child with it.
    match reader(&c.answers).recv_timeout(BOUND) {
        Ok(Msg::Gone(7, WireError::Decode(_))) => {}
        _ => panic!("the reader ends the child with the helper's error"),
    }
    // The child is gone for the pool, though the host has not heard it yet: a job sent to it
    // meanwhile is not answered by a helper (the host fails it as the child's).
    let v = in_flight(&c.answers, 1, 3);
    c.answers.sent_alone(true);
    let mut v = v.spin_first(true);
    answer(&mut c.out, 1, 9);
    assert_eq!(poll_once(&mut v), Poll::Pending);
}

#[test]
fn a_child_that_dies_stops_a_helper_waiting_for_its_answer() {
    // A helper allowed to spin for a minute (the bound below is 20 s): only the child's end
    // stops it in time.
    let c = child(Duration::from_secs(60));
    lock(&c.answers.inner).first = false;
    let end = reader(&c.answers);
    let (answers, dies) = (c.answers.clone(), std::sync::Mutex::new(Some(c.dies)));
    let (helped, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // The child dies while the helper waits for an answer that will not come. (Again until
        // a help ran: the reader may hold the source for a moment.)
        while dies.lock().unwrap().is_some() {
            answers.help(&|| {
                dies.lock().unwrap().take();
                false
            });
        }
        let _ = helped.send(());
    });
    stopped
        .recv_timeout(BOUND)
        .expect("the helper stops when the child is gone");
    match end.recv_timeout(BOUND) {
        Ok(Msg::Gone(7, WireError::Closed)) => {}
        _ => panic!("the reader sees the child's clean end"),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Sq(u64);

impl Job for Sq {
    const NAME: &'static str = "sq";
    type Output = u64;
    fn run(self) -> u64 {
        self.0 * self.0
    }
}

/// Puts the job `Sq(n)` in flight as run `run` (as if sent to the child); returns its value.
fn in_flight(answers: &Answers, run: u64, n: u64) -> Value<u64, TaskError> {
    let (task, value) = Task::job(Sq(n)).into_cell(TaskId(run));
    answers
        .shared
        .load
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut st = answers.shared.lock();
    st.inflight.push_back(InFlight {
        run,
        task,
        bytes: 0,
    });
    value
}

/// The child answers run `run` with `output`.
fn answer(out: &mut RingSink, run: u64, output: u64) {
    let bytes = postcard::to_allocvec(&output).unwrap();
    let done = Frame::Done {
        id: run,
        result: Ok(Payload::borrowed(&bytes)),
    };
    out.send(&crate::wire::encode(&done, bytes.len()).unwrap())
        .unwrap();
    out.flush().unwrap();
}

fn poll_once(value: &mut Value<u64, TaskError>) -> Poll<Result<u64, TaskError>> {
    std::pin::Pin::new(value).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_value_polled_after_its_push_reads_its_answer_and_the_rest_falls_to_the_reader() {
    let mut c = child(Duration::from_millis(1));
    lock(&c.answers.inner).first = false;
    // A job sent alone to an awake child: the push offers help, its value claims it, and its
    // first poll reads the answer. No reader thread runs yet: only the help can settle it.
    let v1 = in_flight(&c.answers, 1, 3);
    c.answers.sent_alone(true);
    let mut v1 = v1.spin_first(true);
    answer(&mut c.out, 1, 9);
    assert_eq!(poll_once(&mut v1), Poll::Ready(Ok(9)));
    assert!(c.answers.shared.lock().inflight.is_empty());
    // Nothing in flight: the helper left the reader asleep, for the child to wake.
    assert!(c.answers.parked.load(std::sync::atomic::Ordering::Relaxed));
    // A job the child had to be woken for: no offer, and its value's first poll finds nothing.
    let v2 = in_flight(&c.answers, 2, 4);
    c.answers.sent_alone(false);
    // ... and the push woke the reader the help had left asleep (it would have slept through the
    // job and woken only at its answer).
    assert!(!c.answers.parked.load(std::sync::atomic::Ordering::Relaxed));
    let mut v2 = v2.spin_first(true);
    answer(&mut c.out, 2, 16);
    assert_eq!(poll_once(&mut v2), Poll::Pending);
    // The reader answers it.
    let end = reader(&c.answers);
    assert_eq!(v2.wait_blocking(BOUND), Ok(Ok(16)));
    // The child answers a third job, then dies: its answer arrives, then its end.
    let mut v3 = in_flight(&c.answers, 3, 5);
    answer(&mut c.out, 3, 25);
    drop(c.dies);
    assert_eq!(v3.wait_blocking(BOUND), Ok(Ok(25)));
    match end.recv_timeout(BOUND) {
        Ok(Msg::Gone(7, WireError::Closed)) => {}
        _ => panic!("the reader sees the child's clean end"),
    }
}

#[test]
fn an_offer_is_only_for_the_value_of_its_push() {
    let mut c = child(Duration::from_millis(1));
    lock(&c.answers.inner).first = false;
    // Offered, but the pool had other tasks in flight: the value does not spin, the offer goes.
    let v1 = in_flight(&c.answers, 1, 3);
    c.answers.sent_alone(true);
    let mut v1 = v1.spin_first(false);
    answer(&mut c.out, 1, 9);
    // Another value that spins, pushed next on this thread, finds no offer either.
    let (_other_task, other) = Task::new(|| 0u64).into_cell(TaskId(99));
    let mut other = other.spin_first(true);
    assert_eq!(poll_once(&mut other), Poll::Pending);
    assert_eq!(poll_once(&mut v1), Poll::Pending, "nobody read the answer");
    let end = reader(&c.answers);
    assert_eq!(v1.wait_blocking(BOUND), Ok(Ok(9)));
    drop(c.dies);
    assert!(matches!(end.recv_timeout(BOUND), Ok(Msg::Gone(7, _))));
}
