//! A process's life from a user's chair (audp61): children reaped by somebody else,
//! descriptors a child must not inherit, signal masks, odd names.

mod common;

use std::time::Duration;

use common::watchdog;
use multiproc::{Process, StartMethod};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(60);

fn square(x: u64) -> u64 {
    x * x
}

fn fork_handlers_registered(_: ()) -> bool {
    multiproc::__private::fork_handlers_registered()
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Every descriptor of this process open without `FD_CLOEXEC` above stderr, with what
/// it names: what a program it `exec`s would inherit.
fn inheritable_descriptors(_: ()) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if fd <= 2 {
            continue;
        }
        // SAFETY (test): F_GETFD only reads the descriptor's flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            let target = std::fs::read_link(entry.path()).map(|p| p.display().to_string()).unwrap_or_default();
            found.push(format!("{fd} -> {target}"));
        }
    }
    found
}

fn start_then_list(sibling: StartMethod) -> Vec<String> {
    // A sibling runs meanwhile: its boot socket and pidfd are this process's too.
    let sibling = Process::new(nap, 200).start_method(sibling).start().unwrap();
    let listed = inheritable_descriptors(());
    sibling.join().unwrap();
    listed
}

/// A program a child `exec`s (`std::process::Command`) inherits none of the family's
/// descriptors (the heap's memfd, boot sockets, pidfds, the fork server's socket), nor
/// does one the main process runs: only what the program was given or opened without
/// `O_CLOEXEC` crosses, as in Python.
#[test]
fn no_descriptor_of_ours_crosses_an_exec() {
    let _w = watchdog(LIMIT);
    multiproc::init();
    let child = Process::new(nap, 300).start().unwrap();
    // What this test process was given by whoever ran it, and nothing of ours.
    let given = inheritable_descriptors(());
    let ours = ["memfd:", "socket:", "anon_inode:", "/dev/shm"];
    assert!(!given.iter().any(|fd| ours.iter().any(|o| fd.contains(o))), "{given:?}");
    child.join().unwrap();
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        for sibling in [StartMethod::ForkServer, StartMethod::Spawn] {
            let listed = Process::new(start_then_list, sibling).start_method(method).start().unwrap().join().unwrap();
            assert_eq!(listed, given, "{method:?} child, {sibling:?} sibling");
        }
    }
}

fn exit_with(code: i32) {
    std::process::exit(code);
}

/// Reaps `child` as a program's own `waitpid` would, behind the handle's back; returns
/// the wait status it took.
fn reap_behind_its_back<R>(child: &multiproc::ProcessHandle<R>) -> i32 {
    let mut status = 0;
    // SAFETY (test): a waitpid of this process's own child into a live local.
    let reaped = unsafe { libc::waitpid(child.pid() as libc::pid_t, &mut status, 0) };
    assert_eq!(reaped, child.pid() as libc::pid_t);
    status
}

/// A child reaped by the program itself (a `waitpid` of its pid, or of any child) has
/// ended for its handle too, with the status the kernel kept: before (audp61), every look
/// found it running and its join spun for ever (the watchdog aborted the test). Inner: in
/// the test binary's own process, another test's `start()` reaps every ended child of the
/// process (as Python's does), this test's among them, before its own `waitpid` (ci97, at
/// four test threads: `waitpid` returned -1).
#[test]
fn a_child_reaped_by_the_program_itself_has_ended_for_its_handle() {
    let _w = watchdog(LIMIT);
    common::run_inner_test("a_child_reaped_by_the_program_itself_has_ended_for_its_handle_inner", REAPS_ITSELF);
}

const REAPS_ITSELF: &str = "MULTIPROC_TEST_REAPS_ITSELF";

#[test]
fn a_child_reaped_by_the_program_itself_has_ended_for_its_handle_inner() {
    if std::env::var_os(REAPS_ITSELF).is_none() {
        return;
    }
    let _w = watchdog(LIMIT);
    multiproc::init();
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        let child = Process::new(square, 7).start_method(method).start().unwrap();
        assert_eq!(reap_behind_its_back(&child), 0);
        assert!(!child.is_alive(), "{method:?}");
        assert_eq!(child.exitcode(), Some(0), "{method:?}");
        assert_eq!(child.join().unwrap(), 49, "{method:?}");

        let child = Process::new(exit_with, 3).start_method(method).start().unwrap();
        reap_behind_its_back(&child);
        assert_eq!(child.wait(), 3, "{method:?}");

        let child = Process::new(nap, 60_000).start_method(method).start().unwrap();
        child.kill().unwrap();
        reap_behind_its_back(&child);
        assert_eq!(child.wait_timeout(LIMIT), Some(-libc::SIGKILL), "{method:?}");
        // Nothing is signalled any more: the pidfd names the dead child, never its pid's
        // next owner.
        child.terminate().unwrap_or_default();
    }
    println!("INNER-DONE");
}

const NO_EXIT_INFO: &str = "MULTIPROC_TEST_NO_EXIT_INFO";

#[test]
fn a_child_reaped_by_the_program_on_a_kernel_keeping_no_status_inner() {
    if std::env::var_os(NO_EXIT_INFO).is_none() {
        return;
    }
    let _w = watchdog(LIMIT);
    multiproc::init();
    multiproc::__private::crash_at("fail:process.reap.no_exit_info");
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        let child = Process::new(square, 7).start_method(method).start().unwrap();
        reap_behind_its_back(&child);
        assert_eq!(child.exitcode(), Some(0), "{method:?}");
        assert_eq!(child.join().unwrap(), 49, "{method:?}");
        let child = Process::new(explode, ()).start_method(method).start().unwrap();
        reap_behind_its_back(&child);
        assert!(matches!(child.join(), Err(multiproc::JoinError::Panicked(_))), "{method:?}");
        // Nothing reported, nothing kept: taken for killed.
        let child = Process::new(exit_with, 3).start_method(method).start().unwrap();
        reap_behind_its_back(&child);
        assert_eq!(child.wait(), -libc::SIGKILL, "{method:?}");
    }
    multiproc::__private::crash_disarm();
    println!("INNER-DONE");
}

/// Where the kernel keeps no status of a child reaped by somebody else (Linux before
/// 6.15), it ended as its outcome says: `exit(0)` after a return, `exit(1)` after a
/// failure; killed when it reported nothing.
#[test]
fn a_child_reaped_by_the_program_on_a_kernel_keeping_no_status_ended_as_it_reported() {
    let _w = watchdog(LIMIT);
    common::run_inner_test("a_child_reaped_by_the_program_on_a_kernel_keeping_no_status_inner", NO_EXIT_INFO);
}

