//! The `actix-web` feature's glue: task errors as HTTP responses with their status codes, and a
//! pool's result events as a server-sent-events stream that ends its subscriptions when the client
//! leaves.

mod common;

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::{test as web_test, web, App, HttpResponse, ResponseError};
use circuits::prelude::*;
use circuits::{Exit, StartStage, WaitError};
use common::{bounded, collect, eventually, Gate};

#[test]
fn task_errors_map_to_sensible_status_codes() {
    let code = |e: &dyn ResponseError| e.status_code().as_u16();
    assert_eq!(code(&TaskError::TimedOut(Duration::from_secs(1))), 504);
    // Refusals: the server has no room or no pool for it now.
    assert_eq!(code(&Refusal::Full), 503);
    assert_eq!(code(&Refusal::Stopped), 503);
    assert_eq!(code(&Refusal::NoRoute("w".into())), 503);
    assert_eq!(code(&Refusal::ClosureInProcessPool), 500);
    assert_eq!(code(&TaskError::Cancelled), 503);
    assert_eq!(
        code(&TaskError::WorkerStartFailed {
            worker: "w".into(),
            stage: StartStage::Handshake,
            reason: "exited with code 1".into()
        }),
        503
    );
    assert_eq!(code(&TaskError::Failed("bad input".into())), 400);
    let crashed = TaskError::WorkerCrashed {
        worker: "w".into(),
        exit: Exit::Signal(9),
    };
    assert_eq!(code(&crashed), 500);
    assert_eq!(
        crashed.to_string(),
        "the worker process w died while running the task: killed by signal 9 (SIGKILL)"
    );
    assert_eq!(code(&TaskError::Panicked("oops".into())), 500);
    // The one-await error and the crate's error answer as what they hold.
    assert_eq!(code(&RunError::Refused(Refusal::Full)), 503);
    assert_eq!(code(&RunError::Task(TaskError::Failed("no".into()))), 400);
    assert_eq!(code(&circuits::Error::from(Refusal::Full)), 503);
    assert_eq!(
        code(&circuits::Error::from(RunError::Refused(Refusal::Stopped))),
        503
    );
    assert_eq!(
        code(&circuits::Error::from(TaskError::TimedOut(
            Duration::from_secs(1)
        ))),
        504
    );
    assert_eq!(
        code(&circuits::Error::from(WaitError::Elapsed(
            Duration::from_secs(1)
        ))),
        500
    );
}

async fn parse(pool: web::Data<PoolHandle>, body: String) -> Result<HttpResponse, RunError> {
    let n = pool
        .run(Task::fallible(move || body.trim().parse::<u64>()))
        .await?;
    Ok(HttpResponse::Ok().body((n * 2).to_string()))
}

/// As `parse`, in two steps: `?` on the refusal, then on the task's error.
async fn parse_pushed(
    pool: web::Data<PoolHandle>,
    body: String,
) -> Result<HttpResponse, circuits::Error> {
    let value = pool.push(Task::fallible(move || body.trim().parse::<u64>()))?;
    let n = value.await?;
    Ok(HttpResponse::Ok().body((n * 2).to_string()))
}

/// Queues a task without waiting for it: 202, or the refusal as the response.
async fn enqueue(pool: web::Data<PoolHandle>) -> Result<HttpResponse, SubmitError<u64>> {
    let _value = pool.push(Task::new(|| 1u64))?;
    Ok(HttpResponse::Accepted().finish())
}

/// The app of the handler tests: `parse` at /double, `parse_pushed` at /pushed, `enqueue` at
/// /enqueue.
fn app(
    pool: &PoolHandle,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(pool.clone()))
        .route("/double", web::post().to(parse))
        .route("/pushed", web::post().to(parse_pushed))
        .route("/enqueue", web::post().to(enqueue))
}

/// `status_and_error!(app, uri, body)`: posts `body` to `uri`; the response's status and the
/// `error` of its JSON body (empty if it has none).
macro_rules! status_and_error {
    ($app:expr, $uri:expr, $body:expr) => {{
        let req = web_test::TestRequest::post()
            .uri($uri)
            .set_payload($body)
            .to_request();
        let resp = web_test::call_service($app, req).await;
        let status = resp.status().as_u16();
        let body = web_test::read_body(resp).await;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        (
            status,
            json["error"].as_str().unwrap_or_default().to_string(),
        )
    }};
}

