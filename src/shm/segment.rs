//! The bytes of a named shared memory segment (`/dev/shm`), which processes outside the
//! family (other programs, Python) may write at any time.
//!
//! Safe access copies in and out with volatile accesses, so the compiler never assumes the
//! bytes hold what this process last wrote; a copy that races a writer sees some old and
//! some new bytes, which is still valid data for bytes. Borrowing the bytes as a slice is
//! `unsafe`: the caller promises nobody writes them meanwhile.

use std::io;

use crate::sys::SharedMapping;

/// A mapped segment of `len` bytes.
#[derive(Debug)]
pub(crate) struct Segment {
    map: SharedMapping,
    len: usize,
}

const WORD: usize = std::mem::size_of::<u64>();

impl Segment {
    /// Creates the named segment (which must not exist) with `len` bytes.
    pub(crate) fn create(name: &str, len: usize) -> io::Result<Self> {
        Ok(Segment { map: SharedMapping::create_named(name, len)?, len })
    }

    /// Opens the named segment, all of it.
    pub(crate) fn open(name: &str) -> io::Result<Self> {
        let map = SharedMapping::open_named(name)?;
        let len = map.len();
        Ok(Segment { map, len })
    }

    /// Removes a name from `/dev/shm`.
    pub(crate) fn unlink(name: &str) -> io::Result<()> {
        SharedMapping::unlink_named(name)
    }

    /// Its size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn check(&self, offset: usize, len: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "range {offset}..{} out of bounds for a segment of {} bytes",
            offset.saturating_add(len),
            self.len
        );
    }

    /// Copies `out.len()` bytes at `offset` into `out` (panics when out of bounds).
    pub(crate) fn read_at(&self, offset: usize, out: &mut [u8]) {
        self.check(offset, out.len());
        let base = self.map.as_ptr();
        let mut i = 0;
        // Bytes up to an 8-byte boundary of the segment, then whole words, then the rest.
        while i < out.len() && !(offset + i).is_multiple_of(WORD) {
            // SAFETY: in bounds (checked); the mapping lives as long as `self`; a byte is
            // valid whatever a racing writer leaves in it.
            out[i] = unsafe { base.add(offset + i).read_volatile() };
            i += 1;
        }
        while i + WORD <= out.len() {
            // SAFETY: in bounds and 8-byte aligned (the mapping is page-aligned and
            // offset + i is a multiple of 8); any bits are a valid u64.
            let word = unsafe { base.add(offset + i).cast::<u64>().read_volatile() };
            out[i..i + WORD].copy_from_slice(&word.to_ne_bytes());
            i += WORD;
        }
        while i < out.len() {
            // SAFETY: as for the first bytes.
            out[i] = unsafe { base.add(offset + i).read_volatile() };
            i += 1;
        }
    }

    /// Copies `data` to `offset` (panics when out of bounds).
    pub(crate) fn write_at(&self, offset: usize, data: &[u8]) {
        self.check(offset, data.len());
        let base = self.map.as_ptr();
        let mut i = 0;
        while i < data.len() && !(offset + i).is_multiple_of(WORD) {
            // SAFETY: in bounds; shared memory is written through raw pointers only.
            unsafe { base.add(offset + i).write_volatile(data[i]) };
            i += 1;
        }
        while i + WORD <= data.len() {
            let word = u64::from_ne_bytes(data[i..i + WORD].try_into().expect("a word"));
            // SAFETY: in bounds and 8-byte aligned, as in `read_at`.
            unsafe { base.add(offset + i).cast::<u64>().write_volatile(word) };
            i += WORD;
        }
        while i < data.len() {
            // SAFETY: as for the first bytes.
            unsafe { base.add(offset + i).write_volatile(data[i]) };
            i += 1;
        }
    }

    /// The bytes as a slice.
    ///
    /// # Safety
    ///
    /// No process may write the segment while the slice lives.
    pub(crate) unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes for as long as `self` lives; the
        // caller excludes writers.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.len) }
    }

    /// The bytes as a mutable slice.
    ///
    /// # Safety
    ///
    /// No other process or thread may read or write the segment while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: as above, and the caller has exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr(), self.len) }
    }

    /// The first byte.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }
}
