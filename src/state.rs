//! Per-worker state (Python's `initializer=`, Celery's `worker_process_init`): values a worker sets
//! up once when it starts (a database connection, a loaded model) and every task it runs reaches by
//! reference, through [`with_worker_state`].
//!
//! The states live in a thread-local map, one value per type: a thread worker's thread holds its
//! own, and so does the thread of a worker process that runs jobs. The set-ups ([`Setups`]) are
//! held by the pool (thread mode, [`PoolBuilder::worker_state`](crate::PoolBuilder::worker_state))
//! or by the binary's [`Jobs`](crate::Jobs) (process mode, [`Jobs::worker_state`](crate::Jobs::worker_state)),
//! and run on the worker's own thread before it takes its first task.

use std::any::{type_name, Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;

use crate::task::panic_message;

/// One state, borrowed for the length of a [`with_worker_state`] call (an `Rc` so that a call for
/// one type does not hold the map, and a call for another type may run inside it).
type Slot = Rc<RefCell<Box<dyn Any>>>;

thread_local! {
    static STATES: RefCell<HashMap<TypeId, Slot>> = RefCell::new(HashMap::new());
}

/// Runs `f` on this worker's state of type `S`, by mutable reference, and returns what `f`
/// returns.
///
/// In a task (a closure or a [`Job::run`](crate::Job::run)) this reaches the state its worker set
/// up when it started: [`PoolBuilder::worker_state`](crate::PoolBuilder::worker_state) in thread
/// mode, [`Jobs::worker_state`](crate::Jobs::worker_state) in process mode. Each worker has its own
/// value, set up once; a replacement worker sets up a new one.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use circuits::prelude::*;
///
/// /// Stands for a database connection: expensive to open, reused by every task.
/// struct Conn { queries: u32 }
///
/// # #[actix::main] async fn main() -> Result<(), circuits::Error> {
/// let opened = Arc::new(AtomicUsize::new(0));
/// let count = opened.clone();
/// let pool = Pool::builder()
///     .min(2)
///     .worker_state(move || {
///         count.fetch_add(1, Ordering::SeqCst);
///         Ok::<_, std::io::Error>(Conn { queries: 0 })
///     })
///     .start();
/// for _ in 0..10 {
///     let queries = pool
///         .run(Task::new(|| circuits::with_worker_state(|c: &mut Conn| { c.queries += 1; c.queries })))
///         .await?;
///     assert!(queries >= 1);
/// }
/// assert_eq!(opened.load(Ordering::SeqCst), 2); // once per worker, not once per task
/// pool.stop().await;
/// # Ok(()) }
/// ```
///
/// # Panics
///
/// When this thread has no state of type `S` (no set-up of that type was given to the worker, or
/// this is not a worker thread): a task then fails with
/// [`TaskError::Panicked`](crate::TaskError::Panicked), whose message names the type. Also on a
/// re-entrant call for the same type (from inside `f`). See [`try_with_worker_state`] for a
/// call that does not panic on a missing state.
#[track_caller]
pub fn with_worker_state<S: 'static, R>(f: impl FnOnce(&mut S) -> R) -> R {
    match try_with_worker_state(f) {
        Some(r) => r,
        None => panic!(
            "this worker has no state of type {} (set one up with PoolBuilder::worker_state in \
             thread mode, Jobs::worker_state in process mode)",
            type_name::<S>()
        ),
    }
}

/// Runs `f` on this worker's state of type `S`, as [`with_worker_state`] does; `None` (and `f` is
/// not called) when this thread has no state of that type.
///
/// ```
/// // Not a worker thread: no state here.
/// assert_eq!(circuits::try_with_worker_state(|n: &mut u32| *n), None);
/// ```
///
/// # Panics
///
/// On a re-entrant call for the same type (from inside `f`): the state is already borrowed.
#[track_caller]
pub fn try_with_worker_state<S: 'static, R>(f: impl FnOnce(&mut S) -> R) -> Option<R> {
    let slot = STATES.with(|m| m.borrow().get(&TypeId::of::<S>()).cloned())?;
    let Ok(mut state) = slot.try_borrow_mut() else {
        panic!(
            "a re-entrant call to with_worker_state for {}: the state is already borrowed by an \
             outer call on this thread",
            type_name::<S>()
        )
    };
    // Stored under its own type's id, so the downcast holds.
    (**state).downcast_mut::<S>().map(f)
}

/// Builds one state on the worker's thread, or says in words why it could not.
type Setup = Arc<dyn Fn() -> Result<Box<dyn Any>, String> + Send + Sync>;

