//! actix-web glue (feature `actix-web`): task errors as HTTP responses, a pool's result events
//! as a server-sent-events stream, and a live [`Dashboard`] page of pools.
//!
//! The dashboard mounts in one line (`app.service(circuits::web::dashboard("/circuits", [&a, &b]))`)
//! and shows each pool's workers, queue, rates, latency, restarts and last failures, live. **Mount
//! it behind the application's own authentication** (and give it a [guard](Dashboard::guard)):
//! the page shows task errors, which are user data, and load. See [`Dashboard`].
//!
//! With the feature on, [`RunError`], [`TaskError`], [`Refusal`], [`SubmitError`] and
//! [`Error`](crate::Error) implement [`actix_web::ResponseError`], so a handler can use `?` on
//! [`PoolHandle::run`] (or on `push` and the value it returns):
//!
//! | error | status |
//! | --- | --- |
//! | `TaskError::TimedOut` | 504 Gateway Timeout |
//! | `Refusal::Full`, `Refusal::Stopped`, `Refusal::NoRoute`, `TaskError::Cancelled`, `TaskError::Expired`, `TaskError::WorkerStartFailed`, `TaskError::Broker` | 503 Service Unavailable |
//! | `TaskError::Failed` (the task returned `Err`: it refused its input) | 400 Bad Request |
//! | every other task error and refusal (`Panicked`, `WorkerCrashed`, `LimitExceeded`, `HostLost`, `ClosureInProcessPool`, ...) | 500 Internal Server Error |
//!
//! The body is JSON, `{"error": "<the error's message>"}`. [`BusError`] and any other
//! [`Error`](crate::Error) answer 500. For other codes, wrap the error in a type of your own.
//!
//! ```
//! use actix_web::{test, web, App, HttpResponse};
//! use circuits::prelude::*;
//!
//! async fn parse(pool: web::Data<PoolHandle>, body: String) -> Result<HttpResponse, RunError> {
//!     let n = pool.run(Task::fallible(move || body.trim().parse::<u64>())).await?;
//!     Ok(HttpResponse::Ok().body((n * 2).to_string()))
//! }
//!
//! #[actix_web::main]
//! async fn main() {
//!     let pool = Pool::builder().min(1).start();
//!     let app = test::init_service(
//!         App::new()
//!             .app_data(web::Data::new(pool.clone()))
//!             .route("/double", web::post().to(parse)),
//!     )
//!     .await;
//!     let ok = test::TestRequest::post().uri("/double").set_payload("21").to_request();
//!     assert_eq!(test::call_and_read_body(&app, ok).await, "42");
//!     let bad = test::TestRequest::post().uri("/double").set_payload("x").to_request();
//!     assert_eq!(test::call_service(&app, bad).await.status(), 400);
//!     pool.stop().await;
//! }
//! ```

mod dashboard;
mod sampler;

pub use dashboard::{dashboard, Access, Dashboard, ACTION_HEADER};

use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::bus::BusError;
use crate::pool::PoolHandle;
use crate::task::{
    Refusal, RunError, SubmitError, TaskError, TaskFailure, TaskOutput, TaskSuccess,
};

fn json_error(status: StatusCode, error: &dyn std::fmt::Display) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": error.to_string() }))
}

