//! `multiproc::cluster` over the network: Redis on TCP with AUTH and TLS, and programs on
//! other "machines" (network and PID namespaces, `common::machine`).
//!
//! Each test starts its own Redis (`redis-server` on a free TCP port, no persistence),
//! stopped at the end. Without `redis-server` (or where namespaces are not allowed, for the
//! machine tests) the tests say so and pass, unless `MULTIPROC_REQUIRE_REDIS` (or
//! `MULTIPROC_REQUIRE_NAMESPACES`) is set; CI sets both.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::Duration;

use common::machine::{Machine, ScratchDir, TcpRedis, certificates, tls_redis};
use common::redis::MP_USER;
use common::watchdog;
use multiproc::cluster::{ClusterError, ClusterOptions, GetError, KEY_ENV, Queue, Tls, WORKER_ENV};
use multiproc::{Pool, ResultTimeoutError, TaskError};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(60);
const ROLE: &str = "MULTIPROC_TEST_CLUSTER_NET_ROLE";
const URL: &str = "MULTIPROC_TEST_CLUSTER_NET_URL";
/// The cluster key of every queue, pool and node of these tests (review75 L7: no test
/// reads, or makes, the user's own key file).
const TEST_KEY: &str = "the key of the cluster network tests";

// --- AUTH through the URL ------------------------------------------------------------

#[test]
fn a_password_in_the_url_opens_the_queue_and_a_wrong_one_is_a_typed_error() {
    let _w = watchdog(LIMIT);
    let Some(redis) = TcpRedis::start(&["--requirepass", "s3cret"]) else { return };
    let port = redis.port;
    let q = Queue::<String>::builder()
        .authkey(TEST_KEY)
        .open(&format!("redis://:s3cret@127.0.0.1:{port}/0"), "jobs")
        .unwrap();
    q.put("through AUTH".into()).unwrap();
    assert_eq!(q.get().unwrap(), "through AUTH");

    let wrong =
        Queue::<String>::builder().authkey(TEST_KEY).open(&format!("redis://:wrong@127.0.0.1:{port}/0"), "jobs");
    assert!(matches!(&wrong, Err(ClusterError::Auth(why)) if why.contains("wrong password")), "{wrong:?}");
    let none = Queue::<String>::builder().authkey(TEST_KEY).open(&format!("redis://127.0.0.1:{port}/0"), "jobs");
    assert!(matches!(&none, Err(ClusterError::Auth(why)) if why.contains("requires a password")), "{none:?}");
    let err: multiproc::Error = wrong.unwrap_err().into();
    assert!(err.to_string().contains("credentials"), "{err}");
}

#[test]
fn an_acl_user_limited_to_the_mp_prefix_works_through_the_url() {
    let _w = watchdog(LIMIT);
    let Some(redis) = TcpRedis::start(&MP_USER) else { return };
    let url = format!("redis://worker:pw@127.0.0.1:{}/0", redis.port);
    let producer = Queue::<u32>::builder().authkey(TEST_KEY).maxsize(10).open(&url, "jobs").unwrap(); // puts by script
    let consumer =
        Queue::<u32>::builder().authkey(TEST_KEY).lease(Duration::from_millis(300)).open(&url, "jobs").unwrap();
    for n in 0..3 {
        producer.put(n).unwrap();
    }
    let held = consumer.receive().unwrap();
    consumer.keep_alive().unwrap();
    assert_eq!(held.ack().unwrap(), 0);
    assert_eq!((consumer.get().unwrap(), consumer.try_get().unwrap()), (1, 2));
    drop(consumer);
    assert!(producer.is_empty().unwrap());

    let wrong = Queue::<u32>::builder()
        .authkey(TEST_KEY)
        .open(&format!("redis://worker:nope@127.0.0.1:{}/0", redis.port), "jobs");
    assert!(matches!(&wrong, Err(ClusterError::Auth(why)) if why.contains("wrong password")), "{wrong:?}");
    let nobody = Queue::<u32>::builder()
        .authkey(TEST_KEY)
        .open(&format!("redis://nobody:pw@127.0.0.1:{}/0", redis.port), "jobs");
    assert!(matches!(nobody, Err(ClusterError::Auth(_))), "{nobody:?}");
}

/// A message that does not decode, taken by a user who may not run `MULTI` (the documented
/// ACL, since review80 L8): moved to the dead letters whole. The move was a transaction,
/// refused there (review36 M2: the refusal, not commands run one by one outside a
/// transaction that passed for one); it is a script since review75 L5 (moved only if still
/// this consumer's), which needs no `MULTI`.
#[test]
fn a_user_without_multi_sets_aside_a_message_that_does_not_decode_whole() {
    let _w = watchdog(LIMIT);
    let Some(redis) = TcpRedis::start(&MP_USER) else { return };
    let url = format!("redis://worker:pw@127.0.0.1:{}/0", redis.port);
    let strings = Queue::<String>::builder().authkey(TEST_KEY).open(&url, "jobs").unwrap();
    strings.put("not a number".into()).unwrap();
    let numbers = Queue::<u32>::builder().authkey(TEST_KEY).open(&url, "jobs").unwrap();
    let got = numbers.get();
    assert!(matches!(&got, Err(GetError::Decode(_))), "{got:?}");
    let mut conn = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
    let dead: usize = redis::cmd("LLEN").arg("mp:{q:jobs}:dead").query(&mut conn).unwrap();
    assert_eq!(dead, 1, "set aside");
    assert!(matches!(numbers.try_get(), Err(GetError::Empty)), "nor left in line");
}

