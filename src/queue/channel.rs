//! What the queues and connections share: typed messages over a [`Ring`] (encoding straight
//! into shared memory, a type tag per message), the queues' shared state, and the handle
//! that [`Queue`](crate::Queue), [`SimpleQueue`](crate::SimpleQueue) and
//! [`JoinableQueue`](crate::JoinableQueue) wrap.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{Failure, TooLarge};
use crate::codec::{self, CodecError};
use crate::error::Error;
use crate::process::panics;
use crate::shm::crash::{crash_point, fail_point, interleave};
use crate::shm::{
    Deadline, GUARD_GRACE, Grown, Heap, HeapFull, IN_OWN_TAKE, INLINE_MAX, Limits, Notify, RawGuard, RawMutex, Refused,
    Ring, SMALL_PUT, Shared, ShmObject, TAG_MASK, Watch, kind,
};
use crate::sys;

#[path = "channel_async.rs"]
mod channel_async;

/// The tag of messages sent with `send_bytes`.
pub(crate) const RAW: u32 = 0;

fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// A number naming the handle type `flavor` of messages `T`, stored in the shared object
/// at creation and checked when a handle is decoded: a `Queue<u32>` received as a
/// `Queue<String>` is an error, not a stream of misread messages. Type names are the same
/// in every process of a family, which runs one binary.
pub(crate) fn type_tag<T>(flavor: &str) -> u64 {
    fnv1a(fnv1a(0xcbf2_9ce4_8422_2325, flavor.as_bytes()), std::any::type_name::<T>().as_bytes())
}

/// The tag each message of type `T` carries (24 bits, never [`RAW`]).
pub(crate) fn message_tag<T>() -> u32 {
    let h = type_tag::<T>("message");
    let folded = ((h >> 40) ^ (h >> 16) ^ h) as u32 & TAG_MASK;
    if folded == RAW { 1 } else { folded }
}

/// What a ring's refusal of a take (or of a put, through [`put_refused`]) fails with;
/// `gone` tells why the other side is gone.
pub(crate) fn refused<E>(r: Refused<E>, gone: impl FnOnce(E) -> Failure) -> Failure {
    match r {
        Refused::TimedOut => Failure::Wait,
        Refused::TooLarge { capacity } => Failure::TooLarge(TooLarge { size: 0, capacity: capacity as usize }),
        Refused::HeapFull(e) => Failure::HeapFull(e),
        Refused::Gone(e) => gone(e),
        Refused::ShutDown => Failure::ShutDown,
        Refused::InOwnTake => Failure::Decode(CodecError::decode(IN_OWN_TAKE)),
    }
}

/// [`refused`] for a put of `size` bytes: too large says its size, and a put refused
/// inside its ring's own take fails to encode rather than to decode.
fn put_refused<E>(size: usize) -> impl FnOnce(Refused<E>) -> Failure {
    move |r| match r {
        Refused::TooLarge { capacity } => Failure::TooLarge(TooLarge { size, capacity: capacity as usize }),
        Refused::InOwnTake => Failure::Encode(CodecError::encode(IN_OWN_TAKE)),
        other => refused(other, |_| Failure::Gone),
    }
}

/// Puts `value` on `ring`: a [`codec::plain`] value encoded on the stack, other small
/// encodings through the thread's scratch buffer, large ones sized first and written once,
/// straight into a heap block.
pub(crate) fn send_value<T: Serialize + DeserializeOwned, W: Watch>(
    ring: &Ring,
    value: &T,
    tag: u32,
    deadline: Deadline,
    watch: &W,
) -> Result<(), Failure> {
    if codec::plain::<T>() {
        // A number, `bool`, `char` or `()`: a few bytes, no handle, nothing for the codec's
        // thread state to do. Written on the stack as `codec::encode` writes it.
        const { assert!(codec::PLAIN_MAX <= SMALL_PUT) };
        let mut message = [0; SMALL_PUT];
        if let Some(len) = codec::encode_plain(value, &mut message) {
            return ring.put_small(&message, len, tag, deadline, watch).map_err(put_refused(len));
        }
    }
    let sent = codec::with_small_encoding(value, INLINE_MAX, Failure::Encode, |bytes, has_handles| {
        if has_handles {
            ring.mark_handles();
        }
        ring.put_bytes(bytes, tag, deadline, watch).map_err(put_refused(bytes.len()))
    })?;
    if sent {
        return Ok(());
    }
    let len = codec::encoded_len(value).map_err(Failure::Encode)?;
    let mut large = ring.large::<W::Gone>(len).map_err(put_refused(len))?;
    let encoded = codec::encode_to_slice(value, large.bytes_mut()).map_err(Failure::Encode)?;
    if encoded.has_handles() {
        ring.mark_handles();
    }
    ring.put_large(large, tag, deadline, watch).map_err(put_refused(len))?;
    encoded.sent();
    Ok(())
}

/// Takes a message of type `T` (tagged `tag`) from `ring`.
pub(crate) fn recv_value<T: DeserializeOwned, W: Watch>(
    ring: &Ring,
    tag: u32,
    deadline: Deadline,
    watch: &W,
) -> Result<T, Failure> {
    recv_value_then(ring, tag, deadline, watch, |_| Failure::Gone, || {}, |_| {})
}

/// [`recv_value`], calling `taking` under the consumers' lock when a message is there,
/// before anything is read, and `decoded` (whether it decoded) there too, after the
/// decoding and before the take commits; telling why the other side is gone with `gone`.
/// A take that is never refused: the ring's plain [`Ring::get`] (a `Queue`'s, a
/// `SimpleQueue`'s, a pipe's), without the refusal's test in its read (que102).
fn recv_value_then<T: DeserializeOwned, W: Watch>(
    ring: &Ring,
    tag: u32,
    deadline: Deadline,
    watch: &W,
    gone: impl FnOnce(W::Gone) -> Failure,
    taking: impl FnMut(),
    decoded: impl FnMut(bool),
) -> Result<T, Failure> {
    // The read closure captures one reference: the ring moves it out of an `Option` at each
    // take, and a closure of several captures (written field by field here) was moved with
    // wider loads than the stores that wrote it, which the processor cannot forward.
    let mut with = (ring, tag, taking, decoded);
    let with = &mut with;
    let decoded = ring
        .get(deadline, watch, move |bytes, got| {
            let (ring, tag, taking, decoded) = with;
            taking();
            read_message::<T>(ring, *tag, bytes, got, decoded)
        })
        .map_err(|r| refused(r, gone))?;
    settle_decoded(decoded).map_err(Failure::Decode)
}

/// [`recv_value_then`] whose `taking` may refuse the take (a `JoinableQueue`'s, that finds
/// no place to count it, que101): an `Err` leaves the message first in the ring, nothing
/// read, and the get fails with it ([`Ring::get_unless`]).
fn recv_value_unless<T: DeserializeOwned, W: Watch>(
    ring: &Ring,
    tag: u32,
    deadline: Deadline,
    watch: &W,
    gone: impl FnOnce(W::Gone) -> Failure,
    taking: impl FnMut() -> Result<(), HeapFull>,
    decoded: impl FnMut(bool),
) -> Result<T, Failure> {
    // One reference captured, as in `recv_value_then`.
    let mut with = (ring, tag, taking, decoded);
    let with = &mut with;
    let decoded = ring
        .get_unless(deadline, watch, move |bytes, got| {
            let (ring, tag, taking, decoded) = with;
            taking()?;
            Ok(read_message::<T>(ring, *tag, bytes, got, decoded))
        })
        .map_err(|r| refused(r, gone))?;
    settle_decoded(decoded).map_err(Failure::Decode)
}

/// The read of a take of `ring` (tagged `tag`), under the consumers' lock: the message's
/// `bytes` (tagged `got`) decoded as `T`, telling `decoded` whether they were.
#[inline(always)]
fn read_message<T: DeserializeOwned>(
    ring: &Ring,
    tag: u32,
    bytes: &[u8],
    got: u32,
    decoded: &mut impl FnMut(bool),
) -> Result<T, Undecoded> {
    if got == tag {
        // A plain type's message holds no handle: read straight from the record. One that
        // does not read so (not postcard, bytes left over) gets the general path, and its
        // error.
        if codec::plain::<T>()
            && let Some(value) = codec::decode_plain::<T>(bytes, true)
        {
            decoded(true);
            return Ok(value);
        }
        // Read with the message (see `Connection::take_raw`): a get that waited may take
        // the ring's first message with handles.
        let value = decode_taken::<T>(bytes, ring.ever_had_handles());
        decoded(value.is_ok());
        value
    } else {
        decoded(false);
        let sent = if got == RAW {
            "a raw message (send_bytes) cannot be received as"
        } else {
            "the message was sent as another type than"
        };
        Err(Box::new((CodecError::decode(format_args!("{sent} {}", std::any::type_name::<T>())).of::<T>(), None)))
    }
}

/// A message whose decoding failed, and what it may still hold: its bytes and the handles
/// the decoding read (see [`settle_decoded`]). Boxed: a take's result carries it through
/// the ring's `get` at every message, and a `Result<u64, _>` of the tuple itself is 56
/// bytes to move at each step, where the box makes it 16.
pub(crate) type Undecoded = Box<(CodecError, Option<(Vec<u8>, Vec<codec::HandleRead>)>)>;

/// Decodes a message of a ring that `handles` says ever carried handles, inside its take;
/// on failure keeps what [`settle_decoded`] needs once the message is taken: its bytes and
/// the handles the decoding read (a decoding that stopped part-way, a `Deserialize` that
/// refused or a holder that could not be recorded, left the handles after that point in
/// flight).
///
/// A `Deserialize` that panics fails the decoding like one that refuses: the message is
/// taken all the same. A panic let through would leave it first in the ring, for every
/// later take to panic on.
#[inline]
pub(crate) fn decode_taken<T: DeserializeOwned>(bytes: &[u8], handles: bool) -> Result<T, Undecoded> {
    if !handles {
        return panics::decoding::<T>(|| codec::decode_exact::<T>(bytes)).map_err(|e| Box::new((e, None)));
    }
    let mut read = Vec::new();
    codec::noting_reads(&mut read, || panics::decoding::<T>(|| codec::decode_exact::<T>(bytes)))
        .map_err(|e| Box::new((e, Some((bytes.to_vec(), read)))))
}

/// The outcome of [`decode_taken`], once the message is taken: a decoding that stopped
/// part-way never reached the handles after that point, which are given back (otherwise
/// they would stay in flight forever, and their objects' other holders never learn they
/// are alone). After the take, not inside it: a consumer killed in between leaves them to
/// the next consumer of the message rather than giving them back twice.
///
/// Inline, its rare part cold: on every typed take's path (without the hint, the plain
/// path's larger `recv_value_then` left it a call on every message of every type).
#[inline]
pub(crate) fn settle_decoded<T>(decoded: Result<T, Undecoded>) -> Result<T, CodecError> {
    decoded.map_err(give_back_undecoded)
}

// The box is opened here, in the cold call, not in the inlined caller.
#[allow(clippy::boxed_local)]
#[cold]
fn give_back_undecoded(undecoded: Undecoded) -> CodecError {
    let (e, left) = *undecoded;
    if let Some((bytes, read)) = left {
        crate::shm::give_back_unread(&bytes, &read);
    }
    e
}

