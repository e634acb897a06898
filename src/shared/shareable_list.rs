//! `ShareableList`: a fixed-length list of plain values in a named [`SharedMemory`], laid
//! out exactly as Python's `multiprocessing.shared_memory.ShareableList`, so that Python
//! programs and Rust programs can share one.
//!
//! The layout (native byte order and alignment, as Python's `struct` module writes it):
//!
//! ```text
//! 0                      the number of items n (i64)
//! 8                      n + 1 offsets of the items from the data start (i64 each)
//! 8 (n + 2)              the data: 8 bytes per number, bool or None; for str and bytes
//!                        a multiple of 8 bytes, fixed when the list is made
//! data + offsets[n]      n packing formats, 8 bytes each ("q", "d", "xxxxxxx?",
//!                        "xxxxxx?x" for None, "<k>s" for str and bytes)
//! after them             n kind codes, one byte each (0 number/bool, 1 str, 2 bytes,
//!                        3 None)
//! ```

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::shared_memory::{SharedMemory, SharedMemoryError};

/// One item of a [`ShareableList`]: the types Python's `ShareableList` holds.
///
/// # Examples
///
/// ```
/// use multiproc::Item;
///
/// let items = [Item::from(1), Item::from(2.5), Item::from("text"), Item::from(true), Item::from(None::<i64>)];
/// assert_eq!(items[4], Item::None);
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Item {
    /// An `int` (stored as i64).
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `bool`.
    Bool(bool),
    /// A `str` (UTF-8).
    Str(String),
    /// A `bytes`.
    Bytes(Vec<u8>),
    /// `None`.
    None,
}

impl From<i64> for Item {
    fn from(v: i64) -> Self {
        Item::Int(v)
    }
}
impl From<i32> for Item {
    fn from(v: i32) -> Self {
        Item::Int(v.into())
    }
}
impl From<f64> for Item {
    fn from(v: f64) -> Self {
        Item::Float(v)
    }
}
impl From<bool> for Item {
    fn from(v: bool) -> Self {
        Item::Bool(v)
    }
}
impl From<&str> for Item {
    fn from(v: &str) -> Self {
        Item::Str(v.to_string())
    }
}
impl From<String> for Item {
    fn from(v: String) -> Self {
        Item::Str(v)
    }
}
impl From<&[u8]> for Item {
    fn from(v: &[u8]) -> Self {
        Item::Bytes(v.to_vec())
    }
}
impl From<Vec<u8>> for Item {
    fn from(v: Vec<u8>) -> Self {
        Item::Bytes(v)
    }
}
impl<T: Into<Item>> From<Option<T>> for Item {
    fn from(v: Option<T>) -> Self {
        v.map_or(Item::None, Into::into)
    }
}

/// Why a [`ShareableList`] operation failed.
///
/// # Examples
///
/// ```
/// use multiproc::{ShareableList, ShareableListError};
///
/// let list = ShareableList::new(["ab"])?;
/// assert!(matches!(list.set(0, "much too long"), Err(ShareableListError::TooLong { .. })));
/// list.shm().unlink()?;
/// # Ok::<(), ShareableListError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShareableListError {
    /// The segment could not be created or opened.
    #[error(transparent)]
    SharedMemory(#[from] SharedMemoryError),
    /// The index is past the end (the list's length is fixed).
    #[error("index {index} out of range for a list of {len} items")]
    IndexOutOfRange {
        /// The index given.
        index: usize,
        /// The list's length.
        len: usize,
    },
    /// A str or bytes item longer than the room its slot got when the list was made
    /// (Python's `ValueError: bytes/str item exceeds available storage`), or, when a list
    /// is made, longer than any slot can be (9,999,991 bytes).
    #[error("an item of {len} bytes exceeds the {capacity} bytes of storage of slot {index}")]
    TooLong {
        /// The slot.
        index: usize,
        /// The item's encoded length.
        len: usize,
        /// The slot's room.
        capacity: usize,
    },
    /// The segment's bytes are not a valid list (another process wrote it concurrently,
    /// or it is not a `ShareableList`).
    #[error("the shared memory does not hold a valid ShareableList: {0}")]
    Corrupt(String),
}

const WORD: usize = 8;

