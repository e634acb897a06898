//! [`wait`]: waits until one of several connections, queues or processes is ready (Python's
//! `multiprocessing.connection.wait`).

#[path = "wait_async.rs"]
mod wait_async;
pub use wait_async::{WaitFuture, wait_async};

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::channel::Channel;
use super::pipe::Connection;
use super::{JoinableQueue, Queue, SimpleQueue};
use crate::ProcessHandle;
use crate::shm::{Deadline, FIRST_SLICE, MAX_SLICE, Ring, SPIN, Watch, spin_for};
use crate::sys;

/// Something [`wait`] can wait for: a [`Connection`] (ready when a message is waiting or
/// the other end is gone), a [`Queue`], [`SimpleQueue`] or [`JoinableQueue`] (ready when
/// not empty, when shut down, or when no other handle exists), a [`ProcessHandle`] (ready
/// when the process has ended), or a file descriptor (ready when readable). A closed
/// handle, or a send-only end, is ready at once: its receive fails at once with `Closed`.
/// Sealed: the crate's types only.
///
/// ```
/// use multiproc::{Pipe, Queue, Waitable, wait};
///
/// multiproc::init();
/// let (a, b) = Pipe::<u8>::new()?;
/// let q = Queue::<u8>::new()?;
/// let _keep = q.clone();
/// let watched: [&dyn Waitable; 2] = [&a, &q];
/// b.send(1)?;
/// assert_eq!(wait(&watched, None), [0]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub trait Waitable: sealed::Sealed {}

pub(crate) mod sealed {
    /// Keeps [`Waitable`](super::Waitable) for the crate's types.
    pub trait Sealed {
        /// How to wait for it.
        fn source(&self) -> Source<'_>;
    }

    /// How [`wait`](super::wait) watches one object.
    pub struct Source<'a>(pub(crate) super::Inner<'a>);

    impl std::fmt::Debug for Source<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(match self.0 {
                super::Inner::Ring { .. } => "Source::Ring",
                super::Inner::Fd { .. } => "Source::Fd",
                super::Inner::Refused => "Source::Refused",
            })
        }
    }
}

use sealed::{Sealed, Source};

pub(crate) enum Inner<'a> {
    /// A ring to take from: ready when not empty or when the other side `left` (cheap);
    /// after a sleep, also when it is `gone` (may read `/proc`).
    Ring { ring: &'a Ring, left: Box<dyn Fn() -> bool + 'a>, gone: Box<dyn Fn() -> bool + 'a> },
    /// A descriptor: ready when readable, or when `ended` says so.
    Fd { fd: BorrowedFd<'a>, ended: Box<dyn Fn() -> bool + 'a> },
    /// Ready at once: a receive, get or accept there fails at once (a closed handle, a
    /// send-only end), and the call says why.
    Refused,
}

fn queue_source<T>(ch: Option<&Channel<T>>) -> Source<'_> {
    Source(match ch {
        Some(ch) => {
            Inner::Ring {
                ring: ch.ring(),
                // A shut-down queue is ready: a get ends at once (with an item or `ShutDown`).
                left: Box::new(|| ch.is_shut_down()),
                gone: Box::new(|| !ch.shared().other_handles()),
            }
        }
        None => Inner::Refused,
    })
}

impl<T> Sealed for Queue<T> {
    fn source(&self) -> Source<'_> {
        queue_source(self.channel())
    }
}
impl<T> Waitable for Queue<T> {}

impl<T> Sealed for SimpleQueue<T> {
    fn source(&self) -> Source<'_> {
        queue_source(self.channel())
    }
}
impl<T> Waitable for SimpleQueue<T> {}

impl<T> Sealed for JoinableQueue<T> {
    fn source(&self) -> Source<'_> {
        queue_source(self.channel())
    }
}
impl<T> Waitable for JoinableQueue<T> {}

impl<T> Sealed for Connection<T> {
    fn source(&self) -> Source<'_> {
        Source(match self.receiving() {
            Some((ring, peer)) => Inner::Ring {
                ring,
                left: Box::new(move || peer.left().is_some()),
                gone: Box::new(move || peer.check().is_err()),
            },
            None => Inner::Refused,
        })
    }
}
impl<T> Waitable for Connection<T> {}

impl<R: DeserializeOwned> Sealed for ProcessHandle<R> {
    fn source(&self) -> Source<'_> {
        Source(Inner::Fd { fd: self.sentinel(), ended: Box::new(|| !self.is_alive()) })
    }
}
impl<R: DeserializeOwned> Waitable for ProcessHandle<R> {}

