//! [`Queue`]: Python's `multiprocessing.Queue`, many producers and consumers in any
//! processes of the family.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::channel::{Channel, Flavor};
use super::error::{Failure, GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError};
use super::joinable::JoinableQueue;
use crate::codec;
use crate::error::Error;
use crate::shm::{Deadline, Limits, Shared};

/// A queue of `T` shared by the processes of a family (Python's `multiprocessing.Queue`).
///
/// Any process holding a handle may [`put`](Queue::put) and [`get`](Queue::get); messages
/// from one producer come out in the order they were put. Values travel encoded (serde,
/// postcard) through shared memory: a `put` copies its message in and returns, whatever
/// its size (an int or a gigabyte), without a feeder thread, so a producer that exits right
/// after its last `put` neither blocks nor loses anything (Python's `join_thread` deadlock
/// cannot happen).
///
/// **Capacity.** `Queue::new()` is unbounded: it holds as many messages as the family's
/// shared memory can (it grows by segments as needed and gives them back as they are
/// read), and a `put` fails only with [`PutError::HeapFull`] when that is exhausted.
/// [`Queue::with_maxsize`] bounds it by items (Python's `maxsize`), and
/// [`QueueBuilder::max_bytes`] by bytes; then `put` waits for room.
///
/// **Nothing hangs.** A `get` on an empty queue waits while a handle exists that could
/// still put: one in a message, or one held by a live process that is not itself waiting
/// in `get` on this queue. When none does (the producers dropped their handles, closed
/// them, or died, and every handle left is waiting in `get`), nobody can ever put again,
/// and every waiting `get` returns [`GetError::Disconnected`] once the queue is drained,
/// instead of waiting forever (checked while it waits, within ~100 ms). Likewise a `put`
/// waiting for room in a full queue that no consumer can reach. Give each thread that
/// uses a queue its own clone: a process counts as waiting when as many of its gets wait
/// as it holds handles. (Up to 32 processes at once are counted waiting; beyond that,
/// a `get` is `Disconnected` only when no other handle exists.) For disconnection by
/// construction, [`Queue::pair`] makes a queue whose handles are either
/// [`Producer`](crate::Producer)s or [`Consumer`](crate::Consumer)s.
///
/// **A handle.** Clone it, pass it to a child, send it through another queue or a pipe;
/// the queue lives while a handle does, and the process that drops the last one anywhere
/// frees it (and the messages left in it). A handle in one of the queue's own messages
/// counts too: a queue whose only handles are inside itself (a cycle, as with `Arc`) is
/// freed only when the family ends. A process killed in the middle of a `put` or a
/// `get` does not corrupt it: the others carry on (a message a consumer was killed while
/// taking, at any moment before its `get` returned, stays in the queue for the next one).
///
/// Raw bytes, as `Vec<u8>` or `serde_bytes::ByteBuf`, travel as one copy into shared
/// memory and one out. Big data read by many, or sent often, is best made a
/// [`SharedBytes`](crate::SharedBytes): its handle crosses, and the bytes are read in place.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Process, Queue};
///
/// fn producer(q: Queue<String>) {
///     for i in 0..3 {
///         q.put(format!("bun {i}")).unwrap();
///     }
/// }
///
/// multiproc::init();
/// let q = Queue::new()?;
/// let p = Process::new(producer, q.clone()).start()?;
/// for _ in 0..3 {
///     println!("ate {}", q.get()?);
/// }
/// p.join()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.Queue")]
pub struct Queue<T> {
    pub(super) ch: Option<Channel<T>>,
    /// The bound on items of the queue, once this handle is closed (0: none, or open): a
    /// closed handle still says the bound its queue was made with (que103; aud102 L5).
    closed_maxsize: usize,
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue (see the type's docs for what that means).
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::new()?;
    /// q.put(1u8)?;
    /// assert_eq!(q.get()?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Result<Self, Error> {
        Self::builder().build()
    }

