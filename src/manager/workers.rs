//! The server's workers: a few threads that run registered types' calls (user code of any
//! length), so that the dispatcher thread goes on serving every other call meanwhile.
//!
//! The [`Store`](super::store::Store) hands out [`Job`]s, each with the value taken out of
//! its object (one job per object at a time: its other calls wait in its FIFO). A worker
//! runs one, keeps what came of it ([`Done`]) in the pool's list, and wakes the dispatcher
//! with a [`Control::Worked`] on the requests ring, the ring the dispatcher sleeps on; the
//! answer itself stays off the ring (a method's result may be as large as a message, and
//! the ring's room is its clients'). The dispatcher then takes the list
//! ([`Workers::take_done`]) and gives each value back and each answer to its caller.
//!
//! A thread is started for a job that no idle worker (nor one just started) will take, so
//! that a job never waits behind another object's method (as Python's server runs a
//! thread per connection): the threads are one per registered call running at once, which
//! is bounded by the calls its clients have in flight (each object runs one call at a time;
//! the rest wait in its FIFO). At most [`IDLE`] wait for the next job; one finding that many idle ends
//! (review155 M1: with a cap of four, four long methods, or four methods each calling
//! another object of their manager, held every other registered call for ever, their pings
//! answered). Built-in objects' calls never wait for a worker (they run on the dispatcher).
//! A worker holds the pool, and the pool its
//! own handle of the manager's state, so that the state (and the ring it posts on) lives
//! for as long as a worker may post, even after the dispatcher returned. Workers are never
//! joined while they run user code: at the server's end, a method still running dies with
//! the process (as in Python); when the [`Workers`] are dropped, idle ones end.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use super::state::{Control, ManagerState};
use super::store::{Done, Job};
use crate::shm::Shared;

/// The most worker threads a server keeps waiting for a job (it runs as many as calls run
/// at once).
pub(crate) const IDLE: usize = 4;

/// A worker's stack: a main thread's (Linux's default 8 MiB), which the methods had when
/// they ran on the dispatcher, so that a deep recursion that worked there works here
/// (only the pages touched are memory).
const STACK: usize = 8 << 20;

/// The server's side of its workers.
pub(crate) struct Workers {
    pool: Arc<Pool>,
}

struct Pool {
    /// Where a worker posts [`Control::Worked`].
    state: Shared<ManagerState>,
    inner: Mutex<Inner>,
    /// Rung when a job comes, or the workers are to end.
    work: Condvar,
    /// Whether `inner.done` holds something the dispatcher has not taken: read without the
    /// lock by [`Workers::has_done`].
    unread: AtomicBool,
}

#[derive(Default)]
struct Inner {
    jobs: VecDeque<Job>,
    done: Vec<Done>,
    /// Worker threads, and how many of them wait for a job.
    threads: Vec<JoinHandle<()>>,
    idle: usize,
    /// Of `threads`, those started that have not taken the lock yet: each will look for a
    /// job, so [`Workers::start`] counts them as idle ones (review158 M1: it counted them
    /// as no one, and a burst of k calls, one per dispatcher step, started up to
    /// k(k+1)/2 threads, since each step started one for every job not yet taken).
    starting: usize,
    stopping: bool,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing runs user code under the lock: a poisoned one is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `done` for the dispatcher, and wakes it if nothing was waiting for it already
    /// (it takes the whole list when woken).
    fn finished(&self, done: Done) {
        let first = {
            let mut inner = self.lock();
            inner.done.push(done);
            self.unread.store(true, Ordering::Release);
            inner.done.len() == 1
        };
        if first {
            // Refused only when the server is gone (its ring closed): nobody to wake. The
            // dispatcher also looks at `unread` at each of its chores (`Server::step`).
            let _ = self.state.post(&Control::Worked);
        }
    }
}

/// Takes a worker out of the pool's threads if it unwinds, so that it is not counted (as
/// a worker that may take a job) once dead, and [`Workers::start`] starts another.
/// Nothing of a job's user code runs outside its `panics::catching` (review155 H1: a panic
/// payload's drop did, and a worker died still counted): this is in case something does.
struct Unwinding<'a>(&'a Pool);

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let me = std::thread::current().id();
            // Dropping its handle detaches the thread.
            self.0.lock().threads.retain(|thread| thread.thread().id() != me);
        }
    }
}

