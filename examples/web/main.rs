//! An actix-web service that offloads work to two pools sharing one bus: hashing on a thread pool,
//! prime counting, a slow job and a deliberately crashing job on a process pool, and a Server-Sent
//! Events stream of the pools' result events and stats.
//!
//! ```text
//! cargo run --release -p circuits-web                # listens on 127.0.0.1:8080 (--port N to change)
//! curl -X POST --data-binary 'hello' 'localhost:8080/hash?rounds=1000'
//! curl 'localhost:8080/primes?limit=1000000'
//! curl -X POST localhost:8080/crash                 # 500 for this request; the server goes on
//! curl 'localhost:8080/slow?secs=30'                 # Ctrl-C before it answers: the job is cancelled
//! curl -N localhost:8080/events                     # result events as they happen
//! curl localhost:8080/stats
//! curl -X POST --data '1, 2, x' localhost:8080/sum   # 400: the task failed, quoting the input
//! curl localhost:8080/metrics                       # Prometheus text: the pools' counters
//! open http://localhost:8080/circuits/              # the live dashboard (read-only)
//! ```
//!
//! The dashboard ([`circuits::web::Dashboard`]) shows both pools live, with its actions (resize,
//! stop, abort) off. In a real service it goes behind the application's own authentication: here
//! a guard lets only loopback clients in, which is what a local example can check.
//!
//! The hashing pool is bounded (`--queue-bound N`, default 10,000 tasks queued or running) and sheds
//! load: a `/hash` request that finds it full is answered at once with 503 Service Unavailable and
//! a `Retry-After` header, rather than waiting for room.
//!
//! Each request's task ends with the request: every handler makes its task
//! [cancellable](circuits::Task::cancellable) and holds the [`CancelGuard`](circuits::CancelGuard)
//! while it awaits the value. A client that disconnects first makes actix-web drop the handler's
//! future, the guard with it, and the task is cancelled: still queued, it never runs; a job running
//! in a worker process (`/slow`, `/primes`) has its child killed and replaced; a hashing closure
//! already running on a thread cannot be stopped, so it runs to its end and its result is
//! discarded. A cancelled task fails with `TaskError::Cancelled` (a `failure` event on `/events`).
//! For a client that closes its side of the connection to count as gone, the server does not
//! allow HTTP/1 half-closed connections (`h1_allow_half_closed(false)`).

use std::time::Duration;

use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};
use circuits::prelude::*;
use circuits::web::Dashboard;
use circuits::{PoolStats, Refusal};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Counts the primes below `limit` (in a worker process).
#[derive(Serialize, Deserialize)]
struct CountPrimes {
    limit: u64,
}

impl Job for CountPrimes {
    const NAME: &'static str = "count-primes";
    type Output = u64;
    fn run(self) -> u64 {
        if self.limit < 3 {
            return 0;
        }
        let mut sieve = vec![true; self.limit as usize];
        sieve[0] = false;
        sieve[1] = false;
        let mut i = 2;
        while i * i < sieve.len() {
            if sieve[i] {
                sieve[i * i..]
                    .iter_mut()
                    .step_by(i)
                    .for_each(|s| *s = false);
            }
            i += 1;
        }
        sieve.iter().filter(|p| **p).count() as u64
    }
}

/// Stands for a long computation: waits `secs` seconds in its worker process, then answers them.
#[derive(Serialize, Deserialize)]
struct Slow {
    secs: u64,
}

impl Job for Slow {
    const NAME: &'static str = "slow";
    type Output = u64;
    fn run(self) -> u64 {
        std::thread::sleep(Duration::from_secs(self.secs));
        self.secs
    }
}

/// Aborts its worker process: a stand-in for a native library that crashes.
#[derive(Serialize, Deserialize)]
struct Crash;

impl Job for Crash {
    const NAME: &'static str = "crash";
    type Output = ();
    fn run(self) {
        std::process::abort()
    }
}

