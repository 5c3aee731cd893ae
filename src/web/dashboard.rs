//! [`Dashboard`]: a live page of a few pools, mounted in the application's own actix-web app.
//!
//! ```
//! use actix_web::{test, App};
//! use circuits::prelude::*;
//! use circuits::web::Dashboard;
//!
//! #[actix_web::main]
//! async fn main() {
//!     let pool = Pool::builder().channel("images").min(2).track_latency().start();
//!     // Mount it behind the application's own authentication: the page shows task errors.
//!     let dashboard = Dashboard::new("/circuits")
//!         .pool(&pool)
//!         .guard(|req| req.headers().contains_key("x-operator"));
//!     let app = test::init_service(App::new().service(dashboard)).await;
//!
//!     let page = test::TestRequest::get().uri("/circuits/").insert_header(("x-operator", "1"));
//!     assert_eq!(test::call_service(&app, page.to_request()).await.status(), 200);
//!     let stranger = test::TestRequest::get().uri("/circuits/");
//!     assert_eq!(test::call_service(&app, stranger.to_request()).await.status(), 403);
//!     // Actions are off unless `.actions(true)`: refused, whoever asks.
//!     let resize = test::TestRequest::post()
//!         .uri("/circuits/pools/0/resize?workers=4")
//!         .insert_header(("x-operator", "1"))
//!         .insert_header(("x-circuits-action", "1"));
//!     assert_eq!(test::call_service(&app, resize.to_request()).await.status(), 403);
//!     assert_eq!(pool.workers().len(), 2);
//!     pool.stop().await;
//! }
//! ```

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;

use super::sampler::{Hub, Watched};
use crate::pool::PoolHandle;
use crate::worker::Shutdown;

const PAGE: &str = include_str!("page/index.html");
const STYLE: &str = include_str!("page/dashboard.css");
const SCRIPT: &str = include_str!("page/dashboard.js");

/// Only what the page itself loads, from the dashboard itself: no inline script or style, no
/// other origin. An error text that got into markup by mistake still could not run.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The header every action request must carry: a page of another site cannot send it without
/// the browser asking this server first (CORS), so a forged form cannot resize a pool.
pub const ACTION_HEADER: &str = "x-circuits-action";

/// What a dashboard's [guard](Dashboard::guard) says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Serve it.
    Allow,
    /// 401 Unauthorized: who is asking is not known (not logged in).
    Unauthorized,
    /// 403 Forbidden: known, and not allowed.
    Forbidden,
}

/// `true` allows, `false` forbids (403).
impl From<bool> for Access {
    fn from(allowed: bool) -> Self {
        if allowed {
            Access::Allow
        } else {
            Access::Forbidden
        }
    }
}

type Guard = Arc<dyn Fn(&HttpRequest) -> Access + Send + Sync>;

/// A live page of a few pools, for people: per pool its workers (channel, mode, process id,
/// state, load, the running task and its age), queue depth against its bound, tasks per second
/// and p50/p99 latency over the last minutes as charts, restarts, and the last failures with their
/// error text. The page updates itself through server-sent events (a browser reconnects by itself,
/// and each connection starts with the whole state).
///
/// Mount it with `App::service` (it is `Clone`, for `HttpServer::new`'s factory):
///
/// | route under the path | what |
/// | --- | --- |
/// | `GET {path}` | redirects to `{path}/` |
/// | `GET {path}/` | the page (with `dashboard.css` and `dashboard.js` beside it) |
/// | `GET {path}/events` | the event stream: `snapshot`, then a `tick` each period |
/// | `POST {path}/pools/{i}/resize?workers=N`, `.../stop`, `.../abort` | actions, off by default |
///
/// **Mount it behind the application's own authentication.** The page and its stream show task
/// errors (user data) and load. Every route asks the [guard](Dashboard::guard) first. Actions are
/// refused (403) unless [`actions(true)`](Dashboard::actions); even then they must be `POST`s
/// carrying the [`ACTION_HEADER`] (the page sends it; a cross-site form cannot).
///
/// What it costs the pools: one sample per period (default 1 s) of what they keep anyway
/// (`stats`, `worker_info`, `recent_failures`, latency totals); no bus subscription, so no result
/// event is built for it. p50/p99 need [`track_latency`](crate::PoolBuilder::track_latency), and
/// so do exact ages of thread and async tasks (otherwise an age is counted from the sample that
/// first saw the task, to within a period). The dashboard holds its pools weakly: it does not keep
/// them alive. Error texts reach the page as data and are shown as text, never as markup.
#[derive(Clone)]
pub struct Dashboard {
    path: String,
    pools: Vec<(std::sync::Weak<crate::pool::core::PoolCore>, String)>,
    actions: bool,
    guard: Option<Guard>,
    every: Duration,
    window: Duration,
    /// Shared by the clones of one configured dashboard (one per server worker), made at the
    /// first mount.
    hub: Arc<OnceLock<Arc<Hub>>>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("path", &self.path)
            .field(
                "pools",
                &self.pools.iter().map(|p| &p.1).collect::<Vec<_>>(),
            )
            .field("actions", &self.actions)
            .field("guard", &self.guard.is_some())
            .field("every", &self.every)
            .finish()
    }
}

