//! [`init`]: the first call in `main` of a binary that starts process pools or serves as a worker
//! host; it decides what this process is.

use crate::job::Jobs;

/// Call this first thing in `main` of every binary that starts process pools.
///
/// In the application (the parent) it returns at once. In a worker process started by a pool it
/// sets up the worker states of `jobs` ([`Jobs::worker_state`]), serves its jobs and never returns:
/// the process exits when the pool is done with it. With the `nats` feature and
/// [`HOST_ENV`](crate::HOST_ENV) set, the process is a [worker host](crate::host): `init` runs it
/// until SIGTERM or SIGINT and exits (with status 1 and the error on stderr if the host fails).
///
/// Call it before anything else that starts threads or reads the environment: a worker process
/// takes its settings out of the environment here. A plain `fn main` that calls `init` and then
/// starts its `actix::System` is the clearest; the first line of an `async fn main` under
/// `#[actix_web::main]` or `#[actix::main]` works as well: there a worker process serves its jobs
/// on a thread of its own, outside that runtime, so a job may start a runtime of its own. Called
/// on another thread than `main`'s (in a test of the standard harness, see
/// [`ProcessConfig::program_args`](crate::ProcessConfig::program_args)), it serves on a thread with
/// a main thread's stack too.
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
///         assert_eq!(pool.run(Task::job(Square(9))).await, Ok(81));
///         pool.stop().await;
///     });
/// }
/// ```
pub fn init(jobs: Jobs) {
    if !is_worker() {
        return;
    }
    if tokio::runtime::Handle::try_current().is_ok() || !on_main_thread() {
        // Called inside a runtime (`#[actix_web::main]`, `#[actix::main]`): the worker's jobs,
        // and a host's own runtime, would run in its context, where a job that starts a runtime
        // of its own panics. Called on another thread (a test of the standard harness): its
        // stack may be smaller than the application's main thread's. A thread of its own has no
        // runtime, and a main thread's stack. `serve` never returns, so neither does the scope
        // once the thread started; without one, the jobs are served here after all.
        let started = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("circuits-serve".into())
                .stack_size(main_stack())
                .spawn_scoped(s, || serve(&jobs))
                .is_ok()
        });
        if started {
            return;
        }
    }
    serve(&jobs);
}

/// Whether this is the process's main thread (where `main` runs); `true` where that cannot be
/// told.
fn on_main_thread() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and getpid take nothing and touch no memory.
        unsafe { libc::gettid() == libc::getpid() }
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

/// The stack of a main thread: the soft `RLIMIT_STACK`, at least 8 MiB, and 64 MiB where it is
/// unlimited (a thread's stack cannot be).
fn main_stack() -> usize {
    const LEAST: usize = 8 << 20;
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes only into `lim`, on this stack.
        if unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut lim) } == 0 {
            if lim.rlim_cur == libc::RLIM_INFINITY {
                return 64 << 20;
            }
            return usize::try_from(lim.rlim_cur).unwrap_or(LEAST).max(LEAST);
        }
    }
    LEAST
}

/// Whether this process was started as a worker process or as a worker host.
fn is_worker() -> bool {
    #[cfg(feature = "nats")]
    if std::env::var_os(crate::HOST_ENV).is_some() {
        return true;
    }
    std::env::var_os(crate::WORKER_ENV).is_some()
}

/// The worker process's or the worker host's work: never returns in either, returns at once
/// in the application.
fn serve(jobs: &Jobs) {
    crate::worker::child::serve_if_worker(jobs);
    #[cfg(feature = "nats")]
    if let Some(config) = crate::host::HostConfig::from_env() {
        // Its local workers are children of this binary, told apart by their own variable.
        std::env::remove_var(crate::host::HOST_ENV);
        let code = match crate::host::host(jobs.clone(), config) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("circuits worker host {}: {e}", std::process::id());
                1
            }
        };
        std::process::exit(code);
    }
}
