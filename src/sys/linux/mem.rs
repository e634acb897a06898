//! Shared mappings of memory files: the family heap (an anonymous memfd) and named
//! POSIX shared memory (`/dev/shm`).

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{MemfdFlags, Mode, memfd_create};
use rustix::mm::{Advice, MapFlags, ProtFlags};
use rustix::shm;

/// Which file a descriptor is: its device and inode, which no other file has while it
/// exists (a name unlinked and made again names another).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

impl FileId {
    /// The file `fd` is.
    pub(crate) fn of(fd: BorrowedFd<'_>) -> io::Result<FileId> {
        Ok(Self::of_stat(&rustix::fs::fstat(fd)?))
    }

    /// The file `stat` describes.
    fn of_stat(stat: &rustix::fs::Stat) -> FileId {
        #[allow(clippy::unnecessary_cast)] // Their types differ between targets.
        FileId { dev: stat.st_dev as u64, ino: stat.st_ino as u64 }
    }
}

/// The error inside the `io::Error` of [`SharedMapping::open_named`] for an object of 0
/// bytes, which nothing can map (aud103 L4), with the file it is: the layer above tells it
/// from other refusals with [`EmptyFile::is`], and a handle in flight whether it is the
/// sender's segment, cut to 0 bytes, or another file ([`EmptyFile::of`]; review160 L3).
#[derive(Debug)]
pub(crate) struct EmptyFile(FileId);

impl EmptyFile {
    /// Whether `e` is this error.
    pub(crate) fn is(e: &io::Error) -> bool {
        Self::of(e).is_some()
    }

    /// The empty file, if `e` is this error.
    pub(crate) fn of(e: &io::Error) -> Option<FileId> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<EmptyFile>()).map(|empty| empty.0)
    }
}

impl std::fmt::Display for EmptyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the shared memory object has 0 bytes")
    }
}

impl std::error::Error for EmptyFile {}

/// A `MAP_SHARED` read-write mapping of a memory file, unmapped on drop.
///
/// Whatever the mapping holds is shared with every other process that maps the same file;
/// the types placed in it are the business of the `shm` layer.
#[derive(Debug)]
pub(crate) struct SharedMapping {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain memory shared between processes; every access to its
// contents goes through atomics or through types whose `ShmSafe` contract allows sharing.
unsafe impl Send for SharedMapping {}
// SAFETY: as above; `&SharedMapping` only hands out the base pointer.
unsafe impl Sync for SharedMapping {}

impl SharedMapping {
    /// Creates an anonymous memory file of `len` bytes and maps it. Pages are allocated on
    /// first touch; the kernel frees the file when the last process holding it is gone.
    pub(crate) fn anonymous(name: &str, len: usize) -> io::Result<Self> {
        let fd = memfd(name)?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        Self::map(fd, len)
    }

    /// Creates the named POSIX shared memory object `name` (a leading `/` is added), which
    /// must not exist yet, empty: the name is this process's from here (the create is
    /// exclusive), and [`SharedMapping::allocate`] gives the file its bytes.
    pub(crate) fn create_named(name: &str) -> io::Result<OwnedFd> {
        Ok(shm::open(
            bare_name(name),
            shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR | no_follow(),
            Mode::from_raw_mode(0o600),
        )?)
    }

    /// Gives the memory file `fd` (from [`SharedMapping::create_named`]) `len` bytes, all
    /// of them allocated, and maps it: a `/dev/shm` without room for them is `ENOSPC` here,
    /// not a SIGBUS at the first touch of a page the kernel cannot give.
    pub(crate) fn allocate(fd: OwnedFd, len: usize) -> io::Result<Self> {
        rustix::fs::ftruncate(&fd, len as u64)?;
        reserve(&fd, len)?;
        Self::map(fd, len)
    }

