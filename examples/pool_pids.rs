//! `cpu_count() + 1` workers over 20 tasks, each printing the pid of its worker.
//!
//! Python:
//! ```python
//! def task(n):
//!     print(f'task {n} in process {os.getpid()}')
//!     time.sleep(0.1)
//!
//! if __name__ == '__main__':
//!     with Pool(cpu_count() + 1) as pool:
//!         pool.map(task, range(20), chunksize=1)
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use multiproc::{MapOptions, Pool};

fn task(n: u32) -> u32 {
    let pid = std::process::id();
    println!("task {n} in process {pid}");
    std::thread::sleep(Duration::from_millis(100));
    pid
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let workers = multiproc::cpu_count() + 1;
    let pool = Pool::new(workers)?;
    let pids: BTreeSet<u32> = pool.map_with(task, 0..20, MapOptions::new().chunksize(1))?.into_iter().collect();
    println!("{} CPUs, {workers} workers, {} distinct pids: {pids:?}", multiproc::cpu_count(), pids.len());
    Ok(())
}
