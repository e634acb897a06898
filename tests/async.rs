//! Async: every waiting operation as a future, on any runtime (tokio current-thread and
//! multi-thread, smol). Thousands of pending futures cost a bounded number of threads; a
//! `get_async` or `recv_async` dropped part-way loses no message; a dead worker, producer
//! or peer ends the future with the same typed error as the blocking call.

mod common;

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::time::Duration;

use common::watchdog;
use futures_core::Stream;
use multiproc::{
    Event, GetError, JoinableQueue, Pipe, Pool, Process, PutError, Queue, RecvError, SimpleQueue, TaskError,
};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(120);

fn square(x: u64) -> u64 {
    x * x
}

fn sleep_then(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Ten thousand `apply_async(..).await` at once on a 2-worker pool: all complete, and the
/// process never runs more than a few dozen threads (libtest's, the runtime's, the pool's
/// and the waker threads), not one per pending future.
async fn ten_thousand(pool: &Pool) -> (u64, usize) {
    let pending: Vec<_> = (0..10_000u64).map(|i| pool.apply_async(square, i).unwrap()).collect();
    let mut set = tokio::task::JoinSet::new();
    for r in pending {
        set.spawn(r);
    }
    // Let every task poll once (and pend).
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let mut peak = threads();
    let mut sum = 0;
    while let Some(r) = set.join_next().await {
        sum += r.unwrap().unwrap();
        peak = peak.max(threads());
    }
    (sum, peak)
}

const SUM_OF_SQUARES: u64 = 9999 * 10_000 * 19_999 / 6;

#[test]
fn ten_thousand_apply_async_awaited_on_tokio_current_thread_use_bounded_threads() {
    let _w = watchdog(LIMIT);
    let pool = Pool::new(2).unwrap();
    let (sum, peak) = current_thread().block_on(ten_thousand(&pool));
    assert_eq!(sum, SUM_OF_SQUARES);
    assert!(peak < 100, "{peak} threads for 10 000 pending futures");
}

#[test]
fn ten_thousand_apply_async_awaited_on_tokio_multi_thread_use_bounded_threads() {
    let _w = watchdog(LIMIT);
    let pool = Pool::new(2).unwrap();
    let (sum, peak) = multi_thread().block_on(ten_thousand(&pool));
    assert_eq!(sum, SUM_OF_SQUARES);
    assert!(peak < 100, "{peak} threads for 10 000 pending futures");
}

#[test]
fn ten_thousand_apply_async_awaited_on_smol_use_bounded_threads() {
    let _w = watchdog(LIMIT);
    let pool = Pool::new(2).unwrap();
    let (sum, peak) = smol::block_on(async {
        let tasks: Vec<_> = (0..10_000u64).map(|i| smol::spawn(pool.apply_async(square, i).unwrap())).collect();
        let mut peak = threads();
        let mut sum = 0;
        for t in tasks {
            sum += t.await.unwrap();
            peak = peak.max(threads());
        }
        (sum, peak)
    });
    assert_eq!(sum, SUM_OF_SQUARES);
    assert!(peak < 100, "{peak} threads for 10 000 pending futures");
}

#[test]
fn a_killed_workers_future_resolves_with_worker_lost() {
    let _w = watchdog(LIMIT);
    let pool = Pool::new(2).unwrap();
    current_thread().block_on(async {
        let slow = pool.apply_async(sleep_then, 60_000).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        for pid in pool.pids() {
            // SAFETY (test): killing our own child.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        match slow.await {
            Err(TaskError::WorkerLost { signal: Some(9), .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(pool.apply_async(square, 3).unwrap().await, Ok(9));
    });
}

#[test]
fn dropping_the_future_does_not_cancel_the_task_but_cancel_does() {
    let _w = watchdog(LIMIT);
    let pool = Pool::new(1).unwrap();
    current_thread().block_on(async {
        // A timeout drops the future; the task goes on and its result stays reachable
        // through the `AsyncResult` awaited by reference.
        let mut r = pool.apply_async(sleep_then, 300).unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(10), &mut r).await.is_err());
        assert_eq!(r.await, Ok(300));
        // `cancel` stops it: the worker running it is killed and replaced.
        let long = pool.apply_async(sleep_then, 60_000).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        long.cancel();
        assert_eq!(long.await, Err(TaskError::Cancelled));
        assert_eq!(pool.apply_async(square, 4).unwrap().await, Ok(16));
    });
    assert!(common::eventually(Duration::from_secs(10), || pool.stats().tasks_cancelled >= 1));
}

#[test]
fn map_async_is_a_future_and_imap_a_stream() {
    let _w = watchdog(LIMIT);
    let pool = Pool::new(2).unwrap();
    multi_thread().block_on(async {
        assert_eq!(pool.map_async(square, 0..5).unwrap().await.unwrap(), [0, 1, 4, 9, 16]);
        for ordered in [true, false] {
            let mut imap =
                if ordered { pool.imap(square, 0..100).unwrap() } else { pool.imap_unordered(square, 0..100).unwrap() };
            let mut got = Vec::new();
            while let Some(r) = poll_fn(|cx| Pin::new(&mut imap).poll_next(cx)).await {
                got.push(r.unwrap());
            }
            if !ordered {
                got.sort_unstable();
            }
            assert_eq!(got, (0..100).map(square).collect::<Vec<_>>());
        }
    });
}

fn produce(q: Queue<u32>) {
    for i in 0..300 {
        q.put(i).unwrap();
        if i % 7 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn a_get_async_cancelled_by_a_timeout_leaves_the_message_for_the_next_get() {
    let _w = watchdog(LIMIT);
    let q: Queue<u32> = Queue::new().unwrap();
    let _other = q.clone();
    current_thread().block_on(async {
        // Nothing there: the timeout passes, the future is dropped.
        assert!(tokio::time::timeout(Duration::from_millis(20), q.get_async()).await.is_err());
        q.put(1).unwrap();
        assert_eq!(q.get().unwrap(), 1);
    });
    // Against a producer in another process, with a timeout dropping gets all the time:
    // every message arrives once, in order.
    let producer = Process::new(produce, q.clone()).start().unwrap();
    let got = multi_thread().block_on(async {
        let mut got = Vec::new();
        let mut timeouts = 0u32;
        while got.len() < 300 {
            let wait = Duration::from_micros(50 + u64::from(timeouts % 7) * 150);
            match tokio::time::timeout(wait, q.get_async()).await {
                Ok(item) => got.push(item.unwrap()),
                Err(_) => timeouts += 1,
            }
        }
        got
    });
    assert_eq!(got, (0..300).collect::<Vec<_>>());
    producer.join().unwrap();
    assert!(q.try_get().is_err());
}

fn hold_then_exit(q: Queue<u32>) {
    std::thread::sleep(Duration::from_millis(200));
    drop(q);
}

#[test]
fn a_dead_producer_gives_disconnected() {
    let _w = watchdog(LIMIT);
    for method in common::METHODS {
        let q: Queue<u32> = Queue::new().unwrap();
        let child = Process::new(hold_then_exit, q.clone()).start_method(method).start().unwrap();
        let r = current_thread().block_on(q.get_async());
        assert_eq!(r, Err(GetError::Disconnected));
        child.join().unwrap();
        // Killed rather than exiting: the same.
        let q: Queue<u32> = Queue::new().unwrap();
        let child = Process::new(sleep_forever_holding, q.clone()).start_method(method).start().unwrap();
        let r = multi_thread().block_on(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            child.kill().unwrap();
            q.get_async().await
        });
        assert_eq!(r, Err(GetError::Disconnected));
    }
}

fn sleep_forever_holding(q: Queue<u32>) {
    let _q = q;
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn put_async_waits_for_room_in_a_bounded_queue() {
    let _w = watchdog(LIMIT);
    let q: Queue<u32> = Queue::with_maxsize(1).unwrap();
    let consumer = q.clone();
    let _other = q.clone();
    multi_thread().block_on(async {
        q.put_async(1).await.unwrap();
        let taker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            consumer.get().unwrap()
        });
        // Full: waits until the other thread takes the first.
        q.put_async(2).await.unwrap();
        assert_eq!(taker.join().unwrap(), 1);
        assert_eq!(q.get_async().await.unwrap(), 2);
        // A put dropped part-way put nothing.
        q.put_async(3).await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(20), q.put_async(4)).await.is_err());
        assert_eq!(q.get().unwrap(), 3);
        assert!(q.try_get().is_err());
    });
    // Full with nobody else to take: Disconnected, with the value back.
    let alone: Queue<u32> = Queue::with_maxsize(1).unwrap();
    alone.put(1).unwrap();
    match current_thread().block_on(alone.put_async(2)) {
        Err(PutError::Disconnected(2)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn simple_and_joinable_queues_have_the_same_futures() {
    let _w = watchdog(LIMIT);
    let s: SimpleQueue<String> = SimpleQueue::new().unwrap();
    let j: JoinableQueue<u8> = JoinableQueue::new().unwrap();
    smol::block_on(async {
        s.put_async("a".to_string()).await.unwrap();
        assert_eq!(s.get_async().await.unwrap(), "a");
        j.put_async(5).await.unwrap();
        assert_eq!(j.get_async().await.unwrap(), 5);
        j.task_done().unwrap();
    });
    assert_eq!(j.unfinished(), 0);
}

fn send_later(conn: multiproc::Connection<String>) {
    std::thread::sleep(Duration::from_millis(100));
    conn.send(&"late".to_string()).unwrap();
}

#[test]
fn recv_async_gets_a_message_then_disconnected_when_the_peer_is_gone() {
    let _w = watchdog(LIMIT);
    for method in common::METHODS {
        let (a, b) = Pipe::<String>::new().unwrap();
        let child = Process::new(send_later, b).start_method(method).start().unwrap();
        smol::block_on(async {
            assert_eq!(a.recv_async().await.unwrap(), "late");
            assert_eq!(a.recv_async().await, Err(RecvError::Disconnected));
        });
        child.join().unwrap();
    }
    // Cancelled part-way: the message is there for the next receive.
    let (a, b) = Pipe::<u32>::new().unwrap();
    current_thread().block_on(async {
        // (The other end is open: nothing comes, the timeout passes.)
        assert!(tokio::time::timeout(Duration::from_millis(20), a.recv_async()).await.is_err());
        b.send_async(&9).await.unwrap();
        assert_eq!(a.recv(), Ok(9));
    });
}

fn double_later(x: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(100));
    x * 2
}

fn big_result(n: usize) -> Vec<u8> {
    vec![7; n]
}

#[test]
fn join_async_waits_for_the_end_of_a_child() {
    let _w = watchdog(LIMIT);
    for method in common::METHODS {
        let mut child = Process::new(double_later, 21).start_method(method).start().unwrap();
        assert_eq!(current_thread().block_on(child.join_async()).unwrap(), 42);
        // A result larger than a socket's buffer: the future reads it as it comes.
        let mut child = Process::new(big_result, 4 << 20).start_method(method).start().unwrap();
        assert_eq!(multi_thread().block_on(child.join_async()).unwrap().len(), 4 << 20);
    }
}

fn set_later(e: Event) {
    std::thread::sleep(Duration::from_millis(100));
    e.set();
}

#[test]
fn event_wait_async_wakes_when_another_process_sets_it() {
    let _w = watchdog(LIMIT);
    let e = Event::new().unwrap();
    let child = Process::new(set_later, e.clone()).start().unwrap();
    current_thread().block_on(e.wait_async()).unwrap();
    assert!(e.is_set());
    child.join().unwrap();
    // Nobody else could set it: abandoned, not a hang.
    let alone = Event::new().unwrap();
    assert!(smol::block_on(alone.wait_async()).is_err());
}

#[test]
fn futures_waiting_on_many_queues_share_a_few_waker_threads() {
    let _w = watchdog(LIMIT);
    let queues: Vec<(Queue<u32>, Queue<u32>)> = (0..300)
        .map(|_| {
            let q = Queue::new().unwrap();
            (q.clone(), q)
        })
        .collect();
    let rt = multi_thread();
    let got = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (q, _) in &queues {
            let q = q.clone();
            set.spawn(async move { q.get_async().await });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // 300 distinct words: three threads of 127 (and an epoll thread, if a test before
        // started one).
        let waker_threads = multiproc::__private::waker_threads();
        assert!((1..=4).contains(&waker_threads), "{waker_threads} waker threads");
        for (i, (_, q)) in queues.iter().enumerate() {
            q.put(i as u32).unwrap();
        }
        let mut got = Vec::new();
        while let Some(r) = set.join_next().await {
            got.push(r.unwrap().unwrap());
        }
        got.sort_unstable();
        got
    });
    assert_eq!(got, (0..300).collect::<Vec<_>>());
}

#[test]
fn a_pending_future_polled_by_hand_is_woken() {
    let _w = watchdog(LIMIT);
    // No runtime: a waker that unparks this thread.
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let q: Queue<u32> = Queue::new().unwrap();
    let other = q.clone();
    let mut fut = std::pin::pin!(q.get_async());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    let putter = std::thread::spawn(move || other.put(5).unwrap());
    let got = loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            break v;
        }
        std::thread::park();
    };
    assert_eq!(got, Ok(5));
    putter.join().unwrap();
}

