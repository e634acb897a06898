//! Carriers and receipts: how a receiver's take of each handle of a message, and the undo
//! of the handles it did not take, stay exact whoever is killed where.
//!
//! A child's argument and a pool's chunk are messages whose receiver may die part-way
//! through taking their handles, after the message itself is gone: somebody else must then
//! give back what it did not take. Their handles travel in a *carrier*: before the message
//! is sent, each handle's in-flight count moves into the carrier's own entry in its table
//! (`Holders::undo`, `codec::Undoing::Carry`; an entry whose pid is no process's and whose
//! `start` names the carrier). The receiver (a decoding inside `codec::receipting`, told
//! the carrier by [`carried`]) takes a handle under the table's lock: its own entry counts
//! it, then the carrier's stops counting it (`Holders::receive`, never pending). The undo
//! lets go of the carrier's entries, whole ([`Undoing::Uncarry`]), once the receiver is
//! done or dead. Every step touches only entries of the table, each let go of by its own
//! holder's end (the receiver's by its reaper, the carrier's by its undo): a kill anywhere
//! leaves a handle counted once or twice by the dead, never by nobody, and never takes a
//! count that another message carries in flight (which the undo of a receipt-less take
//! did, until token31b: the take-to-receipt residual).
//!
//! A child's argument's carrier is its *token* ([`ArgsToken`], an object of kind `ARGS`,
//! its tail the argument's undo: per handle its key and the distance of its undo function
//! in the executable), which travels as one count in flight: the parent makes it, carries
//! the argument's handles in it, lists it as a token (a slot of its list of holds, `holds`,
//! not an entry of its own), sends it and lets go of its handle. The child takes the count
//! before it decodes anything of its argument ([`take_token`]) and keeps it until it ends:
//! its entry is then pruned by its reaper as any dead holder's (whether it was killed or
//! exited), which first lets go of what the child did not take ([`ArgsState::undo`]),
//! its table pinned and the dead child's entry still there, so that a reaper killed in the
//! undo leaves the rest to the next reap of the same slot (`object::let_go_of_dead`). The child never frees it itself: a kill between the table's release
//! and the block's free would leak it. The parent's side takes the count back
//! ([`ArgsToken::give_back`]) at the child's reap and on a failed start, and the parent's
//! reaper does (`holds`, through the token's slot) when the parent died first: a count
//! still in flight means the child never took it, and the free lets go of every handle;
//! the child's take then fails and it decodes and runs nothing. One compare-and-swap on the
//! token's word decides who owns it, whoever is killed where.
//!
//! A pool's chunk's carrier is a [`Carrier`], kept by the pool with the chunk's undo
//! (`pool::engine::ChunkUndo`), named by a small block of the heap until it has let go.
//!
//! A heap too full for a token or a carrier keeps the older protocols. A child sends a
//! *receipt* for each handle whose in-flight count it takes on its copy of its boot socket
//! ([`on_socket`]: a frame of its own, [`from_frame`]) right before the take, and the parent
//! keeps the undo in its memory and runs it for the handles without a receipt at the reap
//! (the kernel keeps what a dead child sent). A send may wait for the parent to read (a
//! socket buffer holds some hundreds of receipts; a parent waiting for its child reads
//! its socket), before the take's pin. A kill between the receipt and the take leaks the
//! object (its count in flight for nobody: the residual, there only); sent after the take,
//! a kill between had the parent's undo take the count of another message carrying the
//! object, and free it under that message (tok40). A handle the child discards (decoded as
//! another type) keeps its count in flight, for that undo. A parent killed before its
//! child took its argument still leaks the argument's handles (the undo died with it). A
//! pool's chunk without a carrier travels as any message: a worker killed before it took
//! its handles leaks them.
//!
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use super::ShmSafe;
use super::crash::{crash_point, fail_point};
use super::heap::Heap;
use super::holders::{self, LetGo};
use super::holds::Listed;
use super::object::{Shared, ShmObject, kind};
use crate::codec::{self, Undoing};
use crate::sys;

/// Which handle a receipt or an undo is about: `[object offset, generation, table]`, the
/// table 0 for the object's own, `1 + side` for a side's.
pub(crate) type Key = [u64; 3];

/// Words of an undo entry in a token's block ([`ArgsToken`]): the key, then the distance
/// in the executable of the function that undoes it (`sys::function_offset`).
const UNDO: usize = 4;
/// The head of a token's block: the number of its undo entries.
const TOKEN_HEAD: usize = 1;

/// What a receive of a child's argument or a pool's chunk does besides its take: its
/// `block` names a carrier ([`carried`]) or a socket to send a receipt on ([`on_socket`]);
/// `key` names the handle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Receipt {
    pub(crate) block: u64,
    pub(crate) key: Key,
}

/// A [`Receipt::block`] that names a socket (its descriptor in the low bits), not a block:
/// no heap offset has this bit.
const SOCKET: u64 = 1 << 63;

/// A [`Receipt::block`] that names a carrier (its id in the low bits: a token's tail offset,
/// [`ArgsToken::block`]), not a block: the message's handles are counted in its carrier's
/// entries, and a receive moves one into its own entry (`Holders::receive`), no receipt
/// written. No heap offset has this bit.
const CARRIER: u64 = 1 << 62;

/// What a receive names the carrier `id` by (its [`Receipt::block`]).
pub(crate) fn carried(id: u64) -> u64 {
    CARRIER | id
}

impl Receipt {
    /// The carrier whose entry counts the handle, if the message has one (see [`CARRIER`]).
    pub(crate) fn carrier(&self) -> Option<u64> {
        (self.block & (CARRIER | SOCKET) == CARRIER).then_some(self.block & !CARRIER)
    }
}

