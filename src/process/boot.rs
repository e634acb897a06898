//! The child's side: what a new process of the family receives over its boot socket, and
//! how it runs its target and reports back.
//!
//! The protocol is one frame each way on a unix stream socket (a little-endian `u32`
//! length, then a postcard message): the parent sends [`Boot`], the child answers with an
//! [`Outcome`] just before it exits. A spawned child also receives the family heap's
//! memory file with the boot frame.
//!
//! A fork child whose parent holds nothing and a fork-server child, when the argument holds
//! no handles, have no boot socket: the first finds its [`Boot`] in its copy of the
//! parent's memory, the second in its copy of the fork server's (the request carried it),
//! and both leave their outcome in a report room ([`Channel::Room`]).

use std::any::Any;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::family::{self, FamilyConfig, Me, ParentInfo};
use super::panics;
use crate::codec::{self, Encoded};
use crate::error::PanicInfo;
use crate::shm::crash::{crash_point, fail_point};
use crate::shm::{ChildRoom, Heap, Payload};
use crate::sys::{self, Packed};

/// The environment variable that tells a re-executed binary it is a child, and where its
/// boot socket is: `spawn:<fd>:<parent pid>`; or that it is the family's resource tracker,
/// reading its pipe at `tracker:<fd>`.
pub(crate) const BOOT_ENV: &str = "MULTIPROC_BOOT";

/// Everything a child needs to know.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Boot {
    /// The family's configuration, sent to a spawned child only (see [`family::adopt`]).
    pub(crate) family: Option<FamilyConfig>,
    pub(crate) me: Me,
    pub(crate) parent: ParentInfo,
    pub(crate) call: Packed,
    /// The target's encoded argument (handles inside are in flight until decoded).
    pub(crate) args: Payload,
    /// Whether the target's result is sent self-described (`codec::plan`): the parent
    /// knows, and the child need not probe the type at its start.
    pub(crate) result_plan: codec::Plan,
    /// The parent's environment and working directory at the start, encoded
    /// ([`Surroundings`]), for a child that would not otherwise have them.
    pub(crate) surroundings: Option<Payload>,
    /// The family's `child_init` function, run before the target.
    pub(crate) child_init: Option<Packed>,
    /// The level of [`log_to_stderr`](crate::log_to_stderr), if the parent called it.
    pub(crate) log: Option<u8>,
    /// Where the child takes the handles of its argument from: the carrier that the
    /// argument's token is (`shm::receipts`; 0 when the argument holds none), whose free
    /// lets go of the handles not taken. [`NOTE_ONLY`]: the argument holds handles but the
    /// heap had no room for the token (they are in flight, the child sends a receipt for
    /// each on the boot socket, the parent keeps the undo).
    pub(crate) receipts: u64,
    /// The token of the argument (`shm::receipts::ArgsToken`: offset, generation, seal),
    /// the carrier of its handles: the child takes it before it decodes anything
    /// of its argument, and decodes nothing if it cannot.
    pub(crate) token: Option<[u64; 3]>,
}

/// [`Boot::receipts`] of an argument with handles and no token (a heap too full for it):
/// the child sends each receipt on its copy of its boot socket instead
/// (`shm::receipts::on_socket`), and the parent collects them until the reap, keeping the
/// undo in its memory (a parent killed before its child took the argument leaks its
/// handles there, as before the token). The name is
/// the protocol's before receipts existed (a note that the child decoded its argument,
/// after which a kill leaked what it had not settled); that note is no longer sent.
pub(crate) const NOTE_ONLY: u64 = u64::MAX;

/// The most handles an argument sent with [`NOTE_ONLY`] may hold: a stream socket holds
/// about 280 receipt frames of a child before its sends wait for the parent to read (each
/// is a buffer of its own in the kernel, some 750 bytes, for a default send buffer of 208
/// KiB), and the child's outcome comes after them.
pub(crate) const SOCKET_RECEIPTS: usize = 128;

/// What a new process expects from its parent beyond the family: its environment and
/// working directory as they are when it starts. A spawned child gets them from `exec`
/// and a fork child from the fork; a fork-server child is a copy of the server, which
/// has those of `init()` time, so its boot message carries the parent's.
#[derive(Debug, Serialize, Deserialize)]
struct Surroundings {
    env: Vec<(Vec<u8>, Vec<u8>)>,
    cwd: Option<Vec<u8>>,
    /// The working directory's identity (`sys::working_directory_id`), which a start
    /// compares: its path may name another directory now (removed and made again), or
    /// none (removed while the program was in it, where the server is too). Only compared
    /// in the process that read it, never sent.
    #[serde(skip)]
    dir: Option<(u64, u64)>,
}

impl Surroundings {
    /// This process's environment and working directory, now.
    fn now() -> Self {
        use std::os::unix::ffi::OsStrExt;
        let env = std::env::vars_os()
            .filter(|(key, _)| key != BOOT_ENV)
            .map(|(key, value)| (key.as_bytes().to_vec(), value.as_bytes().to_vec()))
            .collect();
        let cwd = std::env::current_dir().ok().map(|dir| dir.into_os_string().as_bytes().to_vec());
        Self { env, cwd, dir: sys::working_directory_id() }
    }

    /// Whether these are this process's environment and working directory now: the same
    /// variables, compared as they are read, without copying them once more (a fork-server
    /// start asks every time), and the same directory, by identity, not by path (review125
    /// M1, M2: a directory removed in place has no path, and is the server's still; one
    /// removed and made again has the same path, and is not).
    fn still_ours(&self) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let mut now = std::env::vars_os().filter(|(key, _)| key != BOOT_ENV);
        let mut saved = self.env.iter();
        loop {
            match (now.next(), saved.next()) {
                (None, None) => break,
                (Some((key, value)), Some((k, v))) if key.as_bytes() == k && value.as_bytes() == v => {}
                _ => return false,
            }
        }
        self.dir.is_some() && sys::working_directory_id() == self.dir
    }
}

/// The surroundings the fork server was forked with (taken by `init()` just before it
/// forks the server; inherited by every fork of this process): a child is sent none while
/// they are still the parent's.
static SERVER_SURROUNDINGS: std::sync::OnceLock<Surroundings> = std::sync::OnceLock::new();

/// Notes the surroundings the fork server is about to be forked with.
pub(crate) fn remember_server_surroundings() {
    let _ = SERVER_SURROUNDINGS.set(Surroundings::now());
}

/// The first fork server's working directory itself (`O_PATH`), kept by the process that
/// forked it (the main process, [`keep_server_directory`]): a server started again in its
/// place (`forkserver::restart`) enters it by this descriptor, so that it is in the same
/// directory as the first, which every process of the family compares its own with
/// ([`Surroundings::still_ours`]), even once that directory is removed (its path then names
/// nothing, or another directory: review125 M3).
static SERVER_DIRECTORY: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();

/// Keeps the working directory, the one [`remember_server_surroundings`] noted, for the
/// restarts of the fork server (once; called right after its first fork, in the main
/// process, still single-threaded: the directory the server has). Without it (no
/// descriptor left), a restarted server enters the directory by its path.
pub(crate) fn keep_server_directory() {
    if let Ok(dir) = sys::working_directory_fd() {
        let _ = SERVER_DIRECTORY.set(dir);
    }
}

/// The first fork server's directory, if this process kept it (for a restart's boot
/// message).
pub(crate) fn server_directory() -> Option<BorrowedFd<'static>> {
    SERVER_DIRECTORY.get().map(AsFd::as_fd)
}

