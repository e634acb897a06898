//! Who holds handles to a shared object: per process, how many; plus the handles in
//! flight inside messages.
//!
//! Invariants (what makes a handle unable to outlive its object):
//!
//! * Every handle is counted exactly once: in the entry of the process that holds it, or
//!   in the in-flight count while it is inside a message. A received handle consumes one
//!   in-flight count (a pending receive reserves it and its settle consumes it, see
//!   below); when there is none (none unreserved, for a pending receive: a replayed or
//!   duplicated message) the receive fails and no holder is made out of nothing, so the
//!   counts never exceed the handles.
//! * Recording a holder never fails silently. A process that receives its first handle
//!   needs an entry; when the table and the heap are both full, the receive fails
//!   ([`Received::HeapFull`]) and the handle is dropped. A clone needs no new entry (its
//!   process holds one already); should one be missing anyway, the object is marked
//!   `leaked` and never freed: a leak, never a use after free.
//! * The in-flight word also holds the low bits of the object's generation and the
//!   receivers *pinned* between consuming their count and locking the table, so one
//!   compare-and-swap both checks that the word belongs to the expected object and keeps
//!   that object allocated until the receiver holds the table's lock (the object is freed
//!   only under it); the receiver unpins at once and records itself under the lock. The object is freed only when
//!   no holder, no in-flight count and no pin is left, and the process that frees it first
//!   marks the word released (a compare-and-swap that fails if a pin arrived), so no
//!   receive can pin it afterwards.
//! * A receive inside a message being decoded is *pending* (counted in its entry's
//!   `pending` besides `count`) until the channel has taken the message
//!   (`codec::TakeScope`) or the decoding ended. A pending receive takes no count: it
//!   reserves one (the counts in flight that no entry's `pending` reserves are the ones a
//!   receive may have), and its settle takes the count, then the reservation. A consumer
//!   killed before the settle leaves the message in its channel and its count in flight:
//!   pruning its entry gives the reservation up, and the next consumer receives the same
//!   handles. (The count was taken at the pin until the chaos soak found a consumer killed
//!   between that take and its entry's record: its message's handle was lost, "received
//!   already".) A handle decoded as another type is discarded at the same point, once the
//!   message is taken, and a receiver's own reservations are its own handles in the
//!   liveness answers it asks, not counts in flight; a channel whose last handle is dropped
//!   while it is being received drains once its message is taken (`Shared::if_last`).
//!   A kill after the message was taken and before the settle leaks the objects, never
//!   frees them early (the window: the consumers' unlock and a few stores, and for a
//!   discard the message's later settles too, which run first and may free objects); a
//!   sender that knows its message is gone (a pool's chunk blob, once its worker is dead
//!   and its inbox drained) forgets the lost count ([`Holders::forget_in_flight`]). A
//!   child's argument and a pool's chunk are the exception: their handles travel counted
//!   in the entries of a *carrier* (the argument's token, the chunk's `Carrier`:
//!   `shm::receipts`), the receiver's take moves each into its own entry under the lock,
//!   final at once (never pending), and the carrier's undo lets go of what is left once the
//!   receiver is done or dead: exact, and the child's death releases those it took as any
//!   held handle.
//! * A fork copies every handle of the forking process, wherever it is kept (a static, a
//!   thread-local, the heap). Each process keeps a registry of the tables in which it has
//!   an entry; a `Fork` start records the child, under each of those tables' locks, with
//!   the parent's counts before the child runs ([`before_fork`], [`ForkRecord::record`]).
//!   The child's copies are *fork pins*, not handles: they keep the object's memory (the
//!   decision to free counts them), but no liveness answer does (`others_alive`,
//!   `other_handles`, `sole_holder`, `all_holders`, `any_alive`, the deaths `forget_dead`
//!   counts), since most of them the child cannot reach (the parent's locals). A drop in
//!   the child takes a handle off its count while it has one, else a pin. The pins last
//!   until the child drops them or ends, when its entry is pruned like any dead holder's
//!   (its parent does that when it reaps it, freeing what nobody else holds): a leak for
//!   the child's life, never a use after free. So a handle a fork child finds in a static
//!   is kept alive for it but not counted as a holder: the others may learn that nobody
//!   is there although the child could still use it (pass handles as arguments). Side
//!   tables (a pipe's ends) are not recorded: they tell whether an end is there, not
//!   whether memory is, and a child cannot drop its copy of the parent's end to end the
//!   stream.
//!   Pending receives and in-flight counts are not copied: a message is received once,
//!   whoever holds a copy of its bytes.
//! * Every pin is announced first (`shm::pins`: the table's offset in a slot of the
//!   pinner's process record, cleared after the unpin). A process killed between its pin
//!   and its unpin leaves the pin, and a pin is anonymous; but under the table's lock,
//!   whoever finds pins where nothing else holds the object (`finish`) or prunes the dead
//!   (`prune_dead`) takes them all away when no live process announces the table
//!   (`drop_dead_pins`): a live pin is always announced, and a pin taken after the word was
//!   loaded makes the compare-and-swap fail (no pin is given back under the lock). The
//!   count a dead final receiver took goes with it, as a held handle's would (a pending or
//!   carried receive pins without a take: the count is still in flight or its carrier's;
//!   a receipt on a boot socket, a full heap's fallback, is sent before the take: a kill
//!   between the two leaks the object, its count in flight for nobody). The recording (a process's
//!   first listing of a hold, a table's growth, a prune) comes after the unpin, under the
//!   lock: until the chaos soak, it came before (crash point `holders.receive.locked`).
//!
//! The table answers the two questions of a shared object's life: "was that the last
//! handle anywhere?" (free it) and "is anybody else still there?" (a `get` on a queue
//! whose every other holder died returns an error instead of waiting forever). Entries of
//! processes that died without dropping their handles are recognised by their pid and
//! start time and pruned when a waiter asks.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::crash::crash_point;
use super::heap::{Heap, HeapFull};
use super::holds::{List, Listed, Making};
use super::mutex::{RawGuard, RawMutex};
use super::pins::{self, Announced};
use super::receipts::{self, Receipt};
use super::wait::Deadline;
use crate::codec::Undoing;
use crate::sys::{self, ProcId};

const INLINE: usize = 5;
const PER_BLOCK: usize = 42;

/// The in-flight word: `generation (24 bits) | pins (8 bits) | count (32 bits)`.
const COUNT: u64 = 0xffff_ffff;
const PIN: u64 = 1 << 32;
const PINS: u64 = 0xff << 32;
/// The most receivers pinned at once (the all-ones value marks a released object).
const MAX_PINS: u64 = 0xfe << 32;
/// The word of a table whose object was released: no receive can pin it.
const RELEASED: u64 = PINS;
const GEN_SHIFT: u32 = 40;

/// The pid of a *carrier*'s entry: a message's own count of the handles of one object it
/// carries (a child's argument's token, a pool chunk's `Carrier`: `shm::receipts`), `start`
/// naming the carrier. Its
/// receiver moves them into its own entry one by one under the table's lock, and the
/// message's undo lets go of what is left. No process has this pid (pids stay below 2^22),
/// and no prune takes the entry away: only its message's undo does.
const CARRIER: u32 = u32::MAX;

/// The entry of the carrier `carrier` (see [`CARRIER`]).
fn carrier_entry(carrier: u64) -> ProcId {
    ProcId { pid: CARRIER, start: carrier }
}

fn gen_bits(generation: u64) -> u64 {
    (generation & 0xff_ffff) << GEN_SHIFT
}

/// The holder tables (their offsets in the family heap) whose entry of this process counts
/// a handle: what a fork child gets a copy of. Changed under the table's lock when that
/// count leaves or reaches 0 (not per handle). A table is listed only while its object is
/// allocated (the entry keeps it).
static HELD_HERE: Mutex<Registry> =
    Mutex::new(Registry { tables: HashMap::with_hasher(BuildHasherDefault::new()), listed: List::new() });

/// What this process holds: in its own memory, and (objects' own tables) in the family heap
/// for its reaper (`holds`).
#[derive(Debug)]
struct Registry {
    /// A hash map keeps its room when emptied: a process that receives and drops one handle
    /// at a time does not allocate per message.
    tables: HashMap<u64, Held, BuildHasherDefault<DefaultHasher>>,
    listed: List,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    let_go: LetGo,
    /// Its slot in the heap's list of what this process holds (`None`: a side, or unlisted).
    listed: Option<Listed>,
}

/// For each fork child that may still run: the objects whose tables it was recorded in and
/// how to let go of them once it ended ([`fork_child_ended`]); an object this process
/// releases leaves them first ([`forget_fork_records`]). Held across a `Fork` (in [`ForkRecord`]):
/// a thread reaping a fork child meanwhile would leave the child's copy locked by a thread
/// it does not have, and the child clears its copy first thing.
static FORKED: Mutex<Vec<(ProcId, Recorded)>> = Mutex::new(Vec::new());

/// How many entries of the records in `FORKED` name an object, by a hash of its offset
/// ([`recorded`]; changed only under `FORKED`'s lock, once the change is done): a release
/// of an object whose count is 0 takes no lock and scans nothing ([`forget_fork_records`]).
/// One count for all the records was not enough: a Fork pool's zygote keeps its record, of
/// what the builder held at `build`, for the pool's life, and every release in the builder
/// then took `FORKED` and scanned every record (review77 L4).
static RECORDED: [AtomicU32; RECORDED_BUCKETS] = [const { AtomicU32::new(0) }; RECORDED_BUCKETS];

/// How many counts [`RECORDED`] has (4 KiB of them, in zeroed memory touched only by a
/// process that records a fork child in something).
const RECORDED_BUCKETS: usize = 1024;

/// The objects a fork child was recorded in (their own tables: `copied`), and how to free
/// them.
type Recorded = Vec<LetGo>;

/// The count in [`RECORDED`] of the object at `object`. Offsets are multiples of 16, a
/// large object's of 4096: a multiplicative hash spreads them over the buckets.
fn recorded(object: u64) -> &'static AtomicU32 {
    &RECORDED[(object.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - RECORDED_BUCKETS.trailing_zeros())) as usize]
}

/// Under `FORKED`'s lock, once its change is done: the entries of `tables` counted in
/// [`RECORDED`] (`added`) or out of it. Release ordering: an object's release that reads 0
/// (acquire) after a child's end counted its record out comes after that end's pins, and
/// one after a record sees it counted in (the release follows this process's last leave,
/// which takes `HELD_HERE`, held across the record).
fn count_records(tables: &[LetGo], added: bool) {
    for let_go in tables {
        let count = recorded(let_go.object);
        if added {
            count.fetch_add(1, Ordering::Release);
        } else {
            count.fetch_sub(1, Ordering::Release);
        }
    }
}

/// What [`Holders::leave`] answers when its handle was the family's last: the caller
/// releases the object, and takes the listing this process kept of it out of the heap's
/// list once the object's start is gone ([`Last::unlist`]).
#[must_use]
#[derive(Debug)]
pub(crate) struct Last {
    listed: Option<Listed>,
}

impl Last {
    /// The release's `destroy` is done: a reaper finishing it destroys nothing again.
    pub(super) fn destroyed(&self, heap: &Heap) {
        if let Some(listed) = self.listed {
            super::holds::destroyed(heap, listed);
        }
    }

    /// The release took the object's start away: the listing goes (see `holds`).
    pub(super) fn unlist(self, heap: &Heap) {
        if let Some(listed) = self.listed {
            held_here().listed.remove(heap, listed);
        }
    }
}

/// What [`Holders::let_go_of_dead`] forgets of a table's dead holders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forget {
    /// The dead process's entry alone.
    Its,
    /// Nothing while another live process has an entry, or a handle is in flight: that
    /// holder may still have to learn of the death (a barrier breaks when a party dies,
    /// `forget_dead`), and its own last drop prunes the dead. Otherwise every dead entry
    /// (reading `/proc` once per entry).
    AllIfNoneLive,
    /// Every dead entry if no other live process has one and no handle is in flight, else
    /// the dead process's entry alone: a zygote's end ([`forking_child_ended`]).
    AllIfNoneLiveElseIts,
}

