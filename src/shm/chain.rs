//! Blocks of the heap's books linked from a head word, each made under a robust lock with a
//! record of the block being made: the holds directory (`holds`) and the pin records beyond
//! the reserved part's (`pins`).
//!
//! A maker takes the lock ([`Chain::lock`]), has the allocator store the new block's offset
//! in the `making` word as it hands the block out ([`Chain::make`]), writes the block, and
//! links it at the head ([`Chain::link`]: its `next` word, then the head, then `making`
//! cleared). Blocks are never freed, and linked only at the head, under the lock. A maker
//! killed at any step leaves `making` to the next holder of the lock (the lock is robust:
//! a dead holder's is taken over), which finishes the block: cleared (its maker may have
//! died before it zeroed it) and linked, unless it is at the head already (linked, its
//! maker killed before it cleared `making`). A holder clears `making` before it lets go of
//! the lock, so a block found there is a dead holder's; finishing it twice (the finisher
//! killed meanwhile) links it once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::heap::Heap;
use super::mutex::{RawGuard, RawMutex};
use super::wait::Deadline;

/// A list of blocks: its head (0: none), the lock its growth takes, and the block being
/// made under it (0: none).
pub(super) struct Chain<'h> {
    pub(super) heap: &'h Heap,
    pub(super) head: &'h AtomicU64,
    pub(super) lock: &'h RawMutex,
    pub(super) making: &'h AtomicU64,
}

impl<'h> Chain<'h> {
    /// Takes the lock, waiting at most until `deadline` (`None`: a live holder kept it),
    /// and first finishes the block a dead holder was making: `clear(off)` clears its words
    /// and gives its `next` word, unless it is linked already; then `finished()` runs (the
    /// block linked), before the record is cleared.
    pub(super) fn lock(
        &self,
        deadline: Deadline,
        clear: impl FnOnce(u64) -> &'h AtomicU64,
        finished: impl FnOnce(),
    ) -> Option<RawGuard<'h>> {
        let guard = RawGuard::lock_until(self.lock, deadline)?;
        self.finish_dead(clear, finished);
        Some(guard)
    }

    /// [`Chain::lock`], waiting for a running holder however long it takes and for a
    /// stopped one at most `grace` (`None`: its holder is stopped).
    pub(super) fn lock_unless_stopped(
        &self,
        grace: Duration,
        clear: impl FnOnce(u64) -> &'h AtomicU64,
        finished: impl FnOnce(),
    ) -> Option<RawGuard<'h>> {
        let guard = RawGuard::lock_unless_stopped_within(self.lock, grace)?;
        self.finish_dead(clear, finished);
        Some(guard)
    }

    /// Under the lock just taken: finishes the block a dead holder was making.
    fn finish_dead(&self, clear: impl FnOnce(u64) -> &'h AtomicU64, finished: impl FnOnce()) {
        let off = self.making.load(Ordering::Relaxed);
        if off != 0 {
            if self.head.load(Ordering::Relaxed) != off {
                let next = clear(off);
                next.store(self.head.load(Ordering::Relaxed), Ordering::Relaxed);
                self.head.store(off, Ordering::Release);
            }
            finished();
            self.making.store(0, Ordering::Relaxed);
        }
    }

    /// A new block of `len` zeroed bytes (at most the largest small class), recorded as the
    /// one being made from the moment the allocator hands it out; `None`: the heap is full.
    /// Under the lock.
    pub(super) fn make(&self, len: usize) -> Option<u64> {
        self.heap.alloc_uncounted_into(len, self.making).ok()
    }

    /// [`Chain::make`] without waiting for a process stopped holding the heap's large
    /// allocator's lock: `Err(())` then, or when blocks wait for their release in a full
    /// heap (the caller lets go of the chain's lock and waits for the allocator there,
    /// [`Heap::wait_for_large_allocator`], which releases one), `Ok(None)`: the heap is
    /// full. Under the lock.
    pub(super) fn make_unless_stopped(&self, len: usize, grace: Duration) -> Result<Option<u64>, ()> {
        match self.heap.alloc_uncounted_into_unless_stopped(len, self.making, grace) {
            Ok(Some(off)) => Ok(Some(off)),
            Ok(None) => Err(()),
            Err(_) => Ok(None),
        }
    }

    /// Links the block made at `off` (its `next` word `next`) at the head; `linked()` runs
    /// once it is, before the record of the block being made is cleared. Under the lock.
    pub(super) fn link(&self, off: u64, next: &AtomicU64, linked: impl FnOnce()) {
        next.store(self.head.load(Ordering::Relaxed), Ordering::Relaxed);
        self.head.store(off, Ordering::Release);
        linked();
        self.making.store(0, Ordering::Relaxed);
    }
}