/// The surroundings a child started with `method` must be given, encoded: none unless it
/// is a fork-server child and the parent's differ from the server's.
pub(crate) fn surroundings(method: super::StartMethod) -> Result<Option<Payload>, crate::Error> {
    if method != super::StartMethod::ForkServer {
        return Ok(None);
    }
    if SERVER_SURROUNDINGS.get().is_some_and(Surroundings::still_ours) {
        return Ok(None);
    }
    let now = Surroundings::now();
    if now.cwd.is_none() {
        // Not the server's directory, and its path cannot be read (removed after the
        // program entered it: Linux's `getcwd` checks no permission, so a directory out of
        // reach has a path, which the child fails to enter at boot, `JoinError::Failed`,
        // as Python's child fails in `os.chdir`). The server's child enters its parent's
        // directory by its path: it would stay in the server's, silently, where a relative
        // path names other files. Refused, as Python's start refuses (`os.getcwd()`
        // raises); `Spawn` and `Fork` children inherit the directory itself.
        let e = std::env::current_dir().err().unwrap_or_else(|| std::io::ErrorKind::NotFound.into());
        return Err(std::io::Error::new(
            e.kind(),
            format!(
                "a ForkServer child cannot enter this process's working directory, which cannot be read ({e}): change directory, or start it with Spawn or Fork"
            ),
        )
        .into());
    }
    let mut encoded = codec::encode_own(&now)?;
    let bytes = std::mem::take(&mut encoded.bytes);
    // Plain bytes, no handles: nothing to undo.
    encoded.sent();
    Ok(Some(Payload::new(bytes)?))
}

/// The fork server's surroundings, encoded, for a fork server spawned to replace a dead
/// one (`forkserver::restart`): those the family's first server was forked with, so that
/// every process's [`Surroundings::still_ours`] stays true of the new one; this process's
/// own where it has none (a spawned child: it sends its surroundings with every start).
pub(crate) fn server_surroundings() -> Result<Vec<u8>, crate::Error> {
    let mut encoded = match SERVER_SURROUNDINGS.get() {
        Some(server) => codec::encode_own(server)?,
        None => codec::encode_own(&Surroundings::now())?,
    };
    let bytes = std::mem::take(&mut encoded.bytes);
    encoded.sent();
    Ok(bytes)
}

/// Makes this process's environment and working directory those of `surroundings`
/// (at boot, single-threaded, before anything of the program runs).
fn take_surroundings(surroundings: &Payload) -> Result<(), String> {
    take_surroundings_from(surroundings.bytes(), None)
}

/// [`take_surroundings`] of encoded bytes (a spawned fork server's, which are then its
/// children's: [`remember_server_surroundings`] follows); the directory is `dir` where
/// one is given (a restarted server's: the first server's directory itself), else the
/// path of `surroundings`.
pub(crate) fn take_surroundings_from(surroundings: &[u8], dir: Option<BorrowedFd<'_>>) -> Result<(), String> {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let wanted: Surroundings =
        codec::decode_own(surroundings).map_err(|e| format!("its environment could not be decoded: {e}"))?;
    let wanted_env: std::collections::HashMap<&OsStr, &OsStr> =
        wanted.env.iter().map(|(k, v)| (OsStr::from_bytes(k), OsStr::from_bytes(v))).collect();
    // The fork server read the crash points' variable from its own (`serve`).
    crate::shm::crash::environment_changed();
    for (key, _) in std::env::vars_os() {
        if !wanted_env.contains_key(key.as_os_str()) {
            sys::set_env_single_threaded(&key, None);
        }
    }
    for (key, value) in &wanted_env {
        if std::env::var_os(key).as_deref() != Some(*value) {
            sys::set_env_single_threaded(key, Some(value));
        }
    }
    if let Some(dir) = dir {
        sys::enter_directory(dir).map_err(|e| format!("cannot enter its first server's directory: {e}"))?;
    } else if let Some(cwd) = &wanted.cwd {
        let cwd = std::path::Path::new(OsStr::from_bytes(cwd));
        if std::env::current_dir().ok().as_deref() != Some(cwd) {
            std::env::set_current_dir(cwd)
                .map_err(|e| format!("cannot enter its parent's directory {}: {e}", cwd.display()))?;
        }
    }
    Ok(())
}

/// What a child reports when its target is done.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The target returned; the encoded return value.
    Returned(Payload),
    /// The target (or the decoding of its argument, or the encoding of its result)
    /// panicked.
    Panicked(PanicInfo),
    /// The target returned a result that could not be encoded.
    NotEncoded(String),
    /// The thread running the target overflowed its stack.
    StackOverflow,
    /// The target could not be run.
    Failed(String),
}

/// [`Outcome::Returned`] of [`Payload::Inline`] bytes, borrowed, for a child that writes
/// its outcome from its stack ([`PlainReturn`]): serialized as that outcome is, the same
/// variants in the same places (`tests::a_plain_return_encodes_as_its_outcome`). By
/// hand, inlined: a derived `serialize` is a function of its own, one more 64 KiB window
/// of code for a fork child.
struct ReturnedInline<'a>(&'a [u8]);

impl Serialize for ReturnedInline<'_> {
    #[inline]
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// [`Payload::Inline`], borrowed.
        struct Inline<'a>(&'a [u8]);

        impl Serialize for Inline<'_> {
            #[inline]
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_newtype_variant("Payload", 0, "Inline", serde_bytes::Bytes::new(self.0))
            }
        }

        serializer.serialize_newtype_variant("Outcome", 0, "Returned", &Inline(self.0))
    }
}

/// The framed outcome's most bytes for a [`codec::plain`] result: the frame's length, the
/// tag byte, the two variants, the bytes' length and the result's message.
const PLAIN_FRAME_MAX: usize = 4 + 1 + 1 + 1 + 1 + codec::PLAIN_MAX;

/// The framed [`Outcome::Returned`] of a [`codec::plain`] result, made on the stack: a
/// child whose target takes and returns plain values reports without the codec's
/// thread state, the allocator or the outcome's serializer (each a page of code or of the
/// heap to fault in, and a heap page to copy, in a fork child).
struct PlainReturn {
    frame: [u8; PLAIN_FRAME_MAX],
    len: usize,
}

impl PlainReturn {
    /// The outcome of returning `result`; `None` if it does not fit (never, for a plain
    /// type).
    fn new<R: Serialize>(result: &R) -> Option<Self> {
        let mut value = [0u8; codec::PLAIN_MAX];
        let value_len = codec::encode_plain(result, &mut value)?;
        let mut frame = [0u8; PLAIN_FRAME_MAX];
        let (head, message) = frame.split_first_chunk_mut::<4>()?;
        let message_len = codec::encode_plain(&ReturnedInline(&value[..value_len]), message)?;
        *head = u32::try_from(message_len).ok()?.to_le_bytes();
        Some(Self { frame, len: 4 + message_len })
    }

    /// Sends it as [`report`] would; false if it could not.
    fn send(&self, channel: &Channel) -> bool {
        match channel {
            Channel::Socket(sock) => sys::send_all(sock.as_fd(), &self.frame[..self.len], &[]).is_ok(),
            // A room takes the message alone.
            Channel::Room(room) => room.write(&self.frame[4..self.len]),
        }
    }
}

/// The boot frame of a child on a boot socket for `message`, after `key` (a spawned
/// child's key of handle seals).
pub(crate) fn socket_frame(key: &[u8], message: &Encoded) -> Vec<u8> {
    let payload = key.len() + message.bytes.len();
    let len = u32::try_from(payload).expect("a boot message above 4 GiB");
    let mut out = Vec::with_capacity(4 + payload);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&message.bytes);
    out
}

/// A frame: the length, then the payload.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a boot message above 4 GiB");
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn frame_in(buf: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    (buf.len() >= 4 + len).then_some(len)
}

