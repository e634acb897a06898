//! Shared objects and their handles.
//!
//! A shared object is an allocation in the family heap: a header (what it is, how big,
//! who holds it) followed by the object's state. [`Shared<T>`] is a handle to one: clone
//! it and the holder table counts one more, drop it and the last handle of the whole
//! family frees the object. Handles serialize as their offset, so they travel in any
//! message of the family.
//!
//! A handle in a message is a capability, not a pointer. Invariants:
//!
//! * The header records what the object is: its kind, a fingerprint of its Rust type
//!   (`TypeId` and layout: the same in every process of the family, which all run one
//!   binary), its length (tail included), and a generation no other object of the family
//!   ever had.
//! * The header's *seal* is a keyed hash (SipHash-2-4) of family, offset, kind, type,
//!   generation and length under the family's secret key, which lives in each process's
//!   own memory, never in the heap. A handle carries the same seal. Decoding recomputes it
//!   for the type asked for and the length found, and requires the message's seal, the
//!   header's seal and the generation to agree: a handle of another type, bytes pointing
//!   at a forged header (a fake length) and bytes naming an object that was freed (its
//!   seal is cleared before its block is freed) are refused with a decode error, before
//!   anything is written.
//! * Receiving consumes exactly one in-flight count (see `holders`): replayed bytes of a
//!   live object make no holder out of nothing.
//! * Nothing at the offset a handle names is loaded before the heap's directory of object
//!   starts (`Heap::start`) says that the object of the handle's generation starts there
//!   ([`header_at`]): an offset inside another object's bytes, which its holders may write
//!   plainly (an `Array`'s guard, a blob being filled), is refused without an atomic load
//!   racing their stores, a data race in Rust's model even when the seal then refuses what
//!   was read.
//! * The look and what follows it are one pin ([`Look`]): an object released meanwhile
//!   keeps its block until the last look lets go, so no look ever loads, or writes, a block
//!   another object has taken. A look of a process that dies is taken away by the next
//!   look that lets go of the released start, or by the release itself.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ShmSafe;
use super::crash::{crash_point, interleave};
use super::heap::{Heap, HeapFull};
use super::holders::{self, Holders, Last, LetGo, Received};
use super::mutex::RawGuard;
use super::pins::{self, Announced};
use super::receipts::{ArgsState, Receipt};
use super::wait::Deadline;
use crate::codec;

/// The kinds of shared object, one number each, checked when a handle is decoded.
pub(crate) mod kind {
    /// Test objects of the handle mechanism.
    #[cfg(test)]
    pub(crate) const TEST: u32 = 1;
    pub(crate) const LOCK: u32 = 10;
    pub(crate) const RLOCK: u32 = 11;
    pub(crate) const SEMAPHORE: u32 = 12;
    pub(crate) const EVENT: u32 = 13;
    pub(crate) const CONDITION: u32 = 14;
    pub(crate) const BARRIER: u32 = 15;
    pub(crate) const VALUE: u32 = 20;
    pub(crate) const RAW_VALUE: u32 = 21;
    pub(crate) const ARRAY: u32 = 22;
    pub(crate) const RAW_ARRAY: u32 = 23;
    pub(crate) const QUEUE: u32 = 31;
    pub(crate) const PIPE: u32 = 32;
    pub(crate) const BLOB: u32 = 33;
    pub(crate) const POOL: u32 = 40;
    pub(crate) const MANAGER: u32 = 50;
    pub(crate) const MANAGER_TOKEN: u32 = 51;
    pub(crate) const MANAGER_REPLIES: u32 = 52;
    /// A child's argument's undo and receipts, the token it takes first (`receipts`).
    pub(crate) const ARGS: u32 = 60;
    /// The undo of a child's result's handles, for its parent (`receipts::ResultUndo`).
    pub(crate) const RESULT_UNDO: u32 = 61;
}

const TAG: u64 = 0x4f42_4a00_0000_0000; // "OBJ\0"

/// The bits of a header's tag that say where a [`Sided`] object's side tables are, for a
/// process that does not know its type ([`Header::side_table`]): 0 for an object without
/// sides; else how many sides (bits 28 to 31) and the offset from the object's start of
/// the first side's table in 8-byte words (bits 16 to 27; the others follow it,
/// [`Sided::side_tables`]). The kind takes the 16 bits below.
const SIDE_TABLES: u64 = 0xffff_0000;

/// The header in front of every shared object.
#[repr(C)]
struct Header {
    /// [`TAG`], [`SIDE_TABLES`] and the kind.
    tag: AtomicU64,
    len: AtomicU64,
    /// Given at creation from the family's counter; never reused.
    generation: AtomicU64,
    /// The keyed hash of what the object is (see the module docs); 0 once released.
    seal: AtomicU64,
    holders: Holders,
}

impl Header {
    /// The offset, from the object's start, of the holder table of side `side`, if the
    /// object has that side (see [`SIDE_TABLES`], set by [`Side::split`] before the object
    /// is shared).
    fn side_table(&self, side: usize) -> Option<u64> {
        let tables = (self.tag.load(Ordering::Acquire) & SIDE_TABLES) >> 16;
        let (sides, first) = (tables >> 12, (tables & 0xfff) * 8);
        (side < sides as usize).then(|| first + (side * std::mem::size_of::<Holders>()) as u64)
    }
}

/// A fingerprint of the type `T`: the same in every process of one binary, different for
/// two types of one binary (with their size and alignment, for good measure).
fn fingerprint<T: 'static>() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = siphasher::sip::SipHasher13::new();
    std::any::TypeId::of::<T>().hash(&mut h);
    h.write_usize(std::mem::size_of::<T>());
    h.write_usize(std::mem::align_of::<T>());
    h.finish()
}

/// What the directory of object starts holds for a live object of `generation`
/// (`Heap::start`), looked at by no [`Look`]: [`LIVE`] and the generation's low 23 bits,
/// above [`LOOKS`]. A word below [`LIVE`] is no object's start: 0, or a released object's
/// block that looks still pin, their count the whole word (see [`unstart`]).
fn start_mark(generation: u64) -> u32 {
    (LIVE >> 8 | (generation as u32) & 0x7f_ffff) << 8
}

/// The top bit of every live object's mark ([`start_mark`]), never of a released word: a
/// released start counts its looks in the 31 bits below it, up to [`MAX_RELEASED`]. With
/// 24 bits of generation and a released word below 256, a released start of 255 looks
/// (254 on the live object and its releaser's) took no look more, and when every one was a
/// dead process's, no look could pin the block to let go of them: it leaked (hnd91's
/// residual, `a_released_start_of_255_dead_looks_keeps_no_block`).
const LIVE: u32 = 1 << 31;
/// The most looks a released start counts: never reached (every one a look of a process,
/// live or killed looking), but checked, as 255 was.
const MAX_RELEASED: u32 = LIVE - 1;
/// The low bits of a live start's directory word: how many [`Look`]s pin it.
const LOOKS: u32 = 0xff;
/// The most looks at one live start; a released start counts them with its releaser's own
/// (see [`unstart`]), and more.
pub(super) const MAX_LOOKS: u32 = 0xfe;
/// What a look announces (see `pins`): the object's offset plus this. A holder table's
/// offset, which a table's pin announces, is a multiple of 8.
const LOOKED: u64 = 1;
/// Where an object's own holder table is, from its start: its look lends its slot to this
/// thread's pins of that table (`pins::lend`).
const HOLDERS_AT: u64 = std::mem::offset_of!(Header, holders) as u64;

/// Whether the object of `generation` that a dead process was making at `off` (its block
/// listed as being made: `holds::List::making`) was written whole: its start stored, the
/// last step of `Shared::place` before its listing. Else nothing but the block is there,
/// known to no other process. Only for that block, which nobody but its dead maker's
/// reaper can free: its start word is 0, or this generation's (a look perhaps counted).
pub(super) fn made_whole(heap: &Heap, off: u64, generation: u64) -> bool {
    heap.contains(off, std::mem::size_of::<Header>())
        && heap.start(off).load(Ordering::Acquire) & !LOOKS == start_mark(generation)
}

/// In a reaper's `gone` call: finish the release that the object's dead last holder began
/// (its listing marked releasing: `holds::List::releasing`).
pub(super) const RESUME_RELEASE: usize = 1 << 62;
/// With [`RESUME_RELEASE`]: its `destroy` was done.
pub(super) const RESUME_DESTROYED: usize = 1 << 61;

/// Where the release of the object of `generation` at `off` stands, that its last holder,
/// now dead, began (its listing still marked releasing: `holds::List::releasing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Released {
    /// Its start is still there: the release is to be finished ([`RESUME_RELEASE`]).
    Started,
    /// Its start is gone with no look counted, its block unfreed (a release takes the
    /// listing out just before its free, and the start once a look may free it): the block,
    /// of this length, is to be freed.
    Unstarted(usize),
    /// Nothing the reaper may do (never, but for a header that is not the object's: left).
    Unknown,
}

/// [`Released`] of the object of `generation` at `off` whose listing, marked releasing, a
/// dead process left. Only for such a listing, which its dead holder's reaper alone walks:
/// the block is allocated (its listing would be gone otherwise), and only that reaper frees
/// it.
pub(super) fn released(heap: &Heap, off: u64, generation: u64) -> Released {
    if !heap.contains(off, std::mem::size_of::<Header>()) {
        return Released::Unknown;
    }
    let w = heap.start(off).load(Ordering::Acquire);
    // SAFETY: the block is allocated (see above), and holds the object's header (written
    // whole before it was listed, cleared of its seal and tag only); a header is atomics only.
    let header = unsafe { &*heap.ptr(off).cast::<Header>() };
    if header.generation.load(Ordering::Relaxed) != generation || !header.holders.released() {
        return Released::Unknown;
    }
    if w & !LOOKS == start_mark(generation) {
        Released::Started
    } else if w == 0 {
        Released::Unstarted(header.len.load(Ordering::Relaxed) as usize)
    } else {
        Released::Unknown
    }
}

/// The seal of the object of kind and type `T` at `off`.
fn seal_of<T: ShmObject>(heap: &Heap, off: u64, generation: u64, len: u64) -> u64 {
    heap.seal(&[heap.family_id(), off, u64::from(T::KIND), fingerprint::<T>(), generation, len])
}

#[repr(C)]
struct Obj<T> {
    header: Header,
    value: T,
}

/// State that lives in the family heap behind [`Shared`] handles.
pub(crate) trait ShmObject: ShmSafe + Sync + Send {
    /// What this is (see [`kind`]); checked when a handle is decoded.
    const KIND: u32;

    /// Releases what the object owns elsewhere in the heap. Called once, by whichever
    /// process drops the family's last handle.
    fn destroy(&self, _heap: &Heap) {}

    /// `destroy` may run again after a run cut short by a kill at any point, and frees
    /// nothing twice (each step recorded before its free): the reaper of a last holder
    /// killed inside the release runs it again (see `holds`). Else that reaper skips it
    /// (what the object owns then leaks) and frees the object's block alone. A `destroy`
    /// that does nothing need not say so: skipped, it did all it does.
    const DESTROY_RESUMES: bool = false;

    /// The object is a large message written whole at creation ([`Shared::with_dirty_tail`]):
    /// its block is freed warm ([`Heap::free_warm`]), its pages kept for the next one.
    const WARM: bool = false;
}

/// How [`Shared::place`] takes its block.
enum Block {
    Zeroed,
    Dirty,
    /// Dirty, its pages faulted in.
    Populated,
}

/// A handle to a shared object of type `T`.
pub(crate) struct Shared<T: ShmObject> {
    off: u64,
    obj: NonNull<Obj<T>>,
    _marker: PhantomData<T>,
}

// SAFETY: the object is in shared memory and `T: Sync`; the handle itself is an offset
// and a pointer into a mapping that lives as long as the process.
unsafe impl<T: ShmObject> Send for Shared<T> {}
// SAFETY: as above; `&Shared<T>` only gives `&T`.
unsafe impl<T: ShmObject> Sync for Shared<T> {}

impl<T: ShmObject> Shared<T> {
    /// Places `value` in the family heap; the calling process holds the one handle.
    pub(crate) fn new(value: T) -> Result<Self, HeapFull> {
        Self::with_tail(value, 0)
    }

    /// Like [`Shared::new`], followed by `tail` zeroed bytes (64-byte aligned) for the
    /// object's variable part.
    pub(crate) fn with_tail(value: T, tail: usize) -> Result<Self, HeapFull> {
        Self::place(value, tail, Block::Zeroed)
    }

    /// Like [`Shared::with_tail`], but the tail's bytes are unspecified (a warm block's old
    /// bytes): for an object whose creator writes its whole tail before sharing it.
    pub(crate) fn with_dirty_tail(value: T, tail: usize) -> Result<Self, HeapFull> {
        Self::place(value, tail, Block::Dirty)
    }

    /// [`Shared::with_dirty_tail`] and [`Shared::populate_tail`] in one, but a warm block
    /// is not populated again: this process faulted its pages in when it last wrote it (the
    /// walk over present pages was ~4% of a claimed map's samples).
    pub(crate) fn with_populated_dirty_tail(value: T, tail: usize) -> Result<Self, HeapFull> {
        Self::place(value, tail, Block::Populated)
    }

    fn place(value: T, tail: usize, block: Block) -> Result<Self, HeapFull> {
        const { assert!(std::mem::align_of::<Obj<T>>() <= 64, "the heap aligns objects to 64 bytes") };
        // The bits above the kind are the tag's side record and a wire's side mark.
        const { assert!(T::KIND < 1 << SIDE_SHIFT, "every kind is below 1 << 16") };
        let heap = Heap::get();
        // A tail near `usize::MAX` (a caller's length) must not wrap to a small block.
        let len = Self::tail_start().checked_add(tail).ok_or(HeapFull::requested(usize::MAX))?;
        let generation = heap.next_generation();
        // The list of what this process holds grows before anything is taken, and lists the
        // block from inside its allocation, as being made (see `holds::List::making`).
        let making = Holders::making(heap, Self::let_go(0, generation).gone, generation, len as u64);
        let record = making.as_ref().map(|m| m.record());
        let off = match block {
            Block::Zeroed => heap.alloc_zeroed_into(len, record),
            Block::Dirty => heap.alloc_dirty_into(len, record),
            Block::Populated => heap.alloc_dirty_populated_into(len, record),
        };
        let off = match off {
            Ok(off) => off,
            Err(full) => {
                if let Some(making) = making {
                    Holders::unmade(making);
                }
                return Err(full);
            }
        };
        crash_point!("object.place.allocated");
        let seal = seal_of::<T>(heap, off, generation, len as u64);
        let obj = heap.ptr(off).cast::<Obj<T>>();
        // SAFETY: `off` is a fresh allocation of `len >= size_of::<Obj<T>>()` bytes,
        // 64-byte aligned (enough for any ShmSafe type), owned by us alone until the
        // handle is shared.
        unsafe {
            obj.write(Obj {
                header: Header {
                    tag: AtomicU64::new(TAG | u64::from(T::KIND)),
                    len: AtomicU64::new(len as u64),
                    generation: AtomicU64::new(generation),
                    seal: AtomicU64::new(seal),
                    holders: Holders::new_held_at(generation),
                },
                value,
            });
        }
        crash_point!("object.place.written");
        // Its start, once its header is written (release: a decoding that finds it loads
        // the header), before the handle can be in any message or record.
        heap.start(off).store(start_mark(generation), Ordering::Release);
        crash_point!("object.place.started");
        // Listed once written whole: a reaper recognises it by its header (see `holds`).
        let table = off + (std::mem::offset_of!(Obj<T>, header) + std::mem::offset_of!(Header, holders)) as u64;
        Holders::new_object_held(heap, table, Self::let_go(off, generation), making);
        Ok(Self { off, obj: NonNull::new(obj).expect("heap pointer"), _marker: PhantomData })
    }

    /// Registers with the decoding what makes the receive of the handle of the object at
    /// `off` final once its message is taken (see `codec::on_taken`): the settle of its
    /// reservation (`recorded`), or the take of the count a receive refused for a full heap
    /// left in flight ([`Holders::settle_unrecorded`]). The object is freed if nothing
    /// holds it then.
    fn settle_on_take(off: u64, recorded: bool) {
        codec::on_taken(move || {
            let heap = Heap::get();
            // SAFETY: this process's reservation, or the count in flight, keeps the object
            // at `off` allocated until this settle.
            let holders = unsafe { &(*heap.ptr(off).cast::<Obj<T>>()).header.holders };
            let gone = if recorded { holders.settle(heap) } else { holders.settle_unrecorded(heap) };
            if gone {
                Self::release(off);
            }
        });
    }

    /// How a process that finds the object at `off` (of `generation`) unheld frees it
    /// (the registry of what this process holds keeps it for its fork children).
    fn let_go(off: u64, generation: u64) -> LetGo {
        LetGo { object: off, generation, side: None, gone: Self::gone, token: T::KIND == kind::ARGS }
    }

    /// How a process that finds the object at `off` unheld frees it ([`LetGo::gone`]), or,
    /// with [`RESUME_RELEASE`] in `how`, finishes the release its dead last holder began
    /// (`holds`' reaper, once it found it unfreed: [`released_unfreed`]).
    fn gone(off: u64, how: usize) {
        if how & RESUME_RELEASE == 0 {
            return Self::release(off);
        }
        let heap = Heap::get();
        // SAFETY: the reaper found the object released by its dead last holder and its start
        // still there (`released_unfreed`): its block is allocated, and nobody else frees
        // it (the reaper alone walks the dead holder's listing).
        let obj = unsafe { &*heap.ptr(off).cast::<Obj<T>>() };
        if how & RESUME_DESTROYED == 0 && T::DESTROY_RESUMES {
            obj.value.destroy(heap);
        }
        Self::free_released(heap, off, obj, None);
    }

