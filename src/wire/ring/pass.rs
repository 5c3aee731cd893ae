//! Handing the ring's descriptors to the child over a Unix socket (`SCM_RIGHTS`), so that the
//! child is started without a `pre_exec` hook (which would turn the `posix_spawn` of every child
//! into a full `fork` of the parent).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::hostile;
use crate::wire::error::WireError;

/// The bytes that carry the descriptors (a stream socket needs at least one).
const TAG: [u8; 4] = *b"ring";
/// Room for up to this many descriptors in the control message.
const MAX_FDS: usize = 8;

fn control_space() -> usize {
    // SAFETY: CMSG_SPACE is pure arithmetic.
    unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// Sends `fds` (duplicated into the receiver by the kernel) over the stream socket `sock`.
///
/// # Errors
///
/// When the socket fails (the child is gone).
pub(crate) fn send_fds(sock: &impl AsRawFd, fds: &[RawFd]) -> std::io::Result<()> {
    assert!(fds.len() <= MAX_FDS);
    let data_len = std::mem::size_of_val(fds);
    let mut control = vec![0u64; control_space().div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: TAG.as_ptr() as *mut libc::c_void,
        iov_len: TAG.len(),
    };
    // SAFETY: a zeroed msghdr is valid; every pointer set below points into this frame's
    // buffers, which outlive the sendmsg call; the control buffer is 8-byte aligned and holds
    // CMSG_SPACE(data_len) bytes, which the header and data written below fit in.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(data_len as u32) as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(data_len as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
        loop {
            if libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Receives exactly `n` descriptors sent by [`send_fds`] from `sock` (close-on-exec).
///
/// # Errors
///
/// [`WireError::Closed`] when the parent closed the socket first; a decode error when the message
/// is not the tag with `n` descriptors (every descriptor received is closed then).
pub(crate) fn recv_fds(sock: &impl AsRawFd, n: usize) -> Result<Vec<OwnedFd>, WireError> {
    let mut tag = [0u8; TAG.len()];
    let mut control = vec![0u64; control_space().div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: tag.as_mut_ptr().cast(),
        iov_len: tag.len(),
    };
    let mut fds = Vec::new();
    // SAFETY: as in `send_fds`; the kernel writes at most msg_controllen bytes of control data
    // and at most iov_len bytes of data into our buffers. Each descriptor it passed is owned once,
    // here, as soon as it is read.
    let got = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control_space() as _;
        let r = loop {
            let r = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            if r >= 0 {
                break r as usize;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e.into());
            }
        };
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(hostile("too many descriptors"));
        }
        r
    };
    if got == 0 && fds.is_empty() {
        return Err(WireError::Closed);
    }
    if got != TAG.len() || tag != TAG || fds.len() != n {
        return Err(hostile("not the ring's descriptors"));
    }
    Ok(fds)
}
