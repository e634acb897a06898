//! Plain data in shared memory: behind a robust mutex ([`Locked`]), or unguarded with
//! relaxed atomic, possibly torn, access ([`Racy`]).

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};

use super::ShmSafe;
use super::mutex::{Acquired, Owner, RawMutex, TakenIn, ThreadMark, TimedOut};
use super::wait::Deadline;

/// A `T` and the robust mutex that guards it, in shared memory.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Locked<T> {
    mutex: RawMutex,
    /// The holding thread, when locked with [`Locked::lock_marked`].
    thread: ThreadMark,
    value: UnsafeCell<T>,
}

// SAFETY: the mutex serialises every access to `value` across threads and processes, and
// `T: ShmSafe` holds no references that could be shared unsoundly.
unsafe impl<T: ShmSafe + Send> Sync for Locked<T> {}
// SAFETY: a RawMutex and a ShmSafe value: no pointers, no drop glue, fixed layout; a torn
// value is valid (T's rule 4), and the mutex is atomics.
unsafe impl<T: ShmSafe> ShmSafe for Locked<T> {}

impl<T: ShmSafe> Locked<T> {
    /// `value`, unlocked.
    pub(crate) fn new(value: T) -> Self {
        Self { mutex: RawMutex::new(), thread: ThreadMark::new(), value: UnsafeCell::new(value) }
    }

    /// Locks for this process (any thread of it may unlock: Python's `Lock` semantics are
    /// the caller's to keep), waiting until `deadline`. A holder that died is replaced.
    pub(crate) fn lock(&self, owner: Owner, deadline: Deadline) -> Result<LockedGuard<'_, T>, TimedOut> {
        let acquired = self.mutex.lock(owner, deadline)?;
        Ok(LockedGuard { cell: self, acquired, taken_in: TakenIn::here() })
    }

    /// Locks for this process, marked as held by the thread `me` (waiting until
    /// `deadline`), so that [`Locked::is_marked_by`] tells that thread it holds the lock
    /// already. The lock is the process's all the same: a guard that outlives its thread
    /// (the guard is `Send`, or leaked) is never taken over as a dead thread's.
    pub(crate) fn lock_marked(&self, me: Owner, deadline: Deadline) -> Result<LockedGuard<'_, T>, TimedOut> {
        let guard = self.lock(Owner::process(), deadline)?;
        self.thread.set(me);
        Ok(guard)
    }

    /// Whether this process holds the lock, taken by [`Locked::lock_marked`] for `me`.
    pub(crate) fn is_marked_by(&self, me: Owner) -> bool {
        self.thread.holds(&self.mutex, me)
    }

    /// Locks if free or its holder is dead (then the guard says so); never waits.
    pub(crate) fn try_lock(&self, owner: Owner) -> Option<LockedGuard<'_, T>> {
        self.mutex.try_lock_or_take_over(owner).map(|acquired| LockedGuard {
            cell: self,
            acquired,
            taken_in: TakenIn::here(),
        })
    }
}

impl<T: ShmSafe> Locked<T> {
    /// Locks if free, never taking a dead holder's lock over (that, and the next guard's
    /// `owner_died`, is left to the next lock: `Debug` must not eat it, aud103 M1); never
    /// waits.
    pub(crate) fn try_lock_free(&self, owner: Owner) -> Option<LockedGuard<'_, T>> {
        self.mutex.try_lock(owner).then(|| LockedGuard {
            cell: self,
            acquired: Acquired::Clean,
            taken_in: TakenIn::here(),
        })
    }

    /// [`Locked::lock_marked`] if the lock is free ([`Locked::try_lock_free`]).
    pub(crate) fn try_lock_marked_free(&self, me: Owner) -> Option<LockedGuard<'_, T>> {
        let guard = self.try_lock_free(Owner::process())?;
        self.thread.set(me);
        Some(guard)
    }
}

/// Access to a [`Locked`] value; unlocks on drop.
#[derive(Debug)]
pub(crate) struct LockedGuard<'a, T> {
    cell: &'a Locked<T>,
    /// Whether the previous holder died holding the lock.
    pub(crate) acquired: Acquired,
    /// A copy made by fork holds nothing (see [`TakenIn`]).
    taken_in: TakenIn,
}

impl<T> Deref for LockedGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.taken_in.check();
        // SAFETY: this process holds the mutex (checked above: not a copy made by fork),
        // so no other thread or process accesses the value.
        unsafe { &*self.cell.value.get() }
    }
}

impl<T> DerefMut for LockedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.taken_in.check();
        // SAFETY: as above, and `&mut self` makes this borrow the only one.
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T> Drop for LockedGuard<'_, T> {
    fn drop(&mut self) {
        // A copy made by fork: the lock is the parent's to release.
        if self.taken_in.is_here() {
            self.cell.thread.clear();
            self.cell.mutex.unlock();
        }
    }
}

/// A `T` in shared memory with no lock: reads and writes are relaxed atomic accesses,
/// field by field ([`ShmSafe::load_racy`]); a read racing a write may see a mix of old and
/// new fields, never a data race.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Racy<T> {
    value: UnsafeCell<T>,
}

// SAFETY: every access to the value is atomic (load_racy/store_racy), and every mix of
// fields is a valid T (ShmSafe rule 4), so sharing is neither a data race nor a way to
// produce an invalid value.
unsafe impl<T: ShmSafe + Send> Sync for Racy<T> {}
// SAFETY: a ShmSafe value in a cell.
unsafe impl<T: ShmSafe> ShmSafe for Racy<T> {}

impl<T: ShmSafe + Copy> Racy<T> {
    /// `value`.
    pub(crate) fn new(value: T) -> Self {
        Self { value: UnsafeCell::new(value) }
    }

    /// Reads the value (relaxed atomic loads).
    pub(crate) fn get(&self) -> T {
        // SAFETY: valid, aligned shared memory; the cell is only accessed through `get`
        // and `set` once shared; any mix of fields is a valid T.
        unsafe { T::load_racy(self.value.get()) }
    }

    /// Writes the value (relaxed atomic stores).
    pub(crate) fn set(&self, value: T) {
        // SAFETY: as in `get`.
        unsafe { T::store_racy(self.value.get(), value) }
    }
}
