//! A dashboard connected to a pool, for S2's "dashboard connected" variant: an actix-web server on
//! a thread of its own mounts `circuits::web::Dashboard` for the pool, and a reader thread holds
//! its event stream open, reading every tick, as a browser would. Both end when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use circuits::web::Dashboard;
use circuits::PoolHandle;

/// How often the connected dashboard samples the pool: ten times as often as its default, so
/// that a run of a fraction of a second sees several ticks.
pub const EVERY: Duration = Duration::from_millis(100);

pub struct Connected {
    server: actix_web::dev::ServerHandle,
    done: Arc<AtomicBool>,
    /// Bytes of the event stream read so far.
    pub read: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Mounts a dashboard of `pool` on a loopback port and connects a reader to its event stream.
pub fn connect(pool: &PoolHandle) -> Connected {
    let dashboard = Dashboard::new("/circuits").pool(pool).every(EVERY);
    let (tx, rx) = std::sync::mpsc::channel();
    let server_thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(move || {
                actix_web::App::new().service(dashboard.clone())
            })
            .workers(1)
            .bind(("127.0.0.1", 0))
            .expect("a loopback port");
            let addr = server.addrs()[0];
            let server = server.run();
            tx.send((addr, server.handle())).expect("the bench waits");
            let _ = server.await;
        })
    });
    let (addr, server) = rx.recv().expect("the dashboard's server starts");
    let done = Arc::new(AtomicBool::new(false));
    let read = Arc::new(AtomicU64::new(0));
    let (stop, count) = (done.clone(), read.clone());
    let reader = std::thread::spawn(move || {
        let mut conn = TcpStream::connect(addr).expect("the dashboard answers");
        conn.set_read_timeout(Some(Duration::from_millis(200))).ok();
        conn.write_all(b"GET /circuits/events HTTP/1.1\r\nHost: bench\r\n\r\n")
            .expect("the request is sent");
        let mut buf = [0u8; 16 << 10];
        while !stop.load(Ordering::Relaxed) {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    count.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
    });
    // Connected once the snapshot is in (read timeouts of 200 ms at most between looks).
    while read.load(Ordering::Relaxed) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    Connected {
        server,
        done,
        read,
        threads: vec![server_thread, reader],
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        let stopping = self.server.stop(false);
        futures::executor::block_on(stopping);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
