//! Messages: serde values encoded with postcard, and the handles they may carry.
//!
//! A multiproc object inside a message (a queue sent through a pipe, a lock passed to a
//! pool task) is a *handle*: it serializes as a reference into the family's shared memory
//! and counts as "in flight" until some process decodes it. Handles only serialize inside
//! [`encode`] and only deserialize inside [`decode`], so a handle written to a file or to
//! JSON by mistake is an error rather than a dangling reference.
//!
//! A handle's bytes are a sealed capability (see `shm::object`): decoding checks its
//! type, its object's generation and a keyed seal, and consumes exactly one in-flight
//! count. The receive stays pending until the decoding ends, or, inside a [`TakeScope`]
//! (a channel's take), until the message is taken: a consumer killed in between leaves the
//! handles to the next consumer of the message.

use std::cell::{Cell, RefCell};
use std::fmt;

use postcard::ser_flavors::Flavor;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A message that could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct CodecError {
    what: &'static str,
    detail: String,
    heap_full: bool,
}

impl CodecError {
    pub(crate) fn encode(detail: impl fmt::Display) -> Self {
        HEAP_FULL.with(|h| h.set(false));
        Self {
            what: "cannot encode the message",
            detail: take_detail().unwrap_or_else(|| detail.to_string()),
            heap_full: false,
        }
    }

    pub(crate) fn decode(detail: impl fmt::Display) -> Self {
        Self {
            what: "cannot decode the message (was it sent as another type?)",
            detail: take_detail().unwrap_or_else(|| detail.to_string()),
            heap_full: HEAP_FULL.with(|h| h.replace(false)),
        }
    }

    /// Whether the message was refused because the family's shared memory is exhausted: a
    /// handle in it could not be recorded as this process's (the handle was given back, and
    /// the object it names freed if that was its last reference). Nothing was wrong with
    /// the message itself.
    ///
    /// # Examples
    ///
    /// ```
    /// multiproc::init();
    /// let (a, b) = multiproc::Pipe::<u32>::new()?;
    /// a.send_bytes(&[0xff])?; // raw bytes, not a `u32` message
    /// match b.recv() {
    ///     Err(multiproc::RecvError::Decode(e)) => assert!(!e.is_heap_full()),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_heap_full(&self) -> bool {
        self.heap_full
    }
}

thread_local! {
    /// What a `Serialize` or `Deserialize` impl of ours said when it refused: postcard keeps
    /// only "Serde Deserialization Error" of a custom error, so the reason travels here.
    static DETAIL: RefCell<Option<String>> = const { RefCell::new(None) };
}

thread_local! {
    /// Set by [`refuse_decoding_heap_full`] for the [`CodecError`] being made.
    static HEAP_FULL: Cell<bool> = const { Cell::new(false) };
}

/// [`refuse_decoding`] for a handle that could not be recorded because the family's shared
/// memory is exhausted ([`CodecError::is_heap_full`]).
pub(crate) fn refuse_decoding_heap_full<E: serde::de::Error>(detail: impl fmt::Display) -> E {
    HEAP_FULL.with(|h| h.set(true));
    refuse_decoding(detail)
}

fn take_detail() -> Option<String> {
    DETAIL.with(|d| d.borrow_mut().take())
}

/// A custom error for a `Deserialize` impl of the crate, whose message survives postcard
/// into the [`CodecError`].
pub(crate) fn refuse_decoding<E: serde::de::Error>(detail: impl fmt::Display) -> E {
    let detail = detail.to_string();
    let e = E::custom(&detail);
    DETAIL.with(|d| *d.borrow_mut() = Some(detail));
    e
}

/// A custom error for a `Serialize` impl of the crate, whose message survives postcard into
/// the [`CodecError`].
pub(crate) fn refuse_encoding<E: serde::ser::Error>(detail: impl fmt::Display) -> E {
    let detail = detail.to_string();
    let e = E::custom(&detail);
    DETAIL.with(|d| *d.borrow_mut() = Some(detail));
    e
}

