//! Synchronization objects kept by the manager's server: `LockProxy`, `RLockProxy`,
//! `SemaphoreProxy` (plain and bounded), `EventProxy`, `ConditionProxy`, `BarrierProxy`.
//!
//! A blocking call waits on the server, parked until it can be answered (or until its
//! timeout passes), so no client polls. The server knows who holds what: a lock held by a
//! client that dies (or whose connection ends) is released, and a barrier one of whose
//! parties dies breaks, so no one waits forever. A `Lock` acquired by a family process is
//! that process's (its guard is `Send`): the end of the thread that took it releases
//! nothing, the death of the process does.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::error::ManagerError;
use super::handle::{proxy_handle, wait_for};
use super::link::{ProxyCore, Ref, unexpected};
use super::protocol::{Kind, Op, Out, Wait};
use crate::shm::TakenIn;

fn flag(out: Out<Ref>) -> Result<bool, ManagerError> {
    match out {
        Out::Bool(b) => Ok(b),
        other => Err(unexpected(other)),
    }
}

/// An acquire that waits `wait`; `waited` is what its wait running out is called
/// (`WouldBlock` for `try_acquire`, `Timeout` for `acquire_timeout`).
fn acquire(core: &ProxyCore, wait: Wait, waited: ManagerError) -> Result<Acquired, ManagerError> {
    match core.call(Op::Acquire { wait })? {
        Out::Held { hold, from_dead } => Ok(Acquired { died: from_dead, hold: Some(hold) }),
        Out::AcquiredFromDead => Ok(Acquired { died: true, hold: None }),
        Out::Bool(true) => Ok(Acquired { died: false, hold: None }),
        Out::Bool(false) => Err(waited),
        other => Err(unexpected(other)),
    }
}

/// What an acquire got.
#[derive(Clone, Copy)]
struct Acquired {
    /// The last holder died holding it.
    died: bool,
    /// A plain `Lock`'s: the number of this hold, which its guard releases by.
    hold: Option<u64>,
}

/// What an endless acquire that returned without the lock is: a server that broke the
/// protocol.
fn endless() -> ManagerError {
    ManagerError::Protocol("an endless acquire returned without the lock".into())
}

/// Releases a managed lock when dropped (from [`LockProxy::acquire`] and its `try_` and
/// `_timeout` forms, as [`LockGuard`](crate::LockGuard); any thread may release it, as in
/// Python).
///
/// A guard releases only its own hold. [`LockProxy::release`] releases whoever holds the
/// lock (Python's semantics); after it, the guard holds nothing, and its drop leaves alone
/// the hold of whoever took the lock since (its [`release`](ProxyLockGuard::release) says
/// [`ManagerError::NotAcquired`]), as [`LockGuard`](crate::LockGuard) does:
///
/// ```
/// use multiproc::ManagerError;
///
/// multiproc::init();
/// let manager = multiproc::Manager::start()?;
/// let lock = manager.lock()?;
/// let stale = lock.acquire()?;
/// lock.release()?; // anyone's release, as Python's
/// let next = lock.acquire()?;
/// assert!(matches!(stale.release(), Err(ManagerError::NotAcquired)));
/// assert!(lock.locked()?, "the next holder's hold stays");
/// drop(next);
/// assert!(!lock.locked()?);
/// # Ok::<(), ManagerError>(())
/// ```
///
/// A copy that fork made in a child (a guard kept in a static) releases nothing when
/// dropped, and its [`release`](ProxyLockGuard::release) panics: the lock is the
/// parent's, as for [`LockGuard`](crate::LockGuard).
///
/// # Examples
///
/// ```no_run
/// multiproc::init();
/// let manager = multiproc::Manager::start()?;
/// let lock = manager.lock()?;
/// let held = lock.acquire()?;
/// assert!(lock.locked()?);
/// held.release()?;
/// assert!(!lock.locked()?);
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[must_use = "the lock is released when the guard drops"]
pub struct ProxyLockGuard<'a> {
    core: &'a ProxyCore,
    released: bool,
    owner_died: bool,
    /// A plain `Lock`'s hold, which the guard releases (`Op::ReleaseHold`), and no other:
    /// after the proxy's own `release` (anyone may release a `Lock`, as in Python) another
    /// may hold the lock, and the guard leaves that hold alone (mgr108). `None`: an
    /// `RLock`'s or a semaphore's, released by `Op::Release` (the server checks an RLock's
    /// owner).
    hold: Option<u64>,
    /// A copy made by fork releases nothing: any connection may release a managed lock,
    /// so the child's `Release` would free the parent's.
    taken_in: TakenIn,
}

