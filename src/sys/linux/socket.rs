//! Unix sockets: the boot channel of every child, the fork server's requests, and file
//! descriptors passed with `SCM_RIGHTS`.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::timespec;
use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

/// The most descriptors one message may carry.
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 32;

/// A connected pair of unix stream sockets, close-on-exec.
pub(crate) fn socketpair_stream() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)?)
}

/// Sends `data` with `fds` attached; returns how many bytes went out (all of them for
/// seqpacket sockets, possibly fewer for streams). Never raises `SIGPIPE`.
pub(crate) fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    sendmsg_with_fds(sock, data, fds, SendFlags::NOSIGNAL)
}

/// Sends what of `data` a stream socket's buffer takes now, `fds` with the first byte,
/// without waiting for a reader: returns how many bytes went (at least one), or
/// `WouldBlock` if none could. Never raises `SIGPIPE`.
pub(crate) fn send_what_fits(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    sendmsg_with_fds(sock, data, fds, SendFlags::NOSIGNAL | SendFlags::DONTWAIT)
}

fn sendmsg_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>], flags: SendFlags) -> io::Result<usize> {
    assert!(fds.len() <= MAX_FDS_PER_MESSAGE, "too many descriptors in one message");
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        let pushed = control.push(SendAncillaryMessage::ScmRights(fds));
        debug_assert!(pushed);
    }
    loop {
        match rustix::net::sendmsg(sock, &[IoSlice::new(data)], &mut control, flags) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends what fits of `data`, waiting up to `wait` for room when none is free: `WouldBlock`
/// when the wait ran out, `Interrupted` when a signal ended it. A blocking unix-socket send
/// waits the socket's whole timeout anew for each piece it moves, so a reader that takes a
/// little at a time kept one call going for ever (a TCP send's timeout bounds the call).
/// Never raises `SIGPIPE`.
#[cfg(feature = "cluster")]
pub(crate) fn send_within(sock: BorrowedFd<'_>, data: &[u8], wait: Duration) -> io::Result<usize> {
    match send_what_fits(sock, data, &[]) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        done => return done,
    }
    let mut pollfds = [PollFd::new(&sock, PollFlags::OUT)];
    match rustix::event::poll(&mut pollfds, Some(&timespec(wait))) {
        Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
        Ok(_) => send_what_fits(sock, data, &[]),
        Err(e) => Err(e.into()),
    }
}

/// Sends all of `data`, the descriptors with the first byte, blocking as needed.
pub(crate) fn send_all(sock: BorrowedFd<'_>, mut data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut fds = fds;
    while !data.is_empty() || !fds.is_empty() {
        let n = send_with_fds(sock, data, fds)?;
        fds = &[];
        data = &data[n..];
        if n == 0 && !data.is_empty() {
            wait_writable(sock, None)?;
        }
    }
    Ok(())
}

