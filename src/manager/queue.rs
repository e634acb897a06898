//! `QueueProxy` and `JoinableQueueProxy`: queues kept by the manager's server.

use std::marker::PhantomData;
use std::ops::Deref;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{ManagerError, ProxyPutError};
use super::handle::{proxy_handle, wait_for};
use super::link::{ProxyCore, unexpected};
use super::protocol::{Fault, Kind, Op, Out, Wait};

/// A FIFO queue kept by a manager's server (Python's `manager.Queue(maxsize)`): any
/// process holding the proxy (or connected to a remote manager) puts and gets.
///
/// A blocking `get` or `put` waits on the server, not in a loop: it is answered as soon
/// as it can be, or when its timeout passes. If the server goes away, it returns
/// [`ManagerError::ServerGone`] instead of waiting forever.
///
/// Unlike the family's [`Queue`](crate::Queue), a `get` does not end when nobody is left
/// who could put: the server cannot know that, since a proxy may be anywhere (held in any
/// process, stored in a managed container, published under a name for a client that has
/// yet to connect), so every proxy of the queue waiting in `get` still waits, as in
/// Python. Where producers may end without a word, wait with
/// [`get_timeout`](QueueProxy::get_timeout) or have them put a sentinel.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Manager, Process, QueueProxy};
///
/// fn produce(q: QueueProxy<String>) {
///     for i in 0..3 {
///         q.put(format!("item {i}")).unwrap();
///     }
/// }
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let q = manager.queue::<String>()?;
/// let child = Process::new(produce, q.clone()).start()?;
/// for i in 0..3 {
///     assert_eq!(q.get()?, format!("item {i}"));
/// }
/// child.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias = "Queue")]
pub struct QueueProxy<T> {
    core: ProxyCore,
    _types: PhantomData<fn(T) -> T>,
}

proxy_handle!(QueueProxy<T>, Kind::Queue);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    fn put_wait(&self, item: T, wait: Wait) -> Result<(), ProxyPutError<T>> {
        let encoded = self.core.encode(&item).map_err(ProxyPutError::Manager)?;
        match self.core.call_fault(Op::Put { item: encoded, wait }) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(Fault::Full)) => Err(ProxyPutError::Full(item)),
            Ok(Err(Fault::ShutDown)) => Err(ProxyPutError::ShutDown(item)),
            Ok(Err(fault)) => Err(ProxyPutError::Manager(fault.into())),
            Err(e) => Err(ProxyPutError::Manager(e)),
        }
    }

    fn get_wait(&self, wait: Wait) -> Result<Option<T>, ManagerError> {
        match self.core.call_fault(Op::Get { wait })? {
            Ok(Out::Item(item)) => Ok(Some(self.core.decode(item)?)),
            Ok(other) => Err(unexpected(other)),
            Err(Fault::Empty) => Ok(None),
            Err(fault) => Err(fault.into()),
        }
    }

    /// Puts `item`, waiting while a bounded queue is full.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ShutDown`] after [`QueueProxy::shutdown`],
    /// [`ManagerError::ServerGone`] when the server is gone, [`ManagerError::Codec`] when
    /// the item does not encode.
    pub fn put(&self, item: T) -> Result<(), ManagerError> {
        self.put_wait(item, None).map_err(|e| match e {
            ProxyPutError::Full(_) => ManagerError::Protocol("an endless put found the queue full".into()),
            ProxyPutError::ShutDown(_) => ManagerError::ShutDown,
            ProxyPutError::Manager(e) => e,
        })
    }

    /// Puts `item` if there is room now (`put_nowait`); else gives it back in
    /// [`ProxyPutError::Full`].
    ///
    /// # Errors
    ///
    /// [`ProxyPutError::Full`] with the item, or [`ProxyPutError::Manager`].
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<(), ProxyPutError<T>> {
        self.put_wait(item, Some(0))
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`ProxyPutError::Full`] with the item when there was no room in time, or
    /// [`ProxyPutError::Manager`].
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), ProxyPutError<T>> {
        self.put_wait(item, wait_for(timeout))
    }

    /// Takes the next item, waiting for one (as long as it takes, even when no proxy is
    /// left that could put: see the type's documentation).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ShutDown`] after [`QueueProxy::shutdown`] once the queue is empty,
    /// [`ManagerError::ServerGone`] when the server is gone, [`ManagerError::Codec`] when
    /// the item is not a `T`.
    pub fn get(&self) -> Result<T, ManagerError> {
        self.get_wait(None)?.ok_or_else(|| ManagerError::Protocol("an endless get found the queue empty".into()))
    }

    /// Takes the next item if there is one now (`get_nowait`).
    ///
    /// # Errors
    ///
    /// As [`QueueProxy::get`].
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<Option<T>, ManagerError> {
        self.get_wait(Some(0))
    }

    /// Takes the next item, waiting at most `timeout`; `None` if none came.
    ///
    /// # Errors
    ///
    /// As [`QueueProxy::get`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>, ManagerError> {
        self.get_wait(wait_for(timeout))
    }

    /// Shuts the queue down for every proxy (Python 3.13's `Queue.shutdown`): puts fail
    /// with `ShutDown` from now on ([`ProxyPutError::ShutDown`] gives the item back); gets
    /// take what is left, then fail with [`ManagerError::ShutDown`]. With `immediate`, the
    /// items left are dropped at once (counted done on a joinable queue, so a `join`
    /// returns once the tasks taken are done). Every waiting get and put, in any process
    /// or remote client, is answered with `ShutDown`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::{Manager, ManagerError, ProxyPutError};
    ///
    /// multiproc::init();
    /// let manager = Manager::start()?;
    /// let q = manager.queue::<u32>()?;
    /// q.put(1)?;
    /// q.shutdown(false)?;
    /// assert!(matches!(q.try_put(2), Err(ProxyPutError::ShutDown(2))));
    /// assert_eq!(q.get()?, 1);
    /// assert!(matches!(q.get(), Err(ManagerError::ShutDown)));
    /// assert!(q.is_shutdown()?);
    /// # Ok::<(), ManagerError>(())
    /// ```
    pub fn shutdown(&self, immediate: bool) -> Result<(), ManagerError> {
        self.core.call(Op::QueueShutdown { immediate }).map(drop)
    }

    /// Whether [`QueueProxy::shutdown`] was called (through any proxy).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    pub fn is_shutdown(&self) -> Result<bool, ManagerError> {
        match self.core.call(Op::QueueIsShutdown)? {
            Out::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    fn sizes(&self) -> Result<(u64, u64), ManagerError> {
        match self.core.call(Op::QSize)? {
            Out::Sizes { len, max } => Ok((len, max)),
            other => Err(unexpected(other)),
        }
    }

    /// How many items wait (a snapshot: other processes keep going).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    pub fn qsize(&self) -> Result<usize, ManagerError> {
        Ok(self.sizes()?.0 as usize)
    }

    /// Whether no item waits (a snapshot).
    ///
    /// # Errors
    ///
    /// As [`QueueProxy::qsize`].
    pub fn empty(&self) -> Result<bool, ManagerError> {
        Ok(self.sizes()?.0 == 0)
    }

    /// Whether a bounded queue is full (a snapshot).
    ///
    /// # Errors
    ///
    /// As [`QueueProxy::qsize`].
    pub fn full(&self) -> Result<bool, ManagerError> {
        let (len, max) = self.sizes()?;
        Ok(max != 0 && len >= max)
    }
}

