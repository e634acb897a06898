//! What can go wrong with a manager or one of its proxies.

use std::io;

use super::protocol::Fault;
use crate::codec::CodecError;
use crate::shm::HeapFull;

/// Why a manager, or a call through one of its proxies, failed.
///
/// The variants named after a Python exception are what the server answered
/// (`IndexOutOfRange` is Python's `IndexError`, ...); [`ManagerError::ServerGone`] is what
/// every call returns once the server has been shut down or its process has ended, instead
/// of waiting forever.
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
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The server was shut down, or its process ended (killed, crashed), or the remote
    /// connection broke.
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
        index: i64,
        /// The length at the time.
        len: u64,
    },
    /// No such attribute in a namespace (Python's `AttributeError`).
    #[doc(alias = "AttributeError")]
    #[error("the namespace has no attribute '{0}'")]
    NoSuchAttribute(String),
    /// The value is not in the list (Python's `ValueError` of `index`).
    #[error("the value is not in the list")]
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
    TimedOut(String),
    /// The peer broke the protocol (a malformed message, an unexpected answer).
    #[error("protocol error: {0}")]
    Protocol(String),
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
            Fault::IndexOutOfRange { index, len } => ManagerError::IndexOutOfRange { index, len },
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
            Fault::ShuttingDown => ManagerError::ServerGone { reason: "the manager is shutting down".into() },
            other => ManagerError::Protocol(other.to_string()),
        }
    }
}

/// Why [`QueueProxy::try_put`](crate::QueueProxy::try_put) or
/// [`put_timeout`](crate::QueueProxy::put_timeout) did not put: the item comes back.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Manager, ProxyPutError};
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let q = manager.queue_bounded::<String>(1)?;
/// q.put("first".into())?;
/// match q.try_put("second".into()) {
///     Err(ProxyPutError::Full(item)) => assert_eq!(item, "second"),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ProxyPutError<T> {
    /// The queue was full (for the whole timeout).
    #[error("the queue is full")]
    Full(T),
    /// The queue was shut down ([`QueueProxy::shutdown`](crate::QueueProxy::shutdown)).
    #[error("the queue is shut down")]
    ShutDown(T),
    /// The manager failed.
    #[error(transparent)]
    Manager(ManagerError),
}

impl<T> ProxyPutError<T> {
    /// The item that was not put, if the queue was full or shut down.
    pub fn into_inner(self) -> Option<T> {
        match self {
            ProxyPutError::Full(item) | ProxyPutError::ShutDown(item) => Some(item),
            ProxyPutError::Manager(_) => None,
        }
    }
}
