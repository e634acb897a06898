//! One error type per operation of the queues and connections, in crossbeam's style: a
//! failed `put` gives the value back, and every error converts into the crate's [`Error`].

use std::fmt;

use crate::codec::CodecError;
use crate::error::Error;
use crate::shm::HeapFull;

/// What a channel operation's error becomes in the crate's [`Error`], without the message.
///
/// ```
/// use multiproc::{ChannelError, Error, Queue};
///
/// fn drain(q: &Queue<u32>) -> Result<u32, Error> {
///     Ok(q.try_get()? + q.try_get()?)
/// }
///
/// multiproc::init();
/// let q = Queue::new()?;
/// q.put(1)?;
/// assert!(matches!(drain(&q), Err(Error::Channel(ChannelError::Empty))));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// Nothing to take, and the call was not to wait.
    #[error("the channel is empty")]
    Empty,
    /// No room, and the call was not to wait.
    #[error("the queue is full")]
    Full,
    /// The timeout passed first.
    #[error("the operation timed out")]
    Timeout,
    /// The other side is gone: no other handle exists anywhere (the other processes
    /// dropped theirs, closed them, or died).
    #[error("the other side of the channel is gone")]
    Disconnected,
    /// This handle was closed (or this end of a one-way pipe cannot do that).
    #[error("the handle is closed")]
    Closed,
    /// The queue was shut down ([`Queue::shutdown`](crate::Queue::shutdown)): no put is
    /// taken any more, and nothing is left to get (Python's `queue.ShutDown`).
    #[error("the queue is shut down")]
    ShutDown,
    /// A message larger than the queue's byte capacity.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// `task_done` was called more times than items were put.
    #[error(transparent)]
    TaskDone(#[from] TaskDoneError),
    /// A message longer than the buffer given to `recv_bytes_into`.
    #[error("the message ({len} bytes) is longer than the buffer")]
    BufferTooShort {
        /// The message's length.
        len: usize,
    },
}

/// A message larger than a bounded queue's byte capacity: it could never fit.
///
/// ```
/// use multiproc::{PutError, Queue, TooLarge};
///
/// multiproc::init();
/// let q: Queue<String> = Queue::builder().max_bytes(16).build()?;
/// match q.put("far too long for sixteen bytes".to_string()) {
///     Err(PutError::TooLarge(_, TooLarge { capacity, .. })) => assert_eq!(capacity, 16),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a message of {size} bytes does not fit in a queue of {capacity} bytes")]
pub struct TooLarge {
    /// The encoded message's size.
    pub size: usize,
    /// The queue's byte capacity ([`QueueBuilder::max_bytes`](crate::QueueBuilder::max_bytes)).
    pub capacity: usize,
}

/// [`JoinableQueue::task_done`](crate::JoinableQueue::task_done) was called more times than
/// items were put (Python's `ValueError`).
///
/// ```
/// use multiproc::{JoinableQueue, TaskDoneError};
///
/// multiproc::init();
/// let q = JoinableQueue::<u8>::new()?;
/// assert_eq!(q.task_done(), Err(TaskDoneError));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("task_done() called too many times")]
pub struct TaskDoneError;