/// A dashboard of `pools` at `path`, with the defaults of [`Dashboard::new`]:
/// `app.service(circuits::web::dashboard("/circuits", [&a, &b]))`.
pub fn dashboard<'a>(path: &str, pools: impl IntoIterator<Item = &'a PoolHandle>) -> Dashboard {
    pools
        .into_iter()
        .fold(Dashboard::new(path), |d, pool| d.pool(pool))
}

impl Dashboard {
    /// A dashboard to mount at `path` (such as `"/circuits"`), with no pool yet, actions off,
    /// no guard, a sample each second and five minutes of history.
    pub fn new(path: &str) -> Self {
        Dashboard {
            path: path.trim_end_matches('/').to_string(),
            pools: Vec::new(),
            actions: false,
            guard: None,
            every: Duration::from_secs(1),
            window: Duration::from_secs(300),
            hub: Arc::default(),
        }
    }

    fn changed(mut self) -> Self {
        self.hub = Arc::default(); // a new configuration: its own hub
        self
    }

    /// Shows `pool` too (in the order added).
    pub fn pool(mut self, pool: &PoolHandle) -> Self {
        let name = pool.channel().as_str().to_string();
        self.pools.push((Arc::downgrade(&pool.core), name));
        self.changed()
    }

    /// Turns the actions on or off (default off): resizing, stopping (draining) and aborting a
    /// pool from the page. Even on, each needs a `POST` with the [`ACTION_HEADER`] that the
    /// guard allows.
    pub fn actions(mut self, on: bool) -> Self {
        self.actions = on;
        self.changed()
    }

    /// Asks `guard` about every request (the page, its stream, actions) before serving it: return
    /// `true` or [`Access::Allow`] to serve, `false` or [`Access::Forbidden`] for 403,
    /// [`Access::Unauthorized`] for 401. For example, allow only a logged-in operator, as the
    /// application's session says.
    pub fn guard<A: Into<Access>>(
        mut self,
        guard: impl Fn(&HttpRequest) -> A + Send + Sync + 'static,
    ) -> Self {
        self.guard = Some(Arc::new(move |req| guard(req).into()));
        self.changed()
    }

    /// How often the pools are sampled and the pages updated (default 1 s; at least 10 ms).
    pub fn every(mut self, period: Duration) -> Self {
        self.every = period.max(Duration::from_millis(10));
        self.changed()
    }

    /// How much history the charts show (default 5 minutes).
    pub fn history(mut self, window: Duration) -> Self {
        self.window = window;
        self.changed()
    }

    fn hub(&self) -> Arc<Hub> {
        self.hub
            .get_or_init(|| {
                let pools = self
                    .pools
                    .iter()
                    .map(|(core, name)| {
                        let live = core.upgrade();
                        Watched {
                            core: core.clone(),
                            name: name.clone(),
                            bound: live.as_ref().and_then(|c| c.queue_bound),
                            min: live.as_ref().map_or(0, |c| c.min),
                            max: live.as_ref().map_or(0, |c| c.max),
                        }
                    })
                    .collect();
                let hub = Arc::new(Hub::new(pools, self.every, self.window, self.actions));
                hub.start();
                hub
            })
            .clone()
    }
}

/// What the handlers share: the hub and the guard.
struct Mounted {
    hub: Arc<Hub>,
    guard: Option<Guard>,
}

impl Mounted {
    /// The guard's refusal, if it refuses.
    fn refused(&self, req: &HttpRequest) -> Option<HttpResponse> {
        let status = match self.guard.as_ref().map_or(Access::Allow, |g| g(req)) {
            Access::Allow => return None,
            Access::Unauthorized => StatusCode::UNAUTHORIZED,
            Access::Forbidden => StatusCode::FORBIDDEN,
        };
        Some(HttpResponse::build(status).finish())
    }
}

