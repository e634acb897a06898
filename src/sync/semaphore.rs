//! `Semaphore` and `BoundedSemaphore`: counters of permits shared by the processes of a
//! family, which give back the permits of holders that died.
//!
//! Besides the count, the semaphore keeps in shared memory how many permits each process
//! holds, so that a waiter can take back the permits of a holder that was killed. Python
//! lets any process release a semaphore, including one that never acquired it (a
//! semaphore used as a counter of items, or to hand a permit over); the accounting follows
//! three rules so that such releases never make a dead process's permits come back twice:
//!
//! * an acquire takes a permit that a non-holder released (an *extra* permit) before one
//!   of the initial pool, and an extra permit is not held by anybody: a consumer that dies
//!   after taking items from a counter gives nothing back;
//! * a release by a process that holds permits gives back one of its own;
//! * a release by a process that holds none gives back one held by another process (a
//!   handed-over permit) if there is such a one, else it makes an extra permit.

#[path = "semaphore_async.rs"]
mod semaphore_async;
pub use semaphore_async::SemaphoreAcquire;

use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{AcquireTimeoutError, ReleaseError, TryAcquireError};
use crate::error::Error;
use crate::shm::{
    Cells, ChangeRecord, Deadline, GUARD_GRACE, Interrupted, RawGuard, RawMutex, SPIN, Shared, ShmObject, TakenIn,
    TimedOut, kind, spin_for,
};
use crate::sys;

/// At most this many processes are tracked as holders at once; further holders still get
/// permits, which just cannot be recovered if they die.
const MAX_TRACKED: u32 = 256;

/// The holder table has at least this many slots, whatever the value, so that up to this
/// many processes taking turns at a semaphore of fewer permits (a `Semaphore(1)` as a
/// cross-process lock, a `Semaphore(4)` bounding a pool's workers) each keep a slot of
/// their own: their acquires and releases go the fast way, and a slot changes owner (the
/// generation moves, see [`word::GENERATION`]) only with a process starting or dying (one
/// new to the semaphore that finds no free slot takes another's idle one, which sends that
/// one to take the next, up to a turn of the table; a dead holder's slot emptied). With
/// one slot per permit, a process without a slot took another live one's idle slot at
/// nearly every acquire (review45 L1). The price is memory: 24 bytes a slot, so a
/// semaphore of up to 64 permits is a 2 KiB block of the heap (it was 512 bytes for a
/// `Semaphore(1)`).
const MIN_SLOTS: u32 = 64;

/// A guard's holder waiting for a fast change to let the word go spins this many looks,
/// then yields at each ...
const SPIN_LOOKS: u32 = 100;
/// ... and past this many sleeps a millisecond at each (a changer stopped, `SIGSTOP`, in
/// its few instructions costs no processor) ...
const YIELD_LOOKS: u32 = 1000;
/// ... and asks every this many looks whether the changer's process died.
const SETTLE_EVERY: u32 = 256;

/// A guard's holder's looks at the word while a fast change holds it ([`Core::claim`]).
/// They count the looks at one same word: a stopped or dead changer's word does not move
/// (but by its own settle), while a stream of fast changes that come and go moves it at
/// every change (review43 M1: counted over the whole wait, a contended semaphore's guard
/// holder slept a millisecond per look after a few milliseconds, holding the guard).
#[derive(Default)]
struct Looks {
    /// Looks at `word` in a row.
    count: u32,
    /// The word last looked at.
    word: u64,
}

/// How a guard's holder waits for its next look at the word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pause {
    Spin,
    Yield,
    /// A millisecond: the changer seems stopped (`SIGSTOP`) or dead.
    Sleep,
}

impl Looks {
    /// A look at the word `w` (not claimed for the guard): `None` if free (to claim), else
    /// whether to ask if the changer's process died (the check reads /proc, so not at every
    /// look) and how to wait for the next look.
    #[inline]
    fn look(&mut self, w: u64) -> Option<(bool, Pause)> {
        if w != self.word {
            // The change seen last ended (the word free, or another's claim), or recorded.
            self.word = w;
            self.count = 0;
        }
        if w & word::CLAIM == 0 {
            return None;
        }
        self.count = self.count.wrapping_add(1);
        let pause = if self.count > YIELD_LOOKS {
            Pause::Sleep
        } else if self.count > SPIN_LOOKS {
            Pause::Yield
        } else {
            Pause::Spin
        };
        Some((self.count.is_multiple_of(SETTLE_EVERY), pause))
    }
}

