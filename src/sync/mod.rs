//! Synchronization between the processes of a family: [`Lock`], [`RLock`],
//! [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condition`] and [`Barrier`].
//!
//! Each is a handle to state in the family's shared memory: clone it, pass it to a child,
//! send it through a queue. Each survives the death of the processes using it: a lock or
//! a permit held by a process that died is taken over by the next acquirer, whose guard
//! says so (`owner_died()`); a barrier breaks when a party dies; a blocking wait that
//! nobody is left to end returns [`Abandoned`] (never while another thread of the waiting
//! process could end it: then it waits, as Python's does).

mod barrier;
mod condition;
mod error;
mod event;
mod lock;
mod rlock;
mod semaphore;
mod waiters;

pub use barrier::{Barrier, BarrierBuilder, BarrierWait};
pub use condition::{Condition, ConditionAcquire, ConditionGuard, ConditionLock, ConditionWait, ConditionWaitFor};
pub use error::{
    Abandoned, AcquireTimeoutError, BarrierBreak, BrokenBarrier, ConditionWaitError, ReleaseError, TryAcquireError,
};
pub use event::{Event, EventWait};
pub(crate) use lock::Hold;
pub use lock::{Lock, LockAcquire, LockGuard};
pub use rlock::{RLock, RLockAcquire, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreAcquire, SemaphoreGuard};
