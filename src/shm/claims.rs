//! A claim table: the inputs of a pool call written once, which the workers take one index
//! at a time with a compare-and-swap, and the results they write back by index.
//!
//! A `map` with chunk size 1 sent each item as its own message and each result as another:
//! about 2.5 µs a task. Here the parent writes the encoded items into one object (an offset
//! table and the bytes), sends every worker one message naming it, and each worker claims
//! the next index, decodes the item, runs the task and writes the result in the index's
//! entry; the parent reads the entries once every worker has answered.
//!
//! # Crashes
//!
//! A worker writes the index it is about to claim into its own seat *before* the claim's
//! compare-and-swap, and keeps it there until the result is written; so the index of every
//! claim is known to the others at every moment. Once every worker of the call has answered
//! or is dead, an index below the claim counter whose entry was never written was held by
//! a dead worker, and nothing else. The parent takes the indices
//! nobody claimed with the same compare-and-swap ([`ClaimTable::take_rest`]), so a worker
//! still claiming (one being killed) never takes an item whose arguments the parent drops.
//!
//! Right after its claim, the worker marks the index's entry *held* by its seat. When a
//! worker dies in the call, the pool (before it starts the replacement, which takes the same
//! seat) asks the table what the dead seat held ([`ClaimTable::reap_seat`]): the index its
//! seat names, if the entry is held by that seat, or unmarked while claimed and no other
//! seat names it (the worker died between its claim and the mark). That index fails at
//! once with that worker's own error; the entry is marked lost.
//!
//! A result larger than an entry's inline bytes gets a heap block of its own. The entry says
//! *filling* (with the length) before the block is taken, and the allocation writes the
//! block's offset into the entry itself (`Heap::alloc_into`), so the reaper frees the block
//! of a worker killed any time after the allocation and before the result is published;
//! the parent frees the published ones once it read them
//! ([`ClaimTable::release_results`]), and [`ClaimTable::reap_all`] what workers killed by
//! `terminate` left. Only a kill inside the allocation (between the heap's taking of the
//! block and its record) leaks the block, as a crash in the heap does.

use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::crash::crash_point;
use super::heap::{Heap, HeapFull};
use super::object::{Shared, ShmObject, kind};

/// Words per entry: the state word and the inline bytes (or a spilled block's offset).
/// One cache line, so that two workers writing neighbouring indices on two CPUs do not
/// take the line from each other at every claim and result: two workers pinned to two
/// CPUs ran a map of `u64 -> u64` 1.25x faster than with 32-byte entries (perf50). It
/// costs 32 more bytes of table per item (and 8-18% when the whole pool shares one CPU,
/// a line per item to zero and read), and keeps results up to 56 bytes inline.
const ENTRY_WORDS: usize = 8;
/// Result bytes kept in the entry itself.
pub(crate) const INLINE: usize = (ENTRY_WORDS - 1) * 8;
/// Words per seat: one cache line each, so that a worker's seat store does not take the
/// line of another worker's seat.
const SEAT_WORDS: usize = 8;
const DONE: u64 = 1 << 63;
const SPILLED: u64 = 1 << 62;
/// Claimed by the worker in the seat of the `OWNER` bits, result not published.
const HELD: u64 = 1 << 61;
/// Held, and the block whose offset is the entry's second word (length in the `LEN_MASK`
/// bits) is being filled.
const FILLING: u64 = 1 << 60;
/// Its worker died holding it ([`ClaimTable::reap_seat`]).
const LOST: u64 = 1 << 59;
/// Held, and its worker took the handles of the item (marked right after decoding it, only
/// when items hold handles): they are the worker's, no longer the table's.
const TAKEN: u64 = 1 << 58;
const OWNER_SHIFT: u32 = 40;
const OWNER_MASK: u64 = 0xffff << OWNER_SHIFT;
const KIND_SHIFT: u32 = 32;
const LEN_MASK: u64 = u32::MAX as u64;

#[derive(crate::ShmSafe)]
#[repr(C)]
struct ClaimState {
    items: AtomicU64,
    seats: AtomicU64,
    /// Bytes of encoded items.
    input_len: AtomicU64,
    /// No more claims (a task failed, the call was cancelled).
    stopped: AtomicU32,
    /// Some result holds handles (the parent decodes what it does not deliver).
    handles: AtomicU32,
    /// Some item holds handles (the workers note what their decodings read).
    input_handles: AtomicU32,
    /// Some result has a block of its own (set before the block is allocated).
    spilled: AtomicU32,
    /// Keeps `next` off the line of the fields above, which every claim reads.
    _apart: [u64; 8],
    /// The next index to claim: the one word every claim writes, on a line of its own
    /// (the tail starts on the next line).
    next: AtomicU64,
}

