//! `Condition`: waiting for a change announced under a lock.
//!
//! The waiters are a table in shared memory (`waiters.rs`): a waiter takes a slot with a
//! ticket under the lock, and `notify(n)` grants the `n` oldest slots, each of which wakes
//! only its own waiter. So a notification goes to waiters that were waiting when it was
//! called, never to a later one (not even to the notifier waiting right after), and one
//! taken by a waiter that is killed is passed on to another waiter of that time.

#[path = "condition_async.rs"]
mod condition_async;
pub use condition_async::{ConditionAcquire, ConditionWait, ConditionWaitFor};

use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{Ordering, fence};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{Abandoned, AcquireTimeoutError, ConditionWaitError, TryAcquireError};
use super::lock::{Hold, Lock};
use super::rlock::RLock;
use super::waiters::{Place, Waiters, Woken};
use crate::error::Error;
use crate::shm::{
    Acquired, Deadline, GUARD_GRACE, Interrupted, Owner, RawMutex, SPIN, Shared, ShmObject, TakenIn, TimedOut, kind,
};
use crate::sys;

#[derive(crate::ShmSafe)]
#[repr(C)]
pub(crate) struct CondState {
    /// Guards the table (each of its steps).
    guard: RawMutex,
    waiters: Waiters,
}

impl ShmObject for CondState {
    const KIND: u32 = kind::CONDITION;
}

mod sealed {
    use serde::{Deserialize, Serialize};

    /// The lock under a condition: a [`Lock`](super::Lock) or an [`RLock`](super::RLock).
    /// Public in a private module: nameable by the sealed trait, not by users.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub enum Underlying {
        Lock(super::Lock),
        RLock(super::RLock),
    }

    pub trait Sealed {
        fn into_underlying(self) -> Underlying;
    }
}

use sealed::Underlying;

/// A lock a [`Condition`] can use: [`Lock`] or [`RLock`].
///
/// # Examples
///
/// ```
/// use multiproc::{Condition, Lock, RLock};
/// # multiproc::init();
/// let over_a_lock = Condition::with_lock(Lock::new()?)?;
/// let over_an_rlock = Condition::with_lock(RLock::new()?)?;
/// # drop((over_a_lock, over_an_rlock));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub trait ConditionLock: sealed::Sealed {}

impl sealed::Sealed for Lock {
    fn into_underlying(self) -> Underlying {
        Underlying::Lock(self)
    }
}
impl ConditionLock for Lock {}

impl sealed::Sealed for RLock {
    fn into_underlying(self) -> Underlying {
        Underlying::RLock(self)
    }
}
impl ConditionLock for RLock {}

/// A hold of the condition's lock as a guard keeps it: how it was taken, and which hold
/// of a `Lock` it is ([`Hold::NONE`] for an `RLock`, told apart by its thread).
type Taken = (Acquired, Hold);

impl Underlying {
    fn lock(&self, deadline: Deadline) -> Result<Taken, TimedOut> {
        match self {
            Underlying::Lock(lock) => lock.take(Owner::process(), deadline),
            Underlying::RLock(rlock) => rlock.lock_level(deadline).map(|acquired| (acquired, Hold::NONE)),
        }
    }

    fn try_lock(&self) -> Option<Taken> {
        match self {
            Underlying::Lock(lock) => lock.try_take(Owner::process()),
            Underlying::RLock(rlock) => rlock.try_lock_level().map(|acquired| (acquired, Hold::NONE)),
        }
    }

    /// Whether the caller holds the lock: this process a `Lock`, with the guard's `hold`
    /// (not a hold another of its threads took after a `Lock::release`: review165 M1);
    /// this thread an `RLock`.
    fn is_held(&self, hold: Hold) -> bool {
        match self {
            Underlying::Lock(lock) => lock.holds(Owner::process(), hold),
            Underlying::RLock(rlock) => rlock.is_owned(),
        }
    }

    /// A guard's release: only of a lock the caller holds (aud107 H1; see `is_held`). A
    /// `Lock` released by its holder and taken by another process, or another thread,
    /// since is left alone, as an `RLock` level given back by its owner.
    fn unlock(&self, hold: Hold) {
        match self {
            Underlying::Lock(lock) => {
                lock.release_if_held_here(hold);
            }
            Underlying::RLock(rlock) => {
                let _ = rlock.unlock_level();
            }
        }
    }

