//! Messages: serde values, and the handles they may carry.
//!
//! A message is one tag byte and the value's encoding: `0`, postcard (compact, no field
//! names; the fast path), or `1`, MessagePack with field names (self-describing), which
//! every receiver reads. The sender picks per value:
//!
//! - a type whose `Deserialize` asks for `deserialize_any` (`serde_json::Value`,
//!   `#[serde(untagged)]` and internally tagged enums, `#[serde(flatten)]`) goes in
//!   MessagePack; a probe (`probe`) finds out once per type and thread, by running the
//!   type's `Deserialize` on made-up values, every combination of enum variants;
//! - any other type goes in postcard behind a checking serializer (`check`), which stops
//!   at what postcard would mis-encode (a skipped field, `skip_serializing_if`; a map of
//!   unknown length, `flatten`): the handles encoded so far are given back and the value
//!   is written again in MessagePack.
//!
//! The crate's own messages (a child's boot message and outcome, the fork server's request
//! and reply, a pool's task and result envelopes, a manager's control messages and
//! replies) are plain postcard behind the same tag byte (`encode_own`, `decode_own`,
//! `with_own_encoded`): no probe, no checking serializer, and no MessagePack code for
//! their types, which every fresh child would otherwise fault in at its start. A child
//! is told the plan of its result type with its boot message (`plan`, `assume_plan`).
//!
//! A manager's items are always MessagePack ([`encode_kept`]). Errors keep the message of
//! the serializer or of the `Serialize`/`Deserialize` impl that refused (postcard keeps
//! none: `check` and `keep` stand in front of it) and name the message's type.
//!
//! A multiproc object inside a message (a queue sent through a pipe, a lock passed to a
//! pool task) is a *handle*: it serializes as a reference into the family's shared memory
//! and counts as "in flight" until some process decodes it. Handles only serialize inside
//! [`encode`] and only deserialize inside [`decode`], so a handle written to a file or to
//! JSON by mistake is an error rather than a dangling reference.
//!
//! A handle's bytes are a sealed capability (see `shm::object`): decoding checks its
//! type, its object's generation and a keyed seal, and consumes exactly one in-flight
//! count. The receive stays pending until the decoding ends, or, inside a [`TakeScope`]
//! (a channel's take), until the message is taken: a consumer killed in between leaves the
//! handles to the next consumer of the message. A child's argument or a pool's chunk
//! decoded inside [`receipting`] is the exception: its receives are final at once, each
//! taken from the message's carrier (or receipted on a boot socket: `shm::receipts`).

mod check;
mod keep;
mod probe;

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use postcard::ser_flavors::Flavor;
use serde::Serialize;
use serde::de::{DeserializeOwned, DeserializeSeed};

use crate::shm::ReceiptKey;

/// A message that could not be encoded or decoded: says which type, and why (the message
/// of the serializer, or of the `Serialize` or `Deserialize` impl that refused).
#[derive(Clone, PartialEq, Eq)]
pub struct CodecError(Box<Cause>);

/// What a [`CodecError`] says, boxed: the error is one pointer, so that the results of
/// every send and receive, which carry it on their error side, stay small to move.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cause {
    what: &'static str,
    type_name: Option<&'static str>,
    detail: String,
    heap_full: bool,
}

impl fmt::Debug for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodecError")
            .field("what", &self.0.what)
            .field("type_name", &self.0.type_name)
            .field("detail", &self.0.detail)
            .field("heap_full", &self.0.heap_full)
            .finish()
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.type_name {
            // Relayed: the other process's whole message.
            _ if self.0.what.is_empty() => f.write_str(&self.0.detail),
            Some(name) => write!(f, "{} ({name}): {}", self.0.what, self.0.detail),
            None => write!(f, "{}: {}", self.0.what, self.0.detail),
        }
    }
}

impl std::error::Error for CodecError {}

impl CodecError {
    pub(crate) fn encode(detail: impl fmt::Display) -> Self {
        HEAP_FULL.with(|h| h.set(false));
        Self(Box::new(Cause {
            what: "cannot encode the message",
            type_name: None,
            detail: take_detail().unwrap_or_else(|| detail.to_string()),
            heap_full: false,
        }))
    }

    pub(crate) fn decode(detail: impl fmt::Display) -> Self {
        Self(Box::new(Cause {
            what: "cannot decode the message (was it sent as another type?)",
            type_name: None,
            detail: take_detail().unwrap_or_else(|| detail.to_string()),
            heap_full: HEAP_FULL.with(|h| h.replace(false)),
        }))
    }

    /// A codec error another process reported, as its text (a pool worker's, a cluster
    /// node's): said as it was, since that text says already whether a value did not encode
    /// or did not decode, and which. `decode` here made a result whose `Serialize` refused
    /// in the worker read "cannot decode the message (was it sent as another type?):
    /// cannot encode the message ..." (aud91 L2).
    pub(crate) fn relayed(text: impl fmt::Display) -> Self {
        Self(Box::new(Cause { what: "", type_name: None, detail: text.to_string(), heap_full: false }))
    }

    /// A `Deserialize` (user code) that panicked, as a decode error: the bytes were the
    /// message's type, so not [`CodecError::decode`]'s hint that they were another's
    /// (review115 L2).
    pub(crate) fn decode_panicked(why: impl fmt::Display) -> Self {
        // What the decoding left for an error of its own, never made.
        let _ = take_detail();
        HEAP_FULL.with(|h| h.set(false));
        Self(Box::new(Cause {
            what: "cannot decode the message: its Deserialize panicked",
            type_name: None,
            detail: why.to_string(),
            heap_full: false,
        }))
    }

    /// The error names `T`, the type of the message.
    pub(crate) fn of<T: ?Sized>(mut self) -> Self {
        self.0.type_name = Some(std::any::type_name::<T>());
        self
    }

    /// The type of the message, as `std::any::type_name` spells it.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::<u32>::new()?;
    /// a.send_bytes(&[0xff])?;
    /// match b.recv() {
    ///     Err(multiproc::RecvError::Decode(e)) => assert_eq!(e.type_name(), Some("u32")),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn type_name(&self) -> Option<&'static str> {
        self.0.type_name
    }

    /// Whether the message was refused because the family's shared memory is exhausted: a
    /// handle in it could not be recorded as this process's (the handle was given back, and
    /// the object it names freed if that was its last reference). Nothing was wrong with
    /// the message itself.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::<u32>::new()?;
    /// a.send_bytes(&[0xff])?; // raw bytes, not a `u32` message
    /// match b.recv() {
    ///     Err(multiproc::RecvError::Decode(e)) => assert!(!e.is_heap_full()),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_heap_full(&self) -> bool {
        self.0.heap_full
    }
}

thread_local! {
    /// What a `Serialize` or `Deserialize` impl of ours said when it refused: postcard keeps
    /// only "Serde Deserialization Error" of a custom error, so the reason travels here.
    static DETAIL: RefCell<Option<String>> = const { RefCell::new(None) };
}

thread_local! {
    /// Set by [`refuse_decoding_heap_full`] for the [`CodecError`] being made.
    static HEAP_FULL: Cell<bool> = const { Cell::new(false) };
}

/// [`refuse_decoding`] for a handle that could not be recorded because the family's shared
/// memory is exhausted ([`CodecError::is_heap_full`]).
pub(crate) fn refuse_decoding_heap_full<E: serde::de::Error>(detail: impl fmt::Display) -> E {
    HEAP_FULL.with(|h| h.set(true));
    refuse_decoding(detail)
}

/// Reaches this thread's locals that have a destructor, done by `init()` before the fork
/// server is forked: the first reach of each registers its destructor through libc and the
/// loader (a lock, a lookup, an allocation), which every fork-server child would otherwise
/// do for itself (see `panics::prepare_for_forks`), and every `Fork` child of the main
/// thread in [`forget_parent_in_fork_child`], which reaches each of them (`OUTER_TAKES`
/// left out of this list cost each such child 8 page faults: start44).
pub(crate) fn prepare_for_forks() {
    DETAIL.with(|_| ());
    ENCODING.with(|_| ());
    TAKEN.with(|_| ());
    SCRATCH.with(|_| ());
    READ.with(|_| ());
    DECODED.with(|_| ());
    OUTER_TAKES.with(|_| ());
    PLANS.with(|_| ());
    // The probe's records and the check's answers (review162 L4).
    check::prepare_for_forks();
}

/// In a fork child, before it runs: forgets what its thread's copy of the parent's
/// thread was encoding and decoding (a `Fork` start from inside a `Serialize` or a
/// `Deserialize`). The child never returns to those frames; their entries describe the
/// parent's counts and scopes, not the child's. (review55 L4: the child's argument, its
/// decoding nested in the parent's, was not taken from its carrier and failed "received
/// already"; and the parent's kept handles would have been left out of the child's own
/// counts, `kept_of`.) Forgotten, not dropped, as the rest of those frames: a settle or an
/// undo is the parent's to run, and the handles they hold are the parent's copies.
///
/// Called only where the parent's thread was [`busy_here`] before the fork: otherwise the
/// copy holds nothing to forget, and a child that looked would run this code and reach the
/// thread-locals (2 page faults: start44).
#[cold]
#[inline(never)]
pub(crate) fn forget_parent_in_fork_child() {
    STATE.with(|s| {
        s.scope.set(None);
        s.encoding_len.set(0);
        s.decoding.set(0);
        s.serial.set(0);
        s.taking.set(0);
        s.taken_any.set(false);
        s.dead_receiver.set(None);
        s.undoing.set(Undoing::Unsend);
        s.receipts.set(0);
    });
    std::mem::forget(ENCODING.take());
    std::mem::forget(TAKEN.take());
    std::mem::forget(READ.take());
    std::mem::forget(DECODED.replace(DecodedHandles::new()));
    std::mem::forget(OUTER_TAKES.take());
}

/// Whether this thread is inside an encoding, a decoding, a take or an undo (not
/// [`State::idle`]): asked by a `Fork` start before it forks, whose child then forgets its
/// copy of what they hold ([`forget_parent_in_fork_child`]).
pub(crate) fn busy_here() -> bool {
    !STATE.with(State::idle)
}

fn take_detail() -> Option<String> {
    DETAIL.with(|d| d.borrow_mut().take())
}

/// A custom error for a `Deserialize` impl of the crate, whose message survives postcard
/// into the [`CodecError`].
pub(crate) fn refuse_decoding<E: serde::de::Error>(detail: impl fmt::Display) -> E {
    let detail = detail.to_string();
    let e = E::custom(&detail);
    DETAIL.with(|d| *d.borrow_mut() = Some(detail));
    e
}

/// A custom error for a `Serialize` impl of the crate, whose message survives postcard into
/// the [`CodecError`].
pub(crate) fn refuse_encoding<E: serde::ser::Error>(detail: impl fmt::Display) -> E {
    let detail = detail.to_string();
    let e = E::custom(&detail);
    DETAIL.with(|d| *d.borrow_mut() = Some(detail));
    e
}

/// What undoes the in-flight count of one handle in a message never delivered, and which
/// handle it is (a receipt names the same key, see [`give_back_from_dead`]).
struct Undo {
    key: ReceiptKey,
    /// Undoes the count of the handle `key` names: a function of the key alone, so that it
    /// can be run by another process of the family (`shm::receipts`, a child's argument's
    /// token: `sys::function_offset`).
    gone: UndoFn,
}

/// A handle's undo (`on_abort`): does to the handle's table what [`undoing`] says, for the
/// handle its key names. Returns `false` when a carry found no room, or no object to pin
/// (nothing changed).
pub(crate) type UndoFn = fn(ReceiptKey) -> bool;

/// What a handle's undo ([`UndoFn`]) does, set around it by [`undoing_as`] (the handle's
/// table's `Holders::undo`; a carrier is a child's argument's token, `shm::receipts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Undoing {
    /// Takes its count back from flight: the message was never delivered (the default).
    Unsend,
    /// [`Undoing::Unsend`] for a message whose sender, dead, made the object for it and
    /// held it until its death (a child's outcome blob, or its result's undo): only if that
    /// process (the undo's dead process) still has its entry, else nothing is taken
    /// (review82 L1: a key naming an object the dead never held took another message's
    /// count).
    UnsendHeldByDead,
    /// Moves its count from flight into the entry of the carrier: the message is about to
    /// be sent, its receiver takes each handle from that entry.
    Carry(u64),
    /// Lets go of what the carrier's entry still counts (the handles its receiver did not
    /// take), all of it at the first of its handles: the carrier is freed.
    Uncarry(u64),
    /// Moves what the carrier's entry counts back into flight: the carrier was not sent
    /// after all.
    Restore {
        /// The carrier.
        carrier: u64,
        /// Whether the object's own entry of the carrier holds it until this undo is done
        /// (its own handle carried, and not yet restored): the undo then needs no look at
        /// its start (`shm::object`'s `with_undo_header`, review99 M1).
        kept: bool,
    },
}

impl Undo {
    fn run(self) {
        (self.gone)(self.key);
    }
}

