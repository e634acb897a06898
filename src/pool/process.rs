//! `Pool`: worker processes that never hang.
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

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::channel::Channel;
use super::error::{PoolError, TaskError};
use super::options::{ApplyOptions, MapOptions, chunk_sizes};
use super::progress::Progress;
use super::result::{
    ApplySink, AsyncResult, Chunk, ChunkOutcome, Feeder, Helper, IMap, Input, MapResult, MapSink, Sink, StreamSink,
    count,
};
use super::star::StarFn;
use super::stats::{Counters, PoolStats};
use crate::codec;
use crate::error::{Error, PanicInfo};
use crate::process::{Process, ProcessHandle, StartMethod, panics};
use crate::shm::{Deadline, Payload, Shared, ShmObject, kind, saturating_nanos as nanos};
use crate::sys::{self, Packed, Stateless};

const RUNNING: u8 = 0;
const CLOSED: u8 = 1;
const TERMINATED: u8 = 2;

/// How often the pool thread looks at its workers when nothing wakes it earlier.
const TICK: Duration = Duration::from_millis(20);
/// After the last waiting thread left, how long the pool thread leaves the results to the
/// next one before collecting them itself.
const HELPED_RECENTLY: Duration = Duration::from_millis(2);
/// Chunks queued per worker at most, whatever their size.
const MAX_WINDOW: usize = 256;
/// The work a worker should have queued, in time, so it never idles between chunks.
const WINDOW_TIME: Duration = Duration::from_millis(2);
/// Chunks longer than this are sent one at a time per worker.
const LONG_CHUNK: Duration = Duration::from_millis(20);
/// How long a chunk of a failed `map` may go on running before its worker is killed and
/// replaced: a short task finishes, a long one does not hold the pool.
const CANCEL_GRACE: Duration = Duration::from_millis(100);

/// A worker's shared status: the chunk it runs, since when.
#[derive(crate::ShmSafe)]
#[repr(C)]
struct WorkerStatus {
    /// The running chunk's id (0: none).
    job: AtomicU64,
    /// When it started (`sys::monotonic_ns`).
    since: AtomicU64,
}

impl ShmObject for WorkerStatus {
    const KIND: u32 = kind::POOL;
}

/// What the parent sends a worker.
#[derive(Debug, Serialize, Deserialize)]
enum ToWorker {
    /// Run chunk `id`: `call` over the encoded items in `args`.
    Task { id: u64, call: Packed, args: Payload },
    /// Exit after the tasks before this one.
    Stop,
}

/// What a worker sends back.
#[derive(Debug, Serialize, Deserialize)]
enum FromWorker {
    /// Chunk `id` ran: the encoded [`WorkerResults<R>`], or why the chunk could not run
    /// (its items did not decode, its results did not encode).
    Done { id: u64, worker: u32, busy_ns: u64, outcome: Result<Payload, String> },
    /// The initializer panicked: the worker exits.
    InitFailed { worker: u32, info: PanicInfo },
}

/// A chunk's results as a worker sends them: the values of the items that returned, in
/// order, and the panics of the others with their index.
#[derive(Serialize, Deserialize)]
struct WorkerResults<R> {
    values: Vec<R>,
    panics: Vec<(u32, PanicInfo)>,
}

/// Everything a worker process needs.
#[derive(Serialize, Deserialize)]
struct WorkerBoot {
    index: u32,
    inbox: Channel<ToWorker>,
    results: Channel<FromWorker>,
    status: Shared<WorkerStatus>,
    initializer: Option<(Packed, Payload)>,
    max_tasks: Option<u64>,
}

/// The context a task runner works in, inside the worker.
struct TaskCall {
    name: String,
    args: Payload,
    /// The encoded results (its handles are released unless sent), or why not.
    output: Option<Result<(Payload, codec::Encoded), String>>,
}

/// Runs `f` over a chunk of items (`map`, `apply`, `imap`).
fn map_runner<A: DeserializeOwned, R: Serialize + DeserializeOwned>(f: fn(A) -> R, context: &mut dyn Any) {
    let Some(call) = context.downcast_mut::<TaskCall>() else { return };
    call.output = Some(run_items(call, |a: A| f(a)));
}

/// Runs the stateless callable `F` over a chunk of argument tuples (`starmap`).
fn star_runner<Args, F>(_: fn(), context: &mut dyn Any)
where
    Args: DeserializeOwned,
    F: StarFn<Args> + Stateless<Args>,
    F::Output: Serialize + DeserializeOwned,
{
    let Some(call) = context.downcast_mut::<TaskCall>() else { return };
    let f: F = sys::remake::<Args, F>();
    call.output = Some(run_items(call, |args: Args| f.call(args)));
}

fn run_items<A: DeserializeOwned, R: Serialize + DeserializeOwned>(
    call: &TaskCall,
    f: impl Fn(A) -> R,
) -> Result<(Payload, codec::Encoded), String> {
    let items: Vec<A> = codec::decode(call.args.bytes()).map_err(|e| e.to_string())?;
    let mut results = WorkerResults { values: Vec::with_capacity(items.len()), panics: Vec::new() };
    let mut items = items.into_iter().enumerate();
    // One unwinding guard per chunk, a new one only after a panic: the item that panicked
    // was taken from the iterator and gets the panic as its result.
    loop {
        let mut current = 0;
        match panics::catching(&call.name, || {
            for (i, item) in items.by_ref() {
                current = i;
                results.values.push(f(item));
            }
        }) {
            Ok(()) => break,
            Err(info) => results.panics.push((current as u32, info)),
        }
    }
    Payload::encode::<WorkerResults<R>, _>(&results).map_err(|e| e.to_string())
}

