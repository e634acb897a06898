//! One blocking connection to Redis with bounded waits, opened again after a failure.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, ConnectionInfo, ErrorKind, RedisResult, Value};

use super::{ClusterError, Tls, resolve};
use crate::shm::TakenIn;

/// The longest one blocking Redis command waits before the caller regains control (to
/// keep its heartbeat, reclaim dead consumers' items, check its own deadline).
pub(crate) const SLICE: Duration = Duration::from_secs(1);

/// The least timeout a link takes, for its connect (an exchange waits [`SLICE`] more):
/// a zero one is taken as this, on every transport (std's TCP connect refuses a zero
/// timeout, and the kernel takes a zero socket timeout as none; review39 M2).
const LEAST: Duration = Duration::from_millis(1);

/// The rate (bytes per second) a wait's moved bytes buy time at: each read or write that
/// moves `n` bytes moves the wait's deadline `n / MOVING` later. A link at least this fast
/// carries any message, however large, and one that trickles slower (a peer that reads a
/// little now and then) still ends: an exchange of `n` bytes waits at most `SLICE`, the
/// timeout and `n / MOVING`.
const MOVING: u64 = 1 << 20;

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
    /// How many connections this link has opened: a new one may be to a server restarted
    /// with other settings.
    opens: u64,
    /// The server's bulk bound ([`server_bulk_bound`]), the connection (its number in
    /// `opens`) it was read on, and the reading's stamp ([`READS`]).
    bound: Option<(u64, u64, Told)>,
    /// Whether the last open failed on TLS in a way that does not heal
    /// ([`tls_lasts`](super::error::tls_lasts)); false after an open that did not fail so.
    tls_lasts: bool,
    /// Why the last open failed; `None` after one that did not fail (a caller whose command
    /// swallows the error, as a bound's read does, can still tell why: review136 M2).
    open_failed: Option<ClusterError>,
}