thread_local! {
    /// Undo actions of the handles encoded into the messages being built on this thread,
    /// a nested message's after its outer's.
    static ENCODING: RefCell<Vec<Undo>> = const { RefCell::new(Vec::new()) };
    /// What makes the handles received by the decoding in progress final, and what waits
    /// for that, run last first once the message is taken (see [`on_taken`]).
    static TAKEN: RefCell<Vec<Box<dyn FnOnce()>>> = const { RefCell::new(Vec::new()) };
    /// The codec's per-message state (see [`State`]): one thread-local of plain `Cell`s,
    /// without a destructor, so that reaching it is one address computation and no
    /// registration check.
    static STATE: State = const { State::new() };
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The handles read by the [`noting_reads`] in progress, with the depth of the decoding
    /// it notes (the decodings open, [`State::decoding`], inside it), or `None` when no
    /// decoding notes them.
    static READ: RefCell<Option<(u32, Vec<HandleRead>)>> = const { RefCell::new(None) };
    /// The handles the open decodings met, each with the serial of its decoding, innermost
    /// last (see [`Decoded`]): empty unless a decoding met a handle.
    static DECODED: RefCell<DecodedHandles> = const { RefCell::new(DecodedHandles::new()) };
    /// The objects of the open [`TakeScope`]s the innermost one is nested in, outermost
    /// first: empty unless takes nest (a `Deserialize` that takes from a channel).
    static OUTER_TAKES: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// What a message's encoding and decoding need on every message, in one place: a message
/// without handles reads and writes these few words and nothing else of the thread's.
struct State {
    /// Where the undo actions of the innermost open [`HandleScope`] start in `ENCODING`, or
    /// `None` when no message is being built on this thread.
    scope: Cell<Option<usize>>,
    /// How many undo actions `ENCODING` holds: set by the handle serializer
    /// ([`on_abort`]), so that a message without handles never touches `ENCODING`.
    encoding_len: Cell<usize>,
    /// Open decodings (handles may deserialize).
    decoding: Cell<u32>,
    /// The serial of the innermost open decoding (see [`LeaveDecoding`]), 0 when none: what
    /// its entries in `DECODED` are keyed by.
    serial: Cell<u64>,
    /// The last serial given to a decoding: each one's is greater than all before it.
    serials: Cell<u64>,
    /// The innermost open [`TakeScope`] (the channel commits the message after decoding
    /// it): the object it takes from ([`TakeScope::of`]), [`NO_OBJECT`] for a take of none
    /// ([`TakeScope::enter`]), 0 when no take is open. Replaced at each take as a count
    /// would be incremented: naming the object costs the hot path nothing.
    taking: Cell<usize>,
    /// Whether `TAKEN` or `DECODED` may hold something: set by the handle deserializer
    /// ([`on_taken`], [`received_handle`]), so that a message without handles has nothing
    /// to settle.
    taken_any: Cell<bool>,
    /// The plan of the type sent last, the common case of a channel used in a loop, and
    /// the number of its probe's shapes (`check::keep_shapes`), which its writes set
    /// [`State::judging`] to.
    last_plan: Cell<Option<(TypeId, Plan, u32)>>,
    /// The number of the shapes the checking serializer judges the message being written
    /// by: its type's, set around its checked write and given back at its end, so that a
    /// `Serialize` that sends a message of another type partway through its value does not
    /// leave the rest judged by the other type's shapes (review169 M1; `last_plan` is the
    /// inner type's then).
    judging: Cell<u32>,
    /// The process whose message the undo actions running now give back
    /// ([`give_back_from_dead`]).
    dead_receiver: Cell<Option<u32>>,
    /// What the undo actions running now do ([`undoing_as`]).
    undoing: Cell<Undoing>,
    /// The carrier (or receipts' socket) of the argument this process is decoding, 0 when
    /// none ([`receipting`]).
    receipts: Cell<u64>,
}

impl State {
    /// Whether this thread is inside no encoding, decoding, take or undo: every field but
    /// the plans at its start value. The other thread-locals then hold nothing: `ENCODING`
    /// holds `encoding_len` entries, `TAKEN` and `DECODED` something only under
    /// `taken_any`, `OUTER_TAKES` only under a nested take (`taking`), and `READ` is set
    /// only around a decoding (`noting_reads`).
    fn idle(&self) -> bool {
        self.scope.get().is_none()
            && self.encoding_len.get() == 0
            && self.decoding.get() == 0
            && self.serial.get() == 0
            && self.taking.get() == 0
            && !self.taken_any.get()
            && self.dead_receiver.get().is_none()
            && self.undoing.get() == Undoing::Unsend
            && self.receipts.get() == 0
    }

    const fn new() -> Self {
        Self {
            scope: Cell::new(None),
            encoding_len: Cell::new(0),
            decoding: Cell::new(0),
            serial: Cell::new(0),
            serials: Cell::new(0),
            taking: Cell::new(0),
            taken_any: Cell::new(false),
            last_plan: Cell::new(None),
            judging: Cell::new(check::NO_SHAPES),
            dead_receiver: Cell::new(None),
            undoing: Cell::new(Undoing::Unsend),
            receipts: Cell::new(0),
        }
    }

    /// Ends a decoding or a take: settles the handles received, if any, once the last
    /// one ends. A message without handles costs one flag's test.
    #[inline(always)]
    fn settle_if_done(&self) {
        if self.taken_any.get() {
            self.settle_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn settle_slow(&self) {
        let mut panicked = end_decodings_after(self.serial.get());
        // Outermost by the serial, not the depth: `probe_plan` hides the depth of the
        // decoding it runs in, and a decoding nested in the probe (a probed `Deserialize`
        // that decodes) is not the outermost one. (review55 L1: it ran the outer
        // decoding's settles early and cleared `taken_any` while that decoding's entries
        // were left, so its next attempt received a kept handle again.)
        if self.serial.get() == 0 && self.taking.get() == 0 {
            self.taken_any.set(false);
            let settles = TAKEN.with(|t| std::mem::take(&mut *t.borrow_mut()));
            // Each one, even after one panicked (an assertion of the heap's or a robust
            // mutex's, a drain's code): the rest would stay pending, their receives
            // reserved for this process until it ends (review58 L2).
            for settle in settles.into_iter().rev() {
                if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(settle)) {
                    panicked.get_or_insert(panic);
                }
            }
        }
        // A let-go's or a settle's panic goes on once the message is settled (review55
        // L2: resumed before, it left the settles to this thread's next decoding, if any),
        // unless the decoding ends in an unwind already, which reports a failure (a panic
        // resumed in that unwind's drop would abort the process: review58 L2).
        if let Some(panic) = panicked
            && !std::thread::panicking()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

/// What names a handle's object and kind: its object's offset, generation and seal, as
/// written, its kind (a side's mark included) mixed in. Every copy of a handle has the
/// same; a handle being dropped knows this much of itself (`Shared::read_mark`).
pub(crate) type HandleMark = [u64; 3];

/// A handle a decoding read from its message (whether it was then received or refused):
/// its [`HandleMark`], and which of the message's handles it is (a handle's
/// `Wire::read_mark`), so that two copies of one handle in one message are told apart,
/// and a second read of the same bytes is known as such (see [`Decoded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandleRead {
    pub(crate) mark: HandleMark,
    /// The handle's place among its message's handles: [`copy_in_message`] when it was
    /// written.
    pub(crate) copy: u64,
}

/// Notes that the decoding in progress read the handle `read` from its message (called by
/// a handle's `Deserialize` once it has read its fields, before anything else).
pub(crate) fn handle_read(read: HandleRead) {
    READ.with(|r| {
        // The noting decoding's own reads, not a nested one's (a `Deserialize` that takes
        // another message): see `noting_reads`.
        if let Some((depth, noted)) = r.borrow_mut().as_mut()
            && *depth == STATE.with(|s| s.decoding.get())
        {
            noted.push(read);
        }
    });
}

/// A handle an open decoding met ([`DECODED`]): what its wire notes when read
/// (`Wire::read_mark`: its mark and its copy), the serial of that decoding, and what
/// became of it there.
///
/// serde's untagged enums (and any `Deserialize` that buffers and tries again) decode one
/// copy of a handle once per attempt, on the same bytes. An attempt that receives the
/// handle and then fails (on the handle's message type, or on a field beside it) drops it;
/// the next attempt's receive then found no count left for it, "the handle was received
/// already", and the message was lost (review37 M2, review47 M1). So a handle dropped
/// inside the decoding that received it is kept for that decoding ([`keep_dropped`]), and
/// its next read there takes it back ([`take_back`]): let go of only once the decoding
/// ends without one. An attempt that reads it as another type discards its count unless
/// an earlier attempt kept or discarded it ([`discarding`]), and a later receive voids such
/// a discard.
///
/// A pending receive refused for a full heap registers the take of its count with the
/// message's all the same, and a later attempt at the same bytes is refused again without
/// a receive ([`unrecorded_handle`], [`refused_for_full_heap`]).
///
/// Copies of one handle in one message are told apart by their place among its handles
/// ([`HandleRead::copy`], written in each wire): a read of a copy the decoding met before
/// is another attempt at it, and a read of another copy is a copy of its own, received,
/// discarded or refused as any. (hand44: told apart by their marks only, a decoding that
/// kept, discarded or was refused one copy and then read another took the first back,
/// voided its discard, or refused the second without registering its take: the second
/// copy's count stayed in flight for the family's life. And a `Deserialize` that read the
/// same bytes twice while it held the first read's handle, the second time as another type
/// (two `flatten`ed maps), discarded that read: a count no entry reserved, another
/// message's if one was in flight.) A handle being dropped does not know its copy: it is
/// kept as any copy of its mark the decoding holds, and an attempt at the bytes of a copy
/// held still takes back a kept copy of the same mark: the handles are alike.
///
/// Entries are keyed by their decoding's serial, not its depth, and an ended decoding's are
/// taken out before any of its kept handles is let go of: a decoding sees only its own,
/// never those of another message's decoding at the same depth, nor those of the decoding
/// whose let-go it runs in (a `destroy` that drains messages). (review52 L2: keyed by depth,
/// a let-go that panicked left its decoding's other entries to the next message's
/// decoding, and a decoding nested in a let-go took back a handle the ended one kept;
/// `probe_plan`, which hides the decoding's depth, had a decoding nested in the probe end
/// all the outer's.)
struct Decoded {
    read: HandleRead,
    decoding: u64,
    state: Met,
    /// Where the entry met before it of the same object is in `met`, if any, once the
    /// entries are chained ([`DecodedHandles::chain`]).
    older: Option<usize>,
    /// The highest copy its decoding met up to it, its own included: a read of a higher
    /// copy is the first of it there ([`DecodedHandles::find_copy`]).
    copies: u64,
}

/// An object's offset and generation: what a chain of [`DecodedHandles`] gathers (every
/// copy of its handles, and of its sides' handles).
type Object = (u64, u64);

/// The object of the handle marked `mark`.
fn object_of(mark: &HandleMark) -> Object {
    (mark[0], mark[1])
}

/// The handles the open decodings of a thread met ([`DECODED`]), in the order of their
/// decodings' serials (innermost decoding's last: an outer one meets handles only once
/// the inner ones ended and were taken out), with how many are kept, refused for a full
/// heap and discarded: a receive looks for none of them when there is none, so that a
/// message of many handles is not a search per handle.
///
/// Once there are many, the entries of one object are chained, newest first, from
/// `newest` ([`Self::chain`]): a look for a handle follows its object's chain, not every
/// entry of the decoding. FxHash: the keys come from messages, and colliding ones (forged
/// bytes, the only way to choose them) cost what a scan did.
struct DecodedHandles {
    met: Vec<Decoded>,
    /// Whether the entries are chained: from the first look at more than [`CHAIN_ABOVE`]
    /// entries until none is left.
    chained: bool,
    newest: rustc_hash::FxHashMap<Object, usize>,
    kept: usize,
    unrecorded: usize,
    discarded: usize,
}

/// How many entries a look scans before they are chained ([`DecodedHandles::chain`]).
const CHAIN_ABOVE: usize = 32;

/// How many entries, and chains, a thread keeps room for once its decodings ended
/// ([`DecodedHandles::take_after`]).
const ROOM_KEPT: usize = 1024;

impl DecodedHandles {
    const fn new() -> Self {
        Self {
            met: Vec::new(),
            chained: false,
            newest: std::collections::HashMap::with_hasher(rustc_hash::FxBuildHasher),
            kept: 0,
            unrecorded: 0,
            discarded: 0,
        }
    }

    /// Notes that the decoding `decoding` met the handle `read`, with what became of it.
    fn push(&mut self, read: HandleRead, decoding: u64, state: Met) {
        let older = if self.chained { self.newest.insert(object_of(&read.mark), self.met.len()) } else { None };
        let copies = match self.met.last() {
            Some(last) if last.decoding == decoding => last.copies.max(read.copy),
            _ => read.copy,
        };
        self.met.push(Decoded { read, decoding, state, older, copies });
    }

    /// Chains the entries by object, if they are not yet and a scan per look would cost:
    /// an untagged enum whose first attempt received n handles and failed looks for each
    /// one at its drop and at its next attempt's read, about n² compares in all (review52
    /// L3). Fewer entries are scanned: a chain costs every message of handles a map's
    /// insert and removal per handle, more than the look it saves.
    fn chain(&mut self) {
        if self.chained || self.met.len() <= CHAIN_ABOVE {
            return;
        }
        for (at, met) in self.met.iter_mut().enumerate() {
            met.older = self.newest.insert(object_of(&met.read.mark), at);
        }
        self.chained = true;
    }

    /// The entries of `object` in the open decodings, newest first, with where each is in
    /// `met`: its chain, or a scan down `met`.
    fn of(&self, object: Object) -> impl Iterator<Item = (usize, &Decoded)> {
        let before = move |end: usize| self.met[..end].iter().rposition(|met| object_of(&met.read.mark) == object);
        let mut at = if self.chained { self.newest.get(&object).copied() } else { before(self.met.len()) };
        std::iter::from_fn(move || {
            let here = at?;
            let met = &self.met[here];
            at = if self.chained { met.older } else { before(here) };
            Some((here, met))
        })
    }

    /// Where the newest entry of the decoding `decoding` (the innermost open one) of the
    /// handle marked `mark` that `wanted` accepts is in `met`.
    fn find(&mut self, decoding: u64, mark: &HandleMark, wanted: impl Fn(&Decoded) -> bool) -> Option<usize> {
        self.chain();
        // Past an entry of another decoding, the object's entries are all outer ones'.
        let mut mine = self.of(object_of(mark)).take_while(|(_, met)| met.decoding == decoding);
        mine.find(|(_, met)| met.read.mark == *mark && wanted(met)).map(|(at, _)| at)
    }

    /// [`Self::find`] of the copy `read` itself. A copy higher than every one the decoding
    /// met is not looked for: a decoding's first reads go up the message (copies are
    /// numbered as written), so that a receive's look costs nothing until it reads again.
    fn find_copy(&mut self, decoding: u64, read: &HandleRead, wanted: impl Fn(&Met) -> bool) -> Option<usize> {
        // The decoding's newest entry, if any, is the last: an inner one's are taken out.
        let met_before = self.met.last().is_some_and(|last| last.decoding == decoding && last.copies >= read.copy);
        if !met_before {
            return None;
        }
        self.find(decoding, &read.mark, |met| met.read == *read && wanted(&met.state))
    }

    /// Takes out the entries of the decodings after `serial` (ended), counted out and
    /// unchained.
    fn take_after(&mut self, serial: u64) -> Vec<Decoded> {
        let ended = self.met.iter().rposition(|met| met.decoding <= serial).map_or(0, |last| last + 1);
        let ended = self.met.split_off(ended);
        // Newest first: each is its object's newest entry when its turn comes.
        for met in ended.iter().rev() {
            if self.chained {
                let object = object_of(&met.read.mark);
                match met.older {
                    Some(older) => self.newest.insert(object, older),
                    None => self.newest.remove(&object),
                };
            }
            match met.state {
                Met::Kept(_) => self.kept -= 1,
                Met::Unrecorded => self.unrecorded -= 1,
                Met::Discarded(_) => self.discarded -= 1,
                Met::Received => {}
            }
        }
        if self.met.is_empty() {
            // Every chain is undone with the last entry, and the room of a message of many
            // handles given back (review65 L4: kept for the thread's life).
            self.chained = false;
            self.met.shrink_to(ROOM_KEPT);
            self.newest.shrink_to(ROOM_KEPT);
        }
        ended
    }
}

/// What became of a handle in the decoding that met it ([`Decoded`]).
enum Met {
    /// Received, and held by the value being decoded.
    Received,
    /// Refused for a full heap: no handle, its count taken with the message all the same.
    Unrecorded,
    /// Received, then dropped inside the decoding: held here until a later attempt takes
    /// it back, or the decoding ends.
    Kept(Kept),
    /// Read as another type: its count is discarded once the message is taken, unless a
    /// later attempt receives it and sets the flag (the entry is `Received` then).
    Discarded(Rc<Cell<bool>>),
}

/// A handle dropped inside the decoding that received it ([`keep_dropped`]): its object's
/// offset, its side (0 for an object's own handle), and what lets go of it as its drop
/// would have.
pub(crate) struct Kept {
    pub(crate) off: u64,
    pub(crate) side: usize,
    pub(crate) let_go: fn(u64, usize),
}

/// Lets go of the handles kept by the decodings after `serial` (the innermost open one's,
/// 0 when none), which have ended, and forgets what those decodings met. Returns the first
/// panic of a let-go, for the caller to resume once the message is settled.
fn end_decodings_after(serial: u64) -> Option<Box<dyn std::any::Any + Send>> {
    // Taken out first, then let go of out of the borrow (a let-go may free an object, whose
    // `destroy` drops handles and decodes).
    let ended = DECODED.with(|d| d.borrow_mut().take_after(serial));
    let mut panicked = None;
    // Last first, as their drops would have. Each one, even after a let-go panicked (a
    // robust mutex's or the heap's assertion, a `destroy`'s): the first panic is returned
    // once all are let go of.
    for met in ended.into_iter().rev() {
        if let Met::Kept(kept) = met.state
            && let Err(panic) = std::panic::catch_unwind(|| (kept.let_go)(kept.off, kept.side))
        {
            panicked.get_or_insert(panic);
        }
    }
    panicked
}

/// Notes that the decoding in progress received the handle whose wire notes `read` (a
/// pending or carried receive): a handle of it dropped before the decoding ends is kept
/// for it ([`keep_dropped`]), and an attempt that reads it as another type discards
/// nothing. A discard an earlier attempt registered for it is voided (see [`Decoded`]).
pub(crate) fn received_handle(read: HandleRead) {
    met_handle(read, Met::Received);
}

/// Notes that the decoding in progress refused the handle whose wire notes `read` for a
/// full heap, after registering the take of its count with the message's: a later attempt
/// at the same bytes refuses it again without a receive ([`refused_for_full_heap`]), and
/// one that reads it as another type discards nothing. A discard an earlier attempt
/// registered for it is voided.
pub(crate) fn unrecorded_handle(read: HandleRead) {
    met_handle(read, Met::Unrecorded);
}

/// Runs `f` on this thread's [`DecodedHandles`] and the serial of the decoding in progress.
fn with_decoded<R>(f: impl FnOnce(&mut DecodedHandles, u64) -> R) -> R {
    let decoding = STATE.with(|s| s.serial.get());
    DECODED.with(|d| f(&mut d.borrow_mut(), decoding))
}

/// [`received_handle`] and [`unrecorded_handle`]: what the decoding in progress did with
/// the handle `read`, taking its count with the message.
fn met_handle(read: HandleRead, state: Met) {
    STATE.with(|s| s.taken_any.set(true));
    with_decoded(|d, decoding| {
        if matches!(state, Met::Unrecorded) {
            d.unrecorded += 1;
        }
        if d.discarded != 0
            && let Some(at) = d.find_copy(decoding, &read, |state| matches!(state, Met::Discarded(_)))
        {
            if let Met::Discarded(voided) = std::mem::replace(&mut d.met[at].state, state) {
                voided.set(true);
            }
            d.discarded -= 1;
        } else {
            d.push(read, decoding, state);
        }
    });
}

/// Whether an earlier attempt of the decoding in progress at the handle whose wire notes
/// `read` was refused for a full heap ([`unrecorded_handle`]): the caller refuses it again,
/// receiving nothing and registering nothing, since that attempt registered the take of
/// its count. (review52 M1: the next attempt received again, refused or not, and the
/// message's take took two counts for one wire: another message's, which then failed
/// "received already".)
pub(crate) fn refused_for_full_heap(read: HandleRead) -> bool {
    STATE.with(|s| s.taken_any.get())
        && with_decoded(|d, decoding| {
            d.unrecorded != 0 && d.find_copy(decoding, &read, |state| matches!(state, Met::Unrecorded)).is_some()
        })
}

/// Whether a handle marked `mark`, being dropped, was received by the decoding in
/// progress and not dropped yet (a copy of that mark held, whichever: see [`Decoded`]):
/// then `kept` is held for that decoding instead, and the caller lets nothing go. Called by
/// a handle's drop while [`settles_pending`].
pub(crate) fn keep_dropped(mark: HandleMark, kept: Kept) -> bool {
    with_decoded(|d, decoding| {
        let Some(at) = d.find(decoding, &mark, |met| matches!(met.state, Met::Received)) else { return false };
        d.met[at].state = Met::Kept(kept);
        d.kept += 1;
        true
    })
}

/// Whether an open decoding of this thread received a handle of the object at `off` (of
/// `generation`), an object's own or a side's, and holds it still or keeps it dropped for
/// a later attempt, which may take it back (see [`Decoded`]).
pub(crate) fn held_in_decoding(off: u64, generation: u64) -> bool {
    DECODED.with(|d| d.borrow().of((off, generation)).any(|(_, met)| matches!(met.state, Met::Received | Met::Kept(_))))
}

/// How many handles of the object at `off` (of `generation`), an object's own or a
/// side's, the open decodings of this thread keep dropped ([`keep_dropped`]): counted as
/// this process's by the object's table, yet no handle of it unless a later attempt takes
/// one back. A liveness answer leaves them out, as it would have had they been let go of
/// at once (review52 L4).
pub(crate) fn kept_of(off: u64, generation: u64) -> u32 {
    if !settles_pending() {
        return 0;
    }
    DECODED.with(|d| {
        let d = d.borrow();
        if d.kept == 0 {
            return 0;
        }
        let kept = d.of((off, generation)).filter(|(_, met)| matches!(met.state, Met::Kept(_)));
        u32::try_from(kept.count()).expect("kept handles fewer than an entry's count")
    })
}

/// Whether the decoding in progress received the copy whose wire notes `read` and then
/// dropped a handle of its mark ([`keep_dropped`]): that handle is taken back, and the
/// caller's read of the same bytes holds it as it was, without a receive (the handle of
/// the object at the wire's offset, of the wire's type, this process's). The copy's own,
/// if it was the one kept; else another copy's of the same mark, the copy read held still
/// (a drop does not know its copy, see [`Decoded`]). A copy not met yet takes nothing
/// back: it has a count of its own.
pub(crate) fn take_back(read: HandleRead) -> bool {
    STATE.with(|s| s.taken_any.get())
        && with_decoded(|d, decoding| {
            if d.kept == 0 {
                return false;
            }
            let met = |state: &Met| matches!(state, Met::Received | Met::Kept(_));
            let Some(at) = d.find_copy(decoding, &read, met) else { return false };
            let kept = |met: &Decoded| matches!(met.state, Met::Kept(_));
            let kept = if kept(&d.met[at]) { Some(at) } else { d.find(decoding, &read.mark, kept) };
            let Some(at) = kept else { return false };
            // Forgotten, not let go of: held by the caller's handle now.
            d.met[at].state = Met::Received;
            d.kept -= 1;
            true
        })
}

/// Whether the decoding in progress received the copy whose wire notes `read` and holds
/// its handle still, nothing of its mark kept ([`take_back`] is asked first): the caller's
/// read of the same bytes makes another handle of it, as a clone does, taking no count,
/// and notes it received. Held by this decoding's account only: a handle let go of out of
/// its sight (on another thread, in a nested decoding) leaves the entry, so the caller
/// joins only under a pin, if this process holds the object still (`Holders::join_held`,
/// review65 M1). (hand44: it received again, a count no entry reserved, another
/// message's if one was in flight, whose reader then failed "received already": two
/// `flatten`ed maps of one handle type each read every entry.)
pub(crate) fn held_again(read: HandleRead) -> bool {
    STATE.with(|s| s.taken_any.get())
        && with_decoded(|d, decoding| d.find_copy(decoding, &read, |state| matches!(state, Met::Received)).is_some())
}

/// Whether the decoding in progress, which read the copy whose wire notes `read` as
/// another type, should discard its count once the message is taken: `None` when an
/// earlier read of the same copy left that count accounted for (received it, held or
/// kept; discarded it; or was refused it for a full heap), else the flag a later receive of
/// the copy sets to void the discard (see [`Decoded`]). Another copy of the same handle is
/// no such read: its own count is discarded. (review52 L1: any entry of the mark skipped
/// the discard, and a second copy beside a received one, read as another type, left its
/// count in flight for the family's life. Its fix took a held copy for another one, and a
/// second read of its bytes discarded another message's count: hand44.)
pub(crate) fn discarding(read: HandleRead) -> Option<Rc<Cell<bool>>> {
    STATE.with(|s| s.taken_any.set(true));
    with_decoded(|d, decoding| {
        if d.find_copy(decoding, &read, |_| true).is_some() {
            return None;
        }
        let voided = Rc::new(Cell::new(false));
        d.push(read, decoding, Met::Discarded(voided.clone()));
        d.discarded += 1;
        Some(voided)
    })
}

/// Which of its message's handles the one being written is ([`HandleRead::copy`]): how
/// many undo actions the innermost open encoding registered so far, the handle's own
/// included (called after its [`on_abort`]). Counted from the message's own scope, so that
/// a message measured ([`encoded_len`]) and then written, or written again
/// self-described, is the same bytes.
pub(crate) fn copy_in_message() -> u64 {
    STATE.with(|s| (s.encoding_len.get() - s.scope.get().unwrap_or(0)) as u64)
}

/// Whether a message is being encoded on this thread (so handles may serialize).
pub(crate) fn encoding() -> bool {
    STATE.with(|s| s.scope.get().is_some())
}

/// Whether a message is being decoded on this thread (so handles may deserialize).
pub(crate) fn decoding() -> bool {
    STATE.with(|s| s.decoding.get() > 0)
}

/// Registers what makes a handle just decoded final (its settle), or what must wait until
/// then (the discard of a handle read as another type, the drain of a channel dropped while
/// it was being received): run when the outermost decoding ends, or, inside a
/// [`TakeScope`], when the channel has taken the message. Until then the receive is
/// pending: a process killed in between leaves the handle's count in flight, for the
/// consumer that gets the message again.
pub(crate) fn on_taken(settle: impl FnOnce() + 'static) {
    TAKEN.with(|t| t.borrow_mut().push(Box::new(settle)));
    STATE.with(|s| s.taken_any.set(true));
}

/// Whether this thread has registered [`on_taken`] actions not yet run, or an open decoding
/// of it met a handle ([`received_handle`]): a decoding or a take in progress received (or
/// discarded) a handle that is not final yet, or that it may keep once dropped. One flag's
/// test.
pub(crate) fn settles_pending() -> bool {
    STATE.with(|s| s.taken_any.get())
}

/// What [`State::taking`] names for a take of no object (a child's argument, a pool's
/// item): no object's address (those are aligned).
const NO_OBJECT: usize = 1;

/// Held by a channel around the decoding of a message and the store that takes it: the
/// handles decoded stay pending until the scope ends (see [`on_taken`]).
///
/// A take from a shared object ([`TakeScope::of`], a ring's) names it, so that a take or
/// put from inside it (a `Deserialize` or a `Drop`, user code run under the object's
/// consumers' lock) can tell, once it finds that lock held or the object full, that it
/// would wait for itself ([`TakeScope::nested_in_take_of`], [`in_take_of`]).
pub(crate) struct TakeScope {
    /// [`State::taking`] before this scope: the take it is nested in, 0 when none.
    outer: usize,
}

impl TakeScope {
    /// A take of no channel object.
    #[inline]
    pub(crate) fn enter() -> Self {
        Self::of(NO_OBJECT)
    }

    /// The take of a message of `object` (its address in this process, never 0 or 1).
    #[inline]
    pub(crate) fn of(object: usize) -> Self {
        let outer = STATE.with(|s| s.taking.replace(object));
        if outer != 0 {
            Self::nest(outer);
        }
        TakeScope { outer }
    }

    #[cold]
    #[inline(never)]
    fn nest(outer: usize) {
        OUTER_TAKES.with(|o| o.borrow_mut().push(outer));
    }

    #[cold]
    #[inline(never)]
    fn unnest() {
        OUTER_TAKES.with(|o| o.borrow_mut().pop());
    }

    /// Whether this take is nested in a take of `object` on this thread: a take from an
    /// object inside the take of its own message (which holds the object's consumers'
    /// lock until the user code inside returns). A look for a slow path only.
    #[cold]
    pub(crate) fn nested_in_take_of(&self, object: usize) -> bool {
        self.outer != 0 && OUTER_TAKES.with(|o| o.borrow().contains(&object))
    }
}

impl Drop for TakeScope {
    #[inline]
    fn drop(&mut self) {
        if self.outer != 0 {
            Self::unnest();
        }
        STATE.with(|s| {
            s.taking.set(self.outer);
            s.settle_if_done();
        });
    }
}

/// Whether this thread is inside a take of `object` ([`TakeScope::of`]), the innermost or
/// one it is nested in. A look for a slow path only (a put finding `object` full).
#[cold]
pub(crate) fn in_take_of(object: usize) -> bool {
    STATE.with(|s| s.taking.get()) == object || OUTER_TAKES.with(|o| o.borrow().contains(&object))
}

/// Registers what undoes the in-flight count of a handle just encoded, should the message
/// never be sent: `undo(key)`.
/// `key` names the handle (see `shm::receipts`).
pub(crate) fn on_abort(key: ReceiptKey, undo: UndoFn) {
    if encoding() {
        ENCODING.with(|e| {
            let mut e = e.borrow_mut();
            e.push(Undo { key, gone: undo });
            STATE.with(|s| s.encoding_len.set(e.len()));
        });
    }
}

/// An encoded message. Dropping it without [`Encoded::sent`] releases the handles it holds.
#[must_use = "an encoded message holds its handles until it is sent or dropped"]
pub(crate) struct Encoded {
    pub(crate) bytes: Vec<u8>,
    undo: Vec<Undo>,
}

impl fmt::Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoded").field("len", &self.bytes.len()).field("handles", &self.undo.len()).finish()
    }
}

impl Encoded {
    /// The message reached its channel: the handles in it now belong to the receiver.
    pub(crate) fn sent(mut self) {
        self.undo.clear();
    }

    /// The message without its bytes, kept for the undo of its handles only (by the state
    /// of a child that may still die before it takes them: its bytes went to the child).
    pub(crate) fn undo_only(mut self) -> Self {
        self.bytes = Vec::new();
        self
    }

    /// Whether the message carries handles.
    pub(crate) fn has_handles(&self) -> bool {
        !self.undo.is_empty()
    }

    /// How many handles the message carries.
    pub(crate) fn handles(&self) -> usize {
        self.undo.len()
    }

    /// The undo of each handle the message carries: its key and the function that undoes
    /// its count (`undo(key)`), in the order they run.
    pub(crate) fn undo_entries(&self) -> impl Iterator<Item = (ReceiptKey, UndoFn)> + '_ {
        self.undo.iter().map(|undo| (undo.key, undo.gone))
    }
}

