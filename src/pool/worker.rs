//! The worker side of a process [`Pool`](super::Pool): what a worker process is sent,
//! what it answers, and its life (run chunks in order, report each one, record what it
//! runs in its shared status).

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::channel::Channel;
use super::star::StarFn;
use crate::codec::{self, CodecError};
use crate::error::PanicInfo;
use crate::process::{Target, panics};
use crate::shm::crash::crash_point;
use crate::shm::{self, ClaimTable, Heap, Payload, Shared, ShmObject, Written, kind};
use crate::sys::{self, Packed, Stateless};

/// A worker's shared status: the chunk it runs, since when.
#[derive(crate::ShmSafe)]
#[repr(C)]
pub(crate) struct WorkerStatus {
    /// The running chunk's id (0: none; [`INITIALIZING`]: the initializer runs).
    pub(crate) job: AtomicU64,
    /// When it started (`sys::monotonic_ns`).
    pub(crate) since: AtomicU64,
    /// Its initializer returned, or it has none (set once, before its first task): ends the
    /// pool's runs of initializers that failed or ran past the timeout
    /// (`Books::init_deaths`). Not `job`, whose 0 before the initializer and after it look
    /// the same.
    pub(crate) initialized: AtomicBool,
    /// The key of the blob of the results being sent (`Blob::key`: its offset and
    /// generation; 0: none), written before the `Done`'s encoding counts the blob in flight
    /// and cleared once the message is in the results channel: a worker killed between the
    /// two (`terminate`, a `kill -9`) leaves the pool the key, which gives the blob back
    /// once the worker is dead and the channel drained (`Blob::give_back_sent_by_dead`;
    /// aud108 M1's rest).
    pub(crate) sending: [AtomicU64; 2],
}

/// [`WorkerStatus::job`] while the worker runs its initializer: the pool's timeout bounds
/// it as it bounds a task (no chunk id is this: they count up from 1).
pub(crate) const INITIALIZING: u64 = u64::MAX;

impl ShmObject for WorkerStatus {
    const KIND: u32 = kind::POOL;
}

/// What the parent sends a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run chunk `id`: `call` over the encoded items in `args`.
    /// `receipts`: the carrier of the handles in `args`, which the worker takes them from
    /// (0: none, they are in flight; see `engine::ChunkUndo`).
    Task { id: u64, call: Packed, args: Payload, receipts: u64 },
    /// Take part in call `id`: claim the items of `table` one at a time and run `call`
    /// over each (a `map` with chunk size 1, see [`ClaimTable`]).
    Claims { id: u64, call: Packed, table: ClaimTable },
    /// Exit after the tasks before this one.
    Stop,
}

/// What a worker sends back.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// Chunk `id` ran: the encoded [`WorkerResults<R>`], or why the chunk could not run
    /// (its items did not decode, its results did not encode).
    Done { id: u64, worker: u32, busy_ns: u64, outcome: Result<Payload, String> },
    /// The initializer panicked: the worker exits.
    InitFailed { worker: u32, info: PanicInfo },
}

/// A chunk's results as a worker sends them: the values of the items that returned, in
/// order, and the panics of the others with their index.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerResults<R> {
    pub(crate) values: Vec<R>,
    pub(crate) panics: Vec<(u32, PanicInfo)>,
}

/// Everything a worker process needs.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerBoot {
    pub(crate) index: u32,
    pub(crate) inbox: Channel<ToWorker>,
    pub(crate) results: Channel<FromWorker>,
    pub(crate) status: Shared<WorkerStatus>,
    pub(crate) initializer: Option<(Packed, Payload)>,
    /// The carrier of the handles in the initializer's arguments (0: none; the pool lets go
    /// of what the worker did not take once it is dead).
    pub(crate) init_receipts: u64,
    pub(crate) max_tasks: Option<u64>,
    /// The results leave this machine (see `Config::remote_results`).
    pub(crate) remote_results: bool,
}

/// The context a task runner works in, inside the worker.
pub(crate) struct TaskCall {
    name: String,
    args: Payload,
    /// Items claimed from a table instead of `args`, by the worker in this seat.
    claims: Option<(ClaimTable, usize)>,
    /// The carrier of the handles in `args` (0: none).
    receipts: u64,
    /// The encoded results (its handles are released unless sent), or why not.
    output: Option<Result<(Payload, codec::Encoded), String>>,
}