impl HttpServiceFactory for Dashboard {
    fn register(self, config: &mut AppService) {
        let mounted = web::Data::new(Mounted {
            hub: self.hub(),
            guard: self.guard.clone(),
        });
        let mut scope = web::scope(&self.path).app_data(mounted);
        if !self.path.is_empty() {
            let to = format!("{}/", self.path);
            scope = scope.route(
                "",
                web::get().to(move |m: web::Data<Mounted>, req: HttpRequest| {
                    let to = to.clone();
                    async move {
                        m.refused(&req).unwrap_or_else(|| {
                            HttpResponse::TemporaryRedirect()
                                .insert_header((header::LOCATION, to))
                                .finish()
                        })
                    }
                }),
            );
        }
        scope
            .route("/", web::get().to(page))
            .route("/dashboard.css", web::get().to(style))
            .route("/dashboard.js", web::get().to(script))
            .route("/events", web::get().to(events))
            .service(
                web::resource("/pools/{pool}/{action}")
                    .route(web::post().to(action))
                    .route(web::route().to(|| async {
                        HttpResponse::MethodNotAllowed()
                            .insert_header((header::ALLOW, "POST"))
                            .finish()
                    })),
            )
            .register(config);
    }
}

fn asset(m: &Mounted, req: &HttpRequest, kind: &str, body: &'static str) -> HttpResponse {
    if let Some(refused) = m.refused(req) {
        return refused;
    }
    HttpResponse::Ok()
        .content_type(kind)
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

async fn page(m: web::Data<Mounted>, req: HttpRequest) -> HttpResponse {
    asset(&m, &req, "text/html; charset=utf-8", PAGE)
}

async fn style(m: web::Data<Mounted>, req: HttpRequest) -> HttpResponse {
    asset(&m, &req, "text/css; charset=utf-8", STYLE)
}

async fn script(m: web::Data<Mounted>, req: HttpRequest) -> HttpResponse {
    asset(&m, &req, "text/javascript; charset=utf-8", SCRIPT)
}

fn sse(event: &str, data: &str) -> web::Bytes {
    web::Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// The stream: the whole state first (so a reconnecting page is whole again), then each tick. A
/// page too slow for the ticks gets the whole state again instead of the ones it missed.
async fn events(m: web::Data<Mounted>, req: HttpRequest) -> HttpResponse {
    if let Some(refused) = m.refused(&req) {
        return refused;
    }
    let hub = m.hub.clone();
    let ticks = hub.ticks.subscribe(); // before the snapshot: no tick falls between
    let first = format!(
        "retry: 2000\n{}",
        String::from_utf8_lossy(&sse("snapshot", &hub.snapshot()))
    );
    let first = futures::stream::once(async move { Ok::<_, actix_web::Error>(first.into()) });
    let rest = futures::stream::unfold((ticks, hub), |(mut ticks, hub)| async move {
        use tokio::sync::broadcast::error::RecvError;
        let chunk = match ticks.recv().await {
            Ok(tick) => sse("tick", &tick),
            Err(RecvError::Lagged(_)) => sse("snapshot", &hub.snapshot()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, actix_web::Error>(chunk), (ticks, hub)))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .streaming(first.chain(rest))
}

#[derive(serde::Deserialize)]
struct ResizeTo {
    workers: Option<usize>,
}

fn refuse(status: StatusCode, why: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": why }))
}

/// `POST {path}/pools/{i}/{resize|stop|abort}`: only with actions on, the guard's leave, and the
/// action header.
async fn action(
    m: web::Data<Mounted>,
    req: HttpRequest,
    path: web::Path<(usize, String)>,
    query: web::Query<ResizeTo>,
) -> HttpResponse {
    if let Some(refused) = m.refused(&req) {
        return refused;
    }
    if !m.hub.actions {
        return refuse(
            StatusCode::FORBIDDEN,
            "actions are off (Dashboard::actions)",
        );
    }
    if !req.headers().contains_key(ACTION_HEADER) {
        return refuse(StatusCode::FORBIDDEN, "an action needs its header");
    }
    let (i, what) = path.into_inner();
    let Some(core) = m.hub.pools.get(i).and_then(|p| p.core.upgrade()) else {
        return refuse(StatusCode::NOT_FOUND, "no such pool");
    };
    match (what.as_str(), query.workers) {
        ("resize", Some(n)) => match web::block(move || core.resize_to(n)).await {
            Ok(now) => HttpResponse::Ok().json(serde_json::json!({ "workers": now })),
            Err(_) => refuse(StatusCode::INTERNAL_SERVER_ERROR, "the resize did not end"),
        },
        ("resize", None) => refuse(StatusCode::BAD_REQUEST, "resize needs ?workers=N"),
        ("stop", _) => {
            core.begin_stop(Shutdown::Drain);
            HttpResponse::Accepted().json(serde_json::json!({ "stopping": true }))
        }
        ("abort", _) => {
            core.begin_stop(Shutdown::Abort);
            HttpResponse::Accepted().json(serde_json::json!({ "aborting": true }))
        }
        _ => refuse(StatusCode::NOT_FOUND, "no such action"),
    }
}
