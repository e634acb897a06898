//! `StartMethod::Fork` from a single-threaded process, the only place where a fork needs
//! no promise: this binary has its own `main` (`harness = false`), so no test harness
//! thread runs beside the forks. The other test files start their children with the fork
//! server and `Spawn` from libtest's threads, where `Fork` is refused.
//!
//! No watchdog thread either: `alarm` ends the process (and by the parent-death signal,
//! its children) if a case hangs.

mod common;

use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Mutex;

use multiproc::{
    Barrier, Error, Event, JoinError, Manager, ManagerError, Pool, Process, Queue, RawArray, StartMethod, Value,
    ValueGuard,
};

const FORK: StartMethod = StartMethod::Fork;
const FORK_SERVER: StartMethod = StartMethod::ForkServer;

fn square(x: u64) -> u64 {
    x * x
}

fn explode(message: String) {
    panic!("{message}");
}

fn exit_with(code: i32) {
    std::process::exit(code);
}

/// Raises `signal` on itself, then, if still alive, returns.
fn raise_then_return(signal: i32) -> u32 {
    // SAFETY (test): raise(3) sends a signal to the calling thread, with no other effect.
    unsafe { libc::raise(signal) };
    7
}

/// How many times [`count_and_return`] ran (in the process it runs in).
static HANDLER_CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A user's crash handler of a common kind: it counts and returns, and counts on
/// `SA_RESETHAND` for the re-run access to end the process. It ends the process with 99
/// after 1000 calls, so that a handler called in a loop ends the case.
extern "C" fn count_and_return(_: i32, _: *mut libc::siginfo_t, _: *mut std::ffi::c_void) {
    if HANDLER_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 1000 {
        // SAFETY (test): _exit is async-signal-safe.
        unsafe { libc::_exit(99) };
    }
}

/// The same without `SA_SIGINFO`'s signature.
extern "C" fn count_and_return_plain(_: i32) {
    count_and_return(0, std::ptr::null_mut(), std::ptr::null_mut());
}

/// Installs `handler` for `signal` with `flags`; gives back the action before.
fn install_action(signal: i32, handler: usize, flags: i32) -> libc::sigaction {
    // SAFETY (test): plain sigaction calls with fully initialised actions.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = flags;
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(signal, &action, &mut old), 0);
        old
    }
}

fn restore_action(signal: i32, old: &libc::sigaction) {
    // SAFETY (test): a plain sigaction call with the action read before.
    assert_eq!(unsafe { libc::sigaction(signal, old, std::ptr::null_mut()) }, 0);
}

/// Raises `SIGSEGV` (a one-shot handler before ours takes it, and the process goes on),
/// then joins a Fork child that overflows its stack: what that join says.
fn raise_then_join_an_overflowing_child(_: ()) -> String {
    raise_then_return(libc::SIGSEGV);
    format!("{:?}", Process::new(recurse, 0).start_method(FORK).start().unwrap().join())
}

/// Raises `SIGSEGV` (a one-shot handler before ours takes it, and the process goes on),
/// then writes through null: the fault must end it.
fn raise_then_null_write(_: ()) -> u32 {
    raise_then_return(libc::SIGSEGV);
    null_write(())
}

/// The pipe [`write_a_byte_and_return`] writes to (its write end), -1 for none.
static CALLS_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// A one-shot crash handler that tells each call: one byte into [`CALLS_PIPE`].
extern "C" fn write_a_byte_and_return(_: i32, _: *mut libc::siginfo_t, _: *mut std::ffi::c_void) {
    // SAFETY (test): write(2) of one byte of a static, async-signal-safe.
    unsafe { libc::write(CALLS_PIPE.load(std::sync::atomic::Ordering::Relaxed), b"x".as_ptr().cast(), 1) };
}

/// Two threads behind a barrier, each writing through null at once.
fn two_threads_fault_at_once(_: ()) -> u32 {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let other = {
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            barrier.wait();
            null_write(())
        })
    };
    barrier.wait();
    null_write(());
    other.join().unwrap()
}

/// Writes through a null pointer: a real fault (`SEGV_MAPERR`).
fn null_write(_: ()) -> u32 {
    // SAFETY (test): a deliberate fault, which the test expects to end the process.
    unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
    7
}

/// Sends itself a `SIGBUS` as the kernel reports an asynchronous machine-check error
/// (`BUS_MCEERR_AO`: memory found bad that this process maps, not an access of it), then,
/// if still alive, returns. A process may queue itself any `si_code`.
fn bus_mceerr_ao_then_return(_: ()) -> u32 {
    // SAFETY (test): siginfo_t is plain data; rt_tgsigqueueinfo(2) to the calling thread of
    // a fully initialised siginfo.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        info.si_signo = libc::SIGBUS;
        info.si_code = libc::BUS_MCEERR_AO;
        let rc = libc::syscall(libc::SYS_rt_tgsigqueueinfo, libc::getpid(), libc::gettid(), libc::SIGBUS, &info);
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    }
    7
}

/// What [`note_mask`] saw: 1 + 2 * (SIGUSR1 blocked) + 4 * (SIGSEGV blocked), 0 before.
static MASK_SEEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A user's handler that notes which of SIGUSR1 and SIGSEGV are blocked while it runs.
extern "C" fn note_mask(_: i32, _: *mut libc::siginfo_t, _: *mut std::ffi::c_void) {
    // SAFETY (test): sigset_t is plain data; pthread_sigmask with no new mask only reads.
    let seen = unsafe {
        let mut now: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut now);
        1 + 2 * u32::from(libc::sigismember(&now, libc::SIGUSR1) == 1)
            + 4 * u32::from(libc::sigismember(&now, libc::SIGSEGV) == 1)
    };
    MASK_SEEN.store(seen, std::sync::atomic::Ordering::Relaxed);
}

/// Raises SIGSEGV on itself; returns (SIGUSR1 blocked, SIGSEGV blocked) as [`note_mask`]
/// saw them, and whether they are blocked now.
fn raise_and_tell_the_mask(_: ()) -> ((bool, bool), (bool, bool)) {
    // SAFETY (test): raise(3); sigset_t is plain data, read by pthread_sigmask.
    let now = unsafe {
        libc::raise(libc::SIGSEGV);
        let mut now: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut now);
        (libc::sigismember(&now, libc::SIGUSR1) == 1, libc::sigismember(&now, libc::SIGSEGV) == 1)
    };
    let seen = MASK_SEEN.load(std::sync::atomic::Ordering::Relaxed);
    assert_ne!(seen, 0, "the handler ran");
    ((seen & 2 != 0, seen & 4 != 0), now)
}

fn text_of(len: usize) -> String {
    "y".repeat(len)
}

/// A value it makes, and [`text_of`] `len`.
fn a_value_and_text_of(len: usize) -> (Value<u64>, String) {
    (Value::new(1).unwrap(), text_of(len))
}

/// Its argument's length and its own name's.
fn length_of(text: String) -> usize {
    text.len() + multiproc::current_process().name().len()
}

fn panic_of(len: usize) {
    panic!("{}", "z".repeat(len));
}

/// How many sockets this process has open.
fn sockets(_: ()) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Dies (as abruptly as `kill -9`) between writing its outcome into its report room and
/// saying so.
fn die_as_it_reports(len: usize) -> String {
    multiproc::__private::crash_at("process.report.room");
    "x".repeat(len)
}

/// Dies (aborted) at the crash point `point` as it reports a string of `len` bytes.
fn die_at_as_it_reports((point, len): (String, usize)) -> String {
    multiproc::__private::crash_at(&point);
    "x".repeat(len)
}

/// [`die_at_as_it_reports`] with a value it made in its result (counted in flight by the
/// result's encoding).
fn die_at_as_it_returns_a_value((point, len): (String, usize)) -> (Value<u64>, String) {
    multiproc::__private::crash_at(&point);
    a_value_and_text_of(len)
}

/// Makes a value, puts a copy in `queue` (counted in flight there) and returns it (counted
/// in flight by the result's encoding) with `len` bytes of text, its report never
/// delivered (fail point `process.report.undelivered`), and with `points` armed too.
fn return_a_value_never_delivered((len, queue, points): (usize, Queue<Value<u64>>, String)) -> (Value<u64>, String) {
    let (value, text) = a_value_and_text_of(len);
    queue.put(value.clone()).unwrap();
    multiproc::__private::crash_at(&format!("fail:process.report.undelivered{points}"));
    (value, text)
}

/// [`a_value_and_text_of`], the naming of its result's undo on its boot socket failed
/// (fail point `process.report.unnamed`), its report delivered.
fn return_a_value_unnamed(len: usize) -> (Value<u64>, String) {
    multiproc::__private::crash_at("fail:process.report.unnamed");
    a_value_and_text_of(len)
}

fn add_one(v: Value<u64>) {
    *v.lock() += 1;
}

fn echo_doubled(q: (Queue<u64>, Queue<u64>)) {
    while let Ok(x) = q.0.get() {
        if x == 0 {
            break;
        }
        q.1.put(x * 2).unwrap();
    }
}

fn count_until_disconnected(q: Queue<u64>) -> u64 {
    let mut n = 0;
    while q.get().is_ok() {
        n += 1;
    }
    n
}

fn wait_for(go: Event) {
    go.wait().unwrap();
}

fn arrive_late(barrier: Barrier) -> usize {
    // Late enough for the waiting parent to check its parties many times over.
    std::thread::sleep(std::time::Duration::from_millis(500));
    barrier.wait().unwrap()
}

static SET_UP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn set_up_child() {
    SET_UP.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// What a grandchild sees: the variable, its directory, and whether its set-up ran.
fn surroundings(_: ()) -> (Option<String>, std::path::PathBuf, bool) {
    let set_up = SET_UP.load(std::sync::atomic::Ordering::Relaxed);
    (std::env::var("MULTIPROC_TEST_SET_AFTER_INIT").ok(), std::env::current_dir().unwrap(), set_up)
}

/// In a fork child: changes the environment and directory, sets a `child_init` (which
/// this child itself did not run), then forks a grandchild.
fn change_then_fork(_: ()) -> (Option<String>, std::path::PathBuf, bool) {
    // SAFETY: a fork child runs one thread.
    unsafe { std::env::set_var("MULTIPROC_TEST_SET_AFTER_INIT", "set after init") };
    std::env::set_current_dir("/").unwrap();
    multiproc::builder().child_init(set_up_child).try_init().unwrap();
    Process::new(surroundings, ()).start_method(FORK).start().unwrap().join().unwrap()
}

fn was_set_up(_: u64) -> bool {
    SET_UP.load(std::sync::atomic::Ordering::Relaxed)
}

fn grandchild_square(x: u64) -> u64 {
    Process::new(square, x).start_method(FORK).start().unwrap().join().unwrap()
}

/// In a child: forks a grandchild while another thread of this child is held in its panic
/// hook with the process's name locked. True when the grandchild ran.
fn fork_while_a_thread_panics(_: ()) -> bool {
    // SAFETY: the other threads take no lock a child needs but the one under test.
    unsafe { multiproc::allow_fork_with_threads() };
    multiproc::__private::crash_at("hold:panics.process.locked");
    let panicker = std::thread::spawn(|| panic!("(a thread's panic across a fork, as the test means)"));
    while multiproc::__private::crash_holding() < 1 {
        std::thread::yield_now();
    }
    let conductor = std::thread::spawn(|| {
        // A fork that waits for the lock (rather than copying it taken) gets it once the
        // panicking thread goes on, a moment later.
        std::thread::sleep(std::time::Duration::from_millis(300));
        multiproc::__private::crash_disarm();
    });
    let grandchild = Process::new(square, 8).start_method(FORK).start().unwrap();
    conductor.join().unwrap();
    assert!(panicker.join().is_err());
    match grandchild.join_timeout(std::time::Duration::from_secs(20)) {
        Ok(v) => v == 64,
        Err(multiproc::JoinTimeoutError::Timeout(grandchild)) => {
            grandchild.kill().unwrap();
            let _ = grandchild.join();
            false
        }
        Err(e) => panic!("{e}"),
    }
}

fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 32]);
    if depth == u64::MAX { 0 } else { recurse(depth + 1).wrapping_add(frame[7]) }
}

fn insert(d: multiproc::DictProxy<String, u64>) {
    d.insert("forked".into(), 7).unwrap();
}

/// A static that a fork copies, handle and all.
static KEPT: Mutex<Option<RawArray<u64>>> = Mutex::new(None);

/// In a fork child: once the parent has let go of the array in `KEPT` (and made others),
/// reads it through this process's copy of the static.
fn read_kept_after_parent_let_go(parent_let_go: Event) -> u64 {
    parent_let_go.wait().unwrap();
    KEPT.lock().unwrap().as_ref().expect("the static was copied").get(0)
}

thread_local! {
    /// A thread-local that a fork copies (the forking thread's), handle and all.
    static KEPT_HERE: std::cell::RefCell<Option<RawArray<u64>>> = const { std::cell::RefCell::new(None) };
}

/// In a fork child: the same through this thread's copy of `KEPT_HERE`.
fn read_kept_here_after_parent_let_go(parent_let_go: Event) -> u64 {
    parent_let_go.wait().unwrap();
    KEPT_HERE.with_borrow(|kept| kept.as_ref().expect("the thread-local was copied").get(0))
}

/// In a fork child: drops its copy of the array in `KEPT`, first thing.
fn drop_kept(_: ()) {
    drop(KEPT.lock().unwrap().take());
}

/// In a fork child: tells the parent it is there, then waits to be killed, holding its copy
/// of `KEPT`.
fn hold_kept_until_killed(started: Event) {
    assert!(KEPT.lock().unwrap().is_some());
    started.set();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

thread_local! {
    // Guards of `sync` locks that the forking thread keeps, for a fork to copy.
    static LOCK_HELD: std::cell::RefCell<Option<multiproc::LockGuard<'static>>> = const { std::cell::RefCell::new(None) };
    static RLOCK_HELD: std::cell::RefCell<Option<multiproc::RLockGuard<'static>>> = const { std::cell::RefCell::new(None) };
    static PERMIT_HELD: std::cell::RefCell<Option<multiproc::SemaphoreGuard<'static>>> = const { std::cell::RefCell::new(None) };
}

/// In a fork child: drops its copies of the parent's guards.
fn drop_copied_sync_guards(_: ()) {
    LOCK_HELD.set(None);
    RLOCK_HELD.set(None);
    PERMIT_HELD.set(None);
}

/// Guards of a manager's lock and semaphore that a fork copies (the guards are `Send`).
static PROXY_LOCK_HELD: Mutex<Option<multiproc::ProxyLockGuard<'static>>> = Mutex::new(None);
static PROXY_PERMIT_HELD: Mutex<Option<multiproc::ProxySemaphoreGuard<'static>>> = Mutex::new(None);

/// In a fork child: drops its copies of the parent's manager guards.
fn drop_copied_proxy_guards(_: ()) {
    drop(PROXY_LOCK_HELD.lock().unwrap().take());
    drop(PROXY_PERMIT_HELD.lock().unwrap().take());
}

/// In a fork child: releases its copy of the parent's manager lock guard explicitly.
fn release_copied_proxy_guard(_: ()) {
    if let Some(guard) = PROXY_LOCK_HELD.lock().unwrap().take() {
        let _ = guard.release();
    }
}

thread_local! {
    /// A condition's guard that the forking thread keeps (it is not `Send`).
    static COND_HELD: std::cell::RefCell<Option<multiproc::ConditionGuard<'static>>> = const { std::cell::RefCell::new(None) };
}

/// In a fork child: drops its copy of the parent's condition guard (`wait` false), or waits
/// on it (`wait` true).
fn use_copied_condition_guard(wait: bool) {
    COND_HELD.with_borrow_mut(|held| {
        if wait {
            let _ = held.as_mut().unwrap().wait_timeout(std::time::Duration::from_millis(10));
            // A wait that went through: the copy now holds the lock its wait took back.
            drop(held.take());
        } else {
            drop(held.take());
        }
    });
}

/// In a fork child: whether it can take `cond`'s lock within a moment.
fn condition_is_free(cond: multiproc::Condition) -> bool {
    cond.acquire_timeout(std::time::Duration::from_millis(100)).is_ok()
}

/// Two registered types of one shape, both named `Stats` as written (`managed!`'s default
/// name), in two modules.
mod first {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Stats {
        pub count: u64,
    }

    impl Stats {
        pub fn bump(&mut self) -> u64 {
            self.count += 1;
            self.count
        }
    }

    multiproc::managed! { pub proxy StatsProxy for Stats { fn bump(&mut self) -> u64; } }
}

mod second {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Stats {
        pub count: u64,
    }

    impl Stats {
        pub fn bump(&mut self) -> u64 {
            self.count += 1000;
            self.count
        }
    }

    multiproc::managed! { pub proxy StatsProxy for Stats { fn bump(&mut self) -> u64; } }
}

/// The parent's manager, which a fork copies (its first `create` registers the name `Stats`
/// as `first::Stats`).
static STATS_MANAGER: Mutex<Option<Manager>> = Mutex::new(None);

/// In a fork child: once told, creates a `second::Stats` on its copy of the parent's
/// manager (whose server has `first::Stats` under the name since the fork); what came of it.
fn create_second_stats(go: Event) -> String {
    go.wait().unwrap();
    let manager = STATS_MANAGER.lock().unwrap();
    match manager.as_ref().unwrap().create(second::Stats { count: 0 }) {
        Ok(b) => format!("made, and its bump ran as {:?}", b.bump()),
        Err(ManagerError::TypeMismatch { type_name }) => format!("refused as a type mismatch of {type_name}"),
        Err(e) => format!("refused: {e:?}"),
    }
}

/// A child of the parent's, started with a blob in its boot message, kept where a fork copies
/// its handle.
static CHILD_KEPT: Mutex<Option<multiproc::ProcessHandle<usize>>> = Mutex::new(None);

/// Waits for `go`, then the length of `padding` (a blob of the heap in its boot message).
fn len_once_told((go, padding): (Event, Vec<u8>)) -> usize {
    go.wait().unwrap();
    padding.len()
}

/// In a fork child: kills the parent's child through its copy of that child's handle, and
/// waits for it; tells the child to go on, then looks at the handle until the child has
/// ended (an `is_alive`, an `exitcode`, a join with a bound). What it saw: whether the
/// kill and the wait failed, whether any `is_alive` said true, whether any `exitcode` said
/// `Some`, and the join's error.
fn look_at_copied_child(go: Event) -> (bool, bool, bool, bool, String) {
    let child = CHILD_KEPT.lock().unwrap().take().expect("the static was copied");
    let kill_failed = child.kill().is_err();
    let wait_failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        child.wait_timeout(std::time::Duration::from_millis(100))
    }))
    .is_err();
    go.set();
    let (mut alive, mut code) = (false, false);
    let ended = common::eventually(std::time::Duration::from_secs(20), || {
        alive |= child.is_alive();
        code |= child.exitcode().is_some();
        !common::pid_running(child.pid())
    });
    assert!(ended, "the parent's child never ended");
    let joined = match child.join_timeout(std::time::Duration::from_millis(300)) {
        Err(multiproc::JoinTimeoutError::Failed(error)) => format!("{error:?}"),
        other => format!("not a failure: {other:?}"),
    };
    (kill_failed, wait_failed, alive, code, joined)
}

