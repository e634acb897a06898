//! What clients and the server say to each other.
//!
//! Every request is one message: an [`Envelope`] (sequence number, thread, [`Request`]);
//! every request that expects an answer gets exactly one [`Reply`] with the same sequence
//! number, possibly much later (a blocking `acquire` or `get` is parked on the server and
//! answered when it can be, or when its timeout passes).
//!
//! Values are opaque to the server: an [`Item`] is the value's encoding plus the objects it
//! refers to (the proxies inside it), which the server counts as references while it keeps
//! the item. Requests hold plain data only and are decoded with a bounded, handle-free
//! decoder ([`decode_request`]): the same code reads a family client's message from shared
//! memory and a remote client's frame from a socket, after authentication.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::CodecError;

/// Names an object on the server.
pub(crate) type ObjectId = u64;

/// The object that the server creates at start: a dict of named, published objects.
pub(crate) const REGISTRY: ObjectId = 1;

/// What kind of object a proxy refers to; checked on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Kind {
    Dict,
    List,
    Namespace,
    Value,
    Array,
    Queue,
    JoinableQueue,
    Lock,
    RLock,
    Semaphore,
    BoundedSemaphore,
    Event,
    Condition,
    Barrier,
    Custom,
    Set,
}

impl Kind {
    /// Every kind, in declaration order (their code is their index).
    pub(crate) const ALL: [Kind; 16] = [
        Kind::Dict,
        Kind::List,
        Kind::Namespace,
        Kind::Value,
        Kind::Array,
        Kind::Queue,
        Kind::JoinableQueue,
        Kind::Lock,
        Kind::RLock,
        Kind::Semaphore,
        Kind::BoundedSemaphore,
        Kind::Event,
        Kind::Condition,
        Kind::Barrier,
        Kind::Custom,
        Kind::Set,
    ];
}

impl Kind {
    /// Python's name of the proxied type, for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Dict => "dict",
            Kind::List => "list",
            Kind::Namespace => "Namespace",
            Kind::Value => "Value",
            Kind::Array => "Array",
            Kind::Queue => "Queue",
            Kind::JoinableQueue => "JoinableQueue",
            Kind::Lock => "Lock",
            Kind::RLock => "RLock",
            Kind::Semaphore => "Semaphore",
            Kind::BoundedSemaphore => "BoundedSemaphore",
            Kind::Event => "Event",
            Kind::Condition => "Condition",
            Kind::Barrier => "Barrier",
            Kind::Custom => "registered type",
            Kind::Set => "set",
        }
    }
}

/// A value as it travels: its encoding, and the objects it refers to (the proxies inside
/// it, in the order they were encoded). `R` is an object id in requests; in replies it is
/// whatever gives the receiver its reference (a family token, or an id handed out to a
/// remote connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ItemRepr<R>")]
pub(crate) struct Item<R> {
    #[serde(with = "serde_bytes")]
    pub(crate) bytes: Vec<u8>,
    pub(crate) refs: Vec<R>,
}

/// [`Item`] as decoded, before it is charged to the request's budget (its references are
/// charged one by one as they decode, since each takes eight times its encoding).
#[derive(Deserialize)]
#[serde(bound(deserialize = "R: Deserialize<'de>"))]
struct ItemRepr<R> {
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
    #[serde(deserialize_with = "charged_seq")]
    refs: Vec<R>,
}

impl<R> TryFrom<ItemRepr<R>> for Item<R> {
    type Error = &'static str;

    fn try_from(repr: ItemRepr<R>) -> Result<Self, Self::Error> {
        charge(ITEM_COST.saturating_add(repr.bytes.len() as u64))?;
        Ok(Item { bytes: repr.bytes, refs: repr.refs })
    }
}

/// Decodes a sequence, charging each element to the request's budget before it is kept.
fn charged_seq<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Charged<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Charged<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            loop {
                charge(std::mem::size_of::<T>() as u64).map_err(serde::de::Error::custom)?;
                match seq.next_element()? {
                    Some(element) => out.push(element),
                    None => return Ok(out),
                }
            }
        }
    }

    deserializer.deserialize_seq(Charged(std::marker::PhantomData))
}

/// What one decoded item is taken to cost the server besides its bytes and references:
/// the item, the stored copy, their allocations.
pub(crate) const ITEM_COST: u64 = 128;