/// Runs `f` (the undo actions of a child's argument's token, `shm::receipts`) with each
/// undo doing `how` ([`undoing`]), and `pid` as the process whose message it gives back
/// ([`dead_receiver`]); the ones before restored after.
pub(crate) fn undoing_as<R>(how: Undoing, pid: Option<u32>, f: impl FnOnce() -> R) -> R {
    /// Restores the receiver and the undo's kind before however `f` ends.
    struct Restore(Undoing, Option<u32>);
    impl Drop for Restore {
        fn drop(&mut self) {
            STATE.with(|s| {
                s.undoing.set(self.0);
                s.dead_receiver.set(self.1);
            });
        }
    }
    let _restore = Restore(STATE.with(|s| s.undoing.replace(how)), STATE.with(|s| s.dead_receiver.replace(pid)));
    f()
}

/// What the undo actions running now do ([`undoing_as`]; else [`Undoing::Unsend`]).
pub(crate) fn undoing() -> Undoing {
    STATE.with(|s| s.undoing.get())
}

/// Gives back the handles of `encoded`, a message the process `pid` received and is now
/// dead (a child's argument, at its reaping), but those it wrote a receipt for
/// (`receipted`, see `shm::receipts`; each key answers for one handle): each other handle's
/// undo first gives up that process's pending receives of its object (see
/// `Holders::undo`), then takes its own count.
pub(crate) fn give_back_from_dead(mut encoded: Encoded, pid: u32, mut receipted: Vec<ReceiptKey>) {
    encoded.undo.retain(|undo| match receipted.iter().position(|key| *key == undo.key) {
        Some(i) => {
            receipted.swap_remove(i);
            false
        }
        None => true,
    });
    /// Forgets the receiver however the undo actions end.
    struct Forget;
    impl Drop for Forget {
        fn drop(&mut self) {
            STATE.with(|s| s.dead_receiver.set(None));
        }
    }
    STATE.with(|s| s.dead_receiver.set(Some(pid)));
    let _forget = Forget;
    drop(encoded);
}

/// Runs `decode` (a child's decoding of its argument, a pool worker's of its chunk) with
/// the receives of its handles taking them from the carrier `block` names, or sending
/// their receipts on the socket it names (0: neither; see `shm::receipts`).
pub(crate) fn receipting<R>(block: u64, decode: impl FnOnce() -> R) -> R {
    /// Forgets the carrier however the decoding ends.
    struct Forget;
    impl Drop for Forget {
        fn drop(&mut self) {
            STATE.with(|s| s.receipts.set(0));
        }
    }
    STATE.with(|s| s.receipts.set(block));
    let _forget = Forget;
    decode()
}

/// The carrier of the argument being decoded, if any ([`receipting`]): only for
/// the argument's own handles, not for those of a message a `Deserialize` impl would
/// decode inside it (a nested decoding).
pub(crate) fn receipts() -> Option<u64> {
    STATE.with(|s| Some(s.receipts.get()).filter(|&b| b != 0 && s.decoding.get() == 1))
}

/// The carrier of [`receipting`], at any depth of decoding (for a give-back of
/// the argument's unread handles, which runs after its decoding).
pub(crate) fn receipting_block() -> Option<u64> {
    STATE.with(|s| Some(s.receipts.get()).filter(|&b| b != 0))
}

/// The process whose message the undo actions running now give back, if it died
/// receiving it ([`give_back_from_dead`]).
pub(crate) fn dead_receiver() -> Option<u32> {
    STATE.with(|s| s.dead_receiver.get())
}

impl Drop for Encoded {
    fn drop(&mut self) {
        for undo in self.undo.drain(..) {
            undo.run();
        }
    }
}

/// The encoding of one message: the handles encoded inside register their undo in it. A
/// few `Cell`s of [`State`] each way and no allocation for a message without handles.
struct HandleScope<'s> {
    state: &'s State,
    /// The scope this one is nested in (`scope` before `enter`).
    outer: Option<usize>,
    open: bool,
}

impl<'s> HandleScope<'s> {
    #[inline]
    fn enter(state: &'s State) -> Self {
        let start = state.encoding_len.get();
        Self { state, outer: state.scope.replace(Some(start)), open: true }
    }

    /// The undo actions registered so far in the innermost scope, taken out of it.
    #[inline]
    fn take_so_far(state: &State) -> Vec<Undo> {
        let Some(start) = state.scope.get() else { return Vec::new() };
        if state.encoding_len.get() <= start {
            return Vec::new();
        }
        Self::split_off(state, start)
    }

