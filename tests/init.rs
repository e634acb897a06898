//! `init()`: the one line that sets up a family, and what happens without it.
//!
//! This test crate deliberately has no `multiproc::test_support!()`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::watchdog;
use multiproc::{Error, InitError, Process};

fn double(x: u32) -> u32 {
    x * 2
}

#[test]
fn starting_a_process_without_init_is_an_error_that_names_the_fix() {
    let err = Process::new(double, 1).start().unwrap_err();
    assert!(matches!(err, Error::NotInitialized));
    let message = err.to_string();
    assert!(message.contains("multiproc::init()"), "{message}");
    assert!(message.contains("#[multiproc::main]"), "{message}");
    assert!(message.contains("test_support!"), "{message}");
}

#[test]
fn init_after_other_threads_started_is_reported() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || rx.recv());
    match multiproc::try_init() {
        Err(InitError::Late { threads }) => assert!(threads >= 2),
        other => panic!("expected a late-init error, got {other:?}"),
    }
    let message = multiproc::try_init().unwrap_err().to_string();
    assert!(message.contains("first line of `main`"), "{message}");
    drop(tx);
    let _ = other.join();
}

/// The examples directory next to this test binary (`target/<profile>/examples`).
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join(name)
}

#[test]
fn main_never_runs_twice_whatever_the_start_method() {
    let _w = watchdog(Duration::from_secs(60));
    let binary = example("pids");
    assert!(binary.exists(), "{} is missing: `cargo test` builds the examples first", binary.display());
    for method in ["forkserver", "spawn", "fork"] {
        let out = Command::new(&binary).env("MULTIPROC_START_METHOD", method).output().unwrap();
        assert!(out.status.success(), "{method}: {out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.matches("Parent process").count(), 1, "{method}: {stdout}");
        assert_eq!(stdout.matches("Run child process").count(), 1, "{method}: {stdout}");
    }
}

/// Runs the `main_error` example with `arg` and `RUST_BACKTRACE` (unset when `None`);
/// returns its stderr.
fn main_error_stderr(arg: &str, backtrace: Option<&str>) -> String {
    main_error_ends(arg, backtrace, 1)
}

/// Like `main_error_stderr`, for a run that ends with exit code `code`.
fn main_error_ends(arg: &str, backtrace: Option<&str>, code: i32) -> String {
    let binary = example("main_error");
    assert!(binary.exists(), "{} is missing: `cargo test` builds the examples first", binary.display());
    let mut command = Command::new(&binary);
    command.arg(arg).env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE");
    if let Some(value) = backtrace {
        command.env("RUST_BACKTRACE", value);
    }
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(code), "{arg}: {out:?}");
    String::from_utf8(out.stderr).unwrap()
}

/// The part of the stderr that `main`'s returned error printed (after the child's own
/// panic message).
fn returned_error(stderr: &str) -> &str {
    &stderr[stderr.rfind("Error: ").unwrap_or_else(|| panic!("no returned error in {stderr}"))..]
}

#[test]
fn a_child_panic_returned_from_main_reads_as_a_few_lines_without_a_backtrace() {
    let _w = watchdog(Duration::from_secs(60));
    let stderr = main_error_stderr("panic", None);
    let error = returned_error(&stderr);
    assert!(error.contains("the work failed"), "{error}");
    assert!(error.contains("main_error.rs:"), "the location: {error}");
    assert!(error.lines().count() <= 4, "{error}");
    assert!(error.len() < 400, "{} bytes: {error}", error.len());
    assert!(!error.contains("stack backtrace"), "{error}");
    assert!(error.contains("RUST_BACKTRACE=1"), "the hint: {error}");
}

#[test]
fn a_child_panic_returned_from_main_shows_its_backtrace_when_rust_backtrace_asks() {
    let _w = watchdog(Duration::from_secs(60));
    let error = main_error_stderr("panic", Some("1")).to_string();
    let error = returned_error(&error);
    assert!(error.contains("the work failed"), "{error}");
    assert!(error.contains("stack backtrace"), "{error}");
    assert!(error.contains("main_error::work"), "the child's frames: {error}");
    let error = main_error_stderr("panic", Some("0"));
    assert!(!returned_error(&error).contains("stack backtrace"), "{error}");
}

#[test]
fn not_initialized_returned_from_main_names_the_fix() {
    let _w = watchdog(Duration::from_secs(60));
    let stderr = main_error_stderr("uninit", None);
    let error = returned_error(&stderr);
    assert!(error.contains("multiproc::init()"), "{error}");
    assert!(error.contains("#[multiproc::main]"), "{error}");
}

#[test]
fn not_initialized_unwrapped_names_the_fix() {
    let err = Process::new(double, 1).start().unwrap_err();
    let debug = format!("{err:?}");
    assert!(debug.contains("multiproc::init()"), "{debug}");
}

#[test]
fn a_child_panic_message_names_the_process() {
    let _w = watchdog(Duration::from_secs(60));
    let stderr = main_error_stderr("panic", None);
    let child = &stderr[..stderr.rfind("Error: ").unwrap()];
    assert!(child.contains("process 'Process-1' panicked at"), "{child}");
    assert!(child.contains("the work failed"), "{child}");
    assert!(!child.contains("thread 'main'"), "{child}");
}

#[test]
fn child_init_runs_in_every_child_whatever_the_start_method() {
    let _w = watchdog(Duration::from_secs(60));
    let binary = example("child_init");
    assert!(binary.exists(), "{} is missing: `cargo test` builds the examples first", binary.display());
    for method in ["forkserver", "spawn", "fork"] {
        let out = Command::new(&binary).env("MULTIPROC_START_METHOD", method).output().unwrap();
        assert!(out.status.success(), "{method}: {out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(stdout.contains("[INFO/MainProcess] starting a worker"), "{method}: {stdout}");
        assert!(stdout.contains("[INFO/Process-1] doing some work on 7"), "{method}: {stdout}");
    }
}

#[test]
fn init_after_threads_panics_at_the_callers_line() {
    let _w = watchdog(Duration::from_secs(60));
    // 101: Rust's exit code for a panic in `main`.
    let stderr = main_error_ends("late", None, 101);
    assert!(stderr.contains("panicked at examples/main_error.rs:"), "{stderr}");
    assert!(stderr.contains("first line of `main`"), "{stderr}");
}
