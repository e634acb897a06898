//! `Event`: a flag that processes wait for.

#[path = "event_async.rs"]
mod event_async;
pub use event_async::EventWait;

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::Abandoned;
use crate::error::Error;
use crate::shm::{Deadline, Interrupted, Notify, SPIN, Shared, ShmObject, kind};
use crate::sys;

/// The low bit of the word is the flag; the rest counts the times it was set, so that a
/// waiter sees a `set` even when a `clear` follows at once.
const SET: u32 = 1;

#[derive(crate::ShmSafe)]
#[repr(C)]
pub(crate) struct EventState {
    word: AtomicU32,
    changed: Notify,
}

impl ShmObject for EventState {
    const KIND: u32 = kind::EVENT;
}

/// A flag shared by the processes of a family (Python's `multiprocessing.Event`): `set`
/// raises it and wakes every waiter, `clear` lowers it, `wait` blocks until it is raised.
///
/// A waiter woken by a `set` returns even if a `clear` came right after (Python's
/// `threading.Event` does the same).
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Event, Process};
///
/// fn starter(go: Event) {
///     go.set();
/// }
///
/// multiproc::init();
/// let go = Event::new()?;
/// let child = Process::new(starter, go.clone()).start()?;
/// go.wait()?;
/// assert!(go.is_set());
/// child.join()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.Event")]
#[derive(Clone, Serialize, Deserialize)]
pub struct Event {
    shared: Shared<EventState>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}

impl Event {
    /// A new event, not set.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let event = multiproc::Event::new()?;
    /// assert!(!event.is_set());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Result<Self, Error> {
        Ok(Self { shared: Shared::new(EventState { word: AtomicU32::new(0), changed: Notify::new() })? })
    }

    /// Raises the flag and wakes every waiter.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let event = multiproc::Event::new()?;
    /// event.set();
    /// assert!(event.is_set());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn set(&self) {
        let state = &*self.shared;
        let mut word = state.word.load(Ordering::Relaxed);
        loop {
            if word & SET != 0 {
                return;
            }
            // Count one more setting (the count wraps, which waiters tolerate) and raise.
            let new = (word | SET).wrapping_add(2);
            match state.word.compare_exchange_weak(word, new, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => word = now,
            }
        }
        state.changed.notify_all();
    }

    /// Lowers the flag.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let event = multiproc::Event::new()?;
    /// event.set();
    /// event.clear();
    /// assert!(!event.is_set());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn clear(&self) {
        self.shared.word.fetch_and(!SET, Ordering::SeqCst);
    }

    /// Whether the flag is raised.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let event = multiproc::Event::new()?;
    /// assert!(!event.is_set());
    /// event.set();
    /// assert!(event.is_set());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_set(&self) -> bool {
        self.shared.word.load(Ordering::SeqCst) & SET != 0
    }

    fn wait_until(&self, deadline: Deadline, watch_others: bool) -> Result<bool, Abandoned> {
        let state = &*self.shared;
        let seen = state.word.load(Ordering::SeqCst);
        if seen & SET != 0 {
            return Ok(true);
        }
        let ready = || {
            let now = state.word.load(Ordering::SeqCst);
            (now & SET != 0 || now >> 1 != seen >> 1).then_some(())
        };
        let check = || {
            // Another thread (not multiproc's own) could set it through a reference to this
            // handle, which no holder count sees: then the wait waits.
            let nobody_else = watch_others && self.shared.sole_handle() && sys::alone_but_for_own_threads();
            if nobody_else { Err(Abandoned) } else { Ok(()) }
        };
        match state.changed.wait(deadline, SPIN, ready, check) {
            Ok(()) => Ok(true),
            Err(Interrupted::TimedOut) => Ok(false),
            Err(Interrupted::Check(abandoned)) => Err(abandoned),
        }
    }

    /// Waits until the flag is raised.
    ///
    /// # Errors
    ///
    /// [`Abandoned`] when nobody else could ever set it: no other live process holds the
    /// event, no handle to it is in a message, this process holds no other handle to it,
    /// and this process runs no thread but the waiting one (multiproc's own threads aside).
    /// Where another thread runs, it could set the event through a reference to this
    /// handle (an `Arc<Event>`, a scoped thread, a static), so the wait waits, as Python's
    /// does; a multithreaded program that wants `Abandoned` must not count on it.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let event = multiproc::Event::new()?;
    /// let setter = event.clone();
    /// std::thread::spawn(move || setter.set());
    /// event.wait()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait(&self) -> Result<(), Abandoned> {
        self.wait_until(Deadline::NEVER, true).map(|_| ())
    }

    /// Waits at most `timeout` for the flag; returns whether it was raised (Python's
    /// `wait(timeout)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # multiproc::init();
    /// let event = multiproc::Event::new()?;
    /// assert!(!event.wait_timeout(Duration::from_millis(10)));
    /// event.set();
    /// assert!(event.wait_timeout(Duration::from_millis(10)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Deadline::after(timeout), false).unwrap_or(false)
    }
}
