//! `Barrier`: a meeting point for a fixed number of parties.

#[path = "barrier_async.rs"]
mod barrier_async;
pub use barrier_async::BarrierWait;

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{BarrierBreak, BrokenBarrier};
use crate::codec::{self, CodecError};
use crate::error::Error;
use crate::shm::{
    ChangeRecord, Deadline, GUARD_GRACE, Heap, Interrupted, Notify, Owner, RawGuard, RawMutex, SPIN, Shared, ShmObject,
    kind,
};
use crate::sys;

#[derive(crate::ShmSafe)]
#[repr(C)]
pub(crate) struct BarrierState {
    /// Guards the fields below; waiters read them without it to see a change.
    guard: RawMutex,
    parties: AtomicU32,
    /// Parties waiting in the current round.
    count: AtomicU32,
    /// Rounds completed.
    generation: AtomicU32,
    /// Times `reset` broke a round.
    resets: AtomicU32,
    /// 0, or the [`BarrierBreak`] code that broke the barrier.
    broken: AtomicU32,
    changed: Notify,
    /// Processes whose only thread of the program's is a party blocked in this round (see
    /// [`Barrier::check_blocked_party`]).
    alone: [AloneParty; ALONE_SLOTS],
    /// The `resets` a [`Barrier::reset`] under way moves to (see [`BarrierState::lock`]).
    reset: ChangeRecord<1>,
    /// The `generation` the last party of a round, ending it, moves to (see
    /// [`BarrierState::lock`]).
    trip: ChangeRecord<1>,
    /// The holders' death count (`Shared::holder_deaths`) up to which deaths were answered
    /// by a break (see [`Barrier::check_parties`]).
    deaths_answered: AtomicU32,
    /// 0, or a break a party asked for without the guard, applied by the guard's holder as
    /// it lets the guard go ([`Held`]), or by the next to take it ([`BarrierState::held`]):
    /// [`break_request`].
    break_request: AtomicU64,
}

/// A break of the round `(generation, resets)` for `cause`, as [`BarrierState::break_request`]
/// holds it: never 0 (a cause's code is not). The resets are kept modulo 2^24: a request
/// would break a later round only after exactly a multiple of 2^24 resets and no round
/// completed meanwhile.
fn break_request(generation: u32, resets: u32, cause: BarrierBreak) -> u64 {
    (u64::from(generation) << 32) | (u64::from(resets & 0xff_ffff) << 8) | u64::from(cause.code())
}

impl BarrierState {
    /// The guard, taken; a reset or a round's end whose process was killed in the middle is
    /// finished first.
    ///
    /// A reset is several stores: `resets` (which sends the waiting parties away), then
    /// `count` and `broken`. Stopped after the first, the parties sent away would stay
    /// counted in the next round (which would end short of its parties); so a reset records
    /// the `resets` it moves to, and a reset found past that store is finished here (one
    /// found before it never began).
    ///
    /// The end of a round by its last party is two stores too: `count` back to 0, then
    /// `generation` (which releases the waiting parties). Stopped between them, the round
    /// would look like one still waiting for its last party (whose death, if another
    /// holder's drop forgot it first, nobody would see): so the last party records the
    /// generation it moves to once its action has run, and a round end found unfinished
    /// here is finished (every party arrived and the action ran: the round is complete).
    fn lock(&self) -> Held<'_> {
        self.lock_until(Deadline::NEVER).expect("an endless wait does not time out")
    }

    /// [`BarrierState::lock`], waiting at most until `deadline` for a live holder (stopped,
    /// say: `SIGSTOP`, a debugger); `None` then. Also applies a break asked for without the
    /// guard ([`Barrier::request_break`]) if its round is still on.
    fn lock_until(&self, deadline: Deadline) -> Option<Held<'_>> {
        RawGuard::lock_until(&self.guard, deadline).map(|guard| self.held(guard))
    }

    /// [`BarrierState::lock`] if the guard is free or its holder died; never waits.
    fn try_lock(&self) -> Option<Held<'_>> {
        RawGuard::try_lock(&self.guard).map(|guard| self.held(guard))
    }

    /// The guard just taken, once the changes left unfinished are finished and a pending
    /// break is applied (see [`BarrierState::lock`]).
    fn held<'a>(&'a self, guard: RawGuard<'a>) -> Held<'a> {
        if let Some([resets]) = self.reset.unfinished() {
            self.finish_reset(resets as u32);
        }
        if let Some([generation]) = self.trip.unfinished() {
            self.finish_trip(generation as u32);
        }
        if self.break_request.load(Ordering::Relaxed) != 0 {
            self.apply_break_request();
        }
        Held { state: self, guard: Some(guard) }
    }

    /// [`BarrierState::lock_until`], waiting on past `deadline` while the guard's holder
    /// runs: `None` only when it is stopped (`SIGSTOP`, a debugger) at `deadline` or at a
    /// look after it, one per [`GUARD_GRACE`]. A slow holder (a long action, a process
    /// preempted on a loaded machine) is waited for, as Python's parties wait for the
    /// barrier's lock: a party that gave up meanwhile would end `TimedOut` in a round that
    /// completes for the others (review66 M3). A single look: a process caught stopping is
    /// taken for stopped, one caught resuming for running.
    fn lock_unless_stopped(&self, deadline: Deadline) -> Option<Held<'_>> {
        RawGuard::lock_unless_stopped(&self.guard, deadline).map(|guard| self.held(guard))
    }

    /// Breaks the round a party asked to break without the guard, if that round is still
    /// on and not broken yet. Call under the guard. Taken with a swap, so that a request
    /// made meanwhile is applied by a later holder, not lost.
    #[cold]
    fn apply_break_request(&self) {
        let request = self.break_request.swap(0, Ordering::Acquire);
        let Some(cause) = BarrierBreak::from_code((request & 0xff) as u32) else { return };
        let current =
            break_request(self.generation.load(Ordering::Relaxed), self.resets.load(Ordering::Relaxed), cause);
        if request == current && self.broken.load(Ordering::Relaxed) == 0 {
            self.broken.store(cause.code(), Ordering::Release);
            self.count.store(0, Ordering::Relaxed);
            self.changed.notify_all();
        }
    }

    /// `count` and `broken` for a look without the guard (which may be held by this very
    /// process, running the action): as a reset killed past its first store, or a round's
    /// end killed part-way, will leave them.
    fn looks(&self) -> (u32, u32) {
        if let Some([resets]) = self.reset.unfinished()
            && self.resets.load(Ordering::Acquire) == resets as u32
        {
            return (0, 0);
        }
        let broken = self.broken.load(Ordering::Acquire);
        if self.trip.unfinished().is_some() {
            // The round is over, whether its last party finishes it or the next holder.
            return (0, broken);
        }
        (self.count.load(Ordering::Relaxed), broken)
    }

    /// Ends the round a last party killed ending it left (idempotent: a process killed
    /// here leaves it to the next holder).
    #[cold]
    fn finish_trip(&self, generation: u32) {
        if self.generation.load(Ordering::Relaxed) != generation {
            self.count.store(0, Ordering::Relaxed);
            self.generation.store(generation, Ordering::Release);
        }
        self.trip.commit();
        self.changed.notify_all();
    }

    #[cold]
    fn finish_reset(&self, resets: u32) {
        if self.resets.load(Ordering::Relaxed) == resets {
            self.count.store(0, Ordering::Relaxed);
            self.broken.store(0, Ordering::Release);
        }
        self.reset.commit();
        self.changed.notify_all();
    }
}

