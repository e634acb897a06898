//! `StartMethod::Fork` from a single-threaded process, the only place where a fork needs
//! no promise: this binary has its own `main` (`harness = false`), so no test harness
//! thread runs beside the forks. The other test files start their children with the fork
//! server and `Spawn` from libtest's threads, where `Fork` is refused.
//!
//! No watchdog thread either: `alarm` ends the process (and by the parent-death signal,
//! its children) if a case hangs.

mod common;

use std::sync::Mutex;

use multiproc::{
    Barrier, Error, Event, JoinError, Manager, Pool, Process, Queue, RawArray, StartMethod, Value, ValueGuard,
};

const FORK: StartMethod = StartMethod::Fork;

fn square(x: u64) -> u64 {
    x * x
}

fn explode(message: String) {
    panic!("{message}");
}

fn exit_with(code: i32) {
    std::process::exit(code);
}

fn text_of(len: usize) -> String {
    "y".repeat(len)
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

fn cases() -> Vec<(&'static str, fn())> {
    vec![
        ("an_outcome_of_any_length_comes_back_whole_and_leaks_nothing", || {
            // A child without a boot socket leaves its outcome in a report room of the heap
            // (480 bytes inline), a longer one in a block it allocates (a spill).
            // First of the cases: this process holds nothing yet, so its children have no
            // boot socket (one socket fewer than this process has).
            let sockets = Process::new(sockets, ()).start_method(FORK).start().unwrap().join().unwrap();
            assert_eq!(sockets, self::sockets(()), "a child without a boot socket");
            match Process::new(recurse, 0).start_method(FORK).start().unwrap().join() {
                Err(JoinError::StackOverflow { .. }) => {}
                other => panic!("{other:?}"),
            }
            let before = multiproc::__private::heap_in_use();
            for len in [0, 1, 400, 470, 471, 480, 481, 4000, 16 * 1024, 100_000] {
                let child = Process::new(text_of, len).start_method(FORK).start().unwrap();
                assert_eq!(child.join().unwrap(), "y".repeat(len), "len {len}");
                match Process::new(panic_of, len).start_method(FORK).start().unwrap().join() {
                    Err(JoinError::Panicked(info)) => assert_eq!(info.message, "z".repeat(len), "len {len}"),
                    other => panic!("len {len}: {other:?}"),
                }
                assert_eq!(multiproc::__private::heap_in_use(), before, "len {len}");
            }
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
        ("a_fork_pool_that_must_replace_its_workers_is_refused_when_built", || {
            // Found by the chaos soak (examples/chaos.rs): the pool forks a replacement on
            // its own thread, beside others, where `Fork` is refused; a pool built so (its
            // workers retire, or are killed past a timeout) failed every task after the
            // first retirement as a panic ("cannot start a worker: refusing Fork ...").
            let builders = [
                Pool::builder().processes(1).start_method(FORK).max_tasks_per_child(1),
                Pool::builder().processes(1).start_method(FORK).timeout(std::time::Duration::from_secs(60)),
            ];
            for builder in builders {
                match builder.build() {
                    Err(e) => assert!(matches!(e, Error::Pool(multiproc::PoolError::ForkReplacements)), "{e}"),
                    Ok(pool) => {
                        let out = pool.map_with(square, 0..3u64, multiproc::MapOptions::new().chunksize(1));
                        panic!("built; its map gave {out:?}");
                    }
                }
            }
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
            // The child inherits the armed failure: it cannot copy its boot socket for its
            // note, so it runs without one and its receipts say what it took; this process
            // reads them at the reaping and gives nothing back twice (a copy of the queue
            // waits in a queue of queues meanwhile).
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
    ]
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
            child.kill().unwrap();
            let _ = child.join();
            panic!("{blocked}");
        }
        Err(e) => panic!("{e}"),
    }
}

/// Cases of known defects, run with `--ignored` (as libtest's ignored tests).
fn ignored_cases() -> Vec<(&'static str, &'static str, fn())> {
    Vec::new()
}

fn main() {
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

fn never_runs_after_a_panic(_: common::refused::PanicsAfterFirst) {
    unreachable!("the argument's decoding panics");
}
