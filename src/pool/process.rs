//! `Pool`: worker processes that never hang. The public API; the work goes to an
//! [`Engine`]: the local supervisor (`supervisor.rs`, the workers in `worker.rs`) or, with
//! the feature `cluster`, worker nodes through Redis (`crate::cluster`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::engine::{Engine, chunk_job};
use super::error::{PoolError, TaskError};
use super::options::{ApplyOptions, MapOptions, chunk_sizes};
use super::progress::Progress;
use super::result::{ApplySink, AsyncResult, Feeder, Helper, IMap, Input, MapResult, MapSink, Sink, StreamSink};
use super::star::{Argument, StarFn};
use super::stats::PoolStats;
use super::supervisor::{Config, EncodeArgs, Inner};
use super::worker::{init_runner, map_runner, star_runner, target_runner};
use crate::codec;
use crate::error::Error;
use crate::process::{StartMethod, Target};
use crate::sys::{self, Packed, Stateless};

/// Packs a task's function for the workers, refusing one they could not locate (a function
/// from a shared library) before anything is queued.
pub(crate) fn pack_task<A, R>(f: fn(A) -> R) -> Result<Packed, PoolError>
where
    A: DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    sys::pack_checked(f, map_runner::<A, R>).map_err(|_| PoolError::NotInExecutable)
}

/// Packs `apply`'s target as `Process::new` does: a function pointer `fn(A) -> R` (one
/// chosen at run time) by its address, as [`pack_task`]; a function or a closure that
/// captures nothing, of one argument or several, by its type, as `starmap`'s.
#[track_caller]
fn pack_target<A, M, F>(f: F) -> Result<Packed, PoolError>
where
    A: DeserializeOwned + 'static,
    F: Target<A, M>,
    F::Output: Serialize + DeserializeOwned + 'static,
{
    match crate::process::as_pointer(&f, "a pool's function") {
        Some(pointer) => pack_task(pointer),
        None => Ok(sys::pack_runner(target_runner::<A, M, F>)),
    }
}