/// The barrier's guard, held ([`BarrierState::lock`]). Let go, it applies a break a party
/// asked for meanwhile without it ([`Barrier::request_break`]): else, with no process to take
/// the guard next (no arrival, reset or abort), the round's untimed parties would wait for
/// ever (review66 M2).
struct Held<'a> {
    state: &'a BarrierState,
    /// `Some` until the drop lets it go.
    guard: Option<RawGuard<'a>>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        // The requester stored its request, then found the guard held; of the two, one sees
        // the other's store: each fence orders a store (the request; this unlock) before the
        // look at the other's (the guard; the request).
        fence(Ordering::SeqCst);
        if self.state.break_request.load(Ordering::Relaxed) != 0 {
            drop(self.state.try_lock());
        }
    }
}

/// How many processes waiting alone a barrier records; more are not recorded, and a
/// barrier waited on by more of them is never found abandoned (it waits, as Python's).
const ALONE_SLOTS: usize = 8;

/// A process whose only thread of the program's is blocked waiting at the barrier in
/// round (`generation`, `resets`). Only while that round lasts and the barrier is not
/// broken: the slot is stale, and free, as soon as the round ends in any way. Written
/// under the barrier's guard.
#[derive(crate::ShmSafe)]
#[repr(C)]
struct AloneParty {
    pid: AtomicU32,
    generation: AtomicU32,
    resets: AtomicU32,
    _pad: u32,
    start: AtomicU64,
}

impl AloneParty {
    const fn new() -> Self {
        Self {
            pid: AtomicU32::new(0),
            generation: AtomicU32::new(0),
            resets: AtomicU32::new(0),
            _pad: 0,
            start: AtomicU64::new(0),
        }
    }

    /// Whether it records `process` waiting in `round`.
    fn is(&self, process: sys::ProcId, round: Round) -> bool {
        self.holds(round)
            && self.pid.load(Ordering::Relaxed) == process.pid
            && self.start.load(Ordering::Relaxed) == process.start
    }

    /// Whether it records a party of `round` (else it is free).
    fn holds(&self, round: Round) -> bool {
        self.pid.load(Ordering::Relaxed) != 0
            && self.generation.load(Ordering::Relaxed) == round.generation
            && self.resets.load(Ordering::Relaxed) == round.resets
    }
}

impl ShmObject for BarrierState {
    const KIND: u32 = kind::BARRIER;
}

