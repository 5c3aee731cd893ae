//! How frames travel between the host and one child: through the shared-memory rings when the OS
//! gives them (a `memfd`, `eventfd`s, and a `pidfd` to see the child die), through the child's
//! stdin and stdout pipes if not. Either way one of the worker's reader threads reads the child's
//! answers.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, OnceLock};

use super::answers::Answers;
use super::config::ProcessConfig;
use super::reader::{pidfd, read_child, Output, Readers};
use super::shared::Shared;
use crate::wire::ring::{RingSink, Rings};
use crate::wire::{Frame, FrameSink, PipeSink, PipeSource, WireError};
use crate::worker::child::RING_ENV;
use crate::worker::LINGER;

/// Where a child's jobs go: its stdin pipe, or the shared-memory ring (with the socket that is
/// the child's stdin kept open: closing it tells the child its input ended).
pub(super) enum Input {
    /// The child's stdin, and how many bytes of frames its pipe surely takes ([`pipe_size`]).
    Pipe {
        sink: PipeSink<ChildStdin>,
        capacity: usize,
    },
    Ring {
        sink: RingSink,
        /// The child's answers, which an awaiting thread may read (see `answers`).
        answers: Arc<Answers>,
        _sock: UnixStream,
    },
}

impl Input {
    /// Bytes the ring can take without waiting for the child; `None` for the pipe (whose writes
    /// may wait, so only the host thread writes to it).
    pub(super) fn room(&self) -> Option<usize> {
        match self {
            Input::Pipe { .. } => None,
            Input::Ring { sink, .. } => Some(sink.room()),
        }
    }

    /// The child's answers, when they come through the ring, and whether the last flush of jobs
    /// found the child awake (one it had to wake answers a wake-up later; a relay, the only
    /// sender that asks, flushes once).
    pub(super) fn answers(&self) -> Option<(&Arc<Answers>, bool)> {
        match self {
            Input::Pipe { .. } => None,
            Input::Ring { sink, answers, .. } => Some((answers, !sink.woke_reader())),
        }
    }

    /// How many bytes of frames the pipe surely takes (`None` for the ring): less what the
    /// child has not read yet, counted by the host, what it can write without waiting.
    pub(super) fn pipe_capacity(&self) -> Option<usize> {
        match self {
            Input::Pipe { capacity, .. } => Some(*capacity),
            Input::Ring { .. } => None,
        }
    }
}

impl FrameSink for Input {
    fn send(&mut self, body: &[u8]) -> Result<(), WireError> {
        match self {
            Input::Pipe { sink, .. } => sink.send(body),
            Input::Ring { sink, .. } => sink.send(body),
        }
    }

    fn send_value(&mut self, frame: &Frame<'_>, size: usize) -> Result<bool, WireError> {
        match self {
            Input::Pipe { .. } => Ok(false),
            Input::Ring { sink, .. } => sink.send_value(frame, size),
        }
    }

    fn flush(&mut self) -> Result<(), WireError> {
        match self {
            Input::Pipe { sink, .. } => sink.flush(),
            Input::Ring { sink, .. } => sink.flush(),
        }
    }
}

/// How many bytes of frames a pipe surely takes without a write waiting. A Linux pipe is a ring
/// of page-sized slots (`F_GETPIPE_SZ` bytes in all), and a write whose first bytes do not fit
/// in the last slot's room starts a new slot: small frames written one by one can fill it at
/// about half its bytes. Any two neighbouring slots hold more than a page, so half the pipe less
/// two pages (one for a slot the child has partly read) always fits. 0 if the kernel does not
/// say (frames then go only to an idle child).
fn pipe_size(pipe: &ChildStdin) -> usize {
    use std::os::fd::AsRawFd;
    // SAFETY: F_GETPIPE_SZ reads a property of a descriptor we own and writes no memory.
    let size = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_GETPIPE_SZ) };
    // SAFETY: sysconf reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    match (usize::try_from(size), usize::try_from(page)) {
        (Ok(size), Ok(page)) => (size / 2).saturating_sub(2 * page),
        _ => 0,
    }
}

/// Whether this kernel has `pidfd_open` (5.3 and later), which the rings need to see a child die
/// while its pipe says nothing.
fn pidfds_work() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| pidfd(std::process::id()).is_some())
}

/// The rings for a child about to be started by `command` (when the configuration asks for them
/// and the OS gives them): its stdin becomes one end of a Unix socket, over which [`connect`]
/// hands it their descriptors, and `CIRCUITS_RING` tells it to expect them.
pub(super) struct Offer {
    rings: Rings,
    sock: UnixStream,
}

pub(super) fn offer_rings(cfg: &ProcessConfig, command: &mut Command) -> Option<Offer> {
    if cfg.shared_memory == 0 {
        return None;
    }
    if !pidfds_work() {
        warn_once("this kernel has no pidfd_open (Linux 5.3)");
        return None;
    }
    let made = Rings::new(cfg.shared_memory)
        .and_then(|rings| Ok((rings, UnixStream::pair()?)))
        .map_err(|e| warn_once(&e.to_string()));
    let (rings, (sock, theirs)) = made.ok()?;
    // Not the protocol's: what the program prints before `init` goes to our stderr, as what its
    // jobs print does after (the child then points its stdout at its stderr).
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_or_else(|_| Stdio::inherit(), Stdio::from);
    command
        .env(RING_ENV, "1")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(stdout);
    Some(Offer { rings, sock })
}

/// Says once per process that worker processes fall back to the pipes, and why: a child's output
/// before `circuits::init` then breaks its start.
fn warn_once(why: &str) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            why,
            "no shared memory for worker processes: their frames go through their stdout, so \
             what a worker program prints before circuits::init() breaks its start"
        );
    }
}

/// Has a reader thread of `readers` read child generation `generation`'s output, and returns
/// where its jobs go.
///
/// # Errors
///
/// When the child's pipes or pidfd are missing, or the thread cannot start (the caller reaps the
/// child).
pub(super) fn connect(
    child: &mut Child,
    offer: Option<Offer>,
    shared: &Arc<Shared>,
    readers: &Readers,
    generation: u64,
    max: usize,
) -> std::io::Result<Input> {
    let missing = || std::io::Error::other("the child's pipes were not set up");
    // The child's end goes to the host on the worker's channel.
    let host = &shared.host;
    let shared = shared.clone();
    match offer {
        Some(Offer { rings, sock }) => {
            let watch = pidfd(child.id()).ok_or_else(std::io::Error::last_os_error)?;
            // A child that died already fails its handshake: its reader sees it end.
            let _ = rings.send_to_child(&sock);
            let (sink, source) = rings.parent_ends(Arc::new(watch), max, LINGER);
            let (ring_watch, head) = (source.watch(), source.head());
            let answers = Arc::new(Answers::new(shared, generation, source));
            let reading = answers.clone();
            readers.read(host, move || reading.read(&ring_watch, head))?;
            Ok(Input::Ring {
                sink,
                answers,
                _sock: sock,
            })
        }
        None => {
            let stdin = child.stdin.take().ok_or_else(missing)?;
            let stdout = child.stdout.take().ok_or_else(missing)?;
            let output = PipeSource::new(Output::new(stdout, child.id()), max);
            readers.read(host, move || read_child(&shared, generation, output))?;
            let capacity = pipe_size(&stdin);
            Ok(Input::Pipe {
                sink: PipeSink::new(stdin, max),
                capacity,
            })
        }
    }
}
