//! The ring's reader against what a hostile child wrote (the fuzz target and the tests).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{Dir, Rings, MIN_CAPACITY};

/// For the fuzz target (feature `fuzzing`) and the tests: a parent's reader over an answers ring whose
/// positions (`tail`, `head`) and bytes a hostile child wrote, the child already gone. Returns the
/// sizes of the frames read before the first error (at most 64).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_hostile(tail: u64, head: u64, bytes: &[u8], max_frame: usize) -> Vec<usize> {
    let rings = Rings::new(MIN_CAPACITY).expect("a ring for the fuzzer");
    let (gone, _) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
    let n = bytes.len().min(MIN_CAPACITY);
    rings.region.write_at(Dir::Answers, 0, &bytes[..n]);
    rings
        .region
        .position(Dir::Answers, 0)
        .store(tail, Ordering::Release);
    rings
        .region
        .position(Dir::Answers, 1)
        .store(head, Ordering::Release);
    let (_jobs, mut source) = rings.parent_ends(Arc::new(gone.into()), max_frame, Duration::ZERO);
    let mut sizes = Vec::new();
    while sizes.len() < 64 {
        match crate::wire::transport::FrameSource::recv(&mut source) {
            Ok(d) => sizes.push(d.body.len()),
            Err(_) => break,
        }
    }
    sizes
}