/// What one request may decode to by default (see [`decode_request_within`]).
pub(crate) const DEFAULT_MAX_REQUEST_MEMORY: u64 = 256 << 20;

/// The budget of the request being decoded on this thread: (charged, limit).
#[derive(Clone, Copy)]
struct Budget {
    charged: u64,
    max: u64,
}

thread_local! {
    static BUDGET: std::cell::Cell<Option<Budget>> = const { std::cell::Cell::new(None) };
}

/// Charges `cost` to the request being decoded, if any; past its limit, decoding stops.
fn charge(cost: u64) -> Result<(), &'static str> {
    BUDGET.with(|b| match b.get() {
        None => Ok(()),
        Some(mut budget) => {
            budget.charged = budget.charged.saturating_add(cost);
            b.set(Some(budget));
            if budget.charged > budget.max { Err("the request exceeds its memory budget") } else { Ok(()) }
        }
    })
}

impl<R> Item<R> {
    /// The item with each reference mapped.
    pub(crate) fn map_refs<S, E>(self, f: &mut impl FnMut(R) -> Result<S, E>) -> Result<Item<S>, E> {
        Ok(Item { bytes: self.bytes, refs: self.refs.into_iter().map(f).collect::<Result<_, _>>()? })
    }
}

/// A timeout in nanoseconds; `None` waits as long as it takes.
pub(crate) type Wait = Option<u64>;

/// How to make a new object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Create {
    Dict(Vec<(Item<ObjectId>, Item<ObjectId>)>),
    List(Vec<Item<ObjectId>>),
    Namespace,
    Value(Item<ObjectId>),
    Array(Vec<Item<ObjectId>>),
    Queue {
        maxsize: u64,
        joinable: bool,
    },
    Lock,
    RLock,
    Semaphore {
        value: u64,
        bounded: bool,
    },
    Event,
    Condition,
    Barrier {
        parties: u64,
        /// What a `wait` without a timeout waits at most.
        timeout: Wait,
        /// The name of an action registered with the server, run when the barrier trips.
        action: Option<String>,
    },
    /// A registered type, by name, from its encoded initial value.
    Custom {
        type_name: String,
        /// The type's fingerprint (`custom::fingerprint`): the server refuses another
        /// type's under a name taken.
        fingerprint: u64,
        value: Item<ObjectId>,
    },
    Set(Vec<Item<ObjectId>>),
}

/// A set operation with another collection of elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SetAlgebra {
    Union,
    Intersection,
    Difference,
    SymmetricDifference,
}

/// A question about a set and another collection of elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SetRelation {
    Subset,
    Superset,
    Disjoint,
}

