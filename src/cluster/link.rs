//! One blocking connection to Redis with bounded waits, opened again after a failure.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, ConnectionInfo, ErrorKind, RedisResult, Value};

use super::{ClusterError, Tls};
use crate::shm::TakenIn;

/// The longest one blocking Redis command waits before the caller regains control (to
/// keep its heartbeat, reclaim dead consumers' items, check its own deadline).
pub(crate) const SLICE: Duration = Duration::from_secs(1);

/// A connection that is opened lazily and dropped after any failure, so that the next
/// call connects anew (Redis restarted) or fails fast with the reason (Redis gone).
pub(crate) struct Link {
    info: ConnectionInfo,
    /// A `rediss://` URL's TLS settings, made once.
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<Conn>,
    /// The process that opened `conn`. A fork child's copy of the connection shares the
    /// parent's socket: a command sent on it could have its reply read by the other
    /// process. The child never uses it (nor closes it, see `Drop`): it connects anew.
    conn_in: TakenIn,
    timeout: Duration,
}

impl Link {
    #[allow(dead_code)] // for objects that take no certificates
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self, ClusterError> {
        Self::with_tls(url, timeout, None)
    }

    /// A link whose `rediss://` connections use `tls`'s certificates (`None`: the
    /// system's authorities). Certificates that do not parse are [`ClusterError::Tls`].
    pub(crate) fn with_tls(url: &str, timeout: Duration, tls: Option<&Tls>) -> Result<Self, ClusterError> {
        let info =
            redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| ClusterError::BadUrl(e.to_string()))?;
        let tls = match info.addr() {
            ConnectionAddr::TcpTls { insecure: true, .. } => {
                return Err(ClusterError::BadUrl(
                    "the URL asks to skip the server certificate's checks (#insecure): give its authority instead"
                        .into(),
                ));
            }
            ConnectionAddr::TcpTls { .. } => Some(super::tls::client_config(tls)?),
            _ if tls.is_some() => {
                return Err(ClusterError::BadUrl("TLS certificates were given for a URL that is not rediss://".into()));
            }
            _ => None,
        };
        // A timeout of `Duration::MAX` ("wait as long as it takes") would overflow the
        // read limit below: the longest kept is a hundred years.
        Ok(Self { info, tls, conn: None, conn_in: TakenIn::here(), timeout: timeout.min(super::MAX_LEASE) })
    }

    /// Runs `f` on the connection (connecting first if needed). Every read waits at most
    /// [`SLICE`] plus the timeout, so a server that stops answering is an error, not a
    /// hang. A connection-level failure drops the connection.
    pub(crate) fn run<R>(&mut self, f: impl FnOnce(&mut Conn) -> RedisResult<R>) -> Result<R, ClusterError> {
        if self.conn.is_some() && !self.conn_in.is_here() {
            // The parent's connection, copied by fork: left to the parent.
            std::mem::forget(self.conn.take());
        }
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let conn = Conn::open(&self.info, self.tls.as_ref(), self.timeout)
                    .map_err(|e| ClusterError::from_redis(&e))?;
                self.conn_in = TakenIn::here();
                self.conn.insert(conn)
            }
        };
        let result = f(conn);
        let open = conn.open;
        result.map_err(|e| {
            let err = ClusterError::from_redis(&e);
            if matches!(err, ClusterError::Unreachable(_)) || e.is_unrecoverable_error() || !open {
                self.conn = None;
            }
            err
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // A fork child's copy of the parent's connection: not ours to end (forgotten: its
        // descriptor stays open until this process exits).
        if !self.conn_in.is_here() {
            std::mem::forget(self.conn.take());
        }
    }
}

/// One connection to Redis, on a socket of ours rather than the redis crate's (which
/// encodes the commands and parses the replies): a blocking read or write that a signal
/// interrupts (`EINTR`) goes on, where the crate's connection fails and cannot be read
/// again. A socket with a timeout is never restarted by the kernel, whatever the handler's
/// `SA_RESTART`, and is interrupted even by a stop and continue (`SIGSTOP`, `SIGCONT`).
pub(crate) struct Conn {
    stream: Stream,
    parser: redis::Parser,
    /// The longest one read or write waits: [`SLICE`] plus the link's timeout.
    limit: Duration,
    db: i64,
    /// False after any failure: a reply may be half read.
    open: bool,
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    /// Marks the connection as not to be used again (its `Link` drops it once the call
    /// returns): for a caller that knows replies are left unread (a refused `CLIENT REPLY
    /// SKIP` leaves the reply it was to skip).
    pub(crate) fn close(&mut self) {
        self.open = false;
    }