/// Runs `f` over a chunk of items (`map`, `apply`, `imap`).
pub(crate) fn map_runner<A: DeserializeOwned, R: Serialize + DeserializeOwned>(f: fn(A) -> R, context: &mut dyn Any) {
    let Some(call) = context.downcast_mut::<TaskCall>() else { return };
    call.output = Some(run_items(call, |a: A| f(a)));
}

/// Runs the stateless target `F` over a chunk of its arguments (`apply` of a function or a
/// closure that captures nothing).
pub(crate) fn target_runner<A, M, F>(_: fn(), context: &mut dyn Any)
where
    A: DeserializeOwned,
    F: Target<A, M>,
    F::Output: Serialize + DeserializeOwned,
{
    let Some(call) = context.downcast_mut::<TaskCall>() else { return };
    let f = F::remade().expect("a function pointer crosses by its address, not by its type");
    call.output = Some(run_items(call, |args: A| f.call_with(args)));
}

/// Runs the stateless callable `F` over a chunk of argument tuples (`starmap`).
pub(crate) fn star_runner<Args, F>(_: fn(), context: &mut dyn Any)
where
    Args: DeserializeOwned,
    F: StarFn<Args> + Stateless<Args>,
    F::Output: Serialize + DeserializeOwned,
{
    let Some(call) = context.downcast_mut::<TaskCall>() else { return };
    let f: F = sys::remake::<Args, F>();
    call.output = Some(run_items(call, |args: Args| f.call(args)));
}

fn run_items<A: DeserializeOwned, R: Serialize + DeserializeOwned>(
    call: &TaskCall,
    f: impl Fn(A) -> R,
) -> Result<(Payload, codec::Encoded), String> {
    if let Some((table, seat)) = &call.claims {
        run_claimed(&call.name, table, *seat, f);
        return Payload::encode::<(), _>(&()).map_err(|e| e.to_string());
    }
    let bytes = call.args.bytes();
    // The handles the decoding read: those it did not, if it stops part-way, are given
    // back (the chunk was taken from the inbox, and goes with this call).
    // Each handle is taken from the chunk's carrier (the pool lets go of what is left once
    // this worker answers or dies), only while the items decode: not a handle the task
    // itself receives.
    let receipts = call.receipts;
    let mut read = Vec::new();
    // A `Deserialize` of A that panics (user code) fails the chunk as a decoding error, as
    // in the parent (`panics::decoding`): let through, it ended the worker, and every item
    // of the chunk was `WorkerLost` (aud91).
    let results = match codec::noting_reads(&mut read, || {
        // The error names the user's type, not the codec's `Each<A>` (review115 L2).
        codec::receipting(receipts, || panics::decoding(|| codec::decode_each::<A>(bytes)).map_err(|e| e.of::<A>()))
    }) {
        Err(e) => Err(e.to_string()),
        // A small chunk, decoded whole: its loop has no decoding error to look for.
        Ok(codec::Each::Whole(items)) => run_over(call, items.into_iter().map(Ok), f),
        // Decoded one item at a time, each dropped before the next is decoded: a chunk of
        // big items never sits whole in the worker's memory, and the allocator hands the
        // next item the pages the last one left.
        Ok(codec::Each::Elements(items)) => run_over(call, Noted { items, read: &mut read, receipts }, f),
    };
    // Carried, what it did not read stays the carrier's (given back by the pool, once);
    // without a carrier, given back here.
    let results = results.inspect_err(|_| codec::receipting(receipts, || shm::give_back_unread(bytes, &read)))?;
    // A `Serialize` of R that panics (user code) fails the chunk as an encoding error does
    // (the handles it had encoded are given back by the encoding's scope): let through, it
    // ended the worker, and the chunk was `WorkerLost` (aud91).
    panics::catching(&call.name, || Payload::encode::<WorkerResults<R>, _>(&results))
        .unwrap_or_else(|info| Err(CodecError::encode(format_args!("encoding panicked: {}", info.message)).of::<R>()))
        .map_err(|e| e.to_string())
}

