//! The supervisor of a process [`Pool`](super::Pool): the books of what went where, the
//! dispatch to the workers, and the pool thread that watches them.
//!
//! # How it works
//!
//! Each worker is a process of the family with its own inbox; all workers put their
//! results on one results channel. The parent keeps the books: which chunk went to which
//! worker, in order. Because each worker takes from its own inbox in order, the parent
//! always knows what a worker was doing when it died: chunks still in its inbox were not
//! started (they go to another worker), chunks sent to it that are neither in its inbox
//! nor answered were running (they fail with [`TaskError::WorkerLost`], or
//! [`TaskError::TimedOut`] when the pool killed the worker for running past the timeout).
//! So every task ends with its result or a typed error, whatever happens to the workers.
//!
//! A worker writes the chunk it starts, and when, into a small shared status block; the
//! pool thread compares that with the timeout. A parent thread waiting for a result
//! collects results itself (no hop through another thread), and the pool thread collects
//! when nobody waits (for callbacks), watches the workers and replaces those that end.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::channel::Channel;
use super::engine::{ChunkUndo, Delivery, Engine, Job};
use super::error::{BootFailure, PoolError, TaskError};
use super::result::Helper;
use super::stats::Counters;
use super::worker::{FromWorker, INITIALIZING, ToWorker, WorkerBoot, WorkerStatus, worker_main};
use crate::codec;
use crate::error::{Error, JoinError, PanicInfo};
use crate::process::spin::LoadSpin;
use crate::process::{Process, ProcessHandle, StartMethod, Zygote};
use crate::shm::crash::crash_point;
use crate::shm::{Blob, ClaimTable, Deadline, Payload, Shared, TakenIn, saturating_nanos as nanos, spin_for};
use crate::sys::{self, Packed};

const RUNNING: u8 = 0;
const CLOSED: u8 = 1;
const TERMINATED: u8 = 2;

/// How often the pool thread looks at its workers when nothing wakes it earlier.
const TICK: Duration = Duration::from_millis(20);
/// After the last waiting thread left, how long the pool thread leaves the results to the
/// next one before collecting them itself.
const HELPED_RECENTLY: Duration = Duration::from_millis(2);
/// How long a polled future may spin for its result ([`Helper::help_briefly`]): the
/// executor's thread runs nothing else meanwhile, so a fraction of what a blocking `get`
/// spins, enough for a short task's round trip on an idle worker.
const ASYNC_SPIN: Duration = Duration::from_micros(20);
/// Chunks queued per worker at most, whatever their size.
const MAX_WINDOW: usize = 256;
/// The work a worker should have queued, in time, so it never idles between chunks.
const WINDOW_TIME: Duration = Duration::from_millis(2);
/// Chunks longer than this are sent one at a time per worker.
const LONG_CHUNK: Duration = Duration::from_millis(20);
/// How long a chunk of a failed `map` may go on running before its worker is killed and
/// replaced: a short task finishes, a long one does not hold the pool.
const CANCEL_GRACE: Duration = Duration::from_millis(100);
/// How long a chunk may wait untaken at the front of an idle worker's inbox before an idle
/// worker takes it over (see [`Inner::take_over_untaken`]): a worker woken late on a
/// loaded machine takes its chunk well within it; one stopped (`SIGSTOP`, a debugger, a
/// frozen cgroup) never does.
const UNTAKEN_GRACE: Duration = Duration::from_millis(100);
/// With a timeout, how long a booted idle worker that is not stopped may leave a chunk
/// untaken (past the chunk's timeout too) before it is replaced: one stopped is replaced
/// at the timeout; one runnable but not scheduled on a loaded machine takes it soon.
const UNTAKEN_KILL: Duration = Duration::from_secs(1);

/// How many workers in a row may end before their first answer (boot deaths) before the
/// pool gives up on them and fails its work: twice the pool's size, as for initializer
/// failures, but at least ten, so that a small pool rides out a few workers killed while
/// starting (a 1-worker pool with five such deaths is still replaced).
fn boot_death_limit(workers: usize) -> u32 {
    u32::try_from(workers.saturating_mul(2)).unwrap_or(u32::MAX).max(10)
}

/// Whether a worker's exit code (`-signal` for a signal) says that another process ended
/// it, rather than its own failure to start (an exit, an abort, a crash).
fn killed_from_outside(code: Option<i32>) -> bool {
    matches!(code, Some(c) if [libc::SIGKILL, libc::SIGTERM, libc::SIGINT, libc::SIGHUP].contains(&-c))
}

/// A chunk that was sent to a worker (its arguments are in the worker's inbox, or being
/// run).
struct Sent {
    chunk: usize,
    items: usize,
    call: Packed,
    timeout: Option<Duration>,
    delivery: Arc<dyn Delivery>,
    discard: fn(&Payload),
    /// A large chunk's blob, held until the chunk is answered: a worker killed while it runs
    /// the chunk leaves its handle recorded as a dead process's, which only the drop of the
    /// last live holder forgets.
    held: Option<Blob>,
    /// When the pool thread first saw its call cancelled while it ran (`sys::monotonic_ns`).
    cancel_seen: Option<u64>,
    /// A seat of a call on the claims path: its table, held until answered (as `held`).
    claims: Option<ClaimTable>,
    /// The undo of the handles in its arguments, until answered (see [`ChunkUndo`]).
    undo: ChunkUndo,
    /// When it was first seen untaken at the front of an idle booted worker's inbox
    /// (`sys::monotonic_ns`), kept as it is taken over from worker to worker: the
    /// `Kill::Untaken` clock. On the worker (`Worker::untaken`), each move reset it, and with
    /// every idle worker stopped the chunk moved on for ever, never past its timeout on any
    /// one (review168 M1).
    untaken_since: Option<u64>,
}

impl Sent {
    /// The chunk, with its arguments taken back from an inbox, queued again.
    fn into_job(self, args: Payload) -> Job {
        Job {
            chunk: self.chunk,
            items: self.items,
            call: self.call,
            args,
            timeout: self.timeout,
            delivery: self.delivery,
            discard: self.discard,
            claims: self.claims,
            undo: self.undo,
        }
    }
}

impl ToWorker {
    /// The chunk's id (0 for `Stop`).
    fn id(&self) -> u64 {
        match self {
            ToWorker::Task { id, .. } | ToWorker::Claims { id, .. } => *id,
            ToWorker::Stop => 0,
        }
    }

    /// The arguments of a chunk (none for a seat of a call on the claims path).
    fn into_args(self) -> Payload {
        match self {
            ToWorker::Task { args, .. } => args,
            _ => Payload::Inline(Vec::new()),
        }
    }
}

/// Why the pool killed a worker.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// Its chunk ran past this timeout.
    TimedOut(Duration),
    /// Its chunk's call failed and the chunk ran past [`CANCEL_GRACE`].
    Cancelled,
    /// Its initializer ran past the pool's timeout ([`Books::init_deaths`]).
    Initializer(Duration),
    /// Idle and booted, it left its chunk untaken for longer than the chunk's timeout
    /// (stopped, or holding its inbox's lock): the chunk, if still in its inbox, is sent
    /// again; taken, it fails `TimedOut` as one that ran past it.
    Untaken(Duration),
}

struct Worker {
    index: u32,
    handle: ProcessHandle<()>,
    inbox: Channel<ToWorker>,
    status: Shared<WorkerStatus>,
    /// Chunks sent, oldest first.
    sent: VecDeque<u64>,
    /// Chunks sent over the worker's life (for `max_tasks_per_child`).
    total_sent: u64,
    /// Why the pool killed it, if it did (the chunk id and why).
    killed_for: Option<(u64, Kill)>,
    /// Sent `Stop`.
    stopping: bool,
    /// It sent the pool something (an answer, its initializer's failure): it booted. One
    /// that ends without is a boot death ([`Books::boot_deaths`]).
    answered: bool,
    /// The undo of the handles in its initializer's arguments, run for those it did not
    /// take once it is dead ([`Worker::give_back_boot`]).
    init_undo: ChunkUndo,
    /// Its initializer's return was counted ([`Worker::newly_initialized`]).
    initialized: bool,
    /// The chunk at the front of `sent` while the worker runs none (its status says idle or
    /// in its initializer), and when the pool thread first saw it so (`sys::monotonic_ns`):
    /// one not taken within [`UNTAKEN_GRACE`] is taken over by an idle worker.
    untaken: Option<(u64, u64)>,
    /// Left a chunk untaken past [`UNTAKEN_GRACE`] and was found stopped (`SIGSTOP`, a
    /// debugger: `sys::process_stopped`). Until it runs again or answers, it is sent work
    /// only when no other worker has room, and takes over a chunk only when no other worker
    /// is idle. Not a worker merely slow to be scheduled (a loaded machine): demoted so, a
    /// map on the claims path sent both seats to the other worker, and ran on one.
    stopped: bool,
}

impl Worker {
    /// Once the worker is dead and its inbox drained: forgets the handles of its inbox and
    /// status block still counted in its boot message, which a worker killed before it
    /// decoded that message leaves in flight (the message died with it; no other one
    /// holds them).
    fn forget_boot(&mut self) {
        self.inbox.forget_lost_messages();
        self.status.forget_lost_messages();
        self.give_back_boot();
    }

    /// Whether its initializer returned, seen for the first time now (read from its status
    /// block only while it was not).
    fn newly_initialized(&mut self) -> bool {
        if self.initialized || !self.status.initialized.load(Ordering::Acquire) {
            return false;
        }
        self.initialized = true;
        true
    }

    /// Notes, on a look of the pool thread at `now`, whether the worker runs its front
    /// chunk (`job`: its status block's), and whether one found stopped runs again.
    fn note_untaken(&mut self, job: u64, now: u64) {
        self.untaken = match self.sent.front() {
            Some(&front) if job == 0 || job == INITIALIZING => match self.untaken {
                Some((seen_front, seen)) if seen_front == front => Some((front, seen)),
                _ => Some((front, now)),
            },
            _ => None,
        };
        if self.stopped && !sys::process_stopped(self.handle.pid()) {
            self.stopped = false;
        }
    }

    /// Whether it may take a chunk over from another worker: it runs nothing, has nothing
    /// queued, and is not on its way out.
    fn idle(&self) -> bool {
        self.sent.is_empty() && !self.stopping && self.killed_for.is_none()
    }

    /// [`Worker::idle`], and below its task limit: one that has been sent its last chunk
    /// exits once it answered it, and a chunk moved to it waited in a dead inbox until
    /// `tend_workers` sent it again, a round later (review168 L2).
    fn idle_below(&self, max_tasks: Option<u64>) -> bool {
        self.idle() && max_tasks.is_none_or(|m| self.total_sent < m)
    }