impl ClaimState {
    fn words(&self) -> (usize, usize, usize) {
        let items = self.items.load(Ordering::Relaxed) as usize;
        let seats = self.seats.load(Ordering::Relaxed) as usize;
        (items, seats, seats * SEAT_WORDS + items * ENTRY_WORDS + items + 1)
    }
}

impl ShmObject for ClaimState {
    const KIND: u32 = kind::POOL + 2;
    // Written whole at creation (`ClaimTable::new`): a large table's block keeps its pages
    // for the next one, so the next map's table costs neither the kernel's zeroing nor a
    // page fault per page in the parent and in each worker.
    const WARM: bool = true;
}

/// How a result entry was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// The task's value, encoded.
    Value,
    /// The task panicked: its `PanicInfo`, encoded.
    Panicked,
    /// The item or its result could not be (de)coded: the message, as UTF-8.
    Failed,
}

impl Written {
    fn code(self) -> u64 {
        match self {
            Written::Value => 0,
            Written::Panicked => 1,
            Written::Failed => 2,
        }
    }

    fn of(code: u64) -> Self {
        match code {
            0 => Written::Value,
            1 => Written::Panicked,
            _ => Written::Failed,
        }
    }
}

/// What a dead worker's seat held ([`ClaimTable::reap_seat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reaped {
    /// No index: it died between items, or before its claim, or after its result.
    Nothing,
    /// This index, now marked lost (its result block, if it was filling one, freed). If
    /// its worker had not taken the item's handles, they are still the table's
    /// ([`ClaimTable::untaken`]).
    Held(usize),
    /// This index was claimed and is not marked: the dead worker died between its claim
    /// and the mark, or it died before its claim and another seat that names the index is
    /// between its own claim and mark. Once no worker is in the call, an unwritten entry
    /// below the claim counter is the dead one's.
    Unsure(usize),
}

/// The shared state of one call's claims (see the module docs).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct ClaimTable {
    shared: Shared<ClaimState>,
    /// Decodes and drops one encoded item: the parent's, which gives back the handles of
    /// the items no worker took (`None` in a worker, which never does).
    #[serde(skip)]
    drop_item: Option<fn(&[u8])>,
}

impl std::fmt::Debug for ClaimTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimTable").field("items", &self.items()).field("claimed", &self.claimed()).finish()
    }
}

impl ClaimTable {
    /// A table for the items encoded in `input`, item `i` in `input[ends[i - 1]..ends[i]]`
    /// (from 0 for the first), claimed by up to `seats` workers (a worker's seat is its
    /// index in the pool).
    /// `drop_item` decodes and drops one encoded item (see [`ClaimTable::untaken`]).
    pub(crate) fn new(
        input: &[u8],
        ends: &[u64],
        seats: usize,
        handles: bool,
        drop_item: fn(&[u8]),
    ) -> Result<Self, HeapFull> {
        let table = Self::create(ends.len(), input.len(), seats, handles, drop_item)?;
        let (ends_cells, bytes) = table.input_cells();
        // SAFETY: the table was just created; no other process has its handle yet.
        unsafe { ends_cells.as_mut_slice() }.copy_from_slice(ends);
        // SAFETY: as above.
        unsafe { bytes.as_mut_slice() }.copy_from_slice(input);
        Ok(table)
    }

    /// [`ClaimTable::new`] of `items` items holding no handle, `input_len` bytes in all,
    /// which `encode` writes straight into the table (no buffer to fill and copy):
    /// `encode(i, room)` writes item `i` at the start of `room` and returns its length.
    /// `None` if `encode` gives up or the items do not come to `input_len` bytes (the
    /// table is dropped).
    pub(crate) fn encoded(
        items: usize,
        input_len: usize,
        seats: usize,
        drop_item: fn(&[u8]),
        mut encode: impl FnMut(usize, &mut [u8]) -> Option<usize>,
    ) -> Result<Option<Self>, HeapFull> {
        let table = Self::create(items, input_len, seats, false, drop_item)?;
        let (ends_cells, bytes) = table.input_cells();
        // SAFETY: the table was just created; no other process has its handle yet.
        let ends = unsafe { ends_cells.as_mut_slice() };
        // SAFETY: as above.
        let input = unsafe { bytes.as_mut_slice() };
        let mut at = 0;
        for (i, end) in ends.iter_mut().enumerate() {
            let Some(len) = encode(i, &mut input[at..]) else { return Ok(None) };
            at += len;
            if at > input_len {
                return Ok(None);
            }
            *end = at as u64;
        }
        Ok((at == input_len).then_some(table))
    }

