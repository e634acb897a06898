//! Receipts: which handles of a child's argument the child took, handle by handle.
//!
//! A child writes a receipt for each handle whose in-flight count it took: in
//! `Holders::receive` right after the compare-and-swap that takes it (the object still
//! pinned), and in a discard that kept the count. The undo of the handles without a receipt
//! (`codec::Encoded`'s, one `fn(Key)` per handle) runs once the child is gone. A handle is
//! named by its [`Key`] (the object's offset and generation, and which of its tables), so
//! the order of the receives need not be the encoding's (a side's undo comes before its
//! object's, its receive after).
//!
//! A receipted receive is final at once, never *pending* (`Holders::settle`): a pending
//! receive of a dead process goes back in flight when its entry is pruned, which is right
//! when a next consumer reads the message again, and a leak here, where the undo skips a
//! receipted handle. So each handle, at the child's death, is either in flight with no
//! receipt (the undo takes it) or counted in the child's entry with a receipt (the prune
//! of the dead entry releases it, the undo is skipped): exact, whatever prunes run first.
//! Between the take and the receipt the object is pinned: a kill there leaves an announced
//! pin (taken away later, see `shm::pins`), and the undo may take another message's count.
//!
//! The receipts and the undo live in the argument's *token* ([`ArgsToken`], an object of
//! kind `ARGS`: its tail is the block of receipts, then per handle its key and the distance
//! of its undo function in the executable), which travels as one count in flight: the
//! parent makes it, lists it as a token (a slot of its list of holds, `holds`, not an entry
//! of its own), sends it and lets go of its handle. The child takes the count before it
//! decodes anything of its argument ([`take_token`]) and keeps it until it ends: its entry
//! is then pruned by its reaper as any dead holder's (whether it was killed or exited),
//! and that free runs the undo of the handles without a receipt ([`ArgsState`]'s
//! `destroy`), once. The child never frees it itself: a kill between the table's release
//! and the block's free would leak it (as the note-then-free of the block of receipts
//! did). The parent's side takes the count back ([`ArgsToken::give_back`]) at the
//! child's reap and on a failed start, and the parent's reaper does (`holds`, through the
//! token's slot) when the parent died first: a count still in flight means the child never
//! took it, and the free runs every undo; the child's take then fails and it decodes and
//! runs nothing. One compare-and-swap on the token's word decides who owns it, whoever is
//! killed where: the parent needs no note, keeps no entry (a parent that never reaps keeps
//! nothing: `tests/soundness.rs` `holds::*`), and nobody takes a live process's entry away.
//!
//! A heap too full for the token (a few hundred bytes) keeps the older protocol: the child
//! sends each receipt on its copy of its boot socket instead ([`on_socket`]: a frame of its
//! own, [`from_frame`]), at the same step, and the parent keeps the undo in its memory and
//! collects the receipts from the socket until the reap (the kernel keeps what a dead child
//! sent). A send may wait for the parent to read (a socket buffer holds some thousands of
//! receipts; a parent waiting for its child reads its socket), inside the pinned step: a
//! kill there is the residual above. There, a parent killed before its child took its
//! argument still leaks the argument's handles (the undo died with it).
//!
//! The block: word 0 the number of slots, word 1 how many are written, then the slots, one
//! [`Key`] each (and, in a token, the undo entries after them). Only the child writes the
//! receipts (one thread, its argument's decoding: one write at most per handle of the
//! message). The pool's chunks and initializer argument still use a bare block
//! ([`Receipts`]) with the undo in the pool's memory (`pool::engine::ChunkUndo`).

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use super::ShmSafe;
use super::crash::crash_point;
use super::heap::{Heap, HeapFull};
use super::holders::{self, LetGo};
use super::holds::Listed;
use super::object::{Shared, ShmObject, kind};
use crate::sys;

/// Which handle a receipt or an undo is about: `[object offset, generation, table]`, the
/// table 0 for the object's own, `1 + side` for a side's.
pub(crate) type Key = [u64; 3];

const HEAD: usize = 2;
const SLOT: usize = 3;
/// Words of an undo entry in a token's block ([`ArgsToken`]): the key, then the distance
/// in the executable of the function that undoes it (`sys::function_offset`).
const UNDO: usize = 4;

/// Where a receive writes its receipt: the block's offset (or a socket, [`on_socket`]) and
/// the handle's key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Receipt {
    pub(crate) block: u64,
    pub(crate) key: Key,
}

/// A [`Receipt::block`] that names a socket (its descriptor in the low bits), not a block:
/// no heap offset has this bit.
const SOCKET: u64 = 1 << 63;

/// The first byte of a receipt's frame on a boot socket: an encoded outcome starts with its
/// codec's tag, a small number.
const FRAME_TAG: u8 = 0xff;

