//! [`get_context`]: the crate's constructors bound to one start method (Python's
//! `multiprocessing.get_context(method)`).
//!
//! A thin layer: what starts processes ([`Process`], [`Pool`], [`Manager`]) gets the
//! context's start method set on its builder; every other constructor is forwarded as is,
//! since a queue or a lock made in any context serves every process of the family. It sits
//! below every concept module (it uses `pool` and `manager`), so it is a module of its own
//! rather than part of `process`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::manager::{Manager, ManagerBuilder, ManagerError};
use crate::pool::{Pool, PoolBuilder};
use crate::process::{Process, StartMethod};
use crate::queue::{Connection, JoinableQueue, Pipe, Queue, SimpleQueue};
use crate::shared::{Array, Value};
use crate::shm::ShmSafe;
use crate::sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore};

/// The crate's constructors bound to one start method: its processes, pool workers and
/// manager servers start with it, whatever the family's default
/// ([`set_start_method`](crate::set_start_method)) is. Made by [`get_context`]; cheap to
/// copy.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{StartMethod, get_context};
///
/// fn double(x: u32) -> u32 {
///     x * 2
/// }
///
/// multiproc::init();
/// let spawn = get_context(Some(StartMethod::Spawn));
/// let pool = spawn.pool(2)?; // spawned workers
/// assert_eq!(pool.map(double, vec![1, 2, 3])?, [2, 4, 6]);
/// let q = spawn.queue::<u32>()?; // an ordinary queue
/// let child = spawn.process(double, 21).start()?; // a spawned child
/// q.put(child.join()?)?;
/// assert_eq!(q.get()?, 42);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

/// A [`Context`] bound to `method`, or to the family's start method when `None`
/// ([`get_start_method`](crate::get_start_method), read now). Python's
/// `multiprocessing.get_context(method)`; unlike
/// [`set_start_method`](crate::set_start_method), it changes nothing for the rest of the
/// program, so one pool can use spawn while everything else uses the fork server.
///
/// # Examples
///
/// ```
/// use multiproc::{StartMethod, get_context};
///
/// assert_eq!(get_context(Some(StartMethod::Spawn)).start_method(), StartMethod::Spawn);
/// assert_eq!(get_context(None).start_method(), multiproc::get_start_method());
/// ```
#[doc(alias = "multiprocessing.get_context")]
pub fn get_context(method: Option<StartMethod>) -> Context {
    Context { method: method.unwrap_or_else(crate::process::get_start_method) }
}

impl Context {
    /// The start method of this context (Python's `ctx.get_start_method()`).
    ///
    /// ```
    /// use multiproc::{StartMethod, get_context};
    /// assert_eq!(get_context(Some(StartMethod::Fork)).start_method().name(), "fork");
    /// ```
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A process that will run `target(args)`, started with this context's method
    /// (Python's `ctx.Process`): [`Process::new`] then
    /// [`start_method`](Process::start_method).
    ///
    /// ```no_run
    /// use multiproc::{StartMethod, get_context};
    ///
    /// multiproc::init();
    /// let child = get_context(Some(StartMethod::Spawn)).process(|x: u8| x + 1, 1).start()?;
    /// assert_eq!(child.join()?, 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn process<A, R, F, M>(&self, target: F, args: A) -> Process<A, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        F: crate::Target<A, M, Output = R>,
    {
        Process::new(target, args).start_method(self.method)
    }

