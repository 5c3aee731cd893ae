//! The work stream as the link's tasks see it: not made yet, or made.

use async_nats::jetstream;

/// The work stream, once the link has made it: publishing waits for it (a job published before
/// the stream exists is refused), and taking a job out of the stream needs it.
#[derive(Default)]
pub(super) struct Ready {
    stream: tokio::sync::OnceCell<jetstream::stream::Stream>,
    made: tokio::sync::Notify,
    /// Why the streams could not be made yet, for the tasks that give up waiting.
    last_error: std::cell::RefCell<String>,
}

impl Ready {
    /// Keeps the made work stream and wakes the tasks waiting for it.
    pub(super) fn set(&self, stream: jetstream::stream::Stream) {
        let _ = self.stream.set(stream);
        self.made.notify_waiters();
    }

    /// Records why the work stream could not be made (yet).
    pub(super) fn failed(&self, why: String) {
        self.last_error.replace(why);
    }

    /// Why the work stream is not made yet.
    pub(super) fn last_error(&self) -> String {
        self.last_error.borrow().clone()
    }

    /// Takes the job at `seq` out of the work stream (a work queue keeps a job no host
    /// acknowledged). Nothing to do before the stream is made: no job was stored then.
    pub(super) async fn forget(&self, seq: u64) {
        if let Some(stream) = self.stream.get() {
            let _ = stream.delete_message(seq).await;
        }
    }

    /// Waits for the work stream to be made.
    pub(super) async fn wait(&self) -> &jetstream::stream::Stream {
        loop {
            // Registered before the look: a stream made in between still wakes this.
            let made = self.made.notified();
            if let Some(stream) = self.stream.get() {
                return stream;
            }
            made.await;
        }
    }
}
