//! `Value` and `RawValue`: one plain value shared by the processes of a family.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::user_lock::{HeldLock, SharedLock};
use crate::error::Error;
use crate::shm::{Acquired, Deadline, Locked, LockedGuard, Owner, Racy, Shared, ShmObject, ShmSafe, kind};

#[derive(crate::ShmSafe)]
#[repr(C)]
struct ValueState<T: Copy + Send> {
    cell: Locked<T>,
}

impl<T: ShmSafe + Copy + Send + Sync> ShmObject for ValueState<T> {
    const KIND: u32 = kind::VALUE;
}

/// A value of `T` in shared memory, with a lock (Python's `Value`).
///
/// `get` and `set` take the lock for one access; for a read-modify-write, hold the lock:
/// `*v.lock() += 1` is exact however many processes increment at once. A process that
/// dies holding the lock does not block the others: the next `lock` gets it, and
/// [`ValueGuard::owner_died`] says so (a `get` or `set` gets it too, and says nothing).
///
/// `Value` is a handle: clone it, pass it to a child, send it through a queue; the value
/// lives as long as some handle does.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Process, Value};
///
/// fn bump(counter: Value<i32>) {
///     *counter.lock() += 1;
/// }
///
/// multiproc::init();
/// let counter = Value::new(0)?;
/// Process::new(bump, counter.clone()).start()?.join()?;
/// assert_eq!(counter.get(), 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.Value")]
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Value<T: ShmSafe + Copy + Send + Sync> {
    shared: Shared<ValueState<T>>,
    /// The user's lock, taken before the value's own (see [`Value::with_lock`]).
    lock: Option<SharedLock>,
}

impl<T: ShmSafe + Copy + Send + Sync> Clone for Value<T> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone(), lock: self.lock.clone() }
    }
}

impl<T: ShmSafe + Copy + Send + Sync + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As std's Mutex: never wait, never read what a guard may be changing; and never take
        // a dead holder's lock over, which would leave the next lock no `owner_died`.
        match self.try_lock_free() {
            Some(guard) => f.debug_tuple("Value").field(&*guard).finish(),
            None => f.debug_tuple("Value").field(&format_args!("<locked>")).finish(),
        }
    }
}

