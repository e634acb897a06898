//! A child's stack overflow, reported as one.
//!
//! std reports a thread that overflows its stack ("has overflowed its stack", then an
//! abort) from a `SIGSEGV` handler that its runtime start-up installs. A spawned child
//! runs its target before that start-up (see `early`), and a fork-server child of a test
//! binary is a copy of a process that had not reached it either: without a handler, an
//! overflow is a bare `SIGSEGV`, which the parent cannot tell from a wild pointer.
//!
//! So every child, just before its target runs, installs this handler, with an alternate
//! signal stack for the thread that runs the target. It recognises an overflow as a
//! fault within a page of the faulting thread's stack pointer (a stack probe or a push
//! below the last page the stack could have; memory near the stack pointer is otherwise
//! always mapped), prints std's message, writes the "stack overflow" outcome (encoded
//! beforehand) to the boot socket and aborts. Any other fault goes to the handler that was
//! there before (std's, in a fork child), or to the default action. Reading the stack
//! pointer from the signal context, rather than the stack's bounds from
//! `pthread_getattr_np` (which reads `/proc/self/maps` for the main thread), keeps the
//! arming to a few system calls per child.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Where a child's outcome goes: its boot socket, or the words of its report room in the
/// family heap (`shm::ReportRoom`, a fork child's), which outlive it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ReportTo<'a> {
    Socket(BorrowedFd<'a>),
    Room(&'static [AtomicU64]),
}

/// Where the report goes (a descriptor, or a room's words) and what it says, fixed
/// before the target runs.
struct Report {
    sock: i32,
    room: Option<&'static [AtomicU64]>,
    /// The framed outcome for the socket; the message alone for a room.
    frame: &'static [u8],
    message: Vec<u8>,
    page: usize,
    /// The `SIGSEGV` and `SIGBUS` actions before ours.
    previous: [libc::sigaction; 2],
    /// The process that armed it, the only one it speaks for: a fork child has a copy of
    /// its parent's (a multiproc child that forked, or a bare `libc::fork` of one), which
    /// says where the parent reports.
    pid: u32,
}

/// [`SLOT`] once a report is written there, else null. A fork child of an armed process
/// finds its parent's copy here: it arms its own in its place, and the handler reads only
/// a report armed by its own process.
static REPORT: AtomicPtr<Report> = AtomicPtr::new(std::ptr::null_mut());

/// Where the report lives: a static, not a box, so that a fork child that arms its own
/// writes no page of the allocator's (each is one more page fault of every child).
struct Slot(UnsafeCell<MaybeUninit<Report>>);

// SAFETY: the slot is written only by `report_stack_overflow`, while `REPORT` is null (no
// handler can reach it), and read only through `REPORT`.
unsafe impl Sync for Slot {}

static SLOT: Slot = Slot(UnsafeCell::new(MaybeUninit::uninit()));

/// Per signal (`SIGSEGV`, `SIGBUS`): whether the one-shot handler (`SA_RESETHAND`) that was
/// there before ours has had its call. The kernel would have set the default action when
/// it called it; ours stays installed (an overflow is still reported, in this process and
/// in its Fork children, which inherit our action), and from then on takes the previous
/// action for the default one. A fork child inherits it with the report's `previous`, as
/// it would inherit the reset action (review134 M1). A swap claims the call: of two
/// threads that fault at once, one calls the handler, as the kernel would call it once.
static CONSUMED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];

/// The report armed last, whichever process armed it.
fn armed() -> Option<&'static Report> {
    // SAFETY: a non-null pointer in `REPORT` is `SLOT`, written before it was published
    // with release, and written again only after `REPORT` went back to null (see
    // `report_stack_overflow`).
    unsafe { REPORT.load(Ordering::Acquire).as_ref() }
}

const ALT_STACK_SIZE: usize = 64 * 1024;

/// What arming the report needs to know of the thread that will run the target: worked
/// out by whoever is on that thread first. A fork child's thread is a copy of its
/// parent's, so the parent works it out before the fork: the child then touches no page
/// of `sigaltstack` and `sysconf` (each page of code or data a fork child touches first is
/// one more page fault) and makes one system call fewer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OverflowArming {
    page: usize,
    /// Whether the thread has an alternate signal stack already.
    stack_ready: bool,
}

/// The page size, once asked ([`page_size`]).
static PAGE: AtomicUsize = AtomicUsize::new(0);

/// The page size: asked once per process and inherited by its forks (a fork-server child
/// then runs no `sysconf`, whose code would be one more page fault of each).
pub(crate) fn page_size() -> usize {
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf has no preconditions.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
            PAGE.store(page, Ordering::Relaxed);
            page
        }
        page => page,
    }
}

