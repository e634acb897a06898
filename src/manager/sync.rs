//! Synchronization objects kept by the manager's server: `LockProxy`, `RLockProxy`,
//! `SemaphoreProxy` (plain and bounded), `EventProxy`, `ConditionProxy`, `BarrierProxy`.
//!
//! A blocking call waits on the server, parked until it can be answered (or until its
//! timeout passes), so no client polls. The server knows who holds what: a lock held by a
//! client that dies (or whose connection ends) is released, and a barrier one of whose
//! parties dies breaks, so no one waits forever.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::error::ManagerError;
use super::handle::{proxy_handle, wait_for};
use super::link::{ProxyCore, Ref, unexpected};
use super::protocol::{Kind, Op, Out, Wait};

fn flag(out: Out<Ref>) -> Result<bool, ManagerError> {
    match out {
        Out::Bool(b) => Ok(b),
        other => Err(unexpected(other)),
    }
}

fn acquire(core: &ProxyCore, wait: Wait) -> Result<bool, ManagerError> {
    flag(core.call(Op::Acquire { wait })?)
}

/// Releases a managed lock when dropped (from [`LockProxy::lock`]; any thread may release
/// it, as in Python).
///
/// # Examples
///
/// ```no_run
/// multiproc::init();
/// let manager = multiproc::Manager::start()?;
/// let lock = manager.lock()?;
/// let held = lock.lock()?;
/// assert!(lock.locked()?);
/// held.release()?;
/// assert!(!lock.locked()?);
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[must_use = "the lock is released when the guard drops"]
pub struct ProxyLockGuard<'a> {
    core: &'a ProxyCore,
    released: bool,
}

impl fmt::Debug for ProxyLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyLockGuard").field("lock", self.core).finish()
    }
}

impl ProxyLockGuard<'_> {
    /// Releases now, reporting a failure that dropping the guard would ignore.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    pub fn release(mut self) -> Result<(), ManagerError> {
        self.released = true;
        self.core.call(Op::Release).map(drop)
    }
}

impl Drop for ProxyLockGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.core.call(Op::Release);
        }
    }
}

/// Releases a managed lock owned by a thread when dropped (from [`RLockProxy::lock`],
/// [`ConditionProxy::lock`]). It stays on the thread that locked (it is not `Send`, as
/// [`RLockGuard`](crate::RLockGuard)): the server refuses a release from another thread.
///
/// # Examples
///
/// ```no_run
/// multiproc::init();
/// let manager = multiproc::Manager::start()?;
/// let lock = manager.rlock()?;
/// let held = lock.lock()?;
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
    pub fn release(self) -> Result<(), ManagerError> {
        self.guard.release()
    }
}

