//! Waiting without hanging: deadlines, the spin-then-park policy, and `Notify`, a futex
//! word pair that any process of the family can sleep on and ring.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::RawMutex;
use crate::sys;

/// When a blocking call gives up: `None` means never (but see the liveness checks, which
/// bound every wait by the death of the other side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// Never.
    pub(crate) const NEVER: Deadline = Deadline(None);

    /// `timeout` from now (saturating).
    pub(crate) fn after(timeout: Duration) -> Self {
        Deadline(Some(
            Instant::now().checked_add(timeout).unwrap_or_else(|| Instant::now() + Duration::from_secs(86400 * 365)),
        ))
    }

    /// From an optional timeout.
    pub(crate) fn from_timeout(timeout: Option<Duration>) -> Self {
        timeout.map_or(Self::NEVER, Self::after)
    }

    /// At `when` (a time the caller has already read: no clock read here).
    pub(crate) fn at(when: Instant) -> Self {
        Deadline(Some(when))
    }

    /// Already passed (a zero timeout: look once, do not wait).
    pub(crate) fn now() -> Self {
        Deadline(Some(Instant::now()))
    }

    /// The later of this deadline and `grace` from now: a call that would give up at
    /// once waits `grace` for a guard a running process holds (reads the clock unless
    /// never).
    pub(crate) fn at_least(self, grace: Duration) -> Self {
        match self.0 {
            None => self,
            Some(at) => Deadline(Some(at.max(Instant::now() + grace))),
        }
    }

    /// Time left, `None` for never; zero once passed.
    pub(crate) fn remaining(self) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether it has passed.
    pub(crate) fn passed(self) -> bool {
        self.0.is_some_and(|d| Instant::now() >= d)
    }

    /// The shorter of `slice` and the time left.
    pub(crate) fn slice(self, slice: Duration) -> Duration {
        self.remaining().map_or(slice, |r| r.min(slice))
    }

    /// [`Deadline::slice`] as of `now`, a time the caller has already read.
    pub(crate) fn slice_at(self, now: Instant, slice: Duration) -> Duration {
        self.0.map_or(slice, |d| d.saturating_duration_since(now).min(slice))
    }
}

/// `d` in nanoseconds, saturating at `u64::MAX` (584 years) where `as_nanos() as u64`
/// would wrap a long timeout to a short one.
pub(crate) fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// How long a waiter spins before it parks. A futex wake-up costs tens of microseconds on
/// virtual machines, so a reply that comes sooner than that is worth spinning for.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

/// The first sleep of a parked waiter before it checks that the other side still lives;
/// each further sleep doubles, up to [`MAX_SLICE`].
pub(crate) const FIRST_SLICE: Duration = Duration::from_millis(2);
/// The longest sleep between two liveness checks.
pub(crate) const MAX_SLICE: Duration = Duration::from_millis(100);

/// Looks between two yields of a spin at first, and after a yield that gave the processor
/// away.
const LOOKS_PER_YIELD: u32 = 8;
/// The most looks between two yields, reached by doubling while yields come straight back.
const MAX_LOOKS_PER_YIELD: u32 = 1024;
/// A yield that took more than this many times the quickest yield the process has timed
/// ran another task on our processor (see [`timed_yield`]). A hand-over to the other side
/// and back costs two yields' system calls and two switches, so more than twice a yield
/// that comes straight back; 3 leaves room for the spread of those (their 90th percentile
/// is 1.6-1.8 times their minimum on the machine of stop 32, where a hand-over is 4.8).
const GAVE_AWAY_FACTOR: u64 = 3;

/// The quickest yield the process's spins have timed, in nanoseconds (`u64::MAX` before
/// the first): what a `sched_yield` that comes straight back costs on this machine. A
/// forked child starts with its parent's.
static QUICKEST_YIELD: AtomicU64 = AtomicU64::new(u64::MAX);

/// Yields the processor; whether the yield gave it away (another task ran on it meanwhile).
/// `before` is a time read just before the call (the spin reads it anyway, for its limit).
///
/// A yield that comes straight back costs a system call (about 230 ns on the 2-vCPU VM of
/// stop 32); one that runs another task costs two processor switches and that task's run
/// until it gives the processor back (1.1 µs or more there, a hand-over between two
/// processes that take turns). No fixed duration tells the two apart on every machine (3 µs
/// did on the VMs this was first tuned on; no hand-over reached it on that one), so a yield
/// counts as giving the processor away when it took more than [`GAVE_AWAY_FACTOR`] times
/// the quickest yield the process has timed. That minimum costs nothing to learn (every
/// yield of a spin is timed anyway), a busy machine only adds slow yields, which it
/// ignores, and a process whose every yield so far ran another task (both sides pinned to
/// one processor from their first wait) sees no yield as giving the processor away, as with
/// a threshold too high: the spins then behave as they did with 3 µs on that machine.
/// Hence [`learn_yield_cost`] in the main process, before it has children.
fn timed_yield(before: Instant) -> bool {
    std::thread::yield_now();
    let took = saturating_nanos(before.elapsed());
    let quickest = QUICKEST_YIELD.load(Ordering::Relaxed);
    if took < quickest {
        QUICKEST_YIELD.fetch_min(took, Ordering::Relaxed);
    }
    gave_away(took, quickest)
}