    /// Opens the existing named shared memory object `name` and maps all of it; with the
    /// file it is, from the same `fstat` as its size (review160 L2: a second one, later,
    /// could fail once the segment was made). An object of 0 bytes is [`EmptyFile`]: a
    /// creator between its `shm_open` and its `ftruncate` ([`SharedMapping::create_named`],
    /// then [`SharedMapping::allocate`]), or a program that made it empty.
    pub(crate) fn open_named(name: &str) -> io::Result<(Self, FileId)> {
        let fd = shm::open(bare_name(name), shm::OFlags::RDWR | no_follow(), Mode::empty())?;
        let stat = rustix::fs::fstat(&fd)?;
        let (len, file) = (stat.st_size as usize, FileId::of_stat(&stat));
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, EmptyFile(file)));
        }
        Ok((Self::map(fd, len)?, file))
    }

    /// Which file the name `name` of `/dev/shm` is now (`NotFound` if none). An `lstat`,
    /// never an open (see [`SharedMapping::unlink_named_if`]).
    pub(crate) fn named_file(name: &str) -> io::Result<FileId> {
        let path = format!("/dev/shm/{}", bare_name(name));
        let stat = rustix::fs::statat(rustix::fs::CWD, path.as_str(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(FileId::of_stat(&stat))
    }

    /// Another mapping of this one's file, at this one's length, through a duplicate of its
    /// descriptor: the same file whatever its name names now, or after an unlink. The file
    /// may be shorter than the mapping by now (another process truncated it): the bytes
    /// past its end are mapped still, and must not be touched but through the file
    /// ([`SharedMapping::read_file_at`]), as this one's.
    pub(crate) fn remap(&self) -> io::Result<Self> {
        Self::map(self.fd.try_clone()?, self.len)
    }

    /// Removes the name `name` from `/dev/shm`; mappings stay valid until unmapped.
    pub(crate) fn unlink_named(name: &str) -> io::Result<()> {
        Ok(shm::unlink(bare_name(name))?)
    }

    /// Removes the name `name` from `/dev/shm` if it is still the file `id`: `NotFound` if
    /// it names another since (unlinked and made again, maybe by another program), which
    /// stays. Between the look and the unlink, a few microseconds, the name can still
    /// change hands.
    ///
    /// The look is an `lstat` of the path, never an open: anyone can make a FIFO in
    /// `/dev/shm`, and a read open of one waits for a writer, for ever (review104 M1: the
    /// next program's `init()` hung). It needs no read permission either.
    pub(crate) fn unlink_named_if(name: &str, id: FileId) -> io::Result<()> {
        if Self::named_file(name)? != id {
            return Err(io::Error::new(io::ErrorKind::NotFound, "the name is another file's since"));
        }
        Self::unlink_named(name)
    }

    /// Maps `len` bytes of the memory file `fd`.
    pub(crate) fn map(fd: OwnedFd, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot map 0 bytes"));
        }
        // SAFETY: a fresh mapping chosen by the kernel (null hint, no MAP_FIXED) cannot
        // overlap memory Rust knows about; `fd` is a memory file (mapping past its end, if
        // another process cut it, is no fault: only touching those pages is, and nothing
        // touches them but through the file).
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::NORESERVE,
                &fd,
                0,
            )?
        };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, len, fd })
    }

    /// The first byte of the mapping.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The memory file behind the mapping, to pass to another process.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The memory file's current size, which another process may have changed since the
    /// mapping was made.
    pub(crate) fn file_len(&self) -> io::Result<usize> {
        Ok(rustix::fs::fstat(&self.fd)?.st_size as usize)
    }

    /// Copies the file's bytes at `offset` into `out` with `pread`: the kernel copies, so
    /// a file shrunk by another process gives a short count (returned), never a SIGBUS.
    pub(crate) fn read_file_at(&self, offset: usize, out: &mut [u8]) -> io::Result<usize> {
        read_at(self.fd.as_fd(), offset as u64, out)
    }

    /// Copies `data` into the file at `offset` with `pwrite` (see `read_file_at`); past the
    /// file's end this extends it.
    pub(crate) fn write_file_at(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        write_at(self.fd.as_fd(), offset as u64, data)
    }

    /// Gives the pages of `[offset, offset + len)` back to the kernel: they read as zero
    /// afterwards, in every process. Both bounds must be page-aligned and inside the mapping.
    pub(crate) fn release_pages(&self, offset: usize, len: usize) {
        debug_assert!(offset.is_multiple_of(page_size()) && len.is_multiple_of(page_size()));
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        if len == 0 {
            return;
        }
        // SAFETY: the range lies inside our own mapping (asserted above); MADV_REMOVE
        // punches a hole in the memory file, which only changes the bytes to zero.
        let _ =
            unsafe { rustix::mm::madvise(self.ptr.as_ptr().add(offset).cast::<c_void>(), len, Advice::LinuxRemove) };
    }
}