/// A consumer that may take but not push (`-lpush`, or `-rpush`), with a producer that may:
/// the server's arguments, and the URLs of the consumer and of the producer.
fn consumer_only(refused: &'static str) -> Option<(TcpRedis, String, String)> {
    let mut acl = MP_USER.to_vec();
    acl.push(refused);
    acl.extend(["--user", "producer", "on", ">pw", "~mp:*", "&*", "+@all"]);
    let redis = TcpRedis::start(&acl)?;
    let consumer = format!("redis://worker:pw@127.0.0.1:{}/0", redis.port);
    let producer = format!("redis://producer:pw@127.0.0.1:{}/0", redis.port);
    Some((redis, consumer, producer))
}

/// The lengths of the dead letters and of every processing list of queue `jobs`.
fn dead_and_held(producer: &str) -> (usize, usize) {
    let mut conn = redis::Client::open(producer).unwrap().get_connection().unwrap();
    let dead: usize = redis::cmd("LLEN").arg("mp:{q:jobs}:dead").query(&mut conn).unwrap();
    let lists: Vec<String> = redis::cmd("KEYS").arg("mp:{q:jobs}:proc:*").query(&mut conn).unwrap();
    let held = lists.iter().map(|l| redis::cmd("LLEN").arg(l).query::<usize>(&mut conn).unwrap()).sum();
    (dead, held)
}

/// A message that does not decode, taken by a consumer that may not push it to the dead
/// letters: the refusal, and the message stays in the consumer's processing list (to go
/// back in line when it retires). The set-aside script removed it, then its push was
/// refused, and a script's writes are not undone: it was in neither list (review80 M2).
#[test]
fn a_consumer_refused_the_dead_letter_push_keeps_the_message() {
    let _w = watchdog(LIMIT);
    let Some((_redis, consumer, producer)) = consumer_only("-lpush") else { return };
    let strings = Queue::<String>::builder().authkey(TEST_KEY).open(&producer, "jobs").unwrap();
    strings.put("not a number".into()).unwrap();
    let numbers = Queue::<u32>::builder().authkey(TEST_KEY).open(&consumer, "jobs").unwrap();
    let got = numbers.get();
    assert!(matches!(&got, Err(GetError::Redis(_))), "{got:?}");
    assert_eq!(dead_and_held(&producer), (0, 1), "neither set aside nor lost");
    drop(numbers);
    assert_eq!(strings.len().unwrap(), 1, "back in line once its consumer retired");
}

/// The same for a value dropped unacknowledged by a consumer that may not push it back in
/// line: it stays held, not lost (review80 M2).
#[test]
fn a_consumer_refused_the_push_back_keeps_a_dropped_value() {
    let _w = watchdog(LIMIT);
    let Some((_redis, consumer, producer)) = consumer_only("-rpush") else { return };
    let producer_q = Queue::<u32>::builder().authkey(TEST_KEY).open(&producer, "jobs").unwrap();
    producer_q.put(7).unwrap();
    let consumer_q = Queue::<u32>::builder().authkey(TEST_KEY).open(&consumer, "jobs").unwrap();
    drop(consumer_q.receive().unwrap());
    assert_eq!(dead_and_held(&producer), (0, 1), "still held, not lost");
    drop(consumer_q);
    assert_eq!(producer_q.get().unwrap(), 7, "back in line once its consumer retired");
}

/// A take under a user who may not run `CLIENT REPLY`: the refusal, and the connection
/// goes with it. The move whose reply it was to skip ran, and its reply (and the take's)
/// stayed unread on a connection kept: every later command read a reply two places old
/// (review36 M1).
#[test]
fn a_refused_client_reply_skip_leaves_no_reply_behind() {
    let _w = watchdog(LIMIT);
    let mut acl = MP_USER.to_vec();
    acl.push("-client");
    let Some(redis) = TcpRedis::start(&acl) else { return };
    let url = format!("redis://worker:pw@127.0.0.1:{}/0", redis.port);
    let producer = Queue::<u32>::builder().authkey(TEST_KEY).open(&url, "jobs").unwrap();
    producer.put(7).unwrap();
    producer.put(8).unwrap();
    let consumer = Queue::<u32>::builder().authkey(TEST_KEY).open(&url, "jobs").unwrap();
    let got = consumer.try_get();
    assert!(matches!(&got, Err(GetError::Redis(e)) if e.to_string().to_lowercase().contains("client")), "{got:?}");
    // The next command on the consumer's link reads its own reply.
    assert_eq!(consumer.len().map_err(|e| e.to_string()), producer.len().map_err(|e| e.to_string()));
}

