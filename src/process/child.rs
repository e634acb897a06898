//! A child as its parent sees it: how to learn that it ended, how it ended, and the
//! outcome it sent back over its boot socket.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::boot::{Outcome, read_frame_nonblocking};
use super::spin::LoadSpin;
use crate::codec::Encoded;
use crate::shm::crash::{crash_point, fail_point};
use crate::shm::{ArgsToken, Deadline, ReceiptKey, ReportRoom, ResultHandles};
use crate::sys::{self, Ended};

/// How long a waiting parent polls for its child's end before it sleeps (unless the
/// machine is busy: [`LoadSpin`]).
const EXIT_SPIN: Duration = Duration::from_micros(300);
thread_local! {
    /// This thread's record of its spins for children's ends. Per thread, not per process:
    /// a static's page would be written at every join (the record, or its count of skipped
    /// waits), and a page a fork parent writes between two forks is a page fault at every
    /// start, where the thread's own page is written at every start anyway.
    static EXIT_SPINS: LoadSpin = const { LoadSpin::new() };
}
/// How long a waiting parent first sleeps on its child's end alone, before it watches the
/// boot socket too (where a large outcome may be waiting for it).
const FIRST_SLEEP: Duration = Duration::from_millis(1);
/// The longest sleep of a waiting parent between two looks at its child.
const SLEEP: Duration = Duration::from_millis(250);

/// How the parent learns that a child ended.
#[derive(Debug)]
pub(crate) enum ExitWatch {
    /// Our own child (spawn, fork, and the fork server's children of the main process):
    /// reaped through its pidfd.
    Own,
    /// A child of the fork server, which reaps it and writes the raw wait status into
    /// this pipe.
    Server(OwnedFd),
}

/// Where the parent finds a child's outcome.
#[derive(Debug)]
pub(crate) enum Link {
    /// The boot socket, and the boot message sent on it if it holds handles (its blobs):
    /// given back from the dead child at its reap (see [`Inner::boot`]).
    Socket(OwnedFd, Option<Encoded>),
    /// The boot socket of a child whose boot message could not be sent whole (why): it ends
    /// at the end of its socket without running anything, and its join says so
    /// (`Outcome::Failed`), not an exit of its target's (review46 M1).
    Unsent(OwnedFd, String),
    /// A report room, read once the child has ended: a fork child's (`super::fork`), or a
    /// fork-server child's without a boot socket (`super::forkserver::Boot::Inline`), with
    /// its boot message if it holds handles, as for [`Link::Socket`].
    Room(ReportRoom, Option<Encoded>),
}