impl Pause {
    fn wait(self) {
        match self {
            Pause::Spin => std::hint::spin_loop(),
            Pause::Yield => std::thread::yield_now(),
            Pause::Sleep => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// This process, as the holder table knows it: a unit test plays other processes.
#[inline(always)]
fn me() -> sys::ProcId {
    #[cfg(test)]
    if let Some(other) = tests::PLAYING.get() {
        return other;
    }
    sys::me()
}

/// Runs a unit test's moves of other processes (a settler's claim, a slot given to
/// another) between a fast change's claim of the word and its first look under it.
#[inline(always)]
fn after_fast_claim() {
    #[cfg(test)]
    tests::AFTER_FAST_CLAIM.with(|moves| {
        if let Some(moves) = moves.borrow_mut().as_mut() {
            moves();
        }
    });
}

/// [`SemState::changed`]: the sleepers waiting for a permit. Its one rule (sem37): every
/// sleeper announced on it re-tests under the guard ([`Core::take`]), so that a release asks
/// for sleepers under the guard after its change, without a fence, and wakes them after
/// unlocking; a sleeper that re-tested without the guard could miss the permit and be
/// missed. Held by the type (review38 L2: it was held by a comment): the only ways to sleep
/// on it are [`Changed::wait_to_take`] and [`Changed::poll_to_take`], whose re-tests are
/// `Core::take`, and [`Changed::sleepers_seen`] asks for the guard's [`Hold`].
mod changed {
    use std::convert::Infallible;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use super::{Core, Hold, Permit};
    use crate::shm::{Deadline, GUARD_GRACE, Interrupted, Notify, Waiting, poll_on};

    #[derive(crate::ShmSafe)]
    #[repr(C)]
    pub(super) struct Changed {
        notify: Notify,
    }

    impl Changed {
        pub(super) fn new() -> Self {
            Self { notify: Notify::new() }
        }

        /// Sleeps until a re-test under the guard takes a permit of `core`'s (the wait's
        /// first look was the caller's spin); at each sleep slice's end, the permits of dead
        /// holders are taken back.
        pub(super) fn wait_to_take(
            &self,
            core: &Core,
            deadline: Deadline,
        ) -> Result<(Permit, bool), Interrupted<Infallible>> {
            self.of(core);
            self.notify.wait(
                deadline,
                Duration::ZERO,
                || core.take(deadline),
                || {
                    core.recover_dead(deadline);
                    Ok(())
                },
            )
        }

        /// One poll of a future waiting for a permit of `core`'s. The first attempt looks as
        /// a blocking acquire's spin does (the fast path when it can), the one after arming
        /// under the guard: a sleeper's re-test. The check, due as in a blocking acquire,
        /// takes back the permits of dead holders.
        pub(super) fn poll_to_take(
            &self,
            core: &Core,
            waiting: &mut Waiting,
            cx: &Context<'_>,
        ) -> Poll<(Permit, bool)> {
            self.of(core);
            let mut armed = false;
            // A poll never blocks on a guard's holder past the grace: a guard it could not
            // have is a permit not taken yet, looked for again at the next wake-up or check.
            let deadline = Deadline::after(GUARD_GRACE);
            poll_on(waiting, &self.notify, cx, |check| {
                if check {
                    core.recover_dead(deadline);
                }
                let taken = if armed { core.take(deadline) } else { core.try_take(deadline) };
                armed = true;
                taken
            })
        }

        /// A future that leaves: a wake-up it was given and did not use goes on to another
        /// sleeper if a permit of `core`'s is free.
        pub(super) fn pass_on(&self, core: &Core, waiting: &mut Waiting) {
            self.of(core);
            waiting.pass_on(&self.notify, || core.value() > 0);
        }

        /// Whether a sleeper is announced, asked after a change with the guard held (`hold`,
        /// its proof, of this semaphore's): [`Changed::wake`] then, once the guard is let go.
        #[inline]
        pub(super) fn sleepers_seen(&self, hold: &Hold<'_>) -> bool {
            self.of(hold.core);
            self.notify.sleepers_seen_under_lock()
        }

        /// Checks (in debug builds) that `core` is the semaphore whose `Changed` this is: a
        /// re-test or a hold of another semaphore's would let a sleeper be missed (review51
        /// L5).
        #[inline(always)]
        fn of(&self, core: &Core) {
            debug_assert!(std::ptr::eq(self, &core.shared.changed), "another semaphore's Core");
        }

        /// Wakes up to `n` sleepers that [`Changed::sleepers_seen`] saw.
        pub(super) fn wake(&self, n: u32) {
            self.notify.wake(n);
        }

        /// Wakes up to `n` sleepers, fenced: for the notifiers that do not ask
        /// [`Changed::sleepers_seen`] (a settle, a roll-back, a timed-out waiter's hand-on).
        pub(super) fn notify(&self, n: u32) {
            self.notify.notify(n);
        }

        /// Wakes every sleeper, fenced (the recovery of dead holders' permits).
        pub(super) fn notify_all(&self) {
            self.notify.notify_all();
        }

        /// The `Notify` itself, for a unit test that plays a sleeper.
        #[cfg(test)]
        pub(super) fn inner(&self) -> &Notify {
            &self.notify
        }
    }
}
use changed::Changed;

#[derive(crate::ShmSafe)]
#[repr(C)]
pub(crate) struct SemState {
    /// Guards every field below but `word`, with `word` claimed for it ([`Core::lock`]).
    guard: RawMutex,
    /// The value, and who is changing the semaphore now (see [`word`]).
    word: AtomicU64,
    /// The largest value of a `BoundedSemaphore`; 0 for a `Semaphore`.
    bound: AtomicU32,
    /// Permits in the value that a non-holder released (held by nobody once taken).
    extra: AtomicU32,
    /// Permits in the value taken back from dead holders (their next taker is told).
    recovered: AtomicU32,
    /// Held permits whose holder found no free slot in the table.
    untracked: AtomicU32,
    /// Length of the holder table in the tail.
    slots: AtomicU32,
    /// Where the next search for an idle slot to take from another process starts, past
    /// the last one taken (any value is a valid start: no undo needed).
    take_idle_at: AtomicU32,
    /// How many slots, from the front of the table, were ever taken (a high-water mark,
    /// never lowered): slots are taken from the front, so every slot past it is free, and
    /// the searches under the guard stop at it (review51 M1: a producer's release at a
    /// counter semaphore looked at all 64 slots twice, holding the guard, to find no
    /// holder). Raised before [`Core::hold`] writes a slot past it; a changer killed
    /// between the two leaves it one too high, which costs a look, so it needs no undo.
    used: AtomicU32,
    changed: Changed,
    /// What the change under way is about to overwrite (see [`undo`]).
    undo: ChangeRecord<{ undo::WORDS }>,
}

/// The bits of [`SemState::word`]: the value, and a *claim* on it. Whoever changes the value
/// or a holder slot's count claims the word first (a CAS from no claim), writes, and ends
/// with one store of the word: its new value, the claim cleared. The guarded path claims it
/// for the guard's holder ([`Core::lock`]); the fast path (an acquire or release of a
/// process's own permit, in its own slot: [`Core::fast_take`], [`Core::fast_give`]) claims it
/// for that slot and takes no guard, two locked instructions per pair, as a lock.
///
/// A fast change killed while it holds the word is settled from the word and its slot
/// alone ([`Core::settle`]): its slot's count carries a parity bit ([`HELD_PARITY`]) that the
/// change's slot store flips, and the change records the parity it found ([`RECORDED`],
/// [`PARITY`]) before that store. Parity flipped: the slot store was made, the value moves
/// too; else the value stays. Either way the process has its permit or not, never half.
mod word {
    /// Permits free.
    pub(super) const VALUE: u64 = 0xFFFF_FFFF;
    pub(super) const CLAIM_SHIFT: u32 = 32;
    /// Who holds the word: 0 nobody; a holder slot's index plus one (its process's fast
    /// change); [`GUARD`] (the guard's holder).
    pub(super) const CLAIM: u64 = 0x1FF << CLAIM_SHIFT;
    pub(super) const GUARD: u64 = 0x1FF;
    /// A slot's claim is a release's (else an acquire's).
    pub(super) const RELEASE: u64 = 1 << 41;
    /// A slot's claim has recorded the slot's parity as it found it, in [`PARITY`]
    /// (else the slot has not been written).
    pub(super) const RECORDED: u64 = 1 << 42;
    pub(super) const PARITY: u64 = 1 << 43;
    /// Sleepers were announced on `changed` when the guard's holder last let the word go: a
    /// release takes the guarded way, which wakes them (see [`super::Core::give`]).
    pub(super) const SLEEPERS: u64 = 1 << 44;
    /// Counts the guarded changes of a slot's owner from a process (modulo 2^19; the
    /// guarded path is the only writer of owners): a fast change that found its slot its
    /// own before its claim knows by its CAS that no such change came between. Bumped by
    /// them alone, so that it wraps only after 2^19 owner changes while a fast changer is
    /// stalled between its load and its CAS, not after 2^19 guarded changes of any kind
    /// (half a second of contention; review43 L1). Owner changes are rare: a process keeps
    /// its slot, and there are [`super::MIN_SLOTS`] at least, so they come with a process
    /// new to the semaphore finding no free slot, a dead holder's recovery, or more
    /// processes taking turns than there are slots (review45 L1).
    pub(super) const GENERATION: u64 = 1 << 45;

    /// `word` claimed for slot `i`'s change.
    pub(super) fn claimed_for(word: u64, i: usize, release: bool) -> u64 {
        word | ((i as u64 + 1) << CLAIM_SHIFT) | if release { RELEASE } else { 0 }
    }
}

/// The count of permits in a slot's `held`; the bit above it is the slot's parity.
const HELD_COUNT: u64 = 0xFFFF_FFFF;
/// Flipped by every fast change's store of a slot's count (see [`word`]).
const HELD_PARITY: u64 = 1 << 32;

/// The fields a guarded change may write, as they were before it (the words of
/// [`SemState::undo`]): the next holder of the guard puts them back if the changer died
/// before it let the word go (the value, in the word, moves only with that store), so that
/// a process killed at any point of an acquire, a release or a recovery neither loses a
/// permit (a waiter would wait for ever) nor makes one twice (a bounded semaphore past its
/// bound).
mod undo {
    /// The holder slot the change may write, plus one (0: none).
    pub(super) const SLOT: usize = 0;
    pub(super) const EXTRA: usize = 1;
    pub(super) const RECOVERED: usize = 2;
    pub(super) const UNTRACKED: usize = 3;
    pub(super) const SLOT_PID: usize = 4;
    pub(super) const SLOT_HELD: usize = 5;
    pub(super) const SLOT_START: usize = 6;
    pub(super) const WORDS: usize = 7;
}

/// How many permits a process holds.
#[derive(crate::ShmSafe)]
#[repr(C)]
struct HolderSlot {
    pid: AtomicU32,
    /// The count ([`HELD_COUNT`]) and the parity ([`HELD_PARITY`]).
    held: AtomicU64,
    start: AtomicU64,
}

impl HolderSlot {
    /// Permits held.
    #[inline]
    fn count(&self) -> u32 {
        (self.held.load(Ordering::Relaxed) & HELD_COUNT) as u32
    }

    /// Sets the count, keeping the parity: a guarded change (the word claimed for the guard).
    #[inline]
    fn set_count(&self, n: u32) {
        let held = self.held.load(Ordering::Relaxed);
        self.held.store((held & HELD_PARITY) | u64::from(n), Ordering::Relaxed);
    }

    #[inline]
    fn is(&self, me: sys::ProcId) -> bool {
        self.pid.load(Ordering::Relaxed) == me.pid && self.start.load(Ordering::Relaxed) == me.start
    }
}

impl ShmObject for SemState {
    const KIND: u32 = kind::SEMAPHORE;
}

/// What kind of permit a guard holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Permit {
    /// One of the holder's own, counted in its slot (or in `untracked`).
    Held,
    /// An extra permit, held by nobody.
    Extra,
}

/// The shared part of both semaphore types.
#[derive(Clone, Serialize, Deserialize)]
struct Core {
    shared: Shared<SemState>,
    /// Where this process's holder slot was last found (see [`Core::my_slot`]).
    #[serde(skip)]
    mine: SlotHint,
}

/// The index, plus one (0: none yet), of the holder slot this process found its own last
/// time: a hint, checked against the slot's owner words every time it is used, so that a
/// slot taken by another process since (its permits all given back) or a copy of the handle
/// in a fork child (another process) falls back to the search. Saves the search (a walk
/// over the slots in use, up to 256) on every acquire and release.
#[derive(Default)]
struct SlotHint(AtomicU32);

impl Clone for SlotHint {
    fn clone(&self) -> Self {
        Self(AtomicU32::new(self.0.load(Ordering::Relaxed)))
    }
}

/// The guard, taken, with the word claimed for it ([`Core::lock`]). Dropping it lets the
/// word go with [`Hold::value`] (the change's one store of the value), then commits the
/// change's record and frees the guard.
struct Hold<'a> {
    core: &'a Core,
    /// The word as claimed.
    word: u64,
    /// The value the word is let go with.
    value: u32,
    /// A panic was unwinding already when the guard was taken (a permit's guard dropped in
    /// the unwinding): a panic inside the hold is told from it.
    unwinding: bool,
    /// A slot may have changed owner: the word is let go with the next generation.
    new_owner: bool,
    _guard: RawGuard<'a>,
}

impl Drop for Hold<'_> {
    #[inline]
    fn drop(&mut self) {
        let state = &*self.core.shared;
        if std::thread::panicking() && !self.unwinding {
            // A panic inside the change, which may be half made: the next holder finds the
            // word still claimed for the guard and undoes it, as a dead holder's.
            return;
        }
        // Every sleeper announced re-tests under the guard ([`Core::take`]), so the count
        // read here, under it, misses none (sem37); the mark makes a fast release of the
        // permit it waits for take the guarded way, which wakes it.
        let sleepers = if state.changed.sleepers_seen(self) { word::SLEEPERS } else { 0 };
        let mut generation = self.word & !(word::GENERATION - 1);
        if self.new_owner {
            generation = generation.wrapping_add(word::GENERATION);
        }
        state.word.store(generation | sleepers | u64::from(self.value), Ordering::Release);
        // After the word: a changer killed between the two left its change whole.
        crate::shm::crash::crash_point!("semaphore.guard.released");
        state.undo.commit();
    }
}

impl Core {
    fn new(value: u32, bound: u32) -> Result<Self, Error> {
        let slots = value.clamp(MIN_SLOTS, MAX_TRACKED);
        let state = SemState {
            guard: RawMutex::new(),
            word: AtomicU64::new(u64::from(value)),
            bound: AtomicU32::new(bound),
            extra: AtomicU32::new(0),
            recovered: AtomicU32::new(0),
            untracked: AtomicU32::new(0),
            slots: AtomicU32::new(slots),
            take_idle_at: AtomicU32::new(0),
            used: AtomicU32::new(0),
            changed: Changed::new(),
            undo: ChangeRecord::new(),
        };
        let shared = Shared::with_tail(state, slots as usize * std::mem::size_of::<HolderSlot>())?;
        Ok(Self { shared, mine: SlotHint::default() })
    }

