//! Processes: [`Process`], the start methods, and the family functions
//! ([`current_process`], [`parent_process`], [`active_children`], [`cpu_count`]).

pub(crate) mod boot;
mod child;
pub(crate) mod family;
mod fork;
mod forkserver;
pub(crate) use forkserver::Zygote;
#[doc(hidden)]
pub use forkserver::fork_server_pid;
mod init;
mod join_async;
mod logging;
pub(crate) mod panics;
mod spawn;
pub(crate) mod spin;
pub(crate) mod tracker;

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use self::boot::{Boot, Outcome};
use self::child::{ChildState, ExitWatch, Link};
pub use self::init::{InitBuilder, builder};
pub use self::join_async::JoinFuture;
pub use self::logging::log_to_stderr;
use crate::codec::{self, Encoded};
use crate::error::{Error, InitError, JoinError, JoinTimeoutError};
use crate::shm::crash::fail_point;
use crate::shm::{Deadline, Heap, Payload};
use crate::sys::{self, Ended, Packed};

/// Sets up the process family. Call it first thing in `main` (or put
/// [`#[multiproc::main]`](crate::main) on `main`).
///
/// In the main process it prepares what children need: the family's shared memory and
/// the fork server, which is forked here, while the program has a single thread. In a
/// child it is never reached: children are recognised before `main` runs, so nothing of
/// `main` ever runs twice.
///
/// # Panics
///
/// When threads were started before it (the fork server could not be forked safely),
/// with a message that names the fix. [`try_init`] returns the error instead.
///
/// # Examples
///
/// ```
/// use multiproc::Process;
///
/// fn main() {
///     multiproc::init();
///     let child = Process::new(|x: u32| x + 1, 41).start().unwrap();
///     assert_eq!(child.join().unwrap(), 42);
/// }
/// ```
#[track_caller]
pub fn init() {
    if let Err(e) = try_init() {
        panic!("{e}");
    }
}

/// Like [`init`], returning the error instead of panicking.
///
/// # Examples
///
/// ```
/// multiproc::try_init().expect("called first thing in main");
/// ```
pub fn try_init() -> Result<(), InitError> {
    family::init()
}

/// How a child process is created.
///
/// | method | how | start-up | threads in the parent |
/// |---|---|---|---|
/// | `ForkServer` (default) | a clean single-threaded server, forked at [`init`], forks the child | fast | safe |
/// | `Spawn` | a fresh run of the current binary | slowest | safe |
/// | `Fork` | a copy of the calling process | fastest | refused, unless [`allow_fork_with_threads`](crate::allow_fork_with_threads) |
///
/// `ForkServer` is the default on Linux (as in Python 3.14): children start nearly as fast
/// as with `Fork`, from a process in which no other thread ever ran, so no lock can be
/// inherited in a locked state. `Fork` copies the caller, threads' locks included, so it is
/// refused with [`Error::ForkWithThreads`] while other threads run, unless the program
/// promises, through the `unsafe` [`allow_fork_with_threads`](crate::allow_fork_with_threads), that no thread then holds
/// a lock the child needs. `Spawn` isolates most and costs an `exec`.
///
/// What a child has of its parent with each method (environment, directory, statics,
/// descriptors, signals, the [`child_init`](InitBuilder::child_init) set-up) is in one
/// table in the [crate docs](crate#start-methods-and-what-a-child-inherits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum StartMethod {
    /// A copy of the calling process.
    ///
    /// The child's copies of the caller's family handles (a `Queue` in a static, a
    /// thread-local or a local variable) keep their objects alive for the child until it
    /// drops them or ends, but they are not counted as holders: most of them it cannot
    /// reach, and counting them would keep every "nobody else holds it" answer from coming
    /// while it runs. So the parent's `get` may answer `Disconnected` although the child
    /// could still `put` through a copy it finds in a static. Pass the handles a child
    /// uses as its argument: those are counted.
    Fork = 1,
    /// A fresh execution of the current binary.
    Spawn = 2,
    /// A fork of the family's fork server.
    ///
    /// The fork server is a single-threaded helper process, forked by `init()`. Killed
    /// (`kill -9`), it is started again by the main process's next `ForkServer` start
    /// (CPython's `ensure_running`; another process's start fails with
    /// [`Error::StartMethodUnavailable`] until then), which then goes on with the new server
    /// (and fails as any start may, say if the new server cannot be spawned): the new server
    /// is spawned (an execution of the program that becomes the server before `main`), never
    /// forked, since the main process may run threads. A start whose request the server had
    /// taken when it died is made again in the main process (up to 4 tries, a moment apart:
    /// the next try starts a new server), and fails with
    /// [`Error::StartMethodUnavailable`] only if every try's server died; the child a dead
    /// server may have forked exits without running its target. In another process, such a
    /// start fails with [`Error::StartMethodUnavailable`].
    ///
    /// A server that is slow to answer (a loaded machine) is waited for, but one that is
    /// stopped (`SIGSTOP`, a debugger) is not: a start fails with
    /// [`Error::StartMethodUnavailable`] and runs nothing. The stopped server is not
    /// replaced (it may be stopped on purpose): once continued (`SIGCONT`), starts work
    /// again.
    ForkServer = 3,
}

impl StartMethod {
    pub(crate) fn platform_default() -> Self {
        StartMethod::ForkServer
    }

    pub(crate) fn from_u8(n: u8) -> Self {
        match n {
            1 => StartMethod::Fork,
            2 => StartMethod::Spawn,
            _ => StartMethod::ForkServer,
        }
    }

    /// Python's name of the method (`"fork"`, `"spawn"`, `"forkserver"`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::StartMethod;
    ///
    /// assert_eq!(StartMethod::ForkServer.name(), "forkserver");
    /// let names: Vec<_> = multiproc::get_all_start_methods().iter().map(|m| m.name()).collect();
    /// assert!(names.contains(&"spawn"));
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
        }
    }
}

/// The start methods available here, the default first.
///
/// # Examples
///
/// ```
/// use multiproc::{StartMethod, get_all_start_methods};
/// assert_eq!(get_all_start_methods()[0], StartMethod::ForkServer);
/// ```
pub fn get_all_start_methods() -> Vec<StartMethod> {
    vec![StartMethod::ForkServer, StartMethod::Spawn, StartMethod::Fork]
}

/// Sets the start method of this process's children, once (Python's
/// `set_start_method`). Setting it again to another method is an error; see
/// [`force_start_method`].
///
/// # Examples
///
/// ```
/// use multiproc::{StartMethod, set_start_method};
/// set_start_method(StartMethod::Spawn).unwrap();
/// assert!(set_start_method(StartMethod::Fork).is_err());
/// ```
pub fn set_start_method(method: StartMethod) -> Result<(), Error> {
    family::set_method(method, false)
}

/// Sets the start method of this process's children, whatever was set before
/// (Python's `set_start_method(method, force=True)`).
///
/// # Examples
///
/// ```
/// use multiproc::{StartMethod, force_start_method, get_start_method};
/// force_start_method(StartMethod::Fork);
/// assert_eq!(get_start_method(), StartMethod::Fork);
/// ```
pub fn force_start_method(method: StartMethod) {
    let _ = family::set_method(method, true);
}

/// The start method new children get.
///
/// # Examples
///
/// ```
/// println!("children start with {}", multiproc::get_start_method().name());
/// ```
pub fn get_start_method() -> StartMethod {
    family::start_method().ok().or_else(family::chosen_method).unwrap_or_else(StartMethod::platform_default)
}

/// The number of CPUs this process may use: its affinity mask and cgroup CPU quota
/// count, not only the machine's CPUs (Python 3.13's `process_cpu_count`).
///
/// # Examples
///
/// ```
/// assert!(multiproc::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The Python subclass style: a value that carries its arguments and knows how to run.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Process, Run};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct SendMail { to: String }
///
/// impl Run for SendMail {
///     type Output = ();
///     fn run(self) { println!("mail sent to {}", self.to) }
/// }
///
/// # multiproc::init();
/// Process::from_run(SendMail { to: "ann@example.com".into() }).start()?.join()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub trait Run: Serialize + DeserializeOwned + 'static {
    /// What `run` returns to the parent.
    type Output: Serialize + DeserializeOwned + 'static;

    /// The work, done in the child.
    fn run(self) -> Self::Output;
}

fn run_object<T: Run>(task: T) -> T::Output {
    task.run()
}

