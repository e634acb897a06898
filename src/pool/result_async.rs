//! `AsyncResult` and `MapResult` as futures, `IMap` as a stream, and `AsyncResult::cancel`.
//!
//! A pool's results arrive on a thread of this process (the process pool's own thread
//! collects them from the workers while nobody waits in a blocking `get`; a thread pool's
//! workers fill them): whoever fills a result wakes the futures waiting for it, so these
//! futures need no waker thread at all, and ten thousand of them cost ten thousand wakers
//! in memory and nothing else.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::error::TaskError;
use super::result::{AsyncResult, IMap};

impl<R> AsyncResult<R> {
    /// Cancels the task. The result becomes [`TaskError::Cancelled`] at once (unless it
    /// was already there; then it is kept, and the cancellation does nothing). A task still
    /// waiting in the pool is dropped unrun. One already handed to its worker (a process
    /// pool sends each worker a few tasks ahead, so that it never idles between them) is
    /// started when the worker gets to it, and then treated as a running one: a running
    /// task has its worker killed (and replaced) about 100 ms later, as a timeout does,
    /// unless it finishes first. Cancelling one task of a `map_async` cancels the whole
    /// call.
    ///
    /// A [`ThreadPool`](crate::ThreadPool) cannot stop a running thread: its task runs to
    /// the end, and its result is dropped.
    ///
    /// Dropping an `AsyncResult` (or its future, part-way) does *not* cancel the task:
    /// it runs, and its result is dropped when it comes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::{Pool, TaskError};
    ///
    /// fn sleepy(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// multiproc::init();
    /// let pool = Pool::new(1)?;
    /// let long = pool.apply_async(sleepy, 60_000)?;
    /// long.cancel();
    /// assert_eq!(long.get(), Err(TaskError::Cancelled));
    /// // The worker that ran it is replaced: the pool goes on.
    /// assert_eq!(pool.apply(sleepy, 1)?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn cancel(&self) {
        self.slot.cancelled.store(true, Ordering::Release);
        self.slot.fill_if_empty(Err(TaskError::Cancelled));
    }
}

/// Waits for the result without blocking a thread: `pool.apply_async(f, x)?.await`.
///
/// Cancellation: dropping the future part-way does not cancel the task; it keeps running
/// and its result is dropped when it comes. A timeout through the runtime's own timer
/// (`tokio::time::timeout(d, result)`) is such a drop. To keep the result reachable, await
/// a `&mut` to the `AsyncResult` (`timeout(d, &mut result)`); to stop the task, call
/// [`AsyncResult::cancel`] (or give the task a pool timeout, which kills its worker).
/// Once the value was taken (by such an await, or by [`AsyncResult::get_timeout`]), the
/// result stays ready, and a later await or `get` is [`TaskError::Taken`] at once.
///
/// # Examples
///
/// ```no_run
/// use multiproc::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// multiproc::init();
/// let pool = Pool::new(2)?;
/// let pending = pool.apply_async(square, 7)?;
/// // In an async fn: `let value = pending.await?;`
/// # let value = pending.get()?;
/// assert_eq!(value, 49);
/// # Ok::<(), multiproc::Error>(())
/// ```
impl<R> Future for AsyncResult<R> {
    type Output = Result<R, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let slot = &self.slot;
        if let Some(v) = slot.take() {
            return Poll::Ready(v);
        }
        // Polled again after it gave the value (awaited through `&mut` before, or taken by
        // `get_timeout`): nothing will come again, and nobody would wake us. Only this
        // `AsyncResult` takes, so the value cannot have gone between the two looks.
        if slot.taken() {
            return Poll::Ready(Err(TaskError::Taken));
        }
        // A copy that fork made in a child of a pool without a helper: nothing will fill the
        // slot (a process pool's helper ends its copy's results itself).
        if self.settled_as_a_copy() {
            return Poll::Ready(slot.take_or_gone());
        }
        // As a blocking `get` does, collect the results here rather than wait for the
        // pool thread to collect them and wake the runtime (two wake-ups): a short task's
        // result is worth a few microseconds of spinning.
        if let Some(helper) = &self.helper {
            helper.help_briefly(&|| slot.is_filled());
            if let Some(v) = slot.take() {
                return Poll::Ready(v);
            }
            // A copy of the pool that fork made in a child: nothing will fill the slot.
            if helper.copied() {
                return Poll::Ready(Err(TaskError::Terminated));
            }
        }
        // Registered before the second look: a fill after the first look wakes us.
        slot.wakers.register(cx.waker());
        match slot.take() {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    }
}

/// Results as they come, without blocking a thread (`futures_core::Stream`; with
/// `futures::StreamExt`, `while let Some(r) = imap.next().await`).
///
/// The input is read on the polling task, a chunk at a time, as in the iterator; an input
/// that blocks would block the runtime's thread, so give it one that does not.
///
/// Cancellation: dropping the stream drops the results not taken; the tasks already sent
/// run to the end.
impl<R: Send + 'static> Stream for IMap<R> {
    type Item = Result<R, TaskError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // A copy made by fork: nothing will come (a stream lends no time to a helper).
        if let Some(next) = this.next_in_a_copy() {
            return Poll::Ready(next);
        }
        for registered in [false, true] {
            this.top_up();
            if let Some(item) = this.sink.pop() {
                this.taken_items += 1;
                return Poll::Ready(Some(item));
            }
            if this.exhausted && this.taken_items == this.fed_items {
                return Poll::Ready(None);
            }
            if !registered {
                this.sink.wakers.register(cx.waker());
            }
        }
        Poll::Pending
    }
}