/// FNV-1a over the data, `rounds` times over (each round hashes the previous digest too).
fn hash(data: &[u8], rounds: u32) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for _ in 0..rounds {
        for b in data.iter().chain(h.to_le_bytes().iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Errors as HTTP answers: the request's fault is a 400; a pool that refused the task (full,
/// stopped) is a 503; a task that died is a 500.
#[derive(Debug)]
enum ApiError {
    BadRequest(String),
    /// The pool refused the task, or the task ran and failed.
    Run(RunError),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::BadRequest(m) => write!(f, "{m}"),
            ApiError::Run(e) => write!(f, "{e}"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            // circuits' own mapping (feature `actix-web`): 503 refused (full, stopped),
            // 504 timed out, 500 crashed or panicked...
            ApiError::Run(e) => e.status_code(),
        }
    }
    fn error_response(&self) -> HttpResponse {
        let mut answer = HttpResponse::build(self.status_code());
        if let ApiError::Run(RunError::Refused(Refusal::Full)) = self {
            // Full now is a matter of load: worth trying again shortly.
            answer.insert_header(("retry-after", "1"));
        }
        answer.json(serde_json::json!({ "error": self.to_string() }))
    }
}

/// `?` on `run(..).await`: refused or failed.
impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        ApiError::Run(e)
    }
}

/// `?` on `push(..)`: the task was not accepted (it is dropped; the request ends here).
impl<R> From<SubmitError<R>> for ApiError {
    fn from(e: SubmitError<R>) -> Self {
        ApiError::Run(e.into())
    }
}

/// `?` on the value an accepted task resolves to.
impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        ApiError::Run(e.into())
    }
}

struct Pools {
    threads: PoolHandle,
    procs: PoolHandle,
}

/// Parses a required, bounded number from the query string, with a message a person can act on.
fn number(
    query: &web::Query<std::collections::HashMap<String, String>>,
    name: &str,
    max: u64,
) -> Result<u64, ApiError> {
    let raw = query
        .get(name)
        .ok_or_else(|| ApiError::BadRequest(format!("missing query parameter `{name}`")))?;
    let n: u64 = raw.parse().map_err(|_| {
        ApiError::BadRequest(format!("`{name}` must be a whole number, got {raw:?}"))
    })?;
    if n == 0 || n > max {
        return Err(ApiError::BadRequest(format!(
            "`{name}` must be between 1 and {max}, got {n}"
        )));
    }
    Ok(n)
}

async fn hash_body(
    pools: web::Data<Pools>,
    query: web::Query<std::collections::HashMap<String, String>>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let rounds = number(&query, "rounds", 1_000_000)? as u32;
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "send the data to hash as the request body".into(),
        ));
    }
    let (task, cancel) = Task::new(move || hash(&body, rounds)).cancellable();
    // Dropped with this future if the client leaves first: the task is cancelled (see the header).
    let _guard = cancel.guard();
    // `push`, not `run`: on a full pool it hands the task back at once (`Refusal::Full`, a 503)
    // instead of keeping the request waiting for room. Accepted, the task's value is awaited.
    let digest = pools.threads.push(task)?.await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "rounds": rounds, "hash": digest })))
}

async fn primes(
    pools: web::Data<Pools>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let limit = number(&query, "limit", 50_000_000)?;
    let (task, cancel) = Task::job(CountPrimes { limit })
        .timeout(Duration::from_secs(30))
        .cancellable();
    let _guard = cancel.guard(); // the client leaves: the job is cancelled, its child killed
    let count = pools.procs.run(task).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "limit": limit, "primes": count })))
}

/// The route to try cancelling on: a job that runs for `secs` seconds unless its client leaves.
async fn slow(
    pools: web::Data<Pools>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let secs = number(&query, "secs", 3600)?;
    let (task, cancel) = Task::job(Slow { secs }).cancellable();
    // Held while the job runs. If the client disconnects, actix-web drops this future and the
    // guard cancels the job: its worker process is killed and replaced.
    let _guard = cancel.guard();
    let waited = pools.procs.run(task).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "secs": waited })))
}

