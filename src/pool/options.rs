//! Options of a single pool call: callbacks, chunk size, timeout, progress bar.

use std::fmt;
use std::time::Duration;

use super::error::{PoolError, TaskError};

type Success<T> = Box<dyn FnOnce(&T) + Send>;
type Failure = Box<dyn FnOnce(&TaskError) + Send>;

/// The `callback` / `error_callback` pair of Python's `apply_async` and `map_async`. Both
/// run in the parent, on the thread that collects results: keep them short.
pub(crate) struct Callbacks<T: ?Sized> {
    pub(crate) success: Option<Success<T>>,
    pub(crate) failure: Option<Failure>,
}

impl<T: ?Sized> Default for Callbacks<T> {
    fn default() -> Self {
        Self { success: None, failure: None }
    }
}

impl<T: ?Sized> Callbacks<T> {
    /// Runs the one that applies. A callback's panic stops here (the panic hook has printed
    /// it, as any thread's): it runs on the thread that collects results (the pool's, a
    /// worker thread of a `ThreadPool`, or a caller's waiting in `get`), which must go on
    /// to deliver this result and the others. Python's result handler thread dies there,
    /// and every later `get` hangs. A caller's thread stops counting as collecting
    /// meanwhile (see `supervisor::outside_help`).
    pub(crate) fn run(&mut self, outcome: Result<&T, &TaskError>) {
        let (success, failure) = (self.success.take(), self.failure.take());
        if success.is_none() && failure.is_none() {
            return;
        }
        super::supervisor::outside_help(|| {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match outcome {
                Ok(value) => success.map(|f| f(value)),
                Err(e) => failure.map(|f| f(e)),
            }));
            if let Err(payload) = ran {
                crate::process::panics::drop_payload(payload);
            }
        });
    }
}

/// Options of `apply_async_with`: callbacks and a timeout.
///
/// # Examples
///
/// ```
/// use multiproc::ApplyOptions;
/// use std::time::Duration;
///
/// let options = ApplyOptions::new()
///     .callback(|n: &u64| println!("got {n}"))
///     .error_callback(|e| eprintln!("failed: {e}"))
///     .timeout(Duration::from_secs(5));
/// ```
#[must_use]
pub struct ApplyOptions<R> {
    pub(crate) callbacks: Callbacks<R>,
    pub(crate) timeout: Option<Duration>,
}

impl<R> Default for ApplyOptions<R> {
    fn default() -> Self {
        Self { callbacks: Callbacks::default(), timeout: None }
    }
}

impl<R> fmt::Debug for ApplyOptions<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplyOptions")
            .field("callback", &self.callbacks.success.is_some())
            .field("error_callback", &self.callbacks.failure.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<R> ApplyOptions<R> {
    /// No callbacks, the pool's timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ApplyOptions;
    ///
    /// let options: ApplyOptions<u64> = ApplyOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` with the result when the task succeeds.
    /// A panic in `f` is printed and goes no further: the result is delivered all the same.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ApplyOptions;
    ///
    /// let options = ApplyOptions::new().callback(|result: &u64| println!("done: {result}"));
    /// ```
    pub fn callback(mut self, f: impl FnOnce(&R) + Send + 'static) -> Self {
        self.callbacks.success = Some(Box::new(f));
        self
    }

    /// Runs `f` with the error when the task fails.
    /// A panic in `f` is printed and goes no further: the result is delivered all the same.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::ApplyOptions;
    ///
    /// let options: ApplyOptions<u64> = ApplyOptions::new().error_callback(|e| eprintln!("failed: {e}"));
    /// ```
    pub fn error_callback(mut self, f: impl FnOnce(&TaskError) + Send + 'static) -> Self {
        self.callbacks.failure = Some(Box::new(f));
        self
    }

    /// Kills the task's worker when the task runs longer (process pools only; the pool's
    /// own `timeout` otherwise).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::ApplyOptions;
    ///
    /// let options: ApplyOptions<u64> = ApplyOptions::new().timeout(Duration::from_secs(10));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Options of the `map` family: chunk size, callbacks, timeout, progress bar, look-ahead.
///
/// # Examples
///
/// ```
/// use multiproc::MapOptions;
///
/// let options = MapOptions::<u64>::new().chunksize(100).callback(|all| println!("{} results", all.len()));
/// ```
#[must_use]
pub struct MapOptions<R> {
    pub(crate) chunksize: Option<usize>,
    pub(crate) callbacks: Callbacks<[R]>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) progress: bool,
    pub(crate) lookahead: Option<usize>,
}

impl<R> Default for MapOptions<R> {
    fn default() -> Self {
        Self { chunksize: None, callbacks: Callbacks::default(), timeout: None, progress: false, lookahead: None }
    }
}

impl<R> fmt::Debug for MapOptions<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapOptions")
            .field("chunksize", &self.chunksize)
            .field("callback", &self.callbacks.success.is_some())
            .field("error_callback", &self.callbacks.failure.is_some())
            .field("timeout", &self.timeout)
            .field("progress", &self.progress)
            .field("lookahead", &self.lookahead)
            .finish()
    }
}