/// A pool of worker processes (Python's `multiprocessing.Pool`), which never hangs.
///
/// Tasks are functions (or non-capturing closures) of serde types; arguments and results
/// may hold handles (queues, locks, values). A closure must capture nothing; zero-sized
/// values it captures are made again in the workers: never capture a proof token (see
/// [`Target`](crate::Target)). A task that panics fails with its panic; a
/// worker that dies (killed, crashed, out of memory) fails the task it was running with
/// [`TaskError::WorkerLost`] and is replaced; a task past its timeout has its worker killed
/// and fails with [`TaskError::TimedOut`]. A `map` that failed stops its other tasks (see
/// [`Pool::map`]). Dropping the pool terminates it.
///
/// A copy that a `Fork` child got with its parent's memory (a pool kept in a static) is
/// closed in the child: its calls fail with [`PoolError::Closed`], its `AsyncResult`s and
/// `imap`s end with [`TaskError::Terminated`], and dropping it stops nothing; the workers,
/// and their results, stay the parent's.
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
    inner: Arc<dyn Engine>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.inner.workers())
            .field("running", &self.inner.running())
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
    #[cfg(feature = "cluster")]
    cluster: Option<String>,
    #[cfg(feature = "cluster")]
    cluster_options: crate::cluster::ClusterOptions,
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
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let pool = multiproc::Pool::builder().processes(2).build()?;
    /// assert_eq!(pool.processes(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// `f(args)` runs once in each worker before its first task (Python's `initializer`
    /// and `initargs`). A worker whose initializer panics exits and is replaced; after
    /// twice the pool's size in a row (no initializer returning between, in any worker: the
    /// answers of workers that started earlier do not end the run, so one that fails in
    /// some workers only ends so too), the pool's tasks fail with the initializer's panic
    /// ([`TaskError::Panicked`](crate::TaskError::Panicked)) instead of looping.
    /// Likewise when workers cannot start at all (ten in a row, or twice the pool's size,
    /// end before they take a task or answer, by an exit or a crash of their own: a worker
    /// killed by `SIGKILL`, `SIGTERM`, `SIGINT` or `SIGHUP` is replaced and not counted;
    /// those that die inside the initializer, by an `exit`, an `abort` or a segfault there,
    /// count in a run that only an initializer that returns ends, as its panics do): the
    /// tasks fail with
    /// [`TaskError::WorkersCannotStart`](crate::TaskError::WorkersCannotStart), which says
    /// how the last of them ended (its own failure text, a panic of the `child_init`, its
    /// exit code or signal), where Python's pool would start new ones for ever.
    ///
    /// Either way the pool has failed for good: it starts no more workers, and every task
    /// given to it since fails at once with the same error (`apply` and `map` return it,
    /// an `AsyncResult` and an error callback get it, an `imap` yields it); `close` or
    /// `terminate`, then `join`, end it as any pool.
    ///
    /// The pool's [`timeout`](Self::timeout) bounds the initializer too, counted from its
    /// start in each worker: a worker whose initializer runs longer is killed and replaced,
    /// and the tasks waiting for it go to another worker. Such kills count in a run of their
    /// own, which only an initializer that returns ends (in any worker, a replacement too;
    /// not the answers of workers that started earlier): at ten in a row, or twice the
    /// pool's size, the pool fails with `WorkersCannotStart`, saying that the initializer
    /// ran past the timeout. So an initializer that never returns fails the pool's tasks
    /// rather than holding them for ever, and one that hangs in some workers only (one
    /// holds what the others wait for) fails the pool too, rather than be killed and
    /// started again once per timeout for ever while the pool runs short of workers; one
    /// that hangs now and then is retried. A call's own timeout
    /// ([`ApplyOptions::timeout`](crate::ApplyOptions::timeout),
    /// [`MapOptions::timeout`](crate::MapOptions::timeout)) bounds only its tasks: an
    /// initializer slower than the tasks' limit wants a pool without a timeout and the limit
    /// given per call. In a pool without a timeout nothing bounds the initializer, as in
    /// Python: one that never returns holds its worker, and the tasks sent to it wait, until
    /// `terminate` (they end [`Terminated`](crate::TaskError::Terminated)); `join` after a
    /// `close` waits for it.
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// fn greet(word: String) {
    ///     let _ = word; // e.g. open a connection, load a model
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::builder().processes(1).initializer(greet, "ready".to_string()).build()?;
    /// assert_eq!(pool.apply(square, 3)?, 9);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// fn pid(_: u32) -> u32 {
    ///     std::process::id()
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::builder().processes(1).max_tasks_per_child(2).build()?;
    /// // Each chunk of one item is a task: the worker is replaced along the way.
    /// let pids = pool.map_with(pid, 0..4, multiproc::MapOptions::new().chunksize(1))?;
    /// assert!(pids.iter().collect::<std::collections::HashSet<_>>().len() >= 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// How the workers are started (default: [`get_start_method`](crate::get_start_method)).
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// use multiproc::{Pool, StartMethod};
    ///
    /// let pool = Pool::builder().processes(1).start_method(StartMethod::Spawn).build()?;
    /// assert_eq!(pool.apply(square, 4)?, 16);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    /// A task (chunk) running longer has its worker killed and replaced, and fails with
    /// [`TaskError::TimedOut`]. Calls may set their own with their options. It bounds each
    /// worker's [`initializer`](Self::initializer) too (a call's own timeout does not).
    ///
    /// # Examples
    ///
    /// ```
    /// fn sleep_ms(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// multiproc::init();
    /// use std::time::Duration;
    /// use multiproc::{Error, Pool, TaskError};
    ///
    /// let pool = Pool::builder().processes(1).timeout(Duration::from_millis(200)).build()?;
    /// assert!(matches!(pool.apply(sleep_ms, 60_000), Err(Error::Task(TaskError::TimedOut(_)))));
    /// assert_eq!(pool.apply(sleep_ms, 1)?, 1); // a new worker took its place
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The tasks go to worker nodes through the Redis server at `url`, not to local
    /// processes (feature `cluster`): a node is the same program started with
    /// `MULTIPROC_WORKER=url` ([`cluster::WORKER_ENV`](crate::cluster::WORKER_ENV)), on any
    /// machine that reaches Redis. The whole API is unchanged. Every task resolves once:
    /// a node killed mid-task has its tasks taken back after the
    /// [lease](crate::cluster::ClusterOptions::lease) and run elsewhere, a task whose
    /// nodes keep dying fails with [`TaskError::WorkerLost`], a task past its timeout is
    /// killed on its node and fails with [`TaskError::TimedOut`], a node running another
    /// build refuses the task ([`TaskError::WrongBuild`]), a node whose cluster key is not
    /// the driver's refuses it unread ([`TaskError::Unauthenticated`]: every task carries
    /// an HMAC under the [key](crate::cluster::ClusterOptions::authkey), the user's key
    /// file by default), and Redis gone for longer than
    /// the [timeout](crate::cluster::ClusterOptions::timeout) fails every unfinished task
    /// with [`TaskError::Cluster`]. `processes` is then the number of workers expected
    /// over all nodes (for chunk sizes and look-ahead); `initializer`,
    /// `max_tasks_per_child` and `start_method` are refused ([`PoolError::NotForCluster`]).
    /// Arguments that hold a handle of the local family (a local `Queue`, `Lock`...) are
    /// refused at submission ([`PoolError::Codec`]).
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
    /// multiproc::init(); // with MULTIPROC_WORKER set, this program is a node from here on
    /// let pool = Pool::builder().cluster("redis://redis.example:6379/0").processes(8).build()?;
    /// assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[cfg(feature = "cluster")]
    pub fn cluster(mut self, url: impl Into<String>) -> Self {
        self.cluster = Some(url.into());
        self
    }

    /// How a [cluster](PoolBuilder::cluster) pool treats its tasks: lease, deliveries,
    /// tasks in flight, Redis timeout.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use multiproc::Pool;
    /// use multiproc::cluster::ClusterOptions;
    ///
    /// multiproc::init();
    /// let options = ClusterOptions::new().lease(Duration::from_secs(30)).timeout(Duration::from_secs(10));
    /// let pool = Pool::builder().cluster("redis://redis.example:6379/0").cluster_options(options).build()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[cfg(feature = "cluster")]
    pub fn cluster_options(mut self, options: crate::cluster::ClusterOptions) -> Self {
        self.cluster_options = options;
        self
    }

    /// Starts the workers.
    ///
    /// A [`StartMethod::Fork`](crate::StartMethod::Fork) pool's workers, and the zygote that
    /// forks them, are copies of this process as of `build`: they hold every descriptor it
    /// had open then until the pool is joined or dropped (a pipe's write end closed later
    /// gives its reader no end of file meanwhile, a listening socket stays bound). They are
    /// not closed for you, since the copied memory may own them; build the pool before
    /// opening such descriptors, or use `ForkServer` or `Spawn`, whose workers inherit none.
    ///
    /// # Errors
    ///
    /// [`PoolError::NoProcesses`] for `processes(0)`, [`PoolError::NoTasksPerChild`] for
    /// `max_tasks_per_child(0)` (Python's `ValueError`s), [`PoolError::TooManyWorkers`] for
    /// more workers than the system can run; [`Error::ForkWithThreads`] for a
    /// [`StartMethod::Fork`](crate::StartMethod::Fork) pool built beside other threads
    /// (unless [`allow_fork_with_threads`](crate::allow_fork_with_threads) was called: a
    /// `Fork` pool forks a private fork server, its zygote, here, which forks every worker
    /// and replacement as a copy of this process as of `build`; killed from outside, it is
    /// not started again, since its memory is this process's as of `build`: the pool's
    /// later replacements fail with [`Error::StartMethodUnavailable`], unlike a
    /// [`ForkServer`](crate::StartMethod::ForkServer) pool's, whose fork server is started
    /// again); otherwise when multiproc is
    /// not initialized, the initializer's arguments do not encode, or a worker cannot be
    /// started (a `ForkServer` pool's fork server stopped, by `SIGSTOP` or a debugger:
    /// [`Error::StartMethodUnavailable`]). A worker's start whose fork server died during
    /// it is made again, here and for replacements, before it counts as failed (the next
    /// try starts a new server), as every fork-server start of the main process is.
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::builder().processes(2).build()?;
    /// assert_eq!(pool.map(square, [1, 2, 3])?, [1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn build(self) -> Result<Pool, Error> {
        if self.processes == Some(0) {
            return Err(PoolError::NoProcesses.into());
        }
        if self.max_tasks_per_child == Some(0) {
            return Err(PoolError::NoTasksPerChild.into());
        }
        #[cfg(feature = "cluster")]
        if let Some(url) = &self.cluster {
            if self.initializer.is_some() {
                return Err(PoolError::NotForCluster("initializer").into());
            }
            if self.max_tasks_per_child.is_some() {
                return Err(PoolError::NotForCluster("max_tasks_per_child").into());
            }
            if self.start_method.is_some() {
                return Err(PoolError::NotForCluster("start_method").into());
            }
            let workers = self.processes.unwrap_or_else(crate::cpu_count);
            let inner = crate::cluster::pool::Driver::start(url, workers, self.timeout, self.cluster_options)?;
            return Ok(Pool { inner });
        }
        let workers = self.processes.unwrap_or_else(crate::cpu_count);
        if let Some((packed, encode)) = &self.initializer {
            packed.map_err(|_| PoolError::NotInExecutable)?;
            // Arguments that do not encode are an error now, not in every worker.
            let _ = encode()?;
        }
        // A Fork pool's workers, the first ones and their replacements, are forked by its
        // zygote, forked here on the building thread (where Fork is allowed): a replacement
        // is not forked on the pool's thread, beside others.
        let method = self.start_method.unwrap_or_else(crate::get_start_method);
        let zygote = if method == crate::StartMethod::Fork {
            Some(std::sync::Arc::new(crate::process::Zygote::start()?))
        } else {
            None
        };
        let initializer = self.initializer.map(|(packed, encode)| (packed.expect("checked above"), encode));
        let inner = Inner::start(Config {
            workers,
            initializer,
            max_tasks: self.max_tasks_per_child,
            method: self.start_method,
            timeout: self.timeout,
            remote_results: false,
            zygote,
        })?;
        Ok(Pool { inner })
    }
}

