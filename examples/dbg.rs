use multiproc::{Pool, StartMethod};
fn identity(x: u64) -> u64 {
    x
}
fn main() {
    multiproc::init();
    let pool = Pool::builder().processes(2).start_method(StartMethod::Fork).build().unwrap();
    pool.map(identity, 0..2000).unwrap();
    let t = std::time::Instant::now();
    for _ in 0..200 {
        let v = pool.map(identity, 0..100_000).unwrap();
        assert_eq!(v.len(), 100_000);
    }
    eprintln!("{:?} per map", t.elapsed() / 200);
}
