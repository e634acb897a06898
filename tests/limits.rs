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

use multiproc::{Manager, Pool, Process, Queue, SharedMemory, SharedMemoryError, TaskError, Value};

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
    run_inner_under_saying(wrap, name, env);
}

/// [`run_inner_under`], returning what the inner test (and the family's helpers, the
/// resource tracker among them) wrote on stderr.
fn run_inner_under_saying(wrap: &[&str], name: &str, env: &str) -> String {
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
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------------------------------
// A full /dev/shm
// ---------------------------------------------------------------------------------------

const SMALL_SHM_INNER: &str = "MULTIPROC_TEST_SMALL_SHM";

/// A mount namespace whose `/dev/shm` is a tmpfs of 1 MiB.
const SMALL_SHM: [&str; 5] =
    ["unshare", "-m", "sh", "-c", r#"mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "$0" "$@""#];

/// Ours in `/dev/shm`: this family's own tracker journal aside, which it names there.
fn shm_names() -> Vec<String> {
    common::shm_names_but_journals()
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

/// A mount namespace whose `/dev/shm` is a tmpfs of 1 MiB, full before the program starts.
const FULL_SHM: [&str; 5] = [
    "unshare",
    "-m",
    "sh",
    "-c",
    r#"mount -t tmpfs -o size=1m tmpfs /dev/shm && { cat /dev/zero > /dev/shm/mp-test-fill 2>/dev/null; exec "$0" "$@"; }"#,
];

/// What the resource tracker says when a family goes without its journal (unprotected
/// against the kill of the tracker, or of the whole family).
fn without_a_journal(stderr: &str) -> bool {
    stderr.contains("resource tracker: no journal") || stderr.contains("resource tracker: its journal failed")
}

const FULL_AT_START_INNER: &str = "MULTIPROC_TEST_FULL_SHM_AT_START";

#[test]
fn a_family_started_beside_a_full_dev_shm_inner() {
    if std::env::var_os(FULL_AT_START_INNER).is_none() {
        return;
    }
    let _w = common::watchdog(LIMIT);
    // Its journal is made (`init()`, by `test_support!`), the tracker runs.
    let shm = SharedMemory::create(4096);
    assert!(matches!(&shm, Err(e) if is_no_space(e)), "{shm:?}");
    println!("INNER-DONE");
}

/// A family started while `/dev/shm` is full keeps a journal (its memory files, which no
/// later start can find, where the files of `/dev/shm` have no room): before, it went
/// without one, and the tracker killed alone lost every registration (said on stderr).
#[test]
fn a_family_started_beside_a_full_dev_shm_keeps_a_journal() {
    if !is_root() {
        println!("skipped: a tmpfs of our own on /dev/shm needs root (a mount namespace)");
        return;
    }
    let _w = common::watchdog(LIMIT);
    let said = run_inner_under_saying(&FULL_SHM, "a_family_started_beside_a_full_dev_shm_inner", FULL_AT_START_INNER);
    assert!(!without_a_journal(&said), "{said}");
}

const FULL_LATER_INNER: &str = "MULTIPROC_TEST_FULL_SHM_LATER";

#[test]
fn a_dev_shm_filled_after_the_start_inner() {
    if std::env::var_os(FULL_LATER_INNER).is_none() {
        return;
    }
    let _w = common::watchdog(LIMIT);
    // Everything the tmpfs has left, taken by another program's file.
    let fill = "/dev/shm/mp-test-fill";
    let mut file = std::fs::File::create(fill).unwrap();
    let chunk = vec![1u8; 64 << 10];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    // Segments whose names their creates registered (and then untracked): some 20 KiB of
    // lines for the tracker's journal, past its first page.
    let long = "n".repeat(200);
    for i in 0..40 {
        let shm = SharedMemory::builder().name(format!("mp-test-{i}-{long}")).size(4096).create();
        assert!(matches!(&shm, Err(e) if is_no_space(e)), "{shm:?}");
    }
    // Until the tracker took them all (its journal that long), or failed (emptied).
    let journal = || -> u64 {
        std::fs::read_dir("/dev/shm")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("mp-journal-"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    let taken = common::eventually(Duration::from_secs(30), || matches!(journal(), 0 | 16_000..));
    assert!(taken, "the tracker took its lines: its journal holds {} bytes", journal());
    drop(file);
    std::fs::remove_file(fill).unwrap();
    println!("INNER-DONE");
}

/// A family whose `/dev/shm` fills up keeps its journal while its lines fit the pages it
/// reserved at its start: before, the tracker's next line needing a page failed `ENOSPC`,
/// and the family went unprotected for the rest of its life (said on stderr).
#[test]
fn a_family_whose_dev_shm_fills_up_keeps_its_journal() {
    if !is_root() {
        println!("skipped: a tmpfs of our own on /dev/shm needs root (a mount namespace)");
        return;
    }
    let _w = common::watchdog(LIMIT);
    let said = run_inner_under_saying(&SMALL_SHM, "a_dev_shm_filled_after_the_start_inner", FULL_LATER_INNER);
    assert!(!without_a_journal(&said), "{said}");
}

const SPARSE_SHM_INNER: &str = "MULTIPROC_TEST_SPARSE_SHM";

/// Makes a segment as Python and C programs do: `shm_open`, then `ftruncate` to `len`
/// (sparse: no page is taken until written).
fn make_sparse_segment(name: &str, len: usize) {
    let path = std::ffi::CString::new(format!("/{name}")).unwrap();
    // SAFETY (test): plain libc calls on a descriptor this function owns.
    unsafe {
        let fd = libc::shm_open(path.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o600);
        assert!(fd >= 0, "shm_open: {}", std::io::Error::last_os_error());
        assert_eq!(libc::ftruncate(fd, len as libc::off_t), 0);
        libc::close(fd);
    }
}

fn is_errno(e: &SharedMemoryError, errno: i32) -> bool {
    matches!(e, SharedMemoryError::Io(io) if io.raw_os_error() == Some(errno))
}

#[test]
fn a_write_the_kernel_refuses_inner() {
    if std::env::var_os(SPARSE_SHM_INNER).is_none() {
        return;
    }
    let _w = common::watchdog(LIMIT);
    // A sparse segment of another program, larger than the tmpfs: its pages cannot all be
    // had. A write that needs more is the kernel's ENOSPC, not a `Truncated` that nobody
    // truncated (its size is what it was).
    make_sparse_segment("mp-test-sparse", 4 << 20);
    let shm = SharedMemory::builder().name("mp-test-sparse").track(false).open().unwrap();
    let full = shm.try_write_at(0, &vec![7u8; 2 << 20]);
    assert!(matches!(&full, Err(e) if is_errno(e, libc::ENOSPC)), "{full:?}");
    let panic = std::panic::catch_unwind(|| shm.write_at(0, &vec![7u8; 2 << 20])).unwrap_err();
    let said = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(said.contains(&std::io::Error::from_raw_os_error(libc::ENOSPC).to_string()), "write_at's panic: {said}");
    // What fits still goes.
    shm.try_write_at(0, &[1u8; 4096]).unwrap();
    shm.unlink().unwrap();
    drop(shm);

    // A file size limit (RLIMIT_FSIZE) below the write: EFBIG (and SIGXFSZ, ignored here).
    let shm = SharedMemory::builder().size(256 << 10).track(false).create().unwrap();
    // SAFETY (test): ignoring a signal, and lowering a limit of this process (alone in it).
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
        let lowered = libc::rlimit { rlim_cur: 64 << 10, rlim_max: limit.rlim_max };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lowered), 0);
    }
    let big = shm.try_write_at(128 << 10, &[1u8; 16]);
    // SAFETY (test): as above.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0) };
    assert!(matches!(&big, Err(e) if is_errno(e, libc::EFBIG)), "{big:?}");
    shm.try_write_at(128 << 10, &[1u8; 16]).unwrap();
    shm.unlink().unwrap();
    drop(shm);
    assert!(shm_names().is_empty(), "{:?}", shm_names());
    println!("INNER-DONE");
}

#[test]
fn a_write_the_kernel_refuses_is_its_error_not_truncated() {
    if !is_root() {
        println!("skipped: a tmpfs of our own on /dev/shm needs root (a mount namespace)");
        return;
    }
    let _w = common::watchdog(LIMIT);
    run_inner_under(&SMALL_SHM, "a_write_the_kernel_refuses_inner", SPARSE_SHM_INNER);
}

// ---------------------------------------------------------------------------------------
// Out of file descriptors
// ---------------------------------------------------------------------------------------

const FEW_FDS_INNER: &str = "MULTIPROC_TEST_FEW_FDS";

fn open_fds() -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some(format!("{}->{}", e.file_name().to_string_lossy(), target.display()))
        })
        .collect();
    fds.sort();
    fds
}

