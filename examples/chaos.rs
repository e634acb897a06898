//! A seeded soak: `kill -9` at random, from outside, against a family using queues (bounded
//! and unbounded, with handles inside messages), a pool with `max_tasks_per_child`, a
//! manager's dict and lock, and `Value`/`Array` locks; checks the invariants after each
//! round.
//!
//! `cargo run --example chaos -- [--seed N] [--rounds R] [--secs S]`; `CHAOS_VICTIMS=consumer,worker`
//! (roles: producer, consumer, forker, forked, worker, manager, starting, other) limits the
//! killer to those; `CHAOS_POOL=fork|forkserver|spawn` fixes the pool's start method (the seed
//! picks it otherwise); `CHAOS_NOKILL=1` runs the rounds without it; `CHAOS_NO_HANDLES=1` puts
//! no handle in the messages; `CHAOS_STRICT_HEAP=1` fails a round whose heap is not back
//! exactly (by default such a round reports the bytes left: the known residual windows,
//! HACKING.md's "Pins", are rare, not absent). `tests/soundness.rs` runs a short variant
//! (and, ignored, a long strict one).
//!
//! The seed fixes the workload and the killer's choices (which descendant, how long to wait
//! before the next kill); the moments the kills land depend on the machine, so a replay with
//! the same seed shakes the same places, not the same instants. Each round prints its seed;
//! `--seed N --rounds 1` replays one round.
//!
//! The killer is a process of its own (this binary again, not a member of the family): every
//! few milliseconds it lists the descendants of this process in `/proc` (producers,
//! consumers, the Fork children of the forker while they start, pool workers, the manager's
//! server, the fork server) and `SIGKILL`s one.
//!
//! After each round:
//! - every message put is got exactly once, or lost with a consumer killed while it held it
//!   (at most one a consumer kill) or with a producer killed between its put and its note
//!   (the message may or may not be there); never twice, never one not put;
//! - every pool task gave its result or `TaskError::WorkerLost`;
//! - every lock held by the dead (`Array`'s, the manager's) is taken over;
//! - `heap_in_use` is back to its value at the round's start once everything is dropped;
//! - no call hangs: a round still running after `--secs` + 90 s (`CHAOS_LIMIT=N`: N s) is ended by the driver's
//!   watchdog, which first dumps what each of its processes is doing (`/proc`: state, wait
//!   channel, system call, kernel stack per thread; then `gdb`'s backtraces when installed,
//!   unless `CHAOS_NO_GDB=1`), and the round fails;
//! - at the end, no descendant but the fork server is left, and `/dev/shm` is as it was.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use multiproc::{
    Array, DictProxy, Error, JoinError, LockProxy, Manager, MapOptions, Pool, Process, ProcessHandle, Queue,
    StartMethod, TaskError, Value,
};

/// Messages each producer puts.
const PER_PRODUCER: u32 = 400;
/// Producers: 0 and 1 started by the parent (fork server, spawn), 2 and 3 by the forker
/// (`Fork`).
const PRODUCERS: u32 = 4;
const CONSUMERS: usize = 3;

/// (producer, seq, a handle every third message: a `Value` holding `seq`).
type Msg = Option<(u32, u32, Option<Value<u64>>)>;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ProducerArgs {
    unbounded: Queue<Msg>,
    bounded: Queue<Msg>,
    sent: Array<u32>,
    dict: DictProxy<u32, u32>,
    lock: LockProxy,
    id: u32,
}

fn queue_of(args: &ProducerArgs) -> &Queue<Msg> {
    if args.id.is_multiple_of(2) { &args.unbounded } else { &args.bounded }
}

/// Puts `PER_PRODUCER` messages, noting each in `sent[id]` after its put; every 25th
/// message also writes the manager's dict under the manager's lock (errors there are the
/// server's death: ignored, but they must come back).
fn produce(args: ProducerArgs) -> u32 {
    let q = queue_of(&args);
    for seq in 0..PER_PRODUCER {
        let handle = if seq % 3 == 0 && std::env::var_os("CHAOS_NO_HANDLES").is_none() {
            Some(Value::new(u64::from(seq)).expect("heap"))
        } else {
            None
        };
        let mut msg = Some((args.id, seq, handle));
        loop {
            match q.put_timeout(msg, Duration::from_millis(100)) {
                Ok(()) => break,
                Err(multiproc::PutTimeoutError::Timeout(back)) => msg = back,
                Err(e) => panic!("producer {}: put: {e}", args.id),
            }
        }
        args.sent.lock()[args.id as usize] = seq + 1;
        if seq % 25 == 0
            && let Ok(guard) = args.lock.acquire_timeout(Duration::from_secs(5))
        {
            let _ = args.dict.insert(args.id, seq);
            drop(guard);
        }
    }
    PER_PRODUCER
}

