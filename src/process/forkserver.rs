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
//! children ended, and when a requester dies, the server kills that requester's children.
//! When the main process dies, the server dies (parent-death signal), and its children
//! with it.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::boot;
use super::family;
use super::spin::LoadSpin;
use crate::codec;
use crate::error::Error;
use crate::shm::crash::crash_point;
use crate::sys::{self, Forked};

/// How long a requester polls for the server's answer before it sleeps (unless the
/// machine is busy: [`LoadSpin`]).
const REPLY_SPIN: std::time::Duration = std::time::Duration::from_micros(500);
/// This process's record of its spins for the server's answers.
static REPLY_SPINS: LoadSpin = LoadSpin::new();

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    token: [u8; 16],
    pid: u32,
    start: u64,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// Forked; the pidfd and the status pipe come along.
    Forked {
        pid: u32,
    },
    /// Forked as the requester's own child (the requester is the server's parent): the
    /// pidfd comes along, and the requester reaps it.
    Yours {
        pid: u32,
    },
    Refused(String),
}

/// Forks the server; returns its address. Call while single-threaded.
pub(crate) fn start(token: [u8; 16]) -> io::Result<String> {
    let main = sys::my_pid();
    let suffix: String = sys::random_bytes::<8>().iter().map(|b| format!("{b:02x}")).collect();
    let address = format!("multiproc-forkserver-{main}-{suffix}");
    let listener = sys::listen_abstract(&address, true)?;
    flush_stdio();
    // Its children are copies of it: a handle it copied from this process would be theirs
    // too, and uncounted (a `Fork` start records its child; this fork does not need to).
    debug_assert!(crate::shm::holds_nothing(), "the fork server would copy handles of the main process");
    match sys::fork()? {
        Forked::Child => serve(listener, token, main),
        Forked::Parent(_) => Ok(address),
    }
}

