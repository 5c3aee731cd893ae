//! The ring carrier between two threads of this process, with a pipe standing in for the other
//! side's `pidfd`: closing its write end says "gone".

use std::time::Duration;

use proptest::prelude::*;

use super::{Dir, Rings, MIN_CAPACITY};
use crate::wire::error::WireError;
use crate::wire::transport::{FrameSink, FrameSource};

use super::watch_pipe as watch;

const MAX: usize = 8 << 20;

/// A fresh region and both sides' ends, neither side ever gone (the pipes live as long as this).
struct Linked {
    rings: Rings,
    /// The parent's ends: it writes jobs, reads answers.
    jobs: super::RingSink,
    answers: super::RingSource,
    /// The child's ends: it reads jobs, writes answers.
    job_in: super::RingSource,
    answer_out: super::RingSink,
    _alive: [std::os::fd::OwnedFd; 2],
}

fn linked() -> Linked {
    let rings = Rings::new(MIN_CAPACITY).unwrap();
    let (parent_gone, p) = watch();
    let (child_gone, c) = watch();
    let (jobs, answers) = rings.parent_ends(child_gone, MAX, Duration::ZERO);
    let (job_in, answer_out) = rings.child_side(parent_gone, MAX, Duration::ZERO);
    Linked {
        rings,
        jobs,
        answers,
        job_in,
        answer_out,
        _alive: [p, c],
    }
}

#[test]
fn frames_cross_both_rings_in_order_wrapping_many_times() {
    let Linked {
        mut jobs,
        mut answers,
        mut job_in,
        mut answer_out,
        _alive,
        ..
    } = linked();
    let echo = std::thread::spawn(move || {
        // The child: answers each job with its body reversed, until the parent closes; each
        // body is given back, so the next is read into its memory (as the child does).
        for _ in 0..2000 {
            let mut body = job_in.recv().unwrap().ack();
            body.reverse();
            answer_out.send(&body).unwrap();
            answer_out.flush().unwrap();
            job_in.recycle(body);
        }
    });
    let reader = std::thread::spawn(move || {
        (0..2000usize)
            .map(|_| answers.recv().unwrap().ack())
            .collect::<Vec<_>>()
    });
    let sizes = |i: usize| (i * 37) % 3000;
    for i in 0..2000usize {
        let body: Vec<u8> = (0..sizes(i)).map(|b| (b + i) as u8).collect();
        jobs.send(&body).unwrap();
        if i % 7 == 0 {
            jobs.flush().unwrap();
        }
    }
    jobs.flush().unwrap();
    let got = reader.join().unwrap();
    echo.join().unwrap();
    for (i, body) in got.into_iter().enumerate() {
        let mut want: Vec<u8> = (0..sizes(i)).map(|b| (b + i) as u8).collect();
        want.reverse();
        assert_eq!(body, want, "answer {i}");
    }
}

#[test]
fn a_frame_larger_than_the_ring_streams_through_it() {
    let Linked {
        mut jobs,
        mut job_in,
        _alive,
        ..
    } = linked();
    let big: Vec<u8> = (0..(1 << 20) + 3).map(|i: usize| (i % 251) as u8).collect();
    let expected = big.clone();
    let writer = std::thread::spawn(move || {
        jobs.send(&big).unwrap();
        jobs.send(b"after").unwrap();
        jobs.flush().unwrap();
    });
    assert_eq!(job_in.recv().unwrap().ack(), expected);
    assert_eq!(job_in.recv().unwrap().ack(), b"after");
    writer.join().unwrap();
}

#[test]
fn frames_written_before_the_writer_died_are_read_then_the_end_is_clean() {
    let rings = Rings::new(MIN_CAPACITY).unwrap();
    let (parent_gone, _p) = watch();
    let (child_gone, child_dies) = watch();
    let (_jobs, mut answers) = rings.parent_ends(child_gone, MAX, Duration::ZERO);
    let (_in, mut out) = rings.child_side(parent_gone, MAX, Duration::ZERO);
    for body in [&b"one"[..], b"", b"three"] {
        out.send(body).unwrap();
        out.flush().unwrap();
    }
    drop(child_dies);
    assert_eq!(answers.recv().unwrap().ack(), b"one");
    assert_eq!(answers.recv().unwrap().ack(), b"");
    assert_eq!(answers.recv().unwrap().ack(), b"three");
    assert_eq!(answers.recv().unwrap_err(), WireError::Closed);
}

#[test]
fn a_frame_cut_by_the_writers_death_is_truncated() {
    let rings = Rings::new(MIN_CAPACITY).unwrap();
    let (child_gone, child_dies) = watch();
    let (_jobs, mut answers) = rings.parent_ends(child_gone, MAX, Duration::ZERO);
    // A length of 100 and 10 of its bytes, published.
    rings
        .region
        .write_at(Dir::Answers, 0, &100u32.to_le_bytes());
    rings.region.write_at(Dir::Answers, 4, &[1; 10]);
    rings
        .region
        .position(Dir::Answers, 0)
        .store(14, std::sync::atomic::Ordering::Release);
    drop(child_dies);
    assert_eq!(answers.recv().unwrap_err(), WireError::Truncated);
}

