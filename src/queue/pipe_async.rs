//! `Connection::recv_async` and `send_async`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Connection, recv_value};
use crate::queue::error::{Failure, RecvError, SendError};
use crate::shm::{CheckNow, Deadline, Waiting, poll_on};

impl<T: Serialize + DeserializeOwned> Connection<T> {
    /// [`Connection::recv`] as a future: waits for the next message without blocking a
    /// thread.
    ///
    /// Cancellation-safe: a message is taken in the same poll that returns it, so a future
    /// dropped part-way (a `tokio::time::timeout` that passed, a `select!` branch not
    /// taken) took nothing, and the message is there for the next receive (a wake-up the
    /// future was given goes on to another receiver).
    ///
    /// # Errors
    ///
    /// As [`Connection::recv`]: [`RecvError::Disconnected`] once the other end is gone
    /// (dropped, or its process died) and everything it sent was received.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::new()?;
    /// a.send("hi".to_string())?;
    /// # let rt = || -> Result<(), multiproc::RecvError> {
    /// # let fut = b.recv_async();
    /// // In an async fn: `let msg = b.recv_async().await?;`
    /// # drop(fut);
    /// # Ok(()) };
    /// # rt().unwrap();
    /// # assert_eq!(b.recv()?, "hi");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn recv_async(&self) -> RecvFuture<'_, T> {
        RecvFuture { conn: self, waiting: Waiting::new() }
    }

    /// [`Connection::send`] as a future. A pipe has no capacity limit, so sending never
    /// waits: the future is ready at its first poll (it exists so that async code reads
    /// the same both ways). Dropped before it is polled, it sent nothing.
    ///
    /// # Errors
    ///
    /// As [`Connection::send`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::new()?;
    /// // In an async fn: `a.send_async(5).await?;`
    /// # a.send(5)?;
    /// assert_eq!(b.recv()?, 5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub async fn send_async(self, value: T) -> Result<(), SendError<T>> {
        self.send(value)
    }
}

/// The future of [`Connection::recv_async`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct RecvFuture<'a, T> {
    conn: &'a Connection<T>,
    waiting: Waiting,
}

impl<T: DeserializeOwned> Future for RecvFuture<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // These two fail at the first poll or never (`close` takes `&mut self`, which this
        // future's borrow excludes): their `Ready` comes before anything was registered.
        let open = match this.conn.open() {
            Ok(open) => open,
            Err(f) => return Poll::Ready(Err(RecvError::from_failure(f))),
        };
        let ring = match open.rx() {
            Ok(ring) => ring,
            Err(f) => return Poll::Ready(Err(RecvError::from_failure(f))),
        };
        let peer = open.peer();
        let tag = this.conn.tag;
        poll_on(&mut this.waiting, ring.readable(), cx, |check| {
            match recv_value::<T, _>(ring, tag, Deadline::now(), &CheckNow::new(&peer, check)) {
                Err(Failure::Wait) => None,
                other => Some(other.map_err(RecvError::from_failure)),
            }
        })
    }
}

impl<T> Drop for RecvFuture<'_, T> {
    fn drop(&mut self) {
        // A send's `notify(1)` may have woken this future, which leaves without the message
        // (a timeout): a receiver asleep behind it gets the wake-up (review42 L1).
        let conn = self.conn;
        if let Ok(open) = conn.open()
            && let Ok(ring) = open.rx()
        {
            self.waiting.pass_on(ring.readable(), || !ring.is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Pipe;
    use crate::shm::Waiting;
    use crate::shm::reactor::tests::{LIMIT, SCENES, sleeper_behind_a_future_dropped_after_its_wake_up};
    use crate::sys::FutexWait;

    /// As a queue's get (`channel_async`'s test): a receive woken by a send's single
    /// wake-up and dropped unpolled passes it on to a blocking receiver asleep behind it.
    #[test]
    fn a_receive_dropped_after_its_wake_up_passes_it_on() {
        let _one = SCENES.lock().unwrap_or_else(|e| e.into_inner());
        let _serial = crate::shm::heap_test_lock();
        let (a, b) = Pipe::<u32>::new().unwrap();
        let open = b.open().unwrap();
        let future = super::RecvFuture { conn: &b, waiting: Waiting::first_check_after(LIMIT) };
        let how = sleeper_behind_a_future_dropped_after_its_wake_up(future, open.rx().unwrap().readable(), || {
            a.send(1).unwrap();
        });
        assert_ne!(how, FutexWait::TimedOut, "the dropped receive kept the wake-up meant for the receiver");
    }
}
