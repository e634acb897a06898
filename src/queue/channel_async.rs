//! The queues' futures at the channel level: a get and a put that never wait in place
//! (each attempt is the non-waiting `try_` form) and sleep on the ring's notifier through
//! the waker threads (`shm::reactor`).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Channel, Getting, Others, recv_value_then, send_value};
use crate::queue::error::Failure;
use crate::shm::{CheckNow, Deadline, Waiting, poll_on};

/// `Channel::get_async`'s future. Cancellation-safe: a message is taken and returned in
/// one poll, so a future dropped between polls took nothing.
pub(crate) struct GetFuture<'a, T> {
    channel: &'a Channel<T>,
    /// The epoch this get was counted in as waiting, once counted (see `Getting`).
    counted: Cell<Option<u64>>,
    waiting: Waiting,
}

impl<T: Serialize + DeserializeOwned> Channel<T> {
    pub(crate) fn get_async(&self) -> GetFuture<'_, T> {
        GetFuture { channel: self, counted: Cell::new(None), waiting: Waiting::new() }
    }

    /// Puts `value`, waiting for room in a bounded queue without blocking the thread.
    pub(crate) fn put_async(&self, value: T) -> PutFuture<'_, T> {
        PutFuture { channel: self, value: Some(value), waiting: Waiting::new() }
    }
}

impl<T: Serialize + DeserializeOwned> Future for GetFuture<'_, T> {
    type Output = Result<T, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let channel = this.channel;
        if channel.shut_down_immediately() {
            // As `Channel::get`: nothing is to be taken any more.
            return Poll::Ready(Err(Failure::ShutDown));
        }
        let ring = &channel.shared.ring;
        let finish_shutdown = || channel.finish_shutdown();
        let watch = Getting {
            shared: &channel.shared,
            counted: Cell::new(this.counted.take()),
            finish_shutdown: &finish_shutdown,
        };
        let tag = channel.tag;
        let mut claim = None;
        let outcome = poll_on(&mut this.waiting, ring.readable(), cx, |check| {
            let now = CheckNow::new(&watch, check);
            let counted = |decoded| claim = channel.count_take(decoded);
            match recv_value_then(ring, tag, Deadline::now(), &now, Failure::from, || watch.uncount(), counted) {
                Err(Failure::Wait) => None,
                other => Some(other),
            }
        });
        drop(claim);
        this.counted.set(watch.counted.take());
        outcome
    }
}

impl<T> Drop for GetFuture<'_, T> {
    fn drop(&mut self) {
        // A get dropped while counted as waiting no longer waits.
        if self.counted.take().is_some() {
            self.channel.shared.getters.leave();
        }
    }
}

impl<T> Unpin for GetFuture<'_, T> {}

/// `Channel::put_async`'s future. Dropped before it completes, the value was not put.
pub(crate) struct PutFuture<'a, T> {
    channel: &'a Channel<T>,
    value: Option<T>,
    waiting: Waiting,
}

impl<T> Unpin for PutFuture<'_, T> {}

impl<T: Serialize + DeserializeOwned> Future for PutFuture<'_, T> {
    /// The value comes back with a failure.
    type Output = Result<(), (T, Failure)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(value) = this.value.as_ref() else { return Poll::Pending };
        let ring = &this.channel.shared.ring;
        if ring.refuses_puts() {
            return Poll::Ready(Err((this.value.take().expect("still held"), Failure::ShutDown)));
        }
        let (tag, others) = (this.channel.tag, Others(&this.channel.shared));
        let outcome = poll_on(&mut this.waiting, ring.writable(), cx, |check| {
            let now = CheckNow::new(&others, check);
            match send_value(ring, value, tag, Deadline::now(), &now) {
                Err(Failure::Wait) => None,
                other => Some(other),
            }
        });
        outcome.map(|r| r.map_err(|f| (this.value.take().expect("still held"), f)))
    }
}