/// What a server tells of its bulk bound: the bound and the setting's name, or `None`
/// where it does not tell (`CONFIG GET` refused).
pub(crate) type Told = Option<(u64, &'static str)>;

/// Stamps each fresh reading of a server's bulk bound, process-wide, in the order they were
/// taken: of two links' readings the later one is the newer (a link keeps a reading, with
/// its stamp, while its connection seems open, and a connection a restart killed seems open
/// until something is sent on it), so a pool lets only a newer reading replace its bound.
static READS: AtomicU64 = AtomicU64::new(0);

impl Link {
    /// Whether this link's last open failed on TLS in a way that trying again does not heal
    /// (an untrusted certificate, a server that speaks no TLS: [`super::error::tls_lasts`]).
    pub(crate) fn tls_lasts(&self) -> bool {
        self.tls_lasts
    }

    /// Why this link's last open failed, if it did (`None` after one that did not).
    pub(crate) fn open_failed(&self) -> Option<&ClusterError> {
        self.open_failed.as_ref()
    }

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
        if info.redis_settings().protocol().supports_resp3() {
            return Err(ClusterError::BadUrl(
                "the URL asks for RESP3 (?protocol=resp3): the cluster connections speak RESP2 only".into(),
            ));
        }
        // A timeout of `Duration::MAX` ("wait as long as it takes") would overflow the
        // read limit: the longest kept is a hundred years.
        let timeout = timeout.clamp(LEAST, super::MAX_LEASE);
        Ok(Self {
            info,
            tls,
            conn: None,
            conn_in: TakenIn::here(),
            timeout,
            opens: 0,
            bound: None,
            tls_lasts: false,
            open_failed: None,
        })
    }

    /// [`Link::run`] with every wait bounded by `bound` rather than the link's timeout: each
    /// exchange waits at most `bound`, an open it needs (its connect at most `bound`) at most
    /// [`SLICE`] plus `bound` (review159 L1: each exchange on a connection it opened waited
    /// that too, a `RETIRE` after `NOSCRIPT` 4.5 s in all). For a drop's exchange (a queue
    /// handle's, a received value's): best effort, it must not wait a timeout (for ever with
    /// `Duration::MAX`) on a server that stopped answering (review156 L1). The link's own
    /// waits are as before after it.
    pub(crate) fn run_within<R>(
        &mut self,
        bound: Duration,
        f: impl FnOnce(&mut Conn) -> RedisResult<R>,
    ) -> Result<R, ClusterError> {
        let timeout = self.timeout;
        self.timeout = timeout.min(bound.max(LEAST));
        if let Some(conn) = &mut self.conn {
            conn.limit = conn.limit.min(self.timeout);
        }
        let bound = self.timeout;
        let result = self.run(|c| {
            c.limit = c.limit.min(bound);
            f(c)
        });
        self.timeout = timeout;
        // An open connection's limit is always its link's `SLICE` plus timeout.
        if let Some(conn) = &mut self.conn {
            conn.limit = SLICE + timeout;
        }
        result
    }

    /// Runs `f` on the connection (connecting first if needed). The open and every exchange
    /// (a command sent, its reply read) end within [`SLICE`] plus the timeout of their
    /// start, plus the time their moved bytes buy at [`MOVING`], so a server that stops
    /// answering, or answers a byte at a time, is an error, not a hang. A connection-level failure drops the connection.
    pub(crate) fn run<R>(&mut self, f: impl FnOnce(&mut Conn) -> RedisResult<R>) -> Result<R, ClusterError> {
        let conn = self.conn(None)?;
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

    /// Opens a connection if there is none, the open ending by `by` too where that is sooner
    /// than its own wait ([`SLICE`] plus the timeout): for a caller with a deadline of its own
    /// (a queue's `get_timeout`: review159 M4, its open waited the queue's timeout, for ever
    /// with `Duration::MAX`). The exchanges that follow open nothing (unless one fails).
    pub(crate) fn connect_by(&mut self, by: Option<Instant>) -> Result<(), ClusterError> {
        self.conn(by).map(|_| ())
    }

    /// The open connection, opened first (by `by` too, if given) if there is none.
    fn conn(&mut self, by: Option<Instant>) -> Result<&mut Conn, ClusterError> {
        if self.conn.is_some() && !self.conn_in.is_here() {
            // The parent's connection, copied by fork: left to the parent.
            std::mem::forget(self.conn.take());
        }
        if self.conn.is_none() {
            let opened = Conn::open(&self.info, self.tls.as_ref(), self.timeout, by);
            self.tls_lasts = opened.as_ref().is_err_and(super::error::tls_lasts);
            self.open_failed = opened.as_ref().err().map(ClusterError::from_redis);
            let conn = opened.map_err(|e| ClusterError::from_redis(&e))?;
            self.conn_in = TakenIn::here();
            self.opens += 1;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("opened"))
    }
}

/// The largest argument (bulk string) the server takes, and the name of its setting that
/// bounds it: the smaller of `proto-max-bulk-len` and `client-query-buffer-limit` (less a
/// margin: the buffer holds the argument's line end too). Redis answers a longer one by
/// closing the connection, which a client cannot tell from Redis gone. `None` where
/// `CONFIG GET` is refused (an ACL without `@admin`, a managed server that renames it)
/// or answers nothing readable, and where the second read fails (review108 L3: a bound of
/// `proto-max-bulk-len` alone, taken for known, ignored a smaller query buffer); a server
/// without `client-query-buffer-limit` (answering none) is bounded by the first alone.
pub(crate) fn server_bulk_bound(link: &mut Link) -> Option<(u64, &'static str)> {
    // `None` where the read failed, `Some(None)` where the server has no such setting.
    let mut get = |name: &str| -> Option<Option<u64>> {
        let pair: Vec<String> = link.run(|c| redis::cmd("CONFIG").arg("GET").arg(name).query(c)).ok()?;
        Some(match &pair[..] {
            [key, value] if key == name => value.parse().ok(),
            _ => None,
        })
    };
    let bulk = get("proto-max-bulk-len")??;
    let query = get("client-query-buffer-limit")?.map(|q| q.saturating_sub(QUERY_MARGIN));
    Some(match query {
        Some(query) if query < bulk => (query, "client-query-buffer-limit"),
        _ => (bulk, "proto-max-bulk-len"),
    })
}

impl Link {
    /// The server's bulk bound ([`server_bulk_bound`]) as read on this link's current
    /// connection: read again on a connection opened since it was last read (a server
    /// restarted with another `proto-max-bulk-len` keeps none of the old one), and where
    /// there is no connection (the read opens one). `None` where it could not be read for
    /// want of a connection (Redis away: nothing is kept, the next call reads again);
    /// `Some(None)` where the server does not tell it (`CONFIG GET` refused).
    pub(crate) fn bulk_bound(&mut self) -> Option<Option<(u64, &'static str)>> {
        self.stamped_bulk_bound().map(|(_, told)| told)
    }

    /// [`Link::bulk_bound`] with the reading's stamp (at least 1): a reading kept from an
    /// earlier call keeps its stamp, a fresh one is stamped after every reading before it,
    /// in this process, on any link.
    pub(crate) fn stamped_bulk_bound(&mut self) -> Option<(u64, Told)> {
        if let Some((at, stamp, told)) = self.bound
            && at == self.opens
            && self.conn.is_some()
        {
            return Some((stamp, told));
        }
        let told = server_bulk_bound(self);
        // Read on the connection now open (the first `CONFIG GET` opened it if none was);
        // none left: the read failed for want of it, and tells nothing.
        self.conn.as_ref()?;
        let stamp = READS.fetch_add(1, Ordering::Relaxed) + 1;
        self.bound = Some((self.opens, stamp, told));
        Some((stamp, told))
    }
}

/// What a server's bulk bound is called in a refusal: "Redis's proto-max-bulk-len (N)".
pub(crate) fn server_bound_why(bound: u64, name: &str) -> String {
    format!("Redis's {name} ({bound})")
}

/// The refusal of an argument above what may be sent (`what`: "a task", "an item"; `why`:
/// the bound, as [`server_bound_why`] or the object's own `max_message_size` says it): bad
/// input, typed, never taken for Redis gone (which closes the connection on an argument
/// above its bound). A pool's task and a queue's item share it.
pub(crate) fn too_large_to_send(what: &str, size: usize, why: &str) -> crate::CodecError {
    crate::CodecError::encode(format_args!("{what} of {size} bytes, more than {why}"))
}

/// The least bulk bound a server may have (Redis takes neither `proto-max-bulk-len` nor
/// `client-query-buffer-limit` below 1 MB), less the query buffer's margin: an argument
/// at most this long is never above the server's bound, which need not be read for it.
pub(crate) const LEAST_BULK_BOUND: usize = (1 << 20) - QUERY_MARGIN as usize;

/// What `client-query-buffer-limit` leaves for an argument's bytes besides them.
const QUERY_MARGIN: u64 = 64;

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
    db: i64,
    /// False after any failure: a reply may be half read.
    open: bool,
    /// How long an exchange may take, from its start: [`SLICE`] plus the timeout (plus what
    /// its moved bytes buy, [`MOVING`]).
    limit: Duration,
    /// While the connection is being opened, the open's deadline, which its exchanges
    /// (`AUTH`, `SELECT`) end by too.
    opening: Option<Instant>,
    /// A deadline the next exchange ends by ([`Conn::end_by`], [`Conn::answer_by`]).
    cap: Option<Cap>,
}

