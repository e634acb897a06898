//! A process-shared mutex that survives the death of its holder.
//!
//! The lock records its owner's id (a pid, or a thread id for recursive locks) with its
//! start time, in one atomic word; waiters sleep on another, marked when one may sleep. A
//! waiter that sleeps too long, or is about to give up (a `try_lock`, a passed deadline,
//! however short), checks whether the owner still runs; if it does not (killed, crashed,
//! or a pid reused by a stranger, which the start time reveals), the waiter takes the lock
//! over and is told the owner died.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::crash::{crash_point, interleave};
use super::wait::{Deadline, FIRST_SLICE, MAX_SLICE};
use crate::sys;

/// The word's mark: a waiter may sleep on it (see [`RawMutex`]).
const SLEEPERS: u32 = 1 << 31;
/// How long a waiter looks (and yields) before it sleeps on the futex.
const LOCK_SPIN: Duration = Duration::from_micros(20);
/// Looks at the word, a pause apart, before a waiter starts yielding between looks: a
/// microsecond or so, some critical sections long.
const SPIN_LOOKS: u32 = 32;

/// Who holds a lock: a process (pid) or a thread (tid), with the start time that tells it
/// apart from a later process reusing the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) id: u32,
    pub(crate) start: u64,
}

impl Owner {
    /// This process.
    #[inline]
    pub(crate) fn process() -> Self {
        let me = sys::me();
        Self { id: me.pid, start: me.start }
    }

    /// This thread (for locks owned by a thread, such as `RLock`).
    #[inline]
    pub(crate) fn thread() -> Self {
        thread_local! {
            static ME: std::cell::Cell<(u32, u32, u64)> = const { std::cell::Cell::new((0, 0, 0)) };
        }
        let pid = sys::my_pid();
        ME.with(|me| {
            let (cached_pid, tid, start) = me.get();
            if cached_pid == pid && tid != 0 {
                return Owner { id: tid, start };
            }
            let tid = sys::my_tid();
            let start = if tid == pid { sys::me().start } else { sys::process_start_time(tid).unwrap_or(0) };
            me.set((pid, tid, start));
            Owner { id: tid, start }
        })
    }
}

/// The process a guard was taken in. Fork copies a process's memory, guards kept in a
/// static or a thread-local included; the copy in the child must neither reach the data
/// nor release the lock that the original, in the parent, still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TakenIn(sys::ProcId);

impl TakenIn {
    /// This process.
    #[inline]
    pub(crate) fn here() -> Self {
        Self(sys::me())
    }

    /// The process `owner` names, an [`Owner::process`] (a guard that keeps its owner
    /// keeps where it was taken with it, with no second look at this process).
    #[inline]
    pub(crate) fn of(owner: Owner) -> Self {
        Self(sys::ProcId { pid: owner.id, start: owner.start })
    }

    /// Whether this is the process the guard was taken in (two cached loads).
    #[inline]
    pub(crate) fn is_here(self) -> bool {
        sys::me() == self.0
    }

    /// [`TakenIn::is_here`] asked of the kernel (a system call): false in a copy made by a
    /// fork that ran no `pthread_atfork` handler too (`clone3`, `syscall(SYS_fork)`), whose
    /// cached identity is still its parent's.
    pub(crate) fn is_here_now(self) -> bool {
        sys::pid_now() == self.0.pid
    }

    /// Panics in a copy of the guard made by fork.
    #[inline]
    #[track_caller]
    pub(crate) fn check(self) {
        if !self.is_here() {
            copied_guard(self.0.pid);
        }
    }
}

#[cold]
#[track_caller]
fn copied_guard(pid: u32) -> ! {
    panic!(
        "this guard was taken by process {pid} and copied by fork: the lock belongs to that process (pass the value to the child and lock it there)"
    )
}

/// Which thread holds a lock owned by its process (a value's access, see `Locked` and
/// `LockedSlice`): the lock lives as long as the process, so a guard that outlives the
/// thread that took it (sent to another thread, or leaked) is never taken over while the
/// process runs; the mark only tells that thread's next attempt that it holds the lock
/// already. The holder sets it right after locking and clears it before unlocking.
#[derive(crate::ShmSafe, Debug, Default)]
#[repr(C)]
pub(crate) struct ThreadMark {
    id: AtomicU32,
    _pad: u32,
    start: AtomicU64,
}

impl ThreadMark {
    /// No thread.
    pub(crate) const fn new() -> Self {
        Self { id: AtomicU32::new(0), _pad: 0, start: AtomicU64::new(0) }
    }

    /// Records `me` (an [`Owner::thread`]) as the holder; by the holder, once locked.
    #[inline]
    pub(crate) fn set(&self, me: Owner) {
        self.start.store(me.start, Ordering::Relaxed);
        self.id.store(me.id, Ordering::Relaxed);
    }

    /// Forgets the holder; by whoever unlocks, before the unlock.
    #[inline]
    pub(crate) fn clear(&self) {
        self.id.store(0, Ordering::Relaxed);
    }

    /// Whether `mutex`, owned by processes, is held by this process for the thread `me`.
    /// The lock's holder record is read first (acquire, [`RawMutex::is_held_by`]; "the
    /// word" until the lock became the record, review167 L5): found this process's, it
    /// reads this process's take, an RMW in the release sequence of the unlock before it
    /// (every write to the lock is an RMW), so a thread mark cleared before that unlock is
    /// seen cleared.
    #[inline]
    pub(crate) fn holds(&self, mutex: &RawMutex, me: Owner) -> bool {
        mutex.is_held_by(Owner::process())
            && self.id.load(Ordering::Relaxed) == me.id
            && self.start.load(Ordering::Relaxed) == me.start
    }
}

/// How a lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// From a holder that released it.
    Clean,
    /// From a holder that died holding it: what it protected may be half-updated.
    OwnerDied,
}

/// The deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedOut;

/// The mutex itself, placed in shared memory.
///
/// The lock is `owner`: free when its id is 0, else its holder's [`Owner::record`] (its id
/// and the low half of its start time, in one atomic word), with the lock's count of
/// releases between them ([`COUNT_MASK`]: 0 but in a `Lock`'s, kept by every take and
/// bumped by `Lock::release` only). Every change of hands is one RMW of it (an acquire's
/// compare-exchange from the free record, a release's swap to 0, a `Lock` guard's
/// compare-exchange from its own record and `Lock::release`'s to the next count's free
/// record, a takeover's compare-exchange from the dead holder's record), so whoever looks at a held lock finds
/// its holder named with its start time at every instant: a holder killed anywhere in an
/// acquire, a release or a takeover is judged by who it was, not by a number that a
/// stranger may have taken since (aud107 L2: the word and the start time were two stores,
/// and a kill between them left the number alone).
///
/// `word` is the futex the waiters sleep on: [`SLEEPERS`] when one may sleep (or a
/// [`RawMutex::mark_wanted`] marked the holding), else 0. A waiter sets it, then looks at
/// the lock; a release swaps the lock, then looks at the word (both `SeqCst`: of the two,
/// one sees the other's change), and wakes one sleeper when it is set. A woken waiter that
/// takes the lock leaves it set, so that its own release wakes the next one.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct RawMutex {
    word: AtomicU32,
    /// Atomic like the rest, so that a `RawMutex` is valid for any bytes another process
    /// writes (the reactor keeps `'static` references to one: `reactor::in_heap`).
    _pad: AtomicU32,
    owner: AtomicU64,
}