/// The pids of this process's children, zombies included (`/proc/*/stat`'s ppid).
fn child_pids() -> Vec<u32> {
    let me = std::process::id();
    let mut kids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid: u32 = stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()?;
            (ppid == me).then_some(pid)
        })
        .collect();
    kids.sort();
    kids
}

fn highest_fd() -> i32 {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .max()
        .unwrap()
}

/// Opens `/dev/null` on every free descriptor number below the highest open one, so that
/// a limit of `highest + 1 + room` leaves exactly `room` descriptors to open.
fn plug_gaps() -> Vec<std::fs::File> {
    let top = highest_fd();
    let mut plugs = Vec::new();
    loop {
        let plug = std::fs::File::open("/dev/null").unwrap();
        if std::os::fd::AsRawFd::as_raw_fd(&plug) > top {
            return plugs;
        }
        plugs.push(plug);
    }
}

/// Sets this process's soft `RLIMIT_NOFILE` (children inherit it).
fn set_fd_limit(soft: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY (test): getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = soft.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

fn plus_one(x: u64) -> u64 {
    x + 1
}

type Op = (&'static str, Box<dyn Fn() -> Result<(), String>>);

/// A process, a queue to a child and a pool, with each start method: what needs a new
/// process (and its descriptors).
fn start_ops(ops: &mut Vec<Op>) {
    for method in common::METHODS {
        ops.push((
            leak_name("process", method),
            Box::new(move || {
                let child =
                    Process::new(plus_one, 41).start_method(method).start().map_err(|e| format!("start: {e:?}"))?;
                let got = child.join().map_err(|e| format!("join: {e:?}"))?;
                assert_eq!(got, 42);
                Ok(())
            }),
        ));
        ops.push((
            leak_name("queue to a child", method),
            Box::new(move || {
                let queue = Queue::<u64>::new().map_err(|e| format!("queue: {e:?}"))?;
                let child = Process::new(|q: Queue<u64>| q.put(7).unwrap(), queue.clone())
                    .start_method(method)
                    .start()
                    .map_err(|e| format!("start: {e:?}"))?;
                child.join().map_err(|e| format!("join: {e:?}"))?;
                assert_eq!(queue.get_timeout(LIMIT).unwrap(), 7);
                Ok(())
            }),
        ));
        ops.push((
            leak_name("pool", method),
            Box::new(move || {
                let pool =
                    Pool::builder().processes(2).start_method(method).build().map_err(|e| format!("build: {e:?}"))?;
                let got = pool.map(plus_one, 0..8).map_err(|e| format!("map: {e:?}"));
                pool.close();
                pool.join().map_err(|e| format!("pool join: {e:?}"))?;
                assert_eq!(got?, (1..9).collect::<Vec<_>>());
                Ok(())
            }),
        ));
    }
}

fn fd_ops() -> Vec<Op> {
    let mut ops: Vec<Op> = Vec::new();
    start_ops(&mut ops);
    ops.push((
        "pipe",
        Box::new(|| {
            let (a, b) = multiproc::Pipe::<u64>::new().map_err(|e| format!("pipe: {e:?}"))?;
            a.send(3).unwrap();
            assert_eq!(b.recv().unwrap(), 3);
            Ok(())
        }),
    ));
    ops.push((
        "manager",
        Box::new(|| {
            let manager = Manager::start().map_err(|e| format!("start: {e:?}"))?;
            let dict = manager.dict::<String, u64>().map_err(|e| format!("dict: {e:?}"))?;
            dict.insert("a".into(), 1).map_err(|e| format!("insert: {e:?}"))?;
            assert_eq!(dict.get("a").map_err(|e| format!("get: {e:?}"))?, Some(1));
            drop(dict);
            manager.shutdown().map_err(|e| format!("shutdown: {e:?}"))
        }),
    ));
    #[cfg(feature = "remote")]
    ops.push((
        "listener",
        Box::new(|| {
            let listener = multiproc::Listener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), b"key")
                .map_err(|e| format!("bind: {e:?}"))?;
            let address = listener.address().clone();
            let client = std::thread::spawn(move || {
                let c = multiproc::Client::connect::<u64>(address, b"key").map_err(|e| format!("connect: {e:?}"))?;
                c.send(5).map_err(|e| format!("send: {e:?}"))
            });
            let accepted =
                listener.accept_timeout::<u64>(Duration::from_secs(10)).map_err(|e| format!("accept: {e:?}"));
            let sent = client.join().unwrap();
            // A client that could not connect (no descriptor for its socket) leaves the
            // accept waiting until its timeout: the client's error is the answer then.
            let accepted = match (accepted, &sent) {
                (Err(timeout), Err(no_room)) if !timeout.contains("code: 24") => Err(no_room.clone()),
                (accepted, _) => accepted,
            };
            let got = accepted?.recv().map_err(|e| format!("recv: {e:?}"))?;
            sent?;
            assert_eq!(got, 5);
            Ok(())
        }),
    ));
    ops
}

