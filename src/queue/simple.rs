//! [`SimpleQueue`]: the minimal queue, `put`, `get`, `is_empty`, `close`.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::channel::{Channel, Flavor};
use super::error::{GetError, PutError};
use super::queue::{deserialize_handle, serialize_handle};
use crate::error::Error;
use crate::shm::{Deadline, Limits};

/// The minimal queue (Python's `multiprocessing.SimpleQueue`): unbounded, with
/// [`put`](SimpleQueue::put), [`get`](SimpleQueue::get), [`is_empty`](SimpleQueue::is_empty)
/// and [`close`](SimpleQueue::close).
///
/// The same shared-memory channel as [`Queue`](crate::Queue), with the same guarantees: a
/// `put` never blocks, a `get` returns [`GetError::Disconnected`] instead of waiting
/// forever once no handle that could put is left (none but the caller's, or all waiting in
/// `get`: see [`Queue`](crate::Queue)), and it is a handle that travels anywhere.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Process, SimpleQueue};
///
/// fn worker(q: SimpleQueue<(u32, String)>) {
///     q.put((1, "hello".into())).unwrap();
/// }
///
/// multiproc::init();
/// let q = SimpleQueue::new()?;
/// Process::new(worker, q.clone()).start()?.join()?;
/// assert_eq!(q.get()?, (1, "hello".to_string()));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.SimpleQueue")]
pub struct SimpleQueue<T> {
    ch: Option<Channel<T>>,
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new, empty queue.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::SimpleQueue::<u64>::new()?;
    /// assert!(q.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Result<Self, Error> {
        Ok(Self { ch: Some(Channel::new(Flavor::Simple, Limits::default())?) })
    }

    /// Puts `value` at the back of the queue (never waits).
    ///
    /// # Errors
    ///
    /// With the value back: [`PutError::Closed`] after [`SimpleQueue::close`],
    /// [`PutError::ShutDown`] after [`SimpleQueue::shutdown`], [`PutError::Encode`], [`PutError::HeapFull`].
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::SimpleQueue::new()?;
    /// q.put([1u8, 2])?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        let Some(ch) = &self.ch else { return Err(PutError::Closed(value)) };
        ch.put(&value, Deadline::NEVER).map_err(|f| PutError::from_failure(value, f))
    }

    /// Takes the item at the front of the queue, waiting until one comes.
    ///
    /// # Errors
    ///
    /// [`GetError::Disconnected`] when the queue is empty and no handle that could put is
    /// left, as [`Queue::get`](crate::Queue::get) (handles are counted, not threads: give a
    /// thread that puts a clone of its own);
    /// [`GetError::Closed`]; [`GetError::ShutDown`] once shut down and empty;
    /// [`GetError::Decode`].
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::SimpleQueue::new()?;
    /// q.put('q')?;
    /// assert_eq!(q.get()?, 'q');
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self) -> Result<T, GetError> {
        let Some(ch) = &self.ch else { return Err(GetError::Closed) };
        ch.get(Deadline::NEVER).map_err(GetError::from_failure)
    }

    /// Shuts the queue down; see [`Queue::shutdown`](crate::Queue::shutdown) (Python's
    /// `SimpleQueue` has no `shutdown`; this one is the same queue underneath, so it has).
    ///
    /// ```
    /// use multiproc::{GetError, SimpleQueue};
    ///
    /// multiproc::init();
    /// let q = SimpleQueue::new()?;
    /// q.put(1)?;
    /// q.shutdown(true);
    /// assert_eq!(q.get(), Err(GetError::ShutDown));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn shutdown(&self, immediate: bool) {
        if let Some(ch) = &self.ch {
            ch.shutdown(immediate);
        }
    }
}

impl<T> SimpleQueue<T> {
    pub(crate) fn channel(&self) -> Option<&Channel<T>> {
        self.ch.as_ref()
    }

    /// Whether the queue is empty (a snapshot; true for a closed handle).
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::SimpleQueue::new()?;
    /// q.put(1)?;
    /// assert!(!q.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.ch.as_ref().is_none_or(|ch| ch.ring().is_empty())
    }

    /// Whether the queue was shut down; see
    /// [`Queue::is_shutdown`](crate::Queue::is_shutdown).
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::SimpleQueue::<u8>::new()?;
    /// q.shutdown(false);
    /// assert!(q.is_shutdown());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_shutdown(&self) -> bool {
        self.ch.as_ref().is_some_and(Channel::is_shut_down)
    }

    /// Closes this handle: it lets go of the queue, and later calls on it fail with
    /// `Closed` (see [`Queue::close`](crate::Queue::close)).
    ///
    /// ```
    /// multiproc::init();
    /// let mut q = multiproc::SimpleQueue::<u8>::new()?;
    /// q.close();
    /// assert!(q.get().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&mut self) {
        self.ch = None;
    }
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        Self { ch: self.ch.clone() }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ch {
            Some(ch) => f
                .debug_struct("SimpleQueue")
                .field("offset", &ch.shared().offset())
                .field("len", &ch.ring().len())
                .finish(),
            None => f.write_str("SimpleQueue(closed)"),
        }
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_handle(self.ch.as_ref(), serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self { ch: Some(deserialize_handle(deserializer, Flavor::Simple)?) })
    }
}