    /// The holder table.
    #[inline]
    fn slots(&self) -> Cells<'_, HolderSlot> {
        self.shared.tail(self.shared.slots.load(Ordering::Relaxed) as usize)
    }

    fn slot(&self, i: usize) -> &HolderSlot {
        self.slots().at(i)
    }

    /// How many slots of `slots`, from the front, were ever taken ([`SemState::used`]): the
    /// others are free. Call under the guard.
    #[inline]
    fn used(&self, slots: &Cells<'_, HolderSlot>) -> usize {
        (self.shared.used.load(Ordering::Relaxed) as usize).min(slots.len())
    }

    /// The index of this process's slot in `slots`, if it has one. Call under the guard.
    #[inline]
    fn my_slot(&self, slots: &Cells<'_, HolderSlot>, me: sys::ProcId) -> Option<usize> {
        self.hinted_slot(slots, me).or_else(|| self.find_my_slot(slots, me))
    }

    /// The slot the hint names, if it is this process's.
    #[inline]
    fn hinted_slot(&self, slots: &Cells<'_, HolderSlot>, me: sys::ProcId) -> Option<usize> {
        let hint = self.mine.0.load(Ordering::Relaxed) as usize;
        hint.checked_sub(1).filter(|&i| i < slots.len() && slots.at(i).is(me))
    }

    /// [`Core::my_slot`] without a hint, or with a stale one: the search.
    #[cold]
    fn find_my_slot(&self, slots: &Cells<'_, HolderSlot>, me: sys::ProcId) -> Option<usize> {
        let found = (0..self.used(slots)).find(|&i| slots.at(i).is(me));
        if let Some(i) = found {
            self.mine.0.store(i as u32 + 1, Ordering::Relaxed);
        }
        found
    }

    /// The guard, taken, and the word claimed for it; a change its last holder died in the
    /// middle of is undone first, and so is a fast change of a process that died holding
    /// the word. For the calls that cannot time out (a release, a drop's give-back).
    #[inline]
    fn lock(&self) -> Hold<'_> {
        self.lock_until(Deadline::NEVER).expect("an endless wait does not time out")
    }

    /// [`Core::lock`], waiting at most until `deadline` for the guard and for a fast change
    /// in flight: `None` when a live process (stopped, say: `SIGSTOP`, a debugger) kept
    /// either until then. Such a call changed nothing (it never claimed the word), so it
    /// just lets the guard go: a timed call ends by its deadline (guard45). Always inlined:
    /// called, the `Option<Hold>` it returned through memory cost a store-forwarding stall
    /// at each guarded change (`lock_uncontended semaphore_counter` 110 -> 146 ns).
    #[inline(always)]
    fn lock_until(&self, deadline: Deadline) -> Option<Hold<'_>> {
        let guard = RawGuard::lock_until(&self.shared.guard, deadline)?;
        let (word, stale) = self.claim(deadline)?;
        crate::shm::crash::crash_point!("semaphore.guard.claimed");
        // An undo may put a slot's owner back.
        let recovering = stale || self.shared.undo.unfinished().is_some();
        if recovering {
            self.recover_guarded(stale, word);
        }
        let unwinding = std::thread::panicking();
        Some(Hold {
            core: self,
            word,
            value: (word & word::VALUE) as u32,
            unwinding,
            new_owner: recovering,
            _guard: guard,
        })
    }

    /// Claims the word for the guard's holder (the caller): the word as claimed, and
    /// whether it was claimed for the guard already (by a holder that died holding it).
    /// Waits for a fast change in flight to end, or settles it if its process died; `None`
    /// when the change still held the word at `deadline` (looked at once the spin is over:
    /// a clock read per yield or sleep, none per spin) and its process is alive.
    fn claim(&self, deadline: Deadline) -> Option<(u64, bool)> {
        let state = &*self.shared;
        let mut looks = Looks::default();
        // A dead changer is settled once before giving up, however short the wait
        // (review66 M1; as `RawMutex::lock_slow` takes a dead holder's lock over).
        let mut settled_at_deadline = false;
        loop {
            let w = state.word.load(Ordering::Acquire);
            if (w & word::CLAIM) >> word::CLAIM_SHIFT == word::GUARD {
                return Some((w, true));
            }
            match looks.look(w) {
                None => {
                    let claimed = w | (word::GUARD << word::CLAIM_SHIFT);
                    if state.word.compare_exchange_weak(w, claimed, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                        return Some((claimed, false));
                    }
                }
                Some((settle, pause)) => {
                    if settle {
                        self.settle(w);
                    }
                    if pause != Pause::Spin && deadline.passed() {
                        if settled_at_deadline {
                            return None;
                        }
                        settled_at_deadline = true;
                        self.settle(w);
                        continue;
                    }
                    pause.wait();
                }
            }
        }
    }

    /// Settles the fast change that holds `word` if its process died: finished if its
    /// slot store was made, else undone (see [`word`]). A settler killed here leaves the
    /// word as it was, or settled: one CAS.
    #[cold]
    fn settle(&self, w: u64) {
        let state = &*self.shared;
        let i = ((w & word::CLAIM) >> word::CLAIM_SHIFT) as usize - 1;
        let slot = self.slot(i);
        // The slot's owner is the changer: a slot changes owner only under the guard's claim.
        if sys::process_alive(slot.pid.load(Ordering::Relaxed), slot.start.load(Ordering::Relaxed)) {
            return;
        }
        // After the death: the changer's last store is in. Acquire: a slot store seen comes
        // with the record made before it (a `w` older than the record fails the CAS below).
        let held = slot.held.load(Ordering::Acquire);
        let found = if w & word::PARITY != 0 { HELD_PARITY } else { 0 };
        let written = w & word::RECORDED != 0 && held & HELD_PARITY != found;
        let value = match (written, w & word::RELEASE != 0) {
            (false, _) => w & word::VALUE,
            (true, false) => (w & word::VALUE) - 1,
            (true, true) => (w & word::VALUE) + 1,
        };
        let settled = (w & !(word::VALUE | word::CLAIM | word::RELEASE | word::RECORDED | word::PARITY)) | value;
        if state.word.compare_exchange(w, settled, Ordering::AcqRel, Ordering::Relaxed).is_ok() && value > 0 {
            // A permit the dead process was woken for, or gave back: a sleeper for it.
            state.changed.notify(1);
        }
    }

    /// After taking the guard: a holder died holding it. Its change is undone if it still
    /// held the word (`stale`), or committed if it had let the word go (the change is
    /// whole then: the word's store is its last but the commit).
    #[cold]
    fn recover_guarded(&self, stale: bool, word: u64) {
        let state = &*self.shared;
        match state.undo.unfinished() {
            Some(words) if stale => self.undo(words),
            Some(_) => state.undo.commit(),
            None => {}
        }
        // A permit the dead holder may have been woken for: a sleeper for it.
        if stale && word & word::VALUE > 0 {
            state.changed.notify(1);
        }
    }

    /// Puts back what a change its changer died in the middle of overwrote (idempotent: a
    /// process killed here too leaves it to the next holder).
    #[cold]
    fn undo(&self, words: [u64; undo::WORDS]) {
        let state = &*self.shared;
        state.extra.store(words[undo::EXTRA] as u32, Ordering::Relaxed);
        state.recovered.store(words[undo::RECOVERED] as u32, Ordering::Relaxed);
        state.untracked.store(words[undo::UNTRACKED] as u32, Ordering::Relaxed);
        crate::shm::crash::crash_point!("semaphore.undo.restored");
        if let Some(i) = (words[undo::SLOT] as usize).checked_sub(1) {
            let slot = self.slot(i);
            slot.pid.store(words[undo::SLOT_PID] as u32, Ordering::Relaxed);
            slot.held.store(words[undo::SLOT_HELD], Ordering::Relaxed);
            slot.start.store(words[undo::SLOT_START], Ordering::Relaxed);
        }
        state.undo.commit();
    }

    /// Records what a change about to write the counts and `slot` (of `slots`) overwrites.
    /// Call under the guard, before the change's first store; dropping the [`Hold`]
    /// commits.
    #[inline]
    fn begin(&self, slots: &Cells<'_, HolderSlot>, slot: Option<usize>) {
        let state = &*self.shared;
        let mut words = [0; undo::WORDS];
        words[undo::EXTRA] = u64::from(state.extra.load(Ordering::Relaxed));
        words[undo::RECOVERED] = u64::from(state.recovered.load(Ordering::Relaxed));
        words[undo::UNTRACKED] = u64::from(state.untracked.load(Ordering::Relaxed));
        if let Some(i) = slot {
            let s = slots.at(i);
            words[undo::SLOT] = i as u64 + 1;
            words[undo::SLOT_PID] = u64::from(s.pid.load(Ordering::Relaxed));
            words[undo::SLOT_HELD] = s.held.load(Ordering::Relaxed);
            words[undo::SLOT_START] = s.start.load(Ordering::Relaxed);
        }
        state.undo.begin(words);
    }

    /// The slot that [`Core::hold`] will count a permit of this process in: its own, else a
    /// free one, else one left by a process that holds nothing now (`None`: the table is
    /// full, the permit is untracked). Call under the guard.
    #[inline]
    fn hold_slot(&self, slots: &Cells<'_, HolderSlot>, me: sys::ProcId) -> Option<usize> {
        self.my_slot(slots, me).or_else(|| {
            let (n, used) = (slots.len(), self.used(slots));
            // A free slot first: an idle one taken from a live process sends it to take
            // another's at its next acquire, an owner change each time. From the front (one a
            // recovery emptied, else the first never taken), so that the slots in use stay
            // few (see `SemState::used`).
            let free = (0..used).find(|&i| slots.at(i).pid.load(Ordering::Relaxed) == 0);
            free.or_else(|| (used < n).then_some(used)).or_else(|| {
                // Past the last idle slot taken: the chain of processes sent to take another's
                // ends within a turn of the table, at the slot of a process that is gone (each
                // from its own place, two could take one slot from each other for ever).
                let at = &self.shared.take_idle_at;
                let first = at.load(Ordering::Relaxed) as usize % n;
                let i = (first..n).chain(0..first).find(|&i| slots.at(i).count() == 0)?;
                at.store(i as u32 + 1, Ordering::Relaxed);
                Some(i)
            })
        })
    }

    /// Counts one more permit held by this process in `slot` (from [`Core::hold_slot`]).
    /// Call under the guard (whose holder alone writes the counts: plain loads and stores).
    /// Whether the slot changed owner from another process ([`Hold::new_owner`]; a free
    /// slot was nobody's, so no fast changer can have found it its own).
    #[inline]
    fn hold(&self, slots: &Cells<'_, HolderSlot>, me: sys::ProcId, slot: Option<usize>) -> bool {
        let Some(i) = slot else {
            let untracked = &self.shared.untracked;
            untracked.store(untracked.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            return false;
        };
        let slot = slots.at(i);
        if slot.is(me) {
            slot.set_count(slot.count() + 1);
            return false;
        }
        let used = &self.shared.used;
        if i >= used.load(Ordering::Relaxed) as usize {
            used.store(i as u32 + 1, Ordering::Relaxed);
        }
        let owned = slot.pid.load(Ordering::Relaxed) != 0;
        slot.pid.store(me.pid, Ordering::Relaxed);
        slot.start.store(me.start, Ordering::Relaxed);
        slot.set_count(1);
        // Its release may go the fast way at once.
        self.mine.0.store(i as u32 + 1, Ordering::Relaxed);
        owned
    }

    /// Takes a permit if there is one; `Some(owner_died)` on success. A look without the
    /// guard first, then the fast way if it may: not for a sleeper's re-test (see
    /// [`Core::take`]). The guarded way waits for the guard until `deadline` at most.
    #[inline]
    fn try_take(&self, deadline: Deadline) -> Option<(Permit, bool)> {
        let w = self.shared.word.load(Ordering::Acquire);
        if w & word::VALUE == 0 {
            return None;
        }
        if self.fast_take(w) {
            return Some((Permit::Held, false));
        }
        self.take(deadline)
    }

    /// Claims the word `w` (seen free) for this process's own slot, found by the hint: the
    /// slot and the claimed word, or `None` (the guarded way, then).
    #[inline]
    fn claim_fast(&self, w: u64, release: bool) -> Option<(&HolderSlot, u64)> {
        if w & word::CLAIM != 0 {
            return None;
        }
        let me = me();
        let slots = self.slots();
        let i = self.hinted_slot(&slots, me)?;
        let claimed = word::claimed_for(w, i, release);
        // Acquire: the guarded changes' counts, seen whole. Success means no guarded
        // change of a slot's owner came since `w` (its generation), so the slot is still
        // this process's (a settler takes its owner for the changer) ...
        self.shared.word.compare_exchange(w, claimed, Ordering::Acquire, Ordering::Relaxed).ok()?;
        after_fast_claim();
        let slot = slots.at(i);
        // ... unless 2^19 of them came while this process was stalled (the generation
        // wrapped): looked at again, so that a permit is never counted in another's slot.
        if !slot.is(me) {
            self.back_out(w, claimed);
            return None;
        }
        Some((slot, claimed))
    }

    /// Lets the word claimed (`claimed`, from `w`) by a fast change that wrote nothing go
    /// unchanged. A CAS, not a store: after a wrapped generation the slot's new owner may
    /// be dead, and a settler that took it for this changer may have settled the word and
    /// claimed it for the guard already, a claim a store would wipe (review43 L1).
    #[cold]
    fn back_out(&self, w: u64, claimed: u64) {
        let _ = self.shared.word.compare_exchange(claimed, w, Ordering::Release, Ordering::Relaxed);
    }

    /// Records in the claimed word the parity the fast change finds its slot's count with
    /// (see [`word`]), before it writes the count.
    #[inline]
    fn record_fast(&self, claimed: u64, held: u64) {
        let parity = if held & HELD_PARITY != 0 { word::PARITY } else { 0 };
        self.shared.word.store(claimed | word::RECORDED | parity, Ordering::Relaxed);
    }

    /// The fast change's slot store: the count `count`, the parity flipped. Release: a
    /// settler that sees it sees the record of [`Core::record_fast`].
    #[inline]
    fn count_fast(slot: &HolderSlot, held: u64, count: u64) {
        slot.held.store(((held ^ HELD_PARITY) & HELD_PARITY) | count, Ordering::Release);
    }

    /// An acquire without the guard: the word free (`w`), this process's slot known, and no
    /// extra or recovered permit to take first. Whether it took a permit (one of its own).
    #[inline]
    fn fast_take(&self, w: u64) -> bool {
        let state = &*self.shared;
        let Some((slot, claimed)) = self.claim_fast(w, false) else {
            return false;
        };
        // Written only with the word claimed for the guard: read now, they stay.
        if state.extra.load(Ordering::Relaxed) != 0 || state.recovered.load(Ordering::Relaxed) != 0 {
            self.back_out(w, claimed);
            return false;
        }
        crate::shm::crash::crash_point!("semaphore.fast_take.claimed");
        let held = slot.held.load(Ordering::Relaxed);
        self.record_fast(claimed, held);
        crate::shm::crash::crash_point!("semaphore.fast_take.recorded");
        Self::count_fast(slot, held, (held & HELD_COUNT) + 1);
        crate::shm::crash::crash_point!("semaphore.fast_take.counted");
        state.word.store(w - 1, Ordering::Release);
        true
    }

    /// A release of a permit of this process's own, counted in its slot, without the guard:
    /// the word free, no sleeper marked, the bound not reached. Whether it gave it back.
    #[inline]
    fn fast_give(&self) -> bool {
        let state = &*self.shared;
        let w = state.word.load(Ordering::Acquire);
        let value = w & word::VALUE;
        let bound = u64::from(state.bound.load(Ordering::Relaxed));
        if w & word::SLEEPERS != 0 || (bound != 0 && value >= bound) || value == word::VALUE {
            return false;
        }
        let Some((slot, claimed)) = self.claim_fast(w, true) else {
            return false;
        };
        crate::shm::crash::crash_point!("semaphore.fast_give.claimed");
        let held = slot.held.load(Ordering::Relaxed);
        if held & HELD_COUNT == 0 {
            self.back_out(w, claimed);
            return false;
        }
        self.record_fast(claimed, held);
        crate::shm::crash::crash_point!("semaphore.fast_give.recorded");
        Self::count_fast(slot, held, (held & HELD_COUNT) - 1);
        crate::shm::crash::crash_point!("semaphore.fast_give.counted");
        state.word.store(w + 1, Ordering::Release);
        true
    }

    /// [`Core::try_take`] under the guard from its first look: the re-test of a sleeper
    /// announced on `changed`, since a release asks for sleepers under the guard (see
    /// [`Core::give`]). `None` too when the guard could not be had by `deadline`.
    #[inline]
    fn take(&self, deadline: Deadline) -> Option<(Permit, bool)> {
        let state = &*self.shared;
        let mut hold = self.lock_until(deadline)?;
        if hold.value == 0 {
            return None;
        }
        let me = me();
        let slots = self.slots();
        let recovered = state.recovered.load(Ordering::Relaxed);
        let extra = state.extra.load(Ordering::Relaxed);
        // An extra permit is held by nobody: no slot to count it in.
        let slot = if recovered > 0 || extra == 0 { self.hold_slot(&slots, me) } else { None };
        self.begin(&slots, slot);
        hold.value -= 1;
        // `hold`'s answer is or-ed: `lock` set the flag for an undo, which may have given a
        // slot back to its owner.
        let taken = if recovered > 0 {
            state.recovered.store(recovered - 1, Ordering::Relaxed);
            hold.new_owner |= self.hold(&slots, me, slot);
            (Permit::Held, true)
        } else if extra > 0 {
            state.extra.store(extra - 1, Ordering::Relaxed);
            (Permit::Extra, false)
        } else {
            hold.new_owner |= self.hold(&slots, me, slot);
            (Permit::Held, false)
        };
        crate::shm::crash::crash_point!("semaphore.take.counted");
        Some(taken)
    }

    /// Gives a permit back. `permit` is what a guard held; `None` for a plain release.
    #[inline]
    fn give(&self, permit: Option<Permit>) -> Result<(), ReleaseError> {
        if permit != Some(Permit::Extra) && self.fast_give() {
            return Ok(());
        }
        self.give_guarded(permit)
    }

    /// [`Core::give`] under the guard.
    fn give_guarded(&self, permit: Option<Permit>) -> Result<(), ReleaseError> {
        let state = &*self.shared;
        // Asked under the guard, after the change: every sleeper re-tests under the guard
        // once announced ([`Core::take`]), so no fence is needed (sem37).
        let sleepers = {
            let mut hold = self.lock();
            let value = hold.value;
            let bound = state.bound.load(Ordering::Relaxed);
            if bound != 0 && value >= bound {
                return Err(ReleaseError::OverRelease { bound });
            }
            if value == u32::MAX {
                return Err(ReleaseError::Overflow);
            }
            // The slot whose permit comes back: this process's own, else (a release by a
            // process that holds none) one another process holds, handed over.
            let slots = self.slots();
            let held = |i: &usize| slots.at(*i).count() > 0;
            let slot = match permit {
                Some(Permit::Extra) => None,
                Some(Permit::Held) | None => {
                    self.my_slot(&slots, me()).filter(held).or_else(|| (0..self.used(&slots)).find(held))
                }
            };
            self.begin(&slots, slot);
            match (permit, slot) {
                (Some(Permit::Extra), _) => {
                    state.extra.store(state.extra.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                }
                (_, Some(i)) => {
                    let slot = slots.at(i);
                    slot.set_count(slot.count() - 1);
                    crate::shm::crash::crash_point!("semaphore.give.counted");
                }
                // Held by nobody in the table: an untracked holder's, or an extra permit.
                (_, None) => {
                    let untracked = state.untracked.load(Ordering::Relaxed);
                    if untracked > 0 {
                        state.untracked.store(untracked - 1, Ordering::Relaxed);
                    } else {
                        state.extra.store(state.extra.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    }
                }
            }
            hold.value = value + 1;
            state.changed.sleepers_seen(&hold)
        };
        if sleepers {
            state.changed.wake(1);
        }
        Ok(())
    }

    /// Takes back the permits of holders that died. Reads `/proc` once per other holder.
    /// Waits for the guard until `deadline` at most; those it could not take back then are
    /// left to a later call.
    fn recover_dead(&self, deadline: Deadline) {
        let state = &*self.shared;
        let me = me();
        let candidates: Vec<(usize, u32, u64)> = {
            let Some(_hold) = self.lock_until(deadline) else { return };
            let slots = self.slots();
            (0..self.used(&slots))
                .filter_map(|i| {
                    let s = slots.at(i);
                    (s.count() > 0 && !s.is(me))
                        .then(|| (i, s.pid.load(Ordering::Relaxed), s.start.load(Ordering::Relaxed)))
                })
                .collect()
        };
        let dead: Vec<_> = candidates.into_iter().filter(|&(_, pid, start)| !sys::process_alive(pid, start)).collect();
        if dead.is_empty() {
            return;
        }
        // One change (one hold, one record) per dead holder.
        for (i, pid, start) in dead {
            let Some(mut hold) = self.lock_until(deadline) else { break };
            let slots = self.slots();
            let s = slots.at(i);
            if s.pid.load(Ordering::Relaxed) != pid || s.start.load(Ordering::Relaxed) != start {
                continue;
            }
            self.begin(&slots, Some(i));
            let held = s.count();
            s.set_count(0);
            s.pid.store(0, Ordering::Relaxed);
            s.start.store(0, Ordering::Relaxed);
            hold.new_owner = true;
            state.recovered.store(state.recovered.load(Ordering::Relaxed) + held, Ordering::Relaxed);
            hold.value += held;
            crate::shm::crash::crash_point!("semaphore.recover.counted");
        }
        state.changed.notify_all();
    }

    #[inline]
    fn take_until(&self, deadline: Deadline) -> Result<(Permit, bool), TimedOut> {
        match self.try_take(deadline) {
            Some(taken) => Ok(taken),
            None => self.wait_to_take(deadline),
        }
    }

    /// [`Core::take_until`] once the first look found no permit.
    #[inline(never)]
    fn wait_to_take(&self, deadline: Deadline) -> Result<(Permit, bool), TimedOut> {
        let state = &*self.shared;
        // The spin looks without the guard (a spinning waiter that took it at every look
        // would take its line away from the holder); the sleeper's re-tests under it.
        if !deadline.passed()
            && let Some(taken) = spin_for(deadline.slice(SPIN), || self.try_take(deadline))
        {
            return Ok(taken);
        }
        match state.changed.wait_to_take(self, deadline) {
            Ok(taken) => Ok(taken),
            Err(Interrupted::TimedOut) => {
                // However short the wait, a dead holder's permit is taken back: the deadline
                // may have passed before the first liveness check (a zero timeout always
                // does).
                if let Some(taken) = self.try_take_or_recover(Deadline::after(GUARD_GRACE)) {
                    return Ok(taken);
                }
                // A wake-up meant for us may have come as we left: pass it on.
                if self.value() > 0 {
                    state.changed.notify(1);
                }
                Err(TimedOut)
            }
            Err(Interrupted::Check(never)) => match never {},
        }
    }

    /// A permit now, a dead holder's taken back if need be; the guard waited for until
    /// `deadline` at most.
    fn try_take_or_recover(&self, deadline: Deadline) -> Option<(Permit, bool)> {
        self.try_take(deadline).or_else(|| {
            self.recover_dead(deadline);
            self.try_take(deadline)
        })
    }

    #[inline]
    fn guard(&self, (permit, owner_died): (Permit, bool)) -> SemaphoreGuard<'_> {
        SemaphoreGuard { core: self, permit, owner_died, taken_in: TakenIn::here() }
    }

    #[inline]
    fn acquire(&self) -> Result<SemaphoreGuard<'_>, Infallible> {
        let taken = self.take_until(Deadline::NEVER).expect("an endless wait does not time out");
        Ok(self.guard(taken))
    }

    fn try_acquire(&self) -> Result<SemaphoreGuard<'_>, TryAcquireError> {
        match self.try_take_or_recover(Deadline::after(GUARD_GRACE)) {
            Some(taken) => Ok(self.guard(taken)),
            None => Err(TryAcquireError::WouldBlock),
        }
    }

    fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphoreGuard<'_>, AcquireTimeoutError> {
        match self.take_until(Deadline::after(timeout)) {
            Ok(taken) => Ok(self.guard(taken)),
            Err(TimedOut) => Err(AcquireTimeoutError::Timeout),
        }
    }

    fn value(&self) -> u32 {
        (self.shared.word.load(Ordering::Acquire) & word::VALUE) as u32
    }
}

