//! The driver of a cluster [`Pool`](crate::Pool): the engine behind
//! `Pool::builder().cluster(url)`. Chunks go to the pool's task stream (at most
//! [`ClusterOptions::max_in_flight`] at once, the rest wait here), results come back on
//! the pool's results list; the driver thread reads them (trimmed off the list by its next
//! read, so that a read whose reply is lost loses no result), delivers each task's first
//! result and drops later ones (delivery is at-least-once, results are deduplicated by
//! task id), takes back the entries of nodes that stopped heartbeating (`XAUTOCLAIM`)
//! and queues them again, up to [`ClusterOptions::max_deliveries`] times. The chunks of a
//! cancelled call (a `map` whose first task failed, `AsyncResult::cancel`) are taken out
//! of the stream; a node already running one finishes it and its result is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use super::key::{Seal, Secret, TAG, sealed_bound};
use super::link::{Conn, LEAST_BULK_BOUND, Link, server_bound_why, too_large_to_send};
use super::wire::{
    ADD_TASKS, BIRTH, Failure, GROUP, POOLS, PoolKeys, READ_RESULTS, ResultMsg, TaskMsg, id_of, is_node_name, key_ttl,
    new_pool_id, too_large,
};
use super::{ClusterError, Tls};
use crate::codec;
use crate::pool::engine::{Delivery, Engine, Job};
use crate::pool::result::Helper;
use crate::pool::stats::Counters;
use crate::pool::{PoolError, TaskError};
use crate::shm::crash::{crash_point, fail_point};
use crate::shm::{Deadline, Payload, TakenIn};

const RUNNING: u8 = 0;
const CLOSED: u8 = 1;
const TERMINATED: u8 = 2;

/// The longest the driver thread blocks on the results list before it looks at its
/// heartbeat and its queue again.
const POLL: Duration = Duration::from_millis(50);

/// The most results the driver thread reads at once.
const READ: usize = 512;

/// How a cluster pool's driver treats its tasks (see
/// [`PoolBuilder::cluster_options`](crate::PoolBuilder::cluster_options)).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use multiproc::{Pool, cluster::ClusterOptions};
///
/// multiproc::init();
/// let pool = Pool::builder()
///     .cluster("redis://redis.example:6379/0")
///     .cluster_options(ClusterOptions::new().lease(Duration::from_secs(5)).max_deliveries(2))
///     .build()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ClusterOptions {
    lease: Duration,
    max_deliveries: u32,
    max_in_flight: Option<usize>,
    timeout: Duration,
    max_message_size: usize,
    authkey: Option<Secret>,
    tls: Option<Tls>,
}

/// The default of [`ClusterOptions::max_message_size`]: 64 MiB, as a cluster queue's.
const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

impl Default for ClusterOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterOptions {
    /// The defaults: a lease of 10 s, 3 deliveries, 64 chunks in flight per worker, a
    /// Redis timeout of 5 s, results of at most 64 MiB.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::cluster::ClusterOptions;
    ///
    /// let pool = multiproc::Pool::builder()
    ///     .cluster("redis://127.0.0.1/")
    ///     .cluster_options(ClusterOptions::new())
    ///     .build()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new() -> Self {
        Self {
            lease: Duration::from_secs(10),
            max_deliveries: 3,
            max_in_flight: None,
            timeout: Duration::from_secs(5),
            max_message_size: DEFAULT_MAX_MESSAGE,
            authkey: None,
            tls: None,
        }
    }

    /// The cluster key (Python's `authkey`): every task carries an HMAC-SHA256 under it,
    /// which a node checks before it decodes anything of the task, so that whoever can
    /// write to the pool's keys in Redis cannot choose what a node runs; and every result
    /// carries one, bound to the pool and the task, which the driver checks before it
    /// decodes anything of the result (one that does not check fails its task with
    /// [`TaskError::Unauthenticated`]). A node with
    /// another key refuses the pool's tasks ([`TaskError::Unauthenticated`]); give the
    /// nodes the same one ([`ServeOptions::authkey`](super::ServeOptions::authkey), or
    /// the environment).
    ///
    /// The key must be random, and at least 16 bytes: anyone who can read Redis sees the
    /// tags and may test guesses of the key offline at HMAC speed, so a passphrase is
    /// not enough. A shorter key is refused ([`ClusterError::Key`]) rather than stretched:
    /// stretching (a slow hash of a passphrase) would slow each guess, but a short or
    /// guessable passphrase stays guessable, and the key file's default (32 random bytes,
    /// 64 hex digits) and `openssl rand -hex 32` need none.
    ///
    /// Default: the environment variable [`KEY_ENV`](super::KEY_ENV) (`MULTIPROC_CLUSTER_KEY`,
    /// its bytes), else the user's key file, `$XDG_CONFIG_HOME/multiproc/cluster.key` or
    /// `~/.config/multiproc/cluster.key` (its content, trailing white space left out),
    /// made with a random key on first use and readable by its owner only. A driver and
    /// nodes of one user on one machine so share a key without ceremony; on other
    /// machines, copy the file, or set the variable to its content. A key shorter than 16
    /// bytes, or a key file that other users may read or that another user owns, fails the
    /// pool's build with [`ClusterError::Key`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::cluster::ClusterOptions;
    ///
    /// // The nodes run with MULTIPROC_CLUSTER_KEY=9f86d081884c7d659a2feaa0c55ad015 (`openssl rand -hex 16`).
    /// let pool = multiproc::Pool::builder()
    ///     .cluster("redis://redis.example:6379/0")
    ///     .cluster_options(ClusterOptions::new().authkey("9f86d081884c7d659a2feaa0c55ad015"))
    ///     .build()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> Self {
        self.authkey = Some(Secret::new(key.as_ref()));
        self
    }

    /// The certificates of a `rediss://` URL's connections (see [`Tls`]): a private CA that
    /// signed the server's certificate, and a client certificate for a server that asks for
    /// one (default: the system's authorities, or instead those of the file or directory
    /// `SSL_CERT_FILE` or `SSL_CERT_DIR` names where the environment sets one; no client
    /// certificate). Given for a URL that is not `rediss://`, the build fails with
    /// [`ClusterError::BadUrl`]. The nodes take theirs from
    /// [`ServeOptions::tls`](super::ServeOptions::tls).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::cluster::{ClusterOptions, Tls};
    ///
    /// let ca = std::fs::read("/etc/redis/ca.pem")?;
    /// let pool = multiproc::Pool::builder()
    ///     .cluster("rediss://driver:secret@redis.example:6380/0")
    ///     .cluster_options(ClusterOptions::new().tls(Tls::new().ca_pem(ca)))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The largest result (a chunk's, encoded, with the task's id: its result message) the
    /// driver takes from Redis (default 64 MiB, as a cluster queue's `max_message_size`;
    /// the 32-byte tag under the cluster key comes on top, as on a queue's item). A larger
    /// one fails its task with
    /// [`TaskError::Codec`] instead of being read (Redis itself leaves it out of the
    /// driver's read), and what the driver reads at once is at most this much besides:
    /// a program that writes to the pool's results list cannot make the driver allocate
    /// more (bar the one item a wait for results returns, dropped at once if too large).
    /// A task (a chunk's arguments, encoded, with what names its function) above it is
    /// refused at submission with [`PoolError::Codec`] (a lazy map's chunk fails with
    /// [`TaskError::Codec`]). Redis closes the connection on an argument above its
    /// `proto-max-bulk-len` (512 MB by default) or `client-query-buffer-limit`, which the
    /// pool cannot tell from Redis gone: the driver reads both when the pool starts
    /// (`CONFIG GET`), and again on each new connection (a restarted Redis may have
    /// others), and bounds tasks and results by the smaller too, a refused task's error
    /// naming it (a task accepted under a larger bound that waits when a smaller one is
    /// read fails with [`TaskError::Codec`]). Where `CONFIG GET` is refused (an ACL without `@admin`, as the one
    /// the [module](super) documents, or a managed server), Redis's default of 512 MB is
    /// taken, and a task above Redis's least bound (1 MB) is sent alone: one on which Redis
    /// closes the connection three times while it answers `PING` fails with
    /// [`TaskError::Codec`], and the pool goes on (a node's result so fails with
    /// [`TaskError::Cluster`]).
    ///
    /// # Examples
    ///
    /// ```
    /// // Results above 1 MiB are errors; the driver reads at most about 1 MiB at once.
    /// let options = multiproc::cluster::ClusterOptions::new().max_message_size(1 << 20);
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes.max(1);
        self
    }

    /// A task whose node stopped heartbeating for this long (killed, cut off) is taken
    /// back and queued again (nodes heartbeat every third of it). At least 100 ms, at most
    /// a hundred years (a longer one, such as `Duration::MAX`, is that).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// // A node silent for 2 s has its tasks queued again for the others.
    /// let options = multiproc::cluster::ClusterOptions::new().lease(Duration::from_secs(2));
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.clamp(Duration::from_millis(100), super::MAX_LEASE);
        self
    }

    /// A task delivered this many times without an answer (its nodes died under it, or
    /// handed it back because their local pools stopped starting workers: see
    /// [`serve`](super::serve)) fails with [`TaskError::WorkerLost`] instead of being queued
    /// again. At least 1. A task that no node takes waits for one: a driver cannot tell a
    /// node not started yet from none at all (`AsyncResult::get_timeout` bounds the wait).
    ///
    /// # Examples
    ///
    /// ```
    /// // A task that killed two nodes fails with `WorkerLost` instead of killing a third.
    /// let options = multiproc::cluster::ClusterOptions::new().max_deliveries(2);
    /// ```
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = n.max(1);
        self
    }

    /// Chunks in the task stream at most (default: 64 per worker of
    /// [`PoolBuilder::processes`](crate::PoolBuilder::processes)); the others wait in the
    /// driver, so an endless `imap` stays bounded in Redis too. At least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = multiproc::cluster::ClusterOptions::new().max_in_flight(16);
    /// ```
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n.max(1));
        self
    }

    /// How long Redis may stay unreachable or silent before every unfinished task fails
    /// with [`TaskError::Cluster`] and the pool stops (default 5 s). A TLS failure that
    /// heals (the server's certificate not valid yet, or expired: a clock set wrong) is
    /// waited out as long; one that does not (a certificate no trusted authority signed, a
    /// server that speaks no TLS), met again on a fresh connection, stops the pool at once
    /// with [`ClusterError::Tls`].
    ///
    /// A connect waits at most the timeout (zero is taken as 1 ms). A whole open (resolving the
    /// host, connecting to each of its addresses, the TLS handshake, `AUTH`) and each command
    /// (sending it and reading its reply, however large) end within a second more than the timeout
    /// of their start (the longest a blocking command of the pool's blocks), plus a second for each
    /// MiB they move: a large task or a read of large results crosses any link of 1 MiB/s or more
    /// (bytes the system's buffers take at once count as moved), and a peer that takes it slower
    /// than that is given up. A name server that has not answered by then is left behind (its
    /// lookup goes on, on a thread of its own that the opens of that host share while it is young,
    /// a few at most; while it is listed, a `Fork` start is refused as with any other thread; if no
    /// thread can be started, the open resolves the name itself, untimed).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let options = multiproc::cluster::ClusterOptions::new().timeout(Duration::from_secs(30));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

