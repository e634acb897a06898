//! `RLock`: a recursive lock, owned by one thread of one process of the family.

#[path = "rlock_async.rs"]
mod rlock_async;
pub use rlock_async::RLockAcquire;

use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{AcquireTimeoutError, ReleaseError, TryAcquireError};
use crate::error::Error;
use crate::shm::{Acquired, Deadline, Owner, RawMutex, Shared, ShmObject, TakenIn, TimedOut, kind};

#[derive(crate::ShmSafe)]
#[repr(C)]
pub(crate) struct RLockState {
    mutex: RawMutex,
    /// How many times the owner acquired it; touched by the owner only.
    count: AtomicU32,
}

impl ShmObject for RLockState {
    const KIND: u32 = kind::RLOCK;
}

/// A recursive lock (Python's `multiprocessing.RLock`): the thread that holds it may
/// acquire it again, and must release it as many times.
///
/// It belongs to a *thread* of a process: only that thread may release it
/// ([`ReleaseError::NotOwner`] otherwise), and its guards cannot move to another thread.
/// If the owning thread or its process dies holding it, the next acquirer takes it over
/// and its guard's [`owner_died`](RLockGuard::owner_died) says so (as for every lock: see
/// [`Lock`](crate::Lock)).
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Process, RLock};
///
/// fn nested(lock: RLock) {
///     let _outer = lock.acquire().unwrap();
///     let _inner = lock.acquire().unwrap(); // the same thread: no deadlock
/// }
///
/// multiproc::init();
/// let lock = RLock::new()?;
/// Process::new(nested, lock.clone()).start()?.join()?;
/// assert!(!lock.locked());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.RLock")]
#[derive(Clone, Serialize, Deserialize)]
pub struct RLock {
    shared: Shared<RLockState>,
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("locked", &self.locked())
            .field("owner_tid", &self.shared.mutex.owner())
            .field("levels", &(self.shared.count.load(Ordering::Relaxed) + u32::from(self.shared.mutex.is_locked())))
            .finish()
    }
}

