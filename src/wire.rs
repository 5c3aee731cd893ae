//! The wire protocol between a pool and its worker processes.
//!
//! Frames are serde values encoded with [postcard] and sent with a 4-byte little-endian length
//! prefix. A connection opens with a handshake: the parent sends [`Frame::Hello`] with its
//! [`PROTOCOL_VERSION`]; the child answers with its own `Hello` listing the job names it serves.
//! Then the parent sends [`Frame::Run`] and the child answers each, in order, with [`Frame::Done`].
//!
//! The frames do not depend on the pipe: a [`Transport`] moves whole frames, so a message broker
//! can carry the same bytes later. [`PipeTransport`] is the length-prefixed byte-stream transport
//! used between a parent and its children.
//!
//! ```
//! use circuits::wire::{decode, encode, Frame, PROTOCOL_VERSION};
//!
//! let bytes = encode(&Frame::Hello { version: PROTOCOL_VERSION, jobs: vec!["square".into()] }).unwrap();
//! match decode(&bytes).unwrap() {
//!     Frame::Hello { version, jobs } => assert_eq!((version, jobs), (PROTOCOL_VERSION, vec!["square".to_string()])),
//!     other => panic!("unexpected {other:?}"),
//! }
//! assert!(decode(&[0xff, 0xff, 0xff]).is_err()); // garbage is an error, never a panic
//! ```

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// The protocol version both sides must speak.
pub const PROTOCOL_VERSION: u32 = 1;

/// The default largest frame, in bytes (64 MiB).
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// What went wrong on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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

/// Why a job did not produce an output, as the child reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// The job panicked (and unwound); the message is the payload.
    Panicked(String),
    /// The child does not know the job's name.
    UnknownJob(String),
    /// The input did not decode or the output did not encode.
    Wire(String),
}

/// One message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// The handshake, both ways: the protocol version, and (from the child) the jobs it serves.
    Hello {
        /// [`PROTOCOL_VERSION`] of the sender.
        version: u32,
        /// Job names the sender serves (empty from the parent).
        jobs: Vec<String>,
    },
    /// Run a job.
    Run {
        /// The parent's id for this run; the answer carries it back.
        id: u64,
        /// The job's registered name.
        job: String,
        /// The job's encoded input.
        #[serde(with = "serde_bytes")]
        input: Vec<u8>,
    },
    /// Run a chunk of jobs of one type, in order; the answer is one `Done` whose output encodes
    /// each job's `Result<Vec<u8>, Fault>`, in order.
    RunBatch {
        /// The parent's id for this run.
        id: u64,
        /// The jobs' registered name.
        job: String,
        /// Each job's encoded input.
        inputs: Vec<serde_bytes::ByteBuf>,
    },
    /// The answer to a `Run` or `RunBatch`.
    Done {
        /// The run's id.
        id: u64,
        /// The encoded output, or why there is none.
        result: Result<serde_bytes::ByteBuf, Fault>,
    },
}

/// The same encoding as [`Frame::Run`] and [`Frame::RunBatch`], from borrowed data, so that a
/// job's input is not copied just to be framed. The variant order must match [`Frame`]'s.
#[derive(Serialize)]
enum FrameRef<'a> {
    #[allow(dead_code)]
    Hello { version: u32, jobs: &'a [String] },
    Run {
        id: u64,
        job: &'a str,
        #[serde(with = "serde_bytes")]
        input: &'a [u8],
    },
    RunBatch {
        id: u64,
        job: &'a str,
        inputs: &'a [serde_bytes::ByteBuf],
    },
}

/// Encodes into a buffer sized up front, so a large payload is not copied by repeated growth.
fn encode_sized<T: Serialize>(value: &T, payload: usize) -> Result<Vec<u8>, WireError> {
    postcard::to_extend(value, Vec::with_capacity(payload + 64))
        .map_err(|e| WireError::Encode(e.to_string()))
}

