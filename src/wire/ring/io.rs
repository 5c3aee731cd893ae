//! The two ends of a ring as a carrier: [`RingSink`] writes frames, [`RingSource`] reads them.

use std::sync::atomic::Ordering;

use super::watch::{Knock, Watch};
use super::{hostile, Dir, End, Region};
use crate::wire::error::WireError;
use crate::wire::frame::Frame;
use crate::wire::transport::{announced, prefix, retain, reuse, Delivery, FrameSink, FrameSource};

/// A length no frame has: "the next frame starts at the ring's start" (see [`RingSink`]).
const SKIP: u32 = u32::MAX;

/// The largest frame (its length included) that goes back to the ring's start. Larger ones go on
/// where the last ended: rewriting the same lines while the reader's core still holds them costs
/// more than writing lines that left every cache (64 KiB round trips took about 1.5x as long).
const RESTART_MAX: u64 = 4 << 10;

/// How far into the ring the last frame must have ended for the next to go back to its start.
/// The bytes skipped stay in use until the reader reads past the mark, so the room left for the
/// frames that follow (a worker's pipeline of jobs) is at least this less the frame.
const RESTART_AT: u64 = 16 << 10;

/// The length prefix of a ring frame: as on the pipe, except that [`SKIP`] is never a length.
fn ring_prefix(size: usize, max_frame: usize) -> Result<[u8; 4], WireError> {
    prefix(size, max_frame.min(SKIP as usize - 1))
}

/// Writes length-prefixed frames into one ring; [`flush`](FrameSink::flush) publishes them.
///
/// When the reader has read everything, the last frame ended past [`RESTART_AT`] and the next is
/// small ([`RESTART_MAX`]), that frame goes to the ring's start instead, after a [`SKIP`] mark
/// that sends the reader there: traffic of small frames that comes and goes (jobs and answers
/// read as they come) keeps to the ring's first few pages, where always writing on would sweep
/// the whole ring and keep all of its pages resident (up to 2 MiB a worker by default).
pub(crate) struct RingSink {
    end: End,
    dir: Dir,
    /// Where the next byte goes; published as the ring's tail on flush.
    tail: u64,
    max_frame: usize,
    /// The last flush woke the reader: it was asleep.
    woke: bool,
}

impl RingSink {
    pub(super) fn new(end: End, dir: Dir, max_frame: usize) -> Self {
        RingSink {
            end,
            dir,
            tail: 0,
            max_frame,
            woke: false,
        }
    }

    /// Free bytes, checking the head the other side wrote.
    fn free(&self) -> Result<u64, WireError> {
        let head = self.end.head(self.dir).load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        if used > self.end.capacity() {
            return Err(hostile("the reader's position is out of bounds"));
        }
        Ok(self.end.capacity() - used)
    }

    /// Whether the last [`flush`](FrameSink::flush) had to wake the reader (it slept).
    pub(crate) fn woke_reader(&self) -> bool {
        self.woke
    }

    /// Bytes that can be written now without waiting for the reader (0 when the reader's
    /// position is out of bounds: the next write says so).
    pub(crate) fn room(&self) -> usize {
        self.free()
            .map_or(0, |f| usize::try_from(f).unwrap_or(usize::MAX))
    }

    /// Where a frame of `need` bytes (its length included) starts, and the bytes free from there:
    /// at the ring's next start when the reader has read everything and the ring's rules say so
    /// (see [`RingSink`]), at the tail otherwise. The reader's position is read once.
    fn start_for(&self, need: u64) -> Result<(u64, u64), WireError> {
        let free = self.free()?;
        let cap = self.end.capacity();
        let at = self.tail & (cap - 1);
        // Not for a large frame, a ring hardly used since its start, a mark that would not fit
        // before its end, or bytes the reader has not read (they stay where they are).
        if need <= RESTART_MAX && at >= RESTART_AT && cap - at >= 4 && free == cap {
            return Ok((self.tail.wrapping_add(cap - at), at));
        }
        Ok((self.tail, free))
    }

