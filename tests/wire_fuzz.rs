//! Fuzzing the wire: the frame reader, the decoders and the handshake check are fed arbitrary bytes
//! and must answer with a named error or a frame, never a panic, and never allocate past the limit.
//! (`fuzz/` holds a cargo-fuzz target for longer runs; see docs/architecture.md.)

use circuits::wire::{self, Frame, WireError, PROTOCOL_VERSION};
use proptest::prelude::*;

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (any::<u32>(), proptest::collection::vec(".{0,12}", 0..4))
            .prop_map(|(version, jobs)| Frame::Hello { version, jobs }),
        (
            any::<u64>(),
            ".{0,16}",
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(id, job, input)| Frame::Run { id, job, input }),
        (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300)).prop_map(|(id, b)| {
            Frame::Done {
                id,
                result: Ok(serde_bytes::ByteBuf::from(b)),
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = wire::decode(&bytes);
        let _ = wire::check_hello(&bytes);
        // As a stream: whatever the length prefix says, the reader stays within the limit.
        let mut r = &bytes[..];
        loop {
            match wire::read_frame(&mut r, 256) {
                Ok(body) => {
                    prop_assert!(body.len() <= 256);
                    let _ = wire::decode(&body);
                }
                Err(WireError::Closed) | Err(WireError::Truncated) | Err(WireError::FrameTooLarge { .. }) => break,
                Err(e) => prop_assert!(false, "unexpected error {e:?}"),
            }
        }
    }

    #[test]
    fn every_frame_round_trips(f in frame()) {
        let body = wire::encode(&f).unwrap();
        prop_assert_eq!(wire::decode(&body).unwrap(), f);
    }

    #[test]
    fn a_corrupted_frame_is_an_error_or_another_frame_never_a_panic(
        f in frame(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()
    ) {
        let mut body = wire::encode(&f).unwrap();
        for (at, x) in flips {
            let i = at % body.len();
            body[i] ^= x;
        }
        let _ = wire::decode(&body);
        let _ = wire::decode(&body[..cut % (body.len() + 1)]);
    }

    #[test]
    fn the_handshake_accepts_only_our_version(version in any::<u32>()) {
        let hello = wire::encode(&Frame::Hello { version, jobs: vec!["j".into()] }).unwrap();
        match wire::check_hello(&hello) {
            Ok(jobs) => {
                prop_assert_eq!(version, PROTOCOL_VERSION);
                prop_assert_eq!(jobs, vec!["j".to_string()]);
            }
            Err(e) => prop_assert_eq!(e, WireError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: version }),
        }
    }
}

#[test]
fn a_frame_exactly_at_the_limit_passes_and_one_byte_over_does_not() {
    let mut buf = Vec::new();
    wire::write_frame(&mut buf, &[7u8; 100], 100).unwrap();
    assert_eq!(wire::read_frame(&mut &buf[..], 100).unwrap().len(), 100);
    assert_eq!(
        wire::read_frame(&mut &buf[..], 99),
        Err(WireError::FrameTooLarge {
            size: 100,
            limit: 99
        })
    );
    assert_eq!(
        wire::write_frame(&mut Vec::new(), &[0u8; 101], 100),
        Err(WireError::FrameTooLarge {
            size: 101,
            limit: 100
        })
    );
}
