//! Handles left in a message whose decoding stopped part-way.
//!
//! A decoding that fails (a `Deserialize` that refuses after its first field, a holder
//! that cannot be recorded in a full heap) never reaches the handles after the point of
//! failure: each stays counted in flight, and its object's other holders never learn they
//! are alone. The structure of the rest of the message is unknown then (the type's
//! `Deserialize` is what knows it), so the message's bytes are searched for handles
//! instead: a handle's fields begin with the family's id, and only a genuine handle of a
//! live object carries its keyed seal, so nothing else can be taken for one. A side's
//! handle (a pipe's end) is one such wire too, its side marked in it: its side's count is
//! given back with its object's (`discard_foreign`).

use super::Heap;
use super::object::{Wire, discard_foreign};
use super::receipts::Receipt;
use crate::codec::HandleRead;

/// The first byte of a postcard message, and of a MessagePack one (see `codec`).
const POSTCARD: u8 = 0;
const MESSAGEPACK: u8 = 1;

/// A handle's fields in MessagePack, with their names: a map of seven entries, the first
/// one named `family`.
const MESSAGEPACK_WIRE: &[u8] = b"\x87\xa6family";

/// Gives back the in-flight count of every handle in `message` (a whole message, tag byte
/// first) that its failed decoding did not read (`read`, as the same handle may travel
/// more than once in one message): the message is taken and gone, and its handles with
/// it. Like a handle decoded as another type (`discard_foreign`), a handle that is its
/// object's last reference stays counted: this process does not know the object's type,
/// which its destruction needs.
///
/// Run after the message was taken: a consumer killed before then leaves the message, and
/// its counts, to the next consumer.
pub(crate) fn give_back_unread(message: &[u8], read: &[HandleRead]) {
    let Some(heap) = Heap::try_get() else { return };
    let Some((&tag, body)) = message.split_first() else { return };
    let mut read = read.to_vec();
    let mut found = |wire: Wire| {
        if wire.family != heap.family_id() {
            return;
        }
        match read.iter().position(|r| *r == wire.read_mark()) {
            Some(i) => {
                read.swap_remove(i);
            }
            // Inside `codec::receipting` (a pool worker's chunk): left to its carrier, whose
            // undo lets go of what was not taken.
            None => discard_foreign(
                heap,
                &wire,
                crate::codec::receipting_block().map(|block| Receipt { block, key: [wire.offset, wire.generation, 0] }),
            ),
        }
    };
    match tag {
        POSTCARD => {
            let Ok(family) = postcard::to_allocvec(&heap.family_id()) else { return };
            for at in starts_of(body, &family) {
                if let Ok((wire, _)) = postcard::take_from_bytes::<Wire>(&body[at..]) {
                    found(wire);
                }
            }
        }
        MESSAGEPACK => {
            for at in starts_of(body, MESSAGEPACK_WIRE) {
                if let Ok(wire) = rmp_serde::from_slice::<Wire>(&body[at..]) {
                    found(wire);
                }
            }
        }
        _ => {}
    }
}

/// Where `needle` starts in `bytes`.
fn starts_of<'a>(bytes: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    bytes.windows(needle.len()).enumerate().filter(move |(_, w)| *w == needle).map(|(at, _)| at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_start_of_a_needle_is_found() {
        assert_eq!(starts_of(b"abcabcab", b"ab").collect::<Vec<_>>(), [0, 3, 6]);
        assert_eq!(starts_of(b"a", b"ab").count(), 0);
    }
}
