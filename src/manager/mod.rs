//! Managers: a server process that keeps dicts, lists, namespaces, values, queues, locks
//! and objects of your own types, used from any process through proxies (Python's
//! `multiprocessing.Manager()` and `BaseManager`), locally or over TCP.
//!
//! # How it works
//!
//! [`Manager::start`] starts the server, a process of the family. Family clients talk to
//! it through shared memory: a request is a message on the server's ring, the answer one
//! on the client thread's own ring, and both sides spin briefly before they sleep, so a
//! round trip takes microseconds instead of a socket's tens. Remote clients
//! ([`Manager::connect`]) reach the same server over TCP, after a mutual HMAC-SHA256
//! challenge; the server reads their frames (bounded in size) into the same ring.
//!
//! The server keeps values encoded: it never needs their types, except for objects of a
//! registered type ([`Managed`]), whose methods it runs. Blocking calls (`acquire`, `get`,
//! `wait`) are parked on the server and answered when they can be, so nothing polls, and
//! the server knows who holds what: a client that dies has its locks released and its
//! waits forgotten. A server that dies makes every call return
//! [`ManagerError::ServerGone`] instead of hanging.
//!
//! Objects are reference-counted by the server: family proxies share a token per
//! reference (a family handle, so proxies travel to children and through queues like any
//! handle), remote proxies a count per connection, and a value stored in a container
//! holds a reference to each proxy inside it (a list of dicts). An object nothing refers
//! to is freed.

#[cfg(feature = "remote")]
mod auth;
mod custom;
mod dict;
mod error;
pub(crate) mod handle;
pub(crate) mod link;
mod list;
mod namespace;
pub(crate) mod protocol;
mod queue;
mod quick;
mod remote;
mod server;
mod set;
mod shared_memory;
mod state;
mod store;
mod sync;
mod workers;

use std::any::TypeId;
use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use custom::{Managed, MethodError, ObjectProxy};
#[doc(hidden)]
pub use custom::{decode_args, encode_result};
pub use dict::DictProxy;
pub use error::{ManagerError, ProxyPutError};
pub use list::{ArrayProxy, ListProxy};
pub use namespace::{NamespaceProxy, ValueProxy};
pub use queue::{JoinableQueueProxy, QueueProxy};
pub use set::SetProxy;
pub use shared_memory::{SharedMemoryBlocks, SharedMemoryManager};
pub use sync::{
    BarrierProxy, ConditionProxy, EventProxy, LockProxy, ProxyConditionGuard, ProxyLockGuard, ProxyRLockGuard,
    ProxySemaphoreGuard, RLockProxy, SemaphoreProxy,
};

use link::{Origin, ProxyCore};
use protocol::{Create, Kind, Op, Out, REGISTRY, Request};
#[cfg(feature = "remote")]
use server::Server;
use server::{ServerBoot, ServerFailure, initializer_runner, server_main};
use state::{CLOSED, Control, ManagerState, STARTING};

use crate::process::{Process, ProcessHandle, StartMethod};
use crate::shm::{Deadline, SPIN, Shared};
use crate::sys::{self, Packed};

/// How long `start` waits for the server to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The server process of a started manager, shared by the [`Manager`] and the proxies
/// made through it in the process that started it (`link::Keep`): the last of them to go
/// shuts the server down.
pub(crate) struct ServerProcess {
    state: Shared<ManagerState>,
    process: ProcessHandle<Result<(), ServerFailure>>,
    listen_ip: Option<IpAddr>,
    shutdown_timeout: Duration,
    /// The process that started the server: only there does the last holder stop it.
    starter: u32,
}

/// Tests: `n` connection numbers of `manager`'s server are taken as if by as many
/// connections (a life of connections in a moment). False for a connected manager.
#[doc(hidden)]
pub fn test_skip_connections(manager: &Manager, n: u32) -> bool {
    match &manager.server {
        Some(server) => {
            server.state.next_conn.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            true
        }
        None => false,
    }
}

impl ServerProcess {
    /// Stops the server (see [`Manager::shutdown`]).
    fn shutdown(&self) -> Result<(), ManagerError> {
        if self.starter != sys::my_pid() {
            // A copy that fork made in a child: the server, and its process handle, are the
            // parent's. It does nothing, as a connected manager's does.
            return Ok(());
        }
        if self.process.exitcode().is_some() {
            self.closed();
            return Ok(());
        }
        if !self.state.closed() {
            let _ = self.state.post(&Control::Shutdown);
        }
        if self.process.wait_timeout(self.shutdown_timeout).is_none() {
            self.process.terminate()?;
            if self.process.wait_timeout(self.shutdown_timeout).is_none() {
                self.process.kill()?;
                self.process.wait();
            }
        }
        self.closed();
        Ok(())
    }

    fn closed(&self) {
        self.state.set_status(CLOSED);
        forget_registered(&self.state);
        link::forget_local(&self.state);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A copy that fork made in a child (a proxy in a static) stops nothing.
        if self.starter == sys::my_pid() {
            let _ = self.shutdown();
        }
    }
}

