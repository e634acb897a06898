//! `Lock`: a mutual-exclusion lock shared by the processes of a family.

#[path = "lock_async.rs"]
mod lock_async;
pub use lock_async::LockAcquire;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use std::convert::Infallible;

use super::error::{AcquireTimeoutError, ReleaseError, TryAcquireError};
use crate::error::Error;
use crate::shm::{Acquired, Deadline, Owner, RawMutex, Shared, ShmObject, TakenIn, TimedOut, Waiting, kind};

#[derive(crate::ShmSafe)]
#[repr(C)]
pub(crate) struct LockState {
    /// Taken only through [`Lock::take`] and its kin, which keep the count of releases its
    /// holder record holds ([`Hold`]).
    mutex: RawMutex,
    /// How many [`Lock::release`] calls were made, each counted before its unlock: a u64,
    /// which does not wrap. Only the guard against the record's count wrapping ([`Hold`]):
    /// read by each acquire once it holds the lock, and by a guard's release and a
    /// condition wait after their look at the record; written by `Lock::release` only.
    releases: AtomicU64,
}

/// Which hold of a [`Lock`] a guard has. A `Lock` is held by a process, so the holder's id
/// and start time cannot tell a guard's own hold from one another thread of its process
/// took after a [`Lock::release`] (review165 M1). The mutex's holder record also holds a
/// count of releases (the mutex's `COUNT_MASK`, 10 bits): `Lock::release` bumps it in the
/// compare-exchange that unlocks, and every take keeps it. A guard's hold is its process
/// with the count its take found, and its release is one compare-exchange from that record
/// ([`RawMutex::unlock_if_held_as`]). So no instant is left: a `Lock::release` killed,
/// stopped or landing anywhere in a guard's acquire, drop or condition wait either made
/// every older guard stale and unlocked, in one step, or did nothing (review171 H1:
/// fix125's count beside the record made a releaser killed between its count and its
/// unlock leave the live holder's guard stale with the lock held, for ever; syn106 and
/// review171 L1: another thread's take inside a drop or an acquire was taken for the
/// guard's own). The record's count wraps at 1024 releases: the guard also keeps
/// [`LockState::releases`] as its acquire read it, and holds nothing once that moved by
/// [`WRAPPED`] or more. A guard's look at the record that finds its own record again reads
/// a take after every release that brought the count round (an acquire load reading an RMW
/// in the release sequence of each), so its load of `releases` after the look sees them
/// counted: each counts itself there before its unlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hold {
    /// The record's count of releases at the take (the mutex's `COUNT_MASK` bits).
    count: u64,
    /// [`LockState::releases`] read after the take.
    releases: u64,
}

/// How far [`LockState::releases`] may move while a guard still holds: half the period of
/// the record's count. While a guard holds, it moves only by releases that were counted
/// but had not unlocked when the guard read it (between their two steps, killed there, or
/// finding the lock free at their unlock: one that unlocks after the read makes the guard
/// stale anyway). For a stale guard whose record came round again, it moved by the 1024
/// releases that brought it round, less those among them counted before the guard's read
/// (the same in-between ones). Both are off by as many releases as are between their two
/// steps at once, or were killed there while the guard lived: more than 511 do not happen.
const WRAPPED: u64 = 512;

impl Hold {
    /// For a guard over an `RLock`, which is told apart by its thread: never compared.
    pub(crate) const NONE: Hold = Hold { count: 0, releases: 0 };
}

impl ShmObject for LockState {
    const KIND: u32 = kind::LOCK;
}

/// A lock that one process (one thread of it) holds at a time (Python's
/// `multiprocessing.Lock`).
///
/// [`acquire`](Lock::acquire) returns a guard that releases the lock when dropped. As in
/// Python, any process may [`release`](Lock::release) a lock that another one acquired
/// (a lock used as a signal); pair that with [`LockGuard::leave_locked`].
///
/// The lock belongs to the *process* that acquired it. If that process dies holding it
/// (killed, crashed), the next acquirer is not blocked forever: it takes the lock over, and
/// its guard's [`owner_died`](LockGuard::owner_died) says that the protected state may be
/// half-updated. A process that ends while holding the lock counts as dead too, even if it
/// meant another process to release it.
///
/// Owner death is told the same way by every lock of the crate (`Lock`, `RLock`,
/// `Semaphore`, `BoundedSemaphore`, `Condition`, the locks of `Value` and `Array`): the
/// guard's `owner_died()`, never an error. So `acquire` cannot fail (its error type is
/// [`Infallible`]), and `lock.acquire()?` works in a function returning any error type,
/// `Box<dyn Error>` and `anyhow::Error` included:
///
/// ```
/// fn count(lock: &multiproc::Lock) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
///     let guard = lock.acquire()?;
///     if guard.owner_died() {
///         eprintln!("the previous holder died mid-update: checking the counter");
///     }
///     let _again = lock.try_acquire().err(); // `TryAcquireError::WouldBlock`
///     Ok(())
/// }
/// # multiproc::init();
/// # count(&multiproc::Lock::new()?)?;
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
///
/// Acquiring and releasing an uncontended lock costs two atomic operations and no system
/// call.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Lock, Process};
///
/// fn report(lock: Lock) {
///     let _guard = lock.acquire().unwrap(); // cannot fail
///     println!("only one process prints at a time");
/// }
///
/// multiproc::init();
/// let lock = Lock::new()?;
/// let children: Vec<_> = (0..3).map(|_| Process::new(report, lock.clone()).start()).collect::<Result<_, _>>()?;
/// for child in children {
///     child.join()?;
/// }
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.Lock")]
#[derive(Clone, Serialize, Deserialize)]
pub struct Lock {
    pub(crate) shared: Shared<LockState>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock").field("locked", &self.locked()).field("holder_pid", &self.shared.mutex.owner()).finish()
    }
}

