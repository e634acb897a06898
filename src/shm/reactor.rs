//! The waker threads behind every future of the crate that waits on shared memory.
//!
//! # Design
//!
//! A blocking wait sleeps on a [`Notify`]'s futex word (`seq`), announced as a sleeper so
//! that the party that changes the condition bumps the word and wakes it. An async wait
//! cannot sleep: its future registers with this module instead, and returns `Pending`.
//!
//! * **Registration** ([`Waiting::arm`]): the future reads the word's value and announces
//!   itself on the `Notify` exactly as a blocking sleeper would (`start_sleeping`: counted
//!   as a sleeper, one more arrival, a pass through the lock its `Sleepers` name), hands
//!   `(word, value, waker, next check)` to a waker thread, and then tests its condition
//!   once more before returning `Pending`. A notifier that changed the condition before
//!   the announcement is seen by that test; one after it bumps the word, so the waker
//!   thread's `futex_waitv` returns at once or is woken.
//! * **Waker threads**: each waits with one `futex_waitv` call on up to 127 distinct
//!   futex words plus a word of its own (rung when a registration arrives). Futures
//!   waiting on the same object share its word, so ten thousand futures waiting on one
//!   queue cost one slot. When a word changes, every `Waker` registered on it is woken
//!   (and forgotten: a future that is still not ready registers again). The first thread
//!   starts lazily, when a future first pends; another starts only when 127 distinct words
//!   are watched at once. Futures that wait on something in this process (a pool's
//!   results, a thread's `Slot`) never come here: whoever fills the slot wakes them.
//! * **A wake-up for nobody is passed on**: a waker thread sleeps in the word's futex queue
//!   for its futures, and a notifier's `futex_wake(1)` may pick it. Withdrawing a
//!   registration rings no bell, so the thread may still sleep on a word whose futures
//!   were dropped or completed meanwhile; a wake-up it takes there, with no registration
//!   that it slept for, goes on to the word's next sleeper (`Shard::run`), which the
//!   notifier counted as served.
//! * **Liveness**: a blocking wait checks after each sleep slice (2 ms doubling to
//!   100 ms) that the other side still lives. A registration carries the moment of its
//!   next check, and the waker thread wakes the future then even if its word did not
//!   change; the future runs the same check ([`Waiting::check_due`]).
//! * **No deadline of its own**: a future's timeout is the runtime's timer
//!   (`tokio::time::timeout`); dropping the future drops its registration.
//!
//! The words live in the family heap, which stays mapped for the life of the process: a
//! waker thread that still waits on the word of an object freed meanwhile reads zeroed or
//! reused memory, which at worst wakes a future for nothing.
//!
//! **Fork.** A waker thread is a thread: once one runs, `StartMethod::Fork` is refused
//! (as beside any other thread) unless `allow_fork_with_threads` was called. A child
//! forked anyway inherits no waker thread and none of their locks: the reactor is tied to
//! the process that built it, and a forked child builds its own at its first `Pending`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use super::heap::Heap;
use super::mutex::{RawMutex, TakenIn};
use super::wait::{FIRST_SLICE, MAX_SLICE, Notify, Sleepers};
use crate::sys;

/// Distinct words one waker thread watches, besides its own (`futex_waitv` takes 128).
const WORDS_PER_THREAD: usize = 127;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A futex word that stays valid for the life of the process.
#[derive(Clone, Copy)]
struct Word(&'static AtomicU32);

impl Word {
    fn key(self) -> usize {
        self.0.as_ptr() as usize
    }
}

/// Types made of atomics only (padding aside): valid for any bytes, whatever another
/// process writes into them, under a shared reference.
///
/// # Safety
///
/// Every field, at any depth, is an atomic.
pub(super) unsafe trait AllAtomics {}

// SAFETY: an atomic.
unsafe impl AllAtomics for AtomicU32 {}
// SAFETY: `seq`, `sleepers`, `arrivals` and `served` are atomics (`wait.rs`).
unsafe impl AllAtomics for Notify {}
// SAFETY: `word`, `_pad` and `owner` are atomics (`mutex.rs`).
unsafe impl AllAtomics for RawMutex {}

/// What a future waits on (a `Notify`, the lock its sleepers pass through, a futex word),
/// if it lives in the family heap (every shared object does). One elsewhere (in a test's
/// stack frame) gets `None`: its waiters are woken by their check timer only.
fn in_heap<T: AllAtomics>(value: &T) -> Option<&'static T> {
    let heap = Heap::try_get()?;
    let start = heap.ptr(0) as usize;
    let at = value as *const T as usize;
    let offset = at.checked_sub(start)?;
    if !heap.contains(offset as u64 & !63, offset % 64 + size_of::<T>()) {
        return None;
    }
    // SAFETY: the family heap is mapped once and never unmapped while the process lives
    // (`Heap` sits in a `static`); freeing an object gives its pages back with
    // `MADV_REMOVE` but leaves them mapped, and `T` is all atomics (`AllAtomics`), valid
    // for any bytes. So a reference into it is valid for `'static`.
    Some(unsafe { &*(at as *const T) })
}

