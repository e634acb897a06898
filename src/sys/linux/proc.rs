//! Processes: fork, re-exec of the current binary, pidfds, exit statuses, liveness,
//! parent-death signals, and the identity of this process and binary.

use std::ffi::{CString, OsStr};
use std::io::{self, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

/// The descriptor number at which a spawned child finds its boot socket.
pub(crate) const SPAWN_BOOT_FD: i32 = 3;

/// Signal numbers used by the layers above.
pub(crate) const SIGTERM: i32 = libc::SIGTERM;
/// `SIGKILL`.
pub(crate) const SIGKILL: i32 = libc::SIGKILL;
/// `SIGINT`.
pub(crate) const SIGINT: i32 = libc::SIGINT;

/// What a process is, as far as liveness checks go: its pid and its start time (clock ticks
/// after boot), which together survive pid reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ProcId {
    pub(crate) pid: u32,
    pub(crate) start: u64,
}

static ME_PID: AtomicU32 = AtomicU32::new(0);
static ME_START: AtomicU64 = AtomicU64::new(0);

/// This process (cached; [`forget_identity`] after a fork).
#[inline]
pub(crate) fn me() -> ProcId {
    let pid = ME_PID.load(Ordering::Relaxed);
    if pid != 0 {
        return ProcId { pid, start: ME_START.load(Ordering::Relaxed) };
    }
    learn_me()
}

/// [`me`] the first time (and after a fork): asks the kernel and caches the answer.
#[cold]
fn learn_me() -> ProcId {
    forget_identity_in_every_fork_child();
    let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let start = process_stat(pid).map_or(0, |s| s.start);
    ME_START.store(start, Ordering::Relaxed);
    ME_PID.store(pid, Ordering::Relaxed);
    ProcId { pid, start }
}

/// This process's pid alone, cached by [`my_pid`] (cleared with [`ME_PID`]).
static MY_PID: AtomicU32 = AtomicU32::new(0);

/// This process's pid (cached).
///
/// It does not learn the start time as [`me`] does: that is a read of `/proc/<pid>/stat`,
/// and a fork child whose first need of its identity is its pid (its tracker lines' owner,
/// at its end) paid it for nothing, about a tenth of a `Fork` start (perf81). So the pid
/// has a cache of its own.
#[inline]
pub(crate) fn my_pid() -> u32 {
    let pid = ME_PID.load(Ordering::Relaxed);
    if pid != 0 {
        return pid;
    }
    match MY_PID.load(Ordering::Relaxed) {
        0 => learn_my_pid(),
        pid => pid,
    }
}

/// [`my_pid`] the first time (and after a fork): asks the kernel and caches the answer.
#[cold]
fn learn_my_pid() -> u32 {
    forget_identity_in_every_fork_child();
    let pid = pid_now();
    MY_PID.store(pid, Ordering::Relaxed);
    pid
}

/// This process's pid, asked of the kernel (not [`my_pid`]'s cache, which a bare
/// `libc::fork` by the program leaves stale in the copy). Async-signal-safe.
pub(crate) fn pid_now() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// Writes `message` to fd 2 with raw `write(2)` calls (`write_all`:
/// again after a partial write or `EINTR`; any other failure drops the rest), taking no
/// lock: not `io::stderr()`, whose lock a fork child inherits held when another thread of
/// its parent held it at the fork, and then waits on for ever (review105 L2). For a last
/// word before an abort, from any process, a fork child included. Async-signal-safe.
pub(crate) fn write_to_stderr(message: &[u8]) {
    // Fd 2 closed, or another file: the write fails or goes there, as `io::stderr()`'s
    // would.
    let _ = super::socket::write_all(rustix::stdio::stderr(), message);
}

/// Whether this process's identity is cached ([`me`] will not ask the kernel).
#[cfg(test)]
pub(crate) fn identity_known() -> bool {
    ME_PID.load(Ordering::Relaxed) != 0
}

/// Drops the cached identity: the first thing a freshly forked child does.
pub(crate) fn forget_identity() {
    ME_PID.store(0, Ordering::Relaxed);
    ME_START.store(0, Ordering::Relaxed);
    MY_PID.store(0, Ordering::Relaxed);
}

extern "C" fn forget_identity_at_fork() {
    forget_identity();
}

/// Makes every child of glibc's `fork` drop the cached identity (a `pthread_atfork`
/// handler, registered once, before the identity or the pid is first cached): a bare `libc::fork` by
/// the program, whose copy would otherwise take itself for its parent (a guard's
/// [`TakenIn`](crate::shm::TakenIn) there would release the parent's lock). Our own forks
/// forget it themselves too ([`fork`], and [`fork_as_sibling`], whose bare `clone3` runs
/// no handler).
fn forget_identity_in_every_fork_child() {
    static REGISTERED: Registration = Registration::new();
    // SAFETY: the handler makes three relaxed atomic stores (async-signal-safe, no lock, no
    // allocation) and cannot unwind (`extern "C"`).
    once_without_waiting(&REGISTERED, || unsafe { in_every_fork_child(forget_identity_at_fork) });
}

/// Makes every child of glibc's `fork` (ours, and a bare `libc::fork` by the program) run
/// `handler` first, on its only thread, the copy of the forking one. A failure (ENOMEM)
/// leaves forks as they were. A registration made while another thread forks may be run
/// by that fork or not: register before any such fork can matter (see
/// [`once_without_waiting`]).
///
/// # Safety
///
/// `handler` runs in the child of a fork of a process that may have other threads, before
/// anything else there: it must be async-signal-safe (no lock, no allocation, no other
/// call that is not), and must not unwind.
pub(crate) unsafe fn in_every_fork_child(handler: extern "C" fn()) {
    // SAFETY: registers a child handler only, async-signal-safe by the caller's promise.
    unsafe { libc::pthread_atfork(None, None, Some(handler)) };
}

/// Runs `register` (a fork handler's registration) unless a call made it already, and never
/// waits for it. A `Once` would: a fork made by another thread while the first caller ran
/// it (`pthread_atfork` waits on glibc's atfork lock, which a fork holds throughout) left
/// the child a `Once` that nobody there completes, and the child's own first call waited
/// for ever (review102 M1). So `register` must be harmless to run more than once (the
/// handlers are idempotent stores): every caller that finds the registration not made
/// makes it, and marks it made only after `pthread_atfork` returned. Register at init too,
/// single-threaded (and at a spawned child's boot), so that only a process that ran no init
/// (and no fork of one) registers lazily, and threads racing its first call register once
/// each at most.
///
/// A fork child inherits "made" only with the handler: a fork by another thread while a
/// registration is in flight copies "not made", and the child registers at its first call.
/// Until review110 L2 the registration in flight named its process's pid, and a caller that
/// found its own pid there took it for another of its threads registering and went on
/// without registering (review105 L1 had made it so, where a flag of two states, set before
/// `pthread_atfork`, gave a fork child the flag without the handler). A fork child's fork
/// child can find its own pid there: P registers, another thread of P forks C, and before
/// C's first call C forks G, P has died and been reaped, and its pid has come round to G
/// (or in a pid namespace). G never registered, for its life and its fork children's
/// (`a_process_finding_its_own_pid_in_flight_registers`). With no pid, nothing is mistaken
/// for another thread's registration; a thread racing another's registration makes its
/// own.
pub(crate) fn once_without_waiting(registration: &Registration, register: impl FnOnce()) {
    if registration.0.load(Ordering::Acquire) == Registration::MADE {
        return;
    }
    register();
    registration.0.store(Registration::MADE, Ordering::Release);
}

