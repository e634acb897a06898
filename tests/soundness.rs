//! Soundness: no safe code can cause undefined behaviour, and every "a crash at any point"
//! claim holds (issue 9). Each section is one area; each test shows a defect that was.

mod common;

multiproc::test_support!();

use std::sync::Mutex;
use std::time::Duration;

use multiproc::{Error, JoinTimeoutError, PoolError, Process, StartMethod};

const LIMIT: Duration = Duration::from_secs(60);

/// The fields a shared object's handle is written as (`shm::object::Wire`), read as plain
/// numbers: decoding it copies a handle's bytes without receiving the handle. The one
/// mirror for every section (review65 L5: a second one drifted from `Wire`, and a test
/// failed for a wrong reason); `handles::the_wire_mirror_writes_a_handles_message_back_exactly`
/// says so plainly once `Wire` changes.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct WireCopy {
    family: u64,
    kind: u32,
    offset: u64,
    generation: u64,
    fingerprint: u64,
    seal: u64,
    /// The copy's place among its message's handles (hand44).
    copy: u64,
}

// --- handles ---

mod handles {
    use std::time::Duration;

    use crate::WireCopy;
    use crate::common::{self, heap_user, leak_check};
    use multiproc::{Array, Connection, Event, Pipe, Process, Queue, RawArray, RecvError, StartMethod, Value};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    const LIMIT: Duration = Duration::from_secs(60);
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
            a.send(Liar::send(small.clone())).unwrap();
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
        // A `Value` is its object's handle and its user lock's (`None` here).
        capture_as::<_, (WireCopy, Option<WireCopy>)>(value.clone())
    }

    /// The bytes of a message carrying `value` (whose handles are written as a `W`), read
    /// as a `W` on the way: its handles stay in flight. (A raw receive, `recv_bytes`,
    /// releases them.)
    fn capture_as<T, W>(value: T) -> Vec<u8>
    where
        T: Serialize + serde::de::DeserializeOwned,
        W: Serialize + serde::de::DeserializeOwned,
    {
        let (a, b) = Pipe::<Liar<T, W>>::new().unwrap();
        a.send(Liar::send(value)).unwrap();
        let wire = b.recv().unwrap_or_else(|e| {
            let mirror = std::any::type_name::<W>();
            panic!("the message does not read as the tests' `{mirror}` (has `shm::object::Wire` changed?): {e}")
        });
        let wire = wire.got.expect("decoded");
        // A postcard message: its tag byte, then the fields as they travelled.
        let mut bytes = vec![0];
        bytes.extend(postcard::to_allocvec(&wire).unwrap());
        bytes
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
        // `bytes` is a whole message: its tag byte is left out, the codec writes one.
        a.send(Liar::send(Verbatim(bytes[1..].to_vec()))).unwrap();
        b.recv().map(|liar| liar.got.expect("decoded"))
    }

    /// The mirror is a handle's whole wire: a pipe end's message read as [`WireCopy`] and
    /// written back is byte for byte the message its channel carries.
    #[test]
    fn the_wire_mirror_writes_a_handles_message_back_exactly() {
        let _check = leak_check(LIMIT);
        {
            let (a, b) = Pipe::<u8>::new().unwrap();
            let captured = capture_as::<_, WireCopy>(b.clone());
            let (x, y) = Pipe::<Connection<u8>>::new().unwrap();
            x.send(b.clone()).unwrap();
            // A raw receive gives the message's handle back.
            let sent = y.recv_bytes().unwrap();
            assert!(
                captured == sent,
                "a handle's message read as the tests' `WireCopy` and written back is not the message \
                 (has `shm::object::Wire` changed?): {captured:?} written back, {sent:?} sent"
            );
            let end = replay_as::<Connection<u8>>(&captured).expect("the captured handle, received");
            drop((end, a, b));
        }
        _check.assert_no_leak();
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
            // A pipe end is its object's handle, its side marked in the kind (side37).
            let bytes = capture_as::<_, WireCopy>(b.clone());
            let first = replay_as::<Connection<u8>>(&bytes).expect("the first delivery is genuine");
            assert!(replay_as::<Connection<u8>>(&bytes).is_err(), "a second delivery must be refused");
            drop(b);
            a.send(3).unwrap();
            assert_eq!(first.recv().unwrap(), 3);
            drop(first);
            // The receiving side has no handle left anywhere: the sender learns it.
            assert!(a.send(4).is_err(), "the other end is gone");
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

    /// Holds the queue (the family's only handle once the parent dropped its own) until
    /// killed.
    fn hold_the_queue(args: (Queue<Vec<u8>>, Event)) {
        let (queue, started) = args;
        started.set();
        std::thread::sleep(Duration::from_secs(60));
        drop(queue);
    }

    #[test]
    fn a_queue_whose_every_holder_was_killed_is_freed_when_its_holders_are_reaped() {
        let _check = leak_check(LIMIT);
        for method in common::METHODS {
            let queue: Queue<Vec<u8>> = Queue::new().unwrap();
            // A small message in its ring and a large one in a block of its own.
            queue.put(vec![1; 10]).unwrap();
            queue.put(vec![2; 1 << 20]).unwrap();
            let started = Event::new().unwrap();
            let child = Process::new(hold_the_queue, (queue, started.clone())).start_method(method).start().unwrap();
            assert!(started.wait_timeout(Duration::from_secs(30)), "{method:?}: the holder did not start");
            child.kill().unwrap();
            assert_eq!(child.wait(), -9, "{method:?}");
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
        // After the message's tag byte (postcard).
        let (_, after_family) = varint(bytes, 1);
        let (_, after_kind) = varint(bytes, after_family);
        let (_, after_offset) = varint(bytes, after_kind);
        let mut out = bytes[..after_kind].to_vec();
        put_varint(&mut out, offset);
        out.extend_from_slice(&bytes[after_offset..]);
        out
    }

    fn offset_of(bytes: &[u8]) -> u64 {
        let (_, at) = varint(bytes, 1);
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
            let array_bytes = capture_as::<_, WireCopy>(fake.clone());
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

    /// review65 L2: a message forged of one genuine handle's wire written twice. With the
    /// same copy, both reads are one copy's: the second is a clone of the first's handle
    /// (`codec::held_again`), one count taken, and another message of the handle keeps its
    /// count, also when the decoding fails after both reads (the unread scan matches each
    /// wire to a read, and discards neither). With the copy edited, the second is another
    /// copy, whose receive takes an unreserved count: the other message's, as any replayed
    /// wire may (never a count this process's receives reserved).
    /// Two handles, read as postcard reads a struct (a tuple of two handles goes
    /// self-described since fix118: its first element refuses the probe's made-up value and
    /// hides the second, so this forged postcard message is read as a struct).
    #[derive(Serialize, Deserialize)]
    struct Two {
        a: Value<u64>,
        b: Value<u64>,
    }

    /// [`Two`] and a byte the forged message does not have.
    #[derive(Serialize, Deserialize)]
    struct TwoAndAByte {
        a: Value<u64>,
        b: Value<u64>,
        c: u8,
    }

    #[test]
    fn a_handles_wire_forged_twice_into_one_message_takes_one_count_per_copy() {
        type ValueWire = (WireCopy, Option<WireCopy>);
        let _check = leak_check(LIMIT);
        {
            let value = Value::new(5u64).unwrap();
            // A message of `value` captured, then written twice, its second copy numbered
            // `second`.
            let forged = |second: u64| {
                let captured = capture(&value);
                let first: ValueWire = postcard::from_bytes(&captured[1..]).expect("a Value's message");
                let mut again = first.clone();
                again.0.copy = second;
                let mut message = vec![0];
                message.extend(postcard::to_allocvec(&(first, again)).unwrap());
                message
            };
            let (tx, rx) = Pipe::<Value<u64>>::new().unwrap();

            tx.send(&value).unwrap();
            let Two { a, b } = replay_as::<Two>(&forged(1)).expect("one copy read twice");
            assert_eq!((a.get(), b.get()), (5, 5));
            drop((a, b));
            assert_eq!(rx.recv().expect("the other message's count is whole").get(), 5);

            tx.send(&value).unwrap();
            let err = replay_as::<TwoAndAByte>(&forged(1)).map(|_| ()).expect_err("no third field");
            assert!(!err.to_string().contains("received already"), "{err}");
            assert_eq!(rx.recv().expect("the failed decoding left the other message's count").get(), 5);

            tx.send(&value).unwrap();
            let Two { a, b } = replay_as::<Two>(&forged(2)).expect("two copies");
            let err = rx.recv().expect_err("the edited copy took the other message's count");
            assert!(err.to_string().contains("received already"), "{err}");
            drop((a, b));
        }
        _check.assert_no_leak();
    }

    /// Sets its event when dropped (also in a panic's unwinding).
    struct StopOnDrop(Event);

    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.set();
        }
    }

    /// Writes `array`'s elements plainly (its guard's `&mut [u64]`) until `stop` is set.
    fn write_plainly((array, writing, stop): (Array<u64>, Event, Event)) {
        let mut round = 0u64;
        while !stop.is_set() {
            array.lock().fill(round);
            writing.set();
            round += 1;
        }
    }

    /// Replays `bytes` as a `Value<u64>` (`as_other`: as a `Value<u32>`, whose take discards
    /// it) with the crash point armed that a decoding reaches just before it loads the
    /// header at the offset a handle names: the process aborts if it gets there.
    fn replay_armed((bytes, as_other): (Vec<u8>, bool)) -> String {
        multiproc::__private::crash_at("object.header.load");
        let refused = if as_other { replay_as::<Value<u32>>(&bytes).err() } else { replay(&bytes).err() };
        refused.map_or_else(|| "received".to_string(), |e| e.to_string())
    }

    /// A forged handle naming an offset inside a live object's elements, which another
    /// process writes plainly, is refused before the decoding loads anything there: an
    /// atomic load racing a plain store is a data race in Rust's model, even if the seal
    /// then refuses what it read (auds44's open item). Received as its own type, and read as
    /// another type (whose discard looks at the object too).
    #[test]
    fn a_forged_handle_inside_a_live_objects_plain_elements_loads_nothing_there() {
        let _check = leak_check(LIMIT);
        {
            let value = Value::new(1u64).unwrap();
            let bytes = capture(&value);
            let array = Array::<u64>::new(4096).unwrap();
            let array_bytes = capture_as::<_, (WireCopy, Option<WireCopy>)>(array.clone());
            // 16 KiB into a 32 KiB array: past its header and state, among its elements.
            let inside = offset_of(&array_bytes) + 16 * 1024;
            let (writing, stop) = (Event::new().unwrap(), Event::new().unwrap());
            let writer = Process::new(write_plainly, (array.clone(), writing.clone(), stop.clone())).start().unwrap();
            // Stops the writer however this test ends: a failed assert below left it writing
            // for ever, a process from `target/` (review74 L3).
            let _stopping = StopOnDrop(stop.clone());
            assert!(writing.wait_timeout(LIMIT), "the writer did not start");
            let forged = with_offset(&bytes, inside);
            let outcomes: Vec<_> = [false, true]
                .into_iter()
                .map(|as_other| Process::new(replay_armed, (forged.clone(), as_other)).start().unwrap().join())
                .collect();
            stop.set();
            writer.join().unwrap();
            let loaded: Vec<String> = outcomes
                .into_iter()
                .zip(["its own type", "another type"])
                .filter_map(|(outcome, read_as)| match outcome {
                    Ok(refused) => {
                        assert!(refused.contains("type") || refused.contains("forged"), "read as {read_as}: {refused}");
                        None
                    }
                    Err(e) => Some(format!("read as {read_as}: {e}")),
                })
                .collect();
            assert!(
                loaded.is_empty(),
                "the forged handle's header was loaded inside the array's elements (crash point \
                 object.header.load): {loaded:?}"
            );
            assert_eq!(value.get(), 1);
            drop(replay(&bytes).expect("the genuine message still decodes"));
            drop(replay_as::<Array<u64>>(&array_bytes).expect("the genuine message still decodes"));
        }
        _check.assert_no_leak();
    }

    fn return_at_once(_: ()) {}

    /// Takes a value from `values`, says so, drops it when told to, and says so.
    fn hold_until_told((values, holding, go, dropped): (Queue<Value<u64>>, Event, Event, Event)) {
        let value = values.get().unwrap();
        holding.set();
        go.wait().unwrap();
        drop(value);
        dropped.set();
    }

    /// Holds a value, `Fork`-starts a child that returns at once (this process has one
    /// thread), and once the child is a zombie drops the value: its last drop prunes the
    /// dead child's fork pins and frees the value (`by_another`: another process holds it
    /// too, and its later drop frees it, the record here left as it was). Then joins the
    /// child with the crash point armed that the child's end reaches just before it pins
    /// the holder table it recorded the child in: the process aborts if it gets there.
    /// `Err`: the value was not freed.
    fn join_after_the_freeing_drop(by_another: bool) -> Result<(), String> {
        let value = Value::new(7u64).unwrap();
        let values = Queue::new().unwrap();
        let [holding, go, dropped] = [(); 3].map(|()| Event::new().unwrap());
        // Started before the fork child: a start reaps the children that ended (and runs
        // their ends) first.
        let other = by_another.then(|| {
            let args = (values.clone(), holding.clone(), go.clone(), dropped.clone());
            Process::new(hold_until_told, args).start().unwrap()
        });
        let child = Process::new(return_at_once, ()).start_method(StartMethod::Fork).start().unwrap();
        let pid = child.pid();
        if !common::eventually(LIMIT, || common::pid_exists(pid) && !common::pid_running(pid)) {
            return Err(format!("the child {pid} did not become a zombie"));
        }
        if by_another {
            values.put(value.clone()).unwrap();
            assert!(holding.wait_timeout(LIMIT), "the other holder did not take the value");
        }
        let held = multiproc::__private::heap_in_use();
        drop(value);
        if by_another {
            go.set();
            assert!(dropped.wait_timeout(LIMIT), "the other holder did not drop the value");
        }
        let after = multiproc::__private::heap_in_use();
        if after >= held {
            return Err(format!("the value was not freed: {held} bytes in use before its drops, {after} after"));
        }
        // Whatever else the fork child was recorded in is freed too (the other holder's
        // copies go with it): every recorded object is gone, so the armed point is reached
        // only by a look at a freed one.
        drop((values, holding, go, dropped));
        if let Some(other) = other {
            other.join().map_err(|e| e.to_string())?;
        }
        multiproc::__private::crash_at("holders.fork_ended.pin");
        child.join().map_err(|e| e.to_string())
    }

    /// A fork child's record in its parent names the holder table of a value the parent
    /// held at the fork. The last drop of the value, the parent's own or another process's,
    /// can prune the dead (unreaped) child and free the value, whose block another object
    /// may then take and write plainly; the child's end, processed at the parent's later
    /// `join`, must not load that table's word (a data race with the new owner's plain
    /// stores), let alone pin it, lock it and free the block as the value's (review74 H1).
    #[test]
    fn a_fork_childs_end_after_the_value_was_freed_loads_nothing_there() {
        let _check = leak_check(LIMIT);
        for (by_another, freed_by) in [(false, "the parent"), (true, "another process")] {
            let outcome = Process::new(join_after_the_freeing_drop, by_another).start().unwrap().join();
            match outcome {
                Ok(result) => result.unwrap(),
                Err(e) => panic!(
                    "freed by {freed_by}: the child's end loaded the freed value's holder table \
                     (crash point holders.fork_ended.pin): {e}"
                ),
            }
        }
        _check.assert_no_leak();
    }

    /// Holds a large array (freed by `Heap::free_large`), `Fork`-starts a child that returns
    /// at once and, once it is a zombie, has another thread join it: that thread's end of
    /// the child is held at `holders.fork_ended.pin`, past its look at the (live) array and
    /// with `FORKED` taken. This thread then drops the array's last handle, which prunes the
    /// dead child and frees the array. The free must wait for the end's pin (it drops the
    /// array from the records first, under `FORKED`): a free that goes on reaches
    /// `heap.free_large.released`, armed to abort, while the end is held. A moment later the
    /// points are disarmed, and the end's pin finds the table released.
    fn free_while_a_childs_end_is_at_its_pin(_: ()) -> Result<(), String> {
        let array = Array::<u64>::new(100_000).unwrap();
        let child = Process::new(return_at_once, ()).start_method(StartMethod::Fork).start().unwrap();
        let pid = child.pid();
        if !common::eventually(LIMIT, || common::pid_exists(pid) && !common::pid_running(pid)) {
            return Err(format!("the child {pid} did not become a zombie"));
        }
        multiproc::__private::crash_at("hold:holders.fork_ended.pin,heap.free_large.released");
        let ender = std::thread::spawn(move || child.join().map_err(|e| e.to_string()));
        if !common::eventually(LIMIT, || multiproc::__private::crash_holding() == 1) {
            return Err("the child's end never reached its pin (was the array recorded?)".into());
        }
        let conductor = std::thread::spawn(|| {
            // The drop below, if it does not wait for `FORKED`, reaches the abort point in
            // a moment; if it waits, it goes on once the end is let go.
            std::thread::sleep(Duration::from_millis(300));
            multiproc::__private::crash_disarm();
        });
        let held = multiproc::__private::heap_in_use();
        drop(array);
        let after = multiproc::__private::heap_in_use();
        conductor.join().unwrap();
        ender.join().unwrap()?;
        if after >= held {
            return Err(format!("the array was not freed: {held} bytes in use before its drop, {after} after"));
        }
        Ok(())
    }

    /// A fork child's end, between its look at a recorded object and its pin, holds
    /// `FORKED`; this process's own last drop of the object, in another thread, waits for
    /// it before the block is freed (`holders::forget_fork_records`, review77 L1). Without
    /// that wait the end pins a block that may be another object's by then.
    #[test]
    fn a_fork_childs_end_waits_for_a_release_in_this_process() {
        let _check = leak_check(LIMIT);
        let outcome = Process::new(free_while_a_childs_end_is_at_its_pin, ()).start().unwrap().join();
        match outcome {
            Ok(result) => result.unwrap(),
            Err(e) => panic!(
                "the array was freed while the child's end was between its look and its pin \
                 (crash point heap.free_large.released): {e}"
            ),
        }
        _check.assert_no_leak();
    }

    /// Replays `bytes` (a `Value<u64>` message whose count a first delivery took) in a
    /// thread held at `object.header.load`, just past the directory's look at the live
    /// value; drops the value's last handles meanwhile and makes new values of its size.
    /// The block must stay the value's while the look is between its directory check and
    /// its loads: `Err` if it was freed then, or taken by another object. Let go, the
    /// replay is refused, and the block is freed.
    fn free_while_a_replay_is_past_its_look(_: ()) -> Result<(), String> {
        let value = Value::new(1u64).unwrap();
        let bytes = capture(&value);
        let first = replay(&bytes).map_err(|e| format!("the first delivery is genuine: {e}"))?;
        multiproc::__private::crash_at("hold:object.header.load");
        let looking = {
            let bytes = bytes.clone();
            std::thread::spawn(move || replay(&bytes).err().map(|e| e.to_string()))
        };
        if !common::eventually(LIMIT, || multiproc::__private::crash_holding() == 1) {
            return Err("the replay never got past its look at the directory".into());
        }
        let held = multiproc::__private::heap_in_use();
        drop((value, first));
        let after_drop = multiproc::__private::heap_in_use();
        // The next objects of its size class: the free list hands out the freed block first.
        let reusing: Vec<Value<u64>> = (0..8).map(|i| Value::new(100 + i).unwrap()).collect();
        let freed = offset_of(&bytes);
        // Read as wires, which loads no header: a decoding would be held at the point too.
        let captured: Vec<Vec<u8>> = reusing.iter().map(capture).collect();
        let reused = captured.iter().any(|bytes| offset_of(bytes) == freed);
        multiproc::__private::crash_disarm();
        let refused = looking.join().map_err(|_| "the replaying thread panicked".to_string())?;
        if after_drop < held || reused {
            return Err(format!(
                "the value's block was freed while a replay was between its directory look and its \
                 header loads ({held} bytes in use before the drop, {after_drop} after; taken by \
                 another value: {reused})"
            ));
        }
        for bytes in &captured {
            // Received: the count a capture leaves in flight, taken back.
            drop(replay(bytes).map_err(|e| format!("a new value's message: {e}"))?);
        }
        if refused.is_none() {
            return Err("the replayed bytes of a freed value were received".into());
        }
        drop(reusing);
        let end = multiproc::__private::heap_in_use();
        if end >= held {
            return Err(format!(
                "the block was not freed once the replay let go: {held} bytes in use before, {end} after"
            ));
        }
        Ok(())
    }

    /// A look at the directory of object starts and the header loads after it are one pin
    /// (hpin61, review77 M1): a replay of a value's message whose count was taken, held just
    /// past its look, while another thread of the same process drops the value's last
    /// handle. The block is kept until the look lets go, and freed then: before, it was
    /// freed at the drop, and the next value took it while the replay was about to load its
    /// header there.
    #[test]
    fn a_block_is_not_freed_under_a_look_between_the_directory_and_the_header() {
        in_a_child_leaking_nothing(free_while_a_replay_is_past_its_look);
    }

    /// Replays `bytes` (a `Value<u64>` message whose count a first delivery took) in a
    /// thread held just past its look (`object.header.load`), then drops the value's last
    /// handle in another thread, held at `object.unstart.counted`: the release has counted
    /// itself as one more look and not yet let go. The replay is then let go first: refused
    /// (the seal is cleared), its look lets go of the released start. The block must stay
    /// while the releaser still goes on to read its header and lock its table: `Err` if the
    /// replay's let-go freed it. Let go, the releaser frees it.
    fn a_look_lets_go_while_the_releaser_is_counted(_: ()) -> Result<(), String> {
        let value = Value::new(1u64).unwrap();
        let bytes = capture(&value);
        let first = replay(&bytes).map_err(|e| format!("the first delivery is genuine: {e}"))?;
        multiproc::__private::crash_at("hold:object.header.load,hold:object.unstart.counted");
        // As `replay` does, its pipe kept here: its free would hide the block's.
        let (to, from) = Pipe::<Liar<Verbatim, Value<u64>>>::new().unwrap();
        to.send(Liar::send(Verbatim(bytes[1..].to_vec()))).unwrap();
        let looking = std::thread::spawn(move || from.recv().err().map(|e| e.to_string()));
        if !common::eventually(LIMIT, || multiproc::__private::crash_holding() == 1) {
            return Err("the replay never got past its look at the directory".into());
        }
        let releasing = std::thread::spawn(move || drop((value, first)));
        if !common::eventually(LIMIT, || multiproc::__private::crash_holding() == 2) {
            return Err("the release never counted itself among the looks".into());
        }
        // What the release freed before its count (the holder table's blocks) is gone.
        let held = multiproc::__private::heap_in_use();
        // The replay goes on (its point no longer armed), the releaser stays held.
        multiproc::__private::crash_at("hold:object.unstart.counted");
        let refused = looking.join().map_err(|_| "the replaying thread panicked".to_string())?;
        let after_replay = multiproc::__private::heap_in_use();
        multiproc::__private::crash_disarm();
        releasing.join().map_err(|_| "the releasing thread panicked".to_string())?;
        if after_replay < held {
            return Err(format!(
                "the value's block was freed by a look's let-go while its releaser was between its \
                 count and its own let-go ({held} bytes in use before, {after_replay} after the replay)"
            ));
        }
        if refused.is_none() {
            return Err("the replayed bytes of a released value were received".into());
        }
        let end = multiproc::__private::heap_in_use();
        drop(to);
        if end >= held {
            return Err(format!(
                "the block was not freed once the releaser let go: {held} bytes in use before, {end} after"
            ));
        }
        Ok(())
    }

    /// The release of an object that looks pin counts itself as one more look, and lets go
    /// after it (review83 H1): a live look that lets go in between must not take the
    /// releaser's look for a dead process's and free the block under it (the releaser then
    /// read its header, locked its table and took one from its directory word, all in a
    /// freed block, maybe reused: the word of the next object there went wrong).
    #[test]
    fn a_look_that_lets_go_before_the_releaser_does_not_free_the_block_under_it() {
        in_a_child_leaking_nothing(a_look_lets_go_while_the_releaser_is_counted);
    }

    /// With a dead look in a value's word (a replay killed past its look), replays the value's
    /// bytes in a thread held just after it announced its look (`object.header.announced`),
    /// and drops the value's last handle meanwhile: its release, finding the replay
    /// announced, cannot tell the dead look from the replay's, and leaves it. Let go, the
    /// replay finds the start released: the block must still be freed.
    fn release_beside_an_announced_look(_: ()) -> Result<(), String> {
        let value = Value::new(4u64).unwrap();
        let bytes = capture(&value);
        let killed = Process::new(replay_armed, (bytes.clone(), false)).start().unwrap().join();
        if killed.is_ok() {
            return Err(format!("the killed replay did not reach its look: {killed:?}"));
        }
        let first = replay(&bytes).map_err(|e| format!("the genuine message still decodes: {e}"))?;
        multiproc::__private::crash_at("hold:object.header.announced");
        // As `replay` does, its pipe kept here: its free would hide the block's.
        let (to, from) = Pipe::<Liar<Verbatim, Value<u64>>>::new().unwrap();
        to.send(Liar::send(Verbatim(bytes[1..].to_vec()))).unwrap();
        let looking = std::thread::spawn(move || from.recv().err().map(|e| e.to_string()));
        if !common::eventually(LIMIT, || multiproc::__private::crash_holding() == 1) {
            return Err("the replay never announced its look".into());
        }
        let held = multiproc::__private::heap_in_use();
        drop((value, first));
        multiproc::__private::crash_disarm();
        let refused = looking.join().map_err(|_| "the replaying thread panicked".to_string())?;
        if refused.is_none() {
            return Err("the replayed bytes of a released value were received".into());
        }
        let end = multiproc::__private::heap_in_use();
        drop(to);
        if end >= held {
            return Err(format!(
                "the value's block was kept by a dead look that a live look's announcement hid from \
                 its release: {held} bytes in use before the drop, {end} after"
            ));
        }
        Ok(())
    }

    /// review83 L1: a live look announced but not yet counted, beside the release of its
    /// object, makes the release keep the looks of the dead (it cannot tell them from that
    /// one); the look, finding the start released, lets go as a look would, and the block is
    /// freed (it leaked).
    #[test]
    fn a_look_announced_beside_a_release_does_not_leave_a_dead_look_behind() {
        in_a_child_leaking_nothing(release_beside_an_announced_look);
    }

    /// Runs `body` in a child process and panics with what it returned as an error; the
    /// family heap must be back where it was after.
    fn in_a_child_leaking_nothing(body: fn(()) -> Result<(), String>) {
        let check = leak_check(LIMIT);
        match Process::new(body, ()).start().unwrap().join() {
            Ok(result) => result.unwrap(),
            Err(e) => panic!("the body failed: {e}"),
        }
        check.assert_no_leak();
    }

    /// The end a replay reads a value's bytes from (see `replay`).
    type Replaying = Connection<Liar<Verbatim, Value<u64>>>;

    /// A pipe whose reading end gives `bytes` (a value's message) to decode, as `replay`
    /// reads them: kept by its maker, it is freed by no reap.
    fn replaying(bytes: &[u8]) -> (Replaying, Replaying) {
        let (to, from) = Pipe::<Liar<Verbatim, Value<u64>>>::new().unwrap();
        to.send(Liar::send(Verbatim(bytes[1..].to_vec()))).unwrap();
        (to, from)
    }

    /// In a child: replays a value's bytes from `from` in a thread held past its look (`object.header.load`),
    /// says so (`looking`), waits until told the value was released (`released`), then
    /// lets the replay go on with `object.let_go.locked` armed to abort: the process dies
    /// holding the released table's lock, its look counted, its announcement cleared.
    fn let_go_killed_locked((from, looking, released): (Replaying, Event, Event)) -> String {
        multiproc::__private::crash_at("hold:object.header.load");
        let replaying = std::thread::spawn(move || from.recv().err().map(|e| e.to_string()));
        if !common::eventually(LIMIT, || multiproc::__private::crash_holding() == 1) {
            return "the child's replay never got past its look".into();
        }
        looking.set();
        if !released.wait_timeout(LIMIT) {
            return "never told the value was released".into();
        }
        multiproc::__private::crash_at("object.let_go.locked");
        match replaying.join() {
            Ok(refused) => format!("the let-go did not reach its point: {refused:?}"),
            Err(_) => "the replaying thread panicked".into(),
        }
    }

    /// A child's look and one of this process's both pin a value's start; the value is
    /// released; the child's let-go is killed holding the released table's lock
    /// (`object.let_go.locked`). This process's look, let go next, takes the lock over and
    /// the child's look away with its own: the block is freed.
    fn let_go_beside_a_let_go_killed_locked(_: ()) -> Result<(), String> {
        let value = Value::new(6u64).unwrap();
        let bytes = capture(&value);
        let first = replay(&bytes).map_err(|e| format!("the first delivery is genuine: {e}"))?;
        let [looking, released] = [(); 2].map(|()| Event::new().unwrap());
        let (child_to, child_from) = replaying(&bytes);
        let child =
            Process::new(let_go_killed_locked, (child_from, looking.clone(), released.clone())).start().unwrap();
        if !looking.wait_timeout(LIMIT) {
            return Err("the child never got past its look".into());
        }
        multiproc::__private::crash_at("hold:object.header.load");
        let (to, from) = replaying(&bytes);
        let mine = std::thread::spawn(move || from.recv().err().map(|e| e.to_string()));
        if !common::eventually(LIMIT, || multiproc::__private::crash_holding() == 1) {
            return Err("this process's replay never got past its look".into());
        }
        let held = multiproc::__private::heap_in_use();
        drop((value, first));
        released.set();
        // Not joined yet: the join's reap looks at what the child held, and would be held.
        let pid = child.pid();
        if !common::eventually(LIMIT, || !common::pid_running(pid)) {
            return Err(format!("the child {pid} did not end"));
        }
        multiproc::__private::crash_disarm();
        let refused = mine.join().map_err(|_| "the replaying thread panicked".to_string())?;
        let end = multiproc::__private::heap_in_use();
        if let Ok(said) = child.join() {
            return Err(format!("the child was not killed at its let-go: {said}"));
        }
        if refused.is_none() {
            return Err("the replayed bytes of a released value were received".into());
        }
        drop((to, child_to, looking, released));
        if end >= held {
            return Err(format!(
                "the block was not freed after a let-go killed holding the lock: {held} bytes in use \
                 before the drop, {end} after"
            ));
        }
        Ok(())
    }

    /// review83 L4: a look killed in its let-go of a released start, holding the released
    /// table's lock, its announcement cleared, is taken away by the next let-go, which takes
    /// the lock over: the block is freed.
    #[test]
    fn a_look_killed_in_its_let_go_is_taken_away_by_the_next() {
        in_a_child_leaking_nothing(let_go_beside_a_let_go_killed_locked);
    }

    /// A process killed between its look at a value's start and its loads (crash point
    /// `object.header.load`, armed to abort) leaves its look in the directory's word, which
    /// it never takes back. The value's last drop, later, in this process, must still free
    /// the block: a dead process's look is taken away (hpin61: the look is announced, as a
    /// holder table's pin is).
    #[test]
    fn a_look_killed_between_the_directory_and_the_header_keeps_no_block() {
        let _check = leak_check(LIMIT);
        {
            let value = Value::new(3u64).unwrap();
            let bytes = capture(&value);
            // Killed at the point twice: two dead looks in the word.
            for _ in 0..2 {
                let killed = Process::new(replay_armed, (bytes.clone(), false)).start().unwrap().join();
                assert!(killed.is_err(), "the replay did not reach the point: {killed:?}");
            }
            drop(replay(&bytes).expect("the genuine message still decodes"));
            assert_eq!(value.get(), 3);
        }
        _check.assert_no_leak();
    }

    fn drop_armed((value, go): (Value<u64>, Event)) {
        go.wait().unwrap();
        multiproc::__private::crash_at("object.unstart.counted");
        drop(value);
    }

    /// The last holder killed in its release between the count of its own look and its
    /// let-go (`object.unstart.counted`), with only dead looks left in the word (two
    /// replays killed inside theirs): nobody let go of the released start again, and its
    /// 256 bytes leaked (hnd71 item 3). Now the releaser's reaper lets go of each look its
    /// pin record announces at a released start (`pins::forget`), which takes the dead
    /// looks away.
    #[test]
    fn a_releaser_killed_after_its_count_beside_dead_looks_keeps_no_block() {
        let _check = leak_check(LIMIT);
        {
            let value = Value::new(3u64).unwrap();
            let bytes = capture(&value);
            for _ in 0..2 {
                let killed = Process::new(replay_armed, (bytes.clone(), false)).start().unwrap().join();
                assert!(killed.is_err(), "the replay did not reach the point: {killed:?}");
            }
            drop(replay(&bytes).expect("the genuine message still decodes"));
            let go = Event::new().unwrap();
            let releaser = Process::new(drop_armed, (value.clone(), go.clone())).start().unwrap();
            drop(value);
            go.set();
            let killed = releaser.join();
            assert!(killed.is_err(), "the release did not reach the point: {killed:?}");
        }
        _check.assert_no_leak();
    }

    fn drop_armed_in_let_go((value, go): (Value<u64>, Event)) {
        go.wait().unwrap();
        multiproc::__private::crash_at("object.let_go.locked");
        drop(value);
    }

    /// The last holder killed inside its release's let-go (`object.let_go.locked`: the
    /// released table's lock held, its look counted), with only dead looks left in the word:
    /// the let-go had cleared its announcement before the lock's check, so its reaper's
    /// `pins::forget` found no look to let go of, and the 256 bytes leaked (review110 M1).
    /// Now the let-go marks its slot "letting go" until its count is taken away, and the
    /// reaper lets go of that look too.
    #[test]
    fn a_releaser_killed_inside_its_let_go_beside_dead_looks_keeps_no_block() {
        let _check = leak_check(LIMIT);
        {
            let value = Value::new(3u64).unwrap();
            let bytes = capture(&value);
            for _ in 0..2 {
                let killed = Process::new(replay_armed, (bytes.clone(), false)).start().unwrap().join();
                assert!(killed.is_err(), "the replay did not reach the point: {killed:?}");
            }
            drop(replay(&bytes).expect("the genuine message still decodes"));
            let go = Event::new().unwrap();
            let releaser = Process::new(drop_armed_in_let_go, (value.clone(), go.clone())).start().unwrap();
            drop(value);
            go.set();
            let killed = releaser.join();
            assert!(killed.is_err(), "the release did not reach the point: {killed:?}");
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
        tx.send(value.clone()).unwrap();
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
        common::run_inner_test("handles::holders_of_a_full_heap_inner", "MULTIPROC_SOUNDNESS_INNER");
    }
}

// --- holds: what each process lists for its reaper ---

mod holds {
    use std::time::Duration;

    use multiproc::__private::{crash_at, heap_books, heap_books_lost};
    use multiproc::{Event, Pipe, Process, ProcessHandle, Queue, StartMethod, Value};

    use crate::common::{self, leak_check};

    const LIMIT: Duration = Duration::from_secs(180);
    const SIGABRT: i32 = 6;
    /// More objects than one block of the registry lists (127): the child's list grows.
    const MADE: u64 = 300;
    //
    // A process lists what it holds in blocks of the family heap; its reaper frees what it
    // alone held. Killed at each step of taking and releasing a hold: nothing a live
    // process holds is freed, nothing is left once the family reaped it.

    /// The size of a block of the lists, and how many objects it lists.
    const BLOCK: u64 = 4096;
    const SLOTS: u64 = 127;

    /// Armed at `point`: makes objects of its own, more than the spare blocks of the lists
    /// can list (its list takes a spare block if there is one, then grows past them), reads
    /// `kept` (which the parent holds too), drops `last` (which it alone holds), then the
    /// rest.
    fn armed((point, kept, last): (String, Value<u64>, Value<u64>)) {
        let made = MADE.max((heap_books() / BLOCK + 1) * SLOTS);
        crash_at(&point);
        let made: Vec<Value<u64>> = (0..made).map(|i| Value::new(i).unwrap()).collect();
        assert_eq!(kept.get(), 41);
        drop(last);
        drop(kept);
        drop(made);
    }

    #[test]
    fn a_process_killed_at_each_step_of_listing_a_hold_frees_nothing_held_and_leaks_nothing() {
        let check = leak_check(LIMIT);
        for method in common::METHODS {
            for point in [
                "holds.block.written",
                "holds.block.linking",
                "holds.block.taking",
                "holds.block.reused",
                "holds.block.linked",
                "holds.slot.written",
                "holds.slot.clearing",
            ] {
                let kept = Value::new(41u64).unwrap();
                let last = Value::new(42u64).unwrap();
                let takes_a_spare = ["holds.block.taking", "holds.block.reused"].contains(&point);
                if takes_a_spare {
                    // Spare blocks for the child's list to take: those of a list of MADE
                    // objects, whose process ended.
                    Process::new(make_and_end, ()).start_method(method).start().unwrap().join().unwrap();
                }
                let books = heap_books();
                let child =
                    Process::new(armed, (point.to_owned(), kept.clone(), last)).start_method(method).start().unwrap();
                assert_eq!(child.wait(), -SIGABRT, "{method:?}: the child did not die at {point}");
                // The survivor's object was not freed.
                assert_not_freed(kept, &format!("{method:?} {point}"));
                eprintln!("{method:?}: after a child killed at {point}");
                check.assert_no_leak();
                // Every block of the lists is in their directory (a spare, or a live
                // process's).
                assert_eq!(heap_books_lost(), 0, "{method:?} {point}: bytes of the lists' blocks lost");
                if takes_a_spare {
                    // The block it was taking is a spare again, or its, reaped: the next list
                    // of MADE objects takes spares, as the first did, and makes no block.
                    Process::new(make_and_end, ()).start_method(method).start().unwrap().join().unwrap();
                    assert_eq!(heap_books(), books, "{method:?} {point}: the heap's books in use");
                }
            }
        }
    }

    fn make_and_end(_: ()) {
        drop((0..MADE).map(|i| Value::new(i).unwrap()).collect::<Vec<_>>());
    }

    /// Armed at `point`, makes an object of kind `kind` (a value, a queue, a pipe) and drops
    /// it: the point is inside its making or its release (a point the kind never reaches
    /// lets it end).
    fn make_and_drop_armed((point, kind): (String, u8)) {
        crash_at(&point);
        match kind {
            0 => drop(Value::new(7u64).unwrap()),
            1 => drop(Queue::<u8>::new().unwrap()),
            _ => drop(Pipe::<u8>::new().unwrap()),
        }
    }

    /// aud109 M1: a process killed between a new object's allocation and its listing for its
    /// reaper (the seal, the value's write, its start), or inside a queue's `Ring::open`
    /// before its first segment is stored where `destroy` finds it, or as the last holder
    /// inside the release (the table released, the hold unlisted, the object not yet
    /// destroyed and freed), leaked the object until the family ended.
    #[test]
    fn a_process_killed_making_or_dropping_an_object_leaks_nothing() {
        let check = leak_check(LIMIT);
        let mut leaked = Vec::new();
        for point in [
            "object.place.allocated",
            "object.place.written",
            "object.place.started",
            "ring.open.allocated",
            "object.release.begun",
            "object.release.destroyed",
            "object.release.unstarted",
        ] {
            for (kind, name) in ["value", "queue", "pipe"].into_iter().enumerate() {
                let before = multiproc::__private::heap_in_use();
                let child = Process::new(make_and_drop_armed, (point.to_owned(), kind as u8))
                    .start_method(StartMethod::ForkServer)
                    .start()
                    .unwrap();
                let status = child.wait();
                if point.starts_with("ring.") && kind == 0 {
                    assert_eq!(status, 0, "a value opens no ring");
                    continue;
                }
                assert_eq!(status, -SIGABRT, "the child making a {name} did not die at {point}");
                // Its parent's wait reaped it.
                if !common::eventually(Duration::from_secs(1), || multiproc::__private::heap_in_use() <= before) {
                    leaked.push(format!("{name} at {point}: {} B", multiproc::__private::heap_in_use() - before));
                }
                assert_eq!(heap_books_lost(), 0, "{name} {point}: bytes of the lists' blocks lost");
            }
        }
        println!("leaked: {leaked:?}");
        assert!(leaked.is_empty(), "leaked: {leaked:?}");
        check.assert_no_leak();
    }

    /// Makes and drops queues and values until killed (`started` set once it runs).
    fn make_and_drop_until_killed(started: Event) {
        started.set();
        loop {
            drop(Queue::<u8>::new().unwrap());
            drop(Value::new(7u64).unwrap());
        }
    }

    /// aud109 M1's probe `g1`, cheap: a child killed at a random moment of a loop that makes
    /// and drops objects leaks none of them (5-7 rounds in 10 leaked).
    #[test]
    fn a_process_killed_at_random_while_it_makes_and_drops_objects_leaks_nothing() {
        let _check = leak_check(LIMIT);
        let mut leaked = 0;
        const ROUNDS: u64 = 8;
        for round in 0..ROUNDS {
            let before = multiproc::__private::heap_in_use();
            let started = Event::new().unwrap();
            let child = Process::new(make_and_drop_until_killed, started.clone())
                .start_method(StartMethod::ForkServer)
                .start()
                .unwrap();
            assert!(started.wait_timeout(Duration::from_secs(30)), "the child did not start");
            drop(started);
            std::thread::sleep(Duration::from_millis(3 + round * 5));
            child.kill().unwrap();
            child.wait();
            if !common::eventually(Duration::from_secs(1), || multiproc::__private::heap_in_use() <= before) {
                println!("round {round}: {} B", multiproc::__private::heap_in_use() - before);
                leaked += 1;
            }
        }
        println!("rounds that leaked: {leaked} of {ROUNDS}");
        // What is left are the allocator's own steps (a block taken and not yet recorded, or
        // unrecorded and not yet given back) and a store or two after a table's release,
        // which a debug build on a loaded machine stretches: one round in about 25 leaked
        // one block there. Before aud109 M1's fix, 5 to 7 rounds in 8 leaked.
        assert!(leaked <= 2, "{leaked} rounds of {ROUNDS} leaked");
    }

    //
    // Whoever reaps a process frees what it alone held: its parent, or (for a process
    // nobody reaps: never joined, or orphaned) the next reaper of any process; and a
    // reaper killed half-way through a reap leaves the rest to the next one.

    /// `kept` (holding 41) was not freed, nor freed twice: it reads, and what the heap hands
    /// out next is elsewhere (a write to one does not show in the other).
    fn assert_not_freed(kept: Value<u64>, what: &str) {
        assert_eq!(kept.get(), 41, "{what}");
        let next = Value::new(43u64).unwrap();
        kept.set(44);
        assert_eq!((kept.get(), next.get()), (44, 43), "{what}");
    }

    /// Holds its arguments (`kept`, which the test's process holds too, `last`, which it
    /// alone holds, and `started`) until killed.
    fn hold_until_killed((kept, last, started): (Value<u64>, Value<u64>, Event)) {
        started.set();
        std::thread::sleep(Duration::from_secs(60));
        drop((kept, last));
    }

    /// Starts a holder of `kept` and `last` with `method`, kills it, and reaps it armed
    /// at `point`.
    fn reap_armed((point, kept, last, method): (String, Value<u64>, Value<u64>, StartMethod)) {
        let started = Event::new().unwrap();
        let holder =
            Process::new(hold_until_killed, (kept, last, started.clone())).start_method(method).start().unwrap();
        assert!(started.wait_timeout(Duration::from_secs(30)), "the holder did not start");
        holder.kill().unwrap();
        crash_at(&point);
        holder.wait();
    }

    #[test]
    fn a_reaper_killed_at_each_step_of_a_reap_leaves_the_rest_to_the_next_one() {
        let check = leak_check(LIMIT);
        for method in common::METHODS {
            for point in [
                "holds.reap.claimed",
                "holds.reap.cleared",
                "holds.reap.freed",
                "holds.reap.walked",
                "holds.reap.retired",
            ] {
                // Twice: the blocks of the first round's lists are back (or kept for the
                // next lists) by its end, so the second round needs none more.
                let mut books = Vec::new();
                for _ in 0..2 {
                    let kept = Value::new(41u64).unwrap();
                    let last = Value::new(42u64).unwrap();
                    let args = (point.to_owned(), kept.clone(), last, method);
                    let reaper = Process::new(reap_armed, args).start_method(method).start().unwrap();
                    assert_eq!(reaper.wait(), -SIGABRT, "{method:?}: the reaper did not die at {point}");
                    // Nothing the test's process holds was freed, nothing was freed twice.
                    assert_not_freed(kept, &format!("{method:?} {point}"));
                    eprintln!("{method:?}: after a reaper killed at {point}");
                    check.assert_no_leak();
                    assert_eq!(heap_books_lost(), 0, "{method:?} {point}: bytes of the lists' blocks lost");
                    books.push(heap_books());
                }
                // No block of the lists was lost with the reaper.
                assert_eq!(books[1], books[0], "{method:?} {point}: the heap's books in use after each round");
            }
        }
    }

    fn nothing(_: ()) {}

    /// Reaps children (each reap looks for dead processes nobody reaps, now and then) until
    /// the heap is back to `before` bytes in use; returns whether it came back.
    fn reaps_until_back(method: StartMethod, before: u64) -> bool {
        common::eventually(Duration::from_secs(30), || {
            Process::new(nothing, ()).start_method(method).start().unwrap().join().unwrap();
            multiproc::__private::heap_in_use() <= before
        })
    }

    /// Once `go` is set, starts and joins children until `done` is set (or long after).
    fn reap_children_until((go, done): (Event, Event)) {
        go.wait().unwrap();
        for _ in 0..3000 {
            if done.wait_timeout(Duration::from_millis(10)) {
                return;
            }
            Process::new(nothing, ()).start().unwrap().join().unwrap();
        }
    }

    #[test]
    fn a_killed_process_its_parent_never_reaps_is_reaped_by_another_processs_reap() {
        let check = leak_check(LIMIT);
        for method in common::METHODS {
            let (go, done) = (Event::new().unwrap(), Event::new().unwrap());
            let reaper =
                Process::new(reap_children_until, (go.clone(), done.clone())).start_method(method).start().unwrap();
            let before = multiproc::__private::heap_in_use();
            let kept = Value::new(41u64).unwrap();
            let last = Value::new(42u64).unwrap();
            let started = Event::new().unwrap();
            let holder = Process::new(hold_until_killed, (kept.clone(), last, started.clone()))
                .daemon(true)
                .start_method(method)
                .start()
                .unwrap();
            assert!(started.wait_timeout(Duration::from_secs(30)), "{method:?}: the holder did not start");
            drop(started);
            holder.kill().unwrap();
            // Its parent (this process) neither joins it nor starts another child while the
            // test looks: the reaps of another process's children find it.
            assert!(common::eventually(Duration::from_secs(30), || !common::pid_running(holder.pid())));
            drop(kept);
            go.set();
            let back = common::eventually(Duration::from_secs(30), || multiproc::__private::heap_in_use() <= before);
            let after = multiproc::__private::heap_in_use();
            done.set();
            reaper.join().unwrap();
            assert!(back, "{method:?}: heap in use {before} bytes before, {after} after");
            // Its parent's own reap, late, frees nothing twice.
            assert_eq!(holder.wait(), -9, "{method:?}");
            drop((go, done));
            check.assert_no_leak();
        }
    }

    /// Once `go` is set, stops at `point` in the reap of a child of its own (its first, so
    /// it looks at every listed process).
    fn reap_one_armed((point, go): (String, Event)) {
        go.wait().unwrap();
        crash_at(&point);
        Process::new(nothing, ()).start().unwrap().join().unwrap();
    }

    /// A sweeper (`reap_one_armed`) armed at `point` and a holder of `kept` (41) killed: the
    /// sweeper, let go, claims the dead holder's list and stops at `point`; the holder is
    /// reaped (-9) by this process meanwhile.
    fn a_sweeper_stopped_at(point: &str, method: StartMethod) -> (ProcessHandle<()>, ProcessHandle<()>, Value<u64>) {
        let go = Event::new().unwrap();
        let sweeper =
            Process::new(reap_one_armed, (point.to_owned(), go.clone())).start_method(method).start().unwrap();
        let kept = Value::new(41u64).unwrap();
        let last = Value::new(42u64).unwrap();
        let started = Event::new().unwrap();
        let holder = Process::new(hold_until_killed, (kept.clone(), last, started.clone()))
            .start_method(method)
            .start()
            .unwrap();
        assert!(started.wait_timeout(Duration::from_secs(30)), "{method:?}: the holder did not start");
        holder.kill().unwrap();
        assert!(common::eventually(Duration::from_secs(30), || !common::pid_running(holder.pid())));
        go.set();
        assert!(common::eventually(Duration::from_secs(30), || common::pid_stopped(sweeper.pid())), "{method:?}");
        assert_eq!(holder.wait(), -9, "{method:?}");
        (sweeper, holder, kept)
    }

    #[test]
    fn a_process_frozen_then_killed_as_it_reaps_another_processs_child_leaves_it_to_the_next_reaper() {
        let check = leak_check(LIMIT);
        for method in common::METHODS {
            // The sweeper claimed the holder's list and stops there: the holder's own reap
            // waits for it a while, then leaves the list to it.
            let (sweeper, _holder, kept) = a_sweeper_stopped_at("stop:holds.reap.claimed", method);
            assert_eq!(kept.get(), 41, "{method:?}");
            // Killed with the claim: its reap (by this process) finishes what it claimed.
            sweeper.kill().unwrap();
            assert_eq!(sweeper.wait(), -9, "{method:?}");
            drop(kept);
            check.assert_no_leak();
        }
    }

    /// Starts a holder of `last` of its own (spawned: its parent is this process, whose
    /// death kills it), waits until it holds it, and dies.
    fn orphan_a_holder((last, started): (Value<u64>, Event)) {
        let kept = Value::new(41u64).unwrap();
        let _holder =
            Process::new(hold_until_killed, (kept, last, started.clone())).start_method(StartMethod::Spawn).start();
        started.wait_timeout(Duration::from_secs(30));
        std::process::abort();
    }

    #[test]
    fn a_process_killed_with_its_parent_is_reaped_by_the_next_reaper() {
        let check = leak_check(LIMIT);
        for method in common::METHODS {
            let before = multiproc::__private::heap_in_use();
            let last = Value::new(42u64).unwrap();
            let started = Event::new().unwrap();
            let parent = Process::new(orphan_a_holder, (last, started.clone())).start_method(method).start().unwrap();
            assert!(started.wait_timeout(Duration::from_secs(30)), "{method:?}: the holder did not start");
            drop(started);
            assert_eq!(parent.wait(), -SIGABRT, "{method:?}");
            let back = reaps_until_back(method, before);
            assert!(
                back,
                "{method:?}: heap in use {} bytes before, {} after",
                before,
                multiproc::__private::heap_in_use()
            );
            check.assert_no_leak();
        }
    }

    //
    // A block of the lists is one process's at a time: a list that grows never takes a
    // block a reaper still walks, nor one a live process owns, however the growers, the
    // reapers and the takers of spares meet (review26).

    /// Makes more objects than the spare blocks of the lists can list (so its list makes
    /// new blocks too), says so, and holds them until killed.
    fn grow_past_the_spares_and_hold((kept, grown): (Value<u64>, Event)) {
        let made = MADE.max((heap_books() / BLOCK + 2) * SLOTS);
        let made: Vec<Value<u64>> = (0..made).map(|i| Value::new(i).unwrap()).collect();
        assert_eq!(kept.get(), 41);
        grown.set();
        std::thread::sleep(Duration::from_secs(60));
        drop((kept, made));
    }

    #[test]
    fn a_list_that_grows_while_a_reaper_is_stopped_mid_walk_takes_none_of_its_blocks() {
        let check = leak_check(LIMIT);
        for method in common::METHODS {
            // The sweeper claimed the holder's block and stops in its walk, one slot cleared.
            let (sweeper, _holder, kept) = a_sweeper_stopped_at("stop:holds.reap.cleared", method);
            // A grower's list takes every spare and makes new blocks: never the claimed one.
            let grown = Event::new().unwrap();
            let grower = Process::new(grow_past_the_spares_and_hold, (kept.clone(), grown.clone()))
                .start_method(method)
                .start()
                .unwrap();
            assert!(grown.wait_timeout(Duration::from_secs(60)), "{method:?}: the grower did not grow");
            // The sweeper dies with its claim: its reap walks the holder's block again and
            // makes it a spare. Had the grower taken that block, the walk would clear the
            // grower's slots as the holder's, and the grower's objects would outlive it.
            sweeper.kill().unwrap();
            assert_eq!(sweeper.wait(), -9, "{method:?}");
            assert_eq!(kept.get(), 41, "{method:?}");
            assert_eq!(heap_books_lost(), 0, "{method:?}: bytes of the lists' blocks lost");
            grower.kill().unwrap();
            assert_eq!(grower.wait(), -9, "{method:?}");
            drop((kept, grown));
            check.assert_no_leak();
            assert_eq!(heap_books_lost(), 0, "{method:?}: bytes of the lists' blocks lost");
        }
    }

    /// Until `done`: makes a list's worth of objects and more, checks `kept`, drops them
    /// (its list's slots free again), and now and then starts and joins a child (a reap,
    /// which looks at every listed process at most every 100 ms). Then, with `idle`, makes
    /// one more batch, says so and holds it until killed (its list must still list all).
    fn churn((kept, done, idle): (Value<u64>, Event, Option<Event>)) {
        let mut rounds = 0u64;
        let batch = || -> Vec<Value<u64>> { (0..SLOTS * 2 + 3).map(|i| Value::new(i).unwrap()).collect() };
        while !done.is_set() {
            let made = batch();
            assert_eq!(kept.get(), 41, "a live holder's object was freed");
            for (i, v) in made.iter().enumerate() {
                assert_eq!(v.get(), i as u64, "an object of a live list was freed");
            }
            drop(made);
            if idle.is_some() && rounds.is_multiple_of(4) {
                Process::new(nothing, ()).start().unwrap().join().unwrap();
            }
            rounds += 1;
        }
        if let Some(idle) = idle {
            let held = batch();
            idle.set();
            std::thread::sleep(Duration::from_secs(60));
            drop(held);
        }
    }

    /// Makes `count` objects, says so, and holds them until killed.
    fn make_and_hold((count, made): (u64, Event)) {
        let objects: Vec<Value<u64>> = (0..count).map(|i| Value::new(i).unwrap()).collect();
        made.set();
        std::thread::sleep(Duration::from_secs(60));
        drop(objects);
    }

    #[test]
    fn lists_grown_spares_taken_and_dead_lists_reaped_all_at_once_lose_nothing() {
        let check = leak_check(LIMIT);
        let kept = Value::new(41u64).unwrap();
        for method in common::METHODS {
            let done = Event::new().unwrap();
            // Growers in other processes, each also reaping now and then, and one here.
            let growers: Vec<_> = (0..2)
                .map(|_| {
                    let idle = Event::new().unwrap();
                    let args = (kept.clone(), done.clone(), Some(idle.clone()));
                    (Process::new(churn, args).start_method(method).start().unwrap(), idle)
                })
                .collect();
            let here = {
                let (kept, done) = (kept.clone(), done.clone());
                std::thread::spawn(move || churn((kept, done, None)))
            };
            // Holders of several blocks each, killed and reaped (here) while the growers
            // grow: their blocks become spares the growers take.
            for round in 0..6u64 {
                let made = Event::new().unwrap();
                let holder = Process::new(make_and_hold, ((round % 3 + 1) * SLOTS + 5, made.clone()))
                    .start_method(method)
                    .start()
                    .unwrap();
                assert!(made.wait_timeout(Duration::from_secs(60)), "{method:?}: the holder did not make");
                holder.kill().unwrap();
                assert_eq!(holder.wait(), -9, "{method:?}");
                assert_eq!(kept.get(), 41, "{method:?}");
            }
            done.set();
            here.join().unwrap();
            // Each grower is killed holding a batch: its reap frees it all only if its list
            // lists it all (no other process's walk cleared a slot of it).
            for (grower, idle) in growers {
                assert!(idle.wait_timeout(Duration::from_secs(60)), "{method:?}: a grower did not finish");
                grower.kill().unwrap();
                assert_eq!(grower.wait(), -9, "{method:?}");
            }
            assert_eq!(kept.get(), 41, "{method:?}");
            assert_eq!(heap_books_lost(), 0, "{method:?}: bytes of the lists' blocks lost");
            drop(done);
        }
        drop(kept);
        check.assert_no_leak();
        assert_eq!(heap_books_lost(), 0, "bytes of the lists' blocks lost");
    }

    /// Starts a holder of a list's worth of objects with `method`, says its pid, kills it,
    /// and reaps it armed at `point`.
    fn reap_a_holder_armed((point, pid, method): (String, Value<u64>, StartMethod)) {
        let made = Event::new().unwrap();
        let holder = Process::new(make_and_hold, (SLOTS + 5, made.clone())).start_method(method).start().unwrap();
        assert!(made.wait_timeout(Duration::from_secs(60)), "the holder did not make");
        pid.set(u64::from(holder.pid()));
        holder.kill().unwrap();
        crash_at(&point);
        holder.wait();
    }

    /// The next process forked in this pid namespace gets `pid` (root only: `None` when the
    /// kernel's last pid cannot be written).
    fn next_pid_is(pid: u32) -> Option<()> {
        std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", pid - 1)).ok()
    }

    #[test]
    fn a_process_with_the_pid_of_a_dead_one_whose_list_is_being_reaped_keeps_its_own() {
        if next_pid_is(2).is_none() {
            eprintln!("skipped: the kernel's last pid cannot be set here (not root)");
            return;
        }
        let check = leak_check(LIMIT);
        for method in common::METHODS {
            // Spares for the new process's list to take (its start time written over theirs).
            Process::new(make_and_end, ()).start_method(method).start().unwrap().join().unwrap();
            // A reaper stopped with the dead holder's list claimed: the holder's pid is free.
            let pid = Value::new(0u64).unwrap();
            let args = ("stop:holds.reap.claimed".to_owned(), pid.clone(), method);
            let reaper = Process::new(reap_a_holder_armed, args).start_method(method).start().unwrap();
            assert!(common::eventually(Duration::from_secs(60), || common::pid_stopped(reaper.pid())), "{method:?}");
            let dead = pid.get() as u32;
            // Dropped before any leak check, on either branch below: it is 256 bytes in use.
            drop(pid);
            assert!(common::eventually(Duration::from_secs(30), || !common::pid_exists(dead)), "{method:?}");
            // A new process with that pid lists objects of its own (spares or new blocks).
            let mut reused = None;
            for _ in 0..50 {
                let made = Event::new().unwrap();
                next_pid_is(dead).unwrap();
                let holder =
                    Process::new(make_and_hold, (SLOTS * 2 + 5, made.clone())).start_method(method).start().unwrap();
                assert!(made.wait_timeout(Duration::from_secs(60)), "{method:?}: the holder did not make");
                if holder.pid() == dead {
                    reused = Some(holder);
                    break;
                }
                // Another process of the machine forked first.
                holder.kill().unwrap();
                holder.wait();
            }
            // The reaper dies with its claim: its reap (here) walks the dead holder's list,
            // and looks at every listed process (the pid's new owner is alive).
            reaper.kill().unwrap();
            assert_eq!(reaper.wait(), -9, "{method:?}");
            // Once a sweep's gap (100 ms) has passed, a reap here looks at every listed
            // process again (no duration is asserted).
            std::thread::sleep(Duration::from_millis(150));
            Process::new(nothing, ()).start_method(method).start().unwrap().join().unwrap();
            let Some(holder) = reused else {
                eprintln!("{method:?}: pid {dead} was not given again in 50 tries; nothing checked");
                check.assert_no_leak();
                continue;
            };
            eprintln!("{method:?}: pid {dead} given again");
            // Its list lists all it holds: killed, all of it is freed.
            assert!(common::pid_running(holder.pid()), "{method:?}");
            holder.kill().unwrap();
            assert_eq!(holder.wait(), -9, "{method:?}");
            check.assert_no_leak();
            assert_eq!(heap_books_lost(), 0, "{method:?}: bytes of the lists' blocks lost");
        }
    }
}

// --- process ---

static SHARED_WITH_A_THREAD: Mutex<u32> = Mutex::new(0);

fn take_the_threads_lock(_: ()) -> u32 {
    *SHARED_WITH_A_THREAD.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn fork_while_another_thread_holds_a_lock_is_refused_with_a_typed_error() {
    let _w = common::heap_user(LIMIT);
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _guard = SHARED_WITH_A_THREAD.lock().unwrap();
        held_tx.send(()).unwrap();
        let _ = done_rx.recv();
    });
    held_rx.recv().unwrap();
    // A copy of this process would hold the mutex forever: its holder is not copied.
    let started = Process::new(take_the_threads_lock, ()).start_method(StartMethod::Fork).start();
    let outcome = match started {
        Err(Error::ForkWithThreads { threads }) => Ok(threads),
        Err(other) => Err(format!("another error: {other}")),
        Ok(child) => Err(match child.join_timeout(Duration::from_secs(4)) {
            Err(JoinTimeoutError::Timeout(child)) => {
                let _ = child.kill();
                "the fork child is still blocked after 4 s".to_string()
            }
            other => format!("the fork child ended: {other:?}"),
        }),
    };
    done_tx.send(()).unwrap();
    holder.join().unwrap();
    let threads = outcome.unwrap();
    assert!(threads >= 2, "{threads}");
}

