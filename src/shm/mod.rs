//! Shared memory: the family heap, the objects that live in it, and the primitives every
//! shared object is built from (a robust mutex, a futex notifier, a holder table).
//!
//! With `sys`, this is the only module allowed `unsafe`: turning heap offsets into
//! references happens here, once, behind types whose contracts are written down.
#![allow(unsafe_code)]

mod blob;
mod cells;
mod heap;
mod holders;
mod locked;
mod mutex;
mod object;
mod raw_access;
mod ring;
mod segment;
mod slice;
mod wait;

pub(crate) use blob::Payload;
pub(crate) use cells::Cells;
pub(crate) use heap::Heap;
pub use heap::HeapFull;
pub(crate) use holders::Holders;
pub(crate) use locked::{Locked, LockedGuard, Racy};
pub(crate) use mutex::{Acquired, Owner, RawGuard, RawMutex, TimedOut};
pub(crate) use object::{Embedded, Shared, ShmObject, Side, Sided, kind};
pub(crate) use ring::{INLINE_MAX, Limits, Patient, Refused, Ring, TAG_MASK, Watch};
pub(crate) use segment::Segment;
pub(crate) use slice::{LockedSlice, RacySlice, SliceGuard};
pub(crate) use wait::{Deadline, FIRST_SLICE, Interrupted, MAX_SLICE, Notify, SPIN, saturating_nanos, spin_for};

/// Serialises the unit tests that allocate from the family heap, so that those comparing
/// `Heap::in_use` before and after see only their own allocations.
#[cfg(test)]
pub(crate) fn heap_test_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
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
/// # Safety
///
/// A type may implement `ShmSafe` only if all of these hold:
///
/// 1. It holds no pointer, reference or handle to anything outside itself (no `Box`,
///    `Vec`, `String`, `&T`, file descriptor): addresses mean nothing in another process.
/// 2. Nothing needs to happen when it is dropped: shared memory is reclaimed without
///    running destructors.
/// 3. Its layout is fixed: a primitive, an array, or a `#[repr(C)]` struct.
/// 4. Any combination of the bytes of two valid values, field by field, is a valid value
///    (integers, floats, `bool`; no `char`, no enums): a reader that races a writer of
///    another process may see such a mix, and must not see undefined behaviour.
///
/// The derive checks 3 and that every field is `ShmSafe` itself, which gives 1, 2 and 4.
pub unsafe trait ShmSafe: Sized + 'static {}

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

// SAFETY: an array of ShmSafe elements has the elements' properties and a fixed layout.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}
