//! "Other machines" for the cluster tests, on this one: a Redis that they reach over TCP,
//! and processes that each run in their own network, PID and mount namespaces.
//!
//! ```ignore
//! let Some(redis) = TcpRedis::start(&["--requirepass", "pw"]) else { return };
//! let Some(mut node) = Machine::start(redis.port, |addr| {
//!     let mut c = Command::new(std::env::current_exe().unwrap());
//!     c.args(["--exact", "my_role"]).env("URL", format!("redis://:pw@{addr}/0"));
//!     c
//! }) else { return };
//! // ... node.stderr is the program's stderr; node.kill() kills the machine's init ...
//! ```
//!
//! A `Machine` shares nothing of the local family with this process: its own loopback and
//! abstract unix sockets (network namespace), its own pids (PID namespace, whose init is a
//! shell that runs the command), its own `/proc` and `/dev/shm` (mount namespace). It
//! reaches this machine only through a veth pair, at the address given to the command's
//! builder. Killing it ([`Machine::kill`]) is `kill -9` of the namespace's init: the kernel
//! kills everything on it at once, as a power cut would, and the veth pair goes with it.
//! Everything is started under `setpriv --pdeathsig KILL`, so a test that aborts (its
//! watchdog) takes its machines and its Redis along.
//!
//! Needs root, `unshare` and `nsenter` (util-linux) and `ip` (iproute2); where they are
//! missing or not allowed, [`Machine::start`] says so and returns `None` (the test
//! passes), unless `MULTIPROC_REQUIRE_NAMESPACES` is set (CI sets it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{eventually, pid_running};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Whether `redis-server` is installed; if not, says so, and fails if
/// `MULTIPROC_REQUIRE_REDIS` is set.
pub fn redis_installed() -> bool {
    if Command::new("redis-server").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("MULTIPROC_REQUIRE_REDIS").is_none(),
        "redis-server is not installed and MULTIPROC_REQUIRE_REDIS is set"
    );
    eprintln!("skipped: redis-server is not installed (apt-get install redis-server)");
    false
}

/// A private Redis on a TCP port of every interface (so that other machines reach it),
/// no persistence, killed and its directory removed on drop.
pub struct TcpRedis {
    dir: PathBuf,
    server: Child,
    pub pid: u32,
    pub port: u16,
}

impl TcpRedis {
    /// Plain TCP; `extra` are more `redis-server` arguments (`--requirepass pw`...).
    pub fn start(extra: &[&str]) -> Option<TcpRedis> {
        Self::start_with("--port", extra)
    }

    /// TLS only (`--tls-port`, the plain port closed): `extra` must name the certificate
    /// and key (`--tls-cert-file`, `--tls-key-file`...).
    pub fn start_tls(extra: &[&str]) -> Option<TcpRedis> {
        let mut args = vec!["--port", "0", "--tls-auth-clients", "no"];
        args.extend_from_slice(extra);
        Self::start_with("--tls-port", &args)
    }

    /// A directory for files the server needs (certificates), removed with it.
    pub fn scratch_dir() -> PathBuf {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("multiproc-redis-{}-tcp{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn start_with(port_flag: &str, extra: &[&str]) -> Option<TcpRedis> {
        if !redis_installed() {
            return None;
        }
        // A free port may be taken between the probe and the server's bind: try again.
        for _ in 0..10 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let dir = Self::scratch_dir();
            let mut server = Command::new("setpriv")
                .args(["--pdeathsig", "KILL", "redis-server", "--bind", "0.0.0.0", "--protected-mode", "no"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg(port_flag)
                .arg(port.to_string())
                .arg("--dir")
                .arg(&dir)
                .arg("--logfile")
                .arg(dir.join("redis.log"))
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let up = eventually(Duration::from_secs(20), || {
                TcpStream::connect(("127.0.0.1", port)).is_ok() || server.try_wait().unwrap().is_some()
            });
            if up && server.try_wait().unwrap().is_none() {
                let pid = server.id();
                return Some(TcpRedis { dir, server, pid, port });
            }
            let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
            let _ = server.kill();
            let _ = server.wait();
            let _ = std::fs::remove_dir_all(&dir);
            assert!(log.contains("Address already in use") || log.is_empty(), "redis-server did not start:\n{log}");
        }
        panic!("no free port for redis-server");
    }

    /// Sends one command in Redis's protocol (plain TCP only) and returns the raw reply.
    pub fn raw(&self, args: &[&[u8]]) -> Vec<u8> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&resp(args)).unwrap();
        let mut reply = vec![0; 4096];
        let n = s.read(&mut reply).unwrap();
        reply.truncate(n);
        reply
    }
}