    /// Releases the lock entirely; returns what [`Underlying::relock_all`] needs, or
    /// `None`, releasing nothing, when the caller does not hold it.
    fn unlock_all(&self, hold: Hold) -> Option<u32> {
        match self {
            Underlying::Lock(lock) => lock.release_if_held_here(hold).then_some(1),
            Underlying::RLock(rlock) => rlock.unlock_all(),
        }
    }

    fn relock_all(&self, levels: u32) -> Taken {
        match self {
            Underlying::Lock(lock) => {
                lock.take(Owner::process(), Deadline::NEVER).expect("an endless wait does not time out")
            }
            Underlying::RLock(rlock) => (rlock.relock_all(levels), Hold::NONE),
        }
    }
}

/// A condition variable shared by the processes of a family (Python's
/// `multiprocessing.Condition`): processes wait on it, under its lock, until another
/// process changes something and notifies them.
///
/// The lock is a new [`RLock`] unless given ([`Condition::with_lock`]). Waiting and
/// notifying happen through the guard that [`acquire`](Condition::acquire) returns, so
/// that they always happen under the lock, as Python requires.
///
/// A notification wakes waiters that were waiting when it was called, the longest waiting
/// first, never a later one: a process that notifies and then waits does not take its own
/// notification. A process that dies holding the lock does not block the others: the next
/// acquirer takes the lock over and its guard's [`owner_died`](ConditionGuard::owner_died)
/// says so (as for every lock: see [`Lock`](crate::Lock)). A notification given to a process killed
/// while waiting is passed on to another waiter of that time (found when a wait has lasted
/// a few milliseconds). With more than 64 waiters at once, those beyond the 64th are served
/// after the older waiters among the first 64, and not in their own order of arrival
/// (Python's are woken in the order they came); after a waiter was killed, a notification
/// may wake more than it says: one more for each waiter killed, until the others find it
/// dead, and for good only after a kill in the middle of a wait's arrival, of its taking a
/// notification or of its leaving, or in the middle of another waiter's recovery of a dead
/// one, or of a process with waiters beyond the 64th while 12 other processes each hold a
/// name there (waiters there, a claim in flight, or dead and not yet found) (a wake-up
/// without a change, which the loop around every wait already handles).
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Condition, Process, RawValue};
///
/// fn produce(args: (Condition, RawValue<u32>)) {
///     let (cond, items) = args;
///     let mut guard = cond.acquire().unwrap();
///     items.set(items.get() + 1);
///     guard.notify(1);
/// }
///
/// multiproc::init();
/// let cond = Condition::new()?;
/// let items = RawValue::new(0u32)?;
/// let child = Process::new(produce, (cond.clone(), items.clone())).start()?;
/// let mut guard = cond.acquire().unwrap();
/// guard.wait_for(|| items.get() > 0)?;
/// drop(guard);
/// child.join()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.Condition")]
#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    state: Shared<CondState>,
    lock: Underlying,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Condition");
        match &self.lock {
            Underlying::Lock(lock) => d.field("lock", lock),
            Underlying::RLock(rlock) => d.field("lock", rlock),
        };
        d.field("waiters", &self.state.waiters.waiting()).finish()
    }
}

impl Condition {
    /// A condition over a new [`RLock`] (Python's default).
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let cond = multiproc::Condition::new()?;
    /// let mut guard = cond.acquire()?;
    /// guard.notify_all(); // nobody waits: nothing happens
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Result<Self, Error> {
        Self::with_lock(RLock::new()?)
    }

