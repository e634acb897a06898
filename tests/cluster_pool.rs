//! `Pool::builder().cluster(url)`: the same `Pool`, its workers on other machines.
//!
//! Each test starts its own Redis (`redis-server` on a unix socket in a temporary
//! directory, no persistence), killed at the end. Without `redis-server` the tests say so
//! and pass, unless `MULTIPROC_REQUIRE_REDIS` is set (CI sets it).
//!
//! Worker nodes are this test binary run again with `MULTIPROC_WORKER` set: independent
//! programs (not children of the family), under `setpriv --pdeathsig KILL` so that they
//! die with the test. Their `init()` (from `test_support!`) serves the pools and never
//! returns.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use common::redis::Redis;
use common::{eventually, watchdog};
use multiproc::cluster::{ClusterError, ClusterOptions, KEY_ENV, WORKER_ENV};
use multiproc::{AsyncResult, MapOptions, Pool, PoolError, TaskError};

/// Set by `mark_set_up`, this test binary's `child_init`.
static SET_UP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn mark_set_up() {
    // A node whose workers cannot start: each dies in its set-up.
    assert!(std::env::var_os(NO_BOOT).is_none(), "no boot on this node");
    // A node whose workers' boot hangs.
    if std::env::var_os(HANG_BOOT).is_some() {
        loop {
            std::thread::park();
        }
    }
    // A node whose first worker starts, and no other after it: the first makes the file.
    if let Some(first) = std::env::var_os(ONE_BOOT) {
        std::fs::OpenOptions::new().write(true).create_new(true).open(first).expect("no second boot on this node");
    }
    SET_UP.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Set in a node's environment: its workers die at boot (`mark_set_up`), so its local pool
/// gives up on them (`TaskError::WorkersCannotStart`).
const NO_BOOT: &str = "MULTIPROC_TEST_CLUSTER_NO_BOOT";
/// Set in a node's environment to a file that does not exist yet: its first worker boots
/// (and makes the file), every later one dies at boot (`mark_set_up`).
const ONE_BOOT: &str = "MULTIPROC_TEST_CLUSTER_ONE_BOOT";

/// Set in a node's environment: its workers' boot hangs (`mark_set_up`).
const HANG_BOOT: &str = "MULTIPROC_TEST_CLUSTER_HANG_BOOT";

multiproc::test_support!(child_init = mark_set_up);

const LIMIT: Duration = Duration::from_secs(120);
const ROLE: &str = "MULTIPROC_TEST_CLUSTER_POOL_ROLE";
/// Makes this test binary a worker node that logs warnings (`cluster_node_role`).
const NODE_ROLE: &str = "MULTIPROC_TEST_CLUSTER_NODE_ROLE";

/// A worker node: `exe` (this test binary, or a copy) with `MULTIPROC_WORKER=url`. Killed
/// (with its workers, by their parent-death signal) on drop.
struct Node {
    child: Child,
}

impl Node {
    fn start(url: &str) -> Node {
        Self::start_exe(&std::env::current_exe().unwrap(), url)
    }

    fn start_exe(exe: &Path, url: &str) -> Node {
        Self::start_exe_with(exe, url, &[])
    }

    /// A node with these environment variables besides (a crash point armed, say).
    fn start_exe_with(exe: &Path, url: &str, vars: &[(&str, &str)]) -> Node {
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL"])
            .arg(exe)
            .args(["--exact", "no_such_test"])
            .env(WORKER_ENV, url)
            .env(KEY_ENV, TEST_KEY)
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Node { child }
    }

    /// A driver: this test binary playing `cluster_pool_role`.
    fn driver(url: &str) -> Node {
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "cluster_pool_role", "--nocapture", "--test-threads", "1"])
            .env(ROLE, url)
            .env(KEY_ENV, TEST_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Node { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The options of the tests' pools: under [`TEST_KEY`], which their nodes have too
/// (review75 L7: no test reads, or makes, the user's own key file).
/// A private Redis started with `args` and a node serving it (stopped in that order at the
/// end: the node first), or `None` where redis-server is not installed (the test skips).
fn cluster(args: &[&str]) -> Option<(Redis, Node)> {
    let redis = Redis::start(args)?;
    let node = Node::start(&redis.url);
    Some((redis, node))
}

fn test_options() -> ClusterOptions {
    ClusterOptions::new().authkey(TEST_KEY)
}

fn pool(redis: &Redis, processes: usize) -> Pool {
    pool_with(&redis.url, processes, test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(2)))
}

/// A pool of `processes` on the cluster at `url`, with `options`.
fn pool_with(url: &str, processes: usize, options: ClusterOptions) -> Pool {
    Pool::builder().cluster(url).processes(processes).cluster_options(options).build().unwrap()
}

fn square(x: u64) -> u64 {
    x * x
}

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    x * x
}

fn whoami(_: u64) -> u32 {
    std::process::id()
}

fn poison(_: u64) -> u64 {
    std::process::abort()
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn boom(x: u64) -> u64 {
    assert!(x != 3, "three is not allowed");
    x
}

fn queue_len(q: multiproc::Queue<u64>) -> usize {
    q.len()
}

/// Whether this binary's `child_init` ran in the worker that runs the task.
fn was_set_up(_: u64) -> bool {
    SET_UP.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn child_init_runs_in_the_workers_of_a_worker_node() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let pool = pool(&redis, 2);
    assert_eq!(pool.map(was_set_up, 0..8).unwrap(), [true; 8]);
}

#[test]
fn the_whole_api_across_two_nodes() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let _nodes = [Node::start(&redis.url), Node::start(&redis.url)];
    let pool = pool(&redis, 4);

    assert_eq!(pool.apply(square, 7).unwrap(), 49);
    assert_eq!(pool.map(square, 0..100).unwrap(), (0..100).map(|x| x * x).collect::<Vec<_>>());
    let chunked = pool.map_with(square, 0..50, MapOptions::new().chunksize(7)).unwrap();
    assert_eq!(chunked, (0..50).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(pool.starmap(|a: u64, b: u64| a + b, [(1, 2), (3, 4)]).unwrap(), [3, 7]);

    let (tx, rx) = std::sync::mpsc::channel();
    let r = pool
        .apply_async_with(square, 9, multiproc::ApplyOptions::new().callback(move |v: &u64| tx.send(*v).unwrap()))
        .unwrap();
    assert_eq!(r.get().unwrap(), 81);
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), 81);

    let ordered: Vec<u64> = pool.imap(square, 0..200u64).unwrap().map(Result::unwrap).collect();
    assert_eq!(ordered, (0..200).map(|x| x * x).collect::<Vec<_>>());
    let mut unordered: Vec<u64> = pool.imap_unordered(square, 0..200u64).unwrap().map(Result::unwrap).collect();
    unordered.sort_unstable();
    assert_eq!(unordered, (0..200).map(|x| x * x).collect::<Vec<_>>());
    // Lazy: an endless input, taken as far as needed.
    let first: Vec<u64> = pool.imap(square, 0u64..).unwrap().take(10).map(Result::unwrap).collect();
    assert_eq!(first, (0..10).map(|x| x * x).collect::<Vec<_>>());

    // A panic is the item's error, as locally; the map ends with it.
    match pool.map(boom, 0..6) {
        Err(multiproc::Error::Task(TaskError::Panicked(info))) => assert!(info.message.contains("three")),
        other => panic!("{other:?}"),
    }
    // Both nodes took part (each runs its tasks in worker processes of its own).
    let pids: std::collections::HashSet<u32> =
        pool.map_with(whoami, 0..400, MapOptions::new().chunksize(1)).unwrap().into_iter().collect();
    assert!(pids.len() >= 2, "the tasks ran in {pids:?}");
    assert!(!pids.contains(&std::process::id()));
    let stats = pool.stats();
    assert!(stats.tasks_done >= 960 && stats.tasks_failed >= 1, "{stats:?}");
    drop(pool);
    assert!(eventually(Duration::from_secs(10), || redis.mp_keys().is_empty()), "left behind: {:?}", redis.mp_keys());
}

#[test]
fn a_node_killed_mid_map_has_its_tasks_run_elsewhere_each_result_once() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let mut doomed = Node::start(&redis.url);
    let _survivor = Node::start(&redis.url);
    let pool = pool(&redis, 4);
    let mut results = pool.imap_unordered_with(slow_square, 0..300u64, MapOptions::new().chunksize(1)).unwrap();
    let mut got: Vec<u64> = (&mut results).take(40).map(Result::unwrap).collect();
    doomed.kill(); // SIGKILL, mid-map
    got.extend(results.map(Result::unwrap));
    got.sort_unstable();
    assert_eq!(got, (0..300).map(|x| x * x).collect::<Vec<_>>(), "every result, each once");
}

#[test]
fn a_task_that_kills_its_worker_fails_with_worker_lost() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let pool = pool(&redis, 2);
    match pool.apply(poison, 1) {
        Err(multiproc::Error::Task(TaskError::WorkerLost { signal, .. })) => assert_eq!(signal, Some(libc::SIGABRT)),
        other => panic!("{other:?}"),
    }
    // The node survived it.
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
}

#[test]
fn a_task_whose_nodes_keep_dying_fails_with_worker_lost_after_bounded_deliveries() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let pool = Pool::builder()
        .cluster(&redis.url)
        .cluster_options(test_options().lease(Duration::from_millis(300)).max_deliveries(2))
        .build()
        .unwrap();
    let result = pool.apply_async(sleep_ms, 600_000).unwrap();
    let tasks = redis.mp_keys().into_iter().find(|k| k.ends_with(":tasks")).unwrap();
    // Each node takes the task and is killed under it (taken: pending for that node, named
    // host:pid; a fixed wait is not enough for a node that starts slowly on a busy machine).
    for _ in 0..2 {
        let mut node = Node::start(&redis.url);
        let name = format!(":{}\r\n", node.child.id());
        assert!(
            eventually(Duration::from_secs(60), || {
                String::from_utf8_lossy(&redis.raw(&[b"XPENDING", tasks.as_bytes(), b"nodes"])).contains(&name)
            }),
            "the node did not take the task"
        );
        node.kill();
    }
    let _idle = Node::start(&redis.url);
    assert!(matches!(result.get(), Err(TaskError::WorkerLost { .. })));
}

#[test]
fn a_task_past_its_timeout_is_killed_on_its_node_and_fails_with_timed_out() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let pool = pool(&redis, 2);
    let r = pool
        .apply_async_with(sleep_ms, 600_000, multiproc::ApplyOptions::new().timeout(Duration::from_millis(300)))
        .unwrap();
    assert_eq!(r.get(), Err(TaskError::TimedOut(Duration::from_millis(300))));
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
}

#[test]
fn a_node_running_another_build_refuses_the_task() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    // The same program with one more byte at the end: another build.
    let other = redis.dir.join("other-build");
    std::fs::copy(std::env::current_exe().unwrap(), &other).unwrap();
    std::fs::OpenOptions::new().append(true).open(&other).unwrap().write_all(b"\0").unwrap();
    let _node = Node::start_exe(&other, &redis.url);
    let pool = pool(&redis, 2);
    match pool.apply(square, 2) {
        Err(multiproc::Error::Task(TaskError::WrongBuild { node })) => assert!(node.contains(':')),
        other => panic!("{other:?}"),
    }
}

#[test]
fn redis_killed_mid_map_fails_the_map_with_a_typed_error() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let pool = pool(&redis, 2);
    let result = pool.map_async_with(sleep_ms, vec![50u64; 200], MapOptions::new().chunksize(1)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    redis.kill();
    match result.get() {
        Err(TaskError::Cluster(ClusterError::Unreachable(_))) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(pool.apply_async(square, 1), Err(PoolError::Cluster(ClusterError::Unreachable(_)))));
}

/// A pool of one process whose driver gives up a read after one second (a lease long
/// enough that no task is reclaimed meanwhile).
fn one_process_with_short_reads(url: &str) -> Pool {
    pool_with(url, 1, test_options().lease(Duration::from_secs(30)).timeout(Duration::from_secs(1)))
}

/// Stops Redis (SIGSTOP), and lets it go on (SIGCONT) after `pause`.
fn stop_redis_for(redis: &Redis, pause: Duration) {
    redis.pause();
    std::thread::sleep(pause);
    redis.resume();
}

/// Redis stopped (SIGSTOP) past the driver's read timeout and let go before the driver
/// gives up: the map goes on, and a result the node pushed meanwhile is delivered, not
/// taken by a read of the driver whose reply never came.
#[test]
fn results_pushed_while_redis_was_stopped_are_not_lost() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let pool = one_process_with_short_reads(&redis.url);
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    let mut result = pool.apply_async(sleep_ms, 300).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // Past the driver's read timeout (one second plus the timeout), within its grace.
    stop_redis_for(&redis, Duration::from_millis(2500));
    assert_eq!(result.get_timeout(Duration::from_secs(20)), Ok(300));
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
}

/// The driver of [`results_read_by_a_command_whose_reply_was_lost_are_read_again`], in a
/// child of the family (its hold point then holds no other test's driver): Redis at `url`
/// (its socket, its pid). Reports "done" once every step passed.
fn drive_across_a_lost_read_reply((url, socket, pid, report): (String, String, u32, multiproc::Queue<String>)) {
    let signal = |name: &str| assert!(Command::new("kill").args([name, &pid.to_string()]).status().unwrap().success());
    let pool = one_process_with_short_reads(&url);
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    // Dropped before the pool, whose drop waits for the driver thread: a failure is not a hang.
    let _disarm = Disarm;
    // The driver thread is held right before its read of the results list (the result
    // of the task below waits there, pushed by the node).
    multiproc::__private::crash_at("hold:cluster.pool.read");
    assert!(eventually(Duration::from_secs(20), || multiproc::__private::crash_holding() >= 1));
    let waiting = || {
        let key = redis_cli(&socket, &["--scan", "--pattern", "mp:{p:*}:results"]);
        if key.is_empty() {
            return 0;
        }
        redis_cli(&socket, &["LLEN", &key]).parse::<usize>().unwrap()
    };
    // (The results already read may wait there too, until the driver's next read.)
    let before = waiting();
    let mut result = pool.apply_async(square, 5).unwrap();
    assert!(eventually(Duration::from_secs(20), || waiting() > before), "the result is not waiting in the list");
    // Past the driver's read timeout (one second plus the timeout), within its grace: the
    // read runs when Redis goes on, on a connection the driver dropped.
    signal("-STOP");
    multiproc::__private::crash_disarm();
    std::thread::sleep(Duration::from_millis(2500));
    signal("-CONT");
    assert_eq!(result.get_timeout(Duration::from_secs(20)), Ok(25));
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
    // What the driver read is trimmed off the list at its next read.
    assert!(eventually(Duration::from_secs(20), || waiting() == 0), "results left in the list");
    report.put("done".into()).unwrap();
}

/// A read of the results list that Redis ran but whose reply never came (Redis stopped
/// past the driver's read timeout, let go once the driver had dropped that connection):
/// the results it read stay in the list, and the driver's next read delivers them. (A
/// destructive read there, `LPOP`, took them with it: the call waited for ever, its node
/// alive, nothing to reclaim.)
#[test]
fn results_read_by_a_command_whose_reply_was_lost_are_read_again() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let reported = drive_in_a_child(drive_across_a_lost_read_reply, |report| {
        (redis.url.clone(), redis.socket().display().to_string(), redis.pid, report)
    });
    assert_eq!(reported, "done");
}

/// The driver of [`a_submission_racing_close_is_run_or_refused`], in a child of the family
/// (its hold point its own): Redis at `url`. Reports what the submission came to.
fn submit_across_close((url, report): (String, multiproc::Queue<String>)) {
    let pool = std::sync::Arc::new(pool_with(&url, 1, test_options()));
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    let _disarm = Disarm;
    multiproc::__private::crash_at("hold:cluster.pool.submit.checked");
    let submitter = std::thread::spawn({
        let pool = std::sync::Arc::clone(&pool);
        move || pool.apply_async(square, 5)
    });
    assert!(eventually(Duration::from_secs(20), || multiproc::__private::crash_holding() >= 1));
    pool.close();
    // Only an ordering aid (nothing is asserted of it): the driver thread looks at its
    // state at least once a second, and ends once it finds the pool closed and idle.
    std::thread::sleep(Duration::from_secs(3));
    multiproc::__private::crash_disarm();
    let said = match submitter.join().unwrap() {
        Err(e) => format!("refused: {e}"),
        Ok(mut result) => match result.get_timeout(Duration::from_secs(20)) {
            Ok(got) => format!("ran: {got}"),
            Err(e) => format!("accepted, then: {e}"),
        },
    };
    report.put(said).unwrap();
}

/// review131 H2: an `apply_async` that saw the pool running, then (before it took `books`)
/// another thread closed the pool and the driver thread, finding it idle, ended: the chunk
/// was queued after that end, neither run nor refused (`get` waited for ever). The look is
/// made again under `books`.
#[test]
fn a_submission_racing_close_is_run_or_refused() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let said = drive_in_a_child(submit_across_close, |report| (redis.url.clone(), report));
    eprintln!("apply_async racing close: {said}");
    assert!(said.starts_with("refused: ") || said == "ran: 25", "neither run nor refused: {said}");
}

/// Runs `drive` in a child of the family with the arguments `args` makes of a report
/// queue, and returns what it reports, once it has ended (a driver that arms a point in its
/// own process reaches no other test's driver).
fn drive_in_a_child<A, M>(
    drive: impl multiproc::Target<A, M, Output = ()>,
    args: impl FnOnce(multiproc::Queue<String>) -> A,
) -> String
where
    A: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    multiproc::init();
    let report = multiproc::Queue::<String>::new().unwrap();
    let child = multiproc::Process::new(drive, args(report.clone())).start().unwrap();
    let reported = report.get_timeout(Duration::from_secs(90)).unwrap();
    child.join().unwrap();
    reported
}

/// A one-worker cluster pool on Redis at `url` (its socket) that has run a task (a node
/// must serve it), and the key of its results list (gone while empty; the tasks stream
/// stays).
fn one_worker_pool_and_its_results_key(url: &str, socket: &str) -> (Pool, String) {
    let pool = pool_with(url, 1, test_options());
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    let tasks = redis_cli(socket, &["--scan", "--pattern", "mp:{p:*}:tasks"]);
    let key = format!("{}:results", tasks.trim_end_matches(":tasks"));
    (pool, key)
}

/// The driver of [`a_trim_that_reaches_redis_late_removes_no_unread_result`], in a child of
/// the family (its hold point its own): Redis at `url` (its socket). Reports "done" once
/// every step passed.
fn drive_past_a_late_trim((url, socket, report): (String, String, multiproc::Queue<String>)) {
    let (pool, key) = one_worker_pool_and_its_results_key(&url, &socket);
    let _disarm = Disarm;
    let results = || multiproc::__private::cluster_pool_results(&url, &key).unwrap();
    let held = || eventually(Duration::from_secs(20), || multiproc::__private::crash_holding() >= 1);
    // What the driver read is trimmed off by its next read.
    assert!(eventually(Duration::from_secs(20), || results().is_empty()), "results left in the list");
    // A result waits in the list while the driver is held before its read: the test sees
    // what the driver reads, and so the trim that follows.
    multiproc::__private::crash_at("hold:cluster.pool.read");
    assert!(held());
    let mut first = pool.apply_async(square, 4).unwrap();
    assert!(eventually(Duration::from_secs(20), || results().len() == 1), "the result is not waiting in the list");
    let read = multiproc::__private::cluster_pool_read(&url, &key).unwrap();
    multiproc::__private::crash_disarm();
    assert_eq!(first.get_timeout(Duration::from_secs(20)), Ok(16));
    assert!(eventually(Duration::from_secs(20), || results().is_empty()), "the result read is not trimmed off");
    // A second result waits, unread; the trim of the first read arrives again, late.
    multiproc::__private::crash_at("hold:cluster.pool.read");
    assert!(held());
    let mut second = pool.apply_async(square, 5).unwrap();
    assert!(eventually(Duration::from_secs(20), || results().len() == 1), "the result is not waiting in the list");
    multiproc::__private::cluster_pool_trim(&url, &key, &read).unwrap();
    let left = results().len();
    multiproc::__private::crash_disarm();
    assert_eq!(left, 1, "the late trim removed a result nobody read");
    assert_eq!(second.get_timeout(Duration::from_secs(20)), Ok(25));
    assert!(eventually(Duration::from_secs(20), || results().is_empty()), "results left in the list");
    report.put("done".into()).unwrap();
}

/// A trim of the results list from a connection the driver dropped that reaches Redis
/// late, after the driver read again (a packet retransmitted when a partition heals),
/// removes no result nobody read.
#[test]
fn a_trim_that_reaches_redis_late_removes_no_unread_result() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    drive_in_a_child(drive_past_a_late_trim, |report| {
        (redis.url.clone(), redis.socket().display().to_string(), report)
    });
}

/// The driver of [`a_late_trim_that_finds_a_copy_of_what_it_read_removes_no_unread_result`],
/// in a child of the family (its hold point its own): Redis at `url` (its socket). Reports
/// "done" once every step passed.
fn drive_past_a_late_trim_and_a_copy((url, socket, report): (String, String, multiproc::Queue<String>)) {
    let (pool, key) = one_worker_pool_and_its_results_key(&url, &socket);
    let _disarm = Disarm;
    let results = || multiproc::__private::cluster_pool_results(&url, &key).unwrap();
    let held = || eventually(Duration::from_secs(20), || multiproc::__private::crash_holding() >= 1);
    assert!(eventually(Duration::from_secs(20), || results().is_empty()), "results left in the list");
    // Two results wait while the driver is held before its read: the test reads what the
    // driver reads.
    multiproc::__private::crash_at("hold:cluster.pool.read");
    assert!(held());
    let mut first = pool.apply_async(square, 4).unwrap();
    let mut second = pool.apply_async(square, 5).unwrap();
    assert!(eventually(Duration::from_secs(20), || results().len() == 2), "the results are not waiting in the list");
    let read = multiproc::__private::cluster_pool_read(&url, &key).unwrap();
    multiproc::__private::crash_disarm();
    assert_eq!(first.get_timeout(Duration::from_secs(20)), Ok(16));
    assert_eq!(second.get_timeout(Duration::from_secs(20)), Ok(25));
    assert!(eventually(Duration::from_secs(20), || results().is_empty()), "the results read are not trimmed off");
    // A third result waits, unread; then the node that ran the last task read again pushes
    // the same bytes again (the task ran twice), second in the list, where the read had the
    // original; then the trim of that read arrives, late.
    multiproc::__private::crash_at("hold:cluster.pool.read");
    assert!(held());
    let mut third = pool.apply_async(square, 6).unwrap();
    assert!(eventually(Duration::from_secs(20), || results().len() == 1), "the result is not waiting in the list");
    multiproc::__private::cluster_pool_push(&url, &key, &read.results()[1]).unwrap();
    multiproc::__private::cluster_pool_trim(&url, &key, &read).unwrap();
    let left = results().len();
    multiproc::__private::crash_disarm();
    assert_eq!(left, 2, "the late trim, fooled by a copy of the result it read, removed a result nobody read");
    assert_eq!(third.get_timeout(Duration::from_secs(20)), Ok(36));
    assert!(eventually(Duration::from_secs(20), || results().is_empty()), "results left in the list");
    report.put("done".into()).unwrap();
}

/// A task run twice (its node silent past the lease, its entry taken back and run again)
/// pushes its result twice, the same bytes. A trim that reaches Redis late and finds such a
/// copy where the result it read was still removes no unread result: what the driver read
/// is told apart from what it did not by more than the bytes.
#[test]
fn a_late_trim_that_finds_a_copy_of_what_it_read_removes_no_unread_result() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let reported = drive_in_a_child(drive_past_a_late_trim_and_a_copy, |report| {
        (redis.url.clone(), redis.socket().display().to_string(), report)
    });
    assert_eq!(reported, "done");
}

