//! `Array` and `RawArray`: a fixed number of plain values shared by the processes of a
//! family.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use super::user_lock::{HeldLock, SharedLock};
use crate::error::Error;
use crate::shm::{Acquired, Deadline, LockedSlice, Owner, RacySlice, Shared, ShmSafe, SliceGuard};

/// A fixed-length array of `T` in shared memory, with a lock (Python's
/// `multiprocessing.Array`).
///
/// [`get`](Array::get), [`set`](Array::set) and [`to_vec`](Array::to_vec) take the lock
/// for one access; [`lock`](Array::lock) holds it and gives the elements as a slice, for
/// several accesses that must not interleave with other processes'. A process that dies
/// holding the lock does not block the others: the next `lock` gets it, and
/// [`ArrayGuard::owner_died`] says so (a `get`, `set` or `to_vec` gets it too, and says
/// nothing).
///
/// `Array` is a handle: clone it, pass it to a child, send it through a queue; the
/// elements live as long as some handle does.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Array, Process};
///
/// fn negate(numbers: Array<i32>) {
///     for x in numbers.lock().iter_mut() {
///         *x = -*x;
///     }
/// }
///
/// multiproc::init();
/// let numbers = Array::from_slice(&[0, 1, 2, 3])?;
/// Process::new(negate, numbers.clone()).start()?.join()?;
/// assert_eq!(numbers.to_vec(), [0, -1, -2, -3]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.Array")]
#[derive(Serialize)]
#[serde(bound = "")]
pub struct Array<T: ShmSafe + Copy + Send + Sync> {
    shared: Shared<LockedSlice<T>>,
    /// The user's lock, taken before the array's own (see [`Array::with_lock`]).
    lock: Option<SharedLock>,
}

impl<'de, T: ShmSafe + Copy + Send + Sync> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(bound = "")]
        struct Wire<T: ShmSafe + Copy + Send + Sync> {
            shared: Shared<LockedSlice<T>>,
            lock: Option<SharedLock>,
        }
        let Wire { shared, lock } = Wire::<T>::deserialize(deserializer)?;
        if !shared.holds_elements() {
            return Err(D::Error::custom("the Array handle was sent for elements of another type"));
        }
        Ok(Self { shared, lock })
    }
}

impl<T: ShmSafe + Copy + Send + Sync> Clone for Array<T> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone(), lock: self.lock.clone() }
    }
}

impl<T: ShmSafe + Copy + Send + Sync + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As std's Mutex: never wait, never read what a guard may be changing; and never take
        // a dead holder's lock over, which would leave the next lock no `owner_died`.
        let Some(guard) = self.try_lock_free() else {
            return f.debug_list().entry(&format_args!("<locked>")).finish();
        };
        let shown = guard.len().min(32);
        let mut list = f.debug_list();
        list.entries(&guard[..shown]);
        if guard.len() > shown {
            list.entry(&format_args!("... {} more", guard.len() - shown));
        }
        list.finish()
    }
}

