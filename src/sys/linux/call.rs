//! Calling a function of this binary in another process of the family.
//!
//! Every process of a family runs the same executable (spawned children re-execute
//! `/proc/self/exe`, fork-server and fork children are copies), so a function is named by
//! its distance from an anchor function of this crate. Address-space layout randomisation
//! moves the whole image, never the distances. The executable's identity travels along and
//! is compared before anything is called, so a mismatch is an error, not a jump into the
//! unknown.
//!
//! Distances from the anchor mean the same in another process only for code of the
//! anchor's own image, the main executable. A function of a shared library (a program
//! built with `-C prefer-dynamic`, a library opened with `dlopen`) lies elsewhere, at an
//! address the loader chose for this process alone. So [`pack`] looks where each address
//! lies: [`pack_checked`] refuses a function outside the executable with
//! [`NotInExecutable`], and a `Packed` that [`pack`] made of one is marked so that
//! [`unpack_and_run`] refuses it instead of calling it.

use std::any::Any;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// A target function and the runner that knows its types, as offsets into this binary.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Packed {
    identity: u64,
    /// Every address lies in the executable's image (see the module docs).
    in_executable: bool,
    shim: u64,
    target: u64,
    runner: u64,
}

/// The runner of a target: decodes its arguments from the context, calls it, stores the
/// outcome in the context. It is monomorphised for the target's type, which is how the
/// child learns it.
pub(crate) type Runner<F> = fn(F, &mut dyn Any);

/// A function pointer (`fn(A, B) -> R` and the like), which is a code address.
///
/// # Safety
///
/// Implementors are pointer-sized function pointers: `addr` and `from_addr` convert
/// between the pointer and its address without loss.
pub(crate) unsafe trait FnPtr: Copy + 'static {
    /// The code address.
    fn addr(self) -> usize;

    /// The function at `addr`.
    ///
    /// # Safety
    ///
    /// `addr` must be the address of a function of exactly this type.
    unsafe fn from_addr(addr: usize) -> Self;
}

macro_rules! fn_ptr {
    ($($arg:ident),*) => {
        // SAFETY: a function pointer is a code address of pointer size.
        unsafe impl<Ret: 'static, $($arg: 'static),*> FnPtr for fn($($arg),*) -> Ret {
            fn addr(self) -> usize {
                self as usize
            }

            unsafe fn from_addr(addr: usize) -> Self {
                // SAFETY: the caller promises `addr` is a function of this type.
                unsafe { std::mem::transmute::<usize, Self>(addr) }
            }
        }
    };
}

fn_ptr!();
fn_ptr!(A);

/// A callable that carries no state — a function item, or a closure that captures
/// nothing — so any process of the family can make it again from its type alone.
///
/// **A closure must capture nothing.** Rust cannot tell a closure that captures nothing
/// from one that captures only zero-sized `Copy` values: both are zero-sized callables,
/// and both qualify. The values such a closure captured are made again in the other
/// process, where they were never made: never capture a proof token (a zero-sized value
/// whose existence proves something, such as a CPU-feature token or an "initialised"
/// marker that `unsafe` code relies on). Make the proof again in the target instead (audit
/// F3).
///
/// # Safety
///
/// Only callables (types implementing `Fn`) qualify: they hold no invariants beyond their
/// type, so a zero-sized one may be conjured, with one exception the type system cannot
/// express: the zero-sized values a closure captured are conjured with it. Callers of the
/// public APIs are told so (above, [`Target`](crate::Target), `Process::new` and `Pool`).
/// The blanket implementations below are the only ones.
///
/// Public only so that `Pool::starmap` can name it; it is not meant to be implemented.
pub unsafe trait Stateless<Args>: Copy + 'static {}

macro_rules! stateless {
    ($($arg:ident),*) => {
        // SAFETY: `F` is a callable (it implements `Fn`); see the trait's contract.
        unsafe impl<F, Ret, $($arg),*> Stateless<($($arg,)*)> for F where F: Fn($($arg),*) -> Ret + Copy + 'static {}
    };
}

stateless!();
stateless!(A);
stateless!(A, B);
stateless!(A, B, C);
stateless!(A, B, C, D);
stateless!(A, B, C, D, E);
stateless!(A, B, C, D, E, G);

/// Makes the callable `F` from its type alone. A callable with state (a closure that
/// captures something) does not compile: it cannot travel to another process this way.
pub(crate) fn remake<Args, F: Stateless<Args>>() -> F {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a process target or a pool's function must be a function or a closure that captures nothing"
        )
    };
    // SAFETY: `F` is zero-sized (asserted at compile time) and a stateless callable
    // (`Stateless`), so it has exactly one value, which reading from any aligned pointer
    // produces.
    unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() }
}