/// An operation on an existing object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Op {
    // Containers.
    Len,
    Clear,
    /// A copy of every item (list, array), with the list's version.
    Snapshot,
    Contains(Item<ObjectId>),

    // dict
    DictSet(Item<ObjectId>, Item<ObjectId>),
    DictGet(Item<ObjectId>),
    DictRemove(Item<ObjectId>),
    DictUpdate(Vec<(Item<ObjectId>, Item<ObjectId>)>),
    DictSetDefault(Item<ObjectId>, Item<ObjectId>),
    DictPopItem,
    Keys,
    Values,
    Items,

    // list and array
    ListPush(Item<ObjectId>),
    ListExtend(Vec<Item<ObjectId>>),
    ListInsert(i64, Item<ObjectId>),
    ListGet(i64),
    ListSet(i64, Item<ObjectId>),
    ListPop(Option<i64>),
    ListRemove(Item<ObjectId>),
    ListIndex(Item<ObjectId>),
    ListCount(Item<ObjectId>),
    ListReverse,
    /// Replaces every item if the list is still at `version` (a sort done by the client).
    ListReplace {
        version: u64,
        items: Vec<Item<ObjectId>>,
    },

    // Namespace
    AttrSet(String, Item<ObjectId>),
    AttrGet(String),
    AttrDel(String),
    AttrNames,

    // Value
    ValueGet,
    ValueSet(Item<ObjectId>),

    // Queue and JoinableQueue
    Put {
        item: Item<ObjectId>,
        wait: Wait,
    },
    Get {
        wait: Wait,
    },
    QSize,
    TaskDone,
    Join {
        wait: Wait,
    },

    // Lock, RLock, Semaphore, Condition (its lock)
    Acquire {
        wait: Wait,
    },
    Release,
    Locked,
    SemValue,

    // Event
    EventSet,
    EventClear,
    EventIsSet,
    EventWait {
        wait: Wait,
    },

    // Condition
    CondWait {
        wait: Wait,
    },
    CondNotify {
        n: u64,
    },

    // Barrier
    BarrierWait {
        wait: Wait,
    },
    BarrierReset,
    BarrierAbort,
    BarrierState,

    // set
    SetAdd(Item<ObjectId>),
    /// Answers whether the element was there.
    SetDiscard(Item<ObjectId>),
    SetPop,
    /// The result as items, or (`in_place`) the set replaced by it.
    SetAlgebra {
        algebra: SetAlgebra,
        items: Vec<Item<ObjectId>>,
        in_place: bool,
    },
    SetRelation {
        relation: SetRelation,
        items: Vec<Item<ObjectId>>,
    },

    // Registered types
    Method {
        name: String,
        /// The proxy's type's fingerprint, checked against the object's.
        fingerprint: u64,
        args: Item<ObjectId>,
    },
    Copy {
        fingerprint: u64,
    },

    // Queue and JoinableQueue (Python 3.13's `shutdown`)
    QueueShutdown {
        immediate: bool,
    },
    QueueIsShutdown,

    // Queue and JoinableQueue: the item of this connection's `Get` numbered `seq`, which
    // its client could not decode, back to the queue's front. Matched against the last
    // take from the queue of the sending thread of the connection, never trusted. Answers
    // whether it matched (since wire 4: the item back, or dropped by a queue shut down and
    // empty with its task counted done); `false` (that thread took from the queue since,
    // as a get made while the item decoded does; its take forgotten): nothing done, the
    // client marks the task done itself.
    GiveBack {
        seq: u64,
        item: Item<ObjectId>,
    },

    // Lock: a guard's release, of its own hold only (`Out::Held`'s number): answers whether
    // it was still held so. `Release` (the proxy's) frees whoever holds it, as Python's.
    ReleaseHold {
        hold: u64,
    },

    // dict (since wire 5): a value that `DictRemove` answered (`Out::Removed`) and its
    // client could not decode, back under its key at `index` (clamped to the length), where
    // it was; dropped if the key was set meanwhile (the newer value stays). An ordinary
    // insert any client may make: nothing to match (mgr109).
    DictPutBack {
        index: u64,
        key: Item<ObjectId>,
        value: Item<ObjectId>,
    },
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Request {
    Create(Create),
    Call {
        id: ObjectId,
        kind: Kind,
        op: Op,
    },
    /// A remote connection gives back `count` references to `id` it was handed (no reply).
    Release {
        id: ObjectId,
        count: u64,
    },
    /// Is the server there? (Answers `Unit`.)
    Ping,
    /// How many objects the server keeps, its registry of published names aside.
    CountObjects,
}

/// A request and who waits for its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// Matches the reply to the request; 0 for requests without a reply.
    pub(crate) seq: u64,
    /// The client thread (owner of an `RLock`, ...) within its connection.
    pub(crate) thread: u64,
    pub(crate) request: Request,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Out<R> {
    Unit,
    Bool(bool),
    Count(u64),
    Item(Item<R>),
    MaybeItem(Option<Item<R>>),
    Items(Vec<Item<R>>),
    Pairs(Vec<(Item<R>, Item<R>)>),
    Versioned {
        version: u64,
        items: Vec<Item<R>>,
    },
    Names(Vec<String>),
    Created {
        id: ObjectId,
        kind: Kind,
        handout: R,
    },
    Barrier {
        parties: u64,
        waiting: u64,
        broken: bool,
    },
    Sizes {
        len: u64,
        max: u64,
    },
    /// A lock acquired from a holder whose client died (or whose connection ended)
    /// holding it: the server released it (the family's `owner_died()`).
    AcquiredFromDead,
    /// A condition wait's answer (whether it was notified) when it took its lock back from
    /// a holder whose client died holding it.
    RetookFromDead(bool),
    /// A plain `Lock` acquired: the number of this hold (what its guard releases by,
    /// `Op::ReleaseHold`), and whether its last holder died holding it (as
    /// `AcquiredFromDead`).
    Held {
        hold: u64,
        from_dead: bool,
    },
    /// A dict's `DictRemove` that found its key: the value, and the index the pair had
    /// (where `Op::DictPutBack` puts a value that did not decode; since wire 5).
    Removed {
        index: u64,
        item: Item<R>,
    },
}

