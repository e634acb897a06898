//! A probe of a queue with one async consumer and one blocking consumer (review42 L2: the
//! waker thread's pass-ons land on blocking sleepers): `mixed_probe N ROUNDS GAP_NS MAXSIZE`.
//! A producer process puts N ints, one every GAP_NS (a busy wait; 0: as fast as it can), on
//! a `Queue<u64>` (MAXSIZE 0: unbounded); a process awaits `get_async` in a loop on a
//! current-thread tokio runtime while another calls `get`. Each round prints msg/s from the
//! start line to the last message, each consumer's share, and the consumers' CPU ns per
//! message (the async one's waker thread included).

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
/// What a child returns: how many it got, when it started, when it ended, its CPU ns (a
/// producer's includes its busy waits: not printed).
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
    for _ in 0..2 {
        q.put(STOP).expect("put");
    }
    (0, t0, now(), cpu() - c0)
}

fn consume_blocking((q, _, _, start_line): Args) -> Outcome {
    start_line.wait().expect("start line");
    let (t0, c0) = (now(), cpu());
    let got = std::iter::from_fn(|| Some(q.get().expect("get"))).take_while(|&v| v != STOP).count();
    (got as u64, t0, now(), cpu() - c0)
}

fn consume_async((q, _, _, start_line): Args) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    start_line.wait().expect("start line");
    let (t0, c0) = (now(), cpu());
    let got = runtime.block_on(async {
        let mut got = 0;
        while q.get_async().await.expect("get") != STOP {
            got += 1;
        }
        got
    });
    (got, t0, now(), cpu() - c0)
}

fn main() {
    multiproc::init();
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: u64| args.get(i).map_or(default, |s| s.parse().unwrap());
    let (n, rounds, gap, maxsize) = (arg(1, 200_000), arg(2, 1), arg(3, 0), arg(4, 0));
    for _ in 0..rounds {
        let q = if maxsize == 0 { Queue::<u64>::new() } else { Queue::<u64>::with_maxsize(maxsize as usize) };
        let q = q.expect("queue");
        let start_line = Barrier::new(4).expect("barrier");
        let fork = |f: fn(Args) -> Outcome| {
            Process::new(f, (q.clone(), n, gap, start_line.clone()))
                .start_method(StartMethod::Fork)
                .start()
                .expect("start a child")
        };
        let children = [fork(consume_async), fork(consume_blocking), fork(produce)];
        start_line.wait().expect("start line");
        let outcomes: Vec<Outcome> = children.into_iter().map(|h| h.join().expect("child")).collect();
        let (t0, end) = outcomes.iter().fold((u64::MAX, 0), |(t0, end), o| (t0.min(o.1), end.max(o.2)));
        let [(by_async, ..), (by_blocking, ..), _] = outcomes[..] else { unreachable!() };
        assert_eq!(by_async + by_blocking, n, "every message taken once");
        let per = |o: &Outcome| o.3 as f64 / n as f64;
        println!(
            "gap {gap} ns, maxsize {maxsize}: {:.0} msg/s; taken async {by_async}, blocking {by_blocking}; \
             CPU ns/msg: async {:.0}, blocking {:.0}",
            n as f64 / ((end - t0) as f64 / 1e9),
            per(&outcomes[0]),
            per(&outcomes[1]),
        );
    }
}