/// The offsets [`ShareableList::from_shared_memory`] reads at once: a page of them.
const OFFSETS_PER_READ: usize = 512;

/// The most room a slot can have: its format, `"<room>s"`, must fit the 8 bytes Python
/// packs it into.
const MAX_ROOM: usize = 9_999_992;

/// The longest str or bytes item a list can be made with (its room is one more byte,
/// rounded up to a multiple of 8: [`MAX_ROOM`]).
const MAX_ITEM: usize = MAX_ROOM - 1;

/// A fixed-length list of numbers, bools, strings, bytes and `None` in named shared
/// memory (Python's `multiprocessing.shared_memory.ShareableList`, byte for byte: a
/// Python program can open a list made here, and the other way round).
///
/// As in Python, the length is fixed, and each str or bytes item gets room for its
/// initial length rounded up to the next multiple of 8 (at least one more byte): a later
/// value must fit in that room ([`ShareableListError::TooLong`] otherwise); numbers,
/// bools and `None` fit any slot. Trailing NUL bytes of a str or bytes item are lost, as
/// in Python. There is no lock: a reader racing a writer of the same slot may see an
/// error or a mix; guard the list with a [`Lock`](crate::Lock) when processes write it.
///
/// Sent to another process (a process argument, a queue), a list travels as its segment
/// does ([`SharedMemory`]: its name and file) and is opened again on arrival.
///
/// # Examples
///
/// ```
/// use multiproc::{Item, ShareableList};
///
/// let list = ShareableList::new([Item::from(1), "howdy".into(), 2.5.into(), Item::None])?;
/// list.set(0, 42)?;
/// let same = ShareableList::open(list.name())?;
/// assert_eq!(same.get(0)?, Item::Int(42));
/// assert_eq!(same.get(1)?, Item::Str("howdy".into()));
/// assert_eq!(same.len(), 4);
/// list.shm().unlink()?;
/// # Ok::<(), multiproc::ShareableListError>(())
/// ```
#[doc(alias = "multiprocessing.shared_memory.ShareableList")]
pub struct ShareableList {
    shm: SharedMemory,
    len: usize,
    /// `len + 1` offsets of the items from the data start.
    offsets: Vec<usize>,
}

impl fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareableList").field("name", &self.name()).field("items", &self.to_vec()).finish()
    }
}

/// Writes `item` into its slot (zeroed, of its room).
fn fill_slot(item: &Item, slot: &mut [u8]) {
    match item {
        Item::Int(v) => slot[..WORD].copy_from_slice(&v.to_ne_bytes()),
        Item::Float(v) => slot[..WORD].copy_from_slice(&v.to_ne_bytes()),
        Item::Bool(v) => slot[7] = u8::from(*v),
        Item::None => {}
        Item::Str(s) => slot[..s.len()].copy_from_slice(s.as_bytes()),
        Item::Bytes(b) => slot[..b.len()].copy_from_slice(b),
    }
}

/// How many bytes a new list gathers before it writes them.
const CHUNK: usize = 1 << 20;

/// Writes a new segment from its start, in order, [`CHUNK`] bytes or more at a time.
struct Filler<'a> {
    shm: &'a SharedMemory,
    /// Where the gathered bytes go.
    at: usize,
    buf: Vec<u8>,
}

impl Filler<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), SharedMemoryError> {
        self.put_with(bytes.len(), |b| b.copy_from_slice(bytes))
    }

    /// Gathers `len` zeroed bytes that `fill` writes.
    fn put_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), SharedMemoryError> {
        let start = self.buf.len();
        self.buf.resize(start + len, 0);
        fill(&mut self.buf[start..]);
        if self.buf.len() >= CHUNK { self.flush() } else { Ok(()) }
    }

    fn flush(&mut self) -> Result<(), SharedMemoryError> {
        if !self.buf.is_empty() {
            self.shm.try_write_at(self.at, &self.buf)?;
            self.at += self.buf.len();
            self.buf.clear();
        }
        Ok(())
    }
}

