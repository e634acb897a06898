//! Immutable byte strings in the family heap: large messages, arguments and results
//! travel as a handle to one instead of through a socket or a ring.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};

use super::object::{Shared, ShmObject, kind};
use super::{HeapFull, ShmSafe};

#[repr(C)]
#[derive(Debug)]
struct BlobState {
    len: u64,
}

// SAFETY: a plain integer.
unsafe impl ShmSafe for BlobState {}

impl ShmObject for BlobState {
    const KIND: u32 = kind::BLOB;
    // Only `fill_whole` makes blobs of unspecified bytes; the others write zeroed ones,
    // which may come warm all the same: no blob is ever read before it is written whole.
    const WARM: bool = true;
}

/// Bytes written once, then shared read-only by every process holding the handle.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Blob {
    shared: Shared<BlobState>,
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blob").field("len", &self.len()).finish()
    }
}

impl Blob {
    /// Copies `bytes` into the heap.
    pub(crate) fn new(bytes: &[u8]) -> Result<Self, HeapFull> {
        let shared = Shared::with_tail(BlobState { len: bytes.len() as u64 }, bytes.len())?;
        let cells = shared.tail::<u8>(bytes.len());
        // SAFETY: the blob was just created; no other process has its handle yet, so we
        // have the only access to its bytes.
        unsafe { cells.as_mut_slice() }.copy_from_slice(bytes);
        Ok(Self { shared })
    }

    /// A blob of `len` bytes, zeroed, then written by `fill`, straight into the heap (no
    /// copy).
    pub(crate) fn fill<R, E: From<HeapFull>>(
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<R, E>,
    ) -> Result<(Self, R), E> {
        Self::filled(Shared::with_tail(BlobState { len: len as u64 }, len)?, fill)
    }

    /// [`Blob::fill`] for a `fill` that writes every byte: the blob may reuse a warm block
    /// of an earlier large message, its pages already there.
    pub(crate) fn fill_whole<R, E: From<HeapFull>>(
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<R, E>,
    ) -> Result<(Self, R), E> {
        Self::filled(Shared::with_dirty_tail(BlobState { len: len as u64 }, len)?, fill)
    }

    fn filled<R, E>(shared: Shared<BlobState>, fill: impl FnOnce(&mut [u8]) -> Result<R, E>) -> Result<(Self, R), E> {
        let len = shared.len as usize;
        // Every page is about to be written: fault them in with one call.
        shared.populate_tail();
        let cells = shared.tail::<u8>(len);
        // SAFETY: the blob was just created; no other process has its handle yet, so we
        // have the only access to its bytes.
        let r = fill(unsafe { cells.as_mut_slice() })?;
        Ok((Self { shared }, r))
    }

    /// See [`Shared::drop_trusting_others`].
    pub(crate) fn drop_trusting_others(self) {
        self.shared.drop_trusting_others();
    }

    /// See [`Shared::forget_lost_messages`]: for the sender of a blob that travelled in one
    /// message, once that message is known to be gone.
    pub(crate) fn forget_lost_messages(&self) -> u32 {
        self.shared.forget_lost_messages()
    }

    /// What names the blob to a process that may have to give it back for a dead sender
    /// ([`Blob::give_back_sent_by_dead`]): its offset and generation (`[offset, generation,
    /// 0]`, the key of its count's undo).
    pub(crate) fn key(&self) -> [u64; 3] {
        let (off, generation, _) = self.shared.identity();
        [off, generation, 0]
    }

    /// Gives back the blob named by `key` ([`Blob::key`]), made by the process `pid` for one
    /// message that never reached its receiver, `pid` now dead: see
    /// [`Shared::give_back_sent_by_dead`].
    pub(crate) fn give_back_sent_by_dead(key: [u64; 3], pid: u32) {
        Shared::<BlobState>::give_back_sent_by_dead(key, pid);
    }

    /// The length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.shared.len as usize
    }

    /// The bytes. Nobody writes a blob after [`Blob::new`], so sharing them is sound.
    pub(crate) fn bytes(&self) -> &[u8] {
        let cells = self.shared.tail::<u8>(self.len());
        // SAFETY: blobs are immutable once created (only `new` writes, before the handle
        // exists anywhere else), and the borrow is tied to `self`, which keeps it alive.
        unsafe { cells.as_slice() }
    }
}

/// Bytes that travel inline when small and as a [`Blob`] when large.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Payload {
    /// Small: the bytes themselves.
    Inline(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Large: a handle to the bytes in the heap.
    Heap(Blob),
}

/// Why [`Payload::encode`] failed inside [`Blob::fill_whole`].
enum PayloadError {
    Codec(CodecError),
    Full(HeapFull),
}