fn hold_lock_then_release(lock: multiproc::Lock) {
    let guard = lock.acquire().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    drop(guard);
}

fn hold_lock_and_die(lock: multiproc::Lock) {
    let guard = lock.acquire().unwrap();
    guard.leave_locked();
    std::process::abort();
}

#[test]
fn acquire_async_waits_for_a_holder_in_another_process() {
    let _w = watchdog(LIMIT);
    let lock = multiproc::Lock::new().unwrap();
    let child = Process::new(hold_lock_then_release, lock.clone()).start().unwrap();
    assert!(common::eventually(Duration::from_secs(30), || lock.locked()));
    current_thread().block_on(async {
        let guard = lock.acquire_async().await.unwrap();
        assert_eq!(lock.holder(), Some(std::process::id()));
        drop(guard);
    });
    child.join().unwrap();
    // A holder that dies: its lock is taken over, and the future says so.
    let child = Process::new(hold_lock_and_die, lock.clone()).start().unwrap();
    let _ = child.join();
    assert!(lock.locked());
    let guard = smol::block_on(lock.acquire_async()).unwrap();
    assert!(guard.owner_died(), "the holder died: the guard says so");
    drop(guard);
    assert!(!lock.locked());
}

#[test]
fn wait_async_is_ready_with_the_objects_ready() {
    let _w = watchdog(LIMIT);
    let (a, b) = Pipe::<u8>::new().unwrap();
    let q: Queue<u8> = Queue::new().unwrap();
    let _other = q.clone();
    let mut child = Process::new(double_later, 1).start().unwrap();
    let ready = multi_thread().block_on(async {
        let watched: [&(dyn multiproc::Waitable + Sync); 3] = [&a, &q, &child];
        // Nothing ready: the runtime's timeout passes.
        assert!(tokio::time::timeout(Duration::from_millis(20), multiproc::wait_async(&watched)).await.is_err());
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            b.send(&1).unwrap();
            b
        });
        let ready = multiproc::wait_async(&watched).await;
        drop(sender.join().unwrap());
        ready
    });
    assert!(ready.contains(&0) || ready.contains(&2), "{ready:?}");
    // The child's end, through its pidfd.
    let watched: [&(dyn multiproc::Waitable + Sync); 1] = [&child];
    assert_eq!(current_thread().block_on(multiproc::wait_async(&watched)), [0]);
    assert_eq!(smol::block_on(child.join_async()).unwrap(), 2);
}
