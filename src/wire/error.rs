//! [`WireError`]: what went wrong on the wire.

use std::io;

/// What went wrong on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum WireError {
    /// A frame is larger than the configured limit (raise `ProcessConfig::max_frame` or send less).
    #[error("frame of {size} bytes is over the limit of {limit} bytes")]
    FrameTooLarge {
        /// The frame's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("the stream ended in the middle of a frame")]
    Truncated,
    /// The stream ended cleanly between frames.
    #[error("the stream is closed")]
    Closed,
    /// The bytes are not a valid frame.
    #[error("undecodable frame: {0}")]
    Decode(String),
    /// A value could not be encoded.
    #[error("unencodable frame: {0}")]
    Encode(String),
    /// The other side speaks another protocol version.
    #[error("protocol version mismatch: we speak {ours}, the other side {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u32,
        /// Theirs.
        theirs: u32,
    },
    /// A valid frame arrived where the protocol does not allow it.
    #[error("unexpected frame: {0}")]
    Unexpected(String),
    /// The other side sent no handshake within this time.
    #[error("no handshake within {0:?}")]
    NoHandshake(std::time::Duration),
    /// The transport failed.
    #[error("transport error: {0}")]
    Io(String),
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => WireError::Truncated,
            _ => WireError::Io(e.to_string()),
        }
    }
}
