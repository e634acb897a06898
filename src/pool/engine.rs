//! What the pool's API code asks of the machinery behind it: the local supervisor (worker
//! processes of this machine) or the cluster driver (worker nodes reached through Redis).
//! The API encodes a call's items into chunks ([`chunk_job`]) and submits them; the
//! engine decides where they run and delivers each chunk's outcome once.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{PoolError, TaskError};
use super::result::{Chunk, ChunkOutcome, Helper, Sink, count};
use super::stats::Counters;
use super::worker::WorkerResults;
use crate::codec;
use crate::process::panics;
use crate::shm::{self, ClaimTable, Payload};
use crate::sys::Packed;

/// The machinery behind a [`Pool`](super::Pool).
pub(crate) trait Engine: Helper + Send + Sync {
    /// The number of workers (for chunk sizes and look-ahead).
    fn workers(&self) -> usize;
    /// Whether it takes tasks.
    fn running(&self) -> bool;
    /// The pool's default task timeout.
    fn default_timeout(&self) -> Option<Duration>;
    /// The live counters behind `stats()`.
    fn counters(&self) -> &Arc<Counters>;
    /// Whether arguments leave this machine (so handles of the local family are refused).
    fn remote(&self) -> bool;
    /// Whether threads waiting for results should lend their time ([`Helper::help`]).
    fn helps(&self) -> bool;
    /// Whether a `map` with chunk size 1 and this task timeout may take the claims path
    /// (`super::claims`): the workers claim the items from one table.
    fn claims(&self, _timeout: Option<Duration>) -> bool {
        false
    }
    /// Queues a chunk; its outcome is delivered exactly once.
    fn submit(&self, job: Job) -> Result<(), PoolError>;
    /// The pids of the local workers.
    fn pids(&self) -> Vec<u32>;
    /// No more tasks; the workers finish the submitted ones.
    fn close(&self);
    /// Stops at once; every unfinished task fails with [`TaskError::Terminated`].
    fn terminate(&self);
    /// Waits for the workers to end, after `close` or `terminate`.
    fn join(&self) -> Result<(), PoolError>;
}

/// Delivers a chunk's encoded results to a typed sink.
pub(crate) trait Delivery: Send + Sync {
    /// Delivers the chunk's encoded results, or why it has none.
    fn deliver(&self, chunk: usize, outcome: Result<Payload, TaskError>);

    /// Whether the call no longer needs its chunks ([`Sink::cancelled`]).
    fn cancelled(&self) -> bool;

    /// A seat of a call on the claims path was lost with its worker, which sat in `seat`
    /// (dead, not yet replaced) and is reported with `error` (none when it was killed
    /// because its call no longer needs it): whether another seat should take its place
    /// (then counted as sent).
    fn reseat(&self, seat: usize, error: Option<&TaskError>) -> bool {
        let _ = (seat, error);
        false
    }
}

/// Decodes the arguments of a chunk that will not run, and drops them: handles among them
/// were counted in flight when encoded, and give their holds back this way.
pub(crate) fn discard_args<A: DeserializeOwned>(args: &Payload) {
    let _ = codec::decode::<Vec<A>>(args.bytes());
}

/// Decodes `Vec<Result<R, PanicInfo>>` for a sink of `R`.
struct Decoding<R> {
    sink: Arc<dyn Sink<R>>,
    counters: Arc<Counters>,
    items: usize,
}

impl<R: DeserializeOwned + Send + 'static> Delivery for Decoding<R> {
    fn deliver(&self, chunk: usize, outcome: Result<Payload, TaskError>) {
        let outcome: ChunkOutcome<R> = outcome.and_then(|payload| {
            // The results were taken from the worker's channel: the handles a decoding that
            // stopped part-way did not read are given back (audit F7).
            let mut read = Vec::new();
            // A Deserialize of R that panics fails the chunk: it must not end the thread that
            // collects results (the pool's, or a caller's waiting in `get`).
            let results: WorkerResults<R> =
                codec::noting_reads(&mut read, || panics::decoding(|| codec::decode(payload.bytes())))
                    .inspect_err(|_| shm::give_back_unread(payload.bytes(), &read))?;
            Ok(Chunk {
                values: results.values,
                failures: results.panics.into_iter().map(|(i, info)| (i as usize, TaskError::Panicked(info))).collect(),
            })
        });
        count(&self.counters, &outcome, self.items);
        self.sink.deliver(chunk, outcome);
    }

    fn cancelled(&self) -> bool {
        self.sink.cancelled()
    }
}

