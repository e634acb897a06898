//! One shape per operation: the family's own objects (`Queue`, `Lock`, ...) and the
//! manager's proxies (`QueueProxy`, `LockProxy`, ...) answer each operation the same way.
//!
//! Each test runs the same assertions twice, through [`on_both!`]: once on the family's
//! object, once on the proxy. The only differences allowed are the ones a server brings:
//! a proxy's call returns a `Result` where the family's returns a plain value (the server
//! may be gone; [`Plain::plain`] reads both), and a proxy's error type is `ManagerError`
//! where the family's is the operation's own (`E` in each test: the variant names are the
//! same).

// `x.set().plain()` reads a proxy's `Result<(), _>` and, on the family's side, a `()`.
#![allow(clippy::unit_arg)]

mod common;

use std::time::Duration;

use common::{eventually, watchdog};
use multiproc::{
    AcquireTimeoutError, Barrier, Condition, Event, GetTimeoutError, JoinableQueue, Lock, Manager, ManagerError,
    Process, QueueJoinTimeoutError, RLock, Semaphore, TryAcquireError, TryGetError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(20);

/// Runs `$body` with `$x` the family's object and `E` its operation's error type, then
/// with `$x` the manager's proxy and `E` = `ManagerError`.
macro_rules! on_both {
    ($local:expr, $local_error:ty; $proxy:expr; |$x:ident| $body:block) => {{
        {
            #[allow(dead_code)]
            type E = $local_error;
            let $x = $local;
            $body
        }
        {
            #[allow(dead_code)]
            type E = ManagerError;
            let $x = $proxy;
            $body
        }
    }};
}

/// A value as the family's object returns it, or as a proxy's `Ok` carries it.
trait Plain {
    type Value;
    fn plain(self) -> Self::Value;
}

impl<T> Plain for Result<T, ManagerError> {
    type Value = T;
    fn plain(self) -> T {
        self.unwrap()
    }
}

macro_rules! plain {
    ($($t:ty),*) => {$(
        impl Plain for $t {
            type Value = $t;
            fn plain(self) -> $t {
                self
            }
        }
    )*};
}

plain!((), bool, usize, u32, Option<usize>);

// ---- queues -----------------------------------------------------------------------------

#[test]
fn try_get_is_err_empty_then_the_item() {
    let _w = watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    on_both!(multiproc::Queue::<u32>::new().unwrap(), TryGetError; manager.queue::<u32>().unwrap(); |q| {
        assert!(matches!(q.try_get(), Err(E::Empty)));
        assert_eq!(q.try_get().unwrap_err().to_string(), "the queue is empty");
        q.put(1).unwrap();
        assert_eq!(q.try_get().unwrap(), 1);
    });
}

#[test]
fn get_timeout_is_err_timeout() {
    let _w = watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let local = multiproc::Queue::<u32>::new().unwrap();
    let _producer = local.clone(); // a put could still come: the family's get waits
    on_both!(local, GetTimeoutError; manager.queue::<u32>().unwrap(); |q| {
        assert!(matches!(q.get_timeout(SHORT), Err(E::Timeout)));
        q.put(2).unwrap();
        assert_eq!(q.get_timeout(LIMIT).unwrap(), 2);
    });
}

#[test]
fn try_put_gives_the_item_back_when_full() {
    let _w = watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let local = multiproc::Queue::<String>::with_maxsize(1).unwrap();
    on_both!(local, (); manager.queue_bounded::<String>(1).unwrap(); |q| {
        q.try_put("first".to_string()).unwrap();
        let refused = q.try_put("second".to_string()).unwrap_err();
        assert_eq!(refused.to_string(), "the queue is full");
        assert_eq!(refused.into_inner(), "second");
        assert_eq!(q.get().unwrap(), "first");
    });
}

#[test]
fn put_timeout_gives_the_item_back_when_no_room_came() {
    let _w = watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let local = multiproc::Queue::<u32>::with_maxsize(1).unwrap();
    let _consumer = local.clone(); // room could still come: the family's put waits
    on_both!(local, (); manager.queue_bounded::<u32>(1).unwrap(); |q| {
        q.put(1).unwrap();
        let refused = q.put_timeout(2, SHORT).unwrap_err();
        assert!(refused.to_string().contains("timed out"), "{refused}");
        assert_eq!(refused.into_inner(), 2);
    });
}

#[test]
fn len_is_empty_is_full_and_maxsize_read_the_same() {
    let _w = watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let local = multiproc::Queue::<u8>::with_maxsize(2).unwrap();
    on_both!(local, (); manager.queue_bounded::<u8>(2).unwrap(); |q| {
        assert!(q.is_empty().plain());
        assert_eq!(q.maxsize().plain(), Some(2));
        q.put(1).unwrap();
        q.put(2).unwrap();
        assert_eq!(q.len().plain(), 2);
        assert!(q.is_full().plain());
        assert!(!q.is_empty().plain());
    });
}

#[test]
fn join_timeout_is_err_timeout_while_items_are_unfinished() {
    let _w = watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let local = JoinableQueue::<u8>::new().unwrap();
    let _consumer = local.clone(); // somebody could still mark the item done
    on_both!(local, QueueJoinTimeoutError; manager.joinable_queue::<u8>().unwrap(); |q| {
        q.put(1).unwrap();
        assert!(matches!(q.join_timeout(SHORT), Err(E::Timeout { .. })));
        q.get().unwrap();
        q.task_done().unwrap();
        q.join_timeout(LIMIT).unwrap();
    });
}

// ---- locks and semaphores -----------------------------------------------------------------

#[test]
fn try_acquire_is_err_would_block_while_held_and_a_guard_otherwise() {
    let _w = watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    on_both!(Lock::new().unwrap(), TryAcquireError; manager.lock().unwrap(); |lock| {
        let held = lock.acquire().unwrap();
        assert!(matches!(lock.try_acquire(), Err(E::WouldBlock)));
        drop(held);
        let guard = lock.try_acquire().unwrap();
        assert!(!guard.owner_died());
    });
}

#[test]
fn acquire_timeout_is_err_timeout_while_held_and_a_guard_otherwise() {
    let _w = watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    on_both!(Lock::new().unwrap(), AcquireTimeoutError; manager.lock().unwrap(); |lock| {
        let held = lock.acquire().unwrap();
        assert!(matches!(lock.acquire_timeout(SHORT), Err(E::Timeout)));
        drop(held);
        let guard = lock.acquire_timeout(LIMIT).unwrap();
        assert!(!guard.owner_died());
    });
}

#[test]
fn a_guard_releases_when_dropped_and_leave_locked_keeps_the_lock() {
    let _w = watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    on_both!(Lock::new().unwrap(), (); manager.lock().unwrap(); |lock| {
        {
            let _held = lock.acquire().unwrap();
            assert!(lock.locked().plain());
        }
        assert!(!lock.locked().plain());
        lock.acquire().unwrap().leave_locked();
        assert!(lock.locked().plain());
        lock.release().unwrap();
        assert!(!lock.locked().plain());
    });
    on_both!(RLock::new().unwrap(), (); manager.rlock().unwrap(); |lock| {
        let outer = lock.acquire().unwrap();
        let inner = lock.acquire().unwrap();
        drop(inner);
        assert!(lock.locked().plain());
        drop(outer);
        assert!(!lock.locked().plain());
        lock.acquire().unwrap().leave_locked();
        lock.release().unwrap();
        assert!(!lock.locked().plain());
    });
}

#[test]
fn a_semaphore_gives_guards_and_would_block_when_empty() {
    let _w = watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    on_both!(Semaphore::new(1).unwrap(), TryAcquireError; manager.semaphore(1).unwrap(); |slots| {
        let slot = slots.try_acquire().unwrap();
        assert!(matches!(slots.try_acquire(), Err(E::WouldBlock)));
        drop(slot);
        assert_eq!(slots.get_value().plain(), 1);
        slots.acquire().unwrap().forget();
        assert_eq!(slots.get_value().plain(), 0);
        slots.release().plain();
        assert_eq!(slots.get_value().plain(), 1);
    });
}

/// What a child does with the lock it is given: takes it and never lets go.
trait HoldForever {
    fn hold_forever(&self);
}

impl HoldForever for Lock {
    fn hold_forever(&self) {
        self.acquire().unwrap().leave_locked();
    }
}

impl HoldForever for multiproc::LockProxy {
    fn hold_forever(&self) {
        self.acquire().unwrap().leave_locked();
    }
}

fn hold<L: HoldForever + Serialize + DeserializeOwned>(lock: L) {
    lock.hold_forever();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn the_next_holder_is_told_once_that_the_last_one_died_holding_the_lock() {
    let _w = watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    on_both!(Lock::new().unwrap(), (); manager.lock().unwrap(); |lock| {
        let child = Process::new(hold, lock.clone()).start().unwrap();
        assert!(eventually(LIMIT, || lock.locked().plain()));
        child.kill().unwrap();
        child.wait();
        let taken = lock.acquire_timeout(LIMIT).unwrap();
        assert!(taken.owner_died());
        drop(taken);
        assert!(!lock.acquire().unwrap().owner_died());
    });
}

#[test]
fn a_condition_waits_and_notifies_through_its_held_lock() {
    let _w = watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let local = Condition::new().unwrap();
    let _notifier = local.clone(); // somebody could still notify: the family's wait waits
    on_both!(local, (); manager.condition().unwrap(); |cond| {
        let mut held = cond.acquire().unwrap();
        assert!(!held.owner_died());
        assert!(!held.wait_timeout(SHORT).unwrap());
        assert!(!held.wait_for_timeout(SHORT, || false).unwrap());
        assert!(held.wait_for_timeout(SHORT, || true).unwrap());
        held.wait_for(|| true).unwrap();
        held.notify(1).plain();
        held.notify_all().plain();
        drop(held);
        assert!(!cond.acquire().unwrap().owner_died());
    });
}

// ---- events, barriers ---------------------------------------------------------------------

#[test]
fn an_event_is_set_cleared_and_waited_for_the_same_way() {
    let _w = watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    on_both!(Event::new().unwrap(), (); manager.event().unwrap(); |event| {
        assert!(!event.is_set().plain());
        assert!(!event.wait_timeout(SHORT).plain());
        event.set().plain();
        assert!(event.wait_timeout(LIMIT).plain());
        event.clear().plain();
        assert!(!event.is_set().plain());
    });
}

#[test]
fn a_barrier_is_broken_by_abort_and_mended_by_reset_the_same_way() {
    let _w = watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    on_both!(Barrier::new(2).unwrap(), (); manager.barrier(2).unwrap(); |barrier| {
        assert_eq!(barrier.parties().plain(), 2);
        assert_eq!(barrier.n_waiting().plain(), 0);
        assert!(!barrier.is_broken().plain());
        barrier.abort().plain();
        assert!(barrier.is_broken().plain());
        assert!(barrier.wait_timeout(SHORT).is_err());
        barrier.reset().plain();
        assert!(!barrier.is_broken().plain());
    });
}

// ---- pools --------------------------------------------------------------------------------

fn explode(n: u32) -> u32 {
    if n == 3 {
        panic!("boom at {n}");
    }
    n
}

#[test]
fn a_task_panic_reads_the_same_from_a_pool_and_a_thread_pool() {
    let _w = watchdog(LIMIT);
    let pool = multiproc::Pool::builder().processes(1).build().unwrap();
    let threads = multiproc::ThreadPool::builder().processes(1).build().unwrap();
    let from_pool = pool.map(explode, 0..5).unwrap_err();
    let from_threads = threads.map(explode, 0..5).unwrap_err();
    let (pool_text, thread_text) = (from_pool.to_string(), from_threads.to_string());
    assert_eq!(pool_text.replace("PoolWorker-1", "WORKER"), thread_text.replace("ThreadPoolWorker-1", "WORKER"));
    // Debug: the same lines, up to the backtrace (shown when RUST_BACKTRACE asks; its
    // frames are each pool's own).
    let head = |debug: String, worker: &str| {
        debug.replace(worker, "WORKER").split("\nstack backtrace").next().unwrap().to_string()
    };
    assert_eq!(head(format!("{from_pool:?}"), "PoolWorker-1"), head(format!("{from_threads:?}"), "ThreadPoolWorker-1"));
    assert!(pool_text.ends_with("boom at 3"), "{pool_text}");
}

// ---- sending --------------------------------------------------------------------------------

#[test]
fn a_connection_send_and_a_queue_put_take_the_value_and_give_it_back() {
    let _w = watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let (mut pipe_end, _other) = multiproc::Pipe::<String>::new().unwrap();
    pipe_end.close();
    let mut queue = multiproc::Queue::<String>::new().unwrap();
    queue.close();
    let proxy = manager.queue::<String>().unwrap();
    proxy.shutdown(false).unwrap();
    let refused = [
        pipe_end.send("pipe".to_string()).unwrap_err().into_inner(),
        queue.put("queue".to_string()).unwrap_err().into_inner(),
        proxy.put("proxy".to_string()).unwrap_err().into_inner(),
    ];
    assert_eq!(refused, ["pipe", "queue", "proxy"]);
}