/// The deadline of a connection's next exchange, besides its own wait.
#[derive(Clone, Copy)]
enum Cap {
    /// This one, where sooner ([`Conn::end_by`]).
    Sooner(Instant),
    /// This one, sooner or later ([`Conn::answer_by`]).
    Instead(Instant),
}

/// The bytes to and from Redis: the socket itself, or rustls over it. Either way every
/// wait on the socket is [`Timed`]'s, under rustls too (which makes an interrupted read or
/// flush again itself, with whatever timeout the socket has: review36 H2).
enum Stream {
    Plain(Timed),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, Timed>>),
}

impl Conn {
    /// Marks the connection as not to be used again (its `Link` drops it once the call
    /// returns): for a caller that knows replies are left unread (a refused `CLIENT REPLY
    /// SKIP` leaves the reply it was to skip).
    pub(crate) fn close(&mut self) {
        self.open = false;
    }

    /// Makes the next exchange end by `at` (plus what its moved bytes buy, [`MOVING`]) where
    /// that is sooner than its own wait: for a caller with a deadline of its own (a queue's
    /// `get_timeout`), which a server that stops answering mid-wait must not outlast.
    pub(crate) fn end_by(&mut self, at: Instant) {
        self.cap = Some(Cap::Sooner(at));
    }

    /// Makes the next exchange end by `at` (plus what its moved bytes buy, [`MOVING`])
    /// instead of its own wait, sooner or later: for a blocking command, whose answer is due
    /// at the end of its wait whatever the link's timeout (a queue's take waits its wait and
    /// a second, the queue's `GRACE`, for the answer; review159 H1 and M1).
    pub(crate) fn answer_by(&mut self, at: Instant) {
        self.cap = Some(Cap::Instead(at));
    }