type Undo = Box<dyn FnOnce()>;

thread_local! {
    /// Undo actions of the handles encoded into the message being built, or `None` when
    /// no message is being built on this thread.
    static ENCODING: RefCell<Option<Vec<Undo>>> = const { RefCell::new(None) };
    static DECODING: Cell<u32> = const { Cell::new(0) };
    /// What makes the handles received by the decoding in progress final, run last first
    /// once the message is taken (see [`on_taken`]).
    static TAKEN: RefCell<Vec<Undo>> = const { RefCell::new(Vec::new()) };
    /// Open [`TakeScope`]s: the channel commits the message after decoding it.
    static TAKING: Cell<u32> = const { Cell::new(0) };
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Whether a message is being encoded on this thread (so handles may serialize).
pub(crate) fn encoding() -> bool {
    ENCODING.with(|e| e.borrow().is_some())
}

/// Whether a message is being decoded on this thread (so handles may deserialize).
pub(crate) fn decoding() -> bool {
    DECODING.with(|d| d.get() > 0)
}

/// Registers what makes a handle just decoded final: run when the outermost decoding
/// ends, or, inside a [`TakeScope`], when the channel has taken the message. Until then the
/// receive is pending: a process killed in between gives the handle back in flight, for the
/// consumer that gets the message again.
pub(crate) fn on_taken(settle: impl FnOnce() + 'static) {
    TAKEN.with(|t| t.borrow_mut().push(Box::new(settle)));
}

fn settle_if_done() {
    if DECODING.with(Cell::get) != 0 || TAKING.with(Cell::get) != 0 {
        return;
    }
    // Most messages carry no handle: nothing to settle, nothing to move.
    if TAKEN.with(|t| t.borrow().is_empty()) {
        return;
    }
    let settles = TAKEN.with(|t| std::mem::take(&mut *t.borrow_mut()));
    for settle in settles.into_iter().rev() {
        settle();
    }
}

/// Held by a channel around the decoding of a message and the store that takes it: the
/// handles decoded stay pending until the scope ends (see [`on_taken`]).
pub(crate) struct TakeScope(());

impl TakeScope {
    pub(crate) fn enter() -> Self {
        TAKING.with(|t| t.set(t.get() + 1));
        TakeScope(())
    }
}

impl Drop for TakeScope {
    fn drop(&mut self) {
        TAKING.with(|t| t.set(t.get() - 1));
        settle_if_done();
    }
}

/// Registers what undoes the in-flight count of a handle just encoded, should the message
/// never be sent.
pub(crate) fn on_abort(undo: impl FnOnce() + 'static) {
    ENCODING.with(|e| {
        if let Some(list) = e.borrow_mut().as_mut() {
            list.push(Box::new(undo));
        }
    });
}

/// An encoded message. Dropping it without [`Encoded::sent`] releases the handles it holds.
#[must_use = "an encoded message holds its handles until it is sent or dropped"]
pub(crate) struct Encoded {
    pub(crate) bytes: Vec<u8>,
    undo: Vec<Undo>,
}

impl fmt::Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoded").field("len", &self.bytes.len()).field("handles", &self.undo.len()).finish()
    }
}

impl Encoded {
    /// The message reached its channel: the handles in it now belong to the receiver.
    pub(crate) fn sent(mut self) {
        self.undo.clear();
    }

    /// Whether the message carries handles.
    pub(crate) fn has_handles(&self) -> bool {
        !self.undo.is_empty()
    }
}

impl Drop for Encoded {
    fn drop(&mut self) {
        for undo in self.undo.drain(..) {
            undo();
        }
    }
}

struct HandleScope {
    outer: Option<Vec<Undo>>,
}

impl HandleScope {
    fn enter() -> Self {
        Self { outer: ENCODING.with(|e| e.borrow_mut().replace(Vec::new())) }
    }

