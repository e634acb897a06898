//! Panics as data: a panic in a child's target, or in a pool task, is caught and comes back
//! to the parent as a `PanicInfo` with its message, location and backtrace.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, MutexGuard, Once};

use crate::codec::CodecError;
use crate::error::PanicInfo;
use crate::shm::crash::crash_point;

thread_local! {
    /// `Some` while this thread runs code under [`catching`]: the name to report and the
    /// panic recorded by the hook.
    static CAPTURE: RefCell<Option<(String, Option<PanicInfo>)>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// This child's name (empty in the main process), for panics of threads it starts.
static PROCESS: Mutex<String> = Mutex::new(String::new());

/// This child's name locked: a `Fork` start holds it across the fork, so that its child
/// (which sets it at boot, in [`name_process`]) never inherits it taken by another thread.
/// Nothing is locked under it; a panic hook that finds it taken names no process.
pub(crate) fn lock_process_name() -> MutexGuard<'static, String> {
    PROCESS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child learns its name at boot.
pub(crate) fn name_process(name: String) {
    // The name it replaces (a fork child's parent's) is forgotten, not freed: a fork child
    // calls no `free`.
    std::mem::forget(std::mem::replace(&mut *PROCESS.lock().unwrap_or_else(|e| e.into_inner()), name));
}

/// A panic of a thread of a child outside [`catching`] (a thread the target started),
/// printed as std prints it with the process named: `thread 'x' of process 'Process-1'
/// panicked at ...`. `None` in the main process (std's own message is right there), and
/// when the thread is being torn down.
fn thread_panic_text(info: &std::panic::PanicHookInfo<'_>) -> Option<String> {
    let process = {
        let name = PROCESS.try_lock().ok()?;
        crash_point!("panics.process.locked");
        Some(name).filter(|name| !name.is_empty())?.clone()
    };
    // `thread::current` may panic once the thread's locals are gone; ours tell.
    CAPTURE.try_with(|_| ()).ok()?;
    let thread = std::thread::current();
    let mut text = format!("\nthread '{}' of process '{process}' panicked", thread.name().unwrap_or("<unnamed>"));
    if let Some(l) = info.location() {
        text.push_str(&format!(" at {}:{}:{}", l.file(), l.line(), l.column()));
    }
    text.push_str(&format!(":\n{}\n", payload_message(info.payload())));
    match crate::error::shown_if_asked(&std::backtrace::Backtrace::force_capture().to_string()) {
        Some(backtrace) => text.push_str(&format!("stack backtrace:\n{backtrace}")),
        None => text.push_str("note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"),
    }
    Some(text)
}

/// Installs, once per executable image, the hook that records a panic of code run under
/// [`catching`] and prints it naming the process (`process 'Process-1' panicked at ...`,
/// where Rust would say `thread 'main'`); in a child, a panic of another thread is printed
/// naming the process too (`thread 'x' of process 'Process-1' panicked at ...`); any other
/// panic goes to the hook that was there before. The main process installs it at `init()`, so fork and fork-server children
/// inherit it without touching a page.
pub(crate) fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // `try_with`/`try_borrow_mut`: a panic during thread teardown or inside the
            // recording itself must not panic again.
            let recorded = CAPTURE
                .try_with(|capture| {
                    let mut capture = capture.try_borrow_mut().ok()?;
                    let (process, slot) = capture.as_mut()?;
                    let panic = PanicInfo {
                        process: process.clone(),
                        message: payload_message(info.payload()),
                        location: info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())),
                        backtrace: std::backtrace::Backtrace::force_capture().to_string(),
                    };
                    // Its `Debug` is Rust's panic message with the process for the thread,
                    // and the backtrace when `RUST_BACKTRACE` asks. One write, so that
                    // processes panicking together do not interleave their lines.
                    let text = format!("\n{panic:?}\n");
                    *slot = Some(panic);
                    Some(text)
                })
                .ok()
                .flatten();
            match recorded.or_else(|| thread_panic_text(info)) {
                Some(text) => {
                    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
                }
                None => previous(info),
            }
        }));
    });
}

