//! Linux: futexes, memfd mappings, unix sockets with `SCM_RIGHTS`, pidfds, `posix_spawn`,
//! `fork` and `PR_SET_PDEATHSIG`.

mod call;
mod early;
mod epoll;
mod futex;
mod mem;
mod overflow;
mod proc;
mod socket;
mod threads;
mod unforked;

pub use call::Stateless;
pub(crate) use call::{
    NotInExecutable, Packed, function_at, function_offset, pack_checked, pack_runner, remake, remake_zero_sized,
    unpack_and_run,
};
pub use early::{InitEntry, in_init_array, main_dispatches};
pub(crate) use early::{dispatch_from_main, finish_constructors, in_constructors};
pub(crate) use epoll::Poller;
pub(crate) use futex::{FutexWait, FutexWaitv, futex_wait, futex_waitv, futex_wake};
pub(crate) use mem::{EmptyFile, FileId, MemFile, SharedMapping, lasting_zeroed};
pub(crate) use overflow::{
    OverflowArming, ROOM_HEAD, ROOM_INLINE, ReportTo, commit_room, page_size, put_room_bytes, report_stack_overflow,
};
pub use proc::allow_fork_with_threads;
pub(crate) use proc::*;
pub(crate) use socket::*;
pub(crate) use threads::{alone_but_for_own_threads, spawn_own};
pub(crate) use unforked::Unforked;

/// `d` as a kernel timeout (`poll`, `epoll_wait`, a futex wait).
fn timespec(d: std::time::Duration) -> rustix::time::Timespec {
    rustix::time::Timespec { tv_sec: d.as_secs().min(i64::MAX as u64) as i64, tv_nsec: d.subsec_nanos() as _ }
}
