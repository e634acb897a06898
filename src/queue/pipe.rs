//! [`Pipe`] and [`Connection`]: Python's `multiprocessing.Pipe`, two connected ends.

#[path = "pipe_async.rs"]
mod pipe_async;
pub use pipe_async::RecvFuture;

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::channel::{
    RAW, Undecoded, decode_taken, message_tag, recv_value, refused, send_value, settle_decoded, type_tag,
};
use super::error::{Failure, RecvBytesIntoError, RecvError, RecvTimeoutError, SendBytesError, SendError, TryRecvError};
use crate::codec;
use crate::error::Error;
use crate::shm::{
    Deadline, Heap, Holders, Limits, Patient, Refused, Ring, Shared, ShmObject, Side, Sided, Watch, kind,
};

/// Unread messages past which a sender looks whether the other end still lives.
const BACKLOG_LOOK: u64 = 1024;

/// The two ends of a pipe in shared memory; end `e` reads `rings[e]` and writes the other.
#[derive(crate::ShmSafe)]
#[repr(C)]
pub(crate) struct PipeState {
    type_tag: AtomicU64,
    duplex: AtomicU64,
    /// Set once an end has no handle left anywhere.
    gone: [AtomicU64; 2],
    ends: [Holders; 2],
    rings: [Ring; 2],
}

impl ShmObject for PipeState {
    const KIND: u32 = kind::PIPE;
    // The rings' destroy records each step before its free: run again after a kill, it
    // frees nothing twice.
    const DESTROY_RESUMES: bool = true;

    fn destroy(&self, heap: &Heap) {
        for ring in &self.rings {
            ring.destroy(heap);
        }
    }
}

impl Sided for PipeState {
    const SIDES: usize = 2;

    fn side_tables(&self) -> &[Holders] {
        &self.ends
    }

    fn side_gone(&self, side: usize) {
        self.gone[side].store(1, Ordering::Release);
        for ring in &self.rings {
            ring.wake_all();
        }
    }
}

impl PipeState {
    /// Whether end `end` has no handle left anywhere: said by whoever let go of it last
    /// (`side_gone`), or, for an end discarded unread by a process that did not know the
    /// pipe's type (`shm::object::discard_side`, which cannot call `side_gone`), by its
    /// released table alone. (review41 M1: only the flag was read, and only a waiting
    /// receive, at its slice's `Peer::check`, saw such an end gone: `try_recv` said
    /// `Empty`, `poll(0)` `false`, and `send` piled messages up for nobody.)
    #[inline]
    fn is_gone(&self, end: usize) -> bool {
        self.gone[end].load(Ordering::Acquire) != 0 || self.ends[end].released()
    }
}

/// Watches the other end of a pipe: gone when none of its handles is left anywhere.
#[derive(Clone, Copy)]
pub(crate) struct Peer<'a> {
    end: &'a Side<PipeState>,
    peer: usize,
}

impl Watch for Peer<'_> {
    type Gone = ();

    #[inline]
    fn left(&self) -> Option<()> {
        self.end.is_gone(self.peer).then_some(())
    }

    fn check(&self) -> Result<(), ()> {
        if self.end.side_alive(self.peer) {
            Ok(())
        } else {
            // Its holders died without dropping their handles: say it for everyone.
            self.end.side_gone(self.peer);
            Err(())
        }
    }
}

/// Creates connected pairs of [`Connection`]s (Python's `multiprocessing.Pipe`).
///
/// ```no_run
/// use multiproc::{Pipe, Process, Connection};
///
/// fn child(conn: Connection<String>) {
///     conn.send("hello from the child".to_string()).unwrap();
/// }
///
/// multiproc::init();
/// let (parent, theirs) = Pipe::new()?;
/// let p = Process::new(child, theirs).start()?;
/// println!("{}", parent.recv()?);
/// p.join()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.Pipe")]
pub struct Pipe<T> {
    _never: std::convert::Infallible,
    _messages: PhantomData<fn(T) -> T>,
}