/// Starts producers 2 and 3 with `Fork`, one after the other, and joins them.
fn forker(args: (ProducerArgs, ProducerArgs)) -> u32 {
    let mut done = 0;
    for a in [args.0, args.1] {
        match Process::new(produce, a).start_method(StartMethod::Fork).start() {
            Ok(child) => {
                if let Ok(n) = child.join() {
                    done += n;
                }
            }
            Err(e) => eprintln!("forker: start: {e}"),
        }
    }
    done
}

/// Gets until `None`; counts each message in `got` under its lock.
fn consume(args: (Queue<Msg>, Queue<Msg>, Array<u8>, u32)) -> u64 {
    let (unbounded, bounded, got, me) = args;
    let mut n = 0u64;
    let mut ended = 0;
    let mut turn = u64::from(me);
    while ended < 2 {
        turn += 1;
        let q = if turn % 2 == 0 { &unbounded } else { &bounded };
        match q.get_timeout(Duration::from_millis(20)) {
            Ok(Some((p, seq, handle))) => {
                if let Some(v) = handle {
                    assert_eq!(v.get(), u64::from(seq), "the handle's value");
                }
                let mut g = got.lock();
                g[(p * PER_PRODUCER + seq) as usize] += 1;
                n += 1;
            }
            Ok(None) => ended += 1,
            Err(multiproc::GetTimeoutError::Timeout) => {}
            Err(e) => panic!("consumer {me}: get: {e}"),
        }
    }
    n
}

fn task((x, total): (u64, Value<u64>)) -> u64 {
    *total.lock() += x;
    std::thread::sleep(Duration::from_micros(x % 500));
    x * x
}

fn descendants(root: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut todo = vec![root];
    let zombie = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with(['Z', 'X'])))
    };
    while let Some(pid) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for t in tasks.flatten() {
            let Ok(children) = std::fs::read_to_string(t.path().join("children")) else { continue };
            for c in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
                let comm = std::fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default();
                if !zombie(c) {
                    out.push((c, comm.trim().to_string()));
                }
                todo.push(c);
            }
        }
    }
    out
}

fn roles_path(root: u32) -> String {
    format!("/tmp/chaos28-roles-{root}")
}

fn kills_path(root: u32) -> String {
    format!("/tmp/chaos28-kills-{root}")
}

/// Notes `pid`'s role for the killer (the last note of a pid counts).
fn note_role(root: u32, pid: u32, role: &str) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(roles_path(root)).unwrap();
    let _ = writeln!(f, "{pid} {role}");
}

/// What `pid` is, by the roles the round noted; a process the round did not name is a Fork
/// child of the forker ("forked"), a child mid-start ("starting": not yet its own program),
/// or the fork server or another helper ("other").
fn role_of(pid: u32, comm: &str, roles: &std::collections::HashMap<u32, String>) -> String {
    if let Some(r) = roles.get(&pid) {
        return r.clone();
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let ppid: u32 =
        stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|p| p.parse().ok()).unwrap_or(0);
    if roles.get(&ppid).is_some_and(|r| r == "forker") {
        "forked".into()
    } else if comm.starts_with("multiproc-") {
        "starting".into()
    } else {
        "other".into()
    }
}

fn note<R>(root: u32, h: &Result<ProcessHandle<R>, Error>, role: &str) {
    if let Ok(h) = h {
        note_role(root, h.pid(), role);
    }
}