/// Whether a fork handler was registered in this process ([`once_without_waiting`]):
/// [`Registration::MADE`], or not (0; another value only as the tests write it).
pub(crate) struct Registration(AtomicU32);

impl Registration {
    /// Made.
    const MADE: u32 = u32::MAX;

    pub(crate) const fn new() -> Self {
        Self(AtomicU32::new(0))
    }

    /// Whether the registration was made (in this process, or in the one it is a fork of
    /// before the fork).
    pub(crate) fn made(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::MADE
    }

    /// Writes the state a registration in flight had until review110 L2, the registering
    /// process's pid: the tests' way to make what a fork child's fork child inherited.
    #[cfg(test)]
    pub(crate) fn set_in_flight(&self, pid: u32) {
        self.0.store(pid, Ordering::Release);
    }
}

/// The calling thread's id (unique in the system while the thread lives).
pub(crate) fn my_tid() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

/// Whether the calling thread is the process's first thread, the one running `main`.
pub(crate) fn on_main_thread() -> bool {
    my_tid() == my_pid()
}

/// The parent process's pid as the kernel sees it (1 or a subreaper once orphaned).
pub(crate) fn parent_pid() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
}

struct Stat {
    state: u8,
    threads: usize,
    start: u64,
}

/// Reads `/proc/<pid>/stat`: state, thread count and start time. Allocates nothing: it
/// runs before and after every fork start (the fork hazard, the child's record), where
/// each heap page the parent writes is one more page fault.
fn process_stat(pid: u32) -> Option<Stat> {
    #[cfg(test)]
    STAT_READS.with(|n| n.set(n.get() + 1));
    let mut path = [0u8; 32];
    let mut cursor = &mut path[..];
    write!(cursor, "/proc/{pid}/stat\0").ok()?;
    let path = std::ffi::CStr::from_bytes_until_nul(&path).ok()?;
    let file =
        rustix::fs::open(path, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
            .ok()?;
    // 52 fields of at most 20 digits and a name of at most 64 bytes.
    let mut raw = [0u8; 1280];
    let mut len = 0;
    while len < raw.len() {
        match rustix::io::read(&file, &mut raw[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::INTR) => continue,
            Err(_) => return None,
        }
    }
    let raw = &raw[..len];
    // The command name (field 2) is in parentheses and may contain anything: split after
    // the last ')'.
    let close = raw.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(raw.get(close + 2..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // rest starts at field 3 (state); num_threads is field 20, starttime field 22.
    let state = fields.next()?.as_bytes()[0];
    let threads = fields.nth(16)?.parse().ok()?;
    let start = fields.nth(1)?.parse().ok()?;
    Some(Stat { state, threads, start })
}

/// Whether the process `pid` is running (not gone, not a zombie). With a non-zero `start`,
/// a different process that reuses the pid counts as gone.
///
/// Only what is known counts as gone: the kernel says no such process, or its `/proc`
/// entry says zombie, dead, or another start time. An entry that cannot be read while the
/// process exists (no descriptor left, no memory, a format not understood) leaves its
/// liveness unknown, and unknown is alive: the callers take "dead" as final (a lock taken
/// over, a task counted lost, a slot reused, an object freed), so a live process read as
/// dead once is a broken lock or a use after free, whereas one read as alive is looked at
/// again at the next check.
pub(crate) fn process_alive(pid: u32, start: u64) -> bool {
    process_alive_if(pid, |s| start == 0 || s == start)
}

/// [`process_alive`] against a start time recorded in its low 32 bits (0: unknown, the pid
/// alone decides), as a lock keeps its holder's, with the holder's id, in one atomic word
/// (`shm::mutex`, aud107 L2). Another process reusing the pid is told apart unless it
/// started a multiple of 2^32 clock ticks (497 days at 100 Hz) after, to the tick.
pub(crate) fn process_alive_as_recorded(pid: u32, start_low: u32) -> bool {
    process_alive_if(pid, |s| start_low == 0 || s as u32 == start_low)
}

fn process_alive_if(pid: u32, started: impl Fn(u64) -> bool) -> bool {
    if pid == 0 {
        return false;
    }
    let Some(target) = Pid::from_raw(pid as i32) else { return false };
    // Twice: an entry that vanished between the two looks is a process that ended then,
    // which the second `kill` sees.
    for _ in 0..2 {
        if let Err(Errno::SRCH) = rustix::process::test_kill_process(target) {
            return false;
        }
        if let Some(s) = process_stat(pid) {
            // 'Z' zombie, 'X' dead, 'x' dead (old kernels).
            return !matches!(s.state, b'Z' | b'X' | b'x') && started(s.start);
        }
    }
    true
}

/// Whether process `pid` is stopped (`SIGSTOP`: `T`; a debugger: `t`): it will not go on
/// by itself, where a running one, however slow, will.
pub(crate) fn process_stopped(pid: u32) -> bool {
    process_stopped_as(pid, 0)
}

/// [`process_stopped`], for the process that started at `start` only (when not 0): another
/// one that reuses the pid is not it (review69 L4). The state letter of `/proc/<pid>/stat`
/// is `T` stopped (`SIGSTOP`) or `t` stopped by a tracer.
pub(crate) fn process_stopped_as(pid: u32, start: u64) -> bool {
    pid != 0 && process_stat(pid).is_some_and(|s| matches!(s.state, b'T' | b't') && (start == 0 || s.start == start))
}

/// [`process_stopped_as`] against a start time recorded in its low 32 bits (0: unknown), as
/// [`process_alive_as_recorded`].
pub(crate) fn process_stopped_as_recorded(pid: u32, start_low: u32) -> bool {
    pid != 0
        && process_stat(pid)
            .is_some_and(|s| matches!(s.state, b'T' | b't') && (start_low == 0 || s.start as u32 == start_low))
}

/// Reaps this process's own child `pid` if it has ended: `Ok(true)` reaped, `Ok(false)`
/// still running, `ECHILD` if it is not this process's child. By pid: only for a child
/// that nothing else reaps (a fork-server child whose start failed: nobody has its pidfd),
/// which keeps its pid until reaped here.
pub(crate) fn reap_child_if_ended(pid: u32) -> io::Result<bool> {
    let Some(target) = Pid::from_raw(pid as i32) else { return Ok(true) };
    loop {
        match rustix::process::waitid(WaitId::Pid(target), WaitIdOptions::EXITED | WaitIdOptions::NOHANG) {
            Ok(status) => return Ok(status.is_some()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The start time of `pid`, if it exists.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    process_stat(pid).map(|s| s.start)
}

/// The address ranges (`start..end`) of the main program's loaded segments: the first
/// object the dynamic loader lists is the executable.
pub(crate) fn main_program_segments() -> Vec<(usize, usize)> {
    unsafe extern "C" fn first_object(info: *mut libc::dl_phdr_info, _size: usize, data: *mut libc::c_void) -> i32 {
        // SAFETY: the loader passes a valid `dl_phdr_info` whose `dlpi_phdr` points to
        // `dlpi_phnum` program headers, for the duration of this call; `data` is the
        // `&mut Vec` passed to `dl_iterate_phdr` below, used by no one else meanwhile.
        unsafe {
            let info = &*info;
            let segments = &mut *data.cast::<Vec<(usize, usize)>>();
            if !info.dlpi_phdr.is_null() {
                let headers = std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum));
                for h in headers.iter().filter(|h| h.p_type == libc::PT_LOAD) {
                    let start = (info.dlpi_addr as usize).wrapping_add(h.p_vaddr as usize);
                    segments.push((start, start.wrapping_add(h.p_memsz as usize)));
                }
            }
        }
        1 // The first object only.
    }
    let mut segments: Vec<(usize, usize)> = Vec::new();
    // SAFETY: the callback matches the signature `dl_iterate_phdr` expects and only reads
    // what the loader passes; `data` points to `segments`, alive for the call.
    unsafe { libc::dl_iterate_phdr(Some(first_object), (&raw mut segments).cast()) };
    segments
}

/// Whether the kernel started this program in secure mode (`AT_SECURE`: set-user-ID,
/// set-group-ID, or with file capabilities), whose environment must not be trusted.
pub(crate) fn secure_execution() -> bool {
    // SAFETY: getauxval reads the auxiliary vector the kernel gave the process; it has no
    // preconditions.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// Why a program in secure mode cannot start copies of itself.
pub(crate) const SECURE_NO_SPAWN: &str = "a set-user-ID (or set-group-ID, or capability-raising) program does not trust its environment, so its re-executed copies could not find their boot message";

/// How many threads this process has.
pub(crate) fn thread_count() -> usize {
    counted_threads().unwrap_or(1)
}

/// Whether this process is known to run a single thread: `false` when `/proc` cannot be
/// read (a sandbox, a chroot), where [`thread_count`] assumes one. For `init()`'s removal of
/// the cluster's variables (`cluster::take_environment`).
#[cfg(feature = "cluster")]
pub(crate) fn known_single_threaded() -> bool {
    counted_threads() == Some(1)
}

/// An identity of the running executable: a hash of device, inode, size and modification
/// time of `/proc/self/exe`. Processes of one family run the same file and agree on it.
pub(crate) fn executable_identity() -> u64 {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut h = std::hash::DefaultHasher::new();
    if let Ok(m) = std::fs::metadata("/proc/self/exe") {
        (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()).hash(&mut h);
    }
    h.finish()
}

/// A build identity of the running executable that holds across machines: a 128-bit
/// hash of its contents, computed once (reading the file takes a few milliseconds per
/// 10 MB). Two machines agree on it only when they run the same bytes. `None` when
/// `/proc/self/exe` cannot be read.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) fn build_identity() -> Option<u128> {
    use std::hash::Hasher;
    use std::io::Read;
    static BUILD: std::sync::OnceLock<Option<u128>> = std::sync::OnceLock::new();
    *BUILD.get_or_init(|| {
        let mut file = std::fs::File::open("/proc/self/exe").ok()?;
        let mut h = siphasher::sip128::SipHasher13::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => h.write(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        Some(siphasher::sip128::Hasher128::finish128(&h).as_u128())
    })
}

/// `n` random bytes from the kernel.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    let mut filled = 0;
    while filled < N {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(e) => panic!("getrandom failed: {e}"),
        }
    }
    buf
}

/// The result of [`fork`].
#[derive(Debug)]
pub(crate) enum Forked {
    /// In the parent, with the child's pid.
    Parent(u32),
    /// In the child.
    Child,
}

/// Set by [`allow_fork_with_threads`].
static FORK_WITH_THREADS: AtomicBool = AtomicBool::new(false);

/// Lets this process use [`StartMethod::Fork`](crate::StartMethod::Fork) while other
/// threads run; without it such a start is refused with
/// [`Error::ForkWithThreads`](crate::Error::ForkWithThreads). Pools and managers whose
/// start method is `Fork` follow the same rule. The fork server and `Spawn` never need it.
///
/// A fork copies only the calling thread. A lock another thread holds at that moment
/// stays locked forever in the child, which blocks as soon as it takes it: the
/// allocator's (glibc resets its own), one of std's (the panic hook's, the backtrace
/// printer's, a captured output's), or the program's own `Mutex`es. multiproc itself holds
/// the locks its boot code needs (stdout, stderr, its process table) across the fork.
///
/// # Safety
///
/// For every `Fork` start from now on in this process (and in fork children, which copy
/// the setting), no other thread may hold, at the moment of the fork, a lock that the
/// child (multiproc's boot code, the target, the destructors and exit handlers it runs)
/// will take: not a lock of the allocator in use if it is not glibc's, not a lock of std,
/// not a lock of the program or of a library. A lock in the family's shared memory does
/// not count: its holder can still release it. If this cannot be shown, use
/// [`StartMethod::ForkServer`](crate::StartMethod::ForkServer) (the default), which is as
/// fast to the millisecond.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Process, StartMethod};
///
/// multiproc::init();
/// // A thread that only computes: it never takes a lock.
/// let worker = std::thread::spawn(|| (0..1_000_000u64).sum::<u64>());
/// // SAFETY: the only other thread takes no lock, and the child takes only the locks of
/// // multiproc's boot, which multiproc holds across the fork.
/// unsafe { multiproc::allow_fork_with_threads() };
/// let child = Process::new(|x: u32| x + 1, 1).start_method(StartMethod::Fork).start()?;
/// assert_eq!(child.join()?, 2);
/// worker.join().unwrap();
/// # Ok::<(), multiproc::Error>(())
/// ```
pub unsafe fn allow_fork_with_threads() {
    FORK_WITH_THREADS.store(true, Ordering::Relaxed);
}

/// Whether a fork of this process now could copy a lock another thread holds: the number
/// of threads when there are others (`usize::MAX` if they cannot be counted) and the
/// program did not opt in with [`allow_fork_with_threads`]. A single thread is the caller,
/// so no thread can appear between this check and the fork unless the caller makes one.
pub(crate) fn fork_hazard() -> Option<usize> {
    if FORK_WITH_THREADS.load(Ordering::Relaxed) {
        return None;
    }
    fork_hazard_ignoring_opt_in()
}

/// The calling thread's id, as `/proc/self/task` lists it.
#[cfg(feature = "cluster")]
pub(crate) fn this_thread() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Whether the kernel still lists thread `tid` of this process (so counts it against a
/// `Fork` start): a joined thread stays listed a moment after `pthread_join` returns.
#[cfg(feature = "cluster")]
pub(crate) fn thread_listed(tid: i32) -> bool {
    rustix::fs::stat(format!("/proc/self/task/{tid}")).is_ok()
}

/// Whether the program called [`allow_fork_with_threads`]: a `Fork` start may then copy
/// a process whose other threads are busy.
pub(crate) fn fork_with_threads_allowed() -> bool {
    FORK_WITH_THREADS.load(Ordering::Relaxed)
}

/// The start time of process `pid` (as [`ProcId::start`]), if it exists.
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    process_stat(pid).map(|s| s.start)
}

/// The number of threads when there are others than the caller (`usize::MAX` if they
/// cannot be counted), whatever the program opted in to.
pub(crate) fn fork_hazard_ignoring_opt_in() -> Option<usize> {
    let threads = counted_threads().unwrap_or(usize::MAX);
    (threads != 1).then_some(threads)
}

/// This process's thread count, if it can be read. It runs before every fork start: the
/// link count of `/proc/self/task` (two plus one per thread) takes one system call, where
/// reading `/proc/self/stat` takes four (open, two reads, close).
fn counted_threads() -> Option<usize> {
    let links = rustix::fs::stat(c"/proc/self/task").ok()?.st_nlink;
    match usize::try_from(links).ok()?.checked_sub(2) {
        Some(threads @ 1..) => Some(threads),
        // Not the count procfs gives: ask its stat file.
        _ => process_stat(my_pid()).map(|s| s.threads),
    }
}

/// Works out now what every copy of this process would otherwise work out for itself (the
/// executable's identity, checked before every child's target; the page size, for its
/// stack-overflow report): called before the fork server is forked, whose children would
/// each do it.
pub(crate) fn prepare_for_forks() {
    forget_identity_in_every_fork_child();
    super::call::identity();
    super::overflow::page_size();
}

/// Forks the calling process.
///
/// The child has one thread, a copy of the caller. Until it exits it may only rely on what
/// was safe to copy: memory, descriptors, and locks the caller itself held at the fork.
/// glibc resets its allocator's locks in the child, so allocation works.
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: fork has no memory-safety preconditions of its own; what the child may do
    // afterwards is the contract documented above, which the callers keep (they hold the
    // locks the child needs and run only our boot code).
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            forget_identity();
            Ok(Forked::Child)
        }
        pid => Ok(Forked::Parent(pid as u32)),
    }
}

