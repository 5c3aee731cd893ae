//! The actix-web example, end to end: starts the `web` binary on a loopback port and drives it with
//! a real HTTP client (awc): results, bad requests, a crashing job, the SSE stream, shutdown, a
//! full pool shedding load with 503, and a client that disconnects cancelling its task.

#[path = "../../../tests/common/mod.rs"]
mod common;

use common::{alive, bounded, children_of, eventually};

mod support;
use support::start;

use std::io::Write;
use std::time::{Duration, Instant};

use futures::StreamExt;

#[actix_rt::test]
async fn the_web_service_computes_refuses_survives_streams_and_shuts_down() {
    let server = start(&[]);
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let url = |path: &str| format!("{}{path}", server.base);

    // The event stream first, so it sees what follows.
    let mut sse = bounded(client.get(url("/events")).send()).await.unwrap();
    assert_eq!(sse.status(), 200);
    assert_eq!(
        sse.headers().get("content-type").unwrap(),
        "text/event-stream"
    );

    // Results from the process pool and the thread pool.
    let mut r = bounded(client.get(url("/primes?limit=100")).send())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["primes"], 25);
    let mut r = bounded(client.post(url("/hash?rounds=3")).send_body("hello"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let first: serde_json::Value = r.json().await.unwrap();
    let mut r = bounded(client.post(url("/hash?rounds=3")).send_body("hello"))
        .await
        .unwrap();
    let again: serde_json::Value = r.json().await.unwrap();
    let mut r = bounded(client.post(url("/hash?rounds=3")).send_body("hellp"))
        .await
        .unwrap();
    let other: serde_json::Value = r.json().await.unwrap();
    assert_eq!(first["hash"], again["hash"]);
    assert_ne!(first["hash"], other["hash"]);

    // Malformed requests: 400 with a message a person can act on.
    for (path, says) in [
        ("/primes?limit=abc", "whole number"),
        ("/primes", "missing"),
        ("/primes?limit=999999999999", "between"),
    ] {
        let mut r = bounded(client.get(url(path)).send()).await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{path}: {body}"
        );
    }
    let r = bounded(client.post(url("/hash?rounds=1")).send())
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "an empty body");

    // A job that crashes its worker process: 500 for that request only.
    let mut r = bounded(client.post(url("/crash")).send()).await.unwrap();
    assert_eq!(r.status(), 500);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("died"), "{body}");
    let mut r = bounded(client.get(url("/primes?limit=1000")).send())
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the server keeps serving");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["primes"], 168);

    // The stream carried the results and the crash, as events.
    let mut seen = String::new();
    bounded(async {
        while !(seen.contains("\"value\":25")
            && seen.contains("event: failure")
            && seen.contains("\"value\":168"))
        {
            let chunk = sse.next().await.expect("the stream stays open").unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(seen.contains("event: success"));
    drop(sse);

    let mut r = bounded(client.get(url("/stats")).send()).await.unwrap();
    let stats: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        stats["processes"]["workers"].as_u64().map(|w| w >= 2),
        Some(true)
    );
    assert!(stats["threads"]["done"].as_u64().unwrap() >= 3);

    // Shutdown: SIGTERM drains the pools and exits cleanly, leaving no worker process behind.
    let pid = server.child.id();
    // The crashed child's replacement may still be starting: a start has no event to await.
    let until = Instant::now() + Duration::from_secs(10);
    let mut workers = children_of(pid);
    while workers.len() < 2 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
        workers = children_of(pid);
    }
    assert!(
        workers.len() >= 2,
        "the process pool's workers: {workers:?}"
    );
    // SAFETY: signalling the server process this test started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let mut server = server;
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "the server did not stop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(status.success(), "{status}");
    let until = Instant::now() + Duration::from_secs(10);
    while workers.iter().any(|w| alive(*w)) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(workers.iter().all(|w| !alive(*w)), "orphaned workers");
}