/// The packing format and kind code Python records for an item, and its room.
fn format_of(item: &Item) -> (String, u8, usize) {
    match item {
        Item::Int(_) => ("q".into(), 0, WORD),
        Item::Float(_) => ("d".into(), 0, WORD),
        Item::Bool(_) => ("xxxxxxx?".into(), 0, WORD),
        Item::None => ("xxxxxx?x".into(), 3, WORD),
        Item::Str(s) => {
            let room = WORD * (s.chars().count() / WORD + 1);
            // Python sizes a str's room by its characters; the UTF-8 bytes may need more.
            let room = room.max(s.len().next_multiple_of(WORD));
            (format!("{room}s"), 1, room)
        }
        Item::Bytes(b) => {
            let room = WORD * (b.len() / WORD + 1);
            (format!("{room}s"), 2, room)
        }
    }
}

impl ShareableList {
    /// A new list of `items` in a fresh, tracked segment (Python's
    /// `ShareableList(sequence)`).
    ///
    /// # Errors
    ///
    /// [`ShareableListError::SharedMemory`] when the segment cannot be created;
    /// [`ShareableListError::TooLong`] for a str or bytes item of more than 9,999,991
    /// bytes (a slot's room is written as `"<room>s"` in 8 bytes, as Python does).
    ///
    /// # Examples
    ///
    /// ```
    /// let list = multiproc::ShareableList::new([1, 2, 3])?;
    /// assert_eq!(list.len(), 3);
    /// list.shm().unlink()?;
    /// # Ok::<(), multiproc::ShareableListError>(())
    /// ```
    pub fn new<I: Into<Item>>(items: impl IntoIterator<Item = I>) -> Result<Self, ShareableListError> {
        Self::create_with(SharedMemory::builder(), items)
    }

    /// A new list of `items` in the segment `name` (Python's `ShareableList(sequence,
    /// name=name)`).
    ///
    /// # Errors
    ///
    /// [`ShareableListError::SharedMemory`] when the segment cannot be created (for
    /// example, [`SharedMemoryError::AlreadyExists`]); [`ShareableListError::TooLong`] as
    /// for [`new`](ShareableList::new).
    ///
    /// # Examples
    ///
    /// ```
    /// let name = format!("mp-doc-list-{}", std::process::id());
    /// let list = multiproc::ShareableList::create_named(&name, ["a", "b"])?;
    /// assert_eq!(list.name(), name);
    /// list.shm().unlink()?;
    /// # Ok::<(), multiproc::ShareableListError>(())
    /// ```
    pub fn create_named<I: Into<Item>>(
        name: &str,
        items: impl IntoIterator<Item = I>,
    ) -> Result<Self, ShareableListError> {
        Self::create_with(SharedMemory::builder().name(name), items)
    }

    /// A new list of `items` in the segment `builder` makes.
    pub(crate) fn create_with<I: Into<Item>>(
        builder: super::shared_memory::SharedMemoryBuilder,
        items: impl IntoIterator<Item = I>,
    ) -> Result<Self, ShareableListError> {
        let items: Vec<Item> = items.into_iter().map(Into::into).collect();
        for (index, item) in items.iter().enumerate() {
            if let Item::Str(s) = item
                && s.len() > MAX_ITEM
            {
                return Err(ShareableListError::TooLong { index, len: s.len(), capacity: MAX_ITEM });
            }
            if let Item::Bytes(b) = item
                && b.len() > MAX_ITEM
            {
                return Err(ShareableListError::TooLong { index, len: b.len(), capacity: MAX_ITEM });
            }
        }
        let n = items.len();
        let formats: Vec<(String, u8, usize)> = items.iter().map(format_of).collect();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for (_, _, room) in &formats {
            offsets.push(offsets.last().copied().unwrap_or(0) + room);
        }
        let data_start = (n + 2) * WORD;
        let size = data_start + offsets[n] + n * WORD + n;
        // Python would make a segment this size too; an empty list still needs its header.
        let shm = builder.size(size).create()?;
        crate::shm::crash::crash_point!("shareable_list.create.made");
        let list = ShareableList { shm, len: n, offsets };
        if let Err(e) = list.fill(&items, &formats, size) {
            // The segment is ours and nobody got its list: not left in `/dev/shm` (fix87
            // noticed; another process may have cut it short, or the kernel refused). Its
            // name is unlinked only while it still names our file: whoever cut it short may
            // have made the name again, and that segment is theirs (review126 M1).
            let _ = list.shm.unlink_if_ours();
            return Err(e.into());
        }
        Ok(list)
    }

