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
//!   dead process's announcements are ignored by the resolvers, and so a record of a dead
//!   process can be taken over by another whole. Its slots that announce tables' pins are
//!   cleared at the takeover; those that announce looks are adopted by the claim, which
//!   lets go of each as the dead owner's reaper would (`let_go_of_adopted`: its reaper
//!   finds no record of it any more), or keeps it, counted and announced as its own, while
//!   a stopped process holds that object's released lock ([`keep`]).
//! * A pin of an object's own holder table under its thread's look at the object announces
//!   itself in the look's slot ([`lend`]: the table's offset, marked [`LENT_PIN`], written
//!   over the look's, the look's written back after the unpin), so a receive takes one
//!   slot, not two. The table's resolvers read only tables' offsets, so a look never counts
//!   as a pin (its own resolver's least of all: review90 M1); the resolvers of looks
//!   ([`look_announced_by_live`]) read a lent slot as its look, which never stops being
//!   announced, and a pin with no look as no look. A lent slot is written only by its
//!   thread (its pins, then its look's let-go), and every pin that borrows it is given back
//!   before the look lets go: the pin may borrow any look of its thread at the object, but
//!   each is a local of a frame around the pin (checked, by an abort, at the let-go:
//!   [`unlend`]).
//!
//! The records sit at [`ANNOUNCE_AT`] in the heap's reserved part, `CAPACITY` of them, and
//! beyond them in blocks of `BLOCK_RECORDS` taken from the heap as the family grows
//! (linked from the heap's header, at the head, never freed: the heap's books). A process
//! claims one at its first pin (a free one, else one whose owner is dead: a `/proc` read
//! per record looked at, at most `DEAD_LOOKS` of them; else, under the blocks' lock, any
//! record freed meanwhile or any dead owner's, every owner looked at once, and only then a
//! new block, whose first record is its maker's) and keeps it for its life; its reaper
//! gives it back ([`forget`]). A process pins anonymously when the heap has no room for a
//! new block, or when a live holder keeps the blocks' lock past `BLOCKS_WAIT` (stopped,
//! say: a first pin never waits for ever): it counts itself in the heap's anonymous
//! pinners while it is pinned, and no pin of the family is resolved while that count is
//! not 0 (a process killed so pinned brings the old residual back for the family's life).
//! One that found the heap full remembers it, and looks again once the heap's pin epoch
//! says a record may have become free, or after 2, 4, ... up to `NONE_PINS_MAX`
//! anonymous pins (room for a block may have come back, an owner may have died with no
//! reaper to bump the epoch).
//!
//! A claim that takes a dead owner's record over lets go of the looks it adopts with it
//! (`let_go_of_adopted`), inside the process's first pin: it waits for a released table's
//! lock only while its holder runs, and for a crowded start (`MAX_RELEASED` looks) at most
//! `LOOKS_WAIT`. A holder found stopped (after `LOOKS_WAIT`) leaves the look counted and
//! announced (`off + 1`) in the claimer's record ([`KEPT`]): each later announcement of
//! the process tries its let-go again, never waiting, and if the process ends first its
//! reaper lets go of it ([`forget`] reads it as any announced look). So a first pin never
//! waits for ever on a stopped process (review118 M1); the cost, only then, is one of the
//! record's six slots and the object's block, kept until the lock is free at an
//! announcement, or until the process's end.
//!
//! A block is made under the heap's `pin_blocks_lock` (`chain`): recorded as being made
//! from the moment the allocator hands it out (zeroed, its first record its maker's) until
//! it is linked. A maker killed in between leaves it to the next holder of the lock, which
//! clears it and links it (`lock_blocks`); a maker killed after linking leaves only its
//! record, whose owner is dead.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use super::chain::Chain;
use super::crash::crash_point;
use super::heap::Heap;
use super::mutex::RawGuard;
use super::wait::Deadline;
use crate::sys::{self, ProcId};

/// Where the records start: the heap's header is below, allocations above `ANNOUNCE_AT +
/// CAPACITY * 64` (the heap's `RESERVED`).
pub(crate) const ANNOUNCE_AT: usize = 64 * 1024;
/// How many records the reserved part holds.
pub(crate) const CAPACITY: usize = 1024;
/// Announcements per process: threads pinning at once (a pin inside a pin, `Holders::pinned`
/// running a side's undo, takes two).
pub(super) const SLOTS: usize = 6;
/// Records of a block taken from the heap (64 KiB, the largest small block, its first line
/// the link).
const BLOCK_RECORDS: usize = 1023;
/// Records of live owners a claim reads `/proc` for before it goes to the blocks' lock: a
/// family of N pinners costs each new one at most this many reads, not N, but for the claim
/// that makes a block, which reads `/proc` once for every owned record first (N reads once
/// per 1023 claims that find no free record: about one a claim).
const DEAD_LOOKS: usize = 64;
/// How long a claim waits for the blocks' lock (held by a maker for a 64 KiB zeroing, a
/// page fault or two and a look at every owner) before it pins anonymously, unremembered:
/// a stopped holder delays a first pin by this much, never for ever.
const BLOCKS_WAIT: Duration = Duration::from_millis(100);
/// The most anonymous pins a process that found the heap full makes before it looks again
/// with the pin epoch unchanged.
const NONE_PINS_MAX: u32 = 1024;

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

/// Every record: the reserved part's, then every block's.
fn all(heap: &Heap) -> impl Iterator<Item = &Record> {
    heap.pin_records().iter().chain(blocks(heap).flat_map(|b| b.records.iter()))
}

fn owner_word(me: ProcId) -> u64 {
    u64::from(me.pid) | (me.start & 0xffff_ffff) << 32
}

/// The record this process claimed (its offset in the heap / 64, 0: none: heaps are at
/// most 2^38 bytes) and the process that claimed it: a fork child finds its parent's pid
/// there and claims its own.
static MINE: AtomicU64 = AtomicU64::new(0);

/// `pid << 32 | epoch` (its low 32 bits): the process `pid` found the heap full (no record
/// to claim, no room for a block) when the heap's pin epoch was `epoch`, and pins
/// anonymously without looking again until the epoch changes, or until it made
/// [`NONE_PINS`]'s count of anonymous pins.
static NONE_AT: AtomicU64 = AtomicU64::new(0);
/// `k << 32 | n`: `n` anonymous pins made since [`NONE_AT`] was stored; the process looks
/// again once `n` reaches `2^k` (`k` one more at each look that finds the heap still full,
/// `2^k` at most [`NONE_PINS_MAX`]).
static NONE_PINS: AtomicU64 = AtomicU64::new(0);

/// `pid << 32 | slots` (a bit for each of its record's slots): the looks at released starts
/// that the process `pid` adopted with a dead owner's record and kept, counted and
/// announced (`off + 1`) in those slots, since a stopped process held the released table's
/// lock (`object::let_go_unless_stopped`, review118 M1). Each of its announcements tries
/// their let-go again, never waiting ([`let_go_of_kept`]); its reaper lets go of those left
/// at its end (they are its announced looks). A fork child finds its parent's pid here, and
/// clears it: the slots are its parent's.
static KEPT: AtomicU64 = AtomicU64::new(0);

/// Keeps `look`, the announcement of a look this process adopted and could not let go of
/// yet ([`KEPT`]): its slot goes on announcing it, to be let go of at a later announcement.
pub(super) fn keep(look: Announced) {
    // Not dropped: the slot keeps its `off + 1` (its reaper's, at worst).
    let slot = look.slot;
    std::mem::forget(look);
    let Some(slot) = slot else { return };
    let pid = u64::from(sys::me().pid);
    let mine = MINE.load(Ordering::Acquire);
    let record = record_at(Heap::get(), (mine & 0xffff_ffff) << 6);
    let Some(i) = record.slots.iter().position(|s| std::ptr::eq(s, slot)) else { return };
    let mut k = KEPT.load(Ordering::Relaxed);
    loop {
        let base = if k >> 32 == pid { k } else { pid << 32 };
        match KEPT.compare_exchange_weak(k, base | 1 << i, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => k = now,
        }
    }
}

