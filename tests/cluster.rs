//! `multiproc::cluster`: objects in a Redis server, shared by independent programs.
//!
//! Each test starts its own Redis (`redis-server` on a unix socket in a temporary
//! directory, no persistence), stopped by pid at the end. Without `redis-server` the tests
//! say so and pass, unless `MULTIPROC_REQUIRE_REDIS` is set (CI sets it).
//!
//! The "other program" of a test is this test binary run again with `--exact cluster_role`
//! and a role in the environment: an independent process, not a child of the family.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::redis::Redis;
use common::{Watchdog, watchdog};
use multiproc::cluster::{ClusterError, GetError, PutError, Queue, Tls};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(60);
const ROLE: &str = "MULTIPROC_TEST_CLUSTER_ROLE";
const URL: &str = "MULTIPROC_TEST_CLUSTER_URL";

/// Runs this test binary again as another program playing `role` against `url`; it
/// speaks on its stderr.
fn other_program(role: &str, url: &str) -> Child {
    other_program_with(role, url, &[])
}

/// [`other_program`] with more variables in its environment.
fn other_program_with(role: &str, url: &str, env: &[(&str, &str)]) -> Child {
    Command::new("setpriv")
        .args(["--pdeathsig", "KILL"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "cluster_role", "--nocapture", "--test-threads", "1"])
        .env(ROLE, role)
        .env(URL, url)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The pid of the server the "ack no reply" program pauses.
const REDIS_PID: &str = "MULTIPROC_TEST_REDIS_PID";
/// The "signalled open" program's queue timeout, in milliseconds.
const TIMEOUT_MS: &str = "MULTIPROC_TEST_TIMEOUT_MS";
/// The file of the authority that the "signalled get" program's `rediss://` server has.
const CA: &str = "MULTIPROC_TEST_CA";

/// Makes `SIGUSR1` interrupt this process's blocking calls and nothing else: a handler that
/// does nothing, installed without `SA_RESTART` (as a program may).
fn interrupting_sigusr1() {
    extern "C" fn nothing(_: libc::c_int) {}
    // SAFETY: a handler that does nothing is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = nothing as extern "C" fn(libc::c_int) as usize;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()), 0);
    }
}

/// Says the thread to signal (a process-wide signal goes to any thread that takes it).
fn say_waiting_thread() {
    // SAFETY: gettid has no preconditions.
    eprintln!("waiting in thread {}", unsafe { libc::gettid() });
}

/// The other programs' side; a no-op in a normal test run.
#[test]
fn cluster_role() {
    let (Ok(role), Ok(url)) = (std::env::var(ROLE), std::env::var(URL)) else { return };
    match role.as_str() {
        // Doubles every request until it receives None.
        "doubler" => {
            let requests = Queue::<Option<u64>>::builder().authkey(TEST_KEY).open(&url, "requests").unwrap();
            let replies = Queue::<u64>::builder().authkey(TEST_KEY).open(&url, "replies").unwrap();
            while let Some(n) = requests.get().unwrap() {
                replies.put(n * 2).unwrap();
            }
        }
        // Takes one job, says so, and never acknowledges it (a lease long enough that the job
        // is surely still held when the test looks).
        "holder" => {
            let jobs =
                Queue::<String>::builder().authkey(TEST_KEY).lease(Duration::from_secs(3)).open(&url, "jobs").unwrap();
            let job = jobs.receive().unwrap();
            eprintln!("holding {}", *job);
            std::thread::sleep(Duration::from_secs(120));
        }
        // Waits for a job (long past its lease), then takes it and never acknowledges it.
        "waiting holder" => {
            let jobs = Queue::<String>::builder()
                .authkey(TEST_KEY)
                .lease(Duration::from_millis(300))
                .open(&url, "jobs")
                .unwrap();
            eprintln!("waiting");
            let job = jobs.receive().unwrap();
            eprintln!("holding {}", *job);
            std::thread::sleep(Duration::from_secs(120));
        }
        // Gets the refused item of queue "once", held between its take and its set-aside
        // while the item goes back in line as another consumer's reclaim would put it,
        // and says what the get returned. The hold point is armed here, in a process of
        // its own: armed in the test process, it held every test's get of a refused item
        // (review80 L6).
        // Gets 7 from queue "q", held between its take and its acknowledgement while the
        // server (`REDIS_PID`) is paused, and says what the get returned (in a process of
        // its own, as "refused taken back").
        "ack no reply" => {
            let pid: u32 = std::env::var(REDIS_PID).unwrap().parse().unwrap();
            let q =
                Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(500)).open(&url, "q").unwrap();
            multiproc::__private::crash_at("hold:cluster.get.taken");
            let got = std::thread::scope(|s| {
                let getter = s.spawn(|| q.get());
                while multiproc::__private::crash_holding() < 1 {
                    std::thread::sleep(Duration::from_millis(5));
                }
                common::redis::pause(pid);
                multiproc::__private::crash_disarm();
                let got = getter.join().unwrap();
                common::redis::resume(pid);
                got
            });
            eprintln!("the held get: {got:?}");
        }
        // Gets 1 from queue "gone" (a lease of 300 ms), then loses its next take (never sent:
        // a partition), says that take's bytes (hex) as they would reach Redis late, and
        // waits to be killed.
        "lost take" => {
            let q =
                Queue::<u32>::builder().authkey(TEST_KEY).lease(Duration::from_millis(300)).open(&url, "gone").unwrap();
            assert_eq!(q.get(), Ok(1));
            multiproc::__private::crash_at("fail:cluster.take.lost");
            let lost = q.try_get();
            multiproc::__private::crash_disarm();
            assert!(matches!(lost, Err(GetError::Redis(ClusterError::Unreachable(_)))), "{lost:?}");
            let late = multiproc::__private::cluster_take_command(&q, 2);
            eprintln!("late take {}", late.iter().map(|b| format!("{b:02x}")).collect::<String>());
            std::thread::sleep(Duration::from_secs(120));
        }
        // Opens a queue with no key given (the key file of `XDG_CONFIG_HOME`), on a server
        // it never reaches, and says how the open failed: on the key, or on the server.
        "default key" => {
            let opened = Queue::<u32>::open(&url, "q");
            eprintln!("opened {:?}", opened.err());
        }
        "refused taken back" => {
            let q = Queue::<u64>::builder().authkey(TEST_KEY).open(&url, "once").unwrap();
            let mut conn = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
            multiproc::__private::crash_at("hold:cluster.get.refused");
            let got = std::thread::scope(|s| {
                let getter = s.spawn(|| q.get());
                while multiproc::__private::crash_holding() < 1 {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let held: Vec<String> = redis::cmd("KEYS").arg("mp:{q:once}:proc:*").query(&mut conn).unwrap();
                let moved: Vec<u8> =
                    redis::cmd("RPOPLPUSH").arg(&held[0]).arg("mp:{q:once}:items").query(&mut conn).unwrap();
                assert_eq!(moved, [0, 0x9a, 0x05], "the refused item, back in line");
                multiproc::__private::crash_disarm();
                getter.join().unwrap()
            });
            eprintln!("the held get: {got:?}");
        }
        // Puts 1 while the reply of every put is lost (the command ran), puts it again as
        // its error allows, then puts 2.
        "lost put reply" => {
            let q =
                Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(300)).open(&url, "q").unwrap();
            multiproc::__private::crash_at("fail:cluster.put.reply");
            let put = q.put(1);
            multiproc::__private::crash_disarm();
            let e = put.expect_err("the put's reply was lost, yet it succeeded");
            eprintln!("the put failed: {e}");
            put_again(&q, e).unwrap();
            q.put(2).unwrap();
        }
        // Puts 1 while the reply of every put is lost, puts it again (exactly once), then
        // 2..=100 (the handle settles 1 for good), then replays a copy of the first send of 1
        // as it would reach Redis late, and says Redis's reply.
        "late put copy" => {
            let q =
                Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(300)).open(&url, "q").unwrap();
            multiproc::__private::crash_at("fail:cluster.put.reply");
            let put = q.put(1);
            multiproc::__private::crash_disarm();
            let Err(PutError::Unsure(token, _)) = put else { panic!("the put's reply was lost: {put:?}") };
            let copy = multiproc::__private::cluster_put_command(&q, &token);
            q.put_again(token).unwrap();
            for n in 2..=100 {
                q.put(n).unwrap();
            }
            let mut s = UnixStream::connect(url.strip_prefix("redis+unix://").unwrap()).unwrap();
            let args: Vec<&[u8]> = copy.iter().map(Vec::as_slice).collect();
            s.write_all(&common::machine::resp(&args)).unwrap();
            let mut reply = [0; 64];
            let n = s.read(&mut reply).unwrap();
            eprintln!("the late copy: {}", String::from_utf8_lossy(&reply[..n]).trim());
        }
        // Waits in a get while the test signals it, then says what the get gave.
        "signalled get" => {
            interrupting_sigusr1();
            // A stalled Redis (the test stops it) is given up within the queue's timeout.
            let stalled = std::env::var_os("MULTIPROC_TEST_STALLED").is_some();
            let mut q = Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_secs(1));
            if let Some(ca) = std::env::var_os(CA) {
                q = q.tls(Tls::new().ca_pem(std::fs::read(ca).unwrap())); // a `rediss://` server's
            }
            let q = q.open(&url, "q").unwrap();
            say_waiting_thread();
            let got = q.get_timeout(Duration::from_secs(if stalled { 3 } else { 40 }));
            eprintln!("got {got:?}");
        }
        // Opens a queue (its connect, handshake and first command) while the test signals
        // it, then says what the open gave.
        "signalled open" => {
            interrupting_sigusr1();
            let timeout = Duration::from_millis(std::env::var(TIMEOUT_MS).unwrap().parse().unwrap());
            say_waiting_thread();
            let opened = Queue::<u32>::builder().authkey(TEST_KEY).timeout(timeout).open(&url, "q");
            eprintln!("opened {:?}", opened.map(|_| ()));
        }
        other => panic!("unknown role {other}"),
    }
}

/// A put that failed is put again the way its error allows.
fn put_again(q: &Queue<u32>, e: PutError<u32>) -> Result<(), PutError<u32>> {
    match e {
        PutError::Unsure(token, _) => q.put_again(token),
        other => panic!("a put whose reply was lost failed with {other:?}"),
    }
}

/// A put that ran but whose reply was lost (in another program, a fail point drops the
/// reply of a put that ran, as a connection cut after the command reached Redis does)
/// fails; put again as its error allows, the value is in the queue once.
#[test]
fn a_put_whose_reply_was_lost_put_again_is_in_the_queue_once() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let mut other = other_program("lost put reply", &redis.url);
    let mut said = String::new();
    other.stderr.take().unwrap().read_to_string(&mut said).unwrap();
    assert!(other.wait().unwrap().success(), "{said}");
    let q = Queue::<u32>::builder().authkey(TEST_KEY).open(&redis.url, "q").unwrap();
    let mut got = Vec::new();
    while let Ok(v) = q.try_get() {
        got.push(v);
    }
    assert_eq!(got, [1, 2], "the put put again is in the queue twice");
}

/// A copy of a put that reaches Redis late (a dropped connection's command, run when the
/// server goes on), after the put was settled and many others followed, is refused: the
/// value stays in the queue once.
#[test]
fn a_late_copy_of_a_settled_put_is_refused() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let mut other = other_program("late put copy", &redis.url);
    let mut said = String::new();
    other.stderr.take().unwrap().read_to_string(&mut said).unwrap();
    assert!(other.wait().unwrap().success(), "{said}");
    assert!(said.contains("the late copy: :2"), "{said}");
    let q = Queue::<u32>::builder().authkey(TEST_KEY).open(&redis.url, "q").unwrap();
    let mut got = Vec::new();
    while let Ok(v) = q.try_get() {
        got.push(v);
    }
    assert_eq!(got, (1..=100).collect::<Vec<u32>>(), "the late copy put 1 again");
}

/// review131 L5: the numbers of settled puts left the record 64 at a time whatever the
/// floor, so while an older put was still open (its token held) the floor stayed below a
/// forgotten number, and a late copy of that put ran again. A settled number now leaves the
/// record only once the floor is above it.
#[test]
fn a_late_copy_of_a_settled_put_above_the_floor_is_refused() {
    let alone = arming_alone(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(300)).open(&redis.url, "above");
    let q = q.unwrap();
    let unsure = |v| match alone.armed("fail:cluster.put.lost", || q.put(v)) {
        Err(PutError::Unsure(token, _)) => token,
        other => panic!("the put's sends were lost: {other:?}"),
    };
    // The floor stays at this put's number while its token is held.
    let held = unsure(0);
    let settled = unsure(1);
    let copy = multiproc::__private::cluster_put_command(&q, &settled);
    q.put_again(settled).unwrap();
    for v in 2..=200 {
        q.put(v).unwrap();
    }
    let args: Vec<&[u8]> = copy.iter().map(Vec::as_slice).collect();
    let late = redis.raw(&args);
    eprintln!("the late copy of a settled put above the floor: {:?}", String::from_utf8_lossy(&late).trim());
    q.put_again(held).unwrap();
    let mut got = Vec::new();
    while let Ok(v) = q.try_get() {
        got.push(v);
    }
    got.sort_unstable();
    assert_eq!(got, (0..=200).collect::<Vec<u32>>(), "the late copy put 1 again");
}

/// A put whose reply does not come (Redis stopped past the read limit, the timeout plus one
/// second, and let go within the timeout after that) is sent again by the put itself: it
/// succeeds, and the value is in the queue once (the server, let go, runs both copies).
#[test]
fn a_put_sent_again_after_its_reply_was_lost_is_in_the_queue_once() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_secs(1)).open(&redis.url, "q").unwrap();
    q.put(0).unwrap();
    let put = std::thread::scope(|s| {
        redis.pause();
        let putter = s.spawn(|| q.put(1));
        // Past the first send's read limit (2 s), within the timeout after it.
        std::thread::sleep(Duration::from_millis(2500));
        redis.resume();
        putter.join().unwrap()
    });
    assert!(put.is_ok(), "{put:?}");
    let mut got = Vec::new();
    while let Ok(v) = q.try_get() {
        got.push(v);
    }
    assert_eq!(got, [0, 1]);
}

/// Reads the "signalled get" program's first line: the thread its get waits in.
fn waiting_thread(other: &mut Child) -> (BufReader<std::process::ChildStderr>, libc::pid_t) {
    let mut said = BufReader::new(other.stderr.take().unwrap());
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    let tid = line.trim().strip_prefix("waiting in thread ").unwrap_or_else(|| panic!("{line}"));
    (said, tid.parse().unwrap())
}

/// Sends `signal` to thread `tid` of the test's child `pid` (`tgkill`: never to another
/// process that took a reused number).
fn signal_thread(pid: libc::pid_t, tid: libc::pid_t, signal: libc::c_int) -> libc::c_long {
    // SAFETY: a system call on numbers only.
    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) }
}