    /// Writes a new list's segment: `items`, whose formats are `formats`, in `size` bytes.
    fn fill(&self, items: &[Item], formats: &[(String, u8, usize)], size: usize) -> Result<(), SharedMemoryError> {
        // The segment's parts lie end to end (header, slots, formats, codes): written in
        // order, a chunk per system call rather than three calls per item (aud81).
        // Room for the whole list if it is small (review116 L4: 1 MiB for every list).
        let mut out = Filler { shm: &self.shm, at: 0, buf: Vec::with_capacity(size.min(CHUNK)) };
        out.put(&(self.len as i64).to_ne_bytes())?;
        for off in &self.offsets {
            out.put(&(*off as i64).to_ne_bytes())?;
        }
        for (item, (_, _, room)) in items.iter().zip(formats) {
            out.put_with(*room, |slot| fill_slot(item, slot))?;
        }
        for (format, _, _) in formats {
            out.put_with(WORD, |packed| packed[..format.len()].copy_from_slice(format.as_bytes()))?;
        }
        for (_, code, _) in formats {
            out.put(&[*code])?;
        }
        out.flush()?;
        debug_assert_eq!(out.at, size);
        Ok(())
    }

    /// Opens the list in the segment `name` (Python's `ShareableList(name=name)`).
    ///
    /// # Errors
    ///
    /// [`ShareableListError::SharedMemory`] when there is no such segment,
    /// [`ShareableListError::Corrupt`] when it does not hold a list.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Item, ShareableList};
    ///
    /// let made = ShareableList::new([Item::from(1.5)])?;
    /// let opened = ShareableList::open(made.name())?;
    /// assert_eq!(opened.get(0)?, Item::Float(1.5));
    /// made.shm().unlink()?;
    /// # Ok::<(), multiproc::ShareableListError>(())
    /// ```
    pub fn open(name: &str) -> Result<Self, ShareableListError> {
        Self::from_shared_memory(SharedMemory::open(name)?)
    }

    /// The list in an open segment.
    ///
    /// # Errors
    ///
    /// [`ShareableListError::Corrupt`] when the segment does not hold a list (a slot with
    /// less room than a number's 8 bytes, or more than [`ShareableList`]'s slots can
    /// have, is none Python writes);
    /// [`SharedMemoryError::Truncated`] (in [`ShareableListError::SharedMemory`]) when
    /// another process truncated the segment.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ShareableList, SharedMemory};
    ///
    /// let made = ShareableList::new([7])?;
    /// let again = ShareableList::from_shared_memory(SharedMemory::open(made.name())?)?;
    /// assert_eq!(again.len(), 1);
    /// made.shm().unlink()?;
    /// # Ok::<(), multiproc::ShareableListError>(())
    /// ```
    pub fn from_shared_memory(shm: SharedMemory) -> Result<Self, ShareableListError> {
        let size = shm.size();
        let read_i64 = |at: usize| {
            let mut b = [0u8; WORD];
            shm.try_read_at(at, &mut b).map(|()| i64::from_ne_bytes(b))
        };
        if size < WORD {
            return Err(ShareableListError::Corrupt("too small for a header".into()));
        }
        let n = usize::try_from(read_i64(0)?).map_err(|_| ShareableListError::Corrupt("negative length".into()))?;
        let header = n.checked_add(2).and_then(|k| k.checked_mul(WORD));
        if header.is_none_or(|h| h > size) {
            return Err(ShareableListError::Corrupt(format!("a length of {n} does not fit {size} bytes")));
        }
        // The vector grows with the offsets read, each checked as it comes, never to the
        // header's count: a sparse segment of another program's (a terabyte costs it one
        // page) may claim billions of items, and reserving them aborted the process
        // (aud81 M1). An offset past the segment ends the read at once.
        let data_start = (n + 2) * WORD;
        let mut offsets = Vec::with_capacity((n + 1).min(OFFSETS_PER_READ));
        // Read a page of offsets at a time (one system call each, not one per item).
        let mut page = Vec::new();
        for i in 0..=n {
            if i % OFFSETS_PER_READ == 0 {
                page.resize(WORD * (n + 1 - i).min(OFFSETS_PER_READ), 0);
                shm.try_read_at(WORD * (i + 1), &mut page)?;
            }
            let at = WORD * (i % OFFSETS_PER_READ);
            let word: [u8; WORD] = page[at..at + WORD].try_into().expect("a word of the page");
            let off = usize::try_from(i64::from_ne_bytes(word))
                .map_err(|_| ShareableListError::Corrupt("negative offset".into()))?;
            if off > size - data_start {
                return Err(ShareableListError::Corrupt(format!("offset {i} is past the segment's end")));
            }
            if let Some(&prev) = offsets.last() {
                // Python gives every slot 8 bytes or more; `set` writes a number's 8, and a
                // str's format names its room in 8 bytes.
                let room =
                    off.checked_sub(prev).ok_or_else(|| ShareableListError::Corrupt("offsets out of order".into()))?;
                if !(WORD..=MAX_ROOM).contains(&room) {
                    return Err(ShareableListError::Corrupt(format!("slot {} has room for {room} bytes", i - 1)));
                }
            }
            offsets.push(off);
        }
        if data_start.checked_add(offsets[n]).and_then(|e| e.checked_add(n * WORD + n)).is_none_or(|end| end > size) {
            return Err(ShareableListError::Corrupt("the items do not fit the segment".into()));
        }
        Ok(ShareableList { shm, len: n, offsets })
    }

