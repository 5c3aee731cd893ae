//! One submitter and two worker hosts on a local NATS JetStream server.
//!
//! ```text
//! nats-server -js -a 127.0.0.1 -p 4222 &      # Debian/Ubuntu: apt-get install nats-server
//! cargo run --release --features nats --example cluster
//! ```
//!
//! The binary is all three: started plainly it is the submitter, and it starts two copies of
//! itself with `CIRCUITS_NATS_HOST` set, which `circuits::init` turns into worker hosts (each runs
//! its jobs in a local process pool). On other machines you would start the hosts yourself:
//! `CIRCUITS_NATS_HOST=nats://broker:4222 ./your-binary`. Give another server as the first
//! argument (`-- nats://10.0.0.5:4222`).

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use circuits::prelude::*;
use circuits::{NatsConfig, HOST_ENV};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// Counts the primes below its bound (CPU work), and says which worker process counted them.
#[derive(Serialize, Deserialize)]
struct CountPrimes(u64);

impl Job for CountPrimes {
    const NAME: &'static str = "count-primes";
    type Output = (u64, u32);
    fn run(self) -> (u64, u32) {
        let count = (2..self.0)
            .filter(|n| (2..).take_while(|d| d * d <= *n).all(|d| n % d != 0))
            .count() as u64;
        (count, std::process::id())
    }
}

/// Squares its number (a tiny job, for the batched `map`).
#[derive(Serialize, Deserialize)]
struct Square(u64);

impl Job for Square {
    const NAME: &'static str = "square";
    type Output = u64;
    fn run(self) -> u64 {
        self.0 * self.0
    }
}

fn jobs() -> Jobs {
    Jobs::new().register::<CountPrimes>().register::<Square>()
}

/// Starts a worker host: this binary again, with `CIRCUITS_NATS_HOST` set.
fn start_host(url: &str) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .env(HOST_ENV, url)
        .env("CIRCUITS_NATS_WORKERS", "2")
        .spawn()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    circuits::init(jobs()); // hosts, and their worker processes, stop here
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let mut hosts = vec![start_host(&url)?, start_host(&url)?];
    println!(
        "started worker hosts {:?}",
        hosts.iter().map(Child::id).collect::<Vec<_>>()
    );

    let ran = actix::System::new().block_on(async {
        let config = NatsConfig::new(url.as_str()).publish_deadline(Duration::from_secs(5));
        let pool = Pool::builder()
            .channel("primes")
            .min(8)
            .nats(config)
            .start();

        // Single jobs: each is one message on the work stream, answered by whichever host is free.
        let started = Instant::now();
        let values: Vec<_> = (0..64u64)
            .map(|i| pool.push(Task::job(CountPrimes(20_000 + i * 1_000))))
            .collect::<Result<_, _>>()?;
        let mut by_worker: BTreeMap<u32, usize> = BTreeMap::new();
        let mut total = 0;
        for value in values {
            let (count, worker) = value.await?;
            total += count;
            *by_worker.entry(worker).or_default() += 1;
        }
        println!(
            "64 prime counts ({total} primes in all) in {:.2?}, by worker process: {by_worker:?}",
            started.elapsed()
        );

        // A map: chunks of jobs, one message each.
        let started = Instant::now();
        let squares: Vec<u64> = pool
            .map((0..100_000u64).map(Square))?
            .map(|r| r.expect("a square"))
            .collect()
            .await;
        println!(
            "map of 100000 squares in {:.2?} (last: {})",
            started.elapsed(),
            squares[squares.len() - 1]
        );
        pool.stop().await;
        Ok::<_, Box<dyn std::error::Error>>(by_worker.len())
    });

    for host in &mut hosts {
        // A graceful stop: SIGTERM; the host hands back what it has not started, then exits.
        // SAFETY: kill takes a pid and a signal number.
        unsafe { libc::kill(host.id() as libc::pid_t, libc::SIGTERM) };
        host.wait()?;
    }
    if let Err(e) = &ran {
        eprintln!("is a server running? `nats-server -js -a 127.0.0.1 -p 4222` ({e})");
    }
    println!("ran on {} worker processes across 2 hosts", ran?);
    Ok(())
}