/// What a child's first [`catching`] does on its thread, done by `init()` on the main
/// thread before the fork server is forked: the hook, and the thread's first local with a
/// destructor. Every child forked from this thread (by the fork server, or a `Fork` start
/// on it) inherits both. Registering the thread's local destructors goes through the
/// dynamic loader, which resolves libc's call to it lazily: otherwise every child would
/// look the symbol up and copy pages of libc and of the heap for it.
pub(crate) fn prepare_for_forks() {
    install_hook();
    CAPTURE.with(|_| ());
}

/// Runs `f`, turning a panic into a `PanicInfo` that names `process`.
pub(crate) fn catching<T>(process: &str, f: impl FnOnce() -> T) -> Result<T, PanicInfo> {
    catching_named(process.to_string(), f).0
}

/// [`catching`] with the name given and given back: a child's runner, whose name was made
/// before its fork, allocates and frees nothing for it.
pub(crate) fn catching_named<T>(process: String, f: impl FnOnce() -> T) -> (Result<T, PanicInfo>, String) {
    install_hook();
    let outer = CAPTURE.with(|c| c.replace(Some((process, None))));
    let result = catch_unwind(AssertUnwindSafe(f));
    let (process, recorded) =
        CAPTURE.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer)).unwrap_or_else(|| (String::new(), None));
    let result = result.map_err(|payload| {
        let info = recorded.unwrap_or_else(|| PanicInfo {
            process: process.clone(),
            message: payload_message(payload.as_ref()),
            location: None,
            backtrace: String::new(),
        });
        drop_payload(payload);
        info
    });
    (result, process)
}

/// Drops a panic's payload, which is user code too (`panic_any` of a value whose `Drop`
/// panics): a panic there, printed by the hook, is caught, and that second payload is
/// forgotten (leaked) rather than dropped, so that nothing unwinds past the catch that
/// caught the first (review155 H1: it killed a manager's worker with its value).
pub(crate) fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// Drops `value`, which holds user values (whose `Drop` is user code) on a thread that
/// must go on (a pool's): a panic there, printed by the hook, stops here, its payload
/// dropped by [`drop_payload`].
pub(crate) fn drop_caught<T>(value: T) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(value))) {
        drop_payload(payload);
    }
}

/// Runs a decoding, with a panic of a `Deserialize` of `T` (user code) as a decode error:
/// the panic hook has printed it, as any thread's. A decoding runs where a panic let
/// through breaks what others rely on: inside a channel's take (the message would stay
/// first, for every later take to panic on) or on the thread that collects a pool's
/// results.
#[inline(always)]
pub(crate) fn decoding<T>(decode: impl FnOnce() -> Result<T, CodecError>) -> Result<T, CodecError> {
    catch_unwind(AssertUnwindSafe(decode)).unwrap_or_else(|payload| {
        let why = payload_message(payload.as_ref());
        drop_payload(payload);
        Err(CodecError::decode_panicked(why).of::<T>())
    })
}

/// The message of a panic payload (`&str` or `String`, as `panic!` makes them).
pub(crate) fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic payload whose drop panics again.
    struct Bomb;

    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("the payload's drop panicked");
        }
    }

    /// A panic whose payload panics when dropped is caught whole: the catch returns its
    /// `PanicInfo`, and the second panic never unwinds past it (review155 H1: it did, out
    /// of `catching` and `decoding`, killing the thread).
    #[test]
    fn a_payload_whose_drop_panics_is_caught_with_its_panic() {
        let caught = catching("test", || std::panic::panic_any(Bomb));
        assert!(caught.is_err());
        let decoded: Result<u8, CodecError> = decoding(|| std::panic::panic_any(Bomb));
        assert!(decoded.is_err());
    }
}
