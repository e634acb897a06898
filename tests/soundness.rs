//! Soundness: no safe program can cause undefined behaviour, whatever it does.
//!
//! Each test is a program that showed a defect (issue 9), now asserting the typed error or
//! the correct behaviour.

mod common;

use std::time::Duration;

use common::{heap_user, leak_check};
use multiproc::{Array, Connection, Event, Pipe, Process, Queue, RawArray, RecvError, StartMethod, Value};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(60);

// --- handles ---
//
// A handle decoded as another type, forged or replayed handle bytes, and a holder that
// cannot be recorded: all refused with a typed error, nothing freed early.

/// Serializes as an `S` and deserializes as a `D`: safe serde code that lies about what
/// a message holds.
struct Liar<S, D> {
    sent: Option<S>,
    got: Option<D>,
}

impl<S, D> Liar<S, D> {
    fn send(s: S) -> Self {
        Liar { sent: Some(s), got: None }
    }
}

impl<S: Serialize, D> Serialize for Liar<S, D> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        self.sent.as_ref().expect("only the sender serializes").serialize(serializer)
    }
}

impl<'de, S, D: Deserialize<'de>> Deserialize<'de> for Liar<S, D> {
    fn deserialize<Z: Deserializer<'de>>(deserializer: Z) -> Result<Self, Z::Error> {
        Ok(Liar { sent: None, got: Some(D::deserialize(deserializer)?) })
    }
}

#[test]
fn a_value_decoded_as_another_type_is_a_decode_error() {
    let _check = leak_check(LIMIT);
    {
        let small = Value::new(7u8).unwrap();
        let bystanders: Vec<Value<u64>> = (0..16).map(|i| Value::new(i).unwrap()).collect();

        let queue: Queue<Liar<Value<u8>, Value<[u64; 512]>>> = Queue::new().unwrap();
        queue.put(Liar::send(small.clone())).unwrap();
        let err = queue.get().err().expect("a Value<u8> must not decode as a Value<[u64; 512]>");
        assert!(err.to_string().contains("type"), "{err}");

        let (a, b) = Pipe::<Liar<Value<u8>, Value<[u64; 512]>>>::new().unwrap();
        a.send(&Liar::send(small.clone())).unwrap();
        let err = b.recv().err().expect("through a pipe neither");
        assert!(err.to_string().contains("type"), "{err}");

        assert_eq!(small.get(), 7);
        for (i, v) in bystanders.iter().enumerate() {
            assert_eq!(v.get(), i as u64, "a bystander was overwritten");
        }
    }
    _check.assert_no_leak();
}

#[test]
fn an_array_decoded_as_another_element_type_is_a_decode_error() {
    let _check = leak_check(LIMIT);
    {
        let bytes = Array::from_slice(&[2u8, 3, 255]).unwrap();
        let queue: Queue<Liar<Array<u8>, Array<bool>>> = Queue::new().unwrap();
        queue.put(Liar::send(bytes.clone())).unwrap();
        let err = queue.get().err().expect("an Array<u8> must not decode as an Array<bool>");
        assert!(err.to_string().contains("type"), "{err}");

        let raw = RawArray::from_slice(&[1u32, 2]).unwrap();
        let queue: Queue<Liar<RawArray<u32>, RawArray<u64>>> = Queue::new().unwrap();
        queue.put(Liar::send(raw.clone())).unwrap();
        assert!(queue.get().is_err(), "a RawArray<u32> must not decode as a RawArray<u64>");
        assert_eq!(raw.to_vec(), [1, 2]);
    }
    _check.assert_no_leak();
}

/// The bytes of a message carrying `value`, captured as they travel: its handle stays in
/// flight, as for any message not yet received.
fn capture(value: &Value<u64>) -> Vec<u8> {
    let (a, b) = Pipe::<Value<u64>>::new().unwrap();
    a.send(value).unwrap();
    b.recv_bytes().unwrap()
}

/// Bytes written as they are: postcard writes a tuple of `u8`s byte for byte.
struct Verbatim(Vec<u8>);