    fn finish(mut self) -> Vec<Undo> {
        let outer = self.outer.take();
        ENCODING.with(|e| std::mem::replace(&mut *e.borrow_mut(), outer)).unwrap_or_default()
    }
}

impl Drop for HandleScope {
    fn drop(&mut self) {
        // Reached only when `finish` was not called (a panic while encoding): undo.
        if let Some(outer) = self.outer.take() {
            let undo = ENCODING.with(|e| (*e.borrow_mut()).replace(outer));
            for u in undo.into_iter().flatten() {
                u();
            }
        }
    }
}

/// Encodes `value` into a fresh buffer.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Encoded, CodecError> {
    let mut bytes = Vec::new();
    let undo = encode_into(value, &mut bytes)?;
    Ok(Encoded { bytes, undo })
}

/// Encodes `value`, appending to `out`; returns the undo actions of its handles (empty for
/// plain data).
fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<Vec<Undo>, CodecError> {
    let scope = HandleScope::enter();
    let start = out.len();
    let result = postcard::serialize_with_flavor(value, Append(out));
    let undo = scope.finish();
    match result {
        Ok(()) => Ok(undo),
        Err(e) => {
            out.truncate(start);
            for u in undo {
                u();
            }
            Err(CodecError::encode(e))
        }
    }
}

/// Encodes `value` into a thread-local scratch buffer and hands the bytes to `f`, which
/// returns whether it delivered them. Saves an allocation per message on hot paths.
/// The handles in the message are released unless `f` delivered it.
pub(crate) fn with_encoded<T: Serialize + ?Sized, R>(
    value: &T,
    f: impl FnOnce(&[u8], bool) -> (bool, R),
) -> Result<R, CodecError> {
    with_small_encoding(value, usize::MAX, f).map(|r| r.expect("an encoding without a limit is never too large"))
}

/// Like [`with_encoded`] for messages that may be large: when the encoding would pass
/// `limit` bytes, it stops there and returns `Ok(None)` without calling `f` (the caller
/// then sizes the value with [`encoded_len`] and writes it once with [`encode_to_slice`]),
/// so that a huge message is never built in a temporary buffer.
pub(crate) fn with_small_encoding<T: Serialize + ?Sized, R>(
    value: &T,
    limit: usize,
    f: impl FnOnce(&[u8], bool) -> (bool, R),
) -> Result<Option<R>, CodecError> {
    SCRATCH.with(|scratch| {
        let mut own = Vec::new();
        let mut guard = scratch.try_borrow_mut().ok();
        let buf: &mut Vec<u8> = match guard.as_deref_mut() {
            Some(b) => b,
            None => &mut own,
        };
        buf.clear();
        let scope = HandleScope::enter();
        let mut over = false;
        let result = postcard::serialize_with_flavor(value, Capped { out: &mut *buf, limit, over: &mut over });
        let undo = scope.finish();
        let outcome = match result {
            Ok(()) => {
                let (delivered, r) = f(buf, !undo.is_empty());
                if !delivered {
                    undo.into_iter().for_each(|u| u());
                }
                Ok(Some(r))
            }
            Err(e) => {
                undo.into_iter().for_each(|u| u());
                if over { Ok(None) } else { Err(CodecError::encode(e)) }
            }
        };
        if buf.capacity() > 1 << 20 {
            *buf = Vec::new();
        }
        outcome
    })
}

/// Encodes `value` into `out`, which must be exactly [`encoded_len`] long (a message
/// written straight into shared memory). The returned [`Encoded`] (without bytes) holds
/// the undo of the handles inside: call [`Encoded::sent`] once the message is delivered.
pub(crate) fn encode_to_slice<T: Serialize + ?Sized>(value: &T, out: &mut [u8]) -> Result<Encoded, CodecError> {
    let scope = HandleScope::enter();
    let len = out.len();
    let result = postcard::to_slice(value, out).map(|used| used.len());
    let undo = scope.finish();
    match result {
        Ok(used) if used == len => Ok(Encoded { bytes: Vec::new(), undo }),
        Ok(used) => {
            undo.into_iter().for_each(|u| u());
            Err(CodecError::encode(format_args!("the value encoded to {used} bytes after measuring {len}")))
        }
        Err(e) => {
            undo.into_iter().for_each(|u| u());
            Err(CodecError::encode(e))
        }
    }
}