/// Tries again the let-go of each look this process kept ([`KEPT`]), in `record`: one
/// thread at a time (the one that takes the bits), never waiting; a look whose lock is
/// still held is kept again.
#[cold]
fn let_go_of_kept(heap: &'static Heap, record: &'static Record, pid: u32) {
    let k = KEPT.load(Ordering::Acquire);
    if k >> 32 != u64::from(pid) {
        // A fork child: its parent's slots.
        let _ = KEPT.compare_exchange(k, 0, Ordering::Relaxed, Ordering::Relaxed);
        return;
    }
    if KEPT.compare_exchange(k, u64::from(pid) << 32, Ordering::Acquire, Ordering::Relaxed).is_err() {
        // Another thread of this process took them (or kept one more: the next try).
        return;
    }
    let kept = record.slots.iter().enumerate().filter(|&(i, _)| k & 1 << i != 0);
    retry_round(kept, |(_, slot), look| {
        let off = slot.load(Ordering::Relaxed) - 1;
        let announced = Announced { slot: Some(slot), back: 0, entry: 0, _thread: PhantomData };
        super::object::let_go_of_kept_look(heap, off, announced, look);
    });
}

/// One round of [`let_go_of_kept`]: `retry` for each of `kept` in turn, each told whether
/// this round looks at the holders of the locks it finds held (is one dead?). That is
/// decided once for the round ([`RawGuard::looks_due`](super::mutex::RawGuard::looks_due):
/// once per grace at most in the process) and given to every kept look alike. Decided per
/// look, the first kept look took each due turn, and a later one whose holder died was
/// never looked at while the first one's holder stayed stopped (review124 M2).
pub(super) fn retry_round<T>(kept: impl IntoIterator<Item = T>, mut retry: impl FnMut(T, bool)) {
    let look = super::mutex::RawGuard::looks_due();
    for one in kept {
        retry(one, look);
    }
}

/// An announcement: its slot given back when dropped (after the unpin).
#[must_use]
pub(crate) struct Announced {
    /// `None`: counted in the heap's anonymous pinners.
    slot: Option<&'static AtomicU64>,
    /// What the slot holds again when this is dropped: 0 (free), or the announcement of the
    /// look that lent it ([`lend`]). With no slot: its unit in the heap's anonymous pinners
    /// (1 for a table's pin, [`ANONYMOUS_LOOK`] for a look; 0 once [`letting_go`] took it
    /// out).
    back: u64,
    /// Not 0: `slot` is one of the heap's entries of anonymous looks letting go (an
    /// anonymous look's, [`letting_go`]), holding this, and cleared only from it (a reaper
    /// may have taken the entry from a process of the same pid: [`forget`]).
    entry: u64,
    /// Not `Send`: a slot lent by a look is given back on the look's thread, before the
    /// look lets go ([`unlend`]); dropped on another thread, it could come after (review92
    /// L2, review99 L2).
    _thread: PhantomData<*const ()>,
}

impl Announced {
    /// Whether it is counted in the heap's anonymous pinners (the tests' look).
    #[cfg(test)]
    pub(super) fn is_anonymous(&self) -> bool {
        self.slot.is_none()
    }
}

impl Drop for Announced {
    fn drop(&mut self) {
        match self.slot {
            Some(entry) if self.entry != 0 => {
                let _ = entry.compare_exchange(self.entry, 0, Ordering::Release, Ordering::Relaxed);
            }
            Some(slot) => slot.store(self.back, Ordering::Release),
            None => {
                if let Some(heap) = Heap::try_get().filter(|_| self.back != 0) {
                    heap.anonymous_pins().fetch_sub(self.back, Ordering::Release);
                }
            }
        }
    }
}

/// How many looks of one thread at once lend their slots (a reap nests two or three: its
/// look, an argument's undo's, a dead sender's give-back's); the pins under a look beyond
/// them take slots of their own.
const LENDERS: usize = 4;

/// This thread's looks that lend their slot ([`lend`]), each in its own cells (a look
/// reads and writes its entry only, on every receive).
struct Lent {
    /// The offset of each one's object's own holder table (0: no look).
    tables: [Cell<u64>; LENDERS],
    /// Each one's slot.
    slots: [Cell<Option<&'static AtomicU64>>; LENDERS],
}

thread_local! {
    /// This thread's looks that lend their slot. No code of the crate's users runs while a
    /// look lasts, so none forks with one here but from a signal handler; the fork child
    /// handler empties it then ([`forget_lent_in_every_fork_child`]: a child would write
    /// its parent's record).
    static LENT: Lent = const {
        Lent { tables: [const { Cell::new(0) }; LENDERS], slots: [const { Cell::new(None) }; LENDERS] }
    };
}

/// A look's announcement (`look`, in a slot of its own: [`announce_own`]) lends its slot to
/// this thread's pins of its object's own holder table, at `table`, until [`unlend`]: such a
/// pin announces itself by writing the table's offset over the look's, and writes the
/// look's back after its unpin (review83 M2: a receive held two of its process's six slots,
/// a reap up to five, and a fourth receiving thread pinned anonymously). A look that
/// announced anonymously, or beyond [`LENDERS`], lends nothing. Resolvers of looks count a
/// slot so lent as the look's ([`look_announced_by_live`]).
#[inline]
pub(crate) fn lend(look: &Announced, table: u64) {
    let Some(slot) = look.slot else { return };
    LENT.with(|l| {
        if let Some(i) = l.tables.iter().position(|t| t.get() == 0) {
            l.slots[i].set(Some(slot));
            l.tables[i].set(table);
        }
    });
}

/// Ends a [`lend`], before the look's announcement goes: every pin that took the slot over
/// has given it back. That holds while this thread's looks are locals dropped in reverse
/// order of their making and none is moved into a table call: every look alive at a pin
/// then outlives it (the table call that pins borrows the table from one of them, and the
/// others are older, or locals of the frames around the call). A look that would let go
/// with a pin still in its slot aborts the process, in every build (review99 L1): its
/// let-go would free the slot under the pin, another thread's announcement take it, and the
/// pin's give-back write the look's value over that one, leaving a live pin of another
/// table unannounced (judged dead, its object freeable under it). A panic would not do:
/// its unwinding still drops the look's announcement.
#[inline]
pub(crate) fn unlend(look: &Announced) {
    let Some(slot) = look.slot else { return };
    LENT.with(|l| {
        let mine = |i: &usize| l.tables[*i].get() != 0 && l.slots[*i].get().is_some_and(|s| std::ptr::eq(s, slot));
        if let Some(i) = (0..LENDERS).find(mine) {
            // A look's announcement is odd, a table's even (a relaxed load of a line this
            // thread just wrote).
            if slot.load(Ordering::Relaxed) & 1 == 0 {
                lent_slot_still_pinned();
            }
            l.tables[i].set(0);
        }
    });
}

/// [`unlend`]'s check failed: a bug of this crate, which only ending the process now keeps
/// from becoming another thread's use after free.
#[cold]
#[inline(never)]
fn lent_slot_still_pinned() -> ! {
    /// Aborts on an unwind out of here as well.
    struct AbortOnDrop;
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            std::process::abort()
        }
    }
    let _abort = AbortOnDrop;
    // Not `eprintln!`, which panics when stderr fails (a pipe nobody reads any more: EPIPE),
    // and whose unwind would drop the look's announcement after all (review102 L1); nor
    // `io::stderr()`, whose lock a fork child can inherit held by another thread of its
    // parent, and wait on for ever (review105 L2): raw writes to fd 2.
    sys::write_to_stderr(
        b"multiproc: a look lets go with a pin still in its lent announcement slot (a bug); aborting\n",
    );
    std::process::abort()
}