    /// Connects (within `timeout`), then authenticates and selects the URL's database.
    fn open(info: &ConnectionInfo, tls: Option<&Arc<rustls::ClientConfig>>, timeout: Duration) -> RedisResult<Self> {
        let stream = match info.addr() {
            ConnectionAddr::Tcp(host, port) => Stream::Tcp(connect_tcp(host, *port, timeout)?),
            ConnectionAddr::TcpTls { host, port, .. } => {
                let config = tls.expect("a rediss:// link has its TLS settings").clone();
                let name = rustls::pki_types::ServerName::try_from(host.clone())?;
                let session = rustls::ClientConnection::new(config, name)?;
                // The handshake runs with the first write.
                Stream::Tls(Box::new(rustls::StreamOwned::new(session, connect_tcp(host, *port, timeout)?)))
            }
            ConnectionAddr::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
            other => {
                return Err(
                    (ErrorKind::InvalidClientConfig, "an address of an unknown kind", format!("{other:?}")).into()
                );
            }
        };
        let limit = SLICE + timeout;
        stream.set_timeouts(limit)?;
        let settings = info.redis_settings();
        let mut conn = Self { stream, parser: redis::Parser::new(), limit, db: settings.db(), open: true };
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            if let Value::ServerError(e) = redis::ConnectionLike::req_command(&mut conn, auth.arg(password))? {
                return Err((ErrorKind::AuthenticationFailed, "password authentication failed", e.to_string()).into());
            }
        }
        if settings.db() != 0 {
            redis::cmd("SELECT").arg(settings.db()).exec(&mut conn)?;
        }
        Ok(conn)
    }

    /// Sends `packed` and reads `replies` replies, each read and write going on after a
    /// signal; any failure leaves the connection closed (a reply may be half read).
    fn exchange(&mut self, packed: &[u8], replies: usize) -> RedisResult<Vec<Value>> {
        let mut io = Patient { stream: &mut self.stream, limit: self.limit, shortened: false };
        let result = (|| {
            io.write_all(packed)?;
            io.flush()?;
            (0..replies).map(|_| self.parser.parse_value(&mut io)).collect::<RedisResult<Vec<_>>>()
        })();
        let restored = if io.shortened { self.stream.set_timeouts(self.limit) } else { Ok(()) };
        let result = result.and_then(|values| restored.map(|()| values).map_err(Into::into));
        self.open &= result.is_ok();
        result
    }
}

impl redis::ConnectionLike for Conn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        Ok(self.exchange(cmd, 1)?.pop().expect("one reply read"))
    }

    fn req_packed_commands(&mut self, cmd: &[u8], offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        let mut values = self.exchange(cmd, offset + count)?;
        let ours = values.split_off(offset);
        // A refused `MULTI` (an ACL without it): its commands ran one by one, outside any
        // transaction, and `EXEC` was refused; the pipeline fails with the refusal, never
        // passes for the transaction it was not (review36 M2).
        if offset > 0
            && let Some(Value::ServerError(refused)) = values.first()
        {
            return Err(refused.clone().into());
        }
        // A transaction (`offset` is its `MULTI` and each command's `QUEUED`): a command
        // refused before `EXEC` (`OOM`, a wrong number of arguments) aborts it; it comes as
        // a reply that lists each refusal at its command's place, from which the pipeline
        // makes its error (the codes decide, see `pool::refusal_codes`).
        if values.iter().any(|v| matches!(v, Value::ServerError(_))) {
            let refused =
                values.into_iter().skip(1).map(|v| if let Value::ServerError(_) = v { v } else { Value::Nil });
            return Ok(vec![Value::Array(refused.collect())]);
        }
        Ok(ours)
    }

    fn get_db(&self) -> i64 {
        self.db
    }

    fn check_connection(&mut self) -> bool {
        redis::cmd("PING").exec(self).is_ok()
    }

    fn is_open(&self) -> bool {
        self.open
    }
}

/// The first address of `host` that takes a connection within `timeout`.
fn connect_tcp(host: &str, port: u16, timeout: Duration) -> RedisResult<TcpStream> {
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(
        || (ErrorKind::InvalidClientConfig, "no address for the host", host.to_owned()).into(),
        Into::into,
    ))
}

impl Stream {
    fn set_timeouts(&self, limit: Duration) -> io::Result<()> {
        let limit = Some(limit);
        match self {
            Stream::Tcp(s) => s.set_read_timeout(limit).and_then(|()| s.set_write_timeout(limit)),
            Stream::Tls(s) => s.sock.set_read_timeout(limit).and_then(|()| s.sock.set_write_timeout(limit)),
            Stream::Unix(s) => s.set_read_timeout(limit).and_then(|()| s.set_write_timeout(limit)),
        }
    }
}

/// The connection's stream for one exchange: a read or write that a signal interrupts is
/// made again, with its socket's timeout shortened to what its wait had left, so that
/// signals never stretch a wait past the limit (`shortened`: restored after). Over TLS,
/// rustls below retries an interrupted read or flush itself with the whole timeout, so
/// there signals can still stretch a wait (review36 H2: the retry belongs in an adapter on
/// the socket, under rustls).
struct Patient<'a> {
    stream: &'a mut Stream,
    limit: Duration,
    shortened: bool,
}

impl Patient<'_> {
    fn again<T>(&mut self, mut op: impl FnMut(&mut Stream) -> io::Result<T>) -> io::Result<T> {
        if self.shortened {
            self.stream.set_timeouts(self.limit)?;
            self.shortened = false;
        }
        let until = Instant::now() + self.limit;
        loop {
            match op(self.stream) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    self.stream.set_timeouts(left)?;
                    self.shortened = true;
                }
                done => return done,
            }
        }
    }
}

impl Read for Patient<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.again(|stream| match stream {
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        })
    }
}

impl Write for Patient<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.again(|stream| match stream {
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        // TLS: the records written but not yet sent.
        self.again(|stream| match stream {
            Stream::Tls(s) => s.flush(),
            Stream::Tcp(_) | Stream::Unix(_) => Ok(()),
        })
    }
}
