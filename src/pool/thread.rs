//! `ThreadPool`: the same API as `Pool`, backed by threads of this process.
//!
//! For I/O-bound work (waiting on sockets, files, other processes), where threads cost
//! less than processes and share memory; CPU-bound work wants processes (`Pool`). Tasks
//! are any `Fn` closures: nothing is serialized. A thread cannot be killed, so there is
//! no task timeout and `terminate` lets running tasks finish.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::error::{PoolError, TaskError};
use super::options::{ApplyOptions, MapOptions, chunk_sizes};
use super::progress::Progress;
use super::result::{
    ApplySink, AsyncResult, Chunk, ChunkOutcome, Feeder, Helper, IMap, Input, MapResult, MapSink, Sink, StreamSink,
    count,
};
use super::star::{StarFn, ThreadTarget};
use super::stats::{Counters, PoolStats};
use crate::error::{Error, PanicInfo};
use crate::process::panics;
use crate::shm::{Deadline, TakenIn};
use crate::sys;

const RUNNING: u8 = 0;
const CLOSED: u8 = 1;
const TERMINATED: u8 = 2;

struct Job {
    run: Box<dyn FnOnce() + Send>,
    /// Called instead of `run`, with why: the pool was terminated first, or no thread of
    /// it can run it ([`Shared::failed`]).
    cancel: Box<dyn FnOnce(TaskError) + Send>,
}

struct Shared {
    sender: Mutex<Option<Sender<Job>>>,
    /// The jobs' other end, for a thread of the pool that waits for its own pool's results
    /// (see [`OwnThread`]).
    jobs: Receiver<Job>,
    state: AtomicU8,
    threads: Mutex<Vec<JoinHandle<()>>>,
    counters: Counters,
    workers: usize,
    /// Threads whose initializer panicked (each ended there).
    init_failures: AtomicUsize,
    /// Set when the initializer panicked in every thread, to the last panic: no thread is
    /// left to run a task, so every task fails with it, those queued then and those given
    /// since (set, and the queue emptied, under `sender`'s lock, under which `submit`
    /// looks).
    failed: OnceLock<TaskError>,
    /// The process that made the pool. A copy that fork made in a child (a pool kept in a
    /// static) has none of its threads: it is closed there, and its drop joins nothing.
    made_in: TakenIn,
    /// The user's `ThreadPool` handles (not an `imap` feeder's, aud108 M2: a live `IMap`
    /// kept the pool running, its queued tasks run after the user's drop): the last one's
    /// drop ends the pool. Not the `Arc`'s count, which a thread raises for a moment as it
    /// upgrades its `Weak` (for the whole drain, in `initializer_failed`): a drop that saw
    /// it raised neither terminated nor joined, and the threads ran on detached.
    handles: AtomicUsize,
    /// The `imap`s made while the pool ran that have not ended: a `close` keeps the job
    /// channel open for them (their chunks are taken) until the last ends, or `join`
    /// (aud91: a lazy `imap` lost every item it had not sent at the `close`,
    /// `Terminated`; Python's queues them all at once, and `close` lets them run).
    streams: AtomicUsize,
}

impl Shared {
    /// Counts an `imap` made now, if the pool runs (see [`Shared::streams`]); whether it
    /// was counted.
    fn stream_opened(&self) -> bool {
        if self.state.load(Ordering::Acquire) != RUNNING {
            return false;
        }
        self.streams.fetch_add(1, Ordering::SeqCst);
        // A `close` between the two looks may have seen no stream and ended the channel:
        // this one is not counted, and ends at its first chunk.
        if self.state.load(Ordering::SeqCst) != RUNNING {
            self.stream_ended();
            return false;
        }
        true
    }

    /// An `imap` counted by [`Shared::stream_opened`] sends nothing more: after a `close`,
    /// the last one ends the job channel.
    fn stream_ended(&self) {
        self.streams.fetch_sub(1, Ordering::SeqCst);
        if self.state.load(Ordering::SeqCst) != RUNNING {
            self.end_channel(false);
        }
    }

    /// Ends the job channel (the threads leave their loops once it is empty), unless this
    /// is a fork child's copy: its sender is the parent's (see `Shared`'s drop), and so is
    /// the lock around it, which a thread of the parent may have held at the fork. Not
    /// while an `imap` made before a `close` may send more, unless `always` (`terminate`,
    /// `join`).
    fn end_channel(&self, always: bool) {
        if self.made_in.is_here() {
            let mut sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
            if always || self.streams.load(Ordering::SeqCst) == 0 {
                sender.take();
            }
        }
    }

