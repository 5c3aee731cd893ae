//! S10: remote worker hosts on NATS JetStream (issue #13), against a bare async-nats loop on the
//! same server, in the same run.
//!
//! The scenario starts its own `nats-server -js` (loopback, a free port, a store of its own,
//! killed by its pid at the end) and its own worker hosts: this binary re-executed with
//! `CIRCUITS_NATS_HOST`, which `circuits::init` in `main` turns into a host running the suite's
//! jobs in a local process pool of 2 workers. Contenders, interleaved by round:
//! - ours: `Pool::builder().min(2).nats(..)` with 1 host (prefix `s10-one`) and with 2 hosts
//!   (`s10-two`), kept for every round; single jobs pushed at once (`pool.push(Task::job(Inc))`)
//!   and `map_chunked(.., 256)`;
//! - the peer: local process mode, `Pool::builder().min(2).process()`, the same job;
//! - the floor: async-nats alone on the same server, with 1 and 2 consumers: the same streams and
//!   the same messages per job as our path (see [`floor_consumer`] and the notes);
//! - one job in flight: p50 and p99 latency of ours (1 host), local process mode and the floor's
//!   single round trip;
//! - redelivery: a job that reports the host it runs on and hangs; that host is SIGKILLed, and the
//!   time from the kill to the job's result (run again by the other host) is set against the
//!   configured `ack_wait`.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix::prelude::*;
use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use bytes::Bytes;
use circuits::prelude::*;
use circuits::{NatsConfig, HOST_ENV};
use futures::StreamExt;

use crate::jobs::{Inc, Stall};
use crate::measure::{Config, Kind, Scenario};

const ONE: &str = "circuits nats pool, 1 host";
const TWO: &str = "circuits nats pool, 2 hosts";
const LOCAL: &str = "circuits local process pool";
const FLOOR_ONE: &str = "floor: async-nats, 1 consumer";
const FLOOR_TWO: &str = "floor: async-nats, 2 consumers";
const ACK_WAIT: &str = "floor: the configured ack_wait";

/// Every pool here is unbounded and running while jobs are pushed.
const RUNNING: &str = "an unbounded, running pool accepts every job";

/// Worker processes per host (and in the local process pool).
const WORKERS: usize = 2;
/// The most jobs a host holds at once by default (256 per worker; it holds what its workers
/// finish in about 20 ms, which for jobs this short is about all of them): the floor's consumers
/// pull in batches of this many.
const HOST_SLOTS: usize = 256 * WORKERS;
/// Jobs per `map` chunk, and per message of the floor's chunked loop.
const CHUNK: usize = 256;
/// The redelivery's `ack_wait`.
const REDELIVERY_ACK_WAIT: Duration = Duration::from_secs(1);
/// How many of the floor's publishes await their confirmation at once: the client's own limit is
/// 5,000 (`max_ack_inflight`); our link has every task's publish in flight, up to that limit.
const PUBLISHING: usize = 4096;
/// The longest any one measurement may take before the scenario gives up (a hang is a bug).
const DEADLINE: Duration = Duration::from_secs(120);

/// The floor's message sizes, about those of our path: a single job's request (postcard: the
/// pool's 32-character id, task id, attempt, job name, input, timeout) and its answer; a chunk of
/// 256 `Inc` jobs and its 256 outcomes.
const SINGLE_JOB_BYTES: usize = 48;
const SINGLE_ANSWER_BYTES: usize = 12;
const CHUNK_JOB_BYTES: usize = 1024;
const CHUNK_ANSWER_BYTES: usize = 1024;

/// Where `nats-server` is (`CIRCUITS_NATS_SERVER`, then `PATH`, then Debian's `/usr/sbin`).
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

/// A `nats-server -js` on loopback, on a free port, with its own store; killed by its pid (and
/// its store removed) when dropped.
struct NatsServer {
    child: Child,
    port: u16,
    store: PathBuf,
}

