//! Two producer processes increment a shared `Value` under its lock, printing each step
//! under another `Lock`, so that their lines never interleave.
//!
//! Python:
//! ```python
//! import time
//! from multiprocessing import Process, Value, Lock
//!
//! def produce(name, counter, print_lock):
//!     for _ in range(5):
//!         with counter.get_lock():
//!             counter.value += 1
//!             n = counter.value
//!         with print_lock:
//!             print(f'{name} produced item {n}')
//!         time.sleep(0.1)
//!
//! if __name__ == '__main__':
//!     counter = Value('i', 0)
//!     print_lock = Lock()
//!     ps = [Process(target=produce, args=(name, counter, print_lock))
//!           for name in ('producer-1', 'producer-2')]
//!     for p in ps: p.start()
//!     for p in ps: p.join()
//!     print('total', counter.value)
//! ```

use std::io::Write as _;
use std::time::Duration;

use multiproc::{Lock, Process, Value};

fn produce((name, counter, print_lock): (String, Value<i32>, Lock)) {
    for _ in 0..5 {
        let n = {
            let mut count = counter.lock();
            *count += 1;
            *count
        };
        {
            let _g = print_lock.acquire().unwrap();
            // Written in pieces on purpose: only the lock keeps them on one line.
            let mut out = std::io::stdout().lock();
            write!(out, "{name} ").and_then(|_| out.flush()).expect("stdout");
            writeln!(out, "produced item {n}").and_then(|_| out.flush()).expect("stdout");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let counter = Value::new(0i32)?;
    let print_lock = Lock::new()?;
    let producers: Vec<_> = ["producer-1", "producer-2"]
        .into_iter()
        .map(|name| Process::new(produce, (name.to_string(), counter.clone(), print_lock.clone())).start())
        .collect::<Result<_, _>>()?;
    for p in producers {
        p.join()?;
    }
    println!("total {}", counter.get());
    assert_eq!(counter.get(), 10);
    Ok(())
}
