//! One producer makes ten buns, one consumer eats them; the producer's end is told by a
//! sentinel, `None` in Python and an `Option` here.
//!
//! Python:
//! ```python
//! from multiprocessing import Process, Queue
//! import os, time, random
//!
//! def producer(q):
//!     for i in range(10):
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
//!     p = Process(target=producer, args=(q,))
//!     c = Process(target=consumer, args=(q,))
//!     p.start()
//!     c.start()
//!     p.join()
//!     q.put(None)
//!     print('main')
//! ```

use std::time::Duration;

use multiproc::{Process, Queue};

/// Up to 100 ms, different in every process and every round (the tutorial's `random()`).
fn pause(round: u64) {
    let ms = (u64::from(std::process::id()) * 7919 + round * 104_729) % 100;
    std::thread::sleep(Duration::from_millis(ms));
}

fn producer(q: Queue<Option<String>>) {
    for i in 0..10 {
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
    let p = Process::new(producer, q.clone()).start()?;
    let _c = Process::new(consumer, q.clone()).start()?;
    p.join()?;
    q.put(None)?;
    println!("main");
    // The consumer is not daemonic: it is joined when main ends, as in Python.
    Ok(())
}