/// A counter of permits (Python's `multiprocessing.Semaphore`): `acquire` takes one,
/// waiting while there are none; releasing gives one back.
///
/// The guard that [`acquire`](Semaphore::acquire) returns gives its permit back when
/// dropped. As in Python, any process may also [`release`](Semaphore::release), whether it
/// acquired or not (a semaphore as a counter of available items).
///
/// The permits a process holds are counted in shared memory: when a holder dies (killed,
/// crashed), a waiting acquirer takes its permits back, and the guard of the first of
/// them says so ([`SemaphoreGuard::owner_died`], as for every lock: see
/// [`Lock`](crate::Lock)). Up to 256 holding processes are tracked at once.
///
/// A process stopped (`SIGSTOP`, a debugger) in the middle of an acquire or a release
/// does not stretch the others' calls that promise an end: [`try_acquire`](Semaphore::try_acquire)
/// and a poll of [`acquire_async`](Semaphore::acquire_async)'s future wait for it at most
/// 10 ms, then report no permit (a poll is woken again by the next release, or by its own
/// liveness check), and [`acquire_timeout`](Semaphore::acquire_timeout) ends by its
/// timeout (up to about 10 ms past it: its last look), even if a permit is free. An [`acquire`](Semaphore::acquire) and a
/// [`release`](Semaphore::release) wait for it to resume or die.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Process, Semaphore};
///
/// fn use_a_room(rooms: Semaphore) {
///     let _room = rooms.acquire().unwrap();
///     // at most four processes are here at once
/// }
///
/// multiproc::init();
/// let rooms = Semaphore::new(4)?;
/// let guests: Vec<_> = (0..10).map(|_| Process::new(use_a_room, rooms.clone()).start()).collect::<Result<_, _>>()?;
/// for guest in guests {
///     guest.join()?;
/// }
/// assert_eq!(rooms.get_value(), 4);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.Semaphore")]
#[derive(Clone, Serialize, Deserialize)]
pub struct Semaphore {
    core: Core,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore").field("value", &self.get_value()).finish()
    }
}

