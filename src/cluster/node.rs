//! A worker node of cluster pools: [`serve`]. It runs a local process pool and feeds it
//! the tasks of every live pool on the Redis server.
//!
//! Two threads, each with its own connection: the reader takes entries from the pools'
//! streams (`XREADGROUP`, as many as the local pool has room for) and submits them to the
//! local pool; the writer sends each chunk's outcome (pushes the result and removes the
//! entry, in one script) and heartbeats the entries in progress (`XCLAIM … JUSTID`, which
//! resets their idle time), so the driver takes back only the entries of a node that died.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::key::{KEY_ENV, Seal, Secret, sealed_bound};
use super::link::Link;
use super::wire::{
    DRIVER_AWAY, Failure, GROUP, POOLS, PUT_RESULT, PoolKeys, ResultMsg, TaskMsg, id_of, is_pool_id, key_ttl,
};
use super::{ClusterError, Tls};
use crate::codec;
use crate::pool::TaskError;
use crate::pool::engine::{Delivery, Engine, Job};
use crate::pool::supervisor::{Config, Inner};
use crate::shm::Payload;
use crate::shm::crash::crash_point;

/// The environment variable that makes a program a worker node: `init()` (and
/// `#[multiproc::main]`) of a program started with `MULTIPROC_WORKER=redis://…` serves
/// that Redis with [`serve`] instead of returning, and never returns (but for a node whose
/// local pool fails: see [`serve`]). A set-user-ID, set-group-ID or capability-raising
/// program ignores it (its caller chose its environment): such a program serves by calling
/// [`serve`] in its code. Such a node has [`ServeOptions`]' defaults: over `rediss://` it
/// trusts the system's authorities (or instead those `SSL_CERT_FILE` or `SSL_CERT_DIR`
/// names in its environment) and gives no client certificate, so it cannot serve a Redis
/// that checks its clients' certificates; a program that needs a private CA in code or a
/// client certificate serves by calling [`serve`] with [`ServeOptions::tls`].
pub const WORKER_ENV: &str = "MULTIPROC_WORKER";

/// How a worker node runs (see [`serve`]).
///
/// # Examples
///
/// ```
/// let options = multiproc::cluster::ServeOptions::new().processes(2);
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ServeOptions {
    processes: Option<usize>,
    timeout: Option<Duration>,
    authkey: Option<Secret>,
    tls: Option<Tls>,
}

impl ServeOptions {
    /// The defaults: a worker process per CPU, a Redis timeout of 5 s.
    ///
    /// # Examples
    ///
    /// ```
    /// // A worker per CPU, Redis commands of up to 5 s.
    /// let options = multiproc::cluster::ServeOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of local worker processes (default [`cpu_count`](crate::cpu_count)).
    ///
    /// # Examples
    ///
    /// ```
    /// let options = multiproc::cluster::ServeOptions::new().processes(4);
    /// ```
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n.max(1));
        self
    }

    /// How long one Redis command may take before the node drops the connection and
    /// tries again (default 5 s).
    ///
    /// A connect waits at most the timeout (zero is taken as 1 ms). A whole open (resolving the
    /// host, connecting to each of its addresses, the TLS handshake, `AUTH`) and each command
    /// (sending it and reading its reply, however large) end within a second more than the timeout
    /// of their start (the longest a blocking command of the node's blocks), plus a second for each
    /// MiB they move: a large task or result crosses any link of 1 MiB/s or more (bytes the
    /// system's buffers take at once count as moved), and a peer that takes it slower than that is
    /// given up. The heartbeats that keep a task leased go on the same connection, between
    /// commands: a task or result that takes more than a third of the lease to cross can let the
    /// lease of another task run out, which then runs again elsewhere. A name server that has not
    /// answered by then is left behind (its lookup goes on, on a thread of its own that the opens
    /// of that host share while it is young, a few at most; while it is listed, a `Fork` start is
    /// refused as with any other thread; if no thread can be started, the open resolves the name
    /// itself, untimed).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let options = multiproc::cluster::ServeOptions::new().timeout(Duration::from_secs(2));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The cluster key the node checks every task's tag under (default: the environment
    /// variable [`KEY_ENV`](super::KEY_ENV), else the user's key file, as for the driver:
    /// see [`ClusterOptions::authkey`](super::ClusterOptions::authkey)). A task whose tag
    /// does not check is refused before anything of it is decoded
    /// ([`TaskError::Unauthenticated`] for its driver); each result the node sends is
    /// tagged under the same key, for its driver to check. At least 16 random bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = multiproc::cluster::ServeOptions::new().authkey("9f86d081884c7d659a2feaa0c55ad015");
    /// ```
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> Self {
        self.authkey = Some(Secret::new(key.as_ref()));
        self
    }

    /// The certificates of a `rediss://` URL's connections (see [`Tls`]): a private CA that
    /// signed the server's certificate, and a client certificate for a server that asks for
    /// one (default: the system's authorities, or instead those of the file or directory
    /// `SSL_CERT_FILE` or `SSL_CERT_DIR` names where the environment sets one; no client
    /// certificate). Given for a URL that is not `rediss://`, [`serve`] fails with
    /// [`ClusterError::BadUrl`]. A node started by [`WORKER_ENV`] has only the default.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::cluster::{ServeOptions, Tls};
    ///
    /// multiproc::init();
    /// let ca = std::fs::read("/etc/redis/ca.pem")?;
    /// let options = ServeOptions::new().tls(Tls::new().ca_pem(ca));
    /// multiproc::cluster::serve("rediss://node:secret@redis.example:6380/0", options)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// An entry in progress: its pool, entry id and lease.
type Running = HashMap<(String, String), Duration>;

