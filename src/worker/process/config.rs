//! [`ProcessConfig`]: the settings of process-mode workers.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::wire;
use crate::worker::restart::Restart;

/// Settings for process-mode workers.
///
/// ```
/// use std::time::Duration;
/// use circuits::ProcessConfig;
///
/// let cfg = ProcessConfig::default()
///     .max_frame(1 << 20)
///     .pipeline(16)
///     .kill_grace(Duration::from_millis(50));
/// assert_eq!(cfg.max_frame_bytes(), 1 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub(crate) max_frame: usize,
    pub(crate) pipeline: usize,
    pub(crate) kill_grace: Duration,
    pub(crate) handshake_timeout: Duration,
    /// The back-off and the limit of failed starts (shared with thread workers).
    pub(crate) restart: Restart,
    /// Recycle a child after this many jobs (before jitter).
    pub(crate) recycle_jobs: Option<u64>,
    /// Up to this many jobs fewer, drawn per child, so that children do not recycle together.
    pub(crate) recycle_jitter: u64,
    /// Recycle a child whose resident memory is above this many bytes.
    pub(crate) recycle_memory: Option<u64>,
    /// The CPU time each job may use (set in the child before each job).
    pub(crate) cpu_per_job: Option<Duration>,
    /// Kill a child whose resident memory is above this many bytes while it runs a job.
    pub(crate) max_resident: Option<u64>,
    /// How often the resident memory of a child running a job is read.
    pub(crate) memory_poll: Duration,
    /// The child's soft limit on open files.
    pub(crate) open_files: Option<u64>,
    /// Bytes of each shared-memory ring (jobs, answers); 0: frames go through the pipes.
    pub(crate) shared_memory: usize,
    /// How long a thread awaiting a job sent to an idle child may read the answer itself.
    pub(crate) answer_spin: Duration,
    /// The program a child runs; `None`: this binary.
    pub(crate) program: Option<PathBuf>,
    /// The arguments a child gets.
    pub(crate) program_args: Vec<OsString>,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            max_frame: wire::DEFAULT_MAX_FRAME,
            pipeline: 32,
            kill_grace: Duration::from_millis(100),
            handshake_timeout: Duration::from_secs(10),
            restart: Restart::default(),
            recycle_jobs: None,
            recycle_jitter: 0,
            recycle_memory: None,
            cpu_per_job: None,
            max_resident: None,
            memory_poll: Duration::from_millis(10),
            open_files: None,
            shared_memory: 1 << 20,
            answer_spin: Duration::from_micros(30),
            program: None,
            program_args: Vec::new(),
        }
    }
}

impl ProcessConfig {
    /// The program each worker process runs (default: this binary, as
    /// [`std::env::current_exe`] names it). It must be a binary of your own whose `main` calls
    /// [`circuits::init`](crate::init) first, with every job this pool sends registered: a
    /// dedicated worker binary, say, smaller than the application or built with other features.
    /// A bare name is looked up in `PATH`, a relative path from the working directory, at each
    /// start of a child.
    /// A program that cannot be started fails the worker's starts at the `Spawn` stage, and one
    /// that does not call `init` at the `Handshake` stage, each with a reason that names it
    /// ([`TaskError::WorkerStartFailed`](crate::TaskError::WorkerStartFailed)).
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// The arguments each worker process gets (default: none). With the standard test harness,
    /// which owns `main`, they select the one test that calls `circuits::init`, so that the
    /// worker processes of a `#[test]` are the test binary itself (the guide's section 6 has the
    /// pattern):
    ///
    /// ```
    /// use circuits::ProcessConfig;
    ///
    /// let args = ["worker_process", "--exact", "--nocapture"];
    /// let cfg = ProcessConfig::default().program_args(args);
    /// assert_eq!(cfg.program_arguments().len(), 3);
    /// ```
    pub fn program_args<A: Into<OsString>>(mut self, args: impl IntoIterator<Item = A>) -> Self {
        self.program_args = args.into_iter().map(Into::into).collect();
        self
    }

    /// The program set with [`ProcessConfig::program`], if any.
    pub fn program_path(&self) -> Option<&Path> {
        self.program.as_deref()
    }

    /// The arguments set with [`ProcessConfig::program_args`].
    pub fn program_arguments(&self) -> &[OsString] {
        &self.program_args
    }

    /// The program the children run, in words for a failed start's reason.
    pub(crate) fn program_named(&self) -> String {
        match &self.program {
            Some(p) => format!("the program {}", p.display()),
            None => "this binary".to_string(),
        }
    }

