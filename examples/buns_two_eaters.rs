//! One producer and two consumers: each consumer stops at a sentinel of its own, so the
//! main process puts two.
//!
//! Python:
//! ```python
//! from multiprocessing import Process, Queue
//! import os, time, random
//!
//! def producer(q):
//!     for i in range(6):
//!         time.sleep(random.random() / 10)
//!         res = 'bun %s' % i
//!         q.put(res)
//!         print('%s made %s' % (os.getpid(), res))
//!
//! def consumer(q):
//!     while True:
//!         res = q.get()
//!         if res is None:
//!             break
//!         time.sleep(random.random() / 10)
//!         print('%s ate %s' % (os.getpid(), res))
//!
//! if __name__ == '__main__':
//!     q = Queue()
//!     p1 = Process(target=producer, args=(q,))
//!     c1 = Process(target=consumer, args=(q,))
//!     c2 = Process(target=consumer, args=(q,))
//!     p1.start(); c1.start(); c2.start()
//!     p1.join()
//!     q.put(None)
//!     q.put(None)
//!     print('main')
//! ```

use std::time::Duration;

use multiproc::{Process, Queue};

fn pause(round: u64) {
    let ms = (u64::from(std::process::id()) * 7919 + round * 104_729) % 100;
    std::thread::sleep(Duration::from_millis(ms));
}

fn producer(q: Queue<Option<String>>) {
    for i in 0..6 {
        pause(i);
        let res = format!("bun {i}");
        q.put(Some(res.clone())).unwrap();
        println!("{} made {res}", std::process::id());
    }
}

fn consumer(q: Queue<Option<String>>) {
    let mut round = 0;
    while let Some(res) = q.get().unwrap() {
        round += 1;
        pause(round);
        println!("{} ate {res}", std::process::id());
    }
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let q = Queue::new()?;
    let p1 = Process::new(producer, q.clone()).start()?;
    let _c1 = Process::new(consumer, q.clone()).start()?;
    let _c2 = Process::new(consumer, q.clone()).start()?;
    p1.join()?;
    q.put(None)?;
    q.put(None)?;
    println!("main");
    Ok(())
}