/// Writes the `put` family's error types: each gives the value back.
/// A blocking `put` has no waiting variant: it waits while the queue is full, so only the
/// `try_` and `_timeout` forms name one.
macro_rules! put_error {
    (@wait $value:ident) => {
        unreachable!("a put without a deadline waits for room")
    };
    (@wait $value:ident $wait:ident) => {
        Self::$wait($value)
    };
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$wait_meta:meta])* $wait:ident => $wait_error:expr, $wait_msg:literal )? }
    ) => {
        $(#[$meta])*
        #[non_exhaustive]
        pub enum $name<T> {
            $( $(#[$wait_meta])* $wait(T), )?
            /// The other side is gone (see [`ChannelError::Disconnected`]).
            Disconnected(T),
            /// This handle was closed.
            Closed(T),
            /// The queue was shut down ([`Queue::shutdown`](crate::Queue::shutdown)):
            /// it takes no more puts (Python's `queue.ShutDown`).
            ShutDown(T),
            /// The message is larger than the queue's byte capacity.
            TooLarge(T, TooLarge),
            /// The message could not be encoded.
            Encode(T, CodecError),
            /// The family's shared memory is exhausted.
            HeapFull(T, HeapFull),
        }

        impl<T> $name<T> {
            /// The value that was not put.
            ///
            /// ```
            /// multiproc::init();
            /// let mut q = multiproc::Queue::new()?;
            /// q.close();
            /// assert_eq!(q.put(vec![1, 2]).unwrap_err().into_inner(), [1, 2]);
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn into_inner(self) -> T {
                match self {
                    $( Self::$wait(v) => v, )?
                    Self::Disconnected(v) | Self::Closed(v) | Self::ShutDown(v) => v,
                    Self::TooLarge(v, _) | Self::Encode(v, _) | Self::HeapFull(v, _) => v,
                }
            }

            /// The error without the value (what `?` turns it into).
            ///
            /// ```
            /// use multiproc::{ChannelError, Error};
            ///
            /// multiproc::init();
            /// let mut q = multiproc::Queue::new()?;
            /// q.close();
            /// let e = q.put(1).unwrap_err();
            /// assert!(matches!(e.reason(), Error::Channel(ChannelError::Closed)));
            /// # Ok::<(), multiproc::Error>(())
            /// ```
            pub fn reason(&self) -> Error {
                match self {
                    $( Self::$wait(_) => $wait_error, )?
                    Self::Disconnected(_) => ChannelError::Disconnected.into(),
                    Self::Closed(_) => ChannelError::Closed.into(),
                    Self::ShutDown(_) => ChannelError::ShutDown.into(),
                    Self::TooLarge(_, e) => ChannelError::TooLarge(*e).into(),
                    Self::Encode(_, e) => e.clone().into(),
                    Self::HeapFull(_, e) => (*e).into(),
                }
            }

            fn variant(&self) -> &'static str {
                match self {
                    $( Self::$wait(_) => stringify!($wait), )?
                    Self::Disconnected(_) => "Disconnected",
                    Self::Closed(_) => "Closed",
                    Self::ShutDown(_) => "ShutDown",
                    Self::TooLarge(..) => "TooLarge",
                    Self::Encode(..) => "Encode",
                    Self::HeapFull(..) => "HeapFull",
                }
            }

            pub(crate) fn from_failure(value: T, failure: Failure) -> Self {
                match failure {
                    Failure::Wait => put_error!(@wait value $($wait)?),
                    Failure::Gone => Self::Disconnected(value),
                    Failure::Closed => Self::Closed(value),
                    Failure::ShutDown => Self::ShutDown(value),
                    Failure::TooLarge(e) => Self::TooLarge(value, e),
                    Failure::Encode(e) | Failure::Decode(e) => Self::Encode(value, e),
                    Failure::HeapFull(e) => Self::HeapFull(value, e),
                }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}::{}(..)", stringify!($name), self.variant())
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( Self::$wait(_) => f.write_str($wait_msg), )?
                    _ => write!(f, "{}", self.reason()),
                }
            }
        }

        impl<T> std::error::Error for $name<T> {}

        impl<T> From<$name<T>> for Error {
            fn from(e: $name<T>) -> Error {
                e.reason()
            }
        }
    };
}

put_error! {
    /// Why [`Queue::put`](crate::Queue::put) failed; the value comes back.
    ///
    /// ```
    /// use multiproc::{PutError, Queue};
    ///
    /// multiproc::init();
    /// let mut q = Queue::new()?;
    /// q.close();
    /// match q.put(7) {
    ///     Err(PutError::Closed(seven)) => assert_eq!(seven, 7),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    PutError {}
}

put_error! {
    /// Why [`Queue::try_put`](crate::Queue::try_put) failed; the value comes back.
    ///
    /// ```
    /// use multiproc::{Queue, TryPutError};
    ///
    /// multiproc::init();
    /// let q = Queue::with_maxsize(1)?;
    /// q.try_put('a')?;
    /// assert!(matches!(q.try_put('b'), Err(TryPutError::Full('b'))));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    TryPutError {
        /// The queue is full.
        Full => ChannelError::Full.into(), "the queue is full"
    }
}