fn explode(_: ()) {
    panic!("boom");
}

fn start_a_square(method: StartMethod) -> u64 {
    Process::new(square, 5).start_method(method).start().unwrap().join().unwrap()
}

const IGNORES_SIGCHLD: &str = "MULTIPROC_TEST_IGNORES_SIGCHLD";

#[test]
fn a_program_that_ignores_sigchld_inner() {
    if std::env::var_os(IGNORES_SIGCHLD).is_none() {
        return;
    }
    let _w = watchdog(LIMIT);
    multiproc::init();
    // SAFETY (test): SIG_IGN installs no handler; the kernel now reaps every child at its end.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        let child = Process::new(square, 7).start_method(method).start().unwrap();
        assert_eq!(child.join().unwrap(), 49, "{method:?}");
        let child = Process::new(exit_with, 3).start_method(method).start().unwrap();
        assert_eq!(child.wait(), 3, "{method:?}");
        let child = Process::new(nap, 60_000).start_method(method).start().unwrap();
        child.terminate().unwrap();
        assert_eq!(child.wait_timeout(LIMIT), Some(-libc::SIGTERM), "{method:?}");
        assert!(multiproc::active_children().is_empty(), "{method:?}");
        // Grandchildren: the child's own `SIGCHLD` is the default again? Python's is inherited.
        assert_eq!(Process::new(start_a_square, method).start_method(method).start().unwrap().join().unwrap(), 25);
    }
    let pool = multiproc::Pool::new(2).unwrap();
    assert_eq!(pool.map(square, 0..10u64).unwrap(), (0..10u64).map(|x| x * x).collect::<Vec<_>>());
    pool.close();
    pool.join().unwrap();
    println!("INNER-DONE");
}

/// A program that ignores `SIGCHLD` (the kernel reaps its children at their end, and no
/// `waitid` finds them) joins its children, learns how they ended, and runs a pool.
#[test]
fn a_program_that_ignores_sigchld_joins_its_children() {
    let _w = watchdog(LIMIT);
    common::run_inner_test("a_program_that_ignores_sigchld_inner", IGNORES_SIGCHLD);
}

fn own_name(_: ()) -> (String, Option<String>) {
    (multiproc::current_process().name().to_string(), multiproc::parent_process().map(|p| p.name().to_string()))
}

fn own_name_below(method: StartMethod) -> (String, Option<String>) {
    Process::new(own_name, ()).name("in\0ner").start_method(method).start().unwrap().join().unwrap()
}

/// Names are the user's strings whatever they hold (a NUL, a non-ASCII character, none
/// at all), in the child and as its children's parent, as in Python.
#[test]
fn a_name_with_a_nul_or_none_at_all_is_the_childs_whole_name() {
    let _w = watchdog(LIMIT);
    multiproc::init();
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        let named = |name: &str| Process::new(own_name, ()).name(name).start_method(method).start().unwrap().join();
        assert_eq!(named("a\0b\u{1F600}").unwrap(), ("a\0b\u{1F600}".into(), Some("MainProcess".into())));
        assert_eq!(named("").unwrap(), (String::new(), Some("MainProcess".into())));
        let below = Process::new(own_name_below, method).name("out\0er").start_method(method).start().unwrap();
        assert_eq!(below.join().unwrap(), ("in\0ner".into(), Some("out\0er".into())));
    }
}

const SIGCHLD_HANDLER: &str = "MULTIPROC_TEST_SIGCHLD_HANDLER";

extern "C" fn on_sigchld(_: libc::c_int) {}

#[test]
fn a_program_with_a_sigchld_handler_inner() {
    if std::env::var_os(SIGCHLD_HANDLER).is_none() {
        return;
    }
    let _w = watchdog(LIMIT);
    multiproc::init();
    // SAFETY (test): the handler does nothing; no SA_RESTART, so every child's end
    // interrupts whatever system call a thread of ours is in.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigchld as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        action.sa_flags = 0;
        libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut());
    }
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(move || {
                    for i in 0..40u64 {
                        let child = Process::new(square, i).start_method(method).start();
                        let child = child.unwrap_or_else(|e| panic!("{method:?} start {i}: {e}"));
                        assert_eq!(child.join().unwrap_or_else(|e| panic!("{method:?} join {i}: {e}")), i * i);
                    }
                });
            }
        });
    }
    let queue = multiproc::Queue::<u64>::new().unwrap();
    let pool = multiproc::Pool::new(3).unwrap();
    for round in 0..5u64 {
        assert_eq!(pool.map(square, 0..50u64).unwrap().len(), 50, "round {round}");
    }
    pool.close();
    pool.join().unwrap();
    drop(queue);
    println!("INNER-DONE");
}

/// A program whose `SIGCHLD` handler interrupts system calls (no `SA_RESTART`) starts and
/// joins its children from several threads and runs a pool.
#[test]
fn a_program_with_a_sigchld_handler_starts_and_joins_its_children() {
    let _w = watchdog(LIMIT);
    common::run_inner_test("a_program_with_a_sigchld_handler_inner", SIGCHLD_HANDLER);
}

/// From a child: a grandchild through the fork server (the server's own child, reaped by
/// the server), its result, and the exit code of one killed.
fn grandchildren_through_the_fork_server(_: ()) -> (u64, i32) {
    let server = StartMethod::ForkServer;
    let squared = Process::new(square, 6).start_method(server).start().unwrap().join().unwrap();
    let sleeper = Process::new(nap, 60_000).start_method(server).start().unwrap();
    sleeper.kill().unwrap();
    (squared, sleeper.wait())
}

const IGNORES_SIGCHLD_RESTART: &str = "MULTIPROC_TEST_IGNORES_SIGCHLD_RESTART";

#[test]
fn a_fork_server_started_again_under_an_ignored_sigchld_inner() {
    if std::env::var_os(IGNORES_SIGCHLD_RESTART).is_none() {
        return;
    }
    let _w = watchdog(LIMIT);
    multiproc::init();
    // SAFETY (test): as in `a_program_that_ignores_sigchld_inner`.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    let server = multiproc::__private::fork_server_pid().unwrap();
    // SAFETY (test): kill only sends a signal.
    assert_eq!(unsafe { libc::kill(server as i32, libc::SIGKILL) }, 0);
    assert!(common::eventually(LIMIT, || !common::pid_running(server)));
    // Started again from here, where `SIGCHLD` is now ignored.
    assert_eq!(start_a_square(StartMethod::ForkServer), 25);
    assert_ne!(multiproc::__private::fork_server_pid(), Some(server));
    let child = Process::new(grandchildren_through_the_fork_server, ()).start().unwrap();
    assert_eq!(child.join().unwrap(), (36, -libc::SIGKILL));
    println!("INNER-DONE");
}