impl fmt::Debug for ProxyLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyLockGuard").field("lock", self.core).finish()
    }
}

impl<'a> ProxyLockGuard<'a> {
    fn new(core: &'a ProxyCore, acquired: Acquired) -> Self {
        Self { core, released: false, owner_died: acquired.died, hold: acquired.hold, taken_in: TakenIn::here() }
    }

    /// Releases the guard's hold: a plain `Lock`'s only if it is still the lock's (its
    /// hold released by the proxy's `release` meanwhile: `NotAcquired`, nothing done).
    fn release_hold(&self) -> Result<(), ManagerError> {
        match self.hold {
            Some(hold) => match self.core.call(Op::ReleaseHold { hold })? {
                Out::Bool(true) => Ok(()),
                Out::Bool(false) => Err(ManagerError::NotAcquired),
                other => Err(unexpected(other)),
            },
            None => self.core.call(Op::Release).map(drop),
        }
    }

    /// Whether the lock's last holder died holding it (its process was killed or crashed,
    /// or its remote connection ended): the server released it, and what it guarded may
    /// be half updated. As [`LockGuard::owner_died`](crate::LockGuard::owner_died), the
    /// flag is told to the one acquire that took the lock next.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let lock = manager.lock()?;
    /// assert!(!lock.acquire()?.owner_died());
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Releases now, reporting a failure that dropping the guard would ignore.
    ///
    /// The guard releases its own hold only: if the lock was released meanwhile through
    /// [`LockProxy::release`] (which releases whoever holds it, as Python's), the guard
    /// holds nothing, and neither this nor its drop releases the hold of whoever took the
    /// lock since.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone;
    /// [`ManagerError::NotAcquired`] when the guard's hold was released already (nothing
    /// is done).
    ///
    /// # Panics
    ///
    /// In a copy of the guard that fork made in a child.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let lock = manager.lock()?;
    /// lock.acquire()?.release()?;
    /// assert!(!lock.locked()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[track_caller]
    pub fn release(mut self) -> Result<(), ManagerError> {
        self.taken_in.check();
        self.released = true;
        self.release_hold()
    }

    /// Keeps the lock held past the guard (Python's `acquire()` without `release()`),
    /// as [`LockGuard::leave_locked`](crate::LockGuard::leave_locked); release it with
    /// the proxy's `release`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let lock = manager.lock()?;
    /// lock.acquire()?.leave_locked();
    /// assert!(lock.locked()?);
    /// lock.release()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn leave_locked(mut self) {
        self.released = true;
    }
}

impl Drop for ProxyLockGuard<'_> {
    fn drop(&mut self) {
        if !self.released && self.taken_in.is_here() {
            let _ = self.release_hold();
        }
    }
}

/// Releases a managed lock owned by a thread when dropped (from [`RLockProxy::acquire`]
/// and its `try_` and `_timeout` forms). It stays on the thread that locked (it is not `Send`, as
/// [`RLockGuard`](crate::RLockGuard)): the server refuses a release from another thread.
///
/// # Examples
///
/// ```no_run
/// multiproc::init();
/// let manager = multiproc::Manager::start()?;
/// let lock = manager.rlock()?;
/// let held = lock.acquire()?;
/// assert!(lock.locked()?);
/// held.release()?;
/// assert!(!lock.locked()?);
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[must_use = "the lock is released when the guard drops"]
pub struct ProxyRLockGuard<'a> {
    guard: ProxyLockGuard<'a>,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for ProxyRLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyRLockGuard").field("lock", self.guard.core).finish()
    }
}

impl<'a> ProxyRLockGuard<'a> {
    fn new(guard: ProxyLockGuard<'a>) -> Self {
        Self { guard, _not_send: PhantomData }
    }

    /// Releases now, reporting a failure that dropping the guard would ignore.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let lock = manager.rlock()?;
    /// let guard = lock.acquire()?;
    /// guard.release()?; // a failure here is reported, where a drop would ignore it
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[track_caller]
    pub fn release(self) -> Result<(), ManagerError> {
        self.guard.release()
    }

    /// Whether the lock's last holder died holding it, as
    /// [`ProxyLockGuard::owner_died`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let lock = manager.rlock()?;
    /// assert!(!lock.acquire()?.owner_died());
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.guard.owner_died
    }

    /// Keeps the lock held past the guard, as
    /// [`RLockGuard::leave_locked`](crate::RLockGuard::leave_locked); release it with the
    /// proxy's `release`, from this thread.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let lock = manager.rlock()?;
    /// lock.acquire()?.leave_locked();
    /// assert!(lock.locked()?);
    /// lock.release()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn leave_locked(self) {
        self.guard.leave_locked();
    }
}