/// A lease too long for Redis's clock or for `Instant` (`Duration::MAX`) works as the
/// longest one kept, not as a failure of every task.
#[test]
fn a_lease_of_duration_max_is_the_longest_kept() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let pool = pool_with(&redis.url, 1, test_options().lease(Duration::MAX).timeout(Duration::MAX));
    let mut r = pool.apply_async(square, 3).unwrap();
    assert_eq!(r.get_timeout(Duration::from_secs(30)), Ok(9));
}

#[test]
fn a_pool_on_an_unreachable_redis_is_a_typed_error() {
    let _w = watchdog(LIMIT);
    let refused = Pool::builder()
        .cluster("redis://127.0.0.1:1/0")
        .cluster_options(test_options().timeout(Duration::from_secs(1)))
        .build();
    assert!(matches!(refused, Err(multiproc::Error::Pool(PoolError::Cluster(ClusterError::Unreachable(_))))));
    let bad = Pool::builder().cluster("not a url").cluster_options(test_options()).build();
    assert!(matches!(bad, Err(multiproc::Error::Pool(PoolError::Cluster(ClusterError::BadUrl(_))))));
}

#[test]
fn an_argument_holding_a_local_handle_is_refused_at_submission() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let pool = pool(&redis, 2);
    let q = multiproc::Queue::<u64>::new().unwrap();
    assert!(matches!(pool.apply_async(queue_len, q), Err(PoolError::Codec(_))));
}

fn zero_fails_the_rest_sleep(x: u64) -> u64 {
    assert!(x != 0, "zero fails");
    std::thread::sleep(Duration::from_millis(100));
    x
}

#[test]
fn a_failed_map_withdraws_its_chunks_still_in_redis() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let pool = pool(&redis, 2);
    // Every chunk is in Redis at once (fewer than the pool keeps in flight); the first one
    // fails, and the map with it: the others are taken out of the stream, not run.
    let failed = pool.map_with(zero_fails_the_rest_sleep, 0..120, MapOptions::new().chunksize(1));
    assert!(matches!(failed, Err(multiproc::Error::Task(TaskError::Panicked(_)))), "{failed:?}");
    assert!(
        eventually(Duration::from_secs(30), || pool.stats().tasks_cancelled > 0),
        "no chunk withdrawn: {:?}",
        pool.stats()
    );
    let stats = pool.stats();
    assert!(stats.tasks_done + stats.tasks_failed + stats.tasks_cancelled <= 120, "{stats:?}");
    assert_eq!(pool.apply(square, 4).unwrap(), 16, "the pool goes on");
}

fn make_queue(_: u64) -> multiproc::Queue<u64> {
    multiproc::Queue::new().unwrap()
}

#[test]
fn a_result_holding_a_handle_of_the_nodes_family_is_a_typed_error_and_the_node_goes_on() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let pool = pool(&redis, 2);
    // The queue lives in the node's shared memory: its handle means nothing here.
    match pool.apply(make_queue, 0) {
        Err(multiproc::Error::Task(TaskError::Codec(e))) => {
            assert!(e.to_string().contains("cannot cross machines"), "{e}")
        }
        other => panic!("expected a codec error, got {:?}", other.map(|_| "a queue")),
    }
    assert_eq!(pool.apply(square, 5).unwrap(), 25, "the node serves on");
}

/// Every result once, in a long map over three nodes while each in turn is killed
/// (`kill -9`) and a new one started: 4 000 tasks of one item, a kill every 1 000 results,
/// each more than the 384 tasks in flight (64 per worker), so every kill meets a full
/// pipeline and the new node takes its share before the next. (10 000 tasks and a kill
/// every 2 000 before: the same three kills and a fourth, 20 s of a loaded CI.)
#[test]
fn thousands_of_tasks_over_three_nodes_killed_and_restarted() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let url = redis.url.clone();
    let mut nodes = [Node::start(&url), Node::start(&url), Node::start(&url)];
    let pool = pool(&redis, 6);
    let (tasks, every) = (4_000u64, 1_000);
    let results = pool.imap_unordered_with(square, 0..tasks, MapOptions::new().chunksize(1)).unwrap();
    let mut got = Vec::with_capacity(tasks as usize);
    let mut round = 0;
    for r in results {
        got.push(r.unwrap());
        // Every 1 000 results, one node is killed and a new one started: each node once.
        if got.len() % every == 0 && got.len() < tasks as usize {
            let i = round % nodes.len();
            nodes[i].kill();
            nodes[i] = Node::start(&url);
            round += 1;
        }
    }
    assert_eq!(round, 3, "three kills");
    got.sort_unstable();
    assert_eq!(got, (0..tasks).map(|x| x * x).collect::<Vec<_>>(), "every result, each once");
}

/// The driver that dies: submits tasks no node takes, says so, waits to be killed. A
/// no-op in a normal run.
#[test]
fn cluster_pool_role() {
    let Ok(url) = std::env::var(ROLE) else { return };
    let pool = Pool::builder()
        .cluster(&url)
        .cluster_options(test_options().lease(Duration::from_millis(300)))
        .build()
        .unwrap();
    let _pending = pool.map_async(sleep_ms, vec![1u64; 50]).unwrap();
    eprintln!("submitted");
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_driver_killed_leaves_nothing_behind() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let mut driver = Node::driver(&redis.url);
    let mut out = std::io::BufReader::new(driver.child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("submitted") {
        line.clear();
        assert_ne!(std::io::BufRead::read_line(&mut out, &mut line).unwrap(), 0, "the driver ended");
    }
    assert!(!redis.mp_keys().is_empty());
    driver.kill();
    // A node finds the pool without its heartbeat and deletes its keys (else they expire).
    let _node = Node::start(&redis.url);
    assert!(eventually(Duration::from_secs(30), || redis.mp_keys().is_empty()), "left behind: {:?}", redis.mp_keys());
}

#[test]
fn the_driver_bounds_the_tasks_in_flight() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let pool = Pool::builder().cluster(&redis.url).cluster_options(test_options().max_in_flight(5)).build().unwrap();
    // No node: everything waits, in the driver beyond the first five.
    let result = pool.map_async_with(square, 0..1000, MapOptions::new().chunksize(1)).unwrap();
    let stream = redis.mp_keys().into_iter().find(|k| k.ends_with(":tasks")).expect("the task stream");
    let len = Command::new("redis-cli").arg("-s").arg(redis.socket()).args(["XLEN", &stream]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&len.stdout).trim(), "5");
    let _node = Node::start(&redis.url);
    assert_eq!(result.get().unwrap(), (0..1000).map(|x| x * x).collect::<Vec<_>>());
}

// --- Entries written by someone else ------------------------------------------------------

/// The ids of the pools on `redis` (`SMEMBERS mp:pools`, its bulk strings).
fn pool_ids(redis: &Redis) -> Vec<String> {
    let reply = String::from_utf8_lossy(&redis.raw(&[b"SMEMBERS", b"mp:pools"])).into_owned();
    reply.split("\r\n").skip(1).filter(|l| !l.is_empty() && !l.starts_with('$')).map(str::to_string).collect()
}

/// A task entry as another program (or another version) could write it: the crate's
/// layout (a postcard tag, then the fields), with values a driver never sends.
#[derive(serde::Serialize, serde::Deserialize)]
struct ForgedTask {
    id: u64,
    build: u128,
    call: (u64, bool, u64, u64, u64),
    timeout_ms: Option<u64>,
    lease_ms: u64,
    max_result: u64,
    #[serde(with = "serde_bytes")]
    args: Vec<u8>,
}

fn forged(task: &ForgedTask) -> Vec<u8> {
    let mut bytes = vec![0u8];
    bytes.extend(postcard::to_allocvec(task).unwrap());
    bytes
}

/// A task entry as a driver of an earlier version wrote it (before `max_result`).
#[derive(serde::Serialize)]
struct EarlierTask {
    id: u64,
    build: u128,
    call: (u64, bool, u64, u64, u64),
    timeout_ms: Option<u64>,
    lease_ms: u64,
    #[serde(with = "serde_bytes")]
    args: Vec<u8>,
}

/// A node that cannot decode a task entry (a driver of another version of the crate,
/// whose layout differs) answers it with the id its head names, as a task of another build
/// ([`TaskError::WrongBuild`]): its driver learns it at once, instead of waiting for ever
/// for an answer to a task 0 it never sent.
#[test]
fn a_task_of_another_version_is_answered_as_another_build() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    // No node yet: the pool's first task (id 1) waits in the stream.
    let pool = pool_with(&redis.url, 1, test_options().authkey(TEST_KEY));
    let mut task = pool.apply_async(square, 3).unwrap();
    let ids = pool_ids(&redis);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let tasks = format!("mp:{{p:{}}}:tasks", ids[0]);
    // Its entry replaced by the same task as an earlier version wrote it.
    assert_eq!(redis.raw(&[b"XTRIM", tasks.as_bytes(), b"MAXLEN", b"0"]), b":1\r\n");
    let mut earlier = vec![0u8];
    earlier.extend(
        postcard::to_allocvec(&EarlierTask {
            id: 1,
            build: 0,
            call: (0, false, 0, 0, 0),
            timeout_ms: None,
            lease_ms: 600,
            args: Vec::new(),
        })
        .unwrap(),
    );
    // Tagged under the key, as that driver tags it: the node decodes it.
    let tag = tag(&ids[0], &earlier);
    assert!(redis.raw(&[b"XADD", tasks.as_bytes(), b"*", b"m", &earlier, b"k", &tag]).starts_with(b"$"));
    let _node = Node::start_exe_with(&std::env::current_exe().unwrap(), &redis.url, &[(KEY_ENV, TEST_KEY)]);
    let got = task.get_timeout(Duration::from_secs(30));
    assert!(
        matches!(got, Err(multiproc::ResultTimeoutError::Task(TaskError::WrongBuild { .. }))),
        "a task the node could not decode: {got:?}"
    );
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
}

/// The cluster key of the tests that write tagged entries themselves.
const TEST_KEY: &str = "the key of the cluster pool tests, never a user's own";

/// The tag of the encoded task `m` in pool `id` under [`TEST_KEY`], as a driver makes it
/// (a mirror of `cluster::key`: an HMAC-SHA256 over the domain, the pool id's length as 8
/// little-endian bytes, the pool's id and the task).
fn tag(id: &str, m: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(TEST_KEY.as_bytes()).unwrap();
    mac.update(b"multiproc cluster task v2\0");
    mac.update(&(id.len() as u64).to_le_bytes());
    mac.update(id.as_bytes());
    mac.update(m);
    mac.finalize().into_bytes().to_vec()
}

/// A node takes the lease of each entry from the entry; one with a lease no driver gives
/// (the driver clamps its own) must not stop the node from answering the other entries.
/// The entries are tagged under the pool's key: the node reads their lease.
#[test]
fn an_entry_with_an_impossible_lease_is_answered_and_the_node_goes_on() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let _node = Node::start_exe_with(&std::env::current_exe().unwrap(), &redis.url, &[(KEY_ENV, TEST_KEY)]);
    let pool = pool_with(
        &redis.url,
        1,
        test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(2)).authkey(TEST_KEY),
    );
    let mut first = pool.apply_async(square, 2).unwrap();
    assert_eq!(first.get_timeout(Duration::from_secs(30)), Ok(4));
    let ids = pool_ids(&redis);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let tasks = format!("mp:{{p:{}}}:tasks", ids[0]);
    for lease_ms in [u64::MAX, 0] {
        let entry = forged(&ForgedTask {
            id: 777_777,
            build: 0,
            call: (0, false, 0, 0, 0),
            timeout_ms: None,
            lease_ms,
            max_result: 64 << 20,
            args: Vec::new(),
        });
        let tag = tag(&ids[0], &entry);
        let added = redis.raw(&[b"XADD", tasks.as_bytes(), b"*", b"m", &entry, b"k", &tag]);
        assert!(added.starts_with(b"$"), "{}", String::from_utf8_lossy(&added));
        let mut r = pool.apply_async(square, 3).unwrap();
        assert_eq!(r.get_timeout(Duration::from_secs(30)), Ok(9), "after an entry with a lease of {lease_ms} ms");
    }
    // Answered, so gone from the stream.
    assert!(eventually(Duration::from_secs(10), || redis.raw(&[b"XLEN", tasks.as_bytes()]) == b":0\r\n"));
}

/// A node serves only pools whose id has the form a driver makes (32 lowercase hex
/// digits): any other member of the registry is someone else's (review67 S-M1: a pool id
/// `P\0x` let a task of pool `P` pass for another), and it is neither read nor answered,
/// even with a live key, a group and an entry tagged under the node's key. Checked once the
/// node has gone round its pools at least once after the odd pool was registered: a task
/// of a genuine pool submitted after another one's result.
#[test]
fn a_node_serves_no_pool_whose_id_a_driver_does_not_make() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let odd = "p\0x";
    let keys = |suffix: &str| format!("mp:{{p:{odd}}}:{suffix}");
    let (tasks, alive) = (keys("tasks"), keys("alive"));
    assert_eq!(redis.raw(&[b"SET", alive.as_bytes(), b"1"]), b"+OK\r\n");
    assert_eq!(redis.raw(&[b"XGROUP", b"CREATE", tasks.as_bytes(), b"nodes", b"0", b"MKSTREAM"]), b"+OK\r\n");
    let entry = forged(&ForgedTask {
        id: 1,
        build: 0,
        call: (0, false, 0, 0, 0),
        timeout_ms: None,
        lease_ms: 600,
        max_result: 64 << 20,
        args: Vec::new(),
    });
    add_entry(&redis, &tasks, &[("m".into(), entry.clone()), ("k".into(), tag(odd, &entry))]);
    assert_eq!(redis.raw(&[b"SADD", b"mp:pools", odd.as_bytes()]), b":1\r\n");
    let _node = Node::start_exe_with(&std::env::current_exe().unwrap(), &redis.url, &[(KEY_ENV, TEST_KEY)]);
    let pool = pool_with(&redis.url, 1, test_options().authkey(TEST_KEY));
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    // Never delivered: still there for the group's next reader.
    let probe =
        redis.raw(&[b"XREADGROUP", b"GROUP", b"nodes", b"probe", b"COUNT", b"1", b"STREAMS", tasks.as_bytes(), b">"]);
    assert!(
        probe.windows(entry.len()).any(|w| w == entry),
        "the node read the entry of the pool {odd:?}: {}",
        String::from_utf8_lossy(&probe)
    );
    // Nor is it kept in the registry for ever: the node drops the member (and another
    // that is not even UTF-8), leaving the keys named after it alone.
    assert_eq!(redis.raw(&[b"SADD", b"mp:pools", b"\xff\xfe"]), b":1\r\n");
    let members = || redis.raw(&[b"SMEMBERS", b"mp:pools"]);
    assert!(
        eventually(Duration::from_secs(10), || !members().windows(3).any(|w| w == b"p\0x" || w == b"\xff\xfe\r")),
        "odd members stay in the registry: {}",
        String::from_utf8_lossy(&members())
    );
    assert_eq!(pool_ids(&redis).len(), 1, "the genuine pool stays");
    assert_eq!(redis.raw(&[b"EXISTS", alive.as_bytes()]), b":1\r\n");
}

/// The environment variable naming the directory where `leave_a_mark` writes.
const MARK_DIR: &str = "MULTIPROC_TEST_MARK_DIR";

/// A function with a visible effect: a file `mark-X` in the node's `MARK_DIR`.
fn leave_a_mark(x: u64) -> u64 {
    let dir = std::env::var(MARK_DIR).expect("the node's mark directory");
    std::fs::write(Path::new(&dir).join(format!("mark-{x}")), b"ran").unwrap();
    x + 1000
}

/// The entries of a pool's task stream: their ids and fields.
type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;

fn task_entries(redis: &Redis, tasks: &str) -> Entries {
    let mut conn = redis::Client::open(redis.url.as_str()).unwrap().get_connection().unwrap();
    redis::cmd("XRANGE").arg(tasks).arg("-").arg("+").query(&mut conn).unwrap()
}

/// Adds an entry with these fields to the stream `tasks`.
fn add_entry(redis: &Redis, tasks: &str, fields: &[(String, Vec<u8>)]) {
    let mut conn = redis::Client::open(redis.url.as_str()).unwrap().get_connection().unwrap();
    let mut add = redis::cmd("XADD");
    add.arg(tasks).arg("*");
    for (name, value) in fields {
        add.arg(name).arg(value.as_slice());
    }
    let _: String = add.query(&mut conn).unwrap();
}

/// Whoever can write to a pool's task stream must not choose the code a node runs: a real
/// task's bytes with its function's offsets replaced by another function's (the same
/// signature, so that the test itself never jumps anywhere unsound) is refused by the node,
/// typed for the driver, and never called. Before the cluster key, the node ran the
/// forger's choice.
#[test]
fn a_task_whose_offsets_were_changed_in_redis_is_refused_not_called() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    // No node yet: both tasks wait in the stream.
    let pool = pool(&redis, 1);
    let mut victim = pool.apply_async(square, 3).unwrap();
    let mut chosen = pool.apply_async(leave_a_mark, 7).unwrap();
    let ids = pool_ids(&redis);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let tasks = format!("mp:{{p:{}}}:tasks", ids[0]);
    let entries = task_entries(&redis, &tasks);
    assert_eq!(entries.len(), 2, "both tasks wait in the stream");
    let field = |fields: &[(String, Vec<u8>)]| fields.iter().find(|(k, _)| k == "m").unwrap().1.clone();
    let (victim_fields, chosen_fields) = (&entries[0].1, &entries[1].1);
    let decode = |m: &[u8]| postcard::from_bytes::<ForgedTask>(&m[1..]).unwrap();
    let mut forged_task = decode(&field(victim_fields));
    let chosen_task = decode(&field(chosen_fields));
    assert_eq!((forged_task.id, chosen_task.id), (1, 2));
    // `square(3)` made to name `leave_a_mark` instead: its driver's offsets, every other
    // field (and anything else the entry carries) as the driver wrote it.
    forged_task.call = chosen_task.call;
    let forged_fields: Vec<_> = victim_fields
        .iter()
        .map(|(k, v)| if k == "m" { (k.clone(), forged(&forged_task)) } else { (k.clone(), v.clone()) })
        .collect();
    assert_eq!(redis.raw(&[b"XTRIM", tasks.as_bytes(), b"MAXLEN", b"0"]), b":2\r\n");
    add_entry(&redis, &tasks, &forged_fields);
    add_entry(&redis, &tasks, chosen_fields);
    let marks = redis.dir.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let _node =
        Node::start_exe_with(&std::env::current_exe().unwrap(), &redis.url, &[(MARK_DIR, marks.to_str().unwrap())]);
    let got = victim.get_timeout(Duration::from_secs(30));
    assert!(
        matches!(got, Err(multiproc::ResultTimeoutError::Task(TaskError::Unauthenticated { .. }))),
        "a task whose offsets were changed: {got:?}"
    );
    // The genuine task runs: the node goes on, and its mark is the only one.
    assert_eq!(chosen.get_timeout(Duration::from_secs(30)), Ok(1007));
    assert!(!marks.join("mark-3").exists(), "the node ran the function the forger chose");
    assert!(marks.join("mark-7").exists());
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
}

/// Makes this test binary a driver started with the cluster key in its environment
/// (`cluster_key_role`); its value is the Redis URL.
const KEY_ROLE: &str = "MULTIPROC_TEST_CLUSTER_KEY_ROLE";

/// Whether this process shows the cluster key: the variable in its environment, or the key
/// in `/proc/self/environ` (the block it started with, which removing the variable leaves
/// as it was: review75 L1).
fn shows_the_key() -> bool {
    let environ = std::fs::read("/proc/self/environ").unwrap();
    std::env::var_os(KEY_ENV).is_some() || environ.windows(TEST_KEY.len()).any(|w| w == TEST_KEY.as_bytes())
}

/// [`shows_the_key`], as a task.
fn sees_the_key_variable(_: u64) -> bool {
    shows_the_key()
}

/// A child of the family: puts 42 on the cluster queue `name` under its default key (the
/// family's, taken from the environment by the main process's `init`), and says whether
/// it sees the variable.
fn put_under_the_default_key((url, name): (String, String)) -> bool {
    multiproc::cluster::Queue::<u64>::open(&url, &name).unwrap().put(42).unwrap();
    shows_the_key()
}

/// The driver of `the_cluster_key_leaves_the_environment_and_stays_the_familys`, started
/// with `KEY_ENV=TEST_KEY`: the variable is gone from its environment, from its pool's
/// workers (a node started with it) and from its spawned and fork-server children, and the
/// key is still the family's default, in each. A no-op in a normal run.
#[test]
fn cluster_key_role() {
    let Ok(url) = std::env::var(KEY_ROLE) else { return };
    assert!(!shows_the_key(), "init() left the key in the environment, or in /proc/self/environ");
    let pool = pool_with(&url, 1, ClusterOptions::new());
    assert_eq!(pool.apply(square, 5).unwrap(), 25, "the default key is the one the variable gave");
    assert!(!pool.apply(sees_the_key_variable, 0).unwrap(), "a node's worker inherited the key");
    let q = multiproc::cluster::Queue::<u64>::builder().authkey(TEST_KEY).open(&url, "from-children").unwrap();
    // (`Fork` copies this memory, the family's configuration with it, and is refused in a
    // test binary's threads anyway.)
    for method in [multiproc::StartMethod::Spawn, multiproc::StartMethod::ForkServer] {
        let child = multiproc::Process::new(put_under_the_default_key, (url.clone(), "from-children".to_string()))
            .start_method(method)
            .start()
            .unwrap();
        assert!(!child.join().unwrap(), "a {method:?} child inherited the key variable");
        assert_eq!(q.get_timeout(Duration::from_secs(30)), Ok(42), "a {method:?} child's default key");
    }
    println!("the key role passed");
}

/// review67 S-L5: `MULTIPROC_CLUSTER_KEY` was inherited by every descendant (a pool worker,
/// a program a task runs). `init()` takes it out of the environment, and the family keeps
/// it as its default cluster key (see `cluster_key_role`).
#[test]
fn the_cluster_key_leaves_the_environment_and_stays_the_familys() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let node = Node::start_exe_with(&std::env::current_exe().unwrap(), &redis.url, &[(KEY_ENV, TEST_KEY)]);
    let out = Command::new("setpriv")
        .args(["--pdeathsig", "KILL"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "cluster_key_role", "--nocapture", "--test-threads", "1"])
        .env(KEY_ROLE, &redis.url)
        .env(KEY_ENV, TEST_KEY)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("the key role passed"), "{stdout}\n{stderr}");
    // The node served the role's pool: its `init()` took both variables long before.
    let environ = std::fs::read(format!("/proc/{}/environ", node.child.id())).unwrap();
    let shown = |name: &str| {
        environ.split(|&b| b == 0).any(|e| e.starts_with(format!("{name}=").as_bytes()) && e.len() > name.len() + 1)
    };
    assert!(!shown(KEY_ENV), "the node's /proc/<pid>/environ shows the key");
    // The URL may carry the Redis password (review80 L3).
    assert!(!shown(WORKER_ENV), "the node's /proc/<pid>/environ shows its URL");
}

/// A node that ends says why without the Redis password of its URL: a supervisor that
/// restarts it puts each line in logs more people read than the node's environment. The
/// URL was printed whole (review80 M3). The URL here is refused at once (RESP3).
#[test]
fn a_node_that_ends_prints_its_url_without_the_password() {
    let _w = watchdog(LIMIT);
    let out = Command::new("setpriv")
        .args(["--pdeathsig", "KILL"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "no_such_test"])
        .env(WORKER_ENV, "redis://worker:s3cret@127.0.0.1:1/0?protocol=resp3")
        .env(KEY_ENV, TEST_KEY)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("redis://worker:***@127.0.0.1:1/0"), "the URL, shown: {stderr}");
    assert!(!stderr.contains("s3cret"), "the password, printed: {stderr}");
}