/// Which handle type a queue object was made for (part of its type tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Queue,
    Simple,
    Joinable,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::Queue => "Queue",
            Flavor::Simple => "SimpleQueue",
            Flavor::Joinable => "JoinableQueue",
        }
    }
}

/// A queue in shared memory: the ring, what it was made for, `JoinableQueue`'s count, and
/// who waits in `get`.
#[derive(crate::ShmSafe)]
#[repr(C)]
pub(crate) struct QueueState {
    type_tag: AtomicU64,
    /// Items counted done outside the task table: dropped by an immediate shutdown's
    /// drain, or marked done by a process that found no slot there and has no slot aside
    /// (unfinished = put - done, done = this + the table's).
    done_elsewhere: AtomicU64,
    /// Rung when the tasks done catch up with the puts.
    pub(crate) all_done: Notify,
    pub(crate) ring: Ring,
    getters: Getters,
    /// `JoinableQueue::join` calls waiting (the same table, for joins).
    joiners: Getters,
    /// `shutdown`'s progress: [`IMMEDIATE`] (asked for), [`SHUT_DOWN`] (puts refused for
    /// good: a get on the empty queue ends), [`DRAINED`] (an immediate shutdown emptied it).
    /// Before the task table, which a `Queue`'s or `SimpleQueue`'s get never reads: every
    /// get reads this.
    shutdown: AtomicU64,
    /// The consumers' count just past the message a drain last counted done, so that a
    /// drainer killed between counting and taking a message does not have it counted twice.
    drained_at: AtomicU64,
    tasks: Tasks,
}

impl QueueState {
    /// [`Channel::count_take`]'s work: one call, not generic (inlined into code generic
    /// over `T`, monomorphized in the user's crate, its own calls would stay calls).
    fn count_take(&self, decoded: bool) -> Option<AfterTake<'_>> {
        let past = self.ring.taken().wrapping_add(1);
        self.tasks.settle(past);
        if decoded { self.tasks.count_take(past) } else { None }
    }
}

/// `QueueState::shutdown` bits.
const IMMEDIATE: u64 = 1;
const SHUT_DOWN: u64 = 2;
const DRAINED: u64 = 4;

/// Why a `get` stops waiting.
enum Stop {
    /// Nobody is left who could put.
    Disconnected,
    /// The queue was shut down.
    ShutDown,
}

impl From<Stop> for Failure {
    fn from(stop: Stop) -> Failure {
        match stop {
            Stop::Disconnected => Failure::Gone,
            Stop::ShutDown => Failure::ShutDown,
        }
    }
}

/// One slot of the task table: the tasks taken and marked done by the processes that had it.
#[derive(crate::ShmSafe)]
#[repr(C)]
#[derive(Debug, Default)]
struct Held {
    pid: AtomicU32,
    _pad: u32,
    start: AtomicU64,
    /// Tasks taken by every process that had this slot, counted under the table's lock;
    /// never reset, so that a slot's takeover moves no count. Written only under the lock,
    /// so that an undo finds it exactly as noted, or one more ([`Tasks::undo_noted`]).
    taken: AtomicU64,
    /// Tasks taken by the processes that had this slot, counted without the lock (its
    /// holder stopped) by the slot's own process; never reset. Apart from `taken`, because
    /// the locked count of a take is a load then a store, which erased an add made
    /// meanwhile by a sibling thread (review86 M1). A count below [`PENDING_A`], only ever
    /// added to, and two flags, each one more take: the last take counted here before its
    /// commit ([`Tasks::count_free`]) sets one, folding the other into the count, so that
    /// the next take can undo it, exactly and once, if it never committed (see
    /// [`Held::pending`], [`Tasks::void_free`]). Read with [`free_takes`].
    taken_free: AtomicU64,
    /// Tasks marked done by every process that had this slot; never reset. Marking a task
    /// done and no longer holding it are this one store: a process killed at any point of
    /// `task_done` has either done both or neither.
    done: AtomicU64,
    /// What `taken + taken_free - done` was when the present process took the slot over from a dead
    /// one: the dead processes' part, counted lost for good (the present process holds
    /// `taken + taken_free - done - base`; all signed counts).
    base: AtomicU64,
}

impl Held {
    /// Whether this slot names process `me`.
    #[inline]
    fn names(&self, me: sys::ProcId) -> bool {
        self.pid.load(Ordering::Acquire) == me.pid && self.start.load(Ordering::Acquire) == me.start
    }

    /// Tasks taken less tasks marked done here (a signed count: a process may mark done
    /// more than it took, finishing others' tasks).
    fn held(&self) -> i64 {
        let free = free_takes(self.taken_free.load(Ordering::Acquire));
        let taken = self.taken.load(Ordering::Acquire).wrapping_add(free);
        taken.wrapping_sub(self.done.load(Ordering::Acquire)) as i64
    }

    /// The flag of `taken_free` a take about to be counted there before its commit sets,
    /// and what to add to count it: the flag set, the other one (the last such take here,
    /// committed, since this one is made) folded into the count. Only this process's takes
    /// change the flags (under the consumers' lock, one at a time) while it lives, and the
    /// undo of one ([`Held::void_pending`]) comes only once it is dead: the undo is made by
    /// the next take that finds the counted take uncommitted, and nothing between the count
    /// and the ring's commit can fail or unwind, so only a death leaves it so. The flags
    /// read here are still the slot's when the caller adds: every add to `taken_free` is
    /// made under the consumers' lock (since que102).
    fn pending(&self) -> (u64, u64) {
        match self.taken_free.load(Ordering::Acquire) & (PENDING_A | PENDING_B) {
            0 => (PENDING_A, PENDING_A),
            PENDING_A => (PENDING_B, 1u64.wrapping_add(PENDING_B).wrapping_sub(PENDING_A)),
            _ => (PENDING_A, 1u64.wrapping_add(PENDING_A).wrapping_sub(PENDING_B)),
        }
    }

    /// Undoes the take whose count set `flag` ([`Held::pending`]) if it is set still: the
    /// flag cleared alone (what it folded stays counted: a take that committed). Exact
    /// and idempotent: set only by that count while its process lived, and only its count
    /// sets it until a later take of this slot's process, which this undo comes before.
    fn void_pending(&self, flag: u64) {
        let mut v = self.taken_free.load(Ordering::Acquire);
        while v & flag != 0 {
            match self.taken_free.compare_exchange(v, v.wrapping_sub(flag), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(now) => v = now,
            }
        }
    }

    /// Makes this free slot, where process `me` has just counted (or is about to: a take
    /// that had no other place, [`Tasks::claim_for_take`]), `me`'s: `base` (what
    /// [`Held::held`] was before that count, the dead's part), then `start`, then `pid`
    /// last. Until then the slot names no live process and its whole count is a dead one's;
    /// a process killed at any step leaves it so (a later claim stores the `base` of its
    /// moment). Caller holds the table's lock.
    fn claim(&self, dead: i64, me: sys::ProcId) {
        self.base.store(dead as u64, Ordering::Relaxed);
        crash_point!("queue.tasks.moved");
        self.start.store(me.start, Ordering::Relaxed);
        crash_point!("queue.tasks.started");
        self.pid.store(me.pid, Ordering::Relaxed);
    }
}

/// `Held::taken_free`'s flags: each is one take, counted before its commit.
const PENDING_A: u64 = 1 << 62;
const PENDING_B: u64 = 1 << 63;

/// The takes a `Held::taken_free` of `v` counts: the count, and one per flag set.
#[inline]
fn free_takes(v: u64) -> u64 {
    (v & (PENDING_A - 1)) + (v >> 62 & 1) + (v >> 63)
}

/// `Tasks::free_slot`: the slot noted is a slot aside ([`Grown::id_of`] below), and the
/// flag its take set is [`PENDING_B`] (else [`PENDING_A`]).
const NOTED_ASIDE: u64 = 1 << 62;
const NOTED_B: u64 = 1 << 63;

/// What a take counted before its commit leaves to do once it has committed: done when
/// this is dropped (after the take).
enum AfterTake<'a> {
    /// Claim ([`Held::claim`]) the free slot of the task table the take counted in, the
    /// table's lock held until then.
    Claim { _lock: RawGuard<'a>, slot: &'a Held, dead: i64 },
    /// A take counted before its commit without the lock ([`Tasks::count_free`]): nothing
    /// left to do but the crash point `queue.take.placed`.
    Placed,
}

impl Drop for AfterTake<'_> {
    fn drop(&mut self) {
        match self {
            AfterTake::Claim { slot, dead, .. } => {
                crash_point!("queue.tasks.taken");
                slot.claim(*dead, sys::me());
            }
            AfterTake::Placed => crash_point!("queue.take.placed"),
        }
    }
}

/// `Tasks::take_slot`: the slot's index plus one in the low bits, its count above.
const SLOT_SHIFT: u32 = 6;
const SLOT_BITS: u64 = (1 << SLOT_SHIFT) - 1;

/// Tasks taken and done per process (`JoinableQueue`), so that `join` can tell the tasks of
/// dead processes, which nobody can ever mark done.
#[derive(crate::ShmSafe)]
#[repr(C)]
#[derive(Debug, Default)]
struct Tasks {
    lock: RawMutex,
    /// How many slots (from the first) were ever counted in: a high-water mark that only
    /// grows, written before a slot's first count, so that every slot past it is still
    /// unused (`pid` 0, no count) even after a kill anywhere. The sums read only these.
    used: AtomicU32,
    /// The last take counted before its commit ([`Tasks::count_take`]): its slot's index
    /// plus one (0: none) and that slot's `taken` before the count, as `taken << SLOT_SHIFT
    /// | index + 1`.
    take_slot: AtomicU64,
    /// The consumers' count once that take has committed: while theirs is one less (read
    /// under their lock), it has not, and never will unless its process still holds the
    /// lock.
    take_at: AtomicU64,
    /// A `take_slot` whose count is to be undone ([`Tasks::undo`]) by the lock's next
    /// holder, before anything else (0: none): the undo found the lock held by a stopped
    /// process.
    undo_due: AtomicU64,
    slots: [Held; GETTER_SLOTS],
    /// Slots aside, one per process that took a task without a slot of its own (every slot
    /// a live process's, or the table's lock held by a stopped process): its tasks taken
    /// without a slot (`taken_free`) and marked done without one (`done`), where its death
    /// shows them lost (review78 L3: remembered in its memory only, they never were). A
    /// chain of family-heap blocks ([`Grown`], [`ASIDES_PER_BLOCK`] to a block), grown
    /// under a small lock of its own when every slot aside is another process's (que82:
    /// they were 10, inside this object, and an eleventh slot-less process remembered its
    /// takes in its memory), freed with the queue object. Claimed without the lock (a
    /// compare-exchange of `pid` from 0, the mark of its block raised, then `start`; two
    /// threads may claim two), written only by their process, which keeps them while it
    /// lives, slot or not; freed under the table's lock once their process is dead, by a
    /// `join` check ([`Tasks::lost_then`]) or a locked take that finds none free
    /// ([`Tasks::free_asides_for_me`]): `base` the whole count, then `start` and `pid` 0
    /// ([`Tasks::free_dead_asides`]). A process holds what its slot and its slots aside
    /// hold together.
    asides: Grown<Held, ASIDES_PER_BLOCK>,
    /// The slot of the last take counted before its commit without the lock, when
    /// `take_slot` is 0 ([`Tasks::count_free`]): its index plus one, or [`NOTED_ASIDE`]
    /// and a slot aside's name, with [`NOTED_B`] for the flag its count set. Last, so that
    /// the slots keep their place in the object's cache lines.
    free_slot: AtomicU64,
}