    /// The largest frame either side may send (default 64 MiB). A job whose input is larger fails
    /// with [`TaskError::Wire`](crate::TaskError::Wire) before it is sent; a child that sends a larger frame is treated as
    /// crashed.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes.max(64);
        self
    }
    /// How many jobs may be sent ahead to one child (default 32, at least 1). More hides the pipe's
    /// latency for floods of small jobs.
    pub fn pipeline(mut self, jobs: usize) -> Self {
        self.pipeline = jobs.max(1);
        self
    }
    /// How many bytes of shared memory carry frames each way between the pool and each child
    /// (default 1 MiB; rounded up to a power of two, at least 64 KiB; `0` turns it off).
    ///
    /// With it (on Linux, when the OS gives the memory), jobs and answers travel through two
    /// rings in memory that the parent and the child both map: a frame costs a memory copy on
    /// each side and no system call, except to wake a side that sleeps. Without it, or when the
    /// memory cannot be had, they travel through the child's stdin and stdout pipes. Both keep
    /// exact crash attribution: answers the child wrote before it died are read first. A frame
    /// larger than the ring streams through it in pieces; [`max_frame`](Self::max_frame) still
    /// bounds it.
    pub fn shared_memory(mut self, bytes: usize) -> Self {
        self.shared_memory = bytes;
        self
    }
    /// How long the thread awaiting a job's answer may read it from the shared memory itself,
    /// spinning, before it parks (default 30 us, at most 1 ms; `Duration::ZERO` turns it off).
    ///
    /// A job pushed while the pool has nothing else in flight, to an awake child that answered
    /// its last job within a quarter of this time, is usually answered within a few
    /// microseconds. Reading that answer on the awaiting thread, at its first poll, saves the
    /// hand-off through the worker's reader thread and the wake-up of the awaiting one, each
    /// 5-25 us on a VM: a round trip of a small job takes 2-7 us instead of 8-20 (S6 in the
    /// benchmark report). Meanwhile the thread runs nothing else (an actix arbiter's other tasks
    /// wait): lower it, or turn it off, where a few microseconds of a runtime thread matter more
    /// than a job's latency. Only with [`shared_memory`](Self::shared_memory).
    pub fn answer_spin(mut self, spin: Duration) -> Self {
        self.answer_spin = spin.min(Duration::from_millis(1));
        self
    }
    /// How long a thread awaiting an answer may read it itself (see
    /// [`answer_spin`](Self::answer_spin)).
    pub fn answer_spin_time(&self) -> Duration {
        self.answer_spin
    }
    /// How long a child gets between SIGTERM and SIGKILL when a timeout or a kill stops it
    /// (default 100 ms).
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }
    /// How long a new child may take to answer the handshake (default 10 s).
    pub fn handshake_timeout(mut self, limit: Duration) -> Self {
        self.handshake_timeout = limit;
        self
    }
    /// How long to wait before starting a worker's child again after a failed start: `first`
    /// after the first failure, doubling with each failure in a row, at most `max` (defaults 10 ms
    /// and 5 s). A start fails when the OS refuses the process, when the child ends or answers
    /// wrongly before its handshake, when its [worker state](crate::Jobs::worker_state) set-up
    /// fails, or when it dies before answering its first job. A child that crashes after it
    /// answered a job is replaced at once.
    pub fn restart_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.restart = self.restart.with_backoff(first, max);
        self
    }
    /// How many failed starts in a row a worker may have before the tasks waiting on it fail with
    /// [`TaskError::WorkerStartFailed`](crate::TaskError::WorkerStartFailed) (default 5, at least
    /// 1). Past it the worker tries again only at the slowest back-off, and tasks given to it
    /// meanwhile fail at once with the same error; the first child that starts and answers ends
    /// that state. When its children fail their handshake (a program without `circuits::init`
    /// runs its whole `main` at each start), it tries again only once a task came for it.
    pub fn max_start_failures(mut self, n: usize) -> Self {
        self.restart = self.restart.with_max_failures(n);
        self
    }
    /// Replaces each child after it has answered about `jobs` jobs (Python's
    /// `max_tasks_per_child`, Celery's `worker_max_tasks_per_child`, gunicorn's `max_requests`):
    /// a worker that leaks is replaced before it hurts, and no task fails for it. The child gets
    /// no more jobs once its count is reached, finishes the ones it has, and ends at the end of its
    /// input; a new child (a fresh worker channel, announced with
    /// [`WorkerRestarted`](crate::WorkerRestarted) and the reason) takes the queue. Each child's
    /// count is drawn between `jobs - jitter` and `jobs` ([`recycle_jitter`](Self::recycle_jitter),
    /// default a tenth of `jobs`), so the children of a pool do not all recycle at once. A job is
    /// one queue entry: a [`map`](crate::PoolHandle::map) chunk counts once. At least 1.
    pub fn recycle_after_jobs(mut self, jobs: u64) -> Self {
        let jobs = jobs.max(1);
        self.recycle_jobs = Some(jobs);
        self.recycle_jitter = jobs / 10;
        self
    }

    /// How many jobs fewer than [`recycle_after_jobs`](Self::recycle_after_jobs) a child may be
    /// recycled after, drawn per child (0: exactly that many). Set it after `recycle_after_jobs`.
    pub fn recycle_jitter(mut self, jobs: u64) -> Self {
        self.recycle_jitter = jobs;
        self
    }

    /// Replaces a child whose resident memory (RSS) is above `bytes` once it has answered the
    /// job that took it there (Celery's `worker_max_memory_per_child`): it gets no more jobs,
    /// finishes the ones it has, and is replaced as with
    /// [`recycle_after_jobs`](Self::recycle_after_jobs); no task fails for it. Read from
    /// `/proc` whenever the worker sends jobs, so a child that grows while idle is recycled when
    /// work comes.
    pub fn recycle_above_memory(mut self, bytes: u64) -> Self {
        self.recycle_memory = Some(bytes);
        self
    }

    /// Limits the CPU time (user and system, all threads) each job may use in its child: before
    /// each job the child sets its soft `RLIMIT_CPU` to the CPU time it has used so far plus
    /// `limit`, and a job that goes past it gets SIGXCPU from the kernel, which kills the child.
    /// The job fails with [`TaskError::LimitExceeded`](crate::TaskError::LimitExceeded)`(`[`Limit::CpuTime`](crate::Limit::CpuTime)`(limit))`
    /// instead of [`WorkerCrashed`](crate::TaskError::WorkerCrashed); the jobs sent after it go to
    /// a replacement child, started at once and announced with
    /// [`WorkerRestarted`](crate::WorkerRestarted) and a reason naming the limit.
    ///
    /// The kernel counts this limit in whole seconds: the limit set is rounded up to the next
    /// whole second of the process's CPU time, so a job gets at least `limit` and less than a
    /// second more. A [`map`](crate::PoolHandle::map) chunk is one job. A job that sleeps or waits
    /// uses no CPU time: bound its wall-clock time with [`Task::timeout`](crate::Task::timeout).
    /// Process mode only: a thread pool ignores it (threads share one process).
    pub fn limit_cpu_per_job(mut self, limit: Duration) -> Self {
        self.cpu_per_job = Some(limit);
        self
    }

    /// Kills a child whose resident memory (RSS) goes above `bytes` while it runs a job: the job
    /// fails with [`TaskError::LimitExceeded`](crate::TaskError::LimitExceeded)`(`[`Limit::ResidentMemory`](crate::Limit::ResidentMemory)`)`,
    /// the child gets SIGKILL, and a replacement takes the jobs sent after it, as after a crash
    /// (announced with [`WorkerRestarted`](crate::WorkerRestarted) and a reason naming the
    /// limit). Unlike [`recycle_above_memory`](Self::recycle_above_memory), which replaces a
    /// child between jobs and fails nothing, this stops a runaway job before the machine swaps or
    /// the OOM killer picks a process.
    ///
    /// The pool reads `/proc/<pid>/statm` every [`memory_poll`](Self::memory_poll) (default
    /// 10 ms) while the child has a job, so a job can go over by what it allocates in one
    /// interval (and while the machine is too busy to run the check). Resident memory is watched
    /// instead of set as `RLIMIT_AS` because under an address-space limit an allocation fails
    /// inside the job, and Rust aborts the process (SIGABRT, which cannot be told from any other
    /// abort); address space also counts memory that was reserved but never touched. The job
    /// blamed is the one the child was running when the memory was read. Process mode only: a
    /// thread pool ignores it.
    pub fn limit_resident_memory(mut self, bytes: u64) -> Self {
        self.max_resident = Some(bytes);
        self
    }

    /// How often [`limit_resident_memory`](Self::limit_resident_memory) reads a busy child's
    /// memory (default 10 ms, at least 1 ms).
    pub fn memory_poll(mut self, every: Duration) -> Self {
        self.memory_poll = every.max(Duration::from_millis(1));
        self
    }

    /// Limits how many files each child may have open (its soft `RLIMIT_NOFILE`, set before it
    /// serves, after its own pipes are set up; capped at the hard limit). A job that opens more
    /// gets the OS's error, `EMFILE` ("Too many open files"), as an ordinary I/O error it can
    /// handle; the child lives on. The number counts every descriptor of the process, the few of
    /// the protocol and the standard ones included. Process mode only: a thread pool ignores it.
    pub fn limit_open_files(mut self, n: u64) -> Self {
        self.open_files = Some(n);
        self
    }

    /// The frame size limit in bytes.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame
    }
    /// How many jobs a new child may run before it is recycled, if it is: the count less a
    /// random share of the jitter.
    pub(crate) fn job_quota(&self) -> Option<u64> {
        let jobs = self.recycle_jobs?;
        let jitter = self.recycle_jitter.min(jobs - 1);
        Some(jobs - rand::Rng::gen_range(&mut rand::thread_rng(), 0..=jitter))
    }
}
