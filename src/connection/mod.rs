//! [`Listener`] and [`Client`]: typed connections between any two programs that link
//! multiproc, over TCP (loopback or any address) or unix sockets, after a mutual HMAC
//! challenge on a shared key (Python's `multiprocessing.connection`).
//!
//! No family relation is needed: the two ends share only the address and the key. After
//! the handshake ([`auth`], the manager's, with a magic of its own), each message is a frame:
//! a little-endian `u32` length, then that many bytes of postcard. A frame longer than the
//! receiver's limit ([`Listener::max_message_size`], 64 MiB by default) is refused before
//! anything is allocated for it, and a frame within it takes memory only as its bytes
//! arrive. Values holding family handles (a `Queue`, a `Lock`) cannot be sent: they mean
//! something only inside one family, so encoding them fails. Nor can a value that needs a
//! self-describing encoding (a `serde_json::Value`, an untagged or internally tagged enum,
//! `flatten`, `skip_serializing_if`): postcard has no field names, so its receiver could
//! not read it, or would read another value; `send` refuses it with
//! [`SocketSendError::Encode`]. Send such a value as bytes of a format of your choice
//! (`send_bytes`, `recv_bytes`).
//!
//! A receive with a timeout bounds the whole message, not only its start: a message that
//! began and stalled (a peer stopped part-way) closes the connection with
//! [`SocketRecvError::Broken`]. TCP connections probe a silent peer (keepalive: 10 s idle,
//! then 3 probes 5 s apart), so that a peer cut off without FIN or RST (a dead host, a
//! network partition) ends even a receive without a timeout, as
//! [`SocketRecvError::Disconnected`], within about 25 s.

pub(crate) mod auth;

use std::fmt;
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::CodecError;
use crate::queue::wait::sealed::{Sealed, Source};
use crate::queue::wait::{Inner, Waitable};
use crate::sys;
use auth::{Bounded, Magic};

/// What a listener sends first: a multiproc connection, protocol version 1.
const MAGIC: &Magic = b"MPCONN\x00\x01";

/// What `Broken` says, on either side of a connection.
const BROKEN: &str = "the connection was closed: a message stopped arriving part-way, past the timeout";

/// The default limit of one received message: 64 MiB.
const DEFAULT_MAX_MESSAGE: u64 = 64 << 20;

/// A frame's bytes are read in steps of at most this much, so that memory follows the
/// bytes that arrived, not the length announced.
const READ_STEP: u64 = 64 << 10;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a [`Listener`] listens: a TCP address, or the path of a unix socket.
///
/// ```
/// use std::net::SocketAddr;
/// use std::path::Path;
/// use multiproc::Address;
///
/// let tcp = Address::from(SocketAddr::from(([127, 0, 0, 1], 0)));
/// let unix = Address::from(Path::new("/tmp/my-app.sock"));
/// assert_eq!(unix.to_string(), "/tmp/my-app.sock");
/// # let _ = tcp;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP address (Python's `('host', port)`); port 0 picks a free one.
    Tcp(SocketAddr),
    /// A unix socket's path (Python's `AF_UNIX` address).
    Unix(PathBuf),
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Address::Tcp(addr)
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Self {
        Address::Unix(path)
    }
}

impl From<&Path> for Address {
    fn from(path: &Path) -> Self {
        Address::Unix(path.to_path_buf())
    }
}

impl From<&Address> for Address {
    fn from(addr: &Address) -> Self {
        addr.clone()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => addr.fmt(f),
            Address::Unix(path) => path.display().fmt(f),
        }
    }
}

/// Why [`Listener::bind`] failed.
///
/// ```
/// use multiproc::{BindError, Listener};
///
/// let first = Listener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), b"key")?;
/// let again = Listener::bind(first.address(), b"key");
/// assert!(matches!(again, Err(BindError::AddressInUse(_))));
/// # Ok::<(), BindError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// Something already listens there (for a unix socket: the path exists).
    #[error("the address {0} is in use")]
    AddressInUse(Address),
    /// Any other failure of the socket.
    #[error("cannot listen: {0}")]
    Io(#[from] io::Error),
}

/// Why [`Listener::accept`] or [`Listener::accept_timeout`] failed.
///
/// ```
/// use std::time::Duration;
/// use multiproc::{AcceptError, Listener};
///
/// let mut listener = Listener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), b"key")?;
/// assert!(matches!(listener.accept_timeout::<u8>(Duration::ZERO), Err(AcceptError::Timeout)));
/// listener.close();
/// assert!(matches!(listener.accept::<u8>(), Err(AcceptError::Closed)));
/// # Ok::<(), multiproc::BindError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The listener was closed.
    #[error("the listener is closed")]
    Closed,
    /// No client completed the handshake within the timeout.
    #[error("no client connected in time")]
    Timeout,
    /// The listening socket failed.
    #[error("accept failed: {0}")]
    Io(#[from] io::Error),
}