/// The acquire family of a proxy whose guard is `$guard` (made from a
/// [`ProxyLockGuard`] by `$wrap`), shaped as the family's own locks: a guard, or why not.
macro_rules! lock_methods {
    ($guard:ty, $wrap:expr, $name:literal) => {
        #[doc = concat!("Acquires, waiting as long as it takes; released when the guard drops (Python's `with ", $name, ":`).")]
        ///
        /// # Errors
        ///
        /// [`ManagerError::ServerGone`] when the server is gone (a wait never outlives
        /// it); the same for every method.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// multiproc::init();
        /// let manager = multiproc::Manager::start()?;
        #[doc = concat!("let lock = manager.", $name, "()?;")]
        /// {
        ///     let _held = lock.acquire()?;
        ///     assert!(lock.locked()?);
        /// }
        /// assert!(!lock.locked()?);
        /// # Ok::<(), multiproc::ManagerError>(())
        /// ```
        pub fn acquire(&self) -> Result<$guard, ManagerError> {
            let acquired = acquire(&self.core, None, endless())?;
            Ok(($wrap)(ProxyLockGuard::new(&self.core, acquired)))
        }

        /// Acquires if free now (`acquire(False)`).
        ///
        /// # Errors
        ///
        /// [`ManagerError::WouldBlock`] when another holds it (the family's
        /// [`TryAcquireError::WouldBlock`](crate::TryAcquireError::WouldBlock)), and as
        /// `acquire`.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// use multiproc::ManagerError;
        ///
        /// multiproc::init();
        /// let manager = multiproc::Manager::start()?;
        #[doc = concat!("let lock = manager.", $name, "()?;")]
        /// let held = lock.try_acquire()?;
        /// let same = lock.clone();
        /// let other = std::thread::spawn(move || matches!(same.try_acquire(), Err(ManagerError::WouldBlock)));
        /// assert!(other.join().unwrap());
        /// # drop(held);
        /// # Ok::<(), ManagerError>(())
        /// ```
        pub fn try_acquire(&self) -> Result<$guard, ManagerError> {
            let acquired = acquire(&self.core, Some(0), ManagerError::WouldBlock)?;
            Ok(($wrap)(ProxyLockGuard::new(&self.core, acquired)))
        }

        /// Acquires, waiting at most `timeout`.
        ///
        /// # Errors
        ///
        /// [`ManagerError::Timeout`] when it stayed held (the family's
        /// [`AcquireTimeoutError::Timeout`](crate::AcquireTimeoutError::Timeout)), and as
        /// `acquire`.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// use std::time::Duration;
        ///
        /// multiproc::init();
        /// let manager = multiproc::Manager::start()?;
        #[doc = concat!("let lock = manager.", $name, "()?;")]
        /// let _held = lock.acquire_timeout(Duration::from_secs(1))?;
        /// # Ok::<(), multiproc::ManagerError>(())
        /// ```
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<$guard, ManagerError> {
            let acquired = acquire(&self.core, wait_for(timeout), ManagerError::Timeout)?;
            Ok(($wrap)(ProxyLockGuard::new(&self.core, acquired)))
        }

        /// Whether somebody holds it.
        ///
        /// # Errors
        ///
        /// As `acquire`.
        ///
        /// # Examples
        ///
        /// ```no_run
        /// multiproc::init();
        /// let manager = multiproc::Manager::start()?;
        #[doc = concat!("let lock = manager.", $name, "()?;")]
        /// assert!(!lock.locked()?);
        /// # Ok::<(), multiproc::ManagerError>(())
        /// ```
        pub fn locked(&self) -> Result<bool, ManagerError> {
            flag(self.core.call(Op::Locked)?)
        }
    };
}

/// A lock kept by a manager's server (Python's `manager.Lock()`). Any process or thread
/// may release it, as in Python; if the client holding it dies, the server releases it.
///
/// # Examples
///
/// ```no_run
/// use multiproc::Manager;
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let lock = manager.lock()?;
/// {
///     let _held = lock.acquire()?;
///     assert!(lock.locked()?);
/// }
/// lock.try_acquire()?.leave_locked();
/// lock.release()?;
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[doc(alias = "Lock")]
pub struct LockProxy {
    core: ProxyCore,
}

proxy_handle!(LockProxy, Kind::Lock);