/// A chunk on its way.
pub(crate) struct Job {
    pub(crate) chunk: usize,
    pub(crate) items: usize,
    pub(crate) call: Packed,
    pub(crate) args: Payload,
    pub(crate) timeout: Option<Duration>,
    pub(crate) delivery: Arc<dyn Delivery>,
    pub(crate) discard: fn(&Payload),
    /// A seat of a call on the claims path: the table the worker claims from.
    pub(crate) claims: Option<ClaimTable>,
    /// The undo of the handles in `args`, with the block of receipts its worker writes.
    pub(crate) undo: ChunkUndo,
}

/// The undo of the handles in a chunk's arguments and the block of receipts its worker
/// writes as it takes them (`shm::receipts`, as a process's argument), kept until the chunk
/// is answered: a worker killed after its inbox gave it the chunk and before it took every
/// handle in it (the chunk's take committed, its decoding not begun or not finished)
/// leaves the others counted in flight in a message that is gone. Once that worker is dead
/// [`ChunkUndo::give_back_from_dead`] runs the undo of the handles it wrote no receipt for.
///
/// Dropped otherwise (answered, discarded by the pool, taken back from an inbox), it forgets
/// the undo (the handles are the chunk's receiver's, or were given back by its `discard`)
/// and frees the block: only when no live worker may still write it.
///
/// A copy made by fork (a pool in a static) never frees the block: it is the parent's.
#[derive(Default)]
pub(crate) struct ChunkUndo(Option<(codec::Encoded, shm::Receipts, shm::TakenIn)>);

impl ChunkUndo {
    /// Keeps `encoded`'s undo if it holds handles and a block of receipts fits in the heap
    /// (else the handles travel in the chunk as before: a worker killed before it took them
    /// leaks them).
    pub(crate) fn keep(encoded: codec::Encoded) -> Self {
        if !encoded.has_handles() {
            return Self::default();
        }
        match shm::Receipts::new(encoded.handles()) {
            Ok(receipts) => Self(Some((encoded, receipts, shm::TakenIn::here()))),
            Err(_) => {
                encoded.sent();
                Self::default()
            }
        }
    }

    /// The block the worker writes its receipts into (0: none).
    pub(crate) fn receipts(&self) -> u64 {
        self.0.as_ref().map_or(0, |(_, r, _)| r.offset())
    }

    /// The chunk's worker `pid` is dead (waited for): gives back the handles it took no
    /// count of; those it receipted are its own, released with its dead entry.
    pub(crate) fn give_back_from_dead(mut self, pid: u32) {
        if let Some((encoded, receipts, _)) = self.0.take() {
            codec::give_back_from_dead(encoded, pid, receipts.read());
        }
    }

    /// The message that was to carry the handles was never sent (a worker's start
    /// failed): every one goes back.
    pub(crate) fn never_sent(mut self) {
        if let Some((encoded, receipts, _)) = self.0.take() {
            drop(encoded);
            drop(receipts);
        }
    }

    /// In a copy made by fork: the undo and the block are the parent's.
    pub(crate) fn forget(mut self) {
        if let Some(kept) = self.0.take() {
            std::mem::forget(kept);
        }
    }
}

impl Drop for ChunkUndo {
    fn drop(&mut self) {
        if let Some((encoded, receipts, made_in)) = self.0.take() {
            encoded.sent();
            if made_in.is_here() {
                drop(receipts);
            } else {
                receipts.leave();
            }
        }
    }
}

/// Encodes a chunk of `items` for `engine`. A remote engine refuses items that hold a
/// handle of the local family: it names shared memory of this machine.
pub(crate) fn chunk_job<A: Serialize + DeserializeOwned, R: DeserializeOwned + Send + 'static>(
    engine: &dyn Engine,
    call: Packed,
    items: &[A],
    chunk: usize,
    timeout: Option<Duration>,
    sink: Arc<dyn Sink<R>>,
) -> Result<Job, PoolError> {
    // Written once: inline when small, straight into shared memory when large.
    let (args, encoded) = Payload::encode::<Vec<A>, _>(items)?;
    if engine.remote() && encoded.has_handles() {
        // Dropping `encoded` gives the handles' counts back.
        return Err(PoolError::Codec(crate::CodecError::encode(
            "the arguments hold a handle of the local process family, which cannot cross machines",
        )));
    }
    // The handles in the arguments now travel in the job; their undo stays with it until
    // it is answered.
    let undo = ChunkUndo::keep(encoded);
    Ok(Job {
        chunk,
        items: items.len(),
        call,
        args,
        timeout: timeout.or(engine.default_timeout()),
        delivery: Arc::new(Decoding { sink, counters: engine.counters().clone(), items: items.len() }),
        discard: discard_args::<A>,
        claims: None,
        undo,
    })
}
