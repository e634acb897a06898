//! Communication between processes: [`Queue`], [`SimpleQueue`], [`JoinableQueue`],
//! [`Pipe`] and its [`Connection`]s, and [`wait`] over several of them (Python's
//! `multiprocessing.queues` and `multiprocessing.connection`).
//!
//! All of them carry typed messages (serde values, encoded with postcard) through the
//! family's shared memory, on the ring of `shm::ring`: no pipe, no socket, no feeder
//! thread. A message carries a tag of its type, so a message read as another type is a
//! [`Decode`](GetError::Decode) error rather than garbage, and a handle received as the
//! wrong type of queue or connection does not decode. Every one of them is a handle, and
//! none waits forever for a side that is gone.
//!
//! Python's `Queue.join_thread` and `cancel_join_thread` have no counterpart: there is no
//! feeder thread to wait for; a `put` is complete when it returns.

mod asynch;
mod channel;
mod error;
mod joinable;
mod pipe;
#[allow(clippy::module_inception)] // Python's queues.py: the concept `Queue` has its own file
mod queue;
mod simple;
mod split;
pub(crate) mod wait;

/// F7 for other messages taken from a ring (the manager's replies and control messages).
pub(crate) use channel::{Undecoded, settle_decoded};

pub use error::{
    ChannelError, GetError, GetTimeoutError, PutError, PutTimeoutError, QueueJoinError, QueueJoinTimeoutError,
    RecvBytesIntoError, RecvError, RecvTimeoutError, SendBytesError, SendError, TaskDoneError, TooLarge, TryGetError,
    TryPutError, TryRecvError,
};
pub use joinable::JoinableQueue;
pub use pipe::{Connection, Pipe, RecvFuture, SendArg};
pub use queue::{Queue, QueueBuilder};
pub use simple::SimpleQueue;
pub use split::{Consumer, Producer};
pub use wait::{WaitFuture, Waitable, wait, wait_async};