/// After a failure: no descriptor, heap byte or child (zombies too) that was not there
/// before (`active_children` lets go of the children that ended, as Python's does).
fn assert_nothing_left(what: &str, fds: &[String], heap: u64, kids: &[u32]) {
    let no_new = || multiproc::active_children().is_empty() && open_fds().iter().all(|fd| fds.contains(fd));
    assert!(
        common::eventually(Duration::from_secs(10), no_new),
        "{what}: descriptors before {fds:?}, after {:?}",
        open_fds()
    );
    assert!(
        common::eventually(Duration::from_secs(10), || multiproc::__private::heap_in_use() == heap),
        "{what}: heap in use {heap} before, {} after",
        multiproc::__private::heap_in_use()
    );
    let no_new = || child_pids().iter().all(|pid| kids.contains(pid));
    assert!(
        common::eventually(Duration::from_secs(10), no_new),
        "{what}: children before {kids:?}, after {:?}",
        child_pids()
    );
}

fn leak_name(what: &str, method: multiproc::StartMethod) -> &'static str {
    Box::leak(format!("{what} ({method:?})").into_boxed_str())
}

#[test]
fn few_fds_inner() {
    if std::env::var_os(FEW_FDS_INNER).is_none() {
        return;
    }
    let _w = common::watchdog(Duration::from_secs(600));
    let ops = fd_ops();
    // Once each with room, so that what the family makes once (the fork server, the
    // tracker) is there before the baseline.
    for (name, op) in &ops {
        op().unwrap_or_else(|e| panic!("{name} with room: {e}"));
    }
    let fds = open_fds();
    let heap = multiproc::__private::heap_in_use();
    let kids = child_pids();
    for (name, op) in &ops {
        let mut errors = Vec::new();
        for room in 0..64 {
            let plugs = plug_gaps();
            set_fd_limit(highest_fd() as u64 + 1 + room);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(op));
            set_fd_limit(1 << 16);
            drop(plugs);
            match result {
                Ok(Ok(())) => {
                    // Worked with this many: the op needs no more.
                    println!("{name}: works with {room} descriptors to spare; before: {errors:?}");
                    break;
                }
                Ok(Err(e)) => {
                    assert!(e.contains("(os error 24)") || e.contains("code: 24"), "{name}: {e}");
                    errors.push(e)
                }
                Err(_) => panic!("{name}: panicked with {room} descriptors to spare"),
            }
            assert_nothing_left(&format!("{name} with {room} to spare ({:?})", errors.last()), &fds, heap, &kids);
        }
        // And with room again, it works.
        op().unwrap_or_else(|e| panic!("{name} with room again: {e}"));
    }

    // A worker dies while the pool's process has no descriptor to spare: the other does
    // the work, and the replacement starts once there is room.
    for method in common::METHODS {
        let pool = Pool::builder().processes(2).start_method(method).build().unwrap();
        assert_eq!(pool.map(plus_one, 0..4).unwrap(), [1, 2, 3, 4]);
        let first = pool.pids()[0];
        let plugs = plug_gaps();
        set_fd_limit(highest_fd() as u64 + 1);
        // SAFETY (test): killing our own pool's worker.
        unsafe { libc::kill(first as i32, libc::SIGKILL) };
        let got = pool.map(plus_one, 0..8);
        set_fd_limit(1 << 16);
        drop(plugs);
        assert_eq!(got.unwrap(), (1..9).collect::<Vec<_>>(), "{method:?}: one worker left");
        let replaced = || pool.pids().len() == 2 && !pool.pids().contains(&first);
        assert!(common::eventually(Duration::from_secs(30), replaced), "{method:?}: the replacement started");
        pool.close();
        pool.join().unwrap();
    }
    println!("INNER-DONE");
}