struct Shared {
    running: Mutex<Running>,
    room: Condvar,
    capacity: usize,
    /// Why the local pool gave up on its workers ([`TaskError::WorkersCannotStart`], final),
    /// or could start none when none lived (`Delivery::unstarted`): the node then takes no
    /// more tasks, hands back those it holds, and ends.
    broken: OnceLock<TaskError>,
    /// The reader has stopped reading (the pool broke): only then does the writer hand
    /// tasks back. A hand-back lets the driver add the task again at once, and a read in
    /// flight would take it again, handing it back a second time, a second delivery spent
    /// (with `max_deliveries(2)`, `WorkerLost` for a task a healthy node could run).
    stopped: AtomicBool,
    /// Redis refuses the writer for good ([`writer_refused`]: its credentials, a password
    /// changed in Redis met by the writer's reconnection while the reader's connection stays
    /// logged in, or a lasting TLS failure), confirmed on a fresh connection: the reader ends
    /// the node on it ([`end_refused`]) as on a refusal of its own (review144 M1: nothing told
    /// the reader, which went on taking tasks whose results were all dropped, and the node
    /// never ended for a supervisor to restart it).
    refused: OnceLock<ClusterError>,
    /// The reader's connection, lent to the writer as the node ends on a refusal that is
    /// the writer's alone ([`end_refused`]): still logged in, it pushes the results the
    /// writer kept and hands back the running tasks (review150 M1: they were dropped after
    /// one more refused try on the writer's own link, their tasks taken back only after
    /// their lease, a delivery spent: `WorkerLost` under `max_deliveries(1)` for a task
    /// whose result was computed).
    spare: Mutex<Option<Link>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A finished chunk on its way to Redis.
struct Finished {
    pool: String,
    entry: String,
    /// The task's id, for the failure sent instead of a message Redis refuses.
    id: u64,
    /// Whether the task's tag checked: then its result is sealed (see [`seal_result`]).
    authentic: bool,
    /// The encoded [`ResultMsg`], sealed.
    message: Vec<u8>,
    lease: Duration,
    /// `message` is already the small [`Failure::Refused`] sent instead of the result.
    replaced: bool,
    /// Redis refused `message` for a while (busy, loading, full), or found the driver's
    /// alive key gone with the entry still there: it is tried again, and its entry
    /// heartbeated meanwhile.
    held: bool,
    /// How many pushes of `message` lost their connection while Redis answered a `PING`
    /// right after (a server that drops the connection on this message, not one that is down).
    dropped: u32,
    /// No result: the task is handed back (the local pool cannot run it), for its driver to
    /// take back at its next look and send to another node.
    handed_back: bool,
}

/// The most often a node repeats a warning: that it cannot read the registry of pools,
/// that no local worker has answered yet.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Pushes of one message that may lose the connection of a Redis that is up before it is
/// taken as refused.
const DROPPED_PUSHES: u32 = 3;

/// Encodes task `id`'s answer (a failure that says why when the result does not encode),
/// sealed ([`seal_result`]).
fn encode_result(
    seal: &Seal,
    pool: &str,
    authentic: bool,
    id: u64,
    outcome: Result<serde_bytes::ByteBuf, Failure>,
) -> Vec<u8> {
    let encode = |outcome| {
        codec::encode(&ResultMsg { id, outcome }).map(|mut encoded| {
            let bytes = std::mem::take(&mut encoded.bytes);
            encoded.sent();
            bytes
        })
    };
    let message =
        encode(outcome).unwrap_or_else(|e| encode(Err(Failure::Codec(e.to_string()))).expect("a failure encodes"));
    seal_result(seal, pool, authentic, id, message)
}

/// Task `id`'s result message followed by its tag under the cluster key, bound to the pool
/// and the task's id (so it passes for no other task's result). The answer to a task whose
/// tag did not check (not `authentic`) goes untagged: this node's key is not its driver's,
/// which could not check a tag of it (or the task was not a driver's); a driver takes an
/// untagged result only when it is [`Failure::Unauthenticated`] (what a writer of Redis
/// could do anyway: fail a task).
fn seal_result(seal: &Seal, pool: &str, authentic: bool, id: u64, mut message: Vec<u8>) -> Vec<u8> {
    if authentic {
        let tag = seal.result_tag(pool, id, &message);
        message.extend_from_slice(&tag);
    }
    message
}

/// Refusals that pass, whatever the message: a server busy with a script, loading its
/// data, or in a failover (`READONLY`: the demoted master, which a reconnection leaves for
/// the new one). A push refused so is tried again as it is.
fn passing(code: Option<&str>) -> bool {
    matches!(code, Some("BUSY" | "LOADING" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" | "READONLY"))
}

/// The next wait of a node's thread that meets Redis away (or refusing for now: busy,
/// loading, a failover's replica), `away` the last: 100 ms, doubled at each wait up to a
/// second (`None` again once Redis serves). Each try opens a connection (the last was
/// dropped), to a server that may be restarting or a replica in a failover: tried every
/// 50 or 100 ms, a node hammered it for as long as that lasted, and a `READONLY` read was
/// tried again with no wait at all (review150).
fn back_off(away: &mut Option<Duration>) -> Duration {
    let wait = away.map_or(Duration::from_millis(100), |d| (d * 2).min(Duration::from_secs(1)));
    *away = Some(wait);
    wait
}

/// Sends a chunk's outcome from the local pool to the writer.
struct Forward {
    pool: String,
    entry: String,
    id: u64,
    lease: Duration,
    /// The pool's `max_message_size`: a longer result message is not pushed (the driver
    /// would not read it), a [`Failure::TooLarge`] is.
    max: u64,
    /// Whether the task's tag checked, and the key to seal the result under.
    authentic: bool,
    seal: Seal,
    tx: Sender<Option<Finished>>,
    /// Where the local pool's failure is told (`Shared::broken`).
    shared: Arc<Shared>,
}

impl Forward {
    fn encode(&self, outcome: Result<serde_bytes::ByteBuf, Failure>) -> Vec<u8> {
        encode_result(&self.seal, &self.pool, self.authentic, self.id, outcome)
    }
}

impl Forward {
    fn send(&self, message: Vec<u8>, handed_back: bool) {
        let _ = self.tx.send(Some(Finished {
            pool: self.pool.clone(),
            entry: self.entry.clone(),
            id: self.id,
            authentic: self.authentic,
            message,
            lease: self.lease,
            replaced: false,
            held: false,
            dropped: 0,
            handed_back,
        }));
    }
}

impl Forward {
    /// This node cannot run the task, a healthy one may (review70): handed back, not failed
    /// for good, and the node ends (`Shared::broken`: `error` says why).
    fn hand_back(&self, error: TaskError) {
        let why = error.to_string();
        if self.shared.broken.set(error).is_ok() {
            log::error!(
                "this worker node's local pool cannot start its workers ({why}): handing back the tasks it \
                 took, to other nodes, and ending"
            );
        }
        self.send(Vec::new(), true);
    }
}

impl Delivery for Forward {
    fn deliver(&self, _chunk: usize, outcome: Result<Payload, TaskError>) {
        if let Err(error @ TaskError::WorkersCannotStart(_)) = outcome {
            return self.hand_back(error);
        }
        // Ended by the node itself (it stops: Redis refused its credentials, or its pool
        // broke): handed back, taken back by its driver as a dead node's would be after
        // its lease, never failed `Terminated` (review108 M3: the writer's connection,
        // still logged in, pushed it).
        if matches!(outcome, Err(TaskError::Terminated)) && self.shared.stopped.load(Ordering::Acquire) {
            return self.send(Vec::new(), true);
        }
        let too_large = |size: usize| Failure::TooLarge { size: size as u64, max: self.max };
        let outcome = match outcome {
            // Not even copied when the result alone is too long.
            Ok(payload) if payload.bytes().len() as u64 > self.max => Err(too_large(payload.bytes().len())),
            Ok(payload) => Ok(serde_bytes::ByteBuf::from(payload.bytes().to_vec())),
            Err(e) => Err(Failure::from_task_error(e)),
        };
        let mut message = self.encode(outcome);
        if message.len() as u64 > sealed_bound(self.max) {
            // The result with its id (or a long failure), its tag on top: what the driver
            // checks.
            message = self.encode(Err(too_large(message.len())));
        }
        self.send(message, false);
    }

    fn cancelled(&self) -> bool {
        false
    }

    /// No local worker lives and none could start (out of processes, of memory): as for
    /// [`TaskError::WorkersCannotStart`] (review80 L4: it failed the task for good, its
    /// `Panicked` sent to the driver, though the cause is often passing and a healthy node
    /// could run it).
    fn unstarted(&self, _chunk: usize, error: TaskError) {
        self.hand_back(error);
    }
}

pub(super) fn node_name() -> String {
    let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
    format!("{host}:{}", std::process::id())
}

/// Serves as a worker node of every cluster pool on the Redis server at `url`: runs their
/// tasks in a local process pool (sized to the CPUs: a task that crashes kills one process,
/// never the node) and writes their results. It reads no task before a local worker has
/// answered one of its own, so a node whose workers cannot boot takes none. It returns
/// only when it cannot start, or when its local pool gives up on its workers (they die
/// before their first answer, as in [`TaskError::WorkersCannotStart`]) or can start none
/// when none lives (the system refuses a new process): the node then takes
/// no more tasks, hands back those it holds (each counts a delivery: its driver sends it to another node, and fails it
/// [`TaskError::WorkerLost`] past [`ClusterOptions::max_deliveries`]), logs why, and
/// returns that error (`MULTIPROC_WORKER`'s node prints it and exits with status 1, for a
/// supervisor to restart it). Redis going away is waited out. A task whose tag does not check under the node's cluster key
/// ([`ServeOptions::authkey`]) is refused before anything of it is decoded
/// ([`TaskError::Unauthenticated`] for the driver), and one from a driver whose executable
/// differs from this one's is refused without running ([`TaskError::WrongBuild`]).
///
/// Programs usually become nodes through the environment instead: `MULTIPROC_WORKER=url`
/// ([`WORKER_ENV`]) makes `init()` call this.
///
/// # Errors
///
/// When multiproc is not initialized, the local pool cannot start (more processes than
/// the system can run: [`PoolError::TooManyWorkers`](crate::PoolError::TooManyWorkers),
/// before any starts), the URL is bad, no cluster key can be had
/// ([`ClusterError::Key`]), or Redis refuses the URL's credentials ([`ClusterError::Auth`])
/// or its TLS session cannot be set up ([`ClusterError::Tls`]) at the node's start (a TLS
/// failure that would heal, such as a certificate not valid yet on a machine whose clock is
/// not set, ends the node too); later, [`ClusterError::Tls`] when a TLS session cannot be
/// set up after the start in a way that does not heal, met twice (the server's certificate
/// changed for one no trusted authority signed, or that names another host; a server that
/// speaks no TLS; the server refusing the node's client certificate: the node's tasks are
/// handed back as below), while a certificate not valid yet or expired after the start is
/// waited out as Redis away is, and said through `log`; [`ClusterError::Auth`] when Redis refuses the credentials after
/// the start (a password changed in Redis, met when either of the node's connections
/// connects again, its task reader's or its result writer's, and met again on a fresh
/// connection: the node's
/// running tasks are ended and handed back, never failed, and the results it finished are
/// pushed, on whichever of its connections is still logged in (where Redis refused only
/// its result writer's, on its task reader's, which it then lends the writer); the tasks are
/// taken back by their drivers at once so, or after their lease, as a dead node's, where
/// Redis refuses both connections; a passing refusal, such as a Redis at `maxclients`, is waited out;
/// a command
/// an ACL refuses, `NOPERM`, is not such a refusal), [`Error::Task`] with [`TaskError::WorkersCannotStart`]
/// when the local pool gave up on its workers, or [`TaskError::Panicked`] ("cannot start
/// a worker: …") when it could start none.
///
/// [`ClusterOptions::max_deliveries`]: super::ClusterOptions::max_deliveries
/// [`Error::Task`]: crate::Error::Task
///
/// # Examples
///
/// ```no_run
/// multiproc::init();
/// if std::env::args().any(|a| a == "--node") {
///     multiproc::cluster::serve("redis://redis.example:6379/0", Default::default())?;
/// }
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn serve(url: &str, options: ServeOptions) -> Result<Infallible, crate::Error> {
    let timeout = options.timeout.unwrap_or(Duration::from_secs(5));
    let seal = Seal::new(options.authkey.as_ref())?;
    let mut reader_link = Link::with_tls(url, timeout, options.tls.as_ref())?;
    let writer_link = Link::with_tls(url, timeout, options.tls.as_ref())?;
    // Credentials Redis refuses, or a TLS session that cannot be set up, are no Redis away
    // to wait out: the node ends at once, as a queue's open or a pool's build does (it
    // tried again for ever, serving nothing, said only through `log`).
    if let Err(e @ (ClusterError::Auth(_) | ClusterError::Tls(_) | ClusterError::BadUrl(_))) =
        reader_link.run(|c| redis::cmd("PING").query::<()>(c))
    {
        return Err(e.into());
    }
    let workers = options.processes.unwrap_or_else(crate::cpu_count);
    let local = Inner::start(Config {
        workers,
        initializer: None,
        max_tasks: None,
        method: None,
        timeout: None,
        remote_results: true,
        zygote: None,
    })?;
    first_answer(&local)?;
    let build = crate::sys::build_identity();
    let me = node_name();
    let shared = Arc::new(Shared {
        running: Mutex::new(HashMap::new()),
        room: Condvar::new(),
        capacity: 2 * workers,
        broken: OnceLock::new(),
        stopped: AtomicBool::new(false),
        refused: OnceLock::new(),
        spare: Mutex::new(None),
    });
    let (tx, rx) = crossbeam_channel::unbounded();
    {
        let shared = shared.clone();
        let me = me.clone();
        let seal = seal.clone();
        std::thread::Builder::new()
            .name("multiproc-node-writer".into())
            .spawn(move || writer(writer_link, &me, &seal, &shared, &rx))?;
    }
    let mut pools: Vec<String> = Vec::new();
    let mut looked = Instant::now() - Duration::from_secs(60);
    let mut warned: Option<Instant> = None;
    // The last warning that an ACL refuses the read of a pool's tasks.
    let mut warned_read: Option<Instant> = None;
    // The last sweep of dead nodes' consumers (the first one at once).
    let mut swept = Instant::now() - CONSUMER_IDLE;
    // The pools whose tasks failed their tag here, each logged once (review67 S-L6).
    let mut refused: HashSet<String> = HashSet::new();
    // The last wait for Redis away ([`back_off`]); `None` again after a read Redis served
    // (not a look at the pools, which a replica serves).
    let mut away: Option<Duration> = None;
    // Since when every read failed as Redis away (`None` again after a read Redis served,
    // and while the node is full, making none), and the last warning of it: a node given a
    // replica's address for good (`READONLY` at each read, while the pools' registry reads
    // fine) serves nothing, and says why once a minute once it lasted that long (review153
    // L4: it said nothing).
    let mut unread_since: Option<Instant> = None;
    let mut warned_away: Option<Instant> = None;
    loop {
        if let Some(error) = shared.broken.get() {
            shared.stopped.store(true, Ordering::Release);
            // Woken, the writer hands back what it kept.
            let _ = tx.send(None);
            let error = hand_back(&shared, error);
            // Its consumers go where they hold nothing (those holding what was handed back
            // go once their drivers took it back, by another node's sweep).
            sweep(&mut reader_link, &pools, &me);
            return Err(error);
        }
        if let Some(refused) = shared.refused.get() {
            // The writer's refusal, not the reader's: the reader's connection, still
            // logged in, goes to the writer for what the node holds.
            return Err(end_refused(&shared, &tx, &local, refused.clone(), Some(reader_link)));
        }
        if looked.elapsed() >= Duration::from_millis(500) || pools.is_empty() {
            match find_pools(&mut reader_link) {
                Ok(found) => {
                    pools = found;
                    refused.retain(|pool| pools.contains(pool));
                }
                Err(e) => {
                    if let Some(refused) = lasting_refusal(&e, &mut reader_link) {
                        return Err(end_refused(&shared, &tx, &local, refused, None));
                    }
                    // A node that serves nothing says why (the registry of another type,
                    // an ACL, Redis away), once a minute rather than at each try.
                    if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        log::warn!("cannot read the pools to serve ({POOLS}): {e}; serving nothing until it can");
                        warned = Some(Instant::now());
                    }
                    std::thread::sleep(back_off(&mut away));
                    continue;
                }
            }
            looked = Instant::now();
            if swept.elapsed() >= CONSUMER_IDLE {
                sweep(&mut reader_link, &pools, "");
                swept = Instant::now();
            }
            if pools.is_empty() {
                // Redis serves (no pool to read): a later outage backs off from the start.
                away = None;
                unread_since = None;
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        }
        let room = {
            let mut running = lock(&shared.running);
            // Full: no read for want of room, which is not a failed one (review159 L2: a
            // node full for minutes after one failed read warned at its next failure that
            // it could not read "for" all that time).
            if running.len() >= shared.capacity {
                unread_since = None;
            }
            // A broken pool hands back nothing before the reader stops: the loop's next
            // turn does.
            while running.len() >= shared.capacity && shared.broken.get().is_none() && shared.refused.get().is_none() {
                running = shared
                    .room
                    .wait_timeout(running, Duration::from_millis(100))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            shared.capacity.saturating_sub(running.len())
        };
        let block = (100 / pools.len()).max(5);
        // Whether a read of this round waited (served, blocked, or slept on a failure):
        // a round whose every read was refused at once sleeps before the next.
        let mut waited = false;
        for pool in &pools {
            if shared.broken.get().is_some() || shared.refused.get().is_some() {
                // Taking no more: the loop's next turn ends the node.
                waited = true;
                break;
            }
            let keys = PoolKeys::new(pool);
            crash_point!("cluster.node.read");
            let read = reader_link.run(|c| {
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(&me)
                    .arg("COUNT")
                    .arg(room)
                    .arg("BLOCK")
                    .arg(block)
                    .arg("STREAMS")
                    .arg(&keys.tasks)
                    .arg(">")
                    .query::<Option<Vec<(String, Vec<(String, Vec<(String, Vec<u8>)>)>)>>>(c)
            });
            let entries = match read {
                Ok(Some(streams)) => {
                    away = None;
                    unread_since = None;
                    streams.into_iter().flat_map(|(_, e)| e).collect::<Vec<_>>()
                }
                Ok(None) => {
                    away = None;
                    unread_since = None;
                    Vec::new()
                }
                // Redis away, or refusing for now: busy, loading, or a failover's replica
                // (`READONLY`, `UNBLOCKED`: taken for a `NOGROUP`, it was read again at once,
                // a hot loop for as long as the failover lasted, review150), waited out on a
                // new connection. (`UNBLOCKED` is also a pool's end: its driver deleted the
                // stream this read blocked on; one reconnection and one pause, `waits`.)
                Err(ClusterError::Unreachable(why)) => {
                    let since = *unread_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= WARN_EVERY && warned_away.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        log::warn!(
                            "every read of the pools' tasks failed for {} s, the last of pool {pool} ({why}): \
                             serving nothing until one can (Redis away, or this address leads to a replica)",
                            since.elapsed().as_secs()
                        );
                        warned_away = Some(Instant::now());
                    }
                    std::thread::sleep(back_off(&mut away));
                    waited = true;
                    break;
                }
                Err(e) => match lasting_refusal(&e, &mut reader_link) {
                    Some(refused) => return Err(end_refused(&shared, &tx, &local, refused, None)),
                    // A TLS failure that heals (a certificate not valid yet): waited out
                    // as Redis away is, rather than tried again at once.
                    None if matches!(e, ClusterError::Tls(_)) => {
                        std::thread::sleep(back_off(&mut away));
                        waited = true;
                        break;
                    }
                    // A read an ACL refuses (`NOPERM` on `XREADGROUP` or on this pool's
                    // keys; the credentials pass, as the `PING` just said): the other pools
                    // are read, and the refusal said once a minute (fix114: tried again at
                    // once, for ever, silent, a busy loop of the read and the `PING`).
                    None if matches!(e, ClusterError::Auth(_)) => {
                        if warned_read.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                            log::warn!("cannot read the tasks of pool {pool}: {e}; serving it nothing until it can");
                            warned_read = Some(Instant::now());
                        }
                        continue;
                    }
                    // NOGROUP: the pool is gone or not set up yet.
                    None => continue,
                },
            };
            waited = true;
            for (entry, fields) in entries {
                start_task(pool, entry, fields, build, &seal, &me, &local, &shared, &tx, &mut refused);
            }
        }
        if !waited {
            // Every read refused at once (an ACL, pools not set up yet): the next round
            // after a tenth of a second, as after Redis away, not at once.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Deletes the consumers of the group `nodes` of the stream `KEYS[1]` that hold no entry
/// and are either `ARGV[1]` (a node that ends) or idle longer than `ARGV[2]` ms, but for the
/// birth tag (`born-` and 16 hex digits, as `wire.rs`'s `born` reads it: a node's consumer
/// is `host:pid`, and a host may be named `born-…`, review84 L7), which never reads;
/// answers how many. Idle means a node that no longer reads (dead, most likely) on Redis
/// 7.2 and later, where a read resets it; before 7.2 only a read that is served entries
/// does (review84 L6: this project's tests run 7.0), so there the consumer of a live node
/// that took no task for that long is deleted too, and made again by its next served
/// read or claim: harmless, since only a consumer that holds nothing goes. Without it, the
/// consumers of ended nodes piled up in each group, one per node start (review80 L9). One
/// that holds entries stays until its driver takes them back. Deleting a consumer that
/// does read costs nothing: its next read makes it again. In one script, so no read of the
/// consumer's falls between the look and the deletion.
const SWEEP: &str = r"
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], 'nodes')
if consumers.err then return 0 end
local deleted = 0
for _, consumer in ipairs(consumers) do
  local field = {}
  for i = 1, #consumer, 2 do field[consumer[i]] = consumer[i + 1] end
  local name = field['name']
  if field['pending'] == 0 and not string.match(name, '^born%-' .. string.rep('%x', 16) .. '$')
     and (name == ARGV[1] or field['idle'] > tonumber(ARGV[2])) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], 'nodes', name)
    deleted = deleted + 1
  end
end
return deleted
";

/// How long a consumer of a pool's group is idle before a node deletes it, and how often a
/// node looks. On Redis 7.2 and later a live node's consumer is never idle that long (it
/// reads at least every tenth of a second, but when its local pool is full: then it holds
/// entries, and is not deleted); before 7.2 its idle time counts from its last read that
/// was served entries, so an idle live node's consumer is deleted at every look, and made
/// again when it takes a task ([`SWEEP`]).
const CONSUMER_IDLE: Duration = Duration::from_secs(10);

/// Deletes, in the groups of `pools`, the consumers that hold nothing and are `me` or idle
/// past [`CONSUMER_IDLE`] ([`SWEEP`]). Best effort: a refusal (an ACL without `XINFO`) leaves
/// them, as before.
fn sweep(link: &mut Link, pools: &[String], me: &str) {
    let script = redis::Script::new(SWEEP);
    for pool in pools {
        let keys = PoolKeys::new(pool);
        let idle = CONSUMER_IDLE.as_millis() as u64;
        let _ = link.run(|c| script.key(&keys.tasks).arg(me).arg(idle).invoke::<i64>(c));
    }
}

/// Whether a failure `e` of the node's reader is one that trying again does not mend,
/// returned: Redis refusing the node's credentials, rather than a command an ACL refuses
/// (`NOPERM`, an [`ClusterError::Auth`] too), or a TLS session that cannot be set up in a
/// way that does not heal (an untrusted certificate, a server that speaks no TLS:
/// [`Link::tls_lasts`]; clu101 item 3), rather than one that may (a certificate not valid
/// yet, a clock set wrong). Told apart by a `PING` on a fresh connection if the failure
/// dropped the last, as `serve` ran at its start: the refusal must be met again. A pool's
/// driver confirms credentials refused at a reconnection so too (`pool::passing_failure`).
pub(super) fn lasting_refusal(e: &ClusterError, link: &mut Link) -> Option<ClusterError> {
    match e {
        ClusterError::Auth(_) => {}
        ClusterError::Tls(_) if link.tls_lasts() => {}
        _ => return None,
    }
    match link.run(|c| redis::cmd("PING").query::<()>(c)) {
        Err(refused @ ClusterError::Auth(_)) => Some(refused),
        Err(refused @ ClusterError::Tls(_)) if link.tls_lasts() => Some(refused),
        _ => None,
    }
}

/// Whether a failure `e` of the node's writer (of a push, else of a beat) is a refusal for
/// good, as [`lasting_refusal`] tells the reader's (confirmed by a `PING` on a fresh
/// connection), or any `Auth` or lasting `Tls` once one was: then `Shared::refused` says
/// so, for the reader to end the node.
fn writer_refused(e: &ClusterError, link: &mut Link, shared: &Shared, push: bool) -> bool {
    match e {
        ClusterError::Auth(_) => {}
        ClusterError::Tls(_) if link.tls_lasts() => {}
        _ => return false,
    }
    if shared.refused.get().is_some() {
        return true;
    }
    // A push's confirmation only: a test holding it there knows the push met the refusal,
    // not a beat (review153 L3).
    if push {
        crash_point!("cluster.node.confirm");
    }
    match lasting_refusal(e, link) {
        Some(refused) => {
            let _ = shared.refused.set(refused);
            true
        }
        None => false,
    }
}

/// The end of a node that Redis refuses after its start, for good ([`lasting_refusal`]: its
/// credentials, a password changed in Redis, or its TLS session, a certificate changed for
/// one the node does not trust; met at a reconnection): its URL and certificates cannot
/// change, so it ends as at its start, for a supervisor to restart it with new ones. It
/// stops reading and its local pool; what it holds is handed back (`Forward::deliver` hands
/// back a `Terminated` met once `Shared::stopped` is set), never failed: taken back by the
/// drivers at once where the writer's connection is still open (connections already open
/// keep their login and their TLS session), or after its lease where Redis refuses that
/// too, a delivery counted either way, as a dead node's. It returns once the writer has
/// handed back or pushed what the node holds ([`written`]). The refusal may be the
/// writer's alone (`Shared::refused`): then `spare` is the reader's connection, still logged
/// in, lent to the writer (`Shared::spare`) before anything is handed back, on which the
/// results the writer kept are pushed and the running tasks handed back (review150 M1);
/// where Redis refuses that one too, they are dropped after one more refused try, their
/// tasks taken back after their lease.
fn end_refused(
    shared: &Shared,
    writer: &Sender<Option<Finished>>,
    local: &Arc<Inner>,
    refused: ClusterError,
    spare: Option<Link>,
) -> crate::Error {
    if let Some(spare) = spare {
        *lock(&shared.spare) = Some(spare);
    }
    shared.stopped.store(true, Ordering::Release);
    crash_point!("cluster.node.lent");
    let _ = writer.send(None);
    local.terminate();
    let _ = local.join();
    // The `Terminated` hand-backs and the results not pushed yet are the writer's: `serve`
    // returns once it has handed back or pushed them, as for a broken pool (review136 L1: it
    // returned at once, and a `MULTIPROC_WORKER` node exits as `serve` returns, racing the
    // writer; lost, they were taken back after their lease, a result finished just before
    // run again). Quick where Redis refuses the writer too: it drops each after one try.
    let _ = writer.send(None);
    written(shared);
    match &refused {
        ClusterError::Tls(_) => {
            log::error!("the TLS session with Redis cannot be set up, for good: ending ({refused})")
        }
        _ => log::error!("Redis refuses this node's credentials: ending ({refused})"),
    }
    refused.into()
}

/// A task that does nothing: the first a node's local pool runs ([`first_answer`]).
fn nothing(_: ()) {}

/// Waits until a worker of the local pool has answered a task ([`nothing`]), before the
/// node reads any: a node whose workers cannot boot then ends without having taken one
/// (review80 M1: it took up to `capacity` tasks from each pool at once, handed them back
/// once its pool gave up, and each such start, under a supervisor that restarts the node,
/// spent a delivery of each, failing them `WorkerLost` while healthy nodes were there).
/// The hand-back stays for a pool that breaks later.
fn first_answer(local: &Inner) -> Result<(), crate::Error> {
    /// Sends the outcome of [`nothing`].
    struct Answered(Sender<Result<(), TaskError>>);
    impl Delivery for Answered {
        fn deliver(&self, _chunk: usize, outcome: Result<Payload, TaskError>) {
            let _ = self.0.send(outcome.map(drop));
        }

        fn cancelled(&self) -> bool {
            false
        }
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    let (args, _plain) = Payload::encode::<Vec<()>, _>(&[()][..])?;
    local.submit(Job {
        chunk: 0,
        items: 1,
        call: crate::pool::pack_task(nothing as fn(()))?,
        args,
        timeout: None,
        delivery: Arc::new(Answered(tx)),
        discard: |_| {},
        claims: None,
        undo: Default::default(),
    })?;
    // The pool answers every job it took: with a result, or why it has none (its workers
    // cannot start: `WorkersCannotStart`). A boot that hangs rather than dies (a
    // `child_init` stuck on a lock, a mount, a name to resolve) is waited for, said in the
    // log so that such a node is seen (review81 L1: it waited in silence, taking nothing).
    let started = Instant::now();
    let mut warn_in = FIRST_BOOT_WARNING;
    loop {
        match rx.recv_timeout(warn_in) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => return Err(crate::Error::Task(error)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                return Err(crate::Error::Task(TaskError::Terminated));
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                log::warn!(
                    "no local worker of this node has answered yet ({} s): taking no task until one has",
                    started.elapsed().as_secs()
                );
                warn_in = WARN_EVERY;
            }
        }
    }
}

/// How long a node waits for its first local worker before it says so ([`first_answer`]);
/// then every [`WARN_EVERY`].
const FIRST_BOOT_WARNING: Duration = Duration::from_secs(10);

/// The end of a node whose local pool gave up on its workers (`Shared::broken`): waits
/// until the writer has sent or handed back every task the node holds ([`written`]), and
/// says why.
fn hand_back(shared: &Shared, error: &TaskError) -> crate::Error {
    written(shared);
    crate::Error::Task(error.clone())
}

/// Waits until the writer has sent or handed back every task the node holds, at most the
/// longest of their leases (after which their drivers take them back anyway).
fn written(shared: &Shared) {
    let mut running = lock(&shared.running);
    let longest = running.values().max().copied().unwrap_or_default().min(super::MAX_LEASE);
    let until = Instant::now() + longest;
    while !running.is_empty() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        running = shared
            .room
            .wait_timeout(running, left.min(Duration::from_millis(100)))
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
}

/// The live pools; the keys of those whose driver is gone are deleted. Members of the
/// registry that no driver makes ([`is_pool_id`]) are never served, and removed from it (a
/// driver's beat adds its own again, so nothing else stays there for ever); the keys named
/// after them are left alone, being nobody's that a node knows. Members are read as bytes,
/// so that one that is not UTF-8 does not make the whole registry unreadable.
fn find_pools(link: &mut Link) -> Result<Vec<String>, ClusterError> {
    let members: Vec<Vec<u8>> = link.run(|c| redis::cmd("SMEMBERS").arg(POOLS).query(c))?;
    let (ids, odd): (Vec<Vec<u8>>, Vec<Vec<u8>>) = members.into_iter().partition(|m| is_pool_id(m));
    if !odd.is_empty() {
        link.run(|c| redis::cmd("SREM").arg(POOLS).arg(&odd).query::<()>(c))?;
    }
    let mut live = Vec::new();
    for id in ids.into_iter().filter_map(|m| String::from_utf8(m).ok()) {
        let keys = PoolKeys::new(&id);
        let alive: bool = link.run(|c| redis::cmd("EXISTS").arg(&keys.alive).query(c))?;
        if alive {
            live.push(id);
        } else {
            let mut pipe = redis::pipe();
            pipe.cmd("DEL").arg(&keys.tasks).arg(&keys.results).arg(&keys.trimmed).ignore();
            pipe.cmd("SREM").arg(POOLS).arg(&id).ignore();
            link.run(|c| pipe.query::<()>(c))?;
        }
    }
    Ok(live)
}

#[allow(clippy::too_many_arguments)]
fn start_task(
    pool: &str,
    entry: String,
    fields: Vec<(String, Vec<u8>)>,
    build: Option<u128>,
    seal: &Seal,
    me: &str,
    local: &Arc<Inner>,
    shared: &Arc<Shared>,
    tx: &Sender<Option<Finished>>,
    refused: &mut HashSet<String>,
) {
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice());
    let message = field("m").unwrap_or_default();
    // Nothing of the task is decoded before its tag checks: its `call` is code offsets this
    // node would jump to.
    let task = match field("k") {
        Some(tag) if seal.verify(pool, message, tag) => Some(codec::decode_exact::<TaskMsg>(message)),
        Some(_) => None,
        // No tag: a driver of an earlier version (answered as another build, below).
        None => Some(Err(crate::CodecError::decode("a task entry without a tag"))),
    };
    let (id, lease, max) = match &task {
        Some(Ok(t)) => (t.id, Duration::from_millis(t.lease_ms), t.max_result),
        // Not a task of this layout or key: the id its head names, if any (0 when none: no
        // driver has a task 0).
        _ => (id_of(message).unwrap_or(0), Duration::from_secs(10), u64::MAX),
    };
    lock(&shared.running).insert((pool.to_string(), entry.clone()), lease);
    // The writer may be asleep for a longer lease's beat (a second when nothing ran): woken,
    // it heartbeats this entry within a third of its lease from now, well before the
    // driver may take it back.
    let _ = tx.send(None);
    // Results are sealed only where the task's tag checked (not for an entry without one).
    let authentic = field("k").is_some() && task.is_some();
    let forward = Arc::new(Forward {
        pool: pool.to_string(),
        entry,
        id,
        lease,
        max,
        authentic,
        seal: seal.clone(),
        tx: tx.clone(),
        shared: shared.clone(),
    });
    let task = match task {
        Some(Ok(task)) => task,
        // Answered so that the entry leaves the stream, and its driver (another key) learns
        // it at once.
        None => {
            // Its driver learns it from the answer; the node's operator from the log (once
            // per pool: a node with the wrong key would refuse every task of every pool).
            if refused.insert(pool.to_string()) {
                log::warn!(
                    "refusing the tasks of cluster pool {pool}: their tags do not check under this node's \
                     cluster key (the driver's key differs; see {KEY_ENV})"
                );
            }
            forward.deliver(0, Err(TaskError::Unauthenticated { node: me.to_string() }));
            return;
        }
        Some(Err(e)) => {
            // Answered so that the entry leaves the stream. With the id of a task: most
            // likely a driver of another version of the crate (another layout), which
            // learns at once that this node runs another build. Without: nobody waits.
            let error = if id == 0 { TaskError::Codec(e) } else { TaskError::WrongBuild { node: me.to_string() } };
            forward.deliver(0, Err(error));
            return;
        }
    };
    if build != Some(task.build) {
        forward.deliver(0, Err(TaskError::WrongBuild { node: me.to_string() }));
        return;
    }
    let args = match Payload::new(task.args) {
        Ok(args) => args,
        Err(e) => {
            forward.deliver(0, Err(TaskError::Codec(crate::CodecError::decode(format_args!("{e}")))));
            return;
        }
    };
    let job = Job {
        chunk: 0,
        items: 1,
        // SAFETY: the task's authenticity is what makes this sound: its `call` is a driver's
        // `pack`, of this build (checked above), unchanged: its bytes passed the HMAC under
        // the cluster key (`seal.verify` above) before anything in them was decoded, so
        // only a holder of the key chose them (a driver, or whoever the user gave the key).
        #[allow(unsafe_code)]
        call: unsafe { task.call.for_this_executable() },
        args,
        timeout: task.timeout_ms.map(Duration::from_millis),
        delivery: forward.clone(),
        discard: |_| {},
        claims: None,
        undo: Default::default(),
    };
    if let Err(e) = local.submit(job) {
        forward.deliver(0, Err(TaskError::Codec(crate::CodecError::decode(format_args!("{e}")))));
    }
}