/// How many slots aside a block of the chain holds: 85 of 48 bytes after the block's 16
/// make a 4096-byte block of the family heap.
const ASIDES_PER_BLOCK: usize = 85;
const _: () = assert!(16 + ASIDES_PER_BLOCK * std::mem::size_of::<Held>() == ASIDES_BLOCK);

/// The bytes of a block of slots aside: what a take refused for want of one says it
/// needed ([`Tasks::place`]).
const ASIDES_BLOCK: usize = 4096;

impl Tasks {
    /// Tasks marked done in the table (a snapshot without the lock: each count only grows).
    #[inline]
    fn done(&self) -> u64 {
        let done = self.used().iter().fold(0u64, |sum, h| sum.wrapping_add(h.done.load(Ordering::Acquire)));
        // One load when no process ever needed a slot aside.
        if self.asides.none_claimed() { done } else { done.wrapping_add(self.asides_done()) }
    }

    /// Tasks marked done in the slots aside.
    #[cold]
    fn asides_done(&self) -> u64 {
        self.asides_used().fold(0u64, |sum, h| sum.wrapping_add(h.done.load(Ordering::Acquire)))
    }

    /// The slots ever counted in (see `used`).
    fn used(&self) -> &[Held] {
        let used = self.used.load(Ordering::Acquire) as usize;
        &self.slots[..used.min(GETTER_SLOTS)]
    }

    /// The slots aside ever claimed (under their blocks' marks: see [`Grown`]).
    fn asides_used(&self) -> impl Iterator<Item = &Held> {
        self.asides.used(Heap::get())
    }

    /// The slot to count in for process `me`, its index, and whether it is `me`'s own: its
    /// own, else a free one ([`Tasks::free`]); `None` when every slot is a live process's.
    /// Caller holds the lock.
    #[inline]
    fn slot(&self, me: sys::ProcId, skip: impl FnOnce() -> usize) -> Option<(usize, &Held, bool)> {
        let used = self.used();
        match used.iter().position(|h| h.names(me)) {
            Some(at) => Some((at, &used[at], true)),
            None => self.free(skip()).map(|at| (at, &self.slots[at], false)),
        }
    }

    /// A free slot (never used, or a dead process's) other than slot `skip`, lowest first;
    /// the mark of slots used is raised before a never used one is counted in. Caller holds
    /// the lock.
    #[cold]
    fn free(&self, skip: usize) -> Option<usize> {
        let used = self.used();
        // A free slot among those used, else the first one never used.
        let free = used.iter().enumerate().position(|(at, h)| {
            let pid = h.pid.load(Ordering::Relaxed);
            at != skip && (pid == 0 || !sys::process_alive(pid, h.start.load(Ordering::Relaxed)))
        });
        let at = free.or((used.len() < GETTER_SLOTS).then_some(used.len()))?;
        if at == used.len() {
            // Covers the slot before its first count (a kill here leaves it covered, empty).
            self.used.store(at as u32 + 1, Ordering::Release);
            crash_point!("queue.tasks.used");
        }
        Some(at)
    }

    /// Counts a task marked done by this process; false when every slot is a live
    /// process's (then it counts nothing). Caller holds the lock.
    ///
    /// A process without a slot counts in a free one (never used, or a dead process's)
    /// first, then claims it ([`Held::claim`]). Not in the slot of the last take counted
    /// before its commit, which the next take may still undo ([`Tasks::settle`]): claimed
    /// meanwhile, its `base` would keep the count undone.
    fn add_done(&self) -> bool {
        let me = sys::me();
        let Some((_, h, mine)) = self.slot(me, || self.noted_slot()) else { return false };
        // Read before the count below (only a free slot's is used: what the dead held).
        let dead = if mine { 0 } else { h.held() };
        h.done.fetch_add(1, Ordering::Release);
        crash_point!("queue.task_done.counted");
        if !mine {
            h.claim(dead, me);
        }
        true
    }

