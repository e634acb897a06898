//! The resource tracker: a helper process that removes the family's named shared memory
//! segments from `/dev/shm` once every process of the family is gone, even after
//! `kill -9` (CPython's `resource_tracker`).
//!
//! It is a re-execution of the current binary in the `tracker` role, started at `init()`
//! before the fork server, so that every process of the family inherits the write end of
//! its pipe: fork and fork-server children by `fork`, spawned children through their boot
//! message. A process that creates a tracked segment writes `R<name>\n` on the pipe (or
//! `R<name>/<device>:<inode>\n`, the file it must still be to be unlinked), one that unlinks
//! or untracks it `U<name>/<device>:<inode>\n`, which forgets a registration of that file or
//! of the name alone, never one of another file made again under the name since (each line
//! one atomic pipe write). The tracker reads until
//! the pipe's end of file, which comes when the last writer, the last family process, is
//! gone; then it unlinks what is still registered, says so on stderr, and exits.
//!
//! It has no parent-death signal and leaves the family's session and process group, so a
//! Ctrl-C or a `kill -9` of the family's group does not take it down before it cleans up.
//! It holds nothing but the read end (and its journal), so it never outlives the family by
//! more than that.
//!
//! A tracker killed alone (`kill -9` of its pid, the OOM killer) loses nothing: what it reads
//! goes first into a journal, two memory files that its keeper holds too, a fork of it
//! that also holds the pipe's read end and waits for its end. Told that the tracker
//! finished, the keeper ends; left without a word, it reads the journal (the names the
//! tracker held) and goes on as the tracker, with a keeper of its own. Lines not read yet
//! wait in the pipe, whose reader it is now, so no family process sees the change. The
//! bytes move from the pipe to the journal in the kernel (`splice`), each taken from the
//! pipe only once written, so no moment of a kill loses one; the journal is compacted to
//! the names held once it is large. At the family's end the tracker forgets each name in
//! the journal before it unlinks it, so that a keeper taking over then never unlinks a name
//! a second time (by then maybe another program's).
//!
//! A tracker and its keeper killed together (their process group) lose nothing either, as
//! long as the main process (the one that started the tracker) ends normally: it makes the
//! journal's files and keeps them (through open file descriptions of its own) and a copy of
//! the pipe's read end, and at its end, finding no tracker or keeper left (none holds their
//! lock on the journal any more), starts a tracker from them ([`replace_if_gone`]).
//! Meanwhile the lines wait in the pipe (creates go on until it is full, then time out as
//! beside a stopped tracker). The main process killed too (the family killed whole), the
//! journal's files stay named in `/dev/shm`, and the next start of a family of the same
//! user takes up each journal that no process holds a lock of any more, and unlinks what
//! it held ([`take_up_abandoned`]).
//!
//! The write end is non-blocking, so a tracker that stops reading (stopped by a debugger
//! or `kill -STOP`, its pipe full) makes no process wait for it for ever: a call waits
//! for room at most [`WAIT`], and once a line of a process has timed out, that process's
//! later calls try once without waiting until one is written again (review61 M1: a
//! `SharedMemoryManager` shutdown of 200 blocks waited 5 s per block, 17 minutes), or
//! until [`WAIT`] has passed since, or the pipe holds less than it did then (review67
//! T-L2: a burst that filled the pipe for a moment failed the call at once). A
//! registration that times out fails (`TimedOut`: the create that asked for it fails and
//! leaves no segment). A forgetting that times out is kept in the process's backlog and
//! written before its next line, so that the tracker sees each process's lines in their
//! order (review61 M2: given up, the name stayed registered, and the tracker unlinked
//! with the family an `untrack`ed segment, or one made again under that name untracked);
//! `untrack` says it was not taken yet. A child process tries its backlog once more at its
//! normal end, the main process in its exit hook; a process killed loses it. Written late,
//! it names its file, so it does not forget another process's later registration of the
//! name, which is of another file (a name the caller chose is registered with its file).
//! An untracked create of a name the
//! caller chose tells the tracker to forget the name once the exclusive create made it
//! (any registration of it is then stale: its forgetting still in some process's backlog,
//! or lost), and fails rather than keep a segment the tracker would unlink if that line is
//! not taken (review61 M2, review67 T-L1: only this process's backlog was checked, and
//! another's, or a killed one's, left the tracker to unlink the segment with the family).
//!
//! Every segment is registered from the first moment it is ours, before its pages are
//! allocated (seconds for a large one), so that a process killed at any step leaves the
//! tracker at most a name to unlink, never a segment it does not know: a name
//! `SharedMemory` picks (`mp-<random>`, nobody else's) before its segment is made, a name
//! the caller chose once the exclusive create made it (it may be another's until then,
//! and the tracker must never unlink another's).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
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
static LINES: Mutex<Lines> = Mutex::new(Lines { pid: 0, stalled: None, backlog: VecDeque::new() });

/// The longest segment name: the kernel's `NAME_MAX` for a file of `/dev/shm`, which Python
/// makes and opens too (250 before aud103, refusing a 255-byte name another program made).
/// A line stays one atomic write: `R`, the name, `/<device>:<inode>` and the newline are
/// far below `PIPE_BUF` (4096).
pub(crate) const MAX_NAME: usize = 255;

/// How long a line waits for room in a pipe its tracker does not read.
const WAIT: Duration = Duration::from_secs(5);

/// What the main process keeps of its tracker, to start another in its place should the
/// tracker and every keeper be dead at its end ([`replace_if_gone`]): the pipe's read end,
/// and the journal's files through open file descriptions of its own, whose lock is not the
/// tracker's. `None` elsewhere, and once used. A fork of the main process has a copy:
/// [`SPARE_OWNER`] says it is not its own.
static SPARE: Mutex<Option<Spare>> = Mutex::new(None);

/// The pid of the process whose [`SPARE`] it is (0: none). Read before [`SPARE`]'s lock, so
/// that a fork copy of that process never takes it: a copy made while another thread held
/// it would wait for it for ever at its own `exit` (review82 L3).
static SPARE_OWNER: AtomicU32 = AtomicU32::new(0);

struct Spare {
    pipe: OwnedFd,
    journal: [sys::MemFile; 2],
    /// Where the journal's files are named ([`Journal::name`]), if they are.
    named: Option<String>,
}

