//! [`log_to_stderr`]: Python's `multiprocessing.log_to_stderr`, on the `log` crate.
//!
//! The crate reports what it does (a child started, a target called, a process exiting, a
//! pool worker replaced) as `log` records with targets under `multiproc`. A program with a
//! logger of its own sees them there; [`log_to_stderr`] is the logger for a program without
//! one, and it follows the program into every child.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use log::{LevelFilter, Log, Metadata, Record};

use crate::shm::crash::crash_point;

/// The level [`log_to_stderr`] asked for (0: it was not called), passed to every child.
static ASKED: AtomicU8 = AtomicU8::new(0);

/// This process's name as the records show it.
static NAME: Mutex<String> = Mutex::new(String::new());

struct Stderr;

static LOGGER: Stderr = Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // `NAME` only while its copy is made: no other lock and no code of the program's
        // (`args`' formatting) under it, so that a `Fork` start may hold it across the fork.
        let mut line = {
            let name = NAME.lock().unwrap_or_else(|e| e.into_inner());
            crash_point!("logging.name.locked");
            let name = if name.is_empty() { "MainProcess" } else { &name };
            format!("[{}/{name}] ", record.level())
        };
        let _ = writeln!(line, "{}", record.args());
        // One write per record, so that processes logging together do not mix their lines.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

fn encode(level: LevelFilter) -> u8 {
    level as u8 + 1
}

fn decode(code: u8) -> Option<LevelFilter> {
    LevelFilter::iter().nth(usize::from(code.checked_sub(1)?))
}

fn install(level: LevelFilter) -> Result<(), log::SetLoggerError> {
    log::set_logger(&LOGGER)?;
    log::set_max_level(level);
    Ok(())
}

/// Logs to stderr, as `[LEVEL/process name] message`, in this process and in every child it
/// starts from now on (of any start method, and their children): Python's
/// `multiprocessing.log_to_stderr(level)`.
///
/// It installs a logger of the [`log`](https://docs.rs/log) crate for the whole program
/// (the records of every crate, multiproc's own among them: a child started, its target
/// called, its exit code, a pool worker replaced); `level` is the most verbose level
/// shown. A program that has a logger already (`env_logger`, `tracing`'s `log` bridge)
/// gets an error and keeps its own, where multiproc's records go too (their targets start
/// with `multiproc`); to have that logger in children as well, install it in
/// [`child_init`](crate::InitBuilder::child_init). Records made before a logger is
/// installed are lost (the `log` crate's rule): among them, the report of
/// [`init`](crate::init) on segments a family killed whole left in `/dev/shm` and this start
/// unlinked.
///
/// # Examples
///
/// ```
/// fn work(x: u32) -> u32 {
///     log::info!("working on {x}"); // printed as "[INFO/Process-1] working on 7"
///     x * 2
/// }
///
/// multiproc::init();
/// multiproc::log_to_stderr(log::LevelFilter::Info).unwrap();
/// log::info!("starting"); // "[INFO/MainProcess] starting"
/// assert_eq!(multiproc::Process::new(work, 7).start()?.join()?, 14);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn log_to_stderr(level: LevelFilter) -> Result<(), log::SetLoggerError> {
    install(level)?;
    ASKED.store(encode(level), Ordering::Relaxed);
    Ok(())
}

/// What a new child must know: the level, if [`log_to_stderr`] was called.
pub(crate) fn asked() -> Option<u8> {
    match ASKED.load(Ordering::Relaxed) {
        0 => None,
        code => Some(code),
    }
}

/// The process's name locked: a `Fork` start holds it across the fork, so that its child
/// (which sets it at boot, in [`adopt`]) never inherits it taken by another thread. Nothing
/// is locked under it, by its holder here or by a logging thread.
pub(crate) fn lock_name() -> MutexGuard<'static, String> {
    NAME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child takes its name and, if its parent logged to stderr, the same logger (at boot,
/// before its `child_init`).
pub(crate) fn adopt(name: String, asked: Option<u8>) {
    // The name it replaces (a fork child's parent's) is forgotten, not freed: a fork child
    // calls no `free` (HACKING, "Helper processes").
    std::mem::forget(std::mem::replace(&mut *NAME.lock().unwrap_or_else(|e| e.into_inner()), name));
    if let Some(level) = asked.and_then(decode) {
        ASKED.store(encode(level), Ordering::Relaxed);
        // A fork child has its parent's logger already: that error is expected.
        let _ = install(level);
        log::set_max_level(level);
    }
}
