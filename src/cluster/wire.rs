//! What a cluster pool's driver and its worker nodes write to Redis: the keys of a pool,
//! a task entry and a result.
//!
//! Keys, all under one hash tag so that a pool lives on one Redis Cluster shard:
//!
//! ```text
//! mp:pools               the set of pool ids that nodes serve (one key for all pools)
//! mp:{p:ID}:tasks        the stream of task entries; consumer group `nodes` (its consumer
//!                        `born-TAG`: the stream's birth, a random tag its maker chose)
//! mp:{p:ID}:results      the list of results: nodes push, the driver reads and trims
//!                        (`READ_RESULTS`: only what it read)
//! mp:{p:ID}:trimmed      a count of the results the driver trimmed off the list, from a
//!                        random start (each beat gives one to a missing count)
//! mp:{p:ID}:alive        the driver's heartbeat, a key that expires after the lease
//! ```
//!
//! The driver refreshes every key's expiry with its heartbeat, so the keys of a driver
//! that died go away on their own; nodes that find a pool without its heartbeat delete its
//! keys and forget it at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::PanicInfo;
use crate::pool::TaskError;
use crate::sys::Packed;

/// The set of live pool ids.
pub(crate) const POOLS: &str = "mp:pools";
/// The consumer group of the nodes on every task stream.
pub(crate) const GROUP: &str = "nodes";

/// The driver's read of the results list (`KEYS[1]`): first, the trim of its previous read,
/// `ARGV[1]` results when `KEYS[2]` (how many it ever trimmed, expiring after `ARGV[4]` ms)
/// was `ARGV[2]`, only if it still is; then that count, the first `ARGV[3]` results, and
/// the positions (from 1) and sizes of those above `ARGV[5]` bytes, each read as its first
/// 16 bytes only (enough for its task's id). The results read come to at most `ARGV[5]`
/// bytes besides (at least one): what the driver allocates for a read is bounded, whatever
/// another program wrote to the list.
/// Only the driver removes from the head (nodes push to the tail), so a count unchanged
/// since a read means the head is still what that read saw; a trim from a dropped
/// connection that runs after a newer trim finds another count and removes nothing (what it
/// leaves is read again, a duplicate the driver ignores). The count, not the results'
/// bytes: a task run twice (its entry taken back) pushes the same bytes twice, and a copy
/// where the read had the original must not pass for it. A missing count reads as 0 until
/// the driver's next beat gives it a random start: a trim counted on a list since deleted
/// (the driver's last read before the keys were lost, or one that reaches Redis late) finds
/// another count on the new list, where a count started again from 0 could be its own.
pub(crate) const READ_RESULTS: &str = r"
local n = tonumber(ARGV[1])
local trimmed = tonumber(redis.call('GET', KEYS[2]) or '0')
if n > 0 and trimmed == tonumber(ARGV[2]) then
  redis.call('LTRIM', KEYS[1], n, -1)
  trimmed = trimmed + n
  redis.call('SET', KEYS[2], trimmed, 'PX', ARGV[4])