impl Pool {
    /// A pool of `processes` workers.
    ///
    /// # Errors
    ///
    /// [`PoolError::NoProcesses`] for zero (Python's `ValueError`),
    /// [`PoolError::TooManyWorkers`] for more than the system can run; otherwise when
    /// multiproc is not initialized or a worker cannot be started.
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// assert_eq!(pool.apply(square, 5)?, 25);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(processes: usize) -> Result<Pool, Error> {
        Self::builder().processes(processes).build()
    }

    /// A builder with Python's options: `processes`, `initializer`,
    /// `max_tasks_per_child`, plus `start_method` and a task `timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let pool = multiproc::Pool::builder().processes(2).build()?;
    /// assert_eq!(pool.processes(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            initializer: None,
            max_tasks_per_child: None,
            start_method: None,
            timeout: None,
            #[cfg(feature = "cluster")]
            cluster: None,
            #[cfg(feature = "cluster")]
            cluster_options: crate::cluster::ClusterOptions::new(),
        }
    }

    /// The number of workers.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(3)?;
    /// assert_eq!(pool.processes(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn processes(&self) -> usize {
        self.inner.workers()
    }

    /// The process ids of the current workers (they change as workers are replaced); none
    /// for a cluster pool, whose workers run on the nodes.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// let pids = pool.pids();
    /// assert!(pids.len() <= 2 && !pids.contains(&std::process::id()));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pids(&self) -> Vec<u32> {
        self.inner.pids()
    }

    /// What the pool has done so far.
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// pool.map(square, 0..10)?;
    /// assert_eq!(pool.stats().tasks_done, 10);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn stats(&self) -> PoolStats {
        self.inner.counters().snapshot()
    }

    fn helper(&self) -> Option<Arc<dyn Helper>> {
        self.inner.helps().then(|| self.inner.clone() as Arc<dyn Helper>)
    }

    /// Runs `f(args)` in a worker and waits for the result (Python's `apply`).
    ///
    /// `f` is a [`Target`], as for [`Process::new`](crate::Process::new): a function or a
    /// closure that captures nothing, of one argument (`pool.apply(square, 4)`) or of
    /// several, which travel as a tuple (`pool.apply(add, (2, 3))` for `fn add(a: u32, b:
    /// u32)`, Python's `apply(add, (2, 3))`), or a function pointer of one argument.
    ///
    /// # Panics
    ///
    /// When `f` is a closure that captures exactly a pointer's worth of `Copy` state (as
    /// `Process::new`); a closure that captures anything else does not compile.
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// fn add(a: u64, b: u64) -> u64 {
    ///     a + b
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// assert_eq!(pool.apply(square, 7)?, 49);
    /// assert_eq!(pool.apply(add, (2, 3))?, 5); // several arguments: a tuple
    /// assert_eq!(pool.apply(|a: u64, b: u64, c: u64| a * b * c, (2, 3, 4))?, 24);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[track_caller]
    pub fn apply<A, R, F, M>(&self, f: F, args: A) -> Result<R, Error>
    where
        A: Argument,
        R: Serialize + DeserializeOwned + Send + 'static,
        F: Target<A, M, Output = R>,
    {
        Ok(self.apply_async(f, args)?.get()?)
    }

    /// Starts `f(args)` in a worker (Python's `apply_async`); `f` as for [`Pool::apply`]:
    /// the arguments of a function of several travel as a tuple.
    ///
    /// # Panics
    ///
    /// As [`Pool::apply`].
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// fn greet(name: String, times: usize) -> String {
    ///     format!("hello {name} ").repeat(times)
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// let pending = pool.apply_async(square, 8)?;
    /// let greeting = pool.apply_async(greet, ("bob".to_string(), 2))?;
    /// // ... other work here ...
    /// assert_eq!(pending.get()?, 64);
    /// assert_eq!(greeting.get()?, "hello bob hello bob ");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[track_caller]
    pub fn apply_async<A, R, F, M>(&self, f: F, args: A) -> Result<AsyncResult<R>, PoolError>
    where
        A: Argument,
        R: Serialize + DeserializeOwned + Send + 'static,
        F: Target<A, M, Output = R>,
    {
        self.apply_async_with(f, args, ApplyOptions::new())
    }

    /// [`Pool::apply_async`] with callbacks and a timeout.
    ///
    /// # Panics
    ///
    /// As [`Pool::apply`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::ApplyOptions;
    ///
    /// fn add(a: u64, b: u64) -> u64 {
    ///     a + b
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let options = ApplyOptions::new().timeout(Duration::from_secs(60)).callback(move |r: &u64| tx.send(*r).unwrap());
    /// assert_eq!(pool.apply_async_with(add, (40, 41), options)?.get()?, 81);
    /// assert_eq!(rx.recv().unwrap(), 81);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[track_caller]
    pub fn apply_async_with<A, R, F, M>(
        &self,
        f: F,
        args: A,
        options: ApplyOptions<R>,
    ) -> Result<AsyncResult<R>, PoolError>
    where
        A: Argument,
        R: Serialize + DeserializeOwned + Send + 'static,
        F: Target<A, M, Output = R>,
    {
        let call = pack_target(f)?;
        let (sink, slot) = ApplySink::new(options.callbacks);
        let job = chunk_job(&*self.inner, call, &[args], 0, options.timeout, sink)?;
        self.inner.submit(job)?;
        Ok(AsyncResult::new(slot, self.helper()))
    }

    /// Applies `f` to every item in the workers, results in order (Python's `map`). The
    /// items go in chunks of Python's automatic size, the last ones smaller down to one item
    /// so the workers finish together; the first item to fail (in time, not the lowest
    /// index: Python's `MapResult` too) ends the call with its error.
    ///
    /// A failed call does not keep the pool busy (Python's does): its chunks not yet
    /// started are dropped, and a chunk still running 100 ms after the failure has its
    /// worker killed and replaced, as a timeout does (so a task of a failed `map` may be
    /// stopped part-way). [`PoolStats::tasks_cancelled`] counts these items. A call refused
    /// at submission (a chunk that cannot be encoded, or above a cluster pool's bound) fails
    /// so too: the chunks submitted before the refused one are cancelled. The same holds
    /// for `map_async`, `starmap` and their forms with options.
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>, Error>
    where
        A: Argument,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok(self.map_async_with(f, items, MapOptions::new())?.get()?)
    }

    /// [`Pool::map`] with options (chunk size, timeout, progress bar).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::MapOptions;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// assert_eq!(pool.map_with(square, 0..100, MapOptions::new().chunksize(10))?.len(), 100);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map_with<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        options: MapOptions<R>,
    ) -> Result<Vec<R>, Error>
    where
        A: Argument,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok(self.map_async_with(f, items, options)?.get()?)
    }

    /// Starts a `map` (Python's `map_async`).
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// let pending = pool.map_async(square, 0..4)?;
    /// assert_eq!(pending.get()?, [0, 1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map_async<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<MapResult<R>, PoolError>
    where
        A: Argument,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.map_async_with(f, items, MapOptions::new())
    }

    /// [`Pool::map_async`] with options (chunk size, callbacks, timeout, progress bar).
    /// An empty input runs no callback, as in Python (see [`MapOptions::callback`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::MapOptions;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let options = MapOptions::new().callback(move |all: &[u64]| tx.send(all.iter().sum::<u64>()).unwrap());
    /// assert_eq!(pool.map_async_with(square, 0..4, options)?.get()?, [0, 1, 4, 9]);
    /// assert_eq!(rx.recv().unwrap(), 14);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn map_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        options: MapOptions<R>,
    ) -> Result<MapResult<R>, PoolError>
    where
        A: Argument,
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
        let chosen = options.chosen_chunksize()?;
        if chosen == Some(1) && items.len() > 1 && !options.progress && self.inner.claims(options.timeout) {
            // No message per task: the workers claim the items from one table.
            let (sink, slot) = MapSink::new(super::claims::pieces(items.len()), options.callbacks, None);
            super::claims::submit(&*self.inner, call, &items, sink)?;
            return Ok(AsyncResult::new(slot, self.helper()));
        }
        let sizes = chunk_sizes(items.len(), self.inner.workers(), chosen);
        let progress = options.progress.then(|| Progress::new(Some(items.len())));
        let (sink, slot) = MapSink::new(sizes.len(), options.callbacks, progress);
        let mut rest = &items[..];
        for (index, size) in sizes.into_iter().enumerate() {
            let (chunk, after) = rest.split_at(size);
            rest = after;
            let submitted = chunk_job(&*self.inner, call, chunk, index, options.timeout, sink.clone())
                .and_then(|job| self.inner.submit(job));
            if let Err(e) = submitted {
                // The call fails whole: the chunks already submitted are cancelled
                // (review96 L9: a cluster task refused for its size left the chunks before
                // it to run, their results dropped). A cluster pool withdraws them from the
                // stream; a local pool drops those still pending and takes back those
                // queued in a worker's inbox (review108 L1: they ran, counted done, their
                // results dropped); the one a worker has started goes on, and is stopped
                // past the cancellation's grace, as any cancelled chunk.
                sink.abandon(index);
                self.inner.cancelled_outside();
                return Err(e);
            }
        }
        Ok(AsyncResult::new(slot, self.helper()))
    }

    /// Applies `f` lazily, results in order (Python's `imap`): at most a few chunks per
    /// worker run ahead of the consumer, so `items` may be endless.
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// // An endless input: only what is taken is computed (and a little ahead).
    /// let first: Vec<u64> = pool.imap(square, 0..)?.take(4).collect::<Result<_, _>>()?;
    /// assert_eq!(first, [0, 1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<IMap<R>, PoolError>
    where
        A: Argument,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.stream(pack_task(f)?, items.into_iter(), MapOptions::new(), true)
    }

    /// [`Pool::imap`] with options (chunk size, look-ahead, timeout, progress bar).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::MapOptions;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// let results = pool.imap_with(square, 0..20, MapOptions::new().chunksize(5).lookahead(2))?;
    /// assert_eq!(results.collect::<Result<Vec<_>, _>>()?.len(), 20);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap_with<A, R, I>(&self, f: fn(A) -> R, items: I, options: MapOptions<R>) -> Result<IMap<R>, PoolError>
    where
        A: Argument,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.stream(pack_task(f)?, items.into_iter(), options, true)
    }

    /// Like [`Pool::imap`], results in completion order (Python's `imap_unordered`).
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// let mut all: Vec<u64> = pool.imap_unordered(square, 0..5)?.collect::<Result<_, _>>()?;
    /// all.sort_unstable();
    /// assert_eq!(all, [0, 1, 4, 9, 16]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap_unordered<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<IMap<R>, PoolError>
    where
        A: Argument,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'static,
    {
        self.stream(pack_task(f)?, items.into_iter(), MapOptions::new(), false)
    }

    /// [`Pool::imap_unordered`] with options.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::MapOptions;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// let results = pool.imap_unordered_with(square, 0..20, MapOptions::new().chunksize(4))?;
    /// assert_eq!(results.collect::<Result<Vec<_>, _>>()?.len(), 20);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn imap_unordered_with<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        options: MapOptions<R>,
    ) -> Result<IMap<R>, PoolError>
    where
        A: Argument,
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
        A: Argument,
        R: DeserializeOwned + Send + 'static,
        It: Iterator<Item = A> + Send + 'static,
    {
        if !self.inner.running() {
            return Err(PoolError::Closed);
        }
        let (chunksize, lookahead) = options.stream_window(self.inner.workers())?;
        let progress = options.progress.then(|| Progress::for_items(&items));
        let sink = StreamSink::new(ordered, progress);
        let feeder = PoolFeeder {
            streamed: self.inner.stream_opened(),
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
    ///
    /// # Examples
    ///
    /// ```
    /// fn add(a: u64, b: u64) -> u64 {
    ///     a + b
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// assert_eq!(pool.starmap(add, [(1, 2), (3, 4)])?, [3, 7]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap<Args, F>(&self, f: F, items: impl IntoIterator<Item = Args>) -> Result<Vec<F::Output>, Error>
    where
        Args: Argument,
        F: StarFn<Args> + Stateless<Args>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok(self.starmap_async_with(f, items, MapOptions::new())?.get()?)
    }

    /// [`Pool::starmap`] with options (chunk size, timeout, progress bar).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::MapOptions;
    ///
    /// fn add(a: u64, b: u64) -> u64 {
    ///     a + b
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// let sums = pool.starmap_with(add, (0..10).map(|i| (i, i)), MapOptions::new().chunksize(5))?;
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
        Args: Argument,
        F: StarFn<Args> + Stateless<Args>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        Ok(self.starmap_async_with(f, items, options)?.get()?)
    }

    /// Starts a `starmap` (Python's `starmap_async`).
    ///
    /// # Examples
    ///
    /// ```
    /// fn add(a: u64, b: u64) -> u64 {
    ///     a + b
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// let pending = pool.starmap_async(add, [(1, 2), (3, 4)])?;
    /// assert_eq!(pending.get()?, [3, 7]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap_async<Args, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
    ) -> Result<MapResult<F::Output>, PoolError>
    where
        Args: Argument,
        F: StarFn<Args> + Stateless<Args>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        self.starmap_async_with(f, items, MapOptions::new())
    }

    /// [`Pool::starmap_async`] with options.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::MapOptions;
    ///
    /// fn add(a: u64, b: u64) -> u64 {
    ///     a + b
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// let options = MapOptions::new().timeout(Duration::from_secs(60));
    /// assert_eq!(pool.starmap_async_with(add, [(1, 2)], options)?.get()?, [3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn starmap_async_with<Args, F>(
        &self,
        f: F,
        items: impl IntoIterator<Item = Args>,
        options: MapOptions<F::Output>,
    ) -> Result<MapResult<F::Output>, PoolError>
    where
        Args: Argument,
        F: StarFn<Args> + Stateless<Args>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        let _ = f;
        self.map_packed(sys::pack_runner(star_runner::<Args, F>), items.into_iter().collect(), options)
    }

    /// No more tasks; the workers exit once the submitted ones are done (Python's
    /// `close`).
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// let pending = pool.map_async(square, 0..4)?;
    /// pool.close(); // no more tasks; the submitted ones finish
    /// pool.join()?;
    /// assert_eq!(pending.get()?, [0, 1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// An [`IMap`] made before goes on to its end (but a cluster pool's); a `join` before
    /// its end cuts it (see [`IMap`]).
    pub fn close(&self) {
        self.inner.close();
    }

    /// Stops at once: the workers are killed and every unfinished task fails with
    /// [`TaskError::Terminated`] (Python's `terminate`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::TaskError;
    ///
    /// fn sleep_ms(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// let pending = pool.apply_async(sleep_ms, 60_000)?;
    /// pool.terminate();
    /// pool.join()?;
    /// assert!(matches!(pending.get(), Err(TaskError::Terminated)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn terminate(&self) {
        self.inner.terminate();
    }

    /// Waits for the workers to exit, after [`Pool::close`] or [`Pool::terminate`].
    ///
    /// # Errors
    ///
    /// [`PoolError::StillRunning`] before `close` or `terminate` (Python's `ValueError`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::PoolError;
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(2)?;
    /// assert!(matches!(pool.join(), Err(PoolError::StillRunning)));
    /// pool.close();
    /// pool.join()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn join(&self) -> Result<(), PoolError> {
        self.inner.join()
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
    inner: Arc<dyn Engine>,
    call: Packed,
    items: Input<It>,
    chunksize: usize,
    timeout: Option<Duration>,
    /// Counted by the engine ([`Engine::stream_opened`]) until its input ends, a chunk is
    /// refused, or it is dropped: its chunks are still taken after a `close`.
    streamed: bool,
}

