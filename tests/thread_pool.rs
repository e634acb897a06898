//! `ThreadPool`: `Pool`'s API on threads of this process, for I/O-bound work.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, watchdog};
use multiproc::{ApplyOptions, Error, MapOptions, PoolError, ResultTimeoutError, TaskError, ThreadPool};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn apply_and_apply_async_return_results() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(3).unwrap();
    assert_eq!(pool.processes(), 3);
    assert_eq!(pool.apply(|x: u32| x + 1, 41).unwrap(), 42);
    let pending: Vec<_> = (0..10).map(|i| pool.apply_async(|x: u64| x * x, i).unwrap()).collect();
    let results: Vec<u64> = pending.into_iter().map(|r| r.get().unwrap()).collect();
    assert_eq!(results, (0..10).map(|i| i * i).collect::<Vec<_>>());
}

#[test]
fn callbacks_run_in_the_parent_with_the_result_or_the_error() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(2).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let ok = seen.clone();
    let bad = seen.clone();
    let r = pool
        .apply_async_with(
            |x: u32| x * 10,
            4,
            ApplyOptions::new().callback(move |v: &u32| ok.lock().unwrap().push(format!("ok {v}"))),
        )
        .unwrap();
    assert_eq!(r.get().unwrap(), 40);
    let r = pool
        .apply_async_with(
            |_: u32| -> u32 { panic!("nope") },
            4,
            ApplyOptions::new().error_callback(move |e: &TaskError| bad.lock().unwrap().push(format!("err {e}"))),
        )
        .unwrap();
    assert!(matches!(r.get(), Err(TaskError::Panicked(info)) if info.message == "nope"));
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], "ok 40");
    assert!(seen[1].starts_with("err ") && seen[1].contains("nope"), "{seen:?}");
}

/// A callback that panics loses neither its call's result nor the thread that ran it: a
/// one-thread pool answers the next call. (The thread died with it: the result never came,
/// and every later task waited forever.)
#[test]
fn a_panicking_callback_neither_loses_its_result_nor_the_thread() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(1).unwrap();
    let mut r = pool
        .apply_async_with(|x: u32| x * 10, 4, ApplyOptions::new().callback(|_: &u32| panic!("the callback fails")))
        .unwrap();
    assert_eq!(r.get_timeout(Duration::from_secs(30)), Ok(40));
    let mut r = pool
        .map_async_with(|x: u32| x, 0..3, MapOptions::new().callback(|_: &[u32]| panic!("so does this one")))
        .unwrap();
    assert_eq!(r.get_timeout(Duration::from_secs(30)), Ok(vec![0, 1, 2]));
    let options = ApplyOptions::new().error_callback(|_| panic!("and this one"));
    let mut r = pool.apply_async_with(|_: u32| -> u32 { panic!("nope") }, 4, options).unwrap();
    assert!(matches!(r.get_timeout(Duration::from_secs(30)), Err(ResultTimeoutError::Task(TaskError::Panicked(_)))));
    let mut r = pool.apply_async(|x: u32| x + 1, 1).unwrap();
    assert_eq!(r.get_timeout(Duration::from_secs(30)), Ok(2));
}

/// A value whose `Drop` panics (unless the thread is already unwinding).
struct Grenade;

impl Drop for Grenade {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a Grenade goes off when dropped");
        }
    }
}

/// A result nobody kept is dropped by the worker thread that made it: a panic in its `Drop`
/// (user code) does not end the thread. (It did: a one-thread pool never answered again.)
#[test]
fn a_result_whose_drop_panics_does_not_end_its_thread() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(1).unwrap();
    drop(
        pool.apply_async(
            |_: u32| {
                // Dropped by the pool: the `AsyncResult` is gone when the result comes.
                std::thread::sleep(Duration::from_millis(200));
                Grenade
            },
            0,
        )
        .unwrap(),
    );
    let mut r = pool.apply_async(|x: u32| x + 1, 1).unwrap();
    assert_eq!(r.get_timeout(Duration::from_secs(30)), Ok(2));
}

/// A task may hold the last handle of its own pool (an `Arc<ThreadPool>`, an `IMap`): its
/// drop terminates the pool and joins the other threads, not its own (which ends after the
/// task). `join` from a task is `PoolError::JoinFromWorker`, never a deadlock or a panic.
/// (Both panicked: std refuses to join the current thread, "Resource deadlock avoided".)
#[test]
fn a_pool_dropped_or_joined_from_its_own_task_neither_hangs_nor_panics() {
    let _w = watchdog(LIMIT);
    let pool = Arc::new(ThreadPool::new(2).unwrap());
    let own = pool.clone();
    let mut joined = pool
        .apply_async(
            move |_: u32| {
                own.close();
                own.join()
            },
            0,
        )
        .unwrap();
    assert!(matches!(joined.get_timeout(Duration::from_secs(30)), Ok(Err(PoolError::JoinFromWorker))));
    // The pool is closed, its threads still there: a join from outside waits for them.
    pool.join().unwrap();

    let pool = Arc::new(ThreadPool::new(2).unwrap());
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let own = Mutex::new((Some(pool.clone()), wait));
    let mut dropped = pool
        .apply_async(
            move |_: u32| {
                let mut own = own.lock().unwrap();
                own.1.recv().unwrap();
                // The last handle: the pool ends here.
                drop(own.0.take());
                7
            },
            0,
        )
        .unwrap();
    drop(pool);
    go.send(()).unwrap();
    assert_eq!(dropped.get_timeout(Duration::from_secs(30)), Ok(7));
}