/// How a process frees the object of a table it holds when nothing holds it any more
/// (functions of this process: valid in its fork children, never sent elsewhere).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LetGo {
    /// The object's offset and generation.
    pub(crate) object: u64,
    pub(crate) generation: u64,
    /// The side whose table this is (`None`: the object's own table).
    pub(crate) side: Option<usize>,
    /// Destroys and frees the object, or tells it that a side is gone.
    pub(crate) gone: fn(u64, usize),
    /// The object is a child's argument token (`receipts`): a fork child gets no pins on
    /// its table (see `copied`). Known from the handle's type, never read from the heap.
    pub(crate) token: bool,
}

/// Taken (shared) around the changes of this process's entries when other threads may
/// run beside a `Fork` start (`allow_fork_with_threads`), and (exclusive) by the start
/// from before the fork until the child is recorded: the child's copies and counts are
/// those of one instant, and no handle of the parent is freed before the child is counted.
static FORK_GATE: RwLock<()> = RwLock::new(());

fn held_here() -> MutexGuard<'static, Registry> {
    HELD_HERE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The gate for a change of this process's entries: only when a fork may run beside it.
fn gate() -> Option<RwLockReadGuard<'static, ()>> {
    sys::fork_with_threads_allowed().then(|| FORK_GATE.read().unwrap_or_else(PoisonError::into_inner))
}

/// What a `Fork` start holds from before the fork until the child is recorded (in the
/// parent) or running (in the child, which just drops its copy).
#[derive(Debug)]
pub(crate) struct ForkRecord {
    /// Taken last. Under it only leaf locks are taken, which nobody holds while taking it:
    /// holder tables' locks and pins (`pins`' blocks lock, which may allocate), the heap's
    /// (`free_blocks` at a child's end, an overflow table's allocation in `record`), the
    /// crash points' while one is armed; and a zygote's end reads `/proc` once per entry.
    /// A release takes it holding no table, heap or `HELD_HERE` lock (`try_reap` holds a
    /// child's state mutex, which is never taken under it). Keep it so (review77 L3).
    forked: MutexGuard<'static, Vec<(ProcId, Recorded)>>,
    registry: MutexGuard<'static, Registry>,
    /// Not taken by a start whose thread is the only one ([`before_fork_alone`]).
    _gate: Option<RwLockWriteGuard<'static, ()>>,
}

/// Call just before a `Fork`: no entry of this process changes until the record is used
/// or dropped, and no thread is inside the books of its fork children at the fork. Take it
/// after every other lock the start holds across the fork.
pub(crate) fn before_fork() -> ForkRecord {
    let gate = FORK_GATE.write().unwrap_or_else(PoisonError::into_inner);
    let registry = held_here();
    ForkRecord { forked: FORKED.lock().unwrap_or_else(PoisonError::into_inner), registry, _gate: Some(gate) }
}

/// [`before_fork`] for a start whose thread is the process's only one, in a program that
/// did not opt in to forks beside threads: the gate then has no other taker ([`gate`]
/// takes it only in such programs), and is not taken. Its word is the one write of its
/// page in a start: taking it cost the parent a page fault at every fork.
pub(crate) fn before_fork_alone() -> ForkRecord {
    debug_assert!(!sys::fork_with_threads_allowed());
    let registry = held_here();
    ForkRecord { forked: FORKED.lock().unwrap_or_else(PoisonError::into_inner), registry, _gate: None }
}

impl ForkRecord {
    /// Whether this process holds no handle: a fork child has nothing to wait for.
    pub(crate) fn holds_nothing(&self) -> bool {
        self.registry.tables.is_empty()
    }

    /// In the parent, after the fork: records `child` with fork pins on everything this
    /// process holds, as many as its handles and pins (what the child's copy of its memory
    /// holds). A table with no room for the child's entry is marked leaked: never freed,
    /// never freed early.
    pub(crate) fn record(mut self, child: ProcId) {
        let Some(heap) = Heap::try_get() else { return };
        let me = sys::me();
        let mut recorded = Vec::with_capacity(self.registry.tables.len());
        // A side's table says whether an end is still there (a pipe's end of stream), nothing
        // about memory: the copy of an end the parent held (in a local the child never
        // returns to, or a static) does not keep that end open for the child, or a child
        // waiting for the end of its pipe would wait for itself. The object's own table
        // counts the copy (what keeps the memory); `in_child` drops the sides likewise.
        for (&off, held) in self.registry.tables.iter().filter(|(_, h)| copied(h)) {
            // SAFETY: this process has an entry in the table at `off` (the registry lists
            // it until the entry is cleared, and no entry of ours changes while the record
            // is held), so its object is allocated; a table is atomics only.
            let table = unsafe { &*heap.ptr(off).cast::<Holders>() };
            let _g = RawGuard::lock(&table.lock);
            let mut mine = 0;
            table.for_each(heap, |e| {
                let found = e.is(me);
                if found {
                    mine = e.copies();
                }
                found
            });
            if mine > 0 {
                // Pins, not handles: the child's copies keep the memory, but most of them
                // it cannot reach, so they must not answer "somebody else is there".
                let pins = Counts { count: 0, pending: 0, fork_pins: mine };
                if table.join_as(heap, child, pins, None).is_err() {
                    table.leaked.store(1, Ordering::Relaxed);
                }
                recorded.push(held.let_go);
            }
        }
        count_records(&recorded, true);
        self.forked.push((child, recorded));
    }

    /// In the child, after the fork: the parent's other children are not this one's, nor
    /// are the sides and tokens it was not recorded in (see `record`).
    pub(crate) fn in_child(mut self) {
        // A map that never held anything points at a static empty group in read-only data:
        // walking it is one more page fault for the child of a parent that holds nothing.
        if !self.registry.tables.is_empty() {
            self.registry.tables.retain(|_, held| copied(held));
            // The heap's list of what the parent holds is the parent's (the child's own
            // starts empty); the child's copies are in its parent's books
            // (`fork_child_ended`).
            self.registry.tables.values_mut().for_each(|held| held.listed = None);
        }
        self.registry.listed = List::new();
        // The parent's records of its other children: counted out, then forgotten, never
        // freed (a fork child calls no `free` between the fork and its exit, see "Helper
        // processes" in HACKING.md; review77 L6).
        for (_, tables) in self.forked.iter() {
            count_records(tables, false);
        }
        std::mem::forget(std::mem::take(&mut *self.forked));
    }
}

/// Whether a fork child is recorded in the table `held` names (with pins: its copy of this
/// process's memory keeps the object). Not in a side's (see `ForkRecord::record`), nor in
/// an argument's token: nothing in a fork child can reach the token (its parent's
/// `TakenToken` is in a frame the copy never returns to, an `ArgsToken` copy gives nothing
/// back), and a token has no other holder whose drop would prune the dead, so a
/// grandchild's pins kept its dead parent's entry, and the token, for ever (review32 T2).
/// Decided from this process's own books, so the parent's record and the child's copy
/// agree: the object's header read in the child could belong to a token freed since the
/// parent's record (the parent's entries change from then on), kept unpinned in the
/// child's registry and locked at its next `Fork` start (review33 K1).
fn copied(held: &Held) -> bool {
    held.let_go.side.is_none() && !held.let_go.token
}

/// A fork child of this process has ended: its entries in the tables it was recorded in
/// are forgotten, and what nobody else holds any more is freed. The child died with copies
/// it never dropped (a static's, or a local's of the parent that it never returned to);
/// without this, an object the parent let go of while the child ran would be held by a
/// dead process nobody looks at.
///
/// `child` is the process the record names, by its pid and start time: the end of a
/// child the program reaped itself is noticed late (at our next look), when its pid may
/// be another fork child's or zygote's of ours, whose record a match by pid took (review85
/// H2: what that live process copied was then freed under it).
pub(crate) fn fork_child_ended(child: ProcId) {
    child_ended(child, false);
}

/// A fork child that recorded fork children of its own (a pool's zygote, whose workers
/// are copies of it) has ended: as [`fork_child_ended`], and where no live process holds
/// an object any more, the dead among its holders are forgotten too, and the object freed.
/// A zygote killed from outside took the record of its workers with it: their entries
/// would otherwise keep what they copied for ever (no live holder left to prune them).
pub(crate) fn forking_child_ended(child: ProcId) {
    child_ended(child, true);
}

/// [`fork_child_ended`], and with `forking` [`forking_child_ended`].
///
/// A recorded object may be gone since the record: freed by the last drop of another
/// holder, or of this process itself, which prunes the child once it is dead and unreaped
/// (a zombie), and its block reused by an object whose holders write it plainly. So each
/// table is reached through the directory of object starts and the header
/// (`object::with_live_table`: the object of that generation, not released, its start
/// pinned from the look to the table's pin) before its word is loaded (review74 H1: the
/// record's table was pinned at its recorded offset, a load racing the new owner's plain
/// stores and, on a 24-bit match, a pin, a lock and a free of a block of another type).
/// The look's pin keeps the block from any free, this process's or another's (hpin61);
/// `FORKED` is held from that look to the pin too, and this process's own release of an
/// object drops it from the records first ([`forget_fork_records`]), so a record never
/// names an object this process freed.
fn child_ended(child: ProcId, forking: bool) {
    // No heap, no record (`ForkRecord::record`).
    let Some(heap) = Heap::try_get() else { return };
    let gone: Recorded = {
        let mut forked = FORKED.lock().unwrap_or_else(PoisonError::into_inner);
        crash_point!("holders.fork_ended.locked");
        let Some(at) = forked.iter().position(|(recorded, _)| *recorded == child) else { return };
        let (_, tables) = forked.swap_remove(at);
        // The dead are all forgotten (`forking`) when nobody live holds it; else only the
        // child's entry (a live holder's last drop prunes the others). Decided under the
        // one pin and lock: a second pin would need a second look (review77 L2).
        let forget = if forking { Forget::AllIfNoneLiveElseIts } else { Forget::Its };
        let gone = tables
            .iter()
            .filter(|let_go| {
                super::object::with_live_table(heap, let_go.object, let_go.generation, |table| {
                    crash_point!("holders.fork_ended.pin");
                    table.let_go_of_dead(heap, child, let_go.generation, forget)
                })
                .unwrap_or(false)
            })
            .copied()
            .collect();
        // Only now: a release that finds no record of its object takes no lock
        // (`forget_fork_records`), and these pins are done.
        count_records(&tables, false);
        gone
    };
    // Not under `FORKED`: a destroy lets go of the handles inside, whose release takes it.
    for let_go in gone {
        (let_go.gone)(let_go.object, 0);
    }
}

/// This process releases the object at `object` (`Shared::release`, before the block is
/// freed): no record of a fork child names it any more (see [`child_ended`]).
pub(super) fn forget_fork_records(object: u64) {
    // No record names this object (nor any other of its bucket): no lock taken. A record
    // made meanwhile cannot name it: it records only tables this process holds an entry
    // in, and this one is released.
    if recorded(object).load(Ordering::Acquire) == 0 {
        return;
    }
    let mut forked = FORKED.lock().unwrap_or_else(PoisonError::into_inner);
    for (_, tables) in forked.iter_mut() {
        let before = tables.len();
        tables.retain(|let_go| let_go.object != object);
        // Each record names an object once at most.
        if tables.len() < before {
            recorded(object).fetch_sub(1, Ordering::Release);
        }
    }
}

/// Whether this process's registry names a table of the object at `object` (what a fork
/// child would be recorded in).
#[cfg(test)]
pub(super) fn registry_names(object: u64) -> bool {
    held_here().tables.values().any(|held| held.let_go.object == object)
}

/// Lists the object `let_go` names as a *token* this process sent away (`receipts`): held
/// by no entry of this process, and not in its registry; its reaper takes the count back
/// if nobody took it (`holds`). `None`: the heap has no room for the listing.
pub(super) fn list_token(heap: &Heap, let_go: &LetGo) -> Option<Listed> {
    held_here().listed.add_token(heap, let_go)
}

/// Clears a token's slot ([`list_token`]): the token was taken back or left to its taker.
pub(super) fn unlist_token(heap: &Heap, listed: Listed) {
    held_here().listed.remove(heap, listed);
}

/// Whether this process holds no handle of any object (the fork server's copy of the main
/// process, made at `init()`, must not).
pub(crate) fn holds_nothing() -> bool {
    held_here().tables.is_empty()
}