/// The set-ups a worker runs when it starts, in the order they were given (one per type: a later
/// set-up of a type replaces an earlier one).
#[derive(Clone, Default)]
pub(crate) struct Setups(Vec<(TypeId, &'static str, Setup)>);

impl std::fmt::Debug for Setups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(_, n, _)| n))
            .finish()
    }
}

impl Setups {
    /// Adds the set-up of state type `S`.
    pub(crate) fn add<S, E, F>(&mut self, setup: F)
    where
        S: 'static,
        E: Display,
        F: Fn() -> Result<S, E> + Send + Sync + 'static,
    {
        let (id, name) = (TypeId::of::<S>(), type_name::<S>());
        self.0.retain(|(t, _, _)| *t != id);
        let setup: Setup = Arc::new(move || match setup() {
            Ok(state) => Ok(Box::new(state)),
            Err(e) => Err(format!("setting up the worker state {name} failed: {e}")),
        });
        self.0.push((id, name, setup));
    }

    /// The state types, in order.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|(_, n, _)| *n).collect()
    }

    /// Runs every set-up on this thread, in order, and keeps the states for the tasks this thread
    /// runs (dropping any it held before).
    ///
    /// # Errors
    ///
    /// The first set-up that fails or panics, in words (naming the state's type); the thread then
    /// holds no state (those already built are dropped).
    pub(crate) fn install(&self) -> Result<(), String> {
        clear();
        let mut built = HashMap::with_capacity(self.0.len());
        for (id, name, setup) in &self.0 {
            let state = catch_unwind(AssertUnwindSafe(|| setup())).unwrap_or_else(|p| {
                Err(format!(
                    "setting up the worker state {name} panicked: {}",
                    panic_message(&*p)
                ))
            })?;
            built.insert(*id, Rc::new(RefCell::new(state)));
        }
        STATES.with(|m| *m.borrow_mut() = built);
        Ok(())
    }
}

/// Drops this thread's states (a worker process does before it exits, since `exit` runs no
/// thread-local destructors).
pub(crate) fn clear() {
    let old = STATES.with(|m| std::mem::take(&mut *m.borrow_mut()));
    drop(old);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_per_type_set_up_in_order_and_replaced_on_install() {
        let mut setups = Setups::default();
        setups.add(|| Ok::<_, String>(7u32));
        setups.add(|| Ok::<_, String>(String::from("db")));
        setups.install().unwrap();
        assert_eq!(with_worker_state(|n: &mut u32| *n), 7);
        with_worker_state(|n: &mut u32| *n += 1);
        // Another type inside the first: allowed.
        let both =
            with_worker_state(|n: &mut u32| with_worker_state(|s: &mut String| format!("{s}{n}")));
        assert_eq!(both, "db8");
        setups.install().unwrap();
        assert_eq!(try_with_worker_state(|n: &mut u32| *n), Some(7));
        assert_eq!(setups.names(), vec!["u32", "alloc::string::String"]);
        clear();
        assert_eq!(try_with_worker_state(|n: &mut u32| *n), None);
    }

    #[test]
    fn a_failing_or_panicking_set_up_leaves_no_state_and_says_why() {
        let mut setups = Setups::default();
        setups.add(|| Ok::<_, String>(1u8));
        setups.add(|| Err::<u16, _>("connection refused"));
        let e = setups.install().unwrap_err();
        assert_eq!(
            e,
            "setting up the worker state u16 failed: connection refused"
        );
        assert_eq!(try_with_worker_state(|n: &mut u8| *n), None);
        let mut panics = Setups::default();
        panics.add(|| -> Result<u64, String> { panic!("no model file") });
        let e = panics.install().unwrap_err();
        assert_eq!(e, "setting up the worker state u64 panicked: no model file");
    }

    #[test]
    fn a_missing_state_or_a_re_entrant_call_panics_naming_the_type() {
        let missing = catch_unwind(|| with_worker_state(|_: &mut i64| ())).unwrap_err();
        assert!(panic_message(&*missing).contains("no state of type i64"));
        let mut setups = Setups::default();
        setups.add(|| Ok::<_, String>(1i32));
        setups.install().unwrap();
        let twice =
            catch_unwind(|| with_worker_state(|_: &mut i32| with_worker_state(|n: &mut i32| *n)))
                .unwrap_err();
        assert!(panic_message(&*twice).contains("re-entrant call to with_worker_state for i32"));
        // The outer borrow ended with the unwinding: the state is usable again.
        assert_eq!(with_worker_state(|n: &mut i32| *n), 1);
        clear();
    }
}
