//! The two-and-two bakery with a `JoinableQueue`: the consumers are daemons that mark each
//! item done, and the main process waits on `join()` once the producers are done, until
//! everything made was eaten. No sentinels; the daemons end with `main`.
//!
//! Python:
//! ```python
//! from multiprocessing import Process, JoinableQueue
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
//!         time.sleep(random.random() / 10)
//!         print('%s ate %s' % (os.getpid(), res))
//!         q.task_done()
//!
//! if __name__ == '__main__':
//!     q = JoinableQueue()
//!     p1 = Process(target=producer, args=(q, 'bun'))
//!     p2 = Process(target=producer, args=(q, 'fried dough stick'))
//!     c1 = Process(target=consumer, args=(q,), daemon=True)
//!     c2 = Process(target=consumer, args=(q,), daemon=True)
//!     p1.start(); p2.start(); c1.start(); c2.start()
//!     p1.join(); p2.join()
//!     q.join()
//!     print('main: everything made was eaten')
//! ```

use std::time::Duration;

use multiproc::{JoinableQueue, Process};

fn pause(round: u64) {
    let ms = (u64::from(std::process::id()) * 7919 + round * 104_729) % 100;
    std::thread::sleep(Duration::from_millis(ms));
}

fn producer((q, food): (JoinableQueue<String>, String)) {
    for i in 0..3 {
        pause(i);
        let res = format!("{food} {i}");
        q.put(res.clone()).unwrap();
        println!("{} made {res}", std::process::id());
    }
}

fn consumer(q: JoinableQueue<String>) {
    for round in 1.. {
        let res = q.get().unwrap();
        pause(round);
        println!("{} ate {res}", std::process::id());
        q.task_done().unwrap();
    }
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let q = JoinableQueue::new()?;
    let p1 = Process::new(producer, (q.clone(), "bun".to_string())).start()?;
    let p2 = Process::new(producer, (q.clone(), "fried dough stick".to_string())).start()?;
    let _c1 = Process::new(consumer, q.clone()).daemon(true).start()?;
    let _c2 = Process::new(consumer, q.clone()).daemon(true).start()?;
    p1.join()?;
    p2.join()?;
    q.join()?;
    println!("main: everything made was eaten");
    Ok(())
}
