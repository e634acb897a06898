//! A Redis host's addresses by a deadline.
//!
//! The system's resolver (`getaddrinfo`) cannot be cut short: a name server that takes the
//! query and never answers keeps it waiting `resolv.conf`'s `timeout` × `attempts` per
//! server (10 s by default, minutes where raised), whatever the link's timeout. So a name
//! is resolved on a thread of its own, which the caller waits for until its deadline and
//! then leaves behind (it ends when the resolver gives up). Callers that want the same
//! name and port meanwhile share a lookup under way while it is young (under [`YOUNG`]):
//! one begun while the name server was silent answers only at glibc's next resend, so an
//! older one is left to itself and a fresh one asked, up to [`PER_NAME`] per name and
//! port, after which callers share the youngest. However often a link retries while its
//! name server is silent, a few threads wait on it, never a pile.
//!
//! A thread refuses `Fork` starts while it is listed (`sys::fork_hazard`), so one that
//! answered in time is joined, and the caller waits (briefly) until the kernel no longer
//! lists that thread. Only a lookup left past its deadline is still listed: a `Fork` start meanwhile
//! is refused, typed, where it would otherwise have waited behind the open. An address
//! (`127.0.0.1`, `::1`) needs no resolver and starts no thread.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::link::SLICE;
use crate::shm::TakenIn;
use crate::sys;

/// A lookup younger than this is shared; an older one was sent while its name server may
/// have been silent, and glibc sends a query again only at the end of `resolv.conf`'s
/// `timeout` (5 s by default): a fresh one answers as soon as the server does.
const YOUNG: Duration = SLICE;

/// The most lookups of one `(host, port)` under way at once: past it, callers share the
/// youngest, so a silent name server holds a few threads per name, never a pile.
const PER_NAME: usize = 3;

/// How long a caller waits for the kernel to stop listing a lookup's joined thread.
const UNLISTED: Duration = Duration::from_millis(100);

/// What a lookup found: the addresses, or the resolver's error (kind and text, as every
/// caller waiting on it gets a copy).
type Answer = Result<Vec<SocketAddr>, (io::ErrorKind, String)>;

/// One resolution of a `(host, port)` under way, shared by every caller that wants it.
struct Lookup {
    answer: Mutex<Option<Answer>>,
    answered: Condvar,
    /// The resolving thread, taken by the first caller to join it.
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The resolving thread's id (0 until it runs), which the joiner waits for the kernel
    /// to unlist.
    tid: AtomicI32,
    started: Instant,
    /// The process whose thread resolves: a fork child's copy of the list (a `Fork` start
    /// the program allowed with threads) holds lookups no thread of the child answers.
    made_in: TakenIn,
}

/// Lookups by `(host, port)`, oldest first.
type Lookups = HashMap<(String, u16), Vec<Arc<Lookup>>>;

/// The lookups under way; each is removed by its thread once answered.
static UNDER_WAY: Mutex<Option<Lookups>> = Mutex::new(None);

/// The addresses of `host` (the first of the system's answers first), by `until`:
/// `TimedOut` once it has passed.
pub(crate) fn addresses(host: &str, port: u16, until: Instant) -> io::Result<Vec<SocketAddr>> {
    addresses_sharing(host, port, until, YOUNG)
}

/// [`addresses`], joining a lookup under way if it is younger than `young`.
fn addresses_sharing(host: &str, port: u16, until: Instant, young: Duration) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let Some(lookup) = shared_lookup(host, port, young) else {
        // No thread to be had (the process is at its limit): resolve here, untimed.
        return (host, port).to_socket_addrs().map(Iterator::collect);
    };
    let answer = lookup.wait(until).ok_or_else(|| {
        io::Error::new(io::ErrorKind::TimedOut, format!("no answer from the name servers for {host} by the deadline"))
    })?;
    lookup.join(until);
    answer.map_err(|(kind, why)| io::Error::new(kind, why))
}