/// Whether a yield that took `took` ns gave the processor away, the quickest timed before it
/// having taken `quickest` (see [`timed_yield`]).
fn gave_away(took: u64, quickest: u64) -> bool {
    took > quickest.saturating_mul(GAVE_AWAY_FACTOR)
}

/// The most yields [`learn_yield_cost`] times.
const YIELDS_TO_LEARN: u32 = 8;

/// Times a few yields, so that [`timed_yield`] knows what one that comes straight back
/// costs before the process has waits of its own: called by the main process before it
/// has children (its forks inherit what it learnt), while no process of the family can
/// share its processor. Without it, a process whose every spin shares its processor with
/// the side it waits for (both pinned to one) would time only yields that ran that side.
///
/// About 3 µs once per program on a quiet machine. On a busy one a yield may run another
/// program's task for its slice (3 ms once at load 6 on the machine of stop 32), as any
/// yield of a spin may; the learning stops at the first yield that gave the processor
/// away, since the next ones would likely do the same.
pub(crate) fn learn_yield_cost() {
    learn_pause_cost();
    for _ in 0..YIELDS_TO_LEARN {
        if timed_yield(Instant::now()) {
            return;
        }
    }
}

/// Spins until `ready` gives a value or `limit` passes, yielding the processor now and
/// then so that, when the process we wait for shares our processor (a machine with fewer
/// processors than busy processes, or both pinned to one), it gets to run.
///
/// How often it yields follows what the yields show: the first comes after a few looks;
/// one that gave the processor away (it took a while: another task ran) makes the next
/// come as soon, since the answer can only come while we are off the processor; each one
/// that came straight back (nobody else wanted our processor: the other side runs
/// elsewhere, or the scheduler kept us on) doubles the looks to the next, as a yield then
/// only delays our look. Both ends pinned to one processor, a `Pool`'s `apply_async`
/// round trip, whose waiter yielded once in 1024 looks, spent most of its 23 µs spinning
/// while its worker could not run.
pub(crate) fn spin_for<T>(limit: Duration, ready: impl FnMut() -> Option<T>) -> Option<T> {
    spin(Deadline::NEVER, limit, LOOKS_PER_YIELD, LOOKS_PER_YIELD, MAX_FIRST_YIELD, ready).0
}

/// The most looks before a learning spin's first yield (about 1.5 µs of looks on a 2-vCPU
/// AMD VM, twice its slow round trip): what a wrong guess (the other side came to share our
/// processor) costs once. 256 gained no more round trip and looked worse for throughput at
/// load. Counted in looks of a 40 ns `pause` or slower: see [`look_scale`].
const MAX_FIRST_YIELD: u32 = 32;

/// A `pause` this long or longer makes a look of the counts above ([`LOOKS_PER_YIELD`],
/// [`MAX_FIRST_YIELD`]), which were tuned on AMD VMs whose `pause` takes about 75 ns.
const TUNED_PAUSE_NS: u64 = 40;

/// The most a learning spin's counts are multiplied by where a `pause` is quick.
const MOST_LOOK_SCALE: u32 = 4;

/// How many looks of this machine make one of the learning spin's counts: [`TUNED_PAUSE_NS`]
/// over the `pause` as [`learn_yield_cost`] timed it, 1 to [`MOST_LOOK_SCALE`] (1 until
/// then; a forked child starts with its parent's). On the Intel VM of stop 44 a `pause`
/// takes 9-10 ns: the learning spin's floor of 8 looks was a tenth of a microsecond, less
/// than any manager round trip's wait, so its waits yielded after 8 or 1 looks and never
/// learnt to wait longer (two `sched_yield` calls of 190 ns per call, a wait's answer seen
/// only once the call returned; perf102).
static LOOK_SCALE: AtomicU32 = AtomicU32::new(1);

/// See [`LOOK_SCALE`].
fn look_scale() -> u32 {
    LOOK_SCALE.load(Ordering::Relaxed)
}

