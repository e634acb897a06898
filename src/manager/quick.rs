//! The calls made most often, a dict's get and set of plain items, read and written by
//! hand in the very bytes postcard gives their messages.
//!
//! Each function here does for one shape of message what the general path does through
//! serde (`protocol::encode_plain`, `decode_request_within`, `codec::with_own_encoded`,
//! `codec::decode_own`), in a tenth of the instructions and without allocating: a round
//! trip of `manager_dict` spent about 930 instructions decoding its request on the server,
//! 400 encoding it and 480 decoding its answer on the client (perf102, callgrind). A
//! reader accepts only what the general decoder reads the same (a varint longer than it
//! needs, an item with references, any other request: `None`), and the caller then goes
//! the general way; a writer writes the general encoder's bytes exactly (the tests compare
//! them).

use super::protocol::{ITEM_COST, Item, Kind, ObjectId, Op, Request};
use crate::codec::POSTCARD;

/// `Request::Call`'s variant index.
const CALL: u8 = 1;
/// `Kind::Dict`'s variant index.
const DICT: u8 = 0;
/// `Op::DictSet`'s and `Op::DictGet`'s variant indexes.
const DICT_SET: u8 = 4;
const DICT_GET: u8 = 5;
/// `Result::Ok`'s, `Out::Unit`'s and `Out::MaybeItem`'s variant indexes.
const OK: u8 = 0;
const UNIT: u8 = 0;
const MAYBE_ITEM: u8 = 4;

/// A quick call's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuickOp {
    /// `d[key] = value`.
    DictSet,
    /// `d.get(key)` (`value` is empty).
    DictGet,
}

/// A dict's get or set whose items hold no proxy, as read in place from a request's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QuickCall<'a> {
    pub(crate) seq: u64,
    pub(crate) thread: u64,
    pub(crate) id: ObjectId,
    pub(crate) op: QuickOp,
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
}

impl QuickCall<'_> {
    /// The request as the general decoder gives it.
    pub(crate) fn envelope(&self) -> super::protocol::Envelope {
        let plain = |bytes: &[u8]| Item { bytes: bytes.to_vec(), refs: Vec::new() };
        let op = match self.op {
            QuickOp::DictSet => Op::DictSet(plain(self.key), plain(self.value)),
            QuickOp::DictGet => Op::DictGet(plain(self.key)),
        };
        super::protocol::Envelope {
            seq: self.seq,
            thread: self.thread,
            request: Request::Call { id: self.id, kind: Kind::Dict, op },
        }
    }
}

/// What a quick call answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuickAnswer<'a> {
    /// A set's `Out::Unit`.
    Unit,
    /// A get's `Out::MaybeItem`, of an item without references.
    Maybe(Option<&'a [u8]>),
}

/// Reads `bytes` as a quick call, if it is one that the general decoder reads whole
/// (`protocol::decode_request_within`) within `max` (its budget: an item costs
/// `ITEM_COST`, its bytes and its empty list of references, as it charges them).
pub(crate) fn read_call(bytes: &[u8], max: u64) -> Option<QuickCall<'_>> {
    let mut input = bytes;
    let seq = varint(&mut input)?;
    let thread = varint(&mut input)?;
    let [CALL, ref rest @ ..] = *input else { return None };
    input = rest;
    let id = varint(&mut input)?;
    let [DICT, op, ref rest @ ..] = *input else { return None };
    input = rest;
    let op = match op {
        DICT_SET => QuickOp::DictSet,
        DICT_GET => QuickOp::DictGet,
        _ => return None,
    };
    let key = plain_item(&mut input)?;
    let value = match op {
        QuickOp::DictSet => plain_item(&mut input)?,
        QuickOp::DictGet => &[],
    };
    if !input.is_empty() {
        return None;
    }
    let items = if op == QuickOp::DictSet { 2 } else { 1 };
    let charged = items * (ITEM_COST + 8) + (key.len() + value.len()) as u64;
    (charged <= max).then_some(QuickCall { seq, thread, id, op, key, value })
}