/// A result as another program could push it: the crate's layout of `wire::ResultMsg` (a
/// postcard tag, the task's id, then the outcome), here a failure of the forger's choosing.
#[derive(serde::Serialize)]
struct ForgedResult {
    id: u64,
    outcome: Result<serde_bytes::ByteBuf, ForgedFailure>,
}

/// `wire::Failure`'s variants, so that `Codec` and `Unauthenticated` have their numbers on
/// the wire (those never sent here stand in by their place only).
#[derive(serde::Serialize)]
#[allow(dead_code)]
enum ForgedFailure {
    TimedOut { ms: u64 },
    WorkerLost { pid: u32, signal: Option<i32>, exit_code: Option<i32> },
    Codec(String),
    Panicked(()),
    WrongBuild { node: String },
    Terminated,
    TooLarge { size: u64, max: u64 },
    Refused { size: u64, why: String },
    Unauthenticated { node: String },
}

/// The id of the task in the only entry of the stream `tasks` (its `m` field's head).
fn only_task_id(redis: &Redis, tasks: &str) -> u64 {
    let ids = task_ids(redis, tasks);
    assert_eq!(ids.len(), 1, "one task waits");
    ids[0]
}

/// The ids of the tasks in the entries of the stream `tasks` (their `m` fields' heads),
/// oldest first.
fn task_ids(redis: &Redis, tasks: &str) -> Vec<u64> {
    let mut conn = redis::Client::open(redis.url.as_str()).unwrap().get_connection().unwrap();
    let entries: Entries = redis::cmd("XRANGE").arg(tasks).arg("-").arg("+").query(&mut conn).unwrap();
    let id = |fields: &[(String, Vec<u8>)]| {
        let m = &fields.iter().find(|(k, _)| k == "m").unwrap().1;
        postcard::from_bytes::<ForgedTask>(&m[1..]).unwrap().id
    };
    entries.iter().map(|(_, fields)| id(fields)).collect()
}

/// Whoever can write to a pool's results list must not choose a task's outcome: a result
/// pushed for a waiting task (with no node yet, so the forged one is first) is refused by
/// the driver before it is decoded, and fails the task with `Unauthenticated` (`node`: the
/// driver), not with the forger's failure (nor, for a forged value, with a wrong value).
/// The pool goes on with genuine results, sealed by a node of its key.
#[test]
fn a_result_pushed_by_someone_without_the_key_is_refused_typed() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let pool = pool_with(&redis.url, 1, test_options().authkey(TEST_KEY));
    let mut task = pool.apply_async(square, 3).unwrap();
    let ids = pool_ids(&redis);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = only_task_id(&redis, &format!("mp:{{p:{}}}:tasks", ids[0]));
    let forged = ForgedResult { id, outcome: Err(ForgedFailure::Codec("the forger's choice".into())) };
    let mut bytes = vec![0u8];
    bytes.extend(postcard::to_allocvec(&forged).unwrap());
    let results = format!("mp:{{p:{}}}:results", ids[0]);
    assert_eq!(redis.raw(&[b"RPUSH", results.as_bytes(), &bytes]), b":1\r\n");
    let got = task.get_timeout(Duration::from_secs(30));
    assert!(
        matches!(&got, Err(multiproc::ResultTimeoutError::Task(TaskError::Unauthenticated { node })) if node == "the driver"),
        "a result pushed by someone without the key: {got:?}"
    );
    let _node = Node::start_exe_with(&std::env::current_exe().unwrap(), &redis.url, &[(KEY_ENV, TEST_KEY)]);
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
}

/// The one answer a driver takes untagged, a node's refusal (`Failure::Unauthenticated`,
/// from a node of another key, which cannot tag for the driver's), names its node only when
/// that name has a node's form, `host:pid`, of at most 255 bytes (review75 L3: before, the
/// forger's text of any length, lines included, became the task's error).
#[test]
fn an_untagged_refusal_names_a_node_only_of_a_nodes_form() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let pool = pool_with(&redis.url, 1, test_options().authkey(TEST_KEY));
    let long = format!("{}:1", "h".repeat(300));
    let named =
        ["blame that machine\nmultiproc: a forged log line", &long, "host:pid", ":1", "host", "node-7.example:4242"];
    let mut tasks: Vec<_> = named.iter().map(|_| pool.apply_async(square, 3).unwrap()).collect();
    let pools = pool_ids(&redis);
    assert_eq!(pools.len(), 1, "{pools:?}");
    let ids = task_ids(&redis, &format!("mp:{{p:{}}}:tasks", pools[0]));
    assert_eq!(ids.len(), named.len(), "every task waits");
    let results = format!("mp:{{p:{}}}:results", pools[0]);
    for (id, node) in ids.into_iter().zip(named) {
        let forged = ForgedResult { id, outcome: Err(ForgedFailure::Unauthenticated { node: node.into() }) };
        let mut bytes = vec![0u8];
        bytes.extend(postcard::to_allocvec(&forged).unwrap());
        assert!(redis.raw(&[b"RPUSH", results.as_bytes(), &bytes]).starts_with(b":"));
    }
    let refused_by = |task: &mut multiproc::AsyncResult<u64>| match task.get_timeout(Duration::from_secs(30)) {
        Err(multiproc::ResultTimeoutError::Task(TaskError::Unauthenticated { node })) => node,
        got => panic!("a forged refusal: {got:?}"),
    };
    let last = tasks.pop().unwrap();
    for (task, odd) in tasks.iter_mut().zip(named) {
        assert_eq!(refused_by(task), "the driver", "{odd:?}");
    }
    assert_eq!(refused_by(&mut { last }), "node-7.example:4242", "a node's form is taken, unchecked");
}

/// A node checks every task under its own key: a driver with another key has its tasks
/// refused at once, typed (not left waiting), and a driver with the node's key, given by
/// option on one side and by the environment on the other, has them run.
#[test]
fn a_node_runs_the_tasks_of_its_key_only_and_refuses_the_others_typed() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    const NODE_KEY: &str = "this node's key, of sixteen bytes or more";
    let _node = Node::start_exe_with(&std::env::current_exe().unwrap(), &redis.url, &[(KEY_ENV, NODE_KEY)]);
    let options = || ClusterOptions::new().lease(Duration::from_millis(600)).timeout(Duration::from_secs(2));
    let ours = pool_with(&redis.url, 1, options().authkey(NODE_KEY));
    assert_eq!(ours.apply(square, 5).unwrap(), 25);
    // The tests' key is another.
    for other in [pool(&redis, 1), pool_with(&redis.url, 1, options().authkey("another key, of sixteen bytes or more"))]
    {
        match other.apply(square, 2) {
            Err(multiproc::Error::Task(TaskError::Unauthenticated { node })) => assert!(node.contains(':')),
            got => panic!("a task under another key: {got:?}"),
        }
    }
    assert_eq!(ours.apply(square, 6).unwrap(), 36);
}

/// An empty key authenticates nothing: refused when the pool is built.
#[test]
fn an_empty_cluster_key_refuses_the_build() {
    let _w = watchdog(LIMIT);
    // Before any connection: no Redis needed.
    let refused = Pool::builder().cluster("redis://127.0.0.1:1/0").cluster_options(test_options().authkey("")).build();
    assert!(
        matches!(refused, Err(multiproc::Error::Pool(PoolError::Cluster(ClusterError::Key(_))))),
        "{:?}",
        refused.map(|_| ())
    );
}

fn bytes_of(n: usize) -> Vec<u8> {
    vec![0xAB; n]
}

/// A one-process cluster pool whose messages are at most 64 KiB, shown to work with a
/// result below the limit.
fn pool_of_64_kib_messages(url: &str) -> Pool {
    let pool = pool_with(url, 1, test_options().max_message_size(64 << 10));
    assert_eq!(pool.apply(bytes_of, 1000).unwrap().len(), 1000);
    pool
}

#[test]
fn a_result_above_max_message_size_fails_its_task_with_a_typed_error_and_the_pool_goes_on() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let pool = pool_of_64_kib_messages(&redis.url);
    let big = pool.apply(bytes_of, 1 << 20);
    assert!(
        matches!(big, Err(multiproc::Error::Task(TaskError::Codec(_)))),
        "a 1 MiB result with a limit of 64 KiB: {:?}",
        big.map(|v| v.len())
    );
    assert_eq!(pool.map(square, 0..100u64).unwrap(), (0..100u64).map(|x| x * x).collect::<Vec<_>>());
}

/// A pool's `max_message_size` bounds a result message as a queue's bounds an item, the
/// tag under the cluster key on top (review75 L10: a node counted the tag inside, so a
/// result within 32 bytes below the limit failed `TooLarge`, where it came before the
/// results were tagged).
#[test]
fn a_result_just_below_max_message_size_comes_its_tag_on_top() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let pool = pool_of_64_kib_messages(&redis.url);
    // The result message (its id, the chunk's framing, the bytes) takes about 12 bytes
    // more than the bytes: 16 less is below the limit, and above it with the tag inside.
    let near = (64 << 10) - 16;
    let got = pool.apply(bytes_of, near);
    assert!(matches!(&got, Ok(v) if v.len() == near), "{:?}", got.map(|v| v.len()));
}

/// A node checks a result's size against the pool's `max_message_size` before it pushes
/// it: one above it fails its task with a typed error and never reaches Redis. Here Redis
/// refuses anything above 1 MiB (`proto-max-bulk-len`, as a server configured so, or one
/// short of memory, would): a node that pushed the 2 MiB result would have it refused, or
/// lose its connection, for ever, and its later results would wait behind it.
#[test]
fn a_result_above_max_message_size_is_refused_by_its_node_and_the_results_after_it_come() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&["--proto-max-bulk-len", "1mb"]) else { return };
    let pool = pool_of_64_kib_messages(&redis.url);
    let mut big = pool.apply_async(bytes_of, 2 << 20).unwrap();
    let got = big.get_timeout(Duration::from_secs(60));
    match &got {
        Err(multiproc::ResultTimeoutError::Task(TaskError::Codec(e))) => {
            assert!(e.to_string().contains("more than the pool allows (65536 bytes"), "{e}");
        }
        other => panic!("a 2 MiB result with a limit of 64 KiB: {:?}", other.as_ref().map(Vec::len)),
    }
    assert_eq!(pool.map(square, 0..100u64).unwrap(), (0..100u64).map(|x| x * x).collect::<Vec<_>>());
}

/// A result Redis refuses for a reason of its own (here its `proto-max-bulk-len` of 1 MiB,
/// below the pool's `max_message_size` of 64 MiB, as a server configured so, which the
/// driver cannot read since an ACL refuses it `CONFIG`; a full server or an ACL would refuse
/// as well) fails its task with a typed error that says so, as soon as the node sees the
/// refusal: the node sends a small failure instead. (Before, the node dropped the result,
/// or tried it again for ever; the driver took the entry back after its lease, ran it
/// again, and after `max_deliveries` said `WorkerLost { pid: 0 }`.)
#[test]
fn a_result_redis_refuses_fails_its_task_with_a_typed_error_and_the_next_map_completes() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&["--proto-max-bulk-len", "1mb"]) else { return };
    assert_eq!(redis.raw(&[b"ACL", b"SETUSER", b"default", b"-config"]), b"+OK\r\n");
    let _node = Node::start(&redis.url);
    // The defaults: a lease of 10 s, 3 deliveries, 64 MiB messages.
    let pool = Pool::builder().cluster(&redis.url).processes(1).cluster_options(test_options()).build().unwrap();
    assert_eq!(pool.apply(bytes_of, 1000).unwrap().len(), 1000);
    let mut big = pool.apply_async(bytes_of, 2 << 20).unwrap();
    let got = big.get_timeout(Duration::from_secs(60));
    match &got {
        Err(multiproc::ResultTimeoutError::Task(TaskError::Cluster(ClusterError::Refused(why)))) => {
            assert!(why.contains("2097"), "names the result's size: {why}");
        }
        other => panic!("a 2 MiB result Redis refuses: {:?}", other.as_ref().map(Vec::len)),
    }
    assert_eq!(pool.map(square, 0..100u64).unwrap(), (0..100u64).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(pool.apply(bytes_of, 1000).unwrap().len(), 1000);
}

/// A Redis short of memory (`maxmemory` with `noeviction`) while large results arrive:
/// the driver's reads (which free memory as they trim) and heartbeats go on, tasks it
/// cannot send for the moment wait, and the next map completes. (Before, the first command
/// Redis refused for memory, a heartbeat's `SET` or a wait's `BLMOVE`, terminated the pool.)
#[test]
fn results_that_fill_redis_memory_arrive_and_the_next_map_completes() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&["--maxmemory", "6mb", "--maxmemory-policy", "noeviction"]) else { return };
    let pool = Pool::builder().cluster(&redis.url).processes(2).cluster_options(test_options()).build().unwrap();
    assert_eq!(pool.apply(bytes_of, 1000).unwrap().len(), 1000);
    let mut big: Vec<_> = (0..4).map(|_| pool.apply_async(bytes_of, 3 << 20).unwrap()).collect();
    for (i, r) in big.iter_mut().enumerate() {
        let got = r.get_timeout(Duration::from_secs(60)).map(|v| v.len());
        assert!(matches!(got, Ok(n) if n == 3 << 20), "result {i}: {got:?}");
    }
    assert_eq!(pool.map(square, 0..100u64).unwrap(), (0..100u64).map(|x| x * x).collect::<Vec<_>>());
}

/// Fills `redis` as another program would: what it holds (a 2 MiB value) is more than its
/// `maxmemory`, set below it, so that with `noeviction` it refuses every write that may
/// take memory.
fn fill(redis: &Redis) {
    let filler = vec![b'x'; 2 << 20];
    assert_eq!(redis.raw(&[b"SET", b"filler", &filler]), b"+OK\r\n");
    assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"maxmemory", b"1mb"]), b"+OK\r\n");
}

/// Gives back what [`fill`] took.
fn empty(redis: &Redis) {
    assert_eq!(redis.raw(&[b"DEL", b"filler"]), b":1\r\n");
}

/// A Redis that stays out of memory (filled by another program) refuses the driver's
/// tasks: after the pool's `timeout` they fail, typed (`Refused`, naming `OOM`), and the
/// pool goes on: once memory is back, the next map completes. (Before, the first refusal
/// terminated the pool: every later call failed.)
#[test]
fn tasks_redis_refuses_for_memory_fail_typed_and_the_pool_goes_on() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&["--maxmemory-policy", "noeviction"]) else { return };
    let pool = pool_with(&redis.url, 1, test_options().timeout(Duration::from_secs(1)));
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    fill(&redis);
    let mut refused = pool.apply_async(square, 3).unwrap();
    match refused.get_timeout(Duration::from_secs(60)) {
        Err(multiproc::ResultTimeoutError::Task(TaskError::Cluster(ClusterError::Refused(why)))) => {
            assert!(why.contains("OOM"), "{why}");
        }
        other => panic!("a task sent to a full Redis: {other:?}"),
    }
    empty(&redis);
    assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"maxmemory", b"0"]), b"+OK\r\n");
    assert_eq!(pool.map(square, 0..100u64).unwrap(), (0..100u64).map(|x| x * x).collect::<Vec<_>>());
}

/// The peak resident memory of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// A child of the family drives a cluster pool of results of at most 64 KiB while the
/// parent writes 64 items of 1 MiB to its results list, as any program that reaches Redis
/// can: it reports how much its peak memory grew meanwhile, and that its pool goes on.
fn drive_while_garbage_arrives(
    (url, ready, written, report): (String, multiproc::Event, multiproc::Event, multiproc::Queue<(u64, bool)>),
) {
    let pool = pool_with(&url, 1, test_options().max_message_size(64 << 10));
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    let before = peak_rss();
    ready.set();
    assert!(written.wait_timeout(Duration::from_secs(60)));
    // The driver reads the garbage (it polls the list all the time); a map goes on.
    let ok = pool.map(square, 0..100u64).unwrap() == (0..100u64).map(|x| x * x).collect::<Vec<_>>();
    std::thread::sleep(Duration::from_millis(500));
    report.put((peak_rss().saturating_sub(before), ok)).unwrap();
}

#[test]
fn items_written_to_the_results_list_by_another_program_take_the_driver_no_more_than_its_limit() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    multiproc::init();
    let (ready, written) = (multiproc::Event::new().unwrap(), multiproc::Event::new().unwrap());
    let report = multiproc::Queue::<(u64, bool)>::new().unwrap();
    let child = multiproc::Process::new(
        drive_while_garbage_arrives,
        (redis.url.clone(), ready.clone(), written.clone(), report.clone()),
    )
    .start()
    .unwrap();
    assert!(ready.wait_timeout(Duration::from_secs(60)));
    let tasks = redis.mp_keys().into_iter().find(|k| k.ends_with(":tasks")).unwrap();
    let key = format!("{}:results", tasks.trim_end_matches(":tasks"));
    // All at once (one RPUSH): the driver's next read finds them all.
    let garbage = vec![0x5A; 1 << 20];
    let mut push: Vec<&[u8]> = vec![b"RPUSH", key.as_bytes()];
    push.extend(std::iter::repeat_n(garbage.as_slice(), 64));
    assert_eq!(redis.raw(&push), b":64\r\n");
    written.set();
    let (growth, ok) = report.get_timeout(Duration::from_secs(90)).unwrap();
    child.join().unwrap();
    eprintln!("the driver's peak RSS grew by {} KiB with 64 MiB of garbage in its results list", growth >> 10);
    assert!(ok, "the map after the garbage");
    assert!(growth < 24 << 20, "the driver's peak memory grew by {growth} bytes");
}

/// A pool built while Redis is out of memory (review30b M1). The first heartbeat is refused
/// for memory (`XGROUP CREATE ... MKSTREAM`, `SET alive`, `SADD`); it used to be taken as
/// done, so the pool had no group: once memory was back, a task's `XADD` made the stream
/// before the next beat made the group at `$`, after it, and no node was ever given the
/// task (a hang), or the driver's `XAUTOCLAIM` met `NOGROUP` and ended the pool. The build
/// must either be refused or give a pool that runs its tasks once memory is back.
#[test]
fn a_pool_built_while_redis_is_full_is_refused_or_runs_its_tasks_once_memory_is_back() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&["--maxmemory-policy", "noeviction"]) else { return };
    fill(&redis);
    let built = Pool::builder()
        .cluster(&redis.url)
        .processes(1)
        .cluster_options(test_options().lease(Duration::from_secs(30)))
        .build();
    let pool = match built {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("refused to build: {e}");
            assert!(e.to_string().contains("OOM"), "refused for another reason: {e}");
            return;
        }
    };
    empty(&redis);
    assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"maxmemory", b"0"]), b"+OK\r\n");
    let mut r = pool.apply_async(square, 3).unwrap();
    let got = r.get_timeout(Duration::from_secs(40));
    assert!(matches!(got, Ok(9)), "a task sent once memory was back: {got:?}");
}

/// A group made after its stream (the keys expired while the driver was stopped, or a
/// task's `XADD` ran before the beat) still delivers the entries already in the stream:
/// every entry of a pool's stream is one of its undelivered tasks (review30b M1).
#[test]
fn a_group_made_after_its_stream_delivers_the_entries_already_there() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let pool = pool_with(&redis.url, 1, test_options().lease(Duration::from_secs(3)));
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    // The stream and its group gone (as if expired); the next task makes the stream again
    // before the next beat (every second) makes the group.
    let tasks = redis.mp_keys().into_iter().find(|k| k.ends_with(":tasks")).unwrap();
    assert_eq!(redis.raw(&[b"DEL", tasks.as_bytes()]), b":1\r\n");
    let got: Vec<u64> = pool.map(square, 0..8u64).unwrap();
    assert_eq!(got, (0..8u64).map(square).collect::<Vec<_>>());
}

/// review30b L2: the refusal that started a wait for memory was withdrawn (its task
/// cancelled) instead of sent or failed; a later refusal must still wait the pool's
/// `timeout`, not fail every waiting task at once.
#[test]
fn a_refusal_after_a_cancelled_wait_still_waits_the_timeout() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&["--maxmemory-policy", "noeviction"]) else { return };
    let pool = pool_with(&redis.url, 1, test_options().timeout(Duration::from_secs(5)));
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    fill(&redis);
    let first = pool.apply_async(square, 3).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    first.cancel();
    std::thread::sleep(Duration::from_secs(6));
    let start = std::time::Instant::now();
    let mut second = pool.apply_async(square, 4).unwrap();
    let got = second.get_timeout(Duration::from_secs(60));
    let took = start.elapsed();
    assert!(got.is_err(), "{got:?}");
    // Not a duration asserted as a speed: the refusal must not come before the wait the
    // pool promises (5 s), measured with a second of slack.
    assert!(took >= Duration::from_secs(4), "refused after {took:?}, not after the pool's timeout of 5 s: {got:?}");
}

/// A node killed holding a task while Redis is out of memory (review30b L4): the driver
/// takes the task back and its new entry is refused for memory. It waits, as a task just
/// submitted does (the pool's `timeout`), and runs once memory is back; it used to fail
/// at once, `Refused` naming `OOM`.
#[test]
fn a_task_taken_back_while_redis_is_full_waits_and_runs_once_memory_is_back() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&["--maxmemory-policy", "noeviction"]) else { return };
    let mut doomed = Node::start(&redis.url);
    let pool =
        pool_with(&redis.url, 1, test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(30)));
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    let mut r = pool.apply_async(sleep_ms, 2000).unwrap();
    let tasks = redis.mp_keys().into_iter().find(|k| k.ends_with(":tasks")).unwrap();
    // Taken by the node: pending in the group.
    assert!(eventually(Duration::from_secs(30), || {
        let pending = redis.raw(&[b"XPENDING", tasks.as_bytes(), b"nodes"]);
        pending.starts_with(b"*4\r\n:1\r\n")
    }));
    fill(&redis);
    doomed.kill();
    // Several leases: the driver takes the task back and its requeue is refused.
    std::thread::sleep(Duration::from_secs(3));
    empty(&redis);
    assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"maxmemory", b"0"]), b"+OK\r\n");
    let _node = Node::start(&redis.url);
    let got = r.get_timeout(Duration::from_secs(60));
    assert!(matches!(got, Ok(2000)), "a task taken back while Redis was full: {got:?}");
}

/// A Lua loop of `ms` milliseconds, run by another client: Redis answers everyone else
/// `BUSY` meanwhile (past its `busy-reply-threshold`).
const BUSY_LOOP: &[u8] = b"local s = redis.call('TIME') \
    while true do \
      local n = redis.call('TIME') \
      if (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > tonumber(ARGV[1]) * 1000 then return 1 end \
    end";

/// A Redis busy with a long script answers `BUSY` to the driver and to a node pushing its
/// result (review30b L6): both wait it out within the pool's `timeout` and the task
/// completes. The driver used to end the pool on the first `BUSY` (a `Refused`).
#[test]
fn a_redis_busy_with_a_long_script_is_waited_out_and_the_task_completes() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&["--busy-reply-threshold", "100"]) else { return };
    // Beats every 0.5 s: one at least (a pipeline, every command refused `BUSY`) meets the
    // busy server, as do the driver's reads (one command).
    let pool =
        pool_with(&redis.url, 1, test_options().lease(Duration::from_millis(1500)).timeout(Duration::from_secs(20)));
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    // The task ends while Redis is busy: its node's push is refused `BUSY` and retried.
    let mut r = pool.apply_async(sleep_ms, 500).unwrap();
    assert_eq!(redis.raw(&[b"EVAL", BUSY_LOOP, b"0", b"2500"]), b":1\r\n");
    let got = r.get_timeout(Duration::from_secs(60));
    assert!(matches!(got, Ok(500)), "a task whose result met a busy Redis: {got:?}");
    assert_eq!(pool.map(square, 0..10u64).unwrap(), (0..10u64).map(square).collect::<Vec<_>>());
}

