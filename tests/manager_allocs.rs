//! What a manager call costs its caller in heap allocations: none for a set of small items
//! and one for a get (the answer's bytes), whatever the time it waits
//! for its answer (a wait that looks at the server's state must not allocate
//! at each look). The test process counts its own allocations (a counting global
//! allocator, per thread); the server is another process and is not counted.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use multiproc::Manager;

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(120);

/// Calls measured per case.
const CALLS: u64 = 2000;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call goes to the system allocator with the caller's arguments unchanged;
// the count is a const-initialised thread-local, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Average allocations of this thread per run of `call`, after a warm-up.
fn per_call(mut call: impl FnMut(i64)) -> f64 {
    for i in 0..100 {
        call(i);
    }
    let before = allocations();
    for i in 0..CALLS as i64 {
        call(i);
    }
    (allocations() - before) as f64 / CALLS as f64
}

#[test]
fn a_dict_call_with_small_items_reuses_the_buffers_of_the_last_however_long_it_waits() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let d = manager.dict::<i64, i64>().unwrap();
    // The key's and the value's buffers are the last call's: a set allocates nothing.
    let set = per_call(|i| d.insert(i % 64, i).unwrap());
    // A get allocates the answer's bytes; its decoder reads them in place (no buffer of
    // its own).
    let get = per_call(|i| assert!(d.get(&(i % 64)).unwrap().is_some()));
    eprintln!("allocations per call: set {set:.2}, get {get:.2}");
    assert!(set < 0.01, "a set allocates {set:.2} times per call");
    assert!(get <= 1.0, "a get allocates {get:.2} times per call");
}