#[actix_rt::test]
async fn a_full_pool_sheds_load_with_503_and_retry_after() {
    // Room for one hashing task at a time: a burst of requests finds the pool full.
    let server = start(&["--queue-bound", "1"]);
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let url = |path: &str| format!("{}{path}", server.base);

    let mut refused = None;
    for _ in 0..20 {
        let burst = (0..8).map(|_| client.post(url("/hash?rounds=1000000")).send_body("hello"));
        for answer in bounded(futures::future::join_all(burst)).await {
            let answer = answer.unwrap();
            match answer.status().as_u16() {
                200 => {}
                503 => refused = Some(answer),
                other => panic!("a request of the burst got {other}"),
            }
        }
        if refused.is_some() {
            break;
        }
    }
    let mut refused = refused.expect("a burst of eight onto room for one gets a 503");
    assert_eq!(refused.headers().get("retry-after").unwrap(), "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("full"), "{body}");

    // Shedding is per request: once there is room again, hashing goes on.
    let mut r = bounded(client.post(url("/hash?rounds=1")).send_body("hello"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["hash"].is_string(), "{body}");
}

#[actix_rt::test]
async fn a_client_that_disconnects_cancels_its_task_and_its_child_is_replaced() {
    let server = start(&[]);
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let url = |path: &str| format!("{}{path}", server.base);
    let stats = || async {
        let mut r = bounded(client.get(url("/stats")).send()).await.unwrap();
        r.json::<serde_json::Value>().await.unwrap()["processes"].clone()
    };

    // A client that waits gets its answer.
    let mut r = bounded(client.get(url("/slow?secs=1")).send())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["secs"], 1);

    let mut sse = bounded(client.get(url("/events")).send()).await.unwrap();
    assert_eq!(sse.status(), 200);
    // The process pool's two workers (a start has no event to await).
    let pid = server.child.id();
    assert!(
        eventually(30, || children_of(pid).len() == 2).await,
        "the process pool's workers: {:?}",
        children_of(pid)
    );
    let workers = children_of(pid);

    // A raw connection, so that the test decides when the client leaves: a job of an hour.
    let addr = server.base.strip_prefix("http://").unwrap();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.write_all(b"GET /slow?secs=3600 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    // Running: one of the children has the job.
    let until = Instant::now() + Duration::from_secs(30);
    while stats().await["running"] != 1 {
        assert!(
            Instant::now() < until,
            "the job never started: {}",
            stats().await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = stats().await;
    assert_eq!(before["failed"], 0, "{before}");

    // The client leaves; the server drops the request's handler, whose guard cancels the job.
    drop(conn);

    // The stream reports the task failed as cancelled...
    let mut seen = String::new();
    bounded(async {
        while !seen.contains("cancelled") {
            let chunk = sse.next().await.expect("the stream stays open").unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(seen.contains("event: failure"), "{seen}");
    // ... the pool counts it failed (before the event) and soon no longer running (once the
    // child that ran it is being replaced)...
    let until = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let now = stats().await;
        assert_eq!(now["failed"], 1, "{now}");
        if now["running"] == 0 {
            break now;
        }
        assert!(Instant::now() < until, "still running: {now}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(after["done"], before["done"], "{after}");
    // ... and the child that ran it was killed and replaced, well before its hour was up.
    assert!(
        eventually(30, || {
            let now = children_of(pid);
            now.len() == 2 && workers.iter().any(|w| !now.contains(w))
        })
        .await,
        "no child was replaced: {workers:?} then {:?}",
        children_of(pid)
    );
    assert_eq!(
        workers.iter().filter(|w| alive(**w)).count(),
        1,
        "exactly one worker killed: {workers:?}"
    );

    // The pool goes on: the next job runs on the new child or the other one.
    let mut r = bounded(client.get(url("/primes?limit=100")).send())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["primes"], 25);
}

/// The value of the sample `name{labels}` in Prometheus's text format, if it is there.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[actix_rt::test]
async fn the_metrics_endpoint_shows_the_pools_counters_moving() {
    let server = start(&[]);
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let url = |path: &str| format!("{}{path}", server.base);
    let scrape = || async {
        let mut r = bounded(client.get(url("/metrics")).send()).await.unwrap();
        assert_eq!(r.status(), 200);
        String::from_utf8(r.body().await.unwrap().to_vec()).unwrap()
    };
    let submitted = r#"circuits_tasks_submitted_total{pool="threads"}"#;
    let succeeded = r#"circuits_tasks_succeeded_total{pool="threads"}"#;
    let failed = r#"circuits_tasks_failed_total{pool="threads",kind="failed"}"#;
    // The pools report once a second: the first report has every series.
    let until = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let text = scrape().await;
        if sample(&text, submitted).is_some() {
            break text;
        }
        assert!(Instant::now() < until, "no pool metrics: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        sample(&before, r#"circuits_workers{pool="threads"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(&before, r#"circuits_workers{pool="processes"}"#),
        Some(2.0)
    );
    let (s0, d0) = (
        sample(&before, submitted).unwrap(),
        sample(&before, succeeded).unwrap(),
    );
    let f0 = sample(&before, failed).unwrap_or(0.0);

    for body in ["a", "b", "c"] {
        let r = bounded(client.post(url("/hash?rounds=10")).send_body(body))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = bounded(client.post(url("/sum")).send_body("1, two"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The next report counts them: three more succeeded, one more failed (by its kind).
    let until = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let text = scrape().await;
        let count = r#"circuits_task_duration_seconds_count{pool="threads"}"#;
        if sample(&text, submitted) >= Some(s0 + 4.0)
            && sample(&text, failed) >= Some(f0 + 1.0)
            // Latency is tracked in the example: the run times reach the histogram (a summary
            // in this exporter) in the same report.
            && sample(&text, count) >= Some(4.0)
        {
            break text;
        }
        assert!(Instant::now() < until, "the counters did not move: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sample(&after, succeeded), Some(d0 + 3.0));
    assert_eq!(sample(&after, failed), Some(f0 + 1.0));
}