/// Encodes a `Run` frame without copying the input.
pub(crate) fn encode_run(id: u64, job: &str, input: &[u8]) -> Result<Vec<u8>, WireError> {
    encode_sized(&FrameRef::Run { id, job, input }, input.len())
}

/// Encodes a `Done` frame around an output without copying it.
pub(crate) fn encode_done(id: u64, result: Result<&[u8], &Fault>) -> Result<Vec<u8>, WireError> {
    let size = result.map_or(0, <[u8]>::len);
    encode_sized(&FrameOut::Done { id, result }, size)
}

/// The borrowed twin of [`Frame::Done`] for encoding (variant order must match [`Frame`]'s).
#[derive(Serialize)]
enum FrameOut<'a> {
    #[allow(dead_code)]
    Hello { version: u32, jobs: &'a [String] },
    #[allow(dead_code)]
    Run { id: u64 },
    #[allow(dead_code)]
    RunBatch { id: u64 },
    Done {
        id: u64,
        #[serde(with = "result_bytes")]
        result: Result<&'a [u8], &'a Fault>,
    },
}

/// A frame decoded without copying its byte payloads out of the received buffer.
#[derive(Debug, Deserialize)]
pub(crate) enum FrameIn<'a> {
    Hello {
        #[allow(dead_code)]
        version: u32,
        #[allow(dead_code)]
        jobs: Vec<String>,
    },
    Run {
        id: u64,
        job: &'a str,
        #[serde(borrow, with = "serde_bytes")]
        input: &'a [u8],
    },
    RunBatch {
        id: u64,
        job: &'a str,
        #[serde(borrow)]
        inputs: Vec<&'a serde_bytes::Bytes>,
    },
    Done {
        id: u64,
        #[serde(borrow, with = "result_bytes")]
        result: Result<&'a [u8], Fault>,
    },
}

/// Decodes a frame, borrowing its payloads from `bytes`.
pub(crate) fn decode_borrowed(bytes: &[u8]) -> Result<FrameIn<'_>, WireError> {
    postcard::from_bytes(bytes).map_err(|e| WireError::Decode(e.to_string()))
}

/// `Result<&[u8], Fault>` with the bytes as one block, the same encoding as
/// `Result<ByteBuf, Fault>`.
mod result_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Fault;

    #[derive(Serialize)]
    enum Out<'a> {
        Ok(#[serde(with = "serde_bytes")] &'a [u8]),
        Err(&'a Fault),
    }

    #[derive(Deserialize)]
    enum In<'a> {
        Ok(#[serde(borrow, with = "serde_bytes")] &'a [u8]),
        Err(Fault),
    }

    pub fn serialize<S: Serializer>(r: &Result<&[u8], &Fault>, s: S) -> Result<S::Ok, S::Error> {
        match r {
            Ok(b) => Out::Ok(b),
            Err(f) => Out::Err(f),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Result<&'de [u8], Fault>, D::Error> {
        Ok(match In::deserialize(d)? {
            In::Ok(b) => Ok(b),
            In::Err(f) => Err(f),
        })
    }
}

/// Encodes a `RunBatch` frame without copying the inputs.
pub(crate) fn encode_run_batch(
    id: u64,
    job: &str,
    inputs: &[serde_bytes::ByteBuf],
) -> Result<Vec<u8>, WireError> {
    encode_value(&FrameRef::RunBatch { id, job, inputs })
}

/// A chunk's answers, in order: what the output of a `RunBatch`'s `Done` decodes to.
pub type BatchAnswers = Vec<Result<serde_bytes::ByteBuf, Fault>>;

/// Encodes a frame's body (without the length prefix).
///
/// # Errors
///
/// [`WireError::Encode`] when the codec refuses the frame (every field of a [`Frame`] encodes,
/// so in practice this does not happen). The size limit is not checked here but by
/// [`write_frame`].
pub fn encode(frame: &Frame) -> Result<Vec<u8>, WireError> {
    postcard::to_allocvec(frame).map_err(|e| WireError::Encode(e.to_string()))
}

/// Encodes any serde value with the wire's codec.
pub(crate) fn encode_value<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    postcard::to_allocvec(value).map_err(|e| WireError::Encode(e.to_string()))
}