/// The first byte of a receipt's frame on a boot socket: an encoded outcome starts with its
/// codec's tag, a small number.
const FRAME_TAG: u8 = 0xff;
/// The first byte of the frame that names the blob of a child's outcome
/// ([`send_outcome_blob`]).
const OUTCOME_BLOB_TAG: u8 = 0xfe;

/// Where a child writes its receipts when its parent had no room for a block of them: its
/// copy of its boot socket `fd`, open for the whole of its argument's decoding.
pub(crate) fn on_socket(fd: RawFd) -> u64 {
    SOCKET | u64::from(fd as u32)
}

/// The key of the receipt `frame` (a frame read from a child's boot socket), if it is one.
pub(crate) fn from_frame(frame: &[u8]) -> Option<Key> {
    key_in_frame(FRAME_TAG, frame)
}

/// The key of the outcome's blob that `frame` (read from a child's boot socket) names
/// ([`send_outcome_blob`]), if it is such a frame.
pub(crate) fn outcome_blob_from_frame(frame: &[u8]) -> Option<Key> {
    key_in_frame(OUTCOME_BLOB_TAG, frame)
}

/// Sends the key of the blob of the child's outcome (`Blob::key`) on its boot socket `sock`,
/// before the outcome's encoding counts the blob in flight: a child killed before its
/// outcome went whole leaves its parent the key, and the parent gives the blob back once it
/// has reaped it (`Blob::give_back_sent_by_dead`).
/// Returns whether it was sent (a parent gone cannot read the outcome either).
pub(crate) fn send_outcome_blob(sock: BorrowedFd<'_>, key: Key) -> bool {
    crate::sys::send_all(sock, &frame(OUTCOME_BLOB_TAG, key), &[]).is_ok()
}

