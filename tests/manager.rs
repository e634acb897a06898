//! `Manager`: a server process keeping shared objects, used from any process through
//! typed proxies, locally (shared memory) or remotely (TCP, after a mutual HMAC
//! challenge).
//!
//! Proxies are handles: they travel to children, back as results, into pool tasks and
//! into other managed containers, and what nothing refers to any more is freed. Nothing
//! hangs: a killed server makes every call fail with `ServerGone`; a killed client has its
//! locks released and the others go on; malformed frames, wrong keys, unknown methods are
//! typed errors that leave the server serving.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{eventually, pid_running};
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
    assert!(matches!(jq.task_done(), Err(ManagerError::NotAcquired)));
}

fn get_until_shut_down(q: QueueProxy<u64>) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        match q.get() {
            Ok(n) => got.push(n),
            Err(ManagerError::ShutDown) => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

fn put_until_shut_down(q: QueueProxy<u64>) -> u64 {
    match q.put(7) {
        Err(e) if matches!(e.reason(), ManagerError::ShutDown) => e.into_inner() - 6,
        other => panic!("{other:?}"),
    }
}

fn join_then_answer(q: JoinableQueueProxy<u64>) -> bool {
    q.join().is_ok()
}

#[test]
fn a_managed_queue_shut_down_refuses_puts_and_answers_every_waiter() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::builder().address("127.0.0.1:0").authkey(KEY).start().unwrap();
    let q = manager.queue_bounded::<u64>(1).unwrap();
    // Getters waiting in another process and in a remote client.
    manager.publish("q", &q).unwrap();
    let remote = Manager::connect(manager.address().unwrap(), KEY).unwrap();
    let rq: QueueProxy<u64> = remote.lookup("q").unwrap();
    let remote_getter = std::thread::spawn(move || get_until_shut_down(rq));
    let getter = Process::new(get_until_shut_down, q.clone()).start().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(!q.is_shutdown().unwrap());
    q.shutdown(false).unwrap();
    assert!(q.is_shutdown().unwrap());
    assert_eq!(getter.join().unwrap(), Vec::<u64>::new());
    assert_eq!(remote_getter.join().unwrap(), Vec::<u64>::new());
    let refused = q.try_put(1).unwrap_err();
    assert!(matches!(refused.reason(), ManagerError::ShutDown));
    assert_eq!(refused.into_inner(), 1);
    assert!(matches!(q.put(1).map_err(ManagerError::from), Err(ManagerError::ShutDown)));
    assert!(matches!(q.try_get(), Err(ManagerError::ShutDown)));

    // A putter waiting for room is answered; what was in the queue is still taken.
    let q = manager.queue_bounded::<u64>(1).unwrap();
    q.put(1).unwrap();
    let putter = Process::new(put_until_shut_down, q.clone()).start().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    q.shutdown(false).unwrap();
    assert_eq!(putter.join().unwrap(), 1);
    assert_eq!(get_until_shut_down(q), [1]);

    // Immediate: the items are dropped and counted done, so a waiting join returns.
    let jq = manager.joinable_queue::<u64>().unwrap();
    for n in 0..3 {
        jq.put(n).unwrap();
    }
    let joiner = Process::new(join_then_answer, jq.clone()).start().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    jq.shutdown(true).unwrap();
    assert!(joiner.join().unwrap());
    assert!(jq.is_empty().unwrap());
    assert!(matches!(jq.get_timeout(Duration::from_secs(10)), Err(ManagerError::ShutDown)));
    assert!(matches!(jq.task_done(), Err(ManagerError::NotAcquired)));
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

// ---- registered types ---------------------------------------------------------------------

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    n: i64,
    log: Vec<String>,
}

impl Counter {
    fn incr(&mut self, by: i64) -> i64 {
        self.n += by;
        self.n
    }

    fn get(&self) -> i64 {
        self.n
    }

    fn note(&mut self, who: String, what: String) {
        self.log.push(format!("{who}: {what}"));
    }

    fn explode(&mut self) -> i64 {
        panic!("the counter exploded");
    }
}

