//! `cluster::Queue<T>`: a named Redis list that programs on any machine share.
//!
//! Keys, all under one hash tag so that they live on one Redis Cluster shard:
//!
//! ```text
//! mp:{q:NAME}:items        the list: put pushes on the left, get takes from the right
//! mp:{q:NAME}:take:ID      consumer ID's landing list: an item between the list and proc
//! mp:{q:NAME}:proc:ID      consumer ID's processing list (taken, not yet acknowledged)
//! mp:{q:NAME}:alive:ID     consumer ID's heartbeat, a key that expires after the lease
//! mp:{q:NAME}:last:ID      the number of consumer ID's last take that moved an item to
//!                          its processing list (expires after the lease)
//! mp:{q:NAME}:fence:ID     the number of consumer ID's last take that `RECOVER` looked for:
//!                          a take at or below it reaching Redis late moves nothing to the
//!                          processing list (expires after the lease)
//! mp:{q:NAME}:consumers    the set of consumer IDs that may hold a processing list
//! mp:{q:NAME}:dead         items that did not decode or were too large, kept for inspection
//! mp:{q:NAME}:puts:ID      producer ID's puts that may be sent again (expires at least 45
//!                          minutes after its last put)
//! ```
//!
//! A handle's clean drop (`RETIRE`, or a `DEL` for a handle that never took) deletes its
//! own keys: `take:`, `proc:` (their items back in line), `alive:`, `last:` (read only by
//! this consumer's next take), and `puts:` unless a copy of one of its puts may still reach
//! Redis (a send whose reply was lost) or a `PutToken` still holds one (aud105 L1: `last:`
//! and `puts:` stayed until they expired). A take whose reply was lost may yet run after
//! the drop: it finds no heartbeat, and puts what its move took back first in line, writing
//! nothing of its consumer's (`TAKE` lands an item only while its consumer's heartbeat
//! lives: review163 H1, review171 M1).
//! A fork child's copy of the handle (a consumer of its own, and a producer of its own)
//! deletes nothing: its keys expire.
//!
//! A get moves an item atomically (`BLMOVE`) from the list to the consumer's landing list,
//! its reply suppressed (`CLIENT REPLY SKIP`), and a script in the same pipeline moves it
//! on to the processing list and returns it only if it is at most `max_message_size`
//! bytes: a larger item (put there by another program) goes to the dead-letter list
//! without ever crossing the network, so what a consumer reads from Redis is bounded. The
//! acknowledgement removes the item from the processing list. Every consumer refreshes its heartbeat
//! (at most a third of the lease apart, while it calls the queue) and, in the same script,
//! moves back the processing lists of consumers whose heartbeat expired. A take lands an
//! item only while its consumer's heartbeat lives, and refreshes it: one that reaches Redis
//! later (its consumer stopped or suspended, the network slow, the consumer gone) puts the
//! item back and its get takes again with a heartbeat, as the consumer's clock cannot be
//! trusted to know its heartbeat is fresh. So an item is lost only with Redis's own data,
//! and delivered more than once only when its consumer died, or stopped calling the queue
//! for longer than the lease (on Redis's clock), before acknowledging it.
//!
//! A take whose reply never came (the server silent past the timeout, the connection
//! lost) may still have run: its item would sit in the processing list of a consumer that
//! does not know it holds it, kept from everybody while that consumer lives. So each take
//! carries a number, which `TAKE` records (`last:ID`) when it moves an item to the
//! processing list, and the consumer's next take first runs `RECOVER` with the failed
//! take's number: if that take ran, its item (the newest of the processing list) goes back
//! first in line. If it has not run yet (its bytes on their way on a connection the client
//! gave up), `RECOVER` fences it (`fence:ID`), and `TAKE` puts back in line what a take at
//! or below the fence moved, once it runs: no later take looks for it (review159 L4: it
//! stayed held by a live consumer, unseen until the handle retired).
//!
//! A put whose reply never came may have run too, so each put carries a number (per
//! handle: the handle's id and a count), and `PUT` pushes the value only if that number is
//! not in the producer's record (`puts:ID`), which it then enters: a put sent again (by the
//! put itself, which sends again until the timeout has passed since its first failure, or
//! by [`Queue::put_again`] with the [`PutToken`] of a [`PutError::Unsure`]) takes effect
//! at most once. The record holds a floor, below which every number is refused: the handle
//! raises it to its oldest put that may still be sent (in progress, or held by a token),
//! so a copy of a put that reaches Redis late, once the put was settled, is refused too;
//! puts remove the numbers settled below the floor, 64 or more at once (one above it stays
//! until the floor passes it: its field is what refuses its late copy). So the record holds
//! at most a few hundred numbers while no token is held, and, while one is, also every
//! number settled since the oldest token's; it expires an hour after the handle's last put
//! (at least 45 minutes: a put refreshes it every quarter of an hour).

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::ConnectionLike as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::key::{Seal, Secret, sealed_bound};
use super::link::{Conn, LEAST_BULK_BOUND, Link, SLICE, server_bound_why, too_large_to_send};
use super::{AckError, ClusterError, GetError, PutError, PutToken, Tls};
use crate::codec::{self, CodecError};
use crate::shm::TakenIn;
use crate::shm::crash::{crash_point, fail_point};

/// Puts `ARGV[1]` under the number `ARGV[3]` of the producer whose record is `KEYS[2]`
/// (see the module doc), when the list `KEYS[1]` holds fewer than `ARGV[2]` items (0: no
/// bound): 1 when put, 2 when that number took effect already (or is below the floor: a
/// copy of a settled put), 3 when a `FENCE` refused the number (it never runs), 0 when
/// full. When put, the floor rises to `ARGV[4]`, the
/// numbers `ARGV[7..]` leave the record, and the record expires after `ARGV[5]` ms if
/// `ARGV[6]` is 1 or the record is new. Three calls in the usual case (`HMGET`, `LPUSH`,
/// `HSET`).
const PUT: &str = r"
local r = KEYS[2]
local got = redis.call('HMGET', r, 'floor', ARGV[3])
if got[2] == 'f' then return 3 end
if got[2] or (got[1] and tonumber(ARGV[3]) < tonumber(got[1])) then return 2 end
local max = tonumber(ARGV[2])
if max > 0 and redis.call('LLEN', KEYS[1]) >= max then return 0 end
redis.call('LPUSH', KEYS[1], ARGV[1])
local floor = ARGV[4]
if got[1] and tonumber(got[1]) > tonumber(floor) then floor = got[1] end
redis.call('HSET', r, 'floor', floor, ARGV[3], '')
if #ARGV > 6 then redis.call('HDEL', r, unpack(ARGV, 7)) end
if ARGV[6] == '1' or not got[1] then redis.call('PEXPIRE', r, ARGV[5]) end
return 1
";

/// Whether the put numbered `ARGV[1]` of the producer whose record is `KEYS[1]` ran: 1 when
/// it did (its number is in the record, as `PUT` enters it), else 0, having entered the
/// number with its own mark (`f`), so that no copy of it runs from now on (`PUT` answers 3).
/// The mark is not `PUT`'s: a fence sent again (its reply lost) answers 0 again, and a send
/// of the number after it answers 3, never "ran" (review131 H1). A record it makes expires
/// after `ARGV[2]` ms.
const FENCE: &str = r"
local r = KEYS[1]
local v = redis.call('HGET', r, ARGV[1])
if v == 'f' then return 0 end
if v then return 1 end
local new = redis.call('EXISTS', r) == 0
redis.call('HSET', r, ARGV[1], 'f')
if new then redis.call('PEXPIRE', r, ARGV[2]) end
return 0
";

/// Settled numbers leave the record by this many at once (at most four times as many).
const FORGET: usize = 64;

/// How long a producer's record of puts outlives its last put, at least.
const PUT_RECORD: Duration = Duration::from_secs(3600);

/// The heartbeat of consumer `ARGV[1]`, and the return of every processing list whose
/// consumer's heartbeat expired (oldest item first in line).
const BEAT: &str = r"
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
local moved = 0
for _, c in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[3] .. ':alive:' .. c) == 0 then
    local p = ARGV[3] .. ':proc:' .. c
    while redis.call('LMOVE', p, KEYS[1], 'LEFT', 'RIGHT') do moved = moved + 1 end
    local t = ARGV[3] .. ':take:' .. c
    while redis.call('LMOVE', t, KEYS[1], 'LEFT', 'RIGHT') do moved = moved + 1 end
    redis.call('SREM', KEYS[2], c)
  end
end
return moved
";

/// A consumer that leaves: its unacknowledged items go back first in line, and its keys
/// go: its heartbeat, the number of its last take (`KEYS[6]`: read only by its own next
/// take's `RECOVER`) and its fence (`KEYS[8]`), and its record of puts (`KEYS[7]`) if
/// `ARGV[2]` is 1 (no copy of one of its puts can still reach Redis: see `Queue`'s `Drop`).
const RETIRE: &str = r"
while redis.call('LMOVE', KEYS[2], KEYS[1], 'LEFT', 'RIGHT') do end
while redis.call('LMOVE', KEYS[5], KEYS[1], 'LEFT', 'RIGHT') do end
redis.call('DEL', KEYS[3], KEYS[6], KEYS[8])
if ARGV[2] == '1' then redis.call('DEL', KEYS[7]) end
redis.call('SREM', KEYS[4], ARGV[1])
return 0
";

