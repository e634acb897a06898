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

use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::ClusterError;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The environment variable a driver and its nodes read their cluster key from when no
/// `authkey` option gives one: its bytes are the key, at least 16 of them (see
/// [`ClusterOptions::authkey`](super::ClusterOptions::authkey)).
///
/// [`init`](crate::init) (and `#[multiproc::main]`) takes it out of the environment, so that
/// no descendant inherits it (a pool worker, a program that a task or the driver runs); the
/// family keeps it as its default key, for its children of every start method (a later
/// change of the variable does not replace it). A program that does not call `init` reads
/// the variable where it needs the key and leaves it set: removing a variable is unsound
/// while another thread may read the environment (so does `init` where `/proc` cannot be
/// read to count the threads).
///
/// `/proc/<pid>/environ` shows the environment block a process started with, which
/// removing a variable leaves as it was: `init` also zeroes the key's bytes there (every
/// entry of that name in the block, also where the program set the key again before
/// `init`), so that neither the process nor its fork and fork-server children show it. Not
/// where `init` left the variable (no `init`, or threads it cannot count), nor in the
/// process that started this one, nor in a program
/// whose environment it was set in: its `environ` file shows the key to the same user and
/// to root, and tools that collect that file (crash reporters, `ps e`) copy it. The same
/// holds for [`WORKER_ENV`](super::WORKER_ENV)'s URL, which may carry the Redis password.
///
/// A set-user-ID, set-group-ID or capability-raising program ignores it, and the key file
/// its `HOME` names: its caller chose its environment, and could else make it run any task
/// signed with the caller's key. Such a program gives its key in code (`authkey`).
pub const KEY_ENV: &str = "MULTIPROC_CLUSTER_KEY";

/// The length of a task's tag (an HMAC-SHA256).
pub(crate) const TAG: usize = 32;

/// The longest sealed message (a queue item, a pool's result message) whose message proper
/// is at most `max_message_size` bytes: queues and pools alike count the tag on top of
/// their limit (review75 L10), and `usize::MAX` stays "no limit" (review75 M2: an unchecked
/// `max + TAG` overflowed: a panic at each get in debug builds; in release, every item
/// above 31 bytes was set aside as too large).
pub(crate) fn sealed_bound(max_message_size: u64) -> u64 {
    max_message_size.saturating_add(TAG as u64)
}

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

/// A key given by the program (or taken from [`KEY_ENV`] by `init()`), never shown by
/// `Debug`.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Secret(#[serde(with = "serde_bytes")] Vec<u8>);

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
            None => default_key()?,
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

/// Why a program in secure mode takes neither [`KEY_ENV`] nor the key file that `HOME`
/// names, nor serves the URL of [`WORKER_ENV`](super::WORKER_ENV) (review75 M1).
pub(crate) const SECURE_ENVIRONMENT: &str = "a set-user-ID (or set-group-ID, or capability-raising) program \
     does not trust its environment, which its caller chose: it takes its cluster key from its code (authkey) only";

/// The key `init()` took out of [`KEY_ENV`]: the process's own, kept even when `init()`
/// fails after taking it (review75 L2: the process would else fall back to its key file,
/// another key, silently), and inherited by fork and fork-server children.
static TAKEN: OnceLock<Secret> = OnceLock::new();

/// Takes the key out of [`KEY_ENV`] for [`TAKEN`] (review67 S-L5), removing the variable
/// when `remove` (the process is known to have one thread: removing a variable is unsound
/// while another thread may read the environment), so that no descendant inherits it:
/// not the pool's workers, not a program a task or the driver runs. The family's
/// configuration keeps a copy (`FamilyConfig::cluster_key`) that a spawned child is sent
/// at boot, as the family's own authkey is.
///
/// Removing is also overwriting (review75 L1): `/proc/<pid>/environ` shows the
/// environment block the process started with, which removing a variable leaves as it was,
/// so the key's bytes there are zeroed first (`sys::scrub_env_single_threaded`), before the
/// fork server and every fork copy this memory.
pub(crate) fn take_env_key(remove: bool) {
    let Some(key) = std::env::var_os(KEY_ENV) else { return };
    if remove {
        crate::sys::scrub_env_single_threaded(KEY_ENV);
    }
    let _ = TAKEN.set(Secret(key.as_bytes().to_vec()));
}

