//! The moment before `main`: a child of the family is recognised and dispatched here, so
//! the program's `main` never runs in it, wherever the program calls `multiproc::init()`.
//!
//! This is the one place where `sys` calls up into `process`: the loader hands control to
//! us through `.init_array`, and deciding what a child runs is the process layer's job.
//!
//! # What has run when a child's target starts
//!
//! The loader calls the executable's `.init_array` entries in order, then std's runtime
//! start-up, then `main`. Our entry (and `test_support!`'s) may sit anywhere among the
//! others: a constructor after it (an `inventory::submit!`, a `ctor`) has not run yet when
//! it is called. A process that starts a target from here never returns to the loader,
//! so [`finish_constructors`] calls the entries after the running one itself, with the
//! loader's arguments, before the target runs: every constructor runs once, before it.
//! Who does that:
//!
//! * a spawned child, before it reads its boot message;
//! * the fork server when it is forked from `test_support!`'s entry (a test binary, whose
//!   `main` belongs to libtest): before it serves, so that its children, which are copies
//!   of it, see every registration. In a program whose `main` calls `init()`, every
//!   constructor has run before the fork server is forked.
//!
//! What such a process does not get is std's runtime start-up, which only `main`'s caller
//! does: the main thread is not named `main`, and std's stack-overflow handler is not
//! installed (`SIGPIPE` is ignored by `child_signal_dispositions`, standard descriptors are
//! set by the parent). Every child installs multiproc's own stack-overflow report instead.
//!
//! # Programs with `#[multiproc::main]`: the whole runtime
//!
//! Dispatching from `init()` (procspawn's way) gives a spawned child the whole runtime,
//! but it is only sound where `init()` is surely the first thing `main` does: code before
//! it would run twice, and in a test binary no `main` of ours ever runs. `#[multiproc::main]`
//! is such a guarantee, so it says so before any of our entries runs: it places a
//! prioritised entry (`.init_array.NNNNN`, which both GNU ld and lld put before every
//! unprioritised one, ours included) that calls [`main_dispatches`]. A spawned child of such
//! a program leaves its entry at once, lets the loader run the other constructors and std
//! its start-up, and dispatches from the `init()` that opens `main`: its target runs in a
//! normal runtime (a main thread named `main`, std's stack-overflow handler for every
//! thread it starts). Every other program (`init()` called by hand, test binaries) keeps
//! the dispatch before `main`, which keeps "main never runs twice" true for every program.

use std::ffi::{c_char, c_int};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicUsize, Ordering};

/// The type of an `.init_array` entry, called by the loader with `argc`, `argv`, `envp`.
/// `unsafe` to call: only the loader (or `finish_constructors`, on its behalf) calls it,
/// with the loader's arguments, which [`in_init_array`] keeps for the entries after it. A
/// safe pointer let a program call `test_support!`'s entry by hand with made-up ones.
pub type InitEntry = unsafe extern "C" fn(c_int, *const *const c_char, *const *const c_char);

unsafe extern "C" {
    // Defined by the linker (GNU ld and lld) around the executable's `.init_array`.
    static __init_array_start: u8;
    static __init_array_end: u8;
}

/// The address of the `.init_array` slot whose entry is running now (0: none), and the
/// arguments the loader passed to it.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static ARGC: AtomicI32 = AtomicI32::new(0);
static ARGV: AtomicPtr<*const c_char> = AtomicPtr::new(std::ptr::null_mut());
static ENVP: AtomicPtr<*const c_char> = AtomicPtr::new(std::ptr::null_mut());

/// Set by the entry that `#[multiproc::main]` places: `init()` is the first statement of
/// this program's `main`.
static MAIN_DISPATCHES: AtomicBool = AtomicBool::new(false);

/// Says that this program's `main` opens with `init()` (called by the `.init_array` entry
/// that `#[multiproc::main]` places, before any of ours): a spawned child then dispatches
/// from there, in a normal runtime.
pub fn main_dispatches() {
    MAIN_DISPATCHES.store(true, Ordering::Relaxed);
}

