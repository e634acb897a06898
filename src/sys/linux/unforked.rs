//! Descriptors that no fork child keeps ([`Unforked`]).
//!
//! Close-on-exec covers a spawn, not a fork: a fork child gets a copy of every descriptor,
//! and a copy of a listening socket keeps its address bound, and connectable, for the
//! copy's life. So these are recorded in one table whose lock every fork of the process
//! holds across itself (`pthread_atfork` handlers: our own forks and a program's bare
//! `libc::fork` alike), and a fork child closes every descriptor the table names before
//! anything else runs. The lock makes the table exact at the fork: a descriptor is made
//! and recorded, and closed and forgotten, under it, with the thread's signals blocked (a
//! signal handler that forks would wait for the lock its own thread holds). A fork from a
//! signal handler that interrupted a fork between its prepare and parent handlers is not
//! covered: glibc's `fork` is not async-signal-safe anyway.
//!
//! The handlers are registered at `init` ([`Unforked::register_fork_handlers`]), while no
//! fork can be under way: glibc lets a registration land while another thread's fork runs
//! the prepare handlers registered before (a program allocator's, say), and that fork then
//! runs none of ours, prepare or child (review40 L1: registered by the first `Unforked`
//! made, a fork in flight at the first restart copied its listener). So every fork of a
//! family's main process takes and releases the lock, an `Unforked` made or not. A fork
//! that runs no handlers (a bare `clone`/`clone3`, `syscall(SYS_fork)`) is not covered.

use std::cell::Cell;
use std::io;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd as _, BorrowedFd, IntoRawFd as _, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};

/// How many can live at once: a restart of the fork server holds three (its listener and
/// the socket pair of its boot message), and a later one binds only once an earlier one's
/// listener and `theirs` are gone (its `ours` may linger a moment, dropped after the
/// failed spawn's job dropped `theirs`): three and a straggler per restarting thread.
/// Past it, `made` fails (a start's loud error), it does not wait.
const SLOTS: usize = 8;

/// The live [`Unforked`] descriptors of this process, each with its maker's id (a free
/// slot is `None`), and the next id. Its lock is held across every fork.
struct Table {
    live: [Option<(RawFd, u64)>; SLOTS],
    next_id: u64,
}

static TABLE: Mutex<Table> = Mutex::new(Table { live: [None; SLOTS], next_id: 0 });

thread_local! {
    /// [`TABLE`]'s lock, held by this thread from a fork's prepare handler to its parent
    /// or child handler (the child's thread is a copy of this one). Without drop glue: no
    /// destructor to register at the first use (an allocation, in a prepare handler), and
    /// there in every moment of a thread's life.
    static HELD_ACROSS_FORK: Cell<ManuallyDrop<Option<MutexGuard<'static, Table>>>> =
        const { Cell::new(ManuallyDrop::new(None)) };
}

fn held_across_fork() -> Option<MutexGuard<'static, Table>> {
    ManuallyDrop::into_inner(HELD_ACROSS_FORK.take())
}

fn table() -> MutexGuard<'static, Table> {
    TABLE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every signal blocked on this thread while it lives, for a holder of [`TABLE`]'s lock
/// outside a fork: a signal handler that forks (a program's snapshot on a signal) would
/// otherwise run on the holder's thread, and the fork's prepare handler wait for ever for
/// the lock that thread holds (review40 L2). Two system calls, on a rare path (a restart).
struct SignalsBlocked(libc::sigset_t);

impl SignalsBlocked {
    fn now() -> SignalsBlocked {
        let mut all = MaybeUninit::<libc::sigset_t>::uninit();
        let mut before = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `sigfillset` initialises `all`; `pthread_sigmask` reads it and writes the
        // thread's mask as it was into `before` (it cannot fail with `SIG_BLOCK` and valid
        // pointers; glibc leaves its own internal signals out).
        unsafe {
            libc::sigfillset(all.as_mut_ptr());
            libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), before.as_mut_ptr());
            SignalsBlocked(before.assume_init())
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask `now` saved; a signal that came meanwhile is handled
        // as the call returns.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

extern "C" fn lock_before_fork() {
    HELD_ACROSS_FORK.set(ManuallyDrop::new(Some(table())));
}

extern "C" fn unlock_in_parent() {
    drop(held_across_fork());
}

extern "C" fn close_in_child() {
    let Some(mut table) = held_across_fork() else { return };
    for (fd, _) in table.live.iter_mut().filter_map(Option::take) {
        // SAFETY: the child's copy of a descriptor recorded in the parent, whose owner (an
        // `Unforked`, in this copy of memory) closes nothing it does not find recorded.
        // A direct system call: no allocation, no lock.
        unsafe { rustix::io::close(fd) };
    }
}

/// Whether the handlers of [`TABLE`] are registered (once).
static REGISTERED: Once = Once::new();

/// A descriptor that no fork child of this process keeps: its copy is closed in the child
/// as the fork returns (see the module's documentation). For a descriptor whose copy would
/// outlive its use: the fork server's listener while it is started again, whose copy would
/// keep the server's address answering nobody.
#[derive(Debug)]
pub(crate) struct Unforked {
    /// Taken only by `drop`.
    fd: Option<OwnedFd>,
    id: u64,
}

impl Unforked {
    /// Registers the handlers that hold [`TABLE`] across every fork of the process, once.
    /// Call while no fork can be under way (single-threaded: `init`), before the first one
    /// is made.
    pub(crate) fn register_fork_handlers() {
        REGISTERED.call_once(|| {
            // SAFETY: the handlers take and release one lock that no holder keeps while it
            // forks, and the child's closes that lock's table's descriptors with direct
            // system calls (no allocation). A failure (ENOMEM) leaves forks as they were:
            // their children keep copies (the old state).
            unsafe { libc::pthread_atfork(Some(lock_before_fork), Some(unlock_in_parent), Some(close_in_child)) };
        });
    }