    fn data_start(&self) -> usize {
        (self.len + 2) * WORD
    }

    fn formats_start(&self) -> usize {
        self.data_start() + self.offsets[self.len]
    }

    fn codes_start(&self) -> usize {
        self.formats_start() + self.len * WORD
    }

    fn check(&self, index: usize) -> Result<(), ShareableListError> {
        if index < self.len { Ok(()) } else { Err(ShareableListError::IndexOutOfRange { index, len: self.len }) }
    }

    fn room(&self, index: usize) -> usize {
        self.offsets[index + 1] - self.offsets[index]
    }

    fn write_item(&self, index: usize, item: &Item, format: &str, code: u8) -> Result<(), ShareableListError> {
        let at = self.data_start() + self.offsets[index];
        let room = self.room(index);
        let mut slot = vec![0u8; room];
        fill_slot(item, &mut slot);
        // Numbers take their 8 bytes only; a str slot keeps its room.
        let written = if matches!(item, Item::Str(_) | Item::Bytes(_)) { room } else { WORD };
        self.shm.try_write_at(at, &slot[..written])?;
        let mut packed = [0u8; WORD];
        packed[..format.len()].copy_from_slice(format.as_bytes());
        self.shm.try_write_at(self.formats_start() + index * WORD, &packed)?;
        self.shm.try_write_at(self.codes_start() + index, &[code])?;
        Ok(())
    }

    /// The number of items (fixed).
    ///
    /// # Examples
    ///
    /// ```
    /// let list = multiproc::ShareableList::new([true, false])?;
    /// assert_eq!(list.len(), 2);
    /// list.shm().unlink()?;
    /// # Ok::<(), multiproc::ShareableListError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no items.
    ///
    /// # Examples
    ///
    /// ```
    /// let empty = multiproc::ShareableList::new(Vec::<i64>::new())?;
    /// assert!(empty.is_empty());
    /// empty.shm().unlink()?;
    /// # Ok::<(), multiproc::ShareableListError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Item `index`.
    ///
    /// # Errors
    ///
    /// [`ShareableListError::IndexOutOfRange`], [`ShareableListError::Corrupt`] when the
    /// slot does not hold a valid item, or [`SharedMemoryError::Truncated`] (in
    /// [`ShareableListError::SharedMemory`]) when another process truncated the segment.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Item;
    ///
    /// let list = multiproc::ShareableList::new([Item::from("hi"), Item::None])?;
    /// assert_eq!(list.get(0)?, Item::Str("hi".into()));
    /// assert_eq!(list.get(1)?, Item::None);
    /// assert!(list.get(2).is_err());
    /// list.shm().unlink()?;
    /// # Ok::<(), multiproc::ShareableListError>(())
    /// ```
    pub fn get(&self, index: usize) -> Result<Item, ShareableListError> {
        self.check(index)?;
        let mut packed = [0u8; WORD];
        self.shm.try_read_at(self.formats_start() + index * WORD, &mut packed)?;
        self.decode(index, &packed, || {
            let mut code = [0u8; 1];
            self.shm.try_read_at(self.codes_start() + index, &mut code).map(|()| code[0])
        })
    }