/// A manager: a server process keeping shared objects, and the factory of their proxies
/// (Python's `multiprocessing.Manager()`, a `SyncManager`).
///
/// Start one with [`Manager::start`] (or configure it with [`Manager::builder`]), or
/// connect to a remote one with [`Manager::connect`]. Its methods create objects on the
/// server and return proxies: [`dict`](Manager::dict), [`list`](Manager::list),
/// [`namespace`](Manager::namespace), [`value`](Manager::value),
/// [`array`](Manager::array), [`queue`](Manager::queue),
/// [`joinable_queue`](Manager::joinable_queue), [`lock`](Manager::lock),
/// [`rlock`](Manager::rlock), [`semaphore`](Manager::semaphore),
/// [`bounded_semaphore`](Manager::bounded_semaphore), [`event`](Manager::event),
/// [`condition`](Manager::condition), [`barrier`](Manager::barrier), and
/// [`create`](Manager::create) for a registered type of your own.
///
/// A started manager's server runs while the `Manager` or a proxy made through it lives
/// in the process that started it: as in Python, where a proxy keeps a reference to its
/// manager, `Manager::start()?.dict()?` is a dict that works. When the last of them is
/// dropped, the server is shut down, and proxies left in other processes then return
/// [`ManagerError::ServerGone`]. [`shutdown`](Manager::shutdown) stops it at once
/// (Python's `with Manager() as m:`), whatever proxies are left.
///
/// # How it works
///
/// The server is a child process, which ends with the process that started it. Family
/// processes talk to it through shared memory, each thread on a connection of its own: a
/// round trip takes a few microseconds, not a socket's tens. Remote clients reach the
/// same server over TCP after a mutual HMAC-SHA256 challenge, with every message bounded
/// in size. Values are kept encoded; blocking calls (`acquire`, `get`, `wait`) wait on
/// the server, which answers them when it can, so nothing polls. The server knows who
/// holds what: when a connection ends (its thread or process ends, its socket closes),
/// the locks it held are released, its waits forgotten, a barrier it waited at broken. A
/// `Lock` is a family process's, as the family's `Lock` is: the end of the thread that
/// acquired it leaves it held (its guard may live on in another thread, or it was left
/// locked) until it is released or the process dies; but a `Lock` that a call which timed
/// out was granted late is released as a dead holder's (nobody would release it), and so
/// is one taken by a later request of that abandoned connection.
/// Objects live while a proxy, a container or a name refers to them.
///
/// # No `manager.Pool()`
///
/// Python's `manager.Pool()` is not provided, on purpose. A pool runs the functions it is
/// given; a pool kept by the server would run functions named by requests, from any
/// client. Here a function travels as a reference into the executable, which means
/// something only to a process of the same binary (a call into another executable is
/// refused); a remote client may be any program that links multiproc, so it could not
/// name one, and a server that ran whatever function of its binary an authenticated
/// request names would be a far wider door than the data operations it serves now. The
/// server runs code only from its boot message (registered types, barrier actions, the
/// initializer), never code a request names. What to use instead:
///
/// * In the family, start a [`Pool`](crate::Pool) where the work is submitted: proxies
///   travel into its tasks like any argument, so the tasks share the manager's objects.
/// * For clients anywhere (remote ones included), share the work through the manager: a
///   [`joinable_queue`](Manager::joinable_queue) of jobs and a queue or a dict of
///   results, served by workers (processes, or a `Pool` running a worker loop) started by
///   a program that has the functions. `join` tells when the jobs are done, and
///   [`shutdown`](QueueProxy::shutdown) stops the workers.
/// * For work the server itself should do, one call of an object at a time, register a
///   type of your own ([`managed!`](crate::managed)): its methods are code of the server's
///   binary, run on its worker threads.
///
/// ```no_run
/// use multiproc::{JoinableQueueProxy, Manager, ManagerError, Pool, QueueProxy};
///
/// fn worker((jobs, results): (JoinableQueueProxy<u64>, QueueProxy<u64>)) {
///     // Ends when the queue is shut down and drained.
///     while let Ok(n) = jobs.get() {
///         results.put(n * n).unwrap();
///         jobs.task_done().unwrap();
///     }
/// }
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let jobs = manager.joinable_queue::<u64>()?;
/// let results = manager.queue::<u64>()?;
/// let pool = Pool::new(2)?;
/// let workers: Vec<_> =
///     (0..2).map(|_| pool.apply_async(worker, (jobs.clone(), results.clone()))).collect::<Result<_, _>>()?;
/// for n in 0..10 {
///     jobs.put(n)?; // or from a remote client that looked `jobs` up
/// }
/// jobs.join()?;
/// jobs.shutdown(false)?;
/// for w in workers {
///     w.get()?;
/// }
/// let mut squares: Vec<u64> = (0..10).map(|_| results.get()).collect::<Result<_, ManagerError>>()?;
/// squares.sort();
/// assert_eq!(squares[3], 9);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Examples
///
/// ```no_run
/// use multiproc::{DictProxy, ListProxy, Manager, Process};
///
/// fn f((d, l): (DictProxy<String, String>, ListProxy<i32>)) {
///     d.insert("1".into(), "1".into()).unwrap();
///     l.reverse().unwrap();
/// }
///
/// multiproc::init();
/// let manager = Manager::start()?;
/// let d = manager.dict()?;
/// let l = manager.list_from(0..10)?;
/// Process::new(f, (d.clone(), l.clone())).start()?.join()?;
/// println!("{:?}", d.items()?);
/// println!("{:?}", l.to_vec()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias = "SyncManager")]
#[doc(alias = "BaseManager")]
#[must_use = "the manager's server stops when the Manager and the proxies it made are dropped"]
pub struct Manager {
    origin: Origin,
    server: Option<Arc<ServerProcess>>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("origin", &self.origin)
            .field("pid", &self.pid())
            .field("address", &self.address())
            .finish()
    }
}