#[derive(Debug)]
struct Inner {
    /// The boot socket, open until the outcome arrived or the child is gone.
    sock: Option<Arc<OwnedFd>>,
    /// A fork child's report room instead of a socket, until the child has ended.
    room: Option<ReportRoom>,
    buf: Vec<u8>,
    outcome: Option<Outcome>,
    ended: Option<Ended>,
    /// The child's argument's token or undo, until the child is reaped.
    args: ChildArgs,
    /// The receipts the child sent on its boot socket (without a token).
    sent: Vec<ReceiptKey>,
    /// The boot message, if it holds handles (its blobs), until the child is reaped: given
    /// back then from the dead child ([`crate::codec::give_back_from_dead`]). Whatever
    /// the child did, that gives each blob back at most once, never twice: a child killed
    /// before its decoding left the blob's count in flight, the undo takes it; one killed
    /// inside left its receive pending, whose entry the undo forgets first, then takes the
    /// count; one that decoded took the count (the undo finds none, and the blob is the
    /// child's, let go of by its death). No other message counts these blobs: made for this
    /// message, they are never sent again, so the word's count is the only one. Not at all
    /// (a leak at worst) when the message is forgotten instead: a state dropped unreaped, a
    /// child that may outlive its vanished fork server, a `Lost` start (review54 M1's rest:
    /// the child's word that it took the message, sent just before its decoding, made its
    /// parent forget it, and a kill inside the decoding leaked the blob).
    boot: Option<Encoded>,
    /// The key of its outcome's blob the child named (on its socket, or in its room, read
    /// at the reap) before its outcome's encoding counted the blob in flight, until the
    /// outcome came whole: given back at the reap from the dead child that reported none
    /// (`Blob::give_back_sent_by_dead`). Never twice, never one the parent took: a
    /// committed report is decoded (the parent takes the count), and only a report that
    /// never committed leaves the key here; the blob was made for that outcome alone, so a
    /// count left in flight is the outcome's (none if the child died before it encoded
    /// it: its reap freed the blob then, whose generation the give-back's pin finds gone).
    outcome_blob: Option<ReceiptKey>,
    /// The key of its result's undo the child named in place of its outcome's blob (a
    /// result that holds handles: `shm::result_undo`), until the reap: its undo run then
    /// unless a returned outcome came whole (kept in `result_handles` otherwise), and
    /// given back.
    result_undo: Option<ReceiptKey>,
    /// That undo, taken at the reap, while a returned outcome that came whole may still be
    /// decoded: dropped when the outcome is taken ([`ChildState::take_outcome`]: its decoding
    /// takes the counts), run when the state is dropped with the outcome never taken (a
    /// handle dropped unjoined; review98 M1: the handles stayed in flight for good), in
    /// the process that started the child only (a fork copy of the state runs nothing).
    result_handles: Option<ResultHandles>,
    /// The copy of its report room the fork server sent ahead of its status, having taken
    /// the room (`ReportRoom::copy_at`): the room is the server's, never touched here again.
    taken: Option<Vec<u8>>,
    /// The process that made this state (the child's parent).
    maker: u32,
    /// What the parent made for a fork child, dropped once the child has ended
    /// ([`super::fork::Kept`]).
    kept: Option<super::fork::Kept>,
}

impl Inner {
    fn new(link: Link, args: ChildArgs, kept: Option<super::fork::Kept>) -> Self {
        let (sock, room, outcome, boot) = match link {
            Link::Socket(sock, boot) => (Some(Arc::new(sock)), None, None, boot),
            Link::Room(room, boot) => (None, Some(room), None, boot),
            Link::Unsent(sock, why) => (Some(Arc::new(sock)), None, Some(Outcome::Failed(why)), None),
        };
        // Only its undo entries are needed until the reap, not its bytes (a room child's
        // up to `INLINE_BOOT_MAX`, a socket child's of any length: review62 L7).
        let boot = boot.map(Encoded::undo_only);
        Self {
            sock,
            room,
            buf: Vec::new(),
            outcome,
            ended: None,
            args,
            sent: Vec::new(),
            boot,
            outcome_blob: None,
            result_undo: None,
            result_handles: None,
            taken: None,
            maker: sys::pid_now(),
            kept,
        }
    }

