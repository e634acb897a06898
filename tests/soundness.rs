//! Soundness: no safe code can cause undefined behaviour, and every "a crash at any point"
//! claim holds (issue 9). Each section is one area; each test shows a defect that was.

mod common;

multiproc::test_support!();

// --- shm ---

mod shm {
    use std::time::Duration;

    use multiproc::__private::{crash_at, heap_alloc, heap_check, heap_free, heap_in_use};
    use multiproc::{Lock, Process};
    use serde::{Deserialize, Serialize};

    use crate::common;

    const LIMIT: Duration = Duration::from_secs(60);
    const PAGE: usize = 4096;
    const SIGABRT: i32 = 6;

    /// What a child does once armed to abort at a crash point.
    #[derive(Serialize, Deserialize)]
    enum Step {
        Alloc(usize),
        Free(u64, usize),
        Acquire(Lock),
        AcquireAndDie(Lock),
    }

    fn armed_child((point, step): (String, Step)) {
        crash_at(&point);
        match step {
            Step::Alloc(len) => {
                heap_alloc(len).unwrap();
            }
            // SAFETY: the parent allocated this block for the child to free, and forgets it.
            Step::Free(off, len) => unsafe { heap_free(off, len) },
            Step::Acquire(lock) => drop(lock.acquire()),
            Step::AcquireAndDie(lock) => {
                std::mem::forget(lock.acquire());
                std::process::abort();
            }
        }
    }

    /// Runs `step` in a child that aborts at `point`; panics unless it died there.
    fn crash_at_point(point: &str, step: Step) {
        let child = Process::new(armed_child, (point.to_owned(), step)).start().unwrap();
        assert_eq!(child.wait(), -SIGABRT, "the child did not die at crash point {point}");
    }

    /// `n` consecutive large blocks of `len` bytes from the untouched end of the heap
    /// (larger than every free extent, so first fit cannot place them elsewhere).
    fn consecutive_blocks(n: usize) -> (Vec<u64>, usize) {
        loop {
            let largest = heap_check(&[]).unwrap().iter().map(|&(_, size)| size as usize).max().unwrap_or(0);
            let len = (largest + PAGE).max(32 * PAGE);
            let blocks: Vec<u64> = (0..n).map(|_| heap_alloc(len).unwrap()).collect();
            if blocks.windows(2).all(|w| w[1] == w[0] + len as u64) {
                return (blocks, len);
            }
            // Another thread allocated in between: try again.
            for &b in &blocks {
                // SAFETY: allocated just above, unused.
                unsafe { heap_free(b, len) };
            }
        }
    }

    /// After the crash: the free list is well formed, clear of the blocks still live, and
    /// the heap still serves (the dead holder's lock is taken over).
    fn assert_heap_sound(point: &str, live: &[(u64, usize)]) {
        if let Err(e) = heap_check(live) {
            panic!("after a crash at {point}: {e}");
        }
        let len = 64 * PAGE;
        let fresh = heap_alloc(len).unwrap();
        let mut all = live.to_vec();
        all.push((fresh, len));
        if let Err(e) = heap_check(&all) {
            panic!("after a crash at {point} and one allocation: {e}");
        }
        // SAFETY: allocated just above, unused.
        unsafe { heap_free(fresh, len) };
    }

    /// A free that merges with both neighbours, killed at each step: the merged range is
    /// never free twice over (an extent overlapping another) nor reachable while live.
    #[test]
    fn a_large_free_killed_at_any_step_hands_nothing_out_twice() {
        let _alone = common::leak_check(LIMIT);
        for point in [
            "heap.free_large.released",
            "heap.free_large.locked",
            "heap.free_large.next_written",
            "heap.free_large.size_written",
        ] {
            // [a free][b freed by the child][c free][d live]
            let (blocks, len) = consecutive_blocks(4);
            let [a, b, c, d] = blocks[..] else { unreachable!() };
            // SAFETY: allocated above, freed once, unused.
            unsafe { heap_free(a, len) };
            // SAFETY: as above.
            unsafe { heap_free(c, len) };
            let before = heap_in_use();
            crash_at_point(point, Step::Free(b, len));
            assert_heap_sound(point, &[(d, len)]);
            assert_eq!(heap_in_use(), before, "a block whose free was cut short stays counted ({point})");
            // SAFETY: allocated above, freed once, unused.
            unsafe { heap_free(d, len) };
        }
    }

    /// A free that gives its range back to the untouched end of the heap, killed at each
    /// step: the range is never both below the bump pointer's end and in the free list.
    #[test]
    fn a_large_free_into_the_untouched_end_killed_at_any_step_hands_nothing_out_twice() {
        let _alone = common::leak_check(LIMIT);
        for point in ["heap.free_large.released", "heap.free_large.locked", "heap.free_large.unlinked"] {
            // [a free][b freed by the child][c freed: back to the untouched end]
            let (blocks, len) = consecutive_blocks(3);
            let [a, b, c] = blocks[..] else { unreachable!() };
            // SAFETY: allocated above, freed once, unused.
            unsafe { heap_free(a, len) };
            // SAFETY: as above.
            unsafe { heap_free(c, len) };
            let before = heap_in_use();
            crash_at_point(point, Step::Free(b, len));
            assert_heap_sound(point, &[]);
            assert_eq!(heap_in_use(), before, "a block whose free was cut short stays counted ({point})");
        }
    }

    /// An allocation killed at each step: what it took is lost with it (and counted), the
    /// rest of the heap is intact.
    #[test]
    fn a_large_allocation_killed_at_any_step_leaves_the_heap_sound() {
        let _alone = common::leak_check(LIMIT);
        for point in [
            "heap.alloc_large.locked",
            "heap.alloc_large.rest_written",
            "heap.alloc_large.unlinked",
            "heap.alloc_large.bumped",
        ] {
            // [e free, twice the request: split by the child][g live]
            let (blocks, len) = consecutive_blocks(3);
            let [e1, _e2, g] = blocks[..] else { unreachable!() };
            // SAFETY: allocated above, freed once each, unused.
            unsafe { heap_free(e1, len) };
            // SAFETY: as above; merges with e1.
            unsafe { heap_free(blocks[1], len) };
            // Larger than every free extent: from the untouched end.
            let request = if point == "heap.alloc_large.bumped" { 4 * len } else { len };
            let before = heap_in_use();
            crash_at_point(point, Step::Alloc(request));
            assert_heap_sound(point, &[(g, len)]);
            assert_eq!(heap_in_use(), before + request as u64, "what a dead allocation took stays counted ({point})");
            // SAFETY: allocated above, freed once, unused.
            unsafe { heap_free(g, len) };
        }
    }

    /// A process killed while it takes over a dead holder's lock leaves the lock to the
    /// next one, who is told the holder died.
    #[test]
    fn a_process_killed_while_taking_over_a_dead_holders_lock_passes_it_on() {
        let _heap = common::heap_user(LIMIT);
        let lock = Lock::new().unwrap();
        crash_at_point("none", Step::AcquireAndDie(lock.clone()));
        crash_at_point("mutex.take_over.claimed", Step::Acquire(lock.clone()));
        assert!(lock.acquire().is_err(), "the lock comes back with OwnerDied");
    }
}