/// [`in_heap`] for a `Notify`'s sleepers and the lock they pass through (a field of the
/// same shared object, so in the heap too).
fn sleepers_in_heap(sleepers: Sleepers<'_>) -> Option<Sleepers<'static>> {
    Some(match sleepers.parts() {
        (notify, None) => in_heap(notify)?.into(),
        (notify, Some(lock)) => Sleepers::through(in_heap(notify)?, in_heap(lock)?),
    })
}

struct Registration {
    word: Option<Word>,
    seen: u32,
    waker: Waker,
    check_at: Instant,
}

#[derive(Default)]
struct ShardState {
    registrations: HashMap<u64, Registration>,
    /// Registrations per distinct word.
    words: HashMap<usize, usize>,
}

/// One waker thread and what it watches.
struct Shard {
    state: Mutex<ShardState>,
    /// Rung when a registration arrives, so that the thread waits on the new word too.
    bell: AtomicU32,
}

impl Shard {
    fn ring(&self) {
        self.bell.fetch_add(1, Ordering::SeqCst);
        sys::futex_wake(&self.bell, 1);
    }

    fn run(&self) {
        let mut due: Vec<Waker> = Vec::new();
        // The words the last wait slept on, with the values it slept on, and how it ended.
        let mut slept_on: Vec<(Word, u32)> = Vec::new();
        let mut ended = sys::FutexWaitv::TimedOut;
        loop {
            let bell = self.bell.load(Ordering::SeqCst);
            let took = wake_ups_taken(&slept_on, ended);
            // Whether a future the last wait slept for gets the wake-up taken on `took[i]`.
            let mut handed = vec![false; took.len()];
            let mut next: Option<Instant> = None;
            {
                let mut state = lock(&self.state);
                let now = Instant::now();
                let ShardState { registrations, words: counts } = &mut *state;
                registrations.retain(|_, r| {
                    let changed = r.word.is_some_and(|w| w.0.load(Ordering::SeqCst) != r.seen);
                    // The wake-up taken on its word is this registration's if the wait
                    // slept on the value it saw, even where the word is back at that
                    // value (a mutex unlocked and locked again).
                    let slept_for =
                        r.word.and_then(|w| took.iter().position(|&(t, seen)| t.key() == w.key() && seen == r.seen));
                    if changed || r.check_at <= now || slept_for.is_some() {
                        if let Some(i) = slept_for {
                            handed[i] = true;
                        }
                        if let Some(w) = r.word {
                            release_word(counts, w.key());
                        }
                        due.push(r.waker.clone());
                        return false;
                    }
                    next = Some(next.map_or(r.check_at, |n| n.min(r.check_at)));
                    true
                });
                slept_on.clear();
                let mut listed = std::collections::HashSet::new();
                for r in registrations.values() {
                    if let Some(w) = r.word
                        && listed.insert(w.key())
                    {
                        slept_on.push((w, r.seen));
                    }
                }
            }
            for waker in due.drain(..) {
                waker.wake();
            }
            // A wake-up taken for no registration here (its future was dropped or
            // completed after this thread began to sleep, and withdrawing rings no bell)
            // was meant for another sleeper on the word, whose arrival its notifier counts
            // as served: a blocking sleeper queued behind this thread would otherwise wait
            // out its slice, and every later notification would skip it (review38 M1).
            // Passed on where the wait may have taken none, it costs a sleeper a look.
            for (&(word, _), handed) in took.iter().zip(handed) {
                if !handed {
                    sys::futex_wake(word.0, 1);
                }
            }
            let mut words: Vec<(&AtomicU32, u32)> = Vec::with_capacity(slept_on.len() + 1);
            words.extend(slept_on.iter().map(|&(w, seen)| (w.0, seen)));
            words.push((&self.bell, bell));
            let timeout = next.map(|n| n.saturating_duration_since(Instant::now()));
            ended = sys::futex_waitv(&words, Some(timeout.unwrap_or(Duration::from_secs(60))));
        }
    }
}

/// The words of a wait that ended `ended` (`slept_on` and the bell after them) on which it
/// may have taken a wake-up, with the values it slept on: the word the kernel named, and
/// every other that changed meanwhile. When several words are woken before the thread
/// runs, the kernel names the *last* of them in the list (`futex_unqueue_multiple` keeps
/// the highest index), so a bell woken with words (a registration arriving) is named and
/// hides them: the change is then what tells them. A word woken and neither named nor
/// changed has come back to the value slept on: never a `Notify`'s (it only counts up),
/// only a mutex's (`arm_word`). Its word is only 0 or `SLEEPERS`, slept on at `SLEEPERS`,
/// and any mark after a release's clear brings it back: a waiter's `mark_then_try`, a
/// `mark_wanted`, a take-over (review167 L2; "the same owner re-took it" was the old
/// word, which held the owner too). Each such mark is made by a taker that then holds the
/// lock with the mark, or by a caller refused by a holder whose release sees the mark
/// (both `SeqCst`: see `RawMutex::unlock_then`): either way a release wakes a sleeper
/// again, so the wake-up skipped here costs a waiter at most that hold of the lock, or
/// its liveness check, never a stranding. None when it took no wake-up.
fn wake_ups_taken(slept_on: &[(Word, u32)], ended: sys::FutexWaitv) -> Vec<(Word, u32)> {
    let sys::FutexWaitv::Woken(named) = ended else {
        return Vec::new();
    };
    slept_on
        .iter()
        .enumerate()
        .filter(|&(i, &(word, seen))| i == named || word.0.load(Ordering::SeqCst) != seen)
        .map(|(_, &taken)| taken)
        .collect()
}

fn release_word(counts: &mut HashMap<usize, usize>, key: usize) {
    if let Some(n) = counts.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&key);
        }
    }
}