/// The key in `frame`, if it is a frame of `tag` (a receipt's, or an outcome blob's).
fn key_in_frame(tag: u8, frame: &[u8]) -> Option<Key> {
    let (&first, key) = frame.split_first()?;
    if first != tag || key.len() != 24 {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(key[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    Some([word(0), word(1), word(2)])
}

/// `key` as a frame of a boot socket (its length first), tagged `tag`.
fn frame(tag: u8, key: Key) -> [u8; 4 + 1 + 24] {
    let mut frame = [0u8; 4 + 1 + 24];
    frame[..4].copy_from_slice(&25u32.to_le_bytes());
    frame[4] = tag;
    for (i, word) in key.iter().enumerate() {
        frame[5 + 8 * i..13 + 8 * i].copy_from_slice(&word.to_le_bytes());
    }
    frame
}

/// Sends `key` as a receipt frame on the socket `fd` (see [`on_socket`]).
fn send(fd: RawFd, key: Key) {
    let frame = frame(FRAME_TAG, key);
    // SAFETY: `fd` is the child's copy of its boot socket, which its runner keeps open for
    // the whole of `codec::receipting`, the only time a receipt is written.
    let sock = unsafe { BorrowedFd::borrow_raw(fd) };
    // A parent gone cannot use the receipt (nor give anything back).
    let _ = crate::sys::send_all(sock, &frame, &[]);
}

fn words(heap: &Heap, off: u64, len: usize) -> &[AtomicU64] {
    // Checked here, not only by the callers: an offset in the heap must never become a
    // slice outside the mapping, or a misaligned one.
    assert!(heap.contains(off, len * 8), "a token's block outside the family heap");
    // SAFETY: `off..off + 8 * len` is inside the heap's mapping and 64-byte aligned
    // (checked above); it is the tail of a token (`ArgsToken::new`) or of a result's undo
    // (`result_undo`), freed only with its object: read by its maker, by its `destroy`, and
    // (a result's undo) by the parent under a look that keeps it allocated; the block is
    // atomics only, valid for any bytes.
    unsafe { std::slice::from_raw_parts(heap.ptr(off).cast::<AtomicU64>(), len) }
}

/// Writes `receipt` (the child, its argument's decoding thread, right before it takes the
/// handle's count): sends it on the socket it names ([`on_socket`]). A carried receive
/// writes none.
pub(crate) fn write(receipt: Receipt) {
    if receipt.block & SOCKET != 0 {
        send((receipt.block & !SOCKET) as RawFd, receipt.key);
    }
}

/// A child's argument's token (HACKING "Pins"): an object of the family heap that carries
/// the argument's handles. Its tail is the argument's undo (per handle its key and the
/// distance of its undo function in the executable), and its tail's offset is its
/// *carrier* id: before it is sent, each handle's in-flight count moves into the token's
/// own entry in the handle's table (`Holders::undo`, [`Undoing::Carry`]), which the child's
/// receive moves into its own entry under the table's lock, and whichever process frees
/// the token lets go of what is left ([`ShmObject::destroy`], [`Undoing::Uncarry`]). The
/// take and its record are then one step as seen by the undo: it lets go of an entry that
/// names this message alone, never takes a count another message may carry.
///
/// It travels as one count in flight: the parent makes it, lists it as a *token* in its
/// list of holds (`holds`, not in its registry: it keeps no entry), sends it and lets go
/// of its own handle. The child takes the count first thing ([`take_token`]), before its
/// argument is decoded, and keeps it until it ends: its death (killed or exited) is a
/// holder's prune (its reaper's), which frees the token and lets go of what it did not
/// take. The parent's side takes the count back
/// ([`ArgsToken::give_back`]) at the child's reap, on a failed start, or, the parent dead,
/// its reaper (`holds`): a count still in flight means the child never took it, the object
/// is freed and every handle let go of; the child's take then fails and it runs nothing.
/// One compare-and-swap on the table's word decides which side owns it.
#[derive(Debug)]
pub(crate) struct ArgsState {
    /// The offset of the block (this object's tail), 0 until the token is listed: a token
    /// freed before that (its maker killed, or its carry given up) lets go of nothing.
    block: AtomicU64,
    /// The pid of the child that took it (0: none yet): whose pending receives (reservations)
    /// the undo gives up first, as `codec::give_back_from_dead` does.
    child: AtomicU64,
}

// SAFETY: two atomics, valid for any bytes.
unsafe impl ShmSafe for ArgsState {}

impl ShmObject for ArgsState {
    const KIND: u32 = kind::ARGS;
    // Its undo is idempotent, step by step (see `ArgsState::undo`).
    const DESTROY_RESUMES: bool = true;

    /// Lets go of what the child did not take, if nobody did yet. A token taken back (the
    /// child never took it), or held by its dead child alone, ran its undo pinned, before
    /// its table was released (`object::let_go_of_dead`, tok40), so that a reaper killed in
    /// it leaves the rest to the next; it runs here only for a token freed with its undo
    /// not yet run: a child's failed take that freed it after a dead taker-back's pin (the
    /// residual HACKING's token paragraph describes), a token kept by a live fork-pin
    /// holder until that holder's release, or an object freed the usual way.
    fn destroy(&self, heap: &Heap) {
        self.undo(heap);
    }
}

impl ArgsState {
    /// Lets go of what the entries of this token (its carrier) still count, then marks the
    /// undo done (`block` 0): run once nobody can take the token any more (its count taken
    /// back, or its holders dead), by whoever may free it, and any number of times, each
    /// step idempotent (see [`let_go`]); the object stays allocated meanwhile (released by
    /// the caller, or pinned by it, `object::let_go_of_dead`).
    pub(super) fn undo(&self, heap: &Heap) {
        let block = self.block.load(Ordering::Acquire);
        if block == 0 || !heap.contains(block, TOKEN_HEAD * 8) {
            return;
        }
        let slots = words(heap, block, TOKEN_HEAD)[0].load(Ordering::Relaxed) as usize;
        let w = words(heap, block, TOKEN_HEAD + UNDO * slots);
        let child = self.child.load(Ordering::Relaxed) as u32;
        let undo = (0..slots).filter_map(|i| {
            let at = TOKEN_HEAD + UNDO * i;
            let gone = w[at + 3].load(Ordering::Relaxed);
            let key: Key = [0, 1, 2].map(|k| w[at + k].load(Ordering::Relaxed));
            // SAFETY: `gone` was written by `ArgsToken::new` from `sys::function_offset` of
            // an undo (an encoding's, `codec::on_abort`) in a process of this family, which
            // runs this executable.
            (gone != 0).then(|| (key, unsafe { sys::function_at::<codec::UndoFn>(gone) }))
        });
        let_go(block, (child != 0).then_some(child), undo);
        self.block.store(0, Ordering::Release);
    }
}

/// Moves the in-flight count of each handle of `undo` (an encoding's undo entries) into
/// the entry of the carrier `carrier` in its table ([`Undoing::Carry`]). `false`: a table
/// had no room for the carrier's entry, and every count is back in flight.
fn carry(carrier: u64, undo: &[(Key, codec::UndoFn)]) -> bool {
    let carried =
        codec::undoing_as(Undoing::Carry(carrier), None, || undo.iter().take_while(|(key, f)| f(*key)).count());
    if carried < undo.len() {
        restore(carrier, &undo[..carried]);
    }
    carried == undo.len()
}

/// Moves what the carrier's entries count back into flight ([`Undoing::Restore`]): it was
/// not sent after all. A handle's restore is `kept` while the carrier's entry of its object
/// (its own handle's) is still there: up to that entry's first restore, which comes after
/// its sides' (an encoding's undo runs a side's before its object's). A side restored
/// without it (a carry that found no room, or no object, for its object's own handle; or
/// the object met again in the message once that entry was restored) has only anonymous
/// counts in flight to keep the object, and needs a look.
fn restore(carrier: u64, undo: &[(Key, codec::UndoFn)]) {
    // Where each object's own handle is first restored.
    let mut own = std::collections::HashMap::new();
    for (i, (key, _)) in undo.iter().enumerate().rev() {
        if key[2] == 0 {
            own.insert(*key, i);
        }
    }
    for (i, (key, f)) in undo.iter().enumerate() {
        let kept = own.get(&[key[0], key[1], 0]).is_some_and(|&at| at >= i);
        codec::undoing_as(Undoing::Restore { carrier, kept }, None, || f(*key));
    }
}

/// Lets go of what the entries of the carrier `carrier` still count, in the tables the
/// undo entries `undo` name ([`Undoing::Uncarry`]): its receiver (`dead`, if it died
/// receiving) did not take them, and nobody will. Each entry is let go of whole at its
/// first handle, so a key met again is passed over; the sides' first, while the objects'
/// own entries still keep them (as an encoding's undo runs a side's before its object's).
fn let_go(carrier: u64, dead: Option<u32>, undo: impl Iterator<Item = (Key, codec::UndoFn)>) {
    let (sides, own): (Vec<_>, Vec<_>) = undo.partition(|(key, _)| key[2] != 0);
    let mut seen = std::collections::HashSet::new();
    codec::undoing_as(Undoing::Uncarry(carrier), dead, || {
        for (key, f) in sides.into_iter().chain(own) {
            if seen.insert(key) {
                f(key);
                crash_point!("receipts.carrier.let_go");
            }
        }
    });
}

/// A carrier that its sender keeps in its own memory (a pool's chunk,
/// `pool::engine::ChunkUndo`), as a child's argument's token is one in the family heap (see
/// [`ArgsToken`]): the message's handles counted in its entries, named by a small block of
/// the heap (its offset), held until every entry is let go of ([`Carrier::let_go`]). One
/// dropped without that (a copy made by fork: the parent's) leaves both: a leak at worst.
#[derive(Debug)]
pub(crate) struct Carrier {
    id: u64,
}

/// The block that names a [`Carrier`]: the heap's least.
const CARRIER_BLOCK: usize = 64;

impl Carrier {
    /// A carrier of the handles of `encoded`, their counts moved into its entries. `None`
    /// when the heap has no room (every count stays in flight).
    pub(crate) fn carry(encoded: &codec::Encoded) -> Option<Self> {
        let heap = Heap::get();
        let id = heap.alloc_zeroed(CARRIER_BLOCK).ok()?;
        let undo: Vec<(Key, codec::UndoFn)> = encoded.undo_entries().collect();
        if !carry(id, &undo) {
            heap.free(id, CARRIER_BLOCK);
            return None;
        }
        Some(Self { id })
    }

    /// What the receiver's receives name it by (`codec::receipting`).
    pub(crate) fn receipts(&self) -> u64 {
        carried(self.id)
    }

    /// Lets go of what its entries still count, in the tables `encoded` (what it carried)
    /// names: its receiver took the rest, and is done or dead (`dead`, whose pending
    /// receives of those objects are given up first). Then its name is free.
    pub(crate) fn let_go(self, encoded: &codec::Encoded, dead: Option<u32>) {
        let_go(self.id, dead, encoded.undo_entries());
        Heap::get().free(self.id, CARRIER_BLOCK);
    }
}

/// The parent's side of a child's argument token ([`ArgsState`]): what names it, and its
/// slot in the parent's list of holds. Dropped, it takes the token back
/// ([`ArgsToken::give_back`]); [`ArgsToken::leave`] leaves it to the child and to the
/// parent's reaper.
#[derive(Debug)]
pub(crate) struct ArgsToken {
    off: u64,
    generation: u64,
    seal: u64,
    block: u64,
    listed: Option<Listed>,
    /// The process that made it: a copy in a fork child takes nothing back.
    maker: u32,
}

fn token_let_go(off: u64, generation: u64) -> LetGo {
    LetGo { object: off, generation, side: None, gone: |off, _| Shared::<ArgsState>::release_at(off), token: true }
}

/// The bytes a token asks the heap for, for an argument of `handles` handles (its block's
/// size class is the heap's for that length): for the tests of a token in a full heap.
pub(crate) fn token_bytes(handles: usize) -> usize {
    Shared::<ArgsState>::tail_start() + token_words(handles) * 8
}

/// Words of a token's tail for `handles` handles: its head and an undo entry per handle.
fn token_words(handles: usize) -> usize {
    TOKEN_HEAD + UNDO * handles
}

impl ArgsToken {
    /// The token of the argument `encoded` (which holds handles), sent, its handles carried
    /// by it: the caller then forgets the encoding's undo (`Encoded::sent`), which the token
    /// holds now. `None` when the heap has no room for it, its listing or a carrier's
    /// entry, or an undo is not in the executable: nothing was sent, every handle is in
    /// flight again, and the encoding's undo is still the caller's.
    pub(crate) fn new(encoded: &codec::Encoded) -> Option<Self> {
        let heap = Heap::get();
        let undo: Vec<(Key, codec::UndoFn)> = encoded.undo_entries().collect();
        let offsets: Vec<u64> = undo.iter().map(|(_, f)| sys::function_offset(*f)).collect::<Option<_>>()?;
        let slots = undo.len();
        let len = token_words(slots);
        let token =
            Shared::with_tail(ArgsState { block: AtomicU64::new(0), child: AtomicU64::new(0) }, len * 8).ok()?;
        let block = token.tail_offset();
        let w = words(heap, block, len);
        w[0].store(slots as u64, Ordering::Relaxed);
        for (i, ((key, _), at)) in undo.iter().zip(&offsets).enumerate() {
            let base = TOKEN_HEAD + UNDO * i;
            for (k, word) in key.iter().enumerate() {
                w[base + k].store(*word, Ordering::Relaxed);
            }
            w[base + 3].store(*at, Ordering::Relaxed);
        }
        // Each handle's count into the token's entry, before the token is listed: a kill
        // from the encoding to the listing leaks what was encoded (the encoding's undo
        // dies with us), never gives anything back twice. Not carried: back in flight, the
        // encoding's undo the caller's again; the token, freed, lets go of nothing (its
        // `block` is 0).
        if !carry(block, &undo) {
            return None;
        }
        // Listed as a token before it is sent: a parent killed from here on is found by its
        // reaper, which takes back a count still in flight (`holds`).
        let (off, generation, seal) = token.identity();
        let Some(listed) = holders::list_token(heap, &token_let_go(off, generation)) else {
            restore(block, &undo);
            return None;
        };
        token.block.store(block, Ordering::Release);
        crash_point!("process.token.listed");
        token.send_away();
        crash_point!("process.token.sent");
        Some(Self { off, generation, seal, block, listed: Some(listed), maker: sys::me().pid })
    }

    /// The carrier of the argument's handles, as its child's receives name it (its boot
    /// message's `receipts`, see [`Receipt::carrier`]).
    pub(crate) fn block(&self) -> u64 {
        carried(self.block)
    }

    /// What the child's boot message names the token by: offset, generation, seal.
    pub(crate) fn wire(&self) -> [u64; 3] {
        [self.off, self.generation, self.seal]
    }

    /// Takes the token back if the child never took it (the child is dead, or never
    /// started): it is freed, and every undo runs; else the child's side owns it, and the
    /// dead child's entry is forgotten here if nothing else holds the token (its reap
    /// found no slot of it when its list could not grow to name it). Then its slot in this
    /// process's list is cleared.
    pub(crate) fn give_back(mut self) {
        self.give_back_now();
    }

    fn give_back_now(&mut self) {
        if self.maker != sys::me().pid {
            return;
        }
        let heap = Heap::get();
        // As our reaper would: this process holds no entry in the token's table (it let go
        // of its handle when it sent it), so only dead holders are forgotten, and only if no
        // live one is left. A child whose hold of the token could not be listed (a heap
        // too full for a block of its list) is found by no reap, and the token has no other
        // holder to prune its entry: it leaked, with the undo of what the child had not
        // taken (review32 T1).
        if reap_token(heap, self.off, self.generation, sys::me()) {
            Shared::<ArgsState>::release_at(self.off);
        }
        crash_point!("process.token.taken_back");
        if let Some(listed) = self.listed.take() {
            holders::unlist_token(heap, listed);
        }
    }

    /// Leaves the token to the child (which may still take it) and to this process's
    /// reaper, which takes it back if nobody did (a handle of the child dropped unjoined).
    pub(crate) fn leave(self) {
        std::mem::forget(self);
    }
}

impl Drop for ArgsToken {
    fn drop(&mut self) {
        self.give_back_now();
    }
}

/// The reap of a token slot of a dead parent (`holds`), or of this process's own
/// ([`ArgsToken::give_back`]; `owner` has no entry in the token's table either way): takes
/// the count back if it is still in flight, runs the undo if nobody can take the token any
/// more (its count taken back, or its holders dead), then forgets the dead holders if no
/// live one is left. Returns whether the token must be freed by the caller (with the slot's
/// `gone`). The undo runs before the table is released, pinned: a process killed in it
/// leaves the token's slot and an unreleased table, and the next reap of the slot runs the
/// rest (`object::let_go_of_dead`; tok40: taken back by an `unsend` that released the
/// table, the undo ran in `destroy`, and a kill there leaked the token and what it had not
/// let go of yet).
pub(super) fn reap_token(heap: &Heap, off: u64, generation: u64, owner: sys::ProcId) -> bool {
    super::object::let_go_of_dead(heap, off, generation, owner, true)
}

/// The child's token taken ([`take_token`]): kept until the process ends (its reaper's
/// prune of its entry frees it and runs the undo of the handles not received, if any).
#[derive(Debug)]
pub(crate) struct TakenToken(#[allow(dead_code)] Shared<ArgsState>);

/// Takes the token `wire` (offset, generation, seal: [`ArgsToken::wire`]) of this
/// process's argument: its count in flight becomes this process's hold, and the token
/// notes this process as the child. `None`: the parent's side took it back (it gave the
/// start up, and ran every undo), or the bytes name no token: the argument must not be
/// decoded.
pub(crate) fn take_token(wire: [u64; 3]) -> Option<TakenToken> {
    let [off, generation, seal] = wire;
    let token = Shared::<ArgsState>::take_sent(Heap::get(), off, generation, seal)?;
    crash_point!("process.token.taken");
    token.child.store(u64::from(sys::me().pid), Ordering::Relaxed);
    Some(TakenToken(token))
}

/// The undo of a child's result's handles (res71, review98; HACKING "Processes"): an
/// object of the family heap (kind `RESULT_UNDO`) whose tail holds the key of the
/// outcome's blob (0 when none), then per handle its key and the distance of its undo
/// function in the executable, as a token's. The child makes it once its result is
/// encoded (each handle counted in flight, with nothing else recording it), names it to
/// its parent in place of the outcome's blob ([`named_result_undo`]), then sends it away
/// (one count in flight, which keeps it past the child's death), before the outcome's
/// encoding. Its undo runs exactly once, or (a kill inside a run) in part, never twice:
/// - the parent, at the reap, takes it ([`give_back_result_undo`], which marks it `done`
///   under its look) and runs it, unless a returned outcome came whole: that outcome's
///   decoding takes the counts then, or, if it is never decoded (its handle dropped
///   unjoined), the parent runs the undo when it drops the child's state;
/// - else whoever frees it runs it ([`ShmObject::destroy`]): a reaper's prune of the dead
///   child's hold when the child was killed before sending it (named or not), or the child
///   itself, which took its count back because its report was not delivered
///   ([`ResultUndo::take_back`]).
///
/// A type-free undo: the parent cannot decode a result it never got. Only the crate makes
/// objects of this kind, so the functions its tail names are undo functions whatever key
/// names it.
#[derive(Debug)]
pub(crate) struct ResultUndoState {
    /// Non-zero once the undo is not to run when the object is freed: the parent took it
    /// ([`give_back_result_undo`]), or the child gave its naming up (nothing was sent: the
    /// encoding's undo is the child's again).
    done: AtomicU64,
    /// The offset of the tail, stored once the tail is written whole (0 before: a maker
    /// killed while writing it leaves an object freed with nothing run, a leak).
    tail: AtomicU64,
    /// The pid of the child that made it: whose entries in the handles' tables a run after
    /// its death forgets first, as a prune does.
    maker: AtomicU64,
}

// SAFETY: three atomics, valid for any bytes.
unsafe impl ShmSafe for ResultUndoState {}

impl ShmObject for ResultUndoState {
    const KIND: u32 = kind::RESULT_UNDO;
    // `done` is swapped first: run again, it does nothing (what a cut run missed leaks).
    const DESTROY_RESUMES: bool = true;

    /// Runs the undo unless somebody took it (see [`ResultUndoState`]): freed, the object is
    /// unsent (its maker was killed before `send_away`, or took its count back), and the
    /// report can never be read.
    fn destroy(&self, heap: &Heap) {
        if self.done.swap(1, Ordering::AcqRel) == 0 {
            let maker = self.maker.load(Ordering::Relaxed) as u32;
            let dead = (maker != sys::me().pid).then_some(maker);
            ResultHandles { dead, entries: self.entries(heap).1 }.run();
        }
    }
}

impl ResultUndoState {
    /// The outcome blob's key its tail names (if any) and its undo entries (none before its
    /// tail is written whole).
    fn entries(&self, heap: &Heap) -> (Option<Key>, Vec<(Key, codec::UndoFn)>) {
        let tail = self.tail.load(Ordering::Acquire);
        if tail == 0 {
            return (None, Vec::new());
        }
        let w = words(heap, tail, RESULT_HEAD);
        let [off, generation, slots] = [0, 1, 2].map(|i| w[i].load(Ordering::Relaxed));
        let slots = slots as usize;
        let w = words(heap, tail, RESULT_HEAD + UNDO * slots);
        let undo = (0..slots)
            .filter_map(|i| {
                let at = RESULT_HEAD + UNDO * i;
                let gone = w[at + 3].load(Ordering::Relaxed);
                let key: Key = [0, 1, 2].map(|k| w[at + k].load(Ordering::Relaxed));
                // SAFETY: `gone` was written by `result_undo` from `sys::function_offset`
                // of an undo (an encoding's, `codec::on_abort`) in a process of this
                // family, which runs this executable; no other code makes an object of
                // this kind.
                (gone != 0).then(|| (key, unsafe { sys::function_at::<codec::UndoFn>(gone) }))
            })
            .collect();
        ((off != 0).then_some([off, generation, 0]), undo)
    }
}

/// The head of a result's undo's tail: the outcome blob's offset and generation, the
/// number of entries.
const RESULT_HEAD: usize = 3;

/// The bit of a named key's offset (64-byte aligned: never set in an object's) that says
/// it names a result's undo, not an outcome's blob (`boot::Channel`'s naming: a room's
/// words, a socket's frame).
const RESULT_UNDO: u64 = 1;

/// The child's side of its result's undo ([`result_undo`]), named to its parent and sent:
/// left to the parent once the report may be read, or taken back. Either way the undo is
/// no longer the encoding's: the child forgets that (`Encoded::sent`).
#[derive(Debug)]
pub(crate) struct ResultUndo(Shared<ResultUndoState>);

impl ResultUndo {
    /// The report may be read: the undo is the parent's; this process's hold stays until
    /// it ends (pruned by its reaper).
    pub(crate) fn leave(self) {
        std::mem::forget(self.0);
    }

    /// The report can never be read whole (not delivered): its count comes back from
    /// flight, and the object is freed, its undo run by its destroy; a parent that dropped
    /// its handle (its end of the socket closed, the send failed) never reads its name. A
    /// kill from the take on leaves it unsent, held by the dead alone: its reaper's free
    /// runs the undo (review98 L2: marked taken back before, the parent then ran none).
    /// Not taken (a table with no room for this process's hold): left to the parent, as
    /// [`ResultUndo::leave`] (a leak if the parent is gone, never a second run).
    pub(crate) fn take_back(self) {
        let (off, generation, seal) = self.0.identity();
        let Some(taken) = Shared::<ResultUndoState>::take_sent(Heap::get(), off, generation, seal) else {
            return self.leave();
        };
        crash_point!("process.report.taken_back");
        drop(taken);
        drop(self.0);
    }
}

/// Why [`result_undo`] made no undo: nothing was sent, and the undo is still the caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoResultUndo {
    /// It could not be made, for the reason said.
    Unmade(UndoUnmade),
    /// It could not be named to the parent (a socket's send failed: the parent gone).
    Unnamed,
}

/// Why a result's undo could not be made ([`NoResultUndo::Unmade`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UndoUnmade {
    /// The family heap has no room for it (fail point `process.report.no_undo`).
    HeapFull,
    /// An undo function is not in the executable (one in a shared library: another process
    /// could not call it), so no offset names it (fail point
    /// `process.report.undo_not_in_executable`).
    NotInExecutable,
}

impl UndoUnmade {
    /// The cause, as a failed child's reason says it.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            UndoUnmade::HeapFull => "the family heap is full",
            UndoUnmade::NotInExecutable => "an undo function is not in the executable",
        }
    }
}