/// After a (B)LMOVE from the list (`KEYS[4]`) to the landing list (`KEYS[1]`), whose reply
/// was skipped: the oldest landed item moves on to the processing list (`KEYS[2]`) and is
/// returned, the take's number `ARGV[2]` noted in `KEYS[5]` and the consumer's heartbeat
/// (`KEYS[7]`) refreshed (both for `ARGV[3]` ms, the lease), or, if larger than `ARGV[1]`
/// bytes, goes to the dead-letter list (`KEYS[3]`) and only its size is returned.
///
/// A take at or below the fence `KEYS[6]` (`RECOVER` looked for it: it reaches Redis late)
/// puts what landed back first in line, and answers nil.
///
/// An item lands only while the consumer's heartbeat lives, in Redis, whatever the
/// consumer's clock says: with none (`SET … XX` sets nothing), what landed goes back first
/// in line and the answer is -1, on which the consumer takes again, with a heartbeat. A
/// take reaches Redis after its heartbeat expired when its consumer was stopped or
/// suspended between its look at its heartbeat and its send (`Instant` does not count a
/// suspend), or the network held it longer than a short lease; or after its consumer left
/// (its handle retired, its process killed or ended). The item landed all the same: a
/// live consumer got it, and the next heartbeat of any consumer gave it back while that
/// consumer held it, delivered twice (review171 M1); a gone one held it for ever, in a
/// processing list no heartbeat looks at (review163 H1, whose fix, a `SADD` of the
/// consumer into the set when an item landed, is what review171 M1 found). The refresh
/// gives what lands a whole lease on Redis's clock, however old the heartbeat was: one
/// write per item taken, in the same script.
///
/// Nothing landed: the script makes the move itself (`LMOVE`, not blocking), and answers
/// nil if the list is empty. That move meets whatever refused the skipped one, with the same
/// error, which the get sees: a replica's `READONLY` (review159 M2), a master's `OOM` at
/// `maxmemory` (review163 M2), `NOREPLICAS`, `MISCONF`, the list's wrong type. Answered
/// nil, as for an empty queue, each sent the next take at once, in a hot loop until the
/// heartbeat was due (a script that only read ran on a replica; the `DEL` that followed it
/// then is not refused for memory), and at `maxmemory` the get said `Timeout` with items in
/// line. An item that came just after the blocking move gave up is taken at once.
const TAKE: &str = r"
local v = redis.call('LINDEX', KEYS[1], -1)
if not v then
  v = redis.call('LMOVE', KEYS[4], KEYS[1], 'RIGHT', 'LEFT')
  if not v then return false end
end
local fence = redis.call('GET', KEYS[6])
if fence and tonumber(ARGV[2]) <= tonumber(fence) then
  redis.call('LMOVE', KEYS[1], KEYS[4], 'RIGHT', 'RIGHT')
  return false
end
if #v > tonumber(ARGV[1]) then
  redis.call('LMOVE', KEYS[1], KEYS[3], 'RIGHT', 'LEFT')
  return #v
end
if not redis.call('SET', KEYS[7], '1', 'PX', ARGV[3], 'XX') then
  redis.call('LMOVE', KEYS[1], KEYS[4], 'RIGHT', 'RIGHT')
  return -1
end
redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
redis.call('SET', KEYS[5], ARGV[2], 'PX', ARGV[3])
return v
";

/// Before a take that follows one whose reply never came (number `ARGV[1]`): anything in
/// the landing list (`KEYS[4]`) goes back first in line (`KEYS[3]`), and if that take
/// moved an item to the processing list (`KEYS[2]`), as `KEYS[1]` tells, that item (the
/// newest there: nothing was taken since) goes back first in line too. Either way the
/// fence (`KEYS[5]`, for `ARGV[2]` ms) rises to that number: if the take has not run yet,
/// it moves nothing when it does (`TAKE`).
const RECOVER: &str = r"
while redis.call('LMOVE', KEYS[4], KEYS[3], 'LEFT', 'RIGHT') do end
local fence = redis.call('GET', KEYS[5])
if not fence or tonumber(fence) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[5], ARGV[1], 'PX', ARGV[2])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('LMOVE', KEYS[2], KEYS[3], 'LEFT', 'RIGHT')
  return 1
end
return 0
";

/// Moves item `ARGV[1]` out of this consumer's processing list (`KEYS[1]`) onto the list
/// `KEYS[2]` by `ARGV[2]` (`LPUSH`: a refused item to the dead-letter list; `RPUSH`: a
/// value dropped unacknowledged, first in line again), only if it is still there. Another
/// consumer may have taken it back meanwhile (this one paused past its lease): pushed
/// unconditionally, it was then set aside, or in line, twice (review75 L5). The push comes
/// before the removal: a script's writes are not undone when a later command fails, so a
/// push refused (an ACL that lets a consumer take but not push) after the `LREM` left the
/// item in neither list (review80 M2). Refused first, it fails the script having written
/// nothing, and the item stays held, returned when this consumer retires or dies.
const MOVE_HELD: &str = r"
if redis.call('LPOS', KEYS[1], ARGV[1]) then
  redis.call(ARGV[2], KEYS[2], ARGV[1])
  redis.call('LREM', KEYS[1], 1, ARGV[1])
end
return 0
";

/// Runs [`MOVE_HELD`]: `item` from `processing` onto `to` by `push`.
fn move_held(c: &mut Conn, processing: &str, to: &str, item: &[u8], push: &str) -> redis::RedisResult<()> {
    redis::cmd("EVAL").arg(MOVE_HELD).arg(2).arg(processing).arg(to).arg(item).arg(push).query(c)
}

const DEFAULT_LEASE: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// A FIFO queue in a Redis list, named so that independent programs, on any machines,
/// share it: Python's `multiprocessing.Queue` beyond one machine.
///
/// Delivery is **at-least-once**: [`receive`](Queue::receive) moves an item to this
/// consumer's processing list, where it stays until [`Received::ack`]; if the consumer
/// dies first (or stops calling the queue for longer than the
/// [`lease`](QueueBuilder::lease)), another consumer takes it back and it is delivered
/// again. [`get`](Queue::get) is `receive` acknowledged as soon as the value is decoded
/// (the value is returned even if that acknowledgement fails: the item may then be
/// delivered again, never lost).
///
/// A put takes effect at most once, however often it is sent: one whose reply was lost is
/// sent again by the put itself until the [`timeout`](QueueBuilder::timeout) has passed
/// since that failure; then it fails with [`PutError::Unsure`], whose token
/// [`put_again`](Queue::put_again) puts exactly once (the value is never in the queue
/// twice because a reply was lost).
///
/// Every call returns within a bounded time: when Redis is unreachable, killed or silent,
/// the error is [`ClusterError::Unreachable`] after at most the
/// [`timeout`](QueueBuilder::timeout) plus one second (a put: three times the timeout plus two
/// seconds, as it sends again; a get that waits: four times the timeout plus three seconds,
/// and seven seconds at least, see below); the next call connects anew.
///
/// A get that waits ([`get`](Queue::get), [`receive`](Queue::receive) and their `_timeout`
/// forms) waits out Redis away (a restart, a lost connection, a server `BUSY` with a script
/// or `LOADING` its data, a replica answering `READONLY` after a failover that the URL's name
/// or address has not followed yet) as it waits out an empty queue: it tries again, connecting anew,
/// until the [`timeout`](QueueBuilder::timeout) has passed since its first failure (and
/// never past its own deadline), then fails `Unreachable`. Each of its takes waits for
/// Redis's answer a second past the take's own wait (a second at most), whatever the
/// queue's `timeout`: Redis answers a wait that timed out up to a tick of its clock late (a
/// second at `hz 1`), and a failover's demoted master ends a blocking take and then answers
/// nothing more on that connection, which is left then (`Unreachable`, waited out as Redis
/// away), even with `timeout(Duration::MAX)`. A `_timeout` form also ends each of its
/// turns on the connection (the open one may need, its take, a get's acknowledgement) a
/// second past its deadline, or past the turn's start where that is later (a turn that
/// waits behind another thread's call on a shared handle): so on a handle no other thread
/// is using it returns by its deadline plus two seconds at most, and on a healthy Redis
/// within milliseconds of it, even where Redis stops answering mid-wait (then
/// `Unreachable`; a get whose acknowledgement fails returns the value all the same, which
/// may then be delivered again). A try (`try_get`, `try_receive`) fails at once. Nothing
/// is lost either way: a take whose reply was lost is recovered by the next try: its item
/// is not lost.
///
/// What it leaves in Redis: its items (in line, and dead-lettered) until taken or deleted.
/// A handle's drop deletes the keys of its own (its consumer's lists, heartbeat and last
/// take, its record of puts), but the record of a handle one of whose puts had its reply
/// lost, which expires an hour after its last put: a late copy of that put must still be
/// refused. A handle that dies, or is dropped while Redis is away, leaves its keys to expire
/// (a [`lease`](QueueBuilder::lease); an hour for the record of puts): a drop waits for
/// Redis two and a half seconds at most, whatever the handle's `timeout` (half a second for
/// each exchange, a second and a half for an open it needs).
///
/// A `Queue` may be shared by the threads of a process (its calls take turns on one
/// connection); open one per thread for parallel blocking gets. A copy that a `Fork`
/// child got with its parent's memory (kept in a static) connects anew on its first call,
/// and its drop retires nothing (nor does the drop of a copied [`Received`] give its value
/// back): what the parent's consumer holds stays the parent's. Its takes act for a
/// consumer of its own, made on its first get (or [`keep_alive`](Queue::keep_alive))
/// there, which what it takes is held by; as the copy's drop retires nothing, what that
/// consumer still holds when the child is done is delivered again after the lease (open a
/// queue of the child's own to give it back at once). Its puts go under a record of puts
/// of its own (which expires an hour after its last put), so the parent's drop never
/// deletes what refuses a late copy of one of them.
///
/// # Examples
///
/// ```no_run
/// use multiproc::cluster::Queue;
///
/// let q = Queue::<(u32, String)>::open("redis://127.0.0.1:6379/0", "greetings")?;
/// q.put((1, "hello".into()))?;
/// assert_eq!(q.get()?, (1, "hello".into()));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Queue<T> {
    /// The queue's name, under each item's tag.
    name: String,
    keys: Keys,
    /// Seals each item put and checks each item taken (see [`QueueBuilder::authkey`]).
    seal: Seal,
    consumer: String,
    maxsize: usize,
    max_message_size: usize,
    lease: Duration,
    timeout: Duration,
    state: Mutex<State>,
    /// The items of values whose [`Received`] was dropped unacknowledged while another
    /// thread's call held `state` past [`DROP_WAIT`]: given back by this handle's next turn
    /// of a get (review159 M3), or with everything it holds when it retires.
    dropped: Mutex<Vec<Vec<u8>>>,
    puts: Arc<Mutex<Puts>>,
    /// The record of puts of this handle's copy in a `Fork` child (kept in a static), made
    /// on its first put there: a producer of its own. On the parent's record, the parent's
    /// clean drop deleted what refused a late copy of the child's put (review156 M2: it ran
    /// twice), and the two gave the same numbers (the parent's next put was refused as run).
    forked_puts: Mutex<Option<ForkedPuts>>,
    put_script: redis::Script,
    fence_script: redis::Script,
    /// The process that opened it. A copy that fork made in a child (kept in a static)
    /// is not that consumer's end: its drop retires nothing (the values the parent holds
    /// stay the parent's).
    made_in: TakenIn,
    _type: PhantomData<fn(T) -> T>,
}

