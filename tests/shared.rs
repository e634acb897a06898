//! Shared state: `Value`, `Array`, `RawValue`, `RawArray`, `SharedBytes` in the family's memory, and the
//! named `SharedMemory` and `ShareableList` in `/dev/shm`.
//!
//! Exactness under contention, derived `ShmSafe` structs, a lock holder killed, handles
//! through every start method, the bad names and sizes, Python's byte layout, and the
//! resource tracker cleaning up after a family killed with `kill -9`.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, pid_running, watchdog};
use multiproc::{
    Array, Event, Item, Lock, Process, ProcessHandle, RLock, RawArray, RawValue, ShareableList, ShareableListError,
    SharedBytes, SharedLock, SharedMemory, SharedMemoryError, ShmSafe, StartMethod, Value,
};

multiproc::test_support!();

const METHODS: [StartMethod; 2] = common::METHODS;
const LIMIT: Duration = Duration::from_secs(60);

fn kill_9<R>(child: ProcessHandle<R>) {
    child.kill().unwrap();
    assert_eq!(child.wait(), -9);
}

fn shm_exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

// ---------------------------------------------------------------------------------------
// Value

fn increment(args: (Value<i64>, u32)) {
    for _ in 0..args.1 {
        *args.0.lock() += 1;
    }
}

#[test]
fn locked_increments_of_a_value_from_several_processes_are_exact() {
    let _w = watchdog(LIMIT);
    let v = Value::new(0i64).unwrap();
    let children: Vec<_> = (0..4).map(|_| Process::new(increment, (v.clone(), 25_000)).start().unwrap()).collect();
    for child in children {
        child.join().unwrap();
    }
    assert_eq!(v.get(), 100_000);
}

fn hold_value_until_killed(args: (Value<i64>, Event)) {
    let mut guard = args.0.lock();
    *guard = 41;
    args.1.set();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_value_whose_lock_holder_is_killed_is_taken_over_and_says_so() {
    let _w = watchdog(LIMIT);
    let v = Value::new(0i64).unwrap();
    let held = Event::new().unwrap();
    let child = Process::new(hold_value_until_killed, (v.clone(), held.clone())).daemon(true).start().unwrap();
    assert!(held.wait_timeout(LIMIT));
    assert!(v.try_lock().is_none());
    assert!(v.try_lock().is_none(), "a failed try_lock leaves the holder's lock alone");
    assert!(v.lock_timeout(Duration::from_millis(20)).is_none());
    kill_9(child);
    let mut guard = v.lock();
    assert!(guard.owner_died());
    assert_eq!(*guard, 41, "what the dead holder wrote");
    *guard += 1;
    drop(guard);
    assert!(!v.lock().owner_died());
    assert_eq!(v.get(), 42);
}

// Values and arrays guarded by a lock of the user's (`Value(typecode, v, lock=l)`)

fn move_between(args: (Value<i64>, Value<i64>, Array<i64>, u32)) -> bool {
    let (from, to, log, rounds) = args;
    let mut consistent = true;
    for _ in 0..rounds {
        // One thread, one RLock, three guards of values that share it.
        let mut f = from.lock();
        let mut t = to.lock();
        let mut l = log.lock();
        consistent &= *f + *t == 1000 && l[0] == *t;
        *f -= 1;
        *t += 1;
        l[0] += 1;
    }
    consistent
}

#[test]
fn values_sharing_an_rlock_are_locked_together_across_processes() {
    let _w = watchdog(LIMIT);
    for method in METHODS {
        let lock = RLock::new().unwrap();
        let from = Value::with_lock(1000i64, lock.clone()).unwrap();
        let to = Value::with_lock(0i64, lock.clone()).unwrap();
        let log = Array::with_lock(&[0i64], lock.clone()).unwrap();
        let args = (from.clone(), to.clone(), log.clone(), 200);
        let children: Vec<_> =
            (0..2).map(|_| Process::new(move_between, args.clone()).start_method(method).start().unwrap()).collect();
        assert!(move_between(args.clone()), "{method:?}");
        for child in children {
            assert!(child.join().unwrap(), "{method:?}: every holder saw the three values agree");
        }
        assert_eq!((from.get(), to.get(), log.get(0)), (400, 600, 600), "{method:?}");
        assert!(!lock.locked());
    }
}

fn try_value(v: Value<i64>) -> bool {
    v.try_lock().is_some()
}

#[test]
fn a_value_made_with_a_lock_is_held_by_whoever_holds_that_lock() {
    let _w = watchdog(LIMIT);
    let lock = Lock::new().unwrap();
    let v = Value::with_lock(0i64, lock.clone()).unwrap();
    assert!(matches!(v.shared_lock(), Some(SharedLock::Lock(_))));
    let held = lock.acquire().unwrap();
    assert!(!Process::new(try_value, v.clone()).start().unwrap().join().unwrap());
    drop(held);
    assert!(Process::new(try_value, v.clone()).start().unwrap().join().unwrap());
    {
        let _g = v.lock();
        assert!(lock.locked(), "locking the value takes the user's lock");
    }
    assert!(!lock.locked());
}

#[test]
fn the_same_value_locked_twice_by_one_thread_through_an_rlock_is_refused() {
    let _w = watchdog(LIMIT);
    let lock = RLock::new().unwrap();
    let v = Value::with_lock(0i64, lock.clone()).unwrap();
    let first = v.lock();
    assert!(v.try_lock().is_none());
    assert!(v.lock_timeout(Duration::from_millis(10)).is_none());
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(v.lock())));
    assert!(again.is_err(), "a second guard of the same value on one thread would alias the first");
    drop(first);
    assert!(!lock.locked(), "the refused attempts gave their levels back");
    *v.lock() += 1;
    assert_eq!(v.get(), 1);
}

/// A `ValueGuard` is `Send`: taken on a thread that then ends, it lives on elsewhere. The
/// value's own access must not be taken over from that ended thread as from a dead holder
/// (two guards would be two `&mut` to one value). With a `Lock`, which any thread may
/// release, only the value's access stands between the two.
#[test]
fn a_value_guard_that_outlives_the_thread_that_took_it_is_never_granted_twice() {
    let _w = watchdog(LIMIT);
    let locks: [SharedLock; 2] = [RLock::new().unwrap().into(), Lock::new().unwrap().into()];
    for lock in locks {
        let v = Value::with_lock(0i64, lock.clone()).unwrap();
        std::thread::scope(|s| {
            let mut first = s.spawn(|| v.lock()).join().unwrap();
            *first = 1;
            if let SharedLock::Lock(lock) = &lock {
                lock.release().unwrap(); // Python's Lock: any thread may release it
            }
            let second = s
                .spawn(|| {
                    v.lock_timeout(Duration::from_millis(500)).map(|mut g| {
                        *g = 2;
                        g.owner_died()
                    })
                })
                .join()
                .unwrap();
            assert_eq!(second, None, "{lock:?}: a second guard while the first lives; the first now reads {}", *first);
            assert_eq!(*first, 1);
        });
        assert_eq!(v.get(), 1);
        // An `ArrayGuard` is not `Send`, but the slice of a leaked one is.
        let a = Array::with_lock(&[0i64; 4], lock.clone()).unwrap();
        std::thread::scope(|s| {
            let first: &mut [i64] = s.spawn(|| &mut **Box::leak(Box::new(a.lock()))).join().unwrap();
            first[0] = 1;
            if let SharedLock::Lock(lock) = &lock {
                lock.release().unwrap();
            }
            let second = s
                .spawn(|| {
                    a.lock_timeout(Duration::from_millis(500)).map(|mut g| {
                        g[0] = 2;
                        g.owner_died()
                    })
                })
                .join()
                .unwrap();
            assert_eq!(second, None, "{lock:?}: a second array guard while the first lives; it now reads {}", first[0]);
            assert_eq!(first[0], 1);
        });
    }
}