    #[cold]
    #[inline(never)]
    fn split_off(state: &State, start: usize) -> Vec<Undo> {
        ENCODING.with(|e| {
            let mut e = e.borrow_mut();
            let undo = e.split_off(start);
            state.encoding_len.set(e.len());
            undo
        })
    }

    #[inline]
    fn close(&mut self) -> Vec<Undo> {
        let undo = Self::take_so_far(self.state);
        self.state.scope.set(self.outer);
        self.open = false;
        undo
    }

    #[inline]
    fn finish(mut self) -> Vec<Undo> {
        self.close()
    }

    /// Whether a handle registered its undo in this scope (the flag the handle serializer
    /// sets: `encoding_len` moved past the scope's start).
    #[inline]
    fn holds_handles(&self) -> bool {
        self.state.scope.get().is_some_and(|start| self.state.encoding_len.get() > start)
    }

    /// Closes a scope that holds no handle ([`Self::holds_handles`] said so): no undo
    /// vector to take out.
    #[inline]
    fn close_empty(mut self) {
        self.state.scope.set(self.outer);
        self.open = false;
    }

    /// A scope left open (a panic while encoding): the handles encoded so far are given
    /// back, and handles no longer serialize.
    #[cold]
    #[inline(never)]
    fn abandon(&mut self) {
        for u in self.close() {
            u.run();
        }
    }
}

impl Drop for HandleScope<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.open {
            self.abandon();
        }
    }
}

/// The first byte of a message: how the rest is encoded.
pub(crate) const POSTCARD: u8 = 0;
/// MessagePack with field names, for the types postcard cannot carry.
const MESSAGEPACK: u8 = 1;

thread_local! {
    /// Per type sent from this thread, by its `TypeId` (`typeid::of`, lifetimes erased: a
    /// `type_name` is no key, two types may share one, review149 M3): whether it needs the
    /// self-describing encoding (see `probe`), and the number of its probe's shapes.
    static PLANS: RefCell<Vec<(TypeId, Plan, u32)>> = const { RefCell::new(Vec::new()) };
}

/// What the probe found of a type (see `probe`): whether its messages go self-described.
pub(crate) use probe::Answer as Plan;

/// The plan of a `T`, probed once per type and thread: whether it is sent in the
/// self-describing encoding from the start, and whether its depth is counted.
#[inline(always)]
fn plan_in<T: DeserializeOwned>(state: &State) -> Plan {
    plan_and_shapes_in::<T>(state).0
}

/// [`plan_in`], and the number of the shapes its messages are judged by.
#[inline(always)]
fn plan_and_shapes_in<T: DeserializeOwned>(state: &State) -> (Plan, u32) {
    let id = typeid::of::<T>();
    if let Some((last, plan, shapes)) = state.last_plan.get()
        && last == id
    {
        return (plan, shapes);
    }
    let (plan, shapes) = plan_of::<T>(id);
    state.last_plan.set(Some((id, plan, shapes)));
    (plan, shapes)
}

/// Runs `write` (a checked write of a message) judged by the shapes numbered `shapes`,
/// and gives the number judged by before back at its end: a message written inside
/// another's `Serialize` leaves the outer one's judged by its own shapes (review169 M1).
#[inline(always)]
fn judged_by<R>(state: &State, shapes: u32, write: impl FnOnce() -> R) -> R {
    let outer = state.judging.replace(shapes);
    let written = write();
    state.judging.set(outer);
    written
}

/// The plan of a `T` (see [`self_describing`]), for a process that will encode `T`s and
/// can be told ([`assume_plan`]) rather than probe: a child's result.
pub(crate) fn plan<T: DeserializeOwned>() -> Plan {
    STATE.with(plan_in::<T>)
}

/// Records the plan of `T` found by another process of the family (one binary, one answer),
/// so that this one never runs the probe for it: a child started to return an `R` learns
/// `R`'s plan with its boot message, and its start stays free of the probe's work. Only a
/// self-describing plan is taken (see the body).
pub(crate) fn assume_plan<T>(plan: Plan) {
    // Not a postcard plan: the checking serializer then compares the fields a struct's
    // `Serialize` writes with those the probe saw its `Deserialize` read (review149 M6),
    // which needs this thread's own probe of `T`. It runs when the result is encoded, at
    // the child's end, not at its start.
    if !plan.self_describing() {
        return;
    }
    let id = typeid::of::<T>();
    if PLANS.with(|p| p.borrow().iter().all(|(k, _, _)| *k != id)) {
        PLANS.with(|p| p.borrow_mut().push((id, plan, check::NO_SHAPES)));
    }
    STATE.with(|s| s.last_plan.set(Some((id, plan, check::NO_SHAPES))));
}

#[cold]
#[inline(never)]
fn plan_of<T: DeserializeOwned>(id: TypeId) -> (Plan, u32) {
    let known = PLANS.with(|p| p.borrow().iter().find(|(k, _, _)| *k == id).map(|p| (p.1, p.2)));
    if let Some(known) = known {
        return known;
    }
    probe_plan::<T>(id)
}

/// Runs the probe (out of line: once per type and thread, never on a message's path).
#[cold]
#[inline(never)]
fn probe_plan<T: DeserializeOwned>(id: TypeId) -> (Plan, u32) {
    let (plan, shapes) = outside_decodings(probe::needs_self_description::<T>);
    take_detail();
    let shapes = check::keep_shapes(shapes);
    PLANS.with(|p| p.borrow_mut().push((id, plan, shapes)));
    (plan, shapes)
}

/// Runs `probe` (the probe's runs, or a manager's kept value's decoding, [`decode_kept`])
/// as if no message were being decoded on this thread, the depth and the argument's
/// carrier restored however it ends: a handle refuses the probe's
/// made-up value before reading it, and must never see it as a message being decoded. A
/// decoding nested in it (a probed `Deserialize` that decodes) is then not the argument's
/// either: it would take its handles from the argument's carrier ([`receipts`], review58
/// L1).
fn outside_decodings<R>(probe: impl FnOnce() -> R) -> R {
    /// Gives back the depth and the carrier hidden.
    struct Restore(u32, u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            STATE.with(|s| {
                s.decoding.set(self.0);
                s.receipts.set(self.1);
            });
        }
    }
    let _restore = STATE.with(|s| Restore(s.decoding.replace(0), s.receipts.replace(0)));
    probe()
}

/// Where a message is written: a `Vec` appended to up to a limit, a slice, or a count of
/// bytes. One type, not a trait: each message type's serializers are compiled once, not
/// once per destination.
enum Out<'a> {
    Vec { out: &'a mut Vec<u8>, limit: usize, over: bool },
    Slice { out: &'a mut [u8], len: usize },
    Count(usize),
}

impl Out<'_> {
    fn len(&self) -> usize {
        match self {
            Out::Vec { out, .. } => out.len(),
            Out::Slice { len, .. } => *len,
            Out::Count(n) => *n,
        }
    }

    /// Appends `data`, or returns false when there is no room.
    #[inline]
    fn write(&mut self, data: &[u8]) -> bool {
        match self {
            Out::Vec { out, limit, over } => {
                if out.len() + data.len() > *limit {
                    *over = true;
                    return false;
                }
                out.extend_from_slice(data);
                true
            }
            Out::Slice { out, len } => match out.get_mut(*len..*len + data.len()) {
                Some(room) => {
                    room.copy_from_slice(data);
                    *len += data.len();
                    true
                }
                None => false,
            },
            Out::Count(n) => {
                *n += data.len();
                true
            }
        }
    }

    fn truncate(&mut self, len: usize) {
        match self {
            Out::Vec { out, .. } => out.truncate(len),
            Out::Slice { len: used, .. } => *used = len,
            Out::Count(n) => *n = len,
        }
    }

    fn over(&self) -> bool {
        matches!(self, Out::Vec { over: true, .. })
    }
}

/// An [`Out`] as a postcard flavor.
struct Flavored<'a, 'b>(&'a mut Out<'b>);

impl Flavor for Flavored<'_, '_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if self.0.write(data) { Ok(()) } else { Err(postcard::Error::SerializeBufferFull) }
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// An [`Out`] as an `io::Write`, for MessagePack.
struct Written<'a, 'b>(&'a mut Out<'b>);

impl std::io::Write for Written<'_, '_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.write_all(data).map(|()| data.len())
    }

    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.0.write(data) { Ok(()) } else { Err(std::io::ErrorKind::WriteZero.into()) }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes the message of `value` (its tag byte and encoding) to `out`. Handles inside
/// register their undo in the current [`HandleScope`] (of `state`, this thread's).
#[inline]
fn write_message<T: DeserializeOwned, V: Serialize + ?Sized>(
    state: &State,
    value: &V,
    out: &mut Out<'_>,
) -> Result<(), CodecError> {
    let (plan, shapes) = plan_and_shapes_in::<T>(state);
    if plan.self_describing() {
        return write_self_described::<T, V>(value, out);
    }
    let start = out.len();
    if !out.write(&[POSTCARD]) {
        return Err(CodecError::encode(postcard::Error::SerializeBufferFull).of::<T>());
    }
    let mut serializer = postcard::Serializer { output: Flavored(&mut *out) };
    // Only a type whose values may nest past the receivers' limit counts the depth.
    let written = judged_by(state, shapes, || {
        if plan == Plan::Nests {
            check::serialize_counted(value, &mut serializer)
        } else {
            check::serialize(value, &mut serializer)
        }
    });
    match written {
        Ok(()) => Ok(()),
        Err(check::Failure::SelfDescribe) => {
            // Written again: the handles encoded so far (every handle of the scope, which
            // each caller opens for this one message) are given back first.
            out.truncate(start);
            HandleScope::take_so_far(state).into_iter().for_each(Undo::run);
            write_self_described::<T, V>(value, out)
        }
        Err(e) => Err(CodecError::encode(e).of::<T>()),
    }
}

/// The self-describing encoding: out of line, so that the fast path of every message type
/// stays small.
#[cold]
#[inline(never)]
fn write_self_described<T: DeserializeOwned, V: Serialize + ?Sized>(
    value: &V,
    out: &mut Out<'_>,
) -> Result<(), CodecError> {
    if !out.write(&[MESSAGEPACK]) {
        return Err(CodecError::encode(postcard::Error::SerializeBufferFull).of::<T>());
    }
    let mut serializer = rmp_serde::Serializer::new(Written(&mut *out)).with_struct_map();
    check::serialize_described(value, &mut serializer).map_err(|e| CodecError::encode(e).of::<T>())
}

/// Encodes `value` into a fresh buffer.
pub(crate) fn encode<T: Serialize + DeserializeOwned>(value: &T) -> Result<Encoded, CodecError> {
    encode_as::<T, T>(value)
}

/// [`encode`] into `room`, emptied first: a buffer made beforehand (a fork child's,
/// made by its parent), so that a small message allocates nothing.
pub(crate) fn encode_in<T: Serialize + DeserializeOwned>(value: &T, mut room: Vec<u8>) -> Result<Encoded, CodecError> {
    room.clear();
    STATE.with(|state| {
        encode_scoped(state, room, |bytes| {
            write_message::<T, T>(state, value, &mut Out::Vec { out: bytes, limit: usize::MAX, over: false })
        })
    })
}

/// Encodes `value` as a message to be decoded as a `T` (a slice sent as a `Vec`).
pub(crate) fn encode_as<T: DeserializeOwned, V: Serialize + ?Sized>(value: &V) -> Result<Encoded, CodecError> {
    STATE.with(|state| {
        encode_scoped(state, Vec::new(), |bytes| {
            write_message::<T, V>(state, value, &mut Out::Vec { out: bytes, limit: usize::MAX, over: false })
        })
    })
}

/// Runs `write` into `bytes` inside a handle scope: the message, or `write`'s error with
/// every handle it registered given back.
fn encode_scoped(
    state: &State,
    mut bytes: Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), CodecError>,
) -> Result<Encoded, CodecError> {
    let scope = HandleScope::enter(state);
    let result = write(&mut bytes);
    let undo = scope.finish();
    match result {
        Ok(()) => Ok(Encoded { bytes, undo }),
        Err(e) => {
            undo.into_iter().for_each(Undo::run);
            Err(e)
        }
    }
}

/// [`encode_as`] into a buffer of at most `limit` bytes: `Ok(None)` when the message is
/// larger (the caller then sizes it with [`encoded_len_as`] and writes it once with
/// [`encode_to_slice_as`]), so that a large message is never built in a growing `Vec`.
pub(crate) fn encode_within<T: DeserializeOwned, V: Serialize + ?Sized>(
    value: &V,
    limit: usize,
) -> Result<Option<Encoded>, CodecError> {
    STATE.with(|state| {
        let mut bytes = Vec::new();
        let scope = HandleScope::enter(state);
        let mut out = Out::Vec { out: &mut bytes, limit, over: false };
        let result = write_message::<T, V>(state, value, &mut out);
        let over = out.over();
        let undo = scope.finish();
        match result {
            Ok(()) => Ok(Some(Encoded { bytes, undo })),
            Err(e) => stopped(e, over, undo),
        }
    })
}

/// An encoding that failed: its handles released; `Ok(None)` when it only stopped at its
/// size limit (`over`), the error otherwise.
fn stopped<R>(e: CodecError, over: bool, undo: Vec<Undo>) -> Result<Option<R>, CodecError> {
    undo.into_iter().for_each(Undo::run);
    if over {
        take_detail();
        Ok(None)
    } else {
        Err(e)
    }
}

/// Encodes `value` into a thread-local scratch buffer (saving an allocation per message on
/// hot paths) and hands the bytes to `f`, which delivers them or fails; the handles in the
/// message are released unless it delivered. `Ok(true)`: delivered. `Ok(false)`: the
/// encoding would pass `limit` bytes, so it stopped there without calling `f` (the caller
/// then sizes the value with [`encoded_len`] and writes it once with [`encode_to_slice`]),
/// so that a huge message is never built in a temporary buffer. An encoding error is
/// turned into `f`'s error type by `failed`: one flat result, which the hot path moves
/// around cheaply (a nested `Result<Option<Result<..>>>` cost some 200 instructions of
/// moves per message).
pub(crate) fn with_small_encoding<T: Serialize + DeserializeOwned, E>(
    value: &T,
    limit: usize,
    failed: impl FnOnce(CodecError) -> E,
    f: impl FnOnce(&[u8], bool) -> Result<(), E>,
) -> Result<bool, E> {
    SCRATCH.with(|scratch| {
        STATE.with(|state| match scratch.try_borrow_mut() {
            Ok(mut buf) => encode_small(state, &mut buf, value, limit, failed, f),
            // A message encoded while another is (a `Serialize` impl that sends): a buffer
            // of its own.
            Err(_) => encode_small(state, &mut Vec::new(), value, limit, failed, f),
        })
    })
}

/// [`with_small_encoding`] into `buf`. A message without handles (the handle serializer
/// did not register an undo) takes no undo vector: nothing to give back, nothing to drop.
#[inline]
fn encode_small<T: Serialize + DeserializeOwned, E>(
    state: &State,
    buf: &mut Vec<u8>,
    value: &T,
    limit: usize,
    failed: impl FnOnce(CodecError) -> E,
    f: impl FnOnce(&[u8], bool) -> Result<(), E>,
) -> Result<bool, E> {
    buf.clear();
    let scope = HandleScope::enter(state);
    let mut out = Out::Vec { out: &mut *buf, limit, over: false };
    let result = write_message::<T, T>(state, value, &mut out);
    let over = out.over();
    if !scope.holds_handles() {
        scope.close_empty();
        return match result {
            Ok(()) => f(buf, false).map(|()| true),
            Err(e) => match stopped::<()>(e, over, Vec::new()) {
                Ok(_) => Ok(false),
                Err(e) => Err(failed(e)),
            },
        };
    }
    let undo = scope.finish();
    let outcome = match result {
        Ok(()) => {
            let delivered = f(buf, true);
            if delivered.is_err() {
                undo.into_iter().for_each(Undo::run);
            }
            delivered.map(|()| true)
        }
        Err(e) => match stopped::<()>(e, over, undo) {
            Ok(_) => Ok(false),
            Err(e) => Err(failed(e)),
        },
    };
    if buf.capacity() > 1 << 20 {
        *buf = Vec::new();
    }
    outcome
}

/// Encodes `value` into `out`, which must be exactly [`encoded_len`] long (a message
/// written straight into shared memory). The returned [`Encoded`] (without bytes) holds
/// the undo of the handles inside: call [`Encoded::sent`] once the message is delivered.
pub(crate) fn encode_to_slice<T: Serialize + DeserializeOwned>(
    value: &T,
    out: &mut [u8],
) -> Result<Encoded, CodecError> {
    encode_to_slice_as::<T, T>(value, out)
}