impl RLock {
    /// A new, unlocked recursive lock in the family's shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let lock = multiproc::RLock::new()?;
    /// assert!(!lock.locked());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Result<Self, Error> {
        Ok(Self { shared: Shared::new(RLockState { mutex: RawMutex::new(), count: AtomicU32::new(0) })? })
    }

    /// Takes one more level of the lock for this thread, waiting until `deadline`.
    #[inline]
    pub(crate) fn lock_level(&self, deadline: Deadline) -> Result<Acquired, TimedOut> {
        self.lock_level_as(Owner::thread(), deadline)
    }

    /// [`RLock::lock_level`] for `me`, the calling thread's [`Owner::thread`].
    #[inline]
    fn lock_level_as(&self, me: Owner, deadline: Deadline) -> Result<Acquired, TimedOut> {
        let state = &*self.shared;
        // The free lock first: the common case costs one atomic operation.
        // `count` holds the levels beyond the first, and is 0 whenever the lock is free, so
        // the first level writes nothing but the lock word.
        if state.mutex.try_lock(me) {
            return Ok(Acquired::Clean);
        }
        if state.mutex.is_held_by(me) {
            self.raise_level();
            return Ok(Acquired::Clean);
        }
        let acquired = state.mutex.lock(me, deadline)?;
        // A dead holder may have left its levels behind.
        state.count.store(0, Ordering::Relaxed);
        Ok(acquired)
    }

    /// One more level for the thread that holds the lock (the caller saw it does).
    #[inline]
    fn raise_level(&self) {
        let count = self.shared.count.load(Ordering::Relaxed);
        self.shared.count.store(count.checked_add(1).expect("RLock acquired 2^32 times"), Ordering::Relaxed);
    }

    pub(crate) fn try_lock_level(&self) -> Option<Acquired> {
        self.try_lock_level_as(Owner::thread())
    }

    /// [`RLock::try_lock_level`] for `me`, the calling thread's [`Owner::thread`].
    fn try_lock_level_as(&self, me: Owner) -> Option<Acquired> {
        let state = &*self.shared;
        if state.mutex.is_held_by(me) {
            return self.lock_level_as(me, Deadline::now()).ok();
        }
        if state.mutex.try_lock(me) {
            return Some(Acquired::Clean);
        }
        let acquired = state.mutex.recover_if_owner_dead(me)?;
        state.count.store(0, Ordering::Relaxed);
        Some(acquired)
    }

    /// Like [`RLock::try_lock_level`], but never takes a dead holder's lock over (for a
    /// value's `Debug`, which leaves that, and its `owner_died`, to the next lock). Held by
    /// this thread, the count is raised in place: through `lock_level`, whose wait takes a
    /// dead holder's lock over, a word changed between the two looks would have been
    /// taken over (review137 L4; only the owner thread lets an RLock go, so it cannot).
    pub(crate) fn try_lock_level_free(&self) -> Option<Acquired> {
        let me = Owner::thread();
        let state = &*self.shared;
        if state.mutex.is_held_by(me) {
            crate::shm::crash::interleave("rlock.free.held by me");
            self.raise_level();
            return Some(Acquired::Clean);
        }
        state.mutex.try_lock(me).then_some(Acquired::Clean)
    }

    /// Gives back one level of the calling thread; the lock is free when the last level
    /// goes. [`ReleaseError::NotOwner`], releasing nothing, when this thread does not own
    /// the lock: a guard outlives its level when the owner gave the level back itself
    /// ([`RLock::release`]) or a dropped async condition wait released it, and the word's
    /// `unlock` clears it whoever holds it, so a guard must never release a lock that
    /// another thread or process took since (aud107 H1: only a `debug_assert!` stood
    /// here). Checked in every build: only the owner lets an RLock go, so the word cannot
    /// change hands between the look and the unlock.
    #[inline]
    pub(crate) fn unlock_level(&self) -> Result<(), ReleaseError> {
        self.unlock_level_of(Owner::thread())
    }

    /// [`RLock::unlock_level`] for `me`, the calling thread's [`Owner::thread`] (a guard's,
    /// kept from its acquire: the guard stays on its thread).
    #[inline]
    fn unlock_level_of(&self, me: Owner) -> Result<(), ReleaseError> {
        let state = &*self.shared;
        if !state.mutex.is_held_by(me) {
            return Err(ReleaseError::NotOwner);
        }
        let count = state.count.load(Ordering::Relaxed);
        if count > 0 {
            state.count.store(count - 1, Ordering::Relaxed);
        } else {
            state.mutex.unlock();
        }
        Ok(())
    }

    /// Whether the calling thread holds the lock at more than one level (an async
    /// condition wait, which cannot take the other levels back when dropped, refuses it).
    pub(crate) fn held_at_more_than_one_level(&self) -> bool {
        self.is_owned() && self.shared.count.load(Ordering::Relaxed) > 0
    }

    /// Releases every level held by this thread; returns how many (for `Condition::wait`),
    /// or `None`, releasing nothing, when this thread does not own the lock (the caller,
    /// a condition wait, checks that first; this is the last line, as for the guards).
    pub(crate) fn unlock_all(&self) -> Option<u32> {
        let state = &*self.shared;
        if !state.mutex.is_held_by(Owner::thread()) {
            return None;
        }
        let levels = state.count.swap(0, Ordering::Relaxed) + 1;
        state.mutex.unlock();
        Some(levels)
    }

    /// Takes the lock back with `levels` levels (after `unlock_all`).
    pub(crate) fn relock_all(&self, levels: u32) -> Acquired {
        let state = &*self.shared;
        let acquired = state.mutex.lock(Owner::thread(), Deadline::NEVER).expect("an endless wait does not time out");
        state.count.store(levels.max(1) - 1, Ordering::Relaxed);
        acquired
    }

    /// The guard of a level just taken by the calling thread.
    #[inline]
    fn guard(&self, acquired: Acquired) -> RLockGuard<'_> {
        self.guard_as(Owner::thread(), acquired)
    }

    /// [`RLock::guard`] with the calling thread's [`Owner::thread`] known (the acquire's).
    #[inline]
    fn guard_as(&self, me: Owner, acquired: Acquired) -> RLockGuard<'_> {
        RLockGuard {
            lock: self,
            owner_died: acquired == Acquired::OwnerDied,
            owner: me,
            taken_in: TakenIn::here(),
            _not_send: PhantomData,
        }
    }

    /// Acquires the lock (one more level if this thread holds it already).
    ///
    /// # Errors
    ///
    /// None: the error type is [`Infallible`], so that `?` works in any function. A lock
    /// whose holder died is taken over ([`RLockGuard::owner_died`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let lock = multiproc::RLock::new()?;
    /// let outer = lock.acquire()?;
    /// let inner = lock.acquire()?;
    /// drop(inner);
    /// assert!(lock.locked());
    /// drop(outer);
    /// assert!(!lock.locked());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[inline]
    pub fn acquire(&self) -> Result<RLockGuard<'_>, Infallible> {
        let me = Owner::thread();
        let acquired = self.lock_level_as(me, Deadline::NEVER).expect("an endless wait does not time out");
        Ok(self.guard_as(me, acquired))
    }

    /// Acquires the lock if this thread holds it or it is free (or its holder is dead);
    /// never waits.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::WouldBlock`] when another live thread holds it.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let lock = multiproc::RLock::new()?;
    /// let first = lock.try_acquire()?;
    /// let second = lock.try_acquire()?; // recursive: the same thread
    /// # drop((first, second));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<RLockGuard<'_>, TryAcquireError> {
        let me = Owner::thread();
        match self.try_lock_level_as(me) {
            Some(acquired) => Ok(self.guard_as(me, acquired)),
            None => Err(TryAcquireError::WouldBlock),
        }
    }

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireTimeoutError::Timeout`] when the timeout passed first.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # multiproc::init();
    /// let lock = multiproc::RLock::new()?;
    /// let _guard = lock.acquire_timeout(Duration::from_millis(10))?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_>, AcquireTimeoutError> {
        let me = Owner::thread();
        match self.lock_level_as(me, Deadline::after(timeout)) {
            Ok(acquired) => Ok(self.guard_as(me, acquired)),
            Err(TimedOut) => Err(AcquireTimeoutError::Timeout),
        }
    }

    /// Releases one level, for a level taken with [`RLockGuard::leave_locked`]. Only the
    /// owning thread may.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotOwner`] when this thread does not hold the lock (Python's
    /// `AssertionError`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ReleaseError;
    /// # multiproc::init();
    /// let lock = multiproc::RLock::new()?;
    /// lock.acquire()?.leave_locked();
    /// let other = lock.clone();
    /// let from_elsewhere = std::thread::spawn(move || other.release()).join().unwrap();
    /// assert_eq!(from_elsewhere, Err(ReleaseError::NotOwner));
    /// lock.release()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.unlock_level()
    }

    /// Whether some thread holds the lock.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let lock = multiproc::RLock::new()?;
    /// let _guard = lock.acquire()?;
    /// assert!(lock.locked());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn locked(&self) -> bool {
        self.shared.mutex.is_locked()
    }

    /// Whether the calling thread holds the lock (Python's `_is_owned()`).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let lock = multiproc::RLock::new()?;
    /// let _guard = lock.acquire()?;
    /// assert!(lock.is_owned());
    /// let other = lock.clone();
    /// assert!(!std::thread::spawn(move || other.is_owned()).join().unwrap());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_owned(&self) -> bool {
        self.shared.mutex.is_held_by(Owner::thread())
    }
}