fn hold_user_locked_value_until_killed(args: (Value<i64>, Event)) {
    let mut guard = args.0.lock();
    *guard = 41;
    args.1.set();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_value_whose_shared_lock_holder_is_killed_is_taken_over_and_says_so() {
    let _w = watchdog(LIMIT);
    let locks: [SharedLock; 2] = [Lock::new().unwrap().into(), RLock::new().unwrap().into()];
    for lock in locks {
        let v = Value::with_lock(0i64, lock.clone()).unwrap();
        let other = Value::with_lock(5i64, lock.clone()).unwrap();
        let held = Event::new().unwrap();
        let child =
            Process::new(hold_user_locked_value_until_killed, (v.clone(), held.clone())).daemon(true).start().unwrap();
        assert!(held.wait_timeout(LIMIT));
        assert!(other.try_lock().is_none(), "{lock:?}: the other value shares the held lock");
        kill_9(child);
        let mut guard = v.lock();
        assert!(guard.owner_died(), "{lock:?}");
        assert_eq!(*guard, 41);
        *guard += 1;
        drop(guard);
        assert!(!v.lock().owner_died());
        assert!(!other.lock().owner_died());
        assert_eq!((v.get(), other.get()), (42, 5));
    }
}

fn hold_shared_lock_until_killed(args: (SharedLock, Event)) {
    let until_killed = || {
        args.1.set();
        std::thread::sleep(Duration::from_secs(600));
    };
    match &args.0 {
        SharedLock::Lock(lock) => {
            let _held = lock.acquire().unwrap();
            until_killed();
        }
        SharedLock::RLock(lock) => {
            let _held = lock.acquire().unwrap();
            until_killed();
        }
    }
}

/// Printing a value or an array (`{:?}`, as a log line does) took a dead holder's lock over
/// and let it go at once: the next `lock()` saw a clean lock, `owner_died` false, though the
/// holder died part-way through its update (aud103 M1). `Debug` now takes only a free lock,
/// and shows a dead holder's as `<locked>`, leaving the takeover and its `owner_died` to the
/// next lock. The same for a lock of the user's held alone (a `Lock`'s or an `RLock`'s own
/// guard) by a process killed: printing one of its values took it over.
#[test]
fn printing_a_value_or_an_array_leaves_a_dead_holder_s_lock_to_the_next_lock() {
    let _w = watchdog(LIMIT);
    let v = Value::new(0i64).unwrap();
    let a = Array::<u8>::new(4).unwrap();
    let held = Event::new().unwrap();
    let child = Process::new(hold_value_until_killed, (v.clone(), held.clone())).daemon(true).start().unwrap();
    assert!(held.wait_timeout(LIMIT));
    kill_9(child);
    held.clear();
    let child = Process::new(hold_array_until_killed, (a.clone(), held.clone())).daemon(true).start().unwrap();
    assert!(held.wait_timeout(LIMIT));
    kill_9(child);
    assert_eq!((format!("{v:?}"), format!("{a:?}")), ("Value(<locked>)".to_string(), "[<locked>]".to_string()));
    let (gv, ga) = (v.lock(), a.lock());
    assert_eq!((gv.owner_died(), ga.owner_died()), (true, true), "after {v:?} and {a:?} were printed");
    drop((gv, ga));
    assert_eq!((format!("{v:?}"), format!("{a:?}")), ("Value(41)".to_string(), "[9, 0, 0, 0]".to_string()));
    let locks: [SharedLock; 2] = [Lock::new().unwrap().into(), RLock::new().unwrap().into()];
    for lock in locks {
        let v = Value::with_lock(3i64, lock.clone()).unwrap();
        let a = Array::with_lock(&[1u8], lock.clone()).unwrap();
        held.clear();
        let child =
            Process::new(hold_shared_lock_until_killed, (lock.clone(), held.clone())).daemon(true).start().unwrap();
        assert!(held.wait_timeout(LIMIT));
        kill_9(child);
        assert_eq!((format!("{v:?}"), format!("{a:?}")), ("Value(<locked>)".to_string(), "[<locked>]".to_string()));
        assert!(v.lock().owner_died(), "{lock:?}: after {v:?} and {a:?} were printed");
        assert_eq!((format!("{v:?}"), format!("{a:?}")), ("Value(3)".to_string(), "[1]".to_string()));
        assert!(!a.lock().owner_died(), "{lock:?}");
    }
}

/// No wait, or waits shorter than the first check of the holder: each still takes a dead
/// holder's lock over.
const SHORT_TIMEOUTS: [Option<Duration>; 4] =
    [None, Some(Duration::ZERO), Some(Duration::from_millis(1)), Some(Duration::from_millis(2))];

#[test]
fn try_lock_and_short_lock_timeouts_take_a_value_over_from_a_dead_holder() {
    let _w = watchdog(LIMIT);
    for timeout in SHORT_TIMEOUTS {
        let v = Value::new(0i64).unwrap();
        let held = Event::new().unwrap();
        let child = Process::new(hold_value_until_killed, (v.clone(), held.clone())).daemon(true).start().unwrap();
        assert!(held.wait_timeout(LIMIT));
        kill_9(child);
        let guard = match timeout {
            None => v.try_lock(),
            Some(t) => v.lock_timeout(t),
        };
        let guard = guard.unwrap_or_else(|| panic!("timeout {timeout:?}: the dead holder's lock is taken over"));
        assert!(guard.owner_died(), "timeout {timeout:?}");
        assert_eq!(*guard, 41);
        drop(guard);
        assert!(!v.try_lock().expect("free").owner_died());
    }
}

#[test]
fn try_lock_and_short_lock_timeouts_take_an_array_over_from_a_dead_holder() {
    let _w = watchdog(LIMIT);
    for timeout in SHORT_TIMEOUTS {
        let a = Array::<u8>::new(2).unwrap();
        let held = Event::new().unwrap();
        let child = Process::new(hold_array_until_killed, (a.clone(), held.clone())).daemon(true).start().unwrap();
        assert!(held.wait_timeout(LIMIT));
        kill_9(child);
        let guard = match timeout {
            None => a.try_lock(),
            Some(t) => a.lock_timeout(t),
        };
        let guard = guard.unwrap_or_else(|| panic!("timeout {timeout:?}: the dead holder's lock is taken over"));
        assert!(guard.owner_died(), "timeout {timeout:?}");
        assert_eq!(guard[0], 9);
        drop(guard);
        assert!(!a.try_lock().expect("free").owner_died());
    }
}

/// `get`, `set`, `to_vec` and `copy_from_slice` are locks, as in Python: after a holder
/// was killed mid-update each takes its lock over, does its work and lets it go, and the
/// next `lock()` sees a clean lock (`owner_died` false). Their docs say so, and that
/// `lock()` and its guard's `owner_died` are the way to be told (review137 L1). Each call
/// returns, never waits for the dead holder.
#[test]
fn get_set_and_to_vec_take_a_dead_holder_s_lock_over_silently_as_documented() {
    let _w = watchdog(LIMIT);
    let v = Value::new(0i64).unwrap();
    let a = Array::<u8>::new(4).unwrap();
    let held = Event::new().unwrap();
    let kill_a_holder_of = |value: bool| {
        held.clear();
        let child = if value {
            Process::new(hold_value_until_killed, (v.clone(), held.clone())).daemon(true).start().unwrap()
        } else {
            Process::new(hold_array_until_killed, (a.clone(), held.clone())).daemon(true).start().unwrap()
        };
        assert!(held.wait_timeout(LIMIT));
        kill_9(child);
    };
    kill_a_holder_of(true);
    assert_eq!(v.get(), 41, "what the dead holder wrote");
    assert!(!v.lock().owner_died(), "Value::get");
    kill_a_holder_of(true);
    v.set(5);
    assert!(!v.lock().owner_died(), "Value::set");
    kill_a_holder_of(false);
    assert_eq!(a.to_vec(), [9, 0, 0, 0], "what the dead holder wrote");
    assert!(!a.lock().owner_died(), "Array::to_vec");
    kill_a_holder_of(false);
    a.set(1, 7);
    assert!(!a.lock().owner_died(), "Array::set");
}

#[derive(Debug, Clone, Copy, PartialEq, ShmSafe)]
#[repr(C)]
struct Particle {
    x: f64,
    y: f64,
    hits: u32,
    alive: bool,
}

fn move_particles(args: (Value<Particle>, Array<Particle>)) {
    let (one, many) = args;
    {
        let mut p = one.lock();
        p.x += 1.0;
        p.hits += 1;
    }
    for p in many.lock().iter_mut() {
        p.y = -p.y;
        p.alive = !p.alive;
    }
}

#[test]
fn a_derived_shm_safe_struct_lives_in_a_value_and_an_array() {
    let _w = watchdog(LIMIT);
    let start = Particle { x: 1.0, y: 2.0, hits: 0, alive: true };
    let one = Value::new(start).unwrap();
    let many = Array::from_slice(&[start, Particle { y: -5.0, ..start }]).unwrap();
    Process::new(move_particles, (one.clone(), many.clone())).start().unwrap().join().unwrap();
    assert_eq!(one.get(), Particle { x: 2.0, hits: 1, ..start });
    assert_eq!(
        many.to_vec(),
        [Particle { y: -2.0, alive: false, ..start }, Particle { y: 5.0, alive: false, ..start }]
    );
    let raw = RawValue::new(start).unwrap();
    raw.set(Particle { hits: 7, ..start });
    assert_eq!(raw.get().hits, 7);
}

// ---------------------------------------------------------------------------------------
// Array, RawArray

#[test]
fn an_array_starts_zeroed_or_from_a_slice_and_is_read_and_written_under_its_lock() {
    let zeros = Array::<i32>::new(5).unwrap();
    assert_eq!(zeros.len(), 5);
    assert!(!zeros.is_empty());
    assert_eq!(zeros.to_vec(), [0; 5]);
    let a = Array::from_slice(&[3, 1, 2]).unwrap();
    assert_eq!(a.get(0), 3);
    a.set(0, 30);
    a.lock().sort();
    assert_eq!(a.to_vec(), [1, 2, 30]);
    a.copy_from_slice(&[7, 8, 9]);
    assert_eq!(format!("{a:?}"), "[7, 8, 9]");
    assert!(Array::<u8>::new(0).unwrap().is_empty());
    let guard = a.lock();
    assert!(a.try_lock().is_none());
    assert!(a.lock_timeout(Duration::from_millis(20)).is_none());
    drop(guard);
    assert!(a.try_lock().is_some());
}

#[test]
#[should_panic(expected = "out of bounds")]
fn an_array_index_out_of_bounds_panics() {
    Array::<u16>::new(2).unwrap().get(2);
}

fn negate(a: Array<i32>) {
    for x in a.lock().iter_mut() {
        *x = -*x;
    }
}

fn add_to_each(args: (Array<u64>, u32)) {
    for _ in 0..args.1 {
        for x in args.0.lock().iter_mut() {
            *x += 1;
        }
    }
}

#[test]
fn an_array_travels_with_every_start_method_and_stays_exact_under_contention() {
    let _w = watchdog(LIMIT);
    for method in METHODS {
        let a = Array::from_slice(&(0..10).collect::<Vec<i32>>()).unwrap();
        Process::new(negate, a.clone()).start_method(method).start().unwrap().join().unwrap();
        assert_eq!(a.to_vec(), (0..10).map(|x| -x).collect::<Vec<_>>(), "{method:?}");
    }
    let counts = Array::<u64>::new(16).unwrap();
    let children: Vec<_> =
        (0..3).map(|_| Process::new(add_to_each, (counts.clone(), 5_000)).start().unwrap()).collect();
    for child in children {
        child.join().unwrap();
    }
    assert_eq!(counts.to_vec(), [15_000; 16]);
}

fn hold_array_until_killed(args: (Array<u8>, Event)) {
    let mut guard = args.0.lock();
    guard[0] = 9;
    args.1.set();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn an_array_whose_lock_holder_is_killed_is_taken_over_and_says_so() {
    let _w = watchdog(LIMIT);
    let a = Array::<u8>::new(4).unwrap();
    let held = Event::new().unwrap();
    let child = Process::new(hold_array_until_killed, (a.clone(), held.clone())).daemon(true).start().unwrap();
    assert!(held.wait_timeout(LIMIT));
    kill_9(child);
    let guard = a.lock();
    assert!(guard.owner_died());
    assert_eq!(&*guard, &[9, 0, 0, 0]);
}

fn sum_raw(a: RawArray<f64>) -> f64 {
    // SAFETY: the parent finished writing before it started this process.
    unsafe { a.as_slice() }.iter().sum()
}

fn fill_raw(args: (RawArray<u32>, RawValue<u32>)) {
    for i in 0..args.0.len() {
        args.0.set(i, i as u32 * 2);
    }
    args.1.set(1);
}

#[test]
fn raw_values_and_arrays_are_shared_without_a_lock() {
    let _w = watchdog(LIMIT);
    let data = RawArray::<f64>::new(1000).unwrap();
    // SAFETY: nobody else has the array yet.
    unsafe { data.as_mut_slice() }.fill(0.5);
    for method in METHODS {
        assert_eq!(Process::new(sum_raw, data.clone()).start_method(method).start().unwrap().join().unwrap(), 500.0);
    }
    let filled = RawArray::<u32>::new(8).unwrap();
    let done = RawValue::new(0u32).unwrap();
    Process::new(fill_raw, (filled.clone(), done.clone())).start().unwrap().join().unwrap();
    assert_eq!(done.get(), 1);
    assert_eq!(filled.to_vec(), [0, 2, 4, 6, 8, 10, 12, 14]);
    let copy = RawArray::from_slice(&[1u8, 2, 3]).unwrap();
    copy.copy_from_slice(&[4, 5, 6]);
    assert_eq!(copy.get(2), 6);
    assert_eq!(format!("{copy:?}"), "[4, 5, 6]");
}

// ---------------------------------------------------------------------------------------
// SharedBytes

/// A length no heap can hold is `HeapFull`, however close to `usize::MAX`: the object's
/// length (header + bytes) and its rounding to whole pages must not wrap around to a small
/// block that `fill` would then be given as a slice of `len` bytes.
#[test]
fn shared_bytes_of_a_length_no_heap_holds_are_heap_full() {
    let _w = watchdog(LIMIT);
    for len in [usize::MAX, usize::MAX - 63, usize::MAX - 200, usize::MAX - 5000, 1 << 63, 1 << 50] {
        let made = SharedBytes::with_len(len, |buf| panic!("fill was given {} bytes", buf.len()));
        assert!(matches!(made, Err(multiproc::Error::HeapFull(_))), "{len}: {:?}", made.map(|b| b.len()));
    }
    let small = SharedBytes::with_len(3, |buf| buf.copy_from_slice(b"abc")).unwrap();
    assert_eq!(&small[..], b"abc");
}

// ---------------------------------------------------------------------------------------
// SharedMemory

fn write_greeting(shm: SharedMemory) {
    shm.write_at(3, b"hello");
}

fn open_and_read(name: String) -> Vec<u8> {
    SharedMemory::open(&name).unwrap().to_vec()
}

#[test]
fn a_named_segment_is_shared_by_name_and_by_handle_with_every_start_method() {
    let _w = watchdog(LIMIT);
    for method in METHODS {
        let shm = SharedMemory::create(16).unwrap();
        assert_eq!(shm.size(), 16);
        assert!(shm.name().starts_with("mp-"));
        assert!(shm_exists(shm.name()));
        Process::new(write_greeting, shm.clone_handle().unwrap()).start_method(method).start().unwrap().join().unwrap();
        let mut word = [0u8; 5];
        shm.read_at(3, &mut word);
        assert_eq!(&word, b"hello", "{method:?}");
        let seen = Process::new(open_and_read, shm.name().to_string()).start_method(method).start().unwrap();
        assert_eq!(&seen.join().unwrap()[3..8], b"hello");
        shm.unlink().unwrap();
        assert!(!shm_exists(shm.name()));
        shm.write_at(0, b"still mapped"); // an unlinked segment stays usable by its holders
        shm.close();
    }
}

#[test]
fn bad_names_and_sizes_are_typed_errors() {
    let name = format!("mp-test-{}", std::process::id());
    assert!(matches!(SharedMemory::open(&name), Err(SharedMemoryError::NotFound(n)) if n == name));
    let shm = SharedMemory::builder().name(format!("/{name}")).size(100).create().unwrap();
    assert_eq!(shm.name(), name, "the leading slash is optional");
    assert!(matches!(SharedMemory::builder().name(&name).size(100).create(), Err(SharedMemoryError::AlreadyExists(_))));
    match SharedMemory::builder().name(&name).size(64).open() {
        Err(SharedMemoryError::SizeMismatch { expected: 64, actual: 100, .. }) => {}
        other => panic!("{other:?}"),
    }
    let same = SharedMemory::builder().name(&name).size(100).open().unwrap();
    assert_eq!(same.size(), 100);
    assert!(matches!(SharedMemory::create(0), Err(SharedMemoryError::ZeroSize)));
    for bad in ["", "a/b", "x\ny", ".."] {
        assert!(
            matches!(SharedMemory::builder().name(bad).size(1).create(), Err(SharedMemoryError::InvalidName { .. })),
            "{bad:?}"
        );
    }
    assert!(matches!(SharedMemory::open(&"n".repeat(300)), Err(SharedMemoryError::InvalidName { .. })));
    shm.unlink().unwrap();
    assert!(matches!(shm.unlink(), Err(SharedMemoryError::NotFound(_))));
    assert!(matches!(SharedMemory::open(&name), Err(SharedMemoryError::NotFound(_))));
}

/// `unlink` removes its own segment, never one another program made again under the name
/// since: a stale handle's `unlink` (its segment unlinked through another handle, the name
/// then taken by another program) removed the other program's file, as Python's does
/// (aud103 L2). It says `NotFound` now, and the other file stays.
#[test]
fn a_stale_handles_unlink_leaves_a_segment_made_again_under_its_name() {
    let name = format!("mp-stale-unlink-{}", std::process::id());
    let ours = SharedMemory::builder().name(&name).size(8).create().unwrap();
    SharedMemory::open(&name).unwrap().unlink().unwrap();
    // Another program takes the name (a plain file in /dev/shm, as `shm_open` makes).
    std::fs::write(format!("/dev/shm/{name}"), [1u8; 16]).unwrap();
    // Nor is a clone of it that other segment (review154: it opened by name; review160
    // L3: it maps the handle's own file now).
    let cloned = ours.clone_handle().map(|other| other.size());
    let said = ours.unlink();
    let still_there = shm_exists(&name);
    let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
    println!(
        "the stale handle's clone said {cloned:?}, its unlink {said:?}; the other file still there: {still_there}"
    );
    assert!(still_there, "a stale handle's unlink removed another program's segment");
    assert!(matches!(said, Err(SharedMemoryError::NotFound(_))), "{said:?}");
    // Its clone maps its own file, unlinked as it is, not the other program's.
    assert_eq!(cloned.unwrap(), 8, "a stale handle's clone is of its own segment");
}

/// Makes the FIFO `path`, as any program may in the world-writable `/dev/shm`.
fn mkfifo(path: &str) {
    let made = std::ffi::CString::new(path).unwrap();
    // SAFETY (test): a plain `mkfifo` of a path this test owns.
    assert_eq!(unsafe { libc::mkfifo(made.as_ptr(), 0o600) }, 0, "{}", std::io::Error::last_os_error());
}

/// `clone_handle` maps the handle's own file at the handle's size, whatever its name names
/// now (review160 L3: it opened the name, so a segment cut shorter was mapped short, and a
/// stale handle whose name was made again empty or as a FIFO said `Empty`, where its docs
/// said `NotFound`). A clone of a handle works as the handle does: after an unlink, and on
/// a segment cut shorter (`Truncated` past the cut, as at the handle).
#[test]
fn a_clone_handle_maps_its_handles_own_file_at_its_size() {
    let name = format!("mp-clone-own-{}", std::process::id());
    let path = format!("/dev/shm/{name}");
    let ours = SharedMemory::builder().name(&name).size(4096).track(false).create().unwrap();
    ours.write_at(0, b"ours");
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(100).unwrap();
    let cut = ours.clone_handle().map(|clone| clone.size());
    ours.unlink().unwrap();
    // The name made again by another program: empty, then a FIFO.
    std::fs::write(&path, []).unwrap();
    let empty = ours.clone_handle().map(|clone| {
        clone.write_at(0, b"CL");
        clone.size()
    });
    std::fs::remove_file(&path).unwrap();
    mkfifo(&path);
    let fifo = ours.clone_handle().map(|clone| clone.size());
    std::fs::remove_file(&path).unwrap();
    let mut first = [0u8; 4];
    ours.read_at(0, &mut first);
    println!(
        "clone of a segment cut to 100 bytes: {cut:?}; of a stale handle, the name made again empty: {empty:?}, \
         as a FIFO: {fifo:?}; the handle's first bytes: {:?}",
        String::from_utf8_lossy(&first)
    );
    assert_eq!(cut.unwrap(), 4096, "a clone of a segment cut shorter is mapped short");
    assert_eq!(empty.unwrap(), 4096, "a stale handle's clone, its name made again empty");
    assert_eq!(fifo.unwrap(), 4096, "a stale handle's clone, its name made again as a FIFO");
    assert_eq!(&first, b"CLrs", "the clone's write is not in the handle's segment");
}

/// A handle in flight names its segment by file, not by size: a segment another program
/// grew meanwhile is opened whole at the receiver (it failed `SizeMismatch` and the
/// message was lost as an error; Python opens it at its size), and a name made again
/// since, even at the same size, is refused rather than silently taken for the sender's
/// (aud103 L3).
#[test]
fn a_handle_in_flight_names_its_segment_by_file_not_by_size() {
    let name = format!("mp-in-flight-{}", std::process::id());
    let path = format!("/dev/shm/{name}");
    let (tx, rx) = multiproc::Pipe::<SharedMemory>::new().unwrap();
    let shm = SharedMemory::builder().name(&name).size(4096).create().unwrap();
    shm.write_at(0, b"sent");
    tx.send(&shm).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(8192).unwrap();
    let grown = rx.recv().map(|got| (got.size(), got.to_vec()[..4].to_vec()));
    // The name made again, at the size the sender's handle has: another file.
    tx.send(&shm).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, [0u8; 4096]).unwrap();
    let again = rx.recv().map(|got| got.size());
    let _ = std::fs::remove_file(&path);
    // Cut shorter than the sender's handle (review154 L1: opened at its new size, an offset
    // valid at the sender panicked at the receiver as out of bounds).
    let shm = SharedMemory::builder().name(&name).size(4096).create().unwrap();
    tx.send(&shm).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(100).unwrap();
    let cut = rx.recv().map(|got| got.size());
    // Cut to 0 bytes (review160 L3: said "it has not been given its size yet").
    tx.send(&shm).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
    let emptied = rx.recv().map(|got| got.size());
    let _ = std::fs::remove_file(&path);
    // The name made again empty, then as a FIFO: another file, said as such (review160 L3:
    // "it has not been given its size yet").
    tx.send(&shm).unwrap();
    std::fs::write(&path, []).unwrap();
    let again_empty = rx.recv().map(|got| got.size());
    std::fs::remove_file(&path).unwrap();
    tx.send(&shm).unwrap();
    mkfifo(&path);
    let again_fifo = rx.recv().map(|got| got.size());
    std::fs::remove_file(&path).unwrap();
    let err = |got: &Result<usize, multiproc::RecvError>| match got {
        Ok(size) => format!("Ok({size})"),
        Err(e) => e.to_string(),
    };
    println!(
        "grown: {grown:?}; made again: {again:?}; cut: {cut:?}; cut to 0: {}; made again empty: {}; \
         as a FIFO: {}",
        err(&emptied),
        err(&again_empty),
        err(&again_fifo)
    );
    assert_eq!(grown.unwrap(), (8192, b"sent".to_vec()), "a grown segment is opened whole");
    let said =
        |got: &Result<usize, multiproc::RecvError>, what: &str| matches!(got, Err(e) if e.to_string().contains(what));
    assert!(said(&again, "made again"), "a name made again was taken for the sender's segment: {again:?}");
    assert!(said(&cut, "was cut to 100 bytes"), "a segment cut shorter was taken whole: {cut:?}");
    assert!(said(&emptied, "was cut to 0 bytes"), "a segment cut to 0 bytes: {emptied:?}");
    assert!(said(&again_empty, "made again"), "a name made again empty: {again_empty:?}");
    assert!(said(&again_fifo, "made again"), "a name made again as a FIFO: {again_fifo:?}");
}

/// Names of 251 to 255 bytes are valid in `/dev/shm` (`NAME_MAX` is 255), and Python makes
/// and opens them; they were refused as `InvalidName` ("longer than 250 bytes"), so a
/// segment another program made under such a name could not be opened here (aud103 L1).
#[test]
fn a_name_of_up_to_255_bytes_is_made_and_opened_and_a_longer_one_refused() {
    let stem = format!("mp-aud-{}-", std::process::id());
    let foreign = format!("{stem}{}", "f".repeat(255 - stem.len()));
    std::fs::write(format!("/dev/shm/{foreign}"), [7u8; 8]).unwrap();
    let opened = SharedMemory::open(&foreign).map(|shm| shm.to_vec());
    std::fs::remove_file(format!("/dev/shm/{foreign}")).unwrap();
    assert_eq!(opened.unwrap(), [7; 8], "a 255-byte name another program made");
    let ours = format!("{stem}{}", "o".repeat(255 - stem.len()));
    let made = SharedMemory::builder().name(&ours).size(8).create().unwrap();
    assert!(shm_exists(&ours));
    SharedMemory::open(&ours).unwrap().unlink().unwrap();
    drop(made);
    let longer = format!("{ours}x");
    assert!(matches!(SharedMemory::open(&longer), Err(SharedMemoryError::InvalidName { .. })));
    assert!(matches!(
        SharedMemory::builder().name(&longer).size(8).create(),
        Err(SharedMemoryError::InvalidName { .. })
    ));
}

/// Leading slashes are all optional, as with glibc's `shm_open` (Python's
/// `SharedMemory(name="//x", create=True)` makes `/dev/shm/x`, and `"///x"` opens it):
/// `//x` was refused as "it contains '/'" (review137 L3), and `//` is empty, as `/` is.
#[test]
fn a_name_with_several_leading_slashes_names_the_segment_without_them() {
    let name = format!("mp-slashes-{}", std::process::id());
    let made = SharedMemory::builder().name(format!("//{name}")).size(8).create();
    let opened = SharedMemory::open(&format!("///{name}")).map(|shm| shm.name().to_string());
    let there = shm_exists(&name);
    let _ = SharedMemory::open(&name).map(|shm| shm.unlink());
    println!("create \"//{name}\": {made:?}; open \"///{name}\": {opened:?}; in /dev/shm: {there}");
    assert_eq!(made.unwrap().name(), name);
    assert_eq!(opened.unwrap(), name);
    assert!(there);
    for empty in ["/", "//", "///"] {
        match SharedMemory::open(empty) {
            Err(SharedMemoryError::InvalidName { reason: "it is empty", .. }) => {}
            other => panic!("{empty:?}: {other:?}"),
        }
    }
}

/// A name in `/dev/shm` (a directory every user may write) that is a symbolic link is no
/// segment: `open` refuses it as Python's does (glibc's `shm_open` opens with
/// `O_NOFOLLOW`), rather than map the file it points to for writing.
#[test]
fn a_symbolic_link_in_dev_shm_is_not_opened_as_a_segment() {
    let target = std::env::temp_dir().join(format!("mp-link-target-{}", std::process::id()));
    std::fs::write(&target, b"precious").unwrap();
    let link = format!("mp-link-{}", std::process::id());
    std::os::unix::fs::symlink(&target, format!("/dev/shm/{link}")).unwrap();
    let opened = SharedMemory::open(&link);
    if let Ok(shm) = &opened {
        let _ = shm.try_write_at(0, b"X");
    }
    let left = std::fs::read(&target).unwrap();
    std::fs::remove_file(format!("/dev/shm/{link}")).unwrap();
    std::fs::remove_file(&target).unwrap();
    assert_eq!(left, b"precious", "the file behind the link was written");
    assert!(matches!(opened, Err(SharedMemoryError::Io(_))), "{opened:?}");
}

#[test]
#[should_panic(expected = "out of bounds")]
fn a_segment_access_out_of_bounds_panics() {
    let shm = SharedMemory::builder().size(8).track(false).create().unwrap();
    let name = shm.name().to_string();
    let result = std::panic::catch_unwind(|| shm.write_at(4, &[0; 8]));
    SharedMemory::open(&name).unwrap().unlink().unwrap();
    std::panic::resume_unwind(result.unwrap_err());
}

#[test]
fn segment_bytes_copy_in_and_out_at_any_alignment() {
    let shm = SharedMemory::create(64).unwrap();
    let data: Vec<u8> = (1..=40).collect();
    shm.write_at(3, &data);
    let mut back = vec![0u8; 40];
    shm.read_at(3, &mut back);
    assert_eq!(back, data);
    let all = shm.to_vec();
    assert_eq!(&all[..3], &[0, 0, 0]);
    assert_eq!(&all[43..], &[0; 21]);
    // SAFETY: this test is the only user of the segment.
    assert_eq!(unsafe { shm.as_slice() }[3], 1);
    // SAFETY: as above.
    let bytes = unsafe { shm.as_mut_slice() };
    bytes[63] = 0xff;
    assert_eq!(shm.to_vec()[63], 0xff);
    shm.unlink().unwrap();
}

// ---------------------------------------------------------------------------------------
// ShareableList

#[test]
fn a_shareable_list_holds_python_s_plain_values_with_fixed_length_and_room() {
    let list = ShareableList::new([
        Item::from(1),
        "howdy".into(),
        2.5.into(),
        true.into(),
        Item::None,
        b"ab".as_slice().into(),
    ])
    .unwrap();
    assert_eq!(list.len(), 6);
    assert_eq!(list.format(), "q8sdxxxxxxx?xxxxxx?x8s");
    assert_eq!(list.get(1).unwrap(), Item::Str("howdy".into()));
    list.set(0, -7i64).unwrap();
    list.set(2, Item::None).unwrap();
    list.set(4, "by").unwrap(); // a None slot takes a short str
    list.set(1, "exactly8").unwrap();
    assert!(matches!(list.set(1, "nine char"), Err(ShareableListError::TooLong { index: 1, len: 9, capacity: 8 })));
    assert!(matches!(list.set(6, 1), Err(ShareableListError::IndexOutOfRange { index: 6, len: 6 })));
    assert!(matches!(list.get(9), Err(ShareableListError::IndexOutOfRange { .. })));
    let other = ShareableList::open(list.name()).unwrap();
    assert_eq!(
        other.to_vec().unwrap(),
        [
            Item::Int(-7),
            Item::Str("exactly8".into()),
            Item::None,
            Item::Bool(true),
            Item::Str("by".into()),
            Item::Bytes(b"ab".to_vec())
        ]
    );
    assert_eq!(other.count(&Item::None), 1);
    assert_eq!(other.index(&Item::Bool(true)), Some(3));
    assert_eq!(other.index(&Item::Int(0)), None);
    list.shm().unlink().unwrap();
    assert!(matches!(ShareableList::open(list.name()), Err(ShareableListError::SharedMemory(_))));
}

fn bump_first(list: ShareableList) -> Item {
    if let Item::Int(n) = list.get(0).unwrap() {
        list.set(0, n + 1).unwrap();
    }
    list.get(1).unwrap()
}

#[test]
fn a_shareable_list_travels_to_children_of_every_start_method() {
    let _w = watchdog(LIMIT);
    let list =
        ShareableList::create_named(&format!("mp-list-{}", std::process::id()), [Item::Int(41), "x".into()]).unwrap();
    for (method, expected) in [(StartMethod::Spawn, 42), (StartMethod::ForkServer, 43)] {
        // The list travels as its name and is opened again in the child.
        let handle = ShareableList::open(list.name()).unwrap();
        let child = Process::new(bump_first, handle).start_method(method).start().unwrap();
        assert_eq!(child.join().unwrap(), Item::Str("x".into()));
        assert_eq!(list.get(0).unwrap(), Item::Int(expected), "{method:?}");
    }
    list.shm().unlink().unwrap();
}

#[test]
fn a_segment_that_is_not_a_list_is_refused() {
    let shm = SharedMemory::create(32).unwrap();
    shm.write_at(0, &1000i64.to_ne_bytes());
    let name = shm.name().to_string();
    assert!(matches!(ShareableList::from_shared_memory(shm), Err(ShareableListError::Corrupt(_))));
    SharedMemory::open(&name).unwrap().unlink().unwrap();
}

/// An item whose room would not fit the 8 bytes Python gives a slot's format (`"<room>s"`:
/// at most 9,999,992 bytes of room) is refused with a typed error; it panicked.
#[test]
fn a_shareable_list_item_too_long_for_any_slot_is_a_typed_error() {
    const MOST: usize = 9_999_991;
    let list = ShareableList::new([vec![7u8; MOST]]).unwrap();
    assert_eq!(list.format(), "9999992s");
    assert_eq!(list.get(0).unwrap(), Item::Bytes(vec![7; MOST]));
    list.shm().unlink().unwrap();
    for item in [Item::Bytes(vec![7; MOST + 1]), Item::Str("x".repeat(MOST + 1))] {
        match ShareableList::new([Item::Int(1), item]) {
            Err(ShareableListError::TooLong { index: 1, len, capacity: MOST }) => assert_eq!(len, MOST + 1),
            other => panic!("{other:?}"),
        }
    }
}

/// In a child: stops right after its list's segment is made (`stop:` at
/// `shareable_list.create.made`), then goes on writing the list; says what `create_named`
/// returned.
fn create_list_stopped_after_the_segment(name: String) -> String {
    multiproc::__private::crash_at("stop:shareable_list.create.made");
    let made = ShareableList::create_named(&name, [Item::Int(1), Item::Str("two".into()), Item::Bytes(vec![3; 100])]);
    multiproc::__private::crash_disarm();
    match made {
        Ok(list) => format!("Ok({})", list.name()),
        Err(e) => format!("Err({e:?})"),
    }
}

/// A list whose write fails after its segment was made (the segment truncated by another
/// process meanwhile) is an error and leaves no segment in `/dev/shm` (fix87 noticed: the
/// segment stayed, with no handle returned to unlink it).
#[test]
fn a_shareable_list_whose_write_fails_leaves_no_segment_behind() {
    let _w = watchdog(LIMIT);
    let name = format!("mp-list-cut-{}", std::process::id());
    let child = Process::new(create_list_stopped_after_the_segment, name.clone()).start().unwrap();
    let stopped = common::StoppedChild::wait_for(child.pid(), LIMIT);
    // Another process cuts the segment to nothing before the list is written.
    std::fs::OpenOptions::new().write(true).open(format!("/dev/shm/{name}")).unwrap().set_len(0).unwrap();
    stopped.resume(LIMIT);
    let made = child.join().unwrap();
    let left = shm_exists(&name);
    if left {
        // Cut to nothing, it cannot be opened to unlink it.
        std::fs::remove_file(format!("/dev/shm/{name}")).unwrap();
    }
    println!("create_named said {made}; its segment left in /dev/shm: {left}");
    assert!(made.starts_with("Err(SharedMemory(Truncated"), "{made}");
    assert!(!left, "the failed list's segment was left in /dev/shm");
}

/// Makes the segment `name`, stopped once it is made and registered, its allocation then
/// failing; `id_late`: the create's own `fstat` fails (once), so the file id is learnt
/// later, by the tracker's registration.
fn create_segment_stopped_before_its_pages_failing((name, id_late): (String, bool)) -> String {
    let points = "stop:shared_memory.create.opened,fail:shm.segment.allocate";
    multiproc::__private::crash_at(&if id_late {
        format!("fail1:shm.segment.file,{points}")
    } else {
        points.to_owned()
    });
    let made = multiproc::SharedMemory::builder().name(name).size(4096).create();
    multiproc::__private::crash_disarm();
    match made {
        Ok(shm) => format!("Ok({})", shm.name()),
        Err(e) => format!("Err({e:?})"),
    }
}

/// A named create whose allocation fails removes its own file only, not one made again
/// under its name meanwhile (review126, noticed beside M1: the new segment's clean-up
/// unlinked by name). Also when the create's own `fstat` failed and the file id was learnt
/// later, at the registration (review165 L2: not kept, the clean-up went by name).
#[test]
fn a_failed_create_does_not_unlink_a_segment_made_again_under_its_name() {
    let _w = watchdog(LIMIT);
    for id_late in [false, true] {
        let name = format!("mp-create-again-{}-{id_late}", std::process::id());
        let child =
            Process::new(create_segment_stopped_before_its_pages_failing, (name.clone(), id_late)).start().unwrap();
        let stopped = common::StoppedChild::wait_for(child.pid(), LIMIT);
        // Another program takes the name over: unlinked, made again (its own file).
        std::fs::remove_file(format!("/dev/shm/{name}")).unwrap();
        let theirs = multiproc::SharedMemory::builder().name(name.clone()).size(4096).create().unwrap();
        stopped.resume(LIMIT);
        let made = child.join().unwrap();
        let still_there = shm_exists(&name);
        println!(
            "file id learnt late: {id_late}; create said {made}; the other program's segment still in /dev/shm: \
             {still_there}"
        );
        let _ = theirs.unlink();
        assert!(made.starts_with("Err(Io"), "{made}");
        assert!(still_there, "the failed create's clean-up unlinked another program's segment (id late: {id_late})");
    }
}

/// Creates the segments `<prefix>tracked` and `<prefix>untracked` with the file id of a
/// new segment failing to be taken (`fstat`): what each create said.
fn create_segments_whose_file_id_fails(prefix: String) -> [String; 2] {
    multiproc::__private::crash_at("fail:shm.segment.file");
    let made = [true, false].map(|track| {
        let name = format!("{prefix}{}", if track { "tracked" } else { "untracked" });
        match multiproc::SharedMemory::builder().name(name).size(4096).track(track).create() {
            Ok(shm) => format!("Ok({})", shm.name()),
            Err(e) => format!("Err({e:?})"),
        }
    });
    multiproc::__private::crash_disarm();
    made
}

/// A create whose new segment's file id cannot be taken fails and leaves nothing in
/// `/dev/shm` (review160 L2: the id was taken once the segment was allocated, with nothing
/// left to remove it; an untracked segment stayed for ever). In a child: the fail point is
/// the process's.
#[test]
fn a_create_that_cannot_take_its_segments_file_id_leaves_nothing() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-create-no-id-{}-", std::process::id());
    let made = Process::new(create_segments_whose_file_id_fails, prefix.clone()).start().unwrap().join().unwrap();
    let left = ["tracked", "untracked"].map(|what| shm_exists(&format!("{prefix}{what}")));
    for name in segments_named(&prefix) {
        let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
    }
    println!("the creates said {made:?}; left in /dev/shm: {left:?}");
    assert!(made.iter().all(|said| said.starts_with("Err(Io")), "{made:?}");
    assert_eq!(left, [false, false], "a create that failed left its segment");
}

