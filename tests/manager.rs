//! `Manager`: a server process keeping shared objects, used from any process of the family
//! through typed proxies (shared memory). Remote clients (TCP, feature `remote`) are in
//! `manager_remote.rs`.
//!
//! Proxies are handles: they travel to children, back as results, into pool tasks and
//! into other managed containers, and what nothing refers to any more is freed; a proxy
//! keeps its manager's server running in the process that started it. Nothing hangs: a
//! killed server makes every call fail with `ServerGone`, a stopped one with
//! `CallTimeout` when a call timeout is set; a killed client has its locks released and
//! the others go on; unknown methods are typed errors that leave the server serving.

mod common;
#[path = "common/managed.rs"]
mod managed;

use std::time::Duration;

use common::{eventually, pid_running};
use managed::{CALL_TIMEOUT, Counter, CounterProxy, signal};
use multiproc::{
    BarrierProxy, ConditionProxy, DictProxy, EventProxy, JoinableQueueProxy, ListProxy, LockProxy, Manager,
    ManagerError, ObjectProxy, Pool, Process, QueueProxy, RLockProxy, SemaphoreProxy, SetProxy, SharedMemoryBlocks,
    SharedMemoryManager, StartMethod, ValueProxy,
};
use serde::{Deserialize, Serialize};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(120);

fn sigkill(pid: u32) {
    // SAFETY: sending a signal to a process id has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

// ---- containers ------------------------------------------------------------------------

fn child_fills((d, l): (DictProxy<String, i32>, ListProxy<i32>)) {
    d.insert("1".into(), 1).unwrap();
    d.insert("two".into(), 2).unwrap();
    l.reverse().unwrap();
}

#[test]
fn a_child_changes_a_dict_and_a_list_the_parent_sees_with_every_start_method() {
    let _w = common::heap_user(LIMIT);
    for method in common::METHODS {
        let manager = Manager::builder().start_method(method).start().unwrap();
        let d = manager.dict::<String, i32>().unwrap();
        let l = manager.list_from(0..10).unwrap();
        Process::new(child_fills, (d.clone(), l.clone())).start_method(method).start().unwrap().join().unwrap();
        assert_eq!(d.items().unwrap(), vec![("1".to_string(), 1), ("two".to_string(), 2)], "{method:?}");
        assert_eq!(l.to_vec().unwrap(), (0..10).rev().collect::<Vec<_>>(), "{method:?}");
    }
}

#[test]
fn a_dict_behaves_as_a_python_dict() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let d = manager.dict::<String, i64>().unwrap();
    assert!(d.is_empty().unwrap());
    d.insert("b".into(), 2).unwrap();
    d.insert("a".into(), 1).unwrap();
    d.insert("b".into(), 20).unwrap();
    assert_eq!(d.get("b").unwrap(), Some(20), "a &str finds a String key");
    assert_eq!(d.get("zz").unwrap(), None);
    assert!(d.contains_key("a").unwrap());
    assert_eq!(d.keys().unwrap(), ["b", "a"], "insertion order, as Python keeps it");
    assert_eq!(d.values().unwrap(), [20, 1]);
    assert_eq!(d.setdefault("c".into(), 3).unwrap(), 3);
    assert_eq!(d.setdefault("c".into(), 99).unwrap(), 3);
    d.update([("d".to_string(), 4), ("a".to_string(), 10)]).unwrap();
    assert_eq!(d.len().unwrap(), 4);
    assert_eq!(d.remove("b").unwrap(), Some(20));
    assert_eq!(d.pop("b", -1).unwrap(), -1);
    assert_eq!(d.popitem().unwrap(), Some(("d".to_string(), 4)));
    assert_eq!(d.items().unwrap(), [("a".to_string(), 10), ("c".to_string(), 3)]);
    d.clear().unwrap();
    assert_eq!(d.popitem().unwrap(), None);

    let made = manager.dict_from([(1u8, 'x'), (2, 'y')]).unwrap();
    assert_eq!(made.get(&2).unwrap(), Some('y'));
    // A value read as the wrong type is a codec error, not garbage.
    let strings = manager.dict::<u8, String>().unwrap();
    strings.insert(1, "hi".into()).unwrap();
    manager.publish("strings", &strings).unwrap();
    let as_bools: DictProxy<u8, bool> = manager.lookup("strings").unwrap();
    assert!(matches!(as_bools.get(&1), Err(ManagerError::Codec(_))));
}

fn child_tags((s, n): (SetProxy<String>, u32)) {
    for i in 0..n {
        s.add(format!("tag {}", i % 5)).unwrap();
    }
    s.discard("tag 0").unwrap();
}

#[test]
fn a_set_behaves_as_a_python_set_across_processes() {
    let _w = common::heap_user(LIMIT);
    for method in common::METHODS {
        let manager = Manager::builder().start_method(method).start().unwrap();
        let s = manager.set::<String>().unwrap();
        assert!(s.is_empty().unwrap());
        Process::new(child_tags, (s.clone(), 20)).start_method(method).start().unwrap().join().unwrap();
        assert_eq!(s.len().unwrap(), 4, "{method:?}: duplicates are one element");
        assert!(s.contains("tag 1").unwrap(), "a &str finds a String element");
        assert!(!s.contains("tag 0").unwrap());
        assert_eq!(s.to_vec().unwrap(), ["tag 1", "tag 2", "tag 3", "tag 4"]);
    }

    let manager = Manager::start().unwrap();
    let s = manager.set_from([1, 2, 3, 2]).unwrap();
    assert_eq!(s.len().unwrap(), 3);
    assert!(s.discard(&2).unwrap());
    assert!(!s.discard(&2).unwrap());
    assert!(matches!(s.remove(&2), Err(ManagerError::ValueNotFound)), "remove of an absent element: KeyError");
    // Said of a set too (aud106 L3: it read "the value is not in the list").
    let missing = s.remove(&2).unwrap_err().to_string();
    assert!(missing.contains("set"), "{missing}");
    s.remove(&3).unwrap();
    s.add(4).unwrap();
    assert_eq!(s.iter().unwrap().collect::<Vec<_>>(), [1, 4]);
    assert_eq!(s.union([4, 5]).unwrap(), [1, 4, 5]);
    assert_eq!(s.intersection([4, 5]).unwrap(), [4]);
    assert_eq!(s.difference([4, 5]).unwrap(), [1]);
    assert_eq!(s.symmetric_difference([4, 5]).unwrap(), [1, 5]);
    assert!(s.issubset([1, 4, 9]).unwrap());
    assert!(!s.issubset([1]).unwrap());
    assert!(s.issuperset([1]).unwrap());
    assert!(s.isdisjoint([7, 8]).unwrap());
    assert!(!s.isdisjoint([4]).unwrap());
    assert_eq!(s.to_vec().unwrap(), [1, 4], "the algebra leaves the set alone");
    s.update([5, 6]).unwrap();
    s.difference_update([1]).unwrap();
    s.intersection_update([4, 5, 6, 7]).unwrap();
    s.symmetric_difference_update([6, 8]).unwrap();
    assert_eq!(s.to_vec().unwrap(), [4, 5, 8]);
    assert_eq!(s.pop().unwrap(), Some(8));
    s.clear().unwrap();
    assert_eq!(s.pop().unwrap(), None);
    // A proxy cannot be an element (it is no plain value).
    let proxies = manager.set::<ListProxy<u8>>().unwrap();
    assert!(proxies.add(manager.list().unwrap()).is_err());
    assert!(proxies.is_empty().unwrap());
}

fn record_server_pid(pid: multiproc::Value<u32>) {
    pid.set(std::process::id());
}

#[test]
fn the_initializer_runs_in_the_server_process_before_it_serves() {
    let _w = common::heap_user(LIMIT);
    for method in common::METHODS {
        let seen = multiproc::Value::new(0u32).unwrap();
        let manager =
            Manager::builder().start_method(method).initializer(record_server_pid, seen.clone()).start().unwrap();
        assert_eq!(Some(seen.get()), manager.pid(), "{method:?}: it ran in the server, before start returned");
        assert_eq!(manager.list_from([1]).unwrap().len().unwrap(), 1, "and the server serves");
    }
}

fn failing_initializer(why: String) {
    panic!("{why}");
}

#[test]
fn a_panicking_initializer_is_a_typed_start_error() {
    let _w = common::heap_user(LIMIT);
    for method in common::METHODS {
        let started = Manager::builder()
            .start_method(method)
            .initializer(failing_initializer, "no configuration".to_string())
            .start();
        match started {
            Err(ManagerError::InitializerPanicked(info)) => assert_eq!(info.message, "no configuration", "{method:?}"),
            other => panic!("{method:?}: {other:?}"),
        }
    }
}

fn refused_initializer(_: common::refused::RefusedAfterFirst) {
    unreachable!("its argument does not decode")
}

#[test]
fn handles_after_the_point_where_the_initializer_argument_failed_to_decode_are_released() {
    let _w = common::heap_user(LIMIT);
    for method in common::METHODS {
        let (first, second) = (multiproc::Queue::<u32>::new().unwrap(), multiproc::Queue::<u32>::new().unwrap());
        let arg = common::refused::RefusedAfterFirst(Vec::new(), first.clone(), second.clone());
        let started = Manager::builder().start_method(method).initializer(refused_initializer, arg).start();
        assert!(matches!(started, Err(ManagerError::Start(_))), "{method:?}: {:?}", started.err());
        // The server read the first queue and never reached the second: both handles it was
        // sent are gone with it, so this one of each queue is the last.
        let alone = Duration::from_secs(20);
        assert_eq!(first.get_timeout(alone), Err(multiproc::GetTimeoutError::Disconnected), "{method:?}");
        assert_eq!(second.get_timeout(alone), Err(multiproc::GetTimeoutError::Disconnected), "{method:?}");
    }
}

fn make_block_then_hang((blocks, made): (SharedMemoryBlocks, multiproc::Event)) {
    let shm = blocks.shared_memory(4096).unwrap();
    shm.write_at(0, b"left by a killed process");
    made.set();
    std::thread::sleep(Duration::from_secs(600));
}

fn shm_exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

#[test]
fn a_shared_memory_manager_unlinks_every_block_at_shutdown_even_of_a_killed_creator() {
    let _w = common::heap_user(LIMIT);
    for method in common::METHODS {
        let smm = SharedMemoryManager::start_with(Manager::builder().start_method(method)).unwrap();
        let shm = smm.shared_memory(64).unwrap();
        let list = smm.shareable_list([1i64, 2, 3]).unwrap();
        assert_eq!(list.to_vec().unwrap().len(), 3);
        let made = multiproc::Event::new().unwrap();
        let child = Process::new(make_block_then_hang, (smm.blocks(), made.clone()))
            .start_method(method)
            .daemon(true)
            .start()
            .unwrap();
        assert!(made.wait_timeout(LIMIT));
        child.kill().unwrap();
        assert_eq!(child.wait(), -9);
        let names = smm.names().unwrap();
        assert_eq!(names.len(), 3, "{method:?}");
        assert!(names.iter().all(|n| shm_exists(n)), "{method:?}: the killed child's block outlives it");
        smm.shutdown().unwrap();
        assert!(names.iter().all(|n| !shm_exists(n)), "{method:?}: shutdown unlinked every block");
        shm.write_at(0, b"still mapped"); // an open handle keeps its mapping
        drop((shm, list));
    }

    // Dropping the manager unlinks too.
    let name = {
        let smm = SharedMemoryManager::start().unwrap();
        smm.shared_memory(8).unwrap().name().to_string()
    };
    assert!(!shm_exists(&name));
}