impl<T: ShmSafe + Copy + Send + Sync> Array<T> {
    /// `len` elements, all bytes zero (Python's `Array('i', 10)`; a valid `T` by
    /// [`ShmSafe`]'s rule 7).
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let zeros = multiproc::Array::<f64>::new(3)?;
    /// assert_eq!(zeros.to_vec(), [0.0, 0.0, 0.0]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(len: usize) -> Result<Self, Error> {
        Ok(Self { shared: LockedSlice::zeroed(len)?, lock: None })
    }

    /// A copy of `values` (Python's `Array('i', [0, 1, 2])`).
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::Array::from_slice(&[1u8, 2, 3])?;
    /// assert_eq!(a.len(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn from_slice(values: &[T]) -> Result<Self, Error> {
        Ok(Self { shared: LockedSlice::from_slice(values)?, lock: None })
    }

    /// A copy of `values` guarded by a lock of the caller's, a [`Lock`](crate::Lock) or an
    /// [`RLock`](crate::RLock) (Python's `Array(typecode, values, lock=l)`): what
    /// [`Value::with_lock`](crate::Value::with_lock) says holds here too.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Array, RLock, Value};
    /// # multiproc::init();
    /// let lock = RLock::new()?;
    /// let items = Array::with_lock(&[0u32; 4], lock.clone())?;
    /// let used = Value::with_lock(0usize, lock.clone())?;
    /// {
    ///     let _both = lock.acquire()?; // hold both at once, as one
    ///     items.set(0, 7);
    ///     used.set(1);
    /// }
    /// assert_eq!((items.get(0), used.get()), (7, 1));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_lock(values: &[T], lock: impl Into<SharedLock>) -> Result<Self, Error> {
        Ok(Self { shared: LockedSlice::from_slice(values)?, lock: Some(lock.into()) })
    }

    /// The lock of the caller's that guards this array, if it was made with
    /// [`Array::with_lock`] (Python's `get_lock()`).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// assert!(multiproc::Array::<u8>::new(1)?.shared_lock().is_none());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn shared_lock(&self) -> Option<&SharedLock> {
        self.lock.as_ref()
    }

    fn lock_until(&self, deadline: Deadline) -> Option<ArrayGuard<'_, T>> {
        let shared = &self.shared;
        match &self.lock {
            None => shared.lock(Owner::process(), deadline).ok().map(|guard| ArrayGuard { guard, user: None }),
            Some(lock) => lock
                .lock_value(
                    deadline,
                    |me| shared.is_marked_by(me),
                    |me, deadline| shared.lock_marked(me, deadline).ok(),
                )
                .map(|(guard, held)| ArrayGuard { guard, user: Some(held) }),
        }
    }

    /// The number of elements.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::Array::<u8>::new(3)?;
    /// assert_eq!(a.len(), 3);
    /// assert!(!a.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.shared.len()
    }

    /// Whether it has no elements.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// assert!(multiproc::Array::<u8>::new(0)?.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` (under the lock).
    ///
    /// It is a lock, as in Python: like [`lock`](Array::lock), it takes over a lock whose
    /// holder died (maybe part-way through an update), and nothing says so, nor does the
    /// next `lock()`. To be told, take [`lock`](Array::lock) and ask its guard
    /// ([`ArrayGuard::owner_died`]).
    ///
    /// # Panics
    ///
    /// When `i` is out of bounds.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::Array::from_slice(&[5, 6])?;
    /// assert_eq!(a.get(1), 6);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self, i: usize) -> T {
        self.lock()[i]
    }

    /// Sets element `i` (under the lock).
    ///
    /// It is a lock, as in Python: like [`lock`](Array::lock), it takes over a lock whose
    /// holder died (maybe part-way through an update), and nothing says so, nor does the
    /// next `lock()`. To be told, take [`lock`](Array::lock) and ask its guard
    /// ([`ArrayGuard::owner_died`]).
    ///
    /// # Panics
    ///
    /// When `i` is out of bounds.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::Array::from_slice(&[5, 6])?;
    /// a.set(0, 50);
    /// assert_eq!(a.to_vec(), [50, 6]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn set(&self, i: usize, value: T) {
        self.lock()[i] = value;
    }

    /// A copy of all elements (under the lock).
    ///
    /// It is a lock, as in Python: like [`lock`](Array::lock), it takes over a lock whose
    /// holder died (maybe part-way through an update), and nothing says so, nor does the
    /// next `lock()`. To be told, take [`lock`](Array::lock) and ask its guard
    /// ([`ArrayGuard::owner_died`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::Array::from_slice(&[1, 2, 3])?;
    /// assert_eq!(a.to_vec(), [1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        self.lock().to_vec()
    }

    /// Overwrites all elements with `values`, which must have the same length (under the
    /// lock).
    ///
    /// It is a lock, as in Python: like [`lock`](Array::lock), it takes over a lock whose
    /// holder died (maybe part-way through an update), and nothing says so, nor does the
    /// next `lock()`. To be told, take [`lock`](Array::lock) and ask its guard
    /// ([`ArrayGuard::owner_died`]).
    ///
    /// # Panics
    ///
    /// When the lengths differ.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::Array::<i64>::new(2)?;
    /// a.copy_from_slice(&[4, 5]);
    /// assert_eq!(a.to_vec(), [4, 5]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn copy_from_slice(&self, values: &[T]) {
        self.lock().copy_from_slice(values);
    }

    /// Locks the array and gives its elements as a slice; unlocks when the guard drops.
    ///
    /// A thread that holds a guard and locks the same array again waits for ever, as with
    /// `std::sync::Mutex` (a second guard would alias the first): drop the guard first.
    ///
    /// A thread that panics holding the guard unlocks it as it unwinds: there is no
    /// poisoning (unlike `std::sync::Mutex`; as Python's lock), and the next guard's
    /// [`owner_died`](ArrayGuard::owner_died) is `false`. The elements written before the
    /// panic stay written, the others as they were (each always a valid `T`).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::Array::from_slice(&[3, 1, 2])?;
    /// a.lock().sort();
    /// assert_eq!(a.to_vec(), [1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "get_lock")]
    pub fn lock(&self) -> ArrayGuard<'_, T> {
        self.lock_until(Deadline::NEVER).expect("an endless wait does not time out")
    }

    /// Locks the array if nobody holds the lock, or its holder died (the guard's
    /// `owner_died` says so); never waits.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::Array::<u8>::new(1)?;
    /// let guard = a.try_lock().expect("free");
    /// assert!(a.try_lock().is_none());
    /// # drop(guard);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_lock(&self) -> Option<ArrayGuard<'_, T>> {
        let shared = &self.shared;
        match &self.lock {
            None => shared.try_lock(Owner::process()).map(|guard| ArrayGuard { guard, user: None }),
            Some(lock) => lock
                .try_lock_value(|me| shared.is_marked_by(me), |me, deadline| shared.lock_marked(me, deadline).ok())
                .map(|(guard, held)| ArrayGuard { guard, user: Some(held) }),
        }
    }

    /// Locks the array if it is free now: never waits, and never takes a dead holder's lock
    /// over, which is left, with its `owner_died`, to the next lock (for `Debug`: aud103 M1).
    fn try_lock_free(&self) -> Option<ArrayGuard<'_, T>> {
        let shared = &self.shared;
        match &self.lock {
            None => shared.try_lock_free(Owner::process()).map(|guard| ArrayGuard { guard, user: None }),
            Some(lock) => lock
                .try_lock_value_free(|me| shared.is_marked_by(me), |me, _| shared.try_lock_marked_free(me))
                .map(|(guard, held)| ArrayGuard { guard, user: Some(held) }),
        }
    }

    /// Locks the array, waiting at most `timeout` (however short, a dead holder's lock is
    /// taken over).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # multiproc::init();
    /// let a = multiproc::Array::<u8>::new(1)?;
    /// let _held = a.lock();
    /// assert!(a.lock_timeout(Duration::from_millis(10)).is_none());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Option<ArrayGuard<'_, T>> {
        self.lock_until(Deadline::after(timeout))
    }
}

