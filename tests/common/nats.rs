//! A real `nats-server -js` for the remote-mode tests, started on loopback on a free port with a
//! store of its own, worker hosts (this test binary re-executed with `CIRCUITS_NATS_HOST`), and a
//! relay that cuts a client off from the server. Every process is stopped by its pid when its
//! handle drops.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shows the library's logs on stderr when `CIRCUITS_TEST_LOG` is set (a filter such as
/// `circuits=debug`); worker processes and hosts, which inherit the environment, log there too.
/// Called first in a test binary's `main`.
pub fn logs_from_env() {
    if let Ok(filter) = std::env::var("CIRCUITS_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init();
    }
}

/// Where the server binary is (`CIRCUITS_NATS_SERVER`, then `PATH`, then Debian's `/usr/sbin`).
fn server_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CIRCUITS_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// Whether the tests may skip for want of a server: not when `CIRCUITS_REQUIRE_NATS=1` (CI).
pub fn skip_without_server(target: &str) -> bool {
    if server_binary().is_some() {
        return false;
    }
    if std::env::var("CIRCUITS_REQUIRE_NATS").as_deref() == Ok("1") {
        panic!("{target}: nats-server is not installed, and CIRCUITS_REQUIRE_NATS=1 requires it");
    }
    println!("{target}: skipped: nats-server is not installed (apt-get install nats-server)");
    true
}

/// A free TCP port on loopback (the kernel's pick; free again once the listener drops).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
        .port()
}

/// One `nats-server` process.
pub struct Server {
    child: Child,
    pub port: u16,
    store: PathBuf,
    args: Vec<String>,
    /// Where in its log file its last launch began.
    log_from: u64,
}

impl Server {
    /// A single server with JetStream on a free port.
    pub fn start() -> Server {
        Server::spawn(free_port(), Vec::new(), None)
    }

    /// Node `name` of a JetStream cluster whose routes are `routes` (all nodes' cluster ports).
    pub fn cluster_node(name: &str, cluster_port: u16, routes: &[u16]) -> Server {
        let routes: Vec<String> = routes
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let args = vec![
            "--name".into(),
            name.into(),
            "--cluster_name".into(),
            "circuits".into(),
            "--cluster".into(),
            format!("nats://127.0.0.1:{cluster_port}"),
            "--routes".into(),
            routes.join(","),
        ];
        Server::spawn(free_port(), args, None)
    }

