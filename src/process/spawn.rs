//! The spawn start method: a fresh execution of the current binary (`/proc/self/exe`).
//!
//! The slowest method, and the most isolated: the child shares nothing with its parent but
//! the family heap and the boot socket. It is dispatched before `main` runs, so the
//! program's `main` never runs twice.

use std::os::fd::{AsFd, OwnedFd};

use super::LaunchError;
use super::boot::BOOT_ENV;
use super::family;
use crate::shm::crash::fail_point;
use crate::sys;

/// Starts a child whose boot socket end is `boot`; returns its pid and pidfd.
pub(crate) fn start(boot: OwnedFd) -> Result<(u32, OwnedFd), LaunchError> {
    family::on_lasting_thread(move || {
        let parent = sys::my_pid();
        let env = [(BOOT_ENV, format!("spawn:{}:{parent}", sys::SPAWN_BOOT_FD))];
        // Room for the pidfd, taken before the child exists: a process out of descriptors
        // gets `EMFILE` here, with no child made.
        let room = sys::dup(&boot)?;
        let pid = sys::spawn_self(boot.as_fd(), &env)?;
        drop(room);
        // Another thread may have taken the room back (crash point
        // `fail:process.spawn.pidfd`: as if it had).
        let pidfd = if fail_point!("process.spawn.pidfd") { None } else { sys::pidfd_of_child(pid).ok() };
        pidfd.map(|pidfd| (pid, pidfd)).ok_or_else(|| LaunchError::lost(Some(pid)))
    })
}
