//! The objects a manager's server keeps, and what every operation does to them.
//!
//! This is the server without its transports: requests go in ([`Store::handle`]), answers
//! come out ([`Store::take_replies`]), time passes ([`Store::expire`]), clients go away
//! ([`Store::drop_conn_from`]). No input can make it panic or block: a blocking operation
//! that cannot complete now is *parked* on its object, and answered when another operation
//! makes it possible or when its deadline passes.
//!
//! # Registered types' calls
//!
//! A registered type's method runs user code for as long as it likes, so the store does
//! not run it: it takes the value out of its object and hands it, with the call, to the
//! server as a [`Job`] ([`Store::take_jobs`]), which a worker thread runs; the value and
//! the answer come back as a [`Done`] ([`Store::finish_job`]). Meanwhile the object is
//! *out*: its later calls (a method, a copy) wait in its FIFO, in the order they came, so
//! one object's calls still run one at a time and each sees the ones before it. Each call
//! out has a *ticket* naming its caller; closing the caller's connection cancels it, so an
//! answer that comes back after the close goes to nobody, never to a later connection
//! given the same number (connection numbers are reused). An object deleted while its value
//! is out answers its FIFO `NoSuchObject` as a deleted object's waiters, and its value,
//! when it comes back, is dropped on a worker too (its `Drop` is user code).
//!
//! # References
//!
//! Every object counts its references: one per family token (what family proxies hold),
//! one per id handed out to a remote connection, one per stored item that embeds a proxy
//! of it (a list of dicts). An answer that carries an item copies its references (each
//! counted anew, for the receiver); an item moved out of a container (a `pop`, a queue
//! `get`) takes its references along. An object whose count falls to zero is deleted, and
//! so are the references its own items held. Cycles (a list holding itself) live until the
//! server ends, as in Python.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use indexmap::{IndexMap, IndexSet};

use super::custom::{DynManaged, Identity, MethodError};
use super::protocol::{
    Create, Envelope, Fault, Item, Kind, ObjectId, Op, Out, REGISTRY, Request, SetAlgebra, SetRelation, Wait,
};
use super::quick::{QuickAnswer, QuickCall, QuickOp};
use crate::process::panics;

/// A semaphore's largest value, as the family's [`Semaphore`](crate::Semaphore) has.
const SEMAPHORE_MAX: u64 = u32::MAX as u64;

/// A client connection as the server numbers them.
pub(crate) type ConnId = u32;

/// The connection named as the owner of a `Lock` that a family process holds past the
/// connection that acquired it (the thread that took it ended; its guard lives on, or it was
/// left locked): no connection has this number (they stay below `state::MAX_CONN`). The
/// lock is the process's until released, or until the process dies (`Store::holder_died`).
const PROCESS_HELD: ConnId = ConnId::MAX;

/// A map keyed by a number the server hands out (an object id, a connection number): the
/// keys are never a client's choice, so FxHash serves where SipHash would cost more than
/// the lookup (three lookups a call).
pub(crate) type IdMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// Who acquired a lock: a connection and a thread of its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Owner {
    pub(crate) conn: ConnId,
    pub(crate) thread: u64,
    /// Whose semaphore permits its acquires take (a function of `conn`).
    pub(crate) holder: Holder,
}

/// Who holds a semaphore's permits: a family process (all its connections together, so that
/// a permit acquired on one thread and released on another is one process's), or a
/// connection whose process the server cannot watch (a remote client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Holder {
    Process { pid: u32, start: u64 },
    Conn(ConnId),
}

/// An answer for a connection.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) conn: ConnId,
    pub(crate) seq: u64,
    /// Each reference in it is counted for the receiver.
    pub(crate) result: Result<Out<ObjectId>, Fault>,
    /// The object whose call it answers (`None`: not a call's): a queue's item answer never
    /// written goes back to that queue only ([`Store::give_back`], review139 L2).
    pub(crate) object: Option<ObjectId>,
}

/// Makes an object of a registered type from its encoded initial value.
pub(crate) type Constructor = fn(&[u8]) -> Result<Box<dyn DynManaged>, String>;

/// User code to run off the dispatcher, on a worker thread of the server (see the module's
/// docs): a registered type's call with the value taken out of its object, or a value to
/// drop.
pub(crate) struct Job {
    /// Names the call's caller in [`Store::finish_job`] (0: no caller, a drop).
    ticket: u64,
    id: ObjectId,
    work: Work,
}

enum Work {
    Method { type_name: String, value: Box<dyn DynManaged>, name: String, args: Vec<u8> },
    Copy(Box<dyn DynManaged>),
    Drop(Box<dyn DynManaged>),
}

/// What came of a [`Job`]'s call: the value, to go back to its object, and the answer.
pub(crate) struct Done {
    ticket: u64,
    id: ObjectId,
    value: Box<dyn DynManaged>,
    result: Result<Out<ObjectId>, Fault>,
}

impl Job {
    /// Drops the job unrun (its value, whose `Drop` is user code, under a catch): the
    /// server is shutting down, and its caller was told so.
    pub(crate) fn abandon(self) {
        let _ = panics::catching("manager", || drop(self));
    }

    /// Runs the user code (a panic is caught, and is the call's answer); what came of a
    /// call, `None` for a drop.
    pub(crate) fn run(self) -> Option<Done> {
        let Job { ticket, id, work } = self;
        let (value, result) = match work {
            Work::Method { type_name, mut value, name, args } => {
                let result = run_method(&type_name, value.as_mut(), &name, &args);
                (value, result)
            }
            Work::Copy(value) => {
                let result = match panics::catching("manager", || value.encode()) {
                    Ok(Ok(bytes)) => Ok(Out::Item(Item { bytes, refs: Vec::new() })),
                    Ok(Err(why)) => Err(Fault::MethodFailed(why)),
                    Err(info) => Err(Fault::MethodFailed(info.message)),
                };
                (value, result)
            }
            Work::Drop(value) => {
                // A panic in `Drop` (printed by the hook) is the value's alone.
                let _ = panics::catching("manager", || drop(value));
                return None;
            }
        };
        Some(Done { ticket, id, value, result })
    }
}

/// A value kept by the server: its encoding and the objects it refers to (each counted).
#[derive(Debug)]
struct Stored {
    bytes: Box<[u8]>,
    refs: Vec<ObjectId>,
}

/// A parked request.
#[derive(Debug)]
struct Waiter {
    owner: Owner,
    seq: u64,
    deadline: Option<Instant>,
}

#[derive(Debug, Default)]
struct LockState {
    owner: Option<Owner>,
    /// Recursion depth (RLock, Condition); 1 for a held Lock.
    count: u64,
    /// Waiting to acquire; `Some((count, result))` for a condition waiter taking its lock
    /// back (at its old depth, then answering `result`).
    waiters: VecDeque<(Waiter, Option<(u64, bool)>)>,
    /// The last holder's client died (or its connection ended) holding it: the next
    /// acquire is told so, as a robust lock's `owner_died()`.
    owner_died: bool,
    /// The sequence number (on its connection) of the request that took it: whether it was
    /// a call its client gave up on (`Store::drop_conn_from`).
    granted_seq: u64,
    /// A plain `Lock`'s holds so far, the current one's number while held: what its guard
    /// releases by (`Op::ReleaseHold`), so that a guard whose hold was released already (by
    /// `Op::Release`, which anyone may send) leaves the next holder alone (mgr108). A
    /// `Lock`'s hold is its process's, and its guard may be dropped on any thread, hence
    /// a number rather than the owner (its connection is the acquiring thread's).
    hold: u64,
}

impl LockState {
    /// The answer of an acquire that took the lock: told once that its holder died; a plain
    /// `Lock`'s (`numbered`) with the new hold's number.
    fn granted(&mut self, numbered: bool) -> Out<ObjectId> {
        let from_dead = std::mem::take(&mut self.owner_died);
        if numbered {
            self.hold = self.hold.wrapping_add(1);
            Out::Held { hold: self.hold, from_dead }
        } else if from_dead {
            Out::AcquiredFromDead
        } else {
            Out::Bool(true)
        }
    }
}

#[derive(Debug)]
struct QueueState {
    items: VecDeque<Stored>,
    maxsize: u64,
    getters: VecDeque<Waiter>,
    putters: VecDeque<(Waiter, Stored)>,
    joinable: bool,
    unfinished: u64,
    /// Tasks of a joinable queue taken (by a `get`) less those marked done, by holder, as
    /// the family's task table counts them (`Tasks::lost_then`): a `task_done` counts
    /// against its own holder, below zero if it took none (it finished a task another
    /// took, or one still queued); a count of 0 is no entry. A holder that dies leaves its
    /// count, whatever its sign, to `lost` (`Store::take_back`).
    taken: BTreeMap<Holder, i64>,
    /// The counts of holders that died: what they took less what they marked done.
    lost: i64,
    /// The sequence number of each connection's last take, per thread of its client (until
    /// it closes): a take by a call its family client abandoned (`call_timeout`) is lost,
    /// nobody will do it, though its process lives on (`forget_conn`); a take whose answer
    /// a dead client never read goes back to the queue (`Store::give_back`); a take whose
    /// item its client could not decode comes back by its `Op::GiveBack`, matched against
    /// the take of that thread (mgr108; before, against the connection's last take, so a
    /// remote client's other thread taking in between lost the item). A family connection
    /// has one thread and one call in flight, so at most its last take was abandoned, or
    /// left unread. A remote connection may have several (one per thread of its client):
    /// its answers never written (`Server::take_back_unwritten`) are each kept with the
    /// queue that answered it, and every one goes back to that queue without this (mgr104;
    /// before, only its last take).
    last_take: IdMap<ConnId, Takes>,
    joiners: Vec<Waiter>,
    /// `shutdown` was called: puts are refused, gets end on the empty queue.
    shutdown: bool,
}

/// The last take from one queue of each thread of one connection, as `(thread, seq)`, the
/// least recent first. A family connection has one thread (0): one entry. A remote one has
/// an entry per thread of its client that took, at most [`Takes::MAX`]: past that, the
/// least recent is forgotten (its thread's give-back is then refused, the item lost, as
/// before mgr108), so that a client whose threads come and go cannot grow the server's
/// books without bound on one connection.
#[derive(Debug, Default)]
struct Takes(Vec<(u64, u64)>);

impl Takes {
    /// Threads of one connection whose last take from one queue is kept.
    const MAX: usize = 64;

    /// `thread` took by its request `seq`: its entry, now the most recent.
    fn note(&mut self, thread: u64, seq: u64) {
        match self.0.iter().position(|&(t, _)| t == thread) {
            // The common case (a family connection, a remote thread taking again): in place
            // when it is the most recent already.
            Some(at) if at + 1 == self.0.len() => self.0[at].1 = seq,
            Some(at) => {
                self.0.remove(at);
                self.0.push((thread, seq));
            }
            None => {
                if self.0.len() == Self::MAX {
                    self.0.remove(0);
                }
                self.0.push((thread, seq));
            }
        }
    }

    /// Forgets the take numbered `seq` (of `thread`, when given); whether there was one.
    fn clear(&mut self, thread: Option<u64>, seq: u64) -> bool {
        match self.0.iter().position(|&(t, s)| s == seq && thread.is_none_or(|thread| t == thread)) {
            Some(at) => {
                self.0.remove(at);
                true
            }
            None => false,
        }
    }

    fn has(&self, seq: u64) -> bool {
        self.0.iter().any(|&(_, s)| s == seq)
    }
}

impl QueueState {
    /// `owner` took an item (a task, of a joinable queue) by its request `seq`.
    fn took(&mut self, owner: Owner, seq: u64) {
        if self.joinable {
            self.count(owner.holder, 1);
        }
        self.last_take.entry(owner.conn).or_default().note(owner.thread, seq);
    }

    /// Forgets connection `conn`'s take numbered `seq` (of `thread`, when given); whether
    /// it was there.
    fn clear_take(&mut self, conn: ConnId, thread: Option<u64>, seq: u64) -> bool {
        let Some(takes) = self.last_take.get_mut(&conn) else { return false };
        let cleared = takes.clear(thread, seq);
        if takes.0.is_empty() {
            self.last_take.remove(&conn);
        }
        cleared
    }

    /// The item of `owner`'s take numbered `taken`, which its client could not decode
    /// (`Op::GiveBack`), back at the queue's front; whether the take matched (the client
    /// marks the task done when not: review164 M1). A client's word is not trusted
    /// (review139 condition 1): only the last take from this queue of the connection's
    /// thread that sends it matches, once (it is cleared), so a client never gives back
    /// what it did not take, nor twice, and a joinable queue's counts stay exact (its task
    /// is no longer the taker's, and `unfinished` counts it still, queued). A remote
    /// client's other threads may take from the queue in between: each has its own entry
    /// (mgr108). No match (another take of that thread's since: a get of this queue made
    /// while the item was decoding, its `Deserialize` calling a proxy on the same thread
    /// and connection, replaces the outer take, review170 M2; a thread
    /// forgotten past [`Takes::MAX`]; or none): the item is dropped and nothing changes
    /// here; the task stays the taker's until its client, told `false`, marks it done. A
    /// queue shut down and empty has told its gets `ShutDown`: the item is dropped and, on
    /// a joinable queue, counted done as `shutdown(immediate)` counts the items it drops,
    /// so that a `join` does not wait for a task its live taker was told it did not take
    /// (`true`: matched, the client must not mark it done too). The item goes to the front
    /// whatever the queue's length: a bounded queue that a parked put filled after the take
    /// then holds `maxsize + 1` items for a while (refusing would lose the item; puts still
    /// wait until it is below `maxsize`), as after [`Store::requeue_given_back`].
    fn give_back(&mut self, owner: Owner, taken: u64, item: Stored, fx: &mut Effects) -> bool {
        if !self.clear_take(owner.conn, Some(owner.thread), taken) {
            fx.dropped.push(item);
            return false;
        }
        if self.joinable {
            self.count(owner.holder, -1);
        }
        if self.shutdown && self.items.is_empty() {
            if self.joinable {
                self.unfinished = self.unfinished.saturating_sub(1);
            }
            fx.dropped.push(item);
            return true;
        }
        self.items.push_front(item);
        true
    }

    /// `holder` marked a task done: counted against its own count whoever took the task,
    /// so that another holder's task is never told lost for it (review112 M1).
    fn done_by(&mut self, holder: Holder) {
        self.count(holder, -1);
    }

    fn count(&mut self, holder: Holder, by: i64) {
        let n = self.taken.entry(holder).or_default();
        *n = n.saturating_add(by);
        if *n == 0 {
            self.taken.remove(&holder);
        }
    }

    /// `holder` died: its count goes to `lost`, whatever its sign; whether it had one.
    fn take_back(&mut self, holder: Holder) -> bool {
        let Some(n) = self.taken.remove(&holder) else { return false };
        self.lost = self.lost.saturating_add(n);
        true
    }

    /// `Some(lost)` when tasks are unfinished and every one was taken by a dead holder.
    ///
    /// The counts, live and dead, sum to takes less dones, which is `unfinished` less the
    /// items queued; the dead's counts with the live counts below zero (tasks a live holder
    /// finished for another) are therefore `unfinished` only when no live holder holds a
    /// task and nothing is queued, as in the family's `Tasks::lost_then`.
    fn all_lost(&self) -> Option<u64> {
        if !self.joinable || self.unfinished == 0 {
            return None;
        }
        let offset: i64 = self.taken.values().filter(|&&n| n < 0).fold(0, |a, &n| a.saturating_add(n));
        let told = self.lost.saturating_add(offset);
        u64::try_from(told).ok().filter(|&told| told > 0 && told >= self.unfinished)
    }
}

/// A semaphore. Permits are counted per holder, so that a dead holder's come back; a release
/// follows the family's [`Semaphore`](crate::Semaphore) rules, so that a permit handed over
/// never comes back twice: a holder's release gives back one of its own, a non-holder's one
/// held by another holder (handed over to it) or, if none is held, makes an *extra* permit,
/// which an acquire takes first and which nobody holds once taken.
#[derive(Debug)]
struct SemState {
    value: u64,
    initial: u64,
    bounded: bool,
    waiters: VecDeque<Waiter>,
    held: HashMap<Holder, u64>,
    /// Permits in `value` that a non-holder released.
    extra: u64,
    /// Permits in `value` taken back from dead holders: each tells its next taker.
    recovered: u64,
}

impl SemState {
    /// Takes a permit for `holder` (`value > 0`).
    fn take(&mut self, holder: Holder) -> Out<ObjectId> {
        self.value -= 1;
        if self.extra > 0 {
            self.extra -= 1;
            return Out::Bool(true);
        }
        *self.held.entry(holder).or_insert(0) += 1;
        if self.recovered > 0 {
            self.recovered -= 1;
            Out::AcquiredFromDead
        } else {
            Out::Bool(true)
        }
    }

    /// Gives a permit back on behalf of `holder` (the bound checked by the caller).
    fn give(&mut self, holder: Holder) {
        let mine = match self.held.get(&holder) {
            Some(_) => Some(holder),
            None => self.held.keys().min().copied(),
        };
        match mine {
            Some(h) => {
                let n = self.held.get_mut(&h).expect("listed");
                *n -= 1;
                if *n == 0 {
                    self.held.remove(&h);
                }
            }
            None => self.extra += 1,
        }
        self.value += 1;
    }

    /// Takes back the permits `holder` held (it died); whether it held any.
    fn take_back(&mut self, holder: Holder) -> bool {
        let Some(n) = self.held.remove(&holder) else { return false };
        self.value += n;
        self.recovered += n;
        true
    }
}

#[derive(Debug)]
struct BarrierState {
    parties: u64,
    timeout: Wait,
    /// Run in the server by the request that trips the barrier.
    action: Option<fn()>,
    waiting: Vec<Waiter>,
    broken: bool,
}

enum Body {
    Dict(IndexMap<Box<[u8]>, Stored>),
    List {
        items: Vec<Stored>,
        version: u64,
    },
    Namespace(IndexMap<String, Stored>),
    Value(Stored),
    Array(Vec<Stored>),
    Queue(QueueState),
    Lock(LockState),
    RLock(LockState),
    Semaphore(SemState),
    Event {
        flag: bool,
        waiters: Vec<Waiter>,
    },
    Condition {
        lock: LockState,
        waiters: VecDeque<(Waiter, u64)>,
    },
    Barrier(BarrierState),
    Custom {
        type_name: String,
        /// Which type it is, to check each call's fingerprint against.
        identity: Identity,
        /// `None` while it is out, on a worker, for a call ([`Job`]).
        value: Option<Box<dyn DynManaged>>,
        /// Calls waiting for the value to come back, in the order they came.
        waiting: VecDeque<(Waiter, Op)>,
    },
    /// Elements by their encoding, in insertion order (plain data: a proxy is no element).
    Set(IndexSet<Box<[u8]>>),
}

impl Body {
    fn kind(&self) -> Kind {
        match self {
            Body::Dict(_) => Kind::Dict,
            Body::List { .. } => Kind::List,
            Body::Namespace(_) => Kind::Namespace,
            Body::Value(_) => Kind::Value,
            Body::Array(_) => Kind::Array,
            Body::Queue(q) if q.joinable => Kind::JoinableQueue,
            Body::Queue(_) => Kind::Queue,
            Body::Lock(_) => Kind::Lock,
            Body::RLock(_) => Kind::RLock,
            Body::Semaphore(SemState { bounded: true, .. }) => Kind::BoundedSemaphore,
            Body::Semaphore(_) => Kind::Semaphore,
            Body::Event { .. } => Kind::Event,
            Body::Condition { .. } => Kind::Condition,
            Body::Barrier(_) => Kind::Barrier,
            Body::Custom { .. } => Kind::Custom,
            Body::Set(_) => Kind::Set,
        }
    }

    /// Every stored item, taken out (the object is being deleted).
    fn drain_items(&mut self) -> Vec<Stored> {
        match self {
            Body::Dict(map) => map.drain(..).map(|(_, v)| v).collect(),
            Body::List { items, .. } | Body::Array(items) => std::mem::take(items),
            Body::Namespace(map) => map.drain(..).map(|(_, v)| v).collect(),
            Body::Value(v) => vec![std::mem::replace(v, Stored { bytes: Box::new([]), refs: Vec::new() })],
            Body::Queue(q) => q.items.drain(..).chain(q.putters.drain(..).map(|(_, s)| s)).collect(),
            _ => Vec::new(),
        }
    }
}