thread_local! {
    /// The barriers whose action this thread runs now (their state's address), the
    /// innermost last: an action may trip another barrier, whose action runs inside it.
    /// Each with the process that runs it: a fork child's thread that is the copy of the
    /// acting one inherits the list for the copy's life, and runs none of those actions
    /// (review167 L3).
    static ACTING: std::cell::RefCell<Vec<(usize, Owner)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// This thread runs the action of a barrier while it lives ([`Barrier::arrive`]).
struct Acting(usize);

impl Acting {
    fn start(state: &BarrierState) -> Self {
        let at = std::ptr::from_ref(state) as usize;
        ACTING.with(|acting| acting.borrow_mut().push((at, Owner::process())));
        Acting(at)
    }
}

impl Drop for Acting {
    fn drop(&mut self) {
        ACTING.with(|acting| {
            let mut acting = acting.borrow_mut();
            if let Some(i) = acting.iter().rposition(|&(at, _)| at == self.0) {
                acting.remove(i);
            }
        });
    }
}

impl BarrierState {
    /// Panics when this thread runs this barrier's action (under its guard, held by this
    /// process): `call` would wait for the guard, that is, for itself, for ever (aud107
    /// L1; Python deadlocks). The panic ends the innermost action running, whose catch
    /// breaks that action's barrier ([`BarrierBreak::ActionPanicked`]): this one, or
    /// another whose action this one's tripped (review167 L4). Another thread of the process is no such call
    /// (it waits for the action to end); nor is a fork child's copy of the acting thread:
    /// its list names the forking process, not this one, so it waits for the guard even
    /// when another thread of the child holds it (review167 L3).
    #[inline]
    #[track_caller]
    fn refuse_call_from_own_action(&self, call: &str) {
        let at = std::ptr::from_ref(self) as usize;
        let acting = ACTING.with(|acting| acting.borrow().iter().any(|&(a, by)| a == at && by == Owner::process()));
        if acting && self.guard.is_held_by(Owner::process()) {
            called_from_own_action(call);
        }
    }
}

#[cold]
#[track_caller]
fn called_from_own_action(call: &str) -> ! {
    panic!(
        "Barrier::{call} called from the barrier's own action: the action runs while the barrier is held, so the call would wait for itself; the action running breaks its barrier (BarrierBreak::ActionPanicked)"
    )
}

/// A barrier for `parties` parties (Python's `multiprocessing.Barrier`): each party's
/// `wait` returns once all of them have called it, then the barrier is ready for the next
/// round.
///
/// A barrier *breaks* when a party's wait times out, on [`abort`](Barrier::abort), on
/// [`reset`](Barrier::reset) while parties wait, and when a process holding the barrier
/// dies without dropping it (killed, crashed), or when a party waits while nobody else
/// could ever arrive: the waiting parties, and every later `wait` until `reset`, get
/// [`BrokenBarrier`], whose [`cause`](BrokenBarrier::cause) says which. So a party killed
/// before it arrived, or the end of every other party, does not leave a waiter waiting
/// forever.
///
/// "Nobody else could ever arrive" ([`BarrierBreak::Abandoned`]) means: no handle to the
/// barrier is in a message, and every live process holding it holds one handle and runs
/// no thread but a party blocked in this round (multiproc's own threads aside): say, of
/// three parties, one ended and the two left wait, each alone in its process. Where a
/// holder runs another thread, that thread could arrive through a reference to its handle
/// (an `Arc<Barrier>`, a scoped thread, a static), so the waits wait, as Python's do; a
/// [`wait_async`](Barrier::wait_async) future never breaks so and keeps the others
/// waiting, since another task of its thread could arrive. Only waits without a timeout
/// break so (a timed wait times out, as Python's). (Up to eight processes waiting alone
/// are recorded; beyond, the waits wait.)
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Barrier, Process};
///
/// fn party(barrier: Barrier) -> usize {
///     barrier.wait().unwrap()
/// }
///
/// multiproc::init();
/// let barrier = Barrier::new(3)?;
/// let a = Process::new(party, barrier.clone()).start()?;
/// let b = Process::new(party, barrier.clone()).start()?;
/// let mine = barrier.wait()?;
/// let mut indices = vec![mine, a.join()?, b.join()?];
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[doc(alias = "multiprocessing.Barrier")]
#[derive(Clone)]
pub struct Barrier {
    shared: Shared<BarrierState>,
    /// The default timeout of [`Barrier::wait`].
    timeout: Option<Duration>,
    action: Option<Action>,
}

/// The action of a barrier: a function of the executable and its arguments. Every handle
/// carries it, so whichever process trips the barrier can run it.
#[derive(Clone)]
struct Action {
    /// The function with [`action_runner`] for its argument type.
    call: sys::Packed,
    args: Arc<dyn Any + Send + Sync>,
}

/// What [`action_runner`] is asked to do with the arguments, whose type only it knows.
enum ActionOp {
    Run(Arc<dyn Any + Send + Sync>, Option<Result<(), BarrierBreak>>),
    /// Encodes the arguments inside the encoding of the barrier handle that carries them,
    /// so that the handles among them travel (and are counted) with it.
    Encode(Arc<dyn Any + Send + Sync>, Option<Result<Vec<u8>, CodecError>>),
    Decode(Vec<u8>, Option<Result<Arc<dyn Any + Send + Sync>, CodecError>>),
}

fn action_runner<A>(f: fn(A), context: &mut dyn Any)
where
    A: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    apply::<A>(f, context)
}

fn unit_runner(f: fn(), context: &mut dyn Any) {
    apply::<()>(|()| f(), context)
}

/// Does what `context` (an [`ActionOp`]) asks with arguments of type `A`.
fn apply<A>(f: impl FnOnce(A), context: &mut dyn Any)
where
    A: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let Some(op) = context.downcast_mut::<ActionOp>() else { return };
    match op {
        ActionOp::Run(args, outcome) => {
            if let Some(args) = args.downcast_ref::<A>() {
                let args = args.clone();
                *outcome = Some(catch_unwind(AssertUnwindSafe(|| f(args))).map_err(|payload| {
                    crate::process::panics::drop_payload(payload);
                    BarrierBreak::ActionPanicked
                }));
            }
        }
        ActionOp::Encode(args, outcome) => {
            if let Some(args) = args.downcast_ref::<A>() {
                // Inside the encoding of the barrier: the handles among the arguments are
                // counted by the message that carries the barrier.
                // Self-described: the arguments' type may need it (aud104 M3).
                *outcome = Some(codec::encode_nested(args));
            }
        }
        ActionOp::Decode(bytes, outcome) => {
            *outcome = Some(codec::decode_nested::<A>(bytes).map(|args| Arc::new(args) as Arc<dyn Any + Send + Sync>));
        }
    }
}

impl Action {
    fn of<A>(f: fn(A), args: A) -> Result<Self, Error>
    where
        A: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let call = sys::pack_checked(f, action_runner::<A>).map_err(|_| Error::NotInExecutable)?;
        Ok(Self { call, args: Arc::new(args) })
    }

    fn apply(&self, mut op: ActionOp) -> ActionOp {
        // SAFETY: `self.call` was made by `pack_checked` in this family (`Action::of`), or
        // decoded with its `action_seal` checked (`Deserialize for Barrier`).
        #[allow(unsafe_code)]
        let _ = unsafe { sys::unpack_and_run(self.call, &mut op) };
        op
    }

    fn run(&self) -> Result<(), BarrierBreak> {
        match self.apply(ActionOp::Run(self.args.clone(), None)) {
            ActionOp::Run(_, Some(outcome)) => outcome,
            _ => Err(BarrierBreak::ActionPanicked),
        }
    }
}