/// The waker threads of this process.
struct Reactor {
    pid: u32,
    shards: Mutex<Vec<Arc<Shard>>>,
    next_id: AtomicU64,
    /// The thread watching descriptors, once a future waited on one.
    fds: std::sync::OnceLock<Option<Arc<FdWaker>>>,
}

/// The waker thread for descriptors (a child's pidfd): one epoll set.
struct FdWaker {
    poller: sys::Poller,
    wakers: Mutex<HashMap<u64, Waker>>,
}

impl FdWaker {
    fn run(&self) {
        loop {
            for key in self.poller.wait(Duration::from_secs(60)) {
                let waker = lock(&self.wakers).remove(&key);
                if let Some(w) = waker {
                    w.wake();
                }
            }
        }
    }
}

static REACTOR: AtomicPtr<Reactor> = AtomicPtr::new(std::ptr::null_mut());

impl Reactor {
    /// This process's reactor, built at the first call (and again in a forked child,
    /// which must not touch its parent's locks: the parent's reactor is leaked there).
    fn get() -> &'static Reactor {
        let pid = std::process::id();
        loop {
            let current = REACTOR.load(Ordering::Acquire);
            // SAFETY: a non-null pointer here came from `Box::leak` below and is never
            // freed.
            if let Some(r) = unsafe { current.as_ref() }
                && r.pid == pid
            {
                return r;
            }
            let fresh = Box::into_raw(Box::new(Reactor {
                pid,
                shards: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(1),
                fds: std::sync::OnceLock::new(),
            }));
            match REACTOR.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
                // SAFETY: just leaked, never freed.
                Ok(_) => return unsafe { &*fresh },
                Err(_) => {
                    // SAFETY: ours, never shared.
                    drop(unsafe { Box::from_raw(fresh) });
                }
            }
        }
    }

    /// Hands a registration to a waker thread with room for its word; starts one if none
    /// has room. `None` when no thread could be started.
    fn register(&self, registration: Registration) -> Option<(Arc<Shard>, u64)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key = registration.word.map(Word::key);
        let mut shards = lock(&self.shards);
        let mut chosen = None;
        for shard in shards.iter() {
            let state = lock(&shard.state);
            let fits = match key {
                Some(k) => state.words.contains_key(&k) || state.words.len() < WORDS_PER_THREAD,
                None => true,
            };
            if fits {
                chosen = Some(shard.clone());
                if key.is_none_or(|k| state.words.contains_key(&k)) {
                    break;
                }
            }
        }
        let shard = match chosen {
            Some(s) => s,
            None => {
                let shard = Arc::new(Shard { state: Mutex::new(ShardState::default()), bell: AtomicU32::new(0) });
                let running = shard.clone();
                sys::spawn_own("multiproc-waker", move || running.run()).ok()?;
                shards.push(shard.clone());
                shard
            }
        };
        {
            // Under the list's lock still, so that no other registration fills the
            // thread's last slot meanwhile.
            let mut state = lock(&shard.state);
            if let Some(k) = key {
                *state.words.entry(k).or_insert(0) += 1;
            }
            state.registrations.insert(id, registration);
        }
        drop(shards);
        shard.ring();
        Some((shard, id))
    }
}

