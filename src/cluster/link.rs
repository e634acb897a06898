//! One blocking connection to Redis with bounded waits, opened again after a failure.

use std::time::Duration;

use super::{ClusterError, Tls};
use crate::shm::TakenIn;

/// The longest one blocking Redis command waits before the caller regains control (to
/// keep its heartbeat, reclaim dead consumers' items, check its own deadline).
pub(crate) const SLICE: Duration = Duration::from_secs(1);

/// A connection that is opened lazily and dropped after any failure, so that the next
/// call connects anew (Redis restarted) or fails fast with the reason (Redis gone).
pub(crate) struct Link {
    client: redis::Client,
    conn: Option<redis::Connection>,
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
        let client = redis::Client::open(url).map_err(|e| ClusterError::BadUrl(e.to_string()))?;
        let client = match tls {
            None => client,
            Some(_) if !matches!(client.get_connection_info().addr(), redis::ConnectionAddr::TcpTls { .. }) => {
                return Err(ClusterError::BadUrl("TLS certificates were given for a URL that is not rediss://".into()));
            }
            Some(tls) => redis::Client::build_with_tls(url, tls.certificates())
                .map_err(|e| ClusterError::Tls(format!("the certificates given do not parse: {e}")))?,
        };
        // A timeout of `Duration::MAX` ("wait as long as it takes") would overflow the
        // read limit below: the longest kept is a hundred years.
        Ok(Self { client, conn: None, conn_in: TakenIn::here(), timeout: timeout.min(super::MAX_LEASE) })
    }

    /// Runs `f` on the connection (connecting first if needed). Every read waits at most
    /// [`SLICE`] plus the timeout, so a server that stops answering is an error, not a
    /// hang. A connection-level failure drops the connection.
    pub(crate) fn run<R>(
        &mut self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<R>,
    ) -> Result<R, ClusterError> {
        if self.conn.is_some() && !self.conn_in.is_here() {
            // The parent's connection, copied by fork: left to the parent.
            std::mem::forget(self.conn.take());
        }
        if self.conn.is_none() {
            let conn =
                self.client.get_connection_with_timeout(self.timeout).map_err(|e| ClusterError::from_redis(&e))?;
            let limit = Some(SLICE + self.timeout);
            conn.set_read_timeout(limit).map_err(|e| ClusterError::from_redis(&e))?;
            conn.set_write_timeout(limit).map_err(|e| ClusterError::from_redis(&e))?;
            self.conn = Some(conn);
            self.conn_in = TakenIn::here();
        }
        let conn = self.conn.as_mut().expect("connected above");
        f(conn).map_err(|e| {
            let err = ClusterError::from_redis(&e);
            if matches!(err, ClusterError::Unreachable(_)) || e.is_unrecoverable_error() {
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