put_error! {
    /// Why [`Queue::put_timeout`](crate::Queue::put_timeout) failed; the value comes back.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{PutTimeoutError, Queue};
    ///
    /// multiproc::init();
    /// let q = Queue::with_maxsize(1)?;
    /// let consumer = q.clone(); // someone could make room: put waits
    /// q.put(1)?;
    /// let e = q.put_timeout(2, Duration::from_millis(10)).unwrap_err();
    /// assert!(matches!(e, PutTimeoutError::Timeout(2)));
    /// # drop(consumer);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    PutTimeoutError {
        /// The queue stayed full until the timeout.
        Timeout => ChannelError::Timeout.into(), "timed out waiting for room in the queue"
    }
}

/// Writes the `get`/`recv` family's error types.
macro_rules! take_error {
    (@wait $variant:ident) => {
        Self::$variant
    };
    (@wait) => {
        unreachable!("a blocking call without a deadline does not time out")
    };
    (
        $(#[$meta:meta])*
        $name:ident $([$shut:ident, $full:ident])? { $( $(#[$v_meta:meta])* $variant:ident => $msg:literal, $channel:expr; )? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$v_meta])* #[error($msg)] $variant, )?
            $(
                /// The queue was shut down ([`Queue::shutdown`](crate::Queue::shutdown))
                /// and nothing is left in it (Python's `queue.ShutDown`).
                #[error("the queue is shut down")]
                $shut,
                /// A [`JoinableQueue`](crate::JoinableQueue)'s take found no place in the
                /// family's shared memory to count the task it would take (the task table
                /// keeps it where `join` sees it lost if this process dies holding it; a
                /// process without a slot there, that can claim none, needs a block of the
                /// family heap): the take was refused before anything was read, and the
                /// item stays in the queue, for another consumer or for a later `get`. Only
                /// when the table has no slot for this process (every one another live
                /// process's, or its lock held by a stopped process) and the family's
                /// shared memory is exhausted, or while another process is stopped
                /// (`SIGSTOP`, a debugger) inside its allocator, which lasts as long as that
                /// process stays stopped; free some (drop large values, handles of shared
                /// objects or queues no longer needed) and call `get` again. Python has no
                /// such case. Never from a `Queue` or a `SimpleQueue`.
                #[error(transparent)]
                $full(HeapFull),
            )?
            /// The other side is gone and nothing is left to take: every other handle was
            /// dropped, closed, or died with its process (Python's `EOFError` for a pipe).
            #[error("the other side of the channel is gone")]
            Disconnected,
            /// This handle was closed (or is the sending end of a one-way pipe).
            #[error("the handle is closed")]
            Closed,
            /// The message could not be decoded as the handle's type (it was sent as
            /// another type, or as raw bytes).
            #[error(transparent)]
            Decode(CodecError),
        }

        impl $name {
            pub(crate) fn from_failure(failure: Failure) -> Self {
                match failure {
                    Failure::Wait => take_error!(@wait $($variant)?),
                    Failure::Gone => Self::Disconnected,
                    Failure::Closed => Self::Closed,
                    Failure::Decode(e) | Failure::Encode(e) => Self::Decode(e),
                    $( Failure::ShutDown => Self::$shut, Failure::HeapFull(e) => Self::$full(e), )?
                    #[allow(unreachable_patterns)]
                    Failure::TooLarge(_) | Failure::HeapFull(_) | Failure::ShutDown => {
                        unreachable!("taking a message cannot fail with {failure:?}")
                    }
                }
            }
        }

        impl From<$name> for Error {
            fn from(e: $name) -> Error {
                match e {
                    $( $name::$variant => $channel.into(), )?
                    $( $name::$shut => ChannelError::ShutDown.into(), $name::$full(e) => e.into(), )?
                    $name::Disconnected => ChannelError::Disconnected.into(),
                    $name::Closed => ChannelError::Closed.into(),
                    $name::Decode(e) => e.into(),
                }
            }
        }
    };
}

take_error! {
    /// Why [`Queue::get`](crate::Queue::get) (or `SimpleQueue::get`) returned no message.
    ///
    /// ```
    /// use multiproc::{GetError, Queue};
    ///
    /// multiproc::init();
    /// let q: Queue<u32> = Queue::new()?;
    /// // No other handle exists: nobody can ever put, so get does not wait forever.
    /// assert_eq!(q.get(), Err(GetError::Disconnected));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    GetError [ShutDown, HeapFull] {}
}

take_error! {
    /// Why [`Queue::try_get`](crate::Queue::try_get) returned no message.
    ///
    /// ```
    /// use multiproc::{Queue, TryGetError};
    ///
    /// multiproc::init();
    /// let q: Queue<u32> = Queue::new()?;
    /// assert_eq!(q.try_get(), Err(TryGetError::Empty));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    TryGetError [ShutDown, HeapFull] {
        /// The queue is empty.
        Empty => "the queue is empty", ChannelError::Empty;
    }
}

take_error! {
    /// Why [`Queue::get_timeout`](crate::Queue::get_timeout) returned no message.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{GetTimeoutError, Queue};
    ///
    /// multiproc::init();
    /// let q: Queue<u32> = Queue::new()?;
    /// let keep = q.clone(); // another handle: a put may come, so get waits
    /// assert_eq!(q.get_timeout(Duration::from_millis(10)), Err(GetTimeoutError::Timeout));
    /// # drop(keep);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    GetTimeoutError [ShutDown, HeapFull] {
        /// Nothing came before the timeout.
        Timeout => "timed out waiting for a message", ChannelError::Timeout;
    }
}

take_error! {
    /// Why [`Connection::recv`](crate::Connection::recv) returned no message.
    ///
    /// ```
    /// use multiproc::{Pipe, RecvError};
    ///
    /// multiproc::init();
    /// let (a, b) = Pipe::<String>::new()?;
    /// drop(b);
    /// assert_eq!(a.recv(), Err(RecvError::Disconnected));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "EOFError")]
    RecvError {}
}

take_error! {
    /// Why [`Connection::try_recv`](crate::Connection::try_recv) returned no message.
    ///
    /// ```
    /// use multiproc::{Pipe, TryRecvError};
    ///
    /// multiproc::init();
    /// let (a, _b) = Pipe::<String>::new()?;
    /// assert_eq!(a.try_recv(), Err(TryRecvError::Empty));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    TryRecvError {
        /// No message is waiting.
        Empty => "no message is waiting", ChannelError::Empty;
    }
}

