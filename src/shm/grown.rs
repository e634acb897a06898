//! A chain of family-heap blocks of `N` items each, claimed without a lock and grown under a
//! small robust lock of its own, freed with the object that holds it: the task table's slots
//! aside (`queue::channel`), one per process that takes without a slot.
//!
//! Blocks are linked at the head ([`Grown::grow`]: the block made, its offset recorded in
//! `making` by the allocator as it hands it out, zeroed, its `next` the head, the head it,
//! `making` cleared), and never unlinked while the chain lives: a freed item is reused in
//! place. Readers walk from the head with Acquire loads, and see every item that any block
//! linked before their load holds. A grower killed at any step leaves `making` to the next
//! holder of the lock (robust: a dead holder's is taken over), which zeroes and links the
//! block unless it is the head already (linked, its grower killed before it cleared
//! `making`); a holder clears `making` before it lets go of the lock, so a block found
//! there is a dead holder's, as in `shm::chain`. Unlike `chain`'s, these blocks are counted
//! in [`Heap::in_use`] and freed by [`Grown::free`] (the object's destroy), a block left in
//! `making` included: the leak checks see one forgotten.
//!
//! Each block keeps a high-water mark of the items ever claimed in it, raised after a
//! claim's compare-exchange and before its first count, so that sums read only those
//! ([`Grown::used`]); an item claimed by a process killed before the raise lies past it,
//! which [`Grown::all`] still walks.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::ShmSafe;
use super::crash::crash_point;
use super::heap::Heap;
use super::mutex::{RawGuard, RawMutex};

/// The head of a chain of blocks of `N` items `T` (see the module), embedded in a shared
/// object. All zero: no block.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct Grown<T, const N: usize> {
    /// The first block (0: none).
    head: AtomicU64,
    /// The block being made under `lock` (0: none), a dead grower's when seen by the next
    /// holder.
    making: AtomicU64,
    /// 1 once an item was ever claimed ([`Grown::claim`]), set before the claim returns:
    /// the sums of claimed items read one word while none is ([`Grown::none_claimed`]),
    /// though a block is linked (since que101 a block is grown before it is needed).
    claimed: AtomicU64,
    lock: RawMutex,
    _items: PhantomData<fn() -> T>,
}

// SAFETY: three atomics and a RawMutex (atomics), no padding (asserted below), no pointer, no
// drop glue, fixed layout (repr(C)), any bytes valid, all zero included: an offset there
// that this module did not write is the object's corruption by another process, as with
// any offset a shared object holds.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for Grown<T, N> {}

const _: () = assert!(std::mem::size_of::<Grown<u64, 1>>() == 24 + std::mem::size_of::<RawMutex>());

/// One block: the next one (0: none), the mark of items ever claimed, the items.
#[repr(C)]
struct Block<T, const N: usize> {
    next: AtomicU64,
    used: AtomicU32,
    _pad: AtomicU32,
    items: [T; N],
}

impl<T: ShmSafe, const N: usize> Grown<T, N> {
    /// The bytes of one block (checked at compile time to be a small block of the heap).
    const BLOCK: usize = {
        let size = std::mem::size_of::<Block<T, N>>();
        assert!(size <= 65536 && std::mem::align_of::<Block<T, N>>() <= 64);
        assert!(std::mem::size_of::<T>() > 0);
        size
    };

    fn block(heap: &Heap, off: u64) -> &Block<T, N> {
        debug_assert!(heap.contains(off, Self::BLOCK));
        // SAFETY: `off` was read from `head`, a block's `next` or `making`, which only this
        // module writes (its fields are private), with an offset the heap handed out for
        // `Self::BLOCK` bytes of a `Block<T, N>` (the type fixes T and N), 64-byte aligned
        // (at least the block's alignment, asserted in `BLOCK`). Blocks are freed only by
        // `free`, at the destroy of the object that holds this chain, once no handle to it
        // is left. A Block is atomics and `T: ShmSafe` items: valid for any bytes (rules 4
        // and 7), so a block not zeroed yet is no undefined behaviour either.
        unsafe { &*heap.ptr(off).cast::<Block<T, N>>() }
    }