/// The bits of a holder record that hold its id: 22, as Linux's pids and thread ids are
/// below `PID_MAX_LIMIT` (2^22 on 64-bit kernels; 32768 on 32-bit ones).
const ID_BITS: u32 = 22;
const ID_MASK: u64 = (1 << ID_BITS) - 1;
/// The record's count of releases: the 10 bits of the low half above the id. Only a
/// `Lock`'s [`RawMutex::release_counting`] changes it, by one (wrapping), in the same RMW
/// as its unlock; every take keeps it (a take from a free lock, a takeover from a dead
/// holder) and so does a guard's [`RawMutex::unlock_if_held_as`]. So a `Lock`'s hold is
/// told apart from another hold of the same process taken after a release by its record
/// alone (fix134): (id, count, start time). 0 in the locks that no `Lock::release` reaches.
pub(crate) const COUNT_MASK: u64 = 0xffff_ffff & !ID_MASK;
const COUNT_ONE: u64 = 1 << ID_BITS;

/// Whether a holder record is a free lock's: no id (its count may be anything).
#[inline]
fn is_free(record: u64) -> bool {
    record & !COUNT_MASK == 0
}

impl Owner {
    /// What a lock records of its holder: the id in the low 22 bits, the low 32 bits of the
    /// start time in the high half (0 there: not known, as for a thread whose start time
    /// could not be read); the count of releases between them is the lock's, 0 here
    /// ([`COUNT_MASK`]). Never free: ids are not 0.
    #[inline]
    pub(crate) fn record(self) -> u64 {
        debug_assert!(u64::from(self.id) <= ID_MASK, "an id above PID_MAX_LIMIT: {}", self.id);
        (u64::from(self.id) & ID_MASK) | (u64::from(self.start as u32) << 32)
    }
}

/// The id and the start time's low half of a holder's [`Owner::record`].
#[inline]
fn recorded(record: u64) -> (u32, u32) {
    ((record & ID_MASK) as u32, (record >> 32) as u32)
}

impl RawMutex {
    /// An unlocked mutex.
    pub(crate) const fn new() -> Self {
        Self { word: AtomicU32::new(0), _pad: AtomicU32::new(0), owner: AtomicU64::new(0) }
    }

    /// Takes the lock for `me` if it is free, `free` being the guess of its free record
    /// (its count of releases), with one compare-exchange when the guess is right, and
    /// says the count it took. A guess found wrong with the lock free is tried again with
    /// what was found.
    #[inline]
    fn claim(&self, mut free: u64, me: Owner, success: Ordering, failure: Ordering) -> Option<u64> {
        loop {
            match self.owner.compare_exchange(free, me.record() | free, success, failure) {
                Ok(_) => return Some(free),
                Err(now) if is_free(now) => free = now,
                Err(_) => return None,
            }
        }
    }

    /// Takes the lock if it is free: one compare-exchange (from a count of 0: the locks
    /// that no `Lock::release` reaches; two for a `Lock` that was released so).
    #[inline]
    pub(crate) fn try_lock(&self, me: Owner) -> bool {
        self.try_lock_from(0, me).is_some()
    }

    /// [`RawMutex::try_lock`] from the guess `free`, saying the count of releases taken.
    #[inline]
    fn try_lock_from(&self, free: u64, me: Owner) -> Option<u64> {
        let taken = self.claim(free, me, Ordering::Acquire, Ordering::Relaxed);
        if taken.is_some() {
            interleave("mutex.lock.claimed");
        }
        taken
    }

    /// A `Lock`'s guess of its free record: the count its record holds now (a relaxed load
    /// of the line the compare-exchange takes next).
    #[inline]
    fn count_now(&self) -> u64 {
        self.owner.load(Ordering::Relaxed) & COUNT_MASK
    }

    /// [`RawMutex::try_lock`] for a `Lock`, whose record's count of releases the take
    /// keeps: the count taken, or `None`.
    #[inline]
    pub(crate) fn try_lock_counted(&self, me: Owner) -> Option<u64> {
        self.try_lock_from(self.count_now(), me)
    }

    /// Takes the lock, waiting at most until `deadline`. A dead holder does not block:
    /// its lock is taken over and the result says so.
    #[inline]
    pub(crate) fn lock(&self, me: Owner, deadline: Deadline) -> Result<Acquired, TimedOut> {
        if self.try_lock(me) {
            return Ok(Acquired::Clean);
        }
        self.lock_slow(me, deadline).map(|(acquired, _)| acquired)
    }

    /// [`RawMutex::lock`] for a `Lock`: also the count of releases its record holds, which
    /// the take kept ([`COUNT_MASK`]).
    #[inline]
    pub(crate) fn lock_counted(&self, me: Owner, deadline: Deadline) -> Result<(Acquired, u64), TimedOut> {
        if let Some(count) = self.try_lock_counted(me) {
            return Ok((Acquired::Clean, count));
        }
        self.lock_slow(me, deadline)
    }

    /// A waiter's look: marks the word (a waiter may sleep), then tries the lock. Taken,
    /// the mark stays: others may sleep too, and our release wakes one of them. Not taken,
    /// the holder's release (a swap of the lock after this look) sees the mark.
    fn mark_then_try(&self, me: Owner) -> Option<u64> {
        self.word.fetch_or(SLEEPERS, Ordering::SeqCst);
        self.claim(0, me, Ordering::SeqCst, Ordering::SeqCst)
    }

