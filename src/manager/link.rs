//! How a proxy reaches its server, and how values with proxies inside travel.
//!
//! A proxy is an object id, a kind, and a [`Link`]: for a local manager, a handle to the
//! manager's shared state and a family token (one counted reference); for a remote one, a
//! counted reference handed to this process's TCP connection. Every thread of a family
//! process gets its own connection to each local manager it uses: a reply ring in shared
//! memory, on which it spins briefly and then sleeps while the server works.
//!
//! # Values holding proxies
//!
//! A value sent to the server (a dict item, a list element) is encoded here, with a
//! thread-local context: a proxy inside writes only its id and kind and adds its id to the
//! item's references, which the server counts while it keeps the item. When the server
//! hands an item back, each reference comes with what gives the receiver its own
//! reference (a fresh token, or an id counted for the remote connection), and the proxies
//! decoded from the item take those, in order. A multiproc handle inside a value (a
//! `Queue`, a `Value`) does not encode: it only travels through the family's own channels.
//!
//! Outside that context, a proxy travels like any family handle (a process argument, a
//! queue message): it writes its manager and token handles.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::ManagerError;
use super::protocol::{Item, Kind, ObjectId, Out, Reply, Request, encode_plain};
use super::quick::{self, QuickAnswer};
#[cfg(feature = "remote")]
use super::remote::{RemoteConn, RemoteRef};
use super::state::{Control, ManagerState, ReplyState, TokenState, decode_own_taken};
use crate::codec;
use crate::queue::settle_decoded;
use crate::shm::crash::fail_point;
use crate::shm::{Deadline, HeapFull, IN_OWN_TAKE, Limits, Refused, Ring, Shared, Watch};
use crate::sys;

/// A family token handle, as it comes in a local reply.
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Token(pub(crate) Shared<TokenState>);

/// What a local client reads from its reply ring.
pub(crate) type LocalReply = Reply<Token>;

/// The server's answer: what it did, or why it refused.
pub(crate) type Answer = Result<Out<Ref>, super::protocol::Fault>;

/// What gives a receiver its reference to an object handed back by the server.
#[derive(Debug, Clone)]
pub(crate) enum Ref {
    Local(Shared<TokenState>),
    #[cfg(feature = "remote")]
    Remote(Arc<RemoteRef>),
}

impl Ref {
    /// The object referred to.
    pub(crate) fn id(&self) -> ObjectId {
        match self {
            Ref::Local(token) => token.id(),
            #[cfg(feature = "remote")]
            Ref::Remote(held) => held.id(),
        }
    }
}

/// What keeps a started manager's server running in the process that started it: the
/// [`Manager`](crate::Manager) and every proxy made through it there hold one, and the
/// server is shut down when the last goes. `None` elsewhere (a proxy received from another
/// process keeps nothing alive, as the server is its starter's).
pub(crate) type Keep = Option<Arc<super::ServerProcess>>;

/// Where a proxy's requests go.
#[derive(Clone)]
pub(crate) enum Link {
    Local {
        manager: Shared<ManagerState>,
        token: Shared<TokenState>,
        keep: Keep,
    },
    #[cfg(feature = "remote")]
    Remote(Arc<RemoteRef>),
}

/// The manager a proxy or a value belongs to, for telling managers apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ManagerKey {
    Local(u64),
    #[cfg(feature = "remote")]
    Remote(usize),
}

/// A manager as the source of requests (what [`crate::Manager`] holds): local state, or a
/// remote connection.
#[derive(Clone)]
pub(crate) enum Origin {
    Local(Shared<ManagerState>, Keep),
    #[cfg(feature = "remote")]
    Remote(Arc<RemoteConn>),
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Local(state, _) => f.debug_tuple("Local").field(&state.offset()).finish(),
            #[cfg(feature = "remote")]
            Origin::Remote(conn) => f.debug_tuple("Remote").field(&conn.peer()).finish(),
        }
    }
}

impl Origin {
    pub(crate) fn key(&self) -> ManagerKey {
        match self {
            Origin::Local(state, _) => ManagerKey::Local(state.offset()),
            #[cfg(feature = "remote")]
            Origin::Remote(conn) => ManagerKey::Remote(Arc::as_ptr(conn) as usize),
        }
    }

    /// Sends `request` and waits for its answer; the references in it become this
    /// process's.
    pub(crate) fn call(&self, request: &Request) -> Result<Out<Ref>, ManagerError> {
        let answer = match self {
            Origin::Local(state, _) => call_local(state, request),
            #[cfg(feature = "remote")]
            Origin::Remote(conn) => conn.call(request),
        };
        Ok(answer??)
    }

