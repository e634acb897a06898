//! Scratch probe (perf50): `width_probe ROUNDS CONFIG...`, CONFIG like `f2`, `s2`, `s16`
//! (f: fork, s: fork server; the worker count). Builds every pool, warms each, then runs
//! one `map` of 100 000 items with chunk size 1 on each in turn, ROUNDS times, printing
//! every rate.

use std::time::Instant;

use multiproc::{MapOptions, Pool, StartMethod};

fn identity(x: u64) -> u64 {
    x
}

fn main() {
    multiproc::init();
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args[1].parse().unwrap();
    let pools: Vec<(String, Pool)> = args[2..]
        .iter()
        .map(|c| {
            let method = if c.starts_with('f') { StartMethod::Fork } else { StartMethod::ForkServer };
            let n: usize = c[1..].parse().unwrap();
            (c.clone(), Pool::builder().processes(n).start_method(method).build().expect("pool"))
        })
        .collect();
    if let Ok(pin) = std::env::var("PIN") {
        let cpus: Vec<usize> = pin.split(',').map(|c| c.parse().unwrap()).collect();
        for (_, p) in &pools {
            for (i, pid) in p.pids().iter().enumerate() {
                // SAFETY: a zeroed cpu_set_t is an empty set; the pid is a worker's.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpus[i % cpus.len()], &mut set);
                    assert_eq!(libc::sched_setaffinity(*pid as i32, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
                }
            }
        }
    }
    for (_, p) in &pools {
        let warm: u64 = std::env::var("WARM").map_or(2000, |v| v.parse().unwrap());
        p.map_with(identity, 0..warm, MapOptions::new().chunksize(1)).expect("warm-up");
    }
    let n = 100_000u64;
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); pools.len()];
    for _ in 0..rounds {
        for (i, (_, p)) in pools.iter().enumerate() {
            let t0 = Instant::now();
            let out = p.map_with(identity, 0..n, MapOptions::new().chunksize(1)).expect("map");
            rates[i].push(n as f64 / t0.elapsed().as_secs_f64() / 1e6);
            assert_eq!(out.len(), n as usize);
        }
    }
    for (i, (name, _)) in pools.iter().enumerate() {
        let mut r = rates[i].clone();
        r.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let s: Vec<String> = rates[i].iter().map(|x| format!("{x:.1}")).collect();
        println!("{name:>4} median {:.1} M/s  [{}]", r[r.len() / 2], s.join(" "));
    }
}