impl Reactor {
    fn fd_waker(&self) -> Option<&Arc<FdWaker>> {
        self.fds
            .get_or_init(|| {
                let waker = Arc::new(FdWaker { poller: sys::Poller::new().ok()?, wakers: Mutex::new(HashMap::new()) });
                let running = waker.clone();
                sys::spawn_own("multiproc-fd-waker", move || running.run()).ok()?;
                Some(waker)
            })
            .as_ref()
    }
}

/// A future's registration on descriptors' readability (see [`Waiting`]). Dropping it
/// withdraws it.
#[derive(Default)]
pub(crate) struct FdWaiting {
    registered: Vec<(u64, std::os::fd::OwnedFd)>,
}

impl std::fmt::Debug for FdWaiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdWaiting").field("registered", &self.registered.len()).finish()
    }
}

impl FdWaiting {
    /// Registers `cx`'s waker to be woken once one of `fds` is readable. Test the
    /// condition again after this, before returning `Pending`.
    pub(crate) fn arm(&mut self, fds: &[std::os::fd::BorrowedFd<'_>], cx: &Context<'_>) {
        self.withdraw();
        let reactor = Reactor::get();
        let Some(waker) = reactor.fd_waker() else {
            cx.waker().wake_by_ref();
            return;
        };
        for fd in fds {
            let key = reactor.next_id.fetch_add(1, Ordering::Relaxed);
            lock(&waker.wakers).insert(key, cx.waker().clone());
            match waker.poller.add(*fd, key) {
                Ok(dup) => self.registered.push((key, dup)),
                Err(_) => {
                    lock(&waker.wakers).remove(&key);
                    cx.waker().wake_by_ref();
                }
            }
        }
    }

    pub(crate) fn withdraw(&mut self) {
        if self.registered.is_empty() {
            return;
        }
        if let Some(waker) = Reactor::get().fd_waker() {
            for (key, dup) in self.registered.drain(..) {
                waker.poller.remove(&dup);
                lock(&waker.wakers).remove(&key);
            }
        }
    }
}

impl Drop for FdWaiting {
    fn drop(&mut self) {
        self.withdraw();
    }
}

/// Threads the waker threads of this process (for tests counting threads).
#[doc(hidden)]
pub fn waker_threads() -> usize {
    let current = REACTOR.load(Ordering::Acquire);
    // SAFETY: see `Reactor::get`.
    match unsafe { current.as_ref() } {
        Some(r) if r.pid == std::process::id() => {
            lock(&r.shards).len() + r.fds.get().is_some_and(Option::is_some) as usize
        }
        _ => 0,
    }
}

/// A future's standing with the waker threads: at most one registration at a time, its
/// announcement as a sleeper on a `Notify`, and the schedule of its liveness checks.
/// Dropping it withdraws both.
pub(crate) struct Waiting {
    registered: Option<(Arc<Shard>, u64)>,
    sleeping_on: Option<Sleepers<'static>>,
    /// The futex word (and the value seen) of the last [`Waiting::arm_word`], until the
    /// future completes: dropped after the word changed, it passes the wake-up on.
    word: Option<(Word, u32)>,
    slice: Duration,
    next_check: Option<Instant>,
    /// The process that registered (and announced itself a sleeper). A copy that fork made
    /// in a child (a future kept in a static) withdraws nothing: the registration is with
    /// the parent's waker thread, the announcement the parent's count.
    armed_in: Option<TakenIn>,
}

impl Default for Waiting {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting").field("registered", &self.registered.is_some()).finish()
    }
}

