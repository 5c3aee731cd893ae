//! The bells: an `eventfd` each side sleeps on and the other rings, and waiting on two
//! descriptors at once.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::os_err;
use crate::wire::error::WireError;

/// An `eventfd` one side sleeps on and the other rings.
pub(crate) struct Bell(pub(super) OwnedFd);

impl Bell {
    pub(super) fn new() -> Result<Bell, WireError> {
        // SAFETY: eventfd returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(os_err());
        }
        // SAFETY: a fresh descriptor that nobody else owns.
        Ok(Bell(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(super) fn ring(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from our stack to our eventfd (EAGAIN only at a saturated
        // counter, which still wakes the sleeper).
        unsafe {
            libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), 8);
        }
    }

    fn drain(&self) {
        let mut n = [0u8; 8];
        // SAFETY: reads at most 8 bytes into our stack buffer; non-blocking.
        unsafe {
            libc::read(self.0.as_raw_fd(), n.as_mut_ptr().cast(), 8);
        }
    }

    /// Sleeps until the bell rings or `watch` becomes readable or hung up (the other side is
    /// gone). Returns true when `watch` fired.
    pub(super) fn sleep(&self, watch: RawFd) -> Result<bool, WireError> {
        let (rung, gone) = wait_either(self.0.as_raw_fd(), watch)?;
        if rung {
            self.drain();
        }
        Ok(gone)
    }
}

/// Blocks until `a` or `b` is readable or hung up; says which. (Both must stay open meanwhile.)
///
/// # Errors
///
/// When `poll` fails otherwise than by a signal.
pub(crate) fn wait_either(a: RawFd, b: RawFd) -> std::io::Result<(bool, bool)> {
    loop {
        let mut fds = [a, b].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: two pollfd entries on this stack; the caller keeps both descriptors open.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok((fds[0].revents != 0, fds[1].revents != 0));
    }
}
