//! Shared memory: the family heap, the objects that live in it, and the primitives every
//! shared object is built from (a robust mutex, a futex notifier, a holder table).
//!
//! With `sys`, this is the only module allowed `unsafe`: turning heap offsets into
//! references happens here, once, behind types whose contracts are written down.
#![allow(unsafe_code)]

mod blob;
mod bytes;
mod cells;
mod chain;
mod claims;
pub(crate) mod crash;
mod grown;
mod heap;
mod holders;
mod holds;
mod locked;
mod mutex;
mod object;
mod pins;
mod raw_access;
pub(crate) mod reactor;
mod receipts;
mod record;
mod report_room;
mod ring;
mod segment;
mod slice;
mod unread;
mod wait;

pub(crate) use blob::{Blob, Payload};
pub(crate) use bytes::{byte_run, byte_vec_as, utf8};
pub(crate) use cells::Cells;
pub(crate) use claims::{ClaimTable, INLINE as CLAIM_INLINE, Reaped, Results, Written};
pub(crate) use grown::Grown;
#[cfg(test)]
pub(crate) use grown::refused::refuse_growth;
pub(crate) use heap::Heap;
pub use heap::HeapFull;
pub(crate) use holders::{
    ForkRecord, Holders, before_fork, before_fork_alone, fork_child_ended, forking_child_ended, holds_nothing,
};
pub(crate) use holds::{process_ended, reap_owed};
pub(crate) use locked::{Locked, LockedGuard, Racy};
pub(crate) use mutex::{Acquired, GUARD_GRACE, Owner, RawGuard, RawMutex, TakenIn, TimedOut};
pub(crate) use object::{Embedded, Shared, ShmObject, Side, Sided, kind};
pub(crate) use reactor::{CheckNow, FdWaiting, Waiting, poll_on};
pub(crate) use receipts::{
    ArgsToken, Carrier, Key as ReceiptKey, NoResultUndo, ResultHandles, ResultUndo, UndoUnmade,
    from_frame as receipt_from_frame, give_back_result_undo, named_result_undo, on_socket as receipts_on_socket,
    outcome_blob_from_frame, result_undo, send_outcome_blob, take_token as take_args_token,
    token_bytes as args_token_bytes,
};
pub(crate) use record::ChangeRecord;
pub(crate) use report_room::{ChildRoom, LeftBehind, ReportRoom, TAKEN_MAX, free_left_rooms};
pub(crate) use ring::{IN_OWN_TAKE, INLINE_MAX, Limits, Patient, Refused, Ring, SMALL_PUT, TAG_MASK, Watch};
pub(crate) use segment::{AccessError, Segment};
pub(crate) use slice::{LockedSlice, RacySlice, SliceGuard};
pub(crate) use unread::give_back_unread;
pub(crate) use wait::{
    Deadline, FIRST_SLICE, Interrupted, MAX_SLICE, Notify, SPIN, learn_yield_cost, saturating_nanos, spin_for,
};

/// Registers this module's fork child handler ([`pins::forget_lent_in_every_fork_child`]).
/// Call at `init`, single-threaded, before the first fork (the fork server's included).
pub(crate) fn prepare_for_forks() {
    pins::forget_lent_in_every_fork_child();
}

/// Whether [`prepare_for_forks`]'s handler is registered in this process (or inherited).
pub(crate) fn prepared_for_forks() -> bool {
    pins::lent_handler_registered()
}

