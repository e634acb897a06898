//! A probe for where the two ends of a round trip run: `cpu1_probe MODE ROUNDS`, MODE
//! `same` (this thread and the other process pinned to the first processor this process
//! may use) or `split` (this thread on the second, the other process on the first). Per
//! round, the median µs of 2000 `Pool::apply_async(identity, i).get()` round trips (a pool
//! of one worker) and of 2000 `Pipe<u64>` ping-pongs with a child, one line each:
//! `apply_async <median> pipe <median> ratio <apply/pipe>`.
//!
//! mp-bench cannot place its two ends on two processors by itself (`taskset` pins a
//! process and the children it starts alike), and on a busy machine the scheduler often
//! puts them on one: `split` measures the two-processor case whatever the load, `same`
//! the one-processor case (as `taskset -c 0 mp-bench ...`).

use std::time::Instant;

use multiproc::{Connection, Pipe, Pool, Process};

const N: usize = 2000;
const WARM: usize = 200;

fn identity(x: u64) -> u64 {
    x
}

fn echo((conn, n): (Connection<u64>, usize)) {
    for _ in 0..n {
        conn.send(conn.recv().unwrap()).unwrap();
    }
}

/// The processors this process may run on.
fn allowed() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity writes this thread's mask.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set), 0);
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

/// Pins `pid` (0: the calling thread) to `cpu`.
fn pin(pid: u32, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity only touch it and
    // the affinity of a process of ours.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(pid as libc::pid_t, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    multiproc::init();
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("split", String::as_str);
    let rounds: usize = args.get(2).map_or(5, |s| s.parse().unwrap());
    let cpus = allowed();
    assert!(mode == "same" || cpus.len() >= 2, "split needs two processors");
    let (theirs, mine) = if mode == "same" { (cpus[0], cpus[0]) } else { (cpus[0], cpus[1]) };
    let pool = Pool::builder().processes(1).build().unwrap();
    for pid in pool.pids() {
        pin(pid, theirs);
    }
    pin(0, mine);
    for _ in 0..rounds {
        let mut applied = Vec::with_capacity(N);
        for i in 0..(WARM + N) as u64 {
            let t0 = Instant::now();
            assert_eq!(pool.apply_async(identity, i).unwrap().get().unwrap(), i);
            if i >= WARM as u64 {
                applied.push(t0.elapsed().as_secs_f64() * 1e6);
            }
        }
        let (a, b) = Pipe::<u64>::new().unwrap();
        let child = Process::new(echo, (b, WARM + N)).start().unwrap();
        pin(child.pid(), theirs);
        let mut pinged = Vec::with_capacity(N);
        for i in 0..(WARM + N) as u64 {
            let t0 = Instant::now();
            a.send(i).unwrap();
            assert_eq!(a.recv().unwrap(), i);
            if i >= WARM as u64 {
                pinged.push(t0.elapsed().as_secs_f64() * 1e6);
            }
        }
        child.join().unwrap();
        let (apply, pipe) = (median(applied), median(pinged));
        println!("apply_async {apply:.3} pipe {pipe:.3} ratio {:.2}", apply / pipe);
    }
}