multiproc::managed! {
    /// A `Counter` kept by the manager.
    pub proxy CounterProxy for Counter {
        fn incr(&mut self, by: i64) -> i64;
        fn get(&self) -> i64;
        fn note(&mut self, who: String, what: String);
        fn explode(&mut self) -> i64;
    }
}

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

fn signal(pid: u32, sig: i32) {
    // SAFETY: sending a signal to a process id has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Long enough for a loaded machine's healthy server to answer a ping.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

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

    // SIGSTOP: the process is alive, and nothing answers.
    let server = manager.pid().unwrap();
    signal(server, libc::SIGSTOP);
    let stopped = a.get();
    let parked = q.get_timeout(Duration::from_millis(10));
    signal(server, libc::SIGCONT);
    assert!(matches!(stopped, Err(ManagerError::CallTimeout(t)) if t == CALL_TIMEOUT), "{stopped:?}");
    assert!(matches!(parked, Err(ManagerError::CallTimeout(_))), "{parked:?}");
    // The late answers (1, then Timeout) are never read as these calls' answers.
    assert_eq!(b.get().unwrap(), 2);
    assert!(matches!(q.try_get(), Err(ManagerError::Empty)));
    assert_eq!(a.get().unwrap(), 1);
}

#[test]
fn a_remote_call_to_a_stopped_server_times_out_and_closes_its_connection() {
    let _w = common::heap_user(LIMIT);
    let manager = remote_manager();
    let server = manager.pid().unwrap();
    let address = manager.address().unwrap().to_string();
    let connect = || Manager::builder().address(address.clone()).authkey(KEY).call_timeout(CALL_TIMEOUT).connect();
    let remote = connect().unwrap();
    let d = remote.dict::<u8, u8>().unwrap();
    let q = remote.queue::<u8>().unwrap();
    let getter = {
        let q = q.clone();
        std::thread::spawn(move || q.get())
    };
    std::thread::sleep(CALL_TIMEOUT * 2);
    q.put(7).unwrap();
    assert_eq!(getter.join().unwrap().unwrap(), 7);
    d.insert(1, 1).unwrap();

    signal(server, libc::SIGSTOP);
    let stopped = d.len();
    signal(server, libc::SIGCONT);
    assert!(matches!(stopped, Err(ManagerError::CallTimeout(_))), "{stopped:?}");
    // Closed: the late answer is never read as another call's.
    assert!(matches!(d.len(), Err(ManagerError::ServerGone { .. })));
    assert!(matches!(remote.number_of_objects(), Err(ManagerError::ServerGone { .. })));
    // The server gave back what the connection held, and serves new connections.
    assert!(eventually(Duration::from_secs(30), || manager.number_of_objects().unwrap() == 0));
    assert_eq!(connect().unwrap().number_of_objects().unwrap(), 0);
}

// ---- remote access ------------------------------------------------------------------------

const KEY: &[u8] = b"the shared secret";

fn remote_manager() -> Manager {
    Manager::builder().address("127.0.0.1:0").authkey(KEY).start().unwrap()
}