/// The unit tests' lock on the family heap and on what else of the test process they
/// share: unit tests run side by side (four test threads in CI), and the family heap, its
/// counts and the armed crash points are one for the whole test process. See
/// [`heap_test_user`] and [`heap_test_lock`].
#[cfg(test)]
static HEAP_TEST: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// The test process alone (the write side of the unit tests' heap lock), for a unit test
/// that compares a family-wide count before and after (`Heap::in_use`, `books`,
/// `deferred`, the pin counts, the large allocator's lists), needs a block it freed to stay
/// free or to be handed out again to itself, stops or kills a process holding a lock of the
/// family (the fork server's among them), or arms a fail or hold point in the test process
/// (an armed point is process-wide, `crash::arm` replaces every armed name, and
/// `crash::holding` counts every held thread). Not to be taken while this thread holds
/// either side (a `RwLock` is not reentrant).
#[cfg(test)]
pub(crate) fn heap_test_lock() -> std::sync::RwLockWriteGuard<'static, ()> {
    HEAP_TEST.write().unwrap_or_else(|e| e.into_inner())
}

/// The test process shared (the read side of the unit tests' heap lock), for every other
/// unit test that allocates from the family heap, directly or through anything whose
/// making allocates there (queues, pipes, locks, semaphores, barriers, conditions, values,
/// a manager's state, a started process's argument), so that none does while a test
/// holding [`heap_test_lock`] counts; and for one that may reach a point such a test arms
/// (the Manager's remote writers: `hold:remote.writer.failed`; the tracker's journal:
/// `fail:tracker.journal.reserve`). Taken first in the test, before anything it makes (its
/// guard is then dropped last), after `reactor::tests::SCENES` if the test takes that too
/// (the order every test keeps). Not to be taken again by this thread while it holds it (a
/// waiting writer would block the second read for ever).
#[cfg(test)]
pub(crate) fn heap_test_user() -> std::sync::RwLockReadGuard<'static, ()> {
    HEAP_TEST.read().unwrap_or_else(|e| e.into_inner())
}