/// A signal that lands while a get blocks in Redis (the program stopped and continued, as
/// a shell's job control or a debugger does, or sent a signal it handles) does not fail the
/// get: the interrupted read goes on (EINTR), and the value put afterwards is taken.
#[test]
fn a_signal_during_a_blocking_get_does_not_fail_it() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let mut other = other_program("signalled get", &redis.url);
    let pid = other.id() as libc::pid_t;
    let (mut said, getter) = waiting_thread(&mut other);
    let blocked = || String::from_utf8_lossy(&redis.raw(&[b"INFO", b"clients"])).contains("blocked_clients:1");
    let stopped = || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") T "));
    for round in 0..6 {
        // Each signal while the get's BLMOVE waits in Redis, its read blocked.
        let mut ended = false;
        assert!(common::eventually(Duration::from_secs(30), || blocked() || {
            ended = other.try_wait().unwrap().is_some();
            ended
        }));
        if ended {
            break; // the get failed: said below
        }
        // SAFETY: signals to a child of this test, alive until `wait` below.
        if round % 2 == 0 {
            assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
            assert!(common::eventually(Duration::from_secs(30), stopped));
            assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
        } else {
            assert_eq!(signal_thread(pid, getter, libc::SIGUSR1), 0);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Queue::<u32>::builder().authkey(TEST_KEY).open(&redis.url, "q").unwrap().put(7).unwrap();
    let mut rest = String::new();
    said.read_to_string(&mut rest).unwrap();
    assert!(other.wait().unwrap().success(), "{rest}");
    assert!(rest.contains("got Ok(7)"), "{rest}");
}

/// A program stopped (job control, a debugger) for longer than its queue's wait, while its
/// get blocks in Redis, keeps the reply that came during the stop: after the continue, the
/// read interrupted by the stop has no time left, and looks at the socket once more before
/// it gives up. (It gave up at once: the reply in the buffer was thrown away with the
/// connection, and the get failed `Unreachable`; review39 L1.)
#[test]
fn a_stop_longer_than_the_wait_keeps_the_reply_that_came_during_it() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let mut other = other_program("signalled get", &redis.url);
    let pid = other.id() as libc::pid_t;
    let (mut said, _getter) = waiting_thread(&mut other);
    let blocked = || String::from_utf8_lossy(&redis.raw(&[b"INFO", b"clients"])).contains("blocked_clients:1");
    let stopped = || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") T "));
    assert!(common::eventually(Duration::from_secs(30), || blocked() || other.try_wait().unwrap().is_some()));
    // SAFETY: signals to a child of this test, alive until `wait` below.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    assert!(common::eventually(Duration::from_secs(30), stopped));
    // The reply (the item, or the end of the `BLMOVE`'s block) comes during the stop.
    Queue::<u32>::builder().authkey(TEST_KEY).open(&redis.url, "q").unwrap().put(7).unwrap();
    // Longer than the get's wait: its timeout (1 s) and a second.
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let mut rest = String::new();
    said.read_to_string(&mut rest).unwrap();
    assert!(other.wait().unwrap().success(), "{rest}");
    assert!(rest.contains("got Ok(7)"), "{rest}");
}

/// Signals that keep landing while a get waits on a stopped Redis do not stretch its
/// waits: each read interrupted goes on for what its wait had left, so the get still gives
/// up within its timeouts (a read begun again with the whole limit at each signal would
/// wait for as long as they come).
#[test]
fn signals_during_a_wait_on_a_stopped_redis_do_not_stretch_it() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let mut other = other_program_with("signalled get", &redis.url, &[("MULTIPROC_TEST_STALLED", "1")]);
    let (said, getter) = waiting_thread(&mut other);
    redis.pause();
    let (ended, rest) = signal_until_it_ends(&mut other, said, getter);
    redis.resume();
    assert!(ended, "the get did not give up while signals came: {rest}");
    assert!(rest.contains("got Err"), "{rest}");
}

/// Signals `other`'s thread `tid` every 20 ms (far more often than a read's limit, its
/// timeout plus a second) until it ends, for 30 s at most (then it is killed); returns
/// whether it ended, and what it said.
fn signal_until_it_ends(
    other: &mut Child,
    mut said: BufReader<std::process::ChildStderr>,
    tid: libc::pid_t,
) -> (bool, String) {
    let pid = other.id() as libc::pid_t;
    let ended = common::eventually(Duration::from_secs(30), || {
        signal_thread(pid, tid, libc::SIGUSR1);
        std::thread::sleep(Duration::from_millis(20));
        other.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = other.kill();
    }
    let mut rest = String::new();
    said.read_to_string(&mut rest).unwrap();
    (ended, rest)
}

/// Over TLS too, signals do not stretch a wait: rustls makes an interrupted socket read
/// again itself, with the socket's whole timeout, so the time-left retry is on the socket
/// under it (review36 H2). A server that takes the connection (the kernel's backlog) and
/// never answers: the handshake waits for its hello, and gives up within the timeout
/// while signals keep coming (it waited for as long as they came).
#[test]
fn signals_during_a_tls_handshake_with_a_silent_server_do_not_stretch_it() {
    let _w = unarmed_test(LIMIT);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("rediss://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let mut other = other_program_with("signalled open", &url, &[(TIMEOUT_MS, "1000")]);
    let (said, opener) = waiting_thread(&mut other);
    let (ended, rest) = signal_until_it_ends(&mut other, said, opener);
    assert!(ended, "the handshake did not give up while signals came: {rest}");
    assert!(rest.contains("opened Err(Unreachable"), "{rest}");
}

/// The same over TLS, once connected: signals during a get on a stopped `rediss://` Redis
/// do not stretch its waits (they did for as long as signals came: rustls made each
/// interrupted read again with the socket's whole timeout; review36 H2).
#[test]
fn signals_during_a_wait_on_a_stopped_tls_redis_do_not_stretch_it() {
    let _w = unarmed_test(LIMIT);
    let Some((redis, _pki, dir)) = common::machine::tls_redis(&[]) else { return };
    let url = format!("rediss://:s3cret@127.0.0.1:{}/0", redis.port);
    let ca = dir.join("ca.pem");
    let env = [("MULTIPROC_TEST_STALLED", "1"), (CA, ca.to_str().unwrap())];
    let mut other = other_program_with("signalled get", &url, &env);
    let (said, getter) = waiting_thread(&mut other);
    common::redis::pause(redis.pid);
    let (ended, rest) = signal_until_it_ends(&mut other, said, getter);
    common::redis::resume(redis.pid);
    assert!(ended, "the get did not give up while signals came: {rest}");
    assert!(rest.contains("got Err"), "{rest}");
}

/// review39 L2 through a name: a host whose addresses (a hosts file, bound over
/// `/etc/hosts` in the other program's mount namespace) each keep a connect waiting (twenty
/// listeners on one port whose backlogs are full), then one that refuses: the open gives up
/// at its deadline and never reaches the last. (Each address had the whole timeout: the
/// open waited twenty of them, reached the last and failed "Connection refused".)
#[test]
fn a_name_whose_addresses_keep_a_connect_waiting_opens_within_one_deadline() {
    let _w = unarmed_test(LIMIT);
    if !common::machine::namespaces_allowed() {
        return;
    }
    let waiting: Vec<String> = (2..=21).map(|host| format!("127.0.0.{host}")).collect();
    // One port free on every address (another program may hold it on one).
    let (port, _full) = (0..10)
        .find_map(|_| {
            let port = std::net::TcpListener::bind("127.0.0.2:0").ok()?.local_addr().ok()?.port();
            let full: Option<Vec<_>> = waiting
                .iter()
                .map(|ip| {
                    let listener = std::net::TcpListener::bind((ip.as_str(), port)).ok()?;
                    // SAFETY: `listen` on a listening socket of ours sets its backlog, nothing else.
                    assert_eq!(unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 0) }, 0);
                    let place_taken = std::net::TcpStream::connect((ip.as_str(), port)).ok()?;
                    Some((listener, place_taken))
                })
                .collect();
            Some((port, full?))
        })
        .expect("no port free on every address");
    let hosts = std::env::temp_dir().join(format!("multiproc-hosts-{}", std::process::id()));
    let lines: String =
        waiting.iter().chain([&"127.255.255.254".to_string()]).map(|ip| format!("{ip} several.test\n")).collect();
    std::fs::write(&hosts, lines).unwrap();
    let other = Command::new("unshare")
        .args(["--mount", "sh", "-c", "mount --bind \"$0\" /etc/hosts && exec \"$@\""])
        .arg(&hosts)
        .args(["setpriv", "--pdeathsig", "KILL"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "cluster_role", "--nocapture", "--test-threads", "1"])
        .env(ROLE, "signalled open")
        .env(URL, format!("redis://several.test:{port}/"))
        .env(TIMEOUT_MS, "100")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&hosts);
    let said = String::from_utf8_lossy(&other.stderr);
    assert!(said.contains(r#"opened Err(Unreachable("timed out"))"#), "{said}");
}

/// A unix socket whose every place is taken (`backlog` 0 and one connection waiting to be
/// accepted, as a stopped or swamped server's fills up): `(directory, url, listener, the
/// waiting connection)`. A connect to it waits for a place.
fn full_unix_socket(name: &str) -> (std::path::PathBuf, String, std::os::unix::net::UnixListener, UnixStream) {
    let dir = std::env::temp_dir().join(format!("multiproc-full-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("full.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // SAFETY: `listen` on a listening socket of ours sets its backlog, nothing else.
    assert_eq!(unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 0) }, 0);
    let waiting = UnixStream::connect(&path).unwrap();
    (dir.clone(), format!("redis+unix://{}", path.display()), listener, waiting)
}

/// A unix-socket connect to a server that takes no more connections gives up within the
/// timeout, as a TCP one does (it waited for ever).
#[test]
fn a_unix_connect_to_a_full_server_gives_up_within_the_timeout() {
    let _w = unarmed_test(LIMIT);
    let (dir, url, _listener, _waiting) = full_unix_socket("timeout");
    let opening = std::thread::spawn(move || {
        Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(300)).open(&url, "q")
    });
    let ended = common::eventually(Duration::from_secs(30), || opening.is_finished());
    let _ = std::fs::remove_dir_all(dir);
    assert!(ended, "the connect did not give up");
    let opened = opening.join().unwrap().map(|_| ());
    assert!(matches!(&opened, Err(ClusterError::Unreachable(why)) if why.contains("timed out")), "{opened:?}");
}

/// A zero timeout connects and is answered over every transport: a unix socket with room
/// (the connect's deadline is the socket's send timeout, which the kernel would take as
/// none if zero), TCP and TLS (std's `connect_timeout` refuses a zero one: every open
/// failed `Unreachable("cannot set a 0 duration timeout")`, and a node with that timeout
/// never served; review39 M2).
#[test]
fn a_zero_timeout_connects_over_every_transport() {
    let _w = unarmed_test(LIMIT);
    let Some(unix) = Redis::start(&[]) else { return };
    let Some(tcp) = common::machine::TcpRedis::start(&[]) else { return };
    let Some((tls, pki, dir)) = common::machine::tls_redis(&[]) else { return };
    // The certificates' directory goes however the test ends (`ScratchDir`).
    let _dir = dir;
    let tcp_url = format!("redis://127.0.0.1:{}/", tcp.port);
    let tls_url = format!("rediss://:s3cret@127.0.0.1:{}/0", tls.port);
    for (url, certificates) in
        [(&unix.url, None), (&tcp_url, None), (&tls_url, Some(Tls::new().ca_pem(pki.ca.clone())))]
    {
        let mut builder = Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::ZERO);
        if let Some(certificates) = certificates {
            builder = builder.tls(certificates);
        }
        let round_trip = builder.open(url, "q").map_err(|e| e.to_string()).and_then(|q| {
            q.put(7).map_err(|e| e.to_string())?;
            q.get().map_err(|e| e.to_string())
        });
        assert_eq!(round_trip, Ok(7), "over {url}");
    }
}

/// A signal during a unix-socket connect that waits for a place (Redis stopped with its
/// backlog full) does not fail it: the connect goes on with the time it had left, and
/// connects once Redis takes connections again (it failed with "Interrupted system call").
#[test]
fn a_signal_during_a_unix_connect_does_not_fail_it() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&["--tcp-backlog", "0"]) else { return };
    redis.pause();
    let _waiting = UnixStream::connect(redis.socket()).unwrap(); // the backlog's one place
    let mut other = other_program_with("signalled open", &redis.url, &[(TIMEOUT_MS, "30000")]);
    let pid = other.id() as libc::pid_t;
    let (mut said, opener) = waiting_thread(&mut other);
    let connecting = || {
        let call = std::fs::read_to_string(format!("/proc/{pid}/task/{opener}/syscall")).unwrap_or_default();
        call.split(' ').next() == Some(&libc::SYS_connect.to_string())
    };
    for _ in 0..5 {
        let mut ended = false;
        assert!(common::eventually(Duration::from_secs(30), || connecting() || {
            ended = other.try_wait().unwrap().is_some();
            ended
        }));
        if ended {
            break; // the open failed: said below
        }
        assert_eq!(signal_thread(pid, opener, libc::SIGUSR1), 0);
        std::thread::sleep(Duration::from_millis(50));
    }
    redis.resume();
    let mut rest = String::new();
    said.read_to_string(&mut rest).unwrap();
    assert!(other.wait().unwrap().success(), "{rest}");
    assert!(rest.contains("opened Ok"), "{rest}");
}

/// What we do not do is refused at build, typed, never silently left out: a URL that asks
/// for RESP3 (we speak RESP2: its user would believe they got RESP3; it was ignored), and
/// the "any" addresses `0.0.0.0` and `::`, which a server binds to but a client cannot
/// reach (Linux connects them to this machine: a URL copied from `bind 0.0.0.0` would join
/// whatever server runs locally; the redis crate's URL parser refuses them, which this
/// pins).
#[test]
fn a_url_asking_for_resp3_or_an_any_address_is_refused() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    for protocol in ["resp3", "3"] {
        let resp3 = Queue::<u32>::builder().authkey(TEST_KEY).open(&format!("{}?protocol={protocol}", redis.url), "q");
        assert!(matches!(&resp3, Err(ClusterError::BadUrl(why)) if why.contains("RESP3")), "{resp3:?}");
    }
    assert!(Queue::<u32>::builder().authkey(TEST_KEY).open(&format!("{}?protocol=resp2", redis.url), "q").is_ok());
    // A listener on this machine's loopback, which the any address reached.
    let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = local.local_addr().unwrap().port();
    for host in ["0.0.0.0", "[::]"] {
        let any = Queue::<u32>::builder()
            .authkey(TEST_KEY)
            .timeout(Duration::from_millis(300))
            .open(&format!("redis://{host}:{port}"), "q");
        assert!(matches!(&any, Err(ClusterError::BadUrl(why)) if why.contains("wildcard")), "{any:?}");
    }
    // Names that resolve to it, which the URL parser leaves to the resolver: `inet_aton`'s
    // spellings (as a hosts entry would; they reached the listener, and the open waited for
    // its answer).
    for host in ["0", "0x0", "0.0"] {
        let any = Queue::<u32>::builder()
            .authkey(TEST_KEY)
            .timeout(Duration::from_millis(300))
            .open(&format!("redis://{host}:{port}"), "q");
        assert!(matches!(&any, Err(ClusterError::BadUrl(why)) if why.contains("any address")), "{host}: {any:?}");
    }
}