/// The key `init()` took from [`KEY_ENV`] (see [`take_env_key`]), if it took one.
pub(crate) fn taken_key() -> Option<Secret> {
    TAKEN.get().cloned()
}

/// The key when no option gives one: the one `init()` took from [`KEY_ENV`] (this
/// process's, or its family's for a spawned child), else the variable's (a program that
/// never called `init()` keeps it set, as it may have threads; as does one that set it
/// after an `init()` that found none: one `init()` took wins over a later one), else the
/// user's key file. In secure mode, neither the variable nor a key file that `HOME` or
/// `XDG_CONFIG_HOME` names (review75 M1): [`SECURE_ENVIRONMENT`].
fn default_key() -> Result<Vec<u8>, ClusterError> {
    let family = || crate::process::family::config().ok().and_then(|family| family.cluster_key.clone());
    if let Some(Secret(key)) = taken_key().or_else(family) {
        return Ok(key);
    }
    if crate::sys::secure_execution() {
        return Err(ClusterError::Key(format!("no cluster key: {SECURE_ENVIRONMENT}")));
    }
    match std::env::var_os(KEY_ENV) {
        Some(key) => Ok(key.as_bytes().to_vec()),
        None => key_file(),
    }
}

/// `$XDG_CONFIG_HOME/multiproc/cluster.key`, else `$HOME/.config/multiproc/cluster.key`.
fn key_path() -> Result<PathBuf, ClusterError> {
    config_dir(std::env::var_os("XDG_CONFIG_HOME"), std::env::var_os("HOME"))
        .map(|config| config.join("multiproc").join("cluster.key"))
        .ok_or_else(|| ClusterError::Key(format!("no cluster key: set {KEY_ENV}, or HOME for the user's key file")))
}

/// The user's configuration directory: `xdg` (`XDG_CONFIG_HOME`), else `home`/.config,
/// each only when absolute (a relative one would name another file in each working
/// directory).
fn config_dir(xdg: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute = |var: Option<OsString>| var.map(PathBuf::from).filter(|p| p.is_absolute());
    absolute(xdg).or_else(|| absolute(home).map(|home| home.join(".config")))
}

/// The user's key file's content (see [`key_file_at`]).
fn key_file() -> Result<Vec<u8>, ClusterError> {
    key_file_at(&key_path()?)
}

