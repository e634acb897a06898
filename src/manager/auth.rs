//! The manager's side of the mutual HMAC challenge ([`crate::connection::auth`]): its magic,
//! and the client's failures as [`ManagerError`]s.

use std::io::{Read, Write};

use crate::connection::auth::{self as shared, Failure, Magic};
pub(crate) use crate::connection::auth::{Bounded, HANDSHAKE_TIMEOUT, Refusal, deadline_after};

use super::error::ManagerError;

const MAGIC: &Magic = b"MPMGR\x00\x01\x00";

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

    #[test]
    fn a_server_that_does_not_know_the_key_is_caught() {
        let (fake, mut b) = crate::connection::auth::fake_server_without_the_key(MAGIC);
        let client = connect(&mut b, b"secret");
        fake.join().unwrap();
        assert!(matches!(client, Err(ManagerError::AuthenticationFailed(_))), "{client:?}");
    }
}
