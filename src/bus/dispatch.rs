//! The bus's dispatch thread (a single-threaded Tokio runtime) and the delivery of one event to its
//! handlers, one after another.

use std::future::Future;
use std::pin::Pin;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use actix::Recipient;
use futures::channel::{mpsc, oneshot};
use futures::stream::StreamExt;
use futures::task::AtomicWaker;

use super::error::BusError;
use super::sync::lock;
use super::target::SubscriptionId;
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
    /// The handlers that failed, and how.
    pub(super) failures: Vec<(SubscriptionId, String)>,
    /// A handler's answer stopped the fire (see [`Outcome::stops`]): the rest did not get it.
    pub(super) stopped: bool,
    /// How many handlers the fire reached (all of them, unless one stopped it).
    pub(super) reached: usize,
}

/// One handler of a fire: its recipient, its actor's inbox, and its subscription.
pub(crate) type HandlerOf<E> = (Recipient<E>, Arc<Inbox>, SubscriptionId);

/// An actor's inbox: one task on the dispatch thread that sends the fires reaching the actor (for
/// any of its subscriptions, of any event type) in the order they arrive, and passes each one on
/// to the fire's next handler as the actor answers. So every actor gets the fires of one thread in
/// the order they were made, as its mailbox gets one sender's messages (the first handler's inbox
/// gets them in that order, and each inbox passes them on in the order its actor answers), while a
/// handler that awaits a fire of its own never waits behind the fire it is handling: an inbox does
/// not wait for one answer before the next send.
pub(crate) struct Inbox {
    tx: mpsc::UnboundedSender<Job>,
}

/// What an inbox runs for one fire: sends it to the actor now, and gives back the wait for the
/// answer, which resolves to what passes the fire on.
type Job = Box<dyn FnOnce() -> Answered + Send>;
type Answered = Pin<Box<dyn Future<Output = Box<dyn FnOnce() + Send>> + Send>>;

/// One fire on its way through its handlers.
pub(super) struct Step<E: Event> {
    event: E,
    /// The handlers still to come, in dispatch order, with their actors' inboxes.
    rest: std::vec::IntoIter<HandlerOf<E>>,
    report: Report<E::Result>,
    done: oneshot::Sender<(Report<E::Result>, E)>,
}

impl Inbox {
    /// Starts an inbox on the dispatch thread (`spawn`). It ends once every subscription and
    /// every fire holding it are gone.
    pub(super) fn start(spawn: impl FnOnce(BoxFuture)) -> Inbox {
        let (tx, rx) = mpsc::unbounded();
        // Unconstrained: Tokio's cooperative budget would make an answer that is there look
        // pending after many polls in one turn, and this task reads the order of answers from
        // what it sees.
        spawn(Box::pin(tokio::task::unconstrained(run_inbox(rx))));
        Inbox { tx }
    }
}

/// Hands `step` to its next handler's inbox, or, after the last, gives the fire its report. If
/// the inbox is gone (the dispatch thread ended), the fire is abandoned with it.
fn forward<E: Event>(mut step: Step<E>) {
    let Some((recipient, inbox, id)) = step.rest.next() else {
        let _ = step.done.send((step.report, step.event));
        return;
    };
    step.report.reached += 1;
    let job: Job = Box::new(move || -> Answered {
        // Each fire's recipient is a fresh sender: it is always queued at once, in order (a
        // sender that found the mailbox full would hold its next message back).
        let request = recipient.send(step.event.clone());
        Box::pin(async move {
            let answer = request.await;
            Box::new(move || {
                match answer {
                    Ok(answer) => {
                        if let Some(f) = answer.failure() {
                            step.report.failures.push((id, f));
                        }
                        if answer.stops() {
                            // The handlers after this one do not get the fire.
                            step.rest = Vec::new().into_iter();
                            step.report.stopped = true;
                        }
                        step.report.answers.push(answer);
                    }
                    Err(e) => step.report.failures.push((
                        id,
                        format!("the handler's actor stopped before answering: {e}"),
                    )),
                }
                forward(step);
            }) as Box<dyn FnOnce() + Send>
        })
    });
    let _ = inbox.tx.unbounded_send(job);
}

