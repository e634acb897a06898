//! [`JoinableQueue`]: a [`Queue`] whose consumers mark each item done, and whose producers
//! can wait until every item put has been.

use std::cell::Cell;
use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::channel::{Channel, Flavor, JoinStop};
use super::error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, QueueJoinError, QueueJoinTimeoutError, TaskDoneError,
    TryGetError, TryPutError,
};
use super::queue::{Queue, QueueBuilder, deserialize_handle, serialize_handle};
use crate::error::Error;
use crate::shm::{Deadline, Interrupted, SPIN};

/// A blocking join's count as waiting ([`Channel::join_check`] counts it at its first
/// check, in `epoch`), ended on drop: when the join returns and when it unwinds.
struct JoinCounted<'a, T> {
    channel: &'a Channel<T>,
    epoch: Cell<Option<u64>>,
}

impl<T> Drop for JoinCounted<'_, T> {
    fn drop(&mut self) {
        self.channel.join_ended(self.epoch.take());
    }
}

/// The error of a join without a deadline.
pub(crate) fn endless_join(e: QueueJoinTimeoutError) -> QueueJoinError {
    match e {
        QueueJoinTimeoutError::Disconnected { unfinished } => QueueJoinError::Disconnected { unfinished },
        QueueJoinTimeoutError::TasksLost { lost } => QueueJoinError::TasksLost { lost },
        QueueJoinTimeoutError::Closed => QueueJoinError::Closed,
        QueueJoinTimeoutError::Timeout { .. } => unreachable!("an endless wait does not time out"),
    }
}

/// A [`Queue`] plus [`task_done`](JoinableQueue::task_done) and
/// [`join`](JoinableQueue::join) (Python's `multiprocessing.JoinableQueue`).
///
/// Every item put counts as unfinished until a consumer calls `task_done` for it; `join`
/// waits until none is. It is a handle like [`Queue`], with the same capacity rules and
/// the same guarantees; in addition, `join` does not wait forever for consumers that died:
/// when no other handle to the queue exists any more, it returns
/// [`QueueJoinError::Disconnected`] with the count of items never marked done.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{JoinableQueue, Process};
///
/// fn consumer(q: JoinableQueue<u32>) {
///     loop {
///         let n = q.get().unwrap();
///         println!("ate bun {n}");
///         q.task_done().unwrap();
///     }
/// }
///
/// multiproc::init();
/// let q = JoinableQueue::new()?;
/// let _c = Process::new(consumer, q.clone()).daemon(true).start()?;
/// for n in 0..10 {
///     q.put(n)?;
/// }
/// q.join()?; // every bun eaten
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.JoinableQueue")]
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

/// Items put, as far as this process can tell: a message can be taken (and marked done)
/// from the moment its record is written, a little before its producer counts it put
/// (consumers go straight to the record), and what was taken was put.
fn puts_seen<T>(ch: &Channel<T>) -> u64 {
    ch.ring().put_count().max(ch.ring().taken())
}

impl<T> JoinableQueue<T> {
    pub(super) fn from_channel(ch: Channel<T>) -> Self {
        Self { queue: Queue::of(ch) }
    }

    pub(crate) fn channel(&self) -> Option<&Channel<T>> {
        self.queue.channel()
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// An unbounded joinable queue (see [`Queue`] for what that means).
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put(1)?;
    /// q.get()?;
    /// q.task_done()?;
    /// q.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Result<Self, Error> {
        Self::builder().build()
    }

