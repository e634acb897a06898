//! Beyond one machine: objects that live in a Redis server, shared by programs on any
//! machine that reaches it (feature `cluster`).
//!
//! The engine is Redis (or Valkey), reached with the `redis` crate's blocking API (its
//! commands and reply parser, on a socket of ours: a signal that interrupts a wait never
//! fails the command, nor stretches the wait, over TLS too): no async runtime and no background
//! thread, so a process holding these objects may still start children with any start method,
//! with one exception. A Redis host name is resolved on a thread of its own (named
//! `multiproc-resolve`), joined before the open returns; but one whose name servers have not
//! answered by the open's deadline is left behind until the system's resolver gives up
//! (`resolv.conf`'s `timeout` × `attempts` per server), and while it runs a
//! [`StartMethod::Fork`](crate::StartMethod::Fork) start is refused with
//! [`Error::ForkWithThreads`](crate::Error::ForkWithThreads). An IP address, or a unix
//! socket, starts no thread. The URL carries the credentials (`AUTH` with a
//! password or an ACL user): `redis://user:password@host:6379/0`, or a unix socket,
//! `redis+unix:///run/redis.sock?pass=password`; refused credentials are
//! [`ClusterError::Auth`]. The connections speak RESP2: a URL asking for RESP3
//! (`?protocol=resp3`) is [`ClusterError::BadUrl`], as is the any address (`0.0.0.0`,
//! `::`, or a name that resolves to it alone), which a server listens on but a client
//! cannot reach (Linux connects it to this machine).
//!
//! Every key is under `mp:`; an ACL user limited to it needs
//! `~mp:* +@list +@hash +@connection +@scripting +sadd +srem +smembers +set +get +del +exists +pexpire`,
//! and for pools also `+@stream` (no transaction: nothing runs `MULTI`). A queue's consumer
//! needs the push commands too, not only the takes: it pushes an item that does not decode
//! or check to the dead letters (`LPUSH`), and a value dropped unacknowledged back in line
//! (`RPUSH`). Refused, they fail having changed nothing, and the item stays the
//! consumer's until it retires. It also needs `LREM` (an acknowledgement, and the move of
//! an item it holds) and `LPOS` (whether it still holds the item it moves), which `@list`
//! has and a hand-listed ACL must name: without `LREM` a moved item would stay held as
//! well, and be delivered again when the consumer retires.
//!
//! What stays in Redis: a queue's items, in line and dead-lettered, until taken or deleted.
//! A queue handle's own keys (a consumer's lists, heartbeat and last take, a producer's
//! record of puts) go with its drop, but a record one of whose puts had its reply lost,
//! which stays an hour so that a late copy of that put is still refused. A handle that
//! dies, or is dropped while Redis is away, leaves its keys to expire (a lease; an hour
//! for a record of puts), its unacknowledged items taken back by the other consumers. A
//! pool's keys go with its clean close; a driver that dies leaves them to expire.
//!
//! `rediss://` is TLS (rustls, no OpenSSL): the server's certificate must be signed by an
//! authority of the system's, or by one given with [`Tls`] (a private CA, and a client
//! certificate for servers that ask for one); else [`ClusterError::Tls`].
//!
//! What comes from Redis is bounded as the manager's remote frames are: an item larger
//! than the queue's `max_message_size` is never read (Redis moves it to a dead-letter list
//! itself), and one that does not decode is a [`GetError::Decode`], never a panic.
//!
//! What comes from Redis is authenticated: every task, result and queue item carries an
//! HMAC-SHA256 under the cluster key, which the programs share and Redis never sees (see
//! below), checked before anything of it is decoded. A queue item's covers the queue's
//! name: one that does not check (written by someone without the key, changed in Redis,
//! or copied from another queue) is moved to the dead-letter list and its get fails with
//! [`GetError::Unauthenticated`].
//!
//! | Python / the local crate | here |
//! |---|---|
//! | `multiprocessing.Queue`, [`crate::Queue`] | [`Queue`]: a named Redis list, at-least-once |
//! | `multiprocessing.Pool`, [`crate::Pool`] | the same [`crate::Pool`], built with [`PoolBuilder::cluster`](crate::PoolBuilder::cluster); its workers are nodes: the same program with `MULTIPROC_WORKER` set ([`WORKER_ENV`]), or [`serve`] |
//!
//! A cluster pool's tasks go to a Redis stream read by the nodes' consumer group; every
//! task resolves once for the caller (results are deduplicated by task id), a node that
//! dies has its tasks taken back after a lease and run elsewhere, a bounded number of
//! times. A task names its function by offsets into the executable, so each carries an
//! HMAC-SHA256 under the cluster key, which its driver and nodes share and Redis never
//! sees: a node checks it before it decodes anything of the task, and refuses a task it
//! cannot authenticate ([`TaskError::Unauthenticated`](crate::TaskError::Unauthenticated)
//! for its driver). The key comes from
//! [`ClusterOptions::authkey`]/[`ServeOptions::authkey`], else [`KEY_ENV`], else the user's
//! key file (`~/.config/multiproc/cluster.key`, made on first use): programs of one user on
//! one machine share it without ceremony; across machines, give every node the driver's
//! key (copy the driver's file to each, or set [`KEY_ENV`] to one key everywhere: each
//! machine's own file is its own random key). The key must be random and at least 16
//! bytes (a shorter one is [`ClusterError::Key`]): whoever reads Redis sees the tags and
//! can test guesses of the key offline. [`init`](crate::init) takes [`KEY_ENV`] out of the
//! environment, so that no descendant program inherits it. Results are authenticated too:
//! a node tags each under the key, bound to the pool and the task's id, and the driver
//! checks it before it decodes the result; one that does not check fails its task with
//! [`TaskError::Unauthenticated`](crate::TaskError::Unauthenticated) (the one untagged
//! answer taken is a node's own `Unauthenticated`, from a node whose key is not the
//! driver's). So whoever can write to Redis without the key can still make a task fail,
//! never run, or run again any number of times (a copy of its entry: mind tasks with side
//! effects), or a queue item come again (any number of times, at any later time: see
//! [`QueueBuilder::authkey`]), but can give no task a result nor a consumer an
//! item of their choosing, nor make a node or the driver run code of their choosing.
//! Protect Redis (ACL user, TLS) for the rest.
//!
//! Handles of the local family (a local `Queue`, `Lock`, `Value`...) name shared memory
//! of one machine: a message that holds one is refused when it is put
//! ([`PutError::Encode`]).
//!
//! # Examples
//!
//! ```no_run
//! use multiproc::cluster::Queue;
//!
//! // Program A, on one machine:
//! let jobs = Queue::<String>::open("redis://redis.example:6379/0", "jobs")?;
//! jobs.put("resize photo 17".to_string())?;
//!
//! // Program B, on another:
//! let jobs = Queue::<String>::open("redis://redis.example:6379/0", "jobs")?;
//! let job = jobs.receive()?; // moved to B's processing list
//! println!("working on {}", *job);
//! job.ack()?; // done: gone for good (B killed before this line: it goes back)
//! # Ok::<(), multiproc::Error>(())
//! ```

