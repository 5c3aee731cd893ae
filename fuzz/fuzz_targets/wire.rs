//! Feeds arbitrary bytes to the wire's frame reader, decoder and handshake check: every input must
//! give a frame or a named error, never a panic, and never a read past the size limit.
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
});
