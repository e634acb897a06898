//! The progress bar of pool calls, as a user sees it: run the `progress` example with its
//! output on a terminal (a pseudo-terminal here) and on a pipe.

mod common;

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::watchdog;

fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join(name)
}

/// A new pseudo-terminal: (controller, the terminal's file).
fn pty() -> (std::fs::File, OwnedFd) {
    // SAFETY: plain libc calls on a descriptor we own; ptsname_r writes into our buffer
    // of the size given.
    unsafe {
        let controller = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(controller >= 0);
        assert_eq!(libc::grantpt(controller), 0);
        assert_eq!(libc::unlockpt(controller), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(controller, name.as_mut_ptr(), name.len()), 0);
        let terminal = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(terminal >= 0);
        (std::fs::File::from_raw_fd(controller), OwnedFd::from_raw_fd(terminal))
    }
}

/// Runs the example with stdout and stderr on one terminal; returns what it showed.
fn on_a_terminal() -> String {
    on_a_terminal_with(&[])
}

/// Like `on_a_terminal`, with the example's arguments.
fn on_a_terminal_with(args: &[&str]) -> String {
    let binary = example("progress");
    assert!(binary.exists(), "{} is missing: `cargo test` builds the examples first", binary.display());
    let (mut controller, terminal) = pty();
    let mut child = Command::new(&binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(terminal.try_clone().unwrap())
        .stderr(terminal)
        .spawn()
        .unwrap();
    // Reads until the terminal's last holder (the example and its workers) is gone: EIO.
    let mut shown = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match controller.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => shown.extend_from_slice(&buf[..n]),
        }
    }
    assert!(child.wait().unwrap().success());
    String::from_utf8_lossy(&shown).into_owned()
}

#[test]
fn imap_over_a_vec_shows_a_bar_with_its_total() {
    let _w = watchdog(Duration::from_secs(60));
    let shown = on_a_terminal();
    let imap = &shown[..shown.find("imap done").expect(&shown)];
    assert!(imap.contains("200/200"), "{imap:?}");
}

#[test]
fn the_output_after_a_bar_starts_on_a_line_of_its_own() {
    let _w = watchdog(Duration::from_secs(60));
    let shown = on_a_terminal();
    // `rfind`: "map done" is also in "imap done".
    for line in ["imap done", "map done"] {
        let at = shown.rfind(line).expect(&shown);
        assert!(shown[..at].ends_with('\n'), "{line} is glued to the bar: {:?}", &shown[at.saturating_sub(80)..]);
    }
}

#[test]
fn the_error_after_a_failed_map_starts_on_a_line_of_its_own() {
    let _w = watchdog(Duration::from_secs(60));
    let shown = on_a_terminal_with(&["fail"]);
    let at = shown.rfind("map failed: ").expect(&shown);
    assert!(shown[..at].ends_with('\n'), "the error is glued to the bar: {:?}", &shown[at.saturating_sub(80)..]);
    assert!(shown[at..].contains("no square for 100"), "{shown:?}");
}

#[test]
fn no_escape_codes_on_a_non_terminal() {
    let _w = watchdog(Duration::from_secs(60));
    let out = Command::new(example("progress")).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!out.stderr.contains(&0x1b), "{:?}", String::from_utf8_lossy(&out.stderr));
    assert!(!out.stdout.contains(&0x1b), "{:?}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "imap done: 200\nmap done: 200\n");
}
