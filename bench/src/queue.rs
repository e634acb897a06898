//! Queues and pipes: queue_throughput, queue_pingpong, pipe_pingpong, pipe_throughput, with
//! the methodology of `mp_bench.py` (same N, repetitions, warm-up and timed region; fork
//! children; timestamps on the monotonic clock, comparable across processes).

use std::sync::OnceLock;
use std::time::Instant;

use multiproc::{Barrier, Connection, Pipe, Process, ProcessHandle, Queue, SimpleQueue, StartMethod, Value};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::stats::{self, Report};
use crate::typed::{Typed1k, Typed1kBytes};

/// The benchmark process's start: fork children inherit it, so `now()` reads the same clock
/// in every process.
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn now() -> u64 {
    EPOCH.get().expect("set before the children fork").elapsed().as_nanos() as u64
}

fn fork<A, R, F, M>(target: F, args: A) -> ProcessHandle<R>
where
    A: Serialize + serde::de::DeserializeOwned + 'static,
    R: Serialize + serde::de::DeserializeOwned + 'static,
    F: multiproc::Target<A, M, Output = R>,
{
    Process::new(target, args).start_method(StartMethod::Fork).start().expect("start a child")
}

/// What is streamed: the loop index, or one payload over and over.
#[derive(Clone, Copy, Serialize, Deserialize)]
enum Payload {
    Int,
    Bytes(usize),
}

/// A channel of either kind, as each end of a stream sees it.
#[derive(Serialize, Deserialize)]
enum Chan {
    Queue(Queue<Msg>),
    Simple(SimpleQueue<Msg>),
    Send(Connection<Msg>),
    SendBytes(Connection<()>),
}

/// The message type: an int or bytes (Python sends either through the same queue).
#[derive(Serialize, Deserialize)]
enum Msg {
    Int(u64),
    Bytes(ByteBuf),
}

impl Chan {
    fn put(&self, msg: Msg, raw: &[u8]) {
        match self {
            Chan::Queue(q) => q.put(msg).map_err(|e| e.to_string()),
            Chan::Simple(q) => q.put(msg).map_err(|e| e.to_string()),
            Chan::Send(c) => c.send(msg).map_err(|e| e.to_string()),
            Chan::SendBytes(c) => c.send_bytes(raw).map_err(|e| e.to_string()),
        }
        .expect("put");
    }

    fn get(&self) -> Msg {
        match self {
            Chan::Queue(q) => q.get().map_err(|e| e.to_string()),
            Chan::Simple(q) => q.get().map_err(|e| e.to_string()),
            Chan::Send(c) => c.recv().map_err(|e| e.to_string()),
            Chan::SendBytes(c) => c.recv_bytes().map(|b| Msg::Bytes(ByteBuf::from(b))).map_err(|e| e.to_string()),
        }
        .expect("get")
    }
}

type Signals = (SimpleQueue<()>, SimpleQueue<()>, SimpleQueue<(char, u64, u64)>);

fn stream_consumer(args: (Chan, u64, Signals)) {
    let (chan, n, (ready, _go, out)) = args;
    ready.put(()).unwrap();
    let mut last = Msg::Int(0);
    for _ in 0..n {
        last = chan.get();
    }
    let t1 = now();
    let check = match last {
        Msg::Int(i) => i,
        Msg::Bytes(b) => b.len() as u64,
    };
    out.put(('c', t1, check)).unwrap();
}

fn stream_producer(args: (Chan, u64, Payload, Signals)) {
    let (chan, n, payload, (_ready, go, out)) = args;
    go.get().unwrap();
    let t0 = now();
    match payload {
        Payload::Int => {
            for i in 0..n {
                chan.put(Msg::Int(i), &[]);
            }
        }
        Payload::Bytes(len) => {
            let bytes = ByteBuf::from(vec![b'x'; len]);
            for _ in 0..n {
                chan.put(Msg::Bytes(bytes.clone()), &bytes);
            }
        }
    }
    out.put(('p', t0, 0)).unwrap();
}