/// Runs the initializer `f(args)`.
fn init_runner<A: DeserializeOwned>(f: fn(A), context: &mut dyn Any) {
    let Some(call) = context.downcast_mut::<TaskCall>() else { return };
    call.output = Some(match codec::decode::<A>(call.args.bytes()) {
        Ok(args) => {
            f(args);
            Ok(Payload::encode::<(), _>(&()).expect("() encodes"))
        }
        Err(e) => Err(format!("the initializer's arguments could not be decoded: {e}")),
    });
}

/// The life of a worker process.
fn worker_main(boot: WorkerBoot) {
    let name = crate::current_process().name().to_string();
    if let Some((call, args)) = boot.initializer {
        let mut context = TaskCall { name: name.clone(), args, output: None };
        let outcome = panics::catching(&name, || sys::unpack_and_run(call, &mut context));
        let failure = match outcome {
            Err(info) => Some(info),
            Ok(Err(_)) => Some(PanicInfo {
                process: name.clone(),
                message: "the initializer belongs to another executable".into(),
                location: None,
                backtrace: String::new(),
            }),
            Ok(Ok(())) => match context.output {
                Some(Err(message)) => {
                    Some(PanicInfo { process: name.clone(), message, location: None, backtrace: String::new() })
                }
                _ => None,
            },
        };
        if let Some(info) = failure {
            let _ = boot.results.send(&FromWorker::InitFailed { worker: boot.index, info });
            return;
        }
    }
    let mut done = 0u64;
    loop {
        let Ok(message) = boot.inbox.recv() else { return };
        let ToWorker::Task { id, call, args } = message else { return };
        let start = sys::monotonic_ns();
        boot.status.since.store(start, Ordering::Relaxed);
        boot.status.job.store(id, Ordering::Release);
        let mut context = TaskCall { name: name.clone(), args, output: None };
        let outcome = match sys::unpack_and_run(call, &mut context) {
            Err(_) => Err("the task's function belongs to another executable".to_string()),
            Ok(()) => match context.output.take() {
                Some(Ok((payload, encoded))) => {
                    // The results, and their handles, now travel in the message.
                    encoded.sent();
                    Ok(payload)
                }
                Some(Err(e)) => Err(e),
                None => Err("the task runner produced nothing".to_string()),
            },
        };
        boot.status.job.store(0, Ordering::Release);
        let busy_ns = sys::monotonic_ns().saturating_sub(start);
        if boot.results.send(&FromWorker::Done { id, worker: boot.index, busy_ns, outcome }).is_err() {
            return;
        }
        done += 1;
        if boot.max_tasks.is_some_and(|max| done >= max) {
            return;
        }
    }
}

/// Delivers a chunk's encoded results to a typed sink.
trait Delivery: Send + Sync {
    fn deliver(&self, chunk: usize, outcome: Result<Payload, TaskError>);

    /// Whether the call no longer needs its chunks ([`Sink::cancelled`]).
    fn cancelled(&self) -> bool;
}

/// Decodes the arguments of a chunk that will not run, and drops them: handles among them
/// were counted in flight when encoded, and give their holds back this way.
fn discard_args<A: DeserializeOwned>(args: &Payload) {
    let _ = codec::decode::<Vec<A>>(args.bytes());
}

/// Decodes `Vec<Result<R, PanicInfo>>` for a sink of `R`.
struct Decoding<R> {
    sink: Arc<dyn Sink<R>>,
    counters: Weak<Inner>,
    items: usize,
}

impl<R: DeserializeOwned + Send + 'static> Delivery for Decoding<R> {
    fn deliver(&self, chunk: usize, outcome: Result<Payload, TaskError>) {
        let outcome: ChunkOutcome<R> = outcome.and_then(|payload| {
            let results: WorkerResults<R> = codec::decode(payload.bytes())?;
            Ok(Chunk {
                values: results.values,
                failures: results.panics.into_iter().map(|(i, info)| (i as usize, TaskError::Panicked(info))).collect(),
            })
        });
        if let Some(inner) = self.counters.upgrade() {
            count(&inner.counters, &outcome, self.items);
        }
        self.sink.deliver(chunk, outcome);
    }

    fn cancelled(&self) -> bool {
        self.sink.cancelled()
    }
}

/// A chunk on its way.
struct Job {
    chunk: usize,
    items: usize,
    call: Packed,
    args: Payload,
    timeout: Option<Duration>,
    delivery: Arc<dyn Delivery>,
    discard: fn(&Payload),
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
    /// When the pool thread first saw its call cancelled while it ran (`sys::monotonic_ns`).
    cancel_seen: Option<u64>,
}

/// Why the pool killed a worker.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// Its chunk ran past this timeout.
    TimedOut(Duration),
    /// Its chunk's call failed and the chunk ran past [`CANCEL_GRACE`].
    Cancelled,
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
}