struct Sent {
    chunk: usize,
    items: usize,
    delivery: Arc<dyn Delivery>,
    entry: String,
    /// The tag of the birth of the stream the entry was added to (see `wire::BIRTH`).
    born: String,
    /// The encoded [`TaskMsg`] and its tag, to queue again.
    message: Vec<u8>,
    deliveries: u32,
}

/// A chunk that waits in the driver: task id, chunk, items, delivery, encoded [`TaskMsg`]
/// followed by its tag under the cluster key ([`TAG`] bytes), deliveries (1, or more for one taken back from a node that stopped heartbeating).
type Waiting = (u64, usize, usize, Arc<dyn Delivery>, Vec<u8>, u32);

/// An outcome to deliver.
type Outcome = (Arc<dyn Delivery>, usize, Result<Payload, TaskError>);

#[derive(Default)]
struct Books {
    pending: VecDeque<Waiting>,
    sent: HashMap<u64, Sent>,
    /// Stream entry id -> task id.
    entries: HashMap<String, u64>,
    /// Since when Redis has refused every task sent for want of memory.
    full_since: Option<Instant>,
    /// A large task sent alone whose sends lost the connection while Redis answered `PING`
    /// right after, and how many times (see [`DROPPED_SENDS`]).
    dropped: Option<(u64, u32)>,
    /// `join` was called: an `imap` counted in [`Driver::streams`] sends nothing more.
    joining: bool,
}

/// Redis's least `proto-max-bulk-len` (1 MB): a task above it may be one the server
/// closes the connection on. Where the server's bound is not known (`CONFIG GET`
/// refused), such a task is sent alone, so that a connection lost on it is told apart.
const MIN_BULK: usize = 1 << 20;

/// The most bytes of tasks (their messages and tags, and [`ARG_FRAME`] each) one
/// `ADD_TASKS` carries, unless it carries one task: the least bound any Redis puts on an
/// argument (1 MB), which keeps a whole command within every query buffer and far below a
/// sane `maxmemory-clients`. A batch of tasks this large costs its command's overhead once
/// per megabyte: no measurable cost.
const BATCH_BYTES: usize = LEAST_BULK_BOUND;

/// What a task's two arguments (message, tag) cost besides their bytes in a command: their
/// RESP headers and line ends, rounded up.
const ARG_FRAME: usize = 32;

/// Sends of one large task, alone, that may lose the connection of a Redis that answers
/// `PING` right after before the task is taken as above the server's bound (as a node's
/// pushes of a result).
const DROPPED_SENDS: u32 = 3;

pub(crate) struct Driver {
    id: String,
    keys: PoolKeys,
    workers: usize,
    default_timeout: Option<Duration>,
    options: ClusterOptions,
    in_flight: usize,
    /// The largest task and result message sent through Redis (see [`Bounds`]).
    /// Read again on each new connection of a link that sends tasks (see `flush`).
    bounds: Mutex<Bounds>,
    /// Held across each reading of the server's bound on either link, with its stamp
    /// ([`Driver::read_bound`]): two readings are never taken at once, so of a reading of a
    /// server before its restart and one after, the later is stamped newer (no reading is
    /// taken under `books`, which the driver thread and submissions share, taken after
    /// this one is let go).
    reading: Mutex<()>,
    build: u128,
    /// Tags each task under the cluster key.
    seal: Seal,
    counters: Arc<Counters>,
    state: AtomicU8,
    next_id: AtomicU64,
    /// The `imap`s made while the pool ran that may send more ([`Engine::stream_opened`]):
    /// their chunks are taken after `close` until `join`, as a local pool takes them (aud91
    /// H2), and the driver thread goes on for them.
    streams: AtomicUsize,
    books: Mutex<Books>,
    /// The stream's birth last seen, which the scripts that look it up try first. A hint
    /// only, apart from the books: the beat never waits for a submitter's flush.
    born: Mutex<Birth>,
    /// The connection of the submitting threads (the driver thread has its own).
    link: Mutex<Link>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The driver thread's id, kept apart from its handle (which the first `join` takes):
    /// a `join` on that thread (a callback's) is `JoinFromWorker`, whoever holds the handle.
    driver_thread_id: OnceLock<ThreadId>,
    /// Held through `join`: a second joiner waits for the first, then finds no handle and
    /// returns, after the driver thread ended, not before (review133 M2). The driver thread
    /// never takes it.
    joins: Mutex<()>,
    /// Why the driver stopped by itself (Redis failed).
    failure: Mutex<Option<ClusterError>>,
    /// The process that started the pool. A copy that fork made in a child (a pool kept in
    /// a static) has no driver thread, and its tasks would carry the parent's pool's ids:
    /// it is closed there, and `join` waits for nothing.
    made_in: TakenIn,
}

/// A reading of the server's bound and its stamp ([`Link::stamped_bulk_bound`]).
type Reading = (u64, super::link::Told);

