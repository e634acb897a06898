//! What the compiler refuses, proved with `compile_fail` doctests (as rayon does): the
//! `Send`/`Sync` bounds of the guards and handles. Each block fails to compile for the
//! one reason its comment gives; the last block shows what does compile.
//!
//! A guard of a lock owned by a thread (`RLock`, `Condition`, and the manager's `RLock`
//! and `Condition` proxies) stays on that thread: released from another one, the lock
//! would not be released (`RLock::release` from a non-owner is an error).
//!
//! ```compile_fail,E0277
//! fn is_send<T: Send>(_: &T) {}
//! let lock = multiproc::RLock::new().unwrap();
//! is_send(&lock.acquire().unwrap()); // RLockGuard is not Send
//! ```
//!
//! ```compile_fail,E0277
//! fn is_send<T: Send>(_: &T) {}
//! let cond = multiproc::Condition::new().unwrap();
//! is_send(&cond.acquire().unwrap()); // ConditionGuard is not Send
//! ```
//!
//! ```compile_fail,E0277
//! fn is_send<T: Send>(_: &T) {}
//! fn check(lock: &multiproc::RLockProxy) {
//!     is_send(&lock.acquire().unwrap()); // ProxyRLockGuard is not Send
//! }
//! ```
//!
//! ```compile_fail,E0277
//! fn is_send<T: Send>(_: &T) {}
//! fn check(cond: &multiproc::ConditionProxy) {
//!     is_send(&cond.acquire().unwrap()); // ProxyConditionGuard is not Send
//! }
//! ```
//!
//! A guard borrows its handle: it cannot outlive it, so the lock is never released
//! through a freed object.
//!
//! ```compile_fail,E0597
//! let guard;
//! {
//!     let value = multiproc::Value::new(1u32).unwrap();
//!     guard = value.lock(); // `value` does not live long enough
//! }
//! drop(guard);
//! ```
//!
//! ```compile_fail,E0597
//! let guard;
//! {
//!     let array = multiproc::Array::<u8>::new(4).unwrap();
//!     guard = array.lock(); // `array` does not live long enough
//! }
//! drop(guard);
//! ```
//!
//! A process is started once, and joined only once started: `start` takes the `Process`
//! and gives a `ProcessHandle`, the only one with `join` (Python raises at run time for
//! both).
//!
//! ```compile_fail,E0382
//! fn work(x: u32) -> u32 { x }
//! let process = multiproc::Process::new(work, 1);
//! let first = process.start();
//! let second = process.start(); // `process` was moved by the first start
//! ```
//!
//! ```compile_fail,E0599
//! fn work(x: u32) -> u32 { x }
//! let joined = multiproc::Process::new(work, 1).join(); // no `join` before `start`
//! ```
//!
//! Only `ShmSafe` types live in shared memory: a type holding a pointer does not.
//!
//! ```compile_fail,E0277
//! let boxed = multiproc::Value::new(Box::new(1u8)); // Box<u8> is not ShmSafe
//! ```
//!
//! Nor a reference or a function pointer (an address), a tuple (no fixed layout), or a type
//! some bytes of which are no value: a `char`, a `NonZero*` (`Array::new` hands out zeroed
//! elements, `ShmSafe`'s rule 7), an enum (a torn copy mixes two discriminants' bytes).
//!
//! ```compile_fail,E0277
//! static ANSWER: u8 = 42;
//! let _ = multiproc::RawValue::new(&ANSWER); // &'static u8 is not ShmSafe
//! ```
//!
//! ```compile_fail,E0277
//! fn tick() {}
//! let _ = multiproc::Value::new(tick as fn()); // fn() is not ShmSafe
//! ```
//!
//! ```compile_fail,E0277
//! let _ = multiproc::Value::new((1u8, 2u64)); // (u8, u64) is not ShmSafe
//! ```
//!
//! ```compile_fail,E0277
//! let _ = multiproc::Value::new('x'); // char is not ShmSafe
//! ```
//!
//! ```compile_fail,E0277
//! let _ = multiproc::Array::<std::num::NonZeroU8>::new(1); // NonZeroU8 is not ShmSafe
//! ```
//!
//! The derive refuses what the compiler cannot check: an enum, a union, a struct without
//! a fixed layout. Its errors carry no error code (a proc macro's never do), so each
//! block's comment gives the message; the block after them shows that `Loose` with a fixed
//! layout compiles, so nothing else refuses it.
//!
//! ```compile_fail
//! #[derive(Clone, Copy, multiproc::ShmSafe)]
//! #[repr(u8)]
//! enum Mode {
//!     On = 1, // "ShmSafe cannot be derived for enums"
//!     Off = 2,
//! }
//! ```
//!
//! ```compile_fail
//! #[derive(Clone, Copy, multiproc::ShmSafe)]
//! #[repr(C)]
//! union Bits {
//!     float: f32, // "ShmSafe cannot be derived for unions"
//!     int: u32,
//! }
//! ```
//!
//! ```compile_fail
//! #[derive(Clone, Copy, multiproc::ShmSafe)]
//! struct Loose {
//!     small: u8, // "ShmSafe needs a fixed layout: add #[repr(C)] to the struct"
//!     wide: u64,
//! }
//! ```
//!
//! ```
//! #[derive(Clone, Copy, multiproc::ShmSafe)]
//! #[repr(C)]
//! struct Loose {
//!     small: u8, // padding after it is fine: the derive copies field by field
//!     wide: u64,
//! }
//! ```
//!
//! A derived struct is as its fields: one field that is not `ShmSafe` refuses it.
//!
//! ```compile_fail,E0277
//! #[derive(Clone, Copy, multiproc::ShmSafe)]
//! #[repr(C)]
//! struct Letter {
//!     code: char,
//! }
//! let _ = multiproc::Value::new(Letter { code: 'x' }); // char is not ShmSafe
//! ```
//!
//! Nor does a struct with a destructor of its own (shared memory is reclaimed without
//! running destructors: `ShmSafe`'s rule 2), even when its fields are all plain numbers.
//! The derive refuses it (a struct without generics; a generic one, when it is used):
//!
//! ```compile_fail,E0080
//! #[derive(multiproc::ShmSafe)]
//! #[repr(C)]
//! struct Noisy {
//!     count: u32,
//! }
//!
//! impl Drop for Noisy {
//!     fn drop(&mut self) {
//!         println!("dropped with {}", self.count); // would never run in shared memory
//!     }
//! }
//! ```
//!
//! What does hold: handles are `Send + Sync` (share them between threads, or clone one
//! per thread); the guards of process-owned locks (`Lock`, `Value`, `Array`, semaphores,
//! the manager's `Lock`) are `Send` (Python lets any thread release a `Lock`) and `Sync`.
//!
//! ```
//! fn send_sync<T: Send + Sync>() {}
//! send_sync::<multiproc::Value<u64>>();
//! send_sync::<multiproc::RawValue<u64>>();
//! send_sync::<multiproc::Array<f64>>();
//! send_sync::<multiproc::RawArray<f64>>();
//! send_sync::<multiproc::SharedMemory>();
//! send_sync::<multiproc::Lock>();
//! send_sync::<multiproc::RLock>();
//! send_sync::<multiproc::Condition>();
//! send_sync::<multiproc::Semaphore>();
//! send_sync::<multiproc::Event>();
//! send_sync::<multiproc::Queue<String>>();
//! send_sync::<multiproc::LockGuard<'static>>();
//! send_sync::<multiproc::ValueGuard<'static, u64>>();
//! send_sync::<multiproc::SemaphoreGuard<'static>>();
//! send_sync::<multiproc::ProxyLockGuard<'static>>();
//! ```
//!
//! (`ArrayGuard`, `RLockGuard`, `ConditionGuard` and `ProxyRLockGuard` are neither `Send`
//! nor `Sync`: the first on the safe side, the others because they stay on their thread.)
//!
//! A process target's arguments cross a process boundary: they are owned serde values. A
//! borrowed argument is refused (the compiler says that `Deserialize` is "not general
//! enough": the argument borrows; take a `String`):
//!
//! ```compile_fail
//! fn greet(name: &str) {
//!     println!("hello {name}");
//! }
//! let _ = multiproc::Process::new(greet, "bob");
//! ```
//!
//! Several arguments travel as one tuple, of as many elements as the function takes:
//!
//! ```compile_fail,E0308
//! fn add(a: u32, b: u32) -> u32 {
//!     a + b
//! }
//! let _ = multiproc::Process::new(add, 1); // expected `(u32, u32)`
//! ```
//!
//! What is not a function is not a target ("`&str` is not a process target for the
//! arguments `u32`"):
//!
//! ```compile_fail,E0277
//! let _ = multiproc::Process::new("add", 1u32);
//! ```
//!
//! A closure that captures something cannot be rebuilt in another process:
//!
//! ```compile_fail,E0277
//! let name = String::from("bob");
//! let _ = multiproc::Process::new(move |_: ()| name.len(), ());
//! ```
//!
//! Nor can one whose captures are `Copy`: it is refused when the program is built (one that
//! captures exactly a pointer's worth, which the compiler cannot tell from a function
//! pointer, is refused by `Process::new`'s panic):
//!
//! ```compile_fail,E0080
//! let (a, b) = (1u64, 2u64);
//! let _ = multiproc::Process::new(move |x: u64| x + a + b, 1);
//! ```
//!
//! A function pointer crosses by its address, checked against the executable, for a target
//! of one argument (`Process::new(f, a)` with `f: fn(A) -> R`); a target of several
//! arguments is rebuilt in the child from its type, so it must be the function itself:
//!
//! ```compile_fail,E0080
//! fn add(a: u32, b: u32) -> u32 {
//!     a + b
//! }
//! let f: fn(u32, u32) -> u32 = add;
//! let _ = multiproc::Process::new(f, (1, 2));
//! ```
//!
//! A pool's functions take the same owned arguments, on every entry point: `apply` (and
//! its async forms), `map` (and `imap`, `map_async`...), `starmap`. A borrowed argument is
//! refused with "`&u32` cannot cross a process boundary" and the hint to take it owned
//! ([`Argument`](crate::Argument)'s message):
//!
//! ```compile_fail,E0277
//! fn double(x: &u32) -> u32 {
//!     x * 2
//! }
//! fn check(pool: &multiproc::Pool) {
//!     let _ = pool.apply(double, &3); // `&u32` cannot cross a process boundary
//! }
//! ```
//!
//! ```compile_fail,E0277
//! fn double(x: &u32) -> u32 {
//!     x * 2
//! }
//! fn check(pool: &multiproc::Pool) {
//!     let _ = pool.map(double, [&1, &2]); // `&u32` cannot cross a process boundary
//! }
//! ```
//!
//! ```compile_fail,E0277
//! fn scale(x: &u32, by: u32) -> u32 {
//!     x * by
//! }
//! fn check(pool: &multiproc::Pool) {
//!     let _ = pool.starmap(scale, [(&1, 2)]); // the tuple borrows: "`&u32: Deserialize` is not satisfied"
//! }
//! ```
//!
//! A `&str` (or `&[u8]`) is refused too, but in the compiler's words ("implementation of
//! `Deserialize` is not general enough"): serde can read a `&str` borrowed from its input,
//! so the refusal is about the borrow's lifetime, which `#[diagnostic::on_unimplemented]`
//! cannot word. Take a `String` (a `Vec<u8>`):
//!
//! ```compile_fail
//! fn shout(name: &str) -> String {
//!     name.to_uppercase()
//! }
//! fn check(pool: &multiproc::Pool) {
//!     let _ = pool.apply(shout, "bob"); // the argument borrows: take a `String`
//! }
//! ```
//!
//! ```compile_fail
//! fn shout(name: &str) -> String {
//!     name.to_uppercase()
//! }
//! fn check(pool: &multiproc::Pool) {
//!     let _ = pool.map(shout, ["bob", "ann"]); // the items borrow: take `String`s
//! }
//! ```
//!
//! ```compile_fail
//! fn greet(name: &str, times: usize) -> String {
//!     name.repeat(times)
//! }
//! fn check(pool: &multiproc::Pool) {
//!     let _ = pool.starmap(greet, [("bob", 2)]); // the tuples borrow: take `String`s
//! }
//! ```
//!
//! Owned, all three compile (`map` stays Python's one-argument shape; `apply` and `starmap`
//! take several as a tuple):
//!
//! ```
//! fn shout(name: String) -> String {
//!     name.to_uppercase()
//! }
//! fn greet(name: String, times: usize) -> String {
//!     name.repeat(times)
//! }
//! fn check(pool: &multiproc::Pool) -> Result<(), multiproc::Error> {
//!     pool.apply(shout, "bob".to_string())?;
//!     pool.apply(greet, ("bob".to_string(), 2))?;
//!     pool.map(shout, ["bob".to_string(), "ann".to_string()])?;
//!     pool.starmap(greet, [("bob".to_string(), 2)])?;
//!     Ok(())
//! }
//! ```
//!
//! A pool's `apply` ships a function pointer by its address only for one argument, as
//! `Process::new`:
//!
//! ```compile_fail,E0080
//! fn add(a: u32, b: u32) -> u32 {
//!     a + b
//! }
//! let pool = multiproc::Pool::new(1).unwrap();
//! let f: fn(u32, u32) -> u32 = add;
//! let _ = pool.apply(f, (1, 2));
//! ```
//!
//! The `.init_array` entry that `test_support!` places is the loader's to call, with the
//! loader's arguments (`argv` and `envp` are kept for the constructors after it): a call
//! by hand needs `unsafe`.
//!
//! ```compile_fail,E0133
//! multiproc::test_support!();
//!
//! fn main() {
//!     __MULTIPROC_TEST_SUPPORT(1, std::ptr::null(), std::ptr::null());
//! }
//! ```
//!
//! The `child_init` argument of `test_support!` and `#[multiproc::main]` names a function:
//! it is evaluated as a constant, so no code of the program runs where it is written (in
//! the loader's `.init_array` entry, or before `main`'s `init()` dispatches a child). A
//! block with a side effect is refused:
//!
//! ```compile_fail,E0015
//! fn setup() {}
//! multiproc::test_support!(child_init = { std::process::id(); setup });
//!
//! fn main() {}
//! ```
//!
//! ```compile_fail,E0015
//! fn setup() {}
//!
//! #[multiproc::main(child_init = { std::process::id(); setup })]
//! fn main() {}
//! ```
//!
//! Nor does the macro's internal arm run an expression there: it takes only a constant
//! `Option<fn()>` (review68 M2: it took any expression, and ran it inside the entry).
//!
//! ```compile_fail,E0308
//! multiproc::test_support!(@entry || { std::process::id(); multiproc::init() });
//!
//! fn main() {}
//! ```
//!
//! A path to a function, or a closure that captures nothing, is a constant (these two
//! place `.init_array` entries: each is a crate of its own, since rustdoc's merged doctest
//! binary would run them before every other doctest, and the spawned children of the
//! `start_method(Spawn)` doctests then failed):
//!
//! ```no_run,standalone_crate
//! fn setup() {}
//! multiproc::test_support!(child_init = setup);
//!
//! fn main() {}
//! ```
//!
//! ```no_run,standalone_crate
//! #[multiproc::main(child_init = || println!("set up"))]
//! fn main() {}
//! ```
