//! Results on their way back: the slots waiters sleep on, the sinks that fill them, and the
//! public `AsyncResult`, `MapResult` and `IMap`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::error::{NotReady, ResultTimeoutError, TaskError};
use super::options::Callbacks;
use super::progress::Progress;
use super::stats::Counters;
use crate::error::PanicInfo;
use crate::process::panics;
use crate::shm::{Deadline, TakenIn};

/// The results of one chunk: the values of the items that succeeded, in order, and the
/// errors of the others with their index in the chunk. Kept apart so that a chunk of ten
/// thousand numbers is ten thousand numbers, not ten thousand error-sized slots.
#[derive(Debug)]
pub(crate) struct Chunk<R> {
    pub(crate) values: Vec<R>,
    pub(crate) failures: Vec<(usize, TaskError)>,
}

impl<R> Chunk<R> {
    /// From one result per item.
    pub(crate) fn from_results(results: impl IntoIterator<Item = Result<R, TaskError>>) -> Self {
        let mut chunk = Chunk { values: Vec::new(), failures: Vec::new() };
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(v) => chunk.values.push(v),
                Err(e) => chunk.failures.push((i, e)),
            }
        }
        chunk
    }

    fn len(&self) -> usize {
        self.values.len() + self.failures.len()
    }

    /// One result per item, in order.
    fn into_results(self) -> impl Iterator<Item = Result<R, TaskError>> {
        let total = self.len();
        let mut values = self.values.into_iter();
        let mut failures = self.failures.into_iter().peekable();
        (0..total).map(move |i| match failures.peek() {
            Some((at, _)) if *at == i => Err(failures.next().expect("peeked").1),
            _ => Ok(values.next().expect("one value per item that did not fail")),
        })
    }
}

/// The outcome of one chunk: its results, or the loss of the whole chunk (its worker
/// died, it timed out, the pool was terminated).
pub(crate) type ChunkOutcome<R> = Result<Chunk<R>, TaskError>;

/// Something that produces results when a waiting thread lends it time: the process pool
/// collects its workers' results on the waiting thread, which saves a wake-up.
pub(crate) trait Helper: Send + Sync {
    /// Works until `done()` holds or the deadline passes; may return earlier.
    fn help(&self, done: &dyn Fn() -> bool, deadline: Deadline);

    /// Lends a polling future a moment, never long: collects what arrived and, when the
    /// result should come within microseconds, spins for it a little. The awaited twin of
    /// [`Helper::help`]; afterwards, the results it leaves are the pool thread's again.
    fn help_briefly(&self, done: &dyn Fn() -> bool);

    /// Whether this is a copy of the pool that fork made in a child: nothing will ever
    /// fill what it has not filled already (a wait there ends, its result `Terminated`).
    fn copied(&self) -> bool {
        false
    }

