//! What the user sees when `main` returns a multiproc error (the README's
//! `fn main() -> Result<(), multiproc::Error>` pattern).
//!
//! Run as is, the child's work succeeds. With the argument `panic` the child panics and
//! `main` returns the `JoinError`: Rust prints it with `Debug`, which is a few lines
//! (the child's backtrace only when `RUST_BACKTRACE` asks, as for a panic of the program
//! itself). With `uninit`, `main` starts a process without `init()` and returns
//! `Error::NotInitialized`, whose text names the fix. With `late`, a thread starts before
//! `init()`, which panics at this file's line.

use multiproc::Process;

fn work(fail: bool) -> u32 {
    if fail {
        panic!("the work failed");
    }
    42
}

fn main() -> Result<(), multiproc::Error> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode == "late" {
        std::thread::spawn(std::thread::park);
    }
    if mode != "uninit" {
        multiproc::init();
    }
    let result = Process::new(work, mode == "panic").start()?.join()?;
    println!("the child returned {result}");
    Ok(())
}