// --- Runs counted, refusals decided on codes ----------------------------------------------

/// A directory for the run counts of [`counted`], removed on drop.
struct Runs(std::path::PathBuf);

impl Runs {
    fn new() -> Runs {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("multiproc-runs-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Runs(dir)
    }

    fn dir(&self) -> String {
        self.0.display().to_string()
    }

    /// How many times task `key` started.
    fn of(&self, key: u64) -> u64 {
        std::fs::metadata(self.0.join(key.to_string())).map_or(0, |m| m.len())
    }
}

impl Drop for Runs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Counts a run of task `key` in `dir` (a byte more in its file), sleeps `ms`, returns `key`;
/// `pad` only makes the task's message as large as the test needs.
fn counted((dir, key, ms, _pad): (String, u64, u64, Vec<u8>)) -> u64 {
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).open(Path::new(&dir).join(key.to_string())).unwrap();
    f.write_all(b"r").unwrap();
    drop(f);
    std::thread::sleep(Duration::from_millis(ms));
    key
}

/// Redis's `used_memory` (through `redis-cli`).
fn used_memory(redis: &Redis) -> u64 {
    let out = Command::new("redis-cli").arg("-s").arg(redis.socket()).args(["INFO", "memory"]).output().unwrap();
    let info = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = info.lines().find(|l| l.starts_with("used_memory:")).expect("used_memory in INFO");
    line.trim_start_matches("used_memory:").trim().parse().unwrap()
}

/// review30b L3: the driver sends the tasks that waited as one batch, one `ADD_TASKS`
/// script, which Redis takes whole or not at all. Sixteen tasks of 256 KiB (4 MiB) wait
/// while Redis is full; then it has room for 2 MiB (`maxmemory` set from its measured use,
/// held by a 3 MiB filler until the tasks wait, then the filler freed): room for several
/// of them one by one, not for the batch at once. A pipeline of `XADD`s would have its
/// first ones taken and the rest refused: those would run, then be sent again (a second
/// run) or be failed while they ran. Each task here ran exactly once if it succeeded,
/// never if it failed; and the pool goes on.
#[test]
fn a_batch_of_tasks_redis_runs_out_of_memory_inside_is_taken_whole_or_not_at_all() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&["--maxmemory-policy", "noeviction"]) else { return };
    let runs = Runs::new();
    let pool = pool_with(&redis.url, 1, test_options().lease(Duration::from_secs(30)).timeout(Duration::from_secs(3)));
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    let base = used_memory(&redis);
    // 3 MiB held, room for 2 MiB: full.
    let filler = vec![b'x'; 3 << 20];
    assert_eq!(redis.raw(&[b"SET", b"filler", &filler]), b"+OK\r\n");
    let limit = (base + (2 << 20)).to_string();
    assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"maxmemory", limit.as_bytes()]), b"+OK\r\n");
    let pad = vec![7u8; 256 << 10];
    let mut tasks: Vec<_> =
        (0..16u64).map(|key| pool.apply_async(counted, (runs.dir(), key, 0, pad.clone())).unwrap()).collect();
    // Each was refused on its own; now they wait, and the next send is one batch of them all.
    std::thread::sleep(Duration::from_millis(500));
    empty(&redis);
    let outcomes: Vec<_> = tasks.iter_mut().map(|t| t.get_timeout(Duration::from_secs(60))).collect();
    assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"maxmemory", b"0"]), b"+OK\r\n");
    assert_eq!(pool.map(square, 0..10u64).unwrap(), (0..10u64).map(square).collect::<Vec<_>>());
    // A task taken by Redis runs at once on the idle node: its count is final by now.
    std::thread::sleep(Duration::from_secs(1));
    eprintln!("succeeded: {:?}", outcomes.iter().map(Result::is_ok).collect::<Vec<_>>());
    for (key, outcome) in outcomes.iter().enumerate() {
        let key = key as u64;
        match outcome {
            Ok(k) => assert_eq!((*k, runs.of(key)), (key, 1), "task {key} succeeded"),
            Err(multiproc::ResultTimeoutError::Task(TaskError::Cluster(ClusterError::Refused(why)))) => {
                assert!(why.contains("OOM"), "{why}");
                assert_eq!(runs.of(key), 0, "task {key} failed for memory, yet it ran");
            }
            other => panic!("task {key}: {other:?}"),
        }
    }
}

/// review30b L5: a heartbeat whose commands Redis refuses `OOM` and something else (here
/// `NOPERM`: the registry's `SADD` taken from the user by an ACL, checked before memory) is
/// not taken as "out of memory, done": the pool fails its waiting work typed, naming the
/// other refusal, instead of waiting for memory (the timeout here is far longer).
#[test]
fn a_heartbeat_refused_for_memory_and_for_another_reason_is_not_taken_as_out_of_memory() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&["--maxmemory-policy", "noeviction"]) else { return };
    let pool =
        pool_with(&redis.url, 1, test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(60)));
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    // Full first, and the task waiting for memory, before the registry's `SADD` is taken
    // away: a beat refused `NOPERM` alone between the two ended the pool before the task
    // was sent (its `apply_async` failed).
    fill(&redis);
    let mut r = pool.apply_async(square, 3).unwrap();
    assert_eq!(redis.raw(&[b"ACL", b"SETUSER", b"default", b"-sadd"]), b"+OK\r\n");
    match r.get_timeout(Duration::from_secs(30)) {
        Err(multiproc::ResultTimeoutError::Task(TaskError::Cluster(e))) => {
            assert!(e.to_string().to_lowercase().contains("noperm"), "{e}");
        }
        other => panic!("a task while the beat is refused OOM and NOPERM: {other:?}"),
    }
    let after = pool.apply(square, 4);
    assert!(after.as_ref().is_err_and(|e| e.to_string().to_lowercase().contains("noperm")), "{after:?}");
}

/// Another program wrote `mp:pools`, where every pool registers, as a string: a pool is not
/// built (a typed error naming the key, and nothing of it left in Redis); a pool already
/// running fails its waiting work typed at its next beat, naming the key, and so do the
/// calls after. Redis's own answer (`WRONGTYPE Operation against a key holding the wrong
/// kind of value`) names no key.
#[test]
fn a_registry_key_of_another_type_refuses_the_build_and_fails_a_running_pool_typed() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    assert_eq!(redis.raw(&[b"SET", b"mp:pools", b"not a set"]), b"+OK\r\n");
    let built = Pool::builder().cluster(&redis.url).processes(1).cluster_options(test_options()).build();
    let Err(e) = built else { panic!("a pool was built with mp:pools a string") };
    assert!(e.to_string().contains("mp:pools"), "{e}");
    assert_eq!(redis.mp_keys(), ["mp:pools"], "the refused pool's keys are left behind");

    assert_eq!(redis.raw(&[b"DEL", b"mp:pools"]), b":1\r\n");
    let pool = pool(&redis, 1);
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    let mut r = pool.apply_async(sleep_ms, 2000).unwrap();
    assert_eq!(redis.raw(&[b"SET", b"mp:pools", b"not a set"]), b"+OK\r\n");
    match r.get_timeout(Duration::from_secs(30)) {
        Err(multiproc::ResultTimeoutError::Task(TaskError::Cluster(ClusterError::Refused(why)))) => {
            assert!(why.contains("mp:pools"), "{why}");
        }
        other => panic!("a task of a pool whose registry became a string: {other:?}"),
    }
    let after = pool.apply(square, 3);
    assert!(after.as_ref().is_err_and(|e| e.to_string().contains("mp:pools")), "{after:?}");
}

/// The driver, in a child of the family: its reclaims' replies are lost (the fail point
/// `cluster.reclaim.reply`: the `XACK`/`XDEL` ran). Says "started" when task 1 started on
/// its (doomed) node, then reports the task's outcome.
fn drive_with_lost_reclaim_replies((url, dir, report): (String, String, multiproc::Queue<String>)) {
    let pool = pool_with(&url, 1, test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(30)));
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    multiproc::__private::crash_at("fail:cluster.reclaim.reply");
    let mut r = pool.apply_async(counted, (dir.clone(), 1, 1500, Vec::new())).unwrap();
    let path = Path::new(&dir).join("1");
    assert!(eventually(Duration::from_secs(30), || path.exists()));
    report.put("started".into()).unwrap();
    let got = r.get_timeout(Duration::from_secs(60));
    report.put(format!("{got:?}")).unwrap();
}

/// review30b L7: a reclaim whose reply is lost (its commands ran): the task taken back was
/// put back on the driver's queue first, so it is sent again and completes once, and no
/// entry of it is left in the stream.
#[test]
fn a_reclaim_whose_reply_is_lost_loses_no_task_and_leaves_no_entry() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let mut doomed = Node::start(&redis.url);
    let runs = Runs::new();
    multiproc::init();
    let report = multiproc::Queue::<String>::new().unwrap();
    let child =
        multiproc::Process::new(drive_with_lost_reclaim_replies, (redis.url.clone(), runs.dir(), report.clone()))
            .start()
            .unwrap();
    assert_eq!(report.get_timeout(Duration::from_secs(60)).unwrap(), "started");
    doomed.kill();
    // Several leases: the driver takes the task back, and that reply is lost.
    std::thread::sleep(Duration::from_secs(2));
    let _node = Node::start(&redis.url);
    assert_eq!(report.get_timeout(Duration::from_secs(90)).unwrap(), "Ok(1)");
    child.join().unwrap();
    // The killed node's run and the one after: no third.
    assert_eq!(runs.of(1), 2);
}

/// review30b L6: a Redis busy with a script for longer than the pool's lease (2.5 s, lease
/// 600 ms: the node's heartbeat `XCLAIM` is refused `BUSY` as its result's push is, and the
/// driver's alive key, three leases, expires meanwhile). What the user gets: the task's
/// result, once; the task may have run twice (taken back once Redis answers again, before
/// the held result is pushed). The pool goes on.
#[test]
fn a_redis_busy_for_longer_than_the_lease_gives_the_result_once() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&["--busy-reply-threshold", "100"]) else { return };
    let runs = Runs::new();
    let pool =
        pool_with(&redis.url, 1, test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(20)));
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    let mut r = pool.apply_async(counted, (runs.dir(), 1, 500, Vec::new())).unwrap();
    assert_eq!(redis.raw(&[b"EVAL", BUSY_LOOP, b"0", b"2500"]), b":1\r\n");
    let got = r.get_timeout(Duration::from_secs(60));
    assert!(matches!(got, Ok(1)), "a task whose result met a Redis busy for longer than the lease: {got:?}");
    assert_eq!(pool.map(square, 0..10u64).unwrap(), (0..10u64).map(square).collect::<Vec<_>>());
    std::thread::sleep(Duration::from_secs(1));
    let ran = runs.of(1);
    eprintln!("the task ran {ran} time(s)");
    assert!((1..=2).contains(&ran), "ran {ran} times");
    let stats = pool.stats();
    assert_eq!((stats.tasks_done, stats.tasks_failed), (12, 0), "{stats:?}");
}

/// Tasks that outlast a short lease on a healthy node are heartbeated from their start,
/// so they run once: with `max_deliveries(1)` each succeeds. (The node's writer slept up to
/// a second between beats while it had nothing running, so a task that started then went
/// without a heartbeat for up to a second, longer than this 600 ms lease: the driver took
/// it back, and failed it as a lost worker, or ran it again.)
#[test]
fn tasks_outlasting_a_short_lease_on_a_healthy_node_run_once() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let runs = Runs::new();
    let pool = pool_with(&redis.url, 1, test_options().lease(Duration::from_millis(600)).max_deliveries(1));
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    for key in 0..7u64 {
        // Each starts at another moment of the idle node's beats.
        std::thread::sleep(Duration::from_millis(150 * key));
        let got = pool.apply(counted, (runs.dir(), key, 700, Vec::new()));
        assert!(matches!(got, Ok(k) if k == key), "task {key} on a healthy node: {got:?}");
        assert_eq!(runs.of(key), 1, "task {key}");
    }
}

/// The driver, in a child of the family, with the fail point `point` armed until the test
/// says "disarm". Says "sent" once its task waits in the stream (no node runs yet), then
/// reports the task's outcome.
fn drive_with_a_failing_step(
    (url, point, report, control): (String, String, multiproc::Queue<String>, multiproc::Queue<String>),
) {
    let pool = pool_with(&url, 1, test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(30)));
    multiproc::__private::crash_at(&point);
    let mut r = pool.apply_async(square, 3).unwrap();
    report.put("sent".into()).unwrap();
    assert_eq!(control.get_timeout(Duration::from_secs(60)).unwrap(), "disarm");
    multiproc::__private::crash_disarm();
    report.put(format!("{:?}", r.get_timeout(Duration::from_secs(20)))).unwrap();
}

/// review32 C1: the pool's stream deleted under a live driver (as a node does once the
/// alive key expired), and the beat that makes the group again has its reply lost
/// (`cluster.beat.reply`), or the check of which entries are gone after it does
/// (`cluster.resend.reply`; the link drops again, or Redis is busy): the next beats find
/// the stream made, yet the lost task is sent again once a check goes through, and
/// completes. (The check ran only after a beat whose reply said it made the
/// group: the task, in no stream and no PEL, waited for ever.)
#[test]
fn a_task_whose_entry_was_deleted_is_sent_again_after_a_lost_reply() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    multiproc::init();
    for point in ["fail:cluster.resend.reply", "fail:cluster.beat.reply"] {
        let report = multiproc::Queue::<String>::new().unwrap();
        let control = multiproc::Queue::<String>::new().unwrap();
        let args = (redis.url.clone(), point.to_string(), report.clone(), control.clone());
        let child = multiproc::Process::new(drive_with_a_failing_step, args).start().unwrap();
        assert_eq!(report.get_timeout(Duration::from_secs(60)).unwrap(), "sent");
        let tasks = redis.mp_keys().into_iter().find(|k| k.ends_with(":tasks")).unwrap();
        assert!(eventually(Duration::from_secs(20), || redis.raw(&[b"XLEN", tasks.as_bytes()]) == b":1\r\n"));
        assert_eq!(redis.raw(&[b"DEL", tasks.as_bytes()]), b":1\r\n");
        // The next beat makes the stream and its group again, and its reply or the check's
        // after it is lost; so are those of the beats after, which find them made.
        assert!(eventually(Duration::from_secs(20), || redis.raw(&[b"EXISTS", tasks.as_bytes()]) == b":1\r\n"));
        std::thread::sleep(Duration::from_millis(500));
        control.put("disarm".into()).unwrap();
        let mut node = Node::start(&redis.url);
        assert_eq!(report.get_timeout(Duration::from_secs(60)).unwrap(), "Ok(9)", "{point}");
        child.join().unwrap();
        node.kill();
    }
}

/// Disarms the crash points on drop (a failed assertion lets a held driver thread go).
struct Disarm;

impl Drop for Disarm {
    fn drop(&mut self) {
        multiproc::__private::crash_disarm();
    }
}

/// Runs `redis-cli` on the server at `socket`; returns its output.
fn redis_cli(socket: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(["-s", socket]).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Keeps the one pool of the Redis at `socket` from being taken for gone while its driver
/// thread is held (it beats on that thread): its alive key and its stream lose their expiry,
/// which the driver's next beat sets again. A hold in a test that leans on the lease's
/// timing would otherwise last less than the alive key's life (three leases) only on an
/// unloaded machine: after it a node deletes the pool's keys (review39 M1).
fn keep_the_pool_while_held(socket: &str) {
    let id = redis_cli(socket, &["SMEMBERS", "mp:pools"]);
    for key in ["alive", "tasks"] {
        let key = format!("mp:{{p:{id}}}:{key}");
        assert_eq!(redis_cli(socket, &["PERSIST", &key]), "1", "{key} expired before the hold, or has no expiry");
    }
}

/// The driver of [`a_trim_after_the_results_keys_were_deleted_removes_no_unread_result`], in a
/// child of the family (its hold point then holds no other test's driver): Redis at `url`
/// (its socket, its pid). Reports the outcome of the task whose result waits in the new list.
fn drive_across_a_results_key_loss((url, socket, pid, report): (String, String, u32, multiproc::Queue<String>)) {
    let signal = |name: &str| assert!(Command::new("kill").args([name, &pid.to_string()]).status().unwrap().success());
    let pool = pool_with(&url, 1, test_options().lease(Duration::from_secs(30)).timeout(Duration::from_secs(10)));
    let held = || eventually(Duration::from_secs(20), || multiproc::__private::crash_holding() >= 1);
    // Dropped before the pool, whose drop waits for the driver thread: a failure is not a hang.
    let _disarm = Disarm;
    // The driver is held before its read while the first result waits in the list.
    multiproc::__private::crash_at("hold:cluster.pool.read");
    assert!(held());
    let mut first = pool.apply_async(square, 2).unwrap();
    let keys = redis_cli(&socket, &["--scan", "--pattern", "mp:{p:*}:tasks"]);
    let prefix = keys.trim_end_matches(":tasks");
    let (key, trimmed) = (format!("{prefix}:results"), format!("{prefix}:trimmed"));
    let results = || multiproc::__private::cluster_pool_results(&url, &key).unwrap();
    assert!(eventually(Duration::from_secs(20), || results().len() == 1), "the result is not waiting in the list");
    // Exactly that read goes through (it waits for the stopped Redis), the next is held.
    signal("-STOP");
    multiproc::__private::crash_disarm();
    assert!(eventually(Duration::from_secs(20), || multiproc::__private::crash_holding() == 0));
    multiproc::__private::crash_at("hold:cluster.pool.read");
    signal("-CONT");
    assert_eq!(first.get_timeout(Duration::from_secs(20)), Ok(4));
    assert!(held());
    // A second result waits behind the first, which the held read is to trim.
    let mut second = pool.apply_async(square, 5).unwrap();
    assert!(eventually(Duration::from_secs(20), || results().len() == 2), "the result is not waiting in the list");
    let unread = results()[1].clone();
    // The list and its count are gone; the node's result is in a new list.
    redis_cli(&socket, &["DEL", &key, &trimmed]);
    assert!(results().is_empty());
    multiproc::__private::cluster_pool_push(&url, &key, &unread).unwrap();
    multiproc::__private::crash_disarm();
    report.put(format!("{:?}", second.get_timeout(Duration::from_secs(20)))).unwrap();
    assert_eq!(pool.apply(square, 6).unwrap(), 36);
}

/// review32 C4: the driver's last read counted `n` results and saw the trimmed count of its
/// pool's start; then the pool's results list and trimmed count are deleted (as the nodes
/// delete a pool's keys, or as they expire), and a node's result is pushed to the new
/// list. The read after, which sends the trim of the last one, removes no result of the
/// new list, which nobody read. (The missing count read as 0, the count of a pool's start,
/// and `LTRIM` removed the new result: its entry already deleted by the node's push, the
/// task waited for ever.)
#[test]
fn a_trim_after_the_results_keys_were_deleted_removes_no_unread_result() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let reported = drive_in_a_child(drive_across_a_results_key_loss, |report| {
        (redis.url.clone(), redis.socket().display().to_string(), redis.pid, report)
    });
    assert_eq!(reported, "Ok(25)");
}

/// The driver of [`a_result_pushed_while_the_alive_key_is_gone_is_kept_for_the_driver`], in a
/// child of the family (its hold point its own): Redis at `url` (its socket), the node's pid
/// (stopped at each push of a result, `stop:cluster.node.put`). Reports the task's outcome.
fn drive_while_the_alive_key_goes(
    (url, socket, node, dir, report): (String, String, u32, String, multiproc::Queue<String>),
) {
    let go_on = || assert!(Command::new("kill").args(["-CONT", &node.to_string()]).status().unwrap().success());
    // A long lease: the node's entry goes without heartbeats while the node is stopped (and
    // the test's steps take their time on a loaded machine).
    let options = test_options().lease(Duration::from_secs(20)).max_deliveries(1).timeout(Duration::from_secs(10));
    let pool = pool_with(&url, 1, options);
    let _disarm = Disarm;
    let mut r = pool.apply_async(counted, (dir, 1, 0, Vec::new())).unwrap();
    // The node has the result, and stops before its push.
    assert!(eventually(Duration::from_secs(20), || common::pid_stopped(node)), "the node did not stop at its push");
    // The driver beats no more; its alive key goes, before any node sees the pool without it
    // (it is out of the registry too, until the driver's next beat).
    multiproc::__private::crash_at("hold:cluster.pool.read");
    assert!(eventually(Duration::from_secs(20), || multiproc::__private::crash_holding() >= 1));
    let id = redis_cli(&socket, &["SMEMBERS", "mp:pools"]);
    let alive = format!("mp:{{p:{id}}}:alive");
    assert_eq!(redis_cli(&socket, &["DEL", &alive]), "1");
    assert_eq!(redis_cli(&socket, &["SREM", "mp:pools", &id]), "1");
    go_on();
    // A node that keeps the result pushes it again, and stops there again.
    let again = eventually(Duration::from_secs(5), || common::pid_stopped(node));
    eprintln!("the node tried its push again: {again}");
    multiproc::__private::crash_disarm();
    assert!(eventually(Duration::from_secs(20), || redis_cli(&socket, &["EXISTS", &alive]) == "1"));
    // Continued at each stop: the node may try its push more than once (it stops before
    // each; before `Link` went on after `EINTR`, the first push after a `SIGCONT` failed).
    let done = eventually(Duration::from_secs(60), || {
        if common::pid_stopped(node) {
            go_on();
        }
        r.ready()
    });
    assert!(done, "the task did not complete");
    report.put(format!("{:?}", r.get_timeout(Duration::from_secs(1)))).unwrap();
}

/// review32 C2: a node's push of a finished result finds the driver's alive key gone while
/// the driver lives (stalled, or cut off, for its keys' expiry), before any node deleted the
/// pool's keys. The node keeps the result, its entry heartbeated, and pushes it once the
/// driver beats again: under `max_deliveries(1)` the task succeeds, and ran once. (The
/// result was dropped and the entry left to the reclaim, which counted a delivery: the task
/// failed `WorkerLost`, no worker lost.)
#[test]
fn a_result_pushed_while_the_alive_key_is_gone_is_kept_for_the_driver() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let exe = std::env::current_exe().unwrap();
    let node = Node::start_exe_with(&exe, &redis.url, &[("MULTIPROC_CRASH_AT", "stop:cluster.node.put")]);
    let runs = Runs::new();
    let reported = drive_in_a_child(drive_while_the_alive_key_goes, |report| {
        (redis.url.clone(), redis.socket().display().to_string(), node.child.id(), runs.dir(), report)
    });
    assert_eq!(reported, "Ok(1)");
    assert_eq!(runs.of(1), 1);
}

/// Another program wrote the pool's results list as a string: the pool ends at its next
/// read, its waiting work failed typed, naming the key (Redis's answer names none).
#[test]
fn a_results_key_of_another_type_fails_the_pool_naming_it() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let pool = pool(&redis, 1);
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    let mut r = pool.apply_async(sleep_ms, 1000).unwrap();
    let tasks = redis.mp_keys().into_iter().find(|k| k.ends_with(":tasks")).unwrap();
    let results = format!("{}:results", tasks.trim_end_matches(":tasks"));
    assert_eq!(redis.raw(&[b"SET", results.as_bytes(), b"not a list"]), b"+OK\r\n");
    match r.get_timeout(Duration::from_secs(30)) {
        Err(multiproc::ResultTimeoutError::Task(TaskError::Cluster(ClusterError::Refused(why)))) => {
            assert!(why.contains(&results), "{why}");
        }
        other => panic!("a task of a pool whose results list became a string: {other:?}"),
    }
}