    /// Whether it ends a fork copy's results itself (through [`Helper::copied`], as a
    /// process pool's does); otherwise a copy's results end as a pool's without a helper.
    fn ends_copies(&self) -> bool {
        true
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A value to come, and the threads and futures waiting for it.
pub(crate) struct Slot<T> {
    value: Mutex<Option<T>>,
    filled: Condvar,
    /// Threads asleep on `filled` (changed under `value`'s lock): a fill with none there
    /// makes no wake-up call, which the thread that collects its own result would make
    /// every time (std's `notify_all` always enters the kernel).
    sleepers: AtomicUsize,
    /// The futures waiting (`AsyncResult` as a `Future`), woken by `fill`.
    pub(crate) wakers: Wakers,
    /// `AsyncResult::cancel` was called: the pool drops the task, or stops its worker.
    pub(crate) cancelled: AtomicBool,
    /// The value was taken (by a `get_timeout` or a future awaited through `&mut`), under
    /// `value`'s lock: the slot stays settled, so that no later wait sleeps for a value
    /// that never comes again, and no cancellation fills it anew. [`TAKEN`], with
    /// [`TAKEN_OK`] when the value was a success (`AsyncResult::successful` still answers).
    taken: AtomicU8,
}

/// [`Slot::taken`]: the value was taken,
const TAKEN: u8 = 1;
/// and it was an `Ok`.
const TAKEN_OK: u8 = 2;

impl<T> Slot<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            value: Mutex::new(None),
            filled: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            wakers: Wakers::default(),
            cancelled: AtomicBool::new(false),
            taken: AtomicU8::new(0),
        })
    }

    pub(crate) fn fill(&self, value: T) {
        let mut guard = lock(&self.value);
        *guard = Some(value);
        self.wake_sleepers(guard);
        self.wakers.wake();
    }

    /// Wakes the threads asleep on `filled`, if any, after `guard`'s change. Read under the
    /// lock: a sleeper counted itself before it released it in `wait_timeout`.
    fn wake_sleepers(&self, guard: MutexGuard<'_, Option<T>>) {
        let sleepers = self.sleepers.load(Ordering::Relaxed);
        drop(guard);
        if sleepers > 0 {
            self.filled.notify_all();
        }
    }

    /// Fills the slot unless it already holds a value; whether it did.
    pub(crate) fn fill_if_empty(&self, value: T) -> bool {
        let mut guard = lock(&self.value);
        if guard.is_some() || self.taken() {
            return false;
        }
        *guard = Some(value);
        self.wake_sleepers(guard);
        self.wakers.wake();
        true
    }

    /// Whether the value came (taken since, or not).
    pub(crate) fn is_filled(&self) -> bool {
        lock(&self.value).is_some() || self.taken()
    }

    /// Waits until filled or the deadline passes, lending time to `helper`.
    pub(crate) fn wait(&self, deadline: Deadline, helper: Option<&dyn Helper>) -> bool {
        loop {
            if self.is_filled() {
                return true;
            }
            if deadline.passed() {
                return false;
            }
            if let Some(h) = helper {
                h.help(&|| self.is_filled(), deadline);
                // In a copy made by fork, an empty slot stays empty: read as `Terminated`.
                if self.is_filled() || h.copied() {
                    return true;
                }
            }
            let guard = lock(&self.value);
            if guard.is_some() || self.taken() {
                return true;
            }
            let slice =
                deadline.slice(if helper.is_some() { Duration::from_millis(1) } else { Duration::from_millis(50) });
            self.sleepers.fetch_add(1, Ordering::Relaxed);
            let (guard, _) = self.filled.wait_timeout(guard, slice).unwrap_or_else(|e| e.into_inner());
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
            drop(guard);
        }
    }

    /// Whether the value was taken already: nothing more comes.
    pub(crate) fn taken(&self) -> bool {
        self.taken.load(Ordering::Relaxed) != 0
    }
}

impl<R> Slot<Result<R, TaskError>> {
    /// The value, once: `None` before it comes and after it was taken (see
    /// [`Slot::is_filled`] to tell them apart).
    pub(crate) fn take(&self) -> Option<Result<R, TaskError>> {
        let mut guard = lock(&self.value);
        let value = guard.take();
        if let Some(v) = &value {
            self.taken.store(if v.is_ok() { TAKEN | TAKEN_OK } else { TAKEN }, Ordering::Relaxed);
        }
        value
    }

    /// The value, once; after it was taken, [`TaskError::Taken`]; `Terminated` when it
    /// never came (a copy made by fork, whose slot nothing fills).
    pub(crate) fn take_or_gone(&self) -> Result<R, TaskError> {
        let mut guard = lock(&self.value);
        match guard.take() {
            Some(v) => {
                self.taken.store(if v.is_ok() { TAKEN | TAKEN_OK } else { TAKEN }, Ordering::Relaxed);
                v
            }
            // Under the lock `take` sets it under: a value taken by another thread's look
            // is not read as never come.
            None if self.taken() => Err(TaskError::Taken),
            None => Err(TaskError::Terminated),
        }
    }

    /// Whether the task succeeded, once its value came (taken since, or not).
    pub(crate) fn succeeded(&self) -> Option<bool> {
        let guard = lock(&self.value);
        match (guard.as_ref(), self.taken.load(Ordering::Relaxed)) {
            (Some(v), _) => Some(v.is_ok()),
            (None, 0) => None,
            (None, taken) => Some(taken & TAKEN_OK != 0),
        }
    }
}

