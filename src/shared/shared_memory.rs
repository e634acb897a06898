//! `SharedMemory`: a named block of shared memory in `/dev/shm`, for any process that
//! knows its name, in the family or not (Python's `multiprocessing.shared_memory`).

use std::fmt;
use std::io;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::process::tracker;
use crate::shm::{AccessError, Segment};
use crate::sys;
use crate::sys::FileId;

/// Why a [`SharedMemory`] could not be created, opened or accessed.
///
/// # Examples
///
/// ```
/// use multiproc::{SharedMemory, SharedMemoryError};
///
/// match SharedMemory::open("mp-nobody-made-this") {
///     Err(SharedMemoryError::NotFound(name)) => println!("no segment {name}"),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedMemoryError {
    /// No segment has this name.
    #[error("no shared memory segment named '{0}'")]
    NotFound(String),
    /// A segment with this name exists already.
    #[error("a shared memory segment named '{0}' exists already")]
    AlreadyExists(String),
    /// The segment exists but has 0 bytes: its creator has made the name and not yet given
    /// it its size (a create is `shm_open`, then `ftruncate`, in this crate as in Python),
    /// or another program made it empty. Like [`NotFound`](SharedMemoryError::NotFound),
    /// it may pass: a process waiting for a segment another one creates retries on both.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{SharedMemory, SharedMemoryError};
    ///
    /// let name = format!("mp-doc-empty-{}", std::process::id());
    /// std::fs::File::create(format!("/dev/shm/{name}"))?; // a name with no size yet
    /// let opened = SharedMemory::open(&name);
    /// std::fs::remove_file(format!("/dev/shm/{name}"))?;
    /// assert!(matches!(opened, Err(SharedMemoryError::Empty(n)) if n == name));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[error("the shared memory segment '{0}' has 0 bytes: it has not been given its size yet")]
    Empty(String),
    /// The segment does not have the size that was asked for.
    #[error("the shared memory segment '{name}' has {actual} bytes, not the {expected} asked for")]
    SizeMismatch {
        /// The segment's name.
        name: String,
        /// The size asked for.
        expected: usize,
        /// The segment's size.
        actual: usize,
    },
    /// The name cannot name a segment.
    #[error("'{name}' cannot name a shared memory segment: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A size of 0 (Python's `ValueError: 'size' must be a positive number`).
    #[error("a shared memory segment needs a size above 0")]
    ZeroSize,
    /// The family's resource tracker could not be told (it is gone: `BrokenPipe`, or it has
    /// read nothing for seconds, stopped: `TimedOut`). From a create: the segment could not
    /// be registered (an untracked segment whose name `SharedMemory` picks, `track(false)`
    /// without `name`, needs no tracker, and you manage its life yourself), or, for an
    /// untracked one with a name you chose, the tracker could not be told to forget a
    /// registration of that name it may still hold (from an earlier segment's, whose
    /// forgetting has not reached it), so the segment is not made. From
    /// [`SharedMemory::untrack`]: the tracker still tracks the segment.
    // Says what happened for each source: a registration or a forgetting that the tracker
    // did not take (review67 T-L3: "cannot track" was the opposite for the last one).
    #[error("the resource tracker was not told: {0}")]
    Tracker(io::Error),
    /// The segment is shorter than the access needs: another process truncated it since
    /// it was mapped here.
    #[error("the shared memory segment '{name}' was truncated to {size} bytes; {needed} are needed")]
    Truncated {
        /// The segment's name.
        name: String,
        /// The segment's size now.
        size: usize,
        /// The end of the range that was accessed.
        needed: usize,
    },
    /// The operating system refused.
    #[error(transparent)]
    Io(io::Error),
}

impl SharedMemoryError {
    fn from_io(e: io::Error, name: &str) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound => SharedMemoryError::NotFound(name.to_string()),
            io::ErrorKind::AlreadyExists => SharedMemoryError::AlreadyExists(name.to_string()),
            _ if sys::EmptyFile::is(&e) => SharedMemoryError::Empty(name.to_string()),
            _ => SharedMemoryError::Io(e),
        }
    }
}