#[test]
fn a_user_whose_acl_does_not_cover_the_queue_gets_a_typed_error() {
    let _w = watchdog(LIMIT);
    #[rustfmt::skip]
    let acl = ["--user", "default", "off", "--user", "other", "on", ">pw", "~other:*", "+@all"];
    let Some(redis) = TcpRedis::start(&acl) else { return };
    let q = Queue::<u32>::builder()
        .authkey(TEST_KEY)
        .open(&format!("redis://other:pw@127.0.0.1:{}/0", redis.port), "jobs")
        .unwrap();
    let put = q.put(1);
    assert!(
        matches!(&put, Err(multiproc::cluster::PutError::Redis(1, ClusterError::Auth(why))) if why.contains("may not")),
        "{put:?}"
    );
    let get = q.try_get();
    assert!(matches!(get, Err(GetError::Redis(ClusterError::Auth(_)))), "{get:?}");
}

// --- TLS (rediss://) -----------------------------------------------------------------

/// What a test CA made: its PEM, and a client certificate and key it signed.
#[test]
fn a_queue_over_tls_round_trips_with_the_ca_trusted() {
    let _w = watchdog(LIMIT);
    let Some((redis, pki, _dir)) = tls_redis(&[]) else { return };
    let ca = pki.ca;
    let url = format!("rediss://:s3cret@127.0.0.1:{}/0", redis.port);
    let producer = Queue::<(u32, String)>::builder()
        .authkey(TEST_KEY)
        .tls(Tls::new().ca_pem(ca.clone()))
        .open(&url, "secure")
        .unwrap();
    let consumer =
        Queue::<(u32, String)>::builder().authkey(TEST_KEY).tls(Tls::new().ca_pem(ca)).open(&url, "secure").unwrap();
    for n in 0..20 {
        producer.put((n, format!("item {n}"))).unwrap();
    }
    let got: Vec<_> = (0..20).map(|_| consumer.get().unwrap()).collect();
    assert_eq!(got, (0..20).map(|n| (n, format!("item {n}"))).collect::<Vec<_>>());
    let held = consumer.receive_timeout(Duration::from_millis(50));
    assert!(matches!(held, Err(GetError::Timeout)), "{held:?}");
}

#[test]
fn an_untrusted_certificate_or_no_tls_is_a_typed_error() {
    let _w = watchdog(LIMIT);
    let Some((redis, _pki, dir)) = tls_redis(&[]) else { return };
    let port = redis.port;
    // The system's authorities do not know the test CA.
    let untrusted =
        Queue::<u32>::builder().authkey(TEST_KEY).open(&format!("rediss://:s3cret@127.0.0.1:{port}/0"), "q");
    assert!(matches!(&untrusted, Err(ClusterError::Tls(why)) if why.contains("certificate")), "{untrusted:?}");
    // Another CA, made for the occasion, is not the one that signed the server's.
    let other_ca = certificates(&dir).ca;
    let wrong_ca = Queue::<u32>::builder()
        .authkey(TEST_KEY)
        .tls(Tls::new().ca_pem(other_ca))
        .open(&format!("rediss://127.0.0.1:{port}"), "q");
    assert!(matches!(wrong_ca, Err(ClusterError::Tls(_))), "{wrong_ca:?}");
    // Certificates that do not parse, or given for a URL without TLS.
    let garbage = Queue::<u32>::builder()
        .authkey(TEST_KEY)
        .tls(Tls::new().ca_pem("not a PEM"))
        .open(&format!("rediss://127.0.0.1:{port}"), "q");
    assert!(matches!(garbage, Err(ClusterError::Tls(_) | ClusterError::BadUrl(_))), "{garbage:?}");
    let plain =
        Queue::<u32>::builder().authkey(TEST_KEY).tls(Tls::new()).open(&format!("redis://127.0.0.1:{port}"), "q");
    assert!(matches!(plain, Err(ClusterError::BadUrl(_))), "{plain:?}");
    // Skipping the checks is refused on purpose.
    let insecure =
        Queue::<u32>::builder().authkey(TEST_KEY).open(&format!("rediss://:s3cret@127.0.0.1:{port}/#insecure"), "q");
    assert!(matches!(&insecure, Err(ClusterError::BadUrl(why)) if why.contains("insecure")), "{insecure:?}");
    // A plain client against the TLS port: an error, not a hang.
    let mixed = Queue::<u32>::builder()
        .authkey(TEST_KEY)
        .timeout(Duration::from_secs(2))
        .open(&format!("redis://127.0.0.1:{port}"), "q");
    assert!(mixed.is_err(), "{mixed:?}");
}