/// Starts the family's tracker: called by `init()` in the main process, before the fork
/// server is forked (an error leaves the family without one: tracked segments then cannot
/// be created), or by the first tracked segment of a process outside any family.
///
/// The journal's files are made here, and the tracker's open file description of the first
/// is locked (shared) before it starts: the lock is held while the tracker, or any keeper
/// (each a fork of it, or of a keeper), lives, and goes with the last of them. This
/// process's own description of the second is locked (shared) too, held while it or a fork
/// of it lives; only then are the files named in `/dev/shm`, for a start after a family
/// killed whole to find them ([`take_up_abandoned`], which this start runs first). This process
/// keeps the pipe's read end and descriptions of its own of the files ([`SPARE`]), even
/// outside any family: it may call `init()` later, which then finds the tracker started
/// and registers the exit hook that uses them (review88 L5: kept only by `init()`'s own
/// start, a tracker started by a segment made before `init()` was never replaced). A
/// process that never calls `init()` runs no such hook: its spare goes unused, and its
/// copy of the read end has its lines time out, not fail `BrokenPipe`, once the tracker and
/// keeper are killed, as in a family's main process (review82 L4).
pub(crate) fn start() -> io::Result<()> {
    let _g = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if PIPE.get().is_some() {
        return Ok(());
    }
    take_up_abandoned();
    let (read, write) = sys::pipe()?;
    // On the write end only: every family process shares its open file, the tracker reads
    // the other end and blocks there.
    sys::set_nonblocking(write.as_fd(), true)?;
    let journal = Journal::files()
        .and_then(|files| {
            files[0].lock_shared()?;
            let spare =
                Spare { pipe: read.try_clone()?, journal: [files[0].reopen()?, files[1].reopen()?], named: None };
            spare.journal[1].lock_shared()?;
            // Logged, not printed: every family start without `O_TMPFILE` in `/dev/shm` (its
            // journal memory files) or without `/proc` comes here (review97 L4).
            let named = Journal::name(&files)
                .inspect_err(|e| {
                    log::debug!(
                        "multiproc resource tracker: its journal has no name ({e}): a family killed whole would leak"
                    )
                })
                .ok();
            Ok((files, Spare { named, ..spare }))
        })
        .inspect_err(|e| eprintln!("multiproc resource tracker: no journal ({e}): a kill of it would leak"))
        .ok();
    let spawned = match &journal {
        Some((files, spare)) => spawn(&read, Some((files, spare.named.as_deref()))),
        None => spawn(&read, None),
    };
    if let (Err(_), Some((_, Spare { named: Some(stem), .. }))) = (&spawned, &journal) {
        unname(stem);
    }
    spawned?;
    drop(read);
    if let Some((_, spare)) = journal {
        *SPARE.lock().unwrap_or_else(PoisonError::into_inner) = Some(spare);
        SPARE_OWNER.store(sys::pid_now(), Ordering::Release);
    }
    let _ = PIPE.set(write);
    Ok(())
}

/// Where a journal's files are named (`<JOURNAL_DIR>/<JOURNAL_NAME><random>-0` and `-1`), so
/// that one left by a family killed whole is found by the next family's start
/// ([`take_up_abandoned`]): `/dev/shm`, whose files are memory, as a memory file's. The
/// name says the journal's version (its lines, its locks): a release that changes them
/// changes it, and never takes up a later version's journal (review97 L6). v2 (review165
/// L1) added the forgetting of a file (`U<name>/<device>:<inode>`): a v1 build would read
/// it as the forgetting of a name that has no registration, and unlink an untracked
/// segment. v2 reads v1's lines as v1 did, so it takes up a v1 journal too
/// ([`readable_journal`]).
const JOURNAL_DIR: &str = "/dev/shm";
const JOURNAL_NAME: &str = "mp-journal-v2-";
/// The earlier version whose journals this one takes up: the same locks, and lines this
/// version reads as it did (`R<name>`, `R<name>/<device>:<inode>`, `U<name>`).
const JOURNAL_NAME_V1: &str = "mp-journal-v1-";

/// Takes up the journals of families killed whole (the main process killed with the tracker
/// and its keeper: nothing of them was left to clean up, and their segments stayed in
/// `/dev/shm` for good): at a family's start, each journal of this user's none holds a lock
/// of (none of its processes lives) is emptied and unnamed, and the segments it held are
/// unlinked (each only while its name is still the file registered, if known: [`register`]),
/// logged (`log::warn!`, the names at debug level). Only a program that installed its
/// logger before `init()` sees that: the take-up runs inside it, and `log` drops records
/// made before a logger (review104 L1). Nothing is printed otherwise: the program's stderr
/// is its own (review97 L4).
///
/// The first file's lock is the tracker's and its keepers' (see [`start`]), the second's
/// the main process's (its own description, which every fork of it shares: the first fork
/// server and `Fork` children among them), so both free means that none of them lives: not
/// the tracker nor a keeper that took over, nor the main process, which would replace them
/// at its end ([`replace_if_gone`]), nor a fork of it. A journal is named only once both are
/// locked ([`Journal::name`]), so a family starting is never taken for one killed. A spawned
/// child holds neither, nor does a restarted (spawned) fork server or a child it forks
/// (review97 L7): one that outlives its main process (killed) may find its segments
/// unlinked (its mappings stay). Lines the journal never got die with the family: still in
/// the pipe, or in a process's backlog (an `untrack` among them, whose segment is then
/// unlinked: review97 L2).
fn take_up_abandoned() {
    let Ok(dir) = std::fs::read_dir(JOURNAL_DIR) else { return };
    let journals: BTreeSet<String> = dir
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            readable_journal(&name).then(|| format!("{JOURNAL_DIR}/{name}"))
        })
        .collect();
    // A second file without its first: naming or unnaming cut short (review97 L3). It holds
    // nothing to unlink (nothing was registered before both were named, and a tracker's
    // end or a take-up forgets or empties all before it unnames), so it only goes, once
    // free: a family naming its journal holds its lock before it names it. The first file
    // is looked for again once locked: the listing may predate its naming by a family whose
    // main process has died since (review104 L4). Only `ENOENT` says it is not there: any
    // other failure of the look (EACCES, ENOMEM, ...) says nothing, and the file stays
    // (review105 L6).
    for lone in journals.iter().filter_map(|path| path.strip_suffix("-1")) {
        if !journals.contains(&format!("{lone}-0"))
            && let Ok(file) = sys::MemFile::open_own(&format!("{lone}-1"))
            && matches!(file.try_lock_exclusive(), Ok(true))
            && std::fs::symlink_metadata(format!("{lone}-0")).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            let _ = std::fs::remove_file(format!("{lone}-1"));
        }
    }
    for stem in journals.iter().filter_map(|path| path.strip_suffix("-0")) {
        let Some(names) = abandoned(stem) else { continue };
        let unlinked: Vec<String> =
            names.into_iter().filter(|(name, id)| unlink(name, *id)).map(|(name, _)| name).collect();
        // Logged, not printed: this runs in whatever program starts a family next, whose
        // stderr is its own (review97 L4).
        if !unlinked.is_empty() {
            log::warn!(
                "multiproc resource tracker: unlinked {} shared memory segment(s) a family killed whole left behind",
                unlinked.len()
            );
            log::debug!("multiproc resource tracker: those segments: {}", unlinked.join(", "));
        }
    }
}

