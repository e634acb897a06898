//! `ProcessHandle::join_async`: the child's end as a future, woken by its pidfd.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;

use super::{JoinError, ProcessHandle};
use crate::shm::{Deadline, FdWaiting};

impl<R: DeserializeOwned> ProcessHandle<R> {
    /// [`ProcessHandle::join`] as a future: waits for the child's end without blocking a
    /// thread (a waker thread watches the child's pidfd, which becomes readable when it
    /// ends, and the socket its result comes on).
    ///
    /// It takes the handle, as `join` does, and owns it (so it can be spawned on a
    /// runtime). Cancellation: dropping the future part-way drops the handle, and the child
    /// runs on, as when a handle is dropped (see [`ProcessHandle`]); join with a timeout
    /// instead to keep the handle.
    ///
    /// # Errors
    ///
    /// As [`ProcessHandle::join`]; polled again after it gave the outcome,
    /// [`JoinError::Taken`]. In a fork copy of the child's parent, [`JoinError::NotAChild`]
    /// at every poll (the copy takes nothing of the child's).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn double(x: u32) -> u32 {
    ///     x * 2
    /// }
    ///
    /// multiproc::init();
    /// let child = multiproc::Process::new(double, 21).start()?;
    /// // In an async fn: `let value = child.join_async().await?;`
    /// # let value = child.join()?;
    /// assert_eq!(value, 42);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join_async(self) -> JoinFuture<R> {
        JoinFuture { handle: self, waiting: FdWaiting::default(), done: false }
    }
}

/// The future of [`ProcessHandle::join_async`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct JoinFuture<R> {
    handle: ProcessHandle<R>,
    waiting: FdWaiting,
    /// It gave the child's outcome: a poll after that is [`JoinError::Taken`] (aud104 L1:
    /// it looked again, found no result, and said the child returned none). Not set by a
    /// `NotAChild` answer, which took nothing.
    done: bool,
}

impl<R: DeserializeOwned> Future for JoinFuture<R> {
    type Output = Result<R, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Err(JoinError::Taken { name: this.handle.name().to_string() }));
        }
        for armed in [false, true] {
            match this.handle.wait_to_join(Deadline::now()) {
                Ok(Some(ended)) => {
                    this.waiting.withdraw();
                    this.done = true;
                    return Poll::Ready(this.handle.result(ended));
                }
                // `NotAChild` (a fork copy's handle), which took nothing: polled again, it
                // is the answer again (review151 L4: it said `Taken`, and that the child
                // had ended).
                Err(e) => {
                    this.waiting.withdraw();
                    return Poll::Ready(Err(e));
                }
                Ok(None) => {}
            }
            if !armed {
                let waiting = &mut this.waiting;
                this.handle.child.with_wait_fds(|fds| waiting.arm(fds, cx));
            }
        }
        Poll::Pending
    }
}
