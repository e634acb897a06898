//! Python's `multiprocessing` for Rust: real operating-system processes running Rust
//! functions, with the names Python users know and the shapes Rust users expect.
//!
//! A child runs a function of your program — `Process::new(f, args)`, a [`Pool`] of worker
//! processes, a [`Manager`] serving shared dicts and lists — and the processes talk through
//! queues, pipes, locks, events, barriers and values that live in shared memory. Arguments,
//! results and messages are serde values; a handle to a shared object (a [`Queue`], a
//! [`Lock`], a [`Value`]) is itself such a value, so it travels to a child or through a
//! queue and means the same object there.
//!
//! **When to pick it over threads or rayon.** Threads and rayon share one address space,
//! which is cheaper (no copying, no process start-up) and what
//! most parallel work wants. Processes are for what a thread cannot give:
//!
//! * *isolation*: a child that panics, aborts, runs out of memory, overflows its stack or
//!   is killed takes nothing else down; its parent gets a typed error ([`JoinError`],
//!   [`TaskError`]) and a pool replaces the worker and goes on;
//! * *work you can stop*: a process can be terminated or killed at any point, and a pool
//!   task past its timeout is ([`ApplyOptions::timeout`]); a thread cannot be stopped;
//! * *state per process*: globals, thread-locals, C libraries that are not thread-safe,
//!   `std::env::set_current_dir`, signal handlers and resource limits are each process's
//!   own;
//! * *other machines*: a manager serves its objects over TCP to clients that know its key,
//!   and (feature `cluster`) a pool's tasks can run on worker nodes through Redis.
//!
//! **Limits.** Linux only (it is built on pidfds, futexes, `memfd` and `clone3`). Every
//! argument, result and message is encoded and decoded (postcard), so what crosses a
//! process boundary is an owned serde value, not a borrow, and large data is better kept
//! in an [`Array`] or a [`SharedMemory`] than sent. A target is a function, a function
//! pointer or a closure that captures nothing (the child finds it in its copy of the
//! program; see [`Target`]). Call [`init()`]
//! first in `main` (or use [`#[multiproc::main]`](main)): children start from there.
//! Doctests and tests work too: `multiproc::init()` in a doctest, and
//! [`test_support!()`](test_support) in an integration test file.
//!
//! | Python | multiproc |
//! |---|---|
//! | `if __name__ == "__main__":` | [`init()`] first in `main`, or [`#[multiproc::main]`](main) |
//! | `Process(target=f, args=(x,)).start()`, `args=(x, y)` | [`Process::new(f, x).start()?`](Process), [`Process::new(f, (x, y))`](Process::new) |
//! | `p.join()`, `p.join(timeout)` | [`p.join()?`](ProcessHandle::join) (returns the result), [`p.wait_timeout(d)`](ProcessHandle::wait_timeout) |
//! | `p.exitcode`, `p.is_alive()`, `p.terminate()`, `p.kill()` | [`exitcode()`](ProcessHandle::exitcode), [`is_alive()`](ProcessHandle::is_alive), [`terminate()`](ProcessHandle::terminate), [`kill()`](ProcessHandle::kill) |
//! | `class P(Process): def run(self)` | `impl` [`Run`] for a serde struct, [`Process::from_run`] |
//! | `set_start_method("spawn")` | [`set_start_method(StartMethod::Spawn)`](set_start_method) |
//! | `ctx = get_context("spawn")`, `ctx.Pool(4)`, `ctx.Process(...)`, `ctx.Queue()` | [`let ctx = get_context(Some(StartMethod::Spawn))`](get_context), [`ctx.pool(4)?`](Context::pool), [`ctx.process(f, x)`](Context::process), [`ctx.queue()?`](Context::queue) |
//! | `current_process()`, `parent_process()`, `active_children()`, `cpu_count()` | [`current_process()`], [`parent_process()`], [`active_children()`], [`cpu_count()`] |
//! | `log_to_stderr(logging.INFO)` | [`log_to_stderr(log::LevelFilter::Info)`](log_to_stderr) (a `log` logger in every process: `[INFO/Process-1] ...`) |
//! | `Lock()`, `with lock:`, `lock.acquire(timeout=t)`, `lock.release()` | [`Lock::new()?`](Lock), [`let _g = lock.acquire()?`](Lock::acquire), [`acquire_timeout(t)`](Lock::acquire_timeout), [`release()`](Lock::release) |
//! | `RLock()` | [`RLock`] (guards stay on their thread; [`RLockGuard::owner_died`] when the holder died) |
//! | `Semaphore(n)`, `BoundedSemaphore(n)`, `get_value()` | [`Semaphore::new(n)`](Semaphore), [`BoundedSemaphore`], [`get_value()`](Semaphore::get_value) |
//! | `Event()`: `set`, `clear`, `is_set`, `wait(timeout)` | [`Event`]: [`set`](Event::set), [`clear`](Event::clear), [`is_set`](Event::is_set), [`wait`](Event::wait) / [`wait_timeout`](Event::wait_timeout) |
//! | `Condition(lock)`: `wait`, `wait_for`, `notify(n)`, `notify_all` | [`Condition`]; through its guard: [`wait`](ConditionGuard::wait), [`wait_for`](ConditionGuard::wait_for), [`notify`](ConditionGuard::notify), [`notify_all`](ConditionGuard::notify_all) |
//! | `Barrier(parties)`: `wait`, `abort`, `reset`, `BrokenBarrierError` | [`Barrier`]: [`wait`](Barrier::wait), [`abort`](Barrier::abort), [`reset`](Barrier::reset), [`BrokenBarrier`] |
//! | `Barrier(parties, action=f, timeout=t)` | [`Barrier::builder(n).action(f).timeout(t).build()?`](BarrierBuilder) (the action runs in the process that trips it; [`action_with(f, args)`](BarrierBuilder::action_with)) |
//! | `Value('i', 0)`, `with v.get_lock(): v.value += 1` | [`Value::new(0i32)?`](Value), [`*v.lock() += 1`](Value::lock) |
//! | `Value('i', 0, lock=l)`, `Array('i', xs, lock=l)`, `v.get_lock()` | [`Value::with_lock(0, l)?`](Value::with_lock), [`Array::with_lock(&xs, l)?`](Array::with_lock) (`l`: a [`Lock`] or [`RLock`], see [`SharedLock`]), [`shared_lock()`](Value::shared_lock) |
//! | `Array('d', 10)`, `Array('i', [0, 1, 2])`, `arr[:]` | [`Array::<f64>::new(10)?`](Array::new), [`Array::from_slice(&[0, 1, 2])?`](Array::from_slice), [`to_vec()`](Array::to_vec) |
//! | `RawValue`, `RawArray`, `lock=False` | [`RawValue`], [`RawArray`] (`unsafe` [`as_slice`](RawArray::as_slice)) |
//! | `ctypes.Structure` in a `Value` | `#[derive(ShmSafe)] #[repr(C)] struct`, see [`ShmSafe`] |
//! | `SharedMemory(create=True, size=n)`, `SharedMemory(name)`, `.buf`, `close()`, `unlink()` | [`SharedMemory::create(n)?`](SharedMemory::create), [`SharedMemory::open(name)?`](SharedMemory::open), [`read_at`](SharedMemory::read_at) / [`write_at`](SharedMemory::write_at), [`close()`](SharedMemory::close), [`unlink()`](SharedMemory::unlink) |
//! | `ShareableList([1, 'a', None])` | [`ShareableList::new([Item::from(1), "a".into(), Item::None])?`](ShareableList) (Python's byte layout) |
//! | `SharedMemoryManager()`, `smm.SharedMemory(n)`, `smm.ShareableList(xs)`, `smm.shutdown()` | [`SharedMemoryManager::start()?`](SharedMemoryManager), [`smm.shared_memory(n)?`](SharedMemoryManager::shared_memory), [`smm.shareable_list(xs)?`](SharedMemoryManager::shareable_list), [`smm.shutdown()?`](SharedMemoryManager::shutdown) (unlinks every block) |
//! | `with Manager() as m:`, `m.dict()`, `m.list(range(10))`, `m.Namespace()` | [`let m = Manager::start()?`](Manager) (dropped with its proxies: shut down), [`m.dict()`](Manager::dict), [`m.list_from(0..10)`](Manager::list_from), [`m.namespace()`](Manager::namespace) |
//! | `m.Lock()`, `m.Queue()`, `m.Value('i', 0)`, `m.Event()`, `m.Barrier(n)`, ... | [`m.lock()`](Manager::lock), [`m.queue()`](Manager::queue), [`m.value(0)`](Manager::value), [`m.event()`](Manager::event), [`m.barrier(n)`](Manager::barrier), ... |
//! | `m.set()`, `m.Barrier(n, action, timeout)`, `Manager(initializer=f, initargs=(a,))` | [`m.set()`](Manager::set) ([`SetProxy`]), [`m.barrier_with(n, Some("name"), Some(t))`](Manager::barrier_with) (with [`barrier_action`](ManagerBuilder::barrier_action)), [`Manager::builder().initializer(f, a)`](ManagerBuilder::initializer) |
//! | `BaseManager.register('Counter', Counter)`, `m.Counter()` | [`managed!`] `{ pub proxy CounterProxy for Counter { ... } }`, [`m.create(Counter::new())`](Manager::create) |
//! | `m.Pool(4)` | not provided: see [why, and what to use instead](Manager#no-managerpool) |
//! | `BaseManager(address, authkey).connect()`, `get_server().serve_forever()` | [`Manager::connect(addr, key)`](Manager::connect), [`Manager::builder().address(a).serve(...)`](ManagerBuilder::serve) |
//! | `Queue(maxsize)`, `q.put(x)`, `q.get(timeout=t)`, `q.get_nowait()`, `q.qsize()` | [`Queue::with_maxsize(n)?`](Queue::with_maxsize), [`q.put(x)?`](Queue::put), [`q.get_timeout(t)?`](Queue::get_timeout), [`q.try_get()`](Queue::try_get), [`q.len()`](Queue::len) |
//! | `SimpleQueue()`, `JoinableQueue()`, `q.task_done()`, `q.join()` | [`SimpleQueue::new()?`](SimpleQueue::new), [`JoinableQueue::new()?`](JoinableQueue::new), [`task_done()`](JoinableQueue::task_done), [`join()`](JoinableQueue::join) |
//! | `q.shutdown(immediate=False)`, `q.is_shutdown`, `queue.ShutDown` (3.13) | [`q.shutdown(immediate)`](Queue::shutdown), [`q.is_shutdown()`](Queue::is_shutdown), [`PutError::ShutDown`] / [`GetError::ShutDown`]; the same on [`JoinableQueue`], [`SimpleQueue`] and the manager's [`QueueProxy::shutdown`] ([`ManagerError::ShutDown`]) |
//! | `a, b = Pipe()`, `Pipe(duplex=False)`, `conn.send(x)`, `conn.recv()`, `EOFError` | [`Pipe::new()?`](Pipe::new), [`Pipe::one_way()?`](Pipe::one_way), [`conn.send(x)?`](Connection::send), [`conn.recv()?`](Connection::recv), [`RecvError::Disconnected`] |
//! | `multiprocessing.connection.wait(objects, timeout)` | [`wait(&[&a, &q, &p], timeout)`](wait) |
//! | `Listener(address, authkey=k)`, `listener.accept()`, `Client(address, authkey=k)` | [`Listener::bind(addr, k)?`](Listener::bind), [`listener.accept()?`](Listener::accept) / [`accept_timeout(d)`](Listener::accept_timeout), [`Client::connect(addr, k)?`](Client::connect): a typed [`SocketConnection`] over TCP or a unix socket |
//! | `conn.send(x)`, `conn.recv()`, `conn.poll(t)`, `send_bytes`, `AuthenticationError` | [`send(x)?`](SocketConnection::send), [`recv()?`](SocketConnection::recv) / [`recv_timeout(d)`](SocketConnection::recv_timeout), [`poll(t)`](SocketConnection::poll), [`send_bytes`](SocketConnection::send_bytes), [`ConnectError::AuthenticationFailed`] |
//! | `Pool(4)`, `pool.map(f, xs)`, `pool.apply(f, (x,))` | [`Pool::new(4)?`](Pool::new), [`pool.map(f, xs)?`](Pool::map), [`pool.apply(f, x)?`](Pool::apply) |
//! | `pool.apply_async(f, (x,), callback=cb, error_callback=eb)`, `r.get(timeout)` | [`pool.apply_async_with(f, x, ApplyOptions::new().callback(cb).error_callback(eb))?`](Pool::apply_async_with), [`r.get()?`](AsyncResult::get), [`r.get_timeout(d)`](AsyncResult::get_timeout) |
//! | `pool.imap(f, xs, chunksize=n)`, `imap_unordered`, `starmap`, `map_async` | [`pool.imap(f, xs)?`](Pool::imap), [`MapOptions::new().chunksize(n)`](MapOptions::chunksize), [`imap_unordered`](Pool::imap_unordered), [`starmap`](Pool::starmap), [`map_async`](Pool::map_async) |
//! | `Pool(initializer=f, initargs=(a,), maxtasksperchild=n)` | [`Pool::builder().initializer(f, a).max_tasks_per_child(n).timeout(d).build()?`](PoolBuilder) |
//! | `pool.close()`, `pool.join()`, `pool.terminate()` | [`close()`](Pool::close), [`join()?`](Pool::join), [`terminate()`](Pool::terminate); dropping a pool terminates it |
//! | `multiprocessing.pool.ThreadPool(4)` | [`ThreadPool::new(4)?`](ThreadPool::new), the same API on threads |
//!
//! ```no_run
//! use multiproc::Process;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> Result<(), multiproc::Error> {
//!     multiproc::init();
//!     let child = Process::new(square, 12).name("squarer").start()?;
//!     assert_eq!(child.join()?, 144);
//!     Ok(())
//! }
//! ```
//!
//! # Messages
//!
//! A message (a process's argument and result, an item of a [`Queue`] or a [`Pipe`], a
//! [`Pool`] task and its result, a value in a [`Manager`]'s containers) is any type that
//! is `Serialize + DeserializeOwned`: every type that round-trips through `serde_json`
//! round-trips here, `serde_json::Value`, `#[serde(untagged)]` and internally tagged enums,
//! `#[serde(flatten)]` and `skip_serializing_if` included. Handles to the crate's objects
//! ([`Queue`], [`Lock`], [`Value`], a [`Connection`], ...) may be inside: they travel as
//! references into the family's shared memory, never as copies.
//!
//! What it costs:
//!
//! - **The compact path** (most types: structs, tuples, plain enums, numbers, strings,
//!   vectors, maps, options): [postcard](https://docs.rs/postcard), no field names, written
//!   straight into the channel's shared memory and read from there; about the cost of
//!   copying the bytes once each way. A type's `Deserialize` is looked at once per type
//!   and thread (a probe that runs it on made-up input, never on a message's path) to see
//!   whether it needs the other path.
//! - **The self-describing path**, for a type whose `Deserialize` asks the format what
//!   comes next (`serde_json::Value`, untagged, internally and adjacently tagged enums,
//!   `flatten`), reads an identifier, or reads a struct only as a map
//!   (`toml_datetime::Datetime`), or whose `Serialize` skips fields, writes maps of unknown
//!   length, or writes a count of fields or a variant's number that its `Deserialize`
//!   does not read so (`skip_serializing` alone, a variant after a `skip_deserializing`
//!   one, two structs or enums of one name inside one message type that differ so, an
//!   enum renamed for one direction only, a struct with an alias on a field that refuses
//!   a made-up value, a handle or a `NonZeroU32`), or that the probe could not see to the end (a type reached only more
//!   than 12 compound levels down, recursive types excepted, or a tuple with an element
//!   that refuses a made-up value before another): MessagePack with field names
//!   ([rmp-serde](https://docs.rs/rmp-serde)). Larger and slower (field names,
//!   a tag per value), chosen per type and per value by the sender; every receiver reads
//!   both. A [`Manager`]'s containers always keep their items self-described.
//! - What the self-describing path does not carry, as `serde_json` does not: `Some(None)`
//!   and `Some(())` are read back as `None` (MessagePack writes `Some(x)` as `x`), so
//!   `(Queue<T>, Option<Option<X>>)`, self-described for its handle first, loses
//!   `Some(None)` (put the handle last, or in a struct's field). A variant renamed for
//!   one direction only (`rename(serialize = ..)`, `rename(deserialize = ..)`, a
//!   `rename_all` that differs) goes by its `Serialize` name there, which its
//!   `Deserialize` refuses, as `serde_json`'s does. A `u128` or `i128` inside
//!   an untagged or internally tagged enum or a `flatten`ed struct, and a unit struct
//!   inside an untagged enum (which `serde_json` carries), are sent and refused by every
//!   receiver: serde buffers such a value in a form with no 128-bit integers, that takes a
//!   unit struct only as `()`.
//! - A message that cannot be encoded or decoded is a [`CodecError`] naming the type and
//!   keeping the message of the serializer or of the `Serialize`/`Deserialize` impl that
//!   refused, on the sending and on the receiving side.
//! - A message nests at most 256 levels deep (each field, element, map entry, `Some`,
//!   newtype and enum variant one level below its container): a deeper one is refused by
//!   its sender with a [`CodecError`] (`put`, `send` fail, nothing is enqueued), and by its
//!   receiver if another program wrote it, so that bytes from a peer can never overflow the
//!   decoding thread's stack (which would abort the process). A long chain belongs in a
//!   `Vec`, not in nested `Option<Box<_>>`. The sender counts so that no receiver refuses
//!   what it sent, and so may refuse a value somewhat shallower: a self-described tuple or
//!   struct variant counts as two levels (a receiver reading it through an untagged or
//!   internally tagged enum or a `flatten`ed field sees it so), and `Some` and a newtype
//!   count a level even where such a reader, which sees them written bare, counts none.
//! - A `Deserialize` that panics makes its `get`/`recv` fail with a [`CodecError`] (the
//!   message is taken, the channel goes on). A queue's or pipe's message is decoded while
//!   its take holds the channel's consumers: a `Deserialize` (or a `Drop` of what a failed
//!   decoding had read) that gets from that same queue or receives from that same pipe end
//!   panics rather than wait for itself, and so does a put into that queue, full, without
//!   a timeout; the outer take then fails with that `CodecError`.
//!
//! Big data is best passed as bytes or as shared memory. A `Vec<u8>`, a `[u8]` or a
//! `serde_bytes::ByteBuf` is copied as one block (a typed 1 KiB message costs about a
//! quarter more than a raw one in a ping-pong). A message above a few KiB travels in a
//! block of the family's shared memory of its own, written once by the sender and read
//! once by the receiver. Data that several processes read, or that is too large to copy
//! per task, belongs in a [`SharedBytes`], an [`Array`] or a [`RawArray`] (or a
//! [`SharedMemory`] block): pass the handle in the message and let the receiver read it in
//! place. Summing 512 buffers of 1 MiB that the parent made, a [`Pool`] of two over
//! `SharedBytes` takes about rayon's time (1.05x in one run), against 3-4x for the same
//! buffers sent as bytes; to keep the data while the pool reads it, map over clones of
//! the handles (`pool.map(f, data.iter().cloned())`).
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! #[serde(untagged)]
//! enum Reading {
//!     Number(f64),
//!     Text(String),
//! }
//!
//! multiproc::init();
//! let (a, b) = multiproc::Pipe::<Reading>::new()?;
//! a.send(Reading::Text("warm".into()))?;
//! assert_eq!(b.recv()?, Reading::Text("warm".into()));
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! # How it works
//!
//! Every process started here belongs to a *family*: the main process and its descendants.
//! The family shares one anonymous memory file (freed by the kernel when the last member
//! ends, even after `kill -9`), in which queues, locks and values live; a handle to such
//! an object is its offset, so it travels as a process argument, through a queue or a pipe.
//! Children get `PR_SET_PDEATHSIG`, so they never outlive a killed parent.
//!
//! Only Linux is supported: it is the platform this crate is tested on.
//!
//! # Start methods and what a child inherits
//!
//! A child is started with one of three [start methods](StartMethod): `ForkServer` (the
//! default), `Spawn`, `Fork`. The fork server is a single-threaded copy of the main
//! process forked by [`init()`], so what the program sets up *after* `init()` in its own
//! memory is not in the server's children. What a child has of the process that starts it
//! when its target runs:
//!
//! | | `ForkServer` (default) | `Spawn` | `Fork` |
//! |---|---|---|---|
//! | environment (`std::env::set_var` included), working directory | the parent's at the start (the server's directory, the one of `init()` time, is compared as a directory, not a path, and the child of a parent in another one enters it by its path: a start from another directory that was removed fails, [`Error::Io`] `NotFound`, as Python's does) | the parent's at the start | the parent's at the start |
//! | the [`child_init`](InitBuilder::child_init) set-up | runs | runs | runs |
//! | statics, loggers, subscribers set before [`init()`] | yes | no (a fresh run of the program) | yes |
//! | statics, loggers, subscribers set after [`init()`] | no (the server was forked at `init()`) | no | yes (a copy) |
//! | constructors (`.init_array`, `inventory`, `ctor`) | ran before `init()` (a copy) | run again | ran (a copy) |
//! | the parent's other threads | no | no | no (only a copy of the starting thread) |
//! | stdin | `/dev/null` | `/dev/null` | `/dev/null` |
//! | stdout, stderr | those of `init()` time | the parent's | the parent's |
//! | other descriptors | those of `init()` time, not the parent's | none (every descriptor Rust opens is close-on-exec) | copies of all the parent's |
//! | `SIGINT`, `SIGTERM`, `SIGPIPE` | default, default, ignored (as a Rust program starts) | default, default, ignored | the parent's dispositions |
//! | other signal handlers, the signal mask | those of `init()` time | defaults, mask empty | the parent's |
//! | `umask`, resource limits, CPU affinity, nice value, user and group ids | those of `init()` time (the server's, as in Python's `forkserver`) | the parent's | the parent's |
//! | a stack overflow of a thread the target starts | `JoinError::StackOverflow`, but a bare `SIGSEGV` in a test binary with `test_support!` (its server is forked before std's runtime start-up) | `StackOverflow` with [`#[multiproc::main]`](main), else a bare `SIGSEGV` (std's runtime start-up, which gives threads the alternate signal stack a report needs, did not run) | `StackOverflow` |
//! | its argument, family objects it carries | yes | yes | yes |
//! | other family handles of the parent (in its statics, thread-locals, locals) | no | no | copies: each keeps its object alive for the child until the child drops it or ends, but is not counted as a holder, so the parent's `get` may answer `Disconnected` although the child could still `put` through a copy it finds in a static (pass handles as the argument to be counted) |
//! | OS parent (`getppid()`, rusage, `wait`) | the main process for its children; the fork server for a child's children | the parent | the parent |
//!
//! So a set-up that every process needs (a logger, a tracing subscriber, a static) goes in
//! one `fn()` given to [`#[multiproc::main(child_init = setup)]`](main) (or
//! [`builder().child_init(setup).init()`](InitBuilder::child_init); in a test crate
//! [`test_support!(child_init = setup)`](test_support)): it runs in every child of every
//! start method before its target, pool workers, a manager's server, grandchildren and a
//! worker node's workers included. It does not run in the main process: call it there.
//!
//! ```no_run
//! use std::sync::atomic::{AtomicBool, Ordering};
//!
//! static VERBOSE: AtomicBool = AtomicBool::new(false);
//!
//! fn setup() {
//!     // e.g. `let _ = env_logger::try_init();`
//!     VERBOSE.store(true, Ordering::Relaxed);
//! }
//!
//! fn is_verbose(_: ()) -> bool {
//!     VERBOSE.load(Ordering::Relaxed)
//! }
//!
//! #[multiproc::main(child_init = setup)]
//! fn main() -> Result<(), multiproc::Error> {
//!     setup();
//!     let child = multiproc::Process::new(is_verbose, ()).start()?;
//!     assert!(child.join()?);
//!     Ok(())
//! }
//! ```
//!
//! ## A program's own forks
//!
//! A program may fork by itself (`libc::fork`, `nix::unistd::fork`): what the child copies
//! of the parent's guards, handles, pools and connections acts on nothing of the parent's
//! (multiproc learns of the fork from a `pthread_atfork` handler), and the child may end
//! through `exit` or by returning from `main`: the exit hook that terminates and joins a
//! process's children acts only on the children that process started, never on its
//! parent's. The child's copies of the parent's [`ProcessHandle`]s stay the parent's and act
//! on nothing: a join fails ([`JoinError::NotAChild`]), a `wait` panics, a signal fails,
//! `is_alive` says `false`, and the parent still joins its child with its outcome (this
//! holds after a fork that runs no handler too). A fork that runs no
//! `pthread_atfork` handler (`clone3`, `syscall(SYS_fork)`, a raw fork of another library,
//! a `vfork` that does not `exec`) is not seen: its child takes itself for its parent, and
//! must only `exec` or `_exit`, using and dropping nothing of multiproc's (a dropped guard
//! releases the parent's lock, a dropped handle lets go of the parent's hold). Such a fork
//! made while the fork server is being started again (after it was killed) also keeps the
//! new server's address: if the new server then fails to start, or dies, the family's
//! `ForkServer` starts fail with [`Error::StartMethodUnavailable`] until that child ends
//! (no new server can take the address meanwhile); a start then fails within its
//! retries instead of waiting for that child. A child forked on a pool's own thread (by a
//! callback it runs, or a value it drops) ends (`_exit(0)`, flushing nothing) as soon as
//! that code returns into the pool's thread,
//! having taken nothing of the pool's: the thread is all the child is made of. A child
//! forked while a thread collected the pool's results (a callback run by a `get`) finds
//! its copy of the pool closed.
//!
//! # Tests and doctests
//!
//! Both start processes. A doctest calls `multiproc::init()` first, as `main` would (the
//! examples of this crate's docs do, and run). An integration test file (or a binary's
//! unit tests) puts [`multiproc::test_support!()`](test_support) at its top level, which
//! runs `init()` before the test harness starts its threads. Tests run on the harness's
//! threads, where [`StartMethod::Fork`] is refused (see [`allow_fork_with_threads`]):
//! test with the fork server and `Spawn`, or fork from a test binary with its own
//! single-threaded `main` (`harness = false`).
//!
//! # Async
//!
//! Every waiting operation has a future, usable from any runtime (the crate depends on
//! none; it is tested on tokio, current-thread and multi-thread, and on smol):
//! [`AsyncResult`] and [`MapResult`] are futures (`pool.apply_async(f, x)?.await`),
//! [`IMap`] is a `futures_core::Stream`, and there are [`Queue::get_async`] /
//! [`Queue::put_async`] (and on [`SimpleQueue`] and [`JoinableQueue`], with
//! [`JoinableQueue::join_async`]), [`Connection::recv_async`] / [`Connection::send_async`],
//! [`ProcessHandle::join_async`], [`Event::wait_async`], the locks' `acquire_async`
//! ([`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Condition`]),
//! [`ConditionGuard::wait_async`] (and [`ConditionGuard::wait_for_async`]) and
//! [`Barrier::wait_async`]. They end with the same
//! typed errors as the blocking calls (a dead worker is `WorkerLost`, a dead producer
//! `Disconnected`, a lock whose holder died is taken over and its guard's `owner_died()`
//! says so); a timeout is the
//! runtime's (`tokio::time::timeout(d, fut)`).
//!
//! Cancellation: a `get_async` or `recv_async` dropped part-way took nothing (an item is
//! taken in the poll that returns it); a `put_async` dropped part-way put nothing; an
//! `acquire_async` dropped part-way holds no lock and no permit (a permit's or an unlock's
//! wake-up it did not use goes to another waiter); a `ConditionGuard::wait_async` dropped part-way leaves
//! the lock released and passes a notification it got on; a `Barrier::wait_async` dropped
//! while it waits breaks the barrier ([`BarrierBreak::Cancelled`]), as a timed-out wait
//! does; a `join_async` dropped part-way drops its handle (the child runs on, as with any
//! dropped handle); an `AsyncResult` dropped part-way
//! leaves its task running ([`AsyncResult::cancel`] stops it).
//!
//! The guards of [`RLock`] and [`Condition`] stay on the thread that acquired them (not
//! `Send`): hold them between two `.await`s on a current-thread runtime (or a `LocalSet`)
//! only. The acquire futures themselves are `Send`. An `RLock` is owned by a thread, so
//! two tasks on one thread share it: use a `Lock` between tasks.
//!
//! No thread per waiting future: a pool's results wake their futures from the thread that
//! collects them; futures that wait on shared memory are woken by *waker threads*, each of
//! which sleeps in one `futex_waitv` on up to 127 distinct futex words (futures waiting on
//! one object share its word), started when a future first returns `Pending`, one more
//! per 127 distinct objects waited on at once; `join_async` is woken by one thread that
//! polls the children's pidfds with epoll. Like any thread, a waker thread makes
//! [`StartMethod::Fork`] refuse to start children unless [`allow_fork_with_threads`] was
//! called; a child forked anyway starts its own waker threads when it needs them.
//!
//! Cost of an awaited result: a polled [`AsyncResult`] first collects the results that
//! arrived itself, as a blocking `get` does; when its task should be back within
//! microseconds (no more chunks in flight than workers, short ones, and the last spins
//! paid off) it spins up to 20 µs for it, which keeps the runtime's thread from other
//! tasks that long at most. So awaiting a short task costs about what `get` does;
//! otherwise the result takes two wake-ups (the pool's thread, then the runtime's).
//!
//! # Features
//!
//! - `progress` (on by default): `MapOptions::progress`, a progress bar on the terminal
//!   for `map`, `imap` and their kind, drawn with `indicatif`. Without it (`default-features
//!   = false`) the crate builds without `indicatif` and its dependencies.
//! - `remote` (on by default): sockets between programs, each behind an HMAC-SHA256
//!   challenge on a shared key: [`Listener`], [`Client`] and [`SocketConnection`], and the
//!   manager's remote access ([`ManagerBuilder::address`], [`ManagerBuilder::serve`],
//!   [`Manager::connect`]). Without it the crate builds without `hmac` and `sha2`; the
//!   manager still serves the processes of its family.
//! - `cluster`: `multiproc::cluster`, a pool's tasks run on worker nodes through Redis.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
// The docs link `Listener`, `Manager::connect`...: without `remote` those links have no
// target (the default build, which CI documents with `-D warnings`, checks every link).
#![cfg_attr(not(feature = "remote"), allow(rustdoc::broken_intra_doc_links, rustdoc::private_intra_doc_links))]