#[test]
fn map_keeps_order_and_honours_chunksize() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(4).unwrap();
    let out = pool.map(|x: usize| x * 2, 0..1000).unwrap();
    assert_eq!(out, (0..1000).map(|x| x * 2).collect::<Vec<_>>());
    let out = pool.map_with(|x: usize| x + 1, 0..10, MapOptions::new().chunksize(3)).unwrap();
    assert_eq!(out, (1..11).collect::<Vec<_>>());
    assert!(pool.map(|x: u8| x, Vec::new()).unwrap().is_empty());
}

#[test]
fn a_panicking_item_fails_map_and_the_pool_goes_on() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(2).unwrap();
    let err = pool.map(|x: u32| if x == 7 { panic!("seven") } else { x }, 0..20).unwrap_err();
    assert!(matches!(err, Error::Task(TaskError::Panicked(ref info)) if info.message == "seven"), "{err}");
    assert_eq!(pool.map(|x: u32| x, 0..5).unwrap(), [0, 1, 2, 3, 4]);
    let stats = pool.stats();
    assert!(stats.tasks_failed >= 1 && stats.tasks_done >= 5, "{stats:?}");
}

#[test]
fn map_async_callback_gets_all_results() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(2).unwrap();
    let total = Arc::new(AtomicUsize::new(0));
    let t = total.clone();
    let r = pool
        .map_async_with(
            |x: usize| x,
            1..=100,
            MapOptions::new().callback(move |all: &[usize]| t.store(all.iter().sum(), Ordering::SeqCst)),
        )
        .unwrap();
    assert_eq!(r.get().unwrap().len(), 100);
    assert_eq!(total.load(Ordering::SeqCst), 5050);
}

#[test]
fn imap_is_lazy_and_ordered_and_works_on_an_endless_input() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(3).unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let mut it = pool
        .imap(
            move |x: u64| {
                s.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis((x * 7) % 5));
                x * x
            },
            0..,
        )
        .unwrap();
    let first: Vec<u64> = it.by_ref().take(20).map(Result::unwrap).collect();
    assert_eq!(first, (0..20).map(|x| x * x).collect::<Vec<_>>());
    // The look-ahead is bounded: the endless input was not consumed.
    std::thread::sleep(Duration::from_millis(50));
    assert!(started.load(Ordering::SeqCst) < 20 + 4 * 3 + 1, "{}", started.load(Ordering::SeqCst));
}

/// As `tests/pool.rs` `an_endless_imap_of_a_terminated_pool_ends`. Before (aud91):
/// `Terminated` for ever ("10001 items, 9998 errors" at the cap, after a `terminate`).
#[test]
fn an_endless_imap_of_a_terminated_pool_ends() {
    let _w = watchdog(LIMIT);
    for terminate in [true, false] {
        let pool = ThreadPool::new(2).unwrap();
        let mut it = pool.imap_with(|x: u64| x * x, 0u64.., MapOptions::new().chunksize(2).lookahead(2)).unwrap();
        assert_eq!(it.by_ref().take(5).map(Result::unwrap).collect::<Vec<_>>(), [0, 1, 4, 9, 16]);
        if terminate {
            pool.terminate();
        } else {
            pool.close();
            let more: Vec<u64> = it.by_ref().take(50).map(Result::unwrap).collect();
            assert_eq!(more, (5..55).map(|x| x * x).collect::<Vec<_>>());
            pool.join().unwrap();
        }
        let rest: Vec<_> = it.by_ref().take(10_000).collect();
        assert!(rest.len() < 10_000, "terminate {terminate}: {} items after it", rest.len());
        assert!(matches!(rest.last(), Some(Err(TaskError::Terminated))), "terminate {terminate}: {:?}", rest.last());
        assert!(it.next().is_none());
    }
}

/// As `tests/pool.rs` `an_imap_made_before_close_goes_on_to_the_end`. Before (aud91): 92
/// of the 95 items after the `close` failed `Terminated`.
#[test]
fn an_imap_made_before_close_goes_on_to_the_end() {
    let _w = watchdog(LIMIT);
    for ordered in [true, false] {
        let pool = ThreadPool::new(2).unwrap();
        let options = MapOptions::new().chunksize(2).lookahead(2);
        let mut it = if ordered {
            pool.imap_with(|x: u64| x * x, 0..100u64, options).unwrap()
        } else {
            pool.imap_unordered_with(|x: u64| x * x, 0..100u64, options).unwrap()
        };
        let mut got: Vec<_> = it.by_ref().take(5).map(|r| r.map_err(|e| e.to_string())).collect();
        pool.close();
        assert!(pool.apply(|x: u64| x * x, 3).is_err(), "a closed pool takes no new call");
        got.extend(it.map(|r| r.map_err(|e| e.to_string())));
        if !ordered {
            got.sort();
        }
        assert_eq!(got, (0..100).map(|x| Ok(x * x)).collect::<Vec<_>>(), "ordered {ordered}");
        pool.join().unwrap();
    }
    // Joined before its end: cut.
    let pool = ThreadPool::new(2).unwrap();
    let mut it = pool.imap_with(|x: u64| x * x, 0..100u64, MapOptions::new().chunksize(2).lookahead(2)).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 0);
    pool.close();
    pool.join().unwrap();
    let rest: Vec<_> = it.collect();
    assert!(rest.len() < 99, "{} items after the join", rest.len());
    assert!(matches!(rest.last(), Some(Err(TaskError::Terminated))), "{:?}", rest.last());
    // Dropped half read: the join ends.
    let pool = ThreadPool::new(2).unwrap();
    let mut it = pool.imap_with(|x: u64| x * x, 0u64.., MapOptions::new().chunksize(2).lookahead(2)).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 0);
    pool.close();
    drop(it);
    pool.join().unwrap();
}
#[test]
fn imap_unordered_yields_every_result_once() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(4).unwrap();
    let mut got: Vec<u32> = pool
        .imap_unordered(
            |x: u32| {
                std::thread::sleep(Duration::from_millis(u64::from(10 - x % 10)));
                x
            },
            0..50,
        )
        .unwrap()
        .map(Result::unwrap)
        .collect();
    got.sort();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

