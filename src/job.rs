//! Jobs: tasks that can cross a process boundary.
//!
//! A [`Job`] is a serde type with a stable [`NAME`](Job::NAME) and a `run`; its output is serde too.
//! The same job type runs in thread pools (called directly) and process pools (encoded, sent to a
//! child process of the same binary, run there by name, and the output sent back). A binary that
//! uses process pools lists its jobs in a [`Jobs`] set and calls [`init`](crate::init) first thing
//! in `main`.
//!
//! ```
//! use circuits::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Square(u64);
//!
//! impl Job for Square {
//!     const NAME: &'static str = "square";
//!     type Output = u64;
//!     fn run(self) -> u64 { self.0 * self.0 }
//! }
//!
//! # #[actix::main] async fn main() -> Result<(), circuits::Error> {
//! let pool = Pool::builder().min(1).start(); // thread mode runs jobs too
//! assert_eq!(pool.run(Task::job(Square(12))).await?, 144);
//! pool.stop().await;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::state::Setups;
#[cfg(feature = "nats")]
use crate::task::JobContext;
use crate::task::{panic_message, Inputs, JobCall, JobPayload, Task, TaskError, TaskOutput};
use crate::wire::WireError;

/// A unit of work that can run in another process: serde in, serde out, found by name.
///
/// Build its task with [`Task::job`]. A thread pool calls [`run`](Job::run) directly; a process
/// pool encodes the job, runs it by [`NAME`](Job::NAME) in a worker process of the same binary,
/// and decodes the output, so the binary lists the job in the [`Jobs`] it passes to
/// [`init`](crate::init) (see [`PoolBuilder::process`](crate::PoolBuilder::process)).
///
/// ```
/// use circuits::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct WordCount {
///     text: String,
/// }
///
/// impl Job for WordCount {
///     const NAME: &'static str = "word-count";
///     type Output = usize;
///     fn run(self) -> usize {
///         self.text.split_whitespace().count()
///     }
/// }
///
/// # #[actix::main] async fn main() -> Result<(), RunError> {
/// let pool = Pool::builder().min(1).start();
/// let n = pool.run(Task::job(WordCount { text: "to be or not".into() })).await?;
/// assert_eq!(n, 4);
/// pool.stop().await;
/// # Ok(()) }
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + 'static {
    /// The job's stable name on the wire; unique among the jobs of a binary.
    const NAME: &'static str;
    /// What the job returns.
    type Output: Serialize + DeserializeOwned + Clone + Send + 'static;
    /// Does the work.
    fn run(self) -> Self::Output;
}

fn decode_output<J: Job>(bytes: &[u8]) -> Result<J::Output, TaskError> {
    postcard::from_bytes(bytes).map_err(|e| {
        TaskError::Wire(WireError::Decode(format!(
            "the output of job {:?}: {e}",
            J::NAME
        )))
    })
}

impl<R: TaskOutput> Task<R> {
    /// A task running the job `job`, in a thread pool or a process pool alike.
    ///
    /// Besides what any task can fail with, in a process pool the task fails with
    /// [`TaskError::Wire`] when the job's input does not encode, its frame is over
    /// [`ProcessConfig::max_frame`](crate::ProcessConfig::max_frame) or its output does not decode,
    /// and with [`TaskError::UnknownJob`] when the worker processes were not given the job (see
    /// [`Jobs`]).
    pub fn job<J>(job: J) -> Task<R>
    where
        J: Job<Output = R>,
        R: Serialize + DeserializeOwned,
    {
        let inputs = encode_input(&job).map(Inputs::One);
        let mut task = Task::from_closure(Box::new(move || Ok(job.run())));
        task.job = Some(JobCall {
            payload: JobPayload {
                name: J::NAME,
                inputs,
                context: None,
            },
            decode: decode_output::<J>,
            rerun: rerun_one::<J>,
        });
        task
    }
}

/// A job's run again from its encoded input (a retry in thread mode).
fn rerun_one<J: Job>(inputs: &Inputs) -> Result<J::Output, TaskError> {
    match inputs {
        Inputs::One(bytes) => decode_and_run::<J>(bytes),
        Inputs::Batch(_) => Err(TaskError::Wire(WireError::Unexpected(
            "a chunk's inputs for a single job".into(),
        ))),
    }
}

/// A chunk's run again from its encoded inputs (a retry in thread mode).
fn rerun_batch<J: Job>(inputs: &Inputs) -> Result<Outcomes<J::Output>, TaskError> {
    match inputs {
        Inputs::Batch(all) => Ok(all.iter().map(|b| decode_and_run::<J>(b)).collect()),
        Inputs::One(_) => Err(TaskError::Wire(WireError::Unexpected(
            "a single job's input for a chunk".into(),
        ))),
    }
}

