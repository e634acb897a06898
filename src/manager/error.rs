//! What can go wrong with a manager or one of its proxies.

use std::fmt;
use std::io;
use std::time::Duration;

use super::protocol::Fault;
use crate::codec::CodecError;
use crate::error::debug_as_message;
use crate::shm::HeapFull;

/// Why a manager, or a call through one of its proxies, failed.
///
/// The variants named after a Python exception are what the server answered
/// (`IndexOutOfRange` is Python's `IndexError`, ...); [`ManagerError::ServerGone`] is what
/// every call returns once the server has been shut down or its process has ended, instead
/// of waiting forever. It is the one error type of the proxies, as `io::Error` is of a
/// socket: a `try_` call that would wait is [`ManagerError::WouldBlock`] (a lock, a
/// semaphore), [`ManagerError::Empty`] (a queue's get) or [`ManagerError::Full`] (a queue's
/// put), and a `_timeout` call whose time ran out is [`ManagerError::Timeout`], the
/// variants the family's own objects name the same way. Each method's `# Errors` says
/// which it returns.
///
/// `Debug` is the message (an initializer's panic as [`PanicInfo`](crate::PanicInfo)
/// shows it), so that `unwrap` and `?` from `main` print a few lines.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Manager, ManagerError};
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let l = manager.list_from([1, 2, 3])?;
/// match l.set(10, 4) {
///     Err(ManagerError::IndexOutOfRange { index, len }) => println!("IndexError: {index} >= {len}"),
///     other => println!("{other:?}"),
/// }
/// # Ok::<(), ManagerError>(())
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The server was shut down, or its process ended (killed, crashed), or the remote
    /// connection broke. What a call so answered did is unknown: a registered type's
    /// method running at a shutdown ran in part (it ends with the server's process), while
    /// one still waiting for a worker or behind its object's calls never runs.
    #[error("the manager's server is gone: {reason}")]
    ServerGone {
        /// What happened.
        reason: String,
    },
    /// The server process could not be started.
    #[error("the manager's server could not start: {0}")]
    Start(String),
    /// The initializer given to
    /// [`ManagerBuilder::initializer`](crate::ManagerBuilder::initializer) panicked in the
    /// server process, which then did not serve.
    #[error("the manager's initializer panicked: {0}")]
    InitializerPanicked(crate::PanicInfo),
    /// An index outside the list (Python's `IndexError`).
    #[doc(alias = "IndexError")]
    #[error("index {index} out of range for a sequence of length {len}")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The length at the time.
        len: usize,
    },
    /// No such attribute in a namespace (Python's `AttributeError`).
    #[doc(alias = "AttributeError")]
    #[error("the namespace has no attribute '{0}'")]
    NoSuchAttribute(String),
    /// The value is not in the list (Python's `ValueError` of `index`) or the set (the
    /// `KeyError` of `remove`).
    #[error("the value is not in the list or set")]
    ValueNotFound,
    /// A lock released by a thread that does not hold it (`RLock`, `Condition`).
    #[error("released by a thread that does not own it")]
    NotOwner,
    /// Released more often than acquired: an unlocked lock, a bounded semaphore above its
    /// initial value, `task_done` more often than `put` (Python's `ValueError`).
    #[error("released more often than acquired")]
    NotAcquired,
    /// The barrier was aborted or broken by a party that timed out or died (Python's
    /// `BrokenBarrierError`).
    #[doc(alias = "BrokenBarrierError")]
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// No type of this name is registered with the server.
    #[error("no type '{0}' is registered with the manager")]
    UnknownType(String),
    /// The registered type exposes no such method.
    #[error("'{type_name}' exposes no method '{method}'")]
    UnknownMethod {
        /// The registered type.
        type_name: String,
        /// The method asked for.
        method: String,
    },
    /// A registered type's method (or its construction) failed on the server: it
    /// panicked, or its arguments did not decode. The server goes on.
    #[error("the method failed on the server: {0}")]
    MethodFailed(String),
    /// Nothing is published under this name ([`Manager::lookup`](crate::Manager::lookup)).
    #[error("nothing is published as '{0}'")]
    NotPublished(String),
    /// A proxy of another manager cannot be stored in this one's containers.
    #[error("a proxy can only be stored in a container of its own manager")]
    ForeignProxy,
    /// A sort could not complete: the list kept changing under it.
    #[error("the list kept changing while it was being sorted")]
    Contended,
    /// The remote server refused the authentication key (or the server could not prove
    /// that it knows the key).
    #[error("authentication failed: {0}")]
    AuthenticationFailed(String),
    /// A message exceeds the size limit of the connection, or a request would take more
    /// of the server's memory once decoded than one request may
    /// ([`ManagerBuilder::max_request_memory`](crate::ManagerBuilder::max_request_memory)).
    #[error("a message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The message's size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A count kept by the server would pass its limit (a semaphore released past
    /// `u64::MAX`, an `RLock` acquired recursively that often): refused, nothing changed
    /// (Python's `OverflowError`).
    #[doc(alias = "OverflowError")]
    #[error("{0} would overflow")]
    Overflow(String),
    /// The queue was shut down ([`QueueProxy::shutdown`](crate::QueueProxy::shutdown)): a
    /// put is refused, and a get finds nothing left (Python's `queue.ShutDown`).
    #[error("the queue is shut down")]
    ShutDown,
    /// A remote server did not answer in time: nothing listening answered the connection,
    /// or the peer did not complete the handshake (it may be no manager at all).
    #[error("timed out: {0}")]
    HandshakeTimeout(String),
    /// A `try_acquire` found the lock or semaphore taken (the family's
    /// [`TryAcquireError::WouldBlock`](crate::TryAcquireError::WouldBlock)).
    #[error("the lock is held by another thread or process")]
    WouldBlock,
    /// A `try_get` found the queue empty (the family's
    /// [`TryGetError::Empty`](crate::TryGetError::Empty)).
    #[error("the queue is empty")]
    Empty,
    /// A `try_put` found the queue full (the family's
    /// [`TryPutError::Full`](crate::TryPutError::Full)).
    #[error("the queue is full")]
    Full,
    /// A `_timeout` call's time ran out first (the family's `Timeout` variants).
    #[error("the operation timed out")]
    Timeout,
    /// The server gave no sign of life for the call timeout
    /// ([`ManagerBuilder::call_timeout`](crate::ManagerBuilder::call_timeout)) while a call
    /// waited: it is stopped or cut off (a registered type's long method is not this: the
    /// server answers its caller's pings while it runs, see
    /// [`managed!`](crate::managed)). What the call did is
    /// unknown (a put may have happened); the connection it was made on is closed (see
    /// `call_timeout` for what that means), so that its late answer is never taken for
    /// another call's.
    #[error("the manager's server did not answer within the call timeout of {0:?}")]
    CallTimeout(Duration),
    /// The peer broke the protocol (a malformed message, an unexpected answer).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// An argument no object can be made with (a barrier of no party), as the family's
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// [`JoinableQueueProxy::task_done`](crate::JoinableQueueProxy::task_done) called more
    /// often than items were put (Python's `ValueError`), as the family's.
    #[error(transparent)]
    TaskDone(#[from] crate::TaskDoneError),
    /// [`JoinableQueueProxy::join`](crate::JoinableQueueProxy::join): every item not marked
    /// done was taken by a client that died before marking it done (a family process killed,
    /// a remote client whose connection ended), as the family's
    /// [`QueueJoinError::TasksLost`](crate::QueueJoinError::TasksLost): nobody can finish
    /// them, so `join` does not wait for them. They stay unfinished; a `task_done` by a
    /// client past the tasks it took (one that took none) finishes one of them. A task taken
    /// by a call its client gave up on (`call_timeout`) is lost too: the client never saw
    /// the item.
    #[error("{lost} items were taken by clients that died before marking them done")]
    TasksLost {
        /// Items taken by dead clients and never marked done.
        lost: u64,
    },
    /// [`Manager::create`](crate::Manager::create) or a proxy's call of a registered type
    /// whose type is not the one the server has under its [`Managed::NAME`](crate::Managed::NAME):
    /// two types of one name (`Stats` as written, in two modules), or a proxy looked up as
    /// another type. The server checks each create and call, whichever process or program
    /// sends it: a family client's type must be the server's own (its `TypeId`), a remote
    /// client's must have the server's type's path, or the same `as "name"` in
    /// [`managed!`](crate::managed). The first type registered under a name keeps it (the
    /// last of [`ManagerBuilder::register`](crate::ManagerBuilder::register)'s); give the
    /// other a name of its own with `as "name"`.
    #[error(
        "another type is registered under the name '{type_name}' on the manager (give one a name of its own: `managed! {{ proxy P for T as \"name\" {{ .. }} }}`)"
    )]
    TypeMismatch {
        /// The name both types go by.
        type_name: String,
    },
    /// A value could not be encoded or decoded (was it stored as another type?).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The family's shared memory is exhausted.
    #[error(transparent)]
    HeapFull(#[from] HeapFull),
    /// The operating system refused (sockets, processes).
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl fmt::Debug for ManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManagerError::InitializerPanicked(info) => {
                write!(f, "the manager's initializer panicked: ")?;
                fmt::Debug::fmt(info, f)
            }
            other => debug_as_message(other, f),
        }
    }
}

