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