    /// Connects, makes the TLS handshake, authenticates and selects the URL's database, all
    /// within one exchange's wait ([`SLICE`] plus `timeout`, and the few milliseconds the
    /// handshake's bytes buy) of the start, and by `by` where that is sooner, each connect
    /// within `timeout` (review39 L2: each address had the whole timeout, and each read of
    /// the handshake and of the replies a wait of its own); each exchange after that as
    /// [`Conn::exchange`] says.
    fn open(
        info: &ConnectionInfo,
        tls: Option<&Arc<rustls::ClientConfig>>,
        timeout: Duration,
        by: Option<Instant>,
    ) -> RedisResult<Self> {
        let limit = SLICE + timeout;
        let until = Instant::now() + limit;
        let until = by.map_or(until, |by| by.min(until));
        let stream = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                Stream::Plain(Timed::new(Socket::Tcp(connect_tcp(host, *port, timeout, until)?), until))
            }
            ConnectionAddr::TcpTls { host, port, .. } => {
                let config = tls.expect("a rediss:// link has its TLS settings").clone();
                let name = rustls::pki_types::ServerName::try_from(host.clone())?;
                let session = rustls::ClientConnection::new(config, name)?;
                let socket = Timed::new(Socket::Tcp(connect_tcp(host, *port, timeout, until)?), until);
                let mut tls = rustls::StreamOwned::new(session, socket);
                // The handshake, here under the open's deadline rather than with the first
                // write (in whichever exchange came first).
                tls.conn.complete_io(&mut tls.sock)?;
                Stream::Tls(Box::new(tls))
            }
            ConnectionAddr::Unix(path) => Stream::Plain(connect_unix(path, (Instant::now() + timeout).min(until))?),
            other => {
                return Err(
                    (ErrorKind::InvalidClientConfig, "an address of an unknown kind", format!("{other:?}")).into()
                );
            }
        };
        let settings = info.redis_settings();
        let mut conn = Self {
            stream,
            parser: redis::Parser::new(),
            db: settings.db(),
            open: true,
            limit,
            opening: Some(until),
            cap: None,
        };
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            if let Value::ServerError(e) = redis::ConnectionLike::req_command(&mut conn, auth.arg(password))? {
                if refuses_credentials(&e) {
                    return Err(
                        (ErrorKind::AuthenticationFailed, "password authentication failed", e.to_string()).into()
                    );
                }
                // Any other refusal is itself (review108 M2): a Redis at `maxclients`
                // writes its error and closes the connection, which a node that
                // reconnects waits out; taken for refused credentials, it ended the node.
                return Err(e.into());
            }
        }
        if settings.db() != 0 {
            redis::cmd("SELECT").arg(settings.db()).exec(&mut conn)?;
        }
        conn.opening = None;
        Ok(conn)
    }

    /// Sends `packed` and reads `replies` replies, all within [`SLICE`] plus the timeout of
    /// the start, plus the time the bytes moved buy at [`MOVING`] (each write that moved
    /// bytes had a wait of its own: a stalled peer's kernel, making room a little at a time,
    /// let a large put trickle on for several); any failure leaves the connection closed (a
    /// reply may be half read).
    fn exchange(&mut self, packed: &[u8], replies: usize) -> RedisResult<Vec<Value>> {
        let until = Instant::now() + self.limit;
        let until = match self.cap.take() {
            None => until,
            Some(Cap::Sooner(at)) => at.min(until),
            Some(Cap::Instead(at)) => at,
        };
        self.stream.timed().begin(self.opening.map_or(until, |open| open.min(until)));
        let stream = &mut self.stream;
        let result = (|| {
            stream.write_all(packed)?;
            stream.flush()?;
            (0..replies).map(|_| self.parser.parse_value(&mut *stream)).collect::<RedisResult<Vec<_>>>()
        })();
        self.open &= result.is_ok();
        result
    }
}

impl redis::ConnectionLike for Conn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        Ok(self.exchange(cmd, 1)?.pop().expect("one reply read"))
    }

    fn req_packed_commands(&mut self, cmd: &[u8], offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        // Nothing here runs a transaction (no `MULTI`: a script does what must be atomic), so
        // `offset` is 0; the replies before it would be a transaction's `MULTI` and `QUEUED`s.
        let mut values = self.exchange(cmd, offset + count)?;
        Ok(values.split_off(offset))
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
/// Whether an error reply to `AUTH` says the credentials are wrong: `WRONGPASS` (Redis 6
/// and later), `ERR invalid password` and `ERR invalid username-password pair` (older
/// Redis), or a password given to a server that has none. Any other reply (a server at
/// `maxclients`, say) is not about them.
fn refuses_credentials(e: &redis::ServerError) -> bool {
    let details = e.details().unwrap_or_default().to_ascii_lowercase();
    e.code() == "WRONGPASS"
        || (e.code() == "ERR"
            && ["invalid password", "invalid username-password pair", "without any password configured"]
                .iter()
                .any(|said| details.contains(said)))
}

/// `url` as it may be shown (printed, logged, put in an error): its password, in the
/// user information (`redis://user:PASSWORD@host`) or the `pass=` query parameter
/// (`redis+unix:///socket?pass=PASSWORD`), stands as `***`. A node's log goes where more
/// people read it than its environment (review80 M3). The user name and the rest stay, to
/// say which server and account were meant.
///
/// The user information ends at the URL's *last* `@`: a password may hold an unencoded
/// `/`, `?` or `#` (such a URL does not parse, and is shown then), so nothing before that
/// `@` is split on them (review81 M1: `redis://w:ab/cd@host` was shown whole). An `@`
/// later in the query hides more than the password, never less.
pub(crate) fn redacted(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some(at) = rest.rfind('@')
        && let Some(colon) = rest[..at].find(':')
    {
        let tail = redacted_after_user_info(&format!("{scheme}://{}", &rest[at + 1..]));
        let host = &tail[scheme.len() + 3..];
        return format!("{scheme}://{}:{HIDDEN}@{host}", &rest[..colon]);
    }
    redacted_after_user_info(url)
}

/// How [`redacted`] shows the password.
const HIDDEN: &str = "***";

/// [`redacted`] of a URL whose user information, if any, holds no password: the `pass=`
/// query parameter hidden.
fn redacted_after_user_info(url: &str) -> String {
    let (head, fragment) = url.split_once('#').map_or((url, None), |(head, fragment)| (head, Some(fragment)));
    let (path, query) = head.split_once('?').map_or((head, None), |(path, query)| (path, Some(query)));
    let mut shown = path.to_string();
    if let Some(query) = query {
        let hide = |pair: &str| match pair.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("pass") || name.eq_ignore_ascii_case("password") => {
                format!("{name}={HIDDEN}")
            }
            _ => pair.to_string(),
        };
        shown.push('?');
        shown.push_str(&query.split('&').map(hide).collect::<Vec<_>>().join("&"));
    }
    if let Some(fragment) = fragment {
        shown.push('#');
        shown.push_str(fragment);
    }
    shown
}