/// Why [`Client::connect`] or [`Client::connect_timeout`] failed.
///
/// ```
/// use multiproc::{Client, ConnectError};
///
/// let nobody = std::path::Path::new("/nonexistent/multiproc.sock");
/// assert!(matches!(Client::connect::<u8>(nobody, b"key"), Err(ConnectError::Io(_))));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The listener does not know the key, or this side does not know its key (Python's
    /// `AuthenticationError`).
    #[error("authentication failed: {0}")]
    AuthenticationFailed(&'static str),
    /// The peer is not a multiproc [`Listener`] (or speaks another version).
    #[error("the peer is not a multiproc listener")]
    NotAListener,
    /// The connection or the handshake did not complete within the timeout.
    #[error("the connection did not complete in time")]
    Timeout,
    /// The socket failed: nothing listens there, the connection was refused, ...
    #[error("cannot connect: {0}")]
    Io(#[from] io::Error),
}

/// Why [`SocketConnection::send`] or [`SocketConnection::send_bytes`] failed.
///
/// ```
/// use multiproc::{SocketConnection, SocketSendError};
///
/// fn say(conn: &SocketConnection<String>) -> Result<(), SocketSendError> {
///     conn.send("hello".to_string())
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketSendError {
    /// The other end closed the connection.
    #[error("the other end of the connection is gone")]
    Disconnected,
    /// The message is longer than this connection's limit (which the peer shares unless
    /// it was set otherwise); nothing was sent.
    #[error("a message of {len} bytes is above the limit of {max}")]
    TooLarge {
        /// The message's length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The value cannot be encoded (for instance, it holds a family handle).
    #[error(transparent)]
    Encode(CodecError),
    /// The connection was closed after a message stopped arriving part-way (see
    /// [`SocketRecvError::Broken`]).
    #[error("{BROKEN}")]
    Broken,
    /// The socket failed.
    #[error("send failed: {0}")]
    Io(io::Error),
}

/// Why [`SocketConnection::recv`], [`recv_timeout`](SocketConnection::recv_timeout) or
/// [`recv_bytes`](SocketConnection::recv_bytes) failed.
///
/// ```
/// use multiproc::{SocketConnection, SocketRecvError};
///
/// fn next(conn: &SocketConnection<u32>) -> Option<u32> {
///     match conn.recv() {
///         Ok(n) => Some(n),
///         Err(SocketRecvError::Disconnected) => None, // Python's EOFError
///         Err(e) => panic!("{e}"),
///     }
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketRecvError {
    /// The other end closed the connection (Python's `EOFError`).
    #[error("the other end of the connection is gone")]
    Disconnected,
    /// The peer announced a message above this connection's limit; nothing was allocated
    /// for it, and the connection is closed (what follows cannot be read in step).
    #[error("the peer announced a message of {len} bytes, above the limit of {max}")]
    TooLarge {
        /// The length announced.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The message is not a value of the connection's type.
    #[error(transparent)]
    Decode(CodecError),
    /// No message began within the timeout (only from `recv_timeout`).
    #[error("no message within the timeout")]
    Timeout,
    /// A message began to arrive but did not end within the timeout of
    /// [`recv_timeout`](SocketConnection::recv_timeout): the rest of the stream can no
    /// longer be read in step, so the connection was closed, and every later call on it
    /// fails with `Broken` too.
    #[error("{BROKEN}")]
    Broken,
    /// The socket failed.
    #[error("receive failed: {0}")]
    Io(io::Error),
}

enum ListenSocket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }

    fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }

    /// Runs the handshake, all of it by `deadline`, then clears the socket's timeouts.
    fn handshake<R>(&self, deadline: Instant, run: impl FnOnce(&mut dyn ReadWrite) -> R) -> io::Result<R> {
        let result = match self {
            Stream::Tcp(s) => run(&mut Bounded::new(s, deadline)),
            Stream::Unix(s) => run(&mut Bounded::new(s, deadline)),
        };
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(None)?;
                s.set_write_timeout(None)?;
            }
            Stream::Unix(s) => {
                s.set_read_timeout(None)?;
                s.set_write_timeout(None)?;
            }
        }
        Ok(result)
    }
}

