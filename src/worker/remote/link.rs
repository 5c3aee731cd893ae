//! The submitting side's connection: one per remote pool, on a thread of its own with a
//! current-thread Tokio runtime. It publishes each task as a job on the work stream (retrying
//! with the same message id until the publish deadline), reads the pool's answers from the
//! results stream, and fails a task whose deliveries ran out (the server's advisory) or whose
//! timeout passed. "First outcome wins": a task leaves the pending table once, and a late or
//! duplicate answer finds nothing there.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::answers::{
    exhausted_consumer, fast_answers, read_results, results_consumer, watch_deliveries,
};
use super::broker::{self, Broker};
use super::config::NatsConfig;
use super::pending::{Entry, Owner, Shared};
use super::publish::publish;
use super::ready::Ready;
use crate::task::{BrokerError, ErasedTask, TaskError};

/// How long a closing link tries to delete the pool's consumers.
const CLEANUP: Duration = Duration::from_secs(2);

/// What the link's thread works on.
enum Cmd {
    Publish(u64),
    /// A task ended here (cancelled, timed out): take its job out of the stream if it is there.
    Forget(u64),
    Close,
}

/// A remote pool's connection (see the module's docs). Dropped with the pool's last worker and
/// the pool: its thread then deletes the pool's results consumer and ends.
pub(crate) struct Link {
    shared: Arc<Shared>,
    cmds: mpsc::UnboundedSender<Cmd>,
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.cmds.send(Cmd::Close);
    }
}

impl Link {
    /// Starts the link's thread for the pool with id `pool`.
    pub(crate) fn start(pool: String, cfg: NatsConfig) -> std::io::Result<Arc<Link>> {
        let shared = Arc::new(Shared {
            pool,
            cfg,
            pending: Mutex::default(),
            answered: tokio::sync::watch::channel(()).0,
        });
        let (cmds, rx) = mpsc::unbounded_channel();
        let side = shared.clone();
        std::thread::Builder::new()
            .name("circuits-nats".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime builds");
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, serve(side, rx));
            })?;
        Ok(Arc::new(Link { shared, cmds }))
    }

    /// Publishes `task` for `owner`, or hands it back when the link is closed.
    pub(crate) fn submit(
        &self,
        task: Box<dyn ErasedTask>,
        owner: &Arc<Owner>,
    ) -> Result<(), Box<dyn ErasedTask>> {
        if task.settled() {
            // Cancelled while queued: nothing to run, and it was counted on the load.
            owner.load.fetch_sub(1, Ordering::Relaxed);
            return Ok(());
        }
        let id = task.id().0;
        let cancel = task.cancel_handle().cloned();
        let attempt = task.attempt();
        owner.running.fetch_add(1, Ordering::AcqRel);
        self.shared.lock().by_id.insert(
            id,
            Entry {
                task,
                owner: owner.clone(),
                attempt,
                seq: None,
            },
        );
        if self.cmds.send(Cmd::Publish(id)).is_err() {
            let entry = self.shared.take(id).expect("just inserted");
            entry.owner.running.fetch_sub(1, Ordering::AcqRel);
            return Err(entry.task);
        }
        if let Some(cancel) = cancel {
            // The cancel settled the task already; this ends its run: out of the table, and
            // its job out of the stream if no host took it yet.
            let (shared, cmds) = (Arc::downgrade(&self.shared), self.cmds.clone());
            cancel.cell().on_stop(Box::new(move || {
                if let Some(entry) = shared.upgrade().and_then(|s| s.take(id)) {
                    let seq = entry.seq;
                    Shared::fail(entry, TaskError::Cancelled);
                    if let Some(seq) = seq {
                        let _ = cmds.send(Cmd::Forget(seq));
                    }
                }
            }));
        }
        Ok(())
    }

    /// An abort: every task of `owner` fails `Cancelled` now, and their jobs leave the stream.
    pub(crate) fn abort(&self, owner: &Arc<Owner>) {
        let taken: Vec<Entry> = {
            let mut p = self.shared.lock();
            let ids: Vec<u64> = p
                .by_id
                .iter()
                .filter(|(_, e)| Arc::ptr_eq(&e.owner, owner))
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter().filter_map(|id| p.remove(id)).collect()
        };
        for entry in taken {
            if let Some(seq) = entry.seq {
                let _ = self.cmds.send(Cmd::Forget(seq));
            }
            let Entry { task, owner, .. } = entry;
            owner.ended();
            task.fail_final(TaskError::Cancelled, &owner.fin);
        }
    }
}

