//! The operating system, and the only `unsafe` code that talks to it.
//!
//! Everything above this module sees safe functions: futex waits, shared mappings,
//! sockets that carry file descriptors, process creation and supervision. The platform is
//! chosen once, here; concept modules never carry `#[cfg(target_os)]`.
#![allow(unsafe_code)]

#[cfg(target_os = "linux")]
#[path = "linux/mod.rs"]
mod os;

#[cfg(not(target_os = "linux"))]
compile_error!("multiproc supports Linux only: it is the platform it is tested on");

pub(crate) use os::*;
pub use os::{InitEntry, Stateless, allow_fork_with_threads, in_init_array, main_dispatches};