impl Waiting {
    pub(crate) const fn new() -> Self {
        Self { registered: None, sleeping_on: None, word: None, slice: FIRST_SLICE, next_check: None, armed_in: None }
    }

    /// One whose first liveness check comes after `slice` (a test that needs the waker
    /// thread to keep its place in a futex queue meanwhile).
    #[cfg(test)]
    pub(crate) const fn first_check_after(slice: Duration) -> Self {
        Self { registered: None, sleeping_on: None, word: None, slice, next_check: None, armed_in: None }
    }

    /// Whether the liveness check is due: the future has waited a slice since it first
    /// pended or since the last check (then the next slice doubles, up to 100 ms).
    pub(crate) fn check_due(&mut self) -> bool {
        match self.next_check {
            Some(at) if Instant::now() >= at => {
                self.slice = (self.slice * 2).min(MAX_SLICE);
                self.next_check = Some(Instant::now() + self.slice);
                true
            }
            _ => false,
        }
    }

    /// Registers `cx`'s waker to be woken when the `Notify` of `sleepers` is rung (or its
    /// next check is due), announced among them. Test the condition again after this,
    /// before returning `Pending`.
    pub(crate) fn arm<'a>(&mut self, sleepers: impl Into<Sleepers<'a>>, cx: &Context<'_>) {
        self.withdraw();
        self.word = None;
        let word = sleepers_in_heap(sleepers.into()).map(|s| {
            let (word, seen) = s.start_sleeping();
            self.sleeping_on = Some(s);
            (Word(word), seen)
        });
        self.register(word, cx);
    }

    /// Registers `cx`'s waker for the next check only (something with no futex word).
    pub(crate) fn arm_timer(&mut self, cx: &Context<'_>) {
        self.withdraw();
        self.word = None;
        self.register(None, cx);
    }

    /// Registers `cx`'s waker to be woken when `word` no longer holds `seen` (a futex word
    /// in the family heap that its writer wakes, such as a mutex's), or its next check is
    /// due. Test the condition again after this, before returning `Pending`.
    pub(crate) fn arm_word(&mut self, word: &AtomicU32, seen: u32, cx: &Context<'_>) {
        self.withdraw();
        self.word = in_heap(word).map(|w| (Word(w), seen));
        self.register(self.word, cx);
    }

    /// Whether the future waited since it started or last completed (it registered).
    pub(crate) fn has_waited(&self) -> bool {
        self.next_check.is_some()
    }

    /// For a future's `Drop`: a future that waited among `sleepers` (it pended, and has
    /// not completed since) may have been handed a single wake-up (`notify(1)`) and leaves
    /// without using it; when `there()` says that what it waited for is there, the
    /// wake-up goes on to another of them. Withdrawn first, so that the notification
    /// counts this future no more and its waker thread is not the one woken. At worst a
    /// sleeper looks once for nothing.
    pub(crate) fn pass_on<'a>(&mut self, sleepers: impl Into<Sleepers<'a>>, there: impl FnOnce() -> bool) {
        if self.has_waited() && there() {
            self.withdraw();
            sleepers.into().notify(1);
        }
    }

    fn register(&mut self, word: Option<(Word, u32)>, cx: &Context<'_>) {
        self.armed_in = Some(TakenIn::here());
        let check_at = *self.next_check.get_or_insert_with(|| Instant::now() + self.slice);
        let registration = Registration {
            word: word.map(|(w, _)| w),
            seen: word.map_or(0, |(_, s)| s),
            waker: cx.waker().clone(),
            check_at,
        };
        self.registered = Reactor::get().register(registration);
        if self.registered.is_none() {
            // No thread could be started: poll again soon rather than hang.
            cx.waker().wake_by_ref();
        }
    }

    /// Withdraws the registration and the announcement (the future completed, or is about
    /// to register again).
    pub(crate) fn withdraw(&mut self) {
        if self.armed_in.is_some_and(|armed| !armed.is_here()) {
            // A copy made by fork: the parent's to withdraw (its waker thread's lock may
            // even have been held at the fork). Nothing to wake on drop either.
            std::mem::forget(self.registered.take());
            self.sleeping_on = None;
            self.word = None;
            self.armed_in = None;
            return;
        }
        if let Some((shard, id)) = self.registered.take() {
            let mut state = lock(&shard.state);
            if let Some(r) = state.registrations.remove(&id)
                && let Some(w) = r.word
            {
                release_word(&mut state.words, w.key());
            }
        }
        if let Some(n) = self.sleeping_on.take() {
            n.stop_sleeping();
        }
    }

    /// Back to a fresh start (the future completed): the next wait checks after a first
    /// short slice again.
    pub(crate) fn reset(&mut self) {
        self.withdraw();
        self.word = None;
        self.slice = FIRST_SLICE;
        self.next_check = None;
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.withdraw();
        // The word changed since the future registered, and the waker thread may have
        // taken the one wake-up its writer gave (a mutex's unlock wakes one sleeper): the
        // future will not use it, so the next sleeper gets one. At worst a sleeper wakes,
        // finds nothing for it, and sleeps again. A mutex's word found back at `SLEEPERS`
        // (marked again after the clear: see `wake_ups_taken`) passes nothing on: the
        // mark's maker holds the lock, or its holder's release sees the mark, and wakes one.
        if let Some((word, seen)) = self.word.take()
            && word.0.load(Ordering::Acquire) != seen
        {
            sys::futex_wake(word.0, 1);
        }
    }
}