    /// A queue that holds at most `maxsize` items (Python's `Queue(maxsize)`); `0` means
    /// unbounded, as in Python (Python's `maxsize <= 0`): not a queue that nothing fits in.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::with_maxsize(2)?;
    /// q.put('a')?;
    /// q.put('b')?;
    /// assert!(q.is_full());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_maxsize(maxsize: usize) -> Result<Self, Error> {
        Self::builder().maxsize(maxsize).build()
    }

    /// A builder for a queue with limits.
    ///
    /// ```
    /// use multiproc::Queue;
    ///
    /// multiproc::init();
    /// let q: Queue<Vec<u8>> = Queue::builder().maxsize(100).max_bytes(1 << 20).build()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn builder() -> QueueBuilder<Self> {
        QueueBuilder::new()
    }

    fn ch(&self) -> Result<&Channel<T>, Failure> {
        self.ch.as_ref().ok_or(Failure::Closed)
    }

    /// Puts `value` at the back of the queue, waiting while a bounded queue is full.
    ///
    /// # Errors
    ///
    /// With the value back: [`PutError::Closed`] after [`Queue::close`];
    /// [`PutError::ShutDown`] after [`Queue::shutdown`];
    /// [`PutError::Disconnected`] when the queue is full and no other handle exists (nobody
    /// could make room); [`PutError::TooLarge`] when the message exceeds the queue's byte
    /// capacity; [`PutError::Encode`]; [`PutError::HeapFull`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::new()?;
    /// q.put(vec![1, 2, 3])?;
    /// assert_eq!(q.get()?, [1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_until(value, Deadline::NEVER).map_err(|(v, f)| PutError::from_failure(v, f))
    }

    /// Puts `value` if there is room now.
    ///
    /// # Errors
    ///
    /// [`TryPutError::Full`] with the value, or the errors of [`Queue::put`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Queue, TryPutError};
    ///
    /// multiproc::init();
    /// let q = Queue::with_maxsize(1)?;
    /// q.try_put(1)?;
    /// assert!(matches!(q.try_put(2), Err(TryPutError::Full(2))));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, value: T) -> Result<(), TryPutError<T>> {
        self.put_until(value, Deadline::now()).map_err(|(v, f)| TryPutError::from_failure(v, f))
    }

    /// Puts `value`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`PutTimeoutError::Timeout`] with the value, or the errors of [`Queue::put`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// multiproc::init();
    /// let q = multiproc::Queue::with_maxsize(1)?;
    /// q.put_timeout(1, Duration::from_millis(100))?;
    /// assert!(q.put_timeout(2, Duration::from_millis(10)).is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        self.put_until(value, Deadline::after(timeout)).map_err(|(v, f)| PutTimeoutError::from_failure(v, f))
    }

    fn put_until(&self, value: T, deadline: Deadline) -> Result<(), (T, Failure)> {
        match self.ch().and_then(|ch| ch.put(&value, deadline)) {
            Ok(()) => Ok(()),
            Err(f) => Err((value, f)),
        }
    }

    /// Takes the item at the front of the queue, waiting until one comes.
    ///
    /// # Errors
    ///
    /// [`GetError::Disconnected`] when the queue is empty and no handle that could put is
    /// left: none exists but this one, or all are waiting in `get` (see the type's docs).
    /// Handles are counted, not threads: a thread that puts through a reference to this
    /// very handle (an `Arc`, a scoped thread) is not seen, so give each thread a clone of
    /// its own;
    /// [`GetError::Closed`] after [`Queue::close`];
    /// [`GetError::ShutDown`] after [`Queue::shutdown`], once the queue is empty;
    /// [`GetError::Decode`] when the message does not decode as a `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::new()?;
    /// q.put("hello".to_string())?;
    /// assert_eq!(q.get()?, "hello");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self) -> Result<T, GetError> {
        self.ch().and_then(|ch| ch.get(Deadline::NEVER)).map_err(GetError::from_failure)
    }

    /// Takes the item at the front of the queue if there is one. Does not look for the
    /// other holders (which reads `/proc`): an empty queue is [`TryGetError::Empty`].
    ///
    /// # Errors
    ///
    /// [`TryGetError::Empty`], [`TryGetError::Closed`], [`TryGetError::Decode`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Queue, TryGetError};
    ///
    /// multiproc::init();
    /// let q = Queue::new()?;
    /// assert_eq!(q.try_get(), Err(TryGetError::Empty));
    /// q.put(5)?;
    /// assert_eq!(q.try_get(), Ok(5));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, TryGetError> {
        self.ch().and_then(|ch| ch.get(Deadline::now())).map_err(TryGetError::from_failure)
    }

    /// Takes the item at the front of the queue, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`GetTimeoutError::Timeout`], or the errors of [`Queue::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// multiproc::init();
    /// let q = multiproc::Queue::new()?;
    /// q.put(1)?;
    /// assert_eq!(q.get_timeout(Duration::from_secs(1))?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.ch().and_then(|ch| ch.get(Deadline::after(timeout))).map_err(GetTimeoutError::from_failure)
    }

    /// Shuts the queue down, for every handle in every process (Python 3.13's
    /// `Queue.shutdown(immediate)`): from now on every put fails with `ShutDown`
    /// ([`PutError::ShutDown`], the value given back), and a get takes what is left, then
    /// fails with [`GetError::ShutDown`] once the queue is empty. Every waiter wakes: a
    /// put waiting for room with `ShutDown`, a get waiting on the empty queue with
    /// `ShutDown`.
    ///
    /// With `immediate`, the items left are taken out and dropped at once (their memory
    /// freed, the handles inside them released), so every get fails with `ShutDown` right
    /// away; on a [`JoinableQueue`] each of them counts as a task done, so a `join`
    /// returns once the tasks taken before are marked done (see
    /// [`JoinableQueue::shutdown`]). A get in progress in another process (its message
    /// being decoded) is waited for, and its item is its own; one whose process is stopped
    /// (`SIGSTOP`, a debugger) is not, and what is left behind it is drained by the next
    /// get, `join` or `shutdown` that finds the drain undone. A second call does nothing
    /// more, except that `immediate` drains a queue shut down without it.
    ///
    /// A process killed inside `shutdown` leaves the queue shut down or not, never half:
    /// puts are refused from its first step on, and the first get, put or `shutdown` that
    /// finds the rest undone finishes it. Does nothing on a closed handle.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{GetError, PutError, Queue};
    ///
    /// multiproc::init();
    /// let q = Queue::new()?;
    /// q.put(1)?;
    /// q.put(2)?;
    /// q.shutdown(false);
    /// assert!(matches!(q.put(3), Err(PutError::ShutDown(3))));
    /// assert_eq!(q.get()?, 1); // what is left is still there
    /// q.shutdown(true); // now drop it
    /// assert_eq!(q.get(), Err(GetError::ShutDown));
    /// assert!(q.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn shutdown(&self, immediate: bool) {
        if let Some(ch) = &self.ch {
            ch.shutdown(immediate);
        }
    }
}