/// The locked elements of an [`Array`]: a `[T]` to read and write; unlocks on drop.
///
/// # Examples
///
/// ```
/// # multiproc::init();
/// let a = multiproc::Array::from_slice(&[1, 2, 3])?;
/// let mut guard = a.lock();
/// guard.reverse(); // any slice method
/// let total: i32 = guard.iter().sum();
/// assert_eq!((&*guard, total), (&[3, 2, 1][..], 6));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: ShmSafe> {
    // Released first: the array's own access, then the user's lock.
    guard: SliceGuard<'a, T>,
    user: Option<HeldLock<'a>>,
}

impl<T: ShmSafe + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ArrayGuard").field(&&**self).finish()
    }
}

impl<T: ShmSafe> ArrayGuard<'_, T> {
    /// Whether the previous holder died holding the lock: the elements hold what it had
    /// written so far (each element a value, maybe a torn one).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::Array::<u8>::new(1)?;
    /// assert!(!a.lock().owner_died());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.guard.acquired == Acquired::OwnerDied
            || self.user.as_ref().is_some_and(|held| held.acquired == Acquired::OwnerDied)
    }
}

impl<T: ShmSafe> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.guard
    }
}

impl<T: ShmSafe> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.guard
    }
}

/// A fixed-length array of `T` in shared memory without a lock (Python's `RawArray`).
///
/// [`get`](RawArray::get) and [`set`](RawArray::set) are relaxed atomic accesses, one per
/// field (per machine word within a field): cheap, unsynchronized, never a data race; a
/// read racing another process's write may see some fields (words) of each for a
/// multi-word `T`. Borrowing all elements as a slice
/// ([`as_slice`](RawArray::as_slice), [`as_mut_slice`](RawArray::as_mut_slice)) is
/// `unsafe`: the caller promises that nobody writes them meanwhile. Use [`Array`] when
/// processes write concurrently.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Process, RawArray};
///
/// fn total(data: RawArray<f64>) -> f64 {
///     // SAFETY: the parent wrote the data before starting this process and writes no more.
///     unsafe { data.as_slice() }.iter().sum()
/// }
///
/// multiproc::init();
/// let data = RawArray::<f64>::new(1000)?;
/// for i in 0..data.len() {
///     data.set(i, 1.0);
/// }
/// assert_eq!(Process::new(total, data.clone()).start()?.join()?, 1000.0);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.RawArray")]
#[derive(Serialize)]
#[serde(bound = "", transparent)]
pub struct RawArray<T: ShmSafe + Copy + Send + Sync> {
    pub(crate) shared: Shared<RacySlice<T>>,
}