/// Sums comma-separated numbers on the thread pool. A part that is not a number fails the task
/// with a message that quotes it: user input in an error text, as real services have (the
/// dashboard shows it as text).
async fn sum(pools: web::Data<Pools>, body: String) -> Result<HttpResponse, ApiError> {
    let (task, cancel) = Task::fallible(move || {
        body.split(',')
            .map(|part| {
                let part = part.trim();
                part.parse::<u64>()
                    .map_err(|_| format!("`{part}` is not a number"))
            })
            .sum::<Result<u64, String>>()
    })
    .cancellable();
    let _guard = cancel.guard();
    let total = pools.threads.push(task)?.await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "sum": total })))
}

/// `GET /metrics`: the pools' metrics (the `metrics` feature of circuits) in Prometheus's format.
async fn metrics(prometheus: web::Data<PrometheusHandle>) -> HttpResponse {
    prometheus.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(prometheus.render())
}

async fn crash(pools: web::Data<Pools>) -> Result<HttpResponse, ApiError> {
    let (task, cancel) = Task::job(Crash).cancellable();
    let _guard = cancel.guard();
    pools.procs.run(task).await?;
    Ok(HttpResponse::Ok().finish())
}

fn stats_json(s: &PoolStats) -> serde_json::Value {
    serde_json::json!({
        "workers": s.workers, "pushed": s.pushed, "done": s.done, "failed": s.failed,
        "queued": s.queued, "running": s.running,
    })
}

async fn stats(pools: web::Data<Pools>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "threads": stats_json(&pools.threads.stats()),
        "processes": stats_json(&pools.procs.stats()),
    }))
}

/// Forwards result events and stats to one SSE client; stops when the client goes away.
struct Forwarder(mpsc::Sender<String>);

impl Forwarder {
    fn send(&mut self, ctx: &mut Context<Self>, event: &str, data: serde_json::Value) {
        if self
            .0
            .try_send(format!("event: {event}\ndata: {data}\n\n"))
            .is_err()
            && self.0.is_closed()
        {
            ctx.stop(); // the client left: stopping prunes the subscriptions
        }
    }
}

impl Actor for Forwarder {
    type Context = Context<Self>;
}

impl Handler<TaskSuccess<String>> for Forwarder {
    type Result = ();
    fn handle(&mut self, e: TaskSuccess<String>, ctx: &mut Context<Self>) {
        let data = serde_json::json!({ "pool": "threads", "task": e.id.0, "value": e.value });
        self.send(ctx, "success", data);
    }
}

impl Handler<TaskSuccess<u64>> for Forwarder {
    type Result = ();
    fn handle(&mut self, e: TaskSuccess<u64>, ctx: &mut Context<Self>) {
        let data = serde_json::json!({ "pool": "processes", "task": e.id.0, "value": e.value });
        self.send(ctx, "success", data);
    }
}

impl Handler<TaskFailure> for Forwarder {
    type Result = ();
    fn handle(&mut self, e: TaskFailure, ctx: &mut Context<Self>) {
        let data = serde_json::json!({ "task": e.id.0, "worker": e.worker.as_str(), "error": e.error.to_string() });
        self.send(ctx, "failure", data);
    }
}

impl Handler<PoolStats> for Forwarder {
    type Result = ();
    fn handle(&mut self, s: PoolStats, ctx: &mut Context<Self>) {
        self.send(ctx, "stats", stats_json(&s));
    }
}

