//! A program with two start-up entries of multiproc's: `test_support!(child_init = …)`'s,
//! whose `init()` runs before `main`, and `#[multiproc::main]`'s, which says that `main`
//! opens with `init()` (so a spawned child waits for that `init()` to dispatch it). rustdoc
//! put both in one binary when it merged doctests (hang48): a spawned child then made a
//! family of its own in the first entry, and could not take its argument from its parent's
//! heap. Its own `main` (`harness = false`): `#[multiproc::main]` goes on `main`.
//!
//! No watchdog thread: `alarm` ends the process (and by the parent-death signal, its
//! children) if it hangs.

use multiproc::{Process, StartMethod, Value};

fn setup() {}
multiproc::test_support!(child_init = setup);

/// Adds one to the parent's value: the argument holds a handle, so the child must take its
/// token from its parent's heap.
fn add_one(value: Value<u64>) -> u64 {
    value.set(value.get() + 1);
    value.get()
}

// `#[multiproc::main]`'s prioritised entry, which it leaves out of a build with `cfg(test)`
// (this one too, though `main` is ours): placed by hand, as the macro places it.
#[used]
#[unsafe(link_section = ".init_array.00500")]
static MAIN_DISPATCHES: extern "C" fn() = {
    extern "C" fn main_dispatches() {
        multiproc::__private::main_dispatches();
    }
    main_dispatches
};

#[multiproc::main]
fn main() {
    // SAFETY: `alarm` only arms a timer; SIGALRM's default action ends the process.
    unsafe { libc::alarm(60) };
    print!("test a_spawned_child_of_a_program_with_two_init_entries_takes_its_argument ... ");
    let value = Value::new(41u64).unwrap();
    let child = Process::new(add_one, value.clone()).start_method(StartMethod::Spawn).start().unwrap();
    assert_eq!(child.join().unwrap(), 42);
    assert_eq!(value.get(), 42);
    println!("ok");
    // SAFETY: as above; 0 disarms it.
    unsafe { libc::alarm(0) };
}
