//! A probe for `perf stat` / `perf record` / `strace`: `N` start + join of an empty target
//! and nothing else (`start_probe METHOD N`, METHOD one of fork, forkserver, spawn, or
//! `raw`: a bare fork + `_exit(0)` + waitpid of this same process, the floor).
//!
//! Per start: run it with N and with 0 under `perf stat -e page-faults,context-switches,
//! task-clock` (children are counted with their parent) and divide the difference by N.

use multiproc::{Process, StartMethod};

fn noop(_: ()) {}

fn main() {
    multiproc::init();
    let args: Vec<String> = std::env::args().collect();
    let method = args.get(1).map_or("fork", String::as_str);
    let n: usize = args.get(2).map_or(1000, |s| s.parse().expect("a count"));
    let method = match method {
        "raw" => {
            for _ in 0..n {
                raw_fork_join();
            }
            return;
        }
        "fork" => StartMethod::Fork,
        "forkserver" => StartMethod::ForkServer,
        "spawn" => StartMethod::Spawn,
        other => panic!("unknown method {other}: fork, forkserver, spawn or raw"),
    };
    for _ in 0..n {
        Process::new(noop, ()).start_method(method).start().expect("start").join().expect("join");
    }
}

/// What mp-bench's `spawn_join fork.raw` measures.
fn raw_fork_join() {
    // SAFETY: the child calls only `_exit`, which is async-signal-safe; this process has
    // no other thread.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: ends the child without running anything of the parent's.
        unsafe { libc::_exit(0) };
    }
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    // SAFETY: waits for the child just forked; `status` is a valid place to write.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid, "waitpid failed");
}