/// A shared memory manager that a fork copies.
static SMM: Mutex<Option<multiproc::SharedMemoryManager>> = Mutex::new(None);

/// In a fork child: drops its copy of the parent's shared memory manager.
fn drop_copied_smm(_: ()) {
    drop(SMM.lock().unwrap().take());
}

/// In a fork child: shuts its copy of the parent's shared memory manager down.
fn shut_copied_smm_down(_: ()) {
    let _ = SMM.lock().unwrap().take().expect("the static was copied").shutdown();
}

/// A pool and a result of it still running, kept where a fork copies them.
static POOL_KEPT: Mutex<Option<(Pool, multiproc::AsyncResult<u64>)>> = Mutex::new(None);

fn square_after_a_moment(x: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(300));
    x * x
}

/// A process pool and a map of its in flight on the claims path (chunk size 1: its items
/// in tables of the family heap that its workers claim from), kept where a fork copies them.
static CLAIMS_MAP_KEPT: Mutex<Option<(Pool, multiproc::MapResult<u64>)>> = Mutex::new(None);

/// In a fork child: waits on its copy of the parent's map (its pool's copy ends it,
/// `Terminated`), then drops both. Whether the wait ended so.
fn end_copied_claims_map(_: ()) -> bool {
    let (pool, pending) = CLAIMS_MAP_KEPT.lock().unwrap().take().expect("the static was copied");
    let ended = matches!(pending.get(), Err(multiproc::TaskError::Terminated));
    drop(pool);
    ended
}

/// In a fork child: waits on its copy of the parent's result, maps on its copy of the
/// parent's pool, then drops both. What the result's wait and the map gave.
fn use_copied_pool(_: ()) -> (Option<String>, Option<String>) {
    let (pool, slow) = POOL_KEPT.lock().unwrap().take().expect("the static was copied");
    let got = slow.get();
    let got = (!matches!(got, Err(multiproc::TaskError::Terminated))).then(|| format!("{got:?}"));
    let mapped = pool.map(square, 0..3u64);
    let mapped = (!matches!(mapped, Err(Error::Pool(multiproc::PoolError::Closed)))).then(|| format!("{mapped:?}"));
    drop(pool);
    (got, mapped)
}

/// A listener on a unix socket that a fork copies.
#[cfg(feature = "remote")]
static LISTENER: Mutex<Option<multiproc::Listener>> = Mutex::new(None);

/// In a fork child: closes its copy of the parent's listener (`close` true) or drops it.
#[cfg(feature = "remote")]
fn end_copied_listener(close: bool) {
    let mut listener = LISTENER.lock().unwrap().take().expect("the static was copied");
    if close {
        listener.close();
    }
    drop(listener);
}

/// A connection to a remote manager and a proxy of it, kept where a fork copies them.
#[cfg(feature = "remote")]
static REMOTE_KEPT: Mutex<Option<(Manager, multiproc::DictProxy<String, u64>)>> = Mutex::new(None);

/// In a fork child: uses its copy of the parent's remote proxy (`call` true), then drops
/// the copies. Whether the call failed, as it must (the connection is the parent's).
#[cfg(feature = "remote")]
fn use_copied_remote_proxy(call: bool) -> bool {
    let (manager, d) = REMOTE_KEPT.lock().unwrap().take().expect("the static was copied");
    let refused = !call || d.get("kept").is_err();
    drop(d);
    drop(manager);
    refused
}

/// A cluster queue whose consumer holds a value, kept where a fork copies it.
#[cfg(feature = "cluster")]
static CLUSTER_KEPT: Mutex<Option<multiproc::cluster::Queue<u32>>> = Mutex::new(None);

/// In a fork child: takes what is left through its copy of the parent's queue (on a
/// connection of its own), then drops the copy.
#[cfg(feature = "cluster")]
fn drain_then_drop_copied_cluster_queue(_: ()) -> Vec<u32> {
    let q = CLUSTER_KEPT.lock().unwrap().take().expect("the static was copied");
    let mut got = Vec::new();
    while let Ok(v) = q.try_get() {
        got.push(v);
    }
    drop(q);
    got
}

thread_local! {
    /// A barrier's wait, arrived and pending, that the forking thread keeps.
    static BARRIER_WAITING: std::cell::RefCell<Option<std::pin::Pin<Box<multiproc::BarrierWait<'static>>>>> =
        const { std::cell::RefCell::new(None) };
}

/// In a fork child: drops its copy of the parent's pending barrier wait.
fn drop_copied_barrier_wait(_: ()) {
    BARRIER_WAITING.set(None);
}

/// A pool of threads kept where a fork copies it (its threads are not copied).
static THREAD_POOL_KEPT: Mutex<Option<multiproc::ThreadPool>> = Mutex::new(None);

/// In a fork child: maps on its copy of the parent's thread pool, then drops it. Whether
/// the map was refused as on a closed pool.
fn use_copied_thread_pool(_: ()) -> bool {
    let pool = THREAD_POOL_KEPT.lock().unwrap().take().expect("the static was copied");
    let refused = matches!(pool.map(square, 0..3u64), Err(Error::Pool(multiproc::PoolError::Closed)));
    drop(pool);
    refused
}

/// A thread pool that a thread of the parent keeps busy while the parent forks (its
/// threads take and give back the job channel's own lock all the time), put where a fork
/// copies it; null while none is.
static BUSY_THREAD_POOL: std::sync::atomic::AtomicPtr<multiproc::ThreadPool> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// In a fork child: closes (if `close`) and drops its copy of the busy thread pool.
fn drop_copied_busy_thread_pool(close: bool) {
    let pool = BUSY_THREAD_POOL.load(std::sync::atomic::Ordering::Acquire);
    // SAFETY: the parent made it with `Box::into_raw` and frees it only after its forks;
    // this process's copy of the box is used by no other thread (the child has none).
    let pool = unsafe { Box::from_raw(pool) };
    if close {
        pool.close();
    }
    drop(pool);
}

/// A started manager and a proxy of it, kept where a fork copies them.
static MANAGER_KEPT: Mutex<Option<(Manager, multiproc::DictProxy<String, u64>)>> = Mutex::new(None);

/// In a fork child: shuts its copy of the parent's manager down, then drops the copies.
fn shut_copied_manager_down(_: ()) -> bool {
    let (manager, d) = MANAGER_KEPT.lock().unwrap().take().expect("the static was copied");
    let done = manager.shutdown().is_ok();
    drop(d);
    drop(manager);
    done
}

/// A cluster pool (no worker node: nothing would run its tasks), kept where a fork copies it.
#[cfg(feature = "cluster")]
static CLUSTER_POOL_KEPT: Mutex<Option<Pool>> = Mutex::new(None);

/// In a fork child: maps on its copy of the parent's cluster pool, then drops it. Whether
/// the map was refused as on a closed pool (its tasks would carry the parent's pool's ids).
#[cfg(feature = "cluster")]
fn use_copied_cluster_pool(_: ()) -> bool {
    let pool = CLUSTER_POOL_KEPT.lock().unwrap().take().expect("the static was copied");
    let refused = matches!(pool.map(square, 0..3u64), Err(Error::Pool(multiproc::PoolError::Closed)));
    drop(pool);
    refused
}

/// A cluster pool (no worker node: nothing runs its tasks) and a result it owes, kept
/// where a fork copies them.
#[cfg(feature = "cluster")]
static CLUSTER_RESULT_KEPT: Mutex<Option<multiproc::AsyncResult<u64>>> = Mutex::new(None);

/// In a fork child: waits on its copy of the parent's pending cluster result every way
/// there is, each of which must end at once (nothing in this process would ever fill it).
/// What each gave: `wait_timeout` and `ready` true, the future `Terminated`, and `get`,
/// after the future took that outcome, `Taken` (fix85: a result asked for again).
#[cfg(feature = "cluster")]
fn wait_on_copied_cluster_result(_: ()) -> (bool, bool, bool, bool) {
    use std::future::Future;
    let mut result = CLUSTER_RESULT_KEPT.lock().unwrap().take().expect("the static was copied");
    result.wait();
    let waited = result.wait_timeout(std::time::Duration::from_secs(3600));
    let ready = result.ready();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let polled = matches!(
        std::pin::Pin::new(&mut result).poll(&mut cx),
        std::task::Poll::Ready(Err(multiproc::TaskError::Terminated))
    );
    let got = matches!(result.get(), Err(multiproc::TaskError::Taken));
    (waited, ready, polled, got)
}

/// A cluster pool's `imap` with chunks in flight (no node: none comes back), kept where a
/// fork copies it.
#[cfg(feature = "cluster")]
static CLUSTER_IMAP_KEPT: Mutex<Option<multiproc::IMap<u64>>> = Mutex::new(None);

/// In a fork child: takes from its copy of the parent's `imap`, as an iterator, then as a
/// stream. What each gave: the iterator `Terminated` then the end, the stream the end.
#[cfg(feature = "cluster")]
fn take_from_copied_cluster_imap(_: ()) -> (Vec<String>, bool) {
    use futures_core::Stream;
    let mut imap = CLUSTER_IMAP_KEPT.lock().unwrap().take().expect("the static was copied");
    let got: Vec<String> = imap.by_ref().take(3).map(|r| format!("{r:?}")).collect();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let streamed = matches!(std::pin::Pin::new(&mut imap).poll_next(&mut cx), std::task::Poll::Ready(None));
    (got, streamed)
}

/// A thread pool's result to come (its task waits for `THREAD_TASK_GO`), kept where a fork
/// copies it (the pool's threads are not copied).
static THREAD_RESULT_KEPT: Mutex<Option<(multiproc::ThreadPool, multiproc::AsyncResult<u64>)>> = Mutex::new(None);
static THREAD_TASK_GO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn seven_once_told(_: ()) -> u64 {
    while !THREAD_TASK_GO.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    7
}

/// In a fork child: waits on its copy of the parent's thread pool result, then drops the
/// copies. Whether the wait ended at once with `Terminated`.
fn wait_on_copied_thread_result(_: ()) -> bool {
    let (pool, result) = THREAD_RESULT_KEPT.lock().unwrap().take().expect("the static was copied");
    let ended = matches!(result.get(), Err(multiproc::TaskError::Terminated));
    drop(pool);
    ended
}

/// In a fork child: counts what arrives on its end until the parent's end is gone.
fn count_until_closed(end: multiproc::Connection<u64>) -> u64 {
    let mut n = 0;
    while end.recv().is_ok() {
        n += 1;
    }
    n
}

/// A value a thread of the parent clones and drops while fork children start.
static CHURNED: Mutex<Option<Value<u64>>> = Mutex::new(None);

/// In a fork child: reads the value through its copy of `CHURNED`.
fn read_churned(_: ()) -> u64 {
    CHURNED.lock().unwrap().as_ref().expect("the static was copied").get()
}

/// A `child_init`: the child stops itself (`SIGSTOP`) before it decodes its argument.
fn stop_before_decoding() {
    // SAFETY (test): stopping this process, which the test then kills.
    unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
}

/// A `child_init`: the child stops itself once it decoded its argument, before its
/// receives settle (where it used to send its "decoded" note).
fn stop_after_the_note() {
    multiproc::__private::crash_at("stop:process.args.noted");
}

/// A `child_init`: the child stops itself right after its first receive of its argument's
/// handles (the count taken, receipted and recorded).
fn stop_after_a_receipt() {
    multiproc::__private::crash_at("stop:process.args.receipted");
}

/// Starts a fork child on `queue` with `stop` as its `child_init`, and kills it once it
/// stopped there.
fn kill_where_it_stops(queue: &Queue<u64>, stop: fn()) -> multiproc::ProcessHandle<()> {
    multiproc::builder().child_init(stop).try_init().unwrap();
    let child = Process::new(put_seven, queue.clone()).start_method(FORK).start().unwrap();
    multiproc::builder().try_init().unwrap();
    while !stopped(child.pid()) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // SAFETY (test): killing our own child, stopped where it was told.
    unsafe { libc::kill(child.pid() as i32, libc::SIGKILL) };
    child
}

/// A `child_init`: the child aborts right before it notes its argument decoded.
fn die_before_the_note() {
    multiproc::__private::crash_at("process.args.noting");
}

fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat[stat.rfind(')').map_or(0, |i| i + 2)..].starts_with('T'))
}

fn put_seven(queue: Queue<u64>) {
    queue.put(7).unwrap();
}

fn leaked<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

/// A guard that a fork copies: the parent holds the value's lock.
static HELD: Mutex<Option<ValueGuard<'static, u64>>> = Mutex::new(None);

/// In a fork child: writes through the copy of the parent's guard.
fn write_through_copied_guard(_: ()) {
    if let Some(guard) = HELD.lock().unwrap().as_mut() {
        **guard = 2;
    }
}

/// In a fork child: drops the copy of the parent's guard (if `drop_copy`), then tries to
/// lock the value. True if it got a guard.
fn lock_beside_copied_guard((value, drop_copy): (Value<u64>, bool)) -> bool {
    if drop_copy {
        drop(HELD.lock().unwrap().take());
    }
    value.lock_timeout(std::time::Duration::from_millis(100)).is_some()
}

/// In a fork child: drops the copy of the parent's guard.
fn drop_copied_guard(_: ()) {
    drop(HELD.lock().unwrap().take());
}

thread_local! {
    /// The same for an `Array` made with a lock of the user's (its guard is not `Send`).
    static HELD_ARRAY: std::cell::RefCell<Option<multiproc::ArrayGuard<'static, u64>>> =
        const { std::cell::RefCell::new(None) };
}

/// In a fork child: writes through the copy of the parent's array guard, or drops it.
fn use_copied_array_guard(write: bool) {
    HELD_ARRAY.with_borrow_mut(|held| {
        if write {
            held.as_mut().unwrap()[0] = 2;
        } else {
            drop(held.take());
        }
    });
}

/// In a child: starts a fork grandchild that overflows its stack. True when its join says
/// so.
fn join_an_overflowing_grandchild(_: ()) -> bool {
    matches!(Process::new(recurse, 0).start_method(FORK).start().unwrap().join(), Err(JoinError::StackOverflow { .. }))
}

/// In a child: forks a bare copy of itself (`libc::fork`, no start of ours), which waits
/// for a byte on `go` and then returns from this function as the child would, so that it
/// leaves an outcome as if it were the child. The child returns the copy's pid.
fn fork_a_copy_that_reports_late(go: i32) -> String {
    // SAFETY: this child is single-threaded; the copy only reads a pipe and returns.
    match unsafe { libc::fork() } {
        0 => {
            let mut byte = 0u8;
            // SAFETY: reads one byte into a local.
            unsafe { libc::read(go, (&raw mut byte).cast(), 1) };
            "the bare copy's".to_string()
        }
        pid => pid.to_string(),
    }
}

/// In a child: forks a bare copy of itself (`libc::fork`) that overflows its stack, waits
/// for it, and returns its own words.
fn fork_a_copy_that_overflows(_: ()) -> String {
    // SAFETY: this child is single-threaded; the copy only recurses until it dies.
    match unsafe { libc::fork() } {
        0 => {
            recurse(0);
            // SAFETY: _exit ends the copy (never reached).
            unsafe { libc::_exit(0) }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waits for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            "mine".to_string()
        }
    }
}

/// In a child: returns a value it made.
/// Set to 7 before a Fork pool is built and to 8 after: a worker sees what its pool's
/// builder had at `build`.
static AT_BUILD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// In a Fork pool's worker: the static as it sees it, and its pid.
fn read_at_build(_: u64) -> (u64, u32) {
    (AT_BUILD.load(std::sync::atomic::Ordering::Relaxed), std::process::id())
}

/// An array held by the builder of a Fork pool: its zygote and every worker hold copies.
static POOL_COPIED: Mutex<Option<RawArray<u64>>> = Mutex::new(None);

/// In a Fork pool's worker (one task each): the sum of its copy of the builder's array,
/// which it then drops (its copy is its own, recorded by the zygote).
fn sum_copied(_: u64) -> u64 {
    let copy = POOL_COPIED.lock().unwrap().take();
    copy.map_or(0, |a| a.to_vec().iter().sum())
}

/// In a pool's worker: says it `started`, then waits for `go` (never set: the worker is
/// killed), then its pid.
fn wait_for_go((started, go): (Event, Event)) -> u32 {
    started.set();
    go.wait().unwrap();
    std::process::id()
}

/// In a Fork pool's worker: the sum of its copy of the builder's array, kept.
fn sum_copied_kept(_: u64) -> u64 {
    POOL_COPIED.lock().unwrap().as_ref().map_or(0, |a| a.to_vec().iter().sum())
}

/// Kills `pid` as `kill -9` does.
fn kill9(pid: u32) {
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// This process's children (its main thread's: the fork cases run there).
fn my_children() -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Builds a Fork pool; returns it and its zygote's pid (the one child the build added that
/// is not a worker).
fn fork_pool_and_zygote(builder: multiproc::PoolBuilder) -> (Pool, u32) {
    let before = my_children();
    let pool = builder.build().unwrap();
    let workers = pool.pids();
    let added: Vec<u32> = my_children().into_iter().filter(|p| !before.contains(p) && !workers.contains(p)).collect();
    assert_eq!(added.len(), 1, "one zygote beside the workers {workers:?}: {added:?}");
    (pool, added[0])
}

fn make_a_value(v: u64) -> Value<u64> {
    Value::new(v).unwrap()
}

/// In a child that holds nothing: four threads start `per_thread` fork children each at
/// once (report rooms), join them; returns the wrong results and the heap's growth.
fn fork_from_threads_at_once(per_thread: u64) -> (Vec<String>, i64) {
    // SAFETY: the threads take no lock a child needs; each only starts and joins children.
    unsafe { multiproc::allow_fork_with_threads() };
    let before = multiproc::__private::heap_in_use();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut wrong = Vec::new();
                for i in 0..per_thread {
                    let x = t * 1000 + i;
                    let len = [3, 479, 2000][(i % 3) as usize];
                    let square = Process::new(square, x).start_method(FORK).start().unwrap();
                    let text = Process::new(text_of, len).start_method(FORK).start().unwrap();
                    match (square.join(), text.join()) {
                        (Ok(y), Ok(text)) if y == x * x && text.len() == len => {}
                        (y, text) => wrong.push(format!("{x}: {y:?}, {:?}", text.map(|t| t.len()))),
                    }
                }
                wrong
            })
        })
        .collect();
    let wrong = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    (wrong, multiproc::__private::heap_in_use() as i64 - before as i64)
}