    /// A thread's initializer panicked (`info`): after the last thread's, the pool has
    /// failed, and its queued tasks fail with the panic (nothing would ever run them).
    fn initializer_failed(&self, info: PanicInfo) {
        if self.init_failures.fetch_add(1, Ordering::AcqRel) + 1 < self.workers {
            return;
        }
        let queued: Vec<Job> = {
            let _sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
            let _ = self.failed.set(TaskError::Panicked(info));
            self.jobs.try_iter().collect()
        };
        let error = self.failed.get().expect("set just now");
        for Job { run, cancel } in queued {
            // A panic of user code (an error callback; the task's drop, its function and
            // arguments, dropped in the catch too) must not keep the others' errors.
            let failed = std::panic::AssertUnwindSafe(move || {
                cancel(error.clone());
                drop(run);
            });
            if let Err(payload) = std::panic::catch_unwind(failed) {
                panics::drop_payload(payload);
            }
            end_if_copy(self.made_in);
        }
    }
}

/// On a pool thread, after user code it ran returned (its initializer, a task, a callback): ends this
/// process if that code forked and this is the child, come back here. The thread is its
/// process's only one and serves the parent's pool: the jobs queued behind are the
/// parent's, and ran twice, their callbacks once in each process (review70 L1); once none
/// was left the copy waited for ever on the parent's channel. It ends the process at once,
/// neither by returning (the last thread's return ends the process through glibc's `exit`,
/// whose exit hooks are the parent's) nor by dropping the jobs it holds (their closures
/// hold the parent's objects): as the process pool's thread does (`Inner::end_if_copy`).
fn end_if_copy(made_in: TakenIn) {
    if !made_in.is_here() {
        sys::exit_group(0);
    }
}

impl Drop for Shared {
    /// A fork child's copy lets go of none of the parent's: its threads' channel and their
    /// handles are forgotten, not dropped. The last sender's drop locks the channel's
    /// waker list, which one of the parent's threads may have held at the fork (it takes
    /// it each time it waits for a job or is woken): the copy would wait for ever. A
    /// thread's handle names a thread that is not in this process.
    fn drop(&mut self) {
        if !self.made_in.is_here() {
            std::mem::forget(self.sender.get_mut().unwrap_or_else(|e| e.into_inner()).take());
            std::mem::forget(std::mem::replace(&mut self.jobs, crossbeam_channel::never()));
            std::mem::forget(std::mem::take(self.threads.get_mut().unwrap_or_else(|e| e.into_inner())));
        }
    }
}

/// A pool of worker threads with `Pool`'s API (Python's `multiprocessing.pool.ThreadPool`).
///
/// A task, or a callback (which runs on the worker thread after its task), may call its own
/// pool: while it waits for that call's results, its thread runs the pool's queued jobs,
/// so a pool whose every thread does so still gets on (Python's would wait for ever).
///
/// A copy that a `Fork` child got with its parent's memory (a pool kept in a static) has
/// none of the threads: in the child its calls fail with [`PoolError::Closed`], and
/// dropping it waits for nothing.
///
/// An initializer, task or callback that forks (a bare `fork`) and whose child returns into the pool's
/// thread ends that child there, with exit code 0: the thread's copy serves the parent's
/// pool, whose queued tasks must run once, in the parent.
///
/// # Examples
///
/// ```
/// use multiproc::ThreadPool;
///
/// let pool = ThreadPool::new(4)?;
/// let lengths = pool.map(|s: &'static str| s.len(), ["a", "bb", "ccc"])?;
/// assert_eq!(lengths, [1, 2, 3]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct ThreadPool {
    shared: Arc<Shared>,
    /// Counted in [`Shared::handles`]: the user's. An `imap` feeder's is not, so that the
    /// user's last drop terminates the pool, whatever `imap`s of it live (aud108 M2).
    counted: bool,
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("workers", &self.shared.workers)
            .field("state", &self.shared.state.load(Ordering::Relaxed))
            .finish()
    }
}

/// Configures a [`ThreadPool`].
#[must_use]
pub struct ThreadPoolBuilder {
    processes: Option<usize>,
    initializer: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl fmt::Debug for ThreadPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolBuilder").field("processes", &self.processes).finish_non_exhaustive()
    }
}