    /// Reads what the child `pid`, ended, left, and lets go of what it held: `maybe_running`
    /// when it was told ended (its fork server vanished) but may still run, which keeps the
    /// blob it named; `dropped` when its outcome will not be decoded (a failed start).
    fn settle(&mut self, pid: u32, maybe_running: bool, dropped: bool) {
        // Everything the child wrote is in the socket now: its note, if it sent one.
        ChildState::pump(self);
        // Or in its room, which the child writes no more; freed, or left until the fork
        // server that forked it is done with it (its go after its answer).
        if let Some(room) = self.room.take() {
            let (outcome, named) = match self.taken.take() {
                // Taken and freed by the server, which sent its copy.
                Some(copy) => outcome_of(room.taken(&copy)),
                None => read_room(room),
            };
            self.outcome = outcome;
            if let Some(key) = named {
                keep_named(key, &mut self.outcome_blob, &mut self.result_undo);
            }
            if self.outcome.is_some() {
                self.outcome_blob = None;
            }
        }
        // What the child held and never let go of (killed, or exited without dropping): a
        // fork child's copies of this process's handles, and every hold it listed in the
        // heap (its argument's handles it received among them: held at once, never
        // pending).
        // The undo of a result's handles (see `Inner::result_undo`), taken: run now unless
        // a returned outcome came whole that may be decoded (`dropped`: it will not), then
        // kept (`Inner::result_handles`), with the blob it names given back when no outcome
        // came; not for a child that may still run. Taken before the prune of the child's
        // holds only so that the give-back finds the dead child's hold: an unsent undo that
        // somebody freed first ran at its free.
        if let Some(key) = self.result_undo.take()
            && !maybe_running
        {
            let returned = matches!(self.outcome, Some(Outcome::Returned(_)));
            let taken = crate::shm::give_back_result_undo(key, pid, self.outcome.is_none());
            match returned && !dropped {
                true => self.result_handles = Some(taken),
                false => taken.run(),
            }
        }
        if let Some(recorded) = self.kept.as_ref().and_then(|kept| kept.recorded) {
            crate::shm::fork_child_ended(recorded);
        }
        crate::shm::process_ended(pid);
        // The token taken back if the child never took it (its undo runs then); a child
        // that took it freed it by its leave or its death (just now, its entry pruned by
        // `process_ended`, or by the take-back when no reap found its hold). Without a
        // token, the argument's handles the child sent no receipt for are given back: the
        // receipts it sent are all in `sent` now.
        if let Some(token) = self.args.token.take() {
            token.give_back();
        }
        // The boot message's blobs the dead child did not take (see `Inner::boot`).
        if let Some(boot) = self.boot.take() {
            crate::codec::give_back_from_dead(boot, pid, Vec::new());
        }
        if let Some(args) = self.args.undo.take() {
            let sent = std::mem::take(&mut self.sent);
            crate::codec::give_back_from_dead(args, pid, sent);
        }
        // The blob of an outcome the dead child never reported whole (see
        // `Inner::outcome_blob`). Not that of a child that may still run, which may still
        // count it in flight (then it leaks, as its room does): given back before, its
        // outcome read as garbled, or its count leaked (review82 L2).
        if let Some(key) = self.outcome_blob.take()
            && !maybe_running
        {
            crate::shm::Blob::give_back_sent_by_dead(key, pid);
        }
        self.kept = None;
    }
}

/// Keeps `key`, which a child named before its outcome's encoding: its outcome's blob, or
/// its result's undo.
fn keep_named(key: ReceiptKey, blob: &mut Option<ReceiptKey>, result_undo: &mut Option<ReceiptKey>) {
    match crate::shm::named_result_undo(key) {
        Some(undo) => *result_undo = Some(undo),
        None => *blob = Some(key),
    }
}

/// Settles our own child `pid`, which ended and was reaped by the program before its start
/// could open its pidfd (the start fails): what it reported is read from `link` and let go
/// of (its outcome dropped, the blob it named given back, its receipts matched against the
/// argument's undo), and what it held, as [`ChildState`]'s reap does. Before, its socket
/// was dropped unread: the outcome's blob stayed counted in flight, and the argument's undo
/// ran whole, its receipted handles' counts taken again (review88 L1).
pub(super) fn settle_reaped(pid: u32, link: Link, args: ChildArgs, kept: Option<super::fork::Kept>) {
    Inner::new(link, args, kept).settle(pid, false, true);
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Not known to be lost (the child may still run): they stay the child's; the token
        // stays listed, for our reaper to take back if the child never takes it.
        if let Some(args) = self.args.undo.take() {
            args.sent();
        }
        if let Some(token) = self.args.token.take() {
            token.leave();
        }
        if let Some(boot) = self.boot.take() {
            boot.sent();
        }
        // A returned outcome never taken (see `Inner::result_handles`).
        if let Some(handles) = self.result_handles.take()
            && self.maker == sys::pid_now()
        {
            handles.run();
        }
        // Still the child's to write (freed once it has ended: `try_reap`).
        if let Some(room) = self.room.take() {
            room.leave();
        }
    }
}