/// The waker of the future waiting for something of this process (a slot, a stream's
/// next item): registered before the future looks again, woken by whoever fills it.
///
/// One waker: each slot and stream has one consumer (`AsyncResult` and `IMap` are not
/// `Clone`), and a future need wake only the waker of its latest poll. A future polled from
/// one task after another (moved, or dropped part-way through `&mut`) thus lets the earlier
/// tasks' wakers go, which a list kept until the fill (tests/async.rs
/// `a_result_or_stream_polled_by_many_tasks_keeps_only_the_last_ones_waker`).
#[derive(Default)]
pub(crate) struct Wakers(Mutex<Option<std::task::Waker>>);

impl Wakers {
    /// Registers `waker`, in place of the one registered before.
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        let mut registered = lock(&self.0);
        match &mut *registered {
            Some(w) => w.clone_from(waker),
            None => *registered = Some(waker.clone()),
        }
    }

    pub(crate) fn wake(&self) {
        let registered = lock(&self.0).take();
        if let Some(w) = registered {
            w.wake();
        }
    }
}

/// Receives the outcomes of one call's chunks, on the thread that collects them.
pub(crate) trait Sink<R>: Send + Sync {
    fn deliver(&self, chunk: usize, outcome: ChunkOutcome<R>);

    /// Ends the chunk `Terminated` for whoever waits on it, running no callback: in a copy
    /// made by a fork a callback made (the parent runs them: review60 M2), and for a `map`
    /// refused mid-submission (`map_packed`: the call fails whole, its other chunks
    /// cancelled, [`Sink::cancelled`]).
    fn abandon(&self, chunk: usize) {
        self.deliver(chunk, Err(TaskError::Terminated));
    }

    /// Whether the call no longer needs its chunks (a `map` that failed): the pool drops
    /// those not started and stops those running.
    fn cancelled(&self) -> bool {
        false
    }
}

/// Counts a chunk's items in the pool's counters.
pub(crate) fn count<R>(counters: &Counters, outcome: &ChunkOutcome<R>, items: usize) {
    match outcome {
        Ok(chunk) => {
            counters.done_many(chunk.values.len() as u64);
            for (_, e) in &chunk.failures {
                counters.failed(e);
            }
        }
        Err(e) => {
            for _ in 0..items {
                counters.failed(e);
            }
        }
    }
}

/// The sink of `apply_async`: one item.
pub(crate) struct ApplySink<R> {
    slot: Arc<Slot<Result<R, TaskError>>>,
    callbacks: Mutex<Callbacks<R>>,
}

impl<R> ApplySink<R> {
    pub(crate) fn new(callbacks: Callbacks<R>) -> (Arc<Self>, Arc<Slot<Result<R, TaskError>>>) {
        let slot = Slot::new();
        (Arc::new(Self { slot: slot.clone(), callbacks: Mutex::new(callbacks) }), slot)
    }
}

/// The callbacks not run (a cancelled call's), with what they capture, are user code to
/// drop, as [`MapSink`]'s values.
impl<R> Drop for ApplySink<R> {
    fn drop(&mut self) {
        let callbacks = self.callbacks.get_mut().unwrap_or_else(|e| e.into_inner());
        panics::drop_caught(std::mem::take(callbacks));
    }
}

impl<R: Send> Sink<R> for ApplySink<R> {
    fn deliver(&self, _chunk: usize, outcome: ChunkOutcome<R>) {
        let result = outcome.and_then(|chunk| {
            chunk
                .into_results()
                .next()
                .unwrap_or_else(|| Err(TaskError::Codec(crate::CodecError::decode("an empty chunk"))))
        });
        lock(&self.callbacks).run(result.as_ref());
        self.slot.fill_if_empty(result);
    }

    fn abandon(&self, _chunk: usize) {
        self.slot.fill_if_empty(Err(TaskError::Terminated));
    }

    fn cancelled(&self) -> bool {
        self.slot.cancelled.load(Ordering::Acquire)
    }
}

/// Where `map_async`'s caller waits: all the values, or the first error.
pub(crate) type MapSlot<R> = Arc<Slot<Result<Vec<R>, TaskError>>>;