impl<R> MapOptions<R> {
    /// Python's defaults: an automatic chunk size for `map`, 1 for `imap`.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::MapOptions;
    ///
    /// let options: MapOptions<u64> = MapOptions::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Items per task sent to a worker (Python's `chunksize`). Zero is refused by the call
    /// that takes the options, with [`PoolError::NoChunkSize`] (Python's `ValueError`).
    ///
    /// With `chunksize(1)`, a process pool's `map` and `starmap` (and their `_async` forms)
    /// without a timeout, `max_tasks_per_child` or progress bar send no message per item:
    /// the items are written once into shared memory and each worker claims the next one
    /// itself, so a call of many short tasks costs a fraction of one message per task. A
    /// worker killed under a task fails that item, and so the call, at once with its own
    /// [`TaskError::WorkerLost`] (its pid, signal or exit code), as when each item is its
    /// own message; a worker killed between two items costs no item.
    ///
    /// [`TaskError::WorkerLost`]: crate::TaskError::WorkerLost
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::MapOptions;
    ///
    /// let options: MapOptions<u64> = MapOptions::new().chunksize(100);
    /// ```
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = Some(chunksize);
        self
    }

    /// The chunk size asked for, `None` for automatic; zero is an error.
    pub(crate) fn chosen_chunksize(&self) -> Result<Option<usize>, PoolError> {
        match self.chunksize {
            Some(0) => Err(PoolError::NoChunkSize),
            chosen => Ok(chosen),
        }
    }

    /// `imap`'s chunk size (1 unless chosen), and its window: how many items may be in
    /// flight ahead of the consumer, the lookahead's chunks (four per worker unless chosen)
    /// of that size. A window past `usize::MAX` items is all of them: a chosen
    /// `chunksize(usize::MAX)` or `lookahead(usize::MAX)` overflowed the product.
    pub(crate) fn stream_window(&self, workers: usize) -> Result<(usize, usize), PoolError> {
        let chunksize = self.chosen_chunksize()?.unwrap_or(1);
        let chunks = match self.lookahead {
            Some(0) => return Err(PoolError::NoLookahead),
            chosen => chosen.unwrap_or_else(|| workers.saturating_mul(4)),
        };
        Ok((chunksize, chunks.saturating_mul(chunksize)))
    }

    /// Runs `f` with all the results when every item succeeded (`map_async` only).
    /// A panic in `f` is printed and goes no further: the result is delivered all the same.
    ///
    /// An empty input runs no callback, as in Python: the `map_async` is done before it
    /// returns (its result `Ok` with no items), and no result comes to run `f` with. Code
    /// that counts its maps through their callbacks counts one that it made empty itself.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::MapOptions;
    ///
    /// let options = MapOptions::new().callback(|all: &[u64]| println!("{} results", all.len()));
    /// ```
    pub fn callback(mut self, f: impl FnOnce(&[R]) + Send + 'static) -> Self {
        self.callbacks.success = Some(Box::new(f));
        self
    }

    /// Runs `f` with the first error (`map_async` only).
    /// A panic in `f` is printed and goes no further: the result is delivered all the same.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::MapOptions;
    ///
    /// let options: MapOptions<u64> = MapOptions::new().error_callback(|e| eprintln!("failed: {e}"));
    /// ```
    pub fn error_callback(mut self, f: impl FnOnce(&TaskError) + Send + 'static) -> Self {
        self.callbacks.failure = Some(Box::new(f));
        self
    }

    /// Kills the worker of a chunk that runs longer (process pools only).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::MapOptions;
    ///
    /// let options: MapOptions<u64> = MapOptions::new().timeout(Duration::from_secs(10));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Draws a progress bar on the terminal (stderr) while the call runs; nothing is drawn
    /// when stderr is not a terminal. Needs the `progress` feature (on by default).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::MapOptions;
    ///
    /// let options: MapOptions<u64> = MapOptions::new().progress(true);
    /// ```
    #[cfg(feature = "progress")]
    #[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// For `imap`: how many chunks may be in flight ahead of the consumer (default: four
    /// per worker). Bounds memory, so an endless input works. Zero is refused by the
    /// `imap` that takes the options, with [`PoolError::NoLookahead`], as `chunksize(0)` is
    /// (aud108 L3: it was taken as 1, silently).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::MapOptions;
    ///
    /// let options: MapOptions<u64> = MapOptions::new().chunksize(10).lookahead(2);
    /// ```
    pub fn lookahead(mut self, chunks: usize) -> Self {
        self.lookahead = Some(chunks);
        self
    }
}

