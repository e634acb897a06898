//! `Barrier`: a meeting point for a fixed number of parties.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{BarrierBreak, BrokenBarrier};
use crate::error::Error;
use crate::shm::{Deadline, Interrupted, Notify, RawGuard, RawMutex, SPIN, Shared, ShmObject, kind};

#[derive(crate::ShmSafe)]
#[repr(C)]
pub(crate) struct BarrierState {
    /// Guards the fields below; waiters read them without it to see a change.
    guard: RawMutex,
    parties: AtomicU32,
    /// Parties waiting in the current round.
    count: AtomicU32,
    /// Rounds completed.
    generation: AtomicU32,
    /// Times `reset` broke a round.
    resets: AtomicU32,
    /// 0, or the [`BarrierBreak`] code that broke the barrier.
    broken: AtomicU32,
    changed: Notify,
}

impl ShmObject for BarrierState {
    const KIND: u32 = kind::BARRIER;
}

/// A barrier for `parties` parties (Python's `multiprocessing.Barrier`): each party's
/// `wait` returns once all of them have called it, then the barrier is ready for the next
/// round.
///
/// A barrier *breaks* when a party's wait times out, on [`abort`](Barrier::abort), on
/// [`reset`](Barrier::reset) while parties wait, and when a process holding the barrier
/// dies without dropping it (killed, crashed): the waiting parties, and every later
/// `wait` until `reset`, get [`BrokenBarrier`], whose [`cause`](BrokenBarrier::cause)
/// says which. So a party killed before it arrived does not leave the others waiting
/// forever.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Barrier, Process};
///
/// fn party(barrier: Barrier) -> usize {
///     barrier.wait().unwrap()
/// }
///
/// multiproc::init();
/// let barrier = Barrier::new(3)?;
/// let a = Process::new(party, barrier.clone()).start()?;
/// let b = Process::new(party, barrier.clone()).start()?;
/// let mine = barrier.wait()?;
/// let mut indices = vec![mine, a.join()?, b.join()?];
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.Barrier")]
#[derive(Clone, Serialize, Deserialize)]
pub struct Barrier {
    shared: Shared<BarrierState>,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .finish()
    }
}

impl Barrier {
    /// A barrier for `parties` parties.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Panics
    ///
    /// When `parties` is 0 or above `u32::MAX`.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let barrier = multiproc::Barrier::new(1)?;
    /// assert_eq!(barrier.wait()?, 0); // one party: it passes at once
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(parties: usize) -> Result<Self, Error> {
        assert!(parties > 0, "a Barrier needs at least one party");
        let parties = u32::try_from(parties).expect("at most u32::MAX parties");
        let state = BarrierState {
            guard: RawMutex::new(),
            parties: AtomicU32::new(parties),
            count: AtomicU32::new(0),
            generation: AtomicU32::new(0),
            resets: AtomicU32::new(0),
            broken: AtomicU32::new(0),
            changed: Notify::new(),
        };
        Ok(Self { shared: Shared::new(state)? })
    }

    fn broken_error(&self) -> Option<BrokenBarrier> {
        BarrierBreak::from_code(self.shared.broken.load(Ordering::Acquire)).map(|cause| BrokenBarrier { cause })
    }

    /// Breaks the barrier for `cause`. Call under the guard.
    fn break_locked(&self, cause: BarrierBreak) {
        self.shared.broken.store(cause.code(), Ordering::Release);
        self.shared.count.store(0, Ordering::Relaxed);
    }