/// A failed list's clean-up removes its own segment only, not one made again under its
/// name (review126 M1: it unlinked by name). Another program truncates the child's new
/// segment, unlinks the name and makes its own segment under it; the child's
/// `create_named` fails, and the other program's segment stays.
#[test]
fn a_failed_list_does_not_unlink_a_segment_made_again_under_its_name() {
    let _w = watchdog(LIMIT);
    let name = format!("mp-list-again-{}", std::process::id());
    let child = Process::new(create_list_stopped_after_the_segment, name.clone()).start().unwrap();
    let stopped = common::StoppedChild::wait_for(child.pid(), LIMIT);
    let path = format!("/dev/shm/{name}");
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
    // The other program takes the name over: unlinked, made again (its own file).
    std::fs::remove_file(&path).unwrap();
    let theirs = multiproc::SharedMemory::builder().name(name.clone()).size(4096).create().unwrap();
    stopped.resume(LIMIT);
    let made = child.join().unwrap();
    let still_there = shm_exists(&name);
    println!("create_named said {made}; the other program's segment still in /dev/shm: {still_there}");
    let _ = theirs.unlink();
    assert!(made.starts_with("Err(SharedMemory(Truncated"), "{made}");
    assert!(still_there, "the failed list's clean-up unlinked another program's segment");
}

