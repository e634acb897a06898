//! What each process holds, written where its reaper can read it: the family heap.
//!
//! A process killed while it holds the family's last handle to an object leaves its entry
//! in the object's holder table, and nobody looks at that table again: the object stayed
//! until the whole family ended. So every process lists, in blocks of the heap that carry
//! its pid and start time, the objects in whose table it has an entry; whoever reaps it
//! ([`process_ended`]: its parent, or another process's reap that looks at every listed
//! process now and then) frees those that no live process holds any more (and none in
//! flight). An object another live process holds keeps the dead entry, for that holder to
//! learn of the death (a barrier breaks) and prune it, as before.
//!
//! Crash safety: an object's slot is written before the process's entry is made (its
//! object offset last: the slot counts from then on), and cleared after the entry is
//! cleared, so a process killed at any point is listed wherever it has an entry. A new
//! object is listed from inside its allocation, as being made (`List::making`: the slot
//! written whole but for its object word, which the allocator stores once the block is
//! counted; the list grows first, so that nothing is taken while a block of the list is
//! made). Its reaper tells a whole object from a block by the object's start, the last
//! thing `Shared::place` writes: stored, the header and the creator's entry are there, and
//! the slot is a hold; not stored, the block is freed as it stands (no other process can
//! know it before `place` returns). The listing then becomes a hold in one store
//! (`List::made`). (aud109 M1: listed only once written whole, a maker killed in the
//! seal's hash, the value's write or the first touch of fresh pages leaked the object.)
//! Likewise a release by the last handle's leave keeps its listing, marked releasing
//! (`List::releasing`, one store after the table's release), until just before the free
//! (`Heap::free_recorded`), or, when looks pin the start, until before their count: the
//! reaper of a last holder killed inside its release finishes it (`destroy` again if it
//! can resume, `ShmObject::DESTROY_RESUMES`; the start taken away; the block freed), where
//! it leaked the object and all it owned. A slot
//! left without an entry (killed in between) is harmless: the reaper finds no entry of the
//! dead process, and an object freed meanwhile is recognised by its header and generation
//! before anything is written. A block is written whole before it is linked, and a new
//! block is made under the directory's lock, recorded in the heap's header from the moment
//! the allocator hands it out until it is linked: a process killed in between leaves it
//! to the next holder of the lock, which links it as a spare (crash points
//! `holds.block.written`, `.linking`; `.taking` and `.reused` when a spare is taken). The
//! allocation made under the lock never waits for a process stopped holding the heap's
//! large allocator's lock: refused so, the grower lets go of the directory's lock, waits
//! for the allocator outside it, and starts over (review138 M1: every reap takes the
//! directory's lock, and a `join` of any dead child waited there behind the stopped
//! allocator). The directory's lock is thus held for stores, `/proc` reads, a slab refill
//! of the 4096-byte class (a 64 KiB populate) and at most `GUARD_GRACE` and a look waiting
//! for the allocator's lock: bounded, unless a process is itself stopped there. A reap's
//! claim does not wait for a stopped holder of it: it gives up and the reap is owed
//! (review145 M1), redone as a sweep by this process's next reap, start or
//! `active_children`, which frees the dead process's holds once the holder resumes.
//!
//! The reap: a reaper claims a dead process's blocks under the directory's lock (its pid
//! and start time written in each, see `Block::claim`), so that two reapers of one
//! process (its parent, and another process's look at every listed process) never walk
//! one block together; it deals with each slot and then clears it, and once every slot is
//! clear it makes the block a spare (its pid 0: one store, without the lock, see
//! `Block::pid`: it waited there with no deadline, review145 L2). A spare stays
//! in the directory, and the next [`List::grow`] of any process takes it (its id written
//! under the lock, the pid last) before it makes a new block. A reaper killed at any step
//! leaves its blocks claimed by a dead process: the next reap (the dead reaper's own, by
//! its parent, or any look at every listed process) claims them again and finishes. A
//! slot dealt with twice frees nothing twice: the dead process's entry is gone after the
//! first time, and a freed object's header is cleared and its table released. Crash points
//! `holds.reap.claimed`, `.freed` (an object freed, its slot not yet cleared), `.cleared`,
//! `.walked`, `.retired` (the block a spare).
//!
//! Why a block is never given back to the heap: the last step of a free (the allocator's
//! push) cannot be seen from outside once it happened (the block may be taken and written
//! by anyone at once). A block that leaves the directory to be freed is lost if its reaper
//! dies in between (as it was: unlinked, then freed), and a successor that finished a free
//! it found begun would free it twice whenever the free had happened. A spare never leaves
//! the directory. So the directory keeps as many blocks as the family's lists ever needed
//! at once (4 KiB per 127 holds of a live process), and a process makes a block only when
//! no spare is left.
//!
//! Only the process itself fills its slots (its threads in turn, under the registry's
//! lock in `holders`); its reaper reads and clears them once the process is gone. Sides
//! (a pipe's ends) are not listed: their tables say whether an end is there, not whether
//! memory is, and the liveness checks forget dead holders of a side.
//!
//! Residuals: a process killed inside the allocator's own steps (before a new block is
//! recorded, or after a freed one is unrecorded) leaks that block, as in any allocation; a
//! last holder killed between its table's release and the releasing mark (a return and a
//! store, or the table's overflow blocks freed), or between the start's removal and its
//! listing's when looks pin it, leaks the object; a `destroy` that cannot resume, cut
//! short, leaks what it had not freed (its block is freed); and a reaper killed while it
//! frees an object (inside its `destroy`, or between the table's release and the free)
//! leaks that object, as any process killed while it frees an object does. A process nobody reaps is found by
//! the next reap of any process of the family that looks at every listed process (at most
//! every `SWEEP_GAP` per process): a family that reaps nothing more (no start, no join)
//! keeps a dead process's holds until it ends. A process that cannot get a block (a full
//! heap) holds unlisted, likewise.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::chain::Chain;
use super::crash::{crash_point, fail_point, interleave};
use super::heap::Heap;
use super::holders::LetGo;
use super::mutex::RawGuard;
use super::wait::Deadline;
use crate::sys::{self, ProcId};