    /// Counts a task this process is taking, before the take commits (consumers' lock
    /// held; the take makes the consumers' count `past`): notes the slot and its `taken`
    /// first, then `past`, then counts, so that the next take can undo the count of a
    /// process killed before its commit ([`Tasks::settle`]); a kill after the commit leaves
    /// the task counted as the dead process's. Uncounted when every slot is a live
    /// process's.
    ///
    /// A process without a slot counts in a free one and claims it once its take has
    /// committed, under the table's lock, held until then: when the [`AfterTake`] returned
    /// is dropped. (Claimed before the commit, the slot of a process killed in between would
    /// name it with a count undone.)
    ///
    /// Uncounted under the lock too when the table's lock is held by a stopped process
    /// (`SIGSTOP`, a debugger), which must not hold a timed get past its deadline (cond50);
    /// a running holder, however slow, is waited for. A take uncounted under the lock is
    /// counted without it, before its commit, in its process's own slot or, without one,
    /// in its slot aside ([`Tasks::count_free`]), one of which the take made sure of before
    /// it read ([`Tasks::place`]; a take without is refused, que101).
    #[inline]
    fn count_take(&self, past: u64) -> Option<AfterTake<'_>> {
        let Some(lock) = RawGuard::lock_unless_stopped_within(&self.lock, GUARD_GRACE) else {
            return Some(self.count_free(past));
        };
        self.undo_if_due();
        let me = sys::me();
        let Some((at, h, mine)) = self.slot(me, || usize::MAX) else {
            self.free_asides_for_me(me);
            drop(lock);
            return Some(self.count_free(past));
        };
        crash_point!("queue.take.found");
        let before = h.taken.load(Ordering::Relaxed);
        let dead = if mine { 0 } else { h.held() };
        self.take_slot.store(before << SLOT_SHIFT | (at as u64 + 1), Ordering::Relaxed);
        crash_point!("queue.take.noted");
        self.take_at.store(past, Ordering::Relaxed);
        crash_point!("queue.take.marked");
        h.taken.store(before.wrapping_add(1), Ordering::Release);
        crash_point!("queue.take.counted");
        if mine {
            return None;
        }
        Some(AfterTake::Claim { _lock: lock, slot: h, dead })
    }

    /// Counts a take left uncounted under the lock (its holder stopped, or every slot a
    /// live process's) before its commit (consumers' lock held; the take makes their count
    /// `past`), without the table's lock: in this process's own slot, else in its slot
    /// aside (claimed, the chain grown if need be); notes
    /// the slot and the flag the count sets ([`Held::pending`]), then `past`, then counts,
    /// so that the next take undoes the count if the take never committed
    /// ([`Tasks::settle`], [`Tasks::void_free`]), as it does a count under the lock. A kill
    /// at any point after the commit leaves the take counted as the dead process's: told
    /// lost. (Counted after the commit, once the consumers' lock was let go, a taker killed
    /// in between had a take counted nowhere, never told lost: review94 L2.) One of the two
    /// is there: the take made sure of it before it read ([`Tasks::place`]: its own slot,
    /// else its slot aside or a free one, which no other take can claim meanwhile, since
    /// every claim of one is made here, under the consumers' lock this take holds).
    #[cold]
    fn count_free(&self, past: u64) -> AfterTake<'_> {
        crash_point!("queue.take.uncounted");
        let me = sys::me();
        let place = match self.used().iter().position(|h| h.names(me)) {
            Some(at) => Some((&self.slots[at], at as u64 + 1)),
            None => self.aside(true, true).and_then(|h| Some((h, NOTED_ASIDE | self.asides.id_of(Heap::get(), h)?))),
        };
        let Some((h, id)) = place else {
            // Not reached: `Tasks::place` refused the take before it read otherwise (until
            // que101 such a take was remembered in its process's memory, and lost with it).
            // Left uncounted (no panic under the consumers' lock): a death of its taker is
            // never told lost, and its `task_done`, counted in a slot or slot aside this
            // process has or claims later, leaves that process one below nothing there,
            // which hides from `join` one task a dead consumer holds (review72 M1,
            // review135 L1). Only a claimer of slots aside outside the consumers' lock
            // could reach it.
            debug_assert!(false, "a take without a place it made sure of");
            return AfterTake::Placed;
        };
        let (flag, add) = h.pending();
        // No note matches `past` while this one is written (the last one, if it did, was
        // undone by this take's settle): a kill here leaves nothing to undo.
        self.take_at.store(0, Ordering::Relaxed);
        self.take_slot.store(0, Ordering::Relaxed);
        self.free_slot.store(id | if flag == PENDING_B { NOTED_B } else { 0 }, Ordering::Release);
        crash_point!("queue.take.free_noted");
        self.take_at.store(past, Ordering::Release);
        h.taken_free.fetch_add(add, Ordering::AcqRel);
        crash_point!("queue.take.free_counted");
        AfterTake::Placed
    }

    /// Makes sure that a take about to read its message (consumers' lock held) will find a
    /// place to be counted before its commit, whatever happens to the table's lock
    /// meanwhile; `Err` when it cannot: the take is refused, its message left in the ring
    /// (que101). Before, such a take committed, remembered only in its process's memory,
    /// and was lost with it: a taker killed after it left a task `join` never told lost.
    ///
    /// A place is this process's own slot, which stays its own while it lives: most takes
    /// find it here, without a lock (one walk of the slots used). Without one, the take may
    /// be counted under the table's lock in a free slot ([`Tasks::count_take`]), but that
    /// slot may be claimed by another process's `task_done`, or the lock held by a stopped
    /// process, before the count: the take must then have a slot aside
    /// ([`Tasks::count_free`]). So a free slot aside must be there, or this process's own:
    /// found, or the chain grown for it; or, when the chain cannot grow (the heap full), a
    /// free slot of the table claimed now, before the read, which makes it this process's
    /// own ([`Tasks::place_aside`], [`Tasks::claim_for_take`]).
    ///
    /// `past`: the consumers' count just past the message this take is about to read
    /// (`ring.taken() + 1`), read only when the process has no slot of its own.
    #[inline]
    fn place(&self, past: impl FnOnce() -> u64) -> Result<(), HeapFull> {
        if self.own_slot().is_some() { Ok(()) } else { self.place_aside(past()) }
    }

    /// [`Tasks::place`] for a process without a slot of its own: its slot aside, or a free
    /// one (`pid` 0), else the chain grown by a block of them; when it cannot grow
    /// ([`Tasks::aside`] lists when), a free slot of the table claimed for this process
    /// ([`Tasks::claim_for_take`]); `Err` when there is none either, or the table's lock is
    /// held by a stopped process. A slot aside is not claimed here: the take claims it only
    /// if it needs it ([`Tasks::count_free`]), so that a process that gets a slot of the
    /// table keeps no slot aside. A free slot aside stays free until then, since every
    /// claim of one is made by a take before its commit ([`Tasks::count_free`]), under the
    /// consumers' lock, which this take holds. The tests' `fail:queue.aside.none` makes it
    /// find no place at all (no slot aside, and no slot of the table claimed), as when the
    /// heap is full and every slot of the table is a live process's.
    ///
    /// The chain first, the table only when the heap is full: a first take then claims its
    /// slot of the table after its commit, as before que101 (`AfterTake::Claim`, where the
    /// crash points `queue.tasks.taken`, `moved` and `started` are), at the cost of a
    /// 4 KiB block per queue ever taken from by a process without a slot. Before que103 a
    /// first take in a full heap was refused even with a free slot in the table and its
    /// lock free (review130 M1): a program that filled the heap with tasks before starting
    /// its consumers could never drain it.
    #[cold]
    fn place_aside(&self, past: u64) -> Result<(), HeapFull> {
        if self.aside(false, false).is_some() {
            return Ok(());
        }
        if fail_point!("queue.aside.none") {
            return Err(HeapFull::requested(ASIDES_BLOCK));
        }
        let heap = Heap::get();
        loop {
            let seen = self.asides.head();
            if self.asides.all(heap).any(|h| h.pid.load(Ordering::Acquire) == 0) {
                return Ok(());
            }
            if !self.asides.grow(heap, seen, GUARD_GRACE) {
                return if self.claim_for_take(past) { Ok(()) } else { Err(HeapFull::requested(ASIDES_BLOCK)) };
            }
        }
    }

    /// Makes a free slot of the table (never used, or a dead process's) this process's
    /// own, with no count, for a take about to read (consumers' lock held) that has no
    /// other place; true when this process has a slot now. Under the table's lock, let go
    /// before the read: the read runs user `Deserialize` code, and a `task_done` of this
    /// queue inside it would wait for a lock its own process holds. A running holder of the
    /// lock is waited for, a stopped one is not (false, as [`Tasks::count_take`]).
    ///
    /// A slot so claimed holds only its `base` (what the dead held, counted lost), and
    /// stays this process's while it lives, so the take's count finds it, under the lock
    /// or without it ([`Tasks::count_free`]). Not the slot of the last take counted before
    /// its commit while this take's settle may still undo it (`take_at == past`: that take
    /// never committed; [`Tasks::noted_slot`], as [`Tasks::add_done`]): claimed before the
    /// undo, its `base` would keep the count undone. A noted take that committed has no
    /// undo to come, and its slot is as free as any (until review138 L1 it was skipped
    /// whatever the take's fate, and a first take could be refused with a dead process's
    /// slot free and the lock free). An undo left to the lock's next holder is made first.
    #[cold]
    fn claim_for_take(&self, past: u64) -> bool {
        let Some(_lock) = RawGuard::lock_unless_stopped_within(&self.lock, GUARD_GRACE) else {
            return false;
        };
        self.undo_if_due();
        let me = sys::me();
        let undo_to_come = self.take_at.load(Ordering::Relaxed) == past;
        let skip = || if undo_to_come { self.noted_slot() } else { usize::MAX };
        let Some((_, h, mine)) = self.slot(me, skip) else { return false };
        if !mine {
            h.claim(h.held(), me);
        }
        true
    }

    /// The slot of the last take counted before its commit (under the lock, or without it
    /// in the table), which the next take may still undo ([`Tasks::settle`]): not to be
    /// claimed before, its `base` would keep the count undone. `usize::MAX`: none.
    fn noted_slot(&self) -> usize {
        let noted = self.take_slot.load(Ordering::Relaxed);
        if noted & SLOT_BITS != 0 {
            return ((noted & SLOT_BITS) as usize).wrapping_sub(1);
        }
        let free = self.free_slot.load(Ordering::Acquire) & !NOTED_B;
        if free & NOTED_ASIDE != 0 { usize::MAX } else { (free as usize).wrapping_sub(1) }
    }

    /// Undoes the count of the last take counted before its commit without the lock
    /// ([`Tasks::count_free`]) if it is counted still (consumers' lock held; its taker was
    /// killed before the commit): its flag cleared, exactly once ([`Held::void_pending`]).
    /// A slot aside noted there is not freed before (it is freed only under the consumers'
    /// lock, after this, or on an empty queue, where the take would have left its message).
    #[cold]
    fn void_free(&self) {
        let noted = self.free_slot.load(Ordering::Acquire);
        let flag = if noted & NOTED_B != 0 { PENDING_B } else { PENDING_A };
        let id = noted & !(NOTED_B | NOTED_ASIDE);
        let slot = if noted & NOTED_ASIDE != 0 {
            self.asides.item(Heap::get(), id)
        } else {
            id.checked_sub(1).and_then(|at| self.slots.get(at as usize))
        };
        if let Some(h) = slot {
            h.void_pending(flag);
        }
        crash_point!("queue.take.voided");
    }

    /// This process's own slot, found without the lock: no other process writes the slot
    /// of a live process, so one that names this process stays its own while it lives.
    /// Without the lock, its threads only add to its `done` and `taken_free`: its `taken`
    /// is a locked count's load then store, which another thread may be between.
    fn own_slot(&self) -> Option<&Held> {
        let me = sys::me();
        self.used().iter().find(|h| h.names(me))
    }

    /// This process's slot aside (see `asides`), found, or else claimed when `claim`
    /// (the chain grown when every one names another process, if `grow`); `None` when it
    /// has none and none could be claimed. The chain fails to grow, and a take of a process
    /// without a slot of its own that cannot claim a free slot of the table either is
    /// refused, its message left in the ring ([`Tasks::place`], que101; before, it was left
    /// without a place before its commit, and remembered in its process's memory), only
    /// when:
    /// - the heap full: the block's class has no free block, and neither a free extent nor
    ///   the heap's untouched end has room for a 64 KiB slab of it. Blocks waiting for
    ///   their release ([`Heap::defer_releases`]) are not released here: the slab is taken
    ///   past them (review120 M1), so while they wait the heap is full a little earlier.
    /// - a process stopped holding the heap's large allocator's lock while the block's class
    ///   has no free block ([`Heap::alloc_small_into_unless_stopped`]).
    ///
    /// The tests' `fail:queue.aside.none` makes a claim find none, as in those cases.
    /// Without the table's lock.
    ///
    /// Claimed and grown only under the consumers' lock, by a take before it reads
    /// ([`Tasks::place`]) or before its commit ([`Tasks::count_free`]): a grower stopped in
    /// its few stores then holds that lock too, and no other take reaches the chain's lock
    /// meanwhile, so none finds it held by a stopped process and goes without a slot aside.
    #[cold]
    fn aside(&self, claim: bool, grow: bool) -> Option<&Held> {
        let me = sys::me();
        if let Some(h) = self.asides_used().find(|h| h.names(me)) {
            return Some(h);
        }
        if !claim || fail_point!("queue.aside.none") {
            return None;
        }
        let heap = Heap::get();
        loop {
            let seen = self.asides.head();
            // Covered by its block's mark before its first count; named with a `start` of
            // 0 until then, a process by its pid alone, never judged dead while it lives.
            let claimed = self
                .asides
                .claim(heap, |h| h.pid.compare_exchange(0, me.pid, Ordering::AcqRel, Ordering::Relaxed).is_ok());
            if let Some(h) = claimed {
                h.start.store(me.start, Ordering::Release);
                return Some(h);
            }
            if !grow || !self.asides.grow(heap, seen, GUARD_GRACE) {
                return None;
            }
        }
    }

    /// Frees the slots aside of dead processes when process `me` has none and would find
    /// none free to claim for its take: otherwise only a `join` check frees them, and a
    /// queue nobody joins, its slot-less takers dying, had every later one remember its
    /// takes in its memory (review94 L1; since que101 it grows the chain instead, before
    /// it reads). Caller holds the lock.
    #[cold]
    fn free_asides_for_me(&self, me: sys::ProcId) {
        if self.asides.all(Heap::get()).all(|h| h.pid.load(Ordering::Relaxed) != 0 && !h.names(me)) {
            self.free_dead_asides(|pid, start| !sys::process_alive(pid, start));
        }
    }

    /// Counts a task marked done by this process, which has no slot: in its slot aside if it
    /// has one (its takes without a slot are there), else outside the table (`elsewhere`:
    /// a task it did not take, or took in a slot it no longer has; no process holds it).
    fn did_without_slot(&self, elsewhere: &AtomicU64) {
        match self.aside(false, false) {
            Some(h) => h.done.fetch_add(1, Ordering::AcqRel),
            None => elsewhere.fetch_add(1, Ordering::AcqRel),
        };
    }

    /// Undoes the count of the last take counted if it never committed (its process was
    /// killed between its count and its commit), before another take commits as the
    /// consumers' `past`-th (consumers' lock held): the killed one would have been that
    /// one, and nothing else moves the consumers' count meanwhile.
    #[inline]
    fn settle(&self, past: u64) {
        if self.take_at.load(Ordering::Relaxed) == past {
            self.undo();
        }
    }

    /// [`Tasks::settle`]'s undo, under the table's lock. A running holder of it, however
    /// slow, is waited for; a process stopped holding it (`SIGSTOP`, a debugger) must not
    /// hold the take up, under the consumers' lock (stop61): the undo is then left to the
    /// lock's next holder ([`Tasks::undo_if_due`]), which makes it before anything else,
    /// so before any other count in that slot, any claim of it and any count of the tasks
    /// lost. (This take finds the lock held too and goes uncounted, so the noted take
    /// stays noted.)
    #[cold]
    fn undo(&self) {
        let noted = self.take_slot.load(Ordering::Relaxed);
        if noted == 0 {
            return self.void_free();
        }
        let Some(_g) = RawGuard::lock_unless_stopped_within(&self.lock, GUARD_GRACE) else {
            self.undo_due.store(noted, Ordering::Release);
            return;
        };
        self.undo_if_due();
        self.undo_noted(noted);
    }

    /// Makes the undo left to this holder of the lock, if any ([`Tasks::undo`]). Caller
    /// holds the lock, just taken. A holder killed before it cleared the mark leaves it to
    /// the next, which finds the count undone already.
    #[inline]
    fn undo_if_due(&self) {
        let due = self.undo_due.load(Ordering::Acquire);
        if due != 0 {
            self.undo_noted(due);
            self.undo_due.store(0, Ordering::Release);
        }
    }

    /// Undoes the count of the take `noted` (a `take_slot`) if it is still counted. Caller
    /// holds the lock.
    #[cold]
    fn undo_noted(&self, noted: u64) {
        let at = (noted & SLOT_BITS) as usize;
        if let Some(h) = at.checked_sub(1).and_then(|at| self.slots.get(at)) {
            // Only a take under the lock changes this slot's `taken` after this check (a
            // `task_done` counts in `done`, a take without the lock in `taken_free`): it is
            // still what was noted (killed before its count, or undone already), or one more
            // (counted).
            let taken = h.taken.load(Ordering::Relaxed);
            if taken << SLOT_SHIFT == (noted & !SLOT_BITS).wrapping_add(1 << SLOT_SHIFT) {
                h.taken.store(taken.wrapping_sub(1), Ordering::Release);
            }
        }
        crash_point!("queue.take.undone");
    }

    /// Counts a task marked done by this process, if fewer than `puts()` are done (with the
    /// `elsewhere` ones, where a process without a slot counts it): the count of tasks done
    /// read after it ([`Tasks::done_since`]), and the puts; `None` when all were done
    /// already.
    ///
    /// A process stopped holding the lock (`SIGSTOP`, a debugger) does not hold it up
    /// ([`Tasks::did_unlocked`]); a running holder, however slow, is waited for.
    fn did(&self, elsewhere: &AtomicU64, puts: impl FnOnce() -> u64) -> Option<(u64, u64)> {
        let Some(_g) = RawGuard::lock_unless_stopped_within(&self.lock, GUARD_GRACE) else {
            return self.did_unlocked(elsewhere, puts);
        };
        self.undo_if_due();
        let done = elsewhere.load(Ordering::Acquire).wrapping_add(self.done());
        let put = puts();
        if done >= put {
            return None;
        }
        if !self.add_done() {
            self.did_without_slot(elsewhere);
        }
        Some((self.done_since(elsewhere), put))
    }

    /// [`Tasks::did`] without the lock, its holder stopped (stop61): in this process's own
    /// slot, which no other process writes while it lives; without a slot, as when the
    /// table is full
    /// ([`Tasks::did_without_slot`]). A `join`'s count of the tasks lost, the only reader
    /// that needs the counts still, looks again if the dones moved under it
    /// ([`Tasks::lost_then`]). Not under the lock, the check of a task done too many times
    /// can miss one made at the same moment by another process without the lock, or by the
    /// stopped one, as it goes on.
    #[cold]
    fn did_unlocked(&self, elsewhere: &AtomicU64, puts: impl FnOnce() -> u64) -> Option<(u64, u64)> {
        let done = elsewhere.load(Ordering::Acquire).wrapping_add(self.done());
        let put = puts();
        if done >= put {
            return None;
        }
        interleave("checked");
        match self.own_slot() {
            Some(h) => {
                h.done.fetch_add(1, Ordering::AcqRel);
            }
            None => self.did_without_slot(elsewhere),
        }
        Some((self.done_since(elsewhere), put))
    }

    /// Tasks marked done, read after this process counted one. Not the count read before
    /// it plus one: two `task_done`s at once, one of them without the lock (its holder
    /// stopped), each read before the other counted, and neither woke `join` (review86 L1).
    /// With the fence after each count, of two at once at least one reads both.
    fn done_since(&self, elsewhere: &AtomicU64) -> u64 {
        fence(Ordering::SeqCst);
        elsewhere.load(Ordering::Acquire).wrapping_add(self.done())
    }

    /// Tasks taken by processes now dead and never marked done: what the dead hold, less
    /// what live processes marked done beyond what they took (they may have finished
    /// tasks of the dead); then `unfinished()`, read after them under the same lock. Reads
    /// `/proc`.
    ///
    /// With the consumers' lock held too, no count changes meanwhile (`task_done` counts
    /// under this lock, takes and a shutdown's drain under both); only puts, deaths and a
    /// `task_done` counted without the table's lock (`did_unlocked`) can, and
    /// each can only make the first count too low or the second too high: so when the
    /// first is at least the second, every unfinished task was a dead process's at one
    /// moment. (The two read apart, a put and a consumer dying with it in between made a
    /// task a live process held look lost.)
    ///
    /// `None` when the lock is not had within [`GUARD_GRACE`] (its holder stopped, say: the
    /// check of a timed `join` must end; the next check looks again), or when a task was
    /// marked done without the lock meanwhile ([`Tasks::did_unlocked`]: a slot read before
    /// it, the unfinished count after, the first could be one too high; the next check
    /// looks again). A process holds what its slot and its slots aside hold together. Frees
    /// the slots aside of dead processes ([`Tasks::free_dead_asides`]).
    fn lost_then(&self, unfinished: impl FnOnce() -> u64) -> Option<(u64, u64)> {
        let _g = RawGuard::lock_until(&self.lock, Deadline::after(GUARD_GRACE))?;
        self.undo_if_due();
        let done = self.done();
        let mut lost = 0i64;
        // What each process holds, its slot and its slots aside together: apart, a slot
        // holding less than nothing (tasks taken aside, marked done in the slot) hid as
        // many lost tasks.
        let mut held: Vec<(u32, u64, i64)> = Vec::with_capacity(GETTER_SLOTS);
        let asides = (!self.asides.is_empty()).then(|| self.asides.all(Heap::get()));
        for (at, h) in self.slots.iter().chain(asides.into_iter().flatten()).enumerate() {
            let (pid, start) = (h.pid.load(Ordering::Relaxed), h.start.load(Ordering::Relaxed));
            let base = h.base.load(Ordering::Relaxed) as i64;
            lost = lost.wrapping_add(base);
            // A slot aside that names no process holds nothing past its `base` (freed: `base`
            // the whole count; or never claimed): a count read there was made by a claim
            // since its owner was read, without this lock, a live process's (review94 M1).
            // Since que102 every claim is made under the consumers' lock, which this holds:
            // the skip is kept as a guard (review135 L2).
            if pid == 0 && at >= GETTER_SLOTS {
                continue;
            }
            // A slot that names no process holds nothing, unless a process was killed
            // claiming it (under this lock): then what it counted there is a dead process's.
            let own = h.held().wrapping_sub(base);
            match held.iter_mut().find(|p| pid != 0 && (p.0, p.1) == (pid, start)) {
                Some(p) => p.2 = p.2.wrapping_add(own),
                None => held.push((pid, start, own)),
            }
        }
        // Each process judged once (one `/proc` read), for the count and for the frees.
        let mut dead = vec![false; held.len()];
        for (&(pid, start, own), dead) in held.iter().zip(&mut dead) {
            *dead = !sys::process_alive(pid, start);
            if own < 0 || *dead {
                lost = lost.wrapping_add(own);
            }
        }
        self.free_dead_asides(|pid, start| match held.iter().position(|p| (p.0, p.1) == (pid, start)) {
            // Judged dead above with its `start`: dead for good (a pid reused has another).
            Some(at) if start != 0 => dead[at],
            // Claimed since (alive), or named by its pid alone (killed claiming, or still
            // at it: its pid may be reused meanwhile), judged again (review94 L5).
            _ => !sys::process_alive(pid, start),
        });
        let unfinished = unfinished();
        (self.done() == done).then_some((lost.max(0) as u64, unfinished))
    }

    /// Frees the slots aside of dead processes (`dead(pid, start)`): what they hold stays
    /// counted lost, in `base`; then `start` and `pid` 0, in that order (a claim's
    /// compare-exchange from 0 must not meet the dead one's `start`, which would judge its
    /// claimer dead). A holder killed at any step leaves it to the next, which stores the
    /// same. Caller holds the lock (two at once: the later `start` 0 could undo a claim
    /// between them). Every slot aside, not only those under their blocks' marks: a claimer killed
    /// between its compare-exchange and its raise of the mark leaves one past it, which no
    /// later claim covers (review100 L1).
    fn free_dead_asides(&self, dead: impl Fn(u32, u64) -> bool) {
        for h in self.asides.all(Heap::get()) {
            let pid = h.pid.load(Ordering::Relaxed);
            if pid != 0 && dead(pid, h.start.load(Ordering::Relaxed)) {
                h.base.store(h.held() as u64, Ordering::Relaxed);
                h.start.store(0, Ordering::Relaxed);
                h.pid.store(0, Ordering::Release);
            }
        }
    }
}