/// In a child: waits for a byte on `go`, then returns its own words.
fn wait_then_say(go: i32) -> String {
    let mut byte = 0u8;
    // SAFETY: reads one byte into a local.
    unsafe { libc::read(go, (&raw mut byte).cast(), 1) };
    "mine".to_string()
}

/// In a child: sleeps `seconds`, then returns its own words.
fn sleep_then_say(seconds: u64) -> String {
    std::thread::sleep(std::time::Duration::from_secs(seconds));
    "mine".to_string()
}

/// In a fork child: arms a crash point by the environment after `init()` (so the fork
/// server's environment lacks it), starts a fork-server child, which takes this
/// environment and must find the point armed; returns how that child ended.
fn arm_by_environment_then_start(_: ()) -> String {
    // Explicitly disarmed here, whatever the variable says from now on.
    multiproc::__private::crash_disarm();
    // SAFETY: a fork child runs one thread.
    unsafe { std::env::set_var("MULTIPROC_CRASH_AT", "process.report.room") };
    let ended = Process::new(text_of, 10).start_method(FORK_SERVER).start().unwrap().join();
    // SAFETY: as above.
    unsafe { std::env::remove_var("MULTIPROC_CRASH_AT") };
    format!("{:?}", ended.map_err(|e| e.to_string()))
}

/// A pipe (read end, write end).
fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

/// Waits until the process `pid` (not a child of ours) has ended.
fn wait_for_end_of(pid: i32) {
    // SAFETY: pidfd_open takes a pid and flags; poll a pollfd on the stack.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        if fd < 0 {
            return; // gone already
        }
        let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        while libc::poll(&mut poll, 1, -1) != 1 {}
        libc::close(fd);
    }
}

/// A `Value` whose guard can live in a static.
fn leaked_value(v: u64) -> &'static Value<u64> {
    Box::leak(Box::new(Value::new(v).unwrap()))
}

/// In a child (a requester other than the main process, whose fork-server children are
/// the server's): fork-server children without a boot socket report outcomes of several
/// lengths and a panic; returns the wrong ones and the heap's growth.
fn fork_server_children_of_a_child(_: ()) -> (Vec<String>, i64) {
    let before = multiproc::__private::heap_in_use();
    let mut wrong = Vec::new();
    for len in [0, 480, 481, 5000] {
        match Process::new(text_of, len).start_method(FORK_SERVER).start().unwrap().join() {
            Ok(text) if text == "y".repeat(len) => {}
            other => wrong.push(format!("len {len}: {:?}", other.map(|t| t.len()))),
        }
        match Process::new(panic_of, len).start_method(FORK_SERVER).start().unwrap().join() {
            Err(JoinError::Panicked(info)) if info.message == "z".repeat(len) => {}
            other => wrong.push(format!("panic {len}: {other:?}")),
        }
    }
    let sockets = Process::new(sockets, ()).start_method(FORK_SERVER).start().unwrap().join().unwrap();
    if sockets != 0 {
        wrong.push(format!("{sockets} sockets in a child without a boot socket"));
    }
    (wrong, multiproc::__private::heap_in_use() as i64 - before as i64)
}

/// Sent to this process itself: its decoding receives two copies of a queue, drops the
/// first (kept for the decoding until it ends) and starts a fork child with the second.
struct ForksInDecoding {
    sent: Option<(Queue<u64>, Event)>,
    child: Option<multiproc::ProcessHandle<String>>,
}

impl serde::Serialize for ForksInDecoding {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (queue, go) = self.sent.as_ref().expect("sent with its queue");
        (queue, queue, go).serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for ForksInDecoding {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (first, second, go): (Queue<u64>, Queue<u64>, Event) = serde::Deserialize::deserialize(deserializer)?;
        drop(first);
        let child = Process::new(get_beside_a_clone, (second, go)).start_method(FORK).start();
        Ok(ForksInDecoding { sent: None, child: Some(child.map_err(serde::de::Error::custom)?) })
    }
}

/// In a fork child started inside a decoding: once the parent let go of the queue, gets
/// from it beside a clone (this process's two handles).
fn get_beside_a_clone((queue, go): (Queue<u64>, Event)) -> String {
    go.wait().unwrap();
    let clone = queue.clone();
    let got = queue.get_timeout(std::time::Duration::from_millis(500));
    drop(clone);
    format!("{got:?}")
}

