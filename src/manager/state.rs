//! What a local manager keeps in the family heap: the server's inbox and status
//! ([`ManagerState`]), each client thread's reply ring ([`ReplyState`]), and the family
//! tokens that hold proxies' references ([`TokenState`]).
//!
//! A request of a family client is a message on the server's ring (tagged with the
//! client's connection number); its answer comes back on the client's own reply ring.
//! Both sides spin a little before they sleep, so a round trip costs a few microseconds
//! while the two are busy.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::protocol::{Kind, ObjectId};
use crate::codec;
use crate::queue::{Undecoded, settle_decoded};
use crate::shm::{Deadline, Embedded, Heap, HeapFull, Limits, Notify, Patient, Ring, Shared, ShmObject, kind};
use crate::sys::{self, Packed};

/// `ManagerState::call_timeout_ns` of no call timeout: a timeout's nanoseconds saturate
/// there (584 years, as good as none), so every other value, 0 included, is the one given.
const NO_CALL_TIMEOUT: u64 = u64::MAX;

/// The tag of control messages on the server's ring (connection numbers start at 1).
pub(crate) const CONTROL: u32 = 0;
/// Connection numbers must fit a ring tag.
pub(crate) const MAX_CONN: u32 = crate::shm::TAG_MASK;

/// How long a new connection waits for a number given back when every one is taken.
const REUSE_WAIT: Duration = Duration::from_secs(1);

pub(crate) const STARTING: u32 = 0;
pub(crate) const READY: u32 = 1;
/// Shut down, or failed to start.
pub(crate) const CLOSED: u32 = 2;

/// The server's side of a local manager.
#[derive(crate::ShmSafe)]
#[repr(C)]
pub(crate) struct ManagerState {
    /// Requests of every family client, and control messages.
    pub(crate) requests: Ring,
    pub(crate) status: AtomicU32,
    pub(crate) server_pid: AtomicU32,
    pub(crate) server_start: AtomicU64,
    pub(crate) next_conn: AtomicU32,
    /// Numbers of family connections the server forgot, to be taken again (each message
    /// empty, its tag the number): numbers are 24 bits (a ring's tag), and a family whose
    /// threads took a fresh one each would have none left after 16,777,214 threads.
    pub(crate) free_conns: Ring,
    /// The TCP port the server listens on (0: none).
    pub(crate) port: AtomicU32,
    /// Rung when `status` changes.
    pub(crate) changed: Notify,
    /// Every family client's call timeout in nanoseconds ([`NO_CALL_TIMEOUT`]: none); see
    /// `ManagerBuilder::call_timeout`.
    call_timeout_ns: AtomicU64,
}

impl ShmObject for ManagerState {
    const KIND: u32 = kind::MANAGER;

    fn destroy(&self, heap: &Heap) {
        // Control messages may hold reply rings: release them with the ring.
        drain::<Control>(&self.requests, |tag| tag == CONTROL);
        self.requests.destroy(heap);
        self.free_conns.destroy(heap);
    }
}

impl ManagerState {
    pub(crate) fn new() -> Result<Self, HeapFull> {
        Ok(Self {
            requests: Ring::new(Limits::default()),
            status: AtomicU32::new(STARTING),
            server_pid: AtomicU32::new(0),
            server_start: AtomicU64::new(0),
            next_conn: AtomicU32::new(1),
            free_conns: Ring::new(Limits::default()),
            port: AtomicU32::new(0),
            changed: Notify::new(),
            call_timeout_ns: AtomicU64::new(NO_CALL_TIMEOUT),
        })
    }

    /// Sets the family clients' call timeout (before the manager is shared).
    pub(crate) fn set_call_timeout(&self, timeout: Option<Duration>) {
        let nanos = timeout.map_or(NO_CALL_TIMEOUT, crate::shm::saturating_nanos);
        self.call_timeout_ns.store(nanos, Ordering::Relaxed);
    }