    /// A pool of `processes` workers started with this context's method (Python's
    /// `ctx.Pool(n)`).
    ///
    /// # Errors
    ///
    /// As [`Pool::new`].
    ///
    /// ```no_run
    /// use multiproc::{StartMethod, get_context};
    ///
    /// multiproc::init();
    /// let pool = get_context(Some(StartMethod::Spawn)).pool(2)?;
    /// assert_eq!(pool.map(|x: u8| x + 1, vec![1, 2])?, [2, 3]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pool(&self, processes: usize) -> Result<Pool, Error> {
        self.pool_builder().processes(processes).build()
    }

    /// A [`Pool::builder`] whose workers start with this context's method.
    ///
    /// ```no_run
    /// use multiproc::{StartMethod, get_context};
    ///
    /// multiproc::init();
    /// let pool = get_context(Some(StartMethod::Spawn)).pool_builder().processes(2).max_tasks_per_child(10).build()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pool_builder(&self) -> PoolBuilder {
        Pool::builder().start_method(self.method)
    }

    /// A manager whose server starts with this context's method (Python's
    /// `ctx.Manager()`).
    ///
    /// # Errors
    ///
    /// As [`Manager::start`].
    ///
    /// ```no_run
    /// use multiproc::{StartMethod, get_context};
    ///
    /// multiproc::init();
    /// let manager = get_context(Some(StartMethod::Spawn)).manager()?;
    /// let d = manager.dict::<String, u32>()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn manager(&self) -> Result<Manager, ManagerError> {
        self.manager_builder().start()
    }

    /// A [`Manager::builder`] whose server starts with this context's method.
    ///
    /// ```no_run
    /// use multiproc::{StartMethod, get_context};
    ///
    /// multiproc::init();
    /// let manager = get_context(Some(StartMethod::Spawn)).manager_builder().authkey(b"key").start()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn manager_builder(&self) -> ManagerBuilder {
        Manager::builder().start_method(self.method)
    }

    /// [`Queue::new`] (Python's `ctx.Queue()`); queues do not depend on the start method.
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    ///
    /// ```no_run
    /// multiproc::init();
    /// let q = multiproc::get_context(None).queue::<u8>()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn queue<T: Serialize + DeserializeOwned>(&self) -> Result<Queue<T>, Error> {
        Queue::new()
    }

    /// [`Queue::with_maxsize`] (Python's `ctx.Queue(maxsize)`).
    ///
    /// # Errors
    ///
    /// As [`Queue::with_maxsize`].
    ///
    /// ```no_run
    /// multiproc::init();
    /// let q = multiproc::get_context(None).queue_with_maxsize::<u8>(4)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn queue_with_maxsize<T: Serialize + DeserializeOwned>(&self, maxsize: usize) -> Result<Queue<T>, Error> {
        Queue::with_maxsize(maxsize)
    }

    /// [`SimpleQueue::new`] (Python's `ctx.SimpleQueue()`).
    ///
    /// # Errors
    ///
    /// As [`SimpleQueue::new`].
    ///
    /// ```no_run
    /// multiproc::init();
    /// let q = multiproc::get_context(None).simple_queue::<u8>()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn simple_queue<T: Serialize + DeserializeOwned>(&self) -> Result<SimpleQueue<T>, Error> {
        SimpleQueue::new()
    }

    /// [`JoinableQueue::new`] (Python's `ctx.JoinableQueue()`).
    ///
    /// # Errors
    ///
    /// As [`JoinableQueue::new`].
    ///
    /// ```no_run
    /// multiproc::init();
    /// let q = multiproc::get_context(None).joinable_queue::<u8>()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn joinable_queue<T: Serialize + DeserializeOwned>(&self) -> Result<JoinableQueue<T>, Error> {
        JoinableQueue::new()
    }

    /// [`Pipe::new`] (Python's `ctx.Pipe()`).
    ///
    /// # Errors
    ///
    /// As [`Pipe::new`].
    ///
    /// ```no_run
    /// multiproc::init();
    /// let (a, b) = multiproc::get_context(None).pipe::<u8>()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn pipe<T: Serialize + DeserializeOwned>(&self) -> Result<(Connection<T>, Connection<T>), Error> {
        Pipe::new()
    }

    /// [`Lock::new`] (Python's `ctx.Lock()`).
    ///
    /// # Errors
    ///
    /// As [`Lock::new`].
    ///
    /// ```no_run
    /// multiproc::init();
    /// let lock = multiproc::get_context(None).lock()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn lock(&self) -> Result<Lock, Error> {
        Lock::new()
    }

    /// [`RLock::new`] (Python's `ctx.RLock()`).
    ///
    /// # Errors
    ///
    /// As [`RLock::new`].
    ///
    /// ```no_run
    /// multiproc::init();
    /// let lock = multiproc::get_context(None).rlock()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn rlock(&self) -> Result<RLock, Error> {
        RLock::new()
    }

    /// [`Semaphore::new`] (Python's `ctx.Semaphore(value)`).
    ///
    /// # Errors
    ///
    /// As [`Semaphore::new`].
    ///
    /// ```no_run
    /// multiproc::init();
    /// let s = multiproc::get_context(None).semaphore(2)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn semaphore(&self, value: u32) -> Result<Semaphore, Error> {
        Semaphore::new(value)
    }

    /// [`BoundedSemaphore::new`] (Python's `ctx.BoundedSemaphore(value)`).
    ///
    /// # Errors
    ///
    /// As [`BoundedSemaphore::new`].
    ///
    /// ```no_run
    /// multiproc::init();
    /// let s = multiproc::get_context(None).bounded_semaphore(2)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn bounded_semaphore(&self, value: u32) -> Result<BoundedSemaphore, Error> {
        BoundedSemaphore::new(value)
    }

    /// [`Event::new`] (Python's `ctx.Event()`).
    ///
    /// # Errors
    ///
    /// As [`Event::new`].
    ///
    /// ```no_run
    /// multiproc::init();
    /// let e = multiproc::get_context(None).event()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn event(&self) -> Result<Event, Error> {
        Event::new()
    }

    /// [`Condition::new`] (Python's `ctx.Condition()`).
    ///
    /// # Errors
    ///
    /// As [`Condition::new`].
    ///
    /// ```no_run
    /// multiproc::init();
    /// let c = multiproc::get_context(None).condition()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn condition(&self) -> Result<Condition, Error> {
        Condition::new()
    }

    /// [`Barrier::new`] (Python's `ctx.Barrier(parties)`).
    ///
    /// # Errors
    ///
    /// As [`Barrier::new`].
    ///
    /// ```no_run
    /// multiproc::init();
    /// let b = multiproc::get_context(None).barrier(3)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn barrier(&self, parties: usize) -> Result<Barrier, Error> {
        Barrier::new(parties)
    }

    /// [`Value::new`] (Python's `ctx.Value(typecode, v)`).
    ///
    /// # Errors
    ///
    /// As [`Value::new`].
    ///
    /// ```no_run
    /// multiproc::init();
    /// let v = multiproc::get_context(None).value(0i32)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn value<T: ShmSafe + Copy + Send + Sync>(&self, value: T) -> Result<Value<T>, Error> {
        Value::new(value)
    }

    /// [`Array::from_slice`] (Python's `ctx.Array(typecode, values)`).
    ///
    /// # Errors
    ///
    /// As [`Array::from_slice`].
    ///
    /// ```no_run
    /// multiproc::init();
    /// let a = multiproc::get_context(None).array(&[1.0f64, 2.0])?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn array<T: ShmSafe + Copy + Send + Sync>(&self, values: &[T]) -> Result<Array<T>, Error> {
        Array::from_slice(values)
    }
}
