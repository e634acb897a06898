//! Errors as a user reads them: a child's or a pool task's panic returned from `main`
//! (`fn main() -> Result<(), multiproc::Error>`) or unwrapped there, for every start
//! method. Each case runs the `main_error` example and reads its stderr.

mod common;

use std::process::Command;
use std::time::Duration;

use common::watchdog;
use multiproc::{JoinError, Pool, Process, StartMethod, TaskError};

multiproc::test_support!();

const START_METHODS: [&str; 3] = ["forkserver", "spawn", "fork"];

/// The examples directory next to this test binary (`target/<profile>/examples`).
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join(name)
}

/// Runs `main_error` with `mode`, the start method `method` and `RUST_BACKTRACE` (unset
/// when `None`); checks it exits with `code` and returns its stderr.
fn run(mode: &str, method: &str, backtrace: Option<&str>, code: i32) -> String {
    let binary = example("main_error");
    assert!(binary.exists(), "{} is missing: `cargo test` builds the examples first", binary.display());
    let mut command = Command::new(&binary);
    command.arg(mode).env("MULTIPROC_START_METHOD", method);
    command.env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE");
    if let Some(value) = backtrace {
        command.env("RUST_BACKTRACE", value);
    }
    let out = command.output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(code), "{mode} ({method}): {stderr}");
    stderr
}

/// What `main`'s returned error printed (after the child's own panic message).
fn returned_error(stderr: &str) -> &str {
    &stderr[stderr.rfind("Error: ").unwrap_or_else(|| panic!("no returned error in {stderr}"))..]
}

/// The name a panicking child of `mode` reports.
fn process_of(mode: &str) -> &'static str {
    if mode.contains("pool") || mode.contains("task") { "PoolWorker-1" } else { "Process-1" }
}

#[test]
fn a_panic_returned_from_main_prints_a_few_lines_whatever_the_start_method() {
    let _w = watchdog(Duration::from_secs(120));
    for method in START_METHODS {
        for mode in ["panic", "pool"] {
            let stderr = run(mode, method, None, 1);
            assert!(stderr.len() < 1024, "{mode} ({method}): {} bytes of stderr: {stderr}", stderr.len());
            let error = returned_error(&stderr);
            let process = process_of(mode);
            assert!(
                error.starts_with(&format!("Error: process '{process}' panicked at ")),
                "{mode} ({method}): {error}"
            );
            assert!(error.contains("main_error.rs:"), "{mode} ({method}): the location: {error}");
            assert!(error.contains("the work failed"), "{mode} ({method}): {error}");
            assert!(error.lines().count() <= 4, "{mode} ({method}): {error}");
            assert!(!error.contains("stack backtrace"), "{mode} ({method}): {error}");
            assert!(error.contains("RUST_BACKTRACE=1"), "{mode} ({method}): the hint: {error}");
        }
    }
}

#[test]
fn a_panic_returned_from_main_shows_the_childs_backtrace_when_rust_backtrace_asks() {
    let _w = watchdog(Duration::from_secs(120));
    for method in START_METHODS {
        for mode in ["panic", "pool"] {
            let stderr = run(mode, method, Some("1"), 1);
            let error = returned_error(&stderr);
            assert!(error.contains("stack backtrace"), "{mode} ({method}): {error}");
            assert!(error.contains("main_error::work"), "{mode} ({method}): the child's frames: {error}");
        }
    }
}

#[test]
fn the_childs_backtrace_is_short_unless_rust_backtrace_is_full() {
    let _w = watchdog(Duration::from_secs(120));
    for mode in ["panic", "pool"] {
        // As std's own short backtrace: from the panic to the target, none of the frames
        // of multiproc's start-up that ran the target.
        let stderr = run(mode, "forkserver", Some("1"), 1);
        let error = returned_error(&stderr);
        assert!(error.contains("main_error::work"), "{mode}: {error}");
        assert!(!error.contains("panics::catching"), "{mode}: {error}");
        assert!(!error.contains("lang_start"), "{mode}: {error}");
        assert!(error.contains("RUST_BACKTRACE=full"), "{mode}: the hint: {error}");
        let stderr = run(mode, "forkserver", Some("full"), 1);
        let error = returned_error(&stderr);
        assert!(error.contains("main_error::work"), "{mode}: {error}");
        assert!(error.contains("panics::catching"), "{mode}: {error}");
    }
}

