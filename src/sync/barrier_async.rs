//! `Barrier::wait_async`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Arrival, Barrier, Round};
use crate::shm::{Deadline, TakenIn, Waiting, poll_on};
use crate::sync::error::{BarrierBreak, BrokenBarrier};

impl Barrier {
    /// [`Barrier::wait`] as a future: arrives at the barrier at the first poll, then waits
    /// for the other parties without blocking a thread. The last party to arrive runs the
    /// barrier's action (if any) inside that poll.
    ///
    /// The barrier's own timeout ([`BarrierBuilder::timeout`](crate::BarrierBuilder::timeout))
    /// applies, checked on the schedule of the liveness checks (so it may pass up to about
    /// 100 ms late); the runtime's timeout (`tokio::time::timeout(d, fut)`) is exact. The
    /// first poll's arrival, and a give-up, wait for a process inside the barrier's
    /// bookkeeping (the last party running the action, say) while it runs, blocking the
    /// polling thread, as [`Barrier::wait`] does; for one stopped there, up to the
    /// barrier's timeout (for ever without one) to arrive, about 10 ms to give up.
    ///
    /// Cancellation: a future dropped before its first poll never arrived and changes
    /// nothing. Dropped while it waits, the party leaves a round it cannot complete any
    /// more: the barrier breaks ([`BarrierBreak::Cancelled`]), as a timed-out
    /// [`Barrier::wait_timeout`] breaks it, unless the round completed meanwhile; the other
    /// parties get [`BrokenBarrier`] and [`Barrier::reset`] makes it usable again. A copy
    /// that a `Fork` child got with its parent's memory (a future kept in a static) breaks
    /// nothing when dropped, and panics when polled: the party waiting is the parent.
    ///
    /// # Errors
    ///
    /// As [`Barrier::wait`]: [`BrokenBarrier`] with its cause.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let barrier = multiproc::Barrier::new(1)?;
    /// // Any runtime; smol here.
    /// let index = smol::block_on(async { barrier.wait_async().await })?;
    /// assert_eq!(index, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_async(&self) -> BarrierWait<'_> {
        BarrierWait {
            barrier: self,
            round: None,
            deadline: Deadline::NEVER,
            waiting: Waiting::new(),
            taken_in: TakenIn::here(),
        }
    }
}

/// The future of [`Barrier::wait_async`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct BarrierWait<'a> {
    barrier: &'a Barrier,
    /// The round this party waits for, once it arrived.
    round: Option<Round>,
    /// The barrier's own timeout, from the arrival.
    deadline: Deadline,
    waiting: Waiting,
    /// A copy made by fork (a future kept in a static) gives nothing up when dropped, and
    /// panics when polled: the party that arrived is the parent.
    taken_in: TakenIn,
}

impl Future for BarrierWait<'_> {
    type Output = Result<usize, BrokenBarrier>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.taken_in.check();
        let barrier = this.barrier;
        let round = match this.round {
            Some(round) => round,
            None => {
                this.deadline = barrier.timeout.map_or(Deadline::NEVER, Deadline::after);
                match barrier.arrive(this.deadline) {
                    Arrival::Ended(result) => return Poll::Ready(result),
                    Arrival::Waiting(round) => *this.round.insert(round),
                }
            }
        };
        let deadline = this.deadline;
        let waited = poll_on(&mut this.waiting, &barrier.shared.changed, cx, |check| {
            if let Some(completed) = barrier.round_outcome(round) {
                return Some(Ok(completed));
            }
            if !check {
                return None;
            }
            if deadline.passed() {
                return Some(Err(BarrierBreak::TimedOut));
            }
            barrier.check_parties().err().map(Err)
        });
        let Poll::Ready(waited) = waited else { return Poll::Pending };
        this.round = None;
        let completed = match waited {
            Ok(completed) => completed,
            Err(cause) => match barrier.give_up(round, cause) {
                Ok(completed) => completed,
                Err(cause) => return Poll::Ready(Err(BrokenBarrier { cause })),
            },
        };
        Poll::Ready(barrier.round_result(round, completed))
    }
}

impl Drop for BarrierWait<'_> {
    fn drop(&mut self) {
        if !self.taken_in.is_here() {
            return;
        }
        if let Some(round) = self.round.take() {
            self.waiting.withdraw();
            // Never waits for the guard (`give_up` waits while a running process holds
            // it): a drop runs on the runtime's thread, and the guard's holder may be the
            // round's action waiting for that very runtime (review69 M1). The request is
            // applied by whoever holds the guard as it lets go, or by this call if the
            // guard is free; a round that ended meanwhile is not broken.
            self.barrier.request_break(round, BarrierBreak::Cancelled);
        }
    }
}
