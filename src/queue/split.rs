//! [`Producer`] and [`Consumer`]: a queue whose handles say which side they are on (as
//! crossbeam's `Sender` and `Receiver`), so that consumers know when every producer is gone.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{RecvError, RecvTimeoutError, SendError, TryRecvError};
use super::pipe::{Connection, Pipe};
use super::queue::Queue;
use super::wait::Waitable;
use super::wait::sealed::{Sealed, Source};
use crate::codec;
use crate::error::Error;

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue split into its two kinds of handle: [`Producer`]s put, and
    /// [`Consumer`]s get. Clone either, send them to other processes: a consumer's `get`
    /// on the empty queue returns [`RecvError::Disconnected`] as soon as no producer handle
    /// exists anywhere (dropped, closed, or its processes died), however many consumers
    /// there are; a producer's `put` returns [`SendError::Disconnected`] once no consumer
    /// handle exists.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Queue, RecvError};
    ///
    /// multiproc::init();
    /// let (tx, rx) = Queue::pair()?;
    /// let rx2 = rx.clone(); // a second consumer
    /// tx.put(1u32)?;
    /// drop(tx);
    /// assert_eq!(rx.get(), Ok(1));
    /// assert_eq!(rx2.get(), Err(RecvError::Disconnected));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pair() -> Result<(Producer<T>, Consumer<T>), Error> {
        // A one-way pipe: end 0 receives, end 1 sends; each end counts its own holders.
        let (rx, tx) = Pipe::one_way()?;
        Ok((Producer { conn: tx }, Consumer { conn: rx }))
    }
}

/// The putting side of a queue made by [`Queue::pair`].
///
/// ```
/// multiproc::init();
/// let (tx, rx) = multiproc::Queue::pair()?;
/// tx.put("bun".to_string())?;
/// assert_eq!(rx.get()?, "bun");
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Producer<T> {
    conn: Connection<T>,
}

impl<T: Serialize + DeserializeOwned> Producer<T> {
    /// Puts `value` at the back of the queue; never waits (the queue is unbounded).
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] when no consumer handle exists any more;
    /// [`SendError::Closed`] after [`Producer::close`]; [`SendError::Encode`];
    /// [`SendError::HeapFull`].
    ///
    /// ```
    /// multiproc::init();
    /// let (tx, rx) = multiproc::Queue::pair()?;
    /// tx.put([1u8, 2])?;
    /// assert_eq!(rx.get()?, [1, 2]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn put(&self, value: T) -> Result<(), SendError<T>> {
        self.conn.send(value)
    }
}

impl<T> Producer<T> {
    /// Lets go of the queue now; later calls fail with `Closed`. When no producer handle is
    /// left anywhere, the consumers see the queue disconnected. Dropping does the same.
    ///
    /// ```
    /// multiproc::init();
    /// let (mut tx, rx) = multiproc::Queue::<u8>::pair()?;
    /// tx.close();
    /// assert_eq!(rx.get(), Err(multiproc::RecvError::Disconnected));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&mut self) {
        self.conn.close();
    }
}

/// The getting side of a queue made by [`Queue::pair`].
///
/// ```
/// multiproc::init();
/// let (tx, rx) = multiproc::Queue::pair()?;
/// tx.put(5)?;
/// assert_eq!(rx.get()?, 5);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Consumer<T> {
    conn: Connection<T>,
}

impl<T: Serialize + DeserializeOwned> Consumer<T> {
    /// Takes the item at the front of the queue, waiting until one comes.
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] when the queue is empty and no producer handle exists
    /// any more (noticed within ~100 ms of a producer's death); [`RecvError::Closed`];
    /// [`RecvError::Decode`].
    ///
    /// ```
    /// multiproc::init();
    /// let (tx, rx) = multiproc::Queue::pair()?;
    /// tx.put('a')?;
    /// assert_eq!(rx.get()?, 'a');
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(&self) -> Result<T, RecvError> {
        self.conn.recv()
    }

    /// Takes the item at the front of the queue if there is one.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`], or as [`Consumer::get`].
    ///
    /// ```
    /// multiproc::init();
    /// let (tx, rx) = multiproc::Queue::<u8>::pair()?;
    /// assert_eq!(rx.try_get(), Err(multiproc::TryRecvError::Empty));
    /// # drop(tx);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, TryRecvError> {
        self.conn.try_recv()
    }

    /// Takes the item at the front of the queue, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`], or as [`Consumer::get`].
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// multiproc::init();
    /// let (tx, rx) = multiproc::Queue::pair()?;
    /// tx.put(1)?;
    /// assert_eq!(rx.get_timeout(Duration::from_secs(1))?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.conn.recv_timeout(timeout)
    }
}

impl<T> Consumer<T> {
    /// Lets go of the queue now; later calls fail with `Closed`. When no consumer handle is
    /// left anywhere, the producers see the queue disconnected. Dropping does the same.
    ///
    /// ```
    /// multiproc::init();
    /// let (tx, mut rx) = multiproc::Queue::<u8>::pair()?;
    /// rx.close();
    /// assert_eq!(tx.put(1), Err(multiproc::SendError::Disconnected(1)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&mut self) {
        self.conn.close();
    }
}

impl<T> Sealed for Consumer<T> {
    fn source(&self) -> Source<'_> {
        self.conn.source()
    }
}
impl<T> Waitable for Consumer<T> {}

macro_rules! side_handle {
    ($name:ident, $can:ident, $what:literal) => {
        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                Self { conn: self.conn.clone() }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).field("conn", &self.conn).finish()
            }
        }

        impl<T> Serialize for $name<T> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.conn.serialize(serializer)
            }
        }

        impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for $name<T> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let conn = Connection::<T>::deserialize(deserializer)?;
                if !conn.$can() {
                    return Err(codec::refuse_decoding(concat!("the handle is not a ", $what)));
                }
                Ok(Self { conn })
            }
        }
    };
}

side_handle!(Producer, writable, "Producer");
side_handle!(Consumer, readable, "Consumer");
