//! `init` with options: set-up that runs in every child before its target.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::error::InitError;
use crate::shm::crash::crash_point;
use crate::sys::{self, Packed};

/// The function every child runs before its target, if the program gave one; a child
/// learns it from its boot message and passes it on to its own children.
static CHILD_INIT: Mutex<Option<Packed>> = Mutex::new(None);

/// Whether [`CHILD_INIT`] was ever given a function in this process (or in the one it is a
/// fork of). Until then it holds `None`, and a child that adopts `None` leaves it alone: a
/// fork child that locked it only to write `None` over `None` wrote (copied) its page, one
/// page fault of every child of a program without a `child_init`.
static EVER_SET: AtomicBool = AtomicBool::new(false);

/// What a new child must run first.
pub(crate) fn child_init() -> Option<Packed> {
    let packed = CHILD_INIT.lock().unwrap_or_else(|e| e.into_inner());
    crash_point!("init.child_init.locked");
    *packed
}

/// The family's set-up locked: a `Fork` start holds it across the fork, so that its child
/// (which sets it at boot, in [`adopt_child_init`]) never inherits it taken by another
/// thread. Nothing is locked under it.
pub(crate) fn lock_child_init() -> MutexGuard<'static, Option<Packed>> {
    CHILD_INIT.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child adopts the set-up of its family (at boot).
pub(crate) fn adopt_child_init(packed: Option<Packed>) {
    if packed.is_none() && !EVER_SET.load(Ordering::Acquire) {
        return;
    }
    let mut held = CHILD_INIT.lock().unwrap_or_else(|e| e.into_inner());
    if packed.is_some() {
        EVER_SET.store(true, Ordering::Release);
    }
    *held = packed;
}

/// The runner of a `child_init` function.
pub(crate) fn run_child_init(setup: fn(), _: &mut dyn Any) {
    setup();
}

/// Options of [`init`](crate::init): start one with [`builder`], finish it with
/// [`InitBuilder::init`] or [`InitBuilder::try_init`].
///
/// `#[multiproc::main(child_init = setup)]` is the same as
/// `multiproc::builder().child_init(setup).init()` first in `main`.
#[derive(Debug, Default)]
#[must_use = "call .init() to set up the family"]
pub struct InitBuilder {
    child_init: Option<fn()>,
}

/// Starts the options of [`init`](crate::init).
///
/// # Examples
///
/// ```
/// fn setup() {
///     // e.g. `env_logger::try_init()`, a tracing subscriber, a static
/// }
///
/// fn main() {
///     multiproc::builder().child_init(setup).init();
///     setup(); // the main process runs its own set-up
/// }
/// ```
pub fn builder() -> InitBuilder {
    InitBuilder::default()
}

impl InitBuilder {
    /// A function that runs in every child, of every start method, after the child has
    /// joined the family and before its target (Python's `initializer`, for every process
    /// rather than a pool's): install a logger or a tracing subscriber there, so that
    /// children log as the main process does. It runs in pool workers and a manager's
    /// server too, in grandchildren, and in the pool workers of a worker node (feature
    /// `cluster`). It does not run in the main process: call it there yourself. What else
    /// a child inherits, per start method, is in the
    /// [crate docs](crate#start-methods-and-what-a-child-inherits).
    ///
    /// A fork child starts as a copy of its parent, whose set-up it may already have: use
    /// the `try_` forms of one-time set-ups (`env_logger::try_init`). A panic in it is the
    /// child's panic ([`JoinError::Panicked`](crate::JoinError::Panicked)); the target then
    /// does not run.
    ///
    /// # Examples
    ///
    /// ```
    /// fn setup() {}
    /// multiproc::builder().child_init(setup).init();
    /// ```
    pub fn child_init(mut self, setup: fn()) -> Self {
        self.child_init = Some(setup);
        self
    }

    /// Sets up the family as [`init`](crate::init) does, with these options.
    ///
    /// # Panics
    ///
    /// As [`init`](crate::init), and when the `child_init` function is not part of the
    /// program's executable. [`InitBuilder::try_init`] returns the error instead.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::builder().init();
    /// ```
    #[track_caller]
    pub fn init(self) {
        if let Err(e) = self.try_init() {
            panic!("{e}");
        }
    }

    /// Like [`InitBuilder::init`], returning the error instead of panicking. Called when
    /// the family is already set up (by `init()` or `test_support!`), it changes the
    /// `child_init` of the children started from then on.
    ///
    /// # Examples
    ///
    /// ```
    /// fn setup() {}
    /// multiproc::builder().child_init(setup).try_init().unwrap();
    /// ```
    pub fn try_init(self) -> Result<(), InitError> {
        let packed = match self.child_init {
            Some(setup) => Some(sys::pack_checked(setup, run_child_init).map_err(|_| {
                InitError::Setup("the child_init function lives outside the executable (in a shared library)".into())
            })?),
            None => None,
        };
        // Adopted before the family is set up: a worker node's `init()` serves from
        // there and never returns, and its pool workers need the set-up.
        let before = child_init();
        adopt_child_init(packed);
        super::family::init().inspect_err(|_| adopt_child_init(before))
    }
}