impl Serialize for Verbatim {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        use serde::ser::SerializeTuple;
        let mut t = serializer.serialize_tuple(self.0.len())?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

/// Decodes `bytes` as a message carrying a `Value<u64>` (replays them).
fn replay(bytes: &[u8]) -> Result<Value<u64>, multiproc::RecvError> {
    replay_as(bytes)
}

fn replay_as<T: Serialize + serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, multiproc::RecvError> {
    let (a, b) = Pipe::<Liar<Verbatim, T>>::new().unwrap();
    a.send(&Liar::send(Verbatim(bytes.to_vec()))).unwrap();
    b.recv().map(|liar| liar.got.expect("decoded"))
}

#[test]
fn handle_bytes_replayed_after_the_object_was_freed_and_reused_are_refused() {
    let _check = leak_check(LIMIT);
    {
        let value = Value::new(1u64).unwrap();
        let bytes = capture(&value);
        let received = replay(&bytes).expect("the first delivery is genuine");
        drop(value);
        drop(received);
        // The freed block goes to the next object of its size.
        let reused: Vec<Value<u64>> = (0..8).map(|i| Value::new(100 + i).unwrap()).collect();
        let before = multiproc::__private::heap_in_use();
        let err = replay(&bytes).expect_err("a replayed handle must be refused");
        assert!(!err.to_string().is_empty());
        assert_eq!(multiproc::__private::heap_in_use(), before);
        for (i, v) in reused.iter().enumerate() {
            assert_eq!(v.get(), 100 + i as u64);
        }
    }
    _check.assert_no_leak();
}

#[test]
fn handle_bytes_replayed_while_the_object_lives_make_no_holder() {
    let _check = leak_check(LIMIT);
    {
        let value = Value::new(5u64).unwrap();
        let bytes = capture(&value);
        let first = replay(&bytes).expect("the first delivery is genuine");
        assert!(replay(&bytes).is_err(), "a second delivery of one message must be refused");
        drop(value);
        assert_eq!(first.get(), 5);
        drop(first);
    }
    _check.assert_no_leak();
}

#[test]
fn a_pipe_end_replayed_makes_no_holder_of_its_side() {
    let _check = leak_check(LIMIT);
    {
        let (a, b) = Pipe::<u8>::new().unwrap();
        let bytes = {
            let (x, y) = Pipe::<Connection<u8>>::new().unwrap();
            x.send(&b).unwrap();
            y.recv_bytes().unwrap()
        };
        let first = replay_as::<Connection<u8>>(&bytes).expect("the first delivery is genuine");
        assert!(replay_as::<Connection<u8>>(&bytes).is_err(), "a second delivery must be refused");
        drop(b);
        a.send(&3).unwrap();
        assert_eq!(first.recv().unwrap(), 3);
        drop(first);
        // The receiving side has no handle left anywhere: the sender learns it.
        assert!(a.send(&4).is_err(), "the other end is gone");
    }
    _check.assert_no_leak();
}

/// Set in a consumer that must stop in the middle of decoding a message.
static STALL: std::sync::OnceLock<Event> = std::sync::OnceLock::new();

/// Encodes as one byte; decoding it in a process with [`STALL`] set signals and waits
/// there forever (until killed), after the handles before it were decoded.
struct Pause;

impl Serialize for Pause {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        0u8.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Pause {
    fn deserialize<Z: Deserializer<'de>>(deserializer: Z) -> Result<Self, Z::Error> {
        u8::deserialize(deserializer)?;
        if let Some(stalled) = STALL.get() {
            stalled.set();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Ok(Pause)
    }
}

type Paused = (Value<u64>, Pause, Value<u64>);

fn stall_in_decode(args: (Queue<Paused>, Event)) {
    let (queue, stalled) = args;
    STALL.set(stalled).unwrap();
    let _ = queue.get();
}

#[test]
fn a_consumer_killed_while_decoding_leaves_the_handles_to_the_next() {
    let _check = leak_check(LIMIT);
    {
        let (first, second) = (Value::new(1u64).unwrap(), Value::new(2u64).unwrap());
        let queue: Queue<Paused> = Queue::new().unwrap();
        queue.put((first.clone(), Pause, second.clone())).unwrap();
        let stalled = Event::new().unwrap();
        let child = Process::new(stall_in_decode, (queue.clone(), stalled.clone())).start().unwrap();
        assert!(stalled.wait_timeout(Duration::from_secs(30)), "the consumer did not reach the pause");
        child.kill().unwrap();
        assert_eq!(child.wait(), -9);
        // The message was not taken: it is delivered again, with the handle the dead
        // consumer had received already.
        let (a, _, b) = queue.get().expect("the message is delivered whole to the next consumer");
        assert_eq!((a.get(), b.get()), (1, 2));
        drop((first, second));
        assert_eq!((a.get(), b.get()), (1, 2));
    }
    _check.assert_no_leak();
}

/// Decodes a handle and drops it at once, inside the decoding.
struct Discard;

impl<'de> Deserialize<'de> for Discard {
    fn deserialize<Z: Deserializer<'de>>(deserializer: Z) -> Result<Self, Z::Error> {
        drop(Value::<u64>::deserialize(deserializer)?);
        Ok(Discard)
    }
}

#[test]
fn a_handle_dropped_while_its_message_is_decoded_is_freed_once() {
    let _check = leak_check(LIMIT);
    {
        let queue: Queue<Liar<Value<u64>, Discard>> = Queue::new().unwrap();
        for _ in 0..3 {
            // The message holds the only handle: the receiver's drop is the last.
            queue.put(Liar::send(Value::new(9u64).unwrap())).unwrap();
            assert!(queue.get().unwrap().got.is_some());
        }
    }
    _check.assert_no_leak();
}

/// Reads a postcard varint at `at`; returns it and where it ends.
fn varint(bytes: &[u8], mut at: usize) -> (u64, usize) {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let b = bytes[at];
        value |= u64::from(b & 0x7f) << shift;
        at += 1;
        if b & 0x80 == 0 {
            return (value, at);
        }
        shift += 7;
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// `bytes` (a message holding one handle: family, kind, offset, ...) pointing at `offset`.
fn with_offset(bytes: &[u8], offset: u64) -> Vec<u8> {
    let (_, after_family) = varint(bytes, 0);
    let (_, after_kind) = varint(bytes, after_family);
    let (_, after_offset) = varint(bytes, after_kind);
    let mut out = bytes[..after_kind].to_vec();
    put_varint(&mut out, offset);
    out.extend_from_slice(&bytes[after_offset..]);
    out
}

fn offset_of(bytes: &[u8]) -> u64 {
    let (_, at) = varint(bytes, 0);
    let (_, at) = varint(bytes, at);
    varint(bytes, at).0
}

#[test]
fn forged_handle_bytes_are_refused() {
    let _check = leak_check(LIMIT);
    {
        let value = Value::new(1u64).unwrap();
        let other = Value::new(2u64).unwrap();
        let bytes = capture(&value);
        let other_bytes = capture(&other);
        let other_offset = offset_of(&other_bytes);
        // A fake object in plain data: headers claiming to be a `Value` with a huge
        // length, at every 64-byte position of an array's elements.
        let fake = RawArray::<u64>::new(4096).unwrap();
        let array_bytes = {
            let (a, b) = Pipe::<RawArray<u64>>::new().unwrap();
            a.send(&fake).unwrap();
            b.recv_bytes().unwrap()
        };
        let fake_offset = offset_of(&array_bytes);
        for i in 0..fake.len() {
            fake.set(i, if i % 8 == 0 { 0x4f42_4a00_0000_0000 | 20 } else { 1 << 30 });
        }
        let before = multiproc::__private::heap_in_use();
        // `other` has a message in flight too: a forged handle must not take its place.
        assert!(replay(&with_offset(&bytes, other_offset)).is_err(), "a handle moved to another object");
        for k in 1..32u64 {
            assert!(replay(&with_offset(&bytes, fake_offset + 64 * k)).is_err(), "a handle to a fake header");
        }
        assert_eq!(multiproc::__private::heap_in_use(), before, "something was freed or kept");
        assert_eq!(value.get(), 1);
        assert_eq!(other.get(), 2);
        // What stays in flight (the captured messages) keeps its objects: give it back.
        drop(replay(&bytes).expect("the genuine message still decodes"));
        drop(replay(&other_bytes).expect("the genuine message still decodes"));
        drop(replay_as::<RawArray<u64>>(&array_bytes).expect("the genuine message still decodes"));
    }
    _check.assert_no_leak();
}

fn receive_value(from: Connection<Value<u64>>) -> Result<u64, String> {
    match from.recv() {
        Ok(value) => Ok(value.get()),
        Err(RecvError::Decode(e)) if e.is_heap_full() => Err("heap full".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn hold_until(args: (Value<u64>, Event, Event)) -> u64 {
    let (value, started, go) = args;
    started.set();
    go.wait().unwrap();
    value.get()
}

/// Run in a process of its own (it fills the heap): see
/// `a_holder_that_cannot_be_recorded_fails_typed_and_nothing_is_freed_early`.
#[test]
fn holders_of_a_full_heap_inner() {
    if std::env::var_os("MULTIPROC_SOUNDNESS_INNER").is_none() {
        return;
    }
    let value = Value::new(7u64).unwrap();
    let (go, go_last) = (Event::new().unwrap(), Event::new().unwrap());
    let started: Vec<Event> = (0..5).map(|_| Event::new().unwrap()).collect();
    let (tx, rx) = Pipe::<Value<u64>>::new().unwrap();
    // Fill the heap: what is left of the address space, then every smaller block.
    let mut filler = Vec::new();
    let mut size = 1usize << 40;
    while size >= 1 {
        match RawArray::<u8>::new(size) {
            Ok(a) => filler.push(a),
            Err(_) => size /= 2,
        }
    }
    // The parent and four children fill the table's five slots (one child after the
    // other, so that each knows its place); the fifth child, the sixth holder, needs room
    // the heap does not have.
    let start = |i: usize| {
        let go = if i < 4 { go.clone() } else { go_last.clone() };
        let args = (value.clone(), started[i].clone(), go);
        Process::new(hold_until, args).start_method(StartMethod::ForkServer).start().unwrap()
    };
    let mut children = Vec::new();
    for (i, s) in started.iter().enumerate().take(4) {
        children.push(start(i));
        assert!(s.wait_timeout(Duration::from_secs(30)), "child {i} did not start");
    }
    // Received through a pipe, the value is refused with a typed error.
    let receiver = Process::new(receive_value, rx).start_method(StartMethod::ForkServer).start().unwrap();
    tx.send(&value).unwrap();
    assert_eq!(receiver.join().unwrap(), Err("heap full".to_string()));
    children.push(start(4));
    let sixth = children.pop().unwrap();
    // It decodes its argument, or fails to and ends.
    common::eventually(Duration::from_secs(30), || started[4].is_set() || !sixth.is_alive());
    // Every recorded holder lets go; the object is freed unless the sixth holder counts.
    drop(value);
    go.set();
    for child in children {
        assert_eq!(child.join().unwrap(), 7);
    }
    let reuse: Vec<Value<u64>> = (0..8).filter_map(|_| Value::new(99).ok()).collect();
    go_last.set();
    match sixth.join() {
        Ok(seen) => panic!("the sixth holder was not recorded, and read {seen} (7 was written)"),
        Err(e) => assert!(e.to_string().contains("shared memory is exhausted"), "{e}"),
    }
    drop(reuse);
    drop(filler);
    println!("INNER-DONE");
}

#[test]
fn a_holder_that_cannot_be_recorded_fails_typed_and_nothing_is_freed_early() {
    let _user = heap_user(LIMIT);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["holders_of_a_full_heap_inner", "--exact", "--nocapture", "--test-threads=1"])
        .env("MULTIPROC_SOUNDNESS_INNER", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("INNER-DONE"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
