//! A `map` with chunk size 1 without a message per task: the items written once into a
//! [`ClaimTable`], one message per worker (a *seat*), the workers claiming the items one
//! at a time and writing the results by index, and one delivery once every seat has
//! answered. The outcome is the one the message path gives: the values in order, or the
//! first failing item's error; a worker killed while it held an item fails the call at once
//! with its own [`TaskError::WorkerLost`] (as a chunk's loss does), one killed between items
//! costs nothing (its seat is taken by another worker), `terminate` fails the call with
//! [`TaskError::Terminated`]. A large map is cut into a few pieces, a table each, delivered
//! as chunks of its sink ([`piece_ends`]): the parent encodes the next pieces while the
//! workers run the first, and decodes each piece while they run the next.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::engine::{Delivery, Engine, Job};
use super::error::{PoolError, TaskError};
use super::result::{Chunk, ChunkOutcome, Sink, count};
use super::stats::Counters;
use crate::codec;
use crate::error::PanicInfo;
use crate::process::panics;
use crate::shm::{self, ClaimTable, Payload, Reaped, Results, TakenIn, Written};
use crate::sys::Packed;

/// Encodes `items` one after the other, with where each ends; the handles among them are
/// counted in flight (an item never claimed is decoded and dropped).
fn encode_items<A: Serialize + DeserializeOwned>(items: &[A]) -> Result<(Vec<u8>, Vec<u64>, bool), PoolError> {
    let mut bytes = Vec::with_capacity(items.len() * 4);
    let mut ends = Vec::with_capacity(items.len());
    let encoded = codec::encode_items(items, &mut bytes, &mut ends)?;
    let handles = encoded.has_handles();
    // The handles now travel in the table.
    encoded.sent();
    Ok((bytes, ends, handles))
}

/// The table of `items` of a [`codec::plain`] type, each encoded straight into it (its
/// size measured by a first encoding into a scratch buffer): no buffer of all the items
/// and no offsets to fill, then copy. `None` for other types, or if an item does not
/// encode plainly ([`encode_items`] then encodes them).
fn plain_table<A: Serialize + DeserializeOwned>(
    items: &[A],
    seats: usize,
) -> Result<Option<ClaimTable>, shm::HeapFull> {
    if !codec::plain::<A>() {
        return Ok(None);
    }
    let mut scratch = [0; codec::PLAIN_MAX];
    let mut input_len = 0;
    for item in items {
        let Some(len) = codec::encode_plain(item, &mut scratch) else { return Ok(None) };
        input_len += len;
    }
    ClaimTable::encoded(items.len(), input_len, seats, drop_item::<A>, |i, room| codec::encode_plain(&items[i], room))
}

/// Decodes and drops one item nobody took, giving back the handles its decoding did not
/// read. (review41 L3's test: an item whose `Deserialize` stops before its pipe end, left
/// unclaimed by a map that failed at an earlier item, kept the end's counts in flight for
/// ever, and its other end never saw the end of the stream.) The item is a user value:
/// its `Drop`, user code, runs under a catch (review166 H1), as its `Deserialize` does.
fn drop_item<A: DeserializeOwned>(bytes: &[u8]) {
    panics::drop_caught(decode_result::<A>(bytes));
}

fn discard(bytes: &[u8], ends: &[u64], range: std::ops::Range<usize>, drop: fn(&[u8])) {
    for i in range {
        let start = if i == 0 { 0 } else { ends[i - 1] as usize };
        drop(&bytes[start..ends[i] as usize]);
    }
}

/// Items per piece, about, at least: a piece costs a seat and its answer per worker, and
/// a table under 256 KiB (about 3 500 small items: 64 bytes of entry, 8 of end and the input bytes each) is not kept warm by the heap, so the
/// first and last pieces (half this) should be larger than that.
const PIECE_MIN: usize = 20_000;
/// At most this many tables for one map.
const PIECES_MAX: usize = 8;