impl Lock {
    /// A new, unlocked lock in the family's shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// assert!(!lock.locked());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Result<Self, Error> {
        Ok(Self { shared: Shared::new(LockState { mutex: RawMutex::new(), releases: AtomicU64::new(0) })? })
    }

    /// The guard of a hold taken by `me` (this process's [`Owner::process`], as the acquire
    /// computed it: the guard's drop compares with it rather than asking again).
    #[inline]
    fn guard(&self, me: Owner, (acquired, hold): (Acquired, Hold)) -> LockGuard<'_> {
        LockGuard { lock: self, owner_died: acquired == Acquired::OwnerDied, owner: me, hold }
    }

    /// The [`Hold`] of a hold just taken (the lock is ours) with the record's count of
    /// releases `count`: with [`LockState::releases`] read after the take. Every acquirer
    /// of a `Lock` goes through here ([`Lock::take`] and its kin).
    #[inline]
    fn hold_of(&self, (acquired, count): (Acquired, u64)) -> (Acquired, Hold) {
        (acquired, Hold { count, releases: self.shared.releases.load(Ordering::Relaxed) })
    }

    /// Takes the lock for `me` (this process), waiting until `deadline`, with its [`Hold`].
    #[inline]
    pub(crate) fn take(&self, me: Owner, deadline: Deadline) -> Result<(Acquired, Hold), TimedOut> {
        self.shared.mutex.lock_counted(me, deadline).map(|taken| self.hold_of(taken))
    }

    /// Takes the lock if it is free or its holder is dead; never waits.
    pub(crate) fn try_take(&self, me: Owner) -> Option<(Acquired, Hold)> {
        self.shared.mutex.try_lock_or_take_over_counted(me).map(|taken| self.hold_of(taken))
    }

    /// Takes the lock only if it is free, never a dead holder's.
    pub(crate) fn try_take_free(&self, me: Owner) -> Option<Hold> {
        self.shared.mutex.try_lock_counted(me).map(|count| self.hold_of((Acquired::Clean, count)).1)
    }

    /// One poll of an async acquire.
    pub(crate) fn poll_take(&self, me: Owner, waiting: &mut Waiting, cx: &Context<'_>) -> Poll<(Acquired, Hold)> {
        self.shared.mutex.poll_lock_counted(me, waiting, cx).map(|taken| self.hold_of(taken))
    }

    /// Whether `me` (this process) holds the lock with the hold `hold`, not a hold taken
    /// after a [`Lock::release`], by another process, another thread of this one or this
    /// thread again ([`Hold`]). The record first: found the guard's, it reads a take after
    /// every release whose count the record's came round from, so the load of
    /// [`LockState::releases`] after it sees those counted.
    #[inline]
    pub(crate) fn holds(&self, me: Owner, hold: Hold) -> bool {
        self.shared.mutex.is_held_as(me, hold.count)
            && self.shared.releases.load(Ordering::Relaxed).wrapping_sub(hold.releases) < WRAPPED
    }

    /// Acquires the lock, waiting as long as another live process holds it. A lock whose
    /// holder died is taken over ([`LockGuard::owner_died`]).
    ///
    /// # Errors
    ///
    /// None: the error type is [`Infallible`], so that `?` works in any function.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// {
    ///     let _guard = lock.acquire()?;
    ///     assert!(lock.locked());
    /// }
    /// assert!(!lock.locked());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[inline]
    pub fn acquire(&self) -> Result<LockGuard<'_>, Infallible> {
        let me = Owner::process();
        let taken = self.take(me, Deadline::NEVER).expect("an endless wait does not time out");
        Ok(self.guard(me, taken))
    }

    /// Acquires the lock if it is free (or its holder is dead); never waits.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::WouldBlock`] when a live process holds it.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::TryAcquireError;
    /// # multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// let guard = lock.try_acquire()?;
    /// assert!(matches!(lock.try_acquire(), Err(TryAcquireError::WouldBlock)));
    /// drop(guard);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<LockGuard<'_>, TryAcquireError> {
        let me = Owner::process();
        match self.try_take(me) {
            Some(taken) => Ok(self.guard(me, taken)),
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
    /// use multiproc::AcquireTimeoutError;
    /// # multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// let _held = lock.acquire()?;
    /// let again = lock.acquire_timeout(Duration::from_millis(10));
    /// assert!(matches!(again, Err(AcquireTimeoutError::Timeout)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>, AcquireTimeoutError> {
        let me = Owner::process();
        match self.take(me, Deadline::after(timeout)) {
            Ok(taken) => Ok(self.guard(me, taken)),
            Err(_) => Err(AcquireTimeoutError::Timeout),
        }
    }

    /// Releases the lock, whoever acquired it (Python allows any process to release a
    /// `Lock`). Use it with [`LockGuard::leave_locked`]. A guard still alive when its lock
    /// is released holds nothing: its drop leaves alone a hold taken since, by another
    /// process or another thread of this one (or this thread again), at whatever instant
    /// the `release` lands (the release and its unlock are one atomic step, and so are a
    /// guard's take and its release). A `release` interrupted anywhere, the process killed
    /// or stopped, released the lock or did nothing.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotLocked`] when nobody holds it.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ReleaseError;
    /// # multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// lock.acquire()?.leave_locked();
    /// lock.release()?;
    /// assert_eq!(lock.release(), Err(ReleaseError::NotLocked));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn release(&self) -> Result<(), ReleaseError> {
        // The wrap guard's count first, which the unlock's release orders before it ([`Hold`]):
        // killed between, the lock is still held and its holder's guard still releases it
        // (the count runs ahead by one, which it tolerates). Counted even when the lock is
        // free: a bound, not a tally.
        self.shared.releases.fetch_add(1, Ordering::Relaxed);
        crate::shm::crash::crash_point!("lock.release.counted");
        // The unlock and the record's own count of releases, in one RMW: every guard of a
        // hold taken before holds nothing from here.
        if self.shared.mutex.release_counting() { Ok(()) } else { Err(ReleaseError::NotLocked) }
    }

    /// A guard's release: releases the lock if this process holds it with the guard's
    /// `hold`, and says whether it did. A lock released with [`Lock::release`] while its
    /// guard lived, and taken by another process since, is that process's: the guard's
    /// drop leaves it alone (the mutex's unlock clears it whoever holds it; aud107 H1). So
    /// is a hold another thread of this process took since: the mutex records the process
    /// whichever thread took it, the record's count of releases tells them apart ([`Hold`];
    /// review165 M1). A `release` in the instant between the look and the unlock, and
    /// anybody taking the lock in it, is seen too: the unlock is a compare-exchange from
    /// the guard's own record, count included (syn106 for another process, fix134 for
    /// another thread of this one).
    #[inline]
    pub(crate) fn release_if_held_here(&self, hold: Hold) -> bool {
        self.release_if_held_by(Owner::process(), hold)
    }

    /// [`Lock::release_if_held_here`] with this process's [`Owner::process`] known (a
    /// guard's, kept from its acquire).
    #[inline]
    fn release_if_held_by(&self, me: Owner, hold: Hold) -> bool {
        // The look (the record, then the wrap guard's count: [`Hold`]), then an unlock from
        // the guard's own record only: a `Lock::release` and anybody's take in between leave
        // that hold alone, another thread's of this process too (its take kept the bumped
        // count).
        self.holds(me, hold) && {
            crate::shm::crash::interleave("lock.release.looked");
            self.shared.mutex.unlock_if_held_as(me, hold.count)
        }
    }

    /// Whether some process holds the lock (Python 3.14's `locked()`).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// let guard = lock.acquire()?;
    /// assert!(lock.locked());
    /// assert_eq!(lock.holder(), Some(std::process::id()));
    /// drop(guard);
    /// assert!(!lock.locked() && lock.holder().is_none());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn locked(&self) -> bool {
        self.shared.mutex.is_locked()
    }

    /// The pid of the process that holds the lock, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// assert_eq!(lock.holder(), None);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn holder(&self) -> Option<u32> {
        self.shared.mutex.owner()
    }
}