#[test]
fn round_trip_between_two_independent_programs() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let mut doubler = other_program("doubler", &redis.url);
    let requests = Queue::<Option<u64>>::builder().authkey(TEST_KEY).open(&redis.url, "requests").unwrap();
    let replies = Queue::<u64>::builder().authkey(TEST_KEY).open(&redis.url, "replies").unwrap();
    for n in 0..100 {
        requests.put(Some(n)).unwrap();
    }
    let mut got: Vec<u64> = (0..100).map(|_| replies.get().unwrap()).collect();
    requests.put(None).unwrap();
    assert!(doubler.wait().unwrap().success());
    got.sort_unstable();
    assert_eq!(got, (0..100).map(|n| n * 2).collect::<Vec<_>>());
    assert!(requests.is_empty().unwrap() && replies.is_empty().unwrap());
}

#[test]
fn an_item_held_by_a_killed_consumer_is_delivered_to_another() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let jobs =
        Queue::<String>::builder().authkey(TEST_KEY).lease(Duration::from_secs(3)).open(&redis.url, "jobs").unwrap();
    jobs.put("the only job".to_string()).unwrap();
    let mut holder = other_program("holder", &redis.url);
    let mut out = BufReader::new(holder.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("holding") {
        line.clear();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "the holder ended before taking the job");
    }
    assert_eq!(line.trim_end(), "holding the only job");
    assert!(matches!(jobs.try_get(), Err(GetError::Empty)), "the job is held by the other consumer");
    holder.kill().unwrap(); // SIGKILL: no destructor runs
    holder.wait().unwrap();
    assert_eq!(jobs.get_timeout(Duration::from_secs(30)).unwrap(), "the only job");
    assert!(matches!(jobs.try_get(), Err(GetError::Empty)), "delivered again once, not twice");
}

/// Reads the other program's stderr up to a line that starts with `prefix`.
fn read_until(out: &mut impl BufRead, prefix: &str) -> String {
    let mut line = String::new();
    while !line.starts_with(prefix) {
        line.clear();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "the other program ended before saying {prefix:?}");
    }
    line.trim_end().to_string()
}

#[test]
fn a_consumer_that_waited_longer_than_its_lease_still_gives_back_what_it_held() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let jobs = Queue::<String>::builder()
        .authkey(TEST_KEY)
        .lease(Duration::from_millis(300))
        .open(&redis.url, "jobs")
        .unwrap();
    let mut holder = other_program("waiting holder", &redis.url);
    let mut out = BufReader::new(holder.stderr.take().unwrap());
    read_until(&mut out, "waiting");
    // The holder waits; meanwhile this consumer's gets run the reclaim, again and again.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(600) {
        assert!(matches!(jobs.try_get(), Err(GetError::Empty)));
        std::thread::sleep(Duration::from_millis(20));
    }
    jobs.put("the only job".to_string()).unwrap();
    assert_eq!(read_until(&mut out, "holding"), "holding the only job");
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(jobs.get_timeout(Duration::from_secs(20)).unwrap(), "the only job");
}

#[test]
fn an_unacknowledged_value_that_is_dropped_goes_back_first_in_line() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = Queue::<u32>::builder().authkey(TEST_KEY).open(&redis.url, "q").unwrap();
    for n in 1..=3 {
        q.put(n).unwrap();
    }
    let first = q.receive().unwrap();
    assert_eq!(*first, 1);
    drop(first);
    let again = q.receive().unwrap();
    assert_eq!(again.ack().unwrap(), 1);
    assert_eq!((q.get().unwrap(), q.get().unwrap()), (2, 3));
}

/// A value dropped unacknowledged after another consumer took it back (this one paused
/// past its lease) is not put back a second time: it goes back in line only from this
/// consumer's processing list (as a refused item is set aside: review75 L5).
#[test]
fn a_dropped_value_taken_back_meanwhile_is_in_line_once() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = Queue::<u32>::builder().authkey(TEST_KEY).open(&redis.url, "back").unwrap();
    q.put(1).unwrap();
    let held = q.receive().unwrap();
    // As another consumer's reclaim would: out of the processing list, back in line.
    let processing = redis.raw(&[b"KEYS", b"mp:{q:back}:proc:*"]);
    let processing = String::from_utf8_lossy(&processing).lines().nth(2).unwrap().to_string();
    assert!(redis.raw(&[b"RPOPLPUSH", processing.as_bytes(), b"mp:{q:back}:items"]).starts_with(b"$"));
    drop(held);
    assert_eq!(redis.raw(&[b"LLEN", b"mp:{q:back}:items"]), b":1\r\n", "in line once");
}

#[test]
fn redis_killed_is_a_typed_error_not_a_hang() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let url = redis.url.clone();
    let q = Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_secs(2)).open(&url, "q").unwrap();
    let waiting = std::thread::spawn(move || q.get());
    std::thread::sleep(Duration::from_millis(200)); // usually inside BLMOVE; either way it must end
    redis.kill();
    assert!(matches!(waiting.join().unwrap(), Err(GetError::Redis(ClusterError::Unreachable(_)))));
    let again = Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_secs(2)).open(&url, "q");
    assert!(matches!(again, Err(ClusterError::Unreachable(_))), "{again:?}");
}

/// A large put to a server that reads it slowly (each write moves a few bytes, as a stalled
/// server's kernel making room a little at a time lets it) fails within one exchange's
/// wait, each time it is sent: `Unsure`, timed out. (Each write that moved bytes had a wait
/// of its own: every send went on for as long as the server read, and failed on its close,
/// "Connection reset by peer".) A unix socket: its small buffers take few bytes at once,
/// and the bytes a write moves buy the wait time (1 MiB/s), so over TCP's megabytes of
/// buffers the put would fail only after seconds more.
#[test]
fn a_large_put_to_a_server_that_reads_slowly_fails_timed_out() {
    let _w = unarmed_test(LIMIT);
    // Under `/tmp`: a unix socket's path has room for ~100 bytes. Removed at the drop.
    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = Dir(format!("/tmp/multiproc-slow-{}", std::process::id()).into());
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join("slow.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let url = format!("redis+unix://{}", path.display());
    // Each connection: its `PING` answered and its `CONFIG GET` refused (as a managed server
    // refuses it: the item is sent, its bound unknown), then 16 KiB read every 50 ms
    // (320 KiB/s, under the 1 MiB/s at which moved bytes buy an exchange time) for fifteen
    // seconds at most.
    std::thread::spawn(move || {
        for peer in listener.incoming() {
            let mut peer = peer.unwrap();
            std::thread::spawn(move || {
                let mut chunk = vec![0; 16 << 10];
                for _ in 0..300 {
                    match peer.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) if chunk[..n].ends_with(b"PING\r\n") => _ = peer.write_all(b"+PONG\r\n"),
                        Ok(n) if chunk[..n].windows(6).any(|w| w == b"CONFIG") => {
                            _ = peer.write_all(b"-ERR unknown command 'CONFIG'\r\n")
                        }
                        Ok(_) => {}
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
    });
    let q = Queue::<Vec<u8>>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(300)).open(&url, "q").unwrap();
    let put = q.put(vec![7; 32 << 20]);
    assert!(
        matches!(&put, Err(PutError::Unsure(_, ClusterError::Unreachable(why))) if why.contains("timed out")),
        "{:?}",
        put.map_err(|e| e.to_string())
    );
}

#[test]
fn a_server_that_never_answers_is_a_typed_error_within_the_timeout() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    // A lease of 600 ms: a take blocks 200 ms, and waits for its answer a second more (not
    // the default 1 s and a second: review159 H1 gave a take that bound, whatever the timeout).
    let q =
        Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(500)).lease(Duration::from_millis(600));
    let q = q.open(&redis.url, "q").unwrap();
    redis.pause();
    let put = q.put(1);
    let get = q.get();
    redis.resume();
    assert!(matches!(&put, Err(PutError::Unsure(t, ClusterError::Unreachable(_))) if *t.value() == 1), "{put:?}");
    assert!(matches!(get, Err(GetError::Redis(ClusterError::Unreachable(_)))), "{get:?}");
    // The stopped server may still run the puts it had received (sent again until the
    // timeout): put again with its token, 1 is in the queue once.
    put_again(&q, put.unwrap_err()).unwrap(); // connects anew
    q.put(2).unwrap();
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.get().unwrap(), 2);
    assert!(q.is_empty().unwrap());
}

/// An acknowledgement that fails (the connection was closed under it: a restart, a proxy,
/// Redis's idle `timeout`) is an `AckError`, and the value stays where the docs say (the
/// processing list); nothing else changes. (The failed `ack` left its `Received` to be
/// dropped holding no bytes: the drop's give-back, on a new connection, pushed an empty
/// item, which the next get took as garbage.)
#[test]
fn an_ack_that_fails_puts_nothing_in_the_queue() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q =
        Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(500)).open(&redis.url, "q").unwrap();
    q.put(7).unwrap();
    let received = q.receive().unwrap();
    // Every connection but the one asking.
    redis.raw(&[b"CLIENT", b"KILL", b"TYPE", b"normal"]);
    let acked = received.ack();
    assert!(acked.is_err(), "{acked:?}");
    let other = Queue::<u32>::builder().authkey(TEST_KEY).open(&redis.url, "q").unwrap();
    let next = other.try_get();
    assert!(matches!(next, Err(GetError::Empty)), "{next:?}");
    assert!(other.is_empty().unwrap());
    // The value is delivered again once this consumer retires.
    drop(q);
    assert_eq!(other.get().unwrap(), 7);
}

/// A get that a silent server did not answer in time fails with `Unreachable`; the server,
/// let go, may still run the take it had received, into this consumer's processing list,
/// unknown to the consumer. The item is not withheld while the consumer lives: its next
/// get returns it.
#[test]
fn an_item_taken_by_a_get_that_timed_out_is_delivered_by_the_next_get() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    // A lease of 600 ms: a take blocks 200 ms, and waits for its answer a second more.
    let q =
        Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(500)).lease(Duration::from_millis(600));
    let q = q.open(&redis.url, "q").unwrap();
    q.put(7).unwrap();
    redis.pause();
    let got = q.get();
    redis.resume();
    assert!(matches!(got, Err(GetError::Redis(ClusterError::Unreachable(_)))), "{got:?}");
    let again = q.get_timeout(Duration::from_secs(5));
    assert_eq!(again.unwrap(), 7);
    assert!(q.is_empty().unwrap());
}

/// A lease too long for Redis's clock (`Duration::MAX`: "never give my items to others")
/// works as the longest one Redis keeps, not as an error on every get (whose take had
/// moved the item out of the list all the same); a timeout of `Duration::MAX` is no panic.
#[test]
fn a_lease_of_duration_max_is_the_longest_redis_keeps() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = Queue::<u32>::builder()
        .authkey(TEST_KEY)
        .lease(Duration::MAX)
        .timeout(Duration::MAX)
        .open(&redis.url, "q")
        .unwrap();
    q.put(5).unwrap();
    let got = q.get_timeout(Duration::from_secs(5));
    assert!(matches!(got, Ok(5)), "{got:?}");
    assert!(q.is_empty().unwrap());
}

/// A get whose acknowledgement a silent server did not answer in time (and ran when let
/// go): the value was taken and decoded, so the get returns it; an error there lost it
/// (acknowledged on the server, never delivered).
#[test]
fn a_get_whose_ack_got_no_reply_still_returns_the_value() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = Queue::<u32>::builder().authkey(TEST_KEY).open(&redis.url, "q").unwrap();
    q.put(7).unwrap();
    let mut other = other_program_with("ack no reply", &redis.url, &[(REDIS_PID, &redis.pid.to_string())]);
    let mut said = String::new();
    other.stderr.take().unwrap().read_to_string(&mut said).unwrap();
    let ended = other.wait().unwrap();
    redis.resume();
    assert!(ended.success() && said.contains("the held get: Ok(7)"), "{said}");
}

#[test]
fn credentials_come_with_the_url() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&["--requirepass", "s3cret"]) else { return };
    let refused = Queue::<u32>::builder().authkey(TEST_KEY).open(&redis.url, "q");
    assert!(matches!(&refused, Err(ClusterError::Auth(why)) if why.contains("requires a password")), "{refused:?}");
    let wrong = Queue::<u32>::builder().authkey(TEST_KEY).open(&format!("{}?pass=wrong", redis.url), "q");
    assert!(matches!(&wrong, Err(ClusterError::Auth(why)) if why.contains("wrong password")), "{wrong:?}");
    let q = Queue::<u32>::builder().authkey(TEST_KEY).open(&format!("{}?pass=s3cret", redis.url), "q").unwrap();
    q.put(9).unwrap();
    assert_eq!(q.get().unwrap(), 9);
}

#[test]
fn an_acl_user_limited_to_the_mp_prefix_is_enough() {
    let _w = unarmed_test(LIMIT);
    #[rustfmt::skip]
    let acl = [
        "--user", "default", "off",
        "--user", "worker", "on", ">pw", "~mp:*", "&*", "-@all", "+@list", "+@hash", "+@connection",
        "+@scripting", "+sadd", "+srem", "+smembers", "+set", "+get", "+del", "+exists", "+pexpire",
    ];
    let Some(redis) = Redis::start(&acl) else { return };
    let url = format!("{}?user=worker&pass=pw", redis.url);
    let producer = Queue::<String>::builder().authkey(TEST_KEY).open(&url, "jobs").unwrap();
    let consumer =
        Queue::<String>::builder().authkey(TEST_KEY).lease(Duration::from_millis(300)).open(&url, "jobs").unwrap();
    producer.put("a".into()).unwrap();
    let held = consumer.receive().unwrap();
    consumer.keep_alive().unwrap();
    assert_eq!(held.ack().unwrap(), "a");
    drop(consumer); // its retirement runs under the same rights
    assert!(producer.is_empty().unwrap());
}

#[test]
fn maxsize_bounds_puts() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = Queue::<u32>::builder().authkey(TEST_KEY).maxsize(2).open(&redis.url, "q").unwrap();
    q.try_put(1).unwrap();
    q.put_timeout(2, Duration::from_secs(5)).unwrap();
    assert!(matches!(q.try_put(3), Err(PutError::Full(3))));
    let timed_out = q.put_timeout(3, Duration::from_millis(50));
    assert!(matches!(timed_out, Err(PutError::Timeout(3))), "{timed_out:?}");
    let consumer = Queue::<u32>::builder().authkey(TEST_KEY).open(&redis.url, "q").unwrap();
    let put = std::thread::spawn(move || q.put(3).map_err(PutError::into_inner));
    assert_eq!(consumer.get().unwrap(), 1);
    put.join().unwrap().unwrap();
    assert_eq!((consumer.get().unwrap(), consumer.get().unwrap()), (2, 3));
    assert!(matches!(consumer.get_timeout(Duration::from_millis(50)), Err(GetError::Timeout)));
}