/// Sends results, heartbeats the entries in progress. `None` on `rx`: a task started (its
/// lease may ask for beats sooner than the writer was going to wake).
fn writer(mut link: Link, me: &str, seal: &Seal, shared: &Shared, rx: &Receiver<Option<Finished>>) {
    let script = redis::Script::new(PUT_RESULT);
    let mut unsent: Vec<Finished> = Vec::new();
    let mut last_beat = Instant::now();
    // The wait before the next try while Redis is away or refuses for now (busy, loading, a
    // failover's replica), or a TLS failure that heals lasts ([`back_off`]; review144 L3:
    // each try is a full handshake, its server side on Redis's one thread, and it was tried
    // every 50 ms for as long as the failure lasted, days for an expired certificate nobody
    // renewed). Never past the next beat: the entries of results Redis refuses for now are
    // heartbeated.
    let mut retry: Option<Duration> = None;
    loop {
        let beat_every = {
            let running = lock(&shared.running);
            running.values().min().map_or(Duration::from_secs(1), |lease| *lease / 3)
        };
        let wait = if unsent.is_empty() {
            beat_every.saturating_sub(last_beat.elapsed())
        } else {
            retry.map_or(Duration::from_millis(50), |retry| retry.min(beat_every.saturating_sub(last_beat.elapsed())))
        };
        match rx.recv_timeout(wait) {
            Ok(f) => unsent.extend(f),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
        unsent.extend(rx.try_iter().flatten());
        take_spare(&mut link, shared);
        // In order; a result whose driver is away is passed over (other pools' go on),
        // and a refusal of the server stops them all.
        let mut at = 0;
        let mut waits = false;
        while let Some(f) = unsent.get_mut(at) {
            let keys = PoolKeys::new(&f.pool);
            if f.handed_back {
                if !shared.stopped.load(Ordering::Acquire) {
                    // Kept, and heartbeated, until the reader has stopped (`Shared::stopped`).
                    at += 1;
                    continue;
                }
                // Idle for a lease already: its driver's next look takes it back (a
                // delivery counted) and sends it again. Whether this reaches Redis or not,
                // the entry is no longer heartbeated, so it is taken back after its lease
                // at the latest.
                let idle = f.lease.min(super::MAX_LEASE);
                take_spare(&mut link, shared);
                let _ = link.run(|c| claim(&keys.tasks, me, &f.entry, Some(idle)).query::<redis::Value>(c));
                let f = unsent.remove(at);
                lock(&shared.running).remove(&(f.pool, f.entry));
                shared.room.notify_all();
                continue;
            }
            let mut code = None;
            crash_point!("cluster.node.put");
            let sent = link.run(|c| {
                script
                    .key(&keys.tasks)
                    .key(&keys.results)
                    .key(&keys.alive)
                    .arg(&f.entry)
                    .arg(f.message.as_slice())
                    // At most a hundred years: `PEXPIRE` refuses a time past its range.
                    .arg(key_ttl(f.lease).min(super::MAX_LEASE).as_millis() as u64)
                    .invoke::<i64>(c)
                    .inspect_err(|e| code = e.code().map(str::to_owned))
            });
            // Refused by the reconnection (`AUTH`), not on a live connection (`NOPERM`).
            let auth_at_open = matches!(link.open_failed(), Some(ClusterError::Auth(_)));
            let why = match sent {
                // The driver's alive key is gone, its entry is not: kept, and its entry
                // heartbeated, until the driver beats again or its keys go.
                Ok(DRIVER_AWAY) => {
                    f.held = true;
                    at += 1;
                    continue;
                }
                Ok(_) => None,
                // Tried again as it is (busy, loading, a failover: `Unreachable` since
                // those are waited out, but told apart by their code), or its small
                // failure when even that finds the server full: its entry is heartbeated
                // meanwhile, so its driver waits for it instead of running it again.
                Err(_) if passing(code.as_deref()) || (f.replaced && code.as_deref() == Some("OOM")) => {
                    f.held = true;
                    waits = true;
                    break;
                }
                Err(ClusterError::Unreachable(why)) => {
                    // Redis down, or a server that drops the connection on this message
                    // (a bulk longer than its limit can end so): told apart by a `PING`.
                    let up = link.run(|c| redis::cmd("PING").query::<()>(c)).is_ok();
                    f.dropped += u32::from(up);
                    if f.dropped < DROPPED_PUSHES || f.replaced {
                        waits = true;
                        break;
                    }
                    Some(format!("the connection was lost on each push ({why})"))
                }
                // Refused for good (review144 M1): the result is kept while the reader is
                // told (`Shared::refused`) and ends the node, lending the writer its own
                // connection, still logged in (`Shared::spare`), which sets `stopped`: the
                // result is tried again on it (review150 M1). Refused again there too (or
                // with no connection lent), it is dropped (not replaced by a failure that
                // would meet the same refusal): its task is taken back after its lease, as
                // a dead node's. `stopped` is read before the spare is looked for: the reader
                // lends the spare before it sets `stopped`, so once `stopped` reads true a lent
                // spare is there (review153 M1: read after, a reader that lent and stopped in
                // between left the writer to drop the result with the spare unused).
                Err(e) if writer_refused(&e, &mut link, shared, true) => {
                    let stopped = shared.stopped.load(Ordering::Acquire);
                    crash_point!("cluster.node.spare");
                    if take_spare(&mut link, shared) {
                        continue;
                    }
                    if !stopped {
                        break;
                    }
                    None
                }
                // Credentials the reconnection met refused but a fresh connection did not
                // (the password changed back, a user rewritten in two steps, a rotation that
                // reaches this Redis a moment later): passed, the result kept and tried again
                // as for Redis away (review150 L3: replaced by a `Refused` failure, which
                // Redis then took, it failed its task for a refusal that had passed). A
                // `NOPERM`, a command an ACL refuses on a live connection, is replaced below.
                Err(ClusterError::Auth(_)) if auth_at_open => {
                    waits = true;
                    break;
                }
                // A TLS failure that heals (a certificate not valid yet, a clock set wrong),
                // or one of the lasting class not met again on a fresh connection: Redis
                // away, the result kept and tried again, as the reader waits it out, backing
                // off (review136 M1: taken for a refusal, the result was replaced by a
                // `Refused` failure that met the same failure and was dropped, the task lost).
                Err(ClusterError::Tls(_)) => {
                    waits = true;
                    break;
                }
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = why
                && !f.replaced
            {
                // Refused by Redis (its `proto-max-bulk-len`, its memory, an ACL...): a
                // small failure that says so goes instead, so the driver learns it now,
                // not after the entry's deliveries ran out as a lost worker.
                let mut why = why;
                let mut end = why.len().min(512);
                while !why.is_char_boundary(end) {
                    end -= 1;
                }
                why.truncate(end);
                let size = f.message.len() as u64;
                f.message = encode_result(seal, &f.pool, f.authentic, f.id, Err(Failure::Refused { size, why }));
                f.replaced = true;
                f.dropped = 0;
                continue;
            }
            // Pushed, or even its failure refused for good (an ACL, a key of another
            // type: nobody could read it; `PUT_RESULT` refuses the latter before the entry
            // goes, and the driver takes it back after the lease), or the driver gone with
            // the entry (its keys deleted or expired, or the entry taken back): not sent
            // again.
            let f = unsent.remove(at);
            lock(&shared.running).remove(&(f.pool, f.entry));
            shared.room.notify_one();
        }
        if !waits {
            retry = None;
        } else {
            back_off(&mut retry);
        }
        if last_beat.elapsed() >= beat_every {
            last_beat = Instant::now();
            let mut by_pool: HashMap<String, Vec<String>> = HashMap::new();
            // Results waiting for Redis are not heartbeated (a node cut off from Redis
            // has its entries run elsewhere), but those Redis refused for a while are, and
            // the tasks to hand back once the reader stopped (else their driver takes them
            // back after their lease, and a read in flight may take them again).
            let done: HashSet<(String, String)> = unsent
                .iter()
                .filter(|f| !f.held && !f.handed_back)
                .map(|f| (f.pool.clone(), f.entry.clone()))
                .collect();
            for (pool, entry) in lock(&shared.running).keys() {
                if !done.contains(&(pool.clone(), entry.clone())) {
                    by_pool.entry(pool.clone()).or_default().push(entry.clone());
                }
            }
            for (pool, entries) in by_pool {
                let keys = PoolKeys::new(&pool);
                if let Err(e) = link.run(|c| claim(&keys.tasks, me, &entries, None).query::<redis::Value>(c)) {
                    // A beat refused for good ends the node too, as a push does.
                    writer_refused(&e, &mut link, shared, false);
                }
            }
        }
    }
}

/// Takes the reader's connection the node lent the writer as it ends on the writer's
/// refusal (`Shared::spare`), if it did and the writer has not taken it yet, in place of the
/// writer's refused link; whether it did.
fn take_spare(link: &mut Link, shared: &Shared) -> bool {
    match lock(&shared.spare).take() {
        Some(spare) => {
            *link = spare;
            true
        }
        None => false,
    }
}

/// `XCLAIM` of `entries` of the stream `tasks` by the node `me`, whatever their idle time,
/// answered with their ids: a heartbeat (their idle time starts again), or with `idle` a
/// hand-back (they look idle that long, for their driver to take back).
fn claim(tasks: &str, me: &str, entries: impl redis::ToRedisArgs, idle: Option<Duration>) -> redis::Cmd {
    let mut cmd = redis::cmd("XCLAIM");
    cmd.arg(tasks).arg(GROUP).arg(me).arg(0).arg(entries);
    if let Some(idle) = idle {
        cmd.arg("IDLE").arg(idle.as_millis() as u64);
    }
    cmd.arg("JUSTID");
    cmd
}