/// Why a handle in a message could not become a holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// The table belongs to another object now (the handle's object was freed).
    Stale,
    /// No handle of this object is in flight: the message was received already (replayed
    /// or duplicated bytes). `last` as for `HeapFull`.
    NotInFlight { last: bool },
    /// This process could not be recorded: the table is full and the heap has no room for
    /// more. The handle's in-flight count is gone; `last` says that it was the object's
    /// last reference, which the caller then frees.
    HeapFull { last: bool },
}

/// What [`Holders::join_as`] adds to a process's entry.
#[derive(Debug, Clone, Copy)]
struct Counts {
    count: u32,
    pending: u32,
    fork_pins: u32,
}

#[repr(C)]
#[derive(Debug, Default)]
struct Entry {
    pid: AtomicU32,
    /// Handles this process holds.
    count: AtomicU32,
    start: AtomicU64,
    /// Handles received in messages this process is still taking (see `Holders::settle`):
    /// each reserves a count in flight, which the settle takes; a dead process's
    /// reservations are given up with its entry.
    pending: AtomicU32,
    /// Fork pins: copies of its parent's handles (and pins) that a fork child found in its
    /// memory. They keep the object's memory alive, but no liveness answer counts them:
    /// most are unreachable (the parent's locals).
    fork_pins: AtomicU32,
}

impl Entry {
    fn is(&self, me: ProcId) -> bool {
        self.pid.load(Ordering::Relaxed) == me.pid && self.start.load(Ordering::Relaxed) == me.start
    }

    fn is_free(&self) -> bool {
        self.pid.load(Ordering::Relaxed) == 0
    }

    fn clear(&self) {
        self.pid.store(0, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
        self.start.store(0, Ordering::Relaxed);
        self.pending.store(0, Ordering::Relaxed);
        self.fork_pins.store(0, Ordering::Relaxed);
    }

    /// Whether this entry counts a handle its process may use (held, or being received):
    /// what liveness answers count. An entry of fork pins alone keeps only the memory.
    fn holds(&self) -> bool {
        !self.is_free() && (self.count.load(Ordering::Relaxed) > 0 || self.pending.load(Ordering::Relaxed) > 0)
    }

    /// Handles and fork pins: the copies this process's memory holds (a fork child of it
    /// gets as many).
    fn copies(&self) -> u32 {
        self.count.load(Ordering::Relaxed) + self.fork_pins.load(Ordering::Relaxed)
    }

    /// Whether its process runs; a carrier's entry is always there until its undo (see
    /// [`CARRIER`]).
    fn alive(&self) -> bool {
        let pid = self.pid.load(Ordering::Relaxed);
        pid == CARRIER || sys::process_alive(pid, self.start.load(Ordering::Relaxed))
    }
}

#[repr(C)]
struct Block {
    next: AtomicU64,
    _pad: u64,
    entries: [Entry; PER_BLOCK],
}

/// The holder table, embedded in every shared object's header.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Holders {
    lock: RawMutex,
    /// In-flight handles, pinned receivers and generation bits (see [`COUNT`]).
    flight: AtomicU64,
    overflow: AtomicU64,
    /// Nonzero once a handle exists that no entry counts: the object is never freed.
    leaked: AtomicU32,
    /// Holders that died holding handles and whose entries were forgotten, whoever forgot
    /// them (wrapping): every prune counts here, before it clears the entry, so that an
    /// object whose waiters must learn of every death (a barrier) sees one forgotten by a
    /// process that did not care (a drop, a reap). A process killed between the count and
    /// the clear leaves the entry to be counted again: a death counted twice, never lost.
    died: AtomicU32,
    entries: [Entry; INLINE],
}

impl Holders {
    /// A table with one holder: the calling process (the creator).
    pub(crate) fn new_held() -> Self {
        Self::new_held_at(0)
    }

    /// A table with one holder, the calling process, of the object of `generation`
    /// (receives must name it).
    pub(crate) fn new_held_at(generation: u64) -> Self {
        let h = Holders::default();
        h.flight.store(gen_bits(generation), Ordering::Relaxed);
        let me = sys::me();
        h.entries[0].pid.store(me.pid, Ordering::Relaxed);
        h.entries[0].start.store(me.start, Ordering::Relaxed);
        h.entries[0].count.store(1, Ordering::Relaxed);
        h
    }

    fn for_each(&self, heap: &Heap, mut f: impl FnMut(&Entry) -> bool) -> bool {
        for e in &self.entries {
            if f(e) {
                return true;
            }
        }
        let mut block = self.overflow.load(Ordering::Relaxed);
        while block != 0 {
            let b = block_at(heap, block);
            for e in &b.entries {
                if f(e) {
                    return true;
                }
            }
            block = b.next.load(Ordering::Relaxed);
        }
        false
    }

    /// One more handle in this process, which holds one already (a clone). Never fails:
    /// the process's entry counts it; were there none and no room for one, the object is
    /// marked leaked (never freed) rather than left with an uncounted handle.
    pub(crate) fn join(&self, heap: &Heap, let_go: LetGo) {
        let _gate = gate();
        let _g = RawGuard::lock(&self.lock);
        if self.join_locked(heap, false, let_go).is_err() {
            self.leaked.store(1, Ordering::Relaxed);
        }
    }