impl From<crate::Error> for ManagerError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Codec(e) => ManagerError::Codec(e),
            crate::Error::HeapFull(e) => ManagerError::HeapFull(e),
            crate::Error::Io(e) => ManagerError::Io(e),
            other => ManagerError::Start(other.to_string()),
        }
    }
}

impl From<Fault> for ManagerError {
    fn from(fault: Fault) -> Self {
        match fault {
            // The server's index, Python's (signed, negative from the end): the list proxies
            // put in the one their caller passed (`list::at`); only `pop()`'s `-1` on an
            // empty list comes through as it is, and that is `Ok(None)`.
            Fault::IndexOutOfRange { index, len } => ManagerError::IndexOutOfRange {
                index: usize::try_from(index).unwrap_or(usize::MAX),
                len: usize::try_from(len).unwrap_or(usize::MAX),
            },
            Fault::NoSuchAttribute(name) => ManagerError::NoSuchAttribute(name),
            Fault::ValueMissing => ManagerError::ValueNotFound,
            Fault::NotOwner => ManagerError::NotOwner,
            Fault::NotAcquired => ManagerError::NotAcquired,
            Fault::BrokenBarrier => ManagerError::BrokenBarrier,
            Fault::UnknownType(name) => ManagerError::UnknownType(name),
            Fault::UnknownMethod { type_name, method } => ManagerError::UnknownMethod { type_name, method },
            Fault::MethodFailed(why) => ManagerError::MethodFailed(why),
            Fault::VersionChanged => ManagerError::Contended,
            Fault::Overflow(what) => ManagerError::Overflow(what),
            Fault::TooLarge { len, max } => ManagerError::TooLarge { len, max },
            Fault::ShutDown => ManagerError::ShutDown,
            Fault::Empty => ManagerError::Empty,
            Fault::Full => ManagerError::Full,
            Fault::TasksLost { lost } => ManagerError::TasksLost { lost },
            Fault::TypeMismatch { type_name } => ManagerError::TypeMismatch { type_name },
            Fault::ShuttingDown => ManagerError::ServerGone { reason: "the manager is shutting down".into() },
            other => ManagerError::Protocol(other.to_string()),
        }
    }
}