    /// A condition over `lock` (a [`Lock`] or an [`RLock`]), which may also be used on its
    /// own elsewhere.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Condition, Lock};
    /// # multiproc::init();
    /// let lock = Lock::new()?;
    /// let cond = Condition::with_lock(lock.clone())?;
    /// let _guard = cond.acquire()?;
    /// assert!(lock.locked());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_lock(lock: impl ConditionLock) -> Result<Self, Error> {
        let state = CondState { guard: RawMutex::new(), waiters: Waiters::new() };
        Ok(Self { state: Shared::new(state)?, lock: lock.into_underlying() })
    }

    fn guard(&self, (acquired, hold): Taken) -> ConditionGuard<'_> {
        ConditionGuard {
            cond: self,
            owner_died: acquired == Acquired::OwnerDied,
            hold,
            taken_in: TakenIn::here(),
            _not_send: PhantomData,
        }
    }

    /// Acquires the condition's lock.
    ///
    /// # Errors
    ///
    /// None: the error type is [`Infallible`], so that `?` works in any function. A lock
    /// taken over from a dead holder is told by [`ConditionGuard::owner_died`].
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let cond = multiproc::Condition::new()?;
    /// let mut guard = cond.acquire()?;
    /// guard.notify(1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<ConditionGuard<'_>, Infallible> {
        let taken = self.lock.lock(Deadline::NEVER).expect("an endless wait does not time out");
        Ok(self.guard(taken))
    }

    /// Acquires the lock if it is free; never waits.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::WouldBlock`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Condition, Lock, TryAcquireError};
    /// # multiproc::init();
    /// let cond = Condition::with_lock(Lock::new()?)?;
    /// let _held = cond.try_acquire()?;
    /// assert!(matches!(cond.try_acquire(), Err(TryAcquireError::WouldBlock)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<ConditionGuard<'_>, TryAcquireError> {
        match self.lock.try_lock() {
            Some(taken) => Ok(self.guard(taken)),
            None => Err(TryAcquireError::WouldBlock),
        }
    }

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireTimeoutError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{AcquireTimeoutError, Condition, Lock};
    /// # multiproc::init();
    /// let cond = Condition::with_lock(Lock::new()?)?;
    /// let _held = cond.acquire()?;
    /// assert!(matches!(cond.acquire_timeout(Duration::from_millis(10)), Err(AcquireTimeoutError::Timeout)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<ConditionGuard<'_>, AcquireTimeoutError> {
        match self.lock.lock(Deadline::after(timeout)) {
            Ok(taken) => Ok(self.guard(taken)),
            Err(TimedOut) => Err(AcquireTimeoutError::Timeout),
        }
    }

    /// Wakes what a notify (or the recovery of a dead waiter's grant) granted.
    fn wake(&self, woken: Woken) {
        let waiters = &self.state.waiters;
        let mut slots = woken.slots;
        while slots != 0 {
            let i = slots.trailing_zeros() as usize;
            slots &= slots - 1;
            waiters.slot(i).wake.notify(1);
        }
        if woken.overflow {
            waiters.overflow_wake.notify_all();
        }
    }

    /// Frees the slots of waiters that died and passes on the grants they held. Reads
    /// `/proc` once per waiter of another process: call it when a wait has lasted. Waits
    /// for the table's guard until `deadline` only, and then does nothing: a process
    /// stopped holding it must not hold a timed wait up, and a later check (this waiter's
    /// or another's) does the work.
    pub(super) fn recover_dead_waiters(&self, deadline: Deadline) {
        let state = &*self.state;
        let me = sys::me();
        let Some(suspects) = self.lock_table(deadline).map(|_held| {
            crate::shm::crash::crash_point!("condition.check.suspects");
            state.waiters.suspects(me.pid)
        }) else {
            return;
        };
        let dead: Vec<_> = suspects.into_iter().filter(|s| !sys::process_alive(s.pid, s.start)).collect();
        if dead.is_empty() {
            return;
        }
        if let Some(mut held) = self.lock_table(deadline) {
            held.woken = held.woken.and(state.waiters.recover(&dead).woken);
        }
    }

    /// The table's guard, waited for until `deadline`; `None` when a live holder kept it
    /// (stopped, say) until then.
    fn lock_table(&self, deadline: Deadline) -> Option<TableHeld<'_>> {
        self.state.guard.lock(Owner::process(), deadline).ok()?;
        Some(TableHeld::taken(self))
    }

    /// The table's guard if it is free; never waits, and never looks at its holder (a
    /// `/proc` read). One dead holding it is taken over by the next waiter's periodic
    /// check (`recover_dead_waiters`), which grants what was deferred to it.
    fn try_lock_table(&self) -> Option<TableHeld<'_>> {
        self.state.guard.try_lock(Owner::process()).then(|| TableHeld::taken(self))
    }

    /// The periodic check of a blocking wait: dead waiters' grants, and whether anybody is
    /// left who could notify: another handle anywhere, or another thread of this process
    /// (not multiproc's own), which could notify through a reference to this handle while
    /// the waiting thread is blocked.
    fn check(&self, deadline: Deadline) -> Result<(), Abandoned> {
        self.recover_dead_waiters(deadline);
        if self.state.sole_handle() && sys::alone_but_for_own_threads() { Err(Abandoned) } else { Ok(()) }
    }

    /// Sets `owner_died` when the lock is taken back from a dead holder.
    ///
    /// Only the arrival takes the table's guard, with the wait's deadline, or
    /// [`GUARD_GRACE`] for a shorter wait: a process stopped holding it (`SIGSTOP`, a
    /// debugger) cannot stretch a timed wait by more, and a guard merely busy (a running
    /// holder, preempted on a loaded machine) does not keep a short wait from releasing the
    /// lock, as Python's always does (review72 L4, as guard45's `try_` calls). One that
    /// cannot arrive then times out without releasing the lock, as if no notify came; the
    /// leave takes no guard (see `waiters.rs`).
    ///
    /// A caller that does not hold the lock (it gave it back itself) is refused before it
    /// takes a slot (aud107 H1): a slot taken and then abandoned by a live process is never
    /// recovered, and the next `notify` would be granted to it. `hold`: the guard's, the
    /// hold taken back at the end once the wait began.
    fn wait_until(
        &self,
        deadline: Deadline,
        owner_died: &mut bool,
        hold: &mut Hold,
    ) -> Result<bool, ConditionWaitError> {
        if !self.lock.is_held(*hold) {
            return Err(ConditionWaitError::NotHeld);
        }
        let state = &*self.state;
        let me = sys::me();
        // Under the condition's lock still: a notify after this one is ours to get.
        let arrival = deadline.at_least(GUARD_GRACE);
        let Some(place) = self.lock_table(arrival).map(|_held| state.waiters.arrive(me.pid, me.start)) else {
            return Ok(false);
        };
        let Some(levels) = self.lock.unlock_all(*hold) else {
            self.leave_unheld(place);
            return Err(ConditionWaitError::NotHeld);
        };
        let waiters = &state.waiters;
        let waited = match place {
            Place::Slot(i) => waiters.slot(i).wake.wait(
                deadline,
                SPIN,
                || waiters.is_granted(i).then_some(()),
                || self.check(deadline),
            ),
            Place::Overflow(..) => {
                let claim = || waiters.claim(place).then_some(());
                waiters.overflow_wake.wait(deadline, SPIN, claim, || self.check(deadline))
            }
        };
        // Leaving tells whether we were granted, even as the wait timed out.
        let notified = waiters.leave(place, waited.is_ok());
        let outcome = match waited {
            Err(Interrupted::Check(abandoned)) if !notified => Err(ConditionWaitError::Abandoned(abandoned)),
            _ => Ok(notified),
        };
        let (acquired, relocked) = self.lock.relock_all(levels);
        *hold = relocked;
        if acquired == Acquired::OwnerDied {
            *owner_died = true;
        }
        outcome
    }

    /// Leaves `place`, taken by a wait that then found the lock not held: only a `Lock`,
    /// released by another process between the wait's look and its arrival (an `RLock`
    /// changes hands only by its owner). A notification granted meanwhile is passed on.
    #[cold]
    pub(super) fn leave_unheld(&self, place: Place) {
        if self.state.waiters.leave(place, false) {
            self.notify(1);
        }
    }

    /// Never waits for the table's guard (stop61): a process stopped holding it (`SIGSTOP`,
    /// a debugger, in its periodic check or passing a grant on) must not hold up a notify,
    /// under the user's lock, nor an async wait's drop. Without the guard, the notify is
    /// deferred to its holder ([`Waiters::defer`]): one that lets it go after the notify's
    /// store sees it ([`TableHeld`]'s drop); one that let it go before, the notifier's own
    /// look at the guard finds it free and grants it (a SeqCst fence on each side, past
    /// the store and past the unlock, so that one of the two sees the other). Every holder
    /// grants the deferred notifications first, before any arrival.
    ///
    /// Both looks at the guard are a CAS, nothing more: a busy guard (another waiter's
    /// check, a pass-on) defers the notify as a stopped holder's does, rather than pay two
    /// `/proc` reads under the user's lock to tell a dead holder (review86 L3).
    ///
    /// `notify(0)` does nothing (Python's), with the guard or without it (review86 L4: with
    /// it, the waiters beyond the table were woken, as by any notify).
    fn notify(&self, n: u32) {
        if n == 0 {
            return;
        }
        let waiters = &self.state.waiters;
        if let Some(mut held) = self.try_lock_table() {
            held.woken = held.woken.and(waiters.notify(n));
            return;
        }
        waiters.defer(n);
        fence(Ordering::SeqCst);
        // Granted as the guard is taken, and woken as it is let go.
        drop(self.try_lock_table());
    }
}