fn create_segment_stopped_before_its_size(name: String) -> String {
    multiproc::__private::crash_at("stop:shared_memory.create.opened");
    let made = multiproc::SharedMemory::builder().name(name).size(4096).create();
    multiproc::__private::crash_disarm();
    match made {
        Ok(shm) => format!("Ok({})", shm.name()),
        Err(e) => format!("Err({e:?})"),
    }
}

/// A segment opened by name while its creator, another process of the family, has made
/// the name but not yet given it its size (between `shm_open(O_CREAT)` and `ftruncate`)
/// is a typed, retryable `Empty`, not an untyped `Io` (aud103 L4, review137: a process
/// polling `open` until it stops being `NotFound` took that for fatal). Once the creator
/// goes on, the same open succeeds.
#[test]
fn a_segment_opened_while_its_creator_sizes_it_is_a_typed_empty_error() {
    let _w = watchdog(LIMIT);
    let name = format!("mp-being-made-{}", std::process::id());
    let child = Process::new(create_segment_stopped_before_its_size, name.clone()).start().unwrap();
    let stopped = common::StoppedChild::wait_for(child.pid(), LIMIT);
    let early = SharedMemory::open(&name);
    println!("open while the creator is stopped before the size: {early:?}");
    stopped.resume(LIMIT);
    let made = child.join().unwrap();
    let late = SharedMemory::open(&name).map(|shm| shm.size());
    let _ = SharedMemory::open(&name).map(|shm| shm.unlink());
    assert!(matches!(&early, Err(SharedMemoryError::Empty(n)) if *n == name), "{early:?}");
    assert!(early.unwrap_err().to_string().contains("not been given its size yet"));
    assert_eq!(made, format!("Ok({name})"));
    assert_eq!(late.unwrap(), 4096);
}

/// An item read back keeps only its own bytes, not its slot's room (review109 M1): a slot
/// made for 9 MB and set to `"a"` gave back a 1-byte string holding 9 MB, so `to_vec` of a
/// sparse segment another program made with huge empty slots (a few KiB written) took as
/// much memory as the segment's nominal size. Python's gives back the item alone.
#[test]
fn an_item_read_back_keeps_only_its_own_bytes_not_its_slots_room() {
    let list = ShareableList::new(["x".repeat(9_000_000), "y".repeat(9_000_000)]).unwrap();
    list.set(0, "a").unwrap();
    list.set(1, "").unwrap();
    let items = list.to_vec().unwrap();
    list.shm().unlink().unwrap();
    for (i, item) in items.iter().enumerate() {
        let capacity = match item {
            Item::Str(s) => s.capacity(),
            Item::Bytes(b) => b.capacity(),
            other => panic!("item {i}: {other:?}"),
        };
        assert!(capacity <= 64, "item {i} ({item:?}) keeps {capacity} bytes");
    }
}

fn truncate_to(name: &str, len: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(format!("/dev/shm/{name}")).unwrap();
    file.set_len(len).unwrap();
}

/// A list whose segment another program truncated (anybody may, by its name) answers with
/// `SharedMemoryError::Truncated`, as `SharedMemory`'s own `try_` accessors do: every call
/// that returns a `Result` panicked instead.
#[test]
fn a_shareable_list_whose_segment_was_truncated_gives_typed_errors() {
    let list = ShareableList::new([Item::from(1), "text".into()]).unwrap();
    let mapped = SharedMemory::open(list.name()).unwrap();
    truncate_to(list.name(), 8);
    let truncated = |r: Result<(), ShareableListError>| {
        matches!(r, Err(ShareableListError::SharedMemory(SharedMemoryError::Truncated { size: 8, .. })))
    };
    assert!(truncated(list.get(0).map(drop)));
    assert!(truncated(list.get(1).map(drop)));
    assert!(truncated(list.to_vec().map(drop)));
    assert!(truncated(list.set(0, 2)));
    assert!(truncated(list.set(1, "abc")));
    assert!(truncated(ShareableList::from_shared_memory(mapped).map(drop)));
    assert_eq!((list.count(&Item::Int(1)), list.index(&Item::Int(1))), (0, None));
    list.shm().unlink().unwrap();
}

/// A segment whose header gives a slot less room than a number's 8 bytes, or more than a
/// slot can have, is not a list (Python never writes one): `set` on such a slot panicked.
#[test]
fn a_shareable_list_with_impossible_slots_is_refused() {
    for room in [0i64, 4, 10_000_000] {
        let shm = SharedMemory::create(3 * 8 + room as usize + 8 + 1).unwrap();
        let mut header = Vec::new();
        for word in [1, 0, room] {
            header.extend_from_slice(&i64::to_ne_bytes(word));
        }
        shm.write_at(0, &header);
        let name = shm.name().to_string();
        let list = ShareableList::from_shared_memory(shm);
        assert!(matches!(list, Err(ShareableListError::Corrupt(_))), "room {room}: {list:?}");
        SharedMemory::open(&name).unwrap().unlink().unwrap();
    }
}

fn open_list(name: String) -> Result<usize, String> {
    ShareableList::open(&name).map(|list| list.len()).map_err(|e| format!("{e:?}"))
}

/// A segment that another program made (anybody may make one under any name) and that
/// claims more items than could ever be written, in a sparse 1 TiB file, is `Corrupt`:
/// its header's count was taken as the capacity of the offsets' vector before any offset
/// was read, and the open aborted the process ("memory allocation of 1099511627768 bytes
/// failed", SIGABRT), here a child's.
#[test]
fn a_segment_claiming_more_items_than_it_holds_is_refused_not_an_abort() {
    let _w = watchdog(LIMIT);
    const SIZE: u64 = 1 << 40;
    let name = format!("mp-test-sparse-{}", std::process::id());
    let path = format!("/dev/shm/{name}");
    /// Removes the sparse file however the test ends (review109 L1: an unwrap before the
    /// removal left a 1 TiB file in `/dev/shm`).
    struct Removed(String);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let file = std::fs::File::create(&path).unwrap();
    let _removed = Removed(path.clone());
    // Sparse: tmpfs allocates only the page written.
    file.set_len(SIZE).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &(SIZE as i64 / 8 - 2).to_ne_bytes(), 0).unwrap();
    let opened = Process::new(open_list, name.clone()).start().unwrap().join();
    match opened {
        Ok(Err(e)) => assert!(e.starts_with("Corrupt"), "{e}"),
        other => panic!("the open of a forged list: {other:?}"),
    }
}

/// The offsets are read a page (512) at a time: a list of more items than that, and not a
/// multiple of it, opens with every item where it was.
#[test]
fn a_shareable_list_of_more_items_than_a_page_of_offsets_opens_whole() {
    let made =
        ShareableList::new((0..1500i64).map(|i| if i % 7 == 0 { Item::from(format!("s{i}")) } else { Item::from(i) }))
            .unwrap();
    let opened = ShareableList::open(made.name()).unwrap();
    assert_eq!(opened.len(), 1500);
    for i in [0, 511, 512, 513, 1023, 1024, 1499] {
        let want = if i % 7 == 0 { Item::from(format!("s{i}")) } else { Item::from(i as i64) };
        assert_eq!(opened.get(i).unwrap(), want, "item {i}");
    }
    made.shm().unlink().unwrap();
}

fn python3() -> Option<Command> {
    let ok = Command::new("python3").arg("-c").arg("import multiprocessing.shared_memory").output().ok()?;
    ok.status.success().then(|| Command::new("python3"))
}

#[test]
fn python_reads_a_shareable_list_made_here_and_the_other_way_round() {
    let _w = watchdog(LIMIT);
    let Some(mut py) = python3() else {
        eprintln!("python3 with multiprocessing.shared_memory not found: the interoperability check is skipped");
        return;
    };
    let list = ShareableList::new([
        Item::from(7),
        "héllo".into(),
        1.5.into(),
        false.into(),
        Item::None,
        b"\x01\x02".as_slice().into(),
    ])
    .unwrap();
    // Python 3.11's resource tracker unlinks what it attaches to when it exits (gh-82300):
    // unregister first, so that the segment survives for our own checks.
    let script = "import sys\n\
        from multiprocessing import shared_memory, resource_tracker\n\
        l = shared_memory.ShareableList(name=sys.argv[1])\n\
        resource_tracker.unregister(l.shm._name, 'shared_memory')\n\
        print(repr(list(l)))\n\
        l[0] = 8\n\
        l[1] = 'bye'\n\
        l.shm.close()\n";
    let out = py.arg("-c").arg(script).arg(list.name()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[7, 'héllo', 1.5, False, None, b'\\x01\\x02']");
    assert_eq!(list.get(0).unwrap(), Item::Int(8));
    assert_eq!(list.get(1).unwrap(), Item::Str("bye".into()));
    list.shm().unlink().unwrap();

    // Python makes one; this process reads it while Python waits.
    let script = "import sys\n\
        from multiprocessing import shared_memory\n\
        l = shared_memory.ShareableList([3, 'abc', 2.25, True, None, b'xyz'])\n\
        print(l.shm.name, flush=True)\n\
        sys.stdin.readline()\n\
        print(repr(list(l)), flush=True)\n\
        l.shm.close(); l.shm.unlink()\n";
    let mut child =
        python3().unwrap().arg("-c").arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let name = lines.next().unwrap().unwrap();
    let theirs = ShareableList::open(&name).unwrap();
    assert_eq!(
        theirs.to_vec().unwrap(),
        [
            Item::Int(3),
            Item::Str("abc".into()),
            Item::Float(2.25),
            Item::Bool(true),
            Item::None,
            Item::Bytes(b"xyz".to_vec())
        ]
    );
    theirs.set(0, 4).unwrap();
    theirs.set(5, None::<i64>).unwrap();
    use std::io::Write as _;
    writeln!(child.stdin.take().unwrap()).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "[4, 'abc', 2.25, True, None, None]");
    assert!(child.wait().unwrap().success());
}

// ---------------------------------------------------------------------------------------
// The resource tracker

