//! The spawn start method: a fresh execution of the current binary (`/proc/self/exe`).
//!
//! The slowest method, and the most isolated: the child shares nothing with its parent but
//! the family heap and the boot socket. It is dispatched before `main` runs, so the
//! program's `main` never runs twice.

use std::os::fd::{AsFd, OwnedFd};

use super::LaunchError;
use super::boot::BOOT_ENV;
use super::family;
use crate::shm::crash::{crash_point, fail_point};
use crate::sys;

/// Starts a child whose boot socket end is `boot`; returns its pid and pidfd. The child
/// runs nothing before its parent's [`super::boot::GO`], sent after this look at it
/// (`on_socket`): it cannot end, and be reaped by a program that reaps its children
/// itself, before its pidfd is had (spw82), unless killed. A failed `exec` is
/// `posix_spawn`'s error, with no child: glibc reaps it (a `vfork` child that reports its
/// `errno` and exits 127).
pub(crate) fn start(boot: OwnedFd) -> Result<(u32, OwnedFd), LaunchError> {
    family::on_lasting_thread(move || {
        let parent = sys::my_pid();
        let env = [(BOOT_ENV, format!("spawn:{}:{parent}", sys::SPAWN_BOOT_FD))];
        // Room for the pidfd, taken before the child exists: a process out of descriptors
        // gets `EMFILE` here, with no child made.
        let room = sys::dup(&boot)?;
        let pid = sys::spawn_self(boot.as_fd(), &env)?;
        drop(room);
        crash_point!("process.spawn.spawned");
        // Another thread may have taken the room back (crash point
        // `fail:process.spawn.pidfd`: as if it had).
        let pidfd =
            if fail_point!("process.spawn.pidfd") { Err(sys::out_of_descriptors()) } else { sys::pidfd_of_child(pid) };
        match pidfd {
            Ok(pidfd) => Ok((pid, pidfd)),
            // Killed (it waits for `GO`), and reaped by the program before this look
            // (review85 L2: it said "out of descriptors"); settled as dead from what it
            // left on its socket (`on_socket` adds it; review88 L1, L2).
            Err(e) if matches!(e.raw_os_error(), Some(libc::ESRCH | libc::ECHILD)) => Err(LaunchError::reaped(
                pid,
                format!(
                    "the spawned child {pid} ended and was reaped by the program itself (a SIGCHLD it ignores, or \
                     its own wait for any child) before its start could watch it"
                ),
                None,
                None,
            )),
            Err(_) => Err(LaunchError::lost(Some(pid))),
        }
    })
}
