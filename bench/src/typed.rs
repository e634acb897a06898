//! The typed 1 KiB messages of `pipe_pingpong` and `message_cost`, shared with the
//! `message_probe` example (which includes this file), so that both measure one type.

use serde::{Deserialize, Serialize};

/// A typed message of about 1 KiB: a 1 KiB text and a few integers, what a program sends
/// as a record (the `send.typed1k` variant; `send_bytes.bytes1k` is the same size raw).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Typed1k {
    pub id: u64,
    pub seq: u32,
    pub flags: u16,
    pub text: String,
}

/// [`Typed1k`] with its kilobyte as bytes rather than text (`message_cost`'s
/// `typed1k.vec_u8`): the codec's own cost, without UTF-8 validation.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Typed1kBytes {
    pub id: u64,
    pub seq: u32,
    pub flags: u16,
    pub data: Vec<u8>,
}