/// Run only as the victim family of the test below (its own main process, its own
/// tracker): makes a tracked segment in the main process and another in a child that
/// also has a grandchild, prints the names and the family's pids, then waits for
/// `kill -9`.
#[test]
#[ignore = "run by a_family_killed_with_kill_9_leaves_nothing_in_dev_shm"]
fn victim_family() {
    if std::env::var_os("MP_TEST_VICTIM_FAMILY").is_none() {
        return;
    }
    fn child_makes_a_segment(_: ()) {
        let shm = SharedMemory::create(4096).unwrap();
        let grandchild = Process::new(|_: ()| std::thread::sleep(Duration::from_secs(600)), ()).start().unwrap();
        println!("segment {} grandchild {}", shm.name(), grandchild.pid());
        std::mem::forget(shm);
        std::thread::sleep(Duration::from_secs(600));
    }
    let shm = SharedMemory::create(4096).unwrap();
    let untracked = SharedMemory::builder().size(4096).track(false).create().unwrap();
    println!("segment {} untracked {}", shm.name(), untracked.name());
    let child = Process::new(child_makes_a_segment, ()).start_method(StartMethod::Spawn).start().unwrap();
    println!("child {}", child.pid());
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_family_killed_with_kill_9_leaves_nothing_in_dev_shm() {
    let _w = watchdog(LIMIT);
    let mut victim = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "victim_family", "--ignored", "--nocapture", "--test-threads=1"])
        .env("MP_TEST_VICTIM_FAMILY", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let family_pid = victim.id();
    /// Kills the victim's process group if this test fails half-way.
    struct KillGroup(i32);
    impl Drop for KillGroup {
        fn drop(&mut self) {
            // SAFETY: kill(2) on a process group; no memory is involved.
            unsafe { libc::kill(-self.0, libc::SIGKILL) };
        }
    }
    let _cleanup = KillGroup(family_pid as i32);
    let mut lines = BufReader::new(victim.stdout.take().unwrap()).lines();
    let (mut segments, mut untracked, mut pids) = (Vec::new(), None, vec![family_pid]);
    while segments.len() < 2 || pids.len() < 3 {
        let line = lines.next().expect("the victim family printed its segments").unwrap();
        // The harness may print "test victim_family ... " in front of the first line.
        let words: Vec<&str> = line.split_whitespace().skip_while(|w| !matches!(*w, "segment" | "child")).collect();
        match words.as_slice() {
            ["segment", name, "untracked", other] => {
                segments.push(name.to_string());
                untracked = Some(other.to_string());
            }
            ["segment", name, "grandchild", pid] => {
                segments.push(name.to_string());
                pids.push(pid.parse().unwrap());
            }
            ["child", pid] => pids.push(pid.parse().unwrap()),
            _ => {}
        }
    }
    let untracked = untracked.unwrap();
    // Every process the family's main process started: the fork server, the tracker...
    let helpers: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
                after.split_whitespace().nth(1) == Some(&*family_pid.to_string())
            })
        })
        .collect();
    assert!(helpers.len() >= 3, "fork server, tracker and child: {helpers:?}");
    pids.extend(helpers);
    for name in segments.iter().chain([&untracked]) {
        assert!(shm_exists(name), "{name} exists while the family lives");
    }
    // kill -9 of the whole process group: the main process, its children, the fork server.
    // The tracker left the group; it notices when the last family process is gone.
    drop(_cleanup);
    victim.wait().unwrap();
    for name in &segments {
        assert!(eventually(Duration::from_secs(20), || !shm_exists(name)), "the tracker unlinked {name}");
    }
    assert!(shm_exists(&untracked), "an untracked segment outlives its family");
    SharedMemory::open(&untracked).unwrap().unlink().unwrap();
    for pid in pids {
        assert!(eventually(Duration::from_secs(20), || !pid_running(pid)), "process {pid} is gone");
    }
}

/// The pid of this process's resource tracker: its child whose boot role is `tracker`.
/// Looked for until found: `posix_spawn` returns once the child's exec has replaced its
/// memory, but a moment before the kernel records where its environment lies, and until
/// then its `/proc/<pid>/environ` reads empty (a test that looked once, right after its
/// family's start, found no tracker under load).
fn tracker_pid() -> u32 {
    tracker_child(std::process::id(), None)
}

/// A running child of `parent` in the `tracker` role, other than `not`, looked for until
/// found: the family's tracker (`parent` its main process), or the keeper of a tracker
/// (`parent` the tracker: a fork of it that takes its place if it is killed).
fn tracker_child(parent: u32, not: Option<u32>) -> u32 {
    let parent = parent.to_string();
    let find = || {
        std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).find(
            |&pid| {
                let child = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
                    after.split_whitespace().nth(1) == Some(&*parent)
                });
                child
                    && Some(pid) != not
                    && pid_running(pid)
                    && std::fs::read(format!("/proc/{pid}/environ"))
                        .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var.starts_with(b"MULTIPROC_BOOT=tracker:")))
            },
        )
    };
    let mut found = None;
    assert!(eventually(LIMIT / 4, || {
        found = find();
        found.is_some()
    }));
    found.expect("a process in the resource tracker's role")
}

/// This family's resource tracker, stopped (`SIGSTOP`) while this lives. Whatever ends
/// this process, the tracker goes on: on a panic the drop continues it, and on any death
/// (an abort, the parent-death signal of an outer test that died, `kill -9`) a watcher
/// outside the family does, when the pipe it reads from this process reaches its end. A
/// tracker left stopped would hold its pipe for ever and never clean up (review61 L5).
struct StoppedTracker {
    pid: i32,
    /// The watcher's stdin: its end (this drop, or this process gone) continues the tracker.
    watcher: std::process::Child,
}

impl StoppedTracker {
    fn stop() -> StoppedTracker {
        let pid = tracker_pid() as i32;
        let watcher = Command::new("sh")
            .args(["-c", "read line; kill -CONT \"$0\"", &pid.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        // A hang here aborts before the outer test's watchdog kills this process.
        std::thread::spawn(|| {
            std::thread::sleep(LIMIT / 2);
            eprintln!("the stopped tracker's family hung");
            std::process::abort();
        });
        // SAFETY (test): kill(2) on this family's own tracker.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        StoppedTracker { pid, watcher }
    }

    /// Its pid.
    fn pid(&self) -> i32 {
        self.pid
    }
}

impl Drop for StoppedTracker {
    /// Continues the tracker, and waits until it has read its pipe dry: asleep again (in
    /// its read), or gone. A line written before might find the pipe still full, and a
    /// process whose line timed out tries the next one once, without waiting.
    fn drop(&mut self) {
        // SAFETY (test): kill(2) on this family's own tracker, not reaped before this drop.
        unsafe { libc::kill(self.pid, libc::SIGCONT) };
        drop(self.watcher.stdin.take());
        let _ = self.watcher.wait();
        let asleep_or_gone = || matches!(process_state(self.pid as u32), None | Some('S' | 'Z'));
        let drained = eventually(LIMIT / 4, asleep_or_gone);
        // Not a second panic while one unwinds (an abort, which says less).
        assert!(drained || std::thread::panicking(), "the continued tracker read its pipe");
    }
}

/// Creates and unlinks named segments (`prefix` and a number) until a create fails, and
/// returns that error: with the tracker stopped, its pipe (64 KiB) fills within a few
/// thousand lines. Checks that every segment was unlinked and none is left.
fn fill_the_stopped_trackers_pipe(prefix: &str) -> SharedMemoryError {
    let mut made = 0u32;
    let refused = loop {
        match SharedMemory::builder().name(format!("{prefix}{made}")).size(4096).create() {
            Ok(shm) => {
                let name = shm.name().to_owned();
                shm.unlink().unwrap();
                assert!(!shm_exists(&name), "{name} is unlinked");
                made += 1;
                assert!(made < 100_000, "the pipe of a stopped tracker never filled");
            }
            Err(e) => break e,
        }
    };
    println!("the pipe filled after {made} segments");
    // Topped up with the shortest lines there are (a fresh name's, `Rmp-<16 hex>`): a
    // pipe refuses a line only for want of room for it, and a shorter line of the test's
    // after (an `untrack`) could still fit beside a longer refused registration (since
    // review97 M1 a chosen name's carries its file's device and inode).
    while let Ok(shm) = SharedMemory::create(1) {
        shm.unlink().unwrap();
    }
    let ours = segments_named(prefix);
    assert!(ours.is_empty(), "{ours:?}");
    refused
}

/// The segments in `/dev/shm` whose names start with `prefix`.
fn segments_named(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// Whether `e` is a tracker that read nothing for seconds.
fn timed_out(e: &SharedMemoryError) -> bool {
    matches!(e, SharedMemoryError::Tracker(e) if e.kind() == std::io::ErrorKind::TimedOut)
}

/// Run only by the test below, in a family of its own (its own tracker, stopped here).
#[test]
fn a_stopped_resource_tracker_inner() {
    if std::env::var_os("MP_TEST_STOPPED_TRACKER").is_none() {
        return;
    }
    let stopped = StoppedTracker::stop();
    let tracker = stopped.pid();
    // Each create and unlink writes a line to the tracker's pipe, which it does not read.
    let prefix = format!("mp-test-stopped-tracker-{}-", std::process::id());
    let refused = fill_the_stopped_trackers_pipe(&prefix);
    assert!(timed_out(&refused), "{refused:?}");
    // Going on, the tracker reads what waited, and the family makes segments again.
    drop(stopped);
    SharedMemory::create(4096).unwrap().unlink().unwrap();
    // Killed with its keeper (its process group: it left the family's), it is replaced at
    // the family's end (leak61): meanwhile the lines wait in its pipe, whose read end the
    // main process keeps, and creates go on (until the pipe is full: then they time out).
    let keeper = tracker_child(tracker as u32, None);
    // SAFETY (test): kill(2) on the process group of this family's own tracker.
    assert_eq!(unsafe { libc::kill(-tracker, libc::SIGKILL) }, 0);
    assert!(common::eventually(LIMIT, || !pid_running(tracker as u32) && !pid_running(keeper)));
    let name = format!("{prefix}after-its-death");
    let made = SharedMemory::builder().name(&name).size(4096).create().unwrap();
    made.unlink().unwrap();
    assert!(!shm_exists(&name));
    println!("INNER-DONE");
}

/// A resource tracker stopped (`SIGSTOP`, a debugger) never reads its pipe: once the pipe
/// was full (after ~900 creates and unlinks), every `SharedMemory::create` and `unlink`
/// waited for it for ever. A create now fails typed after a few seconds (`Tracker`, timed
/// out) and leaves no segment, an unlink's line waits in the process's backlog. Killed with
/// its keeper, it is replaced at the family's end, and a create meanwhile goes on.
#[test]
fn a_stopped_resource_tracker_fails_a_create_typed_instead_of_a_hang() {
    let _w = watchdog(LIMIT);
    common::run_inner_test("a_stopped_resource_tracker_inner", "MP_TEST_STOPPED_TRACKER");
}

/// Blocks of the manager below: each unlink at its shutdown waited the full 5 s for the
/// stopped tracker, so these would take far longer than the inner test's abort.
const BLOCKS: usize = 20;

/// Run only by the test below, in a family of its own: a shared memory manager shut down
/// while the family's tracker is stopped.
#[test]
fn a_manager_shut_down_beside_a_stopped_tracker_inner() {
    if std::env::var_os("MP_TEST_MANAGER_STOPPED_TRACKER").is_none() {
        return;
    }
    let smm = multiproc::SharedMemoryManager::start().unwrap();
    let names: Vec<String> = (0..BLOCKS).map(|_| smm.shared_memory(4096).unwrap().name().to_owned()).collect();
    let stopped = StoppedTracker::stop();
    let prefix = format!("mp-test-manager-stopped-tracker-{}-", std::process::id());
    let refused = fill_the_stopped_trackers_pipe(&prefix);
    assert!(timed_out(&refused), "{refused:?}");
    smm.shutdown().unwrap();
    for name in &names {
        assert!(!shm_exists(name), "{name} was unlinked at the shutdown");
    }
    // The tracker still reads nothing, and a create says so.
    let refused = SharedMemory::create(4096).unwrap_err();
    assert!(timed_out(&refused), "{refused:?}");
    drop(stopped);
    SharedMemory::create(4096).unwrap().unlink().unwrap();
    println!("INNER-DONE");
}

/// A `SharedMemoryManager` shut down while the family's tracker is stopped ends: once one
/// line waited its 5 s for the tracker, the next ones of that process do not wait again
/// (until one is written), so the shutdown's unlinks do not wait 5 s each (with 200 blocks,
/// 17 minutes: review61 M1). A create meanwhile fails typed (`Tracker`, timed out).
#[test]
fn a_manager_shut_down_while_the_tracker_is_stopped_ends() {
    let _w = watchdog(LIMIT);
    common::run_inner_test("a_manager_shut_down_beside_a_stopped_tracker_inner", "MP_TEST_MANAGER_STOPPED_TRACKER");
}

/// Untracks the segment `name` while the tracker is stopped, says so (`untracked`), and
/// ends once it goes on (`go`); whether the untrack said the tracker was not told.
fn untrack_in_a_child((name, untracked, go): (String, Event, Event)) -> bool {
    let refused = SharedMemory::open(&name).unwrap().untrack();
    untracked.set();
    assert!(go.wait_timeout(LIMIT));
    refused.is_err_and(|e| timed_out(&e))
}

/// Run only by the test below, in a family of its own: three segments named by the outer
/// test (its prefix), one untracked, one unlinked and made again untracked, one untracked
/// by a child, while the tracker is stopped; all left for the outer test to find.
#[test]
fn segments_forgotten_beside_a_stopped_tracker_inner() {
    let Some(prefix) = std::env::var_os("MP_TEST_FORGOTTEN") else { return };
    let prefix = prefix.into_string().unwrap();
    let (kept, remade) = (format!("{prefix}kept"), format!("{prefix}remade"));
    let kept = SharedMemory::builder().name(kept).size(4096).create().unwrap();
    let first = SharedMemory::builder().name(&remade).size(4096).create().unwrap();
    let by_a_child = SharedMemory::builder().name(format!("{prefix}child")).size(4096).create().unwrap();
    let stopped = StoppedTracker::stop();
    eprintln!("tracker {}", stopped.pid());
    let refused = fill_the_stopped_trackers_pipe(&format!("{prefix}filler-"));
    assert!(timed_out(&refused), "{refused:?}");
    // A child's backlog: it writes no other line, but ends after the tracker went on.
    let (untracked, go) = (Event::new().unwrap(), Event::new().unwrap());
    let child = Process::new(untrack_in_a_child, (by_a_child.name().to_owned(), untracked.clone(), go.clone()))
        .start()
        .unwrap();
    assert!(untracked.wait_timeout(LIMIT));
    // Not taken: the tracker still holds it, and says so.
    let refused = kept.untrack().unwrap_err();
    assert!(timed_out(&refused), "{refused:?}");
    first.unlink().unwrap();
    assert!(!shm_exists(&remade));
    // Made again untracked while the tracker would still unlink it: refused, and nothing made.
    let refused = SharedMemory::builder().name(&remade).size(4096).track(false).create().unwrap_err();
    assert!(timed_out(&refused), "{refused:?}");
    assert!(!shm_exists(&remade));
    drop(stopped);
    go.set();
    assert!(child.join().unwrap(), "the child's untrack said the tracker was not told");
    // Made again, untracked: meant to outlive the family too. The tracker is told first.
    let again = SharedMemory::builder().name(&remade).size(4096).track(false).create().unwrap();
    std::mem::forget(kept);
    std::mem::forget(again);
    std::mem::forget(by_a_child);
    println!("INNER-DONE");
}

/// A segment forgotten by the tracker while it was stopped is not unlinked with the family:
/// an `untrack`ed one, meant to outlive it, and a name `unlink`ed and made again with
/// `track(false)`. The forgetting's line was given up after 5 s, the name stayed
/// registered, and the tracker unlinked both at the family's end (review61 M2). Now the
/// lines wait in the process's backlog, written before its next one, and meanwhile
/// `untrack` and the untracked create of that name say that the tracker was not told. A
/// child that untracked one so and wrote no other line writes its backlog as it ends.
#[test]
fn segments_forgotten_while_the_tracker_is_stopped_outlive_the_family() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-test-forgotten-{}-", std::process::id());
    let (outlived, stderr) =
        outlived_the_family("segments_forgotten_beside_a_stopped_tracker_inner", &prefix, ["kept", "remade", "child"]);
    assert_eq!(outlived, [true, true, true], "kept, remade, child: {stderr}");
}

/// Runs the inner test `inner` with `MP_TEST_FORGOTTEN` set to `prefix`, and waits until
/// the tracker it names on stderr (`tracker <pid>`) has ended with its family; whether
/// each segment `prefix` + `names[i]` outlived it (all of the prefix then unlinked), and
/// the inner test's stderr.
fn outlived_the_family<const N: usize>(inner: &str, prefix: &str, names: [&str; N]) -> ([bool; N], String) {
    let stderr = common::run_inner_test_stderr(inner, &[("MP_TEST_FORGOTTEN", prefix)]);
    let tracker: u32 = stderr
        .lines()
        .find_map(|line| line.strip_prefix("tracker ")?.trim().parse().ok())
        .expect("the inner test's tracker");
    assert!(eventually(LIMIT / 2, || !pid_running(tracker)), "the tracker ended with its family");
    let outlived = names.map(|name| shm_exists(&format!("{prefix}{name}")));
    for name in segments_named(prefix) {
        let _ = SharedMemory::open(&name).map(|shm| shm.unlink());
    }
    (outlived, stderr)
}

/// Run only by the test below, in a family of its own: a segment named by the outer test
/// (its prefix) untracked by the main process while the tracker is stopped; then the
/// tracker goes on, and the main process returns without another line.
#[test]
fn a_main_untracking_beside_a_stopped_tracker_inner() {
    let Some(prefix) = std::env::var_os("MP_TEST_FORGOTTEN") else { return };
    let prefix = prefix.into_string().unwrap();
    let kept = SharedMemory::builder().name(format!("{prefix}kept")).size(4096).create().unwrap();
    let stopped = StoppedTracker::stop();
    eprintln!("tracker {}", stopped.pid());
    let refused = fill_the_stopped_trackers_pipe(&format!("{prefix}filler-"));
    assert!(timed_out(&refused), "{refused:?}");
    let refused = kept.untrack().unwrap_err();
    assert!(timed_out(&refused), "{refused:?}");
    drop(stopped);
    std::mem::forget(kept);
    println!("INNER-DONE");
}

/// review67 T-M1: a segment the main process `untrack`ed while the tracker was stopped,
/// the main process then returning without writing another line, outlives the family: the
/// main process's exit hook writes its backlog. (It did not: the tracker unlinked it with
/// the family.)
#[test]
fn a_segment_main_untracked_while_the_tracker_was_stopped_outlives_the_family() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-test-main-forgot-{}-", std::process::id());
    let (outlived, stderr) = outlived_the_family("a_main_untracking_beside_a_stopped_tracker_inner", &prefix, ["kept"]);
    assert_eq!(outlived, [true], "kept: {stderr}");
}

/// Run only by the test below, in a family of its own: a segment named by the outer test
/// (its prefix) made tracked, unlinked through another handle and made again, tracked;
/// then the first, stale handle's `untrack`.
#[test]
fn a_stale_handles_untrack_inner() {
    let Some(prefix) = std::env::var_os("MP_TEST_FORGOTTEN") else { return };
    let prefix = prefix.into_string().unwrap();
    eprintln!("tracker {}", tracker_pid());
    let name = format!("{prefix}again");
    let stale = SharedMemory::builder().name(&name).size(4096).create().unwrap();
    SharedMemory::open(&name).unwrap().unlink().unwrap();
    let again = SharedMemory::builder().name(&name).size(4096).create().unwrap();
    eprintln!("untrack said {:?}", stale.untrack());
    std::mem::forget(again);
    println!("INNER-DONE");
}

/// A stale handle's `untrack` (its segment unlinked through another handle, the name made
/// again, tracked, since) leaves the new segment tracked: it goes with the family. It went
/// by name, so the tracker forgot the new segment, which outlived the family (review160
/// M2). The tracker compares the file now (review165 L1), and the untrack says `Ok`: it
/// was told, and forgot nothing of another file.
#[test]
fn a_stale_handles_untrack_leaves_a_segment_made_again_tracked() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-test-stale-untrack-{}-", std::process::id());
    let (outlived, stderr) = outlived_the_family("a_stale_handles_untrack_inner", &prefix, ["again"]);
    let said = stderr.lines().find_map(|line| line.strip_prefix("untrack said ")).unwrap_or("nothing");
    println!("the stale handle's untrack said {said}; the segment made again outlived the family: {outlived:?}");
    assert_eq!(outlived, [false], "the segment made again outlived the family: {stderr}");
    assert_eq!(said, "Ok(())", "{stderr}");
}

