//! The queues' async operations: `get_async` and `put_async` on [`Queue`],
//! [`SimpleQueue`] and [`JoinableQueue`]. Each attempt is the non-waiting form of the
//! blocking call; between attempts the future sleeps on the queue's notifier through a
//! waker thread (see the crate's `Async` section), and runs the same liveness checks as a
//! blocking call, at the same pace.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{GetError, PutError};
use super::{JoinableQueue, Queue, SimpleQueue};

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// [`Queue::get`] as a future: waits for an item without blocking a thread.
    ///
    /// Cancellation-safe: an item is taken in the same poll that returns it, so a future
    /// dropped part-way (a `tokio::time::timeout` that passed, a `select!` branch not
    /// taken) took nothing; the item stays for the next `get`.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`]: [`GetError::Disconnected`] when the queue is empty and no handle
    /// that could put is left (every other one dropped, or its process died).
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::new()?;
    /// q.put(7)?;
    /// // In an async fn: `let item = q.get_async().await?;`
    /// # let item = q.get()?;
    /// assert_eq!(item, 7);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub async fn get_async(&self) -> Result<T, GetError> {
        let Some(ch) = self.channel() else { return Err(GetError::Closed) };
        ch.get_async().await.map_err(GetError::from_failure)
    }

    /// [`Queue::put`] as a future: waits for room in a bounded queue without blocking a
    /// thread.
    ///
    /// Cancellation: an item is put in one poll or not at all; a future dropped part-way
    /// put nothing (and drops the value).
    ///
    /// # Errors
    ///
    /// As [`Queue::put`], with the value back.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::Queue::with_maxsize(1)?;
    /// // In an async fn: `q.put_async(1).await?;`
    /// # q.put(1)?;
    /// assert_eq!(q.get()?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub async fn put_async(&self, value: T) -> Result<(), PutError<T>> {
        let Some(ch) = self.channel() else { return Err(PutError::Closed(value)) };
        ch.put_async(value).await.map_err(|(v, f)| PutError::from_failure(v, f))
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// [`SimpleQueue::get`] as a future; cancellation-safe as [`Queue::get_async`].
    ///
    /// # Errors
    ///
    /// As [`SimpleQueue::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::SimpleQueue::new()?;
    /// q.put('q')?;
    /// // In an async fn: `let item = q.get_async().await?;`
    /// # assert_eq!(q.get()?, 'q');
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub async fn get_async(&self) -> Result<T, GetError> {
        let Some(ch) = self.channel() else { return Err(GetError::Closed) };
        ch.get_async().await.map_err(GetError::from_failure)
    }

    /// [`SimpleQueue::put`] as a future (a `SimpleQueue` is unbounded: ready at once).
    ///
    /// # Errors
    ///
    /// As [`SimpleQueue::put`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::SimpleQueue::new()?;
    /// // In an async fn: `q.put_async(1).await?;`
    /// # q.put(1)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub async fn put_async(&self, value: T) -> Result<(), PutError<T>> {
        let Some(ch) = self.channel() else { return Err(PutError::Closed(value)) };
        ch.put_async(value).await.map_err(|(v, f)| PutError::from_failure(v, f))
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// [`JoinableQueue::get`] as a future; cancellation-safe as [`Queue::get_async`]
    /// (a task is counted taken only with the item returned).
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put(3)?;
    /// // In an async fn: `let item = q.get_async().await?;`
    /// # assert_eq!(q.get()?, 3);
    /// q.task_done()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub async fn get_async(&self) -> Result<T, GetError> {
        let Some(ch) = self.channel() else { return Err(GetError::Closed) };
        let item = ch.get_async().await.map_err(GetError::from_failure)?;
        ch.took_task();
        Ok(item)
    }

    /// [`JoinableQueue::put`] as a future: waits for room in a bounded queue.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// // In an async fn: `q.put_async("work".to_string()).await?;`
    /// # q.put("work".to_string())?;
    /// assert_eq!(q.unfinished(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub async fn put_async(&self, value: T) -> Result<(), PutError<T>> {
        let Some(ch) = self.channel() else { return Err(PutError::Closed(value)) };
        ch.put_async(value).await.map_err(|(v, f)| PutError::from_failure(v, f))
    }
}
