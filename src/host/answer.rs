//! The host's answerer: one task that stores the jobs' answers and acknowledges the jobs, so that a
//! job's own task ends as soon as its outcome is known.
//!
//! A job's task used to publish its answer, wait for the server to store it, and acknowledge the
//! job itself, and its progress acknowledgements too. Those futures (async-nats's publish and
//! acknowledgement futures are half a kilobyte to a kilobyte each) made every job's task 4.3 KB,
//! which tokio allocated (past glibc's per-thread cache) and copied whole at its spawn and at its
//! end. In a profile of a busy host (single jobs, issue #13's S10), `memcpy` and `malloc` took a
//! third of its main thread, the tasks' copies the largest part of the `memcpy`. Now a job's task
//! holds its (boxed) message and its local work, 0.9 KB, and hands the rest here: one task, whose
//! futures exist once, not once per job. Measured against the host's submitter in the same runs
//! (4 interleaved pairs), the host's CPU per job fell about 5%; a host holding its default 512
//! jobs keeps 0.5 MB of tasks instead of 2.2 MB.
//!
//! Nothing changes in what is sent when: an answer is stored before its job is acknowledged (the
//! same message id on every try, tried until the publish deadline); a job keeps its slot on the
//! host until its acknowledgement is sent (its [`Slot`] travels with its reply); replies to
//! different jobs may be sent in any order, as before.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, Message};
use async_nats::Subject;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::pace::Slot;
use crate::worker::remote::broker::Broker;

/// Where a job's replies go: the host's answerer.
/// Where a job's replies go: the host's answerer. (Boxed: a channel of 560-byte replies grows
/// in blocks of 18 KB, past glibc's per-thread cache.)
pub(super) struct Replies(mpsc::UnboundedSender<Box<Reply>>);

/// What the answerer does for a job.
enum Reply {
    /// Stores `bytes` on `subject` under the message id `id`, then acknowledges the job.
    Stored {
        job: Job,
        subject: String,
        id: String,
        bytes: Bytes,
    },
    /// Sends `bytes` on `subject` once, not stored (the pool's at-most-once answers), then
    /// acknowledges the job.
    Fast {
        job: Job,
        subject: String,
        bytes: Bytes,
    },
    /// Acknowledges the job with `kind`: a job handed back (`Nak`) or taken out (`Term`).
    Ack { job: Job, kind: AckKind },
    /// Tells the server that the job whose acknowledgement goes to this subject is alive.
    Progress(Subject),
}

/// A job the host holds: its message, and its slot, given back once the job is acknowledged (or
/// given up on).
pub(super) struct Job {
    message: Box<Message>,
    /// Held for its drop: the slot goes back when the job is done with.
    _slot: Slot,
}

impl Job {
    pub(super) fn new(message: Box<Message>, slot: Slot) -> Job {
        Job {
            message,
            _slot: slot,
        }
    }
}

impl Replies {
    /// Starts the answerer on this thread's runtime. `deadline`: how long an answer is tried
    /// before the job is left to the server's ack wait.
    pub(super) fn start(broker: &Broker, deadline: Duration) -> Replies {
        let (tx, rx) = mpsc::unbounded_channel();
        let answerer = Answerer {
            client: broker.client.clone(),
            js: broker.js.clone(),
            deadline,
        };
        actix::spawn(answerer.run(rx));
        Replies(tx)
    }

    /// Stores `bytes` (the job's answer) on `subject` with the message id `id`, then acknowledges
    /// the job.
    pub(super) fn stored(&self, job: Job, subject: String, id: String, bytes: Bytes) {
        self.send(Reply::Stored {
            job,
            subject,
            id,
            bytes,
        });
    }

    /// Sends `bytes` once on `subject`, then acknowledges the job.
    pub(super) fn fast(&self, job: Job, subject: String, bytes: Bytes) {
        self.send(Reply::Fast {
            job,
            subject,
            bytes,
        });
    }

    /// Acknowledges the job with `kind` (a `Nak` hands it back, a `Term` takes it out).
    pub(super) fn ack(&self, job: Job, kind: AckKind) {
        self.send(Reply::Ack { job, kind });
    }

    /// Tells the server that the job of `message` is alive (its ack wait starts again).
    pub(super) fn progress(&self, message: &Message) {
        if let Some(reply) = &message.reply {
            self.send(Reply::Progress(reply.clone()));
        }
    }

