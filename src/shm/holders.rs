//! Who holds handles to a shared object: per process, how many; plus the handles in
//! flight inside messages.
//!
//! The table answers the two questions of a shared object's life: "was that the last
//! handle anywhere?" (free it) and "is anybody else still there?" (a `get` on a queue
//! whose every other holder died returns an error instead of waiting forever). Entries of
//! processes that died without dropping their handles are recognised by their pid and
//! start time and pruned when a waiter asks.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::heap::Heap;
use super::mutex::{RawGuard, RawMutex};
use crate::sys::{self, ProcId};

const INLINE: usize = 5;
const PER_BLOCK: usize = 63;

#[repr(C)]
#[derive(Debug, Default)]
struct Entry {
    pid: AtomicU32,
    count: AtomicU32,
    start: AtomicU64,
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
    }

    fn alive(&self) -> bool {
        sys::process_alive(self.pid.load(Ordering::Relaxed), self.start.load(Ordering::Relaxed))
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
    inflight: AtomicU32,
    _pad: u32,
    overflow: AtomicU64,
    entries: [Entry; INLINE],
}

impl Holders {
    /// A table with one holder: the calling process (the creator).
    pub(crate) fn new_held() -> Self {
        let h = Holders::default();
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

    /// One more handle in this process.
    pub(crate) fn join(&self, heap: &Heap) {
        let _g = RawGuard::lock(&self.lock);
        self.join_locked(heap);
    }

    fn join_locked(&self, heap: &Heap) {
        let me = sys::me();
        if self.for_each(heap, |e| {
            if e.is(me) {
                e.count.fetch_add(1, Ordering::Relaxed);
                true
            } else {
                false
            }
        }) {
            return;
        }
        let claim = |e: &Entry| {
            if e.is_free() {
                e.pid.store(me.pid, Ordering::Relaxed);
                e.start.store(me.start, Ordering::Relaxed);
                e.count.store(1, Ordering::Relaxed);
                true
            } else {
                false
            }
        };
        if self.for_each(heap, claim) {
            return;
        }
        // Full: make room by forgetting the dead, else grow.
        self.prune_dead(heap, me);
        if self.for_each(heap, claim) {
            return;
        }
        // Out of shared memory, the handle still works, but this process is not recorded,
        // so the object may be freed early or another side's death go unnoticed.
        if let Ok(off) = heap.alloc_zeroed(std::mem::size_of::<Block>()) {
            let b = block_at(heap, off);
            b.next.store(self.overflow.load(Ordering::Relaxed), Ordering::Relaxed);
            claim(&b.entries[0]);
            self.overflow.store(off, Ordering::Relaxed);
        }
    }

    /// One handle fewer in this process. Returns `true` when that was the last handle of
    /// the family (no holder, nothing in flight): the caller frees the object.
    pub(crate) fn leave(&self, heap: &Heap) -> bool {
        let _g = RawGuard::lock(&self.lock);
        let me = sys::me();
        self.for_each(heap, |e| {
            if e.is(me) {
                if e.count.fetch_sub(1, Ordering::Relaxed) <= 1 {
                    e.clear();
                }
                true
            } else {
                false
            }
        });
        let mut empty = self.inflight.load(Ordering::Relaxed) == 0 && !self.for_each(heap, |e| !e.is_free());
        if !empty && self.inflight.load(Ordering::Relaxed) == 0 && !self.for_each(heap, |e| e.is(me)) {
            // This process let go of its last handle while others are recorded: forget the
            // dead among them, so that a killed holder does not keep the object forever.
            self.prune_dead(heap, me);
            empty = !self.for_each(heap, |e| !e.is_free());
        }
        if empty {
            self.free_blocks(heap);
        }
        empty
    }

    /// A handle was written into a message.
    pub(crate) fn send(&self) {
        let _g = RawGuard::lock(&self.lock);
        self.inflight.fetch_add(1, Ordering::Relaxed);
    }

    /// A message holding a handle was never delivered. Returns `true` if nothing holds the
    /// object any more.
    pub(crate) fn unsend(&self, heap: &Heap) -> bool {
        let _g = RawGuard::lock(&self.lock);
        let n = self.inflight.load(Ordering::Relaxed);
        self.inflight.store(n.saturating_sub(1), Ordering::Relaxed);
        let empty = n <= 1 && !self.for_each(heap, |e| !e.is_free());
        if empty {
            self.free_blocks(heap);
        }
        empty
    }

    /// A handle arrived in a message and now belongs to this process.
    pub(crate) fn receive(&self, heap: &Heap) {
        let _g = RawGuard::lock(&self.lock);
        let n = self.inflight.load(Ordering::Relaxed);
        self.inflight.store(n.saturating_sub(1), Ordering::Relaxed);
        self.join_locked(heap);
    }

    /// Whether some other live process holds a handle, or a handle is in flight. Entries
    /// of dead processes are forgotten on the way. Reads `/proc`: call it when a wait has
    /// lasted, not on every operation.
    pub(crate) fn others_alive(&self, heap: &Heap) -> bool {
        let _g = RawGuard::lock(&self.lock);
        let me = sys::me();
        self.prune_dead(heap, me);
        self.inflight.load(Ordering::Relaxed) > 0 || self.for_each(heap, |e| !e.is_free() && !e.is(me))
    }

    /// Whether a handle other than the caller's own exists: in flight, held by another live
    /// process, or a second one in this process (which another thread may use). Prunes the
    /// dead and reads `/proc`, as [`Holders::others_alive`].
    pub(crate) fn other_handles(&self, heap: &Heap) -> bool {
        let _g = RawGuard::lock(&self.lock);
        let me = sys::me();
        self.prune_dead(heap, me);
        self.inflight.load(Ordering::Relaxed) > 0
            || self.for_each(heap, |e| !e.is_free() && (!e.is(me) || e.count.load(Ordering::Relaxed) > 1))
    }

    /// Whether any handle exists: in flight, or held by a live process (this one included).
    /// Prunes the dead and reads `/proc`, as [`Holders::others_alive`].
    pub(crate) fn any_alive(&self, heap: &Heap) -> bool {
        let _g = RawGuard::lock(&self.lock);
        self.prune_dead(heap, sys::me());
        self.inflight.load(Ordering::Relaxed) > 0 || self.for_each(heap, |e| !e.is_free())
    }

    /// Whether no handle is in flight and every live holder passes `covered(process,
    /// handles it holds)` (a queue asks: "are all of its handles waiting in `get`?").
    /// Prunes the dead and reads `/proc`, as [`Holders::others_alive`].
    pub(crate) fn all_holders(&self, heap: &Heap, mut covered: impl FnMut(ProcId, u32) -> bool) -> bool {
        let _g = RawGuard::lock(&self.lock);
        self.prune_dead(heap, sys::me());
        self.inflight.load(Ordering::Relaxed) == 0
            && !self.for_each(heap, |e| {
                let id = ProcId { pid: e.pid.load(Ordering::Relaxed), start: e.start.load(Ordering::Relaxed) };
                !e.is_free() && !covered(id, e.count.load(Ordering::Relaxed))
            })
    }

    /// Forgets the entries of dead processes; returns how many there were. A caller that
    /// must notice every death (a barrier breaks when a holder dies) counts them here.
    pub(crate) fn forget_dead(&self, heap: &Heap) -> usize {
        let _g = RawGuard::lock(&self.lock);
        self.prune_dead(heap, sys::me())
    }

    /// Whether the calling process holds the only handle of the family: no other live
    /// process holds one, none is in flight, and this process holds exactly one (so no
    /// other thread of ours has a clone either).
    pub(crate) fn sole_holder(&self, heap: &Heap) -> bool {
        let _g = RawGuard::lock(&self.lock);
        let me = sys::me();
        self.prune_dead(heap, me);
        if self.inflight.load(Ordering::Relaxed) > 0 {
            return false;
        }
        let mut mine = 0;
        let others = self.for_each(heap, |e| {
            if e.is(me) {
                mine = e.count.load(Ordering::Relaxed);
                false
            } else {
                !e.is_free()
            }
        });
        !others && mine <= 1
    }

    fn prune_dead(&self, heap: &Heap, me: ProcId) -> usize {
        let mut dead = 0;
        self.for_each(heap, |e| {
            if !e.is_free() && !e.is(me) && !e.alive() {
                e.clear();
                dead += 1;
            }
            false
        });
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

fn block_at(heap: &Heap, off: u64) -> &Block {
    // SAFETY: overflow blocks are allocated by `join_locked` with the size of a Block and
    // only freed by `free_blocks` under the table's lock, which every caller holds; a
    // Block is atomics only.
    unsafe { &*heap.ptr(off).cast::<Block>() }
}
