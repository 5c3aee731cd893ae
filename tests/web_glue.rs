//! The `actix-web` feature's glue: task errors as HTTP responses with their status codes, and a
//! pool's result events as a server-sent-events stream that ends its subscriptions when the client
//! leaves.

mod common;

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::{test as web_test, web, App, HttpResponse, ResponseError};
use circuits::prelude::*;
use common::{bounded, collect, eventually};

#[test]
fn task_errors_map_to_sensible_status_codes() {
    let code = |e: TaskError| e.status_code().as_u16();
    assert_eq!(code(TaskError::TimedOut(Duration::from_secs(1))), 504);
    assert_eq!(code(TaskError::Full), 503);
    assert_eq!(code(TaskError::PoolStopped), 503);
    assert_eq!(code(TaskError::Failed("bad input".into())), 400);
    assert_eq!(
        code(TaskError::WorkerCrashed {
            worker: "w".into(),
            reason: "killed by signal 9 (SIGKILL)".into()
        }),
        500
    );
    assert_eq!(code(TaskError::Panicked("oops".into())), 500);
    assert_eq!(
        circuits::Error::from(TaskError::Full)
            .status_code()
            .as_u16(),
        503
    );
}

async fn parse(pool: web::Data<PoolHandle>, body: String) -> Result<HttpResponse, TaskError> {
    let n = pool
        .push(Task::fallible(move || body.trim().parse::<u64>()))
        .await?;
    Ok(HttpResponse::Ok().body((n * 2).to_string()))
}

#[actix_rt::test]
async fn a_handler_uses_question_mark_on_a_task_result() {
    let pool = Pool::builder().min(1).start();
    let app = web_test::init_service(
        App::new()
            .app_data(web::Data::new(pool.clone()))
            .route("/double", web::post().to(parse)),
    )
    .await;
    let ok = web_test::TestRequest::post()
        .uri("/double")
        .set_payload("21")
        .to_request();
    assert_eq!(web_test::call_and_read_body(&app, ok).await, "42");
    let bad = web_test::TestRequest::post()
        .uri("/double")
        .set_payload("x")
        .to_request();
    let resp = web_test::call_service(&app, bad).await;
    assert_eq!(resp.status(), 400);
    let body = web_test::read_body(resp).await;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        json["error"].as_str().unwrap().contains("invalid digit"),
        "{json}"
    );
    pool.stop().await;
}

/// Reads the next chunk of a streaming body.
async fn next_chunk<B: MessageBody + Unpin>(body: &mut B) -> String
where
    B::Error: std::fmt::Debug,
{
    let chunk = bounded(std::future::poll_fn(|cx| {
        std::pin::Pin::new(&mut *body).poll_next(cx)
    }))
    .await
    .expect("the stream goes on")
    .expect("a chunk");
    String::from_utf8(chunk.to_vec()).unwrap()
}

#[actix_rt::test]
async fn result_events_stream_successes_and_failures_then_unsubscribe() {
    let pool = Pool::builder().min(1).channel("sse").start();
    let handle = pool.clone();
    let app = web_test::init_service(App::new().route(
        "/events",
        web::get().to(move || {
            let pool = handle.clone();
            async move { circuits::web::result_events::<u64>(&pool) }
        }),
    ))
    .await;
    let resp = web_test::call_service(
        &app,
        web_test::TestRequest::get().uri("/events").to_request(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut body = resp.into_body();
    assert_eq!(next_chunk(&mut body).await, ": connected\n\n");

    assert_eq!(bounded(pool.push(Task::new(|| 7u64))).await, Ok(7));
    let success = next_chunk(&mut body).await;
    assert!(success.starts_with("event: success\ndata: "), "{success}");
    let data: serde_json::Value =
        serde_json::from_str(success["event: success\ndata: ".len()..].trim()).unwrap();
    assert_eq!(data["value"], 7);
    assert_eq!(data["task"], 1);

    let failed = bounded(pool.push(Task::fallible(|| "x".parse::<u64>()))).await;
    assert!(matches!(failed, Err(TaskError::Failed(_))));
    let failure = next_chunk(&mut body).await;
    assert!(failure.starts_with("event: failure\ndata: "), "{failure}");
    assert!(failure.contains("invalid digit"), "{failure}");

    // The client leaves: the next event finds the stream closed and the subscriptions end.
    drop(body);
    let bus = pool.bus().clone();
    // Subscribed after the stream's forwarder, the collector hears each event after it: once it
    // heard the next task's, the forwarder has found the stream closed and stopped.
    let mut events = collect::<u64>(&pool);
    assert_eq!(bounded(pool.push(Task::new(|| 1u64))).await, Ok(1));
    events.until_complete(1).await;
    events.unsubscribe(&bus);
    // The forwarder's end fires no event: the count of live subscribers is polled.
    assert!(
        eventually(10, || bus.subscribers::<TaskFailure>("sse") == 0).await,
        "the stream's subscriptions outlived its client"
    );
    assert_eq!(bus.subscribers::<TaskSuccess<u64>>("sse"), 0);
    pool.stop().await;
}