/// Configures a [`Manager`]; option names follow Python's `BaseManager(...)` parameters.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use multiproc::{Manager, StartMethod};
///
/// multiproc::init();
/// let manager = Manager::builder()
///     .start_method(StartMethod::Spawn)
///     .address("127.0.0.1:0")
///     .authkey(b"abracadabra")
///     .shutdown_timeout(Duration::from_secs(3))
///     .max_message_size(1 << 20)
///     .start()?;
/// # Ok::<(), multiproc::ManagerError>(())
/// ```
#[must_use]
pub struct ManagerBuilder {
    start_method: Option<StartMethod>,
    address: Option<String>,
    authkey: Option<Vec<u8>>,
    types: Vec<(&'static str, Packed, store::Constructor, TypeId, custom::Identity)>,
    actions: Vec<(&'static str, Result<Packed, sys::NotInExecutable>)>,
    shutdown_timeout: Duration,
    max_message_size: u64,
    limits: remote::Limits,
    initializer: Option<(Result<Packed, sys::NotInExecutable>, EncodeArgs)>,
    call_timeout: Option<Duration>,
}

/// Encodes the initializer's arguments.
type EncodeArgs = Box<dyn Fn() -> Result<crate::codec::Encoded, crate::CodecError> + Send + Sync>;

impl fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("start_method", &self.start_method)
            .field("address", &self.address)
            .field("authkey", &self.authkey.as_ref().map(|_| "<hidden>"))
            .field("types", &self.types.iter().map(|t| t.0).collect::<Vec<_>>())
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("max_message_size", &self.max_message_size)
            .field("limits", &self.limits)
            .field("initializer", &self.initializer.is_some())
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

impl ManagerBuilder {
    /// How the server process is started (default: the family's method).
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder().start_method(multiproc::StartMethod::Spawn).start()?;
    /// assert!(manager.pid().is_some());
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    /// Also serve remote clients on this TCP address (Python's `address`), e.g.
    /// `"127.0.0.1:50000"`; port 0 picks a free port (see [`Manager::address`]).
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder().address("127.0.0.1:0").authkey(b"secret").start()?;
    /// let address = manager.address().expect("it listens"); // the port picked
    /// let remote = multiproc::Manager::connect(address, b"secret")?;
    /// assert_eq!(remote.number_of_objects()?, 0);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    /// The key remote clients must prove they know (Python's `authkey`); default: the
    /// family's key (Python's `current_process().authkey`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Manager, ManagerError};
    /// multiproc::init();
    /// let manager = Manager::builder().address("127.0.0.1:0").authkey(b"secret").start()?;
    /// let address = manager.address().expect("it listens");
    /// assert!(matches!(Manager::connect(address, b"guess"), Err(ManagerError::AuthenticationFailed(_))));
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> Self {
        self.authkey = Some(key.as_ref().to_vec());
        self
    }

    /// `f(args)` runs in the server process before it serves (Python's `initializer` and
    /// `initargs` of `BaseManager.start`): `f` is a function of the program, since it
    /// runs in another process. A panic in it makes [`start`](ManagerBuilder::start) fail
    /// with [`ManagerError::InitializerPanicked`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn quiet(level: u8) {
    ///     // e.g. ignore SIGINT in the server, set up logging at `level`, ...
    ///     let _ = level;
    /// }
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder().initializer(quiet, 2).start()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn initializer<A>(mut self, f: fn(A), args: A) -> Self
    where
        A: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        // A function outside the executable is refused by `start`.
        self.initializer =
            Some((sys::pack_checked(f, initializer_runner::<A>), Box::new(move || crate::codec::encode(&args))));
        self
    }

    /// Registers `f` as the barrier action `name`, for
    /// [`Manager::barrier_with`]: it runs in the server process each time such a barrier
    /// trips (Python's `manager.Barrier(n, action=f)`, where `f` too must be found by name
    /// in the server). The server process runs threads (a listener for remote clients, the
    /// workers of registered types once one is called), so a process the action starts with
    /// the `Fork` start method is refused there (see
    /// [`allow_fork_with_threads`](crate::allow_fork_with_threads)): use another.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// fn tripped() {}
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder().barrier_action("tripped", tripped).start()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn barrier_action(mut self, name: &'static str, f: fn()) -> Self {
        self.actions.push((name, sys::pack_checked(f, action_runner)));
        self
    }

    /// Makes the registered type `T` available to clients that know it by name (remote
    /// clients, other binaries); family clients register their types by themselves on
    /// first use (Python's `BaseManager.register`).
    ///
    /// # Examples
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Counter {
    ///     n: i64,
    /// }
    ///
    /// impl Counter {
    ///     fn get(&self) -> i64 {
    ///         self.n
    ///     }
    /// }
    ///
    /// multiproc::managed! { pub proxy CounterProxy for Counter { fn get(&self) -> i64; } }
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder().register::<Counter>().start()?;
    /// let counter = manager.create(Counter { n: 5 })?;
    /// assert_eq!(counter.get()?, 5);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn register<T: Managed>(mut self) -> Self {
        self.types.push((
            T::NAME,
            sys::pack_runner(custom::register_runner::<T>),
            custom::construct::<T>,
            TypeId::of::<T>(),
            custom::Identity::of::<T>(),
        ));
        self
    }

    /// How long [`Manager::shutdown`] waits for the server before killing it (Python's
    /// `shutdown_timeout`, default 1 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder().shutdown_timeout(Duration::from_secs(5)).start()?;
    /// manager.shutdown()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    /// The largest message a remote client may send (default 64 MiB). Nothing is
    /// allocated for a larger one: the server reads and drops it, its call fails with
    /// [`ManagerError::TooLarge`], and the connection goes on. A client that does not send
    /// all of it within [`frame_timeout`](Self::frame_timeout) is disconnected.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder().address("127.0.0.1:0").max_message_size(1 << 20).start()?;
    /// assert!(manager.address().is_some());
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn max_message_size(mut self, bytes: u64) -> Self {
        self.max_message_size = bytes;
        self
    }

    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    /// How long a remote client may take over the whole authentication handshake, from
    /// the moment its connection is accepted (default 10 s); a client still in it then is
    /// disconnected, however steadily it trickles bytes. For
    /// [`connect`](ManagerBuilder::connect): how long the connection and the handshake may
    /// take together.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder()
    ///     .address("127.0.0.1:0")
    ///     .handshake_timeout(Duration::from_secs(2))
    ///     .start()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.limits.handshake_timeout = timeout;
        self
    }

    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    /// How many connections may be in the authentication handshake at once (default 64,
    /// at least 1). A connection accepted beyond that closes the one that has been in it
    /// longest, so that clients who know the key get in while idle or slow peers hold
    /// every place; each place costs a thread and two descriptors until it ends.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder()
    ///     .address("127.0.0.1:0")
    ///     .max_pending_handshakes(16)
    ///     .start()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn max_pending_handshakes(mut self, count: usize) -> Self {
        self.limits.max_pending_handshakes = count.max(1);
        self
    }

    /// How much of the server's memory one request may take once decoded, estimated as
    /// 128 bytes per item plus its bytes and references (default 256 MiB: two million
    /// small items). A request beyond it is refused with [`ManagerError::TooLarge`] and
    /// the connection goes on, so that a small frame of many empty items cannot make the
    /// server allocate many times its size.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder().max_request_memory(64 << 20).start()?;
    /// let too_many = manager.list_from(std::iter::repeat(()).take(1_000_000));
    /// assert!(matches!(too_many, Err(multiproc::ManagerError::TooLarge { .. })));
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn max_request_memory(mut self, bytes: u64) -> Self {
        self.limits.max_request_memory = bytes;
        self
    }

    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    /// How many bytes of requests the server may be receiving from all its remote
    /// connections at once (default 256 MiB). A frame is held as its bytes arrive, not as
    /// announced; past the limit, connections in the middle of a frame above 64 KiB wait
    /// for room before they read on (smaller frames always go on), and a frame that has
    /// room must arrive within the [`frame_timeout`](Self::frame_timeout).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder()
    ///     .address("127.0.0.1:0")
    ///     .max_frame_memory(64 << 20)
    ///     .start()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn max_frame_memory(mut self, bytes: u64) -> Self {
        self.limits.max_frame_memory = bytes;
        self
    }

    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    /// How long a request frame above 64 KiB may take to arrive once it has its share of
    /// [`max_frame_memory`](Self::max_frame_memory) (default 60 s: a 64 MiB frame at
    /// about 1 MiB/s), and a frame above [`max_message_size`](Self::max_message_size),
    /// of any size, to be read and dropped (it takes no share). A remote client that stalls
    /// in the middle of one is disconnected (its objects and locks given back as for any
    /// connection that ends) and its share goes to the connections waiting for room: one
    /// peer cannot hold the others' large requests for longer than this. So is a client
    /// that reads nothing of its answers for this long while requests wait for room in
    /// [`max_answer_memory`](Self::max_answer_memory). It is taken as given:
    /// `Duration::ZERO` disconnects a client at every such frame.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder()
    ///     .address("127.0.0.1:0")
    ///     .frame_timeout(Duration::from_secs(10))
    ///     .start()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn frame_timeout(mut self, timeout: Duration) -> Self {
        self.limits.frame_timeout = timeout;
        self
    }

    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    /// How many bytes of answers the server may hold not yet written to its remote
    /// clients, across connections (default 1 GiB). Past a quarter of it for one
    /// connection (or 4096 answers), a connection's requests wait: the server reads no
    /// more of them, and holds back those it has read, until the client has read enough.
    /// Past all of it, so do the requests of every connection with answers not yet
    /// written; a connection with none is served one request at a time (each answer
    /// written before the next request is handled) while the answers made so past the
    /// bound stay under a reserve of a quarter of it, and waits too beyond. So a client
    /// making small calls is not held back by another's slow reading, unless large
    /// answers made so past the bound fill the reserve (a wait's answer granted does not
    /// count there); its calls sent at once are answered one after the other. No client
    /// is refused for reading slowly: its calls are only slower (with a
    /// [`call_timeout`](Self::call_timeout), a call held back longer than that fails with
    /// `CallTimeout`, and a request held back counts its own timeout, an
    /// `acquire_timeout` say, from when the server took it up, just after reading it
    /// (later, never sooner, on a busy server), and, handled past it, times out if it has
    /// to wait (a free lock is still taken, as in Python): one it left unread while it
    /// read no more of the connection's requests counts from when it reads it, as the
    /// server cannot know when it was sent). A client that reads nothing for the
    /// [`frame_timeout`](Self::frame_timeout) while its requests wait is disconnected
    /// (its objects and locks given back as for any connection that ends), and its
    /// answers let go, for the others; one that reads a little within every
    /// `frame_timeout` is kept, holding at most its share or one answer.
    ///
    /// The server can hold one and a quarter times this, plus two answers however large
    /// (a `get` of a large value): the one that passes the bound and the one that passes
    /// the reserve. Besides, the answers of waits granted (a lock, an event, a queue's
    /// `get`) are sent whatever the bound (they count in it, not in the reserve), and the
    /// requests read before a connection waited are held.
    ///
    /// A request held back is handled only when its connection has room, whatever other
    /// clients wait on it: a `release` (or `set`, `put`, `notify`) sent by a client that
    /// stopped reading its answers does not grant another client's `acquire_timeout`
    /// (`wait`, `get`, ...) that runs out meanwhile, though the server read the release
    /// before that deadline; that wait times out. Letting it wait for the held-back
    /// release instead would let one client that stops reading hold every other client's
    /// timeouts (review106 L1, decided).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder()
    ///     .address("127.0.0.1:0")
    ///     .max_answer_memory(256 << 20)
    ///     .start()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn max_answer_memory(mut self, bytes: u64) -> Self {
        self.limits.max_answer_memory = bytes;
        self
    }

    /// How long a call may wait without a sign of life from the server (default: no
    /// limit, as in Python), for every client of a started manager, in every process, and
    /// for a client that [`connect`](ManagerBuilder::connect)s.
    ///
    /// A call waits for its answer as long as its operation takes (an `acquire` without a
    /// timeout waits until the lock is free, a `get_timeout(t)` about `t`) while the server
    /// shows it is alive: a call that has waited half the call timeout asks the server
    /// whether it is there, on the same connection, so the server answers after the
    /// requests before it. A call that has heard nothing for the whole timeout (a server
    /// stopped with `SIGSTOP`, cut off by the network without a reset, which TCP keepalive
    /// never notices while the peer's kernel answers) returns
    /// [`ManagerError::CallTimeout`]. A registered type's method runs as long as it takes,
    /// on a worker thread of the server, which meanwhile answers its caller's pings: a
    /// method longer than the call timeout returns, and one that never returns holds its
    /// caller for ever, as in Python (see [`managed!`](crate::managed)). The call timeout
    /// detects a server that does not answer, not a slow method. What it asked for may or may not have happened, and
    /// the connection it waited on is closed, so that its late answer is never taken for
    /// another call's:
    ///
    /// * a family client's connection is its thread's: it ends as if the thread had ended
    ///   (the server forgets its parked calls and releases the locks this thread held
    ///   through this manager; their guards then release nothing), and the thread's next
    ///   call opens a new one and gets its own answer; an item the late answer of a queue's
    ///   `get` holds goes back to the front of its queue (the get did not happen), unless
    ///   the queue was shut down and emptied meanwhile (see [`QueueProxy`]);
    /// * a remote client has one connection: every later call of that `Manager` and its
    ///   proxies returns [`ManagerError::ServerGone`], and the server gives back the
    ///   connection's objects and locks once it reads the close. Connect again. An item
    ///   the late answer of a `get` holds, written to the socket, is lost, and a task so
    ///   taken is told lost to `join`; one the server never wrote whole goes back (see
    ///   [`QueueProxy`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{Manager, ManagerError};
    ///
    /// multiproc::init();
    /// let manager = Manager::builder().call_timeout(Duration::from_secs(5)).start()?;
    /// let q = manager.queue::<u32>()?;
    /// match q.get_timeout(Duration::from_millis(10)) {
    ///     Err(ManagerError::Timeout) => {}               // the queue stayed empty
    ///     Err(ManagerError::CallTimeout(_)) => {}        // the server did not answer
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), ManagerError>(())
    /// ```
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    fn authkey_or_family(&self) -> Result<Vec<u8>, ManagerError> {
        match &self.authkey {
            Some(key) => Ok(key.clone()),
            None => Ok(crate::process::family::config()?.authkey.to_vec()),
        }
    }

    /// Starts the server process and waits until it serves.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Start`] when multiproc is not initialized, the process cannot be
    /// started, or the address cannot be bound.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder().start()?;
    /// let d = manager.dict::<String, u32>()?;
    /// d.insert("a".into(), 1)?;
    /// assert_eq!(d.len()?, 1);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn start(self) -> Result<Manager, ManagerError> {
        crate::process::family::config()?;
        let listen = match &self.address {
            Some(address) => Some((address.clone(), self.authkey_or_family()?)),
            None => None,
        };
        let listen_ip = self.address.as_deref().and_then(|a| a.to_socket_addrs().ok()?.next()).map(|a| a.ip());
        let mut encoded_args = None;
        let initializer = match &self.initializer {
            None => None,
            Some((call, encode)) => {
                let call = call.map_err(|_| not_in_executable())?;
                let mut encoded = encode()?;
                let args = crate::shm::Payload::new(std::mem::take(&mut encoded.bytes))?;
                encoded_args = Some(encoded);
                Some((call, args))
            }
        };
        let state = Shared::new(ManagerState::new()?)?;
        state.open()?;
        state.set_call_timeout(self.call_timeout);
        let boot = ServerBoot {
            initializer,
            state: state.clone(),
            types: self.types.iter().map(|(name, runner, ..)| (name.to_string(), *runner)).collect(),
            actions: self
                .actions
                .iter()
                .map(|(name, packed)| Ok((name.to_string(), (*packed).map_err(|_| not_in_executable())?)))
                .collect::<Result<_, ManagerError>>()?,
            listen,
            max_message: self.max_message_size,
            limits: self.limits.clone(),
        };
        let mut process = Process::new(server_main, boot).name(format!("SyncManager-{}", next_manager_number()));
        process = process.daemon_with_children();
        if let Some(method) = self.start_method {
            process = process.start_method(method);
        }
        let process = process.start()?;
        if let Some(encoded) = encoded_args {
            encoded.sent();
        }
        let status = state.changed.wait(
            Deadline::after(START_TIMEOUT),
            SPIN,
            || {
                let s = state.status.load(Ordering::Acquire);
                (s != STARTING).then_some(s)
            },
            || if process.is_alive() { Ok(()) } else { Err(()) },
        );
        let started = matches!(status, Ok(s) if s != CLOSED);
        if !started {
            state.set_status(CLOSED);
            // A server that said it could not serve is returning why: let it, rather than
            // kill it and report the kill.
            let reported = if matches!(status, Ok(CLOSED)) { START_TIMEOUT } else { Duration::ZERO };
            let ended = match process.join_timeout(reported) {
                Ok(outcome) => Ok(outcome),
                Err(crate::JoinTimeoutError::Failed(e)) => Err(e),
                Err(crate::JoinTimeoutError::Timeout(process)) => {
                    let _ = process.kill();
                    process.join()
                }
            };
            return Err(match ended {
                Ok(Err(ServerFailure::Initializer(info))) => ManagerError::InitializerPanicked(info),
                Ok(Err(ServerFailure::Start(why))) => ManagerError::Start(why),
                Ok(Ok(())) => ManagerError::Start("the server ended at once".into()),
                Err(e) => ManagerError::Start(e.to_string()),
            });
        }
        let for_types = state.clone();
        {
            // The server has these: no `create` of them needs to register them (one of an
            // earlier type of a name registered twice is refused by the server).
            let mut known = registered().lock().unwrap_or_else(|e| e.into_inner());
            for (name, _, _, type_id, _) in &self.types {
                known.insert((for_types.offset(), name, *type_id));
            }
        }
        let server = Arc::new(ServerProcess {
            state: state.clone(),
            process,
            listen_ip,
            shutdown_timeout: self.shutdown_timeout,
            starter: sys::my_pid(),
        });
        Ok(Manager { origin: Origin::Local(state, Some(server.clone())), server: Some(server) })
    }

    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    /// Connects to the manager serving on the [`address`](ManagerBuilder::address)
    /// (Python's `BaseManager(address, authkey).connect()`), proving knowledge of the
    /// [`authkey`](ManagerBuilder::authkey) (default: the family's), with the connection
    /// and the handshake bounded by the
    /// [`handshake_timeout`](ManagerBuilder::handshake_timeout) and every call by the
    /// [`call_timeout`](ManagerBuilder::call_timeout). The other options are the server's.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Start`] when no address was given (or, without an authkey, when
    /// multiproc is not initialized), and as [`Manager::connect_timeout`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// let manager = multiproc::Manager::builder()
    ///     .address("127.0.0.1:50000")
    ///     .authkey(b"secret")
    ///     .call_timeout(Duration::from_secs(30))
    ///     .connect()?;
    /// let jobs = manager.lookup::<multiproc::QueueProxy<String>>("jobs")?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn connect(self) -> Result<Manager, ManagerError> {
        let Some(address) = self.address.as_deref() else {
            return Err(ManagerError::Start("connect() needs the address of a server".into()));
        };
        let authkey = self.authkey_or_family()?;
        let conn = remote::RemoteConn::connect(address, &authkey, self.limits.handshake_timeout, self.call_timeout)?;
        let manager = Manager { origin: Origin::Remote(conn), server: None };
        manager.origin.call(&Request::Ping)?;
        Ok(manager)
    }

    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    /// Runs the server in this process, serving remote clients on the
    /// [`address`](ManagerBuilder::address), until the process ends (Python's
    /// `manager.get_server().serve_forever()`): the body of a standalone server program.
    /// `on_ready` gets the bound address once it listens.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)]
    /// # struct Counter { n: i64 }
    /// # impl Counter { fn get(&self) -> i64 { self.n } }
    /// # multiproc::managed! { pub proxy CounterProxy for Counter { fn get(&self) -> i64; } }
    /// // The server program: clients connect with Manager::connect.
    /// multiproc::init();
    /// multiproc::Manager::builder()
    ///     .address("127.0.0.1:50000")
    ///     .authkey(b"abracadabra")
    ///     .register::<Counter>()
    ///     .serve(|address| println!("serving on {address}"))?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ManagerError::Start`] when no address was given or it cannot be bound, or
    /// multiproc is not initialized.
    pub fn serve(self, on_ready: impl FnOnce(SocketAddr)) -> Result<(), ManagerError> {
        crate::process::family::config()?;
        let Some(address) = self.address.clone() else {
            return Err(ManagerError::Start("serve() needs an address to listen on".into()));
        };
        let authkey = self.authkey_or_family()?;
        let state = Shared::new(ManagerState::new()?)?;
        state.open()?;
        let mut server = Server::new(state.clone());
        server.limit(&self.limits);
        for (name, _, constructor, _, identity) in &self.types {
            server.register(name, *constructor, *identity);
        }
        let config = remote::ListenConfig::new(authkey, self.max_message_size, self.limits.clone());
        let bound = remote::listen(&address, config, state, server.writers())
            .map_err(|e| ManagerError::Start(format!("cannot listen on {address}: {e}")))?;
        on_ready(bound);
        server.run();
        Ok(())
    }
}