impl OverflowArming {
    /// The calling thread's (and so a fork child's) arming.
    pub(crate) fn here() -> Self {
        Self { page: page_size(), stack_ready: has_alternate_stack() }
    }
}

/// Arms the report (with an alternate signal stack for the calling thread, the one about
/// to run the target, unless `arming` says it has one): a stack overflow writes `frame`
/// (a framed outcome) where `to` says (a room takes it without its length), prints
/// `message` to stderr and aborts. Once per process; later calls do
/// nothing. A fork child of an armed process arms its own (the parent's, copied, is not
/// its report).
pub(crate) fn report_stack_overflow(to: ReportTo<'_>, frame: &'static [u8], message: String, arming: OverflowArming) {
    let pid = super::pid_now();
    let inherited = armed();
    if inherited.is_some_and(|report| report.pid == pid) {
        return;
    }
    if !arming.stack_ready && !make_alternate_stack(arming.page) {
        return;
    }
    let previous = match inherited {
        // Our handler is installed already (a fork keeps the actions): the actions before
        // it are the parent's report's.
        Some(report) => report.previous,
        None => {
            for consumed in &CONSUMED {
                consumed.store(false, Ordering::Relaxed);
            }
            let mut action = empty_action();
            action.sa_sigaction = handler as extern "C" fn(i32, *mut libc::siginfo_t, *mut c_void) as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            let mut previous = [empty_action(), empty_action()];
            for (signal, previous) in [libc::SIGSEGV, libc::SIGBUS].into_iter().zip(&mut previous) {
                // SAFETY: `action` is a fully initialised sigaction whose handler has the
                // SA_SIGINFO signature; until `REPORT` is set below it only restores the
                // default action, so a fault in between ends the process as it would have.
                unsafe { libc::sigaction(signal, &action, previous) };
            }
            previous
        }
    };
    let (sock, room, frame) = match to {
        ReportTo::Socket(sock) => (sock.as_raw_fd(), None, frame),
        // The message without its frame's length: a slice of the same bytes (the frame is
        // the process's one encoding, never written: no copy of its page in a child).
        ReportTo::Room(room) => (-1, Some(room), frame.get(4..).unwrap_or_default()),
    };
    let report = Report { sock, room, frame, message: message.into_bytes(), page: arming.page, previous, pid };
    // A handler from now on finds no report (the default action) until the new one is
    // written: the parent's copy, if any, is overwritten, never dropped (its buffers are
    // copies of the parent's memory, left as they are).
    REPORT.store(std::ptr::null_mut(), Ordering::Release);
    // SAFETY: nothing reads the slot while `REPORT` is null, and nobody else writes it: the
    // report is armed once per process, before the target runs, and a process that finds
    // another's report in `REPORT` is a fork child, whose only thread is this one.
    let written = unsafe { (*SLOT.0.get()).write(report) };
    REPORT.store(written, Ordering::Release);
}

/// A report room's head: word 0 says what the room holds (0 nothing), word 1 the
/// message's length, words 2 to 6 are the room's owner's (`shm::ReportRoom`: a spill, the
/// outcome's blob, a go word); an inline message follows.
pub(crate) const ROOM_HEAD: usize = 7;
/// Word 0 of a report room: the message is in the room, after the head.
pub(crate) const ROOM_INLINE: u64 = 1;

/// Leaves `message` in the report room `room` (its words, head included): the message
/// first, then its length and word 0 last ([`commit_room`]), so that a process killed
/// while it writes leaves an empty room. Only atomic stores: a signal handler may call it.
/// False if the message does not fit or the room holds one already.
pub(crate) fn write_room(room: &[AtomicU64], message: &[u8]) -> bool {
    if room.len() < ROOM_HEAD || message.len() > (room.len() - ROOM_HEAD) * 8 || room[0].load(Ordering::Relaxed) != 0 {
        return false;
    }
    put_room_bytes(&room[ROOM_HEAD..], message);
    commit_room(room, message.len(), ROOM_INLINE);
    true
}

/// Says what `room` holds: `len` bytes, as `what` (word 0, stored last, release).
pub(crate) fn commit_room(room: &[AtomicU64], len: usize, what: u64) {
    room[1].store(len as u64, Ordering::Relaxed);
    room[0].store(what, Ordering::Release);
}

/// Writes `bytes` into `to` as little-endian words, the last one zero-padded.
pub(crate) fn put_room_bytes(to: &[AtomicU64], bytes: &[u8]) {
    for (word, chunk) in to.iter().zip(bytes.chunks(8)) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        word.store(u64::from_le_bytes(w), Ordering::Relaxed);
    }
}

fn empty_action() -> libc::sigaction {
    // SAFETY: sigaction is plain data; all zeroes is SIG_DFL with an empty mask.
    unsafe { std::mem::zeroed() }
}

