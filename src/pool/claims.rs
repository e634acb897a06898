//! A `map` with chunk size 1 without a message per task: the items written once into a
//! [`ClaimTable`], one message per worker (a *seat*), the workers claiming the items one
//! at a time and writing the results by index, and one delivery once every seat has
//! answered. The outcome is the one the message path gives: the values in order, or the
//! first failing item's error; a worker killed while it held an item fails that item with
//! [`TaskError::WorkerLost`], one killed between items costs nothing (its seat is taken
//! by another worker), `terminate` fails the call with [`TaskError::Terminated`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::engine::{Delivery, Engine, Job};
use super::error::{PoolError, TaskError};
use super::result::{Chunk, ChunkOutcome, Sink, count};
use super::stats::Counters;
use crate::codec;
use crate::error::PanicInfo;
use crate::shm::{self, ClaimTable, Payload, Written};
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

fn drop_item<A: DeserializeOwned>(bytes: &[u8]) {
    let _ = codec::decode::<A>(bytes);
}

fn discard(bytes: &[u8], ends: &[u64], range: std::ops::Range<usize>, drop: fn(&[u8])) {
    for i in range {
        let start = if i == 0 { 0 } else { ends[i - 1] as usize };
        drop(&bytes[start..ends[i] as usize]);
    }
}

/// Starts `call` over `items` on the claims path of `engine`, delivering to `sink` as one
/// chunk (index 0).
pub(crate) fn submit<A: Serialize + DeserializeOwned, R: DeserializeOwned + Send + 'static>(
    engine: &dyn Engine,
    call: Packed,
    items: &[A],
    sink: Arc<dyn Sink<R>>,
) -> Result<(), PoolError> {
    let t0 = std::time::Instant::now();
    let (bytes, ends, handles) = encode_items(items)?;
    let t1 = t0.elapsed();
    let table = match ClaimTable::new(&bytes, &ends, engine.workers(), handles) {
        Ok(table) => table,
        Err(e) => {
            discard(&bytes, &ends, 0..items.len(), drop_item::<A>);
            return Err(PoolError::Codec(crate::CodecError::encode(format_args!("{e}"))));
        }
    };
    let seats = engine.workers().min(items.len()).max(1);
    let claimed = Arc::new(Claimed::<R> {
        table: table.clone(),
        sink,
        counters: engine.counters().clone(),
        seats: AtomicUsize::new(seats),
        settled: Mutex::new(Settled::default()),
        finished: AtomicBool::new(false),
        drop_item: drop_item::<A>,
    });
    if std::env::var_os("CLAIMS_TRACE").is_some() { eprintln!("encode {t1:?} table {:?}", t0.elapsed()); }
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
    Ok(())
}

/// What the seats' answers said.
#[derive(Default)]
struct Settled {
    /// The first worker lost while in the call (for the item it held, if it held one).
    lost: Option<TaskError>,
    terminated: bool,
}

/// One call on the claims path: the delivery of each of its seats.
struct Claimed<R> {
    table: ClaimTable,
    sink: Arc<dyn Sink<R>>,
    counters: Arc<Counters>,
    /// Seats not answered yet.
    seats: AtomicUsize,
    settled: Mutex<Settled>,
    /// Delivered (or found cancelled) and cleaned up.
    finished: AtomicBool,
    /// Decodes and drops an encoded item (an item nobody will run).
    drop_item: fn(&[u8]),
}

