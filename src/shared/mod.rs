//! Shared state: [`Value`] and [`Array`] (plain data in the family's shared memory, with
//! a lock), [`RawValue`] and [`RawArray`] (without), and the named [`SharedMemory`] and
//! [`ShareableList`] that processes outside the family can open too; [`SharedBytes`], immutable
//! bytes whose handle crosses processes instead of their contents.

mod array;
mod bytes;
mod shareable_list;
mod shared_memory;
mod user_lock;
mod value;

pub use array::{Array, ArrayGuard, RawArray};
pub use bytes::SharedBytes;
pub use shareable_list::{Item, ShareableList, ShareableListError};
pub(crate) use shared_memory::fresh_name;
pub use shared_memory::{SharedMemory, SharedMemoryBuilder, SharedMemoryError};
pub use user_lock::SharedLock;
pub use value::{RawValue, Value, ValueGuard};