/// What a [`Process`] runs: a function or a closure that captures nothing, of one argument
/// (`Args` = `A` for `fn(A) -> R`) or of several, up to six (`Args` = `(A, B)` for
/// `fn(A, B) -> R`, ...), or a function pointer `fn(A) -> R` (one chosen at run time, say).
/// `Marker` is the function's signature, which lets the compiler tell one argument from
/// several; it is inferred. Implemented for every such function; not meant to be
/// implemented.
///
/// A function or a closure that captures nothing is rebuilt in the child from its type; a
/// function pointer is a value, which crosses as its address, checked against the
/// executable (a function of a shared library is refused with
/// [`Error::NotInExecutable`](crate::Error::NotInExecutable) when the process starts).
///
/// A closure must capture nothing: zero-sized values it captures (which keep it
/// zero-sized, so nothing can refuse it) are made again in the child, where they were
/// never made. Never capture a proof token (a CPU-feature token, an "initialised" marker):
/// make the proof again in the target.
///
/// # Examples
///
/// ```
/// use multiproc::Target;
///
/// fn add(a: u32, b: u32) -> u32 {
///     a + b
/// }
///
/// fn takes_target<Args, M, F: Target<Args, M>>(_: F, _: Args) {}
/// takes_target(add, (2, 3)); // several arguments: a tuple
/// takes_target(|x: u32| x + 1, 2); // one argument: itself
/// let chosen: fn(u32) -> u32 = if add(1, 1) == 2 { |x| x + 1 } else { |x| x - 1 };
/// takes_target(chosen, 2); // a function pointer
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a process target for the arguments `{Args}`",
    label = "not a function of `{Args}` that can run in another process",
    note = "a target is a function, a function pointer of one argument or a closure that captures nothing; several arguments travel as a tuple: `Process::new(f, (a, b))` for `fn f(a: A, b: B)`",
    note = "arguments cross a process boundary: they are owned serde types (take a `String`, not a `&str`)"
)]
pub trait Target<Args, Marker>: Copy + 'static {
    /// What the target returns.
    type Output;

    /// Calls the target with `args` unpacked.
    #[doc(hidden)]
    fn call_with(self, args: Args) -> Self::Output;

    /// The target, from its type alone (it has no state); `None` for a function pointer,
    /// which is a value its type does not give.
    #[doc(hidden)]
    fn remade() -> Option<Self>;
}

impl<F, A, R> Target<A, fn(A) -> R> for F
where
    F: Fn(A) -> R + Copy + 'static,
{
    type Output = R;

    fn call_with(self, args: A) -> R {
        self(args)
    }

    fn remade() -> Option<Self> {
        sys::remake_zero_sized::<(A,), F>()
    }
}

macro_rules! target {
    ($($arg:ident),+) => {
        impl<F, R, $($arg),+> Target<($($arg,)+), fn($($arg),+) -> R> for F
        where
            F: Fn($($arg),+) -> R + Copy + 'static,
        {
            type Output = R;

            #[allow(non_snake_case)]
            fn call_with(self, ($($arg,)+): ($($arg,)+)) -> R {
                self($($arg),+)
            }

            fn remade() -> Option<Self> {
                Some(sys::remake::<($($arg,)+), F>())
            }
        }
    };
}

target!(A, B);
target!(A, B, C);
target!(A, B, C, D);
target!(A, B, C, D, E);
target!(A, B, C, D, E, G);

fn no_target() {}

/// How a target crosses a process boundary: a function pointer `fn(A) -> R` (a value its
/// type does not give) by its address, returned here; anything else by its type alone
/// (`None`), which it must then be zero-sized to be remade from (`what` names the target
/// in the panic otherwise). `Process::new` and `Pool::apply` decide so.
#[track_caller]
pub(crate) fn as_pointer<A: 'static, M, F>(target: &F, what: &str) -> Option<fn(A) -> F::Output>
where
    F: Target<A, M, Output: 'static>,
{
    if let Some(&pointer) = (target as &dyn std::any::Any).downcast_ref::<fn(A) -> F::Output>() {
        return Some(pointer);
    }
    assert!(
        std::mem::size_of::<F>() == 0,
        "{what} must be a function, a function pointer or a closure that captures nothing"
    );
    None
}

/// Runs the stateless target `F` in the child.
fn target_runner<A, M, F>(_: fn(), context: &mut dyn std::any::Any)
where
    A: DeserializeOwned,
    F: Target<A, M>,
    F::Output: Serialize + DeserializeOwned,
{
    let target = F::remade().expect("a function pointer crosses by its address, not by its type");
    boot::runner(|args: A| target.call_with(args), context);
}

/// A process to start: a target function, its arguments, and options.
///
/// The target is a function or a closure that captures nothing ([`Target`]): of one
/// argument, `Process::new(f, a)` calls `f(a)`; of several (up to six),
/// `Process::new(f, (a, b))` calls `f(a, b)`. The arguments and the result are serde types,
/// and may contain multiproc handles (queues, locks, values, ...), which the child then
/// shares with the parent.
///
/// Arguments cross a process boundary, so they are owned: a target `fn greet(name: &str)`
/// does not compile (the compiler says "implementation of `Deserialize` is not general
/// enough", meaning the argument borrows): take a `String` (a `Vec<T>` for `&[T]`).
///
/// ```compile_fail
/// fn greet(name: &str) {
///     println!("hello {name}");
/// }
/// multiproc::Process::new(greet, "bob"); // error: the argument borrows
/// ```
///
/// # Examples
///
/// ```no_run
/// use multiproc::Process;
///
/// fn greet(name: String) -> usize {
///     println!("hello {name}");
///     name.len()
/// }
///
/// multiproc::init();
/// let handle = Process::new(greet, "bob".to_string()).name("greeter").start()?;
/// assert_eq!(handle.join()?, 3);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "a Process does nothing until started"]
pub struct Process<A, R> {
    /// The target and its runner, packed for the child; `Err` for a target outside the
    /// executable.
    packed: Result<Packed, sys::NotInExecutable>,
    args: A,
    _result: PhantomData<fn() -> R>,
    name: Option<String>,
    daemon: bool,
    may_have_children: bool,
    method: Option<StartMethod>,
    /// A `Fork` pool's zygote, which forks this process (`Pool`'s workers).
    zygote: Option<Arc<Zygote>>,
}

impl<A, R> fmt::Debug for Process<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("start_method", &self.method)
            .finish_non_exhaustive()
    }
}