impl<T: Serialize + DeserializeOwned> Pipe<T> {
    /// A duplex pipe (Python's `Pipe()`): both ends send and receive; what one end sends,
    /// the other receives.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::new()?;
    /// a.send(1)?;
    /// b.send(2)?;
    /// assert_eq!((b.recv()?, a.recv()?), (1, 2));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<(Connection<T>, Connection<T>), Error> {
        Self::create(true)
    }

    /// A one-way pipe (Python's `Pipe(duplex=False)`): returns `(receiver, sender)`, in
    /// Python's order. Sending on the receiver, or receiving on the sender, fails with
    /// `Closed`.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// ```
    /// multiproc::init();
    /// let (rx, tx) = multiproc::Pipe::one_way()?;
    /// tx.send('>')?;
    /// assert_eq!(rx.recv()?, '>');
    /// assert!(rx.send('<').is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "duplex")]
    pub fn one_way() -> Result<(Connection<T>, Connection<T>), Error> {
        Self::create(false)
    }

    fn create(duplex: bool) -> Result<(Connection<T>, Connection<T>), Error> {
        let state = PipeState {
            type_tag: AtomicU64::new(type_tag::<T>("Pipe")),
            duplex: AtomicU64::new(u64::from(duplex)),
            gone: [AtomicU64::new(0), AtomicU64::new(0)],
            ends: [Holders::new_held(), Holders::new_held()],
            rings: [Ring::new(Limits::default()), Ring::new(Limits::default())],
        };
        let shared = Shared::new(state)?;
        // Ours alone until this returns; on failure, dropping `shared` frees it all.
        shared.rings[0].open()?;
        if duplex {
            shared.rings[1].open()?;
        }
        let mut ends = Side::split(shared).into_iter().map(Connection::wrap);
        let first = ends.next().expect("two ends");
        let second = ends.next().expect("two ends");
        Ok((first, second))
    }
}

impl<T> fmt::Debug for Pipe<T> {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self._never {}
    }
}

/// One end of a [`Pipe`]: sends `T`s to the other end and receives theirs (Python's
/// `multiprocessing.connection.Connection`).
///
/// Messages wait in the family's shared memory until received, so [`send`](Self::send)
/// never blocks, whatever the size of the message. When the other end is gone (its every
/// handle dropped, closed, or died with its process), a receive returns what was sent
/// before, then [`RecvError::Disconnected`] (Python's `EOFError`) instead of waiting
/// forever, and a send fails with [`SendError::Disconnected`]. The ends are tracked apart,
/// so this works even when both ends sat in one process before one was passed to a child.
///
/// An end is a handle: clone it, pass it to a child, send it through a queue or another
/// pipe. Several processes may use one end at once without corrupting it (unlike Python).
/// A connection has no file descriptor; use [`wait`](crate::wait) to wait on several.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Connection, Pipe, Process};
///
/// fn echo(conn: Connection<Vec<u32>>) {
///     while let Ok(v) = conn.recv() {
///         conn.send(v).unwrap();
///     }
/// }
///
/// multiproc::init();
/// let (mine, theirs) = Pipe::new()?;
/// let child = Process::new(echo, theirs).start()?;
/// mine.send(vec![1, 2, 3])?;
/// assert_eq!(mine.recv()?, [1, 2, 3]);
/// drop(mine); // the child's recv now ends, and so does the child
/// child.join()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.connection.Connection")]
pub struct Connection<T> {
    end: Option<Side<PipeState>>,
    tag: u32,
    /// The sending ring's segment count when this handle last looked at the other end.
    looked: AtomicU64,
    drain: fn(&PipeState, u32),
    release: fn(&[u8]) -> Option<Undecoded>,
    _messages: PhantomData<fn(T) -> T>,
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    fn wrap(end: Side<PipeState>) -> Self {
        Self {
            end: Some(end),
            tag: message_tag::<T>(),
            looked: AtomicU64::new(0),
            drain: drain::<T>,
            release: release::<T>,
            _messages: PhantomData,
        }
    }
}

