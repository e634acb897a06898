//! The `unsafe` public methods of the shared-state types: borrowing shared memory that
//! other processes may write as a plain slice. They live here, in the one layer allowed
//! `unsafe`, next to the views they are built on.

use crate::shared::{RawArray, SharedMemory};
use crate::shm::ShmSafe;

impl<T: ShmSafe + Copy + Send + Sync> RawArray<T> {
    /// All elements as a slice, without a copy (the fast way to read a large array, e.g.
    /// to sum it).
    ///
    /// # Safety
    ///
    /// While the slice lives, no process or thread may write the array (for example: the
    /// writers finished before the readers started, or a [`Lock`](crate::Lock) of your own
    /// is held by everybody who touches it). A write meanwhile is a data race, undefined
    /// behaviour.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::RawArray::from_slice(&[1.0, 2.0, 3.0])?;
    /// // SAFETY: nobody else has this array.
    /// let total: f64 = unsafe { a.as_slice() }.iter().sum();
    /// assert_eq!(total, 6.0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: the caller excludes writers for the slice's life; the cells are valid
        // for the borrow of `self`, which keeps the array allocated.
        unsafe { self.shared.cells().as_slice() }
    }

    /// All elements as a mutable slice, without a copy.
    ///
    /// # Safety
    ///
    /// While the slice lives, no other process or thread may read or write the array,
    /// and this thread may not use another view of it.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::RawArray::<u8>::new(4)?;
    /// // SAFETY: nobody else has this array.
    /// unsafe { a.as_mut_slice() }.fill(9);
    /// assert_eq!(a.to_vec(), [9, 9, 9, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [T] {
        // SAFETY: the caller guarantees exclusive access for the slice's life.
        unsafe { self.shared.cells().as_mut_slice() }
    }
}

impl SharedMemory {
    /// The bytes as a slice, without a copy (Python's `buf`).
    ///
    /// # Safety
    ///
    /// While the slice lives, no process may write the segment (in this family or not:
    /// anybody who knows the name can open it; this one neither, through any handle,
    /// [`write_at`](SharedMemory::write_at) included), nor truncate it (a truncated mapping
    /// raises SIGBUS where the slice reaches past the new end).
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(4)?;
    /// // SAFETY: the segment is fresh and its name was given to nobody.
    /// assert_eq!(unsafe { shm.as_slice() }, &[0, 0, 0, 0]);
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    #[doc(alias = "buf")]
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the caller excludes writers; the mapping lives as long as `self`.
        unsafe { self.segment.as_slice() }
    }

    /// The bytes as a mutable slice, without a copy.
    ///
    /// # Safety
    ///
    /// While the slice lives, no other process or thread may read or write the segment, nor
    /// truncate it, and this thread may not use another view of it: no second
    /// `as_slice`/`as_mut_slice` of this handle or another one of the same segment, no
    /// [`read_at`](SharedMemory::read_at)/[`write_at`](SharedMemory::write_at) (the
    /// kernel's copy is an access too).
    #[allow(clippy::mut_from_ref)]
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(4)?;
    /// // SAFETY: the segment is fresh and its name was given to nobody.
    /// unsafe { shm.as_mut_slice() }.copy_from_slice(b"abcd");
    /// assert_eq!(shm.to_vec(), b"abcd");
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: the caller guarantees exclusive access.
        unsafe { self.segment.as_mut_slice() }
    }

    /// The address of the first byte in this process, for code that manages access
    /// itself (atomics placed in the segment, a C library).
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(8)?;
    /// assert!(!shm.as_ptr().is_null());
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn as_ptr(&self) -> *mut u8 {
        self.segment.as_ptr()
    }
}