/// The killer's own `main`: kills a random descendant of `root` every few milliseconds
/// until killed (only those whose role is in `CHAOS_VICTIMS`, a comma-separated list, when
/// set), logging each kill with its role.
fn killer(seed: u64, root: u32) -> ! {
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets this process's parent-death signal.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let only: Option<Vec<String>> =
        std::env::var("CHAOS_VICTIMS").ok().map(|v| v.split(',').map(str::to_string).collect());
    let me = std::process::id();
    let mut rng = Rng(seed ^ 0x6b69_6c6c);
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(kills_path(root)).unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(3 + rng.below(25)));
        let roles: std::collections::HashMap<u32, String> = std::fs::read_to_string(roles_path(root))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' ').and_then(|(p, r)| Some((p.parse().ok()?, r.to_string()))))
            .collect();
        let victims: Vec<_> = descendants(root)
            .into_iter()
            .filter(|(p, _)| *p != me)
            .map(|(p, comm)| {
                let role = role_of(p, &comm, &roles);
                (p, role)
            })
            .filter(|(_, role)| only.as_ref().is_none_or(|o| o.iter().any(|x| x == role)))
            .collect();
        if victims.is_empty() {
            continue;
        }
        let (pid, role) = &victims[rng.below(victims.len() as u64) as usize];
        // SAFETY: kill only sends a signal.
        if unsafe { libc::kill(*pid as i32, libc::SIGKILL) } == 0 {
            let _ = writeln!(log, "{pid} {role}");
        }
    }
}

struct Round {
    seed: u64,
    secs: f64,
    kill: bool,
}

#[derive(Default, Debug)]
struct Tally {
    put_noted: u64,
    got: u64,
    lost: u64,
    unnoted_got: u64,
    tasks_ok: u64,
    tasks_lost: u64,
    consumer_deaths: u64,
    producer_deaths: u64,
    restarts: u64,
    manager_alive: bool,
    pool_dead: Option<String>,
    kills: u64,
    kills_by_role: std::collections::BTreeMap<String, u64>,
}

fn start_consumer(
    args: (Queue<Msg>, Queue<Msg>, Array<u8>, u32),
    method: StartMethod,
) -> Result<ProcessHandle<u64>, Error> {
    match Process::new(consume, args.clone()).start_method(method).start() {
        // A start caught by a kill of the fork server fails (the next one starts a new
        // server): this one falls back to Spawn.
        Err(Error::StartMethodUnavailable(..)) => Process::new(consume, args).start_method(StartMethod::Spawn).start(),
        other => other,
    }
}