impl<It> PoolFeeder<It> {
    /// This `imap` sends nothing more: the engine need not keep its workers for it.
    fn end_stream(&mut self) {
        if std::mem::take(&mut self.streamed) {
            self.inner.stream_ended();
        }
    }
}

impl<It> Drop for PoolFeeder<It> {
    fn drop(&mut self) {
        self.end_stream();
    }
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
            self.end_stream();
            return self.items.end(index, sink);
        }
        sink.expect(index, chunk.len());
        let sink_dyn: Arc<dyn Sink<R>> = sink.clone();
        // A chunk refused at submission (a cluster pool's task above its size limit) is
        // refused as one its arguments could not be encoded for.
        let streamed = self.streamed;
        match chunk_job(&*self.inner, self.call, &chunk, index, self.timeout, sink_dyn)
            .and_then(|job| if streamed { self.inner.submit_streamed(job) } else { self.inner.submit(job) })
        {
            Ok(()) => {}
            Err(PoolError::Codec(e)) => sink.deliver(index, Err(TaskError::Codec(e))),
            // The pool takes no more: this chunk's items are the last the iteration yields.
            Err(_) => {
                sink.deliver(index, Err(TaskError::Terminated));
                self.items.stop();
                self.end_stream();
            }
        }
        Some(chunk.len())
    }
}