impl LockProxy {
    lock_methods!(ProxyLockGuard<'_>, |guard| guard, "lock");

    /// Releases it, whoever holds it (Python's `Lock.release`). A guard of the hold so
    /// released holds nothing any more: its drop leaves the next holder alone.
    ///
    /// # Errors
    ///
    /// [`ManagerError::NotAcquired`] if it was not held (Python's `ValueError`), and as
    /// [`LockProxy::acquire`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ManagerError;
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let lock = manager.lock()?;
    /// lock.acquire()?.leave_locked(); // Python's lock.acquire() without a guard
    /// lock.release()?;
    /// assert!(matches!(lock.release(), Err(ManagerError::NotAcquired)));
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn release(&self) -> Result<(), ManagerError> {
        self.core.call(Op::Release).map(drop)
    }
}

/// A recursive lock kept by a manager's server (Python's `manager.RLock()`): the thread
/// that holds it may acquire it again, and must release it as often. If the client holding
/// it dies, the server releases it.
///
/// # Examples
///
/// ```no_run
/// use multiproc::Manager;
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let lock = manager.rlock()?;
/// let outer = lock.acquire()?;
/// let inner = lock.acquire()?;
/// drop(inner);
/// drop(outer);
/// assert!(!lock.locked()?);
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[doc(alias = "RLock")]
pub struct RLockProxy {
    core: ProxyCore,
}

proxy_handle!(RLockProxy, Kind::RLock);

impl RLockProxy {
    lock_methods!(ProxyRLockGuard<'_>, ProxyRLockGuard::new, "rlock");

    /// Releases one level.
    ///
    /// # Errors
    ///
    /// [`ManagerError::NotOwner`] from a thread that does not hold it,
    /// [`ManagerError::NotAcquired`] if nobody does, and as [`RLockProxy::acquire`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let lock = manager.rlock()?;
    /// lock.acquire()?.leave_locked();
    /// lock.acquire()?.leave_locked(); // twice: the thread holds two levels
    /// lock.release()?;
    /// lock.release()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn release(&self) -> Result<(), ManagerError> {
        self.core.call(Op::Release).map(drop)
    }
}

/// Gives a unit of a managed semaphore back when dropped (from [`SemaphoreProxy::acquire`]
/// and its `try_` and `_timeout` forms), as [`SemaphoreGuard`](crate::SemaphoreGuard).
///
/// # Examples
///
/// ```no_run
/// multiproc::init();
/// let manager = multiproc::Manager::start()?;
/// let slots = manager.semaphore(2)?;
/// let slot = slots.acquire()?;
/// assert_eq!(slots.get_value()?, 1);
/// slot.release()?;
/// assert_eq!(slots.get_value()?, 2);
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[must_use = "the unit is given back when the guard drops"]
pub struct ProxySemaphoreGuard<'a> {
    guard: ProxyLockGuard<'a>,
}

impl fmt::Debug for ProxySemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxySemaphoreGuard").field("semaphore", self.guard.core).finish()
    }
}

impl<'a> ProxySemaphoreGuard<'a> {
    fn new(core: &'a ProxyCore, owner_died: bool) -> Self {
        Self { guard: ProxyLockGuard::new(core, Acquired { died: owner_died, hold: None }) }
    }

    /// Whether this permit was taken back from a holder that died holding it (its process
    /// was killed or crashed, or its remote connection ended), as
    /// [`SemaphoreGuard::owner_died`](crate::SemaphoreGuard::owner_died): told to one
    /// acquire per permit taken back.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let slots = manager.semaphore(1)?;
    /// assert!(!slots.acquire()?.owner_died());
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.guard.owner_died
    }

    /// Gives the unit back now, reporting a failure that dropping the guard would ignore.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    ///
    /// # Panics
    ///
    /// In a copy of the guard that fork made in a child (whose drop gives nothing back).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let slots = manager.semaphore(1)?;
    /// slots.acquire()?.release()?;
    /// assert_eq!(slots.get_value()?, 1);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[track_caller]
    pub fn release(self) -> Result<(), ManagerError> {
        self.guard.release()
    }

    /// Keeps the unit past the guard, as
    /// [`SemaphoreGuard::forget`](crate::SemaphoreGuard::forget); give it back with the
    /// proxy's `release`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let slots = manager.semaphore(1)?;
    /// slots.acquire()?.forget();
    /// assert_eq!(slots.get_value()?, 0);
    /// slots.release()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn forget(self) {
        self.guard.leave_locked();
    }
}

