//! The bus's dispatch thread (a single-threaded Tokio runtime) and the delivery of one event to its
//! handlers, one after another.

use std::future::Future;
use std::pin::Pin;

use actix::Recipient;

use super::error::BusError;
use crate::event::{Event, Outcome};

pub(super) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A delivery that later ones can wait for: what keeps a sequence of deliveries in order (one
/// component's lifecycle announcements, the fires of an [`Ordered`](super::Ordered) handle).
pub(crate) type Lane = futures::future::Shared<BoxFuture>;

/// `delivery`, to run once `previous` (if still under way) has run.
pub(crate) fn after(
    previous: Option<Lane>,
    delivery: impl Future<Output = ()> + Send + 'static,
) -> Lane {
    use futures::FutureExt;
    let previous = previous.filter(|p| p.peek().is_none());
    let chained: BoxFuture = Box::pin(async move {
        if let Some(p) = previous {
            p.await;
        }
        delivery.await;
    });
    chained.shared()
}

/// The bus's dispatch thread: a single-threaded Tokio runtime that drives deliveries, so a fire works
/// from any thread and handlers are awaited one after another.
pub(super) struct Dispatcher {
    pub(super) handle: tokio::runtime::Handle,
    // Dropping the sender (with the bus) ends the thread.
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Dispatcher {
    pub(super) fn start() -> Result<Dispatcher, BusError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| BusError::Dispatcher(e.to_string()))?;
        let handle = rt.handle().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("circuits-bus".into())
            .spawn(move || {
                let _ = rt.block_on(rx);
            })
            .map_err(|e| BusError::Dispatcher(e.to_string()))?;
        Ok(Dispatcher {
            handle,
            _shutdown: tx,
        })
    }
}

pub(super) struct Report<R> {
    pub(super) answers: Vec<R>,
    pub(super) failures: Vec<String>,
}

/// Sends `event` to each handler in turn, awaiting each answer before the next handler runs.
///
/// Takes the event by value and hands it back, so the future is `Send` without `E: Sync`.
pub(super) async fn deliver<E: Event>(
    handlers: Vec<Recipient<E>>,
    event: E,
) -> (Report<E::Result>, E) {
    let mut report = Report {
        answers: Vec::with_capacity(handlers.len()),
        failures: Vec::new(),
    };
    for h in handlers {
        match h.send(event.clone()).await {
            Ok(answer) => {
                if let Some(f) = answer.failure() {
                    report.failures.push(f);
                }
                report.answers.push(answer);
            }
            Err(e) => report
                .failures
                .push(format!("the handler's actor stopped before answering: {e}")),
        }
    }
    (report, event)
}