/// The options of a [`SharedMemory`], named after Python's parameters; finish with
/// [`create`](SharedMemoryBuilder::create) or [`open`](SharedMemoryBuilder::open).
///
/// # Examples
///
/// ```
/// use multiproc::SharedMemory;
///
/// let shm = SharedMemory::builder().size(4096).track(false).create()?;
/// assert_eq!(shm.size(), 4096);
/// shm.unlink()?;
/// # Ok::<(), multiproc::SharedMemoryError>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until create() or open()"]
pub struct SharedMemoryBuilder {
    name: Option<String>,
    size: Option<usize>,
    track: Option<bool>,
    /// `name` is one of [`fresh_name`]'s (see [`create_segment`]).
    fresh: bool,
}

impl SharedMemoryBuilder {
    /// The segment's name (default for `create`: a fresh `mp-…` name). Leading slashes are
    /// optional, as in Python (`"/x"` and `"//x"` name `x`), and
    /// [`SharedMemory::name`] gives the name without them.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedMemory;
    ///
    /// let name = format!("mp-doc-{}", std::process::id());
    /// let shm = SharedMemory::builder().name(&name).size(16).create()?;
    /// assert_eq!(shm.name(), name);
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The segment's name, one of [`fresh_name`]'s, which nobody else uses: it is tracked
    /// from before the segment is made, as a name `create` picks is.
    pub(crate) fn fresh(mut self, name: String) -> Self {
        self.name = Some(name);
        self.fresh = true;
        self
    }

    /// The size in bytes: required for `create`; for `open`, the size the segment must
    /// have.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{SharedMemory, SharedMemoryError};
    ///
    /// let shm = SharedMemory::create(16)?;
    /// let wrong = SharedMemory::builder().name(shm.name()).size(32).open();
    /// assert!(matches!(wrong, Err(SharedMemoryError::SizeMismatch { expected: 32, actual: 16, .. })));
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn size(mut self, size: usize) -> Self {
        self.size = Some(size);
        self
    }

    /// Whether the family's resource tracker unlinks the segment once every process of
    /// the family is gone (default `true`, as in Python). Use `false` for a segment meant
    /// to outlive the family; then somebody must [`unlink`](SharedMemory::unlink) it.
    /// With a [`name`](Self::name) you chose, the create still tells the tracker to forget
    /// that name (a registration of an earlier segment of it may linger), and fails
    /// [`SharedMemoryError::Tracker`] if the tracker does not take that line (stopped).
    ///
    /// # Examples
    ///
    /// ```
    /// let kept = multiproc::SharedMemory::builder().size(16).track(false).create()?;
    /// // ... hand its name to a program that outlives this one; it unlinks the segment.
    /// kept.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn track(mut self, track: bool) -> Self {
        self.track = Some(track);
        self
    }

    /// Creates the segment, zero-filled, with all its pages allocated: a `/dev/shm` too
    /// small for it (a container's is often 64 MiB) is an error here, never a SIGBUS at
    /// the first touch of a page (CPython's segments are sparse: a full `/dev/shm` is a
    /// bus error there).
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::AlreadyExists`], [`SharedMemoryError::ZeroSize`] (also when
    /// no size was given), [`SharedMemoryError::InvalidName`],
    /// [`SharedMemoryError::Tracker`], or what the OS said ([`SharedMemoryError::Io`]
    /// with `ENOSPC` when `/dev/shm` has no room for `size` bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::builder().size(100).create()?;
    /// assert_eq!(shm.to_vec(), vec![0; 100]);
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn create(self) -> Result<SharedMemory, SharedMemoryError> {
        let size = self.size.unwrap_or(0);
        if size == 0 {
            return Err(SharedMemoryError::ZeroSize);
        }
        let track = self.track.unwrap_or(true);
        let Some(name) = self.name else {
            loop {
                match create_segment(fresh_name(), size, track, true) {
                    Err(SharedMemoryError::AlreadyExists(_)) => continue,
                    made => return made,
                }
            }
        };
        let name = valid_name(&name)?;
        create_segment(name, size, track, self.fresh)
    }

    /// Opens an existing segment (all of it).
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::NotFound`], [`SharedMemoryError::Empty`] while its creator has
    /// not yet given it its size, [`SharedMemoryError::SizeMismatch`] when a size was
    /// given and the segment has another, [`SharedMemoryError::InvalidName`], or what the
    /// OS said.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedMemory;
    ///
    /// let made = SharedMemory::create(10)?;
    /// let opened = SharedMemory::builder().name(made.name()).size(10).open()?;
    /// made.write_at(0, b"x");
    /// assert_eq!(opened.to_vec()[0], b'x');
    /// made.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn open(self) -> Result<SharedMemory, SharedMemoryError> {
        let Some(name) = self.name else {
            return Err(SharedMemoryError::InvalidName { name: String::new(), reason: "open needs a name" });
        };
        let name = valid_name(&name)?;
        let segment = Segment::open(&name).map_err(|e| SharedMemoryError::from_io(e, &name))?;
        if let Some(expected) = self.size
            && expected != segment.len()
        {
            return Err(SharedMemoryError::SizeMismatch { name, expected, actual: segment.len() });
        }
        Ok(SharedMemory::made(name, segment))
    }
}

