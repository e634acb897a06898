//! Messages: what a message may be, through every channel.
//!
//! What a user may count on: every type that round-trips through `serde_json` round-trips
//! through a `Queue`, a `Pipe`, a process argument and result, a pool task and result, and
//! a manager container: self-describing types (`serde_json::Value`, untagged and
//! internally tagged enums, `flatten`, `skip_serializing_if`) included, handles inside
//! them still travel, and plain types keep the compact encoding. A message that cannot be
//! encoded or decoded says why and names its type, on both sides.

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use common::heap_user;
use multiproc::{Connection, Manager, Pipe, Pool, Process, Queue, ThreadPool};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

multiproc::test_support!();

const LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Mixed {
    Point { x: i64, y: i64 },
    Named { name: String, tags: Vec<String> },
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Event {
    Click { x: u32, y: u32 },
    Key { code: String },
    Quit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Flattened {
    id: u64,
    #[serde(flatten)]
    extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sparse {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    note: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    items: Vec<u32>,
    id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Optional {
    a: Option<u32>,
    b: Option<String>,
    c: Option<Vec<u8>>,
}

/// A self-describing value only in its second variant: every variant is looked at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Late {
    Nothing,
    Data(serde_json::Value),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Nested {
    events: Vec<Event>,
    mixed: Option<Mixed>,
    flat: Flattened,
    sparse: Vec<Sparse>,
    late: Vec<Late>,
    value: serde_json::Value,
}

fn nested() -> Nested {
    Nested {
        events: vec![Event::Click { x: 1, y: 2 }, Event::Key { code: "q".into() }, Event::Quit],
        mixed: Some(Mixed::Named { name: "n".into(), tags: vec!["a".into()] }),
        flat: Flattened { id: 9, extra: BTreeMap::from([("k".to_string(), json!([1, "two", null]))]) },
        sparse: vec![
            Sparse { note: None, items: vec![], id: 1 },
            Sparse { note: Some("x".into()), items: vec![3], id: 2 },
        ],
        late: vec![Late::Nothing, Late::Data(json!({"deep": {"er": [true, 1.5]}}))],
        value: json!({"a": [1, -2, 3.5], "b": {"c": null, "d": "e"}}),
    }
}

/// What every channel is asked to carry: the value, and that `serde_json` carries it too.
trait Message: Serialize + DeserializeOwned + Clone + PartialEq + Debug + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + PartialEq + Debug + Send + 'static> Message for T {}

fn echo<T>(value: T) -> T {
    value
}

/// The child's side: takes a value from the queue, sends it back through the pipe, and
/// returns it as its result.
fn relay<T: Message>((queue, back): (Queue<T>, Connection<T>)) -> T {
    let value = queue.get().unwrap();
    back.send(value.clone()).unwrap();
    value
}

/// Sends `value` through every channel and checks it arrives equal.
fn through_every_channel<T: Message + Sync>(value: T, pool: &Pool, manager: &Manager) {
    let json = serde_json::to_string(&value).unwrap();
    assert_eq!(serde_json::from_str::<T>(&json).unwrap(), value, "serde_json carries it");
    let what = std::any::type_name::<T>();

    let queue = Queue::<T>::new().unwrap();
    let (back, here) = Pipe::<T>::new().unwrap();
    let child = Process::new(relay::<T>, (queue.clone(), back)).start().unwrap();
    queue.put(value.clone()).unwrap();
    assert_eq!(here.recv().unwrap(), value, "a queue to a child, then a pipe back: {what}");
    assert_eq!(child.join().unwrap(), value, "the child's result: {what}");

    let child = Process::new(echo::<T>, value.clone()).start().unwrap();
    assert_eq!(child.join().unwrap(), value, "a process argument and result: {what}");

    assert_eq!(pool.apply(echo::<T>, value.clone()).unwrap(), value, "a pool task: {what}");
    let many = vec![value.clone(), value.clone(), value.clone()];
    assert_eq!(pool.map(echo::<T>, many.clone()).unwrap(), many, "a pool map: {what}");
    let threads = ThreadPool::new(1).unwrap();
    assert_eq!(threads.apply(echo::<T>, value.clone()).unwrap(), value, "a thread pool task: {what}");
    assert_eq!(threads.map(echo::<T>, many.clone()).unwrap(), many, "a thread pool map: {what}");

    let dict = manager.dict::<String, T>().unwrap();
    dict.insert("k".to_string(), value.clone()).unwrap();
    assert_eq!(dict.get("k").unwrap(), Some(value.clone()), "a manager dict's value: {what}");
    let list = manager.list::<T>().unwrap();
    list.push(value.clone()).unwrap();
    assert_eq!(list.to_vec().unwrap(), vec![value.clone()], "a manager list: {what}");
    let queue = manager.queue::<T>().unwrap();
    queue.put(value.clone()).unwrap();
    assert_eq!(queue.get().unwrap(), value, "a manager queue: {what}");
}

#[test]
fn every_type_serde_json_carries_goes_through_every_channel() {
    let _t = heap_user(LIMIT);
    let pool = Pool::new(2).unwrap();
    let manager = Manager::start().unwrap();
    through_every_channel(json!({"a": [1, 2, {"b": null}], "c": "d", "e": -1.5, "f": true}), &pool, &manager);
    through_every_channel(json!(42), &pool, &manager);
    for mixed in [
        Mixed::Point { x: -1, y: 2 },
        Mixed::Named { name: "x".into(), tags: vec!["t".into(), "u".into()] },
        Mixed::Number(0.5),
        Mixed::Text("hello".into()),
    ] {
        through_every_channel(mixed, &pool, &manager);
    }
    for event in [Event::Click { x: 3, y: 4 }, Event::Key { code: "Enter".into() }, Event::Quit] {
        through_every_channel(event, &pool, &manager);
    }
    through_every_channel(
        Flattened { id: 7, extra: BTreeMap::from([("a".into(), json!(1)), ("b".into(), json!({"c": [2]}))]) },
        &pool,
        &manager,
    );
    through_every_channel(Sparse { note: None, items: vec![], id: 5 }, &pool, &manager);
    through_every_channel(Sparse { note: Some("n".into()), items: vec![], id: 6 }, &pool, &manager);
    through_every_channel(Sparse { note: None, items: vec![1, 2], id: 7 }, &pool, &manager);
    through_every_channel(Optional { a: None, b: Some("b".into()), c: None }, &pool, &manager);
    through_every_channel(Late::Data(json!(["x"])), &pool, &manager);
    through_every_channel(nested(), &pool, &manager);
    through_every_channel(Some(vec![nested(), nested()]), &pool, &manager);
}

#[test]
fn a_plain_type_keeps_the_compact_encoding() {
    let _w = heap_user(LIMIT);
    multiproc::init();
    // A `u32` and a struct of options, through a raw pipe end: postcard's bytes behind one
    // tag byte, no field names.
    let (a, b) = Pipe::<Optional>::new().unwrap();
    a.send(Optional { a: Some(300), b: None, c: Some(vec![1, 2]) }).unwrap();
    let bytes = b.recv_bytes().unwrap();
    assert_eq!(bytes, [0, 1, 0xac, 0x02, 0, 1, 2, 1, 2], "tag 0 (postcard), then the fields");
    // A self-describing one carries its field names.
    let (a, b) = Pipe::<Sparse>::new().unwrap();
    a.send(Sparse { note: None, items: vec![], id: 5 }).unwrap();
    let bytes = b.recv_bytes().unwrap();
    assert_eq!(bytes[0], 1, "tag 1 (MessagePack)");
    assert!(bytes.windows(2).any(|w| w == b"id"), "{bytes:?}");
}

/// Serializes only while it holds an even number.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Picky(u32);

impl Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !self.0.is_multiple_of(2) {
            return Err(serde::ser::Error::custom(format_args!("{} is odd", self.0)));
        }
        serializer.serialize_u32(self.0)
    }
}

/// Decodes only an even number (and encodes any).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
struct Even(u32);

impl TryFrom<u32> for Even {
    type Error = String;
    fn try_from(v: u32) -> Result<Self, String> {
        if v.is_multiple_of(2) { Ok(Even(v)) } else { Err(format!("{v} is not even")) }
    }
}

impl From<Even> for u32 {
    fn from(e: Even) -> u32 {
        e.0
    }
}

#[test]
fn a_message_that_cannot_be_encoded_says_why_and_names_its_type() {
    let _t = heap_user(LIMIT);
    let queue = Queue::<Picky>::new().unwrap();
    match queue.put(Picky(3)) {
        Err(multiproc::PutError::Encode(Picky(3), e)) => {
            assert!(e.to_string().contains("3 is odd"), "{e}");
            assert!(e.to_string().contains("Picky"), "{e}");
            assert!(e.type_name().unwrap().ends_with("Picky"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    let (a, _b) = Pipe::<Vec<Picky>>::new().unwrap();
    match a.send(vec![Picky(2), Picky(5)]) {
        Err(multiproc::SendError::Encode(_, e)) => {
            assert!(e.to_string().contains("5 is odd"), "{e}");
            assert!(e.type_name().unwrap().contains("Vec") && e.type_name().unwrap().contains("Picky"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    let err = Process::new(echo::<Picky>, Picky(7)).start().unwrap_err();
    assert!(err.to_string().contains("7 is odd") && err.to_string().contains("Picky"), "{err}");
}

#[test]
fn a_message_that_cannot_be_decoded_says_why_and_names_its_type() {
    let _t = heap_user(LIMIT);
    let (a, b) = Pipe::<Even>::new().unwrap();
    a.send(Even(3)).unwrap();
    match b.recv() {
        Err(multiproc::RecvError::Decode(e)) => {
            assert!(e.to_string().contains("3 is not even"), "{e}");
            assert!(e.type_name().unwrap().ends_with("Even"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    // The same in a child, through a queue.
    let queue = Queue::<Even>::new().unwrap();
    queue.put(Even(5)).unwrap();
    let child = Process::new(take_even, queue.clone()).start().unwrap();
    let said = child.join().unwrap();
    assert!(said.contains("5 is not even") && said.contains("Even"), "{said}");
    // The same in the self-describing encoding.
    let (a, b) = Pipe::<EvenInJson>::new().unwrap();
    a.send(EvenInJson { v: json!({"a": 1}), e: Even(9) }).unwrap();
    match b.recv() {
        Err(multiproc::RecvError::Decode(e)) => {
            assert!(e.to_string().contains("9 is not even"), "{e}");
            assert!(e.type_name().unwrap().ends_with("EvenInJson"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
}

fn make_picky(n: u32) -> Picky {
    Picky(n)
}

fn make_even(n: u32) -> Even {
    Even(n)
}

/// Asserts that `error` says `why` and names `type_name`.
fn says(error: impl std::fmt::Display, why: &str, type_name: &str, channel: &str) {
    let said = error.to_string();
    assert!(said.contains(why) && said.contains(type_name), "{channel}: {said}");
}

#[test]
fn every_channel_says_why_a_message_failed_and_names_its_type_on_both_sides() {
    let _t = heap_user(LIMIT);
    // A process: its argument (sender: the parent; receiver: the child) and its result
    // (sender: the child; receiver: the parent).
    says(Process::new(echo::<Picky>, Picky(3)).start().unwrap_err(), "3 is odd", "Picky", "argument, sent");
    let child = Process::new(echo::<Even>, Even(5)).start().unwrap();
    says(child.join().unwrap_err(), "5 is not even", "Even", "argument, received");
    let child = Process::new(make_picky, 7).start().unwrap();
    says(child.join().unwrap_err(), "7 is odd", "Picky", "result, sent");
    let child = Process::new(make_even, 9).start().unwrap();
    says(child.join().unwrap_err(), "9 is not even", "Even", "result, received");

    // A pool: the task's argument and its result, each on both sides.
    let pool = Pool::new(1).unwrap();
    says(pool.apply(echo::<Picky>, Picky(3)).unwrap_err(), "3 is odd", "Picky", "pool task, sent");
    says(pool.apply(echo::<Even>, Even(5)).unwrap_err(), "5 is not even", "Even", "pool task, received");
    says(pool.apply(make_picky, 7).unwrap_err(), "7 is odd", "Picky", "pool result, sent");
    says(pool.apply(make_even, 9).unwrap_err(), "9 is not even", "Even", "pool result, received");
    says(pool.map(make_even, [2, 11]).unwrap_err(), "11 is not even", "Even", "pool map result, received");

    // A manager's containers: the item sent to the server, and the item read back.
    let manager = Manager::start().unwrap();
    let dict = manager.dict::<String, Picky>().unwrap();
    says(dict.insert("k".into(), Picky(3)).unwrap_err(), "3 is odd", "Picky", "manager dict, sent");
    let dict = manager.dict::<String, Even>().unwrap();
    dict.insert("k".into(), Even(5)).unwrap();
    says(dict.get("k").unwrap_err(), "5 is not even", "Even", "manager dict, received");
    let list = manager.list::<Picky>().unwrap();
    says(list.push(Picky(7)).unwrap_err(), "7 is odd", "Picky", "manager list, sent");
    let list = manager.list::<Even>().unwrap();
    list.push(Even(9)).unwrap();
    says(list.get(0).unwrap_err(), "9 is not even", "Even", "manager list, received");
    let queue = manager.queue::<Picky>().unwrap();
    says(queue.put(Picky(11)).unwrap_err(), "11 is odd", "Picky", "manager queue, sent");
    let queue = manager.queue::<Even>().unwrap();
    queue.put(Even(13)).unwrap();
    says(queue.get().unwrap_err(), "13 is not even", "Even", "manager queue, received");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EvenInJson {
    v: serde_json::Value,
    e: Even,
}

fn take_even(queue: Queue<Even>) -> String {
    match queue.get() {
        Err(multiproc::GetError::Decode(e)) => e.to_string(),
        other => format!("{other:?}"),
    }
}

/// A self-describing message with handles in it, the handle first: the probe gets past a
/// handle's refusal of its made-up value.
#[derive(Serialize, Deserialize)]
struct HandlesFirst {
    queue: Queue<u32>,
    meta: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    back: Option<Connection<String>>,
}

fn use_handles(m: HandlesFirst) -> String {
    let n = m.queue.get().unwrap();
    if let Some(back) = m.back {
        back.send(format!("{n} {}", m.meta["k"])).unwrap();
    }
    m.meta.to_string()
}

/// Postcard would carry it, until a field is skipped: then written again self-described,
/// the handle encoded in the first attempt given back.
#[derive(Serialize, Deserialize)]
struct HandleThenSkip {
    queue: Queue<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    note: Option<String>,
}

fn tuple_with_handle((meta, queue): (serde_json::Value, Queue<u32>)) -> String {
    format!("{} {}", queue.get().unwrap(), meta["k"])
}

#[test]
fn handles_travel_inside_self_describing_messages() {
    let _t = heap_user(LIMIT);
    let queue = Queue::<u32>::new().unwrap();
    let (back, here) = Pipe::<String>::new().unwrap();
    queue.put(41).unwrap();
    let m = HandlesFirst { queue: queue.clone(), meta: json!({"k": "v"}), back: Some(back) };
    let child = Process::new(use_handles, m).start().unwrap();
    assert_eq!(child.join().unwrap(), r#"{"k":"v"}"#);
    assert_eq!(here.recv().unwrap(), "41 \"v\"");
    // In a tuple the probe cannot get past the handle: the value after it must come
    // first, or be in a struct.
    queue.put(43).unwrap();
    let child = Process::new(tuple_with_handle, (json!({"k": [3]}), queue.clone())).start().unwrap();
    assert_eq!(child.join().unwrap(), "43 [3]");
    // Through a queue, and with the optional handle skipped (the fallback after postcard).
    let carrier = Queue::<HandlesFirst>::new().unwrap();
    queue.put(42).unwrap();
    carrier.put(HandlesFirst { queue: queue.clone(), meta: json!([1]), back: None }).unwrap();
    let got = carrier.get().unwrap();
    assert_eq!(got.queue.get().unwrap(), 42);
    assert_eq!(got.meta, json!([1]));
    drop(got);
    let carrier = Queue::<HandleThenSkip>::new().unwrap();
    for (n, note) in [(44, None), (45, Some("n".to_string()))] {
        queue.put(n).unwrap();
        carrier.put(HandleThenSkip { queue: queue.clone(), note: note.clone() }).unwrap();
        let got = carrier.get().unwrap();
        assert_eq!((got.queue.get().unwrap(), got.note), (n, note));
    }
}

/// Shared objects of every kind beside a self-describing value: each handle must read back
/// what it wrote in MessagePack.
#[derive(Serialize, Deserialize)]
struct Objects {
    meta: serde_json::Value,
    conn: Connection<serde_bytes::ByteBuf>,
    raw: multiproc::RawArray<u8>,
    array: multiproc::Array<i32>,
    value: multiproc::Value<u32>,
}

fn touch_objects(o: Objects) -> (usize, u8, i32, u32, String) {
    let m = o.conn.recv().unwrap();
    (m.len(), o.raw.get(1), o.array.get(2), o.value.get(), o.meta.to_string())
}

#[test]
fn every_kind_of_handle_travels_self_described() {
    let _t = heap_user(LIMIT);
    let (rx, tx) = Pipe::<serde_bytes::ByteBuf>::one_way().unwrap();
    let raw = multiproc::RawArray::<u8>::new(4).unwrap();
    raw.set(1, 7);
    let array = multiproc::Array::<i32>::new(4).unwrap();
    array.set(2, -3);
    let value = multiproc::Value::new(9u32).unwrap();
    tx.send(serde_bytes::ByteBuf::from(vec![1, 2, 3])).unwrap();
    let objects = Objects { meta: json!(null), conn: rx, raw, array, value };
    let child = Process::new(touch_objects, objects).start().unwrap();
    assert_eq!(child.join().unwrap(), (3, 7, -3, 9, "null".to_string()));
}

/// Panics when serialized.
#[derive(Debug, Deserialize)]
struct Boom;

impl Serialize for Boom {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("boom while serializing");
    }
}

/// A handle, then a field whose `Serialize` panics.
#[derive(Serialize, Deserialize)]
struct PanicsAfterHandle {
    queue: Queue<u32>,
    boom: Boom,
}

#[test]
fn a_panic_while_encoding_ends_the_encoding_and_gives_the_handles_back() {
    let _t = heap_user(LIMIT);
    let queue = Queue::<u32>::new().unwrap();
    let carrier = Queue::<PanicsAfterHandle>::new().unwrap();
    let message = PanicsAfterHandle { queue: queue.clone(), boom: Boom };
    let put = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| carrier.put(message)));
    assert!(put.is_err(), "the panic reaches the caller");
    // Outside a message again: a handle refuses to serialize to anything else.
    let json = serde_json::to_string(&queue);
    assert!(json.is_err(), "a handle serialized to JSON after the panic: {json:?}");
    // And the handle encoded before the panic was given back: the queue works as before.
    queue.put(1).unwrap();
    assert_eq!(queue.get().unwrap(), 1);
}

/// Two queues of the same kind of object, told apart by their message type only after
/// the handle is received: serde tries each variant of an untagged enum on the same bytes.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum AnyQueue {
    Ints(Queue<u32>),
    Texts(Queue<String>),
}

/// review37 M2 (a): a handle in an untagged enum travels in any variant, not only the
/// first one tried. The `Ints` attempt receives the handle (a pending receive, reserving
/// its message's count), then refuses the queue's message type and drops it; the `Texts`
/// attempt's receive found no count unreserved, and the message failed to decode ("the
/// handle was received already"). It now adopts the refused attempt's reservation.
#[test]
fn a_handle_travels_in_a_later_variant_of_an_untagged_enum() {
    let _t = heap_user(LIMIT);
    let carrier = Queue::<AnyQueue>::new().unwrap();
    let ints = Queue::<u32>::new().unwrap();
    carrier.put(AnyQueue::Ints(ints.clone())).unwrap();
    assert!(matches!(carrier.get(), Ok(AnyQueue::Ints(_))), "the first variant tried");
    let texts = Queue::<String>::new().unwrap();
    carrier.put(AnyQueue::Texts(texts.clone())).unwrap();
    match carrier.get() {
        Ok(AnyQueue::Texts(got)) => {
            got.put("x".to_string()).unwrap();
            assert_eq!(texts.get().unwrap(), "x");
        }
        Ok(AnyQueue::Ints(_)) => panic!("a Queue<String> read as a Queue<u32>"),
        Err(e) => panic!("the second variant's handle: {e}"),
    }
}

/// review37 M2 (a), the handle's object also in other messages, and twice in one message:
/// each copy is received once, whatever the variants tried, and the heap comes back.
#[test]
fn a_handle_in_a_later_variant_of_an_untagged_enum_takes_no_other_copys_count() {
    let leaks = common::leak_check(LIMIT);
    {
        let texts = Queue::<String>::new().unwrap();
        let carrier = Queue::<Vec<AnyQueue>>::new().unwrap();
        let plain = Queue::<Queue<String>>::new().unwrap();
        carrier.put(vec![AnyQueue::Texts(texts.clone()), AnyQueue::Texts(texts.clone())]).unwrap();
        carrier.put(vec![AnyQueue::Texts(texts.clone())]).unwrap();
        plain.put(texts.clone()).unwrap();
        for expected in [2, 1] {
            let got = carrier.get().unwrap();
            assert_eq!(got.len(), expected);
            for (i, any) in got.into_iter().enumerate() {
                let AnyQueue::Texts(got) = any else { panic!("a Queue<String> read as a Queue<u32>") };
                got.put(format!("{expected} {i}")).unwrap();
                assert_eq!(texts.get().unwrap(), format!("{expected} {i}"));
            }
        }
        let got = plain.get().unwrap();
        got.put("plain".to_string()).unwrap();
        assert_eq!(texts.get().unwrap(), "plain");
    }
    leaks.assert_no_leak();
}

/// A queue accepted by the first variant, which then fails on the field beside it.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Job {
    Count(Queue<String>, u32),
    Name(Queue<String>, String),
}

/// review47 M1: the `Count` attempt receives the queue (its type is right), fails on the
/// `u32` beside it, and serde drops the queue as any value: its `Name` attempt's receive
/// found no count unreserved, the message failed "the handle was received already" and
/// was lost. A handle dropped inside the decoding that received it is now given back to
/// that decoding, for its next attempt at the same bytes.
#[test]
fn a_handle_in_a_variant_that_fails_on_another_field_travels_in_the_next() {
    let leaks = common::leak_check(LIMIT);
    {
        let q = Queue::<String>::new().unwrap();
        let carrier = Queue::<Job>::new().unwrap();
        carrier.put(Job::Name(q.clone(), "x".to_string())).unwrap();
        match carrier.get() {
            Ok(Job::Name(got, name)) => {
                assert_eq!(name, "x");
                got.put("through the message's copy".to_string()).unwrap();
                assert_eq!(q.get().unwrap(), "through the message's copy");
            }
            Ok(Job::Count(..)) => panic!("a string read as a u32"),
            Err(e) => panic!("the second variant's handle: {e}"),
        }
    }
    leaks.assert_no_leak();
}

/// review47 M1, the queue twice in one message and once in another: each copy is received
/// once, whichever attempt dropped it, and the heap comes back.
#[test]
fn a_handle_in_a_variant_that_fails_on_another_field_takes_no_other_copys_count() {
    let leaks = common::leak_check(LIMIT);
    {
        let q = Queue::<String>::new().unwrap();
        let carrier = Queue::<Vec<Job>>::new().unwrap();
        let plain = Queue::<Queue<String>>::new().unwrap();
        carrier.put(vec![Job::Name(q.clone(), "a".to_string()), Job::Name(q.clone(), "b".to_string())]).unwrap();
        plain.put(q.clone()).unwrap();
        let got = carrier.get().unwrap();
        assert_eq!(got.len(), 2);
        for job in got {
            let Job::Name(got, name) = job else { panic!("a string read as a u32") };
            got.put(name.clone()).unwrap();
            assert_eq!(q.get().unwrap(), name);
        }
        let got = plain.get().unwrap();
        got.put("plain".to_string()).unwrap();
        assert_eq!(q.get().unwrap(), "plain");
    }
    leaks.assert_no_leak();
}

/// A string that refuses to be "bad" when decoded.
#[derive(Serialize)]
struct NotBad(String);

impl<'de> Deserialize<'de> for NotBad {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        if s == "bad" { Err(serde::de::Error::custom("a bad string")) } else { Ok(NotBad(s)) }
    }
}

/// [`Job`] whose second variant can fail too.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StrictJob {
    Count(Queue<String>, u32),
    Name(Queue<String>, NotBad),
}

/// review47 M1, every variant failing: the handle dropped by each attempt is let go of when
/// the decoding ends, and the message's count is taken with the message (the get fails,
/// the message is gone, and the heap comes back).
#[test]
fn a_handle_kept_by_a_decoding_that_fails_is_let_go_of_at_its_end() {
    let leaks = common::leak_check(LIMIT);
    {
        let q = Queue::<String>::new().unwrap();
        let carrier = Queue::<StrictJob>::new().unwrap();
        carrier.put(StrictJob::Name(q.clone(), NotBad("bad".to_string()))).unwrap();
        carrier.put(StrictJob::Name(q.clone(), NotBad("good".to_string()))).unwrap();
        assert!(matches!(carrier.get(), Err(multiproc::GetError::Decode(_))), "no variant decodes it");
        let Ok(StrictJob::Name(got, NotBad(name))) = carrier.get() else { panic!("the next message is whole") };
        assert_eq!(name, "good");
        drop(q);
        got.put("alone".to_string()).unwrap();
        assert_eq!(got.get().unwrap(), "alone");
    }
    leaks.assert_no_leak();
}

/// Two pipe ends told apart by their message type only after the handle is received.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum AnyConnection {
    Ints(Connection<u32>),
    Texts(Connection<String>),
}

/// A pipe end accepted by the first variant, which then fails on the field beside it.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum EndJob {
    Count(Connection<String>, u32),
    Name(Connection<String>, String),
}

/// review37 M2 (a) for a pipe's end: its *side* is received beside its object, and the
/// refused attempt's side reservation was not adopted ("the handle was received already").
/// The end dropped by the `Ints` attempt is now kept whole, side and object, for the
/// `Texts` attempt; and so is one dropped by an attempt that fails on another field
/// (review47 M1). Once the ends are dropped, the heap comes back.
#[test]
fn a_pipe_end_travels_in_a_later_variant_of_an_untagged_enum() {
    let leaks = common::leak_check(LIMIT);
    {
        let (a, b) = Pipe::<String>::new().unwrap();
        let carrier = Queue::<AnyConnection>::new().unwrap();
        carrier.put(AnyConnection::Texts(a)).unwrap();
        let a = match carrier.get() {
            Ok(AnyConnection::Texts(a)) => a,
            Ok(AnyConnection::Ints(_)) => panic!("a Connection<String> read as a Connection<u32>"),
            Err(e) => panic!("the second variant's handle: {e}"),
        };
        a.send("x".to_string()).unwrap();
        assert_eq!(b.recv().unwrap(), "x");
        let jobs = Queue::<EndJob>::new().unwrap();
        jobs.put(EndJob::Name(a, "y".to_string())).unwrap();
        let a = match jobs.get() {
            Ok(EndJob::Name(a, name)) => {
                assert_eq!(name, "y");
                a
            }
            Ok(EndJob::Count(..)) => panic!("a string read as a u32"),
            Err(e) => panic!("the second variant's handle: {e}"),
        };
        a.send("z".to_string()).unwrap();
        assert_eq!(b.recv().unwrap(), "z");
        drop(a);
        assert!(b.recv().is_err(), "the end received was the only one left");
    }
    leaks.assert_no_leak();
}

fn put_text(any: AnyQueue) -> bool {
    matches!(any, AnyQueue::Texts(q) if q.put("arg".to_string()).is_ok())
}

fn put_name(job: Job) -> bool {
    matches!(job, Job::Name(q, name) if q.put(name.clone()).is_ok())
}

/// review37 M2 (a) and review47 M1 in a child's argument, whose receives are final at once
/// (carried): the attempt that dropped the queue had taken the carrier's count with it,
/// and the next attempt found none ("could not be decoded ... received already"). The
/// handle dropped is kept for the next attempt as a pending one is.
#[test]
fn a_handle_in_a_later_variant_of_an_untagged_enum_reaches_a_child() {
    let leaks = common::leak_check(LIMIT);
    {
        let texts = Queue::<String>::new().unwrap();
        let child = Process::new(put_text, AnyQueue::Texts(texts.clone())).start().unwrap();
        assert!(child.join().unwrap(), "refused for its message type");
        assert_eq!(texts.get().unwrap(), "arg");
        let child = Process::new(put_name, Job::Name(texts.clone(), "name".to_string())).start().unwrap();
        assert!(child.join().unwrap(), "failed on the field beside it");
        assert_eq!(texts.get().unwrap(), "name");
    }
    leaks.assert_no_leak();
}

/// A queue of queues accepted by the first variant, which then fails on the field beside
/// it.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum CarrierJob {
    Count(Queue<Queue<String>>, u32),
    Name(Queue<Queue<String>>, String),
}

fn put_through_inner(job: CarrierJob) -> bool {
    let CarrierJob::Name(carrier, name) = job else { return false };
    matches!(carrier.get_timeout(Duration::from_secs(10)), Ok(inner) if inner.put(name.clone()).is_ok())
}

/// A queue whose only handle is a child's argument, dropped by an attempt that failed on
/// the field beside it, is not the queue's last handle: the drain of its messages waits for
/// the end of the decoding, whose next attempt holds it (decided at once, the drain emptied
/// it, and the child's get failed).
#[test]
fn a_queue_kept_for_a_later_variant_keeps_its_messages() {
    let leaks = common::leak_check(LIMIT);
    {
        let texts = Queue::<String>::new().unwrap();
        let carrier = Queue::<Queue<String>>::new().unwrap();
        carrier.put(texts.clone()).unwrap();
        let child = Process::new(put_through_inner, CarrierJob::Name(carrier, "inner".to_string())).start().unwrap();
        assert!(child.join().unwrap(), "the child got the inner queue through its argument");
        assert_eq!(texts.get().unwrap(), "inner");
    }
    leaks.assert_no_leak();
}

/// Two values of different kinds of object: the first variant's attempt refuses the handle
/// before it is received (another type), and registers its discard for the take's end.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum AnyValue {
    Small(multiproc::RawValue<u8>),
    Large(multiproc::RawValue<u64>),
}

/// review37 M2 (b): the `Small` attempt's discard runs at the take's end, after the
/// `Large` receive's settle took the message's count: it finds none left unreserved and
/// takes nothing (hold37; before, the discard took the count at once and `Large` failed
/// "received already").
#[test]
fn a_handle_refused_by_an_earlier_variant_of_an_untagged_enum_is_received_by_a_later_one() {
    let _t = heap_user(LIMIT);
    let value = multiproc::RawValue::new(5u64).unwrap();
    let carrier = Queue::<AnyValue>::new().unwrap();
    carrier.put(AnyValue::Large(value.clone())).unwrap();
    match carrier.get() {
        Ok(AnyValue::Large(got)) => assert_eq!(got.get(), 5),
        Ok(AnyValue::Small(_)) => panic!("a RawValue<u64> read as a RawValue<u8>"),
        Err(e) => panic!("the second variant's handle: {e}"),
    }
}

/// Three values of different kinds of object: two attempts of other types before the
/// right one.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum AnyOfThree {
    Small(multiproc::RawValue<u8>),
    Medium(multiproc::RawValue<u32>),
    Large(multiproc::RawValue<u64>),
}

/// review37 M2 (b) and (c), the object's handle in two messages: the `Small` attempt's
/// discard (and `Medium`'s), run at the take's end, took the other message's count, whose
/// reader then failed "received already". A later receive of the same bytes now voids the
/// discard, and a second attempt of another type registers none.
#[test]
fn a_handle_refused_by_an_earlier_variant_takes_no_other_messages_count() {
    let leaks = common::leak_check(LIMIT);
    {
        let value = multiproc::RawValue::new(5u64).unwrap();
        let carrier = Queue::<AnyValue>::new().unwrap();
        let three = Queue::<AnyOfThree>::new().unwrap();
        let plain = Queue::<multiproc::RawValue<u64>>::new().unwrap();
        carrier.put(AnyValue::Large(value.clone())).unwrap();
        three.put(AnyOfThree::Large(value.clone())).unwrap();
        plain.put(value.clone()).unwrap();
        assert!(matches!(carrier.get(), Ok(AnyValue::Large(_))));
        assert!(matches!(three.get(), Ok(AnyOfThree::Large(_))));
        match plain.get() {
            Ok(got) => assert_eq!(got.get(), 5),
            Err(e) => panic!("the other message's handle: {e}"),
        }
    }
    leaks.assert_no_leak();
}

/// A value sent as two copies of its handle, whose second copy is read back as another
/// type: the decoding fails with the first copy received and held.
struct Twice(multiproc::RawValue<u64>);

impl Serialize for Twice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.0, &self.0).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Twice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (first, _): (multiproc::RawValue<u64>, multiproc::RawValue<u8>) = Deserialize::deserialize(deserializer)?;
        Ok(Twice(first))
    }
}

/// review52 L1: one copy of a handle received, another copy of it read as another type in
/// the same message, no untagged enum: the second copy's read took the first's receive for
/// another attempt at the same bytes and discarded nothing, and its count stayed in flight
/// for the family's life (the value was never freed).
#[test]
fn a_copy_read_as_another_type_beside_a_received_one_is_discarded() {
    let leaks = common::leak_check(LIMIT);
    {
        let value = multiproc::RawValue::new(5u64).unwrap();
        let carrier = Queue::<Twice>::new().unwrap();
        carrier.put(Twice(value.clone())).unwrap();
        assert!(matches!(carrier.get(), Err(multiproc::GetError::Decode(_))), "the second copy is not a u8's");
    }
    leaks.assert_no_leak();
}

/// Two copies of a queue whose only handles they are; decoded, drops the first and gets
/// from the second, and holds what that get returned.
struct GetFromTheSecond {
    queue: Option<Queue<u32>>,
    got: Option<Result<u32, multiproc::GetTimeoutError>>,
}

impl Serialize for GetFromTheSecond {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let queue = self.queue.as_ref().expect("sent with its queue");
        (queue, queue).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for GetFromTheSecond {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (first, second): (Queue<u32>, Queue<u32>) = Deserialize::deserialize(deserializer)?;
        drop(first);
        // A bound, not a duration asserted: the get waited for ever.
        let got = second.get_timeout(Duration::from_secs(5));
        Ok(GetFromTheSecond { queue: None, got: Some(got) })
    }
}

/// review52 L4 (a): a handle dropped inside a decoding is held by it until it ends (for a
/// later attempt at the same bytes), and counted as this process's: a get on the other
/// copy, the queue's last handle, waited for ever instead of failing `Disconnected`, as it
/// did before hand40 (review34 L4).
#[test]
fn a_get_inside_a_decoding_that_dropped_the_other_copy_is_disconnected() {
    let leaks = common::leak_check(LIMIT);
    {
        let carrier = Queue::<GetFromTheSecond>::new().unwrap();
        carrier.put(GetFromTheSecond { queue: Some(Queue::new().unwrap()), got: None }).unwrap();
        let got = carrier.get().unwrap().got.expect("the get's outcome");
        assert_eq!(got, Err(multiproc::GetTimeoutError::Disconnected));
    }
    leaks.assert_no_leak();
}

/// A child's argument: a queue whose decoding clones it, drops the clone (kept for the
/// decoding), then drops the queue itself, once `go` is set.
struct CloneAndDrop {
    sent: Option<(multiproc::Event, Queue<multiproc::RawValue<u64>>)>,
}

impl Serialize for CloneAndDrop {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.sent.as_ref().expect("sent with its queue").serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CloneAndDrop {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (go, queue): (multiproc::Event, Queue<multiproc::RawValue<u64>>) = Deserialize::deserialize(deserializer)?;
        // Once the parent dropped its handles: the queue's are this decoding's.
        let _ = go.wait();
        drop(queue.clone());
        drop(queue);
        Ok(CloneAndDrop { sent: None })
    }
}

fn decoded_and_dropped(arg: CloneAndDrop) -> bool {
    arg.sent.is_none()
}

/// review52 L4 (b), a pin: a carried queue (a child's argument) cloned and the clone
/// dropped inside the decoding, then dropped itself, its last handle but the kept clone.
/// Feared: its drop would neither wait (no received handle of it left in the decoding) nor
/// drain (the kept clone counted as another handle), and the kept clone, let go of at the
/// decoding's end, would free the queue undrained, the value in its message in flight for
/// ever. It passes before the fix too: the first drop of a queue received in the decoding
/// always waits (`Shared::if_last`), and its waiting clone drains once the decoding ends.
#[test]
fn a_carried_queue_dropped_after_a_kept_clone_is_drained() {
    let leaks = common::leak_check(LIMIT);
    {
        let value = multiproc::RawValue::new(5u64).unwrap();
        let queue = Queue::new().unwrap();
        queue.put(value).unwrap();
        let go = multiproc::Event::new().unwrap();
        let child =
            Process::new(decoded_and_dropped, CloneAndDrop { sent: Some((go.clone(), queue)) }).start().unwrap();
        go.set();
        drop(go);
        assert!(child.join().unwrap(), "the child decoded its argument");
    }
    leaks.assert_no_leak();
}

thread_local! {
    /// What [`DropsAQueue`] leaves to [`PutsFirst`], the next attempt of the same decoding:
    /// the event that says the parent's handles are gone, and a clone of the queue it
    /// dropped.
    static LEFT: std::cell::RefCell<Option<(multiproc::Event, Queue<multiproc::RawValue<u64>>)>> = const { std::cell::RefCell::new(None) };
}

/// An untagged enum's first variant: receives an event and a queue, leaves the event and a
/// clone of the queue to the next attempt, and fails (the queue, dropped, is kept for the
/// decoding).
struct DropsAQueue;

impl<'de> Deserialize<'de> for DropsAQueue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (go, queue) = <(multiproc::Event, Queue<multiproc::RawValue<u64>>)>::deserialize(deserializer)?;
        LEFT.with(|l| *l.borrow_mut() = Some((go, queue.clone())));
        drop(queue);
        Err(serde::de::Error::custom("not this variant"))
    }
}

/// The second variant: once the parent's handles are gone, puts a value through the
/// clone the first left and drops it (the queue's last handle but the kept one), then
/// reads the event and the queue (taking the kept ones back).
struct PutsFirst(Queue<multiproc::RawValue<u64>>);

impl<'de> Deserialize<'de> for PutsFirst {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if let Some((go, clone)) = LEFT.with(|l| l.borrow_mut().take()) {
            let _ = go.wait();
            clone.put(multiproc::RawValue::new(7).expect("a value")).expect("a put through the clone");
            drop(clone);
        }
        let (_go, queue) = <(multiproc::Event, Queue<multiproc::RawValue<u64>>)>::deserialize(deserializer)?;
        Ok(PutsFirst(queue))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DropsThenPuts {
    Drops(#[allow(dead_code)] DropsAQueue),
    Puts(PutsFirst),
}

/// A child's argument: an event and a queue, read by [`DropsThenPuts`].
struct PutWhileKept {
    sent: Option<(multiproc::Event, Queue<multiproc::RawValue<u64>>)>,
    got: Option<Queue<multiproc::RawValue<u64>>>,
}

impl Serialize for PutWhileKept {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.sent.as_ref().expect("sent with its queue").serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PutWhileKept {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match DropsThenPuts::deserialize(deserializer)? {
            DropsThenPuts::Puts(PutsFirst(queue)) => Ok(PutWhileKept { sent: None, got: Some(queue) }),
            DropsThenPuts::Drops(_) => unreachable!("the first variant always fails"),
        }
    }
}

fn gets_what_was_put(arg: PutWhileKept) -> Result<u64, String> {
    let queue = arg.got.expect("decoded");
    queue.get_timeout(Duration::from_secs(5)).map(|value| value.get()).map_err(|e| format!("{e:?}"))
}

/// review55 L3: a carried queue (of messages holding handles) dropped inside a decoding
/// while empty (kept for it: no drain asked), then a value put through a clone made there,
/// and the clone dropped. That
/// drop counted the kept copy out (`codec::kept_of`) and drained the queue, though the
/// next attempt then took the kept copy back: the value was lost.
#[test]
fn a_queue_is_not_drained_while_a_dropped_copy_may_be_taken_back() {
    let leaks = common::leak_check(LIMIT);
    {
        let queue = Queue::new().unwrap();
        let go = multiproc::Event::new().unwrap();
        let child = Process::new(gets_what_was_put, PutWhileKept { sent: Some((go.clone(), queue)), got: None })
            .start()
            .unwrap();
        go.set();
        drop(go);
        assert_eq!(child.join().unwrap(), Ok(7), "the value put in the decoding");
    }
    leaks.assert_no_leak();
}

/// In a child: tells the parent it holds the queue, then gets from it (every holder is
/// about to wait).
fn get_once_ready((queue, ready): (Queue<u32>, multiproc::Event)) -> String {
    ready.set();
    format!("{:?}", queue.get_timeout(Duration::from_secs(60)))
}

/// review55 L5 (a): a handle dropped inside a decoding, kept for it, is left out of this
/// process's handles when a get asks whether every holder waits (`Shared::all_holders`):
/// a child and the decoding's other copy both wait, and both gets are `Disconnected`.
/// Counted in, the parent's two handles were not covered by its one waiting get, and it
/// waited for its bound.
#[test]
fn a_handle_kept_by_a_decoding_is_no_holder_that_could_put() {
    let leaks = common::leak_check(LIMIT);
    {
        let (queue, ready) = (Queue::new().unwrap(), multiproc::Event::new().unwrap());
        let child = Process::new(get_once_ready, (queue.clone(), ready.clone())).start().unwrap();
        ready.wait().unwrap();
        drop(ready);
        let carrier = Queue::<GetFromTheSecond>::new().unwrap();
        carrier.put(GetFromTheSecond { queue: Some(queue), got: None }).unwrap();
        let got = carrier.get().unwrap().got.expect("the get's outcome");
        assert_eq!(got, Err(multiproc::GetTimeoutError::Disconnected));
        assert_eq!(child.join().unwrap(), "Err(Disconnected)");
    }
    leaks.assert_no_leak();
}

/// Two copies of one handle in one message, read back as an `(A, B)`: the first copy as
/// an `A`, then the second as a `B`.
struct TwoCopies<H, A, B> {
    sent: Option<H>,
    read: Option<(A, B)>,
}

impl<H, A, B> TwoCopies<H, A, B> {
    fn of(handle: H) -> Self {
        TwoCopies { sent: Some(handle), read: None }
    }
}

impl<H: Serialize, A, B> Serialize for TwoCopies<H, A, B> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let handle = self.sent.as_ref().expect("only a sender serializes");
        (handle, handle).serialize(serializer)
    }
}

impl<'de, H, A: Deserialize<'de>, B: Deserialize<'de>> Deserialize<'de> for TwoCopies<H, A, B> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(TwoCopies { sent: None, read: Some(<(A, B)>::deserialize(deserializer)?) })
    }
}

/// A handle of type `H` received and dropped at once, inside the decoding (which keeps
/// it until it ends, for a later attempt at the same bytes).
struct Dropped<H>(std::marker::PhantomData<H>);

impl<'de, H: Deserialize<'de>> Deserialize<'de> for Dropped<H> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        drop(H::deserialize(deserializer)?);
        Ok(Dropped(std::marker::PhantomData))
    }
}