fn not_in_executable() -> ManagerError {
    ManagerError::Start(crate::Error::NotInExecutable.to_string())
}

/// Hands a barrier action over to the server that unpacks it (see `Server::register_action`).
fn action_runner(f: fn(), context: &mut dyn std::any::Any) {
    if let Some(slot) = context.downcast_mut::<Option<fn()>>() {
        *slot = Some(f);
    }
}

fn next_manager_number() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A registration posted: (the server's state's offset, the type's name, the type).
type Registered = (u64, &'static str, TypeId);

/// The registered types this process registered with each local server, or saw it start
/// with: (server, type name, type). Only to post each registration once: the server
/// decides which type a name is (the first registered), and refuses a create or call of
/// another type under it, whichever process sends it (review112 L2).
fn registered() -> &'static Mutex<HashSet<Registered>> {
    static REGISTERED: OnceLock<Mutex<HashSet<Registered>>> = OnceLock::new();
    REGISTERED.get_or_init(Default::default)
}

/// Forgets what a server that ended knew (another may get the same offset).
fn forget_registered(state: &Shared<ManagerState>) {
    registered().lock().unwrap_or_else(|e| e.into_inner()).retain(|(server, _, _)| *server != state.offset());
}

/// Registers `T` with `state`'s server unless this process did (or saw the server start
/// with it). A registration that could not be posted is not marked: the next create tries
/// again (review112 L2).
fn register_with<T: Managed>(state: &Shared<ManagerState>) -> Result<(), ManagerError> {
    let key = (state.offset(), T::NAME, TypeId::of::<T>());
    if !registered().lock().unwrap_or_else(|e| e.into_inner()).insert(key) {
        return Ok(());
    }
    let runner = sys::pack_runner(custom::register_runner::<T>);
    let posted = state.post(&Control::Register { name: T::NAME.to_string(), runner });
    if posted.is_err() {
        registered().lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
    }
    Ok(posted?)
}

impl Manager {
    /// Starts a manager's server process with the default options (Python's
    /// `multiprocessing.Manager()`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Start`] when multiproc is not initialized or the process cannot be
    /// started.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set("ready", true)?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn start() -> Result<Manager, ManagerError> {
        Self::builder().start()
    }

    /// Options for a manager.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder()
    ///     .address("127.0.0.1:0")
    ///     .authkey(b"secret")
    ///     .shutdown_timeout(Duration::from_secs(2))
    ///     .start()?;
    /// println!("serving on {}", manager.address().unwrap());
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            start_method: None,
            address: None,
            authkey: None,
            types: Vec::new(),
            actions: Vec::new(),
            shutdown_timeout: Duration::from_secs(1),
            max_message_size: remote::DEFAULT_MAX_MESSAGE,
            limits: remote::Limits::default(),
            initializer: None,
            call_timeout: None,
        }
    }

    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    /// Connects to a manager serving on `address` (from another process, another
    /// program, another machine), proving knowledge of `authkey` (Python's
    /// `BaseManager(address, authkey).connect()`). The process need not belong to a
    /// family. The connection is this process's: a copy that a `Fork` child got with its
    /// parent's memory (a manager or proxy kept in a static) fails every call with
    /// [`ManagerError::ServerGone`] and, dropped, leaves the parent's connection and
    /// references alone; connect again in the child.
    ///
    /// # Errors
    ///
    /// [`ManagerError::AuthenticationFailed`] for a wrong key (the server goes on,
    /// unaffected), [`ManagerError::Io`] when nothing listens there,
    /// [`ManagerError::Protocol`] when what listens is not a manager,
    /// [`ManagerError::HandshakeTimeout`] when the peer does not complete the handshake within 10 s
    /// (see [`Manager::connect_timeout`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let manager = multiproc::Manager::connect("127.0.0.1:50000", b"secret")?;
    /// let jobs = manager.lookup::<multiproc::QueueProxy<String>>("jobs")?;
    /// jobs.put("hello".into())?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn connect(address: impl ToSocketAddrs, authkey: impl AsRef<[u8]>) -> Result<Manager, ManagerError> {
        Self::connect_timeout(address, authkey, auth::HANDSHAKE_TIMEOUT)
    }

    #[cfg(feature = "remote")]
    #[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
    /// [`Manager::connect`], with the time the connection and the handshake may take
    /// together (`connect` allows 10 s).
    ///
    /// # Errors
    ///
    /// [`ManagerError::HandshakeTimeout`] when nothing answered the connection, or the peer did
    /// not complete the handshake, within `timeout`; otherwise as [`Manager::connect`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiproc::{Manager, ManagerError};
    ///
    /// match Manager::connect_timeout("127.0.0.1:50000", b"secret", Duration::from_secs(2)) {
    ///     Ok(manager) => println!("{} objects", manager.number_of_objects()?),
    ///     Err(ManagerError::HandshakeTimeout(why)) => println!("no manager there: {why}"),
    ///     Err(other) => return Err(other),
    /// }
    /// # Ok::<(), ManagerError>(())
    /// ```
    pub fn connect_timeout(
        address: impl ToSocketAddrs,
        authkey: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<Manager, ManagerError> {
        let conn = remote::RemoteConn::connect(address, authkey.as_ref(), timeout, None)?;
        let manager = Manager { origin: Origin::Remote(conn), server: None };
        manager.origin.call(&Request::Ping)?;
        Ok(manager)
    }

    /// The server's process id (a started manager).
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// assert_ne!(manager.pid(), Some(std::process::id())); // its own process
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(|s| s.process.pid())
    }

    /// The TCP address remote clients connect to: the bound address of a started manager
    /// that listens, the server's address for a connected one.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// assert_eq!(manager.address(), None); // no `ManagerBuilder::address`: family clients only
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn address(&self) -> Option<SocketAddr> {
        match (&self.origin, &self.server) {
            #[cfg(feature = "remote")]
            (Origin::Remote(conn), _) => Some(conn.peer()),
            (_, Some(server)) => {
                let port = server.state.port.load(Ordering::Acquire) as u16;
                (port != 0).then(|| SocketAddr::new(server.listen_ip.unwrap_or(IpAddr::from([127, 0, 0, 1])), port))
            }
            _ => None,
        }
    }

    /// How many objects the server keeps (Python's `_number_of_objects()`): those with a
    /// proxy somewhere, in a container, or published. An object nothing refers to any
    /// more is freed.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<u8, u8>()?;
    /// assert_eq!(manager.number_of_objects()?, 1);
    /// drop(d);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "_number_of_objects")]
    pub fn number_of_objects(&self) -> Result<usize, ManagerError> {
        match self.origin.call(&Request::CountObjects)? {
            Out::Count(n) => Ok(n as usize),
            other => Err(link::unexpected(other)),
        }
    }

    /// Stops the server (Python's `shutdown()`): parked calls are answered with
    /// [`ManagerError::ServerGone`], proxies anywhere get it from now on. Waits up to the
    /// shutdown timeout for the server to end, then kills it. Idempotent. On a connected
    /// manager (from [`Manager::connect`], [`Manager::connect_timeout`] or
    /// [`ManagerBuilder::connect`]) it does nothing and returns `Ok(())`: the server is not
    /// this process's to stop, and the connection stays open, its proxies working, until
    /// the manager and its proxies are dropped (Python's connected manager has no
    /// `shutdown`). The same for a copy that a `Fork` child got with its parent's memory
    /// (the server is the parent's).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Io`] if the server could not be signalled.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<u32, u32>()?;
    /// manager.shutdown()?;
    /// assert!(matches!(d.len(), Err(multiproc::ManagerError::ServerGone { .. })));
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn shutdown(&self) -> Result<(), ManagerError> {
        match &self.server {
            Some(server) => server.shutdown(),
            None => Ok(()),
        }
    }

    fn make(&self, create: Create, kind: Kind) -> Result<ProxyCore, ManagerError> {
        let out = self.origin.call(&Request::Create(create))?;
        ProxyCore::created(&self.origin, out, kind)
    }

    /// The values' items; the values themselves (their proxies) must live until the request
    /// carrying the items is answered: a proxy held nowhere else would otherwise free its
    /// object before the server stores the reference.
    fn items<T: Serialize>(&self, values: &[T]) -> Result<Vec<protocol::Item<u64>>, ManagerError> {
        values.iter().map(|v| self.origin.encode(v)).collect()
    }

    /// A new, empty dict on the server (`manager.dict()`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the server is gone; the same for every factory.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict::<String, f64>()?;
    /// d.insert("pi".into(), 3.14)?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>, ManagerError> {
        Ok(DictProxy::from_core(self.make(Create::Dict(Vec::new()), Kind::Dict)?))
    }

    /// A new dict holding `pairs` (`manager.dict(mapping)`).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict`]; [`ManagerError::Codec`] when a pair does not encode.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let d = manager.dict_from([("a".to_string(), 1), ("b".to_string(), 2)])?;
    /// assert_eq!(d.len()?, 2);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn dict_from<K: Serialize, V: Serialize>(
        &self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<DictProxy<K, V>, ManagerError> {
        let values: Vec<(K, V)> = pairs.into_iter().collect();
        let pairs = values
            .iter()
            .map(|(k, v)| Ok((self.origin.encode(k)?, self.origin.encode(v)?)))
            .collect::<Result<Vec<_>, ManagerError>>()?;
        let made = self.make(Create::Dict(pairs), Kind::Dict);
        drop(values);
        Ok(DictProxy::from_core(made?))
    }

    /// A new, empty set on the server (`manager.set()`).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set::<String>()?;
    /// s.add("first".into())?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn set<T>(&self) -> Result<SetProxy<T>, ManagerError> {
        Ok(SetProxy::from_core(self.make(Create::Set(Vec::new()), Kind::Set)?))
    }

    /// A new set holding `values`, each once (`manager.set(iterable)`).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict_from`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.set_from([1, 2, 2, 3])?;
    /// assert_eq!(s.len()?, 3);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn set_from<T: Serialize>(&self, values: impl IntoIterator<Item = T>) -> Result<SetProxy<T>, ManagerError> {
        let values: Vec<T> = values.into_iter().collect();
        let made = self.make(Create::Set(self.items(&values)?), Kind::Set);
        drop(values);
        Ok(SetProxy::from_core(made?))
    }

    /// A new, empty list on the server (`manager.list()`).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list::<String>()?;
    /// l.push("first".into())?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn list<T>(&self) -> Result<ListProxy<T>, ManagerError> {
        Ok(ListProxy::from_core(self.make(Create::List(Vec::new()), Kind::List)?))
    }

    /// A new list holding `values` (`manager.list(sequence)`).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict_from`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let l = manager.list_from(0..10)?;
    /// assert_eq!(l.len()?, 10);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn list_from<T: Serialize>(&self, values: impl IntoIterator<Item = T>) -> Result<ListProxy<T>, ManagerError> {
        let values: Vec<T> = values.into_iter().collect();
        let made = self.make(Create::List(self.items(&values)?), Kind::List);
        drop(values);
        Ok(ListProxy::from_core(made?))
    }

    /// A new namespace (`manager.Namespace()`).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let ns = manager.namespace()?;
    /// ns.set("x", 1)?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "Namespace")]
    pub fn namespace(&self) -> Result<NamespaceProxy, ManagerError> {
        Ok(NamespaceProxy::from_core(self.make(Create::Namespace, Kind::Namespace)?))
    }

    /// A new value (`manager.Value(typecode, value)`).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict_from`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let v = manager.value(3.5f64)?;
    /// assert_eq!(v.get()?, 3.5);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "Value")]
    pub fn value<T: Serialize>(&self, value: T) -> Result<ValueProxy<T>, ManagerError> {
        let item = self.origin.encode(&value)?;
        Ok(ValueProxy::from_core(self.make(Create::Value(item), Kind::Value)?))
    }

    /// A new fixed-length array (`manager.Array(typecode, sequence)`).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict_from`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let a = manager.array([0u8; 4])?;
    /// assert_eq!(a.len()?, 4);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "Array")]
    pub fn array<T: Serialize>(&self, values: impl IntoIterator<Item = T>) -> Result<ArrayProxy<T>, ManagerError> {
        let values: Vec<T> = values.into_iter().collect();
        let made = self.make(Create::Array(self.items(&values)?), Kind::Array);
        drop(values);
        Ok(ArrayProxy::from_core(made?))
    }

    /// A new unbounded queue (`manager.Queue()`).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.queue::<u32>()?;
    /// q.put(1)?;
    /// assert_eq!(q.get()?, 1);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "Queue")]
    pub fn queue<T>(&self) -> Result<QueueProxy<T>, ManagerError> {
        self.queue_bounded(0)
    }

    /// A new queue holding at most `maxsize` items (`manager.Queue(maxsize)`; 0: no
    /// bound).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.queue_bounded::<u32>(1)?;
    /// q.put(1)?;
    /// assert!(q.try_put(2).is_err());
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn queue_bounded<T>(&self, maxsize: usize) -> Result<QueueProxy<T>, ManagerError> {
        let create = Create::Queue { maxsize: maxsize as u64, joinable: false };
        Ok(QueueProxy::from_core(self.make(create, Kind::Queue)?))
    }

    /// A new joinable queue (`manager.JoinableQueue()`).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.joinable_queue::<u32>()?;
    /// q.put(1)?;
    /// q.get()?;
    /// q.task_done()?;
    /// q.join()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "JoinableQueue")]
    pub fn joinable_queue<T>(&self) -> Result<JoinableQueueProxy<T>, ManagerError> {
        let create = Create::Queue { maxsize: 0, joinable: true };
        Ok(JoinableQueueProxy::from_core(self.make(create, Kind::JoinableQueue)?))
    }

    /// A new lock (`manager.Lock()`).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let lock = manager.lock()?;
    /// let _held = lock.acquire()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "Lock")]
    pub fn lock(&self) -> Result<LockProxy, ManagerError> {
        Ok(LockProxy::from_core(self.make(Create::Lock, Kind::Lock)?))
    }

    /// A new recursive lock (`manager.RLock()`).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let lock = manager.rlock()?;
    /// lock.acquire()?;
    /// lock.acquire()?;
    /// lock.release()?;
    /// lock.release()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "RLock")]
    pub fn rlock(&self) -> Result<RLockProxy, ManagerError> {
        Ok(RLockProxy::from_core(self.make(Create::RLock, Kind::RLock)?))
    }

    /// A new semaphore (`manager.Semaphore(value)`).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.semaphore(3)?;
    /// s.acquire()?;
    /// assert_eq!(s.get_value()?, 2);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "Semaphore")]
    pub fn semaphore(&self, value: u32) -> Result<SemaphoreProxy, ManagerError> {
        let create = Create::Semaphore { value: value.into(), bounded: false };
        Ok(SemaphoreProxy::from_core(self.make(create, Kind::Semaphore)?))
    }

    /// A new bounded semaphore (`manager.BoundedSemaphore(value)`): releasing above
    /// `value` is an error.
    ///
    /// # Errors
    ///
    /// As [`Manager::dict`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let s = manager.bounded_semaphore(1)?;
    /// assert!(s.release().is_err());
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "BoundedSemaphore")]
    pub fn bounded_semaphore(&self, value: u32) -> Result<SemaphoreProxy, ManagerError> {
        let create = Create::Semaphore { value: value.into(), bounded: true };
        Ok(SemaphoreProxy::from_core(self.make(create, Kind::BoundedSemaphore)?))
    }

    /// A new event (`manager.Event()`).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let e = manager.event()?;
    /// e.set()?;
    /// assert!(e.is_set()?);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "Event")]
    pub fn event(&self) -> Result<EventProxy, ManagerError> {
        Ok(EventProxy::from_core(self.make(Create::Event, Kind::Event)?))
    }

    /// A new condition with its own recursive lock (`manager.Condition()`).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let c = manager.condition()?;
    /// c.acquire()?.notify(1)?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "Condition")]
    pub fn condition(&self) -> Result<ConditionProxy, ManagerError> {
        Ok(ConditionProxy::from_core(self.make(Create::Condition, Kind::Condition)?))
    }

    /// A new barrier for `parties` parties (`manager.Barrier(parties)`).
    ///
    /// # Errors
    ///
    /// As [`Manager::dict`]; [`ManagerError::InvalidArgument`] for zero parties (as the
    /// family's [`Barrier::new`](crate::Barrier::new)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let b = manager.barrier(1)?;
    /// assert_eq!(b.wait()?, 0);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    #[doc(alias = "Barrier")]
    pub fn barrier(&self, parties: usize) -> Result<BarrierProxy, ManagerError> {
        self.barrier_with(parties, None, None)
    }

    /// A new barrier for `parties` parties with an action and a default timeout
    /// (`manager.Barrier(parties, action, timeout)`). As in Python, the action runs in the
    /// server process, when the last party arrives and before any is released; it is named
    /// by what it was registered as with [`ManagerBuilder::barrier_action`] (only a
    /// function of the server's own program can run there). A panicking action breaks the
    /// barrier: every party gets [`ManagerError::BrokenBarrier`]. `wait()` waits at most
    /// `timeout`, when given.
    ///
    /// # Errors
    ///
    /// As [`Manager::barrier`]; [`ManagerError::UnknownMethod`] when no action of that
    /// name was registered.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// fn tripped() {
    ///     println!("everyone is here"); // printed by the server process
    /// }
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder().barrier_action("tripped", tripped).start()?;
    /// let b = manager.barrier_with(1, Some("tripped"), Some(Duration::from_secs(5)))?;
    /// assert_eq!(b.wait()?, 0);
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn barrier_with(
        &self,
        parties: usize,
        action: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<BarrierProxy, ManagerError> {
        if parties == 0 {
            // The server refuses it too (a raw request's), as malformed.
            return Err(ManagerError::InvalidArgument("a barrier needs at least one party"));
        }
        let create = Create::Barrier {
            parties: parties as u64,
            timeout: timeout.and_then(handle::wait_for),
            action: action.map(str::to_string),
        };
        Ok(BarrierProxy::from_core(self.make(create, Kind::Barrier)?))
    }

    /// Moves `value` to the server and returns its proxy (Python's
    /// `manager.<typeid>(...)` for a type registered with `BaseManager.register`). A
    /// family client registers `T` with a local server by itself; a remote server must
    /// have registered it ([`ManagerBuilder::register`]).
    ///
    /// # Errors
    ///
    /// [`ManagerError::UnknownType`] when the server does not know `T`;
    /// [`ManagerError::InvalidArgument`] when `value` holds a proxy of this manager
    /// (unsupported: its methods run on the server, where a proxy of that server could not
    /// be called); [`ManagerError::ForeignProxy`] when it holds one of another manager;
    /// [`ManagerError::TypeMismatch`] when the server has another type under `T`'s
    /// [`Managed::NAME`] (two types named `Stats` as written, in two modules, whichever
    /// process created the first: give one a name of its own with `as "name"`; or, for a
    /// remote client, a type that is not the server's: see [`ManagerError::TypeMismatch`]);
    /// and as [`Manager::dict_from`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize)]
    /// struct Greeter { greeting: String }
    ///
    /// impl Greeter {
    ///     fn greet(&self, name: String) -> String { format!("{} {name}", self.greeting) }
    /// }
    ///
    /// multiproc::managed! {
    ///     pub proxy GreeterProxy for Greeter { fn greet(&self, name: String) -> String; }
    /// }
    ///
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let g: GreeterProxy = manager.create(Greeter { greeting: "hello".into() })?;
    /// assert_eq!(g.greet("bob".into())?, "hello bob");
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn create<T: Managed>(&self, value: T) -> Result<T::Proxy, ManagerError> {
        let family = match &self.origin {
            Origin::Local(state, _) => {
                register_with::<T>(state)?;
                true
            }
            #[cfg(feature = "remote")]
            Origin::Remote(_) => false,
        };
        let item = self.origin.encode(&value)?;
        if !item.refs.is_empty() {
            return Err(ManagerError::InvalidArgument(custom::HOLDS_A_PROXY));
        }
        let fingerprint = custom::fingerprint::<T>(family);
        let create = Create::Custom { type_name: T::NAME.to_string(), fingerprint, value: item };
        let core = self.make(create, Kind::Custom)?;
        Ok(T::Proxy::from(ObjectProxy::from_core(core)))
    }

    /// Publishes a proxy under `name`, for other clients to [`lookup`](Manager::lookup)
    /// (what Python does with `register('name', callable=lambda: obj)` on a server
    /// program). The server keeps the object while it is published.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ForeignProxy`] for a proxy of another manager, and as
    /// [`Manager::dict`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let manager = multiproc::Manager::builder().address("127.0.0.1:0").authkey(b"k").start()?;
    /// manager.publish("jobs", &manager.queue::<String>()?)?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn publish<P: Serialize>(&self, name: &str, proxy: &P) -> Result<(), ManagerError> {
        let op = Op::DictSet(self.origin.encode(name)?, self.origin.encode(proxy)?);
        self.origin.call(&Request::Call { id: REGISTRY, kind: Kind::Dict, op }).map(drop)
    }

    /// The proxy published under `name`, `P` being its type.
    ///
    /// # Errors
    ///
    /// [`ManagerError::NotPublished`] if nothing is, [`ManagerError::Codec`] when what is
    /// published there is not a `P`, and as [`Manager::dict`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let manager = multiproc::Manager::connect("127.0.0.1:50000", b"k")?;
    /// let jobs = manager.lookup::<multiproc::QueueProxy<String>>("jobs")?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn lookup<P: DeserializeOwned>(&self, name: &str) -> Result<P, ManagerError> {
        let op = Op::DictGet(self.origin.encode(name)?);
        match self.origin.call(&Request::Call { id: REGISTRY, kind: Kind::Dict, op })? {
            Out::MaybeItem(Some(item)) => self.origin.decode(item),
            Out::MaybeItem(None) => Err(ManagerError::NotPublished(name.to_string())),
            other => Err(link::unexpected(other)),
        }
    }
}