#[test]
fn a_writer_waiting_for_room_stops_when_the_reader_is_gone() {
    let rings = Rings::new(MIN_CAPACITY).unwrap();
    let (child_gone, child_dies) = watch();
    let (mut jobs, _answers) = rings.parent_ends(child_gone, MAX, Duration::ZERO);
    let writer = std::thread::spawn(move || jobs.send(&vec![0; 3 * MIN_CAPACITY]));
    drop(child_dies);
    assert!(matches!(writer.join().unwrap(), Err(WireError::Io(_))));
}

#[test]
fn the_memory_cannot_be_resized_under_the_parent() {
    use std::os::fd::AsRawFd;
    let rings = Rings::new(MIN_CAPACITY).unwrap();
    let fd = rings.region.fd.as_raw_fd();
    for len in [0, 4096, 1 << 30] {
        // SAFETY: ftruncate on our own memfd; it must fail (sealed).
        assert_ne!(unsafe { libc::ftruncate(fd, len) }, 0, "resized to {len}");
    }
}

#[test]
fn the_child_gets_its_descriptors_over_its_stdin_socket() {
    use std::os::unix::net::UnixStream;
    let rings = Rings::new(MIN_CAPACITY).unwrap();
    let (parent, child) = UnixStream::pair().unwrap();
    rings.send_to_child(&parent).unwrap();
    let (child_gone, _c) = watch();
    let (mut jobs, mut answers) = rings.parent_ends(child_gone, MAX, Duration::ZERO);
    let (mut job_in, mut answer_out) =
        super::child_ends(child.into(), MAX, Duration::ZERO).unwrap();
    jobs.send(b"ping").unwrap();
    jobs.flush().unwrap();
    assert_eq!(job_in.recv().unwrap().ack(), b"ping");
    answer_out.send(b"pong").unwrap();
    answer_out.flush().unwrap();
    assert_eq!(answers.recv().unwrap().ack(), b"pong");
    // The parent closing its end of the socket is the child's end of input.
    drop(parent);
    assert_eq!(job_in.recv().unwrap_err(), WireError::Closed);
}

#[test]
fn the_child_refuses_what_is_not_a_ring() {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    // Nothing sent: the parent is gone.
    let (parent, child) = UnixStream::pair().unwrap();
    drop(parent);
    let end = super::child_ends(child.into(), MAX, Duration::ZERO);
    assert_eq!(end.err(), Some(WireError::Closed));
    // Three descriptors, or four whose first is no ring's memory.
    let (r, w) = watch();
    for n in [3, 4] {
        let (parent, child) = UnixStream::pair().unwrap();
        let fds = vec![r.as_raw_fd(); n];
        super::pass::send_fds(&parent, &fds).unwrap();
        let end = super::child_ends(child.into(), MAX, Duration::ZERO);
        assert!(
            matches!(end, Err(WireError::Decode(_))),
            "{n} descriptors: {:?}",
            end.err()
        );
    }
    drop(w);
}

proptest! {
    /// Whatever the child writes into the answers ring (positions, lengths, bytes), the parent's
    /// reader returns frames within the limit or an error: it never reads outside the ring, never
    /// allocates past the limit, and never waits once the child is gone.
    #[test]
    fn the_reader_survives_a_hostile_writer(
        tail in any::<u64>(),
        head in prop_oneof![Just(0u64), any::<u64>()],
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        small in 0u64..=(MIN_CAPACITY as u64),
        marks in proptest::collection::vec(0usize..64, 0..3),
    ) {
        let tail = if tail % 2 == 0 { small } else { tail };
        // Restart marks where the child put them, wherever that is.
        let mut bytes = bytes;
        for at in marks {
            if at + 4 <= bytes.len() {
                bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            }
        }
        let sizes = super::read_hostile(tail, head, &bytes, 256);
        prop_assert!(sizes.iter().all(|&n| n <= 256), "{sizes:?}");
    }
}

