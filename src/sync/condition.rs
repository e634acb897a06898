//! `Condition`: waiting for a change announced under a lock.
//!
//! Waiters and notifications are counted in shared memory: a waiter announces itself
//! (under the lock, so a notifier, also under the lock, sees it), `notify(n)` turns up to
//! `n` announced waiters into *permits*, and each permit wakes exactly one waiter. A waiter
//! whose timeout runs out takes a permit if one is left (it was notified after all) or
//! withdraws its announcement, so that a later notification goes to somebody still
//! waiting.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{Abandoned, AcquireTimeoutError, ConditionWaitError, OwnerDied, TryAcquireError};
use super::lock::Lock;
use super::rlock::RLock;
use crate::error::Error;
use crate::shm::{
    Acquired, Deadline, Interrupted, Notify, Owner, RawGuard, RawMutex, SPIN, Shared, ShmObject, TimedOut, kind,
};

#[derive(crate::ShmSafe)]
#[repr(C)]
pub(crate) struct CondState {
    /// Guards `waiters` and the withdrawal of a waiter.
    guard: RawMutex,
    /// Announced waiters not notified yet.
    waiters: AtomicU32,
    /// Notifications not taken by a waiter yet.
    permits: AtomicU32,
    wake: Notify,
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

impl Underlying {
    fn lock(&self, deadline: Deadline) -> Result<Acquired, TimedOut> {
        match self {
            Underlying::Lock(lock) => lock.shared.mutex.lock(Owner::process(), deadline),
            Underlying::RLock(rlock) => rlock.lock_level(deadline),
        }
    }

    fn try_lock(&self) -> Option<Acquired> {
        match self {
            Underlying::Lock(lock) => lock.shared.mutex.try_lock_or_take_over(Owner::process()),
            Underlying::RLock(rlock) => rlock.try_lock_level(),
        }
    }

    fn unlock(&self) {
        match self {
            Underlying::Lock(lock) => lock.shared.mutex.unlock(),
            Underlying::RLock(rlock) => {
                let _ = rlock.unlock_level();
            }
        }
    }

    /// Releases the lock entirely; returns what [`Underlying::relock_all`] needs.
    fn unlock_all(&self) -> u32 {
        match self {
            Underlying::Lock(lock) => {
                lock.shared.mutex.unlock();
                1
            }
            Underlying::RLock(rlock) => rlock.unlock_all(),
        }
    }