extern crate self as multiproc;

#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub mod cluster;
mod codec;
#[cfg(feature = "remote")]
mod connection;
mod context;
mod error;
mod manager;
mod pool;
mod process;
mod queue;
mod shared;
mod shm;
mod sync;
mod sys;
#[cfg(test)]
mod testing;

#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub use connection::{
    AcceptError, Address, BindError, Client, ConnectError, Listener, SocketConnection, SocketRecvError, SocketSendError,
};
pub use context::{Context, get_context};
pub use error::{CodecError, Error, HeapFull, InitError, JoinError, JoinTimeoutError, PanicInfo};
pub use manager::{
    ArrayProxy, BarrierProxy, ConditionProxy, DictProxy, EventProxy, JoinableQueueProxy, ListProxy, LockProxy, Managed,
    Manager, ManagerBuilder, ManagerError, MethodError, NamespaceProxy, ObjectProxy, ProxyConditionGuard,
    ProxyLockGuard, ProxyPutError, ProxyRLockGuard, ProxySemaphoreGuard, QueueProxy, RLockProxy, SemaphoreProxy,
    SetProxy, SharedMemoryBlocks, SharedMemoryManager, ValueProxy,
};
/// Derives [`ShmSafe`] for a `#[repr(C)]` struct of `ShmSafe` fields.
pub use multiproc_macros::ShmSafe;
/// Makes `multiproc::init()` the first statement of `main`.
///
/// ```no_run
/// #[multiproc::main]
/// fn main() {
///     assert_eq!(multiproc::current_process().name(), "MainProcess");
/// }
/// ```
pub use multiproc_macros::main;
pub use pool::{
    ApplyOptions, Argument, AsyncResult, BootFailure, IMap, MapOptions, MapResult, NotReady, Pool, PoolBuilder,
    PoolError, PoolStats, ResultTimeoutError, StarFn, TaskError, ThreadPool, ThreadPoolBuilder, ThreadTarget,
};
pub use process::{
    ChildProcess, CurrentProcess, InitBuilder, JoinFuture, ParentProcess, Process, ProcessHandle, Run, StartMethod,
    Target, active_children, builder, cpu_count, current_process, force_start_method, get_all_start_methods,
    get_start_method, init, log_to_stderr, parent_process, set_start_method, try_init,
};
pub use queue::{
    ChannelError, Connection, Consumer, GetError, GetTimeoutError, JoinableQueue, Pipe, Producer, PutError,
    PutTimeoutError, Queue, QueueBuilder, QueueJoinError, QueueJoinTimeoutError, RecvBytesIntoError, RecvError,
    RecvFuture, RecvTimeoutError, SendArg, SendBytesError, SendError, SimpleQueue, TaskDoneError, TooLarge,
    TryGetError, TryPutError, TryRecvError, WaitFuture, Waitable, wait, wait_async,
};
pub use shared::{
    Array, ArrayGuard, Item, RawArray, RawValue, ShareableList, ShareableListError, SharedBytes, SharedLock,
    SharedMemory, SharedMemoryBuilder, SharedMemoryError, Value, ValueGuard,
};
pub use shm::ShmSafe;
pub use sync::{
    Abandoned, AcquireTimeoutError, Barrier, BarrierBreak, BarrierBuilder, BarrierWait, BoundedSemaphore,
    BrokenBarrier, Condition, ConditionAcquire, ConditionGuard, ConditionLock, ConditionWait, ConditionWaitError,
    ConditionWaitFor, Event, EventWait, Lock, LockAcquire, LockGuard, RLock, RLockAcquire, RLockGuard, ReleaseError,
    Semaphore, SemaphoreAcquire, SemaphoreGuard, TryAcquireError,
};
pub use sys::allow_fork_with_threads;