/// A fork copy's record of puts: the process it is for, its key and its puts.
struct ForkedPuts {
    made_in: TakenIn,
    record: String,
    puts: Arc<Mutex<Puts>>,
}

/// A handle's puts: the numbers given, those that may still be sent, those settled since.
#[derive(Default)]
pub(crate) struct Puts {
    last: u64,
    /// Puts in progress, or held by a `PutToken`: the floor is the oldest of them.
    open: BTreeSet<u64>,
    /// Settled, their numbers still in the record: they leave it once below the floor.
    settled: BTreeSet<u64>,
    /// When a put last refreshed the record's expiry.
    refreshed: Option<Instant>,
    /// Whether a send of one of its puts may have run unseen (its reply lost, or the
    /// connection with it): a copy of it may reach Redis late, which the record refuses,
    /// so the record outlives the handle (it expires).
    lost: bool,
}

/// A put given a number, until it is settled (dropped: its value is in the queue, or the
/// put was given up); a [`PutToken`] holds one.
pub(crate) struct SentPut {
    number: u64,
    bytes: Vec<u8>,
    items: String,
    record: String,
    puts: Arc<Mutex<Puts>>,
}

impl SentPut {
    pub(crate) fn number(&self) -> u64 {
        self.number
    }
}

impl Drop for SentPut {
    fn drop(&mut self) {
        let mut puts = self.puts.lock().unwrap_or_else(|e| e.into_inner());
        puts.open.remove(&self.number);
        puts.settled.insert(self.number);
    }
}

impl State {
    /// One exchange of a get, on its connection (opened first if needed), by the get's
    /// deadline as a turn's exchanges are ([`Until::turn_end`]) if it has one, else with the
    /// link's own waits.
    fn run_until<R>(
        &mut self,
        until: Until,
        f: impl FnOnce(&mut Conn) -> redis::RedisResult<R>,
    ) -> Result<R, ClusterError> {
        let end = until.turn_end();
        self.link.connect_by(end)?;
        self.link.run(|c| {
            if let Some(at) = end {
                c.end_by(at);
            }
            f(c)
        })
    }
}

struct State {
    link: Link,
    /// When this consumer last refreshed its heartbeat (`None`: never, or a take found it
    /// gone: the next take carries one).
    beat: Option<Instant>,
    /// The number of the last take sent.
    takes: u64,
    /// The number of a take whose reply never came, until `RECOVER` ran for it.
    unsure: Option<u64>,
    /// In a `Fork` child's copy, the consumer its takes act for, and the process it is for
    /// ([`Queue::taker`]).
    forked: Option<(TakenIn, String)>,
}

struct Keys {
    prefix: String,
    items: String,
    consumers: String,
    dead: String,
}

impl Keys {
    fn new(name: &str) -> Self {
        let prefix = format!("mp:{{q:{name}}}");
        Keys {
            items: format!("{prefix}:items"),
            consumers: format!("{prefix}:consumers"),
            dead: format!("{prefix}:dead"),
            prefix,
        }
    }

    fn processing(&self, consumer: &str) -> String {
        format!("{}:proc:{consumer}", self.prefix)
    }

    fn landing(&self, consumer: &str) -> String {
        format!("{}:take:{consumer}", self.prefix)
    }

    fn alive(&self, consumer: &str) -> String {
        format!("{}:alive:{consumer}", self.prefix)
    }

    fn last_take(&self, consumer: &str) -> String {
        format!("{}:last:{consumer}", self.prefix)
    }

    fn fence(&self, consumer: &str) -> String {
        format!("{}:fence:{consumer}", self.prefix)
    }

    fn puts(&self, producer: &str) -> String {
        format!("{}:puts:{producer}", self.prefix)
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("key", &self.keys.items).field("consumer", &self.consumer).finish()
    }
}

/// Options of a [`Queue`], named after Python's where Python has them.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use multiproc::cluster::Queue;
///
/// let q = Queue::<u64>::builder()
///     .maxsize(1000)
///     .lease(Duration::from_secs(10))
///     .open("redis://:secret@127.0.0.1:6379/0", "numbers")?;
/// q.put(7)?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct QueueBuilder<T> {
    maxsize: usize,
    max_message_size: usize,
    lease: Duration,
    timeout: Duration,
    tls: Option<Tls>,
    authkey: Option<Secret>,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> QueueBuilder<T> {
    /// The cluster key each item is sealed under when put and checked under when taken
    /// (default: the environment variable [`KEY_ENV`](super::KEY_ENV), else the user's key
    /// file, as for a pool: see [`ClusterOptions::authkey`](super::ClusterOptions::authkey);
    /// at least 16 bytes, random). Each item carries an HMAC-SHA256 of the queue's name and
    /// its bytes: an item that does not check (written to Redis by someone without the key,
    /// changed there, or copied from another queue) is never decoded, is moved to the
    /// dead-letter list, and its get fails with [`GetError::Unauthenticated`]. Every
    /// program of a queue needs the same key.
    ///
    /// The tag proves who made an item, not that it is new: a copy of a genuine item,
    /// pushed again by whoever can write to Redis, is delivered again, any number of times,
    /// at any later time (after the original was acknowledged, months later), into any
    /// queue of the same name under the same key, on any server. A check without state
    /// cannot bound that, and at-least-once delivery already asks consumers to cope with
    /// a value twice: put a unique id in the value and deduplicate on it (the tag makes the
    /// id trustworthy).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<u32>::builder()
    ///     .authkey("0123456789abcdef0123456789abcdef")
    ///     .open("redis://127.0.0.1/", "jobs")?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> Self {
        self.authkey = Some(Secret::new(key.as_ref()));
        self
    }

    /// Puts wait (or fail, for `try_put`) while the list holds this many items; 0 (the
    /// default) is no bound. Each program applies its own `maxsize` to its own puts.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<u32>::builder().maxsize(100).open("redis://127.0.0.1/", "jobs")?;
    /// assert_eq!(q.maxsize(), Some(100));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn maxsize(mut self, maxsize: usize) -> Self {
        self.maxsize = maxsize;
        self
    }

    /// The largest encoded message put or accepted (default 64 MiB; the item's 32-byte tag
    /// under the cluster key comes on top, as on a pool's result message; `usize::MAX` is
    /// no limit): a larger item is
    /// refused before it reaches Redis, or, put there by another program, moved to the
    /// dead-letter list by Redis itself, without crossing the network
    /// ([`GetError::Decode`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<Vec<u8>>::builder()
    ///     .max_message_size(1 << 20)
    ///     .open("redis://127.0.0.1/", "blobs")?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How long this consumer's heartbeat lasts (default 30 s, at least 3 ms, at most a
    /// hundred years: a longer one, such as `Duration::MAX`, is that): once it has
    /// expired, other consumers deliver its unacknowledged items again. A consumer keeps
    /// it alive by calling the queue (any get or [`Queue::keep_alive`]) more often. It runs
    /// on Redis's clock: each item taken comes with a whole lease from the moment the take
    /// reached Redis, and a take that reaches Redis after the heartbeat expired (the process
    /// stopped or its machine suspended just before sending it, a network slower than a
    /// short lease) takes nothing, and its get takes again with a new heartbeat.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// // Items this consumer took and did not ack go to others 5 s after it stops calling.
    /// let q = multiproc::cluster::Queue::<u32>::builder()
    ///     .lease(Duration::from_secs(5))
    ///     .open("redis://127.0.0.1/", "jobs")?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.clamp(Duration::from_millis(3), super::MAX_LEASE);
        self
    }

    /// How long to wait for Redis to connect or to answer (default 5 s) before the call
    /// fails with [`ClusterError::Unreachable`]. A put whose reply was lost is sent again
    /// for this long after the failure before it fails with [`PutError::Unsure`]; a get
    /// that waits tries again for this long after its first failure (within its own
    /// deadline), so that a Redis restart shorter than this is waited out.
    ///
    /// A connect waits at most the timeout (zero is taken as 1 ms). A whole open (resolving the
    /// host, connecting to each of its addresses, the TLS handshake, `AUTH`) and each command
    /// (sending it and reading its reply, however large) end within a second more than the timeout
    /// of their start (the longest a blocking command of the queue's blocks), a get's take
    /// within its wait and a second whatever the timeout (see [`Queue`]), plus a second for
    /// each MiB they move: a large item crosses any link of 1 MiB/s or more (bytes the system's
    /// buffers take at once count as moved), and a peer that takes it slower than that is given up.
    /// A name server that has not answered by then is left behind (its lookup goes on, on a thread
    /// of its own that the opens of that host share while it is young, a few at most; while it is
    /// listed, a `Fork` start is refused as with any other thread; if no thread can be started, the
    /// open resolves the name itself, untimed).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// let q = multiproc::cluster::Queue::<u32>::builder()
    ///     .timeout(Duration::from_millis(500))
    ///     .open("redis://127.0.0.1/", "jobs")?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The certificates of a `rediss://` URL (default: the system's authorities, no
    /// client certificate).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::cluster::{Queue, Tls};
    ///
    /// let ca = std::fs::read("/etc/redis/ca.pem")?;
    /// let q = Queue::<u32>::builder().tls(Tls::new().ca_pem(ca)).open("rediss://redis.example:6380/", "jobs")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Opens the queue `name` in the Redis server at `url` (created by the first put).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<String>::builder().maxsize(10).open("redis://127.0.0.1/", "names")?;
    /// q.put("ada".to_string())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClusterError::BadUrl`]; [`ClusterError::Unreachable`],
    /// [`ClusterError::Auth`] (credentials) or [`ClusterError::Tls`] when Redis cannot be
    /// used; [`ClusterError::Key`] when no cluster key can be had.
    pub fn open(self, url: &str, name: &str) -> Result<Queue<T>, ClusterError> {
        let seal = Seal::new(self.authkey.as_ref())?;
        let mut link = Link::with_tls(url, self.timeout, self.tls.as_ref())?;
        link.run(|c| redis::cmd("PING").query::<()>(c))?;
        Ok(Queue {
            name: name.to_string(),
            keys: Keys::new(name),
            seal,
            consumer: consumer_id(),
            maxsize: self.maxsize,
            max_message_size: self.max_message_size,
            lease: self.lease,
            timeout: self.timeout,
            state: Mutex::new(State { link, beat: None, takes: 0, unsure: None, forked: None }),
            dropped: Mutex::default(),
            puts: Arc::default(),
            forked_puts: Mutex::new(None),
            put_script: redis::Script::new(PUT),
            fence_script: redis::Script::new(FENCE),
            made_in: TakenIn::here(),
            _type: PhantomData,
        })
    }
}