/// The fork server: the child of this process that listens on the abstract socket
/// `@multiproc-forkserver-<our pid>-...`; its pid and that name (without the `@`).
fn fork_server() -> (u32, String) {
    let prefix = format!("@multiproc-forkserver-{}-", std::process::id());
    let unix = std::fs::read_to_string("/proc/net/unix").unwrap();
    // Every socket of that name (another family elsewhere, in another pid namespace, may
    // have a main of the same pid): ours is the one a child of ours holds.
    let sockets: Vec<(String, String)> = unix
        .lines()
        .filter_map(|l| {
            let path = l.split_whitespace().last()?;
            let inode = l.split_whitespace().nth(6)?;
            path.starts_with(&prefix).then(|| (format!("socket:[{inode}]"), path[1..].to_string()))
        })
        .collect();
    child_pids()
        .into_iter()
        .find_map(|pid| {
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
            let targets: Vec<String> =
                fds.filter_map(|fd| Some(std::fs::read_link(fd.ok()?.path()).ok()?.display().to_string())).collect();
            sockets.iter().find(|(socket, _)| targets.contains(socket)).map(|(_, name)| (pid, name.clone()))
        })
        .expect("the fork server's pid")
}

/// A connection to the abstract seqpacket socket `name` (the server takes a descriptor
/// for it, the lowest free one).
fn connect_to(name: &str) -> std::os::fd::OwnedFd {
    // SAFETY (test): a socket, and a connect with a sockaddr_un filled within its bounds.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (i, b) in name.bytes().enumerate() {
            addr.sun_path[i + 1] = b as libc::c_char;
        }
        let len = (std::mem::size_of::<libc::sa_family_t>() + 1 + name.len()) as libc::socklen_t;
        assert_eq!(libc::connect(fd, (&raw const addr).cast(), len), 0);
        std::os::fd::FromRawFd::from_raw_fd(fd)
    }
}

fn open_numbers(pid: u32) -> Vec<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Sets the soft `RLIMIT_NOFILE` of the process `pid` to its highest open descriptor
/// plus 1 plus `room`, or back to plenty.
fn set_fd_limit_of(pid: u32, soft: Option<u64>) {
    let highest = open_numbers(pid).into_iter().max().unwrap();
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY (test): prlimit on our own child with valid pointers to rlimits.
    unsafe {
        assert_eq!(libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut limit), 0);
        limit.rlim_cur = soft.map_or(limit.rlim_max.min(1 << 16), |room| highest + 1 + room);
        assert_eq!(libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()), 0);
    }
}

/// In a child of the main process: starts a grandchild through the fork server, passing
/// it a queue, and says how that went.
fn start_a_grandchild(_: ()) -> Result<u64, String> {
    let queue = Queue::<u64>::new().map_err(|e| format!("queue: {e:?}"))?;
    let grandchild = Process::new(|q: Queue<u64>| q.put(7).unwrap(), queue.clone())
        .start_method(multiproc::StartMethod::ForkServer)
        .start()
        .map_err(|e| format!("start: {e:?}"))?;
    grandchild.join().map_err(|e| format!("join: {e:?}"))?;
    queue.get_timeout(LIMIT).map_err(|e| format!("get: {e:?}"))
}

#[test]
fn a_fork_server_out_of_descriptors_inner() {
    if std::env::var_os(FEW_FDS_INNER).is_none() {
        return;
    }
    let _w = common::watchdog(Duration::from_secs(600));
    let ask = || {
        let child = Process::new(start_a_grandchild, ()).start_method(multiproc::StartMethod::Spawn).start().unwrap();
        match child.join_timeout(Duration::from_secs(30)) {
            Ok(result) => result,
            Err(e) => panic!("the child asking the fork server for a grandchild hangs: {e:?}"),
        }
    };
    assert_eq!(ask(), Ok(7));
    let (server, name) = fork_server();
    // The server's free numbers below its highest descriptor are filled with connections
    // of ours (it accepts them), so that its limit is its count, as in a server that ran
    // out for real.
    let mut fillers = Vec::new();
    let gaps = || {
        let open = open_numbers(server);
        open.iter().max().unwrap() + 1 - open.len() as u64
    };
    while gaps() > 0 {
        assert!(fillers.len() < 4096, "the fork server keeps gaps among its descriptors");
        let before = open_numbers(server).len();
        fillers.push(connect_to(&name));
        // Accepted, unless the server closed another connection meanwhile (the last
        // child's, which ended just before): then the next look counts again.
        let _ = common::eventually(Duration::from_secs(10), || open_numbers(server).len() > before);
    }
    let heap = multiproc::__private::heap_in_use();
    let server_kids = || {
        let mut kids: Vec<u32> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| {
                let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let ppid: u32 = stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()?;
                (ppid == server).then_some(pid)
            })
            .collect();
        kids.sort();
        kids
    };
    for room in 0..8 {
        set_fd_limit_of(server, Some(room));
        let result = ask();
        set_fd_limit_of(server, None);
        println!("the fork server with {room} descriptors to spare: {result:?}");
        if let Err(e) = &result {
            assert!(e.contains("os error 24") && !e.contains("not available"), "{room} to spare: {e}");
        }
        assert!(
            common::eventually(Duration::from_secs(10), || server_kids().is_empty()),
            "{room} to spare: the server's children left: {:?}",
            server_kids()
        );
        assert!(
            common::eventually(Duration::from_secs(10), || multiproc::__private::heap_in_use() == heap),
            "{room} to spare: heap in use {heap} before, {} after",
            multiproc::__private::heap_in_use()
        );
        assert_eq!(ask(), Ok(7), "{room} to spare: with room again");
        if result.is_ok() {
            break;
        }
    }
    drop(fillers);
    println!("INNER-DONE");
}

