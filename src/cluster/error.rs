//! The errors of the cluster queue: one per operation, each giving a refused value back,
//! and all converting into the crate's [`Error`](crate::Error).

use std::fmt;

use crate::codec::CodecError;

/// Redis could not be used: the server is unreachable, the connection was lost, the
/// server did not answer within the queue's timeout, or it replied with an error (for
/// example `NOAUTH` or `WRONGPASS` when the URL's credentials are missing or wrong).
///
/// # Examples
///
/// ```no_run
/// use multiproc::cluster::{ClusterError, Queue};
///
/// match Queue::<u32>::open("redis://127.0.0.1:1/0", "jobs") {
///     Err(ClusterError::Unreachable(why)) => eprintln!("no Redis: {why}"),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No connection could be made, or the connection broke (Redis stopped, killed,
    /// restarted, or the network failed) or stayed silent past the timeout, or the server
    /// cannot serve for now (`BUSY` running a long script, `LOADING` its data,
    /// `MASTERDOWN`: a replica that lost its master; `READONLY`: a replica, such as a master
    /// demoted by a failover that a name or an address still leads to, and `UNBLOCKED`: a
    /// blocking command ended as its server became one, or as its stream key was deleted):
    /// waited out like a lost connection, on a new connection (which a failover leads to
    /// the new master).
    #[error("Redis is unreachable: {0}")]
    Unreachable(String),
    /// The URL could not be understood.
    #[error("bad Redis URL: {0}")]
    BadUrl(String),
    /// Redis answered with an error (a key of another type, a command the server does not
    /// know...).
    #[error("Redis refused the command: {0}")]
    Refused(String),
    /// Redis refused the URL's credentials (`NOAUTH`: none given, `WRONGPASS`: a wrong
    /// password or user, a disabled user), or what they allow (`NOPERM`: an ACL user
    /// without a command or key the object needs). Trying again does not help.
    #[error("Redis refused the credentials: {0}")]
    Auth(String),
    /// The TLS session (`rediss://`) could not be set up: the server's certificate is not
    /// signed by a trusted authority or does not name the host, the certificates given to
    /// [`Tls`](super::Tls) do not parse, or the server does not speak TLS.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// No cluster key could be had: the key given (or [`KEY_ENV`](super::KEY_ENV)) is
    /// empty, or the user's key file cannot be made or read, or other users may read it
    /// (see [`ClusterOptions::authkey`](super::ClusterOptions::authkey)).
    #[error("cluster key: {0}")]
    Key(String),
}

impl ClusterError {
    pub(crate) fn from_redis(e: &redis::RedisError) -> Self {
        if is_tls(e) {
            ClusterError::Tls(e.to_string())
        } else if e.kind() == redis::ErrorKind::InvalidClientConfig {
            // Seen only on connecting: e.g. `rediss://...#insecure`, refused on purpose.
            ClusterError::BadUrl(e.to_string())
        } else if e.kind() == redis::ErrorKind::AuthenticationFailed || e.code() == Some("WRONGPASS") {
            ClusterError::Auth(format!("wrong password, or unknown or disabled user ({e})"))
        } else if e.code() == Some("NOAUTH") {
            ClusterError::Auth(format!("the server requires a password and the URL gives none ({e})"))
        } else if e.code() == Some("NOPERM") {
            ClusterError::Auth(format!("the user may not run this command or use this key ({e})"))
        } else if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || waits(e)
            || at_maxclients(e)
        {
            ClusterError::Unreachable(e.to_string())
        } else {
            ClusterError::Refused(e.to_string())
        }
    }
}