/// A read as an `H` whose refusal is swallowed (safe serde code that lies): whether it
/// was one. The decoding goes on to the rest of the message.
struct Swallowed<H>(bool, std::marker::PhantomData<H>);

impl<'de, H: Deserialize<'de>> Deserialize<'de> for Swallowed<H> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Swallowed(H::deserialize(deserializer).is_ok(), std::marker::PhantomData))
    }
}

/// hand40's price (a): a queue twice in one message (a `Vec`'s two elements, as a
/// tuple), the first copy received and dropped inside the decoding (kept for it), then
/// the second copy read: it took the first back, being told apart by its mark only, and
/// the second copy's count stayed in flight for the family's life (the queue was never
/// freed). Copies are told apart by their place in the message now.
#[test]
fn a_copy_read_after_another_copy_was_dropped_is_received() {
    let leaks = common::leak_check(LIMIT);
    {
        let q = Queue::<u32>::new().unwrap();
        let carrier = Queue::<TwoCopies<Queue<u32>, Dropped<Queue<u32>>, Queue<u32>>>::new().unwrap();
        carrier.put(TwoCopies::of(q.clone())).unwrap();
        let (_, second) = carrier.get().unwrap().read.expect("decoded");
        second.put(1).unwrap();
        assert_eq!(q.get().unwrap(), 1);
    }
    leaks.assert_no_leak();
}