/// Creates the segment `name` (one of [`fresh_name`]'s if `fresh`), registered with the
/// tracker (if `track`) from the first moment it may be unlinked as ours, and always before
/// its pages are allocated (seconds for a large segment): a process killed at any step
/// leaves the tracker at most a name to unlink, never a segment it does not know
/// (review61 M3: a name the caller chose was registered once allocated).
fn create_segment(name: String, size: usize, track: bool, fresh: bool) -> Result<SharedMemory, SharedMemoryError> {
    if track && fresh {
        // Nobody else's: registered before it is made, by name alone (nobody makes it again).
        tracker::register(&name, None).map_err(SharedMemoryError::Tracker)?;
    }
    let mut new = match Segment::create(&name) {
        Ok(new) => new,
        Err(e) => {
            if track && fresh {
                let _ = tracker::unregister(&name, None);
            }
            return Err(SharedMemoryError::from_io(e, &name));
        }
    };
    if !fresh {
        // Ours from here (the create was exclusive); a refusal drops `new`, which unlinks it.
        if track {
            // With the file it is: unlinked and made again since (by another program),
            // the name is not unlinked with this family (review97 M1).
            let id = new.id().map_err(|e| SharedMemoryError::from_io(e, &name))?;
            tracker::register(&name, Some(id)).map_err(SharedMemoryError::Tracker)?;
        } else {
            tracker::disown(&name).map_err(SharedMemoryError::Tracker)?;
        }
    }
    crate::shm::crash::crash_point!("shared_memory.create.opened");
    match new.allocate(size) {
        Ok(segment) => {
            crate::shm::crash::crash_point!("shared_memory.create.made");
            Ok(SharedMemory::made(name, segment))
        }
        Err(e) => {
            // Unlinked if the name still is our file, and then forgotten: a name made again
            // meanwhile (by another program) is theirs, and so is its registration
            // (review126). A forgetting the tracker does not take waits in this process's
            // backlog.
            if new.discard() && track {
                let _ = tracker::unregister(&name, new.file());
            }
            Err(SharedMemoryError::from_io(e, &name))
        }
    }
}

pub(crate) fn fresh_name() -> String {
    let suffix: String = sys::random_bytes::<8>().iter().map(|b| format!("{b:02x}")).collect();
    format!("mp-{suffix}")
}

/// `name` without its leading slashes, all optional as with glibc's `shm_open` (Python's
/// `"//x"` is `/dev/shm/x`; review137 L3: only one was stripped, and `//x` refused as
/// containing '/'), if it can name a segment.
fn valid_name(name: &str) -> Result<String, SharedMemoryError> {
    let bare = name.trim_start_matches('/');
    let reason = if bare.is_empty() {
        Some("it is empty")
    } else if bare.len() > tracker::MAX_NAME {
        Some("it is longer than 255 bytes")
    } else if bare.contains('/') {
        Some("it contains '/'")
    } else if bare.contains('\0') || bare.contains('\n') {
        Some("it contains a NUL or newline character")
    } else if bare == "." || bare == ".." {
        Some("it names a directory")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SharedMemoryError::InvalidName { name: name.to_string(), reason }),
        None => Ok(bare.to_string()),
    }
}