/// The sink of `map_async`: every item, in order, or the first error.
pub(crate) struct MapSink<R> {
    state: Mutex<MapState<R>>,
    /// Set with `MapState::failed`, readable without the lock.
    cancelled: AtomicBool,
    slot: Arc<Slot<Result<Vec<R>, TaskError>>>,
    progress: Option<Progress>,
}

struct MapState<R> {
    chunks: Vec<Option<Vec<R>>>,
    missing: usize,
    callbacks: Callbacks<[R]>,
    failed: bool,
}

impl<R> MapSink<R> {
    pub(crate) fn new(chunks: usize, callbacks: Callbacks<[R]>, progress: Option<Progress>) -> (Arc<Self>, MapSlot<R>) {
        let slot = Slot::new();
        let sink = Arc::new(Self {
            state: Mutex::new(MapState {
                chunks: (0..chunks).map(|_| None).collect(),
                missing: chunks,
                callbacks,
                failed: false,
            }),
            cancelled: AtomicBool::new(false),
            slot: slot.clone(),
            progress,
        });
        if chunks == 0 {
            sink.slot.fill(Ok(Vec::new()));
        }
        (sink, slot)
    }
}

/// The values of the chunks answered (and the callbacks not run, with what they capture)
/// are user code to drop: the sink's last hold is a failed or cancelled call's chunk that
/// the pool drops where it needs to go on (a cancelled chunk's `Sent`, reaped under the
/// books' lock before its worker was put down for a restart: review161 H1 for a cancelled
/// map; a take-back from an inbox, whose other messages would have been lost).
impl<R> Drop for MapSink<R> {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        panics::drop_caught((std::mem::take(&mut state.chunks), std::mem::take(&mut state.callbacks)));
    }
}

impl<R: Send> Sink<R> for MapSink<R> {
    fn deliver(&self, chunk: usize, outcome: ChunkOutcome<R>) {
        let mut state = lock(&self.state);
        if state.failed {
            return;
        }
        let values: Result<Vec<R>, TaskError> = outcome.and_then(|mut chunk| match chunk.failures.is_empty() {
            true => Ok(chunk.values),
            false => Err(chunk.failures.swap_remove(0).1),
        });
        match values {
            Ok(values) => {
                if let Some(p) = &self.progress {
                    p.advance(values.len());
                }
                if state.chunks[chunk].is_none() {
                    state.missing -= 1;
                }
                state.chunks[chunk] = Some(values);
                if state.missing == 0 {
                    let total = state.chunks.iter().map(|c| c.as_ref().map_or(0, Vec::len)).sum();
                    let mut all: Vec<R> = Vec::with_capacity(total);
                    for c in state.chunks.iter_mut() {
                        all.extend(c.take().unwrap_or_default());
                    }
                    if let Some(p) = &self.progress {
                        p.finish();
                    }
                    state.callbacks.run(Ok(&all));
                    drop(state);
                    self.slot.fill_if_empty(Ok(all));
                }
            }
            Err(e) => {
                // Fail fast, as Python's map: the first error ends the call, and (unlike
                // Python) the call's other chunks are cancelled. Set before the caller can
                // see the error, so that its next call never waits behind them.
                state.failed = true;
                self.cancelled.store(true, Ordering::Release);
                if let Some(p) = &self.progress {
                    p.abandon();
                }
                state.callbacks.run(Err(&e));
                // The values of the chunks answered are dropped here, in the delivery,
                // which the pool runs under a catch (their `Drop` is user code), and after
                // the caller was told: not with the sink's last hold, wherever that goes
                // (review161 H1: past the pool thread's catch, which then lost a restart).
                let answered = std::mem::take(&mut state.chunks);
                drop(state);
                self.slot.fill_if_empty(Err(e));
                drop(answered);
            }
        }
    }

    fn abandon(&self, _chunk: usize) {
        let mut state = lock(&self.state);
        // The bar ends with the call (review108 L4: it stayed open until the last job
        // dropped the sink), once.
        if !std::mem::replace(&mut state.failed, true)
            && let Some(p) = &self.progress
        {
            p.abandon();
        }
        self.cancelled.store(true, Ordering::Release);
        drop(state);
        self.slot.fill_if_empty(Err(TaskError::Terminated));
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire) || self.slot.cancelled.load(Ordering::Acquire)
    }
}