/// `redis-cli` against a `tls_redis` (password `s3cret`, its certificate not checked): its
/// reply's lines.
fn tls_cli(redis: &TcpRedis, args: &[&str]) -> Vec<String> {
    let out = Command::new("redis-cli")
        .args(["--tls", "--insecure", "-p", &redis.port.to_string(), "-a", "s3cret", "--no-auth-warning"])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// How many TLS handshakes a `tls_redis` has failed, as its log says (`loglevel verbose`,
/// set by the first call).
fn failed_handshakes(redis: &TcpRedis) -> usize {
    tls_cli(redis, &["CONFIG", "SET", "loglevel", "verbose"]);
    let log = tls_cli(redis, &["CONFIG", "GET", "logfile"]);
    let log = std::fs::read_to_string(log.get(1).map_or("", String::as_str)).unwrap_or_default();
    log.matches("Error accepting a client connection").count()
}

/// Gives a `tls_redis` the certificate `cert` and key `key` and drops its clients' connections,
/// so that those who connect again meet it.
fn swap_certificate(redis: &TcpRedis, cert: &std::path::Path, key: &std::path::Path) {
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    assert_eq!(tls_cli(redis, &["CONFIG", "SET", "tls-cert-file", cert, "tls-key-file", key]), ["OK"]);
    tls_cli(redis, &["CLIENT", "KILL", "TYPE", "normal"]);
}

/// A node serving a `rediss://` Redis given its CA in code (`ServeOptions::tls`) waits out
/// a server certificate that is not valid yet (a clock behind the server's: it heals), and
/// serves again once the certificate is good; a certificate signed by a CA the node does not
/// trust ends it, with the typed `Tls` error (clu101 item 3: any TLS failure after the start
/// was warned about and tried again for ever, the node serving nothing). A pool's driver
/// given the CA in code (`ClusterOptions::tls`) meets the same certificate: its running
/// task fails with the typed `Tls` error, at once, its next beat (a lease of 30 s) far
/// beyond its timeout (3 s), so that the bound's read meets the certificate first: a step
/// that finds no connection to read it on says why its open failed (`Link::open_failed`),
/// where it said `Unreachable` after the timeout (review144 L1).
#[test]
fn a_node_ends_on_an_untrusted_certificate_after_its_start_and_waits_out_one_not_valid_yet() {
    let _w = watchdog(LIMIT);
    let Some((redis, pki, dir)) = tls_redis(&[]) else { return };
    let url = format!("rediss://:s3cret@127.0.0.1:{}/0", redis.port);
    let options = multiproc::cluster::ServeOptions::new()
        .processes(1)
        .timeout(Duration::from_secs(1))
        .authkey(TEST_KEY)
        .tls(Tls::new().ca_pem(pki.ca.clone()));
    let (tx, rx) = std::sync::mpsc::channel();
    let served = url.clone();
    std::thread::spawn(move || _ = tx.send(multiproc::cluster::serve(&served, options)));
    // Serving: its reader's connection is listed beside redis-cli's.
    let serving = || tls_cli(&redis, &["CLIENT", "LIST"]).len() >= 2;
    assert!(common::eventually(Duration::from_secs(20), serving), "the node never connected: {:?}", rx.try_recv());
    swap_certificate(&redis, &dir.join("later.pem"), &dir.join("later.key"));
    // Several tries of the node's (one a tenth of a second) meet it: seen as handshakes
    // Redis's log says failed (review136 L4: a sleep of a second, which on a loaded machine
    // could pass without a try). Only the node's reader connects here (its writer holds
    // nothing), and this test's own looks succeed.
    let tried = common::eventually(Duration::from_secs(20), || failed_handshakes(&redis) >= 3);
    assert!(tried, "the node did not try to connect again: {:?}", rx.try_recv());
    let waiting = rx.try_recv();
    assert!(waiting.is_err(), "a certificate not valid yet ended the node: {waiting:?}");
    swap_certificate(&redis, &dir.join("server.pem"), &dir.join("server.key"));
    assert!(common::eventually(Duration::from_secs(20), serving), "the node did not come back: {:?}", rx.try_recv());
    // A pool's driver given the CA in code (`ClusterOptions::tls`), its task running on the
    // node when the certificate changes.
    let options = ClusterOptions::new()
        .authkey(TEST_KEY)
        .tls(Tls::new().ca_pem(pki.ca))
        .timeout(Duration::from_secs(3))
        .lease(Duration::from_secs(30));
    let pool = Pool::builder().cluster(&url).processes(1).cluster_options(options).build().unwrap();
    assert_eq!(pool.apply(slow_where, 0).unwrap().0, 0, "the node serves the pool");
    let mut running = pool.apply_async(slow_where, 60_000).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    certificates(&other);
    swap_certificate(&redis, &other.join("server.pem"), &other.join("server.key"));
    let ended = rx.recv_timeout(Duration::from_secs(30));
    eprintln!("the node's end: {ended:?}");
    assert!(matches!(&ended, Ok(Err(multiproc::Error::Cluster(ClusterError::Tls(_))))), "{ended:?}");
    let got = running.get_timeout(Duration::from_secs(30));
    eprintln!("the driver's task: {got:?}");
    // The driver's connections were dropped too: its pool ends with the typed error, its
    // task failed with it, rather than waiting for ever.
    let typed = matches!(&got, Err(ResultTimeoutError::Task(TaskError::Cluster(ClusterError::Tls(_)))));
    assert!(typed, "{got:?}");
}

/// A certificate not valid yet (a TLS failure that heals) met by a node and a pool's driver
/// while a task runs: the node's writer keeps the result it finishes meanwhile and pushes it
/// once the certificate is good again (review136 M1: it took the failure for a refusal,
/// replaced the result by a `Refused` failure, failed to push that too and dropped it: the
/// task was lost, `WorkerLost` with one delivery), and the driver waits it out as Redis away,
/// within its timeout (review136 M2: it ended the pool at the first TLS error, the task
/// failed `Tls`). The certificate changes once the task is pending to the node (review144
/// L4: after a sleep of 300 ms, a node that took the task later met nothing), and the task
/// ends only then, when the test leaves its marker (review150 L4: an 800 ms task could end
/// before the test saw it pending, which then failed "the node did not take the task").
#[test]
fn a_certificate_not_valid_yet_for_a_while_loses_no_result_and_ends_no_pool() {
    let _w = watchdog(LIMIT);
    let Some((redis, pki, dir)) = tls_redis(&[]) else { return };
    let url = format!("rediss://:s3cret@127.0.0.1:{}/0", redis.port);
    let options = multiproc::cluster::ServeOptions::new()
        .processes(1)
        .timeout(Duration::from_secs(1))
        .authkey(TEST_KEY)
        .tls(Tls::new().ca_pem(pki.ca.clone()));
    let (tx, rx) = std::sync::mpsc::channel();
    let served = url.clone();
    std::thread::spawn(move || _ = tx.send(multiproc::cluster::serve(&served, options)));
    // A driver timeout far longer than the window, one delivery: a result lost would fail
    // the task `WorkerLost`, not run it again.
    let options = ClusterOptions::new()
        .authkey(TEST_KEY)
        .tls(Tls::new().ca_pem(pki.ca))
        .timeout(Duration::from_secs(10))
        .lease(Duration::from_secs(6))
        .max_deliveries(1);
    let pool = Pool::builder().cluster(&url).processes(1).cluster_options(options).build().unwrap();
    assert_eq!(pool.apply(slow_where, 0).unwrap().0, 0, "the node serves the pool");
    let marker = dir.join("marker");
    let mut running = pool.apply_async(marked_where, marker.to_str().unwrap().to_owned()).unwrap();
    let tasks = tls_cli(&redis, &["--scan", "--pattern", "mp:*:tasks"]).pop().expect("the pool's stream");
    let taken = || tls_cli(&redis, &["XPENDING", &tasks, "nodes"]).first().is_some_and(|n| n == "1");
    assert!(common::eventually(Duration::from_secs(20), taken), "the node did not take the task");
    swap_certificate(&redis, &dir.join("later.pem"), &dir.join("later.key"));
    // The task ends on the node now; the node's writer and the driver meet the
    // certificate not valid yet.
    std::fs::write(&marker, b"").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    swap_certificate(&redis, &dir.join("server.pem"), &dir.join("server.key"));
    let got = running.get_timeout(Duration::from_secs(30));
    eprintln!("the task: {got:?}; the node: {:?}", rx.try_recv());
    assert!(matches!(&got, Ok((1, _))), "{got:?}");
    assert!(rx.try_recv().is_err(), "the node ended");
}

/// A task that ends once the file `marker` exists (at most a minute): 1, and the network
/// namespace it ran in.
fn marked_where(marker: String) -> (u64, String) {
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while !std::path::Path::new(&marker).exists() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    (1, net_namespace())
}

#[test]
fn a_server_that_authenticates_its_clients_takes_the_client_certificate() {
    let _w = watchdog(LIMIT);
    let Some((redis, pki, _dir)) = tls_redis(&["--tls-auth-clients", "yes"]) else { return };
    let url = format!("rediss://:s3cret@127.0.0.1:{}/0", redis.port);
    let with = Tls::new().ca_pem(pki.ca.clone()).client_pem(pki.client_cert, pki.client_key);
    let q = Queue::<String>::builder().authkey(TEST_KEY).tls(with).open(&url, "mtls").unwrap();
    q.put("mutual".into()).unwrap();
    assert_eq!(q.get().unwrap(), "mutual");
    // Without a client certificate the server ends the handshake: an error, not a hang.
    let without = Queue::<String>::builder()
        .authkey(TEST_KEY)
        .timeout(Duration::from_secs(2))
        .tls(Tls::new().ca_pem(pki.ca))
        .open(&url, "mtls");
    assert!(matches!(without, Err(ClusterError::Tls(_) | ClusterError::Unreachable(_))), "{without:?}");
}

// --- Programs on other machines ------------------------------------------------------

/// The other programs' side; a no-op in a normal test run.
#[test]
fn cluster_net_role() {
    let (Ok(role), Ok(url)) = (std::env::var(ROLE), std::env::var(URL)) else { return };
    // On another machine this machine's loopback is not reachable: the namespace is real.
    let port = url.rsplit(':').next().unwrap().trim_end_matches("/0");
    let local = Queue::<u32>::builder()
        .authkey(TEST_KEY)
        .timeout(Duration::from_millis(500))
        .open(&format!("redis://127.0.0.1:{port}"), "x");
    assert!(matches!(local, Err(ClusterError::Unreachable(_))), "{local:?}");
    // This family's own tracker journal aside, which it names there.
    let shm = common::shm_names_but_journals();
    assert!(shm.is_empty(), "a fresh /dev/shm: nothing of this machine's is visible: {shm:?}");
    eprintln!("up as pid {}", std::process::id());
    let jobs = Queue::<u32>::builder().authkey(TEST_KEY).lease(Duration::from_secs(1)).open(&url, "jobs").unwrap();
    let done = Queue::<u32>::builder().authkey(TEST_KEY).open(&url, "done").unwrap();
    // "worker stuck at N": works until job N, then holds it forever (to be killed).
    let stuck_at: Option<u32> = role.strip_prefix("worker stuck at ").map(|n| n.parse().unwrap());
    loop {
        let job = jobs.receive().unwrap();
        if Some(*job) == stuck_at {
            eprintln!("working on {}", *job);
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        done.put(*job).unwrap();
        job.ack().unwrap();
    }
}

fn worker_on_another_machine(redis: &TcpRedis, role: &str) -> Option<Machine> {
    Machine::start(redis.port, |addr| {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["--exact", "cluster_net_role", "--nocapture", "--test-threads", "1"])
            .env(ROLE, role)
            .env(KEY_ENV, TEST_KEY)
            .env(URL, format!("redis://:pw@{addr}/0"));
        c
    })
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
fn a_consumer_machine_killed_mid_work_gives_its_items_back() {
    let _w = watchdog(LIMIT);
    let Some(redis) = TcpRedis::start(&["--requirepass", "pw"]) else { return };
    if !common::machine::namespaces_allowed() {
        return;
    }
    let url = format!("redis://:pw@127.0.0.1:{}/0", redis.port);
    let jobs = Queue::<u32>::builder().authkey(TEST_KEY).open(&url, "jobs").unwrap();
    let done = Queue::<u32>::builder().authkey(TEST_KEY).open(&url, "done").unwrap();
    for n in 0..10 {
        jobs.put(n).unwrap();
    }
    let Some(mut first) = worker_on_another_machine(&redis, "worker stuck at 4") else { return };
    let mut out = BufReader::new(first.stderr.take().unwrap());
    let up = read_until(&mut out, "up as pid");
    let pid: u32 = up.trim_start_matches("up as pid ").parse().unwrap();
    assert!(pid < 10, "{up}: one of the first processes of its own PID namespace");
    assert_eq!(read_until(&mut out, "working on"), "working on 4");
    first.kill(); // the machine's init: everything on it dies at once, no destructor runs
    let Some(mut second) = worker_on_another_machine(&redis, "worker") else { return };
    let mut got: Vec<u32> = (0..10).map(|_| done.get_timeout(Duration::from_secs(30)).unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..10).collect::<Vec<_>>(), "every job done once, job 4 after the first machine died");
    assert!(matches!(done.try_get(), Err(GetError::Empty)));
    second.kill();
}

// --- A pool whose nodes are other machines -------------------------------------------

/// The task's result and the network namespace it ran in.
fn square_where(x: u64) -> (u64, String) {
    std::thread::sleep(Duration::from_millis(3));
    (x * x, net_namespace())
}

fn net_namespace() -> String {
    std::fs::read_link("/proc/self/ns/net").unwrap().display().to_string()
}

/// A worker node on another machine: this test binary with `MULTIPROC_WORKER` set, which
/// its `init()` recognises (it serves pools and never returns).
fn node_on_another_machine(redis: &TcpRedis) -> Option<Machine> {
    Machine::start(redis.port, |addr| {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["--exact", "no_such_test"]).env(WORKER_ENV, format!("redis://:pw@{addr}/0")).env(KEY_ENV, TEST_KEY);
        c
    })
}