impl<T> Queue<T> {
    /// An open handle of `ch`.
    pub(super) fn of(ch: Channel<T>) -> Self {
        Self { ch: Some(ch), closed_maxsize: 0 }
    }

    pub(crate) fn channel(&self) -> Option<&Channel<T>> {
        self.ch.as_ref()
    }

    /// How many items are in the queue: a snapshot, which other processes may change at
    /// once (0 for a closed handle).
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::new()?;
    /// q.put(1)?;
    /// q.put(2)?;
    /// assert_eq!(q.len(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        self.ch.as_ref().map_or(0, |ch| ch.ring().len() as usize)
    }

    /// Whether the queue is empty (a snapshot).
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::<u8>::new()?;
    /// assert!(q.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`Queue::shutdown`] was called on the queue, through any handle in any
    /// process (false for a closed handle).
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::<u8>::new()?;
    /// let other = q.clone();
    /// assert!(!q.is_shutdown());
    /// other.shutdown(false);
    /// assert!(q.is_shutdown());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_shutdown(&self) -> bool {
        self.ch.as_ref().is_some_and(Channel::is_shut_down)
    }

    /// Whether a bounded queue is full (a snapshot); never for an unbounded one.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::with_maxsize(1)?;
    /// q.put(())?;
    /// assert!(q.is_full());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "full")]
    pub fn is_full(&self) -> bool {
        self.ch.as_ref().is_some_and(|ch| ch.ring().is_full())
    }

    /// The bound on items, if any (Python's `maxsize`; `None` for unbounded). The bound
    /// the queue was made with, on a closed handle too (as Python's `_maxsize` after
    /// `close()`).
    ///
    /// ```
    /// multiproc::init();
    /// assert_eq!(multiproc::Queue::<u8>::with_maxsize(3)?.maxsize(), Some(3));
    /// assert_eq!(multiproc::Queue::<u8>::new()?.maxsize(), None);
    /// let mut q = multiproc::Queue::<u8>::with_maxsize(2)?;
    /// q.close();
    /// assert_eq!(q.maxsize(), Some(2));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn maxsize(&self) -> Option<usize> {
        match &self.ch {
            Some(ch) => ch.maxsize(),
            None => (self.closed_maxsize != 0).then_some(self.closed_maxsize),
        }
    }

    /// Closes this handle: it lets go of the queue now (the queue itself lives on while
    /// other handles exist), and every later call on it fails with `Closed`. When no
    /// handle is left anywhere, consumers see the queue disconnected. Dropping a handle
    /// does the same.
    ///
    /// ```
    /// use multiproc::{GetError, Queue};
    ///
    /// multiproc::init();
    /// let mut q = Queue::<u8>::new()?;
    /// q.close();
    /// assert_eq!(q.get(), Err(GetError::Closed));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&mut self) {
        if let Some(ch) = self.ch.take() {
            self.closed_maxsize = ch.maxsize().unwrap_or(0);
        }
    }

    /// Whether [`Queue::close`] was called on this handle.
    ///
    /// ```
    /// multiproc::init();
    /// let mut q = multiproc::Queue::<u8>::new()?;
    /// assert!(!q.is_closed());
    /// q.close();
    /// assert!(q.is_closed());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.ch.is_none()
    }
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Self { ch: self.ch.clone(), closed_maxsize: self.closed_maxsize }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ch {
            Some(ch) => f
                .debug_struct("Queue")
                .field("offset", &ch.shared().offset())
                .field("len", &self.len())
                .field("maxsize", &self.maxsize())
                .finish(),
            None => f.write_str("Queue(closed)"),
        }
    }
}