    /// The blocks, from the head.
    fn blocks<'h>(&'h self, heap: &'h Heap) -> impl Iterator<Item = &'h Block<T, N>> + 'h {
        let mut next = self.head.load(Ordering::Acquire);
        std::iter::from_fn(move || {
            let off = std::mem::replace(&mut next, 0);
            (off != 0).then(|| {
                let block = Self::block(heap, off);
                next = block.next.load(Ordering::Acquire);
                block
            })
        })
    }

    /// Whether a block was ever linked (one load: the path of a table that never needed
    /// one).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.load(Ordering::Acquire) == 0
    }

    /// Whether no item was ever claimed (one load): then [`Grown::used`] is empty. An item
    /// claimed by a process killed before it set the flag holds no count.
    #[inline]
    pub(crate) fn none_claimed(&self) -> bool {
        self.claimed.load(Ordering::Acquire) == 0
    }

    /// The items ever claimed (under each block's mark), block by block from the head.
    pub(crate) fn used<'h>(&'h self, heap: &'h Heap) -> impl Iterator<Item = &'h T> + 'h {
        self.blocks(heap).flat_map(|b| {
            let used = (b.used.load(Ordering::Acquire) as usize).min(N);
            b.items[..used].iter()
        })
    }

    /// Every item of every block, claimed or not.
    pub(crate) fn all<'h>(&'h self, heap: &'h Heap) -> impl Iterator<Item = &'h T> + 'h {
        self.blocks(heap).flat_map(|b| b.items.iter())
    }

    /// A name for `item`, one of this chain's, that stays its own while the chain lives:
    /// its block's offset and its index there (blocks are never unlinked, items never
    /// moved), never 0; `None` when `item` is no item of this chain. Found by a walk.
    pub(crate) fn id_of(&self, heap: &Heap, item: &T) -> Option<u64> {
        let mut next = self.head.load(Ordering::Acquire);
        while next != 0 {
            let block = Self::block(heap, next);
            if let Some(at) = block.items.iter().position(|i| std::ptr::eq(i, item)) {
                return Some(next + at as u64);
            }
            next = block.next.load(Ordering::Acquire);
        }
        None
    }

    /// The item named `id` ([`Grown::id_of`]), if an item of this chain has that name.
    pub(crate) fn item<'h>(&'h self, heap: &'h Heap, id: u64) -> Option<&'h T> {
        let mut next = self.head.load(Ordering::Acquire);
        while next != 0 {
            let block = Self::block(heap, next);
            // Blocks do not overlap, and a block is longer than its count of items (items
            // are not zero-sized: see `BLOCK`), so one block alone has a name in its range.
            if let Some(at) = id.checked_sub(next).filter(|&at| (at as usize) < N) {
                return Some(&block.items[at as usize]);
            }
            next = block.next.load(Ordering::Acquire);
        }
        None
    }

    /// The first item that `claim` takes (a compare-exchange of the caller's), the mark of
    /// its block raised over it before it is returned; `None` when it takes none. Without
    /// the lock.
    pub(crate) fn claim<'h>(&'h self, heap: &'h Heap, claim: impl Fn(&T) -> bool) -> Option<&'h T> {
        self.blocks(heap).find_map(|b| {
            let at = b.items.iter().position(&claim)?;
            if self.claimed.load(Ordering::Relaxed) == 0 {
                self.claimed.store(1, Ordering::Release);
            }
            b.used.fetch_max(at as u32 + 1, Ordering::AcqRel);
            Some(&b.items[at])
        })
    }

    /// The head as read now: what [`Grown::grow`] compares with.
    #[inline]
    pub(crate) fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// Links a new block of zeroed items at the head, unless the head is no longer `seen`
    /// (another grower linked one since the caller read it, or a dead grower's block was
    /// linked by the lock's taking): true when there are items the caller has not walked.
    /// False when the lock, or the heap's large allocator's (a refill of the block's
    /// class), is held by a process stopped past `grace` (a running holder, however slow,
    /// is waited for), or the heap is full.
    #[cold]
    pub(crate) fn grow(&self, heap: &Heap, seen: u64, grace: Duration) -> bool {
        #[cfg(test)]
        if refused::REFUSED.get() {
            return false;
        }
        let Some(_g) = RawGuard::lock_unless_stopped_within(&self.lock, grace) else { return false };
        self.finish_dead(heap);
        if self.head.load(Ordering::Relaxed) != seen {
            return true;
        }
        // Not waiting for a process stopped inside the large allocator (a refill of the
        // block's class takes its lock): a take grows the chain (review113 L2).
        let Ok(Some(off)) = heap.alloc_small_into_unless_stopped(Self::BLOCK, &self.making, grace) else {
            return false;
        };
        crash_point!("grown.made");
        self.link(heap, off);
        true
    }

    /// Zeroes the block made at `off` and links it at the head; `making` cleared last.
    /// Under the lock.
    fn link(&self, heap: &Heap, off: u64) {
        // SAFETY: [off, off + BLOCK) is a block the heap handed out for this chain, recorded
        // in `making` and not linked: no reader reaches it, and no other grower holds the
        // lock.
        unsafe { std::ptr::write_bytes(heap.ptr(off), 0, Self::BLOCK) };
        let block = Self::block(heap, off);
        block.next.store(self.head.load(Ordering::Relaxed), Ordering::Relaxed);
        self.head.store(off, Ordering::Release);
        crash_point!("grown.linked");
        self.making.store(0, Ordering::Relaxed);
    }

    /// Finishes the block a dead holder of the lock was making: linked, unless it is the
    /// head already. Under the lock, just taken.
    fn finish_dead(&self, heap: &Heap) {
        let off = self.making.load(Ordering::Relaxed);
        if off == 0 {
            return;
        }
        if self.head.load(Ordering::Relaxed) == off {
            self.making.store(0, Ordering::Relaxed);
        } else {
            self.link(heap, off);
        }
    }

    /// Frees every block, and a block a dead grower left in `making`: at the destroy of the
    /// object holding the chain, once no handle to it is left (nobody walks or grows it).
    ///
    /// A precondition, as of the other destroys (`ShmObject::destroy`, `Ring::destroy`),
    /// not checked: called while another thread or process walks the chain, that walk
    /// reads freed blocks (review113 L4). Its one caller is `QueueState::destroy`, reached
    /// only from the object's release once the holders' table says no live process holds
    /// a handle, none is in flight and no fork pin is left.
    pub(crate) fn free(&self, heap: &Heap) {
        let making = self.making.swap(0, Ordering::AcqRel);
        let mut next = self.head.swap(0, Ordering::AcqRel);
        let mut linked_making = false;
        while next != 0 {
            let off = next;
            next = Self::block(heap, off).next.load(Ordering::Acquire);
            linked_making |= off == making;
            heap.free(off, Self::BLOCK);
        }
        if making != 0 && !linked_making {
            heap.free(making, Self::BLOCK);
        }
    }
}

