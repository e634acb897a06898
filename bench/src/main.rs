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
    ("message_cost", queue::message_cost),
    ("memory", memory::memory),
    // Last: rayon's global pool keeps two threads for the rest of the run, and the benches
    // that start fork children refuse to fork a process with threads.
    ("pool_bigdata", bigdata::pool_bigdata),
];

fn main() {
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
