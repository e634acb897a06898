//! What each process holds, written where its reaper can read it: the family heap.
//!
//! A process killed while it holds the family's last handle to an object leaves its entry
//! in the object's holder table, and nobody looks at that table again: the object stayed
//! until the whole family ended. So every process lists, in blocks of the heap that carry
//! its pid and start time, the objects in whose table it has an entry; whoever reaps it
//! (its parent, [`process_ended`]) frees those that no live process holds any more (and
//! none in flight). An object another live process holds keeps the dead entry, for that
//! holder to learn of the death (a barrier breaks) and prune it, as before.
//!
//! Crash safety: an object's slot is written before the process's entry is made (its
//! object offset last: the slot counts from then on), and cleared after the entry is
//! cleared, so a process killed at any point is listed wherever it has an entry. A new
//! object is the exception: it is written whole (its header, with its creator's entry)
//! and then listed, since a slot naming memory whose header is not written yet is one its
//! reaper cannot recognise (it leaves it, leaked), whereas a written object is found and
//! freed; and the list grows before the object is allocated, so that nothing is taken
//! while a block of the list is made. A process killed between an allocation and its
//! listing (a few stores, no system call) leaks that object, as a process killed between
//! any allocation and its record does. A slot
//! left without an entry (killed in between) is harmless: the reaper finds no entry of the
//! dead process, and an object freed meanwhile is recognised by its header and generation
//! before anything is written. A block is written whole before it is linked, and unlinked
//! before its slots are read; a crash in between leaks the block, never frees anything
//! twice.
//!
//! Only the process itself writes its slots (its threads in turn, under the registry's
//! lock in `holders`); the reaper reads them once the process is gone. Sides (a pipe's
//! ends) are not listed: their tables say whether an end is there, not whether memory is,
//! and the liveness checks forget dead holders of a side.
//!
//! Residuals: a process whose parent never reaps it (the parent died first, or never
//! joins it) keeps its holds until the family ends, as before; a process that cannot get a
//! block (a full heap) holds unlisted, likewise.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::crash::crash_point;
use super::heap::Heap;
use super::holders::LetGo;
use super::mutex::RawGuard;
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
    _pad: AtomicU64,
}

#[repr(C)]
struct Block {
    /// The next block of the directory (any process's).
    next: AtomicU64,
    pid: AtomicU32,
    _pad: AtomicU32,
    start: AtomicU64,
    _pad2: AtomicU64,
    slots: [Slot; SLOTS],
}

const _: () = assert!(std::mem::size_of::<Block>() == 4096);

fn block_at(heap: &Heap, off: u64) -> &Block {
    // SAFETY: blocks are allocated by `List::add` with the size of a Block and freed only
    // by `process_ended` after it unlinked them (once their process is gone, so nobody
    // writes them any more); a Block is atomics only, valid for any bytes.
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
        let gone = sys::function_offset(let_go.gone)?;
        let me = self.reserve(heap)?;
        let (block, index) = self.free.pop()?;
        let slot = &block_at(heap, block).slots[index as usize];
        slot.generation.store(let_go.generation, Ordering::Relaxed);
        slot.gone.store(gone, Ordering::Relaxed);
        slot.object.store(let_go.object, Ordering::Release);
        crash_point!("holds.slot.written");
        Some(Listed { owner: me.pid, block, index })
    }

    /// Makes sure the next [`List::add`] finds a free slot, growing the list now if it
    /// must (`None`: the heap is full); this process.
    pub(super) fn reserve(&mut self, heap: &Heap) -> Option<ProcId> {
        let me = sys::me();
        if self.owner != me.pid {
            // A fork child: the blocks are its parent's.
            *self = List { owner: me.pid, ..List::new() };
        }
        if self.free.is_empty() {
            self.grow(heap, me)?;
        }
        Some(me)
    }

    /// The object listed at `listed` is held no more (its entry is cleared).
    pub(super) fn remove(&mut self, heap: &Heap, listed: Listed) {
        if listed.owner != self.owner || listed.owner != sys::me().pid {
            return;
        }
        crash_point!("holds.slot.clearing");
        block_at(heap, listed.block).slots[listed.index as usize].object.store(0, Ordering::Release);
        self.free.push((listed.block, listed.index));
    }

    /// A new block, written whole, then linked into the directory.
    fn grow(&mut self, heap: &Heap, me: ProcId) -> Option<()> {
        let off = heap.alloc_uncounted(std::mem::size_of::<Block>()).ok()?;
        let block = block_at(heap, off);
        block.pid.store(me.pid, Ordering::Relaxed);
        block.start.store(me.start, Ordering::Relaxed);
        crash_point!("holds.block.written");
        let (head, lock) = heap.holds_directory();
        {
            let _g = RawGuard::lock(lock);
            block.next.store(head.load(Ordering::Relaxed), Ordering::Relaxed);
            head.store(off, Ordering::Release);
        }
        crash_point!("holds.block.linked");
        self.free.extend((0..SLOTS as u32).rev().map(|i| (off, i)));
        Some(())
    }
}

/// A process of the family with this pid has ended (its parent reaped it): its entries in
/// the tables it listed are forgotten, and what nobody else holds any more is freed.
/// Blocks of a live process with the same pid (reused) are left alone.
pub(crate) fn process_ended(pid: u32) {
    let Some(heap) = Heap::try_get() else { return };
    let (head, lock) = heap.holds_directory();
    if head.load(Ordering::Acquire) == 0 {
        return;
    }
    let mut taken = Vec::new();
    {
        let _g = RawGuard::lock(lock);
        let mut link = head;
        loop {
            let off = link.load(Ordering::Relaxed);
            if off == 0 {
                break;
            }
            let block = block_at(heap, off);
            let owner = ProcId { pid: block.pid.load(Ordering::Relaxed), start: block.start.load(Ordering::Relaxed) };
            if owner.pid == pid && !sys::process_alive(owner.pid, owner.start) {
                link.store(block.next.load(Ordering::Relaxed), Ordering::Relaxed);
                taken.push((off, owner));
            } else {
                link = &block.next;
            }
        }
    }
    crash_point!("holds.reap.claimed");
    for (off, owner) in taken {
        for slot in &block_at(heap, off).slots {
            let object = slot.object.load(Ordering::Acquire);
            let gone = slot.gone.load(Ordering::Relaxed);
            if object == 0 || gone == 0 {
                continue;
            }
            let generation = slot.generation.load(Ordering::Relaxed);
            if super::object::let_go_of_dead(heap, object, generation, owner) {
                // SAFETY: `gone` was written by `List::add` from `sys::function_offset` of
                // a `LetGo::gone` (a `fn(u64, usize)`) in a process of this family, which
                // runs this executable.
                let gone = unsafe { sys::function_at::<fn(u64, usize)>(gone) };
                gone(object, 0);
                crash_point!("holds.reap.freed");
            }
            crash_point!("holds.reap.cleared");
        }
        crash_point!("holds.reap.walked");
        heap.free_uncounted(off, std::mem::size_of::<Block>());
    }
}