impl Sealed for BorrowedFd<'_> {
    fn source(&self) -> Source<'_> {
        Source(Inner::Fd { fd: self.as_fd(), ended: Box::new(|| false) })
    }
}
impl Waitable for BorrowedFd<'_> {}

/// Waits until at least one of `objects` is ready, or `timeout` passes (`None`: no
/// timeout; `Some(Duration::ZERO)`: look once); returns the indices of the ready ones, in
/// order (empty on timeout). Python's `multiprocessing.connection.wait`, which returns the
/// objects themselves.
///
/// A connection is ready when a receive would not block: a message is waiting, or the other
/// end is gone. A queue is ready when it is not empty, or when no other handle to it exists
/// (a `get` would fail at once). A process is ready once it has ended; a descriptor, when
/// readable. A closed handle or a send-only end is ready at once (the receive or get that
/// follows fails at once with `Closed`; Python's `wait` raises `OSError`). An empty slice
/// returns an empty list at once, whatever the timeout.
/// Waiting costs no CPU after a short spin: connections and queues are watched
/// through their futexes, descriptors by a helper thread when both kinds are mixed.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use multiproc::{Connection, Pipe, Process, wait};
///
/// fn reply(conn: Connection<u32>) {
///     std::thread::sleep(Duration::from_millis(50));
///     conn.send(7).unwrap();
/// }
///
/// multiproc::init();
/// let (a, theirs_a) = Pipe::new()?;
/// let (b, theirs_b) = Pipe::<u32>::new()?;
/// let child = Process::new(reply, theirs_a).start()?;
/// let ready = wait(&[&a, &b, &child], None);
/// assert!(ready.contains(&0));
/// assert_eq!(a.recv()?, 7);
/// # drop(theirs_b);
/// child.join()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.connection.wait")]
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Vec<usize> {
    let deadline = Deadline::from_timeout(timeout);
    let sources: Vec<Inner<'_>> = objects.iter().map(|o| o.source().0).collect();
    if sources.is_empty() {
        // Nothing here can ever become ready: waiting would be forever.
        return Vec::new();
    }
    let fds: Vec<(usize, BorrowedFd<'_>)> = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Inner::Fd { fd, .. } => Some((i, *fd)),
            _ => None,
        })
        .collect();
    let rings: Vec<usize> =
        sources.iter().enumerate().filter(|(_, s)| matches!(s, Inner::Ring { .. })).map(|(i, _)| i).collect();

    let ring_ready = |i: usize| match &sources[i] {
        Inner::Ring { ring, left, .. } => !ring.is_empty() || left(),
        _ => false,
    };
    // Everything that is ready now (reads the descriptors and asks the processes).
    // Ready at once, and for good (`close` takes `&mut`): the first look returns them.
    let refused: Vec<usize> =
        sources.iter().enumerate().filter(|(_, s)| matches!(s, Inner::Refused)).map(|(i, _)| i).collect();
    let look = || -> Vec<usize> {
        let mut ready: Vec<usize> = rings.iter().copied().filter(|&i| ring_ready(i)).collect();
        ready.extend_from_slice(&refused);
        if !fds.is_empty() {
            let list: Vec<BorrowedFd<'_>> = fds.iter().map(|(_, fd)| *fd).collect();
            let readable = sys::poll_readable(&list, Some(Duration::ZERO)).unwrap_or_else(|_| vec![true; list.len()]);
            for ((i, _), readable) in fds.iter().zip(readable) {
                let ended = || matches!(&sources[*i], Inner::Fd { ended, .. } if ended());
                if readable || ended() {
                    ready.push(*i);
                }
            }
        }
        ready.sort_unstable();
        ready
    };

    let ready = look();
    if !ready.is_empty() || deadline.passed() {
        return ready;
    }
    if !rings.is_empty()
        && spin_for(deadline.slice(SPIN), || rings.iter().any(|&i| ring_ready(i)).then_some(())).is_some()
    {
        return look();
    }
    if rings.is_empty() {
        // Descriptors only: poll them, asking the processes now and then.
        let list: Vec<BorrowedFd<'_>> = fds.iter().map(|(_, fd)| *fd).collect();
        loop {
            let _ = sys::poll_readable(&list, Some(deadline.slice(MAX_SLICE)));
            let ready = look();
            if !ready.is_empty() || deadline.passed() {
                return ready;
            }
        }
    }
    // Descriptors and futexes together: a helper thread polls the descriptors and rings a
    // futex of ours, so that one futex_waitv sleeps on everything.
    let fd_ready = AtomicU32::new(0);
    let cancel = if fds.is_empty() { None } else { sys::pipe().ok() };
    std::thread::scope(|scope| {
        // The helper ends once it saw a descriptor readable. Started again when the look
        // after it found nothing (aud81 L4): another thread took that readiness (read the
        // byte, accepted the client) first, and the flag left set would make every futex
        // wait return at once, a spin with the descriptors watched by nobody.
        let helper = || {
            if let Some((cancel_rx, _)) = &cancel {
                let (list, fd_ready, cancel_rx) = (&fds, &fd_ready, cancel_rx.as_fd());
                scope.spawn(move || {
                    let mut all: Vec<BorrowedFd<'_>> = list.iter().map(|(_, fd)| *fd).collect();
                    all.push(cancel_rx);
                    let readable = sys::poll_readable(&all, None).unwrap_or_else(|_| vec![true; all.len()]);
                    if readable[..all.len() - 1].iter().any(|r| *r) {
                        fd_ready.store(1, Ordering::SeqCst);
                        sys::futex_wake(fd_ready, 1);
                    }
                });
            }
        };
        helper();
        let mut slice = FIRST_SLICE;
        let ready = loop {
            let mut words: Vec<(&AtomicU32, u32)> = rings
                .iter()
                .filter_map(|&i| match &sources[i] {
                    Inner::Ring { ring, .. } => Some(ring.readable().start_sleeping()),
                    _ => None,
                })
                .collect();
            if cancel.is_some() {
                words.push((&fd_ready, 0));
            }
            // Look again after announcing ourselves: a put that came before sees us asleep
            // and rings, or we see its message now.
            let now = rings.iter().any(|&i| ring_ready(i)) || fd_ready.load(Ordering::SeqCst) != 0;
            let woken = now || sys::futex_waitv(&words, Some(deadline.slice(slice))) != sys::FutexWaitv::TimedOut;
            for &i in &rings {
                if let Inner::Ring { ring, .. } = &sources[i] {
                    ring.readable().stop_sleeping();
                }
            }
            crate::shm::crash::interleave("woken");
            // Read before the look: a readiness the helper saw after it is looked at next
            // turn (the flag stays set), not lost by the reset below.
            let helper_ended = fd_ready.load(Ordering::SeqCst) != 0;
            let ready = look();
            if !ready.is_empty() {
                break ready;
            }
            if deadline.passed() {
                break Vec::new();
            }
            if helper_ended {
                fd_ready.store(0, Ordering::SeqCst);
                helper();
            }
            if !woken {
                // A sleep lasted: is any other side gone (or a message there that the
                // counters do not show, after a crash)?
                let gone: Vec<usize> = rings
                    .iter()
                    .copied()
                    .filter(
                        |&i| matches!(&sources[i], Inner::Ring { ring, gone, .. } if ring.holds_message() || gone()),
                    )
                    .collect();
                if !gone.is_empty() {
                    break gone;
                }
                slice = (slice * 2).min(MAX_SLICE);
            }
        };
        if let Some((_, cancel_tx)) = &cancel {
            let _ = sys::write_all(cancel_tx.as_fd(), &[1]);
        }
        ready
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::shm::crash::interleaving;

    /// aud81 L4: the helper thread that polls the descriptors of a mixed wait sets its flag
    /// and ends once one is readable. Another thread that takes the readiness (reads the
    /// byte) before the waiter looks left the flag set and nobody polling: every futex
    /// wait returned at once, a spin until the deadline (with none, for ever). The move
    /// here reads the byte as the waiter wakes.
    #[test]
    fn a_descriptor_readiness_taken_by_another_thread_leaves_the_wait_asleep() {
        let _serial = crate::shm::heap_test_lock();
        let q: Queue<u8> = Queue::new().unwrap();
        let _other = q.clone();
        let (r, w) = sys::pipe().unwrap();
        let mut reader = std::fs::File::from(r.try_clone().unwrap());
        let mut writer = std::fs::File::from(w);
        let turns = Arc::new(AtomicU32::new(0));
        let counted = turns.clone();
        let fd = r.as_fd();
        let writes = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            writer.write_all(&[1]).unwrap();
            writer
        });
        let moves = move |at: &'static str| {
            if at == "woken" && counted.fetch_add(1, Ordering::Relaxed) < 1000 {
                // Taken by another thread before the waiter looks (once there, at most).
                if sys::poll_readable(&[reader.as_fd()], Some(Duration::ZERO)).unwrap()[0] {
                    reader.read_exact(&mut [0]).unwrap();
                }
            }
        };
        let ready = interleaving(moves, || wait(&[&q, &fd], Some(Duration::from_millis(400))));
        drop(writes.join().unwrap());
        let turns = turns.load(Ordering::Relaxed);
        assert!(ready.is_empty(), "{ready:?}");
        assert!(turns < 100, "the waiter woke {turns} times in 400 ms with nothing ready: a spin");
    }
}