/// Python's automatic chunk size for `map`: `ceil(len / (4 * workers))`.
pub(crate) fn auto_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(4 * workers.max(1)).max(1)
}

/// The sizes of the chunks a `map` of `len` items is cut into.
///
/// A chunk size the caller chose is kept for every chunk. The automatic one is Python's,
/// except at the end: no chunk is larger than half a worker's share of what remains, so
/// the last chunks shrink to one item and the workers finish together instead of one
/// idling while another runs a full chunk (guided self-scheduling).
pub(crate) fn chunk_sizes(len: usize, workers: usize, chosen: Option<usize>) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut remaining = len;
    let full = chosen.unwrap_or_else(|| auto_chunksize(len, workers)).max(1);
    while remaining > 0 {
        let size = match chosen {
            Some(_) => full.min(remaining),
            None => full.min(remaining.div_ceil(2 * workers.max(1))),
        };
        sizes.push(size);
        remaining -= size;
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_chunksize_is_pythons() {
        assert_eq!(auto_chunksize(100_000, 2), 12_500);
        assert_eq!(auto_chunksize(16, 2), 2);
        assert_eq!(auto_chunksize(17, 2), 3);
        assert_eq!(auto_chunksize(0, 4), 1);
    }

    #[test]
    fn a_chosen_chunk_size_is_kept() {
        assert_eq!(chunk_sizes(7, 2, Some(3)), vec![3, 3, 1]);
        assert_eq!(chunk_sizes(0, 2, Some(3)), Vec::<usize>::new());
    }

    #[test]
    fn automatic_chunks_are_pythons_then_shrink_to_one_item() {
        assert_eq!(chunk_sizes(16, 2, None), vec![2, 2, 2, 2, 2, 2, 1, 1, 1, 1]);
        let sizes = chunk_sizes(100_000, 2, None);
        assert_eq!(sizes.iter().sum::<usize>(), 100_000);
        assert_eq!(sizes[..4], [12_500; 4]);
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]));
        assert_eq!(*sizes.last().unwrap(), 1);
        assert!(sizes.len() < 60, "{} chunks", sizes.len());
        assert_eq!(chunk_sizes(0, 2, None), Vec::<usize>::new());
    }
}