/// [`encode_to_slice`] of a message to be decoded as a `T` (a slice sent as a `Vec`).
pub(crate) fn encode_to_slice_as<T: DeserializeOwned, V: Serialize + ?Sized>(
    value: &V,
    out: &mut [u8],
) -> Result<Encoded, CodecError> {
    STATE.with(|state| {
        let scope = HandleScope::enter(state);
        let len = out.len();
        let mut slice = Out::Slice { out, len: 0 };
        let result = write_message::<T, V>(state, value, &mut slice).map(|()| slice.len());
        let undo = scope.finish();
        match result {
            Ok(used) if used == len => Ok(Encoded { bytes: Vec::new(), undo }),
            Ok(used) => {
                undo.into_iter().for_each(Undo::run);
                Err(CodecError::encode(format_args!("the value encoded to {used} bytes after measuring {len}"))
                    .of::<T>())
            }
            Err(e) => {
                undo.into_iter().for_each(Undo::run);
                Err(e)
            }
        }
    })
}

/// Encodes each of `items` as a message of its own, one after the other, appended to
/// `out`, pushing where each ends to `ends` (the items of a pool call whose workers claim
/// them by index). One buffer for all; the returned [`Encoded`] (without bytes) holds the
/// undo of every handle inside.
pub(crate) fn encode_items<A: Serialize + DeserializeOwned>(
    items: &[A],
    out: &mut Vec<u8>,
    ends: &mut Vec<u64>,
) -> Result<Encoded, CodecError> {
    let plain = plain::<A>();
    STATE.with(|state| {
        // The undo of the items encoded so far, in an `Encoded` from the start: a `Serialize`
        // that panics part-way drops it, which gives their handles back (a `Vec<Undo>`
        // dropped by the unwinding would run nothing, and they stayed in flight for ever).
        let mut encoded = Encoded { bytes: Vec::new(), undo: Vec::new() };
        let mut out = Out::Vec { out, limit: usize::MAX, over: false };
        let mut scratch = [0; PLAIN_MAX];
        for item in items {
            if plain && let Some(len) = encode_plain(item, &mut scratch) {
                out.write(&scratch[..len]);
                ends.push(out.len() as u64);
                continue;
            }
            // A scope per item: a fallback to the self-describing encoding gives back the
            // handles of its own item only.
            let scope = HandleScope::enter(state);
            let result = write_message::<A, A>(state, item, &mut out);
            encoded.undo.extend(scope.finish());
            // An error drops `encoded`, which gives the handles back.
            result?;
            ends.push(out.len() as u64);
        }
        Ok(encoded)
    })
}

/// Decodes messages of type `T` one after the other, within one decoding (the handles
/// they hold settle once, after the last): `each` gets each message (`None` where
/// `messages` had none) and the function that decodes it, to call there (inside a
/// `catch_unwind` of its own, say).
pub(crate) fn decode_all<'a, T: DeserializeOwned>(
    messages: impl Iterator<Item = Option<&'a [u8]>>,
    mut each: impl FnMut(Option<&'a [u8]>, fn(&[u8]) -> Result<T, CodecError>),
) {
    fn read_one<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        read_body(bytes, false)
    }
    fn read_plain<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        decode_plain(bytes, false).map_or_else(|| read_body(bytes, false), Ok)
    }
    let read: fn(&[u8]) -> Result<T, CodecError> = if plain::<T>() { read_plain::<T> } else { read_one::<T> };
    let _leave = LeaveDecoding::enter();
    for bytes in messages {
        each(bytes, read);
    }
}

/// Like [`decode`], and every byte must belong to the value: a message of another type
/// that happens to start like a `T` is an error, not a truncated `T`.
pub(crate) fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    read_message(bytes, true)
}

/// Runs `decode` (a decoding, or a step of one that goes on over several calls, such as a
/// pool worker's chunk read one item at a time), adding the handles it reads to `read`,
/// which `shm::give_back_unread` needs if it, or a later step, stops part-way. Only
/// `decode` is noted: what runs between the steps (a task, which may receive handles of
/// other messages) is not, nor a decoding nested in it (a `Deserialize` that takes another
/// message, whose own `noting_reads`, if any, notes it apart). (review65 L6: a nested read
/// of the same mark and copy as one of the message's unread wires hid that wire from the
/// unread scan, and its count stayed in flight.)
///
/// This rests on one assumption (review74 L2): no message carries another encoded message
/// inside its own bytes and decodes it nested. The unread scan (`shm::give_back_unread`)
/// searches a message's raw bytes for wires, so it would find the inner message's wires
/// too; not noted here, they would count as unread, and a failed outer decoding would
/// discard counts that the inner decoding received (another message's, perhaps). Every
/// carrier in the crate (a process's argument, a pool's chunk, a manager call's arguments)
/// is decoded on its own, each under its own `noting_reads`; a new one that decodes a
/// payload from inside a `Deserialize` must note its reads in the outer list, or keep the
/// payload's bytes out of the scan.
pub(crate) fn noting_reads<R>(read: &mut Vec<HandleRead>, decode: impl FnOnce() -> R) -> R {
    /// Puts back what noted before (`None` mostly), also when a `Deserialize` panics.
    struct Restore<'a> {
        read: &'a mut Vec<HandleRead>,
        outer: Option<Option<(u32, Vec<HandleRead>)>>,
    }

    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            if let Some(outer) = self.outer.take() {
                let noted = READ.with(|r| std::mem::replace(&mut *r.borrow_mut(), outer));
                *self.read = noted.map(|(_, noted)| noted).unwrap_or_default();
            }
        }
    }

    // The decoding `decode` opens, one deeper than those open now.
    let depth = STATE.with(|s| s.decoding.get()) + 1;
    let noted = (depth, std::mem::take(read));
    let _restore = Restore { outer: Some(READ.with(|r| r.borrow_mut().replace(noted))), read };
    decode()
}

/// An open decoding of this thread's: entered by [`LeaveDecoding::enter`], left (and the
/// handles received settled, once the last one ends) when dropped.
///
/// Each decoding gets a serial of its own, greater than all before it: what the handles it
/// meets are noted under (see [`Decoded`]).
struct LeaveDecoding {
    /// The serial of the decoding this one is nested in, 0 when none.
    outer: u64,
}

impl LeaveDecoding {
    #[inline]
    fn enter() -> Self {
        STATE.with(|s| {
            s.decoding.set(s.decoding.get() + 1);
            let serial = s.serials.get() + 1;
            s.serials.set(serial);
            LeaveDecoding { outer: s.serial.replace(serial) }
        })
    }
}

impl Drop for LeaveDecoding {
    #[inline]
    fn drop(&mut self) {
        STATE.with(|s| {
            s.decoding.set(s.decoding.get() - 1);
            s.serial.set(self.outer);
            s.settle_if_done();
        });
    }
}

/// Whether a `T`'s message is plain postcard behind the tag byte, with nothing for the
/// thread's codec state to do: a primitive number, `bool`, `char` or `()` (by type id),
/// which holds no handle, never needs self-description and whose `Deserialize` refuses
/// nothing postcard accepts. A hot path that moves many such values (a pool worker's
/// claimed items and their results) reads and writes them with [`decode_plain`] and
/// [`encode_plain`], in place, without the scopes and thread-locals of [`decode`] and
/// [`with_small_encoding`] (a third of a claimed `u64 -> u64` task's cost). Ask once, out
/// of the loop.
pub(crate) fn plain<T: ?Sized>() -> bool {
    use typeid::of;
    let id = of::<T>();
    [
        of::<u8>(),
        of::<u16>(),
        of::<u32>(),
        of::<u64>(),
        of::<u128>(),
        of::<usize>(),
        of::<i8>(),
        of::<i16>(),
        of::<i32>(),
        of::<i64>(),
        of::<i128>(),
        of::<isize>(),
        of::<f32>(),
        of::<f64>(),
        of::<bool>(),
        of::<char>(),
        of::<()>(),
    ]
    .contains(&id)
}

/// The most bytes [`encode_plain`] writes: the tag byte and a `u128`'s varint.
pub(crate) const PLAIN_MAX: usize = 1 + 19;

/// Decodes a message of a [`plain`] type written by any encoder of this module: `None`
/// if it is not plain postcard or does not decode, or, with `exact` (a typed channel's
/// take, straight from the record), when bytes are left over after the value; the caller
/// then decodes it with [`read_body`]'s same `exact`, for the value or the error's message.
#[inline]
pub(crate) fn decode_plain<T: DeserializeOwned>(bytes: &[u8], exact: bool) -> Option<T> {
    if exact
        && let Some((&POSTCARD, body)) = bytes.split_first()
        && let Ok(value) = T::deserialize(ShortVarint(body))
    {
        return Some(value);
    }
    match bytes.split_first() {
        Some((&POSTCARD, body)) => match postcard::take_from_bytes(body) {
            Ok((value, rest)) if !exact || rest.is_empty() => Some(value),
            _ => None,
        },
        _ => None,
    }
}

/// An integer of a [`plain`] type written as a short varint that is the whole of the
/// slice, read as postcard reads it, without postcard's general loop (a typed take of an
/// int spent a third of its decoding there): a `u64`, `usize` or `i64` of at most 9 bytes
/// (63 bits), a `u32` or `i32` of at most 4, a `u16` or `i16` of at most 2, where no
/// byte can overflow the type, so that every varint read here reads as postcard reads it.
/// Anything else (another type, a longer varint, bytes left over) is refused, for
/// postcard to read or to say why not.
struct ShortVarint<'a>(&'a [u8]);

/// [`ShortVarint`]'s refusal: the caller goes to postcard.
#[derive(Debug)]
struct NotShort;

impl fmt::Display for NotShort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a short varint")
    }
}

impl std::error::Error for NotShort {}

impl serde::de::Error for NotShort {
    #[cold]
    fn custom<M: fmt::Display>(_: M) -> Self {
        NotShort
    }
}

impl ShortVarint<'_> {
    /// The varint of at most `max` bytes that is the whole slice.
    #[inline]
    fn read(&self, max: usize) -> Result<u64, NotShort> {
        let Some((&last, init)) = self.0.split_last() else { return Err(NotShort) };
        if last & 0x80 != 0 || init.len() >= max {
            return Err(NotShort);
        }
        let mut value = u64::from(last) << (7 * init.len());
        for (i, &byte) in init.iter().enumerate() {
            if byte & 0x80 == 0 {
                return Err(NotShort);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
        }
        Ok(value)
    }

    /// [`ShortVarint::read`] of a zigzag-encoded signed integer.
    #[inline]
    fn read_signed(&self, max: usize) -> Result<i64, NotShort> {
        let n = self.read(max)?;
        Ok((n >> 1) as i64 ^ -((n & 1) as i64))
    }
}

impl<'de> serde::Deserializer<'de> for ShortVarint<'_> {
    type Error = NotShort;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, NotShort> {
        Err(NotShort)
    }

    #[inline]
    fn deserialize_u16<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotShort> {
        visitor.visit_u16(self.read(2)? as u16)
    }

    #[inline]
    fn deserialize_u32<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotShort> {
        visitor.visit_u32(self.read(4)? as u32)
    }

    #[inline]
    fn deserialize_u64<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotShort> {
        visitor.visit_u64(self.read(9)?)
    }

    #[inline]
    fn deserialize_i16<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotShort> {
        visitor.visit_i16(self.read_signed(2)? as i16)
    }

    #[inline]
    fn deserialize_i32<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotShort> {
        visitor.visit_i32(self.read_signed(4)? as i32)
    }

    #[inline]
    fn deserialize_i64<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotShort> {
        visitor.visit_i64(self.read_signed(9)?)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i128 u8 u128 f32 f64 char str string bytes byte_buf option unit unit_struct
        newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// Encodes a value of a [`plain`] type into `out` (room for [`PLAIN_MAX`] bytes is
/// enough) as [`encode`] would: the message's length, or `None` if it does not fit. Also
/// a small message of the crate's own that holds no handle, as [`encode_own`] would (a
/// child's outcome of a plain result, `boot::PlainReturn`), all of it inlined.
#[inline]
pub(crate) fn encode_plain<T: Serialize>(value: &T, out: &mut [u8]) -> Option<usize> {
    let mut flavor = ByteAtATime { out, len: 0 };
    flavor.try_push(POSTCARD).ok()?;
    let mut serializer = postcard::Serializer { output: flavor };
    value.serialize(&mut serializer).ok()?;
    Some(serializer.output.len)
}

/// A postcard flavor writing a few bytes into a slice one at a time: postcard hands a
/// varint over as a slice of a length known only at run time, which a slice's copy sends
/// to `memcpy` (a call and its dispatch for one to ten bytes; a sixth of a claimed task).
struct ByteAtATime<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Flavor for ByteAtATime<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        let byte = self.out.get_mut(self.len).ok_or(postcard::Error::SerializeBufferFull)?;
        *byte = data;
        self.len += 1;
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        data.iter().try_for_each(|byte| self.try_push(*byte))
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Decodes a `T` from `bytes`; handles in it become this process's.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    read_message(bytes, false)
}

#[inline]
fn read_message<T: DeserializeOwned>(bytes: &[u8], exact: bool) -> Result<T, CodecError> {
    let _leave = LeaveDecoding::enter();
    read_body(bytes, exact)
}

/// Encodes a message of the crate's own, one with no handle and no need of
/// self-description, without touching this thread's state (it may run in a thread-local's
/// destructor). [`decode`] reads it.
pub(crate) fn encode_untracked<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    out.push(POSTCARD);
    let result = postcard::to_io(value, &mut *out).map(drop);
    if result.is_err() {
        out.truncate(start);
    }
    result.map_err(|e| CodecError::encode(e).of::<T>())
}

/// Encodes a value kept by a manager's server (an item of a dict, a list, a custom object),
/// always in the self-describing encoding: the server compares keys by their bytes, which
/// must not depend on the type a key is looked up with (`String` or `str`), and a round
/// trip to the server costs far more than the encoding. A family handle inside refuses to
/// encode: it never travels into a value the server keeps and copies.
pub(crate) fn encode_kept<V: Serialize + ?Sized>(value: &V, out: &mut Vec<u8>) -> Result<(), CodecError> {
    /// Gives back the scope of the message around, hidden.
    struct Restore(Option<usize>);
    impl Drop for Restore {
        fn drop(&mut self) {
            STATE.with(|s| s.scope.set(self.0));
        }
    }
    // Apart from a message being encoded around it (a `Serialize` that calls a proxy's
    // `set`), in which a handle inside would be written as a real wire, its count's undo
    // in that message's scope: in flight for ever once it was sent (review65 L7).
    let _restore = STATE.with(|s| Restore(s.scope.replace(None)));
    let start = out.len();
    out.push(MESSAGEPACK);
    let mut serializer = rmp_serde::Serializer::new(&mut *out).with_struct_map();
    let result = check::serialize_described(value, &mut serializer).map_err(|e| CodecError::encode(e).of::<V>());
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Encodes `value` self-described (MessagePack with field names, no tag) as part of the
/// message being encoded around it: a handle inside registers in that message's scope, as
/// the message's own handles do. For a value that travels inside an object's own encoding
/// (a barrier's action arguments), where postcard would refuse or mis-encode what the
/// value's type needs (`deserialize_any`, a skipped field; aud104 M3). [`decode_nested`]
/// reads it.
pub(crate) fn encode_nested<V: Serialize + ?Sized>(value: &V) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    let mut serializer = rmp_serde::Serializer::new(&mut out).with_struct_map();
    check::serialize_described(value, &mut serializer).map_err(|e| CodecError::encode(e).of::<V>())?;
    Ok(out)
}

/// Decodes what [`encode_nested`] wrote, using every byte, as part of the message being
/// decoded around it (a handle inside is read by that decoding), behind the depth limit.
pub(crate) fn decode_nested<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    read_self_described(bytes, true)
}

/// Decodes a value written by [`encode_kept`], using every byte; a family handle inside
/// refuses to decode.
pub(crate) fn decode_kept<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    // Apart from a message being decoded around it (a `Deserialize` that calls a proxy's
    // `get`), in which a wire found in an item, written there by any process of the family,
    // would be received (review65 L7).
    outside_decodings(|| read_body(bytes, true))
}