/// A semaphore kept by a manager's server (Python's `manager.Semaphore(value)` and
/// `manager.BoundedSemaphore(value)`).
///
/// As the family's [`Semaphore`](crate::Semaphore), it gives back the permits of a holder
/// that died (a family process that ended, a remote client whose connection ended) and
/// tells their next takers ([`ProxySemaphoreGuard::owner_died`]); a permit acquired in one
/// process and released by another is handed over, and never comes back twice.
///
/// # Examples
///
/// ```no_run
/// use multiproc::Manager;
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let slots = manager.bounded_semaphore(2)?;
/// let first = slots.acquire()?;
/// slots.acquire()?.forget();
/// assert!(slots.try_acquire().is_err());
/// drop(first);
/// slots.release()?;
/// slots.release()?;
/// assert!(slots.release().is_err(), "bounded: not above its initial value");
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[doc(alias = "Semaphore")]
#[doc(alias = "BoundedSemaphore")]
pub struct SemaphoreProxy {
    core: ProxyCore,
}

proxy_handle!(SemaphoreProxy, Kind::Semaphore | Kind::BoundedSemaphore);

impl SemaphoreProxy {
    /// Takes one unit, waiting as long as it takes; given back when the guard drops, as
    /// [`Semaphore::acquire`](crate::Semaphore::acquire).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone; the same for every method.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let slots = manager.semaphore(1)?;
    /// {
    ///     let _slot = slots.acquire()?;
    ///     assert_eq!(slots.get_value()?, 0);
    /// }
    /// assert_eq!(slots.get_value()?, 1);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn acquire(&self) -> Result<ProxySemaphoreGuard<'_>, ManagerError> {
        let died = acquire(&self.core, None, endless())?.died;
        Ok(ProxySemaphoreGuard::new(&self.core, died))
    }

    /// Takes one unit if there is one now.
    ///
    /// # Errors
    ///
    /// [`ManagerError::WouldBlock`] when none is left (the family's
    /// [`TryAcquireError::WouldBlock`](crate::TryAcquireError::WouldBlock)), and as
    /// [`SemaphoreProxy::acquire`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::ManagerError;
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let slots = manager.semaphore(1)?;
    /// let _slot = slots.try_acquire()?;
    /// assert!(matches!(slots.try_acquire(), Err(ManagerError::WouldBlock)));
    /// # Ok::<(), ManagerError>(())
    /// ```
    pub fn try_acquire(&self) -> Result<ProxySemaphoreGuard<'_>, ManagerError> {
        let died = acquire(&self.core, Some(0), ManagerError::WouldBlock)?.died;
        Ok(ProxySemaphoreGuard::new(&self.core, died))
    }

    /// Takes one unit, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Timeout`] when none was given back in time (the family's
    /// [`AcquireTimeoutError::Timeout`](crate::AcquireTimeoutError::Timeout)), and as
    /// [`SemaphoreProxy::acquire`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiproc::ManagerError;
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let slots = manager.semaphore(1)?;
    /// let _slot = slots.acquire()?;
    /// assert!(matches!(slots.acquire_timeout(Duration::from_millis(10)), Err(ManagerError::Timeout)));
    /// # Ok::<(), ManagerError>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<ProxySemaphoreGuard<'_>, ManagerError> {
        let died = acquire(&self.core, wait_for(timeout), ManagerError::Timeout)?.died;
        Ok(ProxySemaphoreGuard::new(&self.core, died))
    }

    /// Gives one unit back.
    ///
    /// # Errors
    ///
    /// [`ManagerError::NotAcquired`] for a bounded semaphore already at its initial value
    /// (Python's `ValueError`), [`ManagerError::Overflow`] for one whose value is
    /// `u32::MAX` already (nothing changes), and as [`SemaphoreProxy::acquire`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let sem = manager.semaphore(0)?;
    /// sem.release()?;
    /// assert_eq!(sem.get_value()?, 1);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn release(&self) -> Result<(), ManagerError> {
        self.core.call(Op::Release).map(drop)
    }

    /// The units available now (`get_value()`).
    ///
    /// # Errors
    ///
    /// As [`SemaphoreProxy::acquire`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let sem = manager.semaphore(2)?;
    /// let _unit = sem.acquire()?;
    /// assert_eq!(sem.get_value()?, 1);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn get_value(&self) -> Result<u32, ManagerError> {
        match self.core.call(Op::SemValue)? {
            // The server keeps a semaphore within `u32` (see `store::SEMAPHORE_MAX`).
            Out::Count(n) => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
            other => Err(unexpected(other)),
        }
    }

    /// Whether this is a bounded semaphore.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// assert!(manager.bounded_semaphore(1)?.is_bounded());
    /// assert!(!manager.semaphore(1)?.is_bounded());
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn is_bounded(&self) -> bool {
        self.core.kind == Kind::BoundedSemaphore
    }
}

