//! A writer process puts three letters on a queue, a reader process gets them; the main
//! process waits for the writer, then terminates the reader, which never stops by itself.
//!
//! Python:
//! ```python
//! from multiprocessing import Process, Queue
//! import os, time, random
//!
//! def write(q):
//!     print('Process to write: %s' % os.getpid())
//!     for value in ['A', 'B', 'C']:
//!         print('Put %s to queue...' % value)
//!         q.put(value)
//!         time.sleep(random.random())
//!
//! def read(q):
//!     print('Process to read: %s' % os.getpid())
//!     while True:
//!         value = q.get(True)
//!         print('Get %s from queue.' % value)
//!
//! if __name__ == '__main__':
//!     q = Queue()
//!     pw = Process(target=write, args=(q,))
//!     pr = Process(target=read, args=(q,))
//!     pw.start()
//!     pr.start()
//!     pw.join()
//!     pr.terminate()
//! ```

use std::time::Duration;

use multiproc::{Process, Queue};

fn write(q: Queue<char>) {
    println!("Process to write: {}", std::process::id());
    for (i, value) in ['A', 'B', 'C'].into_iter().enumerate() {
        println!("Put {value} to queue...");
        q.put(value).unwrap();
        std::thread::sleep(Duration::from_millis(100 + (u64::from(std::process::id()) + i as u64 * 37) % 200));
    }
}

fn read(q: Queue<char>) {
    println!("Process to read: {}", std::process::id());
    loop {
        let value = q.get().unwrap();
        println!("Get {value} from queue.");
    }
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let q = Queue::new()?;
    let pw = Process::new(write, q.clone()).start()?;
    let pr = Process::new(read, q.clone()).start()?;
    pw.join()?;
    pr.terminate()?;
    pr.wait();
    Ok(())
}
