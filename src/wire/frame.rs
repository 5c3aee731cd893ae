//! The frames of the protocol, in one type: [`Frame`] borrows its names and payloads where it can,
//! so the same type encodes from borrowed data (no copy of a job's input to frame it) and decodes
//! into views of the received buffer (no copy of an answer to read it).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::error::WireError;

/// The protocol version both sides must speak.
pub(crate) const PROTOCOL_VERSION: u32 = 4;

/// Why a job did not produce an output, as the child reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Fault {
    /// The job panicked (and unwound); the message is the payload.
    Panicked(String),
    /// The child does not know the job's name.
    UnknownJob(String),
    /// The input did not decode or the output did not encode (or its frame is over the limit).
    Wire(WireError),
}

/// Bytes that travel as one block (not as a sequence of numbers), borrowed when they can be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Payload<'a>(#[serde(borrow, with = "serde_bytes")] pub(crate) Cow<'a, [u8]>);

impl<'a> Payload<'a> {
    pub(crate) fn borrowed(bytes: &'a [u8]) -> Self {
        Payload(Cow::Borrowed(bytes))
    }
}

/// One message of the protocol. A connection opens with `Hello` both ways (the parent's lists no
/// jobs; the child's lists the jobs it serves, or the child answers `StateFailed` and exits); then
/// the parent sends `Run` or `RunBatch` and the child answers each, in order, with `Done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Frame<'a> {
    /// The handshake: the sender's protocol version and the job names it serves.
    Hello { version: u32, jobs: Vec<String> },
    /// Run one job: the parent's id for the run (the answer carries it back), the job's
    /// registered name, its encoded input.
    Run {
        id: u64,
        #[serde(borrow)]
        job: Cow<'a, str>,
        #[serde(borrow)]
        input: Payload<'a>,
        /// A remote job's id and delivery ([`job_context`](crate::job_context)).
        #[serde(borrow)]
        context: Option<RunContext<'a>>,
    },
    /// Run a chunk of jobs of one type, in order; the answer is one `Done` whose output encodes
    /// each job's `Result<bytes, Fault>` ([`BatchAnswers`]), in order.
    RunBatch {
        id: u64,
        #[serde(borrow)]
        job: Cow<'a, str>,
        #[serde(borrow)]
        inputs: Vec<Payload<'a>>,
        #[serde(borrow)]
        context: Option<RunContext<'a>>,
    },
    /// The answer to a `Run` or `RunBatch`: the encoded output, or why there is none.
    Done {
        id: u64,
        #[serde(borrow)]
        result: Result<Payload<'a>, Fault>,
    },
    /// The child's answer to the parent's `Hello` in place of its own when its worker state could
    /// not be set up: why, in words. The child exits next.
    StateFailed { reason: String },
}

/// A job's context on the wire: its id and delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunContext<'a> {
    #[serde(borrow)]
    pub(crate) id: Cow<'a, str>,
    pub(crate) delivery: u64,
}

/// What a child answered to the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Greeting {
    /// Ready: the job names it serves.
    Ready(Vec<String>),
    /// Its worker state set-up failed, for this reason; it is exiting.
    StateFailed(String),
}

impl Frame<'_> {
    /// The frame's variant name, for error messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "Hello",
            Frame::Run { .. } => "Run",
            Frame::RunBatch { .. } => "RunBatch",
            Frame::Done { .. } => "Done",
            Frame::StateFailed { .. } => "StateFailed",
        }
    }
}

/// A chunk's answers, in order: what the output of a `RunBatch`'s `Done` decodes to. The child
/// writes it one answer at a time ([`begin_answers`], [`push_answer`]).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) type BatchAnswers = Vec<Result<serde_bytes::ByteBuf, Fault>>;

/// [`BatchAnswers`] as the parent decodes them: each answer a view of the received frame (one
/// allocation per chunk instead of one per job).
pub(crate) type BatchAnswerViews<'a> = Vec<Result<&'a serde_bytes::Bytes, Fault>>;

/// Encodes a frame's body (without the length prefix) into a buffer sized for `payload` bytes
/// up front, so a large payload is not copied by repeated growth.
///
/// # Errors
///
/// [`WireError::Encode`] when the codec refuses the frame (every field of a [`Frame`] encodes,
/// so in practice this does not happen). The size limit is the transport's to check.
pub(crate) fn encode(frame: &Frame<'_>, payload: usize) -> Result<Vec<u8>, WireError> {
    postcard::to_extend(frame, Vec::with_capacity(payload + 64))
        .map_err(|e| WireError::Encode(e.to_string()))
}