/// hand40's price (b): a value twice in one message, the first copy read as another type
/// (its count discarded once the message is taken), then the second copy received: the
/// receive voided the first copy's discard, the two told apart by their mark only, and the
/// first copy's count stayed in flight for the family's life.
#[test]
fn a_copy_received_after_another_copy_was_read_as_another_type_leaves_that_discard() {
    let leaks = common::leak_check(LIMIT);
    {
        let value = multiproc::RawValue::new(5u64).unwrap();
        type Message =
            TwoCopies<multiproc::RawValue<u64>, Swallowed<multiproc::RawValue<u8>>, multiproc::RawValue<u64>>;
        let carrier = Queue::<Message>::new().unwrap();
        carrier.put(TwoCopies::of(value.clone())).unwrap();
        let (first, second) = carrier.get().unwrap().read.expect("decoded");
        assert!(!first.0, "a RawValue<u64> read as a RawValue<u8>");
        assert_eq!(second.get(), 5);
    }
    leaks.assert_no_leak();
}

/// hand40's price (c): a value twice in one message, both copies read as another type by
/// a decoder that swallows the refusals: the second copy's read took the first's discard
/// for another attempt at the same bytes and discarded nothing, and its count stayed in
/// flight for the family's life.
#[test]
fn each_copy_read_as_another_type_is_discarded() {
    let leaks = common::leak_check(LIMIT);
    {
        let value = multiproc::RawValue::new(5u64).unwrap();
        type AsU8 = Swallowed<multiproc::RawValue<u8>>;
        let carrier = Queue::<TwoCopies<multiproc::RawValue<u64>, AsU8, AsU8>>::new().unwrap();
        carrier.put(TwoCopies::of(value.clone())).unwrap();
        let (first, second) = carrier.get().unwrap().read.expect("decoded");
        assert!(!first.0 && !second.0, "a RawValue<u64> read as a RawValue<u8>");
    }
    leaks.assert_no_leak();
}