/// Whether Redis refused for now only: busy with a long script (`BUSY`), loading its data
/// (`LOADING`), a replica without its master (`MASTERDOWN`), a replica refusing a write
/// (`READONLY`) or ending a blocking command as its server became a replica (`UNBLOCKED`).
/// The last two are what a failover leaves a client on the demoted master with (its name or
/// address not moved yet): transient, since the next connection reaches the new master
/// (review150: taken for a refusal for good, they ended a pool at once, and a node dropped
/// its results and read again at once, for as long as the failover lasted). `UNBLOCKED`
/// has other causes, told apart only by its text (not stable, so not looked at): a
/// blocking read's stream key deleted (`UNBLOCKED the stream key no longer exists`, which
/// a node blocked on a pool's tasks meets each time that pool ends and its driver deletes
/// its keys: the node then reconnects and backs off once, 100 ms, before its next read,
/// harmless), and `CLIENT UNBLOCK id ERROR`: each waited out the same way (review153 L2).
/// Decided on every refused command of a pipeline (`RedisError::code` names none for a
/// pipeline's `BUSY`).
fn waits(e: &redis::RedisError) -> bool {
    let errors = e.clone().into_server_errors().unwrap_or_default();
    !errors.is_empty()
        && errors
            .iter()
            .all(|(_, error)| matches!(error.code(), "BUSY" | "LOADING" | "MASTERDOWN" | "READONLY" | "UNBLOCKED"))
}

/// Whether Redis refused a new connection for its `maxclients` (it writes this error and
/// closes the connection): a passing state, waited out as Redis away (review108 M2).
fn at_maxclients(e: &redis::RedisError) -> bool {
    e.code() == Some("ERR") && e.to_string().contains("max number of clients reached")
}

/// Whether a rustls error is somewhere in the error's causes (a handshake that failed).
fn is_tls(e: &redis::RedisError) -> bool {
    tls_cause(e).is_some()
}

/// A TLS failure found in an error's causes: rustls's own, or a host that is no name a
/// certificate can be checked against.
enum TlsCause<'a> {
    Rustls(&'a rustls::Error),
    BadName,
}

/// The TLS failure somewhere in the error's causes, if any.
fn tls_cause(e: &redis::RedisError) -> Option<TlsCause<'_>> {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(mut c) = cause {
        // The redis crate keeps its causes behind an `Arc`.
        if let Some(shared) = c.downcast_ref::<Shared>() {
            c = &**shared;
        }
        if let Some(tls) = c.downcast_ref::<rustls::Error>() {
            return Some(TlsCause::Rustls(tls));
        }
        if c.is::<rustls::pki_types::InvalidDnsNameError>() {
            return Some(TlsCause::BadName);
        }
        if let Some(tls) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(TlsCause::Rustls(tls));
        }
        cause = c.source();
    }
    None
}

/// Whether the TLS failure in the error's causes will not heal by trying again (clu101
/// item 3): the server's certificate is signed by no authority trusted here, or names
/// another host, or is malformed; the server refuses this client's certificate, or speaks
/// no TLS (or none this client speaks); the server ends the handshake with
/// `handshake_failure` (OpenSSL's answer under TLS 1.2 to a client without the certificate
/// it requires, or with no cipher suite or group in common: settings, which stay) or breaks
/// the protocol (`PeerMisbehaved`: what the server sends, not the network, which TLS's
/// record checks tell apart); the URL's host is no name (review136 L2: the two alerts were
/// waited out for ever). A certificate not valid yet or expired (a clock set wrong, here or
/// on the server, or a certificate about to be renewed), a revocation that cannot be
/// checked, and every failure of another kind are taken as passing, and waited out. Every
/// caller (a node's reader and writer, a pool's driver) confirms a lasting failure on a
/// fresh connection before it ends or drops anything, so one
/// misclassified here costs a node's restart or a pool's end, typed, not a wait for ever.
/// False where the error is no TLS failure.
pub(crate) fn tls_lasts(e: &redis::RedisError) -> bool {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as E};
    match tls_cause(e) {
        None => false,
        Some(TlsCause::BadName) => true,
        Some(TlsCause::Rustls(tls)) => match tls {
            E::InvalidCertificate(
                Cert::Expired
                | Cert::ExpiredContext { .. }
                | Cert::NotValidYet
                | Cert::NotValidYetContext { .. }
                | Cert::Revoked
                | Cert::UnknownRevocationStatus
                | Cert::ExpiredRevocationList
                | Cert::ExpiredRevocationListContext { .. }
                | Cert::InvalidOcspResponse,
            ) => false,
            E::InvalidCertificate(_)
            | E::AlertReceived(
                Alert::BadCertificate
                | Alert::UnsupportedCertificate
                | Alert::UnknownCA
                | Alert::AccessDenied
                | Alert::CertificateRequired
                | Alert::ProtocolVersion
                | Alert::InsufficientSecurity
                | Alert::HandshakeFailure,
            )
            | E::PeerMisbehaved(_)
            | E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerIncompatible(_)
            | E::NoCertificatesPresented
            | E::UnsupportedNameType => true,
            _ => false,
        },
    }
}

