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
    crate::worker::child::serve_if_worker(&jobs);
    #[cfg(feature = "nats")]
    if let Some(config) = crate::host::HostConfig::from_env() {
        // Its local workers are children of this binary, told apart by their own variable.
        std::env::remove_var(crate::host::HOST_ENV);
        let code = match crate::host::host(jobs, config) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("circuits worker host {}: {e}", std::process::id());
                1
            }
        };
        std::process::exit(code);
    }
}
