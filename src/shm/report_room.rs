//! A child's report room: a block of the family heap where the child leaves its
//! outcome, read by its parent once the child has ended, instead of a boot socket.
//!
//! A fork child inherits its boot data and its parent learns its end from a pidfd: when
//! the parent holds nothing (no go-on byte to wait for) and the argument holds no handles
//! (no note), the socket would only carry the outcome, one message just before the exit.
//! The heap is shared memory (the child's copy of the parent's private memory is not), so
//! the block is seen by both. A fork-server child whose argument holds no handles has one
//! too: its parent makes it and names it in the boot message that goes with the request
//! ([`ChildRoom::at`]); a parent that learns of the server's death before its child's
//! (the status pipe closed) leaves the room to the child.
//!
//! The block is words only. Word 0 says what is there (0 nothing, inline, spilled), word 1
//! the message's length, words 2 and 3 the offset and length of a block of the heap the
//! child allocated for a message too long for the room (a spill), words 4 and 5 the offset
//! and generation of its outcome's blob, or of its result's undo, which names the blob in
//! turn (the offset's bit 0 set: `receipts::result_undo`; [`ChildRoom::name_blob`]), word 6
//! the go word (its low half, a futex: [`ChildRoom::wait_for_go`]; its high half the child
//! word, the pid the fork server forked for the room: [`ReportRoom::forked_at`]), then the
//! inline message (little-endian words). A requester whose start failed after its request
//! went leaves the room to the child ([`ReportRoom::leave_to_child`]) and frees it once
//! that child has ended ([`free_left_rooms`]), or at once when the server forked none
//! ([`ReportRoom::unforked_at`]). The fork server may write a room after its answer (its
//! go): its last write is marked ([`SERVER_DONE`]), and a room is freed only once that
//! mark is seen or the server is dead ([`ReportRoom::release`], which waits a moment for
//! the mark). A requester that saw its request's connection end unanswered marks it
//! itself: no server writes the room any more ([`ReportRoom::server_gone_at`]).
//!
//! A fork-server child waits for its go word before it touches anything its boot message
//! names (its argument, a blob of the heap): its requester says [`ReportRoom::go`] once the
//! server answered, or [`ReportRoom::stop`] when its start failed after the request went
//! (the server died between its fork and its answer: a child may run whose argument the
//! requester gave back). A fork child, a copy of its parent, runs at once, and waits for its
//! go word only at its end ([`ChildRoom::wait_to_end`]): its parent says go once it has
//! opened the child's pidfd, so that a program that reaps children itself cannot reap the
//! child before its start watched it.
//!
//! The child writes everything else first and word 0 last (release): a child killed while
//! it writes leaves 0, read as a child that ended without an outcome. A spill's length is
//! written before it is allocated and its offset inside the allocation
//! (`Heap::alloc_into`), so a child killed once it has the block leaves it to the parent,
//! which frees it whatever word 0 says (killed inside the allocator's own steps, it leaks
//! the block as any allocation does). The parent zeroes the head before the fork, reads the
//! block only once the child is dead, and frees it after. A parent that dies first leaves
//! them (the child may still write them): a leak of a few words, as with receipts; but the
//! room of a fork-server child still running when its requester died is freed by the
//! server once it reaped that child ([`ReportRoom::free_orphan_at`]). A fork-server child's
//! room whose requester let go of it after its start ([`ReportRoom::go_and_let_go`]) is
//! the server's once it reaped the child: it sends the requester a copy of what the child
//! left ahead of the status, then frees it ([`ReportRoom::copy_at`]), so that one process
//! alone frees it (mt81 B1).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::crash::crash_point;
use super::heap::{Heap, HeapFull};
use crate::sys;

/// The room's bytes: the head, then the inline message.
const ROOM: usize = 512;
const WORDS: usize = ROOM / 8;
const HEAD: usize = sys::ROOM_HEAD;
/// The longest message written inline.
const INLINE_MAX: usize = (WORDS - HEAD) * 8;

/// Word 0: the message is in the room (`sys`'s `write_room`, which a signal handler uses
/// too).
const INLINE: u64 = sys::ROOM_INLINE;
/// Word 0: the message is in the spill (words 2 and 3).
const SPILLED: u64 = 2;

/// The offset and generation of the child's outcome's blob ([`ChildRoom::name_blob`]; 0:
/// none named).
const BLOB_OFF: usize = 4;
const BLOB_GENERATION: usize = 5;
/// The go word: its low half (a `u32`, a futex), never accessed as a whole word.
const GO_WORD: usize = HEAD - 1;
/// The go word's states (its low two bits): not said yet (and the child not asleep), go on,
/// stop, not said yet and the child asleep on it.
const GO_PENDING: u32 = 0;
const GO_ON: u32 = 1;
const GO_STOP: u32 = 2;
const GO_ASLEEP: u32 = 3;
const GO_STATE: u32 = 3;
/// The go word's flag: the fork server that forked the room's child is done with the room
/// (its last write: [`ReportRoom::answered_at`], [`ReportRoom::unforked_at`]; or its
/// requester saw the end of the request's connection: [`ReportRoom::server_gone_at`]). A
/// room its server may still write is freed only once this is set, or the server is dead.
const SERVER_DONE: u32 = 4;
/// The go word's flag: the requester has said its go after its start's answer
/// ([`ReportRoom::go_and_let_go`]), its last touch of the room until it reads its child's
/// end from the fork server. The server that reaps the child of a room so marked takes the
/// room ([`ReportRoom::copy_at`]): it sends the requester a copy ahead of the status and
/// frees the room itself, so that one process alone frees it (mt81 B1).
const LET_GO: u32 = 8;
/// The go word's flags, kept by every later compare-and-swap.
const GO_FLAGS: u32 = !GO_STATE;
/// How long a child looks at its go word before it sleeps on it (`wait::spin_for`, which
/// yields now and then: the server that says go may need this processor).
const GO_SPIN: Duration = super::wait::SPIN;

/// Says `what` (go on or stop; or nothing, [`GO_PENDING`]) unless go or stop was said
/// already: the first word said is the one the child acts on, and the one returned, so a
/// requester that says stop knows whether the server's go came first (the child then runs
/// and takes its argument). `done` also sets [`SERVER_DONE`], whatever was said (the
/// server's last write to the room).
fn say(word: &AtomicU32, what: u32, done: bool) -> u32 {
    let done = if done { SERVER_DONE } else { 0 };
    let mut now = word.load(Ordering::Acquire);
    loop {
        let state = now & GO_STATE;
        let said = state == GO_ON || state == GO_STOP;
        let new = if said || what == GO_PENDING { now | done } else { (now & GO_FLAGS) | done | what };
        if new == now {
            return if said { state } else { what };
        }
        // Release: a child that sees `GO_ON` sees what was written before (nothing it
        // needs today; the order costs nothing on x86), and a requester that sees
        // `SERVER_DONE` sees every write of the server before it.
        match word.compare_exchange(now, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) if said => return state,
            Ok(_) => {
                if state == GO_ASLEEP && what != GO_PENDING {
                    sys::futex_wake(word, 1);
                }
                return what;
            }
            Err(seen) => now = seen,
        }
    }
}