/// Tests: the bytes of take `number` of `q`'s consumer (no heartbeat, not blocking), as they
/// would reach Redis late.
pub fn test_take_command<T: Serialize + DeserializeOwned>(q: &Queue<T>, number: u64) -> Vec<u8> {
    let consumer = q.taker(&mut q.state());
    q.take_pipeline(&consumer, number, None, false).get_packed_pipeline()
}

/// Tests: the arguments of the command a put sends, for the put `token` holds, as a send of
/// it now has them (the floor its handle's oldest open put, no number to remove), to replay
/// a copy of it that reaches Redis late.
pub fn test_put_command<T>(q: &Queue<T>, token: &PutToken<T>) -> Vec<Vec<u8>> {
    let put = &token.put;
    let mut args: Vec<Vec<u8>> = vec![b"EVAL".to_vec(), PUT.as_bytes().to_vec(), b"2".to_vec()];
    args.push(put.items.clone().into_bytes());
    args.push(put.record.clone().into_bytes());
    args.push(put.bytes.clone());
    args.push(q.maxsize.to_string().into_bytes());
    args.push(put.number.to_string().into_bytes());
    // The floor a send of it now carries: its handle's oldest open put (review131 L5's test:
    // a copy carrying its own number raised the floor over an older put still held).
    let floor = lock(&put.puts).open.first().copied().unwrap_or(put.number).min(put.number);
    args.push(floor.to_string().into_bytes());
    args.push(ms_at_most_max(PUT_RECORD).to_string().into_bytes());
    args.push(b"0".to_vec());
    args
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `d` in milliseconds, at most [`super::MAX_LEASE`]'s (what Redis's clock takes).
fn ms_at_most_max(d: Duration) -> u64 {
    u64::try_from(d.min(super::MAX_LEASE).as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A unique name for this consumer: the pid, for people reading `KEYS`, and 64 random bits.
fn consumer_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    format!("{}-{:016x}", std::process::id(), h.finish())
}

/// How long each exchange of a drop (a handle's, deleting its keys and giving back what it
/// holds; a received value's, giving it back) waits for Redis at most (an open that it
/// needs, [`SLICE`] more), and how long a received value's drop waits for another thread's
/// call on the handle: best effort, as what it leaves expires.
const DROP_WAIT: Duration = Duration::from_millis(500);

/// How long a take waits for Redis's answer past its wait, whatever the queue's `timeout`
/// (the get's too), and how long past the later of its deadline and its turn's start an
/// exchange of a get with a deadline may wait. A second: Redis answers a blocking command
/// that timed out up to a tick of its clock late, and `hz` may be as low as 1 (review159
/// M1: half a second, and at most the queue's `timeout`, failed healthy gets on an empty
/// queue `Unreachable`). Without it a take blocked on a failover's demoted master waited
/// for ever with `timeout(Duration::MAX)`: that server ends the move `UNBLOCKED`, a reply
/// the take skips, and then neither answers nor closes the connection (review159 H1).
const GRACE: Duration = SLICE;

/// The first pause of a call that meets Redis away ([`backed_off`]).
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// The pause before a call's next try while Redis is away (or refuses for now: busy,
/// loading, a failover's replica), `next` the one after: 50 ms, doubled at each try up to a
/// second, and never past the call's deadline or timeout (its caller's `min`). Each try
/// opens a connection (the last was dropped, to follow a failover's moved name): tried
/// every 50 ms, a consumer loop hammered a restarting server or a replica for as long as
/// that lasted (review153 L1), as nodes and drivers did before they backed off.
fn backed_off(next: &mut Duration) -> Duration {
    let pause = *next;
    *next = (pause * 2).min(Duration::from_secs(1));
    pause
}

/// When a wait ends: now (`try_`), at an instant, or never.
#[derive(Clone, Copy)]
enum Until {
    Now,
    At(Instant),
    Never,
}

impl Until {
    fn after(timeout: Duration) -> Self {
        Instant::now().checked_add(timeout).map_or(Until::Never, Until::At)
    }

    /// The end of the exchanges of a get's turn on the connection starting now: [`GRACE`] past
    /// the later of the deadline and now (`None`: no deadline). Measured from the turn, not the
    /// call: a turn that comes late (behind another thread's call on a shared handle, after a
    /// slow open) is not given a deadline already past (review159 M1). A deadline in the last
    /// second an `Instant` holds is no cap, as none (review163 L1: added unchecked, it
    /// panicked).
    fn turn_end(self) -> Option<Instant> {
        match self {
            Until::At(at) => at.max(Instant::now()).checked_add(GRACE),
            Until::Now | Until::Never => None,
        }
    }

    /// How long the next blocking command may wait, at most `most`; `None` once the
    /// deadline has passed.
    fn slice(self, most: Duration) -> Option<Duration> {
        let most = most.min(SLICE);
        match self {
            Until::Now => None,
            Until::Never => Some(most),
            Until::At(at) => {
                let left = at.saturating_duration_since(Instant::now());
                (left >= Duration::from_millis(1)).then(|| left.min(most))
            }
        }
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Opens the queue `name` at `url` with the default options (see [`Queue::builder`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<u32>::open("redis+unix:///run/redis.sock", "q")?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`QueueBuilder::open`].
    pub fn open(url: &str, name: &str) -> Result<Self, ClusterError> {
        Self::builder().open(url, name)
    }

    /// Options: `maxsize`, `lease`, `timeout`, `max_message_size`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// let q = multiproc::cluster::Queue::<u32>::builder()
    ///     .timeout(Duration::from_secs(1))
    ///     .max_message_size(1 << 20)
    ///     .open("redis://127.0.0.1/", "q")?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn builder() -> QueueBuilder<T> {
        QueueBuilder {
            maxsize: 0,
            max_message_size: DEFAULT_MAX_MESSAGE,
            lease: DEFAULT_LEASE,
            timeout: DEFAULT_TIMEOUT,
            tls: None,
            authkey: None,
            _type: PhantomData,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`Queue::state`], waiting at most `wait` for another thread's call to let it go
    /// (`None` if it does not).
    fn state_within(&self, wait: Duration) -> Option<MutexGuard<'_, State>> {
        let until = Instant::now() + wait;
        loop {
            match self.state.try_lock() {
                Ok(state) => return Some(state),
                Err(std::sync::TryLockError::Poisoned(e)) => return Some(e.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            std::thread::sleep(left.min(Duration::from_millis(2)));
        }
    }

    /// Puts `value` at the end of the queue, waiting while it is full.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<u32>::open("redis://127.0.0.1/", "q")?;
    /// q.put(1)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`PutError::Encode`] (the value cannot cross machines, or is larger than the server
    /// takes), [`PutError::Redis`]; the value comes back with [`PutError::into_inner`].
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_until(value, Until::Never)
    }

    /// Puts `value` if the queue is not full, else fails with [`PutError::Full`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<u32>::builder().maxsize(1).open("redis://127.0.0.1/", "q")?;
    /// q.try_put(1)?;
    /// assert_eq!(q.try_put(2).unwrap_err().into_inner(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Queue::put`], and [`PutError::Full`].
    pub fn try_put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_until(value, Until::Now)
    }

    /// Puts `value`, waiting at most `timeout` for room.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// let q = multiproc::cluster::Queue::<u32>::open("redis://127.0.0.1/", "q")?;
    /// q.put_timeout(1, Duration::from_secs(1))?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Queue::put`], and [`PutError::Timeout`].
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_until(value, Until::after(timeout))
    }

    /// Puts again a put that may or may not have taken effect ([`PutError::Unsure`]),
    /// waiting while the queue is full: the queue takes it at most once, however often it
    /// was sent, so it is then in the queue exactly once. Any handle of the token's queue
    /// may put it again (it goes to that queue).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::cluster::{PutError, Queue};
    ///
    /// let q = Queue::<u32>::open("redis://127.0.0.1/", "jobs")?;
    /// match q.put(7) {
    ///     Err(PutError::Unsure(token, why)) => {
    ///         eprintln!("{why}; trying again");
    ///         q.put_again(token)?;
    ///     }
    ///     other => other?,
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Queue::put`]: [`PutError::Unsure`] again with the same token when Redis still
    /// cannot be used.
    pub fn put_again(&self, token: PutToken<T>) -> Result<(), PutError<T>> {
        self.send_put(token.value, *token.put, Until::Never, true)
    }

    fn put_until(&self, value: T, until: Until) -> Result<(), PutError<T>> {
        let bytes = match self.encode(&value) {
            Ok(bytes) => bytes,
            Err(e) => return Err(PutError::Encode(value, e)),
        };
        let (record, puts) = self.producer();
        let number = {
            let mut puts = lock(&puts);
            puts.last += 1;
            let number = puts.last;
            puts.open.insert(number);
            number
        };
        let put = SentPut { number, bytes, items: self.keys.items.clone(), record, puts };
        self.send_put(value, put, until, false)
    }

    /// The record of puts this process's puts go under, and their numbers: the handle's own,
    /// or in a `Fork` child's copy one of the copy's own (a producer id of its own), made on
    /// its first put there. The copy's drop deletes nothing: its record expires.
    fn producer(&self) -> (String, Arc<Mutex<Puts>>) {
        if self.made_in.is_here() {
            return (self.keys.puts(&self.consumer), Arc::clone(&self.puts));
        }
        let mut forked = lock(&self.forked_puts);
        match &*forked {
            Some(f) if f.made_in.is_here() => (f.record.clone(), Arc::clone(&f.puts)),
            // None yet, or the copy's of another process (a fork of a fork).
            _ => {
                let f = ForkedPuts {
                    made_in: TakenIn::here(),
                    record: self.keys.puts(&consumer_id()),
                    puts: Arc::default(),
                };
                let got = (f.record.clone(), Arc::clone(&f.puts));
                *forked = Some(f);
                got
            }
        }
    }

    /// Sends `put` (again) until it takes effect, the queue is full past `until`, or Redis
    /// fails: refused, or unreachable for the timeout since the first failure (then, if it
    /// was sent, the put may have run: [`PutError::Unsure`]). `sent_before`: the put was sent
    /// by an earlier call (`put_again`), so it may have run already.
    ///
    /// Each round waits on Redis for at most one exchange that fails: a failed `PING`, bound
    /// reading, record check or send ends the round, and rounds go on only while the timeout
    /// since the first failure has not passed. So a put returns within what a small put
    /// takes (review122 L3: a large item's `PING`, two `CONFIG GET`s and send, each waiting
    /// a timeout on a stopped Redis, in each round).
    fn send_put(&self, value: T, put: SentPut, until: Until, sent_before: bool) -> Result<(), PutError<T>> {
        let ttl = ms_at_most_max(PUT_RECORD.max(self.timeout.saturating_mul(2)));
        let mut pause = Duration::from_millis(1);
        // The first failure of an exchange of this call, and whether the put may have run (a
        // send failed, or an earlier call sent it).
        let mut failed: Option<(Instant, ClusterError)> = None;
        // The pause before the next round after a failure ([`backed_off`]).
        let mut backoff = FIRST_PAUSE;
        let mut may_have_run = sent_before;
        // An item above the least bound is checked against the server's, read before the
        // first send and again after any failure (the connection may be to a restarted
        // server), not at each poll of a full queue.
        let mut check_bound = put.bytes.len() > LEAST_BULK_BOUND;
        let give_up = |value: T, put: SentPut, may_have_run: bool, e: ClusterError| match may_have_run {
            true => PutError::Unsure(PutToken { value, put: Box::new(put) }, e),
            false => PutError::Redis(value, e),
        };
        loop {
            // A failure of this round's exchange: waited out (`continue`) for the timeout since
            // the first failure, then given up.
            let mut waited = |e: ClusterError| -> Result<(), ClusterError> {
                let since = failed.get_or_insert_with(|| (Instant::now(), e.clone())).0;
                let left = self.timeout.saturating_sub(since.elapsed());
                if left.is_zero() {
                    return Err(e);
                }
                std::thread::sleep(left.min(backed_off(&mut backoff)));
                Ok(())
            };
            // An item above the server's bound (read on this connection: a restarted server
            // may have another) is bad input: Redis would close the connection on it, which
            // is not to be taken for Redis gone (the put then failed `Unsure` after the
            // timeout). Where the bound cannot be read (`CONFIG GET` refused) it is sent.
            if check_bound {
                let told = {
                    let mut state = self.state();
                    // A connection Redis dropped (a restart) fails here, not with the item;
                    // the next round reads the bound on a new one. One exchange, for an item
                    // of a megabyte at least.
                    match state.link.run(|c| redis::cmd("PING").query::<()>(c)) {
                        Ok(()) => state.link.bulk_bound(),
                        Err(e @ ClusterError::Unreachable(_)) => {
                            drop(state);
                            match waited(e) {
                                Ok(()) => continue,
                                Err(e) => return Err(give_up(value, put, may_have_run, e)),
                            }
                        }
                        Err(e) => return Err(give_up(value, put, may_have_run, e)),
                    }
                };
                match told {
                    // Read (or told nothing): not read again until a failure.
                    Some(_) => check_bound = false,
                    // The read failed for want of a connection: the next round reads again.
                    None => {
                        let e = ClusterError::Unreachable("the server's bulk bound could not be read".into());
                        match waited(e) {
                            Ok(()) => continue,
                            Err(e) => return Err(give_up(value, put, may_have_run, e)),
                        }
                    }
                }
                if let Some(Some((bound, name))) = told
                    && put.bytes.len() as u64 > bound
                {
                    let encode = |value| {
                        PutError::Encode(
                            value,
                            too_large_to_send("an item", put.bytes.len(), &server_bound_why(bound, name)),
                        )
                    };
                    if !may_have_run {
                        return Err(encode(value));
                    }
                    // An earlier send, to a server that took it, may have run: its record
                    // says. The `PUT` script enters the number with the item, atomically,
                    // and an open number is at or above the floor, so the field, with
                    // `PUT`'s mark, is there exactly when the put ran. Saying `Encode` (the
                    // value given back) for a put in the queue would let the caller put it
                    // twice. The check is a fence, not a read: where the number is not there
                    // it enters it with a mark of its own, so that a copy of an earlier send
                    // still on its way (its header read under a larger bound) is refused
                    // once the caller was told `Encode` (review124 L1), and a fence sent
                    // again, or a send in a later round, never takes that mark for the put
                    // (review131 H1).
                    let ran = self
                        .state()
                        .link
                        .run(|c| self.fence_script.key(&put.record).arg(put.number).arg(ttl).invoke::<i64>(c));
                    // Tests: the fence ran, its reply is lost (review131 H1).
                    let ran = if ran.is_ok() && fail_point!("cluster.fence.reply") {
                        Err(ClusterError::Unreachable("the reply was lost (fail point cluster.fence.reply)".into()))
                    } else {
                        ran
                    };
                    match ran {
                        Ok(1) => return Ok(()),
                        Ok(_) => return Err(encode(value)),
                        // Waited out as a failed send is (`LOADING` after a restart:
                        // review124 M1), the bound read again on the next round.
                        Err(e @ ClusterError::Unreachable(_)) => {
                            check_bound = true;
                            match waited(e) {
                                Ok(()) => continue,
                                Err(e) => return Err(give_up(value, put, may_have_run, e)),
                            }
                        }
                        Err(e) => return Err(give_up(value, put, may_have_run, e)),
                    }
                }
            }
            let (floor, forget, refresh) = {
                let mut puts = lock(&put.puts);
                let floor = puts.open.first().copied().unwrap_or(put.number).min(put.number);
                // Only numbers below the floor leave the record (the floor, raised in the
                // same script, refuses their late copies from then on): one above it, its
                // put settled while an older one is open, is refused by its field alone
                // (review131 L5: forgotten, a late copy of it ran again).
                // In order: those below the floor are few (taken once 64), whatever waits
                // above it while a token is held.
                let below = puts.settled.range(..floor).take(4 * FORGET).copied().collect::<Vec<u64>>();
                let forget = if below.len() >= FORGET { below } else { Vec::new() };
                for n in &forget {
                    puts.settled.remove(n);
                }
                let refresh = puts.refreshed.is_none_or(|at| at.elapsed() >= PUT_RECORD / 4);
                (floor, forget, refresh)
            };
            let sent_at = Instant::now();
            // Tests: the send is lost before it reaches Redis (a connection cut before the
            // command was written).
            let sent = if fail_point!("cluster.put.lost") {
                Err(ClusterError::Unreachable("the send was lost (fail point cluster.put.lost)".into()))
            } else {
                let mut state = self.state();
                state.link.run(|c| {
                    self.put_script
                        .key(&put.items)
                        .key(&put.record)
                        .arg(&put.bytes)
                        .arg(self.maxsize)
                        .arg(put.number)
                        .arg(floor)
                        .arg(ttl)
                        .arg(u8::from(refresh))
                        .arg(&forget)
                        .invoke::<i64>(c)
                })
            };
            // Tests: the put ran, its reply is lost (as a connection cut after the command
            // reached Redis loses it).
            let sent = if sent.is_ok() && fail_point!("cluster.put.reply") {
                Err(ClusterError::Unreachable("the reply was lost (fail point cluster.put.reply)".into()))
            } else {
                sent
            };
            {
                let mut puts = lock(&put.puts);
                if matches!(sent, Ok(1)) {
                    if refresh {
                        puts.refreshed = Some(sent_at);
                    }
                } else {
                    // Not removed (or maybe not): removed by a later put.
                    puts.settled.extend(forget);
                }
            }
            match sent {
                Ok(0) => {}
                // An earlier round's fence refused the number (its reply lost, the bound
                // since risen): the put did not run and never will. The value comes back.
                Ok(3) => {
                    let why = "the server's bulk bound when an earlier round fenced this put";
                    return Err(PutError::Encode(value, too_large_to_send("an item", put.bytes.len(), why)));
                }
                Ok(_) => return Ok(()),
                Err(e @ ClusterError::Unreachable(_)) => {
                    may_have_run = true;
                    lock(&put.puts).lost = true;
                    check_bound = put.bytes.len() > LEAST_BULK_BOUND;
                    match waited(e) {
                        Ok(()) => continue,
                        Err(e) => return Err(give_up(value, put, may_have_run, e)),
                    }
                }
                Err(e) => return Err(give_up(value, put, may_have_run, e)),
            }
            // Full. Redis lists do not wake a waiting producer: poll, backing off to 100 ms.
            // A put sent before that may yet run: unsure, not full.
            let gave_up = match until {
                Until::Now => Some(PutError::Full as fn(T) -> PutError<T>),
                Until::At(at) if Instant::now() >= at => Some(PutError::Timeout as fn(T) -> PutError<T>),
                Until::At(at) => {
                    std::thread::sleep(pause.min(at.saturating_duration_since(Instant::now())));
                    None
                }
                Until::Never => {
                    std::thread::sleep(pause);
                    None
                }
            };
            if let Some(error) = gave_up {
                return Err(match failed {
                    Some((_, e)) if may_have_run => PutError::Unsure(PutToken { value, put: Box::new(put) }, e),
                    _ => error(value),
                });
            }
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    fn encode(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        let encoded = codec::encode(value)?;
        if encoded.has_handles() {
            // Dropping `encoded` gives the handles' counts back.
            return Err(CodecError::encode(
                "the message holds a handle of the local process family, which cannot cross machines",
            ));
        }
        if encoded.bytes.len() > self.max_message_size {
            return Err(CodecError::encode(format_args!(
                "{} bytes, more than the queue's max_message_size ({})",
                encoded.bytes.len(),
                self.max_message_size
            )));
        }
        let mut encoded = encoded;
        let bytes = std::mem::take(&mut encoded.bytes);
        encoded.sent();
        Ok(self.seal.seal_item(&self.name, bytes))
    }

    /// Takes the next value, waiting while the queue is empty; acknowledged at once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<u32>::open("redis://127.0.0.1/", "q")?;
    /// q.put(5)?;
    /// assert_eq!(q.get()?, 5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`GetError::Decode`] or [`GetError::Unauthenticated`] (the item is moved to the dead-letter
    /// list), [`GetError::Redis`].
    pub fn get(&self) -> Result<T, GetError> {
        self.get_until(Until::Never)
    }

    /// Takes the next value if there is one, else fails with [`GetError::Empty`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<u32>::open("redis://127.0.0.1/", "empty")?;
    /// assert!(matches!(q.try_get(), Err(multiproc::cluster::GetError::Empty)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Queue::get`], and [`GetError::Empty`].
    pub fn try_get(&self) -> Result<T, GetError> {
        self.get_until(Until::Now)
    }

    /// Takes the next value, waiting at most `timeout` for one.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// let q = multiproc::cluster::Queue::<u32>::open("redis://127.0.0.1/", "q")?;
    /// match q.get_timeout(Duration::from_secs(2)) {
    ///     Ok(v) => println!("{v}"),
    ///     Err(multiproc::cluster::GetError::Timeout) => println!("nothing yet"),
    ///     Err(e) => return Err(e.into()),
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Queue::get`], and [`GetError::Timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.get_until(Until::after(timeout))
    }

    /// The gets: a receive, acknowledged. The value is the caller's once decoded: an
    /// acknowledgement that fails may have run all the same (a reply that never came), and
    /// an error then would lose the value. Not run, it leaves the item in the processing
    /// list, delivered again when this consumer retires or dies (at least once).
    fn get_until(&self, until: Until) -> Result<T, GetError> {
        let mut received = self.receive_until(until)?;
        crash_point!("cluster.get.taken");
        let value = received.value.take().expect("a Received holds its value until ack");
        // By the get's deadline, as its take (review159 M4: the handle's timeout).
        let _ = received.remove(until);
        Ok(value)
    }

    /// Takes the next value, waiting while the queue is empty, and keeps it in this
    /// consumer's processing list until [`Received::ack`]: if this process dies first, the
    /// value is delivered to another consumer once the lease has passed. Dropping the
    /// [`Received`] without acknowledging it puts the value back at the head of the queue.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<String>::open("redis://127.0.0.1/", "jobs")?;
    /// let job = q.receive()?;
    /// println!("doing {}", *job);
    /// let done: String = job.ack()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub fn receive(&self) -> Result<Received<'_, T>, GetError> {
        self.receive_until(Until::Never)
    }

    /// [`Queue::receive`], failing with [`GetError::Empty`] when the queue is empty.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<u32>::open("redis://127.0.0.1/", "q")?;
    /// if let Ok(v) = q.try_receive() {
    ///     v.ack()?;
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Queue::try_get`].
    pub fn try_receive(&self) -> Result<Received<'_, T>, GetError> {
        self.receive_until(Until::Now)
    }

    /// [`Queue::receive`], waiting at most `timeout`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// let q = multiproc::cluster::Queue::<u32>::open("redis://127.0.0.1/", "q")?;
    /// let v = q.receive_timeout(Duration::from_secs(1))?;
    /// v.ack()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Queue::get_timeout`].
    pub fn receive_timeout(&self, timeout: Duration) -> Result<Received<'_, T>, GetError> {
        self.receive_until(Until::after(timeout))
    }

    fn receive_until(&self, until: Until) -> Result<Received<'_, T>, GetError> {
        let consumer = self.taker(&mut self.state());
        let processing = self.keys.processing(&consumer);
        let landing = self.keys.landing(&consumer);
        let max = self.max_message_size;
        let last_take = self.keys.last_take(&consumer);
        let fence = self.keys.fence(&consumer);
        // Since when Redis has been away (a lost connection, a restart, `BUSY`, `LOADING`):
        // a get that waits takes it as it takes an empty queue, for the queue's `timeout`
        // since the first failure and within its own deadline, as a put and a pool do; and
        // the pause before the next try ([`backed_off`]).
        let mut away: Option<(Instant, Duration)> = None;
        // Whether a take found no heartbeat (`TAKE` answered -1) and was sent again.
        let mut took_again = false;
        // A get with a deadline ends each turn's exchanges (the open, `RECOVER`, the take) by
        // its deadline and `GRACE` (by its turn's start and `GRACE` if later): a server that
        // stops answering mid-wait is not waited for past it (review153 M3: a failover ends
        // a blocking move `UNBLOCKED`, a reply the take skips, and the demoted master then
        // answers nothing on that connection; the get waited its exchange's whole wait, the
        // queue's `timeout` and a second, past its own deadline). A take, whatever the get,
        // waits for its answer its wait and `GRACE` (review159 H1).
        let taken = loop {
            let mut state = self.state();
            let turn_end = until.turn_end();
            let capped = |c: &mut Conn| {
                if let Some(at) = turn_end {
                    c.end_by(at);
                }
            };
            // The open, if one is needed, within the turn (review159 M4: it waited the
            // queue's timeout), and before the take's wait is measured.
            if let Err(e) = state.link.connect_by(turn_end) {
                drop(state);
                self.wait_out(e, until, &mut away)?;
                continue;
            }
            self.give_back_dropped(&mut state, until);
            // A give-back that failed dropped the connection: opened again within the turn
            // too, not by the take's own `run` with the link's wait (review163 M1: a
            // `get_timeout(100 ms)` took 6.5 s, with `timeout(Duration::MAX)` for as long as
            // Redis stayed stopped). No open in a turn is left to `Link::run`.
            if let Err(e) = state.link.connect_by(turn_end) {
                drop(state);
                self.wait_out(e, until, &mut away)?;
                continue;
            }
            if let Some(number) = state.unsure {
                let recovered = state.link.run(|c| {
                    capped(c);
                    redis::cmd("EVAL")
                        .arg(RECOVER)
                        .arg(5)
                        .arg(&last_take)
                        .arg(&processing)
                        .arg(&self.keys.items)
                        .arg(&landing)
                        .arg(&fence)
                        .arg(number)
                        .arg(ms_at_most_max(self.lease))
                        .query::<i64>(c)
                });
                if let Err(e) = recovered {
                    drop(state);
                    self.wait_out(e, until, &mut away)?;
                    continue;
                }
                state.unsure = None;
            }
            state.takes += 1;
            let number = state.takes;
            // A move may only land in our lists while our heartbeat is fresh: else a
            // reclaim may already have dropped us, and gives back what we then hold while
            // we hold it, or nobody does if we died. `TAKE` sees to it in Redis (it lands
            // nothing without a heartbeat, and refreshes it when it lands); so that it
            // lands, the move is sent right behind the heartbeat (one pipeline) and blocks
            // at most a third of the lease; a heartbeat younger than a third of the lease
            // (on this process's clock) leaves two thirds for the move.
            let sent = Instant::now();
            let due = self.beat_due(&state);
            let slice = until.slice(self.lease / 3);
            let packed = self.take_pipeline(&consumer, number, slice, due).get_packed_pipeline();
            let replies = usize::from(due) + 1;
            // Tests: the take is lost before it reaches Redis (a connection cut before the
            // pipeline was written; `test_take_command` gives its bytes, to deliver late).
            let lost = || Err(ClusterError::Unreachable("the take was lost (fail point cluster.take.lost)".into()));
            let taken = if fail_point!("cluster.take.lost") {
                lost()
            } else {
                state.link.run(|c| {
                    match slice {
                        // Its answer is due at the end of its wait: `GRACE` more, sooner or later
                        // than the link's own wait (a short `timeout` left Redis's late answer to
                        // a wait that timed out no time: review159 M1; `Duration::MAX` waited for
                        // ever on a demoted master: H1).
                        Some(wait) => {
                            let answer = Instant::now() + wait + GRACE;
                            c.answer_by(turn_end.map_or(answer, |end| end.min(answer)));
                        }
                        None => capped(c),
                    }
                    let mut values = c.req_packed_commands(&packed, 0, replies)?;
                    for v in &mut values {
                        if let redis::Value::ServerError(e) = v {
                            // A refused `CLIENT REPLY SKIP` leaves the move's reply (and TAKE's)
                            // unread: the connection goes, never read a reply behind (review36 M1).
                            c.close();
                            return Err(e.clone().into());
                        }
                    }
                    Ok(values.pop())
                })
            };
            if let Err(ClusterError::Unreachable(_)) = &taken {
                // Sent, maybe run: the next take looks.
                state.unsure = Some(number);
            }
            let taken = match taken {
                Ok(taken) => taken,
                Err(e) => {
                    drop(state);
                    self.wait_out(e, until, &mut away)?;
                    continue;
                }
            };
            away = None;
            // -1: the take reached Redis with this consumer's heartbeat gone (expired while
            // this process was stopped or suspended, or the take on its way; perhaps
            // reclaimed by another consumer meanwhile): `TAKE` put what it moved back first
            // in line. The next take carries a heartbeat.
            let no_heartbeat = matches!(taken, Some(redis::Value::Int(-1)));
            if no_heartbeat {
                state.beat = None;
            } else if due {
                state.beat = Some(sent);
            }
            drop(state);
            match taken {
                Some(redis::Value::BulkString(bytes)) => break Ok(bytes),
                // Taken again at once, once, whatever the get (a `try_get` does not say
                // `Empty` with the item in line); again after that, as an empty queue.
                Some(redis::Value::Int(-1)) if !took_again => took_again = true,
                Some(redis::Value::Int(size)) if size >= 0 => break Err(size),
                Some(redis::Value::Nil | redis::Value::Int(-1)) | None if slice.is_none() => {
                    return Err(if matches!(until, Until::Now) { GetError::Empty } else { GetError::Timeout });
                }
                // A wait that ran to the deadline, answered (Redis answers one up to a tick
                // of its clock late): no last look past the deadline, whose exchange would
                // end `GRACE` after it.
                Some(redis::Value::Nil | redis::Value::Int(-1)) | None if matches!(until, Until::At(at) if Instant::now() >= at) =>
                {
                    return Err(GetError::Timeout);
                }
                Some(redis::Value::Nil | redis::Value::Int(-1)) | None => {}
                Some(other) => {
                    return Err(GetError::Redis(ClusterError::Refused(format!(
                        "unexpected reply to a take: {other:?}"
                    ))));
                }
            }
        };
        let bytes = match taken {
            Ok(bytes) => bytes,
            Err(size) => {
                // Already in the dead-letter list, and never read.
                return Err(GetError::Decode(CodecError::decode(format_args!(
                    "{size} bytes, more than the queue's max_message_size ({max}); moved to {}",
                    self.keys.dead
                ))));
            }
        };
        // Nothing of an item is decoded before its tag checks.
        let decoded = match self.seal.open_item(&self.name, &bytes) {
            Some(item) => codec::decode_exact::<T>(item).map_err(GetError::Decode),
            None => Err(GetError::Unauthenticated { dead: self.keys.dead.clone() }),
        };
        match decoded {
            Ok(value) => Ok(Received { queue: self, processing, bytes, value: Some(value), taken_in: TakenIn::here() }),
            Err(e) => {
                crash_point!("cluster.get.refused");
                // Out of the way for good, kept where a person can look at it (by the get's
                // deadline, as its take: review159 M4).
                self.state()
                    .run_until(until, |c| move_held(c, &processing, &self.keys.dead, &bytes, "LPUSH"))
                    .map_err(GetError::Redis)?;
                Err(e)
            }
        }
    }

    /// Gives back, first in line, the values whose [`Received`] was dropped while another
    /// thread's call held the handle ([`Queue::dropped`]), as their drops would have: best
    /// effort, what fails stays held (returned when this consumer retires or dies). Only in
    /// the process that opened the handle: a fork child's copy gives back nothing.
    fn give_back_dropped(&self, state: &mut State, until: Until) {
        if !self.made_in.is_here() {
            return;
        }
        let dropped = std::mem::take(&mut *lock(&self.dropped));
        if dropped.is_empty() {
            return;
        }
        let processing = self.keys.processing(&self.consumer);
        let end = until.turn_end();
        let mut dropped = dropped.into_iter();
        for bytes in dropped.by_ref() {
            // The drop's own bound (and the get's deadline): the turn's take follows.
            let given = state.link.run_within(DROP_WAIT, |c| {
                if let Some(at) = end {
                    c.end_by(at);
                }
                move_held(c, &processing, &self.keys.items, &bytes, "RPUSH")
            });
            if given.is_err() {
                // The rest, at the next turn.
                lock(&self.dropped).extend(dropped);
                return;
            }
        }
    }

    /// A take that failed with `e`: `Ok` (after a short pause) to try again while Redis may
    /// be away for a while yet (`Unreachable`: a lost connection, a restart, `BUSY`,
    /// `LOADING`, a failover's `READONLY`), for the queue's `timeout` since the first such failure (`away`) and
    /// before the get's deadline; else the get's error. A get that does not wait
    /// (`try_get`) fails at once.
    fn wait_out(&self, e: ClusterError, until: Until, away: &mut Option<(Instant, Duration)>) -> Result<(), GetError> {
        if !matches!(e, ClusterError::Unreachable(_)) || matches!(until, Until::Now) {
            return Err(GetError::Redis(e));
        }
        let (since, backoff) = away.get_or_insert_with(|| (Instant::now(), FIRST_PAUSE));
        let mut left = self.timeout.saturating_sub(since.elapsed());
        if let Until::At(at) = until {
            left = left.min(at.saturating_duration_since(Instant::now()));
        }
        if left.is_zero() {
            return Err(GetError::Redis(e));
        }
        std::thread::sleep(left.min(backed_off(backoff)));
        Ok(())
    }

    /// Refreshes this consumer's heartbeat now, so that the values it holds unacknowledged
    /// stay its own for another lease. Gets do this themselves; call it during work that
    /// may last longer than a third of the lease.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<u32>::open("redis://127.0.0.1/", "q")?;
    /// let job = q.receive()?;
    /// for step in 0..100 {
    ///     // ... a long piece of work ...
    ///     q.keep_alive()?;
    /// }
    /// job.ack()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClusterError`] when Redis cannot be used.
    pub fn keep_alive(&self) -> Result<(), ClusterError> {
        let mut state = self.state();
        let consumer = self.taker(&mut state);
        let sent = Instant::now();
        state.link.run(|c| self.beat_command(&consumer).query::<()>(c))?;
        state.beat = Some(sent);
        Ok(())
    }

    /// Whether the heartbeat is a third of the lease old (or was never sent).
    fn beat_due(&self, state: &State) -> bool {
        state.beat.is_none_or(|at| at.elapsed() >= self.lease / 3)
    }

    /// A take's pipeline: the heartbeat of `consumer` if `beat`, the move from the list to
    /// its landing list (blocking for `slice`, if any), its reply skipped, and `TAKE` under
    /// `number`.
    fn take_pipeline(&self, consumer: &str, number: u64, slice: Option<Duration>, beat: bool) -> redis::Pipeline {
        let landing = self.keys.landing(consumer);
        let mut pipe = redis::pipe();
        if beat {
            pipe.add_command(self.beat_command(consumer));
        }
        // The move's reply would carry the item, of any size: skipped; TAKE returns it
        // only within bounds.
        pipe.cmd("CLIENT").arg("REPLY").arg("SKIP");
        match slice {
            None => pipe.cmd("LMOVE").arg(&self.keys.items).arg(&landing).arg("RIGHT").arg("LEFT"),
            Some(wait) => pipe
                .cmd("BLMOVE")
                .arg(&self.keys.items)
                .arg(&landing)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(format!("{:.3}", wait.as_secs_f64().max(0.001))),
        };
        pipe.cmd("EVAL")
            .arg(TAKE)
            .arg(7)
            .arg(&landing)
            .arg(self.keys.processing(consumer))
            .arg(&self.keys.dead)
            .arg(&self.keys.items)
            .arg(self.keys.last_take(consumer))
            .arg(self.keys.fence(consumer))
            .arg(self.keys.alive(consumer))
            .arg(sealed_bound(self.max_message_size as u64))
            .arg(number)
            .arg(u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX).max(1));
        pipe
    }

    /// The consumer this process's takes act for: the handle's own, or in a `Fork` child's
    /// copy (kept in a static) one of the copy's own, made on its first take or heartbeat
    /// there, with no heartbeat and no take yet (review159 L3: taking for the parent's
    /// consumer, numbered from the parent's count, a child's take could be taken by the
    /// parent's `RECOVER` for its own take of that number: delivered twice). A fork of a
    /// fork makes its own again. The copy's drop retires nothing: what its consumer holds
    /// is delivered again after the lease.
    fn taker(&self, state: &mut State) -> String {
        if self.made_in.is_here() {
            return self.consumer.clone();
        }
        match &state.forked {
            Some((made_in, consumer)) if made_in.is_here() => consumer.clone(),
            _ => {
                let consumer = consumer_id();
                state.forked = Some((TakenIn::here(), consumer.clone()));
                state.beat = None;
                state.takes = 0;
                state.unsure = None;
                consumer
            }
        }
    }

    /// The heartbeat of `consumer`, and the reclaim of dead consumers' items.
    fn beat_command(&self, consumer: &str) -> redis::Cmd {
        let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(BEAT)
            .arg(3)
            .arg(&self.keys.items)
            .arg(&self.keys.consumers)
            .arg(self.keys.alive(consumer))
            .arg(consumer)
            .arg(lease_ms)
            .arg(&self.keys.prefix);
        cmd
    }

    /// How many items the queue holds (taken but unacknowledged items not counted).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<u32>::open("redis://127.0.0.1/", "q")?;
    /// println!("{} waiting", q.len()?);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClusterError`] when Redis cannot be used.
    pub fn len(&self) -> Result<usize, ClusterError> {
        let mut state = self.state();
        // Tests: a call that holds the handle's state (hold point), as one waiting on a
        // stopped Redis does, beside which a `Received` is dropped.
        crash_point!("cluster.len");
        state.link.run(|c| redis::cmd("LLEN").arg(&self.keys.items).query(c))
    }

    /// Whether the queue holds no item.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<u32>::open("redis://127.0.0.1/", "q")?;
    /// if q.is_empty()? { println!("idle") }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClusterError`] when Redis cannot be used.
    pub fn is_empty(&self) -> Result<bool, ClusterError> {
        Ok(self.len()? == 0)
    }

    /// This handle's bound on puts (`None`: unbounded).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<u32>::builder().maxsize(8).open("redis://127.0.0.1/", "q")?;
    /// assert_eq!(q.maxsize(), Some(8));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn maxsize(&self) -> Option<usize> {
        (self.maxsize > 0).then_some(self.maxsize)
    }
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        if !self.made_in.is_here() {
            return;
        }
        // The record of its puts goes when no copy of one can reach Redis late (none was
        // sent whose reply was lost: a put answered was sent once) and no token holds one
        // (a `PutToken` outlives its handle: it is put again through another handle of the
        // queue, which reads this record). Else it stays until it expires (aud105 L1).
        let forget_puts = {
            let puts = lock(&self.puts);
            puts.last > 0 && !puts.lost && puts.open.is_empty()
        };
        let record = self.keys.puts(&self.consumer);
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        // Best effort: if Redis is gone, the heartbeat expires and others reclaim instead,
        // and the keys expire. So it waits a short bound, not the handle's timeout: a drop
        // must not hang on a Redis that stopped answering (review156 L1).
        if state.beat.is_none() && state.takes == 0 {
            // Never a consumer (no heartbeat, no take sent): only its record of puts. A
            // handle whose take found its heartbeat gone (`beat` forgotten) holds what it
            // held, and a take whose reply was lost may have landed: both retire.
            if forget_puts {
                let _ = state.link.run_within(DROP_WAIT, |c| redis::cmd("DEL").arg(&record).query::<()>(c));
            }
            return;
        }
        let processing = self.keys.processing(&self.consumer);
        let alive = self.keys.alive(&self.consumer);
        let landing = self.keys.landing(&self.consumer);
        let last_take = self.keys.last_take(&self.consumer);
        let _ = state.link.run_within(DROP_WAIT, |c| {
            redis::Script::new(RETIRE)
                .key(&self.keys.items)
                .key(&processing)
                .key(&alive)
                .key(&self.keys.consumers)
                .key(&landing)
                .key(&last_take)
                .key(&record)
                .key(self.keys.fence(&self.consumer))
                .arg(&self.consumer)
                .arg(u8::from(forget_puts))
                .invoke::<()>(c)
        });
    }
}