    /// The link of a proxy made from `handout`.
    pub(crate) fn link(&self, handout: Ref) -> Result<Link, ManagerError> {
        match (self, handout) {
            (Origin::Local(state, keep), Ref::Local(token)) => {
                Ok(Link::Local { manager: state.clone(), token, keep: keep.clone() })
            }
            #[cfg(feature = "remote")]
            (Origin::Remote(_), Ref::Remote(held)) => Ok(Link::Remote(held)),
            #[cfg(feature = "remote")]
            _ => Err(ManagerError::Protocol("a reference of the wrong transport".into())),
        }
    }

    /// Encodes `value` for this manager: proxies inside become references.
    pub(crate) fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Item<ObjectId>, ManagerError> {
        encode_item(self.key(), value)
    }

    /// Decodes an item the server handed back.
    pub(crate) fn decode<T: DeserializeOwned>(&self, item: Item<Ref>) -> Result<T, ManagerError> {
        decode_item(self, item)
    }
}

impl Link {
    pub(crate) fn origin(&self) -> Origin {
        match self {
            Link::Local { manager, keep, .. } => Origin::Local(manager.clone(), keep.clone()),
            #[cfg(feature = "remote")]
            Link::Remote(held) => Origin::Remote(held.conn().clone()),
        }
    }

    fn key(&self) -> ManagerKey {
        match self {
            Link::Local { manager, .. } => ManagerKey::Local(manager.offset()),
            #[cfg(feature = "remote")]
            Link::Remote(held) => ManagerKey::Remote(Arc::as_ptr(held.conn()) as usize),
        }
    }
}

// ---- values -------------------------------------------------------------------------------

enum ValueCtx {
    Encoding {
        manager: ManagerKey,
        refs: Vec<ObjectId>,
        foreign: bool,
    },
    /// `origin` is `None` for an item without references (no proxy inside may decode).
    Decoding {
        origin: Option<Origin>,
        refs: VecDeque<Ref>,
    },
}

thread_local! {
    static VALUE: RefCell<Vec<ValueCtx>> = const { RefCell::new(Vec::new()) };
    /// Buffers of items this thread sent or read, for the next items it encodes: a call
    /// with a small key and value allocates nothing for them (`tests/manager_allocs.rs`).
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// The most buffers [`SPARE`] keeps, and the largest it keeps (a large value's buffer goes
/// back to the allocator).
const SPARE_BUFFERS: usize = 4;
const SPARE_CAPACITY: usize = 4096;

/// An empty buffer for an item's bytes: a spare one if this thread has one.
fn spare_buffer() -> Vec<u8> {
    SPARE.try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop())).ok().flatten().unwrap_or_default()
}

/// Keeps `bytes` (an item's, done with) for [`spare_buffer`], if small and room is left.
fn keep_spare(mut bytes: Vec<u8>) {
    if bytes.capacity() == 0 || bytes.capacity() > SPARE_CAPACITY {
        return;
    }
    bytes.clear();
    // In a thread-local's destructor the list may be gone: the buffer is simply freed.
    let _ = SPARE.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut()
            && s.len() < SPARE_BUFFERS
        {
            s.push(bytes);
        }
    });
}

/// Keeps the buffers of a request's items once it was sent (the requests made most often:
/// a dict's, a list's, a value's, a queue's).
fn keep_request_buffers(request: Request) {
    use super::protocol::Op;
    let Request::Call { op, .. } = request else { return };
    match op {
        Op::DictSet(k, v) | Op::DictSetDefault(k, v) => {
            keep_spare(k.bytes);
            keep_spare(v.bytes);
        }
        Op::Contains(i)
        | Op::DictGet(i)
        | Op::DictRemove(i)
        | Op::ListPush(i)
        | Op::ListSet(_, i)
        | Op::ValueSet(i)
        | Op::AttrSet(_, i)
        | Op::Put { item: i, .. }
        | Op::SetAdd(i)
        | Op::SetDiscard(i) => keep_spare(i.bytes),
        _ => {}
    }
}

struct PopCtx;

impl Drop for PopCtx {
    fn drop(&mut self) {
        VALUE.with(|v| v.borrow_mut().pop());
    }
}

