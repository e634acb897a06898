//! Python's `multiprocessing.log_to_stderr()`: one call in `main`, and every process of the
//! program logs to stderr as `[LEVEL/process name] message`, multiproc's own records (a
//! child calling its target, its exit code) among them.
//!
//! `MULTIPROC_START_METHOD=spawn|fork|forkserver` picks the start method of the child and
//! of the pool's workers; the argument `debug` shows debug records too, `quiet` does not
//! call `log_to_stderr` at all.

use log::LevelFilter;
use multiproc::{Pool, Process, StartMethod};

fn greet(name: String) {
    log::info!("hello, {name}");
}

fn square(x: u64) -> u64 {
    log::debug!("squaring {x}");
    x * x
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let level = match std::env::args().nth(1).as_deref() {
        Some("quiet") => None,
        Some("debug") => Some(LevelFilter::Debug),
        _ => Some(LevelFilter::Info),
    };
    if let Some(level) = level {
        multiproc::log_to_stderr(level).expect("no other logger is installed");
    }
    let method = match std::env::var("MULTIPROC_START_METHOD").as_deref() {
        Ok("spawn") => StartMethod::Spawn,
        Ok("fork") => StartMethod::Fork,
        _ => StartMethod::ForkServer,
    };
    log::info!("starting");
    Process::new(greet, "world".to_string()).start_method(method).start()?.join()?;
    let pool = Pool::builder().processes(1).start_method(method).build()?;
    let squares = pool.map(square, vec![1, 2, 3])?;
    println!("squares: {squares:?}");
    Ok(())
}