/// A lookup of `(host, port)` to wait on: the youngest under way if it is younger than
/// `young` or there are [`PER_NAME`], else a fresh one; `None` if no thread could be
/// started.
fn shared_lookup(host: &str, port: u16, young: Duration) -> Option<Arc<Lookup>> {
    let mut under_way = UNDER_WAY.lock().unwrap_or_else(PoisonError::into_inner);
    let key = (host.to_owned(), port);
    let ours = under_way.get_or_insert_default().entry(key.clone()).or_default();
    if ours.iter().any(|l| !l.made_in.is_here()) {
        // A fork child's copies: no thread of this process answers them. Forgotten, not
        // dropped: each copy's count includes its parent thread's reference, and a copied
        // handle must never be detached here.
        let (here, copied): (Vec<_>, Vec<_>) = std::mem::take(ours).into_iter().partition(|l| l.made_in.is_here());
        copied.into_iter().for_each(std::mem::forget);
        *ours = here;
    }
    if let Some(youngest) = ours.last()
        && (youngest.started.elapsed() < young || ours.len() >= PER_NAME)
    {
        return Some(youngest.clone());
    }
    let lookup = Arc::new(Lookup {
        answer: Mutex::new(None),
        answered: Condvar::new(),
        thread: Mutex::new(None),
        tid: AtomicI32::new(0),
        started: Instant::now(),
        made_in: TakenIn::here(),
    });
    let (theirs, name) = (lookup.clone(), key);
    let thread = std::thread::Builder::new()
        .name("multiproc-resolve".into())
        .spawn(move || {
            theirs.tid.store(sys::this_thread(), Ordering::Relaxed);
            let found = system_addresses(&name).map_err(|e| (e.kind(), e.to_string()));
            // Off the list first: a caller that comes once the answer is out starts afresh.
            let mut under_way = UNDER_WAY.lock().unwrap_or_else(PoisonError::into_inner);
            let lookups = under_way.get_or_insert_default();
            if let Some(ours) = lookups.get_mut(&name) {
                ours.retain(|l| !Arc::ptr_eq(l, &theirs));
                if ours.is_empty() {
                    lookups.remove(&name);
                }
            }
            drop(under_way);
            *theirs.answer.lock().unwrap_or_else(PoisonError::into_inner) = Some(found);
            theirs.answered.notify_all();
        })
        .ok()?;
    *lookup.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
    ours.push(lookup.clone());
    Some(lookup)
}

/// What the system's resolver says of `name` (in lib tests, a name under `.seam` is
/// answered by the tests' stand-in, which can keep it waiting as a silent name server would).
fn system_addresses(name: &(String, u16)) -> io::Result<Vec<SocketAddr>> {
    #[cfg(test)]
    if let Some(found) = tests::seam(name) {
        return found;
    }
    name.to_socket_addrs().map(Iterator::collect)
}