/// Plain data that may live in memory shared by the processes of a family.
///
/// `Value<T>`, `Array<T>`, `RawValue<T>` and `RawArray<T>` hold types of this trait. It is
/// implemented for the integer and floating-point types, `bool`, the atomics, and arrays
/// of them; derive it for your own `#[repr(C)]` structs:
///
/// ```
/// use multiproc::ShmSafe;
///
/// #[derive(Clone, Copy, ShmSafe)]
/// #[repr(C)]
/// struct Point {
///     x: f64,
///     y: f64,
///     visits: u32,
/// }
/// ```
///
/// The family heap places objects at 64-byte boundaries, so a type aligned to more than 64
/// bytes cannot live in it; the derive refuses it at compile time:
///
/// ```compile_fail
/// use multiproc::ShmSafe;
///
/// #[derive(Clone, Copy, ShmSafe)]
/// #[repr(C, align(16384))]
/// struct Page {
///     bytes: [u8; 16384],
/// }
/// ```
///
/// Nor may it be packed (the unlocked containers access each field atomically, which needs
/// aligned fields):
///
/// ```compile_fail
/// use multiproc::ShmSafe;
///
/// #[derive(Clone, Copy, ShmSafe)]
/// #[repr(C, packed)]
/// struct Tight {
///     tag: u8,
///     count: u64,
/// }
/// ```
///
/// Aligned to 64 or less is fine:
///
/// ```
/// use multiproc::ShmSafe;
///
/// #[derive(Clone, Copy, ShmSafe)]
/// #[repr(C, align(64))]
/// struct CacheLine {
///     counter: u64,
/// }
/// # multiproc::init();
/// let a = multiproc::Array::from_slice(&[CacheLine { counter: 7 }; 3])?;
/// assert_eq!(a.lock()[2].counter, 7);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Safety
///
/// A type may implement `ShmSafe` only if all of these hold:
///
/// 1. It holds no pointer, reference or handle to anything outside itself (no `Box`,
///    `Vec`, `String`, `&T`, file descriptor): addresses mean nothing in another process.
/// 2. Nothing needs to happen when it is dropped: shared memory is reclaimed without
///    running destructors.
/// 3. Its layout is fixed: a primitive, an array, or a `#[repr(C)]` struct.
/// 4. Any combination of the bytes of two valid values, byte by byte, is a valid value
///    (integers, floats, `bool`; no `char`, no enums, no `NonZero*` of more than one
///    byte): a reader that races a writer of another process sees a mix of whole fields
///    (of words, in a field wider than 8 bytes), and a process killed in the middle of a
///    copy under the lock of a `Value` or an `Array` (the next guard's `owner_died`) may
///    leave any mix of bytes. Neither may be undefined behaviour.
/// 5. Its alignment is at most 64 bytes, the alignment of the family heap's blocks.
/// 6. It has no padding bytes, or it overrides the hidden `load_racy`/`store_racy` to
///    copy field by field (the derive does, so a derived struct may have padding): the
///    unlocked containers copy it with one atomic access per aligned word, and padding
///    read as an integer would be undefined behaviour.
/// 7. All bytes zero is a valid value: [`Array::new`](crate::Array::new) and
///    [`RawArray::new`](crate::RawArray::new) hand out zeroed elements (Python's
///    `Array('i', 10)`). A `NonZeroU8` keeps rules 1 to 6, not this one.
///
/// The derive checks 3 and 5, that every field is `ShmSafe` itself, which gives 1, 4 and
/// 7 and 2 for the fields, and that the struct has no `Drop` of its own (2; for a generic
/// struct, where it is used), and copies field by field, which gives 6.
///
/// Rule 7, and rule 4 byte by byte (it was field by field), are newer than the first
/// versions of this list: a hand-written `unsafe impl` for a type with forbidden bytes (a
/// `NonZero*` wrapper, a `char`) that followed the older wording must be checked again.
pub unsafe trait ShmSafe: Sized + 'static {
    /// Reads a value that other threads or processes may write meanwhile: relaxed atomic
    /// loads, each of the same size for every access to the same bytes (per field, in
    /// words of the field's alignment up to 8 bytes), so concurrent access is no data race.
    /// Used by the unlocked containers; not part of the API.
    ///
    /// # Safety
    ///
    /// `src` is valid for reads and aligned, and every access to these bytes that may run
    /// concurrently goes through `load_racy`/`store_racy` of `Self`.
    #[doc(hidden)]
    #[inline]
    unsafe fn load_racy(src: *const Self) -> Self {
        let mut out = std::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: the caller's contract covers `src`; `out` is ours; Self has no padding
        // (rule 6, for a type that keeps this default), so every byte copied is initialised.
        unsafe {
            racy::copy_words::<Self>(src.cast(), out.as_mut_ptr().cast(), racy::Access::Load);
            out.assume_init()
        }
    }

    /// Writes a value that other threads or processes may read or write meanwhile (the
    /// counterpart of `load_racy`). Not part of the API.
    ///
    /// # Safety
    ///
    /// As for `load_racy`, with `dst` valid for writes.
    #[doc(hidden)]
    #[inline]
    unsafe fn store_racy(dst: *mut Self, value: Self) {
        let value = std::mem::ManuallyDrop::new(value);
        let src: *const Self = &*value;
        // SAFETY: as in `load_racy`; `value` is a whole, initialised Self.
        unsafe { racy::copy_words::<Self>(src.cast(), dst.cast(), racy::Access::Store) }
    }
}