/// Decodes a frame's body; arbitrary bytes give an error, never a panic.
///
/// # Errors
///
/// [`WireError::Decode`] when `bytes` do not decode as a [`Frame`] (an unknown variant, a body
/// cut short, a name that is not UTF-8...).
pub fn decode(bytes: &[u8]) -> Result<Frame, WireError> {
    postcard::from_bytes(bytes).map_err(|e| WireError::Decode(e.to_string()))
}

/// Moves whole frames between two ends. The pipe between a pool and its children is one; a broker
/// would be another.
pub trait Transport {
    /// Sends one frame body.
    ///
    /// # Errors
    ///
    /// [`WireError::FrameTooLarge`] when the body is over the transport's limit (nothing is
    /// sent); [`WireError::Io`] when the transport fails.
    fn send(&mut self, body: &[u8]) -> Result<(), WireError>;
    /// Makes everything sent so far visible to the other side.
    ///
    /// # Errors
    ///
    /// [`WireError::Io`] when the transport fails.
    fn flush(&mut self) -> Result<(), WireError>;
    /// Receives the next frame body.
    ///
    /// # Errors
    ///
    /// [`WireError::Closed`] at a clean end of stream (between frames);
    /// [`WireError::Truncated`] when it ends inside a frame; [`WireError::FrameTooLarge`] when the
    /// announced body is over the limit; [`WireError::Io`] when the transport fails.
    fn recv(&mut self) -> Result<Vec<u8>, WireError>;
}

/// Length-prefixed frames over a byte stream (pipes), with a size limit enforced both ways.
#[derive(Debug)]
pub struct PipeTransport<R, W> {
    reader: R,
    writer: W,
    max_frame: usize,
}

impl<R: Read, W: Write> PipeTransport<R, W> {
    /// Frames over `reader` and `writer`, none larger than `max_frame` bytes.
    pub fn new(reader: R, writer: W, max_frame: usize) -> Self {
        PipeTransport {
            reader,
            writer,
            max_frame,
        }
    }
}

/// Reads one length-prefixed frame body from `r`, refusing bodies over `max_frame` before
/// allocating them.
///
/// # Errors
///
/// [`WireError::Closed`] when the stream ends cleanly before a frame; [`WireError::Truncated`]
/// when it ends inside one; [`WireError::FrameTooLarge`] when the length prefix announces more
/// than `max_frame` bytes (the body is not read); [`WireError::Io`] for any other read error.
pub fn read_frame(r: &mut impl Read, max_frame: usize) -> Result<Vec<u8>, WireError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(WireError::Closed),
            Ok(0) => return Err(WireError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let size = u32::from_le_bytes(len) as usize;
    if size > max_frame {
        return Err(WireError::FrameTooLarge {
            size,
            limit: max_frame,
        });
    }
    let mut body = vec![0u8; size];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// Writes one length-prefixed frame body to `w`, refusing bodies over `max_frame`.
///
/// # Errors
///
/// [`WireError::FrameTooLarge`] when `body` is over `max_frame` (or over `u32::MAX` bytes):
/// nothing is written. [`WireError::Io`] when writing fails (part of the frame may have been
/// written).
pub fn write_frame(w: &mut impl Write, body: &[u8], max_frame: usize) -> Result<(), WireError> {
    if body.len() > max_frame || body.len() > u32::MAX as usize {
        return Err(WireError::FrameTooLarge {
            size: body.len(),
            limit: max_frame,
        });
    }
    w.write_all(&(body.len() as u32).to_le_bytes())?;
    w.write_all(body)?;
    Ok(())
}

impl<R: Read, W: Write> Transport for PipeTransport<R, W> {
    fn send(&mut self, body: &[u8]) -> Result<(), WireError> {
        write_frame(&mut self.writer, body, self.max_frame)
    }
    fn flush(&mut self) -> Result<(), WireError> {
        self.writer.flush().map_err(Into::into)
    }
    fn recv(&mut self) -> Result<Vec<u8>, WireError> {
        read_frame(&mut self.reader, self.max_frame)
    }
}

/// Checks the other side's `Hello`: the right frame, the right version. Returns the job names it
/// lists.
///
/// # Errors
///
/// [`WireError::Decode`] when `body` is not a frame; [`WireError::VersionMismatch`] for a
/// `Hello` of another [`PROTOCOL_VERSION`]; [`WireError::Unexpected`] for any other frame.
pub fn check_hello(body: &[u8]) -> Result<Vec<String>, WireError> {
    match decode(body)? {
        Frame::Hello { version, jobs } if version == PROTOCOL_VERSION => Ok(jobs),
        Frame::Hello { version, .. } => Err(WireError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: version,
        }),
        other => Err(WireError::Unexpected(format!(
            "expected Hello, got {}",
            frame_name(&other)
        ))),
    }
}