/// Growth refused on this thread, as by a full heap: the unit tests of what a table does
/// once every slot aside is taken.
#[cfg(test)]
pub(crate) mod refused {
    use std::cell::Cell;

    thread_local! {
        pub(super) static REFUSED: Cell<bool> = const { Cell::new(false) };
    }

    /// Every later [`super::Grown::grow`] of this thread fails.
    pub(crate) fn refuse_growth() {
        REFUSED.set(true);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::shm::{GUARD_GRACE, heap_test_lock};

    /// A chain grown, claimed through its blocks, and freed gives the heap back all it took;
    /// a grower killed after the allocation (its block only in `making`) leaves the block
    /// to the next grower, which links it, or to `free`.
    #[test]
    fn a_chain_grows_claims_and_frees_what_it_took() {
        let _serial = heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let chain: Box<Grown<AtomicU64, 4>> = Box::default();
        assert!(chain.is_empty());
        let claim = |c: &Grown<AtomicU64, 4>| {
            c.claim(heap, |x| x.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed).is_ok()).is_some()
        };
        assert!(!claim(&chain), "nothing to claim before a block");
        assert!(chain.grow(heap, chain.head(), GUARD_GRACE));
        assert!((0..4).all(|_| claim(&chain)) && !claim(&chain), "four items to a block");
        assert_eq!(chain.used(heap).count(), 4);
        let seen = chain.head();
        // A grower killed between its allocation and its link: the block is in `making`.
        let made = heap.alloc_into(Grown::<AtomicU64, 4>::BLOCK, &chain.making).unwrap();
        assert!(chain.grow(heap, seen, GUARD_GRACE), "the dead grower's block linked by the next");
        assert_eq!((chain.head(), chain.making.load(Ordering::Relaxed)), (made, 0));
        assert!(claim(&chain));
        assert_eq!((chain.all(heap).count(), chain.used(heap).count()), (8, 5));
        // Every item named, and found again by its name, across both blocks.
        for item in chain.all(heap) {
            let id = chain.id_of(heap, item).expect("an item of the chain has a name");
            assert!(std::ptr::eq(chain.item(heap, id).unwrap(), item));
        }
        assert_eq!(chain.id_of(heap, &AtomicU64::new(0)), None, "not an item of the chain");
        // Killed after its link, before `making` was cleared: not linked twice.
        chain.making.store(made, Ordering::Relaxed);
        assert!(chain.grow(heap, 0, GUARD_GRACE));
        assert_eq!((chain.all(heap).count(), chain.making.load(Ordering::Relaxed)), (8, 0));
        // Killed after its allocation, nobody growing since: freed from `making`.
        let _ = heap.alloc_into(Grown::<AtomicU64, 4>::BLOCK, &chain.making).unwrap();
        chain.free(heap);
        assert_eq!(heap.in_use(), before, "every block given back, the one left in `making` too");
        assert!(chain.is_empty());
    }
}
