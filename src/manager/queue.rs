//! `QueueProxy` and `JoinableQueueProxy`: queues kept by the manager's server.

use std::marker::PhantomData;
use std::ops::Deref;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{ManagerError, ProxyPutError};
use super::handle::{proxy_handle, wait_for};
use super::link::{ProxyCore, Ref, unexpected};
use super::protocol::{Fault, Item, Kind, Op, Out, Wait};
use crate::shm::crash::crash_point;

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
/// An item handed to a process's `get` that died before reading it (killed while its get
/// waited) is not lost, as it is in Python: the server, finding the process dead, takes the
/// answer back and puts the item at the front of the queue again (a task of a
/// [`JoinableQueueProxy`](crate::JoinableQueueProxy) is then nobody's, and is not told
/// lost to `join`). Two consequences: a bounded queue that filled meanwhile holds more
/// than its `maxsize` items for a while (refusing would lose the item), and items given back
/// together may come back in another order. A queue [`shutdown`](QueueProxy::shutdown) by
/// then takes the item back only while it still holds items for its consumers to drain;
/// shut down and empty (or shut down `immediate`), it takes nothing back: the item stays
/// the dead getter's (a task is told lost). An item the process read before it died is its
/// own, and lost with it.
///
/// So is an item handed to a `get` that gave up: one that returned
/// [`ManagerError::CallTimeout`] (see
/// [`ManagerBuilder::call_timeout`](crate::ManagerBuilder::call_timeout)), or failed
/// otherwise while it waited for its answer (the family's shared memory exhausted when it
/// asked the server whether it was there: [`ManagerError::HeapFull`]), did not take an
/// item, and an item the server hands it later, once it runs again, goes back to the front
/// of the queue when the server reads that the caller gave up (it follows the get on the
/// same ring), as for a dead getter. Not to the thread's next call: that may be no `get`,
/// of another queue, or never come, while other consumers wait.
///
/// A client connected over TCP ([`Manager::connect`](crate::Manager::connect)) has a
/// weaker guarantee: an answer written to its socket cannot be taken back, since the server
/// cannot know whether the client read it. An item handed to a remote `get` whose client
/// dies or disconnects (a `call_timeout` ends its connection) before reading it is lost,
/// as in Python, and a task of a joinable queue so taken is told lost to `join` (a remote
/// connection that ends loses every task it took); unless the server never wrote that
/// answer whole (it was queued behind answers the client had not read yet, and its socket
/// broke): then the client surely did not read it, and the item goes back to the front of
/// its queue, its task nobody's; several so taken go back in the order they were taken.
///
/// A `get` whose item this proxy cannot decode (it was put through a proxy of another
/// type, or its `Deserialize` refuses it) fails with [`ManagerError::Codec`] and took
/// nothing: the item goes back to the front of the queue, and a task of a joinable queue is
/// not the caller's (do not mark it done). So a consumer of the wrong type that tries again
/// takes the same front item again, and again fails; while it loops, the consumers that
/// could read the item may not get to it: take the error as the signal to stop. Other
/// threads of the client taking from the same queue meanwhile do not matter. If the queue
/// was shut down and emptied meanwhile, the item is dropped, and its task counted done. A
/// bounded queue that a waiting `put` filled meanwhile holds `maxsize + 1` items for a
/// while (refusing the item would lose it).
///
/// The item is lost, as in Python, in these cases only: the client dies between the
/// failed decoding and the give-back (a task is then told lost to `join`, as any dead
/// consumer's); the server cannot match the give-back, as it matches only the last take
/// from the queue of the thread that gives back: the item's own decoding took from the
/// same queue on the same thread (its `Deserialize` calling `get` on a proxy of this
/// queue: that take is now the thread's last, and the *outer* item is lost, whether or
/// not the nested get's own item came back), or the thread is one of a remote client's
/// whose take the server forgot (it keeps the last take from a queue of at most 64
/// threads of a connection); the server refuses it (an item larger than a remote server's
/// [`max_message_size`](crate::ManagerBuilder::max_message_size), which a family
/// producer's items are not bound by; a server shutting down); or it cannot be sent (the
/// family's shared memory exhausted). In each the caller still took nothing: on a
/// joinable queue the proxy marks the task done for it. Only if that fails too (the
/// server gone, the shared memory still exhausted) does the task stay the caller's until
/// its process ends, when it is told lost to `join`. A remote client whose connection
/// ended before the give-back was answered (a `call_timeout` ends it too) sends no
/// `task_done`: a give-back the server read before the close matched, and every task the
/// connection still held is told lost to `join` when the server sees it close.
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
///
/// A proxy of the wrong type takes nothing:
///
/// ```
/// use multiproc::{Manager, ManagerError, QueueProxy};
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let words = manager.queue::<String>()?;
/// manager.publish("words", &words)?;
/// let numbers: QueueProxy<u32> = manager.lookup("words")?;
/// words.put("one".to_string())?;
/// assert!(matches!(numbers.try_get(), Err(ManagerError::Codec(_))));
/// assert_eq!(words.try_get()?, "one"); // given back, to the front
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias = "Queue")]
pub struct QueueProxy<T> {
    core: ProxyCore,
    _types: PhantomData<fn(T) -> T>,
}