/// One repetition: a fresh channel, consumer and producer; returns msg/s.
fn stream_once(kind: &str, n: u64, payload: Payload) -> f64 {
    let (rx, tx) = match kind {
        "queue" => {
            let q = Queue::new().unwrap();
            (Chan::Queue(q.clone()), Chan::Queue(q))
        }
        "simplequeue" => {
            let q = SimpleQueue::new().unwrap();
            (Chan::Simple(q.clone()), Chan::Simple(q))
        }
        "send" => {
            let (r, w) = Pipe::one_way().unwrap();
            (Chan::Send(r), Chan::Send(w))
        }
        _ => {
            let (r, w) = Pipe::one_way().unwrap();
            (Chan::SendBytes(r), Chan::SendBytes(w))
        }
    };
    let (ready, go, out) = (SimpleQueue::new().unwrap(), SimpleQueue::new().unwrap(), SimpleQueue::new().unwrap());
    let signals = || -> Signals { (ready.clone(), go.clone(), out.clone()) };
    let consumer = fork(stream_consumer, (rx, n, signals()));
    let producer = fork(stream_producer, (tx, n, payload, signals()));
    ready.get().unwrap();
    go.put(()).unwrap();
    let (mut t0, mut t1, mut last) = (0, 0, 0);
    for _ in 0..2 {
        match out.get().unwrap() {
            ('p', t, _) => t0 = t,
            (_, t, check) => (t1, last) = (t, check),
        }
    }
    consumer.join().unwrap();
    producer.join().unwrap();
    let expected = match payload {
        Payload::Int => n - 1,
        Payload::Bytes(len) => len as u64,
    };
    assert_eq!(last, expected, "stream {kind}: bad last message");
    n as f64 / ((t1 - t0) as f64 / 1e9)
}

fn stream_bench(report: &mut Report, bench: &str, plan: &[(&str, &str, Payload, u64)]) {
    for &(variant, kind, payload, n) in plan {
        let rates: Vec<f64> = (0..3).map(|_| stream_once(kind, n, payload)).collect();
        report.emit(bench, variant, stats::median(&rates), "msg/s", &rates);
    }
}

/// queue_throughput: one producer process → one consumer process, msg/s.
pub fn queue_throughput(report: &mut Report) {
    EPOCH.get_or_init(Instant::now);
    stream_bench(
        report,
        "queue_throughput",
        &[
            ("queue.int", "queue", Payload::Int, 100_000),
            ("queue.bytes1k", "queue", Payload::Bytes(1024), 50_000),
            ("simplequeue.int", "simplequeue", Payload::Int, 100_000),
            ("simplequeue.bytes1k", "simplequeue", Payload::Bytes(1024), 50_000),
        ],
    );
}

fn produce_ints(args: (Queue<u64>, u64)) {
    for i in 0..args.1 {
        args.0.put(i).expect("put");
    }
}

fn consume_ints(args: (Queue<u64>, u64)) -> u64 {
    (0..args.1).map(|_| args.0.get().expect("get")).sum()
}

/// A fan producer: waits at the start line, puts its ints; returns when it left the start
/// line and when it finished.
fn fan_produce(args: (Queue<u64>, u64, Barrier)) -> (u64, u64) {
    args.2.wait().expect("start line");
    let start = now();
    for i in 0..args.1 {
        args.0.put(i).expect("put");
    }
    (start, now())
}

/// A fan consumer: waits at the start line, sums what it gets; returns the sum, when it
/// left the start line and when it finished.
fn fan_consume(args: (Queue<u64>, u64, Barrier)) -> (u64, u64, u64) {
    args.2.wait().expect("start line");
    let start = now();
    let sum = (0..args.1).map(|_| args.0.get().expect("get")).sum();
    (sum, start, now())
}

/// `queue.int` with `p` producer and `p` consumer processes on one queue: msg/s from the
/// moment all of them are started and at the start line to the last one's last message.
/// Process start-up is outside the timed region: forking 16 children of a parent that
/// earlier benches grew costs more than forking 2, which is not the queue's cost.
///
/// The clock starts when the first process leaves the start line, not when the parent
/// does: woken with sixteen others on two processors, the parent often ran milliseconds
/// after the children had started, which left their first messages out of the timed
/// region (on a loaded machine the p8c8 rate read 2x to 6x what the children's own
/// clocks gave).
fn fan_once(p: u64, n: u64) -> f64 {
    EPOCH.get_or_init(Instant::now);
    let q = Queue::<u64>::new().expect("queue");
    let each = n / p;
    let start_line = Barrier::new(2 * p as usize + 1).expect("barrier");
    let consumers: Vec<_> = (0..p).map(|_| fork(fan_consume, (q.clone(), each, start_line.clone()))).collect();
    let producers: Vec<_> = (0..p).map(|_| fork(fan_produce, (q.clone(), each, start_line.clone()))).collect();
    start_line.wait().expect("start line");
    let (mut t0, mut end) = (now(), 0);
    for h in producers {
        let (s, e) = h.join().expect("producer");
        (t0, end) = (t0.min(s), end.max(e));
    }
    let mut sum = 0;
    for h in consumers {
        let (total, s, e) = h.join().expect("consumer");
        sum += total;
        (t0, end) = (t0.min(s), end.max(e));
    }
    assert_eq!(sum, p * (each * (each - 1) / 2), "fan: bad sum");
    (each * p) as f64 / ((end - t0) as f64 / 1e9)
}

