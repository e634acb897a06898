//! What a family client killed in the middle of its work leaves on a manager: the tasks of
//! a managed `JoinableQueue` it took and never marked done are told lost to `join`, as the
//! family's `JoinableQueue` tells them (aud82); an item a dead getter was parked for is
//! not handed to it (ignored: the server learns of the death at its next sweep).

mod common;

use std::time::Duration;

use multiproc::{JoinableQueueProxy, Manager, ManagerError, Process, QueueProxy};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(120);

/// Takes one task and never marks it done; waits to be killed.
fn take_and_hang((q, taken): (JoinableQueueProxy<u32>, QueueProxy<u32>)) {
    let task = q.get().unwrap();
    taken.put(task).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// A consumer killed holding a task it took: `join` says `TasksLost`, as the family's
/// `JoinableQueue::join` does (Python's waits for ever), and a task marked done by another
/// process is taken as the dead one's (of the dead first). Before, `join` waited for ever:
/// `join_timeout` said `Timeout`.
#[test]
fn a_task_taken_by_a_killed_consumer_is_told_lost_to_join() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.joinable_queue::<u32>().unwrap();
    let taken = manager.queue::<u32>().unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let consumer = Process::new(take_and_hang, (q.clone(), taken.clone())).start().unwrap();
    assert_eq!(taken.get().unwrap(), 1);
    consumer.kill().unwrap();
    let _ = consumer.join();
    // Item 2 is still queued: somebody may yet do it.
    let got = q.join_timeout(Duration::from_secs(2));
    assert!(matches!(got, Err(ManagerError::Timeout)), "a queued task is not lost: {got:?}");
    assert_eq!(q.get().unwrap(), 2);
    q.task_done().unwrap();
    // Only the dead consumer's task is left: lost, told at once (and to a join with no
    // timeout, which would wait for ever).
    let got = q.join_timeout(Duration::from_secs(30));
    assert!(matches!(got, Err(ManagerError::TasksLost { lost: 1 })), "{got:?}");
    assert!(matches!(q.join(), Err(ManagerError::TasksLost { lost: 1 })));
    // A task marked done past one's own finishes the dead one's.
    q.task_done().unwrap();
    q.join().unwrap();
}

fn join_parked((q, done): (JoinableQueueProxy<u32>, QueueProxy<bool>)) {
    done.put(matches!(q.join(), Err(ManagerError::TasksLost { lost: 1 }))).unwrap();
}

/// A `join` already waiting when the consumer dies is answered `TasksLost` (by the sweep
/// that finds it dead).
#[test]
fn a_waiting_join_is_told_when_the_consumer_holding_the_last_task_dies() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.joinable_queue::<u32>().unwrap();
    let taken = manager.queue::<u32>().unwrap();
    let done = manager.queue::<bool>().unwrap();
    q.put(7).unwrap();
    let consumer = Process::new(take_and_hang, (q.clone(), taken.clone())).start().unwrap();
    assert_eq!(taken.get().unwrap(), 7);
    let joiner = Process::new(join_parked, (q.clone(), done.clone())).start().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    consumer.kill().unwrap();
    let _ = consumer.join();
    assert!(done.get().unwrap(), "the waiting join was told TasksLost {{ lost: 1 }}");
    joiner.join().unwrap();
}

fn get_and_hang(q: QueueProxy<u32>) {
    let _ = q.get();
    std::thread::sleep(Duration::from_secs(600));
}

/// An item put right after a parked getter's process died goes to that dead getter, and
/// is lost (Python loses it too): the server learns of the death only at its next sweep
/// (every 100 ms). Left (aud82, L): handing an item to a parked family getter would have to
/// check its process first (a `/proc` read per hand-over), and a getter killed after the
/// hand-over, before it read its answer, loses the item anyway.
#[test]
#[ignore = "aud82 L: an item put within a sweep of a parked getter's death is lost to it"]
fn an_item_put_just_after_a_parked_getter_died_is_not_lost() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.queue::<u32>().unwrap();
    let getter = Process::new(get_and_hang, q.clone()).start().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    getter.kill().unwrap();
    let _ = getter.join();
    q.put(7).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), 7);
}