/// Reads what a socket has into `buf` without waiting; returns the frame once complete.
/// End of stream before a whole frame is an error.
pub(crate) fn read_frame_nonblocking(sock: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
    // Small: outcomes are small (large results travel through the heap), and this runs
    // on every look of a waiting parent.
    let mut chunk = [0u8; 512];
    loop {
        if let Some(len) = frame_in(buf) {
            let frame = buf[4..4 + len].to_vec();
            buf.drain(..4 + len);
            return Ok(Some(frame));
        }
        match sys::recv_nonblocking(sock, &mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Reads one frame from a blocking socket, collecting descriptors sent along. The first
/// read goes to the stack, and the heap is asked for the frame's size only: a fresh
/// child should not fault in a large buffer it does not need, nor ask glibc for a large
/// block, which makes it consolidate its fast bins, writing pages of the heap it shares
/// with its parent (a copy of each).
/// Also returns the first byte that came after the frame in the same read, if one did (a
/// boot socket child's [`GO`]).
pub(crate) fn read_frame_blocking(sock: BorrowedFd<'_>, fds: &mut Vec<OwnedFd>) -> io::Result<(Vec<u8>, Option<u8>)> {
    let mut first = [0u8; 4096];
    let mut filled = 0;
    while filled < 4 {
        match sys::recv_with_fds(sock, &mut first[filled..], fds)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => filled += n,
        }
    }
    let len = u32::from_le_bytes(first[..4].try_into().expect("4 bytes")) as usize;
    let have = (filled - 4).min(len);
    let after = (filled > 4 + len).then(|| first[4 + len]);
    let mut frame = Vec::with_capacity(len);
    frame.extend_from_slice(&first[4..4 + have]);
    frame.resize(len, 0);
    let mut got = have;
    while got < len {
        match sys::recv_with_fds(sock, &mut frame[got..], fds)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    Ok((frame, after))
}

/// The byte a boot socket child's parent sends once its start went through, after the boot
/// frame, on the same socket: a child forked by a server that died before it answered has
/// a parent that gave its start up (and its argument's handles back, with its token), and
/// must not run; and no child may end before its start opened its pidfd, or a program
/// that reaps its children itself takes it first (a spawned child, spw82).
pub(crate) const GO: u8 = 0x67;

/// In a boot socket child: whether its parent said [`GO`] (`after`: a byte read along with
/// the boot frame), waiting for it. False when the parent closed its end instead.
fn parent_said_go(sock: BorrowedFd<'_>, after: Option<u8>) -> bool {
    let byte = match after {
        Some(b) => b,
        None => {
            let mut byte = [0u8];
            match sys::read_some(sock, &mut byte) {
                Ok(1) => byte[0],
                _ => return false,
            }
        }
    };
    byte == GO
}

/// Set in a spawned child before it calls the constructors it had not run: one of them
/// may be `test_support!`'s, whose `init()` must not make a new family here.
static DISPATCHING: AtomicBool = AtomicBool::new(false);

/// Whether this process is a spawned child on its way to its target.
pub(crate) fn dispatching() -> bool {
    DISPATCHING.load(Ordering::Relaxed)
}

/// The boot socket `fd` and the parent `parent` of a `BOOT_ENV` value (`value`, for the
/// message), the socket made close-on-exec; a malformed value or a missing descriptor
/// (`what`) ends this process.
fn boot_socket(value: &str, fd: &str, parent: &str, what: &str) -> (OwnedFd, u32) {
    let (Ok(fd), Ok(parent)) = (fd.parse::<i32>(), parent.parse::<u32>()) else {
        eprintln!("multiproc: malformed {BOOT_ENV}={value}");
        sys::exit_now(1);
    };
    let Some(sock) = sys::take_fd(fd) else {
        eprintln!("multiproc: {what} {fd} missing");
        sys::exit_now(1);
    };
    sys::set_cloexec(sock.as_fd());
    (sock, parent)
}

/// Set when the loader's call of [`dispatch_if_child`] left a spawned child's dispatch to
/// the `init()` that opens `main` (`#[multiproc::main]`); taken by that call.
static KEPT_FOR_MAIN: AtomicBool = AtomicBool::new(false);

/// Whether this process is a spawned child whose dispatch waits for the `init()` that opens
/// `main` (`#[multiproc::main]`): an `init()` before it (`test_support!`'s entry, placed in
/// the same binary) must not make a family here. One did, in rustdoc's merged doctest
/// binary: the child's new heap hid its parent's, where its argument's token lives (hang48).
pub(crate) fn waiting_for_main() -> bool {
    KEPT_FOR_MAIN.load(Ordering::Relaxed)
}

/// Called before `main` (and again by `init()`): if this process is a spawned child of a
/// family, or one of its helper processes, do that job and exit; otherwise return.
///
/// [`BOOT_ENV`] is read at start-up only: while the loader runs the constructors, or by the
/// `init()` that opens `main` when the loader's call left the dispatch to it. Set later
/// (by the program itself), it names descriptors this process owns for other purposes,
/// not a boot socket handed to it alone: `init()` took a `File`'s descriptor as one,
/// closed it under its owner and ended the process, and removed the variable while other
/// threads may read the environment. Such a variable is left alone.
pub(crate) fn dispatch_if_child() {
    if !sys::in_constructors() && !KEPT_FOR_MAIN.swap(false, Ordering::Relaxed) {
        return;
    }
    let Some(value) = std::env::var_os(BOOT_ENV) else { return };
    if value.as_encoded_bytes().starts_with(b"spawn:") && sys::dispatch_from_main() {
        // `#[multiproc::main]` made `init()` the first statement of `main`: dispatching from
        // there runs the target after every constructor and std's runtime start-up (see
        // `sys::early`). The variable stays for that call.
        KEPT_FOR_MAIN.store(true, Ordering::Relaxed);
        return;
    }
    // Grandchildren started with std::process::Command must not take themselves for
    // children of the family.
    sys::remove_env_single_threaded(BOOT_ENV);
    if sys::secure_execution() {
        // Set-user-ID, set-group-ID or with gained capabilities: the environment comes
        // from a less trusted user, who must not make this program read a "boot message"
        // from a descriptor of their choosing. A family member is never started so.
        return;
    }
    let value = value.to_string_lossy().into_owned();
    let parts: Vec<&str> = value.split(':').collect();
    match parts.as_slice() {
        ["spawn", fd, parent] => {
            let (sock, parent) = boot_socket(&value, fd, parent, "boot socket");
            sys::child_signal_dispositions();
            // This process never returns to the loader: the constructors it has not
            // called yet run now, before the target (see `sys::early`).
            DISPATCHING.store(true, Ordering::Relaxed);
            sys::finish_constructors();
            run(sock, parent, None, false)
        }
        ["forkserver", fd, parent] => {
            let (sock, parent) = boot_socket(&value, fd, parent, "fork server boot socket");
            // As a spawned child: `test_support!`'s `init()` must not make a family here.
            DISPATCHING.store(true, Ordering::Relaxed);
            super::forkserver::run_spawned(sock, parent)
        }
        ["tracker", fd, journal @ ..] => {
            let Some(pipe) = fd.parse::<i32>().ok().and_then(sys::take_fd) else {
                eprintln!("multiproc: resource tracker pipe {fd} missing");
                sys::exit_now(1);
            };
            // Its journal's files, if its starter could make them.
            let file = |fd: &str| fd.parse::<i32>().ok().and_then(sys::take_fd).map(sys::MemFile::from_fd);
            let (journal, named) = match journal {
                [a, b, named @ ..] => (file(a).zip(file(b)).map(<[sys::MemFile; 2]>::from), named.first()),
                _ => (None, None),
            };
            super::tracker::run(pipe, journal, named.map(|stem| stem.to_string()))
        }
        _ => {
            eprintln!("multiproc: unknown {BOOT_ENV}={value}");
            sys::exit_now(1);
        }
    }
}

/// The life of a fork-server child: `sock` is its end of the boot socket, `blank` the
/// server's [`Prepared::blank`] (the child's copy), `yours`: forked as its requester's own
/// child (its sibling). The server holds interrupts (blocked, with the dispositions a child
/// needs); its children must not.
pub(crate) fn run_forked(sock: OwnedFd, parent: u32, blank: Prepared, yours: bool) -> ! {
    sys::unblock_interrupts();
    run(sock, parent, Some(blank), yours)
}

/// The life of a fork-server child with no boot socket: `boot` is the offset of the report
/// room it leaves its outcome in (`shm::ReportRoom`, made by its requester; 8 bytes,
/// little-endian) and its boot message, in its copy of the server's memory (the server
/// received both with the request); `blank` as for [`run_forked`]. It waits for the room's
/// go word before it decodes the message.
pub(crate) fn run_forked_with(boot: &[u8], parent: u32, mut blank: Prepared) -> ! {
    sys::unblock_interrupts();
    if !sys::die_with_parent(parent) {
        sys::exit_now(1);
    }
    // The room's offset comes first, its low bit set when the boot message holds handles:
    // its blobs (a large argument, the surroundings) are handles into the heap that a
    // requester whose start failed (the server died between its fork and its answer) gave
    // back, so such a child waits for its go word before it decodes the message. Any
    // other decodes it first (its own memory only) and waits just before it runs anything
    // of the program's: the go mostly came meanwhile, and it does not sleep.
    let Some((at, boot)) = boot.split_first_chunk::<8>() else {
        sys::exit_now(1);
    };
    let at = u64::from_le_bytes(*at);
    let Some(room) = crate::shm::ChildRoom::at(at & !1) else {
        eprintln!("multiproc: child's report room is outside the family heap");
        sys::exit_now(1);
    };
    let handles = at & 1 == 1;
    if handles {
        // Killed here, it never decoded: its requester gives the blobs back at the reap.
        crash_point!("process.boot.before_go");
        if !room.wait_for_go() {
            sys::exit_now(1);
        }
    }
    // As a socket child's (`run`).
    crash_point!("process.boot.decoding");
    let boot = match decode_boot(boot, blank.rooms.take()) {
        Ok(boot) => boot,
        Err(e) => {
            eprintln!("multiproc: child could not decode its boot message: {e}");
            sys::exit_now(1);
        }
    };
    let prepared = blank.named(&boot.me.name);
    if !handles && !room.wait_for_go() {
        // Forgotten, not dropped: a fork-server child frees nothing.
        std::mem::forget((boot, prepared));
        sys::exit_now(1);
    }
    execute(boot, Channel::Room(room), Some(prepared))
}

/// Where a child leaves its outcome (and its note): its boot socket, or, for a fork child
/// that needs no socket (its parent holds nothing, its argument no handle) or a fork-server
/// child whose argument holds no handle, its report room in the family heap
/// (`shm::ReportRoom`), which its parent reads once it is dead.
pub(crate) enum Channel {
    Socket(OwnedFd),
    Room(ChildRoom),
}

impl Channel {
    fn report_to(&self) -> sys::ReportTo<'_> {
        match self {
            Channel::Socket(sock) => sys::ReportTo::Socket(sock.as_fd()),
            Channel::Room(room) => sys::ReportTo::Room(room.words()),
        }
    }

    /// Tells the parent which blob `outcome` carries, if it carries one (a result past a
    /// payload's inline size), before its encoding counts the blob in flight: until the
    /// report commits (written whole in the room, or sent whole on the socket), the blob is
    /// this process's, and a kill leaves the parent its key, so that the parent gives the
    /// blob back once it has reaped this process and found no outcome (leak61: the
    /// blob's only record was the outcome message, and a child killed between the encoding
    /// and its report's commit left it in the heap for good). Killed before this, the
    /// child alone holds the blob, and its reap frees it.
    ///
    /// A result that holds handles (`result`, their counts in flight since the runner's
    /// encoding) has their undo made the parent's instead (`shm::result_undo`, which names
    /// the blob too): the parent runs it at the reap unless a returned outcome came whole
    /// (review82 M2: a kill before the commit left them in flight for good), and keeps it
    /// otherwise, to run when its state is dropped with the outcome never taken. That
    /// undo's side then: left to the parent once the report is delivered, else taken back;
    /// an object never sent runs its undo when freed, by whoever frees it.
    ///
    /// `Err` when `result` holds handles whose undo could not be made (a full heap, an undo
    /// not in the executable): nothing named, and the caller gives the handles back and
    /// reports that instead of the result (review103 L3: the outcome went the old way, and
    /// a parent that never joined never gave the handles back).
    fn name_for_parent(
        &self,
        outcome: &Outcome,
        result: Option<&Encoded>,
    ) -> Result<Option<crate::shm::ResultUndo>, Unmade> {
        let blob = match outcome {
            Outcome::Returned(Payload::Heap(blob)) => Some(blob.key()),
            _ => None,
        };
        let name = |key| {
            // The blob (or the result's undo) made and held, not yet named.
            crash_point!("process.report.naming");
            match self {
                Channel::Socket(_) if fail_point!("process.report.unnamed") => false,
                Channel::Socket(sock) => crate::shm::send_outcome_blob(sock.as_fd(), key),
                Channel::Room(room) => {
                    room.name_blob(key);
                    true
                }
            }
        };
        if let Some(result) = result.filter(|result| result.has_handles()) {
            match crate::shm::result_undo(result, blob, name) {
                Ok(undo) => return Ok(Some(undo)),
                Err(crate::shm::NoResultUndo::Unmade(why)) => return Err(Unmade(why)),
                // Not named (the parent gone, or a socket error): as a kill before the
                // naming, the outcome goes as it is.
                Err(crate::shm::NoResultUndo::Unnamed) => return Ok(None),
            }
        }
        if let Some(key) = blob {
            // Not named (the parent gone, or a socket error): as a kill before the naming.
            let _ = name(key);
        }
        Ok(None)
    }
}

/// The life of a fork child, which finds its boot message in its copy of the parent's
/// memory.
pub(crate) fn run_in_fork(boot: Boot, channel: Channel, parent: u32, prepared: Prepared) -> ! {
    sys::stdin_from_devnull();
    if !sys::die_with_parent(parent) {
        sys::exit_now(1);
    }
    execute(boot, channel, Some(prepared))
}

/// `blank`: a fork-server child's [`Prepared::blank`]; a spawned child has none. `yours`: a
/// fork-server child forked as its requester's own child.
fn run(sock: OwnedFd, parent: u32, mut blank: Option<Prepared>, yours: bool) -> ! {
    let spawned = blank.is_none();
    if !sys::die_with_parent(parent) {
        // The parent is gone already: nobody would read what we produce.
        sys::exit_now(1);
    }
    if spawned {
        family::finish_at_exit();
        // Still single-threaded: a fork-server child inherits them from its server.
        family::prepare_for_forks();
    }
    // The parent's start failed after we were made (our server died before it answered;
    // our pidfd could not be had; our frame's rest, or our go, could not be sent): what
    // the boot message names is no longer ours. As our parent's own fork-server child (`yours`), we leave our pid on the
    // socket, whose end it keeps to reap us (`forkserver::reap_left_children`): nobody else
    // knows of us.
    let stop = |sock: &OwnedFd| -> ! {
        if yours {
            let _ = sys::send_with_fds(sock.as_fd(), &sys::pid_now().to_le_bytes(), &[]);
        }
        sys::exit_now(1);
    };
    let mut fds = Vec::new();
    // Not yet read: a test stops a child here (`stop:`), whose parent must not wait for
    // ever to send the rest of a long frame (`launch`'s `on_socket`).
    crash_point!("process.boot.before_frame");
    let (frame, after) = match read_frame_blocking(sock.as_fd(), &mut fds) {
        Ok(read) => read,
        // The end of the socket within a frame longer than its buffer (the rest is sent
        // once the start went through: `launch`'s `on_socket`): our parent gave the start
        // up, a stop, as before a go, and a quiet one, spawned or forked (review44 L3).
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => stop(&sock),
        Err(e) => {
            eprintln!("multiproc: child could not read its boot message: {e}");
            sys::exit_now(1);
        }
    };
    // Before anything of the message is taken: the parent says go once its start went
    // through, after it opened our pidfd. A spawned child had its whole frame before it
    // existed, and one that ran to its end at once was reaped first by a program that
    // ignores `SIGCHLD` (or waits for any child), failing its start (spw82).
    if !parent_said_go(sock.as_fd(), after) {
        stop(&sock);
    }
    let mut frame = &frame[..];
    // The heap first: the boot message may hold handles into it. The resource tracker's
    // pipe, if the family has one, comes second.
    if spawned {
        // A spawned child's frame goes on with the key of handle seals (see `launch`).
        let Some((key, message)) = frame.split_first_chunk::<16>() else {
            report(&Channel::Socket(sock), &Outcome::Failed("its boot message is too short".into()));
            sys::exit_now(1);
        };
        frame = message;
        let mut fds = std::mem::take(&mut fds).into_iter();
        let adopted =
            fds.next().ok_or_else(|| io::Error::other("no heap descriptor")).and_then(|fd| Heap::adopt(fd, *key));
        if let Err(e) = adopted {
            report(&Channel::Socket(sock), &Outcome::Failed(format!("cannot map the family heap: {e}")));
            sys::exit_now(1);
        }
        if let Some(tracker) = fds.next() {
            super::tracker::adopt(tracker);
        }
    }
    drop(fds);
    let sock = Channel::Socket(sock);
    // The boot message's blobs are counted in flight until its decoding ends (each receive
    // pending until then): a child killed before or in it leaves them to its parent, who
    // gives them back at its reap (`child::ChildState::try_reap`). A test kills it here.
    crash_point!("process.boot.decoding");
    let boot = match decode_boot(frame, blank.as_mut().and_then(|blank| blank.rooms.take())) {
        Ok(boot) => boot,
        Err(e) => {
            report(&sock, &Outcome::Failed(format!("its boot message could not be decoded: {e}")));
            sys::exit_now(1);
        }
    };
    let prepared = blank.map(|blank| blank.named(&boot.me.name));
    execute(boot, sock, prepared)
}

/// Room for a child's result and its framed outcome: enough for most, which then need no
/// allocation (a larger one grows it).
const REPORT_ROOM: usize = 256;

/// What a child's way from its boot message to its report needs from the allocator: made
/// by the parent before a fork (the child finds it in its copy), by the child itself
/// otherwise. A fork child that calls `malloc` or `free` runs (and faults in) the
/// allocator's code and writes (copies) pages of the heap it shares with its parent: with
/// this, an empty target's child calls neither.
pub(crate) struct Prepared {
    overflow: Option<OverflowReport>,
    /// The child's name, for its runner's panics, its other threads' panics, its log lines.
    names: [String; 3],
    /// Room for the encoded result.
    result: Vec<u8>,
    /// Room for the framed outcome.
    report: Vec<u8>,
    /// A [`Prepared::blank`]'s room for its child's boot message, taken by the decoding.
    rooms: Option<Rooms>,
}

/// Room for a name in a [`Prepared::blank`]: longer ones are allocated by the child.
const NAME_ROOM: usize = 64;
/// Room for a [`Me::identity`] in [`Rooms`]: a process this deep in the tree (or more).
const IDENTITY_ROOM: usize = 8;

impl Prepared {
    /// For the child named `name`, whose target the calling thread will run (or a copy of it).
    pub(crate) fn new(name: &str) -> Self {
        Self {
            overflow: OverflowReport::new(name),
            names: [name.to_owned(), name.to_owned(), name.to_owned()],
            result: Vec::with_capacity(REPORT_ROOM),
            report: Vec::with_capacity(REPORT_ROOM + 16),
            rooms: None,
        }
    }

    /// For a child whose name is not known yet, made by the fork server once (on its one
    /// thread, of which each child's is a copy): the child names it ([`Prepared::named`])
    /// in its copy, writing into room made here instead of asking the allocator.
    pub(crate) fn blank() -> Self {
        let mut blank = Self::new(&"-".repeat(NAME_ROOM));
        for name in &mut blank.names {
            name.clear();
        }
        blank.rooms = Some(Rooms {
            me: String::with_capacity(NAME_ROOM),
            identity: Vec::with_capacity(IDENTITY_ROOM),
            parent: String::with_capacity(NAME_ROOM),
            args: Vec::with_capacity(REPORT_ROOM),
        });
        blank
    }

    /// This blank, for the child named `name`.
    fn named(mut self, name: &str) -> Self {
        for room in &mut self.names {
            room.push_str(name);
        }
        if let Some(overflow) = &mut self.overflow {
            overflow.message.clear();
            overflow_message(&mut overflow.message, name);
        }
        self
    }
}

/// Room for what a boot message holds on the heap: [`Boot::me`]'s name and identity,
/// [`Boot::parent`]'s name and the argument's bytes ([`Payload::Inline`]), made by the fork
/// server with its [`Prepared::blank`]. Its child decodes its boot message into its copy of
/// them (this `DeserializeSeed`, [`decode_boot`]) instead of asking the allocator: the
/// first `malloc` of a fork-server child ran the allocator's code and wrote its arena and
/// pages of the heap, 8 page faults of every child (start44). What does not fit grows its
/// room, as in any `String` or `Vec`. It reads the message as `Boot`'s derived
/// `Deserialize` does, field by field (`tests::a_boot_message_decodes_alike_into_rooms`).
struct Rooms {
    me: String,
    identity: Vec<u32>,
    parent: String,
    args: Vec<u8>,
}

/// Decodes a boot message, into `rooms` if there are (a fork-server child's).
fn decode_boot(bytes: &[u8], rooms: Option<Rooms>) -> Result<Boot, codec::CodecError> {
    match rooms {
        Some(rooms) => codec::decode_own_seeded(bytes, rooms),
        None => codec::decode_own(bytes),
    }
}

/// The next field of a struct being decoded (`at`, counted from 0, of `what`), through `seed`.
fn field<'de, A: SeqAccess<'de>, S: DeserializeSeed<'de>>(
    seq: &mut A,
    seed: S,
    at: usize,
    what: &'static str,
) -> Result<S::Value, A::Error> {
    seq.next_element_seed(seed)?.ok_or_else(|| de::Error::invalid_length(at, &what))
}

/// The next field of a struct being decoded, as its type decodes itself.
fn plain_field<'de, A: SeqAccess<'de>, T: Deserialize<'de>>(
    seq: &mut A,
    at: usize,
    what: &'static str,
) -> Result<T, A::Error> {
    field(seq, PhantomData::<T>, at, what)
}

