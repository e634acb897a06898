//! A pool of four processes runs four tasks; each decrements a managed value ten times,
//! each time under a managed lock. The value starts at 10 and ends at 10 - 4 × 10 = -30,
//! whatever the interleaving. A callback reports each finished task, an error callback
//! would report a failed one.
//!
//! Python:
//! ```python
//! from multiprocessing import Pool, Manager
//!
//! def task(lock, value):
//!     for _ in range(10):
//!         with lock:
//!             value.value -= 1
//!     return value.value
//!
//! def callback(result):
//!     print(f'task done, value was {result}')
//!
//! def error_callback(error):
//!     print(f'task failed: {error}')
//!
//! if __name__ == '__main__':
//!     with Manager() as manager:
//!         lock = manager.Lock()
//!         value = manager.Value('i', 10)
//!         with Pool(4) as pool:
//!             for _ in range(4):
//!                 pool.apply_async(task, args=(lock, value),
//!                                  callback=callback, error_callback=error_callback)
//!             pool.close()
//!             pool.join()
//!         print(f'final value: {value.value}')
//! ```
//!
//! prints four `task done, value was N` lines (N depends on the interleaving), then
//! ```text
//! final value: -30
//! ```

use multiproc::{ApplyOptions, LockProxy, Manager, Pool, ValueProxy};

fn task((lock, value): (LockProxy, ValueProxy<i64>)) -> i64 {
    for _ in 0..10 {
        let _held = lock.acquire().unwrap();
        value.set(value.get().unwrap() - 1).unwrap();
    }
    value.get().unwrap()
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = Manager::start()?;
    let lock = manager.lock()?;
    let value = manager.value(10i64)?;
    let pool = Pool::new(4)?;
    for _ in 0..4 {
        let options = ApplyOptions::new()
            .callback(|result: &i64| println!("task done, value was {result}"))
            .error_callback(|error| println!("task failed: {error}"));
        drop(pool.apply_async_with(task, (lock.clone(), value.clone()), options)?); // the callbacks get the result
    }
    pool.close();
    pool.join()?;
    println!("final value: {}", value.get()?);
    assert_eq!(value.get()?, -30);
    Ok(())
}