    /// A table of `items` items, `input_len` bytes of them, its seats and entries zeroed,
    /// its offsets and input bytes to write (see [`ClaimTable::input_cells`]).
    fn create(
        items: usize,
        input_len: usize,
        seats: usize,
        handles: bool,
        drop_item: fn(&[u8]),
    ) -> Result<Self, HeapFull> {
        let state = ClaimState {
            items: AtomicU64::new(items as u64),
            seats: AtomicU64::new(seats as u64),
            input_len: AtomicU64::new(input_len as u64),
            stopped: AtomicU32::new(0),
            handles: AtomicU32::new(0),
            input_handles: AtomicU32::new(u32::from(handles)),
            spilled: AtomicU32::new(0),
            _apart: [0; 8],
            next: AtomicU64::new(0),
        };
        let words = state.words().2;
        // A warm block (a former table's, or a large message's) when one is free: every
        // byte of the tail is written, here and by the caller.
        let shared = Shared::with_populated_dirty_tail(state, words * 8 + input_len)?;
        let table = Self { shared, drop_item: Some(drop_item) };
        let cells = table.shared.tail::<u64>(words);
        let starts = seats * SEAT_WORDS + items * ENTRY_WORDS;
        // SAFETY: the table was just created; no other process has its handle yet.
        unsafe { cells.range(0, starts + 1).as_mut_slice() }.fill(0);
        Ok(table)
    }

    /// The words where the items end (the first starts at 0) and the input bytes, to be
    /// written once by the creator, before the table's handle is shared.
    fn input_cells(&self) -> (super::Cells<'_, u64>, super::Cells<'_, u8>) {
        let (items, seats, words) = self.shared.words();
        let input_len = self.shared.input_len.load(Ordering::Relaxed) as usize;
        let starts = seats * SEAT_WORDS + items * ENTRY_WORDS;
        let ends = self.shared.tail::<u64>(words).range(starts + 1, items);
        let bytes = self.shared.tail::<u8>(words * 8 + input_len).range(words * 8, input_len);
        (ends, bytes)
    }

