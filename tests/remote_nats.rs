//! Remote mode against a real `nats-server -js` (started here on loopback, stopped by its pid):
//! jobs across two hosts, every outcome once, the failure table, the server paused and killed.
//! Worker hosts are this binary re-executed with `CIRCUITS_NATS_HOST`: `circuits::init` runs first
//! in `main` (`harness = false`).

mod common;
#[path = "common/nats.rs"]
mod nats;

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use async_nats::jetstream::consumer::Info as ConsumerInfo;
use circuits::prelude::*;
use circuits::{BrokerError, NatsConfig};
use common::{bounded, collect, Square};
use futures::StreamExt;
use nats::{Host, Relay, Server};
use serde::{Deserialize, Serialize};

/// Misbehaves in the ways the failure table names.
#[derive(Serialize, Deserialize)]
enum Trouble {
    Panic,
    Abort,
    Sleep(u64),
    /// Kills the host it runs on (its worker process's parent), every time.
    KillHost,
    /// Appends its host's pid, job id and delivery to the file (the side effect), then, on its
    /// first delivery only, sleeps for ever: the test kills the host running it.
    RecordThenHang(String),
    /// A large input: answers its length once the file (the gate) exists.
    Large(#[serde(with = "serde_bytes")] Vec<u8>, String),
}

impl Job for Trouble {
    const NAME: &'static str = "trouble";
    type Output = u32;
    fn run(self) -> u32 {
        match self {
            Trouble::Panic => panic!("no luck"),
            Trouble::Abort => std::process::abort(),
            Trouble::Large(input, gate) => {
                let until = std::time::Instant::now() + Duration::from_secs(60);
                while !std::path::Path::new(&gate).exists() && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(5));
                }
                input.len() as u32
            }
            Trouble::Sleep(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                1
            }
            Trouble::KillHost => {
                // SAFETY: kill and getppid take plain integers.
                unsafe { libc::kill(libc::getppid(), libc::SIGKILL) };
                std::thread::sleep(Duration::from_secs(60));
                0
            }
            Trouble::RecordThenHang(path) => {
                let ctx = circuits::job_context().expect("a remote job has its context");
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .expect("the side-effect file opens");
                // SAFETY: getppid has no preconditions.
                let host = unsafe { libc::getppid() };
                writeln!(f, "{host} {} {}", ctx.id(), ctx.delivery()).expect("written");
                drop(f);
                if ctx.delivery() == 1 {
                    std::thread::sleep(Duration::from_secs(600));
                }
                ctx.delivery() as u32
            }
        }
    }
}

fn jobs() -> Jobs {
    Jobs::new()
        .register::<Square>()
        .register::<Trouble>()
        .register::<common::Pid>()
}

/// One test's settings: its own prefix (streams and consumer), short waits.
fn config(server: &Server, prefix: &str) -> NatsConfig {
    NatsConfig::new(server.url())
        .prefix(prefix)
        .ack_wait(Duration::from_secs(2))
        .max_deliver(2)
}

/// The environment a host of that test needs (it may create the consumer first).
fn host_env(prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CIRCUITS_NATS_PREFIX", prefix.to_string()),
        ("CIRCUITS_NATS_ACK_WAIT_MS", "2000".into()),
        ("CIRCUITS_NATS_MAX_DELIVER", "2".into()),
    ]
}

