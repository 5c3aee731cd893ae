//! A binary whose `main` never calls `circuits::init`: its worker processes run `main` again as
//! an ordinary program would (printing to stdout, starting a System and a process pool, which
//! refuses to start in a worker). The parent must see failed starts, back off, and fail its task
//! with `TaskError::WorkerStartFailed` naming `circuits::init()`, instead of waiting for ever or
//! restarting in a storm.
//!
//! Own `main` (`harness = false`), and on purpose no `circuits::init` in it.

mod common;
use common::Square;

use common::{bounded, children};

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use circuits::prelude::*;
use circuits::{PoolError, StartStage};

/// The file each worker process appends its pid to, one line per start (set by the parent,
/// inherited by its children).
const COUNT_ENV: &str = "NO_INIT_COUNT";

/// The default `max_start_failures`.
const LIMIT: usize = 5;

/// Appends this process's pid to the file named by [`COUNT_ENV`], if any.
fn count_this_start() {
    let Some(path) = std::env::var_os(COUNT_ENV) else {
        return;
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        // One write of one short line to an O_APPEND file: lines from racing children do not mix.
        let _ = f.write_all(format!("{}\n", std::process::id()).as_bytes());
    }
}

/// How many lines `path` holds (0 when it does not exist).
fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

/// Waits (up to 10 s) for this process to have no child process; returns those left.
async fn wait_for_no_children() -> Vec<u32> {
    let until = Instant::now() + Duration::from_secs(10);
    while !children().is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    children()
}

/// The program: in the parent, the test; in a worker process (which got here because `init` was
/// never called), the same code, which stops where the pool refuses to start.
async fn a_binary_without_init_fails_its_tasks_with_a_named_error(count: &Path, worker: bool) {
    let started = Pool::builder().min(1).process().try_start();
    if worker {
        // A worker that skipped `init` must not start workers of its own. Exit as a panicking
        // `start()` would; anything but `NotInitialized` is said on stderr (the parent's stderr).
        if !matches!(started, Err(PoolError::NotInitialized)) {
            eprintln!(
                "no_init worker {}: expected NotInitialized, got {started:?}",
                std::process::id()
            );
            std::process::exit(102);
        }
        std::process::exit(101);
    }
    let pool = started.expect("the process pool starts in the parent");
    let t0 = Instant::now();
    let value = bounded(
        pool.push(Task::job(Square(3)))
            .expect("a running pool accepts the job"),
    )
    .await;
    let failed_after = t0.elapsed();
    let starts_at_failure = lines_in(count);
    match &value {
        Err(e @ TaskError::WorkerStartFailed { stage, reason, .. }) => {
            assert!(
                e.to_string().contains("circuits::init()"),
                "the error should point at circuits::init(): {e}"
            );
            // The worker never completed a handshake (it ran `main`, not the protocol).
            assert_eq!(*stage, StartStage::Handshake, "reason: {reason}");
        }
        other => panic!("expected WorkerStartFailed, got {other:?}"),
    }
    assert!(
        starts_at_failure >= LIMIT,
        "the task failed after {starts_at_failure} starts, before the default limit of {LIMIT}"
    );
    // Not a wait for an event: two seconds in which a restart storm would show in the count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let starts = lines_in(count);
    println!(
        "  the task failed after {failed_after:.2?} and {starts_at_failure} starts; {starts} starts 2 s later"
    );
    assert!(
        starts <= 12,
        "{starts} starts: the worker does not keep to the default back-off"
    );
    bounded(pool.abort()).await;
    assert_eq!(wait_for_no_children().await, Vec::<u32>::new());
}

fn main() {
    let worker = std::env::var_os(circuits::WORKER_ENV).is_some();
    if worker {
        count_this_start();
    }
    // What a real program does first, worker or not: say something on stdout.
    let _ = writeln!(
        std::io::stdout(),
        "no_init: pid {} starting",
        std::process::id()
    );
    let count = std::env::temp_dir().join(format!("circuits-no-init-{}.count", std::process::id()));
    let _ = std::fs::remove_file(&count);
    std::env::set_var(COUNT_ENV, &count);

    let name = "a_binary_without_init_fails_its_tasks_with_a_named_error";
    let started = Instant::now();
    let ok = catch_unwind(AssertUnwindSafe(|| {
        actix::System::new().block_on(a_binary_without_init_fails_its_tasks_with_a_named_error(
            &count, worker,
        ))
    }))
    .is_ok();
    let _ = std::fs::remove_file(&count);
    if ok {
        println!(
            "test {name} ... ok ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        println!("\nno_init: 1 passed, 0 failed");
    } else {
        println!("test {name} ... FAILED");
        println!("\nno_init: 0 passed, 1 failed");
        std::process::exit(1);
    }
}
