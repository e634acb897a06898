//! The bytes of a named shared memory segment (`/dev/shm`), which processes outside the
//! family (other programs, Python) may write at any time.
//!
//! Safe access copies in and out with `pread`/`pwrite` on the segment's file, not through
//! the mapping: the kernel does the copy, so a copy that races a writer (which sees some
//! old and some new bytes, valid data for bytes) is no data race in this process, and a
//! segment that another process truncated gives [`Truncated`], never a SIGBUS. Borrowing
//! the bytes as a slice is `unsafe`: the caller promises nobody writes them meanwhile and
//! nobody truncates the segment.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys::{FileId, SharedMapping};

/// A mapped segment of `len` bytes.
#[derive(Debug)]
pub(crate) struct Segment {
    map: SharedMapping,
    len: usize,
    /// The file it is, taken at its making or opening, before anything is left to clean up
    /// (review160 L2: taken once the segment was allocated, its failure left the segment in
    /// `/dev/shm`).
    file: FileId,
}

/// A segment just created ([`Segment::create`]), its file still empty. Dropped before it
/// was [`allocate`](NewSegment::allocate)d, or when that fails, it unlinks its name if
/// the name still is its file ([`NewSegment::discard`]): a segment half made is nobody's,
/// and a name unlinked and made again meanwhile (by another program) is that program's.
#[derive(Debug)]
pub(crate) struct NewSegment {
    name: String,
    fd: Option<OwnedFd>,
    /// The file made, for the clean-up's [`Segment::unlink_if`] (`None` while no `fstat` of
    /// it succeeded, the create's nor [`NewSegment::id`]'s: then the name is unlinked
    /// whatever it names, as before review126).
    file: Option<FileId>,
    /// Allocated, or discarded: nothing left to clean up.
    done: bool,
}

impl NewSegment {
    /// The file it is, for a later unlink to check that its name still is
    /// ([`Segment::unlink_if`]). Learnt here (the create's own `fstat` failed), it is kept,
    /// so that the clean-up goes by file from then on (review165 L2: it was not, and a
    /// failed allocation unlinked the name whatever it named).
    pub(crate) fn id(&mut self) -> io::Result<FileId> {
        match self.file {
            Some(file) => Ok(file),
            None => {
                let file = file_of(self.fd.as_ref().expect("a new segment not allocated yet").as_fd())?;
                self.file = Some(file);
                Ok(file)
            }
        }
    }

    /// The file it is, if known ([`NewSegment::id`]).
    pub(crate) fn file(&self) -> Option<FileId> {
        self.file
    }

    /// Gives the segment `len` bytes, all of them allocated (seconds for a large one), and
    /// maps it. On an error the segment is still to be [`discard`](NewSegment::discard)ed
    /// (or dropped): the file it is, too, is taken first.
    pub(crate) fn allocate(&mut self, len: usize) -> io::Result<Segment> {
        let file = self.id()?;
        let fd = self.fd.take().expect("a new segment is allocated once");
        if crate::shm::crash::fail_point!("shm.segment.allocate") {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let map = SharedMapping::allocate(fd, len)?;
        self.done = true;
        Ok(Segment { map, len, file })
    }

    /// Unlinks the name of a segment not allocated, if it still is this file (review126,
    /// beside M1: by name, it removed a segment another program made again under the name
    /// while this one was being allocated). Whether it did: the caller forgets the name at
    /// the tracker only then. Once only; the drop does it if the owner did not.
    pub(crate) fn discard(&mut self) -> bool {
        if std::mem::replace(&mut self.done, true) {
            return false;
        }
        Segment::unlink_if(&self.name, self.file).is_ok()
    }
}

impl Drop for NewSegment {
    fn drop(&mut self) {
        self.discard();
    }
}

/// The file a new segment's `fd` is (its `fstat`); the fail point `shm.segment.file` fails
/// it (`ENOMEM`).
fn file_of(fd: BorrowedFd<'_>) -> io::Result<FileId> {
    if crate::shm::crash::fail_point!("shm.segment.file") {
        return Err(io::Error::from_raw_os_error(libc::ENOMEM));
    }
    FileId::of(fd)
}

/// The segment's file is now shorter than the access needs (another process truncated it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncated {
    /// The file's size now.
    pub(crate) size: usize,
}