async fn events(pools: web::Data<Pools>) -> Result<HttpResponse, actix_web::Error> {
    let (tx, rx) = mpsc::channel::<String>(256);
    let fwd = Forwarder(tx).start();
    let bus = pools.threads.bus();
    let subscribe = || -> Result<(), circuits::BusError> {
        bus.subscribe("threads", fwd.clone().recipient::<TaskSuccess<String>>())?;
        bus.subscribe("processes", fwd.clone().recipient::<TaskSuccess<u64>>())?;
        for ch in ["threads", "processes"] {
            bus.subscribe(ch, fwd.clone().recipient::<TaskFailure>())?;
            bus.subscribe(ch, fwd.clone().recipient::<PoolStats>())?;
        }
        Ok(())
    };
    subscribe().map_err(actix_web::error::ErrorInternalServerError)?;
    let hello = futures::stream::once(async {
        Ok::<_, actix_web::Error>(web::Bytes::from(": connected\n\n"))
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, actix_web::Error>(web::Bytes::from(line)), rx))
    });
    use futures::StreamExt;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(hello.chain(stream)))
}

async fn serve(port: u16, queue_bound: usize) -> std::io::Result<()> {
    // The recorder the pools' metrics go to (before the pools start, though a later one works too).
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .map_err(std::io::Error::other)?;
    let upkeep = prometheus.clone();
    actix_web::rt::spawn(async move {
        // Keeps the exporter's histograms drained between scrapes.
        let mut every = actix_web::rt::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let prometheus = web::Data::new(prometheus);
    let bus = Bus::new();
    let threads = Pool::builder()
        .bus(&bus)
        .channel("threads")
        .min(2)
        .queue_bound(queue_bound)
        .track_latency()
        .stats_every(Duration::from_secs(1))
        .start();
    let procs = Pool::builder()
        .bus(&bus)
        .channel("processes")
        .min(2)
        .max(4)
        .process()
        .track_latency()
        .stats_every(Duration::from_secs(1))
        .start();
    // Read-only (no `.actions(true)`), and only for this machine: a stand-in for the app's own
    // authentication, which a real service puts in front of it.
    let dashboard = Dashboard::new("/circuits")
        .pool(&threads)
        .pool(&procs)
        .guard(|req| req.peer_addr().is_some_and(|a| a.ip().is_loopback()));
    let pools = web::Data::new(Pools {
        threads: threads.clone(),
        procs: procs.clone(),
    });
    let server = HttpServer::new(move || {
        App::new()
            .service(dashboard.clone())
            .app_data(prometheus.clone())
            .route("/metrics", web::get().to(metrics))
            .route("/sum", web::post().to(sum))
            .app_data(pools.clone())
            .route("/hash", web::post().to(hash_body))
            .route("/primes", web::get().to(primes))
            .route("/slow", web::get().to(slow))
            .route("/crash", web::post().to(crash))
            .route("/stats", web::get().to(stats))
            .route("/events", web::get().to(events))
    })
    .workers(2)
    .shutdown_timeout(2)
    // A client that closes its side of the connection while its request runs has gone: end the
    // connection, which drops the handler's future and so cancels its task (see the header).
    // Otherwise the task would run on until its answer finds the connection closed.
    .h1_allow_half_closed(false)
    .bind(("127.0.0.1", port))?;
    let addr = server.addrs()[0];
    println!("listening on http://{addr}");
    use std::io::Write;
    std::io::stdout().flush()?;
    // Runs until SIGINT or SIGTERM, then drains the pools.
    server.run().await?;
    threads.stop().await;
    procs.stop().await;
    println!("stopped");
    Ok(())
}

fn main() -> std::io::Result<()> {
    // First: in the process pool's workers this serves jobs and never returns.
    circuits::init(
        Jobs::new()
            .register::<CountPrimes>()
            .register::<Slow>()
            .register::<Crash>(),
    );
    let mut args = std::env::args().skip(1);
    let (mut port, mut queue_bound) = (8080, 10_000);
    while let Some(a) = args.next() {
        if a == "--port" {
            port = args
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| std::io::Error::other("--port needs a number"))?;
        } else if a == "--queue-bound" {
            queue_bound = args
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| std::io::Error::other("--queue-bound needs a number above 0"))?;
        }
    }
    actix_web::rt::System::new().block_on(serve(port, queue_bound))
}