/// The test role of a worker node that logs its warnings to stderr. A no-op in a normal run.
/// The driver of [`a_push_onto_a_results_key_of_another_type_leaves_the_task_to_be_run_again`],
/// in a child of the family (its hold point its own): Redis at `url` (its socket), the
/// node's pid (stopped at each push of a result, `stop:cluster.node.put`). Reports the
/// task's outcome.
fn drive_while_the_results_key_is_of_another_type(
    (url, socket, node, dir, report): (String, String, u32, String, multiproc::Queue<String>),
) {
    let go_on = || assert!(Command::new("kill").args(["-CONT", &node.to_string()]).status().unwrap().success());
    // The pushes refused: the script's `LLEN` of the results key failed (one per push; the
    // errors' own count is two per push, the caught `LLEN`'s and the script's reply).
    let refusals = || {
        let stats = redis_cli(&socket, &["INFO", "commandstats"]);
        let line = stats.lines().find_map(|line| line.strip_prefix("cmdstat_llen:"));
        line.and_then(|l| l.split(',').find_map(|f| f.strip_prefix("failed_calls=")))
            .map_or(0, |count| count.trim().parse::<u32>().unwrap())
    };
    let pool = pool_with(&url, 1, test_options().lease(Duration::from_secs(2)).timeout(Duration::from_secs(10)));
    let _disarm = Disarm;
    // The driver is held before its read (which would end the pool on the key of another
    // type) while the node pushes.
    multiproc::__private::crash_at("hold:cluster.pool.read");
    assert!(eventually(Duration::from_secs(20), || multiproc::__private::crash_holding() >= 1));
    keep_the_pool_while_held(&socket);
    let mut r = pool.apply_async(counted, (dir, 1, 0, Vec::new())).unwrap();
    assert!(eventually(Duration::from_secs(20), || common::pid_stopped(node)), "the node did not stop at its push");
    let tasks = redis_cli(&socket, &["--scan", "--pattern", "mp:{p:*}:tasks"]);
    let results = format!("{}:results", tasks.trim_end_matches(":tasks"));
    assert_eq!(redis_cli(&socket, &["SET", &results, "another program's"]), "OK");
    // The push of the result is refused, then that of its failure: the node gives it up.
    go_on();
    assert!(eventually(Duration::from_secs(20), || common::pid_stopped(node)), "the node did not push its failure");
    go_on();
    assert!(eventually(Duration::from_secs(20), || refusals() == 2), "the node's pushes were not refused");
    // The key is the pool's again before the driver reads it.
    assert_eq!(redis_cli(&socket, &["DEL", &results]), "1");
    multiproc::__private::crash_disarm();
    // Continued at each stop (the task's next run pushes its result).
    let done = eventually(Duration::from_secs(60), || {
        if common::pid_stopped(node) {
            go_on();
        }
        r.ready()
    });
    report.put(if done { format!("{:?}", r.get_timeout(Duration::from_secs(1))) } else { "not done".into() }).unwrap();
}

/// A node's push of a result onto a results key of another type (another program wrote it
/// there, and took it back before the driver read it) is refused before the task's entry
/// goes: the node gives the result up, its entry is taken back after the lease, and the
/// task runs again and completes. (The entry was acknowledged and deleted before the push
/// failed: the task waited for ever.)
#[test]
fn a_push_onto_a_results_key_of_another_type_leaves_the_task_to_be_run_again() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let exe = std::env::current_exe().unwrap();
    let node = Node::start_exe_with(&exe, &redis.url, &[("MULTIPROC_CRASH_AT", "stop:cluster.node.put")]);
    let runs = Runs::new();
    let reported = drive_in_a_child(drive_while_the_results_key_is_of_another_type, |report| {
        (redis.url.clone(), redis.socket().display().to_string(), node.child.id(), runs.dir(), report)
    });
    assert_eq!(reported, "Ok(1)");
    assert_eq!(runs.of(1), 2);
}

#[test]
fn cluster_node_role() {
    let Ok(url) = std::env::var(NODE_ROLE) else { return };
    multiproc::init();
    multiproc::log_to_stderr(log::LevelFilter::Warn).unwrap();
    if let Some(dir) = std::env::var_os(HOLD_READS) {
        std::thread::spawn(move || hold_reads(Path::new(&dir)));
    }
    if let Some(dir) = std::env::var_os(HOLD_CONFIRM) {
        std::thread::spawn(move || hold_at(Path::new(&dir), "hold:cluster.node.confirm"));
    }
    if let Some(dir) = std::env::var_os(HOLD_SPARE) {
        std::thread::spawn(move || hold_at(Path::new(&dir), "hold:cluster.node.spare,hold:cluster.node.lent"));
    }
    let _ = multiproc::cluster::serve(&url, multiproc::cluster::ServeOptions::new().processes(1));
}

/// A node that logs warnings ([`cluster_node_role`]) on the Redis at `url`, with `vars` in
/// its environment, and its stderr's lines.
fn logging_node(url: &str, vars: &[(&str, &str)]) -> (Node, std::sync::mpsc::Receiver<String>) {
    logging_node_in(None, url, vars)
}

/// [`logging_node`], moved into the cgroup `cgroup` (if any) before it runs.
fn logging_node_in(
    cgroup: Option<&Path>,
    url: &str,
    vars: &[(&str, &str)],
) -> (Node, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut command = match cgroup {
        Some(cgroup) => {
            let mut sh = Command::new("sh");
            sh.args(["-c", r#"echo $$ > "$CG/cgroup.procs" && exec "$0" "$@""#, "setpriv"]).env("CG", cgroup);
            sh
        }
        None => Command::new("setpriv"),
    };
    let child = command
        .args(["--pdeathsig", "KILL"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "cluster_node_role", "--nocapture", "--test-threads", "1"])
        .env(NODE_ROLE, url)
        .env(KEY_ENV, TEST_KEY)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut node = Node { child };
    let stderr = node.child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (node, rx)
}

/// review67 S-L6: a node whose key is not its drivers' says so in its log, naming the
/// pool, once per pool (not per task): its drivers learn it from their answers, its
/// operator did not learn it at all.
#[test]
fn a_node_refusing_a_pools_tasks_for_their_key_logs_it_once() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let (mut node, rx) = logging_node(&redis.url, &[(KEY_ENV, TEST_KEY)]);
    let pool = pool_with(&redis.url, 1, test_options().authkey("another key than the node's"));
    for x in 0..3 {
        match pool.apply(square, x) {
            Err(multiproc::Error::Task(TaskError::Unauthenticated { .. })) => {}
            got => panic!("a task under another key: {got:?}"),
        }
    }
    let ids = pool_ids(&redis);
    assert_eq!(ids.len(), 1, "{ids:?}");
    // Each warning is written before its answer: all are in the log once the node ends.
    node.kill();
    let warnings: Vec<String> = rx.iter().filter(|line| line.contains("cluster key")).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("WARN") && warnings[0].contains(&ids[0]), "{warnings:?}");
}

/// How many calls of `command` Redis refused before running them (an ACL's `NOPERM`, a
/// replica's `READONLY`). Its line of `INFO commandstats` (there once the command was
/// called or refused) and the line's `rejected_calls` must be there and read: a test that
/// counts refusals must not pass on a count it could not read (review156 L4: read as 0).
fn rejected_calls(redis: &Redis, command: &str) -> u64 {
    let out = Command::new("redis-cli").arg("-s").arg(redis.socket()).args(["INFO", "commandstats"]).output();
    let out = String::from_utf8_lossy(&out.expect("redis-cli runs").stdout).into_owned();
    let head = format!("cmdstat_{command}:");
    let line = out.lines().find_map(|l| l.strip_prefix(&head)).unwrap_or_else(|| panic!("no {head} line in: {out}"));
    let field = line.split(',').find_map(|f| f.strip_prefix("rejected_calls="));
    let field = field.unwrap_or_else(|| panic!("no rejected_calls in {head}{line}"));
    field.trim().parse().unwrap_or_else(|e| panic!("{head}{line}: rejected_calls={field:?} does not read: {e}"))
}

/// A node that an ACL refuses the read of a pool's tasks (`NOPERM` on `XREADGROUP`; its
/// credentials are fine, so the confirming `PING` passes and it does not end) waits between
/// its tries as it waits out Redis away, and says why once a minute, naming the pool.
/// Before, it tried again at once, for ever, and said nothing: a busy loop of two round
/// trips (the read and the `PING`), the node's CPU and Redis's spent on refusals (fix114,
/// found beside item 1: the driver ends typed on the same refusal).
#[test]
fn a_node_refused_the_read_of_a_pools_tasks_waits_between_tries_and_says_why() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let set_user = [&b"ACL"[..], b"SETUSER", b"reader", b"on", b">pw", b"~*", b"&*", b"+@all", b"-xreadgroup"];
    assert_eq!(redis.raw(&set_user), b"+OK\r\n");
    let (mut node, rx) = logging_node(&format!("{}?user=reader&pass=pw", redis.url), &[]);
    let _pool = pool(&redis, 1);
    let id = pool_ids(&redis).pop().expect("the pool registers at its build");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut lines =
        std::iter::from_fn(|| rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())).ok());
    let warned =
        lines.any(|line| line.contains("WARN") && line.contains(&id) && line.to_lowercase().contains("noperm"));
    let before = rejected_calls(&redis, "xreadgroup");
    std::thread::sleep(Duration::from_millis(500));
    let refused = rejected_calls(&redis, "xreadgroup") - before;
    node.kill();
    // About five in half a second now (one a tenth of a second); some twenty thousand before.
    assert!(warned && refused < 50, "warned: {warned}; reads refused in half a second: {refused}");
}

/// review32 C5: a node that cannot read the registry of pools (`mp:pools` written as a
/// string by another program) serves nothing, and says why: a warning naming the key, once
/// a minute, not at each of its tries (every 100 ms). (It said nothing.)
#[test]
fn a_node_that_cannot_read_the_registry_warns_naming_it_once_a_minute() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    assert_eq!(redis.raw(&[b"SET", b"mp:pools", b"not a set"]), b"+OK\r\n");
    let (mut node, rx) = logging_node(&redis.url, &[]);
    let warned = |line: &String| line.contains("mp:pools");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut lines =
        std::iter::from_fn(|| rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())).ok());
    let first = lines.find(warned);
    assert!(first.as_ref().is_some_and(|w| w.contains("WARN")), "{first:?}");
    // Ten tries more.
    std::thread::sleep(Duration::from_secs(1));
    node.kill();
    let more: Vec<String> = rx.try_iter().filter(warned).collect();
    assert!(more.is_empty(), "warned again within the minute: {more:?}");
}

/// The driver of [`results_waiting_when_a_beat_reply_is_lost_are_not_run_again`], in a child
/// of the family (its points its own), on the Redis at `url` (its socket): holds itself (its
/// pool kept while held) while twenty tasks finish (their results wait, unread, their
/// entries deleted by the node's pushes), then loses its beats' replies for a while.
/// Reports "done" when every task has completed.
fn drive_with_lost_beat_replies((url, socket, dir, report): (String, String, String, multiproc::Queue<String>)) {
    // Reads of a few results at a time: most wait in the list after the hold. (The bound
    // is a task's too since audc71: these are about 92 bytes, a result about 12.)
    let options =
        test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(30)).max_message_size(160);
    let pool = pool_with(&url, 1, options);
    let _disarm = Disarm;
    multiproc::__private::crash_at("hold:cluster.pool.read");
    assert!(eventually(Duration::from_secs(20), || multiproc::__private::crash_holding() >= 1));
    keep_the_pool_while_held(&socket);
    let mut tasks: Vec<_> =
        (0..20u64).map(|key| pool.apply_async(counted, (dir.clone(), key, 0, Vec::new())).unwrap()).collect();
    let runs = |key: u64| std::fs::metadata(Path::new(&dir).join(key.to_string())).map_or(0, |m| m.len());
    assert!(eventually(Duration::from_secs(30), || (0..20).all(|key| runs(key) == 1)), "the tasks did not run");
    // Their results are pushed right after they run.
    std::thread::sleep(Duration::from_millis(300));
    multiproc::__private::crash_at("fail:cluster.beat.reply");
    std::thread::sleep(Duration::from_millis(500));
    multiproc::__private::crash_disarm();
    for (key, task) in tasks.iter_mut().enumerate() {
        assert_eq!(task.get_timeout(Duration::from_secs(30)), Ok(key as u64));
    }
    report.put("done".into()).unwrap();
}

/// Beats whose replies are lost (a link that drops, with no key lost): the tasks whose
/// results wait unread, their entries deleted by the nodes' pushes, are not taken as lost
/// and run again. (A check of the entries after every beat whose outcome was unknown sent
/// them all again.)
#[test]
fn results_waiting_when_a_beat_reply_is_lost_are_not_run_again() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let runs = Runs::new();
    let reported = drive_in_a_child(drive_with_lost_beat_replies, |report| {
        (redis.url.clone(), redis.socket().display().to_string(), runs.dir(), report)
    });
    assert_eq!(reported, "done");
    // A task sent again runs at once on the idle node.
    std::thread::sleep(Duration::from_secs(1));
    let again: Vec<u64> = (0..20).filter(|&key| runs.of(key) != 1).collect();
    assert!(again.is_empty(), "tasks run again: {again:?}");
}

/// The driver of [`a_task_finished_in_a_stream_made_again_is_not_sent_again`], in a child of
/// the family (its hold points its own): Redis at `url` (its socket), each round's task
/// counted in `dir`. Reports "done" once every round's task completed.
fn drive_across_a_stream_made_again((url, socket, dir, report): (String, String, String, multiproc::Queue<String>)) {
    let pool = pool_with(&url, 1, test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(10)));
    let _disarm = Disarm;
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    let tasks = redis_cli(&socket, &["--scan", "--pattern", "mp:{p:*}:tasks"]);
    let held = || eventually(Duration::from_secs(20), || multiproc::__private::crash_holding() >= 1);
    for key in 0..3u64 {
        // The driver thread held before its read, the stream goes (as a node deletes a
        // pool's keys after its alive key expired), and a task is sent: its batch makes the
        // stream again, before the driver thread's next beat.
        multiproc::__private::crash_at("hold:cluster.pool.read");
        assert!(held());
        assert_eq!(redis_cli(&socket, &["DEL", &tasks]), "1");
        let mut r = pool.apply_async(counted, (dir.clone(), key, 0, Vec::new())).unwrap();
        // The driver thread goes on to its next beat, and is held before the check after it,
        // while the node runs the task and pushes its result (deleting its entry; the
        // result may wait unread).
        multiproc::__private::crash_at("hold:cluster.pool.check");
        let runs = || std::fs::metadata(Path::new(&dir).join(key.to_string())).map_or(0, |m| m.len());
        assert!(eventually(Duration::from_secs(20), || runs() == 1), "round {key}: the task did not run");
        assert!(
            eventually(Duration::from_secs(20), || redis_cli(&socket, &["XLEN", &tasks]) == "0"),
            "round {key}: the result is not pushed (its entry is in the stream)"
        );
        assert!(held());
        multiproc::__private::crash_disarm();
        assert_eq!(r.get_timeout(Duration::from_secs(20)), Ok(key));
    }
    report.put("done".into()).unwrap();
}

/// review32 C3: the pool's stream goes while the driver lives (a node deleted its keys),
/// and a submitter's batch makes it again before the driver thread's next beat; a node runs
/// the task and pushes its result (deleting its entry) before the driver's check of its
/// entries after that beat. The task, finished, is not taken as lost and sent again: it
/// runs once. (An entry missing from the stream was taken as lost whenever the group had
/// been made anew since the last check.)
#[test]
fn a_task_finished_in_a_stream_made_again_is_not_sent_again() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let runs = Runs::new();
    let reported = drive_in_a_child(drive_across_a_stream_made_again, |report| {
        (redis.url.clone(), redis.socket().display().to_string(), runs.dir(), report)
    });
    assert_eq!(reported, "done");
    // A task sent again runs at once on the idle node.
    std::thread::sleep(Duration::from_secs(1));
    let again: Vec<u64> = (0..3).filter(|&key| runs.of(key) != 1).collect();
    assert!(again.is_empty(), "tasks run again: {again:?}");
}

/// The stream's birth tag (`born-<tag>`, a consumer of its group) is gone while Redis is
/// out of memory (deleted by another program; the scripts that make a stream make it at
/// once): the driver's check, which makes it again, is refused `OOM` and tried at the next
/// beats; it is made once memory is back, and the pool goes on. (Its forerunner, the mark
/// `checked-<pool id>`, ended the pool when refused.)
#[test]
fn a_birth_tag_lost_while_redis_is_full_is_made_again_once_memory_is_back() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&["--maxmemory-policy", "noeviction"]) else { return };
    let pool =
        pool_with(&redis.url, 1, test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(5)));
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    let tasks = redis.mp_keys().into_iter().find(|k| k.ends_with(":tasks")).unwrap();
    let consumers =
        || String::from_utf8_lossy(&redis.raw(&[b"XINFO", b"CONSUMERS", tasks.as_bytes(), b"nodes"])).to_string();
    let born = || consumers().lines().find(|line| line.starts_with("born-")).map(str::to_string);
    let tag = born().expect("the stream has no birth tag");
    fill(&redis);
    assert_eq!(redis.raw(&[b"XGROUP", b"DELCONSUMER", tasks.as_bytes(), b"nodes", tag.as_bytes()]), b":0\r\n");
    // Beats while Redis is full: each checks, and the tag it makes is refused.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(born(), None, "a birth tag made while Redis is full");
    empty(&redis);
    assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"maxmemory", b"0"]), b"+OK\r\n");
    assert!(eventually(Duration::from_secs(20), || born().is_some()), "the birth tag is not made again");
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
}

/// The stream's birth tag is deleted by another program while tasks are in flight (it
/// never reads, so a clean-up of idle consumers takes it): the driver's check makes it
/// again with the tag it knew, since an entry added under that tag is still in the stream,
/// and no task runs twice. (The check made a new tag, and every task in flight, now of
/// another birth, was sent again: each ran twice.)
#[test]
fn a_birth_tag_deleted_by_another_program_runs_no_task_twice() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let pool = pool_with(&redis.url, 1, test_options().lease(Duration::from_secs(3)));
    let runs = Runs::new();
    let mut results: Vec<_> =
        (0..3u64).map(|key| pool.apply_async(counted, (runs.dir(), key, 2000, Vec::new())).unwrap()).collect();
    assert!(eventually(Duration::from_secs(20), || runs.of(0) == 1), "the first task did not start");
    let tasks = redis.mp_keys().into_iter().find(|k| k.ends_with(":tasks")).unwrap();
    let consumers = redis.raw(&[b"XINFO", b"CONSUMERS", tasks.as_bytes(), b"nodes"]);
    let consumers = String::from_utf8_lossy(&consumers).to_string();
    let tag = consumers.lines().find(|line| line.starts_with("born-")).expect("the stream has no birth tag");
    assert_eq!(redis.raw(&[b"XGROUP", b"DELCONSUMER", tasks.as_bytes(), b"nodes", tag.as_bytes()]), b":0\r\n");
    for (key, r) in (0..3u64).zip(&mut results) {
        assert_eq!(r.get_timeout(Duration::from_secs(30)), Ok(key));
    }
    // A task sent again runs at once on the idle node.
    std::thread::sleep(Duration::from_secs(1));
    let again: Vec<u64> = (0..3).filter(|&key| runs.of(key) != 1).collect();
    assert!(again.is_empty(), "tasks run again: {again:?}");
}

/// A pool whose driver and node are a user limited to what the module documentation lists
/// maps as any other. Its results' push checked the results key's type with `TYPE`, which
/// that user may not run (review36 H1): every push was refused, and every task taken back
/// after its lease, again and again.
#[test]
fn a_pool_of_a_user_limited_to_the_documented_acl_maps() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[&common::redis::MP_USER[..], &["+@stream"]].concat()) else { return };
    let url = format!("{}?user=worker&pass=pw", redis.url);
    let _node = Node::start(&url);
    let options = test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(2)).max_deliveries(2);
    let pool = pool_with(&url, 2, options);
    assert_eq!(pool.map(square, 0..8).unwrap(), [0, 1, 4, 9, 16, 25, 36, 49]);
}

/// A node whose user may acknowledge and delete the task's entry but not push its result
/// (an ACL that allows `XACK`, not `RPUSH`) loses no task: the push is refused before the
/// entry goes, and the driver takes the entry back after the lease and, its deliveries
/// spent, fails the task. (`PUT_RESULT` acknowledged and deleted the entry, then its
/// `RPUSH` was refused: a script's writes are not undone. No entry and no result: the task
/// waited for ever.)
#[test]
fn a_node_that_may_acknowledge_but_not_push_loses_no_task() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let set_user = [&b"ACL"[..], b"SETUSER", b"pusher", b"on", b">pw", b"~*", b"&*", b"+@all", b"-rpush"];
    assert_eq!(redis.raw(&set_user), b"+OK\r\n");
    let _node = Node::start(&format!("{}?user=pusher&pass=pw", redis.url));
    let pool = pool_with(&redis.url, 1, test_options().lease(Duration::from_millis(600)).max_deliveries(1));
    let got = pool.apply_async(square, 3).unwrap().get_timeout(Duration::from_secs(30));
    assert!(matches!(got, Err(multiproc::ResultTimeoutError::Task(TaskError::WorkerLost { .. }))), "{got:?}");
}

/// A node whose local pool gave up on its workers (review70: it kept claiming tasks and
/// failed each for good, where a healthy node could have run them) leaves the task (since
/// review80 M1 it takes none before a worker answered) and ends: the task runs on a
/// healthy node.
#[test]
fn a_node_whose_workers_cannot_start_leaves_its_tasks_to_others_and_ends() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let mut broken = Node::start_exe_with(&std::env::current_exe().unwrap(), &redis.url, &[(NO_BOOT, "1")]);
    let pool = pool(&redis, 1);
    let mut task = pool.apply_async(square, 3).unwrap();
    let ended = ends_unanswered(&mut broken, &mut task, "neither ended", "the task was answered by the broken node");
    assert_eq!(ended.and_then(|status| status.code()), Some(1), "the broken node ends, failed");
    let _healthy = Node::start(&redis.url);
    assert_eq!(task.get_timeout(Duration::from_secs(60)), Ok(9));
}

/// A node whose local pool stops starting workers after it served (its one worker killed by
/// a task, none booting after) hands back the task it holds, and ends: the task runs on a
/// healthy node. Since review80 M1 the only way a node hands back.
#[test]
fn a_node_whose_workers_stop_starting_hands_back_its_tasks_and_ends() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let pool = pool_with(&redis.url, 1, test_options().lease(Duration::from_millis(600)).max_deliveries(2));
    let killer = pool.apply_async(poison, 0).unwrap();
    let mut task = pool.apply_async(square, 3).unwrap();
    let first = redis.dir.join("first-boot");
    let (mut broken, lines) = logging_node(&redis.url, &[(ONE_BOOT, first.to_str().unwrap())]);
    ends_unanswered(&mut broken, &mut task, "neither ended", "the task was answered by the broken node");
    // (Read until found, or the node's stderr closes.)
    assert!(lines.iter().any(|line| line.contains("handing back")), "the node ended without handing back");
    let _healthy = Node::start(&redis.url);
    assert_eq!(task.get_timeout(Duration::from_secs(60)), Ok(9));
    drop(killer);
}

