//! The child's side of process mode: [`init`] and the job loop.
//!
//! A process pool starts each worker by re-executing the current binary with the environment
//! variable [`WORKER_ENV`] set. The binary's `main` calls [`init`] first; in a worker process that
//! call never returns: it answers the handshake, then reads `Run` frames, runs each job by name, and
//! writes a `Done` frame for each, in order. It exits when its input ends (the pool closed it), and
//! the kernel kills it if the thread that started it dies (`PR_SET_PDEATHSIG`): no orphans.

#[cfg(all(feature = "process", target_os = "linux"))]
use {
    crate::task::{with_context, JobContext, TaskError},
    crate::wire::{Fault, Frame, FrameSink, FrameSource, Payload, PipeSink, PipeSource},
    std::fs::File,
};

use crate::job::Jobs;
use crate::wire;

/// The environment variable that marks a worker process.
pub const WORKER_ENV: &str = "CIRCUITS_WORKER";
/// The environment variable carrying the frame size limit to the child.
pub(crate) const MAX_FRAME_ENV: &str = "CIRCUITS_MAX_FRAME";
/// The environment variable carrying the parent's pid, to notice a parent that died at once.
pub(crate) const PARENT_ENV: &str = "CIRCUITS_PARENT_PID";
/// The environment variable carrying the CPU time each job may use, in nanoseconds.
pub(crate) const CPU_PER_JOB_ENV: &str = "CIRCUITS_CPU_PER_JOB_NS";
/// The environment variable carrying the limit on open files.
pub(crate) const OPEN_FILES_ENV: &str = "CIRCUITS_OPEN_FILES";
/// The environment variable that tells the child its stdin is a socket bringing the
/// shared-memory rings' descriptors (frames then travel through them rather than the pipes).
pub(crate) const RING_ENV: &str = "CIRCUITS_RING";

/// The resource limits a worker process sets on itself (see [`ProcessConfig`]'s `limit_*`).
///
/// [`ProcessConfig`]: crate::ProcessConfig
#[derive(Debug, Clone, Copy, Default)]
#[cfg_attr(not(all(feature = "process", target_os = "linux")), allow(dead_code))]
struct Limits {
    /// Set as the soft `RLIMIT_CPU` before each job: the CPU time used so far plus this.
    cpu_per_job: Option<std::time::Duration>,
    /// Set as the soft `RLIMIT_NOFILE` before serving.
    open_files: Option<u64>,
}

impl Limits {
    /// The limits in this process's environment.
    fn from_env() -> Self {
        let var = |name| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        Limits {
            cpu_per_job: var(CPU_PER_JOB_ENV).map(std::time::Duration::from_nanos),
            open_files: var(OPEN_FILES_ENV),
        }
    }
}

/// In a worker process started by a pool (the parent set [`WORKER_ENV`]): sets up the worker
/// states of `jobs`, serves its jobs and exits, never returning. Elsewhere returns at once. The
/// body of [`init`](crate::init).
pub(crate) fn serve_if_worker(jobs: &Jobs) {
    if std::env::var_os(WORKER_ENV).is_none() {
        return;
    }
    let max_frame = std::env::var(MAX_FRAME_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(wire::DEFAULT_MAX_FRAME);
    let parent: Option<libc::pid_t> = std::env::var(PARENT_ENV).ok().and_then(|p| p.parse().ok());
    let limits = Limits::from_env();
    // What made this process a worker is not passed on: a job's subprocesses are ordinary
    // processes, and a process pool started inside a job starts workers of its own. (`init` runs
    // first in `main`, before any other thread could read the environment.)
    let ring = std::env::var_os(RING_ENV).is_some();
    for var in [
        RING_ENV,
        WORKER_ENV,
        MAX_FRAME_ENV,
        PARENT_ENV,
        CPU_PER_JOB_ENV,
        OPEN_FILES_ENV,
    ] {
        std::env::remove_var(var);
    }
    let code = match serve(jobs, max_frame, parent, limits, ring) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("circuits worker {}: {e}", std::process::id());
            3
        }
    };
    // `exit` runs no thread-local destructors: the worker state (a connection to close, say) is
    // dropped here.
    crate::state::clear();
    std::process::exit(code);
}

#[cfg(all(feature = "process", target_os = "linux"))]
/// Asks the kernel to kill this process when the pool's worker thread (the parent side that
/// started it) goes away, so that a parent that dies, even by SIGKILL, leaves no orphan; and exits
/// at once if the parent is already gone.
///
/// # Errors
///
/// When the kernel refuses the parent-death signal: without it the no-orphans promise would not
/// hold, so the worker does not start.
fn die_with_parent(expected: Option<libc::pid_t>) -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and touches no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: getppid has no preconditions.
    if expected.is_some_and(|p| p != unsafe { libc::getppid() }) {
        std::process::exit(0);
    }
    Ok(())
}

