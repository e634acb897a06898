//! Slices of plain data in the family heap: behind a robust mutex ([`LockedSlice`], the
//! state of `Array`), or unguarded ([`RacySlice`], the state of `RawArray`).
//!
//! The elements live in the object's tail. A `LockedSlice`'s elements are reached only
//! through [`SliceGuard`], which exists only while its mutex is held: that is what makes
//! handing out `&mut [E]` sound.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::heap::HeapFull;
use super::mutex::{Acquired, Owner, RawMutex, TakenIn, ThreadMark, TimedOut};
use super::object::{Shared, ShmObject, kind};
use super::wait::Deadline;
use super::{Cells, ShmSafe};

/// The length and element size of a slice object; the element size is checked when a
/// handle is decoded, so that an `Array<u8>` is never read as an `Array<u64>`.
#[repr(C)]
#[derive(Debug)]
struct Shape {
    len: AtomicU64,
    elem_size: AtomicU32,
    elem_align: AtomicU32,
}

impl Shape {
    fn of<E>(len: usize) -> Self {
        Shape {
            len: AtomicU64::new(len as u64),
            elem_size: AtomicU32::new(std::mem::size_of::<E>() as u32),
            elem_align: AtomicU32::new(std::mem::align_of::<E>() as u32),
        }
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed) as usize
    }

    fn holds<E>(&self) -> bool {
        self.elem_size.load(Ordering::Relaxed) as usize == std::mem::size_of::<E>()
            && self.elem_align.load(Ordering::Relaxed) as usize == std::mem::align_of::<E>()
    }
}

fn tail_bytes<E>(len: usize) -> Result<usize, HeapFull> {
    // Far beyond any heap: refused before the header arithmetic could overflow.
    const ABSURD: usize = 1 << 48;
    len.checked_mul(std::mem::size_of::<E>()).filter(|&b| b <= ABSURD).ok_or(HeapFull::requested(usize::MAX))
}

/// A slice of `E` guarded by a robust mutex.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct LockedSlice<E> {
    mutex: RawMutex,
    /// The holding thread, when locked with `lock_marked`.
    thread: ThreadMark,
    shape: Shape,
    _elements: PhantomData<fn() -> E>,
}

// SAFETY: a RawMutex and atomics (the elements, ShmSafe, are in the tail): no pointers, no
// drop glue, fixed layout, any bytes valid.
unsafe impl<E: ShmSafe> ShmSafe for LockedSlice<E> {}

impl<E: ShmSafe + Copy + Send + Sync> ShmObject for LockedSlice<E> {
    const KIND: u32 = kind::ARRAY;
}

impl<E: ShmSafe + Copy + Send + Sync> LockedSlice<E> {
    /// `len` zeroed elements.
    pub(crate) fn zeroed(len: usize) -> Result<Shared<Self>, HeapFull> {
        let state = LockedSlice {
            mutex: RawMutex::new(),
            thread: ThreadMark::new(),
            shape: Shape::of::<E>(len),
            _elements: PhantomData,
        };
        Shared::with_tail(state, tail_bytes::<E>(len)?)
    }

    /// A copy of `values`.
    pub(crate) fn from_slice(values: &[E]) -> Result<Shared<Self>, HeapFull> {
        let shared = Self::zeroed(values.len())?;
        // Nobody else has the handle yet.
        shared.cells().write_from(values);
        Ok(shared)
    }
}

impl<E: ShmSafe + Copy + Send + Sync> Shared<LockedSlice<E>> {
    fn cells(&self) -> Cells<'_, E> {
        self.tail::<E>(self.shape.len())
    }

    /// Whether the object was made for elements of `E`'s size and alignment.
    pub(crate) fn holds_elements(&self) -> bool {
        self.shape.holds::<E>()
    }

    /// How many elements.
    pub(crate) fn len(&self) -> usize {
        self.shape.len()
    }

    /// Locks the slice for `owner`, waiting until `deadline`; a dead holder is replaced.
    pub(crate) fn lock(&self, owner: Owner, deadline: Deadline) -> Result<SliceGuard<'_, E>, TimedOut> {
        let acquired = self.mutex.lock(owner, deadline)?;
        Ok(SliceGuard {
            mutex: &self.mutex,
            thread: &self.thread,
            cells: self.cells(),
            acquired,
            taken_in: TakenIn::here(),
        })
    }

    /// Locks the slice for this process, marked as held by the thread `me` (as
    /// `Locked::lock_marked`: a guard whose slice outlives its thread is never taken over
    /// while the process runs).
    pub(crate) fn lock_marked(&self, me: Owner, deadline: Deadline) -> Result<SliceGuard<'_, E>, TimedOut> {
        let guard = self.lock(Owner::process(), deadline)?;
        self.thread.set(me);
        Ok(guard)
    }

    /// Whether this process holds the lock, taken by `lock_marked` for `me`.
    pub(crate) fn is_marked_by(&self, me: Owner) -> bool {
        self.thread.holds(&self.mutex, me)
    }

    /// Locks the slice if it is free or its holder is dead (then the guard says so); never
    /// waits.
    pub(crate) fn try_lock(&self, owner: Owner) -> Option<SliceGuard<'_, E>> {
        self.mutex.try_lock_or_take_over(owner).map(|acquired| SliceGuard {
            mutex: &self.mutex,
            thread: &self.thread,
            cells: self.cells(),
            acquired,
            taken_in: TakenIn::here(),
        })
    }
}

