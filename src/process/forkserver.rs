//! The fork-server start method: a single-threaded process, forked at `init()` before any
//! thread exists, that forks the children.
//!
//! Its children are copies of a small, clean process (nothing but `main`'s first line had
//! run), so they start fast and safely whatever threads the requester runs. The server
//! listens on an abstract unix socket (no file to clean up), accepts only the family's user
//! and token. The children of the main process, its parent, it forks as its siblings
//! (`CLONE_PARENT`), so that they are the main process's own children: their `getppid()`
//! is main, main reaps them and collects their CPU time (`time`, `getrusage`). Other
//! requesters' children are the server's: it reaps them and tells each requester how its
//! children ended, and when a requester dies, the server kills that requester's children
//! and, once it reaped them, frees the report rooms of those that had not ended yet.
//! When the main process dies, the server dies (parent-death signal), and its children
//! with it.
//!
//! A request is one message: its length, the [`Request`], then either the child's boot
//! message or nothing and the child's boot socket along ([`Boot`]). A child whose argument
//! holds no handles gets its boot message that way: the server receives it (the first
//! bytes on its stack, the rest in its buffer) and forks, and the child decodes it in its
//! copy; it has no boot socket and leaves its outcome in a report room of the family heap
//! (`shm::ReportRoom`, made by the requester and named in the message). Its requester
//! learns its end from its pidfd (or the status pipe) and reads the room after it. The
//! server's steady loop writes no page of its heap (each page it writes after a fork is a
//! fault): its poll and its answers live on its stack.
//!
//! A server found dead (a request finds nothing listening at its address) is started
//! again by that request ([`restart`]) in the main process (another process's start fails
//! until the main process made one): spawned, not forked (the main process may run
//! threads), it listens at the same address.
//! A child whose request went to a server that died before it answered waits, before it
//! touches its boot message, for its requester's go: a byte on its boot socket, or the go
//! word of its report room; its requester, whose start failed, says stop instead.
//!
//! The same server, forked later by a `Fork` pool's `build` (a [`Zygote`]), forks that
//! pool's workers as copies of the builder as of `build`: the zygote is recorded as a
//! holder of the builder's handles and records each worker as a holder of its copies.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::LaunchError;
use super::boot;
use super::family::{self, FamilyConfig};
use super::spin::LoadSpin;
use crate::codec;
use crate::error::Error;
use crate::shm::LeftBehind;
use crate::shm::crash::{crash_point, fail_point};
use crate::sys::{self, Forked};

/// How long a requester polls for the server's answer before it sleeps (unless the
/// machine is busy: [`LoadSpin`]).
const REPLY_SPIN: std::time::Duration = std::time::Duration::from_micros(500);
/// This process's record of its spins for the server's answers.
static REPLY_SPINS: LoadSpin = LoadSpin::new();
/// How long a requester sleeps on the server's answer before it looks whether the server
/// can still answer (`answer`): a server that is slow (a loaded machine) is waited for, one
/// stopped (`SIGSTOP`, a debugger) at two looks in a row ([`StopLooks`]), a zombie or gone
/// is not. As long between two looks at a child that does not read its boot frame's rest
/// (`launch`'s `send_to_child`).
pub(crate) const REPLY_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    token: [u8; 16],
    pid: u32,
    start: u64,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// Forked; the pidfd and the status pipe come along. `server` is the answering server's
    /// own pid: the one process that writes the child's report room after the answer.
    Forked {
        pid: u32,
        server: u32,
    },
    /// Forked as the requester's own child (the requester is the server's parent): the
    /// pidfd comes along, and the requester reaps it. `server` as in `Forked`.
    Yours {
        pid: u32,
        server: u32,
    },
    Refused(String),
    /// The fork failed with this errno (`EAGAIN`: out of processes; `ENOMEM`): the
    /// machine's limit, not the method's, so the requester's error is that `io::Error`.
    ForkFailed(i32),
}

/// Forks the server of the family `family` (whose `forkserver` is still `None`); returns
/// that configuration with the server's address, which the server has too
/// ([`family::hand_down`]). Call while single-threaded.
pub(crate) fn start(mut family: FamilyConfig) -> io::Result<FamilyConfig> {
    let main = sys::my_pid();
    let suffix: String = sys::random_bytes::<8>().iter().map(|b| format!("{b:02x}")).collect();
    let address = format!("multiproc-forkserver-{main}-{suffix}");
    let listener = sys::listen_abstract(&address, true)?;
    family.forkserver = Some(address);
    flush_stdio();
    // Its children are copies of it: a handle it copied from this process would be theirs
    // too, and uncounted (a `Fork` start records its child; this fork does not need to).
    debug_assert!(crate::shm::holds_nothing(), "the fork server would copy handles of the main process");
    match sys::fork()? {
        Forked::Child => {
            let token = family.token;
            family::hand_down(family);
            serve(listener, token, main, false)
        }
        Forked::Parent(pid) => {
            started_here(pid);
            // The directory the server was forked in, for its restarts.
            boot::keep_server_directory();
            Ok(family)
        }
    }
}

/// The fork server this process started (at `init()`, or by [`restart`]), its child: the
/// process that started it (a fork copy of this process has a copy of this) and a pidfd,
/// kept to reap it once it is found dead.
static STARTED_HERE: std::sync::Mutex<Option<(u32, u32, OwnedFd)>> = std::sync::Mutex::new(None);

/// The pid of the family's fork server that this process started (at `init()`, or by
/// [`restart`]), if it started one (the tests kill it).
#[doc(hidden)]
pub fn fork_server_pid() -> Option<u32> {
    let started = STARTED_HERE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    started.as_ref().filter(|(owner, ..)| *owner == sys::pid_now()).map(|&(_, pid, _)| pid)
}

/// Records `pid` as the fork server this process started; reaps the one it started before
/// (found dead: its address had no listener).
fn started_here(pid: u32) {
    // Where every process of the family finds it (a requester waiting for its answer looks
    // whether it is stopped).
    crate::shm::Heap::get().fork_server().store(u64::from(pid), std::sync::atomic::Ordering::Release);
    let pidfd = sys::pidfd_open(pid).ok();
    let mut started = STARTED_HERE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = std::mem::replace(&mut *started, pidfd.map(|pidfd| (sys::pid_now(), pid, pidfd)));
    drop(started);
    if let Some((owner, _, pidfd)) = before {
        if owner == sys::pid_now() {
            // Dead (it listened no more) or dying (a restarted one whose start failed, on its
            // way out): reaped now, or once dead, by a later look ([`reap_left_children`]).
            // Dropped unreaped, it was a zombie of ours until we exit, one per failed start
            // (review125 M3).
            if matches!(sys::reap_pidfd(pidfd.as_fd(), false), Ok(None)) {
                LEFT_SERVERS.leave(pidfd, drop);
            }
        } else {
            // Not ours: a copy from the process that forked us.
            std::mem::forget(pidfd);
        }
    }
}

/// How long a restart waits for the server it follows to end in full (its listener closed,
/// which is why the restart runs, comes before it is a zombie).
const DYING_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// At a restart of the family's fork server, found dead (`dead`, its pid): frees the room a
/// dead server was taking when it died (its copy sent, the room not yet freed), if any
/// (`ReportRoom::free_taken_by_dead`). It first waits, for [`DYING_WAIT`] at most, on the
/// pidfd of `dead` (our child, not yet reaped: `started_here` reaps it), whose listener
/// closes before it is a zombie: a look in between finds it running and leaves its room
/// (review128 M1). Whatever is left then (it did not end within the wait) is freed by a
/// later restart, which frees a record of any dead server.
///
/// The wait holds no lock: `STARTED_HERE`'s is held only to copy the pidfd (a fork copy of
/// this process takes it in `fork_server_pid`, and would inherit it held). The look and
/// clear run under `FREEING`, one at a time (two threads restarting at once), which only
/// the process that started the server takes (a fork copy has no server of its own, and
/// never gets here).
fn free_room_of_dead_server(dead: u32) {
    static FREEING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let pidfd = {
        let started = STARTED_HERE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        started
            .as_ref()
            .filter(|(owner, pid, _)| *owner == sys::pid_now() && *pid == dead)
            .and_then(|(_, _, pidfd)| pidfd.try_clone().ok())
    };
    if let Some(pidfd) = pidfd {
        let _ = sys::poll_readable(&[pidfd.as_fd()], Some(DYING_WAIT));
    }
    let _one = FREEING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    crate::shm::ReportRoom::free_taken_by_dead();
}

/// What a fork server spawned by [`restart`] reads on its boot socket, after the key of
/// handle seals (the heap, the listener and the resource tracker's pipe come along).
#[derive(Serialize, Deserialize)]
struct ServerBoot {
    /// The family's configuration, which its children find in their copy
    /// ([`family::hand_down`]).
    family: FamilyConfig,
    /// The environment and directory its children start with (`boot::server_surroundings`).
    surroundings: Vec<u8>,
    /// Whether the first server's directory itself comes along, after the listener
    /// (`boot::server_directory`): it is entered by that descriptor, not by its path.
    directory: bool,
}