#[test]
fn a_pool_runs_on_nodes_on_other_machines_and_loses_nothing_when_one_dies() {
    let _w = watchdog(Duration::from_secs(120));
    let Some(redis) = TcpRedis::start(&["--requirepass", "pw"]) else { return };
    if !common::machine::namespaces_allowed() {
        return;
    }
    let (Some(mut first), Some(mut second)) = (node_on_another_machine(&redis), node_on_another_machine(&redis)) else {
        return;
    };
    let url = format!("redis://:pw@127.0.0.1:{}/0", redis.port);
    let pool = Pool::builder()
        .cluster(&url)
        .processes(4)
        .cluster_options(
            ClusterOptions::new().authkey(TEST_KEY).lease(Duration::from_millis(600)).timeout(Duration::from_secs(5)),
        )
        .build()
        .unwrap();
    let here = net_namespace();

    let warm = pool.map(square_where, 0..40).unwrap();
    assert_eq!(warm.iter().map(|r| r.0).collect::<Vec<_>>(), (0..40).map(|x| x * x).collect::<Vec<_>>());
    assert!(warm.iter().all(|r| r.1 != here), "every task ran on another machine: {warm:?}");

    // One machine is cut off (its init killed: every process on it dies at once) while a
    // map is under way; its tasks are taken back after the lease and run on the other.
    let n = 400;
    let mut results = pool.imap(square_where, 0..n).unwrap();
    let mut got: Vec<(u64, String)> = results.by_ref().take(50).map(Result::unwrap).collect();
    first.kill();
    got.extend(results.map(Result::unwrap));
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), (0..n).map(|x| x * x).collect::<Vec<_>>());
    assert!(got.iter().all(|r| r.1 != here));
    drop(pool);
    second.kill();
}

