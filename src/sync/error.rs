//! The errors of the synchronization primitives, one per operation family.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The lock was acquired, from a holder that died holding it: what it protected may be
/// half-updated (like std's `PoisonError`, which this mirrors).
///
/// The guard inside is a real one: the lock is held. Take it with [`OwnerDied::into_guard`]
/// after checking or repairing the protected state; dropping the error releases the lock.
/// Only the acquirer that took the lock over is told; later acquirers get a clean lock.
///
/// # Examples
///
/// ```no_run
/// use multiproc::Lock;
///
/// multiproc::init();
/// let lock = Lock::new()?;
/// let guard = lock.acquire().unwrap_or_else(|died| {
///     eprintln!("the previous holder died; checking the shared state");
///     died.into_guard()
/// });
/// drop(guard);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct OwnerDied<G> {
    guard: G,
}

impl<G> OwnerDied<G> {
    pub(crate) fn new(guard: G) -> Self {
        Self { guard }
    }

    /// The guard: the lock is held.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// let guard = lock.acquire().unwrap_or_else(multiproc::OwnerDied::into_guard);
    /// # drop(guard);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn into_guard(self) -> G {
        self.guard
    }

    /// The guard, borrowed.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// if let Err(died) = lock.acquire() {
    ///     let _guard: &multiproc::LockGuard<'_> = died.get_ref();
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// The guard, borrowed mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// if let Err(mut died) = lock.acquire() {
    ///     let _guard: &mut multiproc::LockGuard<'_> = died.get_mut();
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied").finish_non_exhaustive()
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the previous holder died while holding the lock; the lock was taken over")
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

/// Why `try_acquire` returned without the lock.
///
/// # Examples
///
/// ```
/// use multiproc::TryAcquireError;
/// # multiproc::init();
/// let lock = multiproc::Lock::new()?;
/// let _held = lock.acquire()?;
/// match lock.try_acquire() {
///     Ok(_) => unreachable!(),
///     Err(TryAcquireError::WouldBlock) => println!("busy"),
///     Err(TryAcquireError::OwnerDied(died)) => drop(died.into_guard()),
/// }
/// # Ok::<(), multiproc::Error>(())
/// ```
pub enum TryAcquireError<G> {
    /// Somebody (alive) holds it.
    WouldBlock,
    /// It was acquired from a holder that died (see [`OwnerDied`]).
    OwnerDied(OwnerDied<G>),
}

/// Why `acquire_timeout` returned without a clean lock.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::AcquireTimeoutError;
/// # multiproc::init();
/// let sem = multiproc::Semaphore::new(0)?;
/// match sem.acquire_timeout(Duration::from_millis(10)) {
///     Err(AcquireTimeoutError::Timeout) => println!("no permit in time"),
///     Err(AcquireTimeoutError::OwnerDied(died)) => drop(died.into_guard()),
///     Ok(_permit) => {}
/// }
/// # Ok::<(), multiproc::Error>(())
/// ```
pub enum AcquireTimeoutError<G> {
    /// The timeout passed; the lock is not held.
    Timeout,
    /// It was acquired from a holder that died (see [`OwnerDied`]).
    OwnerDied(OwnerDied<G>),
}

macro_rules! guard_error_impls {
    ($name:ident, $blocked:ident, $blocked_msg:literal) => {
        impl<G> $name<G> {
            /// The guard if the lock was acquired (from a dead holder), else `None`.
            pub fn into_guard(self) -> Option<G> {
                match self {
                    $name::$blocked => None,
                    $name::OwnerDied(died) => Some(died.into_guard()),
                }
            }
        }

        impl<G> fmt::Debug for $name<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $name::$blocked => f.write_str(stringify!($blocked)),
                    $name::OwnerDied(died) => f.debug_tuple("OwnerDied").field(died).finish(),
                }
            }
        }

        impl<G> fmt::Display for $name<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $name::$blocked => f.write_str($blocked_msg),
                    $name::OwnerDied(died) => fmt::Display::fmt(died, f),
                }
            }
        }

        impl<G> std::error::Error for $name<G> {}

        impl<G> From<OwnerDied<G>> for $name<G> {
            fn from(died: OwnerDied<G>) -> Self {
                $name::OwnerDied(died)
            }
        }
    };
}

guard_error_impls!(TryAcquireError, WouldBlock, "the lock is held by another thread or process");
guard_error_impls!(AcquireTimeoutError, Timeout, "the lock was not acquired within the timeout");

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
}

/// A wait that nothing can end: no other live process holds a handle to the object, none
/// is in a message, and the waiting process holds no other handle, so nobody is left to
/// set the event or notify the condition.
///
/// A thread of the waiting process that is meant to end the wait must hold its own clone
/// of the handle (not a borrow), or its presence cannot be seen.
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

/// How a `Condition` wait ended without a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
///
/// # Examples
///
/// ```
/// use multiproc::{Condition, ConditionWaitError};
/// # multiproc::init();
/// let cond = Condition::new()?;
/// let mut guard = cond.acquire()?;
/// assert!(matches!(guard.wait(), Err(ConditionWaitError::Abandoned(_))));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[non_exhaustive]
pub enum ConditionWaitError {
    /// The lock was re-acquired from a holder that died holding it: the guard holds the
    /// lock, but what it protects may be half-updated.
    #[error("the condition's lock was re-acquired from a holder that died holding it")]
    OwnerDied,
    /// Nobody else can notify (see [`Abandoned`]); the guard holds the lock again.
    #[error(transparent)]
    Abandoned(#[from] Abandoned),
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