/// The result of [`fork_as_sibling`].
#[derive(Debug)]
pub(crate) enum Sibling {
    /// In the forking process, with the child's pid and a pidfd for it.
    Forker { pid: u32, pidfd: OwnedFd },
    /// In the child.
    Child,
}

/// `struct clone_args` up to `tls` (`CLONE_ARGS_SIZE_VER0`): every field is a 64-bit
/// word on every architecture.
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

/// Forks the calling process as a *sibling*: the child's parent is the caller's parent
/// (`clone3` with `CLONE_PARENT`), which receives its exit signal (`SIGCHLD`, inherited
/// from the caller), reaps it and collects its resource usage; the caller gets a pidfd
/// for it. Otherwise as [`fork`], with what a bare `clone3` leaves out of glibc's `fork`:
/// no `pthread_atfork` handlers run and the child's first thread has no robust-mutex list
/// registered with the kernel. Call it from a single-threaded process that registered
/// neither (the fork server, a pool's zygote), but for our own handlers: the identity's,
/// whose work the child does here ([`forget_identity`]), and, in a zygote (the main
/// process's fork), [`Unforked`](super::Unforked)'s, which has nothing to do there (its
/// table was emptied, and its lock released, by the zygote's own fork).
///
/// # Errors
///
/// [`io::ErrorKind::Unsupported`] where `clone3` or `CLONE_PARENT` is unavailable (an old
/// kernel, a seccomp filter, the init of a pid namespace: `ENOSYS`, `EPERM`, `EINVAL`):
/// the caller falls back to [`fork`].
pub(crate) fn fork_as_sibling() -> io::Result<Sibling> {
    let mut pidfd: libc::c_int = -1;
    let args = CloneArgs {
        flags: (libc::CLONE_PARENT | libc::CLONE_PIDFD) as u64,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        child_tid: 0,
        parent_tid: 0,
        // CLONE_PARENT takes the caller's own exit signal; clone3 wants 0 here.
        exit_signal: 0,
        stack: 0,
        stack_size: 0,
        tls: 0,
    };
    // SAFETY: without CLONE_VM the child gets a copy of the address space and returns
    // here on its copy of this stack, as from fork; `args` and `pidfd` outlive the call,
    // which writes only `pidfd`. What the child may do afterwards is the contract
    // documented above.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::addr_of!(args), std::mem::size_of::<CloneArgs>()) };
    match rc {
        -1 => {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOSYS | libc::EPERM | libc::EINVAL) => Err(io::Error::new(io::ErrorKind::Unsupported, e)),
                _ => Err(e),
            }
        }
        0 => {
            forget_identity();
            Ok(Sibling::Child)
        }
        pid => {
            // SAFETY: clone3 succeeded with CLONE_PIDFD, so `pidfd` is a descriptor it
            // opened for us and nothing else owns.
            let pidfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pidfd) };
            Ok(Sibling::Forker { pid: pid as u32, pidfd })
        }
    }
}