/// Like [`decode`], and every byte must belong to the value: a message of another type
/// that happens to start like a `T` is an error, not a truncated `T`.
pub(crate) fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    DECODING.with(|d| d.set(d.get() + 1));
    let _leave = LeaveDecoding;
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(CodecError::decode(format_args!("{} bytes left over after the value", rest.len()))),
        Err(e) => Err(CodecError::decode(e)),
    }
}

struct LeaveDecoding;

impl Drop for LeaveDecoding {
    fn drop(&mut self) {
        DECODING.with(|d| d.set(d.get() - 1));
        settle_if_done();
    }
}

/// Decodes a `T` from `bytes`; handles in it become this process's.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    DECODING.with(|d| d.set(d.get() + 1));
    let _leave = LeaveDecoding;
    postcard::from_bytes(bytes).map_err(CodecError::decode)
}

/// The exact encoded size of `value` (without touching handles' counts).
pub(crate) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, CodecError> {
    let scope = HandleScope::enter();
    let result = postcard::experimental::serialized_size(value);
    for u in scope.finish() {
        u();
    }
    result.map_err(CodecError::encode)
}

/// A postcard flavor appending to a borrowed `Vec`.
struct Append<'a>(&'a mut Vec<u8>);

impl Flavor for Append<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// A postcard flavor appending to a borrowed `Vec`, up to a limit.
struct Capped<'a> {
    out: &'a mut Vec<u8>,
    limit: usize,
    over: &'a mut bool,
}

impl Capped<'_> {
    fn room(&mut self, n: usize) -> postcard::Result<()> {
        if self.out.len() + n > self.limit {
            *self.over = true;
            return Err(postcard::Error::SerializeBufferFull);
        }
        Ok(())
    }
}

impl Flavor for Capped<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.room(1)?;
        self.out.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.room(data.len())?;
        self.out.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let msg = encode(&(1u32, "two".to_string(), vec![3u8; 3])).unwrap();
        let back: (u32, String, Vec<u8>) = decode(&msg.bytes).unwrap();
        assert_eq!(back, (1, "two".into(), vec![3; 3]));
        msg.sent();
    }

    #[test]
    fn wrong_type_is_an_error() {
        let msg = encode(&vec![0xffu8; 3]).unwrap();
        let err = decode::<String>(&msg.bytes).unwrap_err();
        assert!(err.to_string().contains("cannot decode"), "{err}");
    }

    #[test]
    fn small_encodings_stop_at_the_limit() {
        let small = with_small_encoding(&vec![1u8; 10], 64, |b, _| (true, b.len())).unwrap();
        assert_eq!(small, Some(11));
        let big = with_small_encoding(&vec![1u8; 100], 64, |_, _| -> (bool, ()) { unreachable!() }).unwrap();
        assert_eq!(big, None);
        let value = vec![7u16; 300];
        let mut out = vec![0; encoded_len(&value).unwrap()];
        encode_to_slice(&value, &mut out).unwrap().sent();
        assert_eq!(decode_exact::<Vec<u16>>(&out).unwrap(), value);
    }

    #[test]
    fn exact_decoding_refuses_left_over_bytes() {
        let msg = encode(&(5u8, 6u8)).unwrap();
        assert_eq!(decode::<u8>(&msg.bytes).unwrap(), 5, "postcard alone ignores the rest");
        assert!(decode_exact::<u8>(&msg.bytes).is_err());
        msg.sent();
    }

    #[test]
    fn scratch_encoding_is_reused() {
        let len = with_encoded(&7u64, |b, handles| (true, (b.len(), handles))).unwrap();
        assert_eq!(len, (1, false));
    }
}