mod error;
pub(crate) mod key;
mod link;
pub(crate) use link::redacted;
mod node;
pub(crate) mod pool;
pub(crate) mod queue;
mod resolve;
mod tls;
mod wire;

pub use error::{AckError, ClusterError, GetError, PutError, PutToken};
pub use key::KEY_ENV;

/// The longest lease or timeout kept (a hundred years): Redis's expiry times, `Instant`s
/// and socket timeouts hold it, plus a second or a third of it, where a longer one
/// (`Duration::MAX`, "never") would overflow them.
pub(crate) const MAX_LEASE: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);
pub use node::{ServeOptions, WORKER_ENV, serve};

/// Takes the cluster's variables out of the environment for `init()`: the key
/// ([`KEY_ENV`], kept by [`key::taken_key`]) and the URL a worker node is to serve
/// ([`WORKER_ENV`], returned), so that no descendant takes itself for a node, nor inherits
/// the key. Called while the process should have one thread, before any child starts.
///
/// - **Secure mode** (set-user-ID, set-group-ID, or file capabilities: review75 M1): neither
///   is read. The environment is the caller's, who with both would make the program serve
///   their Redis and run, with its privileges, whatever function of it they sign with
///   their key (as a forged `MULTIPROC_BOOT` is ignored and `Spawn` refused there). Such a
///   program serves, and keys its pools and queues, in its code only (`authkey`).
/// - **Removed only when this process is known to have one thread** (review75 L8): where
///   `/proc` cannot be read, threads cannot be counted and removing a variable would be
///   unsound if one read the environment meanwhile; both are then left set, as a program
///   that does not call `init()` leaves them, and the programs its tasks start inherit them.
pub(crate) fn take_environment() -> Option<String> {
    let removable = crate::sys::known_single_threaded();
    // Zeroed in the kernel's block too (`/proc/<pid>/environ`): the key, and the URL with
    // its Redis password (review80 L3).
    let remove = |name| {
        if removable {
            crate::sys::scrub_env_single_threaded(name);
        }
    };
    let present = |name: &str| std::env::var_os(name).is_some();
    if crate::sys::secure_execution() {
        for name in [WORKER_ENV, KEY_ENV].into_iter().filter(|&name| present(name)) {
            eprintln!("multiproc: {name} ignored: {}", key::SECURE_ENVIRONMENT);
            remove(name);
        }
        return None;
    }
    if !removable && (present(WORKER_ENV) || present(KEY_ENV)) {
        eprintln!(
            "multiproc: this process's threads cannot be counted (/proc unreadable): {WORKER_ENV} and {KEY_ENV} stay \
             in the environment, and the programs it starts inherit them"
        );
    }
    key::take_env_key(removable);
    let node = std::env::var(WORKER_ENV).ok();
    remove(WORKER_ENV);
    node
}
pub use pool::ClusterOptions;
pub use queue::{Queue, QueueBuilder, Received};
pub use tls::Tls;