/// The keyed seal of a barrier's action (`Heap::seal`, under the family's secret key): a
/// handle's bytes may be written by any serde code of the program, and `unpack_and_run`
/// calls the code offsets of a `Packed` once the executable's identity matches, so the
/// decoding runs an action only if this family packed it. A forged one made the receiver
/// call a function of the message's choosing (auds44,
/// `a_barrier_action_forged_in_a_message_is_refused_not_called`).
///
/// What it binds is the call alone, to this family: not the barrier, nor the arguments'
/// bytes. A forged message can still put an action this family packed onto another of its
/// barriers, or give it other arguments (decoded as the action's own `A`, whose handles are
/// checked by their own seals): nothing may rely on "an action belongs to its barrier".
/// It is kept apart from the handles' seals (6 words, starting with the family id) by its
/// length and its first word (`kind::BARRIER`); a new user of `Heap::seal` takes a length
/// or a first word of its own.
fn action_seal(call: &sys::Packed) -> u64 {
    let heap = Heap::get();
    let [identity, in_executable, shim, target, runner] = call.words();
    heap.seal(&[u64::from(kind::BARRIER), heap.family_id(), identity, in_executable, shim, target, runner])
}

#[derive(Serialize)]
struct WireRef<'a> {
    shared: &'a Shared<BarrierState>,
    timeout: Option<Duration>,
    /// The call, its [`action_seal`], the encoded arguments.
    action: Option<(sys::Packed, u64, Vec<u8>)>,
}

#[derive(Deserialize)]
struct Wire {
    shared: Shared<BarrierState>,
    timeout: Option<Duration>,
    action: Option<(sys::Packed, u64, Vec<u8>)>,
}

impl Serialize for Barrier {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let action = match &self.action {
            None => None,
            Some(action) => match action.apply(ActionOp::Encode(action.args.clone(), None)) {
                ActionOp::Encode(_, Some(Ok(bytes))) => Some((action.call, action_seal(&action.call), bytes)),
                ActionOp::Encode(_, Some(Err(e))) => return Err(codec::refuse_encoding(e)),
                _ => return Err(codec::refuse_encoding("the barrier's action could not be encoded")),
            },
        };
        WireRef { shared: &self.shared, timeout: self.timeout, action }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        let action = match wire.action {
            None => None,
            Some((call, seal, bytes)) => {
                if seal != action_seal(&call) {
                    return Err(codec::refuse_decoding(
                        "a barrier action this family did not pack (its seal does not match)",
                    ));
                }
                let mut op = ActionOp::Decode(bytes, None);
                // SAFETY: its seal, keyed with the family's secret, matched just above: this
                // family packed `call` (`Action::of`), and it is unchanged.
                #[allow(unsafe_code)]
                let ran = unsafe { sys::unpack_and_run(call, &mut op) };
                if ran.is_err() {
                    return Err(codec::refuse_decoding("a barrier action from another executable"));
                }
                match op {
                    ActionOp::Decode(_, Some(Ok(args))) => Some(Action { call, args }),
                    ActionOp::Decode(_, Some(Err(e))) => return Err(codec::refuse_decoding(e)),
                    _ => return Err(codec::refuse_decoding("a barrier action of another kind")),
                }
            }
        };
        Ok(Self { shared: wire.shared, timeout: wire.timeout, action })
    }
}

/// What a party's arrival at the barrier found.
enum Arrival {
    /// The round ended for it at once (it was the last party, or the barrier is broken).
    Ended(Result<usize, BrokenBarrier>),
    /// It waits for this round to end.
    Waiting(Round),
}

/// The round a waiting party joined, as it found it.
#[derive(Debug, Clone, Copy)]
struct Round {
    index: usize,
    generation: u32,
    resets: u32,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .finish()
    }
}

impl Barrier {
    /// A barrier for `parties` parties.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `parties` is 0 or above `u32::MAX`;
    /// [`Error::HeapFull`] when the family's shared memory is exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let barrier = multiproc::Barrier::new(1)?;
    /// assert_eq!(barrier.wait()?, 0); // one party: it passes at once
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(parties: usize) -> Result<Self, Error> {
        Self::builder(parties).build()
    }

    /// A builder for a barrier with an action or a default timeout (Python's
    /// `Barrier(parties, action=None, timeout=None)`).
    ///
    /// A `parties` of 0 or above `u32::MAX` is refused by [`BarrierBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # multiproc::init();
    /// fn tripped() {
    ///     println!("all here");
    /// }
    /// let barrier = multiproc::Barrier::builder(1).action(tripped).timeout(Duration::from_secs(5)).build()?;
    /// assert_eq!(barrier.wait()?, 0); // prints "all here"
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn builder(parties: usize) -> BarrierBuilder {
        BarrierBuilder { parties, timeout: None, action: None }
    }

    fn create(parties: u32, timeout: Option<Duration>, action: Option<Action>) -> Result<Self, Error> {
        let state = BarrierState {
            guard: RawMutex::new(),
            parties: AtomicU32::new(parties),
            count: AtomicU32::new(0),
            generation: AtomicU32::new(0),
            resets: AtomicU32::new(0),
            broken: AtomicU32::new(0),
            changed: Notify::new(),
            alone: [const { AloneParty::new() }; ALONE_SLOTS],
            reset: ChangeRecord::new(),
            trip: ChangeRecord::new(),
            deaths_answered: AtomicU32::new(0),
            break_request: AtomicU64::new(0),
        };
        Ok(Self { shared: Shared::new(state)?, timeout, action })
    }