/// Why a [`QueueProxy`](crate::QueueProxy) put did not put: the item comes back, with
/// the reason ([`ManagerError::Full`] from `try_put`, [`ManagerError::Timeout`] from
/// `put_timeout`, [`ManagerError::ShutDown`], [`ManagerError::ServerGone`], ...), as the
/// family's [`PutError`](crate::PutError) gives its value back. `?` turns it into its
/// reason.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Manager, ManagerError};
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let q = manager.queue_bounded::<String>(1)?;
/// q.put("first".into())?;
/// let e = q.try_put("second".into()).unwrap_err();
/// assert!(matches!(e.reason(), ManagerError::Full));
/// assert_eq!(e.into_inner(), "second");
/// # Ok::<(), ManagerError>(())
/// ```
pub struct ProxyPutError<T> {
    item: T,
    reason: ManagerError,
}

impl<T> ProxyPutError<T> {
    pub(crate) fn new(item: T, reason: ManagerError) -> Self {
        Self { item, reason }
    }

    /// The item that was not put.
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.queue::<u32>()?;
    /// q.shutdown(false)?;
    /// assert_eq!(q.put(7).unwrap_err().into_inner(), 7);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn into_inner(self) -> T {
        self.item
    }

    /// Why it was not put.
    ///
    /// ```no_run
    /// use multiproc::ManagerError;
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.queue::<u32>()?;
    /// q.shutdown(false)?;
    /// assert!(matches!(q.put(7).unwrap_err().reason(), ManagerError::ShutDown));
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn reason(&self) -> &ManagerError {
        &self.reason
    }
}

impl<T> fmt::Debug for ProxyPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.reason, f)
    }
}

impl<T> fmt::Display for ProxyPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.reason, f)
    }
}

impl<T> std::error::Error for ProxyPutError<T> {}

impl<T> From<ProxyPutError<T>> for ManagerError {
    fn from(e: ProxyPutError<T>) -> ManagerError {
        e.reason
    }
}

impl<T> From<ProxyPutError<T>> for crate::Error {
    fn from(e: ProxyPutError<T>) -> crate::Error {
        e.reason.into()
    }
}
