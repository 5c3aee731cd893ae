use circuits::prelude::*;
use std::time::Instant;
fn noop() {}
#[actix::main]
async fn main() {
    let n = 30000;
    for workers in [1usize, 2] {
        for strat in ["least", "rr"] {
            let pool = if strat == "least" {
                Pool::builder().min(workers).start()
            } else {
                Pool::builder()
                    .min(workers)
                    .strategy(RoundRobin::new())
                    .start()
            };
            for _ in 0..3 {
                let t = Instant::now();
                for _ in 0..n {
                    pool.push(Task::new(noop)).await.unwrap();
                }
                println!(
                    "{workers} {strat}: {:.2} us",
                    t.elapsed().as_secs_f64() * 1e6 / n as f64
                );
            }
            pool.stop().await;
        }
    }
    // floor
    let (tx, rx) = crossbeam_channel::unbounded::<tokio::sync::oneshot::Sender<()>>();
    for _ in 0..2 {
        let rx = rx.clone();
        std::thread::spawn(move || {
            while let Ok(r) = rx.recv() {
                let _ = r.send(());
            }
        });
    }
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..n {
            let (a, b) = tokio::sync::oneshot::channel();
            tx.send(a).unwrap();
            b.await.unwrap();
        }
        println!(
            "floor: {:.2} us",
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
}