    fn broken_error(&self) -> Option<BrokenBarrier> {
        BarrierBreak::from_code(self.shared.broken.load(Ordering::Acquire)).map(|cause| BrokenBarrier { cause })
    }

    /// Breaks the barrier for `cause`. Call under the guard.
    fn break_locked(&self, cause: BarrierBreak) {
        self.shared.broken.store(cause.code(), Ordering::Release);
        self.shared.count.store(0, Ordering::Relaxed);
    }

    /// A party arrives: it ends the round (the last one, after the action), finds the
    /// barrier broken, or is to wait for the round it joined. One that could not have the
    /// guard by `deadline`, its holder stopped ([`BarrierState::lock_unless_stopped`]), did
    /// not arrive: it asks for the round to break (as a timed-out wait breaks it) and ends
    /// with [`BarrierBreak::TimedOut`].
    fn arrive(&self, deadline: Deadline) -> Arrival {
        let state = &*self.shared;
        state.refuse_call_from_own_action("wait");
        let Some(_g) = state.lock_unless_stopped(deadline) else {
            let round = Round {
                index: 0,
                generation: state.generation.load(Ordering::Acquire),
                resets: state.resets.load(Ordering::Acquire),
            };
            self.request_break(round, BarrierBreak::TimedOut);
            return Arrival::Ended(Err(BrokenBarrier { cause: BarrierBreak::TimedOut }));
        };
        if let Some(broken) = self.broken_error() {
            return Arrival::Ended(Err(broken));
        }
        let index = state.count.load(Ordering::Relaxed);
        let generation = state.generation.load(Ordering::Relaxed);
        if index + 1 >= state.parties.load(Ordering::Relaxed) {
            // The action runs under the guard, as Python's runs under the barrier's
            // condition: nobody enters the next round before it ended. A process killed
            // while running it leaves the guard to be taken over, and the waiting
            // parties see it die (`forget_dead_holders`) and break the barrier.
            let acted = self.action.as_ref().map(|action| {
                let _acting = Acting::start(state);
                action.run()
            });
            if let Some(Err(cause)) = acted {
                self.break_locked(cause);
                drop(_g);
                state.changed.notify_all();
                return Arrival::Ended(Err(BrokenBarrier { cause }));
            }
            // Two stores, recorded: a process killed between them leaves the round to be
            // finished by the next holder of the guard (see `BarrierState::lock`).
            state.trip.begin([u64::from(generation.wrapping_add(1))]);
            crate::shm::crash::crash_point!("barrier.trip.acted");
            state.count.store(0, Ordering::Relaxed);
            crate::shm::crash::crash_point!("barrier.trip.counted");
            state.generation.store(generation.wrapping_add(1), Ordering::Release);
            state.trip.commit();
            drop(_g);
            state.changed.notify_all();
            return Arrival::Ended(Ok(index as usize));
        }
        state.count.store(index + 1, Ordering::Relaxed);
        Arrival::Waiting(Round { index: index as usize, generation, resets: state.resets.load(Ordering::Relaxed) })
    }

    /// How `round` ended, if it did: `Some(true)` completed, `Some(false)` broken or reset.
    fn round_outcome(&self, round: Round) -> Option<bool> {
        let state = &*self.shared;
        if state.generation.load(Ordering::Acquire) != round.generation {
            Some(true)
        } else if state.resets.load(Ordering::Acquire) != round.resets || state.broken.load(Ordering::Acquire) != 0 {
            Some(false)
        } else {
            None
        }
    }

    /// The periodic check of a waiting party: a holder that died breaks the barrier.
    ///
    /// Whoever forgot the dead holder: this check's own prune, or one by a process that
    /// did not care (another holder's drop of its last handle, the reap of the dead party),
    /// which counts the death in the holder table too. A death counted and not yet answered
    /// by a break (`deaths_answered`, moved on by [`Barrier::give_up`]) breaks the round.
    fn check_parties(&self) -> Result<(), BarrierBreak> {
        self.shared.forget_dead_holders();
        if self.shared.holder_deaths() != self.shared.deaths_answered.load(Ordering::Acquire) {
            Err(BarrierBreak::PartyDied)
        } else {
            Ok(())
        }
    }

    /// The periodic check of a party blocked in `round` without a deadline:
    /// [`Barrier::check_parties`], and whether another party could ever arrive.
    ///
    /// Nobody could when no handle is in a message and every live holder is a process
    /// that holds one handle and whose only thread of the program's (multiproc's own
    /// aside) is a party blocked in this round: such a process cannot act until the round
    /// ends, and a thread it ran besides could arrive through a reference to its handle,
    /// which no count sees. Each blocked party records its process here when it finds
    /// itself alone (it stays alone while it waits: only the program's threads start the
    /// program's threads). Decided under the guard, so no party arrives or leaves meanwhile.
    /// Futures do not make this check, and never count as alone: another task of the
    /// polling thread could arrive through a reference.
    fn check_blocked_party(&self, round: Round) -> Result<(), BarrierBreak> {
        self.check_parties()?;
        if !sys::alone_but_for_own_threads() {
            return Ok(());
        }
        let state = &*self.shared;
        let me = sys::me();
        let _g = state.lock();
        if self.round_outcome(round).is_some() {
            return Ok(());
        }
        if !state.alone.iter().any(|slot| slot.is(me, round)) {
            let Some(free) = state.alone.iter().find(|slot| !slot.holds(round)) else { return Ok(()) };
            // Free first: a process killed part-way leaves a free slot, never one naming
            // the slot's previous process with this one's start time.
            free.pid.store(0, Ordering::Relaxed);
            free.generation.store(round.generation, Ordering::Relaxed);
            free.resets.store(round.resets, Ordering::Relaxed);
            free.start.store(me.start, Ordering::Relaxed);
            crate::shm::crash::crash_point!("barrier.alone.started");
            free.pid.store(me.pid, Ordering::Relaxed);
        }
        let stuck = self
            .shared
            .all_holders(|process, handles| handles == 1 && state.alone.iter().any(|slot| slot.is(process, round)));
        if stuck { Err(BarrierBreak::Abandoned) } else { Ok(()) }
    }