/// Makes the undo of `encoded` (a child's encoded result, which holds handles), `blob` the
/// key of the outcome's blob if any, has `name` name it to the parent (its key tagged as a
/// result's undo; `false`: not named), then sends it away. An error when the heap has no
/// room for it, an undo is not in the executable, or it could not be named: nothing was
/// sent, and the undo is still the caller's (review98 L3: sent unnamed, it stayed counted
/// in flight for good). Named before it is sent: until it is sent, whoever frees it (its
/// maker's reaper) runs the undo.
pub(crate) fn result_undo(
    encoded: &codec::Encoded,
    blob: Option<Key>,
    name: impl FnOnce(Key) -> bool,
) -> Result<ResultUndo, NoResultUndo> {
    if fail_point!("process.report.no_undo") {
        return Err(NoResultUndo::Unmade(UndoUnmade::HeapFull));
    }
    let heap = Heap::get();
    let undo: Vec<(Key, codec::UndoFn)> = encoded.undo_entries().collect();
    let offsets: Vec<u64> = undo
        .iter()
        .map(|(_, f)| sys::function_offset(*f).filter(|_| !fail_point!("process.report.undo_not_in_executable")))
        .collect::<Option<_>>()
        .ok_or(NoResultUndo::Unmade(UndoUnmade::NotInExecutable))?;
    let len = RESULT_HEAD + UNDO * undo.len();
    let state = ResultUndoState {
        done: AtomicU64::new(0),
        tail: AtomicU64::new(0),
        maker: AtomicU64::new(u64::from(sys::me().pid)),
    };
    let made = Shared::with_tail(state, len * 8).map_err(|_| NoResultUndo::Unmade(UndoUnmade::HeapFull))?;
    let tail = made.tail_offset();
    let w = words(heap, tail, len);
    let [blob_off, blob_generation, _] = blob.unwrap_or_default();
    w[0].store(blob_off, Ordering::Relaxed);
    w[1].store(blob_generation, Ordering::Relaxed);
    w[2].store(undo.len() as u64, Ordering::Relaxed);
    for (i, ((key, _), at)) in undo.iter().zip(&offsets).enumerate() {
        let base = RESULT_HEAD + UNDO * i;
        for (k, word) in key.iter().enumerate() {
            w[base + k].store(*word, Ordering::Relaxed);
        }
        w[base + 3].store(*at, Ordering::Relaxed);
    }
    made.tail.store(tail, Ordering::Release);
    let (off, generation, _) = made.identity();
    if !name([off | RESULT_UNDO, generation, 0]) {
        // Freed with nothing run: the encoding's undo is the caller's.
        made.done.store(1, Ordering::Relaxed);
        return Err(NoResultUndo::Unnamed);
    }
    // One count in flight, which keeps it once this process is dead and its hold pruned
    // (by anyone's reap); this process's own hold kept until it ends (the parent's
    // give-back asks that the dead held it: `Undoing::UnsendHeldByDead`).
    made.clone().send_away();
    Ok(ResultUndo(made))
}