proxy_handle!(QueueProxy<T>, Kind::Queue);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// A put that waits `wait`; `waited` is what its wait running out is called (`Full`
    /// for `try_put`, `Timeout` for `put_timeout`).
    fn put_wait(&self, item: T, wait: Wait, waited: ManagerError) -> Result<(), ProxyPutError<T>> {
        let encoded = match self.core.encode(&item) {
            Ok(encoded) => encoded,
            Err(e) => return Err(ProxyPutError::new(item, e)),
        };
        match self.core.call_fault(Op::Put { item: encoded, wait }) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(Fault::Full)) => Err(ProxyPutError::new(item, waited)),
            Ok(Err(fault)) => Err(ProxyPutError::new(item, fault.into())),
            Err(e) => Err(ProxyPutError::new(item, e)),
        }
    }

    /// A get that waits `wait`; `waited` is what its wait running out is called (`Empty`
    /// for `try_get`, `Timeout` for `get_timeout`).
    fn get_wait(&self, wait: Wait, waited: ManagerError) -> Result<T, ManagerError> {
        match self.core.call_numbered(Op::Get { wait })? {
            (Ok(Out::Item(item)), seq) => {
                self.core.decode_taken(item).map_err(|(e, item)| self.give_back(seq, item, e.into()))
            }
            (Ok(other), _) => Err(unexpected(other)),
            (Err(Fault::Empty), _) => Err(waited),
            (Err(fault), _) => Err(fault.into()),
        }
    }

    /// The item of this thread's `get` numbered `taken`, which did not decode (`why`),
    /// given back to the queue's front (`Op::GiveBack`, on the connection that took it:
    /// the server matches it against the last take from the queue of this thread of the
    /// connection); returns `why`, whatever became of the item. The references the client
    /// holds for the item's proxies go only once the server counted the item's own, as a
    /// `put`'s (a proxy the failed decoding made dropped its reference already: `item`
    /// holds clones).
    ///
    /// The caller is told it took nothing, so on a joinable queue the task must not stay
    /// its own (review164 M1): when the server did not match the give-back (`false`: a get
    /// of the same queue made on this thread while the item was decoding took since, or
    /// the thread's take was forgotten), refused it whole (too large for a remote server's
    /// `max_message_size`, a reference gone, the server shutting down), or it surely never
    /// reached the server (the family's shared memory exhausted), the item is lost, as in
    /// Python, and this marks its task done. A give-back that was sent and whose call then
    /// failed (abandoned after a `call_timeout`, a remote connection that ended) is never
    /// marked done here: the server handles it before the connection's goodbye. Matched,
    /// the item is back at the front; not matched (the nested get above, in a corner of a
    /// corner), the task stays the caller's: a family process's until it ends, a remote
    /// connection's until its close, and then told lost to `join`.
    #[cold]
    fn give_back(&self, taken: u64, item: Item<Ref>, why: ManagerError) -> ManagerError {
        // A client killed here lost the item (its answer read, its decoding failed): the
        // server counted it taken, as before mgr106; its task is lost with the process.
        crash_point!("manager.queue.give_back");
        let Item { bytes, refs } = item;
        let ids = refs.iter().map(Ref::id).collect();
        let answer = self.core.call_fault_sent(Op::GiveBack { seq: taken, item: Item { bytes, refs: ids } });
        // Killed here, it gave the item back once: the server cleared the take it matched,
        // and the connection's close finds nothing unread.
        crash_point!("manager.queue.given_back");
        drop(refs);
        // `true`: the item at the front, or dropped by a queue shut down and empty with its
        // task counted done; either way the take is no longer this caller's.
        let still_taken = !matches!(answer, Ok(Ok(Out::Bool(true))) | Err((_, true)));
        if still_taken && self.core.kind == Kind::JoinableQueue {
            // Failing too (the server gone, the heap still full), the task stays the
            // caller's: told lost to `join` when its connection or process ends.
            let _ = self.core.call(Op::TaskDone);
        }
        // The error is the same whatever became of the item: the decoding's.
        why
    }

    /// Puts `item`, waiting while a bounded queue is full.
    ///
    /// # Errors
    ///
    /// The item comes back in a [`ProxyPutError`] whose reason is
    /// [`ManagerError::ShutDown`] after [`QueueProxy::shutdown`],
    /// [`ManagerError::ServerGone`] when the server is gone, or [`ManagerError::Codec`]
    /// when the item does not encode.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.queue::<String>()?;
    /// q.put("hello".to_string())?;
    /// assert_eq!(q.get()?, "hello");
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn put(&self, item: T) -> Result<(), ProxyPutError<T>> {
        self.put_wait(item, None, ManagerError::Protocol("an endless put found the queue full".into()))
    }

    /// Puts `item` if there is room now (`put_nowait`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Full`] when there is no room (the item comes back in the
    /// [`ProxyPutError`]), or as [`QueueProxy::put`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::ManagerError;
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.queue_bounded::<u32>(1)?;
    /// q.try_put(1)?;
    /// let e = q.try_put(2).unwrap_err();
    /// assert!(matches!(e.reason(), ManagerError::Full));
    /// assert_eq!(e.into_inner(), 2);
    /// # Ok::<(), ManagerError>(())
    /// ```
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<(), ProxyPutError<T>> {
        self.put_wait(item, Some(0), ManagerError::Full)
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Timeout`] when there was no room in time (the item comes back in
    /// the [`ProxyPutError`]), or as [`QueueProxy::put`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiproc::ManagerError;
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.queue_bounded::<u32>(1)?;
    /// q.put(1)?;
    /// let e = q.put_timeout(2, Duration::from_millis(10)).unwrap_err();
    /// assert!(matches!(e.reason(), ManagerError::Timeout));
    /// # Ok::<(), ManagerError>(())
    /// ```
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), ProxyPutError<T>> {
        self.put_wait(item, wait_for(timeout), ManagerError::Timeout)
    }

    /// Takes the next item, waiting for one (as long as it takes, even when no proxy is
    /// left that could put: see the type's documentation).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ShutDown`] after [`QueueProxy::shutdown`] once the queue is empty,
    /// [`ManagerError::ServerGone`] when the server is gone, [`ManagerError::Codec`] when
    /// the item is not a `T` (it goes back to the front of the queue, or in a few cases is
    /// lost; either way the caller took nothing, and a task of a joinable queue is not its
    /// own: see the type's documentation).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.queue::<u32>()?;
    /// q.put(5)?;
    /// assert_eq!(q.get()?, 5);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn get(&self) -> Result<T, ManagerError> {
        self.get_wait(None, ManagerError::Protocol("an endless get found the queue empty".into()))
    }

    /// Takes the next item if there is one now (`get_nowait`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Empty`] when there is none (the family's
    /// [`TryGetError::Empty`](crate::TryGetError::Empty)), or as [`QueueProxy::get`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::ManagerError;
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.queue::<u32>()?;
    /// assert!(matches!(q.try_get(), Err(ManagerError::Empty)));
    /// q.put(1)?;
    /// assert_eq!(q.try_get()?, 1);
    /// # Ok::<(), ManagerError>(())
    /// ```
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, ManagerError> {
        self.get_wait(Some(0), ManagerError::Empty)
    }

    /// Takes the next item, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Timeout`] when none came in time, or as [`QueueProxy::get`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiproc::ManagerError;
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.queue::<u32>()?;
    /// assert!(matches!(q.get_timeout(Duration::from_millis(10)), Err(ManagerError::Timeout)));
    /// # Ok::<(), ManagerError>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, ManagerError> {
        self.get_wait(wait_for(timeout), ManagerError::Timeout)
    }

    /// Shuts the queue down for every proxy (Python 3.13's `Queue.shutdown`): puts fail
    /// with `ShutDown` from now on (the [`ProxyPutError`] gives the item back); gets
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
    /// use multiproc::{Manager, ManagerError};
    ///
    /// multiproc::init();
    /// let manager = Manager::start()?;
    /// let q = manager.queue::<u32>()?;
    /// q.put(1)?;
    /// q.shutdown(false)?;
    /// assert!(matches!(q.try_put(2).unwrap_err().reason(), ManagerError::ShutDown));
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
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.queue::<u32>()?;
    /// assert!(!q.is_shutdown()?);
    /// q.shutdown(false)?;
    /// assert!(q.is_shutdown()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
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

    /// How many items wait (a snapshot: other processes keep going), as
    /// [`Queue::len`](crate::Queue::len).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.queue::<u32>()?;
    /// q.put(1)?;
    /// assert_eq!(q.len()?, 1);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "qsize")]
    pub fn len(&self) -> Result<usize, ManagerError> {
        Ok(self.sizes()?.0 as usize)
    }

    /// Whether no item waits (a snapshot), as [`Queue::is_empty`](crate::Queue::is_empty).
    ///
    /// # Errors
    ///
    /// As [`QueueProxy::len`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.queue::<u32>()?;
    /// assert!(q.is_empty()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.sizes()?.0 == 0)
    }

    /// Whether a bounded queue is full (a snapshot), as
    /// [`Queue::is_full`](crate::Queue::is_full).
    ///
    /// # Errors
    ///
    /// As [`QueueProxy::len`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.queue_bounded::<u32>(1)?;
    /// q.put(1)?;
    /// assert!(q.is_full()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "full")]
    pub fn is_full(&self) -> Result<bool, ManagerError> {
        let (len, max) = self.sizes()?;
        Ok(max != 0 && len >= max)
    }

    /// The bound given at creation (`None`: unbounded), as
    /// [`Queue::maxsize`](crate::Queue::maxsize).
    ///
    /// # Errors
    ///
    /// As [`QueueProxy::len`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// assert_eq!(manager.queue_bounded::<u32>(3)?.maxsize()?, Some(3));
    /// assert_eq!(manager.queue::<u32>()?.maxsize()?, None);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn maxsize(&self) -> Result<Option<usize>, ManagerError> {
        let (_, max) = self.sizes()?;
        Ok((max != 0).then_some(max as usize))
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
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.joinable_queue::<u32>()?;
    /// assert!(q.same_object(&q.clone()));
    /// assert!(!q.same_object(&manager.joinable_queue::<u32>()?));
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
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
    /// [`ManagerError::TaskDone`] when called more often than items were put (Python's
    /// `ValueError`: "task_done() called too many times"), [`ManagerError::ServerGone`]
    /// when the server is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ManagerError;
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.joinable_queue::<u32>()?;
    /// q.put(1)?;
    /// let _item = q.get()?;
    /// q.task_done()?;
    /// assert!(matches!(q.task_done(), Err(ManagerError::TaskDone(_)))); // one more than put
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn task_done(&self) -> Result<(), ManagerError> {
        // The server's count answers as a semaphore's: released more often than acquired.
        self.core.call(Op::TaskDone).map(drop).map_err(|e| match e {
            ManagerError::NotAcquired => crate::TaskDoneError.into(),
            e => e,
        })
    }

    /// Waits until every item put was confirmed.
    ///
    /// Tasks are counted per client (a family process, or a remote connection), as the
    /// family's `JoinableQueue` counts them: a `get` counts one more for its client, a
    /// `task_done` one less for its own, below zero for a client that marks done tasks
    /// another took (a task handed over). A client that dies leaves its count lost; a
    /// count below zero of a live client makes up for as many lost (it finished them), and
    /// it never makes another live client's task lost.
    ///
    /// # Errors
    ///
    /// [`ManagerError::TasksLost`] when every unfinished item was taken by a client that
    /// then died without marking it done (as the family's
    /// [`QueueJoinError::TasksLost`](crate::QueueJoinError::TasksLost); Python's `join`
    /// waits for ever); [`ManagerError::ServerGone`] when the server is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.joinable_queue::<u32>()?;
    /// q.put(1)?;
    /// assert_eq!(q.get()?, 1);
    /// q.task_done()?;
    /// q.join()?; // every item put was confirmed: returns at once
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn join(&self) -> Result<(), ManagerError> {
        self.core.call(Op::Join { wait: None }).map(drop)
    }

    /// Like [`join`](JoinableQueueProxy::join), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Timeout`] when items were still unfinished at the timeout (the
    /// family's [`QueueJoinTimeoutError::Timeout`](crate::QueueJoinTimeoutError::Timeout)),
    /// or as [`join`](JoinableQueueProxy::join).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiproc::ManagerError;
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.joinable_queue::<u32>()?;
    /// q.put(1)?;
    /// assert!(matches!(q.join_timeout(Duration::from_millis(10)), Err(ManagerError::Timeout)));
    /// q.get()?;
    /// q.task_done()?;
    /// q.join_timeout(Duration::from_secs(10))?;
    /// # Ok::<(), ManagerError>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), ManagerError> {
        match self.core.call(Op::Join { wait: wait_for(timeout) })? {
            Out::Bool(true) => Ok(()),
            Out::Bool(false) => Err(ManagerError::Timeout),
            other => Err(unexpected(other)),
        }
    }
}