#[test]
fn a_message_of_another_type_is_a_typed_error_and_set_aside() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let texts = Queue::<String>::builder().authkey(TEST_KEY).open(&redis.url, "mixed").unwrap();
    let numbers = Queue::<u32>::builder().authkey(TEST_KEY).open(&redis.url, "mixed").unwrap();
    texts.put("not a number".into()).unwrap();
    numbers.put(4).unwrap();
    assert!(matches!(numbers.get(), Err(GetError::Decode(_))));
    assert_eq!(numbers.get().unwrap(), 4, "the bad message is not delivered again");
    let small = Queue::<Vec<u8>>::builder().authkey(TEST_KEY).max_message_size(16).open(&redis.url, "small").unwrap();
    assert!(matches!(small.put(vec![0; 100]), Err(PutError::Encode(v, _)) if v.len() == 100));
}

#[test]
fn a_handle_of_the_local_family_cannot_cross_machines() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = Queue::<multiproc::Lock>::builder().authkey(TEST_KEY).open(&redis.url, "locks").unwrap();
    let lock = multiproc::Lock::new().unwrap();
    assert!(matches!(q.put(lock), Err(PutError::Encode(..))));
    assert!(q.is_empty().unwrap());
}

#[test]
fn a_bad_url_or_no_server_is_a_typed_error() {
    let _w = unarmed_test(LIMIT);
    assert!(matches!(
        Queue::<u32>::builder().authkey(TEST_KEY).open("nonsense://x", "q"),
        Err(ClusterError::BadUrl(_))
    ));
    let gone = Queue::<u32>::builder().authkey(TEST_KEY).open("redis+unix:///nonexistent/redis.sock", "q");
    assert!(matches!(gone, Err(ClusterError::Unreachable(_))), "{gone:?}");
}

// --- Items written by someone without the key ----------------------------------------

/// The cluster key of every queue of these tests (review75 L7: no test reads, or makes,
/// the user's own key file), and of the items the tests write themselves.
const TEST_KEY: &str = "the key of the queue tests that write items";

/// `item` sealed as a queue `name` opened with [`TEST_KEY`] seals it (a mirror of
/// `cluster::key`: the item, then an HMAC-SHA256 over the domain, the name's length as 8
/// little-endian bytes, the name and the item).
fn sealed(name: &str, item: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(TEST_KEY.as_bytes()).unwrap();
    mac.update(b"multiproc cluster queue item v1\0");
    mac.update(&(name.len() as u64).to_le_bytes());
    mac.update(name.as_bytes());
    mac.update(item);
    let mut sealed = item.to_vec();
    sealed.extend_from_slice(&mac.finalize().into_bytes());
    sealed
}

/// A queue `name` of `T` on `redis` under [`TEST_KEY`].
fn test_queue<T: serde::Serialize + serde::de::DeserializeOwned>(redis: &Redis, name: &str) -> Queue<T> {
    Queue::builder().authkey(TEST_KEY).open(&redis.url, name).unwrap()
}

/// Whoever can write to Redis must not choose what a consumer takes: a value's encoding
/// pushed without a tag, and an item of another queue moved into this one, are refused
/// before they are decoded (`GetError::Unauthenticated`, naming the dead-letter list where
/// each was moved, so nothing is dropped unseen), and the queue goes on.
#[test]
fn an_item_written_by_someone_without_the_key_is_refused_and_set_aside() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = test_queue::<u64>(&redis, "signed");
    // 666 in the crate's encoding: its postcard tag, then a varint.
    assert_eq!(redis.raw(&[b"LPUSH", b"mp:{q:signed}:items", &[0, 0x9a, 0x05]]), b":1\r\n");
    let got = q.get();
    assert!(
        matches!(&got, Err(GetError::Unauthenticated { dead }) if dead == "mp:{q:signed}:dead"),
        "a value pushed without a tag: {got:?}"
    );
    test_queue::<u64>(&redis, "other").put(7).unwrap();
    assert!(redis.raw(&[b"RPOPLPUSH", b"mp:{q:other}:items", b"mp:{q:signed}:items"]).starts_with(b"$"));
    let got = q.get();
    assert!(matches!(got, Err(GetError::Unauthenticated { .. })), "an item of another queue: {got:?}");
    let other_key = Queue::<u64>::builder().authkey("another key of sixteen bytes or more").open(&redis.url, "signed");
    other_key.unwrap().put(8).unwrap();
    let got = q.get();
    assert!(matches!(got, Err(GetError::Unauthenticated { .. })), "an item put under another key: {got:?}");
    q.put(1).unwrap();
    assert_eq!(q.get().unwrap(), 1, "the queue goes on");
    assert_eq!(redis.raw(&[b"LLEN", b"mp:{q:signed}:dead"]), b":3\r\n", "kept in the dead-letter list");
}

/// A refused item that another consumer took back meanwhile (this one paused past its
/// lease between its take and the move) is not copied into the dead-letter list: it is
/// moved there only from this consumer's processing list (review75 L5: the move pushed it
/// whether or not it was still there, so it ended there twice).
#[test]
fn a_refused_item_taken_back_meanwhile_is_set_aside_once() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = test_queue::<u64>(&redis, "once");
    assert_eq!(redis.raw(&[b"LPUSH", b"mp:{q:once}:items", &[0, 0x9a, 0x05]]), b":1\r\n");
    let mut other = other_program("refused taken back", &redis.url);
    let mut said = String::new();
    other.stderr.take().unwrap().read_to_string(&mut said).unwrap();
    assert!(other.wait().unwrap().success(), "{said}");
    assert!(said.contains("the held get: Err(Unauthenticated"), "{said}");
    assert_eq!(redis.raw(&[b"LLEN", b"mp:{q:once}:dead"]), b":0\r\n", "set aside by the get that no longer held it");
    let again = q.get();
    assert!(matches!(again, Err(GetError::Unauthenticated { .. })), "{again:?}");
    assert_eq!(redis.raw(&[b"LLEN", b"mp:{q:once}:dead"]), b":1\r\n", "set aside once");
}

/// A key shorter than 16 bytes is refused before anything is sent (review67 S-L4: every tag
/// in Redis lets its readers test guesses of the key offline).
#[test]
fn a_short_cluster_key_is_refused() {
    let _w = unarmed_test(LIMIT);
    for key in ["", "passphrase", "fifteen bytes.."] {
        let q = Queue::<u32>::builder().authkey(key).open("redis://127.0.0.1:1/0", "q");
        assert!(matches!(&q, Err(ClusterError::Key(why)) if why.contains("16")), "{key:?}: {:?}", q.err());
    }
}

// --- Bounds on what comes from Redis -------------------------------------------------

#[test]
fn an_item_larger_than_max_message_size_is_never_read_and_set_aside() {
    let _w = unarmed_test(LIMIT);
    // A reply above 1 MiB would make the server drop the connection: the huge item must
    // not even be sent.
    let Some(redis) = Redis::start(&["--client-output-buffer-limit", "normal 1mb 1mb 0"]) else { return };
    let q = Queue::<Vec<u8>>::builder().authkey(TEST_KEY).max_message_size(64 << 10).open(&redis.url, "big").unwrap();
    let huge = vec![7u8; 8 << 20];
    assert_eq!(redis.raw(&[b"LPUSH", b"mp:{q:big}:items", &huge]), b":1\r\n");
    q.put(vec![1, 2, 3]).unwrap();
    let got = q.get();
    assert!(matches!(&got, Err(GetError::Decode(e)) if e.to_string().contains("more than")), "{got:?}");
    assert_eq!(q.get().unwrap(), vec![1, 2, 3], "the queue goes on after it");
    assert_eq!(redis.raw(&[b"LLEN", b"mp:{q:big}:dead"]), b":1\r\n", "kept in the dead-letter list");
    let again = q.receive_timeout(Duration::from_millis(50));
    assert!(matches!(again, Err(GetError::Timeout)), "{again:?}");
}

/// `max_message_size(usize::MAX)` reads as "no limit" and is one (review75 M2: the bound
/// sent with each take, the limit plus the item's tag, overflowed: every get panicked in a
/// debug build, and in a release build every item above 31 bytes went to the dead-letter
/// list). A value of exactly the limit fits, its tag on top (review75 L10).
#[test]
fn a_queue_without_a_size_limit_takes_its_items() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = Queue::<Vec<u8>>::builder().authkey(TEST_KEY).max_message_size(usize::MAX).open(&redis.url, "unbounded");
    let q = q.unwrap();
    q.put(vec![0u8; 100]).unwrap();
    assert_eq!(q.get().unwrap(), vec![0u8; 100]);
    assert_eq!(redis.raw(&[b"LLEN", b"mp:{q:unbounded}:dead"]), b":0\r\n", "nothing set aside");
    // 100 bytes encode in 102 (the codec's tag byte, the length's varint).
    let exact = Queue::<Vec<u8>>::builder().authkey(TEST_KEY).max_message_size(102).open(&redis.url, "exact");
    let exact = exact.unwrap();
    exact.put(vec![1u8; 100]).unwrap();
    assert_eq!(exact.get().unwrap(), vec![1u8; 100], "a value of the limit, its tag on top");
    assert!(matches!(exact.put(vec![1u8; 101]), Err(PutError::Encode(..))), "a value above the limit");
}

#[test]
fn garbage_put_by_another_program_is_a_typed_error_not_a_panic() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    // Sealed under the queue's key: what reaches the decoder.
    let q = test_queue::<(String, Vec<u64>)>(&redis, "g");
    #[rustfmt::skip]
    let garbage: [&[u8]; 5] = [
        b"",                                                     // nothing
        &[0xff; 64],                                             // no valid encoding
        &[0x02, 0xc3, 0x28],                                     // a string that is not UTF-8
        &[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], // a vector of 2^56 items
        b"{\"json\": true}",                                     // another encoding
    ];
    for g in garbage {
        redis.raw(&[b"LPUSH", b"mp:{q:g}:items", &sealed("g", g)]);
    }
    q.put(("fine".into(), vec![1])).unwrap();
    for _ in garbage {
        let got = q.get();
        assert!(matches!(got, Err(GetError::Decode(_))), "{got:?}");
    }
    assert_eq!(q.get().unwrap(), ("fine".to_string(), vec![1]));
    assert_eq!(redis.raw(&[b"LLEN", b"mp:{q:g}:dead"]), b":5\r\n");
    redis.raw(&[b"SET", b"mp:{q:s}:items", b"a string, not a list"]);
    let wrong =
        Queue::<u32>::builder().authkey(TEST_KEY).open(&redis.url, "s").unwrap().get_timeout(Duration::from_secs(1));
    assert!(
        matches!(&wrong, Err(GetError::Redis(ClusterError::Refused(why))) if why.contains("WRONGTYPE")),
        "{wrong:?}"
    );
}

/// A value that nests as deep as its encoding says: one byte a level.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Nest {
    End,
    More(Box<Nest>),
}

/// `levels` of `Nest` in the crate's encoding (its postcard tag, then a variant index a
/// level), as another program could push them.
fn nested(levels: usize) -> Vec<u8> {
    let mut bytes = vec![0u8];
    bytes.resize(1 + levels, 1);
    bytes.push(0);
    bytes
}

/// A message nested deeper than any stack could decode is a typed error and set aside (it
/// overflowed the consumer's stack: the process died, and the next consumer to be given
/// the item back would die of it too), and the queue goes on.
#[test]
fn a_message_nested_beyond_any_stack_is_a_typed_error_and_set_aside() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = test_queue::<Nest>(&redis, "deep");
    redis.raw(&[b"LPUSH", b"mp:{q:deep}:items", &sealed("deep", &nested(1_000_000))]);
    q.put(Nest::More(Box::new(Nest::End))).unwrap();
    let got = q.get();
    assert!(matches!(&got, Err(GetError::Decode(e)) if e.to_string().contains("deep")), "{got:?}");
    assert_eq!(q.get().unwrap(), Nest::More(Box::new(Nest::End)), "the queue goes on after it");
    assert_eq!(redis.raw(&[b"LLEN", b"mp:{q:deep}:dead"]), b":1\r\n", "kept in the dead-letter list");
    // A value nested 200 levels deep is no attack.
    let deep = || (0..200).fold(Nest::End, |inner, _| Nest::More(Box::new(inner)));
    q.put(deep()).unwrap();
    assert_eq!(q.get().unwrap(), deep());
}

/// The same in the self-describing encoding (MessagePack, tag 1: what another program may
/// write, and how a manager keeps values): each level a one-entry map of variant to value.
#[test]
fn a_self_described_message_nested_beyond_any_stack_is_a_typed_error() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = test_queue::<Nest>(&redis, "described");
    let described = |levels: usize| {
        let mut bytes = vec![1u8];
        for _ in 0..levels {
            bytes.extend([0x81, 0x01]);
        }
        bytes.push(0);
        bytes
    };
    redis.raw(&[b"LPUSH", b"mp:{q:described}:items", &sealed("described", &described(200))]);
    redis.raw(&[b"LPUSH", b"mp:{q:described}:items", &sealed("described", &described(100_000))]);
    let deep = (0..200).fold(Nest::End, |inner, _| Nest::More(Box::new(inner)));
    assert_eq!(q.get().unwrap(), deep, "200 levels are no attack");
    let got = q.get();
    assert!(matches!(&got, Err(GetError::Decode(e)) if e.to_string().contains("deep")), "{got:?}");
    assert_eq!(redis.raw(&[b"LLEN", b"mp:{q:described}:dead"]), b":1\r\n", "kept in the dead-letter list");
}

/// A user that is not root, whose configuration directory is to be made in a directory of
/// root's that is sticky (`/tmp`, as `HOME=/tmp` makes it in containers and CI images),
/// gets its key file: nobody else can rename or remove what it makes there (review80 L1:
/// only a directory of the user's own was accepted). Another user's directory, sticky or
/// not, stays refused (`cluster::key`'s tests). Needs root, to run as `nobody`.
#[test]
fn a_key_file_is_made_below_a_sticky_directory_of_roots() {
    use std::os::unix::fs::PermissionsExt;
    let _w = unarmed_test(LIMIT);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: running as another user needs root");
        return;
    }
    let shared = std::env::temp_dir().join(format!("multiproc-sticky-{}", std::process::id()));
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "--pdeathsig", "KILL"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "cluster_role", "--nocapture", "--test-threads", "1"])
        .env(ROLE, "default key")
        .env(URL, "redis://127.0.0.1:1/")
        .env("XDG_CONFIG_HOME", shared.join("config"))
        .env_remove(multiproc::cluster::KEY_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let made = shared.join("config").join("multiproc").join("cluster.key").exists();
    std::fs::remove_dir_all(&shared).unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("Key("), "the key file was refused: {said}");
    assert!(made, "no key file was made: {said}");
}

