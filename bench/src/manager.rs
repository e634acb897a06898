//! Manager benchmarks: manager_dict (the methodology of mp_bench.py's `bench_manager_dict`:
//! a manager server started with fork, `d = manager.dict()`, a fork child that makes 202
//! untimed warm-up calls, then times N = 10000 `d[i] = i` and N `d[i]`, three times).

use std::time::Instant;

use multiproc::{DictProxy, Manager, Process, StartMethod};

use crate::stats::{self, Report};

const N: i64 = 10_000;
const REPS: usize = 3;

/// The child: warm-up, then (set ns, get ns) per repetition.
fn client(d: DictProxy<i64, i64>) -> Vec<(u64, u64)> {
    d.insert(-1, -1).expect("set");
    d.get(&-1).expect("get");
    for i in 0..100 {
        d.insert(i, i).expect("set");
        d.get(&i).expect("get");
    }
    let mut out = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let t0 = Instant::now();
        for i in 0..N {
            d.insert(i, i).expect("set");
        }
        let t1 = Instant::now();
        for i in 0..N {
            std::hint::black_box(d.get(&i).expect("get"));
        }
        let t2 = Instant::now();
        out.push(((t1 - t0).as_nanos() as u64, (t2 - t1).as_nanos() as u64));
    }
    out
}

/// manager_dict: ops/s of `d[i] = i` (set) and `d[i]` (get) from a child.
pub fn manager_dict(report: &mut Report) {
    let manager = Manager::builder().start_method(StartMethod::Fork).start().expect("manager");
    let d = manager.dict::<i64, i64>().expect("dict");
    let child = Process::new(client, d.clone()).start_method(StartMethod::Fork).start().expect("start");
    let res = child.join().expect("join");
    assert!(
        d.len().expect("len") == N.max(100) as usize + 1 && d.get(&(N - 1)).expect("get") == Some(N - 1),
        "manager_dict: unexpected dict contents"
    );
    let sets: Vec<f64> = res.iter().map(|r| N as f64 / (r.0 as f64 / 1e9)).collect();
    let gets: Vec<f64> = res.iter().map(|r| N as f64 / (r.1 as f64 / 1e9)).collect();
    report.emit("manager_dict", "set", stats::median(&sets), "ops/s", &sets);
    report.emit("manager_dict", "get", stats::median(&gets), "ops/s", &gets);
}