impl<E: ShmSafe + Copy + Send + Sync> Shared<LockedSlice<E>> {
    /// Locks the slice if it is free, never taking a dead holder's lock over (that, and the
    /// next guard's `owner_died`, is left to the next lock: `Debug` must not eat it, aud103
    /// M1); never waits.
    pub(crate) fn try_lock_free(&self, owner: Owner) -> Option<SliceGuard<'_, E>> {
        self.mutex.try_lock(owner).then(|| SliceGuard {
            mutex: &self.mutex,
            thread: &self.thread,
            cells: self.cells(),
            acquired: Acquired::Clean,
            taken_in: TakenIn::here(),
        })
    }

    /// `lock_marked` if the lock is free ([`Self::try_lock_free`]).
    pub(crate) fn try_lock_marked_free(&self, me: Owner) -> Option<SliceGuard<'_, E>> {
        let guard = self.try_lock_free(Owner::process())?;
        self.thread.set(me);
        Some(guard)
    }
}

/// The locked elements of a [`LockedSlice`]; unlocks on drop.
#[derive(Debug)]
pub(crate) struct SliceGuard<'a, E> {
    mutex: &'a RawMutex,
    thread: &'a ThreadMark,
    cells: Cells<'a, E>,
    /// Whether the previous holder died holding the lock.
    pub(crate) acquired: Acquired,
    /// A copy made by fork holds nothing (see [`TakenIn`]).
    taken_in: TakenIn,
}

impl<E: ShmSafe> Deref for SliceGuard<'_, E> {
    type Target = [E];

    fn deref(&self) -> &[E] {
        self.taken_in.check();
        // SAFETY: the elements of a LockedSlice are only reached through a SliceGuard,
        // and one exists only while its process holds the mutex (checked above: not a copy
        // made by fork), so nobody writes them meanwhile.
        unsafe { self.cells.as_slice() }
    }
}

impl<E: ShmSafe> DerefMut for SliceGuard<'_, E> {
    fn deref_mut(&mut self) -> &mut [E] {
        self.taken_in.check();
        // SAFETY: as above, and `&mut self` makes this borrow the only one.
        unsafe { self.cells.as_mut_slice() }
    }
}

impl<E> Drop for SliceGuard<'_, E> {
    fn drop(&mut self) {
        // A copy made by fork: the lock is the parent's to release.
        if self.taken_in.is_here() {
            self.thread.clear();
            self.mutex.unlock();
        }
    }
}

/// A slice of `E` with no lock: element access is volatile and may race.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RacySlice<E> {
    shape: Shape,
    _elements: PhantomData<fn() -> E>,
}

// SAFETY: atomics only (the elements, ShmSafe, are in the tail).
unsafe impl<E: ShmSafe> ShmSafe for RacySlice<E> {}

impl<E: ShmSafe + Copy + Send + Sync> ShmObject for RacySlice<E> {
    const KIND: u32 = kind::RAW_ARRAY;
}

impl<E: ShmSafe + Copy + Send + Sync> RacySlice<E> {
    /// `len` zeroed elements.
    pub(crate) fn zeroed(len: usize) -> Result<Shared<Self>, HeapFull> {
        Shared::with_tail(RacySlice { shape: Shape::of::<E>(len), _elements: PhantomData }, tail_bytes::<E>(len)?)
    }
}

impl<E: ShmSafe + Copy + Send + Sync> Shared<RacySlice<E>> {
    /// The elements, for volatile access.
    pub(crate) fn cells(&self) -> Cells<'_, E> {
        self.tail::<E>(self.shape.len())
    }

    /// Whether the object was made for elements of `E`'s size and alignment.
    pub(crate) fn holds_elements(&self) -> bool {
        self.shape.holds::<E>()
    }
}