/// Where each piece of a map of `items` ends: one piece below `3 * PIECE_MIN` items, else
/// up to [`PIECES_MAX`] whose first and last are half the size of the others (the
/// parent's serial work is encoding the first and decoding the last; it encodes the
/// others while the workers run the first, and decodes each while they run the next).
fn piece_ends(items: usize) -> Vec<usize> {
    let pieces = (items / PIECE_MIN).clamp(1, PIECES_MAX);
    if pieces <= 2 {
        return vec![items];
    }
    let units = 2 * (pieces - 1);
    let mut ends = Vec::with_capacity(pieces);
    let mut unit = 0;
    for piece in 0..pieces {
        unit += if piece == 0 || piece == pieces - 1 { 1 } else { 2 };
        ends.push(items * unit / units);
    }
    ends
}

/// How many pieces (tables, and chunks of the sink) a map of `items` takes.
pub(crate) fn pieces(items: usize) -> usize {
    piece_ends(items).len()
}

/// Starts `call` over `items` on the claims path of `engine`, delivering to `sink` (made
/// with one chunk per piece of [`piece_ends`]`(items.len())`): a table per piece, each
/// delivered as its own chunk, the workers running one while the parent encodes the next.
pub(crate) fn submit<A: Serialize + DeserializeOwned, R: DeserializeOwned + Send + 'static>(
    engine: &dyn Engine,
    call: Packed,
    items: &[A],
    sink: Arc<dyn Sink<R>>,
) -> Result<(), PoolError> {
    let mut started: Vec<ClaimTable> = Vec::new();
    let mut from = 0;
    for (chunk, end) in piece_ends(items.len()).into_iter().enumerate() {
        match submit_piece(engine, call, &items[from..end], chunk, sink.clone()) {
            Ok(table) => started.push(table),
            Err(e) => {
                // The caller has the error, and nobody the pieces started: their workers
                // stop claiming.
                for table in &started {
                    table.stop();
                }
                return Err(e);
            }
        }
        from = end;
    }
    Ok(())
}

/// One piece of [`submit`]: its table, delivered to `sink` as chunk `chunk`.
fn submit_piece<A: Serialize + DeserializeOwned, R: DeserializeOwned + Send + 'static>(
    engine: &dyn Engine,
    call: Packed,
    items: &[A],
    chunk: usize,
    sink: Arc<dyn Sink<R>>,
) -> Result<ClaimTable, PoolError> {
    let table = match plain_table(items, engine.workers()) {
        Ok(Some(table)) => table,
        Ok(None) => {
            let (bytes, ends, handles) = encode_items(items)?;
            match ClaimTable::new(&bytes, &ends, engine.workers(), handles, drop_item::<A>) {
                Ok(table) => table,
                Err(e) => {
                    discard(&bytes, &ends, 0..items.len(), drop_item::<A>);
                    return Err(PoolError::Codec(crate::CodecError::encode(format_args!("{e}"))));
                }
            }
        }
        // Plain items hold nothing to give back.
        Err(e) => return Err(PoolError::Codec(crate::CodecError::encode(format_args!("{e}")))),
    };
    let seats = engine.workers().min(items.len()).max(1);
    let claimed = Arc::new(Claimed::<R> {
        table: table.clone(),
        chunk,
        sink,
        counters: engine.counters().clone(),
        seats: AtomicUsize::new(seats),
        settled: Mutex::new(Settled::default()),
        finished: AtomicBool::new(false),
        drop_item: drop_item::<A>,
        made_in: TakenIn::here(),
    });
    for sent in 0..seats {
        let job = claimed.seat(call, &table);
        if let Err(e) = engine.submit(job) {
            // The seats already sent are answered; these never will be. The caller has the
            // error, and nobody the outcome.
            claimed.table.stop();
            for _ in sent..seats {
                claimed.settle(Ok(()));
            }
            return Err(e);
        }
    }
    Ok(table)
}

/// What the seats' answers said.
#[derive(Default)]
struct Settled {
    /// The first worker lost while in the call (for the item it held, if it held one).
    lost: Option<TaskError>,
    terminated: bool,
    /// The item whose failure was delivered before every seat answered.
    failed_early: Option<usize>,
    /// Items held by workers that died, each with its own worker's error.
    held: Vec<(usize, TaskError)>,
    /// Items a dead worker may have held ([`Reaped::Unsure`]): its own if still unwritten
    /// once no worker is in the call.
    unsure: Vec<(usize, TaskError)>,
}