/// Like [`remake`] for a callable that may also be a function pointer (which
/// `Process::new` sends by its address instead): the callable if it is zero-sized, `None`
/// for a pointer-sized one. A callable of any other size carries state and does not
/// compile.
pub(crate) fn remake_zero_sized<Args, F: Stateless<Args>>() -> Option<F> {
    const {
        assert!(
            std::mem::size_of::<F>() == 0 || std::mem::size_of::<F>() == std::mem::size_of::<fn()>(),
            "a process target must be a function, a function pointer or a closure that captures nothing"
        )
    };
    if std::mem::size_of::<F>() == 0 {
        // SAFETY: as in `remake`: `F` is zero-sized (just checked) and a stateless
        // callable, so it has exactly one value.
        Some(unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() })
    } else {
        None
    }
}

fn no_target() {}

/// Packs a runner that knows its target by type (see [`remake`]); it is called with a
/// placeholder target.
pub(crate) fn pack_runner(runner: Runner<fn()>) -> Packed {
    pack::<fn()>(no_target, runner)
}
fn_ptr!(A, B);
fn_ptr!(A, B, C);
fn_ptr!(A, B, C, D);
fn_ptr!(A, B, C, D, E);
fn_ptr!(A, B, C, D, E, G);

#[inline(never)]
fn anchor() {}

fn anchor_address() -> usize {
    anchor as fn() as usize
}

/// The running executable's identity, which [`unpack_and_run`] checks (worked out once per
/// process, and inherited by its forks).
pub(crate) fn identity() -> u64 {
    static IDENTITY: OnceLock<u64> = OnceLock::new();
    *IDENTITY.get_or_init(super::proc::executable_identity)
}

fn offset(address: usize) -> u64 {
    address.wrapping_sub(anchor_address()) as u64
}

fn address(offset: u64) -> usize {
    anchor_address().wrapping_add(offset as usize)
}

impl Packed {
    /// What names the call, as numbers: for a keyed seal over a `Packed` that travels in
    /// bytes a program can write (a barrier's action), since [`unpack_and_run`] trusts its
    /// offsets once the executable's identity matches.
    pub(crate) fn words(&self) -> [u64; 5] {
        [self.identity, u64::from(self.in_executable), self.shim, self.target, self.runner]
    }

    /// The same functions, for this process's executable: for a `Packed` made on another
    /// machine by a program whose build identity ([`super::proc::build_identity`]) the
    /// caller checked to equal this one's (the per-file identity differs across machines).
    ///
    /// # Safety
    ///
    /// `self` was made by [`pack`] in a program of that build and has come here unchanged
    /// (the cluster task that carried it is authentic): [`unpack_and_run`] will call its
    /// offsets, and the identity this puts in was the only check left on them.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) unsafe fn for_this_executable(mut self) -> Packed {
        self.identity = identity();
        self
    }
}

/// Packs `target` with its `runner` for a call in another process of the family. A
/// function outside the executable makes a `Packed` that [`unpack_and_run`] refuses.
pub(crate) fn pack<F: FnPtr>(target: F, runner: Runner<F>) -> Packed {
    let shim = shim::<F> as fn(usize, usize, &mut dyn Any) as usize;
    let (target, runner) = (target.addr(), runner as usize);
    Packed {
        identity: identity(),
        in_executable: [shim, target, runner].into_iter().all(in_executable),
        shim: offset(shim),
        target: offset(target),
        runner: offset(runner),
    }
}

/// Where `f` lies, as a distance another process of the family can call it by
/// ([`function_at`]); `None` for a function outside the executable (see the module docs).
pub(crate) fn function_offset<F: FnPtr>(f: F) -> Option<u64> {
    let address = f.addr();
    in_executable(address).then(|| offset(address))
}

/// The function that [`function_offset`] named in another process of the family.
///
/// # Safety
///
/// `offset` was returned by `function_offset::<F>` in a process of this family (which runs
/// this very executable), for a function of exactly the type `F`.
pub(crate) unsafe fn function_at<F: FnPtr>(offset: u64) -> F {
    // SAFETY: the caller's contract: the same executable, whose image the loader placed as
    // one block here as there, so the distance leads to the same function of type `F`.
    unsafe { F::from_addr(address(offset)) }
}

/// A function that is not part of the executable's image, so that another process of the
/// family cannot locate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotInExecutable;

