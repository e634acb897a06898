//! Shared by the integration tests: a watchdog for anything that could hang.

#![allow(dead_code)]

pub mod machine;
pub mod plain;
pub mod redis;
pub mod refused;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The names in `/dev/shm`, but for resource trackers' journals (`mp-journal-*`): every
/// live family names its tracker's journal there (its tracker unnames it at the family's
/// end), so a test that wants a fresh or emptied `/dev/shm` looks past them (trk71 made
/// them; review97 H1: `tests/limits.rs` and `cluster_net_role` then failed on them).
pub fn shm_names_but_journals() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("mp-journal-"))
        .collect();
    names.sort();
    names
}

/// Aborts the whole test process (and with it, by the parent-death signal, every child)
/// if dropped later than `limit` after creation: a hang becomes a failure, not a stuck CI.
#[must_use]
pub struct Watchdog {
    done: Arc<AtomicBool>,
}

pub fn watchdog(limit: Duration) -> Watchdog {
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

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// Waits (up to `limit`) for the fork copy `copy`, a child of this process made by a bare
/// `fork`, to end, and returns its wait status; a copy still running then is killed, and
/// the test fails.
pub fn fork_copy_ended(copy: i32, limit: Duration) -> i32 {
    let mut status = 0;
    // SAFETY (test): `copy` is our child; `status` is a live local.
    let ended = eventually(limit, || unsafe { libc::waitpid(copy, &mut status, libc::WNOHANG) } == copy);
    if !ended {
        // SAFETY (test): as above.
        unsafe {
            libc::kill(copy, libc::SIGKILL);
            libc::waitpid(copy, std::ptr::null_mut(), 0);
        }
    }
    assert!(ended, "the fork copy {copy} of the pool thread never ended");
    status
}

/// Whether a process with this pid exists and is not a zombie.
pub fn pid_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
            !after.starts_with('Z') && !after.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Whether the process with this pid is stopped (`SIGSTOP`, a `stop:` crash point).
pub fn pid_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat[stat.rfind(')').map_or(0, |i| i + 2)..].starts_with('T'))
}

/// Stops process `pid` (our child, waiting in a primitive) with `SIGSTOP` at a moment it
/// sleeps in a futex wait, between two of its periodic checks, where it holds none of the
/// library's internal locks; stopped elsewhere (inside a check, a holder table's lock or a
/// primitive's guard held), it is let go on and stopped again a moment later. A raw
/// `SIGSTOP` could land inside a check, and the test's next untimed call on that object
/// then waited for ever for the process the test itself had stopped (flake81: the
/// barrier's forgotten-death tests hung about 1 in 20 whole-file runs under load).
/// Whether it was stopped so within `limit`. Looks at the main thread only; see
/// [`stop_all_asleep`].
pub fn stop_asleep(pid: u32, limit: Duration) -> bool {
    stop_when_asleep(pid, limit, false).is_some()
}

/// [`stop_asleep`] at a moment *every* thread of process `pid` sleeps in a futex wait.
pub fn stop_all_asleep(pid: u32, limit: Duration) -> bool {
    stop_when_asleep(pid, limit, true).is_some()
}

