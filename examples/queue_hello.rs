//! Five processes share one queue: each puts `[n, 'hello']` on it and gets an item back,
//! its own or another's.
//!
//! Python:
//! ```python
//! from multiprocessing import Process, Queue
//!
//! def f(q, n):
//!     q.put([n, 'hello'])
//!     print(q.get())
//!
//! if __name__ == '__main__':
//!     q = Queue()
//!     procs = [Process(target=f, args=(q, n)) for n in range(5)]
//!     for p in procs:
//!         p.start()
//!     for p in procs:
//!         p.join()
//! ```

use multiproc::{Process, Queue};

fn f((q, n): (Queue<(u32, String)>, u32)) {
    q.put((n, "hello".to_string())).unwrap();
    let (m, word) = q.get().unwrap();
    println!("[{m}, '{word}']");
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let q = Queue::new()?;
    let procs = (0..5).map(|n| Process::new(f, (q.clone(), n)).start()).collect::<Result<Vec<_>, _>>()?;
    for p in procs {
        p.join()?;
    }
    Ok(())
}
