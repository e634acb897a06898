//! `mp-bench`: multiproc's side of `../shared/bench/python/mp_bench.py`.
//!
//! Prints one JSON line per figure, `{"bench", "variant", "value", "unit"}`, with the same
//! bench and variant names as the Python suite, so that `compare.py` can join the two.
//! Usage: `mp-bench [--json] [--detail] [BENCH ...]` (default: every benchmark).

mod bigdata;
#[cfg(feature = "cluster")]
mod cluster;
mod manager;
mod memory;
mod pool;
mod queue;
mod stats;
mod sync;
mod typed;

use std::time::Instant;

use multiproc::{Process, StartMethod};

use stats::Report;

fn noop(_: ()) {}

/// spawn_join: median µs of `start(); join()` of an empty target, per start method.
fn spawn_join(report: &mut Report) {
    for (method, runs) in [(StartMethod::Fork, 200), (StartMethod::Spawn, 30), (StartMethod::ForkServer, 100)] {
        let mut samples = Vec::with_capacity(runs);
        for i in 0..runs + 2 {
            let t0 = Instant::now();
            Process::new(noop, ()).start_method(method).start().expect("start").join().expect("join");
            if i >= 2 {
                samples.push(t0.elapsed().as_secs_f64() * 1e6);
            }
        }
        report.emit("spawn_join", method.name(), stats::median(&samples), "us", &samples);
    }
    fork_floor(report);
    spawn_floor(report);
}

/// spawn_join `fork.raw` (not in `mp_bench.py`): the floor of a fork start + join for this
/// very process (its size and mappings, which a fork copies and an exit tears down): a raw
/// `fork`, a child that calls `_exit(0)` at once, and a `waitpid`. The machine's floor of
/// `limits.c` forks a small C program.
fn fork_floor(report: &mut Report) {
    let runs = 200;
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs + 2 {
        let t0 = Instant::now();
        // SAFETY: the child calls only `_exit`, which is async-signal-safe; this process has
        // no other thread here (spawn_join runs before any bench that starts one).
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: ends the child without running anything of the parent's.
            unsafe { libc::_exit(0) };
        }
        assert!(pid > 0, "fork failed");
        let mut status = 0;
        // SAFETY: waits for the child just forked; `status` is a valid place to write.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid, "waitpid failed");
        if i >= 2 {
            samples.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    report.emit("spawn_join", "fork.raw", stats::median(&samples), "us", &samples);
}

/// The argument that makes mp-bench exit at once (`spawn.raw`'s child).
const EXIT_AT_ONCE: &str = "--exit";

/// spawn_join `spawn.raw` (not in `mp_bench.py`): the floor of a spawn start + join for this
/// very binary (its size, its relocations, std's start-up): `posix_spawn` of mp-bench itself
/// with `--exit`, which returns from the top of `main`, and a `waitpid`. `limits`'
/// `posix_spawn_self_exec` does the same with a small C program.
fn spawn_floor(report: &mut Report) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt as _;
    let runs = 30;
    let exe = CString::new("/proc/self/exe").expect("no NUL");
    let arg = CString::new(EXIT_AT_ONCE).expect("no NUL");
    let argv = [exe.as_ptr().cast_mut(), arg.as_ptr().cast_mut(), std::ptr::null_mut()];
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| CString::new([k.as_bytes(), b"=", v.as_bytes()].concat()).expect("no NUL in the environment"))
        .collect();
    let envp: Vec<*mut libc::c_char> =
        env.iter().map(|e| e.as_ptr().cast_mut()).chain(std::iter::once(std::ptr::null_mut())).collect();
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs + 2 {
        let t0 = Instant::now();
        let mut pid = 0;
        // SAFETY: `exe`, `argv` and `envp` are NUL-terminated arrays of C strings that outlive
        // the call; no file actions or attributes.
        let failed = unsafe {
            libc::posix_spawn(&mut pid, exe.as_ptr(), std::ptr::null(), std::ptr::null(), argv.as_ptr(), envp.as_ptr())
        };
        assert_eq!(failed, 0, "posix_spawn failed");
        let mut status = 0;
        // SAFETY: waits for the child just spawned; `status` is a valid place to write.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid, "waitpid failed");
        if i >= 2 {
            samples.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    report.emit("spawn_join", "spawn.raw", stats::median(&samples), "us", &samples);
}

type Bench = (&'static str, fn(&mut Report));

const BENCHES: &[Bench] = &[
    ("spawn_join", spawn_join),
    ("pool_overhead", pool::pool_overhead),
    ("pool_apply_async", pool::pool_apply_async),
    ("pool_cpu_scaling", pool::pool_cpu_scaling),
    ("lock_uncontended", sync::lock_uncontended),
    ("lock_contended", sync::lock_contended),
    ("shared_array", sync::shared_array),
    ("manager_dict", manager::manager_dict),
    ("queue_throughput", queue::queue_throughput),
    ("queue_fan", queue::queue_fan),
    ("queue_cpu", queue::queue_cpu),
    ("queue_pingpong", queue::queue_pingpong),
    ("pipe_pingpong", queue::pipe_pingpong),
    ("pipe_throughput", queue::pipe_throughput),
    #[cfg(feature = "cluster")]
    ("cluster_overhead", cluster::cluster_overhead),
    #[cfg(feature = "cluster")]
    ("cluster_roundtrip", cluster::cluster_roundtrip),
    #[cfg(feature = "cluster")]
    ("cluster_queue", cluster::cluster_queue),
    ("message_cost", queue::message_cost),
    ("memory", memory::memory),
    // Last: rayon's global pool keeps two threads for the rest of the run, and the benches
    // that start fork children refuse to fork a process with threads.
    ("pool_bigdata", bigdata::pool_bigdata),
];

fn main() {
    if std::env::args_os().nth(1).is_some_and(|arg| arg == EXIT_AT_ONCE) {
        return;
    }
    multiproc::init();
    #[cfg(feature = "cluster")]
    if let [_, flag, url] = std::env::args().collect::<Vec<_>>().as_slice()
        && flag == "--cluster-node"
    {
        cluster::node(url);
    }
    let mut json = false;
    let mut detail = false;
    let mut names = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => json = true,
            "--detail" => detail = true,
            "--list" => {
                for (name, _) in BENCHES {
                    println!("{name}");
                }
                return;
            }
            name => names.push(name.to_string()),
        }
    }
    let mut report = Report::new(json, detail);
    let mut failed = false;
    for (name, bench) in BENCHES {
        if names.is_empty() || names.iter().any(|n| n == name) {
            bench(&mut report);
        }
    }
    for name in &names {
        if !BENCHES.iter().any(|(n, _)| n == name) {
            eprintln!("mp-bench: unknown benchmark {name}");
            failed = true;
        }
    }
    if failed {
        std::process::exit(2);
    }
}

#[cfg(test)]
mod tests {
    // A binary crate's unit tests start processes after one line of setup.
    multiproc::test_support!();

    #[test]
    fn the_noop_target_runs_in_a_child_with_every_start_method() {
        for method in [multiproc::StartMethod::ForkServer, multiproc::StartMethod::Spawn] {
            super::Process::new(super::noop, ()).start_method(method).start().unwrap().join().unwrap();
        }
    }

    #[test]
    fn quantiles_interpolate_as_mp_bench_py() {
        assert_eq!(super::stats::median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::stats::quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
    }
}