fn flush_stdio() {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

/// Asks the fork server for a child whose boot socket end is `boot`.
/// Returns its pid, a pidfd and, unless the child is the caller's own (to reap), the
/// status pipe on which the server reports how it ended.
pub(crate) fn request(boot: OwnedFd) -> Result<(u32, OwnedFd, Option<OwnedFd>), Error> {
    let config = family::config()?;
    let unavailable = |why: String| Error::StartMethodUnavailable(super::StartMethod::ForkServer, why);
    let address = config.forkserver.as_deref().ok_or_else(|| unavailable("no fork server in this family".into()))?;
    let mut st = family::state();
    if st.forkserver_conn.is_none() {
        st.forkserver_conn =
            Some(sys::connect_abstract(address, true).map_err(|e| unavailable(format!("cannot reach it: {e}")))?);
    }
    let conn = st.forkserver_conn.as_ref().expect("connected above").as_fd();
    let me = sys::me();
    let request = codec::encode_own(&Request { token: config.token, pid: me.pid, start: me.start })?;
    let result = (|| {
        sys::send_with_fds(conn, &request.bytes, &[boot.as_fd()])?;
        let mut buf = [0u8; 512];
        let mut fds = Vec::new();
        // The server answers within a fork's time; waiting for it awake saves a wake-up,
        // unless the machine is busy (then the server needs the processor).
        let spun =
            REPLY_SPINS.spin(REPLY_SPIN, || sys::recv_with_fds_nonblocking(conn, &mut buf, &mut fds).transpose());
        let n = match spun {
            Some(received) => received?,
            None => sys::recv_with_fds(conn, &mut buf, &mut fds)?,
        };
        if n == 0 {
            return Err(io::Error::other("the fork server closed the connection"));
        }
        Ok((buf[..n].to_vec(), fds))
    })();
    request.sent();
    let (reply, fds) = match result {
        Ok(r) => r,
        Err(e) => {
            st.forkserver_conn = None;
            return Err(unavailable(format!("the fork server did not answer: {e}")));
        }
    };
    match codec::decode_own::<Reply>(&reply)? {
        Reply::Forked { pid } => {
            let mut fds = fds.into_iter();
            match (fds.next(), fds.next()) {
                (Some(pidfd), Some(status)) => Ok((pid, pidfd, Some(status))),
                _ => Err(unavailable("the fork server's answer lacked descriptors".into())),
            }
        }
        Reply::Yours { pid } => match fds.into_iter().next() {
            Some(pidfd) => Ok((pid, pidfd, None)),
            None => Err(unavailable("the fork server's answer lacked descriptors".into())),
        },
        Reply::Refused(why) => Err(unavailable(why)),
    }
}

/// A requester: one connection of one process.
struct Requester {
    sock: Option<OwnedFd>,
    /// The requester's pidfd, once it identified itself.
    pidfd: Option<OwnedFd>,
}

struct Kid {
    pidfd: OwnedFd,
    /// Where the wait status goes.
    status: OwnedFd,
    requester: usize,
}

struct Server {
    listener: OwnedFd,
    /// The main process, the server's parent: its children are forked as its own.
    main: sys::ProcId,
    /// Whether `clone3(CLONE_PARENT)` works here (until it fails once).
    siblings: bool,
    token: [u8; 16],
    /// Why this server cannot fork safely, if it cannot.
    unsafe_to_fork: Option<String>,
    requesters: Vec<Requester>,
    kids: Vec<Kid>,
}

enum Event {
    Accept,
    Message(usize),
    RequesterDied(usize),
    KidEnded(usize),
}

fn serve(listener: OwnedFd, token: [u8; 16], main: u32) -> ! {
    if !sys::die_with_parent(main) {
        sys::exit_now(0);
    }
    // Forked from `test_support!`'s `.init_array` entry, the server calls the constructors
    // that come after it, so that its children see what they registered (`sys::early`).
    sys::finish_constructors();
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
    // What a child's way from its boot message to its report needs from the allocator, but
    // its name: each child names its copy.
    let blank = boot::Prepared::blank();
    let main = sys::ProcId { pid: main, start: sys::process_start_time(main).unwrap_or(0) };
    let mut server =
        Server { listener, main, siblings: true, token, unsafe_to_fork, requesters: Vec::new(), kids: Vec::new() };
    loop {
        let events = server.poll();
        for event in events {
            match event {
                Event::Accept => server.accept(),
                Event::Message(i) => {
                    if let Some((boot_sock, parent)) = server.handle(i) {
                        // In the new child: close every descriptor of the server, then boot.
                        server.close_in_child();
                        boot::run_forked(boot_sock, parent, blank);
                    }
                }
                Event::RequesterDied(i) => server.requester_died(i),
                Event::KidEnded(k) => server.kid_ended(k),
            }
        }
        server.tidy();
    }
}

impl Server {
    fn poll(&self) -> Vec<Event> {
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
        let ready = match sys::poll_readable(&fds, None) {
            Ok(r) => r,
            Err(_) => return Vec::new(),
        };
        // Kids first (their indices shift when removed, so handle from the back).
        let mut events: Vec<Event> = what.into_iter().zip(ready).filter_map(|(e, r)| r.then_some(e)).collect();
        events.sort_by_key(|e| match e {
            Event::KidEnded(k) => (0, usize::MAX - k),
            Event::RequesterDied(i) => (1, *i),
            Event::Message(i) => (2, *i),
            Event::Accept => (3, 0),
        });
        events
    }

    fn accept(&mut self) {
        let Ok(sock) = sys::accept(self.listener.as_fd()) else { return };
        // Only the family's own user may ask; the token checks membership.
        if sys::peer_uid(sock.as_fd()).ok() != Some(sys::my_uid()) {
            return;
        }
        self.requesters.push(Requester { sock: Some(sock), pidfd: None });
    }

    /// Serves one request. In the forked child, returns its boot socket and parent pid.
    fn handle(&mut self, i: usize) -> Option<(OwnedFd, u32)> {
        let sock = self.requesters[i].sock.as_ref()?;
        let mut buf = [0u8; 512];
        let mut fds = Vec::new();
        let n = sys::recv_with_fds(sock.as_fd(), &mut buf, &mut fds).unwrap_or_default();
        if n == 0 {
            self.requesters[i].sock = None;
            return None;
        }
        let request = match codec::decode_own::<Request>(&buf[..n]) {
            Ok(r) if r.token == self.token => r,
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
            }
        }
        let Some(boot_sock) = fds.into_iter().next() else {
            self.reply(i, &Reply::Refused("no boot socket".into()), &[]);
            return None;
        };
        if let Some(why) = self.unsafe_to_fork.clone() {
            self.reply(i, &Reply::Refused(why), &[]);
            return None;
        }
        if self.siblings && request.pid == self.main.pid && request.start == self.main.start {
            match sys::fork_as_sibling() {
                Ok(sys::Sibling::Child) => return Some((boot_sock, self.main.pid)),
                Ok(sys::Sibling::Forker { pid, pidfd }) => {
                    drop(boot_sock);
                    // Forked, not yet answered: a server killed here leaves a child its
                    // requester does not know of.
                    crash_point!("forkserver.forked");
                    self.reply(i, &Reply::Yours { pid }, &[pidfd.as_fd()]);
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    // No clone3 or no CLONE_PARENT here: the server's own children.
                    self.siblings = false;
                }
                Err(e) => {
                    self.reply(i, &Reply::Refused(format!("fork failed: {e}")), &[]);
                    return None;
                }
            }
        }
        let me = sys::my_pid();
        let status = sys::pipe();
        match sys::fork() {
            Ok(Forked::Child) => Some((boot_sock, me)),
            Ok(Forked::Parent(pid)) => {
                drop(boot_sock);
                let pidfd = sys::pidfd_open(pid);
                match (pidfd, status) {
                    (Ok(pidfd), Ok((read, write))) => {
                        let theirs = sys::dup(&pidfd).ok();
                        let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
                        if let Some(t) = &theirs {
                            fds.push(t.as_fd());
                        }
                        fds.push(read.as_fd());
                        crash_point!("forkserver.forked");
                        self.reply(i, &Reply::Forked { pid }, &fds);
                        self.kids.push(Kid { pidfd, status: write, requester: i });
                    }
                    _ => {
                        let _ = sys::signal_pid(pid, sys::SIGKILL);
                        self.reply(i, &Reply::Refused("out of descriptors".into()), &[]);
                    }
                }
                None
            }
            Err(e) => {
                self.reply(i, &Reply::Refused(format!("fork failed: {e}")), &[]);
                None
            }
        }
    }

    /// In a new child: closes the server's descriptors and forgets its memory (freeing it
    /// would run the allocator's `free` and write pages of the heap, copies of the
    /// server's, for a process that usually exits soon).
    fn close_in_child(self) {
        let Server { listener, mut requesters, mut kids, unsafe_to_fork, .. } = self;
        drop(listener);
        requesters.drain(..).for_each(drop);
        kids.drain(..).for_each(drop);
        std::mem::forget((requesters, kids, unsafe_to_fork));
    }

    fn reply(&mut self, i: usize, reply: &Reply, fds: &[BorrowedFd<'_>]) {
        let Some(sock) = self.requesters[i].sock.as_ref() else { return };
        if let Ok(msg) = codec::encode_own(reply) {
            if sys::send_with_fds(sock.as_fd(), &msg.bytes, fds).is_err() {
                self.requesters[i].sock = None;
            }
            msg.sent();
        }
    }

    fn requester_died(&mut self, i: usize) {
        for kid in self.kids.iter().filter(|k| k.requester == i) {
            let _ = sys::pidfd_signal(kid.pidfd.as_fd(), sys::SIGKILL);
        }
        self.requesters[i].pidfd = None;
        self.requesters[i].sock = None;
    }

    fn kid_ended(&mut self, k: usize) {
        if let Ok(Some(ended)) = sys::reap_pidfd(self.kids[k].pidfd.as_fd(), false) {
            let kid = self.kids.swap_remove(k);
            let _ = sys::write_all(kid.status.as_fd(), &ended.to_raw().to_ne_bytes());
        }
    }

    /// Forgets requesters that are gone and have no children left.
    fn tidy(&mut self) {
        // Requester indices are referenced by kids, so only trailing entries go.
        while let Some(last) = self.requesters.last() {
            let i = self.requesters.len() - 1;
            if last.sock.is_none() && !self.kids.iter().any(|k| k.requester == i) {
                self.requesters.pop();
            } else {
                break;
            }
        }
        for (i, r) in self.requesters.iter_mut().enumerate() {
            if r.sock.is_none() && r.pidfd.is_some() && !self.kids.iter().any(|k| k.requester == i) {
                r.pidfd = None;
            }
        }
    }
}
