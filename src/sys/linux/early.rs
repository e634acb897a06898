//! The moment before `main`: a child of the family is recognised and dispatched here, so
//! the program's `main` never runs in it, wherever the program calls `multiproc::init()`.
//!
//! This is the one place where `sys` calls up into `process`: the loader hands control to
//! us through `.init_array`, and deciding what a child runs is the process layer's job.

extern "C" fn before_main() {
    crate::process::boot::dispatch_if_child();
}

// Every ELF object's `.init_array` entries run before `main`; `#[used]` keeps the entry in
// the rlib and rustc's synthetic `symbols.o` keeps it through linking.
#[used]
#[unsafe(link_section = ".init_array")]
static BEFORE_MAIN: extern "C" fn() = before_main;