// --- A network cut, not a death ------------------------------------------------------

/// A slow task: `ms`, and the network namespace it ran in.
fn slow_where(ms: u64) -> (u64, String) {
    std::thread::sleep(Duration::from_millis(ms));
    (ms, net_namespace())
}

/// `redis-cli` against the test's Redis (password `pw`): its reply's lines.
fn redis_cli(redis: &TcpRedis, args: &[&str]) -> Vec<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "-a", "pw", "--no-auth-warning"])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// A node machine cut off from the network (not killed) while it runs a task, and given its
/// network back after the lease ran out: the task is taken back and run by another node,
/// the cut node's late result is not counted a second time, and the cut node comes back:
/// it reconnects and takes new work.
#[test]
fn a_node_machine_cut_off_mid_task_has_it_run_elsewhere_and_takes_new_work_once_back() {
    let _w = watchdog(Duration::from_secs(120));
    let Some(redis) = TcpRedis::start(&["--requirepass", "pw"]) else { return };
    if !common::machine::namespaces_allowed() {
        return;
    }
    let Some(cut) = node_on_another_machine(&redis) else { return };
    let url = format!("redis://:pw@127.0.0.1:{}/0", redis.port);
    let pool = Pool::builder()
        .cluster(&url)
        .processes(2)
        .cluster_options(
            ClusterOptions::new().authkey(TEST_KEY).lease(Duration::from_secs(1)).timeout(Duration::from_secs(10)),
        )
        .build()
        .unwrap();
    let on_cut = pool.apply(square_where, 3).unwrap().1;
    assert_ne!(on_cut, net_namespace(), "the task ran on the other machine");

    let mut r = pool.apply_async(slow_where, 3000).unwrap();
    // Taken by the node about to be cut: pending in the group.
    let tasks = redis_cli(&redis, &["--scan", "--pattern", "mp:*:tasks"]).pop().expect("the pool's stream");
    assert!(
        common::eventually(Duration::from_secs(30), || {
            redis_cli(&redis, &["XPENDING", &tasks, "nodes"]).first().is_some_and(|n| n == "1")
        }),
        "the task was not taken"
    );
    cut.cut();
    let Some(mut other) = node_on_another_machine(&redis) else { return };
    let (ms, ran_on) = r.get_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(ms, 3000);
    assert_ne!(ran_on, on_cut, "the task's result came from the machine cut off");
    // The cut machine's task ended meanwhile; its result waits for the network.
    std::thread::sleep(Duration::from_secs(1));
    cut.restore();
    other.kill();
    // Back: it pushes its late result (ignored), reconnects and takes new work.
    let after = pool.map(square_where, 0..20).unwrap();
    assert_eq!(after.iter().map(|r| r.0).collect::<Vec<_>>(), (0..20).map(|x| x * x).collect::<Vec<_>>());
    assert!(after.iter().all(|r| r.1 == on_cut), "new work ran on the machine that was cut off");
    // Every result counted once: 1 + 1 + 20 tasks, whatever came late.
    std::thread::sleep(Duration::from_secs(2));
    let stats = pool.stats();
    assert_eq!((stats.tasks_done, stats.tasks_failed), (22, 0), "{stats:?}");
    drop(pool);
    drop(cut);
}

