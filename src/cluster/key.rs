//! The cluster key: what a node checks before it decodes, let alone calls, a task.
//!
//! A task names its function by offsets into the executable ([`crate::sys::Packed`]),
//! which a node calls once the build matches; the build identity is a hash, not a secret.
//! So every task entry carries an HMAC-SHA256 under a key that the driver and its nodes
//! share and Redis never sees (the entry's field `k`, over the pool's id and the encoded
//! task, field `m`): whoever can write to the pool's keys without the key cannot make a
//! node call anything (Python's manager has its `authkey` for the same reason). The
//! comparison is constant-time (`Mac::verify_slice`).
//!
//! The key, in this order: the option ([`ClusterOptions::authkey`], [`ServeOptions::authkey`]);
//! the environment variable [`KEY_ENV`]; the user's key file,
//! `$XDG_CONFIG_HOME/multiproc/cluster.key` (else `~/.config/multiproc/cluster.key`), made
//! with 32 random bytes (in hex) on first use and readable by its owner only. Programs of
//! one user on one machine (or on machines sharing the home directory) so share a key
//! without ceremony; across machines, copy the file or set the variable to its content.
//!
//! [`ClusterOptions::authkey`]: super::ClusterOptions::authkey
//! [`ServeOptions::authkey`]: super::ServeOptions::authkey

use std::fmt;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::ClusterError;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The environment variable a driver and its nodes read their cluster key from when no
/// `authkey` option gives one: its bytes are the key (see
/// [`ClusterOptions::authkey`](super::ClusterOptions::authkey)).
pub const KEY_ENV: &str = "MULTIPROC_CLUSTER_KEY";

/// The length of a task's tag (an HMAC-SHA256).
pub(crate) const TAG: usize = 32;

/// What a task's tag is computed over besides the pool and the task: a tag made for
/// something else under the same key never passes for one. `v2` frames the pool by its
/// length (v1 ended it by a zero byte, which let a pool and its task trade bytes: review67
/// S-M1), so no tag of one framing passes for the other.
const DOMAIN: &[u8] = b"multiproc cluster task v2\0";

/// A key given by the program, never shown by `Debug`.
#[derive(Clone)]
pub(crate) struct Secret(Vec<u8>);

impl Secret {
    pub(crate) fn new(key: &[u8]) -> Self {
        Secret(key.to_vec())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

/// Tags and checks the tasks of cluster pools under one key.
#[derive(Clone)]
pub(crate) struct TaskSeal(HmacSha256);

impl TaskSeal {
    /// The seal of the key `option`, else of the environment's or the user's key file (see
    /// the module docs).
    pub(crate) fn new(option: Option<&Secret>) -> Result<TaskSeal, ClusterError> {
        let key = match option {
            Some(Secret(key)) => key.clone(),
            None => match std::env::var_os(KEY_ENV) {
                Some(key) => key.as_bytes().to_vec(),
                None => key_file()?,
            },
        };
        if key.is_empty() {
            return Err(ClusterError::Key("the cluster key is empty".into()));
        }
        Ok(TaskSeal(<HmacSha256 as KeyInit>::new_from_slice(&key).expect("HMAC takes keys of any length")))
    }

    fn mac(&self, pool: &str, task: &[u8]) -> HmacSha256 {
        let mut mac = self.0.clone();
        mac.update(DOMAIN);
        mac.update(&(pool.len() as u64).to_le_bytes());
        mac.update(pool.as_bytes());
        mac.update(task);
        mac
    }

    /// The tag of the encoded `task` of `pool`.
    pub(crate) fn tag(&self, pool: &str, task: &[u8]) -> [u8; TAG] {
        self.mac(pool, task).finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of `task` in `pool` (constant-time).
    pub(crate) fn verify(&self, pool: &str, task: &[u8], tag: &[u8]) -> bool {
        self.mac(pool, task).verify_slice(tag).is_ok()
    }
}

/// `$XDG_CONFIG_HOME/multiproc/cluster.key`, else `$HOME/.config/multiproc/cluster.key`.
fn key_path() -> Result<PathBuf, ClusterError> {
    let absolute = |name| std::env::var_os(name).map(PathBuf::from).filter(|p| p.is_absolute());
    let config = absolute("XDG_CONFIG_HOME").or_else(|| absolute("HOME").map(|home| home.join(".config")));
    let config = config
        .ok_or_else(|| ClusterError::Key(format!("no cluster key: set {KEY_ENV}, or HOME for the user's key file")))?;
    Ok(config.join("multiproc").join("cluster.key"))
}

/// The user's key file's content (trailing white space left out), the file made first
/// where it is missing. Written whole under a temporary name and linked into place, so
/// that programs starting together all read the one that won.
fn key_file() -> Result<Vec<u8>, ClusterError> {
    let path = key_path()?;
    let failed = |what: &str, e: std::io::Error| ClusterError::Key(format!("{what} {}: {e}", path.display()));
    let dir = path.parent().expect("a file in a directory");
    if !path.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| failed("cannot make", e))?;
        let random = u128::from_ne_bytes(crate::sys::random_bytes::<16>());
        let temporary = dir.join(format!(".cluster.key.{}.{random:032x}", std::process::id()));
        let made = (|| {
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
            let key: String = crate::sys::random_bytes::<32>().iter().map(|b| format!("{b:02x}")).collect();
            writeln!(file, "{key}")?;
            file.sync_all()?;
            match std::fs::hard_link(&temporary, &path) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                _ => Ok(()),
            }
        })();
        let _ = std::fs::remove_file(&temporary);
        made.map_err(|e| failed("cannot make", e))?;
    }
    let metadata = std::fs::metadata(&path).map_err(|e| failed("cannot read", e))?;
    if metadata.mode() & 0o077 != 0 {
        return Err(ClusterError::Key(format!(
            "the cluster key file {} may be read or written by other users (chmod 600 it)",
            path.display()
        )));
    }
    let mut key = std::fs::read(&path).map_err(|e| failed("cannot read", e))?;
    while key.last().is_some_and(u8::is_ascii_whitespace) {
        key.pop();
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_names_its_pool_and_its_task_under_its_key() {
        let seal = TaskSeal::new(Some(&Secret::new(b"one"))).unwrap();
        let tag = seal.tag("pool", b"task");
        assert!(seal.verify("pool", b"task", &tag));
        assert!(!seal.verify("pool", b"tasK", &tag));
        assert!(!seal.verify("pooL", b"task", &tag));
        assert!(!seal.verify("pool", b"task", &tag[..TAG - 1]));
        let other = TaskSeal::new(Some(&Secret::new(b"two"))).unwrap();
        assert!(!other.verify("pool", b"task", &tag));
        assert!(matches!(TaskSeal::new(Some(&Secret::new(b""))), Err(ClusterError::Key(_))));
    }

    #[test]
    fn a_tag_does_not_let_the_pool_and_the_task_trade_bytes() {
        // review67 S-M1: with the pool ended by a zero byte, pool "p\0x" with task "y" and
        // pool "p" with task "x\0y" were the same input.
        let seal = TaskSeal::new(Some(&Secret::new(b"k"))).unwrap();
        assert_ne!(seal.tag("p\0x", b"y"), seal.tag("p", b"x\0y"));
        assert_ne!(seal.tag("", b"\0y"), seal.tag("\0", b"y"));
    }
}