/// Encodes `value` as an item for manager `manager`.
pub(crate) fn encode_item<T: Serialize + ?Sized>(
    manager: ManagerKey,
    value: &T,
) -> Result<Item<ObjectId>, ManagerError> {
    VALUE.with(|v| v.borrow_mut().push(ValueCtx::Encoding { manager, refs: Vec::new(), foreign: false }));
    let mut bytes = spare_buffer();
    let encoded = {
        let pop_on_panic = PopCtx;
        let encoded = codec::encode_kept(value, &mut bytes);
        std::mem::forget(pop_on_panic);
        encoded
    };
    match VALUE.with(|v| v.borrow_mut().pop()) {
        Some(ValueCtx::Encoding { foreign: true, .. }) => Err(ManagerError::ForeignProxy),
        Some(ValueCtx::Encoding { refs, .. }) => {
            encoded?;
            Ok(Item { bytes, refs })
        }
        _ => Err(ManagerError::Protocol("value context lost".into())),
    }
}

/// Decodes an item handed back by the server of `origin`.
pub(crate) fn decode_item<T: DeserializeOwned>(origin: &Origin, item: Item<Ref>) -> Result<T, ManagerError> {
    decode_item_from(|| origin.clone(), item)
}

/// [`decode_item`] with the origin made only when the item carries references (a clone of
/// an origin counts a handle in the family heap: not for every plain value).
#[inline]
fn decode_item_from<T: DeserializeOwned>(origin: impl FnOnce() -> Origin, item: Item<Ref>) -> Result<T, ManagerError> {
    let origin = (!item.refs.is_empty()).then(origin);
    VALUE.with(|v| v.borrow_mut().push(ValueCtx::Decoding { origin, refs: item.refs.into_iter().collect() }));
    let decoded = {
        let _pop = PopCtx;
        codec::decode_kept::<T>(&item.bytes)
    };
    keep_spare(item.bytes);
    Ok(decoded?)
}

/// [`decode_item_from`] of an item a queue's `get` took: on failure the item comes back
/// whole, its bytes and its references (those of the proxies the failed decoding made went
/// with them: clones of them are kept aside, only when there are any), to be given back.
fn decode_taken_from<T: DeserializeOwned>(
    origin: impl FnOnce() -> Origin,
    item: Item<Ref>,
) -> Result<T, (codec::CodecError, Item<Ref>)> {
    let kept = item.refs.clone();
    let origin = (!item.refs.is_empty()).then(origin);
    VALUE.with(|v| v.borrow_mut().push(ValueCtx::Decoding { origin, refs: item.refs.into_iter().collect() }));
    let decoded = {
        let _pop = PopCtx;
        codec::decode_kept::<T>(&item.bytes)
    };
    match decoded {
        Ok(value) => {
            keep_spare(item.bytes);
            Ok(value)
        }
        Err(e) => Err((e, Item { bytes: item.bytes, refs: kept })),
    }
}

/// An item the client holds, as a request carries it back to the server (its bytes, its
/// references' ids), and the references themselves, which the client drops once that
/// request is answered.
pub(crate) fn lend(item: Item<Ref>) -> (Item<ObjectId>, Vec<Ref>) {
    let Item { bytes, refs } = item;
    let ids = refs.iter().map(Ref::id).collect();
    (Item { bytes, refs: ids }, refs)
}

/// A proxy's shared part: which object, of what kind, through which link.
#[derive(Clone)]
pub(crate) struct ProxyCore {
    pub(crate) id: ObjectId,
    pub(crate) kind: Kind,
    pub(crate) link: Link,
}

impl fmt::Debug for ProxyCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let transport = match &self.link {
            Link::Local { .. } => "local".to_string(),
            #[cfg(feature = "remote")]
            Link::Remote(held) => format!("remote {}", held.conn().peer()),
        };
        write!(f, "<{} proxy, object {}, {transport}>", self.kind.name(), self.id)
    }
}

impl ProxyCore {
    /// Whether the proxy reaches its server as a family client (not over a socket).
    pub(crate) fn is_local(&self) -> bool {
        matches!(self.link, Link::Local { .. })
    }

    /// A proxy for the object an answer created.
    pub(crate) fn created(origin: &Origin, out: Out<Ref>, expected: Kind) -> Result<ProxyCore, ManagerError> {
        match out {
            Out::Created { id, kind, handout } if kind == expected => {
                Ok(ProxyCore { id, kind, link: origin.link(handout)? })
            }
            other => Err(unexpected(other)),
        }
    }

    pub(crate) fn origin(&self) -> Origin {
        self.link.origin()
    }

    /// Runs `op` on the object.
    pub(crate) fn call(&self, op: super::protocol::Op) -> Result<Out<Ref>, ManagerError> {
        Ok(self.call_fault(op)??)
    }

