//! [`wait_async`]: the async twin of [`wait`](super::wait).

use std::future::Future;
use std::os::fd::BorrowedFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::{Inner, Waitable};
use crate::shm::{FdWaiting, Waiting};
use crate::sys;

/// [`wait`](super::wait) as a future, without a timeout of its own (use the runtime's):
/// the indices of the objects that are ready, once one is. An empty list is ready at once
/// with no index; a closed handle or a send-only end is ready at once (as in `wait`).
///
/// Cancellation: it takes nothing, so dropping it part-way changes nothing (a wake-up it
/// was given and did not report goes on to another waiter).
///
/// # Examples
///
/// ```
/// use multiproc::{Pipe, Queue, Waitable, wait_async};
///
/// multiproc::init();
/// let (a, b) = Pipe::<u8>::new()?;
/// let q = Queue::<u8>::new()?;
/// let watched: [&(dyn Waitable + Sync); 2] = [&a, &q];
/// b.send(1)?;
/// // In an async fn: `let ready = wait_async(&watched).await;` ([0] here)
/// # let _ = wait_async(&watched);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn wait_async<'a>(objects: &'a [&'a (dyn Waitable + Sync)]) -> WaitFuture<'a> {
    WaitFuture { objects, rings: Vec::new(), fds: FdWaiting::default(), timer: Waiting::new() }
}

/// The future of [`wait_async`].
#[must_use = "futures do nothing unless awaited"]
pub struct WaitFuture<'a> {
    objects: &'a [&'a (dyn Waitable + Sync)],
    rings: Vec<Waiting>,
    fds: FdWaiting,
    /// The schedule of the liveness checks.
    timer: Waiting,
}

impl std::fmt::Debug for WaitFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitFuture").field("objects", &self.objects.len()).finish()
    }
}

fn look(sources: &[Inner<'_>], thorough: bool) -> Vec<usize> {
    let mut ready = Vec::new();
    let mut fds: Vec<(usize, BorrowedFd<'_>)> = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        match s {
            Inner::Ring { ring, left, gone } => {
                if !ring.is_empty() || left() || (thorough && (ring.holds_message() || gone())) {
                    ready.push(i);
                }
            }
            Inner::Fd { fd, .. } => fds.push((i, *fd)),
            Inner::Refused => ready.push(i),
        }
    }
    if !fds.is_empty() {
        let list: Vec<BorrowedFd<'_>> = fds.iter().map(|(_, fd)| *fd).collect();
        let readable = sys::poll_readable(&list, Some(Duration::ZERO)).unwrap_or_else(|_| vec![true; list.len()]);
        for ((i, _), readable) in fds.iter().zip(readable) {
            if readable || matches!(&sources[*i], Inner::Fd { ended, .. } if ended()) {
                ready.push(*i);
            }
        }
    }
    ready.sort_unstable();
    ready
}

impl Future for WaitFuture<'_> {
    type Output = Vec<usize>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<usize>> {
        let this = self.get_mut();
        let sources: Vec<Inner<'_>> = this.objects.iter().map(|o| o.source().0).collect();
        if sources.is_empty() {
            // Nothing can ever become ready: at the first poll, nothing registered.
            return Poll::Ready(Vec::new());
        }
        let done = |this: &mut Self, ready: Vec<usize>| {
            this.rings.iter_mut().for_each(Waiting::reset);
            this.fds.withdraw();
            this.timer.reset();
            Poll::Ready(ready)
        };
        let ready = look(&sources, this.timer.check_due());
        if !ready.is_empty() {
            return done(this, ready);
        }
        this.rings.resize_with(sources.len(), Waiting::new);
        let mut fds = Vec::new();
        for (i, s) in sources.iter().enumerate() {
            match s {
                Inner::Ring { ring, .. } => {
                    this.rings[i].arm(ring.readable(), cx);
                }
                Inner::Fd { fd, .. } => fds.push(*fd),
                Inner::Refused => {}
            }
        }
        if !fds.is_empty() {
            this.fds.arm(&fds, cx);
        }
        // The liveness checks' schedule: a registration without a word.
        this.timer.arm_timer(cx);
        let ready = look(&sources, false);
        if !ready.is_empty() {
            return done(this, ready);
        }
        Poll::Pending
    }
}

impl Drop for WaitFuture<'_> {
    fn drop(&mut self) {
        // A put's `notify(1)` may have woken this wait, which leaves without saying so (a
        // timeout): a getter asleep behind it gets the wake-up (review42 L1, as a get's).
        for (object, waiting) in self.objects.iter().zip(&mut self.rings) {
            if waiting.has_waited()
                && let Inner::Ring { ring, .. } = object.source().0
            {
                waiting.pass_on(ring.readable(), || !ring.is_empty());
            }
        }
    }
}

#[cfg(test)]
impl<'a> WaitFuture<'a> {
    /// [`wait_async`] with its first liveness checks after `slice` (see
    /// `Waiting::first_check_after`).
    fn first_check_after(objects: &'a [&'a (dyn Waitable + Sync)], slice: Duration) -> Self {
        WaitFuture {
            objects,
            rings: objects.iter().map(|_| Waiting::first_check_after(slice)).collect(),
            fds: FdWaiting::default(),
            timer: Waiting::first_check_after(slice),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Queue;
    use crate::shm::reactor::tests::{LIMIT, SCENES, sleeper_behind_a_future_dropped_after_its_wake_up};
    use crate::sys::FutexWait;

    /// As a queue's get (`channel_async`'s test): a wait woken by a put's single wake-up
    /// and dropped unpolled passes it on to a blocking getter asleep behind it.
    #[test]
    fn a_wait_dropped_after_its_wake_up_passes_it_on() {
        let _one = SCENES.lock().unwrap_or_else(|e| e.into_inner());
        let _serial = crate::shm::heap_test_lock();
        let q: Queue<u32> = Queue::new().unwrap();
        let watched: [&(dyn Waitable + Sync); 1] = [&q];
        let future = WaitFuture::first_check_after(&watched, LIMIT);
        let ring = q.ch.as_ref().unwrap().ring();
        let how = sleeper_behind_a_future_dropped_after_its_wake_up(future, ring.readable(), || q.put(1).unwrap());
        assert_ne!(how, FutexWait::TimedOut, "the dropped wait kept the wake-up meant for the getter");
    }
}