/// An event kept by a manager's server (Python's `manager.Event()`).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use multiproc::Manager;
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let ready = manager.event()?;
/// assert!(!ready.wait_timeout(Duration::from_millis(10))?);
/// ready.set()?;
/// ready.wait()?;
/// assert!(ready.is_set()?);
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[doc(alias = "Event")]
pub struct EventProxy {
    core: ProxyCore,
}

proxy_handle!(EventProxy, Kind::Event);

impl EventProxy {
    /// Sets the flag and wakes every waiter.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone; the same for every method.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let event = manager.event()?;
    /// event.set()?;
    /// assert!(event.is_set()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn set(&self) -> Result<(), ManagerError> {
        self.core.call(Op::EventSet).map(drop)
    }

    /// Clears the flag.
    ///
    /// # Errors
    ///
    /// As [`EventProxy::set`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let event = manager.event()?;
    /// event.set()?;
    /// event.clear()?;
    /// assert!(!event.is_set()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.core.call(Op::EventClear).map(drop)
    }

    /// Whether the flag is set.
    ///
    /// # Errors
    ///
    /// As [`EventProxy::set`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let event = manager.event()?;
    /// assert!(!event.is_set()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn is_set(&self) -> Result<bool, ManagerError> {
        flag(self.core.call(Op::EventIsSet)?)
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    ///
    /// As [`EventProxy::set`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let event = manager.event()?;
    /// event.set()?;
    /// event.wait()?; // set: returns at once
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn wait(&self) -> Result<(), ManagerError> {
        self.core.call(Op::EventWait { wait: None }).map(drop)
    }

    /// Waits at most `timeout`; whether the flag was set.
    ///
    /// # Errors
    ///
    /// As [`EventProxy::set`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let event = manager.event()?;
    /// assert!(!event.wait_timeout(Duration::from_millis(10))?); // not set: timed out
    /// event.set()?;
    /// assert!(event.wait_timeout(Duration::from_secs(60))?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        flag(self.core.call(Op::EventWait { wait: wait_for(timeout) })?)
    }
}

/// A condition variable with its own recursive lock, kept by a manager's server (Python's
/// `manager.Condition()`).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use multiproc::Manager;
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let cond = manager.condition()?;
/// let mut held = cond.acquire()?;
/// // Nobody notifies: the wait times out, with the lock held again.
/// assert!(!held.wait_timeout(Duration::from_millis(10))?);
/// held.notify_all()?;
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[doc(alias = "Condition")]
pub struct ConditionProxy {
    core: ProxyCore,
}

proxy_handle!(ConditionProxy, Kind::Condition);

impl ConditionProxy {
    lock_methods!(ProxyConditionGuard<'_>, ProxyConditionGuard::new, "condition");

    /// Releases one level of the lock.
    ///
    /// # Errors
    ///
    /// [`ManagerError::NotOwner`] from a thread that does not hold it, and as
    /// [`ConditionProxy::acquire`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let cond = manager.condition()?;
    /// cond.acquire()?.leave_locked();
    /// cond.release()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn release(&self) -> Result<(), ManagerError> {
        self.core.call(Op::Release).map(drop)
    }
}

/// The held lock of a managed condition (from [`ConditionProxy::acquire`] and its `try_`
/// and `_timeout` forms): wait and notify through it, as through a
/// [`ConditionGuard`](crate::ConditionGuard), so that nobody waits or notifies without the
/// lock. It releases the lock when dropped, and stays on the thread that locked (it is not
/// `Send`).
///
/// # Examples
///
/// ```no_run
/// use multiproc::{ConditionProxy, Manager, Process, ValueProxy};
///
/// fn ready((cond, flag): (ConditionProxy, ValueProxy<bool>)) {
///     let mut held = cond.acquire().unwrap();
///     flag.set(true).unwrap();
///     held.notify_all().unwrap();
/// }
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let cond = manager.condition()?;
/// let flag = manager.value(false)?;
/// let child = Process::new(ready, (cond.clone(), flag.clone())).start()?;
/// let mut held = cond.acquire()?;
/// held.wait_for(|| flag.get().unwrap())?;
/// drop(held);
/// child.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "the lock is released when the guard drops"]
pub struct ProxyConditionGuard<'a> {
    guard: ProxyRLockGuard<'a>,
}