/// A map of values read twice by its decoding, by two `flatten`ed maps (each reads every
/// entry no field claims): once as values, and, the one copy of each held, again as
/// another type.
#[derive(Deserialize)]
struct ReadTwice {
    #[serde(flatten)]
    values: BTreeMap<String, multiproc::RawValue<u64>>,
    #[serde(flatten)]
    #[allow(dead_code)]
    others: BTreeMap<String, Swallowed<multiproc::RawValue<u8>>>,
}

impl Serialize for ReadTwice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.values.serialize(serializer)
    }
}

/// hand40's reverse (review52 L1's fix): a decoding that reads the same bytes twice while
/// it holds the first read's handle, the second time as another type, took the second read
/// for another copy and discarded it: a count of the object no entry reserved, another
/// message's, whose reader then failed "the handle was received already".
#[test]
fn the_same_copy_read_again_as_another_type_takes_no_other_messages_count() {
    let leaks = common::leak_check(LIMIT);
    {
        let value = multiproc::RawValue::new(5u64).unwrap();
        let carrier = Queue::<ReadTwice>::new().unwrap();
        let plain = Queue::<multiproc::RawValue<u64>>::new().unwrap();
        let values = BTreeMap::from([("v".to_string(), value.clone())]);
        carrier.put(ReadTwice { values, others: BTreeMap::new() }).unwrap();
        plain.put(value.clone()).unwrap();
        let got = carrier.get().unwrap();
        assert!(got.others.values().all(|other| !other.0), "a RawValue<u64> read as a RawValue<u8>");
        assert_eq!(got.values["v"].get(), 5);
        match plain.get() {
            Ok(got) => assert_eq!(got.get(), 5),
            Err(e) => panic!("the other message's handle: {e}"),
        }
    }
    leaks.assert_no_leak();
}