    /// A party stops waiting for `round` (`cause`) before it ended: the barrier breaks,
    /// unless the round ended meanwhile. Returns whether the round completed.
    ///
    /// A party giving up for a death answers the deaths counted so far (whether it broke
    /// the round, or found it ended: a death after every party arrived broke nothing),
    /// after the break: a process killed in between leaves the death to break the next
    /// round again (after a reset), never a death unanswered.
    ///
    /// The guard is waited for as long as its holder runs, and for a short grace at most
    /// while it is stopped (`SIGSTOP`, a debugger; [`BarrierState::lock_unless_stopped`]).
    /// Without it, a round whose end is recorded (its last party stopped ending it)
    /// completed; any other is asked to break ([`Barrier::request_break`]), and the party
    /// ends with `cause` (`Err`): the round breaks when the next process takes the guard,
    /// unless it ended meanwhile.
    fn give_up(&self, round: Round, cause: BarrierBreak) -> Result<bool, BarrierBreak> {
        let state = &*self.shared;
        let Some(_g) = state.lock_unless_stopped(Deadline::after(GUARD_GRACE)) else {
            if state.trip.unfinished() == Some([u64::from(round.generation.wrapping_add(1))]) {
                return Ok(true);
            }
            if let Some(completed) = self.round_outcome(round) {
                return Ok(completed);
            }
            self.request_break(round, cause);
            return Err(cause);
        };
        let outcome = self.round_outcome(round);
        if outcome.is_none() {
            self.break_locked(cause);
        }
        if cause == BarrierBreak::PartyDied {
            state.deaths_answered.store(self.shared.holder_deaths(), Ordering::Release);
        }
        drop(_g);
        match outcome {
            Some(completed) => Ok(completed),
            None => {
                state.changed.notify_all();
                Ok(false)
            }
        }
    }

    /// Asks, without the guard, for `round` to break for `cause`: the guard's holder breaks
    /// it as it lets the guard go ([`Held`]), or this call if the guard was let go
    /// meanwhile, if the round is still on. One request is kept, the last: one for an older
    /// round is moot anyway.
    fn request_break(&self, round: Round, cause: BarrierBreak) {
        let state = &*self.shared;
        state.break_request.store(break_request(round.generation, round.resets, cause), Ordering::Relaxed);
        // See `Held`'s drop: a holder that let the guard go before this fence may not see
        // the request; the guard is then free here (or another's, who will see it).
        fence(Ordering::SeqCst);
        drop(state.try_lock());
    }

    /// What a party's wait for `round` returns.
    fn round_result(&self, round: Round, completed: bool) -> Result<usize, BrokenBarrier> {
        if completed {
            return Ok(round.index);
        }
        let cause = BarrierBreak::from_code(self.shared.broken.load(Ordering::Acquire)).unwrap_or(BarrierBreak::Reset);
        Err(BrokenBarrier { cause })
    }

    fn wait_until(&self, deadline: Deadline) -> Result<usize, BrokenBarrier> {
        let round = match self.arrive(deadline) {
            Arrival::Ended(result) => return result,
            Arrival::Waiting(round) => round,
        };
        // A timed wait ends anyway, and times out as Python's does (`TimedOut`).
        let check = || if deadline == Deadline::NEVER { self.check_blocked_party(round) } else { self.check_parties() };
        let waited = self.shared.changed.wait(deadline, SPIN, || self.round_outcome(round), check);
        let completed = match waited {
            Ok(completed) => completed,
            Err(interrupted) => match self.give_up(
                round,
                match interrupted {
                    Interrupted::TimedOut => BarrierBreak::TimedOut,
                    Interrupted::Check(cause) => cause,
                },
            ) {
                Ok(completed) => completed,
                Err(cause) => return Err(BrokenBarrier { cause }),
            },
        };
        self.round_result(round, completed)
    }

