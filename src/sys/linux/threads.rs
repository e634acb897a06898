//! multiproc's own threads, told apart from the program's.
//!
//! A wait that would answer "nobody else could ever act on this object" (an `Event` that
//! nobody else can set, a `Barrier` no other party can reach) must also know that no other
//! thread of this process could act on it through a reference to the waiter's handle (an
//! `Arc`, a scoped thread, a static). Threads that run only multiproc's code never do, so
//! each of them is listed here where it starts ([`spawn_own`]); every other thread of the
//! process may run the program's code.
//!
//! The list is a fixed array of atomic slots tagged with the pid that filled them: no lock,
//! so a fork child never inherits a held one, and a fork child (whose only thread is the
//! one that forked) sees the copied slots as another process's and ignores them. A thread
//! that finds no free slot stays unlisted, which only makes the check more careful.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

/// More than multiproc starts in one process today (a few wakers, the launcher, a manager
/// connection's reader); the overflow is counted as the program's threads.
const SLOTS: usize = 64;

/// The list: the pid whose threads fill the slots (a fork child finds its parent's), and
/// the slots (thread ids, 0 when free).
struct Registry {
    owner: AtomicU32,
    tids: [AtomicU32; SLOTS],
}

static OWN: Registry = Registry::new();

impl Registry {
    const fn new() -> Self {
        Self { owner: AtomicU32::new(0), tids: [const { AtomicU32::new(0) }; SLOTS] }
    }

    /// Makes the slots process `pid`'s: after a fork, the parent's entries are cleared
    /// first. Two threads of a fork child may both clear; one may then clear the other's
    /// fresh entry, which leaves that thread counted as the program's (careful, never
    /// wrong).
    fn claim_for(&self, pid: u32) {
        if self.owner.load(Ordering::Acquire) != pid {
            for slot in &self.tids {
                slot.store(0, Ordering::Relaxed);
            }
            self.owner.store(pid, Ordering::Release);
        }
    }

    fn list(&self, pid: u32, tid: u32) -> Option<usize> {
        self.claim_for(pid);
        self.tids.iter().position(|s| s.compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed).is_ok())
    }

    fn unlist(&self, slot: usize, tid: u32) {
        // Only if still ours: a fork child's clearing may have given the slot away.
        let _ = self.tids[slot].compare_exchange(tid, 0, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Whether thread `tid` of process `pid` is listed.
    fn lists(&self, pid: u32, tid: u32) -> bool {
        self.owner.load(Ordering::Acquire) == pid && self.tids.iter().any(|s| s.load(Ordering::Acquire) == tid)
    }

    /// Whether every thread in `tasks` (`None`: one that could not be read) is `me` or
    /// listed.
    fn alone_among(&self, pid: u32, me: u32, tasks: impl IntoIterator<Item = Option<u32>>) -> bool {
        tasks.into_iter().all(|task| task.is_some_and(|tid| tid == me || self.lists(pid, tid)))
    }
}

fn current_pid() -> u32 {
    // Not the cached `my_pid`: a child forked by the program itself (not through `fork`)
    // keeps its parent's cache.
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// Lists the calling thread as multiproc's own until the returned guard drops.
#[must_use = "the thread is listed while the guard lives"]
pub(crate) fn list_own_thread() -> OwnThread {
    let tid = super::my_tid();
    OwnThread { slot: OWN.list(current_pid(), tid), tid }
}

/// A listed thread; dropping it (at the end of the thread's function, or as it unwinds)
/// takes the thread off the list before its id can be reused.
#[derive(Debug)]
pub(crate) struct OwnThread {
    slot: Option<usize>,
    tid: u32,
}

impl Drop for OwnThread {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            OWN.unlist(slot, self.tid);
        }
    }
}

/// Starts a thread of multiproc's own, named `name`, listed while `f` runs. Only for
/// threads that never run the program's code (its closures, callbacks or tasks): a pool's
/// result thread, which runs callbacks, and a thread pool's workers are not.
pub(crate) fn spawn_own<R: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> io::Result<JoinHandle<R>> {
    std::thread::Builder::new().name(name.into()).spawn(move || {
        let _listed = list_own_thread();
        f()
    })
}

/// Whether the calling thread is the only thread of this process besides multiproc's own
/// (so that nothing else in this process could act on what the caller holds while it is
/// blocked). Reads `/proc/self/task`: call it where a wait has lasted, never per operation.
/// Any doubt (an unreadable `/proc`) answers `false`.
pub(crate) fn alone_but_for_own_threads() -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return false };
    let tids = tasks.map(|t| t.ok().and_then(|t| t.file_name().to_str().and_then(|n| n.parse().ok())));
    OWN.alone_among(current_pid(), super::my_tid(), tids)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// libtest runs this on a thread of its own, beside its main thread: never alone.
    #[test]
    fn a_test_thread_is_not_alone() {
        assert!(!alone_but_for_own_threads());
    }

    #[test]
    fn a_thread_started_as_our_own_is_listed_while_it_runs() {
        let (tell, told) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let own = spawn_own("multiproc-test", move || {
            tell.send(crate::sys::my_tid()).unwrap();
            released.recv().unwrap();
        })
        .unwrap();
        let tid = told.recv().unwrap();
        assert!(OWN.lists(current_pid(), tid), "listed while it runs");
        release.send(()).unwrap();
        own.join().unwrap();
        assert!(!OWN.lists(current_pid(), tid), "unlisted once it ended");
    }

    #[test]
    fn only_the_caller_and_listed_threads_make_alone() {
        let list = Registry::new();
        let (pid, me, ours, theirs) = (100, 100, 101, 102);
        assert!(list.alone_among(pid, me, [Some(me)]));
        assert!(!list.alone_among(pid, me, [Some(me), Some(ours)]), "not listed yet");
        let slot = list.list(pid, ours).unwrap();
        assert!(list.alone_among(pid, me, [Some(me), Some(ours)]));
        assert!(!list.alone_among(pid, me, [Some(me), Some(ours), Some(theirs)]));
        assert!(!list.alone_among(pid, me, [Some(me), None]), "an unreadable entry is a doubt");
        list.unlist(slot, ours);
        assert!(!list.alone_among(pid, me, [Some(me), Some(ours)]));
    }

    /// A fork child (pid 200, one thread) with its parent's list (pid 100) copied.
    #[test]
    fn a_fork_child_ignores_its_parents_list_and_starts_its_own() {
        let list = Registry::new();
        let _ = list.list(100, 101);
        let _ = list.list(100, 201);
        // The child's only thread, and a thread of the program's whose id a parent's
        // listed thread had: not ours.
        assert!(list.alone_among(200, 200, [Some(200)]));
        assert!(!list.alone_among(200, 200, [Some(200), Some(201)]));
        let slot = list.list(200, 202).unwrap();
        assert!(!list.lists(200, 201), "the parent's entries are cleared");
        assert!(list.alone_among(200, 200, [Some(200), Some(202)]));
        list.unlist(slot, 202);
        for _ in 0..SLOTS {
            let _ = list.list(200, 203);
        }
        assert!(list.list(200, 204).is_none(), "a full list lists no more");
        assert!(!list.alone_among(200, 200, [Some(200), Some(204)]), "an unlisted thread is the program's");
    }
}