    /// Runs `op` on the object; what the server refused comes as the inner error.
    pub(crate) fn call_fault(&self, op: super::protocol::Op) -> Result<Answer, ManagerError> {
        self.call_numbered(op).map(|(answer, _)| answer)
    }

    /// [`ProxyCore::call_fault`], with the sequence number the call went by on its
    /// connection (a `get`'s, for an `Op::GiveBack` of its item on the same connection).
    pub(crate) fn call_numbered(&self, op: super::protocol::Op) -> Result<(Answer, u64), ManagerError> {
        let request = Request::Call { id: self.id, kind: self.kind, op };
        let answer = match &self.link {
            Link::Local { manager, .. } => call_local_numbered(manager, &request),
            #[cfg(feature = "remote")]
            Link::Remote(held) => held.conn().call_numbered(&request),
        };
        keep_request_buffers(request);
        answer
    }

    /// Encodes a value for this proxy's manager.
    pub(crate) fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Item<ObjectId>, ManagerError> {
        encode_item(self.link.key(), value)
    }

    /// Decodes an item this proxy's server handed back.
    pub(crate) fn decode<T: DeserializeOwned>(&self, item: Item<Ref>) -> Result<T, ManagerError> {
        decode_item_from(|| self.origin(), item)
    }

    /// Decodes an item this proxy's queue handed to a `get`; on failure, the error and the
    /// item whole, to give back ([`decode_taken_from`]).
    pub(crate) fn decode_taken<T: DeserializeOwned>(
        &self,
        item: Item<Ref>,
    ) -> Result<T, (codec::CodecError, Item<Ref>)> {
        decode_taken_from(|| self.origin(), item)
    }

    /// [`ProxyCore::call_fault`], whose failure says whether the request may have reached
    /// the server: `false` when it surely did not (a family client's put on the requests
    /// ring refused, a remote request larger than this client's limit: nothing in flight,
    /// the connection serves on), `true` otherwise (sent, or a remote connection that
    /// ended).
    pub(crate) fn call_fault_sent(&self, op: super::protocol::Op) -> Result<Answer, (ManagerError, bool)> {
        let request = Request::Call { id: self.id, kind: self.kind, op };
        let answer = match &self.link {
            Link::Local { manager, .. } => call_local_sent(manager, &request).map(|(answer, _)| answer),
            #[cfg(feature = "remote")]
            Link::Remote(held) => held.conn().call(&request).map_err(|e| {
                let sent = !matches!(e, ManagerError::TooLarge { .. });
                (e, sent)
            }),
        };
        keep_request_buffers(request);
        answer
    }

    /// Puts back an item that a call of this proxy took out of its list, dict or set (a
    /// pop) and that did not decode (`why`; [`ProxyCore::decode_taken`] handed it back
    /// whole); returns `why`, whatever became of the item. `put` makes the request that
    /// puts it back from the item as the server reads one (its bytes, its references'
    /// ids), stored as a put's (each reference checked and counted); the references the
    /// client holds for its proxies (clones: a proxy the failed decoding made dropped its
    /// own) go only once that is answered, so the object cannot be freed in between.
    /// Unlike a queue's `get` (`Op::GiveBack`), nothing needs matching: the request is an
    /// ordinary insert, which any client may make.
    #[cold]
    pub(crate) fn put_back(
        &self,
        item: Item<Ref>,
        put: impl FnOnce(Item<ObjectId>) -> super::protocol::Op,
        why: codec::CodecError,
    ) -> ManagerError {
        let (item, held) = lend(item);
        // Not put back (the server gone; a refusal): the error is the same, the decoding's.
        let _ = self.call(put(item));
        drop(held);
        why.into()
    }

    /// Whether two proxies refer to the same object.
    pub(crate) fn same(&self, other: &ProxyCore) -> bool {
        self.id == other.id && self.link.key() == other.link.key()
    }
}

/// An answer that does not fit the request.
pub(crate) fn unexpected<R: fmt::Debug>(out: Out<R>) -> ManagerError {
    ManagerError::Protocol(format!("unexpected answer {out:?}"))
}