    fn spawn(port: u16, args: Vec<String>, store: Option<PathBuf>) -> Server {
        let store = store.unwrap_or_else(|| {
            let dir =
                std::env::temp_dir().join(format!("circuits-nats-{}-{port}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("a store directory");
            dir
        });
        let log_from = log_len(&store);
        let mut server = Server {
            child: launch(port, &store, &args),
            port,
            store,
            args,
            log_from,
        };
        server.until_listening("start");
        server
    }

    /// Waits until the launched server takes connections. A port `free_port` saw free can be
    /// taken before the server binds it (another process's outgoing connection gets it as its
    /// local port): the server exits, and starts again on other ports.
    ///
    /// # Panics
    ///
    /// If it exits for another reason, or finds no free port in 4 tries (with its log).
    fn until_listening(&mut self, what: &str) {
        for _ in 0..3 {
            match self.wait_until_listening() {
                Ok(()) => return,
                Err(log) if log.contains("address already in use") => {
                    self.port = free_port();
                    if let Some(i) = self.args.iter().position(|a| a == "--cluster") {
                        self.args[i + 1] = format!("nats://127.0.0.1:{}", free_port());
                    }
                    self.relaunch();
                }
                Err(log) => panic!("nats-server exited at its {what}; its log:\n{log}"),
            }
        }
        if let Err(log) = self.wait_until_listening() {
            panic!("nats-server found no free port in 4 tries; its log:\n{log}");
        }
    }

    /// Waits until the server takes connections; its log if it exited first.
    ///
    /// # Panics
    ///
    /// If it neither listens nor exits within 20 s.
    fn wait_until_listening(&mut self) -> Result<(), String> {
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(self.log());
            }
            assert!(
                Instant::now() < until,
                "nats-server listens within 20 s; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Launches the server's process again, with its store, ports and arguments.
    fn relaunch(&mut self) {
        self.log_from = log_len(&self.store);
        self.child = launch(self.port, &self.store, &self.args);
    }

    /// What the server logged since its last launch.
    fn log(&self) -> String {
        let all = std::fs::read(self.store.join(LOG)).unwrap_or_default();
        let since = usize::try_from(self.log_from).map_or(all.len(), |n| n.min(all.len()));
        String::from_utf8_lossy(&all[since..]).into_owned()
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server's process (SIGSTOP): it holds its connections and answers nothing.
    pub fn pause(&self) {
        signal(self.pid(), libc::SIGSTOP);
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        signal(self.pid(), libc::SIGCONT);
    }

    /// Starts a killed server again on the same store, and the same ports unless they were
    /// taken meanwhile.
    pub fn restart(&mut self) {
        self.relaunch();
        self.until_listening("restart");
    }

    /// Kills the server (SIGKILL) without starting it again.
    pub fn kill(&mut self) {
        signal(self.pid(), libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        signal(self.pid(), libc::SIGCONT);
        signal(self.pid(), libc::SIGKILL);
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// The server's log file, in its store's directory (appended to across restarts).
const LOG: &str = "server.log";

/// How long the log file in `store` is (0 before the first launch).
fn log_len(store: &std::path::Path) -> u64 {
    std::fs::metadata(store.join(LOG)).map_or(0, |m| m.len())
}

/// Starts `nats-server` with JetStream on `port`, its store in `store`.
fn launch(port: u16, store: &std::path::Path, args: &[String]) -> Child {
    let bin = server_binary().expect("nats-server is installed (see skip_without_server)");
    Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .arg("-l")
        .arg(store.join(LOG))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts")
}

/// Waits until the cluster at `urls` can make a stream kept by 3 servers (its JetStream has
/// elected a leader and every node is in), polling with a deadline of 90 s.
pub async fn cluster_ready(urls: &str) {
    let until = Instant::now() + Duration::from_secs(90);
    let addrs: Vec<&str> = urls.split(',').collect();
    let client = async_nats::connect(addrs)
        .await
        .expect("a client of the cluster");
    let js = async_nats::jetstream::new(client);
    loop {
        let made = js
            .create_stream(async_nats::jetstream::stream::Config {
                name: "READY".into(),
                subjects: vec!["ready".into()],
                num_replicas: 3,
                ..Default::default()
            })
            .await;
        if made.is_ok() {
            let _ = js.delete_stream("READY").await;
            return;
        }
        assert!(
            Instant::now() < until,
            "the cluster is ready within 90 s: {made:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill takes a pid and a signal number and touches no memory of ours.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// A worker host: this test binary started with `CIRCUITS_NATS_HOST`, whose `main` calls
/// `circuits::init` first and so runs as a host.
pub struct Host {
    child: Child,
}

impl Host {
    /// Starts a host of `url` with `slots` slots and the stream settings in `env`
    /// (`CIRCUITS_NATS_PREFIX`, `CIRCUITS_NATS_ACK_WAIT_MS`, ...).
    pub fn start(url: &str, slots: usize, env: &[(&str, String)]) -> Host {
        let child = Command::new(std::env::current_exe().expect("the test binary"))
            .env(circuits::HOST_ENV, url)
            .env("CIRCUITS_NATS_WORKERS", slots.to_string())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .spawn()
            .expect("a host starts");
        Host { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the host's process has ended (without waiting).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Kills the host at once (SIGKILL); its worker processes die with it.
    pub fn kill(&mut self) {
        signal(self.pid(), libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Asks the host to stop gracefully (SIGTERM) and waits for it to exit; its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        signal(self.pid(), libc::SIGTERM);
        self.child.wait().expect("the host exits")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        signal(self.pid(), libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A TCP relay on loopback between clients and a server: the network of a test, which it can
/// cut (every connection through it closes, and new ones close as they come, as when a host is
/// partitioned away) and mend.
pub struct Relay {
    port: u16,
    /// Whether it is cut, and the sockets of the connections through it (both ends of each).
    state: Arc<Mutex<(bool, Vec<TcpStream>)>>,
    ended: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    /// A relay to the server listening on `upstream` (on loopback).
    pub fn to(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let state: Arc<Mutex<(bool, Vec<TcpStream>)>> = Arc::default();
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (shared, e) = (state.clone(), ended.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if e.load(std::sync::atomic::Ordering::Acquire) {
                    return;
                }
                let Ok(client) = client else { continue };
                // Checked and registered under the lock: a cut closes every connection it let in.
                let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
                if state.0 {
                    continue; // cut: closed at once
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let clones = (
                    client.try_clone(),
                    server.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                );
                let (Ok(to_client), Ok(to_server), Ok(c), Ok(s)) = clones else {
                    continue;
                };
                state.1.extend([c, s]);
                pipe(client, to_server);
                pipe(server, to_client);
            }
        });
        Relay { port, state, ended }
    }

    /// The URL clients of the server use to go through the relay.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Closes every connection through the relay, and each new one as it comes, until
    /// [`mend`](Self::mend).
    pub fn cut(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 = true;
        for socket in state.1.drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn mend(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0 = false;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.ended.store(true, std::sync::atomic::Ordering::Release);
        self.cut();
        // Wakes the accepting thread, which sees the relay ended.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies what comes on `from` to `to` on a thread of its own, and closes both when either ends.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