    fn send(&self, reply: Reply) {
        // The answerer runs as long as the host's runtime does; a reply sent after it is gone
        // (the host stopping) is one the server gets from its ack wait instead.
        let _ = self.0.send(Box::new(reply));
    }
}

/// The answerer's own state: the connection, and the publish deadline.
struct Answerer {
    client: async_nats::Client,
    js: jetstream::Context,
    deadline: Duration,
}

/// An answer on its way to being stored.
struct Storing {
    job: Job,
    subject: String,
    id: String,
    bytes: Bytes,
    /// When the first try began (the deadline counts from there).
    started: Instant,
    /// How long to wait before the next try.
    wait: Duration,
}

/// What an answer waiting in the answerer became.
enum Step {
    /// The server's confirmation (or the error instead) of the answer's store.
    Confirmed(Result<(), String>, Storing),
    /// A failed try's wait is over: try again.
    Again(Storing),
}

type Waiting = FuturesUnordered<Pin<Box<dyn Future<Output = Step>>>>;

impl Answerer {
    async fn run(self, mut replies: mpsc::UnboundedReceiver<Box<Reply>>) {
        let mut waiting = Waiting::new();
        let mut open = true;
        while open || !waiting.is_empty() {
            tokio::select! {
                Some(step) = waiting.next(), if !waiting.is_empty() => match step {
                    Step::Confirmed(Ok(()), storing) => {
                        // A lost ack only means a second delivery, whose answer the pool absorbs.
                        let _ = storing.job.message.ack().await;
                    }
                    Step::Confirmed(Err(e), storing) => self.again(storing, e, &mut waiting),
                    Step::Again(storing) => self.store(storing, &mut waiting).await,
                },
                reply = replies.recv(), if open => match reply {
                    Some(reply) => self.start(*reply, &mut waiting).await,
                    None => open = false,
                },
            }
        }
    }

    async fn start(&self, reply: Reply, waiting: &mut Waiting) {
        match reply {
            Reply::Stored {
                job,
                subject,
                id,
                bytes,
            } => {
                let storing = Storing {
                    job,
                    subject,
                    id,
                    bytes,
                    started: Instant::now(),
                    wait: Duration::from_millis(20),
                };
                self.store(storing, waiting).await;
            }
            Reply::Fast {
                job,
                subject,
                bytes,
            } => {
                // At most once, by the pool's choice: sent (in order, before the ack), not stored.
                let _ = self.client.publish(subject, bytes).await;
                let _ = job.message.ack().await;
            }
            Reply::Ack { job, kind } => {
                let _ = job.message.ack_with(kind).await;
            }
            Reply::Progress(subject) => {
                let _ = self.client.publish(subject, AckKind::Progress.into()).await;
            }
        }
    }

    /// Publishes the answer (the same message id each try, so the server stores it once) and
    /// waits for the server's confirmation among the other answers.
    async fn store(&self, storing: Storing, waiting: &mut Waiting) {
        let message = jetstream::message::PublishMessage::build()
            .payload(storing.bytes.clone())
            .message_id(&storing.id);
        match self.js.send_publish(storing.subject.clone(), message).await {
            Ok(confirmation) => waiting.push(Box::pin(async move {
                let confirmed = confirmation.await.map(|_| ()).map_err(|e| e.to_string());
                Step::Confirmed(confirmed, storing)
            })),
            Err(e) => self.again(storing, e.to_string(), waiting),
        }
    }

    /// A try failed with `error`: try again after a wait (doubling, up to a second), or past the
    /// deadline give the job up. Not acknowledged, the server gives it to a host again after its
    /// ack wait (and a host that is stopping does not hang on a server that is gone).
    fn again(&self, mut storing: Storing, error: String, waiting: &mut Waiting) {
        if storing.started.elapsed() >= self.deadline {
            tracing::warn!("worker host: an answer not stored within the deadline ({error})");
            return;
        }
        tracing::debug!("worker host: publishing an answer: {error}; again");
        let wait = storing.wait;
        storing.wait = (wait * 2).min(Duration::from_secs(1));
        waiting.push(Box::pin(async move {
            tokio::time::sleep(wait).await;
            Step::Again(storing)
        }));
    }
}