/// A map of handles read twice by its decoding, by two `flatten`ed maps of the same type:
/// the one copy of each read again as the same type, its first read's handle held.
#[derive(Deserialize)]
struct ReadTwiceAlike<H> {
    #[serde(flatten)]
    first: BTreeMap<String, H>,
    #[serde(flatten)]
    again: BTreeMap<String, H>,
}

impl<H: Serialize> ReadTwiceAlike<H> {
    fn of(handle: H) -> Self {
        ReadTwiceAlike { first: BTreeMap::from([("h".to_string(), handle)]), again: BTreeMap::new() }
    }
}

impl<H: Serialize> Serialize for ReadTwiceAlike<H> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.first.serialize(serializer)
    }
}

/// A copy's bytes read again as the same type while the first read's handle is held: the
/// second read is another handle of it, as a clone, and takes no count of the message (the
/// first read took the copy's). It received again: a count no entry reserved, another
/// message's, whose reader then failed "the handle was received already".
#[test]
fn the_same_copy_read_again_alike_takes_no_other_messages_count() {
    let leaks = common::leak_check(LIMIT);
    {
        let value = multiproc::RawValue::new(5u64).unwrap();
        let carrier = Queue::<ReadTwiceAlike<multiproc::RawValue<u64>>>::new().unwrap();
        let plain = Queue::<multiproc::RawValue<u64>>::new().unwrap();
        carrier.put(ReadTwiceAlike::of(value.clone())).unwrap();
        plain.put(value.clone()).unwrap();
        let got = carrier.get().unwrap();
        assert_eq!((got.first["h"].get(), got.again["h"].get()), (5, 5));
        match plain.get() {
            Ok(got) => assert_eq!(got.get(), 5),
            Err(e) => panic!("the other message's handle: {e}"),
        }
    }
    leaks.assert_no_leak();
}

/// The same for a pipe's end, whose side is joined with its object: both handles send to
/// the other end, another message naming the end is whole, and once every handle of the
/// end is dropped the other end sees its stream end.
#[test]
fn the_same_end_read_again_alike_takes_no_other_messages_count() {
    let leaks = common::leak_check(LIMIT);
    {
        let (a, b) = Pipe::<u32>::new().unwrap();
        let carrier = Queue::<ReadTwiceAlike<Connection<u32>>>::new().unwrap();
        let plain = Queue::<Connection<u32>>::new().unwrap();
        carrier.put(ReadTwiceAlike::of(a.clone())).unwrap();
        plain.put(a).unwrap();
        let got = carrier.get().unwrap();
        got.first["h"].send(1).unwrap();
        got.again["h"].send(2).unwrap();
        assert_eq!((b.recv().unwrap(), b.recv().unwrap()), (1, 2));
        let other = match plain.get() {
            Ok(other) => other,
            Err(e) => panic!("the other message's end: {e}"),
        };
        drop(got);
        other.send(3).unwrap();
        assert_eq!(b.recv().unwrap(), 3);
        drop(other);
        assert!(b.recv().is_err(), "the end's handles are all dropped");
    }
    leaks.assert_no_leak();
}

/// Twenty plain variants, then one that holds a self-describing value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    K0,
    K1,
    K2,
    K3,
    K4,
    K5,
    K6,
    K7,
    K8,
    K9,
    K10,
    K11,
    K12,
    K13,
    K14,
    K15,
    K16,
    K17,
    K18,
    K19,
    Custom(serde_json::Value),
}

/// Thirty plain variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Level {
    L0,
    L1,
    L2,
    L3,
    L4,
    L5,
    L6,
    L7,
    L8,
    L9,
    L10,
    L11,
    L12,
    L13,
    L14,
    L15,
    L16,
    L17,
    L18,
    L19,
    L20,
    L21,
    L22,
    L23,
    L24,
    L25,
    L26,
    L27,
    L28,
    L29,
}

/// `Kind::Custom` is reached only after 20 × 30 = 600 combinations of variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ManyKinds {
    kind: Kind,
    level: Level,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Leaf {
    value: serde_json::Value,
}