#[cfg(all(feature = "process", target_os = "linux"))]
/// Takes the protocol pipes off stdin/stdout, so that a job printing to stdout writes to stderr
/// instead of corrupting the protocol, and stdin reads nothing. Every new descriptor is owned (and
/// closed on a failed step) and close-on-exec.
fn take_protocol_fds() -> std::io::Result<(File, File)> {
    use std::os::fd::{AsFd, AsRawFd};
    let input = std::io::stdin().as_fd().try_clone_to_owned()?;
    let output = std::io::stdout().as_fd().try_clone_to_owned()?;
    let null = File::open("/dev/null")?;
    // SAFETY: dup2 onto the standard descriptors 0 and 1, from descriptors that are open (stderr
    // and our /dev/null); it touches no memory, and each result is checked.
    unsafe {
        if libc::dup2(2, 1) < 0 || libc::dup2(null.as_raw_fd(), 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((File::from(input), File::from(output)))
}

#[cfg(all(feature = "process", target_os = "linux"))]
/// The resources a worker process limits.
#[derive(Debug, Clone, Copy)]
enum Resource {
    CpuSeconds,
    OpenFiles,
}

#[cfg(all(feature = "process", target_os = "linux"))]
/// Sets one resource's soft limit, capped at its hard limit (which stays as it is: raising it
/// needs privileges, and lowering it is not ours to decide).
///
/// # Errors
///
/// When the kernel refuses to read or set the limit.
fn set_soft_limit(resource: Resource, soft: u64) -> std::io::Result<()> {
    // (Named here: the constants' type differs between the C libraries.)
    let resource = match resource {
        Resource::CpuSeconds => libc::RLIMIT_CPU,
        Resource::OpenFiles => libc::RLIMIT_NOFILE,
    };
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `lim`, on this stack.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let soft = libc::rlim_t::try_from(soft).unwrap_or(libc::RLIM_INFINITY);
    lim.rlim_cur = soft.min(lim.rlim_max);
    // SAFETY: setrlimit reads only `lim`, on this stack.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(all(feature = "process", target_os = "linux"))]
/// Gives the next job `limit` of CPU time: the soft `RLIMIT_CPU` becomes the CPU time this
/// process has used so far plus `limit`, rounded up to whole seconds (the kernel's unit). Past
/// it the kernel sends SIGXCPU, whose default action (restored here, in case the parent ignored
/// it) ends the process; the parent names the limit.
///
/// # Errors
///
/// When the kernel refuses the CPU time or the limit.
fn limit_cpu(limit: std::time::Duration) -> std::io::Result<()> {
    // SAFETY: getrusage writes only into `usage`, on this stack.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        usage
    };
    let time = |t: libc::timeval| {
        std::time::Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000)
    };
    let until = time(usage.ru_utime)
        .saturating_add(time(usage.ru_stime))
        .saturating_add(limit);
    let secs = until.as_secs() + u64::from(until.subsec_nanos() > 0);
    // SAFETY: restoring a signal's default action touches no memory of ours.
    unsafe { libc::signal(libc::SIGXCPU, libc::SIG_DFL) };
    set_soft_limit(Resource::CpuSeconds, secs)
}

#[cfg(all(feature = "process", target_os = "linux"))]
fn serve(
    jobs: &Jobs,
    max_frame: usize,
    parent: Option<libc::pid_t>,
    limits: Limits,
    ring: bool,
) -> Result<(), wire::WireError> {
    die_with_parent(parent)?;
    let (input, output) = take_protocol_fds()?;
    if let Some(n) = limits.open_files {
        set_soft_limit(Resource::OpenFiles, n)?;
    }
    if ring {
        // Frames through the shared-memory rings; the input pipe only tells that the parent
        // closed it (or died).
        drop(output);
        let (mut source, mut sink) =
            wire::ring::child_ends(input.into(), max_frame, crate::worker::LINGER)?;
        return serve_on(jobs, &mut source, &mut sink, max_frame, limits.cpu_per_job);
    }
    serve_on(
        jobs,
        &mut PipeSource::new(input, max_frame),
        &mut PipeSink::new(output, max_frame),
        max_frame,
        limits.cpu_per_job,
    )
}

/// The job loop over any carrier: handshake, then each `Run`/`RunBatch` answered with a `Done`,
/// in order, each answer flushed before the next job starts (and, with a CPU limit, each job
/// given its CPU time just before it starts).
#[cfg(all(feature = "process", target_os = "linux"))]
fn serve_on(
    jobs: &Jobs,
    input: &mut impl FrameSource,
    output: &mut impl FrameSink,
    max_frame: usize,
    cpu_per_job: Option<std::time::Duration>,
) -> Result<(), wire::WireError> {
    // Handshake: the parent speaks first. The worker state is set up before the answer, so that a
    // set-up that fails is a failed start, with its reason, and not a crash in the first job.
    wire::check_hello(&input.recv()?.ack())?;
    if let Err(reason) = jobs.setups().install() {
        output.send(&wire::encode(&Frame::StateFailed { reason }, 0)?)?;
        output.flush()?;
        return Ok(());
    }
    output.send(&wire::hello(
        jobs.names().into_iter().map(String::from).collect(),
    )?)?;
    output.flush()?;

    let fault = |e: TaskError| match e {
        TaskError::Panicked(m) => Fault::Panicked(m),
        TaskError::UnknownJob(n) => Fault::UnknownJob(n),
        TaskError::Wire(w) => Fault::Wire(w),
        other => Fault::Wire(wire::WireError::Encode(other.to_string())),
    };
    // Buffers reused from job to job (a fresh one per frame costs page faults at every size
    // worth mentioning): the job's encoded output (a chunk's answers), and the answer's frame.
    let (mut out, mut answers, mut frame_buf) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        // The end of input is the pool closing it after its last answer (or the parent dying).
        let body = match input.recv() {
            Ok(delivery) => delivery.ack(),
            Err(wire::WireError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let frame = wire::decode(&body)?;
        if let Some(limit) = cpu_per_job {
            limit_cpu(limit)?;
        }
        let (id, result) = match frame {
            Frame::Run {
                id,
                job,
                input,
                context,
            } => {
                let result = with_context(own(context), || jobs.run(&job, &input.0, &mut out))
                    .map(|()| &out[..])
                    .map_err(fault);
                (id, result)
            }
            Frame::RunBatch {
                id,
                job,
                inputs,
                context,
            } => {
                let run = jobs.runner(&job);
                answers.clear();
                let encoded = with_context(own(context), || {
                    wire::begin_answers(inputs.len(), &mut answers)?;
                    for input in &inputs {
                        let answer = run
                            .clone()
                            .and_then(|run| run(&input.0, &mut out))
                            .map_err(fault);
                        wire::push_answer(answer.as_ref().map(|()| &out[..]), &mut answers)?;
                    }
                    Ok::<(), wire::WireError>(())
                });
                let result = encoded.map(|()| &answers[..]).map_err(|e| {
                    Fault::Wire(wire::WireError::Encode(format!("a chunk's answers: {e}")))
                });
                (id, result)
            }
            other => {
                return Err(wire::WireError::Unexpected(format!(
                    "{} frame sent to a worker",
                    other.name()
                )))
            }
        };
        let mut done = Frame::Done {
            id,
            result: result.map(Payload::borrowed),
        };
        let mut size = wire::encoded_size(&done)?;
        if size > max_frame {
            let fault = Fault::Wire(wire::WireError::FrameTooLarge {
                size,
                limit: max_frame,
            });
            done = Frame::Done {
                id,
                result: Err(fault),
            };
            size = wire::encoded_size(&done)?;
        }
        // Straight into the ring when it has the room now; through the buffer otherwise.
        if !output.send_value(&done, size)? {
            frame_buf.clear();
            wire::encode_value_into(&done, &mut frame_buf)?;
            output.send(&frame_buf)?;
        }
        // Each answer is on the pipe before the next job starts, so if this process dies the parent
        // knows exactly which job was running: the first one it has no answer for.
        output.flush()?;
        input.recycle(body);
        for buf in [&mut out, &mut answers, &mut frame_buf] {
            if buf.capacity() > wire::transport::RETAIN {
                *buf = Vec::new();
            }
        }
    }
}

/// Without process mode in this build, a worker process cannot serve: it says so and exits.
#[cfg(all(feature = "process", target_os = "linux"))]
/// A job's context out of its frame.
fn own(context: Option<wire::RunContext<'_>>) -> Option<JobContext> {
    context.map(|c| JobContext {
        id: c.id.into_owned(),
        delivery: c.delivery,
    })
}

#[cfg(not(all(feature = "process", target_os = "linux")))]
fn serve(
    _: &Jobs,
    _: usize,
    _: Option<libc::pid_t>,
    _: Limits,
    _: bool,
) -> Result<(), wire::WireError> {
    Err(wire::WireError::Unexpected(
        "this build has no process mode (it needs Linux and the `process` feature)".into(),
    ))
}
