//! Five processes share a managed list and a managed dict: process `i` sets `list1[i] = i`
//! and `d["a"] = i`. The parent prints both: the list holds every index, the dict the
//! value of whichever process wrote last.
//!
//! Python:
//! ```python
//! from multiprocessing import Process, Manager
//!
//! def worker(d, list1, i):
//!     list1[i] = i
//!     d["a"] = i
//!
//! if __name__ == '__main__':
//!     with Manager() as manager:
//!         d = manager.dict()
//!         list1 = manager.list([0] * 5)
//!         processes = [Process(target=worker, args=(d, list1, i)) for i in range(5)]
//!         for p in processes:
//!             p.start()
//!         for p in processes:
//!             p.join()
//!         print(d)
//!         print(list1)
//! ```
//!
//! prints (the dict's value depends on which process ran last):
//! ```text
//! {'a': 4}
//! [0, 1, 2, 3, 4]
//! ```

use multiproc::{DictProxy, ListProxy, Manager, Process};

fn worker((d, list1, i): (DictProxy<String, usize>, ListProxy<usize>, usize)) {
    list1.set(i, i).unwrap();
    d.insert("a".into(), i).unwrap();
}

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = Manager::start()?;
    let d = manager.dict::<String, usize>()?;
    let list1 = manager.list_from([0usize; 5])?;
    let processes: Vec<_> =
        (0..5).map(|i| Process::new(worker, (d.clone(), list1.clone(), i)).start()).collect::<Result<_, _>>()?;
    for p in processes {
        p.join()?;
    }
    let pairs: Vec<String> = d.items()?.iter().map(|(k, v)| format!("'{k}': {v}")).collect();
    println!("{{{}}}", pairs.join(", "));
    println!("{:?}", list1.to_vec()?);
    Ok(())
}
