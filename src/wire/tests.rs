//! The wire's own tests: frames round-trip through the pipe carrier, errors are named, and
//! arbitrary or corrupted bytes give a frame or a named error, never a panic, and never an
//! allocation past the limit (`fuzz/` holds a cargo-fuzz target for longer runs).

use std::borrow::Cow;

use proptest::prelude::*;

use super::frame::{encode_value, BatchAnswers, RunContext, PROTOCOL_VERSION};
use super::transport::{read_frame, write_frame};
use super::*;

fn run<'a>(id: u64, job: &'a str, input: &'a [u8]) -> Frame<'a> {
    Frame::Run {
        id,
        job: Cow::Borrowed(job),
        input: Payload::borrowed(input),
        context: None,
    }
}

#[test]
fn frames_round_trip_through_the_pipe_carrier() {
    let mut sink = PipeSink::new(Vec::new(), 1024);
    let body = encode(&run(7, "j", &[1, 2, 3]), 3).unwrap();
    sink.send(&body).unwrap();
    sink.flush().unwrap();
    let bytes = sink.out.into_inner().unwrap();
    let mut source = PipeSource::new(&bytes[..], 1024);
    let delivery = source.recv().unwrap();
    assert_eq!(delivery.attempt, 1);
    let got = delivery.ack();
    assert_eq!(decode(&got).unwrap(), run(7, "j", &[1, 2, 3]));
    assert!(matches!(source.recv(), Err(WireError::Closed)));
}

#[test]
fn a_recycled_body_is_read_into_again_and_frames_stay_whole() {
    let mut sink = PipeSink::new(Vec::new(), 1 << 20);
    for (i, size) in [5000usize, 100, 0, 70_000, 3].into_iter().enumerate() {
        sink.send(&encode(&run(i as u64, "j", &vec![i as u8; size]), size).unwrap())
            .unwrap();
    }
    sink.flush().unwrap();
    let bytes = sink.out.into_inner().unwrap();
    let mut source = PipeSource::new(&bytes[..], 1 << 20);
    let mut last: Option<*const u8> = None;
    for (i, size) in [5000usize, 100, 0, 70_000, 3].into_iter().enumerate() {
        let body = source.recv().unwrap().ack();
        assert_eq!(
            decode(&body).unwrap(),
            run(i as u64, "j", &vec![i as u8; size])
        );
        if i == 1 {
            // Smaller than the first: read into the first one's memory.
            assert_eq!(Some(body.as_ptr()), last);
        }
        last = Some(body.as_ptr());
        source.recycle(body);
    }
    assert!(matches!(source.recv(), Err(WireError::Closed)));
}