#[test]
fn a_list_behaves_as_a_python_list() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let l = manager.list::<i32>().unwrap();
    l.push(3).unwrap();
    l.extend([1, 4, 1, 5]).unwrap();
    l.insert(0, 9).unwrap();
    l.insert(100, 2).unwrap();
    assert_eq!(l.to_vec().unwrap(), [9, 3, 1, 4, 1, 5, 2]);
    assert_eq!(l.get(1).unwrap(), Some(3));
    assert_eq!(l.get(7).unwrap(), None);
    l.set(0, 6).unwrap();
    assert!(matches!(l.set(70, 0), Err(ManagerError::IndexOutOfRange { index: 70, len: 7 })));
    assert_eq!(l.count(&1).unwrap(), 2);
    assert_eq!(l.index(&4).unwrap(), 3);
    assert!(matches!(l.index(&42), Err(ManagerError::ValueNotFound)));
    assert!(l.contains(&5).unwrap());
    assert!(l.remove(&1).unwrap());
    assert!(!l.remove(&42).unwrap());
    assert_eq!(l.pop().unwrap(), Some(2));
    assert_eq!(l.pop_at(0).unwrap(), 6);
    l.sort().unwrap();
    assert_eq!(l.iter().unwrap().collect::<Vec<_>>(), [1, 3, 4, 5]);
    l.sort_by(|a, b| b.cmp(a)).unwrap();
    assert_eq!(l.to_vec().unwrap(), [5, 4, 3, 1]);
    l.reverse().unwrap();
    assert_eq!(l.to_vec().unwrap(), [1, 3, 4, 5]);
    assert_eq!(l.len().unwrap(), 4);
    l.clear().unwrap();
    assert_eq!(l.pop().unwrap(), None);
    assert!(l.is_empty().unwrap());
}

/// An index past any list says what was passed, not `i64::MAX` (the server's indexes are
/// Python's, signed: an index past `i64::MAX` went as `i64::MAX`, and the error showed it).
#[test]
fn an_index_error_says_the_index_passed() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let l = manager.list_from([1, 2]).unwrap();
    let a = manager.array([1u8, 2, 3]).unwrap();
    let past = usize::MAX.to_string();
    let errors = [
        ("list set", l.set(usize::MAX, 0).unwrap_err()),
        ("list pop_at", l.pop_at(usize::MAX).unwrap_err()),
        ("array get", a.get(usize::MAX).unwrap_err()),
        ("array set", a.set(usize::MAX, 0).unwrap_err()),
    ];
    for (call, e) in errors {
        let shown = e.to_string();
        assert!(shown.contains(&past), "{call}: {shown}");
    }
    let shown = l.set(5, 0).unwrap_err().to_string();
    assert_eq!(shown, "index 5 out of range for a sequence of length 2");
}

#[test]
fn a_namespace_a_value_and_an_array() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let ns = manager.namespace().unwrap();
    ns.set("x", 1).unwrap();
    ns.set("name", "ada").unwrap();
    ns.set("point", (1.5f64, -2.0f64)).unwrap();
    assert_eq!(ns.get::<i32>("x").unwrap(), 1);
    assert_eq!(ns.get::<String>("name").unwrap(), "ada");
    assert_eq!(ns.get::<(f64, f64)>("point").unwrap(), (1.5, -2.0));
    assert_eq!(ns.names().unwrap(), ["x", "name", "point"]);
    ns.remove("x").unwrap();
    assert!(!ns.contains("x").unwrap());
    assert!(matches!(ns.get::<i32>("x"), Err(ManagerError::NoSuchAttribute(name)) if name == "x"));
    assert!(matches!(ns.remove("x"), Err(ManagerError::NoSuchAttribute(_))));

    let v = manager.value(String::from("start")).unwrap();
    v.set("end".into()).unwrap();
    assert_eq!(v.get().unwrap(), "end");

    let a = manager.array([1u16, 2, 3]).unwrap();
    a.set(2, 30).unwrap();
    assert_eq!(a.get(2).unwrap(), 30);
    assert_eq!(a.len().unwrap(), 3);
    assert!(matches!(a.get(3), Err(ManagerError::IndexOutOfRange { .. })));
    assert_eq!(a.to_vec().unwrap(), [1, 2, 30]);
}

// ---- queues ------------------------------------------------------------------------------

fn produce((q, n): (QueueProxy<u64>, u64)) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

fn work_through(q: JoinableQueueProxy<u64>) -> u64 {
    let mut sum = 0;
    loop {
        let n = match q.get_timeout(Duration::from_secs(30)) {
            Ok(n) => n,
            Err(ManagerError::Timeout) => break,
            Err(e) => panic!("{e:?}"),
        };
        sum += n;
        q.task_done().unwrap();
        if n == 1_000_000 {
            break;
        }
    }
    sum
}

#[test]
fn queues_block_on_the_server_time_out_and_give_refused_items_back() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.queue_bounded::<u64>(2).unwrap();
    assert!(q.is_empty().unwrap());
    q.put(1).unwrap();
    q.try_put(2).unwrap();
    assert!(q.is_full().unwrap());
    let refused = q.try_put(3).unwrap_err();
    assert!(matches!(refused.reason(), ManagerError::Full));
    assert_eq!(refused.into_inner(), 3);
    let refused = q.put_timeout(4, Duration::from_millis(20)).unwrap_err();
    assert!(matches!(refused.reason(), ManagerError::Timeout));
    assert_eq!(refused.into_inner(), 4);
    assert_eq!(q.len().unwrap(), 2);
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.try_get().unwrap(), 2);
    assert!(matches!(q.try_get(), Err(ManagerError::Empty)));
    assert!(matches!(q.get_timeout(Duration::from_millis(20)), Err(ManagerError::Timeout)));

    // A producer blocked on the full queue goes on as the parent takes.
    let child = Process::new(produce, (q.clone(), 100)).start().unwrap();
    let got: Vec<u64> = (0..100).map(|_| q.get().unwrap()).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    child.join().unwrap();

    let jq = manager.joinable_queue::<u64>().unwrap();
    for n in 1..=10 {
        jq.put(n).unwrap();
    }
    jq.put(1_000_000).unwrap();
    let worker = Process::new(work_through, jq.clone()).start().unwrap();
    jq.join().unwrap();
    jq.join_timeout(Duration::from_millis(1)).unwrap();
    assert_eq!(worker.join().unwrap(), 55 + 1_000_000);
    assert!(matches!(jq.task_done(), Err(ManagerError::TaskDone(_))));
}

// ---- synchronization --------------------------------------------------------------------

fn add_under_lock((lock, v, n): (LockProxy, ValueProxy<i64>, i64)) {
    for _ in 0..n {
        let _held = lock.acquire().unwrap();
        v.set(v.get().unwrap() + 1).unwrap();
    }
}

fn wait_then_set((e, done): (EventProxy, EventProxy)) {
    e.wait().unwrap();
    done.set().unwrap();
}

fn notify_later((c, flag): (ConditionProxy, ValueProxy<bool>)) {
    std::thread::sleep(Duration::from_millis(20));
    let mut held = c.acquire().unwrap();
    flag.set(true).unwrap();
    held.notify_all().unwrap();
}

fn barrier_party(b: BarrierProxy) -> usize {
    b.wait().unwrap()
}

#[test]
fn locks_events_conditions_and_barriers_work_across_processes() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let lock = manager.lock().unwrap();
    let v = manager.value(0i64).unwrap();
    let kids: Vec<_> =
        (0..3).map(|_| Process::new(add_under_lock, (lock.clone(), v.clone(), 50)).start().unwrap()).collect();
    for k in kids {
        k.join().unwrap();
    }
    assert_eq!(v.get().unwrap(), 150, "every read-modify-write under the managed lock");
    assert!(matches!(lock.release(), Err(ManagerError::NotAcquired)));

    let e = manager.event().unwrap();
    let done = manager.event().unwrap();
    let child = Process::new(wait_then_set, (e.clone(), done.clone())).start().unwrap();
    assert!(!done.wait_timeout(Duration::from_millis(20)).unwrap());
    e.set().unwrap();
    done.wait().unwrap();
    child.join().unwrap();
    e.clear().unwrap();
    assert!(!e.is_set().unwrap());

    let c = manager.condition().unwrap();
    let flag = manager.value(false).unwrap();
    let child = Process::new(notify_later, (c.clone(), flag.clone())).start().unwrap();
    {
        let mut held = c.acquire().unwrap();
        held.wait_for(|| flag.get().unwrap()).unwrap();
        assert!(c.locked().unwrap(), "the lock is held again after the wait");
    }
    child.join().unwrap();
    // Waits and notifications are methods of the held lock (the guard): none without it.

    let b = manager.barrier(3).unwrap();
    assert_eq!(b.parties().unwrap(), 3);
    let kids: Vec<_> = (0..2).map(|_| Process::new(barrier_party, b.clone()).start().unwrap()).collect();
    let mut indices = vec![b.wait().unwrap()];
    indices.extend(kids.into_iter().map(|k| k.join().unwrap()));
    indices.sort();
    assert_eq!(indices, [0, 1, 2]);
    assert!(matches!(b.wait_timeout(Duration::from_millis(10)), Err(ManagerError::BrokenBarrier)));
    assert!(b.is_broken().unwrap());
    b.reset().unwrap();
    assert!(!b.is_broken().unwrap());
}

/// In the server process, set by its initializer: (trips counted, pid of the action).
static TRIPS: std::sync::OnceLock<(multiproc::Value<u32>, multiproc::Value<u32>)> = std::sync::OnceLock::new();

fn remember_trip_counters(counters: (multiproc::Value<u32>, multiproc::Value<u32>)) {
    let _ = TRIPS.set(counters);
}

fn count_trip() {
    let (trips, ran_in) = TRIPS.get().expect("the initializer ran first");
    *trips.lock() += 1;
    ran_in.set(std::process::id());
}

fn panicking_action() {
    panic!("the action fails");
}

