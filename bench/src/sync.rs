//! lock_uncontended, lock_contended and shared_array: the locks, a locked shared value
//! under contention, and reading a large shared array, as mp_bench.py measures them
//! (children use the fork start method, as Python's benchmarks do).

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Instant;

use multiproc::{
    Barrier, BoundedSemaphore, Lock, Process, ProcessHandle, RLock, RawArray, RawValue, Semaphore, StartMethod, Value,
};

use crate::stats::{self, Report};

/// lock_uncontended: ns per `acquire()` + release (dropping the guard) in one process,
/// after 1000 untimed pairs; median of 5 batches of 1M. Variants: `Lock`, `RLock`, and a
/// `BoundedSemaphore(1)` (whose acquire and release of a process's own permit take no
/// guard: one CAS each on its word, sem38). Not in `mp_bench.py`: `semaphore_counter`, a
/// `Semaphore(0)` as a counter of items, a `release()` (a producer's, which holds nothing:
/// the guarded way) then an `acquire()` whose permit is forgotten (an extra permit, held by
/// nobody) per pair (review51 M1).
pub fn lock_uncontended(report: &mut Report) {
    const N: u32 = 1_000_000;
    let lock = Lock::new().expect("lock");
    let rlock = RLock::new().expect("rlock");
    let semaphore = BoundedSemaphore::new(1).expect("semaphore");
    let counter = Semaphore::new(0).expect("semaphore");
    let mut run = |variant: &str, pair: &dyn Fn()| {
        for _ in 0..1000 {
            pair();
        }
        let samples: Vec<f64> = (0..5)
            .map(|_| {
                let t0 = Instant::now();
                for _ in 0..N {
                    pair();
                }
                t0.elapsed().as_nanos() as f64 / f64::from(N)
            })
            .collect();
        report.emit("lock_uncontended", variant, stats::median(&samples), "ns", &samples);
    };
    run("lock", &|| drop(black_box(lock.acquire())));
    run("rlock", &|| drop(black_box(rlock.acquire())));
    run("semaphore", &|| drop(black_box(semaphore.acquire())));
    run("semaphore_counter", &|| {
        counter.release();
        black_box(counter.acquire()).expect("an item").forget();
    });
}

/// The clock every process of a benchmark reads: set before the children are forked, so
/// that their `Instant`s and ours measure from the same point.
static BASE: OnceLock<Instant> = OnceLock::new();

fn since_base() -> u64 {
    BASE.get().expect("set before forking").elapsed().as_nanos() as u64
}

fn locked_increments(args: (Value<i32>, u32, Barrier)) -> (u64, u64) {
    let (v, k, barrier) = args;
    barrier.wait().expect("barrier");
    let t0 = since_base();
    for _ in 0..k {
        *v.lock() += 1;
    }
    (t0, since_base())
}

fn semaphore_increments(args: (Semaphore, RawValue<i32>, u32, Barrier)) -> (u64, u64) {
    let (sem, v, k, barrier) = args;
    barrier.wait().expect("barrier");
    let t0 = since_base();
    for _ in 0..k {
        let _permit = sem.acquire().expect("acquire");
        v.set(v.get() + 1);
    }
    (t0, since_base())
}

