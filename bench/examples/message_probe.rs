//! A probe for `perf stat` / `perf record`: one `message_cost` variant in a loop, nothing
//! else (`message_probe VARIANT COUNT`, VARIANT one of typed1k, vec_u8, bytes1k, bytes8, int,
//! queue_int (a `Queue<u64>` put and get), queue_bytes1k (`mp-bench`'s `queue.bytes1k`
//! message, a 1 KiB `ByteBuf` in an enum, put and got), queue_unit_variant (a unit variant
//! put and got), queue_many_variants (32 unit variants round robin), joinable_int (a `JoinableQueue<u64>` put, get and `task_done`), pingpong2
//! and pingpong1 (8-byte round trips between two processes pinned to two CPUs, or to one),
//! bounded2 and stream2 (ints streamed through a `Queue<u64>` bounded to 64 items, or not,
//! between two pinned processes), stream2cpu (stream2, printing each side's own CPU time
//! per message besides the wall time: on a loaded machine, where the wall clock says
//! little, what a put and a take cost, and which of the two sets a stream's rate)).

use multiproc::{Connection, Pipe, Process, StartMethod};
#[path = "../src/typed.rs"]
mod typed;

use typed::{Typed1k, Typed1kBytes};

fn main() {
    multiproc::init();
    let args: Vec<String> = std::env::args().collect();
    let variant = args.get(1).map_or("typed1k", String::as_str);
    let n: usize = args.get(2).map_or(1_000_000, |s| s.parse().unwrap());
    match variant {
        "typed1k" => {
            let (a, b) = Pipe::<Typed1k>::new().unwrap();
            let message = Typed1k { id: 7, seq: 0, flags: 3, text: "x".repeat(1024) };
            for _ in 0..n {
                a.send(message.clone()).unwrap();
                std::hint::black_box(b.recv().unwrap());
            }
        }
        "vec_u8" => {
            let (a, b) = Pipe::<Typed1kBytes>::new().unwrap();
            let message = Typed1kBytes { id: 7, seq: 0, flags: 3, data: vec![b'x'; 1024] };
            for _ in 0..n {
                a.send(message.clone()).unwrap();
                std::hint::black_box(b.recv().unwrap());
            }
        }
        "bytes1k" => {
            let (a, b) = Pipe::<u64>::new().unwrap();
            let bytes = vec![b'x'; 1024];
            for _ in 0..n {
                a.send_bytes(&bytes).unwrap();
                std::hint::black_box(b.recv_bytes().unwrap());
            }
        }
        "bytes8" => {
            // 8 raw bytes sent and received in one process: the raw path without a wait
            // (for callgrind).
            let (a, b) = Pipe::<u64>::new().unwrap();
            for i in 0..n as u64 {
                a.send_bytes(&i.to_le_bytes()).unwrap();
                std::hint::black_box(b.recv_bytes().unwrap());
            }
        }
        "int" => {
            let (a, b) = Pipe::<u64>::new().unwrap();
            for i in 0..n as u64 {
                a.send(i).unwrap();
                std::hint::black_box(b.recv().unwrap());
            }
        }
        "queue_int" => {
            let q = multiproc::Queue::<u64>::new().unwrap();
            for i in 0..n as u64 {
                q.put(i).unwrap();
                std::hint::black_box(q.get().unwrap());
            }
        }
        "queue_bytes1k" => {
            // mp-bench queue_throughput's queue.bytes1k message: a 1 KiB ByteBuf in an enum.
            #[derive(serde::Serialize, serde::Deserialize)]
            enum Msg {
                Int(u64),
                Bytes(serde_bytes::ByteBuf),
            }
            let q = multiproc::Queue::<Msg>::new().unwrap();
            let bytes = serde_bytes::ByteBuf::from(vec![b'x'; 1024]);
            for _ in 0..n {
                q.put(Msg::Bytes(bytes.clone())).unwrap();
                match std::hint::black_box(q.get().unwrap()) {
                    Msg::Bytes(b) => assert_eq!(b.len(), 1024),
                    Msg::Int(_) => unreachable!(),
                }
            }
        }
        "queue_unit_variant" => {
            // A unit variant put and got: the variant check's cost per message (fix123).
            #[derive(serde::Serialize, serde::Deserialize)]
            enum Op {
                Start,
                Stop,
            }
            let q = multiproc::Queue::<Op>::new().unwrap();
            for _ in 0..n {
                q.put(Op::Stop).unwrap();
                match std::hint::black_box(q.get().unwrap()) {
                    Op::Stop => {}
                    Op::Start => unreachable!(),
                }
            }
        }
        "queue_many_variants" => {
            // 32 unit variants put and got round robin: the variant check past one slot per
            // variant (review162 L2).
            macro_rules! many {
                ($($v:ident),*) => {
                    #[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
                    enum Many { $($v),* }
                    const ALL: &[Many] = &[$(Many::$v),*];
                };
            }
            many!(
                V00, V01, V02, V03, V04, V05, V06, V07, V08, V09, V10, V11, V12, V13, V14, V15, V16, V17, V18, V19,
                V20, V21, V22, V23, V24, V25, V26, V27, V28, V29, V30, V31
            );
            let q = multiproc::Queue::<Many>::new().unwrap();
            for i in 0..n {
                q.put(ALL[i % ALL.len()]).unwrap();
                std::hint::black_box(q.get().unwrap());
            }
        }
        "joinable_int" => {
            let q = multiproc::JoinableQueue::<u64>::new().unwrap();
            for i in 0..n as u64 {
                q.put(i).unwrap();
                std::hint::black_box(q.get().unwrap());
                q.task_done().unwrap();
            }
        }
        "pingpong2" | "pingpong1" => {
            // Round trips of 8 raw bytes with the two processes pinned to CPUs 0 and 1
            // (`pingpong2`) or both to CPU 0 (`pingpong1`); prints the median in µs.
            let other_cpu = usize::from(variant == "pingpong2");
            pin(0);
            let (a, b) = Pipe::<u64>::new().unwrap();
            let child = Process::new(echo_pinned, (b, n, other_cpu)).start_method(StartMethod::Fork).start().unwrap();
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                let t0 = std::time::Instant::now();
                a.send_bytes(&[0u8; 8]).unwrap();
                std::hint::black_box(a.recv_bytes().unwrap());
                samples.push(t0.elapsed().as_secs_f64() * 1e6);
            }
            child.join().unwrap();
            samples.sort_by(f64::total_cmp);
            println!(
                "{variant} median {:.3} us p10 {:.3} p90 {:.3}",
                samples[n / 2],
                samples[n / 10],
                samples[n * 9 / 10]
            );
        }
        "stream2cpu" => {
            // stream2, printing each side's own CPU time per message (thread CPU clock):
            // what a put and a take cost, less the time either side was not running.
            pin(0);
            let q = multiproc::Queue::<u64>::new().unwrap();
            let child = Process::new(drain_cpu, (q.clone(), n)).start_method(StartMethod::Fork).start().unwrap();
            q.put(0).unwrap();
            while !q.is_empty() {
                std::thread::yield_now();
            }
            let (t0, c0) = (std::time::Instant::now(), thread_cpu_ns());
            for i in 0..n as u64 {
                q.put(i).unwrap();
            }
            let put_cpu = thread_cpu_ns() - c0;
            let get_cpu = child.join().unwrap();
            println!(
                "stream2cpu {:.1} ns per message wall, put {:.1} ns cpu, get {:.1} ns cpu",
                t0.elapsed().as_secs_f64() * 1e9 / n as f64,
                put_cpu as f64 / n as f64,
                get_cpu as f64 / n as f64
            );
        }
        "bounded2" | "stream2" => {
            // `Queue<u64>` ints streamed from this process (CPU 0) to a child (CPU 1), the
            // queue bounded to 64 items (`bounded2`: the producer often finds it full and
            // reads the consumers' counts) or not (`stream2`); prints ns per message.
            pin(0);
            let q = if variant == "bounded2" {
                multiproc::Queue::<u64>::with_maxsize(64).unwrap()
            } else {
                multiproc::Queue::<u64>::new().unwrap()
            };
            let child = Process::new(drain_pinned, (q.clone(), n)).start_method(StartMethod::Fork).start().unwrap();
            // The child is there before the clock starts.
            q.put(0).unwrap();
            while !q.is_empty() {
                std::thread::yield_now();
            }
            let t0 = std::time::Instant::now();
            for i in 0..n as u64 {
                q.put(i).unwrap();
            }
            child.join().unwrap();
            println!("{variant} {:.1} ns per message", t0.elapsed().as_secs_f64() * 1e9 / n as f64);
        }
        other => panic!("unknown variant {other}"),
    }
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn drain_pinned(args: (multiproc::Queue<u64>, usize)) {
    let (q, n) = args;
    pin(1);
    for _ in 0..=n {
        std::hint::black_box(q.get().unwrap());
    }
}

fn thread_cpu_ns() -> u64 {
    // SAFETY: a zeroed timespec is valid; the call writes it.
    unsafe {
        let mut t: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t);
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    }
}

fn drain_cpu(args: (multiproc::Queue<u64>, usize)) -> u64 {
    let (q, n) = args;
    pin(1);
    std::hint::black_box(q.get().unwrap());
    let c0 = thread_cpu_ns();
    for _ in 0..n {
        std::hint::black_box(q.get().unwrap());
    }
    thread_cpu_ns() - c0
}

fn echo_pinned(args: (Connection<u64>, usize, usize)) {
    let (conn, n, cpu) = args;
    pin(cpu);
    for _ in 0..n {
        conn.send_bytes(&conn.recv_bytes().unwrap()).unwrap();
    }
}
