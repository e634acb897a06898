//! `SharedLock`: a lock of the user's that a `Value` or `Array` shares (Python's `lock=`).

use serde::{Deserialize, Serialize};

use crate::shm::{Acquired, Deadline, Owner, TakenIn};
use crate::sync::{Hold, Lock, RLock};

/// A [`Lock`] or [`RLock`] given to [`Value::with_lock`](crate::Value::with_lock) or
/// [`Array::with_lock`](crate::Array::with_lock) (Python's `Value(typecode, v, lock=l)`),
/// so that several values are guarded by one lock.
///
/// Locking such a value takes the shared lock first, then the value's own access. With an
/// `RLock`, one thread may hold the guards of several values that share it; locking the
/// *same* value twice on one thread panics (as a second `borrow_mut` of a `RefCell`
/// does), since two guards would give two `&mut` to the same data.
///
/// # Examples
///
/// ```
/// use multiproc::{RLock, SharedLock, Value};
/// # multiproc::init();
/// let lock = RLock::new()?;
/// let x = Value::with_lock(1i32, lock.clone())?;
/// let y = Value::with_lock(2i32, lock.clone())?;
/// let (mut gx, mut gy) = (x.lock(), y.lock()); // one thread, one RLock, two values
/// std::mem::swap(&mut *gx, &mut *gy);
/// drop((gx, gy));
/// assert_eq!((x.get(), y.get()), (2, 1));
/// assert!(matches!(x.shared_lock(), Some(SharedLock::RLock(_))));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SharedLock {
    /// A [`Lock`]: one process (one thread of it) holds it at a time.
    Lock(Lock),
    /// An [`RLock`]: one thread holds it, as many times as it likes.
    RLock(RLock),
}

impl From<Lock> for SharedLock {
    fn from(lock: Lock) -> Self {
        SharedLock::Lock(lock)
    }
}

impl From<RLock> for SharedLock {
    fn from(lock: RLock) -> Self {
        SharedLock::RLock(lock)
    }
}

impl SharedLock {
    /// Takes the lock (one level of an `RLock`), waiting until `deadline`; `None` when it
    /// passed.
    pub(crate) fn acquire(&self, deadline: Deadline) -> Option<HeldLock<'_>> {
        let (acquired, hold) = match self {
            SharedLock::Lock(lock) => lock.take(Owner::process(), deadline).ok()?,
            SharedLock::RLock(lock) => (lock.lock_level(deadline).ok()?, Hold::NONE),
        };
        Some(HeldLock { lock: self, acquired, hold, taken_in: TakenIn::here() })
    }

    /// Takes the lock if it is free (or ours, for an `RLock`) or its holder is dead.
    pub(crate) fn try_acquire(&self) -> Option<HeldLock<'_>> {
        let (acquired, hold) = match self {
            SharedLock::Lock(lock) => lock.try_take(Owner::process())?,
            SharedLock::RLock(lock) => (lock.try_lock_level()?, Hold::NONE),
        };
        Some(HeldLock { lock: self, acquired, hold, taken_in: TakenIn::here() })
    }

    /// Takes the lock only if it is free (or ours, for an `RLock`), never a dead holder's:
    /// for `Debug`, which leaves that takeover, and its `owner_died`, to the next lock.
    pub(crate) fn try_acquire_free(&self) -> Option<HeldLock<'_>> {
        let (acquired, hold) = match self {
            SharedLock::Lock(lock) => (Acquired::Clean, lock.try_take_free(Owner::process())?),
            SharedLock::RLock(lock) => (lock.try_lock_level_free()?, Hold::NONE),
        };
        Some(HeldLock { lock: self, acquired, hold, taken_in: TakenIn::here() })
    }

    /// Takes this lock, then the value's own access (`access`, with `held_by` telling
    /// whether a thread already holds it), both until `deadline`. The access is marked with
    /// this thread, so that a second lock of the same value by the same thread (through an
    /// `RLock`) is seen: it panics for an endless wait, which could never end, and fails
    /// otherwise. The access itself belongs to the process, not the thread: a guard is
    /// `Send` (and a leaked one's `&mut` is), so it may outlive the thread that took it,
    /// and a lock taken over from that ended thread would give a second `&mut`.
    pub(crate) fn lock_value<G>(
        &self,
        deadline: Deadline,
        held_by: impl FnOnce(Owner) -> bool,
        access: impl FnOnce(Owner, Deadline) -> Option<G>,
    ) -> Option<(G, HeldLock<'_>)> {
        let held = self.acquire(deadline)?;
        let me = Owner::thread();
        if held_by(me) {
            assert!(
                deadline != Deadline::NEVER,
                "this thread already holds a guard of this value (through the RLock it shares): a second one would wait forever"
            );
            return None;
        }
        // Held by another owner if the shared lock was released by a process that did not
        // hold it (a `Lock` may be), or taken over from a thread that ended while its guard
        // lives on (an `RLock`); then wait for that holder, as a lock does.
        let access = access(me, deadline)?;
        Some((access, held))
    }

    /// Like [`SharedLock::lock_value`], never waiting.
    pub(crate) fn try_lock_value<G>(
        &self,
        held_by: impl FnOnce(Owner) -> bool,
        access: impl FnOnce(Owner, Deadline) -> Option<G>,
    ) -> Option<(G, HeldLock<'_>)> {
        Self::access_value(self.try_acquire()?, held_by, access)
    }

    /// Like [`SharedLock::try_lock_value`], taking only a free lock
    /// ([`SharedLock::try_acquire_free`]; `access` should take only a free one too).
    pub(crate) fn try_lock_value_free<G>(
        &self,
        held_by: impl FnOnce(Owner) -> bool,
        access: impl FnOnce(Owner, Deadline) -> Option<G>,
    ) -> Option<(G, HeldLock<'_>)> {
        Self::access_value(self.try_acquire_free()?, held_by, access)
    }

    /// The value's access (`access`, never waiting) once `held` is taken.
    fn access_value<'a, G>(
        held: HeldLock<'a>,
        held_by: impl FnOnce(Owner) -> bool,
        access: impl FnOnce(Owner, Deadline) -> Option<G>,
    ) -> Option<(G, HeldLock<'a>)> {
        let me = Owner::thread();
        if held_by(me) {
            return None;
        }
        let access = access(me, Deadline::now())?;
        Some((access, held))
    }
}

/// A held [`SharedLock`]; released on drop.
#[derive(Debug)]
pub(crate) struct HeldLock<'a> {
    lock: &'a SharedLock,
    pub(crate) acquired: Acquired,
    /// Which hold of a `Lock` it has ([`Hold::NONE`] for an `RLock`): a hold another thread
    /// of this process took after a `Lock::release` is not its own (review165 M1).
    hold: Hold,
    /// A copy made by fork holds nothing (see [`TakenIn`]).
    taken_in: TakenIn,
}

impl Drop for HeldLock<'_> {
    fn drop(&mut self) {
        if !self.taken_in.is_here() {
            // A copy made by fork: the lock is the parent's to release.
            return;
        }
        match self.lock {
            // Only this guard's hold: the `Lock` may have been released since and taken by
            // another process or thread (see `Lock::release_if_held_here`).
            SharedLock::Lock(lock) => {
                lock.release_if_held_here(self.hold);
            }
            // Fails only when the guard was dropped on another thread than the one that
            // took the level: that level stays held by its thread (documented on the
            // guards), which is a stuck lock, never two holders.
            SharedLock::RLock(lock) => {
                let _ = lock.unlock_level();
            }
        }
    }
}
