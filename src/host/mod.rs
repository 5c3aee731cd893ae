//! Worker hosts (feature `nats`): the other side of [`PoolBuilder::nats`](crate::PoolBuilder::nats).
//!
//! A host is the user's own binary started as a host: [`host`] called from `main`, or any binary
//! whose `main` calls [`init`](crate::init) with [`HOST_ENV`] set to the server's URL. It pulls jobs
//! from the work stream through the durable consumer all hosts share, never more than it has free
//! slots, and runs each in a local process pool (so a job that crashes is isolated on the host
//! too). While a job runs it tells the server it is alive every third of the ack wait; when the
//! job ends it publishes the answer to the submitting pool's results subject, waits for the
//! server's confirmation, and only then acknowledges the job. On SIGTERM or SIGINT it stops
//! pulling, hands back (naks) what it pulled and did not start, lets the running jobs finish and
//! answer, and returns.
//!
//! Files: this one (the entry point), `config` (how a host runs), `error` (why it stopped), `pace`
//! (how many jobs it holds), `pull` (pulling them), `run` (one job: its worker, its progress acks,
//! its answer and its ack), `exhausted` (taking the jobs that used up their deliveries out of the
//! stream).

mod config;
mod error;
mod exhausted;
mod pace;
mod pull;
mod run;

pub use config::{HostConfig, HOST_ENV};
pub use error::HostError;

use crate::job::Jobs;

/// Runs this process as a worker host until SIGTERM or SIGINT: it pulls jobs from the work stream
/// of [`PoolBuilder::nats`](crate::PoolBuilder::nats) pools, never more than it has free slots,
/// runs each in a local process pool, answers it, and acknowledges it once the answer is stored.
/// On SIGTERM or SIGINT it hands back the jobs it has not started, lets the running ones finish,
/// and returns. (The guide's section 16 has the whole picture.) Call it from `main`, after [`init`](crate::init) (its local workers are this binary too), and
/// outside any actix `System`: it runs one of its own.
///
/// ```no_run
/// use circuits::{HostConfig, Jobs, NatsConfig};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Square(u64);
/// # impl circuits::Job for Square { const NAME: &'static str = "square"; type Output = u64;
/// #     fn run(self) -> u64 { self.0 * self.0 } }
///
/// fn main() -> Result<(), circuits::HostError> {
///     let jobs = Jobs::new().register::<Square>();
///     circuits::init(jobs.clone());
///     circuits::host(jobs, HostConfig::new(NatsConfig::new("nats://127.0.0.1:4222")).workers(4))
/// }
/// ```
///
/// # Errors
///
/// [`HostError::Broker`] when the server's address is not one (a server that is away, or the
/// streams and the hosts' consumer that cannot be made yet, are retried until they can be, or
/// until SIGTERM), [`HostError::Pool`] when the local pool cannot start.
pub fn host(jobs: Jobs, config: HostConfig) -> Result<(), HostError> {
    actix::System::new().block_on(pull::serve(jobs, config))
}