#[test]
fn a_panic_unwrapped_in_main_prints_a_few_lines() {
    let _w = watchdog(Duration::from_secs(120));
    for method in START_METHODS {
        for mode in ["unwrap-join", "unwrap-task"] {
            // 101: Rust's exit code for a panic in `main`.
            let stderr = run(mode, method, None, 101);
            assert!(stderr.len() < 1024, "{mode} ({method}): {} bytes of stderr: {stderr}", stderr.len());
            let unwrapped = &stderr[stderr.find("thread 'main'").expect(&stderr)..];
            let process = process_of(mode);
            assert!(unwrapped.contains(&format!("process '{process}' panicked at ")), "{mode} ({method}): {unwrapped}");
            assert!(unwrapped.contains("the work failed"), "{mode} ({method}): {unwrapped}");
            assert!(!unwrapped.contains("Panicked("), "{mode} ({method}): {unwrapped}");
            assert!(!unwrapped.contains("PanicInfo"), "{mode} ({method}): {unwrapped}");
            assert!(!unwrapped.contains("stack backtrace"), "{mode} ({method}): {unwrapped}");
        }
    }
}

#[test]
fn a_childs_panic_message_names_the_process_whatever_the_start_method() {
    let _w = watchdog(Duration::from_secs(120));
    for method in START_METHODS {
        for mode in ["panic", "pool"] {
            let stderr = run(mode, method, None, 1);
            // What the child printed when it panicked, before `main` returned.
            let child = &stderr[..stderr.rfind("Error: ").expect(&stderr)];
            let process = process_of(mode);
            assert!(child.contains(&format!("process '{process}' panicked at ")), "{mode} ({method}): {child}");
            assert!(child.contains("the work failed"), "{mode} ({method}): {child}");
            assert!(!child.contains("thread '"), "{mode} ({method}): {child}");
        }
    }
}

fn fail(message: String) -> u32 {
    panic!("{message}");
}

#[test]
fn a_panic_names_the_process_by_its_given_name() {
    let _w = watchdog(Duration::from_secs(60));
    for method in [StartMethod::ForkServer, StartMethod::Spawn] {
        let child = Process::new(fail, "no input".to_string()).name("reader").start_method(method).start().unwrap();
        let Err(JoinError::Panicked(info)) = child.join() else { panic!("{method:?}: the child did not panic") };
        assert_eq!(info.process, "reader", "{method:?}");
        assert!(info.to_string().starts_with("process 'reader' panicked at tests/errors.rs:"), "{method:?}: {info}");
    }
}

#[test]
fn a_task_panic_shows_its_fields_with_the_alternate_debug() {
    let _w = watchdog(Duration::from_secs(60));
    let pool = Pool::new(1).unwrap();
    let err = pool.apply_async(fail, "bad item".to_string()).unwrap().get().unwrap_err();
    let TaskError::Panicked(info) = &err else { panic!("{err:?}") };
    assert_eq!(info.process, "PoolWorker-1");
    assert!(format!("{err:?}").starts_with("process 'PoolWorker-1' panicked at tests/errors.rs:"), "{err:?}");
    // `{:#?}` is for a program that wants every field, the backtrace among them.
    let alternate = format!("{err:#?}");
    assert!(alternate.contains("PanicInfo {") && alternate.contains("backtrace:"), "{alternate}");
}

/// A thread a child starts panics: its message names the thread and the process, as
/// std's names the thread.
#[test]
fn a_panic_of_a_thread_in_a_child_names_the_process() {
    let _w = watchdog(Duration::from_secs(120));
    for method in START_METHODS {
        let stderr = run("thread", method, None, 0);
        let header = "thread 'helper' of process 'Process-1' panicked at examples/main_error.rs:";
        assert!(stderr.contains(header), "{method}: {stderr}");
        assert!(stderr.contains("the helper failed\nnote: run with `RUST_BACKTRACE=1`"), "{method}: {stderr}");
    }
}