/// Sends all of `data` to a process that reads it, for as long as it lives (`pidfd`): true
/// once all of it went, false if the reader ended first, its end of the socket closed or
/// its pidfd readable, with data still unsent (a copy of its end, kept by a fork of ours,
/// would otherwise leave the send waiting for a reader that never comes).
///
/// While the socket stays full, `look` is called once every `every`, told whether the
/// reader took anything since the look before; its error ends the send (a reader the caller
/// gives up on, such as one stopped). The looks keep their time whatever signals interrupt
/// the waits between them: restarted on each, a wait longer than the signals' interval never
/// ended (review49 L3). Never raises `SIGPIPE`.
pub(crate) fn send_while_alive(
    sock: BorrowedFd<'_>,
    mut data: &[u8],
    pidfd: BorrowedFd<'_>,
    (every, look): (Duration, &mut dyn FnMut(bool) -> io::Result<()>),
) -> io::Result<bool> {
    let mut next_look = Instant::now() + every;
    let mut took = false;
    while !data.is_empty() {
        match send_what_fits(sock, data, &[]) {
            Ok(n) => {
                data = &data[n..];
                took |= n > 0;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = next_look.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    look(std::mem::take(&mut took))?;
                    next_look = Instant::now() + every;
                    continue;
                }
                let mut pollfds = [PollFd::new(&sock, PollFlags::OUT), PollFd::new(&pidfd, PollFlags::IN)];
                match rustix::event::poll(&mut pollfds, Some(&timespec(left))) {
                    Ok(_) if !pollfds[1].revents().is_empty() => return Ok(false),
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Receives into `buf`, appending any descriptors that came along to `fds` (close-on-exec).
/// Returns the byte count; 0 means the peer closed (or an empty seqpacket message).
pub(crate) fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    recv_with_fds_split(sock, buf, &mut [], fds)
}

/// [`recv_with_fds`] into `head`, then `rest` for what does not fit: the first bytes of a
/// message land on the caller's stack, the rest (rarely) in a larger buffer.
pub(crate) fn recv_with_fds_split(
    sock: BorrowedFd<'_>,
    head: &mut [u8],
    rest: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let n = loop {
        let mut bufs = [IoSliceMut::new(head), IoSliceMut::new(rest)];
        match rustix::net::recvmsg(sock, &mut bufs, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(msg) => break msg.bytes,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = msg {
            fds.extend(received);
        }
    }
    Ok(n)
}

/// Like [`recv_with_fds`] without blocking: `None` when nothing is there yet.
pub(crate) fn recv_with_fds_nonblocking(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<Option<usize>> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let n = loop {
        match rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
        ) {
            Ok(msg) => break msg.bytes,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    };
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = msg {
            fds.extend(received);
        }
    }
    Ok(Some(n))
}

/// The error of a process with no room for one more descriptor (`EMFILE`): what a
/// descriptor sent to it that did not arrive means (the kernel drops those a receiver has
/// no room for, and says only `MSG_CTRUNC`).
pub(crate) fn out_of_descriptors() -> io::Error {
    Errno::MFILE.into()
}

/// Switches `O_NONBLOCK` on or off.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    let flags = if on { flags | rustix::fs::OFlags::NONBLOCK } else { flags - rustix::fs::OFlags::NONBLOCK };
    Ok(rustix::fs::fcntl_setfl(fd, flags)?)
}

fn kind(seqpacket: bool) -> SocketType {
    if seqpacket { SocketType::SEQPACKET } else { SocketType::STREAM }
}

/// A listening unix socket (stream, or sequenced-packet) in the abstract namespace: nothing
/// in the file system, nothing to clean up. Close-on-exec.
pub(crate) fn listen_abstract(name: &str, seqpacket: bool) -> io::Result<OwnedFd> {
    let sock = rustix::net::socket_with(AddressFamily::UNIX, kind(seqpacket), SocketFlags::CLOEXEC, None)?;
    let addr = SocketAddrUnix::new_abstract_name(name.as_bytes())?;
    rustix::net::bind(&sock, &addr)?;
    rustix::net::listen(&sock, 128)?;
    Ok(sock)
}

/// Shuts `sock` down both ways: its peer reads the end of the stream even while copies
/// of this end (a fork child's) stay open.
pub(crate) fn shutdown_both(sock: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::shutdown(sock, rustix::net::Shutdown::Both)?)
}

/// Shuts the sending side of `sock` down: its peer reads the end of the stream even while
/// copies of this end stay open.
pub(crate) fn shutdown_write(sock: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::shutdown(sock, rustix::net::Shutdown::Write)?)
}

