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
    /// An `imap` made while the pool runs: whether the pool counts it until
    /// [`Engine::stream_ended`], taking its chunks ([`Engine::submit_streamed`]) after a
    /// `close` until `join`, as Python's `imap`, which queues every task at once, goes on
    /// after a `close`. A pool that does not count them refuses them at `close`.
    fn stream_opened(&self) -> bool {
        false
    }
    /// An `imap` counted by [`Engine::stream_opened`] will send nothing more.
    fn stream_ended(&self) {}
    /// [`Engine::submit`] of a chunk of a counted `imap`.
    fn submit_streamed(&self, job: Job) -> Result<(), PoolError> {
        self.submit(job)
    }
    /// A call was cancelled outside a delivery (a `map` refused part-way through its
    /// submission, its sink abandoned): the pool takes its chunks back from where they
    /// wait, the workers' inboxes included, as for a cancellation met in a delivery.
    fn cancelled_outside(&self) {}
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

    /// The chunk cannot run now: no worker lives and none could start (`error`, a
    /// `Panicked` naming why: out of processes, of memory); the pool stays, and tries the
    /// starts again later. A call fails with it; a cluster node hands the task back, for a
    /// node that can run it (review80 L4).
    fn unstarted(&self, chunk: usize, error: TaskError) {
        self.deliver(chunk, Err(error));
    }

    /// In a copy made by fork: ends the chunk `Terminated`, running no callback
    /// ([`Sink::abandon`]).
    fn abandon(&self, chunk: usize) {
        self.deliver(chunk, Err(TaskError::Terminated));
    }

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
/// were counted in flight when encoded, and give their holds back this way (those a
/// decoding that stopped part-way did not read are given back as such, audit F7).
///
/// The arguments are user values: their `Deserialize` and `Drop` are user code, run here
/// in the parent, on whichever thread meets the chunk (the pool thread, a caller's in
/// `apply_async` or `terminate`). A panic of either stops here (the hook has printed it):
/// it came out of `terminate`, before any call was failed, and out of the pool thread's
/// round before the restarts (review166 H1).
pub(crate) fn discard_args<A: DeserializeOwned>(args: &Payload) {
    let mut read = Vec::new();
    let decoded = codec::noting_reads(&mut read, || panics::decoding(|| codec::decode::<Vec<A>>(args.bytes())));
    if decoded.is_err() {
        shm::give_back_unread(args.bytes(), &read);
    }
    panics::drop_caught(decoded);
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

    fn abandon(&self, chunk: usize) {
        self.sink.abandon(chunk);
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
    /// The undo of the handles in `args`, and their carrier once sent.
    pub(crate) undo: ChunkUndo,
}

impl Job {
    /// A chunk that will not run: its arguments discarded (decoded and dropped, which gives
    /// back the handles counted in flight), unless its handles travel in a carrier (it was
    /// sent, then came back to `pending`): then the job's drop (its undo) gives them back,
    /// and a discard too gave each count back twice (review168 H1).
    pub(crate) fn discard_args(&self) {
        if !self.undo.carried() {
            (self.discard)(&self.args);
        }
    }
}

/// The undo of the handles in a chunk's arguments, and from its send on their carrier
/// (`shm::Carrier`, as a process's argument's token): the handles travel counted in the
/// carrier's own entries, from which the worker takes each into its own entry. Kept until
/// the chunk is answered: a worker killed after its inbox gave it the chunk and before it
/// took every handle in it (the chunk's take committed, its decoding not begun or not
/// finished) leaves the others in the carrier's entries, which
/// [`ChunkUndo::give_back_from_dead`] lets go of once that worker is dead. Neither a take
/// nor that undo touches the count of another message in flight.
///
/// Dropped otherwise (answered, discarded by the pool, taken back from an inbox), it lets
/// go of what the carrier still counts (nothing, when the worker took every handle; a
/// chunk taken back from an inbox is not discarded by decoding: [`ChunkUndo::carried`]),
/// or, never carried, forgets the undo (the handles were given back by its `discard`).
///
/// A copy made by fork (a pool in a static) lets go of nothing: the carrier is the parent's.
#[derive(Default)]
pub(crate) struct ChunkUndo(Option<(codec::Encoded, Option<shm::Carrier>, shm::TakenIn)>);

impl ChunkUndo {
    /// Keeps `encoded`'s undo if it holds handles (carried from [`ChunkUndo::carry`] on).
    pub(crate) fn keep(encoded: codec::Encoded) -> Self {
        if !encoded.has_handles() {
            return Self::default();
        }
        Self(Some((encoded, None, shm::TakenIn::here())))
    }

    /// Just before the chunk is sent: its handles into a carrier, named by what this returns
    /// (for the worker's receives, `codec::receipting`; 0: none). A heap with no room for
    /// the carrier keeps them in flight, as before: a worker killed before it took them
    /// leaks them.
    pub(crate) fn carry(&mut self) -> u64 {
        let Some((encoded, carrier, _)) = &mut self.0 else { return 0 };
        if carrier.is_none() {
            *carrier = shm::Carrier::carry(encoded);
            if carrier.is_none() {
                self.0.take().expect("kept").0.sent();
                return 0;
            }
        }
        carrier.as_ref().map_or(0, shm::Carrier::receipts)
    }

    /// Whether its handles are in a carrier: a `discard` of the chunk's arguments would find
    /// none in flight, and its drop gives them back.
    pub(crate) fn carried(&self) -> bool {
        self.0.as_ref().is_some_and(|(_, carrier, _)| carrier.is_some())
    }

    /// The chunk's worker `pid` is dead (waited for): gives back the handles it did not
    /// take; those it took are its own, released with its dead entry.
    pub(crate) fn give_back_from_dead(mut self, pid: u32) {
        match self.0.take() {
            Some((encoded, Some(carrier), _)) => {
                carrier.let_go(&encoded, Some(pid));
                encoded.sent();
            }
            Some((encoded, None, _)) => codec::give_back_from_dead(encoded, pid, Vec::new()),
            None => {}
        }
    }

    /// The message that was to carry the handles was never sent (a worker's start
    /// failed): every one goes back.
    pub(crate) fn never_sent(mut self) {
        self.let_go();
    }

    /// In a copy made by fork: the undo and the carrier are the parent's.
    pub(crate) fn forget(mut self) {
        // The carrier, dropped, is left to the parent.
        if let Some((encoded, _, _)) = self.0.take() {
            encoded.sent();
        }
    }

    /// Lets go of what the carrier still counts, or runs the undo of a chunk never carried.
    fn let_go(&mut self) {
        if let Some((encoded, carrier, _)) = self.0.take() {
            match carrier {
                Some(carrier) => {
                    carrier.let_go(&encoded, None);
                    encoded.sent();
                }
                None => drop(encoded),
            }
        }
    }
}

impl Drop for ChunkUndo {
    fn drop(&mut self) {
        match &self.0 {
            Some((_, Some(_), made_in)) if made_in.is_here() => self.let_go(),
            Some(_) => {
                // Never carried: answered, or given back by its `discard`; or a copy made
                // by fork, whose carrier (dropped) is the parent's.
                let (encoded, _, _) = self.0.take().expect("matched");
                encoded.sent();
            }
            None => {}
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
    // The error names the item type, not the chunk's `Vec` (aud108 L4).
    let (args, encoded) = Payload::encode::<Vec<A>, _>(items).map_err(|e| e.of::<A>())?;
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