#[test]
fn a_remote_client_uses_the_same_objects_and_a_wrong_key_is_refused() {
    let _w = common::heap_user(LIMIT);
    let manager = remote_manager();
    let addr = manager.address().unwrap();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    let jobs = manager.queue::<String>().unwrap();
    let seen = manager.dict::<String, i32>().unwrap();
    manager.publish("jobs", &jobs).unwrap();
    manager.publish("seen", &seen).unwrap();

    match Manager::connect(addr, b"a wrong key") {
        Err(ManagerError::AuthenticationFailed(why)) => assert!(why.contains("refused"), "{why}"),
        other => panic!("{other:?}"),
    }

    let remote = Manager::connect(addr, KEY).unwrap();
    assert_eq!(remote.address(), Some(addr));
    let rjobs: QueueProxy<String> = remote.lookup("jobs").unwrap();
    let rseen: DictProxy<String, i32> = remote.lookup("seen").unwrap();
    jobs.put("from the family".into()).unwrap();
    assert_eq!(rjobs.get().unwrap(), "from the family");
    rseen.insert("remote".into(), 1).unwrap();
    assert_eq!(seen.get("remote").unwrap(), Some(1));

    // Objects created remotely, nested, and a registered type the server knows.
    let l = remote.list::<DictProxy<String, i32>>().unwrap();
    l.push(rseen.clone()).unwrap();
    let back = l.get(0).unwrap().unwrap();
    assert!(back.same_object(&rseen));
    let lock = remote.lock().unwrap();
    let r2 = remote.rlock().unwrap();
    lock.try_acquire().unwrap().leave_locked();
    let lock2 = lock.clone();
    let other_thread = std::thread::spawn(move || {
        (matches!(lock2.try_acquire(), Err(ManagerError::WouldBlock)), lock2.release().is_ok())
    });
    assert_eq!(other_thread.join().unwrap(), (true, true), "any thread may release a Lock");
    r2.acquire().unwrap().leave_locked();
    let r3 = r2.clone();
    assert!(matches!(std::thread::spawn(move || r3.release()).join().unwrap(), Err(ManagerError::NotOwner)));
    r2.release().unwrap();
    assert!(matches!(remote.create(Counter::default()), Err(ManagerError::UnknownType(t)) if t == "Counter"));

    // Dropping remote proxies gives their references back.
    let before = manager.number_of_objects().unwrap();
    let temp = remote.dict::<u8, u8>().unwrap();
    assert_eq!(manager.number_of_objects().unwrap(), before + 1);
    drop(temp);
    assert!(eventually(Duration::from_secs(10), || manager.number_of_objects().unwrap() == before));

    // The server was not disturbed by the wrong key.
    assert_eq!(rjobs.len().unwrap(), 0);

    // A remote client that goes away gives back what it held, and nothing more: the
    // published objects stay.
    let before = manager.number_of_objects().unwrap();
    let second = Manager::connect(addr, KEY).unwrap();
    let q2: QueueProxy<String> = second.lookup("jobs").unwrap();
    let mine = second.list::<u8>().unwrap();
    let also_q2 = q2.clone();
    drop((q2, also_q2, mine));
    drop(second);
    assert!(eventually(Duration::from_secs(10), || manager.number_of_objects().unwrap() == before));
    jobs.put("still here".into()).unwrap();
    assert_eq!(rjobs.get().unwrap(), "still here");
    drop(manager);
    assert!(matches!(rjobs.get(), Err(ManagerError::ServerGone { .. })));
}

/// The HMAC answer of a client that knows the key, computed here by hand.
fn authenticate(stream: &mut TcpStream, key: &[u8]) {
    use hmac::{KeyInit, Mac};
    let mut hello = [0u8; 40];
    stream.read_exact(&mut hello).unwrap();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(b"client");
    mac.update(&hello[8..]);
    let mut answer = [0u8; 64];
    answer[..32].copy_from_slice(&mac.finalize().into_bytes());
    stream.write_all(&answer).unwrap();
    let mut welcome = [0u8; 40];
    stream.read_exact(&mut welcome).unwrap();
    assert_eq!(&welcome[..8], b"#WELCOME");
}

fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut rest = Vec::new();
    // Whatever the server says last, it ends with the end of the stream.
    stream.read_to_end(&mut rest).is_ok()
}