    /// Item `index`, of format `packed`, its kind read by `code` (after the format is
    /// checked), its slot read here.
    fn decode(
        &self,
        index: usize,
        packed: &[u8],
        code: impl FnOnce() -> Result<u8, SharedMemoryError>,
    ) -> Result<Item, ShareableListError> {
        let end = packed.iter().position(|&b| b == 0).unwrap_or(WORD);
        let format = std::str::from_utf8(&packed[..end])
            .map_err(|_| ShareableListError::Corrupt(format!("slot {index} has an unreadable format")))?;
        let code = [code()?];
        let at = self.data_start() + self.offsets[index];
        let word = || {
            let mut b = [0u8; WORD];
            self.shm.try_read_at(at, &mut b).map(|()| b)
        };
        let item = match (format, code[0]) {
            ("q", 0) => Item::Int(i64::from_ne_bytes(word()?)),
            ("d", 0) => Item::Float(f64::from_ne_bytes(word()?)),
            ("xxxxxxx?", 0) => Item::Bool(word()?[7] != 0),
            (_, 3) => Item::None,
            (f, 1 | 2) if f.ends_with('s') => {
                let room: usize = f[..f.len() - 1]
                    .parse()
                    .ok()
                    .filter(|&r| r <= self.room(index))
                    .ok_or_else(|| ShareableListError::Corrupt(format!("slot {index} has format {f}")))?;
                let mut bytes = vec![0u8; room];
                self.shm.try_read_at(at, &mut bytes)?;
                // The item alone, not its slot's room (up to 10 MB: review109 M1, a sparse
                // segment's empty slots kept their rooms in every item read back).
                let len = bytes.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
                bytes.truncate(len);
                bytes.shrink_to_fit();
                if code[0] == 1 {
                    Item::Str(
                        String::from_utf8(bytes)
                            .map_err(|_| ShareableListError::Corrupt(format!("slot {index} is not UTF-8")))?,
                    )
                } else {
                    Item::Bytes(bytes)
                }
            }
            (f, c) => return Err(ShareableListError::Corrupt(format!("slot {index} has format {f:?}, kind {c}"))),
        };
        Ok(item)
    }

    /// Replaces item `index` (Python's `list[index] = value`).
    ///
    /// # Errors
    ///
    /// [`ShareableListError::IndexOutOfRange`], [`ShareableListError::TooLong`] for a
    /// str or bytes longer than the slot's room, or [`SharedMemoryError::Truncated`] (in
    /// [`ShareableListError::SharedMemory`]) when another process truncated the segment.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Item;
    ///
    /// let list = multiproc::ShareableList::new([0])?;
    /// list.set(0, "seven")?; // a number's slot takes a str of up to 8 bytes
    /// assert_eq!(list.get(0)?, Item::Str("seven".into()));
    /// list.shm().unlink()?;
    /// # Ok::<(), multiproc::ShareableListError>(())
    /// ```
    pub fn set(&self, index: usize, value: impl Into<Item>) -> Result<(), ShareableListError> {
        self.check(index)?;
        let item = value.into();
        let room = self.room(index);
        let (format, code) = match &item {
            Item::Str(s) if s.len() > room => {
                return Err(ShareableListError::TooLong { index, len: s.len(), capacity: room });
            }
            Item::Bytes(b) if b.len() > room => {
                return Err(ShareableListError::TooLong { index, len: b.len(), capacity: room });
            }
            Item::Str(_) => (format!("{room}s"), 1),
            Item::Bytes(_) => (format!("{room}s"), 2),
            other => {
                let (format, code, _) = format_of(other);
                (format, code)
            }
        };
        self.write_item(index, &item, &format, code)
    }

