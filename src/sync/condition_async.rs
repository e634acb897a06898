//! `Condition::acquire_async` and `ConditionGuard::wait_async`.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Condition, ConditionGuard, TableHeld, Taken, Underlying};
use crate::shm::{Acquired, Deadline, GUARD_GRACE, Owner, TakenIn, Waiting, poll_on};
use crate::sync::Hold;
use crate::sync::error::ConditionWaitError;
use crate::sync::waiters::Place;
use crate::sys;

impl Underlying {
    /// One poll of an async acquire (one more level of an `RLock` held by this thread).
    fn poll_lock(&self, waiting: &mut Waiting, cx: &Context<'_>) -> Poll<Taken> {
        match self {
            Underlying::Lock(lock) => lock.poll_take(Owner::process(), waiting, cx),
            Underlying::RLock(rlock) => rlock.poll_lock_level(waiting, cx).map(|acquired| (acquired, Hold::NONE)),
        }
    }

    /// One poll of taking the lock back after `unlock_all`.
    fn poll_relock_all(&self, levels: u32, waiting: &mut Waiting, cx: &Context<'_>) -> Poll<Taken> {
        match self {
            Underlying::Lock(lock) => lock.poll_take(Owner::process(), waiting, cx),
            Underlying::RLock(rlock) => {
                rlock.poll_relock_all(levels, waiting, cx).map(|acquired| (acquired, Hold::NONE))
            }
        }
    }
}

impl Condition {
    /// [`Condition::acquire`] as a future: waits for the condition's lock without blocking
    /// a thread. Over an [`RLock`](crate::RLock) (the default), the lock belongs to the
    /// thread that polls the future to completion, and two tasks on one thread share it
    /// (see [`RLock::acquire_async`](crate::RLock::acquire_async)); for exclusion between
    /// tasks, build the condition over a [`Lock`](crate::Lock) ([`Condition::with_lock`]).
    ///
    /// Cancellation: dropped before it completes, the future holds nothing (the lock is
    /// taken in the poll that returns the guard).
    ///
    /// # Errors
    ///
    /// None ([`Infallible`](std::convert::Infallible), so that `?` works in any function); a lock taken over from a
    /// dead holder is told by [`ConditionGuard::owner_died`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let cond = multiproc::Condition::new()?;
    /// smol::block_on(async {
    ///     let mut guard = cond.acquire_async().await?;
    ///     guard.notify_all();
    ///     Ok::<(), multiproc::Error>(())
    /// })?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_async(&self) -> ConditionAcquire<'_> {
        ConditionAcquire { cond: self, waiting: Waiting::new() }
    }
}

/// The future of [`Condition::acquire_async`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct ConditionAcquire<'a> {
    cond: &'a Condition,
    waiting: Waiting,
}

impl<'a> Future for ConditionAcquire<'a> {
    type Output = Result<ConditionGuard<'a>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let cond: &'a Condition = this.cond;
        cond.lock.poll_lock(&mut this.waiting, cx).map(|taken| Ok(cond.guard(taken)))
    }
}

impl<'a> ConditionGuard<'a> {
    /// [`ConditionGuard::wait`] as a future: releases the lock, waits for a notification
    /// without blocking a thread, and takes the lock back (all its levels, for an `RLock`).
    /// It takes the guard and gives it back with the outcome, the lock held again in every
    /// case (as [`ConditionGuard::wait`]). Like every condition wait, it may end without
    /// the awaited change: check the state in a loop.
    ///
    /// Cancellation: a future dropped before it began waiting drops the guard (the lock is
    /// released): before its first poll, or while its polls wait, without blocking the
    /// thread, for another process stopped (`SIGSTOP`, a debugger) inside the condition's
    /// own bookkeeping. Dropped later, it leaves the waiters and holds nothing (the lock
    /// stays released, and the guard is gone with the future). A notification it was given
    /// and did not return is passed on to the oldest waiter (a wake-up without a change for
    /// that one if it came later than the notify); the drop never waits for another
    /// process.
    ///
    /// Outcome: `Ok(())` when notified. Unlike [`ConditionGuard::wait`], it is never
    /// [`ConditionWaitError::Abandoned`]: another task polled by the same thread may hold a
    /// reference to the condition and notify, and nothing can see it, so a future nobody
    /// will notify waits (as Python's would); give it a timeout where that matters. A lock
    /// re-acquired from a holder that died holding it is told by the returned guard's
    /// [`ConditionGuard::owner_died`]. Refused at the first poll, the guard given back
    /// untouched: [`ConditionWaitError::NotHeld`] when the caller no longer holds the lock
    /// (as [`ConditionGuard::wait`]), and [`ConditionWaitError::NestedLevels`] over an
    /// [`RLock`](crate::RLock) that the polling thread holds at more than one level: the
    /// wait must release every level, and dropped mid-wait it could not take back those
    /// of the other guards, which would live on holding nothing. Hold the RLock at one
    /// level around an async wait, or build the condition over a [`Lock`](crate::Lock).
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let cond = multiproc::Condition::new()?;
    /// let ready = multiproc::RawValue::new(false)?;
    /// let (c, r) = (cond.clone(), ready.clone());
    /// std::thread::spawn(move || {
    ///     let mut guard = c.acquire().unwrap();
    ///     r.set(true);
    ///     guard.notify_all();
    /// });
    /// smol::block_on(async {
    ///     let mut guard = cond.acquire_async().await?;
    ///     while !ready.get() {
    ///         let (again, outcome) = guard.wait_async().await;
    ///         guard = again;
    ///         outcome?;
    ///     }
    ///     Ok::<(), multiproc::Error>(())
    /// })?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[track_caller]
    pub fn wait_async(self) -> ConditionWait<'a> {
        self.taken_in.check();
        ConditionWait { cond: self.cond, taken_in: self.taken_in, step: Step::Holding(self), waiting: Waiting::new() }
    }
}

