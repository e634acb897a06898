//! A pool of four workers runs 100 tasks that print their number.
//!
//! Python:
//! ```python
//! def task(n):
//!     print(f'task {n} in {os.getpid()}')
//!
//! if __name__ == '__main__':
//!     with Pool(4) as pool:
//!         pool.map(task, range(100))
//! ```

use multiproc::Pool;

fn task(n: u32) {
    println!("task {n} in {}", std::process::id());
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let pool = Pool::new(4)?;
    pool.map(task, 0..100)?;
    println!("100 tasks done by {} workers", pool.processes());
    Ok(())
}