#[test]
fn a_fork_server_out_of_descriptors_refuses_with_the_errno_and_never_hangs() {
    let _w = common::watchdog(Duration::from_secs(600));
    common::run_inner_test("a_fork_server_out_of_descriptors_inner", FEW_FDS_INNER);
}

#[test]
fn out_of_file_descriptors_every_start_and_connect_fails_typed_and_leaves_nothing() {
    let _w = common::watchdog(Duration::from_secs(600));
    common::run_inner_test("few_fds_inner", FEW_FDS_INNER);
}

// ---------------------------------------------------------------------------------------
// Out of processes
// ---------------------------------------------------------------------------------------

const FEW_PIDS_INNER: &str = "MULTIPROC_TEST_FEW_PIDS";
const PIDS_ROOT: &str = "/sys/fs/cgroup/pids";

/// This process's pids cgroup (the inner test runs in one of its own).
fn pids_cgroup() -> std::path::PathBuf {
    std::env::var_os(FEW_PIDS_INNER).map(std::path::PathBuf::from).unwrap()
}

fn pids_current() -> u64 {
    std::fs::read_to_string(pids_cgroup().join("pids.current")).unwrap().trim().parse().unwrap()
}

/// Sets the cgroup's `pids.max` (tasks: threads count, as processes).
fn set_pids_max(max: Option<u64>) {
    let value = max.map_or("max".to_string(), |n| n.to_string());
    std::fs::write(pids_cgroup().join("pids.max"), value).unwrap();
}

fn pid_ops() -> Vec<Op> {
    let mut ops: Vec<Op> = Vec::new();
    start_ops(&mut ops);
    ops.push((
        "manager",
        Box::new(|| {
            let manager = Manager::start().map_err(|e| format!("start: {e:?}"))?;
            let dict = manager.dict::<String, u64>().map_err(|e| format!("dict: {e:?}"))?;
            dict.insert("a".into(), 1).map_err(|e| format!("insert: {e:?}"))?;
            assert_eq!(dict.get("a").map_err(|e| format!("get: {e:?}"))?, Some(1));
            drop(dict);
            manager.shutdown().map_err(|e| format!("shutdown: {e:?}"))
        }),
    ));
    ops
}

#[test]
fn few_pids_inner() {
    if std::env::var_os(FEW_PIDS_INNER).is_none() {
        return;
    }
    let _w = common::watchdog(Duration::from_secs(600));
    let ops = pid_ops();
    for (name, op) in &ops {
        op().unwrap_or_else(|e| panic!("{name} with room: {e}"));
    }
    let fds = open_fds();
    let heap = multiproc::__private::heap_in_use();
    let kids = child_pids();
    for (name, op) in &ops {
        let mut errors = Vec::new();
        for room in 0..16 {
            set_pids_max(Some(pids_current() + room));
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(op));
            set_pids_max(None);
            match result {
                Ok(Ok(())) => {
                    println!("{name}: works with {room} tasks to spare; before: {errors:?}");
                    break;
                }
                Ok(Err(e)) => {
                    // The machine's limit, as its errno: not a start method "not available".
                    assert!(e.contains("(os error 11)") && !e.contains("not available"), "{name}: {e}");
                    errors.push(e)
                }
                Err(_) => panic!("{name}: panicked with {room} tasks to spare"),
            }
            assert_nothing_left(&format!("{name} with {room} to spare ({:?})", errors.last()), &fds, heap, &kids);
        }
        op().unwrap_or_else(|e| panic!("{name} with room again: {e}"));
    }

    // A pool whose workers die while no process can be made: a map then fails with a
    // typed error instead of waiting for room that may never come, and once room is back
    // the pool starts its workers again and works, with as many workers as before.
    for method in common::METHODS {
        let pool = Pool::builder().processes(2).start_method(method).build().unwrap();
        assert_eq!(pool.map(plus_one, 0..4).unwrap(), [1, 2, 3, 4]);
        // One worker dies with no room for its replacement: the other does the work, and
        // the replacement starts once there is room.
        let first = pool.pids()[0];
        set_pids_max(Some(pids_current() - 1));
        // SAFETY (test): killing our own pool's worker.
        unsafe { libc::kill(first as i32, libc::SIGKILL) };
        assert_eq!(pool.map(plus_one, 0..8).unwrap(), (1..9).collect::<Vec<_>>(), "{method:?}: one worker left");
        set_pids_max(None);
        let replaced = || pool.pids().len() == 2 && !pool.pids().contains(&first);
        assert!(common::eventually(Duration::from_secs(30), replaced), "{method:?}: the replacement started");
        // No room even once the dead workers are gone.
        let workers = pool.pids();
        set_pids_max(Some(pids_current() - workers.len() as u64));
        for pid in &workers {
            // SAFETY (test): killing our own pool's worker.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        match pool.map(plus_one, 0..8) {
            Err(multiproc::Error::Task(TaskError::Panicked(info))) => {
                assert!(info.message.contains("cannot start a worker"), "{method:?}: {info:?}")
            }
            other => panic!("{method:?}: a map with every worker dead and no room: {other:?}"),
        }
        set_pids_max(None);
        // A start begun before the lift may fail after it, and with no worker alive that
        // fails the map too ("cannot start a worker": ci82 under a load of 12); the pool
        // starts them again at its next tick, so a later map works.
        let mut straddled = 0;
        loop {
            match pool.map(plus_one, 0..8) {
                Ok(done) => break assert_eq!(done, (1..9).collect::<Vec<_>>(), "{method:?}: room again"),
                Err(multiproc::Error::Task(TaskError::Panicked(info)))
                    if info.message.contains("cannot start a worker") && straddled < 3 =>
                {
                    straddled += 1
                }
                Err(e) => panic!("{method:?}: room again, after {straddled} straddling starts: {e}"),
            }
        }
        // Both are started again, but maybe not by the same tick: one start may straddle
        // the lift of the limit and fail, the map then done on the other; the next tick
        // starts it.
        let both = || pool.pids().len() == 2;
        assert!(common::eventually(Duration::from_secs(30), both), "{method:?}: both workers back");
        assert!(pool.pids().iter().all(|p| !workers.contains(p)), "{method:?}");
        pool.close();
        pool.join().unwrap();
    }
    println!("INNER-DONE");
}