    fn relock_all(&self, levels: u32) -> Acquired {
        match self {
            Underlying::Lock(lock) => {
                lock.shared.mutex.lock(Owner::process(), Deadline::NEVER).expect("an endless wait does not time out")
            }
            Underlying::RLock(rlock) => rlock.relock_all(levels),
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
/// A process that dies holding the lock does not block the others: the next acquirer gets
/// the lock inside [`OwnerDied`]. A process killed while *waiting* may take one
/// notification with it; `notify_all` still wakes everybody.
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
        d.field("waiters", &self.state.waiters.load(Ordering::Relaxed)).finish()
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
        let state = CondState {
            guard: RawMutex::new(),
            waiters: AtomicU32::new(0),
            permits: AtomicU32::new(0),
            wake: Notify::new(),
        };
        Ok(Self { state: Shared::new(state)?, lock: lock.into_underlying() })
    }

    fn guard(&self, acquired: Acquired) -> Result<ConditionGuard<'_>, OwnerDied<ConditionGuard<'_>>> {
        let guard = ConditionGuard { cond: self, _not_send: PhantomData };
        match acquired {
            Acquired::Clean => Ok(guard),
            Acquired::OwnerDied => Err(OwnerDied::new(guard)),
        }
    }

    /// Acquires the condition's lock.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) when the lock was taken over from a dead holder.
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
    pub fn acquire(&self) -> Result<ConditionGuard<'_>, OwnerDied<ConditionGuard<'_>>> {
        let acquired = self.lock.lock(Deadline::NEVER).expect("an endless wait does not time out");
        self.guard(acquired)
    }

    /// Acquires the lock if it is free; never waits.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::WouldBlock`] or [`TryAcquireError::OwnerDied`].
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
    pub fn try_acquire(&self) -> Result<ConditionGuard<'_>, TryAcquireError<ConditionGuard<'_>>> {
        match self.lock.try_lock() {
            Some(acquired) => Ok(self.guard(acquired)?),
            None => Err(TryAcquireError::WouldBlock),
        }
    }

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireTimeoutError::Timeout`] or [`AcquireTimeoutError::OwnerDied`].
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
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ConditionGuard<'_>, AcquireTimeoutError<ConditionGuard<'_>>> {
        match self.lock.lock(Deadline::after(timeout)) {
            Ok(acquired) => Ok(self.guard(acquired)?),
            Err(TimedOut) => Err(AcquireTimeoutError::Timeout),
        }
    }

    /// Takes a notification if one is there.
    fn take_permit(&self) -> Option<()> {
        let permits = &self.state.permits;
        let mut p = permits.load(Ordering::Acquire);
        while p > 0 {
            match permits.compare_exchange_weak(p, p - 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(()),
                Err(now) => p = now,
            }
        }
        None
    }

    /// A waiter gives up: it takes a notification that is still there (it was notified
    /// as it left) or withdraws. Returns whether it was notified.
    fn withdraw(&self) -> bool {
        let _g = RawGuard::lock(&self.state.guard);
        if self.take_permit().is_some() {
            return true;
        }
        let waiters = self.state.waiters.load(Ordering::Relaxed);
        self.state.waiters.store(waiters.saturating_sub(1), Ordering::Relaxed);
        false
    }

    fn wait_until(&self, deadline: Deadline) -> Result<bool, ConditionWaitError> {
        let state = &*self.state;
        {
            let _g = RawGuard::lock(&state.guard);
            state.waiters.fetch_add(1, Ordering::Relaxed);
        }
        let levels = self.lock.unlock_all();
        let waited = state.wake.wait(
            deadline,
            SPIN,
            || self.take_permit(),
            || {
                if self.state.sole_handle() { Err(Abandoned) } else { Ok(()) }
            },
        );
        let outcome = match waited {
            Ok(()) => Ok(true),
            Err(Interrupted::TimedOut) => Ok(self.withdraw()),
            Err(Interrupted::Check(abandoned)) => {
                if self.withdraw() {
                    Ok(true)
                } else {
                    Err(ConditionWaitError::Abandoned(abandoned))
                }
            }
        };
        if self.lock.relock_all(levels) == Acquired::OwnerDied {
            return Err(ConditionWaitError::OwnerDied);
        }
        outcome
    }

    fn notify(&self, n: u32) {
        let state = &*self.state;
        let woken = {
            let _g = RawGuard::lock(&state.guard);
            let waiters = state.waiters.load(Ordering::Relaxed);
            let k = waiters.min(n);
            state.waiters.store(waiters - k, Ordering::Relaxed);
            state.permits.fetch_add(k, Ordering::AcqRel);
            k
        };
        if woken > 0 {
            state.wake.notify(woken);
        }
    }
}

/// The held lock of a [`Condition`]: wait and notify through it; dropping it releases the
/// lock. It stays on the thread that acquired it.
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
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard").field("condition", self.cond).finish()
    }
}

impl ConditionGuard<'_> {
    /// Releases the lock, waits for a notification, and takes the lock back (all its
    /// levels, for an `RLock`). Like every condition wait, it may return without the
    /// awaited change: check the state in a loop, or use [`ConditionGuard::wait_for`].
    ///
    /// # Errors
    ///
    /// [`ConditionWaitError::OwnerDied`] when the lock was re-acquired from a holder that
    /// died holding it, [`ConditionWaitError::Abandoned`] when nobody else could notify.
    /// The guard holds the lock again in both cases.
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
    pub fn wait(&mut self) -> Result<(), ConditionWaitError> {
        self.cond.wait_until(Deadline::NEVER).map(|_| ())
    }

    /// Like [`ConditionGuard::wait`], waiting at most `timeout`; returns whether a
    /// notification came (Python's `wait(timeout)`).
    ///
    /// # Errors
    ///
    /// [`ConditionWaitError::OwnerDied`] when the lock was re-acquired from a dead holder.
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
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool, ConditionWaitError> {
        match self.cond.wait_until(Deadline::after(timeout)) {
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
    pub fn wait_for(&mut self, mut predicate: impl FnMut() -> bool) -> Result<(), ConditionWaitError> {
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
    /// [`ConditionWaitError::OwnerDied`] when the lock was re-acquired from a dead holder.
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
    pub fn wait_for_timeout(
        &mut self,
        timeout: Duration,
        mut predicate: impl FnMut() -> bool,
    ) -> Result<bool, ConditionWaitError> {
        let deadline = Deadline::after(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.passed() {
                return Ok(false);
            }
            match self.cond.wait_until(deadline) {
                Ok(_) | Err(ConditionWaitError::Abandoned(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Wakes up to `n` waiters (each notification wakes exactly one of the processes
    /// waiting now).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let cond = multiproc::Condition::new()?;
    /// cond.acquire()?.notify(2); // nobody waits: nothing happens
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn notify(&mut self, n: u32) {
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
    pub fn notify_all(&mut self) {
        self.cond.notify(u32::MAX);
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        self.cond.lock.unlock();
    }
}