/// A named block of shared memory (`/dev/shm/<name>`, Python's
/// `multiprocessing.shared_memory.SharedMemory`), for processes that share a name rather
/// than a family: another program, or Python, opens it by name.
///
/// The bytes are copied in and out with [`read_at`](SharedMemory::read_at) and
/// [`write_at`](SharedMemory::write_at), which are safe whatever other processes do at the
/// same time; borrowing them as a slice ([`as_slice`](SharedMemory::as_slice),
/// [`as_mut_slice`](SharedMemory::as_mut_slice)) is `unsafe`, since nothing stops another
/// process from writing meanwhile.
///
/// The segment exists until somebody calls [`unlink`](SharedMemory::unlink). One created
/// with tracking (the default) is also unlinked by the family's resource tracker once every
/// process of the creating family is gone, even after a crash or `kill -9` of all of them,
/// so nothing is left in `/dev/shm`. Dropping or [`close`](SharedMemory::close)-ing a
/// handle only unmaps it.
///
/// A `SharedMemory` sent to another process (a process argument, a queue) travels as its
/// name and is opened again on arrival, whole, as in Python; unlike Python, the receiver
/// checks that the name still names the sender's segment (its device and inode) and that
/// it is not shorter than the sender's handle, so a segment unlinked and made again under
/// its name meanwhile, or cut shorter, fails to decode rather than be taken for it.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Process, SharedMemory};
///
/// fn greet(shm: SharedMemory) {
///     shm.write_at(0, b"hello");
/// }
///
/// multiproc::init();
/// let shm = SharedMemory::create(64)?;
/// Process::new(greet, shm.clone_handle()?).start()?.join()?;
/// let mut word = [0u8; 5];
/// shm.read_at(0, &mut word);
/// assert_eq!(&word, b"hello");
/// shm.unlink()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.shared_memory.SharedMemory")]
pub struct SharedMemory {
    name: String,
    /// With the file it is ([`Segment::file`]), taken when it was made or opened:
    /// `unlink`, `untrack` and a handle in flight go by it, not by the name, which another
    /// program may have made again since (aud103 L2, L3; review154 L3: no `fstat` at their
    /// time; review160 M2), and `clone_handle` maps that file.
    pub(crate) segment: Segment,
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory").field("name", &self.name).field("size", &self.size()).finish()
    }
}

impl SharedMemory {
    /// The options, for a named segment or one without tracking.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::builder().size(64).create()?;
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn builder() -> SharedMemoryBuilder {
        SharedMemoryBuilder::default()
    }

    /// Creates a zero-filled segment of `size` bytes with a fresh `mp-…` name, tracked.
    ///
    /// # Errors
    ///
    /// As [`SharedMemoryBuilder::create`].
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(100)?;
    /// assert!(shm.name().starts_with("mp-"));
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn create(size: usize) -> Result<Self, SharedMemoryError> {
        Self::builder().size(size).create()
    }

    /// Opens the segment `name`.
    ///
    /// # Errors
    ///
    /// As [`SharedMemoryBuilder::open`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{SharedMemory, SharedMemoryError};
    ///
    /// let missing = SharedMemory::open("mp-no-such-segment");
    /// assert!(matches!(missing, Err(SharedMemoryError::NotFound(_))));
    /// ```
    pub fn open(name: &str) -> Result<Self, SharedMemoryError> {
        Self::builder().name(name).open()
    }