/// queue_fan: the cost of a queue as its users grow (issue 14: 8 producers and 8
/// consumers at least 0.8x the 1-to-1 figure), measured the same way for both, in
/// alternating runs; every process is started before the clock starts.
pub fn queue_fan(report: &mut Report) {
    let n = 400_000;
    let mut rates = [Vec::new(), Vec::new()];
    for _ in 0..3 {
        rates[0].push(fan_once(1, n));
        rates[1].push(fan_once(8, n));
    }
    report.emit("queue_fan", "queue.int.p1c1", stats::median(&rates[0]), "msg/s", &rates[0]);
    report.emit("queue_fan", "queue.int.p8c8", stats::median(&rates[1]), "msg/s", &rates[1]);
}

/// CPU time of this process and its waited-for children so far, ns (`/proc/self/stat`:
/// utime, stime, cutime, cstime, in clock ticks of 10 ms).
fn cpu_ns() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name (field 2) may hold spaces: count fields after its ')'.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14-17 of stat are 12-15 here (field 3, the state, is index 0).
    let ticks: f64 = fields[11..15].iter().map(|f| f.parse::<f64>().expect("ticks")).sum();
    ticks * 1e7
}

fn echo_u64(args: (Queue<u64>, Queue<u64>, u64)) {
    for _ in 0..args.2 {
        args.1.put(args.0.get().expect("get")).expect("put");
    }
}

/// queue_cpu: the CPU time spinning costs (issue 14): CPU ns spent per message by both
/// processes together, and how many CPUs were busy on average (CPU time over wall time),
/// for a 1-to-1 stream of 2 M ints and 100 000 ping-pong round trips. Long runs, because
/// the kernel counts CPU time in 10 ms ticks.
pub fn queue_cpu(report: &mut Report) {
    let n = 2_000_000u64;
    let q = Queue::<u64>::new().expect("queue");
    let (c0, t0) = (cpu_ns(), Instant::now());
    let consumer = fork(consume_ints, (q.clone(), n));
    produce_ints((q.clone(), n));
    consumer.join().expect("consumer");
    let (cpu, wall) = (cpu_ns() - c0, t0.elapsed().as_nanos() as f64);
    report.emit("queue_cpu", "throughput.int.cpu_per_msg", cpu / n as f64, "ns", &[cpu / n as f64]);
    report.emit("queue_cpu", "throughput.int.cpus_busy", cpu / wall, "CPUs", &[cpu / wall]);

    let rounds = 100_000u64;
    let (there, back) = (Queue::<u64>::new().expect("queue"), Queue::<u64>::new().expect("queue"));
    let (c0, t0) = (cpu_ns(), Instant::now());
    let child = fork(echo_u64, (there.clone(), back.clone(), rounds));
    for i in 0..rounds {
        there.put(i).expect("put");
        assert_eq!(back.get().expect("get"), i);
    }
    child.join().expect("echo");
    let (cpu, wall) = (cpu_ns() - c0, t0.elapsed().as_nanos() as f64);
    report.emit("queue_cpu", "pingpong.int.cpu_per_round_trip", cpu / rounds as f64, "ns", &[cpu / rounds as f64]);
    report.emit("queue_cpu", "pingpong.int.cpus_busy", cpu / wall, "CPUs", &[cpu / wall]);
}

/// pipe_throughput: the same over a one-way pipe.
pub fn pipe_throughput(report: &mut Report) {
    EPOCH.get_or_init(Instant::now);
    stream_bench(
        report,
        "pipe_throughput",
        &[
            ("send.int", "send", Payload::Int, 100_000),
            ("send.bytes1k", "send", Payload::Bytes(1024), 50_000),
            ("send_bytes.bytes8", "send_bytes", Payload::Bytes(8), 100_000),
            ("send_bytes.bytes1k", "send_bytes", Payload::Bytes(1024), 50_000),
        ],
    );
}

const WARM: usize = 200;

fn echo_queue(args: (Chan, Chan, usize)) {
    let (qin, qout, n) = args;
    for _ in 0..n {
        qout.put(qin.get(), &[]);
    }
}