/// A request sent and the wait for its answer, until the answer is passed on.
struct Sent {
    answered: Answered,
    waker: Waker,
    /// What passes the fire on, once the answer is in.
    pass_on: Option<Box<dyn FnOnce() + Send>>,
}

/// Which sent requests were woken, and the inbox task to wake.
#[derive(Default)]
struct Woken {
    indexes: Mutex<Vec<u64>>,
    task: AtomicWaker,
}

/// Wakes the inbox for one request.
struct RequestWaker {
    index: u64,
    woken: Arc<Woken>,
}

impl Wake for RequestWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        lock(&self.woken.indexes).push(self.index);
        self.woken.task.wake();
    }
}

/// The inbox's task: sends each arriving fire at once, and passes answers on in the order the
/// actor gave them. That order is read without waiting on anything: when an answer is seen, the
/// requests sent before it are looked at again (an actor that answered them first has made their
/// answers visible by then), and every answer in hand is passed on in the order its request was
/// sent. A request still pending (an async handler awaiting something) holds back nothing sent
/// after it.
async fn run_inbox(mut rx: mpsc::UnboundedReceiver<Job>) {
    let woken = Arc::new(Woken::default());
    // The requests not passed on yet, by the order they were sent in (a request whose handler
    // never answers costs only its own entry).
    let mut sent: BTreeMap<u64, Sent> = BTreeMap::new();
    let mut next: u64 = 0;
    let mut open = true;
    std::future::poll_fn(|cx| {
        woken.task.register(cx.waker());
        let mut look: Vec<u64> = std::mem::take(&mut *lock(&woken.indexes));
        while open {
            match rx.poll_next_unpin(cx) {
                Poll::Ready(Some(job)) => {
                    let waker = Waker::from(Arc::new(RequestWaker {
                        index: next,
                        woken: woken.clone(),
                    }));
                    let answered = job();
                    sent.insert(
                        next,
                        Sent {
                            answered,
                            waker,
                            pass_on: None,
                        },
                    );
                    look.push(next);
                    next += 1;
                }
                Poll::Ready(None) => open = false,
                Poll::Pending => break,
            }
        }
        look.sort_unstable();
        look.dedup();
        let poll = |s: &mut Sent| -> bool {
            if s.pass_on.is_none() {
                if let Poll::Ready(pass_on) =
                    s.answered.as_mut().poll(&mut Context::from_waker(&s.waker))
                {
                    s.pass_on = Some(pass_on);
                }
            }
            s.pass_on.is_some()
        };
        let mut last_ready = None;
        for i in look {
            if sent.get_mut(&i).is_some_and(poll) {
                last_ready = Some(i);
            }
        }
        let Some(j) = last_ready else {
            return if !open && sent.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        };
        for s in sent.range_mut(..j).map(|(_, s)| s) {
            poll(s);
        }
        // Pass on every answer in hand, in the order the requests were sent (none is after the
        // last one seen ready).
        let in_hand: Vec<u64> = sent
            .range(..=j)
            .filter(|(_, s)| s.pass_on.is_some())
            .map(|(i, _)| *i)
            .collect();
        for i in in_hand {
            if let Some(pass_on) = sent.remove(&i).and_then(|s| s.pass_on) {
                pass_on();
            }
        }
        if !open && sent.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Delivers `event` to the handlers behind `inboxes`, one after another in that order: the first
/// gets it now (before this returns), each next one once the one before has answered. The future
/// resolves to the answers and the event (`None` if the dispatch thread went away meanwhile);
/// dropping it does not stop the delivery.
pub(super) fn deliver<E: Event>(
    inboxes: Vec<HandlerOf<E>>,
    event: E,
) -> impl Future<Output = Option<(Report<E::Result>, E)>> + Send + 'static {
    let (done, rx) = oneshot::channel();
    let report = Report {
        answers: Vec::with_capacity(inboxes.len()),
        failures: Vec::new(),
        stopped: false,
        reached: 0,
    };
    forward(Step {
        event,
        rest: inboxes.into_iter(),
        report,
        done,
    });
    async move { rx.await.ok() }
}