impl<R> Out<R> {
    /// The answer with each reference mapped.
    pub(crate) fn map_refs<S, E>(self, mut f: impl FnMut(R) -> Result<S, E>) -> Result<Out<S>, E> {
        Ok(match self {
            Out::Unit => Out::Unit,
            Out::Bool(b) => Out::Bool(b),
            Out::Count(n) => Out::Count(n),
            Out::Item(item) => Out::Item(item.map_refs(&mut f)?),
            Out::MaybeItem(item) => Out::MaybeItem(item.map(|i| i.map_refs(&mut f)).transpose()?),
            Out::Items(items) => Out::Items(items.into_iter().map(|i| i.map_refs(&mut f)).collect::<Result<_, _>>()?),
            Out::Pairs(pairs) => Out::Pairs(
                pairs
                    .into_iter()
                    .map(|(k, v)| Ok((k.map_refs(&mut f)?, v.map_refs(&mut f)?)))
                    .collect::<Result<_, E>>()?,
            ),
            Out::Versioned { version, items } => Out::Versioned {
                version,
                items: items.into_iter().map(|i| i.map_refs(&mut f)).collect::<Result<_, _>>()?,
            },
            Out::Names(names) => Out::Names(names),
            Out::Created { id, kind, handout } => Out::Created { id, kind, handout: f(handout)? },
            Out::Barrier { parties, waiting, broken } => Out::Barrier { parties, waiting, broken },
            Out::Sizes { len, max } => Out::Sizes { len, max },
            Out::AcquiredFromDead => Out::AcquiredFromDead,
            Out::RetookFromDead(notified) => Out::RetookFromDead(notified),
            Out::Held { hold, from_dead } => Out::Held { hold, from_dead },
            Out::Removed { index, item } => Out::Removed { index, item: item.map_refs(&mut f)? },
        })
    }

    /// Every reference, in order.
    pub(crate) fn refs(&self) -> Vec<&R> {
        let mut out = Vec::new();
        match self {
            Out::Item(i) | Out::MaybeItem(Some(i)) | Out::Removed { item: i, .. } => out.extend(i.refs.iter()),
            Out::Items(items) | Out::Versioned { items, .. } => {
                for i in items {
                    out.extend(i.refs.iter());
                }
            }
            Out::Pairs(pairs) => {
                for (k, v) in pairs {
                    out.extend(k.refs.iter());
                    out.extend(v.refs.iter());
                }
            }
            Out::Created { handout, .. } => out.push(handout),
            _ => {}
        }
        out
    }
}

