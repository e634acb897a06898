//! The family: `init()`, this process's place in the tree, and the children it started.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, mpsc};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::child::ChildState;
use super::{StartMethod, forkserver};
use crate::error::{Error, InitError};
use crate::shm::{Deadline, Heap};
use crate::sys;

/// What every process of a family shares: how to reach the fork server, and the secrets
/// that prove membership.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FamilyConfig {
    /// The fork server's abstract socket name, if one runs.
    pub(crate) forkserver: Option<String>,
    /// Proves membership to the fork server.
    pub(crate) token: [u8; 16],
    /// The default key of managers and listeners (Python's `current_process().authkey`).
    pub(crate) authkey: [u8; 32],
    /// The start method children use unless told otherwise.
    pub(crate) default_method: StartMethod,
    /// The cluster key `init()` took out of the environment
    /// ([`crate::cluster::KEY_ENV`]), so that no descendant program inherits it.
    #[cfg(feature = "cluster")]
    pub(crate) cluster_key: Option<crate::cluster::key::Secret>,
}

/// Who this process is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Me {
    pub(crate) name: String,
    /// The path of child indices from the main process (`[]` for it, `[1, 2]` for the
    /// second child of its first child).
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    /// A daemon that may start children anyway (pool workers: their children die with
    /// them, so Python's reason to forbid it does not hold here).
    pub(crate) may_have_children: bool,
}

impl Me {
    fn main() -> Self {
        Me { name: "MainProcess".into(), identity: Vec::new(), daemon: false, may_have_children: true }
    }
}

/// Who started this process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ParentInfo {
    pub(crate) name: String,
    pub(crate) pid: u32,
    pub(crate) start: u64,
}

/// Per-process state: reset in every new process.
#[derive(Debug)]
pub(crate) struct ProcState {
    pub(crate) me: Option<Me>,
    pub(crate) parent: Option<ParentInfo>,
    next_index: u32,
    /// The children this process started, with the pid of the process that started them
    /// ([`own_children`]).
    children: (u32, Vec<Arc<ChildState>>),
    /// This process's connection to the fork server, with the pid of the process that made
    /// it (taken out while a request uses it: `forkserver::request` waits for the answer
    /// without this state's lock). Only its maker uses it: a bare `libc::fork` copy of this
    /// process has a copy of it (the same socket), which it closes, never shuts down, and
    /// makes its own (review35 M1).
    pub(crate) forkserver_conn: Option<(u32, OwnedFd)>,
    launcher: Option<mpsc::Sender<Job>>,
    /// A `Fork` child's report room, whose go word its end waits for
    /// (`ChildRoom::wait_to_end`), at an `exit` of its target too (`exit_hook`). Here, not
    /// in a static of its own: the child writes this state anyway, and a page more written
    /// is a page fault more for every fork child.
    pub(crate) ends_after_look: Option<crate::shm::ChildRoom>,
}

type Job = Box<dyn FnOnce() + Send>;

static FAMILY: OnceLock<FamilyConfig> = OnceLock::new();
static STATE: Mutex<ProcState> = Mutex::new(ProcState {
    me: None,
    parent: None,
    next_index: 0,
    children: (0, Vec::new()),
    forkserver_conn: None,
    launcher: None,
    ends_after_look: None,
});
static INITIALIZED: AtomicBool = AtomicBool::new(false);
/// The start method chosen with `set_start_method` (0: none, the family default).
static METHOD: AtomicU8 = AtomicU8::new(0);

pub(crate) fn state() -> MutexGuard<'static, ProcState> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The family configuration, once this process belongs to a family.
pub(crate) fn config() -> Result<&'static FamilyConfig, Error> {
    if !INITIALIZED.load(Ordering::Acquire) {
        return Err(Error::NotInitialized);
    }
    FAMILY.get().ok_or(Error::NotInitialized)
}

/// Whether `init()` ran here (or this is a child of a family).
pub(crate) fn initialized() -> bool {
    INITIALIZED.load(Ordering::Acquire)
}