impl ThreadPoolBuilder {
    /// The number of threads (Python's `processes`; default [`cpu_count`](crate::cpu_count));
    /// zero is refused by [`ThreadPoolBuilder::build`] with [`PoolError::NoProcesses`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ThreadPool;
    ///
    /// let pool = ThreadPool::builder().processes(2).build()?;
    /// assert_eq!(pool.processes(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Runs once in each thread before its first task (Python's `initializer`).
    ///
    /// A thread whose initializer panics runs no task and is not replaced (Python's pool
    /// would start another, for ever): the others run the work. Once it panicked in every
    /// thread the pool has failed for good: every task, queued or given since, fails at
    /// once with the last panic ([`TaskError::Panicked`]); `close` or `terminate`, then
    /// `join`, end it.
    ///
    /// Nothing bounds it: a thread cannot be killed, and a thread pool has no timeout. An
    /// initializer that never returns holds its thread for ever, as in Python, and the
    /// pool's `join` waits for it; when it holds every thread, no task runs (unlike a
    /// process [`Pool`](crate::Pool), whose timeout bounds its initializer).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    ///
    /// static STARTED: AtomicUsize = AtomicUsize::new(0);
    /// let pool = multiproc::ThreadPool::builder()
    ///     .processes(2)
    ///     .initializer(|| {
    ///         STARTED.fetch_add(1, Ordering::Relaxed);
    ///     })
    ///     .build()?;
    /// pool.map(|x: u32| x, 0..10)?;
    /// assert!(STARTED.load(Ordering::Relaxed) >= 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn initializer(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.initializer = Some(Arc::new(f));
        self
    }

    /// Starts the threads.
    ///
    /// # Errors
    ///
    /// [`PoolError::NoProcesses`] for `processes(0)` (Python's `ValueError`),
    /// [`PoolError::TooManyWorkers`] for more threads than the system can run, or when the
    /// system refuses a thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ThreadPool;
    ///
    /// let pool = ThreadPool::builder().processes(2).build()?;
    /// assert_eq!(pool.map(|x: u64| x * x, [1, 2, 3])?, [1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn build(self) -> Result<ThreadPool, Error> {
        if self.processes == Some(0) {
            return Err(PoolError::NoProcesses.into());
        }
        let workers = self.processes.unwrap_or_else(crate::cpu_count);
        super::check_workers(workers)?;
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let shared = Arc::new(Shared {
            sender: Mutex::new(Some(tx)),
            jobs: rx.clone(),
            state: AtomicU8::new(RUNNING),
            threads: Mutex::new(Vec::new()),
            counters: Counters::default(),
            workers,
            init_failures: AtomicUsize::new(0),
            failed: OnceLock::new(),
            made_in: TakenIn::here(),
            handles: AtomicUsize::new(1),
            streams: AtomicUsize::new(0),
        });
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let rx: Receiver<Job> = rx.clone();
            let init = self.initializer.clone();
            let pool = Arc::downgrade(&shared);
            let made_in = shared.made_in;
            let name = format!("ThreadPoolWorker-{}", i + 1);
            threads.push(std::thread::Builder::new().name(name.clone()).spawn(move || {
                WORKER_OF.with(|w| w.set(Weak::as_ptr(&pool) as usize));
                if let Some(init) = init {
                    let initialized = panics::catching(&name, || init());
                    // User code too: a copy it forked, come back here, would run the
                    // parent's queued jobs or wait on its channel for ever (review79 L1).
                    end_if_copy(made_in);
                    if let Err(info) = initialized {
                        // As a process pool's worker whose initializer panics, this thread
                        // runs no task; it is not replaced (Python's would be, for ever).
                        if let Some(p) = pool.upgrade() {
                            p.initializer_failed(info);
                        }
                        return;
                    }
                }
                for job in rx.iter() {
                    run_job(&pool, made_in, job);
                }
            })?);
        }
        *shared.threads.lock().unwrap_or_else(|e| e.into_inner()) = threads;
        Ok(ThreadPool { shared, counted: true })
    }
}

thread_local! {
    /// The pool whose worker this thread is (its `Shared`'s address), 0 for other threads.
    static WORKER_OF: Cell<usize> = const { Cell::new(0) };
}

/// Runs one job on a thread of `pool` (a worker's loop, or [`OwnThread::help`]), made in
/// process `made_in`.
fn run_job(pool: &Weak<Shared>, made_in: TakenIn, job: Job) {
    let terminated = pool.upgrade().is_none_or(|p| p.state.load(Ordering::Acquire) == TERMINATED);
    // A task's panic is caught with the task; what is left is user code around it (a
    // result's `Drop`, when nobody kept its `AsyncResult`): its panic stops here (the hook
    // has printed it), the thread goes on.
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if terminated { (job.cancel)(TaskError::Terminated) } else { (job.run)() }
    }));
    if let Err(payload) = ran {
        // Its payload is user code too (review155 H1).
        panics::drop_payload(payload);
    }
    end_if_copy(made_in);
}

/// The helper of a result asked for by one of the pool's own threads (a task, or a
/// callback, which runs on the thread after its task, calling `map` on its pool): while
/// that thread waits for it, it runs the pool's queued jobs itself. Otherwise a pool whose
/// every thread waits so would wait for ever, for jobs that only its threads can run
/// (Python's `ThreadPool` does). A result waited for on any other thread (sent there) is
/// waited for as without a helper; results asked for outside the pool have none.
struct OwnThread {
    pool: Weak<Shared>,
    made_in: TakenIn,
    jobs: Receiver<Job>,
}

