//! Pin announcements: what lets a survivor tell a dead receiver's pin from a live one's.
//!
//! A receive pins an object (one anonymous unit in its table's in-flight word, see
//! `holders`) from the compare-and-swap that takes its count until it holds the table's
//! lock. A process killed in that window leaves the pin, and a pin is nobody's: the object
//! was never freed. Now every pinner first *announces* the table it is about to pin, in a
//! slot of its process's record (one 64-byte record per process, in the heap's reserved
//! part), and clears the slot after its unpin. Whoever would free an object but finds pins
//! left (the last holder's `finish`), or prunes the dead of a table with pins, looks at the
//! announcements under the table's lock ([`announced_by_live`]): when no live process
//! announces the table, every pin in the word it loaded is a dead process's, and one
//! compare-and-swap from that word takes them all away.
//!
//! Why that is exact, with no attribution of a pin to a process:
//!
//! * A live pin is always announced: the slot's store comes before the pin's
//!   compare-and-swap (whose release orders it), and the resolver loads the word with
//!   acquire before it reads the slots, so a pin it sees comes with its announcement.
//! * A pin taken after the resolver's load changes the word, and its compare-and-swap
//!   fails. Under the table's lock no pin is given back (every unpin happens under it), so
//!   the word cannot come back to the loaded value: no ABA.
//! * An announcement without a pin (a process killed after announcing, a live one not yet
//!   pinned, one stale after its unpin) only defers the resolution to the next look; a
//!   dead process's announcements are ignored, and so a record of a dead process can be
//!   taken over by another whole, slots cleared.
//!
//! The records sit at [`ANNOUNCE_AT`] in the heap's reserved part, `CAPACITY` of them, and
//! beyond them in blocks of `BLOCK_RECORDS` taken from the heap as the family grows
//! (linked from the heap's header, at the head, never freed: the heap's books). A process
//! claims one at its first pin (a free one, else one whose owner is dead: a `/proc` read
//! per record looked at, at most `DEAD_LOOKS` of them, once per process; else a new block,
//! whose first record is its maker's) and keeps it for its life; its reaper gives it back
//! ([`forget`]). Only should the heap have no room for a new block does a process pin
//! anonymously: it counts itself in the heap's anonymous pinners while it is pinned, and
//! no pin of the family is resolved while that count is not 0 (a process killed so pinned
//! brings the old residual back for the family's life). It remembers that it found no
//! record, and looks again only once the heap's pin epoch says one may have become free.
//!
//! A block is made under the heap's `pin_blocks_lock`: recorded as being made from the
//! moment the allocator hands it out (zeroed, its first record its maker's) until it is
//! linked. A maker killed in between leaves it to the next holder of the lock, which
//! clears it and links it (`lock_blocks`); a maker killed after linking leaves only its
//! record, whose owner is dead.

use std::sync::atomic::{AtomicU64, Ordering};

use super::crash::crash_point;
use super::heap::Heap;
use super::mutex::RawGuard;
use crate::sys::{self, ProcId};

/// Where the records start: the heap's header is below, allocations above `ANNOUNCE_AT +
/// CAPACITY * 64` (the heap's `RESERVED`).
pub(crate) const ANNOUNCE_AT: usize = 64 * 1024;
/// How many records the reserved part holds.
pub(crate) const CAPACITY: usize = 1024;
/// Announcements per process: threads pinning at once (a pin inside a pin, `Holders::pinned`
/// running a side's undo, takes two).
const SLOTS: usize = 6;
/// Records of a block taken from the heap (64 KiB, the largest small block, its first line
/// the link).
const BLOCK_RECORDS: usize = 1023;
/// Records of live owners a claim reads `/proc` for before it makes a block instead: a
/// family of N pinners costs each new one at most this many reads, not N.
const DEAD_LOOKS: usize = 64;

/// One process's announcements.
#[repr(C, align(64))]
pub(crate) struct Record {
    /// `pid | (start as u32) << 32` of the owner (0: free), claimed by compare-and-swap.
    owner: AtomicU64,
    /// The owner's full start time, written right after its claim.
    start: AtomicU64,
    /// Offsets (in the heap) of the tables its threads are pinning (0: none).
    slots: [AtomicU64; SLOTS],
}

const _: () = assert!(std::mem::size_of::<Record>() == 64);

/// A block of records beyond the reserved part's.
#[repr(C, align(64))]
struct Block {
    /// The next block (0: none), written before the block is linked, then never.
    next: AtomicU64,
    _line: [AtomicU64; 7],
    records: [Record; BLOCK_RECORDS],
}