#[derive(Default)]
struct Books {
    pending: VecDeque<(u64, Job)>,
    sent: HashMap<u64, Sent>,
    workers: Vec<Worker>,
    /// Average time a chunk keeps a worker busy (for the dispatch window).
    chunk_ns: f64,
    /// Workers started to replace others, and failed initializers in a row.
    init_failures: u32,
    init_error: Option<PanicInfo>,
}

/// Encodes the initializer's arguments.
type EncodeArgs = Arc<dyn Fn() -> Result<codec::Encoded, crate::CodecError> + Send + Sync>;

/// Packs a task's function for the workers, refusing one they could not locate (a function
/// from a shared library) before anything is queued.
fn pack_task<A, R>(f: fn(A) -> R) -> Result<Packed, PoolError>
where
    A: DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    sys::pack_checked(f, map_runner::<A, R>).map_err(|_| PoolError::NotInExecutable)
}

struct Config {
    workers: usize,
    initializer: Option<(Packed, EncodeArgs)>,
    max_tasks: Option<u64>,
    method: Option<StartMethod>,
    timeout: Option<Duration>,
}

struct Inner {
    config: Config,
    results: Channel<FromWorker>,
    books: Mutex<Books>,
    state: AtomicU8,
    next_id: AtomicU64,
    counters: Counters,
    /// A call was cancelled since the inboxes were last purged of its chunks.
    cancellations: AtomicBool,
    /// Threads waiting for a result and collecting meanwhile.
    helpers: AtomicUsize,
    /// When the last helper left (`sys::monotonic_ns`).
    helped_at: AtomicU64,
    doorbell: (Mutex<bool>, Condvar),
    pool_thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A pool of worker processes (Python's `multiprocessing.Pool`), which never hangs.
///
/// Tasks are functions (or non-capturing closures) of serde types; arguments and results
/// may hold handles (queues, locks, values). A task that panics fails with its panic; a
/// worker that dies (killed, crashed, out of memory) fails the task it was running with
/// [`TaskError::WorkerLost`] and is replaced; a task past its timeout has its worker killed
/// and fails with [`TaskError::TimedOut`]. A `map` that failed stops its other tasks (see
/// [`Pool::map`]). Dropping the pool terminates it.
///
/// # Examples
///
/// ```no_run
/// use multiproc::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// multiproc::init();
/// let pool = Pool::new(4)?;
/// assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Pool {
    inner: Arc<Inner>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.inner.config.workers)
            .field("state", &self.inner.state.load(Ordering::Relaxed))
            .finish()
    }
}

