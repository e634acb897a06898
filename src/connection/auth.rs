//! Mutual HMAC-SHA256 challenge-response over a fresh socket, before anything is decoded
//! (Python's `deliver_challenge` / `answer_challenge`, in both directions). The manager's
//! remote access and [`Listener`](super::Listener) / [`Client`](super::Client) use it, each
//! with a magic of its own, so that a client of one is refused by the other.
//!
//! Every message of the exchange has a fixed size, so nothing is parsed or allocated from
//! what an unauthenticated peer sends:
//!
//! 1. server → client: the magic (8 bytes), a random 32-byte challenge `s`;
//! 2. client → server: `HMAC(key, "client" ‖ s)`, a random 32-byte challenge `c`;
//! 3. server → client: `#FAILURE` and the connection closes, or `#WELCOME` and
//!    `HMAC(key, "server" ‖ c)`, which the client checks in turn.
//!
//! The key itself never travels; the role prefixes keep one side's answer from being
//! replayed as the other's; comparisons are constant-time (`Mac::verify_slice`).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::sys;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The first bytes a server sends, naming what it serves and the protocol's version.
pub(crate) type Magic = [u8; 8];

pub(crate) const WELCOME: &[u8; 8] = b"#WELCOME";
pub(crate) const FAILURE: &[u8; 8] = b"#FAILURE";
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
pub(crate) struct Bounded<'a, S> {
    stream: &'a S,
    deadline: Instant,
}

/// A socket with read and write timeouts (TCP or unix).
pub(crate) trait TimedSocket {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl TimedSocket for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
}

impl TimedSocket for UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, timeout)
    }
}

impl<'a, S> Bounded<'a, S> {
    pub(crate) fn new(stream: &'a S, deadline: Instant) -> Self {
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

impl<S: TimedSocket> Read for Bounded<'_, S>
where
    for<'s> &'s S: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        (&mut &*self.stream).read(buf).map_err(past_deadline)
    }
}

