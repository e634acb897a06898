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

pub use error::{BootFailure, NotReady, PoolError, ResultTimeoutError, TaskError};
pub use options::{ApplyOptions, MapOptions};
pub use process::{Pool, PoolBuilder};
pub use result::{AsyncResult, IMap, MapResult};
pub use star::{Argument, StarFn, ThreadTarget};
pub use stats::PoolStats;
pub use thread::{ThreadPool, ThreadPoolBuilder};
