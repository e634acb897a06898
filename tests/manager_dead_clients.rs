//! What a family client killed in the middle of its work leaves on a manager: the tasks of
//! a managed `JoinableQueue` it took and never marked done are told lost to `join`, as the
//! family's `JoinableQueue` tells them (aud82), and a task handed over (taken by one
//! process, marked done by another) leaves the other holders' tasks theirs (review112 M1);
//! an item handed to a getter that died before reading it goes back to its queue (aud82
//! L1).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use multiproc::{DictProxy, JoinableQueueProxy, LockProxy, Manager, ManagerError, Process, ProcessHandle, QueueProxy};
use serde::Serialize;
use serde::de::DeserializeOwned;

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(120);

// ---- the file's set-ups -------------------------------------------------------------------
//
// Every test here waits on states, never on a sleep (review123 L3: a test that passes by
// timing is one that can fail by timing):
//
// * a child's gets are parked on the server once it says `parked` (`Getter::start`): it says
//   so after they were sent, and the server takes the family's requests from one ring, in
//   order, so they were handled (parked) before the word was;
// * a getter stopped with `SIGSTOP` (`Getter::stop`) is alive, so no sweep closes it: an item
//   put then is answered to it, onto its ring (`q.len() == 0` shows it), and stays unread
//   once it is killed (`Getter::kill`);
// * the server has seen a child dead once `Mark::wait_swept` gets the manager `Lock` the
//   child took at its start and never released: the sweep that finds the child dead lets
//   go of it when it closes the child's connections, after taking back their unread
//   answers, and answers the waiting acquire only after putting those items back.

/// A manager `Lock` a child takes at its start and leaves locked (`hold`), through which the
/// test learns that the server found the child dead.
struct Mark(LockProxy);

impl Mark {
    fn new(manager: &Manager) -> Mark {
        Mark(manager.lock().unwrap())
    }

    /// Waits until the server's sweep found the child that holds the mark dead, and did
    /// all that sweep does.
    fn wait_swept(&self) {
        let got = self.0.acquire_timeout(LIMIT).map(|held| held.owner_died());
        assert!(matches!(got, Ok(true)), "the server never found the child dead: {got:?}");
    }
}

/// A child's first step: takes its mark, held by its process until the server finds it dead.
fn hold(mark: &LockProxy) {
    mark.acquire().unwrap().leave_locked();
}

