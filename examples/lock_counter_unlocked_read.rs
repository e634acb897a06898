//! The variant of `lock_counter`: every process first reads the count without the lock
//! (and prints what it saw, which may be stale), then increments it under the lock. The
//! final count is still before + 10, because the increment re-reads under the lock.
//!
//! Python:
//! ```python
//! import json
//! from multiprocessing import Process, Lock
//!
//! def peek_then_add(path, lock, i):
//!     with open(path) as f:
//!         print(f'process {i} sees count', json.load(f)['count'])
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
//!         json.dump({'count': 0}, f)
//!     lock = Lock()
//!     print('count before:', json.load(open(path))['count'])
//!     ps = [Process(target=peek_then_add, args=(path, lock, i)) for i in range(10)]
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

fn read_count(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str::<Counter>(&text).ok().map(|c| c.count)
}

fn write_count(path: &Path, count: u64) {
    // Write then rename, so that an unlocked reader never sees a half-written file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_string(&Counter { count }).expect("JSON")).expect("write the counter");
    std::fs::rename(&tmp, path).expect("replace the counter");
}

fn peek_then_add((path, lock, i): (PathBuf, Lock, u32)) {
    match read_count(&path) {
        Some(count) => println!("process {i} sees count {count}"),
        None => println!("process {i} could not read the count"),
    }
    let _guard = lock.acquire().unwrap();
    let count = read_count(&path).expect("the counter, under the lock");
    write_count(&path, count + 1);
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let dir = std::env::temp_dir().join(format!("multiproc-lock-counter-read-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("count.json");
    write_count(&path, 0);
    let lock = Lock::new()?;
    let before = read_count(&path).unwrap_or(0);
    println!("count before: {before}");
    let processes: Vec<_> = (0..10)
        .map(|i| Process::new(peek_then_add, (path.clone(), lock.clone(), i)).start())
        .collect::<Result<_, _>>()?;
    for p in processes {
        p.join()?;
    }
    let after = read_count(&path).unwrap_or(0);
    println!("count after: {after}");
    std::fs::remove_dir_all(&dir)?;
    assert_eq!(after, before + 10);
    Ok(())
}
