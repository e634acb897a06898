//! pool_bigdata: 512 buffers of 1 MiB made in the parent, each summed (as `u64` of its
//! bytes) by a worker of `Pool(2).map` (fork-server start method: rayon's threads refuse
//! `Fork`; default chunk size); the same
//! job with rayon (two threads) and sequentially, in the same run.
//!
//! Variants (wall time of the job, s; the buffers are made before the clock starts):
//! `vec_u8` (`Vec<u8>` items), `bytebuf` (`serde_bytes::ByteBuf` items), `rayon`,
//! `shared_bytes` (`multiproc::SharedBytes` made in the parent: a handle crosses, the
//! worker reads in place; the `Vec` of handles moves into `map`, so the workers drop the
//! last handles), `shared_bytes.kept` (the same, but the parent keeps its handles and maps
//! over clones: `pool.map(sum_shared, shared.iter().cloned())`, as rayon borrows; the
//! parent frees after the clock), `sequential`. Memory, as extra lines per variant: `<variant>.rss_parent` (the parent's
//! peak RSS during the job: `VmHWM` of `/proc/self/status`, reset before each job by
//! writing 5 to `/proc/self/clear_refs`) and `<variant>.rss_workers` (the sum of the
//! workers' `VmHWM`, read before the pool closes; each job gets a fresh pool). Shared
//! memory touched counts in the RSS of every process that touches it.

use std::time::Instant;

use multiproc::{Pool, SharedBytes, StartMethod};
use rayon::prelude::*;
use serde_bytes::ByteBuf;

use crate::stats::{self, Report};

const BUFFERS: usize = 512;
const BUFFER_LEN: usize = 1 << 20;
const REPS: usize = 3;
/// `MP_BIGDATA_ONLY=variant` runs that variant alone (for profiling).
fn only() -> Option<String> {
    std::env::var("MP_BIGDATA_ONLY").ok()
}

fn sum(bytes: &[u8]) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

fn sum_vec(b: Vec<u8>) -> u64 {
    sum(&b)
}

fn sum_bytebuf(b: ByteBuf) -> u64 {
    sum(&b)
}

fn sum_shared(b: SharedBytes) -> u64 {
    sum(&b)
}

fn buffers() -> Vec<Vec<u8>> {
    (0..BUFFERS).map(|i| (0..BUFFER_LEN).map(|j| (i.wrapping_mul(7) ^ j.wrapping_mul(31)) as u8).collect()).collect()
}

/// `VmHWM` of `/proc/<pid>/status`, in MB.
fn peak_rss_mb(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    kb / 1024.0
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One job: (seconds, parent's peak RSS MB, workers' peak RSS MB).
fn run(variant: &str, expect: &[u64]) -> (f64, f64, f64) {
    let pool = (variant != "rayon" && variant != "sequential")
        .then(|| Pool::builder().processes(2).start_method(StartMethod::ForkServer).build().expect("pool"));
    if let Some(pool) = &pool {
        pool.map(sum_vec, vec![vec![1u8; 16]; 8]).expect("warm-up");
    }
    let bufs = buffers();
    // Made in shared memory by the parent (the buffers above then dropped).
    let in_shm = variant.starts_with("shared_bytes");
    let mut shared: Vec<SharedBytes> =
        if in_shm { bufs.iter().map(|b| SharedBytes::new(b).expect("shared bytes")).collect() } else { Vec::new() };
    let bufs = if in_shm { Vec::new() } else { bufs };
    reset_peak_rss();
    let t0 = Instant::now();
    let sums: Vec<u64> = match (variant, &pool) {
        ("vec_u8", Some(pool)) => pool.map(sum_vec, bufs).expect("map"),
        ("bytebuf", Some(pool)) => pool.map(sum_bytebuf, bufs.into_iter().map(ByteBuf::from)).expect("map"),
        ("shared_bytes", Some(pool)) => pool.map(sum_shared, std::mem::take(&mut shared)).expect("map"),
        ("shared_bytes.kept", Some(pool)) => pool.map(sum_shared, shared.iter().cloned()).expect("map"),
        ("rayon", _) => bufs.par_iter().map(|b| sum(b)).collect(),
        ("sequential", _) => bufs.iter().map(|b| sum(b)).collect(),
        _ => unreachable!("{variant}"),
    };
    let dt = t0.elapsed().as_secs_f64();
    // The kept handles, freed after the clock as rayon frees its buffers.
    drop(shared);
    assert_eq!(sums, expect, "pool_bigdata {variant}: bad sums");
    let parent = peak_rss_mb("self");
    let workers = pool.map_or(0.0, |p| p.pids().iter().map(|pid| peak_rss_mb(&pid.to_string())).sum());
    (dt, parent, workers)
}

pub fn pool_bigdata(report: &mut Report) {
    rayon::ThreadPoolBuilder::new().num_threads(2).build_global().ok();
    let expect: Vec<u64> = buffers().iter().map(|b| sum(b)).collect();
    const VARIANTS: [&str; 6] = ["vec_u8", "bytebuf", "shared_bytes", "shared_bytes.kept", "rayon", "sequential"];
    let mut results: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = vec![Default::default(); VARIANTS.len()];
    // Alternating: A B C D A B C D ...
    let only = only();
    for _ in 0..REPS {
        for (variant, r) in VARIANTS.iter().zip(&mut results) {
            if only.as_deref().is_some_and(|o| o != *variant) {
                continue;
            }
            let (dt, parent, workers) = run(variant, &expect);
            r.0.push(dt);
            r.1.push(parent);
            r.2.push(workers);
        }
    }
    for (variant, (times, parent, workers)) in VARIANTS.iter().zip(&results) {
        if times.is_empty() {
            continue;
        }
        report.emit("pool_bigdata", variant, stats::median(times), "s", times);
        report.emit("pool_bigdata", &format!("{variant}.rss_parent"), stats::median(parent), "MB", parent);
        if *variant != "rayon" && *variant != "sequential" {
            report.emit("pool_bigdata", &format!("{variant}.rss_workers"), stats::median(workers), "MB", workers);
        }
    }
}