/// Consumers waiting in `get` and in `get_timeout` while Redis (with an append-only file)
/// is killed and started again wait the restart out within the queue's `timeout` (10 s
/// here), as a put and a pool do, and take the items put after it, each once. Before
/// (stop 38's documented contract), a blocked get failed `Unreachable` at the restart and
/// its caller had to call again: a consumer loop that ends on any error but `Timeout`
/// ended at each restart.
#[test]
fn gets_across_a_redis_restart_wait_it_out_and_take_what_came_after() {
    let _w = unarmed_test(LIMIT);
    let Some(mut redis) = Redis::start(&["--appendonly", "yes", "--appendfsync", "always"]) else { return };
    let open = || Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_secs(10)).open(&redis.url, "q");
    let (producer, blocking, timed) = (open().unwrap(), open().unwrap(), open().unwrap());
    producer.put(1).unwrap();
    assert_eq!(blocking.get().unwrap(), 1);
    let blocking = std::thread::spawn(move || blocking.get());
    let timed = std::thread::spawn(move || timed.get_timeout(Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(300)); // usually inside BLMOVE; either way
    redis.restart();
    producer.put(2).unwrap();
    producer.put(3).unwrap();
    let (blocking, timed) = (blocking.join().unwrap(), timed.join().unwrap());
    let mut got = [blocking.unwrap(), timed.unwrap()];
    got.sort_unstable();
    assert_eq!(got, [2, 3]);
    assert!(matches!(producer.try_get(), Err(GetError::Empty)), "each item once");
}

/// An item put before Redis (with an append-only file) is killed and started again is
/// still in line after the restart, and taken once, by a get that waits the restart out if
/// it meets it. Coverage (review108 L5): the test above replaced one that checked this too.
#[test]
fn an_item_put_before_a_redis_restart_is_still_in_line_and_taken_once() {
    let _w = unarmed_test(LIMIT);
    let Some(mut redis) = Redis::start(&["--appendonly", "yes", "--appendfsync", "always"]) else { return };
    let open = || Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_secs(10)).open(&redis.url, "q");
    let (producer, consumer) = (open().unwrap(), open().unwrap());
    producer.put(1).unwrap();
    assert_eq!(consumer.get().unwrap(), 1, "the connections are open");
    producer.put(2).unwrap();
    redis.restart();
    assert_eq!(consumer.get_timeout(Duration::from_secs(30)).unwrap(), 2);
    let again = consumer.try_get();
    assert!(matches!(again, Err(GetError::Empty)), "each item once: {again:?}");
}

/// A value above the server's bound (its `proto-max-bulk-len`, 1 MiB here) but within the
/// queue's `max_message_size` (64 MiB, the default) is bad input, not an outage: its put
/// fails at once with `PutError::Encode` naming Redis's setting, the value given back, and
/// the queue goes on. Before, Redis closed the connection on the put at each try and the put
/// failed `Unsure` (`Unreachable`, "Broken pipe") after the queue's timeout, as if Redis
/// were gone.
#[test]
fn a_put_above_redis_bulk_limit_is_refused_typed_and_the_queue_goes_on() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&["--proto-max-bulk-len", "1mb"]) else { return };
    let q = Queue::<Vec<u8>>::builder().authkey(TEST_KEY).timeout(Duration::from_secs(2)).open(&redis.url, "big");
    let q = q.unwrap();
    match q.put(vec![7u8; 2 << 20]) {
        Err(PutError::Encode(v, e)) => {
            assert_eq!(v.len(), 2 << 20, "the value given back");
            assert!(e.to_string().contains("proto-max-bulk-len (1048576)"), "{e}");
        }
        other => panic!("a 2 MiB value to a Redis taking bulks of 1 MiB: {:?}", other.map_err(|e| e.to_string())),
    }
    q.put(vec![1u8; 32 << 10]).unwrap();
    assert_eq!(q.get().unwrap(), vec![1u8; 32 << 10]);
    assert_eq!(redis.raw(&[b"LLEN", b"mp:{q:big}:items"]), b":0\r\n", "nothing else put");
}

/// The queue's reading of the server's bound is its connection's: a Redis restarted with a
/// smaller `proto-max-bulk-len` (64 MiB at run time, 1 MiB again from its arguments) has a
/// 2 MiB put refused typed, naming the new bound, as at the first connection.
#[test]
fn a_queue_reads_the_servers_bound_again_after_a_redis_restart() {
    let _w = unarmed_test(LIMIT);
    let Some(mut redis) = Redis::start(&["--proto-max-bulk-len", "1mb"]) else { return };
    assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"proto-max-bulk-len", b"64mb"]), b"+OK\r\n");
    let q = Queue::<Vec<u8>>::builder().authkey(TEST_KEY).timeout(Duration::from_secs(2)).open(&redis.url, "again");
    let q = q.unwrap();
    q.put(vec![7u8; 2 << 20]).unwrap();
    assert_eq!(q.get().unwrap().len(), 2 << 20, "within the bound read on the first connection");
    redis.restart();
    match q.put(vec![7u8; 2 << 20]) {
        Err(PutError::Encode(_, e)) => assert!(e.to_string().contains("proto-max-bulk-len (1048576)"), "{e}"),
        other => {
            panic!("a 2 MiB value to a Redis restarted with bulks of 1 MiB: {:?}", other.map_err(|e| e.to_string()))
        }
    }
    q.put(vec![1u8; 10]).unwrap();
    assert_eq!(q.get().unwrap(), vec![1u8; 10]);
}

/// A put whose reply was lost ran; Redis restarts with a smaller bound than the item.
/// `put_again` of its token asks the put record and says it landed, not `Encode` (which
/// would give the value back while it is in the queue: put twice by a caller that tries
/// another way). Found by review122 (M2).
#[test]
fn put_again_of_a_put_that_ran_lands_after_a_smaller_bound() {
    let alone = arming_alone(LIMIT);
    let Some(mut redis) =
        Redis::start(&["--proto-max-bulk-len", "1mb", "--appendonly", "yes", "--appendfsync", "always"])
    else {
        return;
    };
    assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"proto-max-bulk-len", b"64mb"]), b"+OK\r\n");
    let q = Queue::<Vec<u8>>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(300)).open(&redis.url, "ran");
    let q = q.unwrap();
    let put = alone.armed("fail:cluster.put.reply", || q.put(vec![7u8; 2 << 20]));
    let Err(PutError::Unsure(token, _)) = put else {
        panic!("the put's reply was lost: {:?}", put.map_err(|e| e.to_string()))
    };
    redis.restart(); // back at 1 MiB from its arguments; the AOF kept the item and the record
    let again = q.put_again(token);
    let len = loop {
        // The restarted server answers `-LOADING` while it reads its AOF.
        let len = redis.raw(&[b"LLEN", b"mp:{q:ran}:items"]);
        if !len.starts_with(b"-LOADING") {
            break len;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("put_again: {:?}; LLEN {:?}", again.as_ref().map_err(|e| e.to_string()), String::from_utf8_lossy(&len));
    assert_eq!(len, b":1\r\n", "the put ran once");
    assert!(again.is_ok(), "the item is in the queue, yet put_again: {:?}", again.map_err(|e| e.to_string()));
}

/// Arming a fail point is process-wide: every put of the process meets it, not only the
/// arming test's. So a test that arms one runs alone ([`arming_alone`], the write side), and
/// every other test of this binary holds the read side ([`unarmed_test`]) for its whole run:
/// no put of another test is failed by it (review142 M1: `maxsize_bounds_puts` and
/// `a_put_said_not_to_have_run_refuses_its_late_copy` got `Unsure` from a neighbour's
/// `fail:cluster.put.lost`, at four test threads in 6 of 8 runs).
static ARMING: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// A test that arms no fail point: its watchdog, and a share of [`ARMING`].
#[must_use]
struct UnarmedTest {
    _watchdog: Watchdog,
    _shared: std::sync::RwLockReadGuard<'static, ()>,
}

fn unarmed_test(limit: Duration) -> UnarmedTest {
    let shared = ARMING.read().unwrap_or_else(|e| e.into_inner());
    UnarmedTest { _watchdog: watchdog(limit), _shared: shared }
}

/// A test that arms fail points: its watchdog, and [`ARMING`] to itself.
#[must_use]
struct ArmingAlone {
    _watchdog: Watchdog,
    _alone: std::sync::RwLockWriteGuard<'static, ()>,
}

fn arming_alone(limit: Duration) -> ArmingAlone {
    let alone = ARMING.write().unwrap_or_else(|e| e.into_inner());
    ArmingAlone { _watchdog: watchdog(limit), _alone: alone }
}

impl ArmingAlone {
    /// Runs `f` with the fail point `point` armed in this process (`fail:NAME`), and
    /// disarms it after, however `f` ends: a panic in `f` must not leave the point armed
    /// for the tests after it (review151 L7: the write guard is let go poisoned, and each
    /// next test takes it back with `into_inner`).
    fn armed<R>(&self, point: &str, f: impl FnOnce() -> R) -> R {
        /// Disarms every point of this process when dropped.
        struct Disarm;
        impl Drop for Disarm {
            fn drop(&mut self) {
                multiproc::__private::crash_disarm();
            }
        }
        multiproc::__private::crash_at(point);
        let _disarm = Disarm;
        f()
    }
}

/// review124 M1: the record check of a `put_again` right after a restart met `-LOADING`
/// (the server reading its AOF; `CONFIG GET` is answered while loading, `HMGET` is not) and
/// answered `Unsure` at once, where a send waits it out for the timeout. `key-load-delay`
/// makes the loading last about a second (2000 keys in the AOF's base, 500 us each), and
/// the server answers (`-LOADING`) every KiB it loads, so the check meets it every run
/// (before: 1 run in 3 of fix93's test, in the first few milliseconds).
#[test]
fn put_again_waits_out_a_restarted_redis_loading_its_data() {
    let alone = arming_alone(LIMIT);
    let args = ["--proto-max-bulk-len", "1mb", "--appendonly", "yes", "--appendfsync", "always"];
    let slow = ["--key-load-delay", "500", "--loading-process-events-interval-bytes", "1024"];
    let Some(mut redis) = Redis::start(&[&args[..], &slow[..]].concat()) else { return };
    assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"proto-max-bulk-len", b"64mb"]), b"+OK\r\n");
    let pad = b"for i = 1, 2000 do redis.call('SET', 'pad:' .. i, i) end";
    assert_eq!(redis.raw(&[b"EVAL", pad, b"0"]), b"$-1\r\n");
    assert!(redis.raw(&[b"BGREWRITEAOF"]).starts_with(b"+"));
    let rewritten = || {
        let info = String::from_utf8_lossy(&redis.raw(&[b"INFO", b"persistence"])).into_owned();
        info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0")
    };
    assert!(common::eventually(Duration::from_secs(20), rewritten), "the AOF was not rewritten");
    // The failing put on a handle of its own, with a short timeout (the fail point is the
    // process's: armed as briefly as may be); any handle of the queue puts the token again.
    let open = |timeout| Queue::<Vec<u8>>::builder().authkey(TEST_KEY).timeout(timeout).open(&redis.url, "loading");
    let (q, again_q) = (open(Duration::from_millis(300)).unwrap(), open(Duration::from_secs(10)).unwrap());
    let put = alone.armed("fail:cluster.put.reply", || q.put(vec![7u8; 2 << 20]));
    let Err(PutError::Unsure(token, _)) = put else {
        panic!("the put's reply was lost: {:?}", put.map_err(|e| e.to_string()))
    };
    redis.restart(); // back at 1 MiB from its arguments, loading its AOF for a second or so
    let loading = redis.raw(&[b"LLEN", b"mp:{q:loading}:items"]);
    // Else the test proves nothing (review131 L4): the put would not meet `-LOADING`.
    assert!(loading.starts_with(b"-LOADING"), "not loading right after the restart: {loading:?}");
    let mut refused = 1; // this test's own commands the loading server refused
    let again = again_q.put_again(token);
    let len = loop {
        let len = redis.raw(&[b"LLEN", b"mp:{q:loading}:items"]);
        if !len.starts_with(b"-LOADING") {
            break len;
        }
        refused += 1;
        std::thread::sleep(Duration::from_millis(20));
    };
    // The server counts the commands it refused as loading (since its restart): some were
    // the put's.
    let errors = String::from_utf8_lossy(&redis.raw(&[b"INFO", b"errorstats"])).into_owned();
    let met = errors.lines().find_map(|l| l.strip_prefix("errorstat_LOADING:count="));
    let met = met.map_or(0, |n| n.trim().parse::<u64>().unwrap()).saturating_sub(refused);
    eprintln!(
        "right after the restart: {:?}; put_again: {:?}, its commands refused as loading: {met}; LLEN {:?}",
        String::from_utf8_lossy(&loading).trim(),
        again.as_ref().map_err(|e| e.to_string()),
        String::from_utf8_lossy(&len)
    );
    assert!(met >= 1, "put_again never met the server loading");
    assert_eq!(len, b":1\r\n", "the put ran once");
    assert!(again.is_ok(), "the item is in the queue, yet put_again: {:?}", again.map_err(|e| e.to_string()));
}

/// review124 L1: the record check was a read. Told `Encode` (the put did not run), the
/// caller may put the value another way, while a copy of an earlier send still on its way
/// (its header read by the server under the larger bound) would then push it: the item
/// twice. The check is a fence now: it enters the number, so the copy is refused.
#[test]
fn a_put_said_not_to_have_run_refuses_its_late_copy() {
    let alone = arming_alone(LIMIT);
    let Some(redis) = Redis::start(&["--proto-max-bulk-len", "1mb"]) else { return };
    let bound = |b: &[u8]| assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"proto-max-bulk-len", b]), b"+OK\r\n");
    bound(b"64mb");
    let q = Queue::<Vec<u8>>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(300)).open(&redis.url, "late");
    let q = q.unwrap();
    // Each send is lost before it reaches Redis: the put did not run, and cannot know it.
    let put = alone.armed("fail:cluster.put.lost", || q.put(vec![7u8; 2 << 20]));
    let Err(PutError::Unsure(token, _)) = put else {
        panic!("the put's sends were lost: {:?}", put.map_err(|e| e.to_string()))
    };
    let copy = multiproc::__private::cluster_put_command(&q, &token);
    bound(b"1mb");
    let again = q.put_again(token);
    let said = again.as_ref().map_err(|e| e.to_string());
    assert!(matches!(again, Err(PutError::Encode(..))), "the put did not run and cannot be sent: {said:?}");
    // The late copy, read under the larger bound.
    bound(b"64mb");
    let args: Vec<&[u8]> = copy.iter().map(Vec::as_slice).collect();
    let late = redis.raw(&args);
    let len = redis.raw(&[b"LLEN", b"mp:{q:late}:items"]);
    eprintln!(
        "put_again: {said:?}; the late copy: {:?}; LLEN {:?}",
        String::from_utf8_lossy(&late).trim(),
        String::from_utf8_lossy(&len).trim()
    );
    assert_eq!(len, b":0\r\n", "the caller was told the put did not run, and its late copy ran");
    // Refused as fenced (3), not as a put that ran (2): review131 H1.
    assert_eq!(late, b":3\r\n", "the late copy of a fenced put");
}