/// Starts a fresh copy of the running executable (`/proc/self/exe`, so even a replaced or
/// deleted binary works) with `boot` at descriptor [`SPAWN_BOOT_FD`], `/dev/null` as stdin,
/// default signal dispositions, and the environment plus `env`.
///
/// Refused in a program the kernel runs in secure mode ([`secure_execution`]): the copy
/// would ignore the boot variable it relies on.
pub(crate) fn spawn_self(boot: BorrowedFd<'_>, env: &[(&str, String)]) -> io::Result<u32> {
    spawn_self_with(&[boot], env)
}

/// [`spawn_self`] handing the copy each of `fds` in turn from [`SPAWN_BOOT_FD`] on (the
/// resource tracker's pipe and its journal's files).
pub(crate) fn spawn_self_with(fds: &[BorrowedFd<'_>], env: &[(&str, String)]) -> io::Result<u32> {
    if secure_execution() {
        return Err(io::Error::new(io::ErrorKind::Unsupported, SECURE_NO_SPAWN));
    }
    // More than one: each first copied above the numbers they take in the child, so that no
    // `dup2` onto one of them overwrites a descriptor still to be placed.
    let last = SPAWN_BOOT_FD + fds.len() as i32;
    let high: Vec<OwnedFd> = match fds {
        [_] => Vec::new(),
        _ => fds.iter().map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, last)).collect::<Result<_, _>>()?,
    };
    let sources: Vec<BorrowedFd<'_>> =
        if high.is_empty() { fds.to_vec() } else { high.iter().map(|fd| fd.as_fd()).collect() };
    let path = c"/proc/self/exe";
    let argv0 = std::env::args_os().next().unwrap_or_else(|| "multiproc-child".into());
    let argv0 = CString::new(argv0.as_bytes()).unwrap_or_else(|_| c"multiproc-child".into());
    let mut envs: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| !env.iter().any(|(name, _)| OsStr::new(name) == k))
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    for (k, v) in env {
        envs.push(CString::new(format!("{k}={v}")).map_err(io::Error::other)?);
    }
    let argv: [*mut libc::c_char; 2] = [argv0.as_ptr().cast_mut(), std::ptr::null_mut()];
    let mut envp: Vec<*mut libc::c_char> = envs.iter().map(|c| c.as_ptr().cast_mut()).collect();
    envp.push(std::ptr::null_mut());

    // SAFETY: every pointer handed to posix_spawn points into CStrings and vectors that
    // live until it returns; the file-action and attribute objects are initialised before
    // use and destroyed on every path.
    unsafe {
        let mut actions = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        check(libc::posix_spawn_file_actions_init(actions.as_mut_ptr()))?;
        let mut attr = std::mem::MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        if let Err(e) = check(libc::posix_spawnattr_init(attr.as_mut_ptr())) {
            libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr());
            return Err(e);
        }
        let result = (|| {
            // dup2 onto itself clears FD_CLOEXEC (glibc >= 2.29), so the descriptors handed
            // over are the only ones of ours the child inherits.
            for (at, fd) in (SPAWN_BOOT_FD..).zip(&sources) {
                check(libc::posix_spawn_file_actions_adddup2(actions.as_mut_ptr(), fd.as_raw_fd(), at))?;
            }
            check(libc::posix_spawn_file_actions_addopen(
                actions.as_mut_ptr(),
                0,
                c"/dev/null".as_ptr(),
                libc::O_RDONLY,
                0,
            ))?;
            let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(empty.as_mut_ptr());
            check(libc::posix_spawnattr_setsigmask(attr.as_mut_ptr(), empty.as_ptr()))?;
            let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigfillset(all.as_mut_ptr());
            libc::sigdelset(all.as_mut_ptr(), libc::SIGKILL);
            libc::sigdelset(all.as_mut_ptr(), libc::SIGSTOP);
            check(libc::posix_spawnattr_setsigdefault(attr.as_mut_ptr(), all.as_ptr()))?;
            check(libc::posix_spawnattr_setflags(
                attr.as_mut_ptr(),
                (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as _,
            ))?;
            let mut pid: libc::pid_t = 0;
            check(libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                actions.as_ptr(),
                attr.as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
            ))?;
            Ok(pid as u32)
        })();
        libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr());
        libc::posix_spawnattr_destroy(attr.as_mut_ptr());
        result
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) }
}