    fn wait_until(&self, deadline: Deadline) -> Result<usize, BrokenBarrier> {
        let state = &*self.shared;
        let (index, generation, resets) = {
            let _g = RawGuard::lock(&state.guard);
            if let Some(broken) = self.broken_error() {
                return Err(broken);
            }
            let index = state.count.load(Ordering::Relaxed);
            let generation = state.generation.load(Ordering::Relaxed);
            if index + 1 >= state.parties.load(Ordering::Relaxed) {
                state.count.store(0, Ordering::Relaxed);
                state.generation.store(generation.wrapping_add(1), Ordering::Release);
                drop(_g);
                state.changed.notify_all();
                return Ok(index as usize);
            }
            state.count.store(index + 1, Ordering::Relaxed);
            (index as usize, generation, state.resets.load(Ordering::Relaxed))
        };
        // Ok(true): the round completed; Ok(false): it was broken or reset.
        let outcome = |state: &BarrierState| {
            if state.generation.load(Ordering::Acquire) != generation {
                Some(true)
            } else if state.resets.load(Ordering::Acquire) != resets || state.broken.load(Ordering::Acquire) != 0 {
                Some(false)
            } else {
                None
            }
        };
        let waited = state.changed.wait(
            deadline,
            SPIN,
            || outcome(state),
            || {
                if self.shared.forget_dead_holders() > 0 { Err(BarrierBreak::PartyDied) } else { Ok(()) }
            },
        );
        let completed = match waited {
            Ok(completed) => completed,
            Err(interrupted) => {
                let cause = match interrupted {
                    Interrupted::TimedOut => BarrierBreak::TimedOut,
                    Interrupted::Check(cause) => cause,
                };
                let _g = RawGuard::lock(&state.guard);
                match outcome(state) {
                    Some(completed) => completed,
                    None => {
                        self.break_locked(cause);
                        drop(_g);
                        state.changed.notify_all();
                        false
                    }
                }
            }
        };
        if completed {
            return Ok(index);
        }
        let cause = BarrierBreak::from_code(state.broken.load(Ordering::Acquire)).unwrap_or(BarrierBreak::Reset);
        Err(BrokenBarrier { cause })
    }

    /// Waits until all parties have called `wait`; returns this party's arrival index,
    /// `0` for the first to arrive up to `parties() - 1` for the last.
    ///
    /// # Errors
    ///
    /// [`BrokenBarrier`] when the barrier is or becomes broken while waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let barrier = multiproc::Barrier::new(2)?;
    /// let other = barrier.clone();
    /// let t = std::thread::spawn(move || other.wait().unwrap());
    /// let mine = barrier.wait()?;
    /// let mut both = [mine, t.join().unwrap()];
    /// both.sort();
    /// assert_eq!(both, [0, 1]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait(&self) -> Result<usize, BrokenBarrier> {
        self.wait_until(Deadline::NEVER)
    }

    /// Like [`Barrier::wait`], waiting at most `timeout`. If it runs out, the barrier
    /// breaks for every party (as in Python).
    ///
    /// # Errors
    ///
    /// [`BrokenBarrier`] with cause [`BarrierBreak::TimedOut`] when the timeout ran out,
    /// or another cause when the barrier broke otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{Barrier, BarrierBreak};
    /// # multiproc::init();
    /// let barrier = Barrier::new(2)?;
    /// let alone = barrier.wait_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(alone.cause(), BarrierBreak::TimedOut);
    /// assert!(barrier.is_broken());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BrokenBarrier> {
        self.wait_until(Deadline::after(timeout))
    }

    /// Breaks the barrier: waiting parties and later waits get [`BrokenBarrier`] until
    /// [`Barrier::reset`].
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let barrier = multiproc::Barrier::new(2)?;
    /// barrier.abort();
    /// assert!(barrier.wait().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn abort(&self) {
        {
            let _g = RawGuard::lock(&self.shared.guard);
            self.break_locked(BarrierBreak::Aborted);
        }
        self.shared.changed.notify_all();
    }

    /// Returns the barrier to its empty, unbroken state; parties waiting now get
    /// [`BrokenBarrier`] (cause [`BarrierBreak::Reset`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let barrier = multiproc::Barrier::new(1)?;
    /// barrier.abort();
    /// barrier.reset();
    /// assert_eq!(barrier.wait()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn reset(&self) {
        let state = &*self.shared;
        {
            let _g = RawGuard::lock(&state.guard);
            if state.count.load(Ordering::Relaxed) > 0 {
                state.resets.fetch_add(1, Ordering::Release);
            }
            state.count.store(0, Ordering::Relaxed);
            state.broken.store(0, Ordering::Release);
        }
        state.changed.notify_all();
    }

    /// Whether the barrier is broken.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let barrier = multiproc::Barrier::new(2)?;
    /// assert!(!barrier.is_broken());
    /// barrier.abort();
    /// assert!(barrier.is_broken());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_broken(&self) -> bool {
        self.shared.broken.load(Ordering::Acquire) != 0
    }

    /// The number of parties.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// assert_eq!(multiproc::Barrier::new(3)?.parties(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn parties(&self) -> usize {
        self.shared.parties.load(Ordering::Relaxed) as usize
    }

    /// The number of parties waiting now (0 when broken).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let barrier = multiproc::Barrier::new(2)?;
    /// assert_eq!(barrier.n_waiting(), 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn n_waiting(&self) -> usize {
        if self.is_broken() { 0 } else { self.shared.count.load(Ordering::Relaxed) as usize }
    }
}
