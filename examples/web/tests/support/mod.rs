//! The example server for the end-to-end tests: the `web` binary cargo built, started on a free
//! loopback port and killed (by its pid) when the test is done.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The example binary cargo built for this test.
pub fn example() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_web"))
}

/// A running example server.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server on a free port, with `args` beside.
pub fn start(args: &[&str]) -> Server {
    let mut child = Command::new(example())
        .args(["--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the web example was built by cargo test");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server { child, base }
}