const IGNORED_FROM_THE_START: &str = "MULTIPROC_TEST_SIGCHLD_IGNORED_FROM_THE_START";

#[test]
fn a_program_started_with_sigchld_ignored_inner() {
    if std::env::var_os(IGNORED_FROM_THE_START).is_none() {
        return;
    }
    let _w = watchdog(LIMIT);
    // SAFETY (test): reads the disposition (a null new action changes nothing).
    let ignored = unsafe {
        let mut action = std::mem::zeroed::<libc::sigaction>();
        libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut action);
        action.sa_sigaction == libc::SIG_IGN
    };
    assert!(ignored, "the inner process was started with SIGCHLD ignored");
    // A child of the main process: its grandchildren are the fork server's own children.
    let child = Process::new(grandchildren_through_the_fork_server, ()).start().unwrap();
    assert_eq!(child.join().unwrap(), (36, -libc::SIGKILL));
    assert_eq!(Process::new(start_a_square, StartMethod::ForkServer).start().unwrap().join().unwrap(), 25);
    println!("INNER-DONE");
}

/// A program started with `SIGCHLD` ignored (inherited through `exec`, before `init()`
/// forks the fork server): the server still reaps its own children, a child's children
/// started through it. Before (review85 H1), the server kept the ignored disposition,
/// the kernel reaped them, the server spun and the child's join never ended.
#[test]
fn a_program_started_with_sigchld_ignored_joins_its_grandchildren() {
    let _w = watchdog(LIMIT);
    common::run_inner_test_ignoring_sigchld("a_program_started_with_sigchld_ignored_inner", IGNORED_FROM_THE_START);
}

const IGNORED_BY_A_CONSTRUCTOR: &str = "MULTIPROC_TEST_SIGCHLD_IGNORED_BY_A_CONSTRUCTOR";

/// A constructor of the program's after `test_support!`'s (a C library's init, a `ctor`):
/// it ignores `SIGCHLD` in the inner test below only. The fork server, forked from
/// `test_support!`'s entry, runs it too.
#[used]
#[unsafe(link_section = ".init_array")]
static A_CONSTRUCTOR_IGNORING_SIGCHLD: multiproc::__private::InitEntry = {
    extern "C" fn ignore_sigchld(_: libc::c_int, _: *const *const libc::c_char, _: *const *const libc::c_char) {
        // SAFETY (test): `getenv` before any thread; `signal` installs no handler.
        unsafe {
            if !libc::getenv(c"MULTIPROC_TEST_SIGCHLD_IGNORED_BY_A_CONSTRUCTOR".as_ptr()).is_null() {
                libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            }
        }
    }
    ignore_sigchld
};

/// Whether this process ignores `SIGCHLD`.
fn ignores_sigchld(_: ()) -> bool {
    // SAFETY (test): reads the disposition into `old`, changing nothing.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old), 0);
        old.sa_sigaction == libc::SIG_IGN
    }
}

#[test]
fn a_constructor_that_ignores_sigchld_inner() {
    if std::env::var_os(IGNORED_BY_A_CONSTRUCTOR).is_none() {
        return;
    }
    let _w = watchdog(LIMIT);
    assert!(ignores_sigchld(()), "the constructor ran in the main process");
    let child = Process::new(ignores_sigchld, ()).start_method(StartMethod::ForkServer).start().unwrap();
    assert!(!child.join().unwrap(), "the fork server ignores SIGCHLD, set by a constructor after its reset");
    println!("INNER-DONE");
}

/// review88 L3: the fork server set `SIGCHLD` to its default, then ran the program's
/// remaining constructors, one of which may ignore it again (or install a handler): review85
/// H1's disposition was back in the server, and in its children. It now resets it after
/// them.
#[test]
fn a_fork_server_resets_sigchld_after_the_programs_constructors() {
    let _w = watchdog(LIMIT);
    common::run_inner_test("a_constructor_that_ignores_sigchld_inner", IGNORED_BY_A_CONSTRUCTOR);
}

/// A fork server started (again) while the program ignores `SIGCHLD` still reaps its own
/// children and tells their requesters how they ended.
#[test]
fn a_fork_server_started_again_under_an_ignored_sigchld_reports_its_childrens_ends() {
    let _w = watchdog(LIMIT);
    common::run_inner_test("a_fork_server_started_again_under_an_ignored_sigchld_inner", IGNORES_SIGCHLD_RESTART);
}

const FORK_IGNORES_SIGCHLD: &str = "MULTIPROC_TEST_FORK_IGNORES_SIGCHLD";

fn my_pid(_: u64) -> u32 {
    std::process::id()
}

/// Ignores `SIGCHLD` and lets this (libtest's) process fork with its other threads, which
/// sleep holding no lock.
fn ignore_sigchld_and_allow_forks() {
    // SAFETY (test): libtest's threads and the watchdog sleep holding no lock.
    unsafe { multiproc::allow_fork_with_threads() };
    // SAFETY (test): as in `a_program_that_ignores_sigchld_inner`.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
}

#[test]
fn fork_children_of_a_program_that_ignores_sigchld_inner() {
    if std::env::var_os(FORK_IGNORES_SIGCHLD).is_none() {
        return;
    }
    let _w = watchdog(LIMIT);
    multiproc::init();
    ignore_sigchld_and_allow_forks();
    // Alive when its start opens its pidfd: joined as any other.
    let child = Process::new(nap, 200).start_method(StartMethod::Fork).start().unwrap();
    assert_eq!(child.join().unwrap(), 200);
    let pool = multiproc::Pool::builder().processes(2).start_method(StartMethod::Fork).build().unwrap();
    assert_eq!(pool.map(square, 0..10u64).unwrap(), (0..10u64).map(|x| x * x).collect::<Vec<_>>());
    let worker = pool.apply(my_pid, 0).unwrap();
    // SAFETY (test): a signal to a pool worker.
    unsafe { libc::kill(worker as i32, libc::SIGKILL) };
    assert_eq!(pool.map(square, 0..10u64).unwrap().len(), 10);
    pool.close();
    pool.join().unwrap();
    println!("INNER-DONE");
}

/// `Fork` children and a `Fork` pool of a program that ignores `SIGCHLD`.
#[test]
fn fork_children_of_a_program_that_ignores_sigchld_run_and_are_joined() {
    let _w = watchdog(LIMIT);
    common::run_inner_test("fork_children_of_a_program_that_ignores_sigchld_inner", FORK_IGNORES_SIGCHLD);
}