#[actix_rt::test]
async fn a_handler_uses_question_mark_on_a_task_result() {
    let pool = Pool::builder().min(1).start();
    let app = web_test::init_service(app(&pool)).await;
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
    // The same in two steps (`?` on push, then on the value), through circuits::Error.
    let ok = web_test::TestRequest::post()
        .uri("/pushed")
        .set_payload("21")
        .to_request();
    assert_eq!(web_test::call_and_read_body(&app, ok).await, "42");
    let (status, error) = status_and_error!(&app, "/pushed", "x");
    assert_eq!(status, 400);
    assert!(error.contains("invalid digit"), "{error}");
    pool.stop().await;
}

#[actix_rt::test]
async fn a_refused_task_answers_503_with_the_reason() {
    // Full: a bounded pool whose one place a gated task holds.
    let pool = Pool::builder().min(1).queue_bound(1).start();
    let app = web_test::init_service(app(&pool)).await;
    let gate = Gate::new();
    let held = pool.push(gate.task(0u64)).expect("accepted");
    let (status, error) = status_and_error!(&app, "/enqueue", "");
    assert_eq!(status, 503);
    assert_eq!(error, "the task was not accepted: the pool's queue is full");
    let (status, error) = status_and_error!(&app, "/pushed", "21");
    assert_eq!(status, 503);
    assert_eq!(error, "the pool's queue is full");
    gate.open();
    assert_eq!(bounded(held).await, Ok(0));
    let (status, _) = status_and_error!(&app, "/enqueue", "");
    assert_eq!(status, 202, "room again");
    // Stopped: every handler answers 503 with the reason.
    pool.stop().await;
    for uri in ["/double", "/pushed"] {
        let (status, error) = status_and_error!(&app, uri, "21");
        assert_eq!(status, 503, "{uri}");
        assert_eq!(error, "the pool is stopped; it takes no new tasks", "{uri}");
    }
    let (status, error) = status_and_error!(&app, "/enqueue", "");
    assert_eq!(status, 503);
    assert_eq!(
        error,
        "the task was not accepted: the pool is stopped; it takes no new tasks"
    );
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

    assert_eq!(bounded(pool.run(Task::new(|| 7u64))).await, Ok(7));
    let success = next_chunk(&mut body).await;
    assert!(success.starts_with("event: success\ndata: "), "{success}");
    let data: serde_json::Value =
        serde_json::from_str(success["event: success\ndata: ".len()..].trim()).unwrap();
    assert_eq!(data["value"], 7);
    assert_eq!(data["task"], 1);

    let failed = bounded(pool.run(Task::fallible(|| "x".parse::<u64>()))).await;
    assert!(matches!(failed, Err(RunError::Task(TaskError::Failed(_)))));
    let failure = next_chunk(&mut body).await;
    assert!(failure.starts_with("event: failure\ndata: "), "{failure}");
    assert!(failure.contains("invalid digit"), "{failure}");

    // The client leaves: the next event finds the stream closed and the subscriptions end.
    drop(body);
    let bus = pool.bus().clone();
    // Subscribed after the stream's forwarder, the collector hears each event after it: once it
    // heard the next task's, the forwarder has found the stream closed and stopped.
    let mut events = collect::<u64>(&pool);
    assert_eq!(bounded(pool.run(Task::new(|| 1u64))).await, Ok(1));
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

#[actix_rt::test]
async fn dashboard_actions_need_the_option_a_post_and_their_header() {
    use circuits::web::{Access, Dashboard, ACTION_HEADER};
    let pool = Pool::builder().channel("watched").min(1).max(3).start();
    let dashboard =
        Dashboard::new("/ops/")
            .pool(&pool)
            .actions(true)
            .guard(
                |req: &actix_web::HttpRequest| match req.headers().get("x-role") {
                    None => Access::Unauthorized,
                    Some(role) => Access::from(role == "operator"),
                },
            );
    let app = web_test::init_service(App::new().service(dashboard)).await;
    let call = |req: web_test::TestRequest| {
        let app = &app;
        async move {
            web_test::call_service(app, req.to_request())
                .await
                .status()
                .as_u16()
        }
    };
    let post = |uri: &str| web_test::TestRequest::post().uri(uri);
    let op = ("x-role", "operator");
    let act = (ACTION_HEADER, "1");

    // The guard first: 401 for nobody, 403 for the wrong somebody, on every route.
    assert_eq!(call(web_test::TestRequest::get().uri("/ops/")).await, 401);
    let guest = web_test::TestRequest::get()
        .uri("/ops/events")
        .insert_header(("x-role", "guest"));
    assert_eq!(call(guest).await, 403);
    let resize = post("/ops/pools/0/resize?workers=3").insert_header(act);
    assert_eq!(call(resize).await, 401);
    // An action without its header (what a cross-site form would send) is refused.
    let forged = post("/ops/pools/0/resize?workers=3").insert_header(op);
    assert_eq!(call(forged).await, 403);
    assert_eq!(pool.workers().len(), 1);
    // Only a POST.
    let get = web_test::TestRequest::get()
        .uri("/ops/pools/0/resize?workers=3")
        .insert_header(op);
    assert_eq!(call(get.insert_header(act)).await, 405);
    // With all of it, it happens (within min..=max), and the answer says where the pool is.
    let resize = post("/ops/pools/0/resize?workers=3")
        .insert_header(op)
        .insert_header(act);
    let answer = web_test::call_service(&app, resize.to_request()).await;
    assert_eq!(answer.status().as_u16(), 200);
    let body = web_test::read_body(answer).await;
    assert_eq!(body, r#"{"workers":3}"#);
    assert_eq!(pool.workers().len(), 3);
    assert_eq!(
        call(
            post("/ops/pools/7/stop")
                .insert_header(op)
                .insert_header(act)
        )
        .await,
        404
    );
    assert_eq!(
        call(
            post("/ops/pools/0/stop")
                .insert_header(op)
                .insert_header(act)
        )
        .await,
        202
    );
    bounded(pool.stop()).await;
    assert!(pool.is_stopped());
}

#[actix_rt::test]
async fn the_dashboard_stream_opens_with_the_whole_state() {
    let pool = Pool::builder().channel("seen").min(2).start();
    let said = || Err::<u32, _>("<i>x</i> is not a number".to_string());
    let _ = pool.run(Task::fallible(said)).await;
    let app =
        web_test::init_service(App::new().service(circuits::web::dashboard("/d", [&pool]))).await;
    let page = web_test::TestRequest::get().uri("/d/").to_request();
    let page = web_test::call_service(&app, page).await;
    assert_eq!(page.status().as_u16(), 200);
    let policy = page.headers().get("content-security-policy").unwrap();
    assert!(policy.to_str().unwrap().contains("script-src 'self'"));
    let redirect = web_test::TestRequest::get().uri("/d").to_request();
    let redirect = web_test::call_service(&app, redirect).await;
    assert_eq!(redirect.headers().get("location").unwrap(), "/d/");

    let events = web_test::TestRequest::get().uri("/d/events").to_request();
    let answer = web_test::call_service(&app, events).await;
    assert_eq!(
        answer.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut body = answer.into_body();
    let first = bounded(next_chunk(&mut body)).await;
    let data = first
        .split("event: snapshot\ndata: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no snapshot first: {first}"));
    let snapshot: serde_json::Value = serde_json::from_str(data.trim()).unwrap();
    let seen = &snapshot["pools"][0];
    assert_eq!(seen["name"], "seen");
    assert_eq!(seen["mode"], "thread");
    assert_eq!(seen["state"]["workers"].as_array().map(Vec::len), Some(2));
    assert_eq!(seen["state"]["totals"]["failed"], 1);
    // The error text travels as data (JSON-escaped), for the page to show as text.
    let failure = &seen["state"]["failures"][0];
    assert_eq!(failure["kind"], "failed");
    assert!(
        failure["error"].as_str().unwrap().contains("<i>x</i>"),
        "{failure}"
    );
    bounded(pool.stop()).await;
}