/// Starts the family's fork server again, found dead (nothing listens at `address`), if
/// this process started the dead one (the main process; any other's start fails until the
/// main process made a new one): the new one listens at the same address, so every process
/// of the family reaches it as it reached the first.
///
/// It is *spawned* (an execution of this program that becomes the server before `main`, as
/// a spawned child does; `run_spawned`), never forked: this process may run threads, whose
/// locks a fork would copy held. It is this process's child, forked on a lasting thread
/// (its parent-death signal), and forks this process's children as this process's own
/// (`CLONE_PARENT`); it dies with this process.
///
/// Two processes that find the server dead at once: the one whose bind succeeds starts
/// it, the other connects to it.
fn restart(address: &str, family: &FamilyConfig) -> Result<(), Error> {
    let why = |e: &dyn std::fmt::Display| unavailable(super::StartMethod::ForkServer, format!("it died, and {e}"));
    let Some(dead) = fork_server_pid() else {
        // Only the process that started the dead server (the main process) starts it again:
        // a server dies with the process that started it, and with it every child it forked
        // for another requester, which must not depend on a child process's life.
        return Err(why(&"only the main process starts it again (at its next fork-server start)"));
    };
    // No server's pid is published until the new one's (`started_here`): a request that
    // reaches the new listener must not take the dead server for the one it asked (it
    // would give up on its answer, and free its report room while the new server may still
    // write it). Unless another thread published the new one already. Failed, the dead
    // one's is put back (`UnderWay`'s drop).
    let mut under_way = UnderWay::begin(dead);
    free_room_of_dead_server(dead);
    // Kept from fork children (a `Fork` start on another thread, beside
    // `allow_fork_with_threads`, a pool's zygote, a program's bare `fork`) until the
    // spawn's outcome, as the socket pair that carries it: a copy would keep the address
    // bound for its own life once the spawn failed or the new server died, and every later
    // start of the family would connect to it (never refused: no restart) and wait for an
    // answer nobody gives (review35 L2).
    let listener = match sys::Unforked::made(|| Ok([sys::listen_abstract(address, true)?])) {
        Ok([listener]) => listener,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Ok(()),
        Err(e) => return Err(why(&format_args!("cannot listen at its address: {e}"))),
    };
    // From here until the new server runs, a request connects to this listener and waits
    // for its answer: it must not wait holding a lock the spawn below takes.
    crash_point!("forkserver.restart.listening");
    let heap = crate::shm::Heap::get();
    let directory = boot::server_directory();
    let message = codec::encode_own(&ServerBoot {
        family: family.clone(),
        surroundings: boot::server_surroundings()?,
        directory: directory.is_some(),
    })?;
    let framed = boot::frame(&[&heap.seal_key()[..], &message.bytes].concat());
    message.sent();
    let [ours, theirs] = sys::Unforked::made(|| sys::socketpair_stream().map(<[OwnedFd; 2]>::from))?;
    let fds: Vec<BorrowedFd<'_>> =
        [heap.fd(), listener.as_fd()].into_iter().chain(directory).chain(super::tracker::fd()).collect();
    // What the pair's buffer takes goes now, the descriptors with its first byte; the rest
    // once the new server exists to read it. The frame carries the first server's
    // environment, which may be larger than the buffer (about 200 KB): sent whole before the
    // spawn, it waited for a reader not yet made, for ever, holding the listener that every
    // start of the family waits on (review40 O1).
    let cannot_send = |e: io::Error| why(&format_args!("cannot send its boot message: {e}"));
    let sent = sys::send_what_fits(ours.as_fd(), &framed, &fds).map_err(cannot_send)?;
    drop(listener);
    // The listener is in flight in `theirs`'s queue, which a fork copy of `theirs` would
    // keep as the listener's own copy would.
    crash_point!("forkserver.restart.sent");
    let pid = family::on_lasting_thread(move || {
        // A test makes the spawn fail (as `posix_spawn` would), once the listener went with
        // the boot message: a request that connected to it meets its end unread.
        if fail_point!("forkserver.restart.spawn") {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let env = [(boot::BOOT_ENV, format!("forkserver:{}:{}", sys::SPAWN_BOOT_FD, sys::my_pid()))];
        sys::spawn_self(theirs.as_fd(), &env)
    })
    .map_err(|e| why(&format_args!("cannot spawn a new one: {e}")))?;
    // Recorded before the rest goes: if it died meanwhile, it is reaped as any dead one.
    started_here(pid);
    under_way.published = true;
    sys::send_all(ours.as_fd(), &framed[sent..], &[]).map_err(cannot_send)?;
    log::debug!("restarted the fork server (pid {pid})");
    Ok(())
}

/// How many restarts of the family's fork server ([`restart`]) this process has under way:
/// the published pid is changed under it, so that a failed restart puts the dead server's
/// back only when no other is under way ([`UnderWay`]).
static RESTARTS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

/// One of this process's restarts under way ([`RESTARTS`]), from the published pid set to 0
/// until the new server's is published (`published`). Dropped before that (the restart
/// failed, or found the address bound), the dead server's pid is put back unless another
/// restart is under way (whose end publishes a pid or puts it back): a request waiting on a
/// listener that nobody will serve then takes its server for dead, and fails, or is made
/// again. Left at 0, "being started again", it waited for ever: a copy of this process made
/// by a fork that runs no fork handler (`clone3`, `syscall(SYS_fork)`: `sys::Unforked`
/// cannot close what it inherits) keeps the listener of a restart whose spawn failed, and
/// every later start connected to it (tok40). Both changes are made under the count's
/// lock, so no restart's 0 is ever overwritten by another's put-back: a new listener is
/// never seen with the dead pid.
struct UnderWay {
    dead: u32,
    published: bool,
}

impl UnderWay {
    /// A restart of the dead server `dead` begins: its pid is unpublished (set to 0, unless
    /// another restart published a new one already).
    fn begin(dead: u32) -> Self {
        let mut under_way = RESTARTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *under_way += 1;
        let _ = crate::shm::Heap::get().fork_server().compare_exchange(
            u64::from(dead),
            0,
            std::sync::atomic::Ordering::Release,
            std::sync::atomic::Ordering::Relaxed,
        );
        Self { dead, published: false }
    }
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        let mut under_way = RESTARTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *under_way -= 1;
        if !self.published && *under_way == 0 {
            let _ = crate::shm::Heap::get().fork_server().compare_exchange(
                0,
                u64::from(self.dead),
                std::sync::atomic::Ordering::Release,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }
}

/// The life of a fork server spawned by [`restart`] (`MULTIPROC_BOOT=forkserver:..`),
/// from the `.init_array` entry: it reads its boot message on `sock`, takes the family's
/// heap, its listener and the resource tracker's pipe, the family's configuration and the
/// surroundings of its first server, prepares what `init()` prepares before it forks the
/// first server, and serves for `parent`, the process that spawned it.
pub(crate) fn run_spawned(sock: OwnedFd, parent: u32) -> ! {
    sys::child_signal_dispositions();
    // Its children are copies of it: every constructor runs first (`sys::early`).
    sys::finish_constructors();
    let mut fds = Vec::new();
    let booted = (|| -> Result<(OwnedFd, [u8; 16]), String> {
        let (frame, _) = boot::read_frame_blocking(sock.as_fd(), &mut fds).map_err(|e| e.to_string())?;
        let (key, message) = frame.split_first_chunk::<16>().ok_or("its boot message is too short")?;
        let boot: ServerBoot = codec::decode_own(message).map_err(|e| e.to_string())?;
        let mut fds = std::mem::take(&mut fds).into_iter();
        let (Some(heap), Some(listener)) = (fds.next(), fds.next()) else {
            return Err("its boot message came without the heap and its listener".into());
        };
        crate::shm::Heap::adopt(heap, *key).map_err(|e| format!("cannot map the family heap: {e}"))?;
        let directory =
            if boot.directory { Some(fds.next().ok_or("its boot message came without its directory")?) } else { None };
        if let Some(tracker) = fds.next() {
            super::tracker::adopt(tracker);
        }
        boot::take_surroundings_from(&boot.surroundings, directory.as_ref().map(AsFd::as_fd))?;
        // A test makes its start fail, as a directory it could not enter did (review125 M3).
        if fail_point!("forkserver.spawned.boot") {
            return Err("its start failed (a test's failure)".into());
        }
        let token = boot.family.token;
        family::hand_down(boot.family);
        Ok((listener, token))
    })();
    drop(sock);
    let (listener, token) = match booted {
        Ok(booted) => booted,
        Err(e) => {
            eprintln!("multiproc: a restarted fork server could not start: {e}");
            // A test holds it here: dying, not yet dead, when the next restart looks.
            crash_point!("forkserver.spawned.failed");
            sys::exit_now(1);
        }
    };
    // What `init()` does before it forks the first server, for the same reasons.
    boot::remember_server_surroundings();
    super::family::prepare_for_forks();
    serve(listener, token, parent, false)
}

/// A pool's private fork server, forked by `Pool`'s `build` for a
/// [`Fork`](super::StartMethod::Fork) pool: its memory is the builder's as of `build`, so
/// every worker it forks (the first ones and each replacement) sees what the builder had
/// then, as a `Fork` child does, while the pool forks nothing beside its own threads.
///
/// It is the builder's child, single-threaded (forked on the building thread, where `Fork`
/// is allowed: [`sys::fork_hazard`]), recorded as a holder of the builder's handles as a
/// `Fork` child is, and forks its workers as the builder's own children (`CLONE_PARENT`),
/// recording each as a holder of its copies before the worker runs (the worker waits for
/// its requester's go-on byte, sent after the answer). It dies with the builder
/// (parent-death signal), and leaves when its last requester has gone and its last worker
/// ended; dropping the `Zygote` closes the connection, then reaps it (killing it if it
/// lingers). Killed from outside, its pool's later starts fail with
/// `Error::StartMethodUnavailable`: unlike the family's server ([`restart`]) it is never
/// started again, since its memory is the builder's as of `build`.
pub(crate) struct Zygote {
    address: String,
    pid: u32,
    pidfd: OwnedFd,
    /// The zygote as its fork record names it (none when the builder held nothing): its
    /// end lets go of that record only (`shm::forking_child_ended`).
    recorded: Option<sys::ProcId>,
    /// The process that forked it: only it kills and reaps it (a fork copy of a pool has a
    /// copy of this).
    owner: u32,
    token: [u8; 16],
    conn: std::sync::Mutex<Option<OwnedFd>>,
}

impl std::fmt::Debug for Zygote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zygote").field("pid", &self.pid).finish_non_exhaustive()
    }
}

/// How long a dropped [`Zygote`] is given to leave by itself (its workers' ends recorded)
/// before it is killed.
const ZYGOTE_LEAVE: std::time::Duration = std::time::Duration::from_secs(2);

impl Zygote {
    /// Forks the zygote. Call on the thread that builds the pool.
    ///
    /// # Errors
    ///
    /// [`Error::ForkWithThreads`] beside other threads (unless the program opted in), or
    /// what the OS said.
    pub(crate) fn start() -> Result<Zygote, Error> {
        let config = family::config()?;
        if let Some(threads) = sys::fork_hazard() {
            return Err(Error::ForkWithThreads { threads });
        }
        // The parent-death signal follows the thread that forks: a thread that lasts.
        family::on_lasting_thread(move || Zygote::fork(config.token))
    }

