//! The reader thread of one child: its answers are settled right here, its handshake and its end
//! go to the host.

use std::os::fd::{AsRawFd, FromRawFd};
use std::process::ChildStdout;
use std::sync::Arc;

use super::shared::{Msg, Shared};
use crate::task::TaskError;
use crate::wire::ring::wait_either;
use crate::wire::{self, Frame, FrameSource, WireError};

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

/// Reads child generation `generation`'s frames from its carrier: the handshake goes to the host,
/// answers are settled right here (one thread hop fewer on every task), the end goes to the host.
pub(super) fn read_child(shared: Arc<Shared>, generation: u64, mut source: impl FrameSource) {
    let mut first = true;
    loop {
        let body = match source.recv() {
            // Acknowledged once read: a child's answer is settled exactly once, right below.
            Ok(delivery) => delivery.ack(),
            Err(e) => {
                let _ = shared.host.send(Msg::Gone(generation, e));
                return;
            }
        };
        if first {
            first = false;
            let _ = shared.host.send(Msg::Hello(generation, body));
            continue;
        }
        let settled = match wire::decode(&body) {
            Ok(Frame::Done { id, result }) => shared.answer(
                generation,
                id,
                result
                    .as_ref()
                    .map(|p| &p.0[..])
                    .map_err(|f| TaskError::from(f.clone())),
            ),
            Ok(_) => {
                let what = "a frame other than Done from a worker".to_string();
                let _ = shared
                    .host
                    .send(Msg::Gone(generation, WireError::Unexpected(what)));
                return;
            }
            Err(e) => {
                let _ = shared.host.send(Msg::Gone(generation, e));
                return;
            }
        };
        // The answer is decoded into its own value: the next frame is read into the same memory.
        source.recycle(body);
        if !settled {
            let what = "an answer for a job that is not running".to_string();
            let _ = shared
                .host
                .send(Msg::Gone(generation, WireError::Unexpected(what)));
            return;
        }
    }
}