impl NatsServer {
    fn start(binary: &std::path::Path) -> NatsServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a loopback port")
            .port();
        let store =
            std::env::temp_dir().join(format!("circuits-bench-nats-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&store);
        std::fs::create_dir_all(&store).expect("a store directory");
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let server = NatsServer { child, port, store };
        // No event says the server listens: poll, with a deadline.
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "nats-server listens within 20 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The CPU time the server has used so far, in seconds (user + system, from `/proc`; the
    /// kernel reports it in ticks of 1/100 s).
    fn cpu(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The fields after the command's name, which is in parentheses: utime and stime are the
        // 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        match (ticks(11), ticks(12)) {
            (Some(user), Some(system)) => (user + system) / 100.0,
            _ => f64::NAN,
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A worker host: this binary with `CIRCUITS_NATS_HOST`, killed (SIGKILL) when dropped.
struct Host(Child);

impl Host {
    fn start(url: &str, prefix: &str, env: &[(&str, String)]) -> Host {
        let child = Command::new(std::env::current_exe().expect("the bench binary"))
            .env(HOST_ENV, url)
            .env("CIRCUITS_NATS_PREFIX", prefix)
            .env("CIRCUITS_NATS_WORKERS", WORKERS.to_string())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .spawn()
            .expect("a worker host starts");
        Host(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The stream and consumer names of a prefix, as `NatsConfig::prefix` documents them.
fn jobs_stream(prefix: &str) -> String {
    format!("{}_JOBS", prefix.to_uppercase())
}
fn results_stream(prefix: &str) -> String {
    format!("{}_RESULTS", prefix.to_uppercase())
}
fn hosts_consumer(prefix: &str) -> String {
    format!("{prefix}-hosts")
}

/// Waits until `pulls` pull requests wait on the hosts' consumer of `prefix`: every host (or floor
/// consumer) connected and asked for work. There is no event for it: polled, with a deadline.
async fn wait_for_pulls(js: &jetstream::Context, prefix: &str, pulls: usize) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting = match js.get_stream(jobs_stream(prefix)).await {
            Ok(s) => s
                .consumer_info(hosts_consumer(prefix))
                .await
                .map_or(0, |i| i.num_waiting),
            Err(_) => 0,
        };
        if waiting >= pulls {
            return;
        }
        assert!(
            Instant::now() < until,
            "{prefix}: {pulls} consumers pulling within 30 s (saw {waiting})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One floor contender: its streams and consumer (made as circuits makes them), its consumer
/// tasks, and the submitter's side.
struct FloorLane {
    prefix: String,
    js: jetstream::Context,
    answers: consumer::pull::Stream,
}

impl FloorLane {
    /// Makes the streams and consumers of `prefix` and starts `consumers` consumer tasks, each on
    /// a connection of its own (as each host has one).
    async fn start(url: &str, prefix: &str, consumers: usize) -> FloorLane {
        let client = async_nats::connect(url).await.expect("the floor connects");
        let js = jetstream::new(client);
        // The same settings as circuits' work stream, results stream and hosts' consumer.
        let jobs = js
            .get_or_create_stream(stream::Config {
                name: jobs_stream(prefix),
                subjects: vec![format!("{prefix}.jobs")],
                retention: stream::RetentionPolicy::WorkQueue,
                discard: stream::DiscardPolicy::New,
                duplicate_window: Duration::from_secs(120),
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .expect("the floor's work stream");
        let results = js
            .get_or_create_stream(stream::Config {
                name: results_stream(prefix),
                subjects: vec![format!("{prefix}.results.>")],
                retention: stream::RetentionPolicy::WorkQueue,
                max_age: Duration::from_secs(24 * 3600),
                duplicate_window: Duration::from_secs(120),
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .expect("the floor's results stream");
        jobs.get_or_create_consumer(
            &hosts_consumer(prefix),
            consumer::pull::Config {
                durable_name: Some(hosts_consumer(prefix)),
                filter_subject: format!("{prefix}.jobs"),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_deliver: 3,
                max_ack_pending: 4096,
                ..Default::default()
            },
        )
        .await
        .expect("the floor's consumer");
        let mine: consumer::PullConsumer = results
            .get_or_create_consumer(
                "results-floor",
                consumer::pull::Config {
                    durable_name: Some("results-floor".into()),
                    filter_subject: format!("{prefix}.results.floor"),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ..Default::default()
                },
            )
            .await
            .expect("the floor's results consumer");
        for _ in 0..consumers {
            tokio::spawn(floor_consumer(url.to_string(), prefix.to_string()));
        }
        wait_for_pulls(&js, prefix, consumers).await;
        // As our link reads its answers.
        let answers = mine.messages().await.expect("the floor reads its answers");
        FloorLane {
            prefix: prefix.to_string(),
            js,
            answers,
        }
    }

    /// Publishes `messages` jobs (each with a message id), up to [`PUBLISHING`] awaiting the
    /// server's confirmation at once, and reads and acknowledges as many answers. Returns the
    /// seconds from the first publish to the last answer.
    async fn flood(&mut self, run: u64, messages: usize, job: usize, answer: usize) -> f64 {
        let subject = format!("{}.jobs", self.prefix);
        let js = self.js.clone();
        let t = Instant::now();
        let publish = futures::stream::iter(0..messages)
            .map(|i| {
                let (js, subject) = (&js, subject.clone());
                async move {
                    let message = PublishMessage::build()
                        .payload(floor_job(run, i, job, answer))
                        .message_id(format!("{run}.{i}"));
                    let stored = js.send_publish(subject, message).await?;
                    stored.await
                }
            })
            .buffer_unordered(PUBLISHING)
            .for_each(|stored| async move {
                stored.expect("the server stores the floor's job");
            });
        let answers = &mut self.answers;
        let collect = async move {
            for _ in 0..messages {
                let m = answers
                    .next()
                    .await
                    .expect("answers keep coming")
                    .expect("an answer");
                let _ = m.ack().await;
            }
        };
        futures::join!(publish, collect);
        t.elapsed().as_secs_f64()
    }

    /// One job at a time: from its publish to its answer, in microseconds.
    async fn round_trips(&mut self, run: u64, n: usize) -> Vec<f64> {
        let subject = format!("{}.jobs", self.prefix);
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let t = Instant::now();
            let ack = self
                .js
                .send_publish(
                    subject.clone(),
                    PublishMessage::build()
                        .payload(floor_job(run, i, SINGLE_JOB_BYTES, SINGLE_ANSWER_BYTES))
                        .message_id(format!("{run}.{i}")),
                )
                .await
                .expect("the floor publishes");
            let m = self
                .answers
                .next()
                .await
                .expect("answers keep coming")
                .expect("an answer");
            out.push(t.elapsed().as_secs_f64() * 1e6);
            ack.await.expect("the server stores the floor's job");
            let _ = m.ack().await;
        }
        out
    }
}

/// A floor job: which run and which job it is (for its message id), the size of the answer it
/// wants, padded to `len` bytes.
fn floor_job(run: u64, index: usize, len: usize, answer: usize) -> Bytes {
    let mut b = Vec::with_capacity(len.max(20));
    b.extend_from_slice(&run.to_le_bytes());
    b.extend_from_slice(&(index as u64).to_le_bytes());
    b.extend_from_slice(&(answer as u32).to_le_bytes());
    b.resize(len.max(20), 0);
    Bytes::from(b)
}

/// The floor's host: pulls jobs continuously in batches of a host's default slots (the client's
/// `stream()`, which asks for the next batch before this one is used up), and for each one
/// publishes its answer to the results stream (with a message id) and, once the server stored
/// it, acknowledges the job: the same messages and the same order as a circuits host, without
/// decoding, a pool or a worker process.
async fn floor_consumer(url: String, prefix: String) {
    let client = async_nats::connect(url)
        .await
        .expect("a floor consumer connects");
    let js = jetstream::new(client);
    let stream = js
        .get_stream(jobs_stream(&prefix))
        .await
        .expect("the floor's work stream");
    let consumer: consumer::PullConsumer = stream
        .get_consumer(&hosts_consumer(&prefix))
        .await
        .expect("the floor's consumer");
    let mut jobs = consumer
        .stream()
        .max_messages_per_batch(HOST_SLOTS)
        .messages()
        .await
        .expect("a floor consumer pulls");
    let subject = format!("{prefix}.results.floor");
    while let Some(next) = jobs.next().await {
        let Ok(job) = next else { continue };
        let p = &job.payload;
        let (run, index) = (&p[0..8], &p[8..16]);
        let run = u64::from_le_bytes(run.try_into().expect("8 bytes"));
        let index = u64::from_le_bytes(index.try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(p[16..20].try_into().expect("4 bytes")) as usize;
        let sent = js
            .send_publish(
                subject.clone(),
                PublishMessage::build()
                    .payload(Bytes::from(vec![0u8; len]))
                    .message_id(format!("{run}.{index}.a")),
            )
            .await;
        tokio::spawn(async move {
            if let Ok(stored) = sent {
                if stored.await.is_ok() {
                    let _ = job.ack().await;
                }
            }
        });
    }
}

/// `n` single jobs pushed at once, then awaited: jobs per second.
async fn flood(pool: &PoolHandle, n: usize) -> f64 {
    let t = Instant::now();
    let values: Vec<_> = (0..n as u64)
        .map(|i| pool.push(Task::job(Inc(i))).expect(RUNNING))
        .collect();
    for (i, v) in values.into_iter().enumerate() {
        assert_eq!(v.await, Ok(i as u64 + 1), "job {i} ran");
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// `n` jobs through `map_chunked(.., 256)`, results in order: jobs per second.
async fn map(pool: &PoolHandle, n: usize) -> f64 {
    let t = Instant::now();
    let results: Vec<_> = pool
        .map_chunked((0..n as u64).map(Inc), CHUNK)
        .expect(RUNNING)
        .collect()
        .await;
    let elapsed = t.elapsed().as_secs_f64();
    assert_eq!(results.len(), n);
    assert!(results.iter().all(Result::is_ok), "every job ran");
    n as f64 / elapsed
}

/// One job at a time, `n` times: each round trip in microseconds.
async fn round_trips(pool: &PoolHandle, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = Instant::now();
        let r = pool.push(Task::job(Inc(i))).expect(RUNNING).await;
        out.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(r, Ok(i + 1));
    }
    out
}

/// The `p` quantile (0..1] of `v` (the smallest value with at least that share at or below it).
fn quantile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// Panics if `f` takes longer than [`DEADLINE`]: a stuck measurement is a bug, not a sample.
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("S10 {what}: no end within {DEADLINE:?}"))
}

/// One redelivery: a pool and two hosts of their own (a fresh prefix, `ack_wait` 1 s); the host
/// that runs the stalling job is SIGKILLed as soon as the job reports in. Returns the
/// milliseconds from the kill to the job's result from the other host.
fn redelivery(sys: &actix::SystemRunner, admin: &Floor, url: &str, round: usize) -> f64 {
    let prefix = format!("s10-redeliver-{round}");
    let config = NatsConfig::new(url)
        .prefix(&prefix)
        .ack_wait(REDELIVERY_ACK_WAIT)
        .max_deliver(3);
    let pool = sys.block_on(async { Pool::builder().min(1).nats(config).start() });
    let env = [
        (
            "CIRCUITS_NATS_ACK_WAIT_MS",
            REDELIVERY_ACK_WAIT.as_millis().to_string(),
        ),
        ("CIRCUITS_NATS_MAX_DELIVER", "3".to_string()),
    ];
    let mut hosts = [
        Host::start(url, &prefix, &env),
        Host::start(url, &prefix, &env),
    ];
    admin.rt.block_on(wait_for_pulls(&admin.js, &prefix, 2));
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let port = listener.local_addr().expect("its address").port();
    let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut pid = [0u8; 4];
            if s.read_exact(&mut pid).is_ok() {
                let _ = tx.send(u32::from_le_bytes(pid));
            }
        }
    });
    let ms = sys.block_on(async {
        let value = pool.push(Task::job(Stall { port })).expect(RUNNING);
        let pid = bounded("redelivery: the job starts on a host", rx)
            .await
            .expect("the job reports its host");
        let host = hosts
            .iter_mut()
            .find(|h| h.pid() == pid)
            .expect("the job runs on one of the two hosts");
        let t = Instant::now();
        host.kill();
        let delivery = bounded("redelivery: the other host runs the job", value).await;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(delivery, Ok(2), "the job ran again, on its second delivery");
        ms
    });
    sys.block_on(pool.stop());
    drop(hosts);
    ms
}

/// The server's CPU time per job (or per chunk) of each measurement, by what was measured and
/// who, in microseconds.
#[derive(Default)]
struct BrokerCpu(std::collections::HashMap<(&'static str, &'static str), Vec<f64>>);

impl BrokerCpu {
    /// Runs `f`, which sends `messages` jobs (or chunks) through the server, and records the
    /// server's CPU time per message.
    fn measure<T>(
        &mut self,
        server: &NatsServer,
        what: &'static str,
        who: &'static str,
        messages: usize,
        f: impl FnOnce() -> T,
    ) -> T {
        let before = server.cpu();
        let out = f();
        let used = server.cpu() - before;
        self.0
            .entry((what, who))
            .or_default()
            .push(used / messages as f64 * 1e6);
        out
    }

    fn median(&self, what: &'static str, who: &'static str) -> f64 {
        self.0
            .get(&(what, who))
            .map_or(f64::NAN, |v| crate::measure::median(v))
    }
}

/// The floor's runtime (2 threads, as the machine has 2 cores) and an admin connection.
struct Floor {
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
    runs: u64,
}

impl Floor {
    fn next_run(&mut self) -> u64 {
        self.runs += 1;
        self.runs
    }
}

pub fn s10(cfg: &Config) -> Vec<Scenario> {
    let single = cfg.size(5_000, 2_000);
    let mapped = cfg.size(512 * 1000, 128 * 1000);
    let one_by_one = cfg.size(400, 100);
    let mut s_one = Scenario::new(
        "S10 single 1 host",
        &format!("remote: {single} single jobs pushed at once, 1 host of 2 workers"),
        "jobs/s",
        true,
        "within 1.5x of the floor's throughput",
    );
    let mut s_two = Scenario::new(
        "S10 single 2 hosts",
        &format!("remote: {single} single jobs pushed at once, 2 hosts of 2 workers"),
        "jobs/s",
        true,
        "within 1.5x of the floor's throughput",
    );
    let mut m_one = Scenario::new(
        "S10 map 1 host",
        &format!("remote: map over {mapped} jobs in chunks of {CHUNK}, 1 host of 2 workers"),
        "jobs/s",
        true,
        "report only (the target is for 2 hosts)",
    );
    let mut m_two = Scenario::new(
        "S10 map 2 hosts",
        &format!("remote: map over {mapped} jobs in chunks of {CHUNK}, 2 hosts of 2 workers"),
        "jobs/s",
        true,
        "at least 1M jobs/s",
    );
    let mut p50 = Scenario::new(
        "S10 p50",
        &format!("remote: one job in flight, {one_by_one} one after another, 1 host: p50"),
        "us (p50)",
        false,
        "report only (the issue sets no latency target)",
    );
    let mut p99 = Scenario::new(
        "S10 p99",
        &format!("remote: one job in flight, {one_by_one} one after another, 1 host: p99"),
        "us (p99)",
        false,
        "report only (the issue sets no latency target)",
    );
    let mut redeliver = Scenario::new(
        "S10 redelivery",
        &format!(
            "remote: from a host's SIGKILL mid-job to the job's result from the other host, ack_wait {} ms",
            REDELIVERY_ACK_WAIT.as_millis()
        ),
        "ms",
        false,
        "report against the configured ack_wait (the server redelivers after it)",
    );
    for (s, ours, floor) in [
        (&mut s_one, ONE, FLOOR_ONE),
        (&mut s_two, TWO, FLOOR_TWO),
        (&mut m_one, ONE, FLOOR_ONE),
        (&mut m_two, TWO, FLOOR_TWO),
        (&mut p50, ONE, FLOOR_ONE),
        (&mut p99, ONE, FLOOR_ONE),
    ] {
        s.add(ours, Kind::Ours);
        s.add(LOCAL, Kind::Peer);
        s.add(floor, Kind::Floor);
    }
    redeliver.add(ONE, Kind::Ours);
    redeliver.add(ACK_WAIT, Kind::Floor);
    let mut all = vec![s_one, s_two, m_one, m_two, p50, p99, redeliver];

    let Some(binary) = server_binary() else {
        let why = "nats-server is not installed (apt-get install nats-server)";
        eprintln!("   S10 skipped: {why}");
        for s in &mut all {
            for c in &mut s.contenders {
                c.note = Some(why.into());
            }
            s.judge(false, format!("not run: {why}"));
        }
        return all;
    };
    let [s_one, s_two, m_one, m_two, p50, p99, redeliver] = &mut all[..] else {
        unreachable!("seven scenarios")
    };

    let server = NatsServer::start(&binary);
    let url = server.url();
    let sys = System::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the floor's runtime starts");
    let js = rt.block_on(async {
        jetstream::new(
            async_nats::connect(&url)
                .await
                .expect("the admin connection"),
        )
    });
    let mut floor = Floor { rt, js, runs: 0 };

    // Ours: a pool per host count, each with its own prefix (streams and hosts' consumer), kept
    // for every round; the hosts likewise.
    let nats = |prefix: &str| NatsConfig::new(url.as_str()).prefix(prefix);
    let (one, two, local) = sys.block_on(async {
        (
            Pool::builder().min(2).nats(nats("s10-one")).start(),
            Pool::builder().min(2).nats(nats("s10-two")).start(),
            Pool::builder().min(WORKERS).process().start(),
        )
    });
    let hosts = [
        Host::start(&url, "s10-one", &[]),
        Host::start(&url, "s10-two", &[]),
        Host::start(&url, "s10-two", &[]),
    ];
    floor.rt.block_on(async {
        wait_for_pulls(&floor.js, "s10-one", 1).await;
        wait_for_pulls(&floor.js, "s10-two", 2).await;
    });
    let (mut lane_one, mut lane_two) = floor.rt.block_on(async {
        (
            FloorLane::start(&url, "s10-floor-one", 1).await,
            FloorLane::start(&url, "s10-floor-two", 2).await,
        )
    });

    // Warm-up, not recorded: the hosts' and the local pool's worker processes, the connections.
    sys.block_on(async {
        for pool in [&one, &two, &local] {
            bounded("warm-up", flood(pool, 500)).await;
            bounded("warm-up", map(pool, 20 * CHUNK)).await;
        }
    });
    for lane in [&mut lane_one, &mut lane_two] {
        let run = floor.next_run();
        floor
            .rt
            .block_on(lane.flood(run, 500, SINGLE_JOB_BYTES, SINGLE_ANSWER_BYTES));
    }

    let chunks = mapped.div_ceil(CHUNK);
    // The server's CPU per job (single) or per chunk (map) for each of ours and the floor, in
    // microseconds: what the broker does for each, the cause of most of the difference.
    let mut broker = BrokerCpu::default();
    for round in 0..cfg.rounds {
        // Single jobs.
        let v = broker.measure(&server, "single", ONE, single, || {
            sys.block_on(bounded("single, 1 host", flood(&one, single)))
        });
        s_one.push(ONE, v);
        let v = broker.measure(&server, "single", TWO, single, || {
            sys.block_on(bounded("single, 2 hosts", flood(&two, single)))
        });
        s_two.push(TWO, v);
        let v = sys.block_on(bounded("single, local", flood(&local, single)));
        s_one.push(LOCAL, v);
        s_two.push(LOCAL, v);
        for (lane, s, name) in [
            (&mut lane_one, &mut *s_one, FLOOR_ONE),
            (&mut lane_two, &mut *s_two, FLOOR_TWO),
        ] {
            let run = floor.next_run();
            let secs = broker.measure(&server, "single", name, single, || {
                floor.rt.block_on(bounded(
                    "single, floor",
                    lane.flood(run, single, SINGLE_JOB_BYTES, SINGLE_ANSWER_BYTES),
                ))
            });
            s.push(name, single as f64 / secs);
        }

        // Chunks of 256.
        let v = broker.measure(&server, "map", ONE, chunks, || {
            sys.block_on(bounded("map, 1 host", map(&one, mapped)))
        });
        m_one.push(ONE, v);
        let v = broker.measure(&server, "map", TWO, chunks, || {
            sys.block_on(bounded("map, 2 hosts", map(&two, mapped)))
        });
        m_two.push(TWO, v);
        let v = sys.block_on(bounded("map, local", map(&local, mapped)));
        m_one.push(LOCAL, v);
        m_two.push(LOCAL, v);
        for (lane, s, name) in [
            (&mut lane_one, &mut *m_one, FLOOR_ONE),
            (&mut lane_two, &mut *m_two, FLOOR_TWO),
        ] {
            let run = floor.next_run();
            let secs = broker.measure(&server, "map", name, chunks, || {
                floor.rt.block_on(bounded(
                    "map, floor",
                    lane.flood(run, chunks, CHUNK_JOB_BYTES, CHUNK_ANSWER_BYTES),
                ))
            });
            s.push(name, (chunks * CHUNK) as f64 / secs);
        }

        // One job in flight.
        let mut record = |name: &str, mut v: Vec<f64>| {
            p50.push(name, quantile(&mut v, 0.50));
            p99.push(name, quantile(&mut v, 0.99));
        };
        record(
            ONE,
            sys.block_on(bounded("one in flight", round_trips(&one, one_by_one))),
        );
        record(
            LOCAL,
            sys.block_on(bounded("one in flight", round_trips(&local, one_by_one))),
        );
        let run = floor.next_run();
        record(
            FLOOR_ONE,
            floor.rt.block_on(bounded(
                "one in flight, floor",
                lane_one.round_trips(run, one_by_one),
            )),
        );

        // Redelivery after a SIGKILL.
        redeliver.push(ONE, redelivery(&sys, &floor, &url, round));
        redeliver.push(ACK_WAIT, REDELIVERY_ACK_WAIT.as_secs_f64() * 1e3);
    }

    sys.block_on(async {
        one.stop().await;
        two.stop().await;
        local.stop().await;
    });
    drop(hosts);
    drop((lane_one, lane_two));
    floor.rt.shutdown_background();
    drop(server);

    for (s, ours, floor) in [(&mut *s_one, ONE, FLOOR_ONE), (&mut *s_two, TWO, FLOOR_TWO)] {
        let behind = s.advantage(floor, ours);
        let local = s.advantage(ours, LOCAL);
        s.judge(
            behind <= 1.5,
            format!(
                "floor / ours = {behind:.2}x (target <= 1.5x); {local:.2}x local process mode; nats-server CPU per job: ours {:.0} us, floor {:.0} us",
                broker.median("single", ours),
                broker.median("single", floor)
            ),
        );
    }
    let v = m_one.median_of(ONE);
    let (vs_floor, vs_local) = (m_one.advantage(ONE, FLOOR_ONE), m_one.advantage(ONE, LOCAL));
    m_one.judge(
        true,
        format!(
            "ours {v:.0} jobs/s; {vs_floor:.2}x the floor, {vs_local:.2}x local process mode; nats-server CPU per chunk: ours {:.0} us, floor {:.0} us",
            broker.median("map", ONE),
            broker.median("map", FLOOR_ONE)
        ),
    );
    let v = m_two.median_of(TWO);
    let (vs_floor, vs_local) = (m_two.advantage(TWO, FLOOR_TWO), m_two.advantage(TWO, LOCAL));
    m_two.judge(
        v >= 1e6,
        format!(
            "ours {v:.0} jobs/s (target >= 1M); {vs_floor:.2}x the floor, {vs_local:.2}x local process mode; nats-server CPU per chunk: ours {:.0} us, floor {:.0} us",
            broker.median("map", TWO),
            broker.median("map", FLOOR_TWO)
        ),
    );
    for s in [&mut *p50, &mut *p99] {
        let (ours, floor, local) = (s.median_of(ONE), s.median_of(FLOOR_ONE), s.median_of(LOCAL));
        s.judge(
            true,
            format!(
                "ours {ours:.0} us, floor {floor:.0} us ({:.2}x the floor's); local process mode {local:.0} us",
                ours / floor
            ),
        );
    }
    let (ms, wait) = (redeliver.median_of(ONE), redeliver.median_of(ACK_WAIT));
    redeliver.judge(
        true,
        format!(
            "ours {ms:.0} ms after the kill, ack_wait {wait:.0} ms ({:.2}x)",
            ms / wait
        ),
    );
    all
}
