//! What the user sees when `main` returns a multiproc error (the README's
//! `fn main() -> Result<(), multiproc::Error>` pattern).
//!
//! Run as is, the child's work succeeds. With the argument `panic` the child panics and
//! `main` returns the `JoinError`: Rust prints it with `Debug`, which is a few lines
//! (the child's backtrace only when `RUST_BACKTRACE` asks, as for a panic of the program
//! itself). With `pool`, a pool task panics and `main` returns the `TaskError` the same
//! way; with `unwrap-join` and `unwrap-task`, `main` unwraps those errors instead. With
//! `uninit`, `main` starts a process without `init()` and returns
//! `Error::NotInitialized`, whose text names the fix. With `late`, a thread starts before
//! `init()`, which panics at this file's line. With `thread`, a thread the child starts
//! panics (its message names the process) and the child still succeeds.
//!
//! `MULTIPROC_START_METHOD=spawn|fork|forkserver` picks the start method of the child
//! and of the pool's workers.

use multiproc::{Pool, Process, StartMethod};

/// A child whose helper thread panics; the child itself succeeds.
fn helper_panics(_: ()) -> u32 {
    let helper = std::thread::Builder::new().name("helper".into()).spawn(|| panic!("the helper failed"));
    assert!(helper.unwrap().join().is_err());
    42
}

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
    let method = match std::env::var("MULTIPROC_START_METHOD").as_deref() {
        Ok("spawn") => StartMethod::Spawn,
        Ok("fork") => StartMethod::Fork,
        _ => StartMethod::ForkServer,
    };
    let fail = !mode.is_empty() && mode != "uninit" && mode != "thread";
    let result = match mode.as_str() {
        "pool" | "unwrap-task" => {
            let pool = Pool::builder().processes(1).start_method(method).build()?;
            if mode == "pool" {
                pool.map(work, vec![false, fail])?.iter().sum()
            } else {
                pool.apply_async(work, fail)?.get().unwrap()
            }
        }
        "thread" => Process::new(helper_panics, ()).start_method(method).start()?.join()?,
        "unwrap-join" => Process::new(work, fail).start_method(method).start()?.join().unwrap(),
        _ => Process::new(work, fail).start_method(method).start()?.join()?,
    };
    println!("the child returned {result}");
    Ok(())
}
