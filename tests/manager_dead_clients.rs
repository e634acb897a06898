//! What a family client killed in the middle of its work leaves on a manager: the tasks of
//! a managed `JoinableQueue` it took and never marked done are told lost to `join`, as the
//! family's `JoinableQueue` tells them (aud82), and a task handed over (taken by one
//! process, marked done by another) leaves the other holders' tasks theirs (review112 M1);
//! an item handed to a getter that died before reading it goes back to its queue (aud82
//! L1).

mod common;

use std::time::Duration;

use multiproc::{DictProxy, JoinableQueueProxy, Manager, ManagerError, Process, QueueProxy};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(120);

/// Takes one task and never marks it done; waits to be killed.
fn take_and_hang((q, taken): (JoinableQueueProxy<u32>, QueueProxy<u32>)) {
    let task = q.get().unwrap();
    taken.put(task).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// A consumer killed holding a task it took: `join` says `TasksLost`, as the family's
/// `JoinableQueue::join` does (Python's waits for ever); a task marked done by a live
/// process that took none (its count below zero) offsets the dead one's, as in the family's
/// task table. Before aud82, `join` waited for ever: `join_timeout` said `Timeout`.
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
    // A task marked done past one's own offsets the dead one's.
    q.task_done().unwrap();
    q.join().unwrap();
}

/// Joins in a thread of its own, says `parked` once that join is parked on the server,
/// then `told lost` if the join said `TasksLost { lost: 1 }` (or else what it said).
fn join_parked((q, said): (JoinableQueueProxy<u32>, QueueProxy<String>)) {
    let (tids, asleep) = std::sync::mpsc::channel();
    let joining = {
        let q = q.clone();
        std::thread::spawn(move || {
            // A first call that returns: the thread's connection exists, so its next sleep
            // is the wait for the join's answer, the join sent.
            q.len().unwrap();
            tids.send(common::tid()).unwrap();
            q.join()
        })
    };
    let tid = asleep.recv().unwrap();
    assert!(common::eventually(LIMIT, || common::thread_in_futex_wait(tid)), "the join is sent");
    // The server takes the family's requests from one ring, in order: this put, sent after
    // the join, is answered after the join was handled (parked).
    said.put("parked".into()).unwrap();
    let got = joining.join().unwrap();
    let told = matches!(got, Err(ManagerError::TasksLost { lost: 1 }));
    said.put(if told { "told lost".into() } else { format!("{got:?}") }).unwrap();
}

/// A `join` already waiting when the consumer dies is answered `TasksLost` (by the sweep
/// that finds it dead). The consumer is killed once the join is parked (review112 L4: a
/// 300 ms sleep stood in, and a join that came after the sweep was answered at once).
#[test]
fn a_waiting_join_is_told_when_the_consumer_holding_the_last_task_dies() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.joinable_queue::<u32>().unwrap();
    let taken = manager.queue::<u32>().unwrap();
    let said = manager.queue::<String>().unwrap();
    q.put(7).unwrap();
    let consumer = Process::new(take_and_hang, (q.clone(), taken.clone())).start().unwrap();
    assert_eq!(taken.get().unwrap(), 7);
    let joiner = Process::new(join_parked, (q.clone(), said.clone())).start().unwrap();
    assert_eq!(said.get().unwrap(), "parked");
    consumer.kill().unwrap();
    let _ = consumer.join();
    assert_eq!(said.get().unwrap(), "told lost", "the waiting join was told TasksLost {{ lost: 1 }}");
    joiner.join().unwrap();
}

/// Takes one task, says so, and marks it done when told to.
fn take_and_finish_when_told((q, taken, go): (JoinableQueueProxy<u32>, QueueProxy<u32>, QueueProxy<()>)) {
    let task = q.get().unwrap();
    taken.put(task).unwrap();
    go.get().unwrap();
    q.task_done().unwrap();
}

/// Takes one task, says so, and exits (normally) without marking it done: another process
/// does.
fn take_and_hand_over((q, taken): (JoinableQueueProxy<u32>, QueueProxy<u32>)) {
    let task = q.get().unwrap();
    taken.put(task).unwrap();
}