/// A pidfd for `pid`: pollable (readable once the process has ended) and a race-free
/// target for signals.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid as i32).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// Whether process `pid` has ended as its pidfd tells (every thread of it gone: a zombie,
/// or reaped and gone), the judgement a fork server makes of its own children
/// ([`pidfd_exited`]). Not [`process_alive`]'s: a thread-group leader that ended while
/// other threads of it run is a zombie in `/proc`, but has not ended here (review91 L1). A
/// pid reused meanwhile, or one that cannot be looked at (no descriptor left), reads as not
/// ended: whoever waits for it waits, never acts early.
pub(crate) fn ended_whole(pid: u32) -> bool {
    match pidfd_open(pid) {
        Ok(pidfd) => pidfd_exited(pidfd.as_fd()),
        Err(e) => e.raw_os_error() == Some(libc::ESRCH),
    }
}

/// Sends signal `sig` to the process behind `pidfd`. A process that already ended is not
/// an error.
pub(crate) fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    let sig = Signal::from_named_raw(sig).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    match rustix::process::pidfd_send_signal(pidfd, sig) {
        Ok(()) | Err(Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sends signal `sig` to `pid`; a process that is gone is not an error.
pub(crate) fn signal_pid(pid: u32, sig: i32) -> io::Result<()> {
    let Some(target) = Pid::from_raw(pid as i32) else { return Ok(()) };
    let sig = Signal::from_named_raw(sig).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    match rustix::process::kill_process(target, sig) {
        Ok(()) | Err(Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Stops this process (`SIGSTOP`) before the calling thread goes on: the signal goes to
/// the calling thread, which begins the process's stop on its way out of the call. (Sent to
/// the process, it goes to a thread the kernel picks, the main one first, and the caller ran
/// on until that thread was scheduled: at load, past the step a test meant to freeze.)
pub(crate) fn stop_this_process() {
    // SAFETY: `raise` sends a signal to the calling thread (glibc's `tgkill` on our own
    // process and thread), with no other effect.
    unsafe { libc::raise(libc::SIGSTOP) };
}

/// Kills this process's own child `pid` and reaps it: for a child whose pidfd never
/// arrived. Only while `pid` is still our child, unreaped: the program's own `waitpid`
/// (of any child) may have reaped it, and its pid be a stranger's by now (audp61: it was
/// killed by pid at once). A pidfd, once opened, names one process for ever, so the look
/// and the kill go through one when there is room for it; else (a child lost for want
/// of descriptors, and only then) by pid, right after the look (a reap by the program
/// between the two is the one window left). `Err` (`ECHILD`, `ESRCH`: no process has the
/// pid, so our child was reaped) when it is no child of ours.
pub(crate) fn kill_and_reap_child(pid: u32) -> io::Result<()> {
    let Some(target) = Pid::from_raw(pid as i32) else { return Ok(()) };
    match pidfd_of_child(pid) {
        Ok(pidfd) => {
            pidfd_signal(pidfd.as_fd(), libc::SIGKILL)?;
            return reap_pidfd(pidfd.as_fd(), true).map(drop);
        }
        // No room for a pidfd: by pid. Any other error (`ESRCH` above all, a pid already
        // free, which another start may take before a look by pid) ends it (review85 L4).
        Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)) => {}
        Err(e) => return Err(e),
    }
    waitid_again(WaitId::Pid(target), STILL_OURS)?;
    signal_pid(pid, libc::SIGKILL)?;
    waitid_again(WaitId::Pid(target), WaitIdOptions::EXITED).map(drop)
}

/// A `waitid` that finds our own child unreaped (running, or ended), and takes nothing.
const STILL_OURS: WaitIdOptions = WaitIdOptions::EXITED.union(WaitIdOptions::NOHANG).union(WaitIdOptions::NOWAIT);

/// A pidfd for `pid`, our own child just made (`fork`, `posix_spawn`), checked to name it:
/// a child that ended at once may have been reaped by the program (a `SIGCHLD` it
/// ignores, its own wait for any child) before the pidfd was opened, and its pid be a
/// stranger's by now, whom a signal must never reach. `ESRCH` or `ECHILD` then.
pub(crate) fn pidfd_of_child(pid: u32) -> io::Result<OwnedFd> {
    let pidfd = pidfd_open(pid)?;
    waitid_again(WaitId::PidFd(pidfd.as_fd()), STILL_OURS)?;
    Ok(pidfd)
}

/// `waitid`, made again when a signal interrupts it.
fn waitid_again(id: WaitId<'_>, options: WaitIdOptions) -> io::Result<Option<rustix::process::WaitIdStatus>> {
    loop {
        match rustix::process::waitid(id.clone(), options) {
            Err(Errno::INTR) => continue,
            done => return done.map_err(io::Error::from),
        }
    }
}

/// How a process ended, as `waitpid` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Ended {
    /// It called `exit(code)`.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

impl Ended {
    /// From a raw `wait` status word.
    pub(crate) fn from_raw(status: i32) -> Self {
        if libc::WIFSIGNALED(status) {
            Ended::Signaled(libc::WTERMSIG(status))
        } else {
            Ended::Exited(libc::WEXITSTATUS(status))
        }
    }

    /// As a raw `wait` status word.
    pub(crate) fn to_raw(self) -> i32 {
        match self {
            Ended::Exited(code) => (code & 0xff) << 8,
            Ended::Signaled(sig) => sig & 0x7f,
        }
    }
}

/// Kills this process's child `pid` and waits until it is dead (reaped), for a child
/// that must not run on.
pub(crate) fn kill_and_reap(pid: u32) {
    let _ = signal_pid(pid, SIGKILL);
    let Some(target) = Pid::from_raw(pid as i32) else { return };
    while let Err(Errno::INTR) = rustix::process::waitid(WaitId::Pid(target), WaitIdOptions::EXITED) {}
}

/// Reaps the child behind `pidfd` if it has ended (`block` = wait for it).
/// `Ok(None)`: still running.
pub(crate) fn reap_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<Ended>> {
    let mut options = WaitIdOptions::EXITED;
    if !block {
        options |= WaitIdOptions::NOHANG;
    }
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd), options) {
            Ok(Some(status)) => {
                if let Some(sig) = status.terminating_signal() {
                    return Ok(Some(Ended::Signaled(sig)));
                }
                return Ok(Some(Ended::Exited(status.exit_status().unwrap_or(0))));
            }
            Ok(None) => return Ok(None),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Makes the kernel SIGKILL this process when its parent (the thread that created it)
/// ends, then checks the parent it expected is still the parent: `false` means the parent
/// is already gone and the caller should exit.
pub(crate) fn die_with_parent(expected_parent: u32) -> bool {
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    parent_pid() == expected_parent
}

/// Spawns `command` with [`die_with_parent`]'s signal set in the child before its `exec`:
/// a test's child (stopped, say) ends with the test process, even when that aborts.
#[cfg(test)]
pub(crate) fn spawn_dying_with_parent(command: &mut std::process::Command) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the hook makes one system call (`prctl`), async-signal-safe, in the forked
    // child before its `exec`, and touches no memory of the parent's.
    unsafe {
        command.pre_exec(|| Ok(rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?));
    }
    command.spawn()
}

/// No parent-death signal (the resource tracker must outlive the family).
pub(crate) fn outlive_parent() {
    let _ = rustix::process::set_parent_process_death_signal(None);
}

/// Leaves the family's session and process group and ignores the signals that end a
/// program from its terminal: for the resource tracker, which must outlive a Ctrl-C or a
/// `kill -9` of the family's process group to clean up after it. Its stdout goes to
/// `/dev/null` (it keeps stderr for its warnings).
pub(crate) fn detach_from_session() {
    let _ = rustix::process::setsid();
    // SAFETY: SIG_IGN installs no handler code; dup2 replaces descriptor 1 atomically.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::close(null);
        }
    }
}