    /// Once the worker is dead and every answer it committed was taken from the results
    /// channel: gives back the blob of the results it was sending as it died, whose count
    /// its `Done`'s encoding had put in flight in a message never committed (see
    /// [`WorkerStatus::sending`]). An answer that was committed took that count when it was
    /// decoded, and its blob, dropped since, fails the give-back's generation pin.
    fn give_back_sending(&self) {
        let off = self.status.sending[0].swap(0, Ordering::Acquire);
        if off != 0 {
            let generation = self.status.sending[1].load(Ordering::Relaxed);
            Blob::give_back_sent_by_dead([off, generation, 0], self.handle.pid());
        }
    }

    /// Once the worker is dead: gives back the handles of its initializer's arguments it
    /// had not taken (killed before or while its initializer's arguments decoded).
    fn give_back_boot(&mut self) {
        std::mem::take(&mut self.init_undo).give_back_from_dead(self.handle.pid());
    }
}

#[derive(Default)]
struct Books {
    pending: VecDeque<(u64, Job)>,
    sent: HashMap<u64, Sent>,
    workers: Vec<Worker>,
    /// Average time a chunk keeps a worker busy (for the dispatch window).
    chunk_ns: f64,
    /// Initializers that failed (returned an error or panicked) in a row, none having
    /// returned between (a worker's first answer, or its status block, says so: not any
    /// worker's answer, see [`Books::init_deaths`]).
    init_failures: u32,
    /// Workers in a row that ended before they sent the pool anything or took a chunk
    /// (failed in their boot, before `worker_main` or in it before their initializer ran;
    /// a death inside it counts in [`Books::init_deaths`]), none having booted between: at [`boot_death_limit`] the pool stops
    /// replacing them.
    boot_deaths: u32,
    /// Workers in a row that died inside their initializer, killed for its timeout or
    /// ended on their own there (an `exit`, an `abort`, a segfault: its status block still
    /// says [`INITIALIZING`]), no initializer having returned between: at
    /// [`boot_death_limit`] the pool stops replacing them. Apart from `boot_deaths`, which
    /// any worker's answer ends: an initializer that hangs or dies in some workers only (one
    /// holds what the others wait for) was killed and restarted for ever, the others'
    /// answers ending each run.
    init_deaths: u32,
    /// Why no worker runs the pool's work (its initializer failed in every worker:
    /// `Panicked`, or no worker could boot: `WorkersCannotStart`): the work fails with it,
    /// for good.
    init_error: Option<TaskError>,
    /// `join` was called: the `imap`s made before `close` are refused from now on (see
    /// [`Inner::streams`]).
    joining: bool,
    /// The indices of workers due to be replaced whose start failed (out of processes, of
    /// descriptors): started again at each tick until there is room.
    missing: Vec<u32>,
    /// The blobs of chunks whose workers `terminate` killed, dropped once they are dead.
    orphans: Vec<Blob>,
    /// The same for the tables of calls on the claims path.
    claim_orphans: Vec<ClaimTable>,
    /// The same for the undo of the handles of chunks `terminate` killed a worker in,
    /// with that worker's pid: what it had not taken goes back once it is dead.
    undo_orphans: Vec<(u32, ChunkUndo)>,
    /// What died under the books' lock and holds user values: let die once it is released
    /// ([`BooksGuard`]).
    doomed: Vec<Doomed>,
}

/// User values that die with the books' changes (a chunk's arguments, the last hold of
/// a call's sink: the values it kept, its callbacks not run and what they capture), kept
/// in [`Books::doomed`] until the books' lock is released, then each let die under a
/// catch ([`Inner::bury`]). Their drops are user code, which may call back into the pool
/// (a callback may hold the last handle of its own pool: the pool's drop `terminate`s it,
/// which locks the books): under the lock, the thread waited on itself for ever
/// (review166 H2).
enum Doomed {
    /// A chunk that will not run: its arguments discarded, then the rest dropped.
    Job(Job),
    /// The arguments of a chunk that will not run, to discard (decoded and dropped).
    Args(fn(&Payload), Payload),
    /// A chunk off the books, dropped: its delivery's hold may be its call's last.
    Sent(Sent),
    /// A chunk its worker's inbox refused (its delivery, its index): it fails with this
    /// error.
    Failed(Arc<dyn Delivery>, usize, TaskError),
}

impl Doomed {
    fn die(self) {
        match self {
            Doomed::Job(job) => {
                job.discard_args();
                drop(job);
            }
            Doomed::Args(discard, args) => discard(&args),
            Doomed::Sent(sent) => drop(sent),
            Doomed::Failed(delivery, chunk, error) => {
                delivery.deliver(chunk, Err(error));
                drop(delivery);
            }
        }
    }

    /// In a copy made by fork (a drop above forked): the chunks are the parent's, as in
    /// [`Inner::abandon_copy`].
    fn forget_in_copy(self) {
        match self {
            Doomed::Job(job) => drop(forget_in_copy(job)),
            Doomed::Args(_, args) => std::mem::forget(args),
            Doomed::Sent(sent) => {
                let Sent { delivery, held, claims, undo, .. } = sent;
                std::mem::forget((held, claims));
                undo.forget();
                drop(delivery);
            }
            Doomed::Failed(delivery, chunk, _) => delivery.abandon(chunk),
        }
    }
}

/// The books locked, by a thread that may doom user values ([`Books::doomed`]): when it
/// lets go, the lock is released first, then they die ([`Inner::bury`]).
struct BooksGuard<'a, B: Bury + ?Sized = Inner> {
    inner: &'a B,
    books: Option<MutexGuard<'a, Books>>,
}

/// What lets the doomed user values die once a [`BooksGuard`] released the books' lock:
/// the pool ([`Inner::bury`]); the unit tests' own.
trait Bury {
    fn bury(&self, doomed: Vec<Doomed>);
}

impl Bury for Inner {
    fn bury(&self, doomed: Vec<Doomed>) {
        Inner::bury(self, doomed);
    }
}

impl<B: Bury + ?Sized> std::ops::Deref for BooksGuard<'_, B> {
    type Target = Books;

    fn deref(&self) -> &Books {
        self.books.as_ref().expect("held until dropped")
    }
}

impl<B: Bury + ?Sized> std::ops::DerefMut for BooksGuard<'_, B> {
    fn deref_mut(&mut self) -> &mut Books {
        self.books.as_mut().expect("held until dropped")
    }
}

impl<B: Bury + ?Sized> Drop for BooksGuard<'_, B> {
    fn drop(&mut self) {
        let Some(mut books) = self.books.take() else { return };
        if books.doomed.is_empty() {
            return;
        }
        let doomed = std::mem::take(&mut books.doomed);
        drop(books);
        // While this thread unwinds too (an internal panic under the guard): each dies under
        // its own catch, and a panic caught before it leaves this drop does not abort (only
        // one that leaves a drop while unwinding does). They were left in the books for the
        // next release, and dropped with the books, with no catch and no discard, if the
        // pool ended first (fix129's note).
        self.inner.bury(doomed);
    }
}

impl Books {
    /// An initializer returned: the runs of initializers that failed or ran past the
    /// timeout end.
    fn initializer_returned(&mut self) {
        self.init_failures = 0;
        self.init_deaths = 0;
    }

    /// Ends those runs if an initializer returned in a worker on the books since last seen.
    /// Each worker is asked (no short cut): a return counts once.
    fn note_initializers(&mut self) {
        if self.workers.iter_mut().fold(false, |any, w| w.newly_initialized() | any) {
            self.initializer_returned();
        }
    }
}

/// Encodes the initializer's arguments.
pub(crate) type EncodeArgs = Arc<dyn Fn() -> Result<codec::Encoded, crate::CodecError> + Send + Sync>;

pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) initializer: Option<(Packed, EncodeArgs)>,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) method: Option<StartMethod>,
    pub(crate) timeout: Option<Duration>,
    /// Results leave this machine (a cluster node's pool): a result that holds a handle
    /// of this family is refused in the worker, its holds given back.
    pub(crate) remote_results: bool,
    /// A `Fork` pool's zygote, which forks its workers (`process::Zygote`).
    pub(crate) zygote: Option<Arc<Zygote>>,
}

pub(crate) struct Inner {
    config: Config,
    results: Channel<FromWorker>,
    books: Mutex<Books>,
    state: AtomicU8,
    /// The `imap`s made while the pool ran that have not ended: after `close` the workers
    /// stay for them, and their chunks are taken, until `join` (aud91: a lazy `imap` lost
    /// every item it had not sent at the `close`, `Terminated`; Python's queues them all
    /// at once, and `close` lets them run).
    streams: AtomicUsize,
    next_id: AtomicU64,
    counters: Arc<Counters>,
    /// A call was cancelled since the inboxes were last purged of its chunks.
    cancellations: AtomicBool,
    /// Threads waiting for a result and collecting meanwhile (shared with the
    /// thread-local `HELPING` of each, see [`outside_help`]).
    helpers: Arc<AtomicUsize>,
    /// Results taken from the results channel whose chunk is not yet off the books (see
    /// [`Inner::collect`]): while one is, a worker that ended may look as if it died
    /// running the chunk it had answered.
    in_hand: AtomicUsize,
    /// When the last helper left (`sys::monotonic_ns`).
    helped_at: AtomicU64,
    /// How the spins of polled futures went: after misses in a row (the results come later
    /// than a spin lasts: a slow or crowded machine), one poll in `2^k` spins.
    spin: LoadSpin,
    doorbell: (Mutex<bool>, Condvar),
    pool_thread: Mutex<Option<JoinHandle<()>>>,
    /// The pool thread's id, which `join` compares with its caller's once the handle
    /// above may be another joiner's.
    pool_thread_id: std::sync::OnceLock<std::thread::ThreadId>,
    /// Held by the `join` under way: one at a time, so that a second waits for the first
    /// and then finds nothing left (review121 L3: the second took the workers while the
    /// first waited for the pool thread, which then told none of them to stop, and the
    /// second waited for ever on a worker that had been sent work).
    joins: Mutex<()>,
    /// The process that made the pool. A copy that fork made in a child (a pool kept in a
    /// static, or a bare `fork`) shares the parent's workers, inboxes and results channel,
    /// but not its pool thread: it is closed (see [`Inner::copied`]).
    made_in: TakenIn,
    /// The zygote, until `join` has waited for every worker (it then leaves).
    zygote: Mutex<Option<Arc<Zygote>>>,
}