const DRIVER: &str = "MULTIPROC_TEST_CLUSTER_NET_DRIVER";

/// A driver on another machine: builds a pool (lease 600 ms, timeout 10 s), says
/// "mapping", maps 40 tasks of 100 ms and says how the map ended. A no-op in a normal run.
#[test]
fn cluster_net_driver_role() {
    let Ok(url) = std::env::var(DRIVER) else { return };
    let pool = Pool::builder()
        .cluster(&url)
        .cluster_options(
            ClusterOptions::new().authkey(TEST_KEY).lease(Duration::from_millis(600)).timeout(Duration::from_secs(10)),
        )
        .build()
        .unwrap();
    assert_eq!(pool.apply(square_where, 3).unwrap().0, 9);
    eprintln!("mapping");
    let mut map = pool.map_async(slow_where, vec![100u64; 40]).unwrap();
    match map.get_timeout(Duration::from_secs(40)) {
        Ok(got) if got.iter().all(|r| r.0 == 100) && got.len() == 40 => eprintln!("map: ok"),
        other => eprintln!("map: failed: {other:?}"),
    }
}

/// The driver's own link cut for less than the pool's timeout (but longer than its alive
/// key's life, three leases: the nodes take the pool for dead and delete its keys): the map
/// completes once the link is back.
#[test]
fn a_driver_machine_cut_off_for_less_than_the_timeout_completes_its_map() {
    let _w = watchdog(Duration::from_secs(120));
    let Some(redis) = TcpRedis::start(&["--requirepass", "pw"]) else { return };
    if !common::machine::namespaces_allowed() {
        return;
    }
    // A node on this machine, two workers.
    let node = Command::new("setpriv")
        .args(["--pdeathsig", "KILL"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "no_such_test"])
        .env(WORKER_ENV, format!("redis://:pw@127.0.0.1:{}/0", redis.port))
        .env(KEY_ENV, TEST_KEY)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _node = Killed(node);
    let Some(mut driver) = Machine::start(redis.port, |addr| {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["--exact", "cluster_net_driver_role", "--nocapture", "--test-threads", "1"])
            .env(DRIVER, format!("redis://:pw@{addr}/0"))
            .env(KEY_ENV, TEST_KEY);
        c
    }) else {
        return;
    };
    let mut out = BufReader::new(driver.stderr.take().unwrap());
    read_until(&mut out, "mapping");
    std::thread::sleep(Duration::from_millis(300));
    driver.cut();
    std::thread::sleep(Duration::from_secs(3));
    driver.restore();
    assert_eq!(read_until(&mut out, "map:"), "map: ok");
    driver.wait();
}

