//! An epoll set, for the waker thread that watches descriptors (a child's pidfd) on behalf
//! of futures.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll;
use rustix::io::Errno;

/// Descriptors watched for readability, one-shot, each under a key.
#[derive(Debug)]
pub(crate) struct Poller {
    epoll: OwnedFd,
}

impl Poller {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self { epoll: epoll::create(epoll::CreateFlags::CLOEXEC)? })
    }

    /// Watches a duplicate of `fd` (so that one descriptor may be watched for several
    /// keys at once) until it is readable once; the duplicate is the caller's to
    /// [`Poller::remove`].
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, key: u64) -> io::Result<OwnedFd> {
        let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0)?;
        epoll::add(
            &self.epoll,
            &dup,
            epoll::EventData::new_u64(key),
            epoll::EventFlags::IN | epoll::EventFlags::ONESHOT,
        )?;
        Ok(dup)
    }

    /// Stops watching a duplicate made by [`Poller::add`] (then drop it).
    pub(crate) fn remove(&self, dup: &OwnedFd) {
        let _ = epoll::delete(&self.epoll, dup);
    }

    /// Waits until a watched descriptor is readable or `timeout` passes; the keys ready.
    pub(crate) fn wait(&self, timeout: Duration) -> Vec<u64> {
        let mut events = Vec::with_capacity(64);
        let ts = super::timespec(timeout);
        match epoll::wait(&self.epoll, rustix::buffer::spare_capacity(&mut events), Some(&ts)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
        events.iter().map(|e| e.data.u64()).collect()
    }
}
