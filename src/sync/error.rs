//! The errors of the synchronization primitives, one per operation family.

use serde::{Deserialize, Serialize};

/// Why `try_acquire` returned without the lock.
///
/// Owner death is not an error: a lock or permit held by a process that died is taken over
/// and the guard's `owner_died()` says so (see [`Lock`](crate::Lock)).
///
/// # Examples
///
/// ```
/// use multiproc::TryAcquireError;
/// # multiproc::init();
/// let lock = multiproc::Lock::new()?;
/// let _held = lock.acquire()?;
/// assert_eq!(lock.try_acquire().unwrap_err(), TryAcquireError::WouldBlock);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum TryAcquireError {
    /// Somebody (alive) holds it.
    #[error("the lock is held by another thread or process")]
    WouldBlock,
}

/// Why `acquire_timeout` returned without the lock.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::AcquireTimeoutError;
/// # multiproc::init();
/// let sem = multiproc::Semaphore::new(0)?;
/// let late = sem.acquire_timeout(Duration::from_millis(10));
/// assert_eq!(late.unwrap_err(), AcquireTimeoutError::Timeout);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum AcquireTimeoutError {
    /// The timeout passed; the lock is not held.
    #[error("the lock was not acquired within the timeout")]
    Timeout,
}

/// A release that the lock's state does not allow (Python raises `ValueError` or
/// `AssertionError` for these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
///
/// # Examples
///
/// ```
/// use multiproc::{Lock, ReleaseError};
/// # multiproc::init();
/// assert_eq!(Lock::new()?.release(), Err(ReleaseError::NotLocked));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[non_exhaustive]
pub enum ReleaseError {
    /// `Lock::release` of a lock nobody holds.
    #[error("release of an unlocked lock")]
    NotLocked,
    /// `RLock::release` by a thread that does not hold it (another thread, another
    /// process, or nobody holds it).
    #[error("release of a recursive lock not held by this thread")]
    NotOwner,
    /// `BoundedSemaphore::release` above the initial value.
    #[error("semaphore released too many times (its bound is {bound})")]
    OverRelease {
        /// The semaphore's initial (and largest) value.
        bound: u32,
    },
    /// `Semaphore::try_release` of a semaphore whose value is already `u32::MAX` (Python's
    /// `release()` raises past its `SEM_VALUE_MAX` too).
    #[error("semaphore released past its largest value, u32::MAX")]
    Overflow,
}

/// A wait that nothing can end: no other live process holds a handle to the object, none
/// is in a message, the waiting process holds no other handle, and it runs no thread but
/// the waiting one (multiproc's own threads aside), so nobody is left to set the event or
/// notify the condition.
///
/// Never told falsely: where the waiting process runs another thread, that thread could
/// act through a reference to the waiter's handle (an `Arc`, a scoped thread, a static),
/// so the wait waits, as Python's does. Futures (`wait_async`) never answer it: another
/// task of the polling thread could hold such a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
///
/// # Examples
///
/// ```
/// use multiproc::{Abandoned, Event};
/// # multiproc::init();
/// let lonely = Event::new()?;
/// assert_eq!(lonely.wait(), Err(Abandoned)); // nobody else could set it
/// # Ok::<(), multiproc::Error>(())
/// ```
#[error("nobody else holds the object any more, so the wait could never end")]
pub struct Abandoned;