impl<'de> DeserializeSeed<'de> for Rooms {
    type Value = Boot;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Boot, D::Error> {
        const FIELDS: &[&str] = &[
            "family",
            "me",
            "parent",
            "call",
            "args",
            "result_plan",
            "surroundings",
            "child_init",
            "log",
            "receipts",
            "token",
        ];
        deserializer.deserialize_struct("Boot", FIELDS, self)
    }
}

impl<'de> Visitor<'de> for Rooms {
    type Value = Boot;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("struct Boot")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Boot, A::Error> {
        const BOOT: &str = "struct Boot with 11 elements";
        let Rooms { me, identity, parent, args } = self;
        let s = &mut seq;
        Ok(Boot {
            family: plain_field(s, 0, BOOT)?,
            me: field(s, MeInto { name: me, identity }, 1, BOOT)?,
            parent: field(s, ParentInto(parent), 2, BOOT)?,
            call: plain_field(s, 3, BOOT)?,
            args: field(s, PayloadInto(args), 4, BOOT)?,
            result_plan: plain_field(s, 5, BOOT)?,
            surroundings: plain_field(s, 6, BOOT)?,
            child_init: plain_field(s, 7, BOOT)?,
            log: plain_field(s, 8, BOOT)?,
            receipts: plain_field(s, 9, BOOT)?,
            token: plain_field(s, 10, BOOT)?,
        })
    }
}