/// A held [`Lock`]; dropping it releases the lock.
///
/// Only in the process that acquired it: a copy that a `Fork` child got with its parent's
/// memory (a guard kept in a static or a thread-local) releases nothing when dropped
/// there; the parent still holds the lock. The child may call [`Lock::release`].
///
/// # Examples
///
/// ```
/// # multiproc::init();
/// let lock = multiproc::Lock::new()?;
/// {
///     let _guard = lock.acquire()?;
///     // ... the critical section ...
/// }
/// assert!(!lock.locked());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    owner_died: bool,
    /// The process that took the lock, as its acquire computed it ([`Owner::process`]):
    /// the drop releases only a hold of this process, and only in it (a copy made by fork,
    /// a guard kept in a static or a thread-local, releases nothing: the lock is the
    /// parent's). Kept, so that the drop compares rather than asks again (syn105).
    owner: Owner,
    /// Its hold ([`Hold`]): the drop leaves alone a hold another thread of this process
    /// took after a [`Lock::release`] (review165 M1).
    hold: Hold,
}

impl LockGuard<'_> {
    /// Whether the lock was taken over from a process that died holding it: what it
    /// protects may be half-updated. Only the acquirer that took it over is told.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// assert!(!lock.acquire()?.owner_died());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Ends the guard without releasing the lock: it stays held until somebody calls
    /// [`Lock::release`] (maybe another process), as Python's `acquire()` without `with`.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let lock = multiproc::Lock::new()?;
    /// lock.acquire()?.leave_locked();
    /// assert!(lock.locked());
    /// lock.release()?; // here, or in another process
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn leave_locked(self) {
        std::mem::forget(self);
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").field("lock", self.lock).field("owner_died", &self.owner_died).finish()
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if TakenIn::of(self.owner).is_here() {
            self.lock.release_if_held_by(self.owner, self.hold);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::crash::interleaving;

    /// fix125's instant, between a guard's look at its hold and its unlock: a
    /// `Lock::release` lands there (another thread's or process's) and another process Q
    /// takes the lock. The guard's drop released Q's hold (the unlock cleared the lock
    /// whoever held it): a third could then take the lock while Q was inside. The drop's
    /// unlock is a compare-exchange from its own process's record now: Q's hold stays
    /// Q's (syn106). Another *thread* of the guard's process taking the lock there records
    /// the same process: with syn106's unlock its hold was released (printed "kept: false";
    /// review171 L1's case in a drop); with the record's count of releases (fix134) its take
    /// records the count the release bumped, so it stays that thread's too.
    #[test]
    fn a_guard_whose_lock_is_released_during_its_drop_leaves_another_process_s_hold_alone() {
        let _heap = crate::shm::heap_test_user();
        let lock: &'static Lock = Box::leak(Box::new(Lock::new().unwrap()));
        let q = Owner { id: std::process::id() + 1, start: 1 };
        let mut said = Vec::new();
        for (who, taker) in [("another process", q), ("another thread of this process", Owner::process())] {
            let guard = lock.acquire().unwrap();
            let moves = move |step: &str| {
                if step == "lock.release.looked" {
                    lock.release().unwrap();
                    assert!(lock.shared.mutex.try_lock(taker), "the lock was free");
                }
            };
            interleaving(moves, || drop(guard));
            let kept = lock.shared.mutex.is_held_by(taker);
            said.push((who, kept));
            println!("{who} took the lock inside a guard's drop: its hold kept: {kept}");
            if kept {
                lock.release().unwrap();
            }
        }
        assert_eq!(
            said,
            [("another process", true), ("another thread of this process", true)],
            "a stale guard released a hold taken since"
        );
    }

    /// The record's count of releases has 10 bits: 1024 `Lock::release` calls bring it
    /// round, and a take by this process then records exactly what a stale guard of it
    /// took. The guard's count of releases beside the record ([`WRAPPED`]) still tells:
    /// its drop and a look leave that hold alone (review171 L3, for the count in the
    /// record).
    #[test]
    fn a_stale_guard_whose_record_came_round_again_holds_nothing() {
        let _heap = crate::shm::heap_test_user();
        let lock = Lock::new().unwrap();
        let me = Owner::process();
        let guard = lock.acquire().unwrap();
        let mut later = None;
        for _ in 0..1024 {
            lock.release().unwrap();
            later = Some(lock.take(me, Deadline::NEVER).unwrap().1);
        }
        let later = later.unwrap();
        let came_round = lock.shared.mutex.is_held_as(me, guard.hold.count) && later.count == guard.hold.count;
        let looked = lock.holds(me, guard.hold);
        drop(guard);
        let kept = lock.shared.mutex.is_held_as(me, later.count);
        println!("the record came round: {came_round}; the stale guard's look: {looked}; the later hold kept: {kept}");
        assert!(came_round, "1024 releases bring the record's count round");
        assert!(!looked && kept, "a stale guard took a hold 1024 releases later for its own");
        assert!(lock.holds(me, later) && lock.release_if_held_by(me, later));
        assert!(!lock.locked());
    }
}