impl<S: TimedSocket> Write for Bounded<'_, S>
where
    for<'s> &'s S: Write,
{
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

/// The length of the client's answer: its digest, then its challenge.
pub(crate) const ANSWER: usize = DIGEST + NONCE;

/// The server's first message (the magic, then a fresh challenge) and that challenge.
pub(crate) fn hello(magic: &Magic) -> ([u8; 8 + NONCE], [u8; NONCE]) {
    let challenge = sys::random_bytes::<NONCE>();
    let mut hello = [0u8; 8 + NONCE];
    hello[..8].copy_from_slice(magic);
    hello[8..].copy_from_slice(&challenge);
    (hello, challenge)
}

/// The server's verdict on the client's `answer` to `challenge`: the welcome to send (with
/// the server's answer to the client's challenge), or `None` when the client does not know
/// the key (send [`FAILURE`] and close).
pub(crate) fn verdict(key: &[u8], challenge: &[u8; NONCE], answer: &[u8; ANSWER]) -> Option<[u8; 8 + DIGEST]> {
    let (digest, theirs) = answer.split_at(DIGEST);
    mac(key, b"client", challenge).verify_slice(digest).ok()?;
    let mut welcome = [0u8; 8 + DIGEST];
    welcome[..8].copy_from_slice(WELCOME);
    welcome[8..].copy_from_slice(&mac(key, b"server", theirs).finalize().into_bytes());
    Some(welcome)
}

/// The server's side: challenges the client, then answers its challenge.
pub(crate) fn accept<S: Read + Write>(stream: &mut S, key: &[u8], magic: &Magic) -> Result<(), Refusal> {
    let (hello, challenge) = hello(magic);
    stream.write_all(&hello)?;
    let mut answer = [0u8; ANSWER];
    stream.read_exact(&mut answer)?;
    let Some(welcome) = verdict(key, &challenge, &answer) else {
        let _ = stream.write_all(FAILURE);
        return Err(Refusal::WrongKey);
    };
    stream.write_all(&welcome)?;
    Ok(())
}

/// Why the client's side of the challenge failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The peer's first bytes are not the expected magic.
    NotThePeer,
    /// The server closed the connection instead of answering (it refused the key, or
    /// went away).
    Closed,
    /// The server said the key is wrong.
    Refused,
    /// The server answered with neither verdict.
    Unexpected,
    /// The server's answer to our challenge is wrong: it does not know the key.
    ServerUnknown,
    /// The socket failed or timed out.
    Io(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

/// The client's side: answers the server's challenge, then checks the server's answer to
/// its own.
pub(crate) fn connect<S: Read + Write>(stream: &mut S, key: &[u8], magic: &Magic) -> Result<(), Failure> {
    // The magic is looked at byte by byte as it arrives, before the nonce is waited for: a
    // peer of another protocol is told at its first wrong byte, however short its greeting
    // and whether it then holds or closes (an HTTP server's answer, a Redis `+OK\r\n`), not
    // at the handshake's deadline (aud106 L4, review147 L1). A real magic arriving in
    // pieces passes: each piece is a prefix of it.
    let mut hello = [0u8; 8 + NONCE];
    let mut got = 0;
    while got < 8 {
        match stream.read(&mut hello[got..8]) {
            Ok(0) => return Err(closed_before_greeting()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        if hello[..got] != magic[..got] {
            return Err(Failure::NotThePeer);
        }
    }
    read_greeting(stream, &mut hello[8..])?;
    let ours = sys::random_bytes::<NONCE>();
    let mut answer = [0u8; DIGEST + NONCE];
    answer[..DIGEST].copy_from_slice(&mac(key, b"client", &hello[8..]).finalize().into_bytes());
    answer[DIGEST..].copy_from_slice(&ours);
    stream.write_all(&answer)?;
    let mut verdict = [0u8; 8];
    match stream.read_exact(&mut verdict) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(Failure::Closed),
        Err(e) => return Err(e.into()),
    }
    if &verdict == FAILURE {
        return Err(Failure::Refused);
    }
    if &verdict != WELCOME {
        return Err(Failure::Unexpected);
    }
    let mut digest = [0u8; DIGEST];
    stream.read_exact(&mut digest)?;
    if mac(key, b"server", &ours).verify_slice(&digest).is_err() {
        return Err(Failure::ServerUnknown);
    }
    Ok(())
}
/// Reads the rest of the peer's greeting (its nonce); a peer that closed before it is said
/// to have closed, not that a buffer could not be filled.
fn read_greeting<S: Read>(stream: &mut S, buf: &mut [u8]) -> Result<(), Failure> {
    stream.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => closed_before_greeting(),
        _ => Failure::Io(e),
    })
}

/// The peer closed before its whole greeting. The error keeps the kind `read_exact` gives
/// (`UnexpectedEof`), so code matching on it still works.
fn closed_before_greeting() -> Failure {
    Failure::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed the connection before its greeting"))
}

/// A fake server speaking `magic` that welcomes anyone but cannot answer the client's
/// challenge (it does not know the key); the client connects through the returned stream.
#[cfg(test)]
pub(crate) fn fake_server_without_the_key(magic: &'static Magic) -> (std::thread::JoinHandle<()>, UnixStream) {
    let (mut a, b) = UnixStream::pair().unwrap();
    let fake = std::thread::spawn(move || {
        let mut hello = [0u8; 40];
        hello[..8].copy_from_slice(magic);
        a.write_all(&hello).unwrap();
        let mut answer = [0u8; 64];
        a.read_exact(&mut answer).unwrap();
        let mut welcome = [0u8; 40];
        welcome[..8].copy_from_slice(WELCOME);
        a.write_all(&welcome).unwrap();
    });
    (fake, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &Magic = b"TEST\x00\x00\x00\x01";

    #[test]
    fn a_timeout_too_long_for_an_instant_is_a_year() {
        assert!(deadline_after(Duration::MAX) > Instant::now() + Duration::from_secs(300 * 86400));
        assert!(deadline_after(Duration::from_millis(5)) <= Instant::now() + Duration::from_millis(5));
    }

    fn exchange(
        server: (&'static [u8], &'static Magic),
        client: (&'static [u8], &'static Magic),
    ) -> (Result<(), Refusal>, Result<(), Failure>) {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || accept(&mut a, server.0, server.1));
        let client = connect(&mut b, client.0, client.1);
        drop(b);
        (server.join().unwrap(), client)
    }

    #[test]
    fn the_same_key_passes_both_ways() {
        let (server, client) = exchange((b"secret", MAGIC), (b"secret", MAGIC));
        assert!(server.is_ok());
        assert!(client.is_ok());
    }

    #[test]
    fn a_wrong_key_is_refused() {
        let (server, client) = exchange((b"secret", MAGIC), (b"guess", MAGIC));
        assert!(matches!(server, Err(Refusal::WrongKey)));
        assert!(matches!(client, Err(Failure::Refused)), "{client:?}");
    }

    #[test]
    fn another_magic_is_not_the_peer() {
        let (_, client) = exchange((b"secret", MAGIC), (b"secret", b"OTHER\x00\x00\x01"));
        assert!(matches!(client, Err(Failure::NotThePeer)), "{client:?}");
    }

    #[test]
    fn a_greeting_arriving_a_byte_at_a_time_passes() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let (hello, challenge) = hello(MAGIC);
            for byte in hello {
                a.write_all(&[byte]).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut answer = [0u8; ANSWER];
            a.read_exact(&mut answer).unwrap();
            a.write_all(&verdict(b"secret", &challenge, &answer).unwrap()).unwrap();
        });
        let client = connect(&mut b, b"secret", MAGIC);
        server.join().unwrap();
        assert!(client.is_ok(), "{client:?}");
    }

    #[test]
    fn a_server_that_does_not_know_the_key_is_caught() {
        let (fake, mut b) = fake_server_without_the_key(MAGIC);
        let client = connect(&mut b, b"secret", MAGIC);
        fake.join().unwrap();
        assert!(matches!(client, Err(Failure::ServerUnknown)), "{client:?}");
    }
}