#[test]
fn starmap_unpacks_tuples() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(2).unwrap();
    fn add(a: i32, b: i32) -> i32 {
        a + b
    }
    assert_eq!(pool.starmap(add, [(1, 2), (3, 4)]).unwrap(), [3, 7]);
    assert_eq!(pool.starmap_async(|a: u8, b: u8, c: u8| a + b + c, [(1, 1, 1)]).unwrap().get().unwrap(), [3]);
}

#[test]
fn the_initializer_runs_once_per_thread() {
    let _w = watchdog(LIMIT);
    let inits = Arc::new(AtomicUsize::new(0));
    let i = inits.clone();
    let pool = ThreadPool::builder().processes(3).initializer(move || {
        i.fetch_add(1, Ordering::SeqCst);
    });
    let pool = pool.build().unwrap();
    pool.map(|x: u8| x, 0..30).unwrap();
    pool.close();
    pool.join().unwrap();
    assert_eq!(inits.load(Ordering::SeqCst), 3);
}

/// A task that joins its own closed pool while another thread is already in `join`: the
/// task gets `JoinFromWorker` and the outside join returns once the task ended (review133
/// H1: the outside join held the threads' lock through its joins, so the task's `join`
/// waited on that lock, before its own-thread check, for ever).
#[test]
fn a_task_joining_its_pool_while_another_thread_joins_gets_join_from_worker() {
    let _w = watchdog(LIMIT);
    let pool = Arc::new(ThreadPool::new(1).unwrap());
    let own = pool.clone();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let wait = Mutex::new(wait);
    let mut task = pool
        .apply_async(
            move |_: u32| {
                wait.lock().unwrap().recv().unwrap();
                matches!(own.join(), Err(PoolError::JoinFromWorker))
            },
            0,
        )
        .unwrap();
    pool.close();
    let joiner = pool.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(joiner.join()).unwrap());
    // Ordering only (the outside join under way first), not a measure: if the task's join
    // came first the test passes anyway, it cannot fail spuriously.
    std::thread::sleep(Duration::from_millis(500));
    go.send(()).unwrap();
    let got = task.get_timeout(Duration::from_secs(20));
    let joined = rx.recv_timeout(Duration::from_secs(20));
    println!("the task's join gave JoinFromWorker: {got:?}; the outside join: {joined:?}");
    if got.is_err() {
        // The threads cannot be killed: end the process rather than wait for the watchdog.
        println!("HANG: the task's join and the outside join wait for each other");
        std::process::exit(3);
    }
    assert_eq!(got, Ok(true));
    assert!(matches!(joined, Ok(Ok(()))), "{joined:?}");
}

#[test]
fn join_before_close_is_an_error_and_closed_pools_refuse_work() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(2).unwrap();
    assert!(matches!(pool.join(), Err(PoolError::StillRunning)));
    pool.close();
    assert!(matches!(pool.apply_async(|x: u8| x, 1), Err(PoolError::Closed)));
    pool.join().unwrap();
}

#[test]
fn terminate_fails_the_queued_tasks() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(1).unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let r = running.clone();
    let slow = pool
        .apply_async(
            move |ms: u64| {
                r.store(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(ms));
            },
            200,
        )
        .unwrap();
    while running.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let queued: Vec<_> = (0..5).map(|i| pool.apply_async(|x: u32| x, i).unwrap()).collect();
    pool.terminate();
    pool.join().unwrap();
    assert!(slow.get().is_ok(), "a running task finishes: threads cannot be killed");
    for q in queued {
        assert!(matches!(q.get(), Err(TaskError::Terminated)));
    }
}

#[test]
fn get_timeout_leaves_the_result_available() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(1).unwrap();
    let mut r = pool.apply_async(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 100).unwrap();
    assert!(!r.ready());
    assert!(r.successful().is_err(), "not ready yet");
    assert!(r.get_timeout(Duration::from_millis(1)).is_err());
    assert!(r.wait_timeout(Duration::from_secs(10)));
    assert_eq!(r.successful(), Ok(true));
    assert!(r.get_timeout(Duration::from_secs(1)).is_ok());
}

#[test]
fn imap_reports_a_task_error_at_its_position_for_every_chunk_size() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(2).unwrap();
    for chunksize in [1, 2, 3, 7] {
        let square_unless_three = |x: u64| {
            assert_ne!(x, 3, "three");
            x * x
        };
        let all: Vec<_> =
            pool.imap_with(square_unless_three, 0..20, MapOptions::new().chunksize(chunksize)).unwrap().collect();
        assert_eq!(all.len(), 20, "chunksize {chunksize}");
        let (before, error) = common::until_error(all.into_iter());
        assert_eq!(before, [0, 1, 4], "chunksize {chunksize}");
        assert!(matches!(error, Some(TaskError::Panicked(_))), "{error:?}");
    }
}