impl SharedMapping {
    /// Faults in the pages of `[offset, offset + len)` for writing, in one call rather than
    /// one fault per page (page-aligned, inside the mapping). Best effort: on kernels
    /// without `MADV_POPULATE_WRITE` (5.14) the pages fault in as they are touched.
    pub(crate) fn populate(&self, offset: usize, len: usize) {
        debug_assert!(offset.is_multiple_of(page_size()) && len.is_multiple_of(page_size()));
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        // SAFETY: the range lies inside our own mapping (asserted above); populating only
        // allocates the pages the memory file would allocate on first touch.
        let _ = unsafe {
            rustix::mm::madvise(self.ptr.as_ptr().add(offset).cast::<c_void>(), len, Advice::LinuxPopulateWrite)
        };
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping we created and nobody else unmaps; users of
        // the memory borrow `self`, so none outlives this drop.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A new anonymous memory file (`memfd_create`), sealed against ever being made executable
/// (`MFD_NOEXEC_SEAL`) where the kernel knows the seal (Linux 6.3 on; an older one refuses
/// the flag, `EINVAL`, and makes it without): under `vm.memfd_noexec=2`, kernels 6.3 to
/// 6.6 refuse a memory file made without the seal (`EACCES`), and later ones warn
/// (review76 L6: the resource tracker then ran without its journal). The flag allows
/// seals, so a last one forbids more, as a file made without it does: no process that
/// gets at the file (`/proc/<pid>/fd`) can seal the family's heap against growing.
fn memfd(name: &str) -> io::Result<OwnedFd> {
    match memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::NOEXEC_SEAL) {
        Err(rustix::io::Errno::INVAL) => Ok(memfd_create(name, MemfdFlags::CLOEXEC)?),
        made => {
            let fd = made?;
            rustix::fs::fcntl_add_seals(&fd, rustix::fs::SealFlags::SEAL)?;
            Ok(fd)
        }
    }
}

/// A memory file (anonymous, or a file of `/dev/shm`) used through system calls only
/// (`pread`, `pwrite`, `splice`), never mapped: a record that outlives the process writing
/// it as long as another holds the file, or it is named (the resource tracker's journal,
/// held by its keeper, named for the next family's start).
#[derive(Debug)]
pub(crate) struct MemFile(OwnedFd);

impl MemFile {
    /// An empty memory file, `name` being only what `/proc/<pid>/fd` shows.
    pub(crate) fn new(name: &str) -> io::Result<Self> {
        Ok(MemFile(memfd(name)?))
    }

    /// An empty memory file in the directory `dir` (a tmpfs: `/dev/shm`), nameless until
    /// [`MemFile::link_as`] names it (`O_TMPFILE`), read and written by this user only.
    pub(crate) fn unnamed_in(dir: &str) -> io::Result<Self> {
        let flags = rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC;
        Ok(MemFile(rustix::fs::open(dir, flags, Mode::RUSR | Mode::WUSR)?))
    }

