//! What can go wrong with a pool and its tasks.

use std::fmt;
use std::time::Duration;

use crate::error::{CodecError, JoinError, PanicInfo, debug_as_message, signal_name};

/// Why a task did not produce its result. Every task ends with its result or one of these.
///
/// `Debug` is the message (a panic as [`PanicInfo`] shows it: a few lines, the worker's
/// backtrace only when `RUST_BACKTRACE` asks), so that `unwrap` and `?` from `main` print
/// something short.
///
/// # Examples
///
/// ```
/// use multiproc::{PanicInfo, TaskError};
///
/// let info = PanicInfo {
///     process: "PoolWorker-1".into(),
///     message: "boom".into(),
///     location: Some("src/main.rs:3:5".into()),
///     backtrace: String::new(),
/// };
/// let err = TaskError::Panicked(info);
/// assert_eq!(err.to_string(), "process 'PoolWorker-1' panicked at src/main.rs:3:5: boom");
/// assert!(format!("{err:?}").starts_with("process 'PoolWorker-1' panicked at src/main.rs:3:5:\nboom"));
/// ```
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; its worker went on with the next task.
    #[error("{0}")]
    Panicked(PanicInfo),
    /// The worker process died while running the task (killed, crashed, out of memory);
    /// it was replaced. In a cluster pool, `pid` 0 (and no signal or exit code) means the
    /// task's nodes died under it as many times as its deliveries allow.
    #[error("worker {pid} was lost while running the task: {}", lost_how(*.signal, *.exit_code))]
    WorkerLost {
        /// The worker's pid.
        pid: u32,
        /// The signal that killed it, if a signal did.
        signal: Option<i32>,
        /// Its exit code, if it exited.
        exit_code: Option<i32>,
    },
    /// The task ran past the pool's timeout: its worker was killed and replaced.
    #[error("the task ran past its timeout of {0:?}; its worker was killed and replaced")]
    TimedOut(Duration),
    /// The task's argument or result could not be encoded or decoded (for a cluster pool's
    /// lazy `imap` chunk: also a task above the pool's `max_message_size`, refused before
    /// it was sent).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The pool was terminated before the task finished.
    #[error("the pool was terminated before the task finished")]
    Terminated,
    /// The input iterator of an `imap` panicked when asked for this item (Python's
    /// `imap` raises the input's exception at the same position): the results before it
    /// came first, and the iteration ends after it.
    #[error("the input panicked: {0}")]
    InputPanicked(PanicInfo),
    /// A worker node of a cluster pool refused the task without running it: it runs
    /// another build of the program than the driver (the executables differ), so the
    /// task's function may not be the same code there.
    #[error("worker node {node} runs another build of the program and refused the task")]
    WrongBuild {
        /// The node's name (`host:pid`).
        node: String,
    },
    /// A worker node of a cluster pool refused the task without decoding it: its tag does
    /// not check under the node's cluster key. The node has another key than the driver
    /// (see [`ClusterOptions::authkey`](crate::cluster::ClusterOptions::authkey)), or the
    /// task was changed in Redis by someone else. Or the driver refused the task's result
    /// in Redis without decoding it, for the same reason (`node` is then `the driver`):
    /// someone without the key wrote it, or changed it.
    #[cfg(feature = "cluster")]
    #[error(
        "{node} could not authenticate the task or its result (another cluster key, or a message changed in Redis) and refused it"
    )]
    Unauthenticated {
        /// Who refused: the worker node's name (`host:pid`), or `the driver` for a
        /// result. A node's refusal is the one answer a driver takes untagged (that node's
        /// key is not the driver's), so its name is not authenticated: whoever can write to
        /// Redis may send one, naming any node (in that form, at most 255 bytes).
        node: String,
    },
    /// Redis could not be used by a cluster pool, so the task's outcome cannot be known;
    /// the pool was terminated.
    #[cfg(feature = "cluster")]
    #[error(transparent)]
    Cluster(crate::cluster::ClusterError),
    /// [`AsyncResult::cancel`](crate::AsyncResult::cancel) was called before the result
    /// came: the task was dropped, or its worker stopped.
    #[error("the task was cancelled")]
    Cancelled,
    /// The result was taken already, by an earlier
    /// [`AsyncResult::get_timeout`](crate::AsyncResult::get_timeout) or an await of the
    /// `AsyncResult` through `&mut`: the value was moved out then, and is not there to give
    /// again (Python's `get` returns it again; ours is not `Clone`). The task succeeded or
    /// failed as that call said, and as [`AsyncResult::successful`](crate::AsyncResult::successful)
    /// still says.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{ResultTimeoutError, TaskError};
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// let mut pending = pool.apply_async(square, 3)?;
    /// assert_eq!(pending.get_timeout(Duration::from_secs(60)).unwrap(), 9);
    /// assert!(matches!(pending.get_timeout(Duration::from_secs(60)), Err(ResultTimeoutError::Task(TaskError::Taken))));
    /// assert_eq!(pending.successful(), Ok(true));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[error("the result was already taken by an earlier call (get_timeout, or an await through &mut)")]
    Taken,
    /// The pool's workers cannot start: too many in a row ended before their first answer
    /// (see [`PoolBuilder::initializer`](crate::PoolBuilder::initializer)), the last as
    /// [`BootFailure::ended`] says. The pool starts no more workers and stays failed: every
    /// task given to it since fails so at once. (A panic of the pool's initializer is
    /// [`TaskError::Panicked`] with the initializer's panic.)
    #[error("the pool's workers cannot start: {0}")]
    WorkersCannotStart(BootFailure),
}