#[test]
fn imap_reports_a_panicking_input_after_the_results_before_it() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(2).unwrap();
    for chunksize in [1, 2, 3, 7] {
        for at in [0u64, 3, 8] {
            let input = (0..100u64).inspect(move |&x| assert_ne!(x, at, "the input broke"));
            let mut results = pool.imap_with(|x: u64| x * x, input, MapOptions::new().chunksize(chunksize)).unwrap();
            let (before, error) = common::until_error(results.by_ref());
            assert_eq!(before, (0..at).map(|x| x * x).collect::<Vec<_>>(), "chunksize {chunksize}, at {at}");
            assert!(
                matches!(error, Some(TaskError::InputPanicked(ref p)) if p.message.contains("the input broke")),
                "{error:?}"
            );
            assert!(results.next().is_none(), "the input ended with its panic");
        }
    }
}

#[test]
fn a_failed_map_drops_its_queued_tasks_and_the_next_call_runs_at_once() {
    let _w = watchdog(LIMIT);
    let started = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(AtomicBool::new(false));
    let pool = ThreadPool::new(2).unwrap();
    let (counter, opened) = (started.clone(), gate.clone());
    // Item 0 fails at once; the others count themselves and wait for the gate, so that
    // those running when the map fails are still running when it has failed.
    let fail_first_or_wait = move |x: u32| {
        assert_ne!(x, 0, "the first item fails");
        counter.fetch_add(1, Ordering::SeqCst);
        while !opened.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        x
    };
    let failed = pool.map_with(fail_first_or_wait, 0..40, MapOptions::new().chunksize(1));
    assert!(matches!(failed, Err(Error::Task(TaskError::Panicked(_)))), "{failed:?}");
    // Threads cannot be stopped: the task running when the map failed finishes; what was
    // queued is dropped, not run behind the apply.
    gate.store(true, Ordering::SeqCst);
    assert_eq!(pool.apply(|x: u32| x + 1, 1).unwrap(), 2);
    // The threads count a cancelled job as they drain it: the other thread may still be
    // counting the last one it took when the apply is done. 40 items and the apply.
    let settled = || {
        let s = pool.stats();
        s.tasks_done + s.tasks_failed + s.tasks_cancelled == 41
    };
    assert!(eventually(LIMIT, settled), "{:?}", pool.stats());
    let ran = started.load(Ordering::SeqCst);
    assert!(ran <= 2, "{ran} of the 39 waiting items started");
    let stats = pool.stats();
    assert_eq!(stats.tasks_cancelled as usize, 39 - ran, "{stats:?}");
}

#[test]
fn zero_threads_is_an_error_as_in_python() {
    let _w = watchdog(LIMIT);
    assert!(matches!(ThreadPool::new(0), Err(Error::Pool(PoolError::NoProcesses))));
    assert!(matches!(ThreadPool::builder().processes(0).build(), Err(Error::Pool(PoolError::NoProcesses))));
}

/// More threads than the system can run at all (`threads-max`, `pid_max`) is refused
/// before any is started, typed: `ThreadPool::new(usize::MAX)` panicked ("capacity
/// overflow"), and `1 << 40` would have started threads until the system refused one.
#[test]
fn more_threads_than_the_system_allows_is_a_typed_error() {
    let _w = watchdog(LIMIT);
    // Each thread takes a pid too: more than `pid_max` is refused as well (review81 L2).
    let pid_max: usize = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    for asked in [usize::MAX, 1 << 40, pid_max + 1] {
        match ThreadPool::new(asked) {
            Err(Error::Pool(PoolError::TooManyWorkers { asked: a, max })) => assert!(a == asked && max < asked),
            other => panic!("{asked}: {:?}", other.map(|p| p.processes())),
        }
    }
}

#[test]
fn a_chunk_size_of_zero_is_an_error_as_in_python() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(1).unwrap();
    let zero = || MapOptions::new().chunksize(0);
    assert!(matches!(pool.map_with(|x: u32| x * x, [1, 2], zero()), Err(Error::Pool(PoolError::NoChunkSize))));
    assert!(matches!(pool.imap_with(|x: u32| x * x, [1, 2], zero()), Err(PoolError::NoChunkSize)));
    assert_eq!(pool.map_with(|x: u32| x * x, [1, 2], MapOptions::new().chunksize(1)).unwrap(), [1, 4]);
    // A lookahead of zero likewise (aud108 L3).
    let none_ahead = MapOptions::new().lookahead(0);
    assert!(matches!(pool.imap_with(|x: u32| x * x, [1, 2], none_ahead), Err(PoolError::NoLookahead)));
}

/// As for a process pool: `imap`'s window past `usize::MAX` items is all of it, not an
/// overflow.
#[test]
fn an_imap_window_past_any_count_is_all_of_it_not_an_overflow() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(1).unwrap();
    for options in [MapOptions::new().chunksize(usize::MAX), MapOptions::new().chunksize(2).lookahead(usize::MAX)] {
        let got: Vec<u32> = pool.imap_with(|x: u32| x * x, 0..5, options).unwrap().map(Result::unwrap).collect();
        assert_eq!(got, [0, 1, 4, 9, 16]);
    }
}

