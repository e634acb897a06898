//! Certificates for `rediss://` URLs beyond the system's trusted authorities.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::ClusterError;

/// The certificates a `rediss://` connection uses when the system's trusted authorities
/// are not the right ones: the authority that signed the server's certificate (a private
/// CA), and a client certificate for servers that ask for one (`tls-auth-clients yes`).
///
/// Without a `Tls`, a `rediss://` URL trusts the system's authorities
/// (`/etc/ssl/certs`). Either way the server's certificate must name the URL's host, and a
/// certificate that is not trusted fails with [`ClusterError::Tls`](super::ClusterError::Tls).
/// A URL that asks to skip the checks (`rediss://host/#insecure`) is refused
/// ([`ClusterError::BadUrl`](super::ClusterError::BadUrl)): give the authority instead.
/// TLS is rustls with the ring provider: no OpenSSL.
///
/// # Examples
///
/// ```no_run
/// use multiproc::cluster::{Queue, Tls};
///
/// let ca = std::fs::read("/etc/redis/ca.pem")?;
/// let q = Queue::<String>::builder()
///     .tls(Tls::new().ca_pem(ca))
///     .open("rediss://worker:secret@redis.example:6380/0", "jobs")?;
/// q.put("over TLS".to_string())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct Tls {
    pub(crate) ca: Option<Vec<u8>>,
    pub(crate) client: Option<(Vec<u8>, Vec<u8>)>,
}

impl Tls {
    /// No certificate of its own: the system's authorities, no client certificate.
    ///
    /// # Examples
    ///
    /// ```
    /// let tls = multiproc::cluster::Tls::new();
    /// # let _ = tls;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the authorities in this PEM text (one or more `CERTIFICATE` blocks) instead
    /// of the system's.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let tls = multiproc::cluster::Tls::new().ca_pem(std::fs::read("ca.pem")?);
    /// # let _ = tls;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca = Some(pem.into());
        self
    }

    /// Presents this certificate chain and private key (PEM) to a server that
    /// authenticates its clients (mutual TLS).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let tls = multiproc::cluster::Tls::new()
    ///     .ca_pem(std::fs::read("ca.pem")?)
    ///     .client_pem(std::fs::read("client.pem")?, std::fs::read("client.key")?);
    /// # let _ = tls;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn client_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client = Some((cert.into(), key.into()));
        self
    }
}

/// The TLS settings of a `rediss://` connection: `tls`'s authority (else the system's),
/// and its client certificate. Certificates that do not parse are [`ClusterError::Tls`].
pub(crate) fn client_config(tls: Option<&Tls>) -> Result<Arc<rustls::ClientConfig>, ClusterError> {
    let bad = |e: &dyn fmt::Display| ClusterError::Tls(format!("the certificates given do not parse: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    match tls.and_then(|tls| tls.ca.as_deref()) {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(bad(&"no CERTIFICATE block"));
            }
        }
        // Those that do not parse are left out, as a browser would.
        None => _ = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs),
    }
    let config = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match tls.and_then(|tls| tls.client.as_ref()) {
        None => config.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert).collect::<Result<Vec<_>, _>>().map_err(|e| bad(&e))?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad(&e))?;
            config.with_client_auth_cert(chain, key).map_err(|e| bad(&e))?
        }
    };
    Ok(Arc::new(config))
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca.as_ref().map(|_| ".."))
            .field("client", &self.client.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