/// Sets `key` in a host's environment from [`host_env`], which must hold it.
fn set_env(env: &mut [(&'static str, String)], key: &str, value: String) {
    let slot = env.iter_mut().find(|(k, _)| *k == key);
    slot.unwrap_or_else(|| panic!("host_env sets {key}")).1 = value;
}

/// The info of a test's stream `kind` (`JOBS`, `RESULTS`), through any of the comma-separated
/// `urls`.
async fn stream_info(urls: &str, prefix: &str, kind: &str) -> async_nats::jetstream::stream::Info {
    let urls: Vec<&str> = urls.split(',').collect();
    let client = async_nats::connect(urls).await.expect("a client");
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(format!("{}_{kind}", prefix.to_uppercase()))
        .await
        .unwrap_or_else(|e| panic!("the {kind} stream exists: {e}"));
    stream.info().await.expect("its info").clone()
}

/// How many messages a test's stream `kind` (`JOBS`, `RESULTS`) holds, and how many it ever
/// stored (its last sequence).
async fn stream_counts(urls: &str, prefix: &str, kind: &str) -> (u64, u64) {
    let state = stream_info(urls, prefix, kind).await.state;
    (state.messages, state.last_sequence)
}

/// How many jobs are left in a test's work stream.
async fn jobs_left(server: &Server, prefix: &str) -> u64 {
    stream_counts(&server.url(), prefix, "JOBS").await.0
}

/// How many jobs and how many answers a test's streams ever stored. A publish retried (the
/// server paused, a node lost) carries its first attempt's message id: stored once.
async fn stored(url: &str, prefix: &str) -> (u64, u64) {
    let jobs = stream_counts(url, prefix, "JOBS").await.1;
    let answers = stream_counts(url, prefix, "RESULTS").await.1;
    (jobs, answers)
}

/// Once a test's work stream holds `n` jobs (polled: no event says a job was stored).
async fn until_jobs_left(server: &Server, prefix: &str, n: u64) {
    bounded(async {
        while jobs_left(server, prefix).await != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The jobs left in a test's work stream once it is empty, or after 20 s. A host acknowledges a
/// job (which takes it out) once the server has stored its answer, so the pool can read the
/// answer and settle the task before the ack arrives; there is no event for the ack.
async fn drained(server: &Server, prefix: &str) -> u64 {
    let until = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = jobs_left(server, prefix).await;
        if left == 0 || std::time::Instant::now() > until {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ten_thousand_jobs_and_a_map_across_two_hosts_each_once() {
    let server = Server::start();
    let pool = Pool::builder().min(4).nats(config(&server, "many")).start();
    let hosts = [
        Host::start(&server.url(), 2, &host_env("many")),
        Host::start(&server.url(), 2, &host_env("many")),
    ];
    let mut seen = collect::<u64>(&pool);
    let values: Vec<_> = (0..10_000u64)
        .map(|i| pool.push(Task::job(Square(i))).expect("accepted"))
        .collect();
    for (i, v) in values.into_iter().enumerate() {
        assert_eq!(bounded(v).await, Ok((i as u64).pow(2)));
    }
    let terminal = bounded(seen.until_complete(10_000)).await;
    let per_task = common::one_outcome_each(&terminal, 10_000);
    assert_eq!(per_task.len(), 10_000);
    assert_eq!(stored(&server.url(), "many").await, (10_000, 10_000));
    let mapped: Vec<u64> = bounded(
        pool.map((0..5_000u64).map(Square))
            .expect("accepted")
            .map(|r| r.expect("each job succeeds"))
            .collect(),
    )
    .await;
    assert_eq!(mapped, (0..5_000u64).map(|i| i * i).collect::<Vec<_>>());
    // Both hosts take work: once each waits with a pull, a burst is shared between them. A job
    // answers its worker process's pid, whose parent is the host that ran it.
    Hosts::of(&server, "many").await.pulling(2).await;
    let pids: Vec<_> = (0..2_000)
        .map(|_| pool.push(Task::job(common::Pid)).expect("accepted"))
        .collect();
    let mut ran_on = std::collections::BTreeSet::new();
    for pid in pids {
        let pid = bounded(pid).await.expect("a pid");
        ran_on.insert(common::parent(pid).expect("a host's worker process runs"));
    }
    let hosts: std::collections::BTreeSet<u32> = hosts.iter().map(Host::pid).collect();
    assert_eq!(ran_on, hosts, "the hosts that ran jobs");
    assert_eq!(drained(&server, "many").await, 0);
    pool.stop().await;
}

async fn panic_abort_and_timeout_on_a_host_give_the_local_errors_once() {
    let server = Server::start();
    let pool = Pool::builder().min(2).nats(config(&server, "fail")).start();
    let _host = Host::start(&server.url(), 2, &host_env("fail"));
    let panicked = pool.run(Task::job(Trouble::Panic)).await;
    assert_eq!(
        panicked,
        Err(RunError::Task(TaskError::Panicked("no luck".into())))
    );
    let aborted = pool.run(Task::job(Trouble::Abort)).await;
    assert!(
        matches!(aborted, Err(RunError::Task(TaskError::WorkerCrashed { ref exit, .. })) if exit.signal_name() == Some("SIGABRT")),
        "{aborted:?}"
    );
    let slow = Task::job(Trouble::Sleep(30_000)).timeout(Duration::from_millis(500));
    let timed_out = pool.run(slow).await;
    assert_eq!(
        timed_out,
        Err(RunError::Task(TaskError::TimedOut(Duration::from_millis(
            500
        ))))
    );
    assert_eq!(pool.run(Task::job(Square(3))).await, Ok(9));
    assert_eq!(drained(&server, "fail").await, 0);
    // One delivery each: the host answered every one, nothing was given out again.
    let mut hosts = Hosts::of(&server, "fail").await;
    assert_eq!(hosts.deliveries().await, 4);
    pool.stop().await;
}

/// A job that runs past the ack wait is kept by the host's progress acks: it runs once. Without
/// them the server would give it to the host's other worker after 2 s (a second delivery).
async fn a_job_longer_than_the_ack_wait_is_delivered_once() {
    let server = Server::start();
    let pool = Pool::builder().min(1).nats(config(&server, "long")).start();
    let _host = Host::start(&server.url(), 2, &host_env("long"));
    // 2.5 ack waits (2 s each): a progress ack every 667 ms keeps it.
    assert_eq!(pool.run(Task::job(Trouble::Sleep(5_000))).await, Ok(1));
    assert_eq!(drained(&server, "long").await, 0);
    let mut hosts = Hosts::of(&server, "long").await;
    assert_eq!(hosts.deliveries().await, 1);
    pool.stop().await;
}

/// A server gone for longer than the publish deadline: the task fails with the broker's error,
/// named, once the deadline passed.
async fn a_server_gone_past_the_publish_deadline_fails_the_task_unreachable() {
    let mut server = Server::start();
    let deadline = Duration::from_secs(1);
    let config = config(&server, "gone").publish_deadline(deadline);
    let pool = Pool::builder().min(1).nats(config).start();
    // The pool is connected once its work stream exists.
    let _ = Hosts::of(&server, "gone").await;
    server.kill();
    let failed = bounded(pool.run(Task::job(Square(2)))).await;
    assert!(
        matches!(
            failed,
            Err(RunError::Task(TaskError::Broker(BrokerError::Unreachable { deadline: d, .. })))
                if d == deadline
        ),
        "{failed:?}"
    );
    pool.stop().await;
}

/// A task cancelled, or its pool aborted, while its job waits in the stream for a host: the task
/// ends `Cancelled` and its job leaves the stream (no host will run it later).
async fn a_cancelled_or_aborted_job_no_host_took_leaves_the_stream() {
    let server = Server::start();
    let pool = Pool::builder()
        .min(1)
        .nats(config(&server, "cancel"))
        .start();
    let (task, cancel) = Task::job(Square(2)).cancellable();
    let value = pool.push(task).expect("accepted");
    let _ = Hosts::of(&server, "cancel").await; // the work stream exists
    until_jobs_left(&server, "cancel", 1).await;
    assert!(cancel.cancel(), "the task was still pending");
    assert_eq!(bounded(value).await, Err(TaskError::Cancelled));
    assert_eq!(drained(&server, "cancel").await, 0);
    let value = pool.push(Task::job(Square(3))).expect("accepted");
    until_jobs_left(&server, "cancel", 1).await;
    pool.abort().await;
    assert_eq!(bounded(value).await, Err(TaskError::Cancelled));
    assert_eq!(drained(&server, "cancel").await, 0);
}

async fn an_unknown_job_and_no_host_and_a_full_stream_are_named() {
    let server = Server::start();
    // No host at all: the task's timeout ends it, and its job leaves the stream.
    let pool = Pool::builder()
        .min(1)
        .nats(config(&server, "nohost").max_jobs(3))
        .start();
    let lonely = Task::job(Square(2)).timeout(Duration::from_millis(300));
    assert_eq!(
        pool.run(lonely).await,
        Err(RunError::Task(TaskError::TimedOut(Duration::from_millis(
            300
        ))))
    );
    // Its job left the stream with it.
    assert_eq!(drained(&server, "nohost").await, 0);
    // A full stream: three jobs wait (no host), the fourth is refused by the broker.
    let waiting: Vec<_> = (0..3)
        .map(|i| pool.push(Task::job(Square(i))).expect("accepted"))
        .collect();
    let fourth = loop {
        // The three are stored in order before the fourth is published.
        if jobs_left(&server, "nohost").await == 3 {
            break pool.run(Task::job(Square(9))).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        fourth,
        Err(RunError::Task(TaskError::Broker(BrokerError::Full)))
    );
    // A host that lacks the job: an unknown job, not a retry.
    let _host = Host::start(&server.url(), 1, &host_env("nohost"));
    for (i, v) in waiting.into_iter().enumerate() {
        assert_eq!(bounded(v).await, Ok((i as u64).pow(2)));
    }
    // A value resolves once its answer is stored; the host acks the job just after: room again.
    assert_eq!(drained(&server, "nohost").await, 0);
    #[derive(Serialize, Deserialize)]
    struct Stranger;
    impl Job for Stranger {
        const NAME: &'static str = "stranger";
        type Output = ();
        fn run(self) {}
    }
    assert_eq!(
        pool.run(Task::job(Stranger)).await,
        Err(RunError::Task(TaskError::UnknownJob("stranger".into())))
    );
    pool.stop().await;
}

async fn a_host_killed_mid_job_has_its_job_run_again_on_another() {
    let server = Server::start();
    let pool = Pool::builder().min(1).nats(config(&server, "kill")).start();
    let mut hosts: HashMap<u32, Host> = [
        Host::start(&server.url(), 1, &host_env("kill")),
        Host::start(&server.url(), 1, &host_env("kill")),
    ]
    .into_iter()
    .map(|h| (h.pid(), h))
    .collect();
    let file = std::env::temp_dir().join(format!("circuits-side-effect-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let path = file.to_string_lossy().into_owned();
    let value = pool
        .push(Task::job(Trouble::RecordThenHang(path)))
        .expect("accepted");
    // The first run wrote its host's pid: that host dies.
    let first: u32 = loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Some(pid) = text.split_whitespace().next().and_then(|p| p.parse().ok()) {
                break pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    hosts.get_mut(&first).expect("one of ours").kill();
    // After the ack wait, the other host runs it: its second delivery.
    assert_eq!(bounded(value).await, Ok(2));
    let runs: Vec<Vec<String>> = std::fs::read_to_string(&file)
        .expect("the side effects")
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    assert_eq!(runs.len(), 2, "the side effect shows both runs: {runs:?}");
    assert_ne!(
        runs[0][0], runs[1][0],
        "the second run was on the other host"
    );
    assert_eq!(
        runs[0][1], runs[1][1],
        "the job id is stable across deliveries"
    );
    assert_eq!((runs[0][2].as_str(), runs[1][2].as_str()), ("1", "2"));
    let _ = std::fs::remove_file(&file);
    assert_eq!(drained(&server, "kill").await, 0);
    pool.stop().await;
}

async fn a_job_that_kills_every_host_fails_host_lost_and_leaves_the_stream() {
    let server = Server::start();
    let pool = Pool::builder().min(1).nats(config(&server, "lost")).start();
    let mut seen = collect::<u32>(&pool);
    let value = pool.push(Task::job(Trouble::KillHost)).expect("accepted");
    // Each delivery kills the host it goes to; a new host replaces it, up to max_deliver (2).
    for _ in 0..2 {
        let mut host = Host::start(&server.url(), 1, &host_env("lost"));
        assert!(
            common::eventually(60, || host.exited()).await,
            "the job kills its host"
        );
    }
    // The server finds a job out of deliveries when a host asks for work (as the rest of a
    // cluster's hosts do): one more host, which the job never reaches.
    let mut survivor = Host::start(&server.url(), 1, &host_env("lost"));
    assert_eq!(
        bounded(value).await,
        Err(TaskError::HostLost { deliveries: 2 })
    );
    assert!(!survivor.exited(), "the job is not delivered a third time");
    let terminal = bounded(seen.until_complete(1)).await;
    assert_eq!(common::one_outcome_each(&terminal, 1).len(), 1);
    // The server keeps such a job in a work queue; the pool takes it out.
    assert_eq!(
        drained(&server, "lost").await,
        0,
        "the exhausted job left the stream"
    );
    pool.stop().await;
}

/// A pool cut off at will: a server, a relay to it that the test cuts (the pool reaches the server
/// through it; hosts and the test reach it directly), a pool of one worker on `prefix` allowing
/// `max_deliver` deliveries, a client of the test's own, and the server's advisories of that
/// pool's jobs running out of deliveries, heard straight from the server.
async fn behind_a_relay(
    prefix: &str,
    max_deliver: u32,
) -> (
    Server,
    Relay,
    PoolHandle,
    async_nats::Client,
    async_nats::Subscriber,
) {
    let server = Server::start();
    let relay = Relay::to(server.port);
    let pool = Pool::builder()
        .min(1)
        .nats(
            NatsConfig::new(relay.url())
                .prefix(prefix)
                .ack_wait(Duration::from_secs(2))
                .max_deliver(max_deliver),
        )
        .start();
    let client = async_nats::connect(server.url()).await.expect("a client");
    let subject = format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}_JOBS.{prefix}-hosts",
        prefix.to_uppercase()
    );
    let advisories = client.subscribe(subject).await.expect("a subscription");
    client.flush().await.expect("subscribed");
    (server, relay, pool, client, advisories)
}

async fn a_pool_cut_off_while_its_job_runs_out_of_deliveries_fails_it_host_lost_when_back() {
    let (server, relay, pool, _client, mut advisories) = behind_a_relay("cut", 2).await;
    let mut seen = collect::<u32>(&pool);
    let value = pool.push(Task::job(Trouble::KillHost)).expect("accepted");
    // Cut off once its job is in the stream.
    let mut hosts = Hosts::of(&server, "cut").await;
    hosts
        .until("the job is stored", |info| info.num_pending > 0)
        .await;
    relay.cut();
    for _ in 0..2 {
        let mut host = Host::start(&server.url(), 1, &host_env("cut"));
        assert!(
            common::eventually(60, || host.exited()).await,
            "the job kills its host"
        );
    }
    let _survivor = Host::start(&server.url(), 1, &host_env("cut"));
    // The job used up its deliveries while its pool could hear nothing; a host takes it out of
    // the stream (its pool might never come back).
    bounded(advisories.next()).await.expect("the advisory");
    assert_eq!(drained(&server, "cut").await, 0, "a host took it out");
    relay.mend();
    assert_eq!(
        bounded(value).await,
        Err(TaskError::HostLost { deliveries: 2 })
    );
    let terminal = bounded(seen.until_complete(1)).await;
    assert_eq!(common::one_outcome_each(&terminal, 1).len(), 1);
    pool.stop().await;
}

/// The start of a job as the work stream holds it (the library's wire, postcard; the fields after
/// these are left unread), for the test playing a host.
#[derive(Deserialize)]
struct Request {
    pool: String,
    task: u64,
    attempt: u32,
}

/// An answer as a host sends it.
#[derive(Serialize)]
struct Answer {
    task: u64,
    attempt: u32,
    delivery: u64,
    outcome: Result<serde_bytes::ByteBuf, TaskError>,
}

/// A host keeps a job's answer and only then acknowledges the job; in between, the job can run out
/// of deliveries (a server paused past the ack wait, then the redelivery handed back by a pull its
/// host gave up on). The test plays that host: it keeps the answer, then hands the job back with
/// one delivery allowed. The pool, cut off meanwhile, finds both the answer and the server's
/// advisory when it is back, and the kept answer wins. Without the pool waiting for its kept
/// answers, this failed `HostLost` in 7 runs of 10.
async fn an_answer_kept_before_its_job_ran_out_of_deliveries_settles_the_task() {
    let (server, relay, pool, client, mut advisories) = behind_a_relay("first", 1).await;
    let mut seen = collect::<u64>(&pool);
    let value = pool.push(Task::job(Square(7))).expect("accepted");
    let mut hosts = Hosts::of(&server, "first").await;
    hosts
        .until("the job is stored", |info| info.num_pending > 0)
        .await;
    relay.cut();
    let mut pulled = hosts
        .0
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .expect("a pull");
    let job = bounded(pulled.next())
        .await
        .expect("the job")
        .expect("delivered");
    let request: Request = postcard::from_bytes(&job.payload).expect("a job");
    let answer = Answer {
        task: request.task,
        attempt: request.attempt,
        delivery: 1,
        outcome: Ok(serde_bytes::ByteBuf::from(
            postcard::to_allocvec(&49u64).expect("encoded"),
        )),
    };
    let js = async_nats::jetstream::new(client.clone());
    let subject = format!("first.results.{}", request.pool);
    let payload = postcard::to_allocvec(&answer).expect("encoded");
    js.publish(subject, payload.into())
        .await
        .expect("published")
        .await
        .expect("kept");
    job.ack_with(async_nats::jetstream::AckKind::Nak(None))
        .await
        .expect("handed back");
    // The server finds the job out of deliveries as it looks for one to give the next pull.
    let _next = hosts
        .0
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .expect("a pull");
    bounded(advisories.next()).await.expect("the advisory");
    relay.mend();
    assert_eq!(bounded(value).await, Ok(49));
    let terminal = bounded(seen.until_complete(1)).await;
    assert_eq!(common::one_outcome_each(&terminal, 1).len(), 1);
    pool.stop().await;
}

/// Floods `n` jobs with an ack wait of `ack_wait`, pauses the server for `pause` once a tenth are
/// answered, and checks that every task still ends exactly once and the stream ends empty.
async fn flood_through_a_pause(pause: Duration, prefix: &str, ack_wait: Duration) {
    let server = Server::start();
    let pool = Pool::builder()
        .min(4)
        .nats(config(&server, prefix).ack_wait(ack_wait))
        .start();
    let mut env = host_env(prefix);
    set_env(
        &mut env,
        "CIRCUITS_NATS_ACK_WAIT_MS",
        ack_wait.as_millis().to_string(),
    );
    let _hosts = [
        Host::start(&server.url(), 2, &env),
        Host::start(&server.url(), 2, &env),
    ];
    let mut seen = collect::<u64>(&pool);
    let n = 2_000u64;
    let values: Vec<_> = (0..n)
        .map(|i| pool.push(Task::job(Square(i))).expect("accepted"))
        .collect();
    bounded(seen.next_n(n as usize / 10)).await;
    server.pause();
    std::thread::sleep(pause); // the server is stopped: this is the scenario, not a wait
    server.resume();
    for (i, v) in values.into_iter().enumerate() {
        assert_eq!(bounded(v).await, Ok((i as u64).pow(2)), "task {i}");
    }
    let terminal = bounded(seen.until_complete(n as usize)).await;
    assert_eq!(
        common::one_outcome_each(&terminal, n as usize).len(),
        n as usize
    );
    assert_eq!(drained(&server, prefix).await, 0);
    // No duplicate entries: every job and every answer stored once, retried or not.
    assert_eq!(stored(&server.url(), prefix).await, (n, n));
    pool.stop().await;
}

async fn a_server_paused_for_3_s_mid_flood_loses_nothing() {
    flood_through_a_pause(Duration::from_secs(3), "pause3", Duration::from_secs(2)).await;
}

async fn a_server_paused_for_8_s_mid_flood_loses_nothing() {
    // Past the client's 5 s request timeout: publishes fail and are retried with their ids.
    flood_through_a_pause(Duration::from_secs(8), "pause8", Duration::from_secs(2)).await;
}

async fn a_server_paused_with_jobs_pulled_costs_them_no_ack_wait() {
    // An ack wait past the test's bound: a job the server delivered to a pull that a host gave up
    // on while the server was stopped would wait it out, and time the test out.
    let (pause, ack_wait) = (Duration::from_secs(4), Duration::from_secs(120));
    flood_through_a_pause(pause, "pausewait", ack_wait).await;
}

async fn a_stopping_host_hands_its_waiting_jobs_over_at_once() {
    let server = Server::start();
    // An ack wait longer than the test's bound: a job not handed back would time the test out.
    let mut env = host_env("handover");
    set_env(&mut env, "CIRCUITS_NATS_ACK_WAIT_MS", "120000".into());
    let pool = Pool::builder()
        .min(2)
        .nats(config(&server, "handover").ack_wait(Duration::from_secs(120)))
        .start();
    let mut seen = collect::<u32>(&pool);
    let mut first = Host::start(&server.url(), 1, &env);
    let values: Vec<_> = (0..20)
        .map(|_| pool.push(Task::job(Trouble::Sleep(200))).expect("accepted"))
        .collect();
    // The first host runs them one at a time. It holds 5 (jobs this long: its pipeline's 4 and one
    // more): the stop lets the 4 handed to its worker run and hands the fifth back.
    bounded(seen.next_n(1)).await;
    assert!(first.stop().success(), "a graceful stop exits 0");
    assert_eq!(
        host_consumers(&server, "handover").await,
        0,
        "a host that stops deletes its consumer of the exhausted stream"
    );
    let _second = Host::start(&server.url(), 2, &env);
    for v in values {
        assert_eq!(bounded(v).await, Ok(1));
    }
    let terminal = bounded(seen.until_complete(20)).await;
    assert_eq!(common::one_outcome_each(&terminal, 20).len(), 20);
    pool.stop().await;
}

/// How many hosts' consumers a test's exhausted stream has.
async fn host_consumers(server: &Server, prefix: &str) -> usize {
    let client = async_nats::connect(server.url()).await.expect("a client");
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(format!("{}_EXHAUSTED", prefix.to_uppercase()))
        .await
        .expect("the exhausted stream exists");
    let names: Vec<String> = stream
        .consumer_names()
        .map(|n| n.expect("a consumer's name"))
        .collect()
        .await;
    names
        .iter()
        .filter(|n| n.starts_with("exhausted-host-"))
        .count()
}

/// The hosts' consumer of a test, as the server sees it.
struct Hosts(async_nats::jetstream::consumer::PullConsumer);

impl Hosts {
    /// Once the work stream and the hosts' consumer exist (the first pool or host to start makes
    /// them; polled, with a deadline).
    async fn of(server: &Server, prefix: &str) -> Hosts {
        let client = async_nats::connect(server.url()).await.expect("a client");
        let js = async_nats::jetstream::new(client);
        let until = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let stream = js.get_stream(format!("{}_JOBS", prefix.to_uppercase()));
            if let Ok(stream) = stream.await {
                if let Ok(consumer) = stream.get_consumer(&format!("{prefix}-hosts")).await {
                    return Hosts(consumer);
                }
            }
            assert!(
                std::time::Instant::now() < until,
                "the work stream and the hosts' consumer exist within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Once the consumer's info says `done` (polled: the server sends no event for it; the test
    /// fails if `what` is not so within 20 s).
    async fn until(&mut self, what: &str, done: impl Fn(&ConsumerInfo) -> bool) {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while !done(self.0.info().await.expect("its info")) {
            assert!(std::time::Instant::now() < until, "{what} within 20 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Once `hosts` pulls wait for jobs (an idle host keeps one).
    async fn pulling(&mut self, hosts: usize) {
        let what = format!("{hosts} hosts pull");
        self.until(&what, |info| info.num_waiting >= hosts).await;
    }

    /// How many times the server gave a job to a host (a job given again counts again).
    async fn deliveries(&mut self) -> u64 {
        self.0
            .info()
            .await
            .expect("its info")
            .delivered
            .consumer_sequence
    }

    /// Jobs delivered and not acknowledged (held by hosts), and jobs not delivered yet.
    async fn held_and_waiting(&mut self) -> (usize, u64) {
        let info = self.0.info().await.expect("its info");
        (info.num_ack_pending, info.num_pending)
    }
}

/// A host holds about 20 ms of its workers' work, at least the pipelines' worth and one more job
/// per worker. Jobs of 300 ms with one worker handed one job at a time: two, the one it runs and
/// the next; the others stay in the stream for any host that comes (a host used to take 32 per
/// worker whatever their length, and a second host found nothing left). Then jobs of
/// microseconds, of which it holds more: each runs once, with its own result.
async fn a_host_with_long_jobs_leaves_the_others_in_the_stream() {
    let server = Server::start();
    let mut env = host_env("hold");
    env.push(("CIRCUITS_NATS_PIPELINE", "1".into()));
    let pool = Pool::builder().min(2).nats(config(&server, "hold")).start();
    let mut seen = collect::<u32>(&pool);
    let _host = Host::start(&server.url(), 1, &env);
    let values: Vec<_> = (0..8)
        .map(|_| pool.push(Task::job(Trouble::Sleep(300))).expect("accepted"))
        .collect();
    bounded(seen.next_n(1)).await;
    let mut hosts = Hosts::of(&server, "hold").await;
    let (_, waiting) = hosts.held_and_waiting().await;
    // 5 when read at once; each 300 ms of delay on a busy machine takes one more.
    assert!(
        waiting >= 3,
        "long jobs left in the stream after the first: {waiting}"
    );
    let mut most_long = 0;
    for v in values {
        most_long = most_long.max(hosts.held_and_waiting().await.0);
        assert_eq!(bounded(v).await, Ok(1));
    }
    // Two, and at most one whose acknowledgement the server has not counted yet.
    assert!(most_long <= 3, "long jobs held at once: {most_long}");

    let values: Vec<_> = (0..3000)
        .map(|i| pool.push(Task::job(Square(i))).expect("accepted"))
        .collect();
    let done = std::cell::Cell::new(false);
    let work = async {
        for (i, v) in values.into_iter().enumerate() {
            assert_eq!(bounded(v).await, Ok(i as u64 * i as u64));
        }
        done.set(true);
    };
    let watch = async {
        let mut most = 0;
        while !done.get() {
            most = most.max(hosts.held_and_waiting().await.0);
        }
        most
    };
    let ((), most_short) = futures::join!(work, watch);
    // Jobs of microseconds: 20 ms of them is many more than the long jobs' 2, how many depends on
    // how fast this machine runs them now (hundreds on an idle one, a dozen beside two busy
    // loops), so it is shown, not asserted; src/host/pace.rs tests the arithmetic.
    eprintln!("  (short jobs held at once: up to {most_short})");
    pool.stop().await;
}

/// A host holds no more bytes of jobs than `held_bytes`, however many jobs it could hold: here
/// 3 MiB, at most three jobs of 900 KiB, where its one worker takes 8 at once (it would hold 9).
/// The jobs wait for a gate, so nothing is acknowledged meanwhile and the server's count of the
/// jobs the host holds is exact.
async fn a_host_holds_no_more_bytes_of_jobs_than_its_limit() {
    let server = Server::start();
    let mut env = host_env("bytes");
    env.push(("CIRCUITS_NATS_PIPELINE", "8".into()));
    env.push(("CIRCUITS_NATS_HELD_BYTES", (3 << 20).to_string()));
    let pool = Pool::builder()
        .min(2)
        .nats(config(&server, "bytes"))
        .start();
    let _host = Host::start(&server.url(), 1, &env);
    let mut hosts = Hosts::of(&server, "bytes").await;
    hosts.pulling(1).await;
    let file = std::env::temp_dir().join(format!("circuits-gate-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let gate = file.to_string_lossy().into_owned();
    let large = 900 << 10;
    let values: Vec<_> = (0..10)
        .map(|_| {
            let task = Task::job(Trouble::Large(vec![7; large], gate.clone()));
            pool.push(task).expect("accepted")
        })
        .collect();
    // The host pulls what fits: 2 or 3 (a pull waits for room for the largest job, 2 MiB), as
    // the jobs reach the stream. Once all 10 are there and it holds 2, the pull that would bring
    // a fourth never goes out: for half a second of reads, it holds no more than 3.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    let mut since = None;
    loop {
        let (held, waiting) = hosts.held_and_waiting().await;
        assert!(held <= 3, "jobs of 900 KiB held at once: {held}");
        if since.is_none() && held >= 2 && held as u64 + waiting == 10 {
            since = Some(std::time::Instant::now());
        }
        match since {
            Some(t) if t.elapsed() >= Duration::from_millis(500) => break,
            Some(_) => {}
            None => assert!(
                std::time::Instant::now() < until,
                "the host holds 2 jobs, all 10 in the stream, within 20 s"
            ),
        }
    }
    std::fs::write(&file, b"").expect("the gate opens");
    for v in values {
        assert_eq!(bounded(v).await, Ok(large as u32));
    }
    let _ = std::fs::remove_file(&file);
    pool.stop().await;
}

async fn a_three_node_cluster_loses_nothing_when_a_node_is_killed_mid_flood() {
    let routes = [nats::free_port(), nats::free_port(), nats::free_port()];
    let mut nodes: Vec<Server> = routes
        .iter()
        .enumerate()
        .map(|(i, port)| Server::cluster_node(&format!("n{i}"), *port, &routes))
        .collect();
    let urls: Vec<String> = nodes.iter().map(Server::url).collect();
    let urls = urls.join(",");
    nats::cluster_ready(&urls).await;
    let config = NatsConfig::new(urls.clone())
        .prefix("cluster")
        .replicas(3)
        .ack_wait(Duration::from_secs(2))
        .max_deliver(5);
    let pool = Pool::builder().min(4).nats(config).start();
    let mut env = host_env("cluster");
    env.push(("CIRCUITS_NATS_REPLICAS", "3".into()));
    set_env(&mut env, "CIRCUITS_NATS_MAX_DELIVER", "5".into());
    let _hosts = [Host::start(&urls, 2, &env), Host::start(&urls, 2, &env)];
    let mut seen = collect::<u64>(&pool);
    // The flood starts once a host pulls (and the work stream exists).
    Hosts::of(&nodes[0], "cluster").await.pulling(1).await;
    let sampler = Sampler::start(&urls, "cluster");
    let n = 4_000usize;
    // The flood goes on through the kill: 20 tasks every 10 ms (this is the scenario's pace, not
    // a wait), so the pool is publishing while the cluster elects a new leader.
    let pushing = async {
        let mut values = Vec::with_capacity(n);
        for i in 0..n as u64 {
            values.push(pool.push(Task::job(Square(i))).expect("accepted"));
            if i % 20 == 19 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        values
    };
    // The work stream's leader (the node that stores every job first) dies mid-flood.
    let killing = async {
        bounded(seen.next_n(n / 10)).await;
        let leader = stream_leader(&urls, "cluster").await;
        let killed_at = std::time::Instant::now();
        nodes[leader].kill();
        bounded(seen.next_n(n / 10)).await;
        (leader, killed_at, killed_at.elapsed())
    };
    let (values, (leader, killed_at, went_on)) = futures::join!(pushing, killing);
    nodes[leader].restart();
    for (i, v) in values.into_iter().enumerate() {
        assert_eq!(bounded(v).await, Ok((i as u64).pow(2)), "task {i}");
    }
    let terminal = bounded(seen.until_complete(n)).await;
    assert_eq!(common::one_outcome_each(&terminal, n).len(), n);
    // Every job was delivered and acknowledged: none waits for a host, none is held by one.
    let mut consumer = Hosts::of(&nodes[leader], "cluster").await;
    let acknowledged = |info: &ConsumerInfo| info.num_ack_pending == 0 && info.num_pending == 0;
    consumer.until("every job acknowledged", acknowledged).await;
    // Removing acknowledged jobs from a replicated work queue is the server's part: the count
    // is printed, not asserted. It was 0 in all but one of about 70 runs, which kept one job
    // for 20 s (before the consumer was checked above). nats-server 2.9's known bugs fit that:
    // an acknowledged message kept across a leader change (its issues 3953 and 5148).
    let left = drained(&nodes[leader], "cluster").await;
    let samples = sampler.stop();
    let stored_ = stored(&urls, "cluster").await;
    // Measured, not asserted (timing claims belong in the benchmark): the note quotes them.
    println!(
        "  (cluster: the work stream's leader n{leader} killed; no job stored for {:?}, none \
         acknowledged for {:?}; {} more tasks ended {went_on:?} after the kill; jobs and answers \
         stored: {stored_:?} for {n} tasks; jobs left in the stream: {left})",
        Sampler::longest_pause(&samples, killed_at, n as u64, |s| s.stored),
        Sampler::longest_pause(&samples, killed_at, n as u64, |s| s.acked),
        n / 10
    );
    pool.stop().await;
}

/// The name's index (`n1`: 1) of the node that leads a test's work stream.
async fn stream_leader(urls: &str, prefix: &str) -> usize {
    let info = stream_info(urls, prefix, "JOBS").await;
    let leader = info.cluster.and_then(|c| c.leader);
    let leader = leader.expect("a replicated stream has a leader");
    leader[1..].parse().expect("nodes are named n0, n1, n2")
}

/// A work stream's progress, as the server reports it.
#[derive(Clone, Copy)]
struct Progress {
    at: std::time::Instant,
    /// Jobs the stream stored.
    stored: u64,
    /// Jobs acknowledged (removed from the work stream).
    acked: u64,
}

/// Reads a work stream's progress every 20 ms, on a connection of its own, while it lives.
struct Sampler {
    samples: std::rc::Rc<std::cell::RefCell<Vec<Progress>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(urls: &str, prefix: &str) -> Sampler {
        let samples = std::rc::Rc::<std::cell::RefCell<Vec<Progress>>>::default();
        let into = samples.clone();
        let urls: Vec<String> = urls.split(',').map(String::from).collect();
        let name = format!("{}_JOBS", prefix.to_uppercase());
        let task = actix::spawn(async move {
            let client = async_nats::connect(urls).await.expect("a client");
            let js = async_nats::jetstream::new(client);
            loop {
                // A request the cluster cannot answer (sent to the node that died, or while no
                // leader is elected) is given up after 250 ms: no sample for that time, as no
                // progress was seen.
                let counts = tokio::time::timeout(Duration::from_millis(250), async {
                    let mut stream = js.get_stream(&name).await.ok()?;
                    let state = &stream.info().await.ok()?.state;
                    Some((state.messages, state.last_sequence))
                });
                if let Ok(Some((messages, stored))) = counts.await {
                    into.borrow_mut().push(Progress {
                        at: std::time::Instant::now(),
                        stored,
                        acked: stored - messages,
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Sampler { samples, task }
    }

    fn stop(self) -> Vec<Progress> {
        self.task.abort();
        self.samples.take()
    }

    /// The longest time after `from` in which `count` did not grow, until it reached `all`.
    fn longest_pause(
        samples: &[Progress],
        from: std::time::Instant,
        all: u64,
        count: impl Fn(&Progress) -> u64,
    ) -> Duration {
        let mut last = (
            from,
            samples
                .iter()
                .rev()
                .find(|s| s.at <= from)
                .map_or(0, &count),
        );
        let mut longest = Duration::ZERO;
        for s in samples.iter().filter(|s| s.at > from) {
            if last.1 >= all {
                return longest;
            }
            if count(s) > last.1 {
                longest = longest.max(s.at - last.0);
                last = (s.at, count(s));
            }
        }
        // Never all of them: the pause lasts to the last sample.
        let end = samples.last().map_or(from, |s| s.at);
        longest.max(end.saturating_duration_since(last.0))
    }
}

async fn fast_answers_settle_every_task_once_without_the_results_stream() {
    let server = Server::start();
    let pool = Pool::builder()
        .min(2)
        .nats(config(&server, "fast").fast_answers(true))
        .start();
    let _host = Host::start(&server.url(), 2, &host_env("fast"));
    let mut seen = collect::<u64>(&pool);
    let values: Vec<_> = (0..1_000u64)
        .map(|i| {
            let task = Task::job(Square(i)).timeout(Duration::from_secs(50));
            pool.push(task).expect("accepted")
        })
        .collect();
    for (i, v) in values.into_iter().enumerate() {
        assert_eq!(bounded(v).await, Ok((i as u64).pow(2)));
    }
    let terminal = bounded(seen.until_complete(1_000)).await;
    assert_eq!(common::one_outcome_each(&terminal, 1_000).len(), 1_000);
    assert_eq!(drained(&server, "fast").await, 0);
    // Nothing went through the results stream.
    let client = async_nats::connect(server.url()).await.expect("a client");
    let js = async_nats::jetstream::new(client);
    let mut results = js
        .get_stream("FAST_RESULTS")
        .await
        .expect("the results stream");
    let info = results.info().await.expect("its info");
    assert_eq!((info.state.messages, info.state.last_sequence), (0, 0));
    pool.stop().await;
}

fn main() {
    nats::logs_from_env();
    circuits::init(jobs()); // worker hosts and their worker processes stop here
    if nats::skip_without_server("remote_nats") {
        return;
    }
    common::run_main(
        "remote_nats",
        common::async_tests![
            ten_thousand_jobs_and_a_map_across_two_hosts_each_once,
            panic_abort_and_timeout_on_a_host_give_the_local_errors_once,
            a_job_longer_than_the_ack_wait_is_delivered_once,
            a_server_gone_past_the_publish_deadline_fails_the_task_unreachable,
            a_cancelled_or_aborted_job_no_host_took_leaves_the_stream,
            an_unknown_job_and_no_host_and_a_full_stream_are_named,
            a_host_killed_mid_job_has_its_job_run_again_on_another,
            a_job_that_kills_every_host_fails_host_lost_and_leaves_the_stream,
            a_pool_cut_off_while_its_job_runs_out_of_deliveries_fails_it_host_lost_when_back,
            an_answer_kept_before_its_job_ran_out_of_deliveries_settles_the_task,
            a_server_paused_for_3_s_mid_flood_loses_nothing,
            a_server_paused_for_8_s_mid_flood_loses_nothing,
            a_server_paused_with_jobs_pulled_costs_them_no_ack_wait,
            a_stopping_host_hands_its_waiting_jobs_over_at_once,
            a_host_with_long_jobs_leaves_the_others_in_the_stream,
            a_host_holds_no_more_bytes_of_jobs_than_its_limit,
            a_three_node_cluster_loses_nothing_when_a_node_is_killed_mid_flood,
            fast_answers_settle_every_task_once_without_the_results_stream,
        ],
        common::sync_tests![],
    );
}