/// A [`Me`] decoded into room for its name and identity.
struct MeInto {
    name: String,
    identity: Vec<u32>,
}

impl<'de> DeserializeSeed<'de> for MeInto {
    type Value = Me;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Me, D::Error> {
        deserializer.deserialize_struct("Me", &["name", "identity", "daemon", "may_have_children"], self)
    }
}

impl<'de> Visitor<'de> for MeInto {
    type Value = Me;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("struct Me")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Me, A::Error> {
        const ME: &str = "struct Me with 4 elements";
        let s = &mut seq;
        Ok(Me {
            name: field(s, InRoom(self.name), 0, ME)?,
            identity: field(s, InRoom(self.identity), 1, ME)?,
            daemon: plain_field(s, 2, ME)?,
            may_have_children: plain_field(s, 3, ME)?,
        })
    }
}

/// A [`ParentInfo`] decoded into room for its name.
struct ParentInto(String);

impl<'de> DeserializeSeed<'de> for ParentInto {
    type Value = ParentInfo;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ParentInfo, D::Error> {
        deserializer.deserialize_struct("ParentInfo", &["name", "pid", "start"], self)
    }
}

impl<'de> Visitor<'de> for ParentInto {
    type Value = ParentInfo;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("struct ParentInfo")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ParentInfo, A::Error> {
        const PARENT: &str = "struct ParentInfo with 3 elements";
        let s = &mut seq;
        Ok(ParentInfo {
            name: field(s, InRoom(self.0), 0, PARENT)?,
            pid: plain_field(s, 1, PARENT)?,
            start: plain_field(s, 2, PARENT)?,
        })
    }
}