/// Writes `Envelope { seq, thread, request }` as `protocol::encode_plain` does, if the
/// request is a quick call (a dict's get or set of items without references); `false`
/// (and nothing written) if not.
pub(crate) fn write_call(seq: u64, thread: u64, request: &Request, out: &mut Vec<u8>) -> bool {
    let Request::Call { id, kind: Kind::Dict, op } = request else { return false };
    let (tag, key, value) = match op {
        Op::DictSet(key, value) => (DICT_SET, key, Some(value)),
        Op::DictGet(key) => (DICT_GET, key, None),
        _ => return false,
    };
    if !key.refs.is_empty() || value.is_some_and(|v| !v.refs.is_empty()) {
        return false;
    }
    push_varint(out, seq);
    push_varint(out, thread);
    out.push(CALL);
    push_varint(out, *id);
    out.extend_from_slice(&[DICT, tag]);
    for item in std::iter::once(key).chain(value) {
        push_bytes(out, &item.bytes);
        out.push(0);
    }
    true
}

/// Writes a family client's answer `seq` as `codec::with_own_encoded` writes its
/// `LocalReply` (no handle in it).
pub(crate) fn write_answer(seq: u64, answer: QuickAnswer<'_>, out: &mut Vec<u8>) {
    out.push(POSTCARD);
    push_varint(out, seq);
    out.push(OK);
    match answer {
        QuickAnswer::Unit => out.push(UNIT),
        QuickAnswer::Maybe(None) => out.extend_from_slice(&[MAYBE_ITEM, 0]),
        QuickAnswer::Maybe(Some(bytes)) => {
            out.extend_from_slice(&[MAYBE_ITEM, 1]);
            push_bytes(out, bytes);
            out.push(0);
        }
    }
}

/// Reads a family client's answer written as [`write_answer`] writes one, if it is one
/// (its sequence number and what it says); `None` for any other, which
/// `codec::decode_own` reads.
pub(crate) fn read_answer(bytes: &[u8]) -> Option<(u64, QuickAnswer<'_>)> {
    let [POSTCARD, ref rest @ ..] = *bytes else { return None };
    let mut input = rest;
    let seq = varint(&mut input)?;
    let answer = match *input {
        [OK, UNIT] => QuickAnswer::Unit,
        [OK, MAYBE_ITEM, 0] => QuickAnswer::Maybe(None),
        [OK, MAYBE_ITEM, 1, ref rest @ ..] => {
            input = rest;
            let item = plain_item(&mut input)?;
            if !input.is_empty() {
                return None;
            }
            QuickAnswer::Maybe(Some(item))
        }
        _ => return None,
    };
    Some((seq, answer))
}

/// An item's bytes, if its list of references that follows is empty.
fn plain_item<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(varint(input)?).ok()?;
    if len > input.len() {
        return None;
    }
    let (bytes, rest) = input.split_at(len);
    let [0, ref rest @ ..] = *rest else { return None };
    *input = rest;
    Some(bytes)
}

/// A postcard varint of a `u64` at the start of `input` (which moves past it), written in
/// as few bytes as it takes (a longer one is left to the general decoder).
#[inline]
fn varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        if i == 9 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (i == 0 || byte != 0).then_some(value);
        }
    }
    None
}