impl<A, R> Process<A, R>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    /// A process that will run `target(args)`, or `target(a, b, ...)` for `args` =
    /// `(a, b, ...)` and a target of several arguments.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::Process;
    ///
    /// fn greet(name: String, times: usize) -> String {
    ///     format!("hello {name}").repeat(times)
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(greet, ("bob".to_string(), 2)).start()?;
    /// assert_eq!(child.join()?, "hello bobhello bob");
    /// let square = Process::new(|x: u64| x * x, 7).start()?;
    /// assert_eq!(square.join()?, 49);
    /// let pick: fn(u64) -> u64 = if std::env::args().count() > 5 { |x| x + 1 } else { |x| x * 2 };
    /// assert_eq!(Process::new(pick, 7).start()?.join()?, 14);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// A closure must capture nothing; zero-sized values it captures are made again in the
    /// child: never capture a proof token (see [`Target`]).
    ///
    /// # Panics
    ///
    /// When `target` is a closure that captures exactly a pointer's worth of `Copy` state
    /// (such as a `u64`): it cannot be rebuilt in the child. A closure that captures
    /// anything else but zero-sized values does not compile.
    #[track_caller]
    pub fn new<F, M>(target: F, args: A) -> Self
    where
        F: Target<A, M, Output = R>,
    {
        let packed = match as_pointer(&target, "a process target") {
            // A value that its type does not give (a pointer chosen at run time, say): it
            // crosses as its address, checked against the executable, and `R`'s runner.
            Some(pointer) => sys::pack_checked(pointer, boot::runner::<A, R>),
            None => sys::pack_checked::<fn()>(no_target, target_runner::<A, M, F>),
        };
        Self {
            packed,
            args,
            _result: PhantomData,
            name: None,
            daemon: false,
            may_have_children: true,
            method: None,
            zygote: None,
        }
    }

    /// Names the process (default `Process-N`, `Process-N:M` for grandchildren...).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    ///
    /// fn my_name(_: ()) -> String {
    ///     multiproc::current_process().name().to_string()
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(my_name, ()).name("worker").start()?;
    /// assert_eq!(child.name(), "worker");
    /// assert_eq!(child.join()?, "worker");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A daemonic process is terminated when its parent's `main` (or target) ends, and may
    /// not start children; a non-daemonic one is waited for.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    ///
    /// fn is_daemon(_: ()) -> bool {
    ///     multiproc::current_process().is_daemon()
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(is_daemon, ()).daemon(true).start()?;
    /// assert!(child.join()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self.may_have_children = !daemon;
        self
    }

    /// A process that `zygote` forks: a copy of its memory (the pool's builder's as of
    /// `build`), started as [`StartMethod::Fork`] (`Pool`'s `Fork` workers).
    pub(crate) fn via_zygote(mut self, zygote: Arc<Zygote>) -> Self {
        self.method = Some(StartMethod::Fork);
        self.zygote = Some(zygote);
        self
    }

    /// A daemonic process that may still start children (pool workers).
    pub(crate) fn daemon_with_children(mut self) -> Self {
        self.daemon = true;
        self.may_have_children = true;
        self
    }

    /// How to create this process (default: [`get_start_method`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Process, StartMethod};
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(square, 4).start_method(StartMethod::Spawn).start()?;
    /// assert_eq!(child.join()?, 16);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Starts the process.
    ///
    /// A `Process` starts once: `start` consumes it, so Python's "cannot start a process
    /// twice" is a compile error here, and so is joining a process that was not started
    /// (only the handle `start` returns can be joined):
    ///
    /// ```compile_fail
    /// # fn work(_: ()) {}
    /// let process = multiproc::Process::new(work, ());
    /// let first = process.start();
    /// let second = process.start(); // error: `process` was moved by the first start
    /// ```
    ///
    /// ```compile_fail
    /// # fn work(_: ()) {}
    /// multiproc::Process::new(work, ()).join(); // error: no `join` before `start`
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::NotInitialized`] without [`init`], [`Error::DaemonicParent`] in a daemonic
    /// process, [`Error::NotInExecutable`] for a target from a shared library,
    /// [`Error::ForkWithThreads`] for [`StartMethod::Fork`] beside other threads, an
    /// encoding error for the argument, or what the OS said (out of processes, out of
    /// descriptors).
    pub fn start(self) -> Result<ProcessHandle<R>, Error> {
        family::config()?;
        let packed = self.packed.map_err(|_| Error::NotInExecutable)?;
        let args = codec::encode(&self.args)?;
        // Its token at once: the handles are counted in flight from the encoding on.
        let (bytes, args) = with_token(args)?;
        // The child gets its own copy; handles in ours are now counted as in flight.
        drop(self.args);
        let result_plan = codec::plan::<R>();
        let child = launch(
            packed,
            (bytes, args, result_plan),
            self.name,
            (self.daemon, self.may_have_children),
            (self.method, self.zygote.as_deref()),
        )?;
        Ok(ProcessHandle { child, _result: PhantomData })
    }
}

impl<T: Run> Process<T, T::Output> {
    /// A process that will call `task.run()` (Python's `Process` subclass with `run`).
    ///
    /// # Examples
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Countdown {
    ///     from: u32,
    /// }
    ///
    /// impl multiproc::Run for Countdown {
    ///     type Output = u32;
    ///     fn run(self) -> u32 {
    ///         (1..=self.from).sum()
    ///     }
    /// }
    ///
    /// multiproc::init();
    /// let total = multiproc::Process::from_run(Countdown { from: 4 }).start()?.join()?;
    /// assert_eq!(total, 10);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn from_run(task: T) -> Self {
        Process::new(run_object::<T>, task)
    }
}

/// The bytes of a child's encoded argument `args`, and what gives back the handles the
/// child does not take ([`child::ChildArgs`]): the argument's token
/// (`shm::receipts::ArgsToken`), made and listed right after the encoding, so that no
/// system call and no wait lies between the handles' counting in flight and the token's
/// listing (our reaper takes a listed token back). A parent killed in between leaked the
/// handles, their counts in flight for ever: the window held the start's reap of ended
/// children, the payload and the surroundings (review32 T4).
///
/// The token is the carrier of the argument's handles (they are counted in its entries of
/// their tables, from which the child takes them) and the argument's undo, in the family
/// heap, sent to the child as one count in flight. Whoever takes that count owns the undo: the child (its death frees the token,
/// undoing what it did not take), or our side (on every return before the child is
/// recorded, when the token is dropped; at the child's reap; our reaper if we die). In a
/// heap too full for it (a few hundred bytes), the child sends its receipts on its boot
/// socket instead (`boot::NOTE_ONLY`) and we keep the undo, for as many as the socket holds
/// before the child would wait for us to read them (else a parent waiting for something
/// else than the child's end would never read them): more, and the start fails.
fn with_token(mut args: Encoded) -> Result<(Vec<u8>, child::ChildArgs), Error> {
    let bytes = std::mem::take(&mut args.bytes);
    if !args.has_handles() {
        return Ok((bytes, child::ChildArgs { undo: None, token: None }));
    }
    if let Some(token) = crate::shm::ArgsToken::new(&args) {
        // The undo is the token's now.
        args.sent();
        return Ok((bytes, child::ChildArgs { undo: None, token: Some(token) }));
    }
    if args.handles() > boot::SOCKET_RECEIPTS {
        return Err(crate::shm::HeapFull::requested(args.handles() * 56).into());
    }
    Ok((bytes, child::ChildArgs { undo: Some(args), token: None }))
}

fn launch(
    packed: Packed,
    (bytes, args, result_plan): (Vec<u8>, child::ChildArgs, codec::Plan),
    name: Option<String>,
    (daemon, may_have_children): (bool, bool),
    (method, zygote): (Option<StartMethod>, Option<&Zygote>),
) -> Result<Arc<ChildState>, Error> {
    let config = family::config()?;
    let parent = family::me();
    if parent.daemon && !parent.may_have_children {
        return Err(Error::DaemonicParent);
    }
    // Reap what ended since (Python does this in start(), too).
    family::active_children();
    let method = match method {
        Some(m) => m,
        None => family::start_method()?,
    };
    // A zygote forks in its own single thread.
    if method == StartMethod::Fork
        && zygote.is_none()
        && let Some(threads) = sys::fork_hazard()
    {
        return Err(Error::ForkWithThreads { threads });
    }
    if method == StartMethod::Spawn && sys::secure_execution() {
        return Err(Error::StartMethodUnavailable(method, sys::SECURE_NO_SPAWN.into()));
    }
    let (mut me, parent) = family::next_child(name);
    me.daemon = daemon;
    me.may_have_children = may_have_children;
    let name = me.name.clone();
    // A fork child reads its argument from its copy of our memory; the others get large
    // arguments through the heap, so that the boot message mostly fits the socket buffer
    // (a long name does not: `send_first`).
    // A zygote's child is a copy of the zygote, not of us: its argument comes as the
    // fork server's do, and its environment is the zygote's (the builder's at `build`).
    let payload =
        if method == StartMethod::Fork && zygote.is_none() { Payload::Inline(bytes) } else { Payload::new(bytes)? };
    let surroundings = boot::surroundings(method)?;
    let handles = args.undo.is_some() || args.token.is_some();
    // A fork-server child whose argument holds no handles (no note, no receipts on a
    // socket) has no boot socket: its boot message goes with the request, and it leaves its
    // outcome in a report room (a heap too full for one: the socket).
    let socketless = !handles;
    let boot = Boot {
        // A fork child has it in its copy of our memory, any other but a spawned one in its
        // copy of its server's (the family's fork server, or a pool's zygote).
        family: (method == StartMethod::Spawn).then(|| config.clone()),
        me,
        parent,
        call: packed,
        args: payload,
        result_plan,
        surroundings,
        child_init: init::child_init(),
        log: logging::asked(),
        receipts: match &args.token {
            Some(token) => token.block(),
            None if handles => boot::NOTE_ONLY,
            None => 0,
        },
        token: args.token.as_ref().map(crate::shm::ArgsToken::wire),
    };
    // Every start method's errors, a child lost with its descriptors included, in one place.
    let started = (move || -> Result<_, LaunchError> {
        Ok(match method {
            StartMethod::Fork if zygote.is_some() => {
                let zygote = zygote.expect("matched");
                let (ours, theirs) = sys::socketpair_stream()?;
                let message = codec::encode_own(&boot)?;
                drop(boot);
                let framed = boot::socket_frame(&[], &message);
                let rest = send_first(ours.as_fd(), &framed, &[])?;
                let started = zygote.request(theirs, ours.as_fd());
                on_socket(ours, (rest, message), started)?
            }
            StartMethod::Fork => {
                let ((pid, pidfd), link, kept) = fork::start(boot)?;
                (pid, pidfd, ExitWatch::Own, link, Some(kept))
            }
            StartMethod::ForkServer => {
                // Made again (the boot message encoded again) while the server died during
                // a try: the next one starts a new server.
                let started = forkserver::retrying(|| forkserver_start(&boot, socketless));
                drop(boot);
                started?
            }
            StartMethod::Spawn => {
                let (ours, theirs) = sys::socketpair_stream()?;
                let message = codec::encode_own(&boot)?;
                drop(boot);
                // A spawned child gets the heap and the resource tracker's pipe.
                let fds: Vec<BorrowedFd<'_>> = std::iter::once(Heap::get().fd()).chain(tracker::fd()).collect();
                // It learns the key of handle seals first (the others inherit it).
                let framed = boot::socket_frame(&Heap::get().seal_key()[..], &message);
                let rest = send_first(ours.as_fd(), &framed, &fds)?;
                let started = spawn::start(theirs).map(|(pid, pidfd)| (pid, pidfd, None, None));
                on_socket(ours, (rest, message), started)?
            }
        })
    })();
    let (pid, pidfd, watch, link, kept) = match started {
        Ok(started) => started,
        // No child took the token: dropped, it is taken back (the undo runs).
        Err(LaunchError::Failed(e) | LaunchError::ServerDied(e)) => return Err(e),
        Err(LaunchError::Lost { own, error, boot, room }) => return Err(lost_child(own, *error, args, boot, room)),
        Err(LaunchError::Reaped(reaped)) => {
            let Reaped { pid, error, link, kept } = *reaped;
            // Fork gives its link, and `on_socket` adds a spawned child's socket (review98
            // L5: a fallback here was dead code, and for a Fork child would have left its
            // fork record naming the dead).
            let link = link.expect("a reaped child's start gives where it reported");
            child::settle_reaped(pid, link, args, kept);
            return Err(error);
        }
    };
    // The argument is with the child now: we keep the token (to take it back at the reap
    // if the child never took it) or, without one, the undo until the child is reaped, to
    // give back the handles it did not take.
    log::debug!("started {name} (pid {pid}, start method {})", method.name());
    let child = Arc::new(ChildState::new(pid, name, daemon, pidfd, watch, (link, args), kept));
    family::register(child.clone());
    Ok(child)
}

/// One try of a fork-server start of `boot` (`socketless`: with no boot socket, its boot
/// message in the request, if it fits and the heap has room for a report room).
fn forkserver_start(
    boot: &Boot,
    socketless: bool,
) -> Result<(u32, OwnedFd, ExitWatch, Link, Option<fork::Kept>), LaunchError> {
    let message = codec::encode_own(boot)?;
    // The length first: a room made for a message that then goes on a socket was made
    // for nothing (review44 L3).
    let inline = socketless && message.bytes.len() <= forkserver::INLINE_BOOT_MAX;
    if let Some(room) = inline.then(crate::shm::ReportRoom::new).and_then(Result::ok) {
        let handles = message.has_handles();
        // A failed start's child, if one was forked, was told to stop before it decodes
        // anything: the message's handles (its blobs) are given back. Not a lost one's (the
        // server answered, and said go).
        let started = forkserver::request(forkserver::Boot::Inline(&message.bytes, room, handles));
        let (pid, pidfd, status, room) = match started {
            Ok(started) => started,
            Err(e) => return Err(not_started(message, e)),
        };
        let room = room.expect("an inline boot message comes with its room");
        // The child waits for this before it decodes its boot message, whose handles (its
        // blobs) go with its state, given back from it once it is dead (as on a socket).
        // Our last touch of the room until the server tells us the child's end: the server
        // takes the room then, and sends its copy ahead of the status (mt81 B1). A child
        // reaped before it (its server's go came first) has its status wait for it.
        crate::shm::crash::crash_point!("process.start.let_go");
        room.go_and_let_go();
        let link = Link::Room(room, handles.then_some(message));
        return Ok((pid, pidfd, status.map_or(ExitWatch::Own, ExitWatch::Server), link, None));
    }
    // Holding handles, or too long to go with the request (a long name: large arguments
    // and surroundings travel through the heap): on a boot socket.
    let (ours, theirs) = sys::socketpair_stream()?;
    let framed = boot::socket_frame(&[], &message);
    let rest = send_first(ours.as_fd(), &framed, &[])?;
    let started = forkserver::request(forkserver::Boot::Socket(theirs, ours.as_fd()));
    on_socket(ours, (rest, message), started)
}

/// Writes what of `framed`, a boot frame (`fds` with its first byte), its socket's buffer
/// takes now, before its child exists, so that the child mostly finds its whole message at
/// once; returns the rest, for [`on_socket`] once the child exists. The message holds the
/// user's name (any length, as Python's): written whole before the start, a frame larger
/// than the buffer (about 200 KB) waited for a reader not yet made, for ever.
fn send_first<'a>(ours: BorrowedFd<'_>, framed: &'a [u8], fds: &[BorrowedFd<'_>]) -> io::Result<&'a [u8]> {
    let sent = sys::send_what_fits(ours, framed, fds)?;
    Ok(&framed[sent..])
}

/// The boot message of a start that gave no child (`error`), written to its socket (its
/// first part, [`send_first`]) or sent with the request: given back (its blobs, dropped)
/// when no child will read it (`Failed`: none was made, or the fork server's, killed before
/// it answered, exits on EOF before it decodes). A `Lost` child in a report room (the fork
/// server's answer lost after its go, the only `Lost` that comes here) may have read it:
/// the message (its blobs) goes with the error, for [`lost_child`] to give back from the
/// dead child or leave to it. A `Lost` child on a boot socket (spawned, or the server's)
/// never had `GO` and cannot have read it: [`on_socket`] kills our own and gives the
/// message back whole (spw82).
fn not_started(message: Encoded, error: LaunchError) -> LaunchError {
    // Every producer of `Lost` (`spawn::start`, `LaunchError::lost`, the fork server's
    // answer) leaves `boot` to this: one that came with it would have `message` dropped
    // below, given back while the child may hold its blobs (review70 L8).
    debug_assert!(!matches!(error, LaunchError::Lost { boot: Some(_), .. }), "a Lost start came with its boot message");
    match error {
        LaunchError::Lost { own, error, boot: None, room } if message.has_handles() => {
            LaunchError::Lost { own, error, boot: Some(Box::new(message.undo_only())), room }
        }
        error => error,
    }
}

/// A child `started` on a boot socket (`ours` is our end; `rest`, what its buffer did not
/// take of the boot frame of `message`): spawned, or forked by the fork server or a zygote.
/// It waits for [`boot::GO`] after its frame, sent once its start went through: one whose
/// server died between its fork and its answer must not run, and none may end before its
/// start has its pidfd (a spawned child reaped by the program first failed its start,
/// spw82). Sent the rest and `GO`, then watched through its pidfd or the server's status
/// pipe.
///
/// A whole frame (and `GO`) queued on the socket is not read yet: a child killed before it
/// reads never decodes `message`, and one killed while it decodes it leaves it half taken.
/// So a message with handles (its blobs) goes with the child's state (`Link::Socket`), and
/// its reap gives back what the dead child did not take (`child::Inner::boot`; review54
/// M1). A child that cannot have the whole frame never decodes it, and it is given back
/// here:
/// - A failed start: as [`not_started`]. A lost one is killed (our own) and its message
///   given back: it never had `GO`.
/// - A send that failed (`ENOBUFS`, crash point `fail:process.boot.rest`) ends our writing:
///   the child reads the end of its socket inside its frame, or before `GO`, and exits
///   without running anything; its join says why (`Link::Unsent`, review46 M1: "its boot
///   message could not be sent whole", a `GO` counted as part of it). (Left
///   open, it waited for the rest for ever, and a fork-server child read `GO` as frame
///   data: review44 M1.)
/// - A child that ended before it had them (its end of the socket closed, or its pidfd
///   readable) keeps its socket, for its join to say how it ended: before (review49 M1),
///   the send stopped there without saying so, the message counted as sent and its blobs
///   leaked.
/// - A child seen stopped (`SIGSTOP`, a debugger) while its socket stays full
///   ([`send_to_child`]) is killed through its pidfd, our own reaped here (the server
///   reaps its own), and the start fails: it held the start for ever (review44 L1).
fn on_socket(
    ours: OwnedFd,
    (rest, message): (&[u8], Encoded),
    started: Result<forkserver::Started, LaunchError>,
) -> Result<(u32, OwnedFd, ExitWatch, Link, Option<fork::Kept>), LaunchError> {
    let (pid, pidfd, status, _) = match started {
        Ok(started) => started,
        // Our own child, dead and reaped before the start could watch it (killed: it
        // waited for `GO`): its socket, and its boot message's blobs, go with it, as with
        // a child that runs (settled as a reap does).
        Err(LaunchError::Reaped(mut reaped)) => {
            reaped.link = Some(Link::Socket(ours, message.has_handles().then_some(message)));
            return Err(LaunchError::Reaped(reaped));
        }
        // A lost child never has `GO` (none goes): it exits at the end of its socket
        // without decoding its message, nothing of its argument its own. Our own is killed
        // and reaped; the server reaps its own (review49 L2: the message, the argument's
        // handles and the server's child's token were kept for it).
        Err(LaunchError::Lost { own, error, boot, room: _ }) => {
            // `not_started` fills it, never a producer (review70 L8): one dropped here would
            // be given back a second time, with `message`.
            debug_assert!(boot.is_none(), "a Lost start came with its boot message");
            if let Some(pid) = own {
                kill_and_settle(pid);
            }
            return Err(LaunchError::Failed(*error));
        }
        Err(e) => return Err(not_started(message, e)),
    };
    let child = (pid, pidfd.as_fd());
    // Only with a rest to send: a child that had its whole frame ran without it (review49
    // L1). Since spw82 no boot-socket child runs before `GO`: the restriction stays,
    // harmless.
    let sent = if !rest.is_empty() && fail_point!("process.boot.rest") {
        Err(Unsent::Failed(io::Error::from_raw_os_error(libc::ENOBUFS)))
    } else {
        send_to_child(ours.as_fd(), rest, child)
    };
    let sent = sent.and_then(|()| send_to_child(ours.as_fd(), &[boot::GO], child));
    let link = match sent {
        // Queued whole, not yet read: the child may still die before it decodes the
        // message, or while it does. Its handles (blobs) go with its state, for its reap
        // to give back what it did not take (review54 M1).
        Ok(()) => Link::Socket(ours, message.has_handles().then_some(message)),
        // It never had the whole frame (or `GO`), so never decoded it; its join says how it
        // ended.
        Err(Unsent::Ended) => Link::Socket(ours, None),
        Err(Unsent::Failed(e)) => {
            let _ = sys::shutdown_write(ours.as_fd());
            Link::Unsent(ours, format!("its boot message could not be sent whole: {e}"))
        }
        Err(Unsent::Stopped) => {
            // Through its pidfd, never its pid: that may be a stranger's once the child was
            // reaped behind our back (a program that ignores `SIGCHLD`, or waits for any
            // child). Our own child (no status pipe) is reaped here; the server reaps its own.
            // Only once killed: a blocking wait for a child that stays stopped never ends
            // (review54 L2; no error is known for our own unreaped child).
            let killed = sys::pidfd_signal(pidfd.as_fd(), libc::SIGKILL).is_ok();
            if killed && status.is_none() && matches!(sys::reap_pidfd(pidfd.as_fd(), true), Ok(Some(_))) {
                settle(pid);
            }
            return Err(LaunchError::Failed(Error::Io(io::Error::other(format!(
                "the child (pid {pid}) stayed stopped (SIGSTOP or a debugger) before it read its boot message; it was killed"
            )))));
        }
    };
    Ok((pid, pidfd, status.map_or(ExitWatch::Own, ExitWatch::Server), link, None))
}

/// Why a boot frame's rest, or `GO`, did not reach its child ([`send_to_child`]).
#[derive(Debug)]
enum Unsent {
    /// The send failed.
    Failed(io::Error),
    /// The child ended first (its end of the socket closed, or its pidfd readable).
    Ended,
    /// The child stayed stopped while its socket was full.
    Stopped,
}

/// Sends `data`, a boot frame's rest or `GO`, on `ours` to the child `pid` (`pidfd`), for as
/// long as it lives (a fork copy of the child's end would keep a plain send waiting for ever
/// once the child died: `GO` too, after a long rest that filled the buffer, review46 M2).
/// While the socket stays full, the child is looked at every
/// [`forkserver::REPLY_CHECK`]: one slow to read is waited for, one stopped at two looks in
/// a row, with nothing read between them, is not (`Unsent::Stopped`). One that ended first
/// is `Unsent::Ended`.
fn send_to_child(ours: BorrowedFd<'_>, data: &[u8], (pid, pidfd): (u32, BorrowedFd<'_>)) -> Result<(), Unsent> {
    let mut looks = forkserver::StopLooks::default();
    let mut stopped = false;
    let mut look = |took: bool| {
        // A child that read since the look before is not "stopped at two looks in a row",
        // whatever that look saw (stopped, continued, stopped again: review49 L4).
        if took {
            looks = forkserver::StopLooks::default();
        }
        match looks.look(pid) {
            forkserver::Look::StaysStopped => {
                stopped = true;
                Err(io::Error::other("stopped"))
            }
            forkserver::Look::Running | forkserver::Look::Stopped => Ok(()),
        }
    };
    match sys::send_while_alive(ours, data, pidfd, (forkserver::REPLY_CHECK, &mut look)) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Unsent::Ended),
        Err(_) if stopped => Err(Unsent::Stopped),
        Err(e) => Err(Unsent::Failed(e)),
    }
}

/// Why a start method gave no child (`forkserver::request`, `spawn::start`).
#[derive(Debug)]
pub(crate) enum LaunchError {
    /// No child was forked.
    Failed(Error),
    /// No child runs, as `Failed`: the fork server the request went to died during it, and
    /// a new one may serve a next try (`forkserver::request`; `forkserver::retrying` makes
    /// it, and gives up with `Failed`).
    ServerDied(Error),
    /// A child exists, or may, and reads its boot message as any child does, but it cannot
    /// be had: its descriptors found no room in this process (`error` is then `EMFILE`),
    /// or the server's answer was lost after the server told it to go. `own` is our own
    /// child's pid (only we can reap it); `None` is the fork server's child. `boot`: its
    /// boot message, if it holds handles (its blobs) and the child may have read it: a room
    /// child's ([`not_started`] puts it here). A child on a boot socket never has `GO` once
    /// lost, so cannot have read it: [`on_socket`] turns its `Lost` into `Failed` and gives
    /// the message back whole (spw82). `room`: our own child's report room (a fork-server
    /// child in a room, forked as our sibling), which no server takes: freed once the child
    /// is killed and reaped ([`lost_child`]; review119 L2: left, it leaked 512 bytes). Boxed,
    /// all three: a start's error stays small.
    Lost { own: Option<u32>, error: Box<Error>, boot: Option<Box<Encoded>>, room: Option<Box<crate::shm::ReportRoom>> },
    /// Our own child ended, and was reaped by the program (a `SIGCHLD` it ignores, its own
    /// wait for any child) before the start could open its pidfd: the start fails with the
    /// error, and the child is settled as dead from what it left (`child::settle_reaped`).
    /// Its death is proven (our child stays ours until it is reaped), so it is not looked
    /// at again by its pid, which may be a stranger's by now (review88 L2).
    Reaped(Box<Reaped>),
}

/// What a [`LaunchError::Reaped`] start leaves to settle.
#[derive(Debug)]
pub(crate) struct Reaped {
    pid: u32,
    error: Error,
    /// Where the child reported (a Fork start's; a Spawn start's boot socket is added by
    /// [`on_socket`]).
    link: Option<Link>,
    kept: Option<fork::Kept>,
}

impl LaunchError {
    /// A child whose descriptors found no room in this process.
    pub(crate) fn lost(own: Option<u32>) -> Self {
        LaunchError::Lost { own, error: Box::new(Error::Io(sys::out_of_descriptors())), boot: None, room: None }
    }

    /// Our own child `pid` was reaped by the program before the start could watch it (see
    /// [`LaunchError::Reaped`]); `link`, where it reported, if known yet.
    pub(crate) fn reaped(pid: u32, why: String, link: Option<Link>, kept: Option<fork::Kept>) -> Self {
        LaunchError::Reaped(Box::new(Reaped { pid, error: Error::Io(io::Error::other(why)), link, kept }))
    }
}

impl<E: Into<Error>> From<E> for LaunchError {
    fn from(e: E) -> Self {
        LaunchError::Failed(e.into())
    }
}

/// A room child whose descriptors never reached us (`error`: we had no room for them, or
/// the server's answer was lost after its go; a lost child on a boot socket never gets
/// here, [`on_socket`] ends it before `GO`): the start fails with `error`, and the child may
/// already hold handles of its argument, and have taken blobs of its boot message (`boot`).
/// Our own child is killed and reaped here, then settled as any dead child
/// (`ChildState::try_reap`): what it listed is let go of, its token taken back, and its
/// boot message's blobs it did not take given back from the dead (review62 L5: they were
/// forgotten, a 64 KB argument's blob leaked). Its report room (`room`: a fork-server child
/// of ours in a room, forked as our sibling, which no server takes) is read as at any reap,
/// the key the child named there given back, and the room freed once its server is done
/// with it (review119 L2: it was left, 512 bytes). The server's child (only when another
/// thread took the room made for the answer), or one of ours that could not be reaped, we
/// cannot wait for: its argument's handles, its boot message and its room stay its own, as
/// those of a child whose handle was dropped.
fn lost_child(
    own: Option<u32>,
    error: Error,
    args: child::ChildArgs,
    boot: Option<Box<Encoded>>,
    room: Option<Box<crate::shm::ReportRoom>>,
) -> Error {
    match (own, room) {
        // A room child has no boot socket, so neither an argument's undo nor a token
        // (`socketless`): settled as a child reaped by the program is, its room read.
        (Some(pid), Some(room)) if kill_and_reap(pid) => {
            child::settle_reaped(pid, Link::Room(*room, boot.map(|boot| *boot)), args, None);
        }
        (Some(pid), None) if kill_and_reap(pid) => {
            settle(pid);
            let child::ChildArgs { undo: args, token } = args;
            // The token taken back if the child never took it (else its death freed it).
            drop(token);
            if let Some(boot) = boot {
                codec::give_back_from_dead(*boot, pid, Vec::new());
            }
            // Receipts on the socket, or none: counted as taken (a leak at worst, never a
            // handle given back twice).
            if let Some(args) = args {
                args.sent();
            }
        }
        (_, room) => {
            let child::ChildArgs { undo: args, token } = args;
            if let Some(args) = args {
                args.sent();
            }
            if let Some(token) = token {
                token.leave();
            }
            if let Some(boot) = boot {
                boot.sent();
            }
            // Still the child's to write.
            if let Some(room) = room {
                room.leave();
            }
        }
    }
    error
}

/// Kills our own child `pid`, whose pidfd we do not have (a lost one), and reaps it, then lets
/// go of what it held, as the reap of any dead child does (`ChildState::try_reap`): every
/// hold it listed. False if it could not be reaped
/// (nothing is let go of then).
fn kill_and_settle(pid: u32) -> bool {
    kill_and_reap(pid) && {
        settle(pid);
        true
    }
}

/// Kills our own child `pid`, whose pidfd we do not have (a lost one), and reaps it, letting
/// go of nothing it held (the caller settles it). False if it could not be reaped.
fn kill_and_reap(pid: u32) -> bool {
    match sys::kill_and_reap_child(pid) {
        Ok(()) => true,
        // No process has the pid: our child (`pid` always names one here) ended and was
        // reaped by the program (a `SIGCHLD` it ignores, its own wait for any child), dead
        // all the same (review85 L2: what it was sent was taken as its own for ever).
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => true,
        Err(_) => false,
    }
}

/// Lets go of what our own child `pid`, reaped, held: every hold it listed. No child
/// settled here has a fork record of ours (a `Fork` start's child is never lost; a
/// zygote's workers are recorded by the zygote): none is ended by its pid alone, which may
/// be a recorded child's now (review85 H2).
fn settle(pid: u32) {
    crate::shm::process_ended(pid);
}

/// A started process: join it for its result, or watch, signal and wait for it.
///
/// Dropping the handle does not stop the process: a non-daemonic process is still joined
/// when the parent's `main` ends, a daemonic one terminated, as in Python. Once it has
/// ended, it stays a zombie until this process's next start or [`active_children`] reaps
/// it (Python's `_cleanup`), or its exit.
///
/// Only the process that started the child acts through the handle. A copy of it in a fork
/// child of that process (through a `static`, a captured clone, a program's own `fork`)
/// touches nothing of the child's, as Python refuses it ("can only join a child process"):
/// its joins fail with [`JoinError::NotAChild`], its [`wait`](Self::wait) panics, its
/// signals fail, [`is_alive`](Self::is_alive) says `false` and
/// [`exitcode`](Self::exitcode) `None` (no child of that process), and its drop does nothing.
#[must_use = "join the process to get its result (dropping the handle lets it run)"]
pub struct ProcessHandle<R> {
    child: Arc<ChildState>,
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for ProcessHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("name", &self.child.name)
            .field("pid", &self.child.pid)
            .field("exitcode", &self.child.exitcode())
            .finish()
    }
}

impl<R: DeserializeOwned> ProcessHandle<R> {
    /// Waits for the process to end and returns what its target returned.
    ///
    /// # Errors
    ///
    /// [`JoinError::Panicked`] with the child's message, location and backtrace;
    /// [`JoinError::Exited`] after `std::process::exit`; [`JoinError::Signaled`] when a
    /// signal killed it; [`JoinError::NotAChild`] in a fork copy of the parent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::{JoinError, Process};
    ///
    /// fn fail(_: ()) { panic!("boom") }
    ///
    /// multiproc::init();
    /// match Process::new(fail, ()).start()?.join() {
    ///     Err(JoinError::Panicked(info)) => assert_eq!(info.message, "boom"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join(self) -> Result<R, JoinError> {
        let ended = self.wait_to_join(Deadline::NEVER)?.expect("an endless wait returns an end");
        self.result(ended)
    }

    /// Like [`ProcessHandle::join`], waiting at most `timeout`. On
    /// [`JoinTimeoutError::Timeout`] the handle comes back, to join again later.
    ///
    /// # Errors
    ///
    /// [`JoinTimeoutError::Timeout`] with the handle while the process runs;
    /// [`JoinTimeoutError::Failed`] with what [`ProcessHandle::join`] would return.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{JoinTimeoutError, Process};
    ///
    /// fn sleep_ms(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(sleep_ms, 300).start()?;
    /// // Still running: the handle comes back.
    /// let child = match child.join_timeout(Duration::from_millis(1)) {
    ///     Err(JoinTimeoutError::Timeout(child)) => child,
    ///     other => panic!("{other:?}"),
    /// };
    /// assert_eq!(child.join_timeout(Duration::from_secs(60)).unwrap(), 300);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join_timeout(self, timeout: Duration) -> Result<R, JoinTimeoutError<R>> {
        match self.wait_to_join(Deadline::after(timeout)) {
            Ok(Some(ended)) => self.result(ended).map_err(JoinTimeoutError::Failed),
            Ok(None) => Err(JoinTimeoutError::Timeout(self)),
            Err(e) => Err(JoinTimeoutError::Failed(e)),
        }
    }

    /// Once the child ended (else `None`), what its `join` would say went wrong, or how it
    /// ended if its target returned (`Exited`, code 0). It takes the outcome, as a `join`
    /// does, through a shared reference: for a handle nobody joins (a pool's worker's); a
    /// `join` after it would find only the exit.
    pub(crate) fn take_failure(&self) -> Option<JoinError> {
        let ended = self.child.ended().ok().flatten()?;
        Some(self.result(ended).err().unwrap_or_else(|| self.ended_as_error(ended)))
    }

    /// How the child ended, as `join` says it of a child that left no outcome.
    fn ended_as_error(&self, ended: Ended) -> JoinError {
        let name = self.child.name.clone();
        match ended {
            Ended::Exited(code) => JoinError::Exited { name, code },
            Ended::Signaled(signal) => JoinError::Signaled { name, signal },
        }
    }

    /// Waits for the child's end until `deadline`; [`JoinError::NotAChild`] at once in a
    /// fork copy of this process, which must not take the child's outcome.
    fn wait_to_join(&self, deadline: Deadline) -> Result<Option<Ended>, JoinError> {
        self.child
            .wait(deadline)
            .map_err(|_| JoinError::NotAChild { name: self.child.name.clone(), pid: self.child.pid })
    }

    fn result(&self, ended: Ended) -> Result<R, JoinError> {
        let name = self.child.name.clone();
        // Every join consumes its handle, so the outcome is taken once.
        match self.child.take_outcome() {
            Some(Outcome::Returned(payload)) => {
                // The handles a decoding that stops part-way did not read are given back.
                let mut read = Vec::new();
                codec::noting_reads(&mut read, || codec::decode(payload.bytes())).map_err(|error| {
                    crate::shm::give_back_unread(payload.bytes(), &read);
                    JoinError::Decode { name, error }
                })
            }
            Some(Outcome::Panicked(info)) => Err(JoinError::Panicked(info)),
            Some(Outcome::Failed(reason)) => Err(JoinError::Failed { name, reason }),
            Some(Outcome::NotEncoded(reason)) => Err(JoinError::ResultNotEncoded { name, reason }),
            Some(Outcome::StackOverflow) => Err(JoinError::StackOverflow { name }),
            None => Err(self.ended_as_error(ended)),
        }
    }
}

impl<R> ProcessHandle<R> {
    /// Waits for the process to end (Python's `join()`); returns its exit code.
    ///
    /// # Panics
    ///
    /// In a fork copy of the process that started the child (see [`ProcessHandle`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(square, 2).start()?;
    /// assert_eq!(child.wait(), 0);
    /// assert_eq!(child.join()?, 4);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait(&self) -> i32 {
        child::exitcode(self.child.wait_here(Deadline::NEVER).expect("an endless wait returns an end"))
    }

    /// Waits at most `timeout` for the process to end; its exit code if it did.
    ///
    /// # Panics
    ///
    /// In a fork copy of the process that started the child (see [`ProcessHandle`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::Process;
    ///
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(nap, 60_000).start()?;
    /// assert_eq!(child.wait_timeout(Duration::from_millis(1)), None);
    /// child.kill()?;
    /// assert_eq!(child.wait_timeout(Duration::from_secs(60)), Some(-9));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Option<i32> {
        self.child.wait_here(Deadline::after(timeout)).map(child::exitcode)
    }

    /// Whether the process is still running.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    ///
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(nap, 60_000).start()?;
    /// assert!(child.is_alive());
    /// child.kill()?;
    /// child.wait();
    /// assert!(!child.is_alive());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        self.child.is_alive()
    }

    /// The process id.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    ///
    /// fn my_pid(_: ()) -> u32 {
    ///     std::process::id()
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(my_pid, ()).start()?;
    /// let pid = child.pid();
    /// assert_eq!(child.join()?, pid);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pid(&self) -> u32 {
        self.child.pid
    }

    /// The process name.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(square, 1).name("squarer").start()?;
    /// assert_eq!(child.name(), "squarer");
    /// child.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.child.name
    }

    /// Whether the process is daemonic.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(square, 1).daemon(true).start()?;
    /// assert!(child.is_daemon());
    /// child.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_daemon(&self) -> bool {
        self.child.daemon
    }

    /// Python's exit code: `None` while running, `0` on success, `N` after
    /// `std::process::exit(N)`, `1` after a panic, `-N` after signal `N`.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    ///
    /// fn exit_with(code: i32) {
    ///     std::process::exit(code);
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(exit_with, 3).start()?;
    /// child.wait();
    /// assert_eq!(child.exitcode(), Some(3));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn exitcode(&self) -> Option<i32> {
        self.child.exitcode()
    }

    /// Asks the process to stop (`SIGTERM`): it ends at once, without unwinding.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    ///
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(nap, 60_000).start()?;
    /// child.terminate()?;
    /// assert_eq!(child.wait(), -15);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn terminate(&self) -> std::io::Result<()> {
        self.child.signal(sys::SIGTERM)
    }

    /// Stops the process at once (`SIGKILL`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    ///
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(nap, 60_000).start()?;
    /// child.kill()?;
    /// assert_eq!(child.wait(), -9);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn kill(&self) -> std::io::Result<()> {
        self.child.signal(sys::SIGKILL)
    }

    /// Sends `SIGINT` (Python 3.14's `interrupt()`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    ///
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(nap, 60_000).start()?;
    /// child.interrupt()?;
    /// assert_eq!(child.wait(), -2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn interrupt(&self) -> std::io::Result<()> {
        self.child.signal(sys::SIGINT)
    }

    /// A descriptor that becomes readable when the process ends (Python's `sentinel`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::fd::AsRawFd;
    /// use multiproc::Process;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(square, 2).start()?;
    /// assert!(child.sentinel().as_raw_fd() >= 0); // poll it with other descriptors
    /// child.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.child.sentinel()
    }

    /// A non-generic view of the process (what [`active_children`] returns).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Process;
    ///
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// multiproc::init();
    /// let child = Process::new(nap, 60_000).start()?;
    /// let view = child.as_child();
    /// assert_eq!(view.pid(), child.pid());
    /// view.kill()?;
    /// assert_eq!(child.wait(), -9);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn as_child(&self) -> ChildProcess {
        ChildProcess { child: self.child.clone() }
    }
}

/// A child process of this one, without its result: what [`active_children`] lists.
///
/// A copy of it in a fork child of this process acts on nothing, as a copied
/// [`ProcessHandle`] does.
#[derive(Clone)]
pub struct ChildProcess {
    child: Arc<ChildState>,
}

impl fmt::Debug for ChildProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildProcess").field("name", &self.child.name).field("pid", &self.child.pid).finish()
    }
}

impl ChildProcess {
    /// The process id.
    ///
    /// # Examples
    ///
    /// ```
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// multiproc::init();
    /// let handle = multiproc::Process::new(nap, 50).start()?;
    /// let child = handle.as_child();
    /// assert_eq!(child.pid(), handle.pid());
    /// # handle.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pid(&self) -> u32 {
        self.child.pid
    }

    /// The process name.
    ///
    /// # Examples
    ///
    /// ```
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// multiproc::init();
    /// let handle = multiproc::Process::new(nap, 50).name("napper").start()?;
    /// assert_eq!(handle.as_child().name(), "napper");
    /// # handle.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.child.name
    }

    /// Whether the process is daemonic.
    ///
    /// # Examples
    ///
    /// ```
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// multiproc::init();
    /// let handle = multiproc::Process::new(nap, 50).daemon(true).start()?;
    /// assert!(handle.as_child().is_daemon());
    /// # handle.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_daemon(&self) -> bool {
        self.child.daemon
    }

    /// Whether the process is still running.
    ///
    /// # Examples
    ///
    /// ```
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// multiproc::init();
    /// let handle = multiproc::Process::new(nap, 60_000).start()?;
    /// let child = handle.as_child();
    /// assert!(child.is_alive());
    /// child.kill()?;
    /// child.wait();
    /// assert!(!child.is_alive());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        self.child.is_alive()
    }

    /// Python's exit code (see [`ProcessHandle::exitcode`]).
    ///
    /// # Examples
    ///
    /// ```
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// multiproc::init();
    /// let handle = multiproc::Process::new(nap, 10).start()?;
    /// let child = handle.as_child();
    /// child.wait();
    /// assert_eq!(child.exitcode(), Some(0));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn exitcode(&self) -> Option<i32> {
        self.child.exitcode()
    }

    /// Waits for the process to end; returns its exit code.
    ///
    /// # Panics
    ///
    /// In a fork copy of the process that started the child (see [`ProcessHandle`]).
    ///
    /// # Examples
    ///
    /// ```
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// multiproc::init();
    /// for child in multiproc::active_children() {
    ///     let code = child.wait();
    ///     println!("{} ended with {code}", child.name());
    /// }
    /// ```
    pub fn wait(&self) -> i32 {
        child::exitcode(self.child.wait_here(Deadline::NEVER).expect("an endless wait returns an end"))
    }

    /// Waits at most `timeout`; the exit code if the process ended.
    ///
    /// # Panics
    ///
    /// In a fork copy of the process that started the child (see [`ProcessHandle`]).
    ///
    /// # Examples
    ///
    /// ```
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// multiproc::init();
    /// let handle = multiproc::Process::new(nap, 60_000).start()?;
    /// let child = handle.as_child();
    /// assert_eq!(child.wait_timeout(std::time::Duration::from_millis(10)), None);
    /// child.kill()?;
    /// assert_eq!(child.wait_timeout(std::time::Duration::from_secs(60)), Some(-9));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Option<i32> {
        self.child.wait_here(Deadline::after(timeout)).map(child::exitcode)
    }

    /// `SIGTERM`.
    ///
    /// # Examples
    ///
    /// ```
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// multiproc::init();
    /// // Stop every child still running (SIGTERM), then wait for them.
    /// for child in multiproc::active_children() {
    ///     child.terminate()?;
    ///     child.wait();
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn terminate(&self) -> std::io::Result<()> {
        self.child.signal(sys::SIGTERM)
    }

    /// `SIGKILL`.
    ///
    /// # Examples
    ///
    /// ```
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// multiproc::init();
    /// let handle = multiproc::Process::new(nap, 60_000).start()?;
    /// handle.as_child().kill()?;
    /// assert_eq!(handle.wait(), -9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kill(&self) -> std::io::Result<()> {
        self.child.signal(sys::SIGKILL)
    }
}