trait ReadWrite: Read + Write {}
impl<S: Read + Write> ReadWrite for S {}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match *self {
            Stream::Tcp(s) => (&mut &*s).read(buf),
            Stream::Unix(s) => (&mut &*s).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match *self {
            Stream::Tcp(s) => (&mut &*s).write(buf),
            Stream::Unix(s) => (&mut &*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Listens for [`Client`]s on a TCP address or a unix socket, and hands out one typed
/// [`SocketConnection`] per client that passes the challenge on the shared key (Python's
/// `multiprocessing.connection.Listener(address, authkey=key)`).
///
/// A unix socket's path is removed when the listener is closed or dropped.
/// [`wait`](crate::wait) sees a listener ready when a client is waiting to be accepted.
///
/// # Examples
///
/// ```
/// use multiproc::{Client, Listener};
///
/// let listener = Listener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), b"secret")?;
/// let address = listener.address().clone();
/// let client = std::thread::spawn(move || {
///     let conn = Client::connect::<String>(address, b"secret").unwrap();
///     conn.send("hello".to_string()).unwrap();
///     conn.recv().unwrap()
/// });
/// let conn = listener.accept::<String>()?;
/// let greeting = conn.recv()?;
/// conn.send(format!("{greeting} back"))?;
/// assert_eq!(client.join().unwrap(), "hello back");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct Listener {
    socket: Option<ListenSocket>,
    address: Address,
    /// The process that bound it: only there does `close` (or the drop) remove a unix
    /// socket's path. A copy that fork made in a child (kept in a static) closes its own
    /// descriptor only, as Python's finalizer does nothing in another process.
    bound_in: crate::shm::TakenIn,
    authkey: Vec<u8>,
    handshake_timeout: Duration,
    max_message: u64,
    /// The clients in the handshake, oldest first, between and during `accept`s (a call
    /// takes them out while it runs and puts back what is still under way).
    pending: Mutex<Vec<Handshake>>,
}

/// At most this many clients are in the handshake with one listener at once; a newer one
/// closes the oldest.
const MAX_PENDING: usize = 64;

/// One client in the handshake, on a non-blocking socket: the listener's hello is sent
/// (40 bytes, which a fresh socket's buffer takes at once), its answer (64 bytes) is
/// arriving, then the verdict goes out (40 bytes) in one write too. Nothing waits on one
/// client: `accept` polls them all with the listening socket.
struct Handshake {
    stream: Stream,
    deadline: Instant,
    challenge: [u8; 32],
    answer: [u8; auth::ANSWER],
    got: usize,
}

/// Where a handshake stands after a look at its socket.
enum Progress {
    /// Passed: the connection is ready for messages.
    Passed,
    /// Waiting for more of the answer.
    Waiting,
    /// The client left, knew no key, or its socket failed: close it.
    Failed,
}

/// Writes all of `bytes` in one non-blocking write, or fails.
fn write_at_once(stream: &Stream, bytes: &[u8]) -> bool {
    loop {
        match (&mut &*stream).write(bytes) {
            Ok(n) => return n == bytes.len(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

impl Handshake {
    /// Sends the hello to a client just accepted; `None` if it cannot be sent at once.
    fn start(stream: Stream, deadline: Instant) -> Option<Handshake> {
        // An accepted socket does not inherit the listener's non-blocking mode on Linux.
        let nonblocking = match &stream {
            Stream::Tcp(s) => s.set_nonblocking(true),
            Stream::Unix(s) => s.set_nonblocking(true),
        };
        nonblocking.ok()?;
        let (hello, challenge) = auth::hello(MAGIC);
        write_at_once(&stream, &hello).then_some(Handshake {
            stream,
            deadline,
            challenge,
            answer: [0; auth::ANSWER],
            got: 0,
        })
    }

    /// Reads what arrived of the answer; once it is whole, sends the verdict.
    fn step(&mut self, key: &[u8]) -> Progress {
        while self.got < auth::ANSWER {
            match (&mut &self.stream).read(&mut self.answer[self.got..]) {
                Ok(0) => return Progress::Failed,
                Ok(n) => self.got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Waiting,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Failed,
            }
        }
        let Some(welcome) = auth::verdict(key, &self.challenge, &self.answer) else {
            write_at_once(&self.stream, auth::FAILURE);
            return Progress::Failed;
        };
        if !write_at_once(&self.stream, &welcome) {
            return Progress::Failed;
        }
        // Back to blocking for the connection; a failure to set anything here is this
        // client's, not the listener's.
        let ready = match &self.stream {
            Stream::Tcp(s) => {
                s.set_nonblocking(false).and_then(|()| s.set_nodelay(true)).and_then(|()| sys::keep_alive(s.as_fd()))
            }
            Stream::Unix(s) => s.set_nonblocking(false),
        };
        if ready.is_ok() { Progress::Passed } else { Progress::Failed }
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("closed", &self.socket.is_none())
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_message_size", &self.max_message)
            .finish_non_exhaustive()
    }
}

/// `accept` failures after which the next client may well succeed.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO | libc::EPERM | libc::ENETDOWN | libc::EHOSTUNREACH)
    ) || e.kind() == io::ErrorKind::Interrupted
}

impl Listener {
    /// Listens on `address` (port 0 picks a free port; see [`address`](Self::address)),
    /// for clients that know `authkey`.
    ///
    /// # Errors
    ///
    /// [`BindError::AddressInUse`] when another socket listens there (for a unix socket,
    /// when the path exists); [`BindError::Io`] otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Listener;
    ///
    /// let path = std::env::temp_dir().join(format!("doc-{}.sock", std::process::id()));
    /// let listener = Listener::bind(path.as_path(), b"secret")?;
    /// assert!(path.exists());
    /// drop(listener);
    /// assert!(!path.exists());
    /// # Ok::<(), multiproc::BindError>(())
    /// ```
    pub fn bind(address: impl Into<Address>, authkey: &[u8]) -> Result<Listener, BindError> {
        let address = address.into();
        let in_use = |e: io::Error| match e.kind() {
            io::ErrorKind::AddrInUse => BindError::AddressInUse(address.clone()),
            _ => BindError::Io(e),
        };
        let (socket, bound) = match &address {
            Address::Tcp(addr) => {
                let listener = TcpListener::bind(addr).map_err(in_use)?;
                let bound = listener.local_addr()?;
                (ListenSocket::Tcp(listener), Address::Tcp(bound))
            }
            Address::Unix(path) => (ListenSocket::Unix(UnixListener::bind(path).map_err(in_use)?), address.clone()),
        };
        let listener = Listener {
            socket: Some(socket),
            address: bound,
            bound_in: crate::shm::TakenIn::here(),
            authkey: authkey.to_vec(),
            handshake_timeout: auth::HANDSHAKE_TIMEOUT,
            max_message: DEFAULT_MAX_MESSAGE,
            pending: Mutex::new(Vec::new()),
        };
        match &listener.socket {
            Some(ListenSocket::Tcp(l)) => l.set_nonblocking(true)?,
            Some(ListenSocket::Unix(l)) => l.set_nonblocking(true)?,
            None => {}
        }
        Ok(listener)
    }

    /// The limit of one message received on the connections accepted from now on, and of
    /// one sent (default 64 MiB).
    ///
    /// ```
    /// use multiproc::Listener;
    ///
    /// let listener = Listener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), b"k")?
    ///     .max_message_size(1 << 20);
    /// # Ok::<(), multiproc::BindError>(())
    /// ```
    pub fn max_message_size(mut self, bytes: u64) -> Self {
        self.max_message = bytes;
        self
    }

    /// How long a client may take over the handshake (default 10 s); a slower one is
    /// dropped. Other clients do not wait for it: handshakes run side by side.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::Listener;
    ///
    /// let listener = Listener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), b"k")?
    ///     .handshake_timeout(Duration::from_secs(2));
    /// # Ok::<(), multiproc::BindError>(())
    /// ```
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The address it listens on, with the port picked for port 0 (Python's
    /// `listener.address`).
    ///
    /// ```
    /// use multiproc::{Address, Listener};
    ///
    /// let listener = Listener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), b"k")?;
    /// assert!(matches!(listener.address(), Address::Tcp(a) if a.port() != 0));
    /// # Ok::<(), multiproc::BindError>(())
    /// ```
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for the next client that passes the challenge. A client that connects and
    /// leaves, fails the challenge, or does not finish it within the handshake timeout is
    /// dropped, and the wait goes on.
    ///
    /// The handshakes run side by side, each with its own deadline: a client that
    /// connects and says nothing holds up nobody behind it. At most 64 clients are in the
    /// handshake at once (a newer one closes the oldest); those still in it when `accept`
    /// returns go on at the next call (and [`wait`](crate::wait) sees the listener ready
    /// once one of them has answered). No thread is started.
    ///
    /// # Errors
    ///
    /// [`AcceptError::Closed`] after [`close`](Self::close); [`AcceptError::Io`] when the
    /// listening socket fails.
    ///
    /// # Examples
    ///
    /// See [`Listener`].
    pub fn accept<T>(&self) -> Result<SocketConnection<T>, AcceptError> {
        self.accept_until(None)
    }

    /// [`accept`](Self::accept), giving up after `timeout` (handshakes under way then go
    /// on at the next call, within their own handshake timeout).
    ///
    /// # Errors
    ///
    /// [`AcceptError::Timeout`], or as [`accept`](Self::accept).
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{AcceptError, Listener};
    ///
    /// let listener = Listener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), b"k")?;
    /// let nobody = listener.accept_timeout::<u8>(Duration::from_millis(10));
    /// assert!(matches!(nobody, Err(AcceptError::Timeout)));
    /// # Ok::<(), multiproc::BindError>(())
    /// ```
    pub fn accept_timeout<T>(&self, timeout: Duration) -> Result<SocketConnection<T>, AcceptError> {
        self.accept_until(Some(auth::deadline_after(timeout)))
    }

    fn accept_until<T>(&self, deadline: Option<Instant>) -> Result<SocketConnection<T>, AcceptError> {
        let socket = self.socket.as_ref().ok_or(AcceptError::Closed)?;
        // This call's handshakes: those under way, and those it starts. Another thread's
        // `accept` meanwhile starts its own; each puts back what is still under way.
        let mut pending = std::mem::take(&mut *lock(&self.pending));
        let result = self.handshake_until(socket, &mut pending, deadline);
        let mut kept = lock(&self.pending);
        kept.append(&mut pending);
        let over = kept.len().saturating_sub(MAX_PENDING);
        kept.drain(..over);
        drop(kept);
        result.map(|stream| SocketConnection::new(stream, self.max_message))
    }

    /// Takes clients in and moves every handshake on as its bytes arrive, until one passes
    /// (its connection) or `deadline`.
    fn handshake_until(
        &self,
        socket: &ListenSocket,
        pending: &mut Vec<Handshake>,
        deadline: Option<Instant>,
    ) -> Result<Stream, AcceptError> {
        let listening = match socket {
            ListenSocket::Tcp(l) => l.as_fd(),
            ListenSocket::Unix(l) => l.as_fd(),
        };
        loop {
            // A client too slow is closed, and goes.
            let now = Instant::now();
            pending.retain(|h| h.deadline > now);
            let wake = pending.iter().map(|h| h.deadline).min();
            let until = match (deadline, wake) {
                (Some(d), Some(w)) => Some(d.min(w)),
                (d, w) => d.or(w),
            };
            let ready = {
                let mut fds = Vec::with_capacity(1 + pending.len());
                fds.push(listening);
                fds.extend(pending.iter().map(|h| h.stream.as_fd()));
                sys::poll_readable(&fds, until.map(|u| u.saturating_duration_since(now)))?
            };
            // The handshakes whose client wrote, oldest first; the first that passes is
            // the answer, the others go on at the next look.
            let mut passed = None;
            let mut at = 0;
            pending.retain_mut(|h| {
                at += 1;
                if passed.is_some() || !ready[at] {
                    return true;
                }
                match h.step(&self.authkey) {
                    Progress::Waiting => true,
                    Progress::Failed => false,
                    Progress::Passed => {
                        passed = Some(at - 1);
                        true
                    }
                }
            });
            if let Some(i) = passed {
                return Ok(pending.remove(i).stream);
            }
            if ready[0] {
                // New clients: each gets its hello now (at most a cap's worth per look, so
                // that a flood of connections does not keep this loop from the others).
                for _ in 0..MAX_PENDING {
                    let accepted = match socket {
                        ListenSocket::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                        ListenSocket::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
                    };
                    let stream = match accepted {
                        Ok(stream) => stream,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if transient(&e) => continue,
                        Err(e) => return Err(AcceptError::Io(e)),
                    };
                    // A client that cannot take 40 bytes at once is not worth a place.
                    if let Some(h) = Handshake::start(stream, auth::deadline_after(self.handshake_timeout)) {
                        if pending.len() >= MAX_PENDING {
                            // The oldest makes room (its client had the longest).
                            pending.remove(0);
                        }
                        pending.push(h);
                    }
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(AcceptError::Timeout);
            }
        }
    }

    /// Whether a client in the handshake has written (its answer, or its leaving): an
    /// `accept` would move it on.
    fn handshake_ready(&self) -> bool {
        let pending = lock(&self.pending);
        if pending.is_empty() {
            return false;
        }
        let fds: Vec<BorrowedFd<'_>> = pending.iter().map(|h| h.stream.as_fd()).collect();
        sys::poll_readable(&fds, Some(Duration::ZERO)).is_ok_and(|ready| ready.contains(&true))
    }

    /// Stops listening (Python's `listener.close()`): later `accept`s fail with
    /// [`AcceptError::Closed`], a unix socket's path is removed, and connections already
    /// accepted go on. A copy that a `Fork` child got with its parent's memory stops only
    /// its own descriptor: the path stays the parent's.
    ///
    /// ```
    /// use multiproc::{AcceptError, Listener};
    ///
    /// let mut listener = Listener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), b"k")?;
    /// listener.close();
    /// assert!(matches!(listener.accept::<u8>(), Err(AcceptError::Closed)));
    /// # Ok::<(), multiproc::BindError>(())
    /// ```
    pub fn close(&mut self) {
        // Clients in the handshake are closed with it.
        lock(&self.pending).clear();
        if let Some(ListenSocket::Unix(_)) = self.socket.take()
            && let Address::Unix(path) = &self.address
            && self.bound_in.is_here()
        {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Whether [`close`](Self::close) was called.
    ///
    /// ```
    /// use multiproc::Listener;
    ///
    /// let mut listener = Listener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), b"k")?;
    /// assert!(!listener.is_closed());
    /// listener.close();
    /// assert!(listener.is_closed());
    /// # Ok::<(), multiproc::BindError>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.socket.is_none()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}

impl Sealed for Listener {
    fn source(&self) -> Source<'_> {
        Source(match &self.socket {
            // Ready when a client waits to be taken in, or one in the handshake wrote.
            Some(ListenSocket::Tcp(l)) => Inner::Fd { fd: l.as_fd(), ended: Box::new(|| self.handshake_ready()) },
            Some(ListenSocket::Unix(l)) => Inner::Fd { fd: l.as_fd(), ended: Box::new(|| self.handshake_ready()) },
            None => Inner::Refused,
        })
    }
}
impl Waitable for Listener {}

/// Connects to a [`Listener`] (Python's `multiprocessing.connection.Client(address,
/// authkey=key)`). The connecting program need not belong to the listener's family, nor
/// call [`init`](crate::init).
///
/// # Examples
///
/// ```no_run
/// use std::net::SocketAddr;
/// use multiproc::Client;
///
/// let conn = Client::connect::<String>(SocketAddr::from(([127, 0, 0, 1], 6000)), b"secret")?;
/// conn.send("hello".to_string())?;
/// println!("{}", conn.recv()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Client {
    _not_constructed: (),
}

impl Client {
    /// Connects to `address` and passes the challenge on `authkey`, within 10 s.
    ///
    /// # Errors
    ///
    /// [`ConnectError::AuthenticationFailed`] when the keys differ;
    /// [`ConnectError::NotAListener`] when the peer is something else;
    /// [`ConnectError::Timeout`]; [`ConnectError::Io`] when nothing listens there.
    ///
    /// # Examples
    ///
    /// See [`Client`] and [`Listener`].
    pub fn connect<T>(address: impl Into<Address>, authkey: &[u8]) -> Result<SocketConnection<T>, ConnectError> {
        Self::connect_timeout(address, authkey, auth::HANDSHAKE_TIMEOUT)
    }

    /// [`connect`](Self::connect), the connection and the handshake both done within
    /// `timeout`.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiproc::Client;
    ///
    /// let path = std::path::Path::new("/run/my-app.sock");
    /// let conn = Client::connect_timeout::<u32>(path, b"secret", Duration::from_secs(1))?;
    /// # Ok::<(), multiproc::ConnectError>(())
    /// ```
    pub fn connect_timeout<T>(
        address: impl Into<Address>,
        authkey: &[u8],
        timeout: Duration,
    ) -> Result<SocketConnection<T>, ConnectError> {
        let deadline = auth::deadline_after(timeout);
        let timed_out = |e: io::Error| match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ConnectError::Timeout,
            _ => ConnectError::Io(e),
        };
        let stream = match address.into() {
            Address::Tcp(addr) => {
                let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
                let stream = TcpStream::connect_timeout(&addr, left).map_err(timed_out)?;
                stream.set_nodelay(true)?;
                sys::keep_alive(stream.as_fd())?;
                Stream::Tcp(stream)
            }
            Address::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
        };
        let max_message = DEFAULT_MAX_MESSAGE;
        match stream.handshake(deadline, |mut s| auth::connect(&mut s, authkey, MAGIC))? {
            Ok(()) => Ok(SocketConnection::new(stream, max_message)),
            Err(failure) => Err(match failure {
                auth::Failure::NotThePeer | auth::Failure::Unexpected => ConnectError::NotAListener,
                auth::Failure::Closed => ConnectError::AuthenticationFailed("the listener closed the connection"),
                auth::Failure::Refused => ConnectError::AuthenticationFailed("the listener refused the key"),
                auth::Failure::ServerUnknown => {
                    ConnectError::AuthenticationFailed("the listener does not know the key")
                }
                auth::Failure::Io(e) => timed_out(e),
            }),
        }
    }
}

/// One end of a connection made by [`Listener::accept`] or [`Client::connect`]: messages
/// of type `T` both ways, in order (Python's `Connection` over a socket). Sending and
/// receiving may happen on two threads at once; two senders (or two receivers) take
/// turns. [`wait`](crate::wait) sees it ready when a message has begun to arrive or the
/// other end is gone. Dropping it closes the connection.
///
/// # Examples
///
/// See [`Listener`].
pub struct SocketConnection<T> {
    stream: Stream,
    max_message: u64,
    /// Set when a bounded receive stopped part-way through a frame (the connection is
    /// closed then).
    broken: AtomicBool,
    sending: Mutex<()>,
    receiving: Mutex<()>,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for SocketConnection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.stream {
            Stream::Tcp(_) => "tcp",
            Stream::Unix(_) => "unix",
        };
        f.debug_struct("SocketConnection")
            .field("socket", &kind)
            .field("max_message_size", &self.max_message)
            .finish_non_exhaustive()
    }
}

/// Why a frame could not be read.
#[derive(Debug)]
enum FrameError {
    Eof,
    TooLarge(u64),
    Io(io::Error),
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => FrameError::Eof,
            _ => FrameError::Io(e),
        }
    }
}

/// A stream whose reads wait for bytes until one deadline, then fail with `TimedOut`:
/// the whole frame by the deadline, so a peer sending a byte at a time cannot stretch the
/// wait (a timeout per read would restart with each byte). Bytes already there are read
/// even past the deadline. Counts what it read.
struct ByDeadline<'a> {
    stream: &'a Stream,
    deadline: Instant,
    read: u64,
}

impl Read for ByDeadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // A blocking stream socket that polls readable has bytes (or its end) to read now.
        while !sys::poll_readable(
            &[self.stream.as_fd()],
            Some(self.deadline.saturating_duration_since(Instant::now())),
        )?[0]
        {
            if Instant::now() >= self.deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the message did not arrive in time"));
            }
        }
        let n = (&mut &*self.stream).read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Reads one frame of at most `max` bytes; the buffer grows with the bytes that arrive.
fn read_frame(mut stream: impl Read, max: u64) -> Result<Vec<u8>, FrameError> {
    let mut head = [0u8; 4];
    stream.read_exact(&mut head)?;
    let len = u64::from(u32::from_le_bytes(head));
    if len > max {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = Vec::with_capacity(len.min(READ_STEP) as usize);
    let read = stream.take(len).read_to_end(&mut body)?;
    if (read as u64) < len {
        return Err(FrameError::Eof);
    }
    Ok(body)
}

impl<T> SocketConnection<T> {
    fn new(stream: Stream, max_message: u64) -> Self {
        Self {
            stream,
            max_message,
            broken: AtomicBool::new(false),
            sending: Mutex::new(()),
            receiving: Mutex::new(()),
            _type: PhantomData,
        }
    }

    /// The limit of one message received, and of one sent, on this connection (default:
    /// the listener's, or 64 MiB for a client).
    ///
    /// ```no_run
    /// use multiproc::Client;
    ///
    /// let conn = Client::connect::<Vec<u8>>(std::path::Path::new("/run/app.sock"), b"k")?.max_message_size(1 << 30);
    /// # Ok::<(), multiproc::ConnectError>(())
    /// ```
    pub fn max_message_size(mut self, bytes: u64) -> Self {
        self.max_message = bytes;
        self
    }

    /// Sends one message of raw bytes (Python's `send_bytes`); the other end takes it
    /// with [`recv_bytes`](Self::recv_bytes).
    ///
    /// # Errors
    ///
    /// [`SocketSendError::TooLarge`] above the limit (or 4 GiB);
    /// [`SocketSendError::Disconnected`] when the other end is gone.
    ///
    /// ```no_run
    /// use multiproc::Client;
    ///
    /// let conn = Client::connect::<()>(std::path::Path::new("/run/app.sock"), b"k")?;
    /// conn.send_bytes(b"raw")?;
    /// assert_eq!(conn.recv_bytes()?, b"raw back");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), SocketSendError> {
        let len = bytes.len() as u64;
        let max = self.max_message.min(u64::from(u32::MAX));
        if len > max {
            return Err(SocketSendError::TooLarge { len, max });
        }
        let mut frame = Vec::with_capacity(4 + bytes.len());
        frame.extend_from_slice(&(len as u32).to_le_bytes());
        frame.extend_from_slice(bytes);
        if self.is_broken() {
            return Err(SocketSendError::Broken);
        }
        let _turn = lock(&self.sending);
        (&self.stream).write_all(&frame).map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected => {
                SocketSendError::Disconnected
            }
            _ => SocketSendError::Io(e),
        })
    }

    /// Receives one message as raw bytes (Python's `recv_bytes`).
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), without `Decode`.
    ///
    /// # Examples
    ///
    /// See [`send_bytes`](Self::send_bytes).
    pub fn recv_bytes(&self) -> Result<Vec<u8>, SocketRecvError> {
        self.recv_bytes_until(None)
    }

    /// [`recv_bytes`](Self::recv_bytes), giving up when no message has begun to arrive
    /// within `timeout`, and closing the connection when one began but did not end within
    /// it (a peer that stalls part-way, or went silent with no FIN or RST).
    ///
    /// # Errors
    ///
    /// [`SocketRecvError::Timeout`] (nothing began: the connection goes on);
    /// [`SocketRecvError::Broken`] (a message began and stalled: the connection is
    /// closed); or as [`recv_bytes`](Self::recv_bytes).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiproc::{Client, SocketRecvError};
    ///
    /// let conn = Client::connect::<()>(std::path::Path::new("/run/app.sock"), b"k")?;
    /// match conn.recv_bytes_timeout(Duration::from_secs(1)) {
    ///     Ok(bytes) => println!("{} bytes", bytes.len()),
    ///     Err(SocketRecvError::Timeout) => println!("nothing yet"),
    ///     Err(e) => return Err(e.into()),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, SocketRecvError> {
        self.recv_bytes_until(Some(auth::deadline_after(timeout)))
    }

    fn recv_bytes_until(&self, deadline: Option<Instant>) -> Result<Vec<u8>, SocketRecvError> {
        if self.is_broken() {
            return Err(SocketRecvError::Broken);
        }
        let _turn = lock(&self.receiving);
        let frame = match deadline {
            None => read_frame(&self.stream, self.max_message),
            Some(deadline) => {
                let mut bounded = ByDeadline { stream: &self.stream, deadline, read: 0 };
                match read_frame(&mut bounded, self.max_message) {
                    Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::TimedOut => {
                        if bounded.read == 0 {
                            return Err(SocketRecvError::Timeout);
                        }
                        // Part of a frame was read: what follows cannot be read in step.
                        self.broken.store(true, Ordering::Release);
                        self.stream.shutdown();
                        return Err(SocketRecvError::Broken);
                    }
                    frame => frame,
                }
            }
        };
        match frame {
            Ok(frame) => Ok(frame),
            Err(FrameError::Eof) => Err(SocketRecvError::Disconnected),
            Err(FrameError::TooLarge(len)) => {
                self.stream.shutdown();
                Err(SocketRecvError::TooLarge { len, max: self.max_message })
            }
            // A TCP peer that stopped answering the keepalive probes.
            Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::TimedOut => Err(SocketRecvError::Disconnected),
            Err(FrameError::Io(e)) => Err(SocketRecvError::Io(e)),
        }
    }

    fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Whether a message has begun to arrive (or the other end is gone), waiting up to
    /// `timeout` for it (`None`: until then; Python's `conn.poll(timeout)`).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiproc::Client;
    ///
    /// let conn = Client::connect::<u32>(std::path::Path::new("/run/app.sock"), b"k")?;
    /// if conn.poll(Some(Duration::from_millis(100))) {
    ///     println!("{}", conn.recv()?);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn poll(&self, timeout: Option<Duration>) -> bool {
        sys::poll_readable(&[self.stream.as_fd()], timeout).map_or(true, |r| r[0])
    }

    /// The address of the other end (Python's `listener.last_accepted`, for the
    /// connection just accepted): its TCP address, or the path a unix client bound (most
    /// bind none: then `None`).
    ///
    /// ```no_run
    /// use multiproc::Listener;
    ///
    /// let listener = Listener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 6000)), b"k")?;
    /// let conn = listener.accept::<u32>()?;
    /// println!("connection accepted from {:?}", conn.peer_address());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn peer_address(&self) -> Option<Address> {
        match &self.stream {
            Stream::Tcp(s) => s.peer_addr().ok().map(Address::Tcp),
            Stream::Unix(s) => s.peer_addr().ok()?.as_pathname().map(Address::from),
        }
    }

    /// Closes the connection (Python's `conn.close()`); the other end's receive then fails
    /// with [`SocketRecvError::Disconnected`]. Dropping it does the same.
    ///
    /// ```no_run
    /// use multiproc::Client;
    ///
    /// let conn = Client::connect::<u32>(std::path::Path::new("/run/app.sock"), b"k")?;
    /// conn.close();
    /// # Ok::<(), multiproc::ConnectError>(())
    /// ```
    pub fn close(self) {
        self.stream.shutdown();
    }
}