    fn words(&self) -> super::Cells<'_, AtomicU64> {
        self.shared.tail::<AtomicU64>(self.shared.words().2)
    }

    /// How many items.
    pub(crate) fn items(&self) -> usize {
        self.shared.items.load(Ordering::Relaxed) as usize
    }

    /// How many indices were claimed (by workers, or taken back by [`ClaimTable::take_rest`]).
    pub(crate) fn claimed(&self) -> usize {
        (self.shared.next.load(Ordering::Acquire) as usize).min(self.items())
    }

    /// The encoded item `i`. Its bytes are written before the table is shared and never
    /// again.
    pub(crate) fn input(&self, i: usize) -> &[u8] {
        let (items, seats, words) = self.shared.words();
        assert!(i < items, "item {i} of {items}");
        let cells = self.words();
        let starts = seats * SEAT_WORDS + items * ENTRY_WORDS;
        let (start, end) = (
            cells.at(starts + i).load(Ordering::Relaxed) as usize,
            cells.at(starts + 1 + i).load(Ordering::Relaxed) as usize,
        );
        let input_len = self.shared.input_len.load(Ordering::Relaxed) as usize;
        assert!(start <= end && end <= input_len, "a claim table's offsets are out of order");
        let bytes = self.shared.tail::<u8>(words * 8 + input_len).range(words * 8 + start, end - start);
        // SAFETY: the input bytes were written whole before the table's handle was shared
        // (`new`) and nobody writes them again.
        unsafe { bytes.as_slice() }
    }

    /// Claims the next index for the worker in `seat`: `None` once every index is claimed
    /// or the table is stopped. The seat names the index before the claim is made, and
    /// keeps it until the next claim (a claim that finds none left clears it).
    pub(crate) fn claim(&self, seat: usize) -> Option<usize> {
        let (items, seats, _) = self.shared.words();
        let owner = (seat % seats.max(1)) as u64;
        let seat = self.words().at(owner as usize * SEAT_WORDS);
        // The index after this seat's last claim is the guess: right whenever no other seat
        // claimed since, and then the CAS is the only access to `next`'s line, where a load
        // first would fetch the line shared and the CAS take it again (with two workers
        // claiming on two CPUs, the line moves twice per item; a wrong guess costs one
        // failed CAS, which returns the counter). Only a guess: the seat may name an index
        // it never claimed (its worker died before the CAS), so one past the end is no
        // reason to stop.
        let mut next = match seat.load(Ordering::Relaxed) {
            last if last != 0 && (last as usize) < items => last,
            _ => self.shared.next.load(Ordering::Acquire),
        };
        loop {
            if next as usize >= items || self.stopped() {
                seat.store(0, Ordering::Release);
                return None;
            }
            // Release is enough: the claim's CAS below comes after it in this process, and
            // whoever reads `next` past this index (Acquire) sees the seat too.
            seat.store(next + 1, Ordering::Release);
            crash_point!("pool.claims.seated");
            match self.shared.next.compare_exchange_weak(next, next + 1, Ordering::SeqCst, Ordering::Acquire) {
                Ok(_) => {
                    crash_point!("pool.claims.taken");
                    // The claim is ours alone until marked: the reaper looks for the mark.
                    let entry = seats * SEAT_WORDS + next as usize * ENTRY_WORDS;
                    self.words().at(entry).store(HELD | owner << OWNER_SHIFT, Ordering::Release);
                    return Some(next as usize);
                }
                Err(now) => next = now,
            }
        }
    }

    /// No more claims.
    pub(crate) fn stop(&self) {
        self.shared.stopped.store(1, Ordering::Release);
    }

    /// Whether [`ClaimTable::stop`] was called.
    pub(crate) fn stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire) != 0
    }

    /// Whether every index was claimed or the table stopped: a new worker would find
    /// nothing to do.
    pub(crate) fn exhausted(&self) -> bool {
        self.stopped() || self.claimed() >= self.items()
    }

    /// Takes every index nobody claimed yet: no worker will claim them. Their entries are
    /// marked taken (the caller drops their items): [`ClaimTable::untaken`] never gives
    /// them back again.
    pub(crate) fn take_rest(&self) -> Range<usize> {
        let (items, seats, _) = self.shared.words();
        let first = (self.shared.next.swap(items as u64, Ordering::AcqRel) as usize).min(items);
        if self.inputs_hold_handles() {
            let cells = self.words();
            for i in first..items {
                cells.at(seats * SEAT_WORDS + i * ENTRY_WORDS).fetch_or(TAKEN, Ordering::AcqRel);
            }
        }
        first..items
    }

    /// Writes the result of index `i`, claimed by this process; `handles`: its bytes hold
    /// handles.
    pub(crate) fn put(&self, i: usize, written: Written, bytes: &[u8], handles: bool) -> Result<(), HeapFull> {
        let (items, seats, _) = self.shared.words();
        assert!(i < items, "item {i} of {items}");
        let len =
            u64::try_from(bytes.len()).ok().filter(|len| *len <= LEN_MASK).ok_or(HeapFull::requested(bytes.len()))?;
        if handles {
            self.shared.handles.store(1, Ordering::Release);
        }
        let entry = seats * SEAT_WORDS + i * ENTRY_WORDS;
        let cells = self.words();
        let mut state = DONE | written.code() << KIND_SHIFT | len;
        if bytes.len() <= INLINE {
            let inline = self.shared.tail::<u8>((entry + ENTRY_WORDS) * 8).range((entry + 1) * 8, bytes.len());
            // SAFETY: the entry's inline bytes belong to the claimer of index `i` (this
            // process) until its state word says done; nobody reads them before that.
            unsafe { inline.as_mut_slice() }.copy_from_slice(bytes);
        } else {
            let heap = Heap::get();
            self.shared.spilled.store(1, Ordering::Release);
            // The entry says *filling* before the block is taken, and the allocation itself
            // writes the block's offset into it (`alloc_into`): the reaper frees the block
            // of a worker killed any time after the allocation, before the result is
            // published. The offset word reads 0 until then (the table is zeroed at its
            // creation, and only this claimer writes this entry).
            let held = cells.at(entry).load(Ordering::Relaxed) & (HELD | OWNER_MASK | TAKEN);
            cells.at(entry).store(held | FILLING | len, Ordering::Release);
            let off = match heap.alloc_into(bytes.len(), cells.at(entry + 1)) {
                Ok(off) => off,
                Err(full) => {
                    cells.at(entry).store(held, Ordering::Release);
                    return Err(full);
                }
            };
            crash_point!("pool.claims.allocated");
            // SAFETY: a fresh block of `bytes.len()` bytes, ours alone until published (the
            // reaper frees it only once this process is dead).
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), heap.ptr(off), bytes.len()) };
            state |= SPILLED;
        }
        crash_point!("pool.claims.written");
        cells.at(entry).store(state, Ordering::Release);
        Ok(())
    }

    /// Writes the value of index `i`, claimed by this process, whose encoding is the first
    /// `len` bytes of `bytes` (which holds no handle): [`ClaimTable::put`] of a small
    /// result, copying the whole buffer, a fixed size, rather than calling `memcpy` for
    /// `len` bytes (a fifth of a claimed `u64 -> u64` task's cost).
    pub(crate) fn put_inline(&self, i: usize, bytes: &[u8; INLINE], len: usize) {
        let (items, seats, _) = self.shared.words();
        assert!(i < items && len <= INLINE, "item {i} of {items}, {len} bytes");
        let entry = seats * SEAT_WORDS + i * ENTRY_WORDS;
        let inline = self.shared.tail::<u8>((entry + ENTRY_WORDS) * 8).range((entry + 1) * 8, INLINE);
        // SAFETY: as in `put`: the entry's inline bytes are the claimer's (this process's)
        // until its state word says done.
        let inline: &mut [u8; INLINE] = unsafe { inline.as_mut_slice() }.try_into().expect("an entry's inline bytes");
        *inline = *bytes;
        crash_point!("pool.claims.written");
        self.words().at(entry).store(DONE | Written::Value.code() << KIND_SHIFT | len as u64, Ordering::Release);
    }

    /// The result of index `i` once written: how, and its bytes.
    pub(crate) fn result(&self, i: usize) -> Option<(Written, &[u8])> {
        let (items, seats, _) = self.shared.words();
        assert!(i < items, "item {i} of {items}");
        let entry = seats * SEAT_WORDS + i * ENTRY_WORDS;
        let cells = self.words();
        let state = cells.at(entry).load(Ordering::Acquire);
        if state & DONE == 0 {
            return None;
        }
        let len = (state & LEN_MASK) as usize;
        let written = Written::of((state >> KIND_SHIFT) & 0xff);
        let bytes = if state & SPILLED != 0 {
            let off = cells.at(entry + 1).load(Ordering::Relaxed);
            // SAFETY: the block was written whole before the state word (released above,
            // acquired here) and is freed only by `destroy`, after every handle is gone.
            unsafe { std::slice::from_raw_parts(Heap::get().ptr(off), len) }
        } else {
            let inline = self.shared.tail::<u8>((entry + ENTRY_WORDS) * 8).range((entry + 1) * 8, len.min(INLINE));
            // SAFETY: written before the state word, never again.
            unsafe { inline.as_slice() }
        };
        Some((written, bytes))
    }

    /// The results as the parent reads them: the table's layout looked up once, not per
    /// index as [`ClaimTable::result`] does.
    pub(crate) fn results(&self) -> Results<'_> {
        let (items, seats, _) = self.shared.words();
        let first = seats * SEAT_WORDS;
        let end = (first + items * ENTRY_WORDS) * 8;
        Results {
            states: self.words().range(first, items * ENTRY_WORDS),
            bytes: self.shared.tail::<u8>(end).range(first * 8, items * ENTRY_WORDS * 8),
            heap: Heap::get(),
        }
    }

    /// Notes that this process (which holds index `i`) took the handles of its item: it
    /// decoded the item, and the handles it received are still pending (`TakeScope`), so
    /// that one killed before this store left their counts in flight. From here on they are
    /// this process's, and [`ClaimTable::untaken`] leaves the item alone.
    pub(crate) fn taken(&self, i: usize) {
        let (items, seats, _) = self.shared.words();
        assert!(i < items, "item {i} of {items}");
        let entry = self.words().at(seats * SEAT_WORDS + i * ENTRY_WORDS);
        entry.store(entry.load(Ordering::Relaxed) | TAKEN, Ordering::Release);
    }

    /// Gives back (decodes and drops, in the process that made the table) the handles of
    /// the claimed items that no worker took and no result was written for, once: those of
    /// items held by reaped workers (marked lost), and with `all_gone` (no worker of the
    /// call can still run: every seat answered, or every worker waited for), every other
    /// one too (claimed and never marked: [`Reaped::Unsure`] resolved; held by a worker
    /// `terminate` killed before it took the handles). Each item so given back is marked
    /// taken.
    pub(crate) fn untaken(&self, all_gone: bool) {
        let Some(drop) = self.drop_item.filter(|_| self.inputs_hold_handles()) else { return };
        let (_, seats, _) = self.shared.words();
        let cells = self.words();
        for i in 0..self.claimed() {
            let entry = cells.at(seats * SEAT_WORDS + i * ENTRY_WORDS);
            let state = entry.load(Ordering::Acquire);
            let ours = state & (TAKEN | DONE) == 0 && (state & LOST != 0 || all_gone);
            if ours && entry.compare_exchange(state, state | TAKEN, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                drop(self.input(i));
            }
        }
    }

    /// Whether some item holds handles.
    pub(crate) fn inputs_hold_handles(&self) -> bool {
        self.shared.input_handles.load(Ordering::Relaxed) != 0
    }

    /// Whether some result holds handles.
    pub(crate) fn results_hold_handles(&self) -> bool {
        self.shared.handles.load(Ordering::Acquire) != 0
    }

    /// Frees the results' own blocks (those too large for their entry): called once, by the
    /// parent, after it read the results; the entries read as unwritten after (when some
    /// result had a block).
    pub(crate) fn release_results(&self) {
        // A block still filling is a worker's (one `terminate` killed, maybe not dead yet):
        // `reap_all` frees it once every worker is gone.
        self.free_result_blocks(false);
    }

    /// What the worker in `seat` held when it died (see [`Reaped`]). Called once its death
    /// is known and before another worker takes the same seat; a block it was filling is
    /// freed.
    pub(crate) fn reap_seat(&self, seat: usize) -> Reaped {
        let (items, seats, _) = self.shared.words();
        let owner = (seat % seats.max(1)) as u64;
        let cells = self.words();
        let named = cells.at(owner as usize * SEAT_WORDS).load(Ordering::Acquire) as usize;
        let Some(i) = named.checked_sub(1).filter(|i| *i < items) else { return Reaped::Nothing };
        let entry = seats * SEAT_WORDS + i * ENTRY_WORDS;
        let state = cells.at(entry).load(Ordering::Acquire);
        if state & (DONE | LOST) != 0 {
            return Reaped::Nothing;
        }
        if state & HELD != 0 {
            if (state & OWNER_MASK) >> OWNER_SHIFT != owner {
                // Another seat claimed it after this one named it.
                return Reaped::Nothing;
            }
            let off = cells.at(entry + 1).load(Ordering::Acquire);
            if state & FILLING != 0 && off != 0 {
                Heap::get().free(off, (state & LEN_MASK) as usize);
            }
        } else {
            if (self.shared.next.load(Ordering::Acquire) as usize) <= i {
                // Named, never claimed.
                return Reaped::Nothing;
            }
            let others_name_it = (0..seats)
                .filter(|s| *s as u64 != owner)
                .any(|s| cells.at(s * SEAT_WORDS).load(Ordering::Acquire) as usize == i + 1);
            if others_name_it {
                return Reaped::Unsure(i);
            }
        }
        // Whether its worker took the item's handles stays known (`untaken`).
        cells.at(entry).store(LOST | state & TAKEN, Ordering::Release);
        Reaped::Held(i)
    }

    /// Frees every result block left in the table: those of workers killed while filling
    /// them, and those published after [`ClaimTable::release_results`]. Only once no worker
    /// of the call can be running (after `terminate`, every worker waited for).
    pub(crate) fn reap_all(&self) {
        self.free_result_blocks(true);
    }

    /// Frees the result blocks of published entries and, with `filling`, of entries whose
    /// block was being filled; the entries read as unwritten (and taken) after.
    fn free_result_blocks(&self, filling: bool) {
        if self.shared.spilled.load(Ordering::Acquire) == 0 {
            return;
        }
        let (items, seats, _) = self.shared.words();
        let heap = Heap::get();
        let cells = self.words();
        for i in 0..items {
            let entry = seats * SEAT_WORDS + i * ENTRY_WORDS;
            if !filling && cells.at(entry).load(Ordering::Acquire) & DONE == 0 {
                continue;
            }
            // Unwritten from now on, and taken: `untaken` never gives its item back.
            let state = cells.at(entry).swap(TAKEN, Ordering::AcqRel);
            let off = cells.at(entry + 1).load(Ordering::Acquire);
            // A filling entry's offset is 0 until its allocation recorded the block.
            if (filling && state & FILLING != 0 && off != 0) || state & (DONE | SPILLED) == DONE | SPILLED {
                heap.free(off, (state & LEN_MASK) as usize);
            }
        }
    }

    /// Forgets the handles counted in messages (see [`Shared::forget_lost_messages`]).
    pub(crate) fn forget_lost_messages(&self) -> u32 {
        self.shared.forget_lost_messages()
    }
}