    /// Waits until all parties have called `wait`; returns this party's arrival index,
    /// `0` for the first to arrive up to `parties() - 1` for the last. The last to arrive
    /// runs the barrier's action, if it has one, before any party is released. A barrier
    /// built with a [`timeout`](BarrierBuilder::timeout) waits at most that long, as
    /// [`Barrier::wait_timeout`] does.
    ///
    /// # Errors
    ///
    /// [`BrokenBarrier`] when the barrier is or becomes broken while waiting (cause
    /// [`BarrierBreak::ActionPanicked`] for every party when the action panicked,
    /// [`BarrierBreak::TimedOut`] when the default timeout ran out,
    /// [`BarrierBreak::Abandoned`] when nobody else could ever arrive: see [`Barrier`]).
    ///
    /// # Panics
    ///
    /// When called from this barrier's own action, on the thread running it (the call
    /// would wait for the action): the action running breaks its barrier with
    /// [`BarrierBreak::ActionPanicked`]. See [`BarrierBuilder`].
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let barrier = multiproc::Barrier::new(2)?;
    /// let other = barrier.clone();
    /// let t = std::thread::spawn(move || other.wait().unwrap());
    /// let mine = barrier.wait()?;
    /// let mut both = [mine, t.join().unwrap()];
    /// both.sort();
    /// assert_eq!(both, [0, 1]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait(&self) -> Result<usize, BrokenBarrier> {
        self.wait_until(self.timeout.map_or(Deadline::NEVER, Deadline::after))
    }

    /// Like [`Barrier::wait`], waiting at most `timeout`. If it runs out, the barrier
    /// breaks for every party (as in Python).
    ///
    /// It ends by about its timeout even while another process is stopped (`SIGSTOP`, a
    /// debugger) inside the barrier's own bookkeeping. The break then waits for that
    /// process: the other parties see it once it goes on, unless the round completed
    /// meanwhile. A process merely slow there (running a long action, say) is waited
    /// for, past the timeout: the round it completes completes for this party too.
    ///
    /// # Errors
    ///
    /// [`BrokenBarrier`] with cause [`BarrierBreak::TimedOut`] when the timeout ran out,
    /// or another cause when the barrier broke otherwise.
    ///
    /// # Panics
    ///
    /// When called from this barrier's own action, on the thread running it (the call
    /// would wait for the action): the action running breaks its barrier with
    /// [`BarrierBreak::ActionPanicked`]. See [`BarrierBuilder`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{Barrier, BarrierBreak};
    /// # multiproc::init();
    /// let barrier = Barrier::new(2)?;
    /// let alone = barrier.wait_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(alone.cause(), BarrierBreak::TimedOut);
    /// assert!(barrier.is_broken());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BrokenBarrier> {
        self.wait_until(Deadline::after(timeout))
    }

    /// Breaks the barrier: waiting parties and later waits get [`BrokenBarrier`] until
    /// [`Barrier::reset`].
    ///
    /// # Panics
    ///
    /// When called from this barrier's own action, on the thread running it (the call
    /// would wait for the action): the action running breaks its barrier with
    /// [`BarrierBreak::ActionPanicked`]. See [`BarrierBuilder`].
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let barrier = multiproc::Barrier::new(2)?;
    /// barrier.abort();
    /// assert!(barrier.wait().is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[track_caller]
    pub fn abort(&self) {
        self.shared.refuse_call_from_own_action("abort");
        {
            let _g = self.shared.lock();
            self.break_locked(BarrierBreak::Aborted);
        }
        self.shared.changed.notify_all();
    }

    /// Returns the barrier to its empty, unbroken state; parties waiting now get
    /// [`BrokenBarrier`] (cause [`BarrierBreak::Reset`]).
    ///
    /// # Panics
    ///
    /// When called from this barrier's own action, on the thread running it (the call
    /// would wait for the action): the action running breaks its barrier with
    /// [`BarrierBreak::ActionPanicked`]. See [`BarrierBuilder`].
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let barrier = multiproc::Barrier::new(1)?;
    /// barrier.abort();
    /// barrier.reset();
    /// assert_eq!(barrier.wait()?, 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[track_caller]
    pub fn reset(&self) {
        let state = &*self.shared;
        state.refuse_call_from_own_action("reset");
        {
            let _g = state.lock();
            // Parties waiting are sent away (a new `resets`), and no longer counted. Always a
            // new one: after a break `count` is 0 while the broken round's parties may not
            // have looked yet, and the same `resets` would show them their round still on
            // (review66 H1).
            let resets = state.resets.load(Ordering::Relaxed).wrapping_add(1);
            state.reset.begin([u64::from(resets)]);
            state.resets.store(resets, Ordering::Release);
            crate::shm::crash::crash_point!("barrier.reset.counted");
            state.count.store(0, Ordering::Relaxed);
            state.broken.store(0, Ordering::Release);
            state.reset.commit();
        }
        state.changed.notify_all();
    }

    /// Whether the barrier is broken.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let barrier = multiproc::Barrier::new(2)?;
    /// assert!(!barrier.is_broken());
    /// barrier.abort();
    /// assert!(barrier.is_broken());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_broken(&self) -> bool {
        self.shared.looks().1 != 0
    }

    /// The number of parties.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// assert_eq!(multiproc::Barrier::new(3)?.parties(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn parties(&self) -> usize {
        self.shared.parties.load(Ordering::Relaxed) as usize
    }

    /// The number of parties waiting now (0 when broken).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let barrier = multiproc::Barrier::new(2)?;
    /// assert_eq!(barrier.n_waiting(), 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn n_waiting(&self) -> usize {
        let (count, broken) = self.shared.looks();
        if broken != 0 { 0 } else { count as usize }
    }
}

/// Builds a [`Barrier`] with an action or a default timeout; made by [`Barrier::builder`].
///
/// The action runs in whichever process of the family trips the barrier (the last party
/// to arrive), so it is a function of the program, never a closure with state: a `fn()`
/// ([`action`](BarrierBuilder::action)), or a `fn(A)` with arguments that travel with
/// every handle of the barrier ([`action_with`](BarrierBuilder::action_with)). It runs
/// once per round, before any party is released; while it runs the barrier is held. If it
/// panics, the barrier breaks: every waiting party, the tripping one included, gets
/// [`BrokenBarrier`] with cause [`BarrierBreak::ActionPanicked`]. As in Python, the action
/// must not call `wait`, `abort` or `reset` on its own barrier: such a call would wait for
/// the action itself, so it panics instead, and the action running breaks its barrier
/// that way (Python's deadlocks). That is this barrier, unless the call came from the
/// action of another barrier that this one's action tripped: then the inner action's
/// barrier breaks, and this one's action gets that break from its `wait`. Another thread of
/// the process making the call waits for the action to end, and so does any thread of a
/// process the action forked.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Barrier, Process, Value};
///
/// fn count(trips: Value<u32>) {
///     *trips.lock() += 1;
/// }
///
/// fn party(barrier: Barrier) {
///     barrier.wait().unwrap();
/// }
///
/// multiproc::init();
/// let trips = Value::new(0)?;
/// let barrier = Barrier::builder(2).action_with(count, trips.clone()).build()?;
/// let child = Process::new(party, barrier.clone()).start()?;
/// barrier.wait()?;
/// child.join()?;
/// assert_eq!(trips.get(), 1); // run once, by whichever party came last
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct BarrierBuilder {
    /// As asked: checked by `build`.
    parties: usize,
    timeout: Option<Duration>,
    action: Option<Result<Action, Error>>,
}