/// The live children of this process. Children that ended are reaped (Python's
/// `active_children()`).
///
/// # Examples
///
/// ```
/// for child in multiproc::active_children() {
///     child.terminate()?;
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn active_children() -> Vec<ChildProcess> {
    // And the report rooms of fork-server starts that failed, left to a child that has
    // ended since.
    crate::shm::free_left_rooms();
    // And the fork server's children of ours whose start failed after their fork.
    forkserver::reap_left_children();
    family::active_children().into_iter().map(|child| ChildProcess { child }).collect()
}

/// This process, as the family knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentProcess {
    name: String,
    pid: u32,
    daemon: bool,
    identity: Vec<u32>,
}

impl CurrentProcess {
    /// `MainProcess`, `Process-1`, `Process-1:2`, or the name it was given.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// assert_eq!(multiproc::current_process().name(), "MainProcess");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// assert_eq!(multiproc::current_process().pid(), std::process::id());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether this process is daemonic.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// assert!(!multiproc::current_process().is_daemon());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// The path of child indices from the main process (empty for it).
    ///
    /// # Examples
    ///
    /// ```
    /// fn identity(_: ()) -> Vec<u32> {
    ///     multiproc::current_process().identity().to_vec()
    /// }
    ///
    /// multiproc::init();
    /// assert!(multiproc::current_process().identity().is_empty());
    /// let first = multiproc::Process::new(identity, ()).start()?.join()?;
    /// assert_eq!(first.len(), 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn identity(&self) -> &[u32] {
        &self.identity
    }
}