impl Lookup {
    /// The answer, if it comes by `until`.
    fn wait(&self, until: Instant) -> Option<Answer> {
        let mut answer = self.answer.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(found) = answer.as_ref() {
                return Some(found.clone());
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            answer = self.answered.wait_timeout(answer, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Joins the answered lookup's thread (the first caller to come does), then waits
    /// until the kernel no longer lists it (or `until`, or [`UNLISTED`], has passed), so
    /// that a `Fork` start right after the open is not refused for it: `pthread_join`
    /// returns when the thread's id is cleared, a moment before the kernel unlists it.
    fn join(&self, until: Instant) {
        let Some(thread) = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take() else { return };
        let _ = thread.join();
        // Set before the answer was published, which the caller has seen.
        let tid = self.tid.load(Ordering::Relaxed);
        let until = until.min(Instant::now() + UNLISTED);
        while sys::thread_listed(tid) && Instant::now() < until {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name of the stand-in resolver: how many lookups it was asked for, how many of the
    /// first wait (a name server silent then), and whether they are let go.
    #[derive(Default)]
    struct Seam {
        asked: usize,
        waiting: usize,
        let_go: bool,
    }

    static SEAMS: Mutex<Option<HashMap<String, Seam>>> = Mutex::new(None);
    static LET_GO: Condvar = Condvar::new();

    /// The stand-in resolver for names under `.seam`: `127.0.0.1`, once let go if this
    /// lookup is one of the name's first `waiting`.
    pub(super) fn seam(name: &(String, u16)) -> Option<io::Result<Vec<SocketAddr>>> {
        let (host, port) = name;
        if !host.ends_with(".seam") {
            return None;
        }
        let mut seams = SEAMS.lock().unwrap();
        let seam = seams.get_or_insert_default().entry(host.clone()).or_default();
        seam.asked += 1;
        let waits = seam.asked <= seam.waiting;
        while waits && !seams.as_ref().unwrap()[host].let_go {
            seams = LET_GO.wait(seams).unwrap();
        }
        Some(Ok(vec![SocketAddr::from(([127, 0, 0, 1], *port))]))
    }

    /// Makes the first `waiting` lookups of `host` wait until [`let_go`].
    fn silent_for(host: &str, waiting: usize) {
        SEAMS.lock().unwrap().get_or_insert_default().insert(host.into(), Seam { waiting, ..Seam::default() });
    }

    /// Lets `host`'s waiting lookups answer, and waits until none is under way; how many
    /// lookups of it there were.
    fn let_go(host: &str) -> usize {
        let mut seams = SEAMS.lock().unwrap();
        let seam = seams.as_mut().unwrap().get_mut(host).unwrap();
        seam.let_go = true;
        let asked = seam.asked;
        drop(seams);
        LET_GO.notify_all();
        let key = (host.to_owned(), 7);
        let since = Instant::now();
        while UNDER_WAY.lock().unwrap().as_ref().is_some_and(|m| m.contains_key(&key)) {
            assert!(since.elapsed() < Duration::from_secs(30), "{host}'s lookups did not end once let go");
            std::thread::sleep(Duration::from_millis(1));
        }
        asked
    }

    /// A lookup begun while the name server was silent is not joined once it is old: a
    /// later open starts its own, which answers as soon as the server does (glibc sends the
    /// old query again only at the end of `resolv.conf`'s `timeout`). (Before, every open
    /// joined the old lookup and failed at its deadline until that resend: review96 M1.)
    #[test]
    fn an_open_after_a_lookup_has_grown_old_asks_afresh() {
        silent_for("blip.seam", 1);
        let e = addresses("blip.seam", 7, Instant::now() + Duration::from_millis(50)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        std::thread::sleep(YOUNG + Duration::from_millis(100));
        let found = addresses("blip.seam", 7, Instant::now() + Duration::from_secs(10));
        assert_eq!(let_go("blip.seam"), 2, "a fresh lookup");
        assert_eq!(found.unwrap(), vec![SocketAddr::from(([127, 0, 0, 1], 7))]);
    }

    /// An address is its own answer; a hosts entry is resolved, and its lookup is no longer
    /// under way once the answer is back.
    #[test]
    fn an_address_is_its_own_answer_and_a_names_lookup_ends_with_its_answer() {
        let until = Instant::now() + Duration::from_secs(30);
        assert_eq!(addresses("127.0.0.1", 7, until).unwrap(), vec![SocketAddr::from(([127, 0, 0, 1], 7))]);
        assert_eq!(addresses("::1", 7, until).unwrap(), vec![SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 7))]);
        let found = addresses("localhost", 7, until).unwrap();
        assert!(found.iter().all(|a| a.ip().is_loopback() && a.port() == 7), "{found:?}");
        assert!(UNDER_WAY.lock().unwrap().as_ref().is_none_or(|m| !m.contains_key(&("localhost".into(), 7))));
    }

    /// Callers of a young lookup share it, whatever its age at their deadline, and each
    /// is left behind at its own deadline, `TimedOut`.
    #[test]
    fn callers_of_a_young_lookup_share_it_and_each_leaves_it_at_its_deadline() {
        silent_for("shared.seam", usize::MAX);
        for _ in 0..5 {
            let until = Instant::now() + Duration::from_millis(20);
            let e = addresses_sharing("shared.seam", 7, until, Duration::from_secs(3600)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
            assert!(Instant::now() >= until, "left before its deadline");
        }
        assert_eq!(let_go("shared.seam"), 1, "one lookup for every caller");
    }

    /// However old the lookups under way, a name has at most `PER_NAME` of them: later
    /// callers share the youngest.
    #[test]
    fn a_silent_name_server_holds_at_most_a_few_lookups_per_name() {
        silent_for("capped.seam", usize::MAX);
        for _ in 0..PER_NAME + 3 {
            let e = addresses_sharing("capped.seam", 7, Instant::now() + Duration::from_millis(20), Duration::ZERO)
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        }
        assert_eq!(let_go("capped.seam"), PER_NAME);
    }

    /// A name that does not resolve is the resolver's error, not a timeout. (An empty
    /// label, which glibc refuses without asking a name server: the test needs no DNS.)
    #[test]
    fn a_name_that_does_not_resolve_is_the_resolvers_error() {
        let e = addresses("a..invalid", 7, Instant::now() + Duration::from_secs(30)).unwrap_err();
        assert_ne!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    }
}