/// The content of the key file `path` (trailing white space left out), the file made first
/// where it is missing. Written whole under a temporary name and linked into place, so
/// that programs starting together all read the one that won.
///
/// Trusted only if it is this user's alone (review67 S-L1): opened without following a
/// symbolic link, then checked on the open file (no gap between the check and the read
/// for another to swap the file in): a regular file owned by the effective user, which no
/// other may read or write, in a directory owned by that user that no other may write. A
/// file owned by another user is refused: root running with a user's `HOME` (`sudo -E`)
/// would else take a key that user knows, and run the tasks that user forges as root. Nor
/// is anything made below a directory of another user (the nearest one that exists must be
/// the effective user's, or root's and sticky or not writable by others), and the
/// directory is checked before the file is written in it.
fn key_file_at(path: &Path) -> Result<Vec<u8>, ClusterError> {
    let failed = |what: &str, e: std::io::Error| ClusterError::Key(format!("{what} {}: {e}", path.display()));
    let refused = |why: String| ClusterError::Key(format!("the cluster key file {} {why}", path.display()));
    let dir = path.parent().expect("a file in a directory");
    let me = rustix::process::geteuid().as_raw();
    let check_dir = || {
        let held = std::fs::metadata(dir).map_err(|e| failed("cannot read", e))?;
        if held.uid() != me || held.mode() & 0o022 != 0 {
            return Err(ClusterError::Key(format!(
                "the directory {} of the cluster key file is owned by another user (uid {}) or others may write to it",
                dir.display(),
                held.uid()
            )));
        }
        Ok(())
    };
    if std::fs::symlink_metadata(path).is_err() {
        // Nothing is made in another user's directory (review75 L6): root with a user's
        // `HOME` made the user's `multiproc` directory (even `.config`) root's, which
        // then refused the user's own programs, and which the user could not remove.
        let existing = dir.ancestors().find(|a| std::fs::symlink_metadata(a).is_ok());
        if let Some(existing) = existing.filter(|a| *a != dir) {
            let held = std::fs::metadata(existing).map_err(|e| failed("cannot read", e))?;
            let owner = held.uid();
            // A directory of root's that nobody else may write, or sticky (`/tmp`, as
            // `HOME=/tmp` in containers): nobody else can rename or remove what this user
            // makes there, and `check_dir` checks what it made (review80 L1).
            let roots = owner == 0 && (held.mode() & 0o022 == 0 || held.mode() & 0o1000 != 0);
            if owner != me && !roots {
                return Err(ClusterError::Key(format!(
                    "no cluster key file: {} belongs to another user (uid {owner}, not {me}), so nothing is made \
                     there: set {KEY_ENV}, or HOME to your own directory",
                    existing.display()
                )));
            }
        }
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| failed("cannot make", e))?;
        // Before anything is written in it.
        check_dir()?;
        let random = u128::from_ne_bytes(crate::sys::random_bytes::<16>());
        let temporary = dir.join(format!(".cluster.key.{}.{random:032x}", std::process::id()));
        let made = (|| {
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
            let key: String = crate::sys::random_bytes::<32>().iter().map(|b| format!("{b:02x}")).collect();
            writeln!(file, "{key}")?;
            file.sync_all()?;
            match std::fs::hard_link(&temporary, path) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                _ => Ok(()),
            }
        })();
        let _ = std::fs::remove_file(&temporary);
        made.map_err(|e| failed("cannot make", e))?;
    }
    check_dir()?;
    let mut file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).map_err(
            |e| match e.raw_os_error() {
                Some(libc::ELOOP) => refused("is a symbolic link (give the file itself)".into()),
                _ => failed("cannot read", e),
            },
        )?;
    let metadata = file.metadata().map_err(|e| failed("cannot read", e))?;
    if !metadata.is_file() {
        return Err(refused("is not a regular file".into()));
    }
    if metadata.uid() != me {
        return Err(refused(format!("is owned by another user (uid {}, not {me}): make your own", metadata.uid())));
    }
    if metadata.mode() & 0o077 != 0 {
        return Err(refused("may be read or written by other users (chmod 600 it)".into()));
    }
    let mut key = Vec::new();
    file.read_to_end(&mut key).map_err(|e| failed("cannot read", e))?;
    while key.last().is_some_and(u8::is_ascii_whitespace) {
        key.pop();
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

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

    /// A fresh directory of its own under the system's temporary directory, removed on
    /// drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            let random = u128::from_ne_bytes(crate::sys::random_bytes::<16>());
            let dir = std::env::temp_dir().join(format!("multiproc-key-test-{random:032x}"));
            std::fs::create_dir(&dir).unwrap();
            Scratch(dir)
        }

        /// Where the key file of a user whose configuration is here would be.
        fn key(&self) -> PathBuf {
            self.0.join("multiproc").join("cluster.key")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn refused(path: &Path, why: &str) {
        match key_file_at(path) {
            Err(ClusterError::Key(message)) => assert!(message.contains(why), "{message}"),
            Err(other) => panic!("not refused for \"{why}\": {other}"),
            Ok(_) => panic!("a key file to refuse for \"{why}\" was taken"),
        }
    }

    #[test]
    fn the_key_file_is_made_once_for_its_owner_alone_and_read_again() {
        let scratch = Scratch::new();
        let path = scratch.key();
        let key = key_file_at(&path).unwrap();
        assert_eq!(key.len(), 64, "32 random bytes in hex");
        assert!(key.iter().all(u8::is_ascii_hexdigit));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // The file ends with a new line, left out of the key.
        assert_eq!(std::fs::read(&path).unwrap().last(), Some(&b'\n'));
        assert_eq!(key_file_at(&path).unwrap(), key, "read again, not made again");
        // No temporary file is left beside it.
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn programs_making_the_key_file_together_all_read_the_one_that_won() {
        let scratch = Scratch::new();
        let path = scratch.key();
        let keys: Vec<Vec<u8>> = std::thread::scope(|s| {
            let readers: Vec<_> = (0..8).map(|_| s.spawn(|| key_file_at(&path).unwrap())).collect();
            readers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
        assert_eq!(key_file_at(&path).unwrap(), keys[0]);
    }

    #[test]
    fn a_key_file_others_may_read_or_write_is_refused() {
        let scratch = Scratch::new();
        let path = scratch.key();
        key_file_at(&path).unwrap();
        for loose in [0o640, 0o604, 0o620, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).unwrap();
            refused(&path, "other users");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        key_file_at(&path).unwrap();
        let dir = path.parent().unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        refused(&path, "others may write");
    }

    /// review67 S-L1: a key file of another user (root running with a user's `HOME`) is
    /// that user's key, which root must not take. Testable only as root (who can give a
    /// file away); as another user, nothing is checked.
    #[test]
    fn a_key_file_owned_by_another_user_is_refused() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: giving a file to another user needs root; the owner checks are not tested");
            return;
        }
        let scratch = Scratch::new();
        let path = scratch.key();
        key_file_at(&path).unwrap();
        let nobody = Some(rustix::process::Uid::from_raw(65534));
        rustix::fs::chown(&path, nobody, None).unwrap();
        refused(&path, "owned by another user");
        rustix::fs::chown(&path, Some(rustix::process::geteuid()), None).unwrap();
        rustix::fs::chown(path.parent().unwrap(), nobody, None).unwrap();
        refused(&path, "owned by another user");
    }

    /// review75 L6: root running with a user's `HOME` whose `multiproc` directory (or
    /// `.config`) does not exist yet makes nothing there (it made both, root's, which then
    /// refused the user's own programs, and the user could not remove them). Testable only
    /// as root; as another user, nothing is checked.
    #[test]
    fn a_key_file_is_not_made_in_another_users_directory() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: giving a directory to another user needs root; nothing is tested");
            return;
        }
        let scratch = Scratch::new();
        rustix::fs::chown(&scratch.0, Some(rustix::process::Uid::from_raw(65534)), None).unwrap();
        refused(&scratch.key(), "belongs to another user");
        let deeper = scratch.0.join(".config").join("multiproc").join("cluster.key");
        refused(&deeper, "belongs to another user");
        // Sticky, it is still another user's (only root's is taken so: review80 L1).
        std::fs::set_permissions(&scratch.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
        refused(&scratch.key(), "belongs to another user");
        let made: Vec<_> = std::fs::read_dir(&scratch.0).unwrap().collect();
        assert!(made.is_empty(), "made in another user's directory: {made:?}");
    }

    #[test]
    fn a_key_file_that_is_a_symbolic_link_or_no_file_is_refused() {
        let scratch = Scratch::new();
        let real = scratch.0.join("real").join("cluster.key");
        key_file_at(&real).unwrap();
        let path = scratch.key();
        std::fs::DirBuilder::new().mode(0o700).create(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&real, &path).unwrap();
        refused(&path, "symbolic link");
        std::fs::remove_file(&path).unwrap();
        std::fs::DirBuilder::new().mode(0o700).create(&path).unwrap();
        refused(&path, "not a regular file");
    }

    #[test]
    fn the_configuration_directory_is_taken_only_when_absolute() {
        let config = |xdg: Option<&str>, home: Option<&str>| config_dir(xdg.map(Into::into), home.map(Into::into));
        assert_eq!(config(Some("/x"), Some("/h")), Some(PathBuf::from("/x")));
        assert_eq!(config(Some("x"), Some("/h")), Some(PathBuf::from("/h/.config")));
        assert_eq!(config(None, Some("/h")), Some(PathBuf::from("/h/.config")));
        assert_eq!(config(None, Some("h")), None);
        assert_eq!(config(None, None), None);
    }
}