fn cases() -> Vec<(&'static str, fn())> {
    vec![
        ("an_outcome_of_any_length_comes_back_whole_and_leaks_nothing", || {
            // A child without a boot socket leaves its outcome in a report room of the heap
            // (456 bytes inline), a longer one in a block it allocates (a spill).
            // First of the cases: this process holds nothing yet, so its children have no
            // boot socket (one socket fewer than this process has).
            let sockets = Process::new(sockets, ()).start_method(FORK).start().unwrap().join().unwrap();
            assert_eq!(sockets, self::sockets(()), "a child without a boot socket");
            match Process::new(recurse, 0).start_method(FORK).start().unwrap().join() {
                Err(JoinError::StackOverflow { .. }) => {}
                other => panic!("{other:?}"),
            }
            let before = multiproc::__private::heap_in_use();
            for len in [0, 1, 400, 450, 451, 452, 470, 471, 480, 481, 4000, 16 * 1024, 100_000] {
                let child = Process::new(text_of, len).start_method(FORK).start().unwrap();
                assert_eq!(child.join().unwrap(), "y".repeat(len), "len {len}");
                match Process::new(panic_of, len).start_method(FORK).start().unwrap().join() {
                    Err(JoinError::Panicked(info)) => assert_eq!(info.message, "z".repeat(len), "len {len}"),
                    other => panic!("len {len}: {other:?}"),
                }
                assert_eq!(multiproc::__private::heap_in_use(), before, "len {len}");
            }
        }),
        ("plain_values_and_panics_come_back_exactly_through_a_room_and_a_socket", || {
            // This process holds nothing: its children report in a room.
            common::plain::values_and_panics_come_back(FORK);
            // Held: its children are recorded first, and report on their boot socket.
            let held = Value::new(0u64).unwrap();
            common::plain::values_and_panics_come_back(FORK);
            common::plain::values_and_panics_come_back(FORK_SERVER);
            drop(held);
        }),
        ("a_child_killed_as_it_leaves_its_outcome_is_a_typed_error_and_leaks_nothing", || {
            let before = multiproc::__private::heap_in_use();
            // Inline and spilled: the half-written outcome is never read, the spill freed.
            for len in [10, 5000] {
                match Process::new(die_as_it_reports, len).start_method(FORK).start().unwrap().join() {
                    Err(JoinError::Signaled { signal: libc::SIGABRT, .. }) => {}
                    other => panic!("len {len}: {other:?}"),
                }
                assert_eq!(multiproc::__private::heap_in_use(), before, "len {len}");
            }
            // A large outcome (65 000 bytes, a blob of the heap), in a room and, this process
            // holding a value, on a boot socket, killed at each step of its report: the blob
            // made, named to the parent, counted in flight by the encoding, written in the
            // room (leak61: at the last two, 65 536 bytes stayed in the heap).
            for held in [false, true] {
                let value = held.then(|| Value::new(0u64).unwrap());
                let before = multiproc::__private::heap_in_use();
                for point in ["process.report.naming", "process.report.encoded", "process.report.room"] {
                    if held && point == "process.report.room" {
                        // A point only a room child passes.
                        continue;
                    }
                    let child = Process::new(die_at_as_it_reports, (point.to_string(), 65_000));
                    match child.start_method(FORK).start().unwrap().join() {
                        Err(JoinError::Signaled { signal: libc::SIGABRT, .. }) => {}
                        other => panic!("{point}, held: {held}: {:?}", other.map(|s| s.len())),
                    }
                    assert_eq!(multiproc::__private::heap_in_use(), before, "{point}, held: {held}");
                }
                drop(value);
            }
            // Each part's leaks, told at the end.
            let mut leaks = Vec::new();
            // A result holding a value the child made, small and large (a blob), killed as
            // its report goes: the undo of the result's handles, named to this process in
            // place of the blob, gives the value back (review82 M2: 256 bytes stayed).
            for held in [false, true] {
                let value = held.then(|| Value::new(0u64).unwrap());
                let mut before = multiproc::__private::heap_in_use();
                for len in [10, 65_000] {
                    for point in ["process.report.naming", "process.report.encoded", "process.report.room"] {
                        if held && point == "process.report.room" {
                            continue;
                        }
                        let child = Process::new(die_at_as_it_returns_a_value, (point.to_string(), len));
                        match child.start_method(FORK).start().unwrap().join() {
                            Err(JoinError::Signaled { signal: libc::SIGABRT, .. }) => {}
                            other => panic!("{point}, len {len}, held: {held}: {:?}", other.map(|_| ())),
                        }
                        let left = multiproc::__private::heap_in_use() as i64 - before as i64;
                        if left != 0 {
                            leaks.push(format!("{point}, len {len}, held: {held}: left {left}"));
                        }
                        before = multiproc::__private::heap_in_use();
                    }
                }
                drop(value);
            }
            // The same result whose report never arrives: the child takes its undo back and
            // its undo runs once, by the child or (killed once it took the undo's count
            // back, `process.report.taken_back`) by whoever frees the undo: run twice, the
            // second took the count of the copy in the queue, whose take then failed; run
            // never (review98 L2: marked taken back, the parent ran none), the value stayed
            // (256 bytes).
            let queue = Queue::new().unwrap();
            let mut before = multiproc::__private::heap_in_use();
            for len in [10, 65_000] {
                for points in ["", ",process.report.taken_back"] {
                    let child = Process::new(return_a_value_never_delivered, (len, queue.clone(), points.to_string()));
                    assert!(child.start_method(FORK).start().unwrap().join().is_err(), "len {len}{points}: no outcome");
                    let copy = queue.get().unwrap();
                    assert_eq!(copy.get(), 1, "len {len}{points}");
                    drop(copy);
                    let left = multiproc::__private::heap_in_use() as i64 - before as i64;
                    if left != 0 {
                        leaks.push(format!("never delivered, len {len}{points}: left {left}"));
                    }
                    before = multiproc::__private::heap_in_use();
                }
            }
            // A result's undo whose naming on the boot socket failed (held: a socket child),
            // its report delivered: the undo is freed, and the result decoded as before
            // (review98 L3: sent away all the same, it stayed counted in flight for good).
            let held = Value::new(0u64).unwrap();
            let mut before = multiproc::__private::heap_in_use();
            for len in [10, 65_000] {
                let child = Process::new(return_a_value_unnamed, len).start_method(FORK).start().unwrap();
                let (value, text) = child.join().unwrap();
                assert_eq!((value.get(), text.len()), (1, len));
                drop(value);
                let left = multiproc::__private::heap_in_use() as i64 - before as i64;
                if left != 0 {
                    leaks.push(format!("unnamed, len {len}: left {left}"));
                }
                before = multiproc::__private::heap_in_use();
            }
            drop(held);
            assert!(leaks.is_empty(), "bytes of the heap not given back: {leaks:?}");
        }),
        ("a_fork_server_childs_outcome_of_any_length_comes_back_whole_without_a_boot_socket", || {
            // A fork-server child whose argument holds no handles gets its boot message with
            // the request and leaves its outcome in a report room: it has no socket at all
            // (the server's are closed).
            let sockets = Process::new(sockets, ()).start_method(FORK_SERVER).start().unwrap().join().unwrap();
            assert_eq!(sockets, 0, "a fork-server child without a boot socket");
            match Process::new(recurse, 0).start_method(FORK_SERVER).start().unwrap().join() {
                Err(JoinError::StackOverflow { .. }) => {}
                other => panic!("{other:?}"),
            }
            let before = multiproc::__private::heap_in_use();
            for len in [0, 1, 480, 481, 4000, 16 * 1024, 100_000] {
                let child = Process::new(text_of, len).start_method(FORK_SERVER).start().unwrap();
                assert_eq!(child.join().unwrap(), "y".repeat(len), "len {len}");
                match Process::new(panic_of, len).start_method(FORK_SERVER).start().unwrap().join() {
                    Err(JoinError::Panicked(info)) => assert_eq!(info.message, "z".repeat(len), "len {len}"),
                    other => panic!("len {len}: {other:?}"),
                }
                match Process::new(exit_with, 3).start_method(FORK_SERVER).start().unwrap().join() {
                    Err(JoinError::Exited { code: 3, .. }) => {}
                    other => panic!("{other:?}"),
                }
                assert_eq!(multiproc::__private::heap_in_use(), before, "len {len}");
            }
            // Boot messages longer than the server's stack buffer for a request (512 bytes) go
            // with the request all the same.
            for len in [3000, 10_000] {
                let name = "m".repeat(len);
                let child = Process::new(length_of, "a".repeat(len)).name(&name).start_method(FORK_SERVER);
                assert_eq!(child.start().unwrap().join().unwrap(), 2 * len, "len {len}");
            }
            assert_eq!(multiproc::__private::heap_in_use(), before, "long boot messages");
            // A boot message too long to go with the request (an argument of 100 KB travels
            // through the heap; a name of 70 KB does not): the boot socket, as before.
            let name = "n".repeat(70_000);
            let child = Process::new(text_of, 10).name(&name).start_method(FORK_SERVER).start().unwrap();
            assert_eq!(child.join().unwrap(), "y".repeat(10));
            assert_eq!(multiproc::__private::heap_in_use(), before, "a long boot message");
        }),
        (
            "a_fork_server_child_killed_as_it_leaves_its_outcome_or_while_it_runs_is_a_typed_error_and_leaks_nothing",
            || {
                let before = multiproc::__private::heap_in_use();
                for len in [10, 5000] {
                    match Process::new(die_as_it_reports, len).start_method(FORK_SERVER).start().unwrap().join() {
                        Err(JoinError::Signaled { signal: libc::SIGABRT, .. }) => {}
                        other => panic!("len {len}: {other:?}"),
                    }
                    assert_eq!(multiproc::__private::heap_in_use(), before, "len {len}");
                }
                // (A fork-server child has none of this process's descriptors: it sleeps.)
                let child = Process::new(sleep_then_say, 60).start_method(FORK_SERVER).start().unwrap();
                child.kill().unwrap();
                match child.join() {
                    Err(JoinError::Signaled { signal: libc::SIGKILL, .. }) => {}
                    other => panic!("{other:?}"),
                }
                assert_eq!(multiproc::__private::heap_in_use(), before, "killed");
            },
        ),
        ("a_fork_server_child_reads_the_crash_points_variable_of_the_environment_it_takes", || {
            // The server reads the variable once for all its children; a child given its
            // parent's environment (set after `init()`) reads it again.
            let ended = Process::new(arm_by_environment_then_start, ()).start_method(FORK).start().unwrap().join();
            let ended = ended.unwrap();
            assert!(ended.contains("SIGABRT") || ended.contains("signal 6"), "{ended}");
        }),
        ("fork_server_children_of_another_requester_report_without_a_boot_socket_and_leak_nothing", || {
            // The server's own children (their requester is not its parent): their end comes
            // on the status pipe, their outcome in their room.
            let (wrong, grown) =
                Process::new(fork_server_children_of_a_child, ()).start_method(FORK).start().unwrap().join().unwrap();
            assert_eq!(wrong, Vec::<String>::new());
            assert_eq!(grown, 0);
        }),
        ("a_bare_copy_of_a_child_never_writes_its_outcome_into_another_childs_room", || {
            // Early: this process holds nothing, so its children report in rooms.
            let (copy_go, copy_told) = pipe();
            let (child_go, child_told) = pipe();
            let copy: i32 = Process::new(fork_a_copy_that_reports_late, copy_go)
                .start_method(FORK)
                .start()
                .unwrap()
                .join()
                .unwrap()
                .parse()
                .unwrap();
            // The first child's room is freed: the next child's may be the same block.
            let next = Process::new(wait_then_say, child_go).start_method(FORK).start().unwrap();
            // SAFETY: writes one byte from a local.
            assert_eq!(unsafe { libc::write(copy_told, [1u8].as_ptr().cast(), 1) }, 1);
            wait_for_end_of(copy);
            // SAFETY: as above.
            assert_eq!(unsafe { libc::write(child_told, [1u8].as_ptr().cast(), 1) }, 1);
            assert_eq!(next.join().unwrap(), "mine", "the next child's outcome");
            for fd in [copy_go, copy_told, child_go, child_told] {
                // SAFETY: our own descriptors, closed once.
                unsafe { libc::close(fd) };
            }
        }),
        ("a_bare_copys_stack_overflow_is_not_reported_as_its_childs", || {
            let child = Process::new(fork_a_copy_that_overflows, ()).start_method(FORK).start().unwrap();
            assert_eq!(child.join().unwrap(), "mine");
        }),
        ("a_handle_returned_by_a_child_without_a_boot_socket_comes_back_and_leaks_nothing", || {
            let before = multiproc::__private::heap_in_use();
            let v = Process::new(make_a_value, 7).start_method(FORK).start().unwrap().join().unwrap();
            assert_eq!(v.get(), 7);
            drop(v);
            assert_eq!(multiproc::__private::heap_in_use(), before);
        }),
        ("a_socketless_child_is_watched_timed_out_killed_and_dropped_as_any_and_leaks_nothing", || {
            let before = multiproc::__private::heap_in_use();
            let (go, told) = pipe();
            let child = Process::new(wait_then_say, go).start_method(FORK).start().unwrap();
            assert!(child.is_alive());
            let child = match child.join_timeout(std::time::Duration::from_millis(10)) {
                Err(multiproc::JoinTimeoutError::Timeout(child)) => child,
                other => panic!("{other:?}"),
            };
            child.kill().unwrap();
            match child.join() {
                Err(JoinError::Signaled { signal: libc::SIGKILL, .. }) => {}
                other => panic!("{other:?}"),
            }
            assert_eq!(multiproc::__private::heap_in_use(), before, "killed");
            let child = Process::new(wait_then_say, go).start_method(FORK).start().unwrap();
            child.terminate().unwrap();
            match child.join() {
                Err(JoinError::Signaled { signal: libc::SIGTERM, .. }) => {}
                other => panic!("{other:?}"),
            }
            match Process::new(exit_with, 5).start_method(FORK).start().unwrap().join() {
                Err(JoinError::Exited { code: 5, .. }) => {}
                other => panic!("{other:?}"),
            }
            // Dropped while it runs, and dropped after it ended: reaped by the next look.
            drop(Process::new(wait_then_say, go).start_method(FORK).start().unwrap());
            let ended = Process::new(square, 2).start_method(FORK).start().unwrap();
            while ended.is_alive() {
                std::thread::yield_now();
            }
            drop(ended);
            // SAFETY: writes one byte from a local.
            assert_eq!(unsafe { libc::write(told, [1u8].as_ptr().cast(), 1) }, 1);
            while !multiproc::active_children().is_empty() {
                std::thread::yield_now();
            }
            assert_eq!(multiproc::__private::heap_in_use(), before, "dropped");
            for fd in [go, told] {
                // SAFETY: our own descriptors, closed once.
                unsafe { libc::close(fd) };
            }
        }),
        ("a_socketless_childs_outcome_too_long_for_its_room_in_a_full_heap_is_a_typed_error_that_says_so", || {
            // Room for the report room (one 512-byte block), none for a spill.
            let before = multiproc::__private::heap_in_use();
            let room = multiproc::__private::heap_alloc(512).unwrap();
            let filler = common::fill_heap();
            // SAFETY (test): the block just allocated, freed once, never used.
            unsafe { multiproc::__private::heap_free(room, 512) };
            let joined = Process::new(text_of, 4000).start_method(FORK).start().unwrap().join();
            let panicked = Process::new(panic_of, 4000).start_method(FORK).start().unwrap().join();
            drop(filler);
            assert_eq!(multiproc::__private::heap_in_use(), before);
            // The child has no socket and the heap no room for the message: the outcome is
            // lost, but the join says so (not "exited with code 0 without returning a
            // result"), and a panic is still a panic, its message cut.
            match joined {
                Err(JoinError::Failed { reason, .. }) => assert!(reason.contains("family heap"), "{reason}"),
                other => panic!("{:?}", other.map(|t| t.len())),
            }
            match panicked {
                Err(JoinError::Panicked(info)) => assert_eq!(info.message, format!("{} [cut]", "z".repeat(200))),
                other => panic!("{other:?}"),
            }
            // A result holding a handle (a value the child makes, in the block this process
            // frees for it), cut so: its count in flight comes back, and the value goes with
            // the child (review82 M2: marked sent, it stayed in the heap for good).
            let value = Value::new(0u64).unwrap();
            let room = multiproc::__private::heap_alloc(512).unwrap();
            let filler = common::fill_heap();
            // SAFETY (test): as above.
            unsafe { multiproc::__private::heap_free(room, 512) };
            drop(value);
            let joined = Process::new(a_value_and_text_of, 4000).start_method(FORK).start().unwrap().join();
            drop(filler);
            match joined {
                Err(JoinError::Failed { reason, .. }) => assert!(reason.contains("family heap"), "{reason}"),
                other => panic!("{:?}", other.map(|(_, text)| text.len())),
            }
            assert_eq!(multiproc::__private::heap_in_use(), before, "a cut result's handle");
        }),
        ("socketless_fork_children_started_from_many_threads_at_once_report_and_leak_nothing", || {
            let (wrong, grown) =
                Process::new(fork_from_threads_at_once, 25).start_method(FORK).start().unwrap().join().unwrap();
            assert_eq!(wrong, Vec::<String>::new());
            assert_eq!(grown, 0, "heap in use grew");
        }),
        ("a_fork_grandchilds_stack_overflow_is_its_own_not_its_parents", || {
            // The grandchild's report goes where the grandchild reports, not its parent's.
            assert!(
                Process::new(join_an_overflowing_grandchild, ()).start_method(FORK).start().unwrap().join().unwrap(),
                "the grandchild's join says StackOverflow"
            );
        }),
        ("a_consumer_learns_that_every_producer_is_gone", || {
            let q = Queue::new().unwrap();
            q.put(1).unwrap();
            q.put(2).unwrap();
            let child = Process::new(count_until_disconnected, q.clone()).start_method(FORK).start().unwrap();
            // The parent's handle, copied into the child's memory where nothing reaches it,
            // must not keep the child waiting for a producer that is gone.
            drop(q);
            assert_eq!(child.join().unwrap(), 2);
        }),
        ("an_event_that_only_a_fork_childs_unreachable_copy_could_set_is_abandoned", || {
            let event = Event::new().unwrap();
            let go = Event::new().unwrap();
            let child = Process::new(wait_for, go.clone()).start_method(FORK).start().unwrap();
            // The child's copy of `event` is in this frame, which it never returns to.
            assert!(event.wait().is_err(), "nobody else can set it");
            go.set();
            child.join().unwrap();
        }),
        ("a_fork_child_that_held_only_copies_ends_without_breaking_a_barrier", || {
            let barrier = Barrier::new(2).unwrap();
            // It ends at once and is reaped only after the wait: its entry (copies of this
            // frame's `barrier`) is found dead by the waiting party's checks.
            let bystander = Process::new(square, 3).start_method(FORK).start().unwrap();
            let party = Process::new(arrive_late, barrier.clone()).start_method(FORK).start().unwrap();
            assert!(barrier.wait().is_ok(), "no party died");
            assert!(party.join().is_ok());
            assert_eq!(bystander.join().unwrap(), 9);
        }),
        ("the_result_comes_back", || {
            assert_eq!(Process::new(square, 12).start_method(FORK).start().unwrap().join().unwrap(), 144);
        }),
        ("a_panic_is_a_typed_error", || match Process::new(explode, "boom".to_string()).start_method(FORK).start() {
            Ok(child) => match child.join() {
                Err(JoinError::Panicked(info)) => assert_eq!(info.message, "boom"),
                other => panic!("{other:?}"),
            },
            Err(e) => panic!("{e}"),
        }),
        ("an_exit_code_is_a_typed_error", || {
            match Process::new(exit_with, 3).start_method(FORK).start().unwrap().join() {
                Err(JoinError::Exited { code: 3, .. }) => {}
                other => panic!("{other:?}"),
            }
        }),
        ("a_stack_overflow_is_reported_as_such", || {
            match Process::new(recurse, 0).start_method(FORK).start().unwrap().join() {
                Err(JoinError::StackOverflow { .. }) => {}
                other => panic!("{other:?}"),
            }
        }),
        ("a_segv_or_bus_signal_a_child_raises_kills_it", || {
            // Its handler chains to std's (the main process installed it before the
            // fork), which sets the default action and returns (rust-lang/rust#140662):
            // the child went on, exit code 0 and its result.
            for signal in [libc::SIGSEGV, libc::SIGBUS] {
                let child = Process::new(raise_then_return, signal).start_method(FORK).start().unwrap();
                assert_eq!(child.wait(), -signal, "raise({signal})");
                match child.join() {
                    Err(JoinError::Signaled { signal: s, .. }) if s == signal => {}
                    other => panic!("raise({signal}): {other:?}"),
                }
            }
        }),
        ("a_fault_under_a_user_handler_with_sa_resethand_ends_the_child", || {
            // review125 H1: a handler installed before ours with SA_RESETHAND, which
            // returns and counts on the reset for the re-run access to end the process.
            // Ours called it as a plain function, the kernel applied no reset (the action
            // delivered was ours): the access faulted again, for ever (99 here).
            for (handler, flags) in [
                (count_and_return as *const () as usize, libc::SA_SIGINFO | libc::SA_RESETHAND),
                (count_and_return_plain as *const () as usize, libc::SA_RESETHAND),
            ] {
                let old = install_action(libc::SIGSEGV, handler, flags);
                let fault = Process::new(null_write, ()).start_method(FORK).start().unwrap().wait();
                // A sent signal under the same handler: it runs once, the process goes on,
                // as without ours.
                let raised = Process::new(raise_then_return, libc::SIGSEGV).start_method(FORK).start().unwrap().join();
                restore_action(libc::SIGSEGV, &old);
                assert_eq!(fault, -libc::SIGSEGV, "flags {flags:#x}: 99 is the handler run 1000 times, a loop");
                assert!(matches!(raised, Ok(7)), "flags {flags:#x}: {raised:?}");
            }
        }),
        ("a_fork_grandchild_overflows_as_one_after_a_one_shot_handler_had_its_signal", || {
            // review134 M1: a sent SIGSEGV taken by a user's SA_RESETHAND handler before ours
            // set the process's action to the default, which took ours away too: a Fork
            // child of that process then inherited no handler of ours, and its stack
            // overflow ended as a bare SIGSEGV, not StackOverflow as the docs promise.
            let old = install_action(
                libc::SIGSEGV,
                count_and_return as *const () as usize,
                libc::SA_SIGINFO | libc::SA_RESETHAND,
            );
            let seen =
                Process::new(raise_then_join_an_overflowing_child, ()).start_method(FORK).start().unwrap().join();
            // Ours kept, the used handler is the default action still: a fault after it ends
            // the child (99 would be the handler called again, in a loop).
            let fault = Process::new(raise_then_null_write, ()).start_method(FORK).start().unwrap().wait();
            restore_action(libc::SIGSEGV, &old);
            assert_eq!(fault, -libc::SIGSEGV, "a fault after the one-shot handler's call");
            match seen.as_deref() {
                Ok(s) if s.starts_with("Err(") && s.contains("overflowed its stack") => {}
                other => panic!("the grandchild's join: {other:?}"),
            }
        }),
        ("two_threads_faulting_at_once_call_a_one_shot_handler_once", || {
            // review134 M1, its second half: two threads of a child fault at once under a
            // user's SA_RESETHAND handler before ours. The kernel calls it once (the second
            // delivery finds the default action); ours reset the action only after both
            // could have entered ours, and then both called it. Racy: it can only fail
            // sometimes, hence the rounds.
            let mut ends = [0; 2];
            // SAFETY (test): pipe(2) into a fully sized array.
            assert_eq!(unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) }, 0);
            // SAFETY (test): both ends are fresh descriptors of ours, owned by these files.
            let (read, write) = unsafe { (std::fs::File::from_raw_fd(ends[0]), std::fs::File::from_raw_fd(ends[1])) };
            CALLS_PIPE.store(write.as_raw_fd(), std::sync::atomic::Ordering::Relaxed);
            let old = install_action(
                libc::SIGSEGV,
                write_a_byte_and_return as *const () as usize,
                libc::SA_SIGINFO | libc::SA_RESETHAND,
            );
            // Each child's calls: the bytes in the pipe once it ended (none if the thread
            // that lost died before the other's call wrote, as under the kernel).
            let rounds: Vec<(i32, usize)> = (0..20)
                .map(|_| {
                    let ended = Process::new(two_threads_fault_at_once, ()).start_method(FORK).start().unwrap().wait();
                    let mut calls = [0u8; 16];
                    (ended, std::io::Read::read(&mut &read, &mut calls).unwrap_or(0))
                })
                .collect();
            restore_action(libc::SIGSEGV, &old);
            CALLS_PIPE.store(-1, std::sync::atomic::Ordering::Relaxed);
            drop(write);
            assert!(
                rounds.iter().all(|&(ended, calls)| ended == -libc::SIGSEGV && calls <= 1),
                "(end, calls): {rounds:?}"
            );
        }),
        ("an_asynchronous_machine_check_sigbus_ends_the_child", || {
            // review125 L3: a SIGBUS of BUS_MCEERR_AO (si_code 5, where early kill is on)
            // reports memory gone bad, not a fault of an access: there is none to run
            // again. Taken for a fault, ours chained to std's handler, which set the default
            // action and returned, and nothing ended the child: it went on, Ok(7).
            let child = Process::new(bus_mceerr_ao_then_return, ()).start_method(FORK).start().unwrap();
            assert_eq!(child.wait(), -libc::SIGBUS);
        }),
        ("a_user_handler_before_ours_runs_under_its_own_mask", || {
            // review125 L7: the handler that was there before ours runs as the kernel would
            // have run it: its sa_mask blocked, and its own signal not, with SA_NODEFER.
            // Called under ours, it ran under our mask ((false, true)).
            // SAFETY (test): sigset_t is plain data, filled by sigemptyset and sigaddset; a
            // plain sigaction call.
            let old = unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = note_mask as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaddset(&mut action.sa_mask, libc::SIGUSR1);
                let mut old: libc::sigaction = std::mem::zeroed();
                assert_eq!(libc::sigaction(libc::SIGSEGV, &action, &mut old), 0);
                old
            };
            let seen = Process::new(raise_and_tell_the_mask, ()).start_method(FORK).start().unwrap().join();
            restore_action(libc::SIGSEGV, &old);
            assert!(matches!(seen, Ok(((true, false), (false, false)))), "{seen:?}");
        }),
        ("a_value_is_shared", || {
            let v = Value::new(41u64).unwrap();
            Process::new(add_one, v.clone()).start_method(FORK).start().unwrap().join().unwrap();
            assert_eq!(v.get(), 42);
        }),
        ("queues_carry_messages_both_ways", || {
            let (to, from) = (Queue::new().unwrap(), Queue::new().unwrap());
            let child = Process::new(echo_doubled, (to.clone(), from.clone())).start_method(FORK).start().unwrap();
            for x in 1..=100u64 {
                to.put(x).unwrap();
                assert_eq!(from.get().unwrap(), x * 2);
            }
            to.put(0).unwrap();
            child.join().unwrap();
        }),
        ("a_fork_child_forks_a_grandchild", || {
            assert_eq!(Process::new(grandchild_square, 9).start_method(FORK).start().unwrap().join().unwrap(), 81);
        }),
        ("a_fork_child_has_the_environment_directory_and_child_init_of_its_start", || {
            let (var, dir, set_up) =
                Process::new(change_then_fork, ()).start_method(FORK).start().unwrap().join().unwrap();
            assert_eq!(var.as_deref(), Some("set after init"));
            assert_eq!(dir, std::path::Path::new("/"));
            assert!(set_up, "child_init ran in the fork grandchild");
        }),
        ("a_pool_forks_its_workers", || {
            let pool = Pool::builder().processes(2).start_method(FORK).build().unwrap();
            assert_eq!(pool.map(square, 0..5u64).unwrap(), [0, 1, 4, 9, 16]);
        }),
        ("a_fork_pool_replaces_its_workers_and_they_see_what_its_builder_had_at_build", || {
            // Found by the chaos soak (examples/chaos.rs): the pool forked a replacement on
            // its own thread, beside others, where `Fork` is refused, so such a pool was
            // refused at build (`PoolError::ForkReplacements`). Its zygote, forked at
            // `build`, forks every worker as a copy of the builder as of `build`.
            let options = multiproc::MapOptions::new().chunksize(1);
            AT_BUILD.store(7, std::sync::atomic::Ordering::Relaxed);
            let pool = Pool::builder().processes(2).start_method(FORK).max_tasks_per_child(1).build().unwrap();
            AT_BUILD.store(8, std::sync::atomic::Ordering::Relaxed);
            let seen = pool.map_with(read_at_build, 0..20u64, options).unwrap();
            assert!(seen.iter().all(|&(v, _)| v == 7), "{seen:?}");
            let mut pids: Vec<u32> = seen.iter().map(|&(_, pid)| pid).collect();
            pids.sort_unstable();
            pids.dedup();
            assert_eq!(pids.len(), 20, "one worker a task");
            assert!(!pids.contains(&std::process::id()));
            // Its pool thread would keep the next `Fork` from being built.
            drop(pool);
            // A timeout (which kills and replaces a worker) builds too.
            let timed = Pool::builder().processes(1).start_method(FORK).timeout(std::time::Duration::from_secs(60));
            assert_eq!(timed.build().unwrap().map(square, 0..3u64).unwrap(), [0, 1, 4]);
        }),
        ("a_killed_fork_pool_worker_is_replaced", || {
            AT_BUILD.store(7, std::sync::atomic::Ordering::Relaxed);
            let pool = Pool::builder().processes(1).start_method(FORK).build().unwrap();
            AT_BUILD.store(8, std::sync::atomic::Ordering::Relaxed);
            let first = pool.pids();
            let (started, go) = (Event::new().unwrap(), Event::new().unwrap());
            let waiting = pool.apply_async(wait_for_go, (started.clone(), go.clone())).unwrap();
            started.wait().unwrap();
            kill9(first[0]);
            assert!(waiting.get().is_err(), "its worker was killed");
            let (value, pid) = pool.apply(read_at_build, 0).unwrap();
            assert_eq!(value, 7);
            assert_ne!(pid, first[0], "a replacement ran it");
        }),
        ("a_fork_pools_zygote_keeps_the_descriptors_of_its_build_until_the_pool_is_gone", || {
            // A pipe the program made before `build` and whose write end it closes after:
            // the zygote (a copy of the builder as of `build`) and its workers hold the
            // write end, so the reader sees no end of file while the pool lives (as
            // CPython's fork pool's first workers hold it while they live). No sound way
            // to close it there: the copied memory may own that descriptor (a `File` in a
            // static), and a close under it would let its later use reach whatever reuses
            // the number. It ends with the pool; a ForkServer pool never had it.
            for method in [FORK, FORK_SERVER] {
                let (read, write) = pipe_cloexec();
                let (pool, holder) = if method == FORK {
                    fork_pool_and_zygote(Pool::builder().processes(1).start_method(FORK).max_tasks_per_child(1))
                } else {
                    (Pool::builder().processes(1).start_method(method).max_tasks_per_child(1).build().unwrap(), 0)
                };
                assert_eq!(pool.map(square, 0..4u64).unwrap(), [0, 1, 4, 9]);
                let inode = pipe_inode(write);
                // SAFETY (test): our own descriptor, closed once.
                unsafe { libc::close(write) };
                if method == FORK {
                    assert!(holds(holder, &inode), "the zygote holds the write end");
                    assert!(!at_eof(read), "no end of file while the Fork pool lives");
                } else {
                    assert!(pool.pids().into_iter().all(|w| !holds(w, &inode)), "a ForkServer worker never had it");
                    assert!(at_eof(read), "end of file at once beside a ForkServer pool");
                }
                drop(pool);
                assert!(
                    common::eventually(std::time::Duration::from_secs(10), || at_eof(read)),
                    "{method:?}: the end of file once the pool is gone"
                );
                // SAFETY (test): as above.
                unsafe { libc::close(read) };
            }
        }),
        ("a_fork_pools_zygote_leaves_nothing_behind", || {
            let before = multiproc::__private::heap_in_use();
            let children = my_children();
            *POOL_COPIED.lock().unwrap() = Some(RawArray::from_slice(&[7u64; 64]).unwrap());
            let builder = Pool::builder().processes(2).start_method(FORK).max_tasks_per_child(1);
            let (pool, zygote) = fork_pool_and_zygote(builder);
            let sums = pool.map_with(sum_copied, 0..6u64, multiproc::MapOptions::new().chunksize(1)).unwrap();
            assert_eq!(sums, [7 * 64; 6]);
            drop(pool);
            assert!(!common::pid_exists(zygote), "the zygote was reaped with its pool");
            drop(POOL_COPIED.lock().unwrap().take());
            let back = common::eventually(std::time::Duration::from_secs(10), || {
                multiproc::__private::heap_in_use() == before && my_children() == children
            });
            assert!(
                back,
                "heap {} then {}; children {children:?} then {:?}",
                before,
                multiproc::__private::heap_in_use(),
                my_children()
            );
        }),
        ("a_fork_pool_worker_keeps_its_copies_when_its_zygote_is_killed", || {
            // The zygote records each worker as a holder of its copies: with the zygote
            // killed and the builder's own handle dropped (the dead zygote's entry pruned),
            // the worker's copy still keeps the array (else freed, and its block reused).
            let before = multiproc::__private::heap_in_use();
            *POOL_COPIED.lock().unwrap() = Some(RawArray::from_slice(&[7u64; 64]).unwrap());
            let builder = Pool::builder().processes(1).start_method(FORK);
            let (pool, zygote) = fork_pool_and_zygote(builder);
            assert_eq!(pool.apply(sum_copied_kept, 0).unwrap(), 7 * 64);
            kill9(zygote);
            assert!(common::eventually(std::time::Duration::from_secs(10), || !common::pid_running(zygote)));
            drop(POOL_COPIED.lock().unwrap().take());
            let reuse: Vec<RawArray<u64>> = (0..8).map(|_| RawArray::from_slice(&[9u64; 64]).unwrap()).collect();
            assert_eq!(pool.apply(sum_copied_kept, 0).unwrap(), 7 * 64, "the worker's copy was freed");
            drop(reuse);
            drop(pool);
            // The dead zygote took its record of the worker with it: the worker's entry, dead
            // and unrecorded, is pruned when the pool lets go of its zygote.
            let back = common::eventually(std::time::Duration::from_secs(10), || {
                multiproc::__private::heap_in_use() == before
            });
            assert!(back, "heap {before} then {}", multiproc::__private::heap_in_use());
        }),
        ("a_fork_pool_whose_zygote_was_killed_fails_its_replacements_typed", || {
            let children = my_children();
            let builder = Pool::builder().processes(1).start_method(FORK).max_tasks_per_child(1);
            let (pool, zygote) = fork_pool_and_zygote(builder);
            kill9(zygote);
            assert!(common::eventually(std::time::Duration::from_secs(10), || !common::pid_running(zygote)));
            // The first task runs on the first worker, which then retires; its replacement
            // cannot start.
            let out = pool.map_with(square, 0..3u64, multiproc::MapOptions::new().chunksize(1));
            assert!(out.is_err(), "{out:?}");
            drop(pool);
            assert!(
                common::eventually(std::time::Duration::from_secs(10), || my_children() == children),
                "{children:?} then {:?}",
                my_children()
            );
        }),
        ("child_init_runs_in_forked_pool_workers", || {
            // Not run here: only a worker that ran it has the static set.
            multiproc::builder().child_init(set_up_child).try_init().unwrap();
            assert!(!SET_UP.load(std::sync::atomic::Ordering::Relaxed));
            let pool = Pool::builder().processes(2).start_method(FORK).build().unwrap();
            assert_eq!(pool.map(was_set_up, 0..6u64).unwrap(), [true; 6]);
        }),
        ("a_manager_server_is_forked", || {
            let manager = Manager::builder().start_method(FORK).start().unwrap();
            let d = manager.dict::<String, u64>().unwrap();
            Process::new(insert, d.clone()).start_method(StartMethod::ForkServer).start().unwrap().join().unwrap();
            assert_eq!(d.get("forked").unwrap(), Some(7));
        }),
        ("once_a_thread_runs_fork_is_refused", || {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let thread = std::thread::spawn(move || {
                let _ = rx.recv();
            });
            let started = Process::new(square, 2).start_method(FORK).start();
            drop(tx);
            thread.join().unwrap();
            assert!(matches!(started, Err(Error::ForkWithThreads { .. })), "{started:?}");
            // The thread is gone: forking is safe again.
            assert!(multiproc::active_children().is_empty());
        }),
        ("a_guard_copied_by_fork_does_not_write_what_the_parent_holds", || {
            let value = leaked_value(1);
            *HELD.lock().unwrap() = Some(value.lock());
            let child = Process::new(write_through_copied_guard, ()).start_method(FORK).start().unwrap().join();
            let seen = **HELD.lock().unwrap().as_ref().unwrap();
            drop(HELD.lock().unwrap().take());
            assert_eq!(seen, 1, "a fork child wrote the value while this process held its lock ({child:?})");
            assert!(matches!(child, Err(JoinError::Panicked(_))), "{child:?}");
        }),
        ("a_guard_taken_on_an_ended_thread_then_copied_by_fork_is_never_granted_twice", || {
            // An RLock's value: its guard taken on a thread that ended (the RLock's holder
            // is that dead thread), kept by this process, copied by fork.
            let value: &'static Value<u64> = leaked(Value::with_lock(1, multiproc::RLock::new().unwrap()).unwrap());
            *HELD.lock().unwrap() = Some(std::thread::spawn(|| value.lock()).join().unwrap());
            for drop_copy in [false, true] {
                let got = Process::new(lock_beside_copied_guard, (value.clone(), drop_copy))
                    .start_method(FORK)
                    .start()
                    .unwrap()
                    .join()
                    .unwrap();
                assert!(!got, "a fork child got a guard while this process holds one (dropped its copy: {drop_copy})");
            }
            drop(HELD.lock().unwrap().take());
            let got = Process::new(lock_beside_copied_guard, (value.clone(), false))
                .start_method(FORK)
                .start()
                .unwrap()
                .join();
            assert!(matches!(got, Ok(true)), "released: {got:?}");
        }),
        ("a_guard_copied_by_fork_does_not_unlock_what_the_parent_holds", || {
            let value = leaked_value(1);
            *HELD.lock().unwrap() = Some(value.lock());
            Process::new(drop_copied_guard, ()).start_method(FORK).start().unwrap().join().unwrap();
            let second = value.try_lock();
            let unlocked = second.is_some();
            drop(second);
            drop(HELD.lock().unwrap().take());
            assert!(!unlocked, "a fork child released the lock this process holds: two guards of one value");
        }),
        ("an_array_guard_copied_by_fork_neither_writes_nor_unlocks", || {
            let lock = multiproc::Lock::new().unwrap();
            let array: &'static multiproc::Array<u64> =
                Box::leak(Box::new(multiproc::Array::with_lock(&[1, 1], lock.clone()).unwrap()));
            HELD_ARRAY.set(Some(array.lock()));
            let wrote = Process::new(use_copied_array_guard, true).start_method(FORK).start().unwrap().join();
            assert!(matches!(wrote, Err(JoinError::Panicked(_))), "{wrote:?}");
            Process::new(use_copied_array_guard, false).start_method(FORK).start().unwrap().join().unwrap();
            assert!(lock.locked(), "the user's lock is still held by this process");
            let second = array.try_lock();
            let unlocked = second.is_some();
            drop(second);
            let seen = HELD_ARRAY.with_borrow(|held| held.as_ref().unwrap()[0]);
            HELD_ARRAY.set(None);
            assert!(!unlocked, "a fork child released the array this process holds");
            assert_eq!(seen, 1, "a fork child wrote the array while this process held it");
            assert!(!lock.locked(), "dropping the guard here released both locks");
        }),
        ("a_child_killed_before_it_decodes_its_argument_gives_its_handles_back", || {
            let before = multiproc::__private::heap_in_use();
            let queue = Queue::<u64>::new().unwrap();
            multiproc::builder().child_init(stop_before_decoding).try_init().unwrap();
            let child = Process::new(put_seven, queue.clone()).start_method(FORK).start().unwrap();
            multiproc::builder().try_init().unwrap();
            while !stopped(child.pid()) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            // SAFETY (test): killing our own child, stopped before it decoded its argument.
            unsafe { libc::kill(child.pid() as i32, libc::SIGKILL) };
            drop(queue);
            assert!(child.join().is_err(), "killed");
            assert_eq!(multiproc::__private::heap_in_use(), before, "the argument's queue was given back");
        }),
        ("a_child_killed_before_its_note_gives_back_its_arguments_handles_once", || {
            // The child decoded its argument and died before its note, the parent keeping the
            // queue: the child's pending receive goes back to the parent's undo.
            let before = multiproc::__private::heap_in_use();
            let queue = Queue::<u64>::new().unwrap();
            multiproc::builder().child_init(die_before_the_note).try_init().unwrap();
            let child = Process::new(put_seven, queue.clone()).start_method(FORK).start().unwrap();
            multiproc::builder().try_init().unwrap();
            assert!(child.join().is_err(), "died before its note");
            Process::new(put_seven, queue.clone()).start_method(FORK).start().unwrap().join().unwrap();
            assert_eq!(queue.get().unwrap(), 7);
            drop(queue);
            assert_eq!(multiproc::__private::heap_in_use(), before, "the argument's queue was given back once");
        }),
        ("a_child_that_cannot_copy_its_boot_socket_gives_back_nothing_twice", || {
            // The child inherits the armed failure: it could not copy its boot socket for
            // its note (before the argument's token, token31: a child with a token makes no
            // copy, and sends no note), so it runs and its receipts say what it took; nothing
            // is given back twice (a copy of the queue waits in a queue of queues meanwhile).
            let before = multiproc::__private::heap_in_use();
            let queues = Queue::<Queue<u64>>::new().unwrap();
            let queue = Queue::<u64>::new().unwrap();
            multiproc::__private::crash_at("fail:process.note.copy");
            let child = Process::new(put_seven, queue.clone()).start_method(FORK).start();
            multiproc::__private::crash_disarm();
            let child = child.unwrap();
            queues.put(queue.clone()).unwrap();
            child.join().unwrap();
            assert_eq!(queue.get().unwrap(), 7, "the child ran");
            let copy = queues.get().unwrap();
            copy.put(8).unwrap();
            assert_eq!(queue.get().unwrap(), 8, "the copy is the queue");
            drop((copy, queue, queues));
            assert_eq!(multiproc::__private::heap_in_use(), before, "the argument's queue was given back once");
        }),
        ("a_child_killed_right_after_it_noted_its_argument_decoded_gives_its_handles_back", || {
            // Decoded, nothing settled or receipted: the parent's undo gives the queue back,
            // whether the parent drops its own handle before the join or keeps using it.
            for keep in [false, true] {
                let before = multiproc::__private::heap_in_use();
                let queue = Queue::<u64>::new().unwrap();
                let child = kill_where_it_stops(&queue, stop_after_the_note);
                if keep {
                    assert!(child.join().is_err(), "killed");
                    Process::new(put_seven, queue.clone()).start_method(FORK).start().unwrap().join().unwrap();
                    assert_eq!(queue.get().unwrap(), 7);
                    drop(queue);
                } else {
                    drop(queue);
                    assert!(child.join().is_err(), "killed");
                }
                assert_eq!(multiproc::__private::heap_in_use(), before, "keep {keep}: the queue was given back once");
            }
        }),
        ("a_child_killed_right_after_a_receipt_gives_back_exactly_what_it_did_not_take", || {
            // Receipted, then killed: never the undo run (it would take the count of the
            // queued copy), and nothing leaked either (the dead child's receive must not go
            // back in flight for nobody): the heap is back where it was.
            let before = multiproc::__private::heap_in_use();
            let queues = Queue::<Queue<u64>>::new().unwrap();
            let queue = Queue::<u64>::new().unwrap();
            let child = kill_where_it_stops(&queue, stop_after_a_receipt);
            queues.put(queue.clone()).unwrap();
            assert!(child.join().is_err(), "killed");
            let copy = queues.get_timeout(std::time::Duration::from_secs(10));
            assert!(copy.is_ok(), "the queued copy of the queue: {copy:?}");
            copy.unwrap().put(3).unwrap();
            assert_eq!(queue.get().unwrap(), 3);
            Process::new(put_seven, queue.clone()).start_method(FORK).start().unwrap().join().unwrap();
            assert_eq!(queue.get().unwrap(), 7);
            drop((queue, queues));
            assert_eq!(multiproc::__private::heap_in_use(), before, "the queue was given back once");
        }),
        ("a_child_whose_argument_panics_while_decoding_gives_back_its_handles_once", || {
            // The child receives the first queue, then its decoding panics; copies of both
            // queues wait in a queue of queues across the join: the second only is given
            // back. With room for the block of receipts (the first receipted), and in a heap
            // too full for it (`boot::NOTE_ONLY`: the first was given back a second time).
            for full in [false, true] {
                let before = multiproc::__private::heap_in_use();
                let queues = Queue::<Queue<u32>>::new().unwrap();
                let (first, second) = (Queue::<u32>::new().unwrap(), Queue::<u32>::new().unwrap());
                let filler = full.then(common::fill_heap);
                assert!(filler.as_ref().is_none_or(|f| !f.room_for(64)), "the heap is full");
                let arg = common::refused::PanicsAfterFirst(first.clone(), second.clone());
                let child = Process::new(never_runs_after_a_panic, arg).start_method(FORK).start().unwrap();
                queues.put(first.clone()).unwrap();
                queues.put(second.clone()).unwrap();
                let joined = child.join();
                assert!(matches!(joined, Err(JoinError::Panicked(_))), "full {full}: {joined:?}");
                for (n, q) in (0u32..).zip([&first, &second]) {
                    let copy = queues.get_timeout(std::time::Duration::from_secs(10));
                    assert!(copy.is_ok(), "full {full}: the queued copy of queue {n}: {copy:?}");
                    copy.unwrap().put(n).unwrap();
                    assert_eq!(q.get().unwrap(), n, "full {full}");
                }
                drop((first, second, queues, filler));
                assert_eq!(multiproc::__private::heap_in_use(), before, "full {full}");
            }
        }),
        ("a_child_started_in_a_heap_too_full_for_a_block_of_receipts_gives_its_argument_back_exactly", || {
            // No room for the block of receipts: the child sends them on its boot socket
            // (`boot::NOTE_ONLY`). The queue is made before the heap is filled; a copy of it
            // waits in a queue of queues across the join (a count given back twice would
            // take that copy's). `runs`: the child runs; `noting`: it dies once decoded;
            // `noted`: killed there (it used to send its note there, and the queue leaked);
            // `receipted`: killed right after its receipt. Nothing leaks. `keep`: the parent
            // keeps its handle and a second child, in the full heap too, uses it.
            for case in ["runs", "noting", "noted", "receipted"] {
                for keep in [false, true] {
                    let before = multiproc::__private::heap_in_use();
                    let queues = Queue::<Queue<u64>>::new().unwrap();
                    let made = multiproc::__private::heap_in_use();
                    let queue = Queue::<u64>::new().unwrap();
                    let queue_bytes = multiproc::__private::heap_in_use() - made;
                    let filler = common::fill_heap();
                    assert!(!filler.room_for(64), "the heap is full");
                    let child = match case {
                        "runs" => {
                            let child = Process::new(put_seven, queue.clone()).start_method(FORK).start().unwrap();
                            assert_eq!(queue.get().unwrap(), 7, "the child ran");
                            child
                        }
                        "noting" => {
                            multiproc::builder().child_init(die_before_the_note).try_init().unwrap();
                            let child = Process::new(put_seven, queue.clone()).start_method(FORK).start().unwrap();
                            multiproc::builder().try_init().unwrap();
                            while common::pid_running(child.pid()) {
                                std::thread::sleep(std::time::Duration::from_millis(1));
                            }
                            child
                        }
                        "noted" => kill_where_it_stops(&queue, stop_after_the_note),
                        _ => kill_where_it_stops(&queue, stop_after_a_receipt),
                    };
                    queues.put(queue.clone()).unwrap();
                    let kept = keep.then_some(queue);
                    let joined = child.join();
                    assert_eq!(joined.is_ok(), case == "runs", "{case}: {joined:?}");
                    let copy = queues.get_timeout(std::time::Duration::from_secs(10));
                    assert!(copy.is_ok(), "{case}, keep {keep}: the queued copy of the queue: {copy:?}");
                    let copy = copy.unwrap();
                    copy.put(3).unwrap();
                    assert_eq!(copy.get().unwrap(), 3, "{case}, keep {keep}");
                    if let Some(queue) = kept {
                        Process::new(put_seven, queue.clone()).start_method(FORK).start().unwrap().join().unwrap();
                        assert_eq!(copy.get().unwrap(), 7, "{case}: a second child in the full heap");
                    }
                    drop((copy, queues, filler));
                    let left = multiproc::__private::heap_in_use() - before;
                    assert_eq!(left, 0, "{case}, keep {keep}: a queue is {queue_bytes} bytes");
                }
            }
        }),
        ("a_child_that_took_its_argument_and_ended_gives_nothing_back_at_its_reaping", || {
            let before = multiproc::__private::heap_in_use();
            let queues = Queue::<Queue<u64>>::new().unwrap();
            let queue = Queue::<u64>::new().unwrap();
            let child = Process::new(put_seven, queue.clone()).start_method(FORK).start().unwrap();
            assert_eq!(queue.get().unwrap(), 7);
            queues.put(queue.clone()).unwrap();
            child.join().unwrap();
            let copy = queues.get_timeout(std::time::Duration::from_secs(10));
            assert!(copy.is_ok(), "the queued copy of the queue: {copy:?}");
            drop((copy, queue, queues));
            assert_eq!(multiproc::__private::heap_in_use(), before);
        }),
        ("a_handle_copied_by_fork_keeps_its_object", || {
            let before = multiproc::__private::heap_in_use();
            *KEPT.lock().unwrap() = Some(RawArray::from_slice(&[7u64; 64]).unwrap());
            let let_go = Event::new().unwrap();
            let child = Process::new(read_kept_after_parent_let_go, let_go.clone()).start_method(FORK).start().unwrap();
            drop(KEPT.lock().unwrap().take());
            // Reuse the freed block, if it was freed.
            let others: Vec<RawArray<u64>> = (0..8).map(|_| RawArray::from_slice(&[99u64; 64]).unwrap()).collect();
            let_go.set();
            let read = child.join();
            drop(others);
            drop(let_go);
            assert_eq!(read.unwrap(), 7, "the child read the array through its copy after the parent's last drop");
            assert_eq!(multiproc::__private::heap_in_use(), before, "the child's copy was given back when it ended");
        }),
        ("a_handle_in_a_thread_local_copied_by_fork_keeps_its_object", || {
            let before = multiproc::__private::heap_in_use();
            KEPT_HERE.set(Some(RawArray::from_slice(&[7u64; 64]).unwrap()));
            let let_go = Event::new().unwrap();
            let child =
                Process::new(read_kept_here_after_parent_let_go, let_go.clone()).start_method(FORK).start().unwrap();
            KEPT_HERE.set(None);
            let others: Vec<RawArray<u64>> = (0..8).map(|_| RawArray::from_slice(&[99u64; 64]).unwrap()).collect();
            let_go.set();
            let read = child.join();
            drop(others);
            drop(let_go);
            assert_eq!(read.unwrap(), 7, "the child read the array through its copy after the parent's last drop");
            assert_eq!(multiproc::__private::heap_in_use(), before);
        }),
        ("a_handle_copied_by_fork_and_dropped_by_the_child_first_stays_the_parents", || {
            let before = multiproc::__private::heap_in_use();
            *KEPT.lock().unwrap() = Some(RawArray::from_slice(&[7u64; 64]).unwrap());
            Process::new(drop_kept, ()).start_method(FORK).start().unwrap().join().unwrap();
            let others: Vec<RawArray<u64>> = (0..8).map(|_| RawArray::from_slice(&[99u64; 64]).unwrap()).collect();
            {
                let kept = KEPT.lock().unwrap();
                let kept = kept.as_ref().unwrap();
                assert_eq!(kept.get(0), 7, "the child's drop freed the parent's array");
                kept.set(0, 8);
                assert_eq!(kept.get(0), 8);
            }
            assert!(others.iter().all(|o| o.get(0) == 99), "another array shares the parent's block");
            drop(others);
            drop(KEPT.lock().unwrap().take());
            assert_eq!(multiproc::__private::heap_in_use(), before);
        }),
        ("a_killed_fork_child_gives_its_copied_handles_back", || {
            let before = multiproc::__private::heap_in_use();
            *KEPT.lock().unwrap() = Some(RawArray::from_slice(&[7u64; 64]).unwrap());
            let started = Event::new().unwrap();
            let child = Process::new(hold_kept_until_killed, started.clone()).start_method(FORK).start().unwrap();
            started.wait().unwrap();
            child.kill().unwrap();
            assert!(matches!(child.join(), Err(JoinError::Signaled { .. })));
            drop(KEPT.lock().unwrap().take());
            drop(started);
            assert_eq!(multiproc::__private::heap_in_use(), before, "the dead child's copy keeps the array");
        }),
        ("a_fork_childs_copy_of_the_parents_pipe_end_does_not_keep_that_end_open", || {
            // The child copies `ours` with the parent's memory and cannot drop that copy; it
            // must still see the end of the stream once the parent drops its end.
            let (ours, theirs) = multiproc::Pipe::<u64>::new().unwrap();
            let child = Process::new(count_until_closed, theirs).start_method(FORK).start().unwrap();
            ours.send(1).unwrap();
            ours.send(2).unwrap();
            drop(ours);
            assert_eq!(child.join().unwrap(), 2);
        }),
        ("a_lock_guard_copied_by_fork_does_not_release_the_parents_lock", || {
            let lock = leaked(multiproc::Lock::new().unwrap());
            LOCK_HELD.set(Some(lock.acquire().unwrap()));
            Process::new(drop_copied_sync_guards, ()).start_method(FORK).start().unwrap().join().unwrap();
            let still = lock.locked();
            LOCK_HELD.set(None);
            assert!(still, "a fork child's drop of a copied guard released the parent's lock");
            assert!(!lock.locked());
        }),
        ("a_lock_guard_copied_by_a_bare_fork_does_not_release_the_parents_lock", || {
            // A program's own `libc::fork` (no start of ours): the copy runs on from here,
            // with this process's memory, the guard in the thread-local included.
            let lock = leaked(multiproc::Lock::new().unwrap());
            LOCK_HELD.set(Some(lock.acquire().unwrap()));
            // SAFETY (test): a single-threaded process; the copy drops its guard and leaves
            // with `_exit`, running nothing else of this process.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                LOCK_HELD.set(None);
                // SAFETY: ends the copy without running this process's exit handlers.
                unsafe { libc::_exit(0) };
            }
            let mut status = 0;
            // SAFETY: reaps our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            let still = lock.locked();
            LOCK_HELD.set(None);
            assert!(still, "a bare fork's drop of a copied guard released the parent's lock");
            assert!(!lock.locked());
        }),
        ("an_rlock_guard_copied_by_fork_does_not_release_the_parents_level", || {
            let rlock = leaked(multiproc::RLock::new().unwrap());
            RLOCK_HELD.set(Some(rlock.acquire().unwrap()));
            Process::new(drop_copied_sync_guards, ()).start_method(FORK).start().unwrap().join().unwrap();
            let still = rlock.locked();
            RLOCK_HELD.set(None);
            assert!(still, "a fork child's drop of a copied guard released the parent's level");
            assert!(!rlock.locked());
        }),
        ("a_semaphore_guard_copied_by_fork_does_not_give_the_parents_permit_back", || {
            let sem = leaked(multiproc::Semaphore::new(1).unwrap());
            PERMIT_HELD.set(Some(sem.acquire().unwrap()));
            Process::new(drop_copied_sync_guards, ()).start_method(FORK).start().unwrap().join().unwrap();
            let value = sem.get_value();
            PERMIT_HELD.set(None);
            assert_eq!(value, 0, "a fork child's drop of a copied guard gave the parent's permit back");
            assert_eq!(sem.get_value(), 1);
        }),
        ("a_manager_lock_guard_copied_by_fork_does_not_release_the_parents_lock", || {
            let manager = Manager::start().unwrap();
            let lock = leaked(manager.lock().unwrap());
            let sem = leaked(manager.semaphore(1).unwrap());
            *PROXY_LOCK_HELD.lock().unwrap() = Some(lock.acquire().unwrap());
            *PROXY_PERMIT_HELD.lock().unwrap() = Some(sem.acquire().unwrap());
            Process::new(drop_copied_proxy_guards, ()).start_method(FORK).start().unwrap().join().unwrap();
            let still = lock.locked().unwrap();
            let value = sem.get_value().unwrap();
            let released_copy = Process::new(release_copied_proxy_guard, ()).start_method(FORK).start().unwrap().join();
            let still_after_release = lock.locked().unwrap();
            drop(PROXY_LOCK_HELD.lock().unwrap().take());
            drop(PROXY_PERMIT_HELD.lock().unwrap().take());
            let released = !lock.locked().unwrap() && sem.get_value().unwrap() == 1;
            manager.shutdown().unwrap();
            assert!(still, "a fork child's drop of a copied guard released the parent's manager lock");
            assert_eq!(value, 0, "a fork child's drop of a copied guard gave the parent's manager permit back");
            assert!(still_after_release, "a fork child's release of a copied guard released the parent's manager lock");
            assert!(matches!(released_copy, Err(JoinError::Panicked(_))), "a copy's release: {released_copy:?}");
            assert!(released, "dropping the guards here gives both back");
        }),
        ("a_fork_child_cannot_re_register_a_name_another_type_took_on_the_server", || {
            // review112 L2: the child's table of registered names is its copy of the
            // parent's as of the fork, without `first::Stats`; it posted its own type's
            // registration, which replaced the server's constructor of "Stats", and the
            // parent's next `first::Stats` was made as a `second::Stats`.
            *STATS_MANAGER.lock().unwrap() = Some(Manager::start().unwrap());
            let go = Event::new().unwrap();
            let child = Process::new(create_second_stats, go.clone()).start_method(FORK).start().unwrap();
            let make = || STATS_MANAGER.lock().unwrap().as_ref().unwrap().create(first::Stats { count: 0 }).unwrap();
            let a: first::StatsProxy = make();
            go.set();
            let child_made = child.join().unwrap();
            let again: first::StatsProxy = make();
            let (a_bump, again_bump) = (a.bump(), again.bump());
            drop((a, again));
            STATS_MANAGER.lock().unwrap().take().unwrap().shutdown().unwrap();
            assert!(matches!(again_bump, Ok(1)), "a first::Stats made after the child's create: {again_bump:?}");
            assert!(child_made.contains("type mismatch"), "the child's second::Stats: {child_made}");
            assert!(matches!(a_bump, Ok(1)), "the first first::Stats: {a_bump:?}");
        }),
        ("a_manager_copied_by_fork_and_shut_down_by_the_child_stays_the_parents", || {
            let manager = Manager::start().unwrap();
            let d = manager.dict::<String, u64>().unwrap();
            d.insert("kept".into(), 7).unwrap();
            *MANAGER_KEPT.lock().unwrap() = Some((manager, d));
            let child = Process::new(shut_copied_manager_down, ()).start_method(FORK).start().unwrap();
            let done = join_unless_blocked(child, "a fork child blocked for ever shutting its copy of a manager down");
            let (manager, d) = MANAGER_KEPT.lock().unwrap().take().unwrap();
            let after = d.get("kept");
            drop(d);
            manager.shutdown().unwrap();
            assert!(done, "a copy's shutdown only lets go, as a connected manager's");
            assert!(
                matches!(after, Ok(Some(7))),
                "the parent's proxy after a fork child shut its copy down: {after:?}"
            );
        }),
        ("a_condition_guard_copied_by_fork_neither_releases_nor_waits_on_the_parents_lock", || {
            let lock = multiproc::Lock::new().unwrap();
            let cond: &'static multiproc::Condition = leaked(multiproc::Condition::with_lock(lock.clone()).unwrap());
            COND_HELD.set(Some(cond.acquire().unwrap()));
            Process::new(use_copied_condition_guard, false).start_method(FORK).start().unwrap().join().unwrap();
            let still = lock.locked();
            let waited = Process::new(use_copied_condition_guard, true).start_method(FORK).start().unwrap().join();
            let still_after_wait = lock.locked();
            let second = cond.try_acquire();
            let twice = second.is_ok();
            drop(second);
            COND_HELD.set(None);
            assert!(still, "a fork child's drop of a copied condition guard released the parent's lock");
            assert!(matches!(waited, Err(JoinError::Panicked(_))), "a wait on a copied guard: {waited:?}");
            assert!(still_after_wait, "a fork child's wait on a copied condition guard released the parent's lock");
            assert!(!twice, "two guards of one condition at once");
            assert!(!lock.locked());
            // An RLock under the condition (the default): the same.
            let cond: &'static multiproc::Condition = leaked(multiproc::Condition::new().unwrap());
            COND_HELD.set(Some(cond.acquire().unwrap()));
            Process::new(use_copied_condition_guard, false).start_method(FORK).start().unwrap().join().unwrap();
            let waited = Process::new(use_copied_condition_guard, true).start_method(FORK).start().unwrap().join();
            let free_elsewhere =
                Process::new(condition_is_free, cond.clone()).start_method(FORK).start().unwrap().join();
            COND_HELD.set(None);
            assert!(matches!(waited, Err(JoinError::Panicked(_))), "a wait on a copied guard: {waited:?}");
            assert!(matches!(free_elsewhere, Ok(false)), "the parent's RLock was released: {free_elsewhere:?}");
        }),
        ("a_process_handle_copied_by_fork_neither_reads_nor_reaps_the_parents_child", || {
            // review57 M1: the copy's looks pumped the child's boot socket (the same open
            // file the parent reads): it took the child's "took it" word (and its outcome),
            // so the parent's reap found no word and gave the boot message's blob back a
            // second time, after the child had freed it.
            let go = Event::new().unwrap();
            let before = multiproc::__private::heap_in_use();
            let child = Process::new(len_once_told, (go.clone(), vec![7u8; 64 * 1024]))
                .start_method(StartMethod::Spawn)
                .start()
                .unwrap();
            let pid = child.pid();
            *CHILD_KEPT.lock().unwrap() = Some(child);
            let seen = Process::new(look_at_copied_child, go.clone()).start_method(FORK).start().unwrap().join();
            let child = CHILD_KEPT.lock().unwrap().take().unwrap();
            assert!(!common::pid_running(pid), "the child ended before its parent looks");
            let joined = child.join();
            let back = common::eventually(std::time::Duration::from_secs(10), || {
                multiproc::__private::heap_in_use() == before
            });
            let after = multiproc::__private::heap_in_use();
            assert!(
                back && joined == Ok(64 * 1024),
                "the parent's join {joined:?}; heap in use {before} before, {after} after"
            );
            let (kill_failed, wait_failed, alive, code, joined) = seen.unwrap();
            assert!(kill_failed && wait_failed, "a copy's kill and wait fail: {kill_failed} {wait_failed}");
            assert!(!alive && !code, "a copy's handle is neither alive nor ended: {alive} {code}");
            assert!(joined.contains("not a child of this process"), "a copy's join: {joined}");
        }),
        ("a_shared_memory_manager_copied_by_fork_and_shut_down_by_the_child_unlinks_nothing", || {
            let smm = multiproc::SharedMemoryManager::start().unwrap();
            let shm = smm.shared_memory(8).unwrap();
            let name = shm.name().to_string();
            drop(shm);
            *SMM.lock().unwrap() = Some(smm);
            Process::new(shut_copied_smm_down, ()).start_method(FORK).start().unwrap().join().unwrap();
            let still = multiproc::SharedMemory::open(&name).is_ok();
            let smm = SMM.lock().unwrap().take().unwrap();
            let names = smm.names();
            smm.shutdown().unwrap();
            assert!(multiproc::SharedMemory::open(&name).is_err(), "the parent's shutdown unlinks the block");
            assert!(still, "a fork child's shutdown of a copied SharedMemoryManager unlinked the parent's block");
            assert_eq!(names.unwrap(), [name], "a fork child's shutdown emptied the parent's names");
        }),
        ("a_shared_memory_manager_copied_by_fork_and_dropped_by_the_child_unlinks_nothing", || {
            let smm = multiproc::SharedMemoryManager::start().unwrap();
            let shm = smm.shared_memory(8).unwrap();
            let name = shm.name().to_string();
            drop(shm);
            *SMM.lock().unwrap() = Some(smm);
            Process::new(drop_copied_smm, ()).start_method(FORK).start().unwrap().join().unwrap();
            let still = multiproc::SharedMemory::open(&name).is_ok();
            let smm = SMM.lock().unwrap().take().unwrap();
            let names = smm.names().unwrap();
            smm.shutdown().unwrap();
            assert!(multiproc::SharedMemory::open(&name).is_err(), "the parent's shutdown unlinks the block");
            assert!(still, "a fork child's drop of a copied SharedMemoryManager unlinked the parent's block");
            assert_eq!(names, [name], "a fork child's drop emptied the parent's names");
        }),
        #[cfg(feature = "remote")]
        ("a_unix_listener_copied_by_fork_and_ended_by_the_child_keeps_the_parents_path", || {
            let path = std::env::temp_dir().join(format!("multiproc-fork-listener-{}", std::process::id()));
            *LISTENER.lock().unwrap() = Some(multiproc::Listener::bind(path.as_path(), b"k").unwrap());
            let mut kept = Vec::new();
            for close in [false, true] {
                Process::new(end_copied_listener, close).start_method(FORK).start().unwrap().join().unwrap();
                kept.push(path.exists());
            }
            drop(LISTENER.lock().unwrap().take());
            let removed = !path.exists();
            let _ = std::fs::remove_file(&path);
            assert_eq!(kept, [true, true], "a fork child's drop, then close, of its copy removed the parent's path");
            assert!(removed, "the parent's drop removes its path");
        }),
        #[cfg(feature = "cluster")]
        ("a_fork_start_right_after_an_open_by_host_name_is_not_refused", || {
            // The open resolves `localhost` on a thread of its own, joined before it returns
            // (review96 M3): the fork must not find it still listed. No Redis is needed:
            // nothing listens on the port, so the open fails once it has resolved.
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let url = format!("redis://localhost:{port}/0");
            for _ in 0..30 {
                let opened = multiproc::cluster::Queue::<u32>::builder()
                    .timeout(std::time::Duration::from_millis(50))
                    .open(&url, "q");
                assert!(matches!(opened, Err(multiproc::cluster::ClusterError::Unreachable(_))), "{:?}", opened.err());
                match Process::new(square, 3).start_method(FORK).start() {
                    Ok(child) => assert_eq!(child.join().unwrap(), 9),
                    Err(e) => panic!("a Fork start right after a name's lookup: {e}"),
                }
            }
        }),
        #[cfg(feature = "cluster")]
        ("a_cluster_queue_copied_by_fork_and_dropped_by_the_child_leaves_the_parents_values_its_own", || {
            let Some(redis) = common::redis::Redis::start(&[]) else { return };
            let q = multiproc::cluster::Queue::<u32>::open(&redis.url, "q").unwrap();
            for v in 1..=3 {
                q.put(v).unwrap();
            }
            // Held by this consumer, unacknowledged (in its processing list).
            std::mem::forget(q.receive().unwrap());
            *CLUSTER_KEPT.lock().unwrap() = Some(q);
            let child = Process::new(drain_then_drop_copied_cluster_queue, ()).start_method(FORK).start().unwrap();
            let childs = join_unless_blocked(child, "a fork child blocked for ever on its copy of a cluster queue");
            let q = CLUSTER_KEPT.lock().unwrap().take().unwrap();
            let mut after = Vec::new();
            while let Ok(v) = q.try_get() {
                after.push(v);
            }
            let len = q.len().unwrap();
            drop(q);
            assert_eq!(childs, [2, 3], "what the child took through its copy");
            assert_eq!(after, [0u32; 0], "a fork child's drop of its copy gave back the value this process holds");
            assert_eq!(len, 0);
        }),
        // Last: it opts in to forks beside threads for the rest of this process.
        ("with_forks_beside_threads_a_thread_cloning_handles_meanwhile_leaves_the_counts_true", || {
            let before = multiproc::__private::heap_in_use();
            let value = Value::new(5u64).unwrap();
            *CHURNED.lock().unwrap() = Some(value.clone());
            // SAFETY: the other thread takes no lock a child needs (it clones and drops a
            // handle, and changes of this process's holder entries wait while a fork
            // records its child).
            unsafe { multiproc::allow_fork_with_threads() };
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let churn = {
                let (value, stop) = (value.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        drop(std::hint::black_box(value.clone()));
                    }
                })
            };
            let children: Vec<_> =
                (0..4).map(|_| Process::new(read_churned, ()).start_method(FORK).start().unwrap()).collect();
            drop(CHURNED.lock().unwrap().take());
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            churn.join().unwrap();
            drop(value);
            for child in children {
                assert_eq!(child.join().unwrap(), 5);
            }
            assert_eq!(multiproc::__private::heap_in_use(), before);
        }),
        // After the case above: forks beside threads are allowed from there on.
        ("with_forks_beside_threads_a_child_forked_while_another_thread_reaps_runs", || {
            // A thread reaps a fork child, and is held inside the parent's books of its fork
            // children (their lock taken), while the main thread forks. The new child must
            // not inherit that lock taken by a thread it does not have: it would block for
            // ever at its first step.
            // SAFETY: the other threads take no lock a child needs but the one under test.
            unsafe { multiproc::allow_fork_with_threads() };
            let go = Event::new().unwrap();
            let reaped = Process::new(wait_for, go.clone()).start_method(FORK).start().unwrap();
            let reaper = std::thread::spawn(move || reaped.join().unwrap());
            // The main thread is held once it has looked at its children (the reaped one is
            // still running), before it forks; the reaper is then held with the lock taken.
            multiproc::__private::crash_at("hold:process.fork.begun,hold:holders.fork_ended.locked");
            let conductor = std::thread::spawn(move || {
                while multiproc::__private::crash_holding() < 1 {
                    std::thread::yield_now();
                }
                go.set();
                while multiproc::__private::crash_holding() < 2 {
                    std::thread::yield_now();
                }
                // The fork goes on while the reaper is held.
                multiproc::__private::crash_at("hold:holders.fork_ended.locked");
                // A fork that waits for the lock (rather than copying it taken) gets it once
                // the reaper goes on, a moment later.
                std::thread::sleep(std::time::Duration::from_millis(300));
                multiproc::__private::crash_disarm();
            });
            let child = Process::new(square, 4).start_method(FORK).start().unwrap();
            conductor.join().unwrap();
            reaper.join().unwrap();
            assert_eq!(
                join_unless_blocked(child, "the fork child blocked for ever on a lock another thread held at the fork"),
                16
            );
        }),
        // After the case that opts in; it opts in itself too, and installs multiproc's
        // logger for the rest of this process.
        ("with_forks_beside_threads_a_child_forked_while_another_thread_logs_runs", || {
            // A thread logs through multiproc's logger, and is held with the process's name
            // (which the logger writes) locked, while the main thread forks. The child takes
            // that lock at boot: it must not inherit it taken by a thread it does not have.
            // SAFETY: the other threads take no lock a child needs but the one under test.
            unsafe { multiproc::allow_fork_with_threads() };
            let _ = multiproc::log_to_stderr(log::LevelFilter::Error);
            multiproc::__private::crash_at("hold:logging.name.locked");
            let logger = std::thread::spawn(|| log::error!("(a record logged across a fork, as the test means)"));
            while multiproc::__private::crash_holding() < 1 {
                std::thread::yield_now();
            }
            let conductor = disarm_in_a_moment();
            let child = Process::new(square, 5).start_method(FORK).start().unwrap();
            conductor.join().unwrap();
            logger.join().unwrap();
            assert_eq!(
                join_unless_blocked(
                    child,
                    "the fork child blocked for ever on the log name another thread held at the fork"
                ),
                25
            );
        }),
        // After the case that opts in; it opts in itself too.
        ("with_forks_beside_threads_a_child_forked_while_another_thread_starts_a_child_runs", || {
            // A thread starting a child reads the family's `child_init`, and is held with it
            // locked, while the main thread forks (held before, once past its own read).
            // The fork child takes that lock at boot: it must not inherit it taken.
            // SAFETY: the other threads take no lock a child needs but the one under test.
            unsafe { multiproc::allow_fork_with_threads() };
            multiproc::__private::crash_at("hold:process.fork.begun");
            let conductor = std::thread::spawn(|| {
                while multiproc::__private::crash_holding() < 1 {
                    std::thread::yield_now();
                }
                multiproc::__private::crash_at("hold:process.fork.begun,hold:init.child_init.locked");
                let starter = std::thread::spawn(|| {
                    Process::new(square, 6).start_method(StartMethod::ForkServer).start().unwrap().join().unwrap()
                });
                while multiproc::__private::crash_holding() < 2 {
                    std::thread::yield_now();
                }
                // The fork goes on while the starter is held.
                multiproc::__private::crash_at("hold:init.child_init.locked");
                // A fork that waits for the lock (rather than copying it taken) gets it once
                // the starter goes on, a moment later.
                std::thread::sleep(std::time::Duration::from_millis(300));
                multiproc::__private::crash_disarm();
                assert_eq!(starter.join().unwrap(), 36);
            });
            let child = Process::new(square, 7).start_method(FORK).start().unwrap();
            conductor.join().unwrap();
            assert_eq!(
                join_unless_blocked(
                    child,
                    "the fork child blocked for ever on child_init's lock another thread held at the fork"
                ),
                49
            );
        }),
        // After the case that opts in: the child opts in itself.
        ("with_forks_beside_threads_a_child_forked_while_another_thread_of_a_child_panics_runs", || {
            // A child's thread panics, and is held in the panic hook with the child's name
            // locked, while the child forks: the grandchild takes that lock at boot.
            let ran = Process::new(fork_while_a_thread_panics, ()).start_method(FORK).start().unwrap().join().unwrap();
            assert!(ran, "the fork grandchild blocked for ever on the process name another thread held at the fork");
        }),
        // After the case that opts in; it opts in itself too.
        ("with_forks_beside_threads_a_child_forked_while_another_thread_holds_the_crash_points_lock_runs", || {
            // The crash points' own lock (tests only): a child forked while another thread
            // holds it, and armed (as its parent is), takes it at its first crash point. The
            // forking thread is held at its last crash point before the fork; a conductor
            // holds stdout (which the fork takes next), lets the fork go on, takes the crash
            // points' lock once the fork left its point, and only then lets go of stdout.
            // SAFETY: the other threads take no lock a child needs but the one under test.
            unsafe { multiproc::allow_fork_with_threads() };
            multiproc::__private::crash_at("hold:process.fork.begun");
            let conductor = std::thread::spawn(|| {
                while multiproc::__private::crash_holding() < 1 {
                    std::thread::yield_now();
                }
                let out = std::io::stdout().lock();
                // Still armed: the child inherits armed crash points.
                multiproc::__private::crash_at("nowhere.reached");
                while multiproc::__private::crash_holding() > 0 {
                    std::thread::yield_now();
                }
                multiproc::__private::crash_locked(move || {
                    drop(out);
                    // A fork that waits for the lock (rather than copying it taken) gets it
                    // a moment later.
                    std::thread::sleep(std::time::Duration::from_millis(300));
                });
            });
            let child = Process::new(square_past_a_crash_point, 8).start_method(FORK).start().unwrap();
            conductor.join().unwrap();
            multiproc::__private::crash_disarm();
            assert_eq!(
                join_unless_blocked(
                    child,
                    "the fork child blocked for ever on the crash points' lock another thread held at the fork"
                ),
                64
            );
        }),
        // After the case that opts in; it opts in itself too.
        #[cfg(feature = "cluster")]
        ("with_forks_beside_threads_a_cluster_pool_copied_by_fork_is_closed_in_the_child", || {
            let Some(redis) = common::redis::Redis::start(&[]) else { return };
            // SAFETY: the pool's driver thread takes no lock the child's copy takes (a
            // copy is refused before any).
            unsafe { multiproc::allow_fork_with_threads() };
            *CLUSTER_POOL_KEPT.lock().unwrap() =
                Some(Pool::builder().cluster(&redis.url).processes(1).build().unwrap());
            let child = Process::new(use_copied_cluster_pool, ()).start_method(FORK).start().unwrap();
            let refused = join_unless_blocked(child, "a fork child blocked for ever on its copy of a cluster pool");
            drop(CLUSTER_POOL_KEPT.lock().unwrap().take());
            assert!(refused, "a map on a copied cluster pool in a fork child is refused (Closed)");
        }),
        // After the case that opts in; it opts in itself too.
        #[cfg(feature = "cluster")]
        ("with_forks_beside_threads_a_cluster_result_copied_by_fork_fails_at_once_in_the_child", || {
            let Some(redis) = common::redis::Redis::start(&[]) else { return };
            // SAFETY: the pool's driver thread takes no lock the child's copy of the result
            // takes (its slot's lock is free between the driver's fills).
            unsafe { multiproc::allow_fork_with_threads() };
            let pool = Pool::builder().cluster(&redis.url).processes(1).build().unwrap();
            *CLUSTER_RESULT_KEPT.lock().unwrap() = Some(pool.apply_async(square, 3).unwrap());
            let child = Process::new(wait_on_copied_cluster_result, ()).start_method(FORK).start().unwrap();
            let waits =
                join_unless_blocked(child, "a fork child blocked for ever on its copy of a pending cluster result");
            let mut kept = CLUSTER_RESULT_KEPT.lock().unwrap().take().unwrap();
            let still_pending = !kept.ready();
            pool.terminate();
            let parents = kept.get_timeout(std::time::Duration::from_secs(60));
            assert_eq!(waits, (true, true, true, true), "the child's waits: wait_timeout, ready, poll, get (Taken)");
            assert!(still_pending, "the child's copy settled nothing of the parent's result");
            assert!(matches!(parents, Err(multiproc::ResultTimeoutError::Task(multiproc::TaskError::Terminated))));
        }),
        // After the case that opts in; it opts in itself too.
        #[cfg(feature = "cluster")]
        ("with_forks_beside_threads_a_cluster_imap_copied_by_fork_ends_at_once_in_the_child", || {
            let Some(redis) = common::redis::Redis::start(&[]) else { return };
            // SAFETY: as the cluster result's case above.
            unsafe { multiproc::allow_fork_with_threads() };
            let pool = Pool::builder().cluster(&redis.url).processes(1).build().unwrap();
            let mut imap = pool.imap(square, 0..).unwrap();
            // Feeds its first chunks (none comes back: no node).
            assert!(imap.next_timeout(std::time::Duration::from_millis(1)).is_err());
            *CLUSTER_IMAP_KEPT.lock().unwrap() = Some(imap);
            let child = Process::new(take_from_copied_cluster_imap, ()).start_method(FORK).start().unwrap();
            let (got, streamed) =
                join_unless_blocked(child, "a fork child blocked for ever on its copy of a cluster imap");
            drop(CLUSTER_IMAP_KEPT.lock().unwrap().take());
            pool.terminate();
            assert_eq!(got, ["Err(the pool was terminated before the task finished)"], "the child's iteration");
            assert!(streamed, "the child's stream ended");
        }),
        // After the case that opts in; it opts in itself too.
        ("with_forks_beside_threads_a_thread_pool_result_copied_by_fork_fails_at_once_in_the_child", || {
            // SAFETY: the pool's thread waits in the task, holding no lock the child takes.
            unsafe { multiproc::allow_fork_with_threads() };
            let pool = multiproc::ThreadPool::new(1).unwrap();
            let result = pool.apply_async(seven_once_told, ()).unwrap();
            *THREAD_RESULT_KEPT.lock().unwrap() = Some((pool, result));
            let child = Process::new(wait_on_copied_thread_result, ()).start_method(FORK).start().unwrap();
            let ended = join_unless_blocked(child, "a fork child blocked for ever on its copy of a thread pool result");
            THREAD_TASK_GO.store(true, std::sync::atomic::Ordering::SeqCst);
            let (pool, result) = THREAD_RESULT_KEPT.lock().unwrap().take().unwrap();
            let parents = result.get();
            drop(pool);
            assert!(ended, "a copied thread pool result's wait in a fork child is Terminated");
            assert_eq!(parents, Ok(7));
        }),
        // After the case that opts in; it opts in itself too.
        ("with_forks_beside_threads_a_thread_pool_copied_by_fork_is_closed_in_the_child", || {
            // SAFETY: the pool's idle threads wait on its channel; the child's copy of the
            // pool takes no lock they hold.
            unsafe { multiproc::allow_fork_with_threads() };
            *THREAD_POOL_KEPT.lock().unwrap() = Some(multiproc::ThreadPool::new(2).unwrap());
            let child = Process::new(use_copied_thread_pool, ()).start_method(FORK).start().unwrap();
            let refused = join_unless_blocked(child, "a fork child blocked for ever on its copy of a thread pool");
            let pool = THREAD_POOL_KEPT.lock().unwrap().take().unwrap();
            let mapped = pool.map(square, 0..3u64);
            drop(pool);
            assert!(refused, "a map on a copied thread pool in a fork child is refused (Closed)");
            assert_eq!(mapped.unwrap(), [0, 1, 4]);
        }),
        // After the case that opts in; it opts in itself too.
        ("with_forks_beside_threads_a_busy_thread_pool_copied_by_fork_is_closed_and_dropped_in_the_child", || {
            // SAFETY: the child takes no lock of the pool's threads: its copy of the pool
            // touches nothing its threads share (their channel's lock, held at the fork by a
            // thread that is not in the child, is the point of the case).
            unsafe { multiproc::allow_fork_with_threads() };
            let pool = Box::into_raw(Box::new(multiproc::ThreadPool::new(2).unwrap()));
            BUSY_THREAD_POOL.store(pool, std::sync::atomic::Ordering::Release);
            // SAFETY: freed below, after the thread that uses it ends.
            let used = unsafe { &*pool };
            let stop = std::sync::atomic::AtomicBool::new(false);
            let blocked = std::thread::scope(|s| {
                s.spawn(|| {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        assert_eq!(used.apply(square, 3).unwrap(), 9);
                    }
                });
                // Each fork lands anywhere in the threads' round of waking and waiting.
                let blocked = (0..200).find(|i| {
                    let close = i % 2 == 0;
                    let child = Process::new(drop_copied_busy_thread_pool, close).start_method(FORK).start().unwrap();
                    let pid = child.pid();
                    match child.join_timeout(std::time::Duration::from_secs(30)) {
                        Ok(()) => false,
                        Err(multiproc::JoinTimeoutError::Timeout(child)) => {
                            eprintln!("child {pid} (close: {close}) blocked: {:?}", tasks_described(pid));
                            child.kill().unwrap();
                            let _ = child.join();
                            true
                        }
                        Err(e) => panic!("{e}"),
                    }
                });
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                blocked
            });
            BUSY_THREAD_POOL.store(std::ptr::null_mut(), std::sync::atomic::Ordering::Release);
            // SAFETY: made by `Box::into_raw` above; the thread that used it has ended.
            drop(unsafe { Box::from_raw(pool) });
            assert_eq!(blocked, None, "fork child number N blocked for ever on its copy of a busy thread pool");
        }),
        // After the case that opts in; it opts in itself too.
        ("with_forks_beside_threads_a_barrier_wait_copied_by_fork_and_dropped_by_the_child_breaks_nothing", || {
            // SAFETY: the only other thread is multiproc's waker thread, which the child's
            // drop of its copy does not wait for.
            unsafe { multiproc::allow_fork_with_threads() };
            let barrier: &'static Barrier = leaked(Barrier::new(2).unwrap());
            let mut wait = Box::pin(barrier.wait_async());
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(wait.as_mut().poll(&mut cx).is_pending(), "one party of two arrived");
            BARRIER_WAITING.set(Some(wait));
            Process::new(drop_copied_barrier_wait, ()).start_method(FORK).start().unwrap().join().unwrap();
            let broken = barrier.is_broken();
            let other = barrier.wait_timeout(std::time::Duration::from_secs(20));
            let mut wait = BARRIER_WAITING.take().unwrap();
            let ours = loop {
                if let std::task::Poll::Ready(r) = wait.as_mut().poll(&mut cx) {
                    break r;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            };
            assert!(!broken, "a fork child's drop of its copy of a pending wait broke the parent's barrier");
            assert!(other.is_ok(), "{other:?}");
            assert!(ours.is_ok(), "{ours:?}");
        }),
        // After the case that opts in; it opts in itself too.
        #[cfg(feature = "remote")]
        ("with_forks_beside_threads_a_remote_manager_connection_copied_by_fork_stays_the_parents", || {
            // SAFETY: the connection's reader thread takes no lock the child takes but its
            // copy of the replies' lock, which a refused call never reaches.
            unsafe { multiproc::allow_fork_with_threads() };
            let server = Manager::builder().address("127.0.0.1:0").authkey(b"k").start().unwrap();
            let remote = Manager::connect(server.address().unwrap(), b"k").unwrap();
            let d = remote.dict::<String, u64>().unwrap();
            d.insert("kept".into(), 7).unwrap();
            *REMOTE_KEPT.lock().unwrap() = Some((remote, d));
            let mut refused = Vec::new();
            let mut after = Vec::new();
            for call in [false, true] {
                let child = Process::new(use_copied_remote_proxy, call).start_method(FORK).start().unwrap();
                refused.push(join_unless_blocked(child, "a fork child blocked for ever on its copy of a remote proxy"));
                let kept = REMOTE_KEPT.lock().unwrap();
                after.push(kept.as_ref().unwrap().1.get("kept").map_err(|e| e.to_string()));
            }
            drop(REMOTE_KEPT.lock().unwrap().take());
            server.shutdown().unwrap();
            assert_eq!(
                after,
                [Ok(Some(7)), Ok(Some(7))],
                "the parent's proxy after a fork child dropped, then used, its copy"
            );
            assert_eq!(refused, [true, true], "a fork child's call on its copy of the parent's connection");
        }),
        // After the case that opts in; it opts in itself too.
        (
            "with_forks_beside_threads_a_pool_copied_by_fork_neither_takes_the_parents_results_nor_stops_its_workers",
            || {
                // SAFETY: the pool's thread takes no lock the child needs (the child touches
                // the pool's books only through its own copy, which no thread of its holds).
                unsafe { multiproc::allow_fork_with_threads() };
                let pool = Pool::new(2).unwrap();
                let pids = pool.pids();
                let slow = pool.apply_async(square_after_a_moment, 7).unwrap();
                *POOL_KEPT.lock().unwrap() = Some((pool, slow));
                let child = Process::new(use_copied_pool, ()).start_method(FORK).start().unwrap();
                let (got, mapped) = join_unless_blocked(child, "a fork child blocked for ever on its copy of a pool");
                let (pool, mut slow) = POOL_KEPT.lock().unwrap().take().unwrap();
                let parents = slow.get_timeout(std::time::Duration::from_secs(20));
                let pids_after = pool.pids();
                let map_after = pool.map(square, 0..3u64);
                drop(pool);
                assert!(matches!(parents, Ok(49)), "the parent's result (a fork child took it?): {parents:?}");
                assert_eq!(got, None, "a copied result's wait in a fork child is Terminated");
                assert_eq!(mapped, None, "a map on a copied pool in a fork child is Closed");
                assert_eq!(pids_after, pids, "a fork child's drop of its copy stopped the parent's workers");
                assert_eq!(map_after.unwrap(), [0, 1, 4]);
            },
        ),
        // After the case that opts in; it opts in itself too.
        (
            "with_forks_beside_threads_a_claims_map_copied_by_fork_and_ended_in_the_child_leaves_the_parents_items",
            || {
                // SAFETY: as the case above (the child touches the pool's books only through
                // its own copy).
                unsafe { multiproc::allow_fork_with_threads() };
                let pool = Pool::new(2).unwrap();
                let options = multiproc::MapOptions::new().chunksize(1);
                let pending = pool.map_async_with(square_after_a_moment, 0..12u64, options).unwrap();
                *CLAIMS_MAP_KEPT.lock().unwrap() = Some((pool, pending));
                let child = Process::new(end_copied_claims_map, ()).start_method(FORK).start().unwrap();
                let ended = join_unless_blocked(child, "a fork child blocked for ever on its copy of a map");
                let (pool, mut pending) = CLAIMS_MAP_KEPT.lock().unwrap().take().unwrap();
                let parents = pending.get_timeout(std::time::Duration::from_secs(60));
                let map_after = pool.map(square, 0..3u64);
                drop(pool);
                assert!(ended, "a copied map's wait in a fork child is Terminated");
                assert_eq!(
                    parents.map_err(|e| e.to_string()),
                    Ok((0..12u64).map(|x| x * x).collect::<Vec<_>>()),
                    "the parent's map after a fork child ended its copy"
                );
                assert_eq!(map_after.unwrap(), [0, 1, 4]);
            },
        ),
        // After the case that opts in; it opts in itself too.
        (
            "with_forks_beside_threads_a_child_forked_while_another_thread_makes_a_block_of_its_list_lists_its_own",
            || {
                // A thread of this process makes a new block of its list of holds (the heap's
                // directory of lists locked, the block recorded in the heap's header, not yet
                // linked) and is held there while the main thread forks. The child must neither
                // copy the half-made block as its own nor wait for ever on the directory: the
                // fork waits for this process's list (its lock), and the child's list grows after.
                // SAFETY: the other threads take no lock a child needs but the one under test.
                unsafe { multiproc::allow_fork_with_threads() };
                multiproc::__private::crash_at("hold:holds.block.written");
                let maker = std::thread::spawn(|| {
                    let made = past_the_spares();
                    let held: Vec<Value<u64>> = (0..made).map(|i| Value::new(i).unwrap()).collect();
                    held.iter().map(|v| v.get()).sum::<u64>()
                });
                while multiproc::__private::crash_holding() < 1 {
                    std::thread::yield_now();
                }
                let conductor = disarm_in_a_moment();
                let child = Process::new(make_past_the_spares, ()).start_method(FORK).start().unwrap();
                conductor.join().unwrap();
                let made = maker.join().unwrap();
                assert!(made > 0);
                let (listed, lost) = join_unless_blocked(
                    child,
                    "the fork child blocked for ever on the directory of lists another thread was growing at the fork",
                );
                assert!(listed > 0);
                assert_eq!(lost, 0, "the fork child found bytes of the lists' blocks lost");
                assert_eq!(multiproc::__private::heap_books_lost(), 0, "bytes of the lists' blocks lost");
            },
        ),
        ("a_fork_servers_own_child_stopped_before_its_frame_is_killed_inner", || {
            if std::env::var_os(SERVERS_STOPPED_CHILD_INNER).is_none() {
                return;
            }
            // Every socket child of the family stops before it reads its boot frame (armed
            // for the whole family). A socketless one does not: it starts the fork server,
            // whose main this process is then.
            assert_eq!(Process::new(square, 3).start_method(FORK_SERVER).start().unwrap().join().unwrap(), 9);
            let server = multiproc::__private::fork_server_pid().expect("this process started the fork server");
            let before = multiproc::__private::heap_in_use();
            {
                let queue = Queue::<u32>::new().unwrap();
                // A fork child never reads a boot frame: it runs, and asks for the server's own
                // child (it is not the server's main).
                let asker = Process::new(start_long_named_on_a_socket, (queue.clone(), server))
                    .start_method(FORK)
                    .start()
                    .unwrap();
                let (error, left) = asker.join().unwrap();
                assert!(error.contains("stopped"), "{error}");
                assert!(left.is_empty(), "children of the fork server left stopped or unreaped: {left:?}");
                assert!(queue.get_timeout(std::time::Duration::from_millis(100)).is_err(), "the stopped child ran");
            }
            // The argument's handles and blob, and the boot message's, given back.
            let back = common::eventually(std::time::Duration::from_secs(10), || {
                multiproc::__private::heap_in_use() <= before
            });
            assert!(back, "heap in use: {before} bytes before, {} after", multiproc::__private::heap_in_use());
            println!("INNER-DONE");
        }),
        // The fork server's own child (`Forked`: asked for by a process other than the
        // server's main), stopped before it reads a boot frame longer than its socket's
        // buffer (a 1 MB name), fails its start and is killed through its pidfd, and the
        // server reaps it (review49 L6: the process tests' children were the requester's own).
        ("a_fork_servers_own_child_stopped_before_its_frame_is_killed", || {
            common::run_inner_test_with(
                "a_fork_servers_own_child_stopped_before_its_frame_is_killed_inner",
                &[(SERVERS_STOPPED_CHILD_INNER, "1"), ("MULTIPROC_CRASH_AT", "stop:process.boot.before_frame")],
            );
        }),
        ("a_fork_child_started_in_a_decoding_counts_its_own_handles", || {
            // review55 L4: the child copied its parent thread's codec state. Its argument's
            // decoding, nested in the copied one, failed "received already"; and with the
            // copied entries alone, its liveness answers left the parent's kept handle out
            // of the child's own count: a get beside a clone of the queue (this process's
            // second handle) answered Disconnected.
            let before = multiproc::__private::heap_in_use();
            let carrier = Queue::<ForksInDecoding>::new().unwrap();
            let (queue, go) = (Queue::<u64>::new().unwrap(), Event::new().unwrap());
            carrier.put(ForksInDecoding { sent: Some((queue.clone(), go.clone())), child: None }).unwrap();
            let child = carrier.get().unwrap().child.expect("started in the decoding");
            drop((carrier, queue));
            go.set();
            drop(go);
            assert_eq!(child.join().unwrap(), "Err(Timeout)", "the clone is another handle");
            assert_eq!(multiproc::__private::heap_in_use(), before);
        }),
        ("a_tracker_started_before_init_and_killed_with_its_keeper_is_replaced_at_main_s_end", || {
            // review88 L5: a tracker started lazily (a named segment made before `init()`)
            // kept no spare, so `init()`'s exit hook could not replace it: killed with its
            // keeper, the segment outlived the family. Here, in a binary with no
            // `test_support!`, this one, whose `main` runs the inner part before `init()`.
            use std::os::unix::process::CommandExt;
            let prefix = format!("mp-test-lazy-tracker-{}-", std::process::id());
            let x = format!("{prefix}x");
            let mut inner = std::process::Command::new(std::env::current_exe().unwrap());
            inner.env("MP_TEST_LAZY_TRACKER", &prefix);
            // SAFETY (test): `prctl` is async-signal-safe and touches nothing of the parent's.
            unsafe {
                inner.pre_exec(|| match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                });
            }
            // Its end waits for a replacement's, which holds its stderr.
            let out = inner.output().unwrap();
            let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            let path = std::path::Path::new("/dev/shm").join(&x);
            let gone = common::eventually(std::time::Duration::from_secs(20), || !path.exists());
            let _ = std::fs::remove_file(&path);
            assert!(out.status.success() && stdout.contains("INNER-DONE"), "{stdout}\n{stderr}");
            assert!(gone, "{x} outlived its family, whose tracker started before init() was killed: {stderr}");
        }),
    ]
}