/// Registers every fork handler of the crate, single-threaded: at `init`, before the fork
/// server (whose forks inherit them), and at a spawned child's boot, before its target
/// (review105 M1: left to its first pin claim, they were registered from any thread of its
/// target, and a fork made meanwhile by another thread could copy the flag without them).
pub(crate) fn prepare_for_forks() {
    super::panics::prepare_for_forks();
    crate::codec::prepare_for_forks();
    sys::prepare_for_forks();
    crate::shm::prepare_for_forks();
}

/// Sets up the family in the main process (see [`crate::init`]).
pub(crate) fn init() -> Result<(), InitError> {
    super::boot::dispatch_if_child();
    if INITIALIZED.load(Ordering::Acquire) || super::boot::dispatching() || super::boot::waiting_for_main() {
        return Ok(());
    }
    let threads = sys::thread_count();
    if threads > 1 {
        return Err(InitError::Late { threads });
    }
    // The cluster's variables, before any child (the tracker included) is started.
    #[cfg(feature = "cluster")]
    let node = crate::cluster::take_environment();
    Heap::get();
    // Before the fork server is forked, so that every fork inherits it.
    prepare_for_forks();
    // While no child can share our processor; every fork inherits what it learns.
    crate::shm::learn_yield_cost();
    // Before the fork server, so that every process of the family inherits its pipe.
    if let Err(e) = super::tracker::start() {
        eprintln!("multiproc: the resource tracker did not start ({e}); named shared memory cannot be tracked");
    }
    // A fork-server child is sent its parent's environment only where it differs from these.
    super::boot::remember_server_surroundings();
    let config = FamilyConfig {
        forkserver: None,
        token: sys::random_bytes::<16>(),
        authkey: sys::random_bytes::<32>(),
        default_method: StartMethod::platform_default(),
        #[cfg(feature = "cluster")]
        cluster_key: crate::cluster::key::taken_key(),
    };
    let config = forkserver::start(config).map_err(|e| InitError::Setup(format!("fork server: {e}")))?;
    // Still single-threaded, so no fork is under way (one would run none of them), and
    // after the fork server's fork (it never makes an `Unforked`): a restart of the server
    // keeps its listener from every fork child.
    sys::Unforked::register_fork_handlers();
    let _ = FAMILY.set(config);
    {
        let mut st = state();
        st.me = Some(Me::main());
    }
    finish_at_exit();
    INITIALIZED.store(true, Ordering::Release);
    #[cfg(feature = "cluster")]
    if let Some(url) = node {
        let Err(e) = crate::cluster::serve(&url, crate::cluster::ServeOptions::new());
        // Without its password: a supervisor that restarts the node keeps each line
        // (review80 M3).
        let url = crate::cluster::redacted(&url);
        eprintln!("multiproc: the worker node of {url} ended: {e}");
        std::process::exit(1);
    }
    Ok(())
}

/// Has this process end by Python's rules ([`finish_children`]) when it calls `exit`
/// (`std::process::exit`, as a Python target's `sys.exit`), not only at the end of its
/// `main` or target: registered by `init()` in the main process, by the fork server for
/// every child it forks (which inherit it, as a fork child inherits its parent's), and
/// at boot in a spawned child. A child's own end (`exit_now`) runs no `atexit` handler.
/// Before (audp61), a fork-server or spawned child whose target called `exit` left its
/// non-daemonic children to be killed by their parent-death signal, unjoined.
pub(crate) fn finish_at_exit() {
    sys::at_exit(exit_hook);
}

extern "C" fn exit_hook() {
    // Runs after `main` returns, or when any family process calls `exit`.
    let _ = std::panic::catch_unwind(finish_children);
    // A tracker killed with its keeper is replaced from what they left, before the backlog
    // is written for it.
    let _ = std::panic::catch_unwind(super::tracker::replace_if_gone);
    // The forgettings the tracker did not take yet get their last chance, as a child's do
    // at its end (review67 T-M1: an `untrack` while the tracker was stopped, then `main`
    // returning, had the segment unlinked with the family). Bounded: one try while the
    // stall is under `tracker::WAIT` old, else at most `WAIT` (5 s).
    let _ = std::panic::catch_unwind(super::tracker::write_backlog);
    // A `Fork` child whose target calls `exit` ends only once its parent looked at it, as
    // at its own end (`boot::end`).
    let room = state().ends_after_look.filter(|room| room.is_mine());
    if let Some(room) = room {
        room.wait_to_end();
    }
}

