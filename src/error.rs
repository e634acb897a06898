//! The crate's error type, which every operation's own error converts into for `?`.

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};

pub use crate::codec::CodecError;
use crate::queue::ChannelError;
use crate::shared::{ShareableListError, SharedMemoryError};
pub use crate::shm::HeapFull;
use crate::sync::{Abandoned, AcquireTimeoutError, BrokenBarrier, ConditionWaitError, ReleaseError, TryAcquireError};

/// Any error of multiproc, for `?` in functions that mix operations.
///
/// Operations whose failures a caller may want to tell apart return their own error types
/// ([`JoinError`], ...), which convert into this one.
///
/// Its `Debug` is what `fn main() -> Result<(), multiproc::Error>` prints: the message
/// (with its hint, such as the fix for [`Error::NotInitialized`]), a child's panic on a
/// few lines, and the child's backtrace only when `RUST_BACKTRACE` asks for one, as for a
/// panic of the program itself. Match on the variants to inspect the details.
///
/// # Examples
///
/// ```
/// let err = multiproc::Error::NotInitialized;
/// assert!(format!("{err:?}").contains("multiproc::init()"));
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A process was started before the family was set up.
    #[error(
        "multiproc::init() was not called: make `multiproc::init();` the first line of `main` (or put #[multiproc::main] on it); in a test crate add `multiproc::test_support!();` once"
    )]
    NotInitialized,
    /// `init()` came after other threads started (see [`InitError`]).
    #[error(transparent)]
    Init(#[from] InitError),
    /// A daemonic process tried to start a child.
    #[error("daemonic processes are not allowed to have children")]
    DaemonicParent,
    /// The start method is not available here.
    #[error("start method {0:?} is not available: {1}")]
    StartMethodUnavailable(crate::StartMethod, String),
    /// [`StartMethod::Fork`](crate::StartMethod::Fork) was asked for while other threads
    /// run: a copy of this process could inherit a lock one of them holds, locked forever
    /// (see [`allow_fork_with_threads`](crate::allow_fork_with_threads)). A thread named
    /// `multiproc-resolve` (`/proc/<pid>/task/*/comm`) is multiproc's own: a Redis host name's
    /// lookup that its name servers had not answered by an open's deadline, which ends when
    /// the system's resolver gives up (see the `cluster` module).
    #[error(
        "refusing StartMethod::Fork in a process with {threads} threads: a lock held by another thread would stay locked in the child; use ForkServer or Spawn, or see multiproc::allow_fork_with_threads"
    )]
    ForkWithThreads {
        /// Threads running at the call (`usize::MAX` when they could not be counted).
        threads: usize,
    },
    /// The target function is not in the program's executable (it belongs to a shared
    /// library), so another process of the family could not find it by its place there.
    #[error(
        "the target function lives outside the executable (in a shared library): another process cannot locate it; use a function of the program itself (which may call the library)"
    )]
    NotInExecutable,
    /// The process-wide start method was already set to something else.
    #[error("the start method is already set to {0:?}; use force_start_method to change it")]
    StartMethodAlreadySet(crate::StartMethod),
    /// A child process failed or ended without a result.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// A message could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The family's shared memory is exhausted.
    #[error(transparent)]
    HeapFull(#[from] HeapFull),
    /// A pool task failed.
    #[error(transparent)]
    Task(#[from] crate::TaskError),
    /// A pool refused.
    #[error(transparent)]
    Pool(#[from] crate::PoolError),
    /// A manager or one of its proxies failed.
    #[error(transparent)]
    Manager(#[from] crate::ManagerError),
    /// A queue or pipe operation failed (see the operation's own error type).
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The operating system refused.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A `try_` operation found the object busy.
    #[error("the operation would block")]
    WouldBlock,
    /// A `_timeout` operation's time ran out.
    #[error("the operation timed out")]
    Timeout,
    /// An argument no object can be made with (Python's `ValueError`), such as a
    /// [`Barrier`](crate::Barrier) of no party; the text says which.
    ///
    /// ```
    /// multiproc::init();
    /// let err = multiproc::Barrier::new(0).unwrap_err();
    /// assert!(matches!(err, multiproc::Error::InvalidArgument(_)));
    /// ```
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A release the lock's state does not allow.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// A wait that nothing could end.
    #[error(transparent)]
    Abandoned(#[from] Abandoned),
    /// A condition wait ended badly.
    #[error(transparent)]
    ConditionWait(#[from] ConditionWaitError),
    /// A barrier is broken.
    #[error(transparent)]
    BrokenBarrier(#[from] BrokenBarrier),
    /// A named shared memory segment could not be created or opened.
    #[error(transparent)]
    SharedMemory(#[from] SharedMemoryError),
    /// A `ShareableList` operation failed.
    #[error(transparent)]
    ShareableList(#[from] ShareableListError),

    /// Redis, under a [`cluster`](crate::cluster) object, could not be used.
    #[cfg(feature = "cluster")]
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// `acquire()` of a lock cannot fail: its error type is `Infallible`, so that `?` works
/// in any function.
impl From<std::convert::Infallible> for Error {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

impl From<TryAcquireError> for Error {
    fn from(e: TryAcquireError) -> Self {
        match e {
            TryAcquireError::WouldBlock => Error::WouldBlock,
        }
    }
}

impl From<AcquireTimeoutError> for Error {
    fn from(e: AcquireTimeoutError) -> Self {
        match e {
            AcquireTimeoutError::Timeout => Error::Timeout,
        }
    }
}

/// Why `multiproc::init()` refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// Threads were already running, so the fork server cannot be forked safely.
    #[error(
        "multiproc::init() was called after {threads} threads had started: call it as the first line of `main` (or use #[multiproc::main]); in tests use `multiproc::test_support!();`"
    )]
    Late {
        /// Threads running at the call.
        threads: usize,
    },
    /// The family could not be set up.
    #[error("cannot set up the process family: {0}")]
    Setup(String),
}

/// A panic in a child process, as the child saw it.
///
/// `Display` is one line; `Debug` reads as Rust's own panic message, with the child's
/// backtrace only when `RUST_BACKTRACE` (or `RUST_LIB_BACKTRACE`) asks for one in the
/// process that prints it: from the panic to the target with `RUST_BACKTRACE=1`, every
/// frame with `RUST_BACKTRACE=full`, as std prints its own; `{:#?}` shows the fields.
///
/// # Examples
///
/// ```
/// let info = multiproc::PanicInfo {
///     process: "Process-1".into(),
///     message: "boom".into(),
///     location: Some("src/main.rs:3:5".into()),
///     backtrace: String::new(),
/// };
/// assert_eq!(info.to_string(), "process 'Process-1' panicked at src/main.rs:3:5: boom");
/// assert!(format!("{info:?}").starts_with("process 'Process-1' panicked at src/main.rs:3:5:\nboom"));
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanicInfo {
    /// The process that panicked.
    pub process: String,
    /// The panic message.
    pub message: String,
    /// Where the panic happened (`file:line:column`), when known.
    pub location: Option<String>,
    /// The backtrace captured at the panic.
    pub backtrace: String,
}

impl fmt::Display for PanicInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process '{}' panicked", self.process)?;
        if let Some(loc) = &self.location {
            write!(f, " at {loc}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl fmt::Debug for PanicInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return f
                .debug_struct("PanicInfo")
                .field("process", &self.process)
                .field("message", &self.message)
                .field("location", &self.location)
                .field("backtrace", &self.backtrace)
                .finish();
        }
        write!(f, "process '{}' panicked", self.process)?;
        if let Some(loc) = &self.location {
            write!(f, " at {loc}")?;
        }
        write!(f, ":\n{}", self.message)?;
        if self.backtrace.is_empty() {
            return Ok(());
        }
        match backtrace_style() {
            Some(style) => {
                let shown = shown_backtrace(&self.backtrace, style);
                write!(f, "\nstack backtrace of process '{}':\n{}", self.process, shown.trim_end())?;
                if style == BacktraceStyle::Short {
                    write!(
                        f,
                        "\nnote: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace."
                    )?;
                }
                Ok(())
            }
            None => {
                write!(f, "\nnote: run with `RUST_BACKTRACE=1` environment variable to display the child's backtrace")
            }
        }
    }
}

/// How much of a child's backtrace to print, as std decides for a panic of its own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BacktraceStyle {
    Short,
    Full,
}

/// What the user asked for, read as `std::backtrace::Backtrace::capture` reads it:
/// `RUST_LIB_BACKTRACE` first, then `RUST_BACKTRACE`; unset or `0` is none, `full` all of
/// it, anything else the short form.
fn backtrace_style() -> Option<BacktraceStyle> {
    let asked = std::env::var_os("RUST_LIB_BACKTRACE").or_else(|| std::env::var_os("RUST_BACKTRACE"))?;
    match asked.to_str() {
        Some("0") => None,
        Some("full") => Some(BacktraceStyle::Full),
        _ => Some(BacktraceStyle::Short),
    }
}

/// A backtrace as printed for a panic in a child (`RUST_BACKTRACE` as std reads it), with
/// the note std prints after a short one; `None` when none is asked for.
pub(crate) fn shown_if_asked(backtrace: &str) -> Option<String> {
    let style = backtrace_style()?;
    let mut text = shown_backtrace(backtrace, style);
    if style == BacktraceStyle::Short {
        text.push_str("note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.\n");
    }
    Some(text)
}

/// The frames of a child's backtrace worth printing. Both styles start at the panic's entry
/// into std, as std prints its own (the frames before it are the recording hook's). The
/// short one also stops where multiproc caught the panic: the frames after the target are
/// the catching and the child's start-up, the same in every child.
fn shown_backtrace(backtrace: &str, style: BacktraceStyle) -> String {
    // A frame is its `  N: name` line and the `at file:line` lines after it.
    let mut frames: Vec<(&str, String)> = Vec::new();
    for line in backtrace.lines() {
        let numbered =
            line.trim_start().split_once(": ").filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        match (numbered, frames.last_mut()) {
            (Some((_, name)), _) => frames.push((name, format!("{line}\n"))),
            (None, Some((_, text))) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    let start = frames.iter().position(|(name, _)| name.contains("rust_begin_unwind")).unwrap_or(0);
    let mut frames = frames.split_off(start);
    if style == BacktraceStyle::Short
        && let Some(end) = frames.iter().position(|(name, _)| {
            // Where multiproc caught the target's panic, or where std started the thread.
            name.starts_with("multiproc::process::panics::catching") || name.contains("__rust_begin_short_backtrace")
        })
    {
        frames.truncate(end);
        // `catch_unwind`'s own frames, between the catching and the target.
        while frames.last().is_some_and(|(name, _)| {
            name.contains("catch_unwind") || name.contains("__rust_try") || name.contains("AssertUnwindSafe")
        }) {
            frames.pop();
        }
    }
    frames.into_iter().map(|(_, text)| text).collect()
}

/// `Debug` as the message and its causes, as `anyhow` prints an error from `main`.
pub(crate) fn debug_as_message(error: &dyn std::error::Error, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{error}")?;
    let mut source = error.source();
    if source.is_some() {
        write!(f, "\n\nCaused by:")?;
    }
    while let Some(cause) = source {
        write!(f, "\n    {cause}")?;
        source = cause.source();
    }
    Ok(())
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Join(e) => fmt::Debug::fmt(e, f),
            Error::Task(e) => fmt::Debug::fmt(e, f),
            other => debug_as_message(other, f),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(info) => fmt::Debug::fmt(info, f),
            other => debug_as_message(other, f),
        }
    }
}

/// How a child process failed to deliver its result.
///
/// `Debug` is the message (a panic as [`PanicInfo`] shows it), so that `unwrap` and `?`
/// from `main` print something short.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The target panicked (exit code 1).
    #[error("{0}")]
    Panicked(PanicInfo),
    /// The target overflowed the stack of the thread it ran on (the process was aborted,
    /// as std aborts a program whose thread overflows its stack).
    #[error("process '{name}' overflowed its stack")]
    StackOverflow {
        /// The process name.
        name: String,
    },
    /// The process exited with `code` before returning (`std::process::exit`).
    #[error("process '{name}' exited with code {code} without returning a result")]
    Exited {
        /// The process name.
        name: String,
        /// Its exit code.
        code: i32,
    },
    /// A signal killed the process (exit code `-signal`).
    #[error("process '{name}' was killed by signal {signal} ({})", signal_name(*.signal))]
    Signaled {
        /// The process name.
        name: String,
        /// The signal number.
        signal: i32,
    },
    /// The child could not run the target (bad arguments, a different binary, ...).
    #[error("process '{name}' could not run its target: {reason}")]
    Failed {
        /// The process name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The target returned, but its result could not be encoded in the child (its
    /// `Serialize` refused).
    #[error("the result of process '{name}' could not be encoded: {reason}")]
    ResultNotEncoded {
        /// The process name.
        name: String,
        /// What the encoder said.
        reason: String,
    },
    /// The result arrived but could not be decoded as the expected type.
    #[error("the result of process '{name}' could not be decoded: {error}")]
    Decode {
        /// The process name.
        name: String,
        /// The decoding error.
        error: CodecError,
    },
    /// The [`join_async`](crate::ProcessHandle::join_async) future was polled again after
    /// it gave the child's outcome: the result was moved out then, and is not there to give
    /// again (as [`TaskError::Taken`](crate::TaskError::Taken) for an `AsyncResult`). The
    /// child ended as that poll said. A [`JoinError::NotAChild`] answer takes nothing, and
    /// is given again instead. (Polled again, a future may do anything but cause
    /// undefined behaviour; this one says so, rather than claim the child returned
    /// nothing.)
    ///
    /// # Examples
    ///
    /// ```
    /// use std::future::Future;
    /// use std::pin::Pin;
    /// use std::task::{Context, Poll, Waker};
    ///
    /// fn seven(_: ()) -> u32 {
    ///     7
    /// }
    ///
    /// multiproc::init();
    /// let mut joining = multiproc::Process::new(seven, ()).start()?.join_async();
    /// let mut cx = Context::from_waker(Waker::noop());
    /// let first = loop {
    ///     match Pin::new(&mut joining).poll(&mut cx) {
    ///         Poll::Ready(outcome) => break outcome,
    ///         Poll::Pending => std::thread::sleep(std::time::Duration::from_millis(1)),
    ///     }
    /// };
    /// assert_eq!(first?, 7);
    /// let again = Pin::new(&mut joining).poll(&mut cx);
    /// assert!(matches!(again, Poll::Ready(Err(multiproc::JoinError::Taken { .. }))));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[error("the outcome of process '{name}' was taken already, by an earlier poll of its join_async future")]
    Taken {
        /// The process name.
        name: String,
    },
    /// The handle is a copy made by a fork of the process that started the child (a
    /// handle in a `static`, a captured clone, a program's own `fork`): only that process
    /// joins it, as in Python ("can only join a child process"). The child is untouched:
    /// its parent still joins it.
    #[error("process '{name}' (pid {pid}) is not a child of this process: only the process that started it joins it")]
    NotAChild {
        /// The process name.
        name: String,
        /// Its pid.
        pid: u32,
    },
}

/// Why [`crate::ProcessHandle::join_timeout`] returned without a result: a timeout gives
/// the handle back (as crossbeam's `SendTimeoutError` gives its message back), so that a
/// handle is joined once, by value, as `join` does.
///
/// `Debug` is the message, as for [`JoinError`]; `?` turns it into
/// [`Error::Timeout`] or [`Error::Join`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{JoinTimeoutError, Process};
///
/// fn nap(ms: u64) {
///     std::thread::sleep(Duration::from_millis(ms));
/// }
///
/// multiproc::init();
/// let child = Process::new(nap, 60_000).start()?;
/// let Err(JoinTimeoutError::Timeout(child)) = child.join_timeout(Duration::from_millis(1)) else {
///     panic!("it sleeps for a minute");
/// };
/// child.kill()?;
/// assert!(matches!(child.join_timeout(Duration::from_secs(60)), Err(JoinTimeoutError::Failed(_))));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(thiserror::Error)]
pub enum JoinTimeoutError<R> {
    /// The process is still running; here is its handle.
    #[error("the process is still running")]
    Timeout(crate::ProcessHandle<R>),
    /// The process ended without a result.
    #[error(transparent)]
    Failed(#[from] JoinError),
}

impl<R> JoinTimeoutError<R> {
    /// The handle, if the process is still running.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::Process;
    ///
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(Duration::from_millis(ms));
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(nap, 60_000).start()?;
    /// let child = child.join_timeout(Duration::from_millis(1)).unwrap_err().into_handle().unwrap();
    /// child.kill()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn into_handle(self) -> Option<crate::ProcessHandle<R>> {
        match self {
            JoinTimeoutError::Timeout(handle) => Some(handle),
            JoinTimeoutError::Failed(_) => None,
        }
    }
}

impl<R> fmt::Debug for JoinTimeoutError<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinTimeoutError::Failed(e) => fmt::Debug::fmt(e, f),
            other => debug_as_message(other, f),
        }
    }
}

impl<R> From<JoinTimeoutError<R>> for Error {
    fn from(e: JoinTimeoutError<R>) -> Error {
        match e {
            JoinTimeoutError::Timeout(_) => Error::Timeout,
            JoinTimeoutError::Failed(e) => Error::Join(e),
        }
    }
}

/// The conventional name of a signal, for messages.
pub(crate) fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => "signal",
    }
}