#[test]
fn a_wait_spins_for_frames_that_come_soon_and_sleeps_for_the_others() {
    let us = Duration::from_micros;
    let linger = us(50);
    // Frames that come at once, or within the linger time: the linger time.
    assert_eq!(super::spin::next_spin(linger, us(0)), linger);
    assert_eq!(super::spin::next_spin(linger, us(20)), linger);
    // A frame 100 us apart: twice that next time, to catch the next one without sleeping.
    assert_eq!(super::spin::next_spin(linger, us(100)), us(200));
    // Never past five times the linger time.
    assert_eq!(super::spin::next_spin(linger, us(200)), us(250));
    assert_eq!(super::spin::next_spin(linger, us(250)), us(250));
    // Frames further apart: back to the linger time (an idle side sleeps soon).
    assert_eq!(super::spin::next_spin(linger, us(251)), linger);
    assert_eq!(
        super::spin::next_spin(linger, Duration::from_secs(3)),
        linger
    );
    // No linger (the tests' rings): never spins.
    assert_eq!(
        super::spin::next_spin(Duration::ZERO, us(10)),
        Duration::ZERO
    );
}

#[test]
fn no_more_waits_spin_past_their_linger_than_there_are_places() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let claims: Vec<_> = (0..5).map(|_| super::spin::claim(&COUNT, 3)).collect();
    assert_eq!(claims.iter().filter(|c| c.is_some()).count(), 3);
    assert_eq!(COUNT.load(Ordering::Relaxed), 3);
    drop(claims);
    // Given back: the next wait may claim again.
    assert_eq!(COUNT.load(Ordering::Relaxed), 0);
    assert!(super::spin::claim(&COUNT, 3).is_some());
    // A side that learned a longer spin spins past its linger only with a place.
    let us = Duration::from_micros;
    let side = super::spin::Spin::new(us(50));
    side.learn(us(100));
    let (spin, claim) = side.budget();
    assert!(claim.is_some() && spin == us(200) || claim.is_none() && spin == us(50));
}

#[test]
fn frames_encoded_straight_into_the_ring_read_as_sent_ones_wrapping_many_times() {
    use crate::wire::{decode, encode, encoded_size, Frame, Payload};
    let Linked {
        mut jobs,
        mut job_in,
        _alive,
        ..
    } = linked();
    let frame = |i: usize| {
        let input = vec![i as u8; (i * 613) % 9000];
        (i, input)
    };
    let mut placed = 0;
    // One frame stays unread from round to round: the ring is never empty when a round starts,
    // so frames go on where the last ended (and wrap), never back to the start.
    let mut lagging: Option<Vec<u8>> = None;
    for round in 0..40 {
        // A few frames each way of sending, then all but the last read back in order.
        let mut want: Vec<_> = lagging.take().into_iter().collect();
        for i in round * 5..round * 5 + 5 {
            let (id, input) = frame(i);
            let run = Frame::Run {
                id: id as u64,
                job: "j".into(),
                input: Payload::borrowed(&input),
                context: None,
            };
            let size = encoded_size(&run).unwrap();
            if i % 2 == 0 && jobs.send_value(&run, size).unwrap() {
                placed += 1;
            } else {
                jobs.send(&encode(&run, 0).unwrap()).unwrap();
            }
            want.push(encode(&run, 0).unwrap());
        }
        jobs.flush().unwrap();
        lagging = want.pop();
        for w in want {
            let body = job_in.recv().unwrap().ack();
            assert_eq!(decode(&body).unwrap(), decode(&w).unwrap());
            assert_eq!(body, w);
            job_in.recycle(body);
        }
    }
    assert_eq!(placed, 100, "every other frame went straight into the ring");
    // A frame that does not fit in the free space is not placed, and nothing is written.
    let big = vec![1u8; MIN_CAPACITY];
    let run = Frame::Run {
        id: 1,
        job: "j".into(),
        input: Payload::borrowed(&big),
        context: None,
    };
    assert!(!jobs.send_value(&run, encoded_size(&run).unwrap()).unwrap());
    // A size that is not the frame's: an error, and nothing is published.
    let small = Frame::StateFailed { reason: "x".into() };
    assert!(matches!(
        jobs.send_value(&small, 1),
        Err(WireError::Encode(_))
    ));
    assert!(matches!(
        jobs.send_value(&small, 100),
        Err(WireError::Encode(_))
    ));
    jobs.send(b"after").unwrap();
    jobs.flush().unwrap();
    assert_eq!(job_in.recv().unwrap().ack(), lagging.unwrap());
    assert_eq!(job_in.recv().unwrap().ack(), b"after");
}