/// The queues a getter child parks gets on.
trait Parkable: Clone + Serialize + DeserializeOwned + Send + 'static {
    /// A call that returns: the thread's connection exists after it.
    fn connect(&self);
    /// A get that waits (the item it may be answered is never read).
    fn park(&self);
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Parkable for QueueProxy<T> {
    fn connect(&self) {
        self.len().unwrap();
    }
    fn park(&self) {
        let _ = self.get();
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Parkable for JoinableQueueProxy<T> {
    fn connect(&self) {
        self.len().unwrap();
    }
    fn park(&self) {
        let _ = self.get();
    }
}

/// A getter child: `threads` threads each park a get of `q`. Thread `i` opens its
/// connection `i`-th, and the gets are sent last thread first, each once the one before is
/// sent, so they are parked in the reverse order of their connections' numbers. A thread's
/// get is sent once the thread sleeps in a futex wait: before its turn it sleeps in
/// `nanosleep`, and its connection exists, so its usual futex wait is the wait for the
/// get's answer. Not its only possible one (review127 L2): the send itself may wait on a
/// contended lock (the requests ring's producers', the heap's); the other producers of the
/// family are asleep then, so that is rare, and a miss shows as a spurious failure (the
/// item stayed queued), never as a false pass. Then the child says `parked`, and each of
/// its threads waits to be killed in a futex wait.
fn park_gets_and_hang<Q: Parkable>((q, threads, said, mark): (Q, usize, QueueProxy<String>, LockProxy)) {
    hold(&mark);
    let turn = Arc::new(AtomicUsize::new(usize::MAX));
    let (tids, connected) = std::sync::mpsc::channel();
    let mut getters = Vec::new();
    for i in 0..threads {
        let (q, turn, tids) = (q.clone(), turn.clone(), tids.clone());
        std::thread::spawn(move || {
            q.connect();
            tids.send(common::tid()).unwrap();
            while turn.load(Ordering::SeqCst) != i {
                std::thread::sleep(Duration::from_millis(1));
            }
            q.park();
        });
        getters.push(connected.recv().unwrap());
    }
    for i in (0..threads).rev() {
        turn.store(i, Ordering::SeqCst);
        assert!(common::eventually(LIMIT, || common::thread_in_futex_wait(getters[i])), "get {i} is sent");
    }
    said.put("parked".into()).unwrap();
    loop {
        std::thread::park();
    }
}

/// A getter child whose gets are parked on the server.
struct Getter {
    child: ProcessHandle<()>,
    mark: Mark,
}

impl Getter {
    /// Starts a child of `threads` getters of `q` (`park_gets_and_hang`), once they are all
    /// parked.
    fn start<Q: Parkable>(manager: &Manager, q: &Q, threads: usize) -> Getter {
        let said = manager.queue::<String>().unwrap();
        let mark = Mark::new(manager);
        let child =
            Process::new(park_gets_and_hang::<Q>, (q.clone(), threads, said.clone(), mark.0.clone())).start().unwrap();
        // The child says `parked`, or ends first (its check that a get is sent failed, it
        // could not connect): then this test fails, saying so, rather than the watchdog
        // ending the whole binary (review127 L3).
        let word = loop {
            match said.get_timeout(Duration::from_millis(100)) {
                Err(ManagerError::Timeout) if child.is_alive() => continue,
                word => break word,
            }
        };
        let parked = word.as_deref().is_ok_and(|word| word == "parked");
        assert!(parked, "the getter child never parked its gets: {word:?}, exit code {:?}", child.exitcode());
        Getter { child, mark }
    }

    /// Stops the getter (alive: no sweep closes it) at a moment each of its threads sleeps
    /// in a futex wait, holding none of the library's locks.
    fn stop(&self) {
        assert!(common::stop_all_asleep(self.child.pid(), LIMIT), "the getter did not stop");
    }

    /// Kills the (stopped) getter, reaps it, and waits until the server found it dead: it
    /// died without reading its answers.
    fn kill(self) {
        self.child.kill().unwrap();
        // SAFETY (test): a signal to our own child, not reaped yet, to let the kill land.
        unsafe { libc::kill(self.child.pid() as libc::pid_t, libc::SIGCONT) };
        let _ = self.child.join();
        self.mark.wait_swept();
    }
}

/// The set-up's own check: a getter of several threads, let go on and stopped again, is
/// stopped asleep within a few stops. Its threads, continued inside their futex waits, run
/// them on as `restart_syscall` until their slices end; before fix97 the helper took that
/// for awake, and each of its stops turned the other threads' waits into restarts again:
/// it took hundreds of stops, seconds to more than 100 s (see `common::stop_when_asleep`).
#[test]
fn a_getter_let_go_on_and_stopped_again_is_stopped_asleep_within_a_few_stops() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.queue::<u32>().unwrap();
    let getter = Getter::start(&manager, &q, 4);
    getter.stop();
    let pid = getter.child.pid();
    let mut took = Vec::new();
    for _ in 0..5 {
        // SAFETY (test): a signal to our own child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
        took.push(common::stop_when_asleep(pid, LIMIT, true));
    }
    println!("stops it took, five times: {took:?}");
    assert!(took.iter().all(|stops| stops.is_some_and(|n| n <= 10)), "{took:?}");
    getter.kill();
}

// ---- a get that could not decode its item --------------------------------------------------

/// Takes its mark, then gets from `q` (a `u32` view of a queue of strings) with the crash
/// point `stop:{point}` armed: its get fails `Codec`, and it stops before its give-back
/// (`manager.queue.give_back`) or after (`manager.queue.given_back`), to be killed.
fn get_the_wrong_type_and_stop((q, mark, point): (JoinableQueueProxy<u32>, LockProxy, String)) {
    hold(&mark);
    multiproc::__private::crash_at(&format!("stop:{point}"));
    let got = q.try_get();
    panic!("never stopped at {point}: the get said {got:?}");
}

/// mgr106: a client killed with `SIGKILL` between a `get` it could not decode and its
/// give-back loses the item, as before mgr106 (it read the answer: the server counted the
/// item taken, and its task is told lost with the process); killed once the give-back was
/// answered, it gave the item back once (the server cleared the take it matched, and the
/// close found nothing unread on its ring). Never twice: the queue holds the item once.
#[test]
fn a_client_killed_around_the_give_back_of_an_item_it_could_not_decode_never_gives_it_twice() {
    let _w = common::heap_user(LIMIT);
    let manager = Manager::start().unwrap();
    let mut said = Vec::new();
    for point in ["manager.queue.give_back", "manager.queue.given_back"] {
        let words = manager.joinable_queue::<String>().unwrap();
        manager.publish(point, &words).unwrap();
        let numbers: JoinableQueueProxy<u32> = manager.lookup(point).unwrap();
        words.put("first".into()).unwrap();
        words.put("second".into()).unwrap();
        let mark = Mark::new(&manager);
        let child =
            Process::new(get_the_wrong_type_and_stop, (numbers, mark.0.clone(), point.to_string())).start().unwrap();
        let _stopped = common::StoppedChild::wait_for(child.pid(), LIMIT);
        child.kill().unwrap();
        // SAFETY (test): a signal to our own child, not reaped yet, to let the kill land.
        unsafe { libc::kill(child.pid() as libc::pid_t, libc::SIGCONT) };
        let _ = child.join();
        mark.wait_swept();
        let mut got = Vec::new();
        while let Ok(word) = words.try_get() {
            got.push(word);
        }
        let joined = |wait| match words.join_timeout(wait) {
            Ok(()) => "Ok".to_string(),
            Err(ManagerError::TasksLost { lost }) => format!("TasksLost {lost}"),
            Err(ManagerError::Timeout) => "Timeout".to_string(),
            Err(e) => format!("{e:?}"),
        };
        // This live process marks all its tasks done but one, which it holds: not told lost
        // (were the item given back still counted to its dead taker, it would be).
        for _ in 1..got.len() {
            words.task_done().unwrap();
        }
        let holding = joined(Duration::ZERO);
        words.task_done().unwrap();
        said.push(format!("{point}: {got:?}, join {holding}, then {}", joined(LIMIT / 4)));
    }
    println!("{said:#?}");
    assert_eq!(
        said,
        [
            "manager.queue.give_back: [\"second\"], join Timeout, then TasksLost 1",
            "manager.queue.given_back: [\"first\", \"second\"], join Timeout, then Ok",
        ]
    );
}

// ---- tasks of killed consumers ------------------------------------------------------------

/// Takes one task and never marks it done; waits to be killed.
fn take_and_hang((q, taken, mark): (JoinableQueueProxy<u32>, QueueProxy<u32>, LockProxy)) {
    hold(&mark);
    let task = q.get().unwrap();
    taken.put(task).unwrap();
    loop {
        std::thread::park();
    }
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
    let mark = Mark::new(&manager);
    q.put(1).unwrap();
    q.put(2).unwrap();
    let consumer = Process::new(take_and_hang, (q.clone(), taken.clone(), mark.0.clone())).start().unwrap();
    assert_eq!(taken.get().unwrap(), 1);
    consumer.kill().unwrap();
    let _ = consumer.join();
    mark.wait_swept();
    // Item 2 is still queued: somebody may yet do it. The server has counted the dead
    // consumer's task lost: a join told of lost tasks is told at once.
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
    let mark = Mark::new(&manager);
    q.put(7).unwrap();
    let consumer = Process::new(take_and_hang, (q.clone(), taken.clone(), mark.0.clone())).start().unwrap();
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
fn take_and_hand_over((q, taken, mark): (JoinableQueueProxy<u32>, QueueProxy<u32>, LockProxy)) {
    hold(&mark);
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
    let mark = Mark::new(&manager);
    q.put(1).unwrap();
    q.put(2).unwrap();
    let consumer = Process::new(take_and_finish_when_told, (q.clone(), taken.clone(), go.clone())).start().unwrap();
    assert_eq!(taken.get().unwrap(), 1);
    let taker = Process::new(take_and_hand_over, (q.clone(), taken.clone(), mark.0.clone())).start().unwrap();
    assert_eq!(taken.get().unwrap(), 2);
    taker.join().unwrap();
    // This process (it took none) finishes the taker's task.
    q.task_done().unwrap();
    // Past the sweep that found the taker gone (and counted what it held), the consumer
    // works on: the join waits.
    mark.wait_swept();
    let got = q.join_timeout(Duration::from_secs(2));
    println!("join said {got:?}");
    assert!(matches!(got, Err(ManagerError::Timeout)), "the live consumer's task is not lost: {got:?}");
    go.put(()).unwrap();
    consumer.join().unwrap();
    q.join().unwrap();
}

// ---- items answered to getters that die unread ---------------------------------------------

/// An item answered to a parked getter whose process then dies without reading it (the
/// server learns of deaths at its sweeps, every 100 ms) is not lost: the sweep that finds the
/// getter dead takes the answer back from its reply ring, unread, and the item goes back to
/// the front of its queue (aud82 L1; Python loses it). Before, the `get_timeout` here timed
/// out (aud82's form of the test killed the getter and put at once, and failed 3 runs of
/// 4).
#[test]
fn an_item_answered_to_a_parked_getter_that_dies_unread_is_not_lost() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.queue::<u32>().unwrap();
    let getter = Getter::start(&manager, &q, 1);
    getter.stop();
    q.put(7).unwrap();
    assert_eq!(q.len().unwrap(), 0, "the item went to the parked getter");
    q.put(8).unwrap();
    getter.kill();
    // 7 came back at the sweep, to the queue's front.
    let got = [q.get_timeout(Duration::from_secs(10)), q.get_timeout(Duration::from_secs(10))];
    println!("got {got:?}");
    assert!(matches!(got, [Ok(7), Ok(8)]), "{got:?}");
}

/// The same for a joinable queue: the task the dead getter never saw is not counted its
/// (nor lost): it is queued again, and `join` waits for it, then returns once it is done.
#[test]
fn a_task_handed_to_a_dead_getter_is_queued_again_not_lost() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.joinable_queue::<u32>().unwrap();
    let getter = Getter::start(&manager, &q, 1);
    getter.stop();
    q.put(7).unwrap();
    assert_eq!(q.len().unwrap(), 0, "the task went to the parked getter");
    getter.kill();
    // Past the sweep that found the getter dead, the task is queued, not lost.
    assert_eq!(q.len().unwrap(), 1, "the task is queued again");
    let said = q.join_timeout(Duration::from_secs(2));
    println!("join said {said:?}");
    assert!(matches!(said, Err(ManagerError::Timeout)), "join: {said:?}");
    assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), 7);
    q.task_done().unwrap();
    q.join().unwrap();
}