/// The faulting thread's stack pointer, from the context the kernel passes a handler.
fn stack_pointer(context: *mut c_void) -> Option<usize> {
    let context = context.cast::<libc::ucontext_t>();
    if context.is_null() {
        return None;
    }
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid ucontext_t of the
    // interrupted thread as the third argument.
    #[cfg(target_arch = "x86_64")]
    let sp = unsafe { (*context).uc_mcontext.gregs[libc::REG_RSP as usize] as usize };
    // SAFETY: as above.
    #[cfg(target_arch = "aarch64")]
    let sp = unsafe { (*context).uc_mcontext.sp as usize };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let sp = return None;
    Some(sp)
}

/// Whether the calling thread has an alternate signal stack (std's threads and std's
/// main thread have one) big enough for the handler.
fn has_alternate_stack() -> bool {
    // SAFETY: stack_t is plain data; all zeroes is a valid value.
    let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigaltstack with a null new stack only reads the current one into `old`.
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut old) } != 0 {
        return false;
    }
    old.ss_flags & libc::SS_DISABLE == 0 && old.ss_size >= libc::MINSIGSTKSZ
}

/// Gives the calling thread an alternate signal stack, so the handler can run when the
/// stack is exhausted; `page` is the page size.
fn make_alternate_stack(page: usize) -> bool {
    // SAFETY: a fresh private anonymous mapping, owned by nobody else; its lowest page
    // becomes a guard. It is never unmapped: the process uses it until it exits.
    unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            ALT_STACK_SIZE + page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        );
        if base == libc::MAP_FAILED {
            return false;
        }
        libc::mprotect(base, page, libc::PROT_NONE);
        let stack = libc::stack_t { ss_sp: base.cast::<u8>().add(page).cast(), ss_flags: 0, ss_size: ALT_STACK_SIZE };
        if libc::sigaltstack(&stack, std::ptr::null_mut()) != 0 {
            libc::munmap(base, ALT_STACK_SIZE + page);
            return false;
        }
    }
    true
}

extern "C" fn handler(signal: i32, info: *mut libc::siginfo_t, context: *mut c_void) {
    // Only async-signal-safe calls below: write, signal, abort, sigaction, raise, getpid,
    // pthread_sigmask, sigismember, sigaddset, sigdelset, and lock-free atomics.
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let code = unsafe { (*info).si_code };
    // Not raised by an access that faulted, so none runs again after the handler: a signal
    // a process sent (`kill`, `raise`, `sigqueue`: `si_code <= 0`), or the kernel's report
    // of memory found bad that the process maps, not one it touched (`BUS_MCEERR_AO`, where
    // early kill is on: review125 L3).
    let not_a_fault = code <= 0 || (signal == libc::SIGBUS && code == libc::BUS_MCEERR_AO);
    let Some(report) = armed() else {
        // SAFETY: restoring the default action is async-signal-safe; returning re-runs
        // the faulting access, which the default action then ends (a sent signal is
        // sent again, below).
        unsafe { libc::signal(signal, libc::SIG_DFL) };
        redeliver_if_default(signal, not_a_fault);
        return;
    };
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers of SIGSEGV/SIGBUS,
    // whose si_addr is the faulting address.
    let address = unsafe { (*info).si_addr() } as usize;
    // Reported only by the process that armed it (getpid is async-signal-safe): in a copy
    // (a bare `libc::fork` of a child) the report says where another process reports. A
    // sent signal is never an overflow: its siginfo holds the sender's pid and uid where a
    // fault's holds the address.
    let overflow = !not_a_fault
        && stack_pointer(context).is_some_and(|sp| address.abs_diff(sp) < report.page)
        && report.pid == super::pid_now();
    if overflow {
        // SAFETY: write(2) of buffers that live as long as the process; SIGABRT's default
        // action then ends it as std's overflow report does.
        unsafe {
            libc::write(2, report.message.as_ptr().cast(), report.message.len());
            match report.room {
                Some(room) => {
                    write_room(room, report.frame);
                }
                None => {
                    libc::write(report.sock, report.frame.as_ptr().cast(), report.frame.len());
                }
            }
            libc::signal(libc::SIGABRT, libc::SIG_DFL);
            libc::abort();
        }
    }
    let which = usize::from(signal == libc::SIGBUS);
    let previous = &report.previous[which];
    // A one-shot handler that had its call is the default action now, as under the kernel.
    let one_shot = previous.sa_flags & libc::SA_RESETHAND != 0;
    let used = one_shot && CONSUMED[which].load(Ordering::Acquire);
    match if used { libc::SIG_DFL } else { previous.sa_sigaction } {
        // A signal not of a fault, which the process ignored before ours: ignored still (a
        // fault cannot be: the kernel ends the process on the re-run access whatever the
        // action).
        libc::SIG_IGN if not_a_fault => return,
        libc::SIG_DFL | libc::SIG_IGN => {
            // SAFETY: as above: the default action ends the process on the re-run access.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        }
        // A one-shot handler (SA_RESETHAND) gets what the kernel would have given it: one
        // call, the default action after it, so that a re-run access ends the process (a
        // crash handler that logs and returns counts on it; called plainly, it was called
        // again on each re-run access, for ever: review125 H1). The reset is kept in
        // `CONSUMED`, not in the process's action: reset there, it took ours away too, and
        // a Fork child's overflow was a bare SIGSEGV (review134 M1). A thread that loses the swap to
        // another one's call takes the default action, as under the kernel. The handler
        // has had the signal: no redelivery after it, as the kernel would make none.
        f if one_shot => {
            if CONSUMED[which].swap(true, Ordering::AcqRel) {
                // SAFETY: as above.
                unsafe { libc::signal(signal, libc::SIG_DFL) };
                redeliver_if_default(signal, not_a_fault);
                return;
            }
            call_previous(f, previous, signal, info, context);
            return;
        }
        f => call_previous(f, previous, signal, info, context),
    }
    redeliver_if_default(signal, not_a_fault);
}

/// Calls `f`, the handler of the action `previous` that was there before ours, as the
/// kernel would have called it: under the mask of the interrupted code, with its action's
/// `sa_mask` and (without `SA_NODEFER`) its signal blocked (ours runs under our action's:
/// review125 L7). Ours is back once it returns.
fn call_previous(f: usize, previous: &libc::sigaction, signal: i32, info: *mut libc::siginfo_t, context: *mut c_void) {
    let context = context.cast::<libc::ucontext_t>();
    let mut ours = empty_set();
    // SAFETY: pthread_sigmask, sigaddset and sigdelset of sigsets of ours (all
    // async-signal-safe); for an SA_SIGINFO handler the kernel passes a valid ucontext_t
    // of the interrupted thread, whose `uc_sigmask` is its mask when the signal came.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut ours);
        let mut theirs = if context.is_null() { ours } else { (*context).uc_sigmask };
        // Linux's signals are 1 to 64 (`_NSIG - 1`); glibc's `SIGRTMAX()` is not on POSIX's
        // list of async-signal-safe calls (review134 L3).
        for other in 1..=64 {
            if libc::sigismember(&previous.sa_mask, other) == 1 {
                libc::sigaddset(&mut theirs, other);
            }
        }
        if previous.sa_flags & libc::SA_NODEFER == 0 {
            libc::sigaddset(&mut theirs, signal);
        } else {
            libc::sigdelset(&mut theirs, signal);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &theirs, std::ptr::null_mut());
    }
    call_previous_as_is(f, previous, signal, info, context.cast());
    // SAFETY: as above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &ours, std::ptr::null_mut()) };
}

