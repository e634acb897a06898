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
    let d = manager.dict::<String, u32>().unwrap();
    d.insert("k".into(), 5).unwrap();
    let getter = Process::new(get_proxy_and_hang, q.clone()).start().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // The getter stopped (alive: no sweep closes it) while its get is parked: the put is
    // answered to it, onto its ring, and the queue stays empty. Then it dies unread: the
    // item can only come back by the take-back (review117 L2: made and filled between the
    // kill and the put, the dict let the sweep close the getter first in 1 run of 5, and
    // the test passed without taking anything back).
    stop(&getter);
    q.put(d).unwrap();
    assert_eq!(q.len().unwrap(), 0, "the item went to the parked getter");
    kill_stopped(getter);
    let back = q.get_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(back.get("k").unwrap(), Some(5));
    drop(back);
    // The dict's last reference went with `back` (once the family's tokens are released).
    let gone = common::eventually(Duration::from_secs(20), || manager.number_of_objects().unwrap() == 1);
    assert!(gone, "objects left: {} (the queue only expected)", manager.number_of_objects().unwrap());
}

/// Four getter threads of one process: thread `i` opens its connection `i`-th and parks
/// its get last but `i`-th, so the getters are parked in the reverse order of their
/// connections' numbers. Waits to be killed.
fn getters_and_hang(q: QueueProxy<u32>) {
    for i in 0..4u64 {
        let q = q.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100 * i));
            let _ = q.len();
            std::thread::sleep(Duration::from_millis(400 - 100 * i + 150 * (4 - i)));
            let _ = q.get();
            std::thread::sleep(Duration::from_secs(600));
        });
    }
    std::thread::sleep(Duration::from_secs(600));
}

/// Several getters dead in one sweep (one killed process's getter threads): the item taken
/// back from one is not handed to another not yet closed, and lost (review117 H1). Before
/// fix88 the sweep took back and closed one dead connection at a time, and the item went
/// to the next dead getter's answer, dropped at its close: `got Err(the operation timed
/// out)`.
#[test]
fn an_item_put_just_after_several_parked_getters_died_is_not_lost() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.queue::<u32>().unwrap();
    let getter = Process::new(getters_and_hang, q.clone()).start().unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    getter.kill().unwrap();
    let _ = getter.join();
    q.put(7).unwrap();
    let got = q.get_timeout(Duration::from_secs(5));
    println!("got {got:?}");
    assert_eq!(got.unwrap(), 7);
}

/// Stops `getter` (alive: no sweep closes it) once its get is parked on the server.
fn stop(getter: &multiproc::ProcessHandle<()>) {
    assert!(common::stop_asleep(getter.pid(), LIMIT), "the getter did not stop");
}

/// Kills the stopped `getter` and reaps it: it dies without reading its answer.
fn kill_stopped(getter: multiproc::ProcessHandle<()>) {
    getter.kill().unwrap();
    // SAFETY (test): a signal to our own child, not reaped yet, to let the kill land.
    unsafe { libc::kill(getter.pid() as libc::pid_t, libc::SIGCONT) };
    let _ = getter.join();
}

/// An item answered to a getter, then the queue shut down with `immediate` (its items
/// dropped, gets told `ShutDown`), then the getter dies unread: a shut-down queue takes
/// nothing back, and a get after the immediate shutdown is told `ShutDown` (review117 M1;
/// before fix88 the sweep put the item back, and the get returned `Ok(7)`).
#[test]
fn an_item_given_back_after_an_immediate_shutdown_is_not_got() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.queue::<u32>().unwrap();
    let getter = Process::new(get_and_hang, q.clone()).start().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    stop(&getter);
    q.put(7).unwrap();
    assert_eq!(q.len().unwrap(), 0, "the item went to the parked getter");
    q.shutdown(true).unwrap();
    kill_stopped(getter);
    // Past the sweep that finds the getter dead.
    std::thread::sleep(Duration::from_millis(500));
    let got = q.get_timeout(Duration::from_secs(2));
    println!("a get after the immediate shutdown: {got:?}");
    assert!(matches!(got, Err(ManagerError::ShutDown)), "a get after the immediate shutdown: {got:?}");
}

/// A task answered to a getter, the joinable queue shut down (plain: its consumers, told
/// `ShutDown` on the empty queue, stop), then the getter dies unread: the task stays its
/// dead taker's, and `join` says `TasksLost` (review117 M1). Before fix88 the sweep put it
/// back in the shut-down queue, counted to nobody, where no consumer would take it: `join`
/// waited for ever (`join_timeout` said `Timeout`).
#[test]
fn a_task_answered_to_a_getter_dead_after_a_shutdown_is_told_lost() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.joinable_queue::<u32>().unwrap();
    let getter = Process::new(get_task_and_hang, q.clone()).start().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    stop(&getter);
    q.put(7).unwrap();
    assert_eq!(q.len().unwrap(), 0, "the task went to the parked getter");
    q.shutdown(false).unwrap();
    kill_stopped(getter);
    let said = q.join_timeout(Duration::from_secs(30));
    println!("join said {said:?}");
    assert!(matches!(said, Err(ManagerError::TasksLost { lost: 1 })), "join: {said:?}");
}

/// A task answered to a getter, a second task queued, then the joinable queue shut down
/// plain (its consumers still drain the second task), then the getter dies unread: the
/// queue is shut down but not empty, no get was told `ShutDown`, so the task is taken back
/// and a consumer does it; `join` returns (review123 L2). Before fix92 a shut-down queue
/// refused every take-back: the task was lost, the queue stayed at one item, and `join`
/// said `TasksLost`.
#[test]
fn a_task_answered_to_a_getter_dead_after_a_shutdown_with_items_left_is_queued_again() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.joinable_queue::<u32>().unwrap();
    let getter = Process::new(get_task_and_hang, q.clone()).start().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    stop(&getter);
    q.put(7).unwrap();
    assert_eq!(q.len().unwrap(), 0, "the task went to the parked getter");
    q.put(8).unwrap();
    q.shutdown(false).unwrap();
    kill_stopped(getter);
    // The sweep that finds the getter dead gives task 7 back: the queue holds two again.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut len = q.len().unwrap();
    while len != 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        len = q.len().unwrap();
    }
    println!("the shut-down queue holds {len} after the getter's death");
    assert_eq!(len, 2, "task 7 was not given back to the shut-down queue that still held 8");
    assert_eq!(q.get().unwrap(), 7);
    assert_eq!(q.get().unwrap(), 8);
    q.task_done().unwrap();
    q.task_done().unwrap();
    let said = q.join_timeout(Duration::from_secs(30));
    println!("join said {said:?}");
    said.unwrap();
}