fn go_word(heap: &Heap, off: u64) -> &AtomicU32 {
    assert!(heap.contains(off, ROOM), "a report room outside the family heap");
    // SAFETY: the room `off..off + ROOM` is inside the heap's mapping and 64-byte aligned
    // (checked above, and by `words` for every other view), so its word `GO_WORD` is
    // inside it and 4-byte aligned; it is freed only as `words` says. This word is only
    // ever accessed through this `AtomicU32` (its low half on a little-endian machine, the
    // high half on a big-endian one: the same four bytes every time), never as an
    // `AtomicU64` (`ReportRoom::new` skips it), so there is no mixed-size access.
    unsafe { &*heap.ptr(off + (GO_WORD * 8) as u64).cast::<AtomicU32>() }
}

/// The child word: the high half of the go word's 8 bytes (its other four bytes), where the
/// fork server writes the pid of the child it forked for the room right after the fork
/// ([`ReportRoom::forked_at`]; [`YOURS`] set when the child is the requester's own, forked
/// as its sibling), so that a requester that left the room on a failed start frees it once
/// that child has ended ([`ReportRoom::leave_to_child`]). 0: no child known.
fn child_word(heap: &Heap, off: u64) -> &AtomicU32 {
    assert!(heap.contains(off, ROOM), "a report room outside the family heap");
    // SAFETY: as `go_word`'s, for the other four bytes of the same 8: inside the room,
    // 4-byte aligned, only ever accessed through this `AtomicU32` (never as an `AtomicU64`:
    // `ReportRoom::new` skips the go word's 8 bytes), so there is no mixed-size access.
    unsafe { &*heap.ptr(off + (GO_WORD * 8 + 4) as u64).cast::<AtomicU32>() }
}

/// The child word's flag: the child is its requester's own child (reaped by it).
const YOURS: u32 = 1 << 31;
/// The child word when the server forked no child for the room (its requester had given
/// up on the answer): the room is free to go.
const UNFORKED: u32 = YOURS - 1;
/// The child word the server writes just before its fork ([`ReportRoom::forking_at`]): a
/// word still 0 once the server is dead means no child was forked for the room, one that
/// says this means a child may have been, whose pid comes from the server after the fork,
/// or from the child itself (a server killed as its fork returned never writes it).
const FORKING: u32 = YOURS - 2;

fn words(heap: &Heap, off: u64, len: usize) -> &[AtomicU64] {
    // An offset that came through a copy of memory must never become a slice outside the
    // mapping, or a misaligned one.
    assert!(heap.contains(off, len * 8), "a report room outside the family heap");
    // SAFETY: `off..off + 8 * len` is inside the heap's mapping and 64-byte aligned
    // (checked above); a room is allocated by `ReportRoom::new` with `WORDS` words and
    // freed by its parent only once the one child that writes it is dead; a spill is
    // allocated with `len` words by that child and freed by the parent after its death.
    // Atomics are valid for any bytes.
    unsafe { std::slice::from_raw_parts(heap.ptr(off).cast::<AtomicU64>(), len) }
}