    /// [`Zygote::start`]'s fork, holding across it what a `Fork` start holds (`fork::start`):
    /// the zygote and its children take those locks, which another thread (beside
    /// `allow_fork_with_threads`) may hold at the fork.
    fn fork(token: [u8; 16]) -> Result<Zygote, Error> {
        use std::io::Write as _;
        let owner = sys::my_pid();
        let suffix: String = sys::random_bytes::<8>().iter().map(|b| format!("{b:02x}")).collect();
        let address = format!("multiproc-zygote-{owner}-{suffix}");
        let listener = sys::listen_abstract(&address, true)?;
        // Connected before the fork: the zygote's first requester, whose end tells it to go.
        let conn = sys::connect_abstract(&address, true)?;
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        let _ = out.flush();
        let _ = err.flush();
        let mut state = family::state();
        let record = crate::shm::before_fork();
        let forked = super::fork::fork_holding_boot_locks();
        match forked {
            Ok(Forked::Child) => {
                record.in_child();
                family::forget_parent_state(&mut state);
                drop(state);
                drop(err);
                drop(out);
                sys::close_in_fork_child(conn);
                serve(listener, token, owner, true)
            }
            Ok(Forked::Parent(pid)) => {
                drop(listener);
                let recorded = if record.holds_nothing() {
                    None
                } else {
                    sys::process_start(pid).map(|start| sys::ProcId { pid, start })
                };
                match recorded {
                    Some(zygote) => record.record(zygote),
                    None => drop(record),
                }
                drop(state);
                drop(err);
                drop(out);
                let pidfd = match sys::pidfd_of_child(pid) {
                    Ok(pidfd) => pidfd,
                    Err(e) => {
                        // Not by pid alone: a zygote reaped by the program's own wait may
                        // have left its pid to a stranger.
                        let _ = sys::kill_and_reap_child(pid);
                        if let Some(zygote) = recorded {
                            crate::shm::fork_child_ended(zygote);
                        }
                        return Err(e.into());
                    }
                };
                Ok(Zygote { address, pid, pidfd, recorded, owner, token, conn: std::sync::Mutex::new(Some(conn)) })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Asks the zygote for a child whose boot message is on `sock` (its end; `ours` is the
    /// other: a start that failed after its request went keeps a copy, as the family's
    /// server's do, to reap a worker forked as ours whose answer went nowhere).
    pub(crate) fn request(&self, sock: OwnedFd, ours: BorrowedFd<'_>) -> Result<Started, LaunchError> {
        let mut slot = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A connection lost once is not made again: the zygote leaves when its requester
        // goes.
        if slot.is_none() {
            return Err(LaunchError::Failed(unavailable(
                super::StartMethod::Fork,
                "the pool's zygote is gone (its connection was lost)".into(),
            )));
        }
        // Not started again when gone: its memory is the builder's as of `build`.
        let server: ServerAt<'_> = (self.address.as_str(), super::StartMethod::Fork, &|| self.pid);
        match ask(Ok(sock.as_fd()), &self.token, server, &mut slot, &mut 0) {
            Ok((pid, pidfd, status)) => Ok((pid, pidfd, status, None)),
            Err(Unasked::Failed(e @ LaunchError::Failed(_), true)) => {
                leave_socket(ours);
                Err(e)
            }
            Err(e) => Err(e.failed()),
        }
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // Asked of the kernel: a bare `fork` of the program leaves the cached pid stale.
        if sys::pid_now() != self.owner {
            return;
        }
        // Its requester gone, it leaves once its workers ended. Shut down, not only closed:
        // a fork child of this process (or another pool's zygote, beside
        // `allow_fork_with_threads`) may hold a copy of the connection.
        if let Some(conn) = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = sys::shutdown_both(conn.as_fd());
        }
        let left = matches!(sys::poll_readable(&[self.pidfd.as_fd()], Some(ZYGOTE_LEAVE)), Ok(r) if r[0]);
        if !left {
            let _ = sys::pidfd_signal(self.pidfd.as_fd(), sys::SIGKILL);
        }
        let _ = sys::reap_pidfd(self.pidfd.as_fd(), true);
        // Its workers were waited for (`join`): a zygote killed from outside leaves their
        // entries, dead and unrecorded, pruned here.
        if let Some(zygote) = self.recorded {
            crate::shm::forking_child_ended(zygote);
        }
    }
}

fn flush_stdio() {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

/// The longest boot message a request carries ([`Boot::Inline`]): a longer one goes on a
/// boot socket. The server receives each request into a buffer of
/// [`REQUEST_ROOM`] bytes.
pub(crate) const INLINE_BOOT_MAX: usize = 60 * 1024;
/// The server's buffer for one request: the request and an inline boot message.
const REQUEST_ROOM: usize = INLINE_BOOT_MAX + 4 * 1024;
/// The bytes of a request received on the server's stack (most requests: a page of the
/// heap written after each fork is one more copy), the rest in [`Server::buf`].
const REQUEST_HEAD: usize = 512;

/// How a fork-server child gets its boot message.
pub(crate) enum Boot<'a> {
    /// On its boot socket (this is its end, then ours: a start that failed after its
    /// request went keeps a copy of ours, shut down, to learn and reap a child the server
    /// forked as ours: [`reap_left_children`]), where it also reports.
    Socket(OwnedFd, BorrowedFd<'a>),
    /// With the request: the server receives it and the child reads it in its copy of the
    /// server's memory. Such a child has no boot socket: the request names its report room
    /// (made by the requester, who passes it here), where the child waits for its go word
    /// before it decodes the message, and leaves its outcome.
    /// The last field says whether the message holds handles (blobs of the heap): then the
    /// child waits for its go word before it decodes the message, otherwise only before it
    /// runs anything of the program's.
    Inline(&'a [u8], crate::shm::ReportRoom, bool),
}

/// A child the fork server started: its pid, a pidfd, the status pipe on which the
/// server reports how it ended unless the child is the caller's own (to reap), and its
/// report room if it has one.
pub(crate) type Started = (u32, OwnedFd, Option<OwnedFd>, Option<crate::shm::ReportRoom>);

/// Asks the fork server for a child that boots from `boot`.
///
/// A report room comes back with the child; when the start fails, it is freed if the
/// server said no child was made, and left (a few words of the heap) if one may run and
/// read it (the server died or its answer was lost after the request went: told to stop).
///
/// A server found dead (nothing listens at its address) is started again
/// ([`restart`]), once per request; a request that went to a server that then died
/// fails (its child, if one was forked, is told to stop), and the next one restarts it.
pub(crate) fn request(boot: Boot<'_>) -> Result<Started, LaunchError> {
    // The rooms of earlier starts that failed, whose children have ended since.
    crate::shm::free_left_rooms();
    reap_left_children();
    let (boot, room, ours) = match boot {
        Boot::Socket(sock, ours) => (Ok(sock), None, Some(ours)),
        // The room is 64-byte aligned: the low bit says whether the message holds handles.
        Boot::Inline(bytes, room, handles) => (Err((room.offset() | u64::from(handles), bytes)), Some(room), None),
    };
    // The server the request went to last, as its answer names it, or as read once the
    // request went (`ask`): a room is freed only once that server is done with it, or dead.
    let mut asked_of = 0;
    let asked = (|| {
        let config = family::config().map_err(|e| (LaunchError::Failed(e), false))?;
        let address = config.forkserver.as_deref().ok_or_else(|| {
            (
                LaunchError::Failed(unavailable(
                    super::StartMethod::ForkServer,
                    "no fork server in this family".into(),
                )),
                false,
            )
        })?;
        let boot = boot.as_ref().map(AsFd::as_fd).map_err(|&(at, bytes)| (at, bytes));
        let asked_of = &mut asked_of;
        let mut restarted = false;
        let mut stale = 0;
        // Asked of the kernel: a bare `fork` copy whose `pthread_atfork` handler could not be
        // registered keeps the cached pid stale.
        let me = sys::pid_now();
        loop {
            // The kept connection is taken out of the state for the exchange, so that the
            // wait for the answer holds no lock: the server may be one another thread of
            // this process is starting again (`restart`: it listens at the address, then
            // spawns the server on the launcher thread, which takes the state's lock), and
            // this request, connected to its listener, is answered only once it runs.
            // Another thread's request meanwhile makes a connection of its own; the first
            // connection put back is kept.
            let server: ServerAt<'_> = (address, super::StartMethod::ForkServer, &family_server);
            let kept = family::state().forkserver_conn.take();
            // Only the process that made it uses a kept connection. A bare `libc::fork` copy
            // of it has a copy (the same socket), closed here, never shut down, and connects
            // anew: one process's shutdown (a failed exchange's) would end the other's
            // pending receive as if the server had closed it (`ask` frees the room then, while
            // the live server may still write it), and two processes' requests on one
            // connection would take each other's answers (review35 M1).
            let mut conn = kept.and_then(|(owner, conn)| (owner == me).then_some(conn));
            let asked = ask(boot, &config.token, server, &mut conn, asked_of);
            if let Some(conn) = conn {
                let mut st = family::state();
                if st.forkserver_conn.is_none() {
                    st.forkserver_conn = Some((me, conn));
                }
            }
            match asked {
                Ok(started) => return Ok(started),
                Err(Unasked::Stale(_)) if stale < 2 => stale += 1,
                Err(Unasked::Gone(_)) if !restarted => {
                    restarted = true;
                    // Without the state's lock: a spawn from another thread than main's
                    // takes it (`family::on_lasting_thread`).
                    restart(address, config).map_err(|e| (LaunchError::Failed(e), false))?;
                }
                Err(Unasked::Stale(e) | Unasked::Gone(e)) => return Err((LaunchError::Failed(e), false)),
                Err(Unasked::Failed(e, may_run)) => return Err((e, may_run)),
            }
        }
    })();
    let room = room.map(|mut room| {
        room.asked_of(asked_of);
        room
    });
    match asked.map_err(|(e, may_run)| (server_died(e, asked_of), may_run)) {
        Ok((pid, pidfd, status)) => Ok((pid, pidfd, status, room)),
        Err((e, may_run)) => {
            if let (Some(ours), LaunchError::Failed(_) | LaunchError::ServerDied(_), true) = (ours, &e, may_run) {
                leave_socket(ours);
            }
            let Some(room) = room.filter(|_| may_run) else {
                return Err(e);
            };
            // A child may exist, waiting for its go word, and may still read the room,
            // which is left to it. A lost one's server answered and said go: it runs and
            // takes its argument. Any other is told to stop, and exits without touching
            // anything, unless the server's go came first: then it is as lost. A stopped
            // child's room is freed once it has ended (the server wrote its pid there when
            // it forked it: `free_left_rooms`).
            match e {
                LaunchError::Lost { own: Some(pid), error, boot, room: None } => {
                    // Ours (forked as our sibling): the server keeps no kid for it, so the
                    // room goes with the error, freed by `lost_child` once the child is
                    // killed and reaped (review119 L2: left here, it leaked 512 bytes).
                    room.go();
                    Err(LaunchError::Lost { own: Some(pid), error, boot, room: Some(Box::new(room)) })
                }
                LaunchError::Lost { .. } => {
                    // Left. The server's own child (`own: None`): the server that reaps it
                    // takes the room and frees it (our status pipe went with the answer's
                    // descriptors, so nobody reads the copy).
                    room.go_and_let_go();
                    room.leave();
                    Err(e)
                }
                LaunchError::Failed(error) | LaunchError::ServerDied(error) if !room.stop() => {
                    // As lost: the server that reaps the child frees the room.
                    room.go_and_let_go();
                    room.leave();
                    Err(LaunchError::Lost { own: None, error: Box::new(error), boot: None, room: None })
                }
                // Never the server's child (ours only: a Fork or Spawn start's).
                LaunchError::Failed(_) | LaunchError::ServerDied(_) | LaunchError::Reaped(_) => {
                    room.leave_to_child();
                    Err(e)
                }
            }
        }
    }
}

/// `e`, a failed start's error, as [`LaunchError::ServerDied`] when its request's server
/// (`server`, 0 if not known: nothing went, or it was being started again) is dead: the
/// next try may find a new one. A live server's refusal, or one stopped, fails every try.
fn server_died(e: LaunchError, server: u32) -> LaunchError {
    match e {
        LaunchError::Failed(e @ Error::StartMethodUnavailable(..)) if server == 0 || !sys::process_alive(server, 0) => {
            LaunchError::ServerDied(e)
        }
        e => e,
    }
}

/// How many times a fork-server start is made when the server died during it
/// ([`retrying`]),
const START_TRIES: u32 = 4;
/// the first pause between two (then 4 and 16 times as long).
const START_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// Makes the fork-server start `start` again (up to [`START_TRIES`] times, 10, 40 and 160
/// ms apart) while it fails in a way the next try may not: the family's server died during
/// it ([`LaunchError::ServerDied`]), and the next try starts a new one
/// ([`start_worth_retrying`]); given up, it fails as `Failed`. Every fork-server start goes
/// through this (`launch`: a user's `Process::start`, a pool's workers).
///
/// A failed try's child, if the dead server forked one, was told to stop, and its report
/// room left to it: each try makes its own room and boot socket.
pub(crate) fn retrying<T>(mut start: impl FnMut() -> Result<T, LaunchError>) -> Result<T, LaunchError> {
    let mut tries = 1;
    loop {
        match start() {
            Err(LaunchError::ServerDied(e)) if tries < START_TRIES && start_worth_retrying() => {
                log::debug!("a fork-server start failed ({e}): trying again");
                std::thread::sleep(START_RETRY_PAUSE * (1 << (2 * (tries - 1))));
                tries += 1;
            }
            Err(LaunchError::ServerDied(e)) => return Err(LaunchError::Failed(e)),
            started => return started,
        }
    }
}

/// Copies of our ends of the boot sockets of fork-server starts that failed after their
/// request went, shut down for writing (the child, if one was forked, reads their end and
/// exits), with the process that left each: the server writes there the pid of a child it
/// forked as ours whose answer went nowhere ([`reap_left_children`]).
static LEFT_SOCKETS: LeftBehind<OwnedFd> = LeftBehind::new();

/// Pidfds of fork servers this process started that had not ended when a later one
/// replaced them ([`started_here`]): reaped by [`reap_left_children`] once they have.
static LEFT_SERVERS: LeftBehind<OwnedFd> = LeftBehind::new();

/// Keeps a copy of `ours`, our end of the boot socket of a start that failed after its
/// request went, until we know whether the server forked a child of ours for it
/// ([`reap_left_children`]). Shut down for writing: the child, if one was forked, reads the
/// end of its boot socket and exits, whatever copies of ours live.
fn leave_socket(ours: BorrowedFd<'_>) {
    let _ = sys::shutdown_write(ours);
    let Ok(copy) = sys::dup(ours) else { return };
    // Not kept (a fork copy): closed, a child forked for it is then left a zombie.
    LEFT_SOCKETS.leave(copy, drop);
}

/// Reaps the children the fork server forked as ours for starts that failed after their
/// request went (their boot socket's copies left by [`leave_socket`]): a pid on one (the
/// server's answer went nowhere: it wrote the pid there) is reaped once that child has
/// ended; a socket at its end with no pid had no child of ours (the server died before it
/// forked, or the child was its own), or one killed before it could say (a sibling told to
/// stop writes its pid there: `boot::run`), and is closed. Called at each fork-server start and by
/// `active_children`.
pub(crate) fn reap_left_children() {
    // And the servers this process started that had not ended when a later one replaced
    // them ([`started_here`]).
    LEFT_SERVERS.sweep(
        |pidfd| matches!(sys::reap_pidfd(pidfd.as_fd(), false), Ok(None)),
        // A copy of another process's list (we were forked): not our children.
        drop,
    );
    LEFT_SOCKETS.sweep(
        |sock| {
            let mut pid = [0u8; 4];
            match sys::peek_nonblocking(sock.as_fd(), &mut pid) {
                // Not yet known: the server, or the child, still holds their end.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                // Our child, which nobody else reaps (it keeps its pid until reaped here).
                Ok(4) => matches!(sys::reap_child_if_ended(u32::from_le_bytes(pid)), Ok(false)),
                // At its end with no pid (or a short one, never written): no child of ours.
                _ => false,
            }
        },
        // A copy of another process's list (we were forked): not our children.
        drop,
    );
}

/// Whether a start whose fork server died during it ([`LaunchError::ServerDied`]) may
/// succeed if made again: this process is the one that starts a dead server again (the
/// next start does), and the family's server is not stopped (a stopped one fails every
/// start until it is continued). A pool's zygote (`Fork`) is never started again, nor a
/// server by a child process.
fn start_worth_retrying() -> bool {
    fork_server_pid().is_some() && !sys::process_stopped(family_server())
}

/// The error of a start whose server cannot fork it.
fn unavailable(method: super::StartMethod, why: String) -> Error {
    Error::StartMethodUnavailable(method, why)
}

/// Why [`ask`] got no child.
enum Unasked {
    /// Nothing listens at the server's address: it is gone. Nothing was sent.
    Gone(Error),
    /// The connection kept from an earlier request leads nowhere (its server is gone, or
    /// closed it): nothing was sent, and the connection is dropped.
    Stale(Error),
    /// The server said no, or did not answer a request that went: whether a child may
    /// have been made.
    Failed(LaunchError, bool),
}

impl Unasked {
    /// As one error, whatever it was (a pool's zygote is not started again).
    fn failed(self) -> LaunchError {
        match self {
            Unasked::Gone(e) | Unasked::Stale(e) => LaunchError::Failed(e),
            Unasked::Failed(e, _) => e,
        }
    }
}

/// A server to ask: its address, the start method it serves (for errors), and where its pid
/// is read (0: not known).
type ServerAt<'a> = (&'a str, super::StartMethod, &'a dyn Fn() -> u32);

/// The family's fork server's pid, as published in the heap's header (0 while it is being
/// started again: [`restart`]).
fn family_server() -> u32 {
    let pid = crate::shm::Heap::get().fork_server().load(std::sync::atomic::Ordering::Acquire);
    u32::try_from(pid).unwrap_or(0)
}

/// [`request`]'s exchange with the server at `address` (the family's fork server, or a
/// pool's [`Zygote`]: `method` names it in errors; `pid` reads its pid, 0 if unknown), over
/// the connection kept in `slot`:
/// `boot` is the child's end of its boot socket, or its report room's offset and its boot
/// message (sent as the room's offset, 8 bytes little-endian, then the message: the child
/// waits for its go word before it decodes the message, whose blobs its requester may
/// have given back). `asked` is set to the pid of the server the request went to: the one
/// its answer names, else as read once it went (the pid is published after the listener
/// of a server started again: one read before might be its dead predecessor's; one read
/// after may be a later server's), 0 if not known. A request whose connection ended with
/// no answer marks its room as no server's to write any more
/// ([`crate::shm::ReportRoom::server_gone_at`]), whatever `asked` says.
fn ask(
    boot: Result<BorrowedFd<'_>, (u64, &[u8])>,
    token: &[u8; 16],
    (address, method, pid): ServerAt<'_>,
    slot: &mut Option<OwnedFd>,
    asked: &mut u32,
) -> Result<(u32, OwnedFd, Option<OwnedFd>), Unasked> {
    let failed = |e: Error, may_run: bool| Unasked::Failed(LaunchError::Failed(e), may_run);
    let unavailable = |why: String| unavailable(method, why);
    let fresh = slot.is_none();
    *asked = 0;
    if fresh && stays_stopped(pid()) {
        // Not restarted either: it may be stopped on purpose (a debugger), and its
        // continuation finds it serving.
        return Err(failed(unavailable(stopped(pid())), false));
    }
    if fresh {
        match connect(address, pid) {
            Ok(conn) => *slot = Some(conn),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(Unasked::Gone(unavailable(format!("cannot reach it: {e}"))));
            }
            Err(e) => return Err(failed(unavailable(format!("cannot reach it: {e}")), false)),
        }
        // Connected to a listener whose server is dead: another process keeps the dead
        // server's address (a copy made by a fork that ran no handler of a restart's
        // listener, which then failed: the dead pid was put back). Nobody will answer, as
        // `answer` would find after its first look; nothing is sent.
        let server = pid();
        if server != 0 && !sys::process_alive(server, 0) {
            *slot = None;
            return Err(failed(unavailable(format!("it is dead (pid {server}), its address kept")), false));
        }
    }
    let conn = slot.as_ref().expect("connected above").as_fd();
    let me = sys::me();
    let request = codec::encode_own(&Request { token: *token, pid: me.pid, start: me.start })
        .map_err(|e| failed(e.into(), false))?;
    // Room for the answer's two descriptors, taken before the server forks: a process out
    // of descriptors gets `EMFILE` here, with no child made. (Another thread may still take
    // the room back before the answer comes: then the child is `Lost`.)
    let room = [sys::dup(conn), sys::dup(conn)];
    let room = match room {
        [Ok(a), Ok(b)] => [a, b],
        [Err(e), _] | [_, Err(e)] => return Err(failed(e.into(), false)),
    };
    let Ok(len) = u32::try_from(request.bytes.len()) else { unreachable!("a request of 4 GiB") };
    let (report_room, inline): (&[u8], &[u8]) = match &boot {
        Ok(_) => (&[], &[]),
        Err((at, bytes)) => (&at.to_le_bytes(), bytes),
    };
    let message = [&len.to_le_bytes()[..], &request.bytes, report_room, inline].concat();
    request.sent();
    let fds: &[BorrowedFd<'_>] = match &boot {
        Ok(sock) => &[*sock],
        Err(_) => &[],
    };
    if let Err(e) = sys::send_with_fds(conn, &message, fds) {
        // Nothing went: no child. A kept connection whose server died says so here.
        *slot = None;
        let e = unavailable(format!("the fork server did not answer: {e}"));
        return Err(if fresh { failed(e, false) } else { Unasked::Stale(e) });
    }
    drop(room);
    // Asked, not yet answered: a test holds a requester here (`hold:`) while it kills the
    // server, whose death the requester then meets in its wait, or while another thread
    // starts a new server, which the pid read below may then be.
    crash_point!("forkserver.asked");
    // The server that has the request, or a later one (0 while one is being started again:
    // read again while the answer is waited for), until its answer names it.
    *asked = pid();
    let mut buf = [0u8; 512];
    let mut fds = Vec::new();
    // The server answers within a fork's time; waiting for it awake saves a wake-up, unless
    // the machine is busy (then the server needs the processor).
    let spun = REPLY_SPINS.spin(REPLY_SPIN, || sys::recv_with_fds_nonblocking(conn, &mut buf, &mut fds).transpose());
    let received = match spun {
        Some(received) => received,
        None => answer(conn, &mut buf, &mut fds, (asked, pid)),
    };
    // The connection's end with no answer (EOF; `ECONNRESET` when the request was still
    // unread there, or the listener it waited on went): every copy of the server's end is
    // closed. No server will read the request any more, and one that read it died, or closed
    // the connection after its last write to the request's room (`Server::send_reply`).
    // (Our own end is shut down by nobody else: the family's connection is this process's
    // alone, `request`; a zygote's requests name no room.)
    let ended = match &received {
        Ok(n) => *n == 0,
        Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
    };
    let result = match received {
        Ok(0) => Err(io::Error::other("the fork server closed the connection")),
        Ok(n) => Ok((buf[..n].to_vec(), fds)),
        Err(e) => Err(e),
    };
    let (reply, mut fds) = match result {
        Ok(r) => r,
        Err(e) => {
            // Shut down, not only closed: a late answer (a stopped server continued) must
            // go nowhere, whatever copies of the connection fork children hold, so that the
            // server never says go to a room left to a child told to stop (its answer fails,
            // and it writes the pid of a child of ours on the child's boot socket:
            // `reap_left_children`); and a server that reads the request only now finds the
            // connection ended after it, and forks nothing (`Server::handle`).
            let _ = sys::shutdown_both(conn);
            // An answer sent before the shutdown is still queued (the server was continued
            // between our last look and the shutdown): the start went through.
            let mut buf = [0u8; 512];
            let mut fds = Vec::new();
            let late = sys::recv_with_fds_nonblocking(conn, &mut buf, &mut fds);
            *slot = None;
            match late {
                Ok(Some(n)) if n > 0 => (buf[..n].to_vec(), fds),
                _ => {
                    if let (true, Err((at, _))) = (ended, boot) {
                        // Whatever server `asked` names (0, not known: a server being
                        // started again, whose spawn may fail; or a later one than the
                        // request's, alive), none will write the room: it goes once its
                        // child, if one was forked, has ended (review33 F2).
                        crate::shm::ReportRoom::server_gone_at(at & !1);
                    }
                    return Err(failed(unavailable(format!("the fork server did not answer: {e}")), true));
                }
            }
        }
    };
    let reply = codec::decode_own::<Reply>(&reply).map_err(|e| failed(e.into(), true))?;
    // A test loses the answer's descriptors, as when they find no room here: the child is
    // `Lost`.
    if fail_point!("forkserver.answer.fds") {
        fds.clear();
    }
    if let Reply::Forked { server, .. } | Reply::Yours { server, .. } = reply {
        // Exactly the server that may still write the child's room: the pid read above may
        // be a later server's (another thread started one again meanwhile), which would
        // keep the room while it lives although this one, dead, never marks it.
        *asked = server;
    }
    match reply {
        Reply::Forked { pid, .. } => {
            let mut fds = fds.into_iter();
            match (fds.next(), fds.next()) {
                (Some(pidfd), Some(status)) => Ok((pid, pidfd, Some(status))),
                _ => Err(Unasked::Failed(LaunchError::lost(None), true)),
            }
        }
        Reply::Yours { pid, .. } => match fds.into_iter().next() {
            Some(pidfd) => Ok((pid, pidfd, None)),
            None => Err(Unasked::Failed(LaunchError::lost(Some(pid)), true)),
        },
        // The server made no child, or killed and reaped the one it made.
        Reply::Refused(why) => Err(failed(unavailable(why), false)),
        Reply::ForkFailed(errno) => {
            if errno == out_of_descriptors() {
                // The server may have closed the connection to make room.
                *slot = None;
            }
            Err(failed(Error::Io(io::Error::from_raw_os_error(errno)), false))
        }
    }
}

/// Connects to the fork server at `address`, whose pid `pid` reads (0 while it is being
/// started again). A listener's backlog is full when nobody accepts: a stopped or busy
/// server, which is waited for, looked at each [`CONNECT_RETRY`]; or the listener of a dead
/// server kept by another process (see [`ask`]), whose queue of connections nobody ever
/// takes: a blocking connect waited there for that process's life (review50 M2). A dead
/// server's connect fails, as [`answer`] would.
fn connect(address: &str, pid: &dyn Fn() -> u32) -> io::Result<OwnedFd> {
    loop {
        match sys::connect_abstract_nonblocking(address, true) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            connected => return connected,
        }
        let server = pid();
        if server != 0 && !sys::process_alive(server, 0) {
            return Err(io::Error::other(format!("it is dead (pid {server}), its address kept")));
        }
        std::thread::sleep(CONNECT_RETRY);
    }
}

/// How often a connect to a server whose backlog is full is tried again ([`connect`]).
const CONNECT_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// Waits for the server's answer on `conn`: as long as it takes a live server, however
/// slow, but not for a server that cannot answer, looked at every [`REPLY_CHECK`]: stopped
/// (`SIGSTOP`, a debugger: `T` or `t` in `/proc`) at two looks in a row (a group stop and
/// its continuation, Ctrl-Z then `fg`, may be seen half done at one look), a zombie or gone
/// (its end of the connection is closed then, which the receive sees first, unless a fork
/// copy of it holds it). `server` is the server's pid, read again (`pid`) while it is 0 (a
/// server being started again: not looked at).
fn answer(
    conn: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    (server, pid): (&mut u32, &dyn Fn() -> u32),
) -> io::Result<usize> {
    let mut looks = StopLooks::default();
    loop {
        // One deadline for the next look, kept across signals: a wait started again at each
        // `EINTR` never looked under a signal more often than `REPLY_CHECK` (an interval
        // timer, a profiler), and a stopped server held the start for ever (review54 L1).
        let next_look = Instant::now() + REPLY_CHECK;
        loop {
            let left = next_look.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Readable, hung up, or a signal: the receive says which.
            sys::poll_readable(&[conn], Some(left))?;
            if let Some(received) = sys::recv_with_fds_nonblocking(conn, buf, fds)? {
                return Ok(received);
            }
        }
        if *server == 0 {
            *server = pid();
        }
        match looks.look(*server) {
            Look::StaysStopped => return Err(io::Error::other(stopped(*server))),
            Look::Stopped => continue,
            Look::Running => {}
        }
        if *server != 0 && !sys::process_alive(*server, 0) {
            return Err(io::Error::other(format!("it is dead (pid {server})")));
        }
        // Looked, and waits on: a test holds a requester here to know that it looked.
        crash_point!("forkserver.answer.waits");
    }
}

/// Just before the server forks a child for a request that names the report room at
/// `room`: from then on a child may exist whose pid is not yet in the room's child word (it
/// comes after the fork, from the server or from the child). A requester that left the
/// room frees it only once that child ended, or once the server is dead with the word
/// still empty (no child was forked).
fn forking(room: Option<u64>) {
    if let Some(off) = room {
        crate::shm::ReportRoom::forking_at(off);
    }
}

/// After the answer to a request that names the report room at `room`, for which a child was
/// forked: the server's go if the answer `went` (the child mostly finds it said before its
/// requester's), and its last write to the room ([`crate::shm::ReportRoom::answered_at`]).
/// True when the go went first: the requester then frees the room only once it read the
/// child's status, or never (see [`Kid::frees_on_status`]).
fn answered(room: Option<u64>, went: bool) -> bool {
    let Some(off) = room else { return false };
    if went {
        // Answered, go not yet said: the requester may have seen its child end by now,
        // and leaves the room until the server is done with it.
        crash_point!("forkserver.answered");
    } else {
        // No answer went (its requester gave up, or the send failed on a live
        // connection: `fail:forkserver.reply`), the last write not yet made: the
        // connection is still open here (`Server::close_unanswered` comes after), and its
        // requester still waits (review35 L1).
        crash_point!("forkserver.unanswered");
    }
    crate::shm::ReportRoom::answered_at(off, went)
}

/// No child for the report room at `room` (the fork failed, or the request was refused or
/// abandoned): none to come, and the server is done with the room.
fn unforked(room: Option<u64>) {
    if let Some(off) = room {
        crate::shm::ReportRoom::unforked_at(off);
    }
}

/// Looks, one per [`REPLY_CHECK`], at a process waited on (a server's answer, a child's read
/// of its boot frame), for one that cannot go on: stopped (`SIGSTOP`, a debugger) at two
/// looks in a row. One look may see a group stop, or its continuation, half done (Ctrl-Z
/// then `fg`).
#[derive(Default)]
pub(crate) struct StopLooks {
    stopped_before: bool,
}

/// What a [`StopLooks`] look saw.
pub(crate) enum Look {
    /// Not stopped (or not known: pid 0, gone).
    Running,
    /// Stopped, not at the look before.
    Stopped,
    /// Stopped at this look and the one before: not to be waited for.
    StaysStopped,
}

impl StopLooks {
    /// Looks at process `pid` (0, not known: running).
    pub(crate) fn look(&mut self, pid: u32) -> Look {
        if !sys::process_stopped(pid) {
            self.stopped_before = false;
            Look::Running
        } else if std::mem::replace(&mut self.stopped_before, true) {
            Look::StaysStopped
        } else {
            Look::Stopped
        }
    }
}

/// Whether the server `pid` is stopped at two looks [`REPLY_CHECK`] apart (a new
/// connection to a stopped server would wait in its backlog, and fill it).
fn stays_stopped(pid: u32) -> bool {
    sys::process_stopped(pid) && {
        std::thread::sleep(REPLY_CHECK);
        sys::process_stopped(pid)
    }
}

/// Why a start does not wait for a stopped server.
fn stopped(pid: u32) -> String {
    format!("it is stopped (pid {pid}: SIGSTOP or a debugger); continue it (SIGCONT) and start again")
}

/// `EMFILE`'s errno.
fn out_of_descriptors() -> i32 {
    sys::out_of_descriptors().raw_os_error().unwrap_or_default()
}

/// The answer to a fork that failed: its errno, or (none) a refusal that says why.
fn fork_failed(e: io::Error) -> Reply {
    match e.raw_os_error() {
        Some(errno) => Reply::ForkFailed(errno),
        None => Reply::Refused(format!("fork failed: {e}")),
    }
}

/// A requester: one connection of one process.
struct Requester {
    sock: Option<OwnedFd>,
    /// The requester's pidfd, once it identified itself.
    pidfd: Option<OwnedFd>,
    /// The pid of the process that connected (its peer credentials).
    peer: u32,
    /// Whether `pidfd` is that process's: a bare `fork` copy whose cached pid is stale (no
    /// fork handler ran) names its parent in its requests, and its parent's death leaves
    /// the copy alive, perhaps about to free its child's room.
    watches_peer: bool,
}

/// The status word a kid's requester reads when its end is known but not its status (a kid
/// reaped by somebody else, on a kernel that keeps no status for its pidfd): no wait status
/// is all ones. The requester takes it as the kid's outcome says (`child::ended_as_reported`).
pub(crate) const STATUS_UNKNOWN: i32 = -1;

struct Kid {
    pidfd: OwnedFd,
    /// Where the wait status goes.
    status: OwnedFd,
    requester: usize,
    /// Its report room (its offset), if its request named one: its requester's to free.
    room: Option<u64>,
    /// Whether the room is the server's to free once the kid ended: its requester died
    /// before the kid ended ([`Server::requester_died`]).
    room_ours: bool,
    /// Whether its requester frees the room only once it read the kid's status from the
    /// server, or never: the answer went, with the server's go said first (a requester's
    /// stop then comes too late, so it never leaves the room to the child, which it frees
    /// once it sees the child ended, status or not: `free_left_rooms`). Then a status written
    /// and never read is a room its requester never freed ([`Reported`]).
    frees_on_status: bool,
}

/// A kid ended and reaped, whose room is its requester's to free once it read the status
/// written ([`Kid::frees_on_status`]), until the requester read it: a requester that dies
/// first leaves the room to the server (fix67's residual: it leaked).
struct Reported {
    requester: usize,
    room: u64,
    /// The status pipe's write end: what it still holds was not read.
    status: OwnedFd,
}

impl Reported {
    /// Whether the requester read the status (then the room is its own to free, or freed).
    fn read(&self) -> bool {
        sys::pipe_held(self.status.as_fd()).is_ok_and(|held| held == 0)
    }
}

/// A kid reaped before its requester let go of its room (its go after the answer, its last
/// touch: `ReportRoom::go_and_let_go`), whose requester frees the room only on its status
/// ([`Kid::frees_on_status`]): a short kid may end before its requester has the answer.
/// Its status waits (the requester, which joins only after its go, waits for nothing) until
/// the requester lets go, and the server then takes the room ([`take_room`]); or until the
/// requester dies (the room is the server's: it never freed it, and touches it no more); or
/// for [`LET_GO_WAIT`] at most (a requester stopped, or slow), after which the status goes
/// alone and the room stays its requester's, as before (mt81 B1's residual, then).
struct Waiting {
    kid: Kid,
    status: i32,
    since: Instant,
}

/// How long a reaped kid's status waits for its requester to let go of the room
/// ([`Waiting`]),
const LET_GO_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// and how often the server looks meanwhile.
const LET_GO_LOOK: std::time::Duration = std::time::Duration::from_millis(1);

/// Takes the room at `off` of a kid just reaped whose requester let go of it
/// (`ReportRoom::go_and_let_go`, its last touch before it reads the kid's end): sends the
/// requester a copy of what the kid left on the kid's status pipe `status`, then frees the
/// room, before the status is written. True when taken: the requester reads the copy and
/// never touches the room again, and no other process frees it (mt81 B1: a requester
/// killed between its read of the status and its free of the room leaked it, and the other
/// order frees it twice). False (the room stays its requester's, as before) when the
/// requester has not let go yet, or the kid spilled its message, or the copy could not be
/// written to a requester that may still read the pipe (then it meets the status alone and
/// reads the room itself). A pipe whose reader is gone (`EPIPE`: the requester dropped the
/// kid's state, or died, having let go) is taken all the same: nobody else touches the room.
///
/// The room is recorded in the heap's header from just after the copy went until just
/// before its free (`ReportRoom::taking_at`): a server killed in between leaves it to the
/// process that starts the server again, which frees it (`ReportRoom::free_taken_by_dead`;
/// before, it leaked, 512 bytes). Never before the copy: a requester with no copy frees the
/// room itself, and a record too would have the restart free it a second time (review128
/// H1).
fn take_room(off: u64, status: &OwnedFd, me: u32) -> bool {
    let mut copy = [0u8; crate::shm::TAKEN_MAX];
    let Some(len) = crate::shm::ReportRoom::copy_at(off, &mut copy) else { return false };
    // Not yet copied, nor recorded: a server killed here leaves the room to its requester,
    // which meets the pipe's end with no copy and frees the room itself.
    crash_point!("forkserver.room.copying");
    match sys::write_all(status.as_fd(), &copy[..len]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(_) => return false,
    }
    // Recorded only once the copy went (review128 H1: recorded before it, a server killed
    // in between left the room to its requester, which freed it, *and* to the restart,
    // which freed it again). A kill between the write's return and this record leaks the
    // room: a few instructions, no system call.
    let record = crate::shm::ReportRoom::taking_at(off, me);
    // Copied, not yet freed: a server killed here leaves the room recorded (its requester
    // has the copy, and leaves the room).
    crash_point!("forkserver.room.taken");
    crate::shm::ReportRoom::taken_at(off, record);
    true
}

struct Server {
    listener: OwnedFd,
    /// This server's pid (asked once, at its start): its children's parent, and named in
    /// its answers (`Reply::Forked`, `Reply::Yours`).
    me: u32,
    /// The main process, the server's parent: its children are forked as its own.
    main: sys::ProcId,
    /// Whether `clone3(CLONE_PARENT)` works here (until it fails once).
    siblings: bool,
    token: [u8; 16],
    /// Why this server cannot fork safely, if it cannot.
    unsafe_to_fork: Option<String>,
    requesters: Vec<Requester>,
    kids: Vec<Kid>,
    /// Kids ended whose status is not read yet, with their rooms.
    reported: Vec<Reported>,
    /// Kids reaped before their requesters let go of their rooms ([`Waiting`]).
    waiting: Vec<Waiting>,
    /// Where a request longer than [`REQUEST_HEAD`] is received ([`REQUEST_ROOM`] bytes,
    /// made once): a child reads its inline boot message in its copy.
    buf: &'static mut [u8],
    /// A descriptor held in reserve: closed to accept a requester when the server has no
    /// room for its socket, which then gets `EMFILE` for an answer. Without it the waiting
    /// connection keeps the listener readable: the server would spin on `accept` and the
    /// requester wait for ever.
    spare: Option<OwnedFd>,
    /// A pool's zygote (see [`Zygote`]), not the family's server.
    zygote: bool,
    /// A zygote's children recorded as holders of its copies (`shm::ForkRecord`), with a
    /// pidfd each, until they end (`shm::fork_child_ended`).
    copies: Vec<(sys::ProcId, OwnedFd)>,
    /// Whether a requester connected (a zygote leaves when none is left).
    served: bool,
}

/// Where a new child finds its boot message.
enum ChildBoot {
    /// Its boot socket.
    Socket(OwnedFd),
    /// These bytes of the request's head (on the server's stack), or of [`Server::buf`]
    /// (`true`: a request longer than the head).
    Inline(std::ops::Range<usize>, bool),
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Accept,
    Message(usize),
    RequesterDied(usize),
    KidEnded(usize),
    /// A zygote's child recorded as a holder of its copies ended.
    CopyEnded(usize),
}

/// The server's life: the family's fork server, or (`zygote`) a pool's [`Zygote`].
fn serve(listener: OwnedFd, token: [u8; 16], main: u32, zygote: bool) -> ! {
    if !sys::die_with_parent(main) {
        sys::exit_now(0);
    }
    // Forked from `test_support!`'s `.init_array` entry, the server calls the constructors
    // that come after it, so that its children see what they registered (`sys::early`).
    // A zygote is forked from a running program: they ran.
    if !zygote {
        sys::finish_constructors();
        // Forked from the program, the server has its dispositions: `SIGCHLD` ignored
        // (inherited through `exec`, or set before `init()`) had the kernel reap the
        // server's own children, a handler of the program's reaped them in the server, and
        // their requesters never learnt their ends (review85 H1). Its children have the
        // default too, as those of a server started again (every signal's default). After
        // the constructors, which may set one too (review88 L3: a C library's, a `ctor`'s).
        // A zygote keeps the program's, as its workers, copies of the program, do.
        sys::default_sigchld();
        // For its children, which inherit it (a zygote has its program's already).
        family::finish_at_exit();
    }
    let unsafe_to_fork = sys::fork_hazard_ignoring_opt_in().map(|threads| {
        format!(
            "a constructor left {threads} threads running in the fork server, which could hold locks its children need"
        )
    });
    sys::block_interrupts();
    sys::prepare_stdin_devnull();
    sys::stdin_from_devnull();
    // std's stdout is made on first use (a lock and a buffer from the heap): made once
    // here, every child finds it made when it flushes on its way out (`sys::exit_now`),
    // instead of running std's lazy start-up and the allocator in its copy.
    let _ = std::io::stdout();
    // The crash points' variable is read once here, not by each child (a `getenv` and its
    // page faults in every copy); a child given another environment reads it again.
    crate::shm::crash::prepare_for_forks();
    // What a child's way from its boot message to its report needs from the allocator, but
    // its name: each child names its copy.
    let blank = boot::Prepared::blank();
    let main = sys::ProcId { pid: main, start: sys::process_start_time(main).unwrap_or(0) };
    let mut server = Server {
        listener,
        me: sys::pid_now(),
        main,
        siblings: true,
        token,
        unsafe_to_fork,
        requesters: Vec::new(),
        kids: Vec::new(),
        reported: Vec::new(),
        waiting: Vec::new(),
        // Mapped, not allocated: its pages are the server's only once a long request
        // wrote them (`vec!` zeroed, and so dirtied, 68 KiB of a heap shared with children).
        buf: sys::lasting_zeroed(REQUEST_ROOM).unwrap_or_else(|_| vec![0; REQUEST_ROOM].leak()),
        spare: None,
        zygote,
        copies: Vec::new(),
        served: false,
    };
    // A request's first bytes: a child reads its boot message in its copy.
    let mut head = [0u8; REQUEST_HEAD];
    let mut events = Events { at: [Event::Accept; sys::POLL_ON_STACK], len: 0, more: Vec::new() };
    loop {
        server.poll(&mut events);
        for &event in events.all() {
            match event {
                Event::Accept => server.accept(),
                Event::Message(i) => {
                    if let Some((child_boot, parent)) = server.handle(i, &mut head) {
                        // In the new child: close every descriptor of the server, then boot.
                        // Its parent is the main process when it was forked as its sibling.
                        let yours = parent == server.main.pid;
                        let buf = std::mem::take(&mut server.buf);
                        server.close_in_child();
                        match child_boot {
                            ChildBoot::Socket(sock) => boot::run_forked(sock, parent, blank, yours),
                            ChildBoot::Inline(at, false) => boot::run_forked_with(&head[at], parent, blank),
                            ChildBoot::Inline(at, true) => boot::run_forked_with(&buf[at], parent, blank),
                        }
                    }
                }
                Event::RequesterDied(i) => server.requester_died(i),
                Event::KidEnded(k) => server.kid_ended(k),
                Event::CopyEnded(c) => server.copy_ended(c),
            }
        }
        server.report_waiting();
        server.tidy();
        if server.zygote
            && server.served
            && server.copies.is_empty()
            && server.kids.is_empty()
            && server.waiting.is_empty()
            && server.requesters.iter().all(|r| r.sock.is_none())
        {
            // A zygote whose requester went and whose workers ended: nobody asks any more.
            sys::exit_now(0);
        }
        if server.spare.is_none() {
            server.spare = sys::dup(&server.listener).ok();
        }
    }
}

/// What one poll found, in the order to handle it: on the stack, so that the server's
/// steady loop (a poll, a request, a fork, an answer) writes no page of its heap: each such
/// write while a child lives copies a page the child shares. More descriptors than
/// [`sys::POLL_ON_STACK`] (many requesters or children of theirs): `more`.
struct Events {
    at: [Event; sys::POLL_ON_STACK],
    len: usize,
    more: Vec<Event>,
}

impl Events {
    fn all(&self) -> &[Event] {
        if self.more.is_empty() { &self.at[..self.len] } else { &self.more }
    }
}

/// The order events are handled in: kids first, from the back (their indices shift when
/// removed), then requesters' deaths, their messages, and new requesters.
fn event_order(e: &Event) -> (u8, usize) {
    match e {
        Event::CopyEnded(c) => (0, usize::MAX - c),
        Event::KidEnded(k) => (0, usize::MAX / 2 - k),
        Event::RequesterDied(i) => (1, *i),
        Event::Message(i) => (2, *i),
        Event::Accept => (3, 0),
    }
}

impl Server {
    fn poll<'a>(&'a self, events: &mut Events) {
        events.len = 0;
        events.more.clear();
        let watched = 1
            + self
                .requesters
                .iter()
                .map(|r| usize::from(r.sock.is_some()) + usize::from(r.pidfd.is_some()))
                .sum::<usize>()
            + self.kids.len()
            + self.copies.len();
        if watched <= sys::POLL_ON_STACK {
            let mut fds = [self.listener.as_fd(); sys::POLL_ON_STACK];
            let mut what = [Event::Accept; sys::POLL_ON_STACK];
            let mut n = 1;
            let mut watch = |fd: BorrowedFd<'a>, event: Event| {
                fds[n] = fd;
                what[n] = event;
                n += 1;
            };
            for (i, r) in self.requesters.iter().enumerate() {
                if let Some(s) = &r.sock {
                    watch(s.as_fd(), Event::Message(i));
                }
                if let Some(p) = &r.pidfd {
                    watch(p.as_fd(), Event::RequesterDied(i));
                }
            }
            for (k, kid) in self.kids.iter().enumerate() {
                watch(kid.pidfd.as_fd(), Event::KidEnded(k));
            }
            for (c, (_, pidfd)) in self.copies.iter().enumerate() {
                watch(pidfd.as_fd(), Event::CopyEnded(c));
            }
            let mut ready = [false; sys::POLL_ON_STACK];
            if sys::poll_readable_into(&fds[..n], &mut ready, self.waiting_look()).is_err() {
                return;
            }
            for (event, _) in what[..n].iter().zip(ready).filter(|(_, r)| *r) {
                events.at[events.len] = *event;
                events.len += 1;
            }
            events.at[..events.len].sort_unstable_by_key(event_order);
            return;
        }
        events.more = self.poll_many();
    }

    /// [`Server::poll`] of more descriptors than fit on the stack.
    fn poll_many(&self) -> Vec<Event> {
        let mut fds: Vec<BorrowedFd<'_>> = vec![self.listener.as_fd()];
        let mut what = vec![Event::Accept];
        for (i, r) in self.requesters.iter().enumerate() {
            if let Some(s) = &r.sock {
                fds.push(s.as_fd());
                what.push(Event::Message(i));
            }
            if let Some(p) = &r.pidfd {
                fds.push(p.as_fd());
                what.push(Event::RequesterDied(i));
            }
        }
        for (k, kid) in self.kids.iter().enumerate() {
            fds.push(kid.pidfd.as_fd());
            what.push(Event::KidEnded(k));
        }
        for (c, (_, pidfd)) in self.copies.iter().enumerate() {
            fds.push(pidfd.as_fd());
            what.push(Event::CopyEnded(c));
        }
        let ready = match sys::poll_readable(&fds, self.waiting_look()) {
            Ok(r) => r,
            Err(_) => return Vec::new(),
        };
        // Kids first (their indices shift when removed, so handle from the back).
        let mut events: Vec<Event> = what.into_iter().zip(ready).filter_map(|(e, r)| r.then_some(e)).collect();
        events.sort_by_key(event_order);
        events
    }

    fn accept(&mut self) {
        let sock = match sys::accept(self.listener.as_fd()) {
            Ok(sock) => sock,
            Err(e) if e.raw_os_error() == sys::out_of_descriptors().raw_os_error() && self.spare.is_some() => {
                // Out of descriptors: the spare's room takes the requester, whose request
                // is then refused with EMFILE (`handle`, no boot socket) and its socket
                // closed.
                self.spare = None;
                let Ok(sock) = sys::accept(self.listener.as_fd()) else { return };
                sock
            }
            Err(_) => {
                // Nothing to take the connection with: wait a moment rather than spin.
                std::thread::sleep(std::time::Duration::from_millis(10));
                return;
            }
        };
        // Only the family's own user may ask; the token checks membership.
        let Ok((uid, peer)) = sys::peer_cred(sock.as_fd()) else { return };
        if uid != sys::my_uid() {
            return;
        }
        self.requesters.push(Requester { sock: Some(sock), pidfd: None, peer, watches_peer: false });
        self.served = true;
    }

    /// Serves one request: a length (`u32`, little-endian), the [`Request`], then the
    /// child's boot message, or nothing and its boot socket along. In the forked child,
    /// returns where it finds its boot message, and its parent pid.
    fn handle(&mut self, i: usize, head: &mut [u8; REQUEST_HEAD]) -> Option<(ChildBoot, u32)> {
        let sock = self.requesters[i].sock.as_ref()?;
        let mut fds = Vec::new();
        let n =
            sys::recv_with_fds_split(sock.as_fd(), head, &mut self.buf[REQUEST_HEAD..], &mut fds).unwrap_or_default();
        if n == 0 {
            self.requesters[i].sock = None;
            return None;
        }
        let long = n > REQUEST_HEAD;
        if long {
            self.buf[..REQUEST_HEAD].copy_from_slice(head);
        }
        let message = if long { &self.buf[..n] } else { &head[..n] };
        let parsed = message.split_first_chunk::<4>().and_then(|(len, rest)| {
            let len = u32::from_le_bytes(*len) as usize;
            (len <= rest.len()).then_some((4..4 + len, 4 + len..n))
        });
        let decoded = parsed.as_ref().map(|(at, _)| codec::decode_own::<Request>(&message[at.clone()]));
        let request = match decoded {
            Some(Ok(r)) if r.token == self.token => r,
            _ => {
                self.reply(i, &Reply::Refused("not a member of this family".into()), &[]);
                self.requesters[i].sock = None;
                return None;
            }
        };
        if self.requesters[i].pidfd.is_none() {
            // Watch the requester, so that its children die with it.
            if sys::process_start_time(request.pid) == Some(request.start) {
                self.requesters[i].pidfd = sys::pidfd_open(request.pid).ok();
                self.requesters[i].watches_peer = request.pid == self.requesters[i].peer;
            }
        }
        let inline = parsed.map(|(_, boot)| boot).filter(|boot| !boot.is_empty());
        let child_boot = match (inline, fds.into_iter().next()) {
            (Some(at), None) => ChildBoot::Inline(at, long),
            (None, Some(sock)) => ChildBoot::Socket(sock),
            (None, None) => {
                // A request without a boot message carries a boot socket: the kernel dropped
                // it, for lack of room here. The connection is closed too, to give the room
                // back (the requester connects again).
                self.reply(i, &Reply::ForkFailed(out_of_descriptors()), &[]);
                self.requesters[i].sock = None;
                return None;
            }
            (Some(_), Some(_)) => {
                self.reply(i, &Reply::Refused("neither a boot message nor a boot socket".into()), &[]);
                return None;
            }
        };
        // A socketless child's room (the boot message's first 8 bytes, the low bit a flag):
        // the server says go once its answer went, so that the child mostly finds it said
        // (its requester says it too, later). Its last write to the room says it is done
        // with it: `UNFORKED` before an answer without a child, `answered_at` after the
        // answer for a child (a requester frees the room only once it sees that, or the
        // server dead).
        let go_room = match &child_boot {
            ChildBoot::Inline(at, long) => {
                let message = if *long { &self.buf[..] } else { &head[..] };
                message.get(at.clone()).and_then(|b| b.first_chunk::<8>()).map(|w| u64::from_le_bytes(*w) & !1)
            }
            ChildBoot::Socket(_) => None,
        };
        if let Some(why) = self.unsafe_to_fork.clone() {
            unforked(go_room);
            self.reply(i, &Reply::Refused(why), &[]);
            return None;
        }
        if self.zygote && matches!(child_boot, ChildBoot::Inline(..)) {
            // A zygote's child waits for its go-on byte: it runs only once recorded.
            unforked(go_room);
            self.reply(i, &Reply::Refused("a zygote's child needs a boot socket".into()), &[]);
            return None;
        }
        if self.requesters[i].sock.as_ref().is_some_and(|sock| sys::peer_ended(sock.as_fd())) {
            // Its requester gave up on the answer (a server stopped, then continued) or
            // died: no child, whom nobody would reap (a sibling of the main process) or
            // wait for; its room, left to a child, is freed (`ReportRoom::unforked_at`).
            unforked(go_room);
            self.requesters[i].sock = None;
            return None;
        }
        if self.siblings && request.pid == self.main.pid && request.start == self.main.start {
            let record = self.zygote.then(crate::shm::before_fork);
            forking(go_room);
            match sys::fork_as_sibling() {
                Ok(sys::Sibling::Child) => {
                    if let Some(record) = record {
                        record.in_child();
                    }
                    if let Some(off) = go_room {
                        crate::shm::ReportRoom::forked_here(off, true);
                    }
                    return Some((child_boot, self.main.pid));
                }
                Ok(sys::Sibling::Forker { pid, pidfd }) => {
                    if let Some(off) = go_room {
                        // Before anything can fail: a requester that leaves the room on a
                        // failed start frees it once this child has ended.
                        crate::shm::ReportRoom::forked_at(off, pid, true);
                    }
                    self.record_copy(record, pid, pidfd.as_fd());
                    // Forked, not yet answered: a server killed here leaves a child its
                    // requester does not know of.
                    crash_point!("forkserver.forked");
                    let went = self.send_reply(i, &Reply::Yours { pid, server: self.me }, &[pidfd.as_fd()]);
                    answered(go_room, went);
                    self.close_unanswered(i, went);
                    if !went && let ChildBoot::Socket(sock) = &child_boot {
                        // The answer went nowhere: its requester gave up (a server stopped
                        // between its peek and here, then continued). The child, told to
                        // stop by the end of its boot socket, is the main process's own and
                        // would stay its zombie: its pid goes to the requester's end of that
                        // socket, which a requester that gave up keeps to reap it
                        // (`reap_left_children`). A room's child word has it already.
                        let _ = sys::send_with_fds(sock.as_fd(), &pid.to_le_bytes(), &[]);
                    }
                    drop(child_boot);
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    // No clone3 or no CLONE_PARENT here: the server's own children.
                    self.siblings = false;
                }
                Err(e) => {
                    unforked(go_room);
                    self.reply(i, &fork_failed(e), &[]);
                    return None;
                }
            }
        }
        let me = self.me;
        // The status pipe, and room for the child's pidfd and its copy for the requester,
        // before the child exists (the server is single-threaded: nobody takes the room
        // back). A child made without them would read its boot message, take its handles
        // and be killed, while the requester gave them back as never sent.
        let made = sys::pipe().and_then(|status| Ok((status, [sys::dup(&self.listener)?, sys::dup(&self.listener)?])));
        let ((read, write), room) = match made {
            Ok(made) => made,
            Err(e) => {
                // (The room may say `FORKING`: `clone3` was not supported above.)
                unforked(go_room);
                self.reply(i, &fork_failed(e), &[]);
                return None;
            }
        };
        let record = self.zygote.then(crate::shm::before_fork);
        forking(go_room);
        match sys::fork() {
            Ok(Forked::Child) => {
                if let Some(record) = record {
                    record.in_child();
                }
                if let Some(off) = go_room {
                    crate::shm::ReportRoom::forked_here(off, false);
                }
                Some((child_boot, me))
            }
            Ok(Forked::Parent(pid)) => {
                if let Some(off) = go_room {
                    crate::shm::ReportRoom::forked_at(off, pid, false);
                }
                drop(child_boot);
                drop(room);
                match sys::pidfd_open(pid) {
                    Ok(pidfd) => {
                        self.record_copy(record, pid, pidfd.as_fd());
                        let theirs = sys::dup(&pidfd).ok();
                        let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
                        if let Some(t) = &theirs {
                            fds.push(t.as_fd());
                        }
                        fds.push(read.as_fd());
                        crash_point!("forkserver.forked");
                        let went = self.send_reply(i, &Reply::Forked { pid, server: me }, &fds);
                        let frees_on_status = answered(go_room, went);
                        self.close_unanswered(i, went);
                        self.kids.push(Kid {
                            pidfd,
                            status: write,
                            requester: i,
                            room: go_room,
                            room_ours: false,
                            frees_on_status,
                        });
                    }
                    Err(_) => {
                        // Dead before the answer: a refusal means that no child runs (one
                        // without a boot socket would write its report room).
                        drop(record);
                        sys::kill_and_reap(pid);
                        let _ = answered(go_room, false);
                        self.reply(i, &Reply::Refused("out of descriptors".into()), &[]);
                    }
                }
                None
            }
            Err(e) => {
                unforked(go_room);
                self.reply(i, &fork_failed(e), &[]);
                None
            }
        }
    }

    /// In a new child: closes the server's descriptors and forgets its memory (freeing it
    /// would run the allocator's `free` and write pages of the heap, copies of the
    /// server's, for a process that usually exits soon).
    /// The descriptors are closed with the system call itself (`sys::close_in_fork_child`):
    /// libc's `close` would fault in its page of code in every child. Every field is named,
    /// none dropped by a `..`: the spare listener was, with libc's `close` (start44).
    fn close_in_child(self) {
        let Server {
            listener,
            mut requesters,
            mut kids,
            mut reported,
            mut waiting,
            spare,
            mut copies,
            unsafe_to_fork,
            me: _,
            main: _,
            siblings: _,
            token: _,
            buf: _,
            zygote: _,
            served: _,
        } = self;
        sys::close_in_fork_child(listener);
        spare.into_iter().for_each(sys::close_in_fork_child);
        for requester in requesters.drain(..) {
            requester.sock.into_iter().chain(requester.pidfd).for_each(sys::close_in_fork_child);
        }
        for kid in kids.drain(..) {
            sys::close_in_fork_child(kid.pidfd);
            sys::close_in_fork_child(kid.status);
        }
        reported.drain(..).for_each(|r| sys::close_in_fork_child(r.status));
        for w in waiting.drain(..) {
            sys::close_in_fork_child(w.kid.pidfd);
            sys::close_in_fork_child(w.kid.status);
        }
        copies.drain(..).for_each(|(_, pidfd)| sys::close_in_fork_child(pidfd));
        std::mem::forget((requesters, kids, reported, waiting, copies, unsafe_to_fork));
    }

    /// Answers requester `i`; whether the answer went (if not, its connection is closed).
    /// Called after the server's last write to the request's room, if any.
    fn reply(&mut self, i: usize, reply: &Reply, fds: &[BorrowedFd<'_>]) -> bool {
        let went = self.send_reply(i, reply, fds);
        self.close_unanswered(i, went);
        went
    }

    /// [`Server::reply`] before the server's last write to the request's room (its go):
    /// the connection is left open, closed by [`Server::close_unanswered`] after that write. A
    /// requester takes the end of its connection for the end of every server's write to its
    /// room (`ask`), and frees the room once its child has ended.
    fn send_reply(&self, i: usize, reply: &Reply, fds: &[BorrowedFd<'_>]) -> bool {
        let Some(sock) = self.requesters[i].sock.as_ref() else { return false };
        // A send can fail on a live connection whose requester waits (`ETOOMANYREFS`: the
        // descriptors in flight; `ENOMEM`): the tests' way there.
        if fail_point!("forkserver.reply") {
            return false;
        }
        // On the stack (see `Events`); a long refusal through the allocator.
        let mut room = [0u8; 64];
        if let Some(msg) = codec::encode_own_into(reply, &mut room) {
            sys::send_with_fds(sock.as_fd(), msg, fds).is_ok()
        } else if let Ok(msg) = codec::encode_own(reply) {
            let went = sys::send_with_fds(sock.as_fd(), &msg.bytes, fds).is_ok();
            msg.sent();
            went
        } else {
            false
        }
    }

    /// After an answer to requester `i` that did not go: its connection is closed (its
    /// requester gave up, or cannot be answered: it meets the connection's end).
    fn close_unanswered(&mut self, i: usize, went: bool) {
        if !went {
            self.requesters[i].sock = None;
        }
    }

    /// In a zygote, after forking `pid` (which waits for its go-on byte): records it as a
    /// holder of the zygote's copies, watched until it ends ([`Server::copy_ended`]).
    /// Without a pidfd to watch it by, its copies stay recorded (never freed early).
    fn record_copy(&mut self, record: Option<crate::shm::ForkRecord>, pid: u32, pidfd: BorrowedFd<'_>) {
        let Some(record) = record else { return };
        if record.holds_nothing() {
            return;
        }
        let Some(start) = sys::process_start(pid) else { return };
        let child = sys::ProcId { pid, start };
        record.record(child);
        if let Ok(watch) = sys::dup(pidfd) {
            self.copies.push((child, watch));
        }
    }

    /// A zygote's child recorded as a holder ended: its copies are let go of.
    fn copy_ended(&mut self, c: usize) {
        let (child, watch) = self.copies.swap_remove(c);
        drop(watch);
        crate::shm::fork_child_ended(child);
    }

    /// Requester `i` ended: its children are killed. The report room of one that has not
    /// ended yet is the server's to free once it has ([`Server::kid_ended`]): a requester
    /// frees a room only once it saw its child end, and this one, dead before that, never
    /// will (fix62: it was left in the heap for good). A kid that ended first may have been
    /// seen ending (its pidfd, for a room left to it: `free_left_rooms`) and its room freed:
    /// it stays its requester's, unless the requester frees it only on the status
    /// ([`Kid::frees_on_status`]), which comes after the reap. So is the room of a kid
    /// reaped before, whose status it never read ([`Reported`]; trk71: it leaked), and of
    /// a kid reaped before the requester let go of its room ([`Waiting`]). A room its
    /// requester let go of is the server's at the reap ([`take_room`]). Left, where the
    /// server could not take it (a spilled message, a requester that never let go within
    /// [`LET_GO_WAIT`]): a requester killed between its read of the status and its free (a
    /// few instructions), or with the room left for later (`ReportRoom::release`), leaks it.
    fn requester_died(&mut self, i: usize) {
        let itself = self.requesters[i].watches_peer;
        for kid in self.kids.iter_mut().filter(|k| k.requester == i) {
            // Its requester's pidfd said it ended: no thread of it runs any more. It freed the
            // room of a kid it saw ended, which a kid not reaped yet may be (`free_left_rooms`),
            // unless it frees only on the status, written after the reap.
            kid.room_ours =
                itself && kid.room.is_some() && (kid.frees_on_status || !sys::pidfd_exited(kid.pidfd.as_fd()));
            let _ = sys::pidfd_signal(kid.pidfd.as_fd(), sys::SIGKILL);
        }
        // Its kids reaped before it let go of their rooms: rooms it never freed, and touches
        // no more (dead).
        let mut w = 0;
        while w < self.waiting.len() {
            if self.waiting[w].kid.requester != i {
                w += 1;
                continue;
            }
            let waiting = self.waiting.swap_remove(w);
            match waiting.kid.room {
                Some(off) if itself => crate::shm::ReportRoom::free_orphan_at(off),
                // Not known dead (a pidfd of another process than the one that asked).
                _ => self.report(waiting.kid, waiting.status),
            }
        }
        // Its kids ended before it, their status unread: rooms it never freed.
        self.reported.retain(|r| {
            if r.requester != i {
                return true;
            }
            if !r.read() {
                crate::shm::ReportRoom::free_orphan_at(r.room);
            }
            false
        });
        self.requesters[i].pidfd = None;
        self.requesters[i].sock = None;
    }

    /// The kid's pidfd is readable: it ended.
    fn kid_ended(&mut self, k: usize) {
        let status = match sys::reap_pidfd(self.kids[k].pidfd.as_fd(), false) {
            Ok(Some(ended)) => ended.to_raw(),
            Ok(None) => return,
            // Reaped by somebody else (a zygote's `SIGCHLD` ignored, or a handler of the
            // program's that waits for any child): ended all the same. Before, it stayed a
            // kid, its readable pidfd spun the server and its requester waited for ever
            // (review85 H1). Its status as the kernel kept it, else unknown.
            Err(_) => super::child::exit_status(self.kids[k].pidfd.as_fd()).map_or(STATUS_UNKNOWN, sys::Ended::to_raw),
        };
        let kid = self.kids.swap_remove(k);
        match kid.room {
            Some(off) if !kid.room_ours && kid.frees_on_status && !crate::shm::ReportRoom::let_go_at(off) => {
                self.waiting.push(Waiting { kid, status, since: Instant::now() });
            }
            _ => self.report(kid, status),
        }
    }

    /// Writes the status of `kid`, reaped, for its requester: after the copy of its room,
    /// taken, when the requester let go of it ([`take_room`]).
    fn report(&mut self, kid: Kid, status: i32) {
        // Only a room its requester frees on the status alone: one left to the kid (its
        // requester's stop came first) the requester frees once it sees the kid ended,
        // maybe before this reap, and it is read here only when the requester cannot.
        let taken =
            kid.room.is_some_and(|off| !kid.room_ours && kid.frees_on_status && take_room(off, &kid.status, self.me));
        let wrote = sys::write_all(kid.status.as_fd(), &status.to_ne_bytes()).is_ok();
        match kid.room {
            // Reaped: it writes the room no more, and its requester is dead.
            Some(off) if kid.room_ours => crate::shm::ReportRoom::free_orphan_at(off),
            // Its requester's until it reads the status: the server's if it dies first.
            Some(room) if !taken && wrote && kid.frees_on_status && self.requesters[kid.requester].watches_peer => {
                self.reported.push(Reported { requester: kid.requester, room, status: kid.status });
            }
            _ => {}
        }
        // Those read are their requesters' (freed, or to free). The others wait for a read
        // or their requester's death: each is a kid whose end its requester has not taken yet,
        // whose state (holding the read end) it keeps until then.
        self.reported.retain(|r| !r.read());
    }

    /// Whether requester `i` has a status unread ([`Reported`]) or not yet written
    /// ([`Waiting`]): its death is still watched.
    fn reports_to(&self, i: usize) -> bool {
        self.reported.iter().any(|r| r.requester == i) || self.waiting.iter().any(|w| w.kid.requester == i)
    }

    /// Reports the kids whose requesters let go of their rooms since they were reaped, or
    /// that waited for [`LET_GO_WAIT`] ([`Waiting`]).
    fn report_waiting(&mut self) {
        let mut i = 0;
        while i < self.waiting.len() {
            let w = &self.waiting[i];
            if w.kid.room.is_some_and(crate::shm::ReportRoom::let_go_at) || w.since.elapsed() >= LET_GO_WAIT {
                let w = self.waiting.swap_remove(i);
                self.report(w.kid, w.status);
            } else {
                i += 1;
            }
        }
    }

    /// How long a poll waits: for ever, but for a look now and then while a kid's status
    /// waits for its requester to let go of its room ([`Waiting`]).
    fn waiting_look(&self) -> Option<std::time::Duration> {
        (!self.waiting.is_empty()).then_some(LET_GO_LOOK)
    }

    /// Forgets requesters that are gone and have no children left, nor statuses unread.
    fn tidy(&mut self) {
        // Requester indices are referenced by kids, so only trailing entries go.
        while let Some(last) = self.requesters.last() {
            let i = self.requesters.len() - 1;
            if last.sock.is_none() && !self.kids.iter().any(|k| k.requester == i) && !self.reports_to(i) {
                self.requesters.pop();
            } else {
                break;
            }
        }
        for i in 0..self.requesters.len() {
            let r = &self.requesters[i];
            if r.sock.is_none()
                && r.pidfd.is_some()
                && !self.kids.iter().any(|k| k.requester == i)
                && !self.reports_to(i)
            {
                self.requesters[i].pidfd = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a start whose server is dead (or not known) is made again: a live server's
    /// refusal (a fork server that is not safe to fork, say) failed every try, 210 ms later.
    #[test]
    fn only_a_start_whose_server_died_is_made_again() {
        let refused = || LaunchError::Failed(unavailable(super::super::StartMethod::ForkServer, "refused".into()));
        let alive = sys::pid_now();
        assert!(matches!(server_died(refused(), alive), LaunchError::Failed(_)), "a live server said no");
        assert!(matches!(server_died(refused(), 0), LaunchError::ServerDied(_)), "no server known");
        let mut ended = std::process::Command::new("true").spawn().unwrap();
        let dead = ended.id();
        ended.wait().unwrap();
        assert!(matches!(server_died(refused(), dead), LaunchError::ServerDied(_)), "its server is dead");
        let other = LaunchError::Failed(Error::Io(io::Error::from_raw_os_error(11)));
        assert!(matches!(server_died(other, dead), LaunchError::Failed(_)), "a machine's limit, not the method's");
    }

    /// review91 L2: a dead requester's room is the server's only for a kid that had not ended
    /// yet. One that ended (its pidfd readable, not yet reaped) may have been seen ending by
    /// its requester, which then freed the room: the server would free it a second time. No
    /// integration test reaches it (the server handles a kid's end before its requester's
    /// death, `event_order`), so this one calls `requester_died` on kids it made: an ended
    /// one and a running one; and an ended one whose requester frees its room only on the
    /// status (`Kid::frees_on_status`, not written before the reap): the server's.
    #[test]
    fn a_dead_requester_s_room_is_the_server_s_only_for_a_kid_that_had_not_ended() {
        use std::time::{Duration, Instant};
        let mut ended = std::process::Command::new("true").spawn().unwrap();
        let ended_pidfd = sys::pidfd_open(ended.id()).unwrap();
        let mut running = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let running_pidfd = sys::pidfd_open(running.id()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !sys::pidfd_exited(ended_pidfd.as_fd()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let kid = |pidfd, room, frees_on_status| Kid {
            pidfd,
            status: sys::pipe().unwrap().1,
            requester: 0,
            room: Some(room),
            room_ours: false,
            frees_on_status,
        };
        let ended_too = sys::dup(&ended_pidfd).unwrap();
        let mut server = Server {
            listener: sys::pipe().unwrap().0,
            me: sys::pid_now(),
            main: sys::ProcId { pid: 0, start: 0 },
            siblings: false,
            token: [0; 16],
            unsafe_to_fork: None,
            requesters: vec![Requester { sock: None, pidfd: None, peer: 0, watches_peer: true }],
            kids: vec![kid(ended_pidfd, 64, false), kid(running_pidfd, 128, false), kid(ended_too, 192, true)],
            reported: Vec::new(),
            waiting: Vec::new(),
            buf: vec![0; 1].leak(),
            spare: None,
            zygote: false,
            copies: Vec::new(),
            served: false,
        };
        server.requester_died(0);
        let ours: Vec<bool> = server.kids.iter().map(|kid| kid.room_ours).collect();
        // Killed by `requester_died`.
        running.wait().unwrap();
        ended.wait().unwrap();
        assert_eq!(
            ours,
            [false, true, true],
            "whose room is the server's: the ended kid's, the running kid's, the ended kid's freed on its status"
        );
    }
}