/// review131 H1: a fence entered the number as a put that ran does. Its reply lost, the
/// round after fenced again, found the number it had entered itself, and answered `Ok`:
/// the caller was told the put ran, and the item was in no queue. A fenced number has its
/// own mark now: a fence again answers "not run", a send of it answers so too (`Encode`).
#[test]
fn a_fence_whose_reply_was_lost_is_not_taken_for_the_put() {
    let alone = arming_alone(LIMIT);
    let Some(redis) = Redis::start(&["--proto-max-bulk-len", "1mb"]) else { return };
    let bound = |b: &[u8]| assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"proto-max-bulk-len", b]), b"+OK\r\n");
    bound(b"64mb");
    let q =
        Queue::<Vec<u8>>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(300)).open(&redis.url, "fenced");
    let q = q.unwrap();
    let put = alone.armed("fail:cluster.put.lost", || q.put(vec![7u8; 2 << 20]));
    let Err(PutError::Unsure(token, _)) = put else {
        panic!("the put's sends were lost: {:?}", put.map_err(|e| e.to_string()))
    };
    bound(b"1mb");
    // The first fence's reply is lost; the round after fences again.
    let again = alone.armed("fail1:cluster.fence.reply", || q.put_again(token));
    let said = again.as_ref().map(|_| ()).map_err(|e| e.to_string());
    let len = redis.raw(&[b"LLEN", b"mp:{q:fenced}:items"]);
    eprintln!("put_again: {said:?}; LLEN {:?}", String::from_utf8_lossy(&len).trim());
    assert_eq!(len, b":0\r\n", "the put never ran");
    assert!(matches!(again, Err(PutError::Encode(..))), "told {said:?} for a put that did not run");
}

/// review122 L3: a put of an item above 1 MiB sent a `PING`, read the bound (two `CONFIG
/// GET`s) and sent, each waiting a timeout on a stopped Redis, in every round: it returned
/// after about four rounds' worth of timeouts, past the three timeouts and two seconds the
/// `Queue` doc promises. A failed exchange now ends the round. No duration is asserted
/// (review131 L3): the exchanges are counted, as the stopped server saw them once let go;
/// a `PING` that failed means the item was never sent: `Redis`, with the value back, not
/// `Unsure`.
#[test]
fn a_large_put_to_a_stopped_redis_ends_within_a_puts_bound() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&["--proto-max-bulk-len", "64mb"]) else { return };
    let q = Queue::<Vec<u8>>::builder().authkey(TEST_KEY).timeout(Duration::from_secs(1)).open(&redis.url, "stopped");
    let q = q.unwrap();
    q.put(vec![1u8; 2 << 20]).unwrap();
    let before = exchanges(&redis);
    redis.pause();
    let put = q.put(vec![7u8; 2 << 20]).map_err(|e| (matches!(e, PutError::Redis(..)), e.to_string()));
    redis.resume();
    let after = exchanges(&redis);
    eprintln!("a 2 MiB put to a stopped Redis: {put:?}; before {before:?}, after {after:?}");
    let Err((said_not_sent, why)) = put else { panic!("a put to a stopped Redis: {put:?}") };
    assert!(said_not_sent && why.contains("unreachable"), "typed: {why}");
    // What the put sent the stopped server, which ran it when let go (a command a client
    // gave up on is still read from its connection): two connections and two commands of
    // the put's, each an exchange that waited a timeout at most. Before review122 L3, each
    // of about four rounds sent a `PING`, two `CONFIG GET`s and the item.
    let sent = |cmd: &str, at: &(u64, Vec<(String, u64)>)| {
        at.1.iter().filter(|(name, _)| name == cmd || (cmd == "*" && name != "info")).map(|(_, n)| n).sum::<u64>()
    };
    let commands = sent("*", &after) - sent("*", &before);
    // Less the two of this test's own (its last `INFO commandstats` before, `INFO stats` after).
    let connections = after.0 - before.0 - 2;
    assert!(
        (1..=3).contains(&commands) && connections <= 3,
        "a put sent {commands} commands on {connections} new connections (three exchanges at most)"
    );
    assert_eq!(sent("evalsha", &after), sent("evalsha", &before), "the item was sent, and said not sent");
    q.put(vec![2u8; 10]).unwrap();
    assert_eq!(q.get().unwrap(), vec![1u8; 2 << 20]);
    assert_eq!(q.get().unwrap(), vec![2u8; 10]);
}

/// What the server at `redis` counts: connections accepted, and each command's calls.
fn exchanges(redis: &Redis) -> (u64, Vec<(String, u64)>) {
    let field = |info: &str, name: &str| {
        info.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().parse::<u64>().unwrap()).unwrap_or(0)
    };
    let stats = String::from_utf8_lossy(&redis.raw(&[b"INFO", b"stats"])).into_owned();
    let commands = String::from_utf8_lossy(&redis.raw(&[b"INFO", b"commandstats"])).into_owned();
    let calls = commands
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_string(), calls))
        })
        .collect();
    (field(&stats, "total_connections_received:"), calls)
}

/// A queue on a Redis that a failover left a replica for a while (`REPLICAOF` of a master
/// that is not there: writes, a get's move and take among them, answer `READONLY`), then a
/// master again (`REPLICAOF NO ONE`, as a reconnection reaching the new master would): a
/// put and a get sent meanwhile wait it out as Redis away, within the queue's timeout, and
/// the item comes (review150: taken for a refusal, each failed at once).
#[test]
fn a_queue_waits_out_a_failover_that_leaves_it_on_a_replica_for_a_while() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    // Two handles: one link each (a put on the getter's would wait for its blocking move).
    let open = || Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_secs(20)).open(&redis.url, "ro");
    let (getter, q) = (open().unwrap(), open().unwrap());
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli").arg("-s").arg(redis.socket()).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(cli(&["REPLICAOF", "127.0.0.1", "1"]), "OK");
    std::thread::scope(|s| {
        let got = s.spawn(|| getter.get());
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(1000));
            assert_eq!(cli(&["REPLICAOF", "NO", "ONE"]), "OK");
        });
        let put = q.put(7).map_err(|e| e.to_string());
        let got = got.join().unwrap();
        println!("the put: {put:?}; the get: {got:?}");
        assert_eq!(put, Ok(()));
        assert_eq!(got, Ok(7));
    });
}

/// A `get_timeout` blocked on an empty queue when its Redis is made a replica (a failover's
/// demoted master ends the blocking move `UNBLOCKED`, a reply the take skips, and then
/// answers nothing on that connection) ends by its own deadline, `Unreachable` (Redis away
/// at its deadline), not after the queue's `timeout` (review153 M3: "the get_timeout(2 s):
/// Err(Redis(Unreachable("timed out"))) after 9.035092337s" with an 8 s timeout). The
/// queue's timeout here is 40 s: a get still blocked 10 s later overshot its deadline.
#[test]
fn a_get_timeout_blocked_as_its_master_is_demoted_ends_by_its_deadline() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_secs(40)).open(&redis.url, "demoted");
    let q = q.unwrap();
    assert_eq!(q.try_get(), Err(GetError::Empty), "the queue is open, its connection too");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(q.get_timeout(Duration::from_millis(1000)));
    });
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("redis-cli").arg("-s").arg(redis.socket()).args(["REPLICAOF", "127.0.0.1", "1"]).output();
    assert_eq!(String::from_utf8_lossy(&out.unwrap().stdout).trim(), "OK");
    let got = rx.recv_timeout(Duration::from_secs(10));
    println!("the get_timeout(1 s): {got:?}");
    match got {
        Ok(Err(GetError::Redis(ClusterError::Unreachable(_)))) => {}
        Err(_) => panic!("the get_timeout(1 s) blocked as its master was demoted still waits 10 s later"),
        Ok(other) => panic!("the get_timeout(1 s) blocked as its master was demoted: {other:?}"),
    }
}

/// A put and a get on a Redis left a replica past the queue's timeout (1.5 s) each wait it
/// out backing off (50 ms doubled up to a second: a handful of tries, each on a new
/// connection), then fail: the put `Unsure` (a `READONLY` is classed as Redis away), the get
/// `Unreachable`. Before (review153 L1), each tried every 50 ms, about thirty connections
/// each, for as long as the failover lasted.
#[test]
fn a_put_and_a_get_on_a_replica_back_off() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let open = || Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(1500)).open(&redis.url, "ro");
    let (getter, q) = (open().unwrap(), open().unwrap());
    assert_eq!(redis.raw(&[b"REPLICAOF", b"127.0.0.1", b"1"]), b"+OK\r\n");
    let before = exchanges(&redis).0;
    let (put, got) = std::thread::scope(|s| {
        let got = s.spawn(|| getter.get());
        (q.put(7), got.join().unwrap())
    });
    // Less the test's own `INFO` connections (two, after).
    let connections = exchanges(&redis).0 - before - 2;
    println!("the put: {put:?}; the get: {got:?}; {connections} connections");
    assert!(matches!(put, Err(PutError::Unsure(..))), "{put:?}");
    assert!(matches!(got, Err(GetError::Redis(ClusterError::Unreachable(_)))), "{got:?}");
    assert!(connections < 30, "a put and a get tried again every 50 ms: {connections} connections");
}

/// How many moves (`BLMOVE`, `LMOVE`) Redis refused so far (`rejected_calls`).
fn refused_moves(redis: &Redis) -> u64 {
    let commands = String::from_utf8_lossy(&redis.raw(&[b"INFO", b"commandstats"])).into_owned();
    commands
        .lines()
        .filter(|l| l.starts_with("cmdstat_blmove:") || l.starts_with("cmdstat_lmove:"))
        .filter_map(|l| l.split(',').find_map(|kv| kv.strip_prefix("rejected_calls="))?.parse::<u64>().ok())
        .sum()
}

/// review159 H1: a plain `get()` with `timeout(Duration::MAX)`, blocked on an empty queue
/// when its Redis is made a replica and soon a master again (a failover over, its item put
/// on the new master), takes that item. A demoted master ends the blocked move `UNBLOCKED`
/// (a reply the take skips), marks the connection close-after-reply, and then neither
/// answers nor closes it: the get waited on it for ever ("timeout MAX: the get:
/// Err(Timeout) after 13.3 s", the test's own wait run out). Each take now waits for its
/// answer its wait and a second (`GRACE`), whatever the queue's `timeout`.
#[test]
fn a_plain_get_blocked_as_its_master_is_demoted_takes_what_comes_after() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let open = |timeout| Queue::<u32>::builder().authkey(TEST_KEY).timeout(timeout).open(&redis.url, "demoted");
    // A lease of 600 ms: each take blocks 200 ms at most (a third of it), so the get leaves
    // the dead connection 1.2 s after its take began at most, not 2 s.
    let q = Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::MAX).lease(Duration::from_millis(600));
    let q = q.open(&redis.url, "demoted").unwrap();
    assert_eq!(q.try_get(), Err(GetError::Empty), "the queue is open, its connection too");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(q.get());
    });
    let blocked = || String::from_utf8_lossy(&redis.raw(&[b"INFO", b"clients"])).contains("blocked_clients:1");
    assert!(common::eventually(Duration::from_secs(10), blocked), "the get blocks");
    assert_eq!(redis.raw(&[b"REPLICAOF", b"127.0.0.1", b"1"]), b"+OK\r\n");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(redis.raw(&[b"REPLICAOF", b"NO", b"ONE"]), b"+OK\r\n");
    open(Duration::from_secs(1)).unwrap().put(5).unwrap();
    let got = rx.recv_timeout(Duration::from_secs(10));
    println!("the get, timeout(MAX): {got:?}");
    match got {
        Ok(Ok(5)) => {}
        Err(_) => panic!("the get blocked as its master was demoted still waits 10 s later"),
        Ok(other) => panic!("the get blocked as its master was demoted: {other:?}"),
    }
}

/// review159 M1: a `get_timeout` on a healthy, empty queue times out. A queue `timeout` of
/// 1 ms left the answer to the last wait 1 ms past the deadline, and Redis answers a wait
/// that timed out up to a tick of its clock late (100 ms at `hz 10`): "5 of 5
/// Err(Redis(Unreachable("timed out")))", the connection dropped each time.
#[test]
fn a_get_timeout_on_an_empty_queue_with_a_short_timeout_times_out() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(1)).open(&redis.url, "short");
    let q = q.unwrap();
    let got: Vec<_> = (0..3).map(|_| q.get_timeout(Duration::from_millis(150))).collect();
    println!("three get_timeout(150 ms), timeout 1 ms: {got:?}");
    assert!(got.iter().all(|got| *got == Err(GetError::Timeout)), "{got:?}");
}

/// review159 M2: a consumer whose heartbeat is fresh, on a Redis made a replica (a
/// failover's demoted master its name still leads to), backs off. Its `BLMOVE` is refused
/// `READONLY` (a reply the take skips), and `TAKE`, which only read when nothing had
/// landed, answered nil as for an empty queue: the get sent its next take at once, "73495"
/// moves refused in a `get_timeout(2 s)`, until its beat was due. `TAKE` now writes there
/// (a `DEL` of the empty landing list), which a replica refuses: Redis away, waited out.
#[test]
fn a_get_with_a_fresh_heartbeat_on_a_replica_backs_off() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_secs(5)).open(&redis.url, "ro");
    let q = q.unwrap();
    q.put(1).unwrap();
    assert_eq!(q.get(), Ok(1), "its heartbeat is fresh");
    assert_eq!(redis.raw(&[b"REPLICAOF", b"127.0.0.1", b"1"]), b"+OK\r\n");
    let before = refused_moves(&redis);
    let got = q.get_timeout(Duration::from_millis(500));
    let refused = refused_moves(&redis) - before;
    assert_eq!(redis.raw(&[b"REPLICAOF", b"NO", b"ONE"]), b"+OK\r\n");
    println!("get_timeout(500 ms) on a replica with a fresh beat: {got:?}; {refused} moves refused meanwhile");
    assert!(refused < 50, "a get on a replica took again at once: {refused} moves refused in half a second");
}

/// review163 M2: a consumer whose heartbeat is fresh, on a master at `maxmemory` (with
/// `noeviction`), fails with Redis's refusal instead of taking again at once. Its `BLMOVE`
/// is refused `OOM` (a reply the take skips), and `TAKE`'s nothing-landed branch (an
/// `LLEN`, a `DEL`: neither is refused for memory) answered nil as for an empty queue: the
/// get sent its next take at once ("4974 moves refused" in a `get_timeout(500 ms)`), then
/// said `Timeout` with an item in line. `TAKE` now makes the move itself, which meets the
/// same refusal.
#[test]
fn a_get_on_a_master_out_of_memory_fails_typed_not_in_a_hot_loop() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = test_queue::<u32>(&redis, "oom");
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert_eq!(q.get(), Ok(1), "its heartbeat is fresh");
    // Memory over the bound: a key of 2 MiB, then a bound of 1 MiB.
    assert_eq!(redis.raw(&[b"SET", b"big", &vec![b'x'; 2 << 20]]), b"+OK\r\n");
    assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"maxmemory-policy", b"noeviction"]), b"+OK\r\n");
    assert_eq!(redis.raw(&[b"CONFIG", b"SET", b"maxmemory", b"1mb"]), b"+OK\r\n");
    let before = refused_moves(&redis);
    let got = q.get_timeout(Duration::from_millis(500));
    let refused = refused_moves(&redis) - before;
    println!("get_timeout(500 ms) at maxmemory, an item in line: {got:?}; {refused} moves refused meanwhile");
    assert!(refused < 50, "a get at maxmemory took again at once: {refused} moves refused in half a second");
    assert!(
        matches!(&got, Err(GetError::Redis(ClusterError::Refused(why))) if why.contains("OOM")),
        "a get at maxmemory, an item in line: {got:?}"
    );
}