impl<T: ShmSafe + Copy + Send + Sync> Value<T> {
    /// A new shared value.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let v = multiproc::Value::new(1.5f64)?;
    /// assert_eq!(v.get(), 1.5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(value: T) -> Result<Self, Error> {
        Ok(Self { shared: Shared::new(ValueState { cell: Locked::new(value) })?, lock: None })
    }

    /// A new shared value guarded by a lock of the caller's, a [`Lock`](crate::Lock) or an
    /// [`RLock`](crate::RLock) (Python's `Value(typecode, v, lock=l)`): several values
    /// made with one lock are locked together, and holding that lock's guard does not
    /// make `lock()` on a value wait for itself with an `RLock`. The lock travels with
    /// every handle of the value. A holder of the lock that died is taken over, and the
    /// next guard's [`owner_died`](ValueGuard::owner_died) says so.
    ///
    /// With an `RLock`, a thread may hold guards of several values sharing it; a second
    /// guard of the *same* value on one thread panics in [`lock`](Value::lock) (it would
    /// alias the first) and is `None` from `try_lock`/`lock_timeout`. Drop such a guard on
    /// the thread that took it (an `RLock` level belongs to its thread).
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Lock, Value};
    /// # multiproc::init();
    /// let lock = Lock::new()?;
    /// let balance = Value::with_lock(100i64, lock.clone())?;
    /// let spent = Value::with_lock(0i64, lock.clone())?;
    /// {
    ///     let mut b = balance.lock();
    ///     assert!(lock.locked()); // the value's lock is the caller's lock
    ///     *b -= 30;
    /// }
    /// *spent.lock() += 30;
    /// assert_eq!(balance.get() + spent.get(), 100);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_lock(value: T, lock: impl Into<SharedLock>) -> Result<Self, Error> {
        Ok(Self { shared: Shared::new(ValueState { cell: Locked::new(value) })?, lock: Some(lock.into()) })
    }

    /// The lock of the caller's that guards this value, if it was made with
    /// [`Value::with_lock`] (Python's `get_lock()`).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// assert!(multiproc::Value::new(0u8)?.shared_lock().is_none());
    /// let with = multiproc::Value::with_lock(0u8, multiproc::Lock::new()?)?;
    /// assert!(with.shared_lock().is_some());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn shared_lock(&self) -> Option<&SharedLock> {
        self.lock.as_ref()
    }

    fn lock_until(&self, deadline: Deadline) -> Option<ValueGuard<'_, T>> {
        let cell = &self.shared.cell;
        match &self.lock {
            None => cell.lock(Owner::process(), deadline).ok().map(|guard| ValueGuard { guard, user: None }),
            Some(lock) => lock
                .lock_value(deadline, |me| cell.is_marked_by(me), |me, deadline| cell.lock_marked(me, deadline).ok())
                .map(|(guard, held)| ValueGuard { guard, user: Some(held) }),
        }
    }

    /// Reads the value (under the lock).
    ///
    /// It is a lock, as in Python: like [`lock`](Value::lock), it takes over a lock whose
    /// holder died (maybe part-way through an update), and nothing says so, nor does the
    /// next `lock()`. To be told, take [`lock`](Value::lock) and ask its guard
    /// ([`ValueGuard::owner_died`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let v = multiproc::Value::new(3u8)?;
    /// assert_eq!(v.get(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self) -> T {
        *self.lock()
    }

    /// Writes the value (under the lock).
    ///
    /// It is a lock, as in Python: like [`lock`](Value::lock), it takes over a lock whose
    /// holder died (maybe part-way through an update), and nothing says so, nor does the
    /// next `lock()`. To be told, take [`lock`](Value::lock) and ask its guard
    /// ([`ValueGuard::owner_died`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let v = multiproc::Value::new(3u8)?;
    /// v.set(4);
    /// assert_eq!(v.get(), 4);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn set(&self, value: T) {
        *self.lock() = value;
    }

    /// Locks the value for a read-modify-write; unlocks when the guard drops.
    ///
    /// A thread that holds a guard and locks the same value again waits for ever, as with
    /// `std::sync::Mutex` (Python's default `RLock` would let it in; a second guard here
    /// would alias the first): drop the guard first, or use [`Value::lock_timeout`]. Through
    /// a shared [`RLock`](crate::RLock) (`with_lock`) the second lock panics instead.
    ///
    /// A thread that panics holding the guard unlocks it as it unwinds: there is no
    /// poisoning (unlike `std::sync::Mutex`; as Python's lock), and the next guard's
    /// [`owner_died`](ValueGuard::owner_died) is `false`. What was written before the panic
    /// stays, which is always a valid `T`: a read-modify-write that may panic part-way
    /// computes first and writes last. (`owner_died` is for a *process* that died holding
    /// it, which unwinds nothing.)
    #[doc(alias = "get_lock")]
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let v = multiproc::Value::new(0i32)?;
    /// *v.lock() += 1; // exact, whatever other processes do at the same time
    /// assert_eq!(v.get(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn lock(&self) -> ValueGuard<'_, T> {
        self.lock_until(Deadline::NEVER).expect("an endless wait does not time out")
    }

    /// Locks the value if nobody holds the lock, or its holder died (the guard's
    /// `owner_died` says so); never waits.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let v = multiproc::Value::new(0i32)?;
    /// let held = v.lock();
    /// assert!(v.try_lock().is_none());
    /// drop(held);
    /// assert!(v.try_lock().is_some());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_lock(&self) -> Option<ValueGuard<'_, T>> {
        let cell = &self.shared.cell;
        match &self.lock {
            None => cell.try_lock(Owner::process()).map(|guard| ValueGuard { guard, user: None }),
            Some(lock) => lock
                .try_lock_value(|me| cell.is_marked_by(me), |me, deadline| cell.lock_marked(me, deadline).ok())
                .map(|(guard, held)| ValueGuard { guard, user: Some(held) }),
        }
    }

    /// Locks the value if it is free now: never waits, and never takes a dead holder's lock
    /// over, which is left, with its `owner_died`, to the next lock (for `Debug`: aud103 M1,
    /// printing a value made the next guard's `owner_died` false).
    fn try_lock_free(&self) -> Option<ValueGuard<'_, T>> {
        let cell = &self.shared.cell;
        match &self.lock {
            None => cell.try_lock_free(Owner::process()).map(|guard| ValueGuard { guard, user: None }),
            Some(lock) => lock
                .try_lock_value_free(|me| cell.is_marked_by(me), |me, _| cell.try_lock_marked_free(me))
                .map(|(guard, held)| ValueGuard { guard, user: Some(held) }),
        }
    }

    /// Locks the value, waiting at most `timeout` (however short, a dead holder's lock is
    /// taken over).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # multiproc::init();
    /// let v = multiproc::Value::new(0i32)?;
    /// let _held = v.lock();
    /// assert!(v.lock_timeout(Duration::from_millis(10)).is_none());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Option<ValueGuard<'_, T>> {
        self.lock_until(Deadline::after(timeout))
    }
}

