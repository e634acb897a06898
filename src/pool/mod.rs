//! Pools: [`Pool`] of worker processes that never hangs, and [`ThreadPool`] with the same
//! API.

mod channel;
mod claims;
pub(crate) mod engine;
mod error;
mod options;
mod process;
mod progress;
pub(crate) mod result;
mod result_async;
mod star;
pub(crate) mod stats;
pub(crate) mod supervisor;
mod thread;
mod worker;

/// Refuses a pool of more workers than the system can run at all, before any is started
/// (Python's would start them until the system refused one; a worker count near
/// `usize::MAX` overflowed a `Vec`'s capacity). A system that does not say its limit is
/// not refused here: starting a worker then fails, typed, when the system refuses it.
/// Called where workers start (`Inner::start`, the thread pool's build), so that every
/// way in is covered (review81 L2: `cluster::serve` forked until refused).
pub(crate) fn check_workers(asked: usize) -> Result<(), PoolError> {
    // Each worker is a thread at least, with a pid of its own: the lowest of the system
    // limits (review81 L2: threads-max was 193111 here, pid_max 32768), and of the user's
    // `RLIMIT_NPROC` (which counts threads too), but for root, whom it does not bind.
    let limit = |path: &str| std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse::<usize>().ok());
    let nproc = (!rustix::process::geteuid().is_root())
        .then(|| rustix::process::getrlimit(rustix::process::Resource::Nproc).current)
        .flatten()
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let max =
        [limit("/proc/sys/kernel/threads-max"), limit("/proc/sys/kernel/pid_max"), nproc].into_iter().flatten().min();
    match max {
        Some(max) if asked > max => Err(PoolError::TooManyWorkers { asked, max }),
        _ => Ok(()),
    }
}

pub use error::{BootFailure, NotReady, PoolError, ResultTimeoutError, TaskError};
pub use options::{ApplyOptions, MapOptions};
#[cfg(feature = "cluster")]
pub(crate) use process::pack_task;
pub use process::{Pool, PoolBuilder};
pub use result::{AsyncResult, IMap, MapResult};
pub use star::{Argument, StarFn, ThreadTarget};
pub use stats::PoolStats;
pub use thread::{ThreadPool, ThreadPoolBuilder};