/// lock_contended: P fork children each do K = 100 000 `*v.lock() += 1` on one
/// `Value<i32>`, started together by a barrier; increments/s over the whole span, median
/// of 3 repetitions; count_exact = 1 when every final count was P * K.
///
/// Not in `mp_bench.py` (compare.py shows "-" for CPython): `semaphore_2proc`, 2 children
/// each doing K acquires of a `Semaphore(1)` (a lock across processes) with
/// `v.set(v.get() + 1)` on a `RawValue<i32>` under each permit (about the 2proc variant's
/// work); a permit of one's own in one's own slot goes without the guard (sem38), and each
/// process keeps its slot (sem40), but a permit given back while the other waits goes the
/// guarded way, which wakes it. `semaphore2_2proc`, the same at a `Semaphore(2)`: neither
/// child ever waits (each holds at most one of the two permits), so it measures the fast
/// path contended on the word's cache line, no turns (review51 L4). count_exact covers the
/// 1proc and 2proc variants and `semaphore_2proc`; the `Semaphore(2)`'s increments race by
/// design.
pub fn lock_contended(report: &mut Report) {
    const K: u32 = 100_000;
    BASE.get_or_init(Instant::now);
    let mut exact = true;
    // The rate of `procs` children started together, each running `child` K times, over
    // the whole span.
    let rate = |procs: u32, start: &dyn Fn(Barrier) -> ProcessHandle<(u64, u64)>| {
        let barrier = Barrier::new(procs as usize + 1).expect("barrier");
        let children: Vec<_> = (0..procs).map(|_| start(barrier.clone())).collect();
        barrier.wait().expect("barrier");
        let spans: Vec<(u64, u64)> = children.into_iter().map(|c| c.join().expect("join")).collect();
        let start = spans.iter().map(|s| s.0).min().unwrap_or(0);
        let end = spans.iter().map(|s| s.1).max().unwrap_or(0);
        f64::from(procs * K) / ((end - start) as f64 / 1e9)
    };
    for (variant, procs) in [("1proc", 1u32), ("2proc", 2)] {
        let mut rates = Vec::new();
        for _ in 0..3 {
            let v = Value::new(0i32).expect("value");
            rates.push(rate(procs, &|barrier| {
                Process::new(locked_increments, (v.clone(), K, barrier))
                    .start_method(StartMethod::Fork)
                    .start()
                    .expect("start")
            }));
            if v.get() != (procs * K) as i32 {
                eprintln!("lock_contended: {variant} final count {} != {}", v.get(), procs * K);
                exact = false;
            }
        }
        report.emit("lock_contended", variant, stats::median(&rates), "incr/s", &rates);
    }
    for (variant, permits) in [("semaphore_2proc", 1), ("semaphore2_2proc", 2)] {
        let mut rates = Vec::new();
        for _ in 0..3 {
            let sem = Semaphore::new(permits).expect("semaphore");
            let v = RawValue::new(0i32).expect("value");
            rates.push(rate(2, &|barrier| {
                Process::new(semaphore_increments, (sem.clone(), v.clone(), K, barrier))
                    .start_method(StartMethod::Fork)
                    .start()
                    .expect("start")
            }));
            if permits == 1 && v.get() != (2 * K) as i32 {
                eprintln!("lock_contended: {variant} final count {} != {}", v.get(), 2 * K);
                exact = false;
            }
        }
        report.emit("lock_contended", variant, stats::median(&rates), "incr/s", &rates);
    }
    report.emit("lock_contended", "count_exact", if exact { 1.0 } else { 0.0 }, "bool", &[]);
    if !exact {
        eprintln!("lock_contended: lost increments");
        std::process::exit(1);
    }
}

/// The sum of `xs` with independent accumulators, so that the additions do not wait for
/// each other and the loop runs at memory speed.
fn sum(xs: &[f64]) -> f64 {
    const LANES: usize = 16;
    let mut acc = [0.0f64; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest: f64 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (a, x) in acc.iter_mut().zip(chunk) {
            *a += x;
        }
    }
    acc.iter().sum::<f64>() + rest
}

fn sum_passes(args: (RawArray<f64>, u32)) -> Vec<(u64, f64)> {
    let (array, passes) = args;
    // SAFETY: the parent filled the array before forking this child and writes no more.
    let xs = unsafe { array.as_slice() };
    (0..passes)
        .map(|_| {
            let t0 = Instant::now();
            let s = black_box(sum(black_box(xs)));
            (t0.elapsed().as_nanos() as u64, s)
        })
        .collect()
}

/// shared_array: a fork child sums a 10M-element shared `RawArray<f64>` (filled with 1.0
/// by the parent) 8 times; GB/s of the first pass (with page faults) and the median of
/// the others.
pub fn shared_array(report: &mut Report) {
    const LEN: usize = 10_000_000;
    const PASSES: u32 = 8;
    let array = RawArray::<f64>::new(LEN).expect("array");
    // SAFETY: no other process has the array yet.
    unsafe { array.as_mut_slice() }.fill(1.0);
    let child =
        Process::new(sum_passes, (array.clone(), PASSES)).start_method(StartMethod::Fork).start().expect("start");
    let passes = child.join().expect("join");
    if let Some((_, wrong)) = passes.iter().find(|(_, s)| *s != LEN as f64) {
        eprintln!("shared_array: wrong sum {wrong}");
        std::process::exit(1);
    }
    let rates: Vec<f64> = passes.iter().map(|(ns, _)| (LEN * 8) as f64 / *ns as f64).collect();
    report.emit("shared_array", "native.first", rates[0], "GB/s", &[]);
    report.emit("shared_array", "native", stats::median(&rates[1..]), "GB/s", &rates[1..]);
}