/// Why a `join` stops waiting before every task is done.
pub(crate) enum JoinStop {
    /// Nobody is left who could finish the tasks.
    Disconnected,
    /// Every unfinished task was taken by a dead process: this many.
    Lost(u64),
}

/// How many processes at once are counted waiting in `get` (more wait, uncounted: they
/// are then never told `Disconnected` by the count, only when no other handle exists).
const GETTER_SLOTS: usize = 32;

/// One process's count of gets waiting on an empty queue.
#[derive(crate::ShmSafe)]
#[repr(C)]
#[derive(Debug, Default)]
struct Getter {
    pid: AtomicU32,
    count: AtomicU32,
    start: AtomicU64,
}

/// The gets waiting on an empty queue, per process, so that a waiter can tell when every
/// live handle of the queue is waiting in `get` (nobody is left who could put). Entries of
/// dead processes are ignored (their handles are no longer counted either) and reused.
#[derive(crate::ShmSafe)]
#[repr(C)]
#[derive(Debug, Default)]
struct Getters {
    lock: RawMutex,
    /// Bumped when every handle was found waiting: the waiters counted before it end with
    /// `Disconnected`.
    epoch: AtomicU64,
    slots: [Getter; GETTER_SLOTS],
}

impl Getters {
    /// The table's lock for a waiter's periodic check, had within [`GUARD_GRACE`] or not
    /// at all: a process stopped holding it (`SIGSTOP`, a debugger) must not hold up a
    /// timed `get` or `join` (cond50); the check counts itself in, or decides, at its next
    /// slice instead.
    fn lock_for_check(&self) -> Option<RawGuard<'_>> {
        RawGuard::lock_until(&self.lock, Deadline::after(GUARD_GRACE))
    }

    /// Counts one get (or, in the joiners' table, one join) of this process as waiting; its
    /// epoch, or `None` when the table is full or its lock was not had
    /// ([`Getters::lock_for_check`]): uncounted, it is tried again at the next check. (Its
    /// crash point, `queue.waiting.entering`, is in both tables.)
    fn enter(&self) -> Option<u64> {
        let _g = self.lock_for_check()?;
        crash_point!("queue.waiting.entering");
        let me = sys::me();
        let mine = |g: &Getter| g.pid.load(Ordering::Relaxed) == me.pid && g.start.load(Ordering::Relaxed) == me.start;
        let slot = self.slots.iter().find(|g| mine(g)).or_else(|| {
            let free = self.slots.iter().find(|g| {
                let pid = g.pid.load(Ordering::Relaxed);
                pid == 0
                    || g.count.load(Ordering::Relaxed) == 0
                    || !sys::process_alive(pid, g.start.load(Ordering::Relaxed))
            })?;
            free.pid.store(me.pid, Ordering::Relaxed);
            free.start.store(me.start, Ordering::Relaxed);
            free.count.store(0, Ordering::Relaxed);
            Some(free)
        })?;
        slot.count.fetch_add(1, Ordering::Relaxed);
        Some(self.epoch.load(Ordering::Acquire))
    }

    /// Ends what [`Getters::enter`] began. Without the lock, so that a get or a join ends
    /// by its deadline whoever holds it: this process's entry is found by its pid and start
    /// alone, since while its count is above zero nobody else rewrites it (an entry is
    /// taken over only at zero, or from a dead process), and the count drops in one atomic
    /// step. A decision of every handle waiting, made under the lock meanwhile, saw this
    /// get either counted (as if it had left just after, which the lock allowed) or not;
    /// what the leaver does next (a put, a handle dropped) can be taken as done after the
    /// decision, as the lock made it.
    fn leave(&self) {
        let me = sys::me();
        if let Some(g) = self
            .slots
            .iter()
            .find(|g| g.pid.load(Ordering::Relaxed) == me.pid && g.start.load(Ordering::Relaxed) == me.start)
        {
            let _ = g.count.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Gets of `process` counted waiting (caller holds the lock).
    fn waiting(&self, process: sys::ProcId) -> u32 {
        self.slots
            .iter()
            .find(|g| g.pid.load(Ordering::Relaxed) == process.pid && g.start.load(Ordering::Relaxed) == process.start)
            .map_or(0, |g| g.count.load(Ordering::Relaxed))
    }
}

impl ShmObject for QueueState {
    const KIND: u32 = kind::QUEUE;
    // The ring's destroy records each step before its free, and the asides' swaps their head
    // out first: run again after a kill, nothing is freed twice.
    const DESTROY_RESUMES: bool = true;

    fn destroy(&self, heap: &Heap) {
        self.ring.destroy(heap);
        self.tasks.asides.free(heap);
    }
}

/// Watches the other holders of a queue: gone when no other handle exists anywhere.
pub(crate) struct Others<'a>(pub(crate) &'a Shared<QueueState>);