fn barrier_rounds((b, rounds): (BarrierProxy, u32)) -> Result<(), String> {
    for _ in 0..rounds {
        b.wait().map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[test]
fn a_manager_barrier_runs_its_action_once_per_trip_in_the_server() {
    let _w = common::heap_user(LIMIT);
    for method in common::METHODS {
        let counters = (multiproc::Value::new(0u32).unwrap(), multiproc::Value::new(0u32).unwrap());
        let manager = Manager::builder()
            .start_method(method)
            .initializer(remember_trip_counters, counters.clone())
            .barrier_action("count", count_trip)
            .barrier_action("panic", panicking_action)
            .start()
            .unwrap();
        const ROUNDS: u32 = 4;
        let b = manager.barrier_with(3, Some("count"), None).unwrap();
        let children: Vec<_> = (0..2)
            .map(|_| Process::new(barrier_rounds, (b.clone(), ROUNDS)).start_method(method).start().unwrap())
            .collect();
        for round in 0..ROUNDS {
            b.wait().unwrap();
            assert!(counters.0.get() > round, "{method:?}: the action ran before the parties were released");
        }
        for child in children {
            assert_eq!(child.join().unwrap(), Ok(()));
        }
        assert_eq!(counters.0.get(), ROUNDS, "{method:?}: once per trip");
        assert_eq!(Some(counters.1.get()), manager.pid(), "{method:?}: in the server process");

        let broken = manager.barrier_with(2, Some("panic"), None).unwrap();
        let other = Process::new(barrier_rounds, (broken.clone(), 1)).start_method(method).start().unwrap();
        assert!(matches!(broken.wait(), Err(ManagerError::BrokenBarrier)), "{method:?}");
        assert!(other.join().unwrap().is_err(), "{method:?}: every party sees the break");
        assert!(matches!(manager.barrier_with(2, Some("nobody"), None), Err(ManagerError::UnknownMethod { .. })));
    }
}

#[test]
fn a_manager_barrier_default_timeout_breaks_it_when_it_runs_out() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let b = manager.barrier_with(2, None, Some(Duration::from_millis(30))).unwrap();
    // The default timeout lives with the barrier on the server: a child's plain wait uses it.
    let alone = Process::new(barrier_rounds, (b.clone(), 1)).start().unwrap();
    assert!(alone.join().unwrap().is_err());
    assert!(matches!(b.wait(), Err(ManagerError::BrokenBarrier)));
    b.reset().unwrap();
    // An explicit timeout overrides the default one.
    let patient = b.clone();
    let waiter = std::thread::spawn(move || patient.wait_timeout(LIMIT).map_err(|e| e.to_string()));
    assert!(eventually(LIMIT, || b.n_waiting().unwrap() == 1));
    std::thread::sleep(Duration::from_millis(60)); // past the default timeout
    b.wait().unwrap();
    assert!(waiter.join().unwrap().is_ok());
}

#[test]
fn rlocks_are_recursive_and_owned_semaphores_count() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let r: RLockProxy = manager.rlock().unwrap();
    r.acquire().unwrap().leave_locked();
    r.try_acquire().unwrap().leave_locked();
    let other = r.clone();
    let from_another_thread =
        std::thread::spawn(move || (matches!(other.try_acquire(), Err(ManagerError::WouldBlock)), other.release()));
    let (refused, released) = from_another_thread.join().unwrap();
    assert!(refused, "another thread cannot take it");
    assert!(matches!(released, Err(ManagerError::NotOwner)));
    r.release().unwrap();
    r.release().unwrap();
    assert!(!r.locked().unwrap());

    let s = manager.semaphore(2).unwrap();
    assert!(!s.is_bounded());
    s.acquire().unwrap().forget();
    s.acquire_timeout(Duration::from_millis(10)).unwrap().forget();
    assert!(matches!(s.acquire_timeout(Duration::from_millis(10)), Err(ManagerError::Timeout)));
    s.release().unwrap();
    s.release().unwrap();
    s.release().unwrap();
    assert_eq!(s.get_value().unwrap(), 3, "a plain semaphore may go above its start");
    let b = manager.bounded_semaphore(1).unwrap();
    assert!(b.is_bounded());
    assert!(matches!(b.release(), Err(ManagerError::NotAcquired)));
}

// ---- proxies as handles, and reference counting ------------------------------------------

fn use_nested(outer: ListProxy<DictProxy<String, i32>>) -> usize {
    let inner = outer.get(0).unwrap().unwrap();
    inner.insert("from child".into(), 7).unwrap();
    outer.len().unwrap()
}

fn return_a_proxy(q: QueueProxy<ListProxy<u8>>) -> ListProxy<u8> {
    q.get().unwrap()
}

fn pool_task(d: DictProxy<u32, u32>) -> u32 {
    let pid = std::process::id();
    d.insert(pid, pid).unwrap();
    pid
}

#[test]
fn proxies_travel_everywhere_and_nest_in_containers() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let outer = manager.list::<DictProxy<String, i32>>().unwrap();
    let inner = manager.dict::<String, i32>().unwrap();
    outer.push(inner.clone()).unwrap();
    let back = outer.get(0).unwrap().unwrap();
    assert!(back.same_object(&inner), "a proxy read from a container is one to the same dict");
    assert_eq!(Process::new(use_nested, outer.clone()).start().unwrap().join().unwrap(), 1);
    assert_eq!(inner.get("from child").unwrap(), Some(7));

    // Through a managed queue, and back to the parent as a child's result.
    let q = manager.queue::<ListProxy<u8>>().unwrap();
    let l = manager.list_from([1u8, 2]).unwrap();
    q.put(l.clone()).unwrap();
    let returned = Process::new(return_a_proxy, q.clone()).start().unwrap().join().unwrap();
    returned.push(3).unwrap();
    assert_eq!(l.to_vec().unwrap(), [1, 2, 3]);

    // Into pool tasks.
    let d = manager.dict::<u32, u32>().unwrap();
    let pool = Pool::new(2).unwrap();
    let pids = pool.map(pool_task, vec![d.clone(); 6]).unwrap();
    for pid in pids {
        assert_eq!(d.get(&pid).unwrap(), Some(pid));
    }

    // A proxy of another manager cannot be stored here.
    let other = Manager::start().unwrap();
    let foreign = other.dict::<String, i32>().unwrap();
    assert!(matches!(outer.push(foreign), Err(ManagerError::ForeignProxy)));
}

#[test]
fn what_nothing_refers_to_is_freed() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let settle = |n: usize| eventually(Duration::from_secs(10), || manager.number_of_objects().unwrap() == n);
    assert_eq!(manager.number_of_objects().unwrap(), 0);
    let outer = manager.list::<DictProxy<u8, u8>>().unwrap();
    for _ in 0..3 {
        let d = manager.dict::<u8, u8>().unwrap();
        outer.push(d).unwrap();
        // The proxy is gone, the list holds the dict.
    }
    assert!(settle(4), "{}", manager.number_of_objects().unwrap());
    let copy = outer.get(1).unwrap().unwrap();
    outer.clear().unwrap();
    assert!(settle(2), "the list and the dict still held by `copy`");
    drop(copy);
    assert!(settle(1));
    drop(outer);
    assert!(settle(0));

    // A proxy held by a child only, and dropped there.
    let d = manager.dict::<u8, u8>().unwrap();
    Process::new(|d: DictProxy<u8, u8>| d.insert(1, 1).unwrap(), d.clone()).start().unwrap().join().unwrap();
    assert_eq!(manager.number_of_objects().unwrap(), 1);
    drop(d);
    assert!(settle(0));

    // Published objects live while published.
    manager.publish("kept", &manager.lock().unwrap()).unwrap();
    assert!(settle(1));
    let again: LockProxy = manager.lookup("kept").unwrap();
    again.acquire().unwrap().leave_locked();
    assert!(matches!(manager.lookup::<LockProxy>("missing"), Err(ManagerError::NotPublished(_))));
}

/// Every call that sends a value holding a proxy and does not keep it (a `setdefault` whose
/// key is set, a lookup by a proxy key, a refused or out-of-range insert, a comparison)
/// gives the proxy's reference back: the object it names is freed once nothing else holds
/// it (review170 M1: a dict's `setdefault`, `get`, `contains_key` and `remove` kept it for
/// the server's life, so `d.setdefault(k, manager.list()?)` leaked a list a call).
#[test]
fn a_proxy_sent_in_a_value_the_call_does_not_keep_is_freed() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let count = || manager.number_of_objects().unwrap();
    let mut said = Vec::new();
    let mut check = |what: &str, call: &dyn Fn() -> String| {
        let base = count();
        let answer = call();
        // Returns at the first look once the counts are right (a few ms).
        eventually(Duration::from_secs(2), || count() == base);
        said.push(format!("{what}: {answer}, objects {base} -> {}", count()));
    };
    let list = || manager.list_from([1u8]).unwrap();
    let by_name = manager.dict::<String, ListProxy<u8>>().unwrap();
    by_name.insert("k".into(), list()).unwrap();
    let by_proxy = manager.dict::<ListProxy<u8>, u8>().unwrap();
    let lists = manager.list::<ListProxy<u8>>().unwrap();
    lists.push(list()).unwrap();
    let set = manager.set::<ListProxy<u8>>().unwrap();
    let ns = manager.namespace().unwrap();
    let q = manager.queue_bounded::<ListProxy<u8>>(1).unwrap();
    q.put(list()).unwrap();
    let ok = |r: Result<String, ManagerError>| r.unwrap_or_else(|e| format!("{e}"));
    check("dict setdefault on a set key", &|| {
        ok(by_name.setdefault("k".into(), list()).map(|l| format!("{:?}", l.to_vec())))
    });
    check("dict get by a proxy key", &|| ok(by_proxy.get(&list()).map(|v| format!("{v:?}"))));
    check("dict contains_key by a proxy key", &|| ok(by_proxy.contains_key(&list()).map(|v| format!("{v:?}"))));
    check("dict remove by a proxy key", &|| ok(by_proxy.remove(&list()).map(|v| format!("{v:?}"))));
    check("dict insert by a proxy key", &|| ok(by_proxy.insert(list(), 1).map(|v| format!("{v:?}"))));
    check("dict update by a proxy key", &|| ok(by_proxy.update([(list(), 1)]).map(|v| format!("{v:?}"))));
    check("list contains", &|| ok(lists.contains(&list()).map(|v| format!("{v:?}"))));
    check("list index", &|| ok(lists.index(&list()).map(|v| format!("{v:?}"))));
    check("list count", &|| ok(lists.count(&list()).map(|v| format!("{v:?}"))));
    check("list remove", &|| ok(lists.remove(&list()).map(|v| format!("{v:?}"))));
    check("list set out of range", &|| ok(lists.set(9, list()).map(|v| format!("{v:?}"))));
    check("set add", &|| ok(set.add(list()).map(|v| format!("{v:?}"))));
    check("set contains", &|| ok(set.contains(&list()).map(|v| format!("{v:?}"))));
    check("set discard", &|| ok(set.discard(&list()).map(|v| format!("{v:?}"))));
    check("set union", &|| ok(set.union([list()]).map(|v| format!("{}", v.len()))));
    ns.set("a", list()).unwrap();
    check("namespace set over a set name", &|| ok(ns.set("a", list()).map(|v| format!("{v:?}"))));
    check("queue put refused full", &|| match q.try_put(list()) {
        Ok(()) => "Ok".into(),
        Err(e) => format!("{}", e.reason()),
    });
    println!("{said:#?}");
    let leaked: Vec<&String> = said
        .iter()
        .filter(|s| {
            let (base, now) = s.rsplit_once("objects ").unwrap().1.split_once(" -> ").unwrap();
            base != now
        })
        .collect();
    assert!(leaked.is_empty(), "objects left behind: {leaked:#?}");
}

