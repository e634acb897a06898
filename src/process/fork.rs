//! The fork start method: the child is a copy of the calling process.
//!
//! Fastest, and able to run any code the parent has, but a copy of a multithreaded
//! process has only the thread that forked: locks other threads held at that moment stay
//! locked forever in the child. So `launch` refuses `Fork` while other threads run
//! (`sys::fork_hazard`), unless the program took that on itself with the `unsafe`
//! `allow_fork_with_threads`. With one thread, the caller holds every lock there is;
//! multiproc holds the ones its children need (stdout, stderr, its own state) across the
//! fork, and glibc resets its allocator's. The fork server gives the same speed class
//! whatever threads run.

use std::io::{self, Write as _};
use std::os::fd::OwnedFd;

use super::boot::{self, Boot};
use super::family;
use crate::sys::{self, Forked};

/// Forks a child that runs `boot`, reporting on `theirs`; the child drops its copy of
/// `ours`. Returns its pid and pidfd, and `ours`.
pub(crate) fn start(boot: Boot, theirs: OwnedFd, ours: OwnedFd) -> io::Result<((u32, OwnedFd), OwnedFd)> {
    family::on_lasting_thread(move || {
        sys::prepare_stdin_devnull();
        let parent = sys::my_pid();
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        let _ = out.flush();
        let _ = err.flush();
        let mut state = family::state();
        match sys::fork() {
            Ok(Forked::Child) => {
                family::forget_parent_state(&mut state);
                drop(state);
                drop(err);
                drop(out);
                drop(ours);
                boot::run_in_fork(boot, theirs, parent)
            }
            Ok(Forked::Parent(pid)) => {
                drop(state);
                drop(err);
                drop(out);
                drop(theirs);
                drop(boot);
                let pidfd = sys::pidfd_open(pid)?;
                Ok(((pid, pidfd), ours))
            }
            Err(e) => Err(e),
        }
    })
}