/// Encodes `value` in plain postcard, with no tag (a
/// [`SocketConnection`](crate::SocketConnection)'s message, which [`decode_untagged`]
/// reads), behind the checking serializer: a value postcard cannot carry is refused rather
/// than written, since the receiver has no other encoding to read it in (aud104 M2). Its
/// type's `Deserialize` asks for `deserialize_any`, an identifier, or reads a struct only as
/// a map (the probe saw it: every receiver would fail), or its `Serialize` skips a field,
/// writes a map of unknown length, or another count of fields or number of a variant than
/// the `Deserialize` reads (the receiver may read another value). A type the probe gave up on ([`Plan::GaveUp`]) is written in
/// postcard behind the checking serializer, as any other (the probe's budget is no reason
/// to refuse it, review140 M1), then decoded once here: the checking serializer sees only
/// the `Serialize` side, and a value whose `Deserialize` asks for `deserialize_any` where
/// the probe could not see would be sent and lost at the peer (review149 M1), so one that
/// does not decode is refused. A value of any plan but [`Plan::Postcard`] has its depth
/// counted as it is written (fix114): one past the receivers' limit is refused here. No
/// handle scope is open, so a family handle refuses too (and the trial decoding never
/// meets one).
#[cfg(feature = "remote")]
pub(crate) fn encode_untagged<T: Serialize + DeserializeOwned>(value: &T) -> Result<Vec<u8>, CodecError> {
    const ASKS_FOR_ANY: &str = "its type's Deserialize asks for deserialize_any (a self-describing encoding) or \
         for what postcard cannot answer (an identifier, a struct read only as a map), and a socket connection's \
         messages are plain postcard";
    const ASKS_FOR_ANY_HERE: &str = "its Deserialize asks for deserialize_any (a self-describing encoding)";
    const SKIPS: &str = "its Serialize writes what plain postcard (a socket connection's messages) cannot carry \
         or its peer would misread: a field skipped, a map of unknown length, or another count of fields or \
         another number of a variant than its type's Deserialize reads";
    const READ_AS_ANOTHER: &str = "the probe could not see all of its type, and this value, decoded back from \
         plain postcard (a socket connection's messages), does not encode to the same bytes, so its peer could \
         read it as another value (a variant numbered otherwise by its Deserialize, a count of fields its \
         Deserialize does not read, or a map or set whose order is not kept)";
    let (plan, shapes) = STATE.with(plan_and_shapes_in::<T>);
    if plan == Plan::Any {
        return Err(CodecError::encode(ASKS_FOR_ANY).of::<T>());
    }
    // Counted unless its values cannot nest past the receivers' limit (fix114): a `GaveUp`
    // type is counted too, whose depth the probe could not see.
    let write = |value: &T| {
        let mut bytes = Vec::new();
        let mut out = Out::Vec { out: &mut bytes, limit: usize::MAX, over: false };
        let mut serializer = postcard::Serializer { output: Flavored(&mut out) };
        let written = STATE.with(|state| {
            judged_by(state, shapes, || match plan {
                Plan::Postcard => check::serialize(value, &mut serializer),
                _ => check::serialize_counted(value, &mut serializer),
            })
        });
        written.map(|()| bytes)
    };
    match write(value) {
        // A `Deserialize` that panics on the value is a refusal too, not a panic out of
        // `send` (review157 M3). The check takes an enum the probe never met as written,
        // and the trial decoding may read it as another variant and pass (review169 H2:
        // `(NonZeroU32, Shift::C)`, `C` written as 2, read as `D`): the value read back
        // must encode to the same bytes.
        Ok(bytes) if plan == Plan::GaveUp => {
            match outside_decodings(|| crate::process::panics::decoding(|| decode_untagged::<T>(&bytes))) {
                Ok(back) => match write(&back) {
                    Ok(again) if again == bytes => Ok(bytes),
                    _ => Err(CodecError::encode(READ_AS_ANOTHER).of::<T>()),
                },
                Err(e) => {
                    let why = if e.0.detail == SENT_AS_POSTCARD { ASKS_FOR_ANY_HERE } else { &e.0.detail };
                    let panicked = if e.0.what.ends_with("panicked") { "its Deserialize panicked: " } else { "" };
                    Err(CodecError::encode(format_args!(
                        "the probe could not see all of its type, and this value does not decode back from plain \
                     postcard (a socket connection's messages), so its peer could not read it: {panicked}{why}"
                    ))
                    .of::<T>())
                }
            }
        }
        Ok(bytes) => Ok(bytes),
        Err(check::Failure::SelfDescribe) => Err(CodecError::encode(SKIPS).of::<T>()),
        Err(e) => Err(CodecError::encode(e).of::<T>()),
    }
}

/// Decodes the whole of `bytes` as a `T` in plain postcard, with no tag (a
/// [`SocketConnection`](crate::SocketConnection)'s message), through the same wrapper as a
/// message's postcard body: its depth limit, its errors' messages and its UTF-8 check.
#[cfg(feature = "remote")]
pub(crate) fn decode_untagged<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let mut deserializer = postcard::Deserializer::from_bytes(bytes);
    let value = keep::deserialize::<T, _>(&mut deserializer).map_err(postcard_failure::<T>)?;
    let rest = deserializer.finalize().map_err(|e| CodecError::decode(e).of::<T>())?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(CodecError::decode(format_args!("{} bytes left over after the value", rest.len())).of::<T>())
    }
}

/// The detail of a postcard decoding that met `deserialize_any`.
const SENT_AS_POSTCARD: &str = "the type asks for deserialize_any (a self-describing encoding) and the message was \
                                sent in postcard: was it sent as another type?";

/// The [`CodecError`] of a postcard decoding of a `T` that failed with `e`.
fn postcard_failure<T: ?Sized>(e: keep::Kept) -> CodecError {
    if e.0 == postcard::Error::WontImplement.to_string() {
        CodecError::decode(SENT_AS_POSTCARD).of::<T>()
    } else {
        CodecError::decode(e).of::<T>()
    }
}

fn read_body<T: DeserializeOwned>(bytes: &[u8], exact: bool) -> Result<T, CodecError> {
    let left_over = |n: usize| CodecError::decode(format_args!("{n} bytes left over after the value")).of::<T>();
    match bytes.split_first() {
        Some((&POSTCARD, body)) => {
            let mut deserializer = postcard::Deserializer::from_bytes(body);
            let value = keep::deserialize::<T, _>(&mut deserializer).map_err(postcard_failure::<T>)?;
            let rest = deserializer.finalize().map_err(|e| CodecError::decode(e).of::<T>())?;
            if exact && !rest.is_empty() { Err(left_over(rest.len())) } else { Ok(value) }
        }
        Some((&MESSAGEPACK, body)) => read_self_described(body, exact),
        Some((tag, _)) => Err(CodecError::decode(format_args!("unknown message encoding {tag:#x}")).of::<T>()),
        // No tag: what postcard reads from nothing (`()`, a unit struct), as a custom
        // object's method called with no argument bytes.
        None => postcard::from_bytes(&[]).map_err(|e| CodecError::decode(e).of::<T>()),
    }
}

/// A message encoded as a `Vec<A>`, as [`decode_each`] reads it.
pub(crate) enum Each<'a, A> {
    /// Decoded whole: a small message (one decoding's bookkeeping for all its elements, a
    /// chunk of many small items), or a self-described one (the rare path).
    Whole(Vec<A>),
    /// Decoded one element at a time, as they are taken.
    Elements(Elements<'a, A>),
}

/// The elements of a large postcard message encoded as a `Vec<A>`, decoded one at a time
/// as they are taken (see [`decode_each`]): they follow each other, each read where the
/// last one ended.
pub(crate) struct Elements<'a, A> {
    left: usize,
    deserializer: postcard::Deserializer<'a, postcard::de_flavors::Slice<'a>>,
    element: std::marker::PhantomData<A>,
}

/// Messages up to this size are decoded whole by [`decode_each`].
const EACH_ABOVE: usize = 64 * 1024;

/// Decodes a message encoded as a `Vec<A>`; a large one element by element, so that a
/// consumer that drops each element before taking the next (a pool worker running a chunk)
/// keeps one element in memory at a time, in the same pages, instead of the whole vector.
/// Handles in an element become this process's when it is taken.
pub(crate) fn decode_each<A: DeserializeOwned>(bytes: &[u8]) -> Result<Each<'_, A>, CodecError> {
    match bytes.split_first() {
        Some((&POSTCARD, body)) if bytes.len() > EACH_ABOVE => {
            let mut deserializer = postcard::Deserializer::from_bytes(body);
            // A sequence's length is a varint, as a `usize` is.
            let left = keep::deserialize::<usize, _>(&mut deserializer).map_err(postcard_failure::<Vec<A>>)?;
            Ok(Each::Elements(Elements { left, deserializer, element: std::marker::PhantomData }))
        }
        _ => decode::<Vec<A>>(bytes).map(Each::Whole),
    }
}

impl<A: DeserializeOwned> Iterator for Elements<'_, A> {
    type Item = Result<A, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let _leave = LeaveDecoding::enter();
        // A `Deserialize` that panics (user code) is this element's decoding error, and the
        // last: let through to a consumer that catches it (a pool worker's guard around its
        // task), the next element was read from the middle of this one, and the panic was
        // taken for the previous item's (aud91).
        let deserializer = &mut self.deserializer;
        let element =
            crate::process::panics::decoding(|| keep::deserialize::<A, _>(deserializer).map_err(postcard_failure::<A>));
        if element.is_err() {
            // Where the next element starts is unknown now.
            self.left = 0;
        }
        Some(element)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<A: DeserializeOwned> ExactSizeIterator for Elements<'_, A> {}

/// Reads a self-described body: out of line, as [`write_self_described`].
#[cold]
#[inline(never)]
fn read_self_described<T: DeserializeOwned>(body: &[u8], exact: bool) -> Result<T, CodecError> {
    // Read in place (`from_read_ref`): `Deserializer::new` over a reader allocates a buffer
    // of its own at every decoding (a manager get's second allocation).
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(body);
    // Behind the depth limit too: MessagePack's own (1024 levels) counts arrays and maps,
    // not the maps of enum variants, which nest as deep as the message is long.
    let value = keep::deserialize_described::<T, _>(&mut deserializer).map_err(|e| CodecError::decode(e).of::<T>())?;
    // The in-place reader does not say where it stopped: for the exact check, the value's
    // length is read from its markers (the value decoded, so they are whole).
    if !exact {
        return Ok(value);
    }
    match messagepack_len(body) {
        Some(len) if len < body.len() => {
            Err(CodecError::decode(format_args!("{} bytes left over after the value", body.len() - len)).of::<T>())
        }
        Some(_) => Ok(value),
        None => Err(CodecError::decode("a MessagePack value cut short").of::<T>()),
    }
}

/// The length of the MessagePack value `bytes` starts with, from its markers alone (no
/// recursion: a count of the values still to skip); `None` if it is cut short or holds
/// the unused marker `0xc1`.
fn messagepack_len(bytes: &[u8]) -> Option<usize> {
    fn be(bytes: &[u8], at: usize, n: usize) -> Option<u64> {
        Some(bytes.get(at..at.checked_add(n)?)?.iter().fold(0, |v, &b| v << 8 | u64::from(b)))
    }
    let mut at = 0usize;
    // Values still to skip; each takes at least one byte, so never more than are left.
    let mut left: u64 = 1;
    while left > 0 {
        left -= 1;
        let marker = *bytes.get(at)?;
        at += 1;
        // (bytes of payload, values inside)
        let (payload, inner): (u64, u64) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
            0xc4 | 0xd9 => (1 + be(bytes, at, 1)?, 0),
            0xc5 | 0xda => (2 + be(bytes, at, 2)?, 0),
            0xc6 | 0xdb => (4 + be(bytes, at, 4)?, 0),
            // ext 8/16/32: the length, a type byte, the data.
            0xc7 => (2 + be(bytes, at, 1)?, 0),
            0xc8 => (3 + be(bytes, at, 2)?, 0),
            0xc9 => (5 + be(bytes, at, 4)?, 0),
            0xca => (4, 0),
            0xcb => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 => (4, 0),
            0xcf | 0xd3 => (8, 0),
            // fixext 1/2/4/8/16: a type byte, the data.
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (2, be(bytes, at, 2)?),
            0xdd => (4, be(bytes, at, 4)?),
            0xde => (2, 2 * be(bytes, at, 2)?),
            0xdf => (4, 2 * be(bytes, at, 4)?),
            0xc1 => return None,
        };
        at = at.checked_add(usize::try_from(payload).ok()?)?;
        left = left.checked_add(inner)?;
        if at > bytes.len() || left > (bytes.len() - at) as u64 {
            return None;
        }
    }
    Some(at)
}

/// Encodes one of the crate's own messages (a boot message, a child's outcome, a fork
/// server's request and reply): plain postcard behind the tag byte, without the probe and
/// the checking serializer, whose work and code a fresh child would otherwise pay for at
/// every start. Only for types made of the crate's own structs, plain data and handles,
/// none of which needs self-description. Handles inside travel as with [`encode`].
pub(crate) fn encode_own<T: Serialize + ?Sized>(value: &T) -> Result<Encoded, CodecError> {
    STATE.with(|state| {
        encode_scoped(state, vec![POSTCARD], |bytes| {
            postcard::to_io(value, bytes).map(drop).map_err(|e| CodecError::encode(e).of::<T>())
        })
    })
}

/// [`encode_own`] of a message that holds no handles, into `buf`, without the allocator
/// (the fork server's answers: each write of its heap after a fork copies a page the
/// child shares): the message's bytes, or `None` if they do not fit.
pub(crate) fn encode_own_into<'b, T: Serialize + ?Sized>(value: &T, buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let (tag, body) = buf.split_first_mut()?;
    *tag = POSTCARD;
    let len = postcard::to_slice(value, body).ok()?.len();
    Some(&buf[..1 + len])
}

/// [`encode_own`] after the bytes `front` holds already (a frame's length, filled in
/// afterwards): the message's bytes are `front`'s followed by the encoding.
pub(crate) fn encode_own_after<T: Serialize + ?Sized>(value: &T, mut front: Vec<u8>) -> Result<Encoded, CodecError> {
    front.push(POSTCARD);
    STATE.with(|state| {
        encode_scoped(state, front, |bytes| {
            postcard::to_io(value, bytes).map(drop).map_err(|e| CodecError::encode(e).of::<T>())
        })
    })
}

/// [`with_small_encoding`] for the crate's own messages ([`encode_own`]): a pool's tasks and
/// results, a manager's replies.
pub(crate) fn with_own_encoded<T: Serialize + ?Sized, R>(
    value: &T,
    f: impl FnOnce(&[u8], bool) -> (bool, R),
) -> Result<R, CodecError> {
    SCRATCH.with(|scratch| {
        STATE.with(|state| {
            let mut own = Vec::new();
            let mut guard = scratch.try_borrow_mut().ok();
            let buf: &mut Vec<u8> = match guard.as_deref_mut() {
                Some(b) => b,
                None => &mut own,
            };
            buf.clear();
            buf.push(POSTCARD);
            let scope = HandleScope::enter(state);
            let result = postcard::to_io(value, &mut *buf).map(drop).map_err(|e| CodecError::encode(e).of::<T>());
            let undo = scope.finish();
            let outcome = match result {
                Ok(()) => {
                    let (delivered, r) = f(buf, !undo.is_empty());
                    if !delivered {
                        undo.into_iter().for_each(Undo::run);
                    }
                    Ok(r)
                }
                Err(e) => {
                    undo.into_iter().for_each(Undo::run);
                    Err(e)
                }
            };
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
            outcome
        })
    })
}

/// Decodes a message written by [`encode_own`] (plain postcard: the messages of the crate's
/// own `Deserialize` impls keep their message through [`refuse_decoding`]).
pub(crate) fn decode_own<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_own_seeded(bytes, std::marker::PhantomData::<T>)
}

/// [`decode_own`] through `seed`: a `Deserialize` that decodes into what it holds (a fork
/// server's child decodes its boot message's strings into room its server made).
pub(crate) fn decode_own_seeded<'de, S: DeserializeSeed<'de>>(
    bytes: &'de [u8],
    seed: S,
) -> Result<S::Value, CodecError> {
    let _leave = LeaveDecoding::enter();
    let body = match bytes.split_first() {
        Some((&POSTCARD, body)) => body,
        Some((tag, _)) => {
            return Err(CodecError::decode(format_args!("unknown message encoding {tag:#x}")).of::<S::Value>());
        }
        None => &[],
    };
    seed.deserialize(&mut postcard::Deserializer::from_bytes(body)).map_err(|e| CodecError::decode(e).of::<S::Value>())
}