    /// The family clients' call timeout: the one given (a zero one fails its calls saying
    /// 0 ns, as a remote client's), but past 584 years, which is none.
    pub(crate) fn call_timeout(&self) -> Option<Duration> {
        match self.call_timeout_ns.load(Ordering::Relaxed) {
            NO_CALL_TIMEOUT => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// Opens the rings of a new state, before any other process can reach it.
    pub(crate) fn open(&self) -> Result<(), HeapFull> {
        self.requests.open()?;
        self.free_conns.open()
    }

    /// A connection number for a new client: one the server forgot, else a fresh one.
    pub(crate) fn new_conn(&self) -> Option<u32> {
        if let Some(conn) = self.reused_conn(Deadline::now()) {
            return Some(conn);
        }
        // Past the last number, no more counting: the counter must never wrap round to
        // numbers connections still use.
        if self.next_conn.load(Ordering::Relaxed) < MAX_CONN {
            let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
            if conn != CONTROL && conn < MAX_CONN {
                return Some(conn);
            }
        }
        // Every number is taken: connections that ended give theirs back once the server
        // reads their goodbye, which may be on its way.
        self.reused_conn(Deadline::after(REUSE_WAIT))
    }

    /// A number of the free list, waiting until `deadline` for one.
    fn reused_conn(&self, deadline: Deadline) -> Option<u32> {
        self.free_conns.get(deadline, &Patient, |_, tag| tag).ok().filter(|&conn| conn != CONTROL && conn < MAX_CONN)
    }

    /// The server forgot family connection `conn`: another may take its number.
    pub(crate) fn free_conn(&self, conn: u32) {
        let _ = self.free_conns.put_bytes(&[], conn, Deadline::NEVER, &Patient);
    }

    /// Whether the server said it is done.
    pub(crate) fn closed(&self) -> bool {
        self.status.load(Ordering::Acquire) == CLOSED
    }

    /// Whether the server's process still runs (reads `/proc`).
    pub(crate) fn server_alive(&self) -> bool {
        let pid = self.server_pid.load(Ordering::Acquire);
        pid != 0 && sys::process_alive(pid, self.server_start.load(Ordering::Acquire))
    }

    /// Marks the server's status and wakes whoever waits on it.
    pub(crate) fn set_status(&self, status: u32) {
        self.status.store(status, Ordering::Release);
        self.changed.notify_all();
        self.requests.wake_all();
    }

    /// Sends a control message to the server (never blocks: the ring is unbounded).
    /// Messages without handles are encoded without touching thread-locals, so that they
    /// can be sent from a thread-local's destructor (a connection closing as its thread
    /// ends, a token whose last proxy lived in a thread-local).
    pub(crate) fn post(&self, message: &Control) -> Result<(), crate::Error> {
        if !matches!(message, Control::Hello { .. }) {
            let mut bytes = Vec::new();
            codec::encode_untracked(message, &mut bytes)?;
            return self
                .requests
                .put_bytes(&bytes, CONTROL, Deadline::NEVER, &Patient)
                .map_err(|refused| crate::Error::Io(std::io::Error::other(format!("{refused:?}"))));
        }
        let encoded = codec::encode_own(message)?;
        if encoded.has_handles() {
            self.requests.mark_handles();
        }
        match self.requests.put_bytes(&encoded.bytes, CONTROL, Deadline::NEVER, &Patient) {
            Ok(()) => {
                encoded.sent();
                Ok(())
            }
            Err(refused) => Err(crate::Error::Io(std::io::Error::other(format!("{refused:?}")))),
        }
    }
}

/// A family client thread's reply ring.
#[derive(crate::ShmSafe)]
#[repr(C)]
pub(crate) struct ReplyState {
    pub(crate) ring: Ring,
}

impl ShmObject for ReplyState {
    const KIND: u32 = kind::MANAGER_REPLIES;

    fn destroy(&self, heap: &Heap) {
        // Answers never read may hold tokens: release them.
        drain::<super::link::LocalReply>(&self.ring, |_| true);
        self.ring.destroy(heap);
    }
}

/// One reference to a server object, held by the family: proxies hold handles to a token,
/// and when the family's last handle goes, the token tells the server.
#[derive(crate::ShmSafe)]
#[repr(C)]
pub(crate) struct TokenState {
    pub(crate) id: AtomicU64,
    pub(crate) kind: AtomicU32,
    manager: Embedded<ManagerState>,
}

impl ShmObject for TokenState {
    const KIND: u32 = kind::MANAGER_TOKEN;

    fn destroy(&self, _heap: &Heap) {
        if let Some(manager) = self.manager.take() {
            // A manager that is gone reads nothing; the message goes with its ring.
            let _ = manager.post(&Control::Release { id: self.id.load(Ordering::Relaxed) });
        }
    }
}

impl TokenState {
    /// A token for one reference to object `id` of `manager`.
    pub(crate) fn new(manager: &Shared<ManagerState>, id: ObjectId, kind: Kind) -> Self {
        Self { id: AtomicU64::new(id), kind: AtomicU32::new(kind as u32), manager: Embedded::new(manager) }
    }

    pub(crate) fn id(&self) -> ObjectId {
        self.id.load(Ordering::Relaxed)
    }

    /// Takes the token's reference over: its last handle then tells the server nothing.
    /// For the server taking back an answer a dead client never read (its tokens are the
    /// only handles, the message's: each answer's references get fresh tokens), whose
    /// references go back to the item they came from.
    pub(crate) fn disarm(&self) {
        drop(self.manager.take());
    }

    pub(crate) fn kind_code(&self) -> u32 {
        self.kind.load(Ordering::Relaxed)
    }
}

/// A message from a family process to the server, besides requests.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Control {
    /// A client thread connects; answers go to `replies`.
    Hello { conn: u32, replies: Shared<ReplyState>, pid: u32, start: u64 },
    /// A client thread is done with its connection; `abandoned_from` when a call on it
    /// failed after it was sent (it timed out, or its ping could not be put): that call's
    /// sequence number (what the server grants it, or a later request, is nobody's; what
    /// earlier calls took is its process's as after any goodbye).
    Bye { conn: u32, abandoned_from: Option<u64> },
    /// A registered type's constructor, as a runner of this binary.
    Register { name: String, runner: Packed },
    /// The family's last handle of a token went.
    Release { id: ObjectId },
    /// Stop serving.
    Shutdown,
    /// A remote connection passed authentication (posted by the server's own threads).
    RemoteOpened { conn: u32 },
    /// A remote connection ended; `broken`: its stream failed (a reset, also one whose
    /// error its writer took first and which then read as an end; a read error), and its
    /// socket was shut down both ways, so its writer writes nothing more.
    RemoteClosed { conn: u32, broken: bool },
    /// A worker of the server finished a registered type's call (posted by the server's
    /// own threads): the dispatcher takes what the workers finished (`Workers::take_done`).
    Worked,
}

/// Decodes a message written by `codec::encode_own` inside a take from a ring that
/// `handles` says ever carried handles (only then are the handles read noted: a ring
/// without them pays nothing); once the message is taken, [`settle_decoded`] gives back
/// the handles a failed decoding did not read (F7), as for a queue's messages.
#[inline]
pub(crate) fn decode_own_taken<T: DeserializeOwned>(bytes: &[u8], handles: bool) -> Result<T, Undecoded> {
    if !handles {
        return codec::decode_own::<T>(bytes).map_err(|error| Box::new((error, None)));
    }
    let mut read = Vec::new();
    codec::noting_reads(&mut read, || codec::decode_own::<T>(bytes))
        .map_err(|error| Box::new((error, Some((bytes.to_vec(), read)))))
}

/// Takes and drops every message left in `ring` that `wanted` says may hold handles, so
/// that the handles are released.
pub(crate) fn drain<T: DeserializeOwned>(ring: &Ring, wanted: impl Fn(u32) -> bool) {
    // An empty ring (the usual case) is left without decoding anything, which matters in a
    // thread-local's destructor, where the codec's own thread-locals may be gone.
    if !ring.ever_had_handles() || ring.is_empty() {
        return;
    }
    while let Ok(message) =
        ring.get(Deadline::now(), &Patient, |bytes, tag| wanted(tag).then(|| decode_own_taken::<T>(bytes, true)))
    {
        if let Some(decoded @ Err(_)) = message {
            let _ = settle_decoded(decoded);
        }
    }
}
