//! `Pool(5)` and ten `apply_async` calls of a function that sleeps 2 s and returns
//! `i + 100`, with a callback; the results are collected with `get()`. Five at a time, the
//! ten take about 4 s. Then the same with the blocking `apply`: one at a time, about 10 s.
//!
//! Python:
//! ```python
//! def work(i):
//!     time.sleep(2)
//!     return i + 100
//!
//! def show(result):
//!     print('callback', result)
//!
//! if __name__ == '__main__':
//!     pool = Pool(5)
//!     start = time.time()
//!     results = [pool.apply_async(work, (i,), callback=show) for i in range(10)]
//!     print([r.get() for r in results])
//!     print('took', time.time() - start)
//!     start = time.time()
//!     print([pool.apply(work, (i,)) for i in range(10)])
//!     print('took', time.time() - start)
//! ```

use std::time::{Duration, Instant};

use multiproc::{ApplyOptions, Pool};

fn work(i: u32) -> u32 {
    std::thread::sleep(Duration::from_secs(2));
    i + 100
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let pool = Pool::new(5)?;
    let start = Instant::now();
    let pending: Vec<_> = (0..10)
        .map(|i| pool.apply_async_with(work, i, ApplyOptions::new().callback(|r: &u32| println!("callback {r}"))))
        .collect::<Result<_, _>>()?;
    let results: Vec<u32> = pending.into_iter().map(|r| r.get()).collect::<Result<_, _>>()?;
    println!("{results:?}");
    println!("apply_async: took {:.1} s", start.elapsed().as_secs_f64());

    let start = Instant::now();
    let results: Vec<u32> = (0..10).map(|i| pool.apply(work, i)).collect::<Result<_, _>>()?;
    println!("{results:?}");
    println!("apply: took {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
