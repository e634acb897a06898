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
//! or `kill -STOP`, its pipe full) makes no process wait for it for ever: a call waits
//! for room at most [`WAIT`], and once a line of a process has timed out, that process's
//! later calls try once without waiting until one is written again (review61 M1: a
//! `SharedMemoryManager` shutdown of 200 blocks waited 5 s per block, 17 minutes). A
//! registration that times out fails (`TimedOut`: the create that asked for it fails and
//! leaves no segment). A forgetting that times out is kept in the process's backlog and
//! written before its next line, so that the tracker sees each process's lines in their
//! order (review61 M2: given up, the name stayed registered, and the tracker unlinked
//! with the family an `untrack`ed segment, or one made again under that name untracked);
//! `untrack` says it was not taken yet, and an untracked create of a name still in the
//! backlog fails rather than make a segment the tracker would unlink. A child process
//! tries its backlog once more at its normal end, the main process in its exit hook; a
//! process killed loses it. Another process's later registration
//! of the same name may be overtaken by it (the tracker then leaks that segment, it never
//! unlinks one wrongly).
//!
//! Every segment is registered from the first moment it is ours, before its pages are
//! allocated (seconds for a large one), so that a process killed at any step leaves the
//! tracker at most a name to unlink, never a segment it does not know: a name
//! `SharedMemory` picks (`mp-<random>`, nobody else's) before its segment is made, a name
//! the caller chose once the exclusive create made it (it may be another's until then,
//! and the tracker must never unlink another's).

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::boot::BOOT_ENV;
use super::family;
use crate::sys;

/// The write end of the tracker's pipe, in every process of the family.
static PIPE: OnceLock<OwnedFd> = OnceLock::new();
/// Serialises starting a tracker in a process outside any family.
static STARTING: Mutex<()> = Mutex::new(());
/// This process's lines to the tracker, written one call at a time.
static LINES: Mutex<Lines> = Mutex::new(Lines { pid: 0, stalled: false, backlog: VecDeque::new() });

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

/// The write end, for a line of this process; in a process outside any family (a family of
/// one), its tracker is started first.
fn pipe() -> io::Result<BorrowedFd<'static>> {
    match PIPE.get() {
        Some(fd) => Ok(fd.as_fd()),
        None if !family::initialized() => {
            start()?;
            Ok(PIPE.get().ok_or_else(|| io::Error::other("the resource tracker did not start"))?.as_fd())
        }
        None => Err(io::Error::other("this family has no resource tracker (it failed to start at init)")),
    }
}

/// The lines of a process to its tracker: what it owes the tracker, and whether the
/// tracker has been reading.
pub(crate) struct Lines {
    /// The process these are of: a fork child's copy is its parent's (whose lines are its
    /// parent's to write), and it starts afresh.
    pid: u32,
    /// A line timed out and none was written since: the tracker reads nothing (stopped?),
    /// so the next calls try once and do not wait (one wait per process, not per line).
    stalled: bool,
    /// The names of forgettings (`U` lines) that timed out, oldest first: written before
    /// any later line of this process.
    backlog: VecDeque<String>,
}

/// This process's lines, locked: a `Fork` start holds them across the fork, so that its
/// child never inherits them taken by another thread (which may be waiting for room, up to
/// [`WAIT`]).
pub(crate) fn lock_lines() -> MutexGuard<'static, Lines> {
    let mut lines = LINES.lock().unwrap_or_else(PoisonError::into_inner);
    let me = sys::my_pid();
    if lines.pid != me {
        *lines = Lines { pid: me, stalled: false, backlog: VecDeque::new() };
    }
    lines
}

impl Lines {
    /// Writes the backlog, then `line` (if any), each line one atomic write, all within one
    /// wait for room: [`WAIT`], or none while the tracker is stalled. A dead tracker
    /// (`BrokenPipe`) takes no backlog any more: it unlinks nothing.
    fn write(&mut self, fd: BorrowedFd<'_>, line: Option<&str>) -> io::Result<()> {
        let deadline = if self.stalled { Instant::now() } else { Instant::now() + WAIT };
        let mut written = || {
            while let Some(name) = self.backlog.front() {
                sys::write_line_by(fd, format!("U{name}\n").as_bytes(), deadline)?;
                self.backlog.pop_front();
            }
            line.map_or(Ok(()), |line| sys::write_line_by(fd, line.as_bytes(), deadline))
        };
        let result = written();
        match &result {
            Ok(()) => self.stalled = false,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                self.stalled = true;
                return Err(io::Error::new(
                    e.kind(),
                    format!("the resource tracker has read nothing for {WAIT:?} or more (is it stopped?)"),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => self.backlog.clear(),
            Err(_) => {}
        }
        result
    }
}

/// Registers a segment to unlink when the family is gone.
pub(crate) fn register(name: &str) -> io::Result<()> {
    debug_assert!(name.len() <= MAX_NAME && !name.contains('\n'));
    let fd = pipe()?;
    lock_lines().write(fd, Some(&format!("R{name}\n")))
}

/// Forgets a segment (it was unlinked, or handed over on purpose).
///
/// # Errors
///
/// `TimedOut` when the tracker did not take the line: it still holds the name, and the
/// line waits in this process's backlog, written before its next line. Without a tracker
/// (none started, or it is dead) there is nothing to forget, so no error.
pub(crate) fn unregister(name: &str) -> io::Result<()> {
    let Some(fd) = PIPE.get() else { return Ok(()) };
    let mut lines = lock_lines();
    match lines.write(fd.as_fd(), Some(&format!("U{name}\n"))) {
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            if !lines.backlog.iter().any(|owed| owed == name) {
                lines.backlog.push_back(name.to_owned());
            }
            Err(e)
        }
        _ => Ok(()),
    }
}

/// Writes what it can of this process's backlog, and says whether the tracker may still
/// hold `name` because of it (a forgetting of `name` it has not taken: it would unlink a
/// segment made under that name untracked).
///
/// # Errors
///
/// `TimedOut` when a forgetting of `name` is still in the backlog.
pub(crate) fn settle(name: &str) -> io::Result<()> {
    write_backlog_owing(Some(name))
}

/// At the normal end of a process (a child's boot, the main process's exit hook): what is
/// left of its backlog gets its last chance (one try when the tracker is stalled, else at
/// most [`WAIT`]), since nothing is written after.
pub(crate) fn write_backlog() {
    let _ = write_backlog_owing(None);
}

/// Writes what it can of this process's backlog; an error only when a forgetting of `name`
/// is still in it.
fn write_backlog_owing(name: Option<&str>) -> io::Result<()> {
    let Some(fd) = PIPE.get() else { return Ok(()) };
    let mut lines = lock_lines();
    if lines.backlog.is_empty() {
        return Ok(());
    }
    match lines.write(fd.as_fd(), None) {
        Err(e) if name.is_some_and(|name| lines.backlog.iter().any(|owed| owed == name)) => Err(e),
        _ => Ok(()),
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