/// Times the `pause` of a spin's look (the quickest of a few rounds: a round preempted
/// only reads slower, and so scales less), and sets [`LOOK_SCALE`] from it.
fn learn_pause_cost() {
    const PAUSES: u32 = 64;
    let mut quickest = u64::MAX;
    for _ in 0..4 {
        let start = Instant::now();
        for _ in 0..PAUSES {
            spin_loop();
        }
        quickest = quickest.min(saturating_nanos(start.elapsed()) / u64::from(PAUSES));
    }
    LOOK_SCALE.store(scale_for_pause(quickest), Ordering::Relaxed);
}

/// [`LOOK_SCALE`] for a `pause` of `pause_ns`.
fn scale_for_pause(pause_ns: u64) -> u32 {
    (TUNED_PAUSE_NS / pause_ns.max(1)).clamp(1, u64::from(MOST_LOOK_SCALE)) as u32
}

thread_local! {
    /// Looks before the first yield of this thread's next [`spin_learning`], as its last
    /// waits taught.
    /// 0 until the first wait: [`LOOKS_PER_YIELD`] looks, scaled.
    static FIRST_YIELD: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// [`spin_for`] whose first yield comes after as many looks as the thread's last waits
/// taught. A wait answered while it spun, before any yield, was answered by a side running
/// on another processor (one that shares ours runs only while we are off it): the next
/// wait's first yield comes after twice the looks, up to [`MAX_FIRST_YIELD`]. A wait that
/// had to yield halves them, down to [`LOOKS_PER_YIELD`]: a side that shares our processor
/// brings it back there within a few waits. A wait answered at its first look after a
/// yield that gave the processor away (the other side ran on ours meanwhile) makes the
/// next one yield after a single look: the looks before could not see an answer, and each
/// costs a `pause` (about 75 ns on this project's virtual machines), twice per round trip
/// of a manager call or a ping-pong on one processor.
///
/// The spin runs until `deadline`, for at most `most`; the clock is first read at the
/// first yield (a read costs about 100 ns on these machines, and a wait answered within
/// its first looks reads it not at all), so a deadline that passed before the call costs
/// the looks before that yield.
///
/// For waits that come one after the other between the same two sides (a ring's round
/// trips): a spin that starts afresh at each wait yields after a few looks every time,
/// and on two processors a yield costs the round trip a system call (one to two
/// microseconds on a virtual machine), or the processor itself when another task wants it.
pub(crate) fn spin_learning<T>(deadline: Deadline, most: Duration, ready: impl FnMut() -> Option<T>) -> Option<T> {
    // Counted in looks of a slow `pause` (see `LOOK_SCALE`).
    let scale = look_scale();
    let floor = LOOKS_PER_YIELD * scale;
    let first = match FIRST_YIELD.get() {
        0 => floor,
        n => n,
    };
    let (got, taught) = spin(deadline, most, first, floor, MAX_FIRST_YIELD * scale, ready);
    if let Some(first) = taught {
        FIRST_YIELD.set(first);
    }
    got
}

/// The spin of [`spin_for`] with its first yield after `first_yield` looks; with what the
/// wait teaches about the next one's first yield (see [`spin_learning`]), between `floor`
/// and `ceiling` looks (`floor` also the looks after a yield that gave the processor away).
#[inline]
fn spin<T>(
    deadline: Deadline,
    most: Duration,
    first_yield: u32,
    floor: u32,
    ceiling: u32,
    mut ready: impl FnMut() -> Option<T>,
) -> (Option<T>, Option<u32>) {
    // The spin's start and its limit, read at the first yield.
    let mut clock: Option<(Instant, Duration)> = None;
    let mut round: u32 = 0;
    let mut looks_per_yield = first_yield;
    let mut next_yield = looks_per_yield;
    let mut yields: u32 = 0;
    // The round of the last yield, if it gave the processor away.
    let mut gave_away_at: Option<u32> = None;
    loop {
        if let Some(v) = ready() {
            let taught = match (yields, round) {
                (0, 0) => None,
                (0, _) => Some((first_yield * 2).min(ceiling)),
                _ if gave_away_at == Some(round) => Some(1),
                _ => Some((first_yield / 2).max(floor)),
            };
            return (Some(v), taught);
        }
        round = round.wrapping_add(1);
        if round == next_yield {
            let now = Instant::now();
            let (start, limit) = *clock.get_or_insert_with(|| (now, deadline.slice_at(now, most)));
            if now - start >= limit {
                return (None, None);
            }
            let gave_away = timed_yield(now);
            yields = yields.saturating_add(1);
            gave_away_at = gave_away.then_some(round);
            looks_per_yield = if gave_away { floor } else { (looks_per_yield * 2).min(MAX_LOOKS_PER_YIELD) };
            next_yield = round.wrapping_add(looks_per_yield);
        } else if round.is_multiple_of(64) && clock.is_some_and(|(start, limit)| start.elapsed() >= limit) {
            return (None, None);
        }
        spin_loop();
    }
}

/// Why [`Notify::wait`] returned without its condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupted<E> {
    /// The deadline passed.
    TimedOut,
    /// The periodic check found a reason to stop (the other side died, ...).
    Check(E),
}

