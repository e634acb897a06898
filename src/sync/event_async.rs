//! `Event::wait_async`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use super::{Event, SET};
use crate::shm::{Waiting, poll_on};
use crate::sync::error::Abandoned;

impl Event {
    /// [`Event::wait`] as a future: waits until the flag is set without blocking a
    /// thread. Dropping it part-way changes nothing.
    ///
    /// # Errors
    ///
    /// None today: unlike [`Event::wait`], it is never [`Abandoned`], since another task
    /// polled by the same thread may hold a reference to the event and set it, and nothing
    /// can see it. A future nobody will set waits (as Python's would): give it a timeout
    /// where that matters.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let e = multiproc::Event::new()?;
    /// e.set();
    /// // In an async fn: `e.wait_async().await?;`
    /// # assert!(e.is_set());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_async(&self) -> EventWait<'_> {
        EventWait { event: self, seen: None, waiting: Waiting::new() }
    }
}

/// The future of [`Event::wait_async`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct EventWait<'a> {
    event: &'a Event,
    /// The word at the first poll: a set and clear since then counts as set.
    seen: Option<u32>,
    waiting: Waiting,
}

impl Future for EventWait<'_> {
    type Output = Result<(), Abandoned>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let state = &*this.event.shared;
        let seen = *this.seen.get_or_insert_with(|| state.word.load(Ordering::SeqCst));
        // Never `Abandoned` (see `wait_async`): the check has nothing to look at.
        poll_on(&mut this.waiting, &state.changed, cx, |_check| {
            let now = state.word.load(Ordering::SeqCst);
            (now & SET != 0 || now >> 1 != seen >> 1).then_some(Ok(()))
        })
    }
}