#[test]
fn timeouts_past_584_years_mean_no_timeout() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(2).unwrap();
    for timeout in [Duration::from_secs(18_446_744_074), Duration::MAX] {
        let mut result = pool.apply_async(|x: u32| x + 1, 1).unwrap();
        assert_eq!(result.get_timeout(timeout), Ok(2));
        assert!(pool.apply_async(|x: u32| x, 1).unwrap().wait_timeout(timeout));
        let mut results = pool.imap(|x: u32| x * 2, 0..3).unwrap();
        assert_eq!(results.next_timeout(timeout), Ok(Some(Ok(0))));
    }
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn describe(name: String, times: usize, shout: bool) -> String {
    let line = format!("{name} ").repeat(times);
    if shout { line.to_uppercase() } else { line }
}

fn divide(a: u32, b: u32) -> u32 {
    if b == 0 {
        panic!("divide {a} by zero");
    }
    a / b
}

#[test]
fn apply_takes_functions_of_several_arguments_as_a_tuple() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(2).unwrap();
    assert_eq!(pool.apply(add, (2, 3)).unwrap(), 5);
    assert_eq!(pool.apply(describe, ("bob".to_string(), 2, true)).unwrap(), "BOB BOB ");
    assert_eq!(pool.apply(|x: u64| x * x, 4).unwrap(), 16, "one argument is itself, as before");
    let factor = Arc::new(3u64);
    assert_eq!(pool.apply(move |a: u64, b: u64| (a + b) * *factor, (1, 2)).unwrap(), 9, "closures may capture");
    let chosen: fn(u64, u64) -> u64 = add;
    assert_eq!(pool.apply(chosen, (1, 1)).unwrap(), 2, "a function pointer");
    let pending = pool.apply_async(add, (20, 22)).unwrap();
    let three = pool.apply_async(describe, ("ann".to_string(), 1, false)).unwrap();
    assert_eq!(pending.get().unwrap(), 42);
    assert_eq!(three.get().unwrap(), "ann ");
    let (tx, rx) = std::sync::mpsc::channel();
    let options = ApplyOptions::new().callback(move |r: &u64| tx.send(*r).unwrap());
    assert_eq!(pool.apply_async_with(add, (1, 1), options).unwrap().get().unwrap(), 2);
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), 2);
}

#[test]
fn a_task_of_several_arguments_that_panics_fails_alone() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(2).unwrap();
    match pool.apply(divide, (7, 0)) {
        Err(Error::Task(TaskError::Panicked(info))) => {
            assert_eq!(info.message, "divide 7 by zero");
            assert!(info.location.unwrap().starts_with("tests/thread_pool.rs:"));
        }
        other => panic!("{other:?}"),
    }
    match pool.apply_async(divide, (9, 0)).unwrap().get() {
        Err(TaskError::Panicked(info)) => assert_eq!(info.message, "divide 9 by zero"),
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(divide, (9, 3)).unwrap(), 3, "the pool goes on");
}

/// A task, or a callback (which runs on the worker thread after its task), that maps on its
/// own `ThreadPool` while every thread of it is busy (here its only one) runs the queued
/// jobs itself while it waits (a blocking `map`, `apply`, an `imap`, an awaited result).
/// It waited for ever, for tasks that only that thread could run ("left: Err(Timeout)";
/// Python's `ThreadPool` does the same).
#[test]
fn a_task_or_callback_that_maps_on_its_own_busy_thread_pool_gets_its_results() {
    let pool = Arc::new(ThreadPool::new(1).unwrap());
    let own = pool.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let options = ApplyOptions::new().callback(move |_: &u32| {
        tx.send(own.map(|x: u32| x + 1, 1..=3u32).map_err(|e| e.to_string())).unwrap();
    });
    drop(pool.apply_async_with(|x: u32| x, 1, options).unwrap());
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(Ok(vec![2, 3, 4])));
    let own = pool.clone();
    let mut r =
        pool.apply_async(move |x: u32| own.map(move |y: u32| y + x, 1..=3u32).map_err(|e| e.to_string()), 1).unwrap();
    assert_eq!(r.get_timeout(Duration::from_secs(30)), Ok(Ok(vec![2, 3, 4])));
    let own = pool.clone();
    let mut r = pool
        .apply_async(
            move |x: u32| {
                let nested = own.apply(move |y: u32| y * 10, x).map_err(|e| e.to_string());
                let streamed: Result<Vec<u32>, String> = match own.imap(|y: u32| y + 1, 1..=3u32) {
                    Ok(imap) => imap.map(|r| r.map_err(|e| e.to_string())).collect(),
                    Err(e) => Err(e.to_string()),
                };
                (nested, streamed)
            },
            2,
        )
        .unwrap();
    assert_eq!(r.get_timeout(Duration::from_secs(30)), Ok((Ok(20), Ok(vec![2, 3, 4]))));
    // Nothing left running: the pool ends as any.
    drop(pool);
}

/// A pool of `threads` threads whose initializer panics ("no threads today") in each once
/// told to: a message on the sender returned (one thread each), or its drop (all).
fn failing_when_told(threads: usize) -> (ThreadPool, std::sync::mpsc::Sender<()>) {
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let wait = Mutex::new(wait);
    let pool = ThreadPool::builder()
        .processes(threads)
        .initializer(move || {
            let _ = wait.lock().unwrap().recv();
            panic!("no threads today");
        })
        .build()
        .unwrap();
    (pool, go)
}

