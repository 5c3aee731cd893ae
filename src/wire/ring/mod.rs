//! Frames through shared memory: the carrier between a pool and a child process when the OS gives
//! us a shared mapping (Linux: a `memfd`, `eventfd`s and a `pidfd`), the pipe being the fallback.
//!
//! One region, mapped by the parent and the child, holds two byte rings: jobs (parent to child)
//! and answers (child to parent). Each ring has one producer and one consumer. A frame is the same
//! 4-byte little-endian length and body as on the pipe, written at the ring's tail (wrapping at its
//! end), or at the ring's start when the reader has read everything and it fits there (a mark
//! sends the reader to it); a frame larger than the ring streams through it in pieces. Writing and reading cost a
//! memory copy each and no system call: a side makes a system call only to wake the other one
//! when that one said it sleeps (an `eventfd` per sleeper), or to sleep itself.
//!
//! **Wake-ups are never lost.** A consumer about to sleep sets its ring's `data_waiter`, fences,
//! and looks at the tail once more; a producer publishes the tail, fences, and rings the bell if
//! `data_waiter` was set (taking it). One of the two sees the other's write (Dekker's pattern).
//! Space for a producer waiting on a full ring works the same way with `space_waiter`.
//!
//! **Crash attribution survives.** The child publishes each answer before it starts the next job,
//! as it flushed each one to the pipe: its answers stay readable in the parent's mapping after it
//! dies, and the parent reads them all before it calls the child gone (its `pidfd` says so).
//!
//! The child gets the memory and the bells over its stdin, a Unix stream socket (`SCM_RIGHTS`),
//! so that it is started with `posix_spawn` and inherits nothing else; closing that socket is how
//! the parent ends it.
//!
//! **Every byte from the child is hostile.** The parent keeps its own copy of the positions it
//! owns and checks the ones the child writes (a tail or head that claims more than the ring holds
//! is a protocol error), checks every length against the frame limit before allocating, and copies
//! a frame out of the ring before decoding it. The child checks the region's header (magic,
//! version, sizes) before using it.
//!
//! Files: this one (the region, its layout and each side's ends), `io` (the sink and the source),
//! `bell` (the `eventfd`s, and waiting on two descriptors), `pass` (handing descriptors over a
//! socket), `hostile` (the reader against a hostile child's bytes, for the fuzzer and the tests),
//! `watch` (waiting for frames while an awaiting thread may read them itself).
//!
//! Layout (all offsets in bytes): a 4 KiB header (magic, version, ring capacity; then each ring's
//! tail, head, `data_waiter` and `space_waiter`, each on its own cache line), then the jobs ring's
//! bytes, then the answers ring's.

mod bell;
#[cfg(test)]
mod help_tests;
#[cfg(any(test, feature = "fuzzing"))]
mod hostile;
mod io;
mod pass;
mod spin;
#[cfg(test)]
mod tests;
mod watch;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use bell::wait_either;
use bell::Bell;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use hostile::read_hostile;
pub(crate) use io::{RingSink, RingSource};
use spin::Spin;
pub(crate) use watch::{Knock, Watch};

use super::error::WireError;

const MAGIC: u64 = u64::from_le_bytes(*b"circring");
/// 2: frames may restart at the ring's start (a `SKIP` mark, see `io`).
const VERSION: u32 = 2;
const HEADER: usize = 4096;
const LINE: usize = 64;
/// Where each ring's control words start in the header.
const CONTROL: [usize; 2] = [LINE, 6 * LINE];
/// The smallest and largest capacity of one ring.
pub(crate) const MIN_CAPACITY: usize = 64 << 10;
pub(crate) const MAX_CAPACITY: usize = 1 << 30;

/// Which ring of a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Parent to child.
    Jobs = 0,
    /// Child to parent.
    Answers = 1,
}