/// Configures a [`Pool`]; option names follow Python's `Pool(...)` parameters.
#[must_use]
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<(Result<Packed, sys::NotInExecutable>, EncodeArgs)>,
    max_tasks_per_child: Option<u64>,
    start_method: Option<StartMethod>,
    timeout: Option<Duration>,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("initializer", &self.initializer.is_some())
            .field("max_tasks_per_child", &self.max_tasks_per_child)
            .field("start_method", &self.start_method)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PoolBuilder {
    /// The number of worker processes (default [`cpu_count`](crate::cpu_count)); zero is
    /// refused by [`PoolBuilder::build`] with [`PoolError::NoProcesses`].
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// `f(args)` runs once in each worker before its first task (Python's `initializer`
    /// and `initargs`). A worker whose initializer panics exits; when every attempt
    /// fails, the pool's tasks fail with the initializer's panic instead of looping.
    pub fn initializer<A>(mut self, f: fn(A), args: A) -> Self
    where
        A: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        // Encoded anew for every worker started, so that handles in the arguments are
        // counted for each of them.
        // A function outside the executable is refused by `build`.
        self.initializer = Some((sys::pack_checked(f, init_runner::<A>), Arc::new(move || codec::encode(&args))));
        self
    }

    /// A worker exits after this many tasks (chunks) and is replaced (Python's
    /// `maxtasksperchild`). No task is lost by the change of workers. Zero is refused by
    /// [`PoolBuilder::build`] with [`PoolError::NoTasksPerChild`].
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// How the workers are started (default: [`get_start_method`](crate::get_start_method)).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    /// A task (chunk) running longer has its worker killed and replaced, and fails with
    /// [`TaskError::TimedOut`]. Calls may set their own with their options.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// [`PoolError::NoProcesses`] for `processes(0)`, [`PoolError::NoTasksPerChild`] for
    /// `max_tasks_per_child(0)` (Python's `ValueError`s); otherwise when multiproc is not
    /// initialized, the initializer's arguments do not encode, or a worker cannot be
    /// started.
    pub fn build(self) -> Result<Pool, Error> {
        if self.processes == Some(0) {
            return Err(PoolError::NoProcesses.into());
        }
        if self.max_tasks_per_child == Some(0) {
            return Err(PoolError::NoTasksPerChild.into());
        }
        if let Some((packed, encode)) = &self.initializer {
            packed.map_err(|_| PoolError::NotInExecutable)?;
            // Arguments that do not encode are an error now, not in every worker.
            let _ = encode()?;
        }
        let initializer = self.initializer.map(|(packed, encode)| (packed.expect("checked above"), encode));
        let inner = Arc::new(Inner {
            config: Config {
                workers: self.processes.unwrap_or_else(crate::cpu_count),
                initializer,
                max_tasks: self.max_tasks_per_child,
                method: self.start_method,
                timeout: self.timeout,
            },
            results: Channel::new()?,
            books: Mutex::new(Books::default()),
            state: AtomicU8::new(RUNNING),
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
            cancellations: AtomicBool::new(false),
            helpers: AtomicUsize::new(0),
            helped_at: AtomicU64::new(0),
            doorbell: (Mutex::new(false), Condvar::new()),
            pool_thread: Mutex::new(None),
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
        *lock(&inner.pool_thread) = Some(thread);
        Ok(Pool { inner })
    }
}

impl Inner {
    fn start_worker(&self, index: u32) -> Result<Worker, Error> {
        let inbox = Channel::new()?;
        let status = Shared::new(WorkerStatus { job: AtomicU64::new(0), since: AtomicU64::new(0) })?;
        let mut encoded_args = None;
        let initializer = match &self.config.initializer {
            Some((call, encode)) => {
                let mut encoded = encode()?;
                let args = Payload::new(std::mem::take(&mut encoded.bytes))?;
                encoded_args = Some(encoded);
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
            max_tasks: self.config.max_tasks,
        };
        let mut process =
            Process::new(worker_main, boot).name(format!("PoolWorker-{}", index + 1)).daemon_with_children();
        if let Some(method) = self.config.method {
            process = process.start_method(method);
        }
        let handle = process.start()?;
        if let Some(encoded) = encoded_args {
            encoded.sent();
        }
        Ok(Worker {
            index,
            handle,
            inbox,
            status,
            sent: VecDeque::new(),
            total_sent: 0,
            killed_for: None,
            stopping: false,
        })
    }

    fn running(&self) -> bool {
        self.state.load(Ordering::Acquire) == RUNNING
    }

    fn chunk_job<A: Serialize + DeserializeOwned, R: DeserializeOwned + Send + 'static>(
        self: &Arc<Self>,
        call: Packed,
        items: &[A],
        chunk: usize,
        timeout: Option<Duration>,
        sink: Arc<dyn Sink<R>>,
    ) -> Result<Job, PoolError> {
        // Written once: inline when small, straight into shared memory when large.
        let (args, encoded) = Payload::encode::<Vec<A>, _>(items)?;
        // The handles in the arguments now travel in the job.
        encoded.sent();
        Ok(Job {
            chunk,
            items: items.len(),
            call,
            args,
            timeout: timeout.or(self.config.timeout),
            delivery: Arc::new(Decoding { sink, counters: Arc::downgrade(self), items: items.len() }),
            discard: discard_args::<A>,
        })
    }

    /// Queues a chunk and sends what the workers have room for.
    fn submit(&self, job: Job) -> Result<(), PoolError> {
        if !self.running() {
            return Err(PoolError::Closed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut books = lock(&self.books);
        if let Some(info) = books.init_error.clone() {
            drop(books);
            job.delivery.deliver(job.chunk, Err(TaskError::Panicked(info)));
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
        let was_cancelled = delivery.cancelled();
        delivery.deliver(chunk, outcome);
        if !was_cancelled && delivery.cancelled() {
            self.cancellations.store(true, Ordering::Release);
        }
    }

    /// Sends pending chunks to the workers with room, least loaded first. Chunks of a
    /// cancelled call are dropped instead.
    fn dispatch(&self, books: &mut Books) {
        if self.cancellations.swap(false, Ordering::AcqRel) {
            self.take_back_cancelled(books);
        }
        let window = Self::window(books);
        while let Some((_, job)) = books.pending.front() {
            if job.delivery.cancelled() {
                let (_, job) = books.pending.pop_front().expect("peeked");
                (job.discard)(&job.args);
                self.counters.cancelled(job.items as u64);
                continue;
            }
            let max_tasks = self.config.max_tasks;
            let Some(w) = books
                .workers
                .iter()
                .enumerate()
                .filter(|(_, w)| !w.stopping && w.killed_for.is_none())
                .filter(|(_, w)| w.sent.len() < window)
                .filter(|(_, w)| max_tasks.is_none_or(|m| w.total_sent < m))
                .min_by_key(|(_, w)| w.sent.len())
                .map(|(i, _)| i)
            else {
                break;
            };
            let (id, job) = books.pending.pop_front().expect("peeked");
            let message = ToWorker::Task { id, call: job.call, args: job.args };
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
                            cancel_seen: None,
                        },
                    );
                }
                Err(e) => {
                    // The inbox refused (shared memory exhausted): the chunk fails rather
                    // than waiting forever.
                    job.delivery.deliver(job.chunk, Err(TaskError::Codec(crate::CodecError::encode(e))));
                }
            }
        }
        if books.pending.is_empty() {
            Self::steal(books);
        }
    }

    /// Takes the chunks of cancelled calls out of the workers' inboxes (the worker may take
    /// the oldest meanwhile: that one runs, and is stopped by `enforce_timeouts`); the
    /// others go back in their order.
    fn take_back_cancelled(&self, books: &mut Books) {
        let Books { workers, sent, pending, .. } = books;
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
                if let ToWorker::Task { id, ref args, .. } = message
                    && let Some(s) = sent.get(&id).filter(|s| s.delivery.cancelled())
                {
                    (s.discard)(args);
                    self.counters.cancelled(s.items as u64);
                    sent.remove(&id);
                    worker.sent.retain(|&s| s != id);
                    worker.total_sent -= 1;
                    continue;
                }
                if worker.inbox.send(&message).is_err()
                    && let ToWorker::Task { id, call, args } = message
                    && let Some(s) = sent.remove(&id)
                {
                    // Shared memory is exhausted: the chunk waits for another dispatch.
                    worker.sent.retain(|&s| s != id);
                    worker.total_sent -= 1;
                    let job = Job {
                        chunk: s.chunk,
                        items: s.items,
                        call,
                        args,
                        timeout: s.timeout,
                        delivery: s.delivery,
                        discard: s.discard,
                    };
                    unsendable.push((id, job));
                }
            }
        }
        for job in unsendable.into_iter().rev() {
            pending.push_front(job);
        }
    }

    /// Moves chunks that wait in a busy worker's inbox to idle workers: a slow worker (or a
    /// slow processor) keeps only the chunk it runs, and nobody idles while work waits.
    fn steal(books: &mut Books) {
        loop {
            let Some(idle) =
                books.workers.iter().position(|w| w.sent.is_empty() && !w.stopping && w.killed_for.is_none())
            else {
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
            let Some(ToWorker::Task { id, call, args }) = books.workers[busy].inbox.try_recv() else { return };
            let victim = &mut books.workers[busy];
            victim.sent.retain(|&s| s != id);
            victim.total_sent -= 1;
            let thief = &mut books.workers[idle];
            if thief.inbox.send(&ToWorker::Task { id, call, args }).is_err() {
                return;
            }
            thief.sent.push_back(id);
            thief.total_sent += 1;
        }
    }

    /// Handles what came back; returns how many messages.
    fn collect(&self) -> usize {
        let mut handled = 0;
        while let Some(message) = self.results.try_recv() {
            handled += 1;
            self.handle(message);
        }
        if handled > 0 {
            let mut books = lock(&self.books);
            self.dispatch(&mut books);
        }
        handled
    }

    fn handle(&self, message: FromWorker) {
        match message {
            FromWorker::Done { id, worker, busy_ns, outcome } => {
                let mut books = lock(&self.books);
                if let Some(w) = books.workers.iter_mut().find(|w| w.index == worker) {
                    // A worker answers in order: the front, unless a resend reordered it.
                    if w.sent.front() == Some(&id) {
                        w.sent.pop_front();
                    } else {
                        w.sent.retain(|&s| s != id);
                    }
                }
                books.chunk_ns =
                    if books.chunk_ns <= 0.0 { busy_ns as f64 } else { 0.8 * books.chunk_ns + 0.2 * busy_ns as f64 };
                books.init_failures = 0;
                let Some(sent) = books.sent.remove(&id) else { return };
                drop(books);
                let outcome = outcome.map_err(|e| TaskError::Codec(crate::CodecError::decode(e)));
                self.settle(&sent.delivery, sent.chunk, outcome);
            }
            FromWorker::InitFailed { info, .. } => {
                let mut books = lock(&self.books);
                books.init_failures += 1;
                // Every worker failed its initializer twice in a row: stop trying, fail the
                // work with the initializer's panic.
                if books.init_failures as usize >= 2 * self.config.workers {
                    books.init_error = Some(info.clone());
                    let pending: Vec<(u64, Job)> = books.pending.drain(..).collect();
                    drop(books);
                    for (_, job) in pending {
                        job.delivery.deliver(job.chunk, Err(TaskError::Panicked(info.clone())));
                    }
                }
            }
        }
    }

    /// Kills workers whose chunk ran past its timeout, or past [`CANCEL_GRACE`] after its
    /// call was cancelled; drops the cancelled calls' queued chunks.
    fn enforce_timeouts(&self) {
        let now = sys::monotonic_ns();
        let mut books = lock(&self.books);
        if self.cancellations.load(Ordering::Acquire) {
            self.dispatch(&mut books);
        }
        let Books { workers, sent, .. } = &mut *books;
        for w in workers.iter_mut().filter(|w| w.killed_for.is_none()) {
            let job = w.status.job.load(Ordering::Acquire);
            if job == 0 {
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
                let timeout = books.sent.get(&job)?.timeout?;
                let since = w.status.since.load(Ordering::Relaxed);
                let left = since.saturating_add(nanos(timeout)).saturating_sub(now_ns);
                now.checked_add(Duration::from_nanos(left) + Duration::from_millis(1))
            })
            .min()
    }

    /// Replaces the workers that ended; their chunks are resent or failed.
    fn tend_workers(&self) {
        let ended: Vec<usize> = {
            let books = lock(&self.books);
            books.workers.iter().enumerate().filter(|(_, w)| !w.handle.is_alive()).map(|(i, _)| i).collect()
        };
        if ended.is_empty() {
            return;
        }
        // Results the workers sent before they ended count first.
        self.collect();
        let mut failures: Vec<(Arc<dyn Delivery>, usize, TaskError)> = Vec::new();
        {
            let mut books = lock(&self.books);
            for &i in ended.iter().rev() {
                let mut worker = books.workers.remove(i);
                // What is still in its inbox was never started: send it again.
                let mut unstarted = Vec::new();
                while let Some(message) = worker.inbox.try_recv() {
                    if let ToWorker::Task { id, args, .. } = message {
                        unstarted.push((id, args));
                    }
                }
                for (id, args) in unstarted.into_iter().rev() {
                    worker.sent.retain(|&s| s != id);
                    if let Some(sent) = books.sent.remove(&id) {
                        let job = Job {
                            chunk: sent.chunk,
                            items: sent.items,
                            call: sent.call,
                            args,
                            timeout: sent.timeout,
                            delivery: sent.delivery,
                            discard: sent.discard,
                        };
                        books.pending.push_front((id, job));
                    }
                }
                // What it was sent and did not answer, it was running.
                let code = worker.handle.exitcode();
                for id in worker.sent.drain(..) {
                    let Some(sent) = books.sent.remove(&id) else { continue };
                    let error = match worker.killed_for {
                        Some((killed, Kill::TimedOut(timeout))) if killed == id => TaskError::TimedOut(timeout),
                        Some((killed, Kill::Cancelled)) if killed == id => {
                            // Its call failed already and wants nothing more from it.
                            self.counters.cancelled(sent.items as u64);
                            continue;
                        }
                        _ => TaskError::WorkerLost {
                            pid: worker.handle.pid(),
                            signal: code.filter(|c| *c < 0).map(|c| -c),
                            exit_code: code.filter(|c| *c >= 0),
                        },
                    };
                    failures.push((sent.delivery, sent.chunk, error));
                }
                let replace = self.state.load(Ordering::Acquire) != TERMINATED
                    && (self.running() || !books.pending.is_empty() || !books.sent.is_empty());
                if replace && books.init_error.is_none() {
                    match self.start_worker(worker.index) {
                        Ok(new) => {
                            books.workers.push(new);
                            self.counters.restarted();
                        }
                        Err(e) => {
                            // Could not replace: with no worker left, fail the waiting work.
                            if books.workers.is_empty() {
                                let info = PanicInfo {
                                    process: format!("PoolWorker-{}", worker.index + 1),
                                    message: format!("cannot start a worker: {e}"),
                                    location: None,
                                    backtrace: String::new(),
                                };
                                books.init_error = Some(info);
                            }
                        }
                    }
                }
            }
            books.workers.sort_by_key(|w| w.index);
            if let Some(info) = books.init_error.clone() {
                for (_, job) in books.pending.drain(..) {
                    failures.push((job.delivery, job.chunk, TaskError::Panicked(info.clone())));
                }
            }
            self.dispatch(&mut books);
        }
        for (delivery, chunk, error) in failures {
            self.settle(&delivery, chunk, Err(error));
        }
        self.results.wake_receivers();
    }

    /// After `close`: once every chunk is answered, tells the workers to exit.
    fn stop_idle_workers(&self) {
        let mut books = lock(&self.books);
        if self.state.load(Ordering::Acquire) != CLOSED || !books.pending.is_empty() || !books.sent.is_empty() {
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
        let mut books = lock(&self.books);
        for w in &books.workers {
            let _ = w.handle.kill();
        }
        let mut failures: Vec<(Arc<dyn Delivery>, usize)> =
            books.pending.drain(..).map(|(_, j)| (j.delivery, j.chunk)).collect();
        failures.extend(books.sent.drain().map(|(_, s)| (s.delivery, s.chunk)));
        for w in &mut books.workers {
            w.sent.clear();
        }
        drop(books);
        for (delivery, chunk) in failures {
            delivery.deliver(chunk, Err(TaskError::Terminated));
        }
        self.results.wake_receivers();
    }

    fn ring_doorbell(&self) {
        let (flag, cond) = &self.doorbell;
        *lock(flag) = true;
        cond.notify_all();
    }
}

impl Helper for Inner {
    fn help(&self, done: &dyn Fn() -> bool, deadline: Deadline) {
        self.helpers.fetch_add(1, Ordering::SeqCst);
        // Spin for the first result only: a long map must not burn a processor its
        // workers need every time it wakes.
        let mut spin = true;
        loop {
            self.collect();
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
        self.helpers.fetch_sub(1, Ordering::SeqCst);
    }
}

fn pool_thread(inner: Weak<Inner>) {
    loop {
        let Some(pool) = inner.upgrade() else { return };
        let state = pool.state.load(Ordering::Acquire);
        if state == TERMINATED {
            return;
        }
        pool.tend_workers();
        pool.enforce_timeouts();
        if pool.helpers.load(Ordering::SeqCst) == 0 {
            pool.collect();
        }
        pool.stop_idle_workers();
        {
            let books = lock(&pool.books);
            if state == CLOSED && books.workers.is_empty() {
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

impl Pool {
    /// A pool of `processes` workers.
    ///
    /// # Errors
    ///
    /// [`PoolError::NoProcesses`] for zero (Python's `ValueError`); otherwise when
    /// multiproc is not initialized or a worker cannot be started.
    pub fn new(processes: usize) -> Result<Pool, Error> {
        Self::builder().processes(processes).build()
    }

    /// A builder with Python's options: `processes`, `initializer`,
    /// `max_tasks_per_child`, plus `start_method` and a task `timeout`.
    pub fn builder() -> PoolBuilder {
        PoolBuilder { processes: None, initializer: None, max_tasks_per_child: None, start_method: None, timeout: None }
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.inner.config.workers
    }

    /// The process ids of the current workers (they change as workers are replaced).
    pub fn pids(&self) -> Vec<u32> {
        lock(&self.inner.books).workers.iter().map(|w| w.handle.pid()).collect()
    }

    /// What the pool has done so far.
    pub fn stats(&self) -> PoolStats {
        self.inner.counters.snapshot()
    }

    fn helper(&self) -> Option<Arc<dyn Helper>> {
        Some(self.inner.clone() as Arc<dyn Helper>)
    }

    /// Runs `f(args)` in a worker and waits for the result (Python's `apply`).
    pub fn apply<A, R>(&self, f: fn(A) -> R, args: A) -> Result<R, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok(self.apply_async(f, args)?.get()?)
    }

    /// Starts `f(args)` in a worker (Python's `apply_async`).
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, args: A) -> Result<AsyncResult<R>, PoolError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async_with(f, args, ApplyOptions::new())
    }

    /// [`Pool::apply_async`] with callbacks and a timeout.
    pub fn apply_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        args: A,
        options: ApplyOptions<R>,
    ) -> Result<AsyncResult<R>, PoolError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let (sink, slot) = ApplySink::new(options.callbacks);
        let job = self.inner.chunk_job(pack_task(f)?, &[args], 0, options.timeout, sink)?;
        self.inner.submit(job)?;
        Ok(AsyncResult::new(slot, self.helper()))
    }

    /// Applies `f` to every item in the workers, results in order (Python's `map`). The
    /// items go in chunks of Python's automatic size, the last ones smaller down to one item
    /// so the workers finish together; the first failed item ends the call with its error.
    ///
    /// A failed call does not keep the pool busy (Python's does): its chunks not yet
    /// started are dropped, and a chunk still running 100 ms after the failure has its
    /// worker killed and replaced, as a timeout does (so a task of a failed `map` may be
    /// stopped part-way). [`PoolStats::tasks_cancelled`] counts these items. The same holds
    /// for `map_async`, `starmap` and their forms with options.
    pub fn map<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok(self.map_async_with(f, items, MapOptions::new())?.get()?)
    }

    /// [`Pool::map`] with options (chunk size, timeout, progress bar).
    pub fn map_with<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        options: MapOptions<R>,
    ) -> Result<Vec<R>, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok(self.map_async_with(f, items, options)?.get()?)
    }

    /// Starts a `map` (Python's `map_async`).
    pub fn map_async<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<MapResult<R>, PoolError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_async_with(f, items, MapOptions::new())
    }

    /// [`Pool::map_async`] with options (chunk size, callbacks, timeout, progress bar).
    pub fn map_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        options: MapOptions<R>,
    ) -> Result<MapResult<R>, PoolError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_packed(pack_task(f)?, items.into_iter().collect(), options)
    }

    fn map_packed<A: Serialize + DeserializeOwned, R: DeserializeOwned + Send + 'static>(
        &self,
        call: Packed,
        items: Vec<A>,
        options: MapOptions<R>,
    ) -> Result<MapResult<R>, PoolError> {
        if !self.inner.running() {
            return Err(PoolError::Closed);
        }
        let sizes = chunk_sizes(items.len(), self.inner.config.workers, options.chosen_chunksize()?);
        let progress = options.progress.then(|| Progress::new(Some(items.len())));
        let (sink, slot) = MapSink::new(sizes.len(), options.callbacks, progress);
        let mut rest = &items[..];
        for (index, size) in sizes.into_iter().enumerate() {
            let (chunk, after) = rest.split_at(size);
            rest = after;
            let job = self.inner.chunk_job(call, chunk, index, options.timeout, sink.clone())?;
            self.inner.submit(job)?;
        }
        Ok(AsyncResult::new(slot, self.helper()))
    }

    /// Applies `f` lazily, results in order (Python's `imap`): at most a few chunks per
    /// worker run ahead of the consumer, so `items` may be endless.
    pub fn imap<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<IMap<R>, PoolError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.stream(pack_task(f)?, items.into_iter(), MapOptions::new(), true)
    }

    /// [`Pool::imap`] with options (chunk size, look-ahead, timeout, progress bar).
    pub fn imap_with<A, R, I>(&self, f: fn(A) -> R, items: I, options: MapOptions<R>) -> Result<IMap<R>, PoolError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.stream(pack_task(f)?, items.into_iter(), options, true)
    }

    /// Like [`Pool::imap`], results in completion order (Python's `imap_unordered`).
    pub fn imap_unordered<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<IMap<R>, PoolError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.stream(pack_task(f)?, items.into_iter(), MapOptions::new(), false)
    }

    /// [`Pool::imap_unordered`] with options.
    pub fn imap_unordered_with<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        options: MapOptions<R>,
    ) -> Result<IMap<R>, PoolError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.stream(pack_task(f)?, items.into_iter(), options, false)
    }

    fn stream<A, R, It>(
        &self,
        call: Packed,
        items: It,
        options: MapOptions<R>,
        ordered: bool,
    ) -> Result<IMap<R>, PoolError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: DeserializeOwned + Send + 'static,
        It: Iterator<Item = A> + Send + 'static,
    {
        if !self.inner.running() {
            return Err(PoolError::Closed);
        }
        let chunksize = options.chosen_chunksize()?.unwrap_or(1);
        let lookahead = options.lookahead.unwrap_or(4 * self.inner.config.workers) * chunksize;
        let progress = options.progress.then(|| Progress::for_items(&items));
        let sink = StreamSink::new(ordered, progress);
        let feeder = PoolFeeder {
            inner: self.inner.clone(),
            call,
            items: Input::new(items),
            chunksize,
            timeout: options.timeout,
        };
        Ok(IMap::new(sink, Box::new(feeder), self.helper(), lookahead))
    }

    /// Calls `f` with each tuple's elements as arguments, results in order (Python's
    /// `starmap`). `f` is a function or a closure that captures nothing.
    pub fn starmap<Args, F>(&self, f: F, items: impl IntoIterator<Item = Args>) -> Result<Vec<F::Output>, Error>
    where
        Args: Serialize + DeserializeOwned + 'static,
        F: StarFn<Args> + Stateless<Args>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok(self.starmap_async_with(f, items, MapOptions::new())?.get()?)
    }

    /// [`Pool::starmap`] with options (chunk size, timeout, progress bar).
    pub fn starmap_with<Args, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
        options: MapOptions<F::Output>,
    ) -> Result<Vec<F::Output>, Error>
    where
        Args: Serialize + DeserializeOwned + 'static,
        F: StarFn<Args> + Stateless<Args>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok(self.starmap_async_with(f, items, options)?.get()?)
    }

    /// Starts a `starmap` (Python's `starmap_async`).
    pub fn starmap_async<Args, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
    ) -> Result<MapResult<F::Output>, PoolError>
    where
        Args: Serialize + DeserializeOwned + 'static,
        F: StarFn<Args> + Stateless<Args>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        self.starmap_async_with(f, items, MapOptions::new())
    }

    /// [`Pool::starmap_async`] with options.
    pub fn starmap_async_with<Args, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
        options: MapOptions<F::Output>,
    ) -> Result<MapResult<F::Output>, PoolError>
    where
        Args: Serialize + DeserializeOwned + 'static,
        F: StarFn<Args> + Stateless<Args>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        let _ = f;
        self.map_packed(sys::pack_runner(star_runner::<Args, F>), items.into_iter().collect(), options)
    }

    /// No more tasks; the workers exit once the submitted ones are done (Python's
    /// `close`).
    pub fn close(&self) {
        let _ = self.inner.state.compare_exchange(RUNNING, CLOSED, Ordering::AcqRel, Ordering::Acquire);
        self.inner.stop_idle_workers();
        self.inner.results.wake_receivers();
    }

    /// Stops at once: the workers are killed and every unfinished task fails with
    /// [`TaskError::Terminated`] (Python's `terminate`).
    pub fn terminate(&self) {
        self.inner.state.store(TERMINATED, Ordering::Release);
        self.inner.kill_everything();
        self.inner.ring_doorbell();
    }

    /// Waits for the workers to exit, after [`Pool::close`] or [`Pool::terminate`].
    ///
    /// # Errors
    ///
    /// [`PoolError::StillRunning`] before `close` or `terminate` (Python's `ValueError`).
    pub fn join(&self) -> Result<(), PoolError> {
        if self.inner.running() {
            return Err(PoolError::StillRunning);
        }
        let thread = lock(&self.inner.pool_thread).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        let workers: Vec<Worker> = std::mem::take(&mut lock(&self.inner.books).workers);
        for w in workers {
            w.handle.wait();
        }
        Ok(())
    }
}