const FAST_FORK_IGNORES_SIGCHLD: &str = "MULTIPROC_TEST_FAST_FORK_IGNORES_SIGCHLD";

#[test]
fn a_fork_child_that_ends_before_its_start_watches_it_inner() {
    if std::env::var_os(FAST_FORK_IGNORES_SIGCHLD).is_none() {
        return;
    }
    let _w = watchdog(LIMIT);
    multiproc::init();
    ignore_sigchld_and_allow_forks();
    // Holding nothing: a child in a report room, whose target returns, or exits.
    for _ in 0..20 {
        let child = Process::new(square, 4).start_method(StartMethod::Fork).start().unwrap();
        assert_eq!(child.join().unwrap(), 16);
        let child = Process::new(exit_with, 3).start_method(StartMethod::Fork).start().unwrap();
        assert_eq!(child.wait(), 3);
    }
    // Holding a value: a child on a boot socket, told to go on.
    let held = multiproc::Value::new(7u64).unwrap();
    for _ in 0..20 {
        let child = Process::new(square, 4).start_method(StartMethod::Fork).start().unwrap();
        assert_eq!(child.join().unwrap(), 16);
    }
    assert_eq!(held.get(), 7);
    println!("INNER-DONE");
}

const BARE_FORK_COPY: &str = "MULTIPROC_TEST_BARE_FORK_COPY";

/// Forks a bare copy of this `Fork` child (the program's own `libc::fork`): the copy
/// returns at once, the child a moment later, so the copy reaches the child's end first.
fn leave_a_bare_copy(x: u64) -> u64 {
    // SAFETY (test): this Fork child runs one thread; the copy only returns.
    if unsafe { libc::fork() } == 0 {
        return 0;
    }
    std::thread::sleep(Duration::from_millis(300));
    x * x
}

#[test]
fn a_bare_fork_copy_of_a_fork_child_leaves_its_go_to_the_child_inner() {
    if std::env::var_os(BARE_FORK_COPY).is_none() {
        return;
    }
    let _w = watchdog(LIMIT);
    multiproc::init();
    // SAFETY (test): libtest's thread and the watchdog sleep holding no lock of ours.
    unsafe { multiproc::allow_fork_with_threads() };
    let before = own_children();
    // The start held between its fork and its look: the go word is pending meanwhile.
    multiproc::__private::crash_at("hold:process.fork.recorded");
    let start = std::thread::spawn(|| {
        Process::new(leave_a_bare_copy, 4).start_method(StartMethod::Fork).start().map(|child| child.join())
    });
    assert!(common::eventually(LIMIT, || multiproc::__private::crash_holding() == 1));
    // The copy, then the child, reach their end meanwhile: the child waits for the go
    // asleep, and the copy either ended or (before the fix) waits asleep too.
    let child = || own_children().into_iter().find(|pid| !before.contains(pid));
    assert!(common::eventually(LIMIT, || child().is_some()), "the Fork child");
    let child = child().unwrap();
    let copy = || {
        std::fs::read_to_string(format!("/proc/{child}/task/{child}/children"))
            .ok()
            .and_then(|list| list.split_whitespace().next().and_then(|pid| pid.parse::<u32>().ok()))
    };
    assert!(common::eventually(LIMIT, || copy().is_some()), "the child's bare copy");
    let copy = copy().unwrap();
    // Whether they sleep is read from `/proc/<pid>/syscall`, which needs ptrace read access
    // to them (Yama's `ptrace_scope` 3, a container that denies it): refused, the test
    // says so and skips, rather than never seeing them asleep and leaving it to its
    // watchdog.
    if let Err(e) = std::fs::read_to_string(format!("/proc/{child}/syscall"))
        && e.kind() == std::io::ErrorKind::PermissionDenied
    {
        println!(
            "skipped: cannot tell whether the child {child} waits at its end: /proc/{child}/syscall needs ptrace read access to it ({e})"
        );
        multiproc::__private::crash_disarm();
        assert_eq!(start.join().unwrap().unwrap().unwrap(), 16);
        println!("INNER-DONE");
        return;
    }
    let asleep = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/syscall")).is_ok_and(|call| {
            call.split_whitespace().next().and_then(|nr| nr.parse::<libc::c_long>().ok()) == Some(libc::SYS_futex)
        })
    };
    let ended = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z')))
    };
    assert!(common::eventually(LIMIT, || asleep(child) && (asleep(copy) || ended(copy))), "both at their end");
    multiproc::__private::crash_disarm();
    assert_eq!(start.join().unwrap().unwrap().unwrap(), 16);
    println!("INNER-DONE");
}

/// A `Fork` child whose target forks a bare copy of it (`libc::fork`), the copy returning
/// from the target too, is joined: only the child waits for its start's go at its end.
/// Before (review111 H1), the copy waited on the child's go word as well, and the one
/// wake-up the go gives took the copy: the child slept for ever and its `join` hung (the
/// watchdog ended it).
#[test]
fn a_bare_fork_copy_of_a_fork_child_leaves_its_go_to_the_child() {
    let _w = watchdog(LIMIT);
    common::run_inner_test("a_bare_fork_copy_of_a_fork_child_leaves_its_go_to_the_child_inner", BARE_FORK_COPY);
}

const FAILED_FORK_FREES: &str = "MULTIPROC_TEST_FAILED_FORK_FREES";

#[test]
fn a_fork_start_failed_by_a_reaped_child_frees_what_it_made_inner() {
    if std::env::var_os(FAILED_FORK_FREES).is_none() {
        return;
    }
    let _w = watchdog(LIMIT);
    multiproc::init();
    ignore_sigchld_and_allow_forks();
    let before = multiproc::__private::heap_in_use();
    let children = own_children();
    // Holding nothing, a Fork child runs at once and reports in a report room. Its start is
    // held between the fork and its look at the child, which meanwhile is killed and reaped
    // by the kernel (review88 L6: the test left that to the scheduler, 50 tries). A child
    // that runs to its end waits for the look (audp61): only a kill ends it before.
    multiproc::__private::crash_at("hold:process.fork.recorded");
    let start = std::thread::spawn(|| Process::new(square, 4).start_method(StartMethod::Fork).start().map(drop));
    assert!(common::eventually(LIMIT, || multiproc::__private::crash_holding() == 1));
    kill_new_children(&children);
    let ended = || own_children().iter().all(|pid| children.contains(pid));
    assert!(common::eventually(LIMIT, ended), "the Fork child ended");
    multiproc::__private::crash_disarm();
    let error = start.join().unwrap().unwrap_err().to_string();
    assert!(error.contains("reaped by the program"), "the start failed saying: {error}");
    assert_eq!(
        multiproc::__private::heap_in_use(),
        before,
        "the start failed by its child's end kept the child's report room"
    );
    println!("INNER-DONE");
}