/// The frame's variant name, for error messages.
pub fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::Hello { .. } => "Hello",
        Frame::Run { .. } => "Run",
        Frame::RunBatch { .. } => "RunBatch",
        Frame::Done { .. } => "Done",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_a_pipe_transport() {
        let mut buf = Vec::new();
        let run = Frame::Run {
            id: 7,
            job: "j".into(),
            input: vec![1, 2, 3],
        };
        write_frame(&mut buf, &encode(&run).unwrap(), 1024).unwrap();
        let mut t = PipeTransport::new(&buf[..], Vec::new(), 1024);
        assert_eq!(decode(&t.recv().unwrap()).unwrap(), run);
        assert_eq!(t.recv(), Err(WireError::Closed));
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
    fn borrowed_run_frames_encode_like_owned_ones() {
        let owned = encode(&Frame::Run {
            id: 3,
            job: "echo".into(),
            input: vec![9; 300],
        })
        .unwrap();
        assert_eq!(encode_run(3, "echo", &[9; 300]).unwrap(), owned);
        let inputs = vec![
            serde_bytes::ByteBuf::from(vec![1, 2]),
            serde_bytes::ByteBuf::from(vec![]),
        ];
        let owned = encode(&Frame::RunBatch {
            id: 4,
            job: "j".into(),
            inputs: inputs.clone(),
        })
        .unwrap();
        assert_eq!(encode_run_batch(4, "j", &inputs).unwrap(), owned);
    }

    #[test]
    fn borrowed_done_frames_match_owned_ones_both_ways() {
        let owned = Frame::Done {
            id: 9,
            result: Ok(serde_bytes::ByteBuf::from(vec![5; 70])),
        };
        let bytes = encode(&owned).unwrap();
        assert_eq!(encode_done(9, Ok(&[5; 70])).unwrap(), bytes);
        match decode_borrowed(&bytes).unwrap() {
            FrameIn::Done {
                id: 9,
                result: Ok(b),
            } => assert_eq!(b, &[5; 70][..]),
            other => panic!("{other:?}"),
        }
        let fault = Fault::Panicked("x".into());
        let failed = encode(&Frame::Done {
            id: 1,
            result: Err(fault.clone()),
        })
        .unwrap();
        assert_eq!(encode_done(1, Err(&fault)).unwrap(), failed);
        let run = encode(&Frame::Run {
            id: 2,
            job: "j".into(),
            input: vec![1, 2, 3],
        })
        .unwrap();
        match decode_borrowed(&run).unwrap() {
            FrameIn::Run {
                id: 2,
                job: "j",
                input,
            } => assert_eq!(input, &[1, 2, 3][..]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_version_mismatch_is_named() {
        let hello = encode(&Frame::Hello {
            version: 99,
            jobs: vec![],
        })
        .unwrap();
        assert_eq!(
            check_hello(&hello),
            Err(WireError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: 99
            })
        );
    }
}
