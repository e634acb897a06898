//! Shared state: [`Value`] and [`RawValue`] (one plain value in the family's shared memory),
//! with and without a lock.

mod value;

pub use value::{RawValue, Value, ValueGuard};
