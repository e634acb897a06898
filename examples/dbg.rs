use multiproc::{Process, StartMethod};
fn noop(_: ()) {}
fn main() {
    multiproc::init();
    let m = match std::env::args().nth(1).as_deref() { Some("fork") => StartMethod::Fork, Some("spawn") => StartMethod::Spawn, _ => StartMethod::ForkServer };
    let n: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let mut v = vec![];
    for _ in 0..n {
        let t = std::time::Instant::now();
        let h = Process::new(noop, ()).start_method(m).start().unwrap();
        let t1 = t.elapsed();
        h.join().unwrap();
        v.push((t.elapsed().as_secs_f64() * 1e6, t1.as_secs_f64() * 1e6));
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    eprintln!("median total {:.0} us (start part {:.0} us)", v[n / 2].0, v[n / 2].1);
}