/// A `serde_json::Value` fourteen levels down (each struct, `Option`, `Vec` and newtype is
/// one), and no type repeats on the way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deep(Deep1);
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deep1 {
    a: Option<Deep2>,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deep2 {
    a: Vec<Deep3>,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deep3 {
    a: Option<Deep4>,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deep4 {
    a: Vec<Deep5>,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deep5 {
    a: Option<Deep6>,
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deep6 {
    a: (u8, Leaf),
}

fn deep() -> Deep {
    let leaf = Leaf { value: json!({"k": [1, "two"]}) };
    let six = Deep6 { a: (6, leaf) };
    Deep(Deep1 { a: Some(Deep2 { a: vec![Deep3 { a: Some(Deep4 { a: vec![Deep5 { a: Some(six) }] }) }] }) })
}

/// aud104 M1: the probe that picks a type's encoding looks at 512 combinations of enum
/// variants and 12 levels down. A self-describing value past either went in postcard, and
/// every receiver refused it ("the type asks for deserialize_any ... sent in postcard"):
/// such a message could never travel. The probe now says self-describing when it stopped
/// short of a combination or a level it had not seen.
#[test]
fn a_self_describing_value_past_the_probes_reach_travels() {
    let _t = heap_user(LIMIT);
    let many = ManyKinds { kind: Kind::Custom(json!({"a": 1})), level: Level::L29 };
    let child = Process::new(echo::<(ManyKinds, Deep)>, (many.clone(), deep())).start().unwrap();
    assert_eq!(child.join().unwrap(), (many.clone(), deep()), "a process argument and result");
    let (a, b) = Pipe::<ManyKinds>::new().unwrap();
    a.send(many.clone()).unwrap();
    assert_eq!(b.recv().unwrap(), many, "past 512 combinations, through a pipe");
    let (a, b) = Pipe::<Deep>::new().unwrap();
    a.send(deep()).unwrap();
    assert_eq!(b.recv().unwrap(), deep(), "past 12 levels, through a pipe");
    // A recursive enum whose first variant recurses, a self-describing value after it.
    let (a, b) = Pipe::<Expr>::new().unwrap();
    let expr = Expr::Add(Box::new(Expr::Lit(1)), Leaf { value: json!(null) });
    a.send(expr.clone()).unwrap();
    assert_eq!(b.recv().unwrap(), expr, "after a recursive element");
    // A recursive type keeps the compact encoding.
    let (a, b) = Pipe::<Tree>::new().unwrap();
    let tree = Tree { label: Some("root".into()), kids: vec![Tree { label: None, kids: vec![] }] };
    a.send(tree.clone()).unwrap();
    let bytes = b.recv_bytes().unwrap();
    assert_eq!(bytes[0], 0, "tag 0 (postcard) for a recursive type: {bytes:?}");
    a.send(tree.clone()).unwrap();
    assert_eq!(b.recv().unwrap(), tree);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Expr {
    Add(Box<Expr>, Leaf),
    Lit(i64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tree {
    label: Option<String>,
    kids: Vec<Tree>,
}

/// A tree whose nodes carry attribute pairs (a compound type inside a recursive one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    kids: Vec<Node>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Flag {
    Off,
    On,
}

/// Ten two-variant enum fields: 1024 combinations of variants, nothing self-describing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Settings {
    a: Flag,
    b: Flag,
    c: Flag,
    d: Flag,
    e: Flag,
    f: Flag,
    g: Flag,
    h: Flag,
    i: Flag,
    j: Flag,
}

fn settings() -> Settings {
    use Flag::*;
    Settings { a: On, b: Off, c: On, d: Off, e: On, f: Off, g: On, h: Off, i: On, j: Off }
}

/// Through a pipe in postcard (tag 0), and through a queue.
fn keeps_postcard<T: Message>(value: T) {
    let what = std::any::type_name::<T>();
    let (a, b) = Pipe::<T>::new().unwrap();
    a.send(value.clone()).unwrap();
    let bytes = b.recv_bytes().unwrap();
    assert_eq!(bytes[0], 0, "tag 0 (postcard) for {what}: {bytes:?}");
    a.send(value.clone()).unwrap();
    assert_eq!(b.recv().unwrap(), value, "through a pipe: {what}");
    let queue = Queue::<T>::new().unwrap();
    queue.put(value.clone()).unwrap();
    assert_eq!(queue.get().unwrap(), value, "through a queue: {what}");
}

/// review140 M1: aud104's probe said self-describing (MessagePack, 3.3 times the bytes of
/// a `Node`) whenever its depth limit cut a type not on the current path, which a
/// recursive type does wherever its cycle does not line up with the limit (`Option<Tree>`,
/// `(u8, Tree)`, `Vec<Tree>`, a `Node`'s attribute pairs), and whenever 512 runs over the
/// product of enum variants were spent (ten two-variant enum fields). None of them asks
/// for `deserialize_any`: each keeps postcard.
#[test]
fn recursive_types_and_many_plain_enums_keep_the_compact_encoding() {
    let _w = heap_user(LIMIT);
    let tree = Tree { label: Some("r".into()), kids: vec![Tree { label: None, kids: vec![] }] };
    let node = Node { name: "n".into(), attrs: vec![("k".into(), "v".into())], kids: vec![] };
    keeps_postcard(tree.clone());
    keeps_postcard(Some(tree.clone()));
    keeps_postcard((1u8, tree.clone()));
    keeps_postcard(vec![tree.clone()]);
    keeps_postcard(node);
    keeps_postcard(settings());
}

/// review140 M2: the probe knew a recursive enum's repeat by its visitor's `type_name`,
/// which two types can share (items of one name in nested blocks, two versions of one
/// crate). The inner `E` below was taken for a repeat of the outer, its `J` never tried,
/// and the message went in postcard, which its receiver refused ("the type asks for
/// deserialize_any ... sent in postcard").
#[test]
fn two_enums_of_one_type_name_are_told_apart() {
    let _w = heap_user(LIMIT);
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum E {
        X,
        J(serde_json::Value),
    }
    type Inner = E;
    {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        enum E {
            A,
            B(Inner),
        }
        assert_eq!(std::any::type_name::<E>(), std::any::type_name::<Inner>());
        let (a, b) = Pipe::<E>::new().unwrap();
        let sent = E::B(Inner::J(json!({"k": 1})));
        a.send(sent.clone()).unwrap();
        assert_eq!(b.recv().unwrap(), sent);
    }
}

/// A chain of `Box`es, one level a link (a recursive enum: the probe meets it again inside
/// itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Chain {
    End,
    More(Box<Chain>),
}

fn chain(links: usize) -> Chain {
    (0..links).fold(Chain::End, |inner, _| Chain::More(Box::new(inner)))
}

/// `kids` trees, each the one child of the one before (a recursive struct: the probe cuts it
/// at its depth limit).
fn tree_chain(kids: usize) -> Tree {
    (0..kids).fold(Tree { label: None, kids: vec![] }, |inner, _| Tree { label: None, kids: vec![inner] })
}

/// A self-describing recursive type (untagged: sent in MessagePack).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Tangle {
    Leaf(u8),
    Node(Vec<Tangle>),
}

fn tangle(nodes: usize) -> Tangle {
    (0..nodes).fold(Tangle::Leaf(1), |inner, _| Tangle::Node(vec![inner]))
}

/// aud104 L2: a value nested deeper than the receivers' limit (256 levels: each element,
/// field, map entry, `Some`, newtype and enum variant a level below its container) is
/// refused by the sender with a typed error, and nothing is enqueued or sent; the deepest
/// value within the limit still travels. Before, `put` took it and every receiver refused
/// it ("the value nests deeper than 256 levels"): the message was lost.
#[test]
fn a_value_nested_past_the_receivers_limit_is_refused_by_its_sender() {
    let _w = heap_user(LIMIT);
    fn refused<T: Message>(what: &str, deepest: T, deeper: T) {
        let queue = Queue::<T>::new().unwrap();
        let put = queue.put(deeper.clone());
        let said = put.as_ref().err().map(ToString::to_string).unwrap_or_default();
        assert!(
            matches!(put, Err(multiproc::PutError::Encode(..))) && said.contains("deeper than 256"),
            "{what}: put {put:?}: {said}"
        );
        queue.put(deepest.clone()).unwrap();
        assert_eq!(queue.get_timeout(Duration::from_secs(10)).unwrap(), deepest, "{what}: nothing enqueued before it");
        let (a, b) = Pipe::<T>::new().unwrap();
        let sent = a.send(deeper).map_err(|e| e.to_string());
        assert!(sent.as_ref().is_err_and(|e| e.contains("deeper than 256")), "{what}: sent {sent:?}");
        a.send(deepest.clone()).unwrap();
        assert_eq!(b.recv().unwrap(), deepest, "{what}: nothing sent before it");
    }
    // The innermost `End`'s variant at 256 levels, the next one's at 257.
    refused("a chain", chain(255), chain(256));
    // The innermost tree's fields at 255 levels, the next one's at 257.
    refused("a tree", tree_chain(127), tree_chain(128));
    refused("a self-described tangle", tangle(256), tangle(257));
    // review156 M1: under an untagged wrapper (or `flatten`, or an internally tagged enum)
    // a receiver buffers the value into serde's `Content`, which counts MessagePack's
    // `{variant: [fields]}`: a tuple or struct variant's fields two levels below it, not
    // one. Each link is two levels there; the innermost `End` of 128 links at 256.
    refused("tuple variants under untagged", Wrap::L(link_chain(127)), Wrap::L(link_chain(129)));
    refused("struct variants under untagged", WrapS::S(slink_chain(127)), WrapS::S(slink_chain(129)));
    // The wrapper's field one level down, then two a link: 1 + 2 * 128 past the limit.
    refused(
        "tuple variants under flatten",
        Flat { a: 1, holder: Holder { link: link_chain(126) } },
        Flat { a: 1, holder: Holder { link: link_chain(128) } },
    );
    refused(
        "tuple variants under an internal tag",
        Inside::L { link: link_chain(126) },
        Inside::L { link: link_chain(128) },
    );
}

/// A chain of tuple variants (MessagePack writes each `{"Node": [next, 1]}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Link {
    End,
    Node(Box<Link>, u8),
}

fn link_chain(links: usize) -> Link {
    (0..links).fold(Link::End, |inner, _| Link::Node(Box::new(inner), 1))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Wrap {
    L(Link),
}

/// A chain of struct variants (`{"Node": {"next": next}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum SLink {
    End,
    Node { next: Box<SLink> },
}

fn slink_chain(links: usize) -> SLink {
    (0..links).fold(SLink::End, |inner, _| SLink::Node { next: Box::new(inner) })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum WrapS {
    S(SLink),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Holder {
    link: Link,
}

/// A struct with a flattened field: its receiver buffers every entry it does not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Flat {
    a: u8,
    #[serde(flatten)]
    holder: Holder,
}

/// An internally tagged enum: its receiver buffers the whole variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t")]
enum Inside {
    L { link: Link },
}

/// The promise: a value `send` (or `put`) accepts is read back by every receiver, or `send`
/// refuses it with a typed error; never a message sent and lost. `make()` is sent twice
/// through a pipe: the tag byte of the first (printed and returned), the second received.
fn sent_and_read<T: Serialize + DeserializeOwned + Send + 'static>(what: &str, make: impl Fn() -> T) -> (u8, T) {
    let (a, b) = Pipe::<T>::new().unwrap();
    a.send(make()).unwrap();
    let tag = b.recv_bytes().unwrap()[0];
    a.send(make()).unwrap();
    let got = b.recv();
    eprintln!("{what}: tag {tag}, recv -> {:?}", got.as_ref().err());
    match got {
        Ok(value) => (tag, value),
        Err(e) => panic!("{what}: sent, and its receiver could not read it: {e}"),
    }
}

/// [`sent_and_read`] for a value that compares.
fn arrives<T: Message>(what: &str, value: T) -> u8 {
    let (tag, got) = sent_and_read(what, || value.clone());
    assert_eq!(got, value, "{what}");
    tag
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Body {
    Count(std::num::NonZeroU32),
    Doc(serde_json::Value),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Envelope {
    id: u64,
    body: Body,
}

#[derive(Serialize, Deserialize)]
enum ReplyOrDoc {
    Reply(Queue<u32>),
    Doc(serde_json::Value),
}

#[derive(Serialize, Deserialize)]
struct Request {
    id: u64,
    body: ReplyOrDoc,
}

/// review149 M2: a struct field that refused the probe's made-up value under its enum's
/// first variant (a `NonZeroU32` is not zero, a handle checks its seal) was left out for
/// the rest of the pass, so the enum's later variants were never tried: the type went in
/// postcard and every receiver failed on a `Value` in the second variant ("the type asks
/// for deserialize_any ... sent in postcard").
#[test]
fn a_field_that_refuses_hides_none_of_its_enums_other_variants() {
    let _w = heap_user(LIMIT);
    arrives("Envelope", Envelope { id: 7, body: Body::Doc(json!({"k": 1})) });
    let (_, got) = sent_and_read("Request", || Request { id: 1, body: ReplyOrDoc::Doc(json!({"k": 1})) });
    assert!(matches!(got, Request { id: 1, body: ReplyOrDoc::Doc(_) }));
}

/// review149 M3: the plans were kept by `type_name`, which two types share (items of one
/// name in sibling blocks, two versions of one crate): the second `E` took the first's
/// plan (postcard), and every receiver failed on its `Value`.
#[test]
fn two_types_of_one_name_each_get_their_own_encoding() {
    let _w = heap_user(LIMIT);
    let first = {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        enum E {
            A(u32),
        }
        arrives("first E", E::A(1));
        std::any::type_name::<E>()
    };
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum E {
        J(serde_json::Value),
    }
    assert_eq!(std::any::type_name::<E>(), first);
    arrives("second E", E::J(json!({"k": 1})));
}

/// A tuple struct whose recursion is not the last of its elements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Branch(Vec<Branch>, serde_json::Value);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Task {
    Run { n: std::num::NonZeroU32, payload: serde_json::Value },
}

#[derive(Serialize, Deserialize)]
enum Command {
    Send { to: Queue<u32>, n: u32 },
}

/// review149 M4: an element that refused the made-up value (or was cut at the probe's
/// depth limit) hid the elements after it, in a tuple, a map entry or a struct variant:
/// a `Value` there was never seen, and every receiver failed on it. A struct variant's
/// fields are read by name as a struct's are, so one holding a handle keeps postcard.
#[test]
fn an_element_that_refuses_hides_none_of_the_elements_after_it() {
    let _w = heap_user(LIMIT);
    let one = std::num::NonZeroU32::new(1).unwrap();
    arrives("(NonZeroU32, Value)", (one, json!({"k": 1})));
    arrives("Branch", Branch(vec![Branch(vec![], json!([1]))], json!({"k": 1})));
    arrives("BTreeMap<NonZeroU32, Value>", BTreeMap::from([(one, json!({"k": 1}))]));
    arrives("Task::Run", Task::Run { n: one, payload: json!({"k": 1}) });
    let queue = Queue::<u32>::new().unwrap();
    let (_, (_, got)) = sent_and_read("(Queue, Value)", || (queue.clone(), json!({"k": 1})));
    assert_eq!(got, json!({"k": 1}));
    let (tag, _) = sent_and_read("Command::Send", || Command::Send { to: queue.clone(), n: 1 });
    assert_eq!(tag, 0, "a struct variant with a handle keeps postcard");
}

/// Decodes only a positive number (and panics on zero).
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Positive(u32);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        assert!(v > 0, "not positive");
        Ok(Positive(v))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CountOrDoc {
    Count(Positive),
    Doc(serde_json::Value),
}

/// review149 M5: a `Deserialize` that panicked on the made-up value ended the probe with
/// postcard, the enum's other variants untried; every receiver failed on a `Value` there.
#[test]
fn a_deserialize_that_panics_on_the_made_up_value_hides_no_variant() {
    let _w = heap_user(LIMIT);
    arrives("CountOrDoc", CountOrDoc::Doc(json!({"k": 1})));
    arrives("CountOrDoc", CountOrDoc::Count(Positive(3)));
}

/// Reads a field that its `Serialize` never writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WriteOnly {
    a: u32,
    #[serde(skip_serializing, default)]
    b: u32,
    c: u32,
}

/// review149 M6: `#[serde(skip_serializing)]` (without `skip_deserializing`) writes no
/// `skip_field`, so the checking serializer let postcard write `a, c`, and every receiver
/// read `a, b, c`: "Hit the end of buffer".
#[test]
fn a_field_skipped_only_when_serializing_is_not_misread() {
    let _w = heap_user(LIMIT);
    arrives("WriteOnly", WriteOnly { a: 1, b: 0, c: 3 });
    arrives("Vec<WriteOnly>", vec![WriteOnly { a: 1, b: 0, c: 3 }, WriteOnly { a: 4, b: 0, c: 6 }]);
    // A child's result: a postcard plan does not come with the boot message (`assume_plan`
    // takes only a self-describing one), so the child probes `WriteOnly` itself, at its end.
    let child = Process::new(echo::<WriteOnly>, WriteOnly { a: 1, b: 0, c: 3 }).start().unwrap();
    assert_eq!(child.join().unwrap(), WriteOnly { a: 1, b: 0, c: 3 }, "a child's result");
}

/// Sixteen fields of one type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Wide<T> {
    a: T,
    b: T,
    c: T,
    d: T,
    e: T,
    f: T,
    g: T,
    h: T,
    i: T,
    j: T,
    k: T,
    l: T,
    m: T,
    n: T,
    o: T,
    p: T,
}

/// Sixteen fields of `Vec<Self>`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Bushy {
    a: Vec<Bushy>,
    b: Vec<Bushy>,
    c: Vec<Bushy>,
    d: Vec<Bushy>,
    e: Vec<Bushy>,
    f: Vec<Bushy>,
    g: Vec<Bushy>,
    h: Vec<Bushy>,
    i: Vec<Bushy>,
    j: Vec<Bushy>,
    k: Vec<Bushy>,
    l: Vec<Bushy>,
    m: Vec<Bushy>,
    n: Vec<Bushy>,
    o: Vec<Bushy>,
    p: Vec<Bushy>,
}

/// review149 L1: the probe looked into every compound value of its made-up value, down to
/// its depth limit, whatever their number: a first send of sixteen `Vec<Self>` fields
/// took 17 to 19 s, of a sixteen-wide type six levels deep (16^6 values) minutes. A
/// sequence met again inside itself is looked into once, and the probe's work has a
/// budget (past it, the type goes self-described).
#[test]
fn a_wide_type_is_probed_with_bounded_work() {
    let _w = heap_user(LIMIT);
    assert_eq!(arrives("Vec<Bushy>", vec![Bushy::default()]), 0, "postcard");
    type W<T> = Wide<Box<T>>;
    // Past the probe's budget: self-described (review157 L4: a probe that gave up earlier
    // or later went unseen).
    assert_eq!(arrives("Vec<Wide^6>", Vec::<W<W<W<W<W<W<u8>>>>>>>::new()), 1, "self-described");
}

/// An adjacently tagged enum (`#[serde(tag = "t", content = "c")]`), any shape of variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "c")]
enum Beside {
    Unit,
    Count(u32),
    Pair(u8, String),
    Named { id: u64, tags: Vec<String> },
}

/// An adjacently tagged enum of one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "c")]
enum Lone {
    Only(u32),
}

/// An adjacently tagged enum travels, through a pipe, a queue and a process's argument and
/// result. Every message of one was lost (fix121, found beside review156 M1): postcard gives
/// a struct to its visitor as a sequence, and serde's adjacently tagged visitor reads the tag
/// of a sequence with `deserialize_identifier`, which postcard cannot do, so every receiver
/// refused it; the probe, which reads a struct as a map, answered postcard.
#[test]
fn an_adjacently_tagged_enum_travels() {
    let _w = heap_user(LIMIT);
    let values = vec![
        Beside::Unit,
        Beside::Count(7),
        Beside::Pair(1, "two".into()),
        Beside::Named { id: 3, tags: vec!["a".into(), "b".into()] },
    ];
    let (a, b) = Pipe::<Beside>::new().unwrap();
    let queue = Queue::<Beside>::new().unwrap();
    for value in &values {
        a.send(value).unwrap();
        queue.put(value.clone()).unwrap();
    }
    let piped: Vec<_> = values.iter().map(|_| b.recv().map_err(|e| e.to_string())).collect();
    let queued: Vec<_> =
        values.iter().map(|_| queue.get_timeout(Duration::from_secs(10)).map_err(|e| e.to_string())).collect();
    println!("piped: {piped:?}; queued: {queued:?}");
    let expected: Vec<Result<Beside, String>> = values.iter().cloned().map(Ok).collect();
    assert_eq!(piped, expected);
    assert_eq!(queued, expected);
    // One variant alone (the probe's first-variant run is then all it makes).
    let (a, b) = Pipe::<Lone>::new().unwrap();
    a.send(&Lone::Only(5)).unwrap();
    assert_eq!(b.recv().map_err(|e| e.to_string()), Ok(Lone::Only(5)), "a one-variant adjacently tagged enum");
    let child = Process::new(echo::<Beside>, values[3].clone()).start().unwrap();
    assert_eq!(child.join().map_err(|e| e.to_string()), Ok(values[3].clone()), "a process argument and result");
}

/// `value` through a pipe and a queue: the pipe's tag byte, and what each receiver read
/// (review157's round trip).
fn piped_and_queued<T: Message>(what: &str, value: T) -> (u8, Result<T, String>, Result<T, String>) {
    let (a, b) = Pipe::<T>::new().unwrap();
    a.send(value.clone()).unwrap();
    let tag = b.recv_bytes().unwrap()[0];
    a.send(value.clone()).unwrap();
    let piped = b.recv().map_err(|e| e.to_string());
    let queue = Queue::<T>::new().unwrap();
    queue.put(value).unwrap();
    let queued = queue.get_timeout(Duration::from_secs(10)).map_err(|e| e.to_string());
    eprintln!("{what}: tag {tag}, piped {piped:?}, queued {queued:?}");
    (tag, piped, queued)
}

/// `value` sent by a `SocketConnection`: the send's refusal, or what its peer read.
#[cfg(feature = "remote")]
fn socketed<T: Message>(what: &str, value: T) -> Result<Result<T, String>, String> {
    use multiproc::{Client, Listener};
    let listener = Listener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), b"k").unwrap();
    let address = listener.address().clone();
    let client = std::thread::spawn(move || Client::connect::<T>(address, b"k").unwrap());
    let server = listener.accept::<T>().unwrap();
    let peer = client.join().unwrap();
    let sent = server.send(value).map_err(|e| e.to_string());
    let got = sent.map(|()| peer.recv().map_err(|e| e.to_string()));
    eprintln!("socket {what}: {got:?}");
    got
}