impl OwnThread {
    /// The helper for a result asked for now from `shared`'s pool: `Some` on its own threads.
    fn for_result(shared: &Arc<Shared>) -> Option<Arc<dyn Helper>> {
        Self::on_its_thread(shared).then(|| {
            Arc::new(OwnThread { pool: Arc::downgrade(shared), made_in: shared.made_in, jobs: shared.jobs.clone() })
                as Arc<dyn Helper>
        })
    }

    /// Whether this thread is one of `shared`'s workers, in the process that made them.
    fn on_its_thread(shared: &Shared) -> bool {
        WORKER_OF.with(Cell::get) == shared as *const Shared as usize && shared.made_in.is_here()
    }

    fn helping(&self) -> bool {
        self.pool.upgrade().is_some_and(|p| Self::on_its_thread(&p))
    }
}

impl Helper for OwnThread {
    fn help(&self, done: &dyn Fn() -> bool, deadline: Deadline) {
        if !self.helping() {
            return;
        }
        while !done() && !deadline.passed() {
            match self.jobs.recv_timeout(deadline.slice(Duration::from_millis(1))) {
                Ok(job) => run_job(&self.pool, self.made_in, job),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Runs the jobs queued now, until `done`: a future polled on the pool's thread is woken
    /// only by its result, which may need every one of them.
    fn help_briefly(&self, done: &dyn Fn() -> bool) {
        if !self.helping() {
            return;
        }
        while !done()
            && let Ok(job) = self.jobs.try_recv()
        {
            run_job(&self.pool, self.made_in, job);
        }
    }

    /// A fork copy's results end as those of a thread pool's results without a helper (its
    /// threads are the parent's).
    fn ends_copies(&self) -> bool {
        false
    }
}

impl ThreadPool {
    /// A pool of `threads` threads.
    ///
    /// # Errors
    ///
    /// [`PoolError::NoProcesses`] for zero (Python's `ValueError`), or when the system
    /// refuses a thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ThreadPool;
    ///
    /// let pool = ThreadPool::new(2)?;
    /// assert_eq!(pool.apply(|x: u64| x * x, 5)?, 25);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(threads: usize) -> Result<Self, Error> {
        Self::builder().processes(threads).build()
    }

    /// A builder for the options.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ThreadPool;
    ///
    /// let pool = ThreadPool::builder().processes(2).build()?;
    /// assert_eq!(pool.processes(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder { processes: None, initializer: None }
    }

    /// The number of worker threads (named as [`Pool::processes`](crate::Pool::processes),
    /// Python's `_processes`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ThreadPool;
    ///
    /// let pool = ThreadPool::new(3)?;
    /// assert_eq!(pool.processes(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn processes(&self) -> usize {
        self.shared.workers
    }