/// A proxy moved into a call that keeps it (`extend`, `update`, a container made from
/// values) is kept, whether or not anything else holds its object: the call's values live
/// until it is answered (they were dropped once encoded, and the release of a proxy held
/// nowhere else reached the server first: "a value refers to object 16, which the server
/// does not have").
#[test]
fn a_proxy_moved_into_extend_update_or_a_new_container_is_kept() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let list = || manager.list_from([1u8]).unwrap();
    let lists = manager.list::<ListProxy<u8>>().unwrap();
    let dict = manager.dict::<u8, ListProxy<u8>>().unwrap();
    let set = manager.set::<u8>().unwrap();
    let inner = |r: Result<Option<ListProxy<u8>>, ManagerError>| match r {
        Ok(Some(l)) => format!("{:?}", l.to_vec()),
        other => format!("{other:?}"),
    };
    let said = [
        format!("list extend: {:?}, {}", lists.extend([list()]), inner(lists.get(0))),
        format!("dict update: {:?}, {}", dict.update([(1, list())]), inner(dict.get(&1))),
        format!("list_from: {}", inner(manager.list_from([list()]).and_then(|l| l.get(0)))),
        format!("dict_from: {}", inner(manager.dict_from([(1u8, list())]).and_then(|d| d.get(&1)))),
        format!("array: {}", inner(manager.array([list()]).and_then(|a| a.get(0)).map(Some))),
        format!("set update: {:?}, {:?}", set.update([1]), set.to_vec()),
    ];
    println!("{said:#?}");
    assert_eq!(
        said,
        [
            "list extend: Ok(()), Ok([1])",
            "dict update: Ok(()), Ok([1])",
            "list_from: Ok([1])",
            "dict_from: Ok([1])",
            "array: Ok([1])",
            "set update: Ok(()), Ok([1])",
        ]
    );
}

/// A value holding two proxies, and a type that reads only the second of them back.
#[derive(Serialize, Deserialize)]
struct TwoLists {
    a: ListProxy<u8>,
    b: ListProxy<u8>,
}

#[derive(Serialize, Deserialize)]
struct SecondList {
    b: ListProxy<u8>,
}

#[test]
fn a_proxy_read_from_a_value_whose_other_proxies_are_skipped_holds_its_own_object() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let settle = |n| eventually(Duration::from_secs(10), || manager.number_of_objects().unwrap() == n);
    let pairs = manager.dict::<u8, TwoLists>().unwrap();
    let (a, b) = (manager.list_from([1u8]).unwrap(), manager.list_from([2u8, 2]).unwrap());
    pairs.insert(1, TwoLists { a, b }).unwrap();
    manager.publish("pairs", &pairs).unwrap();
    // Read as a type without `a`: the decoding skips that field, and the proxy it makes
    // for `b` must hold `b`'s reference, not the first one the reply carried.
    let seconds: DictProxy<u8, SecondList> = manager.lookup("pairs").unwrap();
    let b = seconds.get(&1).unwrap().expect("the item is there").b;
    pairs.clear().unwrap();
    assert!(settle(2), "the dict and `b`: {}", manager.number_of_objects().unwrap());
    for _ in 0..20 {
        assert_eq!(b.len().unwrap(), 2, "`b` lives while its proxy does");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(b);
    assert!(settle(1), "only the published dict: {}", manager.number_of_objects().unwrap());
}

// ---- registered types ---------------------------------------------------------------------

fn count_up(c: CounterProxy) {
    for _ in 0..100 {
        c.incr(1).unwrap();
    }
}

#[test]
fn a_registered_type_runs_its_methods_on_the_server() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let c: CounterProxy = manager.create(Counter::default()).unwrap();
    assert_eq!(c.incr(5).unwrap(), 5);
    let kids: Vec<_> = (0..3).map(|_| Process::new(count_up, c.clone()).start().unwrap()).collect();
    for k in kids {
        k.join().unwrap();
    }
    assert_eq!(c.get().unwrap(), 305, "one call at a time: no lost update");
    c.note("test".into(), "hello".into()).unwrap();
    assert_eq!(c.get_value().unwrap().log, ["test: hello"]);

    // Failures are typed and leave the server serving.
    assert!(matches!(c.explode(), Err(ManagerError::MethodFailed(why)) if why.contains("exploded")));
    let raw: &ObjectProxy<Counter> = &c.0;
    assert!(matches!(
        raw.call::<_, i64>("nope", &()),
        Err(ManagerError::UnknownMethod { type_name, method }) if type_name == "Counter" && method == "nope"
    ));
    assert!(matches!(raw.call::<_, i64>("incr", &("not a number",)), Err(ManagerError::MethodFailed(_))));
    assert_eq!(c.incr(1).unwrap(), 306);
}

/// A registered type whose `Drop` panics once armed (on the server: the client's copies
/// are never armed).
#[derive(Default, Serialize, Deserialize)]
struct Fuse {
    armed: bool,
}

impl Fuse {
    fn arm(&mut self) {
        self.armed = true;
    }
}

impl Drop for Fuse {
    fn drop(&mut self) {
        if self.armed && !std::thread::panicking() {
            panic!("the fuse blew when dropped");
        }
    }
}

multiproc::managed! {
    /// A `Fuse` on the server.
    pub proxy FuseProxy for Fuse {
        fn arm(&mut self);
    }
}

/// A registered value's `Drop` is user code too: its panic, when its last proxy goes, is
/// the object's alone, and the server goes on serving. (It ended the server: every later
/// call failed with `ServerGone`.)
#[test]
fn a_registered_value_whose_drop_panics_leaves_the_server_serving() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let kept = manager.list_from([1u8, 2]).unwrap();
    let fuse: FuseProxy = manager.create(Fuse::default()).unwrap();
    fuse.arm().unwrap();
    drop(fuse);
    let mut objects = manager.number_of_objects();
    let freed = eventually(Duration::from_secs(30), || {
        objects = manager.number_of_objects();
        objects.as_ref().is_ok_and(|&n| n == 1)
    });
    assert!(freed, "{objects:?}");
    assert_eq!(kept.len().unwrap(), 2);
    kept.push(3).unwrap();
    assert_eq!(kept.len().unwrap(), 3);
}

/// Set by `mark_set_up`, the `child_init` this test binary sets.
static SET_UP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn mark_set_up() {
    SET_UP.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Asks the server whether its `child_init` ran.
#[derive(Default, Serialize, Deserialize)]
struct SetUpProbe;

impl SetUpProbe {
    fn was_set_up(&self) -> bool {
        SET_UP.load(std::sync::atomic::Ordering::Relaxed)
    }
}

multiproc::managed! {
    /// A `SetUpProbe` on the server.
    pub proxy SetUpProbeProxy for SetUpProbe {
        fn was_set_up(&self) -> bool;
    }
}

#[test]
fn child_init_runs_in_the_server_whatever_its_start_method() {
    let _w = common::heap_user(LIMIT);
    // The family is set up already (test_support!): this sets the children's set-up.
    multiproc::builder().child_init(mark_set_up).try_init().unwrap();
    // Fork is refused on libtest's threads; `tests/fork.rs` forks a server.
    for method in common::METHODS {
        let manager = Manager::builder().start_method(method).start().unwrap();
        let probe: SetUpProbeProxy = manager.create(SetUpProbe).unwrap();
        assert!(probe.was_set_up().unwrap(), "{method:?}");
    }
}

// ---- faults ---------------------------------------------------------------------------------

fn hold_lock((lock, held): (LockProxy, EventProxy)) {
    lock.acquire().unwrap().leave_locked();
    held.set().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_lock_held_by_a_killed_client_is_released() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let lock = manager.lock().unwrap();
    let held = manager.event().unwrap();
    let child = Process::new(hold_lock, (lock.clone(), held.clone())).start().unwrap();
    held.wait().unwrap();
    assert!(matches!(lock.try_acquire(), Err(ManagerError::WouldBlock)));
    child.kill().unwrap();
    child.wait();
    let taken = lock.acquire_timeout(Duration::from_secs(60)).expect("the server released the dead client's lock");
    assert!(taken.owner_died(), "the next holder is told, as with the family's locks");
    drop(taken);
    assert!(!lock.acquire().unwrap().owner_died(), "told once");
}

/// A managed `Lock` is the process's (as the family's `Lock`, and Python's): acquired on a
/// thread that then ends (its connection says goodbye), it stays held, by a guard sent to
/// another thread or by `leave_locked`, until released; it is not given to the next
/// acquire as a dead holder's.
#[test]
fn a_managed_lock_held_past_the_thread_that_took_it_stays_held() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let lock = manager.lock().unwrap();
    let sent = std::thread::scope(|s| s.spawn(|| lock.acquire().unwrap()).join().unwrap());
    // The ended thread's goodbye reaches the server in its own time: look a few times.
    for _ in 0..5 {
        let second = lock.acquire_timeout(Duration::from_millis(200));
        assert!(second.is_err(), "a second holder while the sent guard lives: {:?}", second.map(|g| g.owner_died()));
    }
    sent.release().unwrap();
    assert!(!lock.try_acquire().unwrap().owner_died());

    let lock = &lock;
    std::thread::scope(|s| s.spawn(move || lock.acquire().unwrap().leave_locked()).join().unwrap());
    for _ in 0..5 {
        let second = lock.acquire_timeout(Duration::from_millis(200));
        assert!(second.is_err(), "a second holder of a lock left locked: {:?}", second.map(|g| g.owner_died()));
    }
    lock.release().unwrap(); // Python's Lock: any thread releases it
    assert!(!lock.try_acquire().unwrap().owner_died());
}

fn hold_lock_past_its_thread((lock, held): (LockProxy, EventProxy)) {
    // Acquired on a thread that ends: the lock stays the process's (its connection is gone).
    std::thread::spawn(move || lock.acquire().unwrap().leave_locked()).join().unwrap();
    held.set().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// A managed `Lock` that outlived the thread (connection) that took it is its process's:
/// the process killed, the sweep releases it as a dead holder's.
#[test]
fn a_lock_held_past_its_thread_by_a_killed_client_is_released() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let lock = manager.lock().unwrap();
    let held = manager.event().unwrap();
    let child = Process::new(hold_lock_past_its_thread, (lock.clone(), held.clone())).start().unwrap();
    held.wait().unwrap();
    assert!(matches!(lock.try_acquire(), Err(ManagerError::WouldBlock)));
    child.kill().unwrap();
    child.wait();
    let taken = lock.acquire_timeout(Duration::from_secs(60)).expect("the server released the dead process's lock");
    assert!(taken.owner_died(), "the next holder is told");
}

fn hold_permit((slots, held): (SemaphoreProxy, EventProxy)) {
    slots.acquire().unwrap().forget();
    held.set().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_semaphore_permit_held_by_a_killed_client_comes_back() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let slots = manager.bounded_semaphore(1).unwrap();
    let held = manager.event().unwrap();
    let child = Process::new(hold_permit, (slots.clone(), held.clone())).start().unwrap();
    held.wait().unwrap();
    assert!(matches!(slots.try_acquire(), Err(ManagerError::WouldBlock)));
    child.kill().unwrap();
    child.wait();
    let taken = slots.acquire_timeout(Duration::from_secs(60)).expect("the server took the dead client's permit back");
    assert!(taken.owner_died(), "the next holder is told, as with the family's semaphores");
    drop(taken);
    assert_eq!(slots.get_value().unwrap(), 1, "the permit came back once");
    assert!(!slots.acquire().unwrap().owner_died(), "told once");
}

fn hold_condition((cond, held): (ConditionProxy, EventProxy)) {
    let guard = cond.acquire().unwrap();
    held.set().unwrap();
    std::thread::sleep(Duration::from_secs(600));
    drop(guard);
}