impl Semaphore {
    /// A semaphore with `value` permits (Python's default is 1).
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let sem = multiproc::Semaphore::new(2)?;
    /// assert_eq!(sem.get_value(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(value: u32) -> Result<Self, Error> {
        Ok(Self { core: Core::new(value, 0)? })
    }

    /// Takes a permit, waiting while there is none.
    ///
    /// # Errors
    ///
    /// None: the error type is [`Infallible`], so that `?` works in any function. A
    /// permit taken back from a dead holder is told by [`SemaphoreGuard::owner_died`].
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let sem = multiproc::Semaphore::new(1)?;
    /// let permit = sem.acquire()?;
    /// assert_eq!(sem.get_value(), 0);
    /// drop(permit);
    /// assert_eq!(sem.get_value(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<SemaphoreGuard<'_>, Infallible> {
        self.core.acquire()
    }

    /// Takes a permit if there is one (a dead holder's permit counts); never waits for
    /// one (for another process in the middle of a change, 10 ms at most: see
    /// [`Semaphore`]).
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::WouldBlock`] when there is none.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::TryAcquireError;
    /// # multiproc::init();
    /// let sem = multiproc::Semaphore::new(0)?;
    /// assert!(matches!(sem.try_acquire(), Err(TryAcquireError::WouldBlock)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<SemaphoreGuard<'_>, TryAcquireError> {
        self.core.try_acquire()
    }

    /// Takes a permit, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`AcquireTimeoutError::Timeout`] when none came in time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::AcquireTimeoutError;
    /// # multiproc::init();
    /// let sem = multiproc::Semaphore::new(0)?;
    /// let r = sem.acquire_timeout(Duration::from_millis(10));
    /// assert!(matches!(r, Err(AcquireTimeoutError::Timeout)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphoreGuard<'_>, AcquireTimeoutError> {
        self.core.acquire_timeout(timeout)
    }

    /// Gives a permit back (any process may, as in Python), waking a waiter.
    ///
    /// # Panics
    ///
    /// When the value would pass `u32::MAX` (the semaphore is left as it was);
    /// [`Semaphore::try_release`] says so with an error instead.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let items = multiproc::Semaphore::new(0)?;
    /// items.release(); // one item is ready
    /// items.acquire()?.forget(); // and consumed
    /// assert_eq!(items.get_value(), 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[track_caller]
    pub fn release(&self) {
        if let Err(e) = self.try_release() {
            panic!("{e}");
        }
    }

    /// [`Semaphore::release`], refusing a release that would pass `u32::MAX`.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::Overflow`] when the value is already `u32::MAX`; nothing changed.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ReleaseError;
    /// # multiproc::init();
    /// let sem = multiproc::Semaphore::new(u32::MAX)?;
    /// assert_eq!(sem.try_release(), Err(ReleaseError::Overflow));
    /// sem.acquire()?.forget();
    /// sem.try_release()?;
    /// assert_eq!(sem.get_value(), u32::MAX);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_release(&self) -> Result<(), ReleaseError> {
        self.core.give(None)
    }

    /// The number of permits available now (dead holders' permits count once a waiter
    /// took them back).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let sem = multiproc::Semaphore::new(3)?;
    /// let _permit = sem.acquire()?;
    /// assert_eq!(sem.get_value(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get_value(&self) -> u32 {
        self.core.value()
    }
}