    /// Another handle to the same segment: a new mapping of its file, at this handle's
    /// size, whatever its name names now. Like this handle, it works after the segment was
    /// unlinked, and says [`Truncated`](SharedMemoryError::Truncated) past the end of a
    /// segment another process cut shorter.
    ///
    /// # Errors
    ///
    /// What the OS said ([`SharedMemoryError::Io`]: `EMFILE` with no descriptor left).
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(4)?;
    /// let other = shm.clone_handle()?;
    /// other.write_at(0, &[1]);
    /// assert_eq!(shm.to_vec()[0], 1);
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn clone_handle(&self) -> Result<Self, SharedMemoryError> {
        // Through the file, not the name, which may be another program's segment since
        // (review154), or this one's cut shorter (review160 L3: mapped short).
        let segment = self.segment.try_clone().map_err(SharedMemoryError::Io)?;
        Ok(SharedMemory { name: self.name.clone(), segment })
    }

    /// A handle of `segment`, just made or opened as `name`.
    fn made(name: String, segment: Segment) -> SharedMemory {
        SharedMemory { name, segment }
    }

    /// The segment's name, without leading slashes (Python's `name` keeps the ones it was given).
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(4)?;
    /// assert!(shm.name().starts_with("mp-"));
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its size in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(4096)?;
    /// assert_eq!(shm.size(), 4096);
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn size(&self) -> usize {
        self.segment.len()
    }

    /// Copies `out.len()` bytes at `offset` into `out` (Python's `buf[offset:...]`).
    ///
    /// The copy is made by the kernel from the segment's file, so a segment that another
    /// process truncated is a panic here (an error from
    /// [`try_read_at`](SharedMemory::try_read_at)), never a SIGBUS.
    ///
    /// # Panics
    ///
    /// When the range is out of bounds, the segment was truncated short of it, or the
    /// kernel refused the read (see [`try_read_at`](SharedMemory::try_read_at)).
    #[doc(alias = "buf")]
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(8)?;
    /// shm.write_at(4, b"abcd");
    /// let mut out = [0u8; 2];
    /// shm.read_at(5, &mut out);
    /// assert_eq!(&out, b"bc");
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn read_at(&self, offset: usize, out: &mut [u8]) {
        if let Err(e) = self.try_read_at(offset, out) {
            panic!("{e}");
        }
    }

    /// Copies `out.len()` bytes at `offset` into `out`, or says why it cannot: another
    /// process truncated the segment short of them, or the kernel refused the read.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::Truncated`] when the segment no longer holds the range;
    /// [`SharedMemoryError::Io`] with the kernel's error when it refuses the read.
    ///
    /// # Panics
    ///
    /// When the range is out of bounds of the segment's size when it was mapped.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(8)?;
    /// let mut out = [9u8; 2];
    /// shm.try_read_at(6, &mut out)?;
    /// assert_eq!(out, [0, 0]);
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn try_read_at(&self, offset: usize, out: &mut [u8]) -> Result<(), SharedMemoryError> {
        self.segment.read_at(offset, out).map_err(|e| self.access_error(e, offset + out.len()))
    }

    /// Copies `data` to `offset`.
    ///
    /// As [`read_at`](SharedMemory::read_at), a segment truncated by another process is a
    /// panic here, never a SIGBUS.
    ///
    /// # Panics
    ///
    /// When the range is out of bounds, the segment was truncated short of it, or the
    /// kernel refused the write (see [`try_write_at`](SharedMemory::try_write_at)).
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(8)?;
    /// shm.write_at(2, &[7, 7]);
    /// assert_eq!(shm.to_vec(), [0, 0, 7, 7, 0, 0, 0, 0]);
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    #[doc(alias = "buf")]
    pub fn write_at(&self, offset: usize, data: &[u8]) {
        if let Err(e) = self.try_write_at(offset, data) {
            panic!("{e}");
        }
    }

    /// Copies `data` to `offset`, or says that another process truncated the segment short
    /// of the range (and writes nothing), or why the kernel refused the write.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::Truncated`] when the segment no longer holds the range.
    /// [`SharedMemoryError::Io`] with the kernel's error when it refuses the write (which
    /// may then have written a part): `ENOSPC` when a page of a sparse segment (as Python
    /// and C programs make them; ours have all their pages from the start) cannot be had
    /// in a full `/dev/shm`, `EFBIG` past the process's `RLIMIT_FSIZE` (ignore `SIGXFSZ`
    /// to see it rather than die of it), `EIO`. An interrupted write goes on.
    ///
    /// # Panics
    ///
    /// When the range is out of bounds of the segment's size when it was mapped.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(4)?;
    /// shm.try_write_at(1, b"hi")?;
    /// assert_eq!(shm.to_vec(), [0, b'h', b'i', 0]);
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn try_write_at(&self, offset: usize, data: &[u8]) -> Result<(), SharedMemoryError> {
        self.segment.write_at(offset, data).map_err(|e| self.access_error(e, offset + data.len()))
    }