/// A sequence number to sleep on and a count of sleepers, in shared memory.
///
/// Who changes a condition calls [`Notify::notify`] afterwards; who waits for it calls
/// [`Notify::wait`] with a closure that tests the condition. A notification costs a fence
/// and a load when nobody sleeps, and a system call only for sleepers not yet woken.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Notify {
    seq: AtomicU32,
    sleepers: AtomicU32,
    /// How many times a sleeper announced itself (wrapping).
    arrivals: AtomicU64,
    /// How many of those arrivals have had their wake-up (wrapping; never ahead of
    /// `arrivals` as last read by the notifier that moved it).
    served: AtomicU64,
}

impl Notify {
    /// A fresh one.
    pub(crate) const fn new() -> Self {
        Self {
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            arrivals: AtomicU64::new(0),
            served: AtomicU64::new(0),
        }
    }

    /// Wakes up to `n` sleepers (after the condition changed). Costs a fence and a load
    /// when nobody sleeps: the sequence number is only bumped for sleepers.
    ///
    /// A woken sleeper counts as one until it runs, which on a busy machine may take a
    /// while: a producer putting message after message would make a system call for each,
    /// waking nobody (eight consumers on two processors made a system call per message).
    /// So each wake-up serves one arrival, and arrivals already served are not woken
    /// again. That is sound because every sleeper reads the sequence number *before* it
    /// announces itself ([`Sleepers::wait`], [`Sleepers::start_sleeping`]): an arrival that a
    /// notifier counts read the number before that notifier's bump, so its sleep either
    /// returns at once or was queued in the kernel before the bump, and the kernel wakes
    /// one queued sleeper per wake-up while there is one (a waker thread that takes one
    /// for a future no longer there passes it on: `reactor`'s `Shard::run`). A sleeper
    /// that read the number after announcing itself could read the very bump that served
    /// it, and sleep through every later notification once another waiter took the change
    /// (review38 M2). Whether a notifier sees a sleeper at all is the fence's business
    /// (for [`Notify::wake`], which has none, the lock's under which its sleepers
    /// re-test; for [`Sleepers::notify_after_unlock`], the lock they pass through).
    /// Arrivals of sleepers that left unserved (a sleep slice that ran out) are owed
    /// nothing beyond the sleepers there now, so a long wait's many slices cost no run of
    /// empty wake-ups.
    #[inline]
    pub(crate) fn notify(&self, n: u32) {
        // Pairs with the sleeper's `sleepers += 1; test the condition`: either the
        // sleeper's test sees the change we made before this fence, or we see it counted.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.notify_sleepers(n);
    }

    /// Whether a sleeper is announced, for a notifier whose sleepers all re-test their
    /// condition under a lock (a [`RawMutex`](super::RawMutex)) after announcing
    /// themselves, asked under that lock after the change: then [`Notify::wake`] replaces
    /// [`Notify::notify`], and the lock its fence. A sleeper's re-test either comes after
    /// the notifier's hold of the lock, and sees the change, or before it, and its
    /// announcement, made before the re-test, is seen here. If any sleeper of this
    /// `Notify` re-tests without the lock, every notifier needs `notify`'s fence.
    #[inline]
    pub(crate) fn sleepers_seen_under_lock(&self) -> bool {
        self.sleepers.load(Ordering::Relaxed) != 0
    }

    /// Wakes up to `n` sleepers that [`Notify::sleepers_seen_under_lock`] saw.
    pub(crate) fn wake(&self, n: u32) {
        self.notify_sleepers(n);
    }

    /// [`Notify::notify`] when somebody sleeps (out of line: the common case inlines to a
    /// fence and a load).
    #[cold]
    fn notify_sleepers(&self, n: u32) {
        // Arrivals first: the sleepers read after them include every arrival among them
        // that is still there.
        let arrivals = self.arrivals.load(Ordering::SeqCst);
        let sleepers = u64::from(self.sleepers.load(Ordering::SeqCst));
        let mut served = self.served.load(Ordering::SeqCst);
        loop {
            let unserved = arrivals.wrapping_sub(served);
            // Zero, or "negative": another notifier served past what we read.
            if unserved == 0 || unserved > u64::MAX / 2 {
                return;
            }
            let still_owed = unserved.saturating_sub(u64::from(n)).min(sleepers.saturating_sub(u64::from(n)));
            match self.served.compare_exchange_weak(
                served,
                arrivals.wrapping_sub(still_owed),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(now) => served = now,
            }
        }
        self.seq.fetch_add(1, Ordering::SeqCst);
        #[cfg(test)]
        tests::WAKE_CALLS.with(|c| c.set(c.get() + 1));
        sys::futex_wake(&self.seq, n);
    }

