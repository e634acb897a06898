//! Soundness: no safe code can cause undefined behaviour, in whichever process (issue 9).
//! Each test is the program that showed a defect, now asserting the typed error or the
//! correct behaviour.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::watchdog;
use multiproc::{Error, JoinTimeoutError, Process, StartMethod};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(60);

// --- process ---

static SHARED_WITH_A_THREAD: Mutex<u32> = Mutex::new(0);

fn take_the_threads_lock(_: ()) -> u32 {
    *SHARED_WITH_A_THREAD.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn fork_while_another_thread_holds_a_lock_is_refused_with_a_typed_error() {
    let _w = watchdog(LIMIT);
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _guard = SHARED_WITH_A_THREAD.lock().unwrap();
        held_tx.send(()).unwrap();
        let _ = done_rx.recv();
    });
    held_rx.recv().unwrap();
    // A copy of this process would hold the mutex forever: its holder is not copied.
    let started = Process::new(take_the_threads_lock, ()).start_method(StartMethod::Fork).start();
    let outcome = match started {
        Err(Error::ForkWithThreads { threads }) => Ok(threads),
        Err(other) => Err(format!("another error: {other}")),
        Ok(mut child) => {
            let waited = child.join_timeout(Duration::from_secs(4));
            let _ = child.kill();
            Err(match waited {
                Err(JoinTimeoutError::Timeout) => "the fork child is still blocked after 4 s".to_string(),
                other => format!("the fork child ended: {other:?}"),
            })
        }
    };
    done_tx.send(()).unwrap();
    holder.join().unwrap();
    let threads = outcome.unwrap();
    assert!(threads >= 2, "{threads}");
}

fn plus_one(x: u32) -> u32 {
    x + 1
}

/// In a child of the fork server (one thread): starts a thread, tries `Fork` (refused),
/// opts in, forks.
fn fork_beside_a_thread_after_opting_in(_: ()) -> (bool, u32) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let (ready, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (r, s) = (ready.clone(), stop.clone());
    let parked = std::thread::spawn(move || {
        r.store(true, Ordering::Release);
        while !s.load(Ordering::Acquire) {
            std::thread::park();
        }
    });
    while !ready.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    let refused = matches!(
        Process::new(plus_one, 1).start_method(StartMethod::Fork).start(),
        Err(Error::ForkWithThreads { threads: 2 })
    );
    // SAFETY: the other thread is past its start-up and only parks (a futex on its own
    // word) or reads an atomic: it holds no lock; the child takes only the locks of
    // multiproc's boot, which the forking thread holds across the fork.
    unsafe { multiproc::allow_fork_with_threads() };
    let result = Process::new(plus_one, 1).start_method(StartMethod::Fork).start().unwrap().join().unwrap();
    stop.store(true, Ordering::Release);
    parked.thread().unpark();
    parked.join().unwrap();
    (refused, result)
}

#[test]
fn fork_beside_other_threads_needs_the_unsafe_opt_in() {
    let _w = watchdog(LIMIT);
    // In a single-threaded child, so that the opt-in does not reach this test process.
    let child = Process::new(fork_beside_a_thread_after_opting_in, ()).start_method(StartMethod::ForkServer);
    assert_eq!(child.start().unwrap().join().unwrap(), (true, 2));
}

/// Builds a shared library with one `fn(u32) -> u32` and loads it; returns that function.
fn function_from_a_shared_library() -> fn(u32) -> u32 {
    let dir = std::env::temp_dir().join(format!("multiproc-soundness-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("foreign.rs");
    std::fs::write(&source, "#[unsafe(no_mangle)]\npub fn multiproc_foreign_triple(x: u32) -> u32 { x * 3 }\n")
        .unwrap();
    let library = dir.join("libforeign.so");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let built = std::process::Command::new(rustc)
        .args(["--edition", "2024", "--crate-type", "cdylib", "-C", "panic=abort", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .unwrap();
    assert!(built.success(), "rustc could not build the test library");
    let path = std::ffi::CString::new(library.to_str().unwrap()).unwrap();
    // SAFETY: a library we just built, whose only code is the function below; it stays
    // loaded (never dlclosed), so the pointer stays valid.
    let function = unsafe {
        let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW);
        assert!(!handle.is_null(), "dlopen failed");
        let symbol = libc::dlsym(handle, c"multiproc_foreign_triple".as_ptr());
        assert!(!symbol.is_null(), "dlsym failed");
        // The symbol is a Rust-ABI `fn(u32) -> u32`, as declared in the source above.
        std::mem::transmute::<*mut libc::c_void, fn(u32) -> u32>(symbol)
    };
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(function(5), 15);
    function
}

#[test]
fn a_function_from_a_shared_library_is_refused_before_anything_runs() {
    let _w = watchdog(LIMIT);
    let triple = function_from_a_shared_library();
    for method in common::METHODS {
        match Process::new(triple, 5).start_method(method).start() {
            Err(Error::NotInExecutable) => {}
            Err(other) => panic!("{method:?}: another error: {other}"),
            Ok(child) => panic!("{method:?}: the child ran something: {:?}", child.join()),
        }
    }
}

/// The test binary, copied and made set-user-ID `nobody`, so that the kernel runs it in
/// secure mode (`AT_SECURE`): its environment comes from a less trusted user.
#[test]
fn a_set_user_id_program_ignores_multiproc_boot() {
    use std::os::unix::fs::PermissionsExt;
    let _w = watchdog(LIMIT);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: making a set-user-ID binary needs root");
        return;
    }
    let dir = std::env::temp_dir().join(format!("multiproc-setuid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join("setuid-copy");
    std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
    std::os::unix::fs::chown(&copy, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    // A forged boot variable: were it trusted, the copy would take itself for a child and
    // read its "boot message" from whatever descriptor 3 is.
    let out = std::process::Command::new(&copy)
        .args(["--list", "--exact", "a_set_user_id_program_ignores_multiproc_boot"])
        .env("MULTIPROC_BOOT", format!("spawn:3:{}", std::process::id()))
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("a_set_user_id_program_ignores_multiproc_boot"),
        "{:?}: {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An item registered by a constructor (`inventory` runs `submit!` from `.init_array`).
pub struct Registered(pub &'static str);

inventory::collect!(Registered);

mod zz_registrations {
    inventory::submit! { super::Registered("registered before main") }
}

fn registered_items(_: ()) -> Vec<String> {
    inventory::iter::<Registered>.into_iter().map(|r| r.0.to_string()).collect()
}

#[test]
fn an_item_registered_by_a_constructor_is_visible_in_children() {
    let _w = watchdog(LIMIT);
    assert_eq!(registered_items(()), ["registered before main"]);
    for method in common::METHODS {
        let items = Process::new(registered_items, ()).start_method(method).start().unwrap().join().unwrap();
        assert_eq!(items, ["registered before main"], "{method:?}");
    }
}
