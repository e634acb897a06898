use multiproc::{Process, StartMethod};

fn square(x: u64) -> u64 {
    x * x
}

fn boom(_: ()) {
    panic!("boom");
}

fn main() {
    multiproc::init();
    for m in [StartMethod::ForkServer, StartMethod::Fork, StartMethod::Spawn] {
        let t = std::time::Instant::now();
        let r = Process::new(square, 12).start_method(m).start().unwrap().join().unwrap();
        println!("{m:?}: {r} in {:?}", t.elapsed());
        let e = Process::new(boom, ()).start_method(m).start().unwrap().join();
        println!("{m:?}: {e:?}");
    }
}