/// Slots per block: a block is one 4 KiB small block, header included.
const SLOTS: usize = 127;

/// One object a process holds.
#[repr(C)]
struct Slot {
    /// The object's offset; 0: a free slot. Written last when the slot is filled, first when
    /// it is cleared.
    object: AtomicU64,
    generation: AtomicU64,
    /// How to free the object ([`LetGo::gone`]), as a distance in the executable
    /// (`sys::function_offset`): every process of the family runs the same one.
    gone: AtomicU64,
    /// Nonzero: a token this process sent away, not a hold (`receipts::ArgsToken`): its
    /// reaper takes the count back if it is still in flight (`receipts::reap_token`). With
    /// [`MAKING`]: a new object this process is making ([`List::making`]), the block's length
    /// in the bits below.
    token: AtomicU64,
}

/// The mark in a slot's `token` of a new object being made: its block allocated (the offset
/// stored inside the allocation), its start perhaps not yet (see [`List::making`]).
const MAKING: u64 = 1 << 63;

/// The mark in a slot's `token` of an object this process holds the last handle of and is
/// releasing ([`List::releasing`]): its table released, its block not yet freed.
const RELEASING: u64 = 1 << 62;
/// With [`RELEASING`]: the object's `destroy` is done.
const DESTROYED: u64 = 1 << 61;

/// A slot taken by [`List::making`] for a new object, until [`List::made`] (or
/// [`List::unmade`]).
#[derive(Debug)]
pub(super) struct Making {
    listed: Listed,
    /// The slot's object word: the allocation stores the block's offset there.
    object: &'static AtomicU64,
}

impl Making {
    /// Where the allocation records the block (`Heap::alloc_into`).
    pub(super) fn record(&self) -> &'static AtomicU64 {
        self.object
    }
}

#[repr(C)]
struct Block {
    /// The next block of the directory (any process's; written once, before the block is
    /// linked: a block never leaves the directory).
    next: AtomicU64,
    /// The process whose holds these are; 0: a spare, every slot clear, for the next
    /// [`List::grow`]. Written under the directory's lock, but for a reap's retirement (a
    /// walked block made a spare): that store, by the block's one live reaper, takes no
    /// lock, so that a reap inside a timed call never waits for a process stopped holding
    /// it (review145 L2). No holder of the lock is misled by it: a grower takes a block it
    /// sees spare, and only a grower, under the lock, makes a spare anyone's again; a claim
    /// is made only of a block whose reaper is dead or none (a live reaper's block is left
    /// to it), and looks at the pid again once it found the reaper dead, which stores
    /// nothing after that (`reap`).
    pid: AtomicU32,
    /// The process reaping it, once it is dead (0: nobody yet); written, with
    /// `reaper_start`, under the directory's lock, and read only under it.
    reaper: AtomicU32,
    start: AtomicU64,
    reaper_start: AtomicU64,
    slots: [Slot; SLOTS],
}