/// A value taken by [`Queue::receive`], held in the consumer's processing list until
/// [`ack`](Received::ack). Dropping it unacknowledged puts the value back at the head of
/// the queue (best effort, waiting two and a half seconds at most, whatever the handle's
/// `timeout`: half a second for another thread's call on the handle to end, else the
/// handle's next get gives the value back; half a second for Redis's answer, and a second
/// and a half for an open it needs). Where Redis fails, the value stays in the processing
/// list: it is delivered again when the queue handle is dropped, or after the lease once
/// the handle's gets (and [`keep_alive`](Queue::keep_alive)) stop, as each refreshes the
/// heartbeat that keeps the value the handle's own. Derefs to the value.
///
/// # Examples
///
/// ```no_run
/// let q = multiproc::cluster::Queue::<u32>::open("redis://127.0.0.1/", "q")?;
/// let n = q.receive()?;
/// if *n % 2 == 0 {
///     n.ack()?; // ours
/// } // else: dropped, back at the head of the queue for someone else
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "a received value is acknowledged with `ack`; dropping it gives it back"]
pub struct Received<'q, T: Serialize + DeserializeOwned> {
    queue: &'q Queue<T>,
    /// The processing list of the consumer that holds it ([`Queue::taker`]).
    processing: String,
    bytes: Vec<u8>,
    value: Option<T>,
    /// A copy made by fork gives nothing back when dropped: the value is the parent's.
    taken_in: TakenIn,
}