/// One poll of a future that waits among `sleepers` (of a `Notify`): `attempt(check)`
/// tries the operation without waiting (`check`: the liveness check is due, run it) and
/// returns `None` to wait on. Registers with a waker thread before the second attempt, so
/// that a change between the two is never missed.
pub(crate) fn poll_on<'a, T>(
    waiting: &mut Waiting,
    sleepers: impl Into<Sleepers<'a>>,
    cx: &Context<'_>,
    mut attempt: impl FnMut(bool) -> Option<T>,
) -> std::task::Poll<T> {
    let check = waiting.check_due();
    if let Some(v) = attempt(check) {
        waiting.reset();
        return std::task::Poll::Ready(v);
    }
    waiting.arm(sleepers, cx);
    if let Some(v) = attempt(false) {
        waiting.reset();
        return std::task::Poll::Ready(v);
    }
    std::task::Poll::Pending
}

/// A [`Watch`](super::Watch) whose cheap look runs the thorough one when `check` is set:
/// an attempt that does not wait (deadline now) then ends with the other side's absence as
/// a blocking wait would after its sleep.
pub(crate) struct CheckNow<'a, W> {
    pub(crate) watch: &'a W,
    pub(crate) check: std::cell::Cell<bool>,
}

impl<'a, W> CheckNow<'a, W> {
    pub(crate) fn new(watch: &'a W, check: bool) -> Self {
        Self { watch, check: std::cell::Cell::new(check) }
    }
}