    /// Moves the tail to `start` (from [`start_for`](Self::start_for)), leaving a [`SKIP`] mark
    /// where the reader will look next when that is a restart. The room left is then the offset
    /// where the last frame ended: a caller's count of free bytes must be read again
    /// ([`room`](Self::room)).
    fn restart_at(&mut self, start: u64) {
        if start != self.tail {
            let mark = SKIP.to_le_bytes();
            self.end.region.write_at(self.dir, self.tail, &mark);
            self.tail = start;
        }
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), WireError> {
        while !bytes.is_empty() {
            let mut free = self.free()?;
            if free == 0 {
                // Full: let the reader see what is written, and wait for it to make room.
                self.flush()?;
                let waiter = self.end.space_waiter(self.dir);
                let room = self.end.wait(waiter, || Ok(self.free()? > 0))?;
                if !room {
                    return Err(WireError::Io("the other side is gone".into()));
                }
                free = self.free()?;
            }
            let n = bytes.len().min(usize::try_from(free).unwrap_or(usize::MAX));
            self.end.region.write_at(self.dir, self.tail, &bytes[..n]);
            self.tail = self.tail.wrapping_add(n as u64);
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

impl FrameSink for RingSink {
    fn send(&mut self, body: &[u8]) -> Result<(), WireError> {
        let len = ring_prefix(body.len(), self.max_frame)?;
        let (start, _) = self.start_for(4 + body.len() as u64)?;
        self.restart_at(start);
        self.write_all(&len)?;
        self.write_all(body)
    }

    /// Encodes the frame in the ring's free space when all of it fits there now; it becomes
    /// visible at the next flush, like a sent one.
    fn send_value(&mut self, frame: &Frame<'_>, size: usize) -> Result<bool, WireError> {
        let len = ring_prefix(size, self.max_frame)?;
        // Where it goes, and the free bytes from there; the restart (if any) happens only once
        // the frame is written: a frame that fails to encode leaves the ring as it was.
        let (at, free) = self.start_for(4 + size as u64)?;
        if 4 + size as u64 > free {
            return Ok(false);
        }
        let region = &*self.end.region;
        region.write_at(self.dir, at, &len);
        let start = at.wrapping_add(4);
        let flavor = InRing {
            region,
            dir: self.dir,
            at: start,
            left: size,
        };
        let end = postcard::serialize_with_flavor(frame, flavor)
            .map_err(|e| WireError::Encode(e.to_string()))?;
        if end != start.wrapping_add(size as u64) {
            // Not the size it was said to be: nothing is published (the tail stays).
            return Err(WireError::Encode(format!(
                "a frame said to take {size} bytes took {}",
                end.wrapping_sub(start)
            )));
        }
        self.restart_at(at);
        self.tail = end;
        Ok(true)
    }

    fn flush(&mut self) -> Result<(), WireError> {
        let (tail, waiter) = (self.end.tail(self.dir), self.end.data_waiter(self.dir));
        self.woke = self.end.publish(tail, self.tail, waiter);
        Ok(())
    }
}

/// postcard's output written straight into a ring's free space, which this side owns until it
/// publishes its tail (copies through raw pointers, wrapping at the end of the ring, as every
/// write to the ring is). Its output is the position after the last byte.
struct InRing<'a> {
    region: &'a Region,
    dir: Dir,
    at: u64,
    /// Bytes it may still write.
    left: usize,
}

impl postcard::ser_flavors::Flavor for InRing<'_> {
    type Output = u64;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.try_extend(&[byte])
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if bytes.len() > self.left {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.region.write_at(self.dir, self.at, bytes);
        self.at = self.at.wrapping_add(bytes.len() as u64);
        self.left -= bytes.len();
        Ok(())
    }

    fn finalize(self) -> postcard::Result<u64> {
        Ok(self.at)
    }
}

/// Reads length-prefixed frames out of one ring, releasing each frame's bytes once copied out.
pub(crate) struct RingSource {
    end: End,
    dir: Dir,
    /// The next byte to read; published as the ring's head after each frame.
    head: u64,
    max_frame: usize,
    /// The last body given back, copied into next.
    spare: Vec<u8>,
}

impl RingSource {
    pub(super) fn new(end: End, dir: Dir, max_frame: usize) -> Self {
        RingSource {
            end,
            dir,
            head: 0,
            max_frame,
            spare: Vec::new(),
        }
    }

    /// Bytes written and not read yet, checking the tail the other side wrote.
    fn available(&self) -> Result<u64, WireError> {
        let tail = self.end.tail(self.dir).load(Ordering::Acquire);
        let ready = tail.wrapping_sub(self.head);
        if ready > self.end.capacity() {
            return Err(hostile("the writer's position is out of bounds"));
        }
        Ok(ready)
    }

    fn release(&self) {
        let (head, waiter) = (self.end.head(self.dir), self.end.space_waiter(self.dir));
        self.end.publish(head, self.head, waiter);
    }