fn run_round(r: &Round, root: u32) -> Result<Tally, String> {
    let mut rng = Rng(r.seed);
    let mut tally = Tally::default();
    let heap_before = multiproc::__private::heap_in_use();
    {
        let mut pool_method = [StartMethod::Fork, StartMethod::ForkServer, StartMethod::Spawn][rng.below(3) as usize];
        match std::env::var("CHAOS_POOL").as_deref() {
            Ok("fork") => pool_method = StartMethod::Fork,
            Ok("forkserver") => pool_method = StartMethod::ForkServer,
            Ok("spawn") => pool_method = StartMethod::Spawn,
            _ => {}
        }
        println!("pool: {pool_method:?}");
        let mut builder = Pool::builder().processes(2).start_method(pool_method);
        let tasks_per_child = 1 + rng.below(4);
        // A Fork pool's zygote forks its replacements too.
        builder = builder.max_tasks_per_child(tasks_per_child);
        let pool = builder.build().map_err(|e| format!("pool: {e}"))?;
        let manager = Manager::builder()
            .start_method(if rng.below(2) == 0 { StartMethod::ForkServer } else { StartMethod::Spawn })
            .call_timeout(Duration::from_secs(10))
            .start()
            .map_err(|e| format!("manager: {e}"))?;
        let dict = manager.dict::<u32, u32>().map_err(|e| format!("dict: {e}"))?;
        let mlock = manager.lock().map_err(|e| format!("lock: {e}"))?;
        let unbounded: Queue<Msg> = Queue::new().map_err(|e| e.to_string())?;
        let bounded: Queue<Msg> = Queue::with_maxsize(1 + rng.below(8) as usize).map_err(|e| e.to_string())?;
        let sent = Array::<u32>::new(PRODUCERS as usize).map_err(|e| e.to_string())?;
        let got = Array::<u8>::new((PRODUCERS * PER_PRODUCER) as usize).map_err(|e| e.to_string())?;
        let total = Value::new(0u64).map_err(|e| e.to_string())?;
        let pargs = |id| ProducerArgs {
            unbounded: unbounded.clone(),
            bounded: bounded.clone(),
            sent: sent.clone(),
            dict: dict.clone(),
            lock: mlock.clone(),
            id,
        };
        let cmethod = |rng: &mut Rng| if rng.below(2) == 0 { StartMethod::ForkServer } else { StartMethod::Spawn };
        let cargs = |i: u32| (unbounded.clone(), bounded.clone(), got.clone(), i);
        // A consumer that is not running (killed, or never started) is started again, and a
        // dead one joined: it may only have been killed, never have ended (its None is to come).
        let replace_if_dead = |i: usize,
                               c: &mut Result<ProcessHandle<u64>, Error>,
                               rng: &mut Rng,
                               tally: &mut Tally|
         -> Result<bool, String> {
            if c.as_ref().is_ok_and(|h| h.is_alive()) {
                return Ok(false);
            }
            let old = std::mem::replace(c, start_consumer(cargs(i as u32), cmethod(rng)));
            if let Ok(h) = old {
                match h.join() {
                    Ok(_) => return Err(format!("consumer {i} ended before its None")),
                    Err(JoinError::Signaled { signal: 9, .. }) => tally.consumer_deaths += 1,
                    Err(e) => return Err(format!("consumer {i}: {e}")),
                }
            }
            Ok(true)
        };

        // The killer, then the family's processes.
        let mut killer =
            std::process::Command::new(if r.kill { std::env::current_exe().unwrap() } else { "true".into() })
                .env("CHAOS_KILLER", format!("{},{root}", r.seed))
                .stdout(std::process::Stdio::null())
                .spawn()
                .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(roles_path(root));
        let _ = std::fs::remove_file(kills_path(root));
        if let Some(pid) = manager.pid() {
            note_role(root, pid, "manager");
        }
        for pid in pool.pids() {
            note_role(root, pid, "worker");
        }
        let mut consumers = Vec::new();
        for i in 0..CONSUMERS as u32 {
            let c = start_consumer(cargs(i), cmethod(&mut rng));
            note(root, &c, "consumer");
            consumers.push(c);
        }
        let mut producers = vec![
            Process::new(produce, pargs(0)).start_method(StartMethod::ForkServer).start(),
            Process::new(produce, pargs(1)).start_method(StartMethod::Spawn).start(),
        ];
        let forked = Process::new(forker, (pargs(2), pargs(3))).start_method(StartMethod::ForkServer).start();
        for p in &producers {
            note(root, p, "producer");
        }
        note(root, &forked, "forker");

        // The pool's work while the killer runs; dead consumers are replaced between batches.
        let started = Instant::now();
        let mut next_task = 0u64;
        while started.elapsed().as_secs_f64() < r.secs {
            if tally.pool_dead.is_some() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let n = 5 + rng.below(30);
            let items: Vec<_> = (next_task..next_task + n).map(|x| (x, total.clone())).collect();
            next_task += n;
            if tally.pool_dead.is_some() {
                // fall through to the consumers' upkeep
            } else {
                match pool.imap_with(task, items, MapOptions::new().chunksize(1 + rng.below(3) as usize)) {
                    Ok(results) => {
                        for (i, res) in results.enumerate() {
                            let x = next_task - n + i as u64;
                            match res {
                                Ok(v) if v == x * x => tally.tasks_ok += 1,
                                Ok(v) => return Err(format!("task {x}: {v}, not {}", x * x)),
                                Err(TaskError::WorkerLost { .. }) => tally.tasks_lost += 1,
                                Err(TaskError::Panicked(info)) if info.message.contains("cannot start a worker") => {
                                    tally.pool_dead = Some(info.message.clone());
                                }
                                Err(e) => return Err(format!("task {x}: {e}")),
                            }
                        }
                    }
                    Err(e) => return Err(format!("imap: {e}")),
                }
                for pid in pool.pids() {
                    note_role(root, pid, "worker");
                }
            }
            for (i, c) in consumers.iter_mut().enumerate() {
                if replace_if_dead(i, c, &mut rng, &mut tally)? {
                    note(root, c, "consumer");
                    tally.restarts += 1;
                }
            }
        }

        // Stop the killer, then wind down with no kills.
        let _ = killer.kill();
        let _ = killer.wait();
        // Its last SIGKILL may still be on its way to a victim: let it land before the
        // liveness checks below.
        std::thread::sleep(Duration::from_millis(200));
        for line in std::fs::read_to_string(kills_path(root)).unwrap_or_default().lines() {
            tally.kills += 1;
            *tally.kills_by_role.entry(line.split_once(' ').map_or("", |(_, r)| r).to_string()).or_default() += 1;
        }
        for (i, p) in producers.drain(..).enumerate() {
            match p {
                Ok(h) => match h.join() {
                    Ok(_) => {}
                    Err(JoinError::Signaled { signal: 9, .. }) => tally.producer_deaths += 1,
                    Err(e) => return Err(format!("producer {i}: {e}")),
                },
                Err(e) => println!("  producer {i} did not start: {e}"),
            }
        }
        match forked {
            Ok(h) => match h.join() {
                Ok(_) => {}
                Err(JoinError::Signaled { signal: 9, .. }) => tally.producer_deaths += 1,
                Err(e) => return Err(format!("forker: {e}")),
            },
            Err(e) => println!("  forker did not start: {e}"),
        }
        // Make sure every consumer is running, then end them.
        for (i, c) in consumers.iter_mut().enumerate() {
            replace_if_dead(i, c, &mut rng, &mut tally)?;
        }
        for _ in 0..CONSUMERS {
            unbounded.put(None).map_err(|e| e.to_string())?;
            bounded.put(None).map_err(|e| e.to_string())?;
        }
        for (i, c) in consumers.into_iter().enumerate() {
            let h = c.map_err(|e| format!("consumer {i} did not start after the kills: {e}"))?;
            match h.join() {
                Ok(_) => {}
                // Killed by the killer's last signal after all: its None stays queued.
                Err(JoinError::Signaled { signal: 9, .. }) => tally.consumer_deaths += 1,
                Err(e) => return Err(format!("consumer {i}: {e}")),
            }
        }
        // What no consumer took.
        for q in [&unbounded, &bounded] {
            while let Ok(m) = q.get_timeout(Duration::from_millis(50)) {
                if let Some((p, seq, _)) = m {
                    got.lock()[(p * PER_PRODUCER + seq) as usize] += 1;
                }
            }
        }

        // Invariants: exactly once, or lost to a kill.
        let sent_now = sent.lock_timeout(Duration::from_secs(10)).ok_or("sent's lock stayed held")?.to_vec();
        let got_now = got.lock_timeout(Duration::from_secs(10)).ok_or("got's lock stayed held")?.to_vec();
        for p in 0..PRODUCERS {
            let noted = sent_now[p as usize];
            tally.put_noted += u64::from(noted);
            for seq in 0..PER_PRODUCER {
                let n = got_now[(p * PER_PRODUCER + seq) as usize];
                if n > 1 {
                    return Err(format!("producer {p} seq {seq} got {n} times (noted {noted})"));
                }
                if seq < noted {
                    if n == 0 {
                        tally.lost += 1;
                    } else {
                        tally.got += 1;
                    }
                } else if n == 1 {
                    if seq == noted {
                        tally.unnoted_got += 1;
                    } else {
                        return Err(format!("producer {p} seq {seq} got but only {noted} noted"));
                    }
                }
            }
        }
        if tally.lost > tally.consumer_deaths {
            return Err(format!("{} messages lost for {} consumer kills", tally.lost, tally.consumer_deaths));
        }
        // Locks held by the dead are taken over.
        match mlock.acquire_timeout(Duration::from_secs(10)) {
            Ok(g) => {
                tally.manager_alive = true;
                drop(g);
                let _ = dict.len().map_err(|e| format!("dict after a live lock: {e}"))?;
            }
            Err(multiproc::ManagerError::ServerGone { .. }) => {}
            Err(e) => return Err(format!("manager lock: {e}")),
        }
        drop(total.lock_timeout(Duration::from_secs(10)).ok_or("the total's lock stayed held")?);
        drop((dict, mlock));
        drop(manager);
        pool.close();
        pool.join().map_err(|e| format!("pool join: {e}"))?;
    }
    // The heap is back where it was.
    let deadline = Instant::now() + Duration::from_secs(10);
    while multiproc::__private::heap_in_use() > heap_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = multiproc::__private::heap_in_use();
    if after != heap_before && std::env::var_os("CHAOS_STRICT_HEAP").is_none() {
        // The residual windows (a kill between a channel's commit and its settle, between
        // a pin and its unpin, between a child's note and its free of its receipts, a
        // parent killed before its child took its argument) are rare, not absent; the
        // strict run (the long variant in tests/soundness.rs) is exact.
        println!("residual leak (tolerated): {} bytes; {tally:?}", after - heap_before);
    } else if after != heap_before {
        return Err(format!(
            "heap in use: {heap_before} before the round, {after} after; kills in {}; {tally:?}",
            kills_path(root)
        ));
    }
    let _ = std::fs::remove_file(roles_path(root));
    let _ = std::fs::remove_file(kills_path(root));
    Ok(tally)
}