/// Where a child writes its receipts when its parent had no room for a block of them: its
/// copy of its boot socket `fd`, open for the whole of its argument's decoding.
pub(crate) fn on_socket(fd: RawFd) -> u64 {
    SOCKET | u64::from(fd as u32)
}

/// The key of the receipt `frame` (a frame read from a child's boot socket), if it is one.
pub(crate) fn from_frame(frame: &[u8]) -> Option<Key> {
    let (&tag, key) = frame.split_first()?;
    if tag != FRAME_TAG || key.len() != 24 {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(key[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    Some([word(0), word(1), word(2)])
}

/// The receipt of `key` as a frame of a boot socket (its length first).
fn frame(key: Key) -> [u8; 4 + 1 + 24] {
    let mut frame = [0u8; 4 + 1 + 24];
    frame[..4].copy_from_slice(&25u32.to_le_bytes());
    frame[4] = FRAME_TAG;
    for (i, word) in key.iter().enumerate() {
        frame[5 + 8 * i..13 + 8 * i].copy_from_slice(&word.to_le_bytes());
    }
    frame
}

/// Sends `key` as a receipt frame on the socket `fd` (see [`on_socket`]).
fn send(fd: RawFd, key: Key) {
    let frame = frame(key);
    // SAFETY: `fd` is the child's copy of its boot socket, which its runner keeps open for
    // the whole of `codec::receipting`, the only time a receipt is written.
    let sock = unsafe { BorrowedFd::borrow_raw(fd) };
    // A parent gone cannot use the receipt (nor give anything back).
    let _ = crate::sys::send_all(sock, &frame, &[]);
}

/// The parent's block of receipts for one child's argument: freed when dropped, unless
/// [`Receipts::leave`] leaves it to a child that may still write it.
#[derive(Debug)]
pub(crate) struct Receipts {
    off: u64,
    slots: usize,
}

fn words(heap: &Heap, off: u64, len: usize) -> &[AtomicU64] {
    // Checked here, not only by the callers: an offset from a boot message must never
    // become a slice outside the mapping, or a misaligned one.
    assert!(heap.contains(off, len * 8), "a receipts block outside the family heap");
    // SAFETY: `off..off + 8 * len` is inside the heap's mapping and 64-byte aligned
    // (checked above); every block of receipts is allocated by `Receipts::new` with `len`
    // words, and only freed by its parent once the one child that writes it is dead, or is
    // a token's tail (`ArgsToken::new`), freed only with the token, which the child that
    // writes it holds while it does; the block is atomics only, valid for any bytes.
    unsafe { std::slice::from_raw_parts(heap.ptr(off).cast::<AtomicU64>(), len) }
}

impl Receipts {
    /// A zeroed block for the receipts of `handles` handles.
    pub(crate) fn new(handles: usize) -> Result<Self, HeapFull> {
        let heap = Heap::get();
        let len = (HEAD + SLOT * handles) * 8;
        let off = heap.alloc_zeroed(len)?;
        words(heap, off, HEAD)[0].store(handles as u64, Ordering::Release);
        Ok(Self { off, slots: handles })
    }

    /// The block's offset in the family heap (what the child is told).
    pub(crate) fn offset(&self) -> u64 {
        self.off
    }

    fn len(&self) -> usize {
        HEAD + SLOT * self.slots
    }

    /// The keys receipted so far: read once the child is dead.
    pub(crate) fn read(&self) -> Vec<Key> {
        let w = words(Heap::get(), self.off, self.len());
        let written = (w[1].load(Ordering::Acquire) as usize).min(self.slots);
        (0..written)
            .map(|i| {
                let at = HEAD + SLOT * i;
                [0, 1, 2].map(|k| w[at + k].load(Ordering::Relaxed))
            })
            .collect()
    }

    /// Leaves the block to a child that may still write it (a leak of a few words).
    pub(crate) fn leave(self) {
        std::mem::forget(self);
    }
}

impl Drop for Receipts {
    fn drop(&mut self) {
        Heap::get().free(self.off, self.len() * 8);
    }
}

/// Maps, in this process, the words [`write`] will store `receipt` into, before the receive
/// pins its object (the child, its argument's decoding thread): the receipt is written
/// between the take of the count and the lock, where nothing may touch a page the process
/// may not have mapped (HACKING "Pins"). A child's first touch of a block its parent just
/// made is a page fault, a kernel entry, where a loaded machine preempts it: a kill then
/// landed between the take and the receipt, and the parent's undo took another message's
/// count (`tests/pool.rs` `workers_killed_as_they_start_leak_nothing`: "received already" in
/// 3 runs of 16). Changes nothing: each word is stored as loaded, and only this thread
/// writes the block.
pub(crate) fn touch(heap: &Heap, receipt: Receipt) {
    if receipt.block & SOCKET != 0 || !heap.contains(receipt.block, HEAD * 8) {
        return;
    }
    let head = words(heap, receipt.block, HEAD);
    let slots = head[0].load(Ordering::Acquire) as usize;
    let written = head[1].load(Ordering::Relaxed);
    head[1].store(written, Ordering::Relaxed);
    let written = written as usize;
    if written >= slots || !heap.contains(receipt.block, (HEAD + SLOT * slots) * 8) {
        return;
    }
    let w = words(heap, receipt.block, HEAD + SLOT * slots);
    // A slot's first and last words: it may straddle two pages.
    for word in [&w[HEAD + SLOT * written], &w[HEAD + SLOT * written + SLOT - 1]] {
        word.store(word.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Writes `receipt` into its block (the child, its argument's decoding thread, right after
/// it took the handle's count): the key first, then the count that makes it read.
pub(crate) fn write(heap: &Heap, receipt: Receipt) {
    if receipt.block & SOCKET != 0 {
        send((receipt.block & !SOCKET) as RawFd, receipt.key);
        return;
    }
    if !heap.contains(receipt.block, HEAD * 8) {
        return;
    }
    let head = words(heap, receipt.block, HEAD);
    let slots = head[0].load(Ordering::Acquire) as usize;
    let written = head[1].load(Ordering::Relaxed) as usize;
    if written >= slots || !heap.contains(receipt.block, (HEAD + SLOT * slots) * 8) {
        // More receives than the parent encoded handles: not a message of that parent.
        return;
    }
    let w = words(heap, receipt.block, HEAD + SLOT * slots);
    let at = HEAD + SLOT * written;
    for (k, word) in receipt.key.iter().enumerate() {
        w[at + k].store(*word, Ordering::Relaxed);
    }
    head[1].store(written as u64 + 1, Ordering::Release);
}

/// A child's argument's token (HACKING "Pins"): an object of the family heap whose tail is
/// the block of receipts followed by the argument's undo (per handle its key and the
/// distance of its undo function in the executable), so that whichever process frees it
/// runs the undo of the handles without a receipt ([`ShmObject::destroy`]), once.
///
/// It travels as one count in flight: the parent makes it, lists it as a *token* in its
/// list of holds (`holds`, not in its registry: it keeps no entry), sends it and lets go
/// of its own handle. The child takes the count first thing ([`take_token`]), before its
/// argument is decoded, and keeps it until it ends: its death (killed or exited) is a
/// holder's prune (its reaper's), which frees the token and runs the undo of what it did
/// not take. The parent's side takes the count back
/// ([`ArgsToken::give_back`]) at the child's reap, on a failed start, or, the parent dead,
/// its reaper (`holds`): a count still in flight means the child never took it, the object
/// is freed and every undo runs; the child's take then fails and it runs nothing. One
/// compare-and-swap on the table's word decides which side owns it.
#[derive(Debug)]
pub(crate) struct ArgsState {
    /// The offset of the block (this object's tail), 0 until its words are written: a
    /// token freed before that (its maker killed) undoes nothing.
    block: AtomicU64,
    /// The pid of the child that took it (0: none yet): whose pending receives the undo
    /// puts back in flight first, as `codec::give_back_from_dead` does.
    child: AtomicU64,
}

// SAFETY: two atomics, valid for any bytes.
unsafe impl ShmSafe for ArgsState {}

impl ShmObject for ArgsState {
    const KIND: u32 = kind::ARGS;

    fn destroy(&self, heap: &Heap) {
        let block = self.block.load(Ordering::Acquire);
        if block == 0 || !heap.contains(block, HEAD * 8) {
            return;
        }
        let slots = words(heap, block, HEAD)[0].load(Ordering::Relaxed) as usize;
        let w = words(heap, block, HEAD + (SLOT + UNDO) * slots);
        let written = (w[1].load(Ordering::Acquire) as usize).min(slots);
        let mut receipted: Vec<Key> = (0..written)
            .map(|i| {
                let at = HEAD + SLOT * i;
                [0, 1, 2].map(|k| w[at + k].load(Ordering::Relaxed))
            })
            .collect();
        let child = self.child.load(Ordering::Relaxed) as u32;
        crate::codec::as_dead_receiver((child != 0).then_some(child), || {
            for i in 0..slots {
                let at = HEAD + SLOT * slots + UNDO * i;
                let key: Key = [0, 1, 2].map(|k| w[at + k].load(Ordering::Relaxed));
                if let Some(found) = receipted.iter().position(|k| *k == key) {
                    receipted.swap_remove(found);
                    continue;
                }
                let gone = w[at + 3].load(Ordering::Relaxed);
                if gone == 0 {
                    continue;
                }
                // SAFETY: `gone` was written by `ArgsToken::new` from `sys::function_offset`
                // of a `fn(Key)` (an encoding's undo, `codec::on_abort`) in a process of this
                // family, which runs this executable.
                let undo = unsafe { sys::function_at::<fn(Key)>(gone) };
                undo(key);
                crash_point!("process.token.undone");
            }
        });
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

/// Words of a token's tail for `handles` handles: the block's head, a receipt slot and an
/// undo entry per handle.
fn token_words(handles: usize) -> usize {
    HEAD + (SLOT + UNDO) * handles
}

impl ArgsToken {
    /// The token of the argument `encoded` (which holds handles), sent: the caller then
    /// forgets the encoding's undo (`Encoded::sent`), which the token holds now. `None`
    /// when the heap has no room for it or its listing, or an undo is not in the executable:
    /// nothing was sent, and the encoding's undo is still the caller's.
    pub(crate) fn new(encoded: &crate::codec::Encoded) -> Option<Self> {
        let heap = Heap::get();
        let undo: Vec<(Key, u64)> = encoded
            .undo_entries()
            .map(|(key, undo)| sys::function_offset(undo).map(|at| (key, at)))
            .collect::<Option<_>>()?;
        let slots = undo.len();
        let len = token_words(slots);
        let token =
            Shared::with_tail(ArgsState { block: AtomicU64::new(0), child: AtomicU64::new(0) }, len * 8).ok()?;
        let block = token.tail_offset();
        let w = words(heap, block, len);
        w[0].store(slots as u64, Ordering::Relaxed);
        for (i, (key, at)) in undo.iter().enumerate() {
            let base = HEAD + SLOT * slots + UNDO * i;
            for (k, word) in key.iter().enumerate() {
                w[base + k].store(*word, Ordering::Relaxed);
            }
            w[base + 3].store(*at, Ordering::Relaxed);
        }
        let (off, generation, seal) = token.identity();
        // Listed as a token before it is sent: a parent killed from here on is found by its
        // reaper, which takes back a count still in flight (`holds`).
        let Some(listed) = holders::list_token(heap, &token_let_go(off, generation)) else {
            // Freed undoing nothing: the undo is still the caller's.
            return None;
        };
        token.block.store(block, Ordering::Release);
        crash_point!("process.token.listed");
        token.send_away();
        crash_point!("process.token.sent");
        Some(Self { off, generation, seal, block, listed: Some(listed), maker: sys::me().pid })
    }

    /// The block of receipts the child writes into (its boot message's `receipts`).
    pub(crate) fn block(&self) -> u64 {
        self.block
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
/// the count back if it is still in flight, else forgets the dead holders if no live one is
/// left. Returns whether the token must be freed by the caller (with the slot's `gone`).
pub(super) fn reap_token(heap: &Heap, off: u64, generation: u64, owner: sys::ProcId) -> bool {
    Shared::<ArgsState>::unsend_returning(heap, off, generation)
        || super::object::let_go_of_dead(heap, off, generation, owner)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_receipt_frame_carries_its_key_and_no_outcome_reads_as_one() {
        let key = [4096, u64::MAX - 1, 2];
        let framed = frame(key);
        assert_eq!(u32::from_le_bytes(framed[..4].try_into().unwrap()), 25);
        assert_eq!(from_frame(&framed[4..]), Some(key));
        // An encoded outcome starts with its codec's tag (0 or 1).
        let mut outcome = framed;
        outcome[4] = 0;
        assert_eq!(from_frame(&outcome[4..]), None);
        assert_eq!(from_frame(&framed[4..28]), None, "a frame of another length");
        assert_eq!(from_frame(&[]), None);
        assert_eq!(on_socket(7) & !SOCKET, 7);
        assert!(!Heap::get().contains(on_socket(7), 8), "never a heap offset");
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
                sys::exit_now(i32::from(holders::registry_names(object)));
            }
            sys::Forked::Parent(pid) => {
                let pidfd = sys::pidfd_open(pid).unwrap();
                record.record(sys::ProcId { pid, start: sys::process_start(pid).unwrap() });
                drop(token);
                assert_eq!(heap.in_use(), before, "no fork pin kept the token");
                sys::write_all(w.as_fd(), &[1]).unwrap();
                let ended = sys::reap_pidfd(pidfd.as_fd(), true).unwrap();
                holders::fork_child_ended(pid);
                assert!(
                    matches!(ended, Some(sys::Ended::Exited(0))),
                    "the child kept the freed token's table in its registry: {ended:?}"
                );
            }
        }
    }
}