impl Settled {
    /// The error of item `i`, claimed and never written: its dead worker's.
    fn lost_error(&self, i: usize) -> TaskError {
        let own = self.held.iter().chain(&self.unsure).find(|(held, _)| *held == i);
        own.map(|(_, e)| e.clone()).or_else(|| self.lost.clone()).unwrap_or(TaskError::Terminated)
    }
}

/// One call on the claims path: the delivery of each of its seats.
struct Claimed<R: DeserializeOwned + Send + 'static> {
    table: ClaimTable,
    /// The sink's chunk this table's outcome is.
    chunk: usize,
    sink: Arc<dyn Sink<R>>,
    counters: Arc<Counters>,
    /// Seats not answered yet.
    seats: AtomicUsize,
    settled: Mutex<Settled>,
    /// Delivered (or found cancelled) and cleaned up.
    finished: AtomicBool,
    /// Decodes and drops an encoded item (an item nobody will run).
    drop_item: fn(&[u8]),
    /// The process that made the call. A copy that fork made in a child (in the books of a
    /// pool's copy there) ends its own sink's chunk `Terminated` and acts on nothing of
    /// the table, which is the parent's: its items, claims and results are the parent's
    /// call's, whose workers still claim and write them.
    made_in: TakenIn,
}

impl<R: DeserializeOwned + Send + 'static> Claimed<R> {
    fn seat(self: &Arc<Self>, call: Packed, table: &ClaimTable) -> Job {
        Job {
            chunk: self.chunk,
            items: 0,
            call,
            args: Payload::Inline(Vec::new()),
            timeout: None,
            delivery: self.clone(),
            discard: |_| {},
            claims: Some(table.clone()),
            undo: Default::default(),
        }
    }

    /// A seat's answer.
    fn settle(&self, outcome: Result<(), TaskError>) {
        let answered = outcome.is_ok();
        if outcome.is_err() {
            self.fail_held();
        }
        {
            let mut settled = super::supervisor::lock(&self.settled);
            match outcome {
                Ok(()) => {}
                Err(TaskError::Terminated) => settled.terminated = true,
                Err(e) => {
                    settled.lost.get_or_insert(e);
                }
            }
        }
        if answered && self.table.stopped() {
            // A task failed (its worker stopped the claims and answered): the call fails at
            // once, as on the message path, without waiting for the tasks still running.
            self.fail_early();
        }
        if self.seats.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish();
        }
    }

    /// Delivers the first failure written, if the call has not failed already.
    fn fail_early(&self) {
        if self.sink.cancelled() {
            return;
        }
        let results = self.table.results();
        let first = (0..self.table.claimed())
            .find(|&i| matches!(results.get(i), Some((Written::Panicked | Written::Failed, _))));
        let Some(i) = first else { return };
        let mut failed = Chunk { values: Vec::new(), failures: Vec::new() };
        self.sort(&mut failed, &results, i, None, &Settled::default());
        let Some((_, e)) = failed.failures.pop() else { return };
        self.deliver_early(super::supervisor::lock(&self.settled), i, e);
    }

    /// Delivers the failure of the first item held by a dead worker, with that worker's
    /// error, if the call has not failed already: at once, as the message path delivers a
    /// lost chunk, not once the other workers are done.
    fn fail_held(&self) {
        let settled = super::supervisor::lock(&self.settled);
        if settled.failed_early.is_some() || self.finished.load(Ordering::Acquire) {
            return;
        }
        let Some((i, e)) = settled.held.iter().min_by_key(|(i, _)| *i).cloned() else { return };
        if self.sink.cancelled() {
            return;
        }
        self.deliver_early(settled, i, e);
    }

    /// Delivers `e`, item `i`'s failure, as the call's, unless the call failed already.
    fn deliver_early(&self, mut settled: MutexGuard<'_, Settled>, i: usize, e: TaskError) {
        if settled.failed_early.is_some() {
            return;
        }
        settled.failed_early = Some(i);
        drop(settled);
        self.counters.failed(&e);
        self.sink.deliver(self.chunk, Err(e));
    }

    /// Every seat answered: no live worker is in the call.
    fn finish(&self) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        let settled = std::mem::take(&mut *super::supervisor::lock(&self.settled));
        let items = self.table.items();
        if settled.terminated {
            self.wrap_up(&settled);
            let outcome: ChunkOutcome<R> = Err(TaskError::Terminated);
            count(&self.counters, &outcome, items);
            self.sink.deliver(self.chunk, outcome);
            return;
        }
        if self.sink.cancelled() {
            self.wrap_up(&settled);
            return;
        }
        // No worker is in the call: every item claimed and not taken is given back.
        self.table.untaken(true);
        let rest = self.table.take_rest();
        let unclaimed = rest.len();
        for i in rest {
            (self.drop_item)(self.table.input(i));
        }
        let mut chunk = Chunk { values: Vec::with_capacity(items), failures: Vec::new() };
        let claimed = items - unclaimed;
        let results = self.table.results();
        if self.table.results_hold_handles() {
            for i in 0..claimed {
                let value = match results.get(i) {
                    Some((Written::Value, bytes)) => Some(decode_result::<R>(bytes)),
                    _ => None,
                };
                self.sort(&mut chunk, &results, i, value, &settled);
            }
        } else if codec::plain::<R>() {
            // A primitive: no handle, no codec state, no `Deserialize` of the user's; each
            // value decoded in the pass that reads its entry.
            for i in 0..claimed {
                let value = match results.get(i) {
                    Some((Written::Value, bytes)) => match codec::decode_plain::<R>(bytes, false) {
                        Some(value) => {
                            chunk.values.push(value);
                            continue;
                        }
                        // For the error's message.
                        None => Some(panics::decoding(|| codec::decode::<R>(bytes))),
                    },
                    _ => None,
                };
                self.sort(&mut chunk, &results, i, value, &settled);
            }
        } else {
            // No handle to give back if a decoding stops part-way: one decoding for all.
            let mut i = 0;
            let values = (0..claimed).map(|i| match results.get(i) {
                Some((Written::Value, bytes)) => Some(bytes),
                _ => None,
            });
            codec::decode_all::<R>(values, |bytes, read| {
                let value = bytes.map(|bytes| panics::decoding(|| read(bytes)));
                self.sort(&mut chunk, &results, i, value, &settled);
                i += 1;
            });
        }
        self.table.release_results();
        if unclaimed > 0 && chunk.failures.is_empty() {
            // Items left that no worker will run, and no task failed: the seats could not
            // run (a pool whose initializer fails answers every task with its panic).
            let e = settled.lost.unwrap_or(TaskError::Terminated);
            self.counters.done_many(chunk.values.len() as u64);
            let outcome: ChunkOutcome<R> = Err(e);
            count(&self.counters, &outcome, unclaimed);
            self.sink.deliver(self.chunk, outcome);
            return;
        }
        if unclaimed > 0 {
            // A task failed, which stopped the claims: the rest were never run.
            self.counters.cancelled(unclaimed as u64);
        }
        let outcome: ChunkOutcome<R> = Ok(chunk);
        count(&self.counters, &outcome, items);
        self.sink.deliver(self.chunk, outcome);
    }

    /// Adds item `i`'s outcome to `chunk`: its decoded `value`, or the failure its entry
    /// holds, or the loss of the worker that held it.
    fn sort(
        &self,
        chunk: &mut Chunk<R>,
        results: &Results<'_>,
        i: usize,
        value: Option<Result<R, crate::CodecError>>,
        settled: &Settled,
    ) {
        let failure = match value {
            Some(Ok(value)) => return chunk.values.push(value),
            Some(Err(e)) => TaskError::Codec(e),
            None => match results.get(i) {
                Some((Written::Panicked, bytes)) => {
                    TaskError::Panicked(codec::decode_own::<PanicInfo>(bytes).unwrap_or_else(|e| PanicInfo {
                        process: String::new(),
                        message: format!("a task panicked and its report did not decode: {e}"),
                        location: None,
                        backtrace: String::new(),
                    }))
                }
                Some((_, bytes)) => TaskError::Codec(crate::CodecError::relayed(String::from_utf8_lossy(bytes))),
                // Claimed, never written: its worker died holding it.
                None => settled.lost_error(i),
            },
        };
        chunk.failures.push((i, failure));
    }

    /// Ends a call whose outcome is delivered already (failed, cancelled) or will not be
    /// read: the items nobody claimed are dropped, the results nobody reads decoded and
    /// dropped when they hold handles, and the books kept as the message path keeps them
    /// (a value done, a failure failed, except `failed_early` which was counted when
    /// delivered, anything else cancelled).
    fn wrap_up(&self, settled: &Settled) {
        // After `terminate` its killed workers may still run: only what the reaped ones held
        // (`join` gives back the rest once they are waited for).
        self.table.untaken(!settled.terminated);
        let failed_early = settled.failed_early;
        for i in self.table.take_rest() {
            (self.drop_item)(self.table.input(i));
        }
        let handles = self.table.results_hold_handles();
        let results = self.table.results();
        let (mut done, mut cancelled) = (0, 0);
        for i in 0..results.len() {
            match results.get(i) {
                Some((Written::Value, bytes)) => {
                    done += 1;
                    if handles {
                        // A user value: its `Drop` runs under a catch.
                        panics::drop_caught(decode_result::<R>(bytes));
                    }
                }
                Some(_) | None if failed_early == Some(i) => {}
                // Neither lost nor timed out: which failure does not matter to the books.
                Some(_) => self.counters.failed(&TaskError::Terminated),
                None => match settled.held.iter().find(|(held, _)| *held == i) {
                    Some((_, e)) => self.counters.failed(e),
                    None => cancelled += 1,
                },
            }
        }
        self.counters.done_many(done);
        self.counters.cancelled(cancelled);
        self.table.release_results();
    }
}