/// The largest task the driver sends and the largest result message a node may push: the
/// pool's `max_message_size`, or less where the server would close the connection on such
/// an argument (its `proto-max-bulk-len`, read when the pool starts and on each new
/// connection of a link that sends tasks), which the driver would take for Redis gone,
/// ending the pool.
struct Bounds {
    /// The largest encoded [`TaskMsg`] (sent alone as one argument, its tag as another).
    task: usize,
    /// The largest result message (pushed with its tag as one argument: [`TAG`] less).
    result: usize,
    /// What bounds a task, for its refusal: "the pool's max_message_size (N)", or the
    /// server's setting and value.
    why: String,
    /// Whether the server told its bound: else a task above [`MIN_BULK`] is sent alone.
    known: bool,
    /// What the server told (its bound and the setting's name), as last read.
    told: Option<(u64, &'static str)>,
    /// The stamp of that reading (`Link::stamped_bulk_bound`; 0: none): only a newer
    /// reading replaces it. The pool's two links each keep their own reading, and the
    /// submission link's, kept on a connection a restart killed (it seems open until
    /// something is sent on it), would otherwise replace the driver thread's fresh one
    /// with the old server's bound, and fail tasks the new server takes.
    stamp: u64,
}

/// Redis's default `proto-max-bulk-len` (512 MB), taken as the server's where it does not
/// tell its own (`CONFIG GET` refused by an ACL without `@admin`, or renamed).
const DEFAULT_BULK: u64 = 512 << 20;

impl Bounds {
    /// The smaller of the pool's `max` and the server's bound (read on `link`; unknown
    /// where it cannot be).
    fn read(max: usize, link: &mut Link) -> Bounds {
        let (stamp, told) = link.stamped_bulk_bound().unwrap_or((0, None));
        Bounds { stamp, ..Bounds::new(max, told) }
    }