/// A semaphore that may not be released above its initial value (Python's
/// `multiprocessing.BoundedSemaphore`): a release too many is an error, not a silent extra
/// permit. Otherwise the same as [`Semaphore`], dead holders included.
///
/// # Examples
///
/// ```
/// use multiproc::{BoundedSemaphore, ReleaseError};
/// # multiproc::init();
/// let sem = BoundedSemaphore::new(1)?;
/// assert_eq!(sem.release(), Err(ReleaseError::OverRelease { bound: 1 }));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.BoundedSemaphore")]
#[derive(Clone, Serialize, Deserialize)]
pub struct BoundedSemaphore {
    core: Core,
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.get_value())
            .field("bound", &self.core.shared.bound.load(Ordering::Relaxed))
            .finish()
    }
}

impl BoundedSemaphore {
    /// A semaphore with `value` permits, which is also its bound. A bound of 0 is allowed,
    /// as in Python (and as [`Manager::bounded_semaphore`](crate::Manager::bounded_semaphore)):
    /// no acquire passes and every release is one too many.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let sem = multiproc::BoundedSemaphore::new(2)?;
    /// assert_eq!((sem.get_value(), sem.bound()), (2, 2));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(value: u32) -> Result<Self, Error> {
        Ok(Self { core: Core::new(value, value)? })
    }

    /// Takes a permit, waiting while there is none (see [`Semaphore::acquire`]).
    ///
    /// # Errors
    ///
    /// None (see [`Semaphore::acquire`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// let permit = sem.acquire()?;
    /// assert_eq!(sem.get_value(), 0);
    /// drop(permit);
    /// assert_eq!(sem.get_value(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire(&self) -> Result<SemaphoreGuard<'_>, Infallible> {
        self.core.acquire()
    }

    /// Takes a permit if there is one; never waits for one (see [`Semaphore::try_acquire`]).
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::WouldBlock`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::TryAcquireError;
    /// # multiproc::init();
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// let _permit = sem.try_acquire()?;
    /// assert!(matches!(sem.try_acquire(), Err(TryAcquireError::WouldBlock)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_acquire(&self) -> Result<SemaphoreGuard<'_>, TryAcquireError> {
        self.core.try_acquire()
    }

    /// Takes a permit, waiting at most `timeout` (see [`Semaphore::acquire_timeout`]).
    ///
    /// # Errors
    ///
    /// [`AcquireTimeoutError::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # multiproc::init();
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// let _permit = sem.acquire_timeout(Duration::from_secs(1))?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphoreGuard<'_>, AcquireTimeoutError> {
        self.core.acquire_timeout(timeout)
    }

    /// Gives a permit back (any process may).
    ///
    /// # Errors
    ///
    /// [`ReleaseError::OverRelease`] when the value is already at its bound (Python's
    /// `ValueError: semaphore or lock released too many times`).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let sem = multiproc::BoundedSemaphore::new(1)?;
    /// sem.acquire()?.forget();
    /// sem.release()?;
    /// assert!(sem.release().is_err(), "above the bound");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn release(&self) -> Result<(), ReleaseError> {
        // Bounded at 0 (`new(0)`): the core's bound of 0 is a plain semaphore's "none", and
        // its value can only be 0; nothing but a release could raise it.
        if self.bound() == 0 {
            return Err(ReleaseError::OverRelease { bound: 0 });
        }
        self.core.give(None)
    }

    /// The number of permits available now.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let sem = multiproc::BoundedSemaphore::new(4)?;
    /// assert_eq!(sem.get_value(), 4);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get_value(&self) -> u32 {
        self.core.value()
    }

    /// The bound: the initial value.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// assert_eq!(multiproc::BoundedSemaphore::new(4)?.bound(), 4);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn bound(&self) -> u32 {
        self.core.shared.bound.load(Ordering::Relaxed)
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`]; dropping it gives the permit back.
///
/// Only in the process that acquired it: a copy that a `Fork` child got with its parent's
/// memory (a guard kept in a static or a thread-local) gives nothing back when dropped
/// there; the permit stays the parent's. The child may call `release`.
///
/// # Examples
///
/// ```
/// # multiproc::init();
/// let sem = multiproc::Semaphore::new(1)?;
/// {
///     let _permit = sem.acquire()?;
///     assert_eq!(sem.get_value(), 0);
/// }
/// assert_eq!(sem.get_value(), 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "the permit is given back as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    core: &'a Core,
    permit: Permit,
    owner_died: bool,
    /// A copy made by fork (a guard kept in a static or a thread-local) gives nothing back:
    /// the permit is the parent's.
    taken_in: TakenIn,
}

impl SemaphoreGuard<'_> {
    /// Whether the permit was taken back from a process that died holding it.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let sem = multiproc::Semaphore::new(1)?;
    /// assert!(!sem.acquire()?.owner_died());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Keeps the permit: it is not given back (a consumed item), or it is given back later
    /// by a plain `release`, maybe by another process.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let sem = multiproc::Semaphore::new(1)?;
    /// sem.acquire()?.forget();
    /// assert_eq!(sem.get_value(), 0);
    /// sem.release();
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").field("value", &self.core.value()).finish()
    }
}