struct Object {
    refs: u64,
    body: Body,
}

/// What a timer entry wakes: (deadline, object, connection, sequence number).
type Timer = (Instant, ObjectId, ConnId, u64);

/// The server's objects.
pub(crate) struct Store {
    objects: IdMap<ObjectId, Object>,
    next_id: ObjectId,
    /// Registered types by name: each name's constructor and type.
    types: HashMap<String, (Constructor, Identity)>,
    /// Barrier actions, by name.
    actions: HashMap<String, fn()>,
    timers: BTreeSet<Timer>,
    out: Vec<Outgoing>,
    shutting_down: bool,
    /// The process behind each family connection (others hold permits as themselves).
    holders: IdMap<ConnId, Holder>,
    /// The emptied buffers of the last call (its items, its stored arguments, what it
    /// dropped), for the next: a call allocates only for the bytes it keeps or answers.
    spare: Spare,
    /// Items taken back from dead getters this sweep ([`Store::give_back`]), to go back
    /// once every dead connection is closed ([`Store::requeue_given_back`]).
    given_back: Vec<(ObjectId, Stored)>,
    /// User code for the server's workers (see the module's docs).
    jobs: Vec<Job>,
    /// The caller of each call out on a worker, by ticket (gone once its connection closed).
    out_calls: IdMap<u64, (Owner, u64)>,
    next_ticket: u64,
    /// Registered objects whose value is in while calls wait in their FIFO, each of a
    /// remote connection without room for its answer ([`Store::next_call`]); sent out by
    /// [`Store::send_stalled`] as room comes. Some may be gone, or no longer stalled.
    stalled: BTreeSet<ObjectId>,
}

/// Whether a connection has room for one more answer (`remote::must_wait`'s negation; a
/// family connection always has): a call queued on a registered object goes out to a
/// worker only then, as a remote request is handled only then.
pub(crate) type Room<'a> = &'a dyn Fn(ConnId) -> bool;

/// An emptied buffer to keep as a spare, or a new one if it grew large (a call with many
/// items: its buffers are not kept for the small calls after it).
fn shed<C: Default + Capacity>(buffer: C) -> C {
    if buffer.capacity() > SPARE_MAX { C::default() } else { buffer }
}

/// The most elements a spare buffer keeps room for.
const SPARE_MAX: usize = 64;

/// The room of a buffer.
trait Capacity {
    fn capacity(&self) -> usize;
}

impl<T> Capacity for Vec<T> {
    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }
}

impl<T> Capacity for VecDeque<T> {
    fn capacity(&self) -> usize {
        VecDeque::capacity(self)
    }
}

/// See [`Store::spare`].
#[derive(Default)]
struct Spare {
    items: Vec<Item<ObjectId>>,
    args: VecDeque<Stored>,
    dropped: Vec<Stored>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("objects", &self.objects.len()).field("timers", &self.timers.len()).finish()
    }
}

fn deadline_of(wait: Wait, now: Instant) -> Option<Instant> {
    wait.map(|ns| now.checked_add(Duration::from_nanos(ns)).unwrap_or(now + Duration::from_secs(86400 * 365)))
}

/// Python's index rules: negative counts from the end.
fn normalize(index: i64, len: usize) -> Option<usize> {
    let len_i = len as i64;
    let i = if index < 0 { index + len_i } else { index };
    (0..len_i).contains(&i).then_some(i as usize)
}

impl Store {
    /// A store holding only the registry of published objects.
    pub(crate) fn new() -> Self {
        let mut objects = IdMap::default();
        // Pinned: one reference that nothing gives back.
        objects.insert(REGISTRY, Object { refs: 1, body: Body::Dict(IndexMap::new()) });
        Self {
            objects,
            next_id: REGISTRY + 1,
            types: HashMap::new(),
            actions: HashMap::new(),
            timers: BTreeSet::new(),
            out: Vec::new(),
            shutting_down: false,
            holders: IdMap::default(),
            spare: Spare::default(),
            given_back: Vec::new(),
            jobs: Vec::new(),
            out_calls: IdMap::default(),
            stalled: BTreeSet::new(),
            next_ticket: 1,
        }
    }

    /// Makes a registered type available to `Create::Custom`, in place of another type of
    /// that name (the builder's: the last registered wins, as Python's `register`).
    pub(crate) fn register(&mut self, name: &str, constructor: Constructor, identity: Identity) {
        self.types.insert(name.to_string(), (constructor, identity));
    }

    /// Makes a registered type available, unless the name is taken (a client's
    /// `Control::Register`: a name keeps its first type, and a create or call of another
    /// type under it is refused, whichever process sent it, review112 L2).
    pub(crate) fn register_new(&mut self, name: &str, constructor: Constructor, identity: Identity) {
        self.types.entry(name.to_string()).or_insert((constructor, identity));
    }

    /// Registers a barrier action under `name`.
    pub(crate) fn register_action(&mut self, name: &str, action: fn()) {
        self.actions.insert(name.to_string(), action);
    }

