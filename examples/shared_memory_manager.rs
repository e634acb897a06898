//! Two processes work on halves of a `ShareableList` made by a `SharedMemoryManager`,
//! which unlinks it at shutdown.
//!
//! Python (the `multiprocessing.shared_memory` documentation, with a `do_work`):
//! ```python
//! def do_work(sl, start, stop):
//!     for i in range(start, stop):
//!         sl[i] = sl[i] * 2
//!
//! if __name__ == '__main__':
//!     with SharedMemoryManager() as smm:
//!         sl = smm.ShareableList(range(2000))
//!         p1 = Process(target=do_work, args=(sl, 0, 1000))
//!         p2 = Process(target=do_work, args=(sl, 1000, 2000))
//!         p1.start(); p2.start()
//!         p1.join(); p2.join()
//!         print(sum(sl))
//! ```

use multiproc::{Item, Process, ShareableList, SharedMemoryManager};

fn do_work((sl, start, stop): (ShareableList, usize, usize)) {
    for i in start..stop {
        if let Ok(Item::Int(n)) = sl.get(i) {
            sl.set(i, n * 2).unwrap();
        }
    }
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let smm = SharedMemoryManager::start()?;
    let sl = smm.shareable_list((0..2000i64).map(Item::from))?;
    let p1 = Process::new(do_work, (ShareableList::open(sl.name())?, 0, 1000)).start()?;
    let p2 = Process::new(do_work, (ShareableList::open(sl.name())?, 1000, 2000)).start()?;
    p1.join()?;
    p2.join()?;
    let total: i64 = sl.to_vec()?.iter().map(|item| if let Item::Int(n) = item { *n } else { 0 }).sum();
    println!("{total}");
    smm.shutdown()?;
    Ok(())
}