/// A queue whose consumers confirm each item (Python's `manager.JoinableQueue()`):
/// [`task_done`](JoinableQueueProxy::task_done) per item taken, and
/// [`join`](JoinableQueueProxy::join) waits until every item put was confirmed. It has
/// every method of [`QueueProxy`].
///
/// # Examples
///
/// ```no_run
/// use multiproc::{JoinableQueueProxy, Manager, Process};
///
/// fn work(q: JoinableQueueProxy<u32>) {
///     while let Ok(n) = q.get() {
///         println!("done {n}");
///         q.task_done().unwrap();
///     }
/// }
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let q = manager.joinable_queue::<u32>()?;
/// let worker = Process::new(work, q.clone()).daemon(true).start()?;
/// for n in 0..5 {
///     q.put(n)?;
/// }
/// q.join()?;
/// worker.kill()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias = "JoinableQueue")]
pub struct JoinableQueueProxy<T> {
    core: ProxyCore,
    _types: PhantomData<fn(T) -> T>,
    queue: QueueProxy<T>,
}

impl<T> JoinableQueueProxy<T> {
    pub(crate) fn from_core(core: ProxyCore) -> Self {
        Self { queue: QueueProxy::from_core(core.clone()), core, _types: PhantomData }
    }

    /// Whether two proxies refer to the same queue.
    pub fn same_object(&self, other: &Self) -> bool {
        self.core.same(&other.core)
    }
}

proxy_handle!(@traits JoinableQueueProxy<T>, Kind::JoinableQueue);

impl<T> Deref for JoinableQueueProxy<T> {
    type Target = QueueProxy<T>;

    fn deref(&self) -> &QueueProxy<T> {
        &self.queue
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueueProxy<T> {
    /// Confirms one item taken with `get`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::NotAcquired`] when called more often than items were put (Python's
    /// `ValueError`), [`ManagerError::ServerGone`] when the server is gone.
    pub fn task_done(&self) -> Result<(), ManagerError> {
        self.core.call(Op::TaskDone).map(drop)
    }

    /// Waits until every item put was confirmed.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    pub fn join(&self) -> Result<(), ManagerError> {
        self.core.call(Op::Join { wait: None }).map(drop)
    }

    /// Like [`join`](JoinableQueueProxy::join), waiting at most `timeout`; whether every
    /// item was confirmed.
    ///
    /// # Errors
    ///
    /// As [`join`](JoinableQueueProxy::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        match self.core.call(Op::Join { wait: wait_for(timeout) })? {
            Out::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }
}