const _: () = assert!(std::mem::size_of::<Block>() == 64 * 1024);

fn block_at(heap: &Heap, off: u64) -> &Block {
    // SAFETY: `off` is a block of records (linked, or recorded as being made), allocated by
    // `grow` with a Block's size and never freed; a Block is atomics only, valid for any
    // bytes, and 64-byte aligned (a 64 KiB small block).
    unsafe { &*heap.ptr(off).cast::<Block>() }
}

fn record_at(heap: &'static Heap, off: u64) -> &'static Record {
    // SAFETY: `off` is a record's offset (`offset_of`: in the reserved part or in a block
    // of records, neither ever freed); a Record is atomics only, 64-byte aligned there.
    unsafe { &*heap.ptr(off).cast::<Record>() }
}

/// The offset in the heap of a record.
fn offset_of(heap: &Heap, record: &Record) -> u64 {
    (record as *const Record as usize - heap.ptr(0) as usize) as u64
}

/// The blocks of records beyond the reserved part's, newest first.
fn blocks(heap: &Heap) -> impl Iterator<Item = &Block> {
    let (head, _, _) = heap.pin_blocks();
    let first = head.load(Ordering::Acquire);
    std::iter::successors((first != 0).then(|| block_at(heap, first)), move |b| {
        let next = b.next.load(Ordering::Acquire);
        (next != 0).then(|| block_at(heap, next))
    })
}

/// Every record that was ever claimed (and some free ones): the reserved part's up to its
/// top, then every block's.
fn records(heap: &Heap) -> impl Iterator<Item = &Record> {
    let top = heap.pin_records_top().load(Ordering::Acquire) as usize;
    heap.pin_records()[..top.min(CAPACITY)].iter().chain(blocks(heap).flat_map(|b| b.records.iter()))
}

fn owner_word(me: ProcId) -> u64 {
    u64::from(me.pid) | (me.start & 0xffff_ffff) << 32
}

/// The record this process claimed (its offset in the heap / 64, 0: none: heaps are at
/// most 2^38 bytes) and the process that claimed it: a fork child finds its parent's pid
/// there and claims its own.
static MINE: AtomicU64 = AtomicU64::new(0);

/// `pid << 32 | epoch` (its low 32 bits): the process `pid` found no record to claim when
/// the heap's pin epoch was `epoch`, and pins anonymously without looking again until the
/// epoch changes.
static NONE_AT: AtomicU64 = AtomicU64::new(0);

/// An announcement: cleared when dropped (after the unpin).
#[must_use]
pub(crate) struct Announced {
    slot: Option<&'static AtomicU64>,
}

impl Drop for Announced {
    fn drop(&mut self) {
        match self.slot {
            Some(slot) => slot.store(0, Ordering::Release),
            None => {
                if let Some(heap) = Heap::try_get() {
                    heap.anonymous_pins().fetch_sub(1, Ordering::Release);
                }
            }
        }
    }
}

/// Announces that this thread is about to pin the table at `table` (its offset in the
/// heap). Keep the result until the pin is given back.
#[inline]
pub(crate) fn announce(table: u64) -> Announced {
    let heap = Heap::get();
    let me = sys::me();
    // Acquire: the record's claim (its owner, start, cleared slots, the records' top or
    // its block's link), made by whichever thread of this process claimed it, happens
    // before this thread's announcement and pin, so whoever resolves the pin sees the
    // whole claim.
    let mine = MINE.load(Ordering::Acquire);
    let record = if mine >> 32 == u64::from(me.pid) && mine as u32 != 0 {
        Some(record_at(heap, (mine & 0xffff_ffff) << 6))
    } else {
        claim_unless_none(heap, me)
    };
    let Some(record) = record else {
        heap.anonymous_pins().fetch_add(1, Ordering::AcqRel);
        return Announced { slot: None };
    };
    for _ in 0..SLOT_LOOKS {
        for slot in &record.slots {
            if slot.load(Ordering::Relaxed) == 0
                && slot.compare_exchange(0, table, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                // Ordered before the pin by the pin's compare-and-swap (release).
                return Announced { slot: Some(slot) };
            }
        }
        // As many threads of this process pinning: they unpin as soon as they lock.
        std::thread::yield_now();
    }
    // Every slot still taken (threads nested in `Holders::pinned`, or slots a panic kept):
    // never wait for one, pin anonymously.
    heap.anonymous_pins().fetch_add(1, Ordering::AcqRel);
    Announced { slot: None }
}

/// How many times a pin looks for a free slot of its process's record, yielding between
/// looks, before it pins anonymously.
const SLOT_LOOKS: usize = 16;

/// Claims a record for this process, unless it found none since the last time a record
/// may have become free (cold: once per process, unless the heap is full).
#[cold]
fn claim_unless_none(heap: &'static Heap, me: ProcId) -> Option<&'static Record> {
    // Loaded before the claim looks: a record given back meanwhile changes it.
    let epoch = heap.pin_epoch().load(Ordering::Acquire);
    let none_at = u64::from(me.pid) << 32 | (epoch & 0xffff_ffff);
    if NONE_AT.load(Ordering::Relaxed) == none_at {
        return None;
    }
    let record = claim(heap, me);
    if record.is_none() {
        NONE_AT.store(none_at, Ordering::Relaxed);
    }
    record
}

/// Whether this process took `r`, free.
fn take_free(r: &Record, word: u64) -> bool {
    r.owner.load(Ordering::Relaxed) == 0
        && r.owner.compare_exchange(0, word, Ordering::AcqRel, Ordering::Relaxed).is_ok()
}

/// Claims a record for this process: a free one, else a dead owner's, else the first of a
/// new block.
fn claim(heap: &'static Heap, me: ProcId) -> Option<&'static Record> {
    heap.pin_claims().fetch_add(1, Ordering::Relaxed);
    let word = owner_word(me);
    let all = || heap.pin_records().iter().chain(blocks(heap).flat_map(|b| b.records.iter()));
    let mut taken = all().find(|r| take_free(r, word));
    if taken.is_none() {
        // At most `DEAD_LOOKS` owners looked at (a `/proc` read each), from a place that
        // depends on the pid (claimers together look at different ones).
        let from = me.pid as usize % all().count();
        taken = all()
            .skip(from)
            .chain(all().take(from))
            .filter(|r| r.owner.load(Ordering::Relaxed) != 0)
            .take(DEAD_LOOKS)
            .find(|r| {
                let owner = r.owner.load(Ordering::Acquire);
                owner != 0
                    && owner_dead(owner, r.start.load(Ordering::Relaxed))
                    && r.owner.compare_exchange(owner, word, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            });
    }
    let r = match taken {
        Some(r) => r,
        None => grow(heap, me)?,
    };
    // Claimed, not yet whole: a reader takes a record whose start does not match its owner
    // word for a live one.
    crash_point!("pins.record.claimed");
    r.start.store(me.start, Ordering::Relaxed);
    for slot in &r.slots {
        slot.store(0, Ordering::Relaxed);
    }
    let off = offset_of(heap, r);
    if off < (ANNOUNCE_AT + CAPACITY * 64) as u64 {
        let i = (off - ANNOUNCE_AT as u64) / 64;
        heap.pin_records_top().fetch_max(i + 1, Ordering::AcqRel);
    }
    // Release: see `announce`.
    MINE.store(u64::from(me.pid) << 32 | off >> 6, Ordering::Release);
    Some(r)
}

/// Every record taken by a live process (as far as a claim looked): a free record of the
/// newest block (another process made one meanwhile), else a new block, made and linked
/// under the blocks' lock, its first record this process's. None when the heap is full.
#[cold]
fn grow(heap: &'static Heap, me: ProcId) -> Option<&'static Record> {
    let word = owner_word(me);
    let _g = lock_blocks(heap);
    if let Some(r) = blocks(heap).next().and_then(|b| b.records.iter().find(|r| take_free(r, word))) {
        return Some(r);
    }
    let (head, _, making) = heap.pin_blocks();
    let off = heap.alloc_uncounted_into(std::mem::size_of::<Block>(), making).ok()?;
    let block = block_at(heap, off);
    let r = &block.records[0];
    r.owner.store(word, Ordering::Relaxed);
    r.start.store(me.start, Ordering::Relaxed);
    crash_point!("pins.block.made");
    block.next.store(head.load(Ordering::Relaxed), Ordering::Relaxed);
    head.store(off, Ordering::Release);
    crash_point!("pins.block.linked");
    making.store(0, Ordering::Relaxed);
    heap.pin_epoch().fetch_add(1, Ordering::Release);
    Some(r)
}

/// Takes the blocks' lock, and first finishes the block a process killed while it held
/// the lock was making (the lock is robust: a dead holder's is taken over): cleared (its
/// maker may have died before it zeroed it) and linked, unless it was linked already (at
/// the head: blocks are linked there, under this lock). A holder clears the record before
/// it lets go of the lock, so a record found here is a dead holder's.
fn lock_blocks(heap: &Heap) -> RawGuard<'_> {
    let (head, lock, making) = heap.pin_blocks();
    let guard = RawGuard::lock(lock);
    let off = making.load(Ordering::Relaxed);
    if off != 0 {
        if head.load(Ordering::Relaxed) != off {
            let block = block_at(heap, off);
            for r in &block.records {
                r.owner.store(0, Ordering::Relaxed);
                r.start.store(0, Ordering::Relaxed);
                for slot in &r.slots {
                    slot.store(0, Ordering::Relaxed);
                }
            }
            block.next.store(head.load(Ordering::Relaxed), Ordering::Relaxed);
            head.store(off, Ordering::Release);
            heap.pin_epoch().fetch_add(1, Ordering::Release);
        }
        making.store(0, Ordering::Relaxed);
    }
    guard
}

/// Bytes of the heap's books that are blocks of records (the tests' check that none is
/// lost).
pub(crate) fn books(heap: &Heap) -> u64 {
    let _g = lock_blocks(heap);
    (blocks(heap).count() * std::mem::size_of::<Block>()) as u64
}

/// Whether the owner of a record (its word and start) is known dead. A record being
/// claimed (its start not written yet, or a dead owner's still there) is its claimer's:
/// dead when no process has its pid (a claimer killed before it wrote its start leaves a
/// record that is taken over, and whose old slots are ignored, once its pid is gone).
fn owner_dead(owner: u64, start: u64) -> bool {
    let start = if owner >> 32 == start & 0xffff_ffff { start } else { 0 };
    !sys::process_alive(owner as u32, start)
}

/// Whether a live process (this one included: another of its threads) announces the table
/// at `table`, or some process pins anonymously. Reads every record ever claimed (64 bytes
/// each), and `/proc` for each naming the table. Call with the table's lock held, after
/// loading its in-flight word with acquire.
pub(crate) fn announced_by_live(heap: &Heap, table: u64) -> bool {
    if heap.anonymous_pins().load(Ordering::Acquire) != 0 {
        return true;
    }
    let me = owner_word(sys::me());
    records(heap).any(|r| {
        let owner = r.owner.load(Ordering::Acquire);
        owner != 0
            && r.slots.iter().any(|s| s.load(Ordering::Acquire) == table)
            && (owner == me || !owner_dead(owner, r.start.load(Ordering::Relaxed)))
    })
}

/// The process `pid` ended (its reaper says so): its record, if any, is free again once
/// its owner is known dead. Its announcements go with it (a dead process's pins are
/// resolved without them).
pub(crate) fn forget(pid: u32) {
    let Some(heap) = Heap::try_get() else { return };
    for r in records(heap) {
        let owner = r.owner.load(Ordering::Acquire);
        if owner != 0
            && owner as u32 == pid
            && owner_dead(owner, r.start.load(Ordering::Relaxed))
            && r.owner.compare_exchange(owner, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            heap.pin_epoch().fetch_add(1, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With every slot of its process's record taken (threads nested in `pinned`, or
    /// slots a panic kept), a pin does not wait for one: it pins anonymously.
    #[test]
    fn a_seventh_announcement_does_not_wait_for_ever() {
        let _serial = crate::shm::heap_test_lock();
        let held: Vec<Announced> = (0..SLOTS as u64).map(|i| announce(1 << 20 | i << 6)).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(announce(1 << 21));
            let _ = tx.send(());
        });
        let done = rx.recv_timeout(std::time::Duration::from_secs(30));
        drop(held);
        assert!(done.is_ok(), "the seventh announcement still waits (all six slots held)");
    }

    /// A process that found no record to claim (the heap had no room for a block) pins
    /// anonymously at once while the pin epoch says none was given back since (review29
    /// finding 5: it claimed again at every pin, up to 1024 `/proc` reads each).
    #[test]
    fn a_process_that_found_no_record_looks_again_only_once_one_may_be_free() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let me = sys::me();
        loop {
            let epoch = heap.pin_epoch().load(Ordering::Acquire);
            NONE_AT.store(u64::from(me.pid) << 32 | (epoch & 0xffff_ffff), Ordering::Relaxed);
            let found = claim_unless_none(heap, me);
            NONE_AT.store(0, Ordering::Relaxed);
            // A reap elsewhere in the family (a test's child) gave a record back meanwhile:
            // the claim looked again, as it should; try again.
            if heap.pin_epoch().load(Ordering::Acquire) != epoch {
                continue;
            }
            assert!(found.is_none(), "a claim ran though no record was given back since none was found");
            break;
        }
    }
}