impl Block {
    fn owner(&self) -> ProcId {
        ProcId { pid: self.pid.load(Ordering::Relaxed), start: self.start.load(Ordering::Relaxed) }
    }

    fn reaper(&self) -> ProcId {
        ProcId { pid: self.reaper.load(Ordering::Relaxed), start: self.reaper_start.load(Ordering::Relaxed) }
    }

    /// Under the directory's lock: `me` reaps this block. The start time first: a claim cut
    /// short names the dead claimer's pid (or none) with another start time, a dead reaper.
    fn claim(&self, me: ProcId) {
        self.reaper_start.store(me.start, Ordering::Relaxed);
        self.reaper.store(me.pid, Ordering::Relaxed);
    }

    /// Under the directory's lock: this spare is `me`'s from now on. Its pid last: a
    /// process killed before that store leaves a spare.
    fn take(&self, me: ProcId) {
        self.reaper.store(0, Ordering::Relaxed);
        self.reaper_start.store(0, Ordering::Relaxed);
        self.start.store(me.start, Ordering::Relaxed);
        crash_point!("holds.block.taking");
        self.pid.store(me.pid, Ordering::Relaxed);
    }
}

const _: () = assert!(std::mem::size_of::<Block>() == 4096);

fn block_at(heap: &Heap, off: u64) -> &Block {
    // SAFETY: blocks are allocated by `List::grow` with the size of a Block and never
    // freed (an emptied block stays in the directory, a spare, for the family's life), and
    // `off` is one of them (linked, or recorded as being made); a Block is atomics only,
    // valid for any bytes.
    unsafe { &*heap.ptr(off).cast::<Block>() }
}

/// Where a table is listed: its block's owner (a fork child starts a list of its own, and
/// must not clear its parent's slots) and its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Listed {
    owner: u32,
    block: u64,
    index: u32,
}

/// This process's blocks and their free slots (kept in the process's own registry).
#[derive(Debug)]
pub(super) struct List {
    /// The process these blocks belong to (a fork child finds its parent's here).
    owner: u32,
    /// The free slots of its blocks (a block, once made, lasts as long as the process).
    free: Vec<(u64, u32)>,
}

impl List {
    pub(super) const fn new() -> Self {
        List { owner: 0, free: Vec::new() }
    }

    /// Lists the object `let_go` names; `None` when it cannot be (no room in a full heap,
    /// or a function another process cannot call): the hold is then only unlisted.
    pub(super) fn add(&mut self, heap: &Heap, let_go: &LetGo) -> Option<Listed> {
        self.add_as(heap, let_go, false)
    }

    /// Lists the token `let_go` names (see `receipts::ArgsToken`): a count this process sent
    /// away, not a hold.
    pub(super) fn add_token(&mut self, heap: &Heap, let_go: &LetGo) -> Option<Listed> {
        self.add_as(heap, let_go, true)
    }

    fn add_as(&mut self, heap: &Heap, let_go: &LetGo, token: bool) -> Option<Listed> {
        let gone = sys::function_offset(let_go.gone)?;
        let me = self.reserve(heap)?;
        let (block, index) = self.free.pop()?;
        let slot = &block_at(heap, block).slots[index as usize];
        slot.token.store(u64::from(token), Ordering::Relaxed);
        slot.generation.store(let_go.generation, Ordering::Relaxed);
        slot.gone.store(gone, Ordering::Relaxed);
        slot.object.store(let_go.object, Ordering::Release);
        crash_point!("holds.slot.written");
        Some(Listed { owner: me.pid, block, index })
    }