    /// Names a file made by [`MemFile::unnamed_in`] `path` (in the same file system): it
    /// appears there whole, with its locks already taken (`linkat` through
    /// `/proc/self/fd`, which needs no privilege, unlike `AT_EMPTY_PATH`).
    pub(crate) fn link_as(&self, path: &str) -> io::Result<()> {
        let from = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&self.0));
        let cwd = rustix::fs::CWD;
        Ok(rustix::fs::linkat(cwd, from, cwd, path, rustix::fs::AtFlags::SYMLINK_FOLLOW)?)
    }

    /// The file named `path`, if it is this user's (a file another made, in a directory
    /// every user writes, is never taken up), a regular file of that one name:
    /// `PermissionDenied` if not. A symbolic link does not open; a second hard link (where
    /// `fs.protected_hardlinks` is off, another user's link to one of ours, a live
    /// segment maybe) is refused (review97 L6).
    pub(crate) fn open_own(path: &str) -> io::Result<Self> {
        let flags = rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOFOLLOW;
        let fd = rustix::fs::open(path, flags, Mode::empty())?;
        let stat = rustix::fs::fstat(&fd)?;
        let regular = rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile;
        if stat.st_uid != rustix::process::geteuid().as_raw() || !regular || stat.st_nlink != 1 {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
        Ok(MemFile(fd))
    }

    /// The memory file of `fd`, handed to this process.
    pub(crate) fn from_fd(fd: OwnedFd) -> Self {
        MemFile(fd)
    }

    /// Its descriptor, to hand to another process.
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    /// The same file through an open file description of its own (opened again through
    /// `/proc/self/fd`): a lock of either ([`MemFile::lock_shared`]) is not the other's.
    pub(crate) fn reopen(&self) -> io::Result<Self> {
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&self.0));
        let flags = rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC;
        Ok(MemFile(rustix::fs::open(path, flags, Mode::empty())?))
    }

    /// Takes a shared lock (`flock`) of its open file description: held for as long as
    /// a descriptor of that description is open, in any process (a fork's copy too).
    pub(crate) fn lock_shared(&self) -> io::Result<()> {
        Ok(rustix::fs::flock(&self.0, rustix::fs::FlockOperation::LockShared)?)
    }

    /// Whether no other open file description of the file holds a lock: an exclusive one
    /// taken, without waiting (false: another holds one).
    pub(crate) fn try_lock_exclusive(&self) -> io::Result<bool> {
        match rustix::fs::flock(&self.0, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Its size.
    pub(crate) fn len(&self) -> io::Result<u64> {
        Ok(rustix::fs::fstat(&self.0)?.st_size as u64)
    }

    /// Allocates the pages of its first `len` bytes without changing its size
    /// (`FALLOC_FL_KEEP_SIZE`): writes within them need no page the file system may not
    /// have any more (a full tmpfs: `ENOSPC`). A file system without `fallocate` reserves
    /// nothing.
    pub(crate) fn reserve(&self, len: u64) -> io::Result<()> {
        loop {
            match rustix::fs::fallocate(&self.0, rustix::fs::FallocateFlags::KEEP_SIZE, 0, len) {
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::OPNOTSUPP) => return Ok(()),
                other => return Ok(other?),
            }
        }
    }

    /// Cuts it (or extends it with zeros) to `len` bytes.
    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        Ok(rustix::fs::ftruncate(&self.0, len)?)
    }

    /// Reads its bytes at `offset` into `out`: how many there were (fewer past its end).
    pub(crate) fn read_at(&self, offset: u64, out: &mut [u8]) -> io::Result<usize> {
        read_at(self.0.as_fd(), offset, out)
    }

    /// Writes `data` at `offset`, extending it past its end.
    pub(crate) fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        write_at(self.0.as_fd(), offset, data)
    }

    /// Moves at most `max` bytes from the pipe `pipe` into the file at `offset`, without
    /// waiting (`WouldBlock`: the pipe is empty; 0: empty with no writer left). The kernel
    /// takes from the pipe only the bytes it wrote to the file, so a process killed at any
    /// moment loses none: each is in the file or still in the pipe.
    pub(crate) fn splice_from(&self, pipe: BorrowedFd<'_>, offset: u64, max: usize) -> io::Result<usize> {
        let mut offset = offset;
        loop {
            match rustix::pipe::splice(pipe, None, &self.0, Some(&mut offset), max, rustix::pipe::SpliceFlags::NONBLOCK)
            {
                Err(rustix::io::Errno::INTR) => {}
                result => return Ok(result?),
            }
        }
    }
}

/// `pread` until `out` is full or the file ends: how many bytes were read.
fn read_at(fd: BorrowedFd<'_>, offset: u64, out: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < out.len() {
        match rustix::io::pread(fd, &mut out[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// `pwrite` of all of `data` at `offset`.
fn write_at(fd: BorrowedFd<'_>, offset: u64, data: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        match rustix::io::pwrite(fd, &data[done..], offset + done as u64) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `O_NOFOLLOW` for [`shm::open`], as glibc's `shm_open` adds it (rustix's own system
/// call does not): `/dev/shm` is writable by every user, and a name there that is a
/// symbolic link must not open, for writing, the file it points to.
fn no_follow() -> shm::OFlags {
    shm::OFlags::from_bits_retain(rustix::fs::OFlags::NOFOLLOW.bits())
}

/// Allocates the pages of the first `len` bytes of the memory file `fd` (a tmpfs file:
/// `/dev/shm` may be a small mount, e.g. 64 MiB in a container). A file system without
/// `fallocate` keeps its pages sparse.
fn reserve(fd: &OwnedFd, len: usize) -> rustix::io::Result<()> {
    loop {
        match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), 0, len as u64) {
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::OPNOTSUPP) => return Ok(()),
            other => return other,
        }
    }
}

/// `len` bytes of private zeroed memory, mapped for the rest of the process's life. Its
/// pages are given on first touch, so a large buffer that is rarely filled costs nothing
/// until it is (`calloc` zeroes, and so dirties, every page of a block it reuses).
pub(crate) fn lasting_zeroed(len: usize) -> io::Result<&'static mut [u8]> {
    // SAFETY: a new private anonymous mapping of `len` readable and writable bytes, never
    // unmapped; nothing else refers to it, so the one `&mut` to it is unique for `'static`.
    unsafe {
        let at = rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )?;
        Ok(std::slice::from_raw_parts_mut(at.cast::<u8>(), len))
    }
}