/// The locked value of a [`Value`]; dereference it to read or write.
///
/// # Examples
///
/// ```
/// # multiproc::init();
/// let v = multiproc::Value::new(10u64)?;
/// let mut guard = v.lock();
/// *guard = *guard * 2 + 1;
/// drop(guard);
/// assert_eq!(v.get(), 21);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T> {
    // Released first: the value's own access, then the user's lock.
    guard: LockedGuard<'a, T>,
    user: Option<HeldLock<'a>>,
}

impl<T: fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueGuard").field(&*self.guard).finish()
    }
}

impl<T> ValueGuard<'_, T> {
    /// Whether the previous holder died holding the lock: the value may be half-updated
    /// (for a plain number, it holds the last complete write).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let v = multiproc::Value::new(0u8)?;
    /// assert!(!v.lock().owner_died());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.guard.acquired == Acquired::OwnerDied
            || self.user.as_ref().is_some_and(|held| held.acquired == Acquired::OwnerDied)
    }
}

impl<T> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

#[derive(crate::ShmSafe)]
#[repr(C)]
struct RawState<T: Copy + Send> {
    cell: Racy<T>,
}

impl<T: ShmSafe + Copy + Send + Sync> ShmObject for RawState<T> {
    const KIND: u32 = kind::RAW_VALUE;
}

/// A value of `T` in shared memory without a lock (Python's `RawValue`).
///
/// Reads and writes are relaxed atomic accesses, one per field (per machine word within a
/// field): cheap, unsynchronized, and never a data race. A read that races a write of
/// another process may see some fields (words) of each for a multi-word `T`, and two
/// read-modify-writes lose one. Use [`Value`] when that matters.
///
/// # Examples
///
/// ```no_run
/// use multiproc::RawValue;
///
/// multiproc::init();
/// let flag = RawValue::new(0u64)?;
/// flag.set(7);
/// assert_eq!(flag.get(), 7);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.RawValue")]
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RawValue<T: ShmSafe + Copy + Send + Sync> {
    shared: Shared<RawState<T>>,
}

impl<T: ShmSafe + Copy + Send + Sync> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<T: ShmSafe + Copy + Send + Sync + fmt::Debug> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

impl<T: ShmSafe + Copy + Send + Sync> RawValue<T> {
    /// A new shared value.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let v = multiproc::RawValue::new(5i16)?;
    /// assert_eq!(v.get(), 5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(value: T) -> Result<Self, Error> {
        Ok(Self { shared: Shared::new(RawState { cell: Racy::new(value) })? })
    }

    /// Reads the value, unsynchronized.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// assert_eq!(multiproc::RawValue::new(true)?.get(), true);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self) -> T {
        self.shared.cell.get()
    }

    /// Writes the value, unsynchronized.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let flag = multiproc::RawValue::new(false)?;
    /// flag.set(true);
    /// assert!(flag.get());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn set(&self, value: T) {
        self.shared.cell.set(value)
    }
}