/// Gives the family's fork server (forked by `init()`, or spawned by a restart) the
/// family's configuration, which every child it forks finds in its copy: a fork-server
/// child's boot message carries none ([`adopt`]). A pool's zygote, a fork of a member, has
/// it already. The server is not [`initialized`]: it starts nothing of its own.
pub(crate) fn hand_down(config: FamilyConfig) {
    // Unset in a new server: the main process sets its own once the server is forked.
    let _ = FAMILY.set(config);
}

/// A child takes its place in the family (called at boot). `config` is sent to a spawned
/// child only: a fork child has it already in its copy of its parent's memory, and a
/// fork-server child in its copy of its server's ([`hand_down`]). Decoding it and setting
/// it cost each fork-server child 3 page faults (start44).
pub(crate) fn adopt(config: Option<FamilyConfig>, me: Me, parent: ParentInfo) {
    if let Some(config) = config {
        let _ = FAMILY.set(config);
    }
    let mut st = state();
    // Set by `fork::start` in this process (a `Fork` child's), kept.
    let ends_after_look = st.ends_after_look.take();
    let before = std::mem::replace(
        &mut *st,
        ProcState {
            me: Some(me),
            parent: Some(parent),
            next_index: 0,
            children: (0, Vec::new()),
            forkserver_conn: None,
            launcher: None,
            ends_after_look,
        },
    );
    // The state this process started with is its parent's copy (or empty): forgotten, not
    // dropped, as in `forget_parent_state` (freeing its strings would run the allocator
    // and write, in a fork child copy, pages of the heap).
    std::mem::forget(before);
    INITIALIZED.store(true, Ordering::Release);
}

/// Resets per-process state in a freshly forked child, whose copy of `st` still
/// describes the parent. The caller holds the lock from before the fork.
///
/// The parent's entries are forgotten, not dropped: dropping would write to (and so copy)
/// every page they touch and close descriptors one by one, for a process that usually
/// exits soon. The descriptors stay open, as every descriptor does across a fork.
pub(crate) fn forget_parent_state(st: &mut ProcState) {
    std::mem::forget(std::mem::take(&mut st.children.1));
    std::mem::forget(st.forkserver_conn.take());
    std::mem::forget(st.launcher.take());
    st.ends_after_look = None;
}

/// This process's description (the main process if nothing says otherwise).
pub(crate) fn me() -> Me {
    state().me.clone().unwrap_or_else(Me::main)
}

/// Reserves the next child index and names the child.
pub(crate) fn next_child(name: Option<String>) -> (Me, ParentInfo) {
    let mut st = state();
    st.next_index += 1;
    let index = st.next_index;
    let me = st.me.clone().unwrap_or_else(Me::main);
    let mut identity = me.identity.clone();
    identity.push(index);
    let name = name.unwrap_or_else(|| {
        let path: Vec<String> = identity.iter().map(u32::to_string).collect();
        format!("Process-{}", path.join(":"))
    });
    let pid = sys::me();
    (
        Me { name, identity, daemon: false, may_have_children: true },
        ParentInfo { name: me.name, pid: pid.pid, start: pid.start },
    )
}

/// The children this process started. A copy of the list made by a fork that did not
/// forget it (a program's bare `libc::fork`, which runs none of our fork code but the
/// handlers) names its parent's children: it is forgotten here, as in
/// [`forget_parent_state`], and the copy starts a list of its own. Acting on the copy
/// signalled the parent's daemons and waited for ever for children not its own, at the
/// copy's exit (review50 H1). Its maker asked of the kernel, as for the fork server's
/// connection: a bare fork leaves the cached pid stale.
fn own_children(st: &mut ProcState) -> &mut Vec<Arc<ChildState>> {
    let me = sys::pid_now();
    let (maker, children) = &mut st.children;
    if *maker != me {
        std::mem::forget(std::mem::take(children));
        *maker = me;
    }
    children
}