/// A node whose local pool can start no worker now (none lives, and the system refuses a
/// new process: its pids cgroup full) hands back the task it holds and ends, as for
/// `WorkersCannotStart`: the task runs on a healthy node (review80 L4: the node sent the
/// pool's `Panicked("cannot start a worker: …")` as the task's result, for good).
#[test]
fn a_node_that_cannot_fork_a_worker_hands_back_its_tasks_and_ends() {
    let _w = watchdog(LIMIT);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: a pids cgroup of our own needs root");
        return;
    }
    let Some(redis) = Redis::start(&[]) else { return };
    let cgroup = std::path::PathBuf::from(format!("/sys/fs/cgroup/pids/multiproc-cluster-test-{}", std::process::id()));
    if std::fs::create_dir(&cgroup).is_err() {
        eprintln!("skipped: cannot make a pids cgroup");
        return;
    }
    let _guard = RemoveCgroup(cgroup.clone());
    let pool = pool_with(&redis.url, 1, test_options().lease(Duration::from_millis(600)).max_deliveries(2));
    let killer = pool.apply_async(poison_on_cue, 0).unwrap();
    let mut task = pool.apply_async(square, 3).unwrap();
    let tasks = redis.mp_keys().into_iter().find(|k| k.ends_with(":tasks")).unwrap();
    let cue = redis.dir.join("cue");
    let (mut broken, lines) = logging_node_in(Some(&cgroup), &redis.url, &[(CUE, cue.to_str().unwrap())]);
    let pending = || redis.raw(&[b"XPENDING", tasks.as_bytes(), b"nodes"]);
    assert!(eventually(Duration::from_secs(60), || pending().starts_with(b"*4\r\n:2\r\n")), "not both taken");
    // No new process or thread in the node's cgroup from now on, not even in the room the
    // killed worker leaves.
    let current: u64 = std::fs::read_to_string(cgroup.join("pids.current")).unwrap().trim().parse().unwrap();
    std::fs::write(cgroup.join("pids.max"), (current - 1).to_string()).unwrap();
    std::fs::write(&cue, "").unwrap();
    ends_unanswered(&mut broken, &mut task, "neither ended", "the task was answered by the node");
    std::fs::write(cgroup.join("pids.max"), "max").unwrap();
    assert!(lines.iter().any(|line| line.contains("handing back")), "the node ended without handing back");
    let _healthy = Node::start(&redis.url);
    assert_eq!(task.get_timeout(Duration::from_secs(60)), Ok(9));
    drop(killer);
    drop(broken);
    assert!(eventually(Duration::from_secs(10), || std::fs::remove_dir(&cgroup).is_ok()), "the cgroup empties");
}

/// Lifts a test's pids cgroup's limit and removes it once empty, also when the test panics.
struct RemoveCgroup(std::path::PathBuf);

impl Drop for RemoveCgroup {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::write(self.0.join("pids.max"), "max");
            eventually(Duration::from_secs(10), || std::fs::remove_dir(&self.0).is_ok());
        }
    }
}

/// The consumer of a node that died goes from its pool's group once it holds nothing: a
/// live node deletes it (review80 L9: one consumer per node start piled up in each group).
#[test]
fn a_dead_nodes_consumer_leaves_the_group() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let pool = pool(&redis, 1);
    let mut dead = Node::start(&redis.url);
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    let tasks = redis.mp_keys().into_iter().find(|k| k.ends_with(":tasks")).unwrap();
    let name = format!(":{}\r\n", dead.child.id());
    let consumers =
        || String::from_utf8_lossy(&redis.raw(&[b"XINFO", b"CONSUMERS", tasks.as_bytes(), b"nodes"])).into_owned();
    assert!(consumers().contains(&name), "the node has no consumer: {}", consumers());
    dead.kill();
    let _live = Node::start(&redis.url);
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
    assert!(eventually(Duration::from_secs(60), || !consumers().contains(&name)), "{}", consumers());
}

/// review84 L7: the consumer of a node on a host named `born-…` is swept as any other;
/// only the stream's birth tag (`born-` and 16 hex digits) is kept. Before, every name
/// starting `born-` was kept, and such a host's dead nodes' consumers piled up.
#[test]
fn a_consumer_named_born_but_no_birth_tag_is_swept() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let pool = pool(&redis, 1);
    let _live = Node::start(&redis.url);
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    let tasks = redis.mp_keys().into_iter().find(|k| k.ends_with(":tasks")).unwrap();
    let host = b"born-host:4242";
    redis.raw(&[b"XGROUP", b"CREATECONSUMER", tasks.as_bytes(), b"nodes", host]);
    let consumers =
        || String::from_utf8_lossy(&redis.raw(&[b"XINFO", b"CONSUMERS", tasks.as_bytes(), b"nodes"])).into_owned();
    assert!(consumers().contains("born-host:4242"), "{}", consumers());
    assert!(eventually(Duration::from_secs(60), || !consumers().contains("born-host:4242")), "{}", consumers());
    let birth = consumers().lines().any(|line| {
        line.strip_prefix("born-").is_some_and(|tag| tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    assert!(birth, "the birth tag was swept: {}", consumers());
}

/// `cluster::serve` refuses more local workers than the system can run, before any starts
/// (review81 L2: the check was `Pool`'s build's, and a node forked until the system
/// refused).
#[test]
fn a_node_of_more_workers_than_the_system_runs_is_refused() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let options = multiproc::cluster::ServeOptions::new().processes(1 << 40).authkey(TEST_KEY);
    let got = multiproc::cluster::serve(&redis.url, options);
    assert!(matches!(got, Err(multiproc::Error::Pool(PoolError::TooManyWorkers { .. }))), "{got:?}");
}

/// A node whose local worker's boot hangs says so in its log (review81 L1: it waited for
/// its first answer in silence, taking nothing), and takes no task.
#[test]
fn a_node_whose_worker_boot_hangs_says_so() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let pool = pool(&redis, 1);
    let mut task = pool.apply_async(square, 3).unwrap();
    let (_hung, lines) = logging_node(&redis.url, &[(HANG_BOOT, "1")]);
    let line = lines.iter().find(|line| line.contains("has answered")).expect("the node ended without a word");
    assert!(line.contains("no local worker of this node has answered yet"), "{line}");
    assert!(!task.ready(), "the task was answered: {:?}", task.get_timeout(Duration::ZERO));
}

/// Set in a node's environment (`cluster_node_role`) to a directory: once the file `arm` is
/// there, the node's reader is held before its next read (crash point `cluster.node.read`;
/// the node prints `HELD` when it is), until the file `release` is there.
const HOLD_READS: &str = "MULTIPROC_TEST_CLUSTER_HOLD_READS";

fn hold_reads(dir: &Path) {
    hold_at(dir, "hold:cluster.node.read");
}

/// Set in a node's environment to a directory: the node's writer is held where its push is
/// about to confirm a refusal on a fresh connection (`hold_at`; a beat's is not held).
const HOLD_CONFIRM: &str = "MULTIPROC_TEST_CLUSTER_HOLD_CONFIRM";

/// Set in a node's environment to a directory: the node's writer, refused for good with no
/// connection lent yet, is held before it looks whether the reader stopped, and the reader
/// once it lent its connection and stopped (`hold_at`; `HELD` once both are).
const HOLD_SPARE: &str = "MULTIPROC_TEST_CLUSTER_HOLD_SPARE";

/// Arms the points `points` (`hold:NAME`, comma-separated) once the file `arm` appears in
/// `dir`, says `HELD` on stderr once a thread is held at each, and lets them go once the
/// file `release` appears.
fn hold_at(dir: &Path, points: &str) {
    let appear = |name: &str| {
        while !dir.join(name).exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    appear("arm");
    multiproc::__private::crash_at(points);
    let count = points.split(',').count();
    while multiproc::__private::crash_holding() < count && !dir.join("release").exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("HELD");
    appear("release");
    multiproc::__private::crash_disarm();
}

/// Set in a node's environment to a file: [`poison_on_cue`] waits for it.
const CUE: &str = "MULTIPROC_TEST_CLUSTER_CUE";

/// Kills its worker once the file [`CUE`] names is there.
fn poison_on_cue(_: u64) -> u64 {
    let cue = std::env::var_os(CUE).expect("a cue");
    while !Path::new(&cue).exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::process::abort()
}

/// A node whose pool breaks while its reader is about to read takes no task it handed back
/// again. The hand-back let the driver add the task again at once, and the read in flight
/// took it again and handed it back a second time: a second delivery spent, so with
/// `max_deliveries(2)` the task failed `WorkerLost` though a healthy node came.
/// `a_node_whose_workers_stop_starting_hands_back_its_tasks_and_ends` failed so in whole-file
/// runs, now and then; here the reader is held at that step (`HOLD_READS`) until the driver
/// could have added the task again. The node now hands back only once its reader stopped.
#[test]
fn a_node_breaking_while_it_reads_takes_no_task_it_handed_back() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let pool = pool_with(&redis.url, 1, test_options().lease(Duration::from_millis(600)).max_deliveries(2));
    let killer = pool.apply_async(poison_on_cue, 0).unwrap();
    let mut task = pool.apply_async(square, 3).unwrap();
    let tasks = redis.mp_keys().into_iter().find(|k| k.ends_with(":tasks")).unwrap();
    let (first, cue) = (redis.dir.join("first-boot"), redis.dir.join("cue"));
    let vars =
        [(ONE_BOOT, first.to_str().unwrap()), (HOLD_READS, redis.dir.to_str().unwrap()), (CUE, cue.to_str().unwrap())];
    let (mut broken, lines) = logging_node(&redis.url, &vars);
    let pending = || redis.raw(&[b"XPENDING", tasks.as_bytes(), b"nodes"]);
    // Both taken (the killer waits for its cue, the task behind it): the reader waits for
    // room, and is held at its next read.
    assert!(eventually(Duration::from_secs(60), || pending().starts_with(b"*4\r\n:2\r\n")), "not both taken");
    std::fs::write(redis.dir.join("arm"), "").unwrap();
    std::fs::write(&cue, "").unwrap();
    let mut seen = (false, false);
    while seen != (true, true) {
        let line = lines.recv().expect("the node's stderr ended");
        seen.0 |= line.contains("HELD");
        seen.1 |= line.contains("handing back");
    }
    // A few beats of the driver: long enough for it to take a handed-back task back and add
    // it again (nothing pending, one entry in the stream), which it no longer can.
    let again = eventually(Duration::from_secs(3), || {
        pending().starts_with(b"*4\r\n:0\r\n") && redis.raw(&[b"XLEN", tasks.as_bytes()]) == b":1\r\n"
    });
    eprintln!("added again while the reader was held: {again}");
    std::fs::write(redis.dir.join("release"), "").unwrap();
    ends_unanswered(&mut broken, &mut task, "neither ended", "the task was answered by the broken node");
    let _healthy = Node::start(&redis.url);
    assert_eq!(task.get_timeout(Duration::from_secs(60)), Ok(9));
    drop(killer);
}

/// Waits (up to a minute) for the node `broken` to end or `task` to be answered, and says
/// that the node ended first (`neither`: what failed otherwise; `answered`: what the answer
/// means, followed by it): its exit status.
fn ends_unanswered(
    broken: &mut Node,
    task: &mut AsyncResult<u64>,
    neither: &str,
    answered: &str,
) -> Option<ExitStatus> {
    let mut ended = None;
    assert!(
        eventually(Duration::from_secs(60), || {
            ended = broken.child.try_wait().unwrap();
            ended.is_some() || task.ready()
        }),
        "{neither}"
    );
    assert!(!task.ready(), "{answered}: {:?}", task.get_timeout(Duration::ZERO));
    ended
}

/// Nodes whose workers cannot boot take no task: a supervisor restarting them spends no
/// delivery (review80 M1: each start took a batch before its pool had booted a worker,
/// handed it back, and the driver counted a delivery each time, so with one delivery
/// allowed the task failed `WorkerLost` though a healthy node came). The task waits,
/// undelivered, for the healthy node.
#[test]
fn nodes_whose_workers_cannot_start_take_no_task_and_spend_no_delivery() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let options = test_options().lease(Duration::from_millis(600)).max_deliveries(1);
    let pool = pool_with(&redis.url, 1, options);
    let mut task = pool.apply_async(square, 3).unwrap();
    let exe = std::env::current_exe().unwrap();
    for _start in 0..2 {
        let mut broken = Node::start_exe_with(&exe, &redis.url, &[(NO_BOOT, "1")]);
        let ended = ends_unanswered(&mut broken, &mut task, "the broken node did not end", "the task failed meanwhile");
        assert_eq!(ended.and_then(|status| status.code()), Some(1), "the broken node ends, failed");
    }
    let _healthy = Node::start(&redis.url);
    assert_eq!(task.get_timeout(Duration::from_secs(60)), Ok(9));
}

/// The role of [`a_set_user_id_program_trusts_neither_the_worker_nor_the_key_variable`]: a
/// queue opened with no key in code.
#[test]
fn secure_key_role() {
    let Ok(url) = std::env::var(SECURE_ROLE) else { return };
    // A step with a crash point, which the caller armed (review80 L7).
    multiproc::log_to_stderr(log::LevelFilter::Warn).unwrap();
    log::warn!("a line through the crash point logging.name.locked");
    match multiproc::cluster::Queue::<u32>::open(&url, "q") {
        Err(ClusterError::Key(why)) => println!("REFUSED: {why}"),
        other => println!("OPENED: {:?}", other.err()),
    }
}

const SECURE_ROLE: &str = "MULTIPROC_TEST_CLUSTER_SECURE_ROLE";

/// The probe of the same test: whether the kernel runs the copy in secure mode (it does not
/// where the file system is mounted `nosuid`, or under `no_new_privs`).
#[test]
fn secure_probe_role() {
    if std::env::var_os(SECURE_PROBE).is_none() {
        return;
    }
    // SAFETY: getauxval has no preconditions.
    println!("AT_SECURE={}", unsafe { libc::getauxval(libc::AT_SECURE) });
}

const SECURE_PROBE: &str = "MULTIPROC_TEST_CLUSTER_SECURE_PROBE";

/// Removes the directory of the set-user-ID copy, also when the test panics.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// review75 M1: a set-user-ID (or file-capability) program must not take its caller's
/// `MULTIPROC_WORKER` (which made it serve the caller's Redis) nor `MULTIPROC_CLUSTER_KEY`
/// (with which the caller signs the tasks it runs, as the program's user): the test binary,
/// copied and made set-user-ID `nobody` (the kernel runs it in secure mode), started with
/// both, runs its own code (`secure_key_role`), whose queue finds no key. Nor may it take
/// `MULTIPROC_CRASH_AT` (review80 L7): armed by the caller at the point the role's log line
/// passes, it aborted the copy there.
///
/// The copy is `0o4700`: nobody but `nobody` and root can run it (review80 L5: it was
/// `0o4755`, any user could run the test binary as `nobody`). It is removed once started
/// (the running process keeps it), or on a panic before. Where the kernel ignores the bit
/// (`nosuid`, `no_new_privs`) the test says so and is skipped: the copy then serves the
/// Redis of its variable, as any program may, and that said nothing of the library. It is
/// started without `setpriv --pdeathsig`: the kernel clears that signal on a set-user-ID
/// `execve`.
#[test]
fn a_set_user_id_program_trusts_neither_the_worker_nor_the_key_variable() {
    use std::os::unix::fs::PermissionsExt;
    let _w = watchdog(LIMIT);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: making a set-user-ID binary needs root");
        return;
    }
    let Some(redis) = common::machine::TcpRedis::start(&[]) else { return };
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let dir = std::env::temp_dir().join(format!("multiproc-cluster-setuid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let guard = RemoveDir(dir.clone());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join("setuid-copy");
    std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
    if let Err(e) = std::os::unix::fs::chown(&copy, Some(65534), Some(65534)) {
        eprintln!("skipped: the copy cannot be given to nobody (65534): {e}");
        return;
    }
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4700)).unwrap();
    let probe = Command::new(&copy)
        .args(["--exact", "secure_probe_role", "--nocapture", "--test-threads", "1"])
        .env(SECURE_PROBE, "1")
        .env_remove(WORKER_ENV)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // (Read from both streams: the harness's output may go to either.)
    let probed = format!("{}{}", String::from_utf8_lossy(&probe.stdout), String::from_utf8_lossy(&probe.stderr));
    if !probed.contains("AT_SECURE=1") {
        eprintln!(
            "skipped: the kernel does not run the set-user-ID copy in secure mode (nosuid, no_new_privs): {probed}"
        );
        return;
    }
    let mut child = Command::new(&copy)
        .args(["--exact", "secure_key_role", "--nocapture", "--test-threads", "1"])
        .env(WORKER_ENV, &url)
        .env(KEY_ENV, "the caller's key, of sixteen bytes or more")
        .env(SECURE_ROLE, &url)
        .env("MULTIPROC_CRASH_AT", "logging.name.locked")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(guard);
    let ended = eventually(Duration::from_secs(30), || child.try_wait().unwrap().is_some());
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(ended, "the set-user-ID copy served the caller's Redis: {stdout}");
    assert!(
        out.status.success() && stdout.contains("REFUSED:") && stdout.contains("set-user-ID"),
        "{:?}: {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

// --- Redis restarted --------------------------------------------------------------------

/// A map running while Redis is killed and started again (`restarted` with `extra`
/// arguments): it completes, each result once and right, within the pool's timeout; the
/// node comes back to the pool, and once the pool is gone nothing of it stays in Redis.
fn a_map_across_a_restart(extra: &[&str]) {
    let _w = watchdog(LIMIT);
    let Some(mut redis) = Redis::start(extra) else { return };
    let _node = Node::start(&redis.url);
    let options = test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(20));
    let pool = pool_with(&redis.url, 2, options);
    assert_eq!(pool.apply(square, 3).unwrap(), 9, "the node serves");
    let result = pool.map_async_with(sleep_ms, vec![30u64; 60], MapOptions::new().chunksize(1)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    redis.restart();
    assert_eq!(result.get().unwrap(), vec![30u64; 60]);
    assert_eq!(pool.apply(square, 4).unwrap(), 16, "the node serves after the restart");
    drop(pool);
    assert!(eventually(Duration::from_secs(10), || redis.mp_keys().is_empty()), "left behind: {:?}", redis.mp_keys());
}

/// Redis without persistence comes back empty: every key of the pool is gone (its stream,
/// group, results, the registry), as when they expire while the driver is cut off.
#[test]
fn a_map_across_a_redis_restart_without_persistence_completes() {
    a_map_across_a_restart(&[]);
}

/// Redis with an append-only file comes back as it was, with the tasks its group had
/// delivered to the node still pending there.
#[test]
fn a_map_across_a_redis_restart_with_persistence_completes() {
    a_map_across_a_restart(&["--appendonly", "yes", "--appendfsync", "always"]);
}

/// Tasks each well within Redis's bounds that wait together (sent while Redis was away)
/// go in batches whose whole size Redis takes too: here its client eviction
/// (`maxmemory-clients 3mb`) closes the connection on a command of more than about 3 MB,
/// as a server whose query buffer counts the whole command would. Every task is answered
/// and the pool goes on. Before, the driver sent all twelve 300 KiB tasks in one
/// `ADD_TASKS` (3.6 MB) at each try, Redis closed the connection on it each time, and the
/// driver, taking Redis for gone, ended the pool after its timeout.
#[test]
fn tasks_waiting_together_go_in_batches_redis_takes_whole() {
    let _w = watchdog(LIMIT);
    let Some((mut redis, _node)) = cluster(&["--maxmemory-clients", "3mb"]) else { return };
    let options = test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(10));
    let pool = pool_with(&redis.url, 1, options);
    assert_eq!(pool.apply(square, 3).unwrap(), 9, "the node serves");
    redis.kill();
    // Each submission's send fails at once (nothing listens): the tasks wait together.
    let waiting: Vec<_> = (0..12).map(|_| pool.apply_async(length_of, vec![7u8; 300 << 10]).unwrap()).collect();
    redis.restart();
    for (i, mut r) in waiting.into_iter().enumerate() {
        assert_eq!(r.get_timeout(Duration::from_secs(40)), Ok(300 << 10), "task {i}");
    }
    assert_eq!(pool.apply(square, 4).unwrap(), 16, "the pool goes on");
}

/// A Redis restarted with a smaller `proto-max-bulk-len` than the one the driver read at
/// its start (here raised to 64 MiB at run time, and 1 MiB again from its arguments after a
/// restart): the driver reads the bound again on its new connection, a 2 MiB task is
/// refused typed (naming the new bound), and the pool goes on. Before, the driver kept the
/// old bound, sent the task, Redis closed the connection on it at each try, and the driver,
/// taking Redis for gone, ended the pool after its timeout.
#[test]
fn the_servers_bound_is_read_again_after_a_redis_restart() {
    let _w = watchdog(LIMIT);
    let Some(mut redis) = Redis::start(&["--proto-max-bulk-len", "1mb"]) else { return };
    assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"proto-max-bulk-len", b"64mb"]), b"+OK\r\n");
    let _node = Node::start(&redis.url);
    let options = test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(5));
    let pool = pool_with(&redis.url, 1, options);
    assert_eq!(pool.apply(length_of, vec![7u8; 2 << 20]).unwrap(), 2 << 20, "within the bound read at start");
    redis.restart();
    assert_eq!(pool.apply(square, 3).unwrap(), 9, "the node serves after the restart");
    let large = pool.apply_async(length_of, vec![7u8; 2 << 20]).map(|mut r| r.get_timeout(Duration::from_secs(30)));
    match large {
        Err(PoolError::Codec(e)) | Ok(Err(multiproc::ResultTimeoutError::Task(TaskError::Codec(e)))) => {
            assert!(e.to_string().contains("proto-max-bulk-len (1048576)"), "{e}");
        }
        other => panic!("a 2 MiB task to a Redis restarted with bulks of 1 MiB: {other:?}"),
    }
    assert_eq!(pool.map(square, 0..100u64).unwrap(), (0..100u64).map(|x| x * x).collect::<Vec<_>>());
}

// --- Large arguments --------------------------------------------------------------------

fn length_of(bytes: Vec<u8>) -> usize {
    bytes.len()
}

/// A task above the pool's `max_message_size` (64 KiB here) is refused at submission,
/// typed, and the pool goes on; one below it crosses to the node and back. Before, the
/// driver sent any task: here Redis (its `proto-max-bulk-len` of 1 MiB, as a server
/// configured so) closed the connection on the 2 MiB task at each try, the driver took
/// Redis for unreachable, and after its timeout failed every task and stopped the pool
/// ("Redis is unreachable: Broken pipe", then `PoolError::Closed` for the next map).
#[test]
fn a_task_above_max_message_size_is_refused_at_submission_and_the_pool_goes_on() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&["--proto-max-bulk-len", "1mb"]) else { return };
    let pool = pool_of_64_kib_messages(&redis.url);
    assert_eq!(pool.apply(length_of, vec![7u8; 32 << 10]).unwrap(), 32 << 10);
    match pool.apply_async(length_of, vec![7u8; 2 << 20]).map(|mut r| r.get_timeout(Duration::from_secs(30))) {
        Err(PoolError::Codec(e)) => assert!(e.to_string().contains("max_message_size (65536)"), "{e}"),
        other => panic!("a 2 MiB argument with a limit of 64 KiB: {other:?}"),
    }
    // Lazily, the chunk's own error (it was `Terminated`).
    let lazily: Vec<_> = pool.imap(length_of, [vec![7u8; 2 << 20]]).unwrap().collect();
    assert!(matches!(&lazily[..], [Err(TaskError::Codec(e))] if e.to_string().contains("a task of")), "{lazily:?}");
    assert_eq!(pool.map(square, 0..100u64).unwrap(), (0..100u64).map(|x| x * x).collect::<Vec<_>>());
}