impl<T: Serialize + DeserializeOwned> SocketConnection<T> {
    /// Sends `value` (Python's `conn.send(obj)`). It takes the value, as
    /// [`Connection::send`](crate::Connection::send) does; a failure here ends the
    /// connection or is about the value itself (too large, not encodable), so the error
    /// does not carry it back.
    ///
    /// # Errors
    ///
    /// [`SocketSendError::Encode`] when `value` cannot be encoded: it holds a family
    /// handle, or it needs a self-describing encoding, which a socket connection's plain
    /// postcard is not (its type's `Deserialize` asks for `deserialize_any`: a
    /// `serde_json::Value`, an untagged, internally or adjacently tagged enum, `flatten`;
    /// or it reads a struct only as a map, or an identifier; or the value skips a field,
    /// `skip_serializing_if`, or writes a field or variant its `Deserialize` does not read
    /// as written, `skip_serializing` alone, a variant after one `skip_deserializing`;
    /// nothing is sent, and the connection goes on;
    /// a recursive type, or one of many enums, is sent); otherwise as
    /// [`send_bytes`](Self::send_bytes).
    ///
    /// # Examples
    ///
    /// See [`Listener`].
    pub fn send(&self, value: T) -> Result<(), SocketSendError> {
        let bytes = crate::codec::encode_untagged(&value).map_err(SocketSendError::Encode)?;
        self.send_bytes(&bytes)
    }