/// The result entries of a [`ClaimTable`] (see [`ClaimTable::results`]).
pub(crate) struct Results<'a> {
    /// The entries' words.
    states: super::Cells<'a, AtomicU64>,
    /// The same entries, as bytes (for the inline results).
    bytes: super::Cells<'a, u8>,
    heap: &'static Heap,
}

impl<'a> Results<'a> {
    /// How many entries.
    pub(crate) fn len(&self) -> usize {
        self.states.len() / ENTRY_WORDS
    }

    /// The result of index `i` once written: how, and its bytes (as
    /// [`ClaimTable::result`]).
    pub(crate) fn get(&self, i: usize) -> Option<(Written, &'a [u8])> {
        let state = self.states.at(i * ENTRY_WORDS).load(Ordering::Acquire);
        if state & DONE == 0 {
            return None;
        }
        let len = (state & LEN_MASK) as usize;
        let written = Written::of((state >> KIND_SHIFT) & 0xff);
        let bytes = if state & SPILLED != 0 {
            let off = self.states.at(i * ENTRY_WORDS + 1).load(Ordering::Relaxed);
            // SAFETY: as in `ClaimTable::result`: written whole before the state word,
            // freed only after the parent read it.
            unsafe { std::slice::from_raw_parts(self.heap.ptr(off), len) }
        } else {
            let inline = self.bytes.range((i * ENTRY_WORDS + 1) * 8, len.min(INLINE));
            // SAFETY: written before the state word, never again.
            unsafe { inline.as_slice() }
        };
        Some((written, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of `items` one-byte items for `seats` seats.
    fn table(items: usize, seats: usize) -> ClaimTable {
        let input: Vec<u8> = (0..items as u8).collect();
        let ends: Vec<u64> = (1..=items as u64).collect();
        ClaimTable::new(&input, &ends, seats, false, |_| {}).unwrap()
    }

    impl ClaimTable {
        fn seat_word(&self, seat: usize) -> &AtomicU64 {
            self.words().at(seat * SEAT_WORDS)
        }

        fn entry_word(&self, i: usize, word: usize) -> &AtomicU64 {
            let (_, seats, _) = self.shared.words();
            self.words().at(seats * SEAT_WORDS + i * ENTRY_WORDS + word)
        }
    }

    #[test]
    fn items_encoded_straight_into_a_table_read_as_those_of_a_copied_one() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        {
            let items: [&[u8]; 4] = [b"a", b"", b"bcd", b"ef"];
            let input = items.concat();
            let ends = [1, 1, 4, 6];
            let copied = ClaimTable::new(&input, &ends, 2, false, |_| {}).unwrap();
            let write = |i: usize, room: &mut [u8]| {
                room.get_mut(..items[i].len())?.copy_from_slice(items[i]);
                Some(items[i].len())
            };
            let encoded = ClaimTable::encoded(4, 6, 2, |_| {}, write).unwrap().expect("the table");
            for (i, item) in items.iter().enumerate() {
                assert_eq!(encoded.input(i), copied.input(i));
                assert_eq!(encoded.input(i), *item);
            }
            assert_eq!(encoded.claim(0), Some(0));
            // Fewer bytes, or more, than said, or an item that gives up: no table.
            assert!(ClaimTable::encoded(4, 7, 2, |_| {}, write).unwrap().is_none());
            assert!(ClaimTable::encoded(4, 5, 2, |_| {}, write).unwrap().is_none());
            assert!(
                ClaimTable::encoded(4, 6, 2, |_| {}, |i, room| write(i, room).filter(|_| i < 3)).unwrap().is_none()
            );
        }
        assert_eq!(heap.in_use(), before, "the tables were freed");
    }

    #[test]
    fn a_dead_seat_is_reaped_for_what_it_held_and_nothing_else() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        {
            let t = table(8, 3);
            // Seat 0 holds index 0 (claimed and marked): reaped once, then nothing.
            assert_eq!(t.claim(0), Some(0));
            assert_eq!(t.reap_seat(0), Reaped::Held(0));
            assert_eq!(t.reap_seat(0), Reaped::Nothing);
            // Seat 1 published its result: nothing.
            assert_eq!(t.claim(1), Some(1));
            t.put(1, Written::Value, &[1], false).unwrap();
            assert_eq!(t.reap_seat(1), Reaped::Nothing);
            // Seat 2 died filling a result block (as `put` leaves it at
            // `pool.claims.allocated`): reaped, and the block freed.
            assert_eq!(t.claim(2), Some(2));
            let with_table = heap.in_use();
            let off = heap.alloc(100).unwrap();
            t.entry_word(2, 1).store(off, Ordering::Relaxed);
            let held = t.entry_word(2, 0).load(Ordering::Relaxed);
            t.entry_word(2, 0).store(held | FILLING | 100, Ordering::Release);
            assert_eq!(t.reap_seat(2), Reaped::Held(2));
            assert_eq!(heap.in_use(), with_table, "the block was freed");
            // Seat 0 died between its claim of 3 and the mark, no other seat naming 3.
            assert_eq!(t.claim(0), Some(3));
            t.entry_word(3, 0).store(0, Ordering::Relaxed);
            assert_eq!(t.reap_seat(0), Reaped::Held(3));
            // Seat 1 is between its claim of 4 and the mark, while seat 0 (dead) names 4
            // too, as before a failed CAS: either may hold it.
            assert_eq!(t.claim(1), Some(4));
            let mark = t.entry_word(4, 0).swap(0, Ordering::Relaxed);
            t.seat_word(0).store(5, Ordering::Relaxed);
            assert_eq!(t.reap_seat(0), Reaped::Unsure(4));
            // Once seat 1 marked it, it is seat 1's alone.
            t.entry_word(4, 0).store(mark, Ordering::Relaxed);
            assert_eq!(t.reap_seat(0), Reaped::Nothing);
            // Seat 2 named 5 and died before its claim: nothing.
            t.seat_word(2).store(6, Ordering::Relaxed);
            assert_eq!(t.reap_seat(2), Reaped::Nothing);
            assert_eq!(t.claim(2), Some(5), "5 is still there to claim");
            t.release_results();
        }
        assert_eq!(heap.in_use(), before);
    }

    #[test]
    fn a_seat_whose_worker_named_the_last_index_and_died_unclaimed_still_claims_it() {
        let _serial = crate::shm::heap_test_lock();
        let t = table(3, 2);
        assert_eq!(t.claim(0), Some(0));
        assert_eq!(t.claim(1), Some(1));
        // Seat 0's worker named 2 and died before its CAS; its replacement takes the seat
        // (nothing to reap) and its guess, one past the end, is only a guess.
        t.seat_word(0).store(3, Ordering::Relaxed);
        assert_eq!(t.reap_seat(0), Reaped::Nothing);
        assert_eq!(t.claim(0), Some(2));
        // A guess above the counter, and one below it, both give the next index.
        let t = table(4, 2);
        t.seat_word(0).store(3, Ordering::Relaxed);
        assert_eq!(t.claim(0), Some(0));
        assert_eq!(t.claim(1), Some(1));
        assert_eq!(t.claim(0), Some(2));
        assert_eq!(t.claim(0), Some(3));
        assert_eq!(t.claim(0), None);
        assert_eq!(t.claim(1), None);
    }

    #[test]
    fn the_items_no_worker_took_are_given_back_once() {
        let _serial = crate::shm::heap_test_lock();
        thread_local! {
            static GIVEN: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let given = || GIVEN.with(|g| g.borrow().clone());
        let t = ClaimTable::new(&[0, 1, 2, 3, 4, 5], &[1, 2, 3, 4, 5, 6], 2, true, |bytes| {
            GIVEN.with(|g| g.borrow_mut().push(bytes[0]))
        })
        .unwrap();
        // 0: held by a dead seat before it took the handles; 1: taken, then the seat died;
        // 2: taken and written; 3: claimed, never marked (its claimer died); 4: held by a
        // seat not reaped (killed by `terminate`) before it took the handles; 5: unclaimed.
        assert_eq!(t.claim(0), Some(0));
        assert_eq!(t.claim(1), Some(1));
        t.taken(1);
        assert_eq!(t.reap_seat(0), Reaped::Held(0));
        assert_eq!(t.reap_seat(1), Reaped::Held(1));
        assert_eq!(t.claim(0), Some(2));
        t.taken(2);
        // A result with a block of its own: `release_results` frees it and clears the entry.
        t.put(2, Written::Value, &[2; 100], false).unwrap();
        assert_eq!(t.claim(1), Some(3));
        t.entry_word(3, 0).store(0, Ordering::Relaxed);
        assert_eq!(t.claim(0), Some(4));
        // While workers may still run, only what a reaped seat held.
        t.untaken(false);
        assert_eq!(given(), [0]);
        // The rest, taken back, is the caller's to drop.
        assert_eq!(t.take_rest(), 5..6);
        // Once none can run, the unmarked claim and the unreaped hold too; never one twice.
        t.untaken(true);
        t.untaken(true);
        assert_eq!(given(), [0, 3, 4]);
        // A released result's entry reads unwritten, and still taken.
        t.release_results();
        assert_eq!(t.result(2), None);
        t.untaken(true);
        assert_eq!(given(), [0, 3, 4]);
    }
}