impl fmt::Debug for BarrierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierBuilder")
            .field("parties", &self.parties)
            .field("timeout", &self.timeout)
            .field("action", &self.action.is_some())
            .finish()
    }
}

impl BarrierBuilder {
    /// `f()` runs once each time the barrier trips, in the process of the last party to
    /// arrive (Python's `action`).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// fn tripped() {}
    /// let barrier = multiproc::Barrier::builder(1).action(tripped).build()?;
    /// barrier.wait()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn action(mut self, f: fn()) -> Self {
        self.action = Some(
            sys::pack_checked(f, unit_runner)
                .map(|call| Action { call, args: Arc::new(()) })
                .map_err(|_| Error::NotInExecutable),
        );
        self
    }

    /// `f(args)` runs once each time the barrier trips, in the process of the last party
    /// to arrive; `args` travel with every handle of the barrier (handles among them, such
    /// as a [`Value`](crate::Value) to count in, stay valid in every process).
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// fn count(trips: multiproc::Value<u32>) {
    ///     *trips.lock() += 1;
    /// }
    /// let trips = multiproc::Value::new(0)?;
    /// let barrier = multiproc::Barrier::builder(1).action_with(count, trips.clone()).build()?;
    /// barrier.wait()?;
    /// barrier.wait()?;
    /// assert_eq!(trips.get(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn action_with<A>(mut self, f: fn(A), args: A) -> Self
    where
        A: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        self.action = Some(Action::of(f, args));
        self
    }

    /// The default timeout of [`Barrier::wait`] (Python's `timeout`); when it runs out the
    /// barrier breaks with [`BarrierBreak::TimedOut`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::{Barrier, BarrierBreak};
    /// # multiproc::init();
    /// let barrier = Barrier::builder(2).timeout(Duration::from_millis(10)).build()?;
    /// assert_eq!(barrier.wait().unwrap_err().cause(), BarrierBreak::TimedOut);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Makes the barrier.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the parties are 0 or above `u32::MAX`;
    /// [`Error::NotInExecutable`] when the action lives in a shared library (another
    /// process could not find it); [`Error::HeapFull`] when the family's shared memory is
    /// exhausted.
    ///
    /// # Examples
    ///
    /// ```
    /// # multiproc::init();
    /// let barrier = multiproc::Barrier::builder(3).build()?;
    /// assert_eq!(barrier.parties(), 3);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn build(self) -> Result<Barrier, Error> {
        let parties = match u32::try_from(self.parties) {
            Ok(0) => return Err(Error::InvalidArgument("a Barrier needs at least one party")),
            Ok(parties) => parties,
            Err(_) => return Err(Error::InvalidArgument("a Barrier has at most u32::MAX parties")),
        };
        let action = self.action.transpose()?;
        Barrier::create(parties, self.timeout, action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reset after a break sends the broken round's waiting parties away (review66 H1): a
    /// break zeroes `count`, and a reset moved `resets` only when `count > 0`, so a party
    /// that looked after the reset saw its round (same generation, same resets, not broken)
    /// still on, and waited on uncounted in the next round: released with it (more parties
    /// than `parties`, duplicate indices) or never. The break either way: under the guard
    /// (`abort`), or asked for without it and applied by the reset's own hold.
    #[test]
    fn a_reset_after_a_break_sends_the_broken_rounds_parties_away() {
        let _heap = crate::shm::heap_test_user();
        type Break = fn(&Barrier, Round);
        let breaks: [(&str, Break); 2] = [
            ("an abort", |barrier, _| barrier.abort()),
            ("a break asked for without the guard, pending", |barrier, round| {
                let request = break_request(round.generation, round.resets, BarrierBreak::TimedOut);
                barrier.shared.break_request.store(request, Ordering::SeqCst);
            }),
        ];
        for (name, break_it) in breaks {
            let barrier = Barrier::new(3).unwrap();
            let Arrival::Waiting(round) = barrier.arrive(Deadline::NEVER) else { panic!("one party of three ended") };
            break_it(&barrier, round);
            barrier.reset();
            assert_eq!(barrier.round_outcome(round), Some(false), "{name}, then a reset: the round's party waits on");
        }
    }

    /// A break asked for while another holds the guard is applied when that one lets the
    /// guard go (review66 M2): it was applied only when a process next took the guard, so
    /// with nobody to take it (no arrival, reset or abort) the round's untimed parties
    /// waited for ever, where Python's break at once. Here this process holds the guard (as
    /// a stopped process would, its party's request made without it), then lets it go.
    #[test]
    fn a_break_asked_for_while_the_guard_is_held_is_applied_when_it_is_let_go() {
        let _heap = crate::shm::heap_test_user();
        let barrier = Barrier::new(3).unwrap();
        let Arrival::Waiting(round) = barrier.arrive(Deadline::NEVER) else { panic!("one party of three ended") };
        let held = barrier.shared.lock();
        barrier.request_break(round, BarrierBreak::TimedOut);
        assert_eq!(barrier.round_outcome(round), None, "applied without the guard");
        drop(held);
        assert_eq!(barrier.round_outcome(round), Some(false), "the guard let go, the round still on");
        assert_eq!(barrier.broken_error().map(|e| e.cause()), Some(BarrierBreak::TimedOut));
    }
}
