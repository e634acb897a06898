//! A private redis-server for the cluster tests: on a unix socket in a temporary directory,
//! no persistence, killed with the test process (`setpriv --pdeathsig`) and on drop.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, pid_running};

pub struct Redis {
    pub dir: PathBuf,
    server: Child,
    pub pid: u32,
    pub url: String,
    /// The arguments the server was started with besides the defaults.
    extra: Vec<String>,
}

impl Redis {
    /// Starts a server with `extra` arguments; `None` (the test skips) where redis-server
    /// is not installed, unless `MULTIPROC_REQUIRE_REDIS` is set.
    pub fn start(extra: &[&str]) -> Option<Redis> {
        if Command::new("redis-server").arg("--version").output().is_err() {
            assert!(
                std::env::var_os("MULTIPROC_REQUIRE_REDIS").is_none(),
                "redis-server is not installed and MULTIPROC_REQUIRE_REDIS is set"
            );
            eprintln!("skipped: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("multiproc-redis-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let server = Self::spawn(&dir, extra);
        let socket = dir.join("redis.sock");
        let redis = Redis {
            url: format!("redis+unix://{}", socket.display()),
            dir,
            pid: server.id(),
            server,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        assert!(eventually(Duration::from_secs(20), || answers_ping(&socket)), "redis-server did not answer");
        Some(redis)
    }

    /// A redis-server in `dir`, its socket there, with `extra` arguments.
    fn spawn(dir: &Path, extra: &[&str]) -> Child {
        let socket = dir.join("redis.sock");
        Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "redis-server", "--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Kills the server (`kill -9`) and starts it again on the same socket, directory and
    /// arguments: with no persistence (the default) it comes back empty, with
    /// `--appendonly yes` as it was.
    pub fn restart(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_file(self.socket());
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        self.server = Self::spawn(&self.dir, &extra);
        self.pid = self.server.id();
        let socket = self.socket();
        assert!(eventually(Duration::from_secs(20), || answers_ping(&socket)), "redis-server did not come back");
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// Stops the server (SIGSTOP): it answers nothing, and keeps what it was sent.
    pub fn pause(&self) {
        pause(self.pid);
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        resume(self.pid);
    }

    pub fn kill(&self) {
        let _ = Command::new("kill").args(["-9", &self.pid.to_string()]).status();
        assert!(eventually(Duration::from_secs(20), || !pid_running(self.pid)));
    }

    /// Sends one command over the server's socket (as another program would) and returns
    /// the raw reply.
    pub fn raw(&self, args: &[&[u8]]) -> Vec<u8> {
        let mut s = UnixStream::connect(self.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&super::machine::resp(args)).unwrap();
        let mut reply = vec![0; 4096];
        let n = s.read(&mut reply).unwrap();
        reply.truncate(n);
        reply
    }

    /// The keys under `mp:` (through `redis-cli`).
    pub fn mp_keys(&self) -> Vec<String> {
        let out = Command::new("redis-cli").arg("-s").arg(self.socket()).args(["--scan", "--pattern", "mp:*"]).output();
        let out = out.expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
    }
}

/// Stops the server `pid` (SIGSTOP): it answers nothing, and keeps what it was sent.
pub fn pause(pid: u32) {
    let _ = Command::new("kill").args(["-STOP", &pid.to_string()]).status();
}

/// Lets the paused server `pid` go on (SIGCONT).
pub fn resume(pid: u32) {
    let _ = Command::new("kill").args(["-CONT", &pid.to_string()]).status();
}

/// Any reply means the server is up (a `NOAUTH` error too).
fn answers_ping(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 1];
    s.write_all(b"PING\r\n").is_ok() && s.read(&mut reply).is_ok_and(|n| n == 1)
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Redis server arguments: the default user off, and a user `worker` (password `pw`) with
/// the ACL the module documentation gives a user limited to the `mp:` prefix (pools need
/// `+@stream` besides).
pub const MP_USER: [&str; 22] = [
    "--user",
    "default",
    "off",
    "--user",
    "worker",
    "on",
    ">pw",
    "~mp:*",
    "&*",
    "-@all",
    "+@list",
    "+@hash",
    "+@connection",
    "+@scripting",
    "+sadd",
    "+srem",
    "+smembers",
    "+set",
    "+get",
    "+del",
    "+exists",
    "+pexpire",
];
