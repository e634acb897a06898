//! `SharedMemoryManager`: named shared memory blocks whose names a manager keeps, all
//! unlinked at its shutdown.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::ManagerError;
use super::set::SetProxy;
use super::{Manager, ManagerBuilder};
use crate::error::Error;
use crate::shared::{Item, ShareableList, ShareableListError, SharedMemory, SharedMemoryError, fresh_name};
use crate::shm::TakenIn;

/// How often a fresh name is drawn again when a segment of that name exists already.
const NAME_ATTEMPTS: usize = 16;

/// A manager of named shared memory blocks (Python's
/// `multiprocessing.managers.SharedMemoryManager`): [`SharedMemory`] and
/// [`ShareableList`] blocks made through it are all unlinked by
/// [`shutdown`](SharedMemoryManager::shutdown) (or when it is dropped), whichever process
/// of the family made them, even one killed since. Only the process that started it
/// unlinks them: a `Fork` child's copy (kept in a static) unlinks nothing, dropped or shut
/// down.
///
/// The manager's server keeps the names (a set of `String`): a block's name is recorded
/// there *before* the block is created, so a process killed between the two leaves
/// nothing behind that shutdown does not find. Children make blocks through a
/// [`SharedMemoryBlocks`] handle ([`blocks`](SharedMemoryManager::blocks)), which travels
/// to them like any proxy. Unlike Python's, the blocks are created by the calling process
/// (there is no reason to ask the server for a `shm_open`); what matters, who unlinks
/// them, is the same.
///
/// # Examples
///
/// ```no_run
/// use multiproc::{Process, SharedMemoryBlocks, SharedMemoryManager};
///
/// fn child(blocks: SharedMemoryBlocks) -> String {
///     let shm = blocks.shared_memory(64).unwrap();
///     shm.write_at(0, b"made by the child");
///     shm.name().to_string()
/// }
///
/// multiproc::init();
/// let smm = SharedMemoryManager::start()?;
/// let list = smm.shareable_list(["a", "b"])?;
/// let name = Process::new(child, smm.blocks()).start()?.join()?;
/// assert_eq!(smm.names()?.len(), 2);
/// smm.shutdown()?; // both blocks are unlinked
/// assert!(multiproc::SharedMemory::open(&name).is_err());
/// # drop(list);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct SharedMemoryManager {
    manager: Manager,
    blocks: SharedMemoryBlocks,
    /// The process that started it: a copy that fork made in a child (kept in a static)
    /// unlinks nothing when dropped, as the copy of its `Manager` stops nothing.
    started_in: TakenIn,
}

impl fmt::Debug for SharedMemoryManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemoryManager").field("manager", &self.manager).finish()
    }
}

/// Makes blocks that a [`SharedMemoryManager`] unlinks at its shutdown; a handle to pass
/// to other processes of the family (from [`SharedMemoryManager::blocks`]).
///
/// # Examples
///
/// ```no_run
/// multiproc::init();
/// let smm = multiproc::SharedMemoryManager::start()?;
/// let blocks = smm.blocks();
/// let shm = blocks.shared_memory(16)?;
/// assert_eq!(blocks.names()?, [shm.name().to_string()]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct SharedMemoryBlocks {
    names: SetProxy<String>,
}

impl fmt::Debug for SharedMemoryBlocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemoryBlocks").finish_non_exhaustive()
    }
}

impl SharedMemoryBlocks {
    /// Records a fresh name, then runs `create` with it; the name is forgotten again if
    /// nothing was created.
    fn create<T, E>(&self, create: impl Fn(&str) -> Result<T, E>, exists: impl Fn(&E) -> bool) -> Result<T, Error>
    where
        Error: From<E>,
    {
        let mut attempt = 0;
        loop {
            let name = fresh_name();
            self.names.add(name.clone())?;
            match create(&name) {
                Ok(made) => return Ok(made),
                Err(e) => {
                    self.names.discard(&name)?;
                    attempt += 1;
                    if !exists(&e) || attempt >= NAME_ATTEMPTS {
                        return Err(e.into());
                    }
                }
            }
        }
    }

    /// A new zero-filled [`SharedMemory`] block of `size` bytes (Python's
    /// `smm.SharedMemory(size)`).
    ///
    /// # Errors
    ///
    /// [`Error::Manager`] when the manager is gone, [`Error::SharedMemory`] when the
    /// block cannot be created (`size` 0, `/dev/shm` full).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let smm = multiproc::SharedMemoryManager::start()?;
    /// assert_eq!(smm.blocks().shared_memory(8)?.size(), 8);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn shared_memory(&self, size: usize) -> Result<SharedMemory, Error> {
        self.create(
            |name| SharedMemory::builder().fresh(name.to_owned()).size(size).create(),
            |e| matches!(e, SharedMemoryError::AlreadyExists(_)),
        )
    }

    /// A new [`ShareableList`] holding `items` (Python's `smm.ShareableList(sequence)`).
    ///
    /// # Errors
    ///
    /// As [`SharedMemoryBlocks::shared_memory`]; [`Error::ShareableList`] when the list
    /// cannot be made.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let smm = multiproc::SharedMemoryManager::start()?;
    /// assert_eq!(smm.blocks().shareable_list([1i64, 2])?.len(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn shareable_list<I: Into<Item> + Clone>(
        &self,
        items: impl IntoIterator<Item = I>,
    ) -> Result<ShareableList, Error> {
        let items: Vec<I> = items.into_iter().collect();
        self.create(
            |name| ShareableList::create_with(SharedMemory::builder().fresh(name.to_owned()), items.iter().cloned()),
            |e| matches!(e, ShareableListError::SharedMemory(SharedMemoryError::AlreadyExists(_))),
        )
    }

    /// The names of the blocks made so far and not yet unlinked by the manager.
    ///
    /// # Errors
    ///
    /// [`ManagerError::ServerGone`] when the manager is gone.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let smm = multiproc::SharedMemoryManager::start()?;
    /// assert!(smm.blocks().names()?.is_empty());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn names(&self) -> Result<Vec<String>, ManagerError> {
        self.names.to_vec()
    }

    /// Unlinks every recorded block; the names that are gone already are skipped. By name
    /// (said in `shutdown`'s docs; review160 L4): the name is recorded before the block is
    /// made, when there is no file to record.
    fn unlink_all(&self) -> Result<(), ManagerError> {
        while let Some(name) = self.names.pop()? {
            if let Ok(shm) = SharedMemory::open(&name) {
                let _ = shm.unlink();
            }
        }
        Ok(())
    }
}