/// Decodes one result (or an item, [`drop_item`]); the handles a decoding that stopped
/// part-way did not read are given back (audit F7), and a panic of `R`'s `Deserialize` is
/// a decode error (audit25).
fn decode_result<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, crate::CodecError> {
    let mut read = Vec::new();
    codec::noting_reads(&mut read, || panics::decoding(|| codec::decode::<R>(bytes)))
        .inspect_err(|_| shm::give_back_unread(bytes, &read))
}

impl<R: DeserializeOwned + Send + 'static> Claimed<R> {
    /// Whether this is a copy that fork made in a child; if so, its sink's chunk ends
    /// `Terminated` (once), in this process only.
    fn copied(&self) -> bool {
        if self.made_in.is_here() {
            return false;
        }
        if !self.finished.swap(true, Ordering::AcqRel) {
            let outcome: ChunkOutcome<R> = Err(TaskError::Terminated);
            self.sink.deliver(self.chunk, outcome);
        }
        true
    }
}

impl<R: DeserializeOwned + Send + 'static> Delivery for Claimed<R> {
    fn deliver(&self, _chunk: usize, outcome: Result<Payload, TaskError>) {
        if self.copied() {
            return;
        }
        self.settle(outcome.map(drop));
    }

    fn cancelled(&self) -> bool {
        let cancelled = self.sink.cancelled();
        if cancelled && !self.copied() {
            // The workers in the call stop claiming; the items they hold finish.
            self.table.stop();
        }
        cancelled
    }

    fn reseat(&self, seat: usize, error: Option<&TaskError>) -> bool {
        if self.finished.load(Ordering::Acquire) || self.copied() {
            return false;
        }
        let reaped = self.table.reap_seat(seat);
        let mut settled = super::supervisor::lock(&self.settled);
        if let Some(e) = error {
            match reaped {
                Reaped::Held(i) => {
                    // The call fails with it (when the seat's error is settled): no more
                    // claims.
                    self.table.stop();
                    settled.held.push((i, e.clone()));
                }
                Reaped::Unsure(i) => settled.unsure.push((i, e.clone())),
                Reaped::Nothing => {}
            }
        }
        drop(settled);
        if self.table.exhausted() {
            return false;
        }
        self.seats.fetch_add(1, Ordering::AcqRel);
        true
    }
}

impl<R: DeserializeOwned + Send + 'static> Drop for Claimed<R> {
    fn drop(&mut self) {
        // A call whose seats went without an answer (dropped unsent once cancelled, or
        // their workers killed for running on after the call failed). Not in a copy.
        if !self.copied() && !self.finished.swap(true, Ordering::AcqRel) {
            let settled = std::mem::take(&mut *super::supervisor::lock(&self.settled));
            self.wrap_up(&settled);
        }
    }
}