    /// How many announced sleepers are owed a wake-up (see [`Notify::notify`]).
    #[cfg(test)]
    pub(crate) fn owed(&self) -> u64 {
        self.arrivals.load(Ordering::SeqCst).wrapping_sub(self.served.load(Ordering::SeqCst))
    }

    /// Wakes every sleeper.
    pub(crate) fn notify_all(&self) {
        self.notify(u32::MAX);
    }

    /// [`Sleepers::start_sleeping`] among sleepers that pass through no lock (tests that
    /// sleep by hand).
    #[cfg(test)]
    pub(crate) fn start_sleeping(&self) -> (&AtomicU32, u32) {
        Sleepers::from(self).start_sleeping()
    }

    /// Ends what [`Sleepers::start_sleeping`] began (or an arrival of [`Sleepers::wait`]).
    pub(crate) fn stop_sleeping(&self) {
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Waits until `ready` returns a value: [`Sleepers::wait`].
    pub(crate) fn wait<T, E>(
        &self,
        deadline: Deadline,
        spin: Duration,
        ready: impl FnMut() -> Option<T>,
        check: impl FnMut() -> Result<(), E>,
    ) -> Result<T, Interrupted<E>> {
        Sleepers::from(self).wait(deadline, spin, ready, check)
    }
}

/// The sleepers' side of a [`Notify`]: where a waiter announces itself, and the lock, if
/// any, that it passes through once announced and before it re-tests its condition.
///
/// That lock lets a notifier go without [`Notify::notify`]'s fence when it changed the
/// condition under the lock ([`Sleepers::notify_after_unlock`]). For that, every sleeper
/// of the `Notify` must pass through the lock: whoever owns such a `Notify` hands out only
/// `Sleepers` built [`Sleepers::through`] the lock (`Ring::readable`), never the `Notify`
/// itself. A `&Notify` converts into `Sleepers` that pass through nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sleepers<'a> {
    notify: &'a Notify,
    through: Option<&'a RawMutex>,
}

impl<'a> From<&'a Notify> for Sleepers<'a> {
    fn from(notify: &'a Notify) -> Self {
        Self { notify, through: None }
    }
}

impl<'a> Sleepers<'a> {
    /// The sleepers of `notify` that pass through `lock` (an RMW of its word that changes
    /// nothing: [`RawMutex::pass`]) after announcing themselves.
    pub(crate) fn through(notify: &'a Notify, lock: &'a RawMutex) -> Self {
        Self { notify, through: Some(lock) }
    }

    /// The `Notify` and the lock (for the reactor, which keeps them while a future waits).
    pub(super) fn parts(self) -> (&'a Notify, Option<&'a RawMutex>) {
        (self.notify, self.through)
    }

    /// [`Notify::notify`] for a notifier that changed the condition under the lock these
    /// sleepers pass through, called after its [`RawMutex::unlock`]: no fence. That unlock
    /// (a `SeqCst` swap of the lock, the holder record) and each sleeper's pass are RMWs of
    /// one location, so they have one order, and every other write to the lock is an RMW
    /// too (an acquire's or a take-over's compare-exchange, a release's swap), so no release
    /// sequence breaks. A pass before the unlock in that order is read, through such a sequence, by
    /// the unlock, after which the notifier's load sees the sleeper counted before its
    /// pass; a pass after the unlock reads from the unlock, and the sleeper's re-test then
    /// sees the change. (Right after the unlock's `xchg`, the fence held about a sixth of a
    /// streaming producer's samples: perf61.) With no lock, [`Notify::notify`].
    #[inline]
    pub(crate) fn notify_after_unlock(self, n: u32) {
        if self.through.is_none() {
            return self.notify.notify(n);
        }
        if self.notify.sleepers.load(Ordering::Relaxed) != 0 {
            self.notify.notify_sleepers(n);
        }
    }

    /// [`Notify::notify`], with its fence (sound whoever calls it).
    pub(crate) fn notify(self, n: u32) {
        self.notify.notify(n);
    }

    /// [`Notify::notify_all`].
    pub(crate) fn notify_all(self) {
        self.notify.notify_all();
    }