#[cfg(test)]
mod probe {
    use super::*;

    /// `PROBE_N` (10,000) round trips of a dict's set, then as many gets, with the server
    /// on a thread of this process: the manager's instruction counts under callgrind, which
    /// cannot start a server process (valgrind 3.19 does not know `pidfd_open`). Not run by
    /// default; `cargo test --release --lib probe_dict --no-run`, then the test binary under
    /// `valgrind --tool=callgrind --separate-threads=yes BINARY --ignored probe_dict`: one
    /// file per thread, the client's and the server's (perf102).
    #[test]
    #[ignore]
    fn probe_dict_round_trips_in_threads() {
        let n: i64 = std::env::var("PROBE_N").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
        let state = Shared::new(state::ManagerState::new().unwrap()).unwrap();
        state.open().unwrap();
        let for_server = state.clone();
        let server = std::thread::spawn(move || server::Server::new(for_server).run());
        let manager = Manager { origin: Origin::Local(state.clone(), None), server: None };
        let d = manager.dict::<i64, i64>().unwrap();
        for i in 0..200 {
            d.insert(i, i).unwrap();
            d.get(&i).unwrap();
        }
        let t0 = std::time::Instant::now();
        for i in 0..n {
            d.insert(i, i).unwrap();
        }
        let t1 = std::time::Instant::now();
        for i in 0..n {
            std::hint::black_box(d.get(&i).unwrap());
        }
        let t2 = std::time::Instant::now();
        eprintln!("set {:?}/op get {:?}/op", (t1 - t0) / n as u32, (t2 - t1) / n as u32);
        drop(d);
        let _ = state.post(&state::Control::Shutdown);
        server.join().unwrap();
    }
}