/// A task between Redis's `proto-max-bulk-len` (1 MiB here) and the pool's
/// `max_message_size` (64 MiB, the default) is refused at submission as one above the
/// pool's own bound is, naming Redis's, and the pool goes on: the driver reads the server's
/// bound (`CONFIG GET`) when it starts and takes the smaller. Before, Redis closed the
/// connection on the task at each try, the driver took Redis for gone and after its
/// timeout failed every task and ended the pool: a user who set the bound above the
/// server's lost the pool on one task.
#[test]
fn a_task_above_redis_bulk_limit_but_within_the_pools_is_refused_at_submission() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&["--proto-max-bulk-len", "1mb"]) else { return };
    let pool = pool(&redis, 1);
    assert_eq!(pool.apply(length_of, vec![7u8; 32 << 10]).unwrap(), 32 << 10);
    match pool.apply_async(length_of, vec![7u8; 2 << 20]).map(|mut r| r.get_timeout(Duration::from_secs(30))) {
        Err(PoolError::Codec(e)) => assert!(e.to_string().contains("proto-max-bulk-len (1048576)"), "{e}"),
        other => panic!("a 2 MiB argument to a Redis taking bulks of 1 MiB: {other:?}"),
    }
    let lazily: Vec<_> = pool.imap(length_of, [vec![7u8; 2 << 20]]).unwrap().collect();
    assert!(matches!(&lazily[..], [Err(TaskError::Codec(e))] if e.to_string().contains("a task of")), "{lazily:?}");
    // A result so: its node sends a small failure at once, knowing the bound (less the tag).
    match pool.apply_async(bytes_of, 2 << 20).unwrap().get_timeout(Duration::from_secs(30)) {
        Err(multiproc::ResultTimeoutError::Task(TaskError::Codec(e))) => {
            assert!(e.to_string().contains(&format!("more than the pool allows ({} bytes", (1 << 20) - 32)), "{e}");
        }
        other => panic!("a 2 MiB result from a Redis taking bulks of 1 MiB: {:?}", other.as_ref().map(Vec::len)),
    }
    assert_eq!(pool.map(square, 0..100u64).unwrap(), (0..100u64).map(|x| x * x).collect::<Vec<_>>());
}

/// The same where the driver cannot read the server's bound (an ACL refuses it `CONFIG`,
/// as the documented ACL does): it sends a task above Redis's minimum bound (1 MiB) alone,
/// and a connection lost on it three times while Redis answers `PING` fails that task,
/// typed, and the pool goes on. Before, Redis closed the connection at each try, and the
/// driver, taking Redis for gone, ended the pool after its timeout.
#[test]
fn a_task_redis_closes_the_connection_on_fails_alone_where_its_bound_is_unknown() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&["--proto-max-bulk-len", "1mb"]) else { return };
    assert_eq!(redis.raw(&[b"ACL", b"SETUSER", b"default", b"-config"]), b"+OK\r\n");
    let _node = Node::start(&redis.url);
    let pool = pool(&redis, 1);
    assert_eq!(pool.apply(length_of, vec![7u8; 32 << 10]).unwrap(), 32 << 10);
    let mut small = pool.apply_async(length_of, vec![1u8; 10]).unwrap();
    match pool.apply_async(length_of, vec![7u8; 2 << 20]).unwrap().get_timeout(Duration::from_secs(30)) {
        Err(multiproc::ResultTimeoutError::Task(TaskError::Codec(e))) => {
            assert!(e.to_string().contains("closed the connection"), "{e}");
        }
        other => panic!("a 2 MiB argument to a Redis taking bulks of 1 MiB: {other:?}"),
    }
    assert_eq!(small.get_timeout(Duration::from_secs(30)), Ok(10), "a task sent with it");
    assert_eq!(pool.map(square, 0..100u64).unwrap(), (0..100u64).map(|x| x * x).collect::<Vec<_>>());
}

/// Two tasks above Redis's bound where the driver cannot read it (`CONFIG` refused), one
/// behind the other: each fails alone, typed (review108 H1). Before, the first one failed
/// alone went on `flush`'s own list of outcomes, the second one's lost send then returned
/// the error and dropped that list: the first task was never answered, its `get` waited
/// for ever ("first: Err(the result is not ready yet)").
#[test]
fn two_large_tasks_where_the_bound_is_unknown_are_both_answered() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&["--proto-max-bulk-len", "1mb"]) else { return };
    assert_eq!(redis.raw(&[b"ACL", b"SETUSER", b"default", b"-config"]), b"+OK\r\n");
    let _node = Node::start(&redis.url);
    let pool = pool(&redis, 1);
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    let mut first = pool.apply_async(length_of, vec![7u8; 2 << 20]).unwrap();
    let mut second = pool.apply_async(length_of, vec![8u8; 2 << 20]).unwrap();
    let a = first.get_timeout(Duration::from_secs(30));
    let b = second.get_timeout(Duration::from_secs(30));
    let stats = pool.stats();
    let codec = |r: &Result<usize, multiproc::ResultTimeoutError>| {
        matches!(r, Err(multiproc::ResultTimeoutError::Task(TaskError::Codec(_))))
    };
    assert!(codec(&a) && codec(&b), "first: {a:?}; second: {b:?}; {stats:?}");
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
}

/// Many tasks above Redis's bound where the driver cannot read it: each fails alone and
/// the pool goes on (review108 M1). Before, a lost send counted against a task while Redis
/// answered `PING` still made the driver's step fail, and no step in between succeeded
/// (the next large task was at the front): after the pool's timeout the driver took Redis
/// for gone and ended the pool ("Redis is unreachable: Broken pipe" for the next `apply`).
#[test]
fn many_large_tasks_where_the_bound_is_unknown_leave_the_pool_serving() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&["--proto-max-bulk-len", "1mb"]) else { return };
    assert_eq!(redis.raw(&[b"ACL", b"SETUSER", b"default", b"-config"]), b"+OK\r\n");
    let _node = Node::start(&redis.url);
    let pool = pool(&redis, 1);
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    let large: Vec<_> = (0..40).map(|_| pool.apply_async(length_of, vec![7u8; 2 << 20]).unwrap()).collect();
    let (mut codec, mut other) = (0, Vec::new());
    let until = std::time::Instant::now() + Duration::from_secs(60);
    for mut r in large {
        match r.get_timeout(until.saturating_duration_since(std::time::Instant::now())) {
            Err(multiproc::ResultTimeoutError::Task(TaskError::Codec(_))) => codec += 1,
            o => other.push(format!("{o:?}")),
        }
    }
    other.truncate(2);
    assert_eq!(
        pool.apply(square, 7).map_err(|e| e.to_string()),
        Ok(49),
        "the pool ended: {codec} tasks failed alone (Codec), others: {other:?}"
    );
    assert_eq!(codec, 40, "others: {other:?}");
}

/// A task above Redis's minimum bound (1 MiB, so sent alone where the bound is unknown: an
/// ACL refuses `CONFIG`) submitted while Redis is a replica (a failover's demoted master,
/// answering writes `READONLY`) waits the failover out and runs (review153 M2). Before, a
/// `READONLY` (classed `Unreachable`, as a wait) was counted as a connection Redis closed on
/// the task while it answered `PING`: three such counts came within a second (the driver's
/// steps back off 50, 100, 200 ms), and the task failed `Codec` ("Redis closed the
/// connection on it 3 times").
#[test]
fn a_large_task_sent_during_a_failover_where_the_bound_is_unknown_runs() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    assert_eq!(redis.raw(&[b"ACL", b"SETUSER", b"default", b"-config"]), b"+OK\r\n");
    let _node = Node::start(&redis.url);
    let options = test_options().lease(Duration::from_secs(30)).timeout(Duration::from_secs(20));
    let pool = pool_with(&redis.url, 1, options);
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    assert_eq!(redis.raw(&[b"REPLICAOF", b"127.0.0.1", b"1"]), b"+OK\r\n");
    let size = (1 << 20) + (256 << 10);
    let mut large = pool.apply_async(length_of, vec![7u8; size]).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(redis.raw(&[b"REPLICAOF", b"NO", b"ONE"]), b"+OK\r\n");
    let r = large.get_timeout(Duration::from_secs(30));
    println!("the large task: {r:?}");
    assert_eq!(r, Ok(size));
}

/// A `map` whose later chunk is refused at submission for its size (review96 L9) fails
/// whole: its earlier chunks, already in the stream, are withdrawn as a failed map's are,
/// and never run. Before, the call failed with `Codec` and the chunks before the refused
/// one stayed in the stream and ran on the next node, results dropped.
#[test]
fn a_map_whose_later_chunk_is_refused_for_its_size_runs_none_of_its_chunks() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    // No node yet: what the map left in the stream would wait there.
    let pool = pool_with(&redis.url, 1, test_options().max_message_size(64 << 10));
    let items = vec![vec![1u8; 10], vec![2u8; 10], vec![3u8; 10], vec![4u8; 2 << 20]];
    match pool.map_with(length_of, items, MapOptions::new().chunksize(1)) {
        Err(multiproc::Error::Pool(PoolError::Codec(e))) => assert!(e.to_string().contains("a task of"), "{e}"),
        other => panic!("a map whose fourth chunk is 2 MiB, with a limit of 64 KiB: {other:?}"),
    }
    let withdrawn = eventually(Duration::from_secs(10), || pool.stats().tasks_cancelled == 3);
    assert!(withdrawn, "the chunks before the refused one were left to run: {:?}", pool.stats());
    let _node = Node::start(&redis.url);
    assert_eq!(pool.map(square, 0..10u64).unwrap(), (0..10u64).map(square).collect::<Vec<_>>());
    let stats = pool.stats();
    assert_eq!((stats.tasks_done, stats.tasks_cancelled), (10, 3), "{stats:?}");
}

/// A node whose credentials Redis refuses after it started (the password changed in Redis,
/// the node's connections dropped, as a restart or a network blip drops them) ends with
/// `Auth`, as at its start: its URL cannot change, so trying again does not help, and a
/// supervisor that restarts it can give it the new one. Before, it waited for ever,
/// serving nothing, said only through `log` (a warning a minute).
#[test]
fn a_node_whose_credentials_redis_refuses_later_ends_with_a_typed_error() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&["--requirepass", "s3cret"]) else { return };
    let url = format!("{}?pass=s3cret", redis.url);
    let mut node = Command::new("setpriv")
        .args(["--pdeathsig", "KILL"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "no_such_test"])
        .env(WORKER_ENV, &url)
        .env(KEY_ENV, TEST_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let options = test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(2));
    assert_eq!(pool_with(&url, 1, options).apply(square, 7).unwrap(), 49, "the node serves");
    let cli = |password: &str, args: &[&str]| {
        let mut cli = Command::new("redis-cli");
        let out = cli.arg("-s").arg(redis.socket()).args(["--no-auth-warning", "-a", password]).args(args).output();
        let out = out.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    cli("s3cret", &["CONFIG", "SET", "requirepass", "changed"]);
    cli("changed", &["CLIENT", "KILL", "TYPE", "normal"]);
    let ended = eventually(Duration::from_secs(20), || node.try_wait().unwrap().is_some());
    let _ = node.kill();
    let status = node.wait().unwrap();
    let mut said = String::new();
    std::io::Read::read_to_string(&mut node.stderr.take().unwrap(), &mut said).unwrap();
    assert!(ended, "a node refused by Redis still running 20 s later: {said}");
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(said.contains("credentials"), "{said}");
}

/// A node that meets a Redis at `maxclients` when it reconnects waits it out, as it waits
/// out Redis away (review108 M2): Redis writes "max number of clients reached" and closes
/// the connection, and that reply to `AUTH` is not a refusal of the credentials. Before,
/// `Conn::open` took any error reply to `AUTH` for refused credentials, and the node ended
/// ("Redis refused the credentials: ... max number of clients reached").
#[test]
fn a_node_meeting_maxclients_at_a_reconnection_waits_it_out() {
    use std::io::Read as _;
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&["--requirepass", "s3cret"]) else { return };
    let url = format!("{}?pass=s3cret", redis.url);
    let mut node = Command::new("setpriv")
        .args(["--pdeathsig", "KILL"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "no_such_test"])
        .env(WORKER_ENV, &url)
        .env(KEY_ENV, TEST_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let options = test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(2));
    let pool = pool_with(&url, 1, options.clone());
    assert_eq!(pool.apply(square, 7).unwrap(), 49, "the node serves");
    let mut control = std::os::unix::net::UnixStream::connect(redis.socket()).unwrap();
    control.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    control.write_all(b"AUTH s3cret\r\nCONFIG SET maxclients 1\r\nCLIENT KILL TYPE normal SKIPME yes\r\n").unwrap();
    let (mut reply, mut got) = (vec![0u8; 256], Vec::new());
    while got.iter().filter(|&&b| b == b'\n').count() < 3 {
        let n = control.read(&mut reply).unwrap();
        got.extend_from_slice(&reply[..n]);
    }
    let ended = eventually(Duration::from_secs(4), || node.try_wait().unwrap().is_some());
    control.write_all(b"CONFIG SET maxclients 10000\r\n").unwrap();
    let _ = control.read(&mut reply).unwrap();
    drop(control);
    // The pool's own driver met the limit longer than its `timeout` (2 s): a new pool.
    drop(pool);
    let serves = !ended && pool_with(&url, 1, options).apply(square, 8).map_err(|e| e.to_string()) == Ok(64);
    let _ = node.kill();
    let _ = node.wait();
    let mut said = String::new();
    let _ = node.stderr.take().unwrap().read_to_string(&mut said);
    assert!(!ended, "a healthy node ended on a passing maxclients: {said}");
    assert!(serves, "the node does not serve once the limit is lifted: {said}");
}

/// A node refused later by Redis while a task runs on it, whose result connection is still
/// logged in (a password changed in Redis leaves the connections already authenticated
/// alone), does not fail that task `Terminated`: it is taken back by its driver after the
/// lease, as a dead node's is, as `serve`'s doc says (review108 M3). Before, the node's
/// writer pushed the `Terminated` of the tasks its local pool was ended with
/// ("Err(the pool was terminated before the task finished)").
#[test]
fn a_node_refused_later_does_not_fail_its_running_task_terminated() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&["--requirepass", "s3cret"]) else { return };
    let url = format!("{}?pass=s3cret", redis.url);
    let cli = |password: &str, args: &[&str]| -> String {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(redis.socket())
            .args(["--no-auth-warning", "-a", password])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let _node = Node::start(&url);
    let options = test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(2));
    let pool = pool_with(&url, 1, options);
    assert_eq!(pool.apply(square, 7).unwrap(), 49, "the node serves");
    let mut slow = pool.apply_async(sleep_ms, 4000).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    cli("s3cret", &["CONFIG", "SET", "requirepass", "changed"]);
    let mut killed = 0; // only the node's reader loses its connection
    for _ in 0..50 {
        for line in cli("changed", &["CLIENT", "LIST"]).lines() {
            if line.contains("cmd=xreadgroup") {
                let id = line.split(' ').find_map(|f| f.strip_prefix("id=")).unwrap().to_owned();
                cli("changed", &["CLIENT", "KILL", "ID", &id]);
                killed += 1;
            }
        }
        if killed > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(killed > 0, "no reader found");
    // A new node, on the new password, takes the task back after its lease.
    let _other = Node::start(&format!("{}?pass=changed", redis.url));
    let r = slow.get_timeout(Duration::from_secs(30));
    assert_eq!(r, Ok(4000));
}

/// `redis-cli` on `redis`'s socket, logged in with `password`: its output (it must succeed).
fn cli_as(redis: &Redis, password: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-s")
        .arg(redis.socket())
        .args(["--no-auth-warning", "-a", password])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A worker node on `url` whose stderr is piped, to read why it ended ([`node_end`]).
fn piped_node(url: &str) -> Child {
    Command::new("setpriv")
        .args(["--pdeathsig", "KILL"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "no_such_test"])
        .env(WORKER_ENV, url)
        .env(KEY_ENV, TEST_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Whether the [`piped_node`] ended within `limit` (it is killed if not), its status and
/// what it wrote on stderr.
fn node_end(mut node: Child, limit: Duration) -> (bool, ExitStatus, String) {
    let ended = eventually(limit, || node.try_wait().unwrap().is_some());
    let _ = node.kill();
    let status = node.wait().unwrap();
    let mut said = String::new();
    std::io::Read::read_to_string(&mut node.stderr.take().unwrap(), &mut said).unwrap();
    (ended, status, said)
}

/// The ids of the clients `CLIENT LIST` shows (but the `redis-cli` that asks).
fn client_ids(redis: &Redis, password: &str) -> Vec<String> {
    cli_as(redis, password, &["CLIENT", "LIST"])
        .lines()
        .filter(|line| !line.contains("cmd=client"))
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")).map(str::to_owned))
        .collect()
}

/// A node whose writer alone is refused (its idle connection closed by Redis's `timeout`,
/// then the password changed, while the reader's connection stays logged in) pushes the
/// result it finished on the reader's connection, which it lends the writer as it ends
/// (review150 M1): under `max_deliveries(1)` the task's result comes, not `WorkerLost`, and
/// the node ends, saying why. Before, the writer kept the result until the reader stopped,
/// then dropped it after one more refused try, with a logged-in connection unused: the task
/// was taken back after its lease, its only delivery spent. The 6 s lease keeps any beat
/// (every 2 s) from meeting the refusal before the push does. The writer is held between
/// its look at whether the reader stopped and its look for the lent connection, and the
/// reader once it lent its connection and stopped (`HOLD_SPARE`): the result is pushed on it
/// all the same (review153 M1, a preemption there: the writer looked for the connection
/// first, found none, then found the reader stopped, and dropped the result: "the task:
/// Err(worker 0 was lost while running the task: gone)").
#[test]
fn a_node_whose_writer_alone_is_refused_pushes_its_finished_result_on_the_readers_connection() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&["--requirepass", "s3cret", "--timeout", "1"]) else { return };
    let url = format!("{}?pass=s3cret", redis.url);
    std::fs::write(redis.dir.join("arm"), "").unwrap();
    let (mut node, lines) = logging_node(&url, &[(HOLD_SPARE, redis.dir.to_str().unwrap())]);
    let options = test_options().lease(Duration::from_secs(6)).timeout(Duration::from_secs(2)).max_deliveries(1);
    let pool = pool_with(&url, 1, options);
    assert_eq!(pool.apply(square, 7).unwrap(), 49, "the node serves");
    // Redis closes the idle clients within two seconds: the writer and the pool's
    // submission link. Two stay, each sending a command at least every second: the node's
    // reader and the pool's driver thread.
    let mut now = Vec::new();
    let closed = eventually(Duration::from_secs(10), || {
        now = client_ids(&redis, "s3cret");
        now.len() <= 2
    });
    assert!(closed, "Redis did not close the idle connections: {now:?} left");
    cli_as(&redis, "s3cret", &["CONFIG", "SET", "requirepass", "changed"]);
    let mut quick = pool.apply_async(sleep_ms, 200).unwrap();
    while !lines.recv_timeout(Duration::from_secs(30)).expect("the writer and reader were not held").contains("HELD") {}
    std::fs::write(redis.dir.join("release"), "").unwrap();
    let r = quick.get_timeout(Duration::from_secs(30));
    let ended = eventually(Duration::from_secs(20), || node.child.try_wait().unwrap().is_some());
    // Its log, to its end (its stderr closed) or 20 s.
    let mut said = Vec::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(20)) {
        said.push(line);
    }
    println!("the task: {r:?}; the node ended: {ended}: {said:?}");
    assert_eq!(r, Ok(200), "{said:?}");
    assert!(ended && said.iter().any(|line| line.contains("credentials")), "{said:?}");
}

/// The id of the node's writer, the one client whose last command is `XCLAIM` (its beats;
/// a driver's take-back is `XAUTOCLAIM`), killed: the reader's connection stays logged in.
fn kill_the_writer(redis: &Redis, password: &str) -> bool {
    let writer = cli_as(redis, password, &["CLIENT", "LIST"])
        .lines()
        .find(|line| line.contains("cmd=xclaim"))
        .and_then(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")).map(str::to_owned));
    writer.is_some_and(|id| cli_as(redis, password, &["CLIENT", "KILL", "ID", &id]).contains('1'))
}

/// A node whose result connection alone is refused later (the password changed in Redis,
/// and only the writer's connection lost: Redis's `timeout` or a NAT's idle cut closes the
/// node's one idle connection, the reader's stays logged in) ends with `Auth`, as a node
/// whose reader is refused does (review144 M1); its tasks are handed back on the reader's
/// connection (not waited for here: the test above waits for a result so). Before, the
/// writer replaced each result by a `Refused` failure, met the refusal again and dropped
/// it, told nobody: the reader went on taking tasks whose results were all lost
/// (`WorkerLost` once their deliveries ran out), and the node never ended for a supervisor
/// to restart it. The node is full (capacity 2 x 2 workers, four tasks held): its reader,
/// waiting for room that never comes while the writer keeps its refused results, stops that
/// wait on the writer's refusal (review150 L1: without that check the node ran for ever,
/// "still running 20 s later", and no test failed). The refusal is met by a beat (a 600 ms
/// lease: one every 200 ms), the writer's `XCLAIM` (a driver's take-back is `XAUTOCLAIM`),
/// sent until the node ends: the tasks outlast the test (review150 L2: a 1 s task left the
/// test 0.8 s to find the writer, after which no beat came: "no writer found").
#[test]
fn a_full_node_whose_writer_alone_is_refused_later_ends_with_a_typed_error() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&["--requirepass", "s3cret"]) else { return };
    let url = format!("{}?pass=s3cret", redis.url);
    let node = piped_node(&url);
    let options = test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(2));
    let pool = pool_with(&url, 1, options);
    assert_eq!(pool.apply(square, 7).unwrap(), 49, "the node serves");
    let _slow: Vec<_> = (0..6).map(|_| pool.apply_async(sleep_ms, 30_000).unwrap()).collect();
    let tasks = cli_as(&redis, "s3cret", &["--scan", "--pattern", "mp:*:tasks"]).lines().next().unwrap().to_owned();
    let full = eventually(Duration::from_secs(10), || {
        cli_as(&redis, "s3cret", &["XPENDING", &tasks, "nodes"]).lines().next() == Some("4")
    });
    assert!(full, "the node did not fill");
    cli_as(&redis, "s3cret", &["CONFIG", "SET", "requirepass", "changed"]);
    assert!(eventually(Duration::from_secs(10), || kill_the_writer(&redis, "changed")), "no writer found");
    let (ended, status, said) = node_end(node, Duration::from_secs(20));
    assert!(ended, "a full node whose writer Redis refuses still running 20 s later: {said}");
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(said.contains("credentials"), "{said}");
}

/// A `WRONGPASS` met by the writer's reconnection that a fresh connection does not meet again
/// (the password changed back meanwhile: a user rewritten by two `ACL SETUSER` calls, a
/// rotation that reaches this Redis a moment later) is no refusal: the result is kept and
/// pushed, as for Redis away (review150 L3). Before, it was replaced by a `Refused` failure,
/// which Redis then took: the task failed for a refusal that had passed. The writer is held
/// where its push confirms the refusal (`HOLD_CONFIRM`) while the password changes back. The
/// point is the push's alone (review153 L3: a beat meeting the refusal first was held there
/// too, and the test passed without the push's path; now such a beat ends the node, and the
/// test fails, never holding the writer).
#[test]
fn a_refusal_of_the_writers_reconnection_that_passes_loses_no_result() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&["--requirepass", "s3cret", "--timeout", "1"]) else { return };
    let url = format!("{}?pass=s3cret", redis.url);
    std::fs::write(redis.dir.join("arm"), "").unwrap();
    let (mut node, lines) = logging_node(&url, &[(HOLD_CONFIRM, redis.dir.to_str().unwrap())]);
    let options = test_options().lease(Duration::from_secs(6)).timeout(Duration::from_secs(2)).max_deliveries(1);
    let pool = pool_with(&url, 1, options);
    assert_eq!(pool.apply(square, 7).unwrap(), 49, "the node serves");
    // As in the test above: the writer's idle connection closed by Redis's `timeout`.
    let mut now = Vec::new();
    let closed = eventually(Duration::from_secs(10), || {
        now = client_ids(&redis, "s3cret");
        now.len() <= 2
    });
    assert!(closed, "Redis did not close the idle connections: {now:?} left");
    cli_as(&redis, "s3cret", &["CONFIG", "SET", "requirepass", "changed"]);
    let mut quick = pool.apply_async(sleep_ms, 200).unwrap();
    while !lines.recv_timeout(Duration::from_secs(30)).expect("the writer was not held").contains("HELD") {}
    cli_as(&redis, "changed", &["CONFIG", "SET", "requirepass", "s3cret"]);
    std::fs::write(redis.dir.join("release"), "").unwrap();
    let r = quick.get_timeout(Duration::from_secs(30));
    let ended = node.child.try_wait().unwrap();
    println!("the task: {r:?}; the node ended: {ended:?}");
    assert_eq!(r, Ok(200));
    assert!(ended.is_none(), "the node ended");
}