impl Watch for Others<'_> {
    type Gone = ();

    fn check(&self) -> Result<(), ()> {
        if self.0.other_handles() { Ok(()) } else { Err(()) }
    }
}

/// Watches a queue for a `get`: gone when no other handle exists, or when every live
/// handle is waiting in `get` on the empty queue (counted from the first check on, that is
/// once the get has slept a little); shut down when the queue is (finishing a shutdown
/// that its caller left half done).
struct Getting<'a> {
    shared: &'a Shared<QueueState>,
    /// The epoch this get was counted in, once counted.
    counted: Cell<Option<u64>>,
    /// Finishes a shutdown ([`Channel::finish_shutdown`], which knows `T`).
    finish_shutdown: &'a dyn Fn(),
}

impl Getting<'_> {
    /// Stops counting this get as waiting (it takes a message, or returns).
    #[inline]
    fn uncount(&self) {
        if self.counted.take().is_some() {
            self.shared.getters.leave();
        }
    }
}

impl Watch for Getting<'_> {
    type Gone = Stop;

    fn left(&self) -> Option<Stop> {
        let s = self.shared;
        match s.shutdown.load(Ordering::Acquire) {
            flags if flags & SHUT_DOWN != 0 && (flags & IMMEDIATE == 0 || flags & DRAINED != 0) => {
                return Some(Stop::ShutDown);
            }
            flags if flags & IMMEDIATE != 0 || s.ring.refuses_puts() => {
                (self.finish_shutdown)();
                return Some(Stop::ShutDown);
            }
            _ => {}
        }
        let epoch = self.counted.get()?;
        (s.getters.epoch.load(Ordering::Acquire) != epoch).then_some(Stop::Disconnected)
    }

    fn check(&self) -> Result<(), Stop> {
        if let Some(stop) = self.left() {
            return Err(stop);
        }
        if !self.shared.other_handles() {
            return Err(Stop::Disconnected);
        }
        if self.counted.get().is_none() {
            self.counted.set(self.shared.getters.enter());
        }
        let getters = &self.shared.getters;
        // Decided under the consumers' lock, on an empty queue: a waiter that takes a
        // message stops being counted under that lock, before it could put again.
        let all_waiting = self.shared.ring.when_empty(|| {
            let Some(_g) = getters.lock_for_check() else { return false };
            let all = self.shared.all_holders(|process, handles| getters.waiting(process) >= handles);
            if all {
                getters.epoch.fetch_add(1, Ordering::AcqRel);
            }
            all
        });
        if all_waiting == Some(true) {
            self.shared.ring.wake_all();
            return Err(Stop::Disconnected);
        }
        Ok(())
    }
}

impl Drop for Getting<'_> {
    // Inline: every get drops one (a call through the GOT at each take, from the user's
    // crate, for a look at a `Cell`).
    #[inline]
    fn drop(&mut self) {
        self.uncount();
    }
}

/// A typed handle to a queue object: what the public queue types wrap.
pub(crate) struct Channel<T> {
    shared: Shared<QueueState>,
    tag: u32,
    /// Takes and drops what is left, as `T` (set where `T`'s bounds are known, for `Drop`).
    drain: fn(&Shared<QueueState>, u32),
    /// [`Channel::finish_shutdown`] as `T` (set where `T`'s bounds are known, for `join`).
    finish: fn(&Channel<T>),
    /// Counts each item taken in the task table (a `JoinableQueue`'s).
    counts_tasks: bool,
    _messages: PhantomData<fn(T) -> T>,
}

impl<T: Serialize + DeserializeOwned> Channel<T> {
    /// A new queue object.
    pub(crate) fn new(flavor: Flavor, limits: Limits) -> Result<Self, Error> {
        let state = QueueState {
            type_tag: AtomicU64::new(type_tag::<T>(flavor.name())),
            done_elsewhere: AtomicU64::new(0),
            all_done: Notify::new(),
            ring: Ring::new(limits),
            getters: Getters::default(),
            joiners: Getters::default(),
            tasks: Tasks::default(),
            shutdown: AtomicU64::new(0),
            drained_at: AtomicU64::new(0),
        };
        let shared = Shared::new(state)?;
        // Ours alone until this returns; on failure, dropping `shared` frees it all.
        shared.ring.open()?;
        Ok(Self::wrap(shared, flavor))
    }

    fn wrap(shared: Shared<QueueState>, flavor: Flavor) -> Self {
        let counts_tasks = flavor == Flavor::Joinable;
        Self {
            shared,
            tag: message_tag::<T>(),
            drain: drain::<T>,
            finish: Self::finish_shutdown,
            counts_tasks,
            _messages: PhantomData,
        }
    }

    /// A handle just decoded, if it was made for this flavor and type.
    pub(crate) fn from_shared(shared: Shared<QueueState>, flavor: Flavor) -> Result<Self, String> {
        let expected = type_tag::<T>(flavor.name());
        if shared.type_tag.load(Ordering::Relaxed) != expected {
            // Dropped inside its decoding, which keeps it for its next attempt at the same
            // bytes (an untagged enum's next variant, `codec::keep_dropped`).
            return Err(format!(
                "the handle is not a {}<{}> (it was made for another handle or message type)",
                flavor.name(),
                std::any::type_name::<T>()
            ));
        }
        Ok(Self::wrap(shared, flavor))
    }

    /// Puts `value`, waiting until `deadline` for room; gone when no consumer can exist.
    pub(crate) fn put(&self, value: &T, deadline: Deadline) -> Result<(), Failure> {
        if self.shared.ring.refuses_puts() {
            return Err(Failure::ShutDown);
        }
        send_value(&self.shared.ring, value, self.tag, deadline, &Others(&self.shared))
    }

    /// Takes a message, waiting until `deadline`; gone when the queue is empty and no other
    /// handle exists.
    pub(crate) fn get(&self, deadline: Deadline) -> Result<T, Failure> {
        if self.shut_down_immediately() {
            return Err(Failure::ShutDown);
        }
        let finish_shutdown = || self.finish_shutdown();
        let watch = Getting { shared: &self.shared, counted: Cell::new(None), finish_shutdown: &finish_shutdown };
        let ring = &self.shared.ring;
        // One test of the flavor, outside the take: a `Queue`'s take is the ring's plain
        // `get`, never refused, and pays nothing for a `JoinableQueue`'s place (que102:
        // through `get_unless` with the test inside, it took about 15 instructions more).
        if !self.counts_tasks {
            return recv_value_then(ring, self.tag, deadline, &watch, Failure::from, || watch.uncount(), |_| {});
        }
        // Only a JoinableQueue's take writes `after` (an `Option` of four words: a `None`
        // written at every take was stored in words and copied in wider loads).
        let mut after = None;
        let got = recv_value_unless(
            ring,
            self.tag,
            deadline,
            &watch,
            Failure::from,
            || {
                watch.uncount();
                self.shared.tasks.place(|| self.shared.ring.taken().wrapping_add(1))
            },
            |decoded| after = self.shared.count_take(decoded),
        );
        // `after` drops here, in place, after the take (a `drop(after)` moved it first: a
        // copy in wider loads than the stores that wrote it, on every take).
        got
    }

    /// Shuts the queue down (Python 3.13's `Queue.shutdown`): puts are refused from now on
    /// and gets end once the queue is empty; with `immediate`, what is in it is taken out
    /// and dropped at once, each item counted done. Wakes every waiter in every process.
    pub(crate) fn shutdown(&self, immediate: bool) {
        if immediate {
            self.shared.shutdown.fetch_or(IMMEDIATE, Ordering::AcqRel);
        }
        self.finish_shutdown_waiting(true);
    }

    /// Whether the queue was shut down immediately: nothing is to be taken any more (what a
    /// shutdown killed half way left is drained here first).
    pub(crate) fn shut_down_immediately(&self) -> bool {
        if self.shared.shutdown.load(Ordering::Acquire) & IMMEDIATE == 0 {
            return false;
        }
        self.finish_shutdown();
        true
    }

    /// Does what is left of a shutdown: every step is idempotent, so that anyone who finds
    /// a shutdown half done (its caller was killed) finishes it. A get or a join (a timed
    /// one included) does not wait for a take in progress elsewhere: the drain is left to
    /// a later call then.
    pub(crate) fn finish_shutdown(&self) {
        self.finish_shutdown_waiting(false);
    }

    /// [`Channel::finish_shutdown`]; with `patient` (the `shutdown` call itself, untimed),
    /// an immediate shutdown's drain waits for a take in progress in a running process.
    fn finish_shutdown_waiting(&self, patient: bool) {
        let s = &self.shared;
        let flags = s.shutdown.load(Ordering::Acquire);
        if flags & SHUT_DOWN == 0 {
            // From here on no put can commit: a get that finds the queue empty ends. Only
            // the `shutdown` call waits for a put in progress: a get or a join that finds
            // the step undone (its caller was killed) waits for the producers' lock a grace
            // at most, and leaves the rest (the drain too: a put may still commit) to a
            // later call (review126 L3).
            let deadline = if patient { Deadline::NEVER } else { Deadline::now() };
            if !s.ring.refuse_puts(deadline) {
                return;
            }
            crash_point!("queue.shutdown.puts_refused");
            s.shutdown.fetch_or(SHUT_DOWN, Ordering::AcqRel);
            s.ring.wake_all();
        }
        // Drained only once the ring was seen empty under the consumers' lock: a take in
        // progress in another process holds it, and a drain that gave up on it had left
        // the rest in the queue for ever (aud102 M1). A stopped taker is not waited for;
        // the next call that finds the drain undone (a get, a join's check) finishes it.
        if flags & IMMEDIATE != 0 && flags & DRAINED == 0 && self.drain_counting_done(patient) {
            s.shutdown.fetch_or(DRAINED, Ordering::AcqRel);
            s.all_done.notify_all();
            s.ring.wake_all();
        }
    }