impl fmt::Debug for ProxyConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConditionGuard").field("condition", self.guard.guard.core).finish()
    }
}

impl<'a> ProxyConditionGuard<'a> {
    fn new(guard: ProxyLockGuard<'a>) -> Self {
        Self { guard: ProxyRLockGuard::new(guard) }
    }

    fn core(&self) -> &ProxyCore {
        self.guard.guard.core
    }

    /// Whether the lock was taken, by the acquire or by a later wait taking it back, from a
    /// holder that died holding it, as [`ProxyLockGuard::owner_died`] and
    /// [`ConditionGuard::owner_died`](crate::ConditionGuard::owner_died).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let cond = manager.condition()?;
    /// assert!(!cond.acquire()?.owner_died());
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.guard.owner_died()
    }

    /// Releases now, reporting a failure that dropping the guard would ignore.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let cond = manager.condition()?;
    /// cond.acquire()?.release()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[track_caller]
    pub fn release(self) -> Result<(), ManagerError> {
        self.guard.release()
    }

    /// Keeps the lock held past the guard; release it with
    /// [`ConditionProxy::release`], from this thread.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let cond = manager.condition()?;
    /// cond.acquire()?.leave_locked();
    /// cond.release()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn leave_locked(self) {
        self.guard.leave_locked();
    }

    /// Releases the lock, waits for a notification, and takes the lock back, as
    /// [`ConditionGuard::wait`](crate::ConditionGuard::wait).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone; the same for every method.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::{ConditionProxy, Manager, Process};
    ///
    /// fn wake(cond: ConditionProxy) {
    ///     cond.acquire().unwrap().notify(1).unwrap();
    /// }
    ///
    /// multiproc::init();
    /// let manager = Manager::start()?;
    /// let cond = manager.condition()?;
    /// let mut held = cond.acquire()?;
    /// // The child can only notify once this wait released the lock.
    /// let child = Process::new(wake, cond.clone()).start()?;
    /// held.wait()?;
    /// drop(held);
    /// child.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(&mut self) -> Result<(), ManagerError> {
        self.cond_wait(None).map(drop)
    }

    /// A wait of at most `wait`; whether it was notified. Notes a lock taken back from a
    /// dead holder.
    fn cond_wait(&mut self, wait: Wait) -> Result<bool, ManagerError> {
        match self.core().call(Op::CondWait { wait })? {
            Out::RetookFromDead(notified) => {
                self.guard.guard.owner_died = true;
                Ok(notified)
            }
            out => flag(out),
        }
    }

    /// Like [`wait`](Self::wait), waiting at most `timeout` for the notification; whether
    /// one came. The lock is held again either way.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let cond = manager.condition()?;
    /// let mut held = cond.acquire()?;
    /// assert!(!held.wait_timeout(Duration::from_millis(10))?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool, ManagerError> {
        self.cond_wait(wait_for(timeout))
    }

    /// Waits until `predicate` holds (checked with the lock held, before each wait).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let cond = manager.condition()?;
    /// cond.acquire()?.wait_for(|| true)?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn wait_for(&mut self, mut predicate: impl FnMut() -> bool) -> Result<(), ManagerError> {
        while !predicate() {
            self.wait()?;
        }
        Ok(())
    }

    /// Waits at most `timeout` for `predicate` to hold; its last value (Python's
    /// `wait_for(predicate, timeout)`), as
    /// [`ConditionGuard::wait_for_timeout`](crate::ConditionGuard::wait_for_timeout).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let cond = manager.condition()?;
    /// let mut held = cond.acquire()?;
    /// assert!(!held.wait_for_timeout(Duration::from_millis(10), || false)?);
    /// assert!(held.wait_for_timeout(Duration::from_millis(10), || true)?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn wait_for_timeout(
        &mut self,
        timeout: Duration,
        mut predicate: impl FnMut() -> bool,
    ) -> Result<bool, ManagerError> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => timeout,
            };
            if left.is_zero() {
                return Ok(false);
            }
            self.wait_timeout(left)?;
        }
    }

    /// Wakes up to `n` waiters, as [`ConditionGuard::notify`](crate::ConditionGuard::notify);
    /// Python's `notify()` is `notify(1)`.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let cond = manager.condition()?;
    /// cond.acquire()?.notify(2)?; // nobody waits: nothing happens
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn notify(&mut self, n: u32) -> Result<(), ManagerError> {
        self.core().call(Op::CondNotify { n: u64::from(n) }).map(drop)
    }

    /// Wakes every waiter.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let cond = manager.condition()?;
    /// cond.acquire()?.notify_all()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn notify_all(&mut self) -> Result<(), ManagerError> {
        self.core().call(Op::CondNotify { n: u64::MAX }).map(drop)
    }
}