/// How a `Condition` wait ended without a notification, or why it did not begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
///
/// # Examples
///
/// ```
/// use multiproc::{Condition, ConditionWaitError, RLock};
/// # multiproc::init();
/// let cond = Condition::new()?;
/// let mut guard = cond.acquire()?;
/// assert!(matches!(guard.wait(), Err(ConditionWaitError::Abandoned(_))));
///
/// let lock = RLock::new()?;
/// let cond = Condition::with_lock(lock.clone())?;
/// let mut guard = cond.acquire()?;
/// lock.release()?; // the guard's level, given back by its owner
/// assert_eq!(guard.wait(), Err(ConditionWaitError::NotHeld));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[non_exhaustive]
pub enum ConditionWaitError {
    /// Nobody else can notify (see [`Abandoned`]); the guard holds the lock again.
    #[error(transparent)]
    Abandoned(#[from] Abandoned),
    /// The caller does not hold the condition's lock any more (Python's `RuntimeError:
    /// cannot wait on un-acquired lock`): the guard's level was given back with
    /// [`RLock::release`](crate::RLock::release), or the [`Lock`](crate::Lock) with
    /// [`Lock::release`](crate::Lock::release) (then held by another process, by another
    /// thread of this one, or by nobody). The wait did not begin: the lock, whoever holds
    /// it now, is untouched, and so is the condition (no notification taken). The guard
    /// holds nothing; its drop releases nothing.
    #[error("wait on a condition whose lock the caller does not hold")]
    NotHeld,
    /// An async wait ([`ConditionGuard::wait_async`](crate::ConditionGuard::wait_async))
    /// over an [`RLock`](crate::RLock) that the polling thread holds at more than one
    /// level (another guard of it is alive). The wait must release every level, and a
    /// future dropped mid-wait (a runtime's timeout) could not take the others back
    /// without blocking, leaving their guards alive with nothing held: so it does not
    /// begin, and the guard comes back with every level held. Wait with the blocking
    /// [`ConditionGuard::wait`](crate::ConditionGuard::wait) (which takes every level
    /// back), or hold the lock at one level.
    #[error("async wait on a condition whose RLock is held at more than one level")]
    NestedLevels,
}

/// Why a `Barrier` is broken: a `wait` on it fails until [`reset`](crate::Barrier::reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
///
/// # Examples
///
/// ```
/// use multiproc::{Barrier, BarrierBreak};
/// # multiproc::init();
/// let barrier = Barrier::new(2)?;
/// barrier.abort();
/// assert_eq!(barrier.wait().unwrap_err().cause(), BarrierBreak::Aborted);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[non_exhaustive]
pub enum BarrierBreak {
    /// [`Barrier::abort`](crate::Barrier::abort) was called.
    Aborted,
    /// [`Barrier::reset`](crate::Barrier::reset) was called while parties waited.
    Reset,
    /// A party's `wait_timeout` ran out.
    TimedOut,
    /// A process holding the barrier died without dropping it (killed, crashed).
    PartyDied,
    /// The barrier's action panicked when the barrier tripped.
    ActionPanicked,
    /// A party's [`wait_async`](crate::Barrier::wait_async) future was dropped while it
    /// waited (a runtime's timeout, a `select!` branch not taken).
    Cancelled,
    /// A party's blocking wait without a timeout found that nobody else could ever arrive: no handle is in a
    /// message, and every process holding the barrier holds one handle and runs no thread
    /// of the program's but a party blocked in this round (as
    /// [`Abandoned`](crate::Abandoned) for an `Event`; see [`Barrier`](crate::Barrier)).
    Abandoned,
}

impl BarrierBreak {
    pub(crate) fn code(self) -> u32 {
        match self {
            BarrierBreak::Aborted => 1,
            BarrierBreak::Reset => 2,
            BarrierBreak::TimedOut => 3,
            BarrierBreak::PartyDied => 4,
            BarrierBreak::ActionPanicked => 5,
            BarrierBreak::Cancelled => 6,
            BarrierBreak::Abandoned => 7,
        }
    }

    pub(crate) fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(BarrierBreak::Aborted),
            2 => Some(BarrierBreak::Reset),
            3 => Some(BarrierBreak::TimedOut),
            4 => Some(BarrierBreak::PartyDied),
            5 => Some(BarrierBreak::ActionPanicked),
            6 => Some(BarrierBreak::Cancelled),
            7 => Some(BarrierBreak::Abandoned),
            _ => None,
        }
    }
}

/// The barrier is broken (Python's `BrokenBarrierError`); [`BrokenBarrier::cause`] says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("the barrier is broken: {}", match .cause {
    BarrierBreak::Aborted => "it was aborted",
    BarrierBreak::Reset => "it was reset while parties waited",
    BarrierBreak::TimedOut => "a party's wait timed out",
    BarrierBreak::PartyDied => "a process holding it died",
    BarrierBreak::ActionPanicked => "its action panicked",
    BarrierBreak::Cancelled => "a party's async wait was dropped",
    BarrierBreak::Abandoned => "no other party could ever arrive",
})]
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Barrier, BarrierBreak};
/// # multiproc::init();
/// let barrier = Barrier::new(2)?;
/// let broken = barrier.wait_timeout(Duration::from_millis(10)).unwrap_err();
/// assert_eq!(broken.cause(), BarrierBreak::TimedOut);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "BrokenBarrierError")]
pub struct BrokenBarrier {
    pub(crate) cause: BarrierBreak,
}

impl BrokenBarrier {
    /// What broke it.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Barrier, BarrierBreak};
    /// # multiproc::init();
    /// let barrier = Barrier::new(3)?;
    /// barrier.abort();
    /// assert_eq!(barrier.wait().unwrap_err().cause(), BarrierBreak::Aborted);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn cause(&self) -> BarrierBreak {
        self.cause
    }
}
