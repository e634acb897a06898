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
/// The same for a node's result: over the pool and its task's id (8 bytes, little-endian),
/// so a result never passes for another task's, nor another pool's.
const RESULT_DOMAIN: &[u8] = b"multiproc cluster result v1\0";
/// The same for a `cluster::Queue` item: over the queue's name, so an item never passes
/// for one of another queue.
const ITEM_DOMAIN: &[u8] = b"multiproc cluster queue item v1\0";

/// The shortest cluster key taken (review67 S-L4): every tag in Redis lets whoever reads
/// Redis test key guesses offline at HMAC speed, so a key must be too long to guess, not a
/// passphrase. 16 bytes is 128 bits when random; the key file's is 64 hex digits.
pub(crate) const MIN_KEY: usize = 16;

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

/// Tags and checks under one key the tasks and results of cluster pools and the items of
/// cluster queues.
#[derive(Clone)]
pub(crate) struct Seal(HmacSha256);

impl Seal {
    /// The seal of the key `option`, else of the environment's or the user's key file (see
    /// the module docs).
    pub(crate) fn new(option: Option<&Secret>) -> Result<Seal, ClusterError> {
        let key = match option {
            Some(Secret(key)) => key.clone(),
            None => match env_key() {
                Some(key) => key,
                None => key_file()?,
            },
        };
        if key.len() < MIN_KEY {
            return Err(ClusterError::Key(format!(
                "the cluster key has {} bytes, fewer than {MIN_KEY}: a short key can be guessed offline from the \
                 tags in Redis (use random bytes, as the key file's 64 hex digits)",
                key.len()
            )));
        }
        Ok(Seal(<HmacSha256 as KeyInit>::new_from_slice(&key).expect("HMAC takes keys of any length")))
    }

    /// The MAC of `domain`, `name` framed by its length, then `parts` (all of fixed length
    /// but the last, so that no two inputs are the same bytes).
    fn mac(&self, domain: &[u8], name: &str, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = self.0.clone();
        mac.update(domain);
        mac.update(&(name.len() as u64).to_le_bytes());
        mac.update(name.as_bytes());
        for part in parts {
            mac.update(part);
        }
        mac
    }

    /// The tag of the encoded `task` of `pool`.
    pub(crate) fn tag(&self, pool: &str, task: &[u8]) -> [u8; TAG] {
        self.mac(DOMAIN, pool, &[task]).finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of `task` in `pool` (constant-time).
    pub(crate) fn verify(&self, pool: &str, task: &[u8], tag: &[u8]) -> bool {
        self.mac(DOMAIN, pool, &[task]).verify_slice(tag).is_ok()
    }

    /// The tag of the encoded `result` of task `id` of `pool`.
    pub(crate) fn result_tag(&self, pool: &str, id: u64, result: &[u8]) -> [u8; TAG] {
        self.mac(RESULT_DOMAIN, pool, &[&id.to_le_bytes(), result]).finalize().into_bytes().into()
    }

    /// Whether `tag` is the tag of `result` for task `id` of `pool` (constant-time).
    pub(crate) fn verify_result(&self, pool: &str, id: u64, result: &[u8], tag: &[u8]) -> bool {
        self.mac(RESULT_DOMAIN, pool, &[&id.to_le_bytes(), result]).verify_slice(tag).is_ok()
    }

    /// `item` (an encoded value of the queue `queue`) followed by its tag.
    pub(crate) fn seal_item(&self, queue: &str, mut item: Vec<u8>) -> Vec<u8> {
        let tag: [u8; TAG] = self.mac(ITEM_DOMAIN, queue, &[&item]).finalize().into_bytes().into();
        item.extend_from_slice(&tag);
        item
    }

    /// The encoded value of `sealed`, an item of the queue `queue`, if its tag checks.
    pub(crate) fn open_item<'a>(&self, queue: &str, sealed: &'a [u8]) -> Option<&'a [u8]> {
        let (item, tag) = sealed.split_at_checked(sealed.len().checked_sub(TAG)?)?;
        self.mac(ITEM_DOMAIN, queue, &[item]).verify_slice(tag).is_ok().then_some(item)
    }
}

/// The key [`KEY_ENV`] gives, if set.
fn env_key() -> Option<Vec<u8>> {
    std::env::var_os(KEY_ENV).map(|key| key.as_bytes().to_vec())
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

    fn seal(key: &[u8]) -> Seal {
        Seal::new(Some(&Secret::new(key))).unwrap()
    }

    #[test]
    fn a_tag_names_its_pool_and_its_task_under_its_key() {
        let one = seal(b"the first key of the tests");
        let tag = one.tag("pool", b"task");
        assert!(one.verify("pool", b"task", &tag));
        assert!(!one.verify("pool", b"tasK", &tag));
        assert!(!one.verify("pooL", b"task", &tag));
        assert!(!one.verify("pool", b"task", &tag[..TAG - 1]));
        let other = seal(b"the second key of the tests");
        assert!(!other.verify("pool", b"task", &tag));
    }

    #[test]
    fn a_tag_does_not_let_the_pool_and_the_task_trade_bytes() {
        // review67 S-M1: with the pool ended by a zero byte, pool "p\0x" with task "y" and
        // pool "p" with task "x\0y" were the same input.
        let seal = seal(b"the key of the framing test");
        assert_ne!(seal.tag("p\0x", b"y"), seal.tag("p", b"x\0y"));
        assert_ne!(seal.tag("", b"\0y"), seal.tag("\0", b"y"));
    }

    #[test]
    fn a_result_tag_names_its_pool_and_its_task_and_is_no_task_tag() {
        let seal = seal(b"the key of the result test");
        let tag = seal.result_tag("pool", 7, b"result");
        assert!(seal.verify_result("pool", 7, b"result", &tag));
        assert!(!seal.verify_result("pool", 8, b"result", &tag), "another task's");
        assert!(!seal.verify_result("pooL", 7, b"result", &tag), "another pool's");
        assert!(!seal.verify_result("pool", 7, b"resulT", &tag));
        // Nor does a task's tag pass for a result's, or the reverse (their domains differ).
        let bytes = [&7u64.to_le_bytes()[..], b"result"].concat();
        assert!(!seal.verify("pool", &bytes, &tag));
        assert!(!seal.verify_result("pool", 7, b"result", &seal.tag("pool", &bytes)));
    }

    #[test]
    fn an_item_opens_in_its_own_queue_only() {
        let seal = seal(b"the key of the queue item test");
        let item = seal.seal_item("jobs", b"value".to_vec());
        assert_eq!(seal.open_item("jobs", &item), Some(&b"value"[..]));
        assert_eq!(seal.open_item("jobz", &item), None, "another queue's");
        assert_eq!(seal.open_item("jobs", &item[1..]), None);
        assert_eq!(seal.open_item("jobs", b"value"), None, "untagged");
        assert_eq!(seal.open_item("jobs", b""), None);
    }

    #[test]
    fn a_key_shorter_than_the_floor_is_refused() {
        for key in [&b""[..], b"one", &[7; MIN_KEY - 1]] {
            assert!(matches!(Seal::new(Some(&Secret::new(key))), Err(ClusterError::Key(_))), "{key:?}");
        }
        assert!(Seal::new(Some(&Secret::new(&[7; MIN_KEY]))).is_ok());
    }
}