    /// How many objects exist (the registry included).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.objects.len()
    }

    /// The kind of object `id`, if it exists.
    pub(crate) fn kind_of(&self, id: ObjectId) -> Option<Kind> {
        self.objects.get(&id).map(|o| o.body.kind())
    }

    /// The answers produced so far.
    pub(crate) fn take_replies(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.out)
    }

    /// Hands back the emptied list of [`Store::take_replies`], so that the next answer
    /// does not allocate one.
    pub(crate) fn reuse_replies(&mut self, mut emptied: Vec<Outgoing>) {
        if self.out.is_empty() {
            emptied.clear();
            self.out = emptied;
        }
    }

    /// Whether answers wait to be taken.
    pub(crate) fn has_replies(&self) -> bool {
        !self.out.is_empty()
    }

    /// From now on, every request is refused with [`Fault::ShuttingDown`], and parked ones
    /// are answered so.
    pub(crate) fn shut_down(&mut self) {
        self.shutting_down = true;
        let conns: Vec<ConnId> = self.parked_conns();
        for conn in conns {
            self.cancel_waiters(conn, Some(Fault::ShuttingDown));
        }
        // A method still running on a worker is not waited for: its caller is told now, and
        // the method dies with the server's process (as in Python).
        let out: Vec<(Owner, u64)> = self.out_calls.drain().map(|(_, caller)| caller).collect();
        for (owner, seq) in out {
            self.reply(owner, seq, Err(Fault::ShuttingDown));
        }
    }

    /// Whether user code waits for a worker ([`Store::take_jobs`]).
    pub(crate) fn has_jobs(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// The user code to run on the server's workers, in the order it came.
    pub(crate) fn take_jobs(&mut self) -> Vec<Job> {
        std::mem::take(&mut self.jobs)
    }

    /// A registered type's call came back from its worker: the value goes back to its
    /// object (dropped on a worker if the object was deleted meanwhile), the answer to the
    /// caller if its connection is still open (its ticket), and the object's next waiting
    /// call whose connection has `room` goes out.
    pub(crate) fn finish_job(&mut self, done: Done, room: Room) {
        let Done { ticket, id, value, result } = done;
        match self.objects.get_mut(&id).map(|obj| &mut obj.body) {
            Some(Body::Custom { value: slot @ None, .. }) => *slot = Some(value),
            _ => self.jobs.push(Job { ticket: 0, id, work: Work::Drop(value) }),
        }
        match self.out_calls.remove(&ticket) {
            Some((owner, seq)) => self.reply_from(Some(id), owner, seq, result),
            // Its connection closed: nobody waits for it (it carries no reference).
            None => drop(result),
        }
        self.next_call(id, room);
    }

    /// Sends object `id`'s first waiting call whose connection has `room` out, if its value
    /// is in. A call of a connection without room (a remote client not reading its
    /// answers) stays queued, the object stalled ([`Store::send_stalled`]), and the calls
    /// of other connections behind it go first; one connection's calls keep their order
    /// (its room is asked once: see [`Store::next_call_past`]). Checked here, not when the
    /// call joined the FIFO (review155 M2: a remote client's 200 `get_value`s queued
    /// behind a slow method were all answered, 199 MiB against a 16 MiB budget).
    fn next_call(&mut self, id: ObjectId, room: Room) {
        self.next_call_past(id, room, &mut Vec::new());
    }

    /// [`Store::next_call`], passing over the calls of the connections in `without` (sorted),
    /// those found without room earlier in the same scan, and adding those found so now.
    /// A connection's room is asked once a scan (review158 L1: it was asked for each of
    /// its queued calls, a lock of the writers' map each, in every step in which an answer
    /// was written anywhere; and room coming between two looks sent its later call first).
    /// A connection found without room that has some by the end of the scan is looked at
    /// again at the next: `Server::step` scans again when an answer was written since it
    /// read the count, and every look comes after that read.
    fn next_call_past(&mut self, id: ObjectId, room: Room, without: &mut Vec<ConnId>) {
        self.stalled.remove(&id);
        let Some(Body::Custom { value: Some(_), waiting, .. }) = self.objects.get_mut(&id).map(|obj| &mut obj.body)
        else {
            return;
        };
        let mut has_room = |conn: ConnId| match without.binary_search(&conn) {
            Ok(_) => false,
            Err(_) if room(conn) => true,
            Err(at) => {
                without.insert(at, conn);
                false
            }
        };
        match waiting.iter().position(|(waiter, _)| has_room(waiter.owner.conn)) {
            Some(i) => {
                let (waiter, op) = waiting.remove(i).expect("found just now");
                self.send_out(id, waiter, op);
            }
            None if !waiting.is_empty() => {
                self.stalled.insert(id);
            }
            None => {}
        }
    }

    /// Whether calls wait on objects whose value is in, for their connections' room.
    pub(crate) fn has_stalled(&self) -> bool {
        !self.stalled.is_empty()
    }

    /// Sends out the calls that wait for room on objects whose value is in (see
    /// [`Store::next_call`]), those of connections with `room` now.
    pub(crate) fn send_stalled(&mut self, room: Room) {
        let mut without = Vec::new();
        for id in std::mem::take(&mut self.stalled) {
            self.next_call_past(id, room, &mut without);
        }
    }

    /// Takes object `id`'s value (in) out for call `op` of `waiter`, as a job with a
    /// ticket.
    fn send_out(&mut self, id: ObjectId, waiter: Waiter, op: Op) {
        let Some(Body::Custom { type_name, value, .. }) = self.objects.get_mut(&id).map(|obj| &mut obj.body) else {
            return;
        };
        let Some(taken) = value.take() else { return };
        let work = match op {
            Op::Method { name, args, .. } => {
                Work::Method { type_name: type_name.clone(), value: taken, name, args: args.bytes }
            }
            _ => Work::Copy(taken),
        };
        let ticket = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1).max(1);
        self.out_calls.insert(ticket, (waiter.owner, waiter.seq));
        self.jobs.push(Job { ticket, id, work });
    }

    /// A call of registered type object `id` (which exists, of that kind): checked here,
    /// then sent out to a worker, or queued behind the calls before it while the value is
    /// out. Its arguments are never stored (a method's may hold no proxy): nothing to count.
    fn custom_call(&mut self, owner: Owner, seq: u64, id: ObjectId, op: Op) {
        let Some(Body::Custom { type_name, identity, value, waiting }) =
            self.objects.get_mut(&id).map(|obj| &mut obj.body)
        else {
            return;
        };
        let fingerprint = match &op {
            Op::Method { fingerprint, .. } | Op::Copy { fingerprint } => *fingerprint,
            _ => return self.reply(owner, seq, Err(Fault::Unsupported { kind: Kind::Custom })),
        };
        if identity.fingerprint(matches!(owner.holder, Holder::Process { .. })) != fingerprint {
            let fault = Fault::TypeMismatch { type_name: type_name.clone() };
            return self.reply(owner, seq, Err(fault));
        }
        if let Op::Method { args, .. } = &op
            && !args.refs.is_empty()
        {
            return self.reply(owner, seq, Err(Fault::Malformed("a method's arguments cannot hold proxies".into())));
        }
        let waiter = Waiter { owner, seq, deadline: None };
        let is_in = value.is_some();
        waiting.push_back((waiter, op));
        if is_in {
            // The calls waiting (if any) wait for their connections' room (`next_call`);
            // this one's connection has it (its request was not deferred), and its own
            // calls before it, if any, go first.
            self.next_call(id, &|conn| conn == owner.conn);
        }
    }

    fn parked_conns(&self) -> Vec<ConnId> {
        let mut conns: Vec<ConnId> = self.timers.iter().map(|t| t.2).collect();
        for obj in self.objects.values() {
            visit_waiters(&obj.body, &mut |w| conns.push(w.owner.conn));
        }
        conns.sort_unstable();
        conns.dedup();
        conns
    }

    fn reply(&mut self, owner: Owner, seq: u64, result: Result<Out<ObjectId>, Fault>) {
        self.reply_from(None, owner, seq, result);
    }

    /// [`Store::reply`] to a call of `object`.
    fn reply_from(&mut self, object: Option<ObjectId>, owner: Owner, seq: u64, result: Result<Out<ObjectId>, Fault>) {
        if seq != 0 {
            self.out.push(Outgoing { conn: owner.conn, seq, result, object });
        } else if let Ok(out) = result {
            // Nobody waits for this answer: give back what it carries.
            self.release_out(out);
        }
    }

    /// Gives back the references an answer carried (it could not be delivered).
    pub(crate) fn release_out(&mut self, out: Out<ObjectId>) {
        let refs: Vec<ObjectId> = out.refs().into_iter().copied().collect();
        for id in refs {
            self.decref(id, 1);
        }
    }

    // ---- references ----------------------------------------------------------------------

    /// One more reference to `id` (if it exists).
    fn incref(&mut self, id: ObjectId) -> bool {
        match self.objects.get_mut(&id) {
            Some(obj) => {
                // Saturates: an object counted `u64::MAX` times lives until the server ends.
                obj.refs = obj.refs.saturating_add(1);
                true
            }
            None => false,
        }
    }

    /// `count` references to `id` fewer; deletes what nothing refers to any more.
    pub(crate) fn decref(&mut self, id: ObjectId, count: u64) {
        let mut work = vec![(id, count)];
        while let Some((id, count)) = work.pop() {
            let Some(obj) = self.objects.get_mut(&id) else { continue };
            obj.refs = obj.refs.saturating_sub(count);
            if obj.refs > 0 || id == REGISTRY {
                continue;
            }
            let mut obj = self.objects.remove(&id).expect("present");
            for stored in obj.body.drain_items() {
                work.extend(stored.refs.into_iter().map(|r| (r, 1)));
            }
            let mut orphans = Vec::new();
            visit_waiters(&obj.body, &mut |w| orphans.push((w.owner, w.seq)));
            for (owner, seq) in orphans {
                self.reply(owner, seq, Err(Fault::NoSuchObject(id)));
            }
            self.timers.retain(|t| t.1 != id);
            // A registered value's `Drop` is user code, run on a worker (a value out there
            // is dropped when it comes back, `finish_job`).
            if let Body::Custom { value, .. } = &mut obj.body
                && let Some(value) = value.take()
            {
                self.jobs.push(Job { ticket: 0, id, work: Work::Drop(value) });
            }
            // A registered value's `Drop` is user code: its panic (printed by the hook) is
            // the object's alone, and the server goes on.
            let _ = panics::catching("manager", || drop(obj));
        }
    }

    /// Turns a received item into a stored one, counting its references.
    fn store(&mut self, item: Item<ObjectId>) -> Result<Stored, Fault> {
        if let Some(&bad) = item.refs.iter().find(|r| !self.objects.contains_key(r)) {
            return Err(Fault::BadReference(bad));
        }
        for &r in &item.refs {
            self.incref(r);
        }
        Ok(Stored { bytes: item.bytes.into_boxed_slice(), refs: item.refs })
    }

    fn store_all(&mut self, items: Vec<Item<ObjectId>>) -> Result<Vec<Stored>, Fault> {
        let mut stored = Vec::with_capacity(items.len());
        for item in items {
            match self.store(item) {
                Ok(s) => stored.push(s),
                Err(f) => {
                    for s in stored {
                        self.discard(s);
                    }
                    return Err(f);
                }
            }
        }
        Ok(stored)
    }

    /// [`Store::store_all`] of `items` (emptied) onto `args` (empty): on a fault, nothing is
    /// kept and both are left empty.
    fn store_into(&mut self, items: &mut Vec<Item<ObjectId>>, args: &mut VecDeque<Stored>) -> Result<(), Fault> {
        let mut fault = None;
        for item in items.drain(..) {
            if fault.is_some() {
                continue;
            }
            match self.store(item) {
                Ok(s) => args.push_back(s),
                Err(f) => fault = Some(f),
            }
        }
        match fault {
            None => Ok(()),
            Some(f) => {
                for s in std::mem::take(args) {
                    self.discard(s);
                }
                Err(f)
            }
        }
    }

    /// A stored item that is dropped: its references go.
    fn discard(&mut self, stored: Stored) {
        for r in stored.refs {
            self.decref(r, 1);
        }
    }

    fn key(item: Item<ObjectId>) -> Result<Box<[u8]>, Fault> {
        if item.refs.is_empty() {
            Ok(item.bytes.into_boxed_slice())
        } else {
            Err(Fault::Malformed("a proxy cannot be a key".into()))
        }
    }

    // ---- requests --------------------------------------------------------------------------

    /// Handles one request of connection `conn`; a request that parks with a timeout counts
    /// it from `now`, or from a clock read then if `None` (most requests never need the
    /// time, and the server does not read the clock for them).
    pub(crate) fn handle(&mut self, conn: ConnId, envelope: Envelope, now: Option<Instant>) {
        let holder = self.holders.get(&conn).copied().unwrap_or(Holder::Conn(conn));
        let owner = Owner { conn, thread: envelope.thread, holder };
        let seq = envelope.seq;
        if self.shutting_down {
            if let Request::Release { id, count } = envelope.request {
                self.decref(id, count);
            }
            self.reply(owner, seq, Err(Fault::ShuttingDown));
            return;
        }
        match envelope.request {
            Request::Ping => self.reply(owner, seq, Ok(Out::Unit)),
            Request::CountObjects => {
                let n = self.objects.len() as u64 - 1;
                self.reply(owner, seq, Ok(Out::Count(n)));
            }
            Request::Release { id, count } => self.decref(id, count),
            Request::Create(create) => {
                let result = self.create(create, matches!(holder, Holder::Process { .. }));
                self.reply(owner, seq, result);
            }
            Request::Call { id, kind, op } => {
                let found = match self.objects.get(&id) {
                    None => Err(Fault::NoSuchObject(id)),
                    Some(obj) if obj.body.kind() != kind => {
                        Err(Fault::WrongKind { expected: kind, found: obj.body.kind() })
                    }
                    Some(_) => Ok(()),
                };
                match found {
                    Err(fault) => {
                        // A value sent along is not kept: nothing to count.
                        self.reply(owner, seq, Err(fault));
                    }
                    Ok(()) if kind == Kind::Custom => self.custom_call(owner, seq, id, op),
                    Ok(()) => {
                        if let Some(result) = self.call(owner, seq, id, op, now) {
                            self.reply_from(Some(id), owner, seq, result);
                        }
                        self.settle(id);
                    }
                }
            }
        }
    }

    /// A dict's get or set of items without references (`quick::read_call`), done at once
    /// and answered through `answer` (not for a request numbered 0, which nobody waits
    /// for); `false` when it must go the long way ([`Store::handle`]), having done nothing:
    /// the server shutting down, no dict `id`, a value found or replaced that holds
    /// references (a copy of one counts them, the one replaced gives them back, and either
    /// may answer other requests first). What is done and answered is what
    /// [`Store::handle`] does and answers: a set keeps the key where it was, as a dict
    /// does; a value of the same length as the one it replaces is written over it.
    pub(crate) fn quick(&mut self, call: &QuickCall<'_>, answer: impl FnOnce(QuickAnswer<'_>)) -> bool {
        if self.shutting_down {
            return false;
        }
        let Some(Object { body: Body::Dict(map), .. }) = self.objects.get_mut(&call.id) else { return false };
        match call.op {
            QuickOp::DictGet => {
                let found = map.get(call.key);
                if found.is_some_and(|stored| !stored.refs.is_empty()) {
                    return false;
                }
                if call.seq != 0 {
                    answer(QuickAnswer::Maybe(found.map(|stored| &*stored.bytes)));
                }
            }
            QuickOp::DictSet => {
                match map.get_mut(call.key) {
                    Some(stored) if !stored.refs.is_empty() => return false,
                    Some(stored) if stored.bytes.len() == call.value.len() => stored.bytes.copy_from_slice(call.value),
                    Some(stored) => stored.bytes = call.value.into(),
                    None => {
                        map.insert(call.key.into(), Stored { bytes: call.value.into(), refs: Vec::new() });
                    }
                }
                if call.seq != 0 {
                    answer(QuickAnswer::Unit);
                }
            }
        }
        true
    }

    /// Makes the object; `family`: for a family client (a registered type's fingerprint is
    /// then its `exact` one, else its `contract`).
    fn create(&mut self, create: Create, family: bool) -> Result<Out<ObjectId>, Fault> {
        let body = match create {
            Create::Dict(pairs) => {
                let mut map = IndexMap::with_capacity(pairs.len().min(1024));
                for (k, v) in pairs {
                    let key = match Self::key(k) {
                        Ok(key) => key,
                        Err(f) => {
                            self.drop_map(map);
                            return Err(f);
                        }
                    };
                    match self.store(v) {
                        Ok(v) => {
                            if let Some(old) = map.insert(key, v) {
                                self.discard(old);
                            }
                        }
                        Err(f) => {
                            self.drop_map(map);
                            return Err(f);
                        }
                    }
                }
                Body::Dict(map)
            }
            Create::List(items) => Body::List { items: self.store_all(items)?, version: 0 },
            Create::Set(items) => Body::Set(items.into_iter().map(Self::key).collect::<Result<IndexSet<_>, _>>()?),
            Create::Namespace => Body::Namespace(IndexMap::new()),
            Create::Value(item) => Body::Value(self.store(item)?),
            Create::Array(items) => Body::Array(self.store_all(items)?),
            Create::Queue { maxsize, joinable } => Body::Queue(QueueState {
                items: VecDeque::new(),
                maxsize,
                getters: VecDeque::new(),
                putters: VecDeque::new(),
                joinable,
                unfinished: 0,
                taken: BTreeMap::new(),
                lost: 0,
                last_take: IdMap::default(),
                joiners: Vec::new(),
                shutdown: false,
            }),
            Create::Lock => Body::Lock(LockState::default()),
            Create::RLock => Body::RLock(LockState::default()),
            Create::Semaphore { value, bounded } => {
                if value > SEMAPHORE_MAX {
                    return Err(Fault::Overflow("the semaphore's value".into()));
                }
                Body::Semaphore(SemState {
                    value,
                    initial: value,
                    bounded,
                    waiters: VecDeque::new(),
                    held: HashMap::new(),
                    extra: 0,
                    recovered: 0,
                })
            }
            Create::Event => Body::Event { flag: false, waiters: Vec::new() },
            Create::Condition => Body::Condition { lock: LockState::default(), waiters: VecDeque::new() },
            Create::Barrier { parties, timeout, action } => {
                if parties == 0 {
                    return Err(Fault::Malformed("a barrier needs at least one party".into()));
                }
                let action = match action {
                    None => None,
                    Some(name) => match self.actions.get(&name) {
                        Some(action) => Some(*action),
                        None => {
                            return Err(Fault::UnknownMethod { type_name: "Barrier action".into(), method: name });
                        }
                    },
                };
                Body::Barrier(BarrierState { parties, timeout, action, waiting: Vec::new(), broken: false })
            }
            Create::Custom { type_name, fingerprint, value } => {
                if !value.refs.is_empty() {
                    return Err(Fault::Malformed("a registered type's value cannot hold proxies".into()));
                }
                let Some((constructor, identity)) = self.types.get(&type_name).copied() else {
                    return Err(Fault::UnknownType(type_name));
                };
                if identity.fingerprint(family) != fingerprint {
                    return Err(Fault::TypeMismatch { type_name });
                }
                let made = panics::catching("manager", || constructor(&value.bytes));
                match made {
                    Ok(Ok(value)) => Body::Custom { type_name, identity, value: Some(value), waiting: VecDeque::new() },
                    Ok(Err(why)) => return Err(Fault::MethodFailed(why)),
                    Err(info) => return Err(Fault::MethodFailed(info.message)),
                }
            }
        };
        let id = self.next_id;
        // One id per request: 2^64 of them take longer than any server runs.
        self.next_id = self.next_id.wrapping_add(1);
        let kind = body.kind();
        // The one reference travels with the answer.
        self.objects.insert(id, Object { refs: 1, body });
        Ok(Out::Created { id, kind, handout: id })
    }

    fn drop_map(&mut self, map: IndexMap<Box<[u8]>, Stored>) {
        for (_, v) in map {
            self.discard(v);
        }
    }

    /// Runs `op` on object `id` (which exists, of the right kind). `None`: parked.
    fn call(
        &mut self,
        owner: Owner,
        seq: u64,
        id: ObjectId,
        mut op: Op,
        now: Option<Instant>,
    ) -> Option<Result<Out<ObjectId>, Fault>> {
        // Items that the operation may keep are stored (their references counted) before the
        // object is borrowed; those it does not keep are discarded after.
        let mut items = std::mem::take(&mut self.spare.items);
        take_items(&mut op, &mut items);
        let mut args = std::mem::take(&mut self.spare.args);
        let stored = self.store_into(&mut items, &mut args);
        self.spare.items = shed(items);
        if let Err(fault) = stored {
            self.spare.args = shed(args);
            return Some(Err(fault));
        }
        let mut fx = Effects { dropped: std::mem::take(&mut self.spare.dropped), ..Effects::default() };
        let obj = self.objects.get_mut(&id).expect("checked by the caller");
        let result = apply(&mut obj.body, Call { owner, seq, now, op }, &mut args, &mut fx);
        fx.dropped.extend(args.drain(..));
        self.spare.args = shed(args);
        self.finish(id, fx);
        result
    }

    /// Applies what an operation did besides answering.
    fn finish(&mut self, id: ObjectId, mut fx: Effects) {
        for r in fx.copies {
            self.incref(r);
        }
        for s in fx.dropped.drain(..) {
            self.discard(s);
        }
        if self.spare.dropped.capacity() == 0 {
            self.spare.dropped = shed(fx.dropped);
        }
        if let Some((deadline, conn, seq)) = fx.timer {
            self.timers.insert((deadline, id, conn, seq));
        }
        for (deadline, conn, seq) in fx.untimed {
            self.timers.remove(&(deadline, id, conn, seq));
        }
        for (owner, seq, result) in fx.replies {
            self.reply_from(Some(id), owner, seq, result);
        }
    }

    /// Answers the parked requests of `id` that can be answered now.
    fn settle(&mut self, id: ObjectId) {
        let mut fx = Effects::default();
        let Some(obj) = self.objects.get_mut(&id) else { return };
        settle(&mut obj.body, &mut fx);
        self.finish(id, fx);
    }

    /// The earliest deadline of a parked request.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|t| t.0)
    }

    /// Answers the parked requests whose deadline passed.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(&timer) = self.timers.first() {
            if timer.0 > now {
                break;
            }
            self.timers.remove(&timer);
            let (_, id, conn, seq) = timer;
            let mut fx = Effects::default();
            let Some(obj) = self.objects.get_mut(&id) else { continue };
            time_out(&mut obj.body, conn, seq, &mut fx);
            self.finish(id, fx);
            self.settle(id);
        }
    }

    /// Connection `conn` belongs to a family process: the semaphore permits its requests
    /// take are that process's, and come back when [`Store::holder_died`] says it died.
    pub(crate) fn conn_opened(&mut self, conn: ConnId, pid: u32, start: u64) {
        self.holders.insert(conn, Holder::Process { pid, start });
    }

    /// The family processes that hold semaphore permits, or a `Lock` past the connection
    /// that acquired it, for the server to watch.
    pub(crate) fn permit_holders(&self) -> Vec<(u32, u64)> {
        let mut found = BTreeSet::new();
        let process = |h: &Holder| match *h {
            Holder::Process { pid, start } => Some((pid, start)),
            Holder::Conn(_) => None,
        };
        for obj in self.objects.values() {
            match &obj.body {
                Body::Semaphore(sem) => found.extend(sem.held.keys().filter_map(process)),
                Body::Queue(q) => found.extend(q.taken.keys().filter_map(process)),
                Body::Lock(LockState { owner: Some(o), .. }) if o.conn == PROCESS_HELD => {
                    found.extend(process(&o.holder));
                }
                _ => {}
            }
        }
        found.into_iter().collect()
    }

    /// Family process `pid` (started at `start`) died: the semaphore permits it held come
    /// back, each telling its next taker, and so do the `Lock`s it held past their
    /// connections.
    pub(crate) fn holder_died(&mut self, pid: u32, start: u64) {
        self.take_back(Holder::Process { pid, start });
    }

    fn take_back(&mut self, holder: Holder) {
        let ids: Vec<ObjectId> = self
            .objects
            .iter_mut()
            .filter_map(|(&id, obj)| match &mut obj.body {
                Body::Semaphore(sem) => sem.take_back(holder).then_some(id),
                Body::Queue(q) => q.take_back(holder).then_some(id),
                Body::Lock(l) if l.owner.is_some_and(|o| o.conn == PROCESS_HELD && o.holder == holder) => {
                    l.owner = None;
                    l.count = 0;
                    l.owner_died = true;
                    Some(id)
                }
                _ => None,
            })
            .collect();
        for id in ids {
            self.settle(id);
        }
    }

    /// Connection `conn` is gone: its parked requests are forgotten and the locks it held
    /// released (a barrier it waited at breaks, so that the other parties do not wait for
    /// it forever); a connection that held semaphore permits as itself (a remote client's)
    /// gives them back. A `Lock` that a family connection holds stays held while its
    /// process lives (`process_lives`: a thread's goodbye, not a death found by the sweep):
    /// a `Lock` is its process's, as the family's is, and a guard may outlive its thread.
    /// But when the connection's call numbered `abandoned_from` went unanswered (it timed
    /// out, the client gave up the connection), a `Lock` that call or a later request of it
    /// took is nobody's, released as a dead holder's (nobody will release it); one taken by
    /// an earlier call stays its live process's (its guard may live on). So with a task of a
    /// joinable queue that call took: it is lost (its client never saw the item), not its
    /// live process's to do.
    pub(crate) fn drop_conn_from(&mut self, conn: ConnId, process_lives: bool, abandoned_from: Option<u64>) {
        let holder = self.holders.remove(&conn);
        if holder.is_none() {
            self.take_back(Holder::Conn(conn));
        }
        let kept = holder.filter(|_| process_lives);
        let ids: Vec<ObjectId> = self.objects.keys().copied().collect();
        for id in ids {
            let mut fx = Effects::default();
            let Some(obj) = self.objects.get_mut(&id) else { continue };
            forget_conn(&mut obj.body, conn, holder, kept, abandoned_from, &mut fx);
            self.finish(id, fx);
            self.settle(id);
        }
        self.timers.retain(|t| t.2 != conn);
        // Its calls out on workers answer nobody when they come back (the number may be
        // another connection's by then).
        self.out_calls.retain(|_, (owner, _)| owner.conn != conn);
    }

    /// An item answered to connection `conn`'s `get` numbered `seq`, which its client died
    /// without reading (the server took the answer back from a family client's reply ring,
    /// or from a remote connection's writer, which never wrote it),
    /// is given back to its queue, with the references it holds; a task so given back is
    /// no longer its dead taker's (aud82 L1). Before the connection is dropped (it reads
    /// `conn`'s holder, and its queue's last take for a family connection). The item goes back to the front of its
    /// queue, and to a parked getter if any, only at [`Store::requeue_given_back`], once
    /// every dead connection of the sweep is closed (review117 H1). The item back when no
    /// queue matches, or when that queue is shut down and empty: such a
    /// queue takes nothing back, its gets were told `ShutDown` (or, `immediate`, its items
    /// dropped), and the task stays its dead taker's, told lost to `join` (review117 M1). A
    /// queue shut down plain that still holds items has told no get `ShutDown` and is still
    /// drained by its consumers, so it takes the item back (review123 L2). The caller then
    /// gives its references back. `queue`: the object that answered, when known (a remote
    /// connection's writer keeps it with the answer, [`Outgoing::object`]): that queue
    /// takes it back, whichever of the connection's takes it was (the frame is the server's
    /// own, and each kept frame is taken back once: mgr104; before, only the connection's
    /// last take matched, and a remote client with several gets of one queue unwritten got
    /// only the last back); else (a family reply ring's answer) the queue whose last take by
    /// `conn` was numbered `seq`, exact for a family connection, which has one call in
    /// flight. A remote client may number its requests as it likes: by number alone, one
    /// that reused a number for gets of two queues had one queue's item put in the other
    /// (review139 L2).
    pub(crate) fn give_back(
        &mut self,
        conn: ConnId,
        queue: Option<ObjectId>,
        seq: u64,
        item: Item<ObjectId>,
    ) -> Result<(), Item<ObjectId>> {
        // As `Store::handle` counts the take: a remote connection holds as itself.
        let holder = Some(self.holders.get(&conn).copied().unwrap_or(Holder::Conn(conn)));
        let found = match queue {
            // The server's own answer, kept unwritten with the queue that made it: a take of
            // that queue's, whichever of the connection's takes it was.
            Some(queue) => match self.objects.get_mut(&queue).map(|obj| &mut obj.body) {
                Some(Body::Queue(q)) => Some((queue, q)),
                _ => None,
            },
            None => self.objects.iter_mut().find_map(|(&id, obj)| match &mut obj.body {
                Body::Queue(q) if q.last_take.get(&conn).is_some_and(|takes| takes.has(seq)) => Some((id, q)),
                _ => None,
            }),
        };
        let Some((id, q)) = found else { return Err(item) };
        if q.shutdown && q.items.is_empty() {
            return Err(item);
        }
        q.clear_take(conn, None, seq);
        if q.joinable
            && let Some(holder) = holder
        {
            q.count(holder, -1);
        }
        self.given_back.push((id, Stored { bytes: item.bytes.into_boxed_slice(), refs: item.refs }));
        Ok(())
    }

    /// Puts the items [`Store::give_back`] took back at the front of their queues, in the
    /// order they were given back (a queue is FIFO: those one connection took come back in
    /// the order it took them, first at the front; before, in the reverse order), and hands
    /// them to parked getters.
    /// After every dead connection of the sweep is closed. A queue may hold `maxsize + 1`
    /// items or more after (it filled meanwhile): refusing would lose the item. An item
    /// whose queue has gone gives its references back.
    pub(crate) fn requeue_given_back(&mut self) {
        let mut requeued = Vec::new();
        for (id, stored) in std::mem::take(&mut self.given_back).into_iter().rev() {
            match self.objects.get_mut(&id).map(|obj| &mut obj.body) {
                Some(Body::Queue(q)) => q.items.push_front(stored),
                _ => {
                    for r in stored.refs {
                        self.decref(r, 1);
                    }
                    continue;
                }
            }
            if !requeued.contains(&id) {
                requeued.push(id);
            }
        }
        // Once all are back: a parked getter takes the first, not the last put back.
        for id in requeued {
            self.settle(id);
        }
    }

    /// [`Store::drop_conn_from`] of a connection none of whose calls was abandoned (the
    /// tests' shorthand).
    #[cfg(test)]
    pub(crate) fn drop_conn(&mut self, conn: ConnId, process_lives: bool) {
        self.drop_conn_from(conn, process_lives, None);
    }

    /// Answers every parked request of `conn` with `fault` (or forgets them, for `None`).
    fn cancel_waiters(&mut self, conn: ConnId, fault: Option<Fault>) {
        let ids: Vec<ObjectId> = self.objects.keys().copied().collect();
        for id in ids {
            let mut fx = Effects::default();
            let Some(obj) = self.objects.get_mut(&id) else { continue };
            let mut cancelled = Vec::new();
            take_waiters(&mut obj.body, &mut |w| w.owner.conn == conn, &mut cancelled, &mut fx);
            if let Some(fault) = &fault {
                for (owner, seq) in cancelled {
                    fx.replies.push((owner, seq, Err(fault.clone())));
                }
            }
            self.finish(id, fx);
        }
        self.timers.retain(|t| t.2 != conn);
    }
}

/// What an operation did besides its answer, applied by [`Store::finish`] once the object
/// is no longer borrowed.
#[derive(Default)]
struct Effects {
    /// References copied into answers, to count anew.
    copies: Vec<ObjectId>,
    /// Stored items dropped: their references go.
    dropped: Vec<Stored>,
    /// The deadline of the request just parked.
    timer: Option<(Instant, ConnId, u64)>,
    /// Deadlines of parked requests answered.
    untimed: Vec<(Instant, ConnId, u64)>,
    /// Answers to parked requests.
    replies: Vec<(Owner, u64, Result<Out<ObjectId>, Fault>)>,
}

impl Effects {
    /// An answer's copy of a stored item.
    fn copy(&mut self, stored: &Stored) -> Item<ObjectId> {
        self.copies.extend_from_slice(&stored.refs);
        Item { bytes: stored.bytes.to_vec(), refs: stored.refs.clone() }
    }

    /// Parks the request being handled.
    fn park(&mut self, call: &Call, wait: Wait) -> Waiter {
        let deadline = deadline_of(wait, call.now.unwrap_or_else(Instant::now));
        if let Some(d) = deadline {
            self.timer = Some((d, call.owner.conn, call.seq));
        }
        Waiter { owner: call.owner, seq: call.seq, deadline }
    }

    /// Answers a parked request.
    fn answer(&mut self, waiter: Waiter, result: Result<Out<ObjectId>, Fault>) {
        if let Some(d) = waiter.deadline {
            self.untimed.push((d, waiter.owner.conn, waiter.seq));
        }
        self.replies.push((waiter.owner, waiter.seq, result));
    }
}

/// The request being handled.
struct Call {
    owner: Owner,
    seq: u64,
    /// The time to count a timeout from (`None`: read the clock if one is needed).
    now: Option<Instant>,
    op: Op,
}

/// An answer's item, moved out of its container with its references.
fn move_out(stored: Stored) -> Item<ObjectId> {
    Item { bytes: stored.bytes.into_vec(), refs: stored.refs }
}

fn plain(bytes: &[u8]) -> Item<ObjectId> {
    Item { bytes: bytes.to_vec(), refs: Vec::new() }
}

/// The next stored argument (one per item the request carried, in order).
fn next(args: &mut VecDeque<Stored>) -> Stored {
    args.pop_front().unwrap_or(Stored { bytes: Box::new([]), refs: Vec::new() })
}

/// A dict key: plain bytes (a proxy is no key).
fn key(args: &mut VecDeque<Stored>, fx: &mut Effects) -> Result<Box<[u8]>, Fault> {
    let k = next(args);
    if k.refs.is_empty() {
        Ok(k.bytes)
    } else {
        fx.dropped.push(k);
        Err(Fault::Malformed("a proxy cannot be a key".into()))
    }
}

/// The next `n` arguments as set elements (plain bytes).
fn set_elements(args: &mut VecDeque<Stored>, n: usize, fx: &mut Effects) -> Result<IndexSet<Box<[u8]>>, Fault> {
    (0..n).map(|_| key(args, fx)).collect()
}

/// Python's insertion index: negative counts from the end, out of range clamps.
fn insertion_index(index: i64, len: usize) -> usize {
    let len_i = len as i64;
    let i = if index < 0 { (index + len_i).max(0) } else { index.min(len_i) };
    i as usize
}

/// Takes the items out of a request, in order (leaving empty ones behind), so that the
/// store can count their references before the object is borrowed.
fn take_items(op: &mut Op, out: &mut Vec<Item<ObjectId>>) {
    let mut take =
        |item: &mut Item<ObjectId>| out.push(std::mem::replace(item, Item { bytes: Vec::new(), refs: Vec::new() }));
    match op {
        Op::Contains(i)
        | Op::DictGet(i)
        | Op::DictRemove(i)
        | Op::ListPush(i)
        | Op::ListInsert(_, i)
        | Op::ListSet(_, i)
        | Op::ListRemove(i)
        | Op::ListIndex(i)
        | Op::ListCount(i)
        | Op::AttrSet(_, i)
        | Op::ValueSet(i)
        | Op::Put { item: i, .. }
        | Op::GiveBack { item: i, .. }
        | Op::Method { args: i, .. } => take(i),
        Op::DictSet(k, v) | Op::DictSetDefault(k, v) | Op::DictPutBack { key: k, value: v, .. } => {
            take(k);
            take(v);
        }
        Op::DictUpdate(pairs) => {
            for (k, v) in pairs {
                take(k);
                take(v);
            }
        }
        Op::SetAdd(i) | Op::SetDiscard(i) => take(i),
        Op::ListExtend(items)
        | Op::ListReplace { items, .. }
        | Op::SetAlgebra { items, .. }
        | Op::SetRelation { items, .. } => items.iter_mut().for_each(take),
        _ => {}
    }
}