/// A `Fork` start that fails because its child ended and was reaped by the program before
/// the start watched it frees the child's report room, as a reap does (and lets go of its
/// fork record): the room was left for ever before (review85 L1).
#[test]
fn a_fork_start_failed_by_a_reaped_child_frees_what_it_made() {
    let _w = watchdog(LIMIT);
    common::run_inner_test("a_fork_start_failed_by_a_reaped_child_frees_what_it_made_inner", FAILED_FORK_FREES);
}

/// The pids of this process's children (of any of its threads).
fn own_children() -> Vec<u32> {
    let tasks = std::fs::read_dir("/proc/self/task").unwrap();
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().map(|pid| pid.parse().unwrap()).collect::<Vec<u32>>())
        .collect()
}

/// Kills (`SIGKILL`) the children of this process not in `before`.
fn kill_new_children(before: &[u32]) {
    for pid in own_children().into_iter().filter(|pid| !before.contains(pid)) {
        // SAFETY (test): a signal to our own unreaped child (its pid is ours until reaped).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

const REAPED_REPORT_FREES: &str = "MULTIPROC_TEST_REAPED_REPORT_FREES";

/// Reads the shared value it is given, and returns a result too long for a report room's
/// inline bytes or a payload's (a heap blob, counted in flight by its outcome) with a
/// value it made (counted in flight by the result's encoding).
fn read_then_return_a_large_result(value: multiproc::Value<u64>) -> (Vec<u8>, multiproc::Value<u64>) {
    (vec![value.get() as u8; 65_000], multiproc::Value::new(value.get()).unwrap())
}

#[test]
fn a_start_failed_by_a_killed_held_child_gives_its_argument_back_whole_inner() {
    let Ok(method) = std::env::var(REAPED_REPORT_FREES) else { return };
    let _w = watchdog(LIMIT);
    multiproc::init();
    ignore_sigchld_and_allow_forks();
    let (method, point) = match method.as_str() {
        "fork" => (StartMethod::Fork, "hold:process.fork.recorded"),
        _ => (StartMethod::Spawn, "hold:process.spawn.spawned"),
    };
    // Held by this process: a Fork child is then linked by its boot socket, not a room.
    let held = multiproc::Value::new(7u64).unwrap();
    let given = held.clone();
    let before = multiproc::__private::heap_in_use();
    let children = own_children();
    // The start is held between its child's birth and its look at it. Neither child runs
    // before its parent looked at it (a Fork child, audp61; a spawned one, spw82): killed
    // meanwhile, it took nothing, and the argument is given back whole.
    multiproc::__private::crash_at(point);
    let start = std::thread::spawn(move || {
        Process::new(read_then_return_a_large_result, given).start_method(method).start().map(drop)
    });
    assert!(common::eventually(LIMIT, || multiproc::__private::crash_holding() == 1));
    kill_new_children(&children);
    let ended = || own_children().iter().all(|pid| children.contains(pid));
    assert!(common::eventually(LIMIT, ended), "the child ended");
    multiproc::__private::crash_disarm();
    let error = start.join().unwrap().unwrap_err().to_string();
    assert!(error.contains("reaped by the program"), "the start failed saying: {error}");
    let left = multiproc::__private::heap_in_use() as i64 - before as i64;
    assert_eq!(left, 0, "bytes of the heap the failed start did not give back ({method:?})");
    assert_eq!(held.get(), 7);
    println!("INNER-DONE");
}

/// A `Fork` or `Spawn` start held between its child's birth and its look, whose child is
/// killed (`SIGKILL`) and reaped by the program (it ignores `SIGCHLD`) meanwhile, fails
/// saying the child was "reaped by the program", and gives its argument back whole: the
/// heap in use is where it was, and the shared value passed is still the parent's. No
/// child runs before its start's look now (Fork: audp61; Spawn: spw82), so the child took
/// nothing and reported nothing, and the start is settled as a reap is
/// (`child::settle_reaped`) over an empty socket. This test once checked review88 L1's
/// case, a child that reported before it was reaped (its socket dropped unread, the
/// outcome's blob left in flight: 65 536 bytes); that case cannot be made any more.
#[test]
fn a_start_failed_by_a_killed_held_child_gives_its_argument_back_whole() {
    let _w = watchdog(LIMIT);
    for method in ["fork", "spawn"] {
        common::run_inner_test_with(
            "a_start_failed_by_a_killed_held_child_gives_its_argument_back_whole_inner",
            &[(REAPED_REPORT_FREES, method)],
        );
    }
}

const SPAWN_REAPED: &str = "MULTIPROC_TEST_SPAWN_REAPED";

/// Whether the process `pid` sleeps in a `read` of its descriptor `fd` (its
/// `/proc/<pid>/syscall`: the call's number, then its arguments). That file needs ptrace
/// read access to `pid`: where it is refused (Yama's `ptrace_scope` 3, a container that
/// denies it), this panics saying so, rather than never seeing the child wait and leaving
/// the test to its watchdog (review114 L6).
fn sleeps_reading(pid: u32, fd: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let sleeping = stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('S'));
    let call = match std::fs::read_to_string(format!("/proc/{pid}/syscall")) {
        Ok(call) => call,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => panic!(
            "cannot tell whether the child {pid} waits for its start's word: reading /proc/{pid}/syscall \
             needs ptrace read access to it ({e}; Yama's ptrace_scope, or a container that denies it)"
        ),
        // Ended meanwhile.
        Err(_) => return false,
    };
    let mut words = call.split_whitespace();
    let number = words.next().and_then(|n| n.parse::<i64>().ok());
    let first = words.next().and_then(|a| i64::from_str_radix(a.trim_start_matches("0x"), 16).ok());
    sleeping && number == Some(libc::SYS_read) && first == Some(i64::from(fd))
}

#[test]
fn a_spawned_child_that_ends_at_once_waits_for_its_start_s_look_inner() {
    let Ok(how) = std::env::var(SPAWN_REAPED) else { return };
    let _w = watchdog(LIMIT);
    multiproc::init();
    // The program reaps every child at its end: the kernel (`SIGCHLD` ignored), or a
    // thread of its own waiting for any child.
    if how == "ignores" {
        // SAFETY (test): as in `a_program_that_ignores_sigchld_inner`.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    } else {
        std::thread::spawn(|| {
            loop {
                // SAFETY (test): `waitid` writes only the `siginfo_t` it is given.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                if unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED) } != 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
    }
    for target in ["returns", "exits"] {
        let before = own_children();
        // The start is held between the spawn and its look at the child, which meanwhile
        // runs as far as it can: to its end and its reap (before spw82), or to its wait for
        // its start's word (a read of its boot socket, descriptor 3).
        multiproc::__private::crash_at("hold:process.spawn.spawned");
        let start = std::thread::spawn(move || match target {
            "returns" => Process::new(square, 3).start_method(StartMethod::Spawn).start().map(|c| c.join().unwrap()),
            _ => Process::new(exit_with, 3).start_method(StartMethod::Spawn).start().map(|c| c.wait() as u64 * 3),
        });
        assert!(common::eventually(LIMIT, || multiproc::__private::crash_holding() == 1));
        let new = || own_children().into_iter().filter(|pid| !before.contains(pid)).collect::<Vec<_>>();
        let waits_or_ended = || match new().as_slice() {
            [] => true,
            [child] => sleeps_reading(*child, 3),
            _ => false,
        };
        assert!(common::eventually(LIMIT, waits_or_ended), "the spawned child neither ended nor waited");
        multiproc::__private::crash_disarm();
        let joined = start.join().unwrap().map_err(|e| e.to_string());
        assert_eq!(joined, Ok(9), "the spawned child whose target {target}, in a program that {how}");
    }
    println!("INNER-DONE");
}

/// A `Spawn` child whose target ends at once, in a program that reaps its children itself
/// (`SIGCHLD` ignored, or a thread in `waitid(P_ALL)`), is started and joined, however
/// long its start takes to look at it: it waits for its parent's word, sent after that
/// look, before it runs. Before (spw82), it had its whole boot message before it existed,
/// could end and be reaped first, and its start failed: "the spawned child P ended and was
/// reaped by the program itself" (perf81: 9 of 27 runs at a load of 11 of
/// `a_program_that_ignores_sigchld_joins_its_children` once the child ended sooner).
#[test]
fn a_spawned_child_that_ends_at_once_waits_for_its_start_s_look() {
    let _w = watchdog(LIMIT);
    for how in ["ignores", "waits"] {
        common::run_inner_test_with(
            "a_spawned_child_that_ends_at_once_waits_for_its_start_s_look_inner",
            &[(SPAWN_REAPED, how)],
        );
    }
}

/// A `Fork` child that ends at once, in a program that ignores `SIGCHLD` (or reaps any
/// child itself), is started and joined: it does not end before its start opened its
/// pidfd (glibc's `fork` gives none; `clone3(CLONE_PIDFD)` would, but skips the program's
/// `pthread_atfork` handlers and glibc's child fix-ups). Before (audp61), it was reaped by
/// the kernel first and its start failed: "the fork child P ended and was reaped by the
/// program itself".
#[test]
fn a_fork_child_that_ends_before_its_start_watches_it_is_started() {
    let _w = watchdog(LIMIT);
    common::run_inner_test("a_fork_child_that_ends_before_its_start_watches_it_inner", FAST_FORK_IGNORES_SIGCHLD);
}

fn nap_then_set((ms, flag): (u64, multiproc::RawValue<u32>)) {
    std::thread::sleep(Duration::from_millis(ms));
    flag.set(1);
}

fn leave_a_grandchild_then((method, flag, how): (StartMethod, multiproc::RawValue<u32>, u8)) {
    let grandchild = Process::new(nap_then_set, (300, flag)).start_method(method).start().unwrap();
    std::mem::forget(grandchild);
    match how {
        0 => std::process::exit(0),
        1 => panic!("the target panics"),
        _ => {}
    }
}

/// A child's non-daemonic children are joined however its target ends: a return, a
/// panic, or `std::process::exit` (Python's `sys.exit` in a target: its `_exit_function`
/// runs). Before (audp61), a fork-server or spawned child that called `exit` left them to
/// its parent-death signal: killed, never joined (`exit` found no hook in such a child;
/// a `Fork` child had its parent's).
#[test]
fn a_childs_children_are_joined_however_its_target_ends() {
    let _w = watchdog(LIMIT);
    multiproc::init();
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        for (how, code) in [(0u8, 0), (1, 1), (2, 0)] {
            let flag = multiproc::RawValue::new(0u32).unwrap();
            let child = Process::new(leave_a_grandchild_then, (method, flag.clone(), how))
                .start_method(method)
                .start()
                .unwrap();
            assert_eq!(child.wait(), code, "{method:?}, end {how}");
            assert_eq!(flag.get(), 1, "{method:?}, end {how}: the grandchild was not joined");
        }
    }
}

/// The signals blocked in this process's thread, as `/proc` shows them.
fn blocked_signals(_: ()) -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("SigBlk:")).unwrap();
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

/// Blocks `signal` in this thread (`true`) or unblocks it.
fn block(signal: i32, blocked: bool) {
    // SAFETY (test): a set built in a local, the mask of this thread only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        let how = if blocked { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

const FORK_MASKS: &str = "MULTIPROC_TEST_FORK_MASKS";

#[test]
fn a_fork_child_has_the_signal_mask_of_the_thread_that_started_it_inner() {
    if std::env::var_os(FORK_MASKS).is_none() {
        return;
    }
    let _w = watchdog(LIMIT);
    multiproc::init();
    // SAFETY (test): libtest's threads and the watchdog sleep holding no lock.
    unsafe { multiproc::allow_fork_with_threads() };
    let usr1 = 1u64 << (libc::SIGUSR1 - 1);
    let start = |blocked: bool| {
        std::thread::spawn(move || {
            block(libc::SIGUSR1, blocked);
            Process::new(blocked_signals, ()).start_method(StartMethod::Fork).start().unwrap().join().unwrap()
        })
        .join()
        .unwrap()
    };
    // The first start off the main thread makes the thread that forks (the launcher).
    assert_eq!(start(true) & usr1, usr1, "blocked in the starting thread");
    assert_eq!(start(false) & usr1, 0, "not blocked in the starting thread");
    println!("INNER-DONE");
}

/// A `Fork` child has the signal mask of the thread that started it, as a fork's copy
/// has (Python's), whichever thread forks it.
#[test]
fn a_fork_child_has_the_signal_mask_of_the_thread_that_started_it() {
    let _w = watchdog(LIMIT);
    common::run_inner_test("a_fork_child_has_the_signal_mask_of_the_thread_that_started_it_inner", FORK_MASKS);
}

/// Leaves its session, ignores `SIGTERM` and `SIGHUP`, starts a grandchild by `method` (a
/// `Fork` from this single-threaded child too), sends both pids, then waits.
fn hide_then_start((method, pids): (StartMethod, multiproc::Queue<(u32, u32)>)) {
    // SAFETY (test): setsid and SIG_IGN act on this process only.
    unsafe {
        libc::setsid();
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let grandchild = Process::new(nap, 60_000).start_method(method).start().unwrap();
    pids.put((std::process::id(), grandchild.pid())).unwrap();
    nap(60_000);
}

/// A child that left its session and ignores `SIGTERM`, killed, takes its children with
/// it, whichever way they were started (the parent-death signal, not the session or the
/// terminal's signals).
#[test]
fn a_child_that_left_its_session_takes_its_children_when_killed() {
    let _w = watchdog(LIMIT);
    multiproc::init();
    for (method, inner) in [
        (StartMethod::ForkServer, StartMethod::ForkServer),
        (StartMethod::ForkServer, StartMethod::Fork),
        (StartMethod::Spawn, StartMethod::Spawn),
        (StartMethod::Spawn, StartMethod::Fork),
    ] {
        let pids = multiproc::Queue::new().unwrap();
        let child = Process::new(hide_then_start, (inner, pids.clone())).start_method(method).start().unwrap();
        let (pid, grandchild) = pids.get_timeout(LIMIT).unwrap();
        assert_eq!(pid, child.pid());
        child.terminate().unwrap();
        child.kill().unwrap();
        assert_eq!(child.wait(), -libc::SIGKILL, "{method:?}/{inner:?}");
        assert!(
            common::eventually(LIMIT, || !common::pid_running(grandchild)),
            "{method:?}/{inner:?}: the grandchild {grandchild} outlived its killed parent"
        );
    }
}

const UNJOINED_RESULT: &str = "MULTIPROC_TEST_UNJOINED_RESULT";

/// A value it makes, returned (counted in flight by the result's encoding).
fn a_value_it_made(value: u64) -> multiproc::Value<u64> {
    multiproc::Value::new(value).unwrap()
}

/// [`a_value_it_made`], whose undo for the parent cannot be made (fail point
/// `process.report.no_undo`, as with a full heap).
fn a_value_it_made_with_no_undo(value: u64) -> multiproc::Value<u64> {
    multiproc::__private::crash_at("fail:process.report.no_undo");
    a_value_it_made(value)
}

/// [`a_value_it_made`], whose undo for the parent cannot be made because an undo function
/// is not in the executable (fail point `process.report.undo_not_in_executable`, as with one
/// in a shared library).
fn a_value_it_made_with_no_undo_function(value: u64) -> multiproc::Value<u64> {
    multiproc::__private::crash_at("fail:process.report.undo_not_in_executable");
    a_value_it_made(value)
}

#[test]
fn a_result_nobody_joins_gives_its_handles_back_inner() {
    let Some(how) = std::env::var(UNJOINED_RESULT).ok() else { return };
    // The reason a join of a result with no undo says: the cause, as it was.
    let (target, why): (fn(u64) -> multiproc::Value<u64>, _) = match how.as_str() {
        "no_undo" => (a_value_it_made_with_no_undo, Some("the family heap is full")),
        "no_undo_function" => (a_value_it_made_with_no_undo_function, Some("not in the executable")),
        _ => (a_value_it_made, None),
    };
    let no_undo = why.is_some();
    let _w = watchdog(LIMIT);
    multiproc::init();
    // SAFETY (test): libtest's threads and the watchdog sleep holding no lock.
    unsafe { multiproc::allow_fork_with_threads() };
    let in_use = multiproc::__private::heap_in_use;
    for method in [StartMethod::Fork, StartMethod::ForkServer, StartMethod::Spawn] {
        // The fork server started, and the first child's leftovers settled.
        Process::new(square, 2).start_method(method).start().unwrap().join().unwrap();
        let before = in_use();
        let child = Process::new(target, 7).start_method(method).start().unwrap();
        let pid = child.pid();
        drop(child);
        // The family lets go of the ended child (`active_children` reaps it).
        let gone = || multiproc::active_children().iter().all(|c| c.pid() != pid) && in_use() <= before;
        common::eventually(Duration::from_secs(10), gone);
        let left = in_use() as i64 - before as i64;
        assert_eq!(left, 0, "bytes of the heap an unjoined result left ({method:?})");
        if no_undo {
            // Joined: the join says why it has no value.
            match Process::new(target, 7).start_method(method).start().unwrap().join() {
                Err(multiproc::JoinError::Failed { reason, .. }) => {
                    assert!(reason.contains("undo could not be made"), "{reason}");
                    assert!(reason.contains(why.unwrap()), "{method:?}: the reason {reason:?} names another cause");
                }
                other => panic!("{method:?}: {:?}", other.map(|v| v.get())),
            }
            let left = in_use() as i64 - before as i64;
            assert_eq!(left, 0, "bytes of the heap a joined result with no undo left ({method:?})");
        }
    }
    println!("INNER-DONE");
}

const KILLED_AFTER_REAP: &str = "MULTIPROC_TEST_KILLED_AFTER_REAP";

/// Starts a child (`method`: 0 Fork, 1 ForkServer, 2 Spawn) that returns a value it made,
/// waits until it has reaped it (its `is_alive` says no: the result's undo taken, kept in
/// this process's memory until a join or a drop), says `reaped`, and never joins it: it
/// waits to be killed.
fn reap_a_value_then_wait((method, reaped): (u8, multiproc::Event)) -> u8 {
    let method = [StartMethod::Fork, StartMethod::ForkServer, StartMethod::Spawn][usize::from(method)];
    let child = Process::new(a_value_it_made, 7).start_method(method).start().unwrap();
    while child.is_alive() {
        std::thread::sleep(Duration::from_millis(1));
    }
    reaped.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_parent_killed_between_a_reap_and_its_join_leaves_no_result_inner() {
    if std::env::var_os(KILLED_AFTER_REAP).is_none() {
        return;
    }
    let _w = watchdog(LIMIT);
    let in_use = multiproc::__private::heap_in_use;
    // The fork server started, and the first children's leftovers settled.
    Process::new(square, 2).start_method(StartMethod::ForkServer).start().unwrap().join().unwrap();
    Process::new(square, 2).start_method(StartMethod::Spawn).start().unwrap().join().unwrap();
    let mut left = Vec::new();
    for method in 0..3u8 {
        let before = in_use();
        let reaped = multiproc::Event::new().unwrap();
        let parent = Process::new(reap_a_value_then_wait, (method, reaped.clone()))
            .start_method(StartMethod::Spawn)
            .start()
            .unwrap();
        reaped.wait().unwrap();
        parent.kill().unwrap();
        assert!(parent.join().is_err(), "the parent was killed");
        drop(reaped);
        // Its reap (ours) prunes what it held: the value's count in flight, taken at its
        // child's reap, goes with it.
        common::eventually(Duration::from_secs(10), || {
            let _ = multiproc::active_children();
            in_use() <= before
        });
        left.push(in_use() as i64 - before as i64);
    }
    assert_eq!(left, [0, 0, 0], "bytes of the heap left by a result reaped and never joined (Fork, ForkServer, Spawn)");
    println!("INNER-DONE");
}

/// review103 L4: a parent killed after it reaped its child (the result's undo taken out of
/// the heap, its entries kept in the parent's memory) and before it joined or dropped the
/// child leaves the result's handles counted in flight for good. Ignored: not fixed (the
/// design is in `/work/notes/res101.md` and HACKING: the parent keeps the undo object in
/// the heap, held, until its join decodes the result).
#[test]
#[ignore = "review103 L4, not fixed: a parent killed between a reap and its join leaks the result's handles"]
fn a_parent_killed_between_a_reap_and_its_join_leaves_no_result() {
    let _w = watchdog(LIMIT);
    common::run_inner_test_with(
        "a_parent_killed_between_a_reap_and_its_join_leaves_no_result_inner",
        &[(KILLED_AFTER_REAP, "1")],
    );
}

/// A child returns a handle it made (a `Value`), and its `ProcessHandle` is dropped
/// unjoined: the result is never decoded, and the family's reap of the ended child gives
/// the handle's count in flight back (the result's undo, kept from the reap until the
/// child's state is dropped unjoined). Before (review98 M1), the value's block stayed in
/// the heap for good, with no kill at all.
#[test]
fn a_result_nobody_joins_gives_its_handles_back() {
    let _w = watchdog(LIMIT);
    common::run_inner_test_with("a_result_nobody_joins_gives_its_handles_back_inner", &[(UNJOINED_RESULT, "1")]);
}

/// The same, with the child's undo for its parent not made (fail point
/// `process.report.no_undo`, as with a full heap): the outcome went as it was, and the
/// unjoined result's handles stayed counted in flight for good (review103 L3: 64 bytes
/// left, the value's block). The child now gives them back itself and reports why: a join
/// fails with that reason.
#[test]
fn a_result_whose_undo_could_not_be_made_gives_its_handles_back() {
    let _w = watchdog(LIMIT);
    common::run_inner_test_with("a_result_nobody_joins_gives_its_handles_back_inner", &[(UNJOINED_RESULT, "no_undo")]);
}

/// The same, with the undo not made because an undo function is not in the executable:
/// the join's reason said "the family heap is full" whatever the cause (review119 L4); it
/// now names the cause.
#[test]
fn a_result_whose_undo_function_is_not_in_the_executable_gives_its_handles_back() {
    let _w = watchdog(LIMIT);
    common::run_inner_test_with(
        "a_result_nobody_joins_gives_its_handles_back_inner",
        &[(UNJOINED_RESULT, "no_undo_function")],
    );
}

const JOINED_RESULT: &str = "MULTIPROC_TEST_JOINED_RESULT";

#[test]
fn a_joined_result_s_handles_are_given_back_once_inner() {
    if std::env::var_os(JOINED_RESULT).is_none() {
        return;
    }
    let _w = watchdog(LIMIT);
    multiproc::init();
    // SAFETY (test): libtest's threads and the watchdog sleep holding no lock.
    unsafe { multiproc::allow_fork_with_threads() };
    let in_use = multiproc::__private::heap_in_use;
    for method in [StartMethod::Fork, StartMethod::ForkServer, StartMethod::Spawn] {
        // The fork server started, and the first child's leftovers settled.
        Process::new(square, 2).start_method(method).start().unwrap().join().unwrap();
        let before = in_use();
        let child = Process::new(a_value_it_made, 7).start_method(method).start().unwrap();
        let pid = child.pid();
        // The join decodes the result: the value's count in flight becomes this process's.
        let value = child.join().unwrap();
        // Another count in flight for the same value (a message not yet received), which a
        // second run of the result's undo would take as its own.
        let queue = multiproc::Queue::new().unwrap();
        queue.put(value.clone()).unwrap();
        // The child's state is dropped (with the join, or from the family's list here): its
        // kept undo must not run now (`take_outcome` dropped it).
        let gone = || multiproc::active_children().iter().all(|c| c.pid() != pid);
        assert!(common::eventually(LIMIT, gone), "{method:?}: the joined child is still listed");
        let received = queue.get_timeout(LIMIT).unwrap();
        drop(queue);
        assert_eq!(value.get(), 7, "{method:?}");
        drop(value);
        assert!(
            in_use() > before,
            "{method:?}: the received value was freed while held (the undo ran after the decode)"
        );
        assert_eq!(received.get(), 7, "{method:?}");
        drop(received);
        let left = in_use() as i64 - before as i64;
        assert_eq!(left, 0, "bytes of the heap a joined result left ({method:?})");
    }
    println!("INNER-DONE");
}

/// A child returns a handle it made (a `Value`), and its parent joins it: the decoding
/// takes the handle's count in flight, so the result's undo, kept from the reap
/// (`Inner::result_handles`), must never run after it (review103 L2: nothing pinned that
/// `take_outcome` drops it). Run again at the state's drop, it took the count the decoded
/// value holds, and freed the value under its holder.
#[test]
fn a_joined_result_s_handles_are_given_back_once() {
    let _w = watchdog(LIMIT);
    common::run_inner_test_with("a_joined_result_s_handles_are_given_back_once_inner", &[(JOINED_RESULT, "1")]);
}

/// A spawned child registers its fork handlers at its boot, single-threaded, as `init` and a
/// restarted fork server do: left to its first pin claim, they were registered from whichever
/// thread of its target claimed first, and a fork made by another thread meanwhile could
/// copy the flag without the handler (review105 M1). A fork-server child inherits them.
#[test]
fn a_child_has_its_fork_handlers_registered_before_its_target_runs() {
    let _w = watchdog(LIMIT);
    // (A Fork child is a copy of this process, which registered them at `init`.)
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let child = Process::new(fork_handlers_registered, ()).start_method(method).start().unwrap();
        assert!(child.join().unwrap(), "a {method:?} child ran its target before its fork handlers were registered");
    }
}