    /// Receives the next message (Python's `conn.recv()`), waiting for it.
    ///
    /// # Errors
    ///
    /// [`SocketRecvError::Disconnected`] when the other end is gone;
    /// [`SocketRecvError::TooLarge`] when the peer announced more than the limit;
    /// [`SocketRecvError::Decode`] when the bytes are not a `T`.
    ///
    /// # Examples
    ///
    /// See [`Listener`].
    pub fn recv(&self) -> Result<T, SocketRecvError> {
        Self::decode(&self.recv_bytes()?)
    }

    fn decode(bytes: &[u8]) -> Result<T, SocketRecvError> {
        // Through the codec's wrapper: a message nested past its depth limit is an error,
        // not a stack overflow of this process.
        crate::codec::decode_untagged(bytes).map_err(SocketRecvError::Decode)
    }

    /// [`recv`](Self::recv), giving up when no message has begun to arrive within
    /// `timeout`. The whole message must arrive within it: one that began and stalled
    /// (a peer stopped part-way, or cut off by the network) closes the connection, whose
    /// stream can no longer be read in step.
    ///
    /// # Errors
    ///
    /// [`SocketRecvError::Timeout`] when no message began (the connection goes on);
    /// [`SocketRecvError::Broken`] when one began and did not end in time (then and for
    /// every later call); or as [`recv`](Self::recv).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiproc::{Client, SocketRecvError};
    ///
    /// let conn = Client::connect::<u32>(std::path::Path::new("/run/app.sock"), b"k")?;
    /// match conn.recv_timeout(Duration::from_secs(1)) {
    ///     Ok(n) => println!("{n}"),
    ///     Err(SocketRecvError::Timeout) => println!("nothing yet"),
    ///     Err(e) => return Err(e.into()),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, SocketRecvError> {
        Self::decode(&self.recv_bytes_timeout(timeout)?)
    }
}

