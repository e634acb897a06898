//! A process's life from a user's chair (audp61): children reaped by somebody else,
//! descriptors a child must not inherit, signal masks, odd names.

mod common;

use std::time::Duration;

use common::watchdog;
use multiproc::{Process, StartMethod};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(60);
const ALL: [StartMethod; 3] = [StartMethod::ForkServer, StartMethod::Spawn, StartMethod::Fork];

fn square(x: u64) -> u64 {
    x * x
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

fn start_then_list((method, inner): (StartMethod, StartMethod)) -> Vec<String> {
    // A sibling runs meanwhile: its boot socket and pidfd are ours too.
    let sibling = Process::new(nap, 200).start_method(inner).start().unwrap();
    let listed = inheritable_descriptors(());
    sibling.join().unwrap();
    let _ = method;
    listed
}

/// A program a child `exec`s (`std::process::Command`) inherits none of the family's
/// descriptors (the heap's memfd, boot sockets, pidfds, the fork server's socket): only
/// what the user opened without `O_CLOEXEC` would cross, as in Python.
#[test]
fn a_child_holds_no_inheritable_descriptor_of_ours() {
    let _w = watchdog(LIMIT);
    multiproc::init();
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        for inner in [StartMethod::ForkServer, StartMethod::Spawn] {
            let listed = Process::new(start_then_list, (method, inner)).start_method(method).start().unwrap().join().unwrap();
            assert!(listed.is_empty(), "{method:?} child, {inner:?} sibling: {listed:?}");
        }
    }
}

#[test]
fn probe_main_descriptors() {
    let _w = watchdog(LIMIT);
    multiproc::init();
    let child = Process::new(nap, 300).start().unwrap();
    let spawned = Process::new(nap, 300).start_method(StartMethod::Spawn).start().unwrap();
    eprintln!("main: {:?}", inheritable_descriptors(()));
    child.join().unwrap();
    spawned.join().unwrap();
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
/// found it running and its join spun for ever (the watchdog aborted the test).
#[test]
fn a_child_reaped_by_the_program_itself_has_ended_for_its_handle() {
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