/// How long a round may last before the driver's watchdog dumps and ends it: `secs` and 90 s
/// (`CHAOS_LIMIT=N`: N s instead of 90; a small N shows the dump on a round that holds).
fn round_limit(secs: f64) -> Duration {
    let spare = std::env::var("CHAOS_LIMIT").ok().and_then(|v| v.parse().ok()).unwrap_or(90);
    Duration::from_secs(secs as u64 + spare)
}

/// The round's own alarm fires this long after `round_limit`, for a driver that is gone.
const BACKSTOP_SECS: u32 = 300;

/// Runs the round's process (stdout captured, stderr inherited) and waits for it until
/// `limit`. Returns its status and output; `None` when it was still running at the limit:
/// then every descendant of this process (the round, its family, orphans that came here) has
/// been dumped (`dump_family`) into the returned text, and killed.
fn run_watched(cmd: &mut std::process::Command, limit: Duration) -> (Option<std::process::ExitStatus>, String) {
    use std::io::Read;
    use std::os::unix::process::CommandExt as _;
    let mut child = cmd
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("the round's process");
    let mut stdout = child.stdout.take().unwrap();
    // The round's family inherits its stdout: the pipe ends when the last of them does, not
    // with the round, so the reading is a thread of its own and the watch is on the pid.
    let text = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let text = text.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                text.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the round") {
            break Some(status);
        }
        if started.elapsed() >= limit || TERMINATED.load(Ordering::Relaxed) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut printed = 0;
    if status.is_none() {
        // What the round printed so far, then the dump, printed as it goes: a `timeout`
        // that sends SIGKILL later still leaves what was written.
        {
            let text = text.lock().unwrap();
            print!("{}", String::from_utf8_lossy(&text));
            printed = text.len();
        }
        let why = if TERMINATED.load(Ordering::Relaxed) {
            format!("the driver got SIGTERM after the round ran {} s", started.elapsed().as_secs())
        } else {
            format!("the round still runs after {} s", limit.as_secs())
        };
        if !INTERRUPTED.load(Ordering::Relaxed) {
            dump_family(child.id(), &why);
        }
        for (pid, _) in descendants(std::process::id()) {
            // SAFETY: kill only sends a signal.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = child.wait();
        // The round's notes for its killer, which it removes only when it ends.
        let _ = std::fs::remove_file(roles_path(child.id()));
        let _ = std::fs::remove_file(kills_path(child.id()));
    }
    // What the round printed: its family may hold the pipe a little longer.
    let until = Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = String::from_utf8_lossy(&text.lock().unwrap()[printed..]).into_owned();
    (status, out)
}