impl<T> Sealed for SocketConnection<T> {
    fn source(&self) -> Source<'_> {
        Source(Inner::Fd { fd: self.stream.as_fd(), ended: Box::new(|| false) })
    }
}
impl<T> Waitable for SocketConnection<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_above_the_limit_is_refused_before_anything_is_allocated() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&u32::MAX.to_le_bytes()).unwrap();
        assert!(matches!(read_frame(&b, 1 << 20), Err(FrameError::TooLarge(len)) if len == u64::from(u32::MAX)));
    }

    #[test]
    fn tcp_connections_probe_a_silent_peer_on_both_sides() {
        let listener = Listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), b"k").unwrap();
        let address = listener.address().clone();
        let client = std::thread::spawn(move || Client::connect::<u8>(address, b"k").unwrap());
        let accepted = listener.accept::<u8>().unwrap();
        let connected = client.join().unwrap();
        for conn in [&accepted, &connected] {
            assert!(sys::kept_alive(conn.stream.as_fd()).unwrap());
        }
    }

    #[test]
    fn a_frame_cut_short_is_the_end_and_takes_only_what_arrived() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&(1u32 << 30).to_le_bytes()).unwrap();
        a.write_all(b"abc").unwrap();
        drop(a);
        assert!(matches!(read_frame(&b, u64::MAX), Err(FrameError::Eof)));
    }
}
