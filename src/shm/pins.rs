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
//! The records sit at [`ANNOUNCE_AT`] in the heap's reserved part, `CAPACITY` of them; a
//! process claims one at its first pin (a free one, else one whose owner is dead: a
//! `/proc` read per record looked at, once per process) and keeps it for its life; its
//! reaper gives it back ([`forget`]). Should every record belong to a live process, a
//! process pins anonymously: it counts itself in the heap's anonymous pinners while it is
//! pinned, and no pin of the family is resolved while that count is not 0 (a process
//! killed so pinned brings the old residual back for the family's life).

use std::sync::atomic::{AtomicU64, Ordering};

use super::crash::crash_point;
use super::heap::Heap;
use crate::sys::{self, ProcId};

/// Where the records start: the heap's header is below, allocations above `ANNOUNCE_AT +
/// CAPACITY * 64` (the heap's `RESERVED`).
pub(crate) const ANNOUNCE_AT: usize = 64 * 1024;
/// How many processes can announce at once.
pub(crate) const CAPACITY: usize = 1024;
/// Announcements per process: threads pinning at once (a pin inside a pin, `Holders::pinned`
/// running a side's undo, takes two).
const SLOTS: usize = 6;

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

fn owner_word(me: ProcId) -> u64 {
    u64::from(me.pid) | (me.start & 0xffff_ffff) << 32
}

/// The record this process claimed (its index + 1, 0: none) and the process that claimed
/// it: a fork child finds its parent's pid there and claims its own.
static MINE: AtomicU64 = AtomicU64::new(0);

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
    // Acquire: the record's claim (its owner, start, cleared slots, the records' top),
    // made by whichever thread of this process claimed it, happens before this thread's
    // announcement and pin, so whoever resolves the pin sees the whole claim.
    let mine = MINE.load(Ordering::Acquire);
    let index = if mine >> 32 == u64::from(me.pid) && mine as u32 != 0 {
        Some(mine as u32 as usize - 1)
    } else {
        claim(heap, me)
    };
    let Some(index) = index else {
        heap.anonymous_pins().fetch_add(1, Ordering::AcqRel);
        return Announced { slot: None };
    };
    let record = &heap.pin_records()[index];
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

/// Claims a record for this process (cold: once per process).
#[cold]
fn claim(heap: &'static Heap, me: ProcId) -> Option<usize> {
    heap.pin_claims().fetch_add(1, Ordering::Relaxed);
    let records = heap.pin_records();
    let word = owner_word(me);
    let mut taken = None;
    for (i, r) in records.iter().enumerate() {
        if r.owner.load(Ordering::Relaxed) == 0
            && r.owner.compare_exchange(0, word, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            taken = Some(i);
            break;
        }
    }
    if taken.is_none() {
        for (i, r) in records.iter().enumerate() {
            let owner = r.owner.load(Ordering::Acquire);
            if owner != 0
                && owner_dead(owner, r.start.load(Ordering::Relaxed))
                && r.owner.compare_exchange(owner, word, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            {
                taken = Some(i);
                break;
            }
        }
    }
    let i = taken?;
    let r = &records[i];
    // Claimed, not yet whole: a reader takes a record whose start does not match its owner
    // word for a live one.
    crash_point!("pins.record.claimed");
    r.start.store(me.start, Ordering::Relaxed);
    for slot in &r.slots {
        slot.store(0, Ordering::Relaxed);
    }
    heap.pin_records_top().fetch_max(i as u64 + 1, Ordering::AcqRel);
    // Release: see `announce`.
    MINE.store(u64::from(me.pid) << 32 | (i as u64 + 1), Ordering::Release);
    Some(i)
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
/// at `table`, or some process pins anonymously. Reads `/proc` for each record naming it.
/// Call with the table's lock held, after loading its in-flight word with acquire.
pub(crate) fn announced_by_live(heap: &Heap, table: u64) -> bool {
    if heap.anonymous_pins().load(Ordering::Acquire) != 0 {
        return true;
    }
    let me = owner_word(sys::me());
    let top = heap.pin_records_top().load(Ordering::Acquire) as usize;
    heap.pin_records()[..top.min(CAPACITY)].iter().any(|r| {
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
    let top = heap.pin_records_top().load(Ordering::Acquire) as usize;
    for r in &heap.pin_records()[..top.min(CAPACITY)] {
        let owner = r.owner.load(Ordering::Acquire);
        if owner != 0 && owner as u32 == pid && owner_dead(owner, r.start.load(Ordering::Relaxed)) {
            let _ = r.owner.compare_exchange(owner, 0, Ordering::AcqRel, Ordering::Relaxed);
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
}