impl<T: Serialize + DeserializeOwned> Received<'_, T> {
    /// Acknowledges the value (it leaves the processing list for good) and returns it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let q = multiproc::cluster::Queue::<u32>::open("redis://127.0.0.1/", "jobs")?;
    /// let job = q.receive()?;
    /// println!("working on {}", *job);
    /// // Done: the job leaves the queue for good (dropped instead, it would go back).
    /// let n = job.ack()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`AckError`] when Redis cannot be used: the value stays in the processing list and
    /// is delivered again when this queue handle is dropped, or after the lease once the
    /// handle's gets (and [`keep_alive`](Queue::keep_alive)) stop.
    pub fn ack(mut self) -> Result<T, AckError> {
        // Taken first: whatever the outcome, the drop that follows gives nothing back (on
        // failure the item stays in the processing list, as documented).
        let value = self.value.take().expect("a Received holds its value until ack");
        self.remove(Until::Never)?;
        Ok(value)
    }

    /// Removes the item from the processing list, by `until`'s deadline as a get's exchange
    /// ([`Until::turn_end`]), if it has one.
    fn remove(&mut self, until: Until) -> Result<(), AckError> {
        let processing = &self.processing;
        self.queue
            .state()
            .run_until(until, |c| redis::cmd("LREM").arg(processing).arg(1).arg(&self.bytes).query::<()>(c))
            .map_err(AckError)
    }
}