const SERVERS_STOPPED_CHILD_INNER: &str = "MULTIPROC_TEST_FORK_SERVERS_STOPPED_CHILD_INNER";

/// Puts 1 into `queue`, and returns its padding's length.
fn put_one_padded((queue, padding): (Queue<u32>, Vec<u8>)) -> usize {
    queue.put(1).unwrap();
    padding.len()
}

/// Starts a fork-server child named 1 MB whose argument holds a queue and a 64 KB blob (on a
/// boot socket): its start's error ("" if it started), and the children of the fork server
/// (pid `server`) still stopped or unreaped 10 s later at most, each described
/// ([`described`]). Looked at here: once this process ends, its children die with it. The
/// list is the one the last look found, not read again after the wait (which could name a
/// child the wait never saw).
fn start_long_named_on_a_socket((queue, server): (Queue<u32>, u32)) -> (String, Vec<String>) {
    let started = Process::new(put_one_padded, (queue, vec![7u8; 64 * 1024]))
        .start_method(FORK_SERVER)
        .name("n".repeat(1 << 20))
        .start();
    let error = started.err().map(|e| e.to_string()).unwrap_or_default();
    let mut left = Vec::new();
    common::eventually(std::time::Duration::from_secs(10), || {
        left = stopped_or_zombie_children_of(server);
        left.is_empty()
    });
    (error, left.into_iter().map(|pid| described(pid, server)).collect())
}