/// Reads what a stream socket has into `buf` without taking it, without waiting:
/// `WouldBlock` when nothing is there, 0 at end of stream.
pub(crate) fn peek_nonblocking(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::net::recv(sock, &mut *buf, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Ok((n, _)) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether `sock`'s peer shut its end down (or closed it) with nothing more queued: a peek
/// that reads the end of the stream. One system call, no wait.
pub(crate) fn peer_ended(sock: BorrowedFd<'_>) -> bool {
    let mut byte = [0u8; 1];
    loop {
        match rustix::net::recv(sock, &mut byte[..], RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Ok((n, _)) => return n == 0,
            Err(Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Connects to a unix socket in the abstract namespace.
pub(crate) fn connect_abstract(name: &str, seqpacket: bool) -> io::Result<OwnedFd> {
    let sock = rustix::net::socket_with(AddressFamily::UNIX, kind(seqpacket), SocketFlags::CLOEXEC, None)?;
    let addr = SocketAddrUnix::new_abstract_name(name.as_bytes())?;
    loop {
        match rustix::net::connect(&sock, &addr) {
            Ok(()) => return Ok(sock),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// [`connect_abstract`] without waiting: `WouldBlock` when the listener's backlog is full
/// (a blocking connect waits there until its listener accepts or goes), and no socket
/// made. The socket it makes is blocking.
pub(crate) fn connect_abstract_nonblocking(name: &str, seqpacket: bool) -> io::Result<OwnedFd> {
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let sock = rustix::net::socket_with(AddressFamily::UNIX, kind(seqpacket), flags, None)?;
    let addr = SocketAddrUnix::new_abstract_name(name.as_bytes())?;
    loop {
        match rustix::net::connect(&sock, &addr) {
            Ok(()) => break,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    set_nonblocking(sock.as_fd(), false)?;
    Ok(sock)
}

/// A unix stream socket, not yet connected (close-on-exec): for Redis on a unix socket.
#[cfg(feature = "cluster")]
pub(crate) fn unix_stream() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)?)
}

/// Connects `sock` to the unix socket at `path`, in one attempt: a server whose backlog is
/// full keeps it waiting for as long as the socket's send timeout (then `WouldBlock`), and
/// a signal interrupts the wait (`Interrupted`), both leaving `sock` as it was, to be
/// connected again (unlike TCP's, a unix connect has no half-done state).
#[cfg(feature = "cluster")]
pub(crate) fn connect_unix_once(sock: BorrowedFd<'_>, path: &std::path::Path) -> io::Result<()> {
    Ok(rustix::net::connect(sock, &SocketAddrUnix::new(path)?)?)
}

/// Accepts one connection (close-on-exec).
pub(crate) fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    loop {
        match rustix::net::accept_with(listener, SocketFlags::CLOEXEC) {
            Ok(fd) => return Ok(fd),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The user id and the pid of the process at the other end of a unix socket (as of its
/// `connect`); the pid is 0 when that process lives in a pid namespace this one cannot
/// see (the kernel names no pid for it).
///
/// Not rustix's `socket_peercred`: its `UCred` holds a non-zero `Pid`, built from the
/// kernel's bytes unchecked, so such a peer (a process of the same user in a sibling pid
/// namespace, connecting to the fork server's abstract address) made an invalid value in
/// the fork server (review91 L3).
pub(crate) fn peer_cred(sock: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` live across the call, `len` is `cred`'s size, and the kernel
    // writes at most `len` bytes into `cred`, three integers for which any bits are valid.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.uid, u32::try_from(cred.pid).unwrap_or(0)))
}

/// This process's user id.
pub(crate) fn my_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Waits until one of `fds` is readable (or hung up); returns one flag per descriptor.
/// `None` waits forever; a zero timeout only looks.
pub(crate) fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pollfds: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(fd, PollFlags::IN)).collect();
    let ts = timeout.map(timespec);
    loop {
        match rustix::event::poll(&mut pollfds, ts.as_ref()) {
            Ok(_) => break,
            Err(Errno::INTR) => {
                if timeout.is_some() {
                    break;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(pollfds.iter().map(|p| !p.revents().is_empty()).collect())
}

/// The most descriptors [`poll_readable_into`] polls from the stack.
pub(crate) const POLL_ON_STACK: usize = 16;

/// [`poll_readable`] without the allocator, for at most [`POLL_ON_STACK`] descriptors (more:
/// an error): `ready[i]` says whether `fds[i]` is readable (or closed), for a loop that must
/// write no heap page (the fork server's, whose every write after a fork copies a page its
/// child shares). `None` waits until one is; a timeout returns with none ready once it
/// passed (or at a signal).
pub(crate) fn poll_readable_into(
    fds: &[BorrowedFd<'_>],
    ready: &mut [bool],
    timeout: Option<Duration>,
) -> io::Result<()> {
    let Some(first) = fds.first() else { return Err(io::ErrorKind::InvalidInput.into()) };
    if fds.len() > POLL_ON_STACK || ready.len() < fds.len() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let mut pollfds: [PollFd<'_>; POLL_ON_STACK] =
        std::array::from_fn(|i| PollFd::new(fds.get(i).unwrap_or(first), PollFlags::IN));
    let pollfds = &mut pollfds[..fds.len()];
    let ts = timeout.map(timespec);
    loop {
        match rustix::event::poll(pollfds, ts.as_ref()) {
            Ok(_) => break,
            Err(Errno::INTR) if timeout.is_some() => break,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (r, p) in ready.iter_mut().zip(pollfds.iter()) {
        *r = !p.revents().is_empty();
    }
    Ok(())
}

fn wait_writable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    let mut pollfds = [PollFd::new(&fd, PollFlags::OUT)];
    let ts = timeout.map(timespec);
    match rustix::event::poll(&mut pollfds, ts.as_ref()) {
        Ok(_) | Err(Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A pipe (read end, write end), close-on-exec.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Writes all of `data` to `fd` (a pipe or socket), retrying on interruption.
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => wait_writable(fd, None)?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Writes `line` to the non-blocking pipe `fd` in one write (so at most `PIPE_BUF` bytes:
/// it then goes whole or not at all), waiting for room until `deadline`.
///
/// # Errors
///
/// `InvalidInput` for a line longer than `PIPE_BUF` (nothing written: a part of it would
/// join the next line in the reader's eyes); `TimedOut` when the pipe had no room for it
/// by `deadline` (its reader stopped reading), else what `write` said (`EPIPE`: the
/// reader is gone).
pub(crate) fn write_line_by(fd: BorrowedFd<'_>, line: &[u8], deadline: std::time::Instant) -> io::Result<()> {
    if line.len() > libc::PIPE_BUF {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a line longer than PIPE_BUF is not one atomic write"));
    }
    loop {
        match rustix::io::write(fd, line) {
            Ok(n) if n == line.len() => return Ok(()),
            // Not for a pipe: at most `PIPE_BUF` bytes go whole or not at all.
            Ok(_) => return Err(io::ErrorKind::WriteZero.into()),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                // Ready once there is room; another writer may take it first.
                wait_writable(fd, Some(left))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// How many bytes the pipe `fd` (either end) holds, unread (`FIONREAD`).
pub(crate) fn pipe_held(fd: BorrowedFd<'_>) -> io::Result<usize> {
    Ok(rustix::io::ioctl_fionread(fd)? as usize)
}

/// Reads what is available into `buf` (one `read`); 0 means end of file.
pub(crate) fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads what a socket has into `buf` without waiting (`MSG_DONTWAIT`, so the socket
/// itself may stay blocking): `WouldBlock` when nothing is there, 0 at end of stream.
pub(crate) fn recv_nonblocking(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::net::recv(sock, &mut *buf, RecvFlags::DONTWAIT) {
            Ok((n, _)) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Duplicates `fd` (close-on-exec).
pub(crate) fn dup(fd: impl AsFd) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 0)?)
}

/// How long a TCP connection stays silent before its peer is probed, the time between
/// probes, and how many unanswered probes mean the peer is gone: a peer cut off without
/// FIN or RST (a host that died, a network partition) is found within about 25 s, instead
/// of never for a reader (the kernel sends no keepalive by default).
#[cfg(feature = "remote")]
const KEEPALIVE: (Duration, Duration, u32) = (Duration::from_secs(10), Duration::from_secs(5), 3);

/// Turns on TCP keepalive with short probes ([`KEEPALIVE`]) on a connected TCP socket: a
/// blocked read then fails with `TimedOut` once the peer stops answering.
#[cfg(feature = "remote")]
pub(crate) fn keep_alive(sock: BorrowedFd<'_>) -> io::Result<()> {
    let (idle, interval, probes) = KEEPALIVE;
    rustix::net::sockopt::set_tcp_keepidle(sock, idle)?;
    rustix::net::sockopt::set_tcp_keepintvl(sock, interval)?;
    rustix::net::sockopt::set_tcp_keepcnt(sock, probes)?;
    rustix::net::sockopt::set_socket_keepalive(sock, true)?;
    Ok(())
}

/// Whether the peer of the connected socket `sock` closed its end or reset the connection
/// (`POLLRDHUP`, `POLLHUP`, `POLLERR`), without waiting or reading: `POLLRDHUP` tells the
/// FIN even behind bytes not read yet, which a peek cannot.
#[cfg(feature = "remote")]
pub(crate) fn peer_left(sock: BorrowedFd<'_>) -> bool {
    let mut pollfds = [PollFd::new(&sock, PollFlags::RDHUP)];
    matches!(rustix::event::poll(&mut pollfds, Some(&timespec(Duration::ZERO))), Ok(1..))
}

/// Whether the connected socket `sock` is hung up both ways (`POLLHUP`, `POLLERR`): the
/// peer reset the connection (or it was shut down both ways here), not only closed its
/// end. After a reset a `read` returns 0 as at a FIN once another call (a `write`) took
/// the error, so only this tells the two apart; a FIN alone sets neither.
#[cfg(feature = "remote")]
pub(crate) fn hung_up(sock: BorrowedFd<'_>) -> bool {
    let mut pollfds = [PollFd::new(&sock, PollFlags::empty())];
    matches!(rustix::event::poll(&mut pollfds, Some(&timespec(Duration::ZERO))), Ok(1..))
        && pollfds[0].revents().intersects(PollFlags::HUP | PollFlags::ERR)
}

/// Whether the socket `sock` holds an error no call took yet (`POLLERR`, as after a reset
/// until a `write` or `read` takes it); looks without taking it, unlike `SO_ERROR`.
#[cfg(all(test, feature = "remote"))]
pub(crate) fn error_pending(sock: BorrowedFd<'_>) -> bool {
    let mut pollfds = [PollFd::new(&sock, PollFlags::empty())];
    matches!(rustix::event::poll(&mut pollfds, Some(&timespec(Duration::ZERO))), Ok(1..))
        && pollfds[0].revents().contains(PollFlags::ERR)
}

/// Whether keepalive is on, with the probes of [`keep_alive`].
#[cfg(all(test, feature = "remote"))]
pub(crate) fn kept_alive(sock: BorrowedFd<'_>) -> io::Result<bool> {
    let (idle, interval, probes) = KEEPALIVE;
    Ok(rustix::net::sockopt::socket_keepalive(sock)?
        && rustix::net::sockopt::tcp_keepidle(sock)? == idle
        && rustix::net::sockopt::tcp_keepintvl(sock)? == interval
        && rustix::net::sockopt::tcp_keepcnt(sock)? == probes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The abstract name the server below listens on, when it runs as that server.
    const SERVER: &str = "MULTIPROC_TEST_PEER_CRED_SERVER";

    /// Not a test of its own: the server of the test below, run in a pid namespace of its
    /// own. Takes one connection and prints what `peer_cred` tells of it.
    #[test]
    fn peer_cred_server() {
        let Some(name) = std::env::var_os(SERVER) else { return };
        let listener = listen_abstract(name.to_str().unwrap(), false).unwrap();
        let sock = accept(listener.as_fd()).unwrap();
        let (uid, pid) = peer_cred(sock.as_fd()).unwrap();
        println!("PEER uid={uid} pid={pid}");
    }

    /// A peer whose pid this process cannot see (a process of the parent pid namespace,
    /// seen from a child one) is told with pid 0, its user id as it is. Before, the same 0
    /// came through rustix's non-zero `Pid`: undefined behaviour, which no assertion sees.
    #[test]
    fn a_peer_in_a_pid_namespace_this_one_cannot_see_has_pid_0() {
        use std::io::Read as _;
        let _w = crate::testing::watchdog(Duration::from_secs(120));
        let name = format!("multiproc-test-peer-cred-{}", std::process::id());
        // `unshare` dies with this test process (a watchdog's abort included), killed and
        // reaped at the end of this test (a panic's unwinding included), and takes its
        // server with it (`--kill-child`): a hang orphaned both (review105 L4).
        let mut command = std::process::Command::new("unshare");
        command
            .args(["--pid", "--fork", "--kill-child", "--"])
            .arg(std::env::current_exe().unwrap())
            .args(["sys::os::socket::tests::peer_cred_server", "--exact", "--nocapture", "--test-threads=1"])
            .env(SERVER, &name)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let Ok(server) = crate::sys::spawn_dying_with_parent(&mut command) else {
            eprintln!("skipped: no unshare(1) here");
            return;
        };
        let mut server = crate::testing::KilledOnDrop(server);
        // The server listens at once, or its namespace was refused and it ends.
        let deadline = Instant::now() + Duration::from_secs(60);
        let _sock = loop {
            if let Ok(sock) = connect_abstract(&name, false) {
                break sock;
            }
            if server.0.try_wait().unwrap().is_some() {
                eprintln!("skipped: a pid namespace cannot be made here");
                return;
            }
            assert!(Instant::now() < deadline, "the server neither listened nor ended");
            std::thread::sleep(Duration::from_millis(10));
        };
        // Until the server ends (its stdout closed).
        let mut out = String::new();
        server.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        assert!(out.contains(&format!("PEER uid={} pid=0\n", my_uid())), "{out}");
    }

    /// A peer of this namespace is told with its pid.
    #[test]
    fn a_peer_of_this_namespace_has_its_pid() {
        let name = format!("multiproc-test-peer-cred-own-{}", std::process::id());
        let listener = listen_abstract(&name, false).unwrap();
        let _client = connect_abstract(&name, false).unwrap();
        let sock = accept(listener.as_fd()).unwrap();
        assert_eq!(peer_cred(sock.as_fd()).unwrap(), (my_uid(), std::process::id()));
    }
}
