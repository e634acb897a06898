//! Pool benchmarks: pool_overhead, pool_apply_async, pool_cpu_scaling (the methodology of
//! mp_bench.py: Pool(2) with the fork start method, warmed outside the timed region).

use std::hint::black_box;
use std::time::Instant;

use multiproc::{MapOptions, Pool, StartMethod};
use rayon::prelude::*;

use crate::stats::{self, Report};

fn identity(x: u64) -> u64 {
    x
}

fn swap((a, b): (u64, u64)) -> (u64, u64) {
    (b, a)
}

/// About 50 ms of pure computation here, like Python's `sum(i * i for i in range(1.5M))`:
/// a wrapping sum the optimizer cannot fold into a formula.
const CPU_N: u64 = 140_000_000;

/// Not inlined: the serial loop and the workers must run one copy of this code (an inlined
/// copy in the serial loop ran 1.5x faster than the workers' one in one build and not in
/// another, from code placement alone, which made `speedup` swing from 1.2 to 1.9).
#[inline(never)]
fn cpu_task(n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        let i = black_box(i);
        acc = acc.wrapping_add(i.wrapping_mul(i));
    }
    acc
}

fn pool2() -> Pool {
    Pool::builder().processes(2).start_method(StartMethod::Fork).build().expect("pool")
}

/// An untimed chunksize-1 map of `n` items before the timed ones. `map.chunksize1` and
/// `map.default` warm up as mp_bench.py does (2000 items); the `workers2`/`workers16`
/// pools (our own variants) with a map as large as the timed ones, so that no sample of
/// theirs is a pool's first 100 000-item map (about half the rate of the next ones: its
/// claim tables' blocks new to the heap; perf50). A median of 3 ignores one such sample.
fn warm_up(pool: &Pool, n: u64) {
    pool.map_with(identity, 0..n, MapOptions::new().chunksize(1)).expect("warm-up");
}

/// pool_overhead: tasks/s of `Pool(2).map(identity, 0..100_000)`, chunksize 1 and default
/// (and chunksize 1 of `(u64, u64)` pairs).
pub fn pool_overhead(report: &mut Report) {
    let pool = pool2();
    let n = 100_000u64;
    warm_up(&pool, 2000);
    for (variant, chunksize, reps) in [("map.chunksize1", Some(1), 3), ("map.default", None, 10)] {
        let mut rates = Vec::new();
        for _ in 0..reps {
            let options = match chunksize {
                Some(c) => MapOptions::new().chunksize(c),
                None => MapOptions::new(),
            };
            let t0 = Instant::now();
            let out = pool.map_with(identity, 0..n, options).expect("map");
            let dt = t0.elapsed().as_secs_f64();
            assert!(out.len() == n as usize && out[n as usize - 1] == n - 1, "pool map: bad result");
            rates.push(n as f64 / dt);
        }
        report.emit("pool_overhead", variant, stats::median(&rates), "tasks/s", &rates);
    }
    // `map.chunksize1` of a type that is not a primitive (our own variant): its items take
    // the claims path's codec, each decode and encode under an unwinding guard (fix86),
    // which `u64`'s in-place path skips.
    pool.map_with(swap, (0..2000u64).map(|i| (i, i)), MapOptions::new().chunksize(1)).expect("warm-up");
    let mut rates = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let out = pool.map_with(swap, (0..n).map(|i| (i, n - i)), MapOptions::new().chunksize(1)).expect("map");
        let dt = t0.elapsed().as_secs_f64();
        assert!(out.len() == n as usize && out[1] == (n - 1, 1), "pool map: bad result");
        rates.push(n as f64 / dt);
    }
    report.emit("pool_overhead", "map.chunksize1.pair", stats::median(&rates), "tasks/s", &rates);
    drop(pool);
    // The per-task cost as the worker count grows past the CPUs (issue 14: 16 workers on
    // 2 CPUs at least 0.8x the 2-worker rate): alternating runs of the two pools (fork
    // server workers: this process has threads now, and fork would be refused). With
    // trivial tasks the 2-worker rate is bimodal between runs: about twice as high when
    // the scheduler keeps both workers on one CPU (the claim counter and the entries then
    // stay in one cache) as when it runs them on two, and 16 workers on 2 CPUs always
    // have two running at once (perf50's width_probe pins workers to show it).
    let build = |n| Pool::builder().processes(n).start_method(StartMethod::ForkServer).build().expect("pool");
    let (narrow, wide) = (build(2), build(16));
    let mut rates = [Vec::new(), Vec::new()];
    for pool in [&narrow, &wide] {
        warm_up(pool, n);
    }
    for _ in 0..5 {
        for (i, pool) in [&narrow, &wide].into_iter().enumerate() {
            let t0 = Instant::now();
            let out = pool.map_with(identity, 0..n, MapOptions::new().chunksize(1)).expect("map");
            rates[i].push(n as f64 / t0.elapsed().as_secs_f64());
            assert_eq!(out.len(), n as usize);
        }
    }
    report.emit("pool_overhead", "map.chunksize1.workers2", stats::median(&rates[0]), "tasks/s", &rates[0]);
    report.emit("pool_overhead", "map.chunksize1.workers16", stats::median(&rates[1]), "tasks/s", &rates[1]);
}