/// review163 L1: a `get_timeout` whose deadline falls in the last second an `Instant` holds
/// takes its value. The end of its turn (`Until::turn_end`, a second past the deadline) was
/// added unchecked: "overflow when adding duration to instant", a panic.
#[test]
fn a_get_timeout_whose_deadline_is_the_last_second_of_instant_does_not_panic() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = test_queue::<u32>(&redis, "edge");
    q.put(1).unwrap();
    // The longest whole-second timeout the clock holds (from a little before the get).
    let now = std::time::Instant::now();
    let (mut lo, mut hi) = (0u64, u64::MAX);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if now.checked_add(Duration::from_secs(mid)).is_some() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| q.get_timeout(Duration::from_secs(lo))));
    let got = got
        .map_err(|e| e.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| e.downcast_ref::<String>().cloned()));
    println!("get_timeout({lo} s): {got:?}");
    assert_eq!(got, Ok(Ok(1)));
}

/// Drops `held` (a value of `q`) while another thread's `len()` holds `q`'s state: the
/// `len()` is held at the hold point `cluster.len` with the state (review163 L2: a 200 ms
/// sleep stood for it, and under load the drop could take the state first), then, if
/// `stopped`, goes on to Redis stopped; else it goes on once the drop has returned. The
/// drop cannot take the state either way, and leaves the value to the handle's next get.
/// What the drop gave (within 5 s) and what the `len()` returned (Redis running again).
fn drop_beside_a_len(
    alone: &ArmingAlone,
    redis: &Redis,
    q: &Queue<u32>,
    held: multiproc::cluster::Received<'_, u32>,
    stopped: bool,
) -> (Result<(), std::sync::mpsc::RecvTimeoutError>, Result<usize, ClusterError>) {
    alone.armed("hold:cluster.len", || {
        std::thread::scope(|s| {
            let len = s.spawn(|| q.len());
            while multiproc::__private::crash_holding() < 1 {
                std::thread::sleep(Duration::from_millis(5));
            }
            if stopped {
                redis.pause();
                // On its way to the stopped Redis, the state still held.
                multiproc::__private::crash_disarm();
            }
            let (tx, rx) = std::sync::mpsc::channel();
            s.spawn(move || {
                drop(held);
                let _ = tx.send(());
            });
            let dropped = rx.recv_timeout(Duration::from_secs(5));
            multiproc::__private::crash_disarm();
            if stopped {
                redis.resume();
            }
            (dropped, len.join().unwrap())
        })
    })
}

/// review159 M3: a received value's drop does not wait behind another thread's call on the
/// same handle. It took the handle's state with no bound, and a `len()` on a stopped Redis
/// with `timeout(Duration::MAX)` held it for ever ("within 5 s: Err(Timeout)"). It now
/// waits for it half a second at most, and leaves the value to the handle's next get, which
/// gives it back first in line.
#[test]
fn a_value_dropped_beside_a_call_on_a_stopped_redis_does_not_wait_for_it() {
    let alone = arming_alone(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::MAX).open(&redis.url, "shared").unwrap();
    q.put(1).unwrap();
    let held = q.receive().unwrap();
    let (dropped, len) = drop_beside_a_len(&alone, &redis, &q, held, true);
    println!("the value's drop beside a len() on a stopped Redis, within 5 s: {dropped:?}; the len(): {len:?}");
    assert!(dropped.is_ok(), "the value's drop still waits behind the len() 5 s later");
    assert_eq!(len, Ok(0), "the value was held");
    assert_eq!(q.get_timeout(Duration::from_secs(1)), Ok(1), "the value, given back by the handle's next get");
}

/// What `q.get_timeout(100 ms)` gives with `redis` stopped (SIGSTOP), waited for 5 s at most
/// (`Err` if it still waits then); Redis runs again after.
fn get_timeout_on_a_stopped_redis(
    redis: &Redis,
    q: &Queue<u32>,
) -> Result<Result<u32, GetError>, std::sync::mpsc::RecvTimeoutError> {
    redis.pause();
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        s.spawn(move || {
            let _ = tx.send(q.get_timeout(Duration::from_millis(100)));
        });
        let got = rx.recv_timeout(Duration::from_secs(5));
        redis.resume();
        got
    })
}

/// review163 M1: a `get_timeout` whose turn first gives back a dropped value (dropped
/// beside another thread's call), and whose give-back meets a stopped Redis with a
/// password, ends by its deadline and a second. The give-back's failure dropped the
/// connection, and the take opened it again with the link's own wait, not the turn's:
/// `AUTH` waited the queue's timeout ("6.54 s" for a `get_timeout(100 ms)` with the default
/// 5 s), here `Duration::MAX`, for ever. The value stays held (its give-back may have run:
/// it is not tried again), and comes back when its handle retires.
#[test]
fn a_get_timeout_whose_give_back_meets_a_stopped_redis_ends_by_its_deadline() {
    let alone = arming_alone(LIMIT);
    let Some(redis) = Redis::start(&["--requirepass", "pw"]) else { return };
    let url = format!("{}?pass=pw", redis.url);
    let q = Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::MAX).open(&url, "giveback").unwrap();
    q.put(1).unwrap();
    let held = q.receive().unwrap();
    let (dropped, len) = drop_beside_a_len(&alone, &redis, &q, held, false);
    assert!(dropped.is_ok() && len == Ok(0), "the value, left to the next get: {dropped:?} {len:?}");
    let got = get_timeout_on_a_stopped_redis(&redis, &q);
    println!("get_timeout(100 ms) giving back a dropped value on a stopped Redis, timeout(MAX): {got:?}");
    match got {
        Ok(Err(GetError::Redis(ClusterError::Unreachable(_)))) => {}
        Err(_) => panic!("the get_timeout(100 ms) still waits 5 s later"),
        Ok(other) => panic!("the get_timeout(100 ms) whose give-back met a stopped Redis: {other:?}"),
    }
    drop(q);
    let other = Queue::<u32>::builder().authkey(TEST_KEY).open(&url, "giveback").unwrap();
    assert_eq!(other.get_timeout(Duration::from_secs(1)), Ok(1), "the value, back in line");
}

/// review159 M4: a `get_timeout` that must open a connection (its last one closed by the
/// server, as a restart or an idle `timeout` closes it) on a stopped Redis with a password
/// ends by its deadline and a second: the open's `AUTH` waited the queue's timeout ("6.09
/// s" for a `get_timeout(300 ms)` with a 5 s timeout), here `Duration::MAX`, for ever.
#[test]
fn a_get_timeout_whose_open_meets_a_stopped_redis_ends_by_its_deadline() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&["--requirepass", "pw"]) else { return };
    let url = format!("{}?pass=pw", redis.url);
    let q = Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::MAX).open(&url, "stopped").unwrap();
    let kill = Command::new("redis-cli")
        .arg("-s")
        .arg(redis.socket())
        .args(["-a", "pw", "--no-auth-warning", "CLIENT", "KILL", "TYPE", "normal"])
        .output();
    assert_eq!(String::from_utf8_lossy(&kill.unwrap().stdout).trim(), "1", "the queue's connection, closed");
    let got = get_timeout_on_a_stopped_redis(&redis, &q);
    println!("get_timeout(100 ms) opening on a stopped Redis, timeout(MAX): {got:?}");
    match got {
        Ok(Err(GetError::Redis(ClusterError::Unreachable(_)))) => {}
        Err(_) => panic!("the get_timeout(100 ms) still waits 5 s later"),
        Ok(other) => panic!("the get_timeout(100 ms) on a stopped Redis: {other:?}"),
    }
}

/// review159 M4: a `get_timeout` whose acknowledgement meets a stopped Redis (held between
/// its take and its acknowledgement while the server is stopped) returns its value by its
/// deadline and a second: the acknowledgement waited the queue's timeout ("Ok((Ok(1), 4.08
/// s))" for a `get_timeout(1 s)` with a 3 s timeout), here `Duration::MAX`, for ever. The
/// value is held still (delivered again when its handle retires, or after the lease).
#[test]
fn a_get_timeout_whose_acknowledgement_meets_a_stopped_redis_ends_by_its_deadline() {
    let alone = arming_alone(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::MAX).open(&redis.url, "ack").unwrap();
    q.put(1).unwrap();
    let got = alone.armed("hold:cluster.get.taken", || {
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            let q = &q;
            s.spawn(move || {
                let _ = tx.send(q.get_timeout(Duration::from_millis(100)));
            });
            while multiproc::__private::crash_holding() < 1 {
                std::thread::sleep(Duration::from_millis(5));
            }
            redis.pause();
            multiproc::__private::crash_disarm();
            let got = rx.recv_timeout(Duration::from_secs(5));
            redis.resume();
            got
        })
    });
    println!("get_timeout(100 ms) acknowledging on a stopped Redis, timeout(MAX): {got:?}");
    match got {
        Ok(Ok(1)) => {}
        Err(_) => panic!("the get_timeout(100 ms) still waits 5 s later"),
        Ok(other) => panic!("the get_timeout(100 ms) whose acknowledgement met a stopped Redis: {other:?}"),
    }
}

/// aud105 L1: a queue's handles dropped cleanly leave no key of their own behind, only the
/// items still in line: a producer's record of puts (`puts:ID`) goes with it, and a
/// consumer's number of its last take (`last:ID`) with the rest of its keys. Before, both
/// stayed until they expired (a lease, an hour). A handle one of whose puts may have run
/// unseen (its reply lost) keeps its record for that hour: a copy of that put reaching
/// Redis late must still be refused.
#[test]
fn a_queue_dropped_cleanly_leaves_no_key_of_its_own() {
    let alone = arming_alone(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let keys = |name: &str| {
        let mut keys: Vec<String> =
            redis.mp_keys().into_iter().filter(|k| k.starts_with(&format!("mp:{{q:{name}}}"))).collect();
        keys.sort();
        keys
    };
    let producer = test_queue::<u32>(&redis, "clean");
    for n in 1..=3 {
        producer.put(n).unwrap();
    }
    let consumer = test_queue::<u32>(&redis, "clean");
    assert_eq!(consumer.get().unwrap(), 1);
    let received = consumer.receive().unwrap();
    assert_eq!(*received, 2);
    received.ack().unwrap();
    drop(producer);
    assert!(!keys("clean").iter().any(|k| k.contains(":puts:")), "after the producer's drop: {:?}", keys("clean"));
    drop(consumer);
    assert_eq!(keys("clean"), ["mp:{q:clean}:items"], "after the consumer's drop (3 waits in line)");
    // A put whose reply was lost, put again: its record stays.
    let unsure =
        Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(300)).open(&redis.url, "kept").unwrap();
    let put = alone.armed("fail:cluster.put.reply", || unsure.put(7));
    let Err(PutError::Unsure(token, _)) = put else { panic!("the put's reply was lost: {put:?}") };
    unsure.put_again(token).unwrap();
    drop(unsure);
    let kept = keys("kept");
    assert!(kept.len() == 2 && kept[0] == "mp:{q:kept}:items" && kept[1].contains(":puts:"), "{kept:?}");
}

/// review156 L1: a drop never hangs. A producer's drop deletes its record of puts, a
/// consumer's retires it, and a received value's gives it back, each an exchange with
/// Redis; on a stopped Redis (`SIGSTOP`) each waited for the handle's timeout, for ever with
/// `Duration::MAX`. Now a drop's exchange waits a short fixed bound, and what it would have
/// done is left to expire (the value held stays in the processing list: delivered again
/// after the lease, or when its handle is dropped).
#[test]
fn a_queue_dropped_while_redis_is_stopped_does_not_hang() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let open = || Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::MAX).open(&redis.url, "stopped").unwrap();
    let (producer, consumer) = (open(), open());
    // Its handle is left open (leaked): the value it received goes to another thread.
    let holder: &'static Queue<u32> = Box::leak(Box::new(open()));
    producer.put(1).unwrap();
    producer.put(2).unwrap();
    assert_eq!(consumer.get().unwrap(), 1);
    let held = holder.receive().unwrap();
    redis.pause();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        drop(held);
        let _ = tx2.send("a received value");
    });
    for (who, q) in [("producer", producer), ("consumer", consumer)] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            drop(q);
            let _ = tx.send(who);
        });
    }
    let dropped: Vec<_> = (0..3).map_while(|_| rx.recv_timeout(Duration::from_secs(10)).ok()).collect();
    redis.resume();
    println!("dropped on a stopped Redis within 10 s: {dropped:?}");
    assert_eq!(dropped.len(), 3, "a drop on a stopped Redis still waits 10 s later (dropped: {dropped:?})");
}

/// The handle a `Fork` child of [`a_fork_childs_copy_puts_under_a_record_of_its_own`]
/// gets with its parent's memory.
static FORKED: Mutex<Option<Queue<u32>>> = Mutex::new(None);

/// In the `Fork` child: a put through the parent's copy of [`FORKED`] whose reply is lost;
/// the command a late copy of it would carry.
fn forked_put(_: ()) -> Result<Vec<Vec<u8>>, String> {
    let copy = FORKED.lock().unwrap_or_else(|e| e.into_inner());
    let q = copy.as_ref().ok_or("no handle")?;
    multiproc::__private::crash_at("fail:cluster.put.reply");
    let put = q.put(7);
    multiproc::__private::crash_disarm();
    match put {
        Err(PutError::Unsure(token, _)) => Ok(multiproc::__private::cluster_put_command(q, &token)),
        other => Err(format!("{other:?}")),
    }
}

