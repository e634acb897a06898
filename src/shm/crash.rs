//! Named crash points: the tests' way to kill a process at an exact step of a structure
//! that claims to survive "a crash at any point".
//!
//! `crash_point!("heap.free_large.unlinked")` aborts the process when that name is armed:
//! by the environment variable [`ENV`] (read once, at the first point reached; ignored in
//! a set-user-ID program, whose environment is its caller's) or by
//! [`arm`] (the tests call it inside the child they mean to kill). Several names may be
//! armed at once, separated by commas: the first one reached aborts. A name armed as
//! `stop:NAME` stops the process there instead (`SIGSTOP`, as `kill -STOP`): the test then
//! orders what happens while it is frozen at that step, and kills it. A name armed as
//! `hold:NAME` holds the *thread* that reaches it (the rest of the process goes on) until the
//! point is armed otherwise ([`arm`], `__private::crash_at` or `crash_disarm`): a test then
//! runs another thread of the process through the gap ([`holding`] says a thread waits
//! there). A name armed as `fail:NAME` makes the step a `fail_point!("NAME")` guards fail
//! as its system call would (the tests' way to make, say, a descriptor copy fail at one
//! exact step, deterministically); armed from the start of a process by [`ENV`], it reaches
//! a spawned child, and any child of a process in which it is armed. `fail1:NAME` fails
//! the step once only, in the first thread to reach it, and leaves the armed names then
//! (a retry loop that would meet a `fail:` point again at once goes on as if disarmed).
//! Disarmed, a point costs one relaxed load of a static and a branch that is always taken
//! the same way; points sit on paths that take a lock or make a system call anyway, never
//! on a fast path, but for the semaphore's guard-free acquire and release (three each:
//! their windows are what a kill must hit, and their cost is in sem38's figures).

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

/// The environment variable naming the point at which to abort.
pub(crate) const ENV: &str = "MULTIPROC_CRASH_AT";