fn drain<T: DeserializeOwned>(pipe: &PipeState, tag: u32) {
    for ring in &pipe.rings {
        while recv_value::<T, _>(ring, tag, Deadline::now(), &Patient).is_ok() {}
    }
}

/// Decodes a message of `T` taken as raw bytes and drops it: the handles inside are
/// released, since the bytes can never become handles again. A decoding that failed gives
/// what [`settle_decoded`] needs once the message is taken.
fn release<T: DeserializeOwned>(bytes: &[u8]) -> Option<Undecoded> {
    decode_taken::<T>(bytes, true).err()
}

/// The parts of an open end that an operation needs.
struct Open<'a> {
    end: &'a Side<PipeState>,
    me: usize,
}

impl<'a> Open<'a> {
    #[inline]
    fn peer(&self) -> Peer<'a> {
        Peer { end: self.end, peer: 1 - self.me }
    }

    #[inline]
    fn duplex(&self) -> bool {
        self.end.duplex.load(Ordering::Relaxed) != 0
    }

    #[inline]
    fn rx(&self) -> Result<&'a Ring, Failure> {
        if self.duplex() || self.me == 0 { Ok(&self.end.rings[self.me]) } else { Err(Failure::Closed) }
    }

    #[inline]
    fn tx(&self) -> Result<&'a Ring, Failure> {
        if self.duplex() || self.me == 1 { Ok(&self.end.rings[1 - self.me]) } else { Err(Failure::Closed) }
    }
}