impl<R: DeserializeOwned + Send + 'static> Claimed<R> {
    fn seat(self: &Arc<Self>, call: Packed, table: &ClaimTable) -> Job {
        Job {
            chunk: 0,
            items: 0,
            call,
            args: Payload::Inline(Vec::new()),
            timeout: None,
            delivery: self.clone(),
            discard: |_| {},
            claims: Some(table.clone()),
        }
    }

    /// A seat's answer.
    fn settle(&self, outcome: Result<(), TaskError>) {
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
        if self.seats.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish();
        }
    }

    /// Every seat answered: no live worker is in the call.
    fn finish(&self) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        let t0 = std::time::Instant::now();
        let settled = std::mem::take(&mut *super::supervisor::lock(&self.settled));
        let items = self.table.items();
        let rest = self.table.take_rest();
        let unclaimed = rest.len();
        for i in rest {
            (self.drop_item)(self.table.input(i));
        }
        if settled.terminated || self.sink.cancelled() {
            self.drop_results();
            if settled.terminated {
                let outcome: ChunkOutcome<R> = Err(TaskError::Terminated);
                count(&self.counters, &outcome, items);
                self.sink.deliver(0, outcome);
            } else {
                self.counters.cancelled(unclaimed as u64);
            }
            return;
        }
        let mut chunk = Chunk { values: Vec::with_capacity(items), failures: Vec::new() };
        let claimed = items - unclaimed;
        if self.table.results_hold_handles() {
            for i in 0..claimed {
                let value = match self.table.result(i) {
                    Some((Written::Value, bytes)) => Some(decode_result::<R>(bytes)),
                    _ => None,
                };
                self.sort(&mut chunk, i, value, &settled);
            }
        } else {
            // No handle to give back if a decoding stops part-way: one decoding for all.
            let mut i = 0;
            let values = (0..claimed).map(|i| match self.table.result(i) {
                Some((Written::Value, bytes)) => Some(bytes),
                _ => None,
            });
            codec::decode_all::<R>(values, |value| {
                self.sort(&mut chunk, i, value, &settled);
                i += 1;
            });
        }
        self.table.release_results();
        if unclaimed > 0 {
            // A task failed, which stopped the claims: the rest were never run.
            self.counters.cancelled(unclaimed as u64);
        }
        let outcome: ChunkOutcome<R> = Ok(chunk);
        count(&self.counters, &outcome, items);
        self.sink.deliver(0, outcome);
        if std::env::var_os("CLAIMS_TRACE").is_some() { eprintln!("finish {:?}", t0.elapsed()); }
    }

    /// Adds item `i`'s outcome to `chunk`: its decoded `value`, or the failure its entry
    /// holds, or the loss of the worker that held it.
    fn sort(&self, chunk: &mut Chunk<R>, i: usize, value: Option<Result<R, crate::CodecError>>, settled: &Settled) {
        let failure = match value {
            Some(Ok(value)) => return chunk.values.push(value),
            Some(Err(e)) => TaskError::Codec(e),
            None => match self.table.result(i) {
                Some((Written::Panicked, bytes)) => {
                    TaskError::Panicked(codec::decode_own::<PanicInfo>(bytes).unwrap_or_else(|e| PanicInfo {
                        process: String::new(),
                        message: format!("a task panicked and its report did not decode: {e}"),
                        location: None,
                        backtrace: String::new(),
                    }))
                }
                Some((_, bytes)) => TaskError::Codec(crate::CodecError::decode(String::from_utf8_lossy(bytes))),
                // Claimed, never written: its worker died holding it.
                None => settled.lost.clone().unwrap_or(TaskError::Terminated),
            },
        };
        chunk.failures.push((i, failure));
    }

    /// Decodes and drops the results nobody will read, when some hold handles.
    fn drop_results(&self) {
        if self.table.results_hold_handles() {
            for i in 0..self.table.claimed() {
                if let Some((Written::Value, bytes)) = self.table.result(i) {
                    let _ = decode_result::<R>(bytes);
                }
            }
        }
        self.table.release_results();
    }
}

/// Decodes one result; the handles a decoding that stopped part-way did not read are
/// given back (audit F7).
fn decode_result<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, crate::CodecError> {
    let mut read = Vec::new();
    codec::noting_reads(&mut read, || codec::decode::<R>(bytes)).inspect_err(|_| shm::give_back_unread(bytes, &read))
}

impl<R: DeserializeOwned + Send + 'static> Delivery for Claimed<R> {
    fn deliver(&self, _chunk: usize, outcome: Result<Payload, TaskError>) {
        self.settle(outcome.map(drop));
    }

    fn cancelled(&self) -> bool {
        let cancelled = self.sink.cancelled();
        if cancelled {
            // The workers in the call stop claiming; the items they hold finish.
            self.table.stop();
        }
        cancelled
    }

    fn reseat(&self) -> bool {
        if self.table.exhausted() || self.finished.load(Ordering::Acquire) {
            return false;
        }
        self.seats.fetch_add(1, Ordering::AcqRel);
        true
    }
}

impl<R> Drop for Claimed<R> {
    fn drop(&mut self) {
        // A call whose seats were all dropped unsent (cancelled): nobody claims any more.
        if !self.finished.load(Ordering::Acquire) {
            for i in self.table.take_rest() {
                (self.drop_item)(self.table.input(i));
            }
            self.table.release_results();
        }
    }
}