fn encode_input<J: Job>(job: &J) -> Result<Vec<u8>, String> {
    // Room for the note that frees the buffer where its task's value is read (`Spent::bytes`),
    // which the allocator's smallest block has anyway.
    postcard::to_extend(job, Vec::with_capacity(crate::spent::SMALLEST_BYTES))
        .map_err(|e| format!("the input of job {:?} does not encode: {e}", J::NAME))
}

/// The outcome of each job of a chunk, in order.
pub(crate) type Outcomes<O> = Vec<Result<O, TaskError>>;

/// A chunk of jobs run as one task: one frame each way in process mode, one queue entry in thread
/// mode. A panic fails only its own job; a crash of the child fails the whole chunk.
///
/// `inputs` are the jobs' encoded inputs, in order; `jobs` the jobs themselves where they run in
/// this process (a thread pool), `None` where only their inputs travel (a process or remote pool:
/// see `Kind::runs_closures`).
pub(crate) fn batch_task<J: Job>(
    jobs: Option<Vec<J>>,
    inputs: Result<crate::task::Batch, String>,
) -> Task<Outcomes<J::Output>> {
    let inputs = inputs.map(|b| Inputs::Batch(Box::new(b)));
    let mut task = Task::from_closure(Box::new(move || {
        let Some(jobs) = jobs else {
            return Err(TaskError::Wire(WireError::Unexpected(
                "a chunk kept only encoded runs only where its inputs travel".into(),
            )));
        };
        Ok(jobs
            .into_iter()
            .map(|j| {
                catch_unwind(AssertUnwindSafe(|| j.run()))
                    .map_err(|p| TaskError::Panicked(panic_message(&*p)))
            })
            .collect())
    }));
    task.job = Some(JobCall {
        payload: JobPayload {
            name: J::NAME,
            inputs,
            context: None,
        },
        decode: decode_batch::<J>,
        rerun: rerun_batch::<J>,
    });
    task
}

/// A task running the job called `name` on inputs encoded elsewhere (a remote submitter's), whose
/// result is the job's encoded answer as a worker process gives it (for a chunk, every job's):
/// what a remote host pushes to its local process pool. Only a process pool runs it.
#[cfg(feature = "nats")]
pub(crate) fn forwarded(
    name: &'static str,
    inputs: Inputs,
    context: JobContext,
) -> Task<serde_bytes::ByteBuf> {
    fn not_here() -> TaskError {
        TaskError::Wire(WireError::Unexpected(
            "a forwarded job runs only in a worker process".into(),
        ))
    }
    let mut task = Task::from_closure(Box::new(|| Err(not_here())));
    task.job = Some(JobCall {
        payload: JobPayload {
            name,
            inputs: Ok(inputs),
            context: Some(Box::new(context)),
        },
        decode: |bytes| Ok(serde_bytes::ByteBuf::from(bytes.to_vec())),
        rerun: |_| Err(not_here()),
    });
    task
}

fn decode_batch<J: Job>(bytes: &[u8]) -> Result<Outcomes<J::Output>, TaskError> {
    let answers: crate::wire::BatchAnswerViews<'_> = postcard::from_bytes(bytes)
        .map_err(|e| TaskError::Wire(WireError::Decode(format!("a chunk's answers: {e}"))))?;
    Ok(answers
        .into_iter()
        .map(|a| {
            a.map_err(TaskError::from)
                .and_then(|bytes| decode_output::<J>(bytes))
        })
        .collect())
}

/// How a worker process runs one named job: decode, run (catching panics), encode the output
/// into the given buffer (cleared first: one buffer serves job after job).
pub(crate) type Runner = fn(&[u8], &mut Vec<u8>) -> Result<(), TaskError>;

/// Decodes a job from its input and runs it, catching a panic.
fn decode_and_run<J: Job>(input: &[u8]) -> Result<J::Output, TaskError> {
    let job: J = postcard::from_bytes(input).map_err(|e| {
        TaskError::Wire(WireError::Decode(format!(
            "the input of job {:?}: {e}",
            J::NAME
        )))
    })?;
    catch_unwind(AssertUnwindSafe(|| job.run()))
        .map_err(|p| TaskError::Panicked(panic_message(&*p)))
}

fn run_encoded<J: Job>(input: &[u8], out: &mut Vec<u8>) -> Result<(), TaskError> {
    out.clear();
    let output = decode_and_run::<J>(input)?;
    crate::wire::encode_value_into(&output, out)
        .map(drop)
        .map_err(|e| {
            TaskError::Wire(WireError::Encode(format!(
                "the output of job {:?}: {e}",
                J::NAME
            )))
        })
}

