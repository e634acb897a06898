//! Shared (cross-process) futexes: the only way a process sleeps until another one says so.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::io::Errno;
use rustix::thread::futex;

use super::timespec;

/// How a [`futex_wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FutexWait {
    /// Woken by [`futex_wake`], by a signal, or spuriously: look again.
    Woken,
    /// The word no longer held the expected value when the wait began.
    Changed,
    /// The timeout passed.
    TimedOut,
}

/// Sleeps while `word == expected`, at most `timeout` (forever with `None`).
///
/// The futex is shared (no `FUTEX_PRIVATE_FLAG`), so the word may live in memory mapped
/// by several processes and be woken from any of them.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> FutexWait {
    let ts = timeout.map(timespec);
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Ok(()) => FutexWait::Woken,
        Err(Errno::AGAIN) => FutexWait::Changed,
        Err(Errno::TIMEDOUT) => FutexWait::TimedOut,
        // EINTR, and anything else the kernel might say: the caller re-checks its condition.
        Err(_) => FutexWait::Woken,
    }
}

/// Wakes up to `count` processes sleeping on `word`; returns how many were woken.
pub(crate) fn futex_wake(word: &AtomicU32, count: u32) -> usize {
    futex::wake(word, futex::Flags::empty(), count.min(i32::MAX as u32)).unwrap_or(0)
}

/// How a [`futex_waitv`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FutexWaitv {
    /// A wake-up was taken on `words[i]`, and maybe on others: when several words are
    /// woken before the sleeper runs, the kernel names the last of them in `words`
    /// (`futex_unqueue_multiple` keeps the highest index; the man page promises only one).
    Woken(usize),
    /// A word no longer held its expected value when the wait began; no wake-up taken.
    Changed,
    /// The timeout passed; no wake-up taken.
    TimedOut,
    /// A signal, or no `futex_waitv` (Linux before 5.16: after a short sleep): look again.
    Interrupted,
}

/// Sleeps until one of `words` no longer holds its expected value, or the timeout passes.
///
/// Needs Linux 5.16 (`futex_waitv`); on older kernels it sleeps for the timeout in short
/// slices so that callers still make progress by polling.
pub(crate) fn futex_waitv(words: &[(&AtomicU32, u32)], timeout: Option<Duration>) -> FutexWaitv {
    if words.is_empty() {
        std::thread::sleep(timeout.unwrap_or(Duration::from_millis(10)));
        return FutexWaitv::TimedOut;
    }
    let waits: Vec<futex::Wait> = words
        .iter()
        .map(|(w, v)| {
            let mut wait = futex::Wait::new();
            wait.uaddr = futex::WaitPtr::new(w.as_ptr().cast());
            wait.val = u64::from(*v);
            wait.flags = futex::WaitFlags::SIZE_U32;
            wait
        })
        .collect();
    // futex_waitv takes an absolute timeout on the given clock.
    let abs = timeout.map(|d| {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let now = Duration::new(now.tv_sec as u64, now.tv_nsec as u32);
        timespec(now + d)
    });
    match futex::waitv(&waits, futex::WaitvFlags::empty(), abs.as_ref(), futex::ClockId::Monotonic) {
        Ok(i) => FutexWaitv::Woken(i),
        Err(Errno::AGAIN) => FutexWaitv::Changed,
        Err(Errno::TIMEDOUT) => FutexWaitv::TimedOut,
        Err(Errno::NOSYS) => {
            std::thread::sleep(timeout.unwrap_or(Duration::from_millis(1)).min(Duration::from_millis(1)));
            FutexWaitv::Interrupted
        }
        // EINTR, and anything else the kernel might say: the caller looks again.
        Err(_) => FutexWaitv::Interrupted,
    }
}