impl<T> Connection<T> {
    #[inline]
    fn open(&self) -> Result<Open<'_>, Failure> {
        let end = self.end.as_ref().ok_or(Failure::Closed)?;
        Ok(Open { end, me: end.index() })
    }

    /// Messages taken so far by this end's receivers, all processes together: a take is
    /// committed when this counts it (`None`: the end is closed or only sends).
    pub(crate) fn taken(&self) -> Option<u64> {
        let open = self.open().ok()?;
        open.rx().ok().map(Ring::taken)
    }

    /// Sends raw bytes, as one message (Python's `send_bytes`); the other end gets them with
    /// [`Connection::recv_bytes`].
    ///
    /// # Errors
    ///
    /// [`SendBytesError::Disconnected`] when the other end is gone;
    /// [`SendBytesError::Closed`]; [`SendBytesError::HeapFull`].
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::<()>::new()?;
    /// a.send_bytes(b"raw")?;
    /// assert_eq!(b.recv_bytes()?, b"raw");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), SendBytesError> {
        let send = || {
            let open = self.open()?;
            let ring = open.tx()?;
            ring.put_bytes(bytes, RAW, Deadline::NEVER, &open.peer()).map_err(|r| match r {
                Refused::HeapFull(e) => Failure::HeapFull(e),
                Refused::Gone(()) => Failure::Gone,
                Refused::TimedOut | Refused::TooLarge { .. } => unreachable!("a pipe has no capacity"),
                Refused::ShutDown => unreachable!("a pipe is never shut down"),
                Refused::InOwnTake => unreachable!("a pipe has no capacity to wait for"),
            })?;
            self.look_at_peer(&open, ring)
        };
        send().map_err(|failure| match failure {
            Failure::Gone => SendBytesError::Disconnected,
            Failure::Closed => SendBytesError::Closed,
            Failure::HeapFull(e) => SendBytesError::HeapFull(e),
            other => unreachable!("raw bytes are not encoded, and a pipe has no capacity: {other:?}"),
        })
    }

    /// Receives the next message as raw bytes (Python's `recv_bytes`): what
    /// [`Connection::send_bytes`] sent, or the encoding of what `send` sent. Handles inside
    /// a message that `send` sent (a `Queue`, a `Lock`) are released as the message is
    /// taken, as if it were received and dropped: the bytes can never become handles again.
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] once the other end is gone and everything it sent was
    /// received; [`RecvError::Closed`].
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::<u8>::new()?;
    /// a.send_bytes(&[1, 2, 3])?;
    /// assert_eq!(b.recv_bytes()?, [1, 2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        self.take_raw(Deadline::NEVER, |bytes| bytes.to_vec()).map_err(RecvError::from_failure)
    }

    /// Receives the next message into `buf` (Python's `recv_bytes_into`); returns its
    /// length.
    ///
    /// # Errors
    ///
    /// [`RecvBytesIntoError::BufferTooShort`] with the message (taken from the pipe) when
    /// it is longer than `buf`; [`RecvBytesIntoError::Disconnected`];
    /// [`RecvBytesIntoError::Closed`].
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::<()>::new()?;
    /// a.send_bytes(b"four")?;
    /// let mut buf = [0u8; 16];
    /// let n = b.recv_bytes_into(&mut buf)?;
    /// assert_eq!(&buf[..n], b"four");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvBytesIntoError> {
        let got = self.take_raw(Deadline::NEVER, |bytes| {
            if bytes.len() <= buf.len() {
                buf[..bytes.len()].copy_from_slice(bytes);
                Ok(bytes.len())
            } else {
                Err(bytes.to_vec())
            }
        });
        match got {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(message)) => Err(RecvBytesIntoError::BufferTooShort(message)),
            Err(Failure::Closed) => Err(RecvBytesIntoError::Closed),
            Err(_) => Err(RecvBytesIntoError::Disconnected),
        }
    }

    /// A sender does not read `/proc` per message, so a peer that died (rather than closed
    /// its end) is noticed by a receive; but a sender whose messages pile up unread looks,
    /// once per segment of backlog, so that it does not fill memory for nobody.
    fn look_at_peer(&self, open: &Open<'_>, ring: &Ring) -> Result<(), Failure> {
        let segments = ring.segments_linked();
        if segments != self.looked.load(Ordering::Relaxed) {
            self.looked.store(segments, Ordering::Relaxed);
            let peer = open.peer();
            if ring.len() >= BACKLOG_LOOK && peer.check().is_err() {
                return Err(Failure::Gone);
            }
        }
        Ok(())
    }

    fn take_raw<R>(&self, deadline: Deadline, read: impl FnOnce(&[u8]) -> R) -> Result<R, Failure> {
        let open = self.open()?;
        let ring = open.rx()?;
        let (undecoded, r) = ring
            .get(deadline, &open.peer(), |bytes, got| {
                // What `send` sent may hold handles (a message of `T`, not `send_bytes`'s).
                // The flag is read with the message, not before the wait: the producer
                // sets it before it commits the record that the take read (Acquire).
                let handles = got == self.tag && ring.ever_had_handles();
                let undecoded = handles.then(|| (self.release)(bytes)).flatten();
                (undecoded, read(bytes))
            })
            .map_err(|r| refused(r, |()| Failure::Gone))?;
        if let Some(undecoded) = undecoded {
            let _ = settle_decoded::<()>(Err(undecoded));
        }
        Ok(r)
    }

    /// Whether a receive would not block: a message is waiting, or the other end is gone,
    /// waiting at most `timeout` for it (Python's `poll`; `Duration::ZERO` looks once).
    ///
    /// A closed handle, or the sending end of a one-way pipe, is ready at once: a receive
    /// there fails at once with `Closed` (where Python's `poll` raises `OSError`), so that
    /// a `while !conn.poll(t) {}` loop ends and the receive after it says why.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::RecvError;
    ///
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::new()?;
    /// assert!(!b.poll(Duration::ZERO));
    /// a.send(1)?;
    /// assert!(b.poll(Duration::from_secs(1)));
    /// let (_rx, tx) = multiproc::Pipe::<u8>::one_way()?;
    /// assert!(tx.poll(Duration::from_secs(1)));
    /// assert_eq!(tx.recv(), Err(RecvError::Closed));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn poll(&self, timeout: Duration) -> bool {
        let Ok(open) = self.open() else { return true };
        let Ok(rx) = open.rx() else { return true };
        !matches!(rx.wait_message(Deadline::after(timeout), &open.peer()), Err(Refused::TimedOut))
    }

    /// Whether this end can receive: open, and not the sending end of a one-way pipe.
    ///
    /// ```
    /// multiproc::init();
    /// let (rx, tx) = multiproc::Pipe::<u8>::one_way()?;
    /// assert!(rx.readable() && !tx.readable());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn readable(&self) -> bool {
        self.open().is_ok_and(|o| o.rx().is_ok())
    }

    /// Whether this end can send: open, and not the receiving end of a one-way pipe.
    ///
    /// ```
    /// multiproc::init();
    /// let (rx, tx) = multiproc::Pipe::<u8>::one_way()?;
    /// assert!(tx.writable() && !rx.writable());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn writable(&self) -> bool {
        self.open().is_ok_and(|o| o.tx().is_ok())
    }

    /// Closes this handle: it lets go of its end now, and later calls on it fail with
    /// `Closed`. Once no handle of this end is left anywhere, the other end sees the pipe
    /// disconnected. Dropping the handle does the same.
    ///
    /// ```
    /// use multiproc::RecvError;
    ///
    /// multiproc::init();
    /// let (mut a, b) = multiproc::Pipe::<u8>::new()?;
    /// a.close();
    /// assert_eq!(b.recv(), Err(RecvError::Disconnected));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&mut self) {
        self.drain_if_last();
        self.end = None;
    }

    /// Whether [`Connection::close`] was called on this handle (Python's `closed`).
    ///
    /// ```
    /// multiproc::init();
    /// let (mut a, _b) = multiproc::Pipe::<u8>::new()?;
    /// a.close();
    /// assert!(a.is_closed());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias = "closed")]
    pub fn is_closed(&self) -> bool {
        self.end.is_none()
    }

    fn drain_if_last(&self) {
        // The last handle of the pipe anywhere: unread messages may hold handles, which
        // must be released (decoded and dropped) before the rings' bytes go. Decided once
        // this process's receive of the pipe is final.
        if let Some(end) = &self.end
            && end.rings.iter().any(|r| r.ever_had_handles() && !r.is_empty())
        {
            let (drain, tag) = (self.drain, self.tag);
            end.shared().if_last(move |pipe| drain(pipe, tag));
        }
    }

    /// The ring this end receives from, with its watch, for [`wait`](crate::wait).
    pub(crate) fn receiving(&self) -> Option<(&Ring, Peer<'_>)> {
        let open = self.open().ok()?;
        let rx = open.rx().ok()?;
        Some((rx, Peer { end: open.end, peer: 1 - open.me }))
    }
}

