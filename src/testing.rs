//! Helpers for the crate's own (`--lib`) tests, which have no harness timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Aborts the test process if dropped later than its limit after [`watchdog`] made it: a
/// hang becomes a failure (as `tests/common`'s watchdog does for the integration tests).
#[must_use]
pub(crate) struct Watchdog {
    done: Arc<AtomicBool>,
}

/// A [`Watchdog`] for `limit`.
pub(crate) fn watchdog(limit: Duration) -> Watchdog {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let name = std::thread::current().name().unwrap_or("test").to_string();
    std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < limit {
            if flag.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("watchdog: {name} still running after {limit:?}; aborting");
        std::process::abort();
    });
    Watchdog { done }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// A child process killed (`SIGKILL`, which ends a stopped one too) and reaped when
/// dropped, a panic's unwinding included, or when the test process ends (a watchdog's
/// abort: a parent-death signal): a test's stopped child would otherwise stay stopped for
/// ever, adopted by init.
pub(crate) struct KilledOnDrop(pub(crate) std::process::Child);

impl KilledOnDrop {
    /// Runs `program` with `args`.
    pub(crate) fn spawn(program: &str, args: &[&str]) -> Self {
        let mut command = std::process::Command::new(program);
        command.args(args);
        Self(crate::sys::spawn_dying_with_parent(&mut command).expect("a test's child starts"))
    }
}

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fork child of a lib test (`sys::fork`), killed (`SIGKILL`) and reaped when dropped
/// unless [`ForkChild::wait`] reaped it: a failed assert, a panic's unwinding included,
/// leaves no process behind. Its end is waited for with a deadline, never for ever: a fork
/// copy of this multi-threaded test binary may wait on a lock another thread held at the
/// fork (stdout's, which `sys::exit_now` takes: the reason every lib-test fork child ends
/// with `sys::exit_group`), and the test then fails naming where it waits instead of
/// hanging (review128 M2: one hung for 20 minutes).
pub(crate) struct ForkChild {
    pid: u32,
    pidfd: std::os::fd::OwnedFd,
    reaped: bool,
}

impl ForkChild {
    /// The parent's side of `sys::fork`'s `Parent(pid)`.
    pub(crate) fn new(pid: u32) -> Self {
        let pidfd = match crate::sys::pidfd_open(pid) {
            Ok(pidfd) => pidfd,
            Err(e) => {
                crate::sys::kill_and_reap(pid);
                panic!("no pidfd for the fork child {pid}: {e}");
            }
        };
        Self { pid, pidfd, reaped: false }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits up to `limit` for the child to end, and reaps it: how it ended. Not ended by
    /// then: killed and reaped, and the test fails with the child's `/proc/<pid>/wchan`.
    pub(crate) fn wait(mut self, limit: Duration) -> crate::sys::Ended {
        use std::os::fd::AsFd;
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let readable = crate::sys::poll_readable(&[self.pidfd.as_fd()], Some(left)).unwrap_or_default();
            if readable.first().copied().unwrap_or(false) {
                let ended = crate::sys::reap_pidfd(self.pidfd.as_fd(), true);
                self.reaped = true;
                match ended {
                    Ok(Some(ended)) => return ended,
                    other => panic!("the fork child {} ended, and its reap said {other:?}", self.pid),
                }
            }
            if left.is_zero() {
                let wchan = std::fs::read_to_string(format!("/proc/{}/wchan", self.pid)).unwrap_or_default();
                // Dropped: killed and reaped.
                panic!("the fork child {} did not end within {limit:?} (wchan {wchan}): killed", self.pid);
            }
        }
    }
}

impl Drop for ForkChild {
    fn drop(&mut self) {
        if !self.reaped {
            crate::sys::kill_and_reap(self.pid);
        }
    }
}
