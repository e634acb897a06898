//! Mutual HMAC-SHA256 challenge-response over a fresh TCP connection, before anything is
//! decoded (Python's `deliver_challenge` / `answer_challenge`, in both directions).
//!
//! Every message of the exchange has a fixed size, so nothing is parsed or allocated from
//! what an unauthenticated peer sends:
//!
//! 1. server → client: `MAGIC` (8 bytes), a random 32-byte challenge `s`;
//! 2. client → server: `HMAC(key, "client" ‖ s)`, a random 32-byte challenge `c`;
//! 3. server → client: `#FAILURE` and the connection closes, or `#WELCOME` and
//!    `HMAC(key, "server" ‖ c)`, which the client checks in turn.
//!
//! The key itself never travels; the role prefixes keep one side's answer from being
//! replayed as the other's; comparisons are constant-time (`Mac::verify_slice`).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::error::ManagerError;
use crate::sys;

type HmacSha256 = hmac::Hmac<Sha256>;

const MAGIC: &[u8; 8] = b"MPMGR\x00\x01\x00";
const WELCOME: &[u8; 8] = b"#WELCOME";
const FAILURE: &[u8; 8] = b"#FAILURE";
const NONCE: usize = 32;
const DIGEST: usize = 32;

/// How long the whole handshake may take, either side (the default).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The instant `timeout` from now; a timeout past what an `Instant` can hold is a year.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(365 * 86400))
}

/// A socket whose every read and write must end by one deadline, so that a peer sending a
/// byte at a time cannot stretch the exchange (a timeout per read would restart with each
/// byte). Past the deadline, reads and writes fail with `TimedOut`.
pub(crate) struct Bounded<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl<'a> Bounded<'a> {
    pub(crate) fn new(stream: &'a TcpStream, deadline: Instant) -> Self {
        Self { stream, deadline }
    }

    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() { Err(timed_out()) } else { Ok(left) }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the handshake took too long")
}

/// A socket timeout shows as `WouldBlock` (or `TimedOut`): both are the deadline.
fn past_deadline(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => timed_out(),
        _ => e,
    }
}

impl Read for Bounded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        (&mut &*self.stream).read(buf).map_err(past_deadline)
    }
}

impl Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        (&mut &*self.stream).write(buf).map_err(past_deadline)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn mac(key: &[u8], role: &[u8], challenge: &[u8]) -> HmacSha256 {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(role);
    mac.update(challenge);
    mac
}

/// Why the server refused a connection (it closes it; nothing else changes).
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The client does not know the key.
    WrongKey,
    /// The socket failed or timed out.
    Io(#[allow(dead_code)] std::io::Error),
}

impl From<std::io::Error> for Refusal {
    fn from(e: std::io::Error) -> Self {
        Refusal::Io(e)
    }
}

/// The server's side: challenges the client, then answers its challenge.
pub(crate) fn accept<S: Read + Write>(stream: &mut S, key: &[u8]) -> Result<(), Refusal> {
    let challenge = sys::random_bytes::<NONCE>();
    let mut hello = [0u8; 8 + NONCE];
    hello[..8].copy_from_slice(MAGIC);
    hello[8..].copy_from_slice(&challenge);
    stream.write_all(&hello)?;
    let mut answer = [0u8; DIGEST + NONCE];
    stream.read_exact(&mut answer)?;
    let (digest, theirs) = answer.split_at(DIGEST);
    if mac(key, b"client", &challenge).verify_slice(digest).is_err() {
        let _ = stream.write_all(FAILURE);
        return Err(Refusal::WrongKey);
    }
    let mut welcome = [0u8; 8 + DIGEST];
    welcome[..8].copy_from_slice(WELCOME);
    welcome[8..].copy_from_slice(&mac(key, b"server", theirs).finalize().into_bytes());
    stream.write_all(&welcome)?;
    Ok(())
}

/// The client's side: answers the server's challenge, then checks the server's answer to
/// its own.
pub(crate) fn connect<S: Read + Write>(stream: &mut S, key: &[u8]) -> Result<(), ManagerError> {
    let mut hello = [0u8; 8 + NONCE];
    stream.read_exact(&mut hello)?;
    if &hello[..8] != MAGIC {
        return Err(ManagerError::Protocol("the peer is not a multiproc manager (or speaks another version)".into()));
    }
    let ours = sys::random_bytes::<NONCE>();
    let mut answer = [0u8; DIGEST + NONCE];
    answer[..DIGEST].copy_from_slice(&mac(key, b"client", &hello[8..]).finalize().into_bytes());
    answer[DIGEST..].copy_from_slice(&ours);
    stream.write_all(&answer)?;
    let mut verdict = [0u8; 8];
    match stream.read_exact(&mut verdict) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(ManagerError::AuthenticationFailed("the server closed the connection".into()));
        }
        Err(e) => return Err(e.into()),
    }
    if &verdict == FAILURE {
        return Err(ManagerError::AuthenticationFailed("the server refused the key".into()));
    }
    if &verdict != WELCOME {
        return Err(ManagerError::Protocol("unexpected answer to the challenge".into()));
    }
    let mut digest = [0u8; DIGEST];
    stream.read_exact(&mut digest)?;
    if mac(key, b"server", &ours).verify_slice(&digest).is_err() {
        return Err(ManagerError::AuthenticationFailed("the server does not know the key".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_too_long_for_an_instant_is_a_year() {
        assert!(deadline_after(Duration::MAX) > Instant::now() + Duration::from_secs(300 * 86400));
        assert!(deadline_after(Duration::from_millis(5)) <= Instant::now() + Duration::from_millis(5));
    }
    use std::os::unix::net::UnixStream;

    fn exchange(
        server_key: &'static [u8],
        client_key: &'static [u8],
    ) -> (Result<(), Refusal>, Result<(), ManagerError>) {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || accept(&mut a, server_key));
        let client = connect(&mut b, client_key);
        (server.join().unwrap(), client)
    }

    #[test]
    fn the_same_key_passes_both_ways() {
        let (server, client) = exchange(b"secret", b"secret");
        assert!(server.is_ok());
        assert!(client.is_ok());
    }

    #[test]
    fn a_wrong_key_is_refused_with_a_typed_error() {
        let (server, client) = exchange(b"secret", b"guess");
        assert!(matches!(server, Err(Refusal::WrongKey)));
        assert!(matches!(client, Err(ManagerError::AuthenticationFailed(_))), "{client:?}");
    }

    #[test]
    fn a_server_that_does_not_know_the_key_is_caught() {
        // A fake server that welcomes anyone but cannot answer the client's challenge.
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let fake = std::thread::spawn(move || {
            let mut hello = [0u8; 40];
            hello[..8].copy_from_slice(MAGIC);
            a.write_all(&hello).unwrap();
            let mut answer = [0u8; 64];
            a.read_exact(&mut answer).unwrap();
            let mut welcome = [0u8; 40];
            welcome[..8].copy_from_slice(WELCOME);
            a.write_all(&welcome).unwrap();
        });
        let client = connect(&mut b, b"secret");
        fake.join().unwrap();
        assert!(matches!(client, Err(ManagerError::AuthenticationFailed(_))), "{client:?}");
    }
}