    /// All items.
    ///
    /// Not a snapshot: there is no lock, as in Python, so an item that another process
    /// [`set`](ShareableList::set)s meanwhile may come out old or new, or, its type changed
    /// between the reads of its format, kind and slot, decoded with the old format or
    /// refused as corrupt ([`get`](ShareableList::get) too, with a smaller window).
    ///
    /// # Errors
    ///
    /// As [`get`](ShareableList::get)'s.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Item;
    ///
    /// let list = multiproc::ShareableList::new([1, 2])?;
    /// assert_eq!(list.to_vec()?, [Item::Int(1), Item::Int(2)]);
    /// list.shm().unlink()?;
    /// # Ok::<(), multiproc::ShareableListError>(())
    /// ```
    pub fn to_vec(&self) -> Result<Vec<Item>, ShareableListError> {
        // The formats and the kinds a chunk at a time, each slot by its own read: one
        // system call per item rather than three (as `get`).
        let mut items = Vec::with_capacity(self.len);
        let per = CHUNK / WORD;
        for start in (0..self.len).step_by(per) {
            let end = (start + per).min(self.len);
            let mut formats = vec![0u8; (end - start) * WORD];
            self.shm.try_read_at(self.formats_start() + start * WORD, &mut formats)?;
            let mut codes = vec![0u8; end - start];
            self.shm.try_read_at(self.codes_start() + start, &mut codes)?;
            for (i, (packed, code)) in (start..end).zip(formats.chunks_exact(WORD).zip(codes)) {
                items.push(self.decode(i, packed, || Ok(code))?);
            }
        }
        Ok(items)
    }

    /// How many items equal `value` (Python's `count`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Item;
    ///
    /// let list = multiproc::ShareableList::new([1, 2, 1])?;
    /// assert_eq!(list.count(&Item::Int(1)), 2);
    /// list.shm().unlink()?;
    /// # Ok::<(), multiproc::ShareableListError>(())
    /// ```
    pub fn count(&self, value: &Item) -> usize {
        (0..self.len).filter(|&i| self.get(i).is_ok_and(|item| item == *value)).count()
    }

    /// The first index whose item equals `value` (Python's `index`, `None` instead of
    /// `ValueError`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Item;
    ///
    /// let list = multiproc::ShareableList::new(["a", "b"])?;
    /// assert_eq!(list.index(&Item::from("b")), Some(1));
    /// list.shm().unlink()?;
    /// # Ok::<(), multiproc::ShareableListError>(())
    /// ```
    pub fn index(&self, value: &Item) -> Option<usize> {
        (0..self.len).find(|&i| self.get(i).is_ok_and(|item| item == *value))
    }

    /// The packing formats of the items, joined (Python's `format` property, e.g.
    /// `"q8sd"`).
    ///
    /// # Panics
    ///
    /// When another process truncated the segment (as [`SharedMemory::read_at`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Item;
    ///
    /// let list = multiproc::ShareableList::new([Item::from(1), "abc".into(), 2.0.into()])?;
    /// assert_eq!(list.format(), "q8sd");
    /// list.shm().unlink()?;
    /// # Ok::<(), multiproc::ShareableListError>(())
    /// ```
    pub fn format(&self) -> String {
        (0..self.len)
            .map(|i| {
                let mut packed = [0u8; WORD];
                self.shm.read_at(self.formats_start() + i * WORD, &mut packed);
                let end = packed.iter().position(|&b| b == 0).unwrap_or(WORD);
                String::from_utf8_lossy(&packed[..end]).into_owned()
            })
            .collect()
    }

    /// The segment's name.
    ///
    /// # Examples
    ///
    /// ```
    /// let list = multiproc::ShareableList::new([1])?;
    /// assert!(list.name().starts_with("mp-"));
    /// list.shm().unlink()?;
    /// # Ok::<(), multiproc::ShareableListError>(())
    /// ```
    pub fn name(&self) -> &str {
        self.shm.name()
    }

    /// The segment (Python's `.shm`): unlink it through this when done.
    ///
    /// # Examples
    ///
    /// ```
    /// let list = multiproc::ShareableList::new([1])?;
    /// assert_eq!(list.shm().size(), 8 * 3 + 8 + 8 + 1);
    /// list.shm().unlink()?;
    /// # Ok::<(), multiproc::ShareableListError>(())
    /// ```
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }
}

impl Serialize for ShareableList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shm.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ShareableList::from_shared_memory(SharedMemory::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}
