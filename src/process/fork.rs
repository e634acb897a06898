//! The fork start method: the child is a copy of the calling process.
//!
//! Fastest, and able to run any code the parent has, but a copy of a multithreaded
//! process has only the thread that forked: locks other threads held at that moment stay
//! locked forever in the child. So `launch` refuses `Fork` while other threads run
//! (`sys::fork_hazard`), unless the program took that on itself with the `unsafe`
//! `allow_fork_with_threads`. With one thread, the caller holds every lock there is;
//! multiproc holds the ones its children need (stdout, stderr, its own state, the
//! `child_init`, the process's names, the crash points' lock, its lines to the resource
//! tracker) across the fork, and glibc
//! resets its allocator's. The fork server gives the same speed class whatever threads run.
//!
//! The child's copy of memory holds copies of the parent's handles (in statics,
//! thread-locals, anywhere): before it runs, the parent records it as a holder of every
//! object it holds, with its counts (`shm::before_fork`), then, once it has opened the
//! child's pidfd, tells it to go on with one byte on the boot socket.
//!
//! No child ends before that look (audp61): a program that reaps children itself (a
//! `SIGCHLD` it ignores, its own `waitpid(-1)`) reaped a child that ended first, and its
//! start failed. A socket child runs only once told to go on; a room child (below) runs at
//! once and waits for its room's go word at its end (`ChildRoom::wait_to_end`), said right
//! after the look. `clone3(CLONE_PIDFD)` would give the pidfd with the fork, but skips the
//! program's `pthread_atfork` handlers and glibc's fix-ups of a forked child (its cached
//! tid, its allocator's locks): no Rust code could run soundly in such a child.
//!
//! Such a child, when its argument holds no handles either (no note to send), has no boot
//! socket at all: it inherits its boot data, leaves its outcome in a report room of the
//! family heap (`shm::ReportRoom`) and its parent learns its end from its pidfd, which
//! spares the parent a socketpair, its closes and its reads.

use std::io::{self, Write as _};
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};

use super::LaunchError;
use super::boot::{self, Boot, Channel};
use super::child::Link;
use super::family;
use crate::shm;
use crate::shm::crash::crash_point;
use crate::sys::{self, Forked};

/// The byte that tells a fork child that it is recorded as a holder of its copies, and that
/// its parent has opened its pidfd.
const GO_ON: u8 = 0x47;

/// In the child: waits until the parent has recorded it and looked at it. False when the
/// parent said nothing (its start failed, or it died).
fn go_on_told(sock: BorrowedFd<'_>) -> bool {
    let mut byte = [0u8];
    matches!(sys::read_some(sock, &mut byte), Ok(1)) && byte[0] == GO_ON
}

/// What the parent keeps of a fork child until the child has ended.
pub(crate) struct Kept {
    /// What it made for the child: freeing it while the child runs writes pages of the heap
    /// that the child shares (a copy of each, beside the child's own boot).
    _made: Box<dyn std::any::Any + Send>,
    /// The child as its fork record names it (`shm::ForkRecord`; none when this process
    /// held nothing): its end lets go of that record, never of another's with its pid
    /// (`shm::fork_child_ended`).
    pub(crate) recorded: Option<sys::ProcId>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept").field("recorded", &self.recorded).finish_non_exhaustive()
    }
}

/// Where a fork child reports: its boot socket (ours, theirs; with the room made for it
/// and not used), or its report room.
enum Via {
    Socket((OwnedFd, OwnedFd), Option<shm::ReportRoom>),
    Room(shm::ReportRoom),
}

/// A kept argument's bytes at most: a larger one is freed at once.
const KEEP_MAX: usize = crate::shm::INLINE_MAX;