impl<W: super::Watch> super::Watch for CheckNow<'_, W> {
    type Gone = W::Gone;

    fn left(&self) -> Option<W::Gone> {
        if let Some(gone) = self.watch.left() {
            return Some(gone);
        }
        if self.check.replace(false) {
            return self.watch.check().err();
        }
        None
    }

    fn check(&self) -> Result<(), W::Gone> {
        self.watch.check()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::mpsc;
    use std::task::{Poll, Wake};

    use super::*;
    use crate::shm::wait::START_SLEEPING_MIDWAY;

    /// Generous: only a lost wake-up makes these tests wait that long.
    pub(crate) const LIMIT: Duration = Duration::from_secs(60);

    /// How long a scene gives a thread to reach its futex wait before the next one comes
    /// (ordering only, nothing measured: the futex queue is first come, first woken). A
    /// thread late past it breaks the scene's order and fails it after `LIMIT`: generous
    /// for a loaded machine (review47 L1).
    pub(crate) const SETTLE: Duration = Duration::from_millis(200);

    /// One scene at a time: another test's registration would move the waker thread
    /// behind the sleeper in the futex queue. Every lib test that registers a future takes
    /// it too.
    pub(crate) static SCENES: Mutex<()> = Mutex::new(());

    /// `value` moved into the family heap (a waker thread watches only words there), for the
    /// life of the process: a type of atomics only.
    pub(in crate::shm) fn leak_in_heap<T: AllAtomics>(value: T) -> &'static T {
        // Not while another unit test compares `Heap::in_use` before and after.
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let offset = heap.alloc(size_of::<T>()).expect("heap space");
        let ptr = heap.ptr(offset).cast::<T>();
        // SAFETY: a fresh 64-byte aligned block of the family heap, big enough for `T`,
        // which stays mapped for the life of the process and is never freed here; `T` is
        // all atomics (`AllAtomics`), valid for whatever another process writes.
        unsafe {
            ptr.write(value);
            &*ptr
        }
    }

    /// Sends on each wake.
    pub(in crate::shm) struct Signal(Mutex<mpsc::Sender<()>>);

    impl Signal {
        /// A waker that sends on each wake, and where it sends.
        pub(in crate::shm) fn waker() -> (Waker, mpsc::Receiver<()>) {
            let (tx, rx) = mpsc::channel();
            (Waker::from(Arc::new(Signal(Mutex::new(tx)))), rx)
        }
    }

    impl Wake for Signal {
        fn wake(self: Arc<Self>) {
            let _ = lock(&self.0).send(());
        }
    }

    /// A scene for a future that waits on `notify` for something a notifier gives with a
    /// single wake-up (`notify(1)`): the future pends (its waker thread sleeps on the word
    /// first), a blocking sleeper comes behind it in the futex queue, `change` gives one
    /// (which the waker thread takes and hands to the future), and the future is dropped
    /// without another poll (a runtime's timeout passed in the same tick). How the
    /// sleeper's sleep ended: `TimedOut`, after `LIMIT`, if the future kept the wake-up.
    /// The future must check its liveness no sooner than `LIMIT` (a timer wake-up would
    /// take its waker thread out of the futex queue).
    pub(crate) fn sleeper_behind_a_future_dropped_after_its_wake_up<'a, F: Future + Unpin>(
        future: F,
        sleepers: impl Into<Sleepers<'a>>,
        change: impl FnOnce(),
    ) -> sys::FutexWait {
        sleeper_behind_a_future_after_its_wake_up(future, sleepers, change, drop)
    }

    /// [`sleeper_behind_a_future_dropped_after_its_wake_up`], the future given to `end`
    /// once woken (which may poll it before it drops it).
    pub(crate) fn sleeper_behind_a_future_after_its_wake_up<'a, F: Future + Unpin>(
        mut future: F,
        sleepers: impl Into<Sleepers<'a>>,
        change: impl FnOnce(),
        end: impl FnOnce(F),
    ) -> sys::FutexWait {
        let sleepers = sleepers.into();
        let (waker, woken) = Signal::waker();
        assert!(Pin::new(&mut future).poll(&mut Context::from_waker(&waker)).is_pending());
        // Ordering only (the futex queue is first come, first woken), nothing measured.
        std::thread::sleep(SETTLE);
        std::thread::scope(|s| {
            let sleeper = s.spawn(|| {
                // A sleeper that counts on its wake-up alone (none of a blocking wait's
                // slices).
                let (word, seen) = sleepers.start_sleeping();
                let how = sys::futex_wait(word, seen, Some(LIMIT));
                sleepers.stop_sleeping();
                how
            });
            std::thread::sleep(SETTLE);
            change();
            woken.recv_timeout(LIMIT).expect("the future is woken by the change");
            end(future);
            sleeper.join().expect("the sleeper's sleep ends")
        })
    }

    /// The words a wait took a wake-up on: the named one, and those that changed (the bell,
    /// named last of all when rung, hides a word woken with it: review42 L5); none when it
    /// took none.
    #[test]
    fn a_wait_took_its_wake_ups_on_the_named_word_and_those_that_changed() {
        let word = |value| Word(Box::leak(Box::new(AtomicU32::new(value))));
        let (w0, w1) = (word(0), word(5));
        let slept_on = [(w0, 0), (w1, 5)];
        let taken = |ended| -> Vec<(usize, u32)> {
            wake_ups_taken(&slept_on, ended).into_iter().map(|(w, seen)| (w.key(), seen)).collect()
        };
        assert_eq!(taken(sys::FutexWaitv::Woken(0)), [(w0.key(), 0)], "the named word, the other unchanged");
        w1.0.store(6, Ordering::SeqCst);
        assert_eq!(taken(sys::FutexWaitv::Woken(2)), [(w1.key(), 5)], "the bell named, a word changed");
        assert_eq!(taken(sys::FutexWaitv::Woken(0)), [(w0.key(), 0), (w1.key(), 5)]);
        for ended in [sys::FutexWaitv::TimedOut, sys::FutexWaitv::Changed, sys::FutexWaitv::Interrupted] {
            assert!(taken(ended).is_empty(), "{ended:?} took nothing");
        }
    }

    /// A future on `notify` pends (its waker thread sleeps on the word first) and is
    /// dropped (a runtime's timeout) before anything changed; then a blocking sleeper
    /// comes, behind the waker thread in the futex queue, and a notifier wakes one sleeper.
    /// Before, the waker thread took that wake-up, for no registration, and the sleeper,
    /// its arrival counted as served, slept on (review38 M1): a blocking wait until its
    /// slice ended (up to 100 ms, and every later notification skipped it meanwhile), here
    /// until `LIMIT`. A future that completes at its attempt after arming leaves its
    /// registration the same way.
    #[test]
    fn a_wake_up_the_waker_thread_of_a_dropped_future_took_reaches_the_sleeper_behind_it() {
        let _one = SCENES.lock().unwrap_or_else(|e| e.into_inner());
        let notify = leak_in_heap(Notify::new());
        // No liveness check (a timer wake-up) while the scene plays.
        let mut waiting = Waiting::first_check_after(LIMIT);
        waiting.arm(notify, &Context::from_waker(Waker::noop()));
        assert!(waiting.registered.is_some(), "a waker thread watches the word");
        // Ordering only (the futex queue is first come, first woken), nothing measured.
        std::thread::sleep(SETTLE);
        drop(waiting);
        let (tx, slept) = mpsc::channel();
        std::thread::spawn(move || {
            // A sleeper that counts on its wake-up alone (none of a blocking wait's slices).
            let (word, seen) = notify.start_sleeping();
            let how = sys::futex_wait(word, seen, Some(LIMIT));
            notify.stop_sleeping();
            let _ = tx.send(how);
        });
        std::thread::sleep(SETTLE);
        notify.notify(1);
        let how = slept.recv().expect("the sleeper's sleep ends");
        assert_ne!(how, sys::FutexWait::TimedOut, "the waker thread kept the wake-up meant for the sleeper");
    }

    /// A future arms on `notify` while a notifier's change comes and is taken back by
    /// another waiter (between the two steps of its announcement); then a change it can
    /// use. Before, the future's word had been read after the announcement, so after the
    /// first change's bump, which served its arrival: the second change found nobody owed
    /// a wake-up and did not bump, and the future waited for its liveness check (review38
    /// M2; here ten `LIMIT`s away).
    #[test]
    fn a_future_is_woken_by_the_change_after_one_taken_back_while_it_armed() {
        let _one = SCENES.lock().unwrap_or_else(|e| e.into_inner());
        let notify = leak_in_heap(Notify::new());
        let permits: &'static AtomicU32 = Box::leak(Box::new(AtomicU32::new(0)));
        let take = || permits.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| p.checked_sub(1)).ok();
        let give = || {
            permits.fetch_add(1, Ordering::SeqCst);
            notify.notify(1);
        };
        START_SLEEPING_MIDWAY.set(Some(Box::new(move || {
            give();
            assert!(take().is_some(), "another waiter takes the change");
        })));
        let (waker, woken) = Signal::waker();
        let mut waiting = Waiting::first_check_after(10 * LIMIT);
        let polled = poll_on(&mut waiting, notify, &Context::from_waker(&waker), |_| take());
        START_SLEEPING_MIDWAY.set(None);
        assert!(polled.is_pending());
        give();
        woken.recv_timeout(LIMIT).expect("the future is woken by the change");
        let polled = poll_on(&mut waiting, notify, &Context::from_waker(&waker), |_| take());
        assert!(matches!(polled, Poll::Ready(_)));
    }
}