/// pool_apply_async: median µs of `apply_async(identity, i).get()` (`roundtrip`), and of
/// `apply_async(identity, i)?.await` on a tokio current-thread runtime (`await.roundtrip`),
/// in alternating blocks of 100 in one run so that the two see the same machine.
pub fn pool_apply_async(report: &mut Report) {
    let pool = pool2();
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let (warm, n, block) = (200, 3000, 100);
    let mut blocking = Vec::with_capacity(n);
    let mut awaited = Vec::with_capacity(n);
    for i in 0..(warm + n) as u64 {
        let t0 = Instant::now();
        let r = pool.apply_async(identity, i).expect("submit").get().expect("result");
        let dt = t0.elapsed();
        assert_eq!(r, i);
        if i >= warm as u64 {
            blocking.push(dt.as_secs_f64() * 1e6);
        }
        if (i + 1) % block == 0 {
            // The same number of awaited round trips, on the one runtime thread.
            runtime.block_on(async {
                for j in 0..block {
                    let t0 = Instant::now();
                    let a = pool.apply_async(identity, j).expect("submit").await.expect("result");
                    let da = t0.elapsed();
                    assert_eq!(a, j);
                    if i >= warm as u64 {
                        awaited.push(da.as_secs_f64() * 1e6);
                    }
                }
            });
        }
    }
    report.emit("pool_apply_async", "roundtrip", stats::median(&blocking), "us", &blocking);
    report.emit("pool_apply_async", "await.roundtrip", stats::median(&awaited), "us", &awaited);
}

/// pool_cpu_scaling: 16 tasks of ~50 ms, serial against `Pool(2).map` (default chunk size).
///
/// Each round also runs the map on rayon (two threads, started after the pool's workers
/// were forked), right before or after the pool's (the order alternates), against the
/// same serial time: `speedup.rayon`, and `vs_rayon`, the round's pool speedup over
/// rayon's. On a shared machine `speedup` swings with the load between the serial and
/// the parallel part (with autogroup scheduling, a busy machine caps both near 1 CPU);
/// `vs_rayon` compares two maps measured under nearly the same load. `vs_rayon.cpu` is the
/// same ratio in CPU time (this process's threads and the pool's workers, during each map):
/// what the pool costs beyond the tasks, whatever share of the processors it was given.
pub fn pool_cpu_scaling(report: &mut Report) {
    let tasks = 16;
    let expect = cpu_task(CPU_N);
    let pool = pool2();
    pool.map(identity, 0..8).expect("warm-up");
    let before = threads_now();
    let threads = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("rayon pool");
    threads.install(|| (0..8u64).into_par_iter().map(identity).collect::<Vec<u64>>());
    let (mut serial, mut parallel, mut speedup) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rayon_speedup, mut vs_rayon, mut vs_rayon_cpu) = (Vec::new(), Vec::new(), Vec::new());
    let mut family: Vec<String> = pool.pids().iter().map(|p| format!("/proc/{p}/task")).collect();
    family.push("/proc/self/task".into());
    for round in 0..3 {
        let t0 = Instant::now();
        let rs: Vec<u64> = (0..tasks).map(|_| cpu_task(black_box(CPU_N))).collect();
        let s = t0.elapsed().as_secs_f64();
        let (mut p, mut r, mut p_cpu, mut r_cpu) = (0.0, 0.0, 0.0, 0.0);
        for pool_first in [round % 2 == 0, round % 2 == 1] {
            let c1 = cpu_seconds(&family);
            let t1 = Instant::now();
            let out = if pool_first {
                pool.map(cpu_task, vec![CPU_N; tasks]).expect("map")
            } else {
                threads.install(|| vec![CPU_N; tasks].into_par_iter().map(cpu_task).collect())
            };
            let dt = t1.elapsed().as_secs_f64();
            let cpu = cpu_seconds(&family) - c1;
            assert!(rs == vec![expect; tasks] && out == rs, "cpu scaling: bad result");
            if pool_first {
                (p, p_cpu) = (dt, cpu);
            } else {
                (r, r_cpu) = (dt, cpu);
            }
        }
        serial.push(s);
        parallel.push(p);
        speedup.push(s / p);
        rayon_speedup.push(s / r);
        vs_rayon.push(r / p);
        vs_rayon_cpu.push(r_cpu / p_cpu);
    }
    drop(threads);
    // rayon's threads end after the drop returns; the benches after this one fork.
    let gone = Instant::now();
    while threads_now() > before && gone.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let task_ms: Vec<f64> = serial.iter().map(|s| s / tasks as f64 * 1e3).collect();
    report.emit("pool_cpu_scaling", "task_ms", stats::median(&task_ms), "ms", &task_ms);
    report.emit("pool_cpu_scaling", "serial", stats::median(&serial), "s", &serial);
    report.emit("pool_cpu_scaling", "pool2", stats::median(&parallel), "s", &parallel);
    report.emit("pool_cpu_scaling", "speedup", stats::median(&speedup), "x", &speedup);
    report.emit("pool_cpu_scaling", "speedup.rayon", stats::median(&rayon_speedup), "x", &rayon_speedup);
    report.emit("pool_cpu_scaling", "vs_rayon", stats::median(&vs_rayon), "x", &vs_rayon);
    report.emit("pool_cpu_scaling", "vs_rayon.cpu", stats::median(&vs_rayon_cpu), "x", &vs_rayon_cpu);
}

/// This process's thread count (`/proc/self/task`).
fn threads_now() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// CPU time in seconds of every thread under these `/proc/.../task` directories, from
/// each thread's `schedstat` (nanoseconds on the CPU).
fn cpu_seconds(dirs: &[String]) -> f64 {
    let mut ns = 0u64;
    for dir in dirs {
        for task in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            ns += stat.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    ns as f64 * 1e-9
}