// --- A Redis name whose resolver never answers -----------------------------------------

const DNS_ROLE: &str = "MULTIPROC_TEST_CLUSTER_NET_DNS_ROLE";

/// The role of [`an_open_whose_name_server_never_answers_ends_by_its_deadline`], on a machine
/// of its own whose name server (`127.0.0.1:53`, this role's socket) takes every query and
/// answers none: a queue and a pool on a Redis named `redis.example`, each with a timeout
/// of one second. Says how each ended.
#[test]
fn cluster_net_dns_role() {
    if std::env::var_os(DNS_ROLE).is_none() {
        return;
    }
    let _silent = std::net::UdpSocket::bind("127.0.0.1:53").unwrap();
    let url = "redis://redis.example:6379/0";
    let timeout = Duration::from_secs(1);
    let queue = Queue::<u32>::builder().authkey(TEST_KEY).timeout(timeout).open(url, "jobs");
    eprintln!("queue: {:?}", queue.map(|_| ()));
    let pool =
        Pool::builder().cluster(url).cluster_options(ClusterOptions::new().authkey(TEST_KEY).timeout(timeout)).build();
    eprintln!("pool: {:?}", pool.map(|_| ()).map_err(|e| e.to_string()));
}

/// A Redis named by a host whose name server never answers (the "Redis DNS deadline"):
/// the open of a queue and the build of a pool end by their timeout, each with
/// `Unreachable`. The resolution had no deadline (`getaddrinfo` waits `resolv.conf`'s
/// `timeout` × `attempts`, 10 s by default, here 3 × 30 s): the role took 90 s per name,
/// whatever the timeout, and this test gave up on it. Skipped where `nsswitch.conf` asks
/// another service than `resolv.conf`'s servers first (systemd-resolved's `resolve`, say),
/// where the name would fail at once and prove nothing.
#[test]
fn an_open_whose_name_server_never_answers_ends_by_its_deadline() {
    let _w = watchdog(2 * LIMIT);
    if !common::machine::namespaces_allowed() {
        return;
    }
    let nsswitch = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
    let hosts = nsswitch.lines().find_map(|l| l.trim().strip_prefix("hosts:")).unwrap_or("dns");
    let first_asked = hosts.split_whitespace().find(|s| !s.starts_with('[') && !["files", "myhostname"].contains(s));
    if first_asked != Some("dns") {
        eprintln!("skipped: nsswitch.conf resolves host names through {first_asked:?} before resolv.conf's servers");
        return;
    }
    let dir = ScratchDir(TcpRedis::scratch_dir());
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\noptions timeout:30 attempts:3\n").unwrap();
    // A machine of its own (network and mount namespaces), its resolv.conf this one.
    let script = "ip link set lo up && mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"";
    let mut role = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "unshare", "--net", "--mount", "sh", "-c", script])
        .arg(&resolv)
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "cluster_net_dns_role", "--nocapture", "--test-threads", "1"])
        .env(DNS_ROLE, "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Far more than the role needs (a few seconds), far less than without the deadline (90 s a
    // name): a loaded machine is not taken for a fault.
    let ended = common::eventually(LIMIT, || role.try_wait().unwrap().is_some());
    if !ended {
        let _ = role.kill();
    }
    let status = role.wait().unwrap();
    let mut said = String::new();
    std::io::Read::read_to_string(&mut role.stderr.take().unwrap(), &mut said).unwrap();
    drop(dir);
    assert!(ended, "the role was still resolving 60 s after it started, with timeouts of 1 s; it said:\n{said}");
    assert!(status.success(), "{said}");
    let line = |prefix: &str| said.lines().find(|l| l.starts_with(prefix)).unwrap_or_default().to_string();
    // The deadline's own words: the resolver's error (a name that fails at once) would be
    // `Unreachable` too.
    assert!(
        line("queue: ").starts_with("queue: Err(Unreachable(") && line("queue: ").contains("by the deadline"),
        "{said}"
    );
    assert!(line("pool: ").starts_with("pool: Err(") && line("pool: ").contains("unreachable"), "{said}");
}