/// One held level of an [`RLock`]; dropping it releases that level. It stays on the
/// thread that acquired it, and in its process: a copy that a `Fork` child got with its
/// parent's memory releases nothing when dropped there.
///
/// # Examples
///
/// ```
/// # multiproc::init();
/// let lock = multiproc::RLock::new()?;
/// let outer = lock.acquire()?;
/// let inner = lock.acquire()?;
/// drop(inner);
/// assert!(lock.locked(), "the outer level is still held");
/// drop(outer);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "the level is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    owner_died: bool,
    /// The thread that took the level, as its acquire computed it ([`Owner::thread`]): the
    /// guard never leaves it, so the drop compares with it rather than asks again (syn105).
    owner: Owner,
    /// A copy made by fork (a guard kept in a thread-local) releases nothing: the level is
    /// the parent thread's.
    taken_in: TakenIn,
    _not_send: PhantomData<*const ()>,
}

impl RLockGuard<'_> {
    /// Whether the lock was taken over from a thread or process that died holding it:
    /// what it protects may be half-updated.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let lock = multiproc::RLock::new()?;
    /// assert!(!lock.acquire()?.owner_died());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Ends the guard without releasing its level: call [`RLock::release`] later, on this
    /// thread.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let lock = multiproc::RLock::new()?;
    /// lock.acquire()?.leave_locked();
    /// lock.release()?; // on the same thread
    /// assert!(!lock.locked());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn leave_locked(self) {
        std::mem::forget(self);
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").field("lock", self.lock).finish()
    }
}

impl Drop for RLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // The guard never leaves the thread that took its level, but that level may be
        // gone (the owner's own `RLock::release`, a dropped async condition wait): then
        // the thread no longer owns the lock and the drop releases nothing
        // (`unlock_level_of`, with the owner the acquire computed: the guard is `!Send`,
        // so the thread dropping it is that one). Fork copies the guard with the thread's
        // memory: the copy holds nothing.
        if self.taken_in.is_here() {
            let _ = self.lock.unlock_level_of(self.owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::crash::interleaving;

    /// A look at a lock this thread holds raises its count in place and never goes through
    /// `lock_level`, whose wait (past its deadline at once) takes a dead holder's lock over
    /// (review137 L4). The word is made a dead thread's right after the look saw this
    /// thread hold it (impossible in practice: only the owner thread lets an RLock go):
    /// the look must not take it over.
    #[test]
    fn a_look_at_an_rlock_held_here_never_takes_it_over() {
        let _heap = crate::shm::heap_test_user();
        let lock: &'static RLock = Box::leak(Box::new(RLock::new().unwrap()));
        assert_eq!(lock.lock_level(Deadline::NEVER), Ok(Acquired::Clean));
        let mut ended = std::process::Command::new("true").spawn().unwrap();
        let dead = Owner { id: ended.id(), start: 1 };
        ended.wait().unwrap();
        let moves = move |step: &str| {
            if step == "rlock.free.held by me" {
                lock.shared.mutex.unlock();
                assert!(lock.shared.mutex.try_lock(dead));
            }
        };
        let looked = interleaving(moves, || lock.try_lock_level_free());
        println!("the look said {looked:?}; the lock is the dead thread's: {}", lock.shared.mutex.is_held_by(dead));
        assert_ne!(looked, Some(Acquired::OwnerDied), "a look took a dead holder's lock over");
        assert!(lock.shared.mutex.is_held_by(dead), "a look took a dead holder's lock over");
        lock.shared.count.store(0, Ordering::Relaxed);
        lock.shared.mutex.unlock();
    }
}