/// Records a started child.
pub(crate) fn register(child: Arc<ChildState>) {
    own_children(&mut state()).push(child);
}

/// Reaps children that ended and forgets them; returns the live ones. Also redoes the
/// holds reaps this process gave up on a stopped process (`shm::reap_owed`): a start and
/// `active_children` come here, and may find no child ended (review145 M1).
pub(crate) fn active_children() -> Vec<Arc<ChildState>> {
    let live = {
        let mut st = state();
        let children = own_children(&mut st);
        children.retain(|c| c.is_alive());
        children.clone()
    };
    crate::shm::reap_owed();
    live
}

/// Python's exit rules: daemonic children are terminated, then every child is joined.
/// A daemonic child that ignores `SIGTERM` is killed after a grace period.
pub(crate) fn finish_children() {
    let children = std::mem::take(own_children(&mut state()));
    for child in children.iter().filter(|c| c.daemon) {
        let _ = child.signal(sys::SIGTERM);
    }
    for child in &children {
        // Our own children (`own_children`): every wait is `Ok`.
        if child.daemon && matches!(child.wait(Deadline::after(Duration::from_secs(3))), Ok(None)) {
            let _ = child.signal(sys::SIGKILL);
        }
        let _ = child.wait(Deadline::NEVER);
    }
}

/// The start method for a new child.
pub(crate) fn start_method() -> Result<StartMethod, Error> {
    match METHOD.load(Ordering::Relaxed) {
        0 => Ok(config()?.default_method),
        n => Ok(StartMethod::from_u8(n)),
    }
}

/// The start method set for this process, if any.
pub(crate) fn chosen_method() -> Option<StartMethod> {
    match METHOD.load(Ordering::Relaxed) {
        0 => None,
        n => Some(StartMethod::from_u8(n)),
    }
}

/// Sets the process-wide start method.
pub(crate) fn set_method(method: StartMethod, force: bool) -> Result<(), Error> {
    let new = method as u8;
    match METHOD.compare_exchange(0, new, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => Ok(()),
        Err(old) if old == new || force => {
            METHOD.store(new, Ordering::Relaxed);
            Ok(())
        }
        Err(old) => Err(Error::StartMethodAlreadySet(StartMethod::from_u8(old))),
    }
}

/// Runs `f` on a thread that lives as long as the process: the main thread if we are on
/// it, else a dedicated launcher thread. The kernel's parent-death signal fires when the
/// *thread* that created a child ends, so children must not be created by short-lived
/// threads.
///
/// On the main thread it only calls `f`, and takes no stack of its own: a fork start runs
/// in it, and every page of stack a fork parent writes between two forks is a page fault
/// (a copy in the child, whose boot runs deeper still). The launcher's way, with its
/// channels, is a function of its own.
#[inline]
pub(crate) fn on_lasting_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    if sys::on_main_thread() {
        return f();
    }
    on_launcher_thread(f)
}

/// [`on_lasting_thread`] off the main thread: runs `f` on the launcher thread.
#[inline(never)]
#[cold]
fn on_launcher_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::sync_channel(1);
    // What `f` forks has the mask of the thread that forks it: the caller's, as a fork of
    // its own would have, not that of whichever thread first made the launcher, which
    // every later Fork child inherited (audp61).
    let mask = sys::signal_mask();
    let job: Job = Box::new(move || {
        let own = sys::set_signal_mask(mask);
        let _ = tx.send(f());
        sys::set_signal_mask(own);
    });
    let sender = {
        let mut st = state();
        st.launcher
            .get_or_insert_with(|| {
                let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
                sys::spawn_own("multiproc-launcher", move || {
                    for job in jobs_rx {
                        job();
                    }
                })
                .expect("cannot start the launcher thread");
                jobs_tx
            })
            .clone()
    };
    sender.send(job).expect("the launcher thread is gone");
    rx.recv().expect("the launcher thread dropped a job")
}