    fn access_error(&self, e: AccessError, needed: usize) -> SharedMemoryError {
        match e {
            AccessError::Truncated(t) => SharedMemoryError::Truncated { name: self.name.clone(), size: t.size, needed },
            AccessError::Io(e) => SharedMemoryError::Io(e),
        }
    }

    /// A copy of all the bytes.
    ///
    /// # Panics
    ///
    /// When another process truncated the segment, or the kernel refused the read (see
    /// [`read_at`](SharedMemory::read_at)).
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(2)?;
    /// assert_eq!(shm.to_vec(), [0, 0]);
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.size()];
        self.read_at(0, &mut out);
        out
    }

    /// Unmaps this handle (Python's `close()`); the segment stays for the others.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(2)?;
    /// let name = shm.name().to_string();
    /// shm.close();
    /// multiproc::SharedMemory::open(&name)?.unlink()?; // still there
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn close(self) {}

    /// Removes the name from `/dev/shm` (Python's `unlink()`); handles that have it mapped
    /// keep working. Call it once, from any process; the tracker then forgets it.
    ///
    /// A tracker that has read nothing for seconds (stopped, say by a debugger) is told
    /// later: the forgetting is written before this process's next line to it (a create,
    /// an unlink, an [`untrack`](SharedMemory::untrack)). Until then it would unlink, with
    /// the family, whatever then carries this name; this process's untracked create of the
    /// name fails meanwhile ([`SharedMemoryError::Tracker`]) rather than make a segment it
    /// would unlink.
    ///
    /// It removes this handle's segment only: when the segment was unlinked already and the
    /// name since names another segment (another program made it again), that one stays
    /// and the answer is `NotFound`. (Python's `unlink` goes by name and removes it.)
    ///
    /// A segment of a name this library chose ([`SharedMemory::create`]'s `mp-…` names) is
    /// tracked by name alone: should another program unlink it (Python's `unlink`, `rm`)
    /// and make that name again, the family's tracker unlinks the new file when the family
    /// ends, as Python's does. (This `unlink` also tells the tracker to forget the name, so
    /// a file made again after it is left alone.) The same holds for the blocks of a
    /// [`SharedMemoryManager`](crate::SharedMemoryManager), which its shutdown unlinks by
    /// name.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::NotFound`] when it was unlinked already (the name gone or
    /// another segment's); [`SharedMemoryError::Io`] when the OS refused (another user's
    /// segment in the sticky `/dev/shm`: `EPERM`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{SharedMemory, SharedMemoryError};
    ///
    /// let shm = SharedMemory::create(2)?;
    /// shm.unlink()?;
    /// assert!(matches!(SharedMemory::open(shm.name()), Err(SharedMemoryError::NotFound(_))));
    /// assert!(matches!(shm.unlink(), Err(SharedMemoryError::NotFound(_))));
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn unlink(&self) -> Result<(), SharedMemoryError> {
        // By file, not by name: a stale handle removed another program's segment (aud103 L2).
        match self.unlink_if_ours()? {
            true => Ok(()),
            false => Err(SharedMemoryError::NotFound(self.name.clone())),
        }
    }

    /// Unlinks the name only if it still names this segment's file, and forgets it at the
    /// tracker only then: a name unlinked and made again since (by another program) is
    /// that program's, with its registration (review126 M1). `Ok(false)` when the name is
    /// gone or another file's. The few microseconds between the look and the unlink stay
    /// ([`Segment::unlink_if`]).
    pub(crate) fn unlink_if_ours(&self) -> Result<bool, SharedMemoryError> {
        match Segment::unlink_if(&self.name, Some(self.segment.file())) {
            Ok(()) => {
                // A forgetting not taken now waits in this process's backlog: written late, it
                // still forgets this file only.
                let _ = tracker::unregister(&self.name, Some(self.segment.file()));
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(SharedMemoryError::from_io(e, &self.name)),
        }
    }

    /// Stops tracking the segment: it will outlive the family unless somebody unlinks it
    /// (for a segment handed over on purpose, Python's `track=False` after the fact).
    ///
    /// It forgets this handle's segment only, whatever the name names now: when the segment
    /// was unlinked already and the name made again since, a segment the family made
    /// again and tracks stays tracked, and another program's is left alone (the family's
    /// tracker unlinks neither this handle's name nor that file). (Python's goes by name.)
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::Tracker`] (`TimedOut`) when the family's resource tracker has
    /// read nothing for seconds (it is stopped, say by a debugger): it still tracks the
    /// segment, and would unlink it with the family. The forgetting is queued, not lost: it
    /// is told before this process's next line to it (a create, an unlink), and at this
    /// process's normal end (not if it is killed). Calling `untrack` again tries once,
    /// without waiting: to know it was taken, call it again after a pause (never in a
    /// loop without one, which would spin while the tracker is stopped).
    ///
    /// `Ok` means the tracker took it, not that it recorded it yet: a family killed whole
    /// (its tracker, keeper and main process, `kill -9` of them all) a moment after, the
    /// forgetting still in the tracker's pipe, and the segment is unlinked at the next
    /// family start of this user as if tracked.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(2)?;
    /// shm.untrack()?; // it now outlives the family unless unlinked
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::SharedMemoryError>(())
    /// ```
    pub fn untrack(&self) -> Result<(), SharedMemoryError> {
        // By file, not by name: a stale handle's made the tracker forget a segment the
        // family made again under the name, which then outlived it (review160 M2). The
        // tracker compares the file, not this process: an `lstat` here forgot nothing when
        // another program had made the name again, and that program's file was unlinked
        // with the family (review165 L1).
        tracker::unregister(&self.name, Some(self.segment.file())).map_err(SharedMemoryError::Tracker)
    }
}