    /// One more handle in this process, if it holds the object still (a handle counted, or
    /// one reserved by a receive not yet settled), for a decoding that reads again the bytes
    /// of a copy it received (`codec::held_again`): its note that the copy is held proves no
    /// hold, as the copy's handle may have been let go of where the decoding does not see
    /// it (dropped on another thread, or inside a nested decoding). With `generation`, the
    /// object is pinned by it first, as a receive pins: a freed block, or one another object
    /// reused, is never written. Without it (a side's table), the caller's hold of the
    /// object keeps the table. `Err(last)`: nothing joined, and with `last` the pin found
    /// the object held by nobody any more: the caller frees it.
    ///
    /// (review65 M1: a [`Holders::join`] on that note alone, after a final receive whose
    /// handle another thread dropped, wrote into the table of the object that reused the
    /// block once its last holder let go between the seal's check and the join.)
    pub(crate) fn join_held(&self, heap: &Heap, generation: Option<u64>, let_go: LetGo) -> Result<(), bool> {
        let _gate = gate();
        let _g = match generation {
            Some(generation) => {
                let announced = self.announce(heap);
                if self.pin(generation, false).is_err() {
                    return Err(false);
                }
                self.lock_and_unpin(announced)
            }
            None => RawGuard::lock(&self.lock),
        };
        let me = sys::me();
        let held = self.for_each(heap, |e| {
            e.is(me) && (e.count.load(Ordering::Relaxed) > 0 || e.pending.load(Ordering::Relaxed) > 0)
        });
        if !held {
            return Err(generation.is_some() && self.finish(heap));
        }
        if self.join_locked(heap, false, let_go).is_err() {
            // As a clone's (see `join`).
            self.leaked.store(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Records one more handle of this process; `pending` also counts it as received in a
    /// message not yet taken (see [`Holders::settle`]).
    fn join_locked(&self, heap: &Heap, pending: bool, let_go: LetGo) -> Result<(), HeapFull> {
        self.join_as(heap, sys::me(), Counts { count: 1, pending: u32::from(pending), fork_pins: 0 }, Some(let_go))
    }

    /// Records `add` for process `who`. This process's table goes into its registry (with
    /// `let_go`) when its copies (handles and fork pins) leave 0.
    fn join_as(&self, heap: &Heap, who: ProcId, add: Counts, let_go: Option<LetGo>) -> Result<(), HeapFull> {
        let me = sys::me();
        // Listed before the hold is taken (see `holds`), when this is a first one.
        let listing = who == me && !self.for_each(heap, |e| e.is(me) && e.copies() > 0);
        if listing {
            self.note_mine(heap, let_go);
        }
        if self.for_each(heap, |e| {
            if e.is(who) {
                // Pending first: a process killed between the two leaves a reservation
                // without its hold, which goes with the dead entry; the other way round the
                // entry read as a settled hold while the count was still in flight (review62 L4).
                e.pending.fetch_add(add.pending, Ordering::Relaxed);
                if add.pending > 0 {
                    crash_point!("holders.receive.halfway");
                }
                e.count.fetch_add(add.count, Ordering::Relaxed);
                // Only a fork record adds pins: a clone pays no third read-modify-write.
                if add.fork_pins > 0 {
                    e.fork_pins.fetch_add(add.fork_pins, Ordering::Relaxed);
                }
                true
            } else {
                false
            }
        }) {
            return Ok(());
        }
        let claim = |e: &Entry| {
            if e.is_free() {
                e.pid.store(who.pid, Ordering::Relaxed);
                e.start.store(who.start, Ordering::Relaxed);
                // Pending before the hold, as above.
                e.pending.store(add.pending, Ordering::Relaxed);
                if add.pending > 0 {
                    crash_point!("holders.receive.halfway");
                }
                e.count.store(add.count, Ordering::Relaxed);
                e.fork_pins.store(add.fork_pins, Ordering::Relaxed);
                true
            } else {
                false
            }
        };
        let claimed = self.for_each(heap, claim) || {
            // Full: make room by forgetting the dead, else grow.
            self.prune_dead(heap, me);
            self.for_each(heap, claim)
        };
        if !claimed {
            let off = match heap.alloc_zeroed(std::mem::size_of::<Block>()) {
                Ok(off) => off,
                Err(full) => {
                    if listing {
                        self.note_mine(heap, None);
                    }
                    return Err(full);
                }
            };
            let b = block_at(heap, off);
            b.next.store(self.overflow.load(Ordering::Relaxed), Ordering::Relaxed);
            claim(&b.entries[0]);
            self.overflow.store(off, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Adds this table to this process's registry (`mine`: its entry counts a handle now) or
    /// takes it out (its count fell to 0). Tables outside the family heap (tests) are not
    /// listed.
    fn note_mine(&self, heap: &Heap, mine: Option<LetGo>) {
        if let Some(off) = self.offset_in(heap) {
            note_at(heap, off, mine);
        }
    }

    /// This table's offset in the family heap (`None`: outside it, a unit test's).
    #[inline]
    fn offset_in(&self, heap: &Heap) -> Option<u64> {
        let off = (std::ptr::from_ref(self) as usize).wrapping_sub(heap.ptr(0) as usize) as u64;
        // A table sits inside an object's header, not at its 64-byte aligned start.
        let inside = off % 64;
        heap.contains(off.wrapping_sub(inside), inside as usize + std::mem::size_of::<Self>()).then_some(off)
    }

    /// Announces that this thread is about to pin this table (see `pins`); kept until the
    /// pin is given back. Nothing for a table outside the family heap.
    #[inline]
    fn announce(&self, heap: &Heap) -> Option<Announced> {
        self.offset_in(heap).map(pins::announce)
    }

    /// Under the lock, with pins in the word: whether nothing else holds the object, once
    /// the pins of dead processes are taken away (see [`Holders::drop_dead_pins`]).
    #[cold]
    #[inline(never)]
    fn pins_only(&self, heap: &Heap) -> bool {
        let w = self.flight.load(Ordering::Relaxed);
        if w & PINS == PINS || w & COUNT != 0 || self.leaked.load(Ordering::Relaxed) != 0 {
            return false;
        }
        // The dead holders' entries go with the dead pins (a receiver killed pinned beside
        // a holder that died unpruned: the object must not wait for that holder's reaper).
        self.prune_dead(heap, sys::me());
        self.unheld(heap)
    }

    /// Under the lock: takes away the pins of dead processes, when no live process
    /// announces this table (see `pins`: every pin in the word loaded is then a dead
    /// process's, and a pin taken since makes the compare-and-swap fail).
    #[cold]
    fn drop_dead_pins(&self, heap: &Heap) {
        let w = self.flight.load(Ordering::Acquire);
        if w & PINS == 0 || w & PINS == PINS {
            return;
        }
        let Some(off) = self.offset_in(heap) else { return };
        if pins::announced_by_live(heap, off) {
            return;
        }
        let _ = self.flight.compare_exchange(w, w & !PINS, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// A table made by [`Holders::new_held`] has been placed in the family heap: its
    /// creator's entry goes into the creator's registry.
    pub(crate) fn placed(&self, heap: &Heap, let_go: LetGo) {
        self.note_mine(heap, Some(let_go));
    }

    /// A new object's table at `off` (in the family heap) was written by
    /// [`Holders::new_held_at`] with this process's entry: it goes into the registry, and
    /// the object into the heap's list of what this process holds (see `holds`: written
    /// whole first, the object is one its reaper recognises and frees).
    ///
    /// `making`: the slot [`Holders::making`] took for it, which becomes its listing (one
    /// store); `None`: listed now, if it can be.
    pub(super) fn new_object_held(heap: &Heap, off: u64, let_go: LetGo, making: Option<Making>) {
        let Some(making) = making else { return note_at(heap, off, Some(let_go)) };
        let mut registry = held_here();
        let listed = registry.listed.made(heap, making);
        registry.tables.insert(off, Held { let_go, listed: Some(listed) });
    }

    /// Before a new object of `len` bytes and `generation` is allocated: a slot of this
    /// process's list for it (the list grows now, and a crash while it grows happens, before
    /// any memory is taken whose only record would be that list), which the allocation
    /// fills with the block's offset (`Making::record`): see `holds::List::making`. `None`:
    /// it cannot be listed (see `holds::List::add`). Give it to [`Holders::new_object_held`],
    /// or to [`Holders::unmade`] if the allocation failed.
    pub(super) fn making(heap: &'static Heap, gone: fn(u64, usize), generation: u64, len: u64) -> Option<Making> {
        held_here().listed.making(heap, gone, generation, len)
    }

    /// The allocation [`Holders::making`] took `making` for failed: its slot is free again.
    pub(super) fn unmade(making: Making) {
        held_here().listed.unmade(making);
    }

    /// Forgets the entry of `dead`, a process known to have ended (reaped), in this table of
    /// the object of `generation` (pinned first, so one freed meanwhile is left alone); its
    /// pending receives are given up. Returns whether nothing holds the object any more:
    /// the caller frees it. Only that entry is looked at: checking the others would read
    /// `/proc` once per holder.
    ///
    /// What is forgotten is `forget`'s to say ([`Forget`]).
    pub(crate) fn let_go_of_dead(&self, heap: &Heap, dead: ProcId, generation: u64, forget: Forget) -> bool {
        let announced = self.announce(heap);
        if self.pin(generation, false).is_err() {
            return false;
        }
        let _g = self.lock_and_unpin(announced);
        if forget != Forget::Its {
            // A dead process's pin (a reaper killed in `while_only_dead_hold`) must not keep
            // the object for ever: it is taken away when no live process announces it.
            self.drop_dead_pins(heap);
            if self.flying() || self.for_each(heap, |e| !e.is_free() && !e.is(dead) && e.alive()) {
                if forget == Forget::AllIfNoneLive {
                    return false;
                }
            } else {
                self.prune_dead(heap, sys::me());
            }
        }
        self.for_each(heap, |e| {
            let found = e.is(dead);
            if found {
                self.forget_entry(e);
            }
            found
        });
        self.finish(heap)
    }

    /// Runs `f` with this table (of the object of `generation`) pinned, if no handle is
    /// in flight and no live process holds the object: only dead holders do, and nobody can
    /// take it any more. With `take_back`, a count in flight is taken back first, under the
    /// same pin (a token's take-back by its maker's side, `receipts::reap_token`: its one
    /// count, which nobody took). The pin keeps the object allocated while `f` runs (no
    /// `finish` releases a table a live process announces), so `f` may read it. `None`: the
    /// object is released or another, a handle is in flight, or a live process holds it; `f`
    /// did not run. Whoever frees the object later calls [`Holders::let_go_of_dead`] (a dead
    /// pinner's pin is taken away there).
    pub(crate) fn while_only_dead_hold<R>(
        &self,
        heap: &Heap,
        generation: u64,
        take_back: bool,
        f: impl FnOnce() -> R,
    ) -> Option<R> {
        let announced = self.announce(heap);
        self.pin(generation, false).ok()?;
        let (taken_back, dead_only) = {
            let _g = RawGuard::lock(&self.lock);
            let taken_back = take_back && self.take_count();
            let dead_only =
                self.flight.load(Ordering::Relaxed) & COUNT == 0 && !self.for_each(heap, |e| !e.is_free() && e.alive());
            (taken_back, dead_only)
        };
        if taken_back {
            // Taken back, pinned, nothing let go of: a kill here leaves the table unreleased,
            // with a dead pin, and the next reap of the same slot runs `f`.
            crash_point!("process.token.unsent");
        }
        let done = dead_only.then(f);
        drop(self.lock_and_unpin(announced));
        done
    }

    /// Whether a handle is in flight or a receiver pinned (never, once released: a side
    /// table outlives its release, and its side is then gone).
    fn flying(&self) -> bool {
        let w = self.flight.load(Ordering::Relaxed);
        w & PINS != PINS && w & (COUNT | PINS) != 0
    }

    /// Under the lock: [`Holders::flying`] as `me` asks it, whose own pending receives'
    /// reservations are not counted: each handle so reserved is counted in `me`'s entry
    /// already, and `me`, alive and asking, is the one taking it. (review34 L4: counted, a
    /// `Deserialize` that got from the empty queue it had just decoded, whose only other
    /// handle was the one in the message being taken, waited for ever for somebody else.)
    fn flying_besides(&self, heap: &Heap, me: ProcId) -> bool {
        if !self.flying() {
            return false;
        }
        let w = self.flight.load(Ordering::Relaxed);
        if w & PINS != 0 {
            // A receiver pinned: never this asker, which holds the lock.
            return true;
        }
        w & COUNT > u64::from(self.reserved_by(heap, me))
    }

    /// Under the lock: how many counts in flight `me`'s entry reserves (its pending
    /// receives, not yet settled).
    fn reserved_by(&self, heap: &Heap, me: ProcId) -> u32 {
        let mut reserved = 0;
        self.for_each(heap, |e| {
            let found = e.is(me);
            if found {
                reserved = e.pending.load(Ordering::Relaxed);
            }
            found
        });
        reserved
    }

    /// Whether nothing holds the object: no entry, nothing in flight, nothing leaked.
    fn unheld(&self, heap: &Heap) -> bool {
        !self.flying() && self.leaked.load(Ordering::Relaxed) == 0 && !self.for_each(heap, |e| !e.is_free())
    }

    /// Under the lock: if nothing holds the object, marks the table released (no receive
    /// can pin it from now on: the compare-and-swap fails if one just did) and frees the
    /// overflow blocks. Returns whether the caller must free the object.
    fn finish(&self, heap: &Heap) -> bool {
        // Nothing holds it but pins: a dead receiver's are taken away (see `pins`).
        if !self.unheld(heap) && (self.flight.load(Ordering::Relaxed) & PINS == 0 || !self.pins_only(heap)) {
            return false;
        }
        let w = self.flight.load(Ordering::Relaxed);
        if w & (COUNT | PINS) != 0
            || self.flight.compare_exchange(w, RELEASED, Ordering::AcqRel, Ordering::Relaxed).is_err()
        {
            return false;
        }
        self.free_blocks(heap);
        true
    }

    /// One handle fewer in this process. Returns [`Last`] when that was the last handle of
    /// the family (no holder, nothing in flight): the caller frees the object.
    pub(crate) fn leave(&self, heap: &Heap) -> Option<Last> {
        self.leave_looking(heap, true)
    }

    /// [`Holders::leave`] without looking for dead holders among the others (no `/proc`
    /// read): for a process that knows another holder outlives its handle.
    pub(crate) fn leave_trusting(&self, heap: &Heap) -> Option<Last> {
        self.leave_looking(heap, false)
    }

    fn leave_looking(&self, heap: &Heap, look: bool) -> Option<Last> {
        let _gate = gate();
        let _g = RawGuard::lock(&self.lock);
        let me = sys::me();
        let mut left = false;
        self.for_each(heap, |e| {
            if e.is(me) {
                // A handle counted as held, else (in a fork child) one of the copies pinned.
                let count = e.count.load(Ordering::Relaxed);
                if count > 0 {
                    e.count.store(count - 1, Ordering::Relaxed);
                } else {
                    e.fork_pins.store(e.fork_pins.load(Ordering::Relaxed).saturating_sub(1), Ordering::Relaxed);
                }
                if e.copies() == 0 {
                    // Cleared before it leaves the heap's list (see `holds`).
                    if e.pending.load(Ordering::Relaxed) == 0 {
                        e.clear();
                    }
                    left = true;
                }
                true
            } else {
                false
            }
        });
        if look && !self.unheld(heap) && !self.flying() && !self.for_each(heap, |e| e.is(me)) {
            // This process let go of its last handle while others are recorded: forget the
            // dead among them, so that a killed holder does not keep the object forever.
            self.prune_dead(heap, me);
        }
        // Out of the registry, found before the table's last look (the registry's lock held
        // across it), so that a last handle's listing is marked releasing one store after
        // the table is released (see `holds::List::releasing`).
        let left = left.then(|| self.note_left(heap)).flatten();
        let last = self.finish(heap);
        let Some((mut registry, listed)) = left else { return last.then_some(Last { listed: None }) };
        if last && registry.listed.releasing(heap, listed) {
            return Some(Last { listed: Some(listed) });
        }
        registry.listed.remove(heap, listed);
        last.then_some(Last { listed: None })
    }

    /// Takes this table out of this process's registry (its entry counts no handle any
    /// more): its listing in the heap's list, if any, for the caller to take out or keep,
    /// with the registry's lock.
    fn note_left(&self, heap: &Heap) -> Option<(MutexGuard<'static, Registry>, Listed)> {
        let off = self.offset_in(heap)?;
        let mut registry = held_here();
        match registry.tables.remove(&off) {
            Some(Held { listed: Some(listed), .. }) => Some((registry, listed)),
            _ => None,
        }
    }

    /// A handle was written into a message.
    pub(crate) fn send(&self) {
        let _g = RawGuard::lock(&self.lock);
        let before = self.flight.fetch_add(1, Ordering::Relaxed);
        assert!(before & COUNT != COUNT, "four billion handles of one object in flight");
    }

    /// Runs an encoding's undo on this table, for the handle of the object of `generation`
    /// (see [`Undoing`]): a message never delivered gives its count back
    /// ([`Undoing::Unsend`]), or a child's argument's token takes it into its carrier's entry
    /// before it is sent, gives it back, or lets go of what its receiver did not take.
    /// `None`: a carry found no room for the carrier's entry, or no object to pin (released,
    /// or another generation's), and changed nothing. Else whether nothing holds the object
    /// any more: the caller frees it.
    ///
    /// Pinned by its generation first: an undo run on a block whose object was freed (and
    /// the block perhaps reused) finds a released or another object's word and writes
    /// nothing. `dead_receiver`: the pid of a process that was receiving the message and
    /// died before it took it: its entry of this object is forgotten first, whole (its
    /// pending receives, the holds they recorded, holds it had completed before, fork
    /// pins), as a prune would, whether or not a reaper got to it (a handle it dropped while
    /// decoding is no longer in its list of holds; a reap leaves the entries of an object
    /// that other live processes hold, or whose count is in flight).
    pub(crate) fn undo(&self, heap: &Heap, generation: u64, how: Undoing, dead_receiver: Option<u32>) -> Option<bool> {
        let announced = self.announce(heap);
        if self.pin(generation, false).is_err() {
            // A carry that pinned no object made no carrier entry: it says so, or a restore
            // would take the object's keys for kept by that entry (review102 L2).
            return if matches!(how, Undoing::Carry(_)) { None } else { Some(false) };
        }
        let _g = self.lock_and_unpin(announced);
        let mut dead_held = false;
        if let Some(pid) = dead_receiver {
            self.for_each(heap, |e| {
                let found = e.pid.load(Ordering::Relaxed) == pid && !e.alive();
                dead_held |= found;
                if found {
                    // Forgotten whole, as a prune does: its pending receives were never
                    // taken from the count (see `receive_pending`), and a dead process's
                    // completed holds and fork pins protect nobody. Kept, they held the
                    // object for ever once nobody live was left to prune them (boot44 for
                    // the holds its pending receives recorded, review62 L1 for the others).
                    self.forget_entry(e);
                }
                found
            });
        }
        match how {
            Undoing::Unsend => {
                // No count left means a replayed copy of the message consumed it: that
                // copy's receiver holds the handle now, and counts it.
                self.take_count();
            }
            Undoing::UnsendHeldByDead => {
                if dead_held {
                    self.take_count();
                }
            }
            Undoing::Carry(carrier) => {
                // The carrier's entry first: the maker killed between the two (before it
                // lists its token) leaves the handle counted twice, never nowhere.
                let one = Counts { count: 1, pending: 0, fork_pins: 0 };
                if self.flight.load(Ordering::Relaxed) & COUNT == 0
                    || self.join_as(heap, carrier_entry(carrier), one, None).is_err()
                {
                    return None;
                }
                self.flight.fetch_sub(1, Ordering::Relaxed);
            }
            Undoing::Uncarry(carrier) | Undoing::Restore { carrier, .. } => {
                // Idempotent: the carrier's whole entry, once (the same object may travel
                // more than once in one message).
                let holder = carrier_entry(carrier);
                self.for_each(heap, |e| {
                    let found = e.is(holder);
                    if found {
                        if matches!(how, Undoing::Restore { .. }) {
                            self.flight.fetch_add(u64::from(e.count.load(Ordering::Relaxed)), Ordering::Relaxed);
                        }
                        e.clear();
                    }
                    found
                });
            }
        }
        Some(self.finish(heap))
    }

    /// Runs `f` while the object of `generation` is pinned (its table's word checked and
    /// pinned by one compare-and-swap, as a receive does): the object stays allocated, and
    /// is that object, until `f` returns. `None` when the table is released or another
    /// object's (`f` does not run). Else whether nothing holds the object any more once
    /// unpinned (a holder that left meanwhile could not free it): the caller frees it.
    /// For an undo of a table of the object with no generation of its own (a side's).
    pub(crate) fn pinned(&self, heap: &Heap, generation: u64, f: impl FnOnce()) -> Option<bool> {
        // In a slot of its own: a panic in `f` keeps the announcement (below), which a
        // slot lent by the look would lose at the look's let-go.
        let announced = self.offset_in(heap).map(pins::announce_own);
        self.pin(generation, false).ok()?;
        // A panic in `f` leaves the pin, and its announcement (the slot stays taken: the
        // object leaks, never freed early).
        let announced = std::mem::ManuallyDrop::new(announced);
        f();
        let _g = self.lock_and_unpin(std::mem::ManuallyDrop::into_inner(announced));
        Some(self.finish(heap))
    }

    /// A handle arrived in a message and now belongs to this process: consumes one
    /// in-flight count of the object of `generation` and records this process. With
    /// `pending`, the receive is provisional until [`Holders::settle`]: it only reserves
    /// the count ([`Holders::receive_pending`]), which the settle takes; should this process
    /// die first (killed while decoding, the message then goes to another consumer), its
    /// reservation goes with its entry and the count is there for the next consumer.
    ///
    /// The object is pinned by one compare-and-swap that checks the generation bits (and,
    /// for a final receive, takes the count): a replayed handle of an object freed
    /// meanwhile finds another object's word (or a released one) and fails without
    /// writing. The table's lock is taken only once pinned. When no count is left (none a
    /// live process has not reserved, for a pending receive, once the dead are pruned), the
    /// receive fails.
    ///
    /// `receipt`: the carrier whose entry counts the handle (a child's argument, a pool's
    /// chunk: see `shm::receipts` and [`Holders::receive_carried`]), or where this process
    /// sends that it takes the count (a boot socket), right before taking it.
    /// Such a receive is never pending: its parent's undo, not a next consumer, answers for
    /// the count until the receipt, and the receipt makes the handle this process's at once,
    /// so that its death releases it as any held handle's (a pending receive of a dead
    /// process would leave the count in flight, for nobody, once the parent skipped its
    /// undo).
    pub(crate) fn receive(
        &self,
        heap: &Heap,
        generation: u64,
        pending: bool,
        let_go: LetGo,
        receipt: Option<Receipt>,
    ) -> Result<(), Received> {
        debug_assert!(!(pending && receipt.is_some()), "a receipted receive is final");
        let received = self.receive_locked(heap, generation, pending, let_go, receipt);
        if received.is_ok() && receipt.is_some() {
            // Received, receipted and recorded, the table unlocked and unpinned.
            crash_point!("process.args.receipted");
        }
        received
    }

    /// The table's lock, taken for the object's block, not its table: by the looks that
    /// let go of a released object's start (`object::Look`), which this serializes. Nothing
    /// else locks a released table (every pin of it fails).
    pub(crate) fn lock_released(&self) -> RawGuard<'_> {
        RawGuard::lock(&self.lock)
    }

    /// [`Holders::lock_released`], unless its holder is stopped (`None`, found so once
    /// `deadline` passed): for the look a first pin lets go of, which must not wait for ever
    /// (`object::let_go_unless_stopped`).
    pub(crate) fn lock_released_unless_stopped(&self, deadline: Deadline) -> Option<RawGuard<'_>> {
        RawGuard::lock_unless_stopped(&self.lock, deadline)
    }

    /// [`Holders::lock_released`] if it is free, or, when `look`, if its holder is dead;
    /// never waits. For a kept look's retry, made at every announcement: the round of
    /// retries looks at holders at most once per `GUARD_GRACE` (`look`:
    /// [`RawGuard::looks_due`], asked once per round, review123 M2 and review124 M2).
    pub(crate) fn try_lock_released_looking_if(&self, look: bool) -> Option<RawGuard<'_>> {
        RawGuard::try_lock_looking_if(&self.lock, look)
    }

    /// Takes the table's lock, then gives the receive's pin back: the lock keeps the object
    /// from then on (it is freed only under it).
    /// Its announcement (see `pins`) is cleared after the unpin.
    fn lock_and_unpin(&self, announced: Option<Announced>) -> RawGuard<'_> {
        let g = RawGuard::lock(&self.lock);
        self.flight.fetch_sub(PIN, Ordering::Relaxed);
        drop(announced);
        g
    }

    fn receive_locked(
        &self,
        heap: &Heap,
        generation: u64,
        pending: bool,
        let_go: LetGo,
        receipt: Option<Receipt>,
    ) -> Result<(), Received> {
        let _gate = gate();
        if let Some(carrier) = receipt.and_then(|r| r.carrier()) {
            return self.receive_carried(heap, generation, let_go, carrier);
        }
        if pending {
            return self.receive_pending(heap, generation, let_go);
        }
        // A receipt on a boot socket (`boot::NOTE_ONLY`, a heap too full for a token) goes
        // before the take: the parent's undo skips a receipted handle, so a kill between
        // the two leaves the count in flight for nobody (a leak), never has that undo take
        // the count of another message carrying the object (tok40: sent after the take, a
        // kill between had the undo take a queued copy's count, and free the object the
        // copy names). A socket and the in-flight word cannot change in one step: that is
        // what a carrier, in the heap, is for.
        if let Some(receipt) = receipt {
            // Nothing announced yet, nothing sent: a kill here is one before the receive.
            crash_point!("holders.receive.receipting");
            receipts::write(receipt);
            // Receipted, not taken: the leak.
            crash_point!("holders.receive.receipted");
        }
        // Pinned until the table is locked: the object is freed only under its table's lock
        // (`finish`), so the lock keeps it from then on, and the pin goes at once. A kill
        // from the compare-and-swap to the unpin leaves the pin, announced: the next
        // holder's `finish` or prune takes it away (`drop_dead_pins`). The window holds no
        // more than the lock's acquiring, not the recording (a process's first listing of a
        // hold, a table's growth, a prune), nor the receipt's system call.
        let announced = self.announce(heap);
        let _g = match self.pin(generation, true) {
            Ok(()) => {
                if receipt.is_some() {
                    // Counted, receipted, pinned, not yet recorded: a kill here leaves an
                    // announced pin, taken away once no live process announces the table.
                    // On the receipted path only: a channel's receive pays nothing for it.
                    crash_point!("holders.receive.taken");
                }
                self.lock_and_unpin(announced)
            }
            Err(Received::NotInFlight { .. }) => {
                // No count: none comes back from the dead (a dead consumer's reservation
                // never took one), so the receive fails; the pin only lets it finish.
                self.pin(generation, false)?;
                let _g = self.lock_and_unpin(announced);
                return Err(Received::NotInFlight { last: self.finish(heap) });
            }
            Err(e) => return Err(e),
        };
        // The count taken (and receipted), this process not yet recorded: a kill here loses
        // the count with the process, as a kill after the recording would have (a final
        // receive's message is its receiver's alone: a child's argument, an embedded
        // reference).
        crash_point!("holders.receive.locked");
        let joined = self.join_locked(heap, false, let_go);
        match joined {
            Ok(()) => Ok(()),
            // The count is taken (and receipted, with a receipt): nobody else answers for it.
            Err(_) => Err(Received::HeapFull { last: self.finish(heap) }),
        }
    }

    /// [`Holders::receive`] of a handle in a message its channel has not taken yet: pinned
    /// without a take, then under the table's lock this process's entry *reserves* one of
    /// the counts in flight (its `pending`, with the handle's `count`), a count that stays
    /// in flight until [`Holders::settle`] takes it once the message is taken. A kill
    /// anywhere before the settle leaves the count in flight, for the consumer that gets the
    /// message again; the dead's reservation goes with its entry. (The count was taken at
    /// the pin until the chaos soak found a consumer killed between that take and its
    /// entry's record: the message stayed in its queue, its handle "received already".)
    fn receive_pending(&self, heap: &Heap, generation: u64, let_go: LetGo) -> Result<(), Received> {
        let announced = self.announce(heap);
        self.pin(generation, false)?;
        let _g = self.lock_and_unpin(announced);
        // Pinned and locked, nothing reserved: a kill here changes no count.
        crash_point!("holders.receive.locked");
        if self.unreserved_pruning(heap) == 0 {
            return Err(Received::NotInFlight { last: self.finish(heap) });
        }
        if self.join_locked(heap, true, let_go).is_err() {
            // No room to record this process: the decoding fails, and its message is taken
            // with the error; the count stays in flight (keeping the object) until the
            // take, which [`Holders::settle_unrecorded`] then takes (review34 M1: taken here,
            // a kill before the commit left the message without its count).
            crash_point!("holders.receive.refused");
            return Err(Received::HeapFull { last: false });
        }
        // Reserved and held: a kill here leaves the count in flight, the entry pruned.
        crash_point!("holders.receive.reserved");
        Ok(())
    }

    /// Under the lock: the counts in flight that no process has reserved (see
    /// [`Holders::receive_pending`]), the dead's reservations included until pruned.
    fn unreserved(&self, heap: &Heap) -> u64 {
        let mut reserved = 0u64;
        self.for_each(heap, |e| {
            if !e.is_free() {
                reserved += u64::from(e.pending.load(Ordering::Relaxed));
            }
            false
        });
        (self.flight.load(Ordering::Relaxed) & COUNT).saturating_sub(reserved)
    }

    /// Under the lock: [`Holders::unreserved`], the dead's reservations given up with their
    /// entries first when none is left (a dead consumer's reservation is nobody's).
    fn unreserved_pruning(&self, heap: &Heap) -> u64 {
        match self.unreserved(heap) {
            0 => {
                self.prune_dead(heap, sys::me());
                self.unreserved(heap)
            }
            n => n,
        }
    }

    /// [`Holders::receive`] of a handle its message carries in its own entry (the carrier
    /// `carrier`, see [`CARRIER`]): pinned without a take, then under the table's lock this
    /// process's entry counts it, then the carrier's stops counting it. Each entry is let go
    /// of once its holder is gone (this process's by its reaper, the carrier's by the
    /// message's undo), so a kill anywhere leaves the handle counted once or twice, by the
    /// dead, never nowhere and never another message's count taken.
    fn receive_carried(&self, heap: &Heap, generation: u64, let_go: LetGo, carrier: u64) -> Result<(), Received> {
        let announced = self.announce(heap);
        // Announced, not pinned: a dead process's announcement is nobody's pin.
        crash_point!("holders.receive.announced");
        self.pin(generation, false)?;
        // Pinned, nothing taken: a kill here leaves an announced pin, taken away once no
        // live process announces the table.
        crash_point!("holders.receive.pinned");
        let _g = self.lock_and_unpin(announced);
        crash_point!("holders.receive.locked");
        let holder = carrier_entry(carrier);
        if !self.for_each(heap, |e| e.is(holder) && e.count.load(Ordering::Relaxed) > 0) {
            return Err(Received::NotInFlight { last: self.finish(heap) });
        }
        // The carrier's count stays when this process cannot be recorded: its undo answers.
        self.join_locked(heap, false, let_go).map_err(|_| Received::HeapFull { last: false })?;
        // Counted by this process and by the carrier: a kill here is let go of twice, once
        // per entry (was the residual: a count taken from the in-flight word, whose undo
        // then took another message's).
        crash_point!("holders.receive.taken");
        self.for_each(heap, |e| {
            let found = e.is(holder);
            if found {
                let left = e.count.load(Ordering::Relaxed) - 1;
                e.count.store(left, Ordering::Relaxed);
                if left == 0 {
                    e.clear();
                }
            }
            found
        });
        Ok(())
    }

    /// A message this process received handles from was taken (or its decoding ended):
    /// one pending receive of this process becomes final. Returns `true` when nothing
    /// holds the object any more (its handle was dropped meanwhile): the caller frees it.
    pub(crate) fn settle(&self, heap: &Heap) -> bool {
        let _gate = gate();
        let _g = RawGuard::lock(&self.lock);
        let me = sys::me();
        // Only a reservation of this process's own is settled. The count first, then the
        // reservation: a kill between leaves a reservation of a dead process, given up
        // with its entry (a kill before the count, once the message was taken, leaves the
        // count in flight: the object leaks, see `forget_in_flight`). No count left means a
        // final take of replayed bytes got this reserved one (only `discard` and the
        // pending receive honour reservations): the handle is counted in this entry all
        // the same, and no other message's count is taken.
        self.for_each(heap, |e| {
            let pending = e.pending.load(Ordering::Relaxed);
            if !e.is(me) || pending == 0 {
                return false;
            }
            self.take_count();
            crash_point!("holders.settle.counted");
            e.pending.store(pending - 1, Ordering::Relaxed);
            if pending == 1 && e.copies() == 0 {
                e.clear();
            }
            true
        });
        self.finish(heap)
    }

    /// The count of a handle whose pending receive could not record this process
    /// ([`Received::HeapFull`]), taken once its message was: the settle of a receive that
    /// reserved nothing. Returns whether nothing holds the object any more: the caller
    /// frees it.
    pub(crate) fn settle_unrecorded(&self, heap: &Heap) -> bool {
        let _gate = gate();
        let _g = RawGuard::lock(&self.lock);
        self.take_count();
        self.finish(heap)
    }

    /// Takes one count from the in-flight word if one is left (checked in the update: a
    /// lock-free final take may have taken one since the caller looked); whether it did.
    fn take_count(&self) -> bool {
        self.flight.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| (w & COUNT != 0).then(|| w - 1)).is_ok()
    }

    /// A handle arrived in a message that is dropped unreceived (it was decoded as another
    /// type, or not read): consumes its in-flight count, if one is left that no pending
    /// receive reserved, unless it is the object's last reference (the object would have
    /// to be destroyed by a process that does not know its type: the count stays, and the
    /// object leaks). With a `receipt` (a carried decoding's, or one receipting on a boot
    /// socket) nothing changes: the message's undo, which knows the type, gives the count
    /// back. Without one, called once the message is taken, as a settle (a consumer killed
    /// before leaves the count to the next reader).
    pub(crate) fn discard(&self, heap: &Heap, generation: u64, receipt: Option<Receipt>) {
        self.discard_as(heap, generation, receipt, false);
    }

    /// [`Holders::discard`] for a side's table (no generation of its own: the caller pins
    /// its object's), whose last count is taken all the same: a side frees nothing, and
    /// never comes back. A side so left with no handle anywhere has its table released,
    /// and nobody tells its object (the caller does not know its type): its other sides
    /// learn it when they next look at its holders. (side37: a side's count stayed in
    /// flight for ever, and the other end of a pipe never saw the end of its stream.)
    pub(crate) fn discard_side(&self, heap: &Heap, receipt: Option<Receipt>) {
        self.discard_as(heap, 0, receipt, true);
    }

    /// [`Holders::discard`], and [`Holders::discard_side`] with `side`.
    fn discard_as(&self, heap: &Heap, generation: u64, receipt: Option<Receipt>, side: bool) {
        if receipt.is_some() {
            // Its count stays in its carrier's entry, or in flight with no receipt on the
            // boot socket: the carrier's undo, or the parent's at the reap, lets go of it
            // (and frees the object, whose type it knows). Taken here and receipted after, a
            // kill between had that undo take another message's count (tok40).
            return;
        }
        let announced = self.announce(heap);
        if self.pin(generation, false).is_err() {
            return;
        }
        let _g = self.lock_and_unpin(announced);
        // Under the lock: only a count nobody reserved (review34 M2: replayed bytes
        // discarded could take a live consumer's). A dead consumer's reservation is given up
        // first, as a pending receive gives it up (review37 L1: kept, the count of a handle
        // the dead had reserved stayed in flight for ever, and its object with it).
        if self.unreserved_pruning(heap) == 0 || !self.take_count() {
            return;
        }
        if self.unheld(heap) && !side {
            self.flight.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if side {
            // Released when nothing holds the side any more: nothing to free.
            self.finish(heap);
        }
    }

    /// Pins the object of `generation` (see [`Holders::receive`]), taking one in-flight
    /// count with `take`; the caller unpins under the lock.
    fn pin(&self, generation: u64, take: bool) -> Result<(), Received> {
        // This process's identity, which the table's lock records (`Owner::process`), known
        // before the pin: a fresh process learns it from `/proc` (a file's open, read and
        // close), and a kill there, pinned, left the pin for good (the chaos soak: about 1%
        // of the kills of a child starting with handles in its argument leaked one).
        let _ = sys::me();
        let expect = gen_bits(generation);
        let mut w = self.flight.load(Ordering::Acquire);
        loop {
            if w & !(COUNT | PINS) != expect || w & PINS == PINS {
                return Err(Received::Stale);
            }
            if take && w & COUNT == 0 {
                return Err(Received::NotInFlight { last: false });
            }
            if w & PINS == MAX_PINS {
                std::thread::yield_now();
                w = self.flight.load(Ordering::Acquire);
                continue;
            }
            let to = if take { w - 1 + PIN } else { w + PIN };
            match self.flight.compare_exchange_weak(w, to, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(now) => w = now,
            }
        }
    }

    /// Whether some other live process holds a handle, or a handle is in flight. Entries
    /// of dead processes are forgotten on the way. Reads `/proc`: call it when a wait has
    /// lasted, not on every operation. Here and in every liveness answer below, a handle
    /// this process is receiving (its count reserved, not yet taken) is its own, not in
    /// flight ([`Holders::flying_besides`]).
    pub(crate) fn others_alive(&self, heap: &Heap) -> bool {
        let _g = RawGuard::lock(&self.lock);
        let me = sys::me();
        self.prune_dead(heap, me);
        self.flying_besides(heap, me) || self.for_each(heap, |e| e.holds() && !e.is(me))
    }

    /// Whether a handle other than the caller's own exists: in flight, held by another live
    /// process, or a second one in this process (which another thread may use), leaving out
    /// `kept` of this process's count (handles its decodings keep, no handle of it now).
    /// Prunes the dead and reads `/proc`, as [`Holders::others_alive`].
    pub(crate) fn other_handles(&self, heap: &Heap, kept: u32) -> bool {
        let _g = RawGuard::lock(&self.lock);
        let me = sys::me();
        self.prune_dead(heap, me);
        self.flying_besides(heap, me)
            || self.for_each(heap, |e| e.holds() && (!e.is(me) || e.count.load(Ordering::Relaxed) > 1 + kept))
    }

    /// Whether any handle exists: in flight, or held by a live process (this one included).
    /// Prunes the dead and reads `/proc`, as [`Holders::others_alive`].
    pub(crate) fn any_alive(&self, heap: &Heap) -> bool {
        let _g = RawGuard::lock(&self.lock);
        self.prune_dead(heap, sys::me());
        self.flying() || self.for_each(heap, Entry::holds)
    }

    /// Whether the table was released: nothing holds its object (or its side) any more,
    /// nor ever will. One load, no lock, for a look made at every message; Acquire, so that
    /// what the last holder wrote before it let go (a pipe end's messages) is seen after.
    #[inline]
    pub(crate) fn released(&self) -> bool {
        self.flight.load(Ordering::Acquire) & PINS == PINS
    }

    /// Whether no handle is in flight and every live holder passes `covered(process,
    /// handles it holds)` (a queue asks: "are all of its handles waiting in `get`?").
    /// Prunes the dead and reads `/proc`, as [`Holders::others_alive`].
    pub(crate) fn all_holders(&self, heap: &Heap, mut covered: impl FnMut(ProcId, u32) -> bool) -> bool {
        let _g = RawGuard::lock(&self.lock);
        let me = sys::me();
        self.prune_dead(heap, me);
        !self.flying_besides(heap, me)
            && !self.for_each(heap, |e| {
                let id = ProcId { pid: e.pid.load(Ordering::Relaxed), start: e.start.load(Ordering::Relaxed) };
                e.holds() && !covered(id, e.count.load(Ordering::Relaxed))
            })
    }

    /// Forgets the entries of dead processes; returns how many of them held handles (not
    /// a fork child's pins alone). A caller that must notice every death (a barrier breaks
    /// when a holder dies) counts them here.
    pub(crate) fn forget_dead(&self, heap: &Heap) -> usize {
        let _g = RawGuard::lock(&self.lock);
        self.prune_dead(heap, sys::me())
    }

    /// Forgets the handles counted in flight that no live process reserved, once the dead
    /// are pruned (their reservations given up): for a caller that knows no message
    /// holding one is left anywhere, so that what is counted was lost with a receiver killed
    /// after its channel committed the take and before the receive was settled. Returns how
    /// many. Never frees: the caller holds a handle.
    pub(crate) fn forget_in_flight(&self, heap: &Heap) -> u32 {
        let _g = RawGuard::lock(&self.lock);
        self.prune_dead(heap, sys::me());
        let lost = self.unreserved(heap);
        // Clamped in the update: a lock-free final take may have taken one since.
        let forgot = self.flight.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
            (w & PINS != PINS).then(|| w - lost.min(w & COUNT))
        });
        forgot.map_or(0, |w| lost.min(w & COUNT) as u32)
    }

    /// Whether this process is receiving a handle of the object: its entry reserves a count
    /// in flight that no settle has taken yet (see [`Holders::receive_pending`]).
    pub(crate) fn receiving_here(&self, heap: &Heap) -> bool {
        let _g = RawGuard::lock(&self.lock);
        self.reserved_by(heap, sys::me()) > 0
    }

    /// Whether the calling process holds the only handle of the family: no other live
    /// process holds one, none is in flight, and this process holds exactly one (so no
    /// other thread of ours has a clone either).
    pub(crate) fn sole_holder(&self, heap: &Heap) -> bool {
        let _g = RawGuard::lock(&self.lock);
        let me = sys::me();
        self.prune_dead(heap, me);
        if self.flying_besides(heap, me) {
            return false;
        }
        let mut mine = 0;
        let others = self.for_each(heap, |e| {
            if e.is(me) {
                mine = e.count.load(Ordering::Relaxed);
                false
            } else {
                e.holds()
            }
        });
        !others && mine <= 1
    }

    /// Under the lock: forgets the entry of a dead process (whole: handles, reservations,
    /// fork pins), its death counted in `died` first if it held handles (pins alone were
    /// nobody's party). Every forgetting of a dead entry goes through here, so each death is
    /// counted once (twice at worst, for a forgetter killed between the count and the clear,
    /// never lost). Returns whether it held.
    fn forget_entry(&self, e: &Entry) -> bool {
        let held = e.holds();
        if held {
            self.died.store(self.died.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
        }
        crash_point!("holders.prune.counted");
        e.clear();
        held
    }

    /// How many holders died holding handles and were forgotten so far, by anyone (wrapping;
    /// see `died`). A caller that must answer every death compares it with the count it
    /// answered last, after its own prune ([`Holders::forget_dead`]).
    pub(crate) fn deaths(&self) -> u32 {
        self.died.load(Ordering::Acquire)
    }

    /// Forgets the entries of dead processes; returns how many of them held handles (a
    /// fork child's entry of pins alone is forgotten, not counted: it was nobody's party).
    /// Each is counted in `died` before its entry is cleared.
    fn prune_dead(&self, heap: &Heap, me: ProcId) -> usize {
        let mut dead = 0;
        self.for_each(heap, |e| {
            if !e.is_free() && !e.is(me) && !e.alive() {
                // Handles it was receiving from a message it had not taken were never taken
                // from the in-flight count (see `receive_pending`): forgetting the entry frees them
                // for the consumer that gets the message again.
                if self.forget_entry(e) {
                    dead += 1;
                }
            }
            false
        });
        if self.flight.load(Ordering::Relaxed) & PINS != 0 {
            self.drop_dead_pins(heap);
        }
        dead
    }

    fn free_blocks(&self, heap: &Heap) {
        let mut block = self.overflow.swap(0, Ordering::Relaxed);
        while block != 0 {
            let next = block_at(heap, block).next.load(Ordering::Relaxed);
            heap.free(block, std::mem::size_of::<Block>());
            block = next;
        }
    }
}

/// Adds the table at `off` to this process's registry (`mine`: its entry counts a handle, or
/// is about to) or takes it out; an object's own table is listed in the heap too.
fn note_at(heap: &Heap, off: u64, mine: Option<LetGo>) {
    let mut registry = held_here();
    let registry = &mut *registry;
    match mine {
        Some(let_go) => {
            let listed = match registry.tables.get(&off) {
                Some(Held { listed: Some(listed), .. }) => Some(*listed),
                _ if let_go.side.is_none() => registry.listed.add(heap, &let_go),
                _ => None,
            };
            registry.tables.insert(off, Held { let_go, listed });
        }
        None => {
            if let Some(Held { listed: Some(listed), .. }) = registry.tables.remove(&off) {
                registry.listed.remove(heap, listed);
            }
        }
    }
}

fn block_at(heap: &Heap, off: u64) -> &Block {
    // SAFETY: overflow blocks are allocated by `join_locked` with the size of a Block and
    // only freed by `free_blocks` under the table's lock, which every caller holds; a
    // Block is atomics only.
    unsafe { &*heap.ptr(off).cast::<Block>() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts in flight in `holders`' word.
    fn in_flight(holders: &Holders) -> u64 {
        holders.flight.load(Ordering::Relaxed) & COUNT
    }

    /// This process's handles and pending receives in `holders`.
    fn mine(heap: &Heap, holders: &Holders) -> (u32, u32) {
        let mut counts = (0, 0);
        holders.for_each(heap, |e| {
            if e.is(sys::me()) {
                counts = (e.count.load(Ordering::Relaxed), e.pending.load(Ordering::Relaxed));
            }
            false
        });
        counts
    }

    #[test]
    fn a_process_knows_who_it_is_before_it_pins() {
        // Found by the chaos soak (examples/chaos.rs): a fresh process's first receive
        // learned its identity (reading `/proc`) for the table's lock while the object was
        // pinned, and a kill there left the pin (about 1% of the kills of a child starting
        // with handles in its argument leaked one). Nothing between a pin and its unpin may
        // make a system call that a cached answer spares.
        let _serial = crate::shm::heap_test_lock();
        let holders = Holders::new_held_at(7);
        holders.send();
        sys::forget_identity();
        holders.pin(7, true).unwrap();
        let known = sys::identity_known();
        {
            let _g = RawGuard::lock(&holders.lock);
            holders.flight.fetch_sub(PIN, Ordering::Relaxed);
        }
        assert!(known, "the identity was learned before the pin");
    }

    /// A new object's table in the family heap (of generation `generation`, held by this
    /// process): its offset, to free it with, and the table.
    fn table_in(heap: &Heap, generation: u64) -> (u64, &Holders) {
        let off = heap.alloc_zeroed(std::mem::size_of::<Holders>()).unwrap();
        // SAFETY: (test) a fresh zeroed block of a table's size, 64-byte aligned, ours
        // alone until the caller frees it; a table is atomics only.
        let holders = unsafe {
            let table = heap.ptr(off).cast::<Holders>();
            table.write(Holders::new_held_at(generation));
            &*table
        };
        (off, holders)
    }

    #[test]
    fn a_dead_receivers_pin_is_taken_away_and_an_announced_one_kept() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let size = std::mem::size_of::<Holders>();
        let (off, holders) = table_in(heap, 7);
        // A receiver killed pinned: its count taken and its pin left, announced by nobody
        // alive (its announcement died with it).
        holders.send();
        holders.flight.fetch_add(PIN - 1, Ordering::AcqRel);
        assert!(holders.leave(heap).is_some(), "the creator's handle was the last: the dead pin goes");
        assert_eq!(holders.flight.load(Ordering::Relaxed), RELEASED);
        heap.free(off, size);

        // A live receiver (this thread stands for another of this process) pinned: announced,
        // so the last holder's leave keeps the object for it.
        let (off, holders) = table_in(heap, 8);
        holders.send();
        let announced = holders.announce(heap);
        assert!(announced.is_some(), "a table in the family heap is announced");
        holders.pin(8, true).unwrap();
        assert!(holders.leave(heap).is_none(), "an announced pin is a live receiver's: kept");
        assert!(holders.flight.load(Ordering::Relaxed) & PINS == PIN);
        let g = holders.lock_and_unpin(announced);
        assert!(holders.finish(heap), "unpinned, nothing holds it (the receiver dropped its handle)");
        drop(g);
        heap.free(off, size);
        assert_eq!(heap.in_use(), before);
    }

    /// A dead pin beside a dead holder's entry: the last live holder's leave prunes the
    /// entry and takes the pin away, instead of leaving the object to that holder's reaper.
    #[test]
    fn a_dead_pin_beside_a_dead_holders_entry_is_taken_away() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let size = std::mem::size_of::<Holders>();
        let (off, holders) = table_in(heap, 9);
        // A holder that died unpruned: this pid with another start (a process gone).
        let me = sys::me();
        holders.entries[1].pid.store(me.pid, Ordering::Relaxed);
        holders.entries[1].start.store(me.start + 1, Ordering::Relaxed);
        holders.entries[1].count.store(1, Ordering::Relaxed);
        // And a receiver killed pinned.
        holders.send();
        holders.flight.fetch_add(PIN - 1, Ordering::AcqRel);
        assert!(holders.leave(heap).is_some(), "the creator's handle was the last live one: the object goes");
        heap.free(off, size);
        assert_eq!(heap.in_use(), before);
    }

    #[test]
    fn a_released_table_has_nothing_in_flight() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let holders = Holders::new_held();
        assert!(holders.any_alive(heap));
        assert!(holders.leave(heap).is_some(), "the creator's handle was the last");
        assert!(!holders.any_alive(heap), "a released table (a pipe's side) is gone for good");
        assert!(!holders.others_alive(heap));
    }

    /// A channel's receive reserves a count in flight and its settle takes it (stop 32): a
    /// second receive finds none unreserved, a dead receiver's reservation is given up
    /// without touching the word (by a receive or a discard), a discard takes only an
    /// unreserved count, and `forget_in_flight` forgets only those.
    #[test]
    fn a_pending_receive_reserves_a_count_that_its_settle_takes() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let holders = Holders::new_held_at(7);
        let let_go = LetGo { object: 0, generation: 7, side: None, gone: |_, _| {}, token: false };
        holders.send();
        holders.receive(heap, 7, true, let_go, None).unwrap();
        assert_eq!((in_flight(&holders), mine(heap, &holders)), (1, (2, 1)), "reserved, not taken");
        assert_eq!(
            holders.receive(heap, 7, true, let_go, None),
            Err(Received::NotInFlight { last: false }),
            "its own reservation is not there for another receive"
        );
        holders.discard(heap, 7, None);
        assert_eq!(in_flight(&holders), 1, "a discard takes no reserved count");
        assert_eq!(holders.forget_in_flight(heap), 0, "a live reservation is not lost");
        assert!(!holders.settle(heap));
        assert_eq!((in_flight(&holders), mine(heap, &holders)), (0, (2, 0)), "taken at the settle");
        assert!(!holders.settle(heap), "a settle without a reservation takes nothing");
        // A dead receiver's reservation: given up by the next receive's prune, the count
        // still there for it.
        let dead = ProcId { pid: i32::MAX as u32, start: 1 }; // above any pid_max
        holders.send();
        holders.join_as(heap, dead, Counts { count: 1, pending: 1, fork_pins: 0 }, None).unwrap();
        holders.receive(heap, 7, true, let_go, None).unwrap();
        assert!(!holders.for_each(heap, |e| e.is(dead)), "the dead entry is gone");
        assert_eq!((in_flight(&holders), mine(heap, &holders)), (1, (3, 1)));
        assert!(!holders.settle(heap));
        assert_eq!(in_flight(&holders), 0);
        // A dead receiver's reservation, given up by a discard's prune (review37 L1: kept,
        // the count stayed in flight for ever).
        holders.send();
        holders.join_as(heap, dead, Counts { count: 1, pending: 1, fork_pins: 0 }, None).unwrap();
        holders.discard(heap, 7, None);
        assert!(!holders.for_each(heap, |e| e.is(dead)), "the dead entry is gone");
        assert_eq!(in_flight(&holders), 0, "the discard took the count the dead had reserved");
        // An unreserved count: a discard takes it, `forget_in_flight` forgets it.
        holders.send();
        holders.send();
        holders.discard(heap, 7, None);
        assert_eq!(holders.forget_in_flight(heap), 1);
        assert_eq!(in_flight(&holders), 0);
        for _ in 0..2 {
            assert!(holders.leave(heap).is_none());
        }
        assert!(holders.leave(heap).is_some(), "nothing else held it");
    }