fn empty_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; all zeroes is the empty set on Linux.
    unsafe { std::mem::zeroed() }
}

/// [`call_previous`]'s call itself.
fn call_previous_as_is(
    f: usize,
    previous: &libc::sigaction,
    signal: i32,
    info: *mut libc::siginfo_t,
    context: *mut c_void,
) {
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous action was installed with SA_SIGINFO, so `f` is a handler
        // of this signature, called as the kernel would have.
        let f = unsafe { std::mem::transmute::<usize, extern "C" fn(i32, *mut libc::siginfo_t, *mut c_void)>(f) };
        f(signal, info, context);
    } else {
        // SAFETY: the previous action was installed without SA_SIGINFO, so `f` is a plain
        // `void (*)(int)` handler.
        let f = unsafe { std::mem::transmute::<usize, extern "C" fn(i32)>(f) };
        f(signal);
    }
}

/// For a signal sent by a process (`kill`, `raise`, `sigqueue`: `si_code <= 0`), or an
/// asynchronous machine-check report (`BUS_MCEERR_AO`), not raised by a fault, when the
/// action is now the default one (ours set it, or std's handler did,
/// rust-lang/rust#140662): sends it again, so that the default action ends the process, as
/// it would have without a handler. Returning alone re-runs a faulting access, which
/// faults again; a sent signal has no access to re-run, and the process went on as if
/// nothing had come (a child's `kill -SEGV` gave exit code 0 and its result). The signal
/// is blocked while its handler runs: it is delivered when the handler returns.
fn redeliver_if_default(signal: i32, not_a_fault: bool) {
    if !not_a_fault {
        return;
    }
    let mut now = empty_action();
    // SAFETY: sigaction with a null new action only reads the current one into `now`;
    // raise(3) sends the signal to the calling thread. Both are async-signal-safe.
    unsafe {
        if libc::sigaction(signal, std::ptr::null(), &mut now) == 0 && now.sa_sigaction == libc::SIG_DFL {
            libc::raise(signal);
        }
    }
}