/// A shared mapping of a `memfd`: the header and both rings.
pub(crate) struct Region {
    ptr: *mut u8,
    len: usize,
    capacity: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain shared memory; every access through `Region` goes through atomics
// (control words) or bounded copies of bytes published by the other side.
unsafe impl Send for Region {}
// SAFETY: see above.
unsafe impl Sync for Region {}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are the mapping made in `map`, unmapped once, here.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

fn os_err() -> WireError {
    WireError::Io(std::io::Error::last_os_error().to_string())
}

fn hostile(what: &str) -> WireError {
    WireError::Decode(format!("shared-memory ring: {what}"))
}

impl Region {
    /// A new region with rings of `capacity` bytes each (a power of two between
    /// [`MIN_CAPACITY`] and [`MAX_CAPACITY`]), its header written.
    fn create(capacity: usize) -> Result<Region, WireError> {
        debug_assert!(capacity.is_power_of_two());
        let len = HEADER + 2 * capacity;
        // SAFETY: memfd_create reads a NUL-terminated name and returns a new descriptor or -1.
        let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        let fd = unsafe { libc::memfd_create(c"circuits-ring".as_ptr(), flags) };
        if fd < 0 {
            return Err(os_err());
        }
        // SAFETY: a fresh descriptor that nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate on our own memfd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(os_err());
        }
        // Its size is fixed for good: a child (or a job in it) that truncated it would make the
        // parent's next access to the mapping a SIGBUS.
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on our own memfd, no memory involved.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(os_err());
        }
        let region = Region::map(fd, len, capacity)?;
        let header = region.ptr.cast::<u64>();
        // SAFETY: the header lies inside the fresh mapping, which nobody else sees yet; the
        // control words start zeroed (a new memfd reads as zeros).
        unsafe {
            header.write(MAGIC);
            header.cast::<u32>().add(2).write(VERSION);
            header.cast::<u32>().add(3).write(capacity as u32);
        }
        Ok(region)
    }

    /// The child's side: maps the region the parent made and checks its header.
    fn attach(fd: OwnedFd) -> Result<Region, WireError> {
        // SAFETY: fstat writes only into `st`, on this stack.
        let size = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd.as_raw_fd(), &mut st) != 0 {
                return Err(os_err());
            }
            st.st_size
        };
        let len = usize::try_from(size).map_err(|_| hostile("negative size"))?;
        if len < HEADER + 2 * MIN_CAPACITY {
            return Err(hostile("region too small"));
        }
        let mut region = Region::map(fd, len, 0)?;
        let header = region.ptr.cast::<u64>();
        // SAFETY: the header lies inside the mapping (checked above).
        let (magic, version, capacity) = unsafe {
            (
                header.read_volatile(),
                header.cast::<u32>().add(2).read_volatile(),
                header.cast::<u32>().add(3).read_volatile() as usize,
            )
        };
        if magic != MAGIC {
            return Err(hostile("not a ring (bad magic)"));
        }
        if version != VERSION {
            return Err(WireError::VersionMismatch {
                ours: VERSION,
                theirs: version,
            });
        }
        if !capacity.is_power_of_two()
            || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity)
            || HEADER + 2 * capacity != len
        {
            return Err(hostile("bad capacity"));
        }
        region.capacity = capacity;
        Ok(region)
    }

    fn map(fd: OwnedFd, len: usize, capacity: usize) -> Result<Region, WireError> {
        // SAFETY: a new shared mapping of `len` bytes of our memfd, at an address the kernel picks.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(os_err());
        }
        Ok(Region {
            ptr: ptr.cast(),
            len,
            capacity,
            fd,
        })
    }

    /// One of the four control words of ring `dir`: 0 tail, 1 head (as `AtomicU64`s).
    fn position(&self, dir: Dir, word: usize) -> &AtomicU64 {
        // SAFETY: inside the header, 8-byte aligned (the mapping is page aligned); the memory
        // lives as long as `self`, and is only ever accessed atomically.
        unsafe {
            &*self
                .ptr
                .add(CONTROL[dir as usize] + word * LINE)
                .cast::<AtomicU64>()
        }
    }

    /// 2: `data_waiter`, 3: `space_waiter` of ring `dir`.
    fn waiter(&self, dir: Dir, word: usize) -> &AtomicU32 {
        // SAFETY: as in `position`.
        unsafe {
            &*self
                .ptr
                .add(CONTROL[dir as usize] + word * LINE)
                .cast::<AtomicU32>()
        }
    }

    /// The first byte of ring `dir`'s data.
    fn data(&self, dir: Dir) -> *mut u8 {
        // SAFETY: inside the mapping: HEADER + 2 * capacity == len.
        unsafe { self.ptr.add(HEADER + dir as usize * self.capacity) }
    }

    /// Copies `src` into ring `dir` at position `at` (wrapping). The caller owns those bytes
    /// (between the published head and tail + capacity).
    fn write_at(&self, dir: Dir, at: u64, src: &[u8]) {
        let cap = self.capacity;
        debug_assert!(src.len() <= cap);
        let start = (at as usize) & (cap - 1);
        let first = src.len().min(cap - start);
        let data = self.data(dir);
        // SAFETY: both pieces lie inside the ring's `cap` bytes; `src` is our own memory.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), data.add(start), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), data, src.len() - first);
        }
    }

    /// Copies bytes out of ring `dir` from position `at` (wrapping) into `dst`.
    fn read_at(&self, dir: Dir, at: u64, dst: &mut [u8]) {
        let cap = self.capacity;
        debug_assert!(dst.len() <= cap);
        let start = (at as usize) & (cap - 1);
        let first = dst.len().min(cap - start);
        let data = self.data(dir);
        // SAFETY: both pieces lie inside the ring's `cap` bytes; `dst` is our own memory. (A
        // hostile writer racing this copy changes only the bytes we get, which we check.)
        unsafe {
            std::ptr::copy_nonoverlapping(data.add(start), dst.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(data, dst.as_mut_ptr().add(first), dst.len() - first);
        }
    }
}