    fn generation(&self) -> u64 {
        self.header().generation.load(Ordering::Relaxed)
    }

    pub(crate) fn tail_start() -> usize {
        std::mem::size_of::<Obj<T>>().next_multiple_of(64)
    }

    fn header(&self) -> &Header {
        // SAFETY: the object stays allocated while any handle (this one) exists.
        unsafe { &self.obj.as_ref().header }
    }

    /// The offset that names this object in every process of the family.
    pub(crate) fn offset(&self) -> u64 {
        self.off
    }

    /// Bytes of the variable part after the state.
    pub(crate) fn tail_len(&self) -> usize {
        self.header().len.load(Ordering::Relaxed) as usize - Self::tail_start()
    }

    /// Faults in the pages of an object whose large tail is about to be written whole: one
    /// call rather than a fault per page.
    pub(crate) fn populate_tail(&self) {
        Heap::get().populate(self.off, Self::tail_start() + self.tail_len());
    }

    /// The variable part as elements of `E`: `len` of them, which must fit in the tail.
    ///
    /// The tail of an object made by [`Shared::with_dirty_tail`] (or
    /// [`Shared::with_populated_dirty_tail`]) holds a reused block's old bytes until it is
    /// written: read it only as a type every bit pattern of which is valid (integers,
    /// their atomics), never as a `bool` or a struct holding one.
    pub(crate) fn tail<E: ShmSafe>(&self, len: usize) -> super::Cells<'_, E> {
        assert!(len.checked_mul(std::mem::size_of::<E>()).is_some_and(|b| b <= self.tail_len()), "tail too short");
        const { assert!(std::mem::align_of::<E>() <= 64, "the heap aligns objects to 64 bytes") };
        let ptr = Heap::get().ptr(self.off + Self::tail_start() as u64).cast::<E>();
        // SAFETY: the tail lies inside this object's allocation, which outlives the
        // borrow of `self`. Its bytes were zeroed at creation, a valid ShmSafe value (rule
        // 7), or, for a dirty tail, are a block's old bytes, which every caller of a dirty
        // tail reads only as integers (see above), for which any bytes are valid.
        unsafe { super::Cells::new(NonNull::new(ptr).expect("heap pointer"), len) }
    }

    /// Whether another live process holds this object, or a handle to it is in a message.
    pub(crate) fn others_alive(&self) -> bool {
        self.header().holders.others_alive(Heap::get())
    }

    /// Whether a handle other than this one exists: in flight, in another live process, or
    /// a second one in this process. Reads `/proc`: for waits that lasted, as `others_alive`.
    /// A handle dropped inside an open decoding of this thread and kept for it is none
    /// (`codec::kept_of`).
    pub(crate) fn other_handles(&self) -> bool {
        self.header().holders.other_handles(Heap::get(), codec::kept_of(self.off, self.generation()))
    }

    /// Whether no handle is in a message and every live process holding handles passes
    /// `covered(process, handles it holds)`. Reads `/proc`, like [`Shared::others_alive`].
    /// This process's handles leave out those its open decodings keep (`codec::kept_of`).
    pub(crate) fn all_holders(&self, mut covered: impl FnMut(crate::sys::ProcId, u32) -> bool) -> bool {
        let (me, kept) = (crate::sys::me(), codec::kept_of(self.off, self.generation()));
        self.header().holders.all_holders(Heap::get(), |process, handles| {
            covered(process, if process == me { handles.saturating_sub(kept) } else { handles })
        })
    }

    /// Forgets the holders that died without dropping their handles (killed, crashed);
    /// returns how many. Reads `/proc`, like [`Shared::others_alive`].
    pub(crate) fn forget_dead_holders(&self) -> usize {
        self.header().holders.forget_dead(Heap::get())
    }

    /// How many holders died holding handles and were forgotten so far, by whichever
    /// process forgot them (a drop, a reap, a waiter's check): wrapping, to compare with
    /// the count a caller answered last. No `/proc` read.
    pub(crate) fn holder_deaths(&self) -> u32 {
        self.header().holders.deaths()
    }

    /// Forgets the handles of this object counted in messages, after forgetting its dead
    /// holders; returns how many. Only for a caller that knows every message that held one
    /// is gone (its channels drained, their receivers dead): a receiver killed after its
    /// channel committed the take and before the receive settled leaves the count in flight
    /// for ever, and the object unfreed. Reads `/proc`, like [`Shared::others_alive`].
    pub(crate) fn forget_lost_messages(&self) -> u32 {
        self.header().holders.forget_in_flight(Heap::get())
    }

    /// Drops this handle without looking for dead holders among the others (a drop reads
    /// `/proc` when it leaves others recorded and none of its own): for a process that
    /// knows another holder outlives this handle and drops its own in time (a pool worker's
    /// chunk blob, which the pool holds until the chunk is answered or its worker is dead).
    pub(crate) fn drop_trusting_others(self) {
        let this = std::mem::ManuallyDrop::new(self);
        if let Some(last) = this.header().holders.leave_trusting(Heap::get()) {
            Self::release_listed(this.off, Some(last));
        }
    }

    /// Runs `last` with this handle if no other handle of the object is left
    /// ([`Shared::other_handles`]), asked now or, while this thread is still receiving a
    /// handle of the object (a pending receive its message's take has not settled, see
    /// `codec::on_taken`), asked with a clone of it once that message is taken. For what a
    /// handle's drop does as the object's last holder (a channel's drain): until the take
    /// commits, a handle only reserved is no handle of this process's yet, and a consumer
    /// killed meanwhile leaves its message, and the object, to the next reader. (review37
    /// M1: decided at once, a `Deserialize` that dropped the queue it had just decoded
    /// drained it, and a kill before the commit left the message naming an emptied queue.)
    /// So is it while an open decoding of this thread holds a handle of the object it
    /// received, carried ones too, or keeps one dropped (`codec::held_in_decoding`): a
    /// handle dropped inside it is kept for the decoding's next attempt at the same bytes
    /// (`codec::keep_dropped`), which may take it back. (review55 L3: with only the held
    /// ones, a carried queue dropped there while empty, then a value put and the clone
    /// that put it dropped, drained the queue: the kept copy, taken back, held no value.)
    pub(crate) fn if_last(&self, last: impl FnOnce(&Self) + 'static) {
        let if_last = move |this: &Self| {
            if !this.other_handles() {
                last(this);
            }
        };
        if codec::settles_pending()
            && (codec::held_in_decoding(self.off, self.generation())
                || self.header().holders.receiving_here(Heap::get()))
        {
            let kept = self.clone();
            codec::on_taken(move || if_last(&kept));
        } else {
            if_last(self);
        }
    }

    /// Whether this is the family's only handle to the object: no other live process
    /// holds one, none is in a message, and this process holds no other. Then nobody else
    /// can change the object. Reads `/proc`.
    pub(crate) fn sole_handle(&self) -> bool {
        self.header().holders.sole_holder(Heap::get())
    }

    /// Whether two handles name the same object.
    pub(crate) fn same_object(&self, other: &Self) -> bool {
        self.off == other.off
    }

    /// Destroys and frees the object at `off`. Called only by the one process whose
    /// holder-table call returned "last" (`leave`, `unsend`, `settle`, a failed `receive`):
    /// that call marked the table released under its lock, so nobody else frees it.
    fn release(off: u64) {
        Self::release_listed(off, None);
    }

    /// [`Shared::release`] by the leave of this process's last handle, whose listing in
    /// the heap's list is kept, marked releasing, until the object's start is gone (`last`,
    /// see `holds::List::releasing`): a process killed in between is this object's last
    /// holder to its reaper, which finishes the release (aud109 M1: unlisted at the leave,
    /// a last holder killed inside its release leaked the object and all it owned).
    fn release_listed(off: u64, last: Option<Last>) {
        let heap = Heap::get();
        // SAFETY: the caller's table call just found the object unheld and marked it
        // released (see above): it is still allocated, and this is its only release.
        let obj = unsafe { &*heap.ptr(off).cast::<Obj<T>>() };
        crash_point!("object.release.begun");
        obj.value.destroy(heap);
        if let Some(last) = &last {
            last.destroyed(heap);
        }
        crash_point!("object.release.destroyed");
        Self::free_released(heap, off, obj, last);
    }

    /// The end of a release, once the value is destroyed: the block freed (or left to the
    /// looks that pin its start), `last`'s listing taken out once the start is gone.
    fn free_released(heap: &Heap, off: u64, obj: &Obj<T>, last: Option<Last>) {
        let len = obj.header.len.load(Ordering::Relaxed) as usize;
        // Before the block is freed: no fork child's record here names it any more, a
        // handle to it can never be decoded again (its seal), nor its header loaded by a
        // look that comes after (its start).
        holders::forget_fork_records(off);
        obj.header.seal.store(0, Ordering::Release);
        obj.header.tag.store(0, Ordering::Release);
        let mut last = last;
        if unstart(heap, off, &obj.header, &mut last) {
            // No look: the block is this release's to free. Listed until just before the free
            // (its reaper, finding the start gone and the listing still there, frees it).
            crash_point!("object.release.unstarted");
            let unlist = || {
                if let Some(last) = last {
                    last.unlist(heap);
                }
            };
            if T::WARM {
                unlist();
                heap.free_warm(off, len);
            } else {
                heap.free_recorded(off, len, unlist);
            }
        }
    }

    /// Undoes the in-flight count of the handle `[off, generation, 0]`, or does what
    /// `codec::undoing` says instead (an encoding's undo, `codec::on_abort`; a function of
    /// the key alone, which another process of the family may run: `receipts`). `false`: a
    /// carry found no room, or no object (it carried nothing).
    fn undo_send([off, generation, _]: [u64; 3]) -> bool {
        let heap = Heap::get();
        // Only the object of `generation` (the header checked, then its table pinned by
        // the generation inside `undo`): an undo run on a block freed meanwhile, or
        // reused by another object, writes nothing.
        let undo = |header: &Header| header.holders.undo(heap, generation, codec::undoing(), codec::dead_receiver());
        let Some(done) = with_undo_header(heap, off, generation, undo) else { return false };
        if done == Some(true) {
            Self::release(off);
        }
        done.is_some()
    }

    /// Gives back the count in flight of the handle `key` (`[offset, generation, 0]`, as
    /// [`Shared::identity`] names it) that the process `pid`, now dead, wrote into a message
    /// that never reached its receiver (a child's outcome it did not report whole): its
    /// entry of the object is forgotten first, whole, then the count is taken if one is
    /// left, and the object freed if nothing holds it any more (`Holders::undo`, as for a
    /// dead receiver). Only for an object made for that message alone, which no other
    /// message counts: a count left in flight is that message's (or none, if `pid` died
    /// before it encoded the message). An object freed meanwhile fails the pin by its
    /// generation: nothing is written.
    ///
    /// Only an object of type `T` that `pid` held ([`codec::Undoing::UnsendHeldByDead`]):
    /// the key comes from the dead process (a room's words, a socket's frame), and one
    /// naming another live object (a bug's, a forgery's) took a count another message held
    /// in flight, and released a non-blob as a blob (review82 L1). The look taken for the
    /// type's check is kept until the undo ran.
    pub(crate) fn give_back_sent_by_dead(key: [u64; 3], pid: u32) {
        Self::give_back_sent_by_dead_reading(key, pid, |_, _| ());
    }

    /// [`Shared::give_back_sent_by_dead`], calling `read` first with the object's state and
    /// the offset of its variable part (its tail), which the look keeps allocated
    /// meanwhile: not called when the key names no live object of type `T`.
    pub(crate) fn give_back_sent_by_dead_reading(key: [u64; 3], pid: u32, read: impl FnOnce(&T, u64)) {
        let [off, generation, _] = key;
        let heap = Heap::get();
        let Some(header) = live_header(heap, off, generation) else { return };
        if header.tag.load(Ordering::Acquire) & !SIDE_TABLES != TAG | u64::from(T::KIND) {
            return;
        }
        // SAFETY: a live object of type `T` (its header's generation and tag checked), which
        // the look `header` keeps from being freed until it is dropped, after `read`.
        let value = unsafe { &(*heap.ptr(off).cast::<Obj<T>>()).value };
        read(value, off + Self::tail_start() as u64);
        codec::undoing_as(codec::Undoing::UnsendHeldByDead, Some(pid), || Self::undo_send(key));
        drop(header);
    }

    /// The offset of the object's variable part in the family heap.
    pub(crate) fn tail_offset(&self) -> u64 {
        self.off + Self::tail_start() as u64
    }

    /// What names this object in a message: offset, generation, seal.
    pub(crate) fn identity(&self) -> (u64, u64, u64) {
        let header = self.header();
        (self.off, header.generation.load(Ordering::Relaxed), header.seal.load(Ordering::Relaxed))
    }

    /// Sends this handle away as a bare count in flight (a token, `receipts`): the count
    /// first, then this process's hold is let go of. Whoever takes the count
    /// ([`Shared::take_sent`], or `receipts::reap_token` to take it back) holds the object.
    pub(crate) fn send_away(self) {
        self.header().holders.send();
        drop(self);
    }

    /// [`Shared::release`] for a holder-table call outside this module that found the
    /// object at `off` unheld and marked it released (`receipts`'s token slot, `holds`).
    pub(super) fn release_at(off: u64) {
        Self::release(off);
    }

    /// Takes the count sent away ([`Shared::send_away`]) of the object named by `off`,
    /// `generation` and `seal` (a child's boot message): a final receive, this process's
    /// hold at once. `None` when the count is gone (taken back) or the object is not that
    /// one (freed, or the bytes name something else): nothing is written then.
    pub(super) fn take_sent(heap: &Heap, off: u64, generation: u64, seal: u64) -> Option<Self> {
        // Nothing is written before the seal is checked.
        let header = header_at(heap, off, generation, std::mem::size_of::<Obj<T>>()).ok()?;
        if !sealed::<T>(heap, off, &header, generation, seal) {
            return None;
        }
        let obj = heap.ptr(off).cast::<Obj<T>>();
        match header.holders.receive(heap, generation, false, Self::let_go(off, generation), None) {
            Ok(()) => {}
            Err(Received::HeapFull { last: true }) | Err(Received::NotInFlight { last: true }) => {
                Self::release(off);
                return None;
            }
            Err(_) => return None,
        }
        // The look kept the block from being freed (so reused) since the seal's check, and
        // the receive, by its pin of the generation, found the object held still.
        debug_assert!(header.seal.load(Ordering::Relaxed) == seal, "the object changed under its look");
        Some(Self { off, obj: NonNull::new(obj).expect("heap pointer"), _marker: PhantomData })
    }
}

impl<T: ShmObject> std::ops::Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the object stays allocated while this handle exists; T is Sync and
        // ShmSafe, so sharing it with other processes and threads is its design.
        unsafe { &self.obj.as_ref().value }
    }
}

impl<T: ShmObject> Clone for Shared<T> {
    fn clone(&self) -> Self {
        self.header().holders.join(Heap::get(), Self::let_go(self.off, self.generation()));
        Self { off: self.off, obj: self.obj, _marker: PhantomData }
    }
}

impl<T: ShmObject> Drop for Shared<T> {
    fn drop(&mut self) {
        if codec::settles_pending()
            && codec::keep_dropped(
                self.read_mark(None),
                codec::Kept { off: self.off, side: 0, let_go: Self::let_go_kept },
            )
        {
            return;
        }
        self.leave();
    }
}

impl<T: ShmObject> Shared<T> {
    /// Lets go of this handle (what its drop does): the object is freed if it was its last
    /// reference.
    fn leave(&self) {
        if let Some(last) = self.header().holders.leave(Heap::get()) {
            Self::release_listed(self.off, Some(last));
        }
    }

    /// The mark of this handle's wires (of side `side`, if a side's): what every copy's
    /// `Wire::read_mark` notes but its copy.
    fn read_mark(&self, side: Option<usize>) -> codec::HandleMark {
        let (off, generation, seal) = self.identity();
        [off, generation, seal ^ u64::from(wire_kind::<T>(side))]
    }

    /// Lets go of the handle of the object at `off` that the decoding which received it
    /// kept, dropped inside it (`codec::keep_dropped`), once that decoding ended.
    fn let_go_kept(off: u64, _: usize) {
        std::mem::ManuallyDrop::new(Self::kept_at(off)).leave();
    }

    /// The handle of the object at `off` that a decoding kept: this process holds it, and
    /// it becomes a handle again (its drop lets go of it).
    fn kept_at(off: u64) -> Self {
        let obj = Heap::get().ptr(off).cast::<Obj<T>>();
        Self { off, obj: NonNull::new(obj).expect("heap pointer"), _marker: PhantomData }
    }
}

/// What a handle's wire says its kind is: `T::KIND`, with `1 + side` in its upper half for
/// a side's ([`SIDE_SHIFT`]).
fn wire_kind<T: ShmObject>(side: Option<usize>) -> u32 {
    T::KIND | side.map_or(0, |side| (1 + side as u32) << SIDE_SHIFT)
}

impl<T: ShmObject> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").field("kind", &T::KIND).field("offset", &self.off).finish()
    }
}