/// Results up to this size are encoded in the thread's scratch buffer; larger ones once,
/// measured.
const CLAIMED_SCRATCH: usize = 64 * 1024;

// A primitive's result always fits in its entry's inline bytes.
const _: () = assert!(codec::PLAIN_MAX <= shm::CLAIM_INLINE);

/// Claims the items of `table` one at a time from `seat`, runs `f` over each and writes
/// its result (or its panic, or why it could not be decoded or encoded) in the item's
/// entry. A failure stops the table: the call fails with its first error, as a `map` does.
fn run_claimed<A: DeserializeOwned, R: Serialize + DeserializeOwned>(
    name: &str,
    table: &ClaimTable,
    seat: usize,
    f: impl Fn(A) -> R,
) {
    let failed = |i: usize, written: Written, bytes: &[u8]| fail(table, i, written, bytes);
    let handles = table.inputs_hold_handles();
    // Items and results of a primitive type are read and written in place (no handle to
    // note, nothing for the codec's thread state to do).
    let plain = codec::plain::<A>() && codec::plain::<R>();
    // One unwinding guard for many items, a new one only after a panic (as `run_over`).
    loop {
        let mut current = None;
        let outcome = panics::catching(name, || {
            while let Some(i) = table.claim(seat) {
                current = Some(i);
                crash_point!("pool.claims.claimed");
                let bytes = table.input(i);
                if plain && let Some(item) = codec::decode_plain::<A>(bytes, false) {
                    let value = f(item);
                    let mut out = [0; shm::CLAIM_INLINE];
                    match codec::encode_plain(&value, &mut out) {
                        Some(len) => table.put_inline(i, &out, len),
                        None => put_value(table, i, &value),
                    }
                    continue;
                }
                let decoded = if handles {
                    // The handles received stay pending until the entry says they are ours:
                    // killed before, this worker leaves their counts in flight with its death,
                    // and the pool gives back the whole item (`ClaimTable::untaken`).
                    let taking = codec::TakeScope::enter();
                    let mut read = Vec::new();
                    // A `Deserialize` of A that panics (user code) fails the item as a decoding
                    // error, as on the message path (review115 M1: it was `Panicked` here);
                    // the handles it read are dropped as it unwinds, the others given back
                    // below.
                    let decoded = codec::noting_reads(&mut read, || panics::decoding(|| codec::decode::<A>(bytes)));
                    crash_point!("pool.claims.decoded");
                    table.taken(i);
                    if decoded.is_err() {
                        shm::give_back_unread(bytes, &read);
                    }
                    drop(taking);
                    decoded
                } else {
                    panics::decoding(|| codec::decode::<A>(bytes))
                };
                let item = match decoded {
                    Ok(item) => item,
                    Err(e) => {
                        failed(i, Written::Failed, e.to_string().as_bytes());
                        continue;
                    }
                };
                put_value(table, i, &f(item));
            }
        });
        match (outcome, current) {
            (Ok(()), _) => return,
            (Err(info), Some(i)) if table.result(i).is_none() => match codec::encode_own(&info) {
                Ok(encoded) => failed(i, Written::Panicked, &encoded.bytes),
                Err(e) => failed(i, Written::Failed, e.to_string().as_bytes()),
            },
            // A panic outside a task (a result's `Serialize`, after its entry was written).
            (Err(_), _) => {}
        }
    }
}

/// Encodes `value`, the result of index `i`, into its entry of `table` (its encoding's
/// failure, which stops the table, if it does not encode).
fn put_value<R: Serialize + DeserializeOwned>(table: &ClaimTable, i: usize, value: &R) {
    let put = |bytes: &[u8], handles: bool| table.put(i, Written::Value, bytes, handles);
    // A `Serialize` of R that panics (user code) fails the item as an encoding error, as on
    // the message path (review115 M1: it was `Panicked` here); the handles it had encoded
    // are given back by the encoding's scope. A bare unwinding guard, as
    // `panics::decoding`: the hook has printed the panic, and `panics::catching` would cost
    // every item an allocation (the process's name) on this path of one item at a time.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let small = codec::with_small_encoding(
            value,
            CLAIMED_SCRATCH,
            |e| e.to_string(),
            |bytes, handles| put(bytes, handles).map_err(|e| e.to_string()),
        );
        match small {
            Ok(true) => Ok(()),
            Ok(false) => codec::encode(value).map_err(|e| e.to_string()).and_then(|encoded| {
                put(&encoded.bytes, encoded.has_handles()).map_err(|e| e.to_string())?;
                encoded.sent();
                Ok(())
            }),
            Err(e) => Err(e),
        }
    }))
    .unwrap_or_else(|payload| {
        let why = panics::payload_message(payload.as_ref());
        panics::drop_payload(payload);
        Err(CodecError::encode(format_args!("encoding panicked: {why}")).of::<R>().to_string())
    });
    if let Err(e) = outcome {
        fail(table, i, Written::Failed, e.as_bytes());
    }
}