#[test]
fn a_condition_wait_that_takes_the_lock_back_from_a_killed_holder_is_told() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let cond = manager.condition().unwrap();
    let held = manager.event().unwrap();
    let mut guard = cond.acquire().unwrap();
    // The child waits for the lock; the first wait below gives it up, the child takes it
    // and is killed holding it, while this wait waits to take the lock back.
    let child = Process::new(hold_condition, (cond.clone(), held.clone())).start().unwrap();
    let killer = std::thread::spawn(move || {
        held.wait().unwrap();
        child.kill().unwrap();
        child.wait();
    });
    let mut waits = 0;
    while !guard.owner_died() {
        assert!(!guard.wait_timeout(Duration::from_millis(100)).unwrap(), "nobody notifies");
        waits += 1;
        assert!(waits < 600, "the wait never learnt that it took the lock back from a dead holder");
    }
    killer.join().unwrap();
    drop(guard);
    assert!(!cond.acquire().unwrap().owner_died(), "told once");
}

/// Takes the condition's lock, says so, holds it until told, and answers whether it still
/// held it then (its release is refused otherwise).
fn hold_condition_until_told((cond, held, go): (ConditionProxy, EventProxy, EventProxy)) -> bool {
    let guard = cond.acquire().unwrap();
    held.set().unwrap();
    go.wait().unwrap();
    guard.release().is_ok()
}

/// syn104 (aud107 H1 on the manager's side): a managed condition waited through a guard
/// whose lock the caller gave back itself is refused (`NotOwner`: the server checks the
/// owner of the lock), and neither the wait nor the guard's drop releases the hold of
/// the process that took the lock since.
#[test]
fn a_manager_condition_wait_without_its_lock_is_refused() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let cond = manager.condition().unwrap();
    let (held, go) = (manager.event().unwrap(), manager.event().unwrap());
    let mut guard = cond.acquire().unwrap();
    cond.release().unwrap();
    let child = Process::new(hold_condition_until_told, (cond.clone(), held.clone(), go.clone())).start().unwrap();
    held.wait().unwrap();
    let waited = guard.wait_timeout(Duration::from_millis(20));
    drop(guard);
    let other = cond.clone();
    let third_got_in = std::thread::spawn(move || other.try_acquire().is_ok()).join().unwrap();
    go.set().unwrap();
    let held_to_its_end = child.join().unwrap();
    println!(
        "the wait: {waited:?}; a third thread got in: {third_got_in}; the child held it to its end: {held_to_its_end}"
    );
    assert!(matches!(waited, Err(ManagerError::NotOwner)));
    assert!(!third_got_in && held_to_its_end);
}

/// Takes the lock, says so, holds it until told, and answers what its guard's release
/// said then.
fn hold_lock_until_told((lock, held, go): (LockProxy, EventProxy, EventProxy)) -> String {
    let guard = lock.acquire().unwrap();
    held.set().unwrap();
    go.wait().unwrap();
    format!("{:?}", guard.release())
}

/// A `ProxyLockGuard` releases only its own hold: dropped after the proxy's own
/// `release()` (Python's: anyone may release a `Lock`), while another process holds the
/// lock, it leaves that hold alone, so no third gets in, and that holder's guard releases
/// its own. Its explicit `release` then says `NotAcquired`. A guard moved to another
/// thread releases its hold there (a `Lock`'s hold is its process's). Before (syn104's
/// note), the guard's drop sent a plain `Release`, which freed whoever held the lock.
#[test]
fn a_manager_lock_guard_whose_lock_was_released_leaves_the_next_holder_alone() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let lock = manager.lock().unwrap();
    let (held, go) = (manager.event().unwrap(), manager.event().unwrap());
    let stale = lock.acquire().unwrap();
    lock.release().unwrap();
    let child = Process::new(hold_lock_until_told, (lock.clone(), held.clone(), go.clone())).start().unwrap();
    held.wait_timeout(LIMIT).unwrap();
    drop(stale);
    let other = lock.clone();
    let third_got_in =
        std::thread::spawn(move || other.try_acquire().map(|g| g.leave_locked()).is_ok()).join().unwrap();
    go.set().unwrap();
    let childs_release = child.join().unwrap();
    println!("a third thread got in: {third_got_in}; the child's own release then: {childs_release}");
    assert!(!third_got_in, "the stale guard's drop released the child's hold");
    assert_eq!(childs_release, "Ok(())");
    assert!(!lock.locked().unwrap());

    // A stale guard's explicit release holds nothing to release.
    let stale = lock.acquire().unwrap();
    lock.release().unwrap();
    let taken = lock.acquire().unwrap();
    assert!(matches!(stale.release(), Err(ManagerError::NotAcquired)));
    assert!(lock.locked().unwrap(), "the newer hold stays");
    // A guard moved to another thread releases its own hold there.
    std::thread::scope(|s| s.spawn(move || drop(taken)).join().unwrap());
    assert!(!lock.locked().unwrap());
}

fn hand_over_permit((slots, handed): (SemaphoreProxy, EventProxy)) {
    // Acquired here, released by the parent: the permit is not this process's any more.
    slots.acquire().unwrap().forget();
    handed.set().unwrap();
}

#[test]
fn a_permit_handed_over_and_released_does_not_come_back_twice() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let slots = manager.bounded_semaphore(1).unwrap();
    let handed = manager.event().unwrap();
    let child = Process::new(hand_over_permit, (slots.clone(), handed.clone())).start().unwrap();
    handed.wait().unwrap();
    slots.release().unwrap();
    child.join().unwrap();
    // The child ended after the release: nothing of it is held, nothing comes back.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(slots.get_value().unwrap(), 1);
    assert!(!slots.acquire().unwrap().owner_died());
}

fn hammer(d: DictProxy<u32, u64>) {
    let me = std::process::id();
    for i in 0.. {
        d.insert(me, i).unwrap();
    }
}

fn count_to((d, n): (DictProxy<u32, u64>, u64)) -> u64 {
    let me = std::process::id();
    for i in 0..n {
        d.insert(me, i).unwrap();
        assert_eq!(d.get(&me).unwrap(), Some(i));
    }
    n
}

#[test]
fn a_client_killed_in_the_middle_of_requests_leaves_the_others_served() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u32, u64>().unwrap();
    for round in 0..3 {
        let victim = Process::new(hammer, d.clone()).start().unwrap();
        let steady = Process::new(count_to, (d.clone(), 2000)).start().unwrap();
        assert!(eventually(Duration::from_secs(30), || d.get(&victim.pid()).unwrap().is_some_and(|n| n > 100)));
        victim.kill().unwrap();
        victim.wait();
        assert_eq!(steady.join().unwrap(), 2000, "round {round}");
    }
    assert!(d.len().unwrap() >= 6);
}

fn block_on_lock(lock: LockProxy) -> String {
    match lock.acquire() {
        Err(e @ ManagerError::ServerGone { .. }) => e.to_string(),
        other => format!("unexpected: {other:?}"),
    }
}

#[test]
fn a_killed_server_makes_every_call_fail_instead_of_hanging() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let lock = manager.lock().unwrap();
    let d = manager.dict::<u8, u8>().unwrap();
    let q = manager.queue::<u8>().unwrap();
    lock.acquire().unwrap().leave_locked();
    // A child parked on the server, in `acquire`.
    let blocked = Process::new(block_on_lock, lock.clone()).start().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let server = manager.pid().unwrap();
    sigkill(server);
    assert!(eventually(Duration::from_secs(10), || !pid_running(server)));
    let message = blocked.join().unwrap();
    assert!(message.contains("server"), "{message}");
    assert!(matches!(d.insert(1, 1), Err(ManagerError::ServerGone { .. })));
    assert!(matches!(q.get(), Err(ManagerError::ServerGone { .. })));
    assert!(matches!(manager.dict::<u8, u8>(), Err(ManagerError::ServerGone { .. })));
    manager.shutdown().unwrap();
}

#[test]
fn shutdown_and_drop_end_the_server_and_answer_parked_calls() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let pid = manager.pid().unwrap();
    let q = manager.queue::<u8>().unwrap();
    let waiting = {
        let q = q.clone();
        std::thread::spawn(move || q.get())
    };
    std::thread::sleep(Duration::from_millis(50));
    manager.shutdown().unwrap();
    assert!(matches!(waiting.join().unwrap(), Err(ManagerError::ServerGone { .. })));
    assert!(!pid_running(pid));
    manager.shutdown().unwrap();

    let dropped = Manager::start().unwrap();
    let pid = dropped.pid().unwrap();
    drop(dropped);
    assert!(!pid_running(pid), "dropping the manager ends its server");
}

#[test]
fn a_proxy_keeps_its_manager_alive_in_the_process_that_started_it() {
    let _w = common::heap_user(LIMIT);
    // Python's `Manager().dict()`: the manager is a temporary, its proxy is what is kept.
    let d = Manager::start().unwrap().dict::<String, u32>().unwrap();
    d.insert("a".into(), 1).unwrap();
    assert_eq!(d.get("a").unwrap(), Some(1));

    let manager = Manager::start().unwrap();
    let pid = manager.pid().unwrap();
    let outer = manager.list::<DictProxy<String, u32>>().unwrap();
    outer.push(manager.dict().unwrap()).unwrap();
    drop(manager);
    assert!(pid_running(pid), "a proxy left keeps the server");
    // A proxy decoded from an item keeps it too.
    let inner = outer.get(0).unwrap().expect("stored");
    drop(outer);
    inner.insert("b".into(), 2).unwrap();
    assert_eq!(inner.len().unwrap(), 1);
    // The child's copy goes with the child; the parent's proxy goes on.
    Process::new(child_inserts, inner.clone()).start().unwrap().join().unwrap();
    assert_eq!(inner.len().unwrap(), 2);
    drop(inner);
    assert!(!pid_running(pid), "the last proxy ends the server");

    // An explicit shutdown still ends it, and the proxies say so.
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u8, u8>().unwrap();
    manager.shutdown().unwrap();
    assert!(matches!(d.len(), Err(ManagerError::ServerGone { .. })));
    drop(manager);
    assert!(matches!(d.insert(1, 1), Err(ManagerError::ServerGone { .. })));
}

fn child_inserts(d: DictProxy<String, u32>) {
    d.insert("child".into(), 3).unwrap();
}

// ---- a server that stops answering ---------------------------------------------------------