/// The sink of `imap` and `imap_unordered`: results wait here until the iterator takes
/// them.
pub(crate) struct StreamSink<R> {
    state: Mutex<StreamState<R>>,
    ready: Condvar,
    /// `IMap`'s `poll_next` waiting.
    pub(crate) wakers: Wakers,
    ordered: bool,
    progress: Option<Progress>,
}

struct StreamState<R> {
    /// Items per chunk, registered when the chunk is fed (a lost chunk becomes one error
    /// per item).
    sizes: std::collections::HashMap<usize, usize>,
    /// Ordered: chunks by index, until the consumer reaches them.
    pending: BTreeMap<usize, VecDeque<Result<R, TaskError>>>,
    /// Ordered: the next chunk to hand out.
    next_chunk: usize,
    /// Unordered: items in arrival order.
    arrived: VecDeque<Result<R, TaskError>>,
}

impl<R> StreamSink<R> {
    pub(crate) fn new(ordered: bool, progress: Option<Progress>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(StreamState {
                sizes: std::collections::HashMap::new(),
                pending: BTreeMap::new(),
                next_chunk: 0,
                arrived: VecDeque::new(),
            }),
            ready: Condvar::new(),
            wakers: Wakers::default(),
            ordered,
            progress,
        })
    }

    /// Registers chunk `chunk` with `items` items, before it is sent.
    pub(crate) fn expect(&self, chunk: usize, items: usize) {
        lock(&self.state).sizes.insert(chunk, items);
    }

    /// The next item if one is ready.
    pub(crate) fn pop(&self) -> Option<Result<R, TaskError>> {
        let mut state = lock(&self.state);
        if !self.ordered {
            return state.arrived.pop_front();
        }
        loop {
            let next = state.next_chunk;
            let chunk = state.pending.get_mut(&next)?;
            let item = chunk.pop_front();
            if chunk.is_empty() {
                state.pending.remove(&next);
                state.next_chunk += 1;
            }
            if item.is_some() {
                return item;
            }
        }
    }

    fn has_ready(&self) -> bool {
        let state = lock(&self.state);
        if self.ordered { state.pending.contains_key(&state.next_chunk) } else { !state.arrived.is_empty() }
    }
}

/// The results not taken (an `IMap` dropped part-way, its chunks still out) are user code
/// to drop, as [`MapSink`]'s values.
impl<R> Drop for StreamSink<R> {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        panics::drop_caught((std::mem::take(&mut state.pending), std::mem::take(&mut state.arrived)));
    }
}

impl<R: Send> Sink<R> for StreamSink<R> {
    fn deliver(&self, chunk: usize, outcome: ChunkOutcome<R>) {
        let mut state = lock(&self.state);
        let size = state.sizes.remove(&chunk).unwrap_or(1);
        let items: VecDeque<Result<R, TaskError>> = match outcome {
            Ok(chunk) => chunk.into_results().collect(),
            // One error per item of a lost chunk: the consumer learns the fate of each.
            Err(e) => std::iter::repeat_n(e, size).map(Err).collect(),
        };
        if let Some(p) = &self.progress {
            p.advance(items.len());
        }
        if self.ordered {
            state.pending.insert(chunk, items);
        } else {
            state.arrived.extend(items);
        }
        drop(state);
        self.ready.notify_all();
        self.wakers.wake();
    }
}

/// The result of [`Pool::apply_async`](crate::Pool::apply_async) (Python's `AsyncResult`),
/// and of the `map_async` family as [`MapResult`].
///
/// # Examples
///
/// ```no_run
/// use multiproc::Pool;
///
/// fn slow_square(x: u64) -> u64 {
///     std::thread::sleep(std::time::Duration::from_millis(100));
///     x * x
/// }
///
/// multiproc::init();
/// let pool = Pool::new(2)?;
/// let pending = pool.apply_async(slow_square, 7)?;
/// assert!(!pending.ready());
/// assert_eq!(pending.get()?, 49);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "the task runs anyway; keep its AsyncResult to get its result or error (`drop(...)` it when the callbacks are enough)"]
pub struct AsyncResult<R> {
    pub(crate) slot: Arc<Slot<Result<R, TaskError>>>,
    pub(crate) helper: Option<Arc<dyn Helper>>,
    /// The process that asked for the result: only its threads fill it. A copy that fork
    /// made in a child (kept in a static, say) whose result had not come never gets it.
    made_in: TakenIn,
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult").field("ready", &self.slot.is_filled()).finish()
    }
}