/// Serializes a queue handle (for the family's channels only; a closed one cannot travel).
pub(crate) fn serialize_handle<T, S: Serializer>(ch: Option<&Channel<T>>, serializer: S) -> Result<S::Ok, S::Error> {
    match ch {
        Some(ch) => ch.serialize(serializer),
        None => Err(codec::refuse_encoding("a closed queue cannot be sent")),
    }
}

/// Deserializes a queue handle, checking that it was made for this flavor and type.
pub(crate) fn deserialize_handle<'de, T: Serialize + DeserializeOwned, D: Deserializer<'de>>(
    deserializer: D,
    flavor: Flavor,
) -> Result<Channel<T>, D::Error> {
    let shared = Shared::deserialize(deserializer)?;
    Channel::from_shared(shared, flavor).map_err(codec::refuse_decoding)
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_handle(self.ch.as_ref(), serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::of(deserialize_handle(deserializer, Flavor::Queue)?))
    }
}

/// Configures a [`Queue`] or a [`JoinableQueue`] before creating it.
///
/// ```
/// use multiproc::{JoinableQueue, Queue};
///
/// multiproc::init();
/// let q: Queue<String> = Queue::builder().maxsize(10).build()?;
/// let jq: JoinableQueue<String> = JoinableQueue::builder().max_bytes(64 << 20).build()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "a builder does nothing until built"]
pub struct QueueBuilder<Q> {
    limits: Limits,
    _queue: PhantomData<fn() -> Q>,
}

impl<Q> QueueBuilder<Q> {
    pub(crate) fn new() -> Self {
        Self { limits: Limits::default(), _queue: PhantomData }
    }

    /// At most `maxsize` items in the queue (Python's `maxsize`); `0`, the default, means
    /// no bound on items (as Python's `maxsize <= 0`), not that nothing fits.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::<u8>::builder().maxsize(5).build()?;
    /// assert_eq!(q.maxsize(), Some(5));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn maxsize(mut self, maxsize: usize) -> Self {
        self.limits.items = maxsize as u64;
        self
    }

    /// At most `max_bytes` bytes of encoded messages in the queue; `0`, the default, means
    /// no bound on bytes, not that nothing fits: `max_bytes(0)` takes a message of any size
    /// (aud109 L2). A message larger than a bound alone is refused with
    /// [`PutError::TooLarge`].
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::<Vec<u8>>::builder().max_bytes(1 << 20).build()?;
    /// q.put(vec![0; 1000])?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.limits.bytes = max_bytes as u64;
        self
    }
}

impl<T: Serialize + DeserializeOwned> QueueBuilder<Queue<T>> {
    /// Creates the queue.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// ```
    /// multiproc::init();
    /// let q: multiproc::Queue<char> = multiproc::Queue::builder().build()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn build(self) -> Result<Queue<T>, Error> {
        Ok(Queue::of(Channel::new(Flavor::Queue, self.limits)?))
    }
}

impl<T: Serialize + DeserializeOwned> QueueBuilder<JoinableQueue<T>> {
    /// Creates the queue.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// ```
    /// multiproc::init();
    /// let q: multiproc::JoinableQueue<char> = multiproc::JoinableQueue::builder().build()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn build(self) -> Result<JoinableQueue<T>, Error> {
        Ok(JoinableQueue::from_channel(Channel::new(Flavor::Joinable, self.limits)?))
    }
}

impl<Q> fmt::Debug for QueueBuilder<Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueBuilder")
            .field("maxsize", &self.limits.items)
            .field("max_bytes", &self.limits.bytes)
            .finish()
    }
}