/// Closes `fd` with a direct system call. A fork child shares no page-table entry of
/// libc's code with its parent: each page of it the child runs first is a page fault,
/// and a start's child closes nothing else through libc.
pub(crate) fn close_in_fork_child(fd: OwnedFd) {
    // SAFETY: `fd` is owned here, so nothing else uses or closes the descriptor.
    unsafe { rustix::io::close(fd.into_raw_fd()) };
}

/// Flushes Rust's stdout and ends the process at once with `code`, without running
/// `atexit` handlers inherited from the parent. std's stderr is unbuffered: there is
/// nothing of it to flush, and a fork child that never wrote to it does not touch (copy)
/// its lock or run its flush code for nothing.
pub(crate) fn exit_now(code: i32) -> ! {
    let _ = std::io::stdout().lock().flush();
    exit_group(code)
}

/// `_exit`, as the system call itself where we can: a fork child that calls libc's faults in
/// the page of code it sits on (one fault per child, at its very end). Flushes nothing: for a
/// copy made by a program's own fork, whose buffers and their locks are its parent's (a lock
/// another thread held at the fork is held for ever there).
pub(crate) fn exit_group(code: i32) -> ! {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: exit_group takes the exit code in rdi and ends every thread of the process;
    // it never returns, so no register or memory it would clobber is ever read again.
    unsafe {
        std::arch::asm!("syscall", in("rax") libc::SYS_exit_group, in("rdi") code, options(noreturn, nostack));
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above (x8 the call's number, x0 the code).
    unsafe {
        std::arch::asm!("svc 0", in("x8") libc::SYS_exit_group, in("x0") code, options(noreturn, nostack));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    // SAFETY: _exit ends the process; nothing runs after it.
    unsafe {
        libc::_exit(code)
    }
}

/// An `OwnedFd`, not a `File`: a `File`'s `as_fd` is an out-of-line function of std's
/// (`FileDesc::as_fd`), one more 64 KiB window of code for a fork child to fault in.
static DEV_NULL: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();

/// Opens `/dev/null` ahead of a fork, so that the child needs one system call for
/// [`stdin_from_devnull`].
pub(crate) fn prepare_stdin_devnull() {
    DEV_NULL.get_or_init(|| std::fs::File::open("/dev/null").expect("/dev/null").into());
}

/// Makes descriptor 0 read from `/dev/null`, as Python does for its children. A direct
/// system call, not libc's `dup2`: in a fork child each 64 KiB window of libc's code run
/// first is a page fault (see [`close_in_fork_child`]).
pub(crate) fn stdin_from_devnull() {
    let Some(null) = DEV_NULL.get() else { return };
    // dup2 onto descriptor 0 replaces stdin atomically; `DEV_NULL` keeps its own descriptor.
    let _ = rustix::stdio::dup2_stdin(null);
}

/// How the process behind `pidfd` ended, after somebody else reaped it: the program's own
/// `waitpid` (of this pid, or of any child) or a `SIGCHLD` it ignores (the kernel then reaps
/// every child at its exit), where our `waitid` finds no child. The kernel keeps the wait
/// status of a process that ended while a pidfd named it (`PIDFD_GET_INFO`, Linux 6.15);
/// `None` on an older kernel, or while the process runs.
pub(crate) fn pidfd_exit_status(pidfd: BorrowedFd<'_>) -> Option<Ended> {
    /// `struct pidfd_info` of `<linux/pidfd.h>` up to `exit_code` (its first version's size,
    /// 64 bytes: the kernel fills what the size in the request names).
    #[repr(C)]
    #[derive(Default)]
    struct PidfdInfo {
        mask: u64,
        cgroupid: u64,
        ids: [u32; 11],
        exit_code: i32,
    }
    const PIDFD_INFO_EXIT: u64 = 1 << 3;
    // `_IOWR(PIDFS_IOCTL_MAGIC, 11, struct pidfd_info)`.
    // (`libc::Ioctl`: the request's type is `c_ulong` in glibc, `c_int` in musl.)
    const PIDFD_GET_INFO: libc::Ioctl =
        ((3u32 << 30) | ((std::mem::size_of::<PidfdInfo>() as u32) << 16) | (0xFF << 8) | 11) as libc::Ioctl;
    let mut info = PidfdInfo { mask: PIDFD_INFO_EXIT, ..PidfdInfo::default() };
    // SAFETY: the kernel writes at most `size_of::<PidfdInfo>()` bytes (the size encoded
    // in the request) into `info`, a live local of that size.
    let rc = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, std::ptr::addr_of_mut!(info)) };
    (rc == 0 && info.mask & PIDFD_INFO_EXIT != 0).then(|| Ended::from_raw(info.exit_code))
}

/// Whether the process behind `pidfd` has ended (without reaping it).
pub(crate) fn pidfd_exited(pidfd: BorrowedFd<'_>) -> bool {
    super::socket::poll_readable(&[pidfd], Some(std::time::Duration::ZERO)).is_ok_and(|r| r[0])
}

fn interrupts() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a set we own.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// A thread's signal mask, carried to another thread ([`set_signal_mask`]).
#[derive(Clone, Copy)]
pub(crate) struct SignalMask(libc::sigset_t);

/// The calling thread's signal mask.
pub(crate) fn signal_mask() -> SignalMask {
    // SAFETY: a null new set changes nothing; the old set is written into a zeroed local.
    unsafe {
        let mut mask = std::mem::zeroed::<libc::sigset_t>();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        SignalMask(mask)
    }
}

/// Gives the calling thread the signal mask `mask`; returns the one it had.
pub(crate) fn set_signal_mask(mask: SignalMask) -> SignalMask {
    // SAFETY: both sets are locals that live across the call; it affects this thread only.
    unsafe {
        let mut before = std::mem::zeroed::<libc::sigset_t>();
        libc::pthread_sigmask(libc::SIG_SETMASK, &mask.0, &mut before);
        SignalMask(before)
    }
}

/// Signal handling of a fresh child: `SIGINT` and `SIGTERM` kill it (including one that
/// arrived while they were blocked in the fork server), `SIGPIPE` is ignored (write errors
/// are reported instead, as in any Rust `main`).
pub(crate) fn child_signal_dispositions() {
    let set = interrupts();
    // SAFETY: SIG_DFL/SIG_IGN install no handler code; the mask change only affects this
    // (single) thread.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// Gives `SIGCHLD` its default action: this process's children stay, once ended, until its
/// own `waitid` reaps them (ignored, the kernel reaps them at their end; a handler may
/// reap them first).
pub(crate) fn default_sigchld() {
    // SAFETY: SIG_DFL installs no handler code.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
}

/// Hold `SIGINT` and `SIGTERM`: the fork server ends when its family does, not on a
/// Ctrl-C meant for the program. They are blocked rather than ignored so that one sent to
/// a child between its fork and its [`unblock_interrupts`] is not lost. Blocked, they
/// get their default action here (the program's handlers, inherited from the main
/// process, never run in the server), and `SIGPIPE` is ignored: a fork-server child then
/// has the dispositions of [`child_signal_dispositions`] from its fork, and only unblocks.
pub(crate) fn block_interrupts() {
    let set = interrupts();
    // SAFETY: as above. The signals are blocked before their handlers are reset, so none
    // is acted on meanwhile.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// In a fork-server child, whose dispositions are those [`block_interrupts`] set in the
/// server: unblocks `SIGINT` and `SIGTERM` (one that arrived since the fork kills it now).
/// A direct system call: libc's `signal`, `sigemptyset` and `pthread_sigmask` would each
/// run (and fault in, in a fresh copy of the server) a page of libc's code.
pub(crate) fn unblock_interrupts() {
    // The kernel's signal set: one bit per signal, signal n at bit n - 1, `_NSIG / 8`
    // bytes (8 on every architecture but MIPS, where the call fails and libc's does it).
    let set: u64 = (1 << (libc::SIGINT - 1)) | (1 << (libc::SIGTERM - 1));
    // SAFETY: rt_sigprocmask reads `size_of::<u64>()` bytes at `set`, which lives across
    // the call, and writes nothing (no old set asked for); it affects this (single) thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_UNBLOCK,
            std::ptr::addr_of!(set),
            std::ptr::null_mut::<u64>(),
            std::mem::size_of::<u64>(),
        )
    };
    if rc != 0 {
        let set = interrupts();
        // SAFETY: as in `child_signal_dispositions`.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    }
}

/// Removes `key` from the environment. Only for the start of a process, before it has
/// more than one thread.
pub(crate) fn remove_env_single_threaded(key: &str) {
    debug_assert!(thread_count() <= 1);
    // SAFETY: environment mutation is only unsound when another thread reads the
    // environment at the same time; callers run before any second thread exists.
    unsafe { std::env::remove_var(key) }
}

/// Overwrites with zero bytes the value of every `key=` string of the environment block the
/// kernel gave this process at `execve` (what `/proc/<pid>/environ` shows, which removing
/// the variable leaves as it was: review75 L1), then removes `key`. The block itself is
/// walked, not `environ`: a key set again (`setenv`, `putenv`, `clearenv`) before this no
/// longer has `environ` point at its first value, which stayed in `/proc` (review80 L2).
/// Only for the start of a process known to run one thread. A value elsewhere (set by
/// `setenv` or `putenv`, perhaps in read-only memory) is only removed: `/proc` does not
/// show it.
#[cfg(feature = "cluster")]
pub(crate) fn scrub_env_single_threaded(key: &str) {
    debug_assert!(thread_count() <= 1);
    if let Some((start, end)) = initial_environment() {
        let mut prefix = key.as_bytes().to_vec();
        prefix.push(b'=');
        let block = start as *mut u8;
        let len = end - start;
        // SAFETY: `[start, end)` is the environment block the kernel wrote at `execve`, in
        // the writable stack mapping it made, for the life of the process; every byte read
        // or written here is inside it (each index below is `< len`). No other thread runs
        // (the caller's contract), so none reads or writes it meanwhile, and no Rust
        // reference points into it (std copies what it reads from the environment). Only
        // bytes after a `key=` and before the next NUL (or the block's end) are zeroed: a
        // string of the block that `environ` still points to stays a valid C string (for
        // the `unsetenv` below), of the same name.
        unsafe {
            let mut at = 0;
            while at < len {
                let mut stop = at;
                while stop < len && block.add(stop).read_volatile() != 0 {
                    stop += 1;
                }
                let named = stop - at >= prefix.len()
                    && prefix.iter().enumerate().all(|(i, &b)| block.add(at + i).read_volatile() == b);
                if named {
                    for i in at + prefix.len()..stop {
                        block.add(i).write_volatile(0);
                    }
                }
                at = stop + 1;
            }
        }
    }
    remove_env_single_threaded(key);
}

/// Where the environment block the kernel gave this process lies (`env_start`, `env_end`:
/// fields 50 and 51 of `/proc/self/stat`).
#[cfg(feature = "cluster")]
fn initial_environment() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name (field 2, in parentheses, may hold anything): field 3 on.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace().skip(50 - 3);
    let start = fields.next()?.parse().ok()?;
    let end = fields.next()?.parse().ok()?;
    (start < end).then_some((start, end))
}

/// Sets (`Some`) or removes (`None`) an environment variable, in a process that runs a
/// single thread (a child at boot, before its target).
pub(crate) fn set_env_single_threaded(key: &OsStr, value: Option<&OsStr>) {
    debug_assert!(thread_count() <= 1);
    match value {
        // SAFETY: as in `remove_env_single_threaded`: no second thread exists to read the
        // environment at the same time.
        Some(value) => unsafe { std::env::set_var(key, value) },
        // SAFETY: as above.
        None => unsafe { std::env::remove_var(key) },
    }
}

/// Closes descriptor `fd` if it is open (for descriptors inherited without an owner).
pub(crate) fn take_fd(fd: i32) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD only inspects the descriptor table.
    let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
    // SAFETY: the descriptor is open and, by the boot protocol, handed to us alone.
    open.then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets `FD_CLOEXEC` on a descriptor (after it was inherited on purpose).
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) {
    let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
}