impl<R> AsyncResult<R> {
    pub(crate) fn new(slot: Arc<Slot<Result<R, TaskError>>>, helper: Option<Arc<dyn Helper>>) -> Self {
        Self { slot, helper, made_in: TakenIn::here() }
    }

    fn wait_until(&self, deadline: Deadline) -> bool {
        if self.settled_as_a_copy() {
            return true;
        }
        self.slot.wait(deadline, self.helper.as_deref())
    }

    /// In a copy made by fork of a result of a pool without a helper (a cluster pool's
    /// driver thread and a thread pool's threads are the parent's; a process pool's helper
    /// ends its copy's results itself, [`Helper::copied`]): a result that had not come
    /// becomes [`TaskError::Terminated`] at once, in this process only. Whether this is
    /// such a copy.
    pub(crate) fn settled_as_a_copy(&self) -> bool {
        if self.helper.as_ref().is_some_and(|h| h.ends_copies()) || self.made_in.is_here() {
            return false;
        }
        self.slot.fill_if_empty(Err(TaskError::Terminated));
        true
    }

    /// Waits for the result. Never hangs: a task whose worker dies fails with
    /// [`TaskError::WorkerLost`]; in a fork child, a copy of an `AsyncResult` of the
    /// parent's (kept in a static, say) whose result had not come fails at once with
    /// [`TaskError::Terminated`] (nothing in the child would ever fill it).
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// let pending = pool.apply_async(square, 3)?;
    /// assert_eq!(pending.get()?, 9);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get(self) -> Result<R, TaskError> {
        self.wait_until(Deadline::NEVER);
        self.slot.take_or_gone()
    }

    /// Waits at most `timeout`; on [`ResultTimeoutError::Timeout`] the result stays
    /// available (and the task keeps running: see the pool's `timeout` to kill it). Once
    /// it gave the result, the result is gone: a later `get_timeout`, `get` or await is
    /// [`TaskError::Taken`] at once ([`successful`](Self::successful) still answers).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::ResultTimeoutError;
    ///
    /// fn sleep_ms(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// let mut pending = pool.apply_async(sleep_ms, 300)?;
    /// // Too early: the result stays available for a later call.
    /// assert!(matches!(pending.get_timeout(Duration::from_millis(1)), Err(ResultTimeoutError::Timeout)));
    /// assert_eq!(pending.get_timeout(Duration::from_secs(60)).unwrap(), 300);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<R, ResultTimeoutError> {
        if !self.wait_until(Deadline::after(timeout)) {
            return Err(ResultTimeoutError::Timeout);
        }
        self.slot.take_or_gone().map_err(ResultTimeoutError::Task)
    }

    /// Waits until the result is ready.
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// let pending = pool.apply_async(square, 3)?;
    /// pending.wait();
    /// assert!(pending.ready());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait(&self) {
        self.wait_until(Deadline::NEVER);
    }

    /// Waits at most `timeout`; whether the result is ready.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// let pending = pool.apply_async(square, 3)?;
    /// assert!(pending.wait_timeout(Duration::from_secs(60)));
    /// assert_eq!(pending.get()?, 9);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Deadline::after(timeout))
    }

    /// Whether the result is ready (collecting what already arrived).
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// let pending = pool.apply_async(square, 3)?;
    /// pending.wait();
    /// assert!(pending.ready());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn ready(&self) -> bool {
        self.wait_until(Deadline::now())
    }

    /// Whether the task succeeded; an error when it is not ready yet (Python's
    /// `ValueError`).
    ///
    /// # Examples
    ///
    /// ```
    /// fn fail(_: ()) {
    ///     panic!("no");
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// let pending = pool.apply_async(fail, ())?;
    /// pending.wait();
    /// assert_eq!(pending.successful(), Ok(false));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn successful(&self) -> Result<bool, NotReady> {
        self.ready();
        self.slot.succeeded().ok_or(NotReady)
    }
}