    /// What the pool has done so far.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ThreadPool;
    ///
    /// let pool = ThreadPool::new(2)?;
    /// pool.map(|x: u64| x * x, 0..10)?;
    /// assert_eq!(pool.stats().tasks_done, 10);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn stats(&self) -> PoolStats {
        self.shared.counters.snapshot()
    }

    /// Another handle on this pool, not counted in `Shared::handles` (an `imap` feeder's):
    /// its drop ends nothing, and once the user's last handle is dropped (the pool
    /// terminated) its chunks are refused.
    fn uncounted_handle(&self) -> ThreadPool {
        ThreadPool { shared: self.shared.clone(), counted: false }
    }

    /// Queues a job; `streamed`: one of an `imap` counted in [`Shared::streams`], also
    /// taken after `close` while the channel is open.
    fn submit(&self, job: Job, streamed: bool) -> Result<(), PoolError> {
        if !self.shared.made_in.is_here() {
            // A fork child's copy: no thread of this process would ever run it.
            return Err(PoolError::Closed);
        }
        let sender = self.shared.sender.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(_), Some(error)) = (sender.as_ref(), self.shared.failed.get()) {
            drop(sender);
            // No thread can run it: it fails at once, as in a failed process pool. User code
            // (an error callback; the task, its function and arguments, dropped in the catch
            // too), as in `initializer_failed`: its panic came out of the caller's
            // `apply_async` (review166 L3).
            let Job { run, cancel } = job;
            let failed = std::panic::AssertUnwindSafe(move || {
                cancel(error.clone());
                drop(run);
            });
            if let Err(payload) = std::panic::catch_unwind(failed) {
                panics::drop_payload(payload);
            }
            return Ok(());
        }
        match sender.as_ref() {
            Some(tx)
                if match self.shared.state.load(Ordering::Acquire) {
                    RUNNING => true,
                    CLOSED => streamed,
                    _ => false,
                } =>
            {
                tx.send(job).map_err(|_| PoolError::Closed)
            }
            _ => Err(PoolError::Closed),
        }
    }

    /// Sends one chunk: `f` over `items`, its outcome to `sink` as chunk `index`.
    fn submit_chunk<A, R, F>(
        &self,
        f: &Arc<F>,
        items: Vec<A>,
        index: usize,
        sink: Arc<dyn Sink<R>>,
        streamed: bool,
    ) -> Result<(), PoolError>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        let f = f.clone();
        let run_sink = sink.clone();
        let pool = Arc::downgrade(&self.shared);
        let n = items.len();
        let cancelled_pool = Arc::downgrade(&self.shared);
        self.submit(
            Job {
                run: Box::new(move || {
                    if run_sink.cancelled() {
                        // The call failed: its queued chunks are dropped (running ones finish,
                        // a thread cannot be stopped).
                        if let Some(p) = pool.upgrade() {
                            p.counters.cancelled(n as u64);
                        }
                        return;
                    }
                    let name = std::thread::current().name().unwrap_or("ThreadPoolWorker").to_string();
                    let outcome: ChunkOutcome<R> = Ok(Chunk::from_results(
                        items.into_iter().map(|a| panics::catching(&name, || f(a)).map_err(TaskError::Panicked)),
                    ));
                    if let Some(p) = pool.upgrade() {
                        count(&p.counters, &outcome, n);
                    }
                    run_sink.deliver(index, outcome);
                }),
                cancel: Box::new(move |why| {
                    let outcome = Err(why);
                    if let Some(p) = cancelled_pool.upgrade() {
                        count::<R>(&p.counters, &outcome, n);
                    }
                    sink.deliver(index, outcome);
                }),
            },
            streamed,
        )
    }

    /// Runs `f(args)` on a worker and waits for the result (Python's `apply`).
    ///
    /// `f` is a [`ThreadTarget`]: a function or closure of one argument
    /// (`pool.apply(square, 4)`) or of several, which travel as a tuple
    /// (`pool.apply(add, (2, 3))` for `fn add(a: u32, b: u32)`), as with [`Pool::apply`](crate::Pool::apply).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ThreadPool;
    ///
    /// fn add(a: u64, b: u64) -> u64 {
    ///     a + b
    /// }
    ///
    /// let pool = ThreadPool::new(1)?;
    /// assert_eq!(pool.apply(|x: u64| x * x, 7)?, 49);
    /// assert_eq!(pool.apply(add, (2, 3))?, 5); // several arguments: a tuple
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn apply<A, R, F, M>(&self, f: F, args: A) -> Result<R, Error>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: ThreadTarget<A, M, Output = R>,
    {
        Ok(self.apply_async(f, args)?.get()?)
    }

    /// Starts `f(args)` on a worker (Python's `apply_async`); `f` as for
    /// [`ThreadPool::apply`].
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ThreadPool;
    ///
    /// let pool = ThreadPool::new(2)?;
    /// let pending = pool.apply_async(|x: u64| x * x, 8)?;
    /// let sum = pool.apply_async(|a: u64, b: u64, c: u64| a + b + c, (1, 2, 3))?;
    /// assert_eq!(pending.get()?, 64);
    /// assert_eq!(sum.get()?, 6);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn apply_async<A, R, F, M>(&self, f: F, args: A) -> Result<AsyncResult<R>, PoolError>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: ThreadTarget<A, M, Output = R>,
    {
        self.apply_async_with(f, args, ApplyOptions::new())
    }

    /// [`ThreadPool::apply_async`] with callbacks (a timeout is ignored: threads cannot be
    /// killed).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ApplyOptions, ThreadPool};
    ///
    /// let pool = ThreadPool::new(1)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let options = ApplyOptions::new().callback(move |r: &u64| tx.send(*r).unwrap());
    /// assert_eq!(pool.apply_async_with(|a: u64, b: u64| a * b, (9, 9), options)?.get()?, 81);
    /// assert_eq!(rx.recv().unwrap(), 81);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn apply_async_with<A, R, F, M>(
        &self,
        f: F,
        args: A,
        options: ApplyOptions<R>,
    ) -> Result<AsyncResult<R>, PoolError>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: ThreadTarget<A, M, Output = R>,
    {
        let (sink, slot) = ApplySink::new(options.callbacks);
        self.submit_chunk(&Arc::new(move |args: A| f.call_unpacked(args)), vec![args], 0, sink, false)?;
        Ok(AsyncResult::new(slot, OwnThread::for_result(&self.shared)))
    }

    /// Applies `f` to every item and returns the results in order (Python's `map`); the
    /// first item to fail (in time, not the lowest index, as in Python) ends the call with
    /// its error.
    ///
    /// A failed call does not keep the pool busy: its chunks not yet started are dropped
    /// (counted in [`PoolStats::tasks_cancelled`]); those running finish, since a thread
    /// cannot be stopped. The same holds for `map_async` and `starmap`.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ThreadPool;
    ///
    /// let pool = ThreadPool::new(2)?;
    /// assert_eq!(pool.map(|x: u64| x * x, 0..5)?, [0, 1, 4, 9, 16]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map<A, R, F>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<Vec<R>, Error>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        Ok(self.map_async_with(f, items, MapOptions::new())?.get()?)
    }

    /// [`ThreadPool::map`] with options (chunk size, progress bar).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{MapOptions, ThreadPool};
    ///
    /// let pool = ThreadPool::new(2)?;
    /// assert_eq!(pool.map_with(|x: u64| x * x, 0..100, MapOptions::new().chunksize(10))?.len(), 100);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map_with<A, R, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        options: MapOptions<R>,
    ) -> Result<Vec<R>, Error>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        Ok(self.map_async_with(f, items, options)?.get()?)
    }

    /// Starts a `map` (Python's `map_async`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ThreadPool;
    ///
    /// let pool = ThreadPool::new(2)?;
    /// let pending = pool.map_async(|x: u64| x * x, 0..4)?;
    /// assert_eq!(pending.get()?, [0, 1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map_async<A, R, F>(&self, f: F, items: impl IntoIterator<Item = A>) -> Result<MapResult<R>, PoolError>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        self.map_async_with(f, items, MapOptions::new())
    }

    /// [`ThreadPool::map_async`] with options (chunk size, callbacks, progress bar).
    /// An empty input runs no callback, as in Python (see [`MapOptions::callback`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{MapOptions, ThreadPool};
    ///
    /// let pool = ThreadPool::new(2)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let options = MapOptions::new().callback(move |all: &[u64]| tx.send(all.iter().sum::<u64>()).unwrap());
    /// assert_eq!(pool.map_async_with(|x: u64| x * x, 0..4, options)?.get()?, [0, 1, 4, 9]);
    /// assert_eq!(rx.recv().unwrap(), 14);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map_async_with<A, R, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        options: MapOptions<R>,
    ) -> Result<MapResult<R>, PoolError>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        let items: Vec<A> = items.into_iter().collect();
        let sizes = chunk_sizes(items.len(), self.shared.workers, options.chosen_chunksize()?);
        let progress = options.progress.then(|| Progress::new(Some(items.len())));
        let (sink, slot) = MapSink::new(sizes.len(), options.callbacks, progress);
        let f = Arc::new(f);
        let mut items = items.into_iter();
        for (index, size) in sizes.into_iter().enumerate() {
            let chunk: Vec<A> = items.by_ref().take(size).collect();
            self.submit_chunk(&f, chunk, index, sink.clone(), false)?;
        }
        Ok(AsyncResult::new(slot, OwnThread::for_result(&self.shared)))
    }

    /// Applies `f` to each item lazily, results in order (Python's `imap`). At most a few
    /// chunks per worker run ahead of the consumer, so `items` may be endless.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ThreadPool;
    ///
    /// let pool = ThreadPool::new(2)?;
    /// let first: Vec<u64> = pool.imap(|x: u64| x * x, 0..)?.take(4).collect::<Result<_, _>>()?;
    /// assert_eq!(first, [0, 1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap<A, R, F, I>(&self, f: F, items: I) -> Result<IMap<R>, PoolError>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.imap_with(f, items, MapOptions::new())
    }

    /// [`ThreadPool::imap`] with options (chunk size, look-ahead, progress bar).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{MapOptions, ThreadPool};
    ///
    /// let pool = ThreadPool::new(2)?;
    /// let results = pool.imap_with(|x: u64| x * x, 0..20, MapOptions::new().chunksize(5))?;
    /// assert_eq!(results.collect::<Result<Vec<_>, _>>()?.len(), 20);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap_with<A, R, F, I>(&self, f: F, items: I, options: MapOptions<R>) -> Result<IMap<R>, PoolError>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.stream(f, items, options, true)
    }

    /// Like [`ThreadPool::imap`], results in completion order (Python's `imap_unordered`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ThreadPool;
    ///
    /// let pool = ThreadPool::new(2)?;
    /// let mut all: Vec<u64> = pool.imap_unordered(|x: u64| x * x, 0..5)?.collect::<Result<_, _>>()?;
    /// all.sort_unstable();
    /// assert_eq!(all, [0, 1, 4, 9, 16]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap_unordered<A, R, F, I>(&self, f: F, items: I) -> Result<IMap<R>, PoolError>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.stream(f, items, MapOptions::new(), false)
    }

    /// [`ThreadPool::imap_unordered`] with options.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{MapOptions, ThreadPool};
    ///
    /// let pool = ThreadPool::new(2)?;
    /// let results = pool.imap_unordered_with(|x: u64| x * x, 0..20, MapOptions::new().chunksize(4))?;
    /// assert_eq!(results.collect::<Result<Vec<_>, _>>()?.len(), 20);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap_unordered_with<A, R, F, I>(&self, f: F, items: I, options: MapOptions<R>) -> Result<IMap<R>, PoolError>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.stream(f, items, options, false)
    }

    fn stream<A, R, F, I>(&self, f: F, items: I, options: MapOptions<R>, ordered: bool) -> Result<IMap<R>, PoolError>
    where
        A: Send + 'static,
        R: Send + 'static,
        F: Fn(A) -> R + Send + Sync + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        if self.shared.state.load(Ordering::Acquire) != RUNNING {
            return Err(PoolError::Closed);
        }
        let (chunksize, lookahead) = options.stream_window(self.shared.workers)?;
        let items = items.into_iter();
        let progress = options.progress.then(|| Progress::for_items(&items));
        let sink = StreamSink::new(ordered, progress);
        let feeder = ThreadFeeder {
            streamed: self.shared.stream_opened(),
            pool: self.uncounted_handle(),
            f: Arc::new(f),
            items: Input::new(items.into_iter()),
            chunksize,
            _types: std::marker::PhantomData,
        };
        Ok(IMap::new(sink, Box::new(feeder), OwnThread::for_result(&self.shared), lookahead))
    }

    /// Calls `f` with each tuple's elements as arguments, results in order (Python's
    /// `starmap`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ThreadPool;
    ///
    /// let pool = ThreadPool::new(2)?;
    /// assert_eq!(pool.starmap(|a: u64, b: u64| a + b, [(1, 2), (3, 4)])?, [3, 7]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap<Args, F>(&self, f: F, items: impl IntoIterator<Item = Args>) -> Result<Vec<F::Output>, Error>
    where
        Args: Send + 'static,
        F: StarFn<Args>,
        F::Output: Send + 'static,
    {
        self.starmap_with(f, items, MapOptions::new())
    }

    /// [`ThreadPool::starmap`] with options (chunk size, progress bar).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{MapOptions, ThreadPool};
    ///
    /// let pool = ThreadPool::new(2)?;
    /// let sums = pool.starmap_with(|a: u64, b: u64| a + b, (0..10).map(|i| (i, i)), MapOptions::new().chunksize(5))?;
    /// assert_eq!(sums[9], 18);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap_with<Args, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
        options: MapOptions<F::Output>,
    ) -> Result<Vec<F::Output>, Error>
    where
        Args: Send + 'static,
        F: StarFn<Args>,
        F::Output: Send + 'static,
    {
        Ok(self.starmap_async_with(f, items, options)?.get()?)
    }

    /// Starts a `starmap` (Python's `starmap_async`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ThreadPool;
    ///
    /// let pool = ThreadPool::new(2)?;
    /// let pending = pool.starmap_async(|a: u64, b: u64| a + b, [(1, 2), (3, 4)])?;
    /// assert_eq!(pending.get()?, [3, 7]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap_async<Args, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
    ) -> Result<MapResult<F::Output>, PoolError>
    where
        Args: Send + 'static,
        F: StarFn<Args>,
        F::Output: Send + 'static,
    {
        self.starmap_async_with(f, items, MapOptions::new())
    }

    /// [`ThreadPool::starmap_async`] with options (chunk size, callbacks, progress bar).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{MapOptions, ThreadPool};
    ///
    /// let pool = ThreadPool::new(2)?;
    /// let options = MapOptions::new().chunksize(1);
    /// assert_eq!(pool.starmap_async_with(|a: u64, b: u64| a + b, [(1, 2)], options)?.get()?, [3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap_async_with<Args, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
        options: MapOptions<F::Output>,
    ) -> Result<MapResult<F::Output>, PoolError>
    where
        Args: Send + 'static,
        F: StarFn<Args>,
        F::Output: Send + 'static,
    {
        self.map_async_with(move |args| f.call(args), items, options)
    }

    /// No more tasks; the threads exit once the queued ones are done (Python's `close`). An
    /// [`IMap`] made before goes on to its end; a `join` before its end cuts it.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ThreadPool;
    ///
    /// let pool = ThreadPool::new(2)?;
    /// let pending = pool.map_async(|x: u64| x * x, 0..4)?;
    /// pool.close();
    /// pool.join()?;
    /// assert_eq!(pending.get()?, [0, 1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&self) {
        let _ = self.shared.state.compare_exchange(RUNNING, CLOSED, Ordering::SeqCst, Ordering::SeqCst);
        // An `imap` made before goes on: the last to end closes the channel.
        self.shared.end_channel(false);
    }

    /// No more tasks; queued tasks fail with [`TaskError::Terminated`]; running tasks
    /// finish (threads cannot be killed).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ThreadPool;
    ///
    /// let pool = ThreadPool::new(1)?;
    /// pool.terminate();
    /// pool.join()?;
    /// assert!(pool.apply(|x: u64| x, 1).is_err()); // no more tasks
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn terminate(&self) {
        self.shared.state.store(TERMINATED, Ordering::SeqCst);
        self.shared.end_channel(true);
    }

    /// Waits for the threads to exit, after [`ThreadPool::close`] or
    /// [`ThreadPool::terminate`].
    ///
    /// # Errors
    ///
    /// [`PoolError::StillRunning`] before `close` or `terminate`;
    /// [`PoolError::JoinFromWorker`] from one of the pool's tasks (its thread cannot wait
    /// for itself), and nothing is joined.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{PoolError, ThreadPool};
    ///
    /// let pool = ThreadPool::new(2)?;
    /// assert!(matches!(pool.join(), Err(PoolError::StillRunning)));
    /// pool.close();
    /// pool.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join(&self) -> Result<(), PoolError> {
        if !self.shared.made_in.is_here() {
            // A fork child's copy: the threads are the parent's.
            return Ok(());
        }
        if self.shared.state.load(Ordering::Acquire) == RUNNING {
            return Err(PoolError::StillRunning);
        }
        // Before the lock: another thread's `join` holds it until every thread ended,
        // this one too, so a task waiting for it would wait for ever (review133 H1).
        if OwnThread::on_its_thread(&self.shared) {
            return Err(PoolError::JoinFromWorker);
        }
        let mut threads = self.shared.threads.lock().unwrap_or_else(|e| e.into_inner());
        // The `imap`s made before the `close` get no more chunks.
        self.shared.end_channel(true);
        let threads = std::mem::take(&mut *threads);
        for t in threads {
            let _ = t.join();
        }
        Ok(())
    }
}