/// Encodes any serde value with the wire's codec (a chunk's answers, inside a `Done`).
#[cfg_attr(not(test), allow(dead_code))] // the child streams a chunk's answers (`push_answer`)
pub(crate) fn encode_value<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    postcard::to_allocvec(value).map_err(|e| WireError::Encode(e.to_string()))
}

/// Appends a value encoded with the wire's codec to `buf` (a buffer reused from frame to frame,
/// so that no frame costs a fresh allocation); returns the bytes appended. On an error `buf` is
/// left as it was.
///
/// # Errors
///
/// [`WireError::Encode`] when the value does not encode.
pub(crate) fn encode_value_into<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<usize, WireError> {
    let start = buf.len();
    match postcard::to_io(value, &mut *buf) {
        Ok(_) => Ok(buf.len() - start),
        Err(e) => {
            buf.truncate(start);
            Err(WireError::Encode(e.to_string()))
        }
    }
}

/// The size of a value's encoding, computed without encoding it (a payload counts its length).
///
/// # Errors
///
/// [`WireError::Encode`] when the value does not encode.
pub(crate) fn encoded_size<T: Serialize + ?Sized>(value: &T) -> Result<usize, WireError> {
    postcard::experimental::serialized_size(value).map_err(|e| WireError::Encode(e.to_string()))
}

/// Starts [`BatchAnswers`] of `count` answers in `buf`, to be followed by exactly `count`
/// [`push_answer`]s: the same bytes as encoding the whole vector, without holding each answer in
/// its own buffer first.
///
/// # Errors
///
/// As [`encode_value_into`] (it does not fail in practice).
pub(crate) fn begin_answers(count: usize, buf: &mut Vec<u8>) -> Result<usize, WireError> {
    // A sequence's length prefix is its length as a `usize`.
    encode_value_into(&count, buf)
}

/// Appends one answer of [`BatchAnswers`] begun with [`begin_answers`].
///
/// # Errors
///
/// As [`encode_value_into`] (it does not fail in practice).
pub(crate) fn push_answer(
    answer: Result<&[u8], &Fault>,
    buf: &mut Vec<u8>,
) -> Result<usize, WireError> {
    encode_value_into(&answer.map(serde_bytes::Bytes::new), buf)
}

/// Decodes a frame's body, borrowing its payloads from `bytes`; arbitrary bytes give an error,
/// never a panic.
///
/// # Errors
///
/// [`WireError::Decode`] when `bytes` do not decode as a [`Frame`] (an unknown variant, a body
/// cut short, a name that is not UTF-8...).
pub(crate) fn decode(bytes: &[u8]) -> Result<Frame<'_>, WireError> {
    postcard::from_bytes(bytes).map_err(|e| WireError::Decode(e.to_string()))
}

/// The `Hello` this side sends: our version and the jobs we serve.
pub(crate) fn hello(jobs: Vec<String>) -> Result<Vec<u8>, WireError> {
    encode(
        &Frame::Hello {
            version: PROTOCOL_VERSION,
            jobs,
        },
        0,
    )
}

/// Checks the other side's `Hello`: the right frame, the right version. Returns the job names it
/// lists.
///
/// # Errors
///
/// [`WireError::Decode`] when `body` is not a frame; [`WireError::VersionMismatch`] for a
/// `Hello` of another [`PROTOCOL_VERSION`]; [`WireError::Unexpected`] for any other frame.
pub(crate) fn check_hello(body: &[u8]) -> Result<Vec<String>, WireError> {
    match decode(body)? {
        Frame::Hello { version, jobs } if version == PROTOCOL_VERSION => Ok(jobs),
        Frame::Hello { version, .. } => Err(WireError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: version,
        }),
        other => Err(WireError::Unexpected(format!(
            "expected Hello, got {}",
            other.name()
        ))),
    }
}

/// Checks a child's answer to the handshake: its `Hello` (as [`check_hello`] does) or a
/// `StateFailed`.
///
/// # Errors
///
/// As [`check_hello`], for anything but those two.
pub(crate) fn greeting(body: &[u8]) -> Result<Greeting, WireError> {
    match decode(body)? {
        Frame::StateFailed { reason } => Ok(Greeting::StateFailed(reason)),
        _ => check_hello(body).map(Greeting::Ready),
    }
}