/// Forks a child that runs `boot`, reporting in a report room or on a boot socket (see
/// the module's documentation). Returns its pid and pidfd, the parent's side of where it
/// reports, and what to drop once the child has ended.
pub(crate) fn start(boot: Boot) -> Result<((u32, OwnedFd), Link, Kept), LaunchError> {
    family::on_lasting_thread(move || {
        crash_point!("process.fork.begun");
        let prepared = boot::Prepared::new(&boot.me.name);
        // Made before the locks below (it takes the heap's); used only if the parent turns
        // out to hold nothing. A heap too full for it: the socket.
        let room = if boot.receipts == 0 { shm::ReportRoom::new().ok() } else { None };
        sys::prepare_stdin_devnull();
        let parent = sys::my_pid();
        // `launch` counted this thread alone, unless the program opted in to forks beside
        // threads: then no other thread can hold a lock at the fork, and the ones a child
        // takes need not be held across it. Held, each is a write to its page on both sides
        // of the fork (a page fault in the parent, a copied page in the child). The heap's
        // books are taken still (data the child clears), its fork gate not.
        let alone = !sys::fork_with_threads_allowed() && sys::on_main_thread();
        let (out, err) = if alone {
            // Flushed now: nothing can write to it before the fork. Stderr has no buffer.
            let _ = std::io::stdout().lock().flush();
            (None, None)
        } else {
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            let _ = out.flush();
            let _ = err.flush();
            (Some(out), Some(err))
        };
        let mut state = family::state();
        // Asked here, not in the child: a child of an idle thread reaches none of the
        // codec's thread-locals.
        let codec_busy = crate::codec::busy_here();
        let record = if alone { shm::before_fork_alone() } else { shm::before_fork() };
        let wait_for_record = !record.holds_nothing();
        let via = match room {
            Some(room) if !wait_for_record => Via::Room(room),
            unused => Via::Socket(sys::socketpair_stream()?, unused),
        };
        let forked = if alone { sys::fork() } else { fork_holding_boot_locks() };
        match forked {
            Ok(Forked::Child) => {
                record.in_child();
                let channel = match via {
                    Via::Socket((ours, theirs), unused) => {
                        // The parent's to free.
                        if let Some(room) = unused {
                            room.leave();
                        }
                        // Our copy of the parent's end first: the parent's death is then an
                        // end of stream here.
                        sys::close_in_fork_child(ours);
                        if !go_on_told(theirs.as_fd()) {
                            // The parent could not record this process, or gave its start
                            // up: it must not run.
                            sys::exit_now(1);
                        }
                        Channel::Socket(theirs)
                    }
                    Via::Room(room) => {
                        // The parent's to free: this copy is only where to write.
                        let child = room.child();
                        room.leave();
                        Channel::Room(child)
                    }
                };
                family::forget_parent_state(&mut state);
                if let Channel::Room(room) = &channel {
                    // Its end waits for the look (`ChildRoom::wait_to_end`), at an `exit`
                    // too.
                    state.ends_after_look = Some(*room);
                }
                if codec_busy {
                    crate::codec::forget_parent_in_fork_child();
                }
                drop(state);
                drop(err);
                drop(out);
                boot::run_in_fork(boot, channel, parent, prepared)
            }
            Ok(Forked::Parent(pid)) => {
                let recorded = if wait_for_record {
                    let Some(start) = sys::process_start(pid) else {
                        // Not even a zombie: nothing of it can run.
                        drop(record);
                        return Err(io::Error::other("the fork child vanished before it was recorded").into());
                    };
                    record.record(sys::ProcId { pid, start });
                    Some(sys::ProcId { pid, start })
                } else {
                    drop(record);
                    None
                };
                drop(state);
                drop(err);
                drop(out);
                let link = match via {
                    Via::Socket((ours, theirs), unused) => {
                        drop(theirs);
                        // Never written by the child: freed now.
                        drop(unused);
                        // No boot message on it: the child reads ours in its copy.
                        Link::Socket(ours, None)
                    }
                    // Nor in its room: a fork child's boot message holds no handle.
                    Via::Room(room) => Link::Room(room, None),
                };
                let mut boot = boot;
                if boot.args.bytes().len() > KEEP_MAX {
                    boot.args = shm::Payload::Inline(Vec::new());
                }
                // Between the record and the look (the tests' `hold:`: a child killed
                // meanwhile under an ignored `SIGCHLD` is reaped before it; one that runs
                // does not end before the look).
                crash_point!("process.fork.recorded");
                let pidfd = sys::pidfd_of_child(pid);
                // Only now may the child end (audp61: a program that reaps children itself
                // reaped one that ended before this look, and its start failed): a socket
                // child runs once told to (should the byte not arrive, it exits at once
                // without touching anything: the start still reports that), a room child
                // waits for its go at its end (`ChildRoom::wait_to_end`). Told even when
                // the look failed for want of a descriptor: the child runs on, as before.
                match &link {
                    Link::Socket(ours, _) => {
                        let _ = sys::send_all(ours.as_fd(), &[GO_ON], &[]);
                    }
                    Link::Room(room, _) => room.go(),
                    _ => {}
                }
                let pidfd = match pidfd {
                    Ok(pidfd) => pidfd,
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ESRCH | libc::ECHILD)) => {
                        // Dead, and reaped by the program: settled as a reap would
                        // (`child::settle_reaped`, with the argument's token or undo
                        // `launch` keeps). Its room and record were kept for ever before
                        // (review85 L1), its socket dropped unread (review88 L1).
                        return Err(LaunchError::reaped(
                            pid,
                            format!(
                                "the fork child {pid} ended and was reaped by the program itself (a SIGCHLD it \
                                 ignores, or its own wait for any child) before its start could watch it"
                            ),
                            Some(link),
                            Some(Kept { _made: Box::new((boot, prepared)), recorded }),
                        ));
                    }
                    Err(e) => {
                        // The child runs on and may still write its room.
                        if let Link::Room(room, _) = link {
                            room.leave();
                        }
                        return Err(e.into());
                    }
                };
                Ok(((pid, pidfd), link, Kept { _made: Box::new((boot, prepared)), recorded }))
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// Forks while holding the locks a child takes at boot, so that it finds them free: their
/// other holders take nothing under them, and hold them only for a moment. The crash
/// points' lock (tests: a child whose crash points are armed takes it at the first it
/// reaches) is taken under the three by a crash point in their sections: after them. Take the family's state and the heap's fork record first
/// (`shm::before_fork`).
pub(super) fn fork_holding_boot_locks() -> std::io::Result<sys::Forked> {
    let child_init = super::init::lock_child_init();
    let log_name = super::logging::lock_name();
    let process_name = super::panics::lock_process_name();
    let crash_target = shm::crash::lock_target();
    let tracker_lines = super::tracker::lock_lines();
    let forked = sys::fork();
    drop(tracker_lines);
    drop(crash_target);
    drop(process_name);
    drop(log_name);
    drop(child_init);
    forked
}