/// [`stop_asleep`] of the main thread, or of every thread: how many stops it took, `None`
/// when `limit` passed first.
///
/// A stopped thread shows the system call it was in (interrupted, to be restarted), but a
/// thread let go on inside a futex wait *with a timeout* (every primitive's wait sleeps in
/// slices of at most 100 ms between its liveness checks) runs it on as `restart_syscall`,
/// and shows that number, not the futex's, until that slice ends. Each stop that found
/// some thread awake so turned the others' waits into restarts: a process of several
/// threads was stopped asleep only once every slice happened to end between two stops,
/// after seconds, at times 100 s and more (fix97: `manager_dead_clients.rs`'s four-getter
/// test, 8.7 s, 107 s and 115 s in 3 of 14 whole-file runs, against its 120 s watchdog).
/// So a thread in `restart_syscall` counts as asleep when it was in a futex wait at the
/// stop before, or its kernel wait (`/proc/.../wchan`, read just before this stop, while it
/// ran) was a futex's: nothing but these stops and continues signals it, so since the last
/// continue it has been in that one restarted call.
pub fn stop_when_asleep(pid: u32, limit: Duration, every_thread: bool) -> Option<u32> {
    let number = |tid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
            .ok()
            .and_then(|call| call.split_whitespace().next().and_then(|nr| nr.parse::<libc::c_long>().ok()))
    };
    let start = Instant::now();
    let mut stops = 0;
    // The threads in a futex wait at the last stop.
    let mut asleep_before: Vec<String> = Vec::new();
    let threads = || -> Vec<String> {
        if every_thread {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|tasks| {
                    tasks.filter_map(|t| t.ok()).map(|t| t.file_name().to_string_lossy().into_owned()).collect()
                })
                .unwrap_or_default()
        } else {
            vec![pid.to_string()]
        }
    };
    while start.elapsed() < limit {
        // The threads sleeping in a futex wait now, as the kernel says of a thread that runs.
        let in_futex_now: Vec<String> = threads()
            .into_iter()
            .filter(|tid| {
                std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan")).is_ok_and(|w| w.contains("futex"))
            })
            .collect();
        // SAFETY (test): a signal to our own child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
        stops += 1;
        if !eventually(limit, || pid_stopped(pid)) {
            return None;
        }
        let tids = threads();
        let asleep: Vec<String> = tids
            .iter()
            .filter(|tid| match number(tid) {
                Some(nr) if nr == libc::SYS_futex || nr == libc::SYS_futex_waitv => true,
                Some(nr) if nr == libc::SYS_restart_syscall => {
                    asleep_before.contains(tid) || in_futex_now.contains(tid)
                }
                _ => false,
            })
            .cloned()
            .collect();
        if !tids.is_empty() && asleep.len() == tids.len() {
            return Some(stops);
        }
        asleep_before = asleep;
        // SAFETY (test): as above.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// A child stopped on purpose (a `stop:` crash point). If the test fails while it is,
/// dropping this kills it (and resumes it, so that it can be reaped): nothing stays stopped.
pub struct StoppedChild(u32);

impl StoppedChild {
    /// Waits up to `limit` until process `pid` (our child) stops; panics if it does not.
    pub fn wait_for(pid: u32, limit: Duration) -> StoppedChild {
        let child = StoppedChild(pid);
        assert!(eventually(limit, || pid_stopped(pid)), "the child {pid} did not stop");
        child
    }

    /// Resumes the child (`SIGCONT`) and waits up to `limit` until it runs.
    pub fn resume(&self, limit: Duration) {
        // SAFETY: a signal to our own child, not reaped yet; no memory is involved.
        assert_eq!(unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGCONT) }, 0);
        assert!(eventually(limit, || !pid_stopped(self.0)), "the child {} did not resume", self.0);
    }
}

impl Drop for StoppedChild {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // SAFETY: as in `resume`.
            unsafe {
                libc::kill(self.0 as libc::pid_t, libc::SIGKILL);
                libc::kill(self.0 as libc::pid_t, libc::SIGCONT);
            }
        }
    }
}

/// The calling thread's id (its `/proc/self/task` entry).
pub fn tid() -> i32 {
    // SAFETY (test): gettid(2) has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Whether the thread `tid` of this process is asleep in a futex wait (the first field of
/// its `/proc/self/task/<tid>/syscall` is `futex` or `futex_waitv`): blocked, rather than
/// on its way there.
pub fn thread_in_futex_wait(tid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).is_ok_and(|call| {
        call.split_whitespace()
            .next()
            .and_then(|nr| nr.parse::<libc::c_long>().ok())
            .is_some_and(|nr| nr == libc::SYS_futex || nr == libc::SYS_futex_waitv)
    })
}

/// Whether `/proc/<pid>` exists at all (a zombie counts).
pub fn pid_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Tests of a file that checks the family heap for leaks take one of these, so that a leak
/// check (which needs the heap to itself) never runs beside another test.
static HEAP: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// A test that uses the heap: a watchdog, and a share of the heap.
pub struct HeapUser {
    _watchdog: Watchdog,
    _shared: std::sync::RwLockReadGuard<'static, ()>,
}

pub fn heap_user(limit: Duration) -> HeapUser {
    let shared = HEAP.read().unwrap_or_else(|e| e.into_inner());
    HeapUser { _watchdog: watchdog(limit), _shared: shared }
}

/// A test that has the heap to itself, with no check: one that stops a process inside the
/// family's allocator, behind which any other test's allocation would wait.
pub struct HeapAlone {
    _watchdog: Watchdog,
    _alone: std::sync::RwLockWriteGuard<'static, ()>,
}

pub fn heap_alone(limit: Duration) -> HeapAlone {
    let alone = HEAP.write().unwrap_or_else(|e| e.into_inner());
    HeapAlone { _watchdog: watchdog(limit), _alone: alone }
}

/// A test that checks that what it did leaves the heap as it found it.
pub struct LeakCheck {
    _watchdog: Watchdog,
    _alone: std::sync::RwLockWriteGuard<'static, ()>,
    before: u64,
}

pub fn leak_check(limit: Duration) -> LeakCheck {
    let alone = HEAP.write().unwrap_or_else(|e| e.into_inner());
    LeakCheck { _watchdog: watchdog(limit), _alone: alone, before: multiproc::__private::heap_in_use() }
}

impl LeakCheck {
    /// The heap's bytes in use when the check began.
    pub fn before(&self) -> u64 {
        self.before
    }

    /// Asserts that the heap is back to where it was (children may still be finishing).
    pub fn assert_no_leak(&self) {
        self.assert_at_most(0);
    }