/// Set by the driver's SIGTERM handler (`timeout`, as `.ci/run` runs the examples): the
/// running round is dumped as at its limit, and the driver fails.
static TERMINATED: AtomicBool = AtomicBool::new(false);
/// Set by the driver's SIGINT handler: the running round's family is killed (no dump), and
/// the driver fails.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: libc::c_int) {
    // Async-signal-safe: one store, read by the driver's wait loop.
    if signal == libc::SIGINT {
        INTERRUPTED.store(true, Ordering::Relaxed);
    }
    TERMINATED.store(true, Ordering::Relaxed);
}

/// Prints what every descendant of this process is doing, for a round that outlived its
/// limit (`why`): its role (by the round's notes), and per thread its state, kernel wait
/// channel, system call and kernel stack (`/proc`), then its user stacks (`gdb -batch`, when
/// installed; `CHAOS_NO_GDB=1` skips it). The killer is stopped first, so that the family
/// holds still.
fn dump_family(round: u32, why: &str) {
    use std::fmt::Write as _;
    let flush = |out: &mut String| {
        print!("{out}");
        let _ = std::io::stdout().flush();
        out.clear();
    };
    let read = |path: String| std::fs::read_to_string(path).unwrap_or_default();
    let roles: std::collections::HashMap<u32, String> = read(roles_path(round))
        .lines()
        .filter_map(|l| l.split_once(' ').and_then(|(p, r)| Some((p.parse().ok()?, r.to_string()))))
        .collect();
    let family = descendants(std::process::id());
    let is_killer = |pid: u32| read(format!("/proc/{pid}/environ")).split('\0').any(|v| v.starts_with("CHAOS_KILLER="));
    for (pid, _) in &family {
        if is_killer(*pid) {
            // SAFETY: kill only sends a signal.
            unsafe { libc::kill(*pid as i32, libc::SIGSTOP) };
        }
    }
    let mut out = format!("WATCHDOG: {why} (pid {round}); its family ({} processes):\n", family.len());
    for (pid, comm) in &family {
        let stat = read(format!("/proc/{pid}/stat"));
        let ppid = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).unwrap_or("?");
        let role = if *pid == round {
            "round".to_string()
        } else if is_killer(*pid) {
            "killer (stopped for the dump)".to_string()
        } else {
            role_of(*pid, comm, &roles)
        };
        let _ = writeln!(out, "== pid {pid} ({comm}), parent {ppid}, role {role}");
        let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
            .unwrap_or_default();
        tids.sort_unstable();
        for tid in tids {
            let task = format!("/proc/{pid}/task/{tid}");
            let tstat = read(format!("{task}/stat"));
            let state = tstat.rsplit(')').next().and_then(|r| r.split_whitespace().next()).unwrap_or("?");
            let _ = writeln!(
                out,
                "  tid {tid} ({}) state {state} wchan {} syscall {}",
                read(format!("{task}/comm")).trim(),
                read(format!("{task}/wchan")).trim(),
                read(format!("{task}/syscall")).trim()
            );
            for line in read(format!("{task}/stack")).lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
        flush(&mut out);
    }
    if std::env::var_os("CHAOS_NO_GDB").is_some() {
        return;
    }
    // gdb after the /proc pass (it stops each process while it reads it), one at a time
    // (a debug binary's symbols cost each gdb hundreds of MB), each bounded.
    let budget = Instant::now() + Duration::from_secs(240);
    for (pid, comm) in &family {
        if Instant::now() >= budget {
            let _ = writeln!(out, "== gdb: out of time before pid {pid}");
            continue;
        }
        let _ = writeln!(out, "== gdb pid {pid} ({comm})");
        let _ = writeln!(out, "{}", user_stacks(*pid, Duration::from_secs(60)));
        flush(&mut out);
    }
    flush(&mut out);
}

