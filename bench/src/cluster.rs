//! The cluster pool (`Pool::builder().cluster(url)`, feature `cluster`) against
//! `../shared/bench/cluster/cluster_peers.py`: a private Redis on a unix socket, two worker
//! nodes of one process each (this binary with `--cluster-node URL`), so 2 worker
//! processes in all, as the peers have.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::cluster::{ClusterOptions, ServeOptions};
use multiproc::{MapOptions, Pool};

use crate::stats::{self, Report};

fn square(x: u64) -> u64 {
    x * x
}

/// `mp-bench --cluster-node URL`: a node of one worker process.
pub fn node(url: &str) -> ! {
    match multiproc::cluster::serve(url, ServeOptions::new().processes(1)) {
        Err(e) => {
            eprintln!("mp-bench: node: {e}");
            std::process::exit(1)
        }
    }
}

struct Setup {
    dir: PathBuf,
    redis: Child,
    nodes: Vec<Child>,
    url: String,
}

impl Setup {
    fn start() -> Setup {
        Self::start_with(2)
    }

    /// A Redis and `nodes` worker nodes.
    fn start_with(nodes: usize) -> Setup {
        let dir = std::env::temp_dir().join(format!("mp-bench-redis-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let socket = dir.join("redis.sock");
        let redis = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "redis-server", "--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir"])
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let start = Instant::now();
        while ping(&socket).is_none() {
            assert!(start.elapsed() < Duration::from_secs(20), "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
        let url = format!("redis+unix://{}", socket.display());
        let nodes = (0..nodes)
            .map(|_| {
                Command::new("setpriv")
                    .args(["--pdeathsig", "KILL"])
                    .arg(std::env::current_exe().expect("exe"))
                    .args(["--cluster-node", &url])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("node")
            })
            .collect();
        Setup { dir, redis, nodes, url }
    }

    fn pool(&self) -> Pool {
        let pool = Pool::builder()
            .cluster(&self.url)
            .processes(2)
            .cluster_options(ClusterOptions::new())
            .build()
            .expect("cluster pool");
        // Both nodes up and serving.
        pool.map_with(square, 0..200, MapOptions::new().chunksize(1)).expect("warm-up");
        pool
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.kill();
            let _ = n.wait();
        }
        let _ = self.redis.kill();
        let _ = self.redis.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `PING` round trip on a raw connection, in µs.
fn ping(socket: &std::path::Path) -> Option<UnixStream> {
    let mut s = UnixStream::connect(socket).ok()?;
    let mut reply = [0u8; 7];
    s.write_all(b"PING\r\n").ok()?;
    s.read_exact(&mut reply).ok()?;
    Some(s)
}

/// cluster_overhead: tasks/s of `map(square, 0..10_000, chunksize=1)`, median of 3.
pub fn cluster_overhead(report: &mut Report) {
    let setup = Setup::start();
    let pool = setup.pool();
    let n = 10_000u64;
    let mut rates = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let out = pool.map_with(square, 0..n, MapOptions::new().chunksize(1)).expect("map");
        rates.push(n as f64 / t0.elapsed().as_secs_f64());
        assert_eq!(out[n as usize - 1], (n - 1) * (n - 1));
    }
    report.emit("cluster_overhead", "map.chunksize1", stats::median(&rates), "tasks/s", &rates);
}

/// cluster_roundtrip: median µs of `apply_async(square, i).get()` (200 in a row), and of
/// a Redis `PING` on the same server (`redis.ping`), the floor.
pub fn cluster_roundtrip(report: &mut Report) {
    let setup = Setup::start();
    let pool = setup.pool();
    let mut samples = Vec::new();
    for i in 0..220u64 {
        let t0 = Instant::now();
        let r = pool.apply_async(square, i).expect("submit").get().expect("result");
        if i >= 20 {
            samples.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        assert_eq!(r, i * i);
    }
    report.emit("cluster_roundtrip", "apply", stats::median(&samples), "us", &samples);
    let mut s = ping(&setup.dir.join("redis.sock")).expect("ping");
    let mut pings = Vec::new();
    let mut reply = [0u8; 7];
    for i in 0..2200 {
        let t0 = Instant::now();
        s.write_all(b"PING\r\n").expect("ping");
        s.read_exact(&mut reply).expect("pong");
        if i >= 200 {
            pings.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    report.emit("cluster_roundtrip", "redis.ping", stats::median(&pings), "us", &pings);
}

/// cluster_queue: puts/s of `cluster::Queue::put` (10 000 `u64` in a row, one handle, no
/// bound) and gets/s of `get` taking them back, median of 3 rounds; a private Redis, no
/// node.
pub fn cluster_queue(report: &mut Report) {
    let setup = Setup::start_with(0);
    let q = multiproc::cluster::Queue::<u64>::open(&setup.url, "bench").expect("queue");
    let n = 10_000u64;
    let (mut puts, mut gets) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t0 = Instant::now();
        for i in 0..n {
            q.put(i).expect("put");
        }
        puts.push(n as f64 / t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        for i in 0..n {
            assert_eq!(q.get().expect("get"), i);
        }
        gets.push(n as f64 / t0.elapsed().as_secs_f64());
    }
    report.emit("cluster_queue", "put", stats::median(&puts), "puts/s", &puts);
    report.emit("cluster_queue", "get", stats::median(&gets), "gets/s", &gets);
}