    /// Makes `N` descriptors with `make`, recorded before any fork can copy them. `make`
    /// runs under the lock every fork waits for, with signals blocked: system calls only, no
    /// allocation (a program's allocator may lock its arenas in a fork handler that runs
    /// before ours), no other lock and no fork.
    ///
    /// # Errors
    ///
    /// What `make` returned, or, past [`SLOTS`] live ones, `OutOfMemory` (nothing made).
    pub(crate) fn made<const N: usize>(make: impl FnOnce() -> io::Result<[OwnedFd; N]>) -> io::Result<[Unforked; N]> {
        debug_assert!(REGISTERED.is_completed(), "an Unforked made before its fork handlers were registered");
        let _signals = SignalsBlocked::now();
        let mut table = table();
        if table.live.iter().filter(|slot| slot.is_none()).count() < N {
            drop(table);
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "too many descriptors kept from fork children"));
        }
        let fds = make()?;
        Ok(fds.map(|fd| {
            let id = table.next_id;
            table.next_id += 1;
            let slot = table.live.iter_mut().find(|slot| slot.is_none()).expect("counted above");
            *slot = Some((fd.as_raw_fd(), id));
            Unforked { fd: Some(fd), id }
        }))
    }
}

impl AsFd for Unforked {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_ref().expect("taken only by drop").as_fd()
    }
}

impl Drop for Unforked {
    fn drop(&mut self) {
        let Some(fd) = self.fd.take() else { return };
        let _signals = SignalsBlocked::now();
        let mut table = table();
        let recorded = table.live.iter_mut().find(|slot| **slot == Some((fd.as_raw_fd(), self.id)));
        match recorded {
            // Closed under the lock: a fork between the two would copy the descriptor
            // unrecorded, or find its number recorded for another descriptor.
            Some(slot) => {
                *slot = None;
                drop(fd);
            }
            // A copy in a fork child: its descriptor was closed at the fork (its number may
            // be another's now).
            None => {
                let _ = fd.into_raw_fd();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd, RawFd};

    use super::Unforked;

    /// Whether `fd` is open in a bare `libc::fork` child of this process.
    fn open_in_fork_child(fd: RawFd) -> bool {
        // SAFETY: the child makes async-signal-safe calls only, then exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: as above.
            unsafe { libc::_exit(i32::from(libc::fcntl(fd, libc::F_GETFD) != -1)) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        libc::WEXITSTATUS(status) == 1
    }

    fn pipe() -> [OwnedFd; 2] {
        <[OwnedFd; 2]>::from(rustix::pipe::pipe().unwrap())
    }

    #[test]
    fn a_fork_child_closes_its_copies_of_unforked_descriptors_only() {
        Unforked::register_fork_handlers();
        let [kept, kept_too] = Unforked::made(|| Ok(pipe())).unwrap();
        let [plain, _] = pipe();
        assert!(!open_in_fork_child(kept.as_fd().as_raw_fd()));
        assert!(!open_in_fork_child(kept_too.as_fd().as_raw_fd()));
        assert!(open_in_fork_child(plain.as_raw_fd()));
        // Dropped, it is forgotten: a descriptor that takes its number is copied.
        let number = kept.as_fd().as_raw_fd();
        drop(kept);
        let [again, again_too] = pipe();
        let reused = [&again, &again_too].into_iter().find(|fd| fd.as_raw_fd() == number);
        if let Some(reused) = reused {
            assert!(open_in_fork_child(reused.as_raw_fd()));
        }
    }

    /// A program's signal handler that forks (a snapshot on a signal, say), the child
    /// exiting at once.
    extern "C" fn fork_in_handler(_: libc::c_int) {
        // SAFETY: fork, _exit and waitpid, async-signal-safe calls only.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(0);
            }
            if pid > 0 {
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }

    #[test]
    fn a_fork_from_a_signal_handler_that_interrupts_made_does_not_deadlock() {
        Unforked::register_fork_handlers();
        // In a child, single-threaded, that `alarm` kills if it waits for ever.
        // SAFETY: the child makes system calls and takes `made`'s lock only (handed over
        // unlocked by the fork's child handler), and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: as above; `action` is a zeroed sigaction (an empty mask) whose
            // handler has the signature `sa_sigaction` wants without `SA_SIGINFO`.
            unsafe {
                libc::alarm(10);
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = fork_in_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
                libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut());
                let made = Unforked::made(|| {
                    libc::raise(libc::SIGUSR1);
                    Ok(pipe())
                });
                libc::_exit(if made.is_ok() { 0 } else { 2 });
            }
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "a fork from a signal handler inside `made` waited for the lock its own thread held (status {status:#x})"
        );
    }
}
