//! `Semaphore::acquire_async` and `BoundedSemaphore::acquire_async`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{BoundedSemaphore, Core, Semaphore, SemaphoreGuard};
use crate::shm::Waiting;
use std::convert::Infallible;

impl Core {
    fn acquire_async(&self) -> SemaphoreAcquire<'_> {
        SemaphoreAcquire { core: self, waiting: Waiting::new() }
    }
}

impl Semaphore {
    /// [`Semaphore::acquire`] as a future: waits for a permit without blocking a thread
    /// (a poll that meets another process stopped in the middle of a change blocks 10 ms
    /// at most: see [`Semaphore`]).
    ///
    /// Cancellation: dropped before it completes, the future took no permit (a permit is
    /// taken in the poll that returns the guard); a wake-up it was given and did not use
    /// is passed on to another waiter.
    ///
    /// # Errors
    ///
    /// None, as [`Semaphore::acquire`] (the error type is [`Infallible`], so that `?` works
    /// in any function): a permit taken back from a process that died holding it is told
    /// by [`SemaphoreGuard::owner_died`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let rooms = multiproc::Semaphore::new(2)?;
    /// smol::block_on(async {
    ///     let _room = rooms.acquire_async().await?;
    ///     assert_eq!(rooms.get_value(), 1);
    ///     Ok::<(), multiproc::Error>(())
    /// })?;
    /// assert_eq!(rooms.get_value(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_async(&self) -> SemaphoreAcquire<'_> {
        self.core.acquire_async()
    }
}

impl BoundedSemaphore {
    /// [`BoundedSemaphore::acquire`] as a future; cancellation as
    /// [`Semaphore::acquire_async`] (a dropped future took no permit).
    ///
    /// # Errors
    ///
    /// None ([`Infallible`]); a permit taken back from a dead holder is told by
    /// [`SemaphoreGuard::owner_died`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// smol::block_on(async {
    ///     let _permit = sem.acquire_async().await?;
    ///     assert_eq!(sem.get_value(), 0);
    ///     Ok::<(), multiproc::Error>(())
    /// })?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_async(&self) -> SemaphoreAcquire<'_> {
        self.core.acquire_async()
    }
}

/// The future of [`Semaphore::acquire_async`] and [`BoundedSemaphore::acquire_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct SemaphoreAcquire<'a> {
    core: &'a Core,
    waiting: Waiting,
}

impl std::fmt::Debug for SemaphoreAcquire<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemaphoreAcquire").field("value", &self.core.value()).finish()
    }
}

impl<'a> Future for SemaphoreAcquire<'a> {
    type Output = Result<SemaphoreGuard<'a>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let core: &'a Core = this.core;
        let polled = core.shared.changed.poll_to_take(core, &mut this.waiting, cx);
        polled.map(|taken| Ok(core.guard(taken)))
    }
}

impl Drop for SemaphoreAcquire<'_> {
    fn drop(&mut self) {
        // A release's `notify(1)` may have woken this future, which leaves without its
        // permit: pass the wake-up on, as a blocking acquire that times out does.
        self.core.shared.changed.pass_on(self.core, &mut self.waiting);
    }
}
