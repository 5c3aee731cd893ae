//! A process pool surviving bad jobs: real work (counting primes) on two child processes, then a
//! job that aborts its process and one that hangs past its timeout. The pool replaces the dead
//! children and goes on.
//!
//! Run it with `cargo run --release --example process`.

use std::time::{Duration, Instant};

use circuits::prelude::*;
use serde::{Deserialize, Serialize};

/// Counts the primes below `limit`.
#[derive(Serialize, Deserialize)]
struct CountPrimes {
    limit: u64,
}

impl Job for CountPrimes {
    const NAME: &'static str = "count-primes";
    type Output = u64;
    fn run(self) -> u64 {
        (2..self.limit)
            .filter(|n| (2..).take_while(|d| d * d <= *n).all(|d| n % d != 0))
            .count() as u64
    }
}

/// Misbehaves on purpose.
#[derive(Serialize, Deserialize)]
enum Crash {
    Abort,
    Hang,
}

impl Job for Crash {
    const NAME: &'static str = "crash";
    type Output = ();
    fn run(self) {
        match self {
            Crash::Abort => std::process::abort(),
            Crash::Hang => loop {
                std::thread::sleep(Duration::from_secs(1));
            },
        }
    }
}

fn main() -> Result<(), circuits::Error> {
    // First thing in main: in a worker process this serves jobs and never returns.
    circuits::init(Jobs::new().register::<CountPrimes>().register::<Crash>());

    actix::System::new().block_on(async {
        let pool = Pool::builder().min(2).process().start();
        println!("process pool with workers {:?}", pool.workers());

        let started = Instant::now();
        // Queue all eight at once (`push` hands a task back if the pool does not take it), then
        // await the values in order while the two children work through them.
        let counts = (1..=8u64)
            .map(|i| pool.push(Task::job(CountPrimes { limit: i * 100_000 })))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, c) in counts.into_iter().enumerate() {
            println!("primes below {:>7}: {}", (i + 1) * 100_000, c.await?);
        }
        println!("counted in {:?}\n", started.elapsed());

        // `run` submits and awaits in one go; its error is the refusal or the task's `TaskError`.
        match pool.run(Task::job(Crash::Abort)).await {
            Err(RunError::Task(crash @ TaskError::WorkerCrashed { .. })) => {
                println!("a job that aborts its process: {crash}")
            }
            other => println!("a job that aborts its process: unexpectedly {other:?}"),
        }
        match pool
            .run(Task::job(Crash::Hang).timeout(Duration::from_millis(300)))
            .await
        {
            Err(e) => println!("a job that hangs, with a 300 ms timeout: {e}"),
            Ok(()) => println!("a job that hangs, with a 300 ms timeout: unexpectedly finished"),
        }

        let after = pool.run(Task::job(CountPrimes { limit: 10_000 })).await?;
        println!("\nthe pool goes on: primes below 10000 = {after}");
        println!("workers now {:?}", pool.workers());
        pool.stop().await;
        Ok(())
    })
}