    /// review34 L4: the count a pending receive reserves is its receiver's own handle in the
    /// liveness answers it asks; a count nobody reserved is still in flight.
    #[test]
    fn a_receivers_own_reservation_is_its_own_handle_to_it() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let holders = Holders::new_held_at(7);
        let let_go = LetGo { object: 0, generation: 7, side: None, gone: |_, _| {}, token: false };
        holders.send();
        assert!(holders.leave(heap).is_none(), "its one handle in flight");
        holders.receive(heap, 7, true, let_go, None).unwrap();
        assert_eq!((in_flight(&holders), mine(heap, &holders)), (1, (1, 1)), "reserved, not taken");
        assert!(!holders.others_alive(heap), "nobody else");
        assert!(!holders.other_handles(heap, 0), "no other handle");
        assert!(holders.sole_holder(heap), "the only handle");
        assert!(holders.all_holders(heap, |_, handles| handles == 1), "its one handle");
        holders.send();
        assert!(holders.others_alive(heap) && holders.other_handles(heap, 0), "an unreserved count in flight");
        assert!(!holders.sole_holder(heap) && !holders.all_holders(heap, |_, _| true));
        holders.discard(heap, 7, None);
        assert!(!holders.settle(heap));
        assert_eq!((in_flight(&holders), mine(heap, &holders)), (0, (1, 0)));
        // Another live process's reservation (this test's parent stands for one): a handle
        // besides this process's, counted through that process's entry (review37 L4).
        let parent = sys::parent_pid();
        let other = ProcId { pid: parent, start: sys::process_start_time(parent).expect("the parent runs") };
        holders.send();
        holders.join_as(heap, other, Counts { count: 1, pending: 1, fork_pins: 0 }, None).unwrap();
        assert!(holders.others_alive(heap) && holders.other_handles(heap, 0), "another receiver's reservation");
        assert!(!holders.sole_holder(heap) && !holders.all_holders(heap, |p, _| p == sys::me()));
        // That receiver's settle, then its drop, done here.
        holders.for_each(heap, |e| {
            if e.is(other) {
                e.clear();
            }
            false
        });
        assert!(holders.take_count());
        assert!(holders.leave(heap).is_some(), "nothing else held it");
    }

    /// Whoever forgets a dead holder's entry counts its death (a barrier must learn of it
    /// whoever forgot it); a dead fork child's pins alone are nobody's death.
    #[test]
    fn every_forgetting_of_a_dead_holder_counts_its_death() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let holders = Holders::new_held_at(7);
        let dead = ProcId { pid: i32::MAX as u32, start: 1 }; // above any pid_max
        let held = Counts { count: 1, pending: 0, fork_pins: 0 };
        let mut deaths = 0;
        let mut forgotten = |how: &str, forget: &dyn Fn()| {
            holders.join_as(heap, dead, held, None).unwrap();
            forget();
            deaths += 1;
            assert_eq!(holders.deaths(), deaths, "a death forgotten by {how} was not counted");
            assert!(!holders.for_each(heap, |e| e.is(dead)), "{how} left the dead entry");
        };
        forgotten("a waiter's check", &|| assert_eq!(holders.forget_dead(heap), 1));
        forgotten("sole_holder", &|| assert!(holders.sole_holder(heap)));
        forgotten("forget_in_flight", &|| assert_eq!(holders.forget_in_flight(heap), 0));
        forgotten("any_alive", &|| assert!(holders.any_alive(heap)));
        forgotten("a reap", &|| assert!(!holders.let_go_of_dead(heap, dead, 7, Forget::Its)));
        // A dead receiver's pending receive (a reservation), given up by the undo of its
        // message, which takes the count.
        holders.send();
        holders.join_as(heap, dead, Counts { count: 0, pending: 1, fork_pins: 0 }, None).unwrap();
        assert_eq!(holders.undo(heap, 7, Undoing::Unsend, Some(dead.pid)), Some(false));
        assert_eq!(holders.deaths(), deaths + 1, "a death forgotten by an undo was not counted");
        assert_eq!(holders.undo(heap, 7, Undoing::Unsend, None), Some(false));
        // A dead fork child's pins: forgotten, not counted.
        holders.join_as(heap, dead, Counts { count: 0, pending: 0, fork_pins: 2 }, None).unwrap();
        assert_eq!(holders.forget_dead(heap), 0);
        assert_eq!(holders.deaths(), deaths + 1, "pins alone are nobody's death");
        // The last drop of this process's handle forgets the dead beside it.
        holders.join_as(heap, dead, held, None).unwrap();
        assert!(holders.leave(heap).is_some(), "nothing else held it");
        assert_eq!(holders.deaths(), deaths + 2, "a death forgotten by a drop was not counted");
    }

    /// A fork record is its child's by pid and start time: the late end of a dead child
    /// (reaped by the program, noticed at our next look) whose pid is now a live fork
    /// child's forgets nothing of the live one's. By pid alone (review85 H2), the live
    /// child's record was taken and its entries forgotten: what it copied was freed under it.
    #[test]
    fn a_fork_record_is_ended_by_its_childs_pid_and_start_time() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let blob = crate::shm::Blob::new(&[7; 64]).unwrap();
        // The live child: any process of ours that runs (recorded as a fork child would be).
        let mut live = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let child = ProcId { pid: live.id(), start: sys::process_start(live.id()).unwrap() };
        let record = before_fork();
        assert!(!record.holds_nothing());
        record.record(child);
        // An earlier process that had the same pid.
        fork_child_ended(ProcId { start: child.start - 1, ..child });
        drop(blob);
        let kept = heap.in_use() > before;
        let _ = live.kill();
        let _ = live.wait();
        fork_child_ended(child);
        assert!(kept, "the live child's copy of the blob was freed under it");
        assert_eq!(heap.in_use(), before, "its own end lets go of its copy");
    }

    #[test]
    fn fork_pins_keep_the_memory_but_answer_no_liveness_question() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let holders = Holders::new_held();
        // As a fork child whose parent held two handles, and which received one of its own.
        let pins = Counts { count: 0, pending: 0, fork_pins: 2 };
        holders.join_as(heap, sys::me(), pins, None).unwrap();
        assert!(!holders.other_handles(heap, 0), "its one handle is the only one counted");
        assert!(holders.sole_holder(heap));
        assert!(holders.leave(heap).is_none(), "the handle goes, the pins keep the memory");
        assert!(!holders.any_alive(heap), "pins alone are nobody's handle");
        assert!(holders.leave(heap).is_none());
        assert!(holders.leave(heap).is_some(), "the last pin was the last reference");
    }

    /// What closed the take-to-receipt residual (token31b): a child's argument's handle
    /// travels counted in its carrier's entry, so its receiver's take and the undo of what
    /// it did not take never touch another message's count in flight.
    #[test]
    fn a_carried_handle_is_taken_from_its_carrier_and_its_undo_takes_no_other_count() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let holders = Holders::new_held_at(7);
        let let_go = LetGo { object: 0, generation: 7, side: None, gone: |_, _| {}, token: false };
        let carrier_counts = |holders: &Holders, carrier: u64| {
            let mut count = None;
            holders.for_each(heap, |e| {
                let found = e.is(carrier_entry(carrier));
                if found {
                    count = Some(e.count.load(Ordering::Relaxed));
                }
                found
            });
            count
        };
        let from = |carrier: u64| Some(Receipt { block: receipts::carried(carrier), key: [0, 7, 0] });
        // Two messages: a child's argument carrying the handle twice, and a queue's.
        for _ in 0..3 {
            holders.send();
        }
        for _ in 0..2 {
            assert_eq!(holders.undo(heap, 7, Undoing::Carry(4096), None), Some(false));
        }
        assert_eq!((in_flight(&holders), carrier_counts(&holders, 4096)), (1, Some(2)));
        assert!(holders.other_handles(heap, 0), "a carried handle is somebody's");
        // Taken once: this process's, the carrier's one fewer, the queue's count untouched.
        holders.receive(heap, 7, false, let_go, from(4096)).unwrap();
        assert_eq!((in_flight(&holders), carrier_counts(&holders, 4096)), (1, Some(1)));
        // A pending receive of a dead process would leave the count in flight, for nobody.
        assert_eq!(mine(heap, &holders), (2, 0), "held at once, nothing pending");
        // Its receiver gone with one handle untaken: the undo lets go of the carrier's
        // entry, whole, once, and of nothing else.
        for _ in 0..2 {
            assert_eq!(holders.undo(heap, 7, Undoing::Uncarry(4096), None), Some(false));
        }
        assert_eq!((in_flight(&holders), carrier_counts(&holders, 4096)), (1, None));
        assert_eq!(
            holders.receive(heap, 7, false, let_go, from(4096)),
            Err(Received::NotInFlight { last: false }),
            "nothing left to take from that carrier"
        );
        // A receiver killed between its record and the carrier's (`holders.receive.taken`):
        // counted twice, each entry let go of by its own holder's end.
        holders.send();
        assert_eq!(holders.undo(heap, 7, Undoing::Carry(4160), None), Some(false));
        let dead = ProcId { pid: i32::MAX as u32, start: 1 }; // above any pid_max
        holders.join_as(heap, dead, Counts { count: 1, pending: 0, fork_pins: 0 }, None).unwrap();
        assert_eq!(holders.undo(heap, 7, Undoing::Uncarry(4160), Some(dead.pid)), Some(false));
        assert_eq!(in_flight(&holders), 1, "the queue's count is still there to be received");
        // A carrier not sent after all: its counts go back in flight.
        holders.send();
        assert_eq!(holders.undo(heap, 7, Undoing::Carry(4224), None), Some(false));
        assert_eq!(holders.undo(heap, 7, Undoing::Restore { carrier: 4224, kept: true }, None), Some(false));
        assert_eq!((in_flight(&holders), carrier_counts(&holders, 4224)), (2, None));
        for _ in 0..2 {
            assert_eq!(holders.undo(heap, 7, Undoing::Unsend, None), Some(false));
        }
        assert!(holders.leave(heap).is_none(), "the received handle is still held");
        assert!(holders.leave(heap).is_some(), "the dead receiver's entry pruned, nothing else held it");
    }

    #[test]
    fn an_undo_touches_only_its_own_object_and_takes_a_dead_receivers_pending_first() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        // A table of generation 7 whose word has a handle in flight (another message's).
        let holders = Holders::new_held_at(7);
        holders.send();
        assert_eq!(holders.undo(heap, 8, Undoing::Unsend, None), Some(false), "another object's undo");
        assert!(holders.flying(), "writes nothing in this one");
        // A dead receiver reserved the undo's count, pending.
        let dead = ProcId { pid: i32::MAX as u32, start: 1 }; // above any pid_max
        holders.send();
        holders.join_as(heap, dead, Counts { count: 0, pending: 1, fork_pins: 0 }, None).unwrap();
        assert_eq!(holders.undo(heap, 7, Undoing::Unsend, Some(dead.pid)), Some(false), "the creator still holds it");
        assert!(!holders.for_each(heap, |e| e.is(dead)), "the dead entry is gone");
        assert_eq!(holders.flight.load(Ordering::Relaxed) & COUNT, 1, "the other message's count stays");
        assert_eq!(holders.undo(heap, 7, Undoing::Unsend, None), Some(false));
        assert!(holders.leave(heap).is_some(), "nothing else held it");
        assert_eq!(holders.undo(heap, 7, Undoing::Unsend, None), Some(false), "a released table is left alone");
    }

    /// review102 L2: a carry whose pin failed (the object released, or another generation's)
    /// made no carrier entry, yet said "carried"; a `restore` then took the object's keys
    /// for kept by that entry, and ran its undo with no look and no holder.
    #[test]
    fn a_carry_that_pins_nothing_carries_nothing() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let holders = Holders::new_held_at(7);
        holders.send();
        assert_eq!(holders.undo(heap, 8, Undoing::Carry(4288), None), None, "another generation's carry");
        assert!(!holders.for_each(heap, |e| e.is(carrier_entry(4288))), "and made no entry");
        assert_eq!(holders.undo(heap, 7, Undoing::Unsend, None), Some(false));
        assert!(holders.leave(heap).is_some(), "nothing else held it");
        assert_eq!(holders.undo(heap, 7, Undoing::Carry(4288), None), None, "a released table's carry");
    }

    /// A dead receiver's pending receive is recorded as `receive_pending` records it: the
    /// reservation and the hold it would have become. The undo gives up both, takes the
    /// message's count, and the object is nobody's. Before (boot44), it gave up the
    /// reservation only: the dead entry kept holding the object, whose reap had declined to
    /// forget it while its count was in flight, and a boot message's blob, which nobody
    /// else holds, leaked (`tests/process.rs`
    /// `children_killed_in_their_boot_decoding_give_its_blobs_back`).
    #[test]
    fn an_undo_gives_up_a_dead_receivers_pending_receive_with_its_hold() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let holders = Holders::new_held_at(7);
        holders.send();
        assert!(holders.leave(heap).is_none(), "the message still counts it");
        let dead = ProcId { pid: i32::MAX as u32, start: 1 }; // above any pid_max
        holders.join_as(heap, dead, Counts { count: 1, pending: 1, fork_pins: 0 }, None).unwrap();
        assert_eq!(holders.undo(heap, 7, Undoing::Unsend, Some(dead.pid)), Some(true), "nothing holds it any more");
    }

    /// A dead receiver killed receiving the object a second time, which it held already
    /// from a completed receive: the undo forgets its entry whole, as a prune does, and
    /// counts its death once. Before (review62 L1), it gave up the pending receive only;
    /// the completed hold stayed, and with no live holder left to prune it, the object
    /// stayed held by the dead for ever.
    #[test]
    fn an_undo_forgets_a_dead_receiver_whole_its_completed_holds_too() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let holders = Holders::new_held_at(7);
        holders.send();
        assert!(holders.leave(heap).is_none(), "the message still counts it");
        let deaths = holders.deaths();
        let dead = ProcId { pid: i32::MAX as u32, start: 1 }; // above any pid_max
        holders.join_as(heap, dead, Counts { count: 2, pending: 1, fork_pins: 1 }, None).unwrap();
        assert_eq!(holders.undo(heap, 7, Undoing::Unsend, Some(dead.pid)), Some(true), "nothing holds it any more");
        assert_eq!(holders.deaths(), deaths.wrapping_add(1), "its death counted once");
    }
}