/// The children of process `pid` that are stopped (`T`, `t`) or zombies, found by their
/// parent in `/proc/*/stat` (every kernel has it: `/proc/<pid>/task/*/children` needs
/// `CONFIG_PROC_CHILDREN`, and without it this test checked nothing, review54 L5).
fn stopped_or_zombie_children_of(pid: u32) -> Vec<u32> {
    let entries = std::fs::read_dir("/proc").expect("/proc is mounted");
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            state_and_parent(child)
                .is_some_and(|(state, parent)| parent == pid && matches!(state.as_str(), "T" | "t" | "Z"))
        })
        .collect()
}

/// Process `pid`'s state (`R`, `S`, `T`, `Z`, ...) and its parent's pid, from
/// `/proc/<pid>/stat` (after the name, which may hold anything); `None` once it is gone.
fn state_and_parent(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(") ")?.1.split_whitespace();
    Some((fields.next()?.to_owned(), fields.next()?.parse().ok()?))
}

/// Child `pid` of the fork server `server` left behind, and the server, each with its state
/// and where it waits in the kernel: a child still `T` was never killed; a `Z` was killed
/// and not reaped, and the server's own state says why (stopped, or waiting elsewhere than
/// in its poll).
fn described(pid: u32, server: u32) -> String {
    let look = |pid: u32| {
        let state = state_and_parent(pid).map_or_else(|| "gone".to_owned(), |(state, _)| state);
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        format!("{pid} {state} in {wchan:?}")
    };
    format!("{} (the server: {})", look(pid), look(server))
}