/// A field read by an old name too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Aliased {
    #[serde(alias = "old")]
    a: u32,
    b: Option<Option<u32>>,
}

/// The alias on the last field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AliasLast {
    b: Option<Option<u32>>,
    #[serde(alias = "old")]
    a: u32,
}

/// An alias after a field that refuses the probe's made-up value (the struct is then
/// probed by name, where the alias is a key its visitor refuses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AliasedAfterNonZero {
    n: std::num::NonZeroU32,
    #[serde(alias = "old")]
    a: u32,
    b: Option<Option<u32>>,
}

/// review157 H1: serde_derive's field list holds the aliases, so the probe counted three
/// fields where `Serialize` writes two: a socket refused the struct ("skips a field"), a
/// pipe or queue sent it self-described, where `Some(None)` is read back as `None`.
#[test]
fn a_struct_with_an_alias_keeps_postcard() {
    let _w = heap_user(LIMIT);
    let aliased = Aliased { a: 1, b: Some(None) };
    assert_eq!(piped_and_queued("Aliased", aliased.clone()), (0, Ok(aliased.clone()), Ok(aliased.clone())));
    let last = AliasLast { a: 1, b: Some(None) };
    assert_eq!(piped_and_queued("AliasLast", last.clone()), (0, Ok(last.clone()), Ok(last)));
    let after = AliasedAfterNonZero { n: std::num::NonZeroU32::new(7).unwrap(), a: 1, b: Some(None) };
    assert_eq!(piped_and_queued("AliasedAfterNonZero", after.clone()), (0, Ok(after.clone()), Ok(after)));
    #[cfg(feature = "remote")]
    assert_eq!(socketed("Aliased", aliased.clone()), Ok(Ok(aliased)));
}

mod one {
    use serde::{Deserialize, Serialize};

    /// A `Config` of one field.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Config {
        pub x: u32,
    }
}

mod two {
    use serde::{Deserialize, Serialize};

    /// Another `Config`, which reads a field its `Serialize` never writes.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Config {
        #[serde(skip_serializing, default)]
        pub cache: u32,
        pub x: u32,
    }
}

/// review157 H2: the field-count check went by serde name: once `one::Config` (one field
/// read) was probed, `two::Config` (two read, one written) was taken as fine and sent in
/// postcard, and every receiver hit the end of its buffer.
#[test]
fn two_structs_of_one_name_are_each_read_back() {
    let _w = heap_user(LIMIT);
    let first = one::Config { x: 1 };
    let (_, piped, queued) = piped_and_queued("one::Config", first.clone());
    assert_eq!((piped, queued), (Ok(first.clone()), Ok(first)));
    let second = two::Config { cache: 0, x: 2 };
    let (_, piped, queued) = piped_and_queued("two::Config", second.clone());
    assert_eq!((piped, queued), (Ok(second.clone()), Ok(second.clone())));
    #[cfg(feature = "remote")]
    assert!(socketed("two::Config", second).is_err_and(|e| e.contains("field")), "refused");
}

/// A variant skipped when deserializing: the derived `Deserialize` numbers the variants
/// after it one lower than `Serialize` does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shift {
    A,
    #[serde(skip_deserializing)]
    #[allow(dead_code)]
    B,
    C,
    D(u32),
}

/// review157 H3: postcard writes a variant's index, and `Shift::C` (2) was read as `D`,
/// `Shift::D(4)` (3) refused ("expected variant index 0 <= i < 3").
#[test]
fn a_variant_after_one_skipped_when_deserializing_is_read_as_itself() {
    let _w = heap_user(LIMIT);
    for value in [Shift::A, Shift::C, Shift::D(4)] {
        let (_, piped, queued) = piped_and_queued("Shift", value.clone());
        assert_eq!((piped, queued), (Ok(value.clone()), Ok(value.clone())));
    }
    // The variants before the skipped one keep postcard.
    assert_eq!(piped_and_queued("Shift::A", Shift::A).0, 0);
    #[cfg(feature = "remote")]
    assert!(socketed("Shift::C", Shift::C).is_err(), "refused, not read as D");
}

/// A hand-written `Deserialize` that reads a struct as a map only (as
/// `toml_datetime::Datetime` and `serde_spanned::Spanned` do).
#[derive(Debug, Clone, PartialEq, Serialize)]
struct MapOnly {
    a: u32,
}

impl<'de> Deserialize<'de> for MapOnly {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MapOnly;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("struct MapOnly")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<MapOnly, A::Error> {
                let mut a = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "a" {
                        a = Some(map.next_value()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(MapOnly { a: a.ok_or_else(|| serde::de::Error::missing_field("a"))? })
            }
        }
        d.deserialize_struct("MapOnly", &["a"], V)
    }
}

/// An adjacently tagged enum whose visitor's words are its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "c", expecting = "a thing")]
enum BesideOwnWords {
    Count(u32),
}

/// review157 H4: postcard hands a struct to its visitor as a sequence, the probe handed it
/// a map: a visitor that reads only a map was sent in postcard and refused by every
/// receiver ("invalid type: sequence"), and an adjacently tagged enum with its own
/// `expecting` words too.
#[test]
fn a_struct_read_only_as_a_map_is_read_back() {
    let _w = heap_user(LIMIT);
    let (_, piped, queued) = piped_and_queued("MapOnly", MapOnly { a: 5 });
    assert_eq!((piped, queued), (Ok(MapOnly { a: 5 }), Ok(MapOnly { a: 5 })));
    let (_, piped, queued) = piped_and_queued("BesideOwnWords", BesideOwnWords::Count(9));
    assert_eq!((piped, queued), (Ok(BesideOwnWords::Count(9)), Ok(BesideOwnWords::Count(9))));
    #[cfg(feature = "remote")]
    assert!(socketed("MapOnly", MapOnly { a: 5 }).is_err(), "refused, not sent and lost");
}

/// An identifier (`variant_identifier`), written as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(variant_identifier)]
enum Ident {
    Alpha,
    Beta,
}

impl Serialize for Ident {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            Ident::Alpha => "Alpha",
            Ident::Beta => "Beta",
        })
    }
}

/// review157 H5: a `Deserialize` that asks for `deserialize_identifier`, which postcard
/// cannot answer, was sent in postcard (the probe made up a name) and every receiver
/// refused it.
#[test]
fn an_identifier_is_read_back() {
    let _w = heap_user(LIMIT);
    let (_, piped, queued) = piped_and_queued("Ident", Ident::Beta);
    assert_eq!((piped, queued), (Ok(Ident::Beta), Ok(Ident::Beta)));
    let map = BTreeMap::from([(Ident::Alpha, 1u32)]);
    let (_, piped, queued) = piped_and_queued("BTreeMap<Ident, u32>", map.clone());
    assert_eq!((piped, queued), (Ok(map.clone()), Ok(map)));
}

/// review157 M3: a `GaveUp` type (a refusing element first) is decoded once before a
/// socket sends it; a `Deserialize` that panicked there unwound out of `send`.
#[cfg(feature = "remote")]
#[test]
fn a_socket_send_whose_trial_decoding_panics_refuses() {
    let _w = heap_user(LIMIT);
    let one = std::num::NonZeroU32::new(1).unwrap();
    assert_eq!(socketed("(NonZeroU32, Positive(3))", (one, Positive(3))), Ok(Ok((one, Positive(3)))));
    let sent = std::panic::catch_unwind(|| socketed("(NonZeroU32, Positive(0))", (one, Positive(0))));
    let refused = sent.expect("send panicked").expect_err("sent");
    assert!(refused.contains("panicked") && refused.contains("not positive"), "{refused}");
}

/// `value` through a `SimpleQueue`: what its `get` read.
fn simple_queued<T: Message>(what: &str, value: T) -> Result<T, String> {
    let queue = multiproc::SimpleQueue::<T>::new().unwrap();
    queue.put(value).map_err(|e| e.to_string())?;
    let got = queue.get().map_err(|e| e.to_string());
    eprintln!("simple {what}: {got:?}");
    got
}

/// A variant alias before a variant skipped when deserializing: serde_derive's list of
/// names is `[A, a2, C, D]` (the alias in, `B` out), where `C` sits at 2 as `Serialize`
/// writes it, but the derived `Deserialize` numbers `A 0, C 1, D 2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(dead_code)]
enum AliasThenSkip {
    #[serde(alias = "a2")]
    A,
    #[serde(skip_deserializing)]
    B,
    C,
    D(u32),
}

/// The same with a fallthrough (`other`), which takes every index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(dead_code)]
enum AliasSkipOther {
    #[serde(alias = "a2")]
    A,
    #[serde(skip_deserializing)]
    B,
    C,
    #[serde(other)]
    U,
}

