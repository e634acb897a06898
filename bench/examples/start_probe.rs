//! A probe for `perf stat` / `perf record` / `strace`: `N` start + join of an empty target
//! and nothing else (`start_probe METHOD N`, METHOD one of fork, forkserver, spawn, or
//! `raw`: a bare fork + `_exit(0)` + waitpid of this same process, the floor).
//!
//! Per start: run it with N and with 0 under `perf stat -e page-faults,context-switches,
//! task-clock` (children are counted with their parent) and divide the difference by N.
//! At its end it prints one line of its own, from `getrusage` (no counter inherited by each
//! child, so no cost added to its fork and exit): per start, the wall time, the CPU time and
//! minor faults of this process (`self`) and of its reaped children (`children`), the
//! whole loop's figures divided by N, after the median wall time of one start. The loop runs after a warm-up of 20 starts.

use multiproc::{Process, StartMethod};

fn noop(_: ()) {}

fn main() {
    multiproc::init();
    let args: Vec<String> = std::env::args().collect();
    let method = args.get(1).map_or("fork", String::as_str);
    let n: usize = args.get(2).map_or(1000, |s| s.parse().expect("a count"));
    let method = match method {
        "raw" => None,
        "fork" => Some(StartMethod::Fork),
        "forkserver" => Some(StartMethod::ForkServer),
        "spawn" => Some(StartMethod::Spawn),
        other => panic!("unknown method {other}: fork, forkserver, spawn or raw"),
    };
    let one = || match method {
        None => raw_fork_join(),
        Some(method) => {
            Process::new(noop, ()).start_method(method).start().expect("start").join().expect("join");
        }
    };
    for _ in 0..n.min(20) {
        one();
    }
    let mut walls = Vec::with_capacity(n);
    let before = Usage::now();
    for _ in 0..n {
        let t0 = std::time::Instant::now();
        one();
        walls.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    let after = Usage::now();
    if n > 0 {
        walls.sort_by(f64::total_cmp);
        eprint!("median wall {:.1} us; ", walls[n / 2]);
        after.print_per_start(&before, n);
    }
}

/// What `getrusage` says of this process and of its reaped children, with the wall clock.
struct Usage {
    wall: std::time::Instant,
    own: libc::rusage,
    children: libc::rusage,
}

impl Usage {
    fn now() -> Usage {
        fn usage(who: libc::c_int) -> libc::rusage {
            // SAFETY: an all-zero `rusage` is a valid value of the plain C struct.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: `usage` is a valid place for the kernel to write.
            assert_eq!(unsafe { libc::getrusage(who, &mut usage) }, 0, "getrusage failed");
            usage
        }
        Usage { wall: std::time::Instant::now(), own: usage(libc::RUSAGE_SELF), children: usage(libc::RUSAGE_CHILDREN) }
    }

    fn print_per_start(&self, before: &Usage, n: usize) {
        let n = n as f64;
        let cpu = |a: &libc::rusage, b: &libc::rusage| {
            let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
            (us(a.ru_utime) + us(a.ru_stime) - us(b.ru_utime) - us(b.ru_stime)) / n
        };
        let faults = |a: &libc::rusage, b: &libc::rusage| (a.ru_minflt - b.ru_minflt) as f64 / n;
        eprintln!(
            "per start: wall {:.1} us, self {:.1} us cpu {:.2} faults, children {:.1} us cpu {:.2} faults",
            self.wall.duration_since(before.wall).as_secs_f64() * 1e6 / n,
            cpu(&self.own, &before.own),
            faults(&self.own, &before.own),
            cpu(&self.children, &before.children),
            faults(&self.children, &before.children),
        );
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