/// The first address of `host` that takes a connection, each within `timeout` and all by
/// `until`. The any address (`0.0.0.0`, `::`) is left out: Linux connects it to this
/// machine, which a cluster URL never means (the URL parser refuses it written out, not a
/// name that resolves to it: a hosts entry, `inet_aton`'s `0`); a host with no other is
/// [`ClusterError::BadUrl`].
///
/// The resolution is bounded by `until` too (`resolve::addresses`: a name server that
/// never answers is `TimedOut`), and what it takes counts against it.
fn connect_tcp(host: &str, port: u16, timeout: Duration, until: Instant) -> RedisResult<TcpStream> {
    let (any, addrs): (Vec<_>, Vec<_>) =
        resolve::addresses(host, port, until)?.into_iter().partition(|addr| addr.ip().is_unspecified());
    if addrs.is_empty() {
        let why = match any.is_empty() {
            true => "no address for the host",
            false => "the host resolves to the any address (0.0.0.0 or ::) only, which reaches this machine",
        };
        return Err((ErrorKind::InvalidClientConfig, why, host.to_owned()).into());
    }
    Ok(connect_first(addrs, timeout, until)?)
}

/// The first of `addrs` that takes a connection, each within `timeout` and all by `until`
/// (`TimedOut` once it has passed).
fn connect_first(
    addrs: impl IntoIterator<Item = SocketAddr>,
    timeout: Duration,
    until: Instant,
) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in addrs {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        match TcpStream::connect_timeout(&addr, timeout.min(left)) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("an address was tried"))
}

/// Connects to the unix socket at `path` by `until`, as `connect_tcp` does over TCP: a
/// server whose backlog is full (stopped, or swamped) keeps a connect waiting, for as long
/// as the socket's send timeout, and a signal interrupts the wait.
fn connect_unix(path: &std::path::Path, until: Instant) -> io::Result<Timed> {
    let mut socket = Timed::new(Socket::Unix(UnixStream::from(crate::sys::unix_stream()?)), until);
    // The send timeout passing with the backlog still full is `TimedOut`, as `again` says.
    socket.again(|socket, _| crate::sys::connect_unix_once(socket.as_fd(), path))?;
    Ok(socket)
}

/// A connected socket (or one being connected, for a unix socket).
enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Tcp(s) => s.as_fd(),
            Socket::Unix(s) => s.as_fd(),
        }
    }

    fn set_timeouts(&self, limit: Duration) -> io::Result<()> {
        let limit = Some(limit);
        match self {
            Socket::Tcp(s) => s.set_read_timeout(limit).and_then(|()| s.set_write_timeout(limit)),
            Socket::Unix(s) => s.set_read_timeout(limit).and_then(|()| s.set_write_timeout(limit)),
        }
    }
}

/// A socket each of whose calls (a read, a write, a unix connect) ends by a deadline, that
/// of the wait it is part of (an exchange's, an open's: [`Timed::begin`]), however many
/// signals come and however many calls the wait makes: a call that a signal interrupts,
/// having transferred nothing, is made again with the socket's timeouts shortened to what
/// is left, and fails `TimedOut` once none is, after one last look (a call begun again with
/// the whole limit at each signal would wait for as long as signals come faster than it;
/// one that moved a few bytes, a new limit each time, for as long as they come). It lies
/// under rustls for `rediss://`, which therefore never sees an interrupted call.
///
/// A wait that runs out is `TimedOut`, not the socket's `WouldBlock`, and the first failure
/// fails every later call at once: rustls takes `WouldBlock` for a non-blocking socket's "try
/// later" (after a blocked write it waited on a read too), and its `write` keeps a failure
/// for the next call, which waited again: one write of an exchange waited up to four limits
/// (review39 M3). The connection is dropped after any failure anyway.
struct Timed {
    socket: Socket,
    /// When the current wait ends.
    until: Instant,
    /// The timeouts the socket has now (`None`: not set yet).
    set: Option<Duration>,
    /// The kind of the first failure, which every later call returns.
    failed: Option<io::ErrorKind>,
}