/// `gdb -p pid -batch -ex 'thread apply all bt'`, ended after `limit`.
fn user_stacks(pid: u32, limit: Duration) -> String {
    let path = format!("/tmp/chaos-gdb-{}-{pid}", std::process::id());
    let Ok(file) = std::fs::File::create(&path) else { return "gdb: no file for its output".into() };
    let spawned = std::process::Command::new("gdb")
        .args(["-nx", "-batch", "-p", &pid.to_string()])
        .args(["-ex", "set pagination off", "-ex", "thread apply all bt"])
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn();
    let text = match spawned {
        Err(e) => format!("gdb: {e}"),
        Ok(mut gdb) => {
            let deadline = Instant::now() + limit;
            while gdb.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let late = gdb.try_wait().ok().flatten().is_none();
            if late {
                let _ = gdb.kill();
                let _ = gdb.wait();
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // Only the stacks: gdb's symbol loading chatter says nothing.
            let mut kept: String = text
                .lines()
                .filter(|l| l.starts_with('#') || l.starts_with("Thread ") || l.contains("rror"))
                .map(|l| format!("{}\n", l.chars().take(300).collect::<String>()))
                .collect();
            if late {
                kept.push_str("gdb: ended after its limit\n");
            }
            kept
        }
    };
    let _ = std::fs::remove_file(&path);
    text
}

/// The names in `/dev/shm`, but for resource trackers' journals (`mp-journal-*`): each
/// live family keeps one there for its life (this one's too), and a test binary running
/// beside this soak starts and ends families of its own; a journal outliving its whole
/// family is cleaned by the next family's start, which tests/shared.rs checks.
fn shm_names() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with("mp-journal-"))
                .collect()
        })
        .unwrap_or_default()
}

fn arg(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
}