impl Serialize for ProxyCore {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let in_value = VALUE.with(|v| {
            let mut stack = v.borrow_mut();
            match stack.last_mut() {
                Some(ValueCtx::Encoding { manager, refs, foreign }) => {
                    if *manager == self.link.key() {
                        refs.push(self.id);
                    } else {
                        *foreign = true;
                    }
                    Some(*foreign)
                }
                _ => None,
            }
        });
        match in_value {
            Some(true) => Err(S::Error::custom("a proxy can only be stored by its own manager")),
            Some(false) => (self.id, self.kind).serialize(serializer),
            None => match &self.link {
                Link::Local { manager, token, .. } if codec::encoding() => (manager, token).serialize(serializer),
                Link::Local { .. } => Err(S::Error::custom(
                    "a manager proxy can only be sent through multiproc (a process argument, a queue, a pipe, a manager container)",
                )),
                #[cfg(feature = "remote")]
                Link::Remote(_) => Err(S::Error::custom(
                    "a proxy of a remote manager cannot be sent to another process: connect from there",
                )),
            },
        }
    }
}

impl<'de> Deserialize<'de> for ProxyCore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let decoding_value = VALUE.with(|v| matches!(v.borrow().last(), Some(ValueCtx::Decoding { .. })));
        if decoding_value {
            let (id, kind) = <(ObjectId, Kind)>::deserialize(deserializer)?;
            let taken = VALUE.with(|v| match v.borrow_mut().last_mut() {
                Some(ValueCtx::Decoding { origin: Some(origin), refs }) => {
                    // By id, not in order: a decoding may skip a proxy (a struct field the
                    // type read back does not have), whose reference is then not this one's.
                    let at = refs.iter().position(|r| r.id() == id)?;
                    refs.remove(at).map(|r| (origin.clone(), r))
                }
                _ => None,
            });
            let (origin, reference) =
                taken.ok_or_else(|| D::Error::custom("a proxy in a value without its reference"))?;
            let link = origin.link(reference).map_err(D::Error::custom)?;
            return Ok(ProxyCore { id, kind, link });
        }
        if !codec::decoding() {
            return Err(D::Error::custom("a manager proxy can only be received through multiproc"));
        }
        let (manager, token) = <(Shared<ManagerState>, Shared<TokenState>)>::deserialize(deserializer)?;
        let kind = kind_from_code(token.kind_code()).ok_or_else(|| D::Error::custom("a token of an unknown kind"))?;
        Ok(ProxyCore { id: token.id(), kind, link: Link::Local { manager, token, keep: None } })
    }
}

fn kind_from_code(code: u32) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| *k as u32 == code)
}

// ---- local connections --------------------------------------------------------------------

/// This thread's connection to a local manager.
struct LocalConn {
    pid: u32,
    state: Shared<ManagerState>,
    conn: u32,
    replies: Shared<ReplyState>,
    outbox: Outbox,
    /// The sequence number of its last call.
    last_call: u64,
    /// A call on it failed after it was sent (it timed out, its ping could not be put, its
    /// answer did not decode): the call may still be in flight, and what the server grants
    /// it (or a later one) is nobody's, so the connection serves no other call and its
    /// goodbye says from which call on.
    abandoned: bool,
}

/// A connection's requests as they go out: the last sequence number, and the encoding's
/// buffer.
struct Outbox {
    seq: u64,
    scratch: Vec<u8>,
}

impl Drop for LocalConn {
    fn drop(&mut self) {
        if self.pid == sys::my_pid() && !self.state.closed() {
            let _ = self
                .state
                .post(&Control::Bye { conn: self.conn, abandoned_from: self.abandoned.then_some(self.last_call) });
        }
    }
}

thread_local! {
    static CONNS: RefCell<Vec<LocalConn>> = const { RefCell::new(Vec::new()) };
}

/// The server is gone: shut down, or its process ended.
struct ServerWatch<'a>(&'a ManagerState);

impl Watch for ServerWatch<'_> {
    type Gone = ManagerError;

    fn left(&self) -> Option<ManagerError> {
        // `then`, not `then_some`: the error (a `String`) is made only when it is the answer;
        // a wait asks at every look.
        self.0.closed().then(|| ManagerError::ServerGone { reason: "the manager was shut down".into() })
    }

    fn check(&self) -> Result<(), ManagerError> {
        if self.0.server_alive() {
            Ok(())
        } else {
            Err(ManagerError::ServerGone { reason: "the manager's server process ended".into() })
        }
    }
}

fn connect_local(state: &Shared<ManagerState>) -> Result<LocalConn, ManagerError> {
    if state.closed() {
        return Err(ManagerError::ServerGone { reason: "the manager was shut down".into() });
    }
    let conn = state.new_conn().ok_or_else(|| ManagerError::Protocol("out of connection numbers".into()))?;
    let replies = Shared::new(ReplyState { ring: Ring::new(Limits::default()) })?;
    replies.ring.open()?;
    let me = sys::me();
    state.post(&Control::Hello { conn, replies: replies.clone(), pid: me.pid, start: me.start })?;
    Ok(LocalConn {
        pid: me.pid,
        state: state.clone(),
        conn,
        replies,
        outbox: Outbox { seq: 0, scratch: Vec::new() },
        last_call: 0,
        abandoned: false,
    })
}