/// review162 H1: the variant check took the list's positions for the receiver's numbers,
/// and an alias and a skipped variant cancelled out: `AliasThenSkip::C` was sent in
/// postcard as 2, and every receiver (a socket's peer too) read `D`.
#[test]
fn a_variant_after_an_alias_and_a_skipped_one_is_read_as_itself() {
    let _w = heap_user(LIMIT);
    for value in [AliasThenSkip::A, AliasThenSkip::C, AliasThenSkip::D(4)] {
        let (_, piped, queued) = piped_and_queued("AliasThenSkip", value.clone());
        assert_eq!((piped, queued), (Ok(value.clone()), Ok(value.clone())));
        assert_eq!(simple_queued("AliasThenSkip", value.clone()), Ok(value.clone()));
        #[cfg(feature = "remote")]
        {
            let sent = socketed("AliasThenSkip", value.clone());
            assert!(sent.is_err() || sent == Ok(Ok(value.clone())), "{sent:?}");
        }
    }
    let (_, piped, queued) = piped_and_queued("AliasSkipOther::C", AliasSkipOther::C);
    assert_eq!((piped, queued), (Ok(AliasSkipOther::C), Ok(AliasSkipOther::C)));
    assert_eq!(simple_queued("AliasSkipOther::C", AliasSkipOther::C), Ok(AliasSkipOther::C));
    #[cfg(feature = "remote")]
    {
        let sent = socketed("AliasSkipOther::C", AliasSkipOther::C);
        assert!(sent.is_err() || sent == Ok(Ok(AliasSkipOther::C)), "{sent:?}");
    }
}

/// An enum renamed once: the old name kept as an alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Cmd {
    #[serde(alias = "go")]
    Start,
    Set(Option<Option<u32>>),
}

/// review162 H2: an alias sent every variant after it self-described (fix123), where
/// `Some(None)` is read back as `None`, and a socket refused them; postcard numbers
/// variants as the receiver does, so it carries them.
#[test]
fn a_variant_after_an_alias_keeps_postcard() {
    let _w = heap_user(LIMIT);
    for value in [Cmd::Start, Cmd::Set(Some(None))] {
        assert_eq!(piped_and_queued("Cmd", value.clone()), (0, Ok(value.clone()), Ok(value.clone())));
        #[cfg(feature = "remote")]
        assert_eq!(socketed("Cmd", value.clone()), Ok(Ok(value)));
    }
}

mod narrow {
    use serde::{Deserialize, Serialize};

    /// A `Settings` of one field.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Settings {
        pub x: Option<Option<u32>>,
    }

    /// A `Mode` whose first variant carries a value.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum Mode {
        Stop(Option<Option<u32>>),
        Start,
    }
}

mod wide {
    use serde::{Deserialize, Serialize};

    /// Another `Settings`, of two fields.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Settings {
        pub x: u32,
        pub y: u32,
    }

    /// Another `Mode`, its variants the other way round.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum Mode {
        Start,
        Stop,
    }
}

/// review162 H3: the probe's records were the thread's, so once `wide::Settings` (two
/// fields) was probed, `narrow::Settings` (one) was taken as misread, and `narrow::Mode`
/// as renumbered: both self-described (`Some(None)` read back `None`), and a socket
/// refused them and then `wide::Settings` too. Each is judged by its own type's probe.
#[test]
fn two_types_of_one_serde_name_on_one_thread_keep_postcard() {
    let _w = heap_user(LIMIT);
    let wide = wide::Settings { x: 1, y: 2 };
    assert_eq!(piped_and_queued("wide::Settings", wide.clone()), (0, Ok(wide.clone()), Ok(wide.clone())));
    assert_eq!(piped_and_queued("wide::Mode", wide::Mode::Stop), (0, Ok(wide::Mode::Stop), Ok(wide::Mode::Stop)));
    let narrow = narrow::Settings { x: Some(None) };
    assert_eq!(piped_and_queued("narrow::Settings", narrow.clone()), (0, Ok(narrow.clone()), Ok(narrow.clone())));
    let mode = narrow::Mode::Stop(Some(None));
    assert_eq!(piped_and_queued("narrow::Mode", mode.clone()), (0, Ok(mode.clone()), Ok(mode.clone())));
    #[cfg(feature = "remote")]
    {
        assert_eq!(socketed("narrow::Settings", narrow.clone()), Ok(Ok(narrow)));
        assert_eq!(socketed("narrow::Mode", mode.clone()), Ok(Ok(mode)));
        assert_eq!(socketed("wide::Settings", wide.clone()), Ok(Ok(wide)));
    }
}

/// A hand-written struct visitor (sequence and map) that reads its fields, then refuses
/// an empty span.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Span {
    lo: u32,
    hi: u32,
    note: Option<Option<u32>>,
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Span;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a span")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Span, A::Error> {
                let lo: u32 = s.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let hi: u32 = s.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let note = s.next_element()?.ok_or_else(|| de::Error::invalid_length(2, &self))?;
                if lo >= hi {
                    return Err(de::Error::custom("an empty span"));
                }
                Ok(Span { lo, hi, note })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Span, A::Error> {
                let (mut lo, mut hi, mut note) = (0, 0, None);
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "lo" => lo = m.next_value()?,
                        "hi" => hi = m.next_value()?,
                        "note" => note = m.next_value()?,
                        _ => {
                            m.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                if lo >= hi {
                    return Err(de::Error::custom("an empty span"));
                }
                Ok(Span { lo, hi, note })
            }
        }
        d.deserialize_struct("Span", &["lo", "hi", "note"], V)
    }
}

/// review162 M1: the sequence trial took a visitor that read its elements and then refused
/// the made-up zeros for one that reads only a map: self-described (`Some(None)` read back
/// `None`), and a socket refused it ("asks for deserialize_any").
#[test]
fn a_struct_visitor_that_refuses_the_values_it_read_keeps_postcard() {
    let _w = heap_user(LIMIT);
    let span = Span { lo: 1, hi: 2, note: Some(None) };
    assert_eq!(piped_and_queued("Span", span.clone()), (0, Ok(span.clone()), Ok(span.clone())));
    #[cfg(feature = "remote")]
    assert_eq!(socketed("Span", span.clone()), Ok(Ok(span)));
}

/// What `serde_json` reads `value` back as: what lib.rs promises every channel reads.
fn json_reads<T: Message>(value: &T) -> T {
    serde_json::from_str(&serde_json::to_string(value).unwrap()).unwrap()
}

mod aliased {
    use serde::{Deserialize, Serialize};

    /// A `Kind` with a variant alias, a variant that writes a field it does not read, and
    /// one that reads a field it does not write.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum Kind {
        #[serde(alias = "x")]
        X,
        Y {
            #[serde(skip_deserializing)]
            extra: u8,
            v: u8,
        },
        Z {
            #[serde(skip_serializing, default)]
            a: u8,
            b: u8,
        },
    }
}

mod plain {
    use serde::{Deserialize, Serialize};

    /// Another `Kind`, of unit variants.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum Kind {
        P,
        Q,
    }
}

/// review169 H1 (a regression of fix130): two enums of one serde name in one type, one
/// with an alias: the probe noted a variant's count under its position among the names,
/// not its number, and `(P, Y { v: 2 }, Z { a: 0, b: 5 })` was sent in postcard and read
/// back by every receiver as `(P, Y { v: 9 }, Z { a: 2, b: 5 })`.
#[test]
fn two_enums_of_one_name_one_aliased_are_read_back() {
    let _w = heap_user(LIMIT);
    let value = (plain::Kind::P, aliased::Kind::Y { extra: 9, v: 2 }, aliased::Kind::Z { a: 0, b: 5 });
    let expected = json_reads(&value);
    let (tag, piped, queued) = piped_and_queued("(plain::Kind, aliased::Kind, aliased::Kind)", value.clone());
    assert_eq!((piped, queued), (Ok(expected.clone()), Ok(expected.clone())), "tag {tag}");
    #[cfg(feature = "remote")]
    {
        let sent = socketed("(plain::Kind, aliased::Kind, aliased::Kind)", value);
        assert!(sent.is_err() || sent == Ok(Ok(expected)), "{sent:?}");
    }
}

/// A variant skipped when deserializing, before unit variants only (a misread `C` is read
/// as `D` with no error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(dead_code)]
enum ShiftUnit {
    A,
    #[serde(skip_deserializing)]
    B,
    C,
    D,
}

/// review169 H2: a type the probe gives up on before it meets an enum (a `NonZeroU32`
/// refuses the made-up zero and hides the element after it) is written in postcard behind
/// the check on a socket, which took the unseen enum as written; the trial decoding read
/// `ShiftUnit::C` (2) as `D` and passed, and the peer read `D`. Also after the enum was
/// sent alone on the thread.
#[cfg(feature = "remote")]
#[test]
fn a_given_up_type_on_a_socket_is_refused_or_read_back() {
    let _w = heap_user(LIMIT);
    let one = std::num::NonZeroU32::new(1).unwrap();
    let sent = socketed("(NonZeroU32, ShiftUnit::C)", (one, ShiftUnit::C));
    assert!(sent.is_err() || sent == Ok(Ok((one, ShiftUnit::C))), "{sent:?}");
    assert_eq!(piped_and_queued("ShiftUnit::C", ShiftUnit::C).1, Ok(ShiftUnit::C));
    let sent = socketed("(NonZeroU32, ShiftUnit::C) after ShiftUnit", (one, ShiftUnit::C));
    assert!(sent.is_err() || sent == Ok(Ok((one, ShiftUnit::C))), "{sent:?}");
    // A given-up type that round-trips still goes.
    assert_eq!(socketed("(NonZeroU32, ShiftUnit::A)", (one, ShiftUnit::A)), Ok(Ok((one, ShiftUnit::A))));
}

thread_local! {
    static LOG: std::cell::RefCell<Option<Queue<String>>> = const { std::cell::RefCell::new(None) };
}

/// A value whose `Serialize` puts a message of another type into a queue (a log record
/// shipped as it is written).
#[derive(Debug, Clone, PartialEq)]
struct Logged;

impl Serialize for Logged {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        LOG.with(|l| l.borrow().as_ref().map(|q| q.put("serialized".to_string()).unwrap()));
        serializer.serialize_unit()
    }
}

impl<'de> Deserialize<'de> for Logged {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Logged)
    }
}

/// review169 M1: a `Serialize` that sends a message of another type partway through its
/// value: the rest of the value was judged by the other type's shapes, which know none of
/// its enums, and `AliasThenSkip::C` was written as 2 and read as `D(u32)` ("Hit the end
/// of buffer").
#[test]
fn a_serialize_that_sends_another_message_is_read_back() {
    let _w = heap_user(LIMIT);
    let log = Queue::<String>::new().unwrap();
    log.put("first".into()).unwrap();
    LOG.with(|l| *l.borrow_mut() = Some(log.clone()));
    let value = (Logged, AliasThenSkip::C);
    let (tag, piped, queued) = piped_and_queued("(Logged, AliasThenSkip::C)", value.clone());
    #[cfg(feature = "remote")]
    let sent = socketed("(Logged, AliasThenSkip::C)", value.clone());
    LOG.with(|l| *l.borrow_mut() = None);
    while log.get_timeout(Duration::from_millis(10)).is_ok() {}
    assert_eq!((piped, queued), (Ok(value.clone()), Ok(value.clone())), "tag {tag}");
    #[cfg(feature = "remote")]
    assert!(sent.is_err() || sent == Ok(Ok(value)), "{sent:?}");
}

/// An enum renamed for deserializing only, a variant skipped when deserializing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename(deserialize = "Renamed"))]
#[allow(dead_code)]
enum OneWay {
    A,
    #[serde(skip_deserializing)]
    B,
    C,
    D,
}

/// review169 M2: the check took an enum name its type's probe never saw (the `Serialize`'s
/// `OneWay`, the `Deserialize`'s `Renamed`) as written: `OneWay::C` was sent in postcard
/// as 2 and read back as `D` on every channel, where `serde_json` reads it by name.
#[test]
fn an_enum_renamed_for_deserializing_only_is_read_back() {
    let _w = heap_user(LIMIT);
    assert_eq!(json_reads(&OneWay::C), OneWay::C);
    let (tag, piped, queued) = piped_and_queued("OneWay::C", OneWay::C);
    assert_eq!((piped, queued), (Ok(OneWay::C), Ok(OneWay::C)), "tag {tag}");
    #[cfg(feature = "remote")]
    {
        let sent = socketed("OneWay::C", OneWay::C);
        assert!(sent.is_err() || sent == Ok(Ok(OneWay::C)), "{sent:?}");
    }
}
