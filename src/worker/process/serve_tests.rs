//! The placer against a real ring: what it counts as room is what the ring takes.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use super::Placer;
use crate::wire::ring::{watch_pipe, Rings, MIN_CAPACITY};
use crate::wire::{Frame, FrameSink, FrameSource, Payload};
use crate::worker::process::answers::Answers;
use crate::worker::process::carrier::Input;

#[test]
fn a_first_frame_that_went_back_to_the_rings_start_leaves_only_the_room_before_it() {
    const MAX: usize = 1 << 20;
    let rings = Rings::new(MIN_CAPACITY).unwrap();
    let ((child_gone, _c), (parent_gone, _p)) = (watch_pipe(), watch_pipe());
    let (sink, source) = rings.parent_ends(child_gone, MAX, Duration::ZERO);
    let (shared, _host) = crate::worker::process::shared::Shared::for_tests(Duration::ZERO);
    let answers = Arc::new(Answers::new(shared, 0, source));
    let (mut jobs_in, _out) = rings.child_side(parent_gone, MAX, Duration::ZERO);
    let (sock, _other) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut input = Input::Ring {
        sink,
        answers,
        _sock: sock,
    };
    // The child read a 20 KiB job: the ring is empty, its next byte 20 KiB in.
    input.send(&[0; 20 << 10]).unwrap();
    input.flush().unwrap();
    assert_eq!(jobs_in.recv().unwrap().ack().len(), 20 << 10);
    let bytes_room = input.room().unwrap();
    assert_eq!(bytes_room, MIN_CAPACITY);
    // A relay's send: a small job (which goes back to the ring's start, leaving about 20 KiB
    // before the mark), then 3 KiB jobs while they fit.
    let mut placer = Placer {
        buf: Vec::new(),
        ends: Vec::new(),
        buffering: false,
        bytes_room,
        may_stream: false,
        max_frame: MAX,
    };
    let (small, large) = (vec![1u8; 10], vec![2u8; 3 << 10]);
    fn run(id: u64, input: &[u8]) -> Frame<'_> {
        Frame::Run {
            id,
            job: Cow::Borrowed("j"),
            input: Payload::borrowed(input),
            context: None,
        }
    }
    assert!(placer
        .place(&mut input, &run(0, &small), true)
        .unwrap()
        .is_some());
    let mut placed = 1;
    while placer
        .place(&mut input, &run(placed, &large), false)
        .unwrap()
        .is_some()
    {
        placed += 1;
        assert!(placed < 100, "the room never ran out");
    }
    // What it placed went straight into the ring: none waits in the buffer, where the host
    // would write it after the loop, waiting for a child that may be running a long job.
    assert!(
        !placer.buffering,
        "{placed} jobs placed, some in the buffer"
    );
    assert_eq!(
        placed, 7,
        "the small job and six of 3 KiB in the 20 KiB before the mark"
    );
    input.flush().unwrap();
    for id in 0..placed {
        let body = jobs_in.recv().unwrap().ack();
        let frame: Frame<'_> = crate::wire::decode(&body).unwrap();
        assert!(matches!(frame, Frame::Run { id: got, .. } if got == id));
    }
}
