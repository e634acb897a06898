//! Pools: [`Pool`] of worker processes that never hangs, and [`ThreadPool`] with the same
//! API.

mod channel;
mod error;
mod options;
mod process;
mod progress;
mod result;
mod result_async;
mod star;
mod stats;
mod thread;

pub use error::{NotReady, PoolError, ResultTimeoutError, TaskError};
pub use options::{ApplyOptions, MapOptions};
pub use process::{Pool, PoolBuilder};
pub use result::{AsyncResult, IMap, MapResult};
pub use star::StarFn;
pub use stats::PoolStats;
pub use thread::{ThreadPool, ThreadPoolBuilder};