/// An argument whose `Drop` panics when armed.
struct ArmedDrop(bool);

impl Drop for ArmedDrop {
    fn drop(&mut self) {
        if self.0 && !std::thread::panicking() {
            panic!("an ArmedDrop goes off when dropped");
        }
    }
}

/// A `ThreadPool` whose initializer panics in every thread fails its work with that panic
/// (the threads are gone: a task queued to them waited for ever): the tasks queued before
/// the last thread failed (here all of them: the initializers wait until they are queued),
/// each with its error callback called once, and at once the later calls (an `imap` yields
/// the error for each item); `close` and `join` end it. One whose initializer panics in
/// some threads only runs its work on the others.
#[test]
fn a_thread_pool_whose_initializer_panics_fails_its_work_with_its_message() {
    let _w = watchdog(LIMIT);
    let is_why = |e: &TaskError| matches!(e, TaskError::Panicked(info) if info.message == "no threads today");
    let (pool, go) = failing_when_told(2);
    let called = Arc::new(AtomicUsize::new(0));
    let counted = || {
        let called = called.clone();
        move |_: &TaskError| {
            called.fetch_add(1, Ordering::SeqCst);
        }
    };
    let queued: Vec<_> = (0..3)
        .map(|x| pool.apply_async_with(|x: u32| x + 1, x, ApplyOptions::new().error_callback(counted())).unwrap())
        .collect();
    let mapped =
        pool.map_async_with(|x: u32| x, 0..3, MapOptions::new().chunksize(1).error_callback(counted())).unwrap();
    drop(go);
    for r in queued {
        let got = r.get();
        assert!(got.as_ref().is_err_and(is_why), "a task queued before the failure answered {got:?}");
    }
    let got = mapped.get();
    assert!(got.as_ref().is_err_and(is_why), "a map queued before the failure answered {got:?}");
    assert!(eventually(LIMIT / 4, || called.load(Ordering::SeqCst) >= 4), "the error callbacks ran");
    assert_eq!(called.load(Ordering::SeqCst), 4, "each error callback ran once");
    assert!(matches!(pool.apply(|x: u32| x, 1), Err(Error::Task(e)) if is_why(&e)));
    // A later call fails at once, on the caller's thread, its task (here an argument whose
    // `Drop` panics) dropped under a catch: the panic came out of `apply_async`, the call's
    // result lost (review166 L3).
    let got = std::panic::catch_unwind(|| {
        pool.apply_async(|b: ArmedDrop| !std::mem::replace(&mut { b }.0, false), ArmedDrop(true))
    });
    let got = got.map_err(|_| "apply_async panicked").map(|r| r.unwrap().get());
    assert!(matches!(&got, Ok(Err(e)) if is_why(e)), "{got:?}");
    assert!(matches!(pool.map(|x: u32| x, 0..4), Err(Error::Task(e)) if is_why(&e)));
    let items: Vec<_> = pool.imap(|x: u32| x, 0..3).unwrap().collect();
    assert!(items.len() == 3 && items.iter().all(|r| r.as_ref().is_err_and(is_why)), "imap yielded {items:?}");
    pool.close();
    pool.join().unwrap();

    let first = Arc::new(AtomicBool::new(true));
    let pool = ThreadPool::builder()
        .processes(2)
        .initializer(move || {
            if first.swap(false, Ordering::SeqCst) {
                panic!("only the first thread fails");
            }
        })
        .build()
        .unwrap();
    assert_eq!(pool.map(|x: u32| x * 2, 0..4).unwrap(), [0, 2, 4, 6]);
    pool.close();
    pool.join().unwrap();
}

/// Forks, as a program's callback on a pool thread would: the child returns (into the pool
/// thread's copy), the parent notes the child's pid in `forked`. No parent-death signal:
/// it follows the thread that forked, which may end first (a thread whose initializer
/// panicked); `common::fork_copy_ended` kills a copy that does not end.
fn fork_from_callback(forked: &AtomicU64) {
    // SAFETY (test): the child returns at once.
    let pid = unsafe { libc::fork() };
    if pid != 0 {
        forked.store(pid as u64, Ordering::SeqCst);
    }
}

/// The fork copy whose pid is in `copy` ended by a clean exit, and only this process ran a
/// callback `marks` records (`what`: what ran in the copy otherwise).
fn the_copy_exited_marking_nothing(copy: &AtomicU64, marks: Marks, what: &str) {
    let status = common::fork_copy_ended(copy.load(Ordering::SeqCst) as i32, LIMIT / 4);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the copy's status: {status:#x}");
    assert_eq!(marks.pids(), [std::process::id()], "{what}");
}

/// A pipe whose write end a callback writes its process's pid into: which processes ran it.
struct Marks {
    read_end: i32,
    write_end: i32,
}

impl Marks {
    fn new() -> Self {
        let mut fds = [0; 2];
        // SAFETY (test): `fds` is a live array of two.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) }, 0);
        Marks { read_end: fds[0], write_end: fds[1] }
    }