// --- A failover ------------------------------------------------------------------------

/// A task that ends once the file `marker` exists (at most a minute): 1.
fn until_marked(marker: String) -> u64 {
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while !Path::new(&marker).exists() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    1
}

/// A failover seen from a node and a driver still led to the demoted master (a name or an
/// address not moved yet): Redis, made a replica (`REPLICAOF` of a master that is not
/// there, so that it keeps its data), answers writes `READONLY` and ends blocking commands
/// `UNBLOCKED`, then serves again (`REPLICAOF NO ONE`, as a reconnection reaching the new
/// master would). Both are waited out as Redis away, on new connections, backing off: the
/// result the node finished meanwhile comes (one delivery: not run again), the pool and the
/// node go on, and the node's reader did not read in a hot loop (review150: the driver ended
/// the pool at once, the writer replaced the result by a `Refused` failure, and the reader
/// read again at once for as long as the failover lasted).
#[test]
fn a_failover_that_leaves_a_node_and_a_driver_on_a_replica_for_a_while_loses_nothing() {
    let _w = watchdog(LIMIT);
    let Some((redis, mut node)) = cluster(&[]) else { return };
    let socket = redis.socket().to_str().unwrap().to_owned();
    // A lease and a timeout far longer than the failover: neither is what it tests.
    let options = test_options().lease(Duration::from_secs(6)).timeout(Duration::from_secs(20)).max_deliveries(1);
    let pool = pool_with(&redis.url, 1, options);
    assert_eq!(pool.apply(square, 7).unwrap(), 49, "the node serves");
    let marker = redis.dir.join("marker");
    let mut task = pool.apply_async(until_marked, marker.to_str().unwrap().to_owned()).unwrap();
    let tasks = redis.mp_keys().into_iter().find(|k| k.ends_with(":tasks")).unwrap();
    let taken = || redis_cli(&socket, &["XPENDING", &tasks, "nodes"]).lines().next() == Some("1");
    assert!(eventually(Duration::from_secs(20), taken), "the node did not take the task");
    assert_eq!(redis_cli(&socket, &["REPLICAOF", "127.0.0.1", "1"]), "OK");
    let before = rejected_calls(&redis, "xreadgroup");
    // The task ends while Redis is a replica: the node's push meets `READONLY`.
    std::fs::write(&marker, b"").unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let during = rejected_calls(&redis, "xreadgroup") - before;
    assert_eq!(redis_cli(&socket, &["REPLICAOF", "NO", "ONE"]), "OK");
    let got = task.get_timeout(Duration::from_secs(30));
    let next = pool.apply(square, 8).map_err(|e| e.to_string());
    let ended = node.child.try_wait().unwrap();
    println!("the task: {got:?}, the next: {next:?}; the node ended: {ended:?}; reads refused meanwhile: {during}");
    assert_eq!(got, Ok(1));
    assert_eq!(next, Ok(64));
    assert!(ended.is_none(), "the node ended: {ended:?}");
    // Backing off from 100 ms to a second: a handful, however long the second took.
    assert!(during < 100, "the node's reader read in a hot loop: {during} reads refused");
}

/// The driver of [`a_driver_refused_its_password_once_goes_on_and_ends_typed_once_it_lasts`],
/// in a child of the family (its hold point then holds no other test's driver): Redis at
/// `url` (password `s3cret`) and `socket`. Reports what a task in flight and a call after
/// came to, first across a refusal met once (the password changed and changed back while
/// the driver reconnected), then across one that lasts.
fn drive_across_a_refused_password((url, socket, report): (String, String, multiproc::Queue<String>)) {
    let cli = |password: &str, args: &[&str]| -> String {
        let out = Command::new("redis-cli")
            .args(["-s", &socket, "--no-auth-warning", "-a", password])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Kills the driver thread's connection (the one waiting on its results list), so that
    // it logs in again: connections already open keep their login.
    let kill_the_driver = |password: &str| {
        eventually(Duration::from_secs(10), || {
            let driver = cli(password, &["CLIENT", "LIST"])
                .lines()
                .find(|line| line.contains("cmd=blmove"))
                .and_then(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")).map(str::to_owned));
            driver.is_some_and(|id| cli(password, &["CLIENT", "KILL", "ID", &id]).contains('1'))
        })
    };
    let options = test_options().lease(Duration::from_secs(1)).timeout(Duration::from_secs(5));
    let pool = pool_with(&url, 1, options);
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    let _disarm = Disarm;
    let mut said = Vec::new();
    for lasting in [false, true] {
        // The driver thread is held where it met the refusal, before it confirms it.
        multiproc::__private::crash_at("hold:cluster.pool.refused");
        let slow = pool.apply_async(sleep_ms, 300);
        cli("s3cret", &["CONFIG", "SET", "requirepass", "changed"]);
        let killed = kill_the_driver("changed");
        let held = eventually(Duration::from_secs(5), || multiproc::__private::crash_holding() >= 1);
        if !lasting {
            cli("changed", &["CONFIG", "SET", "requirepass", "s3cret"]);
        }
        multiproc::__private::crash_disarm();
        let slow = match slow.map(|mut slow| slow.get_timeout(Duration::from_secs(30))) {
            Err(e) => format!("not sent: {e:?}"),
            Ok(Ok(ms)) => format!("Ok({ms})"),
            Ok(Err(multiproc::ResultTimeoutError::Task(TaskError::Cluster(ClusterError::Auth(_))))) => "Auth".into(),
            Ok(Err(e)) => format!("{e:?}"),
        };
        let after = match pool.apply(square, 3) {
            Ok(n) => format!("Ok({n})"),
            Err(e) if e.to_string().contains("refused the credentials") => "Auth".into(),
            Err(e) => format!("{e:?}"),
        };
        said.push(format!("lasting {lasting}: killed {killed}, held {held}, in flight {slow}, after {after}"));
    }
    report.put(said.join("; ")).unwrap();
}

/// A pool's driver that Redis refuses its password when it logs in again (its connection
/// lost while the password was changed in Redis: connections already open keep their
/// login) confirms the refusal on a fresh connection before it ends, as a node does
/// (`lasting_refusal`): a refusal not met again (the password changed back, a rotation
/// undone) is waited out as Redis away is, within the pool's timeout, the task in flight
/// finished and the calls after served; one met again ends the pool with `Auth`, the task
/// in flight failed typed (or its result delivered if it came first), never waited for.
/// Before, the driver ended the pool at the first refusal (fix105's and fix111's open item).
#[test]
fn a_driver_refused_its_password_once_goes_on_and_ends_typed_once_it_lasts() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&["--requirepass", "s3cret"]) else { return };
    let url = format!("{}?pass=s3cret", redis.url);
    let _node = Node::start(&url);
    let reported = drive_in_a_child(drive_across_a_refused_password, |report| {
        (url.clone(), redis.socket().display().to_string(), report)
    });
    let (once, lasting) = reported.split_once("; ").unwrap();
    assert_eq!(once, "lasting false: killed true, held true, in flight Ok(300), after Ok(9)", "{reported}");
    assert!(
        matches!(
            lasting,
            "lasting true: killed true, held true, in flight Auth, after Auth"
                | "lasting true: killed true, held true, in flight Ok(300), after Auth"
        ),
        "{reported}"
    );
}

// --- A frozen node ----------------------------------------------------------------------

/// A node frozen mid-task (`SIGSTOP`: a machine too slow to answer, a paused VM) stops
/// heartbeating its task's entry: the task is taken back after the lease and runs on
/// another node, and its result comes once. The frozen node, let go, finishes its copy and
/// serves again; its late result is not taken for a later call's.
#[test]
fn a_node_frozen_mid_task_has_it_run_elsewhere_and_serves_again_once_let_go() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let frozen = Node::start(&redis.url);
    let pool = pool(&redis, 2);
    assert_eq!(pool.apply(square, 3).unwrap(), 9, "the node serves");
    let mut slow = pool.apply_async(sleep_ms, 1500).unwrap();
    std::thread::sleep(Duration::from_millis(300)); // usually running on the node; either way
    let signal = |name: &str| {
        assert!(Command::new("kill").args([name, &frozen.child.id().to_string()]).status().unwrap().success());
    };
    signal("-STOP");
    let _other = Node::start(&redis.url);
    assert_eq!(slow.get_timeout(Duration::from_secs(30)), Ok(1500));
    signal("-CONT");
    std::thread::sleep(Duration::from_millis(1500)); // its copy ends meanwhile; either way
    let squares: Vec<u64> = (0..200u64).map(|x| x * x).collect();
    assert_eq!(pool.map_with(square, 0..200u64, MapOptions::new().chunksize(1)).unwrap(), squares);
    drop(pool);
    assert!(eventually(Duration::from_secs(10), || redis.mp_keys().is_empty()), "left behind: {:?}", redis.mp_keys());
}

// --- A node Redis refuses ----------------------------------------------------------------

/// A node whose credentials Redis refuses (a wrong password, none) ends at once with
/// `Auth`, as a queue's open or a pool's build does: trying again does not help. It tried
/// again every 100 ms for ever, serving nothing, and said why only through `log` (nothing
/// without a logger): its user saw a node up and every task waiting. The credentials are
/// tried before the local pool starts (review96 L3, kept so on purpose): the node's workers
/// here hang in their boot, and a node that started its pool first would wait for them for
/// ever before it learnt that Redis refuses it (a `PING` makes nothing in Redis, so a pool
/// that fails after it leaves nothing behind either).
#[test]
fn a_node_whose_credentials_redis_refuses_ends_with_a_typed_error() {
    let _w = watchdog(LIMIT);
    let Some(redis) = Redis::start(&["--requirepass", "s3cret"]) else { return };
    for url in [format!("{}?pass=wrong", redis.url), redis.url.clone()] {
        let mut node = Command::new("setpriv")
            .args(["--pdeathsig", "KILL"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "no_such_test"])
            .env(WORKER_ENV, &url)
            .env(KEY_ENV, TEST_KEY)
            .env(HANG_BOOT, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let ended = eventually(Duration::from_secs(20), || node.try_wait().unwrap().is_some());
        let _ = node.kill();
        let status = node.wait().unwrap();
        let mut said = String::new();
        std::io::Read::read_to_string(&mut node.stderr.take().unwrap(), &mut said).unwrap();
        assert!(ended, "a node on {url} still running 20 s later: {said}");
        assert_eq!(status.code(), Some(1), "{url}: {said}");
        assert!(said.contains("credentials"), "{url}: {said}");
    }
}

/// After a restart with a larger bound, the submission link's stale cached bound (its dead
/// connection still counts as open) must not replace the driver thread's fresh reading: a
/// 2 MiB task then runs, not `TaskError::Codec` naming the old 1 MiB bound. Found by
/// review122 (M1).
#[test]
fn a_stale_submission_link_does_not_fail_a_task_the_restarted_server_takes() {
    let _w = watchdog(LIMIT);
    let Some(mut redis) = Redis::start(&["--proto-max-bulk-len", "64mb"]) else { return };
    assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"proto-max-bulk-len", b"1mb"]), b"+OK\r\n");
    let _node = Node::start(&redis.url);
    let options = test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(5));
    let pool = pool_with(&redis.url, 1, options);
    // The submission link connects and caches 1 MiB.
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    redis.restart(); // back at 64 MiB from its arguments
    // The driver thread meets the restart, reconnects and reads 64 MiB (its two `CONFIG
    // GET`s: no submission meanwhile), then steps on (two `BLMOVE`s after the reading: one
    // began after it was applied). Before: a 3 s sleep.
    assert!(eventually(Duration::from_secs(60), || command_calls(&redis, "config|get") >= 2), "no reading");
    let moves = command_calls(&redis, "blmove");
    assert!(eventually(Duration::from_secs(60), || command_calls(&redis, "blmove") >= moves + 2), "no step");
    let large = pool.apply_async(length_of, vec![7u8; 2 << 20]).map(|mut r| r.get_timeout(Duration::from_secs(30)));
    eprintln!("large task: {large:?}");
    assert!(matches!(large, Ok(Ok(n)) if n == 2 << 20), "a 2 MiB task to a Redis now taking 64 MiB: {large:?}");
}

/// review122 L4: with Redis stopped, a submission whose link had not read the bound on its
/// connection read it (`CONFIG GET`, waiting a timeout and a second) and then sent the task
/// on a new connection (as long again): two exchanges' waits in one `apply_async`. Where
/// the bound cannot be read now nothing is sent: the task waits for the driver thread.
/// The timeout is 4 s, so one exchange waits at most 5 s and two 10 s. No duration is
/// asserted (review131 L3: the call had a 7.5 s bound here): that the call ends, queued,
/// under the test's watchdog. The exchanges cannot be counted as the queue's test counts
/// them: the driver thread sends the same commands (`CONFIG GET`, the tasks) meanwhile.
#[test]
fn a_submission_to_a_stopped_redis_waits_one_exchange_at_most() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let options = test_options().lease(Duration::from_secs(30)).timeout(Duration::from_secs(4));
    // The build's beat connects the submission link; no task has read the bound on it yet.
    let pool = pool_with(&redis.url, 1, options);
    redis.pause();
    let submitted = pool.apply_async(square, 5);
    redis.resume();
    let submitted = submitted.map(|mut r| r.get_timeout(Duration::from_secs(60)));
    eprintln!("apply_async to a stopped Redis: {submitted:?}");
    assert!(matches!(submitted, Ok(Ok(25))), "queued while Redis was stopped, run once it went on: {submitted:?}");
}

/// review122 L5: a task waiting while Redis restarts with a smaller `proto-max-bulk-len`
/// (64 MiB read at the start, 1 MiB after) carries the new result bound when it is sent:
/// its node refuses its 2 MiB result itself (`more than the pool allows`). Before, it kept
/// the bound read at its submission: the node pushed the result, Redis closed the
/// connection on it three times, and the node's small failure went instead ("the
/// connection was lost on each push").
#[test]
fn a_waiting_task_carries_the_result_bound_of_a_restarted_redis() {
    let _w = watchdog(LIMIT);
    let Some(mut redis) = Redis::start(&["--proto-max-bulk-len", "1mb"]) else { return };
    assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"proto-max-bulk-len", b"64mb"]), b"+OK\r\n");
    let _node = Node::start(&redis.url);
    let options = test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(10));
    let pool = pool_with(&redis.url, 1, options);
    assert_eq!(pool.apply(bytes_of, 2 << 20).unwrap().len(), 2 << 20, "within the bound read at start");
    redis.kill();
    // The submission's send fails at once (nothing listens): the task waits.
    let mut waiting = pool.apply_async(bytes_of, 2 << 20).unwrap();
    redis.restart(); // back at 1 MiB from its arguments
    let got = waiting.get_timeout(Duration::from_secs(40)).map(|v| v.len());
    eprintln!("a 2 MiB result after a restart with bulks of 1 MiB: {got:?}");
    match got {
        Err(multiproc::ResultTimeoutError::Task(TaskError::Codec(e))) => {
            assert!(e.to_string().contains("more than the pool allows"), "{e}");
        }
        other => panic!("a 2 MiB result after a restart with bulks of 1 MiB: {other:?}"),
    }
    assert_eq!(pool.apply(square, 4).unwrap(), 16, "the pool goes on");
}

/// How many times the server at `redis` ran `command` (`INFO commandstats`'s
/// `cmdstat_COMMAND:calls=N`; a subcommand as `config|get`), 0 where it never did.
fn command_calls(redis: &Redis, command: &str) -> u64 {
    let out = Command::new("redis-cli").arg("-s").arg(redis.socket()).args(["INFO", "commandstats"]).output();
    let out = String::from_utf8_lossy(&out.expect("redis-cli runs").stdout).into_owned();
    let head = format!("cmdstat_{command}:calls=");
    out.lines().find_map(|l| l.strip_prefix(&head)).and_then(|rest| rest.split(',').next()?.parse().ok()).unwrap_or(0)
}

/// The driver of [`a_task_submitted_while_the_bound_changes_carries_the_new_one`], in a
/// child of the family (its hold point its own): Redis at `url`. Reports "held" once its
/// submission is held, waits for `go`, and reports what the task came to.
fn submit_across_a_bound_change((url, report, go): (String, multiproc::Queue<String>, multiproc::Queue<String>)) {
    let options = test_options().lease(Duration::from_millis(600)).timeout(Duration::from_secs(10));
    let pool = std::sync::Arc::new(pool_with(&url, 1, options));
    assert_eq!(pool.apply(bytes_of, 2 << 20).unwrap().len(), 2 << 20, "within the bound read at start");
    let _disarm = Disarm;
    multiproc::__private::crash_at("hold:cluster.pool.submit.sealed");
    let submitter = std::thread::spawn({
        let pool = std::sync::Arc::clone(&pool);
        move || pool.apply_async(bytes_of, 2 << 20)
    });
    assert!(eventually(Duration::from_secs(20), || multiproc::__private::crash_holding() >= 1));
    report.put("held".into()).unwrap();
    go.get().unwrap();
    multiproc::__private::crash_disarm();
    let got = submitter.join().unwrap().map(|mut r| r.get_timeout(Duration::from_secs(40)).map(|v| v.len()));
    report.put(format!("{got:?}")).unwrap();
}

/// review131 L1: a task whose submission read the result bound (64 MiB) before the driver
/// thread read a smaller one (Redis restarted with bulks of 1 MiB), and took `books` after,
/// kept the old bound: the re-encoding of waiting tasks had not seen it. Its node pushed a
/// 2 MiB result, which Redis refused by closing the connection, three times, before the
/// node's small failure went instead. The bound is looked at again under `books`.
#[test]
fn a_task_submitted_while_the_bound_changes_carries_the_new_one() {
    let _w = watchdog(LIMIT);
    let Some(mut redis) = Redis::start(&["--proto-max-bulk-len", "1mb"]) else { return };
    assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"proto-max-bulk-len", b"64mb"]), b"+OK\r\n");
    let _node = Node::start(&redis.url);
    multiproc::init();
    let (report, go) = (multiproc::Queue::<String>::new().unwrap(), multiproc::Queue::<String>::new().unwrap());
    let args = (redis.url.clone(), report.clone(), go.clone());
    let child = multiproc::Process::new(submit_across_a_bound_change, args).start().unwrap();
    assert_eq!(report.get_timeout(Duration::from_secs(90)).unwrap(), "held");
    redis.restart(); // back at 1 MiB from its arguments
    // The driver thread, its connection lost, reads the new server's bound (two `CONFIG
    // GET`s, sent by nothing else here: the submission is held) and applies it under
    // `books` in the same step, before that step's `BLMOVE`. Two `BLMOVE`s counted after the
    // reads: one at least began after them (each waits 50 ms at most). Before: a 5 s sleep.
    let read = eventually(Duration::from_secs(60), || command_calls(&redis, "config|get") >= 2);
    assert!(read, "the driver thread never read the restarted server's bound");
    let moves = command_calls(&redis, "blmove");
    let stepped = eventually(Duration::from_secs(60), || command_calls(&redis, "blmove") >= moves + 2);
    assert!(stepped, "the driver thread never stepped after reading the bound");
    go.put("go".into()).unwrap();
    let got = report.get_timeout(Duration::from_secs(90)).unwrap();
    child.join().unwrap();
    eprintln!("a 2 MiB result of a task submitted across the bound's change: {got}");
    assert!(got.contains("more than the pool allows"), "the task kept the old result bound: {got}");
}

/// An `imap` made before `close` goes on to the end of its input, as a local pool's does
/// (aud91 H2) and Python's (its `imap` queues every task at once; `close` only refuses new
/// calls), ordered or not, and `join` after the iteration ends the pool. A `join` before
/// its end cuts it: what was in flight comes, then an error, and the iteration ends. Before,
/// the cluster pool refused the chunks fed after the `close`: the rest of the iteration
/// failed `Closed`.
#[test]
fn an_imap_made_before_close_goes_on_to_the_end() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    for ordered in [true, false] {
        let pool = pool(&redis, 2);
        let options = MapOptions::new().chunksize(2).lookahead(2);
        let mut it = if ordered {
            pool.imap_with(square, 0..40u64, options).unwrap()
        } else {
            pool.imap_unordered_with(square, 0..40u64, options).unwrap()
        };
        let mut got: Vec<_> = it.by_ref().take(5).map(|r| r.map_err(|e| e.to_string())).collect();
        pool.close();
        assert!(pool.apply(square, 3).is_err(), "a closed pool takes no new call");
        got.extend(it.map(|r| r.map_err(|e| e.to_string())));
        if !ordered {
            got.sort();
        }
        assert_eq!(got, (0..40).map(|x| Ok(x * x)).collect::<Vec<_>>(), "ordered {ordered}");
        pool.join().unwrap();
    }
    // Joined before its end: cut, and the iteration ends.
    let pool = pool(&redis, 2);
    let mut it = pool.imap_with(square, 0..100u64, MapOptions::new().chunksize(2).lookahead(2)).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 0);
    pool.close();
    pool.join().unwrap();
    let rest: Vec<_> = it.collect();
    assert!(rest.len() < 99, "a joined pool's imap is cut: {} more", rest.len());
    assert!(rest.last().is_some_and(Result::is_err), "{rest:?}");
}

/// Two threads join a closed cluster pool at once: neither returns before the work ended
/// (each reads, as its join returns, how many results are not in). Before (review133 M2):
/// the second joiner found the driver thread's handle taken and returned `Ok` at once.
#[test]
fn two_joins_of_a_cluster_pool_both_return_once_the_work_ended() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let pool = pool(&redis, 2);
    let busy: Vec<_> = (0..2).map(|_| pool.apply_async(sleep_ms, 1500).unwrap()).collect();
    pool.close();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (tx, pool, busy) = (tx.clone(), &pool, &busy);
            s.spawn(move || {
                let joined = pool.join().map_err(|e| e.to_string());
                // Right as it returned, no waiting.
                let unready = busy.iter().filter(|r| !r.ready()).count();
                tx.send((joined, unready)).unwrap();
            });
        }
        let seen: Vec<_> = (0..2).map(|_| rx.recv_timeout(Duration::from_secs(60)).unwrap()).collect();
        println!("two joins of a closed cluster pool (join, results not in as it returned): {seen:?}");
        for (joined, unready) in &seen {
            assert!(matches!(joined, Ok(())), "{seen:?}");
            assert_eq!(*unready, 0, "a join returned before the work ended: {seen:?}");
        }
    });
}

/// A callback (run on the pool's driver thread) that joins its closed cluster pool gets
/// `JoinFromWorker`, as a process pool's does, and a later `join` still waits for the work.
/// Before (review133 M2): the callback's join panicked ("Resource deadlock avoided": std
/// refuses to join the current thread), and the later `join` returned at once.
#[test]
fn a_callback_joining_its_cluster_pool_gets_join_from_worker() {
    let _w = watchdog(LIMIT);
    let Some((redis, _node)) = cluster(&[]) else { return };
    let pool = std::sync::Arc::new(pool(&redis, 1));
    let own = pool.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let _first = pool
        .apply_async_with(
            sleep_ms,
            10,
            multiproc::ApplyOptions::new().callback(move |_: &u64| {
                let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| own.join()));
                tx.send(joined.map_err(|_| "panicked")).unwrap();
            }),
        )
        .unwrap();
    let later = pool.apply_async(sleep_ms, 1500).unwrap();
    pool.close();
    let seen = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    let joined = pool.join();
    let ready = later.ready();
    println!("the callback's join: {seen:?}; then the main join: {joined:?}, the 1500 ms task in: {ready}");
    assert!(matches!(seen, Ok(Err(PoolError::JoinFromWorker))), "{seen:?}");
    assert!(joined.is_ok(), "{joined:?}");
    assert!(ready, "the join returned before the work ended");
}
