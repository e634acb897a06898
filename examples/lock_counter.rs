//! Ten processes each add one to `{"count": N}` in a JSON file, one at a time under a
//! `Lock`; the parent prints the count before and after (after = before + 10).
//!
//! Python:
//! ```python
//! import json
//! from multiprocessing import Process, Lock
//!
//! def add_one(path, lock):
//!     with lock:
//!         with open(path) as f:
//!             data = json.load(f)
//!         data['count'] += 1
//!         with open(path, 'w') as f:
//!             json.dump(data, f)
//!
//! if __name__ == '__main__':
//!     path = 'count.json'
//!     with open(path, 'w') as f:
//!         json.dump({'count': 5}, f)
//!     lock = Lock()
//!     print('count before:', json.load(open(path))['count'])
//!     ps = [Process(target=add_one, args=(path, lock)) for _ in range(10)]
//!     for p in ps: p.start()
//!     for p in ps: p.join()
//!     print('count after:', json.load(open(path))['count'])
//! ```

use std::path::{Path, PathBuf};

use multiproc::{Lock, Process};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Counter {
    count: u64,
}

fn read_count(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).expect("the counter file");
    serde_json::from_str::<Counter>(&text).expect("a JSON counter").count
}

fn write_count(path: &Path, count: u64) {
    std::fs::write(path, serde_json::to_string(&Counter { count }).expect("JSON")).expect("write the counter");
}

fn add_one((path, lock): (PathBuf, Lock)) {
    let _guard = lock.acquire().unwrap();
    let count = read_count(&path);
    // Widen the window in which an unlocked read-modify-write would lose an update.
    std::thread::sleep(std::time::Duration::from_millis(5));
    write_count(&path, count + 1);
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let dir = std::env::temp_dir().join(format!("multiproc-lock-counter-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("count.json");
    write_count(&path, 5);
    let lock = Lock::new()?;
    let before = read_count(&path);
    println!("count before: {before}");
    let processes: Vec<_> =
        (0..10).map(|_| Process::new(add_one, (path.clone(), lock.clone())).start()).collect::<Result<_, _>>()?;
    for p in processes {
        p.join()?;
    }
    let after = read_count(&path);
    println!("count after: {after}");
    std::fs::remove_dir_all(&dir)?;
    assert_eq!(after, before + 10, "every increment counted");
    Ok(())
}