#[inline]
fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Bytes as `serde_bytes` writes them in postcard: their length, then themselves.
fn push_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    push_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::manager::link::{LocalReply, Token};
    use crate::manager::protocol::{Envelope, Fault, Out, Reply, decode_request_within, encode_plain};

    const MAX: u64 = super::super::protocol::DEFAULT_MAX_REQUEST_MEMORY;

    fn item(bytes: &[u8], refs: &[u64]) -> Item<ObjectId> {
        Item { bytes: bytes.to_vec(), refs: refs.to_vec() }
    }

    /// Numbers around every length of varint.
    fn numbers() -> Vec<u64> {
        let mut n = vec![0, 1, 2, u64::MAX, u64::MAX - 1];
        for bits in (7..64).step_by(7) {
            n.extend([(1u64 << bits) - 1, 1 << bits, (1 << bits) + 1]);
        }
        n
    }

    fn requests() -> Vec<Request> {
        let call = |id, kind, op| Request::Call { id, kind, op };
        let mut out = Vec::new();
        for len in [0usize, 1, 9, 127, 128, 300, 20_000] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            out.push(call(2, Kind::Dict, Op::DictGet(item(&bytes, &[]))));
            out.push(call(3, Kind::Dict, Op::DictSet(item(&bytes, &[]), item(&[7, 8], &[]))));
            out.push(call(u64::MAX, Kind::Dict, Op::DictSet(item(&[1], &[]), item(&bytes, &[]))));
        }
        // Not quick: the general way.
        out.push(call(2, Kind::Dict, Op::DictGet(item(&[1], &[5]))));
        out.push(call(2, Kind::Dict, Op::DictSet(item(&[1], &[]), item(&[2], &[5]))));
        out.push(call(2, Kind::Dict, Op::DictSet(item(&[1], &[5]), item(&[2], &[]))));
        out.push(call(2, Kind::Dict, Op::DictRemove(item(&[1], &[]))));
        out.push(call(2, Kind::Dict, Op::Len));
        out.push(call(2, Kind::List, Op::ListPush(item(&[1], &[]))));
        out.push(call(2, Kind::Namespace, Op::DictGet(item(&[1], &[]))));
        out.push(Request::Ping);
        out.push(Request::Release { id: 4, count: 1 });
        out
    }

    fn quick(request: &Request) -> bool {
        matches!(request, Request::Call { kind: Kind::Dict, op: Op::DictGet(k), .. } if k.refs.is_empty())
            || matches!(request, Request::Call { kind: Kind::Dict, op: Op::DictSet(k, v), .. }
                if k.refs.is_empty() && v.refs.is_empty())
    }

    /// The writer writes postcard's bytes, and the reader reads them back as the general
    /// decoder does, for every quick call; neither takes any other request.
    #[test]
    fn quick_calls_are_written_and_read_as_the_general_codec_does() {
        for request in requests() {
            for &seq in &numbers() {
                let thread = seq.rotate_left(13);
                let envelope = Envelope { seq, thread, request: request.clone() };
                let mut general = Vec::new();
                encode_plain(&envelope, &mut general).unwrap();
                let mut written = Vec::new();
                assert_eq!(write_call(seq, thread, &request, &mut written), quick(&request), "{request:?}");
                if quick(&request) {
                    assert_eq!(written, general, "{request:?}");
                } else {
                    assert!(written.is_empty());
                }
                match read_call(&general, MAX) {
                    Some(call) => {
                        assert!(quick(&request), "{request:?}");
                        assert_eq!(call.envelope(), envelope);
                    }
                    None => assert!(!quick(&request), "{request:?}"),
                }
            }
        }
    }

    /// Whatever the bytes, a call the quick reader reads is the one the general decoder
    /// reads, within the same budget: every prefix of each request up to 400 bytes long,
    /// and each of its bytes set in turn to 9 values that matter to the format. Random
    /// messages of every length, with insertions and deletions too:
    /// [`random_changes_read_the_same`].
    #[test]
    fn the_quick_reader_reads_nothing_the_general_decoder_reads_otherwise() {
        let mut checked = 0;
        let mut check = |bytes: &[u8], max: u64| {
            if let Some(call) = read_call(bytes, max) {
                assert_eq!(decode_request_within(bytes, max), Ok(call.envelope()), "{bytes:?}");
                checked += 1;
            }
        };
        for request in requests() {
            for seq in [0, 1, 300, u64::MAX] {
                let mut bytes = Vec::new();
                encode_plain(&Envelope { seq, thread: 0, request: request.clone() }, &mut bytes).unwrap();
                if bytes.len() > 400 {
                    continue;
                }
                for end in 0..=bytes.len() {
                    check(&bytes[..end], MAX);
                }
                for at in 0..bytes.len() {
                    for b in [0u8, 1, 2, 4, 5, 0x7f, 0x80, 0x81, 0xff] {
                        let mut changed = bytes.clone();
                        changed[at] = b;
                        check(&changed, MAX);
                    }
                }
                let mut longer = bytes.clone();
                longer.push(0);
                check(&longer, MAX);
                // The budget: refused whole by both, or read by both.
                for max in [0, ITEM_COST, 2 * ITEM_COST + 16, 2 * (ITEM_COST + 8) + 3, 400] {
                    check(&bytes, max);
                    if quick(&request) && read_call(&bytes, max).is_none() && !bytes.is_empty() {
                        assert!(
                            matches!(decode_request_within(&bytes, max), Err(Fault::TooLarge { .. })),
                            "{request:?} within {max}"
                        );
                    }
                }
            }
        }
        assert!(checked > 1000, "{checked} quick reads checked");
    }

    /// What [`random_changes_read_the_same`] tries (about 0.1 ms each, in debug).
    const RANDOM_INPUTS: u64 = 3_000;

    /// A small deterministic generator (xorshift), so that a failure replays.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// Up to three random changes: a byte overwritten or a bit flipped, a byte deleted or
    /// inserted, the message cut, a huge length or an overlong varint inserted.
    fn mutate(r: &mut impl FnMut() -> u64, bytes: &mut Vec<u8>) {
        for _ in 0..(r() % 4) {
            let at = (r() % (bytes.len() as u64 + 1)) as usize;
            match r() % 7 {
                0 if at < bytes.len() => bytes[at] = r() as u8,
                1 if at < bytes.len() => bytes[at] ^= 1 << (r() % 8),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                3 => bytes.insert(at, r() as u8),
                4 => bytes.truncate(at),
                5 => {
                    bytes.splice(at..at, [0xff, 0xff, 0xff, 0xff, 0x0f]);
                }
                _ => {
                    bytes.splice(at..at, [0x80, 0x00]);
                }
            }
        }
    }

    /// Random quick calls and answers (numbers at the edges of varint lengths, keys and
    /// values up to 16 KiB), each with up to three random changes ([`mutate`]), read at
    /// a random budget and at none: whatever a quick reader reads, the general decoder
    /// reads the same (review164's scratch test, at a twentieth of its inputs).
    #[test]
    fn random_changes_read_the_same() {
        let mut r = xorshift(0x9e37_79b9_7f4a_7c15);
        let lens = [0usize, 1, 2, 3, 126, 127, 128, 129, 255, 256, 16383, 16384];
        let nums = [0u64, 1, 127, 128, 16383, 16384, (1 << 21) - 1, 1 << 21, u32::MAX as u64, u64::MAX];
        let (mut reads, mut answers) = (0u64, 0u64);
        for _ in 0..RANDOM_INPUTS {
            let mut pick = |xs: &[u64]| xs[(r() % xs.len() as u64) as usize];
            let (seq, thread, id) = (pick(&nums), pick(&nums), pick(&nums));
            let key: Vec<u8> = (0..lens[(r() % 6) as usize]).map(|i| (i as u8) ^ 0x80).collect();
            let value: Vec<u8> = (0..lens[(r() % lens.len() as u64) as usize]).map(|i| i as u8).collect();
            let op = if r().is_multiple_of(2) {
                Op::DictGet(item(&key, &[]))
            } else {
                Op::DictSet(item(&key, &[]), item(&value, &[]))
            };
            let mut bytes = Vec::new();
            encode_plain(&Envelope { seq, thread, request: Request::Call { id, kind: Kind::Dict, op } }, &mut bytes)
                .unwrap();
            mutate(&mut r, &mut bytes);
            for max in [u64::MAX, r() % 40_000] {
                if let Some(call) = read_call(&bytes, max) {
                    assert_eq!(decode_request_within(&bytes, max), Ok(call.envelope()), "{bytes:?}");
                    reads += 1;
                }
            }
            let mut written = Vec::new();
            let answer = match r() % 3 {
                0 => QuickAnswer::Unit,
                1 => QuickAnswer::Maybe(None),
                _ => QuickAnswer::Maybe(Some(&value)),
            };
            write_answer(seq, answer, &mut written);
            mutate(&mut r, &mut written);
            if let Some((seq, answer)) = read_answer(&written) {
                let decoded: LocalReply = crate::codec::decode_own(&written).unwrap();
                assert_eq!(decoded.seq, seq);
                match (answer, decoded.result) {
                    (QuickAnswer::Unit, Ok(Out::Unit)) | (QuickAnswer::Maybe(None), Ok(Out::MaybeItem(None))) => {}
                    (QuickAnswer::Maybe(Some(b)), Ok(Out::MaybeItem(Some(item))))
                        if item.bytes == b && item.refs.is_empty() => {}
                    (answer, other) => panic!("{written:?}: {answer:?} against {other:?}"),
                }
                answers += 1;
            }
        }
        println!("{reads} quick reads, {answers} quick answers checked");
        assert!(
            reads > RANDOM_INPUTS / 3 && answers > RANDOM_INPUTS / 6,
            "{reads} quick reads, {answers} quick answers"
        );
    }

    /// A varint longer than it needs, or past 64 bits, is left to the general decoder.
    #[test]
    fn only_shortest_varints_are_read() {
        assert_eq!(varint(&mut &[0x80, 0x00][..]), None);
        assert_eq!(varint(&mut &[0x81, 0x00][..]), None);
        assert_eq!(varint(&mut &[0x80, 0x01][..]), Some(128));
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(varint(&mut &max[..]), Some(u64::MAX));
        max[9] = 0x02;
        assert_eq!(varint(&mut &max[..]), None);
        assert_eq!(varint(&mut &[0xff; 11][..]), None);
        assert_eq!(varint(&mut &[][..]), None);
    }

    fn own_encoded(reply: &LocalReply) -> Vec<u8> {
        crate::codec::with_own_encoded(reply, |bytes, handles| {
            assert!(!handles);
            (true, bytes.to_vec())
        })
        .unwrap()
    }

    /// The server's quick answers are the bytes of the general encoding, and the client's
    /// quick reader reads them (and only answers of those shapes) as the general one does.
    #[test]
    fn quick_answers_are_written_and_read_as_the_general_codec_does() {
        for &seq in &numbers() {
            for len in [0usize, 1, 9, 127, 128, 300, 20_000] {
                let bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                let answers = [
                    (QuickAnswer::Unit, Out::Unit),
                    (QuickAnswer::Maybe(None), Out::MaybeItem(None)),
                    (
                        QuickAnswer::Maybe(Some(&bytes)),
                        Out::MaybeItem(Some(Item { bytes: bytes.clone(), refs: Vec::new() })),
                    ),
                ];
                for (answer, out) in answers {
                    let general = own_encoded(&Reply { seq, result: Ok(out) });
                    let mut written = Vec::new();
                    write_answer(seq, answer, &mut written);
                    assert_eq!(written, general, "{answer:?}");
                    assert_eq!(read_answer(&general), Some((seq, answer)));
                    let decoded: LocalReply = crate::codec::decode_own(&written).unwrap();
                    assert_eq!(decoded.seq, seq);
                }
            }
            let others: [Result<Out<Token>, Fault>; 4] = [
                Ok(Out::Bool(true)),
                Ok(Out::Count(3)),
                Ok(Out::Item(Item { bytes: vec![1], refs: Vec::new() })),
                Err(Fault::ShuttingDown),
            ];
            for result in others {
                assert_eq!(read_answer(&own_encoded(&Reply { seq, result })), None);
            }
        }
    }

    /// Whatever the bytes, an answer the quick reader reads is the one `decode_own` reads.
    #[test]
    fn the_quick_answer_reader_reads_nothing_the_general_decoder_reads_otherwise() {
        let mut checked = 0;
        for seq in [0, 1, 300, u64::MAX] {
            for answer in [QuickAnswer::Unit, QuickAnswer::Maybe(None), QuickAnswer::Maybe(Some(&[1, 2, 0x80]))] {
                let mut bytes = Vec::new();
                write_answer(seq, answer, &mut bytes);
                let mut variants: Vec<Vec<u8>> = (0..=bytes.len()).map(|end| bytes[..end].to_vec()).collect();
                for at in 0..bytes.len() {
                    for b in [0u8, 1, 2, 3, 4, 5, 0x7f, 0x80, 0xff] {
                        let mut changed = bytes.clone();
                        changed[at] = b;
                        variants.push(changed);
                    }
                }
                for variant in variants {
                    if let Some((seq, answer)) = read_answer(&variant) {
                        let decoded: LocalReply = crate::codec::decode_own(&variant).unwrap();
                        assert_eq!(decoded.seq, seq);
                        match (answer, decoded.result) {
                            (QuickAnswer::Unit, Ok(Out::Unit))
                            | (QuickAnswer::Maybe(None), Ok(Out::MaybeItem(None))) => {}
                            (QuickAnswer::Maybe(Some(b)), Ok(Out::MaybeItem(Some(item))))
                                if item.bytes == b && item.refs.is_empty() => {}
                            (answer, other) => panic!("{variant:?}: {answer:?} against {other:?}"),
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 20, "{checked}");
    }
}