/// How the workers of a pool that gave up on them ended ([`TaskError::WorkersCannotStart`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{deaths} in a row ended before their first answer; the last, pid {pid}: {ended}")]
#[non_exhaustive]
pub struct BootFailure {
    /// How many workers in a row ended before their first answer. For workers that died
    /// inside their initializer (killed for its timeout, or ended by an exit or a crash of
    /// their own there): how many in a row, no initializer having returned between (the
    /// others' answers do not end that run).
    pub deaths: u32,
    /// The last one's pid.
    pub pid: u32,
    /// How the last one ended, as its `join` would say: the text of the worker's own
    /// failure before it ran ([`JoinError::Failed`]: it could not take its argument, or
    /// decode its boot message), a panic in the family's `child_init`
    /// ([`JoinError::Panicked`]), or only its exit ([`JoinError::Exited`]: a
    /// `std::process::exit` in the `child_init` or in the initializer) or the signal that
    /// ended it ([`JoinError::Signaled`]: an abort, a crash).
    pub ended: JoinError,
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked(info) => fmt::Debug::fmt(info, f),
            TaskError::InputPanicked(info) => {
                write!(f, "the input panicked: ")?;
                fmt::Debug::fmt(info, f)
            }
            other => debug_as_message(other, f),
        }
    }
}

fn lost_how(signal: Option<i32>, exit_code: Option<i32>) -> String {
    match (signal, exit_code) {
        (Some(s), _) => format!("killed by signal {s} ({})", signal_name(s)),
        (None, Some(c)) => format!("exited with code {c}"),
        (None, None) => "gone".to_string(),
    }
}

/// What a pool refused to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The pool was closed or terminated: it takes no more tasks.
    #[error("the pool does not accept tasks any more (it was closed or terminated)")]
    Closed,
    /// `join()` was called before `close()` or `terminate()` (Python's
    /// `ValueError: Pool is still running`).
    #[error("the pool is still running: call close() or terminate() before join()")]
    StillRunning,
    /// `join()` was called from a task of a [`ThreadPool`](crate::ThreadPool), or from a
    /// callback of a closed [`Pool`](crate::Pool) run by the pool's own thread: a thread
    /// cannot wait for itself to end (Python's `RuntimeError: cannot join current thread`).
    /// Nothing was joined; a `join` from outside the pool's threads still works.
    #[error("join() was called from one of the pool's own threads, which cannot wait for itself")]
    JoinFromWorker,
    /// A pool of no workers was asked for (Python's `ValueError: Number of processes must
    /// be at least 1`).
    #[error("a pool needs at least one worker")]
    NoProcesses,
    /// More workers than the system can run at all were asked for: a pool's workers are
    /// threads or processes, each with a pid, and the kernel runs at most `max` in all (the
    /// lowest of `/proc/sys/kernel/threads-max`, `pid_max` and, but for root, the user's
    /// `RLIMIT_NPROC`). Nothing was started.
    #[error("a pool of {asked} workers is more than this system can run ({max} threads or processes in all)")]
    TooManyWorkers {
        /// The workers asked for.
        asked: usize,
        /// The system's limit (the lowest of `threads-max`, `pid_max` and `RLIMIT_NPROC`).
        max: usize,
    },
    /// `max_tasks_per_child(0)` (Python's `ValueError: maxtasksperchild must be a positive
    /// int or None`).
    #[error("max_tasks_per_child must be at least 1")]
    NoTasksPerChild,
    /// The task's function (or the initializer) is not part of the program's executable (a
    /// function from a shared library): a worker could not locate it, so nothing was queued.
    #[error(
        "the function is not part of the program's executable (a function from a shared library?): a worker cannot call it"
    )]
    NotInExecutable,
    /// `MapOptions::chunksize(0)` (Python's `ValueError: Chunksize must be 1+`).
    #[error("a chunk size must be at least 1")]
    NoChunkSize,
    /// `MapOptions::lookahead(0)`: an `imap` with no chunk in flight would never yield.
    #[error("an imap's lookahead must be at least 1 chunk")]
    NoLookahead,
    /// A worker could not be started.
    #[error("cannot start a worker: {0}")]
    Start(Box<crate::Error>),
    /// The task's argument could not be encoded (for a cluster pool: also when it holds
    /// a handle of the local family, which cannot cross machines, or when the task is
    /// larger than the pool's `max_message_size`, refused before it was sent).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A local pool's option was given to a cluster pool (`PoolBuilder::cluster`).
    #[cfg(feature = "cluster")]
    #[error("a cluster pool has no {0}: its workers run on the nodes")]
    NotForCluster(&'static str),
    /// A cluster pool could not reach Redis, or Redis refused its commands.
    #[cfg(feature = "cluster")]
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// Why [`AsyncResult::get_timeout`](crate::AsyncResult::get_timeout) returned without a
/// value.
///
/// `Debug` is the message, as for [`TaskError`].
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultTimeoutError {
    /// Not ready yet; the result stays available.
    #[error("the result is not ready yet")]
    Timeout,
    /// The task failed.
    #[error(transparent)]
    Task(#[from] TaskError),
}

impl fmt::Debug for ResultTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResultTimeoutError::Task(e) => fmt::Debug::fmt(e, f),
            other => debug_as_message(other, f),
        }
    }
}

/// [`AsyncResult::successful`](crate::AsyncResult::successful) on a result that is not ready
/// (Python's `ValueError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the result is not ready")]
pub struct NotReady;
