//! What a child of a `#[multiproc::main]` program runs in: the same runtime as any Rust
//! program (after std's start-up and every constructor), and never `main` itself, with
//! every start method. Each check prints `ok` or panics; `tests/soundness.rs` runs this
//! program (a test binary cannot be it: libtest owns a test's `main`, and cfg(test) builds
//! leave the dispatch before `main`). `alarm` is its watchdog.
//!
//! ```sh
//! cargo run --example child_runtime
//! ```

use multiproc::{JoinError, Process, StartMethod};

const METHODS: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::ForkServer];

fn thread_name(_: ()) -> Option<String> {
    std::thread::current().name().map(str::to_owned)
}

fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 32]);
    if depth == u64::MAX { 0 } else { recurse(depth + 1).wrapping_add(frame[7]) }
}

/// Overflows the stack of a thread the target starts (std gives such a thread an alternate
/// signal stack only once its runtime start-up ran).
fn overflow_in_a_thread(_: ()) {
    let thread = std::thread::Builder::new().stack_size(256 * 1024).spawn(|| recurse(0)).unwrap();
    let _ = thread.join();
}

/// Items registered by constructors (`inventory` runs `submit!` from `.init_array`).
pub struct Registered(pub &'static str);

inventory::collect!(Registered);
inventory::submit! { Registered("registered before main") }

fn registered(_: ()) -> Vec<String> {
    inventory::iter::<Registered>.into_iter().map(|r| r.0.to_owned()).collect()
}

static MAIN_BODY_RAN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn main_body_ran(_: ()) -> bool {
    MAIN_BODY_RAN.load(std::sync::atomic::Ordering::Relaxed)
}

/// Opens a file, names its descriptor in `MULTIPROC_BOOT` as a boot socket, calls
/// `try_init()` again, and reads the file: `init()` acts on the variable only at start-up
/// (here, in a child, from the `init()` that opens `main`, which used the loader's leave
/// once); set later, the descriptor stays the file's.
fn init_after_a_boot_variable_set_later(_: ()) -> Result<String, String> {
    use std::io::{Read, Seek};
    use std::os::fd::AsRawFd;
    let path = std::env::temp_dir().join(format!("mp-child-runtime-{}", std::process::id()));
    std::fs::write(&path, "mine").map_err(|e| e.to_string())?;
    let mut file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
    std::fs::remove_file(&path).map_err(|e| e.to_string())?;
    let value = format!("spawn:{}:{}", file.as_raw_fd(), std::process::id());
    assert_eq!(one_thread(), Ok(true), "the child runs one thread");
    // SAFETY: this process runs one thread (just checked), and this target starts none:
    // nothing reads the environment meanwhile.
    unsafe { std::env::set_var("MULTIPROC_BOOT", value) };
    multiproc::try_init().map_err(|e| e.to_string())?;
    let mut read = String::new();
    file.rewind().map_err(|e| e.to_string())?;
    file.read_to_string(&mut read).map_err(|e| e.to_string())?;
    Ok(read)
}

/// Whether this process runs one thread.
fn one_thread() -> Result<bool, String> {
    Ok(std::fs::read_dir("/proc/self/task").map_err(|e| e.to_string())?.count() == 1)
}

/// A named check, run with each start method.
type Check = (&'static str, fn(StartMethod));

fn cases() -> Vec<Check> {
    vec![
        ("the_main_thread_is_named_main", |method| {
            let name = Process::new(thread_name, ()).start_method(method).start().unwrap().join().unwrap();
            assert_eq!(name.as_deref(), Some("main"), "{method:?}");
        }),
        ("a_thread_of_the_target_that_overflows_its_stack_is_a_stack_overflow", |method| {
            match Process::new(overflow_in_a_thread, ()).start_method(method).start().unwrap().join() {
                Err(JoinError::StackOverflow { .. }) => {}
                other => panic!("{method:?}: {other:?}"),
            }
        }),
        ("constructors_ran_before_the_target", |method| {
            let items = Process::new(registered, ()).start_method(method).start().unwrap().join().unwrap();
            assert_eq!(items, ["registered before main"], "{method:?}");
        }),
        ("init_takes_no_descriptor_from_a_boot_variable_set_after_start_up", |method| {
            let read = Process::new(init_after_a_boot_variable_set_later, ()).start_method(method).start().unwrap();
            assert_eq!(read.join().unwrap(), Ok("mine".to_string()), "{method:?}");
        }),
        ("main_never_runs_in_a_child", |method| {
            assert!(
                !Process::new(main_body_ran, ()).start_method(method).start().unwrap().join().unwrap(),
                "{method:?}"
            );
        }),
    ]
}

#[multiproc::main]
fn main() {
    MAIN_BODY_RAN.store(true, std::sync::atomic::Ordering::Relaxed);
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let mut ran = 0;
    for (name, case) in cases() {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        for method in METHODS {
            // SAFETY: `alarm` only arms a timer; SIGALRM's default action ends the process.
            unsafe { libc::alarm(60) };
            print!("{name} ({method:?}) ... ");
            case(method);
            println!("ok");
            ran += 1;
        }
    }
    // SAFETY: as above; 0 disarms it.
    unsafe { libc::alarm(0) };
    println!("all {ran} checks passed");
}
