use std::time::Instant;
use multiproc::{MapOptions, Pool, StartMethod};
fn identity(x: u64) -> u64 { x }
fn die_on_7(x: u64) -> u64 {
    if x == 7 { unsafe { libc::kill(std::process::id() as i32, libc::SIGKILL); } }
    x
}
fn main() {
    multiproc::init();
    if std::env::args().nth(1).as_deref() == Some("die") {
        let pool = Pool::new(1).unwrap();
        let r = pool.map_with(die_on_7, 0..100, MapOptions::new().chunksize(1));
        println!("{r:?} {:?}", pool.stats());
        return;
    }
    let pool = Pool::builder().processes(2).start_method(StartMethod::Fork).build().unwrap();
    pool.map_with(identity, 0..2000, MapOptions::new().chunksize(1)).unwrap();
    for _ in 0..8 {
        let t0 = Instant::now();
        let out = pool.map_with(identity, 0..100_000u64, MapOptions::new().chunksize(1)).unwrap();
        let dt = t0.elapsed();
        assert_eq!(out.len(), 100_000);
        println!("{:.2} M/s  {:?}", 0.1 / dt.as_secs_f64(), dt);
    }
}
