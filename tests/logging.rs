//! `log_to_stderr`: Python's `multiprocessing.log_to_stderr()`. One call in `main` and every
//! process of the program, of every start method, logs to stderr as
//! `[LEVEL/process name] message`, with multiproc's own records among the program's. Each
//! case runs the `log_to_stderr` example and reads its stderr.

mod common;

use std::process::Command;
use std::time::Duration;

use common::watchdog;

multiproc::test_support!();

const START_METHODS: [&str; 3] = ["forkserver", "spawn", "fork"];

/// Runs the `log_to_stderr` example with `arg` and the start method `method`; checks that
/// it succeeded and returns its stderr.
fn run(arg: &str, method: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().unwrap().parent().unwrap().join("examples").join("log_to_stderr");
    assert!(binary.exists(), "{} is missing: `cargo test` builds the examples first", binary.display());
    let out =
        Command::new(&binary).arg(arg).env("MULTIPROC_START_METHOD", method).env_remove("RUST_LOG").output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{arg} ({method}): {stderr}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "squares: [1, 4, 9]\n", "{arg} ({method})");
    stderr
}

fn has_line(stderr: &str, line: &str) -> bool {
    stderr.lines().any(|l| l == line)
}

#[test]
fn every_process_logs_under_its_own_name_whatever_the_start_method() {
    let _w = watchdog(Duration::from_secs(120));
    for method in START_METHODS {
        let stderr = run("info", method);
        for line in [
            "[INFO/MainProcess] starting",
            "[INFO/Process-1] child process calling its target",
            "[INFO/Process-1] hello, world",
            "[INFO/Process-1] process exiting with exit code 0",
            "[INFO/PoolWorker-1] child process calling its target",
        ] {
            assert!(has_line(&stderr, line), "{method}: no line {line:?} in\n{stderr}");
        }
        assert!(!stderr.contains("[DEBUG/"), "{method}: debug records at level info:\n{stderr}");
    }
}

#[test]
fn the_level_reaches_the_children_and_shows_what_multiproc_does() {
    let _w = watchdog(Duration::from_secs(120));
    for method in START_METHODS {
        let stderr = run("debug", method);
        for line in ["[DEBUG/PoolWorker-1] squaring 2", "[DEBUG/MainProcess] terminating pool"] {
            assert!(has_line(&stderr, line), "{method}: no line {line:?} in\n{stderr}");
        }
        let started = "[DEBUG/MainProcess] started Process-1 (pid ";
        assert!(stderr.lines().any(|l| l.starts_with(started)), "{method}: no start record in\n{stderr}");
    }
}

#[test]
fn without_it_nothing_is_logged() {
    let _w = watchdog(Duration::from_secs(60));
    let stderr = run("quiet", "forkserver");
    assert_eq!(stderr, "", "a program without a logger printed records");
}

/// The program's own logger stays: `log_to_stderr` then says no (the `log` crate has one
/// logger per program).
#[test]
fn a_second_logger_is_refused() {
    multiproc::log_to_stderr(log::LevelFilter::Warn).expect("the first logger is installed");
    assert!(multiproc::log_to_stderr(log::LevelFilter::Info).is_err());
}

/// A program that starts a family while a journal of a family killed whole is left in
/// `/dev/shm` (here a hand-made one, in a `/dev/shm` of its own: a mount namespace) takes
/// it up, unlinks the segment it held, and prints nothing without a logger.
///
/// Before, the take-up said so on stderr in whatever program started next (review97 L4:
/// this example's `quiet` run printed "unlinked 1 shared memory segment(s)…", and a test
/// that wants an empty stderr failed beside another's family killed whole).
#[test]
fn a_journal_taken_up_at_the_start_prints_nothing_without_a_logger() {
    let _w = watchdog(Duration::from_secs(60));
    // The journal's first file: generation 1 (8 bytes, little-endian), then a registration.
    // Nothing is left after: neither it nor its segment (the take-up), nor the program's
    // own journal (its tracker's end; review104 L2: no test looked), nor a lone second file
    // (a naming cut short: review97 L3, review104 L4).
    let script = format!(
        r#"cd /dev/shm && umask 077 && : > left-by-a-killed-family && : > mp-journal-v1-0000000000000000-1
        : > mp-journal-v1-1111111111111111-1
        printf '\001\000\000\000\000\000\000\000Rleft-by-a-killed-family\n' > mp-journal-v1-0000000000000000-0
        "$0" quiet || exit 1
        {LEFT_IN_DEV_SHM}"#
    );
    let Some((stdout, stderr)) = in_a_fresh_dev_shm(&script) else { return };
    assert_eq!(stdout, "squares: [1, 4, 9]\n", "the journals and the segment went: {stderr}");
    assert_eq!(stderr, "", "a program without a logger printed the take-up");
}

/// Runs `script` as root in a mount namespace of its own, `$0` the `log_to_stderr`
/// example; `None` when not root (a tmpfs of our own on `/dev/shm` needs it). In a pid
/// namespace of its own too (a `/proc` of its own mounted), whose first process, the
/// script's shell, `unshare` kills when it dies (`--kill-child`), as it dies with this test
/// process (`setpriv --pdeathsig`): the kernel then ends every process of the namespace. A
/// watchdog's abort orphaned them (review105 L4).
fn in_a_fresh_dev_shm(script: &str) -> Option<(String, String)> {
    // SAFETY (test): geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: a tmpfs of our own on /dev/shm needs root (a mount namespace)");
        return None;
    }
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().unwrap().parent().unwrap().join("examples").join("log_to_stderr");
    let out = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "unshare", "-m", "-p", "--kill-child", "--mount-proc"])
        .args(["sh", "-c", &format!("mount -t tmpfs -o size=1m tmpfs /dev/shm || exit 1\n{script}")])
        .arg(&binary)
        .env("MULTIPROC_START_METHOD", "forkserver")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    Some((stdout.into_owned(), stderr.into_owned()))
}

/// Waits (at most 20 s) until the program's own journal is unnamed, as its tracker does a
/// moment after the program ends, then lists what is left in `/dev/shm`.
const LEFT_IN_DEV_SHM: &str = r#"for i in $(seq 200); do
            ls /dev/shm | grep -q '^mp-journal' || break
            sleep 0.1
        done
        ls /dev/shm"#;

/// A FIFO at the name a killed family's journal registered (anyone can make one in the
/// world-writable `/dev/shm`) stays, and the next program starts and ends as usual; so does
/// its family's own journal go at its end, as the hand-made one at its start.
///
/// Before, the name's check opened it for reading, which waits for a writer: the program
/// hung in `init()` for ever (review104 M1: `timeout` ended it, rc 124).
#[test]
fn a_fifo_at_a_registered_name_neither_hangs_the_start_nor_goes() {
    let _w = watchdog(Duration::from_secs(60));
    let script = format!(
        r#"cd /dev/shm && umask 077 && mkfifo left-fifo && : > mp-journal-v1-0000000000000000-1
        printf '\001\000\000\000\000\000\000\000Rleft-fifo/1:2\n' > mp-journal-v1-0000000000000000-0
        timeout 20 "$0" quiet || {{ echo "rc=$?"; exit 1; }}
        {LEFT_IN_DEV_SHM}"#
    );
    let Some((stdout, stderr)) = in_a_fresh_dev_shm(&script) else { return };
    assert_eq!(stdout, "squares: [1, 4, 9]\nleft-fifo\n", "{stderr}");
    assert_eq!(stderr, "");
}
