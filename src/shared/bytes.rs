//! [`SharedBytes`]: immutable bytes in the family's shared memory, whose handle crosses
//! processes instead of its contents.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::shm::{Blob, HeapFull};

/// Bytes written once into the family's shared memory, then read in place by every process
/// that gets the handle: sending one through a [`Queue`](crate::Queue), a
/// [`Pipe`](crate::Pipe) or as a [`Pool`](crate::Pool) task's argument or result sends a
/// few bytes, whatever its length. This is how big data is best passed: write it once with
/// [`SharedBytes::with_len`] (straight into shared memory) or [`SharedBytes::new`] (one
/// copy), and hand out handles. A `Vec<u8>` or a `serde_bytes::ByteBuf` is copied into each
/// message and out of it again.
///
/// The bytes never change after creation, so any number of processes may read them at
/// once (`Deref<Target = [u8]>`); the memory goes back when the family's last handle is
/// dropped.
///
/// # Examples
///
/// ```
/// fn sum(b: multiproc::SharedBytes) -> u64 {
///     b.iter().map(|&x| u64::from(x)).sum()
/// }
///
/// # fn main() -> Result<(), multiproc::Error> {
/// multiproc::init();
/// let data = multiproc::SharedBytes::with_len(1 << 20, |buf| buf.fill(1))?;
/// let pool = multiproc::Pool::new(2)?;
/// assert_eq!(pool.apply(sum, data.clone())?, 1 << 20);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct SharedBytes {
    blob: Blob,
}

impl SharedBytes {
    /// A copy of `bytes` in shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let b = multiproc::SharedBytes::new(b"hello")?;
    /// assert_eq!(&b[..], b"hello");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(bytes: &[u8]) -> Result<Self, Error> {
        // Every byte is written: the block may be one a large message left warm, its pages
        // already there (no zeroing, no fault).
        let (blob, ()) = Blob::fill_whole(bytes.len(), |buf| {
            buf.copy_from_slice(bytes);
            Ok::<(), HeapFull>(())
        })?;
        Ok(Self { blob })
    }

    /// `len` bytes written by `fill` straight into shared memory (they start zeroed).
    ///
    /// # Errors
    ///
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let b = multiproc::SharedBytes::with_len(4, |buf| buf.copy_from_slice(&[1, 2, 3, 4]))?;
    /// assert_eq!(b.len(), 4);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_len(len: usize, fill: impl FnOnce(&mut [u8])) -> Result<Self, Error> {
        let (blob, ()) = Blob::fill(len, |buf| {
            fill(buf);
            Ok::<(), HeapFull>(())
        })?;
        Ok(Self { blob })
    }
}

impl Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.blob.bytes()
    }
}

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBytes").field("len", &self.len()).finish()
    }
}