/// This process: its name and pid (Python's `current_process()`).
///
/// A panic in a child's target is printed with the process's name in place of the
/// thread's (`process 'Process-1' panicked at src/main.rs:9:5:`). To put the name in log
/// lines, read it in the logger's format; with `env_logger`, Python's
/// `'[%(levelname)s/%(processName)s] %(message)s'` is:
///
/// ```ignore
/// use std::io::Write;
/// env_logger::Builder::from_default_env()
///     .format(|buf, record| {
///         let process = multiproc::current_process();
///         writeln!(buf, "[{}/{}] {}", record.level(), process.name(), record.args())
///     })
///     .init();
/// ```
///
/// and with `tracing`, a span entered for the rest of the process, which `tracing_subscriber`'s
/// `fmt` output shows as `process{name=Process-1}:` on every event of that thread (the
/// one that runs the target; a thread the target starts enters the span again):
///
/// ```ignore
/// let span = tracing::info_span!("process", name = %multiproc::current_process().name());
/// // Never left: dropping the guard at the end of the set-up would leave the span.
/// std::mem::forget(span.entered());
/// ```
///
/// Install either in every child with [`child_init`](InitBuilder::child_init) (it runs
/// on the thread that then runs the target), and in `main`.
///
/// # Examples
///
/// ```
/// multiproc::init();
/// assert_eq!(multiproc::current_process().name(), "MainProcess");
/// eprintln!("[INFO/{}] starting", multiproc::current_process().name());
/// ```
pub fn current_process() -> CurrentProcess {
    let me = family::me();
    CurrentProcess { name: me.name, pid: sys::my_pid(), daemon: me.daemon, identity: me.identity }
}