    /// Counts the caller as a sleeper (see [`Notify::notify`]), then passes through the
    /// lock. The pass is a full barrier in the machine code on x86-64 only because it is
    /// `SeqCst` ([`RawMutex::pass`]): at `AcqRel` it would be no instruction, and the
    /// re-test would stay after the count only because the count is itself a locked
    /// instruction (a count made with a plain store would not be).
    fn arrive(self) {
        self.notify.arrivals.fetch_add(1, Ordering::SeqCst);
        self.notify.sleepers.fetch_add(1, Ordering::SeqCst);
        if let Some(lock) = self.through {
            lock.pass();
        }
    }

    /// For a wait over several objects (`sys::futex_waitv`): counts the caller as a sleeper
    /// and returns the word and the value to sleep on. Re-test the conditions after this
    /// and before sleeping, and call [`Sleepers::stop_sleeping`] after.
    pub(crate) fn start_sleeping(self) -> (&'a AtomicU32, u32) {
        // The value first, as `wait` does (see `notify`): a notifier that counts the
        // arrival bumps the word after this read. A bump in between costs one look.
        let seen = self.notify.seq.load(Ordering::SeqCst);
        midway();
        self.arrive();
        (&self.notify.seq, seen)
    }

    /// Ends what [`Sleepers::start_sleeping`] began.
    pub(crate) fn stop_sleeping(self) {
        self.notify.stop_sleeping();
    }

    /// Waits until `ready` returns a value. Spins for `spin`, then sleeps; every sleep is
    /// at most a slice long, after which `check` runs (liveness of the other side) and may
    /// end the wait with its error.
    pub(crate) fn wait<T, E>(
        self,
        deadline: Deadline,
        spin: Duration,
        mut ready: impl FnMut() -> Option<T>,
        mut check: impl FnMut() -> Result<(), E>,
    ) -> Result<T, Interrupted<E>> {
        // The first look is the spin's, or the loop's (after a load of `seq` only).
        if !spin.is_zero()
            && !deadline.passed()
            && let Some(v) = spin_for(deadline.slice(spin), &mut ready)
        {
            return Ok(v);
        }
        let seq = &self.notify.seq;
        let mut slice = FIRST_SLICE;
        loop {
            let seen = seq.load(Ordering::SeqCst);
            if let Some(v) = ready() {
                return Ok(v);
            }
            if deadline.passed() {
                return Err(Interrupted::TimedOut);
            }
            self.arrive();
            // Re-test after announcing ourselves: a notifier that changed the condition
            // before seeing us has bumped `seq`, so the futex wait below returns at once.
            let outcome = match ready() {
                Some(v) => Some(v),
                None => {
                    let waited = sys::futex_wait(seq, seen, Some(deadline.slice(slice)));
                    if waited == sys::FutexWait::TimedOut {
                        slice = (slice * 2).min(MAX_SLICE);
                        self.stop_sleeping();
                        if let Some(v) = ready() {
                            return Ok(v);
                        }
                        check().map_err(Interrupted::Check)?;
                        continue;
                    }
                    None
                }
            };
            self.stop_sleeping();
            if let Some(v) = outcome {
                return Ok(v);
            }
        }
    }
}

/// Runs a unit test's moves of other processes between the two steps of this thread's
/// [`Sleepers::start_sleeping`].
#[inline(always)]
fn midway() {
    #[cfg(test)]
    START_SLEEPING_MIDWAY.with(|moves| {
        // Not from inside the moves themselves.
        if let Ok(mut moves) = moves.try_borrow_mut()
            && let Some(moves) = moves.as_mut()
        {
            moves();
        }
    });
}