/// A barrier kept by a manager's server (Python's `manager.Barrier(parties)`).
///
/// # Examples
///
/// ```no_run
/// use multiproc::{BarrierProxy, Manager, Process};
///
/// fn party(b: BarrierProxy) -> usize {
///     b.wait().unwrap()
/// }
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let barrier = manager.barrier(2)?;
/// let other = Process::new(party, barrier.clone()).start()?;
/// let mine = barrier.wait()?;
/// let theirs = other.join()?;
/// assert_eq!(mine + theirs, 1, "each party gets its own index");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias = "Barrier")]
pub struct BarrierProxy {
    core: ProxyCore,
}

proxy_handle!(BarrierProxy, Kind::Barrier);

impl BarrierProxy {
    /// Waits until every party arrived; this party's index, `0..parties`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::BrokenBarrier`] when the barrier was aborted, reset, or broken by
    /// a party that timed out or died; [`ManagerError::ServerGone`] when the server is
    /// gone.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let barrier = manager.barrier(1)?;
    /// assert_eq!(barrier.wait()?, 0); // one party: passes at once
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn wait(&self) -> Result<usize, ManagerError> {
        self.wait_with(None)
    }

    /// Like [`BarrierProxy::wait`], waiting at most `timeout`; a timeout breaks the
    /// barrier for every party, as in Python.
    ///
    /// # Errors
    ///
    /// As [`BarrierProxy::wait`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::ManagerError;
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let barrier = manager.barrier(2)?;
    /// let alone = barrier.wait_timeout(Duration::from_millis(10));
    /// assert!(matches!(alone, Err(ManagerError::BrokenBarrier))); // the other party never came
    /// assert!(barrier.is_broken()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, ManagerError> {
        self.wait_with(wait_for(timeout))
    }

    fn wait_with(&self, wait: Wait) -> Result<usize, ManagerError> {
        match self.core.call(Op::BarrierWait { wait })? {
            Out::Count(n) => Ok(n as usize),
            other => Err(unexpected(other)),
        }
    }

    /// Breaks the waits in progress; the barrier can be used again.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let barrier = manager.barrier(2)?;
    /// barrier.abort()?;
    /// barrier.reset()?;
    /// assert!(!barrier.is_broken()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn reset(&self) -> Result<(), ManagerError> {
        self.core.call(Op::BarrierReset).map(drop)
    }

    /// Breaks the barrier for good (until `reset`).
    ///
    /// # Errors
    ///
    /// As [`BarrierProxy::reset`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ManagerError;
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let barrier = manager.barrier(2)?;
    /// barrier.abort()?;
    /// assert!(matches!(barrier.wait(), Err(ManagerError::BrokenBarrier)));
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn abort(&self) -> Result<(), ManagerError> {
        self.core.call(Op::BarrierAbort).map(drop)
    }

    fn state(&self) -> Result<(u64, u64, bool), ManagerError> {
        match self.core.call(Op::BarrierState)? {
            Out::Barrier { parties, waiting, broken } => Ok((parties, waiting, broken)),
            other => Err(unexpected(other)),
        }
    }

    /// How many parties it waits for.
    ///
    /// # Errors
    ///
    /// As [`BarrierProxy::reset`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let barrier = manager.barrier(3)?;
    /// assert_eq!(barrier.parties()?, 3);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn parties(&self) -> Result<usize, ManagerError> {
        Ok(self.state()?.0 as usize)
    }

    /// How many parties wait now.
    ///
    /// # Errors
    ///
    /// As [`BarrierProxy::reset`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let barrier = manager.barrier(3)?;
    /// assert_eq!(barrier.n_waiting()?, 0);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn n_waiting(&self) -> Result<usize, ManagerError> {
        Ok(self.state()?.1 as usize)
    }

    /// Whether it is broken (Python's `broken`), as [`Barrier::is_broken`](crate::Barrier::is_broken).
    ///
    /// # Errors
    ///
    /// As [`BarrierProxy::reset`].
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let barrier = manager.barrier(2)?;
    /// assert!(!barrier.is_broken()?);
    /// barrier.abort()?;
    /// assert!(barrier.is_broken()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn is_broken(&self) -> Result<bool, ManagerError> {
        Ok(self.state()?.2)
    }
}