/// Runs `hook` when the process exits normally (after `main` returns, or on `exit`).
pub(crate) fn at_exit(hook: extern "C" fn()) {
    // SAFETY: registering a plain function pointer; atexit copies it.
    unsafe {
        libc::atexit(hook);
    }
}

#[cfg(test)]
thread_local! {
    /// How many `/proc/<pid>/stat` reads this thread made (fix92: a kept look's retry
    /// counted).
    static STAT_READS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many `/proc/<pid>/stat` reads this thread made so far.
#[cfg(test)]
pub(crate) fn stat_reads() -> u64 {
    STAT_READS.with(|n| n.get())
}

/// Nanoseconds on the monotonic clock, which every process of the machine shares (so a
/// time taken in one process can be compared with one taken in another).
pub(crate) fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[cfg(all(test, feature = "cluster"))]
mod tests {
    use super::*;

    const ROLE: &str = "MULTIPROC_TEST_SCRUB_ROLE";
    const KEY: &str = "MULTIPROC_TEST_SCRUB_KEY";
    const FIRST: &str = "the-first-value-of-the-key";

    /// review80 L2: a key set again before the scrub (`setenv`) no longer has `environ` point
    /// at its first value, which the scrub (walking `environ`) left in `/proc/self/environ`.
    /// This test binary is run again with the key in its environment; there, a fork child
    /// (one thread) sets the key again, scrubs, and reads its `/proc/self/environ`.
    #[test]
    fn a_key_set_again_leaves_no_first_value_in_proc() {
        if std::env::var_os(ROLE).is_none() {
            let name = format!("{}::a_key_set_again_leaves_no_first_value_in_proc", module_path!());
            let name = name.strip_prefix("multiproc::").unwrap();
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--nocapture", "--test-threads", "1"])
                .env(ROLE, "1")
                .env(KEY, FIRST)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        // SAFETY: a test; the child runs one thread, and ends only by `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: this fork child runs one thread.
            unsafe { std::env::set_var(KEY, "set-again") };
            scrub_env_single_threaded(KEY);
            let shown = std::fs::read("/proc/self/environ").unwrap_or_default();
            let kept = shown.windows(FIRST.len()).any(|w| w == FIRST.as_bytes());
            let named = shown.windows(KEY.len()).any(|w| w == KEY.as_bytes());
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe {
                libc::_exit(if kept {
                    1
                } else if !named {
                    2
                } else {
                    0
                })
            };
        }
        let mut status = 0;
        // SAFETY: waits for our own child, into a local.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "{status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "1: the first value is still in /proc/self/environ");
    }
}

/// The working directory's identity, (device, inode): the directory itself, whatever its
/// path now (removed, renamed, or its path made again as another directory). One
/// `fstatat` of the directory itself (`AT_EMPTY_PATH`): no path is read, and no search
/// permission is needed.
pub(crate) fn working_directory_id() -> Option<(u64, u64)> {
    let stat = rustix::fs::statat(rustix::fs::CWD, "", rustix::fs::AtFlags::EMPTY_PATH).ok()?;
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    Some((u64::from(stat.st_dev), stat.st_ino as u64))
}

/// A descriptor of the working directory itself (`O_PATH`, closed on exec): it names the
/// directory even once it is removed or its path names another, and
/// [`enter_directory`] enters it.
pub(crate) fn working_directory_fd() -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    Ok(rustix::fs::open(".", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Makes the directory `dir` names this process's working directory (`fchdir`).
pub(crate) fn enter_directory(dir: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::process::fchdir(dir)?)
}

/// Tests only: how many times `sig` reached this process since its first call, counted by
/// a handler of ours installed at that call (for a signal nothing else here sends: it
/// stays installed). Its delivery interrupts a blocking call (`EINTR`), as a program's own
/// handler's does.
#[cfg(test)]
pub(crate) fn count_signal(sig: i32) -> &'static std::sync::atomic::AtomicU64 {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    static ONCE: std::sync::Once = std::sync::Once::new();
    extern "C" fn counted(_: libc::c_int) {
        COUNT.fetch_add(1, Ordering::Relaxed);
    }
    ONCE.call_once(|| {
        // SAFETY: `action` is a zeroed sigaction (an empty mask, no flags) whose handler has
        // the signature `sa_sigaction` wants without `SA_SIGINFO`, and does only an atomic
        // add, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = counted as extern "C" fn(libc::c_int) as libc::sighandler_t;
            assert_eq!(libc::sigaction(sig, &action, std::ptr::null_mut()), 0, "{}", io::Error::last_os_error());
        }
    });
    &COUNT
}

