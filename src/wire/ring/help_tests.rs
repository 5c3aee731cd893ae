//! The answers ring read by a helper (an awaiting thread) beside the reader thread: frames taken
//! only whole, the writer's bell handed between them, and the reader's [`Watch`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{watch_pipe as watch, Dir, Rings, Watch, MIN_CAPACITY};
use crate::wire::error::WireError;
use crate::wire::transport::{FrameSink, FrameSource};

const MAX: usize = 8 << 20;

/// The reader's [`Watch::wait`] on another thread, with `helped` as given; its result comes back
/// on the receiver (a test that breaks the hand-off fails on the receiver's bound, not by
/// hanging).
fn waiting(
    watch: Watch,
    head: u64,
    helped: &Arc<AtomicBool>,
) -> std::sync::mpsc::Receiver<Result<bool, WireError>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let helped = helped.clone();
    std::thread::spawn(move || {
        let _ = tx.send(watch.wait(head, &helped));
    });
    rx
}

const BOUND: Duration = Duration::from_secs(20);

#[test]
fn a_helper_takes_only_whole_frames_and_follows_restart_marks() {
    use std::sync::atomic::Ordering::Release;
    let rings = Rings::new(MIN_CAPACITY).unwrap();
    let (child_gone, _child_dies) = watch();
    let (_jobs, mut answers) = rings.parent_ends(child_gone, MAX, Duration::ZERO);
    let tail = rings.region.position(Dir::Answers, 0);
    assert_eq!(answers.try_recv().unwrap(), None, "nothing written");
    // A 6-byte frame published a byte at a time: nothing until the whole of it is there.
    rings
        .region
        .write_at(Dir::Answers, 0, &[6, 0, 0, 0, 1, 2, 3, 4, 5, 6]);
    for published in 1..10 {
        tail.store(published, Release);
        assert_eq!(answers.try_recv().unwrap(), None, "{published} bytes");
        assert_eq!(answers.head(), 0, "nothing read yet");
    }
    tail.store(10, Release);
    assert_eq!(answers.try_recv().unwrap(), Some(vec![1, 2, 3, 4, 5, 6]));
    assert_eq!(answers.head(), 10);
    assert_eq!(answers.try_recv().unwrap(), None);
    // A restart mark, then a frame at the ring's start: taken whole.
    let cap = MIN_CAPACITY as u64;
    rings
        .region
        .write_at(Dir::Answers, 10, &u32::MAX.to_le_bytes());
    rings.region.write_at(Dir::Answers, 0, &[2, 0, 0, 0, 8, 9]);
    tail.store(cap + 6, Release);
    assert_eq!(answers.try_recv().unwrap(), Some(vec![8, 9]));
    assert_eq!(answers.head(), cap + 6);
    // A writer's position past what the ring holds: refused.
    tail.store(cap * 3, Release);
    assert!(matches!(answers.try_recv(), Err(WireError::Decode(_))));
}

#[test]
fn a_helper_refuses_what_the_reader_refuses() {
    use std::sync::atomic::Ordering::Release;
    let cap = MIN_CAPACITY as u64;
    // A ring whose reader already read `first` bytes, then holds `bytes` at `at`, published to
    // `tail`, frames up to `max` bytes: what a helper's read gives, and what the reader's gives.
    let both = |first: u64, at: u64, bytes: &[u8], tail: u64, max: usize| {
        let read = |helper: bool| {
            let rings = Rings::new(MIN_CAPACITY).unwrap();
            let (child_gone, child_dies) = watch();
            let (_jobs, mut answers) = rings.parent_ends(child_gone, max, Duration::ZERO);
            let published = rings.region.position(Dir::Answers, 0);
            if first > 0 {
                let len = u32::try_from(first - 4).unwrap().to_le_bytes();
                rings.region.write_at(Dir::Answers, 0, &len);
                published.store(first, Release);
                assert_eq!(answers.recv().unwrap().ack().len() as u64, first - 4);
            }
            rings.region.write_at(Dir::Answers, at, bytes);
            published.store(tail, Release);
            drop(child_dies);
            if helper {
                answers.try_recv().map(|f| f.map(|b| b.len()))
            } else {
                answers.recv().map(|d| Some(d.ack().len()))
            }
        };
        (read(true), read(false))
    };
    let skip = u32::MAX.to_le_bytes();
    // A restart mark at the ring's start, and one too near its end: refused by both.
    for (first, at, tail) in [(0, 0, 8), (cap - 2, cap - 2, cap + 6)] {
        let (helper, reader) = both(first, at, &skip, tail, MAX);
        assert!(matches!(helper, Err(WireError::Decode(_))), "{helper:?}");
        assert!(matches!(reader, Err(WireError::Decode(_))), "{reader:?}");
    }
    // A length over the frame limit: refused by both, before anything is allocated.
    let (helper, reader) = both(0, 0, &1000u32.to_le_bytes(), 1004, 256);
    assert!(
        matches!(helper, Err(WireError::FrameTooLarge { .. })),
        "{helper:?}"
    );
    assert!(
        matches!(reader, Err(WireError::FrameTooLarge { .. })),
        "{reader:?}"
    );
    // A whole frame within the limit: the same frame.
    let (helper, reader) = both(0, 0, &[2, 0, 0, 0, 1, 2], 6, 256);
    assert_eq!((helper, reader), (Ok(Some(2)), Ok(Some(2))));
}

