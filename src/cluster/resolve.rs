//! A Redis host's addresses by a deadline.
//!
//! The system's resolver (`getaddrinfo`) cannot be cut short: a name server that takes the
//! query and never answers keeps it waiting `resolv.conf`'s `timeout` × `attempts` per
//! server (10 s by default, minutes where raised), whatever the link's timeout. So a name
//! is resolved on a thread of its own, which the caller waits for until its deadline and
//! then leaves behind (it ends when the resolver gives up). Callers that want the same
//! name meanwhile wait for that one lookup: however often a link retries while its name
//! server is silent, one thread per name waits on it.
//!
//! A thread refuses `Fork` starts while it is listed (`sys::fork_hazard`), so one that
//! answered in time is joined, and the caller waits (briefly) until the kernel no longer
//! lists it. Only a lookup left past its deadline is still listed: a `Fork` start meanwhile
//! is refused, typed, where it would otherwise have waited behind the open. An address
//! (`127.0.0.1`, `::1`) needs no resolver and starts no thread.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::shm::TakenIn;
use crate::sys;

/// A lookup younger than this is shared.
const YOUNG: Duration = Duration::from_secs(1);

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
    /// The threads the process had before this one started, which the joiner waits for
    /// the count to come back to.
    threads_before: usize,
    /// The process whose thread resolves: a fork child's copy of the list (a `Fork` start
    /// the program allowed with threads) holds lookups no thread of the child answers.
    made_in: TakenIn,
}

/// Lookups by `(host, port)`.
type Lookups = HashMap<(String, u16), Arc<Lookup>>;

/// The lookups under way; each is removed by its thread once answered.
static UNDER_WAY: Mutex<Option<Lookups>> = Mutex::new(None);

/// The addresses of `host` (the first of the system's answers first), by `until`:
/// `TimedOut` once it has passed.
pub(crate) fn addresses(host: &str, port: u16, until: Instant) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let Some(lookup) = shared_lookup(host, port) else {
        // No thread to be had (the process is at its limit): resolve here, untimed.
        return (host, port).to_socket_addrs().map(Iterator::collect);
    };
    let answer = lookup.wait(until).ok_or_else(|| {
        io::Error::new(io::ErrorKind::TimedOut, format!("no answer from the name servers for {host} by the deadline"))
    })?;
    lookup.join();
    answer.map_err(|(kind, why)| io::Error::new(kind, why))
}

/// The lookup of `(host, port)` under way, started if there is none; `None` if no thread
/// could be started.
fn shared_lookup(host: &str, port: u16) -> Option<Arc<Lookup>> {
    let mut under_way = UNDER_WAY.lock().unwrap_or_else(PoisonError::into_inner);
    let key = (host.to_owned(), port);
    if let Some(lookup) = under_way.get_or_insert_default().get(&key)
        && lookup.made_in.is_here()
    {
        return Some(lookup.clone());
    }
    let lookup = Arc::new(Lookup {
        answer: Mutex::new(None),
        answered: Condvar::new(),
        thread: Mutex::new(None),
        threads_before: sys::fork_hazard_ignoring_opt_in().unwrap_or(1),
        made_in: TakenIn::here(),
    });
    let (theirs, name) = (lookup.clone(), key.clone());
    let thread = std::thread::Builder::new()
        .name("multiproc-resolve".into())
        .spawn(move || {
            let found = system_addresses(&name).map_err(|e| (e.kind(), e.to_string()));
            // Off the list first: a caller that comes once the answer is out starts afresh.
            let mut under_way = UNDER_WAY.lock().unwrap_or_else(PoisonError::into_inner);
            under_way.get_or_insert_default().remove(&name);
            drop(under_way);
            *theirs.answer.lock().unwrap_or_else(PoisonError::into_inner) = Some(found);
            theirs.answered.notify_all();
        })
        .ok()?;
    *lookup.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
    under_way.get_or_insert_default().insert(key, lookup.clone());
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

    /// Joins the answered lookup's thread (the first caller to come does), then waits until
    /// the kernel lists no more threads than before it, so that a `Fork` start right after
    /// the open is not refused for it: `pthread_join` returns when the thread's id is
    /// cleared, a moment before the kernel unlists it.
    fn join(&self) {
        let Some(thread) = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take() else { return };
        let _ = thread.join();
        let since = Instant::now();
        while sys::fork_hazard_ignoring_opt_in().unwrap_or(1) > self.threads_before && since.elapsed() < UNLISTED {
            std::thread::yield_now();
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

    /// A name that does not resolve is the resolver's error, not a timeout.
    #[test]
    fn a_name_that_does_not_resolve_is_the_resolvers_error() {
        let e = addresses("no-such-host.invalid", 7, Instant::now() + Duration::from_secs(30)).unwrap_err();
        assert_ne!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    }
}