/// The exact encoded size of `value` (without touching handles' counts).
pub(crate) fn encoded_len<T: Serialize + DeserializeOwned>(value: &T) -> Result<usize, CodecError> {
    encoded_len_as::<T, T>(value)
}

/// [`encoded_len`] of a message to be decoded as a `T`.
pub(crate) fn encoded_len_as<T: DeserializeOwned, V: Serialize + ?Sized>(value: &V) -> Result<usize, CodecError> {
    STATE.with(|state| {
        let scope = HandleScope::enter(state);
        let mut count = Out::Count(0);
        let result = write_message::<T, V>(state, value, &mut count);
        for u in scope.finish() {
            u.run();
        }
        result.map(|()| count.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// The handles [`note_let_go`] let go of, by offset.
        static LET_GO: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    }

    fn note_let_go(off: u64, _: usize) {
        LET_GO.with(|l| l.borrow_mut().push(off));
    }

    fn panic_in_let_go(_: u64, _: usize) {
        panic!("a let-go panicked");
    }

    /// The read of the first copy of the handle marked `mark` in its message.
    const fn first_copy(mark: HandleMark) -> HandleRead {
        HandleRead { mark, copy: 1 }
    }

    /// Receives the handle `read` in the decoding in progress and drops it there, kept
    /// with `let_go`.
    fn keep(read: HandleRead, let_go: fn(u64, usize)) {
        received_handle(read);
        assert!(keep_dropped(read.mark, Kept { off: read.mark[0], side: 0, let_go }));
    }

    /// Whether no decoding of this thread has an entry left, nor a chain.
    fn nothing_decoded() -> bool {
        DECODED.with(|d| {
            let d = d.borrow();
            d.met.is_empty() && d.newest.is_empty()
        })
    }

    /// The handles [`note_let_go`] let go of so far, taken out.
    fn let_go() -> Vec<u64> {
        LET_GO.with(|l| std::mem::take(&mut *l.borrow_mut()))
    }

    /// An undo that notes the first word of its key as let go of.
    fn note_undo(key: ReceiptKey) -> bool {
        note_let_go(key[0], 0);
        true
    }

    /// review62 L7: a boot message kept by its child's state until the reap keeps its undo
    /// entries only, not its bytes; its drop still undoes every handle.
    #[test]
    fn a_message_kept_for_its_undo_only_lets_its_bytes_go() {
        let undo = [5, 6].map(|off| Undo { key: [off, 1, 2], gone: note_undo }).into();
        let kept = Encoded { bytes: vec![7; 4096], undo }.undo_only();
        assert_eq!(kept.bytes.capacity(), 0);
        assert_eq!(kept.handles(), 2);
        drop(kept);
        assert_eq!(let_go(), [5, 6]);
    }

    /// hand44: copies of one handle in one message are told apart by their copy, and a
    /// read of a copy met before is another attempt at it. Told apart by their mark only,
    /// the second copy took the first one's kept handle back, voided its discard, and was
    /// taken for a discard already made; and a held copy's bytes read again as another type
    /// were taken for another copy and discarded.
    #[test]
    fn copies_of_a_handle_are_told_apart_and_a_copy_read_again_is_another_attempt() {
        let mark = [8, 1, 2];
        let copy = |copy| HandleRead { mark, copy };
        {
            let _leave = LeaveDecoding::enter();
            keep(copy(1), note_let_go);
            assert!(!take_back(copy(2)), "another copy took the kept one back");
            received_handle(copy(2));
            assert!(take_back(copy(1)), "an attempt at the kept copy's bytes");
            // A drop knows no copy: the newest held one is kept (the second), and an attempt
            // at the first copy's bytes, held, takes it back: the handles are alike.
            assert!(keep_dropped(mark, Kept { off: mark[0], side: 0, let_go: note_let_go }));
            assert!(take_back(copy(1)), "an attempt at a held copy's bytes, another copy kept");
            assert!(!take_back(copy(1)), "nothing kept is left");
            assert!(held_again(copy(1)) && !held_again(copy(9)), "a held copy's bytes read again alike");
            assert!(discarding(copy(1)).is_none(), "a held copy's bytes read again as another type");
            let third = discarding(copy(3)).expect("another copy read as another type is discarded");
            assert!(discarding(copy(3)).is_none(), "a copy discarded twice");
            let fourth = discarding(copy(4)).expect("another copy read as another type is discarded");
            received_handle(copy(3));
            assert!(third.get() && !fourth.get(), "a receive voids its own copy's discard only");
            unrecorded_handle(copy(5));
            assert!(refused_for_full_heap(copy(5)) && !refused_for_full_heap(copy(6)));
        }
        assert!(let_go().is_empty(), "a handle taken back was let go of");
        assert!(nothing_decoded() && !settles_pending());
    }

    /// review65 L1 (hand44's notes' "left alone" case, sound): two copies received, a
    /// handle of their mark dropped (kept as either copy: a drop knows no copy), a held
    /// copy's bytes read again take the kept one back, and a retry of the other copy is then
    /// a clone of it, not a receive. A copy met before only moves between received and
    /// kept, and every read of it is answered by `take_back` or `held_again`: three
    /// handles, two receives and a clone, one count each.
    #[test]
    fn a_copy_met_before_is_taken_back_or_cloned_never_received_again() {
        let mark = [8, 1, 2];
        let copy = |copy| HandleRead { mark, copy };
        {
            let _leave = LeaveDecoding::enter();
            received_handle(copy(1));
            received_handle(copy(2));
            assert!(keep_dropped(mark, Kept { off: mark[0], side: 0, let_go: note_let_go }));
            assert!(take_back(copy(1)), "a held copy's bytes read again take the kept handle back");
            assert!(!take_back(copy(2)), "nothing kept is left");
            assert!(held_again(copy(2)), "the other copy, held: a clone");
            received_handle(copy(2));
            assert!(!take_back(copy(1)) && held_again(copy(1)), "and the first, held, a clone too");
        }
        assert!(let_go().is_empty(), "a held handle was let go of");
        assert!(nothing_decoded() && !settles_pending());
    }

    /// review52 L3: the entries of a decoding are found through their object's chain once
    /// there are many (scanned below), a nested decoding's entries of the same object
    /// unchained at its end. Many copies of a
    /// few objects, each received, then dropped, then each taken back by its next attempt;
    /// a decoding nested in it that keeps a handle of one of them sees none of the outer's.
    #[test]
    fn an_objects_entries_are_chained_across_copies_and_decodings() {
        let read = |i: u64| HandleRead { mark: [64 * (1 + i % 7), 1, 2], copy: i };
        let n = 1000;
        {
            let _leave = LeaveDecoding::enter();
            for i in 0..n {
                received_handle(read(i));
            }
            for i in 0..n {
                let mark = read(i).mark;
                assert!(keep_dropped(mark, Kept { off: mark[0], side: 0, let_go: note_let_go }), "copy {i}");
            }
            assert!(DECODED.with(|d| d.borrow().chained), "looked at more than CHAIN_ABOVE entries");
            {
                let _nested = LeaveDecoding::enter();
                assert!(!take_back(read(0)), "a nested decoding took the outer's kept handle back");
                keep(HandleRead { mark: read(0).mark, copy: 1 }, note_let_go);
                assert_eq!(kept_of(64, 1), 1 + n.div_ceil(7) as u32, "the outer's and the nested one's");
            }
            assert_eq!(let_go(), [64], "the nested decoding's kept handle, at its end");
            for i in 0..n {
                assert!(take_back(read(i)), "copy {i} not taken back");
            }
            assert!(!take_back(read(n)), "a copy never met");
            assert!((0..7).all(|i| kept_of(64 * (1 + i), 1) == 0 && held_in_decoding(64 * (1 + i), 1)));
        }
        assert!(let_go().is_empty(), "a handle taken back was let go of");
        assert!(nothing_decoded() && !settles_pending());
    }

    /// review65 L6: `noting_reads` notes the reads of the decoding it runs, not those of a
    /// decoding nested in it (a `Deserialize` that takes another message): noted, a nested
    /// read of the same mark and copy as one of the outer message's unread wires hid that
    /// wire from the unread scan, whose count then stayed in flight. A nested
    /// `noting_reads` notes its own decoding's in its own list.
    #[test]
    fn noting_reads_notes_its_own_decodings_reads_only() {
        let (outer, nested, noted_apart) = (first_copy([8, 1, 2]), first_copy([16, 1, 2]), first_copy([24, 1, 2]));
        let (mut read, mut apart) = (Vec::new(), Vec::new());
        noting_reads(&mut read, || {
            let _leave = LeaveDecoding::enter();
            handle_read(outer);
            {
                let _nested = LeaveDecoding::enter();
                handle_read(nested);
            }
            noting_reads(&mut apart, || {
                let _nested = LeaveDecoding::enter();
                handle_read(noted_apart);
            });
        });
        assert_eq!((read, apart), (vec![outer], vec![noted_apart]));
        assert!(nothing_decoded() && !settles_pending());
    }

    /// review65 L4: the entries of a decoding of many handles, chained, give their room back
    /// when the last open decoding ends: a thread that once decoded a message of 10⁵
    /// handles kept a vector and a map of their size for its life.
    #[test]
    fn a_decoding_of_many_handles_gives_its_entries_room_back_at_its_end() {
        let read = |i: u64| HandleRead { mark: [64 * (1 + i), 1, 2], copy: i + 1 };
        let n = 100_000;
        {
            let _leave = LeaveDecoding::enter();
            for i in 0..n {
                received_handle(read(i));
            }
            assert!(held_again(read(0)), "a look at the first copy");
            assert!(DECODED.with(|d| d.borrow().chained), "looked at more than CHAIN_ABOVE entries");
        }
        assert!(nothing_decoded() && !settles_pending());
        let (met, newest) = DECODED.with(|d| {
            let d = d.borrow();
            (d.met.capacity(), d.newest.capacity())
        });
        // A map rounds its room up to a power of two's worth.
        assert!(
            met <= ROOM_KEPT && newest < 2 * ROOM_KEPT,
            "room kept for {met} entries and {newest} chains after the decoding ended"
        );
    }

    /// review52 L2 (a): a let-go that panicked left the rest of its decoding's entries;
    /// the next decoding at the same depth (another message) took one back as its own. The
    /// rest are let go of all the same now, and the panic goes on.
    #[test]
    fn a_decoding_never_takes_back_what_another_kept() {
        let (first, second) = (first_copy([8, 1, 2]), first_copy([16, 1, 2]));
        let ended = std::panic::catch_unwind(|| {
            let _leave = LeaveDecoding::enter();
            keep(second, note_let_go);
            // Let go of first (innermost last): it panics before `second` is reached.
            keep(first, panic_in_let_go);
        });
        assert!(ended.is_err(), "the let-go's panic went on");
        assert_eq!(LET_GO.with(|l| std::mem::take(&mut *l.borrow_mut())), [16], "the rest let go of");
        {
            let _leave = LeaveDecoding::enter();
            assert!(!take_back(second), "another decoding's kept handle taken back");
        }
        assert!(LET_GO.with(|l| l.borrow().is_empty()), "let go of twice");
        assert!(nothing_decoded());
    }

    thread_local! {
        /// The handle [`decode_in_let_go`]'s nested decoding tries to take back, and
        /// whether it did.
        static NESTED: Cell<(HandleRead, Option<bool>)> = const { Cell::new((first_copy([0; 3]), None)) };
    }

    /// A let-go that decodes (a `destroy` that drains messages): it tries to take back the
    /// handle [`NESTED`] names.
    fn decode_in_let_go(_: u64, _: usize) {
        let _leave = LeaveDecoding::enter();
        let (read, _) = NESTED.get();
        NESTED.set((read, Some(take_back(read))));
    }

    /// review52 L2 (b): a decoding nested inside an ended decoding's let-go opened at that
    /// decoding's depth, and saw its entries not yet let go of as its own.
    #[test]
    fn a_decoding_in_a_let_go_sees_nothing_of_the_ended_one() {
        let (first, second) = (first_copy([8, 1, 2]), first_copy([16, 1, 2]));
        NESTED.set((second, None));
        {
            let _leave = LeaveDecoding::enter();
            keep(second, note_let_go);
            keep(first, decode_in_let_go);
        }
        assert_eq!(NESTED.get().1, Some(false), "the nested decoding took back the ended one's handle");
        assert_eq!(LET_GO.with(|l| std::mem::take(&mut *l.borrow_mut())), [16]);
        assert!(nothing_decoded());
    }

    /// review55 L1: a decoding nested in `probe_plan` (which hides the depth: a probed
    /// `Deserialize` that decodes) ended as if outermost: it ran the outer decoding's
    /// settles early and cleared the flag its entries are read behind, and the outer's next
    /// attempt found no kept handle (it received again: "received already").
    #[test]
    fn a_decoding_nested_in_the_probe_leaves_the_outer_ones_handles_to_it() {
        thread_local! {
            static SETTLED: Cell<bool> = const { Cell::new(false) };
        }
        let read = first_copy([8, 1, 2]);
        {
            let _outer = LeaveDecoding::enter();
            keep(read, note_let_go);
            on_taken(|| SETTLED.set(true));
            outside_decodings(|| {
                let _nested = LeaveDecoding::enter();
                on_taken(|| {});
            });
            assert!(!SETTLED.get(), "the outer decoding's settles ran before its end");
            assert!(take_back(read), "the outer decoding's kept handle is no longer its own");
        }
        assert!(SETTLED.get(), "the outer decoding's settles ran at its end");
        assert!(LET_GO.with(|l| l.borrow().is_empty()), "a handle taken back was let go of");
        assert!(nothing_decoded() && !settles_pending());
    }

    /// review58 L1: `receipts` told the argument's own decoding by the depth, which the
    /// probe hides: a decoding nested in the probe (a probed `Deserialize` that decodes,
    /// inside the argument's decoding) took its handles from the argument's carrier.
    #[test]
    fn a_decoding_nested_in_the_probe_is_not_the_arguments() {
        receipting(64, || {
            let _argument = LeaveDecoding::enter();
            assert_eq!(receipts(), Some(64));
            outside_decodings(|| {
                let _nested = LeaveDecoding::enter();
                assert_eq!(receipts(), None, "a decoding in the probe took the argument's carrier");
            });
            assert_eq!(receipts(), Some(64), "the argument's carrier is lost after the probe");
        });
        assert_eq!(receipts(), None);
    }

    thread_local! {
        /// Set by the settle [`a_let_go_that_panics_leaves_the_settles_to_run`] registers.
        static SETTLED_AFTER_PANIC: Cell<bool> = const { Cell::new(false) };
    }

    /// review55 L2 (a): a let-go's panic went on before the message's settles ran: outside
    /// a take, they waited for this thread's next decoding (for ever if none came), the
    /// pending receives reserved meanwhile.
    #[test]
    fn a_let_go_that_panics_leaves_the_settles_to_run() {
        let ended = std::panic::catch_unwind(|| {
            let _leave = LeaveDecoding::enter();
            keep(first_copy([8, 1, 2]), panic_in_let_go);
            on_taken(|| SETTLED_AFTER_PANIC.set(true));
        });
        assert!(ended.is_err(), "the let-go's panic went on");
        assert!(SETTLED_AFTER_PANIC.get(), "the settles did not run");
        assert!(!settles_pending());
        assert!(nothing_decoded());
    }

    /// review55 L2 (b): a decoding ended by a panic (a `Deserialize`'s) whose let-go
    /// panicked too resumed that second panic inside a drop during the unwind: the process
    /// aborted. The first panic goes on, and the settles run.
    #[test]
    fn a_let_go_that_panics_during_an_unwind_does_not_abort() {
        thread_local! {
            static SETTLED: Cell<bool> = const { Cell::new(false) };
        }
        let ended = std::panic::catch_unwind(|| {
            let _leave = LeaveDecoding::enter();
            keep(first_copy([8, 1, 2]), panic_in_let_go);
            on_taken(|| SETTLED.set(true));
            panic!("a Deserialize panicked");
        });
        let panic = ended.expect_err("the Deserialize's panic went on");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"a Deserialize panicked"));
        assert!(SETTLED.get(), "the settles did not run");
        assert!(!settles_pending());
    }

    /// review58 L2: a settle ran bare: one that panicked during an unwind (a
    /// `Deserialize`'s panic) aborted the process, and outside one it lost the settles
    /// after it (their pending receives reserved until the process ends). Each runs, and
    /// the first panic goes on unless the decoding ends in an unwind already.
    #[test]
    fn a_settle_that_panics_leaves_the_others_to_run() {
        thread_local! {
            static SETTLED: Cell<u32> = const { Cell::new(0) };
        }
        for unwinding in [false, true] {
            SETTLED.set(0);
            let ended = std::panic::catch_unwind(|| {
                let _leave = LeaveDecoding::enter();
                on_taken(|| SETTLED.set(SETTLED.get() + 1));
                on_taken(|| panic!("a settle panicked"));
                on_taken(|| SETTLED.set(SETTLED.get() + 1));
                if unwinding {
                    panic!("a Deserialize panicked");
                }
            });
            let panic = ended.expect_err("a panic went on");
            let expected = if unwinding { "a Deserialize panicked" } else { "a settle panicked" };
            assert_eq!(panic.downcast_ref::<&str>(), Some(&expected));
            assert_eq!(SETTLED.get(), 2, "the settles beside the panicking one did not all run");
            assert!(!settles_pending());
        }
    }

    #[test]
    fn a_messagepack_values_length_is_read_from_its_markers() {
        #[derive(Serialize)]
        struct S {
            a: Vec<Option<i64>>,
            b: String,
            c: std::collections::BTreeMap<u8, (f32, f64, bool)>,
            d: serde_bytes::ByteBuf,
            e: (u16, u32, u64, i8, i16, i32, i64, ()),
        }
        let values = [
            S {
                a: vec![None, Some(-1), Some(i64::MIN), Some(200)],
                b: "x".repeat(40),
                c: (0..20).map(|i| (i, (1.5, -2.5, i % 2 == 0))).collect(),
                d: serde_bytes::ByteBuf::from(vec![7; 300]),
                e: (u16::MAX, u32::MAX, u64::MAX, -5, -300, -70000, -(1 << 40), ()),
            },
            S {
                a: vec![Some(1); 20],
                b: "y".repeat(70000),
                c: Default::default(),
                d: serde_bytes::ByteBuf::from(vec![0; 70000]),
                e: (0, 0, 0, 0, 0, 0, 0, ()),
            },
        ];
        for v in &values {
            for struct_map in [false, true] {
                let mut bytes = Vec::new();
                if struct_map {
                    v.serialize(&mut rmp_serde::Serializer::new(&mut bytes).with_struct_map()).unwrap();
                } else {
                    v.serialize(&mut rmp_serde::Serializer::new(&mut bytes)).unwrap();
                }
                let len = bytes.len();
                assert_eq!(messagepack_len(&bytes), Some(len));
                bytes.extend_from_slice(&[0xc0, 1, 2]);
                assert_eq!(messagepack_len(&bytes), Some(len), "bytes after the value are not its");
                for cut in [0, 1, len / 2, len - 1] {
                    assert_eq!(messagepack_len(&bytes[..cut]), None, "cut at {cut} of {len}");
                }
            }
        }
        // An array that says it holds more values than bytes are left.
        assert_eq!(messagepack_len(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0]), None);
        assert_eq!(messagepack_len(&[0xc1]), None);
    }

    #[test]
    fn a_kept_value_with_bytes_left_over_is_refused_and_a_shorter_read_is_not() {
        let mut bytes = Vec::new();
        encode_kept(&(1u8, "two".to_string()), &mut bytes).unwrap();
        assert_eq!(decode_kept::<(u8, String)>(&bytes).unwrap(), (1, "two".to_string()));
        bytes.push(0xc0);
        let e = decode_kept::<(u8, String)>(&bytes).unwrap_err();
        assert!(e.to_string().contains("1 bytes left over"), "{e}");
        assert_eq!(read_body::<(u8, String)>(&bytes, false).unwrap(), (1, "two".to_string()));
    }

    #[test]
    fn a_dead_receivers_message_runs_only_the_undo_entries_without_a_receipt_one_per_key() {
        use std::sync::Mutex;
        static RAN: Mutex<Vec<ReceiptKey>> = Mutex::new(Vec::new());
        let undo = |key: ReceiptKey| Undo {
            key,
            gone: |key| {
                RAN.lock().unwrap().push(key);
                true
            },
        };
        // The same handle twice (one receipted), a side and its object (the object
        // receipted), and a handle whose receipt names another generation.
        let (queue, pipe) = ([64, 1, 0], [128, 2, 0]);
        let encoded = Encoded {
            bytes: Vec::new(),
            undo: vec![undo(queue), undo(queue), undo([128, 2, 1]), undo(pipe), undo([192, 3, 0])],
        };
        give_back_from_dead(encoded, 0, vec![pipe, queue, [192, 4, 0]]);
        assert_eq!(*RAN.lock().unwrap(), [queue, [128, 2, 1], [192, 3, 0]]);
        assert_eq!(dead_receiver(), None, "the receiver is forgotten afterwards");
    }

    #[test]
    fn only_the_noted_steps_are_noted_and_the_outer_noting_comes_back() {
        let mut outer = Vec::new();
        let mut inner = vec![first_copy([9, 9, 9])];
        // A handle is read inside the decoding that a noting runs.
        noting_reads(&mut outer, || {
            let _leave = LeaveDecoding::enter();
            handle_read(first_copy([1, 1, 1]));
            noting_reads(&mut inner, || {
                let _nested = LeaveDecoding::enter();
                handle_read(first_copy([2, 2, 2]));
            });
            handle_read(first_copy([3, 3, 3]));
        });
        {
            let _leave = LeaveDecoding::enter();
            handle_read(first_copy([4, 4, 4]));
        }
        assert_eq!(outer, [first_copy([1, 1, 1]), first_copy([3, 3, 3])]);
        assert_eq!(inner, [first_copy([9, 9, 9]), first_copy([2, 2, 2])]);
        let panicked = std::panic::catch_unwind(|| {
            let mut read = Vec::new();
            noting_reads(&mut read, || panic!("a Deserialize panicked"));
        });
        assert!(panicked.is_err());
        handle_read(first_copy([5, 5, 5]));
        assert!(READ.with(|r| r.borrow().is_none()), "nothing notes after a panic");
    }

    /// A plain value's message is the one `encode` writes, and reads back as `decode` does.
    fn plain_as_encoded<T: Serialize + DeserializeOwned + PartialEq + fmt::Debug>(value: T) {
        assert!(plain::<T>(), "{}", std::any::type_name::<T>());
        let mut out = [0; PLAIN_MAX];
        let len = encode_plain(&value, &mut out).unwrap();
        let encoded = encode(&value).unwrap();
        assert_eq!(&out[..len], &encoded.bytes[..], "{value:?}");
        assert_eq!(decode_plain::<T>(&out[..len], true), Some(value));
    }

    #[test]
    fn plain_values_are_written_and_read_as_every_message_is() {
        plain_as_encoded(0u8);
        plain_as_encoded(u16::MAX);
        plain_as_encoded(300u32);
        plain_as_encoded(u64::MAX);
        plain_as_encoded(u128::MAX);
        plain_as_encoded(usize::MAX);
        plain_as_encoded(-1i8);
        plain_as_encoded(i16::MIN);
        plain_as_encoded(-70_000i32);
        plain_as_encoded(i64::MIN);
        plain_as_encoded(i128::MIN);
        plain_as_encoded(isize::MIN);
        plain_as_encoded(-1.5f32);
        plain_as_encoded(f64::MAX);
        plain_as_encoded(true);
        plain_as_encoded('\u{10ffff}');
        plain_as_encoded(());
        assert!(!plain::<String>() && !plain::<(u64, u64)>() && !plain::<Option<u64>>() && !plain::<&u64>());
        // Too little room, or a message in another encoding: not plain, the general path's.
        assert_eq!(encode_plain(&u64::MAX, &mut [0; 4]), None);
        let mut kept = Vec::new();
        encode_kept(&7u64, &mut kept).unwrap();
        assert_eq!(decode_plain::<u64>(&kept, false), None);
        assert_eq!(decode_plain::<u64>(&[], false), None);
    }

    /// Reads `bytes` (a plain message's body) as a `T` with [`decode_plain`]'s exact read
    /// and with postcard's own, and says whether both read the same.
    fn read_alike<T: DeserializeOwned + PartialEq + fmt::Debug>(body: &[u8]) {
        let mut message = vec![POSTCARD];
        message.extend_from_slice(body);
        let postcard = match postcard::take_from_bytes::<T>(body) {
            Ok((value, [])) => Some(value),
            _ => None,
        };
        assert_eq!(decode_plain::<T>(&message, true), postcard, "{} from {body:x?}", std::any::type_name::<T>());
    }

    fn read_alike_as_every_int(body: &[u8]) {
        read_alike::<u16>(body);
        read_alike::<u32>(body);
        read_alike::<u64>(body);
        read_alike::<usize>(body);
        read_alike::<i16>(body);
        read_alike::<i32>(body);
        read_alike::<i64>(body);
        read_alike::<isize>(body);
        read_alike::<u8>(body);
        read_alike::<bool>(body);
    }

    /// The short varints read without postcard's loop (`ShortVarint`) read as postcard
    /// reads them, and whatever they refuse (overlong, overflowing, cut short, bytes left
    /// over, other types) is read or refused by postcard as before.
    #[test]
    fn a_plain_int_reads_as_postcard_reads_it() {
        read_alike_as_every_int(&[]);
        for a in 0..=255u8 {
            read_alike_as_every_int(&[a]);
            for b in 0..=255u8 {
                read_alike_as_every_int(&[a, b]);
            }
        }
        // Longer ones: continuation bytes of every kind, a last byte of every kind, at
        // each length up to postcard's longest and past it.
        let fills = [0x80, 0xff, 0x81, 0xc0];
        let lasts = [0x00, 0x01, 0x03, 0x04, 0x0f, 0x10, 0x7f, 0x80, 0xff];
        for len in 3..=12 {
            for &fill in &fills {
                for &last in &lasts {
                    let mut body = vec![fill; len - 1];
                    body.push(last);
                    read_alike_as_every_int(&body);
                    body.push(0);
                    read_alike_as_every_int(&body);
                }
            }
        }
        for value in [0u64, 1, 127, 128, 16_383, 16_384, 1 << 28, (1 << 63) - 1, 1 << 63, u64::MAX] {
            let mut out = [0; PLAIN_MAX];
            let len = encode_plain(&value, &mut out).unwrap();
            read_alike::<u64>(&out[1..len]);
            assert_eq!(decode_plain::<u64>(&out[..len], true), Some(value));
        }
        for value in [0i64, -1, 1, -64, 64, i64::MIN, i64::MAX, i64::from(i32::MIN), i64::from(i16::MAX)] {
            let mut out = [0; PLAIN_MAX];
            let len = encode_plain(&value, &mut out).unwrap();
            read_alike::<i64>(&out[1..len]);
            assert_eq!(decode_plain::<i64>(&out[..len], true), Some(value));
        }
    }

    /// Asks what a handle's `Serialize` and `Deserialize` ask first (`write_wire`,
    /// `Wire::read`): whether a message of the family is being encoded or decoded, which
    /// is what lets a handle travel.
    struct AsksForAMessage;

    impl Serialize for AsksForAMessage {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            if encoding() {
                return Err(serde::ser::Error::custom("a handle would be written: a message is being encoded"));
            }
            serializer.serialize_unit()
        }
    }

    impl<'de> serde::Deserialize<'de> for AsksForAMessage {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            if decoding() {
                return Err(serde::de::Error::custom("a handle would be read: a message is being decoded"));
            }
            <()>::deserialize(deserializer).map(|()| AsksForAMessage)
        }
    }

    /// A value whose `Serialize` and `Deserialize` write and read a value kept by a
    /// manager's server (a proxy's `set` and `get` called inside them).
    struct KeepsInside;

    impl Serialize for KeepsInside {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut kept = Vec::new();
            encode_kept(&AsksForAMessage, &mut kept).map_err(serde::ser::Error::custom)?;
            serializer.serialize_bytes(&kept)
        }
    }

    impl<'de> serde::Deserialize<'de> for KeepsInside {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let kept: Vec<u8> = serde_bytes::deserialize(deserializer)?;
            decode_kept::<AsksForAMessage>(&kept).map_err(serde::de::Error::custom)?;
            Ok(KeepsInside)
        }
    }

    /// review65 L7: a value kept by a manager's server is encoded and decoded apart from any
    /// message around it, in which a handle refuses to travel (`encode_kept`, `decode_kept`).
    /// Inside a message's encoding, a handle in it was written as a real wire, its count's
    /// undo in the outer message's scope (in flight for ever once that message was sent);
    /// inside a decoding, a wire found in an item was received.
    #[test]
    fn a_value_kept_by_a_manager_is_coded_apart_from_the_message_around_it() {
        let msg = encode(&KeepsInside).expect("a kept value written inside a message's encoding as outside");
        decode::<KeepsInside>(&msg.bytes).expect("a kept value read inside a message's decoding as outside");
        msg.sent();
        assert!(!encoding() && !decoding());
    }

    #[test]
    fn round_trip() {
        let msg = encode(&(1u32, "two".to_string(), vec![3u8; 3])).unwrap();
        let back: (u32, String, Vec<u8>) = decode(&msg.bytes).unwrap();
        assert_eq!(back, (1, "two".into(), vec![3; 3]));
        msg.sent();
    }

    #[test]
    fn wrong_type_is_an_error() {
        let msg = encode(&vec![0xffu8; 3]).unwrap();
        let err = decode::<String>(&msg.bytes).unwrap_err();
        assert!(err.to_string().contains("cannot decode"), "{err}");
    }

    #[test]
    fn small_encodings_stop_at_the_limit() {
        let mut len = 0;
        let small = with_small_encoding(
            &vec![1u8; 10],
            64,
            |e| e,
            |b, _| {
                len = b.len();
                Ok(())
            },
        )
        .unwrap();
        assert!(small);
        assert_eq!(len, 12, "a tag byte and 11 bytes of postcard");
        let big = with_small_encoding(&vec![1u8; 100], 64, |e| e, |_, _| unreachable!()).unwrap();
        assert!(!big);
        let value = vec![7u16; 300];
        let mut out = vec![0; encoded_len(&value).unwrap()];
        encode_to_slice(&value, &mut out).unwrap().sent();
        assert_eq!(decode_exact::<Vec<u16>>(&out).unwrap(), value);
    }

    #[test]
    fn exact_decoding_refuses_left_over_bytes() {
        let msg = encode(&(5u8, 6u8)).unwrap();
        assert_eq!(decode::<u8>(&msg.bytes).unwrap(), 5, "postcard alone ignores the rest");
        assert!(decode_exact::<u8>(&msg.bytes).is_err());
        msg.sent();
    }

    #[test]
    fn byte_runs_encode_as_postcard_does_element_by_element() {
        let bytes: Vec<u8> = (0..=255).collect();
        let nested = (vec![bytes.clone(), Vec::new()], bytes.clone().into_boxed_slice(), vec![7i8; 3]);
        let msg = encode(&nested).unwrap();
        assert_eq!(msg.bytes[1..], postcard::to_allocvec(&nested).unwrap()[..]);
        assert_eq!(decode_exact::<(Vec<Vec<u8>>, Box<[u8]>, Vec<i8>)>(&msg.bytes).unwrap(), nested);
        let slice = encode_as::<Vec<u8>, [u8]>(&bytes[..10]).unwrap();
        assert_eq!(decode_exact::<Vec<u8>>(&slice.bytes).unwrap(), bytes[..10]);
        let short = [POSTCARD, 5, 1, 2];
        assert!(decode::<Vec<u8>>(&short).is_err(), "a run longer than the message is an error");
        msg.sent();
        slice.sent();
    }

    #[test]
    fn text_is_checked_as_utf8() {
        for text in ["", "ascii", "h\u{e9}llo \u{1f980}", &"x".repeat(1000)] {
            let msg = encode(&(text.to_string(), 7u8)).unwrap();
            assert_eq!(decode_exact::<(String, u8)>(&msg.bytes).unwrap(), (text.to_string(), 7));
            msg.sent();
        }
        let not_utf8 = [POSTCARD, 2, 0xc3, 0x28];
        let err = decode::<String>(&not_utf8).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        assert_eq!(err.type_name(), Some("alloc::string::String"));
    }

    #[test]
    fn scratch_encoding_is_reused() {
        let mut seen = None;
        let sent = with_small_encoding(
            &7u64,
            usize::MAX,
            |e| e,
            |b, handles| {
                seen = Some((b.len(), handles));
                Ok(())
            },
        );
        assert_eq!(sent, Ok(true));
        assert_eq!(seen, Some((2, false)));
    }
}