    #[cold]
    fn lock_slow(&self, me: Owner, deadline: Deadline) -> Result<(Acquired, u64), TimedOut> {
        if !deadline.passed()
            && let Some(count) = self.spin_then_yield(me, deadline.slice(LOCK_SPIN))
        {
            return Ok((Acquired::Clean, count));
        }
        let mut slice = FIRST_SLICE;
        loop {
            if let Some(count) = self.mark_then_try(me) {
                return Ok((Acquired::Clean, count));
            }
            if deadline.passed() {
                // However short the wait, a dead holder's lock is taken over: a timeout is
                // no reason to report a lock that nobody holds any more as busy.
                return self.take_over(me).ok_or(TimedOut);
            }
            // Asleep while the word is marked: a release clears it before it wakes one.
            if sys::futex_wait(&self.word, SLEEPERS, Some(deadline.slice(slice))) == sys::FutexWait::TimedOut {
                if deadline.passed() {
                    return self.take_over(me).ok_or(TimedOut);
                }
                slice = (slice * 2).min(MAX_SLICE);
                if let Some(taken) = self.take_over(me) {
                    return Ok(taken);
                }
            }
        }
    }

    /// The wait before sleeping: a few looks while the holder may be about to unlock (a
    /// ring's side is held for the copy of one small message), then a look per yield of
    /// the processor, for at most `limit`; whether the lock was taken.
    ///
    /// Looks are loads, and the CAS comes only when the lock reads free: a waiter that
    /// CASes in a loop takes the line away from the holder at every try, and in a ring
    /// that line also holds the position the holder is writing. The yields matter when
    /// the waiters outnumber the processors (eight producers or consumers of one queue,
    /// sixteen pool workers sending results on two processors): a waiter that keeps
    /// spinning while another process of the same side holds the lock runs in place of a
    /// process of the other side, which would have work; one that yields lets the
    /// scheduler run that one, and the holder keeps the lock's lines in its cache.
    fn spin_then_yield(&self, me: Owner, limit: Duration) -> Option<u64> {
        let start = Instant::now();
        let mut looks: u32 = 0;
        loop {
            let now = self.owner.load(Ordering::Relaxed);
            if is_free(now)
                && let Some(count) = self.try_lock_from(now, me)
            {
                return Some(count);
            }
            looks = looks.saturating_add(1);
            if looks < SPIN_LOOKS {
                spin_loop();
                continue;
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::yield_now();
        }
    }

    /// If the holder is dead, takes the lock over.
    fn take_from_dead_owner(&self, me: Owner) -> Option<Acquired> {
        self.take_over(me).map(|(acquired, _)| acquired)
    }

    /// [`RawMutex::take_from_dead_owner`], saying the count of releases kept.
    fn take_over(&self, me: Owner) -> Option<(Acquired, u64)> {
        let record = self.owner.load(Ordering::Acquire);
        if is_free(record) {
            return None;
        }
        interleave("read the word");
        let (owner, start) = recorded(record);
        if sys::process_alive_as_recorded(owner, start) {
            return None;
        }
        interleave("found the owner dead");
        // One compare-exchange from the record found dead: it fails when the lock changed
        // hands during the check (released, taken, taken over by another taker), even back
        // to the same id, which a live process records with its own start time. A dead
        // holder never records itself again. The count of releases stays: a guard of the
        // dead process's is gone with it (a fork child's copy releases nothing).
        let count = record & COUNT_MASK;
        if self.owner.compare_exchange(record, me.record() | count, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return None;
        }
        interleave("claimed");
        // Killed here, the lock records us: whoever comes next finds us dead in turn.
        crash_point!("mutex.take_over.claimed");
        // The dead holder's sleepers may sleep on: our release wakes one. A release, so that
        // a `wanted` after our release sees what we did before (see `unlock_then`).
        self.word.fetch_or(SLEEPERS, Ordering::AcqRel);
        Some((Acquired::OwnerDied, count))
    }

    /// Releases the lock (whoever holds it: a `Lock` may be released by another process).
    #[inline]
    pub(crate) fn unlock(&self) {
        self.unlock_then(|| {});
    }

    /// [`RawMutex::unlock`], then `wanted()` when the word was marked (a waiter may sleep,
    /// or [`RawMutex::mark_wanted`] marked it): the branch the unlock takes anyway to wake
    /// a sleeper, so an uncontended unlock costs nothing more. `wanted` sees what a
    /// [`RawMutex::mark_wanted`] caller did before marking (and what a dead owner's taker
    /// did before its takeover): those RMWs are releases, and the swap of the word reads
    /// from one, or from an RMW after it in its release sequence (every write to the word
    /// is an RMW). Not what a sleeping waiter did: `lock_slow` marks the word with an RMW
    /// that orders that, but needs not (a sleeper is owed only the wake-up).
    ///
    /// The lock's swap is `SeqCst`, and so is the look at the word after it: a waiter that
    /// marks the word, then finds the lock held (both `SeqCst`), is seen. Acquire too (the
    /// same `xchg` on x86): a [`RawMutex::pass`] made during the hold is seen by what the
    /// releaser does next (`Sleepers::notify_after_unlock`).
    ///
    /// The swap and the look are two steps, so the look may see a mark made on the *next*
    /// holding: between them another takes the lock and a caller marks it wanted (or a
    /// waiter marks it, finding it held). This release then clears that mark and runs its
    /// `wanted` while the next holder still holds, and that holder's release finds the word
    /// clear. So a mark is acted on by the first release whose look comes after it: the
    /// marked holding's, or the one before it (review167 L1,
    /// `a_mark_on_a_holding_may_go_to_the_release_before_it`). Keeping it for the marked
    /// holding's release would need the lock and the word in one atomic.
    #[inline]
    pub(crate) fn unlock_then(&self, wanted: impl FnOnce()) {
        self.owner.swap(0, Ordering::SeqCst);
        interleave("mutex.unlock.started");
        if self.word.load(Ordering::SeqCst) != 0 {
            self.wake_one(wanted);
        }
    }

    /// A `Lock` guard's release: releases the lock if `me` holds it with the count of
    /// releases `count` (the hold the guard took: [`COUNT_MASK`]), and says whether it did:
    /// one compare-exchange from that record to the free record of the same count, then
    /// [`RawMutex::unlock`]'s look at the word. It fails, and releases nothing, once any
    /// [`RawMutex::release_counting`] came after that take: whoever holds the lock since,
    /// another process, another thread of this one or this thread again, holds it with
    /// another record (syn106 made the unlock a compare-exchange from the process's record,
    /// for another process's take; fix134 put the count in the record, for the process's
    /// own). So a release landing between the caller's look and this unlock is seen too.
    /// A locked RMW of the line as the swap is (syn106: +2 Ir an uncontended `Lock` pair
    /// against the swap, `lock_probe lock` 53.0 -> 55.0: the expected record and the test
    /// of the result).
    #[inline]
    pub(crate) fn unlock_if_held_as(&self, me: Owner, count: u64) -> bool {
        let held = me.record() | count;
        if self.owner.compare_exchange(held, count, Ordering::SeqCst, Ordering::Relaxed).is_err() {
            return false;
        }
        interleave("mutex.unlock.started");
        if self.word.load(Ordering::SeqCst) != 0 {
            self.wake_one(|| {});
        }
        true
    }

    /// A release's wake-up: clears the mark (a woken waiter that takes the lock sets it
    /// again) and wakes one sleeper.
    #[cold]
    fn wake_one(&self, wanted: impl FnOnce()) {
        if self.word.swap(0, Ordering::AcqRel) != 0 {
            sys::futex_wake(&self.word, 1);
            wanted();
        }
    }

    /// Marks a held lock wanted without sleeping, so that a release takes
    /// [`RawMutex::unlock_then`]'s branch: for a caller that gave up waiting and leaves the
    /// holder something to do (`Ring`'s take refused by the consumers' lock). An RMW of the
    /// word (release) even when it was marked already, so that the release that reads it
    /// sees what the caller did before. True when the lock is held at a look after the
    /// mark: then a release whose look at the word comes after the mark runs its `wanted`,
    /// at the latest the release of the holding that look found, and maybe the one before
    /// it, whose swap came before that holding's take and whose look after the mark (it
    /// then runs `wanted` while the marked holder still holds: review167 L1, see
    /// [`RawMutex::unlock_then`]). False when the lock is free at that look (the caller
    /// tries it again; the mark may then go to the next holding's release). A lock held by a
    /// holder that died is marked: the caller's wait takes it over. At worst a release
    /// wakes no sleeper.
    pub(crate) fn mark_wanted(&self) -> bool {
        if is_free(self.owner.load(Ordering::Relaxed)) {
            return false;
        }
        self.word.fetch_or(SLEEPERS, Ordering::SeqCst);
        // Held at this look (`SeqCst`, after the mark): the holder's release swaps the lock
        // after it, then looks at the word (`SeqCst`), and sees the mark unless a release
        // looked at the word between the two and acted on the mark first (L1 above).
        !is_free(self.owner.load(Ordering::SeqCst))
    }

    /// An RMW of the lock that changes nothing, for [`Sleepers::through`]. Every write to
    /// the lock is an RMW, so the pass has a place in one order with the takes and
    /// releases: what the caller did before it is seen by whoever takes the lock after it,
    /// or releases it after it with [`RawMutex::unlock`] (acquire too; not
    /// [`RawMutex::release_counting`]), and what a holder did before a release that came
    /// first is seen by the caller after it. Never waits: a dead or stopped holder changes
    /// nothing.
    ///
    /// The argument needs only `AcqRel`; the pass is `SeqCst` because of what LLVM makes of
    /// it on x86-64. Below `SeqCst`, an RMW that changes nothing and whose result is unused
    /// becomes no instruction at all, only a compiler barrier (llvm-project#101551, an open
    /// miscompilation; review95 M1): a store the caller made before the pass could still sit
    /// in the store buffer when a load after it runs. At `SeqCst` it becomes a locked `or`
    /// of 0 on the stack (seen in the release build's `Sleepers::wait`: fix71), a full
    /// barrier instead of an access to the lock. That orders the same on x86, where every
    /// locked instruction (the lock's takes and releases among them) has its place in one
    /// total order and drains the store buffer. On AArch64 it is an RMW of the lock
    /// (`ldsetal`, or an exclusive pair).
    ///
    /// [`Sleepers::through`]: super::Sleepers::through
    #[inline]
    pub(crate) fn pass(&self) {
        self.owner.fetch_or(0, Ordering::SeqCst);
    }

    /// `Lock::release`: releases the lock whoever holds it, counting the release in the
    /// same RMW (a compare-exchange from the record found to the free record of the next
    /// count, [`COUNT_MASK`]): every guard of a hold taken before holds nothing from here
    /// ([`RawMutex::unlock_if_held_as`]), and a release killed anywhere either did all of
    /// that or nothing (review171 H1: the count and the unlock were two RMWs, and a releaser
    /// killed between them left the holder's guard stale with the lock still held, for
    /// ever). `false` if it was not locked (a `release` too many, which Python reports as
    /// an error): then nothing is written.
    #[inline]
    pub(crate) fn release_counting(&self) -> bool {
        let mut now = self.owner.load(Ordering::Relaxed);
        loop {
            if is_free(now) {
                return false;
            }
            let next = (now + COUNT_ONE) & COUNT_MASK;
            match self.owner.compare_exchange_weak(now, next, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(found) => now = found,
            }
        }
        interleave("mutex.unlock.started");
        if self.word.load(Ordering::SeqCst) != 0 {
            self.wake_one(|| {});
        }
        true
    }

    /// Whether `me` holds the lock (the id and the start time both match, so that a reused
    /// thread id is not taken for the owner; whatever the record's count of releases).
    #[inline]
    pub(crate) fn is_held_by(&self, me: Owner) -> bool {
        self.owner.load(Ordering::Acquire) & !COUNT_MASK == me.record()
    }

    /// Whether `me` holds the lock with the count of releases `count`: a `Lock` guard's
    /// hold, not one taken after a [`RawMutex::release_counting`].
    #[inline]
    pub(crate) fn is_held_as(&self, me: Owner, count: u64) -> bool {
        self.owner.load(Ordering::Acquire) == me.record() | count
    }

    /// The id of the holder, if any.
    pub(crate) fn owner(&self) -> Option<u32> {
        let (id, _) = recorded(self.owner.load(Ordering::Relaxed));
        (id != 0).then_some(id)
    }

    /// Whether its holder is stopped (`SIGSTOP`, a debugger: it will not let go by itself):
    /// the process (or thread) the lock records, with the start time recorded for it, so
    /// that another one reusing the number is not taken for it.
    ///
    /// A holder recorded with no start time (one that could not be read) is judged by its
    /// number alone, and only when the same one is seen at two looks: `startless` is the
    /// caller's memory of such a holder at its last look, a wait apart (review72 L2).
    pub(crate) fn owner_stopped(&self, startless: &mut Option<u32>) -> bool {
        let (owner, start) = recorded(self.owner.load(Ordering::Acquire));
        let seen_before = std::mem::replace(startless, (owner != 0 && start == 0).then_some(owner));
        match (owner, start) {
            (0, _) => false,
            (_, 0) => seen_before == Some(owner) && sys::process_stopped_as_recorded(owner, 0),
            _ => sys::process_stopped_as_recorded(owner, start),
        }
    }

    /// Whether somebody holds it.
    pub(crate) fn is_locked(&self) -> bool {
        self.owner().is_some()
    }

    /// If the holder is dead, takes the lock over (without waiting); for callers that
    /// must recover a lock outside `lock`.
    pub(crate) fn recover_if_owner_dead(&self, me: Owner) -> Option<Acquired> {
        self.take_from_dead_owner(me)
    }

    /// Takes the lock if it is free or its holder is dead; never waits. Reads `/proc` only
    /// when the lock is held.
    #[inline]
    pub(crate) fn try_lock_or_take_over(&self, me: Owner) -> Option<Acquired> {
        if self.try_lock(me) { Some(Acquired::Clean) } else { self.take_from_dead_owner(me) }
    }

    /// [`RawMutex::try_lock_or_take_over`] for a `Lock`: also the count of releases kept.
    #[inline]
    pub(crate) fn try_lock_or_take_over_counted(&self, me: Owner) -> Option<(Acquired, u64)> {
        match self.try_lock_counted(me) {
            Some(count) => Some((Acquired::Clean, count)),
            None => self.take_over(me),
        }
    }
}

impl RawMutex {
    /// One poll of an async acquire: the lock, or `Pending` with `cx`'s waker registered
    /// (through `waiting`, a waker thread sleeps on the word, marked, so that the holder's
    /// release wakes it). A dead holder's lock is taken over when the future's liveness
    /// check is due. A future dropped after an unlock woke it passes the wake-up on
    /// (`Waiting`'s drop).
    pub(crate) fn poll_lock(
        &self,
        me: Owner,
        waiting: &mut super::Waiting,
        cx: &std::task::Context<'_>,
    ) -> std::task::Poll<Acquired> {
        self.poll_lock_counted(me, waiting, cx).map(|(acquired, _)| acquired)
    }

