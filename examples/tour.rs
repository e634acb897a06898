//! A tour of multiproc: what Python's `multiprocessing` does, done in Rust.
//!
//! `cargo run --release --example tour`

use std::time::{Duration, Instant};

use multiproc::{
    Array, Connection, DictProxy, Event, JoinError, ListProxy, Lock, Manager, MapOptions, Pipe, Pool, Process, Queue,
    ShareableList, SharedMemory, StartMethod, TaskError, Value,
};

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

fn hold_until_killed(args: (Lock, Event)) {
    let (lock, held) = args;
    let _guard = lock.acquire().unwrap();
    held.set();
    std::thread::sleep(Duration::from_secs(60));
}

fn negate(numbers: Array<i32>) {
    for x in numbers.lock().iter_mut() {
        *x = -*x;
    }
}

fn collatz_steps(mut n: u64) -> u32 {
    let mut steps = 0;
    while n != 1 {
        n = if n.is_multiple_of(2) { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

fn crash_on_seven(x: u64) -> u64 {
    if x == 7 {
        std::process::abort();
    }
    x * 2
}

fn produce((q, food): (Queue<Option<String>>, String)) {
    for i in 0..3 {
        q.put(Some(format!("{food} {i}"))).unwrap();
    }
}

fn eat(q: Queue<Option<String>>) -> usize {
    let mut eaten = 0;
    while let Some(item) = q.get().unwrap() {
        println!("ate {item}");
        eaten += 1;
    }
    eaten
}

fn greet(conn: Connection<String>) {
    conn.send("hello through a pipe".to_string()).unwrap();
}

fn sign_in(args: (DictProxy<String, u32>, ListProxy<u64>)) {
    let (visitors, numbers) = args;
    visitors.insert(multiproc::current_process().name().to_string(), std::process::id()).unwrap();
    numbers.reverse().unwrap();
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

    section("5. Locks that survive their holder");
    let lock = Lock::new()?;
    let held = Event::new()?;
    let holder = Process::new(hold_until_killed, (lock.clone(), held.clone())).daemon(true).start()?;
    held.wait()?;
    holder.kill()?;
    println!("the holder was killed (exit code {})", holder.wait());
    if lock.acquire()?.owner_died() {
        println!("the next acquirer got the lock anyway, and was told: the previous holder died holding it");
    } else {
        println!("unexpected: a clean lock");
    }

    section("6. Arrays and named shared memory");
    let numbers = Array::from_slice(&[1, 2, 3])?;
    Process::new(negate, numbers.clone()).start()?.join()?;
    println!("a child negated the array: {:?}", numbers.to_vec());
    let list = ShareableList::new([multiproc::Item::from(42), "hello".into()])?;
    println!("a ShareableList that Python can open by name: {} = {:?}", list.name(), list.to_vec()?);
    list.shm().unlink()?;
    let shm = SharedMemory::create(4096)?;
    println!("a 4 KiB segment in /dev/shm: {} (unlinked by its tracker even after kill -9)", shm.name());
    shm.unlink()?;

    section("7. Producers and consumers: queues and pipes between processes");
    let q = Queue::new()?;
    let bakers: Vec<_> = ["bun", "fried dough stick"]
        .map(|food| Process::new(produce, (q.clone(), food.to_string())).start())
        .into_iter()
        .collect::<Result<_, _>>()?;
    let eater = Process::new(eat, q.clone()).start()?;
    for baker in bakers {
        baker.join()?;
    }
    q.put(None)?; // the sentinel: nothing more to eat
    println!("the eater ate {} things", eater.join()?);
    let (mine, theirs) = Pipe::new()?;
    let child = Process::new(greet, theirs).start()?;
    println!("{}", mine.recv()?);
    child.join()?;
    println!("and then: {:?} (Python's EOFError, not a hang)", mine.recv());
    let lonely: Queue<u32> = Queue::new()?;
    println!("a get nobody can answer: {:?}", lonely.get());

    section("8. A pool that never hangs");
    let pool = Pool::new(multiproc::cpu_count())?;
    let steps = pool.map_with(collatz_steps, 1..=200_000, MapOptions::new().chunksize(5_000).progress(true))?;
    let (longest, start) = steps.iter().zip(1u64..).max().map(|(s, n)| (*s, n)).unwrap_or((0, 0));
    println!("Collatz over 1..=200000 on {} workers: {start} takes the longest, {longest} steps", pool.processes());
    let results: Vec<Result<u64, TaskError>> = pool.imap(crash_on_seven, 0..10)?.collect();
    for (i, r) in results.iter().enumerate().filter(|(_, r)| r.is_err()) {
        println!("task {i}: {}", r.as_ref().unwrap_err());
    }
    println!(
        "the other {} tasks succeeded; the dead worker was replaced ({:?})",
        results.iter().filter(|r| r.is_ok()).count(),
        pool.stats()
    );
    drop(pool);

    section("9. A manager: shared dicts and lists, proxies everywhere");
    let manager = Manager::start()?;
    let visitors = manager.dict::<String, u32>()?;
    let numbers = manager.list_from(0..5u64)?;
    Process::new(sign_in, (visitors.clone(), numbers.clone())).start()?.join()?;
    println!("the child signed in {:?} and reversed the list: {:?}", visitors.items()?, numbers.to_vec()?);
    println!("the manager serves from pid {}; it shuts down when dropped", manager.pid().unwrap_or(0));
    drop(manager);

    println!("\nThat was multiproc. Every child is gone: {} left.", multiproc::active_children().len());
    Ok(())
}
