//! The jobs this binary runs in its worker processes and as S10's worker host: one registry for
//! the process (S6-S8) and remote (S10) scenarios.

use std::net::TcpStream;
use std::time::Duration;

use circuits::prelude::*;
use serde::{Deserialize, Serialize};

/// Returns its payload (S6). `serde_bytes` makes the bytes travel as one block rather than as a
/// sequence of numbers (the guide recommends it for binary payloads).
#[derive(Serialize, Deserialize)]
pub struct Echo(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl Job for Echo {
    const NAME: &'static str = "echo";
    type Output = serde_bytes::ByteBuf;
    fn run(self) -> serde_bytes::ByteBuf {
        serde_bytes::ByteBuf::from(self.0)
    }
}

/// A tiny job (S7, S7b).
#[derive(Serialize, Deserialize)]
pub struct Inc(pub u64);
impl Job for Inc {
    const NAME: &'static str = "inc";
    type Output = u64;
    fn run(self) -> u64 {
        self.0 + 1
    }
}

/// Kills its own process (S8 restart).
#[derive(Serialize, Deserialize)]
pub struct Die;
impl Job for Die {
    const NAME: &'static str = "die";
    type Output = ();
    fn run(self) {
        std::process::abort()
    }
}

/// Every job this binary runs as a worker process or as S10's worker host.
pub fn jobs() -> Jobs {
    Jobs::new()
        .register::<Echo>()
        .register::<Inc>()
        .register::<Die>()
        .register::<Stall>()
}

/// S10's redelivery job: on its first delivery it tells the submitter (a TCP connection to
/// `port`) the pid of the host it runs on, then hangs until that host is killed (its worker
/// process dies with it); delivered again, it returns its delivery count at once.
#[derive(Serialize, Deserialize)]
pub struct Stall {
    pub port: u16,
}

impl Job for Stall {
    const NAME: &'static str = "s10-stall";
    type Output = u64;
    fn run(self) -> u64 {
        let delivery = circuits::job_context().map_or(1, |c| c.delivery());
        if delivery == 1 {
            // The worker process is a child of its host.
            let host = std::os::unix::process::parent_id();
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = std::io::Write::write_all(&mut s, &host.to_le_bytes());
            }
            // Not a wait for anything: the job is "stuck" until its host dies (bounded, so that
            // a bench that goes wrong leaves no process behind for long).
            std::thread::sleep(Duration::from_secs(60));
        }
        delivery
    }
}