/// The word-by-word copies behind [`ShmSafe::load_racy`] and [`ShmSafe::store_racy`].
mod racy {
    use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};

    /// Which side of the copy is the shared memory.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(super) enum Access {
        /// From shared `src` (atomic loads) to private `dst`.
        Load,
        /// From private `src` to shared `dst` (atomic stores).
        Store,
    }

    /// Copies one `T` (`size_of::<T>()` bytes, aligned for `T`) in words of `T`'s
    /// alignment, at most 8 bytes; the shared side is accessed atomically.
    ///
    /// # Safety
    ///
    /// Both pointers are valid and aligned for `T`, the private side is this thread's
    /// alone, and every byte of the source is initialised.
    #[inline(always)]
    pub(super) unsafe fn copy_words<T>(src: *const u8, dst: *mut u8, access: Access) {
        macro_rules! copy {
            ($int:ty, $atomic:ty) => {{
                const W: usize = std::mem::size_of::<$int>();
                let mut i = 0;
                // A size is a multiple of the alignment, so the words tile the value.
                while i < std::mem::size_of::<T>() {
                    // SAFETY: `i` is inside the value and a multiple of W, which divides
                    // T's alignment: each word is in bounds and aligned. The shared side
                    // is only accessed atomically with words of this size (the caller's
                    // contract), the private side is ours.
                    unsafe {
                        match access {
                            Access::Load => {
                                let word = <$atomic>::from_ptr(src.add(i).cast::<$int>().cast_mut());
                                dst.add(i).cast::<$int>().write(word.load(Ordering::Relaxed));
                            }
                            Access::Store => {
                                let word = <$atomic>::from_ptr(dst.add(i).cast::<$int>());
                                word.store(src.add(i).cast::<$int>().read(), Ordering::Relaxed);
                            }
                        }
                    }
                    i += W;
                }
            }};
        }
        match std::mem::align_of::<T>() {
            1 => copy!(u8, AtomicU8),
            2 => copy!(u16, AtomicU16),
            4 => copy!(u32, AtomicU32),
            _ => copy!(u64, AtomicU64),
        }
    }
}

macro_rules! shm_safe {
    ($($t:ty),* $(,)?) => { $(
        // SAFETY: a primitive or atomic: no pointers, no drop glue, fixed layout, and every
        // bit pattern that can be written by another process of the family is valid.
        unsafe impl ShmSafe for $t {}
    )* };
}

shm_safe!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    (),
    std::sync::atomic::AtomicU8,
    std::sync::atomic::AtomicU16,
    std::sync::atomic::AtomicU32,
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicI8,
    std::sync::atomic::AtomicI16,
    std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicI64,
    std::sync::atomic::AtomicIsize,
    std::sync::atomic::AtomicBool,
    RawMutex,
    Notify,
    Holders,
);

// SAFETY: an array of ShmSafe elements has the elements' properties and a fixed layout;
// it has no padding of its own, and it is copied element by element, so the elements'
// padding (if any) is handled by theirs.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {
    #[inline]
    unsafe fn load_racy(src: *const Self) -> Self {
        let mut out = std::mem::MaybeUninit::<Self>::uninit();
        let dst = out.as_mut_ptr().cast::<T>();
        for i in 0..N {
            // SAFETY: element `i` is in bounds of both arrays; the caller's contract covers
            // `src`, `out` is ours; every element is written before `assume_init`.
            unsafe { dst.add(i).write(T::load_racy(src.cast::<T>().add(i))) };
        }
        // SAFETY: all N elements were written above.
        unsafe { out.assume_init() }
    }

    #[inline]
    unsafe fn store_racy(dst: *mut Self, value: Self) {
        let value = std::mem::ManuallyDrop::new(value);
        for i in 0..N {
            // SAFETY: element `i` is in bounds; it is read once out of `value`, which is
            // never dropped (ShmSafe has no drop glue anyway).
            unsafe { T::store_racy(dst.cast::<T>().add(i), std::ptr::read(&value[i])) };
        }
    }
}

/// What the crash tests reach through `multiproc::__private`; not part of the API.
pub(crate) mod test_hooks {
    use super::{Heap, HeapFull, crash};

    /// Aborts this process when it reaches the `crash_point!` named `point` (or any of
    /// several, separated by commas); a name written `stop:NAME` stops the process there
    /// (`SIGSTOP`) instead, for the test to kill, and `hold:NAME` holds the thread that
    /// reaches it until the points are armed otherwise.
    pub fn crash_at(point: &str) {
        crash::arm(Some(point));
    }