    /// The smaller of the pool's `max` and the bound the server `told`.
    fn new(max: usize, told: Option<(u64, &'static str)>) -> Bounds {
        let known = told.is_some();
        let (server, what) = match told {
            Some((bound, name)) => (bound, server_bound_why(bound, name)),
            None => (
                DEFAULT_BULK,
                format!(
                    "Redis's default proto-max-bulk-len ({DEFAULT_BULK}; the server's own was not told: CONFIG GET refused)"
                ),
            ),
        };
        let server = usize::try_from(server).unwrap_or(usize::MAX);
        let result = max.min(server.saturating_sub(TAG)).max(1);
        if server < max {
            Bounds { task: server.max(1), result, why: what, known, told, stamp: 0 }
        } else {
            Bounds { task: max, result, why: format!("the pool's max_message_size ({max})"), known, told, stamp: 0 }
        }
    }
}

/// [`TaskError::Unauthenticated`]'s `node` where the driver refused a result whose tag did
/// not check (written to Redis by someone without the key, or changed there).
pub(crate) const UNCHECKED_RESULT: &str = "the driver";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The codes of Redis's refusal (`OOM`, `BUSYGROUP`...): one per refused command of a
/// pipeline, or the one of a command or script; none when the failure was not Redis's
/// answer (a lost connection, a reply of another type).
fn refusal_codes(e: &redis::RedisError) -> Vec<String> {
    let errors = e.clone().into_server_errors().unwrap_or_default();
    errors.iter().map(|(_, error)| error.code().to_owned()).collect()
}

/// Runs `f` on `link`; a failure comes with the codes of Redis's refusal
/// ([`refusal_codes`]): decided on them, not on the error's text.
fn run_coded<R>(
    link: &mut Link,
    f: impl FnOnce(&mut Conn) -> redis::RedisResult<R>,
) -> Result<R, (ClusterError, Vec<String>)> {
    let mut codes = Vec::new();
    link.run(|c| f(c).inspect_err(|e| codes = refusal_codes(e))).map_err(|e| (e, codes))
}

/// Whether Redis refused for want of memory (`maxmemory` with `noeviction`) and for
/// nothing else: every refused command was refused `OOM`. Commands that may take memory
/// are refused, those that free it or take none still run.
fn out_of_memory(codes: &[String]) -> bool {
    !codes.is_empty() && codes.iter().all(|code| code == "OOM")
}

/// The birth of a pool's stream as a driver last saw it (`wire::BIRTH`).
#[derive(Clone, Default)]
struct Birth {
    /// Its tag (empty: none seen yet).
    tag: String,
    /// The newest entry this driver added under it (empty: none), which proves the stream is
    /// still of that birth while an entry up to it is there (`born_lua`).
    witness: String,
}

impl Birth {
    /// Sees the tag `tag`, and `added` (the newest entry just added under it).
    fn saw(&mut self, tag: &str, added: Option<&String>) {
        if self.tag != tag {
            self.tag = tag.to_owned();
            self.witness.clear();
        }
        if let Some(added) = added {
            self.witness.clone_from(added);
        }
    }
}

/// A fresh tag for the birth of a pool's stream, used only by the script that makes it.
fn birth_tag() -> String {
    format!("{:016x}", u64::from_ne_bytes(crate::sys::random_bytes::<8>()))
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

impl Driver {
    /// [`Engine::submit`]; `streamed`: a chunk of an `imap` counted in [`Driver::streams`],
    /// also taken after `close`, until `join`.
    fn submit_as(&self, job: Job, streamed: bool) -> Result<(), PoolError> {
        if !self.made_in.is_here() {
            return Err(PoolError::Closed);
        }
        let open = self.running() || (streamed && self.state.load(Ordering::Acquire) == CLOSED);
        if !open {
            // Stopped because Redis failed, or closed by the user.
            return Err(lock(&self.failure).clone().map_or(PoolError::Closed, PoolError::Cluster));
        }
        // Tests: the window between the look above and `books` (review131 H2).
        crash_point!("cluster.pool.submit.checked");
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let result_bound = lock(&self.bounds).result;
        let message = TaskMsg {
            id,
            build: self.build,
            call: job.call,
            timeout_ms: job.timeout.map(ms),
            lease_ms: ms(self.options.lease),
            max_result: result_bound as u64,
            args: job.args.bytes().to_vec(),
        };
        let mut encoded = codec::encode(&message)?;
        let mut bytes = std::mem::take(&mut encoded.bytes);
        encoded.sent();
        // A task is bounded as a result is, and by the server's bound: Redis refuses a
        // larger argument by closing the connection (its `proto-max-bulk-len`), which the
        // driver would take for Redis gone.
        let bounds = lock(&self.bounds);
        if bytes.len() > bounds.task {
            return Err(PoolError::Codec(too_large_to_send("a task", bytes.len(), &bounds.why)));
        }
        drop(bounds);
        let tag = self.seal.tag(&self.id, &bytes);
        bytes.extend_from_slice(&tag);
        // Tests: the window between the bounds read above and `books` (review131 L1).
        crash_point!("cluster.pool.submit.sealed");
        let mut books = lock(&self.books);
        // Again under `books`: a `terminate` since has failed what waited, and a `close`
        // since may have let the driver thread, finding the pool idle, end (review131 H2).
        // The driver's `idle()` looks under `books`: if it came before this, it had loaded
        // `CLOSED` (the close's store, its load, its unlock, this lock), and this load sees
        // `CLOSED` too; if after, it finds the chunk in `pending` and stays. A streamed
        // chunk of an `imap` made before the close is counted (the thread stays for it)
        // until a `join` begins.
        let state = self.state.load(Ordering::Acquire);
        if state == TERMINATED || (state == CLOSED && (!streamed || books.joining)) {
            return Err(PoolError::Closed);
        }
        // The bounds again, under `books`: a reading applied since (the driver thread's,
        // under `books`) re-encoded the tasks then waiting, not this one (review131 L1: it
        // kept the old result bound, and its node pushed a result Redis refused).
        let bounds = lock(&self.bounds);
        if bounds.result != result_bound {
            self.bound_result(&mut bytes, bounds.result);
        }
        if bytes.len() - TAG > bounds.task {
            return Err(PoolError::Codec(too_large_to_send("a task", bytes.len() - TAG, &bounds.why)));
        }
        drop(bounds);
        books.pending.push_back((id, job.chunk, job.items, job.delivery, bytes, 1));
        if books.sent.len() < self.in_flight {
            drop(books);
            let mut link = lock(&self.link);
            // The bound is read (an exchange where the link's connection is new or absent)
            // before `books` is taken, so the driver thread does not wait on it. Where it
            // cannot be read (Redis away), or the driver thread is reading its own, nothing
            // is sent here: the chunk waits for the driver thread, and a submission waits one
            // exchange at most, not that one and a send (review122 L4). `link` is only ever
            // taken before `books` (here; the driver thread has a link of its own).
            if let Some(reading) = self.read_bound(&mut link, false) {
                let mut books = lock(&self.books);
                // A failure leaves the chunk queued: the driver thread retries, and fails
                // everything if Redis stays away.
                let refused = self.flush(&mut books, &mut link, reading).unwrap_or_default();
                drop(books);
                drop(link);
                deliver_all(refused);
            }
        }
        Ok(())
    }

    /// Creates the pool's stream and group, announces the pool, starts the driver thread.
    pub(crate) fn start(
        url: &str,
        workers: usize,
        default_timeout: Option<Duration>,
        options: ClusterOptions,
    ) -> Result<Arc<Driver>, crate::Error> {
        let build = crate::sys::build_identity()
            .ok_or_else(|| PoolError::Cluster(ClusterError::Refused("cannot read this program's executable".into())))?;
        let seal = Seal::new(options.authkey.as_ref()).map_err(PoolError::Cluster)?;
        let id = new_pool_id();
        let keys = PoolKeys::new(&id);
        let mut thread_link = Link::with_tls(url, options.timeout, options.tls.as_ref()).map_err(PoolError::Cluster)?;
        let in_flight = options.max_in_flight.unwrap_or(64 * workers.max(1));
        let bounds = Bounds::read(options.max_message_size, &mut thread_link);
        let driver = Arc::new(Driver {
            id,
            keys,
            workers,
            default_timeout,
            options: options.clone(),
            in_flight,
            bounds: Mutex::new(bounds),
            reading: Mutex::new(()),
            build,
            seal,
            counters: Arc::default(),
            state: AtomicU8::new(RUNNING),
            next_id: AtomicU64::new(1),
            streams: AtomicUsize::new(0),
            books: Mutex::new(Books::default()),
            born: Mutex::default(),
            link: Mutex::new(Link::with_tls(url, options.timeout, options.tls.as_ref()).map_err(PoolError::Cluster)?),
            thread: Mutex::new(None),
            driver_thread_id: OnceLock::new(),
            joins: Mutex::new(()),
            failure: Mutex::new(None),
            made_in: TakenIn::here(),
        });
        // Strict: no earlier beat made the group, so a refusal for memory refuses the build.
        let first = driver.beat(&mut lock(&driver.link), true);
        if let Err(e) = first {
            // What the refused beat made (the stream, the alive key) goes at once.
            driver.clean_up(&mut lock(&driver.link));
            return Err(PoolError::Cluster(e).into());
        }
        // The thread holds the driver weakly: dropping the last `Pool` ends it.
        let weak = Arc::downgrade(&driver);
        let thread = std::thread::Builder::new()
            .name("multiproc-cluster".into())
            .spawn(move || driver_thread(weak, &mut thread_link))?;
        let _ = driver.driver_thread_id.set(thread.thread().id());
        *lock(&driver.thread) = Some(thread);
        Ok(driver)
    }

    /// The heartbeat: the alive key, every key's expiry, the stream with its group and its
    /// birth's tag and the trimmed count's start (again, in case the keys expired while this
    /// driver was stopped), the pool in the registry. The group starts at `0`, not `$`:
    /// every entry of a pool's stream is one of its undelivered tasks.
    fn beat_commands(&self) -> redis::Pipeline {
        let ttl = ms(key_ttl(self.options.lease));
        let mut p = redis::pipe();
        let known = lock(&self.born).clone();
        let birth = p.cmd("EVAL").arg(BIRTH).arg(1).arg(&self.keys.tasks).arg(birth_tag()).arg(1);
        birth.arg(known.tag).arg(known.witness).ignore();
        // The expiry first: Redis runs it even when it is out of memory and refuses the `SET`.
        p.cmd("PEXPIRE").arg(&self.keys.alive).arg(ms(self.options.lease * 3)).ignore();
        p.cmd("SET").arg(&self.keys.alive).arg(1).arg("PX").arg(ms(self.options.lease * 3)).ignore();
        p.cmd("PEXPIRE").arg(&self.keys.tasks).arg(ttl).ignore();
        p.cmd("PEXPIRE").arg(&self.keys.results).arg(ttl).ignore();
        p.cmd("PEXPIRE").arg(&self.keys.trimmed).arg(ttl).ignore();
        // The trimmed count starts anew where it is missing (never set, or deleted with the
        // list), from a random value: a trim that counted on the lost list (the driver's
        // last read, or one from a dropped connection that reaches Redis late) never finds
        // its count on the new list, where from 0 it could, and remove results nobody read.
        // Below 2^40: the count stays exact in Lua's numbers (doubles) as it grows.
        let start = u64::from_ne_bytes(crate::sys::random_bytes::<8>()) >> 24;
        p.cmd("SET").arg(&self.keys.trimmed).arg(start).arg("NX").arg("PX").arg(ttl).ignore();
        p.cmd("SADD").arg(POOLS).arg(&self.id).ignore();
        p
    }

    /// One heartbeat; `first` is the one `start` sends, which must make the group. Whether
    /// a beat made the group anew (its stream deleted, with the entries sent before) is not
    /// read from its reply, which may be lost: `resend_lost` asks Redis.
    fn beat(&self, link: &mut Link, first: bool) -> Result<(), ClusterError> {
        let pipe = self.beat_commands();
        // Refusals taken as done, when they are the only ones: Redis is out of memory (the
        // expiries ran, they take none; what needs memory, the group and the registry, an
        // earlier beat made; not for the first beat: there was none, and a pool without its
        // group would never deliver a task).
        let done = |code: &str| !first && code == "OOM";
        let mut refused: Vec<(usize, String)> = Vec::new();
        let beat = link.run(|c| {
            pipe.query::<()>(c).inspect_err(|e| {
                let errors = e.clone().into_server_errors().unwrap_or_default();
                refused = errors.iter().map(|(at, error)| (*at, error.code().to_owned())).collect();
            })
        });
        let beat = match beat {
            Ok(()) => Ok(()),
            Err(_) if !refused.is_empty() && refused.iter().all(|(_, code)| done(code)) => Ok(()),
            Err(e) => Err(self.wrong_type(&refused).unwrap_or(e)),
        };
        // Tests: the beat ran, its reply is lost.
        if beat.is_ok() && fail_point!("cluster.beat.reply") {
            return Err(ClusterError::Unreachable("the reply was lost (fail point cluster.beat.reply)".into()));
        }
        beat
    }

    /// A refusal `WRONGTYPE` of the beat (`refused`: position in `beat_commands`, code):
    /// another program wrote a key of another type where the pool keeps its stream or
    /// where every pool is registered (`mp:pools`). Named, since Redis's answer names no key.
    fn wrong_type(&self, refused: &[(usize, String)]) -> Option<ClusterError> {
        let keys: Vec<&str> = refused
            .iter()
            .filter(|(_, code)| code == "WRONGTYPE")
            .map(|(at, _)| if *at == 0 { self.keys.tasks.as_str() } else { POOLS })
            .collect();
        (!keys.is_empty()).then(|| {
            ClusterError::Refused(format!(
                "the key {} holds a value of another type (written by another program?): \
                 the pool cannot keep its tasks and registration there",
                keys.join(" and ")
            ))
        })
    }

    /// The refusal `e` of a read of the results (`codes`, its codes), named when it is a
    /// `WRONGTYPE`: another program wrote a key of another type where the pool keeps its
    /// results list or their trimmed count (Redis's answer names no key).
    fn results_refused(&self, e: ClusterError, codes: &[String]) -> ClusterError {
        if !codes.iter().any(|code| code == "WRONGTYPE") {
            return e;
        }
        ClusterError::Refused(format!(
            "the key {} or {} holds a value of another type (written by another program?): \
             the pool cannot read its results there ({e})",
            self.keys.results, self.keys.trimmed
        ))
    }

    /// After every beat: the tasks sent to a stream since deleted (by a node that found the
    /// alive key expired while this driver could not beat, or expired) wait again at the
    /// front of `pending` (deliveries kept), and are sent again. Which they are is told by
    /// the tag of the stream's birth (`wire::BIRTH`), which each entry was added with: an
    /// entry of another birth than the stream's now was lost with its stream; one of the
    /// same birth that is missing finished (a node pushed its result, which may wait
    /// unread) or was taken back, and is not sent again. Whatever became of the replies of
    /// the beat that made the stream again or of an earlier check, this one asks afresh.
    fn resend_lost(&self, link: &mut Link) -> Result<(), ClusterError> {
        // Tests: held between the beat and the check.
        crash_point!("cluster.pool.check");
        let script = redis::Script::new(BIRTH);
        let known = lock(&self.born).clone();
        let born = run_coded(link, |c| {
            script.key(&self.keys.tasks).arg(birth_tag()).arg(0).arg(&known.tag).arg(&known.witness).invoke(c)
        });
        // Tests: the check ran, its reply is lost (a link that drops again right after a
        // restore).
        if born.is_ok() && fail_point!("cluster.resend.reply") {
            return Err(ClusterError::Unreachable("the reply was lost (fail point cluster.resend.reply)".into()));
        }
        let born: Option<String> = match born {
            // A stream found without its birth's tag while Redis is out of memory: checked
            // again at the next beat.
            Err((_, codes)) if out_of_memory(&codes) => return Ok(()),
            born => born.map_err(|(e, _)| e)?,
        };
        // No stream: the beat that makes it comes first.
        let Some(born) = born else { return Ok(()) };
        lock(&self.born).saw(&born, None);
        let mut books = lock(&self.books);
        let lost: Vec<u64> = books.sent.iter().filter(|(_, sent)| sent.born != born).map(|(id, _)| *id).collect();
        let mut lost: Vec<Waiting> = lost
            .into_iter()
            .map(|id| {
                let sent = books.sent.remove(&id).expect("listed above");
                books.entries.remove(&sent.entry);
                (id, sent.chunk, sent.items, sent.delivery, sent.message, sent.deliveries)
            })
            .collect();
        lost.sort_by_key(|job| job.0);
        for job in lost.into_iter().rev() {
            books.pending.push_front(job);
        }
        Ok(())
    }

    fn running(&self) -> bool {
        self.state.load(Ordering::Acquire) == RUNNING && self.made_in.is_here()
    }

    /// Sends what waits while there is room in flight. Returns the tasks that failed: when
    /// Redis refuses them for want of memory (`maxmemory` with `noeviction`), they wait
    /// and are sent again (the driver's reads free memory as they trim what they read);
    /// when it has refused them for the pool's `timeout`, every task waiting fails, typed,
    /// and the pool goes on; a large task Redis closes the connection on `DROPPED_SENDS`
    /// times while it answers `PING` fails alone. An error is returned only when nothing
    /// failed before it in the same call: the outcomes are never dropped with it.
    fn flush(&self, books: &mut Books, link: &mut Link, reading: Reading) -> Result<Vec<Outcome>, ClusterError> {
        let mut failed = Vec::new();
        let bound_known = self.read_bounds(books, reading, &mut failed);
        while books.sent.len() < self.in_flight {
            let Some(front) = books.pending.front() else {
                // Nothing waits (sent, failed or withdrawn as cancelled): no refusal is
                // under way, and the next one waits the whole `timeout` again.
                books.full_since = None;
                break;
            };
            if front.3.cancelled() {
                let (_, _, items, _, _, _) = books.pending.pop_front().expect("peeked");
                self.counters.cancelled(items as u64);
                continue;
            }
            let room = self.in_flight - books.sent.len();
            // Where the server's bound is unknown, a task that may be above it goes alone.
            let alone = |job: &Waiting| !bound_known && job.4.len() - TAG > MIN_BULK;
            let batch: Vec<_> = if books.pending.front().is_some_and(alone) {
                books.pending.pop_front().into_iter().collect()
            } else {
                // The batch's whole size is bounded too (one task at least): a server may
                // bound a whole command, not each argument alone (client eviction,
                // `maxmemory-clients`, counts the command's arguments; a query buffer that
                // holds the whole command, `client-query-buffer-limit`), and close the
                // connection on a larger one, which the driver takes for Redis gone.
                let mut batch: Vec<Waiting> = Vec::new();
                let mut bytes = 0;
                while batch.len() < room
                    && books.pending.front().is_some_and(|job| {
                        !alone(job) && (batch.is_empty() || bytes + job.4.len() + ARG_FRAME <= BATCH_BYTES)
                    })
                {
                    let job = books.pending.pop_front().expect("peeked");
                    bytes += job.4.len() + ARG_FRAME;
                    batch.push(job);
                }
                batch
            };
            // All or none (`ADD_TASKS`): a refusal takes none of the batch.
            let script = redis::Script::new(ADD_TASKS);
            let mut add = script.key(&self.keys.tasks);
            let born = lock(&self.born).clone();
            add.arg(birth_tag()).arg(born.tag).arg(born.witness);
            for (_, _, _, _, message, _) in &batch {
                let (task, tag) = message.split_at(message.len() - TAG);
                add.arg(task).arg(tag);
            }
            match run_coded(link, |c| add.invoke::<(String, Vec<String>)>(c)) {
                Ok((born, entries)) => {
                    books.full_since = None;
                    // A task's lost sends count while they come one after another: one
                    // sent is clear of them (review108 L2).
                    if books.dropped.is_some_and(|(task, _)| batch.iter().any(|job| job.0 == task)) {
                        books.dropped = None;
                    }
                    lock(&self.born).saw(&born, entries.last());
                    for ((id, chunk, items, delivery, message, deliveries), entry) in batch.into_iter().zip(entries) {
                        books.entries.insert(entry.clone(), id);
                        let born = born.clone();
                        books.sent.insert(id, Sent { chunk, items, delivery, entry, born, message, deliveries });
                    }
                }
                Err((e, codes)) if out_of_memory(&codes) => {
                    for job in batch.into_iter().rev() {
                        books.pending.push_front(job);
                    }
                    let since = *books.full_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.options.timeout {
                        books.full_since = None;
                        for (_, chunk, items, delivery, _, _) in books.pending.drain(..) {
                            if delivery.cancelled() {
                                self.counters.cancelled(items as u64);
                            } else {
                                failed.push((delivery, chunk, Err(TaskError::Cluster(e.clone()))));
                            }
                        }
                    }
                    break;
                }
                Err((e, codes)) => {
                    // A large task sent alone on which the connection was lost while Redis
                    // answers: the server closed it for the task's size (its bound unknown
                    // here), or a blip. Tried again; lost so `DROPPED_SENDS` times, the
                    // task fails alone, and the pool goes on. A loss counted so is no
                    // error of the step (Redis answered): else a run of such tasks, each
                    // costing erring steps and none succeeding in between, took Redis for
                    // gone after the pool's `timeout` and ended the pool (review108 M1).
                    // A connection lost carries no code: an `Unreachable` Redis answered
                    // (`READONLY` in a failover, `BUSY`, `LOADING`, `MASTERDOWN`) is a wait,
                    // not counted (review153 M2: a failover failed such a task `Codec`).
                    let closed_on = match &batch[..] {
                        [job] if alone(job) && matches!(e, ClusterError::Unreachable(_)) && codes.is_empty() => {
                            Some(job.0)
                        }
                        _ => None,
                    };
                    if let Some(id) = closed_on
                        && link.run(|c| redis::cmd("PING").query::<()>(c)).is_ok()
                    {
                        let times = match books.dropped {
                            Some((task, times)) if task == id => times + 1,
                            _ => 1,
                        };
                        books.dropped = Some((id, times));
                        if times >= DROPPED_SENDS {
                            books.dropped = None;
                            let (_, chunk, _, delivery, message, _) = batch.into_iter().next().expect("one task");
                            let error = TaskError::Codec(crate::CodecError::encode(format_args!(
                                "a task of {} bytes: Redis closed the connection on it {DROPPED_SENDS} times while it \
                                 answered PING: above its proto-max-bulk-len or client-query-buffer-limit most likely, \
                                 or a client eviction (maxmemory-clients); CONFIG GET refused, its bounds unknown",
                                message.len() - TAG
                            )));
                            failed.push((delivery, chunk, Err(error)));
                            continue;
                        }
                        for job in batch.into_iter().rev() {
                            books.pending.push_front(job);
                        }
                        break;
                    }
                    for job in batch.into_iter().rev() {
                        books.pending.push_front(job);
                    }
                    // What failed before in this call is answered first, never dropped with
                    // the error (review108 H1: a task failed alone was never answered, its
                    // `get` waited for ever); the error is met again at the next `flush`.
                    if !failed.is_empty() {
                        return Ok(failed);
                    }
                    return Err(e);
                }
            }
        }
        Ok(failed)
    }

    /// The server's bound as `link` reads it, stamped ([`Link::stamped_bulk_bound`]), one
    /// reading at a time ([`Driver::reading`]): an exchange where the link's connection is
    /// new or absent, made before `books` is taken (which the driver thread and submissions
    /// share). `None` where it could not be read for want of a connection (Redis away), or,
    /// unless `wait`, where another reading is under way: nothing is to be sent then (a
    /// send would wait a second exchange: review122 L4, a submission with Redis stopped
    /// blocked two timeouts).
    fn read_bound(&self, link: &mut Link, wait: bool) -> Option<Reading> {
        let _one = match self.reading.try_lock() {
            Ok(one) => one,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) if wait => lock(&self.reading),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        link.stamped_bulk_bound()
    }

    /// Reads the server's bound again where `link` has a new connection (or none: the read
    /// opens one), as Redis may have restarted with another `proto-max-bulk-len`: a task
    /// accepted under the old bound that is above the new one fails alone, typed, here
    /// (added to `failed`), as it would have been refused at submission; sent, Redis would
    /// close the connection on it at each try, and the driver, taking Redis for gone, end
    /// the pool. `reading`: [`Driver::read_bound`]'s, on the link that sends. Returns whether
    /// the bound is known.
    fn read_bounds(&self, books: &mut Books, (stamp, told): Reading, failed: &mut Vec<Outcome>) -> bool {
        let mut bounds = lock(&self.bounds);
        // An older reading (another link's, kept on a connection since lost) is not taken.
        if stamp <= bounds.stamp {
            return bounds.known;
        }
        bounds.stamp = stamp;
        if told != bounds.told {
            let was = bounds.result;
            *bounds = Bounds { stamp, ..Bounds::new(self.options.max_message_size, told) };
            let task = bounds.task;
            let mut kept = VecDeque::with_capacity(books.pending.len());
            for mut job in books.pending.drain(..) {
                if bounds.result != was {
                    // The result bound a waiting task carries is the new one (review122 L5:
                    // it kept the one of its submission, and a node pushed a result above
                    // a bound lowered meanwhile, which Redis refused by closing the
                    // connection, three times, before its small failure went instead).
                    self.bound_result(&mut job.4, bounds.result);
                }
                let size = job.4.len() - TAG;
                if size <= task {
                    kept.push_back(job);
                } else if job.3.cancelled() {
                    self.counters.cancelled(job.2 as u64);
                } else {
                    let error = TaskError::Codec(too_large_to_send("a task", size, &bounds.why));
                    failed.push((job.3, job.1, Err(error)));
                }
            }
            books.pending = kept;
        }
        bounds.known
    }

    /// Sets the result bound of the task whose sealed message is `sealed` (its bytes and
    /// tag, as `submit` made them) to `result`, sealed again. A message that does not decode
    /// (none does not: this driver encoded it) is left as it is.
    fn bound_result(&self, sealed: &mut Vec<u8>, result: usize) {
        let Ok(mut message) = codec::decode_exact::<TaskMsg>(&sealed[..sealed.len() - TAG]) else { return };
        message.max_result = result as u64;
        let Ok(mut encoded) = codec::encode(&message) else { return };
        let mut bytes = std::mem::take(&mut encoded.bytes);
        encoded.sent();
        let tag = self.seal.tag(&self.id, &bytes);
        bytes.extend_from_slice(&tag);
        *sealed = bytes;
    }

    /// Handles results; returns what to deliver. A result is checked under the cluster key
    /// before anything of it is decoded but the task id its head names: one that does not
    /// check fails that task with [`TaskError::Unauthenticated`] (its later genuine result is
    /// then a second answer, ignored), except the untagged answer of a node whose key is not
    /// ours, which says just that (see `node::seal_result`), and whose node name is taken
    /// unauthenticated, in a node name's form only ([`is_node_name`]).
    fn take_results(&self, raw: Vec<Vec<u8>>) -> Vec<Outcome> {
        let mut books = lock(&self.books);
        let mut out = Vec::new();
        for bytes in raw {
            // A later answer for a task (its node was slow, not dead): the first counted.
            // Bytes that name no task of ours (another program's, or emptied by
            // `take_large`) are dropped.
            let Some(id) = id_of(&bytes).filter(|id| books.sent.contains_key(id)) else { continue };
            let sent = books.sent.remove(&id).expect("looked up");
            books.entries.remove(&sent.entry);
            let genuine = bytes
                .len()
                .checked_sub(TAG)
                .map(|n| bytes.split_at(n))
                .filter(|(msg, tag)| self.seal.verify_result(&self.id, id, msg, tag));
            let outcome = match genuine.map(|(msg, _)| codec::decode_exact::<ResultMsg>(msg)) {
                Some(Ok(ResultMsg { outcome: Ok(bytes), .. })) => Payload::new(bytes.into_vec())
                    .map_err(|e| TaskError::Codec(crate::CodecError::decode(format_args!("{e}")))),
                Some(Ok(ResultMsg { outcome: Err(failure), .. })) => Err(failure.into_task_error()),
                Some(Err(e)) => Err(TaskError::Codec(e)),
                // The one decode before a check: of the crate's own types (no user
                // `Deserialize` runs), and taken only as a node's name.
                None => Err(match codec::decode_exact::<ResultMsg>(&bytes) {
                    Ok(ResultMsg { outcome: Err(Failure::Unauthenticated { node }), .. }) if is_node_name(&node) => {
                        TaskError::Unauthenticated { node }
                    }
                    _ => TaskError::Unauthenticated { node: UNCHECKED_RESULT.into() },
                }),
            };
            out.push((sent.delivery, sent.chunk, outcome));
        }
        out
    }

    /// Results above `max_message_size` (the task each names, its size): each fails its
    /// task with a typed error; one that names no task of this pool is dropped.
    fn too_large(&self, large: Vec<(Option<u64>, u64)>) -> Vec<Outcome> {
        let mut books = lock(&self.books);
        let mut out = Vec::new();
        for (id, size) in large {
            let Some(sent) = id.and_then(|id| books.sent.remove(&id)) else { continue };
            books.entries.remove(&sent.entry);
            let error = too_large(size, self.options.max_message_size as u64);
            out.push((sent.delivery, sent.chunk, Err(error)));
        }
        out
    }

    /// Takes back the entries of nodes that stopped heartbeating: their tasks wait again
    /// at the front of `pending` (sent again by `flush` under new entries, with its wait
    /// when Redis is out of memory), or fail with `WorkerLost` after `max_deliveries`.
    fn reclaim(&self, link: &mut Link) -> Result<Vec<Outcome>, ClusterError> {
        let me = format!("driver-{}", self.id);
        let lease = ms(self.options.lease);
        let mut failures = Vec::new();
        let mut cursor = "0-0".to_string();
        for _ in 0..64 {
            let claimed = run_coded(link, |c| {
                let v: redis::Value = redis::cmd("XAUTOCLAIM")
                    .arg(&self.keys.tasks)
                    .arg(GROUP)
                    .arg(&me)
                    .arg(lease)
                    .arg(&cursor)
                    .arg("COUNT")
                    .arg(256)
                    .arg("JUSTID")
                    .query(c)?;
                let (next, ids, _deleted): (String, Vec<String>, redis::Value) = redis::from_redis_value(v)?;
                Ok((next, ids))
            });
            let (next, ids) = match claimed {
                Ok(claimed) => claimed,
                // No group (the keys expired while Redis was too full for the beat to make
                // it again): nothing to take back; a later beat makes it.
                Err((_, codes)) if codes.iter().any(|code| code == "NOGROUP") => break,
                Err((e, _)) => {
                    // Those already failed are delivered all the same.
                    deliver_all(failures);
                    return Err(e);
                }
            };
            if !ids.is_empty() {
                let mut books = lock(&self.books);
                let mut requeue = Vec::new();
                for entry in &ids {
                    let Some(id) = books.entries.remove(entry) else { continue };
                    let Some(sent) = books.sent.remove(&id) else { continue };
                    if sent.deliveries >= self.options.max_deliveries {
                        let lost = TaskError::WorkerLost { pid: 0, signal: None, exit_code: None };
                        failures.push((sent.delivery, sent.chunk, Err(lost)));
                        continue;
                    }
                    requeue.push((id, sent.chunk, sent.items, sent.delivery, sent.message, sent.deliveries + 1));
                }
                // In the books before Redis hears of it: whatever becomes of the commands
                // below (refused, or their reply lost), the tasks are sent again, and an
                // old entry left in the stream is this consumer's, taken back by a later
                // reclaim as unknown and deleted.
                for job in requeue.into_iter().rev() {
                    books.pending.push_front(job);
                }
                drop(books);
                let mut pipe = redis::pipe();
                pipe.cmd("XACK").arg(&self.keys.tasks).arg(GROUP).arg(&ids).ignore();
                pipe.cmd("XDEL").arg(&self.keys.tasks).arg(&ids).ignore();
                let acked = link.run(|c| pipe.query::<()>(c));
                // Tests: the commands ran, their reply is lost (as a connection cut after
                // they reached Redis loses it).
                let acked = if acked.is_ok() && fail_point!("cluster.reclaim.reply") {
                    Err(ClusterError::Unreachable("the reply was lost (fail point cluster.reclaim.reply)".into()))
                } else {
                    acked
                };
                if let Err(e) = acked {
                    deliver_all(failures);
                    return Err(e);
                }
            }
            if next == "0-0" {
                break;
            }
            cursor = next;
        }
        Ok(failures)
    }

    /// Takes the chunks of cancelled calls (a `map` that failed, a cancelled
    /// `AsyncResult`) out of the stream: a node that has not read one yet never will; one
    /// already running it finishes it, and its result is ignored.
    fn withdraw_cancelled(&self, link: &mut Link) -> Result<(), ClusterError> {
        let mut books = lock(&self.books);
        let cancelled: Vec<u64> =
            books.sent.iter().filter(|(_, s)| s.delivery.cancelled()).map(|(id, _)| *id).collect();
        if cancelled.is_empty() {
            return Ok(());
        }
        let mut entries = Vec::with_capacity(cancelled.len());
        for id in cancelled {
            let sent = books.sent.remove(&id).expect("listed above");
            books.entries.remove(&sent.entry);
            self.counters.cancelled(sent.items as u64);
            entries.push(sent.entry);
        }
        drop(books);
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(&self.keys.tasks).arg(GROUP).arg(&entries).ignore();
        pipe.cmd("XDEL").arg(&self.keys.tasks).arg(&entries).ignore();
        link.run(|c| pipe.query::<()>(c))
    }

    /// Fails everything unfinished with `error`.
    fn fail_all(&self, error: TaskError) {
        let mut books = lock(&self.books);
        let mut failures: Vec<(Arc<dyn Delivery>, usize)> =
            books.pending.drain(..).map(|(_, chunk, _, d, _, _)| (d, chunk)).collect();
        failures.extend(books.sent.drain().map(|(_, s)| (s.delivery, s.chunk)));
        books.entries.clear();
        drop(books);
        for (delivery, chunk) in failures {
            delivery.deliver(chunk, Err(error.clone()));
        }
    }

    /// Whether a closed pool's driver thread may end: nothing waits or runs, and no counted
    /// `imap` may send more (looked at under `books`, where such an `imap` queues its chunk
    /// before it ends: its chunk is seen, or its count).
    fn idle(&self) -> bool {
        let books = lock(&self.books);
        books.pending.is_empty() && books.sent.is_empty() && (books.joining || self.streams.load(Ordering::SeqCst) == 0)
    }

    /// Deletes the pool's keys (best effort).
    fn clean_up(&self, link: &mut Link) {
        let mut pipe = redis::pipe();
        pipe.cmd("DEL")
            .arg(&self.keys.tasks)
            .arg(&self.keys.results)
            .arg(&self.keys.trimmed)
            .arg(&self.keys.alive)
            .ignore();
        pipe.cmd("SREM").arg(POOLS).arg(&self.id).ignore();
        let _ = link.run(|c| pipe.query::<()>(c));
    }
}

fn deliver_all(list: Vec<Outcome>) {
    for (delivery, chunk, outcome) in list {
        delivery.deliver(chunk, outcome);
    }
}

/// A read of the results list: how many results the driver had ever trimmed off it when it
/// read, what it read (at most `READ`, oldest first, at most `max_message_size` bytes
/// besides one), and which of those were too large, each read as its first bytes only.
struct Read {
    trimmed: u64,
    results: Vec<Vec<u8>>,
    /// Positions in `results` (from 1) and sizes of the results above the limit.
    large: Vec<u64>,
}

/// The driver's read of the results list (`READ_RESULTS`), after the trim of its previous
/// read, `last`: how many results it read and how many had been trimmed then. That trim runs only if no trim ran since that read (one that reaches Redis
/// late, from a connection the driver dropped, after it read and trimmed again, removes
/// nothing; an unconditional `LTRIM`, or one that compares the last result's bytes, would
/// remove results nobody read).
fn read_results(
    keys: &PoolKeys,
    ttl: Duration,
    (count, trimmed): (usize, u64),
    max: usize,
    c: &mut Conn,
) -> redis::RedisResult<Read> {
    let (trimmed, results, large): (u64, Vec<Vec<u8>>, Vec<u64>) = redis::Script::new(READ_RESULTS)
        .key(&keys.results)
        .key(&keys.trimmed)
        .arg(count)
        .arg(trimmed)
        .arg(READ)
        .arg(ms(ttl).max(1))
        .arg(sealed_bound(max as u64))
        .invoke(c)?;
    Ok(Read { trimmed, results, large })
}

impl Read {
    /// Takes out the results above the limit: the task each names (if it names one) and
    /// its size.
    fn take_large(&mut self) -> Vec<(Option<u64>, u64)> {
        if self.large.is_empty() {
            return Vec::new();
        }
        let mut large = Vec::new();
        for pair in self.large.chunks_exact(2) {
            let at = usize::try_from(pair[0]).unwrap_or(usize::MAX).wrapping_sub(1);
            if let Some(head) = self.results.get_mut(at) {
                large.push((id_of(head), pair[1]));
                // Not a result: `take_results` finds nothing in it.
                head.clear();
            }
        }
        large
    }
}

/// Tests: the results waiting in the list `key` (at most `READ`, 512), read without taking
/// them.
pub fn test_results(url: &str, key: &str) -> Result<Vec<Vec<u8>>, ClusterError> {
    Link::new(url, Duration::from_secs(10))?.run(|c| redis::cmd("LRANGE").arg(key).arg(0).arg(READ - 1).query(c))
}

/// Tests: what a read of the driver sees in the results list now, and so the trim it sends
/// after (see [`test_read`], [`test_trim`]).
pub struct TestRead(Read);

impl std::fmt::Debug for TestRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRead").field("trimmed", &self.0.trimmed).field("results", &self.0.results.len()).finish()
    }
}

impl TestRead {
    /// The results read, oldest first.
    pub fn results(&self) -> &[Vec<u8>] {
        &self.0.results
    }
}

/// The pool keys of the results list `key`.
fn test_keys(key: &str) -> PoolKeys {
    let id = key.strip_prefix("mp:{p:").and_then(|k| k.strip_suffix("}:results")).unwrap_or(key);
    PoolKeys::new(id)
}

/// Tests: reads the results list `key` as the driver does, without trimming anything.
pub fn test_read(url: &str, key: &str) -> Result<TestRead, ClusterError> {
    let keys = test_keys(key);
    Link::new(url, Duration::from_secs(10))?
        .run(|c| read_results(&keys, Duration::from_secs(60), (0, 0), DEFAULT_MAX_MESSAGE, c))
        .map(TestRead)
}

/// Tests: sends, on a connection of its own, the trim the driver sends after `read` (a trim
/// from a dropped connection that reaches Redis late).
pub fn test_trim(url: &str, key: &str, read: &TestRead) -> Result<(), ClusterError> {
    let keys = test_keys(key);
    Link::new(url, Duration::from_secs(10))?
        .run(|c| {
            let last = (read.0.results.len(), read.0.trimmed);
            read_results(&keys, Duration::from_secs(60), last, DEFAULT_MAX_MESSAGE, c)
        })
        .map(drop)
}

/// Tests: pushes `result` on the results list `key` as a node does (a node that ran a task
/// again after its entry was reclaimed pushes the same bytes again).
pub fn test_push(url: &str, key: &str, result: &[u8]) -> Result<(), ClusterError> {
    Link::new(url, Duration::from_secs(10))?.run(|c| redis::cmd("RPUSH").arg(key).arg(result).query::<()>(c))
}

/// Whether the driver thread's step failure `e` is one to wait out for the pool's timeout,
/// as Redis away (`Unreachable`), with the error to end the pool with if not or past the
/// timeout. A TLS failure that heals (a certificate not valid yet, a clock set wrong: not
/// [`Link::tls_lasts`]) is waited out so, as a node waits it out (review136 M2: the pool
/// ended at the first TLS error of either class, while its nodes waited the same certificate
/// out); one that lasts (an untrusted certificate, a server that speaks no TLS) ends the pool
/// at once, typed, once met again on a fresh connection, as a node confirms it
/// (`node::lasting_refusal`). Credentials Redis refuses when the driver logs in again (a
/// password changed in Redis, met once its connection was lost: connections already open
/// keep their login) are confirmed so too: met again on a fresh connection, they end the
/// pool at once, typed; not met again (the password changed back, a rotation undone), they
/// are waited out as Redis away, within the timeout (fix114: the driver ended the pool at
/// the first refusal, where a node confirms it). A command refused on a connection logged
/// in (`NOPERM`: an ACL without a command or key the pool needs), and any other error, end
/// the pool at once, as before. Redis refusing for now (`BUSY`, `LOADING`, a failover's
/// `MASTERDOWN`, `READONLY` and `UNBLOCKED`) is `Unreachable`
/// ([`ClusterError::from_redis`]), waited out so; the waits back off ([`driver_thread`]).
fn passing_failure(e: ClusterError, link: &mut Link) -> (bool, ClusterError) {
    match e {
        ClusterError::Unreachable(_) => (true, e),
        ClusterError::Auth(_) if matches!(link.open_failed(), Some(ClusterError::Auth(_))) => {
            // Tests: held where the refusal was met, before it is confirmed.
            crash_point!("cluster.pool.refused");
            match super::node::lasting_refusal(&e, link) {
                Some(again) => (false, again),
                None => (true, e),
            }
        }
        ClusterError::Tls(_) if !link.tls_lasts() => (true, e),
        ClusterError::Tls(_) => match link.run(|c| redis::cmd("PING").query::<()>(c)) {
            Err(again @ ClusterError::Tls(_)) if link.tls_lasts() => (false, again),
            _ => (true, e),
        },
        e => (false, e),
    }
}

fn driver_thread(weak: std::sync::Weak<Driver>, link: &mut Link) {
    let mut next_beat = Instant::now();
    let mut failing_since: Option<Instant> = None;
    // The wait after a step that failed for a passing reason: 50 ms, doubled at each such
    // step up to a second, 50 ms again after a step that did not fail. Each step after a
    // failure opens a new connection, to a Redis restarting or a failover's demoted master
    // (`READONLY`, `UNBLOCKED`): tried every 50 ms, each pool hammered it for as long as
    // that lasted (review150).
    let mut away = Duration::from_millis(50);
    // The last read: how many results it read from the head of the list (not trimmed off
    // yet), and how many had been trimmed off then.
    let mut read = (0, 0);
    loop {
        let Some(driver) = weak.upgrade() else { return };
        let state = driver.state.load(Ordering::Acquire);
        if state == TERMINATED || (state == CLOSED && driver.idle()) {
            driver.clean_up(link);
            return;
        }
        let step = (|| -> Result<(), ClusterError> {
            if Instant::now() >= next_beat {
                driver.beat(link, false)?;
                driver.resend_lost(link)?;
                let lost = driver.reclaim(link)?;
                deliver_all(lost);
                next_beat = Instant::now() + driver.options.lease / 3;
            }
            // The bound read before `books` is taken (an exchange where the link's connection
            // is new or absent): a submission does not wait on it.
            // Unread for want of a connection: why the open failed, where it did (a TLS
            // failure that lasts ends the pool typed, not as Redis away after the timeout).
            let Some(reading) = driver.read_bound(link, true) else {
                return Err(link
                    .open_failed()
                    .cloned()
                    .unwrap_or_else(|| ClusterError::Unreachable("the server's bulk bound could not be read".into())));
            };
            let refused = {
                let mut books = lock(&driver.books);
                driver.flush(&mut books, link, reading)?
            };
            deliver_all(refused);
            let key = driver.keys.results.clone();
            crash_point!("cluster.pool.read");
            // Results are read without being taken, and trimmed off by the next read, in
            // the same script: a read whose reply never came (it ran all the same) loses
            // nothing, and a trim whose reply never came is sent again with the next read
            // (it runs only if no trim ran since the read it follows; what it may have left
            // is read again, and `take_results` ignores a task's later results). A trim
            // that reaches Redis late, after a newer read and trim, removes nothing.
            let ttl = key_ttl(driver.options.lease);
            let max = driver.options.max_message_size;
            let mut got = run_coded(link, |c| read_results(&driver.keys, ttl, read, max, c))
                .map_err(|(e, codes)| driver.results_refused(e, &codes))?;
            read = (got.results.len(), got.trimmed);
            let large = got.take_large();
            if !large.is_empty() {
                deliver_all(driver.too_large(large));
            }
            let mut raw = got.results;
            if raw.is_empty() {
                // Waits for a result without taking it either (moved from the head back
                // to the head: the list does not change).
                let wait = POLL.min(next_beat.saturating_duration_since(Instant::now())).max(Duration::from_millis(1));
                let first: Option<Vec<u8>> = match run_coded(link, |c| {
                    let mut cmd = redis::cmd("BLMOVE");
                    cmd.arg(&key).arg(&key).arg("LEFT").arg("LEFT").arg(format!("{:.3}", wait.as_secs_f64()));
                    cmd.query(c)
                }) {
                    Ok(first) => first,
                    // Refused while Redis is out of memory (a move may take some): waited
                    // without it, the next read trims what this one read.
                    Err((_, codes)) if out_of_memory(&codes) => {
                        std::thread::sleep(wait);
                        None
                    }
                    Err((e, codes)) => return Err(driver.results_refused(e, &codes)),
                };
                // One too large is left to the next read (which names its task), and goes.
                raw.extend(first.filter(|r| r.len() <= max));
            }
            let done = driver.take_results(raw);
            deliver_all(done);
            driver.withdraw_cancelled(link)
        })();
        match step {
            Ok(()) => {
                failing_since = None;
                away = Duration::from_millis(50);
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                let (passing, e) = passing_failure(e, link);
                let fatal = !passing || since.elapsed() >= driver.options.timeout;
                if fatal {
                    *lock(&driver.failure) = Some(e.clone());
                    driver.state.store(TERMINATED, Ordering::Release);
                    driver.fail_all(TaskError::Cluster(e));
                    return;
                }
                // Never past the timeout, at which the pool ends if the failure lasts.
                let left = driver.options.timeout.saturating_sub(since.elapsed());
                drop(driver);
                std::thread::sleep(away.min(left).max(Duration::from_millis(1)));
                away = (away * 2).min(Duration::from_secs(1));
            }
        }
    }
}

impl Helper for Driver {
    fn help(&self, _done: &dyn Fn() -> bool, _deadline: Deadline) {}