#[test]
fn malformed_frames_oversized_frames_and_garbage_are_refused_without_harm() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::builder().address("127.0.0.1:0").authkey(KEY).max_message_size(4096).start().unwrap();
    let addr = manager.address().unwrap();
    let d = manager.dict::<u8, u8>().unwrap();
    manager.publish("d", &d).unwrap();

    // Garbage instead of an answer to the challenge.
    let mut raw = TcpStream::connect(addr).unwrap();
    let mut hello = [0u8; 40];
    raw.read_exact(&mut hello).unwrap();
    raw.write_all(&[0xAB; 64]).unwrap();
    let mut verdict = [0u8; 8];
    raw.read_exact(&mut verdict).unwrap();
    assert_eq!(&verdict, b"#FAILURE");
    assert!(closed_by_server(&mut raw));

    // Authenticated, then a frame announcing 4 GiB: refused before any allocation.
    let mut raw = TcpStream::connect(addr).unwrap();
    authenticate(&mut raw, KEY);
    raw.write_all(&u32::MAX.to_le_bytes()).unwrap();
    assert!(closed_by_server(&mut raw));

    // Authenticated, then a frame that is no request: a typed refusal, then the end.
    let mut raw = TcpStream::connect(addr).unwrap();
    authenticate(&mut raw, KEY);
    let junk = [0xFFu8; 16];
    raw.write_all(&(junk.len() as u32).to_le_bytes()).unwrap();
    raw.write_all(&junk).unwrap();
    let mut len = [0u8; 4];
    raw.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    raw.read_exact(&mut body).unwrap();
    assert!(String::from_utf8_lossy(&body).contains("cannot decode"), "{body:?}");
    assert!(closed_by_server(&mut raw));

    // A client sending more than the limit gets an error, and the server goes on.
    let remote = Manager::connect(addr, KEY).unwrap();
    let rd: DictProxy<u8, Vec<u8>> = remote.dict().unwrap();
    assert!(rd.insert(1, vec![7; 100]).is_ok());
    let too_big = rd.insert(2, vec![7; 10_000]);
    assert!(
        matches!(too_big, Err(ManagerError::ServerGone { .. }) | Err(ManagerError::TooLarge { .. })),
        "{too_big:?}"
    );

    // Through all of it, the server served.
    d.insert(1, 2).unwrap();
    let again = Manager::connect(addr, KEY).unwrap();
    let rd: DictProxy<u8, u8> = again.lookup("d").unwrap();
    assert_eq!(rd.get(&1).unwrap(), Some(2));
}

fn connect_and_hold(addr: String) {
    let remote = Manager::connect(addr.as_str(), KEY).unwrap();
    let lock: LockProxy = remote.lookup("lock").unwrap();
    let held: EventProxy = remote.lookup("held").unwrap();
    lock.acquire().unwrap().leave_locked();
    held.set().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_remote_client_that_dies_releases_its_locks() {
    let _w = common::heap_user(LIMIT);
    let manager = remote_manager();
    let lock = manager.lock().unwrap();
    let held = manager.event().unwrap();
    manager.publish("lock", &lock).unwrap();
    manager.publish("held", &held).unwrap();
    let addr = manager.address().unwrap().to_string();
    let child = Process::new(connect_and_hold, addr).start().unwrap();
    held.wait().unwrap();
    assert!(matches!(lock.try_acquire(), Err(ManagerError::WouldBlock)));
    child.kill().unwrap();
    child.wait();
    assert!(lock.acquire_timeout(Duration::from_secs(60)).unwrap().owner_died());
}

/// Run by `an_unrelated_program_connects_over_tcp` in a process of its own (the test binary
/// started again, so not a member of this family).
#[test]
#[ignore = "a helper: runs only when started by another test"]
fn remote_client_helper() {
    let Ok(addr) = std::env::var("MULTIPROC_TEST_MANAGER") else { return };
    let remote = Manager::connect(addr.as_str(), KEY).unwrap();
    let d: DictProxy<String, String> = remote.lookup("greetings").unwrap();
    d.insert("helper".into(), format!("hello from pid {}", std::process::id())).unwrap();
}

#[test]
fn an_unrelated_program_connects_over_tcp() {
    let _w = common::heap_user(LIMIT);
    let manager = remote_manager();
    let d = manager.dict::<String, String>().unwrap();
    manager.publish("greetings", &d).unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "remote_client_helper", "--ignored", "--quiet"])
        .env("MULTIPROC_TEST_MANAGER", manager.address().unwrap().to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let greeting = d.get("helper").unwrap().unwrap();
    assert!(greeting.starts_with("hello from pid"), "{greeting}");
}

fn serve_forever(port: multiproc::Value<u16>) {
    let ready = |addr: std::net::SocketAddr| port.set(addr.port());
    let served = Manager::builder().address("127.0.0.1:0").authkey(KEY).register::<Counter>().serve(ready);
    panic!("serve returned: {served:?}");
}

