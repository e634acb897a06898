//! A child increments a shared `Value` and adds 10 to the first element of a shared
//! `Array`; the parent prints `1` and `[10, 1, 2]`.
//!
//! Python:
//! ```python
//! from multiprocessing import Process, Value, Array
//!
//! def f(n, a):
//!     n.value += 1
//!     a[0] += 10
//!
//! if __name__ == '__main__':
//!     num = Value('i', 0)
//!     arr = Array('i', [0, 1, 2])
//!     p = Process(target=f, args=(num, arr))
//!     p.start()
//!     p.join()
//!     print(num.value)
//!     print(arr[:])
//! ```

use multiproc::{Array, Process, Value};

fn f((n, a): (Value<i32>, Array<i32>)) {
    *n.lock() += 1;
    a.lock()[0] += 10;
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let num = Value::new(0i32)?;
    let arr = Array::from_slice(&[0i32, 1, 2])?;
    Process::new(f, (num.clone(), arr.clone())).start()?.join()?;
    println!("{}", num.get());
    println!("{:?}", arr.to_vec());
    Ok(())
}