    /// Asserts that at most `slack` bytes more are in use than before.
    pub fn assert_at_most(&self, slack: u64) {
        let back = eventually(Duration::from_secs(10), || multiproc::__private::heap_in_use() <= self.before + slack);
        assert!(back, "heap in use: {} bytes before, {} after", self.before, multiproc::__private::heap_in_use());
    }
}

/// The start methods a test on libtest's threads may use. `Fork` is refused while other
/// threads run (they could hold a lock the copy needs); the fork cases run in
/// `tests/fork.rs`, whose `main` is single-threaded.
pub const METHODS: [multiproc::StartMethod; 2] = [multiproc::StartMethod::ForkServer, multiproc::StartMethod::Spawn];

/// Takes results (an `imap`) until the first error: the values before it, and the error if
/// one came.
pub fn until_error<R, E>(results: impl Iterator<Item = Result<R, E>>) -> (Vec<R>, Option<E>) {
    let mut values = Vec::new();
    for r in results {
        match r {
            Ok(v) => values.push(v),
            Err(e) => return (values, Some(e)),
        }
    }
    (values, None)
}

/// Runs the test `name` of this test binary alone in a process of its own, with `env` set
/// (the inner test does nothing without it), and fails unless it passed and printed
/// `INNER-DONE`: for a test whose process-wide setting (a `child_init`, a full heap) must
/// touch no other test's processes.
pub fn run_inner_test(name: &str, env: &str) {
    run_inner_test_with(name, &[(env, "1")]);
}

/// [`run_inner_test`] with the variables `vars` set (one of them the one the inner test
/// looks for); e.g. `MULTIPROC_CRASH_AT`, which arms crash points in every process of the
/// inner test's family from its start.
///
/// The inner process is killed with this thread (its parent-death signal): an outer test
/// whose watchdog aborts it leaves no inner process behind, which would otherwise run on,
/// and at its exit wait for its children as Python's does (two were left so in stop 32).
pub fn run_inner_test_with(name: &str, vars: &[(&str, &str)]) {
    run_inner_test_stderr(name, vars);
}

/// [`run_inner_test_with`], returning what the inner test wrote to stderr (its children's
/// lines among it).
pub fn run_inner_test_stderr(name: &str, vars: &[(&str, &str)]) -> String {
    inner_test_stderr(name, vars, false)
}

/// [`run_inner_test`] in a process that starts with `SIGCHLD` ignored, as one started
/// by a parent that ignores it (an ignored signal stays ignored across `exec`): ignored
/// before `init()`, which `test_support!` runs before `main`.
pub fn run_inner_test_ignoring_sigchld(name: &str, env: &str) {
    inner_test_stderr(name, &[(env, "1")], true);
}

/// [`run_inner_test`] in the working directory `dir`: its family's `init()` (and fork
/// server) are there.
pub fn run_inner_test_in(dir: &std::path::Path, name: &str, env: &str) {
    inner_test_in(Some(dir), name, &[(env, "1")], false);
}

fn inner_test_stderr(name: &str, vars: &[(&str, &str)], ignore_sigchld: bool) -> String {
    inner_test_in(None, name, vars, ignore_sigchld)
}

fn inner_test_in(dir: Option<&std::path::Path>, name: &str, vars: &[(&str, &str)], ignore_sigchld: bool) -> String {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args([name, "--exact", "--nocapture", "--test-threads=1"]).envs(vars.iter().copied());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    // SAFETY (test): `prctl` and `signal` (installing no handler) are async-signal-safe and
    // touch nothing of the parent's.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if ignore_sigchld && libc::signal(libc::SIGCHLD, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success() && stdout.contains("INNER-DONE"), "{stdout}\n{stderr}");
    stderr
}

/// The family heap filled to its last block (`__private::heap_alloc` of ever smaller
/// blocks until none fits, the smallest class included), freed when dropped. Run only
/// where nothing else of the family allocates meanwhile (an inner test, or fork.rs).
pub struct Filler {
    blocks: Vec<(u64, usize)>,
}

pub fn fill_heap() -> Filler {
    let mut blocks = Vec::new();
    let mut size = 1usize << 40;
    while size >= 64 {
        match multiproc::__private::heap_alloc(size) {
            Ok(off) => blocks.push((off, size)),
            Err(_) => size /= 2,
        }
    }
    Filler { blocks }
}

impl Filler {
    /// Whether a block of `len` bytes still fits (it is freed at once).
    pub fn room_for(&self, len: usize) -> bool {
        match multiproc::__private::heap_alloc(len) {
            // SAFETY (test): the block just allocated, freed once, never used.
            Ok(off) => unsafe {
                multiproc::__private::heap_free(off, len);
                true
            },
            Err(_) => false,
        }
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        for (off, len) in self.blocks.drain(..) {
            // SAFETY (test): each block from one `heap_alloc` of `len` bytes, freed once,
            // never used.
            unsafe { multiproc::__private::heap_free(off, len) };
        }
    }
}