#[test]
fn decoding_borrows_the_payload_from_the_received_buffer() {
    let body = encode(&run(2, "j", &[1, 2, 3]), 3).unwrap();
    match decode(&body).unwrap() {
        Frame::Run {
            id: 2,
            job: Cow::Borrowed("j"),
            input: Payload(Cow::Borrowed(input)),
            context: None,
        } => assert_eq!(input, &[1, 2, 3][..]),
        other => panic!("{other:?}"),
    }
    let done = encode(
        &Frame::Done {
            id: 9,
            result: Ok(Payload::borrowed(&[5; 70])),
        },
        70,
    )
    .unwrap();
    match decode(&done).unwrap() {
        Frame::Done {
            id: 9,
            result: Ok(Payload(Cow::Borrowed(b))),
        } => assert_eq!(b, &[5; 70][..]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn oversized_and_truncated_frames_are_named_errors() {
    let mut buf = Vec::new();
    assert_eq!(
        write_frame(&mut buf, &[0; 11], 10),
        Err(WireError::FrameTooLarge {
            size: 11,
            limit: 10
        })
    );
    let header = 1000u32.to_le_bytes();
    assert_eq!(
        read_frame(&mut &header[..], 10),
        Err(WireError::FrameTooLarge {
            size: 1000,
            limit: 10
        })
    );
    let mut cut = 5u32.to_le_bytes().to_vec();
    cut.extend([1, 2]);
    assert_eq!(read_frame(&mut &cut[..], 10), Err(WireError::Truncated));
    assert_eq!(
        read_frame(&mut &[1u8, 0][..], 10),
        Err(WireError::Truncated)
    );
}

#[test]
fn a_frame_exactly_at_the_limit_passes_and_one_byte_over_does_not() {
    let mut buf = Vec::new();
    write_frame(&mut buf, &[7u8; 100], 100).unwrap();
    assert_eq!(read_frame(&mut &buf[..], 100).unwrap().len(), 100);
    assert_eq!(
        read_frame(&mut &buf[..], 99),
        Err(WireError::FrameTooLarge {
            size: 100,
            limit: 99
        })
    );
    assert_eq!(
        write_frame(&mut Vec::new(), &[0u8; 101], 100),
        Err(WireError::FrameTooLarge {
            size: 101,
            limit: 100
        })
    );
}

#[test]
fn a_version_mismatch_is_named() {
    let hello = encode(
        &Frame::Hello {
            version: 99,
            jobs: vec![],
        },
        0,
    )
    .unwrap();
    assert_eq!(
        check_hello(&hello),
        Err(WireError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: 99
        })
    );
}

#[test]
fn a_greeting_is_a_hello_or_a_failed_state_set_up() {
    let ready = hello(vec!["square".into()]).unwrap();
    assert_eq!(
        greeting(&ready),
        Ok(Greeting::Ready(vec!["square".to_string()]))
    );
    let failed = encode(
        &Frame::StateFailed {
            reason: "no database".into(),
        },
        0,
    )
    .unwrap();
    assert_eq!(
        greeting(&failed),
        Ok(Greeting::StateFailed("no database".into()))
    );
    // Only the child answers with it: as a handshake's first frame it is not a Hello.
    assert!(matches!(
        check_hello(&failed),
        Err(WireError::Unexpected(_))
    ));
    let run = encode(
        &Frame::Done {
            id: 1,
            result: Err(Fault::Panicked("x".into())),
        },
        0,
    )
    .unwrap();
    assert!(matches!(greeting(&run), Err(WireError::Unexpected(_))));
}

fn frame() -> impl Strategy<Value = Frame<'static>> {
    prop_oneof![
        (any::<u32>(), proptest::collection::vec(".{0,12}", 0..4))
            .prop_map(|(version, jobs)| Frame::Hello { version, jobs }),
        (
            any::<u64>(),
            ".{0,16}",
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(id, job, input)| Frame::Run {
                id,
                job: Cow::Owned(job),
                input: Payload(Cow::Owned(input)),
                context: None,
            }),
        (
            any::<u64>(),
            ".{0,16}",
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8)
        )
            .prop_map(|(id, job, inputs)| Frame::RunBatch {
                id,
                context: (id % 2 == 0).then(|| RunContext {
                    id: Cow::Owned(job.clone()),
                    delivery: id / 2,
                }),
                job: Cow::Owned(job),
                inputs: inputs.into_iter().map(|i| Payload(Cow::Owned(i))).collect(),
            }),
        (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300)).prop_map(|(id, b)| {
            Frame::Done {
                id,
                result: Ok(Payload(Cow::Owned(b))),
            }
        }),
        (any::<u64>(), ".{0,20}").prop_map(|(id, m)| Frame::Done {
            id,
            result: Err(Fault::Panicked(m)),
        }),
        ".{0,40}".prop_map(|reason| Frame::StateFailed { reason }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
        let _ = check_hello(&bytes);
        // As a stream: whatever the length prefix says, the reader stays within the limit.
        let mut r = &bytes[..];
        loop {
            match read_frame(&mut r, 256) {
                Ok(body) => {
                    prop_assert!(body.len() <= 256);
                    let _ = decode(&body);
                }
                Err(WireError::Closed) | Err(WireError::Truncated) | Err(WireError::FrameTooLarge { .. }) => break,
                Err(e) => prop_assert!(false, "unexpected error {e:?}"),
            }
        }
    }

    #[test]
    fn every_frame_round_trips(f in frame()) {
        let body = encode(&f, 0).unwrap();
        prop_assert_eq!(decode(&body).unwrap(), f);
    }

    #[test]
    fn a_frame_appended_to_a_reused_buffer_is_the_same_bytes(
        f in frame(), g in frame(), junk in proptest::collection::vec(any::<u8>(), 0..64)
    ) {
        // What a buffer held before is kept, the frame follows it, and the length is its own.
        let mut buf = junk.clone();
        let n = encode_value_into(&f, &mut buf).unwrap();
        let m = encode_value_into(&g, &mut buf).unwrap();
        let (f_body, g_body) = (encode(&f, 0).unwrap(), encode(&g, 0).unwrap());
        prop_assert_eq!(&buf[..junk.len()], &junk[..]);
        prop_assert_eq!(&buf[junk.len()..junk.len() + n], &f_body[..]);
        prop_assert_eq!(&buf[junk.len() + n..], &g_body[..]);
        prop_assert_eq!(n + m + junk.len(), buf.len());
    }

    #[test]
    fn a_chunks_answers_written_one_by_one_are_the_whole_vectors_bytes(
        answers in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..300).prop_map(Ok),
                ".{0,20}".prop_map(|m| Err(Fault::Panicked(m))),
                ".{0,20}".prop_map(|n| Err(Fault::UnknownJob(n))),
            ],
            0..40,
        )
    ) {
        let whole: BatchAnswers = answers
            .iter()
            .map(|a| a.clone().map(serde_bytes::ByteBuf::from))
            .collect();
        let mut streamed = vec![9u8; 3]; // after whatever the buffer held
        begin_answers(answers.len(), &mut streamed).unwrap();
        for a in &answers {
            push_answer(a.as_deref(), &mut streamed).unwrap();
        }
        prop_assert_eq!(&streamed[3..], &encode_value(&whole).unwrap()[..]);
        let views: BatchAnswerViews<'_> = postcard::from_bytes(&streamed[3..]).unwrap();
        prop_assert_eq!(views.len(), answers.len());
    }

    #[test]
    fn a_corrupted_frame_is_an_error_or_another_frame_never_a_panic(
        f in frame(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()
    ) {
        let mut body = encode(&f, 0).unwrap();
        for (at, x) in flips {
            let i = at % body.len();
            body[i] ^= x;
        }
        let _ = decode(&body);
        let _ = decode(&body[..cut % (body.len() + 1)]);
    }

    #[test]
    fn the_handshake_accepts_only_our_version(version in any::<u32>()) {
        let body = encode(&Frame::Hello { version, jobs: vec!["j".into()] }, 0).unwrap();
        match check_hello(&body) {
            Ok(jobs) => {
                prop_assert_eq!(version, PROTOCOL_VERSION);
                prop_assert_eq!(jobs, vec!["j".to_string()]);
            }
            Err(e) => prop_assert_eq!(e, WireError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: version }),
        }
    }
}
