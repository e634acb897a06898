//! The record of a change of several stores made under a guard ([`RawMutex`](super::RawMutex)),
//! so that a process killed between its stores leaves nothing half done.
//!
//! The guard is taken over from a dead holder; the structures it guards must then be
//! whole. A change that is one store is; a change of several, where no order of the stores
//! is safe (a count moved before what balances it), is recorded first: the changer writes
//! what the next holder needs to put the change right ([`ChangeRecord::begin`]: the values
//! it overwrites, to undo it, or what it is about to write, to finish it), makes its
//! stores, then [`ChangeRecord::commit`]s. Whoever takes the guard next asks for an
//! [`ChangeRecord::unfinished`] record first: one is left only if its changer died before
//! its commit. It undoes or finishes that change (idempotently: it may be killed doing so,
//! and the next holder does it again), then commits it.

use std::sync::atomic::{AtomicU64, Ordering, fence};

/// The record of the change under way under a guard: `N` words, their meaning the
/// guarded structure's (see the module).
#[derive(crate::ShmSafe)]
#[repr(C)]
pub(crate) struct ChangeRecord<const N: usize> {
    /// 1 from [`ChangeRecord::begin`] to [`ChangeRecord::commit`].
    armed: AtomicU64,
    words: [AtomicU64; N],
}

impl<const N: usize> ChangeRecord<N> {
    /// No change under way.
    pub(crate) const fn new() -> Self {
        Self { armed: AtomicU64::new(0), words: [const { AtomicU64::new(0) }; N] }
    }

    /// Records a change (under the guard, before its first store).
    #[inline]
    pub(crate) fn begin(&self, words: [u64; N]) {
        // A kill is seen by the next holder as the stores made so far, in the order they
        // were made: the last change's commit comes before this record's words, ...
        fence(Ordering::Release);
        for (word, value) in self.words.iter().zip(words) {
            word.store(value, Ordering::Relaxed);
        }
        // ... the words before `armed` (never a record armed with another change's words),
        self.armed.store(1, Ordering::Release);
        // ... and the record, complete, before the change's first store.
        fence(Ordering::Release);
    }

    /// Ends the recorded change (under the guard, after its last store), or the unfinished
    /// one put right.
    #[inline]
    pub(crate) fn commit(&self) {
        self.armed.store(0, Ordering::Release);
    }

    /// The record of a change whose changer died before its commit (call as the guard is
    /// taken, before anything else reads the structure); put it right, then commit.
    #[inline]
    pub(crate) fn unfinished(&self) -> Option<[u64; N]> {
        // Relaxed: taking the guard ordered the changer's stores before this load.
        if self.armed.load(Ordering::Relaxed) == 0 {
            return None;
        }
        Some(std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_unfinished_from_its_begin_to_its_commit() {
        let record = ChangeRecord::<2>::new();
        assert_eq!(record.unfinished(), None);
        record.begin([7, u64::MAX]);
        assert_eq!(record.unfinished(), Some([7, u64::MAX]));
        record.commit();
        assert_eq!(record.unfinished(), None);
    }
}