impl ResponseError for TaskError {
    fn status_code(&self) -> StatusCode {
        match self {
            TaskError::TimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
            TaskError::Cancelled
            | TaskError::Expired
            | TaskError::WorkerStartFailed { .. }
            | TaskError::Broker(_) => StatusCode::SERVICE_UNAVAILABLE,
            TaskError::Failed(_) => StatusCode::BAD_REQUEST,
            // A job that crashed its worker or went over its limits: the server's trouble.
            TaskError::WorkerCrashed { .. } | TaskError::LimitExceeded(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        json_error(self.status_code(), self)
    }
}

impl ResponseError for Refusal {
    fn status_code(&self) -> StatusCode {
        match self {
            Refusal::Full | Refusal::Stopped | Refusal::NoRoute(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        json_error(self.status_code(), self)
    }
}

/// As its [`Refusal`]; the task is dropped with the error.
impl<R> ResponseError for SubmitError<R> {
    fn status_code(&self) -> StatusCode {
        self.refusal().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        json_error(self.status_code(), self)
    }
}

impl ResponseError for RunError {
    fn status_code(&self) -> StatusCode {
        match self {
            RunError::Refused(r) => r.status_code(),
            RunError::Task(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        json_error(self.status_code(), self)
    }
}

impl ResponseError for crate::Error {
    fn status_code(&self) -> StatusCode {
        match self {
            crate::Error::Task(e) => e.status_code(),
            crate::Error::Refused(r) => r.status_code(),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        json_error(self.status_code(), self)
    }
}

/// A bus that refused something is the server's fault: 500, with the message as JSON.
impl ResponseError for BusError {
    fn error_response(&self) -> HttpResponse {
        json_error(self.status_code(), self)
    }
}

/// How many events wait for a slow client before newer ones are dropped.
const BACKLOG: usize = 256;

/// A server-sent-events response that streams `pool`'s results of type `R` as they happen:
/// `event: success` with `{"task": id, "worker": channel, "value": value}` for each
/// [`TaskSuccess<R>`], and `event: failure` with `{"task": id, "worker": channel, "error":
/// message}` for each [`TaskFailure`]. The stream opens with the comment `: connected`.
///
/// Tasks of other result types succeed silently here (subscribe once per type you want to see).
/// A client that reads more slowly than events arrive misses events beyond a backlog of 256; a
/// client that leaves ends its subscriptions.
///
/// ```no_run
/// use actix_web::{web, App, HttpServer};
/// use circuits::prelude::*;
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let pool = Pool::builder().min(2).start();
///     let events = pool.clone();
///     HttpServer::new(move || {
///         let pool = events.clone();
///         App::new().route(
///             "/events",
///             web::get().to(move || {
///                 let pool = pool.clone();
///                 async move { circuits::web::result_events::<u64>(&pool) }
///             }),
///         )
///     })
///     .bind(("127.0.0.1", 8080))?
///     .run()
///     .await?;
///     pool.stop().await;
///     Ok(())
/// }
/// ```
///
/// # Errors
///
/// [`BusError`] when the pool's bus refuses the subscription (a stopped bus).
pub fn result_events<R>(pool: &PoolHandle) -> Result<HttpResponse, BusError>
where
    R: TaskOutput + Serialize,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(BACKLOG);
    let forwarder = Forwarder::<R> {
        tx,
        _result: std::marker::PhantomData,
    }
    .start();
    let (bus, channel) = (pool.bus(), pool.channel());
    bus.subscribe(channel, forwarder.clone().recipient::<TaskSuccess<R>>())?;
    bus.subscribe(channel, forwarder.recipient::<TaskFailure>())?;
    let hello = futures::stream::once(async {
        Ok::<_, actix_web::Error>(actix_web::web::Bytes::from_static(b": connected\n\n"))
    });
    let events = futures::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok(actix_web::web::Bytes::from(line)), rx))
    });
    use futures::StreamExt;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(hello.chain(events)))
}

/// Forwards one pool's result events to one SSE client; stops when the client has gone.
struct Forwarder<R> {
    tx: tokio::sync::mpsc::Sender<String>,
    _result: std::marker::PhantomData<fn() -> R>,
}

impl<R: 'static> Forwarder<R> {
    fn send(&mut self, ctx: &mut Context<Self>, event: &str, data: serde_json::Value) {
        if self
            .tx
            .try_send(format!("event: {event}\ndata: {data}\n\n"))
            .is_err()
            && self.tx.is_closed()
        {
            ctx.stop(); // the client left: stopping prunes the subscriptions
        }
    }
}

impl<R: 'static> Actor for Forwarder<R> {
    type Context = Context<Self>;
}

impl<R: TaskOutput + Serialize> Handler<TaskSuccess<R>> for Forwarder<R> {
    type Result = ();
    fn handle(&mut self, e: TaskSuccess<R>, ctx: &mut Context<Self>) {
        let data =
            serde_json::json!({ "task": e.id.0, "worker": e.worker.as_str(), "value": e.value });
        self.send(ctx, "success", data);
    }
}

impl<R: 'static> Handler<TaskFailure> for Forwarder<R> {
    type Result = ();
    fn handle(&mut self, e: TaskFailure, ctx: &mut Context<Self>) {
        let data = serde_json::json!({
            "task": e.id.0,
            "worker": e.worker.as_str(),
            "error": e.error.to_string(),
        });
        self.send(ctx, "failure", data);
    }
}