/// The condition's table guard, held: taken, it grants the notifications deferred to it
/// first; let go, it wakes what was granted under it ([`TableHeld::woken`]), and grants
/// the notifications deferred meanwhile (see `Condition::notify`).
struct TableHeld<'a> {
    cond: &'a Condition,
    /// The waiters granted under the guard, woken once it is let go.
    woken: Woken,
}

impl<'a> TableHeld<'a> {
    /// The guard just taken by this process.
    fn taken(cond: &'a Condition) -> Self {
        Self { cond, woken: cond.state.waiters.notify_deferred() }
    }
}

impl Drop for TableHeld<'_> {
    fn drop(&mut self) {
        let state = &*self.cond.state;
        let mut woken = self.woken;
        loop {
            state.guard.unlock();
            self.cond.wake(woken);
            // Pairs with the fence of a notify that deferred: it found the guard taken.
            fence(Ordering::SeqCst);
            if state.waiters.deferred() == 0 {
                return;
            }
            // Held again, by another: its own release grants them.
            if state.guard.try_lock_or_take_over(Owner::process()).is_none() {
                return;
            }
            woken = state.waiters.notify_deferred();
        }
    }
}

/// The held lock of a [`Condition`]: wait and notify through it; dropping it releases the
/// lock. It stays on the thread that acquired it. A copy that a `Fork` child got with its
/// parent's memory (a guard kept in a thread-local) releases nothing when dropped, and its
/// waits and notifies panic: the lock is the parent's. A guard whose lock the caller gave
/// back itself ([`RLock::release`], [`Lock::release`]) holds nothing: its waits are
/// [`ConditionWaitError::NotHeld`], and its drop releases the lock only if the caller
/// holds it then, never a hold another thread or process took since, whenever the release
/// landed. (Its notifies still notify, as Python's
/// would refuse: they only grant waiters' slots, under the condition's own guard.)
///
/// # Examples
///
/// ```
/// # multiproc::init();
/// let cond = multiproc::Condition::new()?;
/// let mut guard = cond.acquire()?; // the lock is held
/// guard.notify_all();
/// drop(guard); // and released
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    owner_died: bool,
    /// Which hold of a `Lock` it has (taken again at each wait): a hold another thread of
    /// this process took after a `Lock::release` is not its own (review165 M1).
    hold: Hold,
    /// A copy made by fork (a guard kept in a thread-local) releases nothing, and its
    /// waits and notifies panic: the lock is the parent's.
    taken_in: TakenIn,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard").field("condition", self.cond).finish()
    }
}