impl From<HeapFull> for PayloadError {
    fn from(e: HeapFull) -> Self {
        PayloadError::Full(e)
    }
}

/// A message of type `T` that the heap has no room for.
fn too_big<T>(e: HeapFull) -> CodecError {
    CodecError::encode(format_args!("the message does not fit in shared memory: {e}")).of::<T>()
}

/// Payloads up to this size travel inline.
pub(crate) const INLINE_MAX: usize = 16 * 1024;

/// Payloads up to this size are encoded once into a `Vec` and copied into their blob;
/// larger ones are measured, then encoded straight into it (see [`Payload::encode`]).
pub(crate) const COPY_MAX: usize = 1024 * 1024;

impl Payload {
    /// Wraps `bytes`, moving large ones to the heap.
    pub(crate) fn new(bytes: Vec<u8>) -> Result<Self, HeapFull> {
        if bytes.len() <= INLINE_MAX { Ok(Payload::Inline(bytes)) } else { Ok(Payload::Heap(Blob::new(&bytes)?)) }
    }

    /// Encodes `value` as a message to be decoded as a `T`: inline when small; up to
    /// [`COPY_MAX`] encoded once in a `Vec` and copied into a blob (a copy of that size
    /// costs less than encoding twice); larger ones written once, straight into a blob
    /// (measured first, never built in a growing `Vec` and then copied). The
    /// [`codec::Encoded`] holds the handles inside until [`codec::Encoded::sent`].
    #[inline]
    pub(crate) fn encode<T: DeserializeOwned, V: Serialize + ?Sized>(
        value: &V,
    ) -> Result<(Self, codec::Encoded), CodecError> {
        match codec::encode_within::<T, V>(value, COPY_MAX)? {
            Some(mut encoded) if encoded.bytes.len() <= INLINE_MAX => {
                Ok((Payload::Inline(std::mem::take(&mut encoded.bytes)), encoded))
            }
            Some(mut encoded) => {
                let blob = Blob::new(&encoded.bytes).map_err(too_big::<T>)?;
                encoded.bytes = Vec::new();
                Ok((Payload::Heap(blob), encoded))
            }
            None => Self::encode_large::<T, V>(value),
        }
    }

    /// [`Payload::encode`] of a message over [`COPY_MAX`]: out of line, so that the small
    /// messages' path (a pool's chunk of a few items) stays short.
    #[inline(never)]
    fn encode_large<T: DeserializeOwned, V: Serialize + ?Sized>(
        value: &V,
    ) -> Result<(Self, codec::Encoded), CodecError> {
        let len = codec::encoded_len_as::<T, V>(value)?;
        // `encode_to_slice_as` writes every byte or fails (the blob then dropped unread).
        let filled =
            Blob::fill_whole(len, |out| codec::encode_to_slice_as::<T, V>(value, out).map_err(PayloadError::Codec));
        match filled {
            Ok((blob, encoded)) => Ok((Payload::Heap(blob), encoded)),
            Err(PayloadError::Codec(e)) => Err(e),
            Err(PayloadError::Full(e)) => Err(too_big::<T>(e)),
        }
    }

    /// Drops the payload; a blob's handle as [`Blob::drop_trusting_others`]: for a receiver
    /// whose sender holds the blob until answered (a pool chunk's).
    pub(crate) fn drop_trusting_sender(self) {
        if let Payload::Heap(blob) = self {
            blob.drop_trusting_others();
        }
    }

    /// Another handle to the blob of a large payload.
    pub(crate) fn blob(&self) -> Option<Blob> {
        match self {
            Payload::Inline(_) => None,
            Payload::Heap(b) => Some(b.clone()),
        }
    }

    /// The bytes. Inlined: out of line, this one function was a page fault of its own for
    /// every fork child (the only code of its 64 KiB window the child runs).
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Payload::Inline(v) => v,
            Payload::Heap(b) => b.bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::Heap;

    /// review82 L1: a dead process's outcome-blob key naming a blob it never held (whose
    /// count in flight is another message's) gives nothing back.
    #[test]
    fn a_blob_given_back_for_a_process_that_never_held_it_keeps_its_count() {
        let _serial = crate::shm::heap_test_lock();
        let blob = Blob::new(b"another message's").unwrap();
        let (off, generation, seal) = blob.shared.identity();
        blob.shared.clone().send_away();
        // No process of the family has that pid.
        Blob::give_back_sent_by_dead(blob.key(), u32::MAX - 1);
        let taken = Shared::<BlobState>::take_sent(Heap::get(), off, generation, seal);
        assert!(taken.is_some(), "its count in flight is left");
    }
}