/// The key of the result's undo a named key (a child's room's words, its socket's frame)
/// names, if it names one (else it names an outcome's blob).
pub(crate) fn named_result_undo(named: Key) -> Option<Key> {
    (named[0] & RESULT_UNDO != 0).then_some([named[0] & !RESULT_UNDO, named[1], 0])
}

/// The undo of a child's result's handles, taken by its parent ([`give_back_result_undo`]):
/// run now, or kept while a returned outcome may still be decoded.
#[derive(Debug, Default)]
pub(crate) struct ResultHandles {
    /// The child, dead, whose entries in the handles' tables are forgotten first; `None`
    /// when it is this process.
    dead: Option<u32>,
    entries: Vec<(Key, codec::UndoFn)>,
}

impl ResultHandles {
    /// Gives each handle's count in flight back, as for a message that never arrived.
    pub(crate) fn run(self) {
        codec::undoing_as(Undoing::Unsend, self.dead, || {
            for (key, f) in self.entries {
                f(key);
            }
        });
    }
}

/// The parent's side of a result's undo `key` ([`result_undo`]) of its child `pid`, now
/// dead and reaped: takes the undo (marked `done`, so that the object's free runs none of
/// it) and returns it, for the caller to run or keep; `blob`, when no outcome was reported
/// whole, gives back the outcome's blob it names; then gives the object back (freed). A
/// key naming no such object any more (its undo ran at its free: the child, its report not
/// delivered, took it back; or it was never sent, and a sweep freed it) returns nothing to
/// run, as does one already taken.
pub(crate) fn give_back_result_undo(key: Key, pid: u32, blob: bool) -> ResultHandles {
    let heap = Heap::get();
    let mut named_blob = None;
    let mut taken = ResultHandles { dead: Some(pid), entries: Vec::new() };
    Shared::<ResultUndoState>::give_back_sent_by_dead_reading(key, pid, |state, _| {
        // Only the undo `pid` made: a key from the dead child that names another child's
        // (a forgery: safe code can write neither a room's words nor a boot socket) would
        // have this parent run that undo, and its own parent none (review98 L4).
        if state.maker.load(Ordering::Relaxed) == u64::from(pid) && state.done.swap(1, Ordering::AcqRel) == 0 {
            (named_blob, taken.entries) = state.entries(heap);
        }
    });
    if blob && let Some(key) = named_blob {
        super::Blob::give_back_sent_by_dead(key, pid);
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_receipt_frame_carries_its_key_and_no_outcome_reads_as_one() {
        let key = [4096, u64::MAX - 1, 2];
        let framed = frame(FRAME_TAG, key);
        assert_eq!(u32::from_le_bytes(framed[..4].try_into().unwrap()), 25);
        assert_eq!(from_frame(&framed[4..]), Some(key));
        // An encoded outcome starts with its codec's tag (0 or 1).
        let mut outcome = framed;
        outcome[4] = 0;
        assert_eq!(from_frame(&outcome[4..]), None);
        assert_eq!(from_frame(&framed[4..28]), None, "a frame of another length");
        assert_eq!(from_frame(&[]), None);
        // An outcome blob's frame is no receipt, nor the other way round.
        let blob = frame(OUTCOME_BLOB_TAG, key);
        assert_eq!(outcome_blob_from_frame(&blob[4..]), Some(key));
        assert_eq!(from_frame(&blob[4..]), None);
        assert_eq!(outcome_blob_from_frame(&framed[4..]), None);
        assert_eq!(outcome_blob_from_frame(&outcome[4..]), None);
        assert_eq!(on_socket(7) & !SOCKET, 7);
        assert!(!Heap::get().contains(on_socket(7), 8), "never a heap offset");
    }

    /// review98 L4: a key naming a result's undo that another process made (a forged key,
    /// from a dead child's room or socket) takes nothing: its maker's parent still runs it.
    /// Before, the wrong parent marked it taken and ran it, and its own parent's take found
    /// it done (here: the value's count left in flight, its block in the heap).
    #[test]
    fn a_result_undo_is_given_back_only_for_its_maker() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let value = crate::Value::new(5u64).unwrap();
        let encoded = codec::encode_own(&value).unwrap();
        assert!(encoded.has_handles());
        let mut named = None;
        let undo = result_undo(&encoded, None, |key| {
            named = Some(key);
            true
        })
        .unwrap();
        encoded.sent();
        let key = named_result_undo(named.unwrap()).unwrap();
        let other = sys::pid_now() + 1;
        let taken = give_back_result_undo(key, other, false);
        assert!(taken.entries.is_empty(), "another process's key took the undo");
        // Its maker's side takes it back: the undo runs, the value's count comes back.
        undo.take_back();
        drop(value);
        assert_eq!(heap.in_use(), before, "the heap's bytes in use");
    }

    /// A token freed between the fork's record (in the parent) and the child's `in_child`:
    /// the child drops the token's table from its registry all the same, as the parent
    /// recorded it in none. It kept it (review33 K1) when each side read "token or not"
    /// from the heap: the freed block no longer read as a token, and the child's next
    /// `Fork` start would have locked a table in a freed block.
    #[test]
    fn a_fork_child_drops_a_tokens_table_freed_before_it_ran() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let token = Shared::with_tail(ArgsState { block: AtomicU64::new(0), child: AtomicU64::new(0) }, 64).unwrap();
        let object = token.identity().0;
        assert!(holders::registry_names(object), "the maker's entry is in its registry");
        let (r, w) = sys::pipe().unwrap();
        let record = holders::before_fork();
        match sys::fork().unwrap() {
            sys::Forked::Child => {
                // Runs once the parent freed the token.
                let _ = sys::read_some(r.as_fd(), &mut [0u8]);
                record.in_child();
                // Never `exit_now`: it takes stdout's lock, which the harness's thread may
                // have held at the fork (review128 M2).
                sys::exit_group(i32::from(holders::registry_names(object)));
            }
            sys::Forked::Parent(pid) => {
                let forked = crate::testing::ForkChild::new(pid);
                let child = sys::ProcId { pid, start: sys::process_start(pid).unwrap() };
                record.record(child);
                drop(token);
                assert_eq!(heap.in_use(), before, "no fork pin kept the token");
                sys::write_all(w.as_fd(), &[1]).unwrap();
                let ended = forked.wait(std::time::Duration::from_secs(60));
                holders::fork_child_ended(child);
                assert!(
                    matches!(ended, sys::Ended::Exited(0)),
                    "the child kept the freed token's table in its registry: {ended:?}"
                );
            }
        }
    }

    /// review90 L2: a restore of what a carrier's entry counts (a carry that found no room
    /// for a later handle gives the earlier ones back) at an object whose start is crowded
    /// (every look taken, here by dead processes) was skipped: the look gave up and the
    /// undo did nothing, and the count stayed in the carrier's entry, the carrier then
    /// freed, the object kept for ever (and the encoding's undo took from flight a count
    /// that was not there).
    #[test]
    fn a_restore_at_a_crowded_start_is_not_skipped() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let object = Shared::with_tail(ArgsState { block: AtomicU64::new(0), child: AtomicU64::new(0) }, 64).unwrap();
        let encoded = codec::encode(&object).unwrap();
        let undo: Vec<(Key, codec::UndoFn)> = encoded.undo_entries().collect();
        let id = heap.alloc_zeroed(CARRIER_BLOCK).unwrap();
        assert!(carry(id, &undo), "carried");
        let start = heap.start(object.identity().0);
        // As as many processes killed between their looks and their let-go leave it.
        start.fetch_add(super::super::object::MAX_LOOKS, Ordering::AcqRel);
        restore(id, &undo);
        start.fetch_sub(super::super::object::MAX_LOOKS, Ordering::AcqRel);
        heap.free(id, CARRIER_BLOCK);
        drop(encoded);
        drop(object);
        assert_eq!(heap.in_use(), before, "the count the restore skipped keeps the object");
    }

    /// review99 M1: a carry at a crowded start (every look taken, here as dead processes
    /// leave it) ran with no look, on the word that the encoding's count in flight kept the
    /// object allocated; but a count in flight is anonymous (replayed bytes may take it, and
    /// their receiver release the object meanwhile), so the header's loads and the table's
    /// pin by a 24-bit generation could land on a freed or reused block. A carry so given up
    /// on gives every count back to flight: its caller keeps to the older protocol.
    #[test]
    fn a_carry_at_a_crowded_start_gives_up() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let before = heap.in_use();
        let object = Shared::with_tail(ArgsState { block: AtomicU64::new(0), child: AtomicU64::new(0) }, 64).unwrap();
        let encoded = codec::encode(&object).unwrap();
        let undo: Vec<(Key, codec::UndoFn)> = encoded.undo_entries().collect();
        let id = heap.alloc_zeroed(CARRIER_BLOCK).unwrap();
        let start = heap.start(object.identity().0);
        start.fetch_add(super::super::object::MAX_LOOKS, Ordering::AcqRel);
        let carried = carry(id, &undo);
        start.fetch_sub(super::super::object::MAX_LOOKS, Ordering::AcqRel);
        if carried {
            restore(id, &undo);
        }
        heap.free(id, CARRIER_BLOCK);
        drop(encoded);
        drop(object);
        assert!(!carried, "a carry at a crowded start ran without a look");
        assert_eq!(heap.in_use(), before, "the given-up carry's counts went back to flight");
    }
}