/// Each thread of process `pid`: its state, where it waits in the kernel, the system call
/// it is in (number and arguments: a futex's address names the lock) and the kernel stack,
/// for a child that never ended (read before it is killed).
fn tasks_described(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![format!("{pid} gone")];
    };
    tasks
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .map(|tid| {
            let read =
                |what: &str| std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/{what}")).unwrap_or_default();
            let state = state_and_parent(tid).map_or_else(|| "gone".to_owned(), |(state, _)| state);
            let stack: Vec<String> = read("stack").lines().take(6).map(str::to_owned).collect();
            format!("{tid} {state} in {:?}, syscall {:?}, stack {stack:?}", read("wchan"), read("syscall").trim())
        })
        .collect()
}

/// More objects than the spare blocks of the holds lists can list: a list that lists them
/// makes a new block.
fn past_the_spares() -> u64 {
    (multiproc::__private::heap_books() / 4096 + 2) * 127
}

/// Lists more objects than the spares can (its list makes new blocks); returns their sum
/// and the bytes of the lists' blocks lost meanwhile.
fn make_past_the_spares(_: ()) -> (u64, u64) {
    let held: Vec<Value<u64>> = (0..past_the_spares()).map(|i| Value::new(i).unwrap()).collect();
    let sum = held.iter().map(|v| v.get()).sum::<u64>();
    (sum, multiproc::__private::heap_books_lost())
}