/// A [`Payload`] decoded with its inline bytes in room made for them.
struct PayloadInto(Vec<u8>);

impl<'de> DeserializeSeed<'de> for PayloadInto {
    type Value = Payload;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Payload, D::Error> {
        deserializer.deserialize_enum("Payload", &["Inline", "Heap"], self)
    }
}

impl<'de> Visitor<'de> for PayloadInto {
    type Value = Payload;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("enum Payload")
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Payload, A::Error> {
        use de::VariantAccess as _;
        match data.variant::<u32>()? {
            (0, inline) => inline.newtype_variant_seed(InRoom(self.0)).map(Payload::Inline),
            (1, heap) => heap.newtype_variant().map(Payload::Heap),
            (n, _) => Err(de::Error::invalid_value(de::Unexpected::Unsigned(n.into()), &"variant index 0 <= i < 2")),
        }
    }
}

/// A string, a list of numbers or bytes, decoded into the room this holds (emptied first).
struct InRoom<T>(T);

impl<'de> DeserializeSeed<'de> for InRoom<String> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for InRoom<String> {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<String, E> {
        self.0.clear();
        self.0.push_str(v);
        Ok(self.0)
    }
}

impl<'de> DeserializeSeed<'de> for InRoom<Vec<u32>> {
    type Value = Vec<u32>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<u32>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for InRoom<Vec<u32>> {
    type Value = Vec<u32>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Vec<u32>, A::Error> {
        self.0.clear();
        while let Some(n) = seq.next_element()? {
            self.0.push(n);
        }
        Ok(self.0)
    }
}

impl<'de> DeserializeSeed<'de> for InRoom<Vec<u8>> {
    type Value = Vec<u8>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_bytes(self)
    }
}

impl<'de> Visitor<'de> for InRoom<Vec<u8>> {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: de::Error>(mut self, v: &[u8]) -> Result<Vec<u8>, E> {
        self.0.clear();
        self.0.extend_from_slice(v);
        Ok(self.0)
    }
}

/// std's message for a stack overflow in the thread named `name` (72 bytes and the name),
/// written into `out`.
fn overflow_message(out: &mut String, name: &str) {
    // Pieces, not `write!`: a fork-server child names its copy at boot, and the formatting
    // machinery's code would be one more page fault in each.
    out.push_str("\nthread '");
    out.push_str(name);
    out.push_str("' has overflowed its stack\nfatal runtime error: stack overflow\n");
}

/// What a child reports when its target overflows its stack: made before the target
/// runs, since the signal handler that reports it can only write bytes.
struct OverflowReport {
    /// The framed [`Outcome::StackOverflow`]: the process's one encoding of it.
    frame: &'static [u8],
    /// std's message, naming the child.
    message: String,
    /// What arming it takes on the thread that runs the target.
    arming: sys::OverflowArming,
}

impl OverflowReport {
    /// The report of the child named `name`, for the calling thread. The fork start method
    /// makes it in the parent before the fork: the child then writes no heap page for it
    /// (each is one more copy) and touches none of the code that works out its arming.
    fn new(name: &str) -> Option<Self> {
        // The same bytes for every child: encoded once, and lent, not copied. The encoding
        // runs deep in the stack (the codec's state, postcard, a growing vector), and a
        // fork parent pays a page fault for every page of its stack it writes between two
        // forks; a copy per start was one more allocation in the parent and, shifted in
        // place for a report room, one more written (copied) heap page in the child.
        static FRAME: OnceLock<Vec<u8>> = OnceLock::new();
        let framed = match FRAME.get() {
            Some(framed) => framed,
            None => {
                let msg = codec::encode_own(&Outcome::StackOverflow).ok()?;
                let framed = frame(&msg.bytes);
                msg.sent();
                FRAME.get_or_init(|| framed)
            }
        };
        let mut message = String::with_capacity(name.len() + 72);
        overflow_message(&mut message, name);
        Some(Self { frame: framed, message, arming: sys::OverflowArming::here() })
    }
}

/// Runs the target of `boot` and reports; `prepared` is what the parent made for it
/// before a fork.
fn execute(boot: Boot, channel: Channel, prepared: Option<Prepared>) -> ! {
    let Prepared { overflow, names: [name, process_name, log_name], result, report: room, rooms: _ } =
        prepared.unwrap_or_else(|| Prepared::new(&boot.me.name));
    if let Some(surroundings) = &boot.surroundings
        && let Err(why) = take_surroundings(surroundings)
    {
        report(&channel, &Outcome::Failed(why));
        end(&channel, 1);
    }
    family::adopt(boot.family, boot.me, boot.parent);
    super::init::adopt_child_init(boot.child_init);
    super::logging::adopt(log_name, boot.log);
    panics::name_process(process_name);
    panics::install_hook();

    if let Some(overflow) = overflow {
        sys::report_stack_overflow(channel.report_to(), overflow.frame, overflow.message, overflow.arming);
    }
    let mut call = ChildCall {
        args: boot.args,
        result_plan: boot.result_plan,
        outcome: None,
        returned_plain: None,
        encoded: None,
        name,
        result,
        receipts: boot.receipts,
        // A copy of the boot socket for the receipts (only without a token's block: one
        // more descriptor). A room has no note: its child is started only with an argument
        // without handles.
        note: match &channel {
            Channel::Socket(sock) if boot.receipts == NOTE_ONLY && !fail_point!("process.note.copy") => {
                sock.try_clone().ok()
            }
            _ => None,
        },
        token: boot.token,
    };
    if boot.receipts == NOTE_ONLY && call.note.is_none() {
        // Unable to send its receipts, the child must not take its argument's handles: its
        // parent gives them back when it ends.
        report(&channel, &Outcome::Failed("it cannot tell its parent which handles of its argument it took".into()));
        end(&channel, 1);
    }
    // Both `Packed`s of `boot` were made by `pack` in this family and travelled only on
    // the crate's own channels: the target by the parent; the `child_init` by the ancestor
    // that called `builder().child_init` (each child adopts it from its boot message and
    // sends it on in its children's). `launch` wrote them into the boot socket the parent
    // made for this child alone, or into the fork server's or a fork's copy of the
    // message: the fork server (and a zygote) serves only requests that carry the family's
    // token (in crate memory and boot messages only) from our uid, so no code of the
    // program writes there. (`MULTIPROC_BOOT`, which names the socket, is trusted only at
    // start-up, where no code of the program runs: see `sys::in_constructors`.)
    let set_up = match boot.child_init {
        Some(setup) => {
            // SAFETY: `launch`'s message (see above).
            #[allow(unsafe_code)]
            let ran = panics::catching(&call.name, || unsafe { sys::unpack_and_run(setup, &mut ()) });
            match ran {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Outcome::Failed("its child_init function belongs to a different executable".into())),
                Err(info) => Err(Outcome::Panicked(info)),
            }
        }
        None => Ok(()),
    };
    match set_up {
        Err(outcome) => call.outcome = Some(outcome),
        Ok(()) => {
            log::info!("child process calling its target");
            // SAFETY: `launch`'s message, as for the `child_init` above.
            #[allow(unsafe_code)]
            let ran = unsafe { sys::unpack_and_run(boot.call, &mut call) };
            if ran.is_err() {
                call.outcome = Some(Outcome::Failed(
                    "the target belongs to a different executable than this child runs, or to a shared library".into(),
                ));
            }
        }
    }
    // Python's rules at the end of a process: daemonic children are terminated, the
    // others joined (by a runner that encoded a result, already, before its encoding).
    family::finish_children();
    super::tracker::write_backlog();
    if let Some(returned) = &call.returned_plain {
        log::info!("process exiting with exit code 0");
        returned.send(&channel);
        end(&channel, 0)
    }
    let mut outcome = call.outcome.take().unwrap_or_else(|| Outcome::Failed("the runner left no outcome".into()));
    let undo = match channel.name_for_parent(&outcome, call.encoded.as_ref()) {
        Ok(undo) => undo,
        Err(Unmade(why)) => {
            // Its handles given back here (their counts come back from flight), and the
            // result with them (its blob, if any, freed unnamed): the parent learns why.
            drop(call.encoded.take());
            outcome = Outcome::Failed(format!(
                "its result holds handles whose undo could not be made for its parent ({}): they were given back",
                why.reason()
            ));
            None
        }
    };
    let code = match outcome {
        Outcome::Returned(_) => 0,
        _ => 1,
    };
    log::info!("process exiting with exit code {code}");
    let delivered = report_in(&channel, &outcome, room);
    // The result's own handles, counted in flight by the runner's encoding: the parent's
    // once the outcome is delivered; else given back here (a cut outcome, or none, goes
    // without them: marked sent, they stayed in the heap for good, review82 M2). Named to
    // the parent, their undo is the object's either way: left to the parent, or taken
    // back, which runs it.
    let named = undo.is_some();
    if let Some(undo) = undo {
        match delivered {
            true => undo.leave(),
            false => undo.take_back(),
        }
    }
    if let Some(encoded) = call.encoded.take() {
        match delivered || named {
            true => encoded.sent(),
            false => drop(encoded),
        }
    }
    end(&channel, code)
}