/// A handle in flight: the segment's name and the file it is. The receiver opens the name
/// whole and checks the file, not the size: a segment another program grew meanwhile is
/// still the sender's (Python opens it at its size), and a name made again since, even at
/// the same size, is another's (aud103 L3: the size was compared, which refused the first
/// and took the second).
#[derive(Serialize, Deserialize)]
struct Wire {
    name: String,
    dev: u64,
    ino: u64,
    /// The sender's size: a file cut shorter since is refused (review154 L1: opened at its
    /// new size, offsets valid at the sender panicked at the receiver as out of bounds).
    size: usize,
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let FileId { dev, ino } = self.segment.file();
        Wire { name: self.name.clone(), dev, ino, size: self.size() }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        let name = valid_name(&wire.name).map_err(D::Error::custom)?;
        let sent = FileId { dev: wire.dev, ino: wire.ino };
        let made_again = || {
            D::Error::custom(format_args!(
                "the shared memory segment '{name}' was unlinked and its name made again since it was sent"
            ))
        };
        let cut = |size: usize| {
            D::Error::custom(format_args!(
                "the shared memory segment '{name}' was cut to {size} bytes since it was sent with {}",
                wire.size
            ))
        };
        let segment = match Segment::open(&name) {
            Ok(segment) => segment,
            // Which empty file: the sender's, cut to 0 bytes, or another (review160 L3:
            // both said "it has not been given its size yet").
            Err(e) => {
                return Err(match sys::EmptyFile::of(&e) {
                    Some(file) if file == sent => cut(0),
                    Some(_) => made_again(),
                    None => D::Error::custom(SharedMemoryError::from_io(e, &name)),
                });
            }
        };
        if segment.file() != sent {
            return Err(made_again());
        }
        if segment.len() < wire.size {
            return Err(cut(segment.len()));
        }
        Ok(SharedMemory::made(name, segment))
    }
}
