//! Four pool tasks each decrement a shared value ten times under a lock, with a callback
//! and an error callback; the value goes from 10 to -30.
//!
//! Python:
//! ```python
//! def func(num, lock):
//!     with lock:
//!         for _ in range(10):
//!             num.value -= 1
//!     return os.getpid()
//!
//! if __name__ == '__main__':
//!     num, lock = Value('i', 10), Lock()
//!     pool = Pool(4)
//!     for _ in range(4):
//!         pool.apply_async(func, (num, lock),
//!                          callback=lambda pid: print('done in', pid),
//!                          error_callback=lambda e: print('error', e))
//!     pool.close()
//!     pool.join()
//!     print(num.value)
//! ```
//!
//! CPython refuses to send a `Value` or a `Lock` to a pool task ("Synchronized objects
//! should only be shared between processes through inheritance"), so there the error
//! callback runs four times and the value stays 10. multiproc's handles travel in tasks:
//! the callback runs four times and the value ends at -30.

use multiproc::{ApplyOptions, Lock, Pool, Value};

fn func((num, lock): (Value<i32>, Lock)) -> u32 {
    let _guard = lock.acquire().unwrap();
    for _ in 0..10 {
        *num.lock() -= 1;
    }
    std::process::id()
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let num = Value::new(10)?;
    let lock = Lock::new()?;
    let pool = Pool::new(4)?;
    for _ in 0..4 {
        let options = ApplyOptions::new()
            .callback(|pid: &u32| println!("done in {pid}"))
            .error_callback(|e| println!("error {e}"));
        drop(pool.apply_async_with(func, (num.clone(), lock.clone()), options)?); // the callbacks get the result
    }
    pool.close();
    pool.join()?;
    println!("{}", num.get());
    assert_eq!(num.get(), -30);
    Ok(())
}