/// Why a [`Queue::put`](super::Queue::put) (or `try_put`, `put_timeout`) did not put its
/// value; the value comes back with [`PutError::into_inner`].
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum PutError<T> {
    /// The queue holds `maxsize` items and the call was not to wait (`try_put`).
    #[error("the queue is full")]
    Full(T),
    /// The queue stayed full until the timeout passed (`put_timeout`).
    #[error("the queue stayed full until the timeout")]
    Timeout(T),
    /// The value cannot cross machines: it does not encode, it holds a handle of the local
    /// family (a local `Queue`, `Lock`, `Value`...), or it is larger than the queue's
    /// `max_message_size` or than the server takes in one argument (its
    /// `proto-max-bulk-len` or `client-query-buffer-limit`, read on the connection, where
    /// `CONFIG GET` is allowed): Redis would close the connection on it.
    #[error("the value cannot be sent: {1}")]
    Encode(T, CodecError),
    /// Redis could not be used, and the put did not take effect: the value is not in the
    /// queue (Redis refused the command, or the credentials, or was unreachable for the
    /// timeout before an item above 1 MiB was sent: its bound is checked first).
    #[error("{1}")]
    Redis(T, ClusterError),
    /// Redis could not be used after the put was sent, and stayed so past the queue's
    /// [`timeout`](super::QueueBuilder::timeout) while the put was sent again: it may or
    /// may not have taken effect (the server may have run it and its reply been lost, or
    /// run it later). Put it again with
    /// [`Queue::put_again`](super::Queue::put_again): the queue takes it at most once
    /// however often it is sent, so it is then in the queue exactly once. (Putting its
    /// value again with `put` may put it twice.)
    #[error("the put may or may not have taken effect: {1}")]
    Unsure(PutToken<T>, ClusterError),
}

/// A put that may or may not have taken effect ([`PutError::Unsure`]): its value, and the
/// number under which the queue takes it at most once, however often it is put again with
/// [`Queue::put_again`](super::Queue::put_again). The queue remembers that number for at
/// least 45 minutes after this handle's last put: a token put again later than that may
/// put its value twice. Dropping the token (or taking its value back
/// with [`into_inner`](PutToken::into_inner)) gives the put up: if it has not taken effect
/// by then, it never will.
///
/// # Examples
///
/// ```no_run
/// use multiproc::cluster::{PutError, Queue};
///
/// let q = Queue::<u32>::open("redis://127.0.0.1/", "jobs")?;
/// let mut outcome = q.put(7);
/// // Redis came back: the value is in the queue once, whether the first put took effect or not.
/// while let Err(PutError::Unsure(token, _)) = outcome {
///     std::thread::sleep(std::time::Duration::from_secs(1));
///     outcome = q.put_again(token);
/// }
/// outcome?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct PutToken<T> {
    pub(super) value: T,
    pub(super) put: Box<super::queue::SentPut>,
}