take_error! {
    /// Why [`Connection::recv_timeout`](crate::Connection::recv_timeout) returned no message.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{Pipe, RecvTimeoutError};
    ///
    /// multiproc::init();
    /// let (a, _b) = Pipe::<String>::new()?;
    /// assert_eq!(a.recv_timeout(Duration::from_millis(10)), Err(RecvTimeoutError::Timeout));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    RecvTimeoutError {
        /// Nothing came before the timeout.
        Timeout => "timed out waiting for a message", ChannelError::Timeout;
    }
}

/// Why [`Connection::send`](crate::Connection::send) (or a queue pair's
/// [`Producer::put`](crate::Producer::put)) failed; the value comes back, as from
/// [`Queue::put`](crate::Queue::put) (crossbeam's `SendError<T>`).
///
/// ```
/// use multiproc::{Pipe, SendError};
///
/// multiproc::init();
/// let (a, b) = Pipe::<u8>::new()?;
/// drop(b);
/// assert_eq!(a.send(1), Err(SendError::Disconnected(1)));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "BrokenPipeError")]
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError<T> {
    /// The other end is gone: its every handle was dropped, closed, or died with its
    /// process (Python's `BrokenPipeError`).
    Disconnected(T),
    /// This handle was closed (or is the receiving end of a one-way pipe).
    Closed(T),
    /// The message could not be encoded.
    Encode(T, CodecError),
    /// The family's shared memory is exhausted.
    HeapFull(T, HeapFull),
}

impl<T> SendError<T> {
    pub(crate) fn from_failure(value: T, failure: Failure) -> Self {
        match failure {
            Failure::Gone => Self::Disconnected(value),
            Failure::Closed => Self::Closed(value),
            Failure::Encode(e) | Failure::Decode(e) => Self::Encode(value, e),
            Failure::HeapFull(e) => Self::HeapFull(value, e),
            Failure::Wait | Failure::TooLarge(_) => unreachable!("a pipe has no capacity: {failure:?}"),
            Failure::ShutDown => unreachable!("a pipe is never shut down"),
        }
    }