fn lock_acquire(
    l: &mut LockState,
    call: &Call,
    wait: Wait,
    recursive: bool,
    fx: &mut Effects,
) -> Option<Result<Out<ObjectId>, Fault>> {
    if recursive && l.owner == Some(call.owner) {
        return Some(match l.count.checked_add(1) {
            Some(count) => {
                l.count = count;
                Ok(Out::Bool(true))
            }
            None => Err(Fault::Overflow("the lock's recursion depth".into())),
        });
    }
    if l.owner.is_none() && l.waiters.is_empty() {
        l.owner = Some(call.owner);
        l.granted_seq = call.seq;
        l.count = 1;
        return Some(Ok(l.granted(!recursive)));
    }
    if wait == Some(0) {
        return Some(Ok(Out::Bool(false)));
    }
    let waiter = fx.park(call, wait);
    l.waiters.push_back((waiter, None));
    None
}

fn lock_release(l: &mut LockState, owner: Owner, recursive: bool) -> Result<Out<ObjectId>, Fault> {
    match l.owner {
        None => Err(Fault::NotAcquired),
        Some(o) if recursive && o != owner => Err(Fault::NotOwner),
        Some(_) => {
            l.count = l.count.saturating_sub(1);
            if !recursive || l.count == 0 {
                l.owner = None;
                l.count = 0;
            }
            Ok(Out::Unit)
        }
    }
}

fn run_method(type_name: &str, value: &mut dyn DynManaged, method: &str, args: &[u8]) -> Result<Out<ObjectId>, Fault> {
    match panics::catching("manager", || value.dispatch(method, args)) {
        Ok(Ok(bytes)) => Ok(Out::Item(Item { bytes, refs: Vec::new() })),
        Ok(Err(MethodError::Unknown)) => {
            Err(Fault::UnknownMethod { type_name: type_name.to_string(), method: method.to_string() })
        }
        Ok(Err(MethodError::Codec(why))) => Err(Fault::MethodFailed(why)),
        Err(info) => Err(Fault::MethodFailed(match info.location {
            Some(at) => format!("panicked at {at}: {}", info.message),
            None => format!("panicked: {}", info.message),
        })),
    }
}

/// Runs an operation on an object. `None`: the request was parked.
fn apply(
    body: &mut Body,
    call: Call,
    args: &mut VecDeque<Stored>,
    fx: &mut Effects,
) -> Option<Result<Out<ObjectId>, Fault>> {
    let kind = body.kind();
    let owner = call.owner;
    let result = match (body, &call.op) {
        // ---- containers
        (Body::Dict(map), Op::Len) => Ok(Out::Count(map.len() as u64)),
        (Body::List { items, .. } | Body::Array(items), Op::Len) => Ok(Out::Count(items.len() as u64)),
        (Body::Namespace(map), Op::Len) => Ok(Out::Count(map.len() as u64)),
        (Body::Dict(map), Op::Clear) => {
            fx.dropped.extend(map.drain(..).map(|(_, v)| v));
            Ok(Out::Unit)
        }
        (Body::List { items, version }, Op::Clear) => {
            fx.dropped.append(items);
            *version = version.wrapping_add(1);
            Ok(Out::Unit)
        }
        (Body::Namespace(map), Op::Clear) => {
            fx.dropped.extend(map.drain(..).map(|(_, v)| v));
            Ok(Out::Unit)
        }
        (Body::List { items, version }, Op::Snapshot) => {
            Ok(Out::Versioned { version: *version, items: items.iter().map(|s| fx.copy(s)).collect() })
        }
        (Body::Array(items), Op::Snapshot) => {
            Ok(Out::Versioned { version: 0, items: items.iter().map(|s| fx.copy(s)).collect() })
        }
        (Body::Dict(map), Op::Contains(_)) => {
            let k = next(args);
            let found = map.contains_key(&k.bytes);
            fx.dropped.push(k);
            Ok(Out::Bool(found))
        }
        (Body::List { items, .. } | Body::Array(items), Op::Contains(_)) => {
            let x = next(args);
            let found = items.iter().any(|s| s.bytes == x.bytes);
            fx.dropped.push(x);
            Ok(Out::Bool(found))
        }

        // ---- set
        (Body::Set(set), Op::Len) => Ok(Out::Count(set.len() as u64)),
        (Body::Set(set), Op::Clear) => {
            set.clear();
            Ok(Out::Unit)
        }
        (Body::Set(set), Op::Snapshot) => {
            Ok(Out::Versioned { version: 0, items: set.iter().map(|e| plain(e)).collect() })
        }
        (Body::Set(set), Op::Contains(_)) => {
            let x = next(args);
            let found = set.contains(&x.bytes);
            fx.dropped.push(x);
            Ok(Out::Bool(found))
        }
        (Body::Set(set), Op::SetAdd(_)) => key(args, fx).map(|e| {
            set.insert(e);
            Out::Unit
        }),
        (Body::Set(set), Op::SetDiscard(_)) => {
            let x = next(args);
            let found = set.shift_remove(&x.bytes);
            fx.dropped.push(x);
            Ok(Out::Bool(found))
        }
        (Body::Set(set), Op::SetPop) => Ok(Out::MaybeItem(set.pop().map(|e| plain(&e)))),
        (Body::Set(set), Op::SetAlgebra { algebra, items, in_place }) => {
            let (algebra, in_place) = (*algebra, *in_place);
            match set_elements(args, items.len(), fx) {
                Err(f) => Err(f),
                Ok(other) => {
                    let result: IndexSet<Box<[u8]>> = match algebra {
                        SetAlgebra::Union => set.iter().chain(other.iter()).cloned().collect(),
                        SetAlgebra::Intersection => set.iter().filter(|e| other.contains(*e)).cloned().collect(),
                        SetAlgebra::Difference => set.iter().filter(|e| !other.contains(*e)).cloned().collect(),
                        SetAlgebra::SymmetricDifference => set
                            .iter()
                            .filter(|e| !other.contains(*e))
                            .chain(other.iter().filter(|e| !set.contains(*e)))
                            .cloned()
                            .collect(),
                    };
                    if in_place {
                        *set = result;
                        Ok(Out::Unit)
                    } else {
                        Ok(Out::Items(result.iter().map(|e| plain(e)).collect()))
                    }
                }
            }
        }
        (Body::Set(set), Op::SetRelation { relation, items }) => {
            let relation = *relation;
            set_elements(args, items.len(), fx).map(|other| {
                Out::Bool(match relation {
                    SetRelation::Subset => set.iter().all(|e| other.contains(e)),
                    SetRelation::Superset => other.iter().all(|e| set.contains(e)),
                    SetRelation::Disjoint => set.iter().all(|e| !other.contains(e)),
                })
            })
        }

        // ---- dict
        (Body::Dict(map), Op::DictSet(..)) => match key(args, fx) {
            Ok(k) => {
                let v = next(args);
                if let Some(old) = map.insert(k, v) {
                    fx.dropped.push(old);
                }
                Ok(Out::Unit)
            }
            Err(f) => Err(f),
        },
        // A lookup key holding a proxy finds nothing (a proxy is no key) but was stored
        // as sent, its references counted: they go (review170 M1).
        (Body::Dict(map), Op::DictGet(_)) => {
            let k = next(args);
            let found = map.get(&k.bytes).map(|s| fx.copy(s));
            fx.dropped.push(k);
            Ok(Out::MaybeItem(found))
        }
        (Body::Dict(map), Op::DictRemove(_)) => {
            let k = next(args);
            // Found: with its index, where a value that did not decode goes back.
            let found = map.shift_remove_full(&k.bytes);
            fx.dropped.push(k);
            Ok(match found {
                Some((index, _, v)) => Out::Removed { index: index as u64, item: move_out(v) },
                None => Out::MaybeItem(None),
            })
        }
        (Body::Dict(map), Op::DictUpdate(pairs)) => {
            let mut result = Ok(Out::Unit);
            for _ in 0..pairs.len() {
                match key(args, fx) {
                    Ok(k) => {
                        if let Some(old) = map.insert(k, next(args)) {
                            fx.dropped.push(old);
                        }
                    }
                    Err(f) => {
                        result = Err(f);
                        break;
                    }
                }
            }
            result
        }
        (Body::Dict(map), Op::DictSetDefault(..)) => match key(args, fx) {
            Ok(k) => {
                // A key set already keeps its value: the default is dropped, its
                // references with it (review170 M1: `setdefault(k, manager.list())` kept
                // a list a call; mgr108's dict put-back drops a value so).
                let default = next(args);
                let entry = match map.entry(k) {
                    indexmap::map::Entry::Occupied(e) => {
                        fx.dropped.push(default);
                        e.into_mut()
                    }
                    indexmap::map::Entry::Vacant(e) => e.insert(default),
                };
                Ok(Out::Item(fx.copy(entry)))
            }
            Err(f) => Err(f),
        },
        (Body::Dict(map), Op::DictPutBack { index, .. }) => match key(args, fx) {
            Ok(k) => {
                let value = next(args);
                if map.contains_key(&k) {
                    // Set meanwhile: the newer value stays, the given-back one goes.
                    fx.dropped.push(value);
                } else {
                    let at = usize::try_from(*index).unwrap_or(usize::MAX).min(map.len());
                    map.shift_insert(at, k, value);
                }
                Ok(Out::Unit)
            }
            Err(f) => Err(f),
        },
        (Body::Dict(map), Op::DictPopItem) => {
            Ok(Out::Pairs(map.pop().map(|(k, v)| (plain(&k), move_out(v))).into_iter().collect()))
        }
        (Body::Dict(map), Op::Keys) => Ok(Out::Items(map.keys().map(|k| plain(k)).collect())),
        (Body::Dict(map), Op::Values) => Ok(Out::Items(map.values().map(|v| fx.copy(v)).collect())),
        (Body::Dict(map), Op::Items) => Ok(Out::Pairs(map.iter().map(|(k, v)| (plain(k), fx.copy(v))).collect())),

        // ---- list and array
        (Body::List { items, version }, Op::ListPush(_)) => {
            items.push(next(args));
            *version = version.wrapping_add(1);
            Ok(Out::Unit)
        }
        (Body::List { items, version }, Op::ListExtend(_)) => {
            items.extend(args.drain(..));
            *version = version.wrapping_add(1);
            Ok(Out::Unit)
        }
        (Body::List { items, version }, Op::ListInsert(index, _)) => {
            let at = insertion_index(*index, items.len());
            items.insert(at, next(args));
            *version = version.wrapping_add(1);
            Ok(Out::Unit)
        }
        (Body::List { items, .. } | Body::Array(items), Op::ListGet(index)) => match normalize(*index, items.len()) {
            Some(i) => Ok(Out::Item(fx.copy(&items[i]))),
            None => Err(Fault::IndexOutOfRange { index: *index, len: items.len() as u64 }),
        },
        (Body::List { items, version }, Op::ListSet(index, _)) => match normalize(*index, items.len()) {
            Some(i) => {
                fx.dropped.push(std::mem::replace(&mut items[i], next(args)));
                *version = version.wrapping_add(1);
                Ok(Out::Unit)
            }
            None => Err(Fault::IndexOutOfRange { index: *index, len: items.len() as u64 }),
        },
        (Body::Array(items), Op::ListSet(index, _)) => match normalize(*index, items.len()) {
            Some(i) => {
                fx.dropped.push(std::mem::replace(&mut items[i], next(args)));
                Ok(Out::Unit)
            }
            None => Err(Fault::IndexOutOfRange { index: *index, len: items.len() as u64 }),
        },
        (Body::List { items, version }, Op::ListPop(index)) => {
            let index = index.unwrap_or(-1);
            match normalize(index, items.len()) {
                Some(i) => {
                    *version = version.wrapping_add(1);
                    Ok(Out::Item(move_out(items.remove(i))))
                }
                None => Err(Fault::IndexOutOfRange { index, len: items.len() as u64 }),
            }
        }
        (Body::List { items, version }, Op::ListRemove(_)) => {
            let x = next(args);
            let found = items.iter().position(|s| s.bytes == x.bytes);
            fx.dropped.push(x);
            match found {
                Some(i) => {
                    fx.dropped.push(items.remove(i));
                    *version = version.wrapping_add(1);
                    Ok(Out::Bool(true))
                }
                None => Ok(Out::Bool(false)),
            }
        }
        (Body::List { items, .. } | Body::Array(items), Op::ListIndex(_)) => {
            let x = next(args);
            let found = items.iter().position(|s| s.bytes == x.bytes);
            fx.dropped.push(x);
            found.map(|i| Out::Count(i as u64)).ok_or(Fault::ValueMissing)
        }
        (Body::List { items, .. } | Body::Array(items), Op::ListCount(_)) => {
            let x = next(args);
            let n = items.iter().filter(|s| s.bytes == x.bytes).count();
            fx.dropped.push(x);
            Ok(Out::Count(n as u64))
        }
        (Body::List { items, version }, Op::ListReverse) => {
            items.reverse();
            *version = version.wrapping_add(1);
            Ok(Out::Unit)
        }
        (Body::List { items, version }, Op::ListReplace { version: seen, .. }) => {
            if *seen == *version {
                let new: Vec<Stored> = args.drain(..).collect();
                fx.dropped.extend(std::mem::replace(items, new));
                *version = version.wrapping_add(1);
                Ok(Out::Unit)
            } else {
                Err(Fault::VersionChanged)
            }
        }

        // ---- Namespace
        (Body::Namespace(map), Op::AttrSet(name, _)) => {
            if let Some(old) = map.insert(name.clone(), next(args)) {
                fx.dropped.push(old);
            }
            Ok(Out::Unit)
        }
        (Body::Namespace(map), Op::AttrGet(name)) => match map.get(name) {
            Some(s) => Ok(Out::Item(fx.copy(s))),
            None => Err(Fault::NoSuchAttribute(name.clone())),
        },
        (Body::Namespace(map), Op::AttrDel(name)) => match map.shift_remove(name) {
            Some(s) => {
                fx.dropped.push(s);
                Ok(Out::Unit)
            }
            None => Err(Fault::NoSuchAttribute(name.clone())),
        },
        (Body::Namespace(map), Op::AttrNames) => Ok(Out::Names(map.keys().cloned().collect())),

        // ---- Value
        (Body::Value(v), Op::ValueGet) => Ok(Out::Item(fx.copy(v))),
        (Body::Value(v), Op::ValueSet(_)) => {
            fx.dropped.push(std::mem::replace(v, next(args)));
            Ok(Out::Unit)
        }

        // ---- queues
        (Body::Queue(q), Op::Put { wait, .. }) => {
            let item = next(args);
            if q.shutdown {
                fx.dropped.push(item);
                Err(Fault::ShutDown)
            } else if q.putters.is_empty() && (q.maxsize == 0 || (q.items.len() as u64) < q.maxsize) {
                q.items.push_back(item);
                if q.joinable {
                    q.unfinished = q.unfinished.saturating_add(1);
                }
                Ok(Out::Unit)
            } else if *wait == Some(0) {
                fx.dropped.push(item);
                Err(Fault::Full)
            } else {
                let waiter = fx.park(&call, *wait);
                q.putters.push_back((waiter, item));
                return None;
            }
        }
        (Body::Queue(q), Op::Get { wait }) => {
            if q.getters.is_empty()
                && let Some(item) = q.items.pop_front()
            {
                q.took(owner, call.seq);
                Ok(Out::Item(move_out(item)))
            } else if q.shutdown && q.items.is_empty() {
                Err(Fault::ShutDown)
            } else if *wait == Some(0) {
                Err(Fault::Empty)
            } else {
                let waiter = fx.park(&call, *wait);
                q.getters.push_back(waiter);
                return None;
            }
        }
        (Body::Queue(q), Op::GiveBack { seq: taken, .. }) => {
            // Stored as a put's (its references counted, each checked to exist), so the
            // client's own references, dropped once this is answered, are not the item's.
            let item = next(args);
            Ok(Out::Bool(q.give_back(owner, *taken, item, fx)))
        }
        (Body::Queue(q), Op::QSize) => Ok(Out::Sizes { len: q.items.len() as u64, max: q.maxsize }),
        (Body::Queue(q), Op::QueueIsShutdown) => Ok(Out::Bool(q.shutdown)),
        (Body::Queue(q), Op::QueueShutdown { immediate }) => {
            q.shutdown = true;
            for (waiter, item) in q.putters.drain(..) {
                fx.dropped.push(item);
                fx.answer(waiter, Err(Fault::ShutDown));
            }
            if *immediate {
                let drained = q.items.len() as u64;
                fx.dropped.extend(q.items.drain(..));
                if q.joinable {
                    q.unfinished = q.unfinished.saturating_sub(drained);
                }
            }
            // (The waiting getters and joiners are answered by `settle`.)
            Ok(Out::Unit)
        }
        (Body::Queue(q), Op::TaskDone) if q.joinable => {
            if q.unfinished == 0 {
                Err(Fault::NotAcquired)
            } else {
                q.unfinished -= 1;
                q.done_by(owner.holder);
                Ok(Out::Unit)
            }
        }
        (Body::Queue(q), Op::Join { wait }) if q.joinable => {
            if q.unfinished == 0 {
                Ok(Out::Bool(true))
            } else if let Some(lost) = q.all_lost() {
                Err(Fault::TasksLost { lost })
            } else if *wait == Some(0) {
                Ok(Out::Bool(false))
            } else {
                let waiter = fx.park(&call, *wait);
                q.joiners.push(waiter);
                return None;
            }
        }

        // ---- locks
        (Body::Lock(l), Op::Acquire { wait }) => return lock_acquire(l, &call, *wait, false, fx),
        (Body::RLock(l), Op::Acquire { wait }) => return lock_acquire(l, &call, *wait, true, fx),
        (Body::Condition { lock, .. }, Op::Acquire { wait }) => return lock_acquire(lock, &call, *wait, true, fx),
        (Body::Lock(l), Op::Release) => lock_release(l, owner, false),
        (Body::Lock(l), Op::ReleaseHold { hold }) => {
            let mine = l.owner.is_some() && l.hold == *hold;
            if mine {
                l.owner = None;
                l.count = 0;
            }
            Ok(Out::Bool(mine))
        }
        (Body::RLock(l), Op::Release) => lock_release(l, owner, true),
        (Body::Condition { lock, .. }, Op::Release) => lock_release(lock, owner, true),
        (Body::Lock(l) | Body::RLock(l), Op::Locked) => Ok(Out::Bool(l.owner.is_some())),
        (Body::Condition { lock, .. }, Op::Locked) => Ok(Out::Bool(lock.owner.is_some())),
        (Body::Semaphore(sem), Op::Acquire { wait }) => {
            if sem.value > 0 && sem.waiters.is_empty() {
                Ok(sem.take(call.owner.holder))
            } else if *wait == Some(0) {
                Ok(Out::Bool(false))
            } else {
                let waiter = fx.park(&call, *wait);
                sem.waiters.push_back(waiter);
                return None;
            }
        }
        (Body::Semaphore(sem), Op::Release) => {
            if sem.bounded && sem.value >= sem.initial {
                Err(Fault::NotAcquired)
            } else if sem.value >= SEMAPHORE_MAX {
                Err(Fault::Overflow("the semaphore's value".into()))
            } else {
                sem.give(call.owner.holder);
                Ok(Out::Unit)
            }
        }
        (Body::Semaphore(sem), Op::SemValue) => Ok(Out::Count(sem.value)),
        (Body::Semaphore(sem), Op::Locked) => Ok(Out::Bool(sem.value == 0)),

        // ---- Event
        (Body::Event { flag, .. }, Op::EventSet) => {
            *flag = true;
            Ok(Out::Unit)
        }
        (Body::Event { flag, .. }, Op::EventClear) => {
            *flag = false;
            Ok(Out::Unit)
        }
        (Body::Event { flag, .. }, Op::EventIsSet) => Ok(Out::Bool(*flag)),
        (Body::Event { flag, waiters }, Op::EventWait { wait }) => {
            if *flag {
                Ok(Out::Bool(true))
            } else if *wait == Some(0) {
                Ok(Out::Bool(false))
            } else {
                let waiter = fx.park(&call, *wait);
                waiters.push(waiter);
                return None;
            }
        }

        // ---- Condition
        (Body::Condition { lock, waiters }, Op::CondWait { wait }) => {
            if lock.owner != Some(owner) {
                Err(Fault::NotOwner)
            } else {
                let depth = lock.count;
                lock.owner = None;
                lock.count = 0;
                let waiter = fx.park(&call, *wait);
                waiters.push_back((waiter, depth));
                return None;
            }
        }
        (Body::Condition { lock, waiters }, Op::CondNotify { n }) => {
            if lock.owner != Some(owner) {
                Err(Fault::NotOwner)
            } else {
                for _ in 0..*n {
                    let Some((mut waiter, depth)) = waiters.pop_front() else { break };
                    if let Some(d) = waiter.deadline.take() {
                        fx.untimed.push((d, waiter.owner.conn, waiter.seq));
                    }
                    lock.waiters.push_back((waiter, Some((depth, true))));
                }
                Ok(Out::Unit)
            }
        }

        // ---- Barrier
        (Body::Barrier(b), Op::BarrierWait { wait }) => {
            if b.broken {
                Err(Fault::BrokenBarrier)
            } else if b.waiting.len() as u64 + 1 >= b.parties {
                // The action runs before any party is released; a panic breaks the
                // barrier for all (Python's rule).
                if let Some(action) = b.action
                    && panics::catching("manager", action).is_err()
                {
                    b.broken = true;
                    for waiter in b.waiting.drain(..) {
                        fx.answer(waiter, Err(Fault::BrokenBarrier));
                    }
                    return Some(Err(Fault::BrokenBarrier));
                }
                let index = b.waiting.len() as u64;
                for (i, waiter) in b.waiting.drain(..).enumerate() {
                    fx.answer(waiter, Ok(Out::Count(i as u64)));
                }
                Ok(Out::Count(index))
            } else {
                let waiter = fx.park(&call, wait.or(b.timeout));
                b.waiting.push(waiter);
                return None;
            }
        }
        (Body::Barrier(b), Op::BarrierReset) => {
            for waiter in b.waiting.drain(..) {
                fx.answer(waiter, Err(Fault::BrokenBarrier));
            }
            b.broken = false;
            Ok(Out::Unit)
        }
        (Body::Barrier(b), Op::BarrierAbort) => {
            b.broken = true;
            for waiter in b.waiting.drain(..) {
                fx.answer(waiter, Err(Fault::BrokenBarrier));
            }
            Ok(Out::Unit)
        }
        (Body::Barrier(b), Op::BarrierState) => {
            Ok(Out::Barrier { parties: b.parties, waiting: b.waiting.len() as u64, broken: b.broken })
        }

        // ---- registered types: `Store::custom_call`, never here.
        _ => Err(Fault::Unsupported { kind }),
    };
    Some(result)
}