/// Marks a pin's announcement in a slot its look lent ([`lend`]): the table's offset with
/// this bit set (a table's offset is a multiple of 8, a look's announcement odd). Resolvers
/// of the table read it as the table's ([`announced_by_live`]); resolvers of looks read it
/// as the look's, and the table's offset alone, a pin with no look at the object, as
/// nobody's look ([`look_announced_by_live`]; review99 L4: a release's let-go that met such
/// a pin kept the dead looks, and nobody let go of the block again).
pub(super) const LENT_PIN: u64 = 2;

/// Marks a look's announcement while it lets go of a released start (`off + LETTING_GO`
/// for a look at `off`, written over its `off + 1` under the released table's lock, cleared
/// after its count is taken away: [`letting_go`]). Odd, so that its reaper's [`forget`]
/// reads it as the look it is (`slot & !63`): a look killed inside its let-go is counted
/// still, and would otherwise be announced by nothing (review110 M1). No other reader takes
/// it for anything: not a look (resolvers of looks match `off + 1` or a lent pin, even),
/// not a table (a table's offset is a multiple of 8, and `(off + 3) & !LENT_PIN` is
/// `off + 1`), not a free lent slot (only its own thread's pins use it, and its look ended
/// the lend before the let-go: [`unlend`]).
const LETTING_GO: u64 = 3;

/// Marks `look`, the announcement of a look at the released start at `off`, as letting go
/// ([`LETTING_GO`]): call under the released table's lock, before its resolution, and drop
/// the announcement after the look's count is taken away. Its own let-go then counts it as
/// no live look, and its reaper, should it be killed in between, lets go of it.
///
/// A look with no slot (anonymous) leaves the heap's anonymous looks instead: counted
/// there, it took itself for a live look, kept the dead ones and left them for ever
/// (review91 L4: `an_anonymous_look_letting_go_last_keeps_no_block`). It then writes
/// itself, marked letting go and named by its pid (`pid << 40 | off + LETTING_GO`), into a
/// free entry of the heap's [`ANONYMOUS_LET_GOS`], cleared after its count is taken away:
/// killed in between, its count stays in the word, announced by nothing (so the next
/// let-go there takes it away as a dead look), and its reaper's [`forget`] lets go of it
/// from the entry, as of a record's slot. Before, an anonymous look had no record, so no
/// reaper, and as the last look its block leaked with the released table's lock held by the
/// dead process (review118 L1,
/// `an_anonymous_look_killed_inside_its_let_go_keeps_no_block`). The count is left before
/// the entry is written: killed between the two, the look has no reaper (the block leaks as
/// before, for a kill between two stores), where the other order would leave its unit in
/// the anonymous looks, which stops every let-go in the family from taking dead looks
/// away, for the family's life. With every entry taken, it has no reaper either.
pub(super) fn letting_go(look: &mut Announced, off: u64) {
    match look.slot {
        // Relaxed: read by this let-go's resolution (nobody else counts it), and by the
        // reaper after this process's end.
        Some(slot) => slot.store(off + LETTING_GO, Ordering::Relaxed),
        None => {
            let Some(heap) = Heap::try_get() else { return };
            if look.back != 0 {
                heap.anonymous_pins().fetch_sub(look.back, Ordering::Release);
            }
            look.back = 0;
            let mine = u64::from(sys::me().pid) << ENTRY_PID | (off + LETTING_GO);
            let free = |e: &&AtomicU64| {
                e.load(Ordering::Relaxed) == 0
                    && e.compare_exchange(0, mine, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            };
            if let Some(entry) = heap.anonymous_let_gos().iter().find(free) {
                look.slot = Some(entry);
                look.entry = mine;
            }
        }
    }
}

/// How many anonymous looks of the family at once are remembered while they let go of a
/// released start ([`letting_go`]): the heap's entries, read by their reapers ([`forget`]).
/// An anonymous look needs every slot of its process's record taken, or no record.
pub(crate) const ANONYMOUS_LET_GOS: usize = 8;
/// Where an anonymous let-go's entry holds its pid; below, the look's `off + LETTING_GO`
/// (a heap is at most 2^38 bytes).
const ENTRY_PID: u32 = 40;

/// An anonymous look's unit in the heap's anonymous pinners (`Heap::anonymous_pins`), whose
/// low 32 bits count tables' pins. The resolvers of looks read only the looks
/// ([`look_announced_by_live`]): a table's pin is no look (review91 L4: an anonymous pin
/// anywhere in the family at a released object's last let-go kept its dead looks for ever,
/// `an_anonymous_pin_at_the_last_let_go_keeps_no_block`). The resolvers of tables read
/// both, as before.
const ANONYMOUS_LOOK: u64 = 1 << 32;

/// An anonymous announcement of `table` (a look's, if odd), counted in the heap's anonymous
/// pinners.
fn anonymous(heap: &Heap, table: u64) -> Announced {
    let unit = if table & 1 == 1 { ANONYMOUS_LOOK } else { 1 };
    heap.anonymous_pins().fetch_add(unit, Ordering::AcqRel);
    Announced { slot: None, back: unit, entry: 0, _thread: PhantomData }
}

/// Announces that this thread is about to pin the table at `table` (its offset in the
/// heap). Keep the result until the pin is given back, and drop it on this thread before
/// the look it was lent by ([`lend`]) lets go. In the slot of a look of this thread at the
/// table's object whose slot no pin holds, else in one of its own: any such look will do,
/// not only the one the table call borrowed the table from (an older look at the object,
/// or one around a call through a held handle), since every look alive at the pin is a
/// local of a frame around it, and outlives it ([`unlend`]).
#[inline]
pub(crate) fn announce(table: u64) -> Announced {
    // Only this thread writes a slot its look lent (its pins, and the look's let-go). A
    // slot showing its look's announcement (odd) holds no pin.
    let lent = LENT.with(|l| {
        (0..LENDERS).rev().find_map(|i| {
            let slot = l.slots[i].get().filter(|_| l.tables[i].get() == table)?;
            (slot.load(Ordering::Relaxed) & 1 == 1).then_some(slot)
        })
    });
    match lent {
        Some(slot) => {
            let back = slot.load(Ordering::Relaxed);
            // Ordered before the pin by the pin's compare-and-swap (release), as a slot of
            // its own; the look stays announced (a resolver of looks reads either value).
            slot.store(table | LENT_PIN, Ordering::Relaxed);
            Announced { slot: Some(slot), back, entry: 0, _thread: PhantomData }
        }
        None => announce_own(table),
    }
}

/// Announces, as [`announce`] does, but always in a slot of its own (or anonymously): for
/// a look, and for a pin that a panic may leave behind its look (`Holders::pinned`).
#[inline]
pub(crate) fn announce_own(table: u64) -> Announced {
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
        return anonymous(heap, table);
    };
    // Looks adopted at the claim and kept (a stopped process held their lock): let go of at
    // the first announcement that finds the lock free.
    if KEPT.load(Ordering::Relaxed) as u32 != 0 {
        let_go_of_kept(heap, record, me.pid);
    }
    for _ in 0..SLOT_LOOKS {
        for slot in &record.slots {
            if slot.load(Ordering::Relaxed) == 0
                && slot.compare_exchange(0, table, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                // Ordered before the pin by the pin's compare-and-swap (release).
                return Announced { slot: Some(slot), back: 0, entry: 0, _thread: PhantomData };
            }
        }
        // As many threads of this process pinning: they unpin as soon as they lock.
        std::thread::yield_now();
    }
    // Every slot still taken (threads nested in `Holders::pinned`, or slots a panic kept):
    // never wait for one, pin anonymously.
    anonymous(heap, table)
}