/// The message a handle is written as. A [`Side`]'s is its object's, with `1 + side` in the
/// upper half of `kind` ([`SIDE_SHIFT`]): one wire names both counts the handle holds in
/// flight, the object's and its side's, so that a process that meets it without reading it
/// as that side (a decoding that stops before it, `unread`, or reads it as another type,
/// [`discard_foreign`]) gives both back. (side37: a side was written as `(Wire, u8)`, and
/// its side's count stayed in flight for ever then: the other end of a pipe never saw the
/// end of its stream.)
///
/// `copy` is the handle's place among its message's handles (`codec::copy_in_message`),
/// which tells two copies of one handle in one message apart (`codec::HandleRead`). Like
/// a side's mark, it is not sealed: replayed bytes whose copy is edited are taken for
/// another copy (whose receive takes an unreserved count at most, as any replayed wire) or
/// for the same one (nothing received), never a reserved count.
#[derive(Serialize, Deserialize)]
pub(super) struct Wire {
    pub(super) family: u64,
    kind: u32,
    pub(super) offset: u64,
    pub(super) generation: u64,
    fingerprint: u64,
    pub(super) seal: u64,
    copy: u64,
}

/// Where a side's wire marks its side in `kind` (every [`kind`] is below `1 << 16`).
const SIDE_SHIFT: u32 = 16;

impl Wire {
    /// The kind of the object named, without a side's mark.
    fn object_kind(&self) -> u32 {
        self.kind & ((1 << SIDE_SHIFT) - 1)
    }

    /// The side a [`Side`]'s wire names; `None` for an object's own handle.
    fn side(&self) -> Option<usize> {
        (self.kind >> SIDE_SHIFT).checked_sub(1).map(|side| side as usize)
    }

    /// Reads a handle's wire, where a decoding through multiproc may.
    fn read<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !codec::decoding() {
            return Err(codec::refuse_decoding("a multiproc handle can only be received through multiproc"));
        }
        let wire = Wire::deserialize(deserializer)?;
        codec::handle_read(wire.read_mark());
        Ok(wire)
    }

    /// What a read of this wire notes (`codec::handle_read`), which the unread scan matches:
    /// its kind, a side's mark included, with its object's offset, generation and seal, so
    /// that the two ends of one pipe are told apart, and its copy, so that two copies of one
    /// handle are. (review41 L4: both ends noted the same, and the scan took the read for
    /// the first end it found: for a decoding that skipped that end unread and read the
    /// other, the skipped end's side count stayed in flight.)
    pub(super) fn read_mark(&self) -> codec::HandleRead {
        codec::HandleRead { mark: [self.offset, self.generation, self.seal ^ u64::from(self.kind)], copy: self.copy }
    }
}

impl<T: ShmObject> Shared<T> {
    /// Writes this handle (its in-flight count sent, undone should the encoding fail) as
    /// its wire, marked as side `side`'s when a [`Side`] is written.
    fn write_wire<S: Serializer>(&self, serializer: S, side: Option<usize>) -> Result<S::Ok, S::Error> {
        if !codec::encoding() {
            return Err(codec::refuse_encoding(
                "a multiproc handle can only be sent through multiproc (a process argument, a queue, a pipe, a pool task)",
            ));
        }
        self.header().holders.send();
        let (off, generation) = (self.off, self.generation());
        codec::on_abort([off, generation, 0], Self::undo_send);
        let header = self.header();
        Wire {
            family: Heap::get().family_id(),
            kind: wire_kind::<T>(side),
            offset: off,
            generation: header.generation.load(Ordering::Relaxed),
            fingerprint: fingerprint::<T>(),
            seal: header.seal.load(Ordering::Relaxed),
            copy: codec::copy_in_message(),
        }
        .serialize(serializer)
    }

    /// Receives the object's count that `wire` holds in flight: a side's wire (one of
    /// `sides`, which [`Side`]'s decoding receives next) or, with `sides` 0, the object's
    /// own. A wire of another type, or a side's read as the object's own handle or the
    /// other way round, is discarded ([`discard_foreign`]). `left_in_flight` runs when a
    /// pending receive is refused for a full heap, once the count's take at the message's
    /// take is registered: a side's decoding registers its side's there (run before it).
    /// With the handle, how it was got ([`Got`]). A wire an earlier attempt of the same
    /// decoding refused for a full heap (its own receive, or its side's) is refused again,
    /// receiving nothing (`codec::refused_for_full_heap`).
    fn received<E: serde::de::Error>(
        wire: Wire,
        sides: usize,
        left_in_flight: impl FnOnce(),
    ) -> Result<(Self, Got), E> {
        let heap = Heap::try_get()
            .ok_or_else(|| codec::refuse_decoding::<E>("this process is not part of a multiproc family"))?;
        if wire.family != heap.family_id() {
            return Err(codec::refuse_decoding("the handle belongs to another multiproc family"));
        }
        // Where this receive writes that it took the count, in a child decoding its
        // argument (see `shm::receipts`).
        let receipt = codec::receipts().map(|block| Receipt { block, key: [wire.offset, wire.generation, 0] });
        let side = wire.side();
        if wire.object_kind() != T::KIND
            || wire.fingerprint != fingerprint::<T>()
            || side.map_or(sides != 0, |side| side >= sides)
        {
            let kind = wire.object_kind();
            if receipt.is_some() {
                // Carried or receipted: final at once, as that decoding's receives are.
                discard_foreign(heap, &wire, receipt);
            } else {
                discard_on_take(wire);
            }
            let what = match side {
                Some(side) => format!("side {side} of a kind {kind}"),
                None => format!("a kind {kind}"),
            };
            let expected = if sides == 0 { "" } else { "a side of " };
            return Err(codec::refuse_decoding(format_args!(
                "the handle is {what} object, not {expected}the {} (kind {}) expected",
                std::any::type_name::<T>(),
                T::KIND
            )));
        }
        // Nothing is written before the seal is checked.
        let header = match header_at(heap, wire.offset, wire.generation, std::mem::size_of::<Obj<T>>()) {
            Ok(header) => header,
            Err(NoLook::Crowded) => return Err(codec::refuse_decoding(CROWDED)),
            Err(NoLook::Absent) => {
                return Err(codec::refuse_decoding(if heap.contains(wire.offset, std::mem::size_of::<Obj<T>>()) {
                    "the handle's object no longer exists, or the handle was forged (no object of its generation \
                     starts where it points)"
                } else {
                    "the handle points outside the family's shared memory"
                }));
            }
        };
        let obj = heap.ptr(wire.offset).cast::<Obj<T>>();
        if !sealed::<T>(heap, wire.offset, &header, wire.generation, wire.seal) {
            return Err(codec::refuse_decoding(
                "the handle's object no longer exists, or the handle was forged (its seal does not match)",
            ));
        }
        let read = wire.read_mark();
        if codec::take_back(read) {
            // Of this type (checked above: the kept handle's mark, seal included, is the
            // wire's, and the seal binds the type's fingerprint), held by this process since
            // its receive.
            return Ok((Self::kept_at(wire.offset), Got::TakenBack));
        }
        let let_go = Self::let_go(wire.offset, wire.generation);
        // A held copy's bytes read again (of this type, as above): another handle of it, as
        // a clone makes, if this process still holds the object, which its pin by the
        // generation checks (the decoding's note is no proof: see `Holders::join_held`).
        let again = codec::held_again(read);
        if again {
            crash_point!("object.received.again");
            if let Err(last) = header.holders.join_held(heap, Some(wire.generation), let_go) {
                if last {
                    Self::release(wire.offset);
                }
                // The copy's count was the first read's: a receive would take another's.
                return Err(codec::refuse_decoding(AGAIN_LET_GO));
            }
        } else {
            if codec::refused_for_full_heap(read) {
                // An earlier attempt's refusal registered the take of its count (and of a
                // side's): this one takes nothing more.
                return Err(codec::refuse_decoding_heap_full(FULL_HEAP));
            }
            // Carried (a child's argument, a pool's chunk): final at once, the carrier
            // answers for the count until the take.
            let pending = receipt.is_none();
            if let Err(e) = header.holders.receive(heap, wire.generation, pending, let_go, receipt) {
                let full = matches!(e, Received::HeapFull { .. });
                if full && pending {
                    // The count stays in flight until the message is taken (the decoding
                    // fails, and its channel takes it with the error), and keeps the object
                    // until then.
                    Self::settle_on_take(wire.offset, false);
                    left_in_flight();
                    // Taken with the message: no other attempt receives or discards it.
                    codec::unrecorded_handle(read);
                }
                let why = refused::<T>(wire.offset, e);
                return Err(if full { codec::refuse_decoding_heap_full(why) } else { codec::refuse_decoding(why) });
            }
            if pending {
                // Final once the message is taken (or the decoding ends); the pending
                // receive keeps the object allocated until then.
                Self::settle_on_take(wire.offset, true);
            }
        }
        // The look kept the block from being freed (so reused) since the seal's check, and
        // the receive (or the join), by its pin of the generation, found the object held
        // still: the handle is that object's (before hpin61, it could be another's).
        debug_assert!(header.seal.load(Ordering::Relaxed) == wire.seal, "the object changed under its look");
        let handle = Self { off: wire.offset, obj: NonNull::new(obj).expect("heap pointer"), _marker: PhantomData };
        if sides == 0 {
            // A side's decoding notes its handle once its side is received too.
            codec::received_handle(read);
        }
        Ok((handle, if again { Got::Again } else { Got::Received }))
    }
}

/// How [`Shared::received`] got its handle, which a [`Side`]'s decoding goes on from.
enum Got {
    /// Its count taken from the message: a side's decoding receives its side's next.
    Received,
    /// Taken back whole, side and object: received by an earlier attempt of the same
    /// decoding at the same copy and dropped there (`codec::take_back`). A side's decoding
    /// receives nothing more.
    TakenBack,
    /// Made of the handle an earlier read of the same copy got, held still
    /// (`codec::held_again`, checked: `Holders::join_held`), as a clone: no count taken. A
    /// side's decoding joins its side, as a clone does, if this process holds it still, and
    /// is refused if not.
    Again,
}

impl<T: ShmObject> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.write_wire(serializer, None)
    }
}

impl<'de, T: ShmObject> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self::received(Wire::read(deserializer)?, 0, || {})?.0)
    }
}

/// The header at `off`, if `[off, off + len)` is inside the heap and the directory of
/// object starts says that the object of `generation` starts there (`Heap::start`): the
/// check before anything at an offset that a message or a record names is loaded. Loaded
/// anywhere else, the header's atomics could be the plain bytes another object's holders
/// write (auds44). Its seal is the caller's to check: a directory's word is the low bits
/// of a generation, which a forger can name.
///
/// The look and the loads after it are one pin: the check is a compare-and-swap that adds
/// a look to the word, and the block is not freed (so not reused) until the [`Look`] lets
/// go, whoever releases the object meanwhile (see [`unstart`]). Without it a block could
/// be freed and reused between the look and the loads, and on to the holder table's pin,
/// whenever the look's count in flight was gone and the object's last holder let go at
/// that moment, in this process (another thread) or another: replayed or forged bytes, a
/// reaper walking a dead process's slot beside the last live holder's drop, a fork child's
/// end beside another process's last drop. That ended in loads racing plain stores and,
/// on a 24-bit match, in the pin's compare-and-swap, the table's lock and a free of a
/// block of another type (review74 M1, review77 M1; hpin61 closed it).
///
/// Invariant: no code of the crate's users runs while a look lasts, and no fork: a look
/// lends its slot to its thread's pins of the object's table (`pins::lend`), a thread-local
/// note that a fork child would inherit and write into its parent's record with (review90
/// L3 checked it: every look is a local of a crate function; a release under one runs only
/// the crate's `destroy`s of shared state, and `LetGo::gone` callbacks run after it). A
/// bare fork under a look (from a signal handler) still finds the note emptied in the
/// child (`pins`' fork handler, review99 L2), though the child's copy of the look, its
/// parent's count, is no more its own.
///
/// A start whose every look is taken ([`MAX_LOOKS`]) for [`LOOKS_WAIT`] is given up on
/// ([`NoLook::Crowded`]): the looks of processes killed while looking at a live object stay
/// in its word until its release, and would otherwise make every later look wait for ever
/// (review83 M1).
#[inline]
fn header_at(heap: &Heap, off: u64, generation: u64, len: usize) -> Result<Look<'_>, NoLook> {
    if !heap.contains(off, len) {
        return Err(NoLook::Absent);
    }
    let word = heap.start(off);
    let mark = start_mark(generation);
    let mut w = word.load(Ordering::Acquire);
    if w & !LOOKS != mark {
        return Err(NoLook::Absent);
    }
    // Announced before the pin (the pin's release orders it), so that whoever lets go of
    // the block after a release tells this look, if it dies pinned, from a live one.
    let announced = pins::announce_own(off + LOOKED);
    crash_point!("object.header.announced");
    let (mut crowded, mut releasing) = (None, None);
    loop {
        if w & !LOOKS != mark {
            crash_point!("object.header.released");
            if w == MAX_RELEASED && !releasing.get_or_insert_with(|| Deadline::after(LOOKS_WAIT)).passed() {
                // Released with every look it can count taken (never, in practice: 255,
                // 254 looks and the release's, were once every one): a let-go, which may
                // have seen this announcement and then kept the dead looks, soon takes one
                // away, and this lets go as a look below (review90 L1: it gave up at once,
                // and the block leaked). A let-go stopped or killed past the wait leaks the
                // block as it would.
                std::thread::yield_now();
                w = word.load(Ordering::Acquire);
                continue;
            }
            if w != 0 && w < MAX_RELEASED {
                // Released, pinned by looks still: this announcement may have kept a let-go
                // from taking away dead looks (it cannot tell them from this one), so this
                // lets go as a look, which does (review83 L1: the block leaked). Its word
                // not 0, the block is not freed: counted, it stays so until the let-go.
                match word.compare_exchange_weak(w, w + 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => drop(Look { heap, off, announced: Some(announced), _thread: PhantomData }),
                    Err(now) => {
                        w = now;
                        continue;
                    }
                }
            }
            return Err(NoLook::Absent);
        }
        if w & LOOKS >= MAX_LOOKS {
            if crowded.get_or_insert_with(|| Deadline::after(LOOKS_WAIT)).passed() {
                return Err(NoLook::Crowded);
            }
            std::thread::yield_now();
            w = word.load(Ordering::Acquire);
            continue;
        }
        match word.compare_exchange_weak(w, w + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(now) => w = now,
        }
    }
    crash_point!("object.header.load");
    // Until it lets go, the look's slot announces this thread's pins of the object's table.
    pins::lend(&announced, off + HOLDERS_AT);
    Ok(Look { heap, off, announced: Some(announced), _thread: PhantomData })
}

/// Why [`header_at`] gives no header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoLook {
    /// The range is outside the heap, or no object of the generation starts there.
    Absent,
    /// The object starts there, but every look its word counts was taken for
    /// [`LOOKS_WAIT`]: by as many threads at once, or left by processes killed looking.
    Crowded,
}

/// How long a look waits for one of [`MAX_LOOKS`] to be let go of before it gives up.
/// Live looks last a table call; a wait this long means they are most likely dead ones.
const LOOKS_WAIT: Duration = Duration::from_secs(1);

/// The header of the object at an offset, found by [`header_at`]: its start in the
/// directory pinned by one look, so that its block is neither freed nor reused while this
/// lives. The object itself may be released meanwhile (its seal and tag cleared, its
/// table released, its value destroyed): the header's words say so, and stay the header's.
struct Look<'h> {
    heap: &'h Heap,
    off: u64,
    /// Until the look lets go (`None` once it did).
    announced: Option<Announced>,
    /// Not `Send`: the slot it lends is lent to its thread's pins (`pins::lend`).
    _thread: PhantomData<*const ()>,
}

impl std::ops::Deref for Look<'_> {
    type Target = Header;

    fn deref(&self) -> &Header {
        // SAFETY: the range is inside the heap and aligned, and an object started there
        // when this look pinned its start (`header_at`: its word, written once its header
        // was, read with acquire); the block stays allocated until the look lets go
        // (`unstart`). Every object starts with its header (`Obj` is `repr(C)`), which is
        // atomics only, valid for any bytes.
        unsafe { &*self.heap.ptr(self.off).cast::<Header>() }
    }
}

impl Drop for Look<'_> {
    fn drop(&mut self) {
        // Every pin its slot was lent to gave it back: the table call returned.
        if let Some(announced) = &self.announced {
            pins::unlend(announced);
        }
        let word = self.heap.start(self.off);
        let mut w = word.load(Ordering::Relaxed);
        // The object's start still there: one look fewer (release: this look's loads
        // happen before the block's free, whoever frees it).
        while w >= LIVE {
            match word.compare_exchange_weak(w, w - 1, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return drop(self.announced.take()),
                Err(now) => w = now,
            }
        }
        // Released while looked at: the last look out frees the block.
        if let Some(mine) = self.announced.take() {
            let_go_released(self.heap, self.off, self, mine);
        }
    }
}

