//! Calling a function of this binary in another process of the family.
//!
//! Every process of a family runs the same executable (spawned children re-execute
//! `/proc/self/exe`, fork-server and fork children are copies), so a function is named by
//! its distance from an anchor function of this crate. Address-space layout randomisation
//! moves the whole image, never the distances. The executable's identity travels along and
//! is compared before anything is called, so a mismatch is an error, not a jump into the
//! unknown.

use std::any::Any;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// A target function and the runner that knows its types, as offsets into this binary.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Packed {
    identity: u64,
    shim: u64,
    target: u64,
    runner: u64,
}

/// The runner of a target: decodes its arguments from the context, calls it, stores the
/// outcome in the context. It is monomorphised for the target's types, which is how the
/// child learns them.
pub(crate) type Runner<A, R> = fn(fn(A) -> R, &mut dyn Any);

#[inline(never)]
fn anchor() {}

fn anchor_address() -> usize {
    anchor as fn() as usize
}

fn identity() -> u64 {
    static IDENTITY: OnceLock<u64> = OnceLock::new();
    *IDENTITY.get_or_init(super::proc::executable_identity)
}

fn offset(address: usize) -> u64 {
    address.wrapping_sub(anchor_address()) as u64
}

fn address(offset: u64) -> usize {
    anchor_address().wrapping_add(offset as usize)
}

/// Packs `target` with its `runner` for a call in another process of the family.
pub(crate) fn pack<A, R>(target: fn(A) -> R, runner: Runner<A, R>) -> Packed {
    Packed {
        identity: identity(),
        shim: offset(shim::<A, R> as fn(usize, usize, &mut dyn Any) as usize),
        target: offset(target as usize),
        runner: offset(runner as usize),
    }
}

/// Restores the typed pointers that [`pack`] took apart and calls the runner.
fn shim<A, R>(target: usize, runner: usize, context: &mut dyn Any) {
    // SAFETY: `target` and `runner` are the addresses of a `fn(A) -> R` and a
    // `Runner<A, R>` that `pack::<A, R>` took apart in a process running this very binary
    // (checked in `unpack_and_run`); this shim is the `shim::<A, R>` of the same `pack`, so
    // the types agree by construction.
    let (target, runner) = unsafe {
        (std::mem::transmute::<usize, fn(A) -> R>(target), std::mem::transmute::<usize, Runner<A, R>>(runner))
    };
    runner(target, context);
}

/// Why a packed call could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WrongBinary;

/// Calls what `packed` names, in this process, with `context` for the runner.
///
/// Sound for any `Packed` made by [`pack`] in a process of the same executable, which is
/// the only source of the family's boot and task messages; a message from another
/// executable is refused.
pub(crate) fn unpack_and_run(packed: Packed, context: &mut dyn Any) -> Result<(), WrongBinary> {
    if packed.identity != identity() {
        return Err(WrongBinary);
    }
    // SAFETY: same executable (checked above), so `address(packed.shim)` is the
    // `shim::<A, R>` that `pack` recorded, whose signature is exactly this one.
    let shim = unsafe { std::mem::transmute::<usize, fn(usize, usize, &mut dyn Any)>(address(packed.shim)) };
    shim(address(packed.target), address(packed.runner), context);
    Ok(())
}
