//! Set-up done once, seen in every child: a logger installed by `child_init` names the
//! process on each line, whatever the start method.
//!
//! Python:
//! ```python
//! import logging, multiprocessing
//!
//! def worker(n):
//!     multiprocessing.get_logger().info('doing some work on %d', n)
//!
//! if __name__ == '__main__':
//!     multiprocessing.log_to_stderr(logging.INFO)
//!     p = multiprocessing.Process(target=worker, args=(7,))
//!     p.start()
//!     p.join()
//! ```
//!
//! `MULTIPROC_START_METHOD=spawn|fork|forkserver` picks the start method. With
//! `env_logger`, `setup` would be `env_logger::Builder::from_default_env().format(...)
//! .try_init()`, the format reading `multiproc::current_process().name()`.

use std::sync::atomic::{AtomicBool, Ordering};

use multiproc::{Process, StartMethod};

/// Our stand-in for a logging framework's global logger.
static LOGGING: AtomicBool = AtomicBool::new(false);

fn info(message: &str) {
    if LOGGING.load(Ordering::Relaxed) {
        println!("[INFO/{}] {message}", multiproc::current_process().name());
    }
}

/// Runs in `main` (called below) and, through `child_init`, in every child.
fn setup() {
    LOGGING.store(true, Ordering::Relaxed);
}

fn worker(n: u32) {
    info(&format!("doing some work on {n}"));
}

#[multiproc::main(child_init = setup)]
fn main() -> Result<(), multiproc::Error> {
    setup();
    let method = match std::env::var("MULTIPROC_START_METHOD").as_deref() {
        Ok("spawn") => StartMethod::Spawn,
        Ok("fork") => StartMethod::Fork,
        _ => StartMethod::ForkServer,
    };
    info("starting a worker");
    Process::new(worker, 7).start_method(method).start()?.join()?;
    info("done");
    Ok(())
}
