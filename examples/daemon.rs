//! A daemonic child prints every second while a normal child sleeps five seconds; `main`
//! waits for the normal child, and when `main` ends the daemon is terminated.
//!
//! Python:
//! ```python
//! def heartbeat():
//!     while True:
//!         print('daemon: still here'); sys.stdout.flush()
//!         time.sleep(1)
//!
//! def worker():
//!     print('worker: starting'); time.sleep(5); print('worker: done')
//!
//! if __name__ == '__main__':
//!     d = Process(target=heartbeat, daemon=True)
//!     w = Process(target=worker)
//!     d.start(); w.start()
//!     w.join()
//!     print('main: done, exiting')
//! ```

use std::time::Duration;

use multiproc::Process;

fn heartbeat(_: ()) {
    let me = multiproc::current_process();
    for beat in 1.. {
        println!("daemon {} (pid {}): beat {beat}", me.name(), me.pid());
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn worker(_: ()) {
    println!("worker: starting, sleeping 5 s");
    std::thread::sleep(Duration::from_secs(5));
    println!("worker: done");
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let daemon = Process::new(heartbeat, ()).name("heartbeat").daemon(true).start()?;
    let worker = Process::new(worker, ()).name("worker").start()?;
    println!("main: started {} (daemon: {}) and {}", daemon.name(), daemon.is_daemon(), worker.name());
    worker.join()?;
    println!("main: done, exiting; the daemon is terminated now, as in Python");
    Ok(())
}
