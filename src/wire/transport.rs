//! How frames travel: a [`FrameSink`] sends whole frame bodies, a [`FrameSource`] delivers them,
//! each as a [`Delivery`] that says how many times the carrier has delivered it and can be
//! acknowledged. Between a pool and its child processes the carrier is a pipe (length-prefixed
//! frames, [`PipeSink`] and [`PipeSource`]: every delivery is a first one, and acknowledging is a
//! no-op); a message broker is another carrier behind the same two traits, where an
//! acknowledgement removes the message, a negative one asks for a redelivery and "in progress"
//! holds off the broker's redelivery timer.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::time::Duration;

use super::error::WireError;
use super::frame::Frame;

/// What a carrier does with a delivered frame once its receiver has dealt with it. A broker's
/// implementation hands the request to its client without blocking the caller. The pipe has
/// nothing to acknowledge; `nak` and `in_progress` are for carriers that redeliver.
#[allow(dead_code)] // the first carrier that redelivers (a broker) implements and calls them
pub(crate) trait Acknowledge: Send {
    /// Done with it: the carrier may forget the frame.
    fn ack(self: Box<Self>);
    /// Not done: deliver it again, after `delay` if given.
    fn nak(self: Box<Self>, delay: Option<Duration>);
    /// Still working on it: hold off the redelivery.
    fn in_progress(&self);
}

/// One frame as a carrier delivered it.
pub(crate) struct Delivery {
    /// The frame's body.
    pub(crate) body: Vec<u8>,
    /// How many times the carrier has delivered this frame (1 the first time).
    pub(crate) attempt: u32,
    acknowledge: Option<Box<dyn Acknowledge>>,
}

impl Delivery {
    /// A frame delivered once, by a carrier with nothing to acknowledge (a pipe).
    pub(crate) fn once(body: Vec<u8>) -> Self {
        Delivery {
            body,
            attempt: 1,
            acknowledge: None,
        }
    }

    /// A frame delivered `attempt` times, acknowledged through `acknowledge`.
    #[allow(dead_code)] // the first carrier that redelivers (a broker) uses it
    pub(crate) fn acknowledged(
        body: Vec<u8>,
        attempt: u32,
        acknowledge: Box<dyn Acknowledge>,
    ) -> Self {
        Delivery {
            body,
            attempt,
            acknowledge: Some(acknowledge),
        }
    }

    /// Acknowledges the frame and keeps its body.
    pub(crate) fn ack(mut self) -> Vec<u8> {
        if let Some(a) = self.acknowledge.take() {
            a.ack();
        }
        self.body
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("bytes", &self.body.len())
            .field("attempt", &self.attempt)
            .finish()
    }
}

/// Sends whole frame bodies, buffered until [`flush`](FrameSink::flush).
pub(crate) trait FrameSink: Send {
    /// Queues one frame body.
    ///
    /// # Errors
    ///
    /// [`WireError::FrameTooLarge`] when the body is over the carrier's limit (nothing is
    /// queued); [`WireError::Io`] when the carrier fails.
    fn send(&mut self, body: &[u8]) -> Result<(), WireError>;
    /// Queues `frame`, whose encoding takes `size` bytes ([`encoded_size`]), encoding it
    /// straight into the carrier where the carrier can take it that way now (no buffer in
    /// between). Returns `Ok(false)`, having queued nothing, where it cannot: the caller then
    /// encodes the frame itself and [`send`](FrameSink::send)s it.
    ///
    /// [`encoded_size`]: crate::wire::frame::encoded_size
    ///
    /// # Errors
    ///
    /// As [`send`](FrameSink::send); [`WireError::Encode`] when the frame does not encode to
    /// `size` bytes (nothing is visible to the other side then).
    fn send_value(&mut self, _frame: &Frame<'_>, _size: usize) -> Result<bool, WireError> {
        Ok(false)
    }
    /// Makes everything sent so far visible to the other side.
    ///
    /// # Errors
    ///
    /// [`WireError::Io`] when the carrier fails.
    fn flush(&mut self) -> Result<(), WireError>;
}

/// Delivers whole frame bodies, in order.
pub(crate) trait FrameSource: Send {
    /// The next frame.
    ///
    /// # Errors
    ///
    /// [`WireError::Closed`] at a clean end (between frames); [`WireError::Truncated`] when the
    /// stream ends inside a frame; [`WireError::FrameTooLarge`] when a frame announces more than
    /// the limit (its body is not read); [`WireError::Io`] when the carrier fails.
    fn recv(&mut self) -> Result<Delivery, WireError>;

    /// Gives a delivered body back once its receiver is done with it, so that the next frame
    /// is read into the same memory instead of a fresh allocation (a carrier that allocates per
    /// frame keeps one such buffer, up to [`RETAIN`] bytes). Others drop it.
    fn recycle(&mut self, _body: Vec<u8>) {}
}