impl<T: Serialize + DeserializeOwned> Deref for Received<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.value.as_ref().expect("a Received holds its value until ack")
    }
}

impl<T: Serialize + DeserializeOwned> Drop for Received<'_, T> {
    fn drop(&mut self) {
        if self.value.is_none() || !self.taken_in.is_here() {
            return;
        }
        // Not acknowledged: first in line again. Best effort: if it fails the value stays
        // in the processing list, returned when this consumer retires or dies. So it waits
        // a short bound, not the handle's timeout: a drop must not hang (review156 L1).
        // The handle's connection too: another thread's call may hold it (for ever, with
        // `Duration::MAX` and a stopped Redis, review159 M3), and is waited for as long at
        // most; then the handle's next get gives the value back.
        let Some(mut state) = self.queue.state_within(DROP_WAIT) else {
            // (In a `Fork` child's copy, whose consumer is its own, the value stays held.)
            if self.queue.made_in.is_here() {
                lock(&self.queue.dropped).push(std::mem::take(&mut self.bytes));
            }
            return;
        };
        let _ = state
            .link
            .run_within(DROP_WAIT, |c| move_held(c, &self.processing, &self.queue.keys.items, &self.bytes, "RPUSH"));
    }
}

impl<T: Serialize + DeserializeOwned + std::fmt::Debug> std::fmt::Debug for Received<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Received").field(&self.value).finish()
    }
}