/// Run only by the test below, in a family of its own: a segment of a fresh name
/// (registered by name alone), its name then removed and made again by another program
/// (a plain file here), then the first handle's `untrack`.
#[test]
fn an_untrack_after_another_program_made_the_name_again_inner() {
    if std::env::var_os("MP_TEST_REMADE_BY_ANOTHER").is_none() {
        return;
    }
    eprintln!("tracker {}", tracker_pid());
    let shm = SharedMemory::create(4096).unwrap();
    let path = format!("/dev/shm/{}", shm.name());
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"another program's").unwrap();
    eprintln!("name {}", shm.name());
    eprintln!("untrack said {:?}", shm.untrack());
    println!("INNER-DONE");
}

/// An explicit `untrack` of a segment of a fresh name whose name another program removed
/// and made again leaves that program's file alone at the family's end (review165 L1:
/// syn103's `untrack` looked at the name first, found another file, said `NotFound` and
/// forgot nothing, so the tracker unlinked that file with the family; before syn103 it
/// forgot the name). The tracker forgets a registration by name alone whatever file is
/// untracked: that name is nobody else's in the family.
#[test]
fn an_untrack_leaves_another_programs_file_made_again_under_a_fresh_name() {
    let _w = watchdog(LIMIT);
    let stderr = common::run_inner_test_stderr(
        "an_untrack_after_another_program_made_the_name_again_inner",
        &[("MP_TEST_REMADE_BY_ANOTHER", "1")],
    );
    let field = |key: &str| stderr.lines().find_map(|line| line.strip_prefix(key)).unwrap_or("?").to_owned();
    let tracker: u32 = field("tracker ").trim().parse().expect("the inner test's tracker");
    assert!(eventually(LIMIT / 2, || !pid_running(tracker)), "the tracker ended with its family");
    let (name, said) = (field("name "), field("untrack said "));
    let path = format!("/dev/shm/{name}");
    let kept = std::fs::read(&path).is_ok_and(|bytes| bytes == b"another program's");
    let _ = std::fs::remove_file(&path);
    println!("untrack said {said}; the other program's file outlived the family: {kept}");
    assert_eq!(said, "Ok(())", "{stderr}");
    assert!(kept, "the family's tracker unlinked another program's file: {stderr}");
}

/// Fills the stopped tracker's pipe (so that this process's next lines do not wait),
/// unlinks the segment `name` (its forgetting goes to this process's backlog), says so
/// (`unlinked`), and waits to be killed, which loses the backlog.
fn unlink_beside_a_stopped_tracker_then_wait((name, filler, unlinked): (String, String, Event)) {
    let refused = fill_the_stopped_trackers_pipe(&filler);
    assert!(timed_out(&refused), "{refused:?}");
    SharedMemory::open(&name).unwrap().unlink().unwrap();
    unlinked.set();
    std::thread::sleep(LIMIT);
}

/// Run only by the test below, in a family of its own: a segment named by the outer test
/// (its prefix), unlinked by a child while the tracker is stopped, the child killed with
/// its forgetting in its backlog, then made again untracked by the main process.
#[test]
fn an_untracked_create_after_another_process_lost_its_forgetting_inner() {
    let Some(prefix) = std::env::var_os("MP_TEST_FORGOTTEN") else { return };
    let prefix = prefix.into_string().unwrap();
    let remade = format!("{prefix}remade");
    let first = SharedMemory::builder().name(&remade).size(4096).create().unwrap();
    let stopped = StoppedTracker::stop();
    eprintln!("tracker {}", stopped.pid());
    let unlinked = Event::new().unwrap();
    let child = Process::new(
        unlink_beside_a_stopped_tracker_then_wait,
        (remade.clone(), format!("{prefix}filler-"), unlinked.clone()),
    )
    .start()
    .unwrap();
    assert!(unlinked.wait_timeout(LIMIT));
    assert!(!shm_exists(&remade));
    child.kill().unwrap();
    assert_eq!(child.wait(), -libc::SIGKILL);
    drop(stopped);
    // Nothing in this process's backlog: made, untracked, meant to outlive the family.
    let again = SharedMemory::builder().name(&remade).size(4096).track(false).create().unwrap();
    std::mem::forget((first, again));
    println!("INNER-DONE");
}

/// review67 T-L1: a name unlinked by one process while the tracker was stopped (its
/// forgetting in that process's backlog, lost when it was killed), made again untracked by
/// another process, outlives the family. The tracker still held the first registration
/// and unlinked the second segment with the family: nothing refused that create, the
/// backlog being another process's. Now an untracked create of a name the caller chose
/// tells the tracker to forget the name once the exclusive create made it (any
/// registration of it is stale then).
#[test]
fn a_name_made_again_untracked_after_another_process_lost_its_forgetting_outlives_the_family() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-test-lost-forgetting-{}-", std::process::id());
    let (outlived, stderr) =
        outlived_the_family("an_untracked_create_after_another_process_lost_its_forgetting_inner", &prefix, ["remade"]);
    assert_eq!(outlived, [true], "remade: {stderr}");
}

/// Fills the stopped tracker's pipe (so that this process's next lines do not wait), makes
/// the segment `name` untracked, which fails (the tracker did not take its forgetting),
/// says so (`refused`), and ends once told (`go`), its backlog written then; whether the
/// create timed out.
fn disown_beside_a_stopped_tracker((name, filler, refused, go): (String, String, Event, Event)) -> bool {
    assert!(timed_out(&fill_the_stopped_trackers_pipe(&filler)));
    let made = SharedMemory::builder().name(&name).size(4096).track(false).create();
    refused.set();
    assert!(go.wait_timeout(LIMIT));
    made.is_err_and(|e| timed_out(&e))
}

/// The name `a_refused_untracked_create_beside_a_tracked_one_inner` makes after its
/// prefix: longer than a filler's (`filler-` and a number), so that its line never fits
/// where the filler's that timed out did not (the pipe's last page may have room for a
/// shorter one).
const TAKEN: &str = "taken-by-the-main-process";

/// Run only by the test below, in a family of its own: a child's untracked create of a
/// name (the outer test's prefix and [`TAKEN`]) refused beside the stopped tracker; then
/// the main process makes that name tracked, and the child ends (its backlog written).
#[test]
fn a_refused_untracked_create_beside_a_tracked_one_inner() {
    let Some(prefix) = std::env::var_os("MP_TEST_FORGOTTEN") else { return };
    let prefix = prefix.into_string().unwrap();
    let name = format!("{prefix}{TAKEN}");
    let stopped = StoppedTracker::stop();
    eprintln!("tracker {}", stopped.pid());
    let (refused, go) = (Event::new().unwrap(), Event::new().unwrap());
    let child = Process::new(
        disown_beside_a_stopped_tracker,
        (name.clone(), format!("{prefix}filler-"), refused.clone(), go.clone()),
    )
    .start()
    .unwrap();
    assert!(refused.wait_timeout(LIMIT));
    assert!(!shm_exists(&name), "a refused create leaves no segment");
    drop(stopped);
    // Registered with the tracker, left for it to unlink with the family.
    let taken = SharedMemory::builder().name(&name).size(4096).create().unwrap();
    go.set();
    assert!(child.join().unwrap(), "the child's untracked create timed out");
    std::mem::forget(taken);
    println!("INNER-DONE");
}

/// review76 L1: an untracked create refused beside a stalled tracker put the forgetting of
/// its name in its process's backlog, although the refused create had unlinked its
/// segment. Written later, it made the tracker forget another process's registration of
/// the name, made meanwhile: that segment outlived the family. A refused create now leaves
/// nothing to write.
#[test]
fn a_segment_made_after_another_process_s_refused_untracked_create_goes_with_the_family() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-test-refused-disown-{}-", std::process::id());
    let (outlived, stderr) =
        outlived_the_family("a_refused_untracked_create_beside_a_tracked_one_inner", &prefix, [TAKEN]);
    assert_eq!(outlived, [false], "{TAKEN}: {stderr}");
}

/// Fills the stopped tracker's pipe from a child: whether its last create timed out.
fn fill_in_a_child(prefix: String) -> bool {
    timed_out(&fill_the_stopped_trackers_pipe(&prefix))
}

/// Whether the thread `tid` of this process is asleep in `poll` (or `ppoll`): waiting for
/// room in the tracker's pipe, rather than on its way there.
fn thread_in_poll(tid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).is_ok_and(|call| {
        call.split_whitespace()
            .next()
            .and_then(|nr| nr.parse::<libc::c_long>().ok())
            .is_some_and(|nr| nr == libc::SYS_poll || nr == libc::SYS_ppoll)
    })
}

/// Run only by the test below, in a family of its own: the main process's lines time out
/// (the tracker stopped), the tracker goes on and reads its pipe dry; then the pipe is full
/// again for a moment (the tracker stopped while a child fills it, continued while the
/// main process creates a segment).
#[test]
fn a_create_beside_a_momentarily_full_pipe_inner() {
    if std::env::var_os("MP_TEST_STALLED_BEFORE").is_none() {
        return;
    }
    let prefix = format!("mp-test-stalled-before-{}-", std::process::id());
    let stopped = StoppedTracker::stop();
    let refused = fill_the_stopped_trackers_pipe(&format!("{prefix}main-"));
    assert!(timed_out(&refused), "{refused:?}");
    drop(stopped);
    let stopped = StoppedTracker::stop();
    let child = Process::new(fill_in_a_child, format!("{prefix}child-")).start().unwrap();
    assert!(child.join().unwrap(), "the child's create timed out");
    let (tid_tx, tid) = std::sync::mpsc::channel();
    // Longer than the child's names (`child-` and a number), so that its line never fits
    // where the child's last one did not (review76 L5: the pipe's last page may have room
    // for a shorter one, and the create then passed without waiting).
    let name = format!("{prefix}made-by-the-main-process");
    let creator = std::thread::spawn(move || {
        tid_tx.send(common::tid()).unwrap();
        SharedMemory::builder().name(name).size(4096).create()
    });
    let tid = tid.recv().unwrap();
    assert!(eventually(LIMIT, || creator.is_finished() || thread_in_poll(tid)));
    drop(stopped);
    let made = creator.join().unwrap();
    assert!(made.is_ok(), "a create waiting for the tracker that reads again: {made:?}");
    made.unwrap().unlink().unwrap();
    println!("INNER-DONE");
}

