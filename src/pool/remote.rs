//! [`PoolBuilder::nats`]: a pool whose workers are remote hosts (feature `nats`).

use std::sync::Arc;

use super::builder::PoolBuilder;
use crate::worker::remote::{NatsConfig, RemoteKind};

impl PoolBuilder {
    /// Remote mode: the pool's jobs run on worker hosts on other machines (or other processes),
    /// reached through a NATS JetStream server (`nats-server -js`). A submit publishes the task's
    /// job on the work stream; a host ([`circuits::host`](crate::host), or any binary whose `main`
    /// calls [`circuits::init`](crate::init) with `CIRCUITS_NATS_HOST` set) runs it in a local
    /// process pool and publishes its answer, which settles the task here: the same
    /// [`Value`](crate::Value), the same result events, "first outcome wins" against duplicates.
    ///
    /// Jobs only ([`Task::job`](crate::Task::job), [`map`](crate::PoolHandle::map), whose chunks
    /// travel as one message each); a closure is refused with
    /// [`Refusal::ClosureInProcessPool`](crate::Refusal::ClosureInProcessPool). Each worker of the
    /// pool is a lane of published jobs: `min` and the [queue bound](Self::queue_bound) bound how
    /// many jobs are out at once. Delivery is at least once: a host that dies mid-job has the job
    /// given to another host after [`NatsConfig::ack_wait`] (see the guide's failure table and
    /// [`job_context`](crate::job_context) for idempotent jobs). Replaces an earlier
    /// [`process`](Self::process) or [`async_workers`](Self::async_workers).
    ///
    /// ```no_run
    /// use circuits::prelude::*;
    /// use circuits::NatsConfig;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Square(u64);
    /// # impl Job for Square { const NAME: &'static str = "square"; type Output = u64;
    /// #     fn run(self) -> u64 { self.0 * self.0 } }
    ///
    /// # #[actix::main] async fn main() -> Result<(), RunError> {
    /// let pool = Pool::builder()
    ///     .min(4)
    ///     .nats(NatsConfig::new("nats://127.0.0.1:4222"))
    ///     .start();
    /// assert_eq!(pool.run(Task::job(Square(12))).await?, 144);
    /// pool.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn nats(mut self, config: NatsConfig) -> Self {
        self.other = Some(Arc::new(RemoteKind::new(config)));
        (self.process, self.asynchronous) = (None, None);
        self
    }
}