/// The result of `map_async` / `starmap_async`: all the results in order, or the first
/// error (Python's `MapResult`, a kind of `AsyncResult` there too).
pub type MapResult<R> = AsyncResult<Vec<R>>;

/// Feeds an `imap` with chunks as its consumer goes (the pool side of [`IMap`]).
pub(crate) trait Feeder<R>: Send {
    /// Takes the next chunk from the input, registers it as chunk `index` of `sink`
    /// (`StreamSink::expect`) and sends it to the pool; the number of items sent, `None`
    /// when the input is exhausted.
    fn feed(&mut self, index: usize, sink: &Arc<StreamSink<R>>) -> Option<usize>;
}

/// The input of an `imap`, read a chunk at a time on the consumer's thread. A panic of the
/// input iterator is caught: the items read before it are sent as usual, the panic becomes
/// the error of the position where it happened (as Python's `imap` raises the input's
/// exception there, after the results before it), and the input ends.
pub(crate) struct Input<I> {
    items: I,
    /// This process's name, for a panic's report.
    name: String,
    /// The input panicked; its error not yet handed to the sink.
    broken: Option<PanicInfo>,
    ended: bool,
}

impl<I: Iterator> Input<I> {
    pub(crate) fn new(items: I) -> Self {
        Self { items, name: crate::current_process().name().to_string(), broken: None, ended: false }
    }

    /// Up to `n` items; empty once the input ended (or panicked).
    pub(crate) fn chunk(&mut self, n: usize) -> Vec<I::Item> {
        let mut chunk = Vec::new();
        if self.ended {
            return chunk;
        }
        let items = &mut self.items;
        match panics::catching(&self.name, || chunk.extend(items.by_ref().take(n))) {
            Ok(()) => self.ended = chunk.len() < n,
            Err(info) => {
                // An iterator that panicked is not asked again.
                self.ended = true;
                self.broken = Some(info);
            }
        }
        chunk
    }

    /// Reads no more: the pool refused a chunk (it was closed or terminated), and would
    /// refuse every later one. Without this, an endless input's `imap` yielded
    /// `Terminated` for ever, reading it (aud91).
    pub(crate) fn stop(&mut self) {
        self.ended = true;
    }

    /// After [`Input::chunk`] came back empty: when the input panicked, delivers its error
    /// as chunk `index` (one item) and returns `Some(1)`; `None` at the end.
    pub(crate) fn end<R>(&mut self, index: usize, sink: &Arc<StreamSink<R>>) -> Option<usize>
    where
        R: Send,
    {
        let info = self.broken.take()?;
        sink.expect(index, 1);
        sink.deliver(index, Err(TaskError::InputPanicked(info)));
        Some(1)
    }
}

/// The iterator of `imap` / `imap_unordered`: results as they come, each item's result or
/// its error. Lazy, with a bounded look-ahead, so the input may be endless.
///
/// The consumer feeds the pool as it goes. A `close` lets an `imap` made before it go on to
/// the end of its input, as Python's (a local pool keeps its workers for it, a cluster
/// pool its driver). Once the pool no longer takes its chunks (terminated, or joined), the
/// next chunk is refused, its items come as
/// [`TaskError::Terminated`] after the results in flight, and the iteration ends there (an
/// endless input is read no further).
///
/// A copy that fork made in a child (kept in a static, say) gives what had arrived before
/// the fork, then [`TaskError::Terminated`], and ends: the chunks in flight are the
/// parent's pool's to deliver.
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
/// let pool = Pool::new(2)?;
/// let firsts: Vec<u64> = pool.imap(square, 0..)?.take(5).map(Result::unwrap).collect();
/// assert_eq!(firsts, [0, 1, 4, 9, 16]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "an IMap is lazy: iterate it to get the results"]
pub struct IMap<R> {
    pub(crate) sink: Arc<StreamSink<R>>,
    feeder: Box<dyn Feeder<R>>,
    helper: Option<Arc<dyn Helper>>,
    /// Items fed and not yet handed to the consumer may not exceed this.
    max_in_flight: usize,
    fed_chunks: usize,
    pub(crate) fed_items: usize,
    pub(crate) taken_items: usize,
    pub(crate) exhausted: bool,
    /// The process that started the iteration: only its threads deliver its chunks.
    made_in: TakenIn,
}