/// How many times a pin looks for a free slot of its process's record, yielding between
/// looks, before it pins anonymously.
const SLOT_LOOKS: usize = 16;

/// Claims a record for this process, unless it found the heap full since the last time a
/// record may have become free, and fewer anonymous pins ago than it waits for (cold: once
/// per process, unless the heap is full).
#[cold]
fn claim_unless_none(heap: &'static Heap, me: ProcId) -> Option<&'static Record> {
    // Loaded before the claim looks: a record given back meanwhile changes it.
    let epoch = heap.pin_epoch().load(Ordering::Acquire);
    let none_at = u64::from(me.pid) << 32 | (epoch & 0xffff_ffff);
    let remembered = NONE_AT.load(Ordering::Relaxed);
    if remembered == none_at {
        let pins = NONE_PINS.fetch_add(1, Ordering::Relaxed) + 1;
        if pins & 0xffff_ffff < 1 << (pins >> 32) {
            return None;
        }
    }
    match claim(heap, me) {
        Ok(r) => Some(r),
        Err(NoRecord::Full) => {
            // Looks again after twice as many anonymous pins as last time (this process's
            // last: a fork child starts over).
            let k = if remembered >> 32 == u64::from(me.pid) {
                ((NONE_PINS.load(Ordering::Relaxed) >> 32) + 1).min(u64::from(NONE_PINS_MAX.ilog2()))
            } else {
                1
            };
            NONE_PINS.store(k << 32, Ordering::Relaxed);
            NONE_AT.store(none_at, Ordering::Relaxed);
            None
        }
        // Not remembered: the next pin tries again.
        Err(NoRecord::Busy) => None,
    }
}

/// Why a claim found no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoRecord {
    /// Every record taken by a live process, and no room in the heap for a block.
    Full,
    /// A live holder kept the blocks' lock past [`BLOCKS_WAIT`].
    Busy,
}

/// Raises the reserved part's top over `r` before this process takes it: a claimer killed
/// after its compare-and-swap (at `pins.record.claimed`) leaves a record below the top,
/// which its reaper's `forget` looks at. A top too high is harmless (scans skip free
/// records).
fn raise_top(heap: &Heap, r: &Record) {
    let off = offset_of(heap, r);
    if off < (ANNOUNCE_AT + CAPACITY * 64) as u64 {
        let above = (off - ANNOUNCE_AT as u64) / 64 + 1;
        let top = heap.pin_records_top();
        if top.load(Ordering::Relaxed) < above {
            top.fetch_max(above, Ordering::AcqRel);
        }
    }
}

