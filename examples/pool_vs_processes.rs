//! 100 tasks on four pooled workers against 100 separate processes, with the time of each:
//! a pool pays for its processes once.
//!
//! Python:
//! ```python
//! def task(n):
//!     return n * n
//!
//! if __name__ == '__main__':
//!     start = time.time()
//!     with Pool(4) as pool:
//!         pool.map(task, range(100))
//!     print('pool of 4:', time.time() - start)
//!     start = time.time()
//!     procs = [Process(target=task, args=(n,)) for n in range(100)]
//!     for p in procs: p.start()
//!     for p in procs: p.join()
//!     print('100 processes:', time.time() - start)
//! ```

use std::time::Instant;

use multiproc::{Pool, Process};

fn task(n: u64) -> u64 {
    n * n
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let start = Instant::now();
    let pool = Pool::new(4)?;
    let pooled = pool.map(task, 0..100)?;
    drop(pool);
    println!("pool of 4 workers: {:>8.2} ms", start.elapsed().as_secs_f64() * 1e3);

    let start = Instant::now();
    let processes: Vec<_> = (0..100).map(|n| Process::new(task, n).start()).collect::<Result<_, _>>()?;
    let separate: Vec<u64> = processes.into_iter().map(|p| p.join()).collect::<Result<_, _>>()?;
    println!("100 processes:     {:>8.2} ms", start.elapsed().as_secs_f64() * 1e3);
    assert_eq!(pooled, separate);
    Ok(())
}