#[test]
fn a_call_to_a_stopped_server_times_out_and_the_next_call_gets_its_own_answer() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::builder().call_timeout(CALL_TIMEOUT).start().unwrap();
    let (a, b) = (manager.value(1u32).unwrap(), manager.value(2u32).unwrap());
    let q = manager.queue::<u8>().unwrap();
    // A call parked on a server that answers is no timeout: it waits as its operation does.
    let getter = {
        let q = q.clone();
        std::thread::spawn(move || q.get())
    };
    std::thread::sleep(CALL_TIMEOUT * 2);
    q.put(7).unwrap();
    assert_eq!(getter.join().unwrap().unwrap(), 7);

    let lock = manager.lock().unwrap();
    lock.acquire().unwrap().leave_locked();

    // SIGSTOP: the process is alive, and nothing answers. Stopped before the calls below
    // are sent (a raw `SIGSTOP` is only sent: the server could read a call before it
    // lands, review127 L1), asleep in its wait for requests, where it holds none of the
    // family's locks a client's send could wait on (flake81).
    let server = manager.pid().unwrap();
    assert!(common::stop_asleep(server, LIMIT), "the server stopped in its wait");
    let stopped = a.get();
    let parked = q.get_timeout(Duration::from_millis(10));
    signal(server, libc::SIGCONT);
    assert!(matches!(stopped, Err(ManagerError::CallTimeout(t)) if t == CALL_TIMEOUT), "{stopped:?}");
    assert!(matches!(parked, Err(ManagerError::CallTimeout(_))), "{parked:?}");
    // The late answers (1, then Timeout) are never read as these calls' answers.
    assert_eq!(b.get().unwrap(), 2);
    assert!(matches!(q.try_get(), Err(ManagerError::Empty)));
    assert_eq!(a.get().unwrap(), 1);
    // The connection that timed out is abandoned: what the call that timed out (or a later
    // request of it) took is released as a dead holder's (it might have been an acquire
    // granted late, which nobody would ever release); the `Lock` this thread left locked
    // through it by an earlier, answered call stays this (live) process's until released.
    let other = {
        let lock = lock.clone();
        std::thread::spawn(move || lock.acquire_timeout(Duration::from_millis(200)).map(|held| held.owner_died()))
    };
    assert!(matches!(other.join().unwrap(), Err(ManagerError::Timeout)), "still held");
    lock.release().unwrap();
    assert!(!lock.acquire().unwrap().owner_died(), "released by its process, not taken from a dead one");
}

/// A `Lock` acquired by a call that was answered is its live process's: a later call on
/// the same thread (connection) that times out on a stopped server abandons that
/// connection, but not the lock, whose guard still lives (its release would then free
/// another holder's lock).
#[test]
fn a_lock_acquired_before_a_call_timed_out_on_its_connection_stays_held() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::builder().call_timeout(CALL_TIMEOUT).start().unwrap();
    let lock = manager.lock().unwrap();
    let v = manager.value(1u32).unwrap();
    let held = lock.acquire().unwrap();
    let server = manager.pid().unwrap();
    assert!(common::stop_asleep(server, LIMIT), "the server stopped in its wait");
    let gave_up = v.get();
    signal(server, libc::SIGCONT);
    assert!(matches!(gave_up, Err(ManagerError::CallTimeout(t)) if t == CALL_TIMEOUT), "{gave_up:?}");
    assert_eq!(v.get().unwrap(), 1);
    let lock2 = lock.clone();
    let second = std::thread::spawn(move || {
        // The goodbye of the abandoned connection reaches the server in its own time.
        (0..5).find_map(|_| lock2.acquire_timeout(Duration::from_millis(200)).ok().map(|g| g.owner_died()))
    });
    let second = second.join().unwrap();
    assert_eq!(second, None, "a second holder while the first guard lives (owner_died: {second:?})");
    held.release().unwrap();
    assert!(!lock.try_acquire().unwrap().owner_died());
}

/// An `acquire` that timed out on a stopped server may still be granted once the server
/// runs again, to a connection nobody reads: that grant is no holder's, so the lock goes to
/// the next acquire (told that its holder died), never stays held by the live process that
/// gave up on it.
#[test]
fn an_acquire_that_timed_out_on_a_stopped_server_holds_nothing_once_it_runs_again() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::builder().call_timeout(CALL_TIMEOUT).start().unwrap();
    let lock = manager.lock().unwrap();
    let server = manager.pid().unwrap();
    assert!(common::stop_asleep(server, LIMIT), "the server stopped in its wait");
    let gave_up = lock.acquire().map(|held| held.leave_locked());
    signal(server, libc::SIGCONT);
    assert!(matches!(gave_up, Err(ManagerError::CallTimeout(t)) if t == CALL_TIMEOUT), "{gave_up:?}");
    let other = std::thread::spawn(move || lock.acquire_timeout(LIMIT / 2).map(|held| held.owner_died()));
    assert!(matches!(other.join().unwrap(), Ok(true)), "released, as a dead holder's lock");
}

/// A `get` that timed out on a stopped server while its queue held items is answered the
/// first item once the server runs again, on a connection nobody reads: the item goes back
/// to the front of its queue at the connection's goodbye, and its task is nobody's (the
/// caller was told `CallTimeout`: its get did not happen). Before mgr101 the answer went
/// with the abandoned reply ring: 7 was lost, the next get had 8, and its task was told
/// lost to `join`.
#[test]
fn an_item_answered_to_a_get_that_timed_out_goes_back_to_its_queue() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::builder().call_timeout(CALL_TIMEOUT).start().unwrap();
    let q = manager.joinable_queue::<u32>().unwrap();
    q.put(7).unwrap();
    q.put(8).unwrap();
    let server = manager.pid().unwrap();
    assert!(common::stop_asleep(server, LIMIT), "the server stopped in its wait");
    // The get is on the ring before its goodbye (both this thread's, on one ring, in
    // order): the server answers it 7 first, then reads the goodbye.
    let gave_up = q.get();
    signal(server, libc::SIGCONT);
    assert!(matches!(gave_up, Err(ManagerError::CallTimeout(t)) if t == CALL_TIMEOUT), "{gave_up:?}");
    // A new connection's requests come after the goodbye on the ring.
    let got = [q.get_timeout(Duration::from_secs(5)), q.get_timeout(Duration::from_secs(5))];
    println!("got after the abandoned get: {got:?}");
    assert!(matches!(got, [Ok(7), Ok(8)]), "{got:?}");
    q.task_done().unwrap();
    q.task_done().unwrap();
    let joined = q.join_timeout(LIMIT / 2);
    println!("join said {joined:?}");
    joined.unwrap();
}

/// A child of [`an_item_answered_to_a_get_that_failed_in_flight_goes_back_to_its_queue`]:
/// makes its connection while the server runs, stops the server asleep, and sends a `get`
/// whose ping fails while it waits (refused as with a full heap: fail point
/// `manager.ping.heap_full`, armed in this process only); lets the server go on, then gets
/// twice more on the same thread, finishing the task of each item got. What each said.
fn get_whose_ping_fails_then_get_twice((q, server): (JoinableQueueProxy<u32>, u32)) -> Vec<String> {
    assert_eq!(q.len().unwrap(), 2, "its connection made, both items queued");
    assert!(common::stop_asleep(server, LIMIT), "the server stopped in its wait");
    multiproc::__private::crash_at("fail:manager.ping.heap_full");
    let failed = match q.get() {
        Err(ManagerError::HeapFull(_)) => "HeapFull".to_string(),
        other => format!("{other:?}"),
    };
    multiproc::__private::crash_disarm();
    signal(server, libc::SIGCONT);
    let mut said = vec![failed];
    for _ in 0..2 {
        let got = q.get_timeout(Duration::from_secs(5));
        if got.is_ok() {
            q.task_done().unwrap();
        }
        said.push(format!("{got:?}"));
    }
    said
}

/// A `get` that fails after it was sent for another reason than its call timeout (its
/// ping's put refused `HeapFull`) is still in flight: the server answers it once it runs.
/// The connection is abandoned as after a `CallTimeout`, so the item goes back to the front
/// of its queue at the goodbye and the thread's next get has it. Before fix97 (review127
/// M1) the thread kept the connection: its next get read the old answer first and dropped
/// it (7 lost, `[Ok(8), Err(Timeout)]`), and 7's task stayed counted to the live child.
#[test]
fn an_item_answered_to_a_get_that_failed_in_flight_goes_back_to_its_queue() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::builder().call_timeout(CALL_TIMEOUT).start().unwrap();
    let q = manager.joinable_queue::<u32>().unwrap();
    q.put(7).unwrap();
    q.put(8).unwrap();
    // In a child: the fail point is armed process-wide, and a ping of another test's call
    // in this binary must not fail.
    let server = manager.pid().unwrap();
    let said = Process::new(get_whose_ping_fails_then_get_twice, (q.clone(), server)).start().unwrap().join();
    signal(server, libc::SIGCONT);
    println!("the child said {said:?}");
    let said = said.unwrap();
    assert_eq!(said, ["HeapFull", "Ok(7)", "Ok(8)"], "{said:?}");
    let joined = q.join_timeout(LIMIT / 2);
    println!("join said {joined:?}");
    joined.unwrap();
}

/// The three ways to `get` a `u32` of `q` (whose items are not), each expected to fail
/// `Codec`, with the queue's length after each; stops at the first that changed it (an
/// item lost: an endless `get` could wait for ever).
fn wrong_type_gets<Q: std::ops::Deref<Target = QueueProxy<u32>>>(q: &Q) -> Vec<String> {
    let before = q.len().unwrap();
    let mut said = Vec::new();
    for how in ["try_get", "get_timeout", "get"] {
        let got = match how {
            "try_get" => q.try_get(),
            "get_timeout" => q.get_timeout(LIMIT / 4),
            _ => q.get(),
        };
        let got = match got {
            Err(ManagerError::Codec(_)) => "Codec".to_string(),
            other => format!("{other:?}"),
        };
        let left = q.len().unwrap();
        said.push(format!("{how}: {got}, {left} left"));
        if left != before {
            break;
        }
    }
    said
}

/// mgr106: a `get` whose item the caller cannot decode (a proxy of the wrong type on the
/// queue, a value whose `Deserialize` refuses) fails `Codec` and gives the item back to the
/// front of its queue (`Op::GiveBack`, matched against the caller's last take): the right
/// consumer then gets it, a joinable queue's task is nobody's (so `join` counts right),
/// and the references in an item (a proxy inside) live on with it. Before, the server had
/// counted the item taken: it was lost, with its task the caller's.
#[test]
fn a_get_whose_item_does_not_decode_gives_it_back_to_the_front_of_its_queue() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let words = manager.joinable_queue::<String>().unwrap();
    manager.publish("words", &words).unwrap();
    let numbers: JoinableQueueProxy<u32> = manager.lookup("words").unwrap();
    words.put("first".into()).unwrap();
    words.put("second".into()).unwrap();
    let said = wrong_type_gets(&numbers);
    println!("the wrong type's gets: {said:?}");
    assert_eq!(said, ["try_get: Codec, 2 left", "get_timeout: Codec, 2 left", "get: Codec, 2 left"]);
    assert_eq!(words.try_get().unwrap(), "first", "the front item, given back to the front");
    words.task_done().unwrap();
    assert_eq!(words.try_get().unwrap(), "second");
    words.task_done().unwrap();
    words.join_timeout(LIMIT / 4).unwrap();
    assert!(matches!(words.task_done(), Err(ManagerError::TaskDone(_))), "no task left over");

    // An item holding a proxy: the object lives on with the item given back.
    let lists = manager.queue::<ListProxy<u8>>().unwrap();
    manager.publish("lists", &lists).unwrap();
    let dicts: QueueProxy<DictProxy<u8, u8>> = manager.lookup("lists").unwrap();
    let list = manager.list_from([7u8]).unwrap();
    lists.put(list).unwrap();
    assert!(matches!(dicts.try_get(), Err(ManagerError::Codec(_))));
    let back = lists.try_get().unwrap();
    assert_eq!(back.to_vec().unwrap(), [7]);
}