#[test]
fn out_of_processes_every_start_fails_typed_and_leaves_nothing() {
    if !is_root() {
        println!("skipped: a pids cgroup of our own needs root");
        return;
    }
    let _w = common::watchdog(Duration::from_secs(600));
    let cgroup = format!("{PIDS_ROOT}/multiproc-test-{}", std::process::id());
    if std::fs::create_dir(&cgroup).is_err() {
        println!("skipped: cannot make a pids cgroup under {PIDS_ROOT}");
        return;
    }
    // Moved into the cgroup before it runs: every process of its family is in it, the
    // fork server included.
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .args(["-c", r#"echo $$ > "$CG/cgroup.procs" && exec "$0" "$@""#])
        .arg(&exe)
        .args(["few_pids_inner", "--exact", "--nocapture", "--test-threads=1"])
        .env("CG", &cgroup)
        .env(FEW_PIDS_INNER, &cgroup)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let removed = common::eventually(Duration::from_secs(10), || std::fs::remove_dir(&cgroup).is_ok());
    assert!(
        out.status.success() && stdout.contains("INNER-DONE"),
        "{:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(removed, "the cgroup empties: nothing of the family is left");
}

const CLOSED_IMAP_INNER: &str = "MULTIPROC_TEST_CLOSED_IMAP_NO_ROOM";

#[test]
fn a_closed_pools_imap_whose_last_worker_dies_with_no_room_inner() {
    let Some(cgroup) = std::env::var_os(CLOSED_IMAP_INNER) else { return };
    let _w = common::watchdog(Duration::from_secs(240));
    let cgroup = std::path::PathBuf::from(cgroup);
    let pids_max = |max: Option<u64>| {
        let value = max.map_or("max".to_string(), |n| n.to_string());
        std::fs::write(cgroup.join("pids.max"), value).unwrap();
    };
    // No room for any new process or thread of the family: a bound of 0, not the count
    // less one. The count at the write included zombies and threads about to go, whose end
    // made room for a replacement worker under load (ci91: the pool's pids never emptied).
    // Nothing here starts a thread while the room is 0: the readers and joiners are
    // started before.
    let no_room = || pids_max(Some(0));
    for method in common::METHODS {
        let pool = Pool::builder().processes(1).start_method(method).build().unwrap();
        let options = multiproc::MapOptions::new().chunksize(1).lookahead(1);
        let mut items = pool.imap_with(plus_one, 0..20u64, options).unwrap();
        assert_eq!(items.next().unwrap().unwrap(), 1, "{method:?}");
        // The `imap` lives on after the `close`; its only worker dies with no room for a
        // replacement.
        pool.close();
        let pid = pool.pids()[0];
        no_room();
        // SAFETY (test): killing our own pool's worker.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        assert!(common::eventually(Duration::from_secs(30), || pool.pids().is_empty()), "{method:?}");
        // Some rounds of the pool thread with no room (not a measure: only time to fail
        // the starts).
        std::thread::sleep(Duration::from_secs(1));
        pids_max(None);
        let back = common::eventually(Duration::from_secs(30), || pool.pids().len() == 1);
        println!("{method:?}: a worker back once there is room: {back} ({:?})", pool.pids());
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let rest: Vec<_> = items.map(|r| r.map_err(|e| e.to_string())).collect();
            let _ = tx.send(rest);
        });
        let Ok(rest) = rx.recv_timeout(Duration::from_secs(60)) else {
            println!("{method:?}: HANG: the imap gave nothing in 60 s with room again; pids {:?}", pool.pids());
            pool.terminate();
            let ended = rx.recv_timeout(Duration::from_secs(30));
            println!("{method:?}: after terminate: {ended:?}");
            panic!("{method:?}: the imap of a closed pool waited for ever once its worker died with no room");
        };
        reader.join().unwrap();
        println!("{method:?}: the imap ended with {} items: {rest:?}", rest.len());
        assert!(back, "{method:?}: no worker came back once there was room");
        assert_eq!(rest.len(), 19, "{method:?}: {rest:?}");
        for (i, got) in rest.iter().enumerate() {
            match got {
                Ok(v) => assert_eq!(*v, i as u64 + 2, "{method:?}: item {} is its own value", i + 1),
                // A chunk queued while no worker could start fails typed.
                Err(e) => assert!(e.contains("cannot start a worker"), "{method:?}: item {}: {e}", i + 1),
            }
        }
        assert!(rest.last().unwrap().is_ok(), "{method:?}: with room again the imap works: {rest:?}");
        pool.join().unwrap();
        assert!(pool.pids().is_empty(), "{method:?}");

        // `join` while no worker can start, a chunk of the `imap` queued after the pool
        // thread's last look: the thread ends (joining), and `join` fails the chunk rather
        // than leave it unrun, its `imap` waiting for ever.
        let pool = Pool::builder().processes(1).start_method(method).build().unwrap();
        let options = multiproc::MapOptions::new().chunksize(1).lookahead(1);
        let mut items = pool.imap_with(plus_one, 0..20u64, options).unwrap();
        assert_eq!(items.next().unwrap().unwrap(), 1, "{method:?}");
        pool.close();
        let (ended, rest) = std::thread::scope(|s| {
            // Threads count in the cgroup: the reader and the joiner are started before
            // there is no room, and wait to be told.
            let (go_read, read) = std::sync::mpsc::channel::<()>();
            let (go_join, join) = std::sync::mpsc::channel::<()>();
            let (tx, rx) = std::sync::mpsc::channel();
            s.spawn(move || {
                if read.recv().is_ok() {
                    let rest: Vec<_> = items.map(|r| r.map_err(|e| e.to_string())).collect();
                    let _ = tx.send(rest);
                }
            });
            let pool = &pool;
            let joiner = s.spawn(move || join.recv().ok().map(|()| pool.join()));
            let pid = pool.pids()[0];
            no_room();
            // SAFETY (test): killing our own pool's worker.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            assert!(common::eventually(Duration::from_secs(30), || pool.pids().is_empty()), "{method:?}");
            // The pool thread held after a round, before it looks whether to end.
            multiproc::__private::crash_at("hold:pool.thread.looked");
            let held = common::eventually(Duration::from_secs(30), || multiproc::__private::crash_holding() >= 1);
            assert!(held, "{method:?}");
            // Time for the reader to take what failed and its feeder to queue the next
            // chunk, which nothing fails while the pool thread is held (not a measure).
            go_read.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(500));
            go_join.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(500));
            multiproc::__private::crash_disarm();
            let joined = joiner.join().unwrap().unwrap();
            let rest = rx.recv_timeout(Duration::from_secs(60));
            if rest.is_err() {
                println!("{method:?}: HANG: the imap gave nothing in 60 s after join ({joined:?})");
                pool.terminate();
            }
            (joined, rest)
        });
        println!("{method:?}: join with a chunk left: {ended:?}, the imap gave {rest:?}");
        ended.unwrap();
        let rest = rest.unwrap_or_else(|_| panic!("{method:?}: join left a chunk of the imap unrun"));
        assert!(
            rest.iter()
                .all(|r| r.as_ref().is_err_and(|e| e.contains("cannot start a worker") || e.contains("terminated"))),
            "{method:?}: {rest:?}"
        );
        pids_max(None);

        // The `imap`'s count ends as soon as its feeder finds its input empty, which with a
        // lookahead of 2 is right after its last chunk is queued, while that chunk waits:
        // with no worker and no room for one, the pool thread ended with the chunk pending,
        // and the reader, the thread that would `join`, waited for ever (review121 H1).
        let pool = Pool::builder().processes(1).start_method(method).build().unwrap();
        let options = multiproc::MapOptions::new().chunksize(1).lookahead(2);
        let mut items = pool.imap_with(plus_one, 0..3u64, options).unwrap();
        assert_eq!(items.next().unwrap().unwrap(), 1, "{method:?}");
        pool.close();
        // Started before there is no room (threads count in the cgroup), told when to read.
        let (go_read, read) = std::sync::mpsc::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            if read.recv().is_ok() {
                let rest: Vec<_> = items.map(|r| r.map_err(|e| e.to_string())).collect();
                let _ = tx.send(rest);
            }
        });
        let pid = pool.pids()[0];
        no_room();
        // SAFETY (test): killing our own pool's worker.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        assert!(common::eventually(Duration::from_secs(30), || pool.pids().is_empty()), "{method:?}");
        multiproc::__private::crash_at("hold:pool.thread.looked");
        let held = common::eventually(Duration::from_secs(30), || multiproc::__private::crash_holding() >= 1);
        assert!(held, "{method:?}");
        // The reader takes what failed, its feeder queues the last chunk and ends the
        // stream while the pool thread is held: the feeder held too, once uncounted, so that
        // the pool thread's next exit test comes after both for certain (review124 L2: a
        // 1 s sleep left the order to the reader's speed, and a slow reader let the old code
        // pass).
        multiproc::__private::crash_at("hold:pool.thread.looked,hold:pool.stream.ended");
        go_read.send(()).unwrap();
        let both = common::eventually(Duration::from_secs(30), || multiproc::__private::crash_holding() >= 2);
        multiproc::__private::crash_disarm();
        assert!(both, "{method:?}: the feeder never ended its stream while the pool thread was held");
        let rest = rx.recv_timeout(Duration::from_secs(60));
        println!("{method:?}: the last chunk of an ended imap: {rest:?} (pids {:?})", pool.pids());
        if rest.is_err() {
            println!("{method:?}: HANG: the last chunk waits, the pool thread gone, no join yet");
            pool.terminate();
            println!("{method:?}: after terminate: {:?}", rx.recv_timeout(Duration::from_secs(30)));
        }
        reader.join().unwrap();
        pids_max(None);
        pool.join().unwrap();
        let rest =
            rest.unwrap_or_else(|_| panic!("{method:?}: the closed pool's imap waited for ever on a pending chunk"));
        assert_eq!(rest.len(), 2, "{method:?}: {rest:?}");
        for (i, got) in rest.iter().enumerate() {
            // A value is its own item's; a chunk queued while no worker could start fails typed.
            if let Ok(v) = got {
                assert_eq!(*v, i as u64 + 2, "{method:?}: {rest:?}");
            }
        }
    }
    println!("INNER-DONE");
}