/// Tests only: sends `sig` to thread `tid` of this process (`tgkill`).
#[cfg(test)]
pub(crate) fn signal_thread(tid: u32, sig: i32) -> io::Result<()> {
    // SAFETY: `tgkill` takes three integers and only sends a signal.
    let r =
        unsafe { libc::syscall(libc::SYS_tgkill, pid_now() as libc::c_long, tid as libc::c_long, sig as libc::c_long) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Tests only: whether thread `tid` of this process is blocked in `poll` (or `ppoll`), as
/// `/proc/self/task/<tid>/syscall` says.
#[cfg(test)]
pub(crate) fn thread_in_poll(tid: u32) -> bool {
    let Ok(now) = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")) else { return false };
    let Some(Ok(nr)) = now.split_whitespace().next().map(str::parse::<libc::c_long>) else { return false };
    #[cfg(target_arch = "x86_64")]
    if nr == libc::SYS_poll {
        return true;
    }
    nr == libc::SYS_ppoll
}

/// Tests only: [`fork`], the child taking pid `pid` (`clone3` with `set_tid`, which needs
/// `CAP_SYS_ADMIN`): a test that makes a process take a pid just freed. `EEXIST`: another
/// process has the pid; `EPERM`: not allowed here. The child, as [`fork_as_sibling`]'s,
/// runs no `pthread_atfork` handler: it may only make system calls and `exit_group`.
#[cfg(test)]
pub(crate) fn fork_with_pid(pid: u32) -> io::Result<Forked> {
    /// `struct clone_args` up to `set_tid_size` (`CLONE_ARGS_SIZE_VER1`).
    #[repr(C)]
    struct CloneArgsWithTid {
        args: CloneArgs,
        set_tid: u64,
        set_tid_size: u64,
    }
    let tid: [libc::pid_t; 1] = [pid as libc::pid_t];
    let args = CloneArgsWithTid {
        args: CloneArgs {
            flags: 0,
            pidfd: 0,
            child_tid: 0,
            parent_tid: 0,
            exit_signal: libc::SIGCHLD as u64,
            stack: 0,
            stack_size: 0,
            tls: 0,
        },
        set_tid: tid.as_ptr() as u64,
        set_tid_size: 1,
    };
    // SAFETY: without CLONE_VM the child gets a copy of the address space and returns
    // here on its copy of this stack, as from fork; `args` and `tid` outlive the call,
    // which only reads them.
    let rc =
        unsafe { libc::syscall(libc::SYS_clone3, std::ptr::addr_of!(args), std::mem::size_of::<CloneArgsWithTid>()) };
    match rc {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as u32)),
    }
}
