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