    /// Takes every message left and drops it, counting each as a task done; the handles
    /// inside are released (decoded and dropped) and the ring keeps no block of theirs.
    /// Whether the ring was seen empty at the end: false when another take holds the
    /// consumers' lock and is not waited for (its process stopped, or not `patient`), or
    /// this thread does (inside a take of this queue).
    fn drain_counting_done(&self, patient: bool) -> bool {
        let s = &self.shared;
        let decode = s.ring.ever_had_handles();
        loop {
            let taken = s.ring.get(Deadline::now(), &crate::shm::Patient, |bytes, got| {
                // Under the consumers' lock, before the take commits.
                let past = s.ring.taken() + 1;
                // Counted done here, not as a dead consumer's.
                s.tasks.settle(past);
                if s.drained_at.load(Ordering::Acquire) != past {
                    s.done_elsewhere.fetch_add(1, Ordering::AcqRel);
                    s.drained_at.store(past, Ordering::Release);
                }
                crash_point!("queue.shutdown.drain_counted");
                (decode && got == self.tag).then(|| decode_taken::<T>(bytes, true))
            });
            match taken {
                Ok(value) => drop(value.map(settle_decoded)),
                Err(_) => {
                    // Nothing taken: the ring is empty, or another take holds the lock; a
                    // `patient` drain waits for it while it runs, then looks again.
                    let empty = if patient { s.ring.is_empty_unless_stopped() } else { s.ring.when_empty(|| true) };
                    match empty {
                        Some(true) => break,
                        Some(false) => continue,
                        None => {
                            s.ring.free_last_taken();
                            return false;
                        }
                    }
                }
            }
            crash_point!("queue.shutdown.draining");
        }
        s.ring.free_last_taken();
        true
    }
}

impl<T> Channel<T> {
    /// Under the consumers' lock, a take about to read its message: in a `JoinableQueue`'s,
    /// makes sure its task will have a place to be counted before its commit
    /// ([`Tasks::place`]); `Err` refuses the take, its message left in the queue.
    #[inline]
    pub(crate) fn place_take(&self) -> Result<(), HeapFull> {
        if !self.counts_tasks {
            return Ok(());
        }
        self.shared.tasks.place(|| self.shared.ring.taken().wrapping_add(1))
    }

    /// Under the consumers' lock, a take about to commit (its message `decoded` or not):
    /// in a `JoinableQueue`'s, undoes the count of a take killed before its commit and
    /// counts this one, as this process's task, when it decoded (the `get` returns it). A
    /// process without a slot in the task table claims one once the take committed: when
    /// the value returned is dropped.
    #[inline]
    fn count_take(&self, decoded: bool) -> Option<AfterTake<'_>> {
        if !self.counts_tasks {
            return None;
        }
        self.shared.count_take(decoded)
    }

    /// The takes of this queue object this process made without a slot and holds still:
    /// what its slots aside hold ([`Tasks::aside`]: takes less the `task_done`s counted
    /// there; every one naming it, two threads may claim two; 0 if that is below zero).
    pub(crate) fn takes_aside(&self) -> u64 {
        let me = sys::me();
        let aside = (self.shared.tasks.asides_used())
            .filter(|h| h.names(me))
            .fold(0i64, |sum, h| sum.wrapping_add(h.held().wrapping_sub(h.base.load(Ordering::Relaxed) as i64)));
        aside.max(0) as u64
    }

    /// Marks a task done by this process, if fewer than `puts()` are done: the tasks done
    /// then and the puts; `None` when all were done already.
    pub(crate) fn did_task(&self, puts: impl FnOnce() -> u64) -> Option<(u64, u64)> {
        self.shared.tasks.did(&self.shared.done_elsewhere, puts)
    }

    /// Tasks marked done (a snapshot).
    pub(crate) fn tasks_done(&self) -> u64 {
        self.shared.done_elsewhere.load(Ordering::Acquire).wrapping_add(self.shared.tasks.done())
    }

    /// Whether the `join` that counted itself in `counted` (`None` before its first
    /// check) has been told to stop by another joiner's decision.
    pub(crate) fn join_stopped(&self, counted: Option<u64>) -> bool {
        counted.is_some_and(|epoch| self.shared.joiners.epoch.load(Ordering::Acquire) != epoch)
    }

    /// The periodic check of a waiting `join` (`unfinished()`: the items left): stops it
    /// when every unfinished task was taken by a dead process, or when nobody is left who
    /// could finish them: no other handle, or every live handle waiting in `join` (or in
    /// `get` on the empty queue). Counts the join as waiting from its first check on.
    pub(crate) fn join_check(
        &self,
        counted: &Cell<Option<u64>>,
        unfinished: impl FnOnce() -> u64,
    ) -> Result<(), JoinStop> {
        crash_point!("queue.join.checking");
        let s = &self.shared;
        if self.join_stopped(counted.get()) || !s.other_handles() {
            return Err(JoinStop::Disconnected);
        }
        // Under the consumers' lock, on an empty queue: no take is between its count and its
        // commit (its message would still be there), so no count is one to undo. The
        // unfinished count is read there too, after the lost one (see `Tasks::lost_then`).
        if let Some((lost, unfinished)) = s.ring.when_empty(|| s.tasks.lost_then(unfinished)).flatten()
            && unfinished > 0
            && lost >= unfinished
        {
            return Err(JoinStop::Lost(lost));
        }
        if counted.get().is_none() {
            counted.set(s.joiners.enter());
        }
        // With messages waiting, only joiners count (a waiting get is about to take one).
        let decide = |empty: bool| {
            // One after the other: without the getters' lock, the joiners' is not waited for.
            let Some(_g) = s.getters.lock_for_check() else { return false };
            let Some(_j) = s.joiners.lock_for_check() else { return false };
            let all = s.all_holders(|process, handles| {
                let getters = if empty { s.getters.waiting(process) } else { 0 };
                s.joiners.waiting(process) + getters >= handles
            });
            if all {
                s.getters.epoch.fetch_add(1, Ordering::AcqRel);
                s.joiners.epoch.fetch_add(1, Ordering::AcqRel);
            }
            all
        };
        let all = s.ring.when_empty(|| decide(true)).unwrap_or_else(|| decide(false));
        if all {
            s.ring.wake_all();
            s.all_done.notify_all();
            return Err(JoinStop::Disconnected);
        }
        Ok(())
    }

    /// Ends the count of a `join` begun by [`Channel::join_check`].
    pub(crate) fn join_ended(&self, counted: Option<u64>) {
        if counted.is_some() {
            self.shared.joiners.leave();
        }
    }

    /// Whether `shutdown` was called on the queue (by any process).
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shared.ring.refuses_puts()
    }

    pub(crate) fn state(&self) -> &QueueState {
        &self.shared
    }

    pub(crate) fn ring(&self) -> &Ring {
        &self.shared.ring
    }

    pub(crate) fn shared(&self) -> &Shared<QueueState> {
        &self.shared
    }

    /// The maximum number of items, if bounded by items.
    pub(crate) fn maxsize(&self) -> Option<usize> {
        let items = self.ring().limits().items;
        (items != 0).then_some(items as usize)
    }
}

fn drain<T: DeserializeOwned>(shared: &Shared<QueueState>, tag: u32) {
    while recv_value::<T, _>(&shared.ring, tag, Deadline::now(), &crate::shm::Patient).is_ok() {}
}

impl<T> Channel<T> {
    /// Finishes an immediate shutdown whose drain was left undone (its caller found a
    /// stopped process inside a take): for a `join`, where `T`'s bounds are not known.
    pub(crate) fn finish_immediate_shutdown(&self) {
        if self.shared.shutdown.load(Ordering::Acquire) & (IMMEDIATE | DRAINED) == IMMEDIATE {
            (self.finish)(self);
        }
    }
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            tag: self.tag,
            drain: self.drain,
            finish: self.finish,
            counts_tasks: self.counts_tasks,
            _messages: PhantomData,
        }
    }
}

impl<T> Drop for Channel<T> {
    fn drop(&mut self) {
        // The last handle anywhere: messages left unread may hold handles of their own,
        // which must be released (decoded and dropped) before the ring's bytes go. Decided
        // once this process's receive of the queue is final.
        let ring = &self.shared.ring;
        if ring.ever_had_handles() && !ring.is_empty() {
            let (drain, tag) = (self.drain, self.tag);
            self.shared.if_last(move |shared| drain(shared, tag));
        }
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel").field("offset", &self.shared.offset()).field("len", &self.ring().len()).finish()
    }
}