    /// [`RawMutex::poll_lock`], saying the count of releases the take kept (a `Lock`'s).
    pub(crate) fn poll_lock_counted(
        &self,
        me: Owner,
        waiting: &mut super::Waiting,
        cx: &std::task::Context<'_>,
    ) -> std::task::Poll<(Acquired, u64)> {
        use std::task::Poll;
        // Woken by an unlock, others may sleep too: the lock is taken below with the word
        // marked, as `lock_slow` does after a sleep, so that our unlock wakes one.
        if !waiting.has_waited()
            && let Some(count) = self.try_lock_counted(me)
        {
            waiting.reset();
            return Poll::Ready((Acquired::Clean, count));
        }
        if waiting.check_due()
            && let Some(taken) = self.take_over(me)
        {
            waiting.reset();
            return Poll::Ready(taken);
        }
        if let Some(count) = self.mark_then_try(me) {
            waiting.reset();
            return Poll::Ready((Acquired::Clean, count));
        }
        // The waker thread sleeps while the word is marked: a release clears it.
        waiting.arm_word(&self.word, SLEEPERS, cx);
        Poll::Pending
    }
}

/// How long a call that must not wait (a `try_` call, a future's poll, a timed call's last
/// look past its deadline) waits for a primitive's internal guard: a running holder keeps
/// it for a few instructions, a process preempted there (the machine loaded) for a
/// scheduler slice, which must not make a free permit look taken; a stopped one
/// (`SIGSTOP`, a debugger) for ever, which must not hold the call up (guard45).
pub(crate) const GUARD_GRACE: Duration = Duration::from_millis(10);

/// A guard for internal critical sections of the shm layer, released on drop.
#[derive(Debug)]
pub(crate) struct RawGuard<'a> {
    mutex: &'a RawMutex,
}