impl Timed {
    fn new(socket: Socket, until: Instant) -> Self {
        Self { socket, until, set: None, failed: None }
    }

    /// Starts a wait that ends at `until`.
    fn begin(&mut self, until: Instant) {
        self.until = until;
    }

    /// The time `moved` bytes buy the wait (see [`MOVING`]): returns what moved.
    fn credit(&mut self, moved: usize) -> usize {
        let nanos = (moved as u64).saturating_mul(1_000_000_000) / MOVING;
        self.until += Duration::from_nanos(nanos);
        moved
    }

    fn set_timeouts(&mut self, timeout: Duration) -> io::Result<()> {
        if self.set != Some(timeout) {
            self.set = None; // unknown if the call fails
            self.socket.set_timeouts(timeout)?;
            self.set = Some(timeout);
        }
        Ok(())
    }

    /// Runs `op` on the socket by the deadline, again after each signal; fails at once
    /// after a failure.
    fn again<T>(&mut self, op: impl FnMut(&mut Socket, Duration) -> io::Result<T>) -> io::Result<T> {
        if let Some(kind) = self.failed {
            return Err(kind.into());
        }
        let done = self.by_deadline(op);
        if let Err(e) = &done {
            self.failed = Some(e.kind());
        }
        done
    }

    /// Runs `op` on the socket with what is left of the wait, again after each signal and
    /// after a timeout shorter than what was left. A call with nothing left is the last, and
    /// takes what the socket already has: a stop (job control, a debugger) longer than the
    /// wait is reported by `EINTR` at the continue, and the reply that came during it is in
    /// the buffer (it was thrown away with the connection; review39 L1). It overshoots the
    /// deadline by a jiffy at most (the kernel's rounding of a socket timeout).
    ///
    /// The socket's timeouts are set in whole milliseconds below what is left, and set again
    /// only when they would run past the deadline or are under half of what is left: the
    /// calls of quick exchanges, each a little after its start, keep them, and cost no
    /// `setsockopt`. `op` is given that timeout, for a call the socket's does not bound.
    fn by_deadline<T>(&mut self, mut op: impl FnMut(&mut Socket, Duration) -> io::Result<T>) -> io::Result<T> {
        loop {
            let left = self.until.saturating_duration_since(Instant::now());
            if !self.set.is_some_and(|set| set <= left && set >= left / 2) {
                let whole = Duration::from_millis(u64::try_from(left.as_millis()).unwrap_or(u64::MAX));
                // std takes a wait under a microsecond as one, the kernel as a jiffy.
                self.set_timeouts(if whole.is_zero() { left.max(Duration::from_nanos(1)) } else { whole })?;
            }
            match op(&mut self.socket, self.set.unwrap_or(left)) {
                // Interrupted, or the socket's timeout ran out (`EAGAIN`: it is a blocking
                // socket).
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => {
                    if left.is_zero() {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
                done => return done,
            }
        }
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let moved = self.again(|socket, _| match socket {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        })?;
        Ok(self.credit(moved))
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let moved = self.again(|socket, wait| match socket {
            Socket::Tcp(s) => s.write(buf),
            // Its timeout bounds each piece the kernel moves, not the call: a server that
            // reads a little at a time kept one large write going for ever.
            Socket::Unix(s) => crate::sys::send_within(s.as_fd(), buf, wait),
        })?;
        Ok(self.credit(moved))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // a socket keeps nothing back
    }
}

impl Stream {
    /// The socket under the stream.
    fn timed(&mut self) -> &mut Timed {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &mut s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            // The records written but not yet sent.
            Stream::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_url_hides_its_password_and_keeps_the_rest() {
        for (url, shown) in [
            ("redis://worker:s3cret@host:6379/0", "redis://worker:***@host:6379/0"),
            ("rediss://:s3cret@host/0?protocol=resp2#frag", "rediss://:***@host/0?protocol=resp2#frag"),
            ("redis://worker@host/", "redis://worker@host/"),
            ("redis://a:b@c@host/", "redis://a:***@host/"),
            ("redis+unix:///tmp/r.sock?db=1&pass=s3cret&user=w", "redis+unix:///tmp/r.sock?db=1&pass=***&user=w"),
            ("unix:///tmp/r.sock?PASSWORD=x", "unix:///tmp/r.sock?PASSWORD=***"),
            ("redis://host:6379", "redis://host:6379"),
            ("not a url at all", "not a url at all"),
            // review81 M1: a password with an unencoded '/', '?' or '#' (such a URL does not
            // parse, and is printed then) was shown whole.
            ("redis://w:ab/cd@host/0", "redis://w:***@host/0"),
            ("redis://w:a?b#c@host:6379", "redis://w:***@host:6379"),
            ("redis://:p/q?r#s@host/?pass=t", "redis://:***@host/?pass=***"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
        }
    }

    /// review39 M3: a write to a peer that reads nothing fails `TimedOut` once its wait runs
    /// out (it was the socket's `WouldBlock`, which rustls takes for "try later"), and so does
    /// every later call, even once the peer has made room (rustls makes again the call that
    /// its `write` kept the failure of: each such call waited again).
    #[test]
    fn a_spent_wait_is_timed_out_and_fails_every_later_call() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let mut timed = Timed::new(Socket::Unix(ours), Instant::now() + Duration::from_millis(50));
        let mut chunk = vec![0; 1 << 16];
        let failed = loop {
            if let Err(e) = timed.write(&chunk) {
                break e;
            }
        };
        assert_eq!(failed.kind(), io::ErrorKind::TimedOut, "{failed}");
        // Room again, and a byte to read.
        peer.set_nonblocking(true).unwrap();
        while peer.read(&mut chunk).is_ok_and(|n| n > 0) {}
        peer.write_all(b"+").unwrap();
        assert_eq!(timed.write(&chunk).map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
        assert_eq!(timed.read(&mut chunk).map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
    }

    /// A listener that takes no more connections (its backlog, set to 0, holds one that
    /// waits): a connect to it waits for as long as it is let, as to a host that drops
    /// packets. The listener and the waiting connection are kept with it.
    fn full_listener() -> (SocketAddr, (std::net::TcpListener, TcpStream)) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        rustix::net::listen(&listener, 0).unwrap();
        let addr = listener.local_addr().unwrap();
        let waiting = TcpStream::connect(addr).unwrap();
        (addr, (listener, waiting))
    }

    /// review39 L2: an open has one deadline, whatever the host's addresses. Twenty
    /// addresses that each keep a connect waiting, then one that refuses: the open gives up
    /// at its deadline and never reaches the last (each address had the whole timeout, so
    /// the open waited twenty of them and failed with the last one's `ConnectionRefused`).
    #[test]
    fn addresses_that_keep_a_connect_waiting_share_one_deadline() {
        let (waiting, _kept) = full_listener();
        let refusing = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // closed
        let addrs = std::iter::repeat_n(waiting, 20).chain([refusing]);
        let timeout = Duration::from_millis(100);
        let connected = connect_first(addrs, timeout, Instant::now() + SLICE + timeout);
        assert_eq!(connected.map(|_| ()).map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
    }

    /// A server that takes the connection and answers the TLS handshake a byte at a time, each
    /// within a wait: `bytes` of a record that never ends, then it closes.
    fn trickling_server(bytes: usize) -> (u16, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().unwrap();
            // A handshake record of 16 KiB.
            let record = [0x16, 0x03, 0x03, 0x40, 0x00].into_iter().chain(std::iter::repeat(0x02));
            for byte in record.take(bytes) {
                if peer.write_all(&[byte]).is_err() {
                    return; // the client gave up
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        (port, server)
    }

    /// An open's TLS handshake is under the open's deadline: a server that sends its hello a
    /// byte at a time gives every read something, and the open still ends at its deadline
    /// (each read had a wait of its own: the open went on for as long as the bytes came, and
    /// failed on the server's close, `UnexpectedEof`).
    #[test]
    fn a_handshake_that_trickles_ends_at_the_opens_deadline() {
        let (port, server) = trickling_server(40); // four seconds of bytes
        let mut link = Link::new(&format!("rediss://127.0.0.1:{port}"), Duration::from_millis(300)).unwrap();
        let pinged = link.run(|c| redis::cmd("PING").query::<()>(c));
        assert!(matches!(&pinged, Err(ClusterError::Unreachable(why)) if why.contains("timed out")), "{pinged:?}");
        drop(link);
        server.join().unwrap();
    }

    /// A server that speaks no TLS behind a `rediss://` URL (a plain Redis answers the
    /// client's hello with an error line) is a TLS failure that lasts (clu101 item 3: a node
    /// ends on it, rather than trying again for ever); one whose hello merely stops (the
    /// trickling server, cut short) is Redis away, which does not.
    #[test]
    fn a_server_that_speaks_no_tls_is_a_tls_failure_that_lasts() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().unwrap();
            let mut hello = [0; 512];
            let _ = peer.read(&mut hello);
            let _ = peer.write_all(b"-ERR unknown command\r\n");
        });
        let mut link = Link::new(&format!("rediss://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
        let pinged = link.run(|c| redis::cmd("PING").query::<()>(c));
        assert!(matches!(&pinged, Err(ClusterError::Tls(_))), "{pinged:?}");
        assert!(link.tls_lasts(), "{pinged:?}");
        server.join().unwrap();
        // A server that ends the handshake with a fatal `handshake_failure` alert (OpenSSL's
        // answer under TLS 1.2 to a client without the certificate it requires, or with no
        // cipher suite or group in common): lasting too (review136 L2: it was waited out for
        // ever).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().unwrap();
            let mut hello = [0; 512];
            let _ = peer.read(&mut hello);
            // An alert record (21), TLS 1.2, 2 bytes: fatal (2), handshake_failure (40).
            let _ = peer.write_all(&[21, 3, 3, 0, 2, 2, 40]);
        });
        let mut link = Link::new(&format!("rediss://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
        let pinged = link.run(|c| redis::cmd("PING").query::<()>(c));
        assert!(matches!(&pinged, Err(ClusterError::Tls(why)) if why.contains("HandshakeFailure")), "{pinged:?}");
        assert!(link.tls_lasts(), "{pinged:?}");
        server.join().unwrap();
        let (port, server) = trickling_server(3);
        let mut link = Link::new(&format!("rediss://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
        let pinged = link.run(|c| redis::cmd("PING").query::<()>(c));
        assert!(matches!(&pinged, Err(ClusterError::Unreachable(_))), "{pinged:?}");
        assert!(!link.tls_lasts(), "{pinged:?}");
        server.join().unwrap();
    }

    /// One exchange has one deadline: a large command to a server that reads it slowly (each
    /// write moves some bytes) fails `TimedOut` once the exchange's wait is spent (each write
    /// that moved bytes had a wait of its own: the command went on for as long as the server
    /// read, and failed on its close).
    #[test]
    fn a_large_command_to_a_server_that_reads_slowly_ends_at_the_exchanges_deadline() {
        // A unix socket: its small buffers take little at once (TCP's megabytes, bought
        // at `MOVING`, would put the deadline past the server's life on some hosts).
        let dir = tempdir("slow");
        let path = dir.0.join("s");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().unwrap();
            let mut chunk = vec![0; 16 << 10];
            // 16 KiB every 50 ms (320 KiB/s, under `MOVING`), until the client gives up.
            while peer.read(&mut chunk).is_ok_and(|n| n > 0) {
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut link = Link::new(&format!("redis+unix://{}", path.display()), Duration::from_millis(300)).unwrap();
        let large = vec![b'x'; 32 << 20];
        let put = link.run(|c| redis::cmd("SET").arg("k").arg(&large).exec(c));
        assert!(matches!(&put, Err(ClusterError::Unreachable(why)) if why.contains("timed out")), "{put:?}");
        drop(link);
        server.join().unwrap();
    }

    /// A directory under `/tmp` (a unix socket's path has room for ~100 bytes), removed at
    /// the drop, even after a failed assertion.
    struct Tempdir(std::path::PathBuf);

    impl Drop for Tempdir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tempdir(name: &str) -> Tempdir {
        let dir = std::path::PathBuf::from(format!("/tmp/multiproc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Tempdir(dir)
    }

    /// A large command to a server that reads it steadily, well above `MOVING`, for longer
    /// than the exchange's deadline, goes through: the bytes it moves buy the time they take
    /// at that rate. Before, a link slower than the command's size over the timeout failed
    /// every large put (`timed out`).
    #[test]
    fn a_large_command_over_a_slow_steady_link_goes_through() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let large = vec![b'x'; 48 << 20];
        let server = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().unwrap();
            let mut chunk = vec![0; 256 << 10];
            let (mut got, mut tail) = (0, Vec::new());
            // 256 KiB a round, a round every 20 ms (13 MB/s at most; 1 MiB/s even if a
            // loaded machine stretches each round to 250 ms), until the command has come
            // whole.
            loop {
                let mut round = 0;
                while round < chunk.len() {
                    let n = peer.read(&mut chunk[round..]).unwrap();
                    assert!(n > 0, "the client gave up");
                    tail.extend_from_slice(&chunk[round..round + n]);
                    tail.drain(..tail.len().saturating_sub(3));
                    (got, round) = (got + n, round + n);
                    if got > 48 << 20 && tail == b"x\r\n" {
                        peer.write_all(b"+OK\r\n").unwrap();
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut link = Link::new(&format!("redis://127.0.0.1:{port}"), Duration::from_millis(300)).unwrap();
        let put = link.run(|c| redis::cmd("SET").arg("k").arg(&large).exec(c));
        assert!(put.is_ok(), "{put:?}");
        drop(link);
        server.join().unwrap();
    }
}