/// Whether a spawned child should leave its dispatch to the `init()` that opens `main`:
/// the program said `main` opens with it, and the loader is still running constructors (so
/// std's runtime start-up and `main` are still to come).
pub(crate) fn dispatch_from_main() -> bool {
    MAIN_DISPATCHES.load(Ordering::Relaxed) && in_constructors()
}

/// Whether the loader is running one of our `.init_array` entries now (inside
/// [`in_init_array`]): at start-up for the executable, before `main` and before any thread
/// of the program; at `dlopen` for a copy of multiproc inside a library opened at run time
/// (threads may run then, but its addresses are outside the executable, whose calls are
/// refused). Nothing else sets it ([`InitEntry`] is `unsafe` to call).
///
/// `MULTIPROC_BOOT` is trusted as the parent's word while this holds, which rests on no
/// code of the program running inside our entries: `test_support!` and
/// `#[multiproc::main]` take their `child_init` as a constant for that reason.
pub(crate) fn in_constructors() -> bool {
    RUNNING.load(Ordering::Relaxed) != 0
}

/// Runs `f` as the body of the `.init_array` entry stored at `slot`, called by the loader
/// with `argc`, `argv` and `envp`: `finish_constructors` called inside `f` knows where
/// the loader is.
///
/// # Safety
///
/// Call it only from the function stored at `slot`, an entry of the executable's
/// `.init_array`, while the loader calls it, with the arguments the loader passed: a
/// process that then never returns will call the entries after `slot`, which must not
/// have run.
pub unsafe fn in_init_array(
    slot: &'static InitEntry,
    argc: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
    f: impl FnOnce(),
) {
    let previous = RUNNING.swap(std::ptr::from_ref(slot) as usize, Ordering::Relaxed);
    ARGC.store(argc, Ordering::Relaxed);
    ARGV.store(argv.cast_mut(), Ordering::Relaxed);
    ENVP.store(envp.cast_mut(), Ordering::Relaxed);
    f();
    RUNNING.store(previous, Ordering::Relaxed);
}

/// In a process that will never return to the loader (a spawned child, a fork server
/// forked from an `.init_array` entry): calls the `.init_array` entries after the running
/// one, as the loader would have, once. Does nothing outside an entry (after `main`
/// started, every entry has run).
pub(crate) fn finish_constructors() {
    let slot = RUNNING.swap(0, Ordering::Relaxed);
    if slot == 0 {
        return;
    }
    let (start, end) = (&raw const __init_array_start as usize, &raw const __init_array_end as usize);
    let size = std::mem::size_of::<InitEntry>();
    if !(start..end).contains(&slot) || !(slot - start).is_multiple_of(size) {
        return;
    }
    let (argc, argv, envp) = (ARGC.load(Ordering::Relaxed), ARGV.load(Ordering::Relaxed), ENVP.load(Ordering::Relaxed));
    let mut next = slot + size;
    while next < end {
        // SAFETY: `next` is an aligned slot strictly inside the executable's `.init_array`
        // (between the linker's bounds, a whole number of entries after a slot checked to
        // be in it), which holds function pointers the loader would call with exactly
        // these arguments (0 and -1 are legacy terminators, skipped). The loader is inside
        // the entry at `slot` and this process never returns to it, so none of the entries
        // after it has run or will run elsewhere in this process.
        let raw = unsafe { std::ptr::read(next as *const usize) };
        if raw != 0 && raw != usize::MAX {
            // SAFETY: as above: a constructor of this executable, not run yet, called as the
            // loader would call it, with the loader's arguments.
            unsafe { std::mem::transmute::<usize, InitEntry>(raw)(argc, argv.cast_const(), envp.cast_const()) };
        }
        next += size;
    }
}

extern "C" fn before_main(argc: c_int, argv: *const *const c_char, envp: *const *const c_char) {
    // SAFETY: this is the entry stored in `BEFORE_MAIN`, called by the loader with these
    // arguments.
    unsafe { in_init_array(&BEFORE_MAIN, argc, argv, envp, crate::process::boot::dispatch_if_child) };
}

// Every ELF object's `.init_array` entries run before `main`; `#[used]` keeps the entry in
// the rlib and rustc's synthetic `symbols.o` keeps it through linking.
#[used]
#[unsafe(link_section = ".init_array")]
static BEFORE_MAIN: InitEntry = before_main;