/// A pids cgroup of its own for one inner test, emptied and removed however the test ends
/// (its processes killed: a hang or a panic of the inner test or of this one leaves none).
struct PidsCgroup {
    path: std::path::PathBuf,
}

impl PidsCgroup {
    fn new(tag: &str) -> Option<Self> {
        let path = std::path::PathBuf::from(format!("{PIDS_ROOT}/multiproc-{tag}-{}", std::process::id()));
        std::fs::create_dir(&path).ok()?;
        Some(PidsCgroup { path })
    }

    /// Runs the inner test `name` in the cgroup with `env` naming it; kills the cgroup's
    /// processes past `limit`. Returns whether it passed and printed `INNER-DONE`, and what
    /// it wrote.
    fn run_inner(&self, name: &str, env: &str, limit: Duration) -> (bool, String) {
        let exe = std::env::current_exe().unwrap();
        let mut command = Command::new("sh");
        command
            .args(["-c", r#"echo $$ > "$CG/cgroup.procs" && exec "$0" "$@""#])
            .arg(&exe)
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env("CG", &self.path)
            .env(env, &self.path);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = tx.send(command.output());
        });
        let out = match rx.recv_timeout(limit) {
            Ok(out) => out,
            // Its family killed, the output ends; again, since a process forked between the
            // read of the cgroup's list and the kill survives it (review121 L2).
            Err(_) => loop {
                self.kill_all();
                if let Ok(out) = rx.recv_timeout(Duration::from_secs(1)) {
                    break out;
                }
            },
        };
        waiter.join().unwrap();
        let out = out.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let said = format!("{:?}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        (out.status.success() && stdout.contains("INNER-DONE"), said)
    }

    fn procs(&self) -> Vec<i32> {
        let procs = std::fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
        procs.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    fn kill_all(&self) {
        for pid in self.procs() {
            // SAFETY (test): killing a process of the test's own cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    /// Whether the cgroup was empty once the inner test ended (before any kill).
    fn empty(&self) -> bool {
        common::eventually(Duration::from_secs(10), || self.procs().is_empty())
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        let _ = common::eventually(Duration::from_secs(30), || {
            self.kill_all();
            std::fs::remove_dir(&self.path).is_ok()
        });
    }
}

#[test]
fn a_closed_pools_imap_goes_on_when_its_last_worker_dies_with_no_room_then_room_comes_back() {
    // review115 H1: the pool thread of the closed pool ended with its last worker, and the
    // `imap`'s next chunk waited for ever, even once there was room.
    if !is_root() {
        println!("skipped: a pids cgroup of our own needs root");
        return;
    }
    // Past the inner test's own and the kill below.
    let _w = common::watchdog(Duration::from_secs(420));
    let Some(cgroup) = PidsCgroup::new("closed-imap") else {
        println!("skipped: cannot make a pids cgroup under {PIDS_ROOT}");
        return;
    };
    let (passed, said) = cgroup.run_inner(
        "a_closed_pools_imap_whose_last_worker_dies_with_no_room_inner",
        CLOSED_IMAP_INNER,
        Duration::from_secs(300),
    );
    let empty = cgroup.empty();
    drop(cgroup);
    println!("{said}");
    assert!(passed, "{said}");
    assert!(empty, "the cgroup empties: nothing of the family is left\n{said}");
}

// ---------------------------------------------------------------------------------------
// Little memory
// ---------------------------------------------------------------------------------------

/// Lowers this process's `RLIMIT_AS` to what it maps now plus `room` bytes (the family
/// heap's sparse mapping counts: the limit is relative to it).
fn limit_address_space(room: u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let vm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let limit = libc::rlimit { rlim_cur: vm_kb * 1024 + room, rlim_max: libc::RLIM_INFINITY };
    // SAFETY (test): setrlimit with a valid pointer to an rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
}

/// Gets a message too large for the address space it left itself.
fn get_with_little_memory(queue: Queue<Vec<u8>>) -> usize {
    limit_address_space(16 << 20);
    queue.get().unwrap().len()
}

#[test]
fn a_child_without_memory_for_a_message_is_aborted_and_the_queue_goes_on() {
    // Rust's answer to a failed allocation is an abort: the child dies of SIGABRT while it
    // decodes. What the family promises: the parent sees that as a typed `JoinError`, the
    // message stays in the queue, and the queue, the heap and the other processes go on.
    let leaks = common::leak_check(LIMIT);
    for method in common::METHODS {
        let queue = Queue::<Vec<u8>>::new().unwrap();
        queue.put(vec![7u8; 64 << 20]).unwrap();
        let child = Process::new(get_with_little_memory, queue.clone()).start_method(method).start().unwrap();
        let ended = child.join();
        println!("{method:?}: {ended:?}");
        assert!(
            matches!(&ended, Err(multiproc::JoinError::Signaled { signal, .. }) if *signal == libc::SIGABRT),
            "{method:?}: {ended:?}"
        );
        // The queue goes on: the big message, if it is still there, then a small one.
        queue.put(vec![1, 2, 3]).unwrap();
        let mut got = queue.get_timeout(LIMIT).unwrap();
        // The child died before it took the message (the first allocation is the
        // message's buffer): it is still first in the queue, whole.
        assert_eq!(got.len(), 64 << 20, "{method:?}: the message given back");
        assert!(got.iter().all(|b| *b == 7), "{method:?}: the message given back whole");
        got = queue.get_timeout(LIMIT).unwrap();
        assert_eq!(got, [1, 2, 3], "{method:?}");
    }
    leaks.assert_no_leak();
}
