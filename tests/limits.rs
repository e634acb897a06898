//! When the machine runs out: a full `/dev/shm`, no file descriptor left, no process left,
//! little memory. Running out gives a typed error (an `io::Error` with its errno,
//! `HeapFull`, ...), never a signal death, a hang, a panic, a leak or a wrong result; and
//! the family works again once the resource is back.
//!
//! Each case runs as an inner test in a process of its own, under the limit: a mount
//! namespace with a small tmpfs on `/dev/shm`, a lowered `RLIMIT_NOFILE`, a pids cgroup.
//! The limits need root; without it a case prints why it is skipped and passes.

mod common;

use std::process::Command;
use std::time::Duration;

use multiproc::{Manager, Pool, Process, Queue, SharedMemory, SharedMemoryError, Value};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(120);

fn is_root() -> bool {
    // SAFETY (test): geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs the inner test `name` of this binary alone, with `env` set, under `wrap` (a
/// command line that ends by running its arguments), and fails unless it passed and
/// printed `INNER-DONE`.
fn run_inner_under(wrap: &[&str], name: &str, env: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(wrap[0])
        .args(&wrap[1..])
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("INNER-DONE"),
        "{:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// A full /dev/shm
// ---------------------------------------------------------------------------------------

const SMALL_SHM_INNER: &str = "MULTIPROC_TEST_SMALL_SHM";

/// A mount namespace whose `/dev/shm` is a tmpfs of 1 MiB.
const SMALL_SHM: [&str; 5] =
    ["unshare", "-m", "sh", "-c", r#"mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "$0" "$@""#];

fn shm_names() -> Vec<String> {
    std::fs::read_dir("/dev/shm").unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

fn is_no_space(e: &SharedMemoryError) -> bool {
    matches!(e, SharedMemoryError::Io(io) if io.raw_os_error() == Some(libc::ENOSPC))
}

fn double(x: u64) -> u64 {
    2 * x
}

#[test]
fn a_full_dev_shm_inner() {
    if std::env::var_os(SMALL_SHM_INNER).is_none() {
        return;
    }
    let _w = common::watchdog(LIMIT);
    assert!(shm_names().is_empty(), "a fresh /dev/shm: {:?}", shm_names());
    // More than the tmpfs holds: an error at once, not a segment whose first write of a
    // page the kernel cannot give is a SIGBUS (through the mapping) or a `Truncated` that
    // nobody truncated (through `write_at`).
    let too_big = SharedMemory::create(4 << 20);
    assert!(matches!(&too_big, Err(e) if is_no_space(e)), "{too_big:?}");
    assert!(shm_names().is_empty(), "nothing left of the failed segment: {:?}", shm_names());

    // Half of it fits, and all of its bytes can be written, also through the mapping.
    let half = SharedMemory::create(512 << 10).unwrap();
    half.write_at(0, &vec![7u8; 512 << 10]);
    // SAFETY (test): nobody else has this segment.
    unsafe { half.as_mut_slice() }.fill(9);
    assert!(half.to_vec().iter().all(|b| *b == 9));
    // The other half does not (the tmpfs's own pages take some).
    let second = SharedMemory::create(600 << 10);
    assert!(matches!(&second, Err(e) if is_no_space(e)), "{second:?}");
    let list = multiproc::ShareableList::new(vec![multiproc::Item::Bytes(vec![1; 600 << 10])]);
    assert!(list.is_err(), "a ShareableList with no room: {list:?}");
    assert_eq!(shm_names().len(), 1, "{:?}", shm_names());

    // The family heap is a memfd, not a file of /dev/shm: the family's objects, queues,
    // pools and managers work beside a full /dev/shm.
    let value = Value::new(5u64).unwrap();
    let bytes = multiproc::SharedBytes::new(&[3u8; 1 << 20]).unwrap();
    let queue = Queue::<Vec<u8>>::new().unwrap();
    for method in common::METHODS {
        let q = queue.clone();
        let child = Process::new(
            |(q, v): (Queue<Vec<u8>>, Value<u64>)| {
                *v.lock() += 1;
                q.put(vec![1; 100_000]).unwrap();
            },
            (q, value.clone()),
        )
        .start_method(method)
        .start()
        .unwrap();
        assert_eq!(queue.get().unwrap().len(), 100_000, "{method:?}");
        child.join().unwrap();
        let pool = Pool::builder().processes(2).start_method(method).build().unwrap();
        assert_eq!(pool.map(double, 0..10).unwrap(), (0..10).map(double).collect::<Vec<_>>());
        pool.close();
        pool.join().unwrap();
    }
    assert_eq!(*value.lock(), 7);
    assert_eq!(bytes.len(), 1 << 20);
    let manager = Manager::start().unwrap();
    let dict = manager.dict::<String, u64>().unwrap();
    dict.insert("a".into(), 1).unwrap();
    assert_eq!(dict.get("a").unwrap(), Some(1));
    drop(dict);
    manager.shutdown().unwrap();

    // Space back: the segment that did not fit now does.
    half.unlink().unwrap();
    drop(half);
    let again = SharedMemory::create(600 << 10).unwrap();
    again.write_at(0, &vec![1u8; 600 << 10]);
    again.unlink().unwrap();
    drop(again);
    assert!(shm_names().is_empty(), "{:?}", shm_names());
    println!("INNER-DONE");
}

#[test]
fn a_full_dev_shm_is_an_error_at_create_and_the_family_works_beside_it() {
    if !is_root() {
        println!("skipped: a tmpfs of our own on /dev/shm needs root (a mount namespace)");
        return;
    }
    let _w = common::watchdog(LIMIT);
    run_inner_under(&SMALL_SHM, "a_full_dev_shm_inner", SMALL_SHM_INNER);
}