/// The largest buffer kept from frame to frame (a source's spare, a sender's encoding buffer):
/// a larger frame's memory is freed after it, so the largest frame ever seen does not stay
/// resident. Reusing buffers matters past a few KiB: each fresh one costs page faults, and
/// glibc hands the memory back to the kernel and takes it again when such buffers come and go.
pub(crate) const RETAIN: usize = 2 << 20;

/// A buffer of `len` bytes to read a frame into: `spare` (a body given back earlier) when there
/// is one. Its bytes are overwritten by the read: only what it grows by is zeroed.
pub(crate) fn reuse(spare: &mut Vec<u8>, len: usize) -> Vec<u8> {
    let mut body = std::mem::take(spare);
    body.resize(len, 0);
    body
}

/// Keeps `buf` for the next frame unless it is over [`RETAIN`] (its bytes stay: a reader
/// overwrites them, a writer clears it).
pub(crate) fn retain(spare: &mut Vec<u8>, buf: Vec<u8>) {
    if buf.capacity() <= RETAIN {
        *spare = buf;
    }
}

/// Length-prefixed frames written to a byte stream (a pipe), none over `max_frame` bytes.
pub(crate) struct PipeSink<W: Write> {
    pub(super) out: BufWriter<W>,
    max_frame: usize,
}

impl<W: Write> PipeSink<W> {
    pub(crate) fn new(out: W, max_frame: usize) -> Self {
        PipeSink {
            out: BufWriter::with_capacity(64 << 10, out),
            max_frame,
        }
    }
}

impl<W: Write + Send> FrameSink for PipeSink<W> {
    fn send(&mut self, body: &[u8]) -> Result<(), WireError> {
        write_frame(&mut self.out, body, self.max_frame)
    }

    fn flush(&mut self) -> Result<(), WireError> {
        self.out.flush().map_err(Into::into)
    }
}

/// Length-prefixed frames read from a byte stream (a pipe), none over `max_frame` bytes.
pub(crate) struct PipeSource<R: Read> {
    input: BufReader<R>,
    max_frame: usize,
    /// The last body given back, read into next.
    spare: Vec<u8>,
}

impl<R: Read> PipeSource<R> {
    pub(crate) fn new(input: R, max_frame: usize) -> Self {
        PipeSource {
            input: BufReader::with_capacity(64 << 10, input),
            max_frame,
            spare: Vec::new(),
        }
    }
}

impl<R: Read + Send> FrameSource for PipeSource<R> {
    fn recv(&mut self) -> Result<Delivery, WireError> {
        read_frame_into(&mut self.input, self.max_frame, &mut self.spare).map(Delivery::once)
    }

    fn recycle(&mut self, body: Vec<u8>) {
        retain(&mut self.spare, body);
    }
}

/// Reads one length-prefixed frame body from `r`, refusing bodies over `max_frame` before
/// allocating them.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_frame(r: &mut impl Read, max_frame: usize) -> Result<Vec<u8>, WireError> {
    read_frame_into(r, max_frame, &mut Vec::new())
}

/// [`read_frame`] into `spare`'s memory (see [`reuse`]).
fn read_frame_into(
    r: &mut impl Read,
    max_frame: usize,
    spare: &mut Vec<u8>,
) -> Result<Vec<u8>, WireError> {
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
    let mut body = reuse(spare, announced(len, max_frame)?);
    r.read_exact(&mut body)?;
    Ok(body)
}

/// The body size a length prefix announces, refused when over `max_frame` (checked before the
/// body is allocated, whatever carries it).
pub(crate) fn announced(prefix: [u8; 4], max_frame: usize) -> Result<usize, WireError> {
    let size = u32::from_le_bytes(prefix) as usize;
    if size > max_frame {
        return Err(WireError::FrameTooLarge {
            size,
            limit: max_frame,
        });
    }
    Ok(size)
}

/// The length prefix of a body of `size` bytes, refused when it is over `max_frame` or over what
/// the prefix can say (nothing is written then, whatever carries it).
pub(crate) fn prefix(size: usize, max_frame: usize) -> Result<[u8; 4], WireError> {
    match u32::try_from(size) {
        Ok(len) if size <= max_frame => Ok(len.to_le_bytes()),
        _ => Err(WireError::FrameTooLarge {
            size,
            limit: max_frame,
        }),
    }
}

/// Writes one length-prefixed frame body to `w`, refusing bodies over `max_frame` (nothing is
/// written then).
pub(crate) fn write_frame(
    w: &mut impl Write,
    body: &[u8],
    max_frame: usize,
) -> Result<(), WireError> {
    w.write_all(&prefix(body.len(), max_frame)?)?;
    w.write_all(body)?;
    Ok(())
}
