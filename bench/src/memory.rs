//! memory: what the family's helper processes and idle workers cost in private memory
//! (PSS, from `/proc/PID/smaps_rollup`), and the family heap's footprint for 1 M queued
//! ints (the resident growth of its mapping). Issue 14 asks for these figures; Python's
//! suite has no counterpart.
//!
//! PSS counts the binary's code shared with other processes, and how much of it a process
//! maps depends on the page cache: a kernel that caches the binary in large blocks maps a
//! whole block per fault, so the same helper reads hundreds of KiB more PSS from a binary
//! cached that way (a plain `cp` of the binary changes it). Each process is therefore also
//! reported by its `Private_Dirty` (`*.private_dirty`): the memory it wrote itself, which
//! does not depend on how the binary was cached.

use multiproc::{Manager, Pool, Queue};

use crate::stats::Report;

/// A process's proportional set size and the private memory it wrote, KiB.
fn pss_and_dirty_kib(pid: u32) -> (f64, f64) {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("smaps_rollup");
    (field_kib(&rollup, "Pss:"), field_kib(&rollup, "Private_Dirty:"))
}

/// Emits `NAME.pss` and `NAME.private_dirty` for `pids` (their medians).
fn emit_process(report: &mut Report, name: &str, pids: impl IntoIterator<Item = u32>) {
    let (pss, dirty): (Vec<f64>, Vec<f64>) = pids.into_iter().map(pss_and_dirty_kib).unzip();
    report.emit("memory", &format!("{name}.pss"), crate::stats::median(&pss), "KiB", &pss);
    report.emit("memory", &format!("{name}.private_dirty"), crate::stats::median(&dirty), "KiB", &dirty);
}

fn field_kib(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} line"))
}

/// The direct children of process `me`.
fn children(me: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{me}/task")).expect("tasks").flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(list.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

/// Resident KiB of this process's mapping of the family heap.
fn heap_rss_kib() -> f64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    let mut in_heap = false;
    let mut total = 0.0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_heap = line.contains("multiproc-family");
        } else if in_heap && let Some(v) = line.strip_prefix("Rss:") {
            total += v.trim().trim_end_matches("kB").trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    total
}

pub fn memory(report: &mut Report) {
    // The helpers started by init(): the resource tracker (spawned, its environment says
    // so), its keeper (a fork of it that holds its journal, track50) and the fork server.
    for pid in children(std::process::id()) {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let tracker = environ.split(|&b| b == 0).any(|kv| kv.windows(8).any(|w| w == b"tracker:"));
        emit_process(report, if tracker { "tracker" } else { "forkserver" }, [pid]);
        let keeper = if tracker { children(pid) } else { Vec::new() };
        if !keeper.is_empty() {
            emit_process(report, "tracker_keeper", keeper);
        }
    }

    let pool = Pool::new(2).expect("pool");
    pool.map(|x: u64| x, 0..1000).expect("warm");
    std::thread::sleep(std::time::Duration::from_millis(300));
    emit_process(report, "pool_worker.idle", pool.pids());
    drop(pool);

    let manager = Manager::start().expect("manager");
    let dict = manager.dict::<String, u64>().expect("dict");
    dict.insert("warm".into(), 1).expect("insert");
    std::thread::sleep(std::time::Duration::from_millis(300));
    emit_process(report, "manager.idle", [manager.pid().expect("the server's pid")]);
    drop(dict);
    drop(manager);

    // Two views of 1 M queued ints: the bytes the family heap allocated for them (the
    // footprint, exact), and the growth of this process's resident mapping of the heap
    // (smaller when the pool above already touched pages the queue reuses).
    let queue = Queue::<u64>::new().expect("queue");
    let (rss_before, in_use_before) = (heap_rss_kib(), multiproc::__private::heap_in_use());
    for i in 0..1_000_000u64 {
        queue.put(i).expect("put");
    }
    let allocated = (multiproc::__private::heap_in_use() - in_use_before) as f64 / (1024.0 * 1024.0);
    let resident = (heap_rss_kib() - rss_before) / 1024.0;
    report.emit("memory", "queue.1M_ints.heap", allocated, "MiB", &[allocated]);
    report.emit("memory", "queue.1M_ints.heap_rss_growth", resident, "MiB", &[resident]);
    for i in 0..1_000_000u64 {
        assert_eq!(queue.get().expect("get"), i);
    }
}