impl<R> fmt::Debug for IMap<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("in_flight", &(self.fed_items - self.taken_items))
            .field("exhausted", &self.exhausted)
            .finish()
    }
}

impl<R: Send + 'static> IMap<R> {
    pub(crate) fn new(
        sink: Arc<StreamSink<R>>,
        feeder: Box<dyn Feeder<R>>,
        helper: Option<Arc<dyn Helper>>,
        max_in_flight: usize,
    ) -> Self {
        Self {
            sink,
            feeder,
            helper,
            max_in_flight: max_in_flight.max(1),
            fed_chunks: 0,
            fed_items: 0,
            taken_items: 0,
            exhausted: false,
            made_in: TakenIn::here(),
        }
    }

    pub(crate) fn top_up(&mut self) {
        while !self.exhausted && self.fed_items - self.taken_items < self.max_in_flight {
            match self.feeder.feed(self.fed_chunks, &self.sink) {
                Some(items) => {
                    self.fed_chunks += 1;
                    self.fed_items += items;
                }
                None => self.exhausted = true,
            }
        }
    }

    /// The next result, waiting at most `timeout` (Python's `next(timeout)`); `Ok(None)`
    /// at the end of the input.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// multiproc::init();
    /// let pool = multiproc::Pool::new(1)?;
    /// let mut results = pool.imap(square, [2, 3])?;
    /// assert_eq!(results.next_timeout(Duration::from_secs(60)).unwrap().transpose()?, Some(4));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Result<R, TaskError>>, ResultTimeoutError> {
        self.next_until(Deadline::after(timeout)).ok_or(ResultTimeoutError::Timeout)
    }

    /// In a copy that fork made in a child (kept in a static, say), the chunks in flight
    /// never come (the pool's threads, or its driver, are the parent's): nothing more is
    /// fed, what had arrived comes first, then one `Terminated`, and the iteration ends.
    /// `None` in the process that started it.
    pub(crate) fn next_in_a_copy(&mut self) -> Option<Option<Result<R, TaskError>>> {
        if self.made_in.is_here() {
            return None;
        }
        if let Some(item) = self.sink.pop() {
            self.taken_items += 1;
            return Some(Some(item));
        }
        if self.exhausted && self.taken_items == self.fed_items {
            return Some(None);
        }
        self.exhausted = true;
        self.taken_items = self.fed_items;
        Some(Some(Err(TaskError::Terminated)))
    }

    fn next_until(&mut self, deadline: Deadline) -> Option<Option<Result<R, TaskError>>> {
        // A process pool's copy ends its chunks through its helper (`Helper::copied`).
        if self.helper.as_ref().is_none_or(|h| !h.ends_copies())
            && let Some(next) = self.next_in_a_copy()
        {
            return Some(next);
        }
        loop {
            self.top_up();
            if let Some(item) = self.sink.pop() {
                self.taken_items += 1;
                return Some(Some(item));
            }
            if self.exhausted && self.taken_items == self.fed_items {
                return Some(None);
            }
            if deadline.passed() {
                return None;
            }
            let sink = self.sink.clone();
            if let Some(h) = &self.helper {
                h.help(&|| sink.has_ready(), deadline);
            }
            let state = lock(&self.sink.state);
            let ready = if self.sink.ordered {
                state.pending.contains_key(&state.next_chunk)
            } else {
                !state.arrived.is_empty()
            };
            if !ready {
                let slice = deadline.slice(if self.helper.is_some() {
                    Duration::from_millis(1)
                } else {
                    Duration::from_millis(50)
                });
                let _ = self.sink.ready.wait_timeout(state, slice);
            }
        }
    }
}

impl<R: Send + 'static> Iterator for IMap<R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_until(Deadline::NEVER).flatten()
    }
}