/// Hands a free lock to its first waiter, and so on while it stays free; a plain `Lock`'s
/// (`numbered`) grants carry their hold's number.
fn settle_lock(l: &mut LockState, numbered: bool, fx: &mut Effects) {
    while l.owner.is_none() {
        let Some((waiter, back)) = l.waiters.pop_front() else { break };
        l.owner = Some(waiter.owner);
        l.granted_seq = waiter.seq;
        l.count = back.map_or(1, |(depth, _)| depth.max(1));
        // A condition waiter taking its lock back answers its wait (whether it was
        // notified), and is told of a dead holder as an acquire is.
        let answer = match back {
            Some((_, notified)) if std::mem::take(&mut l.owner_died) => Out::RetookFromDead(notified),
            Some((_, notified)) => Out::Bool(notified),
            None => l.granted(numbered),
        };
        fx.answer(waiter, Ok(answer));
    }
}

/// Answers what the object's state now allows.
fn settle(body: &mut Body, fx: &mut Effects) {
    match body {
        Body::Lock(l) => settle_lock(l, true, fx),
        Body::RLock(l) | Body::Condition { lock: l, .. } => settle_lock(l, false, fx),
        Body::Semaphore(sem) => {
            while sem.value > 0 {
                let Some(waiter) = sem.waiters.pop_front() else { break };
                let answer = sem.take(waiter.owner.holder);
                fx.answer(waiter, Ok(answer));
            }
        }
        Body::Event { flag: true, waiters } => {
            for waiter in waiters.drain(..) {
                fx.answer(waiter, Ok(Out::Bool(true)));
            }
        }
        Body::Queue(q) => loop {
            let mut moved = false;
            while !q.getters.is_empty()
                && let Some(item) = q.items.pop_front()
            {
                let waiter = q.getters.pop_front().expect("checked");
                q.took(waiter.owner, waiter.seq);
                fx.answer(waiter, Ok(Out::Item(move_out(item))));
                moved = true;
            }
            while !q.putters.is_empty() && (q.maxsize == 0 || (q.items.len() as u64) < q.maxsize) {
                let (waiter, item) = q.putters.pop_front().expect("checked");
                q.items.push_back(item);
                if q.joinable {
                    q.unfinished = q.unfinished.saturating_add(1);
                }
                fx.answer(waiter, Ok(Out::Unit));
                moved = true;
            }
            if q.joinable && q.unfinished == 0 {
                for waiter in q.joiners.drain(..) {
                    fx.answer(waiter, Ok(Out::Bool(true)));
                }
            } else if let Some(lost) = q.all_lost() {
                for waiter in q.joiners.drain(..) {
                    fx.answer(waiter, Err(Fault::TasksLost { lost }));
                }
            }
            if q.shutdown && q.items.is_empty() {
                for waiter in q.getters.drain(..) {
                    fx.answer(waiter, Err(Fault::ShutDown));
                }
            }
            if !moved {
                break;
            }
        },
        _ => {}
    }
}

/// Takes out the parked request (`conn`, `seq`) whose deadline passed and answers it.
fn time_out(body: &mut Body, conn: ConnId, seq: u64, fx: &mut Effects) {
    let is = |w: &Waiter| w.owner.conn == conn && w.seq == seq;
    match body {
        Body::Lock(l) | Body::RLock(l) | Body::Condition { lock: l, .. } => {
            if let Some(i) = l.waiters.iter().position(|(w, back)| back.is_none() && is(w)) {
                let (waiter, _) = l.waiters.remove(i).expect("found");
                fx.replies.push((waiter.owner, waiter.seq, Ok(Out::Bool(false))));
                return;
            }
        }
        _ => {}
    }
    match body {
        Body::Condition { lock, waiters } => {
            // Timed out waiting for a notification: take the lock back, then answer false.
            if let Some(i) = waiters.iter().position(|(w, _)| is(w)) {
                let (mut waiter, depth) = waiters.remove(i).expect("found");
                waiter.deadline = None;
                lock.waiters.push_back((waiter, Some((depth, false))));
            }
        }
        Body::Semaphore(SemState { waiters, .. }) => {
            if let Some(i) = waiters.iter().position(is) {
                let waiter = waiters.remove(i).expect("found");
                fx.replies.push((waiter.owner, waiter.seq, Ok(Out::Bool(false))));
            }
        }
        Body::Event { waiters, .. } => {
            if let Some(i) = waiters.iter().position(is) {
                let waiter = waiters.remove(i);
                fx.replies.push((waiter.owner, waiter.seq, Ok(Out::Bool(false))));
            }
        }
        Body::Queue(q) => {
            if let Some(i) = q.getters.iter().position(is) {
                let waiter = q.getters.remove(i).expect("found");
                fx.replies.push((waiter.owner, waiter.seq, Err(Fault::Empty)));
            } else if let Some(i) = q.putters.iter().position(|(w, _)| is(w)) {
                let (waiter, item) = q.putters.remove(i).expect("found");
                fx.dropped.push(item);
                fx.replies.push((waiter.owner, waiter.seq, Err(Fault::Full)));
            } else if let Some(i) = q.joiners.iter().position(is) {
                let waiter = q.joiners.remove(i);
                fx.replies.push((waiter.owner, waiter.seq, Ok(Out::Bool(false))));
            }
        }
        // A party that gives up breaks the barrier for all (Python's rule).
        Body::Barrier(b) if b.waiting.iter().any(is) => {
            b.broken = true;
            for mut waiter in b.waiting.drain(..) {
                if waiter.owner.conn == conn && waiter.seq == seq {
                    // Its timer is gone already.
                    waiter.deadline = None;
                }
                fx.answer(waiter, Err(Fault::BrokenBarrier));
            }
        }
        _ => {}
    }
}

/// Removes the parked requests for which `matches` holds; their (owner, seq) go to
/// `taken`.
fn take_waiters(
    body: &mut Body,
    matches: &mut impl FnMut(&Waiter) -> bool,
    taken: &mut Vec<(Owner, u64)>,
    fx: &mut Effects,
) {
    let mut keep = |w: &Waiter| {
        if matches(w) {
            taken.push((w.owner, w.seq));
            false
        } else {
            true
        }
    };
    match body {
        Body::Lock(l) | Body::RLock(l) => l.waiters.retain(|(w, _)| keep(w)),
        Body::Condition { lock, waiters } => {
            lock.waiters.retain(|(w, _)| keep(w));
            waiters.retain(|(w, _)| keep(w));
        }
        Body::Semaphore(SemState { waiters, .. }) => waiters.retain(|w| keep(w)),
        Body::Event { waiters, .. } => waiters.retain(|w| keep(w)),
        Body::Queue(q) => {
            q.getters.retain(|w| keep(w));
            q.joiners.retain(|w| keep(w));
            let mut kept = VecDeque::new();
            for (w, item) in q.putters.drain(..) {
                if keep(&w) {
                    kept.push_back((w, item));
                } else {
                    fx.dropped.push(item);
                }
            }
            q.putters = kept;
        }
        Body::Barrier(b) => b.waiting.retain(|w| keep(w)),
        // Never stored: nothing to count.
        Body::Custom { waiting, .. } => waiting.retain(|(w, _)| keep(w)),
        _ => {}
    }
}

/// Forgets connection `conn`: its parked requests, the locks it holds (but a `Lock` of a
/// live family process, `kept`, which stays that process's unless the request that took it
/// was the abandoned call numbered `abandoned_from` or a later one); a barrier it waited at
/// breaks.
fn forget_conn(
    body: &mut Body,
    conn: ConnId,
    holder: Option<Holder>,
    kept: Option<Holder>,
    abandoned_from: Option<u64>,
    fx: &mut Effects,
) {
    let mut taken = Vec::new();
    take_waiters(body, &mut |w| w.owner.conn == conn, &mut taken, fx);
    match body {
        Body::Lock(l)
            if kept.is_some()
                && l.owner.is_some_and(|o| o.conn == conn)
                && abandoned_from.is_none_or(|from| l.granted_seq < from) =>
        {
            l.owner = l.owner.map(|o| Owner { conn: PROCESS_HELD, thread: 0, ..o });
        }
        Body::Lock(l) | Body::RLock(l) | Body::Condition { lock: l, .. } if l.owner.is_some_and(|o| o.conn == conn) => {
            l.owner = None;
            l.count = 0;
            l.owner_died = true;
        }
        Body::Queue(q) => {
            // A task its abandoned call took goes from its process's count to the lost
            // (review112 L1): its client never saw the item. A transfer: the sum of the
            // counts, which `all_lost` relies on, is the same.
            // (A family connection's: one thread, one take.)
            let takes = q.last_take.remove(&conn).unwrap_or_default();
            for (_, seq) in takes.0 {
                if abandoned_from.is_some_and(|from| seq >= from)
                    && let Some(holder) = holder
                    && q.joinable
                {
                    q.count(holder, -1);
                    q.lost = q.lost.saturating_add(1);
                }
            }
        }
        Body::Barrier(b) if !taken.is_empty() => {
            b.broken = true;
            for waiter in b.waiting.drain(..) {
                fx.answer(waiter, Err(Fault::BrokenBarrier));
            }
        }
        _ => {}
    }
}