/// One line of setup for a test crate (integration tests, or a binary's unit tests):
/// runs [`init()`] before the test harness starts its threads, so tests may start
/// processes.
///
/// ```ignore
/// // tests/my_test.rs
/// multiproc::test_support!();
///
/// #[test]
/// fn child_runs() {
///     let p = multiproc::Process::new(|x: u32| x + 1, 1).start().unwrap();
///     assert_eq!(p.join().unwrap(), 2);
/// }
/// ```
///
/// It places an entry in the binary's `.init_array`, so a crate that denies `unsafe_code`
/// needs `#[allow(unsafe_code)]` on the line. Constructors that come after it in
/// `.init_array` (`inventory`, `ctor`) run in the fork server and in spawned children
/// before any target, as in the test process itself.
///
/// `test_support!(child_init = setup)` is the test crate's
/// [`#[multiproc::main(child_init = setup)]`](main): `setup` runs in every child before
/// its target (see [`InitBuilder::child_init`]), and in worker nodes' pool workers when
/// the test binary serves a cluster. `setup` is a constant `fn()`: a path to a function,
/// or a closure that captures nothing. An expression that would run code where it is
/// written (inside the loader's entry) does not compile.
///
/// ```ignore
/// // tests/my_test.rs
/// fn setup() { /* a logger, a tracing subscriber */ }
/// multiproc::test_support!(child_init = setup);
/// ```
#[macro_export]
macro_rules! test_support {
    (child_init = $setup:expr) => {
        // A constant: no code of the program runs inside the loader's entry, where
        // `MULTIPROC_BOOT` is trusted as the parent's word (`sys::in_constructors`).
        const __MULTIPROC_CHILD_INIT: fn() = $setup;
        $crate::test_support!(@entry ::core::option::Option::Some(__MULTIPROC_CHILD_INIT));
    };
    () => {
        $crate::test_support!(@entry ::core::option::Option::None);
    };
    // Internal, but reachable by any crate: it takes only a constant `Option<fn()>`, run
    // in children as their `child_init`, never in the entry (review68 M2: it took any
    // expression and ran it there).
    (@entry $child_init:expr) => {
        #[used]
        #[unsafe(link_section = ".init_array")]
        static __MULTIPROC_TEST_SUPPORT: $crate::__private::InitEntry = {
            extern "C" fn __multiproc_test_support(
                argc: ::core::ffi::c_int,
                argv: *const *const ::core::ffi::c_char,
                envp: *const *const ::core::ffi::c_char,
            ) {
                const CHILD_INIT: ::core::option::Option<fn()> = $child_init;
                // SAFETY: this is the entry stored in `__MULTIPROC_TEST_SUPPORT`, called by
                // the loader with these arguments.
                unsafe {
                    $crate::__private::in_init_array(&__MULTIPROC_TEST_SUPPORT, argc, argv, envp, || {
                        $crate::__private::test_support_init(CHILD_INIT)
                    })
                };
            }
            __multiproc_test_support
        };
    };
}