#[cfg(test)]
thread_local! {
    /// What other processes do between the two steps of this thread's
    /// [`Sleepers::start_sleeping`] (the read of the word and the announcement).
    pub(super) static START_SLEEPING_MIDWAY: std::cell::RefCell<Option<Box<dyn FnMut()>>> =
        const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::atomic::Ordering;

    use super::{Notify, START_SLEEPING_MIDWAY};

    thread_local! {
        /// Wake-up system calls made by this thread's `notify` calls.
        pub(super) static WAKE_CALLS: Cell<u64> = const { Cell::new(0) };
    }

    /// A notification that comes while a sleeper of a wait over several objects (or a
    /// future) announces itself serves it a wake-up only if the word it sleeps on moves
    /// after that wake-up's bump (review38 M2): a word read after the announcement may
    /// already hold the bump, and then the sleeper waits for a change no later
    /// notification makes (they find its arrival served), until its sleep slice ends.
    #[test]
    fn an_announced_sleepers_word_changes_at_the_next_notification() {
        let n: &'static Notify = Box::leak(Box::new(Notify::new()));
        // A notifier's change, taken back by another waiter, while this one announces.
        START_SLEEPING_MIDWAY.set(Some(Box::new(|| n.notify(1))));
        let (word, seen) = n.start_sleeping();
        START_SLEEPING_MIDWAY.set(None);
        // The next change.
        n.notify(1);
        let now = word.load(Ordering::SeqCst);
        n.stop_sleeping();
        assert_ne!(now, seen, "the sleeper would sleep through the notification meant for it");
    }

    fn wake_calls() -> u64 {
        WAKE_CALLS.with(Cell::get)
    }

    /// Pins the calling thread to `cpu`.
    fn pin_to(cpu: usize) {
        // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity only touch it
        // and the calling thread's own affinity.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
        }
    }

    /// The first processor this thread may run on.
    fn first_allowed_cpu() -> usize {
        // SAFETY: as in `pin_to`; sched_getaffinity writes the calling thread's mask.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set), 0);
            (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &set)).expect("a processor")
        }
    }

    /// Both ends on one processor: the answer can only come while the spinner is off it,
    /// so a spin must give the processor up after a few looks, not after a thousand.
    #[test]
    fn a_spin_lets_an_answer_that_shares_its_processor_come_after_a_few_looks() {
        let median = median_looks_of_turns_on_one_processor(50, |ready| super::spin_for(LONG, ready));
        assert!(median < 512, "the median wait took {median} looks for a turn that shares its processor");
    }

    const LONG: std::time::Duration = std::time::Duration::from_secs(10);

    /// Two threads pinned to one processor take `rounds` turns each (even: the first
    /// thread's, odd: the second's), each waiting for its turn with `spin`, then passing it
    /// on: the median of the looks a wait took. A wait or two may find the other thread not
    /// yet on the processor, or kept off it by the scheduler: hence the median.
    fn median_looks_of_turns_on_one_processor(
        rounds: u32,
        spin: fn(&mut dyn FnMut() -> Option<()>) -> Option<()>,
    ) -> u32 {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};

        let cpu = first_allowed_cpu();
        let turn = Arc::new(AtomicU32::new(0));
        let play = |turn: Arc<AtomicU32>, mine: u32| {
            std::thread::spawn(move || {
                pin_to(cpu);
                let mut looks_per_wait = Vec::new();
                for round in 0..rounds {
                    let mut looks = 0u32;
                    let came = spin(&mut || {
                        looks += 1;
                        (turn.load(Ordering::SeqCst) == 2 * round + mine).then_some(())
                    });
                    assert!(came.is_some(), "the turn came within the spin");
                    looks_per_wait.push(looks);
                    turn.fetch_add(1, Ordering::SeqCst);
                }
                looks_per_wait
            })
        };
        let (first, second) = (play(turn.clone(), 0), play(turn, 1));
        let mut looks = first.join().unwrap();
        looks.extend(second.join().unwrap());
        looks.sort_unstable();
        looks[looks.len() / 2]
    }

    /// A learning spin answered before its first yield yields later at the next wait (up
    /// to `MAX_FIRST_YIELD` looks), one that had to yield sooner again (down to
    /// `LOOKS_PER_YIELD`), and one answered at its first look teaches nothing; each count
    /// in looks of a slow `pause` (`look_scale`).
    #[test]
    fn a_learning_spin_yields_later_after_answers_that_came_while_it_looked() {
        use super::{FIRST_YIELD, LOOKS_PER_YIELD, MAX_FIRST_YIELD, look_scale, spin_learning};
        // A thread of its own: the lesson is the thread's.
        std::thread::spawn(|| {
            let limit = std::time::Duration::from_secs(10);
            let answered_at = |n: u32| {
                let mut looks = 0;
                spin_learning(super::Deadline::NEVER, limit, || {
                    looks += 1;
                    (looks >= n).then_some(())
                })
            };
            assert_eq!(FIRST_YIELD.get(), 0, "no wait yet");
            let (floor, most) = (LOOKS_PER_YIELD * look_scale(), MAX_FIRST_YIELD * look_scale());
            let mut expected = floor;
            for _ in 0..10 {
                assert!(answered_at(3).is_some());
                expected = (expected * 2).min(most);
                assert_eq!(FIRST_YIELD.get(), expected);
            }
            assert_eq!(expected, most);
            answered_at(1);
            assert_eq!(FIRST_YIELD.get(), most, "an answer at the first look teaches nothing");
            // Past the first yield (after `most` looks).
            answered_at(most + 10);
            assert_eq!(FIRST_YIELD.get(), most / 2);
            for _ in 0..10 {
                answered_at(most + 10);
            }
            assert_eq!(FIRST_YIELD.get(), floor);
        })
        .join()
        .unwrap();
    }

    /// Both ends of a learning spin on one processor: every answer comes at the first look
    /// after a yield that gave the processor away (the other side ran meanwhile), so each
    /// wait after the first yields after a single look, and takes two: where a yield
    /// counted as giving the processor away only past a fixed 3 µs, a hand-over through
    /// `sched_yield` that takes 1.1 µs (the machine of stop 32) never counted, and the
    /// waits took 9 looks (a yield after `LOOKS_PER_YIELD`, the answer at the next). The
    /// process first times yields of its own, unpinned, so that it knows what a yield that
    /// comes straight back costs: the pinned threads' yields all switch.
    ///
    /// Two looks is what a machine with a processor to spare gives (every run of yield34,
    /// alone, pinned, beside a busy loop on the same processor); the bound holds whatever
    /// the load: where every unpinned yield ran another task too (both processors
    /// saturated by CI's other tests), no yield is known to come straight back, the rule
    /// cannot fire, and a wait yields after `LOOKS_PER_YIELD` looks, as with a threshold
    /// too high. What makes the rule fire is `gave_away`'s test below.
    #[test]
    fn a_learning_spin_that_shares_its_processor_keeps_yielding_soon() {
        for _ in 0..100 {
            super::timed_yield(std::time::Instant::now());
        }
        let median = median_looks_of_turns_on_one_processor(100, |ready| {
            super::spin_learning(super::Deadline::NEVER, LONG, ready)
        });
        // Looks up to the first yield, which runs the other side, the answer at the next.
        let most = super::LOOKS_PER_YIELD * super::look_scale() + 1;
        assert!(median <= most, "the median wait took {median} looks for a turn that shares its processor");
    }

    /// A learning spin's counts are in looks of a 40 ns `pause` or slower (as tuned): a
    /// quicker one multiplies them, up to four times.
    #[test]
    fn a_quicker_pause_gives_more_looks_to_a_learning_spin() {
        use super::{MOST_LOOK_SCALE, scale_for_pause};
        assert_eq!(scale_for_pause(75), 1);
        assert_eq!(scale_for_pause(40), 1);
        assert_eq!(scale_for_pause(20), 2);
        assert_eq!(scale_for_pause(10), MOST_LOOK_SCALE);
        assert_eq!(scale_for_pause(0), MOST_LOOK_SCALE);
        assert_eq!(scale_for_pause(u64::MAX), 1);
    }

    /// A yield gave the processor away when it took more than `GAVE_AWAY_FACTOR` times the
    /// quickest one timed: on the machine of stop 32 a hand-over (1.1 µs) against a yield
    /// that comes straight back (230 ns), which a fixed 3 µs never told apart.
    #[test]
    fn a_yield_gave_the_processor_away_past_a_multiple_of_the_quickest() {
        assert!(super::gave_away(1_100, 230));
        assert!(!super::gave_away(400, 230), "a straight-back yield's spread");
        assert!(!super::gave_away(1_100, u64::MAX), "nothing timed yet: never");
        assert!(super::gave_away(3_100_000, 230), "another program's slice");
    }

    /// Eight consumers sleep on an empty queue; a producer puts message after message
    /// before any of them runs (two processors, sixteen processes). Each sleeper needs one
    /// wake-up: a system call per message would wake nobody, and costs the producer.
    #[test]
    fn a_sleeper_is_woken_once_until_it_sleeps_again() {
        let notify = Notify::new();
        for _ in 0..8 {
            notify.start_sleeping();
        }
        let before = wake_calls();
        for _ in 0..1000 {
            notify.notify(1);
        }
        assert_eq!(wake_calls() - before, 8, "one wake-up per sleeper, not per notification");
        // A sleeper that announces itself again is woken again.
        notify.stop_sleeping();
        notify.start_sleeping();
        let before = wake_calls();
        notify.notify(1);
        notify.notify(1);
        assert_eq!(wake_calls() - before, 1);
        // Every sleeper that left and came back: all of them are served by one call.
        for _ in 0..8 {
            notify.stop_sleeping();
            notify.start_sleeping();
        }
        let before = wake_calls();
        notify.notify_all();
        notify.notify(1);
        assert_eq!(wake_calls() - before, 1);
    }

    /// Sleepers that left without being woken (their sleep timed out) are not owed a
    /// wake-up when they come back as fewer: the debt is bounded by who sleeps now.
    #[test]
    fn wake_ups_owed_never_exceed_the_sleepers() {
        let notify = Notify::new();
        notify.start_sleeping();
        // A hundred timed-out slices of the one sleeper.
        for _ in 0..100 {
            notify.stop_sleeping();
            notify.start_sleeping();
        }
        let before = wake_calls();
        for _ in 0..50 {
            notify.notify(1);
        }
        assert_eq!(wake_calls() - before, 1);
    }
}