impl<'a> RawGuard<'a> {
    /// Locks `mutex` for this process, waiting as long as it takes (a dead holder is taken
    /// over, so this cannot hang on a crash).
    #[inline]
    pub(crate) fn lock(mutex: &'a RawMutex) -> Self {
        // A dead holder's lock is taken over; the structures it guards are written so that
        // a crash at any point leaves them usable (the heap's crash points, killed at each
        // step by the `shm` section of tests/soundness.rs).
        let _ = mutex.lock(Owner::process(), Deadline::NEVER);
        Self { mutex }
    }
}

impl<'a> RawGuard<'a> {
    /// Locks `mutex` for this process, waiting at most until `deadline` (a dead holder is
    /// taken over at once); `None` when a live holder kept it (stopped, say) until then.
    pub(crate) fn lock_until(mutex: &'a RawMutex, deadline: Deadline) -> Option<Self> {
        mutex.lock(Owner::process(), deadline).ok().map(|_| Self { mutex })
    }

    /// [`RawGuard::lock_until`], waiting on past `deadline` while the holder runs: `None`
    /// only when it is stopped (`SIGSTOP`, a debugger) at `deadline` or at a look after it,
    /// one per [`GUARD_GRACE`]. Slow is waited for (a long critical section, a process
    /// preempted on a loaded machine), stopped fails: for a step whose giving up costs
    /// more than a wait (bar47). A single look: a process caught stopping is taken for
    /// stopped, one caught resuming for running.
    pub(crate) fn lock_unless_stopped(mutex: &'a RawMutex, deadline: Deadline) -> Option<Self> {
        let mut deadline = deadline;
        let mut startless = None;
        loop {
            if let Some(guard) = Self::lock_until(mutex, deadline) {
                return Some(guard);
            }
            if mutex.owner_stopped(&mut startless) {
                return None;
            }
            deadline = Deadline::after(GUARD_GRACE);
        }
    }

    /// [`RawGuard::lock_unless_stopped`] until `grace` from now, the clock read only when
    /// the lock is not free at once: a free lock costs what [`RawGuard::lock`]'s does (a
    /// path taken at every message, such as a `JoinableQueue` take's count).
    #[inline]
    pub(crate) fn lock_unless_stopped_within(mutex: &'a RawMutex, grace: Duration) -> Option<Self> {
        if mutex.try_lock(Owner::process()) {
            return Some(Self { mutex });
        }
        Self::lock_unless_stopped(mutex, Deadline::after(grace))
    }

    /// Locks `mutex` for this process if it is free or its holder is dead; never waits.
    pub(crate) fn try_lock(mutex: &'a RawMutex) -> Option<Self> {
        mutex.try_lock_or_take_over(Owner::process()).map(|_| Self { mutex })
    }