    /// A callback that writes this process's pid.
    fn recorder<T>(&self) -> impl Fn(&T) + Send + Sync + 'static {
        let write_end = self.write_end;
        move |_: &T| {
            let me = std::process::id().to_ne_bytes();
            // SAFETY (test): `write_end` is open until `pids` closes it, after the callbacks.
            assert_eq!(unsafe { libc::write(write_end, me.as_ptr().cast(), me.len()) }, 4);
        }
    }

    /// The pids written, in order; closes the pipe.
    fn pids(self) -> Vec<u32> {
        let mut records = [0u8; 64];
        // SAFETY (test): `records` is a live buffer of its length; the ends are ours.
        let n = unsafe { libc::read(self.read_end, records.as_mut_ptr().cast(), records.len()) };
        unsafe {
            libc::close(self.read_end);
            libc::close(self.write_end);
        }
        records[..n.max(0) as usize].chunks(4).map(|c| u32::from_ne_bytes(c.try_into().unwrap())).collect()
    }
}

/// A value whose `Drop` panics (unless already panicking).
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a Bomb goes off when dropped");
        }
    }
}

/// The last thread whose initializer panicked fails the queued tasks in one loop, each
/// under a catch: the task itself (its function and arguments, user values) is dropped
/// there too. It was dropped after the catch: a task holding a value whose `Drop` panics
/// unwound out of the loop, and the tasks queued behind it never failed (`b` waited for
/// ever).
#[test]
fn a_failed_thread_pools_task_whose_drop_panics_keeps_no_other_tasks_error() {
    let _w = watchdog(LIMIT);
    let (pool, go) = failing_when_told(1);
    let bomb = Bomb;
    let a = pool
        .apply_async(
            move |x: u32| {
                let _ = &bomb;
                x
            },
            1,
        )
        .unwrap();
    let b = pool.apply_async(|x: u32| x, 2).unwrap();
    // Both are queued when the only thread's initializer panics.
    go.send(()).unwrap();
    let (a, b) = (a.get(), b.get());
    println!("a: {a:?}; b: {b:?}");
    assert!(matches!(a, Err(TaskError::Panicked(_))), "{a:?}");
    assert!(matches!(b, Err(TaskError::Panicked(_))), "{b:?}");
}

/// review70 L1: the last thread whose initializer panicked fails the queued tasks in one
/// loop, one error callback each; a callback that forks, whose child returns into that
/// loop, ran the next tasks' error callbacks in the copy too (each then ran twice: once
/// there, once in the parent). The copy ends after the callback that forked, as a process
/// pool's does.
#[test]
fn a_fork_in_an_error_callback_of_a_failed_thread_pool_runs_no_other_callback_in_the_copy() {
    let _w = watchdog(LIMIT);
    let marks = Marks::new();
    let (pool, go) = failing_when_told(1);
    let copy = Arc::new(AtomicU64::new(0));
    let forked = copy.clone();
    let fork = move |_: &TaskError| fork_from_callback(&forked);
    let a = pool.apply_async_with(|x: u32| x, 1, ApplyOptions::new().error_callback(fork)).unwrap();
    let b = pool.apply_async_with(|x: u32| x, 2, ApplyOptions::new().error_callback(marks.recorder())).unwrap();
    // Both are queued when the only thread's initializer panics.
    go.send(()).unwrap();
    assert!(matches!(a.get(), Err(TaskError::Panicked(_))));
    assert!(matches!(b.get(), Err(TaskError::Panicked(_))));
    the_copy_exited_marking_nothing(&copy, marks, "the other task's error callback ran in the copy too");
}

/// review70 L1, the worker's loop: a callback that forks, whose child returns into the
/// pool thread's loop, ran the tasks queued behind it in the copy (their callbacks then
/// ran twice), then waited for ever on the parent's job channel. The copy ends after the
/// callback that forked.
#[test]
fn a_fork_in_a_callback_of_a_thread_pool_runs_no_queued_task_in_the_copy() {
    let _w = watchdog(LIMIT);
    let marks = Marks::new();
    let pool = ThreadPool::new(1).unwrap();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let wait = Mutex::new(wait);
    let copy = Arc::new(AtomicU64::new(0));
    let forked = copy.clone();
    let fork = move |_: &u32| fork_from_callback(&forked);
    let task = move |x: u32| {
        let _ = wait.lock().unwrap().recv();
        x
    };
    let a = pool.apply_async_with(task, 1, ApplyOptions::new().callback(fork)).unwrap();
    let b = pool.apply_async_with(|x: u32| x, 2, ApplyOptions::new().callback(marks.recorder())).unwrap();
    // `b` is queued behind `a` when `a`'s callback forks.
    go.send(()).unwrap();
    assert_eq!(a.get(), Ok(1));
    assert_eq!(b.get(), Ok(2));
    the_copy_exited_marking_nothing(&copy, marks, "the task queued behind ran in the copy too");
}

/// review79 L1: an initializer that forks, whose child comes back to the pool thread, has
/// that copy run none of the parent's queued tasks: the copy ran the task queued behind
/// (its callback once in each process), or, none queued, waited for ever on the parent's
/// channel.
#[test]
fn a_fork_in_a_thread_pool_initializer_runs_no_queued_task_in_the_copy() {
    let _w = watchdog(LIMIT);
    let marks = Marks::new();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let wait = Mutex::new(wait);
    let copy = Arc::new(AtomicU64::new(0));
    let forked = copy.clone();
    let pool = ThreadPool::builder()
        .processes(1)
        .initializer(move || {
            let _ = wait.lock().unwrap().recv();
            fork_from_callback(&forked);
        })
        .build()
        .unwrap();
    let b = pool.apply_async_with(|x: u32| x, 2, ApplyOptions::new().callback(marks.recorder())).unwrap();
    // `b` is queued when the initializer forks.
    go.send(()).unwrap();
    assert_eq!(b.get(), Ok(2));
    the_copy_exited_marking_nothing(&copy, marks, "the task queued at the fork ran in the copy too");
}