#[doc(hidden)]
pub mod __private {
    //! Used by the macros, in bounds and by the tests; not part of the API.
    pub use crate::manager::{decode_args, encode_result};
    pub use crate::sys::{InitEntry, Stateless, in_init_array, main_dispatches};
    pub use serde;

    /// What `test_support!`'s entry runs: `init()`, with the family's `child_init` if one
    /// was named.
    pub fn test_support_init(child_init: Option<fn()>) {
        match child_init {
            Some(setup) => crate::builder().child_init(setup).init(),
            None => crate::init(),
        }
    }

    /// Whether this process's fork handlers are registered (the lent looks' one stands for
    /// them all: they are registered together at a boot).
    pub fn fork_handlers_registered() -> bool {
        crate::shm::prepared_for_forks()
    }

    /// Bytes allocated in the family's shared memory (the tests' leak check).
    pub fn heap_in_use() -> u64 {
        crate::shm::Heap::get().in_use()
    }

    /// The bytes the token of a child's argument `arg` takes from the heap (the tests of a
    /// token in a full heap free one block of its size class).
    pub fn args_token_bytes<A: serde::Serialize + serde::de::DeserializeOwned>(arg: &A) -> usize {
        // Dropped, the encoding gives its handles' counts back.
        let encoded = crate::codec::encode(arg).expect("an argument the codec takes");
        crate::shm::args_token_bytes(encoded.undo_entries().count())
    }

