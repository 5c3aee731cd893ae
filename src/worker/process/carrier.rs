//! How frames travel between the host and one child: through the shared-memory rings when the OS
//! gives them (a `memfd`, `eventfd`s, and a `pidfd` to see the child die), through the child's
//! stdin and stdout pipes if not. Either way one reader thread reads the child's answers.

use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command};
use std::sync::{Arc, OnceLock};

use super::config::ProcessConfig;
use super::reader::{pidfd, read_child, Output};
use super::shared::Shared;
use crate::wire::ring::{RingSink, Rings};
use crate::wire::{FrameSink, PipeSink, PipeSource, WireError};
use crate::worker::child::RING_ENV;
use crate::worker::LINGER;

/// Where a child's jobs go: its stdin pipe, or the shared-memory ring (with the pipe kept open:
/// closing it tells the child its input ended).
pub(super) enum Input {
    Pipe(PipeSink<ChildStdin>),
    Ring { sink: RingSink, _stdin: ChildStdin },
}

impl Input {
    /// Bytes the ring can take without waiting for the child; `None` for the pipe (whose writes
    /// may wait, so only the host thread writes to it).
    pub(super) fn room(&self) -> Option<usize> {
        match self {
            Input::Pipe(_) => None,
            Input::Ring { sink, .. } => Some(sink.room()),
        }
    }
}

impl FrameSink for Input {
    fn send(&mut self, body: &[u8]) -> Result<(), WireError> {
        match self {
            Input::Pipe(p) => p.send(body),
            Input::Ring { sink, .. } => sink.send(body),
        }
    }

    fn flush(&mut self) -> Result<(), WireError> {
        match self {
            Input::Pipe(p) => p.flush(),
            Input::Ring { sink, .. } => sink.flush(),
        }
    }
}

/// Whether this kernel has `pidfd_open` (5.3 and later), which the rings need to see a child die
/// while its pipe says nothing.
fn pidfds_work() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| pidfd(std::process::id()).is_some())
}

/// Makes the rings for a child about to be started by `command` (when the configuration asks for
/// them and the OS gives them), and tells the child their descriptors.
pub(super) fn offer_rings(cfg: &ProcessConfig, command: &mut Command) -> Option<Rings> {
    if cfg.shared_memory == 0 || !pidfds_work() {
        return None;
    }
    let rings = Rings::new(cfg.shared_memory)
        .map_err(|e| tracing::debug!(%e, "no shared memory for a worker process: pipes"))
        .ok()
        // (With a standard stream closed in this process, a ring could get its number.)
        .filter(Rings::inheritable)?;
    command.env(RING_ENV, rings.env_value());
    let fds = rings.child_fds();
    // SAFETY: runs in the forked child before exec, and only calls fcntl (async-signal safe) to
    // let the ring's descriptors, close-on-exec everywhere else, reach it.
    unsafe {
        command.pre_exec(move || {
            for fd in fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Some(rings)
}

/// Starts the reader thread of child generation `generation` and returns where its jobs go.
///
/// # Errors
///
/// When the child's pipes or pidfd are missing, or the thread cannot start (the caller reaps the
/// child).
pub(super) fn connect(
    child: &mut Child,
    rings: Option<Rings>,
    shared: &Arc<Shared>,
    generation: u64,
    max: usize,
) -> std::io::Result<Input> {
    let missing = || std::io::Error::other("the child's pipes were not set up");
    let stdin = child.stdin.take().ok_or_else(missing)?;
    let shared = shared.clone();
    let reader = std::thread::Builder::new().name("circuits-process-reader".into());
    match rings {
        Some(rings) => {
            let watch = pidfd(child.id()).ok_or_else(std::io::Error::last_os_error)?;
            let (sink, source) = rings.parent_ends(Arc::new(watch), max, LINGER);
            reader.spawn(move || read_child(shared, generation, source))?;
            Ok(Input::Ring {
                sink,
                _stdin: stdin,
            })
        }
        None => {
            let stdout = child.stdout.take().ok_or_else(missing)?;
            let output = PipeSource::new(Output::new(stdout, child.id()), max);
            reader.spawn(move || read_child(shared, generation, output))?;
            Ok(Input::Pipe(PipeSink::new(stdin, max)))
        }
    }
}