/// review70 L2: dropping the last `ThreadPool` terminates it and waits for its threads,
/// even while a thread holds the pool for a moment: the drop decided by the `Arc`'s count,
/// which such a thread raises (here the last thread whose initializer panicked, which
/// holds it while it runs the queued tasks' error callbacks), and then returned at once,
/// the threads left running detached.
#[test]
fn dropping_a_thread_pool_waits_for_its_threads_while_one_holds_the_pool() {
    let _w = watchdog(LIMIT);
    let (pool, go) = failing_when_told(1);
    let (entered, in_callback) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = Mutex::new(released);
    let callback_done = Arc::new(AtomicBool::new(false));
    let done = callback_done.clone();
    let callback = move |_: &TaskError| {
        entered.send(()).unwrap();
        let _ = released.lock().unwrap().recv();
        done.store(true, Ordering::SeqCst);
    };
    let _a = pool.apply_async_with(|x: u32| x, 1, ApplyOptions::new().error_callback(callback)).unwrap();
    go.send(()).unwrap();
    in_callback.recv().unwrap();
    // The drop, on a thread of its own: it must wait for the callback.
    let dropped = Arc::new(AtomicBool::new(false));
    let (d, dropper_tid) = (dropped.clone(), Arc::new(std::sync::atomic::AtomicI32::new(0)));
    let t = dropper_tid.clone();
    let dropper = std::thread::spawn(move || {
        t.store(common::tid(), Ordering::SeqCst);
        drop(pool);
        d.store(true, Ordering::SeqCst);
        callback_done.load(Ordering::SeqCst)
    });
    // Either the drop returned (the defect) or it waits.
    let reached = eventually(LIMIT / 4, || {
        dropped.load(Ordering::SeqCst) || common::thread_in_futex_wait(dropper_tid.load(Ordering::SeqCst))
    });
    // Released before the dropper reached the drop, the callback would be over before the
    // drop began, and the test would pass whatever the drop does (review79 L5).
    assert!(reached, "the dropper never reached the drop");
    release.send(()).unwrap();
    assert!(dropper.join().unwrap(), "the drop returned while the pool's thread ran a callback");
}

/// A result taken by `get_timeout` says `Taken` when asked for again, as a process pool's
/// (before, aud91 L1: `Terminated`, of a pool nobody terminated, while `successful()` said
/// `Ok(true)`).
#[test]
fn a_result_taken_by_get_timeout_says_taken_when_asked_again() {
    let _w = watchdog(Duration::from_secs(60));
    let pool = ThreadPool::new(1).unwrap();
    let mut r = pool.apply_async(|x: u64| x * x, 3).unwrap();
    assert_eq!(r.get_timeout(Duration::from_secs(30)).unwrap(), 9);
    assert_eq!(r.successful(), Ok(true));
    let again = r.get_timeout(Duration::from_secs(30));
    assert!(matches!(again, Err(ResultTimeoutError::Task(TaskError::Taken))), "{again:?}");
    assert_eq!(r.get(), Err(TaskError::Taken));
    pool.close();
    pool.join().unwrap();
}

/// A `ThreadPool` dropped while an `imap` of it lives is terminated, as its `Drop` says and
/// as a `Pool` is: the queued tasks fail `Terminated` and the `imap` ends so, its threads
/// joined by the drop (aud108 M2: the `imap`'s feeder held a counted handle, so the drop
/// neither terminated nor joined; the queued tasks ran, `Ok(300)` x3, and the `imap` went
/// on as long as it was kept).
#[test]
fn a_thread_pool_dropped_while_an_imap_of_it_lives_is_terminated() {
    let _w = watchdog(LIMIT);
    let pool = ThreadPool::new(1).unwrap();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let (started, running) = std::sync::mpsc::channel::<()>();
    let started = Mutex::new(started);
    let busy = pool
        .apply_async(
            move |_: ()| {
                started.lock().unwrap().send(()).unwrap();
                let _ = gate.lock().unwrap().recv();
            },
            (),
        )
        .unwrap();
    running.recv().unwrap();
    let queued: Vec<_> = (0..3).map(|i| pool.apply_async(|x: u64| x, i).unwrap()).collect();
    let mut imap = pool.imap(|x: u64| x * x, 0u64..).unwrap();
    // The drop waits for the running task: on a thread of its own, the task let go once
    // that thread has returned (a drop that ended nothing) or waits for the pool's thread.
    let tid = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let t = tid.clone();
    let dropper = std::thread::spawn(move || {
        t.store(common::tid(), Ordering::SeqCst);
        drop(pool);
    });
    let waiting = || {
        let tid = tid.load(Ordering::SeqCst);
        dropper.is_finished() || (tid != 0 && common::thread_in_futex_wait(tid))
    };
    assert!(eventually(LIMIT, waiting));
    release.send(()).unwrap();
    dropper.join().unwrap();
    busy.get().unwrap();
    for r in queued {
        assert!(matches!(r.get(), Err(TaskError::Terminated)), "a queued task ran after the drop");
    }
    let rest: Vec<_> = imap.by_ref().take(10_000).collect();
    assert!(rest.len() < 10_000, "the imap went on: {} items", rest.len());
    assert!(rest.iter().all(|r| matches!(r, Err(TaskError::Terminated))), "{rest:?}");
    assert!(imap.next().is_none());
}
