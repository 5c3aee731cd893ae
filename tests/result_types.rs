//! A subscriber of `TaskSuccess<T>` hears only tasks that return exactly `T`. The mismatch is made
//! visible: the first success of a pool that no subscriber of its type hears, while the pool's
//! channel has subscribers, is said in a debug-level trace naming the result type. And what else
//! the pool says through `tracing`: a span around every task it runs.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use actix::prelude::*;
use circuits::prelude::*;
use common::{bounded, Record};

/// Records every trace event's fields, and every span's name and fields, as text (a global
/// subscriber: the traces come from the bus's dispatch thread and the worker threads), for the
/// tests to await.
struct Capture(Record<String>);

/// The capture, installed once for this test binary's tests.
fn traces() -> Record<String> {
    static TRACES: OnceLock<Record<String>> = OnceLock::new();
    TRACES
        .get_or_init(|| {
            let traces = Record::new();
            tracing::subscriber::set_global_default(Capture(traces.clone())).unwrap();
            traces
        })
        .clone()
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0 += &format!("{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = Fields(format!("span {} ", span.metadata().name()));
        span.record(&mut fields);
        self.0.push(fields.0);
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0.push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Counts the `TaskSuccess<u32>` it hears.
struct U32Listener(Arc<AtomicUsize>);
impl Actor for U32Listener {
    type Context = Context<Self>;
}
impl Handler<TaskSuccess<u32>> for U32Listener {
    type Result = ();
    fn handle(&mut self, _: TaskSuccess<u32>, _: &mut Context<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[actix_rt::test]
async fn a_subscriber_of_another_result_type_hears_nothing_and_a_trace_says_why() {
    let traces = traces();

    let pool = Pool::builder().min(1).channel("typed").start();
    let heard = Arc::new(AtomicUsize::new(0));
    let listener = U32Listener(heard.clone()).start();
    pool.bus()
        .subscribe("typed", listener.recipient::<TaskSuccess<u32>>())
        .unwrap();
    // The task returns u64: the u32 subscriber is of another type.
    assert_eq!(bounded(pool.run(Task::new(|| 7u64))).await, Ok(7));
    // The capture wakes the test when the trace arrives.
    let said = traces
        .wait_for(|t| t.iter().any(|t| t.contains("no subscriber")))
        .await
        .into_iter()
        .find(|t| t.contains("no subscriber"))
        .expect("a debug trace names the unheard result type");
    assert!(said.contains("u64"), "{said}");
    assert!(said.contains("typed"), "{said}");
    assert_eq!(
        heard.load(Ordering::SeqCst),
        0,
        "the u32 subscriber heard nothing"
    );
    pool.stop().await;
}

#[actix_rt::test]
async fn every_task_runs_in_a_trace_span_naming_the_task_and_its_worker() {
    let traces = traces();
    let pool = Pool::builder().min(1).channel("spanned").start();
    let worker = pool.workers()[0].to_string();
    // A pool's first task has id 1 (ids count up from 1 in the order tasks are accepted).
    assert_eq!(bounded(pool.run(Task::new(|| 1u8))).await, Ok(1));
    let expected = format!("span circuits.task id=1 worker={worker} ");
    let spans = traces.wait_for(|t| t.contains(&expected)).await;
    assert!(spans.contains(&expected), "{spans:?}");
    pool.stop().await;
}