    /// A joinable queue of at most `maxsize` items (`0`: unbounded).
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::<u8>::with_maxsize(4)?;
    /// assert_eq!(q.maxsize(), Some(4));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_maxsize(maxsize: usize) -> Result<Self, Error> {
        Self::builder().maxsize(maxsize).build()
    }

    /// A builder for a joinable queue with limits.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::<String>::builder().maxsize(8).build()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn builder() -> QueueBuilder<Self> {
        QueueBuilder::new()
    }

    /// Puts `value`, counting it as unfinished; see [`Queue::put`].
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put("work".to_string())?;
    /// assert_eq!(q.unfinished(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.queue.put(value)
    }

    /// Puts `value` if there is room now; see [`Queue::try_put`].
    ///
    /// # Errors
    ///
    /// As [`Queue::try_put`].
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::with_maxsize(1)?;
    /// q.try_put(1)?;
    /// assert!(q.try_put(2).is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, value: T) -> Result<(), TryPutError<T>> {
        self.queue.try_put(value)
    }

    /// Puts `value`, waiting at most `timeout` for room; see [`Queue::put_timeout`].
    ///
    /// # Errors
    ///
    /// As [`Queue::put_timeout`].
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put_timeout(1, Duration::from_secs(1))?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        self.queue.put_timeout(value, timeout)
    }

    /// Takes the next item; see [`Queue::get`]. Call [`JoinableQueue::task_done`] when
    /// it is dealt with.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`], and [`GetError::HeapFull`] when this process has no slot yet in
    /// the queue's task table (the table that lets `join` tell the tasks of dead processes
    /// lost), cannot claim one, and the family's shared memory is exhausted: such a process
    /// needs a block of it to be sure its task is counted. A first take in a full heap is
    /// counted in a free slot of the table; it is refused only when each of the table's 32
    /// slots is another live process's, or its lock is held by a stopped process
    /// (`SIGSTOP`, a debugger). The take is then refused before anything is read, and the
    /// item stays in the queue, for another consumer or a later `get`: free some shared
    /// memory (drop large values, queues or shared objects no longer needed) and call `get`
    /// again. Python has no such case. Without a slot of the table, it also happens while
    /// another process is stopped inside the heap's allocator, no free block is at hand and
    /// no free slot of the table can be claimed: not for a moment but for as long as that
    /// process stays stopped. `get` does not wait
    /// for it: each call returns at once. A retry that only waits lasts as long as the
    /// cause does (the queue's own items may be what fills the heap, and only takes free
    /// them), so bound it, as below, or free memory in it.
    ///
    /// A message that does not decode ([`GetError::Decode`]) is taken all the same and its
    /// task stays unfinished, as in Python: call [`task_done`](JoinableQueue::task_done)
    /// for it too, or `join` will not return `Ok`.
    ///
    /// ```
    /// use multiproc::{GetError, JoinableQueue};
    ///
    /// multiproc::init();
    /// let q = JoinableQueue::new()?;
    /// q.put(3)?;
    /// let mut tries = 0;
    /// let item = loop {
    ///     match q.get() {
    ///         Err(GetError::HeapFull(_)) if tries < 100 => {
    ///             // The item is still in the queue: make room in shared memory (or wait a
    ///             // little for another process to), then retry; give up after a second.
    ///             tries += 1;
    ///             std::thread::sleep(std::time::Duration::from_millis(10));
    ///         }
    ///         other => break other?,
    ///     }
    /// };
    /// assert_eq!(item, 3);
    /// q.task_done()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put(3)?;
    /// assert_eq!(q.get()?, 3);
    /// q.task_done()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self) -> Result<T, GetError> {
        self.queue.get()
    }

    /// Takes the next item if there is one; see [`Queue::try_get`].
    ///
    /// # Errors
    ///
    /// As [`Queue::try_get`], and [`TryGetError::HeapFull`] as [`JoinableQueue::get`]'s
    /// (the item left in the queue): when this process has no slot in the task table and
    /// can claim none, and shared memory is exhausted, or another process stays stopped
    /// inside the heap's allocator.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::<u8>::new()?;
    /// assert!(q.try_get().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, TryGetError> {
        self.queue.try_get()
    }

    /// Takes the next item, waiting at most `timeout`; see [`Queue::get_timeout`].
    ///
    /// # Errors
    ///
    /// As [`Queue::get_timeout`], and [`GetTimeoutError::HeapFull`] as
    /// [`JoinableQueue::get`]'s (the item left in the queue, returned at once, not at the
    /// timeout): when this process has no slot in the task table and can claim none, and
    /// shared memory is exhausted, or for as long as another process stays stopped inside
    /// the heap's allocator.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put(1)?;
    /// assert_eq!(q.get_timeout(Duration::from_secs(1))?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.queue.get_timeout(timeout)
    }

    /// Shuts the queue down; see [`Queue::shutdown`]. With `immediate`, every item still
    /// in the queue is dropped and counted done (Python's rule), so a `join` waiting
    /// returns as soon as the tasks already taken are marked done (at once when none is
    /// held); without it, the items left are still to be taken and marked done.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put('a')?;
    /// q.put('b')?;
    /// q.shutdown(true);
    /// assert_eq!(q.unfinished(), 0);
    /// q.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn shutdown(&self, immediate: bool) {
        self.queue.shutdown(immediate);
    }
}

