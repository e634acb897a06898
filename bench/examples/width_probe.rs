//! A probe of the claims path's cost as a pool grows past the CPUs (issue 14):
//! `width_probe ROUNDS POOL...`, each POOL a start method and a worker count (`f2`: fork,
//! 2 workers; `s16`: fork server, 16). Builds every pool, warms each, then maps `identity`
//! over 100 000 items with chunk size 1 on each pool in turn, ROUNDS times, and prints each
//! pool's median and every rate (M tasks/s). `WARM=N` (2000) items in each warm-up map,
//! `WARMS=K` (1) warm-up maps; `PIN=0,1` pins worker i to CPU i mod 2 (`PIN=1`: all on
//! CPU 1). Pinned apart, 2 workers run at the 16-worker rate; pinned together, both run
//! about twice as fast: the cost is two workers claiming at once on two CPUs, not the
//! worker count.

use std::time::Instant;

use multiproc::{MapOptions, Pool, StartMethod};

fn identity(x: u64) -> u64 {
    x
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| v.parse().expect("a number"))
}

/// Pins each of `pool`'s workers to one of `cpus`, in turn.
fn pin(pool: &Pool, cpus: &[usize]) {
    for (i, pid) in pool.pids().iter().enumerate() {
        // SAFETY: a zeroed `cpu_set_t` is an empty set, `CPU_SET` writes inside it, and
        // `sched_setaffinity` only reads it.
        let pinned = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpus[i % cpus.len()], &mut set);
            libc::sched_setaffinity(*pid as libc::pid_t, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        assert_eq!(pinned, 0, "sched_setaffinity of worker {pid}");
    }
}

fn main() {
    multiproc::init();
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).map_or(10, |r| r.parse().expect("ROUNDS"));
    let pools: Vec<(&str, Pool)> = args[2..]
        .iter()
        .map(|spec| {
            let method = if spec.starts_with('f') { StartMethod::Fork } else { StartMethod::ForkServer };
            let workers: usize = spec[1..].parse().expect("POOL: f or s, then a worker count");
            (spec.as_str(), Pool::builder().processes(workers).start_method(method).build().expect("pool"))
        })
        .collect();
    if let Ok(cpus) = std::env::var("PIN") {
        let cpus: Vec<usize> = cpus.split(',').map(|c| c.parse().expect("PIN: CPU numbers")).collect();
        for (_, pool) in &pools {
            pin(pool, &cpus);
        }
    }
    for (_, pool) in &pools {
        for _ in 0..env("WARMS", 1) {
            pool.map_with(identity, 0..env("WARM", 2000), MapOptions::new().chunksize(1)).expect("warm-up");
        }
    }
    let n = 100_000u64;
    let mut rates = vec![Vec::new(); pools.len()];
    for _ in 0..rounds {
        for (i, (_, pool)) in pools.iter().enumerate() {
            let t0 = Instant::now();
            let out = pool.map_with(identity, 0..n, MapOptions::new().chunksize(1)).expect("map");
            rates[i].push(n as f64 / t0.elapsed().as_secs_f64() / 1e6);
            assert_eq!(out.len(), n as usize);
        }
    }
    for ((name, _), rates) in pools.iter().zip(&rates) {
        let mut sorted = rates.clone();
        sorted.sort_by(f64::total_cmp);
        let all: Vec<String> = rates.iter().map(|r| format!("{r:.1}")).collect();
        println!("{name:>4} median {:.1} M/s  [{}]", sorted[sorted.len() / 2], all.join(" "));
    }
}