/// Like [`pack`], refusing a function outside the executable.
pub(crate) fn pack_checked<F: FnPtr>(target: F, runner: Runner<F>) -> Result<Packed, NotInExecutable> {
    let packed = pack(target, runner);
    if packed.in_executable { Ok(packed) } else { Err(NotInExecutable) }
}

/// The address ranges of the executable's loaded segments, if the anchor lies in them
/// (empty otherwise: multiproc itself was linked into a shared library, and no address
/// then has a meaning another process shares).
fn executable_image() -> &'static [(usize, usize)] {
    static IMAGE: OnceLock<Vec<(usize, usize)>> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let segments = super::proc::main_program_segments();
        let anchor = anchor_address();
        if segments.iter().any(|&(start, end)| (start..end).contains(&anchor)) { segments } else { Vec::new() }
    })
}

fn in_executable(address: usize) -> bool {
    executable_image().iter().any(|&(start, end)| (start..end).contains(&address))
}

/// Restores the typed pointers that [`pack`] took apart and calls the runner.
fn shim<F: FnPtr>(target: usize, runner: usize, context: &mut dyn Any) {
    // SAFETY: `target` and `runner` are the addresses of an `F` and a `Runner<F>` that
    // `pack::<F>` took apart in a process running this very binary (checked in
    // `unpack_and_run`); this shim is the `shim::<F>` of the same `pack`, so the types
    // agree by construction.
    // Both lay in the executable's image when packed (`in_executable`), so the distances
    // lead to the same functions here.
    let (target, runner) = unsafe { (F::from_addr(target), std::mem::transmute::<usize, Runner<F>>(runner)) };
    runner(target, context);
}

/// Why a packed call could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WrongBinary;

/// Calls what `packed` names, in this process, with `context` for the runner. A `Packed`
/// from another executable is refused ([`WrongBinary`]).
///
/// # Safety
///
/// `packed` was made by [`pack`] (or [`pack_checked`], [`pack_runner`]) in a process of this
/// family, and has come here unchanged: over a channel only the crate writes, or with a
/// keyed seal checked before this call (a barrier's action); a cluster task's, with
/// [`Packed::for_this_executable`]'s contract. `Packed` is `Deserialize`: one decoded from
/// bytes anybody else could write names code offsets of their choosing, which this function
/// calls once the executable's identity (a hash, not a secret) matches. A safe
/// `unpack_and_run` let a forged handle choose the code its decoding ran (auds44's F5).
pub(crate) unsafe fn unpack_and_run(packed: Packed, context: &mut dyn Any) -> Result<(), WrongBinary> {
    if packed.identity != identity() || !packed.in_executable {
        return Err(WrongBinary);
    }
    // SAFETY: `pack` made `packed` in this family (the caller's contract), so the offsets
    // are those it recorded; same executable (checked above), and every address `pack`
    // took lies in the executable's image (also checked), which the loader placed as one
    // block here as there, so `address(packed.shim)` is the `shim::<A, R>` that `pack`
    // recorded, whose signature is exactly this one.
    let shim = unsafe { std::mem::transmute::<usize, fn(usize, usize, &mut dyn Any)>(address(packed.shim)) };
    shim(address(packed.target), address(packed.runner), context);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    fn runner(f: fn(u32) -> u32, context: &mut dyn Any) {
        if let Some(slot) = context.downcast_mut::<(u32, Option<u32>)>() {
            slot.1 = Some(f(slot.0));
        }
    }

    #[test]
    fn a_packed_call_runs_in_the_same_binary() {
        let packed = pack(double as fn(u32) -> u32, runner);
        let mut slot: (u32, Option<u32>) = (21, None);
        // SAFETY: packed just now by `pack`.
        unsafe { unpack_and_run(packed, &mut slot) }.unwrap();
        assert_eq!(slot.1, Some(42));
    }

    #[test]
    fn functions_of_the_executable_are_in_it_and_libc_is_not() {
        assert!(pack_checked(double as fn(u32) -> u32, runner).is_ok());
        assert!(in_executable(anchor_address()));
        assert!(!in_executable(libc::getpid as unsafe extern "C" fn() -> libc::pid_t as usize));
    }

    #[test]
    fn a_call_from_another_binary_is_refused_not_run() {
        // Another executable: same offsets, another identity. Nothing may be called.
        let mut packed = pack(double as fn(u32) -> u32, runner);
        packed.identity ^= 1;
        let mut slot: (u32, Option<u32>) = (21, None);
        // SAFETY: the offsets are `pack`'s; only the identity is another (which is checked).
        assert_eq!(unsafe { unpack_and_run(packed, &mut slot) }, Err(WrongBinary));
        assert_eq!(slot.1, None);
    }
}