impl Drop for ThreadPool {
    /// Terminates the pool (Python's `with ThreadPool() as p:` exit) and waits for the
    /// running tasks to finish. An `imap` of it that is still alive does not keep it: its
    /// queued chunks fail `Terminated` and it ends, as a `Pool`'s does. Dropped by one of
    /// its own tasks (which held the last handle), it waits for the other threads; the
    /// task's own thread ends after the task.
    fn drop(&mut self) {
        if self.counted && self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 && self.shared.made_in.is_here() {
            self.terminate();
            let threads = std::mem::take(&mut *self.shared.threads.lock().unwrap_or_else(|e| e.into_inner()));
            let me = std::thread::current().id();
            for t in threads.into_iter().filter(|t| t.thread().id() != me) {
                let _ = t.join();
            }
        }
    }
}

struct ThreadFeeder<A, R, F, I> {
    /// Counted in [`Shared::streams`] until its input ends, a chunk is refused, or it is
    /// dropped: its chunks are still taken after a `close`.
    streamed: bool,
    pool: ThreadPool,
    f: Arc<F>,
    items: Input<I>,
    chunksize: usize,
    _types: std::marker::PhantomData<fn(A) -> R>,
}

impl<A, R, F, I> ThreadFeeder<A, R, F, I> {
    /// This `imap` sends nothing more: after a `close`, the last one ends the channel.
    fn end_stream(&mut self) {
        if std::mem::take(&mut self.streamed) {
            self.pool.shared.stream_ended();
        }
    }
}

impl<A, R, F, I> Drop for ThreadFeeder<A, R, F, I> {
    fn drop(&mut self) {
        self.end_stream();
    }
}

impl<A, R, F, I> Feeder<R> for ThreadFeeder<A, R, F, I>
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> R + Send + Sync + 'static,
    I: Iterator<Item = A> + Send,
{
    fn feed(&mut self, index: usize, sink: &Arc<StreamSink<R>>) -> Option<usize> {
        let chunk: Vec<A> = self.items.chunk(self.chunksize);
        if chunk.is_empty() {
            self.end_stream();
            return self.items.end(index, sink);
        }
        let n = chunk.len();
        sink.expect(index, n);
        let sink_dyn = sink.clone() as Arc<dyn Sink<R>>;
        if self.pool.submit_chunk(&self.f, chunk, index, sink_dyn, self.streamed).is_err() {
            // The pool takes no more: this chunk's items are the last the iteration yields.
            sink.deliver(index, Err(TaskError::Terminated));
            self.items.stop();
            self.end_stream();
        }
        Some(n)
    }
}