const UNKNOWN: u8 = 0;
const DISARMED: u8 = 1;
const ARMED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
static TARGET: Mutex<Option<String>> = Mutex::new(None);
/// Told when `TARGET` changes: a thread held at a `hold:` point looks again.
static CHANGED: Condvar = Condvar::new();
/// Threads held at a `hold:` point.
static HOLDING: AtomicUsize = AtomicUsize::new(0);
/// Holds so far: each point's name and the thread it held, once per hold.
#[cfg(test)]
static HELD: Mutex<Vec<(&'static str, std::thread::ThreadId)>> = Mutex::new(Vec::new());

/// Makes a unit test's moves of other threads or processes at `step` of a call that names
/// its steps so (a lock's takeover, the task table's calls): those [`interleaving`] set on
/// this thread. Nothing outside the unit tests.
#[inline(always)]
pub(crate) fn interleave(_step: &'static str) {
    #[cfg(test)]
    MOVES.with(|moves| {
        // Not from inside the moves themselves (a call they make reaches its steps too).
        if let Ok(mut moves) = moves.try_borrow_mut()
            && let Some(moves) = moves.as_mut()
        {
            moves(_step);
        }
    });
}

#[cfg(test)]
type Moves = Box<dyn FnMut(&'static str)>;

#[cfg(test)]
std::thread_local! {
    /// What other threads or processes do at each step this thread reaches ([`interleave`]).
    static MOVES: std::cell::RefCell<Option<Moves>> = const { std::cell::RefCell::new(None) };
}

/// Runs `call` with `moves` made at each step it reaches ([`interleave`]) on this thread.
#[cfg(test)]
pub(crate) fn interleaving<R>(moves: impl FnMut(&'static str) + 'static, call: impl FnOnce() -> R) -> R {
    /// Clears the moves when `call` ends, by a panic too (a test catching it goes on
    /// without them).
    struct Cleared;
    impl Drop for Cleared {
        fn drop(&mut self) {
            MOVES.set(None);
        }
    }
    MOVES.set(Some(Box::new(moves)));
    let _cleared = Cleared;
    call()
}

/// Aborts the process here if this point is armed.
macro_rules! crash_point {
    ($name:literal) => {
        $crate::shm::crash::reached($name)
    };
}
pub(crate) use crash_point;

/// Whether the step this guards must fail here (the point is armed `fail:NAME`).
macro_rules! fail_point {
    ($name:literal) => {
        $crate::shm::crash::failing($name)
    };
}
pub(crate) use fail_point;

/// Aborts at the point named `name` from now on (`None`: at no point).
pub(crate) fn arm(name: Option<&str>) {
    let mut target = TARGET.lock().unwrap_or_else(|e| e.into_inner());
    *target = name.map(str::to_owned);
    STATE.store(if target.is_some() { ARMED } else { DISARMED }, Ordering::Relaxed);
    CHANGED.notify_all();
}

/// The armed names' lock, which a fork start holds across the fork (a fork child takes it
/// at its first crash point while armed: it must not inherit it taken by another thread).
/// Its holders take no other lock under it (only `std::env::var`'s, the first time).
pub(crate) fn lock_target() -> MutexGuard<'static, Option<String>> {
    TARGET.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many threads of this process a `hold:NAME` point holds now.
pub(crate) fn holding() -> usize {
    HOLDING.load(Ordering::Acquire)
}

/// How many times the point `hold:name` held `thread` so far (each counted as it is held):
/// a test that moves a thread from one held point to the next waits for this, which
/// [`holding`] does not show. Per point and thread: a point is armed process-wide, and
/// another test's thread held there too must not count (review102 L5).
#[cfg(test)]
pub(crate) fn held(name: &str, thread: std::thread::ThreadId) -> usize {
    let held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    held.iter().filter(|&&(point, by)| point == name && by == thread).count()
}

#[inline(always)]
pub(crate) fn reached(name: &'static str) {
    if STATE.load(Ordering::Relaxed) != DISARMED {
        reached_armed(name);
    }
}

#[inline(always)]
pub(crate) fn failing(name: &'static str) -> bool {
    STATE.load(Ordering::Relaxed) != DISARMED && failing_armed(name)
}

#[cold]
#[inline(never)]
fn failing_armed(name: &'static str) -> bool {
    let mut target = armed_target();
    let Some(points) = target.as_deref() else { return false };
    if points.split(',').any(|point| point.strip_prefix("fail:") == Some(name)) {
        return true;
    }
    // `fail1:NAME` fails once: the point leaves the armed names as it fails, the others stay.
    if !points.split(',').any(|point| point.strip_prefix("fail1:") == Some(name)) {
        return false;
    }
    let mut rest: Vec<&str> = points.split(',').collect();
    if let Some(at) = rest.iter().position(|point| point.strip_prefix("fail1:") == Some(name)) {
        rest.remove(at);
    }
    *target = if rest.is_empty() { None } else { Some(rest.join(",")) };
    STATE.store(if target.is_some() { ARMED } else { DISARMED }, Ordering::Relaxed);
    CHANGED.notify_all();
    true
}

/// Reads [`ENV`] now, unless a point did already: the fork server's children find it read
/// (each would otherwise run `getenv` in its copy, faulting in its code and pages).
pub(crate) fn prepare_for_forks() {
    drop(armed_target());
}

/// This process's environment is no longer the one [`ENV`] was read from (a fork-server
/// child took its parent's, at boot, before anything of the program ran): it is read again
/// at the next point.
pub(crate) fn environment_changed() {
    let _target = lock_target();
    STATE.store(UNKNOWN, Ordering::Relaxed);
}

/// The armed names, locked; read from [`ENV`] the first time.
fn armed_target() -> MutexGuard<'static, Option<String>> {
    let mut target = lock_target();
    if STATE.load(Ordering::Relaxed) == UNKNOWN {
        // A set-user-ID (or set-group-ID, capability-raising) program does not take it from
        // its caller, who would else abort or stop it at a step of their choosing, a lock
        // held (review80 L7), as it takes no `MULTIPROC_BOOT`.
        *target = if crate::sys::secure_execution() { None } else { std::env::var(ENV).ok() };
        STATE.store(if target.is_some() { ARMED } else { DISARMED }, Ordering::Relaxed);
    }
    target
}

#[cold]
#[inline(never)]
fn reached_armed(name: &'static str) {
    let mut target = armed_target();
    if target.as_deref().is_some_and(|points| points.split(',').any(|point| point == name)) {
        // As abrupt as `kill -9`: no destructor, no unlock, no unwinding.
        std::process::abort();
    }
    if target.as_deref().is_some_and(|points| points.split(',').any(|point| point.strip_prefix("stop:") == Some(name)))
    {
        drop(target);
        // Frozen here until killed (or continued, and then it goes on as if disarmed).
        crate::sys::stop_this_process();
        return;
    }
    let held = |target: &Option<String>| {
        target.as_deref().is_some_and(|points| points.split(',').any(|point| point.strip_prefix("hold:") == Some(name)))
    };
    if held(&target) {
        HOLDING.fetch_add(1, Ordering::Release);
        #[cfg(test)]
        HELD.lock().unwrap_or_else(|e| e.into_inner()).push((name, std::thread::current().id()));
        while held(&target) {
            target = CHANGED.wait(target).unwrap_or_else(|e| e.into_inner());
        }
        HOLDING.fetch_sub(1, Ordering::Release);
    }
}