thread_local! {
    /// The queue a [`TakesWhileDecoding`] takes from while it decodes, and what it took.
    static NESTED_QUEUE: std::cell::RefCell<Option<JoinableQueueProxy<String>>> = const { std::cell::RefCell::new(None) };
    static NESTED_TOOK: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An item whose `Deserialize` takes from [`NESTED_QUEUE`] and then refuses.
struct TakesWhileDecoding;

impl Serialize for TakesWhileDecoding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("")
    }
}

impl<'de> Deserialize<'de> for TakesWhileDecoding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?;
        NESTED_QUEUE.with(|q| {
            if let Some(q) = &*q.borrow()
                && let Ok(s) = q.try_get()
            {
                NESTED_TOOK.with(|t| t.borrow_mut().push(s));
            }
        });
        Err(serde::de::Error::custom("refused after taking"))
    }
}

/// review170 M2, as documented on `QueueProxy`: a get whose item's decoding takes from the
/// same queue on the same thread (a `Deserialize` calling a proxy, which goes on the
/// thread's own connection) and then fails loses the *outer* item: the nested take is now
/// the thread's last, so the outer give-back does not match, and its task is marked done.
/// (The docs said a nested call had a connection of its own and lost the nested item.)
#[test]
fn a_get_whose_decoding_takes_from_the_same_queue_loses_the_outer_item() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let words = manager.joinable_queue::<String>().unwrap();
    manager.publish("nested", &words).unwrap();
    words.put("first".into()).unwrap();
    words.put("second".into()).unwrap();
    let sneaky: JoinableQueueProxy<TakesWhileDecoding> = manager.lookup("nested").unwrap();
    NESTED_QUEUE.with(|q| *q.borrow_mut() = Some(words.clone()));
    let outer = match sneaky.try_get() {
        Err(ManagerError::Codec(_)) => "Codec".to_string(),
        Ok(_) => "Ok".to_string(),
        Err(e) => format!("{e:?}"),
    };
    NESTED_QUEUE.with(|q| *q.borrow_mut() = None);
    let nested = NESTED_TOOK.with(|t| t.take());
    let left = words.len().unwrap();
    // The nested get's task is its taker's; the outer one was marked done.
    words.task_done().unwrap();
    let joined = format!("{:?}", words.join_timeout(LIMIT / 4));
    println!("outer {outer}; the nested get took {nested:?}; then {left} left, join {joined}");
    assert_eq!((outer.as_str(), nested, left, joined.as_str()), ("Codec", vec!["second".to_string()], 0, "Ok(())"));
}

/// Every call that takes an item out of a list, dict or set and hands it to the client
/// (`ListProxy::pop`/`pop_at`, `DictProxy::remove`/`pop`/`popitem`, `SetProxy::pop`),
/// whose item the client cannot decode (a proxy of another type), puts it back where it
/// was and says `Codec`; a proxy inside the item lives on with it. Before, the server had
/// moved the item out: it was lost.
#[test]
fn a_pop_whose_item_does_not_decode_puts_it_back_where_it_was() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let words = manager.list_from(["a".to_string(), "b".into(), "c".into()]).unwrap();
    manager.publish("words", &words).unwrap();
    let numbers: ListProxy<u32> = manager.lookup("words").unwrap();
    let dict = manager.dict_from([("k".to_string(), "x".to_string()), ("l".into(), "y".into())]).unwrap();
    manager.publish("dict", &dict).unwrap();
    let wrong_values: DictProxy<String, u32> = manager.lookup("dict").unwrap();
    let wrong_keys: DictProxy<u32, String> = manager.lookup("dict").unwrap();
    let set = manager.set_from(["s".to_string()]).unwrap();
    manager.publish("set", &set).unwrap();
    let wrong_set: SetProxy<u32> = manager.lookup("set").unwrap();
    let lists = manager.list::<ListProxy<u8>>().unwrap();
    manager.publish("lists", &lists).unwrap();
    let dicts: ListProxy<DictProxy<u8, u8>> = manager.lookup("lists").unwrap();
    lists.push(manager.list_from([7u8]).unwrap()).unwrap();

    let codec = |r: Result<(), ManagerError>| match r {
        Err(ManagerError::Codec(_)) => "Codec".to_string(),
        other => format!("{other:?}"),
    };
    let said = [
        format!("list pop: {}, {:?}", codec(numbers.pop().map(drop)), words.to_vec().unwrap()),
        format!("list pop_at(0): {}, {:?}", codec(numbers.pop_at(0).map(drop)), words.to_vec().unwrap()),
        format!("list pop_at(1): {}, {:?}", codec(numbers.pop_at(1).map(drop)), words.to_vec().unwrap()),
        format!("dict remove: {}, {:?}", codec(wrong_values.remove("k").map(drop)), dict.items().unwrap()),
        format!("dict pop: {}, {:?}", codec(wrong_values.pop("k", 0).map(drop)), dict.items().unwrap()),
        format!("dict popitem value: {}, {:?}", codec(wrong_values.popitem().map(drop)), dict.items().unwrap()),
        format!("dict popitem key: {}, {:?}", codec(wrong_keys.popitem().map(drop)), dict.items().unwrap()),
        format!("set pop: {}, {:?}", codec(wrong_set.pop().map(drop)), set.to_vec().unwrap()),
        format!("list of proxies pop: {}, {} left", codec(dicts.pop().map(drop)), lists.len().unwrap()),
    ];
    println!("the wrong type's pops: {said:#?}");
    let words_now = r#"["a", "b", "c"]"#;
    assert_eq!(
        said,
        [
            format!("list pop: Codec, {words_now}"),
            format!("list pop_at(0): Codec, {words_now}"),
            format!("list pop_at(1): Codec, {words_now}"),
            // Back under its key where it was (first here), not last as a re-insert.
            r#"dict remove: Codec, [("k", "x"), ("l", "y")]"#.to_string(),
            r#"dict pop: Codec, [("k", "x"), ("l", "y")]"#.to_string(),
            r#"dict popitem value: Codec, [("k", "x"), ("l", "y")]"#.to_string(),
            r#"dict popitem key: Codec, [("k", "x"), ("l", "y")]"#.to_string(),
            r#"set pop: Codec, ["s"]"#.to_string(),
            "list of proxies pop: Codec, 1 left".to_string(),
        ]
    );
    // The proxy inside lived on with the item put back.
    assert_eq!(lists.pop().unwrap().unwrap().to_vec().unwrap(), [7]);
}

// ---- kinds, registrations and the server's life ---------------------------------------------

#[test]
fn a_proxy_read_as_another_kind_is_a_typed_error() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    manager.publish("lock", &manager.lock().unwrap()).unwrap();
    assert!(matches!(manager.lookup::<DictProxy<u8, u8>>("lock"), Err(ManagerError::Codec(_))));
    assert!(matches!(manager.barrier(0), Err(ManagerError::InvalidArgument(_))));
    let _ = StartMethod::Fork;
}

fn start_manager_and_wait((pid_out, method): (multiproc::Value<u32>, StartMethod)) {
    let manager = Manager::builder().start_method(method).start().unwrap();
    pid_out.set(manager.pid().unwrap());
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn the_server_dies_with_the_process_that_started_it() {
    let _w = common::heap_user(LIMIT);
    for method in common::METHODS {
        let pid = multiproc::Value::new(0u32).unwrap();
        let owner = Process::new(start_manager_and_wait, (pid.clone(), method)).start().unwrap();
        assert!(eventually(Duration::from_secs(30), || pid.get() != 0), "{method:?}");
        let server = pid.get();
        assert!(pid_running(server));
        owner.kill().unwrap();
        owner.wait();
        assert!(
            eventually(Duration::from_secs(30), || !pid_running(server)),
            "{method:?}: the server outlived its owner"
        );
    }
}

/// A manager's owner: starts one, sends a queue proxy and a lock proxy of it to the test,
/// then waits to be killed.
fn hand_out_proxies_and_wait((out, method): (multiproc::Queue<(QueueProxy<u8>, LockProxy, u32)>, StartMethod)) {
    let manager = Manager::builder().start_method(method).start().unwrap();
    let lock = manager.lock().unwrap();
    lock.acquire().unwrap().leave_locked();
    out.put((manager.queue().unwrap(), lock, manager.pid().unwrap())).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// Proxies held by another process than the manager's owner, the owner killed (no call
/// timeout): a call parked on the server (a `get`, an `acquire` of a held lock) and every
/// later call end with `ServerGone`, none waits for ever.
#[test]
fn proxies_held_past_their_managers_killed_owner_fail_typed() {
    let _w = common::heap_user(LIMIT);
    for method in common::METHODS {
        let out = multiproc::Queue::new().unwrap();
        let owner = Process::new(hand_out_proxies_and_wait, (out.clone(), method)).start().unwrap();
        let (q, lock, server) = out.get_timeout(LIMIT).unwrap();
        // Each thread first makes a call that returns (its connection then exists), then
        // says which it is and parks: the owner is killed once both are asleep in their
        // wait for the answer, not before they asked (review61 L6: a sleep stood in).
        let (tids, parked) = std::sync::mpsc::channel();
        let parked_get = {
            let (q, tids) = (q.clone(), tids.clone());
            std::thread::spawn(move || {
                assert_eq!(q.len().unwrap(), 0);
                tids.send(common::tid()).unwrap();
                q.get()
            })
        };
        let parked_acquire = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                assert!(lock.locked().unwrap());
                tids.send(common::tid()).unwrap();
                lock.acquire().map(|g| g.leave_locked())
            })
        };
        for tid in [parked.recv().unwrap(), parked.recv().unwrap()] {
            assert!(eventually(LIMIT, || common::thread_in_futex_wait(tid)), "{method:?}: thread {tid} parked");
        }
        owner.kill().unwrap();
        assert_eq!(owner.wait(), -9);
        assert!(eventually(Duration::from_secs(30), || !pid_running(server)), "{method:?}: the server outlived");
        assert!(matches!(parked_get.join().unwrap(), Err(ManagerError::ServerGone { .. })), "{method:?}");
        assert!(matches!(parked_acquire.join().unwrap(), Err(ManagerError::ServerGone { .. })), "{method:?}");
        assert!(matches!(q.put(1).map_err(ManagerError::from), Err(ManagerError::ServerGone { .. })), "{method:?}");
        assert!(matches!(lock.try_acquire(), Err(ManagerError::ServerGone { .. })), "{method:?}");
    }
}

/// A registered type whose method starts a process on the server.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Starter;

fn sleep_a_minute(_: ()) {
    std::thread::sleep(Duration::from_secs(60));
}

impl Starter {
    /// Starts a process that sleeps a minute, left running; its pid.
    pub fn start_sleeper(&mut self) -> u32 {
        let child = Process::new(sleep_a_minute, ()).start().unwrap();
        let pid = child.pid();
        std::mem::forget(child);
        pid
    }
}

multiproc::managed! {
    /// A `Starter` on the server.
    pub proxy StarterProxy for Starter {
        fn start_sleeper(&mut self) -> u32;
    }
}

fn start_a_process_through_the_manager((pids, method): (multiproc::RawArray<u32>, StartMethod)) {
    let manager = Manager::builder().start_method(method).start().unwrap();
    let starter: StarterProxy = manager.create(Starter).unwrap();
    let grandchild = starter.start_sleeper().unwrap();
    pids.set(1, grandchild);
    pids.set(0, manager.pid().unwrap());
    std::thread::sleep(Duration::from_secs(600));
}

