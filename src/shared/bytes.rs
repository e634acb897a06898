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
/// To keep your data while a pool reads it (as rayon's `par_iter` borrows), map over
/// clones: `pool.map(f, data.iter().cloned())`. A clone is another handle to the same
/// bytes (no copy); the workers drop theirs and the bytes stay yours. Moved into the tasks
/// instead, the bytes are freed by the workers, which give the pages back to the kernel
/// once they are idle rather than before they answer.
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
///
/// // Many buffers, kept by the caller: the workers get handles, read in place.
/// let buffers: Vec<multiproc::SharedBytes> =
///     (1..=4u8).map(|i| multiproc::SharedBytes::with_len(1 << 20, |b| b.fill(i))).collect::<Result<_, _>>()?;
/// let sums = pool.map(sum, buffers.iter().cloned())?;
/// assert_eq!(sums, [1 << 20, 2 << 20, 3 << 20, 4 << 20]);
/// assert_eq!(buffers[3][0], 4, "still ours");
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