    /// Takes a slot for a new object of `len` bytes and `generation` that `gone` frees, before
    /// its block is allocated: the slot is written whole but for its object word, which the
    /// allocation stores (`Heap::alloc_into`, inside it, once the block is counted), so that
    /// from then on the block is listed, as being made. Its reaper, finding the object's
    /// start stored (the header and value written whole, `object::made_whole`), deals with
    /// it as any hold (the maker's entry is in its table); else it frees the block as it
    /// stands: no other process can know it before the maker's `place` returns. `None`:
    /// not listable (see [`List::add`]). [`List::made`] makes it a hold (one store), once
    /// the object's table is in the registry; [`List::unmade`] gives the slot back when the
    /// allocation failed. (aud109 M1: listed only after the seal's hash, the value's write
    /// and the first touch of fresh pages, a maker killed there leaked the object.)
    pub(super) fn making(
        &mut self,
        heap: &'static Heap,
        gone: fn(u64, usize),
        generation: u64,
        len: u64,
    ) -> Option<Making> {
        let gone = sys::function_offset(gone)?;
        let me = self.reserve(heap)?;
        let (block, index) = self.free.pop()?;
        let slot = &block_at(heap, block).slots[index as usize];
        debug_assert_eq!(slot.object.load(Ordering::Relaxed), 0, "a free slot");
        slot.token.store(MAKING | len, Ordering::Relaxed);
        slot.generation.store(generation, Ordering::Relaxed);
        slot.gone.store(gone, Ordering::Relaxed);
        Some(Making { listed: Listed { owner: me.pid, block, index }, object: &slot.object })
    }

    /// The object [`List::making`] took `making` for is written whole, its start stored and
    /// its table in the registry: a hold from now on (one store).
    pub(super) fn made(&mut self, heap: &Heap, making: Making) -> Listed {
        let slot = &block_at(heap, making.listed.block).slots[making.listed.index as usize];
        slot.token.store(0, Ordering::Release);
        crash_point!("holds.slot.written");
        making.listed
    }

    /// The allocation [`List::making`] took `making` for failed: its slot, never filled (the
    /// allocation stores the offset only once it has a block), is free again.
    pub(super) fn unmade(&mut self, making: Making) {
        debug_assert_eq!(making.object.load(Ordering::Relaxed), 0, "nothing allocated");
        if making.listed.owner == self.owner {
            self.free.push((making.listed.block, making.listed.index));
        }
    }

    /// The object listed at `listed` was let go of by its last handle, this process's: its
    /// table is released, and the slot stays until its release is done
    /// ([`List::remove`], once its start is gone: `object::unstart`), marked releasing, so
    /// that this process's reaper finishes the release if it is killed in it (see `reap`).
    /// Returns whether it is marked (not a slot of this process's: a fork child's copy).
    pub(super) fn releasing(&mut self, heap: &Heap, listed: Listed) -> bool {
        if listed.owner != self.owner || listed.owner != sys::me().pid {
            return false;
        }
        block_at(heap, listed.block).slots[listed.index as usize].token.store(RELEASING, Ordering::Relaxed);
        true
    }

    /// Makes sure the next [`List::add`] finds a free slot, growing the list now if it
    /// must (`None`: the heap is full); this process.
    pub(super) fn reserve(&mut self, heap: &Heap) -> Option<ProcId> {
        let me = sys::me();
        if self.owner != me.pid {
            // A fork child: the blocks are its parent's.
            *self = List { owner: me.pid, ..List::new() };
        }
        // The tests' `fail1:holds.grow.fresh`: the list grows now, by a new block (no spare).
        let fresh = fail_point!("holds.grow.fresh");
        if self.free.is_empty() || fresh {
            self.grow(heap, me, fresh)?;
        }
        Some(me)
    }

    /// The object listed at `listed` is held no more (its entry is cleared).
    pub(super) fn remove(&mut self, heap: &Heap, listed: Listed) {
        if listed.owner != self.owner || listed.owner != sys::me().pid {
            return;
        }
        // Free again first (nobody pops it before the registry's lock is let go): the clear
        // is a release's last step before its free (`Heap::free_recorded`), and what comes
        // after it is a window in which a kill leaks the block.
        self.free.push((listed.block, listed.index));
        crash_point!("holds.slot.clearing");
        block_at(heap, listed.block).slots[listed.index as usize].object.store(0, Ordering::Release);
    }

