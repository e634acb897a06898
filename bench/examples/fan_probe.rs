//! A probe for `perf stat` / `perf sched`: `queue_fan`'s measure alone (`fan_probe P N
//! ROUNDS`: P producer and P consumer processes on one `Queue<u64>`, N ints in all, each
//! round printing msg/s from the start line to the last message).

use multiproc::{Barrier, Process, Queue, StartMethod};

/// CLOCK_MONOTONIC in ns: the same clock in every process.
fn now() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes the one timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// (sum, start, end).
fn produce(args: (Queue<u64>, u64, Barrier)) -> (u64, u64, u64) {
    args.2.wait().expect("start line");
    let t0 = now();
    for i in 0..args.1 {
        args.0.put(i).expect("put");
    }
    (0, t0, now())
}

fn consume(args: (Queue<u64>, u64, Barrier)) -> (u64, u64, u64) {
    args.2.wait().expect("start line");
    let t0 = now();
    let sum = (0..args.1).map(|_| args.0.get().expect("get")).sum();
    (sum, t0, now())
}

fn main() {
    multiproc::init();
    let args: Vec<String> = std::env::args().collect();
    let p: u64 = args.get(1).map_or(8, |s| s.parse().unwrap());
    let n: u64 = args.get(2).map_or(400_000, |s| s.parse().unwrap());
    let rounds: usize = args.get(3).map_or(1, |s| s.parse().unwrap());
    for _ in 0..rounds {
        let q = Queue::<u64>::new().expect("queue");
        let each = n / p;
        let start_line = Barrier::new(2 * p as usize + 1).expect("barrier");
        let fork = |f: fn((Queue<u64>, u64, Barrier)) -> (u64, u64, u64)| {
            Process::new(f, (q.clone(), each, start_line.clone()))
                .start_method(StartMethod::Fork)
                .start()
                .expect("start a child")
        };
        let children: Vec<_> = (0..p).map(|_| fork(consume)).chain((0..p).map(|_| fork(produce))).collect();
        start_line.wait().expect("start line");
        let parent_t0 = now();
        let (mut sum, mut t0, mut end) = (0, u64::MAX, 0);
        for h in children {
            let (s, a, b) = h.join().expect("child");
            (sum, t0, end) = (sum + s, t0.min(a), end.max(b));
        }
        assert_eq!(sum, p * (each * (each - 1) / 2), "fan: bad sum");
        let rate = |from: u64| (each * p) as f64 / ((end - from) as f64 / 1e9);
        println!("p{p}c{p} {:.0} msg/s (from the parent's start: {:.0})", rate(t0), rate(parent_t0));
    }
}