/// A result's handles whose undo could not be made ([`Channel::name_for_parent`]), and why.
#[derive(Debug)]
struct Unmade(crate::shm::UndoUnmade);

/// A child's end once it ran (or tried to): a `Fork` child reporting in a room waits for
/// its parent to have looked at it first (`ChildRoom::wait_to_end`: a program that reaps
/// children itself must not reap it before its start opened its pidfd, audp61; a socket
/// child waited for that before it ran, `fork::start`).
fn end(channel: &Channel, code: i32) -> ! {
    if let Channel::Room(room) = channel {
        room.wait_to_end();
    }
    sys::exit_now(code)
}

fn report(channel: &Channel, outcome: &Outcome) -> bool {
    match codec::encode_own(outcome) {
        Ok(msg) => {
            let ok = match channel {
                Channel::Socket(sock) => sys::send_all(sock.as_fd(), &frame(&msg.bytes), &[]).is_ok(),
                Channel::Room(room) => room.write(&msg.bytes) || write_cut(*room, outcome, msg.bytes.len()),
            };
            msg.sent();
            ok
        }
        Err(_) => false,
    }
}

/// The longest panic message [`write_cut`] keeps, in characters.
const CUT_MESSAGE: usize = 200;

/// After `room` could not take the outcome (`len` bytes: too long for the room, and the
/// family heap too full for a spill), leaves what fits in the room instead, so that the
/// parent learns why rather than finding no outcome: a panic with its message cut and no
/// backtrace, or a failure that says what happened. The outcome itself is lost: the
/// child has no socket.
fn write_cut(room: ChildRoom, outcome: &Outcome, len: usize) -> bool {
    let why =
        format!("its outcome ({len} bytes) did not fit in its report room, and the family heap had no room for it");
    let cut = match outcome {
        Outcome::Panicked(info) => {
            let mut info = info.clone();
            if let Some((at, _)) = info.message.char_indices().nth(CUT_MESSAGE) {
                info.message.truncate(at);
                info.message.push_str(" [cut]");
            }
            info.backtrace = format!("(not kept: {why})");
            Outcome::Panicked(info)
        }
        _ => Outcome::Failed(why),
    };
    match codec::encode_own(&cut) {
        Ok(msg) => {
            let ok = room.write(&msg.bytes);
            msg.sent();
            ok
        }
        Err(_) => false,
    }
}

/// [`report`] framed in `room`, which is not freed: the process exits next. Whether the
/// outcome itself was delivered (not cut by [`write_cut`], nor lost).
fn report_in(channel: &Channel, outcome: &Outcome, mut room: Vec<u8>) -> bool {
    room.clear();
    // A room takes the message alone (it keeps the length itself).
    let head = match channel {
        Channel::Socket(_) => 4,
        Channel::Room(_) => 0,
    };
    room.resize(head, 0);
    match codec::encode_own_after(outcome, room) {
        Ok(mut msg) => {
            // Encoded: a result's blob is counted in flight, not yet sent or written.
            crash_point!("process.report.encoded");
            let delivered = match channel {
                // A test's report that never arrives (a send that failed, a room and heap
                // too full even for a cut outcome), written nowhere.
                _ if fail_point!("process.report.undelivered") => false,
                Channel::Socket(sock) => {
                    let Ok(len) = u32::try_from(msg.bytes.len() - 4) else { return false };
                    msg.bytes[..4].copy_from_slice(&len.to_le_bytes());
                    sys::send_all(sock.as_fd(), &msg.bytes, &[]).is_ok()
                }
                Channel::Room(room) => {
                    let written = room.write(&msg.bytes);
                    if !written {
                        // What fits instead, for the parent to learn why.
                        write_cut(*room, outcome, msg.bytes.len());
                    }
                    written
                }
            };
            // Freeing it would write a page of the heap (a copy, in a fork child).
            std::mem::forget(std::mem::take(&mut msg.bytes));
            if delivered {
                msg.sent();
            }
            // Else dropped: its handles' counts come back from flight (a cut outcome, or
            // none, goes without them).
            delivered
        }
        Err(_) => false,
    }
}

/// Where a runner finds its argument and leaves its outcome.
pub(crate) struct ChildCall {
    args: Payload,
    result_plan: codec::Plan,
    outcome: Option<Outcome>,
    /// The outcome of a target of plain values that returned ([`run_plain`]), sent as it
    /// is instead of `outcome`.
    returned_plain: Option<PlainReturn>,
    /// The encoded return value, kept until it has been sent (it may hold handles).
    encoded: Option<Encoded>,
    name: String,
    /// Room for the encoded result ([`Prepared`]).
    result: Vec<u8>,
    /// Where the receives of the argument's handles take them from (0: none; see
    /// [`Boot::receipts`]).
    receipts: u64,
    /// Where the receipts are sent (with [`NOTE_ONLY`]).
    note: Option<OwnedFd>,
    /// The argument's token (`shm::receipts::ArgsToken`: what names it), taken before the
    /// argument is decoded and kept until this process ends.
    token: Option<[u64; 3]>,
}