    /// A spare block of the directory, taken; else a new block, written whole, then linked
    /// into the directory; all under the directory's lock. A new block is recorded as the
    /// one being made from the moment the allocator hands it out until it is linked: a
    /// process killed in between leaves it to the next holder of the lock
    /// ([`lock_directory`]), which links it as a spare. `fresh`: a new block even if a
    /// spare is there (the tests' fail point).
    ///
    /// The allocation never waits, under the directory's lock, for a process stopped
    /// holding the heap's large allocator's lock (`Chain::make_unless_stopped`): every reap
    /// takes the directory's lock, and would wait behind the stopped allocator with it
    /// (review138 M1: a `join` of a dead child waited for as long as the allocator stayed
    /// stopped). Refused so, the grow lets go of the directory's lock, waits for the
    /// allocator there as any allocation does (this process only), and tries again from
    /// the start (a spare may have come meanwhile).
    fn grow(&mut self, heap: &Heap, me: ProcId, fresh: bool) -> Option<()> {
        let (head, _) = heap.holds_directory();
        let (off, reused) = loop {
            let _g = lock_directory(heap);
            let mut off = head.load(Ordering::Relaxed);
            // Acquire: a spare's last reaper cleared its slots before its pid (`reap`).
            while off != 0 && (fresh || block_at(heap, off).pid.load(Ordering::Acquire) != 0) {
                off = block_at(heap, off).next.load(Ordering::Relaxed);
            }
            if off != 0 {
                block_at(heap, off).take(me);
                break (off, true);
            }
            let chain = directory(heap);
            let Ok(made) = chain.make_unless_stopped(std::mem::size_of::<Block>(), super::GUARD_GRACE) else {
                drop(_g);
                // The tests' exact point: refused, the directory's lock let go (review145 L3b).
                crash_point!("holds.grow.refused");
                heap.wait_for_large_allocator();
                continue;
            };
            let off = made?;
            let block = block_at(heap, off);
            block.pid.store(me.pid, Ordering::Relaxed);
            block.start.store(me.start, Ordering::Relaxed);
            crash_point!("holds.block.written");
            chain.link(off, &block.next, || crash_point!("holds.block.linking"));
            break (off, false);
        };
        if reused {
            crash_point!("holds.block.reused");
        }
        crash_point!("holds.block.linked");
        self.free.extend((0..SLOTS as u32).rev().map(|i| (off, i)));
        Some(())
    }
}

/// The object listed at `listed`, marked releasing ([`List::releasing`]), is destroyed:
/// a reaper finishing its release does not destroy it again. This process's slot, which no
/// other thread writes meanwhile (its listing is held by the release alone).
pub(super) fn destroyed(heap: &Heap, listed: Listed) {
    block_at(heap, listed.block).slots[listed.index as usize].token.store(RELEASING | DESTROYED, Ordering::Relaxed);
}

/// The directory's blocks, made under its lock (see `chain`).
fn directory(heap: &Heap) -> Chain<'_> {
    let (head, lock) = heap.holds_directory();
    Chain { heap, head, lock, making: heap.holds_making() }
}

/// Takes the directory's lock, and first finishes the block a process killed while it
/// held the lock was making (`chain`): linked as a spare, unless it was linked already.
fn lock_directory(heap: &Heap) -> RawGuard<'_> {
    directory(heap).lock(Deadline::NEVER, |off| finish_dead(heap, off), || {}).expect("no deadline")
}

/// [`lock_directory`] unless its holder is stopped (`None`); a running holder is waited
/// for. The reap's claim: since review138 M1 no growth waits under the lock for a stopped
/// allocator (it holds it for stores, `/proc` reads, a slab refill, and at most
/// `GUARD_GRACE` and a look waiting for the allocator's lock), so only a process itself
/// stopped there holds it up for long.
fn lock_directory_unless_stopped(heap: &Heap) -> Option<RawGuard<'_>> {
    directory(heap).lock_unless_stopped(super::GUARD_GRACE, |off| finish_dead(heap, off), || {})
}

/// A block a dead holder of the directory's lock was making: its maker may have died
/// before it zeroed it, so a spare's words, cleared; its `next` word.
fn finish_dead(heap: &Heap, off: u64) -> &AtomicU64 {
    let block = block_at(heap, off);
    block.pid.store(0, Ordering::Relaxed);
    for slot in &block.slots {
        slot.object.store(0, Ordering::Relaxed);
    }
    &block.next
}