/// The process that started this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentProcess {
    name: String,
    pid: u32,
    start: u64,
}

impl ParentProcess {
    /// Its name.
    ///
    /// # Examples
    ///
    /// ```
    /// fn parent_name(_: ()) -> Option<String> {
    ///     multiproc::parent_process().map(|p| p.name().to_string())
    /// }
    ///
    /// multiproc::init();
    /// assert_eq!(multiproc::Process::new(parent_name, ()).start()?.join()?.as_deref(), Some("MainProcess"));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    ///
    /// # Examples
    ///
    /// ```
    /// fn parent_pid(_: ()) -> Option<u32> {
    ///     multiproc::parent_process().map(|p| p.pid())
    /// }
    ///
    /// multiproc::init();
    /// assert_eq!(multiproc::Process::new(parent_pid, ()).start()?.join()?, Some(std::process::id()));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it is still running.
    ///
    /// # Examples
    ///
    /// ```
    /// fn parent_alive(_: ()) -> bool {
    ///     multiproc::parent_process().is_some_and(|p| p.is_alive())
    /// }
    ///
    /// multiproc::init();
    /// assert!(multiproc::Process::new(parent_alive, ()).start()?.join()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_alive(&self) -> bool {
        sys::process_alive(self.pid, self.start)
    }
}