/// The runner for a `fn(A) -> R` target: decodes the argument, calls the target, encodes
/// the result; a panic in any of the three (user `Deserialize` and `Serialize` impls run
/// in the first and last) is caught and reported as one.
pub(crate) fn runner<A: DeserializeOwned, R: Serialize + DeserializeOwned>(
    target: impl FnOnce(A) -> R,
    context: &mut dyn Any,
) {
    let Some(call) = context.downcast_mut::<ChildCall>() else { return };
    // A plain argument holds no handle (no token, no receipts): read in place.
    if codec::plain::<A>()
        && codec::plain::<R>()
        && call.receipts == 0
        && let Some(args) = codec::decode_plain::<A>(call.args.bytes(), true)
    {
        return run_plain(target, args, call);
    }
    codec::assume_plan::<R>(call.result_plan);
    let bytes = std::mem::replace(&mut call.args, Payload::Inline(Vec::new()));
    let receipts = call.receipts;
    let note = call.note.take();
    let token = call.token.take();
    let room = std::mem::take(&mut call.result);
    let (outcome, name) = panics::catching_named(std::mem::take(&mut call.name), || {
        // The argument's token first, before anything of the argument: taken, its handles
        // are this process's to take, and its leave or its death frees the token and gives
        // back the ones it did not take; not taken (the parent's side took it back, and
        // gave every handle back), the argument must not be decoded. Armed
        // `fail:process.args.token`, the token is taken for gone (a test's child that cannot
        // take its argument, as one booted into a heap not its parent's: hang48).
        let take = |token| if fail_point!("process.args.token") { None } else { crate::shm::take_args_token(token) };
        let token = match token.map(take) {
            None => None,
            Some(Some(token)) => Some(token),
            Some(None) => {
                return Err(Outcome::Failed("its parent gave its start up before it took its argument".into()));
            }
        };
        // Each handle received is this process's at once: taken from the token's carrier
        // entry (whose free, at this process's end, lets go of what it did not take), or,
        // with `NOTE_ONLY`, from flight with its receipt sent on the socket right before (a
        // kill between the two leaks the object; the parent keeps the undo until it reaps
        // this process, and gives back every handle without a receipt). Those a decoding
        // that stops part-way did not read, too: this process gives back none itself.
        let taking = codec::TakeScope::enter();
        let block = match &note {
            Some(sock) if receipts == NOTE_ONLY => crate::shm::receipts_on_socket(sock.as_raw_fd()),
            _ => receipts,
        };
        // A `Deserialize` that panics is a failed decoding: its panic goes on once the
        // handles received are receipted (the parent gives back the others).
        let decoded =
            std::panic::catch_unwind(AssertUnwindSafe(|| codec::receipting(block, || codec::decode(bytes.bytes()))));
        if receipts != 0 {
            // Decoded (or failed, or panicked): every handle received is receipted already
            // (`noting` and `noted` are the same step since receipts are sent; before,
            // `NOTE_ONLY` sent a note between them).
            crash_point!("process.args.noting");
            crash_point!("process.args.noted");
        }
        drop(taking);
        drop(note);
        if let Some(token) = token {
            // Decoded: the token is kept until this process ends, never let go of here. Its
            // death (killed, or its exit) is then a holder's prune, by its reaper, which
            // frees the token and runs the undo of the handles without a receipt (a
            // decoding that stopped part-way): a free here would leave a window, between
            // the table's release and the block's free, where a kill leaks the token (the
            // chaos soak's kills as workers start land in such windows; the note-then-free
            // of the block of receipts was one).
            std::mem::forget(token);
            crash_point!("process.args.receipts_noted");
        }
        let args: A = match decoded {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return Err(Outcome::Failed(format!("its argument could not be decoded: {e}"))),
            Err(panic) => std::panic::resume_unwind(panic),
        };
        match bytes {
            // A small argument's bytes are kept until the process exits: freeing them would
            // run the allocator and write (copy, in a fork child) a page of the heap. A
            // larger one (a fork child's, which is never in the heap) is freed.
            Payload::Inline(bytes) if bytes.capacity() <= crate::shm::INLINE_MAX => std::mem::forget(bytes),
            // Given back before the target runs.
            other => drop(other),
        }
        let result = target(args);
        // Python's end of a process first (see `execute`), then the result encoded: its
        // handles are counted in flight from the encoding, with nothing but this process
        // recording them until their undo is named to the parent (`Channel::name_for_parent`;
        // a kill in between leaks them): a window kept to that, not this process's
        // children joined (unbounded) and its backlog's last write (up to 5 s).
        family::finish_children();
        super::tracker::write_backlog();
        codec::encode_in(&result, room).map_err(|e| Outcome::NotEncoded(e.to_string()))
    });
    call.name = name;
    call.outcome = Some(match outcome {
        Ok(Ok(mut encoded)) => match Payload::new(std::mem::take(&mut encoded.bytes)) {
            Ok(payload) => {
                call.encoded = Some(encoded);
                Outcome::Returned(payload)
            }
            Err(e) => Outcome::Failed(format!("its result does not fit in shared memory: {e}")),
        },
        Ok(Err(failed)) => failed,
        Err(info) => Outcome::Panicked(info),
    });
}

/// [`runner`]'s way for a target whose argument and result are [`codec::plain`] (a
/// number, a `bool`, a `char`, `()`), the argument read in place: the target runs under
/// the same catch, and its result is framed on the stack ([`PlainReturn`]), with none of
/// the codec's scopes and thread state, no plan (plain values are never self-described)
/// and no allocation. A fork child of an empty target touches that much less code and
/// heap (start40).
fn run_plain<A, R: Serialize>(target: impl FnOnce(A) -> R, args: A, call: &mut ChildCall) {
    let (returned, name) = panics::catching_named(std::mem::take(&mut call.name), || target(args));
    call.name = name;
    match returned.map(|result| PlainReturn::new(&result)) {
        Ok(Some(returned)) => call.returned_plain = Some(returned),
        Ok(None) => call.outcome = Some(Outcome::NotEncoded("a plain result longer than its room".into())),
        Err(info) => call.outcome = Some(Outcome::Panicked(info)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_return_encodes_as_its_outcome() {
        fn check<R: Serialize + DeserializeOwned>(result: R) {
            let value = codec::encode(&result).unwrap();
            let outcome = codec::encode_own(&Outcome::Returned(Payload::Inline(value.bytes.clone()))).unwrap();
            let returned = PlainReturn::new(&result).unwrap();
            assert_eq!(&returned.frame[..returned.len], &frame(&outcome.bytes)[..]);
            value.sent();
            outcome.sent();
        }
        check(());
        check(true);
        check('\u{10ffff}');
        check(u128::MAX);
        check(i128::MIN);
        check(f64::MIN_POSITIVE);
        check(0u8);
    }

    /// Every field set, the strings and lists longer than their rooms or not: a fork-server
    /// child's decoding into rooms reads what `Boot`'s derived `Deserialize` reads.
    #[test]
    fn a_boot_message_decodes_alike_into_rooms() {
        fn runner(_: fn(), _: &mut dyn Any) {}
        let call = sys::pack_runner(runner);
        for (name, depth, args) in [("Process-2", 1, 0), ("P".repeat(NAME_ROOM + 1).as_str(), IDENTITY_ROOM + 1, 300)] {
            let boot = Boot {
                family: Some(FamilyConfig {
                    forkserver: Some("multiproc-forkserver-1-0123".into()),
                    token: [7; 16],
                    authkey: [9; 32],
                    default_method: super::super::StartMethod::ForkServer,
                    #[cfg(feature = "cluster")]
                    cluster_key: None,
                }),
                me: Me {
                    name: name.into(),
                    identity: (1..=depth as u32).collect(),
                    daemon: true,
                    may_have_children: false,
                },
                parent: ParentInfo { name: format!("{name}'s parent"), pid: 4_000_000, start: u64::MAX },
                call,
                args: Payload::Inline((0..args).map(|i| i as u8).collect()),
                result_plan: codec::Plan::GaveUp,
                surroundings: Some(Payload::Inline(vec![1, 2, 3])),
                child_init: Some(call),
                log: Some(4),
                receipts: NOTE_ONLY,
                token: Some([1, u64::MAX, 3]),
            };
            let message = codec::encode_own(&boot).unwrap();
            let derived: Boot = codec::decode_own(&message.bytes).unwrap();
            let mut blank = Prepared::blank();
            // Rooms that held something: emptied first.
            let mut rooms = blank.rooms.take().unwrap();
            rooms.me.push_str("old");
            rooms.identity.push(5);
            rooms.args.push(6);
            let in_rooms = decode_boot(&message.bytes, Some(rooms)).unwrap();
            assert_eq!(format!("{in_rooms:?}"), format!("{derived:?}"));
            assert_eq!(format!("{in_rooms:?}"), format!("{boot:?}"));
            message.sent();
        }
    }
}
