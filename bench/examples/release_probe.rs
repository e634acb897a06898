//! A probe of what an object's release costs while a Fork pool's zygote keeps a fork record
//! (review77 L4): `release_probe HELD POOL ITERS THREADS` holds `HELD` values while a Fork
//! pool is built (`POOL` 1) or not (0), then each of `THREADS` threads creates and drops a
//! `Value` `ITERS` times; prints the nanoseconds per create+drop.

use multiproc::{Pool, StartMethod, Value};
use std::time::Instant;

fn main() {
    multiproc::init();
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: u64| args.get(i).map_or(default, |s| s.parse().expect("a number"));
    let (held, pool, iters, threads) = (arg(1, 1), arg(2, 1), arg(3, 200_000), arg(4, 1));
    let kept: Vec<Value<u64>> = (0..held).map(|i| Value::new(i).expect("value")).collect();
    let pool = (pool == 1).then(|| Pool::builder().processes(1).start_method(StartMethod::Fork).build().expect("pool"));
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for i in 0..iters {
                    drop(Value::new(i).expect("value"));
                }
            });
        }
    });
    let ns = t.elapsed().as_nanos() as f64 / (iters * threads) as f64;
    println!("{ns:.1}");
    drop(pool);
    drop(kept);
}