impl<T> JoinableQueue<T> {
    /// Marks one item taken from the queue as done.
    ///
    /// Never waits for another process stopped (`SIGSTOP`, a debugger) inside the queue's
    /// bookkeeping of tasks. Then, and only then, a call made at the same moment as one that
    /// marks the last task done may be counted rather than refused.
    ///
    /// # Errors
    ///
    /// [`TaskDoneError`] when called more times than items were put (Python's
    /// `ValueError`), or on a closed handle; nothing is counted then.
    ///
    /// ```
    /// use multiproc::{JoinableQueue, TaskDoneError};
    ///
    /// multiproc::init();
    /// let q = JoinableQueue::new()?;
    /// q.put(1)?;
    /// q.get()?;
    /// q.task_done()?;
    /// assert_eq!(q.task_done(), Err(TaskDoneError));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let Some(ch) = self.channel() else { return Err(TaskDoneError) };
        let (done, put) = ch.did_task(|| puts_seen(ch)).ok_or(TaskDoneError)?;
        if done >= put {
            ch.state().all_done.notify_all();
        }
        Ok(())
    }

    /// Items put and not yet marked done (a snapshot; 0 for a closed handle).
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put('x')?;
    /// assert_eq!(q.unfinished(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn unfinished(&self) -> u64 {
        self.channel().map_or(0, |ch| puts_seen(ch).saturating_sub(ch.tasks_done()))
    }

    /// Waits until every item put has been marked done.
    ///
    /// # Errors
    ///
    /// [`QueueJoinError::Disconnected`] when items are unfinished and nobody is left who
    /// could finish them: no other handle exists any more, or every live handle is waiting
    /// in `join` (or in `get` on the empty queue), as when two threads join after the
    /// only consumer died; [`QueueJoinError::TasksLost`] when every unfinished item was
    /// taken (by `get`) by a process that then died without marking it done: such a task
    /// is not done and never can be, so `join` reports it instead of waiting for it (it
    /// is not put back: the queue cannot know what the dead process had already done);
    /// [`QueueJoinError::Closed`] after [`JoinableQueue::close`].
    ///
    /// `Disconnected` comes first: when no other handle is left, `join` answers
    /// `Disconnected { unfinished }` even if every unfinished task was taken by a process
    /// that then died; `TasksLost` comes only while another handle is alive (aud109 L1). A
    /// caller that logs lost work should look at both.
    ///
    /// A task counts as held by the process whose `get` took it out of the queue (a `get`
    /// killed at any point either left the item in the queue or holds it), until that
    /// process calls `task_done`; a process that marks done more tasks than it took is
    /// taken to have finished those of others (of the dead first).
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::<u8>::new()?;
    /// q.join()?; // nothing was put
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join(&self) -> Result<(), QueueJoinError> {
        self.join_until(Deadline::NEVER).map_err(endless_join)
    }

    /// Waits at most `timeout` until every item put has been marked done.
    ///
    /// # Errors
    ///
    /// [`QueueJoinTimeoutError::Timeout`] with the unfinished count, or as
    /// [`JoinableQueue::join`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{JoinableQueue, QueueJoinTimeoutError};
    ///
    /// multiproc::init();
    /// let q = JoinableQueue::new()?;
    /// let other = q.clone();
    /// q.put(1)?;
    /// let e = q.join_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(e, QueueJoinTimeoutError::Timeout { unfinished: 1 });
    /// # drop(other);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), QueueJoinTimeoutError> {
        self.join_until(Deadline::after(timeout))
    }

    fn join_until(&self, deadline: Deadline) -> Result<(), QueueJoinTimeoutError> {
        let Some(ch) = self.channel() else { return Err(QueueJoinTimeoutError::Closed) };
        let state = ch.state();
        // Uncounted however the wait ends: a check runs user code (the drain below decodes
        // and drops messages), and a `Deserialize` or `Drop` that panics unwinds out of the
        // wait; a join left counted would let another process's join or get take this
        // process to be waiting, and end with a false `Disconnected` (review126 L2).
        let counted = JoinCounted { channel: ch, epoch: Cell::new(None) };
        // An immediate shutdown's drain left undone (its caller found a stopped process
        // inside a take) is finished here, before the join and at each of its checks:
        // what is left counts done then (aud102 M1).
        ch.finish_immediate_shutdown();
        // Done, or stopped by another joiner that found nobody left to finish the tasks.
        let finished = || (self.unfinished() == 0 || ch.join_stopped(counted.epoch.get())).then_some(());
        let check = || {
            ch.finish_immediate_shutdown();
            ch.join_check(&counted.epoch, || self.unfinished())
        };
        let waited = state.all_done.wait(deadline, SPIN, finished, check);
        drop(counted);
        self.join_outcome(waited)
    }

    /// What a join returns once its wait ended (`Ok` when `finished` held).
    pub(crate) fn join_outcome(&self, waited: Result<(), Interrupted<JoinStop>>) -> Result<(), QueueJoinTimeoutError> {
        let unfinished = self.unfinished();
        match waited {
            _ if unfinished == 0 => Ok(()),
            Ok(()) | Err(Interrupted::Check(JoinStop::Disconnected)) => {
                Err(QueueJoinTimeoutError::Disconnected { unfinished })
            }
            Err(Interrupted::Check(JoinStop::Lost(lost))) => Err(QueueJoinTimeoutError::TasksLost { lost }),
            Err(Interrupted::TimedOut) => Err(QueueJoinTimeoutError::Timeout { unfinished }),
        }
    }

    /// Whether the queue was shut down; see [`Queue::is_shutdown`].
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::<u8>::new()?;
    /// q.shutdown(false);
    /// assert!(q.is_shutdown());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_shutdown(&self) -> bool {
        self.queue.is_shutdown()
    }

    /// How many items are in the queue (a snapshot); see [`Queue::len`].
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put(1)?;
    /// assert_eq!(q.len(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether the queue is empty (a snapshot).
    ///
    /// ```
    /// multiproc::init();
    /// assert!(multiproc::JoinableQueue::<u8>::new()?.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether a bounded queue is full (a snapshot).
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::with_maxsize(1)?;
    /// q.put(0)?;
    /// assert!(q.is_full());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "full")]
    pub fn is_full(&self) -> bool {
        self.queue.is_full()
    }

    /// The bound on items, if any; on a closed handle too, as [`Queue::maxsize`].
    ///
    /// ```
    /// multiproc::init();
    /// assert_eq!(multiproc::JoinableQueue::<u8>::new()?.maxsize(), None);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn maxsize(&self) -> Option<usize> {
        self.queue.maxsize()
    }

    /// Closes this handle; see [`Queue::close`].
    ///
    /// ```
    /// multiproc::init();
    /// let mut q = multiproc::JoinableQueue::<u8>::new()?;
    /// q.close();
    /// assert!(q.put(1).is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&mut self) {
        self.queue.close();
    }

    /// Whether [`JoinableQueue::close`] was called on this handle.
    ///
    /// ```
    /// multiproc::init();
    /// assert!(!multiproc::JoinableQueue::<u8>::new()?.is_closed());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone() }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.channel() {
            Some(ch) => f
                .debug_struct("JoinableQueue")
                .field("offset", &ch.shared().offset())
                .field("len", &self.len())
                .field("unfinished", &self.unfinished())
                .field("maxsize", &self.maxsize())
                .finish(),
            None => f.write_str("JoinableQueue(closed)"),
        }
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_handle(self.channel(), serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::from_channel(deserialize_handle(deserializer, Flavor::Joinable)?))
    }
}
