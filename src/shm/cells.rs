//! Views of plain data in shared memory that other processes may change at any time.

use std::marker::PhantomData;
use std::ptr::NonNull;

use super::ShmSafe;

/// `len` values of `T` in shared memory, borrowed from the object that owns them.
///
/// Element reads and writes are relaxed atomic accesses ([`ShmSafe::load_racy`]), field by
/// field: without a lock a read may race a write of another process and see a mix of old
/// and new fields, which `ShmSafe` makes a valid value, and the race is no data race.
/// Every unlocked access to the elements goes through these methods.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cells<'a, T> {
    ptr: NonNull<T>,
    len: usize,
    _life: PhantomData<&'a T>,
}

impl<'a, T: ShmSafe> Cells<'a, T> {
    /// # Safety
    ///
    /// `ptr` must point to `len` initialised values of `T` in shared memory that stay
    /// mapped and allocated for `'a`.
    pub(crate) unsafe fn new(ptr: NonNull<T>, len: usize) -> Self {
        Self { ptr, len, _life: PhantomData }
    }

    /// How many values.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Value `i` (panics when out of bounds).
    pub(crate) fn get(&self, i: usize) -> T
    where
        T: Copy,
    {
        assert!(i < self.len, "index {i} out of bounds for length {}", self.len);
        // SAFETY: in bounds (asserted); `new`'s contract keeps the memory valid and
        // aligned; concurrent access goes through load_racy/store_racy too (above), and
        // any mix a racing writer leaves is a valid T (ShmSafe rule 4).
        unsafe { T::load_racy(self.ptr.as_ptr().add(i)) }
    }

    /// Sets value `i` (panics when out of bounds).
    pub(crate) fn set(&self, i: usize, value: T) {
        assert!(i < self.len, "index {i} out of bounds for length {}", self.len);
        // SAFETY: in bounds; as in `get`.
        unsafe { T::store_racy(self.ptr.as_ptr().add(i), value) }
    }

    /// A reference to value `i`, for types that are all atomics.
    pub(crate) fn at(&self, i: usize) -> &'a T
    where
        T: Sync,
    {
        assert!(i < self.len, "index {i} out of bounds for length {}", self.len);
        // SAFETY: in bounds; callers use this for atomics, which are designed to be
        // shared and mutated through `&`.
        unsafe { &*self.ptr.as_ptr().add(i) }
    }

    /// The `len` values from `start` (panics when out of bounds): a view narrow enough to
    /// borrow as a slice while other processes use the values around it.
    pub(crate) fn range(&self, start: usize, len: usize) -> Self {
        assert!(start.checked_add(len).is_some_and(|end| end <= self.len), "range out of bounds");
        // SAFETY: in bounds (asserted), inside the values `new` vouched for.
        unsafe { Self::new(NonNull::new_unchecked(self.ptr.as_ptr().add(start)), len) }
    }

    /// Copies `src` (of the same length) into the values.
    pub(crate) fn write_from(&self, src: &[T])
    where
        T: Copy,
    {
        assert_eq!(src.len(), self.len);
        for (i, v) in src.iter().enumerate() {
            // SAFETY: in bounds, as in `set`.
            unsafe { T::store_racy(self.ptr.as_ptr().add(i), *v) };
        }
    }

    /// The values as a slice.
    ///
    /// # Safety
    ///
    /// No process may write these values while the slice lives (a lock held around the
    /// borrow, as `Array::lock` does, or the caller's own protocol).
    pub(crate) unsafe fn as_slice(&self) -> &'a [T] {
        // SAFETY: the memory is valid for 'a (`new`), and the caller excludes writers.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The values as a mutable slice.
    ///
    /// # Safety
    ///
    /// No other process or thread may read or write these values while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn as_mut_slice(&self) -> &'a mut [T] {
        // SAFETY: the memory is valid for 'a (`new`), and the caller has exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}