#[test]
fn a_server_program_serves_its_registered_types_until_killed() {
    let _w = common::heap_user(LIMIT);
    let port = multiproc::Value::new(0u16).unwrap();
    let server = Process::new(serve_forever, port.clone()).start().unwrap();
    assert!(eventually(Duration::from_secs(30), || port.get() != 0));
    let remote = Manager::connect(("127.0.0.1", port.get()), KEY).unwrap();
    let c: CounterProxy = remote.create(Counter { n: 40, log: Vec::new() }).unwrap();
    assert_eq!(c.incr(2).unwrap(), 42);
    server.kill().unwrap();
    server.wait();
    assert!(matches!(c.get(), Err(ManagerError::ServerGone { .. })));
}

#[test]
fn a_proxy_read_as_another_kind_is_a_typed_error() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    manager.publish("lock", &manager.lock().unwrap()).unwrap();
    assert!(matches!(manager.lookup::<DictProxy<u8, u8>>("lock"), Err(ManagerError::Codec(_))));
    assert!(matches!(manager.barrier(0), Err(ManagerError::Protocol(_))));
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

// ---- hostile or careless clients ------------------------------------------------------------

#[test]
fn a_semaphore_released_past_u32_max_is_a_typed_error_and_the_server_goes_on() {
    let _w = common::heap_user(LIMIT);
    let manager = remote_manager();
    let s = manager.semaphore(u32::MAX).unwrap();
    match s.release() {
        Err(ManagerError::Overflow(what)) => assert!(what.contains("semaphore"), "{what}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.get_value().unwrap(), u32::MAX, "the value did not wrap");
    // An authenticated remote client, in two requests: the same, and the server serves.
    let remote = Manager::connect(manager.address().unwrap(), KEY).unwrap();
    let rs = remote.semaphore(u32::MAX).unwrap();
    assert!(matches!(rs.release(), Err(ManagerError::Overflow(_))));
    assert_eq!(rs.get_value().unwrap(), u32::MAX);
    s.try_acquire().unwrap().forget();
    assert_eq!(s.get_value().unwrap(), u32::MAX - 1);
    s.release().unwrap();
    assert_eq!(manager.number_of_objects().unwrap(), 2);
}

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

/// Opens a connection and reads the server's challenge (what any TCP peer can do).
fn unauthenticated(addr: std::net::SocketAddr) -> TcpStream {
    let mut raw = TcpStream::connect(addr).unwrap();
    let mut hello = [0u8; 40];
    raw.read_exact(&mut hello).unwrap();
    raw
}

#[test]
fn slow_handshakes_are_closed_by_one_deadline_however_steadily_they_trickle() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::builder()
        .address("127.0.0.1:0")
        .authkey(KEY)
        .handshake_timeout(Duration::from_millis(200))
        .start()
        .unwrap();
    let addr = manager.address().unwrap();
    // Twenty peers each send a byte of their 64-byte answer every 20 ms, never finishing:
    // each read is quick, the handshake as a whole is not.
    let trickle = |addr| {
        let mut raw = unauthenticated(addr);
        for _ in 0..60 {
            if raw.write_all(&[0]).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };
    let peers: Vec<_> = (0..20).map(|_| std::thread::spawn(move || trickle(addr))).collect();
    let closed = peers.into_iter().map(|p| p.join().unwrap()).filter(|c| *c).count();
    assert_eq!(closed, 20, "the server must close every peer still in the handshake after its deadline");
    // The server serves.
    let remote = Manager::connect(addr, KEY).unwrap();
    assert_eq!(remote.number_of_objects().unwrap(), 0);
}

#[test]
fn idle_peers_beyond_the_handshake_cap_are_closed_and_a_client_with_the_key_gets_in() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::builder()
        .address("127.0.0.1:0")
        .authkey(KEY)
        .handshake_timeout(Duration::from_secs(3600))
        .max_pending_handshakes(4)
        .start()
        .unwrap();
    let addr = manager.address().unwrap();
    // Twenty peers that say nothing after the challenge: all but the last four lose their
    // place to newer ones.
    let mut idle: Vec<TcpStream> = (0..20).map(|_| unauthenticated(addr)).collect();
    for raw in &mut idle[..16] {
        assert!(closed_by_server(raw));
    }
    // While the four places are taken, a client that knows the key gets in, and is served.
    let remote = Manager::connect(addr, KEY).unwrap();
    let d = remote.dict::<u8, u8>().unwrap();
    d.insert(1, 2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
    // Its handshake took the place of the oldest idle peer; the three newest still hold
    // theirs (their deadline is an hour away).
    assert!(closed_by_server(&mut idle[16]));
    for raw in &idle[17..] {
        raw.set_nonblocking(true).unwrap();
        let still_open = matches!(raw.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        assert!(still_open, "a peer within the cap and its deadline keeps its place");
    }
}

/// A server program whose descriptors run out: 30 more than it has open when it starts.
fn serve_with_few_descriptors(port: multiproc::Value<u16>) {
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let limit = libc::rlimit { rlim_cur: open + 30, rlim_max: open + 30 };
    // SAFETY: setrlimit reads the struct passed by reference; lowering our own descriptor
    // limit has no memory-safety preconditions.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let ready = |addr: std::net::SocketAddr| port.set(addr.port());
    let served = Manager::builder()
        .address("127.0.0.1:0")
        .authkey(KEY)
        .handshake_timeout(Duration::from_secs(3600))
        .max_pending_handshakes(1000)
        .serve(ready);
    panic!("serve returned: {served:?}");
}

#[test]
fn a_server_out_of_descriptors_makes_room_for_a_client_with_the_key() {
    let _w = common::heap_user(LIMIT);
    let port = multiproc::Value::new(0u16).unwrap();
    let server = Process::new(serve_with_few_descriptors, port.clone()).start().unwrap();
    assert!(eventually(Duration::from_secs(30), || port.get() != 0));
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port.get()).into();
    // Sixty peers that never answer the challenge: more than the server has descriptors
    // for (each handshake takes two), and within its cap and its deadline.
    let idle: Vec<TcpStream> = (0..60).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // Accept fails with EMFILE; the server closes its oldest handshakes to make room, so
    // the client that knows the key gets in.
    let remote = Manager::connect(addr, KEY).unwrap();
    let d = remote.dict::<u8, u8>().unwrap();
    d.insert(1, 2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
    drop(idle);
    server.kill().unwrap();
    server.wait();
}

#[test]
fn connecting_to_a_peer_that_never_speaks_times_out_with_a_typed_error() {
    let _w = common::heap_user(LIMIT);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    // Accepts, then says nothing.
    let holder = std::thread::spawn(move || silent.accept().map(|(s, _)| s));
    match Manager::connect_timeout(addr, KEY, Duration::from_millis(200)) {
        Err(ManagerError::HandshakeTimeout(what)) => assert!(what.contains("handshake"), "{what}"),
        other => panic!("{other:?}"),
    }
    drop(holder.join().unwrap());
}

#[test]
fn a_request_that_would_expand_beyond_its_budget_is_refused_and_the_connection_goes_on() {
    let _w = common::heap_user(LIMIT);
    // 8 MiB: some 65 000 empty items. 300 000 of them make a frame of 600 KB.
    let manager = Manager::builder().address("127.0.0.1:0").authkey(KEY).max_request_memory(8 << 20).start().unwrap();
    let remote = Manager::connect(manager.address().unwrap(), KEY).unwrap();
    for client in [&manager, &remote] {
        match client.list_from(std::iter::repeat_n((), 300_000)) {
            Err(ManagerError::TooLarge { len, max }) => assert!(len > max && max == 8 << 20, "{len} {max}"),
            other => panic!("{:?}", other.map(|l| l.len())),
        }
        // The same connection goes on; what fits the budget is served.
        let fits = client.list_from(std::iter::repeat_n((), 10_000)).unwrap();
        assert_eq!(fits.len().unwrap(), 10_000);
    }
}

/// The resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn frames_being_received_share_one_memory_budget_and_small_requests_go_on() {
    let _w = common::heap_user(LIMIT);
    const MIB: u64 = 1 << 20;
    let manager = Manager::builder()
        .address("127.0.0.1:0")
        .authkey(KEY)
        .max_message_size(4 * MIB)
        .max_frame_memory(4 * MIB)
        .start()
        .unwrap();
    let addr = manager.address().unwrap();
    let pid = manager.pid().unwrap();
    let before = rss(pid);
    // Eight authenticated peers each announce a frame of 4 MiB and send 3 MiB of it.
    let peers: Vec<(TcpStream, std::thread::JoinHandle<()>)> = (0..8)
        .map(|_| {
            let mut raw = TcpStream::connect(addr).unwrap();
            authenticate(&mut raw, KEY);
            let mut writer = raw.try_clone().unwrap();
            let sender = std::thread::spawn(move || {
                let _ = writer.write_all(&(4 * MIB as u32 - 1).to_le_bytes());
                let _ = writer.write_all(&vec![0xAB; 3 * MIB as usize]);
            });
            (raw, sender)
        })
        .collect();
    // Unbounded, the server would hold all 24 MiB; give it the chance to.
    let grew = eventually(Duration::from_secs(3), || rss(pid).saturating_sub(before) >= 20 * MIB);
    let growth = rss(pid).saturating_sub(before);
    eprintln!("server RSS grew by {} KiB with 8 frames of 3 MiB in flight", growth >> 10);
    assert!(!grew && growth < 12 * MIB, "the server holds {growth} bytes more");
    // Small requests are not held up by the budget.
    let remote = Manager::connect(addr, KEY).unwrap();
    let d = remote.dict::<u8, u8>().unwrap();
    d.insert(1, 2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
    for (raw, sender) in peers {
        raw.shutdown(std::net::Shutdown::Both).unwrap();
        sender.join().unwrap();
    }
    // Whatever they held is given back: a large frame goes through.
    let big: ListProxy<Vec<u8>> = remote.list().unwrap();
    big.push(vec![7u8; 2 * MIB as usize]).unwrap();
    assert_eq!(big.get(0).unwrap().unwrap().len(), 2 * MIB as usize);
}

/// The peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn a_frame_of_millions_of_empty_items_does_not_blow_the_server_up() {
    let _w = common::heap_user(LIMIT);
    const MIB: u64 = 1 << 20;
    let manager = Manager::builder().address("127.0.0.1:0").authkey(KEY).max_request_memory(16 * MIB).start().unwrap();
    let pid = manager.pid().unwrap();
    let before = peak_rss(pid);
    // By hand, as no client would build it: seq 1, thread 0, Create (0), List (1), then
    // 16.7 million items of no bytes and no references, two bytes each: a 32 MiB frame.
    let n: u64 = 16_700_000;
    let mut frame = vec![1u8, 0, 0, 1];
    let mut v = n;
    while v >= 0x80 {
        frame.push((v as u8) | 0x80);
        v >>= 7;
    }
    frame.push(v as u8);
    frame.resize(frame.len() + 2 * n as usize, 0);
    let mut raw = TcpStream::connect(manager.address().unwrap()).unwrap();
    authenticate(&mut raw, KEY);
    raw.write_all(&(frame.len() as u32).to_le_bytes()).unwrap();
    raw.write_all(&frame).unwrap();
    drop(frame);
    let mut len = [0u8; 4];
    raw.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    raw.read_exact(&mut body).unwrap();
    // Sequence number 1, an error (the fault: too large).
    assert_eq!(&body[..2], [1, 1], "an error answers request 1: {body:?}");
    let growth = peak_rss(pid).saturating_sub(before);
    eprintln!("server peak RSS grew by {} MiB for a 32 MiB frame of 16.7 million empty items", growth >> 20);
    // The frame is held twice (read, then on the request ring); its items are not.
    assert!(growth < 160 * MIB, "{growth}");
    // The connection goes on.
    let ping = [2u8, 0, 3];
    raw.write_all(&(ping.len() as u32).to_le_bytes()).unwrap();
    raw.write_all(&ping).unwrap();
    raw.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    raw.read_exact(&mut body).unwrap();
    assert_eq!(body[0], 2, "the answer to the ping");
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

#[test]
fn an_endless_handshake_timeout_is_no_panic() {
    let _w = common::heap_user(LIMIT);
    let manager =
        Manager::builder().address("127.0.0.1:0").authkey(KEY).handshake_timeout(Duration::MAX).start().unwrap();
    let remote = Manager::connect_timeout(manager.address().unwrap(), KEY, Duration::MAX).unwrap();
    assert_eq!(remote.number_of_objects().unwrap(), 0);
}