fn plus_one(x: u32) -> u32 {
    x + 1
}

/// In a child of the fork server (one thread): starts a thread, tries `Fork` (refused),
/// opts in, forks.
fn fork_beside_a_thread_after_opting_in(_: ()) -> (bool, u32) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let (ready, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (r, s) = (ready.clone(), stop.clone());
    let parked = std::thread::spawn(move || {
        r.store(true, Ordering::Release);
        while !s.load(Ordering::Acquire) {
            std::thread::park();
        }
    });
    while !ready.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    let refused = matches!(
        Process::new(plus_one, 1).start_method(StartMethod::Fork).start(),
        Err(Error::ForkWithThreads { threads: 2 })
    );
    // SAFETY: the other thread is past its start-up and only parks (a futex on its own
    // word) or reads an atomic: it holds no lock; the child takes only the locks of
    // multiproc's boot, which the forking thread holds across the fork.
    unsafe { multiproc::allow_fork_with_threads() };
    let result = Process::new(plus_one, 1).start_method(StartMethod::Fork).start().unwrap().join().unwrap();
    stop.store(true, Ordering::Release);
    parked.thread().unpark();
    parked.join().unwrap();
    (refused, result)
}

#[test]
fn fork_beside_other_threads_needs_the_unsafe_opt_in() {
    let _w = common::heap_user(LIMIT);
    // In a single-threaded child, so that the opt-in does not reach this test process.
    let child = Process::new(fork_beside_a_thread_after_opting_in, ()).start_method(StartMethod::ForkServer);
    assert_eq!(child.start().unwrap().join().unwrap(), (true, 2));
}

