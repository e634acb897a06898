//! A probe for `valgrind --tool=callgrind` / `perf record` of the claims path (`map` with
//! chunk size 1): `claims_probe WORKERS ITEMS ROUNDS` maps `identity` over `0..ITEMS`
//! `ROUNDS` times on a pool of `WORKERS` fork-started workers (after one warm-up map). Under
//! callgrind each worker writes its own profile (`--callgrind-out-file=cg.%p`): the worker
//! with the most instructions ran the items; divide by ITEMS x ROUNDS for a per-item cost.
//! `claims_probe WORKERS ITEMS ROUNDS pair` maps `swap` over `(u64, u64)` pairs instead: not
//! a primitive type, so each item takes the codec (and its unwinding guards, fix86).

use multiproc::{MapOptions, Pool, StartMethod};

fn identity(x: u64) -> u64 {
    x
}

fn swap((a, b): (u64, u64)) -> (u64, u64) {
    (b, a)
}

fn main() {
    multiproc::init();
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: u64| args.get(i).map_or(default, |s| s.parse().expect("a number"));
    let (workers, items, rounds) = (arg(1, 1) as usize, arg(2, 100_000), arg(3, 1));
    let pool = Pool::builder().processes(workers).start_method(StartMethod::Fork).build().expect("pool");
    pool.map_with(identity, 0..2000, MapOptions::new().chunksize(1)).expect("warm-up");
    let pairs = args.get(4).is_some_and(|a| a == "pair");
    for _ in 0..rounds {
        let n = if pairs {
            pool.map_with(swap, (0..items).map(|i| (i, i)), MapOptions::new().chunksize(1)).expect("map").len()
        } else {
            pool.map_with(identity, 0..items, MapOptions::new().chunksize(1)).expect("map").len()
        };
        assert_eq!(n, items as usize);
    }
}