/// Why the server did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Fault {
    /// No object has this id (it was freed, or never existed).
    NoSuchObject(ObjectId),
    /// The object is not of the kind the proxy expects.
    WrongKind {
        expected: Kind,
        found: Kind,
    },
    /// The operation does not apply to this kind of object.
    Unsupported {
        kind: Kind,
    },
    IndexOutOfRange {
        index: i64,
        len: u64,
    },
    KeyMissing,
    NoSuchAttribute(String),
    ValueMissing,
    Empty,
    Full,
    TimedOut,
    /// Released by a thread that does not own it (`RLock`, `Condition`).
    NotOwner,
    /// Released more often than acquired.
    NotAcquired,
    BrokenBarrier,
    /// The list changed between a snapshot and its replacement.
    VersionChanged,
    UnknownType(String),
    UnknownMethod {
        type_name: String,
        method: String,
    },
    /// A registered type's method or constructor failed (its panic message).
    MethodFailed(String),
    /// A reference inside a value names no object of this server.
    BadReference(ObjectId),
    /// The request could not be read.
    Malformed(String),
    /// The server is shutting down.
    ShuttingDown,
    /// A count would pass its limit (a semaphore released past `u64::MAX`, a lock
    /// acquired recursively that often): what would overflow.
    Overflow(String),
    /// The request would take more of the server's memory than one request may (`len`
    /// bytes estimated when decoding stopped, `max` allowed).
    TooLarge {
        len: u64,
        max: u64,
    },
    /// The queue was shut down (and, for a get, is empty).
    ShutDown,
    /// Every unfinished task of a joinable queue was taken by a client that died.
    TasksLost {
        lost: u64,
    },
    /// The type of a registered type's create or call is not the one the server has under
    /// its name.
    TypeMismatch {
        type_name: String,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::NoSuchObject(id) => write!(f, "no object {id} on the manager's server"),
            Fault::WrongKind { expected, found } => {
                write!(f, "object is a {}, not a {}", found.name(), expected.name())
            }
            Fault::Unsupported { kind } => write!(f, "a {} does not support this operation", kind.name()),
            Fault::IndexOutOfRange { index, len } => write!(f, "index {index} out of range for length {len}"),
            Fault::KeyMissing => write!(f, "no such key"),
            Fault::NoSuchAttribute(name) => write!(f, "no attribute '{name}'"),
            Fault::ValueMissing => write!(f, "no such value"),
            Fault::Empty => write!(f, "empty"),
            Fault::Full => write!(f, "full"),
            Fault::TimedOut => write!(f, "timed out"),
            Fault::NotOwner => write!(f, "released by a thread that does not own it"),
            Fault::NotAcquired => write!(f, "released more often than acquired"),
            Fault::BrokenBarrier => write!(f, "the barrier is broken"),
            Fault::VersionChanged => write!(f, "the list changed meanwhile"),
            Fault::UnknownType(name) => write!(f, "no type '{name}' is registered with the manager"),
            Fault::UnknownMethod { type_name, method } => write!(f, "'{type_name}' exposes no method '{method}'"),
            Fault::MethodFailed(why) => write!(f, "the method failed on the server: {why}"),
            Fault::BadReference(id) => write!(f, "a value refers to object {id}, which the server does not have"),
            Fault::Malformed(why) => write!(f, "malformed request: {why}"),
            Fault::ShuttingDown => write!(f, "the manager is shutting down"),
            Fault::Overflow(what) => write!(f, "{what} would overflow"),
            Fault::ShutDown => write!(f, "the queue is shut down"),
            Fault::TasksLost { lost } => write!(f, "{lost} tasks were taken by clients that died"),
            Fault::TypeMismatch { type_name } => {
                write!(f, "another type is registered under the name '{type_name}' on the manager")
            }
            Fault::TooLarge { len, max } => {
                write!(
                    f,
                    "the request would take more than {len} bytes of the server's memory, above its limit of {max}"
                )
            }
        }
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reply<R> {
    pub(crate) seq: u64,
    pub(crate) result: Result<Out<R>, Fault>,
}

/// Encodes a value that holds no family handle (requests, replies to remote clients, items).
/// A multiproc handle inside fails to encode: it only travels through the family's own
/// channels, never into a value the server keeps and copies.
pub(crate) fn encode_plain<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    let result = postcard::to_io(value, &mut *out).map(|_| ());
    if result.is_err() {
        out.truncate(start);
    }
    result.map_err(CodecError::encode)
}

/// Decodes a value that holds no family handle, using every byte. Decoding reads from the
/// slice only, so what it allocates is bounded by the slice's length.
pub(crate) fn decode_plain<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(CodecError::decode(format_args!("{} bytes left over after the value", rest.len()))),
        Err(e) => Err(CodecError::decode(e)),
    }
}

/// The server's request decoder: what a client (family or remote) sent, as a request, or
/// why not. Never panics, whatever the bytes.
#[cfg(test)]
pub(crate) fn decode_request(bytes: &[u8]) -> Result<Envelope, Fault> {
    decode_request_within(bytes, DEFAULT_MAX_REQUEST_MEMORY)
}

/// [`decode_request`], refusing with [`Fault::TooLarge`] a request whose items would take
/// more than `max` bytes once decoded (each item counted as [`ITEM_COST`] plus its bytes
/// and references), so that a frame of many empty items cannot make the server allocate
/// many times its size. Decoding stops at the first item past the limit.
pub(crate) fn decode_request_within(bytes: &[u8], max: u64) -> Result<Envelope, Fault> {
    decode_within(bytes, max)
}

/// The remote client's reply decoder: what the server answered, or why not, within the
/// same kind of budget as a request's (a server that knows the key must not make a client
/// allocate many times a frame either). Never panics, whatever the bytes.
#[cfg(any(feature = "remote", test))]
pub(crate) fn decode_reply_within(bytes: &[u8], max: u64) -> Result<Reply<ObjectId>, Fault> {
    decode_within(bytes, max)
}