/// review112 M1: a task handed over (one process takes it, another marks it done) is not
/// charged to another holder. Before, the `task_done` of a process that took none was
/// charged to the live holder of the smallest pid (here the consumer started first), so
/// once the taker exited its task was counted lost and `join` said `TasksLost` while the
/// consumer still worked on its own.
#[test]
fn a_task_handed_over_leaves_a_live_consumers_task_its_own() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.joinable_queue::<u32>().unwrap();
    let taken = manager.queue::<u32>().unwrap();
    let go = manager.queue::<()>().unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let consumer = Process::new(take_and_finish_when_told, (q.clone(), taken.clone(), go.clone())).start().unwrap();
    assert_eq!(taken.get().unwrap(), 1);
    let taker = Process::new(take_and_hand_over, (q.clone(), taken.clone())).start().unwrap();
    assert_eq!(taken.get().unwrap(), 2);
    taker.join().unwrap();
    // This process (it took none) finishes the taker's task.
    q.task_done().unwrap();
    // The consumer works on: the join waits (past the sweep that finds the taker gone).
    let got = q.join_timeout(Duration::from_secs(2));
    println!("join said {got:?}");
    assert!(matches!(got, Err(ManagerError::Timeout)), "the live consumer's task is not lost: {got:?}");
    go.put(()).unwrap();
    consumer.join().unwrap();
    q.join().unwrap();
}

fn get_and_hang(q: QueueProxy<u32>) {
    let _ = q.get();
    std::thread::sleep(Duration::from_secs(600));
}

/// An item put right after a parked getter's process died, which the server handed to
/// that dead getter (it learns of deaths at its sweeps, every 100 ms), is not lost: the
/// sweep that finds the getter dead takes the answer back from its reply ring, unread, and
/// the item goes back to the front of its queue (aud82 L1; Python loses it). Before, the
/// `get_timeout` here timed out.
#[test]
fn an_item_put_just_after_a_parked_getter_died_is_not_lost() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.queue::<u32>().unwrap();
    let getter = Process::new(get_and_hang, q.clone()).start().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    getter.kill().unwrap();
    let _ = getter.join();
    q.put(7).unwrap();
    q.put(8).unwrap();
    // 7 comes back at the sweep, to the queue's front: 8 may have been got before it.
    let mut got = [q.get_timeout(Duration::from_secs(10)).unwrap(), q.get_timeout(Duration::from_secs(10)).unwrap()];
    got.sort();
    assert_eq!(got, [7, 8]);
}

fn get_task_and_hang(q: JoinableQueueProxy<u32>) {
    let _ = q.get();
    std::thread::sleep(Duration::from_secs(600));
}

/// The same for a joinable queue: the task the dead getter never saw is not counted its
/// (nor lost): it is queued again, and `join` waits for it, then returns once it is done.
#[test]
fn a_task_handed_to_a_dead_getter_is_queued_again_not_lost() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.joinable_queue::<u32>().unwrap();
    let getter = Process::new(get_task_and_hang, q.clone()).start().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    getter.kill().unwrap();
    let _ = getter.join();
    q.put(7).unwrap();
    // Past the sweep that finds the getter dead, the task is queued, not lost.
    let said = q.join_timeout(Duration::from_secs(2));
    println!("join said {said:?}");
    assert!(matches!(said, Err(ManagerError::Timeout)), "join: {said:?}");
    assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), 7);
    q.task_done().unwrap();
    q.join().unwrap();
}

fn get_proxy_and_hang(q: QueueProxy<DictProxy<String, u32>>) {
    let _ = q.get();
    std::thread::sleep(Duration::from_secs(600));
}

/// An item holding a proxy comes back whole: the references the dead getter's answer held
/// (its tokens) go back to the queue's item, none given back twice or kept.
#[test]
fn an_item_holding_a_proxy_handed_to_a_dead_getter_comes_back_whole() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.queue::<DictProxy<String, u32>>().unwrap();
    let getter = Process::new(get_proxy_and_hang, q.clone()).start().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    getter.kill().unwrap();
    let _ = getter.join();
    let d = manager.dict::<String, u32>().unwrap();
    d.insert("k".into(), 5).unwrap();
    q.put(d).unwrap();
    let back = q.get_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(back.get("k").unwrap(), Some(5));
    drop(back);
    // The dict's last reference went with `back` (once the family's tokens are released).
    let gone = common::eventually(Duration::from_secs(20), || manager.number_of_objects().unwrap() == 1);
    assert!(gone, "objects left: {} (the queue only expected)", manager.number_of_objects().unwrap());
}
