//! The child's side of process mode: [`init`] and the job loop.
//!
//! A process pool starts each worker by re-executing the current binary with the environment
//! variable [`WORKER_ENV`] set. The binary's `main` calls [`init`] first; in a worker process that
//! call never returns: it answers the handshake, then reads `Run` frames, runs each job by name, and
//! writes a `Done` frame for each, in order. It exits when its input ends (the pool closed it, or the
//! parent died).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::sync::mpsc;

use crate::job::{Inputs, Jobs};
use crate::task::TaskError;
use crate::wire::{self, Fault, Frame, PROTOCOL_VERSION};

/// The environment variable that marks a worker process.
pub const WORKER_ENV: &str = "CIRCUITS_WORKER";
/// The environment variable carrying the frame size limit to the child.
pub(crate) const MAX_FRAME_ENV: &str = "CIRCUITS_MAX_FRAME";

/// Call this first thing in `main` of every binary that starts process pools.
///
/// In the application (the parent) it returns at once. In a worker process started by a pool it
/// serves the jobs in `jobs` and never returns: the process exits when the pool is done with it.
///
/// ```no_run
/// use circuits::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Square(u64);
/// # impl Job for Square { const NAME: &'static str = "square"; type Output = u64;
/// #     fn run(self) -> u64 { self.0 * self.0 } }
///
/// fn main() {
///     circuits::init(Jobs::new().register::<Square>()); // first: worker processes stop here
///     actix::System::new().block_on(async {
///         let pool = Pool::builder().min(2).process().start();
///         assert_eq!(pool.push(Task::job(Square(9))).await, Ok(81));
///         pool.stop().await;
///     });
/// }
/// ```
pub fn init(jobs: Jobs) {
    if std::env::var_os(WORKER_ENV).is_none() {
        return;
    }
    let code = match serve(&jobs) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("circuits worker {}: {e}", std::process::id());
            3
        }
    };
    std::process::exit(code);
}

/// Takes the protocol pipes off stdin/stdout, so that a job printing to stdout writes to stderr
/// instead of corrupting the protocol, and stdin reads nothing.
fn take_protocol_fds() -> std::io::Result<(File, File)> {
    // SAFETY: plain descriptor calls on fds 0, 1 and 2, which the pool set up for this process;
    // each result is checked before use and each new fd is owned by exactly one File.
    unsafe {
        let input: RawFd = libc::dup(0);
        let output: RawFd = libc::dup(1);
        if input < 0 || output < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::fcntl(input, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(output, libc::F_SETFD, libc::FD_CLOEXEC);
        if libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::close(null);
        }
        Ok((File::from_raw_fd(input), File::from_raw_fd(output)))
    }
}

fn serve(jobs: &Jobs) -> Result<(), wire::WireError> {
    let max_frame = std::env::var(MAX_FRAME_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(wire::DEFAULT_MAX_FRAME);
    let (input, output) = take_protocol_fds()?;
    let mut input = BufReader::with_capacity(64 << 10, input);
    let mut output = BufWriter::with_capacity(64 << 10, output);

    // Handshake: the parent speaks first.
    wire::check_hello(&wire::read_frame(&mut input, max_frame)?)?;
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        jobs: jobs.names().into_iter().map(String::from).collect(),
    };
    wire::write_frame(&mut output, &wire::encode(&hello)?, max_frame)?;
    output.flush()?;

    // A reader thread takes frames off the pipe so that the end of input (the pool closing it, or
    // the parent dying) ends this process at once, even in the middle of a job.
    let (tx, rx) = mpsc::sync_channel::<(u64, String, Inputs)>(1024);
    std::thread::Builder::new()
        .name("circuits-child-reader".into())
        .spawn(move || loop {
            let body = match wire::read_frame(&mut input, max_frame) {
                Ok(b) => b,
                Err(wire::WireError::Closed) => std::process::exit(0),
                Err(e) => {
                    eprintln!("circuits worker {}: {e}", std::process::id());
                    std::process::exit(4);
                }
            };
            match wire::decode(&body) {
                Ok(Frame::Run { id, job, input }) => {
                    if tx.send((id, job, Inputs::One(input))).is_err() {
                        std::process::exit(0);
                    }
                }
                Ok(Frame::RunBatch { id, job, inputs }) => {
                    if tx.send((id, job, Inputs::Batch(inputs))).is_err() {
                        std::process::exit(0);
                    }
                }
                Ok(other) => {
                    eprintln!(
                        "circuits worker {}: unexpected {} frame",
                        std::process::id(),
                        wire::frame_name(&other)
                    );
                    std::process::exit(4);
                }
                Err(e) => {
                    eprintln!("circuits worker {}: {e}", std::process::id());
                    std::process::exit(4);
                }
            }
        })?;

    let fault = |e: TaskError| match e {
        TaskError::Panicked(m) => Fault::Panicked(m),
        TaskError::UnknownJob(n) => Fault::UnknownJob(n),
        other => Fault::Wire(other.to_string()),
    };
    while let Ok((id, job, inputs)) = rx.recv() {
        let result = match inputs {
            Inputs::One(input) => jobs.run(&job, &input).map_err(fault),
            Inputs::Batch(inputs) => {
                let answers: Vec<Result<Vec<u8>, Fault>> = inputs
                    .iter()
                    .map(|input| jobs.run(&job, input).map_err(fault))
                    .collect();
                wire::encode_value(&answers)
                    .map_err(|e| Fault::Wire(format!("a chunk's answers do not encode: {e}")))
            }
        };
        let mut body = wire::encode(&Frame::Done { id, result })?;
        if body.len() > max_frame {
            let fault = Fault::Wire(format!(
                "the output of job {job:?} is {} bytes, over the frame limit of {max_frame}",
                body.len()
            ));
            body = wire::encode(&Frame::Done {
                id,
                result: Err(fault),
            })?;
        }
        wire::write_frame(&mut output, &body, max_frame)?;
        // Each answer is on the pipe before the next job starts, so if this process dies the parent
        // knows exactly which job was running: the first one it has no answer for.
        output.flush()?;
    }
    Ok(())
}