    /// The value that was not sent.
    ///
    /// ```
    /// multiproc::init();
    /// let (mut a, _b) = multiproc::Pipe::new()?;
    /// a.close();
    /// assert_eq!(a.send(vec![1, 2]).unwrap_err().into_inner(), [1, 2]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            Self::Disconnected(v) | Self::Closed(v) | Self::Encode(v, _) | Self::HeapFull(v, _) => v,
        }
    }

    /// The error without the value (what `?` turns it into).
    ///
    /// ```
    /// use multiproc::{ChannelError, Error};
    ///
    /// multiproc::init();
    /// let (mut a, _b) = multiproc::Pipe::new()?;
    /// a.close();
    /// assert!(matches!(a.send(1).unwrap_err().reason(), Error::Channel(ChannelError::Closed)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn reason(&self) -> Error {
        match self {
            Self::Disconnected(_) => ChannelError::Disconnected.into(),
            Self::Closed(_) => ChannelError::Closed.into(),
            Self::Encode(_, e) => e.clone().into(),
            Self::HeapFull(_, e) => (*e).into(),
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let variant = match self {
            Self::Disconnected(_) => "Disconnected",
            Self::Closed(_) => "Closed",
            Self::Encode(..) => "Encode",
            Self::HeapFull(..) => "HeapFull",
        };
        write!(f, "SendError::{variant}(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disconnected(_) => f.write_str("the other end of the pipe is gone"),
            _ => write!(f, "{}", self.reason()),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}

impl<T> From<SendError<T>> for Error {
    fn from(e: SendError<T>) -> Error {
        e.reason()
    }
}

/// Why [`Connection::send_bytes`](crate::Connection::send_bytes) failed (the bytes stay
/// the caller's).
///
/// ```
/// use multiproc::{Pipe, SendBytesError};
///
/// multiproc::init();
/// let (a, b) = Pipe::<u8>::new()?;
/// drop(b);
/// assert_eq!(a.send_bytes(b"gone"), Err(SendBytesError::Disconnected));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendBytesError {
    /// The other end is gone (see [`SendError::Disconnected`]).
    #[error("the other end of the pipe is gone")]
    Disconnected,
    /// This handle was closed (or is the receiving end of a one-way pipe).
    #[error("the handle is closed")]
    Closed,
    /// The family's shared memory is exhausted.
    #[error(transparent)]
    HeapFull(HeapFull),
}

impl From<SendBytesError> for Error {
    fn from(e: SendBytesError) -> Error {
        match e {
            SendBytesError::Disconnected => ChannelError::Disconnected.into(),
            SendBytesError::Closed => ChannelError::Closed.into(),
            SendBytesError::HeapFull(e) => e.into(),
        }
    }
}

/// Why [`Connection::recv_bytes_into`](crate::Connection::recv_bytes_into) failed.
///
/// ```
/// use multiproc::{Pipe, RecvBytesIntoError};
///
/// multiproc::init();
/// let (a, b) = Pipe::<()>::new()?;
/// b.send_bytes(b"too long for four")?;
/// let mut buf = [0u8; 4];
/// match a.recv_bytes_into(&mut buf) {
///     Err(RecvBytesIntoError::BufferTooShort(message)) => assert_eq!(message, b"too long for four"),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvBytesIntoError {
    /// The other end is gone and nothing is left to receive.
    #[error("the other end of the pipe is gone")]
    Disconnected,
    /// This handle was closed (or is the sending end of a one-way pipe).
    #[error("the handle is closed")]
    Closed,
    /// The message is longer than the buffer; here it is (it was taken from the pipe, as
    /// Python's `BufferTooShort` carries it).
    #[error("the message ({} bytes) is longer than the buffer", .0.len())]
    BufferTooShort(Vec<u8>),
}

impl From<RecvBytesIntoError> for Error {
    fn from(e: RecvBytesIntoError) -> Error {
        match e {
            RecvBytesIntoError::Disconnected => ChannelError::Disconnected.into(),
            RecvBytesIntoError::Closed => ChannelError::Closed.into(),
            RecvBytesIntoError::BufferTooShort(m) => ChannelError::BufferTooShort { len: m.len() }.into(),
        }
    }
}