/// An item holding a proxy comes back whole: the references the dead getter's answer held
/// (its tokens) go back to the queue's item, none given back twice or kept (review117 L2:
/// made and filled between the kill and the put, the dict let the sweep close the getter
/// first in 1 run of 5, and the test passed without taking anything back).
#[test]
fn an_item_holding_a_proxy_handed_to_a_dead_getter_comes_back_whole() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.queue::<DictProxy<String, u32>>().unwrap();
    let d = manager.dict::<String, u32>().unwrap();
    d.insert("k".into(), 5).unwrap();
    let getter = Getter::start(&manager, &q, 1);
    getter.stop();
    q.put(d).unwrap();
    assert_eq!(q.len().unwrap(), 0, "the item went to the parked getter");
    getter.kill();
    let back = q.get_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(back.get("k").unwrap(), Some(5));
    drop(back);
    // The dict's last reference went with `back` (once the family's tokens are released;
    // the getter's mark and word queue went with it).
    let gone = common::eventually(Duration::from_secs(20), || manager.number_of_objects().unwrap() == 1);
    assert!(gone, "objects left: {} (the queue only expected)", manager.number_of_objects().unwrap());
}

/// Several getters dead in one sweep (four threads of one killed process, parked in the
/// reverse order of their connections' numbers): the item taken back from one is not handed
/// to another not yet closed, and lost (review117 H1). Before fix88 the sweep took back and
/// closed one dead connection at a time, and the item went to the next dead getter's
/// answer, dropped at its close: `got Err(the operation timed out)`.
#[test]
fn an_item_answered_to_one_of_several_parked_getters_that_die_unread_is_not_lost() {
    let _w = common::watchdog(LIMIT);
    let manager = Manager::start().unwrap();
    let q = manager.queue::<u32>().unwrap();
    let getter = Getter::start(&manager, &q, 4);
    getter.stop();
    q.put(7).unwrap();
    assert_eq!(q.len().unwrap(), 0, "the item went to a parked getter");
    getter.kill();
    let got = q.get_timeout(Duration::from_secs(5));
    println!("got {got:?}");
    assert_eq!(got.unwrap(), 7);
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
    let getter = Getter::start(&manager, &q, 1);
    getter.stop();
    q.put(7).unwrap();
    assert_eq!(q.len().unwrap(), 0, "the item went to the parked getter");
    q.shutdown(true).unwrap();
    getter.kill();
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
    let getter = Getter::start(&manager, &q, 1);
    getter.stop();
    q.put(7).unwrap();
    assert_eq!(q.len().unwrap(), 0, "the task went to the parked getter");
    q.shutdown(false).unwrap();
    getter.kill();
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
    let getter = Getter::start(&manager, &q, 1);
    getter.stop();
    q.put(7).unwrap();
    assert_eq!(q.len().unwrap(), 0, "the task went to the parked getter");
    q.put(8).unwrap();
    q.shutdown(false).unwrap();
    getter.kill();
    // The sweep that found the getter dead gave task 7 back: the queue holds two again.
    let len = q.len().unwrap();
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
