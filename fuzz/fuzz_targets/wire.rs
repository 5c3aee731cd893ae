//! Feeds arbitrary bytes to the wire's frame reader, decoder and handshake check, and to the
//! shared-memory ring's reader as the positions and bytes a hostile child wrote: every input must
//! give frames or a named error, never a panic, and never a read past the size limit.
//!
//! cargo fuzz run wire            (from the repository root; see docs/architecture.md)

#![no_main]

use circuits::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::decode(data);
    let _ = fuzzing::check_hello(data);
    let mut stream = data;
    while let Some(body) = fuzzing::read_frame(&mut stream, 4096) {
        assert!(body.len() <= 4096);
        let _ = fuzzing::decode(&body);
    }
    if data.len() >= 16 {
        let tail = u64::from_le_bytes(data[..8].try_into().unwrap());
        let head = u64::from_le_bytes(data[8..16].try_into().unwrap());
        for size in fuzzing::read_ring(tail, head, &data[16..], 4096) {
            assert!(size <= 4096);
        }
    }
});
