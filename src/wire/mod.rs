//! The wire protocol between a pool and its worker processes (internal).
//!
//! Frames ([`frame`]) are serde values encoded with postcard, one type for both directions that
//! borrows its payloads. They travel through a carrier ([`transport`]): a [`FrameSink`] and a
//! [`FrameSource`] delivering each frame as a [`Delivery`] with its attempt count and an
//! acknowledgement. The pipe between a parent and its children is one carrier (a 4-byte
//! little-endian length prefix before each body, a size limit enforced on both sides before
//! allocating); the parent's host and reader and the child all speak through it. A message broker
//! is another carrier behind the same traits.
//!
//! A connection opens with a handshake: the parent sends `Hello` with its protocol version; the
//! child sets up its worker state, then answers with its own `Hello` listing the job names it
//! serves (or with `StateFailed` and why, and exits). Then the parent sends
//! `Run` (or `RunBatch`) and the child answers each, in order, with `Done`.

mod error;
pub(crate) mod frame;
#[cfg(all(feature = "process", target_os = "linux"))]
pub(crate) mod ring;
pub(crate) mod transport;

pub use error::WireError;
pub(crate) use frame::{
    begin_answers, check_hello, decode, encode, encode_value_into, encoded_size, greeting, hello,
    push_answer, BatchAnswerViews, Fault, Frame, Greeting, Payload, RunContext,
};
pub(crate) use transport::{FrameSink, FrameSource, PipeSink, PipeSource};

/// The default largest frame, in bytes (64 MiB).
pub(crate) const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// The wire's decoders and frame reader, for the cargo-fuzz target in `fuzz/` (feature `fuzzing`;
/// not part of the API).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes a frame body; `Ok` when it is a frame.
    pub fn decode(bytes: &[u8]) -> bool {
        super::decode(bytes).is_ok()
    }
    /// Checks a handshake body; `Ok` when it is our `Hello`.
    pub fn check_hello(bytes: &[u8]) -> bool {
        super::check_hello(bytes).is_ok()
    }
    /// Reads one length-prefixed frame of at most `max_frame` bytes from `stream`.
    pub fn read_frame(stream: &mut &[u8], max_frame: usize) -> Option<Vec<u8>> {
        super::transport::read_frame(stream, max_frame).ok()
    }
    /// Reads frames of at most `max_frame` bytes from a shared-memory answers ring whose tail,
    /// head and bytes a dead hostile child wrote; the sizes of the frames read.
    #[cfg(target_os = "linux")]
    pub fn read_ring(tail: u64, head: u64, bytes: &[u8], max_frame: usize) -> Vec<usize> {
        super::ring::read_hostile(tail, head, bytes, max_frame)
    }
}

#[cfg(test)]
mod tests;