impl SharedMemoryManager {
    /// Starts the manager's server (Python's `SharedMemoryManager(); smm.start()`).
    ///
    /// # Errors
    ///
    /// As [`Manager::start`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let smm = multiproc::SharedMemoryManager::start()?;
    /// smm.shutdown()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn start() -> Result<Self, ManagerError> {
        Self::start_with(Manager::builder())
    }

    /// Starts the manager's server with the options of `builder` (its start method, ...).
    ///
    /// # Errors
    ///
    /// As [`ManagerBuilder::start`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::{Manager, SharedMemoryManager, StartMethod};
    /// multiproc::init();
    /// let smm = SharedMemoryManager::start_with(Manager::builder().start_method(StartMethod::Spawn))?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn start_with(builder: ManagerBuilder) -> Result<Self, ManagerError> {
        let manager = builder.start()?;
        let names = manager.set::<String>()?;
        Ok(Self { manager, blocks: SharedMemoryBlocks { names }, started_in: TakenIn::here() })
    }

    /// A handle that makes blocks this manager unlinks, for other processes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let smm = multiproc::SharedMemoryManager::start()?;
    /// let for_a_child = smm.blocks();
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn blocks(&self) -> SharedMemoryBlocks {
        self.blocks.clone()
    }

    /// A new [`SharedMemory`] block (Python's `smm.SharedMemory(size)`); see
    /// [`SharedMemoryBlocks::shared_memory`].
    ///
    /// # Errors
    ///
    /// As [`SharedMemoryBlocks::shared_memory`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let smm = multiproc::SharedMemoryManager::start()?;
    /// let shm = smm.shared_memory(128)?;
    /// shm.write_at(0, b"hi");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn shared_memory(&self, size: usize) -> Result<SharedMemory, Error> {
        self.blocks.shared_memory(size)
    }

    /// A new [`ShareableList`] (Python's `smm.ShareableList(sequence)`); see
    /// [`SharedMemoryBlocks::shareable_list`].
    ///
    /// # Errors
    ///
    /// As [`SharedMemoryBlocks::shareable_list`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let smm = multiproc::SharedMemoryManager::start()?;
    /// let list = smm.shareable_list(["x", "y"])?;
    /// assert_eq!(list.len(), 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn shareable_list<I: Into<Item> + Clone>(
        &self,
        items: impl IntoIterator<Item = I>,
    ) -> Result<ShareableList, Error> {
        self.blocks.shareable_list(items)
    }

    /// The names of the blocks made through this manager and not yet unlinked.
    ///
    /// # Errors
    ///
    /// As [`SharedMemoryBlocks::names`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let smm = multiproc::SharedMemoryManager::start()?;
    /// let shm = smm.shared_memory(8)?;
    /// assert_eq!(smm.names()?, [shm.name().to_string()]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn names(&self) -> Result<Vec<String>, ManagerError> {
        self.blocks.names()
    }

    /// Unlinks every block made through this manager, then stops its server (Python's
    /// `smm.shutdown()`). Handles still open keep their mapping; the names are gone.
    ///
    /// It goes by name, as Python's does: a block already unlinked (say by
    /// [`SharedMemory::unlink`]) whose `mp-…` name another program then made again has
    /// that program's file unlinked here. The names are recorded before their blocks are
    /// made, so that nothing a process killed meanwhile made is missed; no file is known
    /// then.
    ///
    /// # Errors
    ///
    /// As [`Manager::shutdown`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// multiproc::init();
    /// let smm = multiproc::SharedMemoryManager::start()?;
    /// let name = smm.shared_memory(8)?.name().to_string();
    /// smm.shutdown()?;
    /// assert!(multiproc::SharedMemory::open(&name).is_err());
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    pub fn shutdown(self) -> Result<(), ManagerError> {
        // A fork child's copy lets go only, as its manager's shutdown does there.
        if self.started_in.is_here() {
            self.blocks.unlink_all()?;
        }
        self.manager.shutdown()
    }
}

impl Drop for SharedMemoryManager {
    fn drop(&mut self) {
        // After `shutdown` the set is empty, or the server gone: nothing to do.
        if self.started_in.is_here() {
            let _ = self.blocks.unlink_all();
        }
    }
}