/// The parent of this process, `None` in the main process (Python's `parent_process()`).
///
/// # Examples
///
/// ```
/// multiproc::init();
/// assert!(multiproc::parent_process().is_none());
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    family::state().parent.clone().map(|p| ParentProcess { name: p.name, pid: p.pid, start: p.start })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{KilledOnDrop, watchdog};
    use std::time::{Duration, Instant};

    /// How long these tests may take before their watchdog aborts them.
    const LIMIT: Duration = Duration::from_secs(30);

    /// A child that ended before it read what was sent to it, while a copy of its end of the
    /// socket stays open (here ours; a fork of ours in the field), is `Unsent::Ended`: its
    /// pidfd says so. Before (review49 M1), the send returned as if all went.
    #[test]
    fn a_send_to_a_child_that_ended_first_says_so() {
        let _w = watchdog(LIMIT);
        let (ours, theirs) = sys::socketpair_stream().unwrap();
        let child = KilledOnDrop::spawn("true", &[]);
        let pidfd = sys::pidfd_open(child.0.id()).unwrap();
        let sent = send_to_child(ours.as_fd(), &vec![0u8; 1 << 20], (child.0.id(), pidfd.as_fd()));
        assert!(matches!(sent, Err(Unsent::Ended)), "{sent:?}");
        drop(theirs);
    }

    /// A child seen stopped at every look, but whose socket is read between the looks (here
    /// by a thread of ours, 64 KB every 10 ms; in the field, a child stopped and continued
    /// under a tracer), is waited for. Before (review49 L4), two looks in a row that saw it
    /// stopped gave it up, reading or not.
    #[test]
    fn a_child_that_reads_between_looks_that_see_it_stopped_is_waited_for() {
        let _w = watchdog(LIMIT);
        // A reader late by a whole look interval (a loaded machine) lets the child be given
        // up rightly: such a round proves nothing, and another is tried.
        for _ in 0..10 {
            match send_while_read_every_10_ms() {
                Ok(()) => return,
                Err(late) if late >= forkserver::REPLY_CHECK => {
                    eprintln!("the reader was late by {late:?}: a look rightly saw no read; again");
                }
                Err(late) => panic!("given up while read (at most {late:?} between reads)"),
            }
        }
        eprintln!("the reader was late in every round: nothing shown");
    }

    /// Sends 4 MB to a stopped child's socket while a thread reads it, 64 KB every 10 ms:
    /// `Ok` once sent, or the longest time with no read (from the send's start to its end)
    /// if the child was given up as stopped.
    fn send_while_read_every_10_ms() -> Result<(), Duration> {
        let (ours, theirs) = sys::socketpair_stream().unwrap();
        let child = KilledOnDrop::spawn("sleep", &["60"]);
        let pidfd = sys::pidfd_open(child.0.id()).unwrap();
        sys::pidfd_signal(pidfd.as_fd(), libc::SIGSTOP).unwrap();
        while !matches!(forkserver::StopLooks::default().look(child.0.id()), forkserver::Look::Stopped) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let data = vec![0u8; 4 << 20];
        let start = Instant::now();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            let mut reads = Vec::new();
            while rustix::io::read(&theirs, &mut buf).unwrap() > 0 {
                reads.push(Instant::now());
                std::thread::sleep(Duration::from_millis(10));
            }
            reads
        });
        let sent = send_to_child(ours.as_fd(), &data, (child.0.id(), pidfd.as_fd()));
        let end = Instant::now();
        drop(ours);
        let mut reads = reader.join().unwrap();
        match sent {
            Ok(()) => Ok(()),
            Err(Unsent::Stopped) => {
                reads.retain(|&at| at <= end);
                let times = std::iter::once(start).chain(reads).chain(std::iter::once(end)).collect::<Vec<_>>();
                Err(times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default())
            }
            Err(e) => panic!("{e:?}"),
        }
    }

    /// A lost child's kill (`kill_and_settle`) touches no process that is not our child:
    /// one reaped by the program's own `waitpid` may have left its pid to a stranger. Here
    /// the stranger is a grandchild (a shell's `sleep`), whose pid was given as if lost.
    /// Before (audp61), the stranger was killed by pid.
    #[test]
    fn a_lost_childs_kill_spares_a_process_that_is_not_our_child() {
        let _w = watchdog(LIMIT);
        let mut command = std::process::Command::new("sh");
        command.args(["-c", "sleep 60 & echo $!; wait"]).stdout(std::process::Stdio::piped());
        let mut shell = KilledOnDrop(sys::spawn_dying_with_parent(&mut command).unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(shell.0.stdout.take().unwrap()), &mut line).unwrap();
        let stranger: u32 = line.trim().parse().unwrap();
        let pidfd = sys::pidfd_open(stranger).unwrap();
        assert!(!kill_and_settle(stranger));
        // A kill lands in microseconds: a while without an end is no kill.
        let ended = sys::poll_readable(&[pidfd.as_fd()], Some(Duration::from_millis(200))).unwrap()[0];
        assert!(!ended, "the stranger {stranger} was killed");
        sys::signal_pid(stranger, libc::SIGKILL).unwrap();
        // Our own child is killed and reaped (its handle is forgotten: reaped, its pid is
        // nobody's to signal).
        let own = KilledOnDrop::spawn("sleep", &["60"]);
        let pid = own.0.id();
        std::mem::forget(own);
        assert!(kill_and_settle(pid));
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