/// Takes the start of the object at `off` (`header`, released: its table marked so, its
/// seal and tag cleared) out of the directory: no look finds it from then on. Returns
/// whether the caller frees the block now; if looks pin the start, the last of them frees
/// it ([`let_go_released`]), and this release lets go as one more look, which takes away
/// the looks of dead processes. That look is announced as any other, before the
/// compare-and-swap that counts it: a live look letting go in between would otherwise take
/// it for a dead process's and free the block under the release, which then goes on to
/// its header, its table's lock and its word (review83 H1).
///
/// `last`: the listing a release by a leave keeps (see `holds::List::releasing`), taken out
/// here before looks are counted into the word (a look's let-go may free the block from
/// then on, and a reaper finding the listing could not tell); with no look, it stays for
/// the caller to take out just before its free, so that a reaper finding it with the start
/// gone (0: no look can be counted there) knows the block unfreed.
fn unstart(heap: &Heap, off: u64, header: &Header, last: &mut Option<Last>) -> bool {
    let word = heap.start(off);
    let mut w = word.load(Ordering::Relaxed);
    let mut mine = None;
    loop {
        // No look: the word is 0 and the block the caller's. Else the looks and this one.
        let to = if w & LOOKS == 0 {
            0
        } else {
            if let Some(last) = last.take() {
                last.unlist(heap);
            }
            // Announced before the count (its release orders it), once.
            mine.get_or_insert_with(|| pins::announce_own(off + LOOKED));
            (w & LOOKS) + 1
        };
        match word.compare_exchange_weak(w, to, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => break,
            Err(now) => w = now,
        }
    }
    // Without looks counted: the word is 0, and an announcement made for looks that went
    // before the count was nobody's look.
    let Some(mine) = mine.filter(|_| w & LOOKS != 0) else { return true };
    crash_point!("object.unstart.counted");
    let_go_released(heap, off, header, mine);
    false
}

/// One look (`mine`: its announcement) lets go of the start of the released object at
/// `off`, whose `header` it pins still; the last one frees the block. Under the released
/// table's lock, which every such look takes, so that the word goes down meanwhile only by
/// the lock's holder (looks may still be counted, announced first: a reaper's, or one that
/// found the start released, which then waits for this lock to let go): if no live process
/// announces a look at `off` once this look's own is marked letting go, every other look
/// in the word is a dead process's (every live look, the release's own among them, is
/// announced from before the compare-and-swap that counts it until after its let-go, which
/// happens under this lock), and they are taken away with it, as `pins` resolves a table's
/// dead pins. A look of a dead process never lets go by itself: without this its block
/// would wait for ever.
///
/// The last look frees with `heap.free`, not `free_warm` (it does not know the type): a
/// `WARM` object's pages so freed are given back rather than kept (review83 L3; a
/// release beside a look only, the accounting the same).
fn let_go_released(heap: &Heap, off: u64, header: &Header, mine: Announced) {
    let_go_locked(heap, off, header, mine, header.holders.lock_released(), None);
}

/// [`let_go_released`], the released table's lock taken (`g`); `patience`: a look a pin
/// lets go of ([`let_go_unless_stopped`]), whose free of the block, if last, never waits
/// either (`Heap::free_without_waiting`: a large block's free takes the heap's
/// `large_lock`, which a stopped process may hold, review123 L1).
fn let_go_locked(
    heap: &Heap,
    off: u64,
    header: &Header,
    mut mine: Announced,
    g: RawGuard<'_>,
    patience: Option<Patience>,
) {
    let word = heap.start(off);
    let len = header.len.load(Ordering::Relaxed) as usize;
    let last = {
        let _g = g;
        // Not a live look for its own resolution below, but still announced, as letting go,
        // until its count is gone (review110 M1: cleared here, a look killed inside its
        // let-go was counted and announced by nothing, and beside dead looks only nobody
        // let go again).
        pins::letting_go(&mut mine, off);
        // Killed here: the lock is taken over by the next look out, which finds this one
        // no live look, a dead one's; or, if none comes, by this one's reaper
        // (`let_go_of_dead_announcement`).
        crash_point!("object.let_go.locked");
        let mut w = word.load(Ordering::Acquire);
        // Taken away from the word the announcements were read after, and only from it: a
        // look counted since (a reaper's, `let_go_of_dead_look`, or one that found the start
        // released in `header_at`: both count without this lock, announced first) makes the
        // compare-and-swap fail, and its announcement is read again. Under this lock the
        // word only rises (every look that takes one away holds it), so no ABA. A store
        // erased such a count, and freed the block under its look, whose let-go then took a
        // freed block's word below 0 (`a_look_counted_while_a_let_go_resolves_is_not_erased`).
        while w > 1 && !pins::look_announced_by_live(heap, off + LOOKED, off + HOLDERS_AT) {
            interleave("object.let_go.resolving");
            match word.compare_exchange(w, 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        let last = word.fetch_sub(1, Ordering::AcqRel) == 1;
        // Killed before this: the reaper's let-go of the mark is one more look and one
        // fewer on whatever start is at `off` then, as for any stale announcement.
        drop(mine);
        last
    };
    // The lock (in the block) let go of first: no look is left to take it.
    if last {
        match patience {
            None => heap.free(off, len),
            Some(_) => heap.free_without_waiting(off, len),
        }
    }
}

/// How a look that a pin lets go of, not its own (a dead owner's, adopted with its record:
/// [`let_go_of_adopted_look`]), takes the released table's lock: a pin never waits for ever
/// inside a receive or a reap, and a holder of that lock stopped (`SIGSTOP`, a debugger)
/// inside its own let-go would hold it for as long (review118 M1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Patience {
    /// Waits for a live holder unless it is found stopped once [`LOOKS_WAIT`] passed: the
    /// claim's own let-go.
    UnlessStopped,
    /// Never waits (a free lock, or, when `look`, a dead holder's): a later announcement's
    /// try ([`let_go_of_kept_look`]), made at every announcement of the process until one
    /// takes the lock. `look`: whether this round of tries looks at holders, decided once
    /// per round (`RawGuard::looks_due`: at most once per `GUARD_GRACE`, review123 M2; per
    /// round, not per look, review124 M2).
    Never { look: bool },
}

/// Lets go of `look`, counted at a released start (which stays released while it is
/// counted: the count pins the block), as its drop does ([`let_go_released`]), unless the
/// released table's lock is not to be had with `patience`. Then the look is kept, counted
/// and still announced (`off + 1`, its slot untouched), and its announcement is returned,
/// for the caller to keep (`pins::keep`): whoever lets go of it later (the process's next
/// announcement, else its reaper, which reads the slot) finds it as a live look of this
/// process meanwhile, so no let-go takes the dead looks away under it.
fn let_go_unless_stopped(look: Look<'_>, patience: Patience) -> Option<Announced> {
    // Not dropped: its drop would let go, waiting for the lock; its announcement is moved
    // out, and the rest (a heap reference and an offset) owns nothing.
    let mut look = std::mem::ManuallyDrop::new(look);
    let mine = look.announced.take()?;
    // A look a pin adopts or kept never lent its slot; the check still ends the lend, if any.
    pins::unlend(&mine);
    let (heap, off) = (look.heap, look.off);
    let header: &Header = &look;
    let g = match patience {
        Patience::UnlessStopped => header.holders.lock_released_unless_stopped(Deadline::after(LOOKS_WAIT)),
        Patience::Never { look } => header.holders.try_lock_released_looking_if(look),
    };
    let Some(g) = g else { return Some(mine) };
    let_go_locked(heap, off, header, mine, g, Some(patience));
    None
}

/// A look at the released start at `off` that a claim adopted and then kept
/// ([`let_go_unless_stopped`]: the released table's lock was held by a stopped process),
/// still counted and announced in this process's record (`announced`): let go of now if the
/// lock is free (or its holder dead), else kept again. Called at this process's next
/// announcements (`pins::announce_own`); its reaper lets go of it if the process ends first.
/// `look`: whether the lock's holder is looked at (is it dead?), the round's decision
/// ([`Patience::Never`]).
pub(super) fn let_go_of_kept_look(heap: &Heap, off: u64, announced: Announced, look: bool) {
    let kept_look = Look { heap, off, announced: Some(announced), _thread: PhantomData };
    if let Some(kept) = let_go_unless_stopped(kept_look, Patience::Never { look }) {
        pins::keep(kept);
    }
}

/// The start of the look that a slot of a dead process's pin record announces, if any. A
/// look at `off` is announced as `off + 1`, as `off + 3` while it lets go
/// (`pins::letting_go`), or, while a pin of the object's own table borrows its slot, as that
/// table's offset marked `pins::LENT_PIN` (only an object's own table is ever lent a slot:
/// [`header_at`]); a pin in a slot of its own (a table's offset, a multiple of 8) or a free
/// slot (0) is no look. Only a place a start may be at (a multiple of 64 inside the heap):
/// whether one is there, [`let_go_of_dead_look`] checks.
pub(super) fn dead_look_at(heap: &Heap, slot: u64) -> Option<u64> {
    let off = if slot & 1 == 1 {
        slot & !63
    } else if slot & 7 == pins::LENT_PIN {
        (slot & !7).wrapping_sub(HOLDERS_AT)
    } else {
        return None;
    };
    (off.is_multiple_of(64) && heap.contains(off, std::mem::size_of::<Header>())).then_some(off)
}

/// A slot of a dead process's pin record (`pins::forget`, run by its reaper): if it
/// announces a look ([`dead_look_at`]), [`let_go_of_dead_look`] at its start.
pub(super) fn let_go_of_dead_announcement(heap: &Heap, slot: u64) {
    if let Some(off) = dead_look_at(heap, slot) {
        let_go_of_dead_look(heap, off, None);
    }
}

/// A dead process's look at `off`, found in its pin record by the claim that took the
/// record over (`pins::claim`), which kept it announced as its own (`announced`: `off + 1`
/// in a slot of the record, [`dead_look_at`]'s start): let go of as its reaper would
/// ([`let_go_of_dead_look`]), since the reaper finds no record of it any more.
pub(super) fn let_go_of_adopted_look(heap: &Heap, off: u64, announced: Announced) {
    let_go_of_dead_look(heap, off, Some(announced));
}

/// A dead process's look at the start at `off` (its announcement, left in its pin record:
/// `pins::forget`, run by its reaper): if that start is released and pinned by looks still,
/// this lets go as one more look, which takes away the looks of the dead, the dead process's
/// own among them, and frees the block if they were the last (hnd71 item 3: a last holder
/// killed in its release after it counted its own look, beside dead looks only, left a word
/// that nobody let go of again: its holds listing was gone with its leave, and no live look
/// came). A start that is live or gone is left alone: a live object's dead looks wait for
/// its release (whose let-go resolves them), and a block freed and reused since by another
/// object released with looks is that one's start: one look more and one fewer, its dead
/// looks resolved as any let-go does. A start crowded ([`MAX_RELEASED`]) when first read is left alone
/// too: another look is counted there, whose let-go, with this one not announced, takes the
/// dead looks away. Once announced, this waits at [`MAX_RELEASED`] for a let-go, as `header_at` does, up
/// to [`LOOKS_WAIT`] (review110 L1: it gave up, and a let-go that had seen its announcement
/// kept the dead looks).
///
/// `adopted`: the look announced already (`off + 1`, by a claim that took the dead owner's
/// record over), which waits at [`MAX_RELEASED`] from the first read; else this announces it.
fn let_go_of_dead_look(heap: &Heap, off: u64, adopted: Option<Announced>) {
    if !off.is_multiple_of(64) || !heap.contains(off, std::mem::size_of::<Header>()) {
        return;
    }
    let word = heap.start(off);
    let mut w = word.load(Ordering::Acquire);
    // Crowded, an adopted look, announced already, may have made a let-go keep the dead looks,
    // and waits below as after an announcement.
    if w == 0 || w >= LIVE || (w == MAX_RELEASED && adopted.is_none()) {
        return;
    }
    // Announced before the count, as any look.
    let patience = adopted.is_some().then_some(Patience::UnlessStopped);
    let announced = adopted.unwrap_or_else(|| pins::announce_own(off + LOOKED));
    let mut crowded = None;
    loop {
        interleave("object.dead_look.counting");
        if w == MAX_RELEASED {
            // Another look counted since (every one a released start counts): its let-go, which may have seen this
            // announcement and then kept the dead looks, soon takes one away, and this
            // counts then, as `header_at` waits (review110 L1: it gave up here, and the
            // block leaked). Still crowded past the wait: nobody let go meanwhile, or a let-go
            // that read this announcement before it is stopped (`SIGSTOP`, a debugger)
            // short of its count's decrement for longer than the wait. That one, going on,
            // keeps the dead looks on its stale reading and leaves them to nobody: the
            // block leaks (review118 L2), as at `header_at`'s own crowded wait (review90 L1),
            // and only with a process stopped inside a let-go past `LOOKS_WAIT`.
            if crowded.get_or_insert_with(|| Deadline::after(LOOKS_WAIT)).passed() {
                break;
            }
            std::thread::yield_now();
            w = word.load(Ordering::Acquire);
            continue;
        }
        if w == 0 || w >= LIVE {
            // Freed, or another object's live start.
            break;
        }
        match word.compare_exchange_weak(w, w + 1, Ordering::AcqRel, Ordering::Acquire) {
            // Counted: the block stays allocated until this let-go. An adopted look, let go
            // of inside its claimer's first pin, never waits for ever: kept, and let go of
            // later, if the lock's holder is stopped.
            Ok(_) => {
                let look = Look { heap, off, announced: Some(announced), _thread: PhantomData };
                match patience {
                    Some(patience) => {
                        if let Some(kept) = let_go_unless_stopped(look, patience) {
                            pins::keep(kept);
                        }
                    }
                    None => drop(look),
                }
                return;
            }
            Err(now) => w = now,
        }
    }
    interleave("object.dead_look.ended");
}

/// Whether `header` (at `off`) is the live object of type `T`, generation `generation`,
/// that a handle sealed with `seal` names.
fn sealed<T: ShmObject>(heap: &Heap, off: u64, header: &Header, generation: u64, seal: u64) -> bool {
    let what = (T::KIND, fingerprint::<T>(), std::mem::size_of::<Obj<T>>());
    sealed_as(heap, off, header, what, generation, seal)
}

/// [`sealed`] for the type of kind, fingerprint and minimum length `what`.
fn sealed_as(heap: &Heap, off: u64, header: &Header, what: (u32, u64, usize), generation: u64, seal: u64) -> bool {
    let (kind, fingerprint, min) = what;
    let len = header.len.load(Ordering::Acquire);
    let fits = usize::try_from(len).is_ok_and(|len| len >= min && heap.contains(off, len));
    fits && header.tag.load(Ordering::Acquire) & !SIDE_TABLES == TAG | u64::from(kind)
        && header.generation.load(Ordering::Acquire) == generation
        && header.seal.load(Ordering::Acquire) == seal
        && heap.seal(&[heap.family_id(), off, u64::from(kind), fingerprint, generation, len]) == seal
}

/// The header of the object at `off` if it is still the live object of `generation` (an
/// object's tag, not released, that generation): what an undo checks before it touches the
/// object's table, whose pin then checks the generation again. `None` for a block freed, or
/// reused by another object, since. Keep the look until the table's pin is taken.
fn live_header(heap: &Heap, off: u64, generation: u64) -> Option<Look<'_>> {
    // Nothing is written here.
    let header = header_at(heap, off, generation, std::mem::size_of::<Header>()).ok()?;
    is_live(&header, generation).then_some(header)
}

/// Whether `header` is an object's, not released, of `generation`.
fn is_live(header: &Header, generation: u64) -> bool {
    header.tag.load(Ordering::Acquire) & !0xffff_ffff == TAG
        && header.seal.load(Ordering::Acquire) != 0
        && header.generation.load(Ordering::Acquire) == generation
}

/// Runs `f` on the header of the object at `off` if that is still the live object of
/// `generation` ([`live_header`]), for an encoding's undo (`codec::undoing` says which).
/// A start crowded with looks ([`NoLook::Crowded`]: dead processes' until the object's
/// release) gives up every undo but a restore that its carrier's entry of the object keeps
/// (`kept`; review90 L2: a restore so skipped stranded a count in a carrier that was then
/// freed). That entry is a holder that only this process's restore takes away, so the
/// object stays allocated: the restore needs no look, and the table's pin by the generation
/// checks again. Nothing else keeps an object so (review99 M1): a count in flight belongs to
/// no message, and replayed bytes may take the encoding's, their receiver then release the
/// object and its block be reused under the header's loads and the pin. A carry given up
/// on gives its counts back to flight, and its caller keeps to the older protocol
/// (`receipts::carry`); a restore not kept leaves its count in the carrier's entry (a leak).
/// `None`: `f` did not run.
fn with_undo_header<R>(heap: &Heap, off: u64, generation: u64, f: impl FnOnce(&Header) -> R) -> Option<R> {
    match header_at(heap, off, generation, std::mem::size_of::<Header>()) {
        Ok(header) => is_live(&header, generation).then(|| f(&header)),
        Err(NoLook::Crowded) if matches!(codec::undoing(), codec::Undoing::Restore { kept: true, .. }) => {
            // SAFETY: the object of `generation` started at `off` (`header_at` found its
            // mark) and is kept allocated by the carrier's entry of it, which only this
            // restore takes away (see above); a header is atomics only, valid for any bytes.
            let header = unsafe { &*heap.ptr(off).cast::<Header>() };
            is_live(header, generation).then(|| f(header))
        }
        Err(_) => None,
    }
}

/// Runs `f` on the holder table of the object at `off`, if that is still the live object
/// of `generation` ([`live_header`]), its start pinned meanwhile: how a fork child's record
/// reaches the table it names (`holders::child_ended`), whose pin then checks the
/// generation again. `None`: `f` did not run.
pub(super) fn with_live_table<R>(heap: &Heap, off: u64, generation: u64, f: impl FnOnce(&Holders) -> R) -> Option<R> {
    live_header(heap, off, generation).map(|header| f(&header.holders))
}

