//! Ending a child: waiting without reaping, signalling its process group, reaping, and saying how
//! it ended.

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use crate::task::Exit;

/// Whether `pid` (our unreaped child) has exited, without reaping it.
pub(super) fn exited(pid: libc::pid_t) -> bool {
    // SAFETY: waitid writes only into `info`, which lives on this stack; WNOWAIT leaves the child
    // unreaped, so its pid stays ours.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        r == 0 && info.si_pid() == pid
    }
}

/// Sends `signal` to the child's whole process group (it leads one of its own), so that whatever
/// its jobs started goes with it. Call only before the child is reaped: until then its pid, and
/// so its group id, cannot belong to anyone else.
pub(super) fn signal_group(child: &Child, signal: libc::c_int) {
    // SAFETY: signalling a process group we created (the child's pid as its group id); the child
    // is not reaped yet.
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), signal);
    }
}

/// Waits up to `within` for `child` to exit, then SIGKILLs its whole process group (the child if
/// it still runs, and anything its jobs left behind) and reaps the child. The one way every child
/// ends.
pub(super) fn reap(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let pid = child.id() as libc::pid_t;
    let until = Instant::now() + within;
    while !exited(pid) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    signal_group(child, libc::SIGKILL);
    child.wait().ok()
}

/// How a child ended.
pub(super) fn exit_of(status: ExitStatus) -> Exit {
    match (status.code(), status.signal()) {
        (Some(c), _) => Exit::Code(c),
        (None, Some(s)) => Exit::Signal(s),
        _ => Exit::Unknown,
    }
}