/// Calls `f` for every parked request of an object.
fn visit_waiters(body: &Body, f: &mut impl FnMut(&Waiter)) {
    match body {
        Body::Queue(q) => {
            q.getters.iter().for_each(&mut *f);
            q.putters.iter().for_each(|(w, _)| f(w));
            q.joiners.iter().for_each(&mut *f);
        }
        Body::Lock(l) | Body::RLock(l) => l.waiters.iter().for_each(|(w, _)| f(w)),
        Body::Semaphore(SemState { waiters, .. }) => waiters.iter().for_each(&mut *f),
        Body::Event { waiters, .. } => waiters.iter().for_each(&mut *f),
        Body::Condition { lock, waiters } => {
            lock.waiters.iter().for_each(|(w, _)| f(w));
            waiters.iter().for_each(|(w, _)| f(w));
        }
        Body::Barrier(b) => b.waiting.iter().for_each(&mut *f),
        Body::Custom { waiting, .. } => waiting.iter().for_each(|(w, _)| f(w)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::protocol::{DEFAULT_MAX_REQUEST_MEMORY, Envelope, decode_request, encode_plain};
    use crate::manager::quick;

    const A: ConnId = 1;
    const B: ConnId = 2;
    const C: ConnId = 3;
    const D: ConnId = 4;

    fn item(bytes: &[u8], refs: &[ObjectId]) -> Item<ObjectId> {
        Item { bytes: bytes.to_vec(), refs: refs.to_vec() }
    }

    fn run(store: &mut Store, conn: ConnId, seq: u64, request: Request) -> Option<Result<Out<ObjectId>, Fault>> {
        store.handle(conn, Envelope { seq, thread: 0, request }, Some(Instant::now()));
        let mut replies = store.take_replies();
        let pos = replies.iter().position(|o| o.conn == conn && o.seq == seq)?;
        Some(replies.remove(pos).result)
    }

    /// What `Store::quick` answers for `call`, if it takes it.
    fn quick_answer(store: &mut Store, call: &QuickCall<'_>) -> Option<Out<ObjectId>> {
        let mut answered = None;
        let taken = store.quick(call, |answer| {
            answered = Some(match answer {
                QuickAnswer::Unit => Out::Unit,
                QuickAnswer::Maybe(found) => Out::MaybeItem(found.map(|b| item(b, &[]))),
            })
        });
        assert_eq!(taken, answered.is_some() || call.seq == 0, "an answer for each call taken");
        answered
    }

    /// A dict's quick gets and sets answer what the long way answers and leave the dict as
    /// it leaves it (a key set again stays where it was, a value of another length
    /// replaces the old); a value that holds references, found or replaced, and a dict of
    /// a server shutting down go the long way, and so does any other object.
    #[test]
    fn quick_calls_do_what_the_long_way_does() {
        let mut quick = Store::new();
        let mut long = Store::new();
        let dict = create(&mut quick, Create::Dict(Vec::new()));
        assert_eq!(create(&mut long, Create::Dict(Vec::new())), dict);
        let ops: [(QuickOp, &[u8], &[u8]); 8] = [
            (QuickOp::DictGet, b"a", b""),
            (QuickOp::DictSet, b"a", b"1"),
            (QuickOp::DictSet, b"b", b"2"),
            (QuickOp::DictSet, b"a", b"3"),
            (QuickOp::DictSet, b"a", b"4567"),
            (QuickOp::DictSet, b"b", b""),
            (QuickOp::DictGet, b"a", b""),
            (QuickOp::DictGet, b"b", b""),
        ];
        for (seq, (op, key, value)) in (1..).zip(ops) {
            let call = QuickCall { seq, thread: 0, id: dict, op, key, value };
            let answer = quick_answer(&mut quick, &call).expect("taken");
            let Request::Call { op, .. } = call.envelope().request else { unreachable!() };
            assert_eq!(Some(Ok(answer)), self::call(&mut long, A, seq, dict, Kind::Dict, op), "{call:?}");
        }
        let items = |store: &mut Store| self::call(store, A, 100, dict, Kind::Dict, Op::Items);
        assert_eq!(items(&mut quick), items(&mut long));
        assert_eq!(
            items(&mut quick),
            Some(Ok(Out::Pairs(vec![(item(b"a", &[]), item(b"4567", &[])), (item(b"b", &[]), item(b"", &[]))])))
        );
        // Nobody waits for a call numbered 0: done, unanswered.
        let unnumbered = QuickCall { seq: 0, thread: 0, id: dict, op: QuickOp::DictSet, key: b"c", value: b"5" };
        assert_eq!(quick_answer(&mut quick, &unnumbered), None);
        let get_c = QuickCall { seq: 1, op: QuickOp::DictGet, value: b"", ..unnumbered };
        assert_eq!(quick_answer(&mut quick, &get_c), Some(Out::MaybeItem(Some(item(b"5", &[])))));

        // A value holding a reference: the long way, found or replaced.
        let other = create(&mut quick, Create::Dict(Vec::new()));
        let set = Op::DictSet(item(b"p", &[]), item(b"proxy", &[other]));
        assert_eq!(self::call(&mut quick, A, 5, dict, Kind::Dict, set), Some(Ok(Out::Unit)));
        let get_p = QuickCall { key: b"p", ..get_c };
        assert!(!quick.quick(&get_p, |_| panic!("answered")));
        let set_p = QuickCall { op: QuickOp::DictSet, value: b"1", ..get_p };
        assert!(!quick.quick(&set_p, |_| panic!("answered")));
        // Another kind of object, or none.
        let list = create(&mut quick, Create::List(Vec::new()));
        assert!(!quick.quick(&QuickCall { id: list, ..get_c }, |_| panic!("answered")));
        assert!(!quick.quick(&QuickCall { id: 999, ..get_c }, |_| panic!("answered")));
        // Shutting down: every request is refused the long way.
        quick.shut_down();
        assert!(!quick.quick(&get_c, |_| panic!("answered")));
    }

    fn create(store: &mut Store, create: Create) -> ObjectId {
        match run(store, A, 1, Request::Create(create)) {
            Some(Ok(Out::Created { id, .. })) => id,
            other => panic!("{other:?}"),
        }
    }

    fn call(
        store: &mut Store,
        conn: ConnId,
        seq: u64,
        id: ObjectId,
        kind: Kind,
        op: Op,
    ) -> Option<Result<Out<ObjectId>, Fault>> {
        run(store, conn, seq, Request::Call { id, kind, op })
    }

    /// A registered type for these tests: `add` adds to it and answers the sum.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Tally(u64);

    impl crate::Managed for Tally {
        const NAME: &'static str = "Tally";
        type Proxy = crate::ObjectProxy<Tally>;

        fn dispatch(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, MethodError> {
            match method {
                "add" => {
                    let (by,): (u64,) = crate::manager::custom::decode_args(args)?;
                    self.0 += by;
                    crate::manager::custom::encode_result(&self.0)
                }
                _ => Err(MethodError::Unknown),
            }
        }
    }

    /// A store with a `Tally` of `n` made by connection A (a remote one: its calls carry the
    /// contract fingerprint), and the request of an `add(by)` on it.
    fn tally(n: u64) -> (Store, ObjectId, impl Fn(u64) -> Request) {
        let mut store = Store::new();
        let identity = Identity::of::<Tally>();
        store.register(<Tally as crate::Managed>::NAME, crate::manager::custom::construct::<Tally>, identity);
        let mut value = Vec::new();
        crate::codec::encode_kept(&Tally(n), &mut value).unwrap();
        let fingerprint = identity.contract;
        let id = create(
            &mut store,
            Create::Custom { type_name: <Tally as crate::Managed>::NAME.into(), fingerprint, value: item(&value, &[]) },
        );
        let add = move |by: u64| {
            let mut args = Vec::new();
            crate::codec::encode_kept(&(by,), &mut args).unwrap();
            Request::Call {
                id,
                kind: Kind::Custom,
                op: Op::Method { name: "add".into(), fingerprint, args: item(&args, &[]) },
            }
        };
        (store, id, add)
    }

    /// Runs the store's one job (a worker's part) and gives back what came of it.
    fn work_one(store: &mut Store) {
        let mut jobs = store.take_jobs();
        assert_eq!(jobs.len(), 1, "one job");
        if let Some(done) = jobs.pop().unwrap().run() {
            store.finish_job(done, &|_| true);
        }
    }

    /// The sum a `Tally`'s answer says.
    fn sum(answer: Option<Result<Out<ObjectId>, Fault>>) -> u64 {
        match answer {
            Some(Ok(Out::Item(item))) => crate::codec::decode_kept(&item.bytes).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    /// review147's first condition for running a method on a worker: a call out when its
    /// connection closes answers nobody when it comes back, not the connection given the
    /// same number whose call has the same sequence number; an object's calls go out one
    /// at a time, in the order they came.
    #[test]
    fn a_methods_answer_after_its_connection_closed_goes_to_nobody_not_to_the_numbers_next_connection() {
        let (mut store, _, add) = tally(0);
        assert_eq!(run(&mut store, B, 7, add(1)), None, "out on a worker");
        let out = store.take_jobs();
        assert_eq!(out.len(), 1);
        assert_eq!(run(&mut store, A, 2, add(10)), None, "waits for the value");
        assert!(!store.has_jobs(), "one call of an object out at a time");
        store.drop_conn(B, false);
        // A new connection numbered B, whose call is numbered 7 too.
        assert_eq!(run(&mut store, B, 7, add(100)), None);
        for job in out {
            store.finish_job(job.run().unwrap(), &|_| true);
        }
        let late: Vec<_> = store.take_replies().into_iter().map(|o| (o.conn, o.seq)).collect();
        println!("the closed connection's call, back, answered {late:?}");
        assert!(late.is_empty(), "answered {late:?}");
        work_one(&mut store);
        let replies = store.take_replies();
        assert_eq!((replies[0].conn, replies[0].seq), (A, 2));
        assert_eq!(sum(Some(replies.into_iter().next().unwrap().result)), 11, "the first call ran, then A's");
        work_one(&mut store);
        let replies = store.take_replies();
        assert_eq!((replies[0].conn, replies[0].seq), (B, 7));
        assert_eq!(sum(Some(replies.into_iter().next().unwrap().result)), 111);
    }

    /// review155 M2: a call queued on an object goes out when its connection has room for
    /// its answer, not when it joined the FIFO. One without room stays queued (its object
    /// stalled), another connection's call behind it goes first, and it goes out once its
    /// connection has room again, its own later call after it.
    #[test]
    fn a_queued_call_of_a_connection_without_room_waits_for_room_others_go_first() {
        let (mut store, _, add) = tally(0);
        assert_eq!(run(&mut store, A, 1, add(1)), None, "out on a worker");
        let out = store.take_jobs();
        assert_eq!(run(&mut store, B, 1, add(10)), None, "B's first call waits for the value");
        assert_eq!(run(&mut store, C, 1, add(100)), None, "C's call waits for the value");
        assert_eq!(run(&mut store, B, 2, add(1000)), None, "B's second call waits for the value");
        let no_room_for_b = |conn| conn != B;
        for job in out {
            store.finish_job(job.run().unwrap(), &no_room_for_b);
        }
        assert_eq!(sum(Some(store.take_replies().remove(0).result)), 1, "A's call");
        let jobs = store.take_jobs();
        store.finish_job(jobs.into_iter().next().unwrap().run().unwrap(), &no_room_for_b);
        let replies = store.take_replies();
        println!("next answered: {:?}", replies.iter().map(|o| (o.conn, o.seq)).collect::<Vec<_>>());
        assert_eq!((replies[0].conn, replies[0].seq), (C, 1), "C's call went before B's, which has no room");
        assert!(!store.has_jobs() && store.has_stalled(), "B's calls wait for room");
        store.send_stalled(&no_room_for_b);
        assert!(!store.has_jobs(), "still no room for B");
        store.send_stalled(&|_| true);
        work_one(&mut store);
        let replies = store.take_replies();
        assert_eq!((replies[0].conn, replies[0].seq), (B, 1), "B's first call");
        assert_eq!(sum(Some(replies.into_iter().next().unwrap().result)), 111);
        work_one(&mut store);
        let replies = store.take_replies();
        assert_eq!((replies[0].conn, replies[0].seq), (B, 2), "then B's second");
        assert!(!store.has_stalled());
    }

    /// review158 L1: a connection's room is asked once a scan, not once for each of its
    /// queued calls (`remote::must_wait` takes the writers' lock): one answer holds for
    /// all of them, so that room coming between two looks cannot send its later call
    /// before its earlier one, and a FIFO of many calls of a connection without room costs
    /// one look at each answer written anywhere. Before, B's second call went out first
    /// (`went out first: (B, 2)`), and a scan of 1000 calls of B looked 1000 times.
    #[test]
    fn a_connections_room_is_asked_once_a_scan_and_its_calls_keep_their_order() {
        let (mut store, _, add) = tally(0);
        assert_eq!(run(&mut store, A, 1, add(1)), None, "out on a worker");
        let out = store.take_jobs();
        assert_eq!(run(&mut store, B, 1, add(10)), None, "B's first call waits for the value");
        assert_eq!(run(&mut store, B, 2, add(100)), None, "B's second call waits for the value");
        // B's writer drains between the first look and the next: room comes.
        let looks = std::cell::Cell::new(0);
        let room_comes = |conn| {
            looks.set(looks.get() + 1);
            conn != B || looks.get() > 1
        };
        for job in out {
            store.finish_job(job.run().unwrap(), &room_comes);
        }
        assert_eq!(sum(Some(store.take_replies().remove(0).result)), 1, "A's call");
        store.send_stalled(&|_| true);
        work_one(&mut store);
        let first = store.take_replies().remove(0);
        println!("went out first: (B, {})", first.seq);
        assert_eq!((first.conn, first.seq), (B, 1), "B's calls in the order they came");
        assert_eq!(sum(Some(first.result)), 11);
        work_one(&mut store);
        assert_eq!(store.take_replies().remove(0).seq, 2);
        // A slow call out, 1000 calls of B behind it, and no room for B.
        assert_eq!(run(&mut store, A, 2, add(1)), None, "out on a worker");
        let out = store.take_jobs();
        for seq in 3..1003 {
            assert_eq!(run(&mut store, B, seq, add(0)), None, "waits for the value");
        }
        for job in out {
            store.finish_job(job.run().unwrap(), &|conn| conn != B);
        }
        store.take_replies();
        looks.set(0);
        let counted = |conn| {
            looks.set(looks.get() + 1);
            conn != B
        };
        store.send_stalled(&counted);
        println!("a scan of 1000 calls of B without room looked {} times", looks.get());
        assert!(!store.has_jobs() && store.has_stalled(), "B's calls wait for room");
        assert_eq!(looks.get(), 1, "B's room, once");
    }

    /// review155 L1: a call whose job still waits for a worker when the server shuts down
    /// (its caller told `ShuttingDown`) is never run: the worker drops it. Before, a worker
    /// took it first, ran it and kept its answer (`ran after ShuttingDown: true`).
    #[test]
    fn a_call_queued_for_a_worker_at_shutdown_never_runs() {
        let _heap = crate::shm::heap_test_user();
        let (mut store, _, add) = tally(0);
        assert_eq!(run(&mut store, A, 1, add(1)), None, "out for a worker");
        let jobs = store.take_jobs();
        store.shut_down();
        let told: Vec<_> = store.take_replies().into_iter().map(|o| o.result).collect();
        assert!(matches!(&told[..], [Err(Fault::ShuttingDown)]), "{told:?}");
        let state = crate::shm::Shared::new(super::super::state::ManagerState::new().unwrap()).unwrap();
        let workers = super::super::workers::Workers::new(state);
        workers.stop();
        assert!(workers.start(jobs).is_empty(), "a worker started");
        workers.join_all();
        println!("ran after ShuttingDown: {}", workers.has_done());
        assert!(!workers.has_done(), "the call ran after its caller was told ShuttingDown");
    }

    /// An object deleted while its value is out: the calls waiting for it are told it is
    /// gone, the call out is still answered, and the value that comes back is dropped (on a
    /// worker: a job); a shutdown answers a call out at once.
    #[test]
    fn an_object_deleted_or_shut_down_while_its_value_is_out_answers_every_caller() {
        let (mut store, id, add) = tally(5);
        assert_eq!(run(&mut store, B, 1, add(1)), None);
        let out = store.take_jobs();
        store.handle(C, Envelope { seq: 1, thread: 0, request: add(2) }, None);
        store.decref(id, 1);
        assert_eq!(store.kind_of(id), None, "deleted");
        let replies = store.take_replies();
        assert!(matches!(&replies[..], [Outgoing { conn: C, seq: 1, result: Err(Fault::NoSuchObject(_)), .. }]));
        for job in out {
            store.finish_job(job.run().unwrap(), &|_| true);
        }
        let replies = store.take_replies();
        assert_eq!((replies[0].conn, replies[0].seq), (B, 1));
        assert_eq!(sum(Some(replies.into_iter().next().unwrap().result)), 6);
        let drops = store.take_jobs();
        assert_eq!(drops.len(), 1, "the value's drop");
        assert!(drops.into_iter().all(|job| job.run().is_none()));

        let (mut store, _, add) = tally(0);
        assert_eq!(run(&mut store, B, 1, add(1)), None);
        store.handle(C, Envelope { seq: 4, thread: 0, request: add(2) }, None);
        store.shut_down();
        let mut told: Vec<_> = store.take_replies().into_iter().map(|o| (o.conn, o.seq, o.result)).collect();
        told.sort_by_key(|t| t.0);
        assert_eq!(told, [(B, 1, Err(Fault::ShuttingDown)), (C, 4, Err(Fault::ShuttingDown))]);
    }

    #[test]
    fn a_dict_in_a_list_lives_while_the_list_holds_it() {
        let mut store = Store::new();
        let list = create(&mut store, Create::List(Vec::new()));
        let dict = create(&mut store, Create::Dict(Vec::new()));
        assert_eq!(store.len(), 3);
        call(&mut store, A, 2, list, Kind::List, Op::ListPush(item(b"d", &[dict]))).unwrap().unwrap();
        // The creator's reference goes: the list still holds one.
        store.decref(dict, 1);
        assert_eq!(store.kind_of(dict), Some(Kind::Dict));
        // A copy handed out counts one more reference, for the receiver.
        let got = call(&mut store, A, 3, list, Kind::List, Op::ListGet(0)).unwrap().unwrap();
        assert_eq!(got.refs(), vec![&dict]);
        call(&mut store, A, 4, list, Kind::List, Op::Clear).unwrap().unwrap();
        assert_eq!(store.kind_of(dict), Some(Kind::Dict), "the receiver's copy keeps it");
        store.release_out(got);
        assert_eq!(store.kind_of(dict), None, "nothing refers to it any more");
        store.decref(list, 1);
        assert_eq!(store.len(), 1, "only the registry is left");
    }

    #[test]
    fn a_reference_to_nothing_is_refused() {
        let mut store = Store::new();
        let list = create(&mut store, Create::List(Vec::new()));
        let refused = call(&mut store, A, 2, list, Kind::List, Op::ListPush(item(b"x", &[999]))).unwrap();
        assert_eq!(refused, Err(Fault::BadReference(999)));
        let wrong = call(&mut store, A, 3, list, Kind::Dict, Op::Len).unwrap();
        assert!(matches!(wrong, Err(Fault::WrongKind { .. })));
    }

    #[test]
    fn a_lock_is_handed_over_in_order_and_released_when_its_holder_goes() {
        let mut store = Store::new();
        let lock = create(&mut store, Create::Lock);
        let acquire = |wait| Op::Acquire { wait };
        assert_eq!(
            call(&mut store, A, 2, lock, Kind::Lock, acquire(None)),
            Some(Ok(Out::Held { hold: 1, from_dead: false }))
        );
        // B waits: parked, no answer yet.
        assert_eq!(call(&mut store, B, 2, lock, Kind::Lock, acquire(None)), None);
        // A's connection ends: B gets the lock, and is told that its holder died.
        store.drop_conn(A, false);
        let replies = store.take_replies();
        assert_eq!(replies.len(), 1);
        assert_eq!((replies[0].conn, replies[0].seq), (B, 2));
        assert_eq!(replies[0].result, Ok(Out::Held { hold: 2, from_dead: true }));
        assert_eq!(call(&mut store, A, 3, lock, Kind::Lock, Op::Locked), Some(Ok(Out::Bool(true))));
        // Told once: the next holder took it from a live one.
        assert_eq!(call(&mut store, B, 3, lock, Kind::Lock, Op::Release), Some(Ok(Out::Unit)));
        assert_eq!(
            call(&mut store, A, 4, lock, Kind::Lock, acquire(None)),
            Some(Ok(Out::Held { hold: 3, from_dead: false }))
        );
    }

    #[test]
    fn a_family_process_keeps_its_lock_past_the_connection_that_took_it() {
        let mut store = Store::new();
        let lock = create(&mut store, Create::Lock);
        let acquire = |wait| Op::Acquire { wait };
        store.conn_opened(B, 42, 7);
        assert_eq!(
            call(&mut store, B, 2, lock, Kind::Lock, acquire(None)),
            Some(Ok(Out::Held { hold: 1, from_dead: false }))
        );
        assert_eq!(call(&mut store, C, 2, lock, Kind::Lock, acquire(None)), None, "C waits");
        // B's thread ends (its connection says goodbye), its process lives: still held.
        store.drop_conn(B, true);
        assert!(store.take_replies().is_empty(), "C is not given the lock");
        assert_eq!(store.permit_holders(), vec![(42, 7)], "the process is watched");
        // Released by another thread of the process (any connection, for a Lock): C gets it.
        assert_eq!(call(&mut store, D, 2, lock, Kind::Lock, Op::Release), Some(Ok(Out::Unit)));
        // (C's answer went out with the release's): held by C now.
        assert_eq!(call(&mut store, D, 3, lock, Kind::Lock, acquire(Some(0))), Some(Ok(Out::Bool(false))));
        assert_eq!(call(&mut store, C, 3, lock, Kind::Lock, Op::Release), Some(Ok(Out::Unit)));
        // Held past its connection again, then the process dies: released, the next told.
        store.conn_opened(B, 42, 7);
        assert_eq!(
            call(&mut store, B, 3, lock, Kind::Lock, acquire(None)),
            Some(Ok(Out::Held { hold: 3, from_dead: false }))
        );
        store.drop_conn(B, true);
        // Another thread of the process (the guard moved there) releases the hold by its
        // number, past the connection that took it.
        assert_eq!(call(&mut store, D, 4, lock, Kind::Lock, Op::ReleaseHold { hold: 3 }), Some(Ok(Out::Bool(true))));
        assert_eq!(
            call(&mut store, B, 4, lock, Kind::Lock, acquire(None)),
            Some(Ok(Out::Held { hold: 4, from_dead: false }))
        );
        store.drop_conn(B, true);
        store.holder_died(42, 7);
        assert!(store.permit_holders().is_empty());
        assert_eq!(
            call(&mut store, C, 4, lock, Kind::Lock, acquire(Some(0))),
            Some(Ok(Out::Held { hold: 5, from_dead: true }))
        );
    }

    /// mgr108: a guard's release (`ReleaseHold`) frees only its own hold of a `Lock`: after
    /// a plain `Release` (anyone's, as Python's) and another's acquire, it does nothing and
    /// says so; the holder's own frees it and hands it to the next waiter. Not for other
    /// kinds (an RLock's owner is checked by `Release`).
    #[test]
    fn a_lock_guard_releases_its_own_hold_only() {
        let mut store = Store::new();
        let lock = create(&mut store, Create::Lock);
        let k = Kind::Lock;
        let acquire = |wait| Op::Acquire { wait };
        let release_hold = |hold| Op::ReleaseHold { hold };
        assert_eq!(call(&mut store, A, 2, lock, k, acquire(None)), Some(Ok(Out::Held { hold: 1, from_dead: false })));
        assert_eq!(call(&mut store, B, 2, lock, k, Op::Release), Some(Ok(Out::Unit)), "anyone's release");
        assert_eq!(call(&mut store, C, 2, lock, k, acquire(None)), Some(Ok(Out::Held { hold: 2, from_dead: false })));
        assert_eq!(call(&mut store, A, 3, lock, k, release_hold(1)), Some(Ok(Out::Bool(false))), "A's hold is gone");
        assert_eq!(call(&mut store, A, 4, lock, k, Op::Locked), Some(Ok(Out::Bool(true))), "C's stays");
        assert_eq!(call(&mut store, B, 3, lock, k, acquire(None)), None, "B waits");
        assert_eq!(call(&mut store, C, 3, lock, k, release_hold(2)), Some(Ok(Out::Bool(true))));
        // (B's grant went out with the release's answer): B holds it, as hold 3.
        assert_eq!(call(&mut store, A, 6, lock, k, Op::Locked), Some(Ok(Out::Bool(true))));
        assert_eq!(call(&mut store, C, 4, lock, k, release_hold(2)), Some(Ok(Out::Bool(false))), "once");
        assert_eq!(call(&mut store, B, 4, lock, k, release_hold(3)), Some(Ok(Out::Bool(true))));
        assert_eq!(call(&mut store, A, 5, lock, k, release_hold(3)), Some(Ok(Out::Bool(false))), "not held");
        let rlock = create(&mut store, Create::RLock);
        assert_eq!(call(&mut store, A, 7, rlock, Kind::RLock, acquire(None)), Some(Ok(Out::Bool(true))));
        assert!(matches!(
            call(&mut store, A, 8, rlock, Kind::RLock, release_hold(1)),
            Some(Err(Fault::Unsupported { .. }))
        ));
    }

    #[test]
    fn a_lock_released_by_a_dead_holder_tells_the_next_acquire() {
        let mut store = Store::new();
        let lock = create(&mut store, Create::RLock);
        let acquire = Op::Acquire { wait: Some(0) };
        assert_eq!(call(&mut store, A, 2, lock, Kind::RLock, acquire.clone()), Some(Ok(Out::Bool(true))));
        store.drop_conn(A, false);
        assert_eq!(call(&mut store, B, 2, lock, Kind::RLock, acquire.clone()), Some(Ok(Out::AcquiredFromDead)));
        assert_eq!(call(&mut store, B, 3, lock, Kind::RLock, acquire), Some(Ok(Out::Bool(true))), "recursive");
    }

    #[test]
    fn a_dead_holders_permits_come_back_once_and_a_handed_over_one_never() {
        let mut store = Store::new();
        let sem = create(&mut store, Create::Semaphore { value: 2, bounded: true });
        let kind = Kind::BoundedSemaphore;
        let acquire = |wait| Op::Acquire { wait };
        let value = |store: &mut Store, seq| call(store, D, seq, sem, kind, Op::SemValue);
        // C takes a permit and hands it over: D releases it. C's connection ending then
        // gives nothing back.
        assert_eq!(call(&mut store, C, 2, sem, kind, acquire(Some(0))), Some(Ok(Out::Bool(true))));
        assert_eq!(call(&mut store, D, 2, sem, kind, Op::Release), Some(Ok(Out::Unit)));
        store.drop_conn(C, false);
        assert_eq!(value(&mut store, 3), Some(Ok(Out::Count(2))));
        // A (a connection as itself) and B (family process 42) take one each; D parks.
        store.conn_opened(B, 42, 7);
        assert_eq!(call(&mut store, A, 2, sem, kind, acquire(Some(0))), Some(Ok(Out::Bool(true))));
        assert_eq!(call(&mut store, B, 2, sem, kind, acquire(Some(0))), Some(Ok(Out::Bool(true))));
        assert_eq!(call(&mut store, D, 4, sem, kind, acquire(None)), None);
        // A's connection ends: its permit comes back, to D, who is told.
        store.drop_conn(A, false);
        let replies = store.take_replies();
        assert_eq!((replies[0].conn, replies[0].seq), (D, 4));
        assert_eq!(replies[0].result, Ok(Out::AcquiredFromDead));
        // B's connection ends, not its process: the permit stays held until the server says
        // the process died; then it comes back once.
        store.drop_conn(B, true);
        assert_eq!(store.permit_holders(), vec![(42, 7)]);
        assert_eq!(value(&mut store, 5), Some(Ok(Out::Count(0))));
        store.holder_died(42, 7);
        store.holder_died(42, 7);
        assert_eq!(value(&mut store, 6), Some(Ok(Out::Count(1))));
        assert!(store.permit_holders().is_empty());
        // D gives its own back; a further release is refused at the bound.
        assert_eq!(call(&mut store, D, 7, sem, kind, Op::Release), Some(Ok(Out::Unit)));
        assert_eq!(call(&mut store, D, 8, sem, kind, Op::Release), Some(Err(Fault::NotAcquired)));
        // A release by a non-holder with nothing held makes an extra permit, taken first and
        // held by nobody: its taker's connection ending gives nothing back.
        let counter = create(&mut store, Create::Semaphore { value: 0, bounded: false });
        assert_eq!(call(&mut store, C, 3, counter, Kind::Semaphore, Op::Release), Some(Ok(Out::Unit)));
        assert_eq!(call(&mut store, A, 3, counter, Kind::Semaphore, acquire(Some(0))), Some(Ok(Out::Bool(true))));
        store.drop_conn(A, false);
        assert_eq!(call(&mut store, D, 9, counter, Kind::Semaphore, Op::SemValue), Some(Ok(Out::Count(0))));
    }

    #[test]
    fn a_handed_over_task_done_does_not_make_a_live_consumers_task_lost() {
        // review112 M1: a `task_done` by a process that took nothing was charged to the
        // smallest live holder; once the real taker exited, a live consumer's task was told
        // lost.
        let mut store = Store::new();
        let q = create(&mut store, Create::Queue { maxsize: 0, joinable: true });
        let k = Kind::JoinableQueue;
        let put = |b: &[u8]| Op::Put { item: item(b, &[]), wait: None };
        // B: family process 10 (R, a live consumer); C: process 20 (P, takes and hands
        // over); D: process 30 (Q, marks P's task done).
        store.conn_opened(B, 10, 1);
        store.conn_opened(C, 20, 1);
        store.conn_opened(D, 30, 1);
        assert_eq!(call(&mut store, A, 2, q, k, put(b"x")), Some(Ok(Out::Unit)));
        assert_eq!(call(&mut store, A, 3, q, k, put(b"y")), Some(Ok(Out::Unit)));
        assert!(matches!(call(&mut store, C, 2, q, k, Op::Get { wait: Some(0) }), Some(Ok(Out::Item(_)))));
        assert!(matches!(call(&mut store, B, 2, q, k, Op::Get { wait: Some(0) }), Some(Ok(Out::Item(_)))));
        // Q finishes P's task; P's work is over, it exits (normally).
        assert_eq!(call(&mut store, D, 2, q, k, Op::TaskDone), Some(Ok(Out::Unit)));
        store.drop_conn(C, true);
        store.holder_died(20, 1);
        // R (alive) still works on its task: join must wait for it.
        let said = call(&mut store, A, 4, q, k, Op::Join { wait: Some(0) });
        println!("join said {said:?}");
        assert_eq!(said, Some(Ok(Out::Bool(false))), "a live consumer's task told lost");
        // R finishes: all done, and the queue is whole for the next round.
        assert_eq!(call(&mut store, B, 3, q, k, Op::TaskDone), Some(Ok(Out::Unit)));
        assert_eq!(call(&mut store, A, 5, q, k, Op::Join { wait: Some(0) }), Some(Ok(Out::Bool(true))));
        assert_eq!(call(&mut store, A, 6, q, k, put(b"z")), Some(Ok(Out::Unit)));
        assert_eq!(call(&mut store, A, 7, q, k, Op::Join { wait: Some(0) }), Some(Ok(Out::Bool(false))));
    }

    #[test]
    fn a_queued_item_is_never_told_lost_after_an_early_task_done() {
        // review112 M2: a `task_done` before any take, then a taker that dies, left `lost`
        // above `unfinished` for good.
        let mut store = Store::new();
        let q = create(&mut store, Create::Queue { maxsize: 0, joinable: true });
        let k = Kind::JoinableQueue;
        let put = |b: &[u8]| Op::Put { item: item(b, &[]), wait: None };
        assert_eq!(call(&mut store, A, 2, q, k, put(b"x")), Some(Ok(Out::Unit)));
        assert_eq!(call(&mut store, C, 2, q, k, Op::TaskDone), Some(Ok(Out::Unit)));
        assert!(matches!(call(&mut store, B, 2, q, k, Op::Get { wait: Some(0) }), Some(Ok(Out::Item(_)))));
        store.drop_conn(B, false);
        assert_eq!(call(&mut store, A, 3, q, k, put(b"y")), Some(Ok(Out::Unit)));
        let said = call(&mut store, A, 4, q, k, Op::Join { wait: Some(0) });
        println!("join said {said:?}");
        assert_eq!(said, Some(Ok(Out::Bool(false))), "a queued item told lost");
    }

    #[test]
    fn a_parked_join_is_told_when_the_holder_of_the_last_task_dies() {
        // review112 L4: the path the integration test names, a join already parked when
        // the sweep finds the holder dead, answered by `settle`.
        let mut store = Store::new();
        let q = create(&mut store, Create::Queue { maxsize: 0, joinable: true });
        let k = Kind::JoinableQueue;
        store.conn_opened(B, 10, 1);
        assert_eq!(call(&mut store, A, 2, q, k, Op::Put { item: item(b"x", &[]), wait: None }), Some(Ok(Out::Unit)));
        assert!(matches!(call(&mut store, B, 2, q, k, Op::Get { wait: Some(0) }), Some(Ok(Out::Item(_)))));
        assert_eq!(call(&mut store, A, 3, q, k, Op::Join { wait: None }), None, "the join waits");
        store.drop_conn(B, false);
        store.holder_died(10, 1);
        let replies = store.take_replies();
        assert_eq!(replies.len(), 1);
        assert_eq!((replies[0].conn, replies[0].seq), (A, 3));
        assert_eq!(replies[0].result, Err(Fault::TasksLost { lost: 1 }));
    }

    #[test]
    fn a_task_taken_by_an_abandoned_call_is_told_lost() {
        // review112 L1: a family `get` abandoned by `call_timeout` but granted left its task
        // counted to its live process, which never saw the item: `join` waited for ever.
        // Since mgr101 the server takes such an item back before `drop_conn_from`
        // (`Server::take_back_unread`, `give_back` clears `last_take`), so this rule is
        // reached only when the take-back did not give it back: a queue shut down and empty
        // (`give_back` refused), or an answer that was never put (`send_local` found no
        // room), or one the client took but could not decode.
        let mut store = Store::new();
        let q = create(&mut store, Create::Queue { maxsize: 0, joinable: true });
        let k = Kind::JoinableQueue;
        let put = |b: &[u8]| Op::Put { item: item(b, &[]), wait: None };
        store.conn_opened(B, 10, 1);
        store.conn_opened(C, 10, 1);
        // B's get at 2 was answered (the task is its process's); its get at 3 parks, is
        // granted by a put, and was abandoned by the client (it gave the connection up).
        assert_eq!(call(&mut store, A, 2, q, k, put(b"x")), Some(Ok(Out::Unit)));
        assert!(matches!(call(&mut store, B, 2, q, k, Op::Get { wait: Some(0) }), Some(Ok(Out::Item(_)))));
        assert_eq!(call(&mut store, B, 3, q, k, Op::Get { wait: None }), None, "parked");
        assert_eq!(call(&mut store, A, 3, q, k, put(b"y")), Some(Ok(Out::Unit)));
        store.drop_conn_from(B, true, Some(3));
        // The process's other task is still its own: the join waits for it.
        let said = call(&mut store, A, 4, q, k, Op::Join { wait: Some(0) });
        assert_eq!(said, Some(Ok(Out::Bool(false))));
        assert_eq!(call(&mut store, C, 2, q, k, Op::TaskDone), Some(Ok(Out::Unit)));
        let said = call(&mut store, A, 5, q, k, Op::Join { wait: Some(0) });
        println!("join said {said:?}");
        assert_eq!(said, Some(Err(Fault::TasksLost { lost: 1 })), "the abandoned call's task");
        // A take answered before the abandoned call stays its process's.
        assert_eq!(call(&mut store, A, 6, q, k, put(b"z")), Some(Ok(Out::Unit)));
        assert!(matches!(call(&mut store, C, 3, q, k, Op::Get { wait: Some(0) }), Some(Ok(Out::Item(_)))));
        store.drop_conn_from(C, true, Some(4));
        assert_eq!(call(&mut store, A, 7, q, k, Op::Join { wait: Some(0) }), Some(Ok(Out::Bool(false))));
    }

    /// review139 L2: an item answer a remote connection's writer never wrote goes back to
    /// the queue that answered it. A remote client numbers its requests as it likes: here it
    /// numbered gets of two queues 5, then took from the first again. Matched by number
    /// alone, the first queue's unwritten answer 5 went to the second queue, whose last take
    /// was numbered 5. And every such answer goes back, not only the connection's last take
    /// from the queue (mgr104: before, the answer numbered 5 was refused).
    #[test]
    fn an_item_given_back_goes_only_to_the_queue_that_answered_it() {
        let mut store = Store::new();
        let k = Kind::Queue;
        let [first, second] = [(); 2].map(|()| create(&mut store, Create::Queue { maxsize: 0, joinable: false }));
        for (seq, q, bytes) in [(2, first, b"a1"), (3, second, b"b1"), (4, first, b"a2")] {
            assert_eq!(
                call(&mut store, A, seq, q, k, Op::Put { item: item(bytes, &[]), wait: None }),
                Some(Ok(Out::Unit))
            );
        }
        for (seq, q) in [(5, first), (5, second), (6, first)] {
            assert!(matches!(call(&mut store, D, seq, q, k, Op::Get { wait: Some(0) }), Some(Ok(Out::Item(_)))));
        }
        let back = store.give_back(D, Some(first), 5, item(b"a1", &[]));
        store.requeue_given_back();
        let sizes = |store: &mut Store, q| match call(store, A, 9, q, k, Op::QSize) {
            Some(Ok(Out::Sizes { len, .. })) => len,
            other => panic!("{other:?}"),
        };
        let (first_len, second_len) = (sizes(&mut store, first), sizes(&mut store, second));
        println!("given back: {}, the queues hold {first_len} and {second_len}", back.is_ok());
        assert_eq!(second_len, 0, "the second queue was given the first's item");
        assert!(back.is_ok(), "the first queue's take, named with its queue: given back");
        assert_eq!(first_len, 1);
        // Its last take, named with its queue, goes back there too.
        assert!(store.give_back(D, Some(first), 6, item(b"a2", &[])).is_ok());
        store.requeue_given_back();
        assert_eq!(sizes(&mut store, first), 2);
    }

    /// mgr106: a client's `GiveBack` (an item it took but could not decode) is never
    /// trusted (review139 condition 1): only its connection's last take from that queue
    /// matches, and once; one whose item refers to no object is refused whole, the take
    /// still its to give back; a queue shut down and empty drops the item, counted done.
    #[test]
    fn a_client_gives_back_only_its_own_last_take_of_that_queue_and_once() {
        let mut store = Store::new();
        let k = Kind::JoinableQueue;
        let [q, other] = [(); 2].map(|()| create(&mut store, Create::Queue { maxsize: 0, joinable: true }));
        for (seq, bytes) in [(2, b"a"), (3, b"b")] {
            assert_eq!(
                call(&mut store, A, seq, q, k, Op::Put { item: item(bytes, &[]), wait: None }),
                Some(Ok(Out::Unit))
            );
        }
        let give_back = |store: &mut Store, conn, seq, queue, taken, refs: &[ObjectId]| {
            call(store, conn, seq, queue, k, Op::GiveBack { seq: taken, item: item(b"a", refs) })
        };
        let len = |store: &mut Store| match call(store, A, 99, q, k, Op::QSize) {
            Some(Ok(Out::Sizes { len, .. })) => len,
            other => panic!("{other:?}"),
        };
        assert_eq!(give_back(&mut store, B, 4, q, 3, &[]), Some(Ok(Out::Bool(false))), "B took nothing");
        assert!(matches!(call(&mut store, B, 5, q, k, Op::Get { wait: Some(0) }), Some(Ok(Out::Item(_)))));
        assert_eq!(len(&mut store), 1);
        assert_eq!(give_back(&mut store, C, 6, q, 5, &[]), Some(Ok(Out::Bool(false))), "C did not take it");
        assert_eq!(give_back(&mut store, B, 7, other, 5, &[]), Some(Ok(Out::Bool(false))), "not from that queue");
        assert_eq!(give_back(&mut store, B, 8, q, 4, &[]), Some(Ok(Out::Bool(false))), "not that take");
        assert_eq!(give_back(&mut store, B, 9, q, 5, &[12345]), Some(Err(Fault::BadReference(12345))));
        assert_eq!(len(&mut store), 1);
        assert_eq!(give_back(&mut store, B, 10, q, 5, &[]), Some(Ok(Out::Bool(true))));
        assert_eq!(give_back(&mut store, B, 11, q, 5, &[]), Some(Ok(Out::Bool(false))), "given back once");
        assert_eq!(len(&mut store), 2);
        match call(&mut store, C, 12, q, k, Op::Get { wait: Some(0) }) {
            Some(Ok(Out::Item(got))) => assert_eq!(got.bytes, b"a", "at the front"),
            other => panic!("{other:?}"),
        }
        // B's connection ends: it holds no task, so none is lost.
        store.drop_conn(B, false);
        assert_eq!(call(&mut store, C, 13, q, k, Op::TaskDone), Some(Ok(Out::Unit)));
        assert_eq!(call(&mut store, A, 14, q, k, Op::Join { wait: Some(0) }), Some(Ok(Out::Bool(false))));

        // Shut down and empty: the item is dropped, its task counted done.
        assert!(matches!(call(&mut store, C, 15, q, k, Op::Get { wait: Some(0) }), Some(Ok(Out::Item(_)))));
        assert_eq!(call(&mut store, A, 16, q, k, Op::QueueShutdown { immediate: false }), Some(Ok(Out::Unit)));
        // Matched (`true`: the client must not mark it done too, review164 M1).
        assert_eq!(give_back(&mut store, C, 17, q, 15, &[]), Some(Ok(Out::Bool(true))));
        assert_eq!(len(&mut store), 0);
        assert_eq!(call(&mut store, A, 18, q, k, Op::Join { wait: Some(0) }), Some(Ok(Out::Bool(true))));
    }

    /// mgr108: each thread of a remote connection gives back its own last take of a queue,
    /// though another thread of the connection took from it since (before, only the
    /// connection's last take matched); a thread gives back neither another thread's take
    /// nor its own older one; past `Takes::MAX` threads the least recent is forgotten.
    #[test]
    fn each_thread_of_a_connection_gives_back_its_own_last_take() {
        let mut store = Store::new();
        let k = Kind::JoinableQueue;
        let q = create(&mut store, Create::Queue { maxsize: 0, joinable: true });
        let on = |store: &mut Store, thread: u64, seq: u64, op: Op| {
            let request = Request::Call { id: q, kind: k, op };
            store.handle(B, Envelope { seq, thread, request }, Some(Instant::now()));
            let mut replies = store.take_replies();
            let at = replies.iter().position(|o| o.conn == B && o.seq == seq).expect("answered");
            replies.remove(at).result
        };
        let put = |b: &[u8]| Op::Put { item: item(b, &[]), wait: None };
        let get = || Op::Get { wait: Some(0) };
        let give_back = |taken: u64, b: &[u8]| Op::GiveBack { seq: taken, item: item(b, &[]) };
        for (seq, b) in [(1, b"a"), (2, b"b"), (3, b"c")] {
            assert_eq!(call(&mut store, A, seq, q, k, put(b)), Some(Ok(Out::Unit)));
        }
        // Thread 1 takes "a" at 10; thread 2 takes "b" at 11 and "c" at 12.
        for (thread, seq) in [(1, 10), (2, 11), (2, 12)] {
            assert!(matches!(on(&mut store, thread, seq, get()), Ok(Out::Item(_))));
        }
        assert_eq!(on(&mut store, 2, 13, give_back(10, b"a")), Ok(Out::Bool(false)), "thread 1's take");
        assert_eq!(on(&mut store, 2, 14, give_back(11, b"b")), Ok(Out::Bool(false)), "its older take");
        assert_eq!(on(&mut store, 1, 15, give_back(10, b"a")), Ok(Out::Bool(true)), "its own, another's since");
        assert_eq!(on(&mut store, 1, 16, give_back(10, b"a")), Ok(Out::Bool(false)), "once");
        assert_eq!(on(&mut store, 2, 17, give_back(12, b"c")), Ok(Out::Bool(true)));
        // Back at the front, the last given first; "b" is thread 2's task still.
        for want in [b"c", b"a"] {
            match on(&mut store, 3, 20, get()) {
                Ok(Out::Item(got)) => assert_eq!(got.bytes, want),
                other => panic!("{other:?}"),
            }
        }
        // The least recent of more than `Takes::MAX` threads is forgotten.
        for n in 0..=Takes::MAX as u64 {
            assert_eq!(call(&mut store, A, 30 + n, q, k, put(b"x")), Some(Ok(Out::Unit)));
        }
        for thread in 0..=Takes::MAX as u64 {
            assert!(matches!(on(&mut store, 100 + thread, 200 + thread, get()), Ok(Out::Item(_))));
        }
        assert_eq!(on(&mut store, 100, 400, give_back(200, b"x")), Ok(Out::Bool(false)), "forgotten");
        assert_eq!(on(&mut store, 101, 401, give_back(201, b"x")), Ok(Out::Bool(true)));
    }

    #[test]
    fn parked_requests_time_out() {
        let mut store = Store::new();
        let q = create(&mut store, Create::Queue { maxsize: 1, joinable: false });
        assert_eq!(call(&mut store, A, 2, q, Kind::Queue, Op::Get { wait: Some(1_000_000) }), None);
        assert!(store.next_deadline().is_some());
        store.expire(Instant::now() + Duration::from_secs(1));
        let replies = store.take_replies();
        assert!(matches!(replies[..], [Outgoing { result: Err(Fault::Empty), .. }]));
        assert!(store.next_deadline().is_none());
    }

    #[test]
    fn a_barrier_answers_every_party_with_its_index() {
        let mut store = Store::new();
        let b = create(&mut store, Create::Barrier { parties: 3, timeout: None, action: None });
        assert_eq!(call(&mut store, A, 2, b, Kind::Barrier, Op::BarrierWait { wait: None }), None);
        assert_eq!(call(&mut store, B, 2, b, Kind::Barrier, Op::BarrierWait { wait: None }), None);
        let last = Request::Call { id: b, kind: Kind::Barrier, op: Op::BarrierWait { wait: None } };
        store.handle(3, Envelope { seq: 2, thread: 0, request: last }, Some(Instant::now()));
        let mut indices: Vec<_> = store
            .take_replies()
            .into_iter()
            .map(|o| match o.result {
                Ok(Out::Count(n)) => n,
                other => panic!("{other:?}"),
            })
            .collect();
        indices.sort();
        assert_eq!(indices, [0, 1, 2]);
    }

    #[test]
    fn counts_at_their_limit_refuse_instead_of_wrapping() {
        let mut store = Store::new();
        let s = create(&mut store, Create::Semaphore { value: SEMAPHORE_MAX, bounded: false });
        let refused = call(&mut store, A, 2, s, Kind::Semaphore, Op::Release).unwrap();
        assert!(matches!(refused, Err(Fault::Overflow(_))), "{refused:?}");
        assert_eq!(call(&mut store, A, 3, s, Kind::Semaphore, Op::SemValue), Some(Ok(Out::Count(SEMAPHORE_MAX))));
        let above =
            run(&mut store, A, 4, Request::Create(Create::Semaphore { value: SEMAPHORE_MAX + 1, bounded: false }));
        assert!(matches!(above, Some(Err(Fault::Overflow(_)))), "{above:?}");
        let r = create(&mut store, Create::RLock);
        let acquire = Op::Acquire { wait: Some(0) };
        assert_eq!(call(&mut store, A, 4, r, Kind::RLock, acquire.clone()), Some(Ok(Out::Bool(true))));
        match &mut store.objects.get_mut(&r).unwrap().body {
            Body::RLock(l) => l.count = u64::MAX,
            _ => unreachable!(),
        }
        let refused = call(&mut store, A, 5, r, Kind::RLock, acquire).unwrap();
        assert!(matches!(refused, Err(Fault::Overflow(_))), "{refused:?}");
        assert_eq!(call(&mut store, A, 6, r, Kind::RLock, Op::Release), Some(Ok(Out::Unit)));
    }

    /// mgr109: a dict's `DictRemove` answers the pair's index, and `DictPutBack` puts a
    /// value back there (clamped to the length), or drops it when the key was set meanwhile
    /// (the newer value stays).
    #[test]
    fn a_dict_value_put_back_goes_where_it_was_unless_its_key_was_set() {
        let mut store = Store::new();
        let p = |b: &[u8]| item(b, &[]);
        let d = create(&mut store, Create::Dict(vec![(p(b"a"), p(b"1")), (p(b"b"), p(b"2")), (p(b"c"), p(b"3"))]));
        let k = Kind::Dict;
        let removed = call(&mut store, A, 2, d, k, Op::DictRemove(p(b"b")));
        assert_eq!(removed, Some(Ok(Out::Removed { index: 1, item: p(b"2") })));
        assert_eq!(call(&mut store, A, 3, d, k, Op::DictRemove(p(b"zz"))), Some(Ok(Out::MaybeItem(None))));
        let back = Op::DictPutBack { index: 1, key: p(b"b"), value: p(b"2") };
        assert_eq!(call(&mut store, A, 4, d, k, back), Some(Ok(Out::Unit)));
        let keys = |store: &mut Store| call(store, A, 9, d, k, Op::Keys);
        assert_eq!(keys(&mut store), Some(Ok(Out::Items(vec![p(b"a"), p(b"b"), p(b"c")]))), "where it was");
        // Set meanwhile: the newer value stays where it is.
        let back = Op::DictPutBack { index: 0, key: p(b"c"), value: p(b"old") };
        assert_eq!(call(&mut store, A, 5, d, k, back), Some(Ok(Out::Unit)));
        assert_eq!(call(&mut store, A, 6, d, k, Op::DictGet(p(b"c"))), Some(Ok(Out::MaybeItem(Some(p(b"3"))))));
        // An index past the end (pairs removed meanwhile): last.
        let back = Op::DictPutBack { index: 99, key: p(b"z"), value: p(b"26") };
        assert_eq!(call(&mut store, A, 7, d, k, back), Some(Ok(Out::Unit)));
        assert_eq!(keys(&mut store), Some(Ok(Out::Items(vec![p(b"a"), p(b"b"), p(b"c"), p(b"z")]))));
    }

    /// Every call that carries an item holding a reference, on every kind of object that
    /// has items, found or not, kept or not, refused or not: once the answer, the item's
    /// object and the container are released, nothing is left (review170 M1: a dict's
    /// `DictSetDefault` on a set key and its lookups by a key holding a reference kept the
    /// reference for the server's life). Also for a registered type's method, refused.
    #[test]
    fn an_item_a_call_does_not_keep_gives_its_references_back() {
        let (mut store, tally, _) = tally(0);
        let base = store.len();
        let kept: Vec<ObjectId> = store.objects.keys().copied().collect();
        let ops = |r: ObjectId| {
            let it = |b: &[u8]| item(b, &[r]);
            let plain = |b: &[u8]| item(b, &[]);
            vec![
                Op::Contains(it(b"k")),
                Op::DictSet(plain(b"k"), it(b"v")),
                Op::DictSet(it(b"k"), it(b"v")),
                Op::DictGet(it(b"k")),
                Op::DictRemove(it(b"k")),
                Op::DictUpdate(vec![(plain(b"k"), it(b"v")), (it(b"p"), it(b"w"))]),
                Op::DictSetDefault(plain(b"k"), it(b"w")),
                Op::DictSetDefault(plain(b"new"), it(b"w")),
                Op::DictSetDefault(it(b"k"), it(b"w")),
                Op::DictPutBack { index: 0, key: plain(b"k"), value: it(b"w") },
                Op::DictPutBack { index: 9, key: plain(b"new"), value: it(b"w") },
                Op::DictPutBack { index: 0, key: it(b"p"), value: it(b"w") },
                Op::ListPush(it(b"x")),
                Op::ListExtend(vec![it(b"x"), it(b"y")]),
                Op::ListInsert(0, it(b"x")),
                Op::ListSet(0, it(b"x")),
                Op::ListSet(9, it(b"x")),
                Op::ListRemove(it(b"k")),
                Op::ListIndex(it(b"k")),
                Op::ListCount(it(b"k")),
                Op::ListReplace { version: 0, items: vec![it(b"x")] },
                Op::ListReplace { version: 9, items: vec![it(b"x")] },
                Op::AttrSet("a".into(), it(b"x")),
                Op::ValueSet(it(b"x")),
                Op::Put { item: it(b"x"), wait: Some(0) },
                Op::GiveBack { seq: 7, item: it(b"x") },
                Op::GiveBack { seq: 8, item: it(b"x") },
                Op::SetAdd(it(b"k")),
                Op::SetDiscard(it(b"k")),
                Op::SetAlgebra { algebra: SetAlgebra::Union, items: vec![plain(b"a"), it(b"k")], in_place: true },
                Op::SetRelation { relation: SetRelation::Subset, items: vec![it(b"k")] },
                Op::Method { name: "add".into(), fingerprint: 0, args: it(b"") },
            ]
        };
        let k = |b: &[u8]| item(b, &[]);
        let objects = [
            (Kind::Dict, Create::Dict(vec![(k(b"k"), k(b"v"))])),
            (Kind::List, Create::List(vec![k(b"k")])),
            (Kind::Array, Create::Array(vec![k(b"k")])),
            (Kind::Set, Create::Set(vec![k(b"k")])),
            (Kind::Namespace, Create::Namespace),
            (Kind::Value, Create::Value(k(b"k"))),
            (Kind::Queue, Create::Queue { maxsize: 1, joinable: false }),
            (Kind::JoinableQueue, Create::Queue { maxsize: 2, joinable: true }),
            (Kind::Lock, Create::Lock),
        ];
        let mut left = Vec::new();
        let mut seq = 10;
        for (kind, made) in objects {
            for i in 0..ops(0).len() {
                let inner = create(&mut store, Create::List(Vec::new()));
                let id = create(&mut store, made.clone());
                if matches!(kind, Kind::Queue | Kind::JoinableQueue) {
                    // A queue holding an item, and the connection's take numbered 7.
                    for item in [k(b"a"), k(b"k")] {
                        call(&mut store, A, 0, id, kind, Op::Put { item, wait: Some(0) });
                    }
                    let taken = call(&mut store, A, 7, id, kind, Op::Get { wait: Some(0) });
                    assert!(matches!(taken, Some(Ok(Out::Item(_)))), "{taken:?}");
                }
                let op = ops(inner).swap_remove(i);
                let shown = format!("{kind:?} {op:?}");
                seq += 1;
                let answer = call(&mut store, A, seq, id, kind, op);
                if let Some(Ok(out)) = answer {
                    store.release_out(out);
                }
                run(&mut store, A, 0, Request::Release { id: inner, count: 1 });
                run(&mut store, A, 0, Request::Release { id, count: 1 });
                if store.len() != base {
                    left.push(format!("{shown}: {} objects left", store.len() - base));
                    // Start the next case clean.
                    store.objects.retain(|id, _| kept.contains(id));
                }
            }
        }
        let inner = create(&mut store, Create::List(Vec::new()));
        let method = Op::Method { name: "add".into(), fingerprint: 0, args: item(b"", &[inner]) };
        let answer = call(&mut store, A, 99, tally, Kind::Custom, method);
        run(&mut store, A, 0, Request::Release { id: inner, count: 1 });
        if store.len() != base {
            left.push(format!("Custom: {answer:?}, {} objects left", store.len() - base));
        }
        println!("left behind: {left:#?}");
        assert!(left.is_empty(), "{left:#?}");
    }

    #[test]
    fn a_notify_wakes_only_the_waiters_already_waiting() {
        let mut store = Store::new();
        let c = create(&mut store, Create::Condition);
        let acquire = Op::Acquire { wait: None };
        let wait = Op::CondWait { wait: None };
        assert_eq!(call(&mut store, A, 2, c, Kind::Condition, acquire.clone()), Some(Ok(Out::Bool(true))));
        assert_eq!(call(&mut store, A, 3, c, Kind::Condition, wait.clone()), None);
        assert_eq!(call(&mut store, B, 2, c, Kind::Condition, acquire), Some(Ok(Out::Bool(true))));
        assert_eq!(call(&mut store, B, 3, c, Kind::Condition, Op::CondNotify { n: 1 }), Some(Ok(Out::Unit)));
        // B waits right after notifying: the wake-up stays A's.
        store.handle(
            B,
            Envelope { seq: 4, thread: 0, request: Request::Call { id: c, kind: Kind::Condition, op: wait } },
            Some(Instant::now()),
        );
        let replies = store.take_replies();
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!((replies[0].conn, replies[0].seq), (A, 3));
        assert_eq!(replies[0].result, Ok(Out::Bool(true)));
    }

    // ---- fuzzing the request decoder and the store ----------------------------------------

    /// A small deterministic generator (xorshift), so that a failure replays.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// One valid request of every shape, with ids and items drawn from `rng`; and a few
    /// calls more on the store's `live` dicts and queues (each with its kind).
    fn sample_requests(rng: &mut Rng, live: &[(ObjectId, Kind)]) -> Vec<Envelope> {
        let id = |rng: &mut Rng| rng.below(12);
        let it = |rng: &mut Rng| {
            let refs = (0..rng.below(3)).map(|_| rng.below(12)).collect();
            Item { bytes: (0..rng.below(6)).map(|_| rng.next() as u8).collect(), refs }
        };
        let wait = |rng: &mut Rng| match rng.below(3) {
            0 => None,
            1 => Some(0),
            _ => Some(rng.below(2_000_000)),
        };
        let kinds = Kind::ALL;
        let creates = vec![
            Create::Dict(vec![(it(rng), it(rng))]),
            Create::List(vec![it(rng), it(rng)]),
            Create::Namespace,
            Create::Value(it(rng)),
            Create::Array(vec![it(rng)]),
            Create::Queue { maxsize: rng.below(3), joinable: rng.below(2) == 0 },
            Create::Lock,
            Create::RLock,
            Create::Semaphore { value: rng.below(3), bounded: rng.below(2) == 0 },
            Create::Event,
            Create::Condition,
            Create::Barrier { parties: rng.below(4), timeout: wait(rng), action: None },
            Create::Custom { type_name: "nothing".into(), fingerprint: rng.next(), value: it(rng) },
            Create::Set(vec![it(rng), it(rng)]),
        ];
        let ops = vec![
            Op::Len,
            Op::Clear,
            Op::Snapshot,
            Op::Contains(it(rng)),
            Op::DictSet(it(rng), it(rng)),
            Op::DictGet(it(rng)),
            Op::DictRemove(it(rng)),
            Op::DictUpdate(vec![(it(rng), it(rng))]),
            Op::DictSetDefault(it(rng), it(rng)),
            Op::DictPopItem,
            Op::Keys,
            Op::Values,
            Op::Items,
            Op::ListPush(it(rng)),
            Op::ListExtend(vec![it(rng), it(rng)]),
            Op::ListInsert(rng.next() as i64 % 5, it(rng)),
            Op::ListGet(rng.next() as i64 % 5),
            Op::ListSet(rng.next() as i64 % 5, it(rng)),
            Op::ListPop(Some(rng.next() as i64 % 5)),
            Op::ListPop(None),
            Op::ListRemove(it(rng)),
            Op::ListIndex(it(rng)),
            Op::ListCount(it(rng)),
            Op::ListReverse,
            Op::ListReplace { version: rng.below(4), items: vec![it(rng)] },
            Op::AttrSet("x".into(), it(rng)),
            Op::AttrGet("x".into()),
            Op::AttrDel("x".into()),
            Op::AttrNames,
            Op::ValueGet,
            Op::ValueSet(it(rng)),
            Op::Put { item: it(rng), wait: wait(rng) },
            Op::Get { wait: wait(rng) },
            Op::QSize,
            Op::TaskDone,
            Op::Join { wait: wait(rng) },
            Op::Acquire { wait: wait(rng) },
            Op::Release,
            Op::Locked,
            Op::SemValue,
            Op::EventSet,
            Op::EventClear,
            Op::EventIsSet,
            Op::EventWait { wait: wait(rng) },
            Op::CondWait { wait: wait(rng) },
            Op::CondNotify { n: rng.below(3) },
            Op::BarrierWait { wait: wait(rng) },
            Op::BarrierReset,
            Op::BarrierAbort,
            Op::BarrierState,
            Op::Method { name: "m".into(), fingerprint: rng.next(), args: it(rng) },
            Op::Copy { fingerprint: rng.next() },
            Op::QueueShutdown { immediate: rng.below(2) == 0 },
            Op::QueueIsShutdown,
            Op::SetAdd(it(rng)),
            Op::SetDiscard(it(rng)),
            Op::SetPop,
            Op::SetAlgebra {
                algebra: SetAlgebra::SymmetricDifference,
                items: vec![it(rng)],
                in_place: rng.below(2) == 0,
            },
            Op::SetRelation { relation: SetRelation::Subset, items: vec![it(rng), it(rng)] },
            Op::GiveBack { seq: rng.below(8), item: it(rng) },
            Op::ReleaseHold { hold: rng.below(4) },
            Op::DictPutBack { index: rng.below(4), key: it(rng), value: it(rng) },
        ];
        let mut out: Vec<Envelope> = Vec::new();
        for c in creates {
            out.push(Envelope { seq: rng.below(4), thread: rng.below(2), request: Request::Create(c) });
        }
        for op in ops {
            let kind = kinds[rng.below(kinds.len() as u64) as usize];
            out.push(Envelope {
                seq: rng.below(4),
                thread: rng.below(2),
                request: Request::Call { id: id(rng), kind, op },
            });
        }
        // More of the quick path's shapes (`quick::read_call`: a dict's get and set of
        // items without references) and of a queue's gets and give-backs than one call of
        // each, on objects that are there, so that a give-back may match a get.
        let plain = |rng: &mut Rng| Item { bytes: (0..rng.below(6)).map(|_| rng.next() as u8).collect(), refs: vec![] };
        for _ in 0..8 {
            let Some(&(id, kind)) = live.get(rng.below(live.len() as u64) as usize) else { break };
            let op = match (kind, rng.below(3)) {
                (Kind::Dict, 0) => Op::DictGet(plain(rng)),
                (Kind::Dict, _) => Op::DictSet(plain(rng), plain(rng)),
                (_, 0) => Op::Put { item: it(rng), wait: Some(0) },
                (_, 1) => Op::Get { wait: Some(0) },
                _ => Op::GiveBack { seq: rng.below(4), item: it(rng) },
            };
            out.push(Envelope { seq: rng.below(4), thread: 0, request: Request::Call { id, kind, op } });
        }
        out.push(Envelope { seq: 0, thread: 0, request: Request::Release { id: id(rng), count: rng.below(3) } });
        out.push(Envelope { seq: 1, thread: 0, request: Request::Ping });
        out.push(Envelope { seq: 1, thread: 0, request: Request::CountObjects });
        out
    }

    /// Flips, truncates, inserts or splices bytes.
    fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
        for _ in 0..=rng.below(4) {
            match rng.below(5) {
                0 if !bytes.is_empty() => {
                    let i = rng.below(bytes.len() as u64) as usize;
                    bytes[i] ^= 1 << rng.below(8);
                }
                1 if !bytes.is_empty() => {
                    let i = rng.below(bytes.len() as u64) as usize;
                    bytes[i] = rng.next() as u8;
                }
                2 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
                3 => {
                    let i = rng.below(bytes.len() as u64 + 1) as usize;
                    bytes.insert(i, rng.next() as u8);
                }
                _ => {
                    // A huge length prefix, where a length may be.
                    let i = rng.below(bytes.len() as u64 + 1) as usize;
                    bytes.splice(i..i, [0xff, 0xff, 0xff, 0xff, 0x0f]);
                }
            }
        }
    }

    /// What the fuzz runs count, for the record.
    const FUZZ_INPUTS: u64 = 250_000;

    #[test]
    fn the_request_decoder_and_the_store_survive_any_input() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut store = Store::new();
        let now = Instant::now();
        let (mut decoded, mut refused) = (0u64, 0u64);
        let (mut read_quick, mut done_quick, mut given_back) = (0u64, 0u64, 0u64);
        let mut corpus: Vec<Vec<u8>> = Vec::new();
        for n in 0..FUZZ_INPUTS {
            if corpus.is_empty() || n % 1000 == 0 {
                // Objects the store keeps (an answer's reference goes back at once, so
                // what the inputs create dies at once): a dict, a queue and a joinable
                // queue, made again when a random `Release` freed one.
                let live = |store: &Store| -> Vec<(ObjectId, Kind)> {
                    store
                        .objects
                        .iter()
                        .filter_map(|(&id, o)| match &o.body {
                            Body::Dict(_) if id != REGISTRY => Some((id, Kind::Dict)),
                            Body::Queue(q) => Some((id, if q.joinable { Kind::JoinableQueue } else { Kind::Queue })),
                            _ => None,
                        })
                        .collect()
                };
                let kept = live(&store);
                for (kind, create) in [
                    (Kind::Dict, Create::Dict(vec![])),
                    (Kind::Queue, Create::Queue { maxsize: 2, joinable: false }),
                    (Kind::JoinableQueue, Create::Queue { maxsize: 3, joinable: true }),
                ] {
                    if !kept.iter().any(|&(_, k)| k == kind) {
                        assert!(matches!(
                            run(&mut store, 9, 1, Request::Create(create)),
                            Some(Ok(Out::Created { .. }))
                        ));
                    }
                }
                let mut live = live(&store);
                live.push((REGISTRY, Kind::Dict));
                corpus = sample_requests(&mut rng, &live)
                    .iter()
                    .map(|e| {
                        let mut b = Vec::new();
                        encode_plain(e, &mut b).unwrap();
                        b
                    })
                    .collect();
            }
            let mut bytes = corpus[rng.below(corpus.len() as u64) as usize].clone();
            // A quarter go in intact (valid requests on random objects), the rest mutated.
            if rng.below(4) != 0 {
                mutate(&mut rng, &mut bytes);
            }
            let conn = 1 + rng.below(4) as ConnId;
            let mut give_back = None;
            // As the server's `parse` and `quick`: the quick reader first, and the store's
            // quick path when no answer waits (the long way when it declines).
            if let Some(call) = quick::read_call(&bytes, DEFAULT_MAX_REQUEST_MEMORY)
                && !store.has_replies()
            {
                read_quick += 1;
                let mut answer = Vec::new();
                if store.quick(&call, |a| quick::write_answer(call.seq, a, &mut answer)) {
                    done_quick += 1;
                    assert_eq!(quick::read_answer(&answer).map(|(seq, _)| seq), (call.seq != 0).then_some(call.seq));
                } else {
                    store.handle(conn, call.envelope(), Some(now + Duration::from_micros(n)));
                }
            } else {
                match decode_request(&bytes) {
                    Ok(envelope) => {
                        decoded += 1;
                        if let Request::Call { op: Op::GiveBack { .. }, .. } = envelope.request {
                            give_back = Some(envelope.seq);
                        }
                        store.handle(conn, envelope, Some(now + Duration::from_micros(n)));
                    }
                    Err(Fault::Malformed(_)) => refused += 1,
                    Err(other) => panic!("the decoder answered {other:?}"),
                }
            }
            if n % 97 == 0 {
                store.expire(now + Duration::from_micros(n));
            }
            if n % 1013 == 0 {
                store.drop_conn(conn, false);
            }
            for out in store.take_replies() {
                if give_back.take_if(|&mut seq| (out.conn, out.seq) == (conn, seq)).is_some()
                    && out.result == Ok(Out::Bool(true))
                {
                    given_back += 1;
                }
                if let Ok(out) = out.result {
                    store.release_out(out);
                }
            }
        }
        assert!(decoded > FUZZ_INPUTS / 10 && refused > FUZZ_INPUTS / 10, "decoded {decoded}, refused {refused}");
        assert!(done_quick > FUZZ_INPUTS / 100 && given_back > 0, "{done_quick} done quick, {given_back} given back");
        // Still serving.
        assert_eq!(run(&mut store, 9, 77, Request::Ping), Some(Ok(Out::Unit)));
        eprintln!(
            "fuzz: {FUZZ_INPUTS} inputs, {decoded} decoded and handled, {refused} refused, {read_quick} read quick, {done_quick} done quick, {given_back} items given back"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 100_000, failure_persistence: None, ..Default::default() })]

        /// Arbitrary bytes: a request or a `Malformed` fault, never a panic.
        #[test]
        fn arbitrary_bytes_decode_or_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            match decode_request(&bytes) {
                Ok(envelope) => {
                    let mut store = Store::new();
                    store.handle(A, envelope, Some(Instant::now()));
                }
                Err(fault) => proptest::prop_assert!(matches!(fault, Fault::Malformed(_))),
            }
        }
    }
}