/// Why [`JoinableQueue::join`](crate::JoinableQueue::join) returned before every item was
/// marked done.
///
/// ```
/// use multiproc::{JoinableQueue, QueueJoinError};
///
/// multiproc::init();
/// let q = JoinableQueue::new()?;
/// q.put(1)?;
/// // Nobody else holds the queue: nobody could ever mark the item done.
/// assert_eq!(q.join(), Err(QueueJoinError::Disconnected { unfinished: 1 }));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueJoinError {
    /// No other handle exists (the consumers exited or died), so nobody can call
    /// `task_done` for the items left.
    #[error("{unfinished} items were never marked done, and no other handle to the queue exists")]
    Disconnected {
        /// Items put and not marked done.
        unfinished: u64,
    },
    /// Every item not marked done was taken by a process that died before marking it
    /// done (killed, crashed): nobody can ever finish them, so `join` does not wait for
    /// them. They stay unfinished (a later `join` says the same), and are not put back.
    /// Only while another handle exists: with none left, `join` answers
    /// [`QueueJoinError::Disconnected`] first, whoever took the unfinished items.
    #[error("{lost} items were taken by processes that died before marking them done")]
    TasksLost {
        /// Items taken by dead processes and never marked done.
        lost: u64,
    },
    /// This handle was closed.
    #[error("the handle is closed")]
    Closed,
}

impl From<QueueJoinError> for Error {
    fn from(e: QueueJoinError) -> Error {
        match e {
            QueueJoinError::Disconnected { .. } | QueueJoinError::TasksLost { .. } => ChannelError::Disconnected.into(),
            QueueJoinError::Closed => ChannelError::Closed.into(),
        }
    }
}

/// Why [`JoinableQueue::join_timeout`](crate::JoinableQueue::join_timeout) returned before
/// every item was marked done.
///
/// ```
/// use std::time::Duration;
/// use multiproc::{JoinableQueue, QueueJoinTimeoutError};
///
/// multiproc::init();
/// let mut q = JoinableQueue::<u8>::new()?;
/// q.close();
/// assert_eq!(q.join_timeout(Duration::from_secs(1)), Err(QueueJoinTimeoutError::Closed));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueJoinTimeoutError {
    /// Items were still unfinished at the timeout.
    #[error("{unfinished} items were still unfinished at the timeout")]
    Timeout {
        /// Items put and not marked done.
        unfinished: u64,
    },
    /// No other handle exists (the consumers exited or died).
    #[error("{unfinished} items were never marked done, and no other handle to the queue exists")]
    Disconnected {
        /// Items put and not marked done.
        unfinished: u64,
    },
    /// Every item not marked done was taken by a process that died before marking it
    /// done; see [`QueueJoinError::TasksLost`].
    #[error("{lost} items were taken by processes that died before marking them done")]
    TasksLost {
        /// Items taken by dead processes and never marked done.
        lost: u64,
    },
    /// This handle was closed.
    #[error("the handle is closed")]
    Closed,
}

impl From<QueueJoinTimeoutError> for Error {
    fn from(e: QueueJoinTimeoutError) -> Error {
        match e {
            QueueJoinTimeoutError::Timeout { .. } => ChannelError::Timeout.into(),
            QueueJoinTimeoutError::Disconnected { .. } | QueueJoinTimeoutError::TasksLost { .. } => {
                ChannelError::Disconnected.into()
            }
            QueueJoinTimeoutError::Closed => ChannelError::Closed.into(),
        }
    }
}

impl From<TaskDoneError> for Error {
    fn from(e: TaskDoneError) -> Error {
        ChannelError::TaskDone(e).into()
    }
}

impl From<TooLarge> for Error {
    fn from(e: TooLarge) -> Error {
        ChannelError::TooLarge(e).into()
    }
}

/// How an operation failed inside the channel code, before it is told as the operation's
/// own error type.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Full (try), empty (try), or the timeout passed.
    Wait,
    /// The other side is gone.
    Gone,
    /// The handle is closed.
    Closed,
    /// The queue is shut down.
    ShutDown,
    TooLarge(TooLarge),
    Encode(CodecError),
    Decode(CodecError),
    HeapFull(HeapFull),
}