/// One request and its answer on this thread's connection to `state`'s server.
fn call_local(state: &Shared<ManagerState>, request: &Request) -> Result<Answer, ManagerError> {
    call_local_numbered(state, request).map(|(answer, _)| answer)
}

/// [`call_local`], with the call's sequence number on its connection.
#[inline]
fn call_local_numbered(state: &Shared<ManagerState>, request: &Request) -> Result<(Answer, u64), ManagerError> {
    call_local_sent(state, request).map_err(|(e, _)| e)
}

/// [`call_local_numbered`], whose failure says whether the request may have reached the
/// server: `false` when it surely did not (no connection, or its put on the requests ring
/// refused: nothing in flight), `true` when it was sent (the call is then abandoned, and
/// the server still handles the request, before the connection's goodbye).
fn call_local_sent(state: &Shared<ManagerState>, request: &Request) -> Result<(Answer, u64), (ManagerError, bool)> {
    CONNS.with(|conns| {
        let Ok(mut conns) = conns.try_borrow_mut() else {
            // A request made while this thread's list is borrowed: on a connection of its
            // own. No user code runs then (a value's `Serialize` runs before the request is
            // made, its `Deserialize` after the answer is read), so a proxy called from
            // those goes on the thread's own connection (review170 M2).
            let mut conn = connect_local(state).map_err(|e| (e, false))?;
            return conn.call(request).map(|answer| (answer, conn.last_call)).map_err(|e| (e, conn.abandoned));
        };
        let me = sys::my_pid();
        // A fork child inherits its parent's connections: not its own, forget them.
        if conns.iter().any(|c| c.pid != me) {
            for stale in conns.drain(..) {
                std::mem::forget(stale);
            }
        }
        // Connections to servers that ended hold a reply ring each: let them go.
        conns.retain(|c| !c.state.closed());
        let at = match conns.iter().position(|c| c.state.same_object(state)) {
            Some(at) => at,
            None => {
                conns.push(connect_local(state).map_err(|e| (e, false))?);
                conns.len() - 1
            }
        };
        let result = conns[at].call(request).map(|answer| (answer, conns[at].last_call));
        let result = result.map_err(|e| (e, conns[at].abandoned));
        // A call that failed in flight (it timed out: see `ManagerBuilder::call_timeout`)
        // ends its connection: the server forgets it once it reads the `Bye`, and the answer
        // it may still send is never another call's: the server takes it back at the
        // goodbye (an item goes back to its queue).
        if conns[at].abandoned
            || matches!(
                result,
                Err((ManagerError::ServerGone { .. }, _)) | Ok((Err(super::protocol::Fault::ShuttingDown), _))
            )
        {
            conns.remove(at);
        }
        result
    })
}

/// Forgets this thread's connections to `state`'s server and to servers that ended (the
/// manager is shutting down): their reply rings go back to the family heap now, not when a
/// later call finds the server gone, which may never come.
pub(crate) fn forget_local(state: &Shared<ManagerState>) {
    // In a thread-local's destructor the list may be gone already, and a call in progress
    // on this thread holds it: then there is nothing to do here.
    let _ = CONNS.try_with(|conns| {
        let Ok(mut conns) = conns.try_borrow_mut() else { return };
        let me = sys::my_pid();
        let gone: Vec<LocalConn> = {
            let (gone, kept) = std::mem::take(&mut *conns)
                .into_iter()
                .partition(|c| c.pid == me && (c.state.same_object(state) || c.state.closed()));
            *conns = kept;
            gone
        };
        drop(conns);
        drop(gone);
    });
}

impl Outbox {
    /// Puts one request of connection `conn` on the server's ring; returns its sequence
    /// number.
    fn send(&mut self, conn: u32, request: &Request, watch: &ServerWatch<'_>) -> Result<u64, ManagerError> {
        self.seq += 1;
        let seq = self.seq;
        self.scratch.clear();
        if !quick::write_call(seq, 0, request, &mut self.scratch) {
            encode_plain(&EnvelopeRef { seq, thread: 0, request }, &mut self.scratch)?;
        }
        if let Some(gone) = watch.left() {
            return Err(gone);
        }
        watch.0.requests.put_bytes(&self.scratch, conn, Deadline::NEVER, watch).map_err(refused)?;
        if self.scratch.capacity() > 1 << 20 {
            self.scratch = Vec::new();
        }
        Ok(seq)
    }
}

