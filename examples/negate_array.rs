//! A child negates every element of a shared `Array` of 0..10; the parent prints it.
//!
//! Python:
//! ```python
//! from multiprocessing import Process, Array
//!
//! def negate(a):
//!     for i in range(len(a)):
//!         a[i] = -a[i]
//!
//! if __name__ == '__main__':
//!     arr = Array('i', range(10))
//!     p = Process(target=negate, args=(arr,))
//!     p.start()
//!     p.join()
//!     print(arr[:])
//! ```

use multiproc::{Array, Process};

fn negate(a: Array<i32>) {
    for x in a.lock().iter_mut() {
        *x = -*x;
    }
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>())?;
    Process::new(negate, arr.clone()).start()?.join()?;
    println!("{:?}", arr.to_vec());
    Ok(())
}