/// The round's process: runs one round and exits 0 when every invariant held.
fn round_main(spec: &str) -> ! {
    let mut it = spec.split(',');
    let seed: u64 = it.next().unwrap().parse().unwrap();
    let secs: f64 = it.next().unwrap().parse().unwrap();
    let kill = it.next() == Some("1");
    multiproc::init();
    let root = std::process::id();
    // The watchdog is the driver's (`run_watched`: at the deadline it dumps where every
    // process of the round waits, then kills them). This alarm is only a backstop for a
    // driver that is gone (killed by a test's watchdog): an alarm, not a thread, since a
    // thread would refuse the pool's `Fork` workers; SIGALRM's default action ends the
    // round, and the family with it.
    // SAFETY: alarm only arms a timer.
    unsafe { libc::alarm(round_limit(secs).as_secs() as u32 + BACKSTOP_SECS) };
    match run_round(&Round { seed, secs, kill }, root) {
        Ok(t) => {
            println!("ok {t:?}");
            std::process::exit(0)
        }
        Err(e) => {
            println!("FAILED: {e}");
            std::process::exit(1)
        }
    }
}

fn main() {
    if let Ok(k) = std::env::var("CHAOS_KILLER") {
        let (seed, root) = k.split_once(',').expect("seed,root");
        killer(seed.parse().unwrap(), root.parse().unwrap());
    }
    if let Ok(spec) = std::env::var("CHAOS_ROUND") {
        round_main(&spec);
    }
    let seed = arg("--seed").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let rounds = arg("--rounds").unwrap_or(3);
    let secs = arg("--secs").unwrap_or(3);
    let kill = std::env::var_os("CHAOS_NOKILL").is_none();
    println!("chaos: seed {seed}, {rounds} rounds of {secs} s");
    // Orphans (a grandchild whose parent was killed) come to this process, so that what a
    // round leaves running is seen here.
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only changes this process's attribute.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    // The round runs in a process group of its own, so that a `timeout` (which signals its
    // command's whole group) or a ^C reaches only this driver: on SIGTERM it dumps the round
    // as at its limit, on SIGINT it kills the round's family; then it fails.
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to atomics (async-signal-safe).
        unsafe { libc::signal(signal, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
    let shm_before = shm_names();
    let mut failed = 0;
    for i in 0..rounds {
        if TERMINATED.load(Ordering::Relaxed) {
            println!("chaos: ended by a signal between rounds (seed {seed})");
            std::process::exit(1);
        }
        let round_seed = if i == 0 { seed } else { Rng(seed ^ i).next() };
        print!("round {i}: seed {round_seed} ... ");
        let _ = std::io::stdout().flush();
        let (status, text) = run_watched(
            std::process::Command::new(std::env::current_exe().unwrap())
                .env("CHAOS_ROUND", format!("{round_seed},{secs},{}", u8::from(kill))),
            round_limit(secs as f64),
        );
        print!("{text}");
        match status {
            Some(status) if status.success() => {}
            Some(status) => {
                if !text.contains("FAILED") {
                    println!("FAILED: the round's process ended with {status}");
                }
                failed += 1;
            }
            None if INTERRUPTED.load(Ordering::Relaxed) => {
                println!("chaos: interrupted in round {i} (seed {seed}): its family killed");
                std::process::exit(130);
            }
            None if TERMINATED.load(Ordering::Relaxed) => {
                println!("FAILED: SIGTERM while round {i} (seed {round_seed}) ran: dumped above");
                println!("chaos: ended by SIGTERM (seed {seed})");
                std::process::exit(1);
            }
            None => {
                println!(
                    "FAILED: round {i} (seed {round_seed}) still running after {} s: dumped above",
                    round_limit(secs as f64).as_secs()
                );
                failed += 1;
            }
        }
        // Nothing of the round is left running (its orphans come here, and are reaped: the
        // list below leaves zombies out, so they would pile up round after round).
        // SAFETY: waitpid with WNOHANG reaps an orphan that came here, if any.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut left = descendants(std::process::id());
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            // SAFETY: waitpid with WNOHANG reaps an orphan that came here, if any.
            while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
            left = descendants(std::process::id());
        }
        if !left.is_empty() {
            println!("FAILED: left running after round {i}: {left:?}");
            failed += 1;
        }
        let new: Vec<_> = shm_names().difference(&shm_before).cloned().collect();
        if !new.is_empty() {
            println!("FAILED: new in /dev/shm after round {i}: {new:?}");
            failed += 1;
        }
    }
    if failed > 0 {
        println!("chaos: {failed} failures (seed {seed})");
        std::process::exit(1);
    }
    println!("chaos: all held (seed {seed}, {rounds} rounds)");
}