/// What a parent keeps of its child's argument until it reaps the child.
#[derive(Debug, Default)]
pub(crate) struct ChildArgs {
    /// Without a token (`boot::NOTE_ONLY`): the undo of the argument's handles, run at the
    /// reap for those the child sent no receipt for (on its boot socket, into `sent`).
    pub(crate) undo: Option<Encoded>,
    /// The argument's token (`shm::receipts::ArgsToken`): taken back at the reap if the
    /// child never took it (every undo then runs); else the child's death freed it.
    pub(crate) token: Option<ArgsToken>,
}

/// What a process that did not start a child gets for a look at it, a wait or a signal:
/// a fork copy of the parent's handle (through a static, a captured clone, a bare fork)
/// shares the child's boot socket with the parent, and a frame it read there (a receipt,
/// the outcome) is one the parent never sees; it cannot reap the
/// child either. Python refuses the same ("can only join a child process").
#[derive(Debug, Clone, Copy)]
pub(crate) struct NotOurs {
    /// The child's pid.
    pub(crate) pid: u32,
    /// The process that started it.
    pub(crate) maker: u32,
}

impl std::fmt::Display for NotOurs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "process {} is not a child of this process (a fork copy of the handle of process {}, which started it)",
            self.pid, self.maker
        )
    }
}

impl From<NotOurs> for std::io::Error {
    fn from(e: NotOurs) -> Self {
        std::io::Error::other(e.to_string())
    }
}

/// One started child process.
#[derive(Debug)]
pub(crate) struct ChildState {
    pub(crate) pid: u32,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    /// The process that started the child, the only one that reads its boot socket, reaps
    /// it and signals it ([`ChildState::ours`]).
    maker: u32,
    pidfd: OwnedFd,
    watch: ExitWatch,
    inner: Mutex<Inner>,
}

impl ChildState {
    pub(crate) fn new(
        pid: u32,
        name: String,
        daemon: bool,
        pidfd: OwnedFd,
        watch: ExitWatch,
        (link, args): (Link, ChildArgs),
        kept: Option<super::fork::Kept>,
    ) -> Self {
        if let ExitWatch::Server(fd) = &watch {
            let _ = sys::set_nonblocking(fd.as_fd(), true);
        }
        Self { pid, name, daemon, maker: sys::pid_now(), pidfd, watch, inner: Mutex::new(Inner::new(link, args, kept)) }
    }