/// Decodes `bytes` charging its items to a budget of `max`: [`Fault::TooLarge`] past it.
fn decode_within<T: DeserializeOwned>(bytes: &[u8], max: u64) -> Result<T, Fault> {
    BUDGET.with(|b| b.set(Some(Budget { charged: 0, max })));
    let decoded = decode_plain::<T>(bytes);
    let budget = BUDGET.with(|b| b.take());
    match (decoded, budget) {
        (Ok(value), _) => Ok(value),
        (Err(_), Some(Budget { charged, max })) if charged > max => Err(Fault::TooLarge { len: charged, max }),
        (Err(e), _) => Err(Fault::Malformed(e.to_string())),
    }
}

/// The sequence number a request or a reply starts with (to answer one that was refused
/// whole).
pub(crate) fn request_seq(bytes: &[u8]) -> Option<u64> {
    postcard::take_from_bytes::<u64>(bytes).ok().map(|(seq, _)| seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_garbage_is_malformed() {
        let env = Envelope {
            seq: 7,
            thread: 3,
            request: Request::Call {
                id: 9,
                kind: Kind::Dict,
                op: Op::DictSet(Item { bytes: vec![1, 2], refs: vec![] }, Item { bytes: vec![3], refs: vec![4] }),
            },
        };
        let mut bytes = Vec::new();
        encode_plain(&env, &mut bytes).unwrap();
        assert_eq!(decode_request(&bytes).unwrap(), env);
        bytes.push(0);
        assert!(matches!(decode_request(&bytes), Err(Fault::Malformed(_))));
        assert!(matches!(decode_request(&[0xff; 3]), Err(Fault::Malformed(_))));
        assert!(matches!(decode_request(&[]), Err(Fault::Malformed(_))));
    }

    #[test]
    fn many_empty_items_stop_decoding_at_the_budget() {
        let items = vec![Item { bytes: Vec::new(), refs: Vec::new() }; 100_000];
        let env = Envelope { seq: 42, thread: 0, request: Request::Create(Create::List(items)) };
        let mut bytes = Vec::new();
        encode_plain(&env, &mut bytes).unwrap();
        // 200 KB of frame, 12.8 MB at 128 bytes an item: refused at 1 MiB.
        match decode_request_within(&bytes, 1 << 20) {
            Err(Fault::TooLarge { len, max }) => assert!(len > max && len <= max + ITEM_COST, "{len} {max}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(request_seq(&bytes), Some(42));
        assert_eq!(decode_request_within(&bytes, 64 << 20).unwrap(), env);
        // Outside a request's decoding, nothing is charged.
        let mut reply = Vec::new();
        encode_plain(&Out::<u64>::Items(vec![Item { bytes: Vec::new(), refs: Vec::new() }; 100_000]), &mut reply)
            .unwrap();
        assert!(decode_plain::<Out<u64>>(&reply).is_ok());
    }

    #[test]
    fn a_reply_of_many_empty_items_stops_decoding_at_the_budget() {
        // A server (one that knows the key) answers with 100,000 empty items: 200 KB of
        // frame, 12.8 MB at 128 bytes an item. The client refuses it at 1 MiB.
        let items = vec![Item { bytes: Vec::new(), refs: Vec::new() }; 100_000];
        let reply = Reply { seq: 9, result: Ok(Out::<ObjectId>::Items(items)) };
        let mut bytes = Vec::new();
        encode_plain(&reply, &mut bytes).unwrap();
        match decode_reply_within(&bytes, 1 << 20) {
            Err(Fault::TooLarge { len, max }) => assert!(len > max && len <= max + ITEM_COST, "{len} {max}"),
            other => panic!("{:?}", other.map(|r| r.seq)),
        }
        assert_eq!(request_seq(&bytes), Some(9));
        assert_eq!(decode_reply_within(&bytes, 64 << 20).unwrap(), reply);
    }

    #[test]
    fn an_item_of_many_references_stops_decoding_at_the_budget() {
        let item = Item { bytes: Vec::new(), refs: vec![5u64; 1_000_000] };
        let env =
            Envelope { seq: 7, thread: 0, request: Request::Call { id: 2, kind: Kind::List, op: Op::ListPush(item) } };
        let mut bytes = Vec::new();
        encode_plain(&env, &mut bytes).unwrap();
        // 1 MB of frame, 8 MB of references: refused at 1 MiB, before they are all kept.
        match decode_request_within(&bytes, 1 << 20) {
            Err(Fault::TooLarge { len, max }) => assert!(len > max && len <= max + 8, "{len} {max}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(decode_request_within(&bytes, 16 << 20).unwrap(), env);
    }
}