impl ConditionGuard<'_> {
    /// Whether the lock was taken over from a holder that died holding it, when it was
    /// acquired or taken back after a wait: what it protects may be half-updated.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let cond = multiproc::Condition::new()?;
    /// assert!(!cond.acquire()?.owner_died());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Releases the lock, waits for a notification, and takes the lock back (all its
    /// levels, for an `RLock`). Like every condition wait, it may return without the
    /// awaited change: check the state in a loop, or use [`ConditionGuard::wait_for`].
    ///
    /// # Errors
    ///
    /// [`ConditionWaitError::Abandoned`] when nobody else could ever notify: no other live
    /// process holds the condition, no handle to it is in a message, this process holds no
    /// other handle, and this process runs no thread but the waiting one (multiproc's own
    /// threads aside). Where another thread runs, it could notify through a reference to
    /// this handle (an `Arc`, a scoped thread, a static), so the wait waits, as Python's
    /// does. The guard holds the lock again. A lock taken back from a holder that died holding it is told by
    /// [`ConditionGuard::owner_died`].
    ///
    /// [`ConditionWaitError::NotHeld`] when the caller no longer holds the lock (it gave
    /// it back with [`RLock::release`] or [`Lock::release`]): refused before the wait
    /// begins, nothing touched (Python's `RuntimeError`).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let cond = multiproc::Condition::new()?;
    /// let ready = multiproc::RawValue::new(false)?;
    /// let (c, r) = (cond.clone(), ready.clone());
    /// std::thread::spawn(move || {
    ///     let mut guard = c.acquire().unwrap();
    ///     r.set(true);
    ///     guard.notify_all();
    /// });
    /// let mut guard = cond.acquire()?;
    /// while !ready.get() {
    ///     guard.wait()?;
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[track_caller]
    pub fn wait(&mut self) -> Result<(), ConditionWaitError> {
        self.taken_in.check();
        self.cond.wait_until(Deadline::NEVER, &mut self.owner_died, &mut self.hold).map(|_| ())
    }

    /// Like [`ConditionGuard::wait`], waiting at most `timeout`; returns whether a
    /// notification came (Python's `wait(timeout)`).
    ///
    /// The wait ends by its deadline even while another process is stopped (`SIGSTOP`, a
    /// debugger) inside the condition's own bookkeeping, a wait shorter than 10 ms about
    /// 10 ms after its start: one that could not even begin by then returns `false` with
    /// the lock never released. Taking the lock back afterwards
    /// waits as long as it takes, as in Python: a process stopped holding the lock holds
    /// this call up.
    ///
    /// # Errors
    ///
    /// [`ConditionWaitError::NotHeld`], as [`ConditionGuard::wait`]; see also
    /// [`ConditionGuard::owner_died`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # multiproc::init();
    /// let cond = multiproc::Condition::new()?;
    /// let mut guard = cond.acquire()?;
    /// assert!(!guard.wait_timeout(Duration::from_millis(10))?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[track_caller]
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool, ConditionWaitError> {
        self.taken_in.check();
        match self.cond.wait_until(Deadline::after(timeout), &mut self.owner_died, &mut self.hold) {
            Err(ConditionWaitError::Abandoned(_)) => Ok(false),
            other => other,
        }
    }

    /// Waits until `predicate` holds (checked under the lock, before the first wait and
    /// after each notification).
    ///
    /// # Errors
    ///
    /// As [`ConditionGuard::wait`].
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let cond = multiproc::Condition::new()?;
    /// let items = multiproc::RawValue::new(0u32)?;
    /// let (c, i) = (cond.clone(), items.clone());
    /// std::thread::spawn(move || {
    ///     let mut guard = c.acquire().unwrap();
    ///     i.set(3);
    ///     guard.notify_all();
    /// });
    /// let mut guard = cond.acquire()?;
    /// guard.wait_for(|| items.get() == 3)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[track_caller]
    pub fn wait_for(&mut self, mut predicate: impl FnMut() -> bool) -> Result<(), ConditionWaitError> {
        self.taken_in.check();
        while !predicate() {
            self.wait()?;
        }
        Ok(())
    }

    /// Waits at most `timeout` for `predicate` to hold; returns its last value (Python's
    /// `wait_for(predicate, timeout)`).
    ///
    /// # Errors
    ///
    /// [`ConditionWaitError::NotHeld`], as [`ConditionGuard::wait`]; see also
    /// [`ConditionGuard::owner_died`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # multiproc::init();
    /// let cond = multiproc::Condition::new()?;
    /// let mut guard = cond.acquire()?;
    /// assert!(!guard.wait_for_timeout(Duration::from_millis(10), || false)?);
    /// assert!(guard.wait_for_timeout(Duration::from_millis(10), || true)?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[track_caller]
    pub fn wait_for_timeout(
        &mut self,
        timeout: Duration,
        mut predicate: impl FnMut() -> bool,
    ) -> Result<bool, ConditionWaitError> {
        self.taken_in.check();
        let deadline = Deadline::after(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.passed() {
                return Ok(false);
            }
            // Notified, timed out or abandoned: the predicate and the deadline decide.
            if let Err(ConditionWaitError::NotHeld) =
                self.cond.wait_until(deadline, &mut self.owner_died, &mut self.hold)
            {
                return Err(ConditionWaitError::NotHeld);
            }
        }
    }

    /// Wakes up to `n` waiters (each notification wakes exactly one of the processes
    /// waiting now).
    ///
    /// Never waits for another process: one holding the condition's own bookkeeping
    /// (stopped there by `SIGSTOP` or a debugger, or busy for a moment) delays the wake-ups
    /// until it lets go, not this call; a waiter that times out meanwhile leaves the
    /// notification to another of that time.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let cond = multiproc::Condition::new()?;
    /// cond.acquire()?.notify(2); // nobody waits: nothing happens
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[track_caller]
    pub fn notify(&mut self, n: u32) {
        self.taken_in.check();
        self.cond.notify(n);
    }

    /// Wakes every waiter.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let cond = multiproc::Condition::new()?;
    /// cond.acquire()?.notify_all();
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[track_caller]
    pub fn notify_all(&mut self) {
        self.taken_in.check();
        self.cond.notify(u32::MAX);
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        if self.taken_in.is_here() {
            self.cond.lock.unlock(self.hold);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// review141 L1: a `Condition` is one family-heap block of `tail_start()` bytes, and the
    /// heap's classes are powers of two: past 4 KiB it takes 8 KiB. syn102's 64 entries
    /// of 16 bytes made it 4,928 bytes; fix108's 12 entries of 16 bytes keep it at 4,096.
    #[test]
    fn a_condition_fits_the_4_kib_heap_class() {
        let size = Shared::<CondState>::tail_start();
        println!(
            "CondState {} bytes, Waiters {} bytes, Obj<CondState> (tail_start) {size} bytes",
            std::mem::size_of::<CondState>(),
            std::mem::size_of::<Waiters>()
        );
        assert!(size <= 4096, "{size} bytes: the 8 KiB class");
    }

    /// A notify made while the table's guard is held (as a stopped process would hold it:
    /// here this process) is deferred, and granted to the waiter of its time when the guard
    /// is let go; if the holder let it go without looking (a release racing the deferral),
    /// the next holder grants it before it arrives, with the horizon of the notify's time:
    /// the waiter of that time having left, to nobody, never to the later waiter.
    #[test]
    fn a_notify_made_while_the_table_is_held_goes_to_a_waiter_of_its_time() {
        let _heap = crate::shm::heap_test_user();
        let cond = Condition::new().unwrap();
        let waiters = &cond.state.waiters;
        let me = sys::me();
        let arrive = || {
            let _held = cond.lock_table(Deadline::NEVER).unwrap();
            waiters.arrive(me.pid, me.start)
        };
        for looked in [true, false] {
            let old = arrive();
            let Place::Slot(i) = old else { panic!("the table is empty") };
            let held = cond.lock_table(Deadline::NEVER).unwrap();
            cond.notify(1);
            assert!(!waiters.is_granted(i), "granted without the guard");
            assert_eq!(waiters.deferred(), 1);
            if looked {
                drop(held);
                assert!(waiters.leave(old, false), "the guard let go, the waiter of the notify's time was granted");
            } else {
                std::mem::forget(held);
                cond.state.guard.unlock();
                assert!(!waiters.leave(old, false), "the waiter timed out before the next holder came");
            }
            let new = arrive();
            assert_eq!(waiters.deferred(), 0);
            assert!(!waiters.leave(new, false), "the later waiter got nothing (looked: {looked})");
        }
    }

    /// review86 L4: `notify(0)` with the table's guard moved the epoch of the waiters
    /// beyond the table (a spurious wake-up for each), and without it did nothing: now
    /// nothing either way, as Python's.
    #[test]
    fn a_notify_of_none_wakes_nobody() {
        let _heap = crate::shm::heap_test_user();
        let cond = Condition::new().unwrap();
        let waiters = &cond.state.waiters;
        let me = sys::me();
        let places: Vec<Place> = (0..=crate::sync::waiters::SLOTS)
            .map(|_| {
                let _held = cond.lock_table(Deadline::NEVER).unwrap();
                waiters.arrive(me.pid, me.start)
            })
            .collect();
        let Some(&last @ Place::Overflow(..)) = places.last() else { panic!("the table is full") };
        cond.notify(0);
        let moved = waiters.claim(last);
        for place in places {
            waiters.leave(place, false);
        }
        assert!(!moved, "the waiters beyond the table were woken");
    }
}
