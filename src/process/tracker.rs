//! The resource tracker: a helper process that removes the family's named shared memory
//! segments from `/dev/shm` once every process of the family is gone, even after
//! `kill -9` (CPython's `resource_tracker`).
//!
//! It is a re-execution of the current binary in the `tracker` role, started at `init()`
//! before the fork server, so that every process of the family inherits the write end of
//! its pipe: fork and fork-server children by `fork`, spawned children through their boot
//! message. A process that creates a tracked segment writes `R<name>\n` on the pipe, one
//! that unlinks it `U<name>\n` (each line one atomic pipe write). The tracker reads until
//! the pipe's end of file, which comes when the last writer, the last family process, is
//! gone; then it unlinks what is still registered, says so on stderr, and exits.
//!
//! It has no parent-death signal and leaves the family's session and process group, so a
//! Ctrl-C or a `kill -9` of the family's group does not take it down before it cleans up.
//! It holds nothing but the read end, so it never outlives the family by more than that.
//!
//! The write end is non-blocking, so a tracker that stops reading (stopped by a debugger
//! or `kill -STOP`, its pipe full) makes no process wait for it for ever: a line waits
//! for room at most [`WAIT`], then a registration fails (`TimedOut`: the create that
//! asked for it fails and leaves no segment) and a forgetting is given up (the tracker
//! then unlinks that name when the family is gone).
//!
//! A name `SharedMemory` picks (`mp-<random>`, nobody else's) is registered before its
//! segment is made, so a process killed in between leaves the tracker a name, never an
//! unknown segment; a name the caller chose is registered once made (it may be another's
//! until the exclusive create succeeds, and the tracker must never unlink another's).

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::boot::BOOT_ENV;
use super::family;
use crate::sys;

/// The write end of the tracker's pipe, in every process of the family.
static PIPE: OnceLock<OwnedFd> = OnceLock::new();
/// Serialises starting a tracker in a process outside any family.
static STARTING: Mutex<()> = Mutex::new(());

/// The longest segment name the protocol carries (a line must stay one atomic write).
pub(crate) const MAX_NAME: usize = 250;

/// How long a line waits for room in a pipe its tracker does not read.
const WAIT: Duration = Duration::from_secs(5);

/// Starts the family's tracker. Called by `init()` in the main process, before the fork
/// server is forked; an error leaves the family without one (tracked segments then
/// cannot be created).
pub(crate) fn start() -> io::Result<()> {
    let _g = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if PIPE.get().is_some() {
        return Ok(());
    }
    let (read, write) = sys::pipe()?;
    // On the write end only: every family process shares its open file, the tracker reads
    // the other end and blocks there.
    sys::set_nonblocking(write.as_fd(), true)?;
    let env = [(BOOT_ENV, format!("tracker:{}", sys::SPAWN_BOOT_FD))];
    sys::spawn_self(read.as_fd(), &env)?;
    drop(read);
    let _ = PIPE.set(write);
    Ok(())
}

/// The write end, to pass to a spawned child.
pub(crate) fn fd() -> Option<BorrowedFd<'static>> {
    PIPE.get().map(|fd| fd.as_fd())
}

/// A spawned child takes the write end its parent passed.
pub(crate) fn adopt(fd: OwnedFd) {
    sys::set_cloexec(fd.as_fd());
    let _ = PIPE.set(fd);
}

fn send(line: &str) -> io::Result<()> {
    let fd = match PIPE.get() {
        Some(fd) => fd,
        None if !family::initialized() => {
            // A process outside any family is a family of one: it gets its own tracker.
            start()?;
            PIPE.get().ok_or_else(|| io::Error::other("the resource tracker did not start"))?
        }
        None => return Err(io::Error::other("this family has no resource tracker (it failed to start at init)")),
    };
    sys::write_line_by(fd.as_fd(), line.as_bytes(), Instant::now() + WAIT).map_err(|e| {
        if e.kind() == io::ErrorKind::TimedOut {
            io::Error::new(e.kind(), format!("the resource tracker read nothing for {WAIT:?} (is it stopped?)"))
        } else {
            e
        }
    })
}

/// Registers a segment to unlink when the family is gone.
pub(crate) fn register(name: &str) -> io::Result<()> {
    debug_assert!(name.len() <= MAX_NAME && !name.contains('\n'));
    send(&format!("R{name}\n"))
}

/// Forgets a segment (it was unlinked, or handed over on purpose).
pub(crate) fn unregister(name: &str) {
    if PIPE.get().is_some() {
        let _ = send(&format!("U{name}\n"));
    }
}

/// The tracker's life: read registrations until every writer is gone, then clean up.
pub(crate) fn run(pipe: OwnedFd) -> ! {
    sys::outlive_parent();
    sys::detach_from_session();
    let mut names = BTreeSet::new();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sys::read_some(pipe.as_fd(), &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            match line.split_at_checked(1) {
                Some(("R", name)) => {
                    names.insert(name.to_string());
                }
                Some(("U", name)) => {
                    names.remove(name);
                }
                _ => {}
            }
        }
    }
    let leaked: Vec<String> = names.into_iter().filter(|name| crate::shm::Segment::unlink(name).is_ok()).collect();
    if !leaked.is_empty() {
        eprintln!(
            "multiproc resource tracker: unlinked {} shared memory segment(s) the family left behind: {}",
            leaked.len(),
            leaked.join(", ")
        );
    }
    sys::exit_now(0)
}
