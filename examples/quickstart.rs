//! The seed's example, "Worker Pools with Circuits" (2011), in Rust: a pool of 5 to 10 thread
//! workers, one task that counts to a million, its result awaited, then a draining stop.
//!
//! Run it with `cargo run --release --example quickstart`.

use circuits::prelude::*;

fn count() -> u64 {
    (0..1_000_000u64).fold(0, |x, _| std::hint::black_box(x + 1))
}

#[actix::main]
async fn main() -> Result<(), circuits::Error> {
    let pool = Pool::builder().min(5).max(10).start(); // thread mode; channel "pool"
    let x = pool.push(Task::new(count))?; // queued at once: a Value<u64, TaskError>
    println!("{}", x.await?); // after a while...
    pool.stop().await; // drains, then stops every worker
    Ok(())
}