#[test]
fn a_frame_goes_back_to_the_start_when_everything_was_read_and_it_fits_there() {
    let Linked {
        rings,
        mut jobs,
        mut job_in,
        _alive,
        ..
    } = linked();
    let cap = MIN_CAPACITY as u64;
    let tail = || {
        rings
            .region
            .position(Dir::Jobs, 0)
            .load(std::sync::atomic::Ordering::Acquire)
    };
    let send = |jobs: &mut super::RingSink, body: &[u8]| {
        jobs.send(body).unwrap();
        jobs.flush().unwrap();
    };
    // Not back to the start while the ring was hardly used (the room for a pipeline stays).
    send(&mut jobs, &[1; 100]);
    assert_eq!(tail(), 104);
    assert_eq!(job_in.recv().unwrap().ack(), [1; 100]);
    send(&mut jobs, &[1; 50]);
    assert_eq!(tail(), 158);
    assert_eq!(job_in.recv().unwrap().ack(), [1; 50]);
    send(&mut jobs, &[5; 20_000]);
    assert_eq!(tail(), 20_162);
    assert_eq!(job_in.recv().unwrap().ack(), [5; 20_000]);
    // A frame that fails to encode leaves the ring as it was: no mark, its room whole.
    let bad = crate::wire::Frame::StateFailed { reason: "x".into() };
    assert!(matches!(
        jobs.send_value(&bad, 100),
        Err(WireError::Encode(_))
    ));
    jobs.flush().unwrap();
    assert_eq!(tail(), 20_162);
    assert_eq!(jobs.room() as u64, cap);
    // Read, past 16 KiB, and small: at the start of the ring's next turn; the room left is what
    // lies before the mark.
    send(&mut jobs, &[2; 50]);
    assert_eq!(tail(), cap + 54);
    assert_eq!(jobs.room() as u64, 20_162 - 54);
    assert_eq!(job_in.recv().unwrap().ack(), [2; 50]);
    assert_eq!(jobs.room() as u64, cap);
    // Not read yet: the next frame goes after it.
    send(&mut jobs, &[3; 200]);
    send(&mut jobs, &[4; 10]);
    assert_eq!(tail(), cap + 272);
    assert_eq!(job_in.recv().unwrap().ack(), [3; 200]);
    assert_eq!(job_in.recv().unwrap().ack(), [4; 10]);
    // A large frame goes on where the last ended, however far that is.
    send(&mut jobs, &[6; 30_000]);
    assert_eq!(job_in.recv().unwrap().ack(), [6; 30_000]);
    send(&mut jobs, &[7; 5_000]);
    assert_eq!(tail(), cap + 272 + 30_004 + 5_004);
    assert_eq!(job_in.recv().unwrap().ack(), [7; 5_000]);
    // A thousand round trips of small frames stay within the ring's first 20 KiB.
    for i in 0..1000usize {
        let body = vec![i as u8; i % 300];
        send(&mut jobs, &body);
        assert!(
            tail() % cap < 20 << 10,
            "round trip {i} at offset {}",
            tail() % cap
        );
        assert_eq!(job_in.recv().unwrap().ack(), body);
    }
}

#[test]
fn the_reader_follows_a_restart_mark_and_refuses_one_out_of_place() {
    use std::sync::atomic::Ordering::Release;
    let cap = MIN_CAPACITY as u64;
    let skip = u32::MAX.to_le_bytes();
    // An answers ring as a child left it: a first frame of `first` bytes read, then `marks`
    // written and `tail` published.
    let read = |first: u64, tail: u64, marks: &[(u64, &[u8])]| {
        let rings = Rings::new(MIN_CAPACITY).unwrap();
        let (child_gone, child_dies) = watch();
        let (_jobs, mut answers) = rings.parent_ends(child_gone, MAX, Duration::ZERO);
        let len = u32::try_from(first - 4).unwrap().to_le_bytes();
        rings.region.write_at(Dir::Answers, 0, &len);
        let published = rings.region.position(Dir::Answers, 0);
        published.store(first, Release);
        assert_eq!(answers.recv().unwrap().ack().len() as u64, first - 4);
        for (at, bytes) in marks {
            rings.region.write_at(Dir::Answers, *at, bytes);
        }
        published.store(tail, Release);
        drop(child_dies);
        let mut got = Vec::new();
        let end = loop {
            match answers.recv() {
                Ok(d) => got.push(d.ack()),
                Err(e) => break e,
            }
        };
        (got, end)
    };
    let frame = [3, 0, 0, 0, b'a', b'b', b'c'];
    // A mark at offset 100: the frame at the ring's next start is read, then the clean end.
    let (got, end) = read(100, cap + 7, &[(100, &skip), (0, &frame)]);
    assert_eq!((got, end), (vec![b"abc".to_vec()], WireError::Closed));
    // Two bytes before the ring's end, where no mark fits: refused.
    let (got, end) = read(cap - 2, cap + 9, &[(cap - 2, &skip), (2, &frame)]);
    assert!(got.is_empty());
    assert!(matches!(end, WireError::Decode(_)), "{end:?}");
    // At the ring's start, where no writer puts one: refused.
    let (got, end) = read(cap, cap + 11, &[(0, &skip), (4, &frame)]);
    assert!(got.is_empty());
    assert!(matches!(end, WireError::Decode(_)), "{end:?}");
    // Sending the reader past what was written: refused.
    let (got, end) = read(100, 111, &[(100, &skip), (104, &frame)]);
    assert!(got.is_empty());
    assert!(matches!(end, WireError::Decode(_)), "{end:?}");
}