/// What one end of a ring needs: the region, which ring, its own bell (to sleep on), the other
/// side's bell (to wake it), and the descriptor that fires when the other side is gone.
#[derive(Clone)]
pub(crate) struct End {
    region: Arc<Region>,
    own: Arc<Bell>,
    peer: Arc<Bell>,
    watch: Arc<OwnedFd>,
    /// How long a wait spins before it sleeps.
    spin: Spin,
}

/// The parent's half of a new region: it creates the memory and the three bells, gives the child
/// their descriptors, and keeps its own ends.
pub(crate) struct Rings {
    region: Arc<Region>,
    child: Arc<Bell>,
    reader: Arc<Bell>,
    host: Arc<Bell>,
}

impl Rings {
    /// A region with rings of `capacity` bytes each, rounded up to a power of two within
    /// [`MIN_CAPACITY`]..=[`MAX_CAPACITY`].
    ///
    /// # Errors
    ///
    /// [`WireError::Io`] when the OS refuses the memory or a bell (the caller falls back to the
    /// pipe).
    pub(crate) fn new(capacity: usize) -> Result<Rings, WireError> {
        let capacity = capacity
            .clamp(MIN_CAPACITY, MAX_CAPACITY)
            .next_power_of_two();
        Ok(Rings {
            region: Arc::new(Region::create(capacity)?),
            child: Arc::new(Bell::new()?),
            reader: Arc::new(Bell::new()?),
            host: Arc::new(Bell::new()?),
        })
    }

    /// Hands the child its descriptors (the memory and the three bells) over `sock`, a stream
    /// socket whose other end is the child's stdin.
    ///
    /// # Errors
    ///
    /// When the socket fails (the child is gone).
    pub(crate) fn send_to_child(&self, sock: &impl AsRawFd) -> std::io::Result<()> {
        let fds = [
            self.region.fd.as_raw_fd(),
            self.child.0.as_raw_fd(),
            self.reader.0.as_raw_fd(),
            self.host.0.as_raw_fd(),
        ];
        pass::send_fds(sock, &fds)
    }

    /// The child's ends of these rings: it reads jobs and writes answers, and stops waiting when
    /// `parent` fires. (The tests also call it in one process, on the parent's descriptors.)
    pub(crate) fn child_side(
        &self,
        parent: Arc<OwnedFd>,
        max_frame: usize,
        linger: Duration,
    ) -> (RingSource, RingSink) {
        let end = |peer| self.end(&self.child, peer, &parent, linger);
        (
            RingSource::new(end(&self.host), Dir::Jobs, max_frame),
            RingSink::new(end(&self.reader), Dir::Answers, max_frame),
        )
    }

    /// The parent's ends: the host writes jobs, the reader reads answers; both stop waiting when
    /// `child` (the child's `pidfd`) fires.
    pub(crate) fn parent_ends(
        &self,
        child: Arc<OwnedFd>,
        max_frame: usize,
        linger: Duration,
    ) -> (RingSink, RingSource) {
        let end = |own| self.end(own, &self.child, &child, linger);
        (
            RingSink::new(end(&self.host), Dir::Jobs, max_frame),
            RingSource::new(end(&self.reader), Dir::Answers, max_frame),
        )
    }