/// Bytes of the heap's books ([`Heap::alloc_uncounted_into`]) that are no block of the
/// directory nor of pin records (`pins`): lost (the tests' check; 0 unless a process is
/// making a block right now).
pub(super) fn books_lost(heap: &Heap) -> u64 {
    let (head, _) = heap.holds_directory();
    let _g = lock_directory(heap);
    let mut listed = 0;
    let mut off = head.load(Ordering::Relaxed);
    while off != 0 {
        listed += std::mem::size_of::<Block>() as u64;
        off = block_at(heap, off).next.load(Ordering::Relaxed);
    }
    heap.books().saturating_sub(listed + super::pins::books(heap))
}

/// How many blocks of the directory the process `pid` owns (0: how many are spares).
pub(super) fn blocks_of(heap: &Heap, pid: u32) -> u64 {
    let (head, _) = heap.holds_directory();
    let _g = lock_directory(heap);
    let mut owned = 0;
    let mut off = head.load(Ordering::Relaxed);
    while off != 0 {
        let block = block_at(heap, off);
        owned += u64::from(block.pid.load(Ordering::Acquire) == pid);
        off = block.next.load(Ordering::Relaxed);
    }
    owned
}

/// How often, at most, a reap in this process also looks for every other dead process's
/// list (each look reads `/proc` once per listing process).
const SWEEP_GAP: Duration = Duration::from_millis(100);
/// When this process last looked for every dead process's list (`sys::monotonic_ns`; an
/// atomic, not a lock: a fork child never finds it held).
static LAST_SWEEP: AtomicU64 = AtomicU64::new(0);
/// Whether a reap of this process gave up on a process stopped holding the directory's
/// lock (review145 M1): the lists it left are owed, and this process's next reap, start or
/// [`active_children`](crate::active_children) sweeps at once, whatever [`SWEEP_GAP`] says.
/// Nobody else would: another process's sweep comes only with a reap of its own.
static OWED: AtomicBool = AtomicBool::new(false);
/// How many times (a millisecond apart) the reap of a process waits for another live
/// reaper that claimed its list first, before it leaves the list to that reaper.
const WAIT_LOOKS: u32 = 1000;