    /// Crash tests: `shm`'s heap allocator, its consistency check and its crash points.
    pub use crate::shm::test_hooks::{
        crash_at, crash_disarm, crash_holding, crash_locked, heap_alloc, heap_alloc_dirty, heap_books, heap_books_lost,
        heap_books_of, heap_check, heap_defer_releases, heap_deferred, heap_free, heap_free_warm,
        heap_release_deferred, pin_claims, sweep_dead_processes,
    };

    /// Crash tests of a pipe: how many messages the receivers of `conn`'s end have taken,
    /// all processes together, as the ring counts them; a take is committed (the message is
    /// the receiver's, even if it dies before `recv` returns) when this counts it. 0 for a
    /// closed end or one that only sends.
    pub fn connection_taken<T>(conn: &crate::Connection<T>) -> u64 {
        conn.taken().unwrap_or(0)
    }

    /// The task table's tests: the takes of `q`'s queue object this process made without a
    /// slot in its task table and holds still, in its slot aside (0 for a closed handle).
    pub fn queue_takes_aside<T>(q: &crate::JoinableQueue<T>) -> u64 {
        q.channel().map_or(0, |ch| ch.takes_aside())
    }

    /// The cluster pool's tests: its results list read as the driver reads it, its driver's trim
    /// sent late, a node's result pushed again.
    #[cfg(feature = "cluster")]
    pub use crate::cluster::pool::{
        TestRead as ClusterPoolRead, test_push as cluster_pool_push, test_read as cluster_pool_read,
        test_results as cluster_pool_results, test_trim as cluster_pool_trim,
    };

    /// The cluster queue's tests: the command a put sends, to replay a late copy of it; the
    /// bytes of a take, to deliver them late.
    #[cfg(feature = "cluster")]
    pub use crate::cluster::queue::{
        test_put_command as cluster_put_command, test_take_command as cluster_take_command,
    };

    /// The manager's tests: takes `n` connection numbers of a started manager's server.
    pub use crate::manager::test_skip_connections as manager_skip_connections;

    /// The async tests: how many waker threads this process runs.
    pub use crate::shm::reactor::waker_threads;

    /// The fork server's tests: the pid of the family's fork server this process started
    /// (at `init()`, or again after it died), if it did.
    pub use crate::process::fork_server_pid;
}

#[cfg(doctest)]
mod compile_fail;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