macro_rules! lock_methods {
    ($guard:ty, $wrap:expr) => {
        /// Acquires, waiting as long as it takes.
        ///
        /// # Errors
        ///
        /// [`ManagerError::ServerGone`] when the server is gone (a wait never outlives
        /// it); the same for every method.
        pub fn acquire(&self) -> Result<(), ManagerError> {
            acquire(&self.core, None).map(drop)
        }

        /// Acquires if free now (`acquire(False)`); whether it did.
        ///
        /// # Errors
        ///
        /// As `acquire`.
        pub fn try_acquire(&self) -> Result<bool, ManagerError> {
            acquire(&self.core, Some(0))
        }

        /// Acquires, waiting at most `timeout`; whether it did.
        ///
        /// # Errors
        ///
        /// As `acquire`.
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
            acquire(&self.core, wait_for(timeout))
        }

        /// Acquires, and releases when the guard drops (Python's `with lock:`).
        ///
        /// # Errors
        ///
        /// As `acquire`.
        pub fn lock(&self) -> Result<$guard, ManagerError> {
            self.acquire()?;
            Ok(($wrap)(ProxyLockGuard { core: &self.core, released: false }))
        }

        /// Whether somebody holds it.
        ///
        /// # Errors
        ///
        /// As `acquire`.
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
///     let _held = lock.lock()?;
///     assert!(!lock.try_acquire()?);
/// }
/// assert!(lock.try_acquire()?);
/// lock.release()?;
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[doc(alias = "Lock")]
pub struct LockProxy {
    core: ProxyCore,
}

proxy_handle!(LockProxy, Kind::Lock);

impl LockProxy {
    lock_methods!(ProxyLockGuard<'_>, |guard| guard);

    /// Releases it.
    ///
    /// # Errors
    ///
    /// [`ManagerError::NotAcquired`] if it was not held (Python's `ValueError`), and as
    /// [`LockProxy::acquire`].
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
/// let outer = lock.lock()?;
/// let inner = lock.lock()?;
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
    lock_methods!(ProxyRLockGuard<'_>, ProxyRLockGuard::new);

    /// Releases one level.
    ///
    /// # Errors
    ///
    /// [`ManagerError::NotOwner`] from a thread that does not hold it,
    /// [`ManagerError::NotAcquired`] if nobody does, and as [`RLockProxy::acquire`].
    pub fn release(&self) -> Result<(), ManagerError> {
        self.core.call(Op::Release).map(drop)
    }
}

/// A semaphore kept by a manager's server (Python's `manager.Semaphore(value)` and
/// `manager.BoundedSemaphore(value)`).
///
/// # Examples
///
/// ```no_run
/// use multiproc::Manager;
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let slots = manager.bounded_semaphore(2)?;
/// slots.acquire()?;
/// slots.acquire()?;
/// assert!(!slots.try_acquire()?);
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
    /// Takes one unit, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone; the same for every method.
    pub fn acquire(&self) -> Result<(), ManagerError> {
        acquire(&self.core, None).map(drop)
    }

    /// Takes one unit if there is one now; whether it did.
    ///
    /// # Errors
    ///
    /// As [`SemaphoreProxy::acquire`].
    pub fn try_acquire(&self) -> Result<bool, ManagerError> {
        acquire(&self.core, Some(0))
    }

    /// Takes one unit, waiting at most `timeout`; whether it did.
    ///
    /// # Errors
    ///
    /// As [`SemaphoreProxy::acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        acquire(&self.core, wait_for(timeout))
    }

    /// Gives one unit back.
    ///
    /// # Errors
    ///
    /// [`ManagerError::NotAcquired`] for a bounded semaphore already at its initial value
    /// (Python's `ValueError`), [`ManagerError::Overflow`] for one whose value is
    /// `u64::MAX` already (nothing changes), and as [`SemaphoreProxy::acquire`].
    pub fn release(&self) -> Result<(), ManagerError> {
        self.core.call(Op::Release).map(drop)
    }

    /// The units available now (`get_value()`).
    ///
    /// # Errors
    ///
    /// As [`SemaphoreProxy::acquire`].
    pub fn get_value(&self) -> Result<u64, ManagerError> {
        match self.core.call(Op::SemValue)? {
            Out::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// Whether this is a bounded semaphore.
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
    pub fn set(&self) -> Result<(), ManagerError> {
        self.core.call(Op::EventSet).map(drop)
    }

    /// Clears the flag.
    ///
    /// # Errors
    ///
    /// As [`EventProxy::set`].
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.core.call(Op::EventClear).map(drop)
    }

    /// Whether the flag is set.
    ///
    /// # Errors
    ///
    /// As [`EventProxy::set`].
    pub fn is_set(&self) -> Result<bool, ManagerError> {
        flag(self.core.call(Op::EventIsSet)?)
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    ///
    /// As [`EventProxy::set`].
    pub fn wait(&self) -> Result<(), ManagerError> {
        self.core.call(Op::EventWait { wait: None }).map(drop)
    }

    /// Waits at most `timeout`; whether the flag was set.
    ///
    /// # Errors
    ///
    /// As [`EventProxy::set`].
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
/// let _held = cond.lock()?;
/// // Nobody notifies: the wait times out, with the lock held again.
/// assert!(!cond.wait_timeout(Duration::from_millis(10))?);
/// cond.notify_all()?;
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[doc(alias = "Condition")]
pub struct ConditionProxy {
    core: ProxyCore,
}

proxy_handle!(ConditionProxy, Kind::Condition);

impl ConditionProxy {
    lock_methods!(ProxyRLockGuard<'_>, ProxyRLockGuard::new);

    /// Releases one level of the lock.
    ///
    /// # Errors
    ///
    /// [`ManagerError::NotOwner`] from a thread that does not hold it, and as
    /// [`ConditionProxy::acquire`].
    pub fn release(&self) -> Result<(), ManagerError> {
        self.core.call(Op::Release).map(drop)
    }

    /// Releases the lock, waits for a notification, and takes the lock back.
    ///
    /// # Errors
    ///
    /// [`ManagerError::NotOwner`] without the lock, and as [`ConditionProxy::acquire`].
    pub fn wait(&self) -> Result<(), ManagerError> {
        self.core.call(Op::CondWait { wait: None }).map(drop)
    }

    /// Like [`ConditionProxy::wait`], waiting at most `timeout` for the notification;
    /// whether one came. The lock is held again either way.
    ///
    /// # Errors
    ///
    /// As [`ConditionProxy::wait`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        flag(self.core.call(Op::CondWait { wait: wait_for(timeout) })?)
    }

    /// Waits until `predicate` holds (checked with the lock held, before each wait).
    ///
    /// # Errors
    ///
    /// As [`ConditionProxy::wait`].
    pub fn wait_for(&self, mut predicate: impl FnMut() -> bool) -> Result<(), ManagerError> {
        while !predicate() {
            self.wait()?;
        }
        Ok(())
    }

    /// Wakes up to `n` waiters (the lock must be held), as
    /// [`ConditionGuard::notify`](crate::ConditionGuard::notify) does; Python's `notify()`
    /// is `notify(1)`.
    ///
    /// # Errors
    ///
    /// As [`ConditionProxy::wait`].
    pub fn notify(&self, n: usize) -> Result<(), ManagerError> {
        self.core.call(Op::CondNotify { n: n as u64 }).map(drop)
    }

    /// Wakes every waiter (the lock must be held).
    ///
    /// # Errors
    ///
    /// As [`ConditionProxy::wait`].
    pub fn notify_all(&self) -> Result<(), ManagerError> {
        self.core.call(Op::CondNotify { n: u64::MAX }).map(drop)
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
    pub fn wait(&self) -> Result<usize, ManagerError> {
        self.wait_with(None)
    }

    /// Like [`BarrierProxy::wait`], waiting at most `timeout`; a timeout breaks the
    /// barrier for every party, as in Python.
    ///
    /// # Errors
    ///
    /// As [`BarrierProxy::wait`].
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
    pub fn reset(&self) -> Result<(), ManagerError> {
        self.core.call(Op::BarrierReset).map(drop)
    }

    /// Breaks the barrier for good (until `reset`).
    ///
    /// # Errors
    ///
    /// As [`BarrierProxy::reset`].
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
    pub fn parties(&self) -> Result<usize, ManagerError> {
        Ok(self.state()?.0 as usize)
    }

    /// How many parties wait now.
    ///
    /// # Errors
    ///
    /// As [`BarrierProxy::reset`].
    pub fn n_waiting(&self) -> Result<usize, ManagerError> {
        Ok(self.state()?.1 as usize)
    }

    /// Whether it is broken (Python's `broken`), as [`Barrier::is_broken`](crate::Barrier::is_broken).
    ///
    /// # Errors
    ///
    /// As [`BarrierProxy::reset`].
    pub fn is_broken(&self) -> Result<bool, ManagerError> {
        Ok(self.state()?.2)
    }
}