impl<T> Serialize for Channel<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shared.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use crate::codec;
    use crate::shm::{Deadline, Patient};
    use crate::{Connection, JoinableQueue, Pipe, Queue, SimpleQueue};

    use super::{Held, Tasks};
    use crate::shm::crash::interleaving;
    use crate::shm::{GUARD_GRACE, Heap};

    /// A slot aside of `tasks` claimed for `pid`, `start` (the chain grown when none is
    /// free). Caller holds `heap_test_lock` (the chain's blocks come from the family heap).
    fn aside_claimed_for(tasks: &'static Tasks, pid: u32, start: u64) -> &'static Held {
        let heap = Heap::get();
        loop {
            let seen = tasks.asides.head();
            let claimed = tasks.asides.claim(heap, |h| {
                h.pid
                    .compare_exchange(0, pid, std::sync::atomic::Ordering::AcqRel, std::sync::atomic::Ordering::Relaxed)
                    .is_ok()
            });
            if let Some(h) = claimed {
                h.start.store(start, std::sync::atomic::Ordering::Release);
                return h;
            }
            assert!(tasks.asides.grow(heap, seen, GUARD_GRACE), "the chain grown");
        }
    }

    /// The slots aside of `tasks`, every one (the chain's blocks).
    fn asides(tasks: &'static Tasks) -> Vec<&'static Held> {
        tasks.asides.all(Heap::get()).collect()
    }

    /// Frees the chain of slots aside of a test's table (leaked in this process's memory,
    /// its blocks in the family heap), and asserts that the family heap holds again what
    /// it held `before` the test made it. Caller holds `heap_test_lock` since then. Until
    /// que103 each such test left a 4096-byte block of the test binary's family heap
    /// (review113 L5).
    fn give_back_the_chain(tasks: &'static Tasks, before: u64) {
        let heap = Heap::get();
        tasks.asides.free(heap);
        assert_eq!(heap.in_use(), before, "the test's table gave its blocks back");
    }

    /// review138 L1 (its scratch S1): a first take in a full heap (growth refused on this
    /// thread), every slot but the last a live process's, the last a dead one's whose last
    /// take, noted under the lock, committed long ago (`take_at` 1, this take's `past` 2),
    /// claims that slot. Before, the noted slot was skipped whatever its take's fate, and
    /// the take was refused `HeapFull` with the lock free and a dead process's slot free.
    #[test]
    fn a_first_take_in_a_full_heap_claims_the_slot_of_a_noted_take_that_committed() {
        use std::sync::atomic::Ordering::{Relaxed, Release};
        let _serial = crate::shm::heap_test_lock();
        let tasks: &'static Tasks = Box::leak(Box::default());
        let parent = std::os::unix::process::parent_id();
        let start = crate::sys::process_start(parent).expect("the parent's start");
        let mut child = std::process::Command::new("true").spawn().expect("a child to die");
        let dead = child.id();
        child.wait().expect("the child's end");
        for h in &tasks.slots[..super::GETTER_SLOTS - 1] {
            h.pid.store(parent, Relaxed);
            h.start.store(start, Relaxed);
        }
        let last = &tasks.slots[super::GETTER_SLOTS - 1];
        last.pid.store(dead, Relaxed);
        last.start.store(1, Relaxed);
        last.taken.store(1, Relaxed);
        last.done.store(1, Relaxed);
        tasks.used.store(super::GETTER_SLOTS as u32, Release);
        tasks.take_slot.store(super::GETTER_SLOTS as u64, Relaxed);
        tasks.take_at.store(1, Relaxed);
        crate::shm::refuse_growth();
        let placed = tasks.place(|| 2);
        println!("a first take, the only free slot the noted one (committed): {placed:?}");
        assert!(placed.is_ok(), "refused with a dead process's slot free and the lock free");
        assert!(last.names(crate::sys::me()), "the dead one's slot claimed");
    }

    /// review138 L3 (its scratch S2): a first take in a full heap claims a dead process's
    /// slot that holds one task the dead took and never did: `base` 1; the take counted
    /// there, done, and `join`'s count still says one lost of one unfinished.
    #[test]
    fn a_claim_for_take_keeps_the_dead_ones_task_lost() {
        use std::sync::atomic::Ordering::{Relaxed, Release};
        let _serial = crate::shm::heap_test_lock();
        let tasks: &'static Tasks = Box::leak(Box::default());
        let mut child = std::process::Command::new("true").spawn().expect("a child to die");
        let dead = child.id();
        child.wait().expect("the child's end");
        let first = &tasks.slots[0];
        first.pid.store(dead, Relaxed);
        first.start.store(1, Relaxed);
        first.taken.store(1, Relaxed);
        tasks.used.store(1, Release);
        crate::shm::refuse_growth();
        assert!(tasks.place(|| 2).is_ok(), "placed");
        assert!(first.names(crate::sys::me()), "the dead one's slot claimed");
        assert_eq!(first.base.load(Relaxed), 1, "base: what the dead held");
        drop(tasks.count_take(2));
        assert_eq!(first.taken.load(Relaxed), 2);
        let elsewhere = std::sync::atomic::AtomicU64::new(0);
        assert!(tasks.did(&elsewhere, || 2).is_some());
        let lost = tasks.lost_then(|| 1);
        println!("lost, unfinished: {lost:?}");
        assert_eq!(lost, Some((1, 1)));
    }

    /// A task table in this process's memory where this process has a slot (its first
    /// take counted, committed).
    fn table_with_own_slot() -> &'static Tasks {
        let tasks: &'static Tasks = Box::leak(Box::default());
        drop(tasks.count_take(1));
        assert!(tasks.own_slot().is_some(), "the first take claimed a slot");
        tasks
    }

    /// review86 L1: two `task_done`s counted without the lock (its holder stopped), each
    /// checked before the other counted: neither saw the last task done, nobody woke `join`
    /// (late by up to a slice of its wait).
    #[test]
    fn of_two_task_dones_counted_lock_free_at_once_one_sees_every_task_done() {
        let tasks = table_with_own_slot();
        let elsewhere: &'static std::sync::atomic::AtomicU64 = Box::leak(Box::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let moves = move |at: &str| {
            if at == "checked" {
                let _ = tx.send(tasks.did_unlocked(elsewhere, || 2));
            }
        };
        let outer = interleaving(moves, || tasks.did_unlocked(elsewhere, || 2));
        let inner = rx.try_recv().expect("the other task_done ran");
        let all_done = |said: Option<(u64, u64)>| said.is_some_and(|(done, put)| done >= put);
        assert!(all_done(outer) || all_done(inner), "said {outer:?}, then {inner:?}");
    }

    /// A slot aside of a dead process is freed and claimed again, what the dead one held
    /// still counted lost (in `base`), and what its new process holds not (que71).
    #[test]
    fn a_slot_aside_of_a_dead_process_is_freed_keeping_its_tasks_lost() {
        let _serial = crate::shm::heap_test_lock();
        let before = Heap::get().in_use();
        let tasks: &'static Tasks = Box::leak(Box::default());
        let mut child = std::process::Command::new("true").spawn().expect("a child to die");
        let dead = child.id();
        child.wait().expect("the child's end");
        let first = aside_claimed_for(tasks, dead, 1);
        first.taken_free.store(1, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(tasks.lost_then(|| 2), Some((1, 2)), "the dead one's take, lost");
        let claimed = tasks.aside(true, true).expect("a slot aside");
        assert!(std::ptr::eq(claimed, first), "the dead one's slot aside, freed and claimed again");
        claimed.taken_free.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        assert_eq!(tasks.lost_then(|| 2), Some((1, 2)), "the dead one's take still lost, this process's not");
        give_back_the_chain(tasks, before);
    }

    /// A table where every slot and every slot aside (one block of them, the last one
    /// past its block's mark) names a live process other than this one (the parent), and
    /// the chain of slots aside cannot grow on this thread (as with a full heap), so that
    /// this process's takes without a slot find no place (until que101 they were
    /// remembered; since, `Tasks::place` refuses them). Caller holds `heap_test_lock`.
    fn table_full_of_the_parent() -> &'static Tasks {
        let tasks: &'static Tasks = Box::leak(Box::default());
        let parent = std::os::unix::process::parent_id();
        let start = crate::sys::process_start(parent).expect("the parent's start");
        for h in &tasks.slots {
            h.pid.store(parent, std::sync::atomic::Ordering::Relaxed);
            h.start.store(start, std::sync::atomic::Ordering::Relaxed);
        }
        tasks.used.store(tasks.slots.len() as u32, std::sync::atomic::Ordering::Release);
        for _ in 1..super::ASIDES_PER_BLOCK {
            aside_claimed_for(tasks, parent, start);
        }
        let last = asides(tasks)[super::ASIDES_PER_BLOCK - 1];
        last.pid.store(parent, std::sync::atomic::Ordering::Relaxed);
        last.start.store(start, std::sync::atomic::Ordering::Relaxed);
        crate::shm::refuse_growth();
        tasks
    }

    /// review94 L1: slots aside of dead processes were freed only by a `join` check, so a
    /// queue nobody joined, its slot aside holders dead, had every later slot-less taker
    /// remember its takes in its memory (never told lost if it dies).
    #[test]
    fn a_take_without_a_slot_frees_the_slots_aside_of_dead_processes() {
        use std::sync::atomic::Ordering::Relaxed;
        let _serial = crate::shm::heap_test_lock();
        let before = Heap::get().in_use();
        let tasks = table_full_of_the_parent();
        let mut child = std::process::Command::new("true").spawn().expect("a child to die");
        let dead = child.id();
        child.wait().expect("the child's end");
        for h in asides(tasks) {
            h.pid.store(dead, Relaxed);
            h.start.store(1, Relaxed);
        }
        drop(tasks.count_take(1));
        let aside = tasks.aside(false, false).expect("counted in a slot aside freed for it");
        assert_eq!(aside.held() - aside.base.load(Relaxed) as i64, 1, "the take, counted there");
        give_back_the_chain(tasks, before);
    }

    /// review100 L1: a claimer killed between its compare-exchange and its raise of the
    /// high-water mark left its slot aside past the mark, named by a dead pid; the frees
    /// walked only the slots aside under the mark, so it was never freed (one of the few
    /// lost for the queue's life, and each slot-less locked take judged the others for
    /// nothing).
    #[test]
    fn a_slot_aside_whose_claimer_died_before_raising_the_mark_is_freed() {
        use std::sync::atomic::Ordering::Relaxed;
        let _serial = crate::shm::heap_test_lock();
        let before = Heap::get().in_use();
        let tasks = table_full_of_the_parent();
        let mut child = std::process::Command::new("true").spawn().expect("a child to die");
        let dead = child.id();
        child.wait().expect("the child's end");
        // The last one past its block's mark (see `table_full_of_the_parent`).
        let last = asides(tasks)[super::ASIDES_PER_BLOCK - 1];
        last.pid.store(dead, Relaxed);
        last.start.store(0, Relaxed);
        assert!(tasks.lost_then(|| 0).is_some(), "checked");
        assert_eq!(last.pid.load(Relaxed), 0, "freed by a join check");
        last.pid.store(dead, Relaxed);
        drop(tasks.count_take(1));
        let aside = tasks.aside(false, false).expect("counted in a slot aside");
        assert!(std::ptr::eq(aside, last), "counted in the slot aside freed for it");
        give_back_the_chain(tasks, before);
    }

    /// review94 M3: a queue object (of every flavour) fits a 4096-byte block of the family
    /// heap, the class it had before the slots aside; their 32 made it 5120 bytes, so 8192.
    #[test]
    fn a_queue_object_fits_a_page() {
        let size = crate::shm::Shared::<super::QueueState>::tail_start();
        assert!(size <= 4096, "a queue object takes {size} bytes");
    }

    #[test]
    fn a_handle_decoded_as_another_type_is_an_error() {
        let _serial = crate::shm::heap_test_lock();
        let q: Queue<u32> = Queue::new().unwrap();
        // Another message type.
        let msg = codec::encode(&q).unwrap();
        let e = codec::decode::<Queue<String>>(&msg.bytes).unwrap_err();
        assert!(e.to_string().contains("not a Queue<alloc::string::String>"), "{e}");
        msg.sent(); // its handle was received (then dropped) by the failed decode
        // Another queue type over the same kind of object.
        let msg = codec::encode(&q).unwrap();
        assert!(codec::decode::<SimpleQueue<u32>>(&msg.bytes).is_err());
        msg.sent();
        let msg = codec::encode(&q).unwrap();
        assert!(codec::decode::<JoinableQueue<u32>>(&msg.bytes).is_err());
        msg.sent();
        // Another kind of object altogether: refused before it is received.
        let msg = codec::encode(&q).unwrap();
        let e = codec::decode::<Connection<u32>>(&msg.bytes).unwrap_err();
        assert!(e.to_string().contains("kind"), "{e}");
        drop(msg);
        // The right type.
        let msg = codec::encode(&q).unwrap();
        let back: Queue<u32> = codec::decode(&msg.bytes).unwrap();
        msg.sent();
        back.put(5).unwrap();
        assert_eq!(q.get().unwrap(), 5);

        let (a, _b) = Pipe::<u8>::new().unwrap();
        let msg = codec::encode(&a).unwrap();
        let e = codec::decode::<Connection<i8>>(&msg.bytes).unwrap_err();
        assert!(e.to_string().contains("not a Connection<i8>"), "{e}");
        msg.sent();
    }

    #[test]
    fn plain_messages_and_the_general_path_read_each_other() {
        let _serial = crate::shm::heap_test_lock();
        let q: Queue<u64> = Queue::new().unwrap();
        let ring = q.channel().unwrap().ring();
        let tag = super::message_tag::<u64>();
        let put = |bytes: &[u8]| ring.put_bytes(bytes, tag, Deadline::NEVER, &Patient).unwrap();
        for x in [0, 1, 127, 128, 300, u64::MAX] {
            // Written by the general path, read by the plain one.
            let encoded = codec::encode(&x).unwrap();
            put(&encoded.bytes);
            encoded.sent();
            assert_eq!(q.get().unwrap(), x);
            // Written by the plain path, read by the general one.
            q.put(x).unwrap();
            let (bytes, got) = ring.get(Deadline::now(), &Patient, |bytes, got| (bytes.to_vec(), got)).unwrap();
            assert_eq!(got, tag);
            assert_eq!(codec::decode::<u64>(&bytes).unwrap(), x);
            // A self-described message, which the plain path leaves to the general one.
            let mut kept = Vec::new();
            codec::encode_kept(&x, &mut kept).unwrap();
            put(&kept);
            assert_eq!(q.get().unwrap(), x);
        }
        // Bytes left over after the value: the general path's error, the message taken.
        put(&[0, 5, 5]);
        let e = q.get().unwrap_err();
        assert!(e.to_string().contains("left over"), "{e}");
        assert!(q.is_empty());
    }
}