/// A test PKI: the CA (PEM), and a client certificate and key it signed.
pub struct Pki {
    pub ca: String,
    pub client_cert: String,
    pub client_key: String,
}

/// A CA, and a server certificate for 127.0.0.1 and localhost signed by it, written to
/// `dir` (`ca.pem`, `server.pem`, `server.key`), another it signed that is not valid before
/// 2090 (`later.pem`, `later.key`: a server whose clock is ahead of the client's), and a
/// client certificate.
pub fn certificates(dir: &std::path::Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "multiproc test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    let mut later = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    later.not_before = rcgen::date_time_ymd(2090, 1, 1);
    let later_key = KeyPair::generate().unwrap();
    std::fs::write(dir.join("later.pem"), later.signed_by(&later_key, &ca).unwrap().pem()).unwrap();
    std::fs::write(dir.join("later.key"), later_key.serialize_pem()).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client.distinguished_name.push(DnType::CommonName, "a worker node");
    let client = client.signed_by(&client_key, &ca).unwrap();
    Pki { ca: ca.pem(), client_cert: client.pem(), client_key: client_key.serialize_pem() }
}

/// A Redis that speaks TLS only, with a certificate signed by a fresh CA; `extra` are more
/// arguments (they override the defaults).
pub fn tls_redis(extra: &[&str]) -> Option<(TcpRedis, Pki, ScratchDir)> {
    if !redis_installed() {
        return None;
    }
    let dir = ScratchDir(TcpRedis::scratch_dir());
    let pki = certificates(&dir);
    let (cert, key, ca) = (dir.join("server.pem"), dir.join("server.key"), dir.join("ca.pem"));
    let mut args = vec![
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--tls-ca-cert-file",
        ca.to_str().unwrap(),
        "--requirepass",
        "s3cret",
    ];
    args.extend_from_slice(extra);
    let redis = TcpRedis::start_tls(&args)?;
    Some((redis, pki, dir))
}

/// A test's scratch directory (a `tls_redis`'s certificates, their private keys among them),
/// removed however the test ends, a failed assertion's unwinding included (review136 L3:
/// each test removed it on its last line only).
pub struct ScratchDir(pub PathBuf);

impl std::ops::Deref for ScratchDir {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One command in Redis's protocol.
pub fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Drop for TcpRedis {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether this machine lets a test make network, PID and mount namespaces; says why not
/// once (and fails if `MULTIPROC_REQUIRE_NAMESPACES` is set).
pub fn namespaces_allowed() -> bool {
    static ALLOWED: OnceLock<Result<(), String>> = OnceLock::new();
    let allowed = ALLOWED.get_or_init(|| {
        for tool in ["ip", "nsenter"] {
            if Command::new(tool).arg("-V").output().is_err() {
                return Err(format!("`{tool}` is missing (apt-get install iproute2 util-linux)"));
            }
        }
        let probe = Command::new("unshare")
            .args(["--net", "--pid", "--mount", "--fork", "--mount-proc", "true"])
            .stdin(Stdio::null())
            .output();
        match probe {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!("unshare refused: {}", String::from_utf8_lossy(&out.stderr).trim())),
            Err(e) => Err(format!("no unshare: {e}")),
        }
    });
    match allowed {
        Ok(()) => true,
        Err(why) => {
            assert!(
                std::env::var_os("MULTIPROC_REQUIRE_NAMESPACES").is_none(),
                "namespaces are not allowed here ({why}) and MULTIPROC_REQUIRE_NAMESPACES is set"
            );
            eprintln!("skipped: this test needs network and PID namespaces (root): {why}");
            false
        }
    }
}

/// A process "on another machine" (see the module's documentation).
pub struct Machine {
    unshare: Child,
    /// The pid, in this machine's namespace, of the other machine's init.
    pub init: u32,
    /// The command's stderr (its stdout is discarded).
    pub stderr: Option<ChildStderr>,
    host_veth: String,
}

impl Machine {
    /// Starts the command that `command` builds "on another machine" linked to this one;
    /// `command` is given `"ADDRESS:PORT"`, where that machine reaches `port` of this one
    /// (a Redis started with [`TcpRedis`]). The command's program, arguments, environment
    /// and directory are used; its stdio is not (stdout is discarded, stderr is
    /// [`Machine::stderr`]). `None` (and a message) where namespaces are not allowed.
    pub fn start(port: u16, command: impl FnOnce(&str) -> Command) -> Option<Machine> {
        if !namespaces_allowed() {
            return None;
        }
        // A /30 of 10.0.0.0/8 per machine, from the pid and a counter: distinct between
        // the machines of a test binary, and almost surely between binaries.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let base = (pid.wrapping_mul(64).wrapping_add(n) & 0x3f_ffff) * 4;
        let net = format!("10.{}.{}", (base >> 16) & 255, (base >> 8) & 255);
        let (host_ip, guest_ip) = (format!("{net}.{}", (base & 255) + 1), format!("{net}.{}", (base & 255) + 2));
        let host_veth = format!("mph{pid:x}n{n}");
        let guest_veth = format!("mpg{pid:x}n{n}");
        assert!(host_veth.len() <= 15, "interface name too long: {host_veth}");

        let cmd = command(&format!("{host_ip}:{port}"));
        // The machine's init is this shell: it waits for its network, gives itself a fresh
        // /dev/shm, runs the command and ends with it.
        let script = "read go || exit 1; mount -t tmpfs -o size=256m tmpfs /dev/shm || exit 1; \"$@\"";
        let mut outer = Command::new("setpriv");
        outer
            .args(["--pdeathsig", "KILL", "unshare", "--net", "--pid", "--mount", "--fork", "--kill-child"])
            .args(["--mount-proc", "sh", "-c", script, "sh"])
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => outer.env(k, v),
                None => outer.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            outer.current_dir(dir);
        }
        let mut unshare = outer.spawn().unwrap();
        let stderr = unshare.stderr.take();
        let mut stdin = unshare.stdin.take().unwrap();
        let mut machine = Machine { unshare, init: 0, stderr, host_veth: host_veth.clone() };