    /// An end of these rings that sleeps on `own`, rings `peer`, and stops waiting when `watch`
    /// fires.
    fn end(
        &self,
        own: &Arc<Bell>,
        peer: &Arc<Bell>,
        watch: &Arc<OwnedFd>,
        linger: Duration,
    ) -> End {
        End {
            region: self.region.clone(),
            own: own.clone(),
            peer: peer.clone(),
            watch: watch.clone(),
            spin: Spin::new(linger),
        }
    }
}

/// The child's ends: it receives the ring's descriptors from its parent over `parent` (its
/// stdin, a stream socket; see [`Rings::send_to_child`]), reads jobs and writes answers, and
/// stops waiting when `parent` hangs up (the parent closes it to end the child, or dies).
///
/// # Errors
///
/// When the parent sends something else than the ring's descriptors, or the region's header is
/// wrong.
pub(crate) fn child_ends(
    parent: OwnedFd,
    max_frame: usize,
    linger: Duration,
) -> Result<(RingSource, RingSink), WireError> {
    let fds = pass::recv_fds(&parent, 4)?;
    let Ok([memfd, child, reader, host]) = <[OwnedFd; 4]>::try_from(fds) else {
        return Err(hostile("not the ring's descriptors"));
    };
    let rings = Rings {
        region: Arc::new(Region::attach(memfd)?),
        child: Arc::new(Bell(child)),
        reader: Arc::new(Bell(reader)),
        host: Arc::new(Bell(host)),
    };
    Ok(rings.child_side(Arc::new(parent), max_frame, linger))
}

/// For the tests: a pipe standing for a side's `pidfd` (read end, to watch) and the write end
/// whose drop fires it.
#[cfg(test)]
pub(crate) fn watch_pipe() -> (Arc<OwnedFd>, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors, owned here once each.
    unsafe {
        (
            Arc::new(OwnedFd::from_raw_fd(fds[0])),
            OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

impl End {
    fn tail(&self, dir: Dir) -> &AtomicU64 {
        self.region.position(dir, 0)
    }
    fn head(&self, dir: Dir) -> &AtomicU64 {
        self.region.position(dir, 1)
    }
    fn data_waiter(&self, dir: Dir) -> &AtomicU32 {
        self.region.waiter(dir, 2)
    }
    fn space_waiter(&self, dir: Dir) -> &AtomicU32 {
        self.region.waiter(dir, 3)
    }
    fn capacity(&self) -> u64 {
        self.region.capacity as u64
    }

    /// Publishes `pos` in `word` and wakes the other side if it sleeps on `waiter`; says whether
    /// it did.
    fn publish(&self, word: &AtomicU64, pos: u64, waiter: &AtomicU32) -> bool {
        word.store(pos, Ordering::Release);
        std::sync::atomic::fence(Ordering::SeqCst);
        let asleep = waiter.load(Ordering::Relaxed) != 0 && waiter.swap(0, Ordering::AcqRel) != 0;
        if asleep {
            self.peer.ring();
        }
        asleep
    }

    /// Waits until `ready` holds (spinning first, then sleeping on the bell, saying so in
    /// `waiter`). Returns `Ok(false)` when the other side is gone and `ready` still does not
    /// hold.
    fn wait(
        &self,
        waiter: &AtomicU32,
        mut ready: impl FnMut() -> Result<bool, WireError>,
    ) -> Result<bool, WireError> {
        let start = std::time::Instant::now();
        let (spin, extended) = self.spin.budget();
        let until = start + spin;
        loop {
            if ready()? {
                self.spin.learn(start.elapsed());
                return Ok(true);
            }
            if std::time::Instant::now() >= until {
                break;
            }
            std::thread::yield_now();
        }
        // Done spinning: the place goes back before the sleep.
        drop(extended);
        loop {
            waiter.store(1, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            if ready()? {
                waiter.store(0, Ordering::Relaxed);
                self.spin.learn(start.elapsed());
                return Ok(true);
            }
            let gone = self.own.sleep(self.watch.as_raw_fd())?;
            waiter.store(0, Ordering::Relaxed);
            if ready()? {
                self.spin.learn(start.elapsed());
                return Ok(true);
            }
            if gone {
                return Ok(false);
            }
        }
    }
}