/// A worker thread's life: runs jobs until told to stop.
fn work(pool: Arc<Pool>) {
    let _unwinding = Unwinding(&pool);
    let mut inner = pool.lock();
    inner.starting -= 1;
    loop {
        if inner.stopping {
            // Their callers were told `ShuttingDown` (review155 L1: they ran after, their
            // effects those of a call said to have failed): the values are dropped.
            let abandoned = std::mem::take(&mut inner.jobs);
            drop(inner);
            abandoned.into_iter().for_each(Job::abandon);
            return;
        }
        if let Some(job) = inner.jobs.pop_front() {
            drop(inner);
            if let Some(done) = job.run() {
                pool.finished(done);
            }
            inner = pool.lock();
            continue;
        }
        if inner.idle >= IDLE {
            // Enough wait already: this one ends, detached (its handle dropped).
            let me = std::thread::current().id();
            inner.threads.retain(|thread| thread.thread().id() != me);
            return;
        }
        inner.idle += 1;
        inner = pool.work.wait(inner).unwrap_or_else(PoisonError::into_inner);
        inner.idle -= 1;
    }
}

impl Workers {
    pub(crate) fn new(state: Shared<ManagerState>) -> Self {
        let pool = Pool { state, inner: Mutex::default(), work: Condvar::new(), unread: AtomicBool::new(false) };
        Self { pool: Arc::new(pool) }
    }

    /// Queues `jobs` for the workers, starting a thread for each that no idle worker, nor
    /// one started and not yet looking, will take. What came of jobs that had to run here
    /// (no worker thread could be started, and none runs) is returned, for the caller to
    /// finish at once.
    pub(crate) fn start(&self, jobs: Vec<Job>) -> Vec<Done> {
        let mut inner = self.pool.lock();
        inner.jobs.extend(jobs);
        let mut wanted = inner.jobs.len().saturating_sub(inner.idle + inner.starting);
        while wanted > 0 {
            let pool = self.pool.clone();
            let builder = std::thread::Builder::new().name("mp-manager-worker".into()).stack_size(STACK);
            match builder.spawn(move || work(pool)) {
                Ok(thread) => {
                    inner.threads.push(thread);
                    inner.starting += 1;
                }
                Err(_) => break,
            }
            wanted -= 1;
        }
        self.pool.work.notify_all();
        if !inner.threads.is_empty() {
            return Vec::new();
        }
        // Not a thread to run them: run inline, as a server without workers did.
        let jobs = std::mem::take(&mut inner.jobs);
        drop(inner);
        jobs.into_iter().filter_map(Job::run).collect()
    }

    /// The server is shutting down: the jobs not started are dropped, not run (their
    /// callers were told `ShuttingDown`), and idle workers end.
    pub(crate) fn stop(&self) {
        self.pool.lock().stopping = true;
        self.pool.work.notify_all();
    }

    /// Waits for every worker to end (after [`Workers::stop`]).
    #[cfg(test)]
    pub(crate) fn join_all(&self) {
        let threads = std::mem::take(&mut self.pool.lock().threads);
        for thread in threads {
            let _ = thread.join();
        }
    }

    /// Whether a worker finished a call the dispatcher has not taken yet.
    pub(crate) fn has_done(&self) -> bool {
        self.pool.unread.load(Ordering::Acquire)
    }

    /// What the workers finished since the last take.
    pub(crate) fn take_done(&self) -> Vec<Done> {
        let mut inner = self.pool.lock();
        self.pool.unread.store(false, Ordering::Release);
        std::mem::take(&mut inner.done)
    }
}

impl Drop for Workers {
    /// Idle workers end, and are joined when no worker runs user code; one that does is
    /// left to end after it (or with the process).
    fn drop(&mut self) {
        let threads = {
            let mut inner = self.pool.lock();
            inner.stopping = true;
            self.pool.work.notify_all();
            let busy = inner.threads.len() - inner.idle.min(inner.threads.len()) > 0 || !inner.jobs.is_empty();
            if busy { Vec::new() } else { std::mem::take(&mut inner.threads) }
        };
        for thread in threads {
            let _ = thread.join();
        }
    }
}