/// queue_pingpong: parent → child → parent over two queues, median µs per round trip.
pub fn queue_pingpong(report: &mut Report) {
    let n = 5000;
    for variant in ["queue.int", "simplequeue.int"] {
        let make = || match variant {
            "queue.int" => Chan::Queue(Queue::new().unwrap()),
            _ => Chan::Simple(SimpleQueue::new().unwrap()),
        };
        let (qin, qout) = (make(), make());
        let copy = |c: &Chan| match c {
            Chan::Queue(q) => Chan::Queue(q.clone()),
            Chan::Simple(q) => Chan::Simple(q.clone()),
            _ => unreachable!(),
        };
        let child = fork(echo_queue, (copy(&qin), copy(&qout), WARM + n));
        let mut samples = Vec::with_capacity(n);
        let mut last = 0;
        for i in 0..WARM + n {
            let t0 = Instant::now();
            qin.put(Msg::Int(i as u64), &[]);
            let r = qout.get();
            let dt = t0.elapsed();
            if i >= WARM {
                samples.push(dt.as_secs_f64() * 1e6);
            }
            if let Msg::Int(r) = r {
                last = r;
            }
        }
        assert_eq!(last, (WARM + n - 1) as u64, "pingpong: bad echo");
        child.join().unwrap();
        report.emit("queue_pingpong", variant, stats::median(&samples), "us", &samples);
    }
}

fn echo_conn(args: (Connection<u64>, usize, bool)) {
    let (conn, n, raw) = args;
    for _ in 0..n {
        if raw {
            conn.send_bytes(&conn.recv_bytes().unwrap()).unwrap();
        } else {
            conn.send(conn.recv().unwrap()).unwrap();
        }
    }
}

fn echo_typed(args: (Connection<Typed1k>, usize)) {
    let (conn, n) = args;
    for _ in 0..n {
        conn.send(conn.recv().unwrap()).unwrap();
    }
}

/// The typed 1 KiB round trips against raw 1 KiB ones, alternating in blocks so that both
/// see the same machine.
fn pipe_pingpong_1k(report: &mut Report, n: usize) {
    let (typed, typed_child) = Pipe::<Typed1k>::new().unwrap();
    let (raw, raw_child) = Pipe::<u64>::new().unwrap();
    let block = 500;
    let rounds = (WARM + n).div_ceil(block);
    let typed_echo = fork(echo_typed, (typed_child, rounds * block));
    let raw_echo = fork(echo_conn, (raw_child, rounds * block, true));
    let message = Typed1k { id: 7, seq: 0, flags: 3, text: "x".repeat(1024) };
    let bytes = vec![b'x'; 1024];
    let (mut typed_samples, mut raw_samples) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut ok = true;
    for round in 0..rounds {
        for i in 0..block {
            // `send` takes its message: the copy is made before the clock starts.
            let sent = message.clone();
            let t0 = Instant::now();
            typed.send(sent).unwrap();
            let r = typed.recv().unwrap();
            let dt = t0.elapsed();
            ok &= r == message;
            if round * block + i >= WARM {
                typed_samples.push(dt.as_secs_f64() * 1e6);
            }
        }
        for i in 0..block {
            let t0 = Instant::now();
            raw.send_bytes(&bytes).unwrap();
            let r = raw.recv_bytes().unwrap();
            let dt = t0.elapsed();
            ok &= r.len() == bytes.len();
            if round * block + i >= WARM {
                raw_samples.push(dt.as_secs_f64() * 1e6);
            }
        }
    }
    assert!(ok, "pipe pingpong 1k: bad echo");
    typed_echo.join().unwrap();
    raw_echo.join().unwrap();
    report.emit("pipe_pingpong", "send.typed1k", stats::median(&typed_samples), "us", &typed_samples);
    report.emit("pipe_pingpong", "send_bytes.bytes1k", stats::median(&raw_samples), "us", &raw_samples);
}

/// pipe_pingpong: parent → child → parent over one duplex pipe, median µs per round trip.
/// Beyond `mp_bench.py`'s variants: `send.typed1k` (a struct of a 1 KiB `String` and
/// three integers) against `send_bytes.bytes1k` (1 KiB raw), measured in alternating blocks.
pub fn pipe_pingpong(report: &mut Report) {
    let n = 10_000;
    for (variant, raw) in [("send.int", false), ("send_bytes.bytes8", true)] {
        let (a, b) = Pipe::<u64>::new().unwrap();
        let child = fork(echo_conn, (b, WARM + n, raw));
        let mut samples = Vec::with_capacity(n);
        let b8 = [0u8; 8];
        let mut ok = true;
        for i in 0..WARM + n {
            let t0 = Instant::now();
            if raw {
                a.send_bytes(&b8).unwrap();
                let r = a.recv_bytes().unwrap();
                ok = r == b8;
            } else {
                a.send(i as u64).unwrap();
                let r = a.recv().unwrap();
                ok = r == i as u64;
            }
            let dt = t0.elapsed();
            if i >= WARM {
                samples.push(dt.as_secs_f64() * 1e6);
            }
        }
        assert!(ok, "pipe pingpong: bad echo");
        child.join().unwrap();
        report.emit("pipe_pingpong", variant, stats::median(&samples), "us", &samples);
    }
    pipe_pingpong_1k(report, n);
}