    /// Disarms every crash point of this process (a thread held at a `hold:` point goes on).
    pub fn crash_disarm() {
        crash::arm(None);
    }

    /// How many threads of this process a `hold:NAME` crash point holds now.
    pub fn crash_holding() -> usize {
        crash::holding()
    }

    /// Reaps every dead process's list of handles now (what a reap's sweep does at most
    /// every 100 ms per process): a test's exact step where it would otherwise sleep.
    pub fn sweep_dead_processes() {
        super::holds::sweep_now();
    }

    /// How many claims of a pin record (`pins`) the family's processes have begun: one
    /// per process that pins, unless claims fail.
    pub fn pin_claims() -> u64 {
        Heap::get().pin_claims().load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes of the heap's books that are no block of its directory of lists: lost (0
    /// unless a process is making a block at this moment).
    pub fn heap_books_lost() -> u64 {
        super::holds::books_lost(Heap::get())
    }

    /// How many blocks of the heap's directory of lists the process `pid` owns (0: how
    /// many are spares, retired by the reaps of ended processes).
    pub fn heap_books_of(pid: u32) -> u64 {
        super::holds::blocks_of(Heap::get(), pid)
    }

    /// Runs `f` holding the crash points' own lock (a test of a fork while another thread
    /// holds it): any crash point reached meanwhile while armed, in this process, waits.
    pub fn crash_locked<R>(f: impl FnOnce() -> R) -> R {
        let _target = crash::lock_target();
        f()
    }

    /// Allocates `len` bytes of the family heap; returns their offset.
    pub fn heap_alloc(len: usize) -> Result<u64, HeapFull> {
        Heap::get().alloc(len)
    }

    /// Frees a block from [`heap_alloc`].
    ///
    /// # Safety
    ///
    /// `offset` and `len` come from one `heap_alloc` call, the block is freed once, and
    /// nothing uses it afterwards.
    pub unsafe fn heap_free(offset: u64, len: usize) {
        Heap::get().free(offset, len);
    }

    /// Frees a large block the way a large message's block is freed: kept warm, with its
    /// pages, for the next [`heap_alloc_dirty`] if the budget allows.
    ///
    /// # Safety
    ///
    /// As for [`heap_free`].
    pub unsafe fn heap_free_warm(offset: u64, len: usize) {
        Heap::get().free_warm(offset, len);
    }

    /// Allocates `len` bytes the way a large message's block is allocated: a warm block if
    /// one is big enough (its contents unspecified), else as [`heap_alloc`].
    pub fn heap_alloc_dirty(len: usize) -> Result<u64, HeapFull> {
        Heap::get().alloc_dirty(len)
    }

    /// From now on this process frees large blocks as a pool worker does: beyond the warm
    /// budget, their pages wait for [`heap_release_deferred`].
    pub fn heap_defer_releases() {
        Heap::get().defer_releases();
    }

    /// Releases every block whose release was deferred; returns how many.
    pub fn heap_release_deferred() -> usize {
        Heap::get().release_deferred(true, || false)
    }

    /// Bytes of the blocks whose release is deferred.
    pub fn heap_deferred() -> u64 {
        Heap::get().deferred()
    }

    /// Bytes of the heap's own books (the blocks in which the processes list what they
    /// hold; never freed, an emptied one is taken again), which
    /// [`crate::__private::heap_in_use`] leaves out.
    pub fn heap_books() -> u64 {
        Heap::get().books()
    }

    /// Checks the large allocator's free list (sorted, non-overlapping, below the bump
    /// pointer, clear of the `live` blocks), its warm blocks and the blocks waiting for
    /// their release (clear of the free list, of `live` and of each other); returns the free
    /// extents as (offset, size).
    pub fn heap_check(live: &[(u64, usize)]) -> Result<Vec<(u64, u64)>, String> {
        Heap::get().check(live)
    }
}