fn get_bytes(from: &[AtomicU64], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len.next_multiple_of(8));
    for word in from.iter().take(len.div_ceil(8)) {
        out.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The parent's side: the block it made for one child, freed when dropped (once the child
/// has ended) or released ([`ReportRoom::release`]: once its fork server is done with it
/// too), or left with [`ReportRoom::leave`].
#[derive(Debug)]
pub(crate) struct ReportRoom {
    off: u64,
    /// The fork server the room's child was asked of ([`ReportRoom::asked_of`]; its pid, 0
    /// if not known), which may write the room until it is done with it: `None` for a
    /// `Fork` child's room, which only the child writes.
    asked: Option<u32>,
}

impl ReportRoom {
    /// An empty room.
    pub(crate) fn new() -> Result<Self, HeapFull> {
        let heap = Heap::get();
        let off = heap.alloc(ROOM)?;
        let w = words(heap, off, WORDS);
        for word in &w[1..GO_WORD] {
            word.store(0, Ordering::Relaxed);
        }
        go_word(heap, off).store(GO_PENDING, Ordering::Relaxed);
        child_word(heap, off).store(0, Ordering::Relaxed);
        w[0].store(0, Ordering::Release);
        Ok(Self { off, asked: None })
    }

    /// The room's child was asked of the fork server `server` (its pid, 0 if not known: a
    /// server being started again): the server writes the room after its answer (its go),
    /// so the room is freed only once the server is done with it, or dead
    /// ([`ReportRoom::release`], [`ReportRoom::leave_to_child`]).
    pub(crate) fn asked_of(&mut self, server: u32) {
        self.asked = Some(server);
    }

    /// Tells a child waiting in [`ChildRoom::wait_for_go`] to go on (its start went
    /// through).
    pub(crate) fn go(&self) {
        say(go_word(Heap::get(), self.off), GO_ON, false);
    }

    /// [`ReportRoom::go`] for the room of a fork-server child whose start went through (or
    /// was lost after the server's answer), and the requester's last touch of the room until
    /// it reads its child's end from the server ([`LET_GO`]): the server that reaps the child
    /// then takes the room, sends its copy ahead of the status and frees it
    /// ([`ReportRoom::copy_at`]); the requester reads the copy ([`ReportRoom::taken`]).
    pub(crate) fn go_and_let_go(&self) {
        let word = go_word(Heap::get(), self.off);
        say(word, GO_ON, false);
        // Release: the server that sees the flag sees every touch of ours before it.
        word.fetch_or(LET_GO, Ordering::Release);
    }

    /// The fork server, for the room at `off` of a kid it reaped: whether its requester let
    /// go of it ([`ReportRoom::go_and_let_go`]). False for an offset that is no room's place.
    pub(crate) fn let_go_at(off: u64) -> bool {
        let heap = Heap::get();
        off.is_multiple_of(64) && heap.contains(off, ROOM) && go_word(heap, off).load(Ordering::Acquire) & LET_GO != 0
    }

    /// Tells a child that may exist (its start failed after the request went) to exit
    /// without touching anything its boot message names. False if go was said first (by
    /// the server, once its answer went): the child then runs and takes its argument.
    #[must_use = "a stop said too late leaves the argument with the child"]
    pub(crate) fn stop(&self) -> bool {
        say(go_word(Heap::get(), self.off), GO_STOP, false) == GO_STOP
    }

    /// The fork server, done with the room at `off` (named by a request for which it forked
    /// a child) once it answered: its go if the answer `went` (its requester says go too,
    /// in case the server dies in between), and [`SERVER_DONE`], its last write to the room
    /// (its requester, which may have seen its child end already, frees the room only once
    /// that is set, or the server dead). An offset that is no room's place is ignored.
    ///
    /// True when the server's go is the first word said: its requester's stop then comes too
    /// late ([`ReportRoom::stop`]), so the requester never leaves the room to the child
    /// ([`ReportRoom::leave_to_child`]), and frees it only once it read the child's end from
    /// the server (its status), or never.
    pub(crate) fn answered_at(off: u64, went: bool) -> bool {
        let heap = Heap::get();
        off.is_multiple_of(64)
            && heap.contains(off, ROOM)
            && say(go_word(heap, off), if went { GO_ON } else { GO_PENDING }, true) == GO_ON
            && went
    }

    /// The requester of the room at `off`, once its request's connection ended with no
    /// answer (every copy of the server's end is closed): no server will write the room any
    /// more (a server closes a connection only after its last write to the room of a request
    /// it read on it, and a dead one writes nothing). Marked as that last write would mark it
    /// ([`SERVER_DONE`]): the room goes once its child, if one was forked, has ended, whatever
    /// server its [`ReportRoom::asked_of`] names (0 for a request whose server was being
    /// started again and never came). An offset that is no room's place is ignored.
    ///
    /// This needs the connection to be the requester's alone: its own end shut down, by any
    /// descriptor of the same socket, reads as the same end (`recv` returns 0, and no look
    /// at the socket tells the two apart). A bare `libc::fork` copy of the requester makes
    /// its own connection (`forkserver::request`, review35 M1).
    pub(crate) fn server_gone_at(off: u64) {
        let _ = Self::answered_at(off, false);
    }

    /// The fork server, right after it forked `pid` for the room at `off` (named by the
    /// request), before its answer: the child's pid, `yours` when it is its requester's own
    /// child (forked as its sibling). A requester whose start fails after that leaves the
    /// room until that child has ended ([`ReportRoom::leave_to_child`]). An offset that is
    /// no room's place is ignored.
    pub(crate) fn forked_at(off: u64, pid: u32, yours: bool) {
        let heap = Heap::get();
        if off.is_multiple_of(64) && heap.contains(off, ROOM) && pid & YOURS == 0 {
            child_word(heap, off).store(pid | if yours { YOURS } else { 0 }, Ordering::Release);
        }
    }

    /// The fork server, just before it forks a child for the room at `off` (named by the
    /// request): from now on a child may exist whose pid is not yet in the child word. An
    /// offset that is no room's place is ignored.
    pub(crate) fn forking_at(off: u64) {
        let heap = Heap::get();
        if off.is_multiple_of(64) && heap.contains(off, ROOM) {
            child_word(heap, off).store(FORKING, Ordering::Release);
        }
    }

    /// The child the fork server forked for the room at `off`, first thing: its own pid
    /// (`yours`: forked as its requester's sibling) in the child word, unless the server
    /// wrote it already (the same). A server killed as its fork returned leaves the pid to
    /// this.
    pub(crate) fn forked_here(off: u64, yours: bool) {
        let heap = Heap::get();
        if off.is_multiple_of(64) && heap.contains(off, ROOM) {
            let pid = sys::pid_now();
            if pid & YOURS == 0 {
                let word = child_word(heap, off);
                let _ = word.compare_exchange(
                    FORKING,
                    pid | if yours { YOURS } else { 0 },
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// The fork server, for the room at `off` named by a request for which it forks no
    /// child (its requester gave up on the answer before the server read it, or the fork
    /// failed): none will read the room, and the server is done with it (its last write,
    /// before any answer). An offset that is no room's place is ignored.
    pub(crate) fn unforked_at(off: u64) {
        let heap = Heap::get();
        if off.is_multiple_of(64) && heap.contains(off, ROOM) {
            child_word(heap, off).store(UNFORKED, Ordering::Release);
            say(go_word(heap, off), GO_PENDING, true);
        }
    }

    /// Leaves the room to the child that may read it (a start that failed after its
    /// request went, the child told to stop), and frees it once that child is known to
    /// have ended and its server ([`ReportRoom::asked_of`]) is done with it or dead
    /// ([`free_left_rooms`]): the fork server (or the child) wrote its pid in the child word
    /// when it forked it. A room whose child word is still empty once its server is dead
    /// had no child: it is freed then. One whose server is stopped stays until the server
    /// goes on (its pid, or `UNFORKED`, and its last write come) or dies.
    pub(crate) fn leave_to_child(self) {
        leave_for_later(self, false);
    }

    /// Frees the room, whose child has ended (its message taken), or leaves it until its
    /// fork server is done with it: a server says go after its answer went, and its
    /// requester may have seen the child end by then (the go of a server stopped, or slow,
    /// after its answer). The server's last write is waited for a moment
    /// ([`server_done_soon`]). Left, it is freed once that write is seen, or the server is
    /// dead ([`free_left_rooms`]).
    pub(crate) fn release(self) {
        if self.asked.is_some_and(|server| !server_done_soon(Heap::get(), self.off, server)) {
            leave_for_later(self, true);
        }
    }

    /// Where the child finds it ([`ChildRoom`]): called in the child, the one process
    /// that may write it.
    pub(crate) fn child(&self) -> ChildRoom {
        ChildRoom { off: self.off, pid: sys::pid_now() }
    }

    /// Its offset in the family heap, for a child that is no copy of this process (a
    /// fork-server child finds it in its boot message: [`ChildRoom::at`]).
    pub(crate) fn offset(&self) -> u64 {
        self.off
    }

    /// The message the child left, if it left one whole: read once the child is dead
    /// (its spill, if it made one, is freed).
    pub(crate) fn take(&mut self) -> Option<Vec<u8>> {
        let heap = Heap::get();
        let w = words(heap, self.off, WORDS);
        let what = w[0].swap(0, Ordering::Acquire);
        let len = w[1].load(Ordering::Relaxed) as usize;
        let spill = w[2].swap(0, Ordering::Relaxed);
        let spill_words = w[3].load(Ordering::Relaxed) as usize;
        let spill = (spill != 0 && heap.contains(spill, spill_words * 8)).then_some(spill);
        let message = match (what, spill) {
            (INLINE, _) if len <= INLINE_MAX => Some(get_bytes(&w[HEAD..], len)),
            (SPILLED, Some(at)) if len <= spill_words * 8 => Some(get_bytes(words(heap, at, spill_words), len)),
            _ => None,
        };
        if let Some(at) = spill {
            heap.free(at, spill_words * 8);
        }
        message
    }

    /// The key (`Blob::key`) of the outcome's blob the child named before its outcome's
    /// encoding counted it in flight ([`ChildRoom::name_blob`]), if it named one: for a
    /// parent whose [`ReportRoom::take`] found no outcome (the child died before its report
    /// committed), which then gives the blob back (`Blob::give_back_sent_by_dead`). Or the
    /// key of its result's undo, tagged (`receipts::named_result_undo`), given back
    /// whatever the room holds. Read once the child is dead.
    pub(crate) fn named_blob(&self) -> Option<[u64; 3]> {
        let w = words(Heap::get(), self.off, WORDS);
        let off = w[BLOB_OFF].load(Ordering::Relaxed);
        (off != 0).then(|| [off, w[BLOB_GENERATION].load(Ordering::Relaxed), 0])
    }

    /// The fork server, for the room at `off` of a child it reaped whose requester died
    /// before the child ended (`forkserver`'s `requester_died`): a requester frees its
    /// child's room only once it saw the child end, so nobody else frees this one, and
    /// nobody writes it any more (the child is reaped, the server answered). Freed with its
    /// spill. A named blob, or an outcome's handles, stay in the heap (nobody decodes them).
    /// An offset that is no room's place is ignored.
    pub(crate) fn free_orphan_at(off: u64) {
        if off.is_multiple_of(64) && Heap::get().contains(off, ROOM) {
            drop(Self { off, asked: None });
        }
    }

    /// Leaves the block to a child that may still write it (a leak of a few words).
    pub(crate) fn leave(self) {
        std::mem::forget(self);
    }

    /// The fork server, for the room at `off` of a child it reaped whose requester let go
    /// of the room ([`ReportRoom::go_and_let_go`]): copies what the child left into `out`
    /// and returns its length, for the server to send to the requester ahead of the child's
    /// status, and then to free the room ([`ReportRoom::free_orphan_at`]). `None` (the room
    /// stays the requester's to free, as before) when the requester has not let go yet (its
    /// child ended before its go), when the child made a spill (a message longer than the
    /// room, in a block of its own: the requester frees it), or for an offset that is no
    /// room's place.
    ///
    /// The copy goes first, then the room's record ([`ReportRoom::taking_at`]), then the
    /// free, and the status after all three: a requester that has a copy never touches the
    /// room; one that meets the end of the status pipe with no copy (the server died before
    /// it sent one, crash point `forkserver.room.copying`) reads the room and frees it, as
    /// before, and no record names it; a server killed between its record and its free
    /// (crash point `forkserver.room.taken`) leaves the room to the process that starts the
    /// server again ([`ReportRoom::free_taken_by_dead`]); one killed between its copy's
    /// write and its record, or between the record's clear and the free (a few
    /// instructions, no system call), leaks it; and a requester never sees its child's
    /// status before the room is freed (a join's caller may count the heap's bytes at
    /// once).
    pub(crate) fn copy_at(off: u64, out: &mut [u8; TAKEN_MAX]) -> Option<usize> {
        let heap = Heap::get();
        if !off.is_multiple_of(64) || !heap.contains(off, ROOM) {
            return None;
        }
        if go_word(heap, off).load(Ordering::Acquire) & LET_GO == 0 {
            return None;
        }
        let w = words(heap, off, WORDS);
        let what = w[0].load(Ordering::Acquire);
        if what == SPILLED || w[2].load(Ordering::Relaxed) != 0 {
            return None;
        }
        let len = w[1].load(Ordering::Relaxed) as usize;
        let message = if what == INLINE && len <= INLINE_MAX { len } else { 0 };
        let body = TAKEN_WORDS * 8 + message;
        out[..4].copy_from_slice(&TAKEN_MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&(body as u32).to_le_bytes());
        let mut at = 8;
        for word in &w[..TAKEN_WORDS] {
            out[at..at + 8].copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
            at += 8;
        }
        // Word by word, on the stack: the server's loop allocates nothing (each page of its
        // heap it writes is copied while a child shares it).
        for (i, word) in w[HEAD..].iter().take(message.div_ceil(8)).enumerate() {
            let n = (message - i * 8).min(8);
            out[at..at + n].copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes()[..n]);
            at += n;
        }
        Some(at)
    }

    /// The fork server `server` (its pid), its copy of the room at `off` it takes
    /// ([`ReportRoom::copy_at`]) sent: records the room in the heap's header
    /// (`Heap::room_taking`), so that a server killed before its free leaves it to the
    /// process that starts the server again ([`ReportRoom::free_taken_by_dead`]). Only once
    /// the copy went: a requester with no copy frees the room itself, and a record of it
    /// would have the restart free it a second time (review128 H1). The record, for
    /// [`ReportRoom::taken_at`];
    /// `None` when the word holds another server's record (a zygote's never: its children
    /// have no room), or the offset does not fit it: killed then, the room leaks, as before.
    pub(crate) fn taking_at(off: u64, server: u32) -> Option<u64> {
        let record = (u64::from(server) << TAKING_PID_SHIFT) | off >> 6;
        let fits = server != 0 && off >> 6 < 1 << TAKING_PID_SHIFT && u64::from(server) < 1 << (64 - TAKING_PID_SHIFT);
        let word = Heap::get().room_taking();
        (fits && word.compare_exchange(0, record, Ordering::AcqRel, Ordering::Relaxed).is_ok()).then_some(record)
    }

    /// The fork server, its copy of the room at `off` it took sent and recorded: clears its
    /// record ([`ReportRoom::taking_at`]), then frees the room. A room whose record somebody
    /// else cleared is theirs to free: only the process that starts the server again after
    /// its death does, so never while this one runs. A server killed between the clear and
    /// the free (no system call in between) leaks the room, as any process killed inside a
    /// free leaks the block.
    pub(crate) fn taken_at(off: u64, record: Option<u64>) {
        let word = Heap::get().room_taking();
        let ours =
            record.is_none_or(|record| word.compare_exchange(record, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok());
        if ours {
            Self::free_orphan_at(off);
        }
    }

    /// The process that starts the family's fork server again, once the one before died:
    /// frees the room a dead server was taking ([`ReportRoom::taking_at`]), whose copy its
    /// requester has (and never touches the room), when the record's server is dead (gone
    /// or a zombie), whichever server that was. A room recorded by a live server is left,
    /// for its own free, or for a later restart once it died: a restart that came while
    /// the server it follows was dying but not yet a zombie (its listener closed, `/proc`
    /// saying it runs) left the record, and one that looked only for the server it
    /// follows left it for good (review128 M1).
    ///
    /// Sound for any dead pid: only the family's fork server records (one at a time: a
    /// record is made only over 0), so a record names a server, and a dead one never
    /// clears it; a live process with that pid (reused) only makes this skip (a leak until
    /// it dies too). The caller runs one of these at a time (the main process, under a lock
    /// of its own), so that no other clear and new record of the same value come between
    /// this look and its clear.
    pub(crate) fn free_taken_by_dead() {
        let word = Heap::get().room_taking();
        let record = word.load(Ordering::Acquire);
        if record == 0 || sys::process_alive((record >> TAKING_PID_SHIFT) as u32, 0) {
            return;
        }
        if word.compare_exchange(record, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            Self::free_orphan_at((record & ((1 << TAKING_PID_SHIFT) - 1)) << 6);
        }
    }

    /// The copy of a room the fork server took ([`ReportRoom::copy_at`]) at the front of
    /// `read` (what the requester read from its status pipe), and what follows it; no copy
    /// when `read` does not start with one.
    pub(crate) fn split_taken(read: &[u8]) -> (Option<&[u8]>, &[u8]) {
        if read.len() < 8 || read[..4] != TAKEN_MAGIC.to_le_bytes() {
            return (None, read);
        }
        let body = u32::from_le_bytes([read[4], read[5], read[6], read[7]]) as usize;
        match read.get(8..8 + body) {
            Some(copy) if body <= TAKEN_MAX - 8 => (Some(copy), &read[8 + body..]),
            _ => (None, read),
        }
    }

    /// What the child left, as the fork server copied it before it freed the room
    /// ([`ReportRoom::copy_at`]): the message, if one was left whole, and the key it named
    /// ([`ReportRoom::named_blob`]). The room itself is the server's, never touched again.
    pub(crate) fn taken(self, copy: &[u8]) -> (Option<Vec<u8>>, Option<[u64; 3]>) {
        std::mem::forget(self);
        let word =
            |i: usize| copy.get(i * 8..i * 8 + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        let (what, len) = (word(0), word(1) as usize);
        let message = match copy.get(TAKEN_WORDS * 8..) {
            Some(bytes) if what == INLINE && len <= INLINE_MAX && bytes.len() == len => Some(bytes.to_vec()),
            _ => None,
        };
        let off = word(BLOB_OFF);
        (message, (off != 0).then(|| [off, word(BLOB_GENERATION), 0]))
    }
}

/// The head words a taken room's copy holds ([`ReportRoom::copy_at`]): what, the length,
/// the spill's two words (0), the named key's two.
const TAKEN_WORDS: usize = BLOB_GENERATION + 1;
/// The longest copy of a taken room: its mark and length (4 bytes each), its head words and
/// an inline message. Less than `PIPE_BUF`: written in one piece.
pub(crate) const TAKEN_MAX: usize = 8 + TAKEN_WORDS * 8 + INLINE_MAX;
/// The mark of a taken room's copy: no wait status (at most 16 bits) reads so.
const TAKEN_MAGIC: u32 = 0x6d6f_6f72;
/// Where the pid starts in a record of a room being taken ([`ReportRoom::taking_at`]):
/// below it the room's offset in 64-byte units (a heap of up to 64 TiB), above it the
/// server's pid (up to 2^24, above Linux's largest `pid_max`).
const TAKING_PID_SHIFT: u32 = 40;

/// Whether the fork server `server` (0: not known) is done with the room at `off`: it said
/// so ([`SERVER_DONE`], its last write), or it is dead (gone or a zombie). A pid reused
/// meanwhile reads as alive: the room waits, never freed early.
fn server_done(heap: &Heap, off: u64, server: u32) -> bool {
    go_word(heap, off).load(Ordering::Acquire) & SERVER_DONE != 0 || server != 0 && !sys::process_alive(server, 0)
}

/// How long a reap waits for the fork server's last write to its child's room
/// ([`server_done_soon`]) before it leaves the room for later,
const LAST_WRITE_WAIT: Duration = Duration::from_millis(20);
/// and the sleep between two looks.
const LAST_WRITE_LOOK: Duration = Duration::from_micros(100);

/// [`server_done`] for the room of a child that has ended, waited for up to
/// [`LAST_WRITE_WAIT`]: the child ran, so its server answered, and the server's last write
/// follows its answer within a few steps, unless the server lost its processor in between
/// (its answer woke its requester, which saw the child run to its end first: after a
/// restart, one start in four, the write came some 200 µs later). A room left for later is
/// freed only at this process's next fork-server start (or `active_children`): a process
/// that makes none keeps it for its life, a child process for good. A server stopped or
/// held after its answer costs the reap the whole wait, and keeps the room.
fn server_done_soon(heap: &Heap, off: u64, server: u32) -> bool {
    let since = Instant::now();
    loop {
        if server_done(heap, off, server) {
            return true;
        }
        if since.elapsed() >= LAST_WRITE_WAIT {
            return false;
        }
        // Looked, and waits on: a test holds a reap here while its server goes on.
        crash_point!("process.report.release.waits");
        std::thread::sleep(LAST_WRITE_LOOK);
    }
}

/// Puts `room` on [`LEFT`]; `ended`: its child has ended (reaped), only its server's last
/// write is waited for.
fn leave_for_later(room: ReportRoom, ended: bool) {
    // Not kept (a fork copy): leaked, its server or child may still write it.
    LEFT.leave((room, ended), |(room, _)| room.leave());
}

/// Rooms left to a child whose start failed ([`ReportRoom::leave_to_child`]) or to a fork
/// server not yet done with them ([`ReportRoom::release`]), and whether the child is known
/// to have ended.
static LEFT: LeftBehind<(ReportRoom, bool)> = LeftBehind::new();

/// What this process left to finish later (the fork server's rooms and boot-socket copies
/// of starts that failed), each with the process that left it: a fork copy of the process
/// has a copy of the list, whose entries are not its own. Its length beside it lets the
/// look at every fork-server start skip the lock when it is empty. The lock is never
/// waited for without bound: a fork copy (`allow_fork_with_threads`) may have it as
/// another thread of its parent held it, a thread the copy does not have.
pub(crate) struct LeftBehind<T> {
    list: std::sync::Mutex<Vec<(u32, T)>>,
    len: std::sync::atomic::AtomicUsize,
    /// The process whose thread holds the lock (0: nobody, or a thread between the lock and
    /// this store): another pid in a fork copy means the lock will never be let go.
    holder: AtomicU32,
}

/// [`LeftBehind`]'s list, locked, with its holder noted (cleared before the unlock).
struct LeftList<'a, T> {
    list: std::sync::MutexGuard<'a, Vec<(u32, T)>>,
    holder: &'a AtomicU32,
}

impl<T> Drop for LeftList<'_, T> {
    fn drop(&mut self) {
        self.holder.store(0, Ordering::Relaxed);
    }
}

/// How long [`LeftBehind::leave`] waits for a lock held by this process's own threads (a
/// sweep reads `/proc` under it: milliseconds on a loaded machine) before it gives its item
/// up (a lock held, copied, at a fork whose parent had not yet noted its holder).
const LEAVE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

impl<T> LeftBehind<T> {
    pub(crate) const fn new() -> Self {
        Self {
            list: std::sync::Mutex::new(Vec::new()),
            len: std::sync::atomic::AtomicUsize::new(0),
            holder: AtomicU32::new(0),
        }
    }

    /// The list, if its lock is free now (`None`: held, maybe by a thread this fork copy
    /// does not have).
    fn try_list(&self) -> Option<LeftList<'_, T>> {
        let list = match self.list.try_lock() {
            Ok(list) => list,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        self.holder.store(sys::pid_now(), Ordering::Relaxed);
        Some(LeftList { list, holder: &self.holder })
    }

    /// Leaves `item`, this process's, to a later [`LeftBehind::sweep`]; or, when the list's
    /// lock is held by a thread of another process (this is a fork copy of it), or for
    /// longer than [`LEAVE_PATIENCE`], gives it to `not_left` (a leak, for a room another
    /// process may write).
    pub(crate) fn leave(&self, item: T, not_left: impl FnOnce(T)) {
        let me = sys::pid_now();
        let since = std::time::Instant::now();
        let mut list = loop {
            if let Some(list) = self.try_list() {
                break list;
            }
            let holder = self.holder.load(Ordering::Relaxed);
            if (holder != 0 && holder != me) || since.elapsed() > LEAVE_PATIENCE {
                log::debug!("a left item not kept: the list's lock is held by process {holder}");
                return not_left(item);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        list.list.push((me, item));
        self.len.store(list.list.len(), Ordering::Relaxed);
    }

    /// Whether an item left, this process's or not, is such.
    #[cfg(test)]
    fn any(&self, such: impl Fn(&T) -> bool) -> bool {
        self.list.lock().unwrap().iter().any(|(_, item)| such(item))
    }

    /// Keeps this process's items for which `keep` says so, and drops the others; a fork
    /// copy's items (another process's) go to `not_ours`. Not waited for: its lock may be
    /// held by another thread of this process, or of its parent (a fork copy's).
    pub(crate) fn sweep(&self, mut keep: impl FnMut(&mut T) -> bool, mut not_ours: impl FnMut(T)) {
        if self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Some(mut list) = self.try_list() else { return };
        let me = sys::pid_now();
        let mut kept = Vec::with_capacity(list.list.len());
        for (owner, mut item) in list.list.drain(..) {
            if owner != me {
                not_ours(item);
            } else if keep(&mut item) {
                kept.push((owner, item));
            }
        }
        *list.list = kept;
        self.len.store(list.list.len(), Ordering::Relaxed);
    }
}

/// Frees the rooms left to children whose starts failed ([`ReportRoom::leave_to_child`]) or
/// to servers not yet done with them ([`ReportRoom::release`]), once the room's fork server
/// is done with it (it says so last: [`SERVER_DONE`]) or dead, and its child has ended: a
/// child of this process (forked as its sibling) is reaped here (nothing else knows it),
/// another's is looked for (every thread of it gone: it touches nothing any more). A room whose
/// child word is still empty once its server is dead had no child: the server writes
/// [`FORKING`] there before it forks. Called at each fork-server start and by
/// `active_children`.
pub(crate) fn free_left_rooms() {
    let heap = Heap::get();
    LEFT.sweep(
        |(room, ended)| {
            // First: a child of ours is reaped only once the room can go (its pid is the
            // room's only record of it).
            let free = server_done(heap, room.off, room.asked.unwrap_or(0))
                && (*ended || {
                    // After the server's last write (or its death): the child word is final, but
                    // for the child's own write of its pid over `FORKING`.
                    let child = child_word(heap, room.off).load(Ordering::Acquire);
                    let pid = child & !YOURS;
                    match child {
                        // No child was forked (or the server died before its fork).
                        0 | UNFORKED => true,
                        // A server killed inside its fork: a child may yet write its pid.
                        FORKING => false,
                        // Our own child, which nobody else reaps: it keeps its pid until reaped.
                        _ if child & YOURS != 0 => match sys::reap_child_if_ended(pid) {
                            Ok(reaped) => reaped,
                            Err(_) => sys::ended_whole(pid),
                        },
                        // Another's child (the server's): ended as its pidfd says, every thread
                        // of it gone, it touches nothing. As the server judges it when this
                        // process dies (`requester_died`, which makes a room of a kid not ended
                        // its own to free): a leader ended while its other threads ran is a
                        // zombie in `/proc`, and freed here on that look, the room was freed
                        // again by the server (review91 L1). A pid reused meanwhile reads as
                        // not ended: the room waits, never freed early.
                        _ => sys::ended_whole(pid),
                    }
                });
            !free
        },
        // A copy of another process's list (we were forked): its rooms are not ours.
        std::mem::forget,
    );
}

impl Drop for ReportRoom {
    fn drop(&mut self) {
        // A message never taken (a spill with it).
        let _ = self.take();
        Heap::get().free(self.off, ROOM);
    }
}

/// The child's side of a [`ReportRoom`]: its copy of the parent's, which it never frees.
///
/// Only the child writes it: a copy of the child made by a bare `fork` (the program's own
/// `libc::fork`) has a copy of this too, and may outlive the child, whose parent then
/// frees the room or gives it to another child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildRoom {
    off: u64,
    /// The child's pid.
    pid: u32,
}

impl ChildRoom {
    /// The room at `off` of the family heap ([`ReportRoom::offset`]), for the calling
    /// process, the one that may write it; `None` for an offset that is no room's place.
    pub(crate) fn at(off: u64) -> Option<Self> {
        Heap::get().contains(off, ROOM).then(|| ChildRoom { off, pid: sys::pid_now() })
    }

    /// Waits until the requester said go ([`ReportRoom::go`]: true) or stop (false). A
    /// requester that dies without saying either takes this child with it (the child dies
    /// with its parent, the requester or the server, which kills a dead requester's
    /// children). Reads and writes only the go word.
    pub(crate) fn wait_for_go(self) -> bool {
        let word = go_word(Heap::get(), self.off);
        // The requester says go as soon as the server's answer comes, which the server
        // sends right after its fork: mostly before this spin ends, which saves the child
        // a sleep and its requester a wake-up (two context switches per start).
        let said = super::wait::spin_for(GO_SPIN, || match word.load(Ordering::Acquire) & GO_STATE {
            GO_PENDING => None,
            what => Some(what),
        });
        match said {
            Some(GO_ON) => return true,
            Some(GO_STOP) => return false,
            _ => {}
        }
        loop {
            // The server's flag (`SERVER_DONE`) may come with any state, and is kept.
            let now = word.load(Ordering::Acquire);
            match now & GO_STATE {
                GO_ON => return true,
                GO_PENDING => {
                    let _ = word.compare_exchange(now, now | GO_ASLEEP, Ordering::Acquire, Ordering::Acquire);
                }
                GO_ASLEEP => {
                    sys::futex_wait(word, now, None);
                }
                _ => return false,
            }
        }
    }

    /// Whether the calling process is the room's child (a fork copy of it has a copy of
    /// this).
    pub(crate) fn is_mine(self) -> bool {
        sys::pid_now() == self.pid
    }

    /// Waits, at this process's end, until the requester or parent said go or stop: at
    /// once for a fork-server child (which waited for its go before it ran) and mostly for a
    /// `Fork` child, whose parent says go once it has opened the child's pidfd, so that a
    /// program that reaps children itself (a `SIGCHLD` it ignores, its own wait for any
    /// child) cannot reap the child before its start looked at it (audp61: the start
    /// failed, "reaped by the program"). A parent that dies first takes the child with it
    /// (its parent-death signal). Inlined, one load: a call out of line, or a write to a
    /// page of this process's own, would be a page fault more for every fork child.
    #[inline]
    pub(crate) fn wait_to_end(self) {
        let said = go_word(Heap::get(), self.off).load(Ordering::Acquire) & GO_STATE;
        if said == GO_PENDING || said == GO_ASLEEP {
            self.wait_to_end_slowly();
        }
    }

    #[cold]
    #[inline(never)]
    fn wait_to_end_slowly(self) {
        // A bare `fork` copy of the child (the program's own `libc::fork`, its copy
        // returning from the target) has a copy of this: it neither sleeps on the word nor
        // writes it. Asleep there, it took the one wake-up the go gives, and the child slept
        // for ever (review111 H1); past the child's end, the room may be another object's.
        if !self.is_mine() {
            return;
        }
        // Stop or go, the end goes on: the parent has looked, or gave the start up.
        let _ = self.wait_for_go();
    }

    /// Leaves `message` for the parent; false if it cannot (a message too long for the room
    /// and a heap too full for it, a message left already, or a caller that is not the
    /// child).
    pub(crate) fn write(self, message: &[u8]) -> bool {
        if sys::pid_now() != self.pid {
            return false;
        }
        let heap = Heap::get();
        let w = words(heap, self.off, WORDS);
        if w[0].load(Ordering::Relaxed) != 0 || w[2].load(Ordering::Relaxed) != 0 {
            return false;
        }
        let to = if message.len() <= INLINE_MAX {
            &w[HEAD..]
        } else {
            let spill_words = message.len().div_ceil(8);
            w[3].store(spill_words as u64, Ordering::Relaxed);
            let Ok(at) = heap.alloc_into(spill_words * 8, &w[2]) else { return false };
            words(heap, at, spill_words)
        };
        sys::put_room_bytes(to, message);
        // Written, not yet said: a child killed here leaves no outcome (and its spill to
        // the parent).
        crash_point!("process.report.room");
        sys::commit_room(w, message.len(), if message.len() <= INLINE_MAX { INLINE } else { SPILLED });
        true
    }

    /// Names the blob of the outcome about to be written (its `Blob::key`), before the
    /// outcome's encoding counts it in flight: a child killed before its report commits
    /// leaves the parent the key, and the parent gives the blob back once the child is dead
    /// ([`ReportRoom::named_blob`]). Killed before this, the child alone holds the blob, and
    /// whoever reaps it frees it. The generation first, the offset (which says a blob is
    /// named) last: a kill between the two names none.
    pub(crate) fn name_blob(self, key: [u64; 3]) {
        if sys::pid_now() != self.pid {
            return;
        }
        let w = words(Heap::get(), self.off, WORDS);
        w[BLOB_GENERATION].store(key[1], Ordering::Relaxed);
        w[BLOB_OFF].store(key[0], Ordering::Relaxed);
    }

    /// The room's words, for a signal handler that writes a message known to fit
    /// (`sys`'s `write_room`, armed by the child itself): the room outlives the child.
    /// Inlined: out of line, it was a 64 KiB window of code of its own for a fork child.
    #[inline]
    pub(crate) fn words(self) -> &'static [AtomicU64] {
        words(Heap::get(), self.off, WORDS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// A fork copy made while another thread of its parent sweeps a list gets the list's
    /// lock held by a thread it does not have: its leave gives its item up instead of
    /// waiting for ever (review33 F4: it hung).
    #[test]
    fn a_fork_copy_made_during_a_sweep_leaves_without_waiting() {
        static LIST: LeftBehind<u32> = LeftBehind::new();
        LIST.leave(1, |_| unreachable!("nobody else holds the lock"));
        let (in_sweep_tx, in_sweep_rx) = std::sync::mpsc::channel();
        let (go_on_tx, go_on_rx) = std::sync::mpsc::channel::<()>();
        let sweeper = std::thread::spawn(move || {
            LIST.sweep(
                |_| {
                    in_sweep_tx.send(()).unwrap();
                    let _ = go_on_rx.recv();
                    false
                },
                drop,
            );
        });
        in_sweep_rx.recv().unwrap();
        match sys::fork().unwrap() {
            sys::Forked::Child => {
                let mut given_up = false;
                LIST.leave(2, |_| given_up = true);
                // Never `exit_now`: it takes stdout's lock, which the harness's thread may
                // have held at the fork (review128 M2).
                sys::exit_group(if given_up { 0 } else { 1 });
            }
            sys::Forked::Parent(pid) => {
                // Killed if it has not ended within 10 s (it waits on the list's lock).
                let ended = crate::testing::ForkChild::new(pid).wait(Duration::from_secs(10));
                go_on_tx.send(()).unwrap();
                sweeper.join().unwrap();
                assert!(matches!(ended, sys::Ended::Exited(0)), "the fork copy's leave: {ended:?}");
            }
        }
    }

    /// res101: a room the fork server records as taking (`taking_at`) is freed by the
    /// server's restart only when the record names the dead server, and that one is dead (a
    /// zombie here); a live server's record is left, and a record cleared by the restart
    /// is not the server's to free (`taken_at`). Exactly once: the heap comes back.
    #[test]
    fn a_room_a_dead_server_was_taking_is_freed_once_by_its_restart() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let dead = a_zombie();
        let pid = dead.pid();
        let before = heap.in_use();
        let room = ReportRoom::new().unwrap();
        let off = room.off;
        std::mem::forget(room);
        // A live server's record (this process's) is left by a restart; the server then
        // clears it and frees the room itself.
        let record = ReportRoom::taking_at(off, sys::pid_now());
        assert!(record.is_some(), "the word was free");
        assert_eq!(ReportRoom::taking_at(off, pid), None, "a second record while one stands");
        ReportRoom::free_taken_by_dead();
        assert_eq!(heap.in_use(), before + ROOM as u64, "a live server's room freed by a restart");
        ReportRoom::taken_at(off, record);
        assert_eq!(heap.in_use(), before, "the live server's own free");
        assert_eq!(heap.room_taking().load(Ordering::Relaxed), 0, "the record cleared");
        // A dead server's record: freed by the restart, and not again by a server that
        // went on (it finds its record cleared), nor by a second restart.
        let room = ReportRoom::new().unwrap();
        let off = room.off;
        std::mem::forget(room);
        let record = ReportRoom::taking_at(off, pid);
        assert!(record.is_some(), "the word was free");
        ReportRoom::free_taken_by_dead();
        assert_eq!(heap.in_use(), before, "the dead server's room freed by its restart");
        ReportRoom::taken_at(off, record);
        ReportRoom::free_taken_by_dead();
        assert_eq!(heap.in_use(), before, "freed once");
        drop(dead);
    }

    /// A fork child of this test that ends at once (with `exit_group`: review128 M2), once
    /// a zombie (dead, not reaped: its pid names no other process).
    fn a_zombie() -> crate::testing::ForkChild {
        let child = match sys::fork().unwrap() {
            sys::Forked::Child => sys::exit_group(0),
            sys::Forked::Parent(pid) => crate::testing::ForkChild::new(pid),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while sys::process_alive(child.pid(), 0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!sys::process_alive(child.pid(), 0), "the child a zombie");
        child
    }

    /// review128 M1: a restart that ran while the server it followed was dying but not yet
    /// a zombie (its listener closed, `/proc` still saying it runs) left that server's
    /// record; the next restart names the next dead server, and left it too, for good (the
    /// room leaked, and the word stayed busy: every later take of a room went unrecorded).
    /// Any restart frees a record whose server is dead, whichever server it follows.
    #[test]
    fn a_room_an_earlier_dead_server_was_taking_is_freed_by_a_later_restart() {
        let _serial = crate::shm::heap_test_lock();
        let heap = Heap::get();
        let (earlier, later) = (a_zombie(), a_zombie());
        let before = heap.in_use();
        let room = ReportRoom::new().unwrap();
        let off = room.off;
        std::mem::forget(room);
        let record = ReportRoom::taking_at(off, earlier.pid());
        assert!(record.is_some(), "the word was free");
        // The restart that followed `earlier` missed it (it still ran); this one follows
        // `later`.
        ReportRoom::free_taken_by_dead();
        let left = heap.in_use() as i64 - before as i64;
        let word = heap.room_taking().load(Ordering::Relaxed);
        if word != 0 {
            // Not freed: clear and free it, so that the heap is left as found.
            ReportRoom::taken_at(off, record);
        }
        assert_eq!((left, word), (0, 0), "an earlier dead server's room left by a later restart");
        drop((earlier, later));
    }

    /// review91 L1: a room left to a child whose main thread ended while another thread of
    /// it runs (a zombie leader, which may still write the room) stays until the whole child
    /// is gone: judged by `/proc` (a zombie: dead), it was freed at once, where the fork
    /// server, judging by the pidfd (not ended), would free it again once this process died.
    #[test]
    fn a_room_left_to_a_child_whose_main_thread_ended_waits_for_its_other_threads() {
        let _serial = crate::shm::heap_test_lock();
        let (read, write) = sys::pipe().unwrap();
        let child = match sys::fork().unwrap() {
            sys::Forked::Child => {
                drop(write);
                std::thread::spawn(move || {
                    let _ = sys::read_some(read.as_fd(), &mut [0u8; 1]);
                    // Never `exit_now`: it takes stdout's lock, which the harness's thread
                    // may have held at the fork, and the child waited for it for ever (20
                    // minutes, until killed: review128 M2).
                    sys::exit_group(0)
                });
                // SAFETY: `exit(2)` ends this thread alone, not the process: the
                // thread above goes on, and ends the process at its pipe's end of file.
                unsafe { libc::syscall(libc::SYS_exit, 0) };
                unreachable!("the main thread exited");
            }
            sys::Forked::Parent(pid) => crate::testing::ForkChild::new(pid),
        };
        let pid = child.pid();
        drop(read);
        let deadline = Instant::now() + Duration::from_secs(60);
        while sys::process_alive(pid, 0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Else the room is kept because the child simply runs, and nothing is tested
        // (review97 L8).
        assert!(!sys::process_alive(pid, 0), "the child's leader a zombie (its other thread running)");
        let room = ReportRoom::new().unwrap();
        let off = room.off;
        ReportRoom::forked_at(off, pid, false);
        let _ = ReportRoom::answered_at(off, false);
        room.leave_to_child();
        let left = || {
            let mut found = false;
            LEFT.sweep(
                |(room, _)| {
                    found |= room.off == off;
                    true
                },
                std::mem::forget,
            );
            found
        };
        free_left_rooms();
        let kept = left();
        drop(write);
        let ended = child.wait(Duration::from_secs(60));
        free_left_rooms();
        let freed = !left();
        assert_eq!(ended, sys::Ended::Exited(0), "how the child ended");
        assert!(kept, "a room freed while its child's other thread ran (its leader a zombie)");
        assert!(freed, "the room of a child gone");
    }

    /// The first of go and stop is the one the child acts on; a stop said after the
    /// server's go knows it came too late.
    #[test]
    fn the_first_word_said_is_the_one_the_child_hears() {
        let _serial = crate::shm::heap_test_lock();
        let room = ReportRoom::new().unwrap();
        let _ = ReportRoom::answered_at(room.off, true);
        assert!(!room.stop(), "a stop after the server's go came too late");
        assert!(room.child().wait_for_go(), "the child goes on");

        let room = ReportRoom::new().unwrap();
        assert!(room.stop());
        room.go();
        let _ = ReportRoom::answered_at(room.off, true);
        assert!(!room.child().wait_for_go(), "the child stops");
    }

    /// A room whose child ended is freed only once the fork server that forked the child is
    /// done with it (its go after its answer is its last write), or dead.
    #[test]
    fn a_room_waits_for_its_fork_servers_last_write() {
        let _serial = crate::shm::heap_test_lock();
        let left = |off| LEFT.any(|(room, _)| room.off == off);
        // Its server (this process, alive) has not said its go yet.
        let mut room = ReportRoom::new().unwrap();
        room.asked_of(sys::pid_now());
        room.go();
        let off = room.off;
        room.release();
        free_left_rooms();
        assert!(left(off), "freed before its server's last write");
        let _ = ReportRoom::answered_at(off, true);
        free_left_rooms();
        assert!(!left(off), "freed once its server said its go");
        // Said before the child ended: freed at once.
        let mut room = ReportRoom::new().unwrap();
        room.asked_of(sys::pid_now());
        let _ = ReportRoom::answered_at(room.off, true);
        room.go();
        let off = room.off;
        room.release();
        assert!(!left(off), "its server was done with it");
        // A `Fork` child's room: only the child writes it.
        let room = ReportRoom::new().unwrap();
        let off = room.off;
        room.release();
        assert!(!left(off), "no server writes a Fork child's room");
    }

    /// A room left by a start whose server is not known (pid 0: one being started again)
    /// stays while a server may still read its request, and goes once its requester saw the
    /// request's connection end unanswered (no server writes it then; its child word, still
    /// 0, says no child was forked).
    #[test]
    fn a_room_of_no_known_server_goes_once_its_connection_ended() {
        let _serial = crate::shm::heap_test_lock();
        let left = |off| LEFT.any(|(room, _)| room.off == off);
        let mut room = ReportRoom::new().unwrap();
        room.asked_of(0);
        assert!(room.stop());
        let off = room.off;
        room.leave_to_child();
        free_left_rooms();
        assert!(left(off), "freed while a server may still read its request");
        ReportRoom::server_gone_at(off);
        free_left_rooms();
        assert!(!left(off), "no server writes it, and no child was forked for it");
    }
}