/// Whether `name` (a file of [`JOURNAL_DIR`]) is a file of a journal this version takes
/// up: its own, or v1's, whose lines it reads as v1 did (see [`JOURNAL_NAME`]). Another
/// version's is left alone: never locked, read nor unnamed. A later one's may hold lines
/// this one misreads. Those of builds before the version was named (trk71's
/// `mp-journal-<16 hex digits>`, merged and replaced within stop 38) registered names
/// without their file's identity, and took their locks in the other order: taken up,
/// their names would be unlinked by name alone, maybe another program's segment made
/// since (review97 M1). Their segments leak, as every family killed whole's did before
/// trk71; their two files stay until removed by hand (`rm /dev/shm/mp-journal-<hex>-[01]`,
/// once no process of that family lives).
fn readable_journal(name: &str) -> bool {
    name.starts_with(JOURNAL_NAME) || name.starts_with(JOURNAL_NAME_V1)
}

/// The names held by the journal named `stem` (`-0` and `-1`) if none of its holders lives
/// (both files' locks free), the journal emptied and unnamed; `None` if one lives, or it is
/// not this user's. Emptied first, under both locks: another start that opened its files
/// before they were unnamed locks them after, and finds nothing, so no name is unlinked
/// twice (by then maybe another program's). A start killed after leaks those segments.
fn abandoned(stem: &str) -> Option<Names> {
    let open = |i: usize| sys::MemFile::open_own(&format!("{stem}-{i}")).ok();
    let files = [open(0)?, open(1)?];
    // The main process's first: while it (or a fork of it) lives, the tracker's is never
    // held here, whose brief hold made a main process whose tracker and keeper were killed
    // think one lived, and start no replacement ([`unlocked`]; review97 L1).
    if !files.iter().rev().all(|file| matches!(file.try_lock_exclusive(), Ok(true))) {
        return None;
    }
    let mut journal = Journal::of(files);
    let bytes = journal.resume().ok()?;
    let mut names = Names::new();
    take_lines(&mut names, &mut Vec::new(), &bytes);
    journal.files.iter().try_for_each(|file| file.set_len(0)).ok()?;
    unname(stem);
    Some(names)
}

/// Removes the names of the journal named `stem` ([`Journal::name`]).
fn unname(stem: &str) {
    for i in 0..2 {
        let _ = std::fs::remove_file(format!("{stem}-{i}"));
    }
}

/// Spawns a tracker reading `pipe`, recording into `journal` (none: it runs without), whose
/// files are named as it says ([`Journal::name`]), if they are.
fn spawn(pipe: &OwnedFd, journal: Option<(&[sys::MemFile; 2], Option<&str>)>) -> io::Result<()> {
    let fd = sys::SPAWN_BOOT_FD;
    match journal {
        Some(([a, b], named)) => {
            let named = named.map_or(String::new(), |stem| format!(":{stem}"));
            let env = [(BOOT_ENV, format!("tracker:{fd}:{}:{}{named}", fd + 1, fd + 2))];
            sys::spawn_self_with(&[pipe.as_fd(), a.as_fd(), b.as_fd()], &env)?;
        }
        None => {
            sys::spawn_self(pipe.as_fd(), &[(BOOT_ENV, format!("tracker:{fd}"))])?;
        }
    }
    Ok(())
}

/// At the normal end of the main process (its exit hook): if the tracker and every keeper
/// are dead (killed together, their process group), starts another from what they left,
/// the journal (what they read of the pipe) and the pipe (what they did not), which this
/// process kept; it cleans up once the family is gone, as they would have (leak61: both
/// dead, the registrations went with them, and the family's segments outlived it).
/// Whether they are dead is their lock on the journal (see [`start`]): free, it has no
/// holder left ([`unlocked`]); a fork of this process made while it held their
/// description (inside [`start`]) would hold it too, and hide their deaths (a leak, as
/// before, never a second tracker on the same journal). So does a kill of both a moment
/// before this look: a process being killed holds its files until it is gone (review82
/// L5).
///
/// In the main process only: every fork of it (a `Fork` child, a pool's worker, a bare
/// `fork`) has its exit hook and a copy of [`SPARE`], and one calling `exit` replaced the
/// tracker, then main another, both reading the pipe and splicing into one journal
/// (review82 H1).
pub(crate) fn replace_if_gone() {
    if SPARE_OWNER.load(Ordering::Acquire) != sys::pid_now() {
        return;
    }
    let Some(spare) = SPARE.lock().unwrap_or_else(PoisonError::into_inner).take() else { return };
    let Some(locked) = unlocked(&spare.journal[0]) else { return };
    let [_, second] = spare.journal;
    if let Err(e) = spawn(&spare.pipe, Some((&[locked, second], spare.named.as_deref()))) {
        eprintln!(
            "multiproc resource tracker: killed with its keeper, and not replaced ({e}): the family's segments leak"
        );
    }
}

/// A new open file description of the journal's first file `file`, locked (exclusive):
/// `None` while another description holds a lock of it (a tracker or keeper lives). It is
/// the replacement's, still locked, so that its lock is held as the first tracker's was.
/// Never `file`'s own description: a lock asked again of a description that holds it is
/// granted, and that one is shared with every fork of this process (review82 H1).
fn unlocked(file: &sys::MemFile) -> Option<sys::MemFile> {
    let probe = file
        .reopen()
        .inspect_err(|e| eprintln!("multiproc resource tracker: its journal cannot be opened ({e}): not replaced"))
        .ok()?;
    matches!(probe.try_lock_exclusive(), Ok(true)).then_some(probe)
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
    /// so the next calls try once and do not wait (one wait per process, not per line),
    /// until [`Stall::over`].
    stalled: Option<Stall>,
    /// The forgettings (`U` lines, without the `U` and the newline: [`with_file`]) that
    /// timed out, oldest first: written before any later line of this process.
    backlog: VecDeque<String>,
}

/// When a line of this process last timed out, and how full the pipe was then.
#[derive(Clone, Copy)]
struct Stall {
    at: Instant,
    /// The bytes the pipe held (0 if unknown).
    held: usize,
}

impl Stall {
    fn now(fd: BorrowedFd<'_>) -> Stall {
        Stall { at: Instant::now(), held: sys::pipe_held(fd).unwrap_or(0) }
    }

    /// Whether a line may wait for room again: [`WAIT`] has passed (so a loop of lines
    /// beside a stopped tracker waits at most as long as it runs), or the pipe holds less
    /// than then (the tracker read since: a stopped one cannot). Tried once for ever, a
    /// line failed at once long after the tracker went on, whenever a burst had its pipe
    /// full for a moment (review67 T-L2).
    fn over(&self, fd: BorrowedFd<'_>) -> bool {
        self.at.elapsed() >= WAIT || sys::pipe_held(fd).is_ok_and(|held| held < self.held)
    }
}