/// Forgets the entry of `dead` (a process known to have ended) in the holder table of the
/// object at `off`, if that is still the object of `generation` and no other live process
/// holds it (see `Holders::let_go_of_dead`); returns whether that was the object's last
/// reference (the caller frees it, with the `LetGo::gone` it knows).
///
/// A child's argument's token held by the dead alone first lets go of what its child did
/// not take, while its table is still held: see [`undo_dead_token`]. With `take_back` (the
/// token's maker's side, `dead` its maker, which holds no entry: `receipts::reap_token`),
/// the token's count is first taken back if its child never took it, under the pin the
/// undo then runs under.
pub(super) fn let_go_of_dead(
    heap: &Heap,
    off: u64,
    generation: u64,
    dead: crate::sys::ProcId,
    take_back: bool,
) -> bool {
    // A block freed and reused meanwhile is told apart by its header, and the holder
    // table's own pin checks the generation again.
    live_header(heap, off, generation).is_some_and(|header| {
        undo_dead_token(heap, off, generation, &header, take_back);
        header.holders.let_go_of_dead(heap, dead, generation, holders::Forget::AllIfNoneLive)
    })
}

/// If the object at `off` (its `header` live at `generation`) is a child's argument's token
/// that only the dead hold (its count taken, by the child, now dead; or, with `take_back`,
/// taken back here, in flight still: its child never took it), runs its undo now
/// (`receipts::ArgsState::undo`), its table pinned, before the last entry is let go of and
/// the table released: the free is then restartable. A reaper killed in the undo leaves the
/// dead child's entry, if any, and its own pin, a dead one, which keep the table unreleased:
/// the next reap of the same slot (the dead reaper's own reaper walks its claimed blocks
/// and token slots again) runs the rest of the undo, each step being idempotent (an
/// `Uncarry` lets go of a carrier's entry whole, a key met again finds none), and frees the
/// token. Once the table is released, `destroy` finds the undo done.
fn undo_dead_token(heap: &Heap, off: u64, generation: u64, header: &Header, take_back: bool) {
    let token = TAG | u64::from(ArgsState::KIND);
    if header.tag.load(Ordering::Acquire) != token {
        return;
    }
    header.holders.while_only_dead_hold(heap, generation, take_back, || {
        // Pinned at `generation`: the block is still this object, and stays allocated until
        // the unpin. Its tag, read again under the pin, says it is a token.
        if header.tag.load(Ordering::Acquire) == token {
            // SAFETY: the object at `off` is allocated (pinned, above) and an
            // `Obj<ArgsState>` (its tag); `ArgsState` is atomics only, shared by design.
            let obj = unsafe { &*heap.ptr(off).cast::<Obj<ArgsState>>() };
            obj.value.undo(heap);
        }
    });
}

/// Registers with the decoding the discard of a handle decoded as another type
/// ([`discard_foreign`]), run once its message is taken (see `codec::on_taken`), as a
/// receive's settle is: a consumer killed before its channel's commit leaves the message
/// whole, its count in flight for the next reader. (review34 L3: it was discarded at once,
/// and the next reader of a message so left found it short of that count, "received
/// already".)
///
/// An attempt at bytes whose handle the decoding received (or discarded) already discards
/// nothing, and a later receive of it voids the discard: see `codec::discarding`. (review37
/// M2 (b): an untagged enum's variant of another type discarded the count that its next
/// variant's receive had reserved, or another message's.)
fn discard_on_take(wire: Wire) {
    if let Some(voided) = codec::discarding(wire.read_mark()) {
        codec::on_taken(move || {
            if !voided.get() {
                discard_foreign(Heap::get(), &wire, None);
            }
        });
    }
}

/// A genuine handle decoded as another type is dropped: its in-flight count is given back
/// (see `Holders::discard`), and a side's handle's count of its side first, while the
/// object's keeps the object ([`discard_side`]). Forged bytes change nothing.
pub(super) fn discard_foreign(heap: &Heap, wire: &Wire, receipt: Option<Receipt>) {
    // Nothing is written unless the seal matches.
    let Ok(header) = header_at(heap, wire.offset, wire.generation, std::mem::size_of::<Header>()) else { return };
    let what = (wire.object_kind(), wire.fingerprint, std::mem::size_of::<Header>());
    if sealed_as(heap, wire.offset, &header, what, wire.generation, wire.seal) {
        if let Some(side) = wire.side() {
            let receipt = receipt.map(|Receipt { block, key: [off, generation, _] }| Receipt {
                block,
                key: [off, generation, 1 + side as u64],
            });
            discard_side(heap, wire, &header, side, receipt);
        }
        header.holders.discard(heap, wire.generation, receipt);
    }
}

/// Gives back the count of side `side` that `wire` (checked: the live object whose
/// `header` is at its offset) holds in flight, its side table found through the header
/// ([`Header::side_table`]): this process need not know the object's type. The object's
/// own table is pinned by its generation meanwhile, as for a side's undo. A side left
/// with no handle anywhere is released (`Holders::discard_side`) without being told
/// (`Sided::side_gone` needs the type): its other sides learn it at their next look at its
/// holders (a pipe's `Peer::check`, every wait's slice).
fn discard_side(heap: &Heap, wire: &Wire, header: &Header, side: usize, receipt: Option<Receipt>) {
    // The message's own count of the object, discarded after this, keeps it held: it can
    // be unheld at the unpin (`Some(true)`, its table released) only for replayed bytes
    // whose count somebody else took. Its destruction needs its type: it leaks then, never
    // freed early.
    let _ = header.holders.pinned(heap, wire.generation, || {
        // Pinned: the object of the generation read now stays allocated, and is that
        // object, until the unpin; it is the one the wire names (sealed, above) if the
        // generation is still the wire's (the pin checks its low bits only).
        if header.generation.load(Ordering::Acquire) != wire.generation {
            return;
        }
        let Some(table) = header.side_table(side) else { return };
        let len = header.len.load(Ordering::Acquire);
        if table.checked_add(std::mem::size_of::<Holders>() as u64).is_none_or(|end| end > len) {
            return;
        }
        // SAFETY: the object at `wire.offset` is allocated until the unpin (above), and
        // `table`, which its side split recorded and which lies inside its length (checked
        // above), is the offset of one of its side's holder tables: atomics only.
        let holders = unsafe { &*heap.ptr(wire.offset + table).cast::<Holders>() };
        holders.discard_side(heap, receipt);
    });
}

/// Handles a failed receive of the object at `off`; says why.
fn refused<T: ShmObject>(off: u64, why: Received) -> &'static str {
    match why {
        Received::Stale => "the handle's object no longer exists",
        Received::NotInFlight { last } => {
            if last {
                Shared::<T>::release(off);
            }
            "the handle was received already (a replayed or duplicated message)"
        }
        Received::HeapFull { last } => {
            if last {
                Shared::<T>::release(off);
            }
            FULL_HEAP
        }
    }
}

/// Why a held copy's bytes read again were refused (see [`Holders::join_held`]).
const AGAIN_LET_GO: &str =
    "the handle was received already in this message, and let go of since (out of its decoding's sight)";

/// Why a decoding was refused when its object's start had every look taken (see
/// [`header_at`]); the message's count stays in flight, and keeps the object.
const CROWDED: &str = "the handle's object has every look it can count taken, for too long (processes killed while \
                       decoding its handles leave theirs)";

/// Why a receive was refused for a full heap.
const FULL_HEAP: &str = "this process cannot be recorded as a holder: the family's shared memory is exhausted";

/// A counted reference to a shared object, stored inside another shared object: plain
/// data (the offset), which keeps the object alive like a handle in a message that is never
/// received. The object holding it gives it back with [`Embedded::take`] (from its
/// `destroy`), which turns it into an ordinary handle of the calling process.
#[repr(C)]
pub(crate) struct Embedded<T: ShmObject> {
    off: AtomicU64,
    _kind: PhantomData<fn() -> T>,
}

// SAFETY: an atomic offset; the marker is zero-sized and has no drop glue.
unsafe impl<T: ShmObject> ShmSafe for Embedded<T> {}

impl<T: ShmObject> Embedded<T> {
    /// A reference to `handle`'s object, counted as in flight until taken.
    pub(crate) fn new(handle: &Shared<T>) -> Self {
        handle.header().holders.send();
        Self { off: AtomicU64::new(handle.off), _kind: PhantomData }
    }

    /// The reference as a handle of this process; `None` if it was taken already.
    pub(crate) fn take(&self) -> Option<Shared<T>> {
        let off = self.off.swap(0, Ordering::AcqRel);
        if off == 0 {
            return None;
        }
        let heap = Heap::get();
        let obj = heap.ptr(off).cast::<Obj<T>>();
        // SAFETY: the in-flight count taken by `new` kept the object allocated, and the
        // swap above made this call its only user.
        let header = unsafe { &(*obj).header };
        let generation = header.generation.load(Ordering::Relaxed);
        match header.holders.receive(heap, generation, false, Shared::<T>::let_go(off, generation), None) {
            Ok(()) => Some(Shared { off, obj: NonNull::new(obj).expect("heap pointer"), _marker: PhantomData }),
            // No room to record this process: the reference is given back, as if the
            // handle had been taken and dropped.
            Err(why) => {
                refused::<T>(off, why);
                None
            }
        }
    }
}

impl<T: ShmObject> fmt::Debug for Embedded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedded").field("kind", &T::KIND).field("offset", &self.off.load(Ordering::Relaxed)).finish()
    }
}

/// A shared object with several sides, each with its own holders (the two ends of a pipe):
/// who holds a side is tracked apart from who keeps the object alive, so that one end can
/// tell that the other end is gone even when both sat in the same process.
pub(crate) trait Sided: ShmObject {
    /// How many sides: 15 at most.
    const SIDES: usize;

    /// The holder tables of the sides, side 0's first: a field of the object, an array of
    /// [`Self::SIDES`] tables in its first 32 KiB (its header records where, for a process
    /// that does not know the type: see [`SIDE_TABLES`]).
    fn side_tables(&self) -> &[Holders];

    /// The holder table of side `side`.
    fn side_holders(&self, side: usize) -> &Holders {
        &self.side_tables()[side]
    }

    /// Called when side `side` has no handle left anywhere (none held, none in flight), or
    /// its holders were found dead; a side never comes back. May be called more than once.
    fn side_gone(&self, _side: usize) {}
}

/// A handle to one side of a [`Sided`] object: it keeps the object alive like a
/// [`Shared`], and counts as a holder of its side.
pub(crate) struct Side<T: Sided> {
    /// Dropped by the side's drop, unless the decoding that received it keeps it whole.
    shared: std::mem::ManuallyDrop<Shared<T>>,
    side: usize,
}

impl<T: Sided> Side<T> {
    /// Turns the creator's only handle of a new object, whose side tables each hold the
    /// creator once (`Holders::new_held`), into one handle per side.
    pub(crate) fn split(shared: Shared<T>) -> Vec<Side<T>> {
        const { assert!(T::SIDES < 16, "the header's tag keeps four bits for the number of sides") };
        // A side's decoding counts on one (a wire with no side mark is another type's).
        const { assert!(T::SIDES >= 1, "a sided object has a side") };
        for side in 0..T::SIDES {
            shared.side_holders(side).placed(Heap::get(), Self::let_go(&shared, side));
        }
        let tables = shared.side_tables();
        assert_eq!(tables.len(), T::SIDES, "a table a side");
        let first = (tables.as_ptr() as usize).wrapping_sub(shared.obj.as_ptr() as usize) / 8;
        assert!(first < 1 << 12, "the side tables in the object's first 32 KiB");
        // Before the object is shared: a process that does not know its type finds a side's
        // table through it (`discard_side`).
        shared.header().tag.fetch_or(((T::SIDES as u64) << 12 | first as u64) << 16, Ordering::Relaxed);
        let mut sides = Vec::with_capacity(T::SIDES);
        for side in 1..T::SIDES {
            sides.push(Side { shared: std::mem::ManuallyDrop::new(shared.clone()), side });
        }
        sides.insert(0, Side { shared: std::mem::ManuallyDrop::new(shared), side: 0 });
        sides
    }

    /// Registers with the decoding what makes the receive of side `side` of the object at
    /// `off` final once its message is taken: its settle (`recorded`) or the take of the
    /// count a receive refused for a full heap left in flight (see `Shared`'s). Registered
    /// after the object's own settle, so run before it (settles run last first): the
    /// object's own pending receive (this one is pending, so the object's was too: both or
    /// neither are receipted), or its count a full heap left in flight, keeps it allocated,
    /// even when this handle was dropped.
    fn settle_on_take(off: u64, side: usize, recorded: bool) {
        codec::on_taken(move || {
            let heap = Heap::get();
            // SAFETY: the object's own pending receive, settled after this one, keeps it
            // allocated.
            let obj = unsafe { &*heap.ptr(off).cast::<Obj<T>>() };
            let holders = obj.value.side_holders(side);
            let gone = if recorded { holders.settle(heap) } else { holders.settle_unrecorded(heap) };
            if gone {
                obj.value.side_gone(side);
            }
        });
    }

    /// How a process that finds side `side` unheld tells the object.
    fn let_go(shared: &Shared<T>, side: usize) -> LetGo {
        LetGo {
            object: shared.off,
            generation: shared.generation(),
            side: Some(side),
            gone: |off, side| {
                // SAFETY: called by the process that found the side unheld, while the
                // object's own table (pinned, or held by a handle) keeps it allocated.
                let obj = unsafe { &*Heap::get().ptr(off).cast::<Obj<T>>() };
                obj.value.side_gone(side);
            },
            token: false,
        }
    }

    /// Which side this handle holds.
    #[inline]
    pub(crate) fn index(&self) -> usize {
        self.side
    }

    /// Whether side `side` still has a handle somewhere: in flight, or held by a live
    /// process (this one included). Reads `/proc`: for waits that lasted.
    pub(crate) fn side_alive(&self, side: usize) -> bool {
        self.shared.side_holders(side).any_alive(Heap::get())
    }

    /// The handle to the whole object.
    pub(crate) fn shared(&self) -> &Shared<T> {
        &self.shared
    }
}

impl<T: Sided> std::ops::Deref for Side<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.shared
    }
}

impl<T: Sided> Clone for Side<T> {
    fn clone(&self) -> Self {
        self.shared.side_holders(self.side).join(Heap::get(), Self::let_go(&self.shared, self.side));
        Self { shared: std::mem::ManuallyDrop::new((*self.shared).clone()), side: self.side }
    }
}

impl<T: Sided> Drop for Side<T> {
    fn drop(&mut self) {
        if codec::settles_pending() {
            let kept = codec::Kept { off: self.shared.off, side: self.side, let_go: Self::let_go_kept };
            if codec::keep_dropped(self.shared.read_mark(Some(self.side)), kept) {
                return;
            }
        }
        Self::leave(&self.shared, self.side);
        // SAFETY: dropped once, here, and never used again.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.shared) };
    }
}

impl<T: Sided> Side<T> {
    /// Lets go of side `side` of `shared`'s object (what a side's drop does before it
    /// drops its object's handle).
    fn leave(shared: &Shared<T>, side: usize) {
        // A side is not listed (see `holds`): its `Last` keeps nothing.
        if shared.side_holders(side).leave(Heap::get()).is_some() {
            shared.side_gone(side);
        }
    }

    /// Lets go of the handle of side `side` of the object at `off` that the decoding which
    /// received it kept (`codec::keep_dropped`): its side, then its object.
    fn let_go_kept(off: u64, side: usize) {
        let shared = std::mem::ManuallyDrop::new(Shared::<T>::kept_at(off));
        Self::leave(&shared, side);
        shared.leave();
    }
}

impl<T: Sided> fmt::Debug for Side<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Side")
            .field("kind", &T::KIND)
            .field("offset", &self.shared.off)
            .field("side", &self.side)
            .finish()
    }
}

impl<T: Sided> Side<T> {
    /// Undoes the in-flight count of the side `[off, generation, 1 + side]`, or does what
    /// `codec::undoing` says instead (an encoding's undo, `codec::on_abort`: a function of
    /// the key alone, as `Shared`'s).
    fn undo_send([off, generation, side]: [u64; 3]) -> bool {
        let heap = Heap::get();
        let side = side.wrapping_sub(1) as usize;
        // A side's table has no generation of its own (0): the object's own table is
        // pinned by the object's generation around the side's undo, so that an undo run
        // on a block freed meanwhile, or reused (another pipe's side table has
        // generation 0 too), writes nothing.
        if side >= T::SIDES {
            return false;
        }
        let mut done = None;
        let pinned = |header: &Header| {
            header.holders.pinned(heap, generation, || {
                // SAFETY: the header at `off` named `generation` (no other object of the
                // family ever has it: this one, of type `T`) and the pin then checked the
                // table's word for it; a pinned table is never released, so the object
                // stays allocated until unpinned.
                let obj = unsafe { &*heap.ptr(off).cast::<Obj<T>>() };
                done = obj.value.side_holders(side).undo(heap, 0, codec::undoing(), codec::dead_receiver());
                if done == Some(true) {
                    obj.value.side_gone(side);
                }
            })
        };
        let last = with_undo_header(heap, off, generation, pinned).flatten();
        if last == Some(true) {
            Shared::<T>::release(off);
        }
        done.is_some()
    }
}

