//! A child is terminated; the parent prints its exit code (-15), pid and name.
//!
//! Python:
//! ```python
//! def slow_worker():
//!     print('Starting worker'); time.sleep(0.1); print('Finished worker')
//!
//! if __name__ == '__main__':
//!     p = Process(target=slow_worker)
//!     print('BEFORE:', p, p.is_alive())
//!     p.start()
//!     print('DURING:', p, p.is_alive())
//!     p.terminate()
//!     print('TERMINATED:', p, p.is_alive())
//!     p.join()
//!     print('JOINED:', p, p.is_alive())
//!     print('exit code', p.exitcode, 'pid', p.pid, 'name', p.name)
//! ```

use std::time::Duration;

use multiproc::Process;

fn slow_worker(_: ()) {
    println!("Starting worker");
    std::thread::sleep(Duration::from_secs(10));
    println!("Finished worker");
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    let p = Process::new(slow_worker, ());
    println!("BEFORE: {p:?}");
    let p = p.start()?;
    println!("DURING: {} alive={}", p.name(), p.is_alive());
    p.terminate()?;
    let code = p.wait();
    println!("JOINED: {} alive={}", p.name(), p.is_alive());
    println!("exit code {code}, pid {}, name {}", p.pid(), p.name());
    assert_eq!(code, -15);
    Ok(())
}
