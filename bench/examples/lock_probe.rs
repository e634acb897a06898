//! A probe for callgrind: `lock_probe VARIANT COUNT` makes COUNT uncontended acquire +
//! release pairs of one primitive in one process, as `mp-bench lock_uncontended` does,
//! and nothing else. VARIANT: lock, rlock, semaphore (a `BoundedSemaphore(1)`), or
//! semaphore_counter (a `Semaphore(0)`'s release then an acquire whose permit is
//! forgotten). Ir per pair: (the run with COUNT = 11 000) minus (COUNT = 1 000), over
//! 10 000.

use std::hint::black_box;

use multiproc::{BoundedSemaphore, Lock, RLock, Semaphore};

fn main() {
    multiproc::init();
    let args: Vec<String> = std::env::args().collect();
    let variant = args.get(1).map_or("lock", String::as_str);
    let n: u32 = args.get(2).map_or(1_000_000, |s| s.parse().unwrap());
    match variant {
        "lock" => {
            let lock = Lock::new().unwrap();
            for _ in 0..n {
                drop(black_box(lock.acquire()));
            }
        }
        "rlock" => {
            let rlock = RLock::new().unwrap();
            for _ in 0..n {
                drop(black_box(rlock.acquire()));
            }
        }
        "semaphore" => {
            let semaphore = BoundedSemaphore::new(1).unwrap();
            for _ in 0..n {
                drop(black_box(semaphore.acquire()));
            }
        }
        "semaphore_counter" => {
            let counter = Semaphore::new(0).unwrap();
            for _ in 0..n {
                counter.release();
                black_box(counter.acquire()).expect("an item").forget();
            }
        }
        other => panic!("unknown variant {other}"),
    }
}
