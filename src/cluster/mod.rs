//! Beyond one machine: objects that live in a Redis server, shared by programs on any
//! machine that reaches it (feature `cluster`).
//!
//! The engine is Redis (or Valkey), reached with the `redis` crate's blocking API (its
//! commands and reply parser, on a socket of ours: a signal that interrupts a wait never
//! fails the command, nor stretches the wait, over TLS too): no async runtime and no background thread, so a process holding
//! these objects may still start children with any start method. The URL carries the credentials (`AUTH` with a
//! password or an ACL user): `redis://user:password@host:6379/0`, or a unix socket,
//! `redis+unix:///run/redis.sock?pass=password`; refused credentials are
//! [`ClusterError::Auth`]. The connections speak RESP2: a URL asking for RESP3
//! (`?protocol=resp3`) is [`ClusterError::BadUrl`], as is the any address (`0.0.0.0`,
//! `::`, or a name that resolves to it alone), which a server listens on but a client
//! cannot reach (Linux connects it to this machine).
//!
//! Every key is under `mp:`; an ACL user limited to it needs
//! `~mp:* +@list +@hash +@connection +@scripting +sadd +srem +smembers +set +get +del +exists +pexpire +multi +exec`, and for
//! pools also `+@stream`.
//!
//! `rediss://` is TLS (rustls, no OpenSSL): the server's certificate must be signed by an
//! authority of the system's, or by one given with [`Tls`] (a private CA, and a client
//! certificate for servers that ask for one); else [`ClusterError::Tls`].
//!
//! What comes from Redis is bounded as the manager's remote frames are: an item larger
//! than the queue's `max_message_size` is never read (Redis moves it to a dead-letter list
//! itself), and one that does not decode is a [`GetError::Decode`], never a panic.
//!
//! | Python / the local crate | here |
//! |---|---|
//! | `multiprocessing.Queue`, [`crate::Queue`] | [`Queue`]: a named Redis list, at-least-once |
//! | `multiprocessing.Pool`, [`crate::Pool`] | the same [`crate::Pool`], built with [`PoolBuilder::cluster`](crate::PoolBuilder::cluster); its workers are nodes: the same program with `MULTIPROC_WORKER` set ([`WORKER_ENV`]), or [`serve`] |
//!
//! A cluster pool's tasks go to a Redis stream read by the nodes' consumer group; every
//! task resolves once for the caller (results are deduplicated by task id), a node that
//! dies has its tasks taken back after a lease and run elsewhere, a bounded number of
//! times. A task names its function by offsets into the executable, which a node checks
//! only against the executable's identity (a hash, not a secret): whoever can write to
//! the pool's keys can make the nodes jump to any code of the program, not only call its
//! functions, with arguments of their choosing. Protect Redis (ACL user, TLS) as you would
//! the program itself.
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
mod link;
mod node;
pub(crate) mod pool;
pub(crate) mod queue;
mod tls;
mod wire;

pub use error::{AckError, ClusterError, GetError, PutError, PutToken};

/// The longest lease or timeout kept (a hundred years): Redis's expiry times, `Instant`s
/// and socket timeouts hold it, plus a second or a third of it, where a longer one
/// (`Duration::MAX`, "never") would overflow them.
pub(crate) const MAX_LEASE: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);
pub use node::{ServeOptions, WORKER_ENV, serve};
pub use pool::ClusterOptions;
pub use queue::{Queue, QueueBuilder, Received};
pub use tls::Tls;