impl<T: Sided> Serialize for Side<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !codec::encoding() {
            return Err(codec::refuse_encoding("a multiproc handle can only be sent through multiproc"));
        }
        // Registered before the object's own undo (undos run in order): the side's count
        // is undone while the object's in-flight count still keeps it allocated.
        self.shared.side_holders(self.side).send();
        let (off, side, generation) = (self.shared.off, self.side, self.shared.generation());
        codec::on_abort([off, generation, 1 + side as u64], Self::undo_send);
        self.shared.write_wire(serializer, Some(self.side))
    }
}

impl<'de, T: Sided> Deserialize<'de> for Side<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::read(deserializer)?;
        let (off, side, read) = (wire.offset, wire.side(), wire.read_mark());
        let (shared, got) = Shared::<T>::received(wire, T::SIDES, || {
            // The object's receive was refused for a full heap, the side's never tried: the
            // side's count stays in flight with the object's, taken with it once the message
            // is. (review41 M2: the wire noted read, the unread scan skipped it, and the
            // side's count stayed in flight for ever: the other end waited for ever.)
            if let Some(side) = side {
                Self::settle_on_take(off, side, false);
            }
        })?;
        let side = side.expect("`received` takes only a side's wire for a side");
        match got {
            Got::Received => {}
            Got::TakenBack => return Ok(Self { shared: std::mem::ManuallyDrop::new(shared), side }),
            Got::Again => {
                // The object's hold just joined keeps the side's table. Not held, the side
                // was let go of (this process holds another handle of the object): the
                // object's join goes with `shared`.
                if shared.side_holders(side).join_held(Heap::get(), None, Self::let_go(&shared, side)).is_err() {
                    return Err(codec::refuse_decoding(AGAIN_LET_GO));
                }
                codec::received_handle(read);
                return Ok(Self { shared: std::mem::ManuallyDrop::new(shared), side });
            }
        }
        let key = [shared.off, shared.generation(), 1 + side as u64];
        let receipt = codec::receipts().map(|block| Receipt { block, key });
        // Carried: final at once, as the object's own receive (see `Shared`'s).
        let pending = receipt.is_none();
        if let Err(why) =
            shared.side_holders(side).receive(Heap::get(), 0, pending, Self::let_go(&shared, side), receipt)
        {
            if matches!(why, Received::HeapFull { last: true } | Received::NotInFlight { last: true }) {
                shared.side_gone(side);
            }
            if pending && matches!(why, Received::HeapFull { .. }) {
                // The side's count stays in flight until the message is taken (see
                // `Shared`'s).
                Self::settle_on_take(shared.off, side, false);
                codec::unrecorded_handle(read);
            }
            return Err(match why {
                Received::HeapFull { .. } => codec::refuse_decoding_heap_full(FULL_HEAP),
                _ => {
                    codec::refuse_decoding("the handle's side was received already (a replayed or duplicated message)")
                }
            });
        }
        if pending {
            Self::settle_on_take(shared.off, side, true);
        }
        codec::received_handle(read);
        Ok(Self { shared: std::mem::ManuallyDrop::new(shared), side })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(crate::ShmSafe)]
    #[repr(C)]
    struct Probe {
        value: AtomicU64,
    }

    impl ShmObject for Probe {
        const KIND: u32 = kind::TEST;
    }

    /// A two-sided test object (as a pipe is).
    #[derive(crate::ShmSafe)]
    #[repr(C)]
    struct TwoSided {
        ends: [Holders; 2],
    }

    impl ShmObject for TwoSided {
        const KIND: u32 = kind::TEST;
    }

    impl Sided for TwoSided {
        const SIDES: usize = 2;

        fn side_tables(&self) -> &[Holders] {
            &self.ends
        }
    }

    fn two_sided() -> Vec<Side<TwoSided>> {
        Side::split(Shared::new(TwoSided { ends: [Holders::new_held(), Holders::new_held()] }).unwrap())
    }

    /// review82 L1: a dead child's outcome-blob key that names a live object of another
    /// kind gives back nothing of it (its count in flight is another message's).
    #[test]
    fn a_blob_given_back_by_a_key_naming_another_kind_takes_nothing() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let probe = Shared::new(Probe { value: AtomicU64::new(0) }).unwrap();
        probe.header().holders.send();
        let (off, generation, _) = probe.identity();
        // No process of the family has that pid.
        crate::shm::Blob::give_back_sent_by_dead([off, generation, 0], u32::MAX - 1);
        assert_eq!(probe.header().holders.forget_in_flight(heap), 1, "its count in flight is left");
    }

    #[test]
    fn a_sides_undo_run_late_leaves_the_object_that_reused_its_block_alone() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let sides = two_sided();
        let off = sides[0].shared().offset();
        // A stale undo: a message holding side 0 whose handles were received (and dropped,
        // with the object) while the message's undo is still there.
        let message = codec::encode(&sides[0]).unwrap();
        let taken: Side<TwoSided> = codec::decode(&message.bytes).unwrap();
        drop((taken, sides));
        // Another object of the same type in the same block, its side 0 in a message.
        let mut made = Vec::new();
        let reused = loop {
            let sides = two_sided();
            if sides[0].shared().offset() == off {
                break sides;
            }
            made.push(sides);
            assert!(made.len() < 64, "the freed block is reused");
        };
        let other = codec::encode(&reused[0]).unwrap();
        drop(message);
        let got = codec::decode::<Side<TwoSided>>(&other.bytes);
        assert!(got.is_ok(), "the other object's handle is still in flight: {got:?}");
        other.sent();
        drop((got, reused, made));
        assert_eq!(heap.in_use(), before);
    }

    /// A side's handle in a message that is dropped without being received gives back its
    /// side's count, found without the object's type (side37: only the object's was, and
    /// the other side saw this one alive for ever).
    #[test]
    fn a_sides_handle_not_received_gives_its_sides_count_back() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        // Not read at all (the unread-handle scan), then read as the object's own handle.
        for read_as_the_object in [false, true] {
            let mut sides = two_sided();
            let message = codec::encode(&sides[0]).unwrap();
            let bytes = message.bytes.clone();
            message.sent();
            drop(sides.remove(0));
            assert!(sides[0].side_alive(0), "side 0 is in flight");
            if read_as_the_object {
                assert!(codec::decode::<Shared<TwoSided>>(&bytes).is_err(), "a side's handle");
            } else {
                crate::shm::give_back_unread(&bytes, &[]);
            }
            assert!(!sides[0].side_alive(0), "side 0 has no handle left (read as the object: {read_as_the_object})");
            drop(sides);
        }
        assert_eq!(heap.in_use(), before);
    }

    /// A handle's `Deserialize` that hands the handle it read to another thread, which
    /// drops it there: out of its decoding's sight (review65 M1 (a)).
    struct Away<H>(PhantomData<H>);

    impl<'de, H: Deserialize<'de> + Send + 'static> Deserialize<'de> for Away<H> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let handle = H::deserialize(deserializer)?;
            std::thread::spawn(move || drop(handle)).join().expect("the drop on another thread");
            Ok(Away(PhantomData))
        }
    }

    /// A map of handles read twice by its decoding (two `flatten`ed maps): first as
    /// [`Away`], then as handles.
    #[derive(Deserialize)]
    #[serde(bound = "H: Deserialize<'de> + Send + 'static")]
    struct ReadTwice<H> {
        #[serde(flatten)]
        _first: BTreeMap<String, Away<H>>,
        #[serde(flatten)]
        again: BTreeMap<String, H>,
    }

    /// A `Probe` sent as a [`ReadTwice`] (its message's bytes), no longer held by this
    /// process, its last hold besides the message an embedded reference; and its offset.
    fn sent_read_twice() -> (Embedded<Probe>, Vec<u8>, u64) {
        let handle = Shared::new(Probe { value: AtomicU64::new(7) }).unwrap();
        let off = handle.offset();
        let embedded = Embedded::new(&handle);
        let message =
            codec::encode_as::<ReadTwice<Shared<Probe>>, _>(&BTreeMap::from([("h".to_string(), handle)])).unwrap();
        let bytes = message.bytes.clone();
        message.sent();
        (embedded, bytes, off)
    }

    /// review65 M1, without a race: a final receive's handle (here receipted) let go of
    /// outside its decoding's sight (dropped on another thread), the object held by
    /// another (an embedded reference), a second read of the same bytes is refused, and
    /// takes nothing: the copy's count was the first read's. A clone was made of the
    /// decoding's note alone, joining a process that held nothing of the object; a receive
    /// in its place would take the embedded reference's count.
    #[test]
    fn a_held_copy_read_again_after_its_handle_left_unseen_is_refused_taking_nothing() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let (embedded, bytes, _) = sent_read_twice();
        let got = codec::receipting(64, || codec::decode::<ReadTwice<Shared<Probe>>>(&bytes));
        assert!(got.is_err(), "a clone of a handle this process no longer held");
        drop(embedded.take().expect("the embedded reference's count, whole"));
        assert_eq!(heap.in_use(), before);
    }

    /// review65 M1 for a side: its second read is refused when this process holds the
    /// object still (its other side) but no longer the side, which the first read's handle
    /// let go of out of the decoding's sight. The side's join, unchecked, made a handle of
    /// a side whose every handle was gone (its table released, its other side told so).
    #[test]
    fn a_held_sides_bytes_read_again_after_its_handle_left_unseen_are_refused() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let mut sides = two_sided();
        let side = sides.remove(0);
        let message =
            codec::encode_as::<ReadTwice<Side<TwoSided>>, _>(&BTreeMap::from([("h".to_string(), side)])).unwrap();
        let bytes = message.bytes.clone();
        message.sent();
        let got = codec::receipting(64, || codec::decode::<ReadTwice<Side<TwoSided>>>(&bytes));
        assert!(got.is_err(), "a side's handle made of a side this process no longer held");
        assert!(!sides[0].side_alive(0), "side 0 has no handle left");
        drop(sides);
        assert_eq!(heap.in_use(), before);
    }

    /// review65 M1: a final receive's handle (a child's argument, here receipted) let go of
    /// outside its decoding's sight (dropped on another thread) leaves the decoding's note
    /// that the copy is held; a second read of the same bytes made a clone of that note
    /// alone, unpinned, unchecked. The last hold let go of by another holder between the
    /// seal's check and that join (held there by a crash point), and the block reused by
    /// another object, the join wrote into that object's table, and the decoding returned a
    /// handle of it.
    #[test]
    fn a_held_copy_read_again_after_its_handle_left_unseen_never_joins_a_freed_object() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let (embedded, bytes, off) = sent_read_twice();
        /// Disarms the hold however the test ends: armed, it would hold another test's
        /// decoding for ever.
        struct Disarm;
        impl Drop for Disarm {
            fn drop(&mut self) {
                crate::shm::crash::arm(None);
            }
        }
        crate::shm::crash::arm(Some("hold:object.received.again"));
        let disarm = Disarm;
        let decoding =
            std::thread::spawn(move || codec::receipting(64, || codec::decode::<ReadTwice<Shared<Probe>>>(&bytes)));
        while crate::shm::crash::holding() == 0 && !decoding.is_finished() {
            std::thread::yield_now();
        }
        let held = crate::shm::crash::holding();
        // The last hold let go of: the object released. Its block is not reused while the
        // decoding's look pins its start (hpin61: before, the next object of its size
        // took it, and only the join's pin by the generation kept the clone out).
        drop(embedded.take().expect("the embedded reference"));
        let made: Vec<_> = (0..64).map(|_| Shared::new(Probe { value: AtomicU64::new(9) }).unwrap()).collect();
        let reused = made.iter().any(|other| other.offset() == off);
        drop(disarm);
        let got = decoding.join().expect("the decoding thread");
        assert_eq!(held, 1, "the second read reached the clone");
        assert!(!reused, "the released object's block was reused under the decoding's look");
        if let Ok(got) = got {
            panic!("a handle of a released object: value {}", got.again["h"].value.load(Ordering::Relaxed));
        }
        drop(made);
        // Freed by the look as it let go.
        assert_eq!(heap.in_use(), before);
    }

    #[test]
    fn an_embedded_reference_keeps_the_object_until_taken() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let handle = Shared::new(Probe { value: AtomicU64::new(7) }).unwrap();
        let embedded = Embedded::new(&handle);
        drop(handle);
        assert!(heap.in_use() > before, "the embedded reference keeps the object");
        let back = embedded.take().expect("taken once");
        assert!(embedded.take().is_none(), "and only once");
        assert_eq!(back.value.load(Ordering::Relaxed), 7);
        drop(back);
        assert_eq!(heap.in_use(), before);
    }

    /// hdir50: an object's start is in the directory from its creation until its release,
    /// and only its start: an offset inside it, or its start named with another
    /// generation (the block's former object's, a forger's guess), has no header to look at.
    #[test]
    fn the_directory_holds_a_live_objects_start_only() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let handle = Shared::with_tail(Probe { value: AtomicU64::new(3) }, 4096).unwrap();
        let (off, generation, _) = handle.identity();
        let len = std::mem::size_of::<Header>();
        assert!(header_at(heap, off, generation, len).is_ok(), "a live object's start");
        assert_eq!(header_at(heap, off, generation + 1, len).err(), Some(NoLook::Absent), "another generation");
        let tail = handle.tail_offset();
        assert!((tail..tail + 4096).step_by(64).all(|inside| heap.start(inside).load(Ordering::Relaxed) == 0));
        assert_eq!(header_at(heap, tail, generation, len).err(), Some(NoLook::Absent), "an offset inside the object");
        drop(handle);
        // Not "0": the block may already be another object's, placed by a test that does not
        // take the lock (review74 L3); a release that did not clear leaves this very mark.
        assert_ne!(heap.start(off).load(Ordering::Relaxed), start_mark(generation), "cleared at the release");
        assert_eq!(header_at(heap, off, generation, len).err(), Some(NoLook::Absent), "a freed object's start");
        assert_eq!(heap.in_use(), before);
    }

    /// review83 M1: the looks of processes killed while looking stay in a live object's
    /// word until its release. With every look taken, a new look gives up after a bounded
    /// wait (and its decoding fails) rather than wait for ever.
    #[test]
    fn a_look_at_a_start_with_every_look_taken_gives_up() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let handle = Shared::new(Probe { value: AtomicU64::new(5) }).unwrap();
        let (off, generation, _) = handle.identity();
        let word = heap.start(off);
        // As as many processes killed between their looks and their let-go leave it.
        word.fetch_add(MAX_LOOKS, Ordering::AcqRel);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let looked = header_at(Heap::get(), off, generation, std::mem::size_of::<Header>()).err();
            let _ = tx.send(looked);
        });
        let looked = rx.recv_timeout(std::time::Duration::from_secs(30));
        word.fetch_sub(MAX_LOOKS, Ordering::AcqRel);
        assert_eq!(
            looked,
            Ok(Some(NoLook::Crowded)),
            "a look at a start with every look taken still waits (or was let in)"
        );
        drop(handle);
        assert_eq!(heap.in_use(), before);
    }

    /// review83 M2: four threads of one process receiving handles of one object at once,
    /// each with its look at the object and its pin of the object's table announced (what
    /// a receive holds from its pin to its lock), take four of the process's six slots,
    /// and none pins anonymously (each took two, and the fourth pinned anonymously after
    /// 16 yields: while it lasted, no dead pin or dead look of the family was resolved).
    /// Both the pins and the looks are announced to their resolvers meanwhile (a look whose
    /// slot a pin took over, to a let-go of its released start, by its table's offset).
    #[test]
    fn four_receivers_at_once_take_no_anonymous_pin() {
        const RECEIVERS: usize = 4;
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let handle = Shared::new(Probe { value: AtomicU64::new(4) }).unwrap();
        let (off, generation, _) = handle.identity();
        let table = off + HOLDERS_AT;
        let anonymous = heap.anonymous_pins().load(Ordering::Acquire);
        let (announced_tx, announced_rx) = std::sync::mpsc::channel();
        let seen = std::thread::scope(|s| {
            let mut go = Vec::new();
            for _ in 0..RECEIVERS {
                let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
                go.push(go_tx);
                let announced_tx = announced_tx.clone();
                s.spawn(move || {
                    let look = header_at(Heap::get(), off, generation, std::mem::size_of::<Header>());
                    let pin = look.is_ok().then(|| pins::announce(table));
                    let _ = announced_tx.send(());
                    let _ = go_rx.recv_timeout(std::time::Duration::from_secs(60));
                    drop(pin);
                    drop(look);
                });
            }
            let all = (0..RECEIVERS).all(|_| announced_rx.recv_timeout(std::time::Duration::from_secs(60)).is_ok());
            let seen = (
                all,
                heap.anonymous_pins().load(Ordering::Acquire).wrapping_sub(anonymous),
                pins::announced_by_live(heap, table),
                pins::look_announced_by_live(heap, off + LOOKED, table),
            );
            drop(go);
            seen
        });
        drop(handle);
        assert_eq!(heap.in_use(), before);
        let (all, anonymous, pins_seen, looks_seen) = seen;
        assert!(all, "a receiver never announced");
        assert_eq!(anonymous, 0, "anonymous pins with {RECEIVERS} receivers of one process at once");
        assert!(pins_seen && looks_seen, "pins announced: {pins_seen}, looks announced: {looks_seen}");
    }

    /// review90 L1: a look waiting on a crowded start (every look taken: here by dead
    /// processes) when the object is released, the release's own look counted too (the
    /// word at 255), gave up at once. The release's let-go, which had seen the waiting
    /// look's announcement and so kept the dead looks, left the word at 254 with nobody to
    /// let go again: the block leaked. Now the look waits for the let-go and lets go as a
    /// look, which takes the dead ones away. Each step is held (review99 L3: the look's
    /// wait on the crowded start, `LOOKS_WAIT`, began before the release was started, and a
    /// release later than that made the look give up, `Crowded`). A released start now
    /// counts up to `MAX_RELEASED` looks, so 255 is no longer crowded there (the look counts
    /// at once); the wait is at `MAX_RELEASED`, reached here by as many more dead looks
    /// counted once the release counted its own.
    #[test]
    fn a_look_waiting_on_a_crowded_start_released_lets_go_of_it() {
        look_waiting_on_a_crowded_start_released(MAX_RELEASED - MAX_LOOKS - 1);
    }

    /// As above, with the release's word at 255, which is not crowded: the look counts its
    /// look at once and lets go.
    #[test]
    fn a_look_waiting_on_a_crowded_start_released_at_255_lets_go_of_it() {
        look_waiting_on_a_crowded_start_released(0);
    }

    /// The two above: `more` dead looks counted once the release counted its own.
    fn look_waiting_on_a_crowded_start_released(more: u32) {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let handle = Shared::new(Probe { value: AtomicU64::new(6) }).unwrap();
        let (off, generation, _) = handle.identity();
        // As as many processes killed between their looks and their let-go leave it.
        heap.start(off).fetch_add(MAX_LOOKS, Ordering::AcqRel);
        /// Disarms the holds however the test ends: armed, they would hold other tests.
        struct Disarm;
        impl Drop for Disarm {
            fn drop(&mut self) {
                crate::shm::crash::arm(None);
            }
        }
        crate::shm::crash::arm(Some("hold:object.header.announced,hold:object.unstart.counted"));
        let disarm = Disarm;
        let wait = |what: &str, until: &dyn Fn() -> bool| {
            let deadline = Deadline::after(Duration::from_secs(60));
            while !until() {
                assert!(!deadline.passed(), "never {what}");
                std::thread::yield_now();
            }
        };
        // Each step waits for its own thread at its point: the points hold any other test's
        // thread that reaches them too (review102 L5).
        let held = |name: &str, thread: &std::thread::Thread| crate::shm::crash::held(name, thread.id());
        let looking = std::thread::spawn(move || header_at(Heap::get(), off, generation, size_of::<Header>()).err());
        // Announced, the start not yet looked at again (its first load: live, crowded).
        wait("announced", &|| held("object.header.announced", looking.thread()) == 1);
        let releasing = std::thread::spawn(move || drop(handle));
        // The release counted (the word at 255), and `more` dead looks.
        wait("counted", &|| held("object.unstart.counted", releasing.thread()) == 1);
        heap.start(off).fetch_add(more, Ordering::AcqRel);
        // The look goes on, finds the start crowded, then released with every look taken.
        crate::shm::crash::arm(Some("hold:object.unstart.counted,hold:object.header.released"));
        wait("seen released", &|| held("object.header.released", looking.thread()) == 1);
        // The release's let-go, then the look's.
        crate::shm::crash::arm(Some("hold:object.header.released"));
        wait("released", &|| releasing.is_finished());
        drop(disarm);
        let looked = looking.join().expect("the looking thread");
        releasing.join().expect("the releasing thread");
        assert_eq!(looked, Some(NoLook::Absent), "the look did not find the start gone");
        assert_eq!(
            heap.in_use(),
            before,
            "the released block leaked (its word: {})",
            heap.start(off).load(Ordering::Relaxed)
        );
    }

    /// A look killed while its slot is lent to a pin of its object's own table (the slot
    /// holds `table | LENT_PIN`, even), after its object's release kept it as a live look:
    /// its reaper's `pins::forget` let go only of odd slots, so the released start kept the
    /// dead look for ever and its block leaked (review110 M2; the carried receive's
    /// `holders.receive.announced` reaches the same state). Now the reaper decodes a lent
    /// pin as its look too.
    #[test]
    fn a_look_killed_with_its_slot_lent_after_the_release_keeps_no_block() {
        use std::io::{Read as _, Write as _};

        use crate::sys;
        let _serial = crate::shm::heap_test_lock();
        let _w = crate::testing::watchdog(Duration::from_secs(120));
        let heap = Heap::get();
        let before = heap.in_use();
        let handle = Shared::new(Probe { value: AtomicU64::new(9) }).unwrap();
        let (off, generation, _) = handle.identity();
        let (mut parent_end, mut child_end) = std::os::unix::net::UnixStream::pair().unwrap();
        let child = match sys::fork().unwrap() {
            sys::Forked::Child => {
                drop(parent_end);
                let look = header_at(Heap::get(), off, generation, std::mem::size_of::<Header>());
                let _ = child_end.write_all(&[1]);
                let mut go = [0];
                let _ = child_end.read_exact(&mut go);
                // A pin of the object's own table under the look: in the look's lent slot.
                let pin = pins::announce(off + HOLDERS_AT);
                std::mem::forget((look, pin));
                // Killed here (as at `holders.receive.announced`).
                std::process::abort();
            }
            // Killed and reaped on a failed assert (review128 M2).
            sys::Forked::Parent(pid) => crate::testing::ForkChild::new(pid),
        };
        let pid = child.pid();
        drop(child_end);
        let mut looked = [0];
        parent_end.read_exact(&mut looked).expect("the child looked");
        // Released while the child looks: its let-go keeps the live child's look.
        drop(handle);
        assert_ne!(heap.start(off).load(Ordering::Acquire), 0, "the child's look was kept");
        parent_end.write_all(&[1]).unwrap();
        let ended = child.wait(Duration::from_secs(60));
        assert_eq!(ended, sys::Ended::Signaled(libc::SIGABRT));
        // Its reaper.
        pins::forget(pid);
        let word = heap.start(off).load(Ordering::Acquire);
        assert_eq!((word, heap.in_use()), (0, before), "the dead look's released start was kept");
    }

    /// A look counted at a released start after the let-go holding its released table's
    /// lock read the announcements and found no live look, and before it took the dead looks
    /// away (a reaper's, `let_go_of_dead_look`, or a look that finds the start released in
    /// `header_at`: both count without that lock, announced first): the let-go stored 1 over
    /// the word, erasing the new look's count, and freed the block under it; the new look
    /// then let go of a freed block and took its word below 0.
    #[test]
    fn a_look_counted_while_a_let_go_resolves_is_not_erased() {
        let _serial = crate::shm::heap_test_lock();
        let _w = crate::testing::watchdog(Duration::from_secs(120));
        let heap = Heap::get();
        let before = heap.in_use();
        let handle = Shared::new(Probe { value: AtomicU64::new(10) }).unwrap();
        let (off, _, _) = handle.identity();
        // Two dead looks, which the release's let-go takes away with its own.
        heap.start(off).fetch_add(2, Ordering::AcqRel);
        let counter = std::rc::Rc::new(std::cell::RefCell::new(None));
        let moves = {
            let counter = counter.clone();
            move |step: &'static str| {
                if step != "object.let_go.resolving" || counter.borrow().is_some() {
                    return;
                }
                // The release's let-go found no live look: a reaper counts a look now (it
                // then waits for the released table's lock, which the let-go holds).
                let word = Heap::get().start(off);
                let w = word.load(Ordering::Acquire);
                *counter.borrow_mut() = Some(std::thread::spawn(move || let_go_of_dead_look(Heap::get(), off, None)));
                let deadline = Deadline::after(Duration::from_secs(60));
                while word.load(Ordering::Acquire) == w {
                    assert!(!deadline.passed(), "the reaper never counted its look");
                    std::thread::yield_now();
                }
            }
        };
        crate::shm::crash::interleaving(moves, || drop(handle));
        let counter = counter.borrow_mut().take().expect("the release's let-go never resolved");
        counter.join().expect("the reaper's let-go");
        let (word, in_use) = (heap.start(off).load(Ordering::Acquire), heap.in_use());
        if in_use == before && word != 0 {
            // Freed, its word taken below 0: cleared for the tests that follow.
            heap.start(off).store(0, Ordering::Release);
        }
        assert_eq!(
            (word, in_use),
            (0, before),
            "a look counted while a let-go resolved (the word, the heap in use; {before} before)"
        );
    }

    /// review110 L1: a reaper letting go of a dead look at a released start with 254 dead
    /// looks (`let_go_of_dead_look`) announced itself, then found the word at 255 (now
    /// `MAX_RELEASED`, reached here by more dead looks after the release; another
    /// look counted meanwhile) and gave up. That look's let-go saw the reaper's announcement,
    /// kept the dead looks and left 254 again, and nobody let go any more: the block leaked.
    /// Now the reaper waits at the most, as `header_at` does, and lets go once the word is back.
    #[test]
    fn a_reaper_at_a_crowded_released_start_waits_for_its_let_go() {
        let _serial = crate::shm::heap_test_lock();
        let _w = crate::testing::watchdog(Duration::from_secs(120));
        let heap = Heap::get();
        let before = heap.in_use();
        let handle = Shared::new(Probe { value: AtomicU64::new(11) }).unwrap();
        let (off, _, _) = handle.identity();
        // 254 dead looks, kept at the release by a live look's announcement (this thread's).
        heap.start(off).fetch_add(MAX_LOOKS, Ordering::AcqRel);
        let live = pins::announce_own(off + LOOKED);
        drop(handle);
        drop(live);
        assert_eq!(heap.start(off).load(Ordering::Acquire), MAX_LOOKS, "released with 254 dead looks");
        // As many more as a released start counts, but one (255 was its most).
        heap.start(off).fetch_add(MAX_RELEASED - 1 - MAX_LOOKS, Ordering::AcqRel);
        /// Disarms the hold however the test ends: armed, it would hold other tests.
        struct Disarm;
        impl Drop for Disarm {
            fn drop(&mut self) {
                crate::shm::crash::arm(None);
            }
        }
        crate::shm::crash::arm(Some("hold:object.let_go.locked"));
        let _disarm = Disarm;
        let other = std::rc::Rc::new(std::cell::RefCell::new((None, false)));
        let moves = {
            let other = other.clone();
            move |step: &'static str| {
                let wait = |what: &str, until: &dyn Fn() -> bool| {
                    let deadline = Deadline::after(Duration::from_secs(60));
                    while !until() {
                        assert!(!deadline.passed(), "never {what}");
                        std::thread::yield_now();
                    }
                };
                let mut other = other.borrow_mut();
                match (&other.0, other.1) {
                    (None, _) if step == "object.dead_look.counting" => {
                        // Announced, not yet counted: another look counts (255) and holds
                        // in its let-go, the released table's lock taken, before it reads
                        // the announcements.
                        let looking = std::thread::spawn(move || let_go_of_dead_look(Heap::get(), off, None));
                        let id = looking.thread().id();
                        wait("held in its let-go", &|| crate::shm::crash::held("object.let_go.locked", id) == 1);
                        other.0 = Some(looking);
                    }
                    (Some(looking), false) => {
                        // The reaper found 255: the other look's let-go now sees its
                        // announcement, keeps the dead looks and leaves 254.
                        crate::shm::crash::arm(None);
                        wait("let go", &|| looking.is_finished());
                        other.1 = true;
                    }
                    _ => {}
                }
            }
        };
        crate::shm::crash::interleaving(moves, || let_go_of_dead_look(heap, off, None));
        if let Some(looking) = other.borrow_mut().0.take() {
            looking.join().expect("the other look's let-go");
        }
        let (word, in_use) = (heap.start(off).load(Ordering::Acquire), heap.in_use());
        assert_eq!(
            (word, in_use),
            (0, before),
            "a reaper at a crowded released start (the word, the heap in use; {before} before)"
        );
    }

    /// A process killed looking at an object (held at `stop:object.header.load`, then
    /// `kill -9`ed) after the object's release kept its look, whose record another process's
    /// first claim takes over before its reaper's `pins::forget`: the claim cleared the dead
    /// look with the record's slots, the reaper then found no record of it, and the released
    /// start kept the dead look for ever (hnd81's residual: the block leaked). Every other
    /// record is taken by this (live) process, so the claim takes the dead one's.
    #[test]
    fn a_dead_look_in_a_record_taken_over_before_its_reaper_keeps_no_block() {
        dead_look_in_a_record_taken_over(None);
    }

    /// As above, the claimer killed right after its claim, the dead owner's slots still in
    /// the record: its own reaper lets go of them.
    #[test]
    fn a_dead_look_in_a_record_whose_claimer_is_killed_at_its_claim_keeps_no_block() {
        dead_look_in_a_record_taken_over(Some("pins.record.claimed"));
    }

    /// As above, the claimer killed before it let go of the look it kept announced: its
    /// own reaper lets go of it.
    #[test]
    fn a_dead_look_in_a_record_whose_claimer_is_killed_before_its_let_go_keeps_no_block() {
        dead_look_in_a_record_taken_over(Some("pins.record.adopted"));
    }

    /// The three cases above: the claimer killed at `crash`, if any.
    fn dead_look_in_a_record_taken_over(crash: Option<&'static str>) {
        use std::os::fd::AsFd as _;

        use crate::sys;
        let _serial = crate::shm::heap_test_lock();
        let _w = crate::testing::watchdog(Duration::from_secs(120));
        let heap = Heap::get();
        let before = heap.in_use();
        let handle = Shared::new(Probe { value: AtomicU64::new(12) }).unwrap();
        let (off, generation, _) = handle.identity();
        // Killed and reaped by its guard if an assert fires (or by its parent-death signal
        // if the watchdog ends the test) before the kill below (review118 L4: it stayed
        // stopped for ever, its record live and its look counted).
        let mut looker_child = TestChild::fork(|| {
            crate::shm::crash::arm(Some("stop:object.header.load"));
            let look = header_at(Heap::get(), off, generation, std::mem::size_of::<Header>());
            // Not reached: stopped at the point, then killed.
            std::mem::forget(look);
            3
        });
        let looker = looker_child.pid();
        let looker_fd = sys::pidfd_open(looker).unwrap();
        let deadline = Deadline::after(Duration::from_secs(60));
        while !sys::process_stopped(looker) {
            assert!(!deadline.passed(), "the looker never stopped at its point");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Released while it looks (stopped, alive): the release's let-go keeps its look.
        drop(handle);
        assert_eq!(heap.start(off).load(Ordering::Acquire), 1, "the stopped look was kept");
        let dead_record = pins::record_of(heap, looker).expect("the looker's record");
        // Every other record taken, by a live process: a claim finds only the looker's.
        let mine = pins::take_every_record(heap);
        sys::pidfd_signal(looker_fd.as_fd(), libc::SIGKILL).unwrap();
        let ended = sys::reap_pidfd(looker_fd.as_fd(), true).unwrap();
        looker_child.reaped();
        assert_eq!(ended, Some(sys::Ended::Signaled(libc::SIGKILL)));
        // Another process's first claim, before the looker's reaper.
        let mut claimer_child = TestChild::fork(|| {
            crate::shm::crash::arm(crash);
            drop(pins::announce_own(1 << 22 | 64));
            0
        });
        let claimer = claimer_child.pid();
        let claimer_fd = sys::pidfd_open(claimer).unwrap();
        let readable = sys::poll_readable(&[claimer_fd.as_fd()], Some(Duration::from_secs(60))).unwrap();
        let claimed = readable[0].then(|| sys::reap_pidfd(claimer_fd.as_fd(), true).unwrap());
        if claimed.is_some() {
            claimer_child.reaped();
        }
        let took_over = pins::owner_pid_of(heap, dead_record) == claimer;
        pins::give_back(&mine);
        // Not readable: killed and reaped now.
        drop(claimer_child);
        // Their reapers, the claimer's first.
        pins::forget(claimer);
        pins::forget(looker);
        let word = heap.start(off).load(Ordering::Acquire);
        let end = if crash.is_some() { sys::Ended::Signaled(libc::SIGABRT) } else { sys::Ended::Exited(0) };
        assert_eq!(claimed, Some(Some(end)), "the claimer's end");
        assert!(took_over, "the claim took another record than the dead looker's");
        assert_eq!((word, heap.in_use()), (0, before), "the dead look's released start was kept");
    }

    /// A released start whose word is 255, every look it counts a dead one's: 254 looks of
    /// processes killed looking at the live object (as they leave it: counted, announced by
    /// nobody), and the releaser's own, a fork child killed (`SIGABRT` at
    /// `object.unstart.counted`) right after it counted its look. The releaser's reaper
    /// (`pins::forget`) found the word crowded at its first read and left it alone: a look
    /// at 255 had no count left to pin the block with, and nothing else ever let go (hnd91's
    /// residual: the block leaked). Now a released word counts up to `MAX_RELEASED` (a
    /// live object's mark takes the word's top bit), so the reaper counts its look and lets
    /// go, which takes the 255 dead looks away.
    #[test]
    fn a_released_start_of_255_dead_looks_keeps_no_block() {
        use std::os::fd::AsFd as _;

        use crate::sys;
        let _serial = crate::shm::heap_test_lock();
        let _w = crate::testing::watchdog(Duration::from_secs(120));
        let heap = Heap::get();
        let before = heap.in_use();
        let handle = Shared::new(Probe { value: AtomicU64::new(13) }).unwrap();
        let (off, _, _) = handle.identity();
        // As many processes killed between their looks and their let-go as a live word counts.
        heap.start(off).fetch_add(MAX_LOOKS, Ordering::AcqRel);
        // The last holder's release (the table call that found it last is the test's
        // stand-in), killed once it counted its own look.
        let mut releaser_child = TestChild::fork(move || {
            crate::shm::crash::arm(Some("object.unstart.counted"));
            Shared::<Probe>::release(off);
            0
        });
        // The release is the child's: this process's handle is never let go of.
        std::mem::forget(handle);
        let releaser = releaser_child.pid();
        let releaser_fd = sys::pidfd_open(releaser).unwrap();
        let readable = sys::poll_readable(&[releaser_fd.as_fd()], Some(Duration::from_secs(60))).unwrap();
        assert!(readable[0], "the releaser never ended");
        let ended = sys::reap_pidfd(releaser_fd.as_fd(), true).unwrap();
        releaser_child.reaped();
        assert_eq!(ended, Some(sys::Ended::Signaled(libc::SIGABRT)), "the releaser's end");
        let released = heap.start(off).load(Ordering::Acquire);
        // Its reaper, which lets go of the release's look it announced.
        pins::forget(releaser);
        let (word, in_use) = (heap.start(off).load(Ordering::Acquire), heap.in_use());
        println!(
            "released: word {released}; after the releaser's reaper: word {word}, in use {in_use} ({before} before)"
        );
        assert_eq!(released, MAX_LOOKS + 1, "released with 255 dead looks");
        assert_eq!((word, in_use), (0, before), "a released start of 255 dead looks was kept");
    }

    /// A fork child of a test: killed and reaped when dropped (an assert's panic) unless
    /// [`TestChild::reaped`]; its parent-death signal kills it when the test process ends
    /// first (a watchdog's abort). A stopped child would otherwise stay stopped for ever,
    /// its record live and its looks counted (review118 L4).
    struct TestChild(Option<u32>);

    impl TestChild {
        /// Forks; the child runs `child` and exits with what it returns.
        fn fork(child: impl FnOnce() -> i32) -> TestChild {
            match crate::sys::fork().unwrap() {
                crate::sys::Forked::Child => {
                    // SAFETY: one `prctl` in the child, which touches no memory.
                    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
                    crate::sys::exit_group(child())
                }
                crate::sys::Forked::Parent(pid) => TestChild(Some(pid)),
            }
        }

        fn pid(&self) -> u32 {
            self.0.expect("a child not reaped yet")
        }

        /// Reaped by the test: nothing left to kill.
        fn reaped(&mut self) {
            self.0 = None;
        }
    }

    impl Drop for TestChild {
        fn drop(&mut self) {
            if let Some(pid) = self.0 {
                let _ = crate::sys::kill_and_reap_child(pid);
            }
        }
    }

    /// A process killed looking at an object released meanwhile, and a process stopped
    /// (`SIGSTOP`) inside its own let-go of that object, holding the released table's lock:
    /// a third process's first claim takes the dead looker's record over, and with it its
    /// look, which it lets go of. It waited for the lock with no deadline, inside its first
    /// announcement, for as long as the let-go stayed stopped (review118 M1: HACKING
    /// promises that a first pin never waits for ever). Now the claim keeps the look,
    /// counted and announced in its record, and goes on; the claimer's next announcement
    /// lets go of it (`again`), else its reaper does.
    #[test]
    fn a_first_claim_adopting_a_dead_look_never_waits_for_a_stopped_let_go() {
        first_claim_adopting_beside_a_stopped_let_go(true);
    }

    /// As above, the claimer ends after its first claim: its reaper lets go of the look it
    /// kept.
    #[test]
    fn a_look_a_first_claim_kept_beside_a_stopped_let_go_is_let_go_by_its_reaper() {
        first_claim_adopting_beside_a_stopped_let_go(false);
    }

    /// The two cases above: whether the claimer announces again after the stopped let-go
    /// went on.
    fn first_claim_adopting_beside_a_stopped_let_go(again: bool) {
        use std::os::fd::AsFd as _;

        use crate::sys;
        let _serial = crate::shm::heap_test_lock();
        let _w = crate::testing::watchdog(Duration::from_secs(60));
        let heap = Heap::get();
        let before = heap.in_use();
        let handle = Shared::new(Probe { value: AtomicU64::new(118) }).unwrap();
        let (off, generation, _) = handle.identity();
        let word = || heap.start(off).load(Ordering::Acquire);
        let wait = |what: &str, until: &dyn Fn() -> bool| {
            let deadline = Deadline::after(Duration::from_secs(30));
            while !until() {
                assert!(!deadline.passed(), "never {what}");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        // A: stopped looking, to be killed: its look stays in its record.
        let mut a = TestChild::fork(|| {
            crate::shm::crash::arm(Some("stop:object.header.load"));
            let look = header_at(Heap::get(), off, generation, std::mem::size_of::<Header>());
            // Not reached: stopped at the point, then killed.
            std::mem::forget(look);
            3
        });
        wait("A stopped", &|| sys::process_stopped(a.pid()));
        // B: a live look, which lets go after the release and stops holding the lock.
        let mut b = TestChild::fork(|| {
            let heap = Heap::get();
            let look = header_at(heap, off, generation, std::mem::size_of::<Header>());
            crate::shm::crash::arm(Some("stop:object.let_go.locked"));
            let deadline = Deadline::after(Duration::from_secs(30));
            while heap.start(off).load(Ordering::Acquire) >= LIVE && !deadline.passed() {
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(look);
            0
        });
        wait("B looked", &|| word() & LOOKS == 2);
        drop(handle);
        wait("B stopped in its let-go", &|| sys::process_stopped(b.pid()));
        let mine = pins::take_every_record(heap);
        let a_fd = sys::pidfd_open(a.pid()).unwrap();
        sys::pidfd_signal(a_fd.as_fd(), libc::SIGKILL).unwrap();
        let _ = sys::reap_pidfd(a_fd.as_fd(), true).unwrap();
        a.reaped();
        // C: its first claim takes A's record over, then C stops itself (SIGSTOP) once the
        // claim returned; then, continued, it announces again (`again`) and says whether
        // the block was freed by then.
        let mut c = TestChild::fork(move || {
            drop(pins::announce_own(1 << 22 | 64));
            sys::stop_this_process();
            if again {
                drop(pins::announce_own(1 << 22 | 64));
                return i32::from(Heap::get().start(off).load(Ordering::Acquire) != 0);
            }
            0
        });
        // Never stopped, before the fix: C waits inside its claim, for B (the watchdog).
        wait("C's first claim returned", &|| sys::process_stopped(c.pid()));
        let kept = word();
        println!("C's first claim returned while B was stopped: word {kept}");
        pins::give_back(&mine);
        let b_fd = sys::pidfd_open(b.pid()).unwrap();
        sys::pidfd_signal(b_fd.as_fd(), libc::SIGCONT).unwrap();
        let b_end = sys::reap_pidfd(b_fd.as_fd(), true).unwrap();
        b.reaped();
        let c_fd = sys::pidfd_open(c.pid()).unwrap();
        sys::pidfd_signal(c_fd.as_fd(), libc::SIGCONT).unwrap();
        let c_end = sys::reap_pidfd(c_fd.as_fd(), true).unwrap();
        let c_pid = c.pid();
        c.reaped();
        // Before C's reaper: freed by C's second announcement, else kept by C's look.
        let ended = word();
        pins::forget(c_pid);
        let reaped = word();
        println!("B {b_end:?}, C {c_end:?}; word {ended} at C's end, {reaped} after its reaper");
        assert_eq!(kept, 3, "C's kept look, B's, A's dead one");
        assert_eq!(b_end, Some(sys::Ended::Exited(0)), "B's end");
        assert_eq!(c_end, Some(sys::Ended::Exited(0)), "C's end (1: its next announcement freed nothing)");
        assert_eq!(ended, if again { 0 } else { 2 }, "the word at C's end");
        assert_eq!((reaped, heap.in_use()), (0, before), "the block after C's reaper");
    }

    /// Takes every announcement slot of this process on another thread, then makes an
    /// anonymous pin of a table there (as a seventh nested announcement does), then gives
    /// back `free` of the slots: runs `f` meanwhile, and gives back the rest after.
    fn with_an_anonymous_pin<R>(free: usize, f: impl FnOnce() -> R) -> R {
        let (made, made_rx) = std::sync::mpsc::channel();
        let (go, gone) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut held: Vec<Announced> =
                    (0..pins::SLOTS as u64).map(|i| pins::announce_own(1 << 24 | i << 6)).collect();
                let anonymous = pins::announce(1 << 24 | 1 << 12);
                held.truncate(pins::SLOTS - free);
                let _ = made.send(());
                let _ = gone.recv_timeout(Duration::from_secs(60));
                drop((anonymous, held));
            });
            made_rx.recv_timeout(Duration::from_secs(60)).expect("the anonymous pin made");
            let r = f();
            drop(go);
            r
        })
    }

    /// review91 L4: some process of the family pinning a table anonymously (here a seventh
    /// nested announcement of this process, on another thread) when the last look of a
    /// released object lets go: the let-go took the anonymous pin for a live look that it
    /// cannot tell from the dead one, kept the dead look, and nobody let go again (the block
    /// leaked). Looks and table pins are counted apart now, and a pin is no look.
    #[test]
    fn an_anonymous_pin_at_the_last_let_go_keeps_no_block() {
        let _serial = crate::shm::heap_test_lock();
        let _w = crate::testing::watchdog(Duration::from_secs(120));
        let heap = Heap::get();
        let before = heap.in_use();
        let handle = Shared::new(Probe { value: AtomicU64::new(13) }).unwrap();
        let (off, _, _) = handle.identity();
        // A dead look.
        heap.start(off).fetch_add(1, Ordering::AcqRel);
        // The release's look takes the slot given back.
        with_an_anonymous_pin(1, || drop(handle));
        let (word, in_use) = (heap.start(off).load(Ordering::Acquire), heap.in_use());
        assert_eq!((word, in_use), (0, before), "an anonymous pin at the last let-go (the word, the heap in use)");
    }

    /// review91 L4, the look itself anonymous (every slot of its process taken when it
    /// looked): its own let-go counted itself among the anonymous, took itself for a live
    /// look, kept the dead one, and the block leaked. It leaves the anonymous count before
    /// its let-go's resolution now, as a look in a slot marks itself letting go.
    #[test]
    fn an_anonymous_look_letting_go_last_keeps_no_block() {
        let _serial = crate::shm::heap_test_lock();
        let _w = crate::testing::watchdog(Duration::from_secs(120));
        let heap = Heap::get();
        let before = heap.in_use();
        let handle = Shared::new(Probe { value: AtomicU64::new(14) }).unwrap();
        let (off, generation, _) = handle.identity();
        // A dead look.
        heap.start(off).fetch_add(1, Ordering::AcqRel);
        let look = with_an_anonymous_pin(0, || header_at(heap, off, generation, std::mem::size_of::<Header>()));
        let look = look.expect("the anonymous look");
        assert!(look.announced.as_ref().is_some_and(|a| a.is_anonymous()), "the look took a slot");
        // Released while it looks (its release's look in a slot), then it lets go last.
        drop(handle);
        drop(look);
        let (word, in_use) = (heap.start(off).load(Ordering::Acquire), heap.in_use());
        assert_eq!((word, in_use), (0, before), "an anonymous look letting go last (the word, the heap in use)");
    }

    /// review123 L1: a kept look's retry (`Patience::Never`, at every announcement of its
    /// process: `let_go_of_kept_look`) never waits for the released table's lock, but as the
    /// last look it freed the block with `heap.free`, which for a large block takes the
    /// heap's `large_lock` with no deadline: a process stopped (`SIGSTOP`, here a fork child
    /// held at `stop:heap.free_large.locked`) holding it held the announcement for as long.
    /// Now that free never waits: a lock it cannot take at once leaves the block on the
    /// heap's pending stack (`Heap::free_without_waiting`), and the lock's next holder frees
    /// it. Before, the let-go hangs here until the watchdog; a block left pending for ever
    /// fails the last asserts (review129 L1: `in_use` and `heap.check` cannot see one).
    #[test]
    fn a_kept_looks_retry_never_waits_for_a_stopped_large_allocator() {
        use crate::sys;
        let _serial = crate::shm::heap_test_lock();
        let _w = crate::testing::watchdog(Duration::from_secs(120));
        let heap = Heap::get();
        let before = heap.in_use();
        let tail = 1usize << 18;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let letting_go = std::thread::spawn(move || {
            let heap = Heap::get();
            let handle = Shared::with_tail(Probe { value: AtomicU64::new(16) }, tail).unwrap();
            let (off, generation, _) = handle.identity();
            let look = header_at(heap, off, generation, std::mem::size_of::<Header>()).expect("a look");
            let _ = ready_tx.send(off);
            let _ = go_rx.recv();
            // Released while it looks: the release's let-go keeps it, the last look.
            drop(handle);
            // Its retry, as a later announcement makes it, the released table's lock free.
            let kept = let_go_unless_stopped(look, Patience::Never { look: true });
            let _ = done_tx.send((kept.is_none(), heap.start(off).load(Ordering::Acquire)));
        });
        let off = ready_rx.recv().expect("the look made");
        // A large block's free, stopped holding the large allocator's lock.
        let mut freer = TestChild::fork(|| {
            let heap = Heap::get();
            let Ok(off) = heap.alloc(1 << 20) else { return 2 };
            crate::shm::crash::arm(Some("stop:heap.free_large.locked"));
            heap.free(off, 1 << 20);
            0
        });
        while !sys::process_stopped(freer.pid()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(go_tx);
        // Waits on the let-go itself, the holder still stopped (the watchdog bounds it).
        let done = done_rx.recv().expect("the let-go's thread");
        let pending = heap.pending_head();
        sys::kill_and_reap_child(freer.pid()).unwrap();
        freer.reaped();
        letting_go.join().expect("the let-go's thread");
        // The lock's next holder (any large allocation) frees what waits for it.
        let _ = heap.alloc(1 << 20).map(|off| heap.free(off, 1 << 20));
        let (after, freed) = (heap.pending_head(), heap.is_free(off, tail));
        let checked = heap.check(&[]).map(|_| ());
        println!(
            "the retry's let-go while the large allocator's holder was stopped: {done:?}; pending {pending:#x} (the \
             block {off:#x}), after the next holder {after:#x}; the block free {freed}; in use {} ({before} before)",
            heap.in_use()
        );
        assert_eq!(done, (true, 0), "the retry let go of the last look");
        assert_eq!(pending, off, "the block waits for the lock's next holder");
        assert_eq!((after, freed), (0, true), "the lock's next holder freed it (pending after, the block free)");
        assert_eq!(heap.in_use(), before, "the block's bytes");
        assert_eq!(checked, Ok(()), "the heap's lists");
    }

    /// review118 L1: an anonymous look (here a fork child's, every slot of its record
    /// taken) killed inside its let-go of a released start, after it left the anonymous
    /// count (`SIGABRT` at `object.let_go.locked`): its count stayed in the word, announced
    /// by nothing, and with no record no reaper let go of it; as the last look, its block
    /// leaked. Now its let-go writes the look into one of the heap's entries for anonymous
    /// let-gos (`pins::letting_go`), which its reaper's `pins::forget` reads.
    #[test]
    fn an_anonymous_look_killed_inside_its_let_go_keeps_no_block() {
        use std::os::fd::AsFd as _;

        use crate::sys;
        let _serial = crate::shm::heap_test_lock();
        let _w = crate::testing::watchdog(Duration::from_secs(120));
        let heap = Heap::get();
        let before = heap.in_use();
        let handle = Shared::new(Probe { value: AtomicU64::new(15) }).unwrap();
        let (off, generation, _) = handle.identity();
        let mut looker_child = TestChild::fork(move || {
            let heap = Heap::get();
            // Every slot of its record taken: its look is anonymous.
            let held: Vec<Announced> = (0..pins::SLOTS as u64).map(|i| pins::announce_own(1 << 24 | i << 6)).collect();
            let Ok(look) = header_at(heap, off, generation, std::mem::size_of::<Header>()) else { return 2 };
            if !look.announced.as_ref().is_some_and(|a| a.is_anonymous()) {
                return 3;
            }
            let deadline = Deadline::after(Duration::from_secs(60));
            while heap.start(off).load(Ordering::Acquire) >= LIVE {
                if deadline.passed() {
                    return 4;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            // Released: it lets go last, and is killed inside its let-go.
            crate::shm::crash::arm(Some("object.let_go.locked"));
            drop(look);
            drop(held);
            0
        });
        let looker = looker_child.pid();
        let looker_fd = sys::pidfd_open(looker).unwrap();
        let deadline = Deadline::after(Duration::from_secs(60));
        while heap.start(off).load(Ordering::Acquire) & LOOKS == 0 {
            assert!(!deadline.passed(), "the child never looked");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Released while it looks: the release's let-go keeps its (anonymous, live) look.
        drop(handle);
        let readable = sys::poll_readable(&[looker_fd.as_fd()], Some(Duration::from_secs(60))).unwrap();
        assert!(readable[0], "the looker never ended");
        let ended = sys::reap_pidfd(looker_fd.as_fd(), true).unwrap();
        looker_child.reaped();
        assert_eq!(ended, Some(sys::Ended::Signaled(libc::SIGABRT)), "the looker's end");
        let killed = heap.start(off).load(Ordering::Acquire);
        // Its reaper.
        pins::forget(looker);
        let (word, in_use) = (heap.start(off).load(Ordering::Acquire), heap.in_use());
        println!(
            "killed in its let-go: word {killed}; after its reaper: word {word}, in use {in_use} ({before} before)"
        );
        assert_eq!(killed, 1, "the anonymous look's count left in the word");
        assert_eq!(
            (word, in_use),
            (0, before),
            "an anonymous look killed inside its let-go (the word, the heap in use)"
        );
    }
}
