//! `RLock::acquire_async`, and the polls a `Condition` over an `RLock` takes it back with.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use super::{RLock, RLockGuard};
use crate::shm::{Acquired, Deadline, Owner, Waiting};

impl RLock {
    /// [`RLock::acquire`] as a future: one more level if the polling thread holds the lock
    /// already, else waits for it without blocking a thread.
    ///
    /// The lock belongs to the thread that polls the future to completion, and the guard
    /// stays there (it is not `Send`): await it in a task that does not hold the guard
    /// across another `.await` on a work-stealing runtime, or on a current-thread one.
    ///
    /// Tasks are not threads: two tasks polled by one thread are one owner to an `RLock`,
    /// so the second one's acquire is one more level, not a wait. For exclusion between
    /// tasks use a [`Lock`](crate::Lock) (owned by the process: a task waits while another
    /// task of the process holds it).
    ///
    /// Cancellation: dropped before it completes, the future holds nothing (the lock is
    /// taken in the poll that returns the guard).
    ///
    /// # Errors
    ///
    /// None, as [`RLock::acquire`] (the error type is [`Infallible`], so that `?` works in
    /// any function): a lock taken over from a dead holder is told by
    /// [`RLockGuard::owner_died`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let lock = multiproc::RLock::new()?;
    /// smol::block_on(async {
    ///     let _outer = lock.acquire_async().await?;
    ///     let _inner = lock.acquire_async().await?; // the same thread: one more level
    ///     assert!(lock.is_owned());
    ///     Ok::<(), multiproc::Error>(())
    /// })?;
    /// assert!(!lock.locked());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_async(&self) -> RLockAcquire<'_> {
        RLockAcquire { lock: self, waiting: Waiting::new() }
    }

    /// One poll of an async acquire of one level for the polling thread.
    pub(crate) fn poll_lock_level(&self, waiting: &mut Waiting, cx: &Context<'_>) -> Poll<Acquired> {
        let state = &*self.shared;
        let me = Owner::thread();
        if state.mutex.is_held_by(me) {
            waiting.reset();
            return Poll::Ready(self.lock_level(Deadline::now()).expect("the owner's next level never waits"));
        }
        state.mutex.poll_lock(me, waiting, cx).map(|acquired| {
            // A dead holder may have left its levels behind.
            state.count.store(0, Ordering::Relaxed);
            acquired
        })
    }

    /// One poll of taking the lock back with `levels` levels (after `unlock_all`), for an
    /// async condition wait.
    pub(crate) fn poll_relock_all(&self, levels: u32, waiting: &mut Waiting, cx: &Context<'_>) -> Poll<Acquired> {
        let state = &*self.shared;
        state.mutex.poll_lock(Owner::thread(), waiting, cx).map(|acquired| {
            state.count.store(levels.max(1) - 1, Ordering::Relaxed);
            acquired
        })
    }
}

/// The future of [`RLock::acquire_async`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct RLockAcquire<'a> {
    lock: &'a RLock,
    waiting: Waiting,
}

impl<'a> Future for RLockAcquire<'a> {
    type Output = Result<RLockGuard<'a>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let lock: &'a RLock = this.lock;
        lock.poll_lock_level(&mut this.waiting, cx).map(|acquired| Ok(lock.guard(acquired)))
    }
}