end
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
local max = tonumber(ARGV[5])
local total = 0
local large = {}
for i = 1, #items do
  local len = #items[i]
  if len > max then
    items[i] = string.sub(items[i], 1, 16)
    large[#large + 1] = i
    large[#large + 1] = len
  elseif i > 1 and total + len > max then
    for j = #items, i, -1 do items[j] = nil end
    break
  else
    total = total + len
  end
end
return {trimmed, items, large}
";

/// Lua: `born(stream, tag, make, known, witness)`, the tag of the stream's birth: the name of its
/// group's consumer `born-TAG` (which never reads nor claims). Whoever makes the stream (and
/// its group, at `0`) or finds it without that consumer makes it with `tag` (16 hex
/// digits: only such a name is a birth, not a node's consumer named `born-...` after its
/// host, review36 L3), in the same
/// script: a stream made again after it was deleted has a tag of its own, and every entry
/// added to it is added with that tag known. `known` (or `''`) is the tag the caller saw
/// last, tried first at the cost of one lookup (`CREATECONSUMER` answers 0 for a consumer
/// that exists; one it made, the tag being another's, goes at once): listing the consumers
/// each time cost a chunk-at-a-time `map` about a sixth of its rate. Without the stream (or
/// its group) and `make` false, `false`. A key of another type fails `WRONGTYPE`.
///
/// `witness` (or `''`) is the id of an entry the caller added under `known`, its newest:
/// where `born-known` is missing, an entry up to it still in the stream proves the stream
/// is of that birth (a stream made again has only newer ids), so the consumer was deleted
/// by another program (it never reads, and a clean-up of idle consumers takes it), and is
/// made again with that tag. A new tag there took every task in flight for one of a stream
/// since deleted, and sent it again: those still in the stream ran twice. Without such an
/// entry, a new tag (both a tag deleted with every entry of its birth gone, and a stream
/// made again whose tag was deleted, fit: sending again runs a task twice at worst, never
/// loses one).
macro_rules! born_lua {
    () => {
        r"
local function born(stream, tag, make, known, witness)
  if redis.call('EXISTS', stream) == 1 then
    if known ~= '' then
      local made = redis.pcall('XGROUP', 'CREATECONSUMER', stream, 'nodes', 'born-' .. known)
      if made == 0 then return known end
      if made == 1 then
        if witness ~= '' and #redis.call('XRANGE', stream, '-', witness, 'COUNT', 1) > 0 then return known end
        redis.call('XGROUP', 'DELCONSUMER', stream, 'nodes', 'born-' .. known)
      end
    end
    local consumers = redis.pcall('XINFO', 'CONSUMERS', stream, 'nodes')
    if not consumers.err then
      for _, consumer in ipairs(consumers) do
        local found = string.match(consumer[2], '^born%-(' .. string.rep('%x', 16) .. ')$')
        if found then return found end
      end
      redis.call('XGROUP', 'CREATECONSUMER', stream, 'nodes', 'born-' .. tag)
      return tag
    end
  end
  if not make then return false end
  redis.call('XGROUP', 'CREATE', stream, 'nodes', '0', 'MKSTREAM')
  redis.call('XGROUP', 'CREATECONSUMER', stream, 'nodes', 'born-' .. tag)
  return tag
end
"
    };
}

/// The tag of the birth of the stream `KEYS[1]` (see `born_lua`; `ARGV[3]` the tag known,
/// `ARGV[4]` its witness),
/// making it with the tag `ARGV[1]` where it is missing when `ARGV[2]` is 1 (the driver's
/// beat), not when it is 0 (the driver's check after a beat, which makes no key that no
/// beat would expire).
pub(crate) const BIRTH: &str =
    concat!(born_lua!(), "return born(KEYS[1], ARGV[1], ARGV[2] == '1', ARGV[3], ARGV[4])\n");

/// Queues a driver's batch of tasks (`ARGV[4]`..., pairs of an encoded `TaskMsg`, field
/// `m`, and its tag under the cluster key, field `k`: see `cluster::key`) on the tasks
/// stream `KEYS[1]` (made with the tag `ARGV[1]` where it is missing; `ARGV[2]` the tag
/// known, `ARGV[3]` its witness); returns the tag of the stream's birth and the entries' ids. All or none: Redis
/// checks a script's memory at its first write only (a `CREATECONSUMER` that changes
/// nothing is none), so a refusal for memory (`OOM`) takes none of the batch (a pipeline of
/// `XADD`s could take the first few, which would then run twice, or run and be reported
/// refused).
pub(crate) const ADD_TASKS: &str = concat!(
    born_lua!(),
    r"
local tag = born(KEYS[1], ARGV[1], true, ARGV[2], ARGV[3])
local ids = {}
for i = 4, #ARGV, 2 do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'm', ARGV[i], 'k', ARGV[i + 1])
end
return {tag, ids}
"
);

/// Pushes a node's result and removes the task's entry (1); neither when the driver's alive
/// key is gone. Then, while the entry is still in the stream, [`DRIVER_AWAY`]: the driver
/// may only be out of reach (stalled, cut off, its key expired while it lives), and it
/// beats again: the node keeps the result, its entry heartbeated, and pushes it again (a
/// result dropped there made the driver take the entry back after the lease, counting a
/// delivery: `WorkerLost` under `max_deliveries(1)`, or a second run). Without the entry
/// (the keys of a driver gone, deleted by the nodes or expired; or the entry taken back),
/// 0: nobody waits for this result. The entry is never removed with its result dropped,
/// which would leave its task waiting for ever: a results key of another type (another
/// program's) is refused `WRONGTYPE`, naming it, before the entry goes (a script's writes
/// are not undone when a later one fails); the node then gives the result up, and the
/// entry, no longer heartbeated, is taken back after the lease. The check is an `LLEN`
/// (a list command, which the documented ACL grants; `TYPE` is not: review36 H1). So is a
/// user that may acknowledge the entry but not delete it or push the result (an ACL that
/// allows `XACK` but not `RPUSH`): those two are checked before the first write, `NOPERM`
/// naming the one refused (the `RPUSH` refused after the entry went left the task waiting
/// for ever; a refused `XACK` or `PEXPIRE` loses nothing). `redis.acl_check_cmd` is Redis
/// 7's: before it, they are not checked. The value checked is a stand-in: an ACL judges a
/// push by its key.
pub(crate) const PUT_RESULT: &str = r"
if redis.call('EXISTS', KEYS[3]) == 0 then
  if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) > 0 then return 2 end
  return 0
end
local len = redis.pcall('LLEN', KEYS[2])
if type(len) == 'table' and len.err then
  return redis.error_reply('WRONGTYPE the results key ' .. KEYS[2] .. ' holds a value of another type')
end
if redis.acl_check_cmd then
  if not redis.acl_check_cmd('XDEL', KEYS[1], ARGV[1]) then
    return redis.error_reply('NOPERM this user may not run XDEL on ' .. KEYS[1])
  end
  if not redis.acl_check_cmd('RPUSH', KEYS[2], 'r') then
    return redis.error_reply('NOPERM this user may not run RPUSH on ' .. KEYS[2])
  end
end
redis.call('XACK', KEYS[1], 'nodes', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
";

/// [`PUT_RESULT`]'s answer when the driver's alive key is gone but the task's entry is still
/// there: the result is kept and pushed again.
pub(crate) const DRIVER_AWAY: i64 = 2;

/// A new pool's id: 128 random bits as 32 lowercase hex digits, the only form a node
/// serves ([`is_pool_id`]).
pub(crate) fn new_pool_id() -> String {
    format!("{:032x}", u128::from_ne_bytes(crate::sys::random_bytes::<16>()))
}

/// Whether `id` has the form [`new_pool_id`] makes. A node serves no other: the registry is
/// written by whoever can write to Redis, and the id goes under each task's tag and into
/// hash-tagged key names (review67 S-M1).
pub(crate) fn is_pool_id(id: &[u8]) -> bool {
    id.len() == 32 && id.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The longest node name taken from an untagged refusal ([`is_node_name`]).
const MAX_NODE_NAME: usize = 255;

/// Whether `name` has the form a node's name has (`host:pid`, at most 255 bytes, no control
/// character): the only form a driver takes from the one answer it takes untagged, a
/// node's [`Failure::Unauthenticated`] (review75 L3). That answer is not authenticated
/// (a node of another key cannot tag it for the driver's), so anyone who can write to Redis
/// may send it and choose the name, within this form: not a text of any length, nor lines
/// of a log.
pub(crate) fn is_node_name(name: &str) -> bool {
    let Some((host, pid)) = name.rsplit_once(':') else { return false };
    name.len() <= MAX_NODE_NAME
        && !host.is_empty()
        && !host.chars().any(char::is_control)
        && !pid.is_empty()
        && pid.len() <= 10
        && pid.bytes().all(|b| b.is_ascii_digit())
}

pub(crate) struct PoolKeys {
    pub(crate) tasks: String,
    pub(crate) results: String,
    pub(crate) trimmed: String,
    pub(crate) alive: String,
}

impl PoolKeys {
    pub(crate) fn new(id: &str) -> Self {
        let prefix = format!("mp:{{p:{id}}}");
        Self {
            tasks: format!("{prefix}:tasks"),
            results: format!("{prefix}:results"),
            trimmed: format!("{prefix}:trimmed"),
            alive: format!("{prefix}:alive"),
        }
    }
}

/// How long a pool's keys outlive its driver's last heartbeat.
pub(crate) fn key_ttl(lease: Duration) -> Duration {
    lease * 3 + Duration::from_secs(10)
}

/// The task a task's or a result's first bytes name: a `TaskMsg` and a `ResultMsg` begin
/// with the codec's postcard tag (0), then their `id` as a varint. Read even where the rest
/// does not decode (another version's layout, or an item cut to its head).
pub(crate) fn id_of(head: &[u8]) -> Option<u64> {
    let (&0, varint) = head.split_first()? else { return None };
    let mut id = 0u64;
    for (i, &byte) in varint.iter().enumerate().take(10) {
        id |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(id);
        }
    }
    None
}

/// A chunk to run: the stream entry's field `m` (its tag, field `k`, is checked before it
/// is decoded).
#[derive(Serialize, Deserialize)]
pub(crate) struct TaskMsg {
    pub(crate) id: u64,
    /// The driver's [`crate::sys::build_identity`].
    pub(crate) build: u128,
    pub(crate) call: Packed,
    pub(crate) timeout_ms: Option<u64>,
    /// The driver takes back entries idle this long: the node heartbeats well within it.
    pub(crate) lease_ms: u64,
    /// The pool's `max_message_size`: the node sends a [`Failure::TooLarge`] instead of a
    /// result message longer than this, which the driver would not read.
    pub(crate) max_result: u64,
    #[serde(with = "serde_bytes")]
    pub(crate) args: Vec<u8>,
}

/// Why a node has no results for a chunk.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Failure {
    TimedOut {
        ms: u64,
    },
    WorkerLost {
        pid: u32,
        signal: Option<i32>,
        exit_code: Option<i32>,
    },
    Codec(String),
    Panicked(PanicInfo),
    WrongBuild {
        node: String,
    },
    Terminated,
    /// The result message would have had `size` bytes, more than the pool's
    /// `max_message_size` (`max`): the node did not push it.
    TooLarge {
        size: u64,
        max: u64,
    },
    /// Redis refused the result message of `size` bytes (`why`, its answer): its own
    /// limits (`proto-max-bulk-len`, memory, an ACL). The node sent this instead.
    Refused {
        size: u64,
        why: String,
    },
    /// The task's tag did not check under the node's cluster key (appended last: the
    /// variants before keep their numbers on the wire).
    Unauthenticated {
        node: String,
    },
}

/// The error of a task whose result message has `size` bytes, more than the pool allows
/// (`max`: its `max_message_size`, or less where the server's bulk bound, less the tag, is
/// smaller: `TaskMsg::max_result`): seen by the node before it pushes, or by the driver in
/// what another program pushed.
pub(crate) fn too_large(size: u64, max: u64) -> TaskError {
    TaskError::Codec(crate::CodecError::decode(format_args!(
        "a result of {size} bytes, more than the pool allows ({max} bytes: its max_message_size, or less where \
         Redis's proto-max-bulk-len is smaller)"
    )))
}

impl Failure {
    pub(crate) fn from_task_error(e: TaskError) -> Failure {
        match e {
            TaskError::TimedOut(d) => Failure::TimedOut { ms: d.as_millis() as u64 },
            TaskError::WorkerLost { pid, signal, exit_code } => Failure::WorkerLost { pid, signal, exit_code },
            TaskError::Panicked(info) | TaskError::InputPanicked(info) => Failure::Panicked(info),
            TaskError::WrongBuild { node } => Failure::WrongBuild { node },
            TaskError::Unauthenticated { node } => Failure::Unauthenticated { node },
            TaskError::Terminated => Failure::Terminated,
            // The node's local pool gave up on its workers: a panic saying why, as before the
            // variant (boot49), which every driver decodes; not a codec error.
            TaskError::WorkersCannotStart(failure) => Failure::Panicked(PanicInfo {
                process: format!("pool worker (pid {}) of a worker node", failure.pid),
                message: format!("the pool's workers cannot start: {failure}"),
                location: None,
                backtrace: String::new(),
            }),
            other => Failure::Codec(other.to_string()),
        }
    }

    pub(crate) fn into_task_error(self) -> TaskError {
        match self {
            Failure::TimedOut { ms } => TaskError::TimedOut(Duration::from_millis(ms)),
            Failure::WorkerLost { pid, signal, exit_code } => TaskError::WorkerLost { pid, signal, exit_code },
            // The node's text says whether a value did not encode or did not decode.
            Failure::Codec(s) => TaskError::Codec(crate::CodecError::relayed(s)),
            Failure::Panicked(info) => TaskError::Panicked(info),
            Failure::WrongBuild { node } => TaskError::WrongBuild { node },
            Failure::Unauthenticated { node } => TaskError::Unauthenticated { node },
            Failure::Terminated => TaskError::Terminated,
            Failure::TooLarge { size, max } => too_large(size, max),
            Failure::Refused { size, why } => TaskError::Cluster(super::ClusterError::Refused(format!(
                "Redis refused a worker node's result of {size} bytes: {why}"
            ))),
        }
    }
}

/// A node's answer for task `id`: the encoded results of the chunk, or why not.
#[derive(Serialize, Deserialize)]
pub(crate) struct ResultMsg {
    pub(crate) id: u64,
    pub(crate) outcome: Result<serde_bytes::ByteBuf, Failure>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BootFailure, JoinError};

    /// A node's own name has a node name's form; what else a forger may name does not
    /// (review75 L3).
    #[test]
    fn a_node_name_is_host_colon_pid_and_short() {
        assert!(is_node_name(&super::super::node::node_name()));
        for good in ["h:1", "node-7.example:4242", "ünïcode:0"] {
            assert!(is_node_name(good), "{good:?}");
        }
        let long = format!("{}:1", "h".repeat(MAX_NODE_NAME));
        for bad in ["", "host", ":1", "host:", "host:pid", "a\nb:1", "h:12345678901", long.as_str()] {
            assert!(!is_node_name(bad), "{bad:?}");
        }
    }

    /// A worker node whose local pool gave up on its workers fails its tasks as a panic
    /// that says why (the shape boot49 gave every driver), not as a codec error.
    #[test]
    fn a_nodes_pool_whose_workers_cannot_start_fails_its_tasks_as_a_panic() {
        let ended = JoinError::Exited { name: "PoolWorker-1".into(), code: 3 };
        let cannot_start = TaskError::WorkersCannotStart(BootFailure { deaths: 10, pid: 7, ended });
        match Failure::from_task_error(cannot_start).into_task_error() {
            TaskError::Panicked(info) => {
                assert!(info.message.starts_with("the pool's workers cannot start: 10 in a row"), "{info:?}");
                assert!(info.message.contains("exited with code 3"), "{info:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}