/// A process a registered object starts on the server dies with the manager's owner when
/// the owner is killed, as the server does.
#[test]
fn a_process_started_by_a_managed_object_dies_when_the_managers_owner_is_killed() {
    let _w = common::heap_user(LIMIT);
    for method in common::METHODS {
        let pids = multiproc::RawArray::<u32>::new(2).unwrap();
        let owner = Process::new(start_a_process_through_the_manager, (pids.clone(), method)).start().unwrap();
        assert!(eventually(Duration::from_secs(30), || pids.get(0) != 0), "{method:?}");
        let (server, grandchild) = (pids.get(0), pids.get(1));
        assert!(pid_running(server) && pid_running(grandchild));
        owner.kill().unwrap();
        owner.wait();
        assert!(
            eventually(Duration::from_secs(30), || !pid_running(server)),
            "{method:?}: the server outlived its owner"
        );
        assert!(
            eventually(Duration::from_secs(30), || !pid_running(grandchild)),
            "{method:?}: the process a managed object started outlived the manager's killed owner"
        );
    }
}

#[test]
fn managers_and_proxies_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Manager>();
    send_sync::<DictProxy<String, std::rc::Rc<u8>>>();
    send_sync::<ListProxy<std::cell::Cell<u8>>>();
    send_sync::<QueueProxy<String>>();
    send_sync::<LockProxy>();
    send_sync::<CounterProxy>();
}

#[test]
fn a_registered_type_is_known_to_every_new_server() {
    let _w = common::heap_user(LIMIT);
    // Servers come and go (their shared state may reuse the same memory): each learns the
    // type from the client that first needs it.
    for n in 0..5 {
        let manager = Manager::start().unwrap();
        let c: CounterProxy = manager.create(Counter { n, log: Vec::new() }).unwrap();
        assert_eq!(c.incr(1).unwrap(), n + 1);
    }
}

// ---- the heap ------------------------------------------------------------------------------

#[test]
fn managers_started_and_shut_down_after_a_request_leave_the_heap_as_they_found_it() {
    let cycle = || {
        let manager = Manager::start().unwrap();
        let d = manager.dict::<u8, u8>().unwrap();
        d.insert(1, 2).unwrap();
        drop(d);
        manager.shutdown().unwrap();
    };
    // The first cycle sets up what every later one reuses (this thread's connection list).
    {
        let _w = common::heap_user(LIMIT);
        cycle();
    }
    let check = common::leak_check(LIMIT);
    for _ in 0..200 {
        cycle();
    }
    // Before the fix, each cycle left a connection with its reply ring: 200 × 10 KiB.
    check.assert_at_most(64 << 10);
}

// ---- the condition's wake-ups ----------------------------------------------------------------

fn waitfor_child((cond, state): (ConditionProxy, ValueProxy<i64>)) -> bool {
    let mut held = cond.acquire().unwrap();
    state.set(0).unwrap();
    // Notifies, then waits itself: the wake-up was for the parent, already waiting.
    held.notify(1).unwrap();
    held.wait_for(|| state.get().unwrap() == 4).unwrap();
    state.get().unwrap() == 4
}

/// CPython's `test_waitfor` (`_test_waitfor_f`), with untimed waits: a lost wake-up hangs.
#[test]
fn a_manager_condition_passes_cpythons_test_waitfor() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let cond = manager.condition().unwrap();
    let state = manager.value(-1i64).unwrap();
    let child = Process::new(waitfor_child, (cond.clone(), state.clone())).start().unwrap();
    {
        let mut held = cond.acquire().unwrap();
        held.wait_for(|| state.get().unwrap() == 0).unwrap();
        assert_eq!(state.get().unwrap(), 0);
    }
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(10));
        let mut held = cond.acquire().unwrap();
        state.set(state.get().unwrap() + 1).unwrap();
        held.notify(1).unwrap();
    }
    assert!(child.join().unwrap());
}

fn take_turns((cond, turn, me, rounds): (ConditionProxy, ValueProxy<u8>, u8, u32)) {
    for _ in 0..rounds {
        let mut held = cond.acquire().unwrap();
        held.wait_for(|| turn.get().unwrap() == me).unwrap();
        turn.set(1 - me).unwrap();
        held.notify(1).unwrap();
    }
}

/// Two processes take turns with notify and untimed waits: one lost wake-up is a deadlock.
#[test]
fn two_processes_take_two_thousand_turns_on_a_manager_condition() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let cond = manager.condition().unwrap();
    let turn = manager.value(0u8).unwrap();
    let rounds = 2000;
    let players: Vec<_> = (0..2u8)
        .map(|me| Process::new(take_turns, (cond.clone(), turn.clone(), me, rounds)).start().unwrap())
        .collect();
    for p in players {
        p.join().unwrap();
    }
    assert_eq!(turn.get().unwrap(), 0);
}

/// A process of the family that makes a call on this child's manager from a thread of its
/// own, one thread after another (each a connection, numbered by the family).
fn calls_from_fresh_threads((d, rounds): (DictProxy<u32, u32>, u32)) {
    for round in 0..rounds {
        let d = d.clone();
        std::thread::spawn(move || d.insert(round, round).unwrap_or_else(|e| panic!("round {round}: {e}")))
            .join()
            .unwrap();
    }
}

#[test]
fn family_connection_numbers_are_taken_again_after_their_threads_end() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::builder().start().unwrap();
    let d = manager.dict::<u32, u32>().unwrap();
    // All but the last 20 of 2^24 - 1 numbers taken, as by that many threads over the
    // family's life: each thread that calls the manager opens a connection of its own.
    assert!(multiproc::__private::manager_skip_connections(&manager, 0xff_ffff - 20));
    for round in 0..200u32 {
        let d = d.clone();
        std::thread::spawn(move || d.insert(round, round).unwrap_or_else(|e| panic!("round {round}: {e}")))
            .join()
            .unwrap();
    }
    // And from a child process: its threads take numbers of the same family counter.
    Process::new(calls_from_fresh_threads, (d.clone(), 100)).start().unwrap().join().unwrap();
    assert_eq!(d.len().unwrap(), 200);
}

const FORK_SERVER_KILLED_INNER: &str = "MULTIPROC_TEST_MANAGER_FORK_SERVER_KILLED_INNER";

#[test]
fn a_fork_server_manager_starts_after_the_fork_server_was_killed_inner() {
    if std::env::var_os(FORK_SERVER_KILLED_INNER).is_none() {
        return;
    }
    let leaks = common::leak_check(LIMIT);
    {
        let first = Manager::builder().start_method(StartMethod::ForkServer).start().unwrap();
        let d = first.dict::<String, i32>().unwrap();
        d.insert("a".into(), 1).unwrap();
        for round in 0..2 {
            let server = multiproc::__private::fork_server_pid().expect("this process started the fork server");
            sigkill(server);
            assert!(eventually(LIMIT, || !pid_running(server)), "round {round}");
            // The first manager's server is the main process's own child: it serves on.
            assert_eq!(d.len().unwrap(), 1 + 2 * round, "round {round}");
            // A new manager starts through a fork server started again, and serves a
            // fork-server child too.
            let second = Manager::builder().start_method(StartMethod::ForkServer).start().unwrap();
            let l = second.list_from(0..10).unwrap();
            let d = d.clone();
            let cleared = first.dict::<String, i32>().unwrap();
            Process::new(child_fills, (cleared.clone(), l.clone()))
                .start_method(StartMethod::ForkServer)
                .start()
                .unwrap()
                .join()
                .unwrap();
            assert_eq!(cleared.items().unwrap(), vec![("1".to_string(), 1), ("two".to_string(), 2)], "round {round}");
            assert_eq!(l.to_vec().unwrap(), (0..10).rev().collect::<Vec<_>>(), "round {round}");
            d.insert(format!("b{round}"), 2).unwrap();
            d.insert(format!("c{round}"), 3).unwrap();
            assert_ne!(multiproc::__private::fork_server_pid(), Some(server), "round {round}: a new fork server");
            let pid = second.pid().unwrap();
            second.shutdown().unwrap();
            assert!(!pid_running(pid), "round {round}");
        }
        first.shutdown().unwrap();
    }
    leaks.assert_no_leak();
    println!("INNER-DONE");
}

/// A `ForkServer` manager's server starts through the family's fork server like any
/// process: once that was killed (`kill -9`), the next manager's start starts a new fork
/// server (as a pool's replacement does), and a manager started before goes on serving.
#[test]
fn a_fork_server_manager_starts_after_the_fork_server_was_killed() {
    let _w = common::watchdog(LIMIT);
    common::run_inner_test(
        "a_fork_server_manager_starts_after_the_fork_server_was_killed_inner",
        FORK_SERVER_KILLED_INNER,
    );
}

// ---- errors named as the family's (audw50's cosmetic findings) ------------------------------

/// A bounded semaphore of 0 is allowed, here and on the manager, as in Python (both
/// `multiprocessing.BoundedSemaphore(0)` and the manager's): no acquire passes, and a
/// release is one too many. Before, the family's `BoundedSemaphore::new(0)` panicked
/// while the manager's was `Ok`.
#[test]
fn a_bounded_semaphore_of_zero_is_allowed_here_and_on_the_manager_as_in_python() {
    let _w = common::heap_user(LIMIT);
    let local = multiproc::BoundedSemaphore::new(0).unwrap();
    assert!(matches!(local.try_acquire(), Err(multiproc::TryAcquireError::WouldBlock)));
    assert_eq!(local.release(), Err(multiproc::ReleaseError::OverRelease { bound: 0 }));
    let manager = Manager::start().unwrap();
    let proxy = manager.bounded_semaphore(0).unwrap();
    assert!(matches!(proxy.try_acquire(), Err(ManagerError::WouldBlock)));
    assert!(matches!(proxy.release(), Err(ManagerError::NotAcquired)));
}

/// The manager's errors say what the family's say: a barrier of no party is an invalid
/// argument, not a malformed request (Python's `ValueError`); a `task_done` too many says
/// so, as the family's `TaskDoneError` (Python: "task_done() called too many times"), not
/// "released more often than acquired"; a call with a zero call timeout says 0 ns, as a
/// remote client's (it said 1 ns).
#[test]
fn the_managers_errors_say_what_the_familys_say() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let barrier = manager.barrier(0);
    assert!(matches!(barrier, Err(ManagerError::InvalidArgument(_))), "{barrier:?}");
    assert!(matches!(multiproc::Barrier::new(0), Err(multiproc::Error::InvalidArgument(_))));
    let q: JoinableQueueProxy<u8> = manager.joinable_queue().unwrap();
    let too_many = q.task_done();
    assert!(matches!(too_many, Err(ManagerError::TaskDone(multiproc::TaskDoneError))), "{too_many:?}");
    assert_eq!(too_many.unwrap_err().to_string(), multiproc::TaskDoneError.to_string());
    let impatient = Manager::builder().call_timeout(Duration::ZERO).start().unwrap();
    let failed = impatient.dict::<u8, u8>();
    assert!(matches!(failed, Err(ManagerError::CallTimeout(t)) if t.is_zero()), "{failed:?}");
}