/// review67 T-L2: a process whose line once timed out (the tracker stopped) tried each
/// later line once, without waiting, until one was written: long after the tracker went
/// on, a create that met its pipe full for a moment failed at once (`Tracker`, timed out).
/// Now a process waits for room again once `tracker::WAIT` (5 s) has passed since its
/// last timeout, or when the pipe holds less than it did then (the tracker read since).
#[test]
fn a_create_long_after_a_timeout_waits_for_a_momentarily_full_pipe() {
    let _w = watchdog(LIMIT);
    common::run_inner_test("a_create_beside_a_momentarily_full_pipe_inner", "MP_TEST_STALLED_BEFORE");
}

/// The state letter of process `pid` in `/proc/<pid>/stat` (`S` asleep, `Z` a zombie,
/// ...), if it exists. A tracker asleep has read its pipe dry: a line written wakes it
/// before the write returns.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// Kills `pid` (`SIGKILL`), a process of this family's tracker, and waits until it is gone.
fn kill_tracker_process(pid: u32) {
    // SAFETY (test): kill(2) on a process of this family's own tracker.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    assert!(eventually(LIMIT, || !pid_running(pid)), "{pid} killed");
}

/// Run only by the test below, in a family of its own: segments made (named by the outer
/// test: its prefix and `a`, `b`, `c`) before and after kills of the tracker and its
/// keepers, then the family gone without unlinking them.
#[test]
fn a_killed_resource_tracker_inner() {
    let Some(prefix) = std::env::var_os("MP_TEST_KILLED_TRACKER") else { return };
    let prefix = prefix.into_string().unwrap();
    let create = |name: &str| SharedMemory::builder().name(format!("{prefix}{name}")).size(4096).create().unwrap();
    let a = create("a");
    let tracker = tracker_pid();
    // Its keeper killed alone: the tracker forks another.
    let keeper = tracker_child(tracker, None);
    kill_tracker_process(keeper);
    let keeper = tracker_child(tracker, Some(keeper));
    // Read by the tracker after its keeper's fork (asleep again: its pipe read dry), so
    // that only its journal tells the keeper of it.
    let journaled = create("journaled");
    assert!(eventually(LIMIT, || process_state(tracker) == Some('S')), "the tracker read its pipe");
    // The tracker killed alone: its keeper takes its place (and forks a keeper of its own),
    // from the tracker's journal and what waits in the pipe.
    kill_tracker_process(tracker);
    // Before any line wakes it (review76 M1: it forked its keeper only after its next read).
    let next = tracker_child(keeper, None);
    let b = create("b");
    // And again: the keeper that became the tracker killed, its own keeper goes on.
    kill_tracker_process(keeper);
    let c = create("c");
    // Which took over: it has a keeper of its own.
    tracker_child(next, None);
    std::mem::forget((a, journaled, b, c));
    println!("INNER-DONE");
}

/// A resource tracker killed (`kill -9` of it alone) took its registrations with it: the
/// segments registered before were left in `/dev/shm` by a family that then ended without
/// unlinking them (a family killed), and later creates failed (its pipe broken). Now its
/// keeper, a fork of it holding its journal (what it read of its pipe) and its pipe's
/// read end, takes its place; a keeper killed is replaced.
#[test]
fn a_segment_registered_with_a_tracker_killed_since_goes_with_its_family() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-test-killed-tracker-{}-", std::process::id());
    // Its end waits for the trackers', which hold its stderr.
    let stderr =
        common::run_inner_test_stderr("a_killed_resource_tracker_inner", &[("MP_TEST_KILLED_TRACKER", &prefix)]);
    let cleaned = eventually(Duration::from_secs(20), || segments_named(&prefix).is_empty());
    let left = segments_named(&prefix);
    for name in &left {
        let _ = SharedMemory::open(name).map(|shm| shm.unlink());
    }
    assert!(cleaned, "{left:?} outlived their family and its killed trackers: {stderr}");
}

/// Run only by the test below, in a family of its own: a segment (named by the outer test:
/// its prefix and `a`) made and read by the tracker, then the tracker and its keeper killed
/// together (`SIGKILL` to their process group), then one more segment (`b`) made, and the
/// family gone without unlinking either.
#[test]
fn a_tracker_killed_with_its_keeper_inner() {
    let Some(prefix) = std::env::var_os("MP_TEST_KILLED_WITH_KEEPER") else { return };
    let prefix = prefix.into_string().unwrap();
    let create = |name: &str| SharedMemory::builder().name(format!("{prefix}{name}")).size(4096).create();
    let a = create("a").unwrap();
    let tracker = tracker_pid();
    let keeper = tracker_child(tracker, None);
    assert!(eventually(LIMIT, || process_state(tracker) == Some('S')), "the tracker read its pipe");
    // SAFETY (test): kill(2) on the process group of this family's own tracker (the tracker
    // leaves the family's group for a group of its own, which its keeper shares).
    assert_eq!(unsafe { libc::kill(-(tracker as i32), libc::SIGKILL) }, 0);
    for pid in [tracker, keeper] {
        assert!(eventually(LIMIT, || !pid_running(pid)), "{pid} killed");
    }
    let b = create("b");
    assert!(b.is_ok(), "a create after the tracker and its keeper were killed: {:?}", b.as_ref().err());
    // review82 H1: a `Fork` child calling `exit` runs the main process's exit hook in its
    // copy of it, and replaced the tracker (main then started another, a second reader of
    // the same journal and pipe). Only the main process replaces it, at its own end.
    // SAFETY (test): the child only calls `exit`; the test's other threads wait.
    unsafe { multiproc::allow_fork_with_threads() };
    let _ = Process::new(exit_with, 0).start_method(StartMethod::Fork).start().unwrap().join();
    let marker = format!("MP_TEST_KILLED_WITH_KEEPER={prefix}");
    let replaced = eventually(Duration::from_secs(2), || !trackers_with(&marker).is_empty());
    assert!(!replaced, "a fork of the main process replaced the tracker: {:?}", trackers_with(&marker));
    std::mem::forget((a, b));
    println!("INNER-DONE");
}

fn exit_with(code: i32) {
    std::process::exit(code);
}

/// The running processes in the `tracker` role whose environment holds `var` (`NAME=value`).
fn trackers_with(var: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            pid_running(pid)
                && std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                    let mut vars = env.split(|&b| b == 0);
                    vars.clone().any(|v| v.starts_with(b"MULTIPROC_BOOT=tracker:")) && vars.any(|v| v == var.as_bytes())
                })
        })
        .collect()
}

/// The resource tracker and its keeper killed together (`kill -9` of their process group):
/// the segments registered before, and one made after, must go with the family all the same.
///
/// Before leak61 they lost the registrations (the journal was theirs alone), and the pipe
/// had no reader left: the create after the kills failed `BrokenPipe`, and the segment made
/// before outlived the family. Now the main process keeps the pipe's read end and the
/// journal, and at its end starts a tracker from them once it finds both dead (their lock
/// on the journal gone).
#[test]
fn segments_registered_with_a_tracker_killed_with_its_keeper_go_with_their_family() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-test-killed-with-keeper-{}-", std::process::id());
    let run = std::panic::catch_unwind(|| {
        common::run_inner_test_stderr(
            "a_tracker_killed_with_its_keeper_inner",
            &[("MP_TEST_KILLED_WITH_KEEPER", &prefix)],
        )
    });
    let cleaned = eventually(Duration::from_secs(20), || segments_named(&prefix).is_empty());
    let left = segments_named(&prefix);
    for name in &left {
        let _ = SharedMemory::open(name).map(|shm| shm.unlink());
    }
    let stderr = run.unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert!(cleaned, "{left:?} outlived their family and its killed tracker and keeper: {stderr}");
}

/// Run only by the test below, in a family of its own: a segment (the outer test's prefix
/// and `a`) made and read by the tracker, then the tracker and its keeper killed together,
/// then the main process itself (`SIGKILL`): nothing of the family ends normally.
#[test]
fn a_family_killed_whole_inner() {
    let Some(prefix) = std::env::var_os("MP_TEST_KILLED_WHOLE") else { return };
    let prefix = prefix.into_string().unwrap();
    let a = SharedMemory::builder().name(format!("{prefix}a")).size(4096).create().unwrap();
    let tracker = tracker_pid();
    let keeper = tracker_child(tracker, None);
    assert!(eventually(LIMIT, || process_state(tracker) == Some('S')), "the tracker read its pipe");
    if std::env::var_os("MP_TEST_REMADE").is_some() {
        // `b`, registered (in the journal, its files the tracker's descriptors 4 and 5),
        // then unlinked behind the family's back and made again by "another program".
        let b = format!("{prefix}b");
        let made = SharedMemory::builder().name(&b).size(4096).create().unwrap();
        let journal = || {
            (4..6).any(|fd| {
                std::fs::read(format!("/proc/{tracker}/fd/{fd}"))
                    .is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains(&format!("R{b}")))
            })
        };
        assert!(eventually(LIMIT, journal), "the journal holds {b}");
        std::mem::forget(made);
        std::fs::remove_file(format!("/dev/shm/{b}")).unwrap();
        std::fs::File::create_new(format!("/dev/shm/{b}")).unwrap();
    }
    // SAFETY (test): kill(2) on the process group of this family's own tracker and keeper.
    assert_eq!(unsafe { libc::kill(-(tracker as i32), libc::SIGKILL) }, 0);
    for pid in [tracker, keeper] {
        assert!(eventually(LIMIT, || !pid_running(pid)), "{pid} killed");
    }
    std::mem::forget(a);
    // SAFETY (test): kill(2) of this process, the inner test's family's main.
    unsafe { libc::kill(std::process::id() as i32, libc::SIGKILL) };
}

/// A family killed whole (its tracker and keeper, then its main process, `SIGKILL`): the
/// segments it registered go at the next start of a family of the same user.
///
/// Before trk71 nothing was left to clean them (the journal was in memory files that went
/// with their last holder), and they stayed in `/dev/shm` for good. Now the journal's files
/// are named in `/dev/shm`, and a family's start takes up a journal whose holders are all
/// dead (their locks free) and unlinks what it held.
#[test]
fn segments_of_a_family_killed_with_its_tracker_and_keeper_go_at_the_next_family_s_start() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-test-killed-whole-{}-", std::process::id());
    let (left, stderr) = killed_whole(&prefix, false);
    assert!(left.is_empty(), "{left:?} outlived their family killed whole, and the next family's start: {stderr}");
}

/// A family killed whole, whose tracked segment `b` was unlinked and made again since by
/// another program (a program restarted while its killed predecessor was still dying, and
/// so passed over by its own start): the next family's start leaves the new `b` alone.
///
/// Before, the take-up unlinked by name, however late (review97 M1): the new `b` went. Now
/// a registration carries the segment's device and inode, and a name is unlinked only
/// while it is still that file.
#[test]
fn a_segment_made_again_since_its_family_was_killed_whole_is_left_at_the_next_start() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-test-remade-{}-", std::process::id());
    let (left, stderr) = killed_whole(&prefix, true);
    assert_eq!(left, [format!("{prefix}b")], "the segment made again, and only it, is left: {stderr}");
}

/// Runs `a_family_killed_whole_inner` (with `b` made again if `remade`), then the next
/// family's start: the segments named `prefix…` left, and the inner's stderr.
fn killed_whole(prefix: &str, remade: bool) -> (Vec<String>, String) {
    use std::os::unix::process::CommandExt as _;
    let marker = format!("MP_TEST_KILLED_WHOLE={prefix}");
    let mut inner = Command::new(std::env::current_exe().unwrap());
    inner.args(["a_family_killed_whole_inner", "--exact", "--nocapture", "--test-threads=1"]);
    inner.env("MP_TEST_KILLED_WHOLE", prefix);
    if remade {
        inner.env("MP_TEST_REMADE", "1");
    }
    // SAFETY (test): `prctl` is async-signal-safe and touches nothing of the parent's.
    unsafe {
        inner.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = inner.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&out.status), Some(libc::SIGKILL), "{stderr}");
    (left_after_the_next_family_s_start(prefix, &marker, usize::from(remade)), stderr)
}

/// Once every process of a family (whose environment holds `marker`) is gone, and a family
/// started since (this binary's `init()`, which `test_support!` runs): the segments named
/// `prefix…` left (unlinked here), once no more than `kept` are (or a bound passed).
fn left_after_the_next_family_s_start(prefix: &str, marker: &str, kept: usize) -> Vec<String> {
    assert!(eventually(LIMIT, || family_processes(marker).is_empty()), "{:?} outlived", family_processes(marker));
    let next = Command::new(std::env::current_exe().unwrap()).args(["--exact", "no_test_has_this_name"]).output();
    assert!(next.unwrap().status.success());
    eventually(Duration::from_secs(20), || segments_named(prefix).len() <= kept);
    let mut left = segments_named(prefix);
    left.sort();
    for name in &left {
        let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
    }
    left
}