/// Why a copy in or out of a segment failed.
#[derive(Debug)]
pub(crate) enum AccessError {
    /// Another process truncated the file short of the range.
    Truncated(Truncated),
    /// The kernel refused the copy for another reason, its error as it gave it: `ENOSPC`
    /// (a sparse segment's page that the full tmpfs cannot give), `EFBIG` (past
    /// `RLIMIT_FSIZE`), `EIO`... (`EINTR` is retried.)
    Io(io::Error),
}

impl Segment {
    /// Creates the named segment, which must not exist, still empty: its name is this
    /// process's from here, and [`NewSegment::allocate`] gives it its bytes.
    pub(crate) fn create(name: &str) -> io::Result<NewSegment> {
        let fd = SharedMapping::create_named(name)?;
        let file = file_of(fd.as_fd()).ok();
        Ok(NewSegment { name: name.to_owned(), fd: Some(fd), file, done: false })
    }

    /// Opens the named segment, all of it. A file of 0 bytes is an error that says which
    /// file it is ([`crate::sys::EmptyFile`]).
    pub(crate) fn open(name: &str) -> io::Result<Self> {
        let (map, file) = SharedMapping::open_named(name)?;
        let len = map.len();
        Ok(Segment { map, len, file })
    }

    /// Another mapping of this segment's file, at its length: the same file, whatever its
    /// name names now (review160 L3: opened by name, a segment cut shorter was mapped
    /// short, and a name made again empty said `Empty`).
    pub(crate) fn try_clone(&self) -> io::Result<Self> {
        Ok(Segment { map: self.map.remap()?, len: self.len, file: self.file })
    }

    /// Removes a name from `/dev/shm` if it is still the file `id` (if known: else
    /// whatever it names), not one made again since ([`SharedMapping::unlink_named_if`]).
    pub(crate) fn unlink_if(name: &str, id: Option<FileId>) -> io::Result<()> {
        match id {
            Some(id) => SharedMapping::unlink_named_if(name, id),
            None => SharedMapping::unlink_named(name),
        }
    }

    /// The file it is (whatever its name names now), for a later unlink to check that
    /// its name still is this file ([`Segment::unlink_if`]).
    pub(crate) fn file(&self) -> FileId {
        self.file
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

    /// Copies `out.len()` bytes at `offset` into `out` (panics when out of the mapping's
    /// bounds; [`AccessError::Truncated`] when the file no longer holds them, the kernel's
    /// error when it refuses the read).
    pub(crate) fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<(), AccessError> {
        self.check(offset, out.len());
        match self.map.read_file_at(offset, out) {
            Ok(n) if n == out.len() => Ok(()),
            Ok(_) => Err(AccessError::Truncated(self.truncated())),
            Err(e) => Err(AccessError::Io(e)),
        }
    }

    /// Copies `data` to `offset` (panics when out of the mapping's bounds;
    /// [`AccessError::Truncated`] when the file no longer reaches that far, and then writes
    /// nothing; the kernel's error when it refuses the write, which may then have written a
    /// part). A truncation that races the write is undone up to the end of the write
    /// (`pwrite` extends the file with zeros), never a SIGBUS.
    pub(crate) fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), AccessError> {
        self.check(offset, data.len());
        let truncated = self.truncated();
        if truncated.size < offset + data.len() {
            return Err(AccessError::Truncated(truncated));
        }
        self.map.write_file_at(offset, data).map_err(AccessError::Io)
    }

    fn truncated(&self) -> Truncated {
        Truncated { size: self.map.file_len().unwrap_or(0) }
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