/// review156 M2: a `Fork` child's copy of a handle puts under a record of puts of its own.
/// It shared its parent's, so the parent's clean drop deleted the record that refused a late
/// copy of the child's put whose reply was lost: the copy ran again (the queue held 7
/// twice). And the two counted from the same number: the parent's next put had the number
/// of the child's, and was refused as run already (lost).
#[test]
fn a_fork_childs_copy_puts_under_a_record_of_its_own() {
    let _alone = arming_alone(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q =
        Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(300)).open(&redis.url, "fk").unwrap();
    q.put(1).unwrap();
    *FORKED.lock().unwrap() = Some(q);
    // SAFETY: the other test threads wait on `ARMING` (this test holds it) or run no code
    // of the child's; the child only runs `forked_put` (its own lock of `FORKED`).
    unsafe { multiproc::allow_fork_with_threads() };
    let child = multiproc::Process::new(forked_put, ()).start_method(multiproc::StartMethod::Fork).start();
    let late = child.unwrap().join().unwrap().unwrap();
    let q = FORKED.lock().unwrap().take().unwrap();
    q.put(3).unwrap();
    drop(q);
    let count = || String::from_utf8_lossy(&redis.raw(&[b"LLEN", b"mp:{q:fk}:items"])).into_owned();
    let before = count();
    let args: Vec<&[u8]> = late.iter().map(Vec::as_slice).collect();
    let replay = String::from_utf8_lossy(&redis.raw(&args)).into_owned();
    let after = count();
    println!("items: {before:?}; the late copy of the child's put: {replay:?}; items: {after:?}");
    assert_eq!(before, ":3\r\n", "the parent's 1 and 3 and the child's 7 (the parent's 3 was refused)");
    assert_eq!(replay, ":2\r\n", "a late copy of the child's put, after the parent's drop, ran again");
    assert_eq!(after, ":3\r\n");
}

/// The handle a `Fork` child of [`a_fork_childs_copy_takes_for_a_consumer_of_its_own`] gets
/// with its parent's memory.
static TAKER: Mutex<Option<Queue<u32>>> = Mutex::new(None);

/// In the `Fork` child: once `go` is set, a receive through the parent's copy of [`TAKER`],
/// its value held (never acknowledged nor given back).
fn forked_take(go: multiproc::Event) -> Result<u32, String> {
    go.wait().map_err(|e| e.to_string())?;
    let copy = TAKER.lock().unwrap_or_else(|e| e.into_inner());
    let q = copy.as_ref().ok_or("no handle")?;
    let held = q.receive_timeout(Duration::from_secs(5)).map_err(|e| format!("{e:?}"))?;
    let value = *held;
    std::mem::forget(held);
    Ok(value)
}

/// review159 L3: a `Fork` child's copy of a handle takes for a consumer of its own. It took
/// for its parent's, numbering its takes from the parent's count: its take 1 (a receive,
/// held) ran after the parent's take 1, whose reply was lost (it ran all the same), and the
/// parent's next get, looking for its own take 1 (`RECOVER`), gave back the newest item
/// held, the child's: 2 was delivered twice, and 1 stayed held, unseen.
#[test]
fn a_fork_childs_copy_takes_for_a_consumer_of_its_own() {
    let alone = arming_alone(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = Queue::<u32>::builder().authkey(TEST_KEY).timeout(Duration::from_millis(300)).open(&redis.url, "fkt");
    let q = q.unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    *TAKER.lock().unwrap() = Some(q);
    let go = multiproc::Event::new().unwrap();
    // SAFETY: the other test threads wait on `ARMING` (this test holds it) or run no code
    // of the child's; the child only runs `forked_take` (its own lock of `TAKER`).
    unsafe { multiproc::allow_fork_with_threads() };
    let child = multiproc::Process::new(forked_take, go.clone()).start_method(multiproc::StartMethod::Fork).start();
    let child = child.unwrap();
    let q = TAKER.lock().unwrap().take().unwrap();
    // A live consumer has a heartbeat (its first take carries one; the lost take and its
    // late bytes carry none): else the late take finds none and lands nothing (review171
    // M1; with fix127, the child's first heartbeat gave back what it landed, as a dead
    // consumer's).
    q.keep_alive().unwrap();
    // The parent's take 1, its reply lost: it ran all the same (1, held).
    let lost = alone.armed("fail:cluster.take.lost", || q.try_get());
    assert!(matches!(lost, Err(GetError::Redis(ClusterError::Unreachable(_)))), "{lost:?}");
    let mut s = UnixStream::connect(redis.socket()).unwrap();
    s.write_all(&multiproc::__private::cluster_take_command(&q, 1)).unwrap();
    let mut reply = [0; 64];
    let _ = s.read(&mut reply).unwrap();
    assert_eq!(redis.raw(&[b"LLEN", b"mp:{q:fkt}:items"]), b":1\r\n", "the lost take ran");
    go.set();
    let childs = child.join().unwrap();
    let parents = q.get_timeout(Duration::from_secs(1));
    println!("the child's get: {childs:?}; the parent's next get: {parents:?}");
    assert_eq!(childs, Ok(2));
    assert_eq!(parents, Ok(1), "the parent's lost take is recovered, not the child's");
}

/// review159 L4: a take that reaches Redis after the next take's `RECOVER` looked for it (a
/// take whose send was lost, its bytes delivered late: a partition healing, two connections'
/// bytes in either order) puts what it moved back in line. It held it: `RECOVER` had looked
/// once, found nothing, and no later take looks again, so the item stayed in the processing
/// list of a live consumer, unseen until the handle retired.
#[test]
fn a_take_that_reaches_redis_after_its_recovery_puts_its_item_back() {
    let alone = arming_alone(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = test_queue::<u32>(&redis, "late");
    q.put(1).unwrap();
    q.put(2).unwrap();
    // Take 1, lost before it reached Redis.
    let lost = alone.armed("fail:cluster.take.lost", || q.try_get());
    assert!(matches!(lost, Err(GetError::Redis(ClusterError::Unreachable(_)))), "{lost:?}");
    let late = multiproc::__private::cluster_take_command(&q, 1);
    // Take 2, after `RECOVER` for take 1 found nothing.
    assert_eq!(q.get(), Ok(1));
    // Take 1 reaches Redis now, late.
    let head = deliver_late(&redis, &late);
    let got = q.get_timeout(Duration::from_millis(300));
    println!("the late take's reply: {head:?}; the next get: {got:?}");
    assert_eq!(got, Ok(2), "the item the late take moved is back in line");
}

/// A take's `bytes` (from `__private::cluster_take_command`) delivered to `redis` late, on a
/// connection of their own (a partition healing: the kernel sends what a closed socket
/// still held); the first line of Redis's reply.
fn deliver_late(redis: &Redis, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(redis.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut reply = [0; 64];
    let n = s.read(&mut reply).unwrap();
    String::from_utf8_lossy(&reply[..n]).lines().next().unwrap_or_default().to_owned()
}

/// review163 H1: a take that reaches Redis after its handle retired (dropped: `RETIRE` took
/// its consumer out of the set of consumers and deleted its fence) gives what it moved back
/// at the next heartbeat of any consumer. It moved the item into a processing list no
/// heartbeat looks at (only the set's consumers are reclaimed), with no expiry: held for
/// ever ("another consumer's get: Err(Timeout)", its `proc:` key left). fix127 had `TAKE`
/// add the consumer back to the set when it landed an item, for the next heartbeat to
/// reclaim; now (review171 M1) `TAKE` lands nothing without a heartbeat, and the item is
/// back in line at once (the late take answers -1).
#[test]
fn a_take_that_reaches_redis_after_its_handle_retired_gives_its_item_back() {
    let alone = arming_alone(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = test_queue::<u32>(&redis, "retired");
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert_eq!(q.get(), Ok(1), "its heartbeat is fresh: the next take carries none");
    // Take 2, lost before it reached Redis.
    let lost = alone.armed("fail:cluster.take.lost", || q.try_get());
    assert!(matches!(lost, Err(GetError::Redis(ClusterError::Unreachable(_)))), "{lost:?}");
    let late = multiproc::__private::cluster_take_command(&q, 2);
    drop(q);
    let reply = deliver_late(&redis, &late);
    assert_eq!(redis.raw(&[b"LLEN", b"mp:{q:retired}:items"]), b":1\r\n", "2, back in line at once ({reply})");
    let got = test_queue::<u32>(&redis, "retired").get_timeout(Duration::from_millis(300));
    println!("the late take's reply: {reply:?}; another consumer's get: {got:?}; keys: {:?}", redis.mp_keys());
    assert_eq!(got, Ok(2), "the item the late take moved is held by a consumer that retired");
}

/// review163 H1, a consumer gone for good: its process killed after a take that never
/// reached Redis, its lease run out and its consumer forgotten by another's heartbeat (the
/// reclaim), the take then reaches Redis. Its item is back in line at once (it finds no
/// heartbeat: review171 M1; fix127 had the next heartbeat of a live consumer give it back);
/// it was held for ever.
#[test]
fn a_take_that_reaches_redis_after_its_consumer_was_killed_gives_its_item_back() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let q = Queue::<u32>::builder().authkey(TEST_KEY).lease(Duration::from_millis(300)).open(&redis.url, "gone");
    let q = q.unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let mut taker = other_program("lost take", &redis.url);
    let mut out = BufReader::new(taker.stderr.take().unwrap());
    let line = read_until(&mut out, "late take ");
    let hex = line.strip_prefix("late take ").unwrap();
    let late: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    // The other program's consumer (this handle never took: it has no heartbeat).
    let alive = String::from_utf8_lossy(&redis.raw(&[b"KEYS", b"mp:{q:gone}:alive:*"])).into_owned();
    let alive = alive.lines().find(|l| l.starts_with("mp:")).expect("the other consumer's heartbeat").to_owned();
    let id = alive.rsplit(':').next().unwrap().to_owned();
    taker.kill().unwrap();
    taker.wait().unwrap();
    let expired = || redis.raw(&[b"EXISTS", alive.as_bytes()]) == b":0\r\n";
    assert!(common::eventually(Duration::from_secs(10), expired), "its heartbeat expires after the lease");
    q.keep_alive().unwrap();
    let member = || redis.raw(&[b"SISMEMBER", b"mp:{q:gone}:consumers", id.as_bytes()]);
    assert_eq!(member(), b":0\r\n", "the dead consumer, reclaimed by this one's heartbeat");
    let reply = deliver_late(&redis, &late);
    assert_eq!(redis.raw(&[b"LLEN", b"mp:{q:gone}:items"]), b":1\r\n", "2, back in line at once ({reply})");
    q.keep_alive().unwrap();
    let got = q.get_timeout(Duration::from_millis(300));
    println!("the late take's reply: {reply:?}; another consumer's get after its heartbeat: {got:?}");
    assert_eq!(got, Ok(2), "the item the late take moved is held by a consumer killed long ago");
}

/// A unix-socket proxy in front of `redis` for one test: it forwards both ways, and while
/// `hold` is set, the bytes a client sends wait in it before they go on (a partition, a
/// sender stopped or suspended between its look at its heartbeat and its send). Its drop
/// ends its listener.
struct Proxy {
    url: String,
    path: std::path::PathBuf,
    hold: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    fn new(redis: &Redis) -> Proxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let path = redis.dir.join("proxy.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let (hold, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let upstream = redis.socket();
        let (held, stopped) = (hold.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut server) = UnixStream::connect(&upstream) else { return };
                let (mut back, mut from) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let held = held.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = client.read(&mut buf) {
                        while held.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        if server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = from.read(&mut buf) {
                        if back.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = back.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Proxy { url: format!("redis+unix://{}", path.display()), path, hold, stop }
    }

    fn hold(&self, hold: bool) {
        self.hold.store(hold, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.hold(false);
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path);
    }
}

/// review171 M1: a live consumer's take that reaches Redis after its heartbeat expired
/// lands nothing; its get takes again, with a heartbeat. It landed, the item delivered to
/// this consumer, and the next heartbeat of any consumer gave it back while this one held
/// it: delivered twice, and the first consumer's ack said `Ok` having removed nothing.
/// Reached by a consumer stopped or suspended between its look at its heartbeat and its
/// send (a suspend is not counted by `Instant`), or a network delay longer than a short
/// lease. Two ways, each with a proxy that holds the consumer's take on its way:
///
/// - `reclaimed`: another consumer's heartbeat reclaimed it (took it out of the set of
///   consumers) before the take landed; `TAKE`'s `SADD` (review163 H1's fix) put it back
///   in the set, with no heartbeat;
/// - not reclaimed (a `try_receive`): nobody beat meanwhile, it was still in the set with
///   its heartbeat expired (a hole older than review163 H1's fix).
#[test]
fn a_live_consumers_take_that_lands_after_its_heartbeat_expired_is_not_delivered_twice() {
    let _w = unarmed_test(LIMIT);
    let Some(redis) = Redis::start(&[]) else { return };
    let proxy = Proxy::new(&redis);
    let mut outcomes = Vec::new();
    for reclaimed in [true, false] {
        let name = if reclaimed { "reclaimed" } else { "expired" };
        let other = test_queue::<u32>(&redis, name);
        other.put(1).unwrap();
        let lease = Duration::from_millis(300);
        let q = Queue::<u32>::builder().authkey(TEST_KEY).lease(lease).open(&proxy.url, name).unwrap();
        q.keep_alive().unwrap();
        let pattern = format!("mp:{{q:{name}}}:alive:*");
        let alive = String::from_utf8_lossy(&redis.raw(&[b"KEYS", pattern.as_bytes()])).into_owned();
        let alive = alive.lines().find(|l| l.starts_with("mp:")).expect("the consumer's heartbeat").to_owned();
        let id = alive.rsplit(':').next().unwrap().to_owned();
        let consumers = format!("mp:{{q:{name}}}:consumers");
        // Its take goes at once (its heartbeat is fresh: no heartbeat in it), held on its way.
        // The second way, a try: taken again once, it does not say `Empty` with 1 in line.
        proxy.hold(true);
        std::thread::scope(|s| {
            let taker = s.spawn(|| if reclaimed { q.receive_timeout(Duration::from_secs(5)) } else { q.try_receive() });
            let expired = || redis.raw(&[b"EXISTS", alive.as_bytes()]) == b":0\r\n";
            assert!(common::eventually(Duration::from_secs(10), expired), "its heartbeat expires after the lease");
            if reclaimed {
                other.keep_alive().unwrap();
            }
            let member = redis.raw(&[b"SISMEMBER", consumers.as_bytes(), id.as_bytes()]);
            let member = String::from_utf8_lossy(&member).trim().to_owned();
            proxy.hold(false);
            let held = taker.join().unwrap();
            let held_value = held.as_ref().map(|r| **r).map_err(|e| format!("{e:?}"));
            // Another consumer's heartbeat, then its get, while the first holds 1.
            other.keep_alive().unwrap();
            let others = other.try_get();
            let acked = held.map(|r| r.ack().map_err(|e| format!("{e:?}")));
            let left: Vec<String> = redis.mp_keys().into_iter().filter(|k| k.contains(":proc:")).collect();
            println!(
                "{name}: in the set as its take landed: {member}; its receive: {held_value:?}; another's \
                 get after its heartbeat: {others:?}; its ack: {acked:?}; held after: {left:?}"
            );
            assert_eq!(member, if reclaimed { ":0" } else { ":1" });
            outcomes.push((name, held_value, others, acked.ok(), left));
        });
    }
    // Both ways printed before any is judged.
    for (name, held_value, others, acked, left) in outcomes {
        assert_eq!(held_value, Ok(1), "{name}: the late take's consumer gets 1");
        assert_eq!(others, Err(GetError::Empty), "{name}: 1 delivered twice: held by one and taken by another");
        assert_eq!(acked, Some(Ok(1)));
        assert!(left.is_empty(), "{name}: held after its ack: {left:?}");
    }
}