impl<'a> ConditionGuard<'a> {
    /// [`ConditionGuard::wait_for`] as a future: waits without blocking a thread until
    /// `predicate` holds (checked under the lock, before the first wait and after each
    /// notification), and gives the guard back with the outcome, the lock held in every
    /// case.
    ///
    /// Cancellation: as [`ConditionGuard::wait_async`]; dropped while it waits, the
    /// future leaves the waiters and holds nothing (the lock stays released), and a
    /// notification it was given is passed on.
    ///
    /// Outcome: `Ok(())` once the predicate holds; never [`ConditionWaitError::Abandoned`];
    /// `NotHeld` and `NestedLevels` as [`ConditionGuard::wait_async`], once the predicate
    /// does not hold.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let cond = multiproc::Condition::new()?;
    /// let items = multiproc::RawValue::new(0u32)?;
    /// let (c, i) = (cond.clone(), items.clone());
    /// std::thread::spawn(move || {
    ///     for _ in 0..3 {
    ///         let mut guard = c.acquire().unwrap();
    ///         i.set(i.get() + 1);
    ///         guard.notify_all();
    ///     }
    /// });
    /// smol::block_on(async {
    ///     let guard = cond.acquire_async().await?;
    ///     let (_guard, outcome) = guard.wait_for_async(|| items.get() == 3).await;
    ///     outcome?;
    ///     Ok::<(), multiproc::Error>(())
    /// })?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_for_async<P: FnMut() -> bool + Unpin>(self, predicate: P) -> ConditionWaitFor<'a, P> {
        ConditionWaitFor { holding: Some(self), wait: None, predicate }
    }
}

/// The future of [`ConditionGuard::wait_for_async`]: gives back the guard, the lock held
/// again, and the outcome.
#[must_use = "futures do nothing unless awaited"]
pub struct ConditionWaitFor<'a, P> {
    /// The lock held, the predicate to look at.
    holding: Option<ConditionGuard<'a>>,
    /// Waiting for a notification.
    wait: Option<ConditionWait<'a>>,
    predicate: P,
}

impl<P> std::fmt::Debug for ConditionWaitFor<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConditionWaitFor").field("wait", &self.wait).finish_non_exhaustive()
    }
}

impl<'a, P: FnMut() -> bool + Unpin> Future for ConditionWaitFor<'a, P> {
    type Output = (ConditionGuard<'a>, Result<(), ConditionWaitError>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            if let Some(guard) = this.holding.take() {
                if (this.predicate)() {
                    return Poll::Ready((guard, Ok(())));
                }
                this.wait = Some(guard.wait_async());
            }
            let Some(wait) = this.wait.as_mut() else { return Poll::Pending };
            let Poll::Ready((guard, outcome)) = Pin::new(wait).poll(cx) else { return Poll::Pending };
            this.wait = None;
            if outcome.is_err() {
                return Poll::Ready((guard, outcome));
            }
            this.holding = Some(guard);
        }
    }
}

/// Where a [`ConditionWait`] is.
enum Step<'a> {
    /// Not polled yet: the guard holds the lock.
    Holding(ConditionGuard<'a>),
    /// A waiter at `place`, the lock released (it had `levels` levels).
    Waiting { place: Place, levels: u32 },
    /// The wait ended with `outcome`: taking the lock back.
    Relocking { levels: u32, outcome: Result<(), ConditionWaitError> },
    /// The guard was given back.
    Done,
}

/// The future of [`ConditionGuard::wait_async`]: gives back the guard, the lock held
/// again, and the outcome of the wait.
#[must_use = "futures do nothing unless awaited"]
pub struct ConditionWait<'a> {
    cond: &'a Condition,
    /// A copy made by fork (a future kept in a static) neither polls nor leaves the
    /// waiters: the place is the parent's.
    taken_in: TakenIn,
    step: Step<'a>,
    waiting: Waiting,
}

impl std::fmt::Debug for ConditionWait<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = match self.step {
            Step::Holding(_) => "holding",
            Step::Waiting { .. } => "waiting",
            Step::Relocking { .. } => "relocking",
            Step::Done => "done",
        };
        f.debug_struct("ConditionWait").field("condition", self.cond).field("step", &step).finish()
    }
}