impl LocalConn {
    /// One request and its answer. A failure after the request was sent leaves the call in
    /// flight, whatever its cause (a `CallTimeout`; its ping's put refused `HeapFull`; an
    /// answer that did not decode, or a failed take of it): the connection is then
    /// `abandoned`, and serves no other call, whose read would take this call's answer
    /// for its own and drop it (review127 M1: the item of a `get` lost). A failure before
    /// the send leaves nothing in flight.
    fn call(&mut self, request: &Request) -> Result<Answer, ManagerError> {
        let watch = ServerWatch(&self.state);
        let seq = self.outbox.send(self.conn, request, &watch)?;
        self.last_call = seq;
        let answer = answer_to(seq, &self.replies, &mut self.outbox, self.conn, &watch);
        if answer.is_err() {
            self.abandoned = true;
        }
        answer
    }
}

/// The answer to call `seq`, sent on connection `conn` through `outbox`, read from
/// `replies` ([`LocalConn::call`]).
fn answer_to(
    seq: u64,
    replies: &Shared<ReplyState>,
    outbox: &mut Outbox,
    conn: u32,
    watch: &ServerWatch<'_>,
) -> Result<Answer, ManagerError> {
    let mut alive = Liveness::new(watch.0.call_timeout());
    loop {
        // A reply that holds tokens and stops decoding part-way gives back the ones after
        // that point (F7); a ring that never carried one notes nothing.
        // (The server marks the ring before it puts such a reply.)
        let ring = &replies.ring;
        let got = ring.get(alive.deadline(), watch, |bytes, _| match quick::read_answer(bytes) {
            Some((seq, answer)) => Ok(Taken::Quick(seq, quick_out(answer))),
            None => decode_own_taken::<LocalReply>(bytes, ring.ever_had_handles()).map(Taken::Reply),
        });
        let taken = match got {
            Err(Refused::TimedOut) => {
                alive.no_news(|| {
                    // The tests' way to have the ping's put refused as with a full heap
                    // (a new segment of the requests ring it could not get), while the
                    // call is in flight (review127 M1).
                    if fail_point!("manager.ping.heap_full") {
                        return Err(ManagerError::HeapFull(HeapFull::requested(0)));
                    }
                    outbox.send(conn, &Request::Ping, watch)
                })?;
                continue;
            }
            other => settle_decoded(other.map_err(refused)?)?,
        };
        let got_seq = match &taken {
            Taken::Quick(seq, _) => *seq,
            Taken::Reply(reply) => reply.seq,
        };
        if alive.heard(got_seq) || (got_seq != seq && got_seq != 0) {
            // A sign of life, or the answer to a ping of an earlier call.
            continue;
        }
        // Sequence number 0: the server could not read our request.
        return Ok(match taken {
            Taken::Quick(_, out) => Ok(out),
            Taken::Reply(LocalReply { result: Ok(out), .. }) => {
                Ok(out.map_refs(|Token(t)| Ok::<_, ManagerError>(Ref::Local(t)))?)
            }
            Taken::Reply(LocalReply { result: Err(fault), .. }) => Err(fault),
        });
    }
}

/// An answer as taken from a reply ring.
enum Taken {
    /// A quick one (`quick::read_answer`): its sequence number and what it says (no
    /// reference in it).
    Quick(u64, Out<Ref>),
    Reply(LocalReply),
}

/// A quick answer (`quick::read_answer`) as the general decoder gives it; an item's bytes
/// in a spare buffer, which the decoding of the value keeps for the next.
fn quick_out(answer: QuickAnswer<'_>) -> Out<Ref> {
    match answer {
        QuickAnswer::Unit => Out::Unit,
        QuickAnswer::Maybe(found) => Out::MaybeItem(found.map(|found| {
            let mut bytes = spare_buffer();
            bytes.extend_from_slice(found);
            Item { bytes, refs: Vec::new() }
        })),
    }
}

/// What a call knows of the server's life while it waits (see
/// `ManagerBuilder::call_timeout`): when it last heard from it, and the ping it sent since.
pub(crate) struct Liveness {
    /// The call timeout, and when the call last heard from the server (`None`: no timeout,
    /// and nothing to keep).
    limit: Option<(Duration, Instant)>,
    ping: Option<u64>,
}

impl Liveness {
    pub(crate) fn new(timeout: Option<Duration>) -> Self {
        Self { limit: timeout.map(|t| (t, Instant::now())), ping: None }
    }

