//! A worker's reader thread, kept from one child to the next ([`Readers`]), and what it does with
//! each child's output: its answers are settled right here, its handshake and its end go to the
//! host.

use std::os::fd::{AsRawFd, FromRawFd};
use std::process::ChildStdout;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::answers::settle;
use super::shared::{Msg, Shared};
use crate::wire::ring::wait_either;
use crate::wire::FrameSource;

/// A child's output pipe, read until it ends or the child itself has exited: a process that the
/// child forked (and that still holds the pipe) cannot hide the child's death. Answers the child
/// wrote before it died are read first.
pub(super) struct Output {
    pipe: ChildStdout,
    /// The child's pidfd (Linux 5.3 and later; without it, the pipe's end alone tells).
    pidfd: Option<std::os::fd::OwnedFd>,
}

impl Output {
    pub(super) fn new(pipe: ChildStdout, pid: u32) -> Self {
        Output {
            pipe,
            pidfd: pidfd(pid),
        }
    }
}

/// A descriptor that becomes readable when our child `pid` exits (Linux 5.3 and later).
pub(super) fn pidfd(pid: u32) -> Option<std::os::fd::OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor (close-on-exec) or
    // -1; a returned descriptor is owned by nobody else.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    (fd >= 0).then(|| {
        // SAFETY: see above: a fresh descriptor we own.
        unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as std::os::fd::RawFd) }
    })
}

impl std::io::Read for Output {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(pidfd) = &self.pidfd {
            let (data, exited) = wait_either(self.pipe.as_raw_fd(), pidfd.as_raw_fd())?;
            if !data && exited {
                return Ok(0); // the child exited and left nothing more to read
            }
            // Data, or the pipe's end: read it.
        }
        self.pipe.read(buf)
    }
}

/// Reads child generation `generation`'s frames from its pipe: the handshake goes to the host,
/// answers are settled right here (one thread hop fewer on every task). Returns the child's end,
/// for the host: [`Readers`] sends it once this thread is free for the next child's output. (The
/// rings' answers are read by [`Answers`](super::answers::Answers).)
pub(super) fn read_child(shared: &Shared, generation: u64, mut source: impl FrameSource) -> Msg {
    let mut first = true;
    loop {
        let body = match source.recv() {
            // Acknowledged once read: a child's answer is settled exactly once, right below.
            Ok(delivery) => delivery.ack(),
            Err(e) => return Msg::Gone(generation, e),
        };
        if first {
            first = false;
            let _ = shared.host.send(Msg::Hello(generation, body));
            continue;
        }
        if let Err(e) = settle(shared, generation, &body) {
            return Msg::Gone(generation, e);
        }
        // The answer is decoded into its own value: the next frame is read into the same memory.
        source.recycle(body);
    }
}

/// One child's output, to be read to its end on a reader thread; returns the child's end.
type Read = Box<dyn FnOnce() -> Msg + Send>;

/// The threads that read a worker's children, kept across child restarts: a replaced child's
/// output goes to the thread that read the one before, so a worker whose children crash again
/// and again does not start a thread each time. A thread counts itself free before the host
/// hears that its child ended, so the replacement that the host then starts finds it. Only while
/// every reader is still on an earlier child's output does a new thread start (a child the host
/// replaced itself, on a timeout, a cancel, the memory limit or recycling, before its reader saw
/// the end; or, without pidfds, a dead child whose pipe a forked process holds open); it stays
/// for the next children too. The threads end once the host is done ([`close`](Self::close)) and
/// their last child's output has ended.
pub(super) struct Readers {
    /// Where the next child's output goes; `None` once the host is done.
    tx: Option<Sender<Read>>,
    rx: Receiver<Read>,
    /// Threads waiting for a child's output and not yet promised one.
    idle: Arc<AtomicUsize>,
}

impl Readers {
    pub(super) fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Readers {
            tx: Some(tx),
            rx,
            idle: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Reads a child's output with `read` on a free reader thread, or on a new one, and tells the
    /// host (through the worker's channel `host`) the child's end that `read` returns.
    ///
    /// # Errors
    ///
    /// When a new thread is needed and the OS refuses it (`read` is dropped).
    pub(super) fn read(
        &self,
        host: &Sender<Msg>,
        read: impl FnOnce() -> Msg + Send + 'static,
    ) -> std::io::Result<()> {
        let thread = std::thread::Builder::new().name("circuits-process-reader".into());
        let host = host.clone();
        let Some(tx) = &self.tx else {
            // The host is done (no child should start now): a thread for this output alone.
            thread.spawn(move || {
                let _ = host.send(read());
            })?;
            return Ok(());
        };
        // A free thread is promised this output before it is sent, so two outputs sent in a
        // row never both count on the same thread.
        let promised = self
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if promised {
            // The receiver is ours too: the send cannot fail.
            let _ = tx.send(Box::new(read));
            return Ok(());
        }
        let (rx, idle) = (self.rx.clone(), self.idle.clone());
        thread.spawn(move || {
            let mut next: Read = Box::new(read);
            loop {
                let end = next();
                // Free (and its child's carrier closed) before the host hears of the end.
                idle.fetch_add(1, Ordering::AcqRel);
                let _ = host.send(end);
                match rx.recv() {
                    Ok(read) => next = read,
                    Err(_) => return, // the host is done
                }
            }
        })?;
        Ok(())
    }

    /// The host is done: each reader thread ends once its child's output has ended.
    pub(super) fn close(&mut self) {
        self.tx = None;
    }
}