/// The processors this process may run on, read once (the dispatch asks per call).
fn processors() -> usize {
    static PROCESSORS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PROCESSORS.get_or_init(crate::cpu_count)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// Starts the workers and the pool thread.
    pub(crate) fn start(mut config: Config) -> Result<Arc<Inner>, Error> {
        super::check_workers(config.workers)?;
        let zygote = Mutex::new(config.zygote.take());
        let inner = Arc::new(Inner {
            config,
            zygote,
            results: Channel::new()?,
            books: Mutex::new(Books::default()),
            state: AtomicU8::new(RUNNING),
            streams: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            counters: Arc::default(),
            cancellations: AtomicBool::new(false),
            helpers: Arc::default(),
            in_hand: AtomicUsize::new(0),
            helped_at: AtomicU64::new(0),
            spin: LoadSpin::new(),
            doorbell: (Mutex::new(false), Condvar::new()),
            pool_thread: Mutex::new(None),
            pool_thread_id: std::sync::OnceLock::new(),
            joins: Mutex::new(()),
            made_in: TakenIn::here(),
        });
        {
            let mut books = lock(&inner.books);
            for i in 0..inner.config.workers {
                let worker = inner.start_worker(i as u32)?;
                books.workers.push(worker);
            }
        }
        let weak = Arc::downgrade(&inner);
        let thread = std::thread::Builder::new().name("multiproc-pool".into()).spawn(move || pool_thread(weak))?;
        let _ = inner.pool_thread_id.set(thread.thread().id());
        *lock(&inner.pool_thread) = Some(thread);
        Ok(inner)
    }

    fn start_worker(&self, index: u32) -> Result<Worker, Error> {
        let inbox = Channel::new()?;
        let status = Shared::new(WorkerStatus {
            job: AtomicU64::new(0),
            since: AtomicU64::new(0),
            initialized: AtomicBool::new(false),
            sending: [AtomicU64::new(0), AtomicU64::new(0)],
        })?;
        let mut init_undo = ChunkUndo::default();
        let initializer = match &self.config.initializer {
            Some((call, encode)) => {
                let mut encoded = encode()?;
                let args = Payload::new(std::mem::take(&mut encoded.bytes))?;
                init_undo = ChunkUndo::keep(encoded);
                Some((*call, args))
            }
            None => None,
        };
        let boot = WorkerBoot {
            index,
            inbox: inbox.clone(),
            results: self.results.clone(),
            status: status.clone(),
            initializer,
            init_receipts: init_undo.carry(),
            max_tasks: self.config.max_tasks,
            remote_results: self.config.remote_results,
        };
        let mut process =
            Process::new(worker_main, boot).name(format!("PoolWorker-{}", index + 1)).daemon_with_children();
        let zygote = lock(&self.zygote).clone();
        if let Some(zygote) = zygote {
            process = process.via_zygote(zygote);
        } else if let Some(method) = self.config.method {
            process = process.start_method(method);
        }
        let handle = match process.start() {
            Ok(handle) => handle,
            Err(e) => {
                init_undo.never_sent();
                return Err(e);
            }
        };
        Ok(Worker {
            index,
            handle,
            inbox,
            status,
            sent: VecDeque::new(),
            total_sent: 0,
            killed_for: None,
            stopping: false,
            answered: false,
            init_undo,
            initialized: false,
            untaken: None,
            stopped: false,
        })
    }

    fn running(&self) -> bool {
        self.state.load(Ordering::Acquire) == RUNNING && !self.copied()
    }

    /// The books, locked by a thread that may doom user values in them: they die once it
    /// lets go ([`BooksGuard`]).
    fn books(&self) -> BooksGuard<'_> {
        BooksGuard { inner: self, books: Some(lock(&self.books)) }
    }

    /// Lets die what died under the books' lock, the lock released: each under a catch
    /// (a panic must not keep the others, nor leave a round before its restarts). One that
    /// forked, come back here in the copy: the rest are the parent's, forgotten; the pool
    /// thread's copy ends at once, as after any user code it runs ([`Inner::end_if_copy`]).
    fn bury(&self, doomed: Vec<Doomed>) {
        let on_pool_thread = POOL_THREAD.get().is_some();
        for doomed in doomed {
            if self.copied() {
                survive_user_panic(|| doomed.forget_in_copy());
                continue;
            }
            survive_user_panic(|| doomed.die());
            if on_pool_thread && self.copied() {
                sys::exit_group(0);
            }
        }
    }

    /// Whether this is a copy that fork made in a child. A copy sends nothing to the
    /// parent's workers (a chunk of its would be answered to the parent's pool), takes
    /// nothing from the results channel (the parent's results), and kills nothing: it is
    /// closed, `join` has nothing to wait for, and what its books await ends `Terminated`
    /// ([`Inner::abandon_copy`]).
    fn copied(&self) -> bool {
        !self.made_in.is_here()
    }

    /// On the pool thread, after user code it ran returned (a callback, a value's drop):
    /// ends this process if that code forked and this is the child, come back here. The
    /// thread is its process's only one and serves the parent's pool: it must take no
    /// result, dispatch no chunk, kill and start no worker (review50 M1: the rest of the
    /// round went on in the copy). It ends the process at once, never by returning: the last
    /// thread's return ends the process through glibc's `exit`, whose exit hooks are the
    /// parent's (review50 H1); and flushing nothing (`exit_now` flushed stdout under its
    /// lock, which another thread of the parent may have held at the fork: the copy waited
    /// for ever; review56 M1).
    fn end_if_copy(&self) {
        if self.copied() {
            sys::exit_group(0);
        }
    }

    /// In a copy made by fork: ends every chunk its books await with `Terminated`, in this
    /// process only. The chunks' arguments and tables are the parent's (copies made by
    /// fork): forgotten, never discarded (that would give back what the parent's messages
    /// hold).
    fn abandon_copy(&self) {
        // Held at the fork by a thread of the parent (the pool thread): never released
        // here, and nothing in it is this process's to end.
        let Ok(mut books) = self.books.try_lock() else { return };
        let pending: Vec<Job> = books.pending.drain(..).map(|(_, job)| job).collect();
        let sent: Vec<Sent> = books.sent.drain().map(|(_, s)| s).collect();
        let books_undo_orphans = std::mem::take(&mut books.undo_orphans);
        drop(books);
        let mut failures: Vec<(Arc<dyn Delivery>, usize)> = pending.into_iter().map(forget_in_copy).collect();
        for s in sent {
            let Sent { chunk, delivery, held, claims, undo, .. } = s;
            std::mem::forget((held, claims));
            undo.forget();
            failures.push((delivery, chunk));
        }
        for (_, undo) in books_undo_orphans {
            undo.forget();
        }
        for (delivery, chunk) in failures {
            // No callback: the parent runs them (review60 M2).
            delivery.abandon(chunk);
        }
    }

    /// Queues a chunk and sends what the workers have room for.
    /// A chunk refused (the pool closed or terminated) has its arguments decoded and
    /// dropped, so that the handles in them are given back.
    pub(crate) fn queue(&self, job: Job) -> Result<(), PoolError> {
        self.queue_as(job, false)
    }

    /// [`Inner::queue`]; `streamed`: a chunk of an `imap` counted in [`Inner::streams`],
    /// also taken after `close`, until `join`.
    fn queue_as(&self, job: Job, streamed: bool) -> Result<(), PoolError> {
        let open = self.running() || (streamed && !self.copied() && self.state.load(Ordering::Acquire) == CLOSED);
        if !open {
            job.discard_args();
            return Err(PoolError::Closed);
        }
        crash_point!("pool.queue.checked");
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut books = self.books();
        // Again under the books' lock: a `terminate` since the check above has cleared the
        // books already, and would never see this chunk; a `join` since may have told the
        // workers to stop (`stop_idle_workers`), and none would run it.
        let state = self.state.load(Ordering::Acquire);
        if state == TERMINATED || (state == CLOSED && books.joining) {
            drop(books);
            job.discard_args();
            return Err(PoolError::Closed);
        }
        if let Some(error) = books.init_error.clone() {
            drop(books);
            // As a refused chunk: its handles go back before it fails. User code, under a
            // catch as every delivery (review166 L2).
            survive_user_panic(move || {
                job.discard_args();
                job.delivery.deliver(job.chunk, Err(error));
                drop(job);
            });
            return Ok(());
        }
        books.pending.push_back((id, job));
        self.dispatch(&mut books);
        Ok(())
    }

    /// How many chunks a worker may have queued: enough to keep it busy for
    /// [`WINDOW_TIME`], at least two.
    fn window(books: &Books) -> usize {
        if books.chunk_ns <= 0.0 {
            return 2;
        }
        if books.chunk_ns > nanos(LONG_CHUNK) as f64 {
            // The hand-over gap is noise next to such a chunk; a queued one could only
            // wait behind a slow worker while another idles.
            return 1;
        }
        ((nanos(WINDOW_TIME) as f64 / books.chunk_ns).ceil() as usize).clamp(2, MAX_WINDOW)
    }

    /// Delivers a chunk's outcome; when that cancelled its call (a `map`'s first error),
    /// the inboxes are purged of the call's other chunks at the next look.
    fn settle(&self, delivery: &Arc<dyn Delivery>, chunk: usize, outcome: Result<Payload, TaskError>) {
        self.settle_by(delivery, |d| d.deliver(chunk, outcome));
    }

    /// [`settle`](Self::settle) by `deliver` (a delivery's way to be told).
    fn settle_by(&self, delivery: &Arc<dyn Delivery>, deliver: impl FnOnce(&dyn Delivery)) {
        let was_cancelled = delivery.cancelled();
        deliver(&**delivery);
        if !was_cancelled && delivery.cancelled() {
            self.cancellations.store(true, Ordering::Release);
        }
    }

    /// Sends pending chunks to the workers with room, the least loaded first: one chunk at
    /// a time while each worker has a processor of its own, an even share of what waits
    /// (up to the worker's window) in one go when they take turns. Chunks of a cancelled
    /// call are dropped instead.
    ///
    /// One look over the workers per share, not per chunk: with 16 workers, choosing a
    /// worker for each chunk of a `chunksize(1)` map cost the parent more than sending it,
    /// and spread every refill over all the workers, each of them then woken for a chunk
    /// or two.
    ///
    /// The chunks of a cancelled call (and one an inbox refused, failed) die once the
    /// caller's [`BooksGuard`] lets go.
    fn dispatch(&self, books: &mut BooksGuard<'_>) {
        if self.cancellations.swap(false, Ordering::AcqRel) {
            self.take_back_cancelled(books);
        }
        let window = Self::window(books);
        // More workers than processors take turns on them, a time slice each: each gets
        // a share of the work at once, and a deep window (8 chunks or more) is refilled
        // once half of it has run, so that the scan over the workers and each inbox's
        // hand-over happen per half window, not per chunk (a small window keeps a chunk
        // queued behind the running one: no slack). A worker with a processor of its own
        // gets its chunks one at a time, the least loaded first, so each starts soonest.
        let in_turns = books.workers.len() > processors();
        let refill_below = if in_turns && window >= 8 { window / 2 } else { window };
        let max_tasks = self.config.max_tasks;
        loop {
            while let Some((_, job)) = books.pending.front()
                && job.delivery.cancelled()
            {
                let (_, job) = books.pending.pop_front().expect("peeked");
                self.counters.cancelled(job.items as u64);
                books.doomed.push(Doomed::Job(job));
            }
            if books.pending.is_empty() {
                break;
            }
            let mut open = 0;
            // The least loaded with room, one that left a chunk untaken (aud108 H1) only
            // when no other has room.
            let mut least: Option<(usize, (bool, usize))> = None;
            for (i, w) in books.workers.iter().enumerate() {
                let room = !w.stopping
                    && w.killed_for.is_none()
                    && w.sent.len() < refill_below
                    && max_tasks.is_none_or(|m| w.total_sent < m);
                if room {
                    open += 1;
                    let rank = (w.stopped, w.sent.len());
                    if least.is_none_or(|(_, least)| rank < least) {
                        least = Some((i, rank));
                    }
                }
            }
            let Some((w, (_, load))) = least else { break };
            // An even share of what waits, so that a short map starts on every worker.
            let mut share = if in_turns { books.pending.len().div_ceil(open).min(window - load) } else { 1 };
            if let Some(m) = max_tasks {
                share = share.min((m - books.workers[w].total_sent) as usize);
            }
            for _ in 0..share {
                let Some((id, job)) = books.pending.pop_front() else { break };
                if job.delivery.cancelled() {
                    self.counters.cancelled(job.items as u64);
                    books.doomed.push(Doomed::Job(job));
                    continue;
                }
                self.send(books, w, id, job);
            }
        }
        if books.pending.is_empty() {
            Self::steal(books, self.config.max_tasks);
        }
    }

    /// Sends one chunk to worker `w` and books it.
    fn send(&self, books: &mut Books, w: usize, id: u64, mut job: Job) {
        let held = job.args.blob();
        let claims = job.claims.clone();
        let message = match &job.claims {
            Some(table) => ToWorker::Claims { id, call: job.call, table: table.clone() },
            None => ToWorker::Task { id, call: job.call, args: job.args, receipts: job.undo.carry() },
        };
        let worker = &mut books.workers[w];
        match worker.inbox.send(&message) {
            Ok(()) => {
                worker.sent.push_back(id);
                worker.total_sent += 1;
                books.sent.insert(
                    id,
                    Sent {
                        chunk: job.chunk,
                        items: job.items,
                        call: job.call,
                        timeout: job.timeout,
                        delivery: job.delivery,
                        discard: job.discard,
                        held,
                        cancel_seen: None,
                        claims,
                        undo: job.undo,
                        untaken_since: None,
                    },
                );
            }
            Err(e) => {
                // The inbox refused (shared memory exhausted): the chunk fails rather
                // than waiting forever, once the books are let go (its delivery is user
                // code: review166 L2).
                let error = TaskError::Codec(crate::CodecError::encode(e));
                books.doomed.push(Doomed::Failed(job.delivery, job.chunk, error));
            }
        }
    }

    /// Takes the chunks of cancelled calls out of the workers' inboxes (the worker may take
    /// the oldest meanwhile: that one runs, and is stopped by `enforce_timeouts`); the
    /// others go back in their order.
    fn take_back_cancelled(&self, books: &mut Books) {
        let Books { workers, sent, pending, doomed, .. } = books;
        let mut unsendable = Vec::new();
        for worker in workers.iter_mut() {
            if !worker.sent.iter().any(|id| sent.get(id).is_some_and(|s| s.delivery.cancelled())) {
                continue;
            }
            let mut queued = Vec::new();
            while let Some(message) = worker.inbox.try_recv() {
                queued.push(message);
            }
            for message in queued {
                if let ToWorker::Task { id, .. } = message
                    && sent.get(&id).is_some_and(|s| s.delivery.cancelled())
                {
                    let s = sent.remove(&id).expect("looked up");
                    self.counters.cancelled(s.items as u64);
                    // Carried: given back as the chunk's undo drops, not in flight. Both
                    // once the books are let go (user values).
                    if !s.undo.carried() {
                        doomed.push(Doomed::Args(s.discard, message.into_args()));
                    }
                    doomed.push(Doomed::Sent(s));
                    worker.sent.retain(|&s| s != id);
                    worker.total_sent -= 1;
                    continue;
                }
                let id = message.id();
                if worker.inbox.send(&message).is_err()
                    && let Some(s) = sent.remove(&id)
                {
                    // Shared memory is exhausted: the chunk waits for another dispatch.
                    worker.sent.retain(|&s| s != id);
                    worker.total_sent -= 1;
                    unsendable.push((id, s.into_job(message.into_args())));
                }
            }
        }
        for job in unsendable.into_iter().rev() {
            pending.push_front(job);
        }
    }

    /// Moves chunks that wait in a busy worker's inbox to idle workers: a slow worker (or a
    /// slow processor) keeps only the chunk it runs, and nobody idles while work waits.
    fn steal(books: &mut Books, max_tasks: Option<u64>) {
        loop {
            // Not into a worker that left a chunk untaken: the busy one will run it.
            let Some(idle) = books.workers.iter().position(|w| w.idle_below(max_tasks) && !w.stopped) else {
                return;
            };
            let Some(busy) = books
                .workers
                .iter()
                .enumerate()
                .filter(|(_, w)| w.sent.len() >= 2)
                .max_by_key(|(_, w)| w.sent.len())
                .map(|(i, _)| i)
            else {
                return;
            };
            // The oldest message in the inbox is the next the worker would start; the
            // worker may take it first, in which case there is nothing to move.
            let Some(message) = books.workers[busy].inbox.try_recv() else { return };
            if !Self::hand_over(books, busy, idle, message) {
                return;
            }
        }
    }

    /// Books `message`, taken from worker `from`'s inbox, as worker `to`'s and sends it
    /// there; whether it could (shared memory exhausted, it goes back to `pending`).
    fn hand_over(books: &mut Books, from: usize, to: usize, message: ToWorker) -> bool {
        let id = message.id();
        let victim = &mut books.workers[from];
        victim.sent.retain(|&s| s != id);
        victim.total_sent -= 1;
        let thief = &mut books.workers[to];
        if thief.inbox.send(&message).is_err() {
            // Shared memory is exhausted: the chunk waits for another dispatch rather
            // than being lost with its call never answered.
            if let Some(s) = books.sent.remove(&id) {
                books.pending.push_front((id, s.into_job(message.into_args())));
            }
            return false;
        }
        thief.sent.push_back(id);
        thief.total_sent += 1;
        true
    }

    /// Takes over the chunk a worker has left untaken at the front of its inbox for
    /// [`UNTAKEN_GRACE`] while it runs nothing (stopped, or a replacement stopped in its
    /// boot, or not scheduled), moving it to an idle worker, and marks the worker
    /// [`Worker::stopped`] if it is, so that the dispatch sends it nothing while another
    /// has room (aud108 H1: the dispatch sends a call to the least-loaded worker, and a
    /// steal moves only a chunk queued behind another, so a call sent to a stopped idle
    /// worker was never answered). A chunk is moved only out of the inbox (`try_recv`): one
    /// the worker took meanwhile is its own, so none runs twice. The pool thread's look, at
    /// each pass (`Worker::note_untaken` keeps the time).
    fn take_over_untaken(books: &mut Books, now: u64, max_tasks: Option<u64>) {
        for v in 0..books.workers.len() {
            let w = &books.workers[v];
            let Some((front, seen)) = w.untaken else { continue };
            if w.stopping || w.killed_for.is_some() || now.saturating_sub(seen) < nanos(UNTAKEN_GRACE) {
                continue;
            }
            // Noted at the pass's start: answered since (`collect` in the same round, or a
            // helper), the front is another chunk, just sent, not one left untaken: moving it
            // would be a needless move (review168 L1).
            if w.sent.front() != Some(&front) {
                continue;
            }
            let job = w.status.job.load(Ordering::Acquire);
            if job != 0 && job != INITIALIZING {
                // It took it since.
                continue;
            }
            if !w.stopped && sys::process_stopped(w.handle.pid()) {
                books.workers[v].stopped = true;
            }
            // An idle worker, a stopped one only if no other is: it would leave this chunk
            // untaken again, and it moves on again (one that runs again takes it).
            let idle = |w: &(usize, &Worker)| w.0 != v && w.1.idle_below(max_tasks);
            let Some(thief) =
                books.workers.iter().enumerate().filter(idle).min_by_key(|(_, w)| w.stopped).map(|(i, _)| i)
            else {
                continue;
            };
            let Some(message) = books.workers[v].inbox.try_recv() else { continue };
            books.workers[v].untaken = None;
            if !Self::hand_over(books, v, thief, message) {
                return;
            }
        }
    }

    /// Steals what a steal after a result could not take (the busy worker's inbox held
    /// past the lock's grace by a worker the scheduler paused): otherwise only the next
    /// result would try, and that may be the slow chunk's own, seconds later.
    fn steal_again(&self) {
        let now = sys::monotonic_ns();
        let mut books = lock(&self.books);
        if books.pending.is_empty() {
            Self::steal(&mut books, self.config.max_tasks);
            Self::take_over_untaken(&mut books, now, self.config.max_tasks);
        }
    }

    /// Handles what came back; returns how many messages.
    ///
    /// Any thread may collect (the pool thread, a caller waiting for its result). A result
    /// is counted in hand from before it is taken until its chunk is off the books, so
    /// that [`Inner::tend_workers`] never reads a worker's answered chunk as one it died
    /// running.
    fn collect(&self) -> usize {
        let mut handled = 0;
        loop {
            let hand = InHand::take(&self.in_hand);
            let Some(message) = self.results.try_recv() else { break };
            crash_point!("pool.collect.taken");
            handled += 1;
            // User code runs here: a result's `Drop` (a result nobody kept is dropped with
            // its slot, a failed map drops the values it had). Its panic stops here (the
            // hook has printed it): this thread collects for every caller, and the pool
            // thread must never die.
            survive_user_panic(|| self.handle(message, hand));
            // Forked there, this is the child: the rest is the parent's (review50 M1).
            if self.copied() {
                return handled;
            }
        }
        if handled > 0 {
            let mut books = self.books();
            self.dispatch(&mut books);
        }
        handled
    }

    fn handle(&self, message: FromWorker, hand: InHand<'_>) {
        match message {
            FromWorker::Done { id, worker, busy_ns, outcome } => {
                let mut books = lock(&self.books);
                let mut returned = false;
                if let Some(w) = books.workers.iter_mut().find(|w| w.index == worker) {
                    w.answered = true;
                    w.stopped = false;
                    returned = w.newly_initialized();
                    // A worker answers in order: the front, unless a resend reordered it.
                    if w.sent.front() == Some(&id) {
                        w.sent.pop_front();
                    } else {
                        w.sent.retain(|&s| s != id);
                    }
                }
                // Only a worker's first answer ends the runs of initializers that failed:
                // the answers of a worker that started long ago said nothing of the
                // workers started since (one that fails in some workers only was started
                // again for ever).
                if returned {
                    books.initializer_returned();
                }
                books.boot_deaths = 0;
                let Some(Sent { delivery, chunk, held, claims, .. }) = books.sent.remove(&id) else { return };
                // A seat's time is a whole call's, not a chunk's.
                if claims.is_none() {
                    books.chunk_ns = if books.chunk_ns <= 0.0 {
                        busy_ns as f64
                    } else {
                        0.8 * books.chunk_ns + 0.2 * busy_ns as f64
                    };
                }
                drop(books);
                drop(hand);
                // The chunk's blob goes before its answer is delivered: a caller that has
                // its result finds the pool's hold given back.
                drop(held);
                // The worker's text says whether its arguments did not decode or its results
                // did not encode.
                let outcome = outcome.map_err(|e| TaskError::Codec(crate::CodecError::relayed(e)));
                self.settle(&delivery, chunk, outcome);
            }
            FromWorker::InitFailed { worker, info } => {
                let mut books = lock(&self.books);
                // Counted as a failed initializer, not as a boot death.
                if let Some(w) = books.workers.iter_mut().find(|w| w.index == worker) {
                    w.answered = true;
                }
                books.note_initializers();
                books.init_failures += 1;
                // Every worker failed its initializer twice in a row: stop trying, fail the
                // work with the initializer's panic.
                if books.init_failures as usize >= 2 * self.config.workers {
                    books.init_error = Some(TaskError::Panicked(info.clone()));
                    let pending: Vec<(u64, Job)> = books.pending.drain(..).collect();
                    drop(books);
                    drop(hand);
                    let mut pending = pending.into_iter();
                    while let Some((_, job)) = pending.next() {
                        // User code: a panic must not keep the others' errors.
                        let error = TaskError::Panicked(info.clone());
                        survive_user_panic(move || {
                            job.discard_args();
                            job.delivery.deliver(job.chunk, Err(error));
                            drop(job);
                        });
                        if self.copied() {
                            // Its error callback forked, and this is the copy: of a caller's
                            // thread helping in `get`, which goes on with the pool closed
                            // (the pool thread's copy ended as the callback returned,
                            // `outside_help`). The other jobs end `Terminated` here, as
                            // `abandon_copy` ends the books' (an `IMap` waiting on them
                            // looped for ever: review59 M1), their arguments forgotten: their
                            // discard would give back the parent's counts (review56 M2,
                            // review58 H1).
                            let rest: Vec<_> = pending.map(|(_, job)| forget_in_copy(job)).collect();
                            for (delivery, chunk) in rest {
                                delivery.abandon(chunk);
                            }
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Kills workers whose chunk ran past its timeout, or past [`CANCEL_GRACE`] after its
    /// call was cancelled; drops the cancelled calls' queued chunks.
    fn enforce_timeouts(&self) {
        let now = sys::monotonic_ns();
        let mut books = self.books();
        if self.cancellations.load(Ordering::Acquire) {
            self.dispatch(&mut books);
        }
        let Books { workers, sent, .. } = &mut *books;
        for w in workers.iter_mut().filter(|w| w.killed_for.is_none()) {
            let job = w.status.job.load(Ordering::Acquire);
            w.note_untaken(job, now);
            if job == 0 {
                // Booted and idle, with a chunk it has not taken for longer than that chunk's
                // timeout (and the grace in which another worker would have taken it over),
                // and stopped (or untaken past a second: a frozen cgroup shows no stop):
                // stopped holding its inbox's lock, or where nobody can take it over (a
                // pool of one, no worker idle). Replaced; the chunk is sent again (aud108
                // H1). Not a worker still booting: its boot is not bounded by a task's
                // timeout (a slow Spawn), nor one in its initializer (below).
                // The chunk's own untaken time, kept across take-overs (review168 M1),
                // counted only at booted workers, from the first pass that finds it at one
                // (`seen` may be from the boot) (review172 M1: a boot's time is nobody's
                // fault, and a thief handed a chunk aged at a booting worker was killed at
                // once). A worker not seen stopped has half the take-over grace of its own
                // too: killed before a further take-over would move the chunk on (a frozen
                // cgroup), not at the first pass after it took the chunk over.
                if !w.stopping
                    && w.status.initialized.load(Ordering::Acquire)
                    && let Some((front, seen)) = w.untaken
                    && let Some(chunk) = sent.get_mut(&front)
                    && let Some(t) = chunk.timeout
                    && let since = *chunk.untaken_since.get_or_insert(now)
                    && now.saturating_sub(since) > nanos(t.max(UNTAKEN_GRACE))
                    && ((now.saturating_sub(since) > nanos(t.max(UNTAKEN_KILL))
                        && now.saturating_sub(seen) > nanos(UNTAKEN_GRACE / 2))
                        || sys::process_stopped(w.handle.pid()))
                    && w.status.job.load(Ordering::Acquire) == 0
                {
                    w.killed_for = Some((front, Kill::Untaken(t)));
                    let _ = w.handle.kill();
                }
                continue;
            }
            if job == INITIALIZING {
                // Its initializer is bounded by the pool's timeout (not a call's: it runs
                // for every task to come): one that never returns would hold the chunks in
                // its inbox for ever, which no chunk's timeout sees, none being taken (aud91
                // M3). Killed, it is a boot death; its chunks go to another worker.
                let since = w.status.since.load(Ordering::Relaxed);
                if let Some(t) = self.config.timeout.filter(|t| now.saturating_sub(since) > nanos(*t))
                    && w.status.job.load(Ordering::Acquire) == INITIALIZING
                {
                    w.killed_for = Some((INITIALIZING, Kill::Initializer(t)));
                    let _ = w.handle.kill();
                }
                continue;
            }
            let Some(running) = sent.get_mut(&job) else { continue };
            let since = w.status.since.load(Ordering::Relaxed);
            let kill = if running.delivery.cancelled() {
                let seen = *running.cancel_seen.get_or_insert(now);
                (now.saturating_sub(seen) > nanos(CANCEL_GRACE)).then_some(Kill::Cancelled)
            } else {
                running.timeout.filter(|t| now.saturating_sub(since) > nanos(*t)).map(Kill::TimedOut)
            };
            if let Some(why) = kill
                && w.status.job.load(Ordering::Acquire) == job
            {
                w.killed_for = Some((job, why));
                let _ = w.handle.kill();
            }
        }
    }

    /// The next moment a running chunk could time out.
    fn next_timeout(&self) -> Option<Instant> {
        let books = lock(&self.books);
        let now_ns = sys::monotonic_ns();
        let now = Instant::now();
        books
            .workers
            .iter()
            .filter_map(|w| {
                let job = w.status.job.load(Ordering::Acquire);
                let timeout = if job == INITIALIZING { self.config.timeout? } else { books.sent.get(&job)?.timeout? };
                let since = w.status.since.load(Ordering::Relaxed);
                let left = since.saturating_add(nanos(timeout)).saturating_sub(now_ns);
                now.checked_add(Duration::from_nanos(left) + Duration::from_millis(1))
            })
            .min()
    }

    /// Replaces the workers that ended; their chunks are resent or failed.
    fn tend_workers(&self) {
        let (ended, missing): (Vec<usize>, bool) = {
            let books = lock(&self.books);
            let ended =
                books.workers.iter().enumerate().filter(|(_, w)| !w.handle.is_alive()).map(|(i, _)| i).collect();
            (ended, !books.missing.is_empty())
        };
        if ended.is_empty() && !missing {
            return;
        }
        let mut failures: Vec<(Arc<dyn Delivery>, usize, TaskError)> = Vec::new();
        // Chunks failed because no worker lives and none could start now (`Delivery::unstarted`).
        let mut unstarted: Vec<(Arc<dyn Delivery>, usize, TaskError)> = Vec::new();
        {
            // Results the workers sent before they ended count first: every one of them,
            // also those another thread has taken and not yet put off the books.
            let mut books = loop {
                self.collect();
                self.end_if_copy();
                let books = self.books();
                if self.in_hand.load(Ordering::SeqCst) == 0 {
                    break books;
                }
                drop(books);
                std::thread::yield_now();
            };
            for &i in ended.iter().rev() {
                let mut worker = books.workers.remove(i);
                // What is still in its inbox was never started: send it again.
                let mut unstarted = Vec::new();
                while let Some(message) = worker.inbox.try_recv() {
                    if !matches!(message, ToWorker::Stop) {
                        unstarted.push((message.id(), message.into_args()));
                    }
                }
                for (id, args) in unstarted.into_iter().rev() {
                    worker.sent.retain(|&s| s != id);
                    if let Some(sent) = books.sent.remove(&id) {
                        books.pending.push_front((id, sent.into_job(args)));
                    }
                }
                // A worker that died before it decoded its boot message (still starting)
                // took the handles of its inbox and status block in it: counted in flight
                // for ever, they would keep both allocated after the last drop.
                worker.forget_boot();
                // Its answers were all collected above.
                worker.give_back_sending();
                // What it was sent and did not answer, it was running.
                let code = worker.handle.exitcode();
                log::debug!(
                    "PoolWorker-{} (pid {}) ended with exit code {code:?}, {} chunk(s) unanswered",
                    worker.index + 1,
                    worker.handle.pid(),
                    worker.sent.len()
                );
                if worker.newly_initialized() {
                    books.initializer_returned();
                }
                if !worker.sent.is_empty() {
                    // It took a chunk from its inbox (its unstarted ones are off `sent`
                    // now): it booted, and died under its task, which fails as lost.
                    books.boot_deaths = 0;
                } else if let Some((_, Kill::Initializer(t))) = worker.killed_for
                    && !worker.answered
                    && !worker.stopping
                {
                    // Killed in its initializer: a run of these ends only when an
                    // initializer returns (seen in any worker's status block), not when
                    // another worker answers (it may have started long ago).
                    books.note_initializers();
                    books.init_deaths += 1;
                    if books.init_error.is_none() && books.init_deaths >= boot_death_limit(self.config.workers) {
                        // The pool's own kill: its signal would say nothing of why.
                        let ended = JoinError::Failed {
                            name: worker.handle.name().to_owned(),
                            reason: format!(
                                "its initializer ran past the pool's timeout of {t:?}, and the pool killed it"
                            ),
                        };
                        books.init_error = Some(TaskError::WorkersCannotStart(BootFailure {
                            deaths: books.init_deaths,
                            pid: worker.handle.pid(),
                            ended,
                        }));
                    }
                } else if !worker.answered
                    && !worker.stopping
                    && worker.killed_for.is_none()
                    && !killed_from_outside(code)
                {
                    // Ended on its own before it sent or took anything: it could not boot.
                    // (A `SIGKILL`, `SIGTERM`, `SIGINT` or `SIGHUP` is someone else's doing:
                    // the OOM killer, an operator, a chaos test; such deaths are replaced
                    // as before and neither count nor restart the run.)
                    // Replaced for ever, its unstarted work resent to each replacement, a
                    // pool whose workers all die so would never answer (hang48): past a run
                    // of them it gives up, as for an initializer failing in every worker.
                    // One that died inside its initializer (an `exit`, an `abort`, a C
                    // library's segfault there: no panic, so no `InitFailed`) counts in the
                    // initializer's run, which only a return ends: any worker's answer
                    // ending it, an initializer that dies in some workers only was restarted
                    // for ever (review133 M1).
                    let run = if worker.status.job.load(Ordering::Acquire) == INITIALIZING {
                        books.note_initializers();
                        books.init_deaths += 1;
                        books.init_deaths
                    } else {
                        books.boot_deaths += 1;
                        books.boot_deaths
                    };
                    if books.init_error.is_none() && run >= boot_death_limit(self.config.workers) {
                        // Why the last one ended, as its join would say: its own failure
                        // text, a panic of its `child_init`, else its exit or signal. It
                        // was reaped, so this knows, but in a fork copy (whose pool thread
                        // ended before this, `end_if_copy`).
                        let ended = worker.handle.take_failure().unwrap_or_else(|| JoinError::NotAChild {
                            name: worker.handle.name().to_owned(),
                            pid: worker.handle.pid(),
                        });
                        books.init_error = Some(TaskError::WorkersCannotStart(BootFailure {
                            deaths: run,
                            pid: worker.handle.pid(),
                            ended,
                        }));
                    }
                }
                for id in worker.sent.drain(..) {
                    let Some(mut sent) = books.sent.remove(&id) else { continue };
                    // Its inbox gave it the chunk: the handles it had not taken when it died
                    // go back (chaos28's leak of a task's `Value` by a worker killed as it
                    // started it).
                    std::mem::take(&mut sent.undo).give_back_from_dead(worker.handle.pid());
                    let error = match worker.killed_for {
                        Some((killed, Kill::TimedOut(timeout) | Kill::Untaken(timeout))) if killed == id => {
                            Some(TaskError::TimedOut(timeout))
                        }
                        // Its call failed already and wants nothing more from it.
                        Some((killed, Kill::Cancelled)) if killed == id => None,
                        _ => Some(TaskError::WorkerLost {
                            pid: worker.handle.pid(),
                            signal: code.filter(|c| *c < 0).map(|c| -c),
                            exit_code: code.filter(|c| *c >= 0),
                        }),
                    };
                    // Asked before the replacement (the same seat) starts.
                    if let Some(table) = &sent.claims
                        && sent.delivery.reseat(worker.index as usize, error.as_ref())
                    {
                        // The call goes on: another worker takes the seat.
                        let seat = Job {
                            chunk: sent.chunk,
                            items: 0,
                            call: sent.call,
                            args: Payload::Inline(Vec::new()),
                            timeout: None,
                            delivery: sent.delivery.clone(),
                            discard: sent.discard,
                            claims: Some(table.clone()),
                            undo: ChunkUndo::default(),
                        };
                        books.pending.push_back((self.next_id.fetch_add(1, Ordering::Relaxed), seat));
                    }
                    if let Some(blob) = &sent.held {
                        // Its message is out of the inbox, its receiver dead: a count left
                        // in flight was lost with a take not yet settled.
                        blob.forget_lost_messages();
                    }
                    let Some(error) = error else {
                        self.counters.cancelled(sent.items as u64);
                        // Its delivery's hold may be its call's last: dropped once the books
                        // are let go (review166 H2).
                        books.doomed.push(Doomed::Sent(sent));
                        continue;
                    };
                    failures.push((sent.delivery, sent.chunk, error));
                }
                books.missing.push(worker.index);
            }
            // Closed, for the work sent, or for an `imap` made before the `close` (until `join`).
            let replace = self.state.load(Ordering::Acquire) != TERMINATED
                && (self.running()
                    || !books.pending.is_empty()
                    || !books.sent.is_empty()
                    || (!books.joining && self.streams.load(Ordering::SeqCst) > 0));
            let mut cannot_start = None;
            let to_start =
                if replace && books.init_error.is_none() { std::mem::take(&mut books.missing) } else { Vec::new() };
            if !to_start.is_empty() {
                // The starts run without the books: a start may block (a fork server that
                // was stopped, or is slow to answer), and meanwhile the workers left take
                // the work (the lost worker's unstarted chunks first) and callers collect
                // their results; the lost chunks' errors are delivered now (hang29: a map
                // waited for ever on a replacement whose start never returned).
                self.dispatch(&mut books);
                drop(books);
                for (delivery, chunk, error) in failures.drain(..) {
                    // A panic of user code (a value's `Drop`) must not lose the starts below.
                    // The delivery is dropped inside the catch: its last hold drops the
                    // call's sink, and with it values of the call's (a failed map's answered
                    // chunks, a callback's captures); dropped after it, their panic lost the
                    // starts, the restarts already off `books.missing` (review161 H1).
                    survive_user_panic(move || {
                        self.settle(&delivery, chunk, Err(error));
                        drop(delivery);
                    });
                    // An error callback that forked: the copy runs no other (review56 M2).
                    self.end_if_copy();
                }
                // Above all before the starts, on the fork server connection the parent and
                // a copy would share (review50 M1).
                self.end_if_copy();
                self.results.wake_receivers();
                // User code above (a drop, a callback) may have dropped the pool's last
                // handle, which terminated and joined it from this thread: no worker is
                // started then, that join having waited for none (review166 H2).
                let to_start = if self.state.load(Ordering::Acquire) == TERMINATED { Vec::new() } else { to_start };
                let started: Vec<(u32, Result<Worker, Error>)> =
                    to_start.into_iter().map(|index| (index, self.start_worker(index))).collect();
                books = self.books();
                for (index, started) in started {
                    match started {
                        Ok(new) => {
                            log::debug!("added worker PoolWorker-{} (pid {})", new.index + 1, new.handle.pid());
                            if self.state.load(Ordering::Acquire) == TERMINATED {
                                // `terminate` ran meanwhile and killed the others: this one
                                // too; `join` waits for it.
                                let _ = new.handle.kill();
                            }
                            books.workers.push(new);
                            self.counters.restarted();
                        }
                        Err(e) => {
                            books.missing.push(index);
                            cannot_start = Some((index, e));
                        }
                    }
                }
            }
            books.workers.sort_by_key(|w| w.index);
            if let Some(error) = books.init_error.clone() {
                // No worker will run them: their handles go back before they fail (once the
                // books are let go, as user values).
                let books = &mut *books;
                for (_, job) in books.pending.drain(..) {
                    // Carried: given back as the job's undo drops (review168 H1).
                    if !job.undo.carried() {
                        books.doomed.push(Doomed::Args(job.discard, job.args));
                    }
                    failures.push((job.delivery, job.chunk, error.clone()));
                }
            } else if let Some((index, e)) = cannot_start.filter(|_| books.workers.is_empty()) {
                // No worker, and none can start now: the waiting work fails rather than
                // wait for room that may never come. The pool stays: a later call tries the
                // starts again.
                let info = PanicInfo {
                    process: format!("PoolWorker-{}", index + 1),
                    message: format!("cannot start a worker: {e}"),
                    location: None,
                    backtrace: String::new(),
                };
                // Their handles go back before they fail, as above.
                let books = &mut *books;
                for (_, job) in books.pending.drain(..) {
                    // Carried: given back as the job's undo drops (review168 H1).
                    if !job.undo.carried() {
                        books.doomed.push(Doomed::Args(job.discard, job.args));
                    }
                    unstarted.push((job.delivery, job.chunk, TaskError::Panicked(info.clone())));
                }
            }
            self.dispatch(&mut books);
        }
        let failed = failures.into_iter().map(|(delivery, chunk, error)| (delivery, chunk, error, false));
        let unstarted = unstarted.into_iter().map(|(delivery, chunk, error)| (delivery, chunk, error, true));
        for (delivery, chunk, error, unstarted) in failed.chain(unstarted) {
            // User code, as above: a panic must not keep the other calls' errors.
            survive_user_panic(move || {
                self.settle_by(&delivery, |d| {
                    if unstarted { d.unstarted(chunk, error) } else { d.deliver(chunk, Err(error)) }
                });
                drop(delivery);
            });
            // An error callback that forked: the copy runs no other (review56 M2).
            self.end_if_copy();
        }
        self.end_if_copy();
        self.results.wake_receivers();
    }

    /// After `close`: once every chunk is answered, tells the workers to exit.
    fn stop_idle_workers(&self) {
        let mut books = lock(&self.books);
        if self.state.load(Ordering::Acquire) != CLOSED || !books.pending.is_empty() || !books.sent.is_empty() {
            return;
        }
        // An `imap` made before the `close` may send more, until `join`.
        if !books.joining && self.streams.load(Ordering::SeqCst) > 0 {
            return;
        }
        for w in books.workers.iter_mut().filter(|w| !w.stopping) {
            if w.inbox.send(&ToWorker::Stop).is_ok() {
                w.stopping = true;
            }
        }
    }

    /// `terminate`: workers killed, everything unanswered fails.
    fn kill_everything(&self) {
        let mut guard = self.books();
        let books = &mut *guard;
        for w in &books.workers {
            let _ = w.handle.kill();
        }
        // The chunks still queued hold their arguments (a large chunk's blob, the handles
        // inside): taken, decoded and dropped once the books are let go (user values), or
        // the inbox's end would leave them counted in flight for ever.
        let mut taken_back = HashSet::new();
        for w in &books.workers {
            while let Some(message) = w.inbox.try_recv() {
                if let ToWorker::Task { id, args, .. } = message
                    && let Some(sent) = books.sent.get(&id)
                {
                    // Carried: given back as the chunk's undo drops, not in flight.
                    if !sent.undo.carried() {
                        books.doomed.push(Doomed::Args(sent.discard, args));
                    }
                    taken_back.insert(id);
                }
            }
        }
        // The others were taken by their workers, killed now: the handles a worker had not
        // taken go back once it is dead (`join`).
        let running: HashMap<u64, u32> =
            books.workers.iter().flat_map(|w| w.sent.iter().map(|&id| (id, w.handle.pid()))).collect();
        let mut failures: Vec<(Arc<dyn Delivery>, usize)> = Vec::new();
        for (_, j) in books.pending.drain(..) {
            // Carried: given back as the job's undo drops (review168 H1).
            if !j.undo.carried() {
                books.doomed.push(Doomed::Args(j.discard, j.args));
            }
            failures.push((j.delivery, j.chunk));
        }
        let sent: Vec<(u64, Sent)> = books.sent.drain().collect();
        for (id, mut s) in sent {
            let undo = std::mem::take(&mut s.undo);
            match running.get(&id) {
                Some(&pid) if !taken_back.contains(&id) => books.undo_orphans.push((pid, undo)),
                // Taken back (given back by its `discard`, or by this drop when carried), or
                // with no worker: nobody takes from it any more.
                _ => drop(undo),
            }
            books.orphans.extend(s.held);
            books.claim_orphans.extend(s.claims);
            failures.push((s.delivery, s.chunk));
        }
        for w in &mut books.workers {
            w.sent.clear();
        }
        // The arguments die here, before the calls fail.
        drop(guard);
        for (delivery, chunk) in failures {
            // User code (a callback, a value's `Drop`): its panic must not keep the other
            // calls' errors, nor come out of `terminate`. One that forked, come back here
            // in the copy: the copy runs no other callback (review56 M2).
            survive_user_panic(move || {
                if self.copied() {
                    delivery.abandon(chunk);
                } else {
                    delivery.deliver(chunk, Err(TaskError::Terminated));
                }
                drop(delivery);
            });
        }
        self.results.wake_receivers();
    }

    /// Whether a polled future should spin for its result: the recent spins paid off, no
    /// chunk waits for a worker, and chunks are short.
    fn worth_spinning(&self) -> bool {
        if self.spin.skip() {
            return false;
        }
        let books = lock(&self.books);
        books.pending.len() + books.sent.len() <= self.config.workers && books.chunk_ns < nanos(ASYNC_SPIN) as f64 / 2.0
    }

    /// Puts the pool thread back on the results channel at once: it keeps off it while a
    /// thread helps and for [`HELPED_RECENTLY`] after, which a registered waker cannot wait.
    fn hand_back(&self) {
        self.helped_at.store(0, Ordering::Relaxed);
        self.ring_doorbell();
    }

    fn ring_doorbell(&self) {
        let (flag, cond) = &self.doorbell;
        *lock(flag) = true;
        cond.notify_all();
    }
}

impl Engine for Inner {
    fn workers(&self) -> usize {
        self.config.workers
    }

    fn cancelled_outside(&self) {
        // Read by the supervisor's next look (`enforce_timeouts`, `dispatch`), which the
        // doorbell brings at once.
        self.cancellations.store(true, Ordering::Release);
        self.ring_doorbell();
    }

    fn running(&self) -> bool {
        Inner::running(self)
    }

    fn default_timeout(&self) -> Option<Duration> {
        self.config.timeout
    }

    fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    fn remote(&self) -> bool {
        false
    }

    fn helps(&self) -> bool {
        true
    }

    fn claims(&self, timeout: Option<Duration>) -> bool {
        self.config.max_tasks.is_none() && !self.config.remote_results && timeout.or(self.config.timeout).is_none()
    }

    fn submit(&self, job: Job) -> Result<(), PoolError> {
        self.queue(job)
    }

    fn stream_opened(&self) -> bool {
        if !self.running() {
            return false;
        }
        self.streams.fetch_add(1, Ordering::SeqCst);
        // A `close` between the two looks may have seen no stream, and stopped the
        // workers: this one is not counted, and ends at its first chunk. SeqCst, as the
        // count above and `close`'s exchange and look at `streams`: of the two, one sees the
        // other's write (review115 L1).
        if self.state.load(Ordering::SeqCst) != RUNNING || self.copied() {
            self.stream_ended();
            return false;
        }
        true
    }

    fn stream_ended(&self) {
        self.streams.fetch_sub(1, Ordering::SeqCst);
        // Uncounted, no lock held: a test holds the feeder here to order its end before the
        // pool thread's next exit test (review124 L2).
        crash_point!("pool.stream.ended");
        // A copy's workers are the parent's.
        if !self.copied() {
            self.stop_idle_workers();
        }
    }

    fn submit_streamed(&self, job: Job) -> Result<(), PoolError> {
        self.queue_as(job, true)
    }

    fn pids(&self) -> Vec<u32> {
        lock(&self.books).workers.iter().map(|w| w.handle.pid()).collect()
    }

    fn close(&self) {
        if self.copied() {
            return self.abandon_copy();
        }
        log::debug!("closing pool");
        // SeqCst, with `stop_idle_workers`'s look at `streams`, against `stream_opened`'s
        // count then look at the state: one of the two sees the other's write (review115
        // L1; an AcqRel exchange and an Acquire load do not promise it).
        let _ = self.state.compare_exchange(RUNNING, CLOSED, Ordering::SeqCst, Ordering::SeqCst);
        self.stop_idle_workers();
        self.results.wake_receivers();
    }

    fn terminate(&self) {
        if self.copied() {
            return self.abandon_copy();
        }
        log::debug!("terminating pool");
        // SeqCst as `close` (review115 L1).
        self.state.store(TERMINATED, Ordering::SeqCst);
        self.kill_everything();
        self.ring_doorbell();
    }

    fn join(&self) -> Result<(), PoolError> {
        if self.copied() {
            // The workers and the pool thread are the parent's.
            return Ok(());
        }
        if self.running() {
            return Err(PoolError::StillRunning);
        }
        let on_pool_thread = self.pool_thread_id.get() == Some(&std::thread::current().id());
        if on_pool_thread && self.state.load(Ordering::Acquire) != TERMINATED {
            // A callback joining its closed pool: the workers wait for this thread to
            // tell them to stop.
            return Err(PoolError::JoinFromWorker);
        }
        let _one_at_a_time = match self.joins.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            // A callback of a terminated pool joining it on the pool thread while another
            // thread joins: that join waits for this thread to end, and ends the workers
            // after it.
            Err(std::sync::TryLockError::WouldBlock) if on_pool_thread => return Ok(()),
            Err(std::sync::TryLockError::WouldBlock) => lock(&self.joins),
        };
        let thread = lock(&self.pool_thread).take();
        // The `imap`s made before the `close` get no more chunks: the workers stop once
        // those sent are answered.
        lock(&self.books).joining = true;
        self.stop_idle_workers();
        // Not the pool thread from itself (a callback that dropped the last handle of its
        // pool): it ends after the callback, the pool being terminated.
        if let Some(t) = thread.filter(|_| !on_pool_thread) {
            let _ = t.join();
        }
        let mut workers: Vec<Worker> = std::mem::take(&mut lock(&self.books).workers);
        log::debug!("joining pool workers");
        for w in &mut workers {
            w.handle.wait();
            // A chunk the worker was taking when it was killed is back in its inbox.
            while w.inbox.try_recv().is_some() {}
            // A worker `terminate` killed while it was starting (a replacement) may not
            // have decoded its boot message.
            w.forget_boot();
        }
        // The same for the results channel, whose handle every boot message held: no
        // worker is left to start, and no other message holds one.
        self.results.forget_lost_messages();
        // The answers no one collected: a `terminate` failed their chunks and took them
        // off the books, and the pool thread ended without a last look. A large result's
        // blob is a handle counted in flight in its `Done`, which the channel's end frees
        // not (it frees the message's bytes, not the handles inside): decoded and dropped
        // here, each gives its blob back (aud108 M1: 8 pools terminated mid-map of 1 MiB
        // results left 8 to 31 MB in the heap for good). Every worker is dead, so nothing
        // more comes; a caller's thread still helping in `get` takes from the same channel
        // and drops such an answer as well (its chunk is off the books). A `try_recv` also
        // misses when such a thread holds the channel's lock past its grace (preempted
        // mid-take): the drain goes on while the channel is not empty, for a second at
        // most (review172 L1: the give-back below could take a committed answer's count,
        // safely, the answer then dropped undecoded).
        let started = Instant::now();
        loop {
            match self.results.try_recv() {
                Some(message) => drop(message),
                None if self.results.is_empty() || started.elapsed() > Duration::from_secs(1) => break,
                None => std::thread::yield_now(),
            }
        }
        // Then the results a worker was sending as it was killed, not yet in the channel.
        for w in workers {
            w.give_back_sending();
        }
        // Every worker is gone and every inbox empty: the last handles of their chunks'
        // blobs are ours, and a count still in flight was lost with a worker killed after
        // taking its chunk and before settling the blob's handle.
        for blob in std::mem::take(&mut lock(&self.books).orphans) {
            blob.forget_lost_messages();
        }
        for (pid, undo) in std::mem::take(&mut lock(&self.books).undo_orphans) {
            undo.give_back_from_dead(pid);
        }
        for table in std::mem::take(&mut lock(&self.books).claim_orphans) {
            // The items killed workers held and never took: their handles are the table's.
            table.untaken(true);
            // Result blocks that killed workers were filling, or published too late to be
            // read.
            table.reap_all();
            table.forget_lost_messages();
        }
        // A chunk of an `imap` queued just before `joining`, after the pool thread's last
        // look, with no worker left to run it: it fails rather than wait unrun for ever
        // (review115 H1). Its handles go back first, as for any refused chunk.
        let left: Vec<Job> = lock(&self.books).pending.drain(..).map(|(_, job)| job).collect();
        for job in &left {
            job.discard_args();
        }
        // No worker is left: the zygote lets go of its copies and leaves.
        drop(lock(&self.zygote).take());
        // The error callbacks run with no join held: one may join this pool.
        drop(_one_at_a_time);
        for job in left {
            // User code: a panic must not keep the others' errors.
            survive_user_panic(move || {
                job.delivery.deliver(job.chunk, Err(TaskError::Terminated));
                drop(job);
            });
        }
        Ok(())
    }
}

impl Helper for Inner {
    fn copied(&self) -> bool {
        Inner::copied(self)
    }

    fn help(&self, done: &dyn Fn() -> bool, deadline: Deadline) {
        if self.copied() {
            return self.abandon_copy();
        }
        let _helping = Helping::start(self);
        // Spin for the first result only: a long map must not burn a processor its
        // workers need every time it wakes.
        let mut spin = true;
        loop {
            self.collect();
            // A callback run here forked, and this is the child, come back here.
            if self.copied() {
                return self.abandon_copy();
            }
            if done() || deadline.passed() {
                break;
            }
            // Sleep until a result arrives; the pool thread wakes us too when it settles a
            // result without a message (a lost worker), and the slice bounds the rest.
            self.results.wait_readable(Deadline::after(deadline.slice(Duration::from_millis(100))), spin);
            spin = false;
        }
        // No doorbell: the pool thread looks again within `HELPED_RECENTLY`, and ringing
        // would cost every `get` a wake-up.
        self.helped_at.store(sys::monotonic_ns(), Ordering::Relaxed);
    }

    /// Whether a spin was tried, and paid off, is remembered for the next polls.
    fn help_briefly(&self, done: &dyn Fn() -> bool) {
        if self.copied() {
            return self.abandon_copy();
        }
        if !self.results.is_empty() {
            self.collect();
            if self.copied() {
                return self.abandon_copy();
            }
            if done() {
                return;
            }
        }
        if !self.worth_spinning() {
            let since_help = sys::monotonic_ns().saturating_sub(self.helped_at.load(Ordering::Relaxed));
            if since_help < nanos(HELPED_RECENTLY) {
                self.hand_back();
            }
            return;
        }
        let helping = Helping::start(self);
        let came = spin_for(ASYNC_SPIN, || {
            if !self.results.is_empty() {
                self.collect();
            }
            done().then_some(())
        })
        .is_some();
        drop(helping);
        // A callback the spin ran forked, and this is the child (`collect` took no more).
        if self.copied() {
            return self.abandon_copy();
        }
        self.spin.record(came);
        if came {
            let books = lock(&self.books);
            if books.pending.is_empty() && books.sent.is_empty() {
                // Nothing else is awaited: as after a blocking `get`, the pool thread keeps
                // off the results a moment, so that the next round trip's result does not
                // wake it.
                self.helped_at.store(sys::monotonic_ns(), Ordering::Relaxed);
                return;
            }
        }
        self.hand_back();
    }
}

thread_local! {
    /// The `helpers` counts this thread is in, the innermost last (a callback that waits
    /// for a result of another pool helps that one too).
    static HELPING: std::cell::RefCell<Vec<Arc<AtomicUsize>>> = const { std::cell::RefCell::new(Vec::new()) };
    /// On a pool's own thread, the process that made it: a callback there that forked
    /// ends the copy (`outside_help`).
    static POOL_THREAD: std::cell::Cell<Option<TakenIn>> = const { std::cell::Cell::new(None) };
}

/// A caller's thread counted in [`Inner::helpers`] while it lives: however the help ends
/// (a panic too), the pool thread collects again after it.
struct Helping<'a>(&'a AtomicUsize);

impl<'a> Helping<'a> {
    fn start(pool: &'a Inner) -> Self {
        pool.helpers.fetch_add(1, Ordering::SeqCst);
        // `try_with`: not in a thread-local's destructor (there it helps uncounted by callbacks).
        let _ = HELPING.try_with(|h| h.borrow_mut().push(pool.helpers.clone()));
        Helping(&pool.helpers)
    }
}

impl Drop for Helping<'_> {
    fn drop(&mut self) {
        let _ = HELPING.try_with(|h| h.borrow_mut().pop());
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A job of the parent's, in a copy made by fork: its arguments, claims and undo are the
/// parent's, forgotten (their discard would give back what the parent's messages hold);
/// what is left is where to deliver its end.
fn forget_in_copy(job: Job) -> (Arc<dyn Delivery>, usize) {
    let Job { chunk, args, delivery, claims, undo, .. } = job;
    std::mem::forget((args, claims));
    undo.forget();
    (delivery, chunk)
}

/// Runs `f`, user code that a thread collecting results meets (a callback), with the
/// thread out of the count of the pool it helps, if it does: while `f` runs the thread
/// collects nothing, so the pool thread must. A callback run by a caller's thread in `get`
/// may block on the pool (`join` of a closed pool waits until every task's result is
/// taken), and the results it waits for would otherwise stay in the channel.
///
/// On a pool's own thread, a callback that forked ends the child as it returns, before
/// anything else of the pool runs there (see [`Inner::end_if_copy`]): the result slot's
/// and the wakers' locks it would take next may have been held by another thread of the
/// parent at the fork, held for ever in the copy (review58 M1).
pub(crate) fn outside_help<R>(f: impl FnOnce() -> R) -> R {
    let away = HELPING.try_with(|h| h.borrow().last().cloned()).ok().flatten().map(Away::start);
    let r = f();
    if POOL_THREAD.get().is_some_and(|made_in| !made_in.is_here()) {
        sys::exit_group(0);
    }
    drop(away);
    r
}

/// A helping thread out of its pool's count while it runs user code.
struct Away(Arc<AtomicUsize>);

impl Away {
    fn start(helpers: Arc<AtomicUsize>) -> Self {
        helpers.fetch_sub(1, Ordering::SeqCst);
        Away(helpers)
    }
}

impl Drop for Away {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// One result counted in [`Inner::in_hand`] while it lives.
struct InHand<'a>(&'a AtomicUsize);

impl<'a> InHand<'a> {
    fn take(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        InHand(count)
    }
}

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `f`, in which user code may run (a result's or a value's `Drop`), stopping its
/// panic here (the hook has printed it): its payload is dropped under a second catch
/// (`panics::drop_payload`), since that is user code too. Before (review158 M2), the
/// payload was dropped unguarded, and a payload whose `Drop` panicked came out of an
/// unrelated caller's `Pool::apply`, its answer lost.
fn survive_user_panic(f: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(f)) {
        crate::process::panics::drop_payload(payload);
    }
}

fn pool_thread(inner: Weak<Inner>) {
    POOL_THREAD.set(Some(TakenIn::here()));
    loop {
        let Some(pool) = inner.upgrade() else { return };
        // A copy of this thread that a fork made on it (user code it runs, a callback or a
        // value's drop, whose child returned here) ends: the workers, inboxes, results
        // channel and fork server connection its pool names are the parent's (tok40: it took
        // the parent's results). Each step below that runs user code is followed by the
        // same check ([`Inner::end_if_copy`]); this one is asked of the kernel once a round,
        // so that a fork that ran no handler (its cached identity its parent's) ends too.
        if !pool.made_in.is_here_now() {
            sys::exit_group(0);
        }
        let state = pool.state.load(Ordering::Acquire);
        if state == TERMINATED {
            return;
        }
        // A task failed here (a lost worker, a timeout, a cancelled map) may drop the last
        // hold of its call's values, whose `Drop` is user code: its panic must not end the
        // thread that tends the workers (`collect` catches its own).
        survive_user_panic(|| {
            pool.tend_workers();
            pool.enforce_timeouts();
            pool.end_if_copy();
            if pool.helpers.load(Ordering::SeqCst) == 0 {
                pool.collect();
                pool.end_if_copy();
            }
            pool.steal_again();
            pool.stop_idle_workers();
        });
        // A panic of user code caught above may have left a copy's round early.
        pool.end_if_copy();
        crash_point!("pool.thread.looked");
        {
            // Closed with no worker: ends, unless an `imap` made before the `close` may still
            // send (until `join`), or a chunk waits. Only this thread starts the lost workers
            // again or fails what waits for one: had it ended, that `imap`'s next chunk would
            // wait for ever, even once there is room for a worker (review115 H1: the last one
            // died when none could start). An `imap` stops being counted once its input is
            // empty, which with a lookahead is while its last chunk waits (review121 H1). With
            // no worker, every round starts one or fails the pending chunks, so this ends.
            let books = lock(&pool.books);
            if state == CLOSED
                && books.workers.is_empty()
                && books.pending.is_empty()
                && (books.joining || pool.streams.load(Ordering::SeqCst) == 0)
            {
                return;
            }
        }
        let wake = pool.next_timeout().map_or(TICK, |t| t.saturating_duration_since(Instant::now()).min(TICK));
        // While threads wait for results they collect them: the pool thread keeps off the
        // results channel then (a sleeper there would cost each result a wake-up), and
        // for a moment after, since waiters tend to come back (a loop of `apply`).
        let since_help = sys::monotonic_ns().saturating_sub(pool.helped_at.load(Ordering::Relaxed));
        let helped_recently = since_help < nanos(HELPED_RECENTLY);
        if pool.helpers.load(Ordering::SeqCst) == 0 && !helped_recently {
            let results = pool.results.clone();
            drop(pool);
            results.wait_readable(Deadline::after(wake), false);
        } else {
            let wake = if helped_recently { wake.min(HELPED_RECENTLY) } else { wake };
            let (flag, cond) = &pool.doorbell;
            let mut rung = lock(flag);
            if !*rung {
                rung = cond.wait_timeout(rung, wake).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
            }
            *rung = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lets each die under its catch, as [`Inner::bury`] does outside a fork copy.
    struct Catching;

    impl Bury for Catching {
        fn bury(&self, doomed: Vec<Doomed>) {
            for doomed in doomed {
                survive_user_panic(|| doomed.die());
            }
        }
    }

    static DISCARDED: AtomicUsize = AtomicUsize::new(0);

    /// A chunk's arguments whose discard (a user value's `Drop`) panics.
    fn discard_panicking(_: &Payload) {
        DISCARDED.fetch_add(1, Ordering::SeqCst);
        panic!("a user value's drop panics");
    }

    /// fix129's note: a `BooksGuard` dropped while its thread unwinds (an internal panic
    /// under it) left its doomed items in the books, to die at the next release, or with
    /// the books, with no catch and no discard, if the pool ended first. They die at once,
    /// each under its catch: a panic caught inside a drop while unwinding does not abort.
    #[test]
    fn a_books_guard_dropped_while_unwinding_lets_its_doomed_die_each_under_a_catch() {
        let books = Mutex::new(Books::default());
        let unwound = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut guard = BooksGuard { inner: &Catching, books: Some(lock(&books)) };
            for _ in 0..2 {
                guard.doomed.push(Doomed::Args(discard_panicking, Payload::Inline(Vec::new())));
            }
            panic!("an internal panic under the books' guard");
        }));
        assert!(unwound.is_err());
        let left = lock(&books).doomed.len();
        assert_eq!((DISCARDED.load(Ordering::SeqCst), left), (2, 0), "(discarded, left in the books)");
    }
}
