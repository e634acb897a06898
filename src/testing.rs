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
    /// Killed and reaped through its pidfd, never by pid: a test that reaped the child some
    /// other way (`sys::kill_and_reap_child(child.pid())`) leaves its pid free for any
    /// process to take, which a kill by pid would reach; the pidfd names the child for ever
    /// (review132 L3).
    fn drop(&mut self) {
        use std::os::fd::AsFd;
        if !self.reaped {
            let _ = crate::sys::pidfd_signal(self.pidfd.as_fd(), libc::SIGKILL);
            let _ = crate::sys::reap_pidfd(self.pidfd.as_fd(), true);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::os::fd::AsFd as _;
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::sys;

    /// A fork child that ends at the end of file of its socket (the other end, `ours`,
    /// given back to the parent: its drop, or the test's end, ends the child).
    fn child_until_eof(forked: sys::Forked, ours: UnixStream, its: UnixStream) -> (ForkChild, UnixStream) {
        match forked {
            sys::Forked::Child => {
                drop(ours);
                let _ = (&its).read(&mut [0u8]);
                sys::exit_group(0)
            }
            sys::Forked::Parent(pid) => (ForkChild::new(pid), ours),
        }
    }

    /// review132 L3: a `ForkChild` whose child a test reaped some other way
    /// (`sys::kill_and_reap_child(child.pid())`), dropped once another process took its
    /// pid, leaves that process alone. The drop killed and reaped by pid: it killed the
    /// stranger (here a child of ours made with that very pid, `sys::fork_with_pid`), and
    /// reaped it. Through the child's pidfd, which names it for ever, it reaches nobody.
    #[test]
    fn a_fork_child_reaped_elsewhere_is_not_killed_again_through_a_reused_pid() {
        let _w = watchdog(Duration::from_secs(60));
        for _ in 0..100 {
            let (ours, its) = UnixStream::pair().unwrap();
            let (first, _ours) = child_until_eof(sys::fork().unwrap(), ours, its);
            let pid = first.pid();
            sys::kill_and_reap_child(pid).unwrap();
            let (ours, its) = UnixStream::pair().unwrap();
            let forked = match sys::fork_with_pid(pid) {
                Ok(forked) => forked,
                // Taken by another process of the machine meanwhile: again.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    println!("not tested: no pid can be chosen here ({e})");
                    return;
                }
                Err(e) => panic!("clone3 with set_tid: {e}"),
            };
            let (stranger, ours) = child_until_eof(forked, ours, its);
            assert_eq!(stranger.pid(), pid);
            let look = sys::pidfd_open(pid).unwrap();
            drop(first);
            let hit = sys::poll_readable(&[look.as_fd()], Some(Duration::ZERO)).unwrap()[0];
            println!("pid {pid} taken again; the first child's drop ended its new owner: {hit}");
            drop(ours);
            if !hit {
                assert_eq!(stranger.wait(Duration::from_secs(10)), sys::Ended::Exited(0));
            }
            assert!(!hit, "the drop of a child reaped elsewhere killed the process that took its pid");
            return;
        }
        panic!("no pid freed by a reap could be taken again in 100 tries");
    }
}