    /// `Ok` in the process that started the child: asked of the kernel, since a bare fork
    /// leaves the cached pid stale in its copy (as `family::own_children` asks). Checked
    /// before the lock too, which a thread of the parent may have held at the fork.
    fn ours(&self) -> Result<(), NotOurs> {
        if sys::pid_now() == self.maker { Ok(()) } else { Err(NotOurs { pid: self.pid, maker: self.maker }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The descriptor that becomes readable when the child has ended (or, for fork-server
    /// children, when its status is known).
    pub(crate) fn sentinel(&self) -> BorrowedFd<'_> {
        match &self.watch {
            ExitWatch::Own => self.pidfd.as_fd(),
            ExitWatch::Server(fd) => fd.as_fd(),
        }
    }

    /// Reads whatever the child sent so far.
    fn pump(inner: &mut Inner) {
        let Some(sock) = inner.sock.as_ref() else { return };
        let mut read = read_frame_nonblocking(sock.as_fd(), &mut inner.buf);
        // Receipts sent on the socket (no token), and the key of the outcome's blob: kept
        // until the reap.
        while let Ok(Some(frame)) = &read {
            if let Some(key) = crate::shm::receipt_from_frame(frame) {
                inner.sent.push(key);
            } else if let Some(key) = crate::shm::outcome_blob_from_frame(frame) {
                keep_named(key, &mut inner.outcome_blob, &mut inner.result_undo);
            } else {
                break;
            }
            read = read_frame_nonblocking(sock.as_fd(), &mut inner.buf);
        }
        match read {
            Ok(Some(frame)) => {
                inner.outcome = Some(
                    crate::codec::decode_own::<Outcome>(&frame)
                        .unwrap_or_else(|e| Outcome::Failed(format!("garbled outcome: {e}"))),
                );
                // Reported whole: the blob is this process's (taken by the decoding).
                inner.outcome_blob = None;
                inner.sock = None;
            }
            Ok(None) => {}
            // End of stream or a broken socket: nothing more will come.
            Err(_) => inner.sock = None,
        }
    }

    fn try_reap(&self, inner: &mut Inner) -> Option<Ended> {
        if inner.ended.is_none() {
            // Ended with no status known: as its outcome says, once read below.
            let mut status_unknown = false;
            // Told ended (its fork server vanished) while it may still run.
            let mut maybe_running = false;
            inner.ended = match &self.watch {
                ExitWatch::Own => match sys::reap_pidfd(self.pidfd.as_fd(), false) {
                    Ok(ended) => ended,
                    // Reaped by somebody else (the program's own `waitpid`, or a `SIGCHLD` it
                    // ignores): ended all the same, which the pidfd tells; before, every
                    // look found it running and a join spun for ever (audp61). Its status as
                    // the kernel kept it, else (Linux before 6.15) as its outcome says, once
                    // read below.
                    Err(_) if sys::pidfd_exited(self.pidfd.as_fd()) => {
                        let status = exit_status(self.pidfd.as_fd());
                        status_unknown = status.is_none();
                        Some(status.unwrap_or(Ended::Signaled(sys::SIGKILL)))
                    }
                    Err(_) => None,
                },
                ExitWatch::Server(fd) => {
                    // The status, after the copy of the room when the server took it (in a
                    // write of its own, made before the room's free: it may come alone).
                    let mut buf = [0u8; 4 + crate::shm::TAKEN_MAX];
                    let read = sys::read_some(fd.as_fd(), &mut buf).map(|n| {
                        let (copy, rest) = ReportRoom::split_taken(&buf[..n]);
                        if let Some(copy) = copy {
                            inner.taken = Some(copy.to_vec());
                        }
                        (n, <[u8; 4]>::try_from(rest).ok())
                    });
                    // Its status read, its room not freed yet (`read_room`, in the settle),
                    // unless the server took it.
                    if matches!(read, Ok((_, Some(_)))) {
                        crash_point!("process.reap.status_read");
                    }
                    match read {
                        // The copy alone: the status follows.
                        Ok((n, None)) if n > 0 && inner.taken.is_some() => None,
                        Ok((_, Some(word))) => match i32::from_ne_bytes(word) {
                            // Reaped by somebody else, no status known: as its outcome says.
                            super::forkserver::STATUS_UNKNOWN => {
                                status_unknown = true;
                                Some(Ended::Signaled(sys::SIGKILL))
                            }
                            raw => Some(Ended::from_raw(raw)),
                        },
                        // The fork server vanished: its children die with it. One whose
                        // room it took (sent the copy) it had reaped: ended as its copy says.
                        Ok(_) if inner.taken.is_some() => {
                            status_unknown = true;
                            Some(Ended::Signaled(sys::SIGKILL))
                        }
                        Ok(_) => {
                            // This one perhaps not yet: its room is left to it (a few words),
                            // and its boot message too (it may still decode it).
                            if !sys::pidfd_exited(self.pidfd.as_fd()) {
                                maybe_running = true;
                                if let Some(room) = inner.room.take() {
                                    room.leave();
                                }
                                if let Some(boot) = inner.boot.take() {
                                    boot.sent();
                                }
                            }
                            Some(Ended::Signaled(sys::SIGKILL))
                        }
                        // The server reaps a moment after the child exits; a child that
                        // reported before exiting ended as its report says.
                        Err(_) => match &inner.outcome {
                            Some(outcome) if sys::pidfd_exited(self.pidfd.as_fd()) => {
                                Some(ended_as_reported(Some(outcome)))
                            }
                            _ => None,
                        },
                    }
                }
            };
            if inner.ended.is_some() {
                inner.settle(self.pid, maybe_running, false);
                if status_unknown {
                    inner.ended = Some(ended_as_reported(inner.outcome.as_ref()));
                }
            }
        }
        inner.ended
    }

    /// How the child ended, if it has (reaping it); [`NotOurs`] in another process, which
    /// touches nothing.
    pub(crate) fn ended(&self) -> Result<Option<Ended>, NotOurs> {
        self.ours()?;
        let mut inner = self.lock();
        Self::pump(&mut inner);
        Ok(self.try_reap(&mut inner))
    }

    /// Whether the child still runs: false in another process than its parent's, where it
    /// is no child at all (a loop on it there ends).
    pub(crate) fn is_alive(&self) -> bool {
        matches!(self.ended(), Ok(None))
    }

    /// Waits until the child ended or the deadline passed, reading its outcome meanwhile
    /// (a child blocked writing its report must not wait for us to wait for it).
    ///
    /// Short-lived children are common, and a sleeping parent takes tens of microseconds
    /// to wake on a virtual machine, so the first [`EXIT_SPIN`] is spent polling, unless
    /// the machine is too busy for that to pay ([`LoadSpin`]).
    ///
    /// [`NotOurs`] at once in another process, which touches nothing.
    pub(crate) fn wait(&self, deadline: Deadline) -> Result<Option<Ended>, NotOurs> {
        self.ours()?;
        let reaped = |inner: &mut Inner| {
            Self::pump(inner);
            let ended = self.try_reap(inner)?;
            // Everything the child wrote is in the socket now.
            Self::pump(inner);
            inner.sock = None;
            Some(ended)
        };
        if let Some(ended) = EXIT_SPINS.with(|spins| spins.spin(deadline.slice(EXIT_SPIN), || reaped(&mut self.lock())))
        {
            return Ok(Some(ended));
        }
        // The first sleep watches the child's end only, not its boot socket: the child
        // writes its outcome just before it exits, and a wake for the outcome would mostly
        // find the child not yet ended, and sleep again (two wakes per join; on a busy
        // machine each is a wait for a CPU). A child still running after that slice may
        // have an outcome larger than the socket buffer, which keeps it from exiting until
        // it is read: later sleeps watch the socket too, so it streams at full speed.
        // The spin's last look was just now (a skipped spin looks once): the first round
        // goes straight to its sleep, which returns at once if the child ended meanwhile.
        let mut first = true;
        loop {
            if !first && let Some(ended) = reaped(&mut self.lock()) {
                return Ok(Some(ended));
            }
            if deadline.passed() {
                return Ok(None);
            }
            if std::mem::take(&mut first) {
                let fds: &[BorrowedFd<'_>] = match self.watch {
                    ExitWatch::Server(_) if self.lock().taken.is_none() => &[self.sentinel(), self.pidfd.as_fd()],
                    // A child whose room the server took (its copy in) is reaped: its pidfd
                    // stays readable and says nothing more, its status comes on the pipe.
                    _ => &[self.sentinel()],
                };
                // From the stack: a join that allocates here writes heap pages, each a page
                // fault (write-protected by every fork) for a loop of starts.
                let _ = sys::poll_readable_into(fds, &mut [false; 2], Some(deadline.slice(FIRST_SLEEP)));
            } else {
                let _ = self.with_wait_fds(|fds| sys::poll_readable(fds, Some(deadline.slice(SLEEP))));
            }
        }
    }

    /// [`ChildState::wait`] for the calls that have no error to return (`wait`,
    /// `wait_timeout`): panics in another process, as Python's `join` raises there.
    #[track_caller]
    pub(crate) fn wait_here(&self, deadline: Deadline) -> Option<Ended> {
        self.wait(deadline).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Calls `f` with the descriptors a wait for the child's end watches (its exit, and the
    /// socket its outcome comes on, which must be read for a child with a large result to
    /// finish). A fork-server child's pidfd too (its exit may come before its status),
    /// until the server's copy of its room came: the server reaped it before it sent the
    /// copy, so its pidfd, readable for good, would make every wait return at once until the
    /// status comes (a wait that spun flat out while the server was held between the two,
    /// review119 L1).
    pub(crate) fn with_wait_fds<R>(&self, f: impl FnOnce(&[BorrowedFd<'_>]) -> R) -> R {
        let (sock, taken) = {
            let inner = self.lock();
            (inner.sock.clone(), inner.taken.is_some())
        };
        let mut fds = vec![self.sentinel()];
        if let ExitWatch::Server(_) = self.watch
            && !taken
        {
            fds.push(self.pidfd.as_fd());
        }
        if let Some(s) = sock.as_ref() {
            fds.push(s.as_fd());
        }
        f(&fds)
    }

    /// Takes the outcome, after the child ended (a join, which consumes its handle).
    pub(crate) fn take_outcome(&self) -> Option<Outcome> {
        let mut inner = self.lock();
        // Its decoding takes the result's handles (or gives back those it did not read).
        inner.result_handles = None;
        inner.outcome.take()
    }

    /// Sends `signal` to the child (nothing happens if it already ended); an error in
    /// another process ([`NotOurs`]): the parent alone decides its children's ends.
    pub(crate) fn signal(&self, signal: i32) -> std::io::Result<()> {
        self.ours()?;
        sys::pidfd_signal(self.pidfd.as_fd(), signal)
    }

    /// Python's exit code: `None` while running, the code after `exit`, `-N` after signal N;
    /// `None` in another process, which knows nothing of the child's end.
    pub(crate) fn exitcode(&self) -> Option<i32> {
        self.ended().ok().flatten().map(exitcode)
    }
}

/// The wait status the kernel kept for a child reaped by somebody else
/// ([`sys::pidfd_exit_status`]); none where the fail point `process.reap.no_exit_info`
/// is armed, as on a kernel before 6.15.
pub(super) fn exit_status(pidfd: BorrowedFd<'_>) -> Option<Ended> {
    if fail_point!("process.reap.no_exit_info") { None } else { sys::pidfd_exit_status(pidfd) }
}

/// What a dead child left in its report room, which is then freed (or left until the fork
/// server that forked it is done with it): its outcome, and the key it named before its
/// report (its outcome's blob, or its result's undo), if any.
fn read_room(mut room: ReportRoom) -> (Option<Outcome>, Option<[u64; 3]>) {
    let message = room.take();
    let named = room.named_blob();
    room.release();
    outcome_of((message, named))
}

/// The outcome a room's message says (decoded), and the key the child named.
fn outcome_of((message, named): (Option<Vec<u8>>, Option<[u64; 3]>)) -> (Option<Outcome>, Option<[u64; 3]>) {
    let outcome = message.map(|message| {
        crate::codec::decode_own::<Outcome>(&message)
            .unwrap_or_else(|e| Outcome::Failed(format!("garbled outcome: {e}")))
    });
    (outcome, named)
}

/// How a child whose wait status nobody can tell us ended, as its outcome says: `exit(0)`
/// after a return, `exit(1)` after a report of failure (a panic, a refused argument), as
/// the child's boot ends it; killed (`SIGKILL`, as when its fork server vanished) when it
/// reported nothing.
fn ended_as_reported(outcome: Option<&Outcome>) -> Ended {
    match outcome {
        Some(Outcome::Returned(_)) => Ended::Exited(0),
        Some(_) => Ended::Exited(1),
        None => Ended::Signaled(sys::SIGKILL),
    }
}

/// Python's exit code convention.
pub(crate) fn exitcode(ended: Ended) -> i32 {
    match ended {
        Ended::Exited(code) => code,
        Ended::Signaled(signal) => -signal,
    }
}