    /// Whether a round of retries may look at the holders of the locks it finds held (a
    /// `kill` and a `/proc` read each): at most once per [`GUARD_GRACE`] in this process
    /// (a clock read, and a compare-and-swap of the process's stamp when due). For the
    /// retries made at every announcement of the process (a kept look's,
    /// `pins::let_go_of_kept`), which a stopped holder could make for ever (review123 M2).
    /// Asked once per round, and the answer given to every lock of the round
    /// ([`RawGuard::try_lock_looking_if`]): asked per lock, the first lock of each round
    /// took every due stamp, and a later lock whose holder died was never looked at
    /// while the first one's holder stayed stopped (review124 M2).
    pub(crate) fn looks_due() -> bool {
        static NEXT_LOOK_NS: AtomicU64 = AtomicU64::new(0);
        let now = sys::monotonic_ns();
        let next = NEXT_LOOK_NS.load(Ordering::Relaxed);
        let grace = GUARD_GRACE.as_nanos() as u64;
        now >= next && NEXT_LOOK_NS.compare_exchange(next, now + grace, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// Locks `mutex` for this process if it is free (one compare-and-swap), or, when `look`
    /// (the round's [`RawGuard::looks_due`]), if its holder is dead; never waits. A dead
    /// holder's lock is also taken over by any other locker, or its reaper; the next round
    /// here finds it free.
    #[inline]
    pub(crate) fn try_lock_looking_if(mutex: &'a RawMutex, look: bool) -> Option<Self> {
        if mutex.try_lock(Owner::process()) {
            return Some(Self { mutex });
        }
        if !look {
            return None;
        }
        Self::try_lock(mutex)
    }
}

impl Drop for RawGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::shm::Waiting;
    use crate::shm::crash::interleaving;
    use crate::shm::reactor::tests::{LIMIT, SCENES, SETTLE, Signal, leak_in_heap};

    /// review167 L1, the record of it: a `mark_wanted` made on holding H can be acted on by
    /// the release of the holding before H, whose look at the word comes after its swap of
    /// the lock (two steps since the lock became the holder record): that release runs its
    /// `wanted` while H holds, and H's release runs none. What holds is that a release
    /// after the mark runs `wanted` (the ring's argument, `Ring::leave_note`).
    #[test]
    fn a_mark_on_a_holding_may_go_to_the_release_before_it() {
        let m: &'static RawMutex = Box::leak(Box::new(RawMutex::new()));
        let a = Owner { id: 0x3f_fff0, start: 1 };
        let h = Owner::process();
        assert!(m.try_lock(a));
        let moves = move |step: &str| {
            if step == "mutex.unlock.started" {
                // A let go (its swap): H takes the lock, and a refused taker marks H's holding.
                assert!(m.try_lock(h));
                assert!(m.mark_wanted(), "H holds: the mark is H's");
            }
        };
        let a_ran = std::rc::Rc::new(std::cell::Cell::new(false));
        let seen = a_ran.clone();
        interleaving(moves, || m.unlock_then(|| seen.set(true)));
        assert!(m.is_held_by(h));
        let mut h_ran = false;
        m.unlock_then(|| h_ran = true);
        println!(
            "A's release (before the mark) ran wanted: {}; H's release (the marked holding): {h_ran}",
            a_ran.get()
        );
        assert!(a_ran.get() && !h_ran, "the release before the marked holding acted on the mark");
        assert!(!m.is_locked());
    }

    /// A kept look's retry (`RawGuard::try_lock_looking_if`, a round's `looks_due`) on a lock whose holder
    /// is alive reads `/proc` at most once per [`GUARD_GRACE`], not at every try (review123
    /// M2: `RawGuard::try_lock` read `/proc/<pid>/stat` at each, 10000 reads for 10000
    /// tries). Counted on this thread, against the time the tries took (no duration is
    /// asserted).
    #[test]
    fn a_kept_looks_retry_reads_proc_at_most_once_per_grace() {
        let mutex = RawMutex::new();
        // Held by this (live) process: the retry must not take it over.
        assert!(mutex.try_lock(Owner::process()));
        let tries = 10_000u64;
        let (reads, start) = (sys::stat_reads(), sys::monotonic_ns());
        for _ in 0..tries {
            assert!(RawGuard::try_lock_looking_if(&mutex, RawGuard::looks_due()).is_none());
        }
        let (reads, took) = (sys::stat_reads() - reads, sys::monotonic_ns() - start);
        let bound = took / GUARD_GRACE.as_nanos() as u64 + 1;
        println!("{tries} retries: {reads} /proc reads (at most {bound} allowed)");
        assert!(reads <= bound, "{reads} /proc reads for {tries} retries in {took} ns");
        mutex.unlock();
    }

    /// review124 M2: the retries of one announcement, the product's round
    /// (`pins::retry_round`, which `pins::let_go_of_kept` runs over its kept slots), over
    /// two kept looks: the first one's lock held by a live process (here this one, a holder
    /// stopped for good), the second's by a dead one. Every kept look of a round is told the
    /// same (whether the round looks at holders), and the dead holder's lock is taken over at
    /// the first round that looks. Decided per look (one process-wide stamp taken per lock),
    /// the first slot took every due stamp and the dead holder was never looked at: the
    /// assert on the round's two answers fails at the first due round. Rounds go on until the
    /// takeover, bounded by the watchdog, not by time (review132 L1: the test wrote out its
    /// own round, and passed with the product's reverted).
    #[test]
    fn a_dead_holder_behind_a_live_one_is_taken_over_within_a_few_graces() {
        let _w = crate::testing::watchdog(std::time::Duration::from_secs(60));
        let live = RawMutex::new();
        assert!(live.try_lock(Owner::process()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let dead = RawMutex::new();
        assert!(dead.try_lock(Owner { id: dead_pid, start: 12345 }));
        assert!(!sys::process_alive(dead_pid, 12345), "the child is dead");
        let (mut rounds, mut looks) = (0u64, 0u64);
        loop {
            rounds += 1;
            let mut told = Vec::with_capacity(2);
            let mut taken = false;
            crate::shm::pins::retry_round([&live, &dead], |m, look| {
                told.push(look);
                match RawGuard::try_lock_looking_if(m, look) {
                    Some(g) if std::ptr::eq(m, &dead) => {
                        drop(g);
                        taken = true;
                    }
                    Some(_) => panic!("a live holder's lock taken over"),
                    None => {}
                }
            });
            looks += u64::from(told[0]);
            assert_eq!(told[0], told[1], "round {rounds}: the kept looks of one round told apart: {told:?}");
            if taken {
                break;
            }
            // Not a bound: rounds as announcements make them, without spinning a core.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        println!("{rounds} rounds ({looks} looking), the dead holder's lock taken over");
        live.unlock();
    }

    /// `mark_wanted` marks a held lock only, and that lock's `unlock_then` runs its branch
    /// (only then): what a ring's take refused by the consumers' lock counts on
    /// (`Ring::release_consumers`).
    #[test]
    fn a_held_lock_marked_wanted_runs_its_releases_branch_and_a_free_one_is_not_marked() {
        let m = RawMutex::new();
        let me = Owner::process();
        assert!(!m.mark_wanted(), "a free lock is not marked");
        assert!(!m.is_locked());
        let mut ran = 0;
        assert!(m.try_lock(me));
        m.unlock_then(|| ran += 1);
        assert_eq!(ran, 0, "an unmarked release");
        assert!(m.try_lock(me));
        assert!(m.mark_wanted());
        assert!(m.mark_wanted(), "marked again");
        assert!(m.is_held_by(me), "the mark changes no holder");
        m.unlock_then(|| ran += 1);
        assert_eq!(ran, 1, "the marked release");
        assert!(!m.is_locked());
    }

    /// A mutex in the family heap (a waker thread watches only words there), unlocked.
    fn mutex_in_heap() -> &'static RawMutex {
        leak_in_heap(RawMutex::new())
    }

    /// A sleeper that counts on wake-ups alone (a blocking `lock` between two liveness
    /// checks, made endless so that a lost wake-up shows as a hang, not as a delay).
    fn lock_by_wake_ups_only(m: &RawMutex, me: u32) {
        let me = Owner { id: me, start: 0 };
        while m.mark_then_try(me).is_none() {
            sys::futex_wait(&m.word, SLEEPERS, None);
        }
    }

    /// The holder's unlock goes to the async waiter, which sleeps first (its waker thread
    /// is ahead in the futex queue); the blocking sleeper started after it.
    struct Scene {
        m: &'static RawMutex,
        waiting: Waiting,
        waker: Waker,
        woken: mpsc::Receiver<()>,
        sleeper_locked: mpsc::Receiver<()>,
        async_owner: Owner,
    }

    fn unlock_to_the_async_waiter() -> Scene {
        let m = mutex_in_heap();
        let holder = Owner { id: 0x3f_f001, start: 0 };
        assert!(m.try_lock(holder));
        let (waker, woken) = Signal::waker();
        let async_owner = Owner::process();
        // No liveness check (a timer wake-up) while the scene plays.
        let mut waiting = Waiting::first_check_after(LIMIT);
        let pending = m.poll_lock(async_owner, &mut waiting, &Context::from_waker(&waker));
        assert!(pending.is_pending());
        // Ordering only (the futex queue is first come, first woken), nothing measured.
        std::thread::sleep(SETTLE);
        let (tx, sleeper_locked) = mpsc::channel();
        std::thread::spawn(move || {
            lock_by_wake_ups_only(m, 0x3f_f002);
            let _ = tx.send(());
        });
        std::thread::sleep(SETTLE);
        m.unlock();
        woken.recv_timeout(LIMIT).expect("the async waiter is woken by the unlock");
        Scene { m, waiting, waker, woken, sleeper_locked, async_owner }
    }

    #[test]
    fn an_async_waiter_dropped_after_its_wake_up_passes_it_on() {
        let _one = SCENES.lock().unwrap_or_else(|e| e.into_inner());
        let scene = unlock_to_the_async_waiter();
        // The future is dropped without another poll (a `select!` took another branch).
        drop(scene.waiting);
        scene.sleeper_locked.recv_timeout(LIMIT).expect("the sleeper gets the free lock");
        drop(scene.woken);
    }

    #[test]
    fn an_async_waiter_that_takes_the_lock_after_sleeping_wakes_the_next_sleeper_on_unlock() {
        let _one = SCENES.lock().unwrap_or_else(|e| e.into_inner());
        let mut scene = unlock_to_the_async_waiter();
        let got = scene.m.poll_lock(scene.async_owner, &mut scene.waiting, &Context::from_waker(&scene.waker));
        assert_eq!(got, Poll::Ready(Acquired::Clean));
        scene.m.unlock();
        scene.sleeper_locked.recv_timeout(LIMIT).expect("the sleeper gets the lock after the async waiter");
    }

    #[test]
    fn a_lock_that_changed_hands_and_came_back_during_the_check_is_not_taken_over() {
        let mutex: &'static RawMutex = Box::leak(Box::new(RawMutex::new()));
        // B holds the lock (this process); D is another live process (our parent, or init),
        // one that started in another clock tick than B: with B's start time, the taker's
        // check (B's pid, D's start time) would find B alive, and D would keep the lock.
        let b = Owner::process();
        let d = [std::os::unix::process::parent_id(), 1]
            .into_iter()
            .filter_map(|id| Some(Owner { id, start: sys::process_start_time(id)? }))
            .find(|d| d.start != b.start)
            .expect("a live process that started in another clock tick than this one");
        assert!(mutex.try_lock(b));
        mutex.word.fetch_or(SLEEPERS, Ordering::Relaxed);
        // After the taker read the lock: B lets go, D takes the lock, lets go, B takes it
        // again. The taker checks what it read, B's id with B's start time (one atomic
        // word since aud107 L2: the id and a start time read apart could be B's and D's).
        let moves = move |step: &str| {
            if step == "read the word" {
                mutex.unlock();
                assert!(mutex.try_lock(d));
                mutex.unlock();
                assert!(mutex.try_lock(b));
            }
        };
        let taker = Owner { id: 0x3f_fffe, start: 1 };
        let taken = interleaving(moves, || mutex.take_from_dead_owner(taker));
        assert_eq!(taken, None, "B, alive, holds the lock: a second holder would race it");
        assert!(mutex.is_held_by(b));
    }

    /// aud107 L2: a holder killed inside its acquire, its release or its takeover, between
    /// the two stores that change hands (the lock and the record of its holder), left the
    /// word naming it with no start time, and was judged by its number alone: a live
    /// stranger reusing the number kept the lock held for as long as it lived. Here the
    /// holder "had" the number of a live process (our parent, or init) and another start
    /// time (it is dead, its number reused), and is "killed" at each such step (the step
    /// panics: nothing after it runs); the next acquirer must have the lock.
    #[test]
    fn a_holder_killed_between_the_locks_two_stores_is_judged_by_its_start_time_too() {
        let stranger = [std::os::unix::process::parent_id(), 1]
            .into_iter()
            .find_map(|id| Some(Owner { id, start: sys::process_start_time(id)? }))
            .expect("a live process");
        let dead = Owner { id: stranger.id, start: stranger.start + 1 };
        assert!(!sys::process_alive(dead.id, dead.start), "the holder, by its number and start time, is dead");
        let killed_at = |step: &'static str| move |now: &str| assert_ne!(now, step, "killed at {step}");
        let mut seen = Vec::new();
        for case in ["acquire", "release", "takeover"] {
            let mutex: &'static RawMutex = Box::leak(Box::new(RawMutex::new()));
            let killed = std::panic::catch_unwind(|| match case {
                "acquire" => {
                    let _ = interleaving(killed_at("mutex.lock.claimed"), || mutex.try_lock(dead));
                }
                "release" => {
                    assert!(mutex.try_lock(dead));
                    interleaving(killed_at("mutex.unlock.started"), || mutex.unlock());
                }
                _ => {
                    // An earlier holder, dead too (a pid no process has), taken over by `dead`.
                    let mut ended = std::process::Command::new("true").spawn().unwrap();
                    let earlier = Owner { id: ended.id(), start: 1 };
                    ended.wait().unwrap();
                    assert!(mutex.try_lock(earlier));
                    let _ = interleaving(killed_at("claimed"), || mutex.take_from_dead_owner(dead));
                }
            });
            assert!(killed.is_err(), "{case}: the step was reached");
            let taken = mutex.try_lock_or_take_over(Owner::process());
            println!("{case}: killed inside; the next acquirer's try (a dead holder's lock taken over): {taken:?}");
            seen.push((case, taken));
            if taken.is_some() {
                mutex.unlock();
            }
        }
        // Killed in its release, the holder may have let go already (the lock is then free)
        // or not (then taken over): either way the next acquirer has the lock.
        assert!(seen.iter().all(|(_, taken)| taken.is_some()), "a dead holder kept its lock: {seen:?}");
    }

    #[test]
    fn a_lock_just_taken_over_is_not_taken_over_again_from_its_live_taker() {
        let mutex: &'static RawMutex = Box::leak(Box::new(RawMutex::new()));
        // B held the lock and ended.
        let mut ended = std::process::Command::new("true").spawn().unwrap();
        let b = ended.id();
        ended.wait().unwrap();
        mutex.word.store(SLEEPERS, Ordering::Relaxed);
        mutex.owner.store(Owner { id: b, start: 12345 }.record(), Ordering::Relaxed);
        // Another taker comes between this process's claim and its start time's store.
        let second = std::rc::Rc::new(std::cell::Cell::new(None));
        let seen = second.clone();
        let moves = move |step: &str| {
            if step == "claimed" {
                seen.set(Some(mutex.take_from_dead_owner(Owner { id: 0x3f_fffe, start: 1 })));
            }
        };
        let taken = interleaving(moves, || mutex.take_from_dead_owner(Owner::process()));
        assert_eq!(taken, Some(Acquired::OwnerDied), "B is dead: its lock is taken over");
        assert_eq!(second.get(), Some(None), "the taker, alive, holds the lock: a second holder would race it");
        assert!(mutex.is_held_by(Owner::process()));
    }

    /// More waiters than processors, holders that keep the lock for a few pauses and
    /// holders that keep it past the waiters' spin (who then yield, then sleep): every
    /// acquire gets the lock, one holder at a time (an increment split into a load and a
    /// store loses counts when two run at once).
    #[test]
    fn contended_waiters_spin_yield_and_sleep_and_hold_it_one_at_a_time() {
        let mutex: &'static RawMutex = Box::leak(Box::new(RawMutex::new()));
        let count: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        let (threads, rounds) = (8u64, 2000u64);
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                std::thread::spawn(move || {
                    let me = Owner::thread();
                    for i in 0..rounds {
                        let got = mutex.lock(me, Deadline::after(LIMIT));
                        assert_eq!(got, Ok(Acquired::Clean), "no holder dies here: every acquire is clean");
                        let n = count.load(Ordering::Relaxed);
                        if (i + t) % 500 == 0 {
                            // Past the waiters' spin: they yield, then sleep on the word.
                            std::thread::sleep(Duration::from_micros(300));
                        } else {
                            for _ in 0..(i % 16) {
                                spin_loop();
                            }
                        }
                        count.store(n + 1, Ordering::Relaxed);
                        mutex.unlock();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(count.load(Ordering::Relaxed), threads * rounds);
        assert!(!mutex.is_locked());
    }

    /// A child process stopped (`SIGSTOP`), killed and reaped when dropped however the
    /// test ends, and killed by the kernel when the test binary ends without a drop (an
    /// abort): nothing stays stopped (its `sleep` never runs out while it is).
    struct StoppedChild(std::process::Child);

    impl StoppedChild {
        fn new() -> StoppedChild {
            use std::os::unix::process::CommandExt;
            let mut sleep = std::process::Command::new("sleep");
            // SAFETY: between fork and exec the child only makes one `prctl`, which is
            // async-signal-safe, and touches no memory of the parent's.
            unsafe {
                sleep.arg("60").pre_exec(|| {
                    // Its parent thread's end kills it (this test's thread: dropped first).
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                })
            };
            let child = StoppedChild(sleep.spawn().expect("sleep runs"));
            // SAFETY: a signal to our own child, not reaped yet; no memory is involved.
            assert_eq!(unsafe { libc::kill(child.pid() as libc::pid_t, libc::SIGSTOP) }, 0);
            let deadline = Instant::now() + LIMIT;
            while !sys::process_stopped(child.pid()) {
                assert!(Instant::now() < deadline, "the child did not stop");
                std::thread::sleep(Duration::from_millis(5));
            }
            child
        }

        fn pid(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for StoppedChild {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A holder is stopped only as the process the lock recorded: the same pid with
    /// another start time (a holder that died, its pid now a stopped process's) is not
    /// (review69 L4: the barrier looked at the pid alone, and gave up on such a guard).
    #[test]
    fn a_holders_pid_reused_by_a_stopped_process_is_not_a_stopped_holder() {
        let child = StoppedChild::new();
        let pid = child.pid();
        let start = sys::process_start_time(pid).expect("the child exists");
        let mutex = RawMutex::new();
        let locked = |start| mutex.lock(Owner { id: pid, start }, Deadline::NEVER).is_ok();
        assert!(locked(start));
        assert!(mutex.owner_stopped(&mut None), "held by the stopped child");
        mutex.unlock();
        assert!(locked(start + 1));
        assert!(!mutex.owner_stopped(&mut None), "held by a process of that pid and another start time");
        mutex.unlock();
        assert!(!mutex.owner_stopped(&mut None), "held by nobody");
        drop(child);
    }

    /// A holder recorded without a start time (a thread whose start time could not be
    /// read; before aud107 L2's one-word record, any holder stopped between the word's
    /// compare-exchange and its start time's store) is found stopped: `lock_unless_stopped`
    /// gives up rather than waiting for ever (review72 L2: it took the lock for one changing
    /// hands at every look).
    #[test]
    fn a_holder_stopped_before_storing_its_start_time_is_a_stopped_holder() {
        let child = StoppedChild::new();
        let mutex: &'static RawMutex = Box::leak(Box::new(RawMutex::new()));
        mutex.owner.store(Owner { id: child.pid(), start: 0 }.record(), Ordering::Release);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let guard = RawGuard::lock_unless_stopped(mutex, Deadline::after(Duration::from_millis(20)));
            let _ = tx.send(guard.is_some());
            std::mem::forget(guard);
        });
        assert_eq!(rx.recv_timeout(LIMIT), Ok(false), "lock_unless_stopped gave up within {LIMIT:?}");
        drop(child);
    }
}