/// This process's lines, locked: a `Fork` start holds them across the fork, so that its
/// child never inherits them taken by another thread (which may be waiting for room, up to
/// [`WAIT`]). Beside a tracker that stays stopped, a thread's line waits again once its
/// process's stall is [`WAIT`] old, so such a start may wait up to [`WAIT`] once in every
/// [`WAIT`], not once per stall (review76 L3).
pub(crate) fn lock_lines() -> MutexGuard<'static, Lines> {
    let mut lines = LINES.lock().unwrap_or_else(PoisonError::into_inner);
    let me = sys::my_pid();
    if lines.pid != me {
        *lines = Lines { pid: me, stalled: None, backlog: VecDeque::new() };
    }
    lines
}

impl Lines {
    /// Writes the backlog, then `line` (if any), each line one atomic write, all within one
    /// wait for room: [`WAIT`], or none while the tracker is stalled. A dead tracker
    /// (`BrokenPipe`) takes no backlog any more: it unlinks nothing.
    fn write(&mut self, fd: BorrowedFd<'_>, line: Option<&str>) -> io::Result<()> {
        let stalled = self.stalled.is_some_and(|stall| !stall.over(fd));
        let deadline = if stalled { Instant::now() } else { Instant::now() + WAIT };
        let mut written = || {
            while let Some(owed) = self.backlog.front() {
                sys::write_line_by(fd, format!("U{owed}\n").as_bytes(), deadline)?;
                self.backlog.pop_front();
            }
            line.map_or(Ok(()), |line| sys::write_line_by(fd, line.as_bytes(), deadline))
        };
        let result = written();
        match &result {
            Ok(()) => self.stalled = None,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                self.stalled = Some(Stall::now(fd));
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

/// Registers a segment to unlink when the family is gone: the file `id`, once made, which
/// its name must still be then (a name unlinked and made again since, by another program,
/// is left alone: review97 M1), or whatever the name is then (`None`: a name nobody else
/// makes, registered before its segment is made).
pub(crate) fn register(name: &str, id: Option<sys::FileId>) -> io::Result<()> {
    debug_assert!(name.len() <= MAX_NAME && !name.contains(['\n', '/']));
    let fd = pipe()?;
    lock_lines().write(fd, Some(&registration(name, id)))
}

/// The names registered, each with the file it must be to be unlinked ([`register`]).
type Names = BTreeMap<String, Option<sys::FileId>>;

/// The line that registers `name` (`id`: the file it is): `R<name>\n`, or
/// `R<name>/<device>:<inode>\n`.
fn registration(name: &str, id: Option<sys::FileId>) -> String {
    format!("R{}\n", with_file(name, id))
}

/// `name`, or `name/<device>:<inode>` with its file `id` (a name has no `/`).
fn with_file(name: &str, id: Option<sys::FileId>) -> String {
    match id {
        Some(sys::FileId { dev, ino }) => format!("{name}/{dev}:{ino}"),
        None => name.to_owned(),
    }
}

/// Unlinks `name` if it is still the file `id` (if known), never one made again since:
/// whether it did.
fn unlink(name: &str, id: Option<sys::FileId>) -> bool {
    crate::shm::Segment::unlink_if(name, id).is_ok()
}

/// Forgets a segment (it was unlinked, or handed over on purpose): the file `id`, which the
/// tracker forgets if the name is registered with it or alone (`R<name>`: a name nobody
/// makes again, so the registration is that file's), and never another file made again
/// under the name and registered since (review165 L1: the caller's `lstat` chose whether
/// to send a `U<name>`, which forgot nothing when another program had made the name
/// again, and whatever was registered otherwise). `None`: whatever is registered under
/// the name (a fresh name, whose create failed).
///
/// # Errors
///
/// `TimedOut` when the tracker did not take the line: it still holds the name, and the
/// line waits in this process's backlog, written before its next line. Without a tracker
/// (none started, or it is dead) there is nothing to forget, so no error.
pub(crate) fn unregister(name: &str, id: Option<sys::FileId>) -> io::Result<()> {
    let Some(fd) = PIPE.get() else { return Ok(()) };
    let forgetting = with_file(name, id);
    let mut lines = lock_lines();
    forget(&mut lines, fd.as_fd(), &forgetting).inspect_err(|_| {
        if !lines.backlog.contains(&forgetting) {
            lines.backlog.push_back(forgetting.clone());
        }
    })
}

/// Tells the tracker to forget `name`, which an exclusive create just made ours, untracked:
/// any registration it holds of the name is stale (of a segment unlinked since, whose
/// forgetting is in flight, in some process's backlog, or lost with a process killed), and
/// it would unlink this segment with the family (review67 T-L1).
///
/// # Errors
///
/// `TimedOut` when the tracker did not take the line: the segment must not be kept. The
/// line is not kept either (no backlog): the create's failure unlinks the segment, so
/// there is nothing of this process to forget, and written later it could forget another
/// process's registration of the name, made meanwhile, whose segment would then outlive
/// the family (review76 L1).
pub(crate) fn disown(name: &str) -> io::Result<()> {
    let Some(fd) = PIPE.get() else { return Ok(()) };
    forget(&mut lock_lines(), fd.as_fd(), name)
}

/// Writes the forgetting `forgetting` (a name, or a name and its file: [`with_file`]):
/// `TimedOut` if the tracker did not take it; any other failure (a dead tracker's broken
/// pipe) leaves nothing to forget.
fn forget(lines: &mut Lines, fd: BorrowedFd<'_>, forgetting: &str) -> io::Result<()> {
    match lines.write(fd, Some(&format!("U{forgetting}\n"))) {
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(e),
        _ => Ok(()),
    }
}

/// At the normal end of a process (a child's boot, the main process's exit hook): what is
/// left of its backlog gets its last chance, since nothing is written after: one try while
/// the process's stall is under [`WAIT`] old (and the pipe no emptier), else at most
/// [`WAIT`] (review76 L3: a stall older than that waits again, see [`Stall::over`]).
pub(crate) fn write_backlog() {
    let Some(fd) = PIPE.get() else { return };
    let mut lines = lock_lines();
    if !lines.backlog.is_empty() {
        let _ = lines.write(fd.as_fd(), None);
    }
}

/// The tracker's life: read registrations until every writer is gone, then clean up.
///
/// What it reads is recorded in a [`Journal`] that its [`Keeper`], a fork of it, holds
/// too: if the tracker is killed, the keeper reads the journal and goes on in its place
/// (forking a keeper of its own), so no registration dies with it. `journal`: its files, made
/// by the process that started it (none: it runs without), which may hold what a tracker
/// killed with its keeper had read ([`replace_if_gone`]): taken up first; `named`: where
/// they are named ([`Journal::name`]), unnamed at its end.
pub(crate) fn run(pipe: OwnedFd, journal: Option<[sys::MemFile; 2]>, named: Option<String>) -> ! {
    sys::outlive_parent();
    sys::detach_from_session();
    let journal = journal.map(Journal::of);
    let mut tracker =
        Tracker { pipe, names: Names::new(), pending: Vec::new(), journal, keeper: None, lock: None, named };
    tracker.resume();
    let mut keeper_failed = false;
    loop {
        if tracker.keeper.is_none() && tracker.journal.is_some() {
            match Keeper::start() {
                Ok(Some(keeper)) => tracker.keeper = Some(keeper),
                // In the keeper, its tracker dead: the tracker now, from the journal, with a
                // keeper of its own forked before it reads (review76 M1: forked after its
                // next read, an idle family's tracker went without one for as long).
                Ok(None) => {
                    tracker.resume();
                    continue;
                }
                Err(e) if !keeper_failed => {
                    keeper_failed = true;
                    eprintln!("multiproc resource tracker: no keeper ({e}): a kill of it would leak");
                }
                Err(_) => {}
            }
        }
        if !tracker.read() {
            break;
        }
    }
    let leaked = tracker.clean_up();
    if !leaked.is_empty() {
        eprintln!(
            "multiproc resource tracker: unlinked {} shared memory segment(s) the family left behind: {}",
            leaked.len(),
            leaked.join(", ")
        );
    }
    // Every name forgotten in it: a keeper taking over from here unlinks none, and a start
    // finding it still named (this tracker killed first) neither.
    if let Some(stem) = &tracker.named {
        unname(stem);
    }
    if let Some(keeper) = tracker.keeper {
        keeper.dismiss();
    }
    sys::exit_now(0)
}

/// A tracker's state: the names registered, from what it read of its pipe.
struct Tracker {
    /// The read end of the family's pipe.
    pipe: OwnedFd,
    /// The names registered and not forgotten.
    names: Names,
    /// The start of a line not read whole yet.
    pending: Vec<u8>,
    /// Where what it reads is recorded first; `None` if that failed (then a kill of the
    /// tracker loses its registrations, as it did before journals).
    journal: Option<Journal>,
    /// The process that takes its place if it is killed.
    keeper: Option<Keeper>,
    /// The journal's first file once the journal is abandoned, kept open for its
    /// description's lock, which tells the main process that a tracker lives
    /// ([`replace_if_gone`]): closed with the journal, the main process's end started a
    /// second tracker from the stale journal beside this one (review82 M1).
    lock: Option<sys::MemFile>,
    /// Where its journal's files are named (without `-0` or `-1`), unnamed at its end:
    /// `None` if they have no name ([`Journal::name`]).
    named: Option<String>,
}

impl Tracker {
    /// Takes up what the journal holds: all a tracker killed before had read.
    fn resume(&mut self) {
        self.names.clear();
        self.pending.clear();
        let Some(journal) = &mut self.journal else { return };
        match journal.resume() {
            Ok(bytes) => self.apply(&bytes),
            // A `pread` of a memfd failed: nothing to take up, nor to record further.
            Err(e) => self.abandon_journal(&e),
        }
    }

    /// Waits for lines (or its keeper's death, then reaped to be replaced) and takes them
    /// in; `false` at the pipe's end of file: every writer, every family process, is gone.
    fn read(&mut self) -> bool {
        if self.journal.is_none() {
            return self.read_plainly();
        }
        let keeper = self.keeper.as_ref().map(|k| k.line.as_fd());
        let fds: Vec<BorrowedFd<'_>> = std::iter::once(self.pipe.as_fd()).chain(keeper).collect();
        let ready = match sys::poll_readable(&fds, None) {
            Ok(ready) => ready,
            Err(e) => {
                self.abandon_journal(&e);
                return true;
            }
        };
        if ready.get(1) == Some(&true)
            && let Some(keeper) = self.keeper.take()
        {
            sys::kill_and_reap(keeper.pid);
        }
        if !ready[0] {
            return true;
        }
        let Some(journal) = &mut self.journal else { return true };
        match journal.take(self.pipe.as_fd()) {
            Ok(bytes) if bytes.is_empty() => false,
            Ok(bytes) => {
                self.apply(&bytes);
                if let Some(journal) = &mut self.journal {
                    journal.compact_if_due(&self.names, &self.pending);
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(e) => {
                self.abandon_journal(&e);
                true
            }
        }
    }

    /// Goes on without a journal after `e`: its record stops here, so nothing may take over
    /// from it. The journal is emptied first, so that whatever still could (its keeper,
    /// until killed here; the main process's replacement once this tracker is killed too)
    /// takes up nothing: what it lacks (the lines read from now on, an `untrack` among them)
    /// would have it unlink a segment forgotten since (review88 M1: the replacement
    /// unlinked an untracked segment with the family, where this tracker said a leak).
    /// Truncating a memory file frees pages, so it does not fail for want of them. The
    /// first file stays open ([`Tracker::lock`]).
    fn abandon_journal(&mut self, e: &io::Error) {
        eprintln!("multiproc resource tracker: its journal failed ({e}): a kill of it would leak");
        if let Some(journal) = self.journal.take() {
            if let Err(e) = journal.files.iter().try_for_each(|file| file.set_len(0)) {
                eprintln!(
                    "multiproc resource tracker: its journal cannot be emptied ({e}): a replacement may unlink segments untracked since"
                );
            }
            let [first, _] = journal.files;
            self.lock = Some(first);
        }
        if let Some(keeper) = self.keeper.take() {
            sys::kill_and_reap(keeper.pid);
        }
    }

    /// Without a journal: reads the pipe itself (waiting); `false` at its end of file.
    fn read_plainly(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        match sys::read_some(self.pipe.as_fd(), &mut buf) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.apply(&buf[..n]);
                true
            }
        }
    }

    /// Unlinks what is registered, the family gone: the names it unlinked. Each is forgotten
    /// in the journal first, so that a keeper taking over from a tracker killed here does
    /// not unlink it again: by then the name may be another program's (review76 L7). A kill
    /// between the two leaks that one segment, never unlinks another's. (A line's start at
    /// the pipe's end, which no writer makes, would take in the first forgetting: then none
    /// is written.)
    fn clean_up(&mut self) -> Vec<String> {
        let mut journal = self.journal.as_mut().filter(|_| self.pending.is_empty());
        std::mem::take(&mut self.names)
            .into_iter()
            .filter(|(name, id)| {
                if let Some(journal) = &mut journal {
                    // Failed, the keeper would unlink it again, as before journals.
                    let _ = journal.append(format!("U{name}\n").as_bytes());
                }
                let unlinked = unlink(name, *id);
                if unlinked {
                    crate::shm::crash::crash_point!("tracker.clean_up.unlinked");
                }
                unlinked
            })
            .map(|(name, _)| name)
            .collect()
    }

    /// Takes in `bytes` read from the pipe.
    fn apply(&mut self, bytes: &[u8]) {
        take_lines(&mut self.names, &mut self.pending, bytes);
    }
}

/// Takes in `bytes`, after `pending` (a line's start, left there once more comes):
/// `R<name>\n` (or `R<name>/<device>:<inode>\n`, [`registration`]) registers in `names`,
/// `U<name>\n` forgets the name, `U<name>/<device>:<inode>\n` ([`unregister`]) forgets it
/// if it is registered alone or with that file.
fn take_lines(names: &mut Names, pending: &mut Vec<u8>, bytes: &[u8]) {
    pending.extend_from_slice(bytes);
    let mut start = 0;
    while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(&pending[start..start + end]);
        match line.split_at_checked(1) {
            Some(("R", line)) => {
                let (name, id) = match line.split_once('/') {
                    Some((name, id)) => (name, parse_id(id)),
                    None => (line, None),
                };
                names.insert(name.to_string(), id);
            }
            Some(("U", line)) => match line.split_once('/') {
                None => {
                    names.remove(line);
                }
                Some((name, id)) => {
                    let id = parse_id(id);
                    if names.get(name).is_some_and(|registered| registered.is_none() || *registered == id) {
                        names.remove(name);
                    }
                }
            },
            _ => {}
        }
        start += end + 1;
    }
    pending.drain(..start);
}

/// The file `<device>:<inode>` says ([`registration`]).
fn parse_id(id: &str) -> Option<sys::FileId> {
    let (dev, ino) = id.split_once(':')?;
    Some(sys::FileId { dev: dev.parse().ok()?, ino: ino.parse().ok()? })
}

/// A fork of the tracker that waits for its end: told it finished (one byte), it ends;
/// left without a word (the tracker killed), it becomes the tracker, from the journal.
struct Keeper {
    pid: u32,
    /// The tracker's end of a socket pair with it: readable once the keeper is gone.
    line: OwnedFd,
}

impl Keeper {
    /// Forks a keeper: `Some` in the tracker; `None` in the keeper, once its tracker died
    /// (it ends here if its tracker finished).
    fn start() -> io::Result<Option<Keeper>> {
        let (ours, theirs) = sys::socketpair_stream()?;
        match sys::fork()? {
            sys::Forked::Parent(pid) => Ok(Some(Keeper { pid, line: ours })),
            sys::Forked::Child => {
                drop(ours);
                let mut word = [0u8; 1];
                if let Ok(1) = sys::read_some(theirs.as_fd(), &mut word) {
                    sys::exit_now(0);
                }
                Ok(None)
            }
        }
    }

    /// Tells the keeper its tracker finished, so that it ends.
    fn dismiss(self) {
        let _ = sys::write_all(self.line.as_fd(), b"!");
    }
}

/// The record of what the tracker read from its pipe, kept in two memory files that the
/// tracker and its keeper hold. The pipe's bytes move into the active one in the kernel
/// (`splice`), so that a kill at any moment loses none (each is in the file or still in
/// the pipe, where the keeper, holding its read end too, reads it next).
///
/// Each file starts with a generation (8 bytes, little-endian; a file shorter has none):
/// the active one is the file of the higher. Once the active file is large, the names
/// registered (and a line's start) are written to the other, whose generation is written
/// last: a kill before that leaves the old one active, whole.
struct Journal {
    files: [sys::MemFile; 2],
    /// The index of the file in use.
    active: usize,
    /// Its generation.
    generation: u64,
    /// Its length: where the next bytes go.
    end: u64,
    /// The length past which it is compacted.
    compact_at: u64,
}

/// The size of a journal file's generation.
const HEADER: u64 = 8;

/// The journal's first compaction: a little larger than the pipe.
const COMPACT_FROM: u64 = 256 * 1024;

/// The bytes of a new journal's first file whose pages are allocated at its making
/// ([`Journal::files`]): its lines up to there (some 1000 segments' registrations and
/// forgettings) need no page of `/dev/shm` later, when it may be full (a segment's create
/// filled it: review97 L5, the tracker's next line failed `ENOSPC` and the family went
/// unprotected for the rest of its life). Past it (or after a compaction, which empties
/// that file), a full `/dev/shm` still fails the journal. A live family's memory: the
/// whole journal reserved up front would be 512 KiB at least, and its size has no bound.
const RESERVED: u64 = 64 * 1024;

impl Journal {
    /// A new journal's files, the first active (generation 1), both empty, the first's
    /// [`RESERVED`] bytes allocated: files of [`JOURNAL_DIR`] without a name yet
    /// ([`Journal::name`]), or memory files where those cannot be made (`O_TMPFILE`
    /// refused) or have no room (a full `/dev/shm`: `ENOSPC`), which no later start can
    /// find, but which keep the family's registrations through a kill of its tracker.
    /// Before, a full `/dev/shm` left the family without a journal at all.
    fn files() -> io::Result<[sys::MemFile; 2]> {
        let made = |file: fn() -> io::Result<sys::MemFile>, reserve: bool| -> io::Result<[sys::MemFile; 2]> {
            let files = [file()?, file()?];
            if reserve {
                // A help, not a need: only a full `/dev/shm` (or its quota, review111 L2)
                // sends the journal to memory files, which have no room to run out of and
                // are not reserved. Any other refusal (`ENOMEM`, a sandbox's `ENOSYS`)
                // keeps it here, unreserved (review107 L1: it failed both tries, leaving
                // the family no journal).
                let reserved = if crate::shm::crash::fail_point!("tracker.journal.reserve") {
                    Err(io::ErrorKind::OutOfMemory.into())
                } else {
                    files[0].reserve(RESERVED)
                };
                if reserved
                    .as_ref()
                    .is_err_and(|e| matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded))
                {
                    reserved?;
                }
            }
            files[0].write_at(0, &1u64.to_le_bytes())?;
            Ok(files)
        };
        made(|| sys::MemFile::unnamed_in(JOURNAL_DIR), true)
            .or_else(|_| made(|| sys::MemFile::new("multiproc-tracker-journal"), false))
    }

    /// Names `files` (made by [`Journal::files`]) in [`JOURNAL_DIR`], at random: called once
    /// both are locked (see [`start`]), so that a start looking for journals of families
    /// killed whole never finds it free ([`take_up_abandoned`]). The second first: the
    /// first's name is the one looked for.
    /// Returns the name, without `-0` or `-1` (which `/proc/self/fd` does not say: it
    /// keeps a file's first name).
    fn name(files: &[sys::MemFile; 2]) -> io::Result<String> {
        let stem = format!("{JOURNAL_DIR}/{JOURNAL_NAME}{:016x}", u64::from_le_bytes(sys::random_bytes()));
        files[1].link_as(&format!("{stem}-1"))?;
        files[0].link_as(&format!("{stem}-0")).inspect_err(|_| {
            let _ = std::fs::remove_file(format!("{stem}-1"));
        })?;
        Ok(stem)
    }

    /// The journal of `files` (made by [`Journal::files`]), to be taken up
    /// ([`Journal::resume`]) before it records.
    fn of(files: [sys::MemFile; 2]) -> Journal {
        Journal { files, active: 0, generation: 1, end: HEADER, compact_at: COMPACT_FROM }
    }

    /// Finds the active file as the last tracker left it; what it recorded.
    fn resume(&mut self) -> io::Result<Vec<u8>> {
        let mut generations = [0u64; 2];
        for (file, generation) in self.files.iter().zip(&mut generations) {
            let mut bytes = [0u8; HEADER as usize];
            if file.read_at(0, &mut bytes)? == bytes.len() {
                *generation = u64::from_le_bytes(bytes);
            }
        }
        self.active = usize::from(generations[1] > generations[0]);
        self.generation = generations[self.active];
        let file = &self.files[self.active];
        self.end = file.len()?.max(HEADER);
        let mut bytes = vec![0u8; (self.end - HEADER) as usize];
        let read = file.read_at(HEADER, &mut bytes)?;
        bytes.truncate(read);
        self.compact_at = COMPACT_FROM.max(2 * self.end);
        Ok(bytes)
    }

    /// Moves what the pipe holds into the active file and returns it: empty at the pipe's
    /// end of file, `WouldBlock` when there was nothing.
    fn take(&mut self, pipe: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
        // The tests' way to have a journal that holds lines fail, as a full memory cgroup
        // (`ENOSPC`) would (review82 M1).
        if crate::shm::crash::fail_point!("tracker.journal.take") && self.end > HEADER {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let file = &self.files[self.active];
        let n = file.splice_from(pipe, self.end, 64 * 1024)?;
        let mut bytes = vec![0u8; n];
        let read = file.read_at(self.end, &mut bytes)?;
        bytes.truncate(read);
        self.end += n as u64;
        Ok(bytes)
    }

    /// Appends `bytes` to the active file: a line of the tracker's own, not from the pipe.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.files[self.active].write_at(self.end, bytes)?;
        self.end += bytes.len() as u64;
        Ok(())
    }

    /// Once the active file is past `compact_at`, makes the other the active one, holding
    /// `names` registered and `pending`, a line's start. A failure keeps the old one
    /// (whole) and waits for twice as much before the next try.
    fn compact_if_due(&mut self, names: &Names, pending: &[u8]) {
        if self.end < self.compact_at {
            return;
        }
        let next = 1 - self.active;
        let mut bytes = 0u64.to_le_bytes().to_vec();
        for (name, id) in names {
            bytes.extend_from_slice(registration(name, *id).as_bytes());
        }
        bytes.extend_from_slice(pending);
        let generation = self.generation + 1;
        let file = &self.files[next];
        let written = file
            .set_len(0)
            .and_then(|()| file.write_at(0, &bytes))
            .and_then(|()| file.write_at(0, &generation.to_le_bytes()));
        if written.is_err() {
            self.compact_at *= 2;
            return;
        }
        let _ = self.files[self.active].set_len(0);
        self.active = next;
        self.generation = generation;
        self.end = bytes.len() as u64;
        self.compact_at = COMPACT_FROM.max(2 * self.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tracker reading the pipe whose write end is returned, with a journal and no keeper.
    fn tracker() -> (Tracker, OwnedFd) {
        let (read, write) = sys::pipe().unwrap();
        let journal = Some(Journal::of(Journal::files().unwrap()));
        (
            Tracker {
                pipe: read,
                names: Names::new(),
                pending: Vec::new(),
                journal,
                keeper: None,
                lock: None,
                named: None,
            },
            write,
        )
    }

    /// Writes `lines` and has `tracker` read them all, a part at a time (the pipe holds
    /// 64 KiB).
    fn feed(tracker: &mut Tracker, write: &OwnedFd, lines: &str) {
        for part in lines.as_bytes().chunks(16 * 1024) {
            sys::write_all(write.as_fd(), part).unwrap();
            while sys::poll_readable(&[tracker.pipe.as_fd()], Some(Duration::ZERO)).unwrap()[0] {
                assert!(tracker.read());
            }
        }
    }

    /// What a keeper taking over would hold: the journal's names and line start.
    fn resumed(tracker: &mut Tracker) -> (Names, Vec<u8>) {
        let (names, pending) = (tracker.names.clone(), tracker.pending.clone());
        tracker.resume();
        let resumed = (tracker.names.clone(), tracker.pending.clone());
        assert_eq!(resumed, (names, pending), "the journal holds what the tracker read");
        resumed
    }

    #[test]
    fn a_journal_resumed_holds_what_the_tracker_read_through_compactions() {
        let _heap = crate::shm::heap_test_user();
        let (mut tracker, write) = tracker();
        feed(&mut tracker, &write, "Ra\nRb\nUa\nRc");
        let (names, pending) = resumed(&mut tracker);
        assert_eq!((names.into_keys().collect::<Vec<_>>(), pending), (vec!["b".to_string()], b"Rc".to_vec()));
        // Lines past the first compaction's size, most of them forgotten again.
        let mut churn = String::new();
        for i in 0..50_000 {
            churn.push_str(&format!("Rchurn-{i}\nUchurn-{i}\n"));
        }
        feed(&mut tracker, &write, &format!("-more\nRd\n{churn}Re\nR"));
        let journal = tracker.journal.as_ref().unwrap();
        assert!(journal.generation > 1, "compacted");
        let recorded: u64 = journal.files.iter().map(|f| f.len().unwrap()).sum();
        assert!(recorded < COMPACT_FROM * 2, "{recorded} bytes recorded for {} read", churn.len());
        let (names, pending) = resumed(&mut tracker);
        assert_eq!(names.into_keys().collect::<Vec<_>>(), ["b", "c-more", "d", "e"]);
        assert_eq!(pending, b"R");
        drop(write);
        assert!(!tracker.read(), "the pipe's end of file");
    }

    /// review97 M1: a registration's file (its device and inode) is journaled with it,
    /// and kept through a compaction.
    #[test]
    fn a_registration_keeps_its_file_through_a_compaction() {
        let _heap = crate::shm::heap_test_user();
        let (mut tracker, write) = tracker();
        let id = sys::FileId { dev: 3, ino: u64::MAX };
        feed(&mut tracker, &write, &format!("{}Rb\n", registration("a", Some(id))));
        tracker.journal.as_mut().unwrap().compact_at = 0;
        feed(&mut tracker, &write, "Rc\nR");
        assert!(tracker.journal.as_ref().unwrap().generation > 1, "compacted");
        let (names, pending) = resumed(&mut tracker);
        let expected = Names::from([("a".into(), Some(id)), ("b".into(), None), ("c".into(), None)]);
        assert_eq!((names, pending), (expected, b"R".to_vec()));
    }

    /// review76 L5: within [`WAIT`] of a timeout, a stall is over once the pipe holds less
    /// than it did then (the tracker read since), and not while it holds as much.
    #[test]
    fn a_stall_is_over_once_the_pipe_holds_less_or_wait_has_passed() {
        let (read, write) = sys::pipe().unwrap();
        sys::set_nonblocking(write.as_fd(), true).unwrap();
        let line = [b'R'; 100];
        while sys::write_line_by(write.as_fd(), &line, Instant::now()).is_ok() {}
        let mut stall = Stall::now(write.as_fd());
        assert!(stall.held >= line.len(), "the pipe held {} bytes", stall.held);
        // Its `WAIT` not over, whatever the load.
        stall.at = Instant::now() + Duration::from_secs(3600);
        assert!(!stall.over(write.as_fd()), "the pipe holds as much");
        sys::read_some(read.as_fd(), &mut [0u8; 1]).unwrap();
        assert!(stall.over(write.as_fd()), "the pipe holds less");
        let at_empty = Stall { at: stall.at, held: 0 };
        assert!(!at_empty.over(write.as_fd()), "the pipe holds more");
        let old = Stall { at: Instant::now().checked_sub(WAIT).unwrap(), held: 0 };
        assert!(old.over(write.as_fd()), "WAIT has passed");
    }

    /// The reserve is a help, not a need (review107 L1): a `fallocate` failing for
    /// another reason than a full `/dev/shm` (`ENOMEM` under memory pressure, `ENOSYS` in a
    /// seccomp sandbox) leaves the journal in `/dev/shm`, where a later start can take it
    /// up; before, both tries failed the same way and the family had no journal at all.
    #[test]
    fn a_reserve_refused_for_another_reason_than_room_keeps_the_journal_in_dev_shm() {
        let _serial = crate::shm::heap_test_lock();
        struct Disarm;
        impl Drop for Disarm {
            fn drop(&mut self) {
                crate::shm::crash::arm(None);
            }
        }
        crate::shm::crash::arm(Some("fail:tracker.journal.reserve"));
        let disarm = Disarm;
        let files = Journal::files();
        drop(disarm);
        let files = files.expect("a journal despite a refused reserve");
        // Only files of `/dev/shm` take a name there (a memory file's link fails `EXDEV`).
        let stem = Journal::name(&files).expect("files of /dev/shm");
        for end in ["-0", "-1"] {
            std::fs::remove_file(format!("{stem}{end}")).unwrap();
        }
    }

    /// review82 H1: the main process's probe is a description of its own each time, handed
    /// over locked: once a replacement holds it, another probe fails (the probe on the one
    /// kept description was granted again, and every fork of the main process shares it).
    #[test]
    fn a_journal_s_lock_is_probed_on_a_new_description_each_time() {
        let _heap = crate::shm::heap_test_user();
        let files = Journal::files().unwrap();
        files[0].lock_shared().unwrap();
        let kept = files[0].reopen().unwrap();
        assert!(unlocked(&kept).is_none(), "the tracker holds its lock");
        drop(files);
        let replacement = unlocked(&kept).expect("no holder left");
        assert!(unlocked(&kept).is_none(), "the replacement holds its lock");
        drop(replacement);
        assert!(unlocked(&kept).is_some(), "the replacement gone");
    }

    #[test]
    fn only_this_versions_journals_and_v1_s_are_taken_up() {
        // Its own, as `Journal::name` names them, and v1's, whose lines it reads as v1 did.
        for version in ["v2", "v1"] {
            assert!(readable_journal(&format!("mp-journal-{version}-00c0ffee00c0ffee-0")));
            assert!(readable_journal(&format!("mp-journal-{version}-00c0ffee00c0ffee-1")));
        }
        // trk71's, before the version was named (16 hex digits never start `v1-`), and a
        // later version's.
        assert!(!readable_journal("mp-journal-00c0ffee00c0ffee-0"));
        assert!(!readable_journal("mp-journal-v3-00c0ffee00c0ffee-0"));
        // A segment.
        assert!(!readable_journal("mp-00c0ffee00c0ffee"));
    }

    /// review165 L1: the forgetting of a file forgets a registration of that file or of the
    /// name alone, never one of another file; the forgetting of a name forgets any. A
    /// journal of v1 (no forgetting of a file) is read as v1 read it.
    #[test]
    fn a_forgetting_of_a_file_spares_another_files_registration() {
        let (f, g) = (sys::FileId { dev: 3, ino: 7 }, sys::FileId { dev: 3, ino: 8 });
        let lines = [
            registration("alone", None),
            registration("mine", Some(f)),
            registration("another", Some(g)),
            registration("any", Some(g)),
            format!("U{}\n", with_file("alone", Some(f))),
            format!("U{}\n", with_file("mine", Some(f))),
            format!("U{}\n", with_file("another", Some(f))),
            format!("U{}\n", with_file("any", None)),
        ]
        .concat();
        let mut names = Names::new();
        take_lines(&mut names, &mut Vec::new(), lines.as_bytes());
        assert_eq!(names, Names::from([("another".into(), Some(g))]));
        let mut v1 = Names::new();
        take_lines(&mut v1, &mut Vec::new(), b"Ra\nRb/3:7\nRc\nUa\nUb\nRd/3:8\n");
        assert_eq!(v1, Names::from([("c".into(), None), ("d".into(), Some(g))]));
    }

    /// A tracker killed while it compacted (the other file written, its generation not):
    /// the journal is the file it used, whole.
    #[test]
    fn a_compaction_cut_short_leaves_the_journal_as_it_was() {
        let _heap = crate::shm::heap_test_user();
        let (mut tracker, write) = tracker();
        feed(&mut tracker, &write, "Ra\nRb\nUa\n");
        let journal = tracker.journal.as_ref().unwrap();
        let other = &journal.files[1 - journal.active];
        other.write_at(0, &[0u8; 8]).unwrap();
        other.write_at(HEADER, b"Rx\nRy\n").unwrap();
        let (names, _) = resumed(&mut tracker);
        assert_eq!(names.into_keys().collect::<Vec<_>>(), ["b"]);
    }
}
