//! The manager's side of the mutual HMAC challenge ([`crate::connection::auth`]): its magic,
//! and the client's failures as [`ManagerError`]s.

use std::io::{Read, Write};

use crate::connection::auth::{self as shared, Failure, Magic};
pub(crate) use crate::connection::auth::{Bounded, HANDSHAKE_TIMEOUT, Refusal, deadline_after};

use super::error::ManagerError;

/// The manager's magic, whose last bytes are its wire's version: the protocol
/// (`protocol.rs`) is one build's, and a client of another wire is refused at the
/// handshake (`Failure::NotThePeer`, "speaks another version") rather than admitted to
/// misread an answer and lose its connection. Changed with every change of the wire, which
/// `the_wire_is_the_one_its_magic_names` pins (review112 L3). Version 2: stop 40 (a
/// registered type's fingerprint, `Fault::TasksLost`, `Fault::TypeMismatch`).
const MAGIC: &Magic = b"MPMGR\x00\x02\x00";

/// The server's side: challenges the client, then answers its challenge.
pub(crate) fn accept<S: Read + Write>(stream: &mut S, key: &[u8]) -> Result<(), Refusal> {
    shared::accept(stream, key, MAGIC)
}

/// The client's side: answers the server's challenge, then checks the server's answer to
/// its own.
pub(crate) fn connect<S: Read + Write>(stream: &mut S, key: &[u8]) -> Result<(), ManagerError> {
    shared::connect(stream, key, MAGIC).map_err(|failure| match failure {
        Failure::NotThePeer => {
            ManagerError::Protocol("the peer is not a multiproc manager (or speaks another version)".into())
        }
        Failure::Closed => ManagerError::AuthenticationFailed("the server closed the connection".into()),
        Failure::Refused => ManagerError::AuthenticationFailed("the server refused the key".into()),
        Failure::Unexpected => ManagerError::Protocol("unexpected answer to the challenge".into()),
        Failure::ServerUnknown => ManagerError::AuthenticationFailed("the server does not know the key".into()),
        Failure::Io(e) => e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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

    /// The magic of the builds from af9445e to stop 39, whose wire (`protocol.rs`) grew
    /// since without a change of magic (review112 L3).
    const STOP_39: &Magic = b"MPMGR\x00\x01\x00";

    /// A client of another wire is refused at the handshake, with a typed error, before
    /// it sends anything: not admitted to lose its connection at the first answer it
    /// cannot read (review112 L3: a stop-39 client and `Fault::TasksLost`).
    #[test]
    fn a_client_of_an_earlier_wire_is_refused_at_the_handshake() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || accept(&mut a, b"secret"));
        let client = shared::connect(&mut b, b"secret", STOP_39);
        drop(b);
        let _ = server.join().unwrap();
        println!("a stop-39 client: {client:?}");
        assert!(matches!(client, Err(Failure::NotThePeer)), "a stop-39 client: {client:?}");
    }

    /// The wire's definitions, as `protocol.rs` writes them (comments and spaces aside),
    /// hashed: when this fails, the wire changed (a variant or a field added, removed,
    /// moved, or of another type), and a client of the last build would misread this
    /// one's messages. Change `MAGIC` (its version bytes) with it, then set
    /// `WIRE_DIGEST` to the value printed.
    #[test]
    fn the_wire_is_the_one_its_magic_names() {
        const WIRE_DIGEST: u64 = 0xf04b_feaa_24a4_0e60;
        let source = include_str!("protocol.rs");
        let mut digest = 0xcbf2_9ce4_8422_2325u64;
        for head in [
            "pub(crate) enum Kind {",
            "pub(crate) struct Item<R> {",
            "struct ItemRepr<R> {",
            "pub(crate) enum Create {",
            "pub(crate) enum SetAlgebra {",
            "pub(crate) enum SetRelation {",
            "pub(crate) enum Op {",
            "pub(crate) enum Request {",
            "pub(crate) struct Envelope {",
            "pub(crate) enum Out<R> {",
            "pub(crate) enum Fault {",
            "pub(crate) struct Reply<R> {",
        ] {
            let start = source.find(head).unwrap_or_else(|| panic!("no `{head}` in protocol.rs"));
            // The attributes above it (serde's among them) and the body to its closing brace.
            let attrs = source[..start].rfind(";\n").max(source[..start].rfind("}\n")).map_or(0, |i| i + 2);
            let end = start + source[start..].find("\n}\n").expect("a closing brace") + 2;
            for line in source[attrs..end].lines() {
                let code = line.split("//").next().unwrap_or("");
                for b in code.bytes().filter(|b| !b.is_ascii_whitespace()) {
                    digest = (digest ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
                }
            }
        }
        assert_eq!(
            digest, WIRE_DIGEST,
            "the manager's wire changed: change MAGIC ({MAGIC:?}) in manager/auth.rs, then set WIRE_DIGEST to {digest:#x}"
        );
    }

    #[test]
    fn a_server_that_does_not_know_the_key_is_caught() {
        let (fake, mut b) = crate::connection::auth::fake_server_without_the_key(MAGIC);
        let client = connect(&mut b, b"secret");
        fake.join().unwrap();
        assert!(matches!(client, Err(ManagerError::AuthenticationFailed(_))), "{client:?}");
    }
}
