//! A tour of multiproc: what Python's `multiprocessing` does, done in Rust.
//!
//! `cargo run --release --example tour`

use std::time::{Duration, Instant};

use multiproc::{JoinError, Process, StartMethod, Value};

fn square(x: u64) -> u64 {
    x * x
}

fn whoami(_: ()) -> String {
    let me = multiproc::current_process();
    let parent = multiproc::parent_process().map(|p| format!("{} (pid {})", p.name(), p.pid())).unwrap_or_default();
    format!("{} (pid {}), child of {parent}", me.name(), me.pid())
}

fn divide(x: i64) -> i64 {
    if x == 0 {
        panic!("division by zero requested");
    }
    100 / x
}

fn crash(_: ()) {
    std::process::abort();
}

fn count_to(args: (Value<u64>, u64)) {
    let (counter, n) = args;
    for _ in 0..n {
        *counter.lock() += 1;
    }
}

fn section(title: &str) {
    println!("\n== {title}");
}

#[multiproc::main]
fn main() -> Result<(), multiproc::Error> {
    section("1. A function in another process");
    let child = Process::new(square, 12).start()?;
    println!("started {} (pid {})", child.name(), child.pid());
    println!("it returned {}", child.join()?);
    println!("it knows who it is: {}", Process::new(whoami, ()).start()?.join()?);

    section("2. Failures are values, not hangs");
    match Process::new(divide, 0).start()?.join() {
        Err(JoinError::Panicked(info)) => {
            println!("a panic came back: {info}");
        }
        other => println!("unexpected: {other:?}"),
    }
    match Process::new(crash, ()).start()?.join() {
        Err(e @ JoinError::Signaled { .. }) => println!("a crash came back: {e}"),
        other => println!("unexpected: {other:?}"),
    }
    let sleeper = Process::new(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 60_000).start()?;
    sleeper.terminate()?;
    println!("a terminated child has exit code {}, as in Python", sleeper.wait());

    section("3. Three ways to start a process");
    for method in multiproc::get_all_start_methods() {
        let runs = if method == StartMethod::Spawn { 20 } else { 50 };
        let t0 = Instant::now();
        for _ in 0..runs {
            Process::new(square, 3).start_method(method).start()?.join()?;
        }
        let each = t0.elapsed() / runs;
        println!("{:<10} start + join: {:>6.0} us", method.name(), each.as_secs_f64() * 1e6);
    }

    section("4. Shared memory: a Value seen by every process");
    let counter = Value::new(0u64)?;
    let workers: Vec<_> =
        (0..4).map(|_| Process::new(count_to, (counter.clone(), 10_000)).start()).collect::<Result<_, _>>()?;
    for w in workers {
        w.join()?;
    }
    println!("four processes each added 10000 under the lock: {}", counter.get());
    assert_eq!(counter.get(), 40_000);

    println!("\nThat was multiproc. Every child is gone: {} left.", multiproc::active_children().len());
    Ok(())
}
