//! The queues' async operations: `get_async` and `put_async` on [`Queue`],
//! [`SimpleQueue`] and [`JoinableQueue`], and [`JoinableQueue::join_async`]. Each attempt
//! is the non-waiting form of the blocking call; between attempts the future sleeps on the
//! queue's notifier through a waker thread (see the crate's `Async` section), and runs the
//! same liveness checks as a blocking call, at the same pace.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::channel::{Channel, JoinStop};
use super::error::{GetError, PutError, QueueJoinError};
use super::joinable::endless_join;
use super::{JoinableQueue, Queue, SimpleQueue};
use crate::shm::{Interrupted, Waiting, poll_on};

/// The get of all three queues, on a handle's channel (`None` once the handle is closed);
/// a `JoinableQueue`'s counts the task taken inside the take.
async fn get_from<T: Serialize + DeserializeOwned>(channel: Option<&Channel<T>>) -> Result<T, GetError> {
    let Some(ch) = channel else { return Err(GetError::Closed) };
    ch.get_async().await.map_err(GetError::from_failure)
}

/// The put of all three queues, on a handle's channel.
async fn put_into<T: Serialize + DeserializeOwned>(channel: Option<&Channel<T>>, value: T) -> Result<(), PutError<T>> {
    let Some(ch) = channel else { return Err(PutError::Closed(value)) };
    ch.put_async(value).await.map_err(|(v, f)| PutError::from_failure(v, f))
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// [`Queue::get`] as a future: waits for an item without blocking a thread.
    ///
    /// Cancellation-safe: an item is taken in the same poll that returns it, so a future
    /// dropped part-way (a `tokio::time::timeout` that passed, a `select!` branch not
    /// taken) took nothing; the item stays for the next `get`, and a wake-up the future was
    /// given goes on to another getter.
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
        get_from(self.channel()).await
    }

    /// [`Queue::put`] as a future: waits for room in a bounded queue without blocking a
    /// thread.
    ///
    /// Cancellation: an item is put in one poll or not at all; a future dropped part-way
    /// put nothing (and drops the value), and a wake-up it was given goes on to another
    /// putter.
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
        put_into(self.channel(), value).await
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
        get_from(self.channel()).await
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
        put_into(self.channel(), value).await
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// [`JoinableQueue::get`] as a future; cancellation-safe as [`Queue::get_async`]
    /// (a task is counted taken only with the item returned).
    ///
    /// # Errors
    ///
    /// As [`JoinableQueue::get`], [`GetError::HeapFull`] included: the item is left in the
    /// queue; when this process has no slot in the task table and can claim none, and
    /// shared memory is exhausted, or for as long as another process stays stopped inside
    /// the heap's allocator.
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
        get_from(self.channel()).await
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
        put_into(self.channel(), value).await
    }

    /// [`JoinableQueue::join`] as a future: waits until every item put has been marked
    /// done, without blocking a thread.
    ///
    /// Like a blocking `join`, a pending future counts its handle as waiting in `join`, so
    /// that joins that nobody is left to end stop with `Disconnected`: a task that takes
    /// items to finish them should hold a handle of its own (a clone), not share the
    /// joining task's.
    ///
    /// Cancellation: dropped part-way, the future changes nothing (it stops counting its
    /// handle as waiting).
    ///
    /// # Errors
    ///
    /// As [`JoinableQueue::join`]: [`QueueJoinError::Disconnected`],
    /// [`QueueJoinError::TasksLost`], [`QueueJoinError::Closed`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let q = multiproc::JoinableQueue::new()?;
    /// q.put(1)?;
    /// let worker = q.clone(); // a handle of its own
    /// let done = std::thread::spawn(move || {
    ///     worker.get().unwrap();
    ///     worker.task_done().unwrap();
    /// });
    /// smol::block_on(q.join_async())?;
    /// assert_eq!(q.unfinished(), 0);
    /// # done.join().unwrap();
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub async fn join_async(&self) -> Result<(), QueueJoinError> {
        let Some(channel) = self.channel() else { return Err(QueueJoinError::Closed) };
        let waited = JoinFuture { queue: self, channel, counted: Cell::new(None), waiting: Waiting::new() }.await;
        self.join_outcome(waited).map_err(endless_join)
    }
}

/// The wait of [`JoinableQueue::join_async`]: ends when no task is unfinished or when the
/// periodic check (`Channel::join_check`) stops it.
struct JoinFuture<'a, T> {
    queue: &'a JoinableQueue<T>,
    channel: &'a Channel<T>,
    /// The epoch this join was counted in as waiting, once counted.
    counted: Cell<Option<u64>>,
    waiting: Waiting,
}

impl<T> Future for JoinFuture<'_, T> {
    type Output = Result<(), Interrupted<JoinStop>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (queue, channel, counted) = (this.queue, this.channel, &this.counted);
        let waited = poll_on(&mut this.waiting, &channel.state().all_done, cx, |check| {
            // Done, or stopped by another joiner that found nobody left to finish the tasks.
            if queue.unfinished() == 0 || channel.join_stopped(counted.get()) {
                return Some(Ok(()));
            }
            if !check {
                return None;
            }
            // As `JoinableQueue::join`: an immediate shutdown's drain left undone is finished.
            channel.finish_immediate_shutdown();
            channel.join_check(counted, || queue.unfinished()).err().map(|stop| Err(Interrupted::Check(stop)))
        });
        if waited.is_ready() {
            channel.join_ended(counted.take());
        }
        waited
    }
}

impl<T> Drop for JoinFuture<'_, T> {
    fn drop(&mut self) {
        self.channel.join_ended(self.counted.take());
    }
}