impl<'a> Future for ConditionWait<'a> {
    type Output = (ConditionGuard<'a>, Result<(), ConditionWaitError>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.taken_in.check();
        let cond: &'a Condition = this.cond;
        let state = &*cond.state;
        loop {
            match this.step {
                Step::Holding(ref guard) => {
                    let hold = guard.hold;
                    // Refused before a slot is taken (aud107 H1, H2): a caller that gave
                    // the lock back itself, and an RLock held at more than one level,
                    // whose other levels a dropped future could not take back.
                    let refused = if !cond.lock.is_held(hold) {
                        Some(ConditionWaitError::NotHeld)
                    } else if let Underlying::RLock(rlock) = &cond.lock
                        && rlock.held_at_more_than_one_level()
                    {
                        Some(ConditionWaitError::NestedLevels)
                    } else {
                        None
                    };
                    if let Some(refused) = refused {
                        let Step::Holding(guard) = std::mem::replace(&mut this.step, Step::Done) else {
                            unreachable!()
                        };
                        this.waiting.withdraw();
                        return Poll::Ready((guard, Err(refused)));
                    }
                    let me = sys::me();
                    // The table's guard with the waker, not the thread: a process stopped
                    // holding it (`SIGSTOP`, a debugger) leaves this wait pending (stop61),
                    // the lock held, as a blocking wait's arrival waits for it.
                    let Poll::Ready(_) = state.guard.poll_lock(Owner::process(), &mut this.waiting, cx) else {
                        return Poll::Pending;
                    };
                    // Under the condition's lock still: a notify after this one is ours.
                    let place = {
                        let _held = TableHeld::taken(cond);
                        state.waiters.arrive(me.pid, me.start)
                    };
                    let Step::Holding(guard) = std::mem::replace(&mut this.step, Step::Done) else { unreachable!() };
                    let Some(levels) = cond.lock.unlock_all(hold) else {
                        cond.leave_unheld(place);
                        return Poll::Ready((guard, Err(ConditionWaitError::NotHeld)));
                    };
                    // The guard's release was `unlock_all`'s, and the lock is the future's
                    // to take back.
                    std::mem::forget(guard);
                    this.step = Step::Waiting { place, levels };
                }
                Step::Waiting { place, levels } => {
                    let waiters = &state.waiters;
                    let notify = match place {
                        Place::Slot(i) => &waiters.slot(i).wake,
                        Place::Overflow(..) => &waiters.overflow_wake,
                    };
                    let waited = poll_on(&mut this.waiting, notify, cx, |check| {
                        let notified = match place {
                            Place::Slot(i) => waiters.is_granted(i),
                            Place::Overflow(..) => waiters.claim(place),
                        };
                        if notified {
                            return Some(Ok(()));
                        }
                        // Never `Abandoned`: another task of the polling thread may hold a
                        // reference to the condition and notify (see `wait_async`).
                        if check {
                            // A poll does not wait for a stopped process (guard45).
                            cond.recover_dead_waiters(Deadline::after(GUARD_GRACE));
                        }
                        None
                    });
                    let Poll::Ready(waited) = waited else { return Poll::Pending };
                    // Leaving tells whether we were granted, even as the wait was abandoned.
                    let notified = waiters.leave(place, waited.is_ok());
                    let outcome = match waited {
                        Err(abandoned) if !notified => Err(ConditionWaitError::Abandoned(abandoned)),
                        _ => Ok(()),
                    };
                    this.step = Step::Relocking { levels, outcome };
                }
                Step::Relocking { levels, outcome } => {
                    let Poll::Ready((acquired, hold)) = cond.lock.poll_relock_all(levels, &mut this.waiting, cx) else {
                        return Poll::Pending;
                    };
                    this.step = Step::Done;
                    let owner_died = acquired == Acquired::OwnerDied;
                    return Poll::Ready((
                        ConditionGuard { cond, owner_died, hold, taken_in: this.taken_in, _not_send: PhantomData },
                        outcome,
                    ));
                }
                Step::Done => return Poll::Pending,
            }
        }
    }
}

impl Drop for ConditionWait<'_> {
    fn drop(&mut self) {
        if !self.taken_in.is_here() {
            return;
        }
        let notified = match self.step {
            Step::Waiting { place, .. } => {
                self.waiting.withdraw();
                // Without the guard: a dropped wait (a runtime's timeout) that was not
                // notified never blocks.
                self.cond.state.waiters.leave(place, false)
            }
            // Notified, and dropped while it took the lock back (the notifier usually
            // holds it as it notifies): the notification was not returned either.
            Step::Relocking { ref outcome, .. } => outcome.is_ok(),
            Step::Holding(_) | Step::Done => false,
        };
        if notified {
            // A notification this waiter will never return: somebody else's now. Passed on
            // as `notify` does, which never waits for the table's guard: a process stopped
            // holding it delays the pass-on, not this drop (review72 L3, stop61).
            self.cond.notify(1);
        }
    }
}
