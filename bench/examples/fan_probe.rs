//! A probe for `perf stat` / `perf sched`: `queue_fan`'s measure alone (`fan_probe P N
//! ROUNDS`: P producer and P consumer processes on one `Queue<u64>`, N ints in all, each
//! round printing msg/s from the start line to the last message).

use multiproc::{Barrier, Process, Queue, StartMethod};

fn clock(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes the one timespec it is given.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC in ns: the same clock in every process.
fn now() -> u64 {
    clock(libc::CLOCK_MONOTONIC)
}

/// This process's CPU time, ns.
fn cpu() -> u64 {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// What a child gets: the queue, how many ints, the start line.
type Args = (Queue<u64>, u64, Barrier);
/// What a child returns: the sum of what it got, when it started, when it ended, its CPU ns.
type Outcome = (u64, u64, u64, u64);

fn produce(args: Args) -> Outcome {
    args.2.wait().expect("start line");
    let (t0, c0) = (now(), cpu());
    for i in 0..args.1 {
        args.0.put(i).expect("put");
    }
    (0, t0, now(), cpu() - c0)
}

fn consume(args: Args) -> Outcome {
    args.2.wait().expect("start line");
    let (t0, c0) = (now(), cpu());
    let sum = (0..args.1).map(|_| args.0.get().expect("get")).sum();
    (sum, t0, now(), cpu() - c0)
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
        let fork = |f: fn(Args) -> Outcome| {
            Process::new(f, (q.clone(), each, start_line.clone()))
                .start_method(StartMethod::Fork)
                .start()
                .expect("start a child")
        };
        let children: Vec<_> = (0..p).map(|_| fork(consume)).chain((0..p).map(|_| fork(produce))).collect();
        start_line.wait().expect("start line");
        let parent_t0 = now();
        let (mut sum, mut t0, mut end) = (0, u64::MAX, 0);
        let mut cpu_ns = [0u64; 2];
        for (i, h) in children.into_iter().enumerate() {
            let (s, a, b, c) = h.join().expect("child");
            (sum, t0, end) = (sum + s, t0.min(a), end.max(b));
            cpu_ns[usize::from(i as u64 >= p)] += c;
        }
        assert_eq!(sum, p * (each * (each - 1) / 2), "fan: bad sum");
        let rate = |from: u64| (each * p) as f64 / ((end - from) as f64 / 1e9);
        let per = |ns: u64| ns as f64 / (each * p) as f64;
        println!(
            "p{p}c{p} {:.0} msg/s (from the parent's start: {:.0}); CPU ns/msg: get {:.0}, put {:.0}",
            rate(t0),
            rate(parent_t0),
            per(cpu_ns[0]),
            per(cpu_ns[1])
        );
    }
}