/// `name` without its leading slashes, as glibc's `shm_open` uses it: rustix measures the
/// name it is given, leading slashes included, against `NAME_MAX` (255), and keeps them
/// in the path it opens (`/dev/shm//x`, which the kernel folds), so a 255-byte name with
/// its `/` was `ENAMETOOLONG` (aud103 L1; glibc's `shm_open`, and Python with it, takes
/// it). The shared layer's `valid_name` strips them already; this keeps the sys layer
/// right for any caller.
fn bare_name(name: &str) -> &str {
    name.trim_start_matches('/')
}

/// The size of a memory page.
pub(crate) fn page_size() -> usize {
    rustix::param::page_size()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this kernel makes a memory file sealed against being made executable (6.3 on).
    fn kernel_seals_exec() -> bool {
        memfd_create("multiproc-test", MemfdFlags::CLOEXEC | MemfdFlags::NOEXEC_SEAL).is_ok()
    }

    /// review76 L6: the memory files were made without `MFD_NOEXEC_SEAL`, which kernels 6.3
    /// to 6.6 refuse under `vm.memfd_noexec=2` (the tracker then ran without its journal).
    #[test]
    fn memory_files_are_sealed_against_exec_where_the_kernel_knows_how() {
        if !kernel_seals_exec() {
            return;
        }
        // Sealed against exec, and against any further seal (as without the flag).
        let sealed = |fd: BorrowedFd<'_>| {
            rustix::fs::fcntl_get_seals(fd).unwrap() == rustix::fs::SealFlags::EXEC | rustix::fs::SealFlags::SEAL
        };
        let file = MemFile::new("multiproc-test").unwrap();
        assert!(sealed(file.0.as_fd()), "the journal's file");
        let heap = SharedMapping::anonymous("multiproc-test", page_size()).unwrap();
        assert!(sealed(heap.fd.as_fd()), "the heap's file");
    }

    /// review104 M1: a FIFO at a registered name (anyone can make one in `/dev/shm`) blocked
    /// the check's read open for ever, in the tracker's clean-up or a start's take-up. Now
    /// another file's name stays, the file registered goes, and neither waits.
    #[test]
    fn a_fifo_at_a_registered_name_is_compared_without_waiting() {
        let _w = crate::testing::watchdog(std::time::Duration::from_secs(60));
        let name = format!("mp-test-fifo-{}", std::process::id());
        let path = format!("/dev/shm/{name}");
        /// Removes the FIFO whatever the test's outcome (review105 L5: a failure left it).
        struct Removed<'a>(&'a str);
        impl Drop for Removed<'_> {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(self.0);
            }
        }
        rustix::fs::mknodat(rustix::fs::CWD, path.as_str(), rustix::fs::FileType::Fifo, Mode::RUSR | Mode::WUSR, 0)
            .unwrap();
        let _removed = Removed(&path);
        let stat = rustix::fs::statat(rustix::fs::CWD, path.as_str(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
        let fifo = FileId::of_stat(&stat);
        let other = FileId { ino: fifo.ino + 1, ..fifo };
        let kept = SharedMapping::unlink_named_if(&name, other).unwrap_err();
        assert_eq!(kept.kind(), io::ErrorKind::NotFound);
        assert!(std::path::Path::new(&path).exists());
        SharedMapping::unlink_named_if(&name, fifo).unwrap();
        assert!(!std::path::Path::new(&path).exists());
    }
}