type Triple = fn(u32) -> u32;
type Ignore = fn(u32);

/// Builds a shared library with a `fn(u32) -> u32` and a `fn(u32)` and loads it; returns
/// those functions.
fn functions_from_a_shared_library() -> (Triple, Ignore) {
    let dir = std::env::temp_dir().join(format!("multiproc-soundness-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("foreign.rs");
    std::fs::write(
        &source,
        "#[unsafe(no_mangle)]\npub fn multiproc_foreign_triple(x: u32) -> u32 { x * 3 }\n\
         #[unsafe(no_mangle)]\npub fn multiproc_foreign_ignore(_: u32) {}\n",
    )
    .unwrap();
    let library = dir.join("libforeign.so");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let built = std::process::Command::new(rustc)
        .args(["--edition", "2024", "--crate-type", "cdylib", "-C", "panic=abort", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .unwrap();
    assert!(built.success(), "rustc could not build the test library");
    let path = std::ffi::CString::new(library.to_str().unwrap()).unwrap();
    // SAFETY: a library we just built, whose only code is the two functions below; it
    // stays loaded (never dlclosed), so the pointers stay valid.
    let functions = unsafe {
        let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW);
        assert!(!handle.is_null(), "dlopen failed");
        let triple = libc::dlsym(handle, c"multiproc_foreign_triple".as_ptr());
        let ignore = libc::dlsym(handle, c"multiproc_foreign_ignore".as_ptr());
        assert!(!triple.is_null() && !ignore.is_null(), "dlsym failed");
        // The symbols are a Rust-ABI `fn(u32) -> u32` and `fn(u32)`, as declared above.
        (
            std::mem::transmute::<*mut libc::c_void, Triple>(triple),
            std::mem::transmute::<*mut libc::c_void, Ignore>(ignore),
        )
    };
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(functions.0(5), 15);
    functions
}

#[test]
fn a_function_from_a_shared_library_is_refused_before_anything_runs() {
    let _w = common::heap_user(LIMIT);
    let (triple, initializer) = functions_from_a_shared_library();
    for method in common::METHODS {
        match Process::new(triple, 5).start_method(method).start() {
            Err(Error::NotInExecutable) => {}
            Err(other) => panic!("{method:?}: another error: {other}"),
            Ok(child) => panic!("{method:?}: the child ran something: {:?}", child.join()),
        }
    }
    // A pool refuses it before queueing anything, as a task and as an initializer.
    let pool = multiproc::Pool::new(1).unwrap();
    assert!(matches!(pool.apply(triple, 5), Err(Error::Pool(PoolError::NotInExecutable))));
    assert!(matches!(pool.map(triple, [1, 2]), Err(Error::Pool(PoolError::NotInExecutable))));
    assert!(matches!(pool.imap(triple, [1, 2]), Err(PoolError::NotInExecutable)));
    assert_eq!(pool.apply(|x: u32| x * 3, 5).unwrap(), 15, "the pool still works");
    let built = multiproc::Pool::builder().processes(1).initializer(initializer, 1).build();
    assert!(matches!(built, Err(Error::Pool(PoolError::NotInExecutable))), "{built:?}");
}

/// The test binary, copied and made set-user-ID `nobody`, so that the kernel runs it in
/// secure mode (`AT_SECURE`): its environment comes from a less trusted user.
#[test]
fn a_set_user_id_program_ignores_multiproc_boot() {
    use std::os::unix::fs::PermissionsExt;
    let _w = common::heap_user(LIMIT);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: making a set-user-ID binary needs root");
        return;
    }
    let dir = std::env::temp_dir().join(format!("multiproc-setuid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join("setuid-copy");
    std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
    std::os::unix::fs::chown(&copy, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    // A forged boot variable: were it trusted, the copy would take itself for a child and
    // read its "boot message" from whatever descriptor 3 is.
    let out = std::process::Command::new(&copy)
        .args(["--list", "--exact", "a_set_user_id_program_ignores_multiproc_boot"])
        .env("MULTIPROC_BOOT", format!("spawn:3:{}", std::process::id()))
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("a_set_user_id_program_ignores_multiproc_boot"),
        "{:?}: {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `#[multiproc::main]` program (`examples/child_runtime.rs`, built by `cargo test` with
/// the other examples): its spawned children run their targets after std's runtime
/// start-up (a main thread named `main`; a thread of the target that overflows its stack is
/// a `StackOverflow`, not a bare `SIGSEGV`), after every constructor, and never `main`. A
/// `MULTIPROC_BOOT` its target sets names no descriptor `init()` takes (the leave the
/// loader's call gave `main`'s `init()`, `KEPT_FOR_MAIN`, is used once).
#[test]
fn children_of_a_multiproc_main_program_run_in_a_normal_runtime() {
    let _w = common::heap_user(LIMIT);
    // target/<profile>/deps/soundness-<hash> -> target/<profile>/examples/child_runtime
    let exe = std::env::current_exe().unwrap();
    let program = exe.parent().and_then(|deps| deps.parent()).unwrap().join("examples").join("child_runtime");
    assert!(
        program.exists(),
        "{} is missing: `cargo test --workspace` builds it (or `cargo build --example child_runtime`)",
        program.display()
    );
    let out = std::process::Command::new(&program).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all 10 checks passed"),
        "{:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An item registered by a constructor (`inventory` runs `submit!` from `.init_array`).
pub struct Registered(pub &'static str);

inventory::collect!(Registered);

mod zz_registrations {
    inventory::submit! { super::Registered("registered before main") }
}

fn registered_items(_: ()) -> Vec<String> {
    inventory::iter::<Registered>.into_iter().map(|r| r.0.to_string()).collect()
}

#[test]
fn an_item_registered_by_a_constructor_is_visible_in_children() {
    let _w = common::heap_user(LIMIT);
    assert_eq!(registered_items(()), ["registered before main"]);
    for method in common::METHODS {
        let items = Process::new(registered_items, ()).start_method(method).start().unwrap().join().unwrap();
        assert_eq!(items, ["registered before main"], "{method:?}");
    }
}

// --- shm ---

mod shm {
    use std::time::Duration;

    use multiproc::__private::{
        crash_at, heap_alloc, heap_alloc_dirty, heap_check, heap_defer_releases, heap_deferred, heap_free,
        heap_free_warm, heap_in_use, heap_release_deferred,
    };
    use multiproc::{Lock, Process};
    use serde::{Deserialize, Serialize};

    use crate::common;

    const LIMIT: Duration = Duration::from_secs(60);
    const PAGE: usize = 4096;
    const SIGABRT: i32 = 6;

    /// What a child does once armed to abort at a crash point.
    #[derive(Serialize, Deserialize)]
    enum Step {
        Alloc(usize),
        Free(u64, usize),
        /// Allocates as a large message does (a warm block if one fits).
        AllocDirty(usize),
        /// Frees as a large message does (kept warm).
        FreeWarm(u64, usize),
        /// Frees as a busy pool worker frees a large message: the release left for later.
        FreeLater(u64, usize),
        /// Releases what waits for its release, as an idle pool worker does.
        ReleaseDeferred,
        Acquire(Lock),
        AcquireAndDie(Lock),
    }

    fn armed_child((point, step): (String, Step)) {
        crash_at(&point);
        match step {
            Step::Alloc(len) => {
                heap_alloc(len).unwrap();
            }
            // SAFETY: the parent allocated this block for the child to free, and forgets it.
            Step::Free(off, len) => unsafe { heap_free(off, len) },
            Step::AllocDirty(len) => {
                heap_alloc_dirty(len).unwrap();
            }
            // SAFETY: as for `Free`.
            Step::FreeWarm(off, len) => unsafe { heap_free_warm(off, len) },
            Step::FreeLater(off, len) => {
                heap_defer_releases();
                // SAFETY: as for `Free`.
                unsafe { heap_free_warm(off, len) };
            }
            Step::ReleaseDeferred => {
                heap_release_deferred();
            }
            Step::Acquire(lock) => drop(lock.acquire()),
            Step::AcquireAndDie(lock) => {
                std::mem::forget(lock.acquire());
                std::process::abort();
            }
        }
    }

    /// Runs `step` in a child that aborts at `point`; panics unless it died there.
    fn crash_at_point(point: &str, step: Step) {
        let child = Process::new(armed_child, (point.to_owned(), step)).start().unwrap();
        assert_eq!(child.wait(), -SIGABRT, "the child did not die at crash point {point}");
    }

    /// `n` consecutive large blocks of `len` bytes from the untouched end of the heap
    /// (larger than every free extent, so first fit cannot place them elsewhere).
    fn consecutive_blocks(n: usize) -> (Vec<u64>, usize) {
        loop {
            let largest = heap_check(&[]).unwrap().iter().map(|&(_, size)| size as usize).max().unwrap_or(0);
            let len = (largest + PAGE).max(32 * PAGE);
            let blocks: Vec<u64> = (0..n).map(|_| heap_alloc(len).unwrap()).collect();
            if blocks.windows(2).all(|w| w[1] == w[0] + len as u64) {
                return (blocks, len);
            }
            // Another thread allocated in between: try again.
            for &b in &blocks {
                // SAFETY: allocated just above, unused.
                unsafe { heap_free(b, len) };
            }
        }
    }

    /// After the crash: the free list is well formed, clear of the blocks still live, and
    /// the heap still serves (the dead holder's lock is taken over).
    fn assert_heap_sound(point: &str, live: &[(u64, usize)]) {
        if let Err(e) = heap_check(live) {
            panic!("after a crash at {point}: {e}");
        }
        let len = 64 * PAGE;
        let fresh = heap_alloc(len).unwrap();
        let mut all = live.to_vec();
        all.push((fresh, len));
        if let Err(e) = heap_check(&all) {
            panic!("after a crash at {point} and one allocation: {e}");
        }
        // SAFETY: allocated just above, unused.
        unsafe { heap_free(fresh, len) };
    }

    /// A free that merges with both neighbours, killed at each step: the merged range is
    /// never free twice over (an extent overlapping another) nor reachable while live.
    #[test]
    fn a_large_free_killed_at_any_step_hands_nothing_out_twice() {
        let _alone = common::leak_check(LIMIT);
        for point in [
            "heap.free_large.released",
            "heap.free_large.locked",
            "heap.free_large.next_written",
            "heap.free_large.size_written",
        ] {
            // [a free][b freed by the child][c free][d live]
            let (blocks, len) = consecutive_blocks(4);
            let [a, b, c, d] = blocks[..] else { unreachable!() };
            // SAFETY: allocated above, freed once, unused.
            unsafe { heap_free(a, len) };
            // SAFETY: as above.
            unsafe { heap_free(c, len) };
            let before = heap_in_use();
            crash_at_point(point, Step::Free(b, len));
            assert_heap_sound(point, &[(d, len)]);
            // Uncounted first, then given back: cut short, it is neither (leaked).
            assert_eq!(heap_in_use(), before - len as u64, "in_use after a free cut short at {point}");
            // SAFETY: allocated above, freed once, unused.
            unsafe { heap_free(d, len) };
        }
    }

    /// A free that gives its range back to the untouched end of the heap, killed at each
    /// step: the range is never both below the bump pointer's end and in the free list.
    #[test]
    fn a_large_free_into_the_untouched_end_killed_at_any_step_hands_nothing_out_twice() {
        let _alone = common::leak_check(LIMIT);
        for point in ["heap.free_large.released", "heap.free_large.locked", "heap.free_large.unlinked"] {
            // [a free][b freed by the child][c freed: back to the untouched end]
            let (blocks, len) = consecutive_blocks(3);
            let [a, b, c] = blocks[..] else { unreachable!() };
            // SAFETY: allocated above, freed once, unused.
            unsafe { heap_free(a, len) };
            // SAFETY: as above.
            unsafe { heap_free(c, len) };
            let before = heap_in_use();
            crash_at_point(point, Step::Free(b, len));
            assert_heap_sound(point, &[]);
            // Uncounted first, then given back: cut short, it is neither (leaked).
            assert_eq!(heap_in_use(), before - len as u64, "in_use after a free cut short at {point}");
        }
    }

    /// An allocation killed at each step: what it took is lost with it (and counted), the
    /// rest of the heap is intact.
    #[test]
    fn a_large_allocation_killed_at_any_step_leaves_the_heap_sound() {
        let _alone = common::leak_check(LIMIT);
        for point in [
            "heap.alloc_large.locked",
            "heap.alloc_large.rest_written",
            "heap.alloc_large.unlinked",
            "heap.alloc_large.bumped",
        ] {
            // [e free, twice the request: split by the child][g live]
            let (blocks, len) = consecutive_blocks(3);
            let [e1, _e2, g] = blocks[..] else { unreachable!() };
            // SAFETY: allocated above, freed once each, unused.
            unsafe { heap_free(e1, len) };
            // SAFETY: as above; merges with e1.
            unsafe { heap_free(blocks[1], len) };
            // Larger than every free extent: from the untouched end.
            let request = if point == "heap.alloc_large.bumped" { 4 * len } else { len };
            let before = heap_in_use();
            crash_at_point(point, Step::Alloc(request));
            assert_heap_sound(point, &[(g, len)]);
            // Taken, then counted: cut short, it is taken and not counted (leaked).
            assert_eq!(heap_in_use(), before, "in_use after an allocation cut short at {point}");
            // SAFETY: allocated above, freed once, unused.
            unsafe { heap_free(g, len) };
        }
    }

    /// Large enough that parking it evicts smaller warm blocks rather than finding no room,
    /// and not a whole number of MiB, so that no other warm block is a closer fit.
    const WARM_LEN: usize = (32 << 20) + 3 * PAGE;

    fn overlaps((a, a_len): (u64, usize), (b, b_len): (u64, usize)) -> bool {
        a < b + b_len as u64 && b < a + a_len as u64
    }

    /// A large message's block freed to the warm slots by a process killed half-way: the
    /// block is lost (neither free nor warm), never handed out twice.
    #[test]
    fn a_block_parked_warm_by_a_process_killed_half_way_is_never_handed_out_twice() {
        let _alone = common::leak_check(LIMIT);
        let point = "heap.park.len_written";
        let block = heap_alloc(WARM_LEN).unwrap();
        let before = heap_in_use();
        crash_at_point(point, Step::FreeWarm(block, WARM_LEN));
        // Still ours as far as the heap knows: a leak, not a free block or a warm one.
        assert_heap_sound(point, &[(block, WARM_LEN)]);
        // Uncounted first, then parked: cut short, it is neither (leaked).
        assert_eq!(heap_in_use(), before - WARM_LEN as u64, "in_use after a park cut short");
        let next = heap_alloc_dirty(WARM_LEN).unwrap();
        assert!(!overlaps((next, WARM_LEN), (block, WARM_LEN)), "the lost block was handed out");
        // SAFETY: allocated just above, unused.
        unsafe { heap_free(next, WARM_LEN) };
    }

    /// Over the warm budget (256 MiB), so that it is never parked warm, and larger than
    /// every free extent, so that an allocation of its size finds no free room.
    fn later_len() -> usize {
        let largest = heap_check(&[]).unwrap().iter().map(|&(_, size)| size as usize).max().unwrap_or(0);
        (largest + PAGE).max((256 << 20) + 4 * PAGE)
    }

    /// Runs `step` in a child that is not armed; panics unless it exited cleanly.
    fn in_child(step: Step) {
        let child = Process::new(armed_child, ("none".to_owned(), step)).start().unwrap();
        assert_eq!(child.wait(), 0, "the child failed");
    }

    /// A block freed by a busy pool worker waits for its release: neither free nor handed
    /// out meanwhile, and released (its range free again) when an allocation finds no free
    /// room.
    #[test]
    fn a_block_whose_release_waits_is_not_handed_out_until_released() {
        let _alone = common::leak_check(LIMIT);
        let len = later_len();
        let block = heap_alloc(len).unwrap();
        let before = heap_in_use();
        in_child(Step::FreeLater(block, len));
        assert_eq!(heap_in_use(), before - len as u64, "uncounted once freed");
        assert!(heap_deferred() >= len as u64, "the release waits");
        heap_check(&[]).expect("the waiting block is sound");
        assert!(heap_check(&[(block, len)]).is_err(), "the waiting block is no longer the caller's");
        // No free extent fits: the waiting blocks are released first, and the range is reused.
        let next = heap_alloc(len).unwrap();
        assert_eq!(heap_deferred(), 0, "released when the room was needed");
        heap_check(&[(next, len)]).expect("sound after the release");
        // SAFETY: allocated just above, unused.
        unsafe { heap_free(next, len) };
    }

    /// A block whose release is being deferred by a process killed half-way: the block is
    /// lost (neither free nor waiting), never handed out twice.
    #[test]
    fn a_block_deferred_by_a_process_killed_half_way_is_never_handed_out_twice() {
        let _alone = common::leak_check(LIMIT);
        let point = "heap.later.written";
        let len = later_len();
        let block = heap_alloc(len).unwrap();
        let waiting = heap_deferred();
        let before = heap_in_use();
        crash_at_point(point, Step::FreeLater(block, len));
        assert_heap_sound(point, &[(block, len)]);
        assert_eq!(heap_deferred(), waiting, "the block never joined the waiting ones");
        assert_eq!(heap_in_use(), before - len as u64, "in_use after a deferral cut short");
        let next = heap_alloc(len).unwrap();
        assert!(!overlaps((next, len), (block, len)), "the lost block was handed out");
        // SAFETY: allocated just above, unused.
        unsafe { heap_free(next, len) };
    }

    /// A waiting block whose pages a process was giving back when it was killed: still
    /// waiting, and released whole by the next releaser (nothing lost).
    #[test]
    fn a_waiting_block_whose_releaser_was_killed_while_punching_it_stays_listed() {
        let _alone = common::leak_check(LIMIT);
        let point = "heap.later.punched";
        let len = later_len();
        let block = heap_alloc(len).unwrap();
        in_child(Step::FreeLater(block, len));
        crash_at_point(point, Step::ReleaseDeferred);
        assert!(heap_deferred() >= len as u64, "the block still waits");
        assert!(heap_check(&[(block, len)]).is_err(), "the block is still listed");
        heap_check(&[]).expect("sound with the block still listed");
        assert!(heap_release_deferred() >= 1, "the next releaser (a dead one's lock taken over) frees it");
        assert_eq!(heap_deferred(), 0);
        assert_heap_sound(point, &[]);
        let next = heap_alloc(len).unwrap();
        heap_check(&[(next, len)]).expect("sound after the release");
        // SAFETY: allocated just above, unused.
        unsafe { heap_free(next, len) };
    }

    /// A waiting block taken for its release by a process killed before it freed it: lost,
    /// never handed out twice.
    #[test]
    fn a_waiting_block_released_by_a_process_killed_half_way_is_never_handed_out_twice() {
        let _alone = common::leak_check(LIMIT);
        let point = "heap.later.taken";
        let len = later_len();
        let block = heap_alloc(len).unwrap();
        in_child(Step::FreeLater(block, len));
        heap_check(&[]).expect("the block waits soundly");
        crash_at_point(point, Step::ReleaseDeferred);
        assert_heap_sound(point, &[(block, len)]);
        let next = heap_alloc(len).unwrap();
        assert!(!overlaps((next, len), (block, len)), "the lost block was handed out");
        // SAFETY: allocated just above, unused.
        unsafe { heap_free(next, len) };
    }

    /// A warm block taken for a large message by a process killed before it counted it:
    /// the block (and what it had beyond the request) is lost, never handed out twice.
    #[test]
    fn a_warm_block_taken_by_a_process_killed_half_way_is_never_handed_out_twice() {
        let _alone = common::leak_check(LIMIT);
        let point = "heap.unpark.taken";
        // Taken whole, and taken for less than its size (the rest is freed after the point).
        for (parked, asked) in [(WARM_LEN, WARM_LEN), (WARM_LEN, WARM_LEN - 2 * PAGE)] {
            let block = heap_alloc(parked).unwrap();
            // SAFETY: allocated just above, freed once, unused.
            unsafe { heap_free_warm(block, parked) };
            heap_check(&[]).expect("the block is parked soundly");
            let before = heap_in_use();
            crash_at_point(point, Step::AllocDirty(asked));
            assert_heap_sound(point, &[(block, parked)]);
            // Taken, then counted: cut short, it is taken and not counted (leaked).
            assert_eq!(heap_in_use(), before, "in_use after a take cut short");
            let next = heap_alloc_dirty(parked).unwrap();
            assert!(!overlaps((next, parked), (block, parked)), "the lost block was handed out");
            // SAFETY: allocated just above, unused.
            unsafe { heap_free(next, parked) };
        }
    }

    /// A process killed while it takes over a dead holder's lock leaves the lock to the
    /// next one, who is told the holder died.
    #[test]
    fn a_process_killed_while_taking_over_a_dead_holders_lock_passes_it_on() {
        let _heap = common::heap_user(LIMIT);
        let lock = Lock::new().unwrap();
        crash_at_point("none", Step::AcquireAndDie(lock.clone()));
        crash_at_point("mutex.take_over.claimed", Step::Acquire(lock.clone()));
        assert!(lock.acquire().unwrap().owner_died(), "the lock comes back taken over");
    }

    /// `Debug` of a `Value` or an `Array` whose lock is held (here by this very thread,
    /// which holds the data as `&mut`) does not read the data: it says `<locked>`, as
    /// std's `Mutex` does.
    #[test]
    fn debug_of_a_locked_value_or_array_does_not_read_it() {
        let _heap = common::heap_user(LIMIT);
        let value = multiproc::Value::new(7u64).unwrap();
        assert_eq!(format!("{value:?}"), "Value(7)");
        let mut guard = value.lock();
        *guard = 8;
        assert_eq!(format!("{value:?}"), "Value(<locked>)");
        drop(guard);
        assert_eq!(format!("{value:?}"), "Value(8)");

        let array = multiproc::Array::from_slice(&[1u8, 2, 3]).unwrap();
        assert_eq!(format!("{array:?}"), "[1, 2, 3]");
        let guard = array.lock();
        assert_eq!(format!("{array:?}"), "[<locked>]");
        drop(guard);
    }

    #[derive(Clone, Copy, Debug, PartialEq, multiproc::ShmSafe)]
    #[repr(C)]
    struct Padded {
        small: u8,
        wide: u64,
        flag: bool,
    }

    /// Unlocked values and arrays written by one process and read by another at the same
    /// time, with a type that has padding: every read is a mix of whole fields that were
    /// written (the accesses are atomic per field, so there is no data race, and padding
    /// is never read as an integer).
    #[test]
    fn racy_values_and_arrays_read_whole_fields_while_another_process_writes() {
        let _heap = common::heap_user(LIMIT);
        let value = multiproc::RawValue::new(Padded { small: 0, wide: 0, flag: false }).unwrap();
        let array = multiproc::RawArray::<Padded>::new(16).unwrap();
        let writer = Process::new(write_racy, (value.clone(), array.clone())).start().unwrap();
        let mut seen = 0;
        while writer.is_alive() || seen == 0 {
            for p in std::iter::once(value.get()).chain(array.to_vec()) {
                // Fields of different writes may mix; each field is one that was written.
                assert!(p.wide < 10_000 && u8::from(p.flag) <= 1, "{p:?}");
                seen += 1;
            }
        }
        assert_eq!(writer.wait(), 0);
        assert_eq!(value.get(), Padded { small: 255, wide: 9_999, flag: true });
    }

    #[derive(Clone, Copy, Debug, PartialEq, multiproc::ShmSafe)]
    #[repr(C)]
    struct Pair<T>(T, u8, [T; 3]);

    /// The derive's field-by-field copies for tuple and generic structs (and arrays in
    /// them) round-trip every field.
    #[test]
    fn derived_tuple_and_generic_structs_round_trip_through_racy_containers() {
        let _heap = common::heap_user(LIMIT);
        let pair = Pair(0x1234_5678_9abc_def0u64, 7, [1, u64::MAX, 3]);
        let value = multiproc::RawValue::new(pair).unwrap();
        assert_eq!(value.get(), pair);
        let array = multiproc::RawArray::from_slice(&[Pair(1u16, 2, [3, 4, 5]); 3]).unwrap();
        array.set(1, Pair(9, 8, [7, 6, 5]));
        assert_eq!(array.to_vec(), [Pair(1, 2, [3, 4, 5]), Pair(9, 8, [7, 6, 5]), Pair(1, 2, [3, 4, 5])]);
    }

    fn write_racy((value, array): (multiproc::RawValue<Padded>, multiproc::RawArray<Padded>)) {
        for i in 0..10_000u64 {
            let p = Padded { small: (i % 256) as u8, wide: i, flag: i % 2 == 0 };
            value.set(p);
            array.set(i as usize % 16, p);
        }
        value.set(Padded { small: 255, wide: 9_999, flag: true });
    }

    fn truncate_segment(name: &str) {
        let file = std::fs::OpenOptions::new().write(true).open(format!("/dev/shm/{name}")).unwrap();
        file.set_len(0).unwrap();
    }

    fn read_truncated((shm, mapped, cut): (multiproc::SharedMemory, multiproc::Event, multiproc::Event)) {
        mapped.set();
        cut.wait().unwrap();
        let mut out = [0u8; 16];
        shm.read_at(4096, &mut out);
    }

    /// A named segment truncated by another process: the safe `read_at` is not killed by
    /// SIGBUS touching a page that no longer exists; it panics (here, in a child, so the
    /// test sees how it ended).
    #[test]
    fn reading_a_segment_another_process_truncated_is_no_sigbus() {
        let _watchdog = common::heap_user(LIMIT);
        let shm = multiproc::SharedMemory::builder().size(2 * PAGE).track(false).create().unwrap();
        shm.write_at(4096, b"before the cut");
        let (mapped, cut) = (multiproc::Event::new().unwrap(), multiproc::Event::new().unwrap());
        let args = (shm.clone_handle().unwrap(), mapped.clone(), cut.clone());
        let reader = Process::new(read_truncated, args).start().unwrap();
        mapped.wait().unwrap();
        truncate_segment(shm.name());
        shm.unlink().unwrap();
        cut.set();
        let ended = reader.join();
        assert!(matches!(ended, Err(multiproc::JoinError::Panicked(_))), "{ended:?}");
    }

    /// The same, with the error-returning accessors: a typed error, and nothing written.
    #[test]
    fn a_segment_truncated_by_another_process_gives_a_typed_error() {
        let _watchdog = common::heap_user(LIMIT);
        let shm = multiproc::SharedMemory::builder().size(2 * PAGE).track(false).create().unwrap();
        shm.write_at(10, b"kept");
        Process::new(truncate_to_a_page, shm.name().to_owned()).start().unwrap().join().unwrap();
        shm.unlink().unwrap();
        let mut out = [0u8; 4];
        shm.try_read_at(10, &mut out).unwrap();
        assert_eq!(&out, b"kept", "what is left is still readable");
        let read = shm.try_read_at(PAGE, &mut out);
        let write = shm.try_write_at(PAGE, b"gone");
        let name = shm.name().to_owned();
        for result in [read, write] {
            match result {
                Err(multiproc::SharedMemoryError::Truncated { name: n, size, needed }) => {
                    assert_eq!((n.as_str(), size, needed), (name.as_str(), PAGE, PAGE + 4));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    fn truncate_to_a_page(name: String) {
        let file = std::fs::OpenOptions::new().write(true).open(format!("/dev/shm/{name}")).unwrap();
        file.set_len(PAGE as u64).unwrap();
    }

    const LARGE: usize = 200_000;

    fn put_armed((point, queue, byte): (String, multiproc::Queue<Vec<u8>>, u8)) {
        crash_at(&point);
        queue.put(vec![byte; LARGE]).unwrap();
    }

    /// Takes one message, then dies at `point` in the next take: the ring gives a large
    /// message's block back in the take after it (the one that was read stays valid until
    /// the reader is done with it), so the second take is the one that frees.
    fn get_armed((point, queue): (String, multiproc::Queue<Vec<u8>>)) {
        queue.get().unwrap();
        crash_at(&point);
        queue.get().unwrap();
    }

    /// The ring behind every queue, with producers and consumers killed at each step of the
    /// heap calls of a large message (its block taken, its block given back): the queue
    /// goes on delivering in order, nothing hangs, and the heap stays sound.
    #[test]
    fn a_queue_survives_processes_killed_inside_the_heap_calls_of_large_messages() {
        let _alone = common::leak_check(LIMIT);
        let queue = multiproc::Queue::<Vec<u8>>::new().unwrap();
        let mut next = 0u8;
        for point in ["heap.alloc_large.locked", "heap.alloc_large.bumped,heap.alloc_large.unlinked"] {
            let child = Process::new(put_armed, (point.to_owned(), queue.clone(), 0xEE)).start().unwrap();
            assert_eq!(child.wait(), -SIGABRT, "the producer did not die at {point}");
            for byte in [next, next + 1] {
                queue.put(vec![byte; LARGE]).unwrap();
            }
            for byte in [next, next + 1] {
                assert_eq!(queue.get().unwrap(), vec![byte; LARGE], "after a producer killed at {point}");
            }
            next += 2;
            assert_heap_sound(point, &[]);
        }
        for point in ["heap.free_large.released", "heap.free_large.locked"] {
            for byte in [next, next + 1] {
                queue.put(vec![byte; LARGE]).unwrap();
            }
            let child = Process::new(get_armed, (point.to_owned(), queue.clone())).start().unwrap();
            assert_eq!(child.wait(), -SIGABRT, "the consumer did not die at {point}");
            // The consumer received `next` and died inside its next take, before that take
            // returned: `next + 1` is still in the queue, nothing lost.
            assert_eq!(queue.get().unwrap(), vec![next + 1; LARGE], "after a consumer killed at {point}");
            next += 2;
            assert_heap_sound(point, &[]);
        }
    }
}

// --- the public surface, attacked as a user would (auds44) ---

mod surface {
    // (ShmSafe's rule 7, all bytes zero a valid value, came from a test here that made a
    // `NonZeroU8` wrapper ShmSafe by the six rules before it: `RawArray::new` read back as
    // `None` through `Some`. Its impl now breaks the rule, so the test went with the fix.)

    use std::time::Duration;

    use multiproc::{Array, Lock, Process, RLock, SharedLock, Value};

    use crate::common;

    const LIMIT: Duration = Duration::from_secs(60);
    const SHORT: Duration = Duration::from_millis(20);

    /// Whether this process (a child) gets the value's guard within a short wait.
    fn locks_value(value: Value<u64>) -> bool {
        value.lock_timeout(SHORT).is_some()
    }

    fn locks_array(array: Array<u64>) -> bool {
        array.lock_timeout(SHORT).is_some()
    }

    /// Nobody else, on another thread or in another process, gets a guard of `value` or
    /// `array` now.
    fn nobody_else_locks(value: &Value<u64>, array: &Array<u64>) {
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(
                    value.try_lock().is_none() && value.lock_timeout(SHORT).is_none(),
                    "a second &mut of the value"
                );
                assert!(
                    array.try_lock().is_none() && array.lock_timeout(SHORT).is_none(),
                    "a second &mut of the array"
                );
            });
        });
        assert!(!Process::new(locks_value, value.clone()).start().unwrap().join().unwrap(), "in a child");
        assert!(!Process::new(locks_array, array.clone()).start().unwrap().join().unwrap(), "in a child");
    }

    /// A shared lock released under a live guard (safe: Python lets any thread release a
    /// `Lock`, and an `RLock`'s level may be released by hand): the value's own access
    /// still excludes every other guard, so no second `&mut` exists.
    #[test]
    fn a_guard_outlives_its_shared_lock_released_under_it() {
        let _heap = common::heap_user(LIMIT);
        for shared in [SharedLock::from(Lock::new().unwrap()), SharedLock::from(RLock::new().unwrap())] {
            let value = Value::with_lock(1u64, shared.clone()).unwrap();
            let array = Array::with_lock(&[1u64; 4], shared.clone()).unwrap();
            let release = || match &shared {
                SharedLock::Lock(lock) => lock.release().unwrap(),
                SharedLock::RLock(lock) => lock.release().unwrap(),
            };
            let mut v = value.lock();
            release();
            let mut a = array.lock();
            release();
            nobody_else_locks(&value, &array);
            *v += 1;
            a[0] += 1;
            drop((v, a));
            assert_eq!((value.get(), array.get(0)), (2, 2));
        }
    }

    /// A guard leaked with `mem::forget` keeps its lock for ever: a stuck lock, never a
    /// second guard (no thread or process of the family takes it over while this one
    /// lives).
    #[test]
    fn a_forgotten_guard_keeps_its_lock_from_everybody() {
        let _heap = common::heap_user(LIMIT);
        let value = Value::new(1u64).unwrap();
        let array = Array::from_slice(&[1u64; 4]).unwrap();
        std::mem::forget(value.lock());
        std::mem::forget(array.lock());
        nobody_else_locks(&value, &array);
        let shared = RLock::new().unwrap();
        let value = Value::with_lock(1u64, shared.clone()).unwrap();
        let array = Array::with_lock(&[1u64; 4], shared).unwrap();
        std::mem::forget(value.lock());
        std::mem::forget(array.lock());
        // This thread owns the `RLock`: its own second guard is refused too.
        assert!(value.lock_timeout(SHORT).is_none() && array.try_lock().is_none());
        nobody_else_locks(&value, &array);
    }

    /// A guard of a value that shares an `RLock` moved to another thread (it is `Send`):
    /// the thread that took it owns the `RLock` still, and its next lock of the same value
    /// is refused (it would alias the moved guard), not let in as one more level.
    #[test]
    fn a_guard_moved_to_another_thread_is_not_aliased_by_its_takers_next_lock() {
        let _heap = common::heap_user(LIMIT);
        let value = Value::with_lock(1u64, RLock::new().unwrap()).unwrap();
        let (give, taken) = std::sync::mpsc::channel::<multiproc::ValueGuard<'_, u64>>();
        let (written, wrote) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut guard = taken.recv().unwrap();
                *guard += 1;
                written.send(()).unwrap();
                released.recv().ok();
                drop(guard);
            });
            give.send(value.lock()).unwrap();
            wrote.recv().unwrap();
            assert!(value.try_lock().is_none(), "try_lock aliased the moved guard");
            assert!(value.lock_timeout(SHORT).is_none(), "lock_timeout aliased the moved guard");
            drop(release);
        });
        assert_eq!(value.get(), 2);
    }

    /// In a child (one thread, so `set_var` is sound): a file of its own, whose descriptor
    /// a `MULTIPROC_BOOT` set afterwards names, then `try_init`; what the file reads after.
    fn init_with_a_boot_variable_naming_an_owned_descriptor(_: ()) -> Result<String, String> {
        use std::io::{Read, Seek};
        use std::os::fd::AsRawFd;
        let path = std::env::temp_dir().join(format!("mp-auds44-{}", std::process::id()));
        std::fs::write(&path, "mine").unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let value = format!("spawn:{}:{}", file.as_raw_fd(), std::process::id());
        // SAFETY: this process runs one thread: nothing reads the environment meanwhile.
        unsafe { std::env::set_var("MULTIPROC_BOOT", value) };
        multiproc::try_init().map_err(|e| e.to_string())?;
        let mut read = String::new();
        file.rewind().map_err(|e| e.to_string())?;
        file.read_to_string(&mut read).map_err(|e| e.to_string())?;
        Ok(read)
    }

    /// The fields of a packed call (`sys::Packed`): code offsets into the executable.
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct PackedWire {
        identity: u64,
        in_executable: bool,
        shim: u64,
        target: u64,
        runner: u64,
    }

    /// A `Barrier`'s handle as it travels: its object, its timeout, its action.
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct BarrierWire {
        shared: crate::WireCopy,
        timeout: Option<Duration>,
        /// The call, its seal, the encoded arguments.
        action: Option<(PackedWire, u64, Vec<u8>)>,
    }

    /// Serializes as an `S`, deserializes as a `D` (a message that lies about its type).
    struct Liar<S, D>(Option<S>, Option<D>);

    impl<S: serde::Serialize, D> serde::Serialize for Liar<S, D> {
        fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
            self.0.as_ref().expect("only the sender serializes").serialize(serializer)
        }
    }

    impl<'de, S, D: serde::Deserialize<'de>> serde::Deserialize<'de> for Liar<S, D> {
        fn deserialize<Z: serde::Deserializer<'de>>(deserializer: Z) -> Result<Self, Z::Error> {
            Ok(Liar(None, Some(D::deserialize(deserializer)?)))
        }
    }

    fn barrier_action(_: u32) {}

    /// What a forged barrier action calls instead: ends the process with a code of its own.
    fn chosen_by_the_message() {
        std::process::exit(77);
    }

    /// What a forged barrier action names as its runner instead (a runner's type, as the
    /// crate's runner of a `fn(u32)` action): ends the process with a code of its own.
    fn runner_chosen_by_the_message(_: fn(u32), _: &mut dyn std::any::Any) {
        std::process::exit(77);
    }

    /// In a child: a barrier's handle, captured as plain numbers on its way (its object's
    /// count stays in flight, as for any message not yet received), one word of its
    /// action's `Packed` (`word`) changed, and sent on as a `Barrier`. What the receive says.
    /// A code offset is moved onto a function of this test that ends the process, so a
    /// seal that left that word out would let the receiver call it.
    fn receive_a_barrier_with_a_forged_action(word: String) -> String {
        let barrier = multiproc::Barrier::builder(2).action_with(barrier_action, 7u32).build().unwrap();
        let (a, b) = multiproc::Pipe::<Liar<multiproc::Barrier, BarrierWire>>::new().unwrap();
        a.send(Liar(Some(barrier.clone()), None)).unwrap();
        let mut wire = b.recv().unwrap().1.expect("decoded");
        let (packed, _, _) = wire.action.as_mut().expect("the action travels with the handle");
        // The offsets are distances in one image: a function's is the action's (`target`),
        // moved by the distance between the two functions.
        let target = packed.target;
        let offset_of = |f: usize| target.wrapping_add(f.wrapping_sub(barrier_action as fn(u32) as usize) as u64);
        match word.as_str() {
            "shim" => packed.shim = offset_of(chosen_by_the_message as fn() as usize),
            "target" => packed.target = offset_of(chosen_by_the_message as fn() as usize),
            "runner" => {
                packed.runner = offset_of(runner_chosen_by_the_message as fn(fn(u32), &mut dyn std::any::Any) as usize)
            }
            "identity" => packed.identity ^= 1,
            "in_executable" => packed.in_executable = !packed.in_executable,
            other => panic!("no word {other}"),
        }
        let (a, b) = multiproc::Pipe::<Liar<BarrierWire, multiproc::Barrier>>::new().unwrap();
        a.send(Liar(Some(wire), None)).unwrap();
        match b.recv() {
            Ok(_) => "received".to_string(),
            Err(e) => e.to_string(),
        }
    }

    /// A `Barrier`'s action crosses as code offsets in its handle's bytes, which safe serde
    /// code can write: its decoding must not call what the bytes name unless this family
    /// packed it (a keyed seal), or a message chooses what code the receiver runs. Each word
    /// of the call is sealed (each of the three offsets, moved alone, is refused), and the
    /// seal is checked before the executable's identity (a changed identity or flag says
    /// "did not pack", not "another executable").
    #[test]
    fn a_barrier_action_forged_in_a_message_is_refused_not_called() {
        let _heap = common::heap_user(LIMIT);
        for word in ["shim", "target", "runner", "identity", "in_executable"] {
            let child = Process::new(receive_a_barrier_with_a_forged_action, word.to_string()).start().unwrap();
            let said = child.join().unwrap();
            assert!(said.contains("did not pack"), "{word}: {said}");
        }
    }

    /// `MULTIPROC_BOOT` is read at start-up, as the loader runs the constructors; set later,
    /// it names no descriptor `init()` may take: the file stays its owner's, and `init()`
    /// returns (it took the descriptor as its boot socket, closed it and ended the process).
    #[test]
    fn init_takes_no_descriptor_from_a_boot_variable_set_after_start_up() {
        let _heap = common::heap_user(LIMIT);
        let child = Process::new(init_with_a_boot_variable_naming_an_owned_descriptor, ()).start().unwrap();
        assert_eq!(child.join().unwrap(), Ok("mine".to_string()));
    }
}

/// Runs `examples/chaos.rs` (built by `cargo test` with the other examples) with `args` and
/// `env`, and fails unless every round held; prints its output.
fn chaos(args: &[&str], env: &[(&str, &str)]) {
    // target/<profile>/deps/soundness-<hash> -> target/<profile>/examples/chaos
    let exe = std::env::current_exe().unwrap();
    let program = exe.parent().and_then(|deps| deps.parent()).unwrap().join("examples").join("chaos");
    assert!(
        program.exists(),
        "{} is missing: `cargo test --workspace` builds it (or `cargo build --example chaos`)",
        program.display()
    );
    let out = std::process::Command::new(&program).args(args).envs(env.iter().copied()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success() && stdout.contains("chaos: all held"), "{:?}\n{stdout}", out.status);
}

/// `kill -9` at random for a few seconds (examples/chaos.rs: queues with handles in their
/// messages, a pool, a manager's dict and lock, `Array` locks; a killer process picks a
/// random descendant every few milliseconds): every message got once or lost with its
/// consumer, every task's result or `WorkerLost`, locks of the dead taken over, no hang,
/// nothing left running, nothing in `/dev/shm`. A round's residual leak is reported, not
/// failed (see the ignored variant). A time-based seed: a failure prints it; replay with
/// `cargo run --example chaos -- --seed N --rounds 1`.
#[test]
fn a_short_chaos_soak_holds() {
    let _w = common::watchdog(Duration::from_secs(300));
    chaos(&["--rounds", "1", "--secs", "3"], &[]);
}

/// The long soak, exact about the heap: `CHAOS_ROUNDS` rounds (20 by default) of 5 s.
#[test]
#[ignore = "a soak of minutes: cargo test --test soundness -- --ignored a_long_chaos_soak"]
fn a_long_chaos_soak_holds_and_leaks_nothing() {
    let rounds = std::env::var("CHAOS_ROUNDS").unwrap_or_else(|_| "20".into());
    let _w = common::watchdog(Duration::from_secs(120 * rounds.parse::<u64>().unwrap_or(20) + 60));
    chaos(&["--rounds", &rounds, "--secs", "5"], &[("CHAOS_STRICT_HEAP", "1")]);
}
