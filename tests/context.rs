//! `get_context`: the crate's constructors bound to one start method.
//!
//! A spawned child is a fresh program: the kernel gave it new `AT_RANDOM` bytes at `exec`;
//! a fork-server child is a copy of the fork server, itself a copy of the test process, so
//! its `AT_RANDOM` bytes are the test's. A child reports them, and that tells how it was
//! started (both are the test process's children). The family's default (fork server in
//! these tests) stays as it was.

mod common;

use std::time::Duration;

use common::watchdog;
use multiproc::{Pool, Process, StartMethod, get_context, get_start_method};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(120);

/// The 16 random bytes the kernel gave this program at `exec` (`AT_RANDOM`).
fn exec_random(_: u32) -> [u8; 16] {
    // SAFETY: AT_RANDOM is the address of 16 bytes that live as long as the process, or 0.
    unsafe {
        let at = libc::getauxval(libc::AT_RANDOM) as *const [u8; 16];
        assert!(!at.is_null());
        at.read_unaligned()
    }
}

fn ppid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("PPid:")).unwrap();
    line["PPid:".len()..].trim().parse().unwrap()
}

#[test]
fn a_spawn_context_spawns_its_processes_and_the_default_is_unchanged() {
    let _w = watchdog(LIMIT);
    let before = get_start_method();
    let spawn = get_context(Some(StartMethod::Spawn));
    assert_eq!(spawn.start_method(), StartMethod::Spawn);
    let mine = exec_random(0);
    let child = spawn.process(exec_random, 0).start().unwrap();
    assert_ne!(child.join().unwrap(), mine, "a spawned child is a fresh program");

    let default = Process::new(exec_random, 0).start().unwrap();
    assert_eq!(default.join().unwrap(), mine, "the default context forks from the fork server");
    assert_eq!(get_start_method(), before);
    assert_eq!(get_context(None).start_method(), before);
}

#[test]
fn a_spawn_context_pool_has_spawned_workers_beside_a_default_pool() {
    let _w = watchdog(LIMIT);
    let spawned = get_context(Some(StartMethod::Spawn)).pool(2).unwrap();
    let default = Pool::new(2).unwrap();
    let mine = exec_random(0);
    assert!(spawned.map(exec_random, vec![0; 8]).unwrap().iter().all(|&r| r != mine));
    assert!(default.map(exec_random, vec![0; 8]).unwrap().iter().all(|&r| r == mine));
    spawned.close();
    spawned.join().unwrap();
    default.close();
    default.join().unwrap();
}

#[test]
fn a_context_forwards_the_other_constructors() {
    let _w = watchdog(LIMIT);
    let ctx = get_context(Some(StartMethod::Spawn));
    let q = ctx.queue::<u32>().unwrap();
    let lock = ctx.lock().unwrap();
    let value = ctx.value(1i64).unwrap();
    let child = ctx
        .process(
            |(q, lock, value): (multiproc::Queue<u32>, multiproc::Lock, multiproc::Value<i64>)| {
                let _g = lock.acquire().unwrap();
                *value.lock() += 1;
                q.put(std::os::unix::process::parent_id()).unwrap();
            },
            (q.clone(), lock, value.clone()),
        )
        .start()
        .unwrap();
    child.join().unwrap();
    assert_eq!(q.get().unwrap(), std::process::id());
    assert_eq!(value.get(), 2);
}

#[test]
fn a_context_manager_server_is_spawned() {
    let _w = watchdog(LIMIT);
    let manager = get_context(Some(StartMethod::Spawn)).manager().unwrap();
    let server = manager.pid().expect("a started manager has a server process");
    assert_eq!(ppid_of(server), std::process::id(), "a spawned server is the test's own child");
    let d = manager.dict::<String, u32>().unwrap();
    d.insert("a".into(), 1).unwrap();
    assert_eq!(d.get(&"a".to_string()).unwrap(), Some(1));
    manager.shutdown().unwrap();
}