impl Drop for SemaphoreGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // A bounded semaphore released meanwhile by a plain `release` may refuse: the
        // permit is back already.
        if self.taken_in.is_here() {
            let _ = self.core.give(Some(self.permit));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    thread_local! {
        /// The process this thread plays ([`me`]), if not its own.
        pub(super) static PLAYING: std::cell::Cell<Option<sys::ProcId>> = const { std::cell::Cell::new(None) };
        /// What other processes do between this thread's fast claim of a word and its
        /// first look under the claim ([`after_fast_claim`]).
        pub(super) static AFTER_FAST_CLAIM: std::cell::RefCell<Option<Box<dyn FnMut()>>> =
            const { std::cell::RefCell::new(None) };
    }

    impl Core {
        /// The word's sleeper mark is set: a sleeper re-tested after its announcement.
        fn sleepers_marked(&self) -> bool {
            self.shared.word.load(Ordering::SeqCst) & word::SLEEPERS != 0
        }

        /// The word's generation (modulo 2^19): how many times a slot changed owner.
        fn generation(&self) -> u64 {
            self.shared.word.load(Ordering::SeqCst) / word::GENERATION
        }
    }

    /// A permit that a roll-back gives back wakes a sleeper of its own (review30b, Info):
    /// two sleepers, and a killed acquirer's change (its record armed, the word claimed for
    /// the guard, the guard free, as a dead holder's is taken over); a release rolls that change back (one
    /// permit) and gives its own (another). Both sleepers are owed nothing after it: before,
    /// one was, and waited for the end of its sleep slice to find the permit.
    #[test]
    fn a_permit_a_roll_back_gives_back_wakes_a_sleeper() {
        let _heap = crate::shm::heap_test_user();
        let sem = Semaphore::new(1).unwrap();
        let core = &sem.core;
        {
            let _g = RawGuard::lock(&core.shared.guard);
            let _ = core.claim(Deadline::NEVER);
            let slots = core.slots();
            let slot = core.hold_slot(&slots, sys::me());
            core.begin(&slots, slot);
            // Killed here: the word still claimed for the guard, no commit.
        }
        let changed = core.shared.changed.inner();
        let _ = changed.start_sleeping();
        let _ = changed.start_sleeping();
        sem.release();
        assert_eq!(sem.get_value(), 2, "rolled back, then released");
        let owed = changed.owed();
        changed.stop_sleeping();
        changed.stop_sleeping();
        assert_eq!(owed, 0, "a sleeper was left to find a permit at its next look");
    }

    /// A release asks for sleepers under the guard, without a fence (sem37): a sleeper
    /// announced before it, blocking or a future, is served its wake-up by that release,
    /// not left to find the permit at the end of its sleep slice. The blocking sleeper is
    /// its announcement alone, on this thread: one on a thread of its own could time out
    /// a slice, or be between its two counts, when the release asks (review38 L1).
    #[test]
    fn a_release_wakes_a_sleeper_announced_before_it() {
        // Its future's registration would ring a waker thread that a scene of
        // `shm::reactor`'s tests needs where it is in the futex queue.
        let _one = crate::shm::reactor::tests::SCENES.lock().unwrap_or_else(|e| e.into_inner());
        let _heap = crate::shm::heap_test_user();
        let sem = Semaphore::new(0).unwrap();
        let changed = sem.core.shared.changed.inner();
        let _ = changed.start_sleeping();
        sem.release();
        let owed = changed.owed();
        changed.stop_sleeping();
        assert_eq!(owed, 0, "the blocking sleeper was not woken");
        sem.try_acquire().unwrap().forget();

        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut future = std::pin::pin!(sem.acquire_async());
        assert!(future.as_mut().poll(&mut cx).is_pending());
        assert_eq!(changed.owed(), 1, "the future is announced on `changed`");
        sem.release();
        assert_eq!(changed.owed(), 0, "the future was not woken");
        assert!(future.as_mut().poll(&mut cx).is_ready());
    }

    /// A release on the fast path (the releaser's own permit, without the guard) wakes a
    /// sleeper announced before it (sem38): the sleeper's guarded re-test marks the word
    /// (`SLEEPERS`), and a release that finds the mark takes the guarded way, which wakes.
    /// One thread, the sleeper its announcement and its re-test: a sleeper on a thread of
    /// its own could time out its slice between the mark and the release (review43 L2).
    #[test]
    fn a_fast_release_wakes_a_sleeper_announced_before_it() {
        let _heap = crate::shm::heap_test_user();
        let sem = Semaphore::new(1).unwrap();
        let changed = sem.core.shared.changed.inner();
        // Held in this process's slot: its release may go the fast way.
        sem.acquire().unwrap().forget();
        let _ = changed.start_sleeping();
        assert!(sem.core.take(Deadline::NEVER).is_none(), "the sleeper's re-test found a permit");
        assert!(sem.core.sleepers_marked(), "the re-test under the guard marks the word");
        sem.release();
        let owed = changed.owed();
        changed.stop_sleeping();
        assert_eq!(owed, 0, "the sleeper was not woken");
    }

    /// A guard's holder sleeps only for a fast change that holds the word long (its process
    /// stopped or dead), not for a stream of fast changes that come and go while it looks
    /// (review43 M1): before, its looks were never reset, so under fast-path contention it
    /// passed 1000 of them in milliseconds, then slept a millisecond at each, holding the
    /// guard.
    #[test]
    fn a_guard_holder_sleeps_only_for_a_stuck_fast_change() {
        let free = 2;
        let take = word::claimed_for(free, 0, false);
        let give = word::claimed_for(free - 1, 1, true);
        let mut looks = Looks::default();
        for _ in 0..10 * YIELD_LOOKS {
            // A change ends (its CAS lost to the next), then the next is seen.
            assert_eq!(looks.look(free), None);
            let (_, pause) = looks.look(take).unwrap();
            assert_ne!(pause, Pause::Sleep, "slept among fast changes");
            // Or the next is seen without the free word between.
            let (_, pause) = looks.look(give).unwrap();
            assert_ne!(pause, Pause::Sleep, "slept among fast changes");
        }
        // One change that does not end: spins, yields, then sleeps, and its process's
        // liveness is asked every SETTLE_EVERY looks.
        let mut looks = Looks::default();
        let seen: Vec<_> = (0..2 * YIELD_LOOKS).map(|_| looks.look(take).unwrap()).collect();
        assert_eq!(seen[0].1, Pause::Spin);
        assert_eq!(seen[SPIN_LOOKS as usize].1, Pause::Yield);
        assert_eq!(seen[YIELD_LOOKS as usize].1, Pause::Sleep);
        assert_eq!(seen.iter().filter(|(settle, _)| *settle).count() as u32, 2 * YIELD_LOOKS / SETTLE_EVERY);
    }

    /// The generation moves only with a change of a slot's owner (review43 L1): moved by
    /// every guarded change, it wrapped after 2^19 of them (half a second of contention),
    /// and a fast changer stalled between its load and its CAS could then claim a word that
    /// came back exactly, its slot another's. A free slot taken is no change of owner
    /// (review45 L1): nobody's, no fast changer found it its own.
    #[test]
    fn the_generation_moves_only_when_a_slot_changes_owner() {
        let _heap = crate::shm::heap_test_user();
        let sem = Semaphore::new(2).unwrap();
        let core = &sem.core;
        let before = core.generation();
        // Every slot taken by another process, then left idle.
        for k in 0..core.slots().len() as u32 {
            PLAYING.set(Some(sys::ProcId { pid: 1_000_000 + k, start: 1 }));
            let other = core.clone();
            let (permit, _) = other.take(Deadline::NEVER).unwrap();
            other.give_guarded(Some(permit)).unwrap();
        }
        PLAYING.set(None);
        assert_eq!(core.generation(), before, "free slots taken");
        // This process's first acquire counts its permit in one of them.
        let (first, _) = core.take(Deadline::NEVER).unwrap();
        let owned = core.generation();
        assert_ne!(owned, before, "a slot changed owner");
        for _ in 0..100 {
            let (permit, _) = core.take(Deadline::NEVER).unwrap();
            core.give_guarded(Some(permit)).unwrap();
        }
        assert_eq!(core.generation(), owned, "guarded changes in this process's own slot");
        core.give_guarded(Some(first)).unwrap();
    }

    /// A fast change that backs out lets the word go only if it still holds it: a settler
    /// that took the slot's owner for it (after a wrapped generation) may have settled the
    /// word and claimed it for the guard, a claim a store would wipe (review43 L1).
    #[test]
    fn a_fast_change_backing_out_keeps_a_settlers_claim() {
        let _heap = crate::shm::heap_test_user();
        let sem = Semaphore::new(1).unwrap();
        let word = &sem.core.shared.word;
        let w = word.load(Ordering::SeqCst);
        let claimed = word::claimed_for(w, 0, false);
        let settler = w | (word::GUARD << word::CLAIM_SHIFT);
        word.store(settler, Ordering::SeqCst);
        sem.core.back_out(w, claimed);
        assert_eq!(word.load(Ordering::SeqCst), settler, "the settler's claim was wiped");
        word.store(claimed, Ordering::SeqCst);
        sem.core.back_out(w, claimed);
        assert_eq!(word.load(Ordering::SeqCst), w, "the change's own claim was not let go");
    }

    /// Each of the fast path's three back-outs lets the word go by CAS from its own claim
    /// (review45 L3: a store at any one of them passed every test): a settler that took
    /// the slot's owner for this changer (its process seen dead) may have settled the word
    /// and claimed it for the guard between the change's claim and its look, and that claim
    /// must survive. The settler's moves are made right after the claim: for the owner
    /// look, the slot also given to another process; for the acquire, an extra permit to
    /// take first; for the release, no permit in the slot.
    #[test]
    fn every_fast_back_out_keeps_a_settlers_claim() {
        let _heap = crate::shm::heap_test_user();
        let sem = Semaphore::new(1).unwrap();
        let core = &sem.core;
        let state = &*core.shared;
        // The permit held and given back in this process's own slot: the hint is set.
        drop(sem.acquire().unwrap());
        let i = core.mine.0.load(Ordering::SeqCst) as usize - 1;
        let me = sys::me();
        let free = state.word.load(Ordering::SeqCst);
        let settler = free | (word::GUARD << word::CLAIM_SHIFT);
        let settle_and = |moves: fn(&Core, usize)| {
            let core = core.clone();
            AFTER_FAST_CLAIM.set(Some(Box::new(move || {
                moves(&core, i);
                core.shared.word.store(settler, Ordering::SeqCst);
            })));
        };
        let check = |site: &str| {
            AFTER_FAST_CLAIM.set(None);
            assert_eq!(state.word.load(Ordering::SeqCst), settler, "the settler's claim was wiped ({site})");
            state.word.store(free, Ordering::SeqCst);
        };

        settle_and(|core, i| core.slot(i).start.store(0, Ordering::SeqCst));
        assert!(!core.fast_take(free), "took a permit in another's slot");
        check("the slot another's");
        core.slot(i).start.store(me.start, Ordering::SeqCst);

        state.extra.store(1, Ordering::SeqCst);
        settle_and(|_, _| {});
        assert!(!core.fast_take(free), "took its own permit before the extra one");
        check("an extra permit first");
        state.extra.store(0, Ordering::SeqCst);

        settle_and(|_, _| {});
        assert!(!core.fast_give(), "gave back a permit its slot does not hold");
        check("no permit in the slot");
        assert_eq!(sem.get_value(), 1);
    }

    /// Names a dead process in `core`'s first holder slot (this process's pid with another
    /// start time), in use as `hold` would leave it, with no permit counted yet.
    fn dead_holder_in_the_first_slot(core: &Core) -> &HolderSlot {
        let me = sys::me();
        let slot = core.slot(0);
        slot.pid.store(me.pid, Ordering::SeqCst);
        slot.start.store(me.start + 1, Ordering::SeqCst);
        core.shared.used.store(1, Ordering::SeqCst);
        slot
    }

    /// The recovery of a dead holder's permits moves the generation (review45 L3: without
    /// it every test passed): the emptied slot may be a stalled fast changer's (its
    /// process taken for dead), and its CAS must then fail. The dead holder is this
    /// process's pid with another start time, holding one permit in a slot of its own.
    #[test]
    fn recovering_a_dead_holders_permit_moves_the_generation() {
        let _heap = crate::shm::heap_test_user();
        let sem = Semaphore::new(1).unwrap();
        let core = &sem.core;
        let state = &*core.shared;
        let slot = dead_holder_in_the_first_slot(core);
        slot.set_count(1);
        state.word.fetch_sub(1, Ordering::SeqCst);
        let before = core.generation();
        core.recover_dead(Deadline::NEVER);
        assert_ne!(core.generation(), before, "the slot was emptied, the generation did not move");
        assert_eq!(sem.get_value(), 1, "the dead holder's permit came back");
        assert!(sem.try_acquire().is_ok_and(|g| g.owner_died()));
    }

    /// A claim whose deadline has passed settles a fast changer that died holding the word
    /// before it gives up (review66 M1): it gave up at its first look past the spin, before
    /// the first settle (look 256), so a `try_acquire`, a poll or a short `acquire_timeout`
    /// never took the word back on a loaded machine (each starts its looks again), and
    /// async waiters with nobody to release waited for ever. The changer is this process's
    /// pid with another start time, killed in its fast acquire before its slot store.
    #[test]
    fn a_claim_past_its_deadline_settles_a_dead_fast_changer() {
        let _heap = crate::shm::heap_test_user();
        let sem = Semaphore::new(1).unwrap();
        let core = &sem.core;
        let state = &*core.shared;
        dead_holder_in_the_first_slot(core);
        let free = state.word.load(Ordering::SeqCst);
        state.word.store(word::claimed_for(free, 0, false), Ordering::SeqCst);
        let claimed = {
            let _guard = RawGuard::lock(&core.shared.guard);
            let claimed = core.claim(Deadline::after(Duration::ZERO));
            if let Some((w, _)) = claimed {
                // Let the word go, as a holder does.
                state.word.store(w & !word::CLAIM, Ordering::SeqCst);
            }
            claimed
        };
        assert!(claimed.is_some(), "gave up with the dead changer's claim on the word");
        assert_eq!(sem.get_value(), 1, "the dead changer's acquire was undone");
    }

    /// Processes that take turns at a semaphore, more of them than it has permits (a
    /// `Semaphore(1)` as a cross-process lock, a `Semaphore(4)` bounding 8 workers), each
    /// keep a holder slot of their own, so that the generation moves only when one first
    /// takes a slot, not at every turn (review45 L1: a process without a slot took another
    /// live one's idle slot, an owner change at nearly every acquire, and the generation
    /// wrapped as fast as before sem39). The generation counts its moves (below 2^19 here).
    /// Beyond the table's slots, owner changes come back: that figure is printed, not held.
    #[test]
    fn processes_taking_turns_keep_their_slots() {
        let _heap = crate::shm::heap_test_user();
        let me = sys::me();
        let turns = 100;
        for (value, users) in [(1, 4u32), (4, 8), (1, 64), (1, 80)] {
            let sem = Semaphore::new(value).unwrap();
            let handles: Vec<Core> = (0..users).map(|_| sem.core.clone()).collect();
            let before = sem.core.generation();
            for _ in 0..turns {
                for (k, core) in (1..).zip(&handles) {
                    PLAYING.set(Some(sys::ProcId { pid: 1_000_000 + k, start: me.start }));
                    let (permit, _) = core.try_take(Deadline::NEVER).expect("a permit for each turn");
                    core.give(Some(permit)).unwrap();
                }
            }
            PLAYING.set(None);
            let moved = sem.core.generation().wrapping_sub(before) & (u64::MAX / word::GENERATION);
            eprintln!(
                "Semaphore({value}), {users} processes, {} turns: the generation moved {moved} times",
                turns * users
            );
            if users <= 64 {
                assert!(moved <= u64::from(users), "{moved} owner changes for {users} processes");
            }
        }
    }

    /// A process new to a semaphore whose table is full (every slot taken once, the first
    /// taker now gone) takes another's idle slot, which sends that one to take another's:
    /// the chain ends at the slot of the process that is gone, within a turn of the table.
    /// It did not when each took the first idle slot from its own starting place: the
    /// newcomer and the process whose slot it took took that slot from each other at every
    /// turn, an owner change each (the generation counts them, below 2^19 here).
    #[test]
    fn a_process_new_to_a_full_table_changes_few_owners() {
        let _heap = crate::shm::heap_test_user();
        let me = sys::me();
        let sem = Semaphore::new(1).unwrap();
        let slots = sem.core.slots().len() as u32;
        let playing = |k: u32| sys::ProcId { pid: 1_000_000 + k, start: me.start };
        let turn = |core: &Core, k: u32| {
            PLAYING.set(Some(playing(k)));
            let (permit, _) = core.try_take(Deadline::NEVER).expect("a permit for each turn");
            core.give(Some(permit)).unwrap();
        };
        let mut handles: Vec<(u32, Core)> = (1..=slots).map(|k| (k, sem.core.clone())).collect();
        for (k, core) in &handles {
            turn(core, *k);
        }
        let before = sem.core.generation();
        // The first is gone; the newcomer starts its search at the second's slot.
        handles[0] = (slots + 2, sem.core.clone());
        for _ in 0..100 {
            for (k, core) in &handles {
                turn(core, *k);
            }
        }
        PLAYING.set(None);
        let moved = sem.core.generation().wrapping_sub(before) & (u64::MAX / word::GENERATION);
        assert!(moved <= u64::from(slots), "{moved} owner changes in 100 turns of {slots} processes");
    }

    /// Slots are taken from the front, and the searches under the guard stop at the last
    /// one ever taken (review51 M1): with 64 slots, a producer's release at a counter
    /// semaphore (it holds nothing: the guarded way) looked at every slot twice, holding
    /// the guard, and ran 1.7x as long as with sem39's one slot (`mp-bench lock_uncontended
    /// semaphore_counter`). A counter's producer and consumer take no slot; four processes
    /// taking turns at a `Semaphore(1)` take the first four, whatever their pids.
    #[test]
    fn slots_are_taken_from_the_front() {
        let _heap = crate::shm::heap_test_user();
        let counter = Semaphore::new(0).unwrap();
        for _ in 0..10 {
            counter.release();
            counter.acquire().unwrap().forget();
        }
        assert_eq!(counter.core.shared.used.load(Ordering::SeqCst), 0, "a counter's items took slots");

        let me = sys::me();
        let sem = Semaphore::new(1).unwrap();
        for k in 0..4 {
            PLAYING.set(Some(sys::ProcId { pid: 1_000_000 + 17 * k, start: me.start }));
            let core = sem.core.clone();
            let (permit, _) = core.try_take(Deadline::NEVER).unwrap();
            core.give(Some(permit)).unwrap();
        }
        PLAYING.set(None);
        assert_eq!(sem.core.shared.used.load(Ordering::SeqCst), 4, "four processes, the first four slots");
    }

    /// A take that undoes a dead changer's steal of a live process's idle slot moves the
    /// generation, whatever slot it then counts its own permit in (review51 L1, review45
    /// L2): `lock` sets `new_owner` for the undo, and `take` overwrote it with `hold`'s
    /// answer (false for this process's own slot), so the word was let go with the
    /// generation it had before the steal. The undo also puts the slot's live owner back.
    #[test]
    fn a_take_that_undoes_a_dead_steal_moves_the_generation() {
        let _heap = crate::shm::heap_test_user();
        let sem = Semaphore::new(1).unwrap();
        let core = &sem.core;
        let real = sys::me();
        // This process's slot, idle, its hint set; then every other slot another's, idle.
        drop(sem.acquire().unwrap());
        for k in 1..core.slots().len() as u32 {
            PLAYING.set(Some(sys::ProcId { pid: 1_000_000 + k, start: real.start }));
            let other = core.clone();
            let (permit, _) = other.take(Deadline::NEVER).unwrap();
            other.give_guarded(Some(permit)).unwrap();
        }
        // A newcomer steals an idle slot and is killed inside its change: the word still
        // claimed for the guard, no commit.
        PLAYING.set(Some(sys::ProcId { pid: 2_000_000, start: real.start }));
        let stolen = {
            let newcomer = core.clone();
            let _guard = RawGuard::lock(&newcomer.shared.guard);
            let _ = newcomer.claim(Deadline::NEVER);
            let slots = newcomer.slots();
            let slot = newcomer.hold_slot(&slots, me());
            newcomer.begin(&slots, slot);
            assert!(newcomer.hold(&slots, me(), slot), "a steal");
            slot.unwrap()
        };
        PLAYING.set(None);
        assert_eq!(stolen, 0, "the steal took this process's idle slot, the first");
        let before = core.generation();
        // Undoes the steal, then counts its permit in its own slot.
        let (permit, _) = core.take(Deadline::NEVER).unwrap();
        assert_ne!(core.generation(), before, "the undone steal's bump was overwritten");
        assert!(core.slot(stolen).is(real), "the undo gave the slot back to its owner");
        core.give_guarded(Some(permit)).unwrap();
        assert_eq!(sem.get_value(), 1);
    }

    /// A process new to a semaphore takes a free slot, one a recovery emptied, before
    /// another live process's idle one (review51 L2: no test held it). The table full, a
    /// dead holder's slot is emptied; a newcomer then takes that one, and nobody's slot
    /// changes owner. Taking the idle slot at the cursor instead sends its owner to take
    /// the next one, and so on to the free one: an owner change each.
    #[test]
    fn a_free_slot_is_taken_before_anothers_idle_one() {
        let _heap = crate::shm::heap_test_user();
        let me = sys::me();
        let sem = Semaphore::new(1).unwrap();
        let core = &sem.core;
        let n = core.slots().len() as u32;
        let turn = |core: &Core, pid: u32| {
            PLAYING.set(Some(sys::ProcId { pid, start: me.start }));
            let (permit, _) = core.take(Deadline::NEVER).expect("a permit for each turn");
            core.give_guarded(Some(permit)).unwrap();
        };
        let handles: Vec<(u32, Core)> = (1..n).map(|k| (1_000_000 + k, core.clone())).collect();
        // The first slot is a holder's that dies with its permit (this process's pid,
        // another start time); every other slot is a live process's, idle.
        turn(core, me.pid);
        PLAYING.set(None);
        for (pid, core) in &handles {
            turn(core, *pid);
        }
        PLAYING.set(None);
        let dead = core.slot(0);
        dead.start.store(me.start + 1, Ordering::SeqCst);
        dead.set_count(1);
        core.shared.word.fetch_sub(1, Ordering::SeqCst);
        core.recover_dead(Deadline::NEVER);
        assert_eq!(dead.pid.load(Ordering::SeqCst), 0, "the dead holder's slot emptied");
        let before = core.generation();
        // The cursor at a live process's idle slot.
        core.shared.take_idle_at.store(5, Ordering::SeqCst);
        turn(&core.clone(), 2_000_000);
        for (pid, core) in &handles {
            turn(core, *pid);
        }
        PLAYING.set(None);
        let moved = core.generation().wrapping_sub(before) & (u64::MAX / word::GENERATION);
        assert_eq!(moved, 0, "a newcomer took a live process's idle slot");
    }
}
