//! Two producers (buns, fried dough sticks) and two consumers: one sentinel per consumer,
//! put once both producers are done.
//!
//! Python:
//! ```python
//! from multiprocessing import Process, Queue
//! import os, time, random
//!
//! def producer(q, food):
//!     for i in range(3):
//!         time.sleep(random.random() / 10)
//!         res = '%s %s' % (food, i)
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
//!     p1 = Process(target=producer, args=(q, 'bun'))
//!     p2 = Process(target=producer, args=(q, 'fried dough stick'))
//!     c1 = Process(target=consumer, args=(q,))
//!     c2 = Process(target=consumer, args=(q,))
//!     p1.start(); p2.start(); c1.start(); c2.start()
//!     p1.join(); p2.join()
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

fn producer((q, food): (Queue<Option<String>>, String)) {
    for i in 0..3 {
        pause(i);
        let res = format!("{food} {i}");
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
    let p1 = Process::new(producer, (q.clone(), "bun".to_string())).start()?;
    let p2 = Process::new(producer, (q.clone(), "fried dough stick".to_string())).start()?;
    let _c1 = Process::new(consumer, q.clone()).start()?;
    let _c2 = Process::new(consumer, q.clone()).start()?;
    p1.join()?;
    p2.join()?;
    q.put(None)?;
    q.put(None)?;
    println!("main");
    Ok(())
}