/// The link's thread: connects, makes the streams, then publishes, reads answers and
/// advisories until the link is closed.
async fn serve(shared: Arc<Shared>, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
    let broker = match broker::connect(&shared.cfg).await {
        Ok(b) => Rc::new(b),
        Err(e) => {
            tracing::error!("circuits remote pool: {e}");
            fail_everything(&shared, &mut cmds, e).await;
            return;
        }
    };
    let ready = Rc::new(Ready::default());
    if shared.cfg.fast_answers {
        // Subscribed before the first job goes out: an answer nobody listens for is lost.
        let subject = shared.cfg.answers_subject(&shared.pool);
        match broker.client.subscribe(subject).await {
            Ok(answers) => {
                tokio::task::spawn_local(fast_answers(shared.clone(), answers));
            }
            Err(e) => {
                tracing::error!("circuits remote pool: the answers subject: {e}");
                fail_everything(&shared, &mut cmds, e.to_string()).await;
                return;
            }
        }
    }
    tokio::task::spawn_local(setup(shared.clone(), broker.clone(), ready.clone()));
    while let Some(cmd) = cmds.recv().await {
        match cmd {
            Cmd::Publish(id) => {
                let (shared, broker, ready) = (shared.clone(), broker.clone(), ready.clone());
                tokio::task::spawn_local(publish(shared, broker, ready, id));
            }
            Cmd::Forget(seq) => {
                let ready = ready.clone();
                tokio::task::spawn_local(async move { ready.forget(seq).await });
            }
            Cmd::Close => break,
        }
    }
    // The pool is gone: its consumers go too, unless the server is away (the thread would wait
    // for it, its answers and advisories still read meanwhile); then they go by themselves
    // after their inactivity threshold.
    let (js, cfg, pool) = (&broker.js, &shared.cfg, &shared.pool);
    let delete = |stream: String, consumer: String| async move {
        if let Ok(stream) = js.get_stream(stream).await {
            let _ = stream.delete_consumer(&consumer).await;
        }
    };
    let _ = tokio::time::timeout(
        CLEANUP,
        futures::future::join(
            delete(cfg.results_stream(), results_consumer(pool)),
            delete(cfg.exhausted_stream(), exhausted_consumer(pool)),
        ),
    )
    .await;
}

/// Without a connection nothing can run: every task fails as it comes, until the link closes.
async fn fail_everything(shared: &Shared, cmds: &mut mpsc::UnboundedReceiver<Cmd>, why: String) {
    while let Some(cmd) = cmds.recv().await {
        match cmd {
            Cmd::Publish(id) => {
                if let Some(entry) = shared.take(id) {
                    let error = BrokerError::Unreachable {
                        deadline: Duration::ZERO,
                        last: why.clone(),
                    };
                    Shared::fail(entry, TaskError::Broker(error));
                }
            }
            Cmd::Forget(_) => {}
            Cmd::Close => return,
        }
    }
}

/// Makes the streams (retrying while the server is away), then reads the pool's answers and its
/// exhausted jobs. `ready` holds the work stream once it exists.
async fn setup(shared: Arc<Shared>, broker: Rc<Broker>, ready: Rc<Ready>) {
    let cfg = &shared.cfg;
    let mut wait = Duration::from_millis(50);
    let (jobs, results, exhausted) = loop {
        let made = async {
            Ok::<_, String>((
                broker.jobs_stream(cfg).await?,
                broker.results_stream(cfg).await?,
                broker.exhausted_stream(cfg).await?,
            ))
        };
        match made.await {
            Ok(streams) => break streams,
            Err(e) => {
                tracing::warn!("circuits remote pool: {e}; trying again in {wait:?}");
                ready.failed(e);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    };
    // The hosts' consumer exists before any host starts, so the advisories name it.
    let _ = jobs
        .get_or_create_consumer(&cfg.hosts_consumer(), broker::hosts_consumer(cfg))
        .await;
    // Made before the first job goes out: every advisory of this pool's jobs comes later.
    ready.set(jobs);
    if cfg.fast_answers {
        // Answers come as plain messages (read by `fast_answers`), none kept to wait for.
        tokio::task::spawn_local(watch_deliveries(shared, ready, exhausted, None));
        return;
    }
    let answers = Some(results.clone());
    tokio::task::spawn_local(watch_deliveries(shared.clone(), ready, exhausted, answers));
    read_results(shared, results).await;
}
