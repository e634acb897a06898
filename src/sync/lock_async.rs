//! `Lock::acquire_async`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Lock, LockGuard};
use crate::shm::{Owner, Waiting};

impl Lock {
    /// [`Lock::acquire`] as a future: waits for the lock without blocking a thread.
    ///
    /// Cancellation: dropped before it completes, the future holds nothing (the lock is
    /// taken in the poll that returns the guard).
    ///
    /// Hold the guard briefly: it is the process's lock, and a guard held across an
    /// `.await` keeps every other process (and task) out meanwhile.
    ///
    /// # Errors
    ///
    /// None, as [`Lock::acquire`]: the error type is [`Infallible`], so that `?` works in any
    /// function. A lock whose holder died is taken over and the guard says so
    /// ([`LockGuard::owner_died`]).
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// // In an async fn: `let _guard = lock.acquire_async().await?;`
    /// # let _guard = lock.acquire()?;
    /// assert!(lock.locked());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_async(&self) -> LockAcquire<'_> {
        LockAcquire { lock: self, waiting: Waiting::new() }
    }
}

/// The future of [`Lock::acquire_async`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct LockAcquire<'a> {
    lock: &'a Lock,
    waiting: Waiting,
}

impl<'a> Future for LockAcquire<'a> {
    type Output = Result<LockGuard<'a>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let lock: &'a Lock = this.lock;
        let me = Owner::process();
        lock.poll_take(me, &mut this.waiting, cx).map(|taken| Ok(lock.guard(me, taken)))
    }
}
