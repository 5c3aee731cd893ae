//! The blocking watchdog of an async worker: when its loop has been inside one poll for the
//! pool's `stuck_after`, a future (or a blocking task) holds the thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::Shared;
use crate::task::TaskError;

/// With stuck detection, a watchdog on the bus: if the worker's loop has been inside one poll
/// for the limit, a future (or a blocking task) holds its thread: its tasks fail `TimedOut` and
/// the pool replaces the worker (its queue moves to the replacement).
pub(super) fn watch_for_blocking(shared: &Arc<Shared>) {
    let Some(hook) = shared.fin.stuck.get() else {
        return;
    };
    let (after, lost) = (hook.after, hook.lost.clone());
    let shared = Arc::downgrade(shared);
    let bus = match shared.upgrade() {
        Some(s) => s.fin.bus.clone(),
        None => return,
    };
    bus.spawn(async move {
        loop {
            tokio::time::sleep((after / 4).max(Duration::from_millis(1))).await;
            let Some(s) = shared.upgrade() else { return };
            if s.ended.load(Ordering::Acquire) {
                return;
            }
            let since = s.polling_since.load(Ordering::Acquire);
            if since == 0 {
                continue;
            }
            let began = Duration::from_nanos(since - 1);
            if s.base.elapsed().saturating_sub(began) >= after {
                s.set.fail_all(TaskError::TimedOut(after), &s.fin);
                s.running.fail(TaskError::TimedOut(after), &s.fin);
                lost();
                return;
            }
        }
    });
}

/// Marks the time the loop spends inside a poll of its futures, for the blocking watchdog.
pub(super) struct Watched<'a, F> {
    pub(super) inner: F,
    pub(super) side: Option<&'a Shared>,
}

impl<F: Future + Unpin> Future for Watched<'_, F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let side = self.side;
        if let Some(s) = side {
            let now = u64::try_from(s.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
            s.polling_since.store(now + 1, Ordering::Release);
        }
        let out = Pin::new(&mut self.inner).poll(cx);
        if let Some(s) = side {
            s.polling_since.store(0, Ordering::Release);
        }
        out
    }
}