impl<'de, T: ShmSafe + Copy + Send + Sync> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shared = Shared::<RacySlice<T>>::deserialize(deserializer)?;
        if !shared.holds_elements() {
            return Err(D::Error::custom("the RawArray handle was sent for elements of another type"));
        }
        Ok(Self { shared })
    }
}

impl<T: ShmSafe + Copy + Send + Sync> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<T: ShmSafe + Copy + Send + Sync + fmt::Debug> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.len().min(32);
        let mut list = f.debug_list();
        list.entries((0..shown).map(|i| self.get(i)));
        if self.len() > shown {
            list.entry(&format_args!("... {} more", self.len() - shown));
        }
        list.finish()
    }
}

impl<T: ShmSafe + Copy + Send + Sync> RawArray<T> {
    /// `len` elements, all bytes zero (a valid `T` by [`ShmSafe`]'s rule 7).
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::RawArray::<u32>::new(4)?;
    /// assert_eq!(a.to_vec(), [0, 0, 0, 0]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(len: usize) -> Result<Self, Error> {
        Ok(Self { shared: RacySlice::zeroed(len)? })
    }

    /// A copy of `values`.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::RawArray::from_slice(&[1.5, 2.5])?;
    /// assert_eq!(a.to_vec(), [1.5, 2.5]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn from_slice(values: &[T]) -> Result<Self, Error> {
        let array = Self::new(values.len())?;
        array.shared.cells().write_from(values);
        Ok(array)
    }

    /// The number of elements.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::RawArray::<u16>::new(5)?;
    /// assert_eq!(a.len(), 5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.shared.cells().len()
    }

    /// Whether it has no elements.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// assert!(multiproc::RawArray::<u16>::new(0)?.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i`, read once (relaxed atomic loads, unsynchronized).
    ///
    /// # Panics
    ///
    /// When `i` is out of bounds.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::RawArray::from_slice(&[7u8, 8])?;
    /// assert_eq!(a.get(1), 8);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self, i: usize) -> T {
        self.shared.cells().get(i)
    }

    /// Writes element `i` once (relaxed atomic stores, unsynchronized).
    ///
    /// # Panics
    ///
    /// When `i` is out of bounds.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::RawArray::<u8>::new(2)?;
    /// a.set(0, 3);
    /// assert_eq!(a.to_vec(), [3, 0]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn set(&self, i: usize, value: T) {
        self.shared.cells().set(i, value)
    }

    /// A copy of all elements, read one by one (unsynchronized).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// assert_eq!(multiproc::RawArray::<u8>::new(2)?.to_vec(), [0, 0]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        let cells = self.shared.cells();
        (0..cells.len()).map(|i| cells.get(i)).collect()
    }

    /// Writes all elements from `values`, one by one (unsynchronized).
    ///
    /// # Panics
    ///
    /// When the lengths differ.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let a = multiproc::RawArray::<u8>::new(2)?;
    /// a.copy_from_slice(&[1, 2]);
    /// assert_eq!(a.get(1), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn copy_from_slice(&self, values: &[T]) {
        self.shared.cells().write_from(values);
    }
}