impl Drop for Pool {
    /// Terminates the pool, as Python's `with Pool() as p:` does on exit.
    fn drop(&mut self) {
        self.terminate();
        let _ = self.join();
    }
}

struct PoolFeeder<It> {
    inner: Arc<Inner>,
    call: Packed,
    items: Input<It>,
    chunksize: usize,
    timeout: Option<Duration>,
}

impl<It, A, R> Feeder<R> for PoolFeeder<It>
where
    It: Iterator<Item = A> + Send,
    A: Serialize + DeserializeOwned + 'static,
    R: DeserializeOwned + Send + 'static,
{
    fn feed(&mut self, index: usize, sink: &Arc<StreamSink<R>>) -> Option<usize> {
        let chunk: Vec<A> = self.items.chunk(self.chunksize);
        if chunk.is_empty() {
            return self.items.end(index, sink);
        }
        sink.expect(index, chunk.len());
        let sink_dyn: Arc<dyn Sink<R>> = sink.clone();
        match self.inner.chunk_job(self.call, &chunk, index, self.timeout, sink_dyn) {
            Ok(job) => {
                if self.inner.submit(job).is_err() {
                    sink.deliver(index, Err(TaskError::Terminated));
                }
            }
            Err(PoolError::Codec(e)) => sink.deliver(index, Err(TaskError::Codec(e))),
            Err(_) => sink.deliver(index, Err(TaskError::Terminated)),
        }
        Some(chunk.len())
    }
}