/// A process of the family with this pid has ended (its parent reaped it): its entries in
/// the tables it listed are forgotten, and what nobody else holds any more is freed.
/// Blocks of a live process with the same pid (reused) are left alone. The reap also
/// finishes the reaps the ended process had begun (it was killed as it reaped), and, at
/// most every [`SWEEP_GAP`] per process, reaps every other dead process's list (one its
/// parent never reaps: never joined, or ended first).
///
/// Returns once the ended process's lists are reaped: when another live process claimed
/// them first, it waits for that reap to end (the caller gives back the counts the
/// child's argument left in flight only after the child's entries, and their pending
/// receives, were given up), for at most [`WAIT_LOOKS`] milliseconds.
pub(crate) fn process_ended(pid: u32) {
    let Some(heap) = Heap::try_get() else { return };
    // Its pin announcements' record is free for another process (see `pins`).
    super::pins::forget(pid);
    let mut sweep = sweep_due();
    for _ in 0..WAIT_LOOKS {
        if !reap(heap, pid, std::mem::take(&mut sweep)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reaps every dead process's list now, as a reap's sweep does, whatever the time since
/// this process's last sweep (the tests' exact hook, `__private::sweep_dead_processes`,
/// where waiting out [`SWEEP_GAP`] was a sleep: review69 L5).
pub(crate) fn sweep_now() {
    let Some(heap) = Heap::try_get() else { return };
    // No process ended: only the sweep's blocks (pid 0 is nobody's list).
    reap(heap, 0, true);
}

/// Redoes the reaps this process gave up on a stopped holder of the directory's lock, if
/// any (a sweep; given up again, still owed): at a start and an `active_children`, which
/// reap only the children that ended, none perhaps.
pub(crate) fn reap_owed() {
    if !OWED.load(Ordering::Relaxed) {
        return;
    }
    let Some(heap) = Heap::try_get() else { return };
    if sweep_due() {
        reap(heap, 0, true);
    }
}

/// Whether a reap of this process should look at every listed process now: a reap owed
/// (given up), or [`SWEEP_GAP`] since the last look.
fn sweep_due() -> bool {
    let now = sys::monotonic_ns();
    if OWED.swap(false, Ordering::Relaxed) {
        LAST_SWEEP.store(now.max(1), Ordering::Relaxed);
        return true;
    }
    let last = LAST_SWEEP.load(Ordering::Relaxed);
    // One thread of the process sweeps when several reap at once.
    (last == 0 || now.saturating_sub(last) >= SWEEP_GAP.as_nanos() as u64)
        && LAST_SWEEP.compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed).is_ok()
}

/// Claims, then reaps, the blocks of dead processes that are `ended`'s (its own, and those
/// it had claimed as it reaped others), or with `sweep` any dead process's. Returns
/// whether some block of `ended` is being reaped by another live reaper.
///
/// A block is claimed under the directory's lock, by writing the reaper's id in it, and
/// only when nobody has claimed it or its reaper is dead: one reaper at a time walks it.
/// The walk clears each slot after its object is dealt with, and the block becomes a spare
/// once every slot is clear (nobody's: no reap wants it again); a reaper killed at any
/// point leaves a claimed block that the next reap (of the dead reaper, or any sweep)
/// finishes. Dealing with a slot twice frees nothing twice: the dead process's entry is
/// gone after the first time, and an object freed is recognised by its header (cleared)
/// and its table (released).
fn reap(heap: &Heap, ended: u32, sweep: bool) -> bool {
    let (head, _) = heap.holds_directory();
    if head.load(Ordering::Acquire) == 0 {
        return false;
    }
    let me = sys::me();
    let mut claimed = Vec::new();
    let mut busy = false;
    {
        // A holder stopped there (`SIGSTOP`, a debugger): a `join_timeout` of a dead child
        // must not wait for it. The reap is owed: this process's next reap, start or
        // `active_children` sweeps (its sweep, if this was one, is not lost either).
        let Some(_g) = lock_directory_unless_stopped(heap) else {
            OWED.store(true, Ordering::Relaxed);
            return false;
        };
        let mut off = head.load(Ordering::Relaxed);
        while off != 0 {
            let block = block_at(heap, off);
            let owner = block.owner();
            let reaper = block.reaper();
            // A spare (pid 0) is nobody's, whatever reaper it names.
            let wanted = owner.pid != 0
                && (owner.pid == ended || (reaper.pid != 0 && reaper.pid == ended) || (sweep && owner != me));
            // A claimed block's owner is dead: only its reaper's life is in question.
            if wanted && (reaper.pid != 0 || !sys::process_alive(owner.pid, owner.start)) {
                if reaper.pid == 0 || (reaper != me && !sys::process_alive(reaper.pid, reaper.start)) {
                    // Its reaper may have retired it (a store without the lock) between our
                    // first look and its death: a spare now, which a grower may take as
                    // soon as we let the lock go, and walking it would clear the grower's
                    // slots. Dead now, that reaper stores nothing more: one more look.
                    interleave("holds.claim.looked");
                    if block.pid.load(Ordering::Acquire) == 0 {
                        off = block.next.load(Ordering::Relaxed);
                        continue;
                    }
                    block.claim(me);
                    claimed.push((off, owner));
                } else if owner.pid == ended {
                    busy = true;
                }
            }
            off = block.next.load(Ordering::Relaxed);
        }
    }
    if claimed.is_empty() {
        return busy;
    }
    crash_point!("holds.reap.claimed");
    for &(off, owner) in &claimed {
        for slot in &block_at(heap, off).slots {
            let object = slot.object.load(Ordering::Acquire);
            if object == 0 {
                continue;
            }
            let gone = slot.gone.load(Ordering::Relaxed);
            let generation = slot.generation.load(Ordering::Relaxed);
            let mut token = slot.token.load(Ordering::Relaxed);
            if token & RELEASING != 0 {
                // The dead process let go of the object's last handle and was killed inside
                // its release (`List::releasing`), which takes the listing out only just
                // before its free: the block is allocated. Unlisted first, then finished
                // here: a reaper killed in between leaks the object, never frees it twice.
                match super::object::released(heap, object, generation) {
                    // Its start still there: the release is finished, its `destroy` too
                    // unless it was done (and only if it can resume: `DESTROY_RESUMES`).
                    super::object::Released::Started if gone != 0 => {
                        slot.object.store(0, Ordering::Release);
                        crash_point!("holds.reap.cleared");
                        let how = super::object::RESUME_RELEASE
                            | if token & DESTROYED != 0 { super::object::RESUME_DESTROYED } else { 0 };
                        // SAFETY: as below.
                        let gone = unsafe { sys::function_at::<fn(u64, usize)>(gone) };
                        gone(object, how);
                        crash_point!("holds.reap.freed");
                        continue;
                    }
                    // Its start gone with no look: the release was about to free the block.
                    super::object::Released::Unstarted(len) => {
                        heap.free_recorded(object, len, || slot.object.store(0, Ordering::Release));
                        crash_point!("holds.reap.freed");
                        continue;
                    }
                    _ => {
                        slot.object.store(0, Ordering::Release);
                        continue;
                    }
                }
            }
            if token & MAKING != 0 {
                // A new object the dead process was making (`List::making`).
                if !super::object::made_whole(heap, object, generation) {
                    // Its start never stored: no other process knows the block. Unlisted
                    // first: a reaper killed before the free leaks it, never frees it twice.
                    heap.free_recorded(object, (token & !MAKING) as usize, || {
                        slot.object.store(0, Ordering::Release);
                    });
                    crash_point!("holds.reap.unmade");
                    continue;
                }
                // Whole, its maker's entry in its table: a hold from now on, for this reap
                // and any after it (a reaper killed past here finds one).
                token = 0;
                slot.token.store(0, Ordering::Relaxed);
            }
            // A token the dead process sent away: its count taken back if nobody took it.
            let freed = gone != 0
                && if token != 0 {
                    super::receipts::reap_token(heap, object, generation, owner)
                } else {
                    super::object::let_go_of_dead(heap, object, generation, owner, false)
                };
            if freed {
                // SAFETY: `gone` was written by `List::add` from `sys::function_offset` of
                // a `LetGo::gone` (a `fn(u64, usize)`) in a process of this family, which
                // runs this executable.
                let gone = unsafe { sys::function_at::<fn(u64, usize)>(gone) };
                gone(object, 0);
                crash_point!("holds.reap.freed");
            }
            slot.object.store(0, Ordering::Release);
            crash_point!("holds.reap.cleared");
        }
        crash_point!("holds.reap.walked");
        // Every slot is clear: the block is a spare, for the next list that grows (it stays
        // in the directory: see the module's docs). Until this store, a reaper killed
        // leaves the block claimed by a dead reaper, for the next reap to walk again. One
        // store, without the directory's lock (review145 L2: it waited there with no
        // deadline, inside a `join_timeout`, for a process stopped holding the lock): see
        // `Block::pid` for why no holder of the lock can be misled by it. Release: the
        // grower that takes the spare (its Acquire load) writes its slots after our clears.
        block_at(heap, off).pid.store(0, Ordering::Release);
        crash_point!("holds.reap.retired");
    }
    busy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::crash::interleaving;

    /// A claim of a dead process's block whose reaper it finds dead looks at the block's pid
    /// again: the reaper may have retired it (one store, without the directory's lock) after
    /// the claim's first look, and died before its verdict. Claimed, the spare would be
    /// walked while a grower takes it (its slots cleared) and retired under it.
    #[test]
    fn a_claim_leaves_a_block_its_dead_reaper_retired_after_the_first_look() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        // A block of the directory, made a dead process's, claimed by a dead reaper.
        let mut list = List::new();
        list.reserve(heap).expect("a block");
        let off = list.free[0].0;
        let mut child = std::process::Command::new("true").spawn().unwrap();
        // Its own start time (review152 L4: 0, any process of the pid, made a reused pid
        // a live reaper, and the test failed without reaching the second look).
        let start = sys::process_start_time(child.id()).expect("not reaped yet");
        let dead = ProcId { pid: child.id(), start };
        child.wait().unwrap();
        let block = block_at(heap, off);
        {
            let _g = lock_directory(heap);
            block.start.store(dead.start, Ordering::Relaxed);
            block.pid.store(dead.pid, Ordering::Relaxed);
            block.claim(dead);
        }
        // Its reaper retires it between the claim's first look and its verdict.
        let retire = move |step: &'static str| {
            if step == "holds.claim.looked" {
                block.pid.store(0, Ordering::Release);
            }
        };
        let busy = interleaving(retire, || reap(heap, dead.pid, false));
        let reaper = block.reaper();
        println!("the block retired under the claim: busy {busy}, its reaper {reaper:?} (me {:?})", sys::me());
        assert_eq!(block.pid.load(Ordering::Relaxed), 0);
        assert_eq!(reaper, dead, "a spare was claimed (and walked)");
    }
}