impl<T> PutToken<T> {
    /// The value of the put.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::cluster::{PutError, Queue};
    ///
    /// let q = Queue::<String>::open("redis://127.0.0.1/", "names")?;
    /// if let Err(PutError::Unsure(token, _)) = q.put("ada".into()) {
    ///     eprintln!("{} may not be in the queue", token.value());
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Gives the put up and returns its value (it may be in the queue or not; a put of the
    /// value sent earlier that has not taken effect yet never will).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::cluster::{PutError, Queue};
    ///
    /// let q = Queue::<u32>::open("redis://127.0.0.1/", "jobs")?;
    /// if let Err(PutError::Unsure(token, _)) = q.put(7) {
    ///     let seven: u32 = token.into_inner();
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> fmt::Debug for PutToken<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutToken").field("number", &self.put.number()).finish_non_exhaustive()
    }
}

impl<T> PutError<T> {
    /// The value that was not put.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<String>::builder().maxsize(1).open("redis://127.0.0.1/", "q")?;
    /// q.put("first".into())?;
    /// let back: String = q.try_put("second".into()).unwrap_err().into_inner();
    /// assert_eq!(back, "second");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(v) | PutError::Timeout(v) | PutError::Encode(v, _) | PutError::Redis(v, _) => v,
            PutError::Unsure(token, _) => token.into_inner(),
        }
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Timeout(_) => f.write_str("Timeout(..)"),
            PutError::Encode(_, e) => f.debug_tuple("Encode").field(&"..").field(e).finish(),
            PutError::Redis(_, e) => f.debug_tuple("Redis").field(&"..").field(e).finish(),
            PutError::Unsure(token, e) => f.debug_tuple("Unsure").field(token).field(e).finish(),
        }
    }
}

/// Why a [`Queue::get`](super::Queue::get) (or `try_get`, `get_timeout`, `receive`...)
/// returned no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// The queue was empty and the call was not to wait (`try_get`).
    #[error("the queue is empty")]
    Empty,
    /// The queue stayed empty until the timeout passed (`get_timeout`).
    #[error("the queue stayed empty until the timeout")]
    Timeout,
    /// The item taken does not decode as a `T` (another program put another type, or
    /// garbage), or it is larger than the queue's `max_message_size` (then it was never
    /// read from Redis). It was moved to the queue's dead-letter list (`<key>:dead`), so
    /// it is not delivered again.
    #[error(transparent)]
    Decode(CodecError),
    /// The item taken does not check under the queue's cluster key (see
    /// [`QueueBuilder::authkey`](super::QueueBuilder::authkey)): put by a program with
    /// another key, or written or changed in Redis by someone without it. It was not
    /// decoded, and was moved to the queue's dead-letter list, `dead`, so it is not
    /// delivered again.
    #[error(
        "the item taken could not be authenticated under the cluster key (another key, or written in Redis by \
         someone without it): not decoded, moved to {dead}"
    )]
    Unauthenticated {
        /// The dead-letter list it was moved to.
        dead: String,
    },
    /// Redis could not be used.
    #[error(transparent)]
    Redis(ClusterError),
}

/// Why [`Received::ack`](super::Received::ack) failed: Redis could not be used. The
/// acknowledgement may still have run (the link failed after it was sent): then the item is
/// gone, as acknowledged. Else it stays in this consumer's processing list and is delivered
/// again once this consumer retires (its last handle dropped) or dies (its heartbeat
/// expires): at least once, never lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the acknowledgement did not reach Redis: {0}")]
pub struct AckError(pub ClusterError);

impl<T> From<PutError<T>> for crate::Error {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Full(_) => crate::Error::WouldBlock,
            PutError::Timeout(_) => crate::Error::Timeout,
            PutError::Encode(_, e) => crate::Error::Codec(e),
            PutError::Redis(_, e) | PutError::Unsure(_, e) => crate::Error::Cluster(e),
        }
    }
}

impl From<GetError> for crate::Error {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Empty => crate::Error::WouldBlock,
            GetError::Timeout => crate::Error::Timeout,
            GetError::Decode(e) => crate::Error::Codec(e),
            e @ GetError::Unauthenticated { .. } => crate::Error::Codec(CodecError::decode(e)),
            GetError::Redis(e) => crate::Error::Cluster(e),
        }
    }
}

impl From<AckError> for crate::Error {
    fn from(e: AckError) -> Self {
        crate::Error::Cluster(e.0)
    }
}