/// The set of jobs a binary can run in its worker processes.
///
/// ```
/// use circuits::Jobs;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Square(u64);
/// # impl circuits::Job for Square {
/// #     const NAME: &'static str = "square"; type Output = u64;
/// #     fn run(self) -> u64 { self.0 * self.0 }
/// # }
/// let jobs = Jobs::new().register::<Square>();
/// assert_eq!(jobs.names(), vec!["square"]);
/// ```
#[derive(Clone, Default)]
pub struct Jobs {
    runners: HashMap<&'static str, Runner>,
    /// What each worker process sets up before its handshake.
    setups: Setups,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("names", &self.names())
            .field("worker_states", &self.setups.names())
            .finish()
    }
}

impl Jobs {
    /// An empty set.
    pub fn new() -> Self {
        Jobs::default()
    }

    /// Adds job type `J` (a later job with the same name replaces an earlier one).
    pub fn register<J: Job>(mut self) -> Self {
        self.runners.insert(J::NAME, run_encoded::<J>);
        self
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut n: Vec<_> = self.runners.keys().copied().collect();
        n.sort_unstable();
        n
    }

    /// Adds a per-worker state of type `S`, set up by `setup` once in each worker process, before it
    /// takes its first job (Python's `ProcessPoolExecutor(initializer=...)`, Celery's
    /// `worker_process_init`): open a database connection or load a model once per process, not
    /// once per job. Jobs reach it with [`with_worker_state`](crate::with_worker_state). Several
    /// types may be set up, in the order given; a later set-up of the same type replaces an earlier
    /// one. A replacement child (after a crash, a timeout or recycling) sets up its own.
    ///
    /// Only worker processes run it (the set-ups of a thread pool are
    /// [`PoolBuilder::worker_state`](crate::PoolBuilder::worker_state)). It runs on the thread
    /// that runs the jobs, so `S` need not be `Send`, and within the child's handshake, so a
    /// set-up longer than [`ProcessConfig::handshake_timeout`](crate::ProcessConfig::handshake_timeout)
    /// (10 s by default) is a failed start: raise that limit for slow set-ups.
    ///
    /// # Errors
    ///
    /// A set-up that returns an error (or panics) fails the child's start: the parent starts it
    /// again under the restart policy ([`ProcessConfig::restart_backoff`](crate::ProcessConfig::restart_backoff)),
    /// and after [`max_start_failures`](crate::ProcessConfig::max_start_failures) in a row the
    /// tasks waiting on that worker fail with
    /// [`TaskError::WorkerStartFailed`] whose `stage` is
    /// [`StartStage::WorkerState`](crate::StartStage::WorkerState) and whose `reason` carries the
    /// error's message.
    ///
    /// ```no_run
    /// use circuits::prelude::*;
    /// use serde::{Deserialize, Serialize};
    ///
    /// /// Stands for a model: slow to load, then used by every job of the process.
    /// struct Model { weights: Vec<f32> }
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Score(usize);
    /// impl Job for Score {
    ///     const NAME: &'static str = "score";
    ///     type Output = f32;
    ///     fn run(self) -> f32 {
    ///         circuits::with_worker_state(|m: &mut Model| m.weights[self.0])
    ///     }
    /// }
    ///
    /// fn main() {
    ///     circuits::init(
    ///         Jobs::new()
    ///             .register::<Score>()
    ///             .worker_state(|| Ok::<_, std::io::Error>(Model { weights: vec![0.5; 8] })),
    ///     );
    ///     actix::System::new().block_on(async {
    ///         let pool = Pool::builder().min(2).process().start();
    ///         assert_eq!(pool.run(Task::job(Score(3))).await, Ok(0.5));
    ///         pool.stop().await;
    ///     });
    /// }
    /// ```
    pub fn worker_state<S, E, F>(mut self, setup: F) -> Self
    where
        S: 'static,
        E: std::fmt::Display,
        F: Fn() -> Result<S, E> + Send + Sync + 'static,
    {
        self.setups.add(setup);
        self
    }

    /// The worker-state set-ups a worker process runs before its handshake.
    pub(crate) fn setups(&self) -> &Setups {
        &self.setups
    }

    /// The registered name equal to `name` (a name that came over the wire), if there is one.
    #[cfg(feature = "nats")]
    pub(crate) fn known(&self, name: &str) -> Option<&'static str> {
        self.runners.get_key_value(name).map(|(k, _)| *k)
    }

    /// Runs the job called `name` on its encoded input and encodes its output into `out`.
    pub(crate) fn run(&self, name: &str, input: &[u8], out: &mut Vec<u8>) -> Result<(), TaskError> {
        self.runner(name)?(input, out)
    }

    /// The job called `name`, looked up once for every input of a chunk.
    pub(crate) fn runner(&self, name: &str) -> Result<Runner, TaskError> {
        self.runners
            .get(name)
            .copied()
            .ok_or_else(|| TaskError::UnknownJob(name.to_string()))
    }
}