        // unshare's child is the machine's init (pid 1 inside).
        let outer_pid = machine.unshare.id();
        let children = format!("/proc/{outer_pid}/task/{outer_pid}/children");
        assert!(
            eventually(Duration::from_secs(20), || {
                let list = std::fs::read_to_string(&children).unwrap_or_default();
                machine.init = list.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(0);
                machine.init != 0
            }),
            "the machine's init did not start"
        );
        let init = machine.init.to_string();
        run(Command::new("ip")
            .args(["link", "add", &host_veth, "type", "veth", "peer", "name", &guest_veth])
            .args(["netns", &init]));
        run(Command::new("ip").args(["addr", "add", &format!("{host_ip}/30"), "dev", &host_veth]));
        run(Command::new("ip").args(["link", "set", &host_veth, "up"]));
        let inside = |args: &[&str]| {
            run(Command::new("nsenter").args(["--target", &init, "--net", "ip"]).args(args));
        };
        inside(&["addr", "add", &format!("{guest_ip}/30"), "dev", &guest_veth]);
        inside(&["link", "set", &guest_veth, "up"]);
        inside(&["link", "set", "lo", "up"]);
        stdin.write_all(b"go\n").unwrap();
        drop(stdin);
        Some(machine)
    }

    /// Kills the machine at once: `kill -9` of its init, so that the kernel kills every
    /// process on it; returns when they are gone.
    pub fn kill(&mut self) {
        let _ = Command::new("kill").args(["-9", &self.init.to_string()]).status();
        assert!(eventually(Duration::from_secs(20), || !pid_running(self.init)), "the machine's init survived");
        let _ = self.unshare.wait();
    }

    /// Cuts the machine's network, as a pulled cable would: this end of its link goes down,
    /// and with it the route to it; what either side sends meanwhile is lost (TCP sends it
    /// again once the link is back). Its processes go on.
    pub fn cut(&self) {
        run(Command::new("ip").args(["link", "set", &self.host_veth, "down"]));
    }

    /// Gives back the network [`Machine::cut`] took (the link up, its route again).
    pub fn restore(&self) {
        run(Command::new("ip").args(["link", "set", &self.host_veth, "up"]));
    }

    /// Waits for the command to end (and with it the machine).
    pub fn wait(&mut self) -> ExitStatus {
        self.unshare.wait().unwrap()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if self.unshare.try_wait().ok().flatten().is_none() {
            self.kill();
        }
        // The pair goes with the namespace; this only tidies a pair whose namespace
        // outlived its init (it cannot) or was never entered.
        let _ = Command::new("ip").args(["link", "del", &self.host_veth]).stderr(Stdio::null()).status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}