/// message_cost (not in `mp_bench.py`): what a message costs its two ends, with no other
/// process and no wait in the way: median ns of a `send` and a `recv` of the same message
/// on one pipe in one thread, per variant (`typed1k`: [`Typed1k`]; `bytes1k`: 1 KiB with
/// `send_bytes`/`recv_bytes`; `int`: a `u64`; `typed1k.vec_u8`: [`Typed1kBytes`];
/// `typed1k.ref`: [`Typed1k`] sent by reference, as `send_bytes` sends its bytes, so that
/// no sent message is dropped inside the clock; `handle`: a clone of a `Value<u64>`'s
/// handle, received and dropped: what its holder table costs). Robust
/// to a busy machine, where the round trips of `pipe_pingpong` mostly measure the
/// scheduler.
pub fn message_cost(report: &mut Report) {
    const BATCH: usize = 100;
    const BATCHES: usize = 300;
    let typed = Pipe::<Typed1k>::new().unwrap();
    let raw = Pipe::<u64>::new().unwrap();
    let typed_bytes = Pipe::<Typed1kBytes>::new().unwrap();
    let message = Typed1k { id: 7, seq: 0, flags: 3, text: "x".repeat(1024) };
    let message_bytes = Typed1kBytes { id: 7, seq: 0, flags: 3, data: vec![b'x'; 1024] };
    let bytes = vec![b'x'; 1024];
    let handles = Pipe::<Value<u64>>::new().unwrap();
    let value = Value::new(7u64).unwrap();
    let mut samples: [Vec<f64>; 6] = Default::default();
    for _ in 0..BATCHES {
        // `send` takes its message: the copies are made before the clock starts.
        let copies = vec![message.clone(); BATCH];
        let t0 = Instant::now();
        for sent in copies {
            typed.0.send(sent).unwrap();
            std::hint::black_box(typed.1.recv().unwrap());
        }
        samples[0].push(t0.elapsed().as_secs_f64() * 1e9 / BATCH as f64);
        let t0 = Instant::now();
        for _ in 0..BATCH {
            raw.0.send_bytes(&bytes).unwrap();
            std::hint::black_box(raw.1.recv_bytes().unwrap());
        }
        samples[1].push(t0.elapsed().as_secs_f64() * 1e9 / BATCH as f64);
        let t0 = Instant::now();
        for i in 0..BATCH as u64 {
            raw.0.send(i).unwrap();
            std::hint::black_box(raw.1.recv().unwrap());
        }
        samples[2].push(t0.elapsed().as_secs_f64() * 1e9 / BATCH as f64);
        let copies = vec![message_bytes.clone(); BATCH];
        let t0 = Instant::now();
        for sent in copies {
            typed_bytes.0.send(sent).unwrap();
            std::hint::black_box(typed_bytes.1.recv().unwrap());
        }
        samples[3].push(t0.elapsed().as_secs_f64() * 1e9 / BATCH as f64);
        // Sent by reference, as `send_bytes` sends: no message is dropped inside the clock.
        let t0 = Instant::now();
        for _ in 0..BATCH {
            typed.0.send(&message).unwrap();
            std::hint::black_box(typed.1.recv().unwrap());
        }
        samples[4].push(t0.elapsed().as_secs_f64() * 1e9 / BATCH as f64);
        let t0 = Instant::now();
        for _ in 0..BATCH {
            handles.0.send(&value).unwrap();
            drop(std::hint::black_box(handles.1.recv().unwrap()));
        }
        samples[5].push(t0.elapsed().as_secs_f64() * 1e9 / BATCH as f64);
    }
    let variants = ["typed1k", "bytes1k", "int", "typed1k.vec_u8", "typed1k.ref", "handle"];
    for (variant, s) in variants.iter().zip(&samples) {
        report.emit("message_cost", variant, stats::median(s), "ns", s);
    }
}