/// Whether this process took `r`, free.
fn take_free(heap: &Heap, r: &Record, word: u64) -> bool {
    r.owner.load(Ordering::Relaxed) == 0 && {
        raise_top(heap, r);
        r.owner.compare_exchange(0, word, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }
}

/// Whether this process took `r` from a dead owner (a `/proc` read when it is owned).
fn take_dead(heap: &Heap, r: &Record, word: u64) -> bool {
    let owner = r.owner.load(Ordering::Acquire);
    owner != 0 && owner_dead(owner, r.start.load(Ordering::Relaxed)) && {
        raise_top(heap, r);
        r.owner.compare_exchange(owner, word, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }
}

/// Claims a record for this process: a free one, else a dead owner's, else the first of a
/// new block.
fn claim(heap: &'static Heap, me: ProcId) -> Result<&'static Record, NoRecord> {
    heap.pin_claims().fetch_add(1, Ordering::Relaxed);
    let word = owner_word(me);
    // With whether its owner was dead.
    let mut taken = all(heap).find(|r| take_free(heap, r, word)).map(|r| (r, false));
    if taken.is_none() {
        // At most `DEAD_LOOKS` owners looked at (a `/proc` read each), from a place that
        // depends on the pid (claimers together look at different ones); `grow` looks at
        // the others.
        let from = me.pid as usize % all(heap).count();
        taken = all(heap)
            .skip(from)
            .chain(all(heap).take(from))
            .filter(|r| r.owner.load(Ordering::Relaxed) != 0)
            .take(DEAD_LOOKS)
            .find(|r| take_dead(heap, r, word))
            .map(|r| (r, true));
    }
    let (r, dead) = match taken {
        Some(taken) => taken,
        None => grow(heap, me)?,
    };
    // Claimed (the top raised over it first), not yet whole: a reader takes a record whose
    // start does not match its owner word for a live one. Killed here: the dead owner's
    // slots are still in it, which this process's reaper lets go of as its own.
    crash_point!("pins.record.claimed");
    r.start.store(me.start, Ordering::Relaxed);
    // A dead owner's looks stay announced, as this process's (`off + 1`), until this claim
    // has let go of them below: its reaper finds no record of it any more.
    let mut adopted = [false; SLOTS];
    for (slot, adopted) in r.slots.iter().zip(&mut adopted) {
        let look = if dead { super::object::dead_look_at(heap, slot.load(Ordering::Relaxed)) } else { None };
        *adopted = look.is_some();
        slot.store(look.map_or(0, |off| off + 1), Ordering::Relaxed);
    }
    // Before this process can lend a slot (a look that lends has one of this record's).
    forget_lent_in_every_fork_child();
    // Release: see `announce`.
    MINE.store(u64::from(me.pid) << 32 | offset_of(heap, r) >> 6, Ordering::Release);
    if adopted.contains(&true) {
        let_go_of_adopted(heap, r, adopted);
    }
    Ok(r)
}

/// Lets go of the looks a claim took over with a dead owner's record (`adopted`: their
/// slots, each announcing `off + 1`), as the dead owner's reaper would have
/// (`object::let_go_of_adopted_look`): the reaper's `forget` finds no record of it now, and
/// a claim used to clear them with the rest, a dead look at a released start left for ever
/// (hnd81's residual: `a_dead_look_in_a_record_taken_over_before_its_reaper_keeps_no_block`).
/// After the claim is whole (`MINE`): each let-go announces in its slot, as this process's,
/// and clears it once done. A claimer killed before a let-go leaves that look announced in
/// its own record, which its reaper lets go of in turn. A let-go whose released table's
/// lock is held by a stopped process keeps its look so too, counted, with the claimer alive
/// ([`keep`]): its next announcements try again (review118 M1: the claim waited for the
/// lock for as long as its holder stayed stopped).
#[cold]
fn let_go_of_adopted(heap: &Heap, r: &'static Record, adopted: [bool; SLOTS]) {
    crash_point!("pins.record.adopted");
    for (slot, _) in r.slots.iter().zip(adopted).filter(|&(_, adopted)| adopted) {
        let off = slot.load(Ordering::Relaxed) - 1;
        let announced = Announced { slot: Some(slot), back: 0, entry: 0, _thread: PhantomData };
        super::object::let_go_of_adopted_look(heap, off, announced);
    }
}

/// Empties the forking thread's lent looks ([`LENT`]) in every fork child (registered once,
/// and inherited by the children): a child forked under a look (a program's bare `fork`
/// from a signal handler) would otherwise lend its parent's slot to its own pins, and write
/// into its parent's record (review99 L2). The child does not own the look: its copy's
/// announcement is its parent's. Registered at `init`, single-threaded, before the fork
/// server, and else at the first claim, never waiting ([`sys::once_without_waiting`]).
pub(crate) fn forget_lent_in_every_fork_child() {
    extern "C" fn forget_lent() {
        LENT.with(|l| l.tables.iter().for_each(|t| t.set(0)));
    }
    // SAFETY: the handler makes one `Cell` store per entry (the table's; a stale `slots`
    // cell is never read without it) to a `const` thread-local with no destructor: a plain
    // TLS access, no lock, no allocation, no unwinding (`extern "C"`).
    sys::once_without_waiting(&LENT_HANDLER, || unsafe { sys::in_every_fork_child(forget_lent) });
}

/// Set once [`forget_lent_in_every_fork_child`] registered its handler in this process (or
/// in the process this one is a fork of).
static LENT_HANDLER: sys::Registration = sys::Registration::new();

/// Whether this process registered (or inherited) the lent looks' fork handler: the tests'
/// check that a family process registers it at its boot, not at its first claim.
pub(crate) fn lent_handler_registered() -> bool {
    LENT_HANDLER.made()
}

/// Every record taken by a live process (as far as a claim looked). Under the blocks'
/// lock: a record freed since (anywhere), else a dead owner's (every owner looked at, once
/// per block made: those outside every claim's window, and those that no reaper forgets,
/// are taken here before the family grows), else a new block, made and linked, its first
/// record this process's.
#[cold]
fn grow(heap: &'static Heap, me: ProcId) -> Result<(&'static Record, bool), NoRecord> {
    let word = owner_word(me);
    let _g = lock_blocks(heap, Deadline::after(BLOCKS_WAIT)).ok_or(NoRecord::Busy)?;
    if let Some(taken) = all(heap)
        .find(|r| take_free(heap, r, word))
        .map(|r| (r, false))
        .or_else(|| all(heap).find(|r| take_dead(heap, r, word)).map(|r| (r, true)))
    {
        return Ok(taken);
    }
    let chain = blocks_chain(heap);
    let off = chain.make(std::mem::size_of::<Block>()).ok_or(NoRecord::Full)?;
    let block = block_at(heap, off);
    let r = &block.records[0];
    r.owner.store(word, Ordering::Relaxed);
    r.start.store(me.start, Ordering::Relaxed);
    crash_point!("pins.block.made");
    chain.link(off, &block.next, || {
        // Before the crash point: a maker killed after the link leaves no epoch unbumped.
        heap.pin_epoch().fetch_add(1, Ordering::Release);
        crash_point!("pins.block.linked");
    });
    Ok((r, false))
}

/// The blocks of records, made under `pin_blocks_lock` (see `chain`).
fn blocks_chain(heap: &Heap) -> Chain<'_> {
    let (head, lock, making) = heap.pin_blocks();
    Chain { heap, head, lock, making }
}

/// Takes the blocks' lock (`None`: a live holder kept it past `deadline`), and first
/// finishes the block a process killed while it held the lock was making (`chain`):
/// cleared and linked, unless it was linked already; the epoch bumped either way (the dead
/// maker may have died before its bump).
fn lock_blocks(heap: &Heap, deadline: Deadline) -> Option<RawGuard<'_>> {
    let clear = |off| {
        let block = block_at(heap, off);
        for r in &block.records {
            r.owner.store(0, Ordering::Relaxed);
            r.start.store(0, Ordering::Relaxed);
            for slot in &r.slots {
                slot.store(0, Ordering::Relaxed);
            }
        }
        &block.next
    };
    blocks_chain(heap).lock(deadline, clear, || {
        heap.pin_epoch().fetch_add(1, Ordering::Release);
    })
}

/// Bytes of the heap's books that are blocks of records (the tests' check that none is
/// lost).
pub(crate) fn books(heap: &Heap) -> u64 {
    let _g = lock_blocks(heap, Deadline::NEVER);
    (blocks(heap).count() * std::mem::size_of::<Block>()) as u64
}

/// Whether the owner of a record (its word and start) is known dead. A record being
/// claimed (its start not written yet, or a dead owner's still there) is its claimer's:
/// dead when no process has its pid (a claimer killed before it wrote its start leaves a
/// record that is taken over once its pid is gone; the looks its slots still announce, the
/// previous owner's, are adopted by the next claimer: `let_go_of_adopted`).
fn owner_dead(owner: u64, start: u64) -> bool {
    let start = if owner >> 32 == start & 0xffff_ffff { start } else { 0 };
    !sys::process_alive(owner as u32, start)
}

/// Whether a live process (this one included: another of its threads) announces the table
/// at `table`, or some process pins anonymously. Reads the reserved part's records up to
/// its top and every block's record, claimed or not (64 bytes each), and `/proc` for each
/// owned one naming the table. Call with the table's lock held, after
/// loading its in-flight word with acquire.
pub(crate) fn announced_by_live(heap: &Heap, table: u64) -> bool {
    any_live(heap, u64::MAX, |s| s & !LENT_PIN == table)
}

/// Whether a live process announces a look as `look` ([`announced_by_live`]'s read), or
/// a pin of the object's own holder table at `table` in a slot its look lent ([`lend`],
/// [`LENT_PIN`]): that look is announced so until the pin gives the slot back. A pin of
/// that table with no look at the object (in a slot of its own) is no look.
///
/// An anonymous look anywhere in the family counts; an anonymous pin of a table does not
/// ([`ANONYMOUS_LOOK`]): a look is always announced itself, in a slot (its own, or lent to
/// a pin, or marked letting go) or anonymously, whatever its pins do.
pub(crate) fn look_announced_by_live(heap: &Heap, look: u64, table: u64) -> bool {
    any_live(heap, !(ANONYMOUS_LOOK - 1), |s| s == look || s == table | LENT_PIN)
}

/// Whether some process pins anonymously (as `anonymous` reads the heap's count), or a live
/// one has a slot that `announces`.
fn any_live(heap: &Heap, anonymous: u64, announces: impl Fn(u64) -> bool) -> bool {
    if heap.anonymous_pins().load(Ordering::Acquire) & anonymous != 0 {
        return true;
    }
    let me = owner_word(sys::me());
    records(heap).any(|r| {
        let owner = r.owner.load(Ordering::Acquire);
        owner != 0
            && r.slots.iter().any(|s| announces(s.load(Ordering::Acquire)))
            && (owner == me || !owner_dead(owner, r.start.load(Ordering::Relaxed)))
    })
}

/// The process `pid` ended (its reaper says so): its record, if any, is free again once
/// its owner is known dead. Its announcements go with it (a dead process's pins are
/// resolved without them); each look it announced at a released start is let go of once
/// more by this reaper (`object::let_go_of_dead_announcement`), which takes the dead looks
/// away: a last holder killed in its release after it counted its own look, beside dead
/// looks only, left them for ever (hnd71 item 3). A look is announced in three forms, all
/// read so: `off + 1`, `off + LETTING_GO` (killed inside its let-go: review110 M1), and
/// its object's own table's offset marked [`LENT_PIN`] (killed while a pin borrowed its
/// slot: review110 M2); a pin in a slot of its own (a table's offset alone) is no look.
pub(crate) fn forget(pid: u32) {
    let Some(heap) = Heap::try_get() else { return };
    for r in records(heap) {
        let owner = r.owner.load(Ordering::Acquire);
        if owner == 0 || owner as u32 != pid || !owner_dead(owner, r.start.load(Ordering::Relaxed)) {
            continue;
        }
        // Read before the record is let go of (its next owner clears the slots); its owner,
        // dead, writes none any more.
        let slots: [u64; SLOTS] = std::array::from_fn(|i| r.slots[i].load(Ordering::Acquire));
        if r.owner.compare_exchange(owner, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            heap.pin_epoch().fetch_add(1, Ordering::Release);
            for slot in slots {
                super::object::let_go_of_dead_announcement(heap, slot);
            }
        }
    }
    // An anonymous look killed inside its let-go ([`letting_go`]): its entry, taken by one
    // compare-and-swap (another reaper of the pid acts once). Only once no process has the
    // pid: a live one of the same pid (reused) may be letting go; its entry waits for its
    // own reaper. A stale entry (killed after the count went) is one look more and one
    // fewer, as a stale slot.
    for entry in heap.anonymous_let_gos() {
        let e = entry.load(Ordering::Acquire);
        if e != 0
            && e >> ENTRY_PID == u64::from(pid)
            && !sys::process_alive(pid, 0)
            && entry.compare_exchange(e, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            super::object::let_go_of_dead_announcement(heap, e & ((1 << ENTRY_PID) - 1));
        }
    }
}

/// Every record free or a dead owner's, taken for this (live) process, as by as many live
/// processes: a claim finds none (the tests' way to make a claim take a given record).
#[cfg(test)]
pub(super) fn take_every_record(heap: &Heap) -> Vec<&Record> {
    let me = sys::me();
    let live = owner_word(me);
    let mut mine = Vec::new();
    for r in all(heap) {
        if take_free(heap, r, live) || take_dead(heap, r, live) {
            r.start.store(me.start, Ordering::Relaxed);
            mine.push(r);
        }
    }
    mine
}

/// Gives back the records [`take_every_record`] took.
#[cfg(test)]
pub(super) fn give_back(mine: &[&Record]) {
    let live = owner_word(sys::me());
    for r in mine {
        r.owner.compare_exchange(live, 0, Ordering::AcqRel, Ordering::Relaxed).ok();
    }
}

/// The offset of the record that the process `pid` owns, if any (the tests' look).
#[cfg(test)]
pub(super) fn record_of(heap: &Heap, pid: u32) -> Option<u64> {
    records(heap).find(|r| r.owner.load(Ordering::Acquire) as u32 == pid).map(|r| offset_of(heap, r))
}

/// The pid owning the record at `off` (0: free), as [`record_of`] gave it.
#[cfg(test)]
pub(super) fn owner_pid_of(heap: &'static Heap, off: u64) -> u32 {
    record_at(heap, off).owner.load(Ordering::Acquire) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::sync::atomic::AtomicBool;

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

    /// review83 M2: a pin of a table under its thread's look at the table's object takes
    /// the look's slot, not one of its own, and gives it back to the look; a resolver of the
    /// table finds the pin, never the look (review90 M1: a reap under its look never took a
    /// dead pin away), and a resolver of looks finds the look throughout.
    #[test]
    fn a_pin_under_its_look_borrows_the_looks_slot() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let (table, look) = (1 << 22 | 32, 1 << 22 | 1);
        let mut held: Vec<Announced> = (0..SLOTS as u64 - 1).map(|i| announce_own(1 << 21 | i << 6)).collect();
        let mine = announce_own(look);
        lend(&mine, table);
        let anonymous = heap.anonymous_pins().load(Ordering::Acquire);
        let idle = (announced_by_live(heap, table), look_announced_by_live(heap, look, table));
        let pin = announce(table);
        let pinned = (announced_by_live(heap, table), look_announced_by_live(heap, look, table));
        let borrowed = pin.slot.is_some_and(|s| mine.slot.is_some_and(|m| std::ptr::eq(s, m)));
        let anonymous = heap.anonymous_pins().load(Ordering::Acquire) - anonymous;
        drop(pin);
        let back = (announced_by_live(heap, table), look_announced_by_live(heap, look, table));
        unlend(&mine);
        drop(mine);
        held.clear();
        assert!(borrowed && anonymous == 0, "the pin took a slot of its own, or pinned anonymously");
        assert_eq!(idle, (false, true), "a look with no pin (table announced, look announced)");
        assert_eq!(pinned, (true, true), "a look's pin (table announced, look announced)");
        assert_eq!(back, (false, true), "a look whose pin was given back (table announced, look announced)");
    }

    /// review99 L4: a pin of an object's own table made with no look at the object (in a
    /// slot of its own: a held handle's, a restore's at a crowded start) read, to a
    /// resolver of looks, as a look whose slot a pin took over: a release's let-go that met
    /// one kept the dead looks, and nobody let go again (the block leaked).
    #[test]
    fn a_pin_with_no_look_is_no_look() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let (table, look) = (1 << 22 | 224, 1 << 22 | 193);
        let pin = announce(table);
        let seen = (announced_by_live(heap, table), look_announced_by_live(heap, look, table));
        drop(pin);
        assert_eq!(seen, (true, false), "a pin with no look (table announced, look announced)");
    }

    /// review92 H1 (on fix70's design): a process may own two records (two threads' first
    /// announcements at once). Another thread's pin in the second record is found while
    /// this thread's idle look at the object is in the first: nothing is left out of any
    /// record's count. And a pin under two looks of this thread at one object let go of out
    /// of order takes, and gives back, the slot of the look still there.
    #[test]
    fn a_pin_in_a_second_record_of_this_process_or_under_looks_let_go_out_of_order_is_found() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let me = sys::me();
        let (table, look) = (1 << 23 | 32, 1 << 23 | 1);
        let first = announce_own(look);
        lend(&first, table);
        let second = all(heap).find(|r| take_free(heap, r, owner_word(me))).expect("a free record");
        second.start.store(me.start, Ordering::Relaxed);
        // Another thread's pin, announced in the second record.
        second.slots[0].store(table, Ordering::Release);
        let other_pin = announced_by_live(heap, table);
        second.slots[0].store(0, Ordering::Release);
        let none = announced_by_live(heap, table);
        second.owner.store(0, Ordering::Release);
        // A second look at the object, the first let go of before it.
        let later = announce_own(look);
        lend(&later, table);
        unlend(&first);
        drop(first);
        let pin = announce(table);
        let borrowed = pin.slot.is_some_and(|s| later.slot.is_some_and(|m| std::ptr::eq(s, m)));
        let pinned = announced_by_live(heap, table);
        drop(pin);
        let given_back = later.slot.map(|s| s.load(Ordering::Relaxed));
        unlend(&later);
        drop(later);
        assert!(other_pin, "another thread's pin in this process's second record went unseen");
        assert!(!none, "an idle look announced its table");
        assert!(borrowed && pinned, "the pin under the later look: its slot taken {borrowed}, found {pinned}");
        assert_eq!(given_back, Some(look), "the later look's slot after the pin");
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
            // As a claim that found the heap full leaves them.
            NONE_AT.store(u64::from(me.pid) << 32 | (epoch & 0xffff_ffff), Ordering::Relaxed);
            NONE_PINS.store(1 << 32, Ordering::Relaxed);
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

    /// A reaped process's pid (dead, not yet reused).
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    /// A claimer killed at `pins.record.claimed` on the record at the top (every record
    /// below taken) leaves it owned by a dead process, its start unwritten: its reaper's
    /// `forget` must give it back (review30a finding 1: the top was raised after the crash
    /// point, and `forget` looks only up to the top).
    #[test]
    fn a_claimer_killed_at_the_top_is_forgotten_by_its_reaper() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let pid = dead_pid();
        let dead = owner_word(ProcId { pid, start: 77 });
        let top = heap.pin_records_top().load(Ordering::Acquire) as usize;
        let recs = heap.pin_records();
        // The top only rises: a test of this process that took every record (below) may
        // have raised it to the end of the reserved part, and then no record is past it
        // (ci84: the two ran in that order). The case needs one; there is none to make.
        let Some(i) = (top..CAPACITY).find(|&i| take_free(heap, &recs[i], dead)) else {
            assert_eq!(top, CAPACITY, "no free record past a top below the end");
            println!("skipped: every reserved record was taken by an earlier test of this process");
            return;
        };
        forget(pid);
        let owner = recs[i].owner.load(Ordering::Acquire);
        recs[i].owner.store(0, Ordering::Release);
        assert_eq!(owner, 0, "record {i} (top {top}) of dead pid {pid} still owned after its reaper's forget");
    }

    /// Every record taken by a live process but one, a dead owner's, outside the claimer's
    /// window of `DEAD_LOOKS`: the claim takes it rather than make a block (review30a
    /// finding 2: the family grew for ever past records no reaper forgets).
    #[test]
    fn a_dead_owners_record_outside_the_window_is_taken_before_a_block_is_made() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let mine = take_every_record(heap);
        let count = all(heap).count();
        let claimer = ProcId { pid: dead_pid(), start: 5 };
        let from = claimer.pid as usize % count;
        // A record of ours far from the window: its owner dies.
        let far = mine.iter().copied().find(|r| {
            let k = all(heap).position(|x| std::ptr::eq(x, *r)).unwrap();
            (k + count - from) % count > 4 * DEAD_LOOKS
        });
        let far = far.expect("a record of ours outside the window");
        far.owner.store(owner_word(ProcId { pid: dead_pid(), start: 9 }), Ordering::Release);
        far.start.store(9, Ordering::Relaxed);
        let blocks_before = blocks(heap).count();
        let saved = MINE.load(Ordering::Relaxed);
        let got = claim(heap, claimer).expect("a record");
        MINE.store(saved, Ordering::Relaxed);
        let took_dead = std::ptr::eq(got, far);
        let blocks_after = blocks(heap).count();
        got.owner.store(0, Ordering::Release);
        far.owner.store(0, Ordering::Release);
        give_back(&mine);
        assert!(
            took_dead,
            "a dead owner's record was passed over; the claim made a block ({blocks_before} blocks before, {blocks_after} now)"
        );
    }

    /// A live holder of `pin_blocks_lock` that never lets go (a `sleep` stopped by
    /// `SIGSTOP`, named the holder, as a maker stopped at `stop:pins.block.made` would be)
    /// and every record taken by a live process: a first pin does not wait for ever, and
    /// does not remember the heap full (review30a finding 3: it waited with no deadline,
    /// inside a receive or a reap).
    #[test]
    fn a_stopped_holder_of_the_blocks_lock_does_not_make_a_first_pin_wait() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let mut sleeper = std::process::Command::new("sleep").arg("600").spawn().unwrap();
        let pid = sleeper.id();
        // SAFETY: kill(2) takes no pointer; the pid is our own child's, not yet waited for.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        let holder = super::super::mutex::Owner { id: pid, start: sys::process_start_time(pid).unwrap() };
        let (_, lock, _) = heap.pin_blocks();
        assert!(lock.try_lock(holder), "pin_blocks_lock held already");
        let claimer = ProcId { pid: dead_pid(), start: 5 };
        let saved = (MINE.load(Ordering::Relaxed), NONE_AT.load(Ordering::Relaxed));
        let mut outcome = None;
        for _ in 0..5 {
            let mine = take_every_record(heap);
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(claim_unless_none(Heap::get(), claimer));
            });
            let got = rx.recv_timeout(std::time::Duration::from_secs(60));
            give_back(&mine);
            if let Ok(Some(r)) = got {
                // A record given back meanwhile (a reap elsewhere in the family): again.
                r.owner.store(0, Ordering::Release);
                continue;
            }
            outcome = Some(got.is_ok());
            break;
        }
        let none_at = NONE_AT.load(Ordering::Relaxed);
        MINE.store(saved.0, Ordering::Relaxed);
        NONE_AT.store(saved.1, Ordering::Relaxed);
        lock.unlock();
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        assert_eq!(outcome, Some(true), "a first pin still waits for a stopped holder of pin_blocks_lock");
        assert_ne!(none_at >> 32, u64::from(claimer.pid), "a lock held too long remembered as the heap full");
    }

    /// A process that found the heap full, with the pin epoch unchanged since (no reap, no
    /// block linked), looks again after at most `NONE_PINS_MAX` anonymous pins (review30a
    /// finding 4: room coming back, or a death nobody reaps, bumps no epoch, and it pinned
    /// anonymously for its life).
    #[test]
    fn a_process_that_found_the_heap_full_looks_again_after_some_anonymous_pins() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let claimer = ProcId { pid: dead_pid(), start: 5 };
        let saved = MINE.load(Ordering::Relaxed);
        loop {
            let epoch = heap.pin_epoch().load(Ordering::Acquire);
            // As the tenth look in a row that found the heap full leaves them.
            NONE_AT.store(u64::from(claimer.pid) << 32 | (epoch & 0xffff_ffff), Ordering::Relaxed);
            NONE_PINS.store(u64::from(NONE_PINS_MAX.ilog2()) << 32, Ordering::Relaxed);
            let mut anonymous = 0;
            let mut found = None;
            while anonymous < 2 * NONE_PINS_MAX {
                match claim_unless_none(heap, claimer) {
                    Some(r) => {
                        found = Some(r);
                        break;
                    }
                    None => anonymous += 1,
                }
            }
            MINE.store(saved, Ordering::Relaxed);
            NONE_AT.store(0, Ordering::Relaxed);
            if let Some(r) = found {
                r.owner.store(0, Ordering::Release);
            }
            if heap.pin_epoch().load(Ordering::Acquire) != epoch {
                continue;
            }
            assert!(found.is_some(), "{anonymous} anonymous pins, and no look again with the epoch unchanged");
            assert_eq!(anonymous, NONE_PINS_MAX - 1, "anonymous pins before the look");
            break;
        }
    }

    /// Runs `child` in a fork child of this process, and returns how it ended. A child that
    /// has not ended within a minute (hung on a lock or a `Once` another thread of this
    /// test binary held at the fork) is killed, and the test fails (review102 L4). The
    /// child ends with `exit_group`, flushing nothing: `exit_now` takes stdout's lock, which
    /// the test harness's thread may hold at the fork as it prints another test's result,
    /// and the child (and the grandchild of a nested call, orphaned when its parent is
    /// killed) then waited on it for ever.
    fn in_a_child(child: impl FnOnce() -> i32) -> Option<sys::Ended> {
        match sys::fork().unwrap() {
            sys::Forked::Child => sys::exit_group(child()),
            sys::Forked::Parent(pid) => {
                let pidfd = sys::pidfd_open(pid).unwrap();
                let deadline = Deadline::after(Duration::from_secs(60));
                let ended = loop {
                    let readable = sys::poll_readable(&[pidfd.as_fd()], deadline.remaining()).unwrap();
                    if readable[0] {
                        break sys::reap_pidfd(pidfd.as_fd(), true).unwrap();
                    }
                    if deadline.passed() {
                        sys::kill_and_reap_child(pid).unwrap();
                        forget(pid);
                        panic!("the fork child {pid} did not end within a minute: killed");
                    }
                };
                // The child's record, if it claimed one.
                forget(pid);
                ended
            }
        }
    }

    /// review102 M1: a fork made by another thread while this process's first claim ran the
    /// registration of its fork handler (under a `Once`, which `pthread_atfork` holds
    /// RUNNING for the whole fork: glibc's atfork lock) left the child a `Once` that nobody
    /// completes, and the child waited on it for ever at its own first claim.
    #[test]
    fn a_fork_under_a_registration_in_flight_leaves_its_child_free() {
        static REGISTERED: sys::Registration = sys::Registration::new();
        let (entered, in_it) = std::sync::mpsc::channel();
        let (go, gone) = std::sync::mpsc::channel::<()>();
        let registering = std::thread::spawn(move || {
            sys::once_without_waiting(&REGISTERED, || {
                entered.send(()).unwrap();
                let _ = gone.recv();
            })
        });
        in_it.recv().unwrap();
        let ended = in_a_child(|| {
            sys::once_without_waiting(&REGISTERED, || {});
            0
        });
        drop(go);
        registering.join().unwrap();
        assert_eq!(ended, Some(sys::Ended::Exited(0)), "the child waited on its parent's registration");
    }

    /// review105 L1: the registration's flag was set before `pthread_atfork` landed, so a
    /// fork made by another thread in between gave its child the flag without the handler:
    /// the child never registered it, and its own fork children never ran it. Here the
    /// registering thread holds between the flag and the registration across the fork; the
    /// child's first call must register (its fork child runs the handler).
    #[test]
    fn a_fork_under_a_registration_in_flight_registers_in_its_child() {
        static REGISTERED: sys::Registration = sys::Registration::new();
        static HANDLED: AtomicBool = AtomicBool::new(false);
        extern "C" fn handled() {
            HANDLED.store(true, Ordering::Relaxed);
        }
        let (entered, in_it) = std::sync::mpsc::channel();
        let (go, gone) = std::sync::mpsc::channel::<()>();
        let registering = std::thread::spawn(move || {
            sys::once_without_waiting(&REGISTERED, || {
                entered.send(()).unwrap();
                let _ = gone.recv();
                // SAFETY: one relaxed atomic store, no lock, no unwinding.
                unsafe { sys::in_every_fork_child(handled) };
            })
        });
        in_it.recv().unwrap();
        let ended = in_a_child(|| {
            // SAFETY: as above.
            sys::once_without_waiting(&REGISTERED, || unsafe { sys::in_every_fork_child(handled) });
            match in_a_child(|| i32::from(!HANDLED.load(Ordering::Relaxed))) {
                Some(sys::Ended::Exited(code)) => code,
                _ => 2,
            }
        });
        drop(go);
        registering.join().unwrap();
        assert_eq!(
            ended,
            Some(sys::Ended::Exited(0)),
            "a fork child of a registration in flight did not register (exit 1: its child ran no handler)"
        );
    }

    /// review110 L2: a process that found its own pid in flight took it for another of its
    /// threads registering, and went on without registering. A fork child's fork child can
    /// inherit a registration in flight named by a pid that is its own: P registers, another
    /// thread of P forks C (the state names P), and before C's first call C forks G, P has
    /// died and been reaped, and its pid has come round to G. G never registered, for its
    /// life and its fork children's. The state is written here as G inherits it (a real
    /// pid wrap is not made); G's fork child must run the handler.
    #[test]
    fn a_process_finding_its_own_pid_in_flight_registers() {
        static REGISTERED: sys::Registration = sys::Registration::new();
        static HANDLED: AtomicBool = AtomicBool::new(false);
        extern "C" fn handled() {
            HANDLED.store(true, Ordering::Relaxed);
        }
        let ended = in_a_child(|| {
            REGISTERED.set_in_flight(sys::pid_now());
            // SAFETY: one relaxed atomic store, no lock, no unwinding.
            sys::once_without_waiting(&REGISTERED, || unsafe { sys::in_every_fork_child(handled) });
            match in_a_child(|| i32::from(!HANDLED.load(Ordering::Relaxed))) {
                Some(sys::Ended::Exited(code)) => code,
                _ => 2,
            }
        });
        assert_eq!(
            ended,
            Some(sys::Ended::Exited(0)),
            "a process that found its own pid in flight did not register (exit 1: its child ran no handler)"
        );
    }

    /// review99 L1: a look that lets go while a pin still holds the slot it lent frees the
    /// slot under that pin: another thread's announcement takes it, and the stale pin's
    /// give-back then writes the look's value over it (that thread's live pin unannounced,
    /// its table freeable under it). The check held in debug builds only, and as a panic,
    /// whose unwinding still drops the look's announcement: it aborts now, in every build.
    ///
    /// review102 L1: with stderr a pipe nobody reads, its message panicked (`eprintln!`),
    /// and the unwind came back. The child's stderr is such a pipe.
    #[test]
    fn a_look_letting_go_with_a_pin_in_its_slot_aborts() {
        let _serial = crate::shm::heap_test_lock();
        let (table, look) = (1 << 22 | 96, 1 << 22 | 65);
        let ended = in_a_child(|| {
            let (read, write) = rustix::pipe::pipe().unwrap();
            drop(read);
            // A write to it fails with EPIPE (a Rust binary ignores SIGPIPE).
            rustix::stdio::dup2_stderr(&write).unwrap();
            let mine = announce_own(look);
            lend(&mine, table);
            let pin = announce(table);
            let went = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unlend(&mine)));
            std::mem::forget(pin);
            std::mem::forget(mine);
            i32::from(went.is_err())
        });
        assert_eq!(
            ended,
            Some(sys::Ended::Signaled(libc::SIGABRT)),
            "the look let go with a pin in its slot (exit 0: went on, 1: panicked)"
        );
    }

    /// review105 L2: the abort's message was written through `io::stderr()`, whose lock a
    /// fork child inherits held when another thread of its parent held it at the fork: the
    /// child waited on it for ever instead of aborting. Another thread here holds it across
    /// the fork.
    #[test]
    fn a_look_letting_go_with_a_pin_in_its_slot_aborts_with_stderr_locked_at_the_fork() {
        let _serial = crate::shm::heap_test_lock();
        let (table, look) = (1 << 22 | 224, 1 << 22 | 193);
        let (locked, is_locked) = std::sync::mpsc::channel();
        let (unlock, unlocked) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let stderr = std::io::stderr().lock();
            locked.send(()).unwrap();
            let _ = unlocked.recv();
            drop(stderr);
        });
        is_locked.recv().unwrap();
        let ended = in_a_child(|| {
            let mine = announce_own(look);
            lend(&mine, table);
            let pin = announce(table);
            unlend(&mine);
            std::mem::forget(pin);
            std::mem::forget(mine);
            0
        });
        drop(unlock);
        holder.join().unwrap();
        assert_eq!(
            ended,
            Some(sys::Ended::Signaled(libc::SIGABRT)),
            "the look let go with a pin in its slot and stderr locked at the fork (exit 0: went on)"
        );
    }

    /// review99 L2: a fork child of a thread under a look (a program's bare `fork`, from a
    /// signal handler) inherited the thread's lent looks: its pins of the look's table
    /// borrowed its parent's slot, in its parent's record.
    #[test]
    fn a_fork_child_borrows_no_slot_of_its_parent() {
        let _serial = crate::shm::heap_test_lock();
        let (table, look) = (1 << 22 | 160, 1 << 22 | 129);
        let mine = announce_own(look);
        lend(&mine, table);
        let ended = in_a_child(|| {
            let pin = announce(table);
            let borrowed = pin.slot.is_some_and(|s| mine.slot.is_some_and(|m| std::ptr::eq(s, m)));
            // Gives the parent's slot back its look, if it took it.
            drop(pin);
            i32::from(borrowed)
        });
        unlend(&mine);
        drop(mine);
        assert_eq!(ended, Some(sys::Ended::Exited(0)), "the child's pin borrowed its parent's slot (exit 1)");
    }
}