/// Writes the failure of index `i` and stops the table: the call fails with it.
fn fail(table: &ClaimTable, i: usize, written: Written, bytes: &[u8]) {
    table.stop();
    let _ = table.put(i, written, bytes, false);
}

/// Items decoded one at a time, noting the handles each decoding reads (and only that: the
/// task that runs between two items is not noted).
struct Noted<'a, I> {
    items: I,
    read: &'a mut Vec<codec::HandleRead>,
    /// The chunk's carrier (see [`ToWorker::Task`]).
    receipts: u64,
}

impl<I: Iterator> Iterator for Noted<'_, I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let receipts = self.receipts;
        codec::noting_reads(self.read, || codec::receipting(receipts, || self.items.next()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.items.size_hint()
    }
}

impl<I: ExactSizeIterator> ExactSizeIterator for Noted<'_, I> {}

/// Runs `f` over `items`, each the item or why it could not be decoded (which ends the
/// chunk).
fn run_over<A, R>(
    call: &TaskCall,
    items: impl ExactSizeIterator<Item = Result<A, codec::CodecError>>,
    f: impl Fn(A) -> R,
) -> Result<WorkerResults<R>, String> {
    let mut results = WorkerResults { values: Vec::with_capacity(items.len()), panics: Vec::new() };
    let mut items = items.enumerate();
    let mut failed = None;
    // One unwinding guard per chunk, a new one only after a panic: the item that panicked
    // was taken from the iterator and gets the panic as its result.
    loop {
        let mut current = 0;
        match panics::catching(&call.name, || {
            for (i, item) in items.by_ref() {
                current = i;
                match item {
                    Ok(item) => results.values.push(f(item)),
                    Err(e) => {
                        failed = Some(e.to_string());
                        return;
                    }
                }
            }
        }) {
            Ok(()) => break,
            Err(info) => results.panics.push((current as u32, info)),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

/// Runs the initializer `f(args)`.
pub(crate) fn init_runner<A: DeserializeOwned>(f: fn(A), context: &mut dyn Any) {
    let Some(call) = context.downcast_mut::<TaskCall>() else { return };
    let mut read = Vec::new();
    let receipts = call.receipts;
    call.output = Some(
        match codec::noting_reads(&mut read, || codec::receipting(receipts, || codec::decode::<A>(call.args.bytes()))) {
            Ok(args) => {
                f(args);
                Ok(Payload::encode::<(), _>(&()).expect("() encodes"))
            }
            Err(e) => {
                // The handles after the point where the decoding stopped are given back
                // (left to the carrier, if any, as the others).
                codec::receipting(receipts, || shm::give_back_unread(call.args.bytes(), &read));
                Err(format!("the initializer's arguments could not be decoded: {e}"))
            }
        },
    );
}

/// The life of a worker process.
pub(crate) fn worker_main(boot: WorkerBoot) {
    let name = crate::current_process().name().to_string();
    if let Some((call, args)) = boot.initializer {
        let mut context =
            TaskCall { name: name.clone(), args, claims: None, receipts: boot.init_receipts, output: None };
        // The pool kills a worker whose initializer runs past its timeout (fix85).
        boot.status.since.store(sys::monotonic_ns(), Ordering::Relaxed);
        boot.status.job.store(INITIALIZING, Ordering::Release);
        // SAFETY: packed by the pool in the parent (`pack_checked`), in `WorkerBoot`, the
        // worker process's argument, which only the pool writes.
        #[allow(unsafe_code)]
        let outcome = panics::catching(&name, || unsafe { sys::unpack_and_run(call, &mut context) });
        boot.status.job.store(0, Ordering::Release);
        let failure = match outcome {
            Err(info) => Some(info),
            Ok(Err(_)) => Some(PanicInfo {
                process: name.clone(),
                message: "the initializer belongs to another executable".into(),
                location: None,
                backtrace: String::new(),
            }),
            Ok(Ok(())) => match context.output {
                Some(Err(message)) => {
                    Some(PanicInfo { process: name.clone(), message, location: None, backtrace: String::new() })
                }
                _ => None,
            },
        };
        if let Some(info) = failure {
            let _ = boot.results.send(&FromWorker::InitFailed { worker: boot.index, info });
            return;
        }
    }
    // Also with no initializer: the pool then reads the flag once, at the first answer.
    boot.status.initialized.store(true, Ordering::Release);
    // Pages of the big arguments this worker frees go back when it is idle, not before it
    // answers (see `Heap::defer_releases`).
    let heap = Heap::get();
    heap.defer_releases();
    let mut done = 0u64;
    loop {
        // Only while the inbox is empty; not waiting for another releaser: it will release
        // these too.
        heap.release_deferred(false, || !boot.inbox.is_empty());
        let Ok(message) = boot.inbox.recv() else { return };
        let (id, call, args, claims, receipts) = match message {
            ToWorker::Task { id, call, args, receipts } => (id, call, args, None, receipts),
            ToWorker::Claims { id, call, table } => {
                (id, call, Payload::Inline(Vec::new()), Some((table, boot.index as usize)), 0)
            }
            ToWorker::Stop => return,
        };
        let start = sys::monotonic_ns();
        boot.status.since.store(start, Ordering::Relaxed);
        boot.status.job.store(id, Ordering::Release);
        let mut context = TaskCall { name: name.clone(), args, claims, receipts, output: None };
        // SAFETY: the pool's own `pack`, sent on its `Channel<ToWorker>`, whose state (kind
        // `POOL + 1`) no public handle type decodes as; in a cluster node, a task's, which
        // `for_this_executable`'s caller vouched for (the task is authentic).
        #[allow(unsafe_code)]
        let ran = unsafe { sys::unpack_and_run(call, &mut context) };
        let outcome = match ran {
            Err(_) => Err("the task's function belongs to another executable".to_string()),
            Ok(()) => match context.output.take() {
                // Dropping them gives the blob and the handles' holds back.
                Some(Ok((_, encoded))) if boot.remote_results && encoded.has_handles() => {
                    Err("the results hold a handle of the worker node's process family, which cannot cross machines"
                        .to_string())
                }
                Some(Ok((payload, encoded))) => {
                    // The results, and their handles, now travel in the message.
                    encoded.sent();
                    Ok(payload)
                }
                Some(Err(e)) => Err(e),
                None => Err("the task runner produced nothing".to_string()),
            },
        };
        boot.status.job.store(0, Ordering::Release);
        // The chunk's blob is given back before the answer, never after: once the pool has
        // the answer it drops its own hold, and a worker killed between its answer and its
        // own drop (`terminate`) would be left the blob's last holder, dead, which nobody
        // frees. The pool holds a large chunk's blob until it has the answer, so this drop
        // never frees it and need not look for dead holders (a `/proc` read per chunk).
        context.args.drop_trusting_sender();
        let busy_ns = sys::monotonic_ns().saturating_sub(start);
        let blob = match &outcome {
            Ok(Payload::Heap(blob)) => Some(blob.key()),
            _ => None,
        };
        if let Some([off, generation, _]) = blob {
            boot.status.sending[1].store(generation, Ordering::Relaxed);
            boot.status.sending[0].store(off, Ordering::Release);
        }
        let sent = boot.results.send(&FromWorker::Done { id, worker: boot.index, busy_ns, outcome });
        if blob.is_some() {
            boot.status.sending[0].store(0, Ordering::Release);
        }
        if sent.is_err() {
            return;
        }
        crash_point!("pool.worker.answered");
        done += 1;
        if boot.max_tasks.is_some_and(|max| done >= max) {
            return;
        }
    }
}
