//! Helpers shared by the integration tests: a time bound for every wait, and /proc look-ups for
//! the no-orphans checks.

#![allow(dead_code)] // each test file uses the part it needs

use std::time::Duration;

/// The longest any single wait in a test may take.
pub const BOUND: Duration = Duration::from_secs(60);

/// Awaits `f`, failing the test if it takes longer than [`BOUND`].
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("the test went past its time bound")
}

/// The state letter and parent pid of `pid`, from /proc/<pid>/stat.
fn stat(pid: u32) -> Option<(char, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let mut rest = s[s.rfind(')')? + 2..].split(' ');
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` runs (a zombie nobody reaped yet runs nothing).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// The live child processes of `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
                .filter(|p| stat(*p).is_some_and(|(s, pp)| pp == parent && s != 'Z' && s != 'X'))
                .collect()
        })
        .unwrap_or_default()
}

/// The live child processes of this process.
pub fn children() -> Vec<u32> {
    children_of(std::process::id())
}

/// Waits (up to 10 s, polling /proc: a child's start has no event) until this process has `n`
/// live children, and returns them (fewer or more if the deadline passed).
pub fn await_children(n: usize) -> Vec<u32> {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let c = children();
        if c.len() == n || std::time::Instant::now() > until {
            return c;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