/// Takes the crash points' lock (as any crash point reached while armed does), then squares.
fn square_past_a_crash_point(x: u64) -> u64 {
    multiproc::__private::crash_disarm();
    x * x
}

/// A thread that disarms the crash points a moment later: a fork that waits for a held lock
/// (rather than copying it taken) gets it once its holder goes on.
fn disarm_in_a_moment() -> std::thread::JoinHandle<()> {
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_millis(300));
        multiproc::__private::crash_disarm();
    })
}

/// Joins a fork child that must not block (30 s at most): its result, or a panic saying
/// `blocked` (the child killed and reaped first).
fn join_unless_blocked<R: serde::de::DeserializeOwned>(child: multiproc::ProcessHandle<R>, blocked: &str) -> R {
    match child.join_timeout(std::time::Duration::from_secs(30)) {
        Ok(v) => v,
        Err(multiproc::JoinTimeoutError::Timeout(child)) => {
            let pid = child.pid();
            let tasks = tasks_described(pid);
            child.kill().unwrap();
            let _ = child.join();
            panic!("{blocked}: child {pid}, its threads: {tasks:?}");
        }
        Err(e) => panic!("{e}"),
    }
}

/// Cases of known defects, run with `--ignored` (as libtest's ignored tests).
fn ignored_cases() -> Vec<(&'static str, &'static str, fn())> {
    Vec::new()
}

fn main() {
    if let Some(prefix) = std::env::var_os("MP_TEST_LAZY_TRACKER") {
        return lazy_tracker_inner(&prefix.into_string().unwrap());
    }
    multiproc::init();
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let only_ignored = std::env::args().any(|a| a == "--ignored");
    let include_ignored = only_ignored || std::env::args().any(|a| a == "--include-ignored");
    let mut ran = 0;
    let mut cases = if only_ignored { Vec::new() } else { cases() };
    for (name, reason, case) in ignored_cases() {
        if include_ignored {
            cases.push((name, case));
        } else if filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())) {
            println!("test {name} ... ignored, {reason}");
        }
    }
    for (name, case) in cases {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        // SAFETY: `alarm` only arms a timer; SIGALRM's default action ends the process.
        unsafe { libc::alarm(60) };
        print!("test {name} ... ");
        case();
        println!("ok");
        ran += 1;
    }
    // SAFETY: as above; 0 disarms it.
    unsafe { libc::alarm(0) };
    println!("\ntest result: ok. {ran} passed");
}

/// Run only by the case below, as this binary's whole `main`: a family whose tracker was
/// started by a named segment (the outer case's prefix and `x`) made before `init()`, then
/// killed with its keeper (their process group); the main process then ends normally.
fn lazy_tracker_inner(prefix: &str) {
    let x = multiproc::SharedMemory::builder().name(format!("{prefix}x")).size(4096).create().unwrap();
    std::mem::forget(x);
    multiproc::init();
    let tracker = tracker_of(std::process::id());
    let keeper = tracker_of(tracker);
    // SAFETY (test): kill(2) of this family's own tracker's process group (it and its keeper).
    assert_eq!(unsafe { libc::kill(-(tracker as i32), libc::SIGKILL) }, 0);
    assert!(common::eventually(std::time::Duration::from_secs(10), || !common::pid_running(tracker)
        && !common::pid_running(keeper)));
    println!("INNER-DONE");
}

/// The running child of `parent` in the tracker's role (the family's tracker, or a
/// tracker's keeper), looked for until found.
fn tracker_of(parent: u32) -> u32 {
    let find = || {
        std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).find(
            |&pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
                after.split_whitespace().nth(1) == Some(&*parent.to_string())
                    && common::pid_running(pid)
                    && std::fs::read(format!("/proc/{pid}/environ"))
                        .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var.starts_with(b"MULTIPROC_BOOT=tracker:")))
            },
        )
    };
    let mut found = None;
    assert!(common::eventually(std::time::Duration::from_secs(10), || {
        found = find();
        found.is_some()
    }));
    found.unwrap()
}

fn never_runs_after_a_panic(_: common::refused::PanicsAfterFirst) {
    unreachable!("the argument's decoding panics");
}

/// A pipe whose ends close on exec (as every descriptor Rust's std makes), the read end
/// non-blocking.
fn pipe_cloexec() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY (test): `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY (test): our own descriptor.
    unsafe { libc::fcntl(fds[0], libc::F_SETFL, libc::O_NONBLOCK) };
    (fds[0], fds[1])
}

/// What `/proc/self/fd/FD` names (`pipe:[INODE]`).
fn pipe_inode(fd: i32) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap().display().to_string()
}

/// Whether process `pid` holds a descriptor naming `what`.
fn holds(pid: u32, what: &str) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    dir.filter_map(|e| e.ok()).any(|e| std::fs::read_link(e.path()).is_ok_and(|p| p.display().to_string() == what))
}

/// Whether the non-blocking pipe end `fd` reads end of file (nothing is ever written).
fn at_eof(fd: i32) -> bool {
    let mut byte = 0u8;
    // SAFETY (test): one byte into `byte`.
    unsafe { libc::read(fd, (&raw mut byte).cast(), 1) == 0 }
}