    /// When to look again: half the timeout after the last news (then send a ping), the
    /// whole timeout once a ping is out (then give up).
    pub(crate) fn deadline(&self) -> Deadline {
        match self.look_at() {
            Some(at) => Deadline::after(at.saturating_duration_since(Instant::now())),
            None => Deadline::NEVER,
        }
    }

    /// The instant of the next look ([`Liveness::deadline`]); `None` for never, also when
    /// a timeout too long for an `Instant` (`Duration::MAX`, a remote client's as given)
    /// puts it past any.
    fn look_at(&self) -> Option<Instant> {
        let (timeout, heard) = self.limit?;
        heard.checked_add(if self.ping.is_some() { timeout } else { timeout / 2 })
    }

    /// Whether the answer numbered `seq` is to the ping out, which says the server is there.
    pub(crate) fn heard(&mut self, seq: u64) -> bool {
        if self.ping.is_some_and(|p| p == seq) {
            self.ping = None;
            if let Some((_, heard)) = &mut self.limit {
                *heard = Instant::now();
            }
            true
        } else {
            false
        }
    }

    /// Nothing came by [`Liveness::deadline`]: pings the server with `ping` (which sends one
    /// and returns its number) or, when a ping is out already, gives up.
    pub(crate) fn no_news(&mut self, ping: impl FnOnce() -> Result<u64, ManagerError>) -> Result<(), ManagerError> {
        let Some((timeout, _)) = self.limit else { return Ok(()) };
        if self.look_at().is_none_or(|at| Instant::now() < at) {
            return Ok(());
        }
        match self.ping {
            Some(_) => Err(ManagerError::CallTimeout(timeout)),
            None => {
                self.ping = Some(ping()?);
                Ok(())
            }
        }
    }

    /// The ping still out, whose answer nobody will read.
    #[cfg(feature = "remote")]
    pub(crate) fn ping_out(&self) -> Option<u64> {
        self.ping
    }
}

fn refused(refused: Refused<ManagerError>) -> ManagerError {
    match refused {
        Refused::Gone(e) => e,
        Refused::HeapFull(e) => ManagerError::HeapFull(e),
        Refused::TooLarge { capacity } => ManagerError::Protocol(format!("a message above {capacity} bytes")),
        Refused::TimedOut => ManagerError::Protocol("an endless wait timed out".into()),
        Refused::ShutDown => ManagerError::Protocol("a manager's ring is never shut down".into()),
        Refused::InOwnTake => ManagerError::Codec(codec::CodecError::decode(IN_OWN_TAKE)),
    }
}

/// [`Envelope`] by reference (same encoding), so that a request is not copied to be sent.
#[derive(Serialize)]
pub(crate) struct EnvelopeRef<'a> {
    pub(crate) seq: u64,
    pub(crate) thread: u64,
    pub(crate) request: &'a Request,
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::manager::protocol::Envelope;

    #[test]
    fn an_envelope_by_reference_encodes_as_the_envelope() {
        let request = Request::Ping;
        let mut a = Vec::new();
        encode_plain(&EnvelopeRef { seq: 5, thread: 6, request: &request }, &mut a).unwrap();
        let mut b = Vec::new();
        encode_plain(&Envelope { seq: 5, thread: 6, request }, &mut b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn a_call_pings_after_silence_and_times_out_only_when_the_ping_goes_unanswered() {
        let mut endless = Liveness::new(None);
        assert_eq!(endless.deadline(), Deadline::NEVER);
        assert!(endless.no_news(|| unreachable!("no timeout, no ping")).is_ok());

        // A zero timeout: every look finds the silence long enough.
        let mut alive = Liveness::new(Some(Duration::ZERO));
        alive.no_news(|| Ok(7)).unwrap();
        assert!(!alive.heard(6), "the answer of another request is no sign of life");
        assert!(alive.heard(7));
        alive.no_news(|| Ok(8)).unwrap();
        assert!(matches!(
            alive.no_news(|| unreachable!("one ping at a time")),
            Err(ManagerError::CallTimeout(t)) if t.is_zero()
        ));

        // A timeout past any `Instant`: never a look, never a ping, never a panic.
        let mut endless = Liveness::new(Some(Duration::MAX));
        assert_eq!(endless.deadline(), Deadline::NEVER);
        assert!(endless.no_news(|| unreachable!("no look, no ping")).is_ok());
    }

    #[test]
    fn kinds_round_trip_through_their_codes() {
        for kind in Kind::ALL {
            assert_eq!(kind_from_code(kind as u32), Some(kind));
        }
        assert_eq!(kind_from_code(999), None);
    }
}