/// Run only by the test below, in a family of its own: a segment (the outer test's prefix
/// and `a`) made and read by the tracker, then the tracker and its keeper killed together
/// while a process outside the family holds a lock of the tracker's journal, as a process
/// being killed holds its files until it is gone: the main process's end finds their lock
/// held, and starts no tracker.
#[test]
fn a_tracker_killed_as_its_main_process_looks_inner() {
    use std::io::Write as _;
    let Some(prefix) = std::env::var_os("MP_TEST_KILLED_AS_MAIN_LOOKS") else { return };
    let prefix = prefix.into_string().unwrap();
    let a = SharedMemory::builder().name(format!("{prefix}a")).size(4096).create().unwrap();
    let tracker = tracker_pid();
    let keeper = tracker_child(tracker, None);
    assert!(eventually(LIMIT, || process_state(tracker) == Some('S')), "the tracker read its pipe");
    // `flock -s` of the journal's first file (the tracker's descriptor 4) until this process
    // is gone (its stdin's end of file).
    let mut holder = Command::new("flock")
        .args(["-s", &format!("/proc/{tracker}/fd/4"), "sh", "-c", "echo locked; cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    BufReader::new(holder.stdout.take().unwrap()).read_line(&mut said).unwrap();
    assert_eq!(said.trim(), "locked");
    // SAFETY (test): kill(2) on the process group of this family's own tracker and keeper.
    assert_eq!(unsafe { libc::kill(-(tracker as i32), libc::SIGKILL) }, 0);
    for pid in [tracker, keeper] {
        assert!(eventually(LIMIT, || !pid_running(pid)), "{pid} killed");
    }
    holder.stdin.as_mut().unwrap().flush().unwrap();
    std::mem::forget((a, holder));
    println!("INNER-DONE");
}

/// review82 L5: the tracker and its keeper killed a moment before the main process's end
/// looks at their lock, which a process being killed holds until it is gone (here a process
/// outside the family holds it on): no tracker was started in their place, and the family's
/// segments outlived it. Now they go at the next start of a family, as those of a family
/// killed whole.
#[test]
fn segments_of_a_tracker_killed_as_its_main_process_looks_go_at_the_next_family_s_start() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-test-killed-as-main-looks-{}-", std::process::id());
    let marker = format!("MP_TEST_KILLED_AS_MAIN_LOOKS={prefix}");
    let stderr = common::run_inner_test_stderr(
        "a_tracker_killed_as_its_main_process_looks_inner",
        &[("MP_TEST_KILLED_AS_MAIN_LOOKS", &prefix)],
    );
    let left = left_after_the_next_family_s_start(&prefix, &marker, 0);
    assert!(left.is_empty(), "{left:?} outlived their family, whose tracker was killed as it ended: {stderr}");
}

/// The running processes whose environment holds `var` (`NAME=value`): a family's, whose
/// main process was started with it.
fn family_processes(var: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            pid_running(pid)
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == var.as_bytes()))
        })
        .collect()
}

/// Run only by the test below, in a family of its own whose tracker's journal fails once it
/// holds lines (`fail:tracker.journal.take`): a segment (the outer test's prefix and `x`)
/// made and read by the tracker into its journal, then untracked, which the tracker reads
/// without its journal (failed: abandoned, its keeper killed).
#[test]
fn a_tracker_that_abandons_its_journal_inner() {
    let Some(prefix) = std::env::var_os("MP_TEST_ABANDONED_JOURNAL") else { return };
    let prefix = prefix.into_string().unwrap();
    let x = SharedMemory::builder().name(format!("{prefix}x")).size(4096).create().unwrap();
    let tracker = tracker_pid();
    let keeper = tracker_child(tracker, None);
    assert!(eventually(LIMIT, || process_state(tracker) == Some('S')), "the tracker read its pipe");
    x.untrack().unwrap();
    // Its next take failed: the journal abandoned, its keeper killed.
    assert!(eventually(LIMIT, || !pid_running(keeper)), "the keeper of a tracker without a journal is gone");
    assert!(eventually(LIMIT, || process_state(tracker) == Some('S')), "the tracker read its pipe");
    if std::env::var_os("MP_TEST_KILL_ABANDONED").is_some() {
        // Killed alone (the OOM killer, say), its keeper gone: nothing takes its place.
        kill_tracker_process(tracker);
    }
    std::mem::forget(x);
    println!("INNER-DONE");
}

/// review82 M1: a tracker that abandoned its journal (a `splice` into it failed, say under
/// a memory cgroup's limit) dropped its lock on it while it lived: the main process's end
/// found no holder and started a second tracker, which took up the journal (the stale
/// registration of a segment untracked since) and unlinked that segment with the family.
/// The tracker now holds the lock for its whole life.
#[test]
fn a_tracker_that_abandons_its_journal_is_not_replaced_while_it_lives() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-test-abandoned-journal-{}-", std::process::id());
    let x = format!("{prefix}x");
    // Its end waits for the trackers', which hold its stderr.
    let stderr = common::run_inner_test_stderr(
        "a_tracker_that_abandons_its_journal_inner",
        &[("MP_TEST_ABANDONED_JOURNAL", &prefix), ("MULTIPROC_CRASH_AT", "fail:tracker.journal.take")],
    );
    let kept = shm_exists(&x);
    for name in segments_named(&prefix) {
        let _ = SharedMemory::open(&name).map(|shm| shm.unlink());
    }
    assert!(kept, "{x}, untracked, was unlinked with its family: {stderr}");
}

/// review88 M1: a tracker that abandoned its journal, then killed on its own after it read
/// an `untrack` (never journaled), was replaced at the main process's end from the stale
/// journal, and the replacement unlinked the untracked segment with the family (the
/// tracker had said that a kill of it would leak, not unlink). The journal is now emptied
/// when it is abandoned: a replacement takes up nothing.
#[test]
fn a_tracker_killed_after_it_abandoned_its_journal_is_replaced_with_nothing_to_unlink() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-test-abandoned-killed-{}-", std::process::id());
    let x = format!("{prefix}x");
    // Its end waits for the replacement's, which holds its stderr.
    let stderr = common::run_inner_test_stderr(
        "a_tracker_that_abandons_its_journal_inner",
        &[
            ("MP_TEST_ABANDONED_JOURNAL", &prefix),
            ("MP_TEST_KILL_ABANDONED", "1"),
            ("MULTIPROC_CRASH_AT", "fail:tracker.journal.take"),
        ],
    );
    let kept = shm_exists(&x);
    for name in segments_named(&prefix) {
        let _ = SharedMemory::open(&name).map(|shm| shm.unlink());
    }
    assert!(kept, "{x}, untracked, was unlinked by the killed tracker's replacement: {stderr}");
}

/// Run only by the test below, in a family of its own whose tracker stops once it has
/// unlinked a segment at the family's end: a segment named by the outer test (its prefix
/// and `left`), left registered; the tracker's pid on stdout.
#[test]
fn a_tracker_killed_in_its_clean_up_inner() {
    let Some(prefix) = std::env::var_os("MP_TEST_CLEAN_UP") else { return };
    let prefix = prefix.into_string().unwrap();
    let left = SharedMemory::builder().name(format!("{prefix}left")).size(4096).create().unwrap();
    std::mem::forget(left);
    println!("tracker {}", tracker_pid());
    println!("INNER-DONE");
}

/// review76 L7: a tracker killed in its clean-up, after it unlinked a segment, left its
/// keeper to unlink that name again from the journal; another program's segment of that
/// name, made in between, went with it. The tracker now forgets a name in its journal
/// before it unlinks it (a kill between the two leaks that one segment).
#[test]
fn a_tracker_killed_in_its_clean_up_leaves_a_name_made_again_since() {
    let _w = watchdog(LIMIT);
    let prefix = format!("mp-test-clean-up-{}-", std::process::id());
    let left = format!("{prefix}left");
    let mut inner = Command::new(std::env::current_exe().unwrap());
    inner
        .args(["a_tracker_killed_in_its_clean_up_inner", "--exact", "--nocapture", "--test-threads=1"])
        .env("MP_TEST_CLEAN_UP", &prefix)
        .env("MULTIPROC_CRASH_AT", "stop:tracker.clean_up.unlinked")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY (test): `prctl` is async-signal-safe and touches nothing of the parent's.
    unsafe {
        inner.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Its stdout ends with its main process (the tracker's is /dev/null).
    let out = inner.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("INNER-DONE"), "{stdout}");
    let tracker: u32 = stdout
        .lines()
        .find_map(|line| line.split("tracker ").nth(1)?.trim().parse().ok())
        .expect("the inner test's tracker");
    /// Kills the trackers' process group (the tracker, its keepers) however this test ends.
    struct KillGroup(u32);
    impl Drop for KillGroup {
        fn drop(&mut self) {
            // SAFETY (test): kill(2) on the process group of the inner family's tracker.
            unsafe { libc::kill(-(self.0 as i32), libc::SIGKILL) };
        }
    }
    let _cleanup = KillGroup(tracker);
    let keeper = tracker_child(tracker, None);
    assert!(eventually(LIMIT, || process_state(tracker) == Some('T')), "the tracker stopped in its clean-up");
    assert!(!shm_exists(&left), "the tracker unlinked {left}");
    // Another program makes a segment of that name.
    std::fs::File::create_new(format!("/dev/shm/{left}")).unwrap();
    kill_tracker_process(tracker);
    // The keeper takes over, and ends (or stops at the point: it unlinked something).
    assert!(eventually(LIMIT, || !pid_running(keeper) || process_state(keeper) == Some('T')));
    let kept = shm_exists(&left);
    drop(_cleanup);
    let _ = std::fs::remove_file(format!("/dev/shm/{left}"));
    assert!(kept, "the keeper unlinked the name the tracker had unlinked, made again since");
}

/// The size of the fresh-named segments the killed creates of the test below make: odd,
/// which no other test's is, and different in each run (from the outer test's pid), so
/// that runs side by side (other worktrees on this machine) never take each other's for
/// theirs (review61 L3).
fn odd_size(run: u32) -> usize {
    3 * 4096 + 1 + 2 * (run as usize % 2000)
}

/// The segments in `/dev/shm` of `size` bytes.
fn segments_sized(size: usize) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            (e.metadata().ok()?.len() == size as u64).then(|| e.file_name().into_string().ok()).flatten()
        })
        .collect()
}

/// Dies at `point` inside a `SharedMemory::create` of a fresh name (`name` `None`) or of
/// `name`.
fn create_dying_at((point, name, size): (String, Option<String>, usize)) {
    multiproc::__private::crash_at(&point);
    let _ = match name {
        Some(name) => SharedMemory::builder().name(name).size(size).create(),
        None => SharedMemory::create(size),
    };
}

/// Dies at `point` inside the create of a shared memory manager's block.
fn block_dying_at((blocks, point, size): (multiproc::SharedMemoryBlocks, String, usize)) {
    multiproc::__private::crash_at(&point);
    let _ = blocks.shared_memory(size);
}

/// Run only by the test below, in a family of its own: children killed inside creates (a
/// fresh name's, a name the outer test chose, a shared memory manager's block).
#[test]
fn a_child_killed_inside_a_create_inner() {
    let Some(size) = std::env::var_os("MP_TEST_KILLED_IN_CREATE") else { return };
    let size: usize = size.to_str().unwrap().parse().unwrap();
    let named = std::env::var("MP_TEST_KILLED_IN_CREATE_NAME").unwrap();
    for (point, name) in [("shared_memory.create.opened", None), ("shared_memory.create.opened", Some(named))] {
        let child = Process::new(create_dying_at, (point.to_string(), name.clone(), size)).start().unwrap();
        assert_eq!(child.wait(), -libc::SIGABRT, "the child did not die in its create of {name:?} at {point}");
    }
    let smm = multiproc::SharedMemoryManager::start().unwrap();
    let point = "shared_memory.create.made".to_string();
    let child = Process::new(block_dying_at, (smm.blocks(), point, size)).start().unwrap();
    assert_eq!(child.wait(), -libc::SIGABRT, "the child did not die in its block's create");
    // Not shut down: its server dies with this process, unlinking nothing, as in a family
    // killed.
    std::mem::forget(smm);
    println!("INNER-DONE");
}

/// A process killed inside a `SharedMemory::create` (or a shared memory manager's) once
/// its segment's name is in `/dev/shm`: the segment goes with its family, as every tracked
/// one does. A fresh name's was made before it was registered with the tracker, so a kill
/// between left it in `/dev/shm` for ever (the manager's too, its server dead with the
/// family, without a shutdown: audh44 F2); a name the caller chose was registered only
/// once its pages were all allocated (seconds for a large one), and a kill at
/// `shared_memory.create.opened`, before they are, left it (review61 M3).
#[test]
fn a_process_killed_inside_a_create_leaves_nothing_in_dev_shm() {
    let _w = watchdog(LIMIT);
    let size = odd_size(std::process::id());
    let named = format!("mp-test-killed-in-create-{}", std::process::id());
    let ours = || [segments_sized(size), segments_named(&named)].concat();
    // Removed as files: a segment killed before its allocation is empty, which no
    // `SharedMemory` opens.
    let remove = |names: &[String]| {
        for name in names {
            let _ = std::fs::remove_file(std::path::Path::new("/dev/shm").join(name));
        }
    };
    // Left by an aborted run of this pid's: not this run's.
    remove(&ours());
    // Its end waits for the tracker's, which holds its stderr: the tracker's line is in.
    let stderr = common::run_inner_test_stderr(
        "a_child_killed_inside_a_create_inner",
        &[("MP_TEST_KILLED_IN_CREATE", &size.to_string()), ("MP_TEST_KILLED_IN_CREATE_NAME", &named)],
    );
    // The inner family is gone; its tracker cleans up once it sees so.
    let cleaned = eventually(Duration::from_secs(20), || ours().is_empty());
    let left = ours();
    remove(&left);
    assert!(cleaned, "left in /dev/shm by the killed creates: {left:?}");
    // The fresh name's segment, empty and named at random, is found by neither its size nor
    // a prefix: the tracker says it unlinked it, beside the block's (review67 T-M2).
    let unlinked: Vec<&str> = stderr
        .lines()
        .find_map(|line| line.split_once("left behind: "))
        .map_or(vec![], |(_, names)| names.split(", ").collect());
    let fresh = |name: &&&str| {
        name.strip_prefix("mp-").is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    assert!(
        unlinked.contains(&named.as_str()) && unlinked.iter().filter(fresh).count() == 2 && unlinked.len() == 3,
        "the tracker unlinked {unlinked:?}, not the named segment and two fresh ones (the fresh create's, the \
         block's): {stderr}"
    );
}

/// A thread that panics holding a value's or an array's guard unlocks it as it unwinds:
/// no poisoning (as Python's lock; the docs of `Value::lock` and `Array::lock` say so), the
/// next guard says nothing of it (`owner_died` is for a dead process), and what was written
/// before the panic stays. With a user lock, that lock is released too.
#[test]
fn a_panic_holding_a_guard_unlocks_it_without_poisoning_and_keeps_what_was_written() {
    let _w = watchdog(LIMIT);
    let v = multiproc::Value::new(0u64).unwrap();
    let a = multiproc::Array::<u32>::new(4).unwrap();
    let lock = multiproc::Lock::new().unwrap();
    let locked = multiproc::Value::with_lock(0u32, lock.clone()).unwrap();
    let panicked = std::thread::scope(|s| {
        s.spawn(|| {
            let mut g = v.lock();
            *g = 1;
            let mut e = a.lock();
            e[0] = 7;
            *locked.lock() = 5;
            let mut l = locked.lock();
            *l = 6;
            panic!("half-way through {:?} and {:?}", *g, &*e);
        })
        .join()
        .is_err()
    });
    assert!(panicked);
    let g = v.lock_timeout(Duration::from_secs(10)).expect("the value is unlocked");
    assert_eq!((*g, g.owner_died()), (1, false));
    drop(g);
    let e = a.lock();
    assert_eq!((e.to_vec(), e.owner_died()), (vec![7, 0, 0, 0], false));
    drop(e);
    assert!(!lock.locked());
    assert_eq!(locked.get(), 6);
}
