//! A probe of a queue with async and blocking consumers (review42 L2: the waker thread's
//! pass-ons land on blocking sleepers): `mixed_probe N ROUNDS GAP_NS MAXSIZE [ASYNC BLOCKING
//! PRODUCERS]` (default one of each). The producer processes put N ints in all, each one
//! every GAP_NS (a busy wait; 0: as fast as it can), on a `Queue<u64>` (MAXSIZE 0:
//! unbounded); ASYNC processes await `get_async` in a loop on a current-thread tokio runtime
//! while BLOCKING others call `get`. Each round prints msg/s from the start line to the last
//! message, the consumers' shares, and their CPU ns per message (the waker threads
//! included).

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

/// This process's CPU time, ns (the waker threads' included).
fn cpu() -> u64 {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// Ends a consumer.
const STOP: u64 = u64::MAX;

/// What a child gets: the queue, how many ints, the gap between puts, the start line.
type Args = (Queue<u64>, u64, u64, Barrier);
/// What a child returns: how many it got, when it started, when it put or took its last
/// message, its CPU ns (a producer's includes its busy waits: not printed).
type Outcome = (u64, u64, u64, u64);

fn produce((q, n, gap, start_line): Args) -> Outcome {
    start_line.wait().expect("start line");
    let (t0, c0) = (now(), cpu());
    let mut next = t0;
    for i in 0..n {
        while now() < next {
            std::hint::spin_loop();
        }
        next += gap;
        q.put(i).expect("put");
    }
    (0, t0, now(), cpu() - c0)
}

fn consume_blocking((q, _, _, start_line): Args) -> Outcome {
    start_line.wait().expect("start line");
    let (t0, c0) = (now(), cpu());
    let (mut got, mut last) = (0, t0);
    while q.get().expect("get") != STOP {
        (got, last) = (got + 1, now());
    }
    (got, t0, last, cpu() - c0)
}

fn consume_async((q, _, _, start_line): Args) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    start_line.wait().expect("start line");
    let (t0, c0) = (now(), cpu());
    let (got, last) = runtime.block_on(async {
        let (mut got, mut last) = (0, t0);
        while q.get_async().await.expect("get") != STOP {
            (got, last) = (got + 1, now());
        }
        (got, last)
    });
    (got, t0, last, cpu() - c0)
}

fn main() {
    multiproc::init();
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: u64| args.get(i).map_or(default, |s| s.parse().unwrap());
    let (n, rounds, gap, maxsize) = (arg(1, 200_000), arg(2, 1), arg(3, 0), arg(4, 0));
    let (asyncs, blockings, producers) = (arg(5, 1), arg(6, 1), arg(7, 1));
    let consumers = asyncs + blockings;
    for _ in 0..rounds {
        let q = if maxsize == 0 { Queue::<u64>::new() } else { Queue::<u64>::with_maxsize(maxsize as usize) };
        let q = q.expect("queue");
        let start_line = Barrier::new((consumers + producers + 1) as usize).expect("barrier");
        let fork = |f: fn(Args) -> Outcome, n: u64| {
            Process::new(f, (q.clone(), n, gap, start_line.clone()))
                .start_method(StartMethod::Fork)
                .start()
                .expect("start a child")
        };
        let takers: Vec<_> =
            (0..consumers).map(|i| fork(if i < asyncs { consume_async } else { consume_blocking }, 0)).collect();
        let putters: Vec<_> =
            (0..producers).map(|i| fork(produce, n / producers + u64::from(i < n % producers))).collect();
        start_line.wait().expect("start line");
        let (mut t0, mut end) = (u64::MAX, 0);
        for h in putters {
            let (_, a, _, _) = h.join().expect("producer");
            t0 = t0.min(a);
        }
        // The last message is in: one stop for each consumer.
        for _ in 0..consumers {
            q.put(STOP).expect("put");
        }
        // Messages taken and CPU ns, by the async consumers and by the blocking ones.
        let (mut taken, mut cpu_ns) = ([0u64; 2], [0u64; 2]);
        for (i, h) in takers.into_iter().enumerate() {
            let (got, a, b, c) = h.join().expect("consumer");
            let kind = usize::from(i as u64 >= asyncs);
            (taken[kind], cpu_ns[kind]) = (taken[kind] + got, cpu_ns[kind] + c);
            (t0, end) = (t0.min(a), end.max(b));
        }
        assert_eq!(taken[0] + taken[1], n, "every message taken once");
        let per = |ns: u64| ns as f64 / n as f64;
        println!(
            "a{asyncs}b{blockings}p{producers} gap {gap} ns, maxsize {maxsize}: {:.0} msg/s; taken async {}, \
             blocking {}; CPU ns/msg: async {:.0}, blocking {:.0}",
            n as f64 / ((end - t0) as f64 / 1e9),
            taken[0],
            taken[1],
            per(cpu_ns[0]),
            per(cpu_ns[1]),
        );
    }
}