/// What [`Connection::send`] takes: the message (`send(x)`, given back in the error) or a
/// reference to it (`send(&x)`, which keeps `x`). Implemented for `T` and `&T` only, so
/// that a pipe's type is still inferred from what is sent to it.
///
/// # Examples
///
/// ```
/// multiproc::init();
/// let (a, b) = multiproc::Pipe::new()?;
/// let greeting = "hello".to_string();
/// a.send(&greeting)?; // kept
/// a.send(greeting)?; // moved
/// assert_eq!((b.recv()?, b.recv()?), ("hello".to_string(), "hello".to_string()));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub trait SendArg<T>: sealed::Sealed<T> {
    /// The message.
    fn message(&self) -> &T;
}

mod sealed {
    pub trait Sealed<T> {}
    impl<T> Sealed<T> for T {}
    impl<T> Sealed<T> for &T {}
}

impl<T> SendArg<T> for T {
    fn message(&self) -> &T {
        self
    }
}

impl<T> SendArg<T> for &T {
    fn message(&self) -> &T {
        self
    }
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    /// Sends `value` to the other end (Python's `send`); never waits. It takes the value,
    /// as [`Queue::put`](crate::Queue::put) and crossbeam's `send` do, or a reference to
    /// it (`send(&x)` keeps `x`: the message is an encoded copy either way), and gives back
    /// what it was given in the error when it could not be sent.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] when the other end is gone; [`SendError::Closed`] after
    /// [`Connection::close`] (or on the receiving end of a one-way pipe);
    /// [`SendError::Encode`]; [`SendError::HeapFull`].
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::new()?;
    /// a.send((42, "hello".to_string()))?;
    /// assert_eq!(b.recv()?, (42, "hello".to_string()));
    /// let kept = (7, "kept".to_string());
    /// a.send(&kept)?;
    /// assert_eq!(b.recv()?, kept);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn send<V: SendArg<T>>(&self, value: V) -> Result<(), SendError<V>> {
        let send = || {
            let open = self.open()?;
            let ring = open.tx()?;
            send_value(ring, value.message(), self.tag, Deadline::NEVER, &open.peer())?;
            self.look_at_peer(&open, ring)
        };
        send().map_err(|failure| SendError::from_failure(value, failure))
    }

    /// Receives the next message, waiting until one comes (Python's `recv`).
    ///
    /// # Errors
    ///
    /// [`RecvError::Disconnected`] once the other end is gone and everything it sent was
    /// received (Python's `EOFError`); [`RecvError::Closed`]; [`RecvError::Decode`] when the
    /// message is not a `T` (raw bytes from `send_bytes`, say).
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::new()?;
    /// a.send("hi".to_string())?;
    /// assert_eq!(b.recv()?, "hi");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_until(Deadline::NEVER).map_err(RecvError::from_failure)
    }

    /// Receives the next message if one is waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`]; [`TryRecvError::Disconnected`] when nothing is waiting and
    /// the other end is known to be gone (a dead peer is noticed by waiting calls);
    /// [`TryRecvError::Closed`]; [`TryRecvError::Decode`].
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::new()?;
    /// assert!(b.try_recv().is_err());
    /// a.send(1)?;
    /// assert_eq!(b.try_recv()?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.recv_until(Deadline::now()).map_err(TryRecvError::from_failure)
    }

    /// Receives the next message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`], or the errors of [`Connection::recv`].
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::new()?;
    /// a.send(7)?;
    /// assert_eq!(b.recv_timeout(Duration::from_secs(1))?, 7);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_until(Deadline::after(timeout)).map_err(RecvTimeoutError::from_failure)
    }

    fn recv_until(&self, deadline: Deadline) -> Result<T, Failure> {
        let open = self.open()?;
        recv_value(open.rx()?, self.tag, deadline, &open.peer())
    }
}

impl<T> Drop for Connection<T> {
    fn drop(&mut self) {
        self.drain_if_last();
    }
}

impl<T> Clone for Connection<T> {
    fn clone(&self) -> Self {
        Self {
            end: self.end.clone(),
            tag: self.tag,
            looked: AtomicU64::new(0),
            drain: self.drain,
            release: self.release,
            _messages: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.end {
            Some(end) => f
                .debug_struct("Connection")
                .field("offset", &end.shared().offset())
                .field("end", &end.index())
                .field("readable", &self.readable())
                .field("writable", &self.writable())
                .finish(),
            None => f.write_str("Connection(closed)"),
        }
    }
}

impl<T> Serialize for Connection<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.end {
            Some(end) => end.serialize(serializer),
            None => Err(codec::refuse_encoding("a closed connection cannot be sent")),
        }
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let end = Side::<PipeState>::deserialize(deserializer)?;
        if end.type_tag.load(Ordering::Relaxed) != type_tag::<T>("Pipe") {
            return Err(codec::refuse_decoding(format_args!(
                "the handle is not a Connection<{}> (it was made for another message type)",
                std::any::type_name::<T>()
            )));
        }
        Ok(Self::wrap(end))
    }
}