    fn help_briefly(&self, _done: &dyn Fn() -> bool) {}
}

impl Engine for Driver {
    fn workers(&self) -> usize {
        self.workers
    }

    fn running(&self) -> bool {
        Driver::running(self)
    }

    fn default_timeout(&self) -> Option<Duration> {
        self.default_timeout
    }

    fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    fn remote(&self) -> bool {
        true
    }

    fn helps(&self) -> bool {
        false
    }

    fn submit(&self, job: Job) -> Result<(), PoolError> {
        self.submit_as(job, false)
    }

    fn stream_opened(&self) -> bool {
        if !self.running() {
            return false;
        }
        self.streams.fetch_add(1, Ordering::SeqCst);
        // A `close` (and the driver thread's end) between the two looks: not counted, and
        // refused at its next chunk, as a call after the close.
        if self.state.load(Ordering::SeqCst) != RUNNING {
            self.stream_ended();
            return false;
        }
        true
    }

    fn stream_ended(&self) {
        self.streams.fetch_sub(1, Ordering::SeqCst);
    }

    fn submit_streamed(&self, job: Job) -> Result<(), PoolError> {
        self.submit_as(job, true)
    }

    fn pids(&self) -> Vec<u32> {
        Vec::new()
    }

    fn close(&self) {
        // SeqCst, with the driver thread's look at `streams`, against `stream_opened`'s count
        // then look at the state: one of the two sees the other's write.
        let _ = self.state.compare_exchange(RUNNING, CLOSED, Ordering::SeqCst, Ordering::SeqCst);
    }

    fn terminate(&self) {
        if !self.made_in.is_here() {
            // A fork child's copy: its books (and their lock, which the driver thread may
            // have held at the fork) are the parent's.
            return;
        }
        self.state.store(TERMINATED, Ordering::Release);
        self.fail_all(TaskError::Terminated);
    }

    fn join(&self) -> Result<(), PoolError> {
        if !self.made_in.is_here() {
            // A fork child's copy: the driver thread is the parent's.
            return Ok(());
        }
        if self.running() {
            return Err(PoolError::StillRunning);
        }
        // A callback on the driver thread cannot wait for that thread to end (std would
        // panic, "Resource deadlock avoided"). Before the lock: another join holds it until
        // this very thread ends.
        if self.driver_thread_id.get() == Some(&std::thread::current().id()) {
            return Err(PoolError::JoinFromWorker);
        }
        let _one_at_a_time = lock(&self.joins);
        // A counted `imap` still feeding sends nothing more (the joining thread may be the
        // one that feeds it): what it sent comes, then its refusal.
        lock(&self.books).joining = true;
        let thread = lock(&self.thread).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        Ok(())
    }
}
