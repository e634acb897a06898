//! Counters a pool's user can read: tasks done, failed, timed out, workers restarted.

use std::sync::atomic::{AtomicU64, Ordering};

use super::error::TaskError;

/// What a pool has done so far ([`Pool::stats`](crate::Pool::stats)). Counts items: a
/// chunk of ten that succeeded adds ten to `tasks_done`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Items that returned a result.
    pub tasks_done: u64,
    /// Items that ended with an error (panic, lost worker, timeout, termination).
    pub tasks_failed: u64,
    /// Of the failed: items whose worker was killed for running past the timeout.
    pub tasks_timed_out: u64,
    /// Of the failed: items whose worker died under them.
    pub tasks_lost: u64,
    /// Workers started to replace one that died, timed out or retired.
    pub workers_restarted: u64,
    /// Items a failed `map` no longer needed: dropped before they ran, or stopped while
    /// running (their worker killed). Counted in neither `tasks_done` nor `tasks_failed`.
    pub tasks_cancelled: u64,
}

/// The live counters behind [`PoolStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    done: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    lost: AtomicU64,
    restarted: AtomicU64,
    cancelled: AtomicU64,
}

impl Counters {
    pub(crate) fn done_many(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, e: &TaskError) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        match e {
            TaskError::TimedOut(_) => {
                self.timed_out.fetch_add(1, Ordering::Relaxed);
            }
            TaskError::WorkerLost { .. } => {
                self.lost.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    pub(crate) fn cancelled(&self, n: u64) {
        self.cancelled.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn restarted(&self) {
        self.restarted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> PoolStats {
        PoolStats {
            tasks_done: self.done.load(Ordering::Relaxed),
            tasks_failed: self.failed.load(Ordering::Relaxed),
            tasks_timed_out: self.timed_out.load(Ordering::Relaxed),
            tasks_lost: self.lost.load(Ordering::Relaxed),
            workers_restarted: self.restarted.load(Ordering::Relaxed),
            tasks_cancelled: self.cancelled.load(Ordering::Relaxed),
        }
    }
}