    /// Fills `buf`, waiting for the writer as needed. `boundary`: no byte of this frame was read
    /// yet, so the writer's end here is a clean close.
    fn read_exact(&mut self, buf: &mut [u8], boundary: bool) -> Result<(), WireError> {
        let mut got = 0;
        while got < buf.len() {
            let mut ready = self.available()?;
            if ready == 0 {
                // Let a writer streaming a large frame go on, then wait for more.
                self.release();
                let waiter = self.end.data_waiter(self.dir);
                if !self.end.wait(waiter, || Ok(self.available()? > 0))? {
                    return Err(if boundary && got == 0 {
                        WireError::Closed
                    } else {
                        WireError::Truncated
                    });
                }
                ready = self.available()?;
            }
            let n = (buf.len() - got).min(usize::try_from(ready).unwrap_or(usize::MAX));
            self.end
                .region
                .read_at(self.dir, self.head, &mut buf[got..got + n]);
            self.head = self.head.wrapping_add(n as u64);
            got += n;
        }
        Ok(())
    }
}

/// Sharing the reading of answers with a helper: an awaiting thread that reads its own answer
/// (see `worker::process::answers`). Whoever reads holds the source (a lock); the reader thread
/// waits for frames through a [`Watch`], without holding it.
impl RingSource {
    /// The position of the next byte to read.
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// Whether the writer has published bytes this side has not read.
    ///
    /// # Errors
    ///
    /// When the writer's position is out of bounds.
    pub(crate) fn has_data(&self) -> Result<bool, WireError> {
        Ok(self.available()? > 0)
    }

    /// What the reader thread waits with while it does not hold this source.
    pub(crate) fn watch(&self) -> Watch {
        Watch::new(self.end.clone(), self.dir)
    }

    /// What wakes the thread waiting on this side's bell, from any thread.
    pub(crate) fn knock(&self) -> Knock {
        Knock::new(self.end.own.clone())
    }

    /// The next frame's body when all of it is in the ring now, `None` when it is not (nothing
    /// written, or a frame still being written, or one larger than the ring): never waits.
    ///
    /// # Errors
    ///
    /// As [`recv`](FrameSource::recv), for a hostile writer's positions, marks and lengths.
    pub(crate) fn try_recv(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        loop {
            let ready = self.available()?;
            if ready < 4 {
                return Ok(None);
            }
            let mut len = [0u8; 4];
            self.end.region.read_at(self.dir, self.head, &mut len);
            if u32::from_le_bytes(len) == SKIP {
                self.head = self.after_mark(self.head)?;
                continue;
            }
            let size = announced(len, self.max_frame)?;
            if ready - 4 < size as u64 {
                return Ok(None);
            }
            let mut body = reuse(&mut self.spare, size);
            let at = self.head.wrapping_add(4);
            self.end.region.read_at(self.dir, at, &mut body);
            self.head = at.wrapping_add(size as u64);
            self.release();
            return Ok(Some(body));
        }
    }

    /// Where the next frame starts after a restart mark at `at`: at the ring's next start. A
    /// mark where the writer never puts one (at the start, or too near the end to fit) would
    /// move nowhere: refused.
    fn after_mark(&self, at: u64) -> Result<u64, WireError> {
        let cap = self.end.capacity();
        let offset = at & (cap - 1);
        if offset == 0 || cap - offset < 4 {
            return Err(hostile("a restart mark out of place"));
        }
        Ok(at.wrapping_add(cap - offset))
    }

    /// Whether the other side has read everything this side wrote to it through the region's
    /// other ring (for the parent: the child took every job sent, so it is running, or done).
    pub(crate) fn peer_took_all(&self) -> bool {
        let other = match self.dir {
            Dir::Jobs => Dir::Answers,
            Dir::Answers => Dir::Jobs,
        };
        let tail = self.end.tail(other).load(Ordering::Acquire);
        self.end.head(other).load(Ordering::Acquire) == tail
    }

    /// A helper starts reading: the writer need not ring the reader thread's bell meanwhile.
    pub(crate) fn help_begin(&self) {
        self.end.data_waiter(self.dir).swap(0, Ordering::AcqRel);
    }

    /// A helper stops reading. With `look`, the reader thread is woken to look at the ring (a
    /// frame the helper left, a frame still to come that it should spin for, a protocol error
    /// the helper found); without, the writer rings it for the next frame, as if it slept.
    pub(crate) fn help_end(&self, look: bool) {
        let waiter = self.end.data_waiter(self.dir);
        if !look {
            waiter.store(1, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            // A frame published before the writer could see the flag (the writer did not ring),
            // or a position out of bounds (for the reader to report): the reader looks now.
            let look_now = self.available().map_or(true, |n| n > 0);
            if !look_now || waiter.swap(0, Ordering::AcqRel) == 0 {
                return;
            }
        }
        self.end.own.ring();
    }
}

impl FrameSource for RingSource {
    fn recv(&mut self) -> Result<Delivery, WireError> {
        let mut len = [0u8; 4];
        loop {
            let at = self.head;
            self.read_exact(&mut len, true)?;
            if u32::from_le_bytes(len) != SKIP {
                break;
            }
            self.head = self.after_mark(at)?;
        }
        let mut body = reuse(&mut self.spare, announced(len, self.max_frame)?);
        self.read_exact(&mut body, false)?;
        self.release();
        Ok(Delivery::once(body))
    }

    fn recycle(&mut self, body: Vec<u8>) {
        retain(&mut self.spare, body);
    }
}