#[test]
fn a_frame_larger_than_the_ring_is_left_to_the_reader() {
    let rings = Rings::new(MIN_CAPACITY).unwrap();
    let (parent_gone, _p) = watch();
    let (child_gone, _c) = watch();
    let (_jobs, mut answers) = rings.parent_ends(child_gone, MAX, Duration::ZERO);
    let (_job_in, mut answer_out) = rings.child_side(parent_gone, MAX, Duration::ZERO);
    let big = vec![5u8; 3 * MIN_CAPACITY];
    let writer = std::thread::spawn(move || {
        answer_out.send(&big).unwrap();
        answer_out.flush().unwrap();
    });
    // The helper sees part of it at most, and takes nothing; the reader streams it.
    assert_eq!(answers.try_recv().unwrap(), None);
    let got = answers.recv().unwrap().ack();
    assert_eq!(got.len(), 3 * MIN_CAPACITY);
    writer.join().unwrap();
}

#[test]
fn the_writer_rings_the_reader_only_when_no_helper_reads() {
    let rings = Rings::new(MIN_CAPACITY).unwrap();
    let (parent_gone, _p) = watch();
    let (child_gone, _c) = watch();
    let (mut jobs, answers) = rings.parent_ends(child_gone, MAX, Duration::ZERO);
    let (mut job_in, mut answer_out) = rings.child_side(parent_gone, MAX, Duration::ZERO);
    let helped = Arc::new(AtomicBool::new(false));
    let waiter = rings.region.waiter(Dir::Answers, 2);

    // A reader asleep, armed; a helper starts: the writer's flag is down.
    let reader = waiting(answers.watch(), answers.head(), &helped);
    let since = std::time::Instant::now();
    while waiter.load(Ordering::SeqCst) == 0 {
        // Until the reader has armed it and sleeps (a reader that never arms fails here).
        assert!(
            since.elapsed() < BOUND,
            "the sleeping reader never armed the flag"
        );
        assert!(
            reader.try_recv().is_err(),
            "the reader returned with nothing written"
        );
        std::thread::yield_now();
    }
    helped.store(true, Ordering::SeqCst);
    answers.help_begin();
    assert_eq!(waiter.load(Ordering::SeqCst), 0);
    // The helper ends with nothing left to look at: the flag is up again, and the writer's next
    // frame wakes the reader.
    helped.store(false, Ordering::SeqCst);
    answers.help_end(false);
    assert_eq!(waiter.load(Ordering::SeqCst), 1);
    answer_out.send(b"answer").unwrap();
    answer_out.flush().unwrap();
    assert_eq!(reader.recv_timeout(BOUND).unwrap(), Ok(true));

    // A reader asleep while a helper reads, not armed; the helper asks it to look.
    helped.store(true, Ordering::SeqCst);
    let head = answers.head() + 10; // as if the frame above was read
    let reader = waiting(answers.watch(), head, &helped);
    helped.store(false, Ordering::SeqCst);
    answers.help_end(true);
    assert_eq!(reader.recv_timeout(BOUND).unwrap(), Ok(true));

    // The child took every job sent, as its reader side of the other ring says.
    jobs.send(b"job").unwrap();
    jobs.flush().unwrap();
    assert!(!answers.peer_took_all());
    assert_eq!(job_in.recv().unwrap().ack(), b"job");
    assert!(answers.peer_took_all());
}

#[test]
fn a_reader_that_defers_to_a_helper_still_sees_the_writer_go() {
    let rings = Rings::new(MIN_CAPACITY).unwrap();
    let (child_gone, child_dies) = watch();
    let (_jobs, answers) = rings.parent_ends(child_gone, MAX, Duration::from_micros(50));
    let helped = Arc::new(AtomicBool::new(true));
    let reader = waiting(answers.watch(), answers.head(), &helped);
    drop(child_dies);
    assert_eq!(reader.recv_timeout(BOUND).unwrap(), Ok(false));
}
