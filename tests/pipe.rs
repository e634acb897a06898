//! `Pipe` and `Connection`: two connected ends, typed messages and raw bytes, and `wait`.
//!
//! What a user may count on: what one end sends the other receives, in order; a one-way
//! pipe refuses the wrong direction; the other end's close or death ends a receive with
//! `Disconnected` (Python's `EOFError`) after what it sent, never a hang, even when both
//! ends started in one process; ends travel everywhere; `wait` watches connections, queues
//! and processes at once. Nothing leaks.

mod common;

use std::time::Duration;

use common::{heap_user, leak_check};
use multiproc::{
    Connection, Error, Event, Pipe, Process, Queue, RawArray, RawValue, RecvBytesIntoError, RecvError,
    RecvTimeoutError, SendBytesError, SendError, SimpleQueue, StartMethod, TryRecvError, Value, wait,
};
use serde_bytes::ByteBuf;

multiproc::test_support!();

const METHODS: [StartMethod; 2] = common::METHODS;
const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_duplex_pipe_carries_messages_both_ways_in_order() {
    let _t = heap_user(LIMIT);
    let (a, b) = Pipe::new().unwrap();
    assert!(a.readable() && a.writable() && b.readable() && b.writable());
    for i in 0..1000u32 {
        a.send(i).unwrap();
    }
    b.send(7).unwrap();
    assert_eq!(a.recv().unwrap(), 7);
    for i in 0..1000u32 {
        assert_eq!(b.recv().unwrap(), i);
    }
    assert_eq!(b.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(b.recv_timeout(Duration::from_millis(20)), Err(RecvTimeoutError::Timeout));
}

#[test]
fn a_one_way_pipe_refuses_the_wrong_direction() {
    let _t = heap_user(LIMIT);
    let (rx, tx) = Pipe::one_way().unwrap();
    assert!(rx.readable() && !rx.writable());
    assert!(tx.writable() && !tx.readable());
    tx.send("down".to_string()).unwrap();
    assert_eq!(rx.recv().unwrap(), "down");
    assert_eq!(rx.send("up".to_string()), Err(SendError::Closed("up".to_string())));
    assert_eq!(rx.send_bytes(b"up"), Err(SendBytesError::Closed));
    assert_eq!(tx.recv(), Err(RecvError::Closed));
}

/// aud81 L3: `poll` on a closed end, or on the sending end of a one-way pipe, said `false`
/// at once whatever its timeout, so `while !conn.poll(t) {}` spun for ever. A receive there
/// fails at once, so the end is ready (as a gone peer is): the receive that follows says
/// `Closed` (Python's `poll` raises `OSError` there). `wait` says the same of it.
#[test]
fn a_closed_or_send_only_end_is_ready_and_its_receive_says_why() {
    let _t = heap_user(LIMIT);
    let (rx, tx) = Pipe::<u8>::one_way().unwrap();
    let mut closed = rx.clone();
    closed.close();
    let mut turns = 0;
    while !tx.poll(Duration::from_secs(3600)) {
        turns += 1;
        assert!(turns < 1000, "poll on a send-only end said false {turns} times, at once each time");
    }
    assert_eq!(tx.recv(), Err(RecvError::Closed));
    assert!(closed.poll(Duration::from_secs(3600)), "poll on a closed end");
    assert_eq!(closed.recv(), Err(RecvError::Closed));
    assert!(!rx.poll(Duration::ZERO), "the open receiving end has nothing waiting");
    assert_eq!(wait(&[&rx, &closed, &tx], Some(Duration::from_secs(3600))), [1, 2]);
}

#[test]
fn raw_bytes_travel_and_typed_receives_refuse_them() {
    let _t = heap_user(LIMIT);
    let (a, b) = Pipe::<u64>::new().unwrap();
    a.send_bytes(b"hello").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"hello");
    a.send_bytes(&[]).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"");
    // A message that was not sent as a u64 is a typed error, not a misread number (the
    // bytes of "hello" would decode as the number 104).
    a.send_bytes(b"hello").unwrap();
    match b.recv() {
        Err(RecvError::Decode(e)) => assert!(e.to_string().contains("raw message"), "{e}"),
        other => panic!("{other:?}"),
    }
    // recv_bytes of a typed message gives its encoding.
    a.send(300).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), [0, 0xac, 0x02], "tag 0 (postcard), then 300");
    // recv_bytes_into: the length, or the message back when it does not fit.
    let mut buf = [0u8; 8];
    a.send_bytes(b"four").unwrap();
    assert_eq!(b.recv_bytes_into(&mut buf), Ok(4));
    assert_eq!(&buf[..4], b"four");
    a.send_bytes(b"more than eight").unwrap();
    assert_eq!(b.recv_bytes_into(&mut buf), Err(RecvBytesIntoError::BufferTooShort(b"more than eight".to_vec())));
    let e: Error = RecvBytesIntoError::BufferTooShort(vec![0; 9]).into();
    assert!(e.to_string().contains("9 bytes"), "{e}");
    // Large raw messages too (past the inline size, through a heap block).
    let big: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
    a.send_bytes(&big).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), big);
}

/// A type of the general path whose messages postcard writes as it writes a `T`'s.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Wrapped<T>(T);

/// The bytes of `value` sent as a plain `T` and as the general path's `Wrapped<T>`.
fn both_encodings<T>(value: T) -> (Vec<u8>, Vec<u8>)
where
    T: Clone + serde::Serialize + serde::de::DeserializeOwned,
{
    let (a, b) = Pipe::<T>::new().unwrap();
    let (c, d) = Pipe::<Wrapped<T>>::new().unwrap();
    a.send(value.clone()).unwrap();
    c.send(Wrapped(value)).unwrap();
    (b.recv_bytes().unwrap(), d.recv_bytes().unwrap())
}

fn negate_until_closed(conn: Connection<f64>) {
    while let Ok(x) = conn.recv() {
        conn.send(-x).unwrap();
    }
}

#[test]
fn plain_values_are_written_as_every_message_is_and_travel_both_ways() {
    let _t = heap_user(LIMIT);
    // A number, bool, char or unit skips the codec's bookkeeping; its bytes stay the ones
    // the general path writes, so that either side may read them.
    for x in [0, 1, 127, 128, 300, u64::MAX] {
        let (plain, general) = both_encodings(x);
        assert_eq!(plain, general, "{x}");
    }
    for x in [0, -1, 63, -65, i64::MIN, i64::MAX] {
        let (plain, general) = both_encodings(x);
        assert_eq!(plain, general, "{x}");
    }
    for x in [0.0, -1.5, f64::MAX, f64::NAN] {
        let (plain, general) = both_encodings(x);
        assert_eq!(plain, general, "{x}");
    }
    assert_eq!(both_encodings(u128::MAX).0, both_encodings(u128::MAX).1);
    assert_eq!(both_encodings('\u{10ffff}').0, both_encodings('\u{10ffff}').1);
    assert_eq!(both_encodings(true).0, both_encodings(true).1);
    assert_eq!(both_encodings(()).0, both_encodings(()).1);
    // The type check stays: a plain receive refuses a raw message.
    let (a, b) = Pipe::<u8>::new().unwrap();
    a.send_bytes(&[0, 7]).unwrap();
    match b.recv() {
        Err(RecvError::Decode(e)) => assert!(e.to_string().contains("raw message"), "{e}"),
        other => panic!("{other:?}"),
    }
    a.send(7).unwrap();
    assert_eq!(b.recv(), Ok(7));
    for method in METHODS {
        let (mut mine, theirs) = Pipe::<f64>::new().unwrap();
        let child = Process::new(negate_until_closed, theirs).start_method(method).start().unwrap();
        for x in [0.5, -1.5, f64::MAX, f64::MIN_POSITIVE, 1e300] {
            mine.send(x).unwrap();
            assert_eq!(mine.recv(), Ok(-x), "{method:?}");
        }
        mine.close();
        child.join().unwrap();
    }
}

#[test]
fn poll_says_whether_a_receive_would_block() {
    let _t = heap_user(LIMIT);
    let (a, b) = Pipe::new().unwrap();
    assert!(!b.poll(Duration::ZERO));
    assert!(!b.poll(Duration::from_millis(20)));
    a.send(1u8).unwrap();
    assert!(b.poll(Duration::ZERO));
    assert!(b.poll(Duration::from_secs(1)), "poll does not take the message");
    assert_eq!(b.recv().unwrap(), 1);
    drop(a);
    assert!(b.poll(Duration::ZERO), "at end of stream a receive does not block either");
    assert_eq!(b.recv(), Err(RecvError::Disconnected));
}

#[test]
fn the_peers_close_ends_the_stream_after_what_it_sent() {
    let _t = heap_user(LIMIT);
    let (mut a, b) = Pipe::new().unwrap();
    a.send(1).unwrap();
    a.send(2).unwrap();
    let a2 = a.clone();
    a.close();
    assert!(a.is_closed());
    assert_eq!(a.send(3), Err(SendError::Closed(3)));
    assert_eq!(a.recv(), Err(RecvError::Closed));
    // Another handle of the same end keeps it open.
    a2.send(3).unwrap();
    drop(a2);
    assert_eq!(b.recv(), Ok(1));
    assert_eq!(b.recv(), Ok(2));
    assert_eq!(b.recv(), Ok(3));
    assert_eq!(b.recv(), Err(RecvError::Disconnected));
    assert_eq!(b.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(b.recv_timeout(Duration::from_secs(30)), Err(RecvTimeoutError::Disconnected));
    assert_eq!(b.send(4), Err(SendError::Disconnected(4)));
    let mut buf = [0u8; 4];
    assert_eq!(b.recv_bytes_into(&mut buf), Err(RecvBytesIntoError::Disconnected));
}

fn send_three(conn: Connection<String>) {
    for word in ["one", "two", "three"] {
        conn.send(word.to_string()).unwrap();
    }
}

#[test]
fn both_ends_start_in_one_process_and_one_goes_to_a_child() {
    let _t = heap_user(LIMIT);
    for method in METHODS {
        let (mine, theirs) = Pipe::new().unwrap();
        let child = Process::new(send_three, theirs).start_method(method).start().unwrap();
        let got: Vec<String> = std::iter::from_fn(|| mine.recv().ok()).collect();
        assert_eq!(got, ["one", "two", "three"], "{method:?}");
        assert_eq!(mine.recv(), Err(RecvError::Disconnected));
        child.join().unwrap();
    }
}

fn serve_until_eof(conn: Connection<u32>) -> u32 {
    let mut n = 0;
    while let Ok(x) = conn.recv() {
        conn.send(x * 2).unwrap();
        n += 1;
    }
    n
}

#[test]
fn a_child_blocked_in_recv_sees_the_parent_close_its_end() {
    let _t = heap_user(LIMIT);
    for method in METHODS {
        let (mine, theirs) = Pipe::new().unwrap();
        let child = Process::new(serve_until_eof, theirs).start_method(method).start().unwrap();
        mine.send(21).unwrap();
        assert_eq!(mine.recv().unwrap(), 42);
        drop(mine);
        assert_eq!(child.join().unwrap(), 1, "{method:?}: the child's recv ended");
    }
}

fn wait_forever(args: (Connection<u32>, Value<u32>)) {
    let (conn, started) = args;
    started.set(1);
    let _ = conn.recv();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_killed_peer_ends_the_stream_instead_of_a_hang() {
    let _t = heap_user(LIMIT);
    for method in METHODS {
        let (mine, theirs) = Pipe::new().unwrap();
        let started = Value::new(0).unwrap();
        let child = Process::new(wait_forever, (theirs, started.clone())).start_method(method).start().unwrap();
        assert!(common::eventually(Duration::from_secs(30), || started.get() == 1));
        mine.send(1).unwrap();
        child.kill().unwrap();
        child.wait();
        assert_eq!(mine.recv(), Err(RecvError::Disconnected), "{method:?}");
        assert_eq!(mine.send(2), Err(SendError::Disconnected(2)), "the death is known now");
    }
}

#[test]
fn a_sender_to_a_killed_peer_is_told_before_it_fills_memory() {
    let _t = heap_user(LIMIT);
    let (mine, theirs) = Pipe::new().unwrap();
    let started = Value::new(0).unwrap();
    let child = Process::new(wait_forever, (theirs, started.clone())).start().unwrap();
    assert!(common::eventually(Duration::from_secs(30), || started.get() == 1));
    child.kill().unwrap();
    child.wait();
    // Nobody receives: the sender finds out within a few segments of backlog.
    let sent = (0..1_000_000u32).take_while(|&i| mine.send(i).is_ok()).count();
    assert!(sent < 100_000, "{sent} messages sent to a dead process");
    assert_eq!(mine.send(0), Err(SendError::Disconnected(0)));
}

fn relay(args: (Connection<Connection<String>>, Queue<Connection<String>>)) {
    let (pipe_in, queue_out) = args;
    // An end arrives through a pipe; it goes on through a queue.
    let end = pipe_in.recv().unwrap();
    end.send("hello through a pipe".to_string()).unwrap();
    queue_out.put(end).unwrap();
}

#[test]
fn connections_travel_through_pipes_and_queues_with_every_start_method() {
    let _t = heap_user(LIMIT);
    for method in METHODS {
        let (to_child, from_parent) = Pipe::new().unwrap();
        let q = Queue::new().unwrap();
        let child = Process::new(relay, (from_parent, q.clone())).start_method(method).start().unwrap();
        let (mine, travelling) = Pipe::new().unwrap();
        // The parent's handle of that end travels (send takes it): only the child's is left.
        to_child.send(travelling).unwrap();
        assert_eq!(mine.recv().unwrap(), "hello through a pipe");
        let back = q.get().unwrap();
        child.join().unwrap();
        back.send("and back".to_string()).unwrap();
        assert_eq!(mine.recv().unwrap(), "and back", "{method:?}");
        drop(back);
        assert_eq!(mine.recv(), Err(RecvError::Disconnected));
    }
}

fn make_a_pipe(conn: Connection<Connection<u8>>) {
    let (a, b) = Pipe::new().unwrap();
    a.send(9).unwrap();
    conn.send(b).unwrap();
}

#[test]
fn an_end_made_in_a_child_outlives_the_child() {
    let _t = heap_user(LIMIT);
    for method in METHODS {
        let (mine, theirs) = Pipe::new().unwrap();
        Process::new(make_a_pipe, theirs).start_method(method).start().unwrap().join().unwrap();
        let b = mine.recv().unwrap();
        assert_eq!(b.recv(), Ok(9), "{method:?}");
        assert_eq!(b.recv(), Err(RecvError::Disconnected), "the other end died with the child");
    }
}

fn shared_sender(args: (Connection<(u32, u32)>, u32)) {
    let (conn, id) = args;
    for i in 0..2000 {
        conn.send((id, i)).unwrap();
    }
}

#[test]
fn several_processes_may_share_one_end() {
    let _t = heap_user(LIMIT);
    let (rx, tx) = Pipe::one_way().unwrap();
    let senders: Vec<_> = (0..3).map(|id| Process::new(shared_sender, (tx.clone(), id)).start().unwrap()).collect();
    drop(tx);
    let mut last = [None; 3];
    let mut n = 0;
    while let Ok((id, i)) = rx.recv() {
        assert!(last[id as usize].is_none_or(|prev| i == prev + 1), "sender {id}: {last:?} then {i}");
        last[id as usize] = Some(i);
        n += 1;
    }
    assert_eq!(n, 6000);
    for s in senders {
        s.join().unwrap();
    }
}

// ---- wait ---------------------------------------------------------------------------------

fn reply_later(args: (Connection<u32>, u64)) {
    let (conn, ms) = args;
    std::thread::sleep(Duration::from_millis(ms));
    conn.send(ms as u32).ok();
}

#[test]
fn wait_returns_the_ready_ones() {
    let _t = heap_user(LIMIT);
    let (a, a_far) = Pipe::<u32>::new().unwrap();
    let (b, b_far) = Pipe::<u32>::new().unwrap();
    let q: Queue<u8> = Queue::new().unwrap();
    let q_far = q.clone();
    assert!(wait(&[&a, &b, &q], Some(Duration::ZERO)).is_empty());
    assert!(wait(&[&a, &b, &q], Some(Duration::from_millis(30))).is_empty());
    b_far.send(1).unwrap();
    assert_eq!(wait(&[&a, &b, &q], None), [1]);
    q_far.put(1).unwrap();
    assert_eq!(wait(&[&a, &b, &q], None), [1, 2]);
    b.recv().unwrap();
    q.get().unwrap();
    // A peer that closes makes its connection ready (a receive would not block).
    drop(a_far);
    assert_eq!(wait(&[&a, &b, &q], None), [0]);
    // A queue nobody else holds is ready too: a get would fail at once.
    drop(q_far);
    assert_eq!(wait(&[&b, &q], None), [1]);
    drop(b_far);
}

#[test]
fn wait_watches_processes_and_connections_together() {
    let _t = heap_user(LIMIT);
    for method in METHODS {
        let (a, a_far) = Pipe::<u32>::new().unwrap();
        let (b, b_far) = Pipe::<u32>::new().unwrap();
        let slow = Process::new(reply_later, (a_far, 200)).start_method(method).start().unwrap();
        let quick = Process::new(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 50)
            .start_method(method)
            .start()
            .unwrap();
        // The quick process ends first: it is what wakes the wait.
        let ready = wait(&[&a, &b, &slow, &quick], Some(Duration::from_secs(30)));
        assert_eq!(ready, [3], "{method:?}");
        quick.join().unwrap();
        // Then the slow one's message, then its end.
        let ready = wait(&[&a, &b, &slow], Some(Duration::from_secs(30)));
        assert!(ready.contains(&0), "{method:?}: {ready:?}");
        assert_eq!(a.recv().unwrap(), 200);
        assert_eq!(wait(&[&slow], Some(Duration::from_secs(30))), [0]);
        slow.join().unwrap();
        drop(b_far);
        assert_eq!(wait(&[&b], None), [0]);
    }
}

#[test]
fn wait_on_a_descriptor() {
    let _t = heap_user(LIMIT);
    let (r, w) = std::io::pipe().unwrap();
    use std::io::Write;
    use std::os::fd::AsFd;
    let (c, _c_far) = Pipe::<u8>::new().unwrap();
    assert!(wait(&[&r.as_fd(), &c], Some(Duration::from_millis(20))).is_empty());
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        (&w).write_all(b"x").unwrap();
        w
    });
    assert_eq!(wait(&[&r.as_fd(), &c], Some(Duration::from_secs(30))), [0]);
    drop(t.join().unwrap());
}

// ---- nothing leaks ----------------------------------------------------------------------

fn take_some(args: (Connection<ByteBuf>, usize)) {
    let (conn, n) = args;
    for _ in 0..n {
        conn.recv().unwrap();
    }
}

#[test]
fn a_pipe_and_its_unread_messages_are_freed_with_the_last_end() {
    let leaks = leak_check(LIMIT);
    {
        let (a, b) = Pipe::new().unwrap();
        for i in 0..200usize {
            a.send(ByteBuf::from(vec![i as u8; [10, 5000, 40_000][i % 3]])).unwrap();
        }
        Process::new(take_some, (b.clone(), 50)).start().unwrap().join().unwrap();
        drop(b);
        // A killed child holding an end does not keep it forever.
        let (c, d) = Pipe::<ByteBuf>::new().unwrap();
        let started = Value::new(0u32).unwrap();
        let child = Process::new(wait_and_die, (d, started.clone())).start().unwrap();
        assert!(common::eventually(Duration::from_secs(30), || started.get() == 1));
        c.send(ByteBuf::from(vec![1; 100_000])).unwrap();
        child.kill().unwrap();
        child.wait();
    }
    leaks.assert_no_leak();
}

fn wait_and_die(args: (Connection<ByteBuf>, Value<u32>)) {
    let (_keep, started) = args;
    started.set(1);
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn handles_inside_unread_messages_are_released_too() {
    let leaks = leak_check(LIMIT);
    {
        let (a, b) = Pipe::new().unwrap();
        for i in 0..10u32 {
            let inner = SimpleQueue::new().unwrap();
            inner.put(i).unwrap();
            a.send(inner).unwrap();
        }
        let (c, d) = Pipe::<Connection<u8>>::new().unwrap();
        let (e, f) = Pipe::new().unwrap();
        e.send(1).unwrap();
        c.send(f).unwrap();
        let (g, h) = Pipe::one_way().unwrap();
        h.send(Queue::<u8>::new().unwrap()).unwrap();
        drop((a, b, c, d, e, g, h));
    }
    leaks.assert_no_leak();
}

#[test]
fn handles_inside_a_message_taken_as_raw_bytes_are_released() {
    let leaks = leak_check(LIMIT);
    {
        let (a, b) = Pipe::new().unwrap();
        let inner = SimpleQueue::<u32>::new().unwrap();
        a.send(inner.clone()).unwrap();
        a.send(inner.clone()).unwrap();
        // The bytes cannot become a handle again: the handles they carried are gone with
        // the message, as with a message nobody reads.
        assert!(!b.recv_bytes().unwrap().is_empty());
        let mut buf = [0u8; 4096];
        assert!(b.recv_bytes_into(&mut buf).unwrap() > 0);
        drop((a, b, inner));
    }
    leaks.assert_no_leak();
}

#[test]
fn handles_inside_the_first_such_message_taken_as_raw_bytes_by_a_waiting_receiver_are_released() {
    // The receiver is already waiting when the ring's first message with handles comes:
    // whether the ring ever had handles must be read with the message, not before the wait.
    let leaks = leak_check(LIMIT);
    {
        let (a, b) = Pipe::new().unwrap();
        let inner = SimpleQueue::<u32>::new().unwrap();
        std::thread::scope(|s| {
            let receiver = s.spawn(|| b.recv_bytes().unwrap());
            // Give the receiver time to start waiting (were it late, the test would pass
            // without having looked at the case).
            std::thread::sleep(Duration::from_millis(200));
            a.send(inner.clone()).unwrap();
            assert!(!receiver.join().unwrap().is_empty());
        });
        drop((a, b, inner));
    }
    leaks.assert_no_leak();
}

/// Sent as a pair of queues; its decoding reads the first, then refuses: the second is
/// never reached (audit F7).
struct RefusedAfterFirst(Option<(SimpleQueue<u32>, SimpleQueue<u32>)>);

impl serde::Serialize for RefusedAfterFirst {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().expect("only the sender serializes").serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for RefusedAfterFirst {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_tuple(2, FirstOnly)
    }
}

/// [`RefusedAfterFirst`] read with `deserialize_any`: sent self-described (MessagePack).
struct SelfDescribedRefusedAfterFirst(RefusedAfterFirst);

impl serde::Serialize for SelfDescribedRefusedAfterFirst {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for SelfDescribedRefusedAfterFirst {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FirstOnly).map(SelfDescribedRefusedAfterFirst)
    }
}

/// Reads the first queue of two, then refuses.
struct FirstOnly;

impl<'de> serde::de::Visitor<'de> for FirstOnly {
    type Value = RefusedAfterFirst;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("two queues")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let _first: Option<SimpleQueue<u32>> = seq.next_element()?;
        Err(serde::de::Error::custom("refused after the first field"))
    }
}

#[test]
fn handles_after_the_point_where_a_decoding_failed_are_released() {
    let _w = common::watchdog(LIMIT);
    let leaks = leak_check(LIMIT);
    {
        let (first, second) = (SimpleQueue::<u32>::new().unwrap(), SimpleQueue::<u32>::new().unwrap());
        let (a, b) = Pipe::new().unwrap();
        a.send(RefusedAfterFirst(Some((first.clone(), second.clone())))).unwrap();
        assert!(matches!(b.recv(), Err(RecvError::Decode(_))));
        let queue = Queue::new().unwrap();
        queue.put(RefusedAfterFirst(Some((first.clone(), second.clone())))).unwrap();
        assert!(queue.get().is_err(), "the decoding refuses");
        let (c, d) = Pipe::new().unwrap();
        c.send(SelfDescribedRefusedAfterFirst(RefusedAfterFirst(Some((first.clone(), second.clone()))))).unwrap();
        assert!(matches!(d.recv(), Err(RecvError::Decode(_))));
        // The messages are gone, and the handles they held with them: the last holder of
        // each queue is alone, rather than waiting for a handle that never comes.
        assert_eq!(first.get(), Err(multiproc::GetError::Disconnected));
        assert_eq!(second.get(), Err(multiproc::GetError::Disconnected));
        drop((a, b, c, d, queue, first, second));
    }
    leaks.assert_no_leak();
}

#[test]
fn a_recv_already_waiting_when_the_first_message_with_handles_fails_to_decode_releases_the_rest() {
    // As above, but the receiver waits before the pipe's first message with handles is
    // sent: whether the ring ever had handles is read with the message, not before the wait.
    let _w = common::watchdog(LIMIT);
    let leaks = leak_check(LIMIT);
    {
        let (first, second) = (SimpleQueue::<u32>::new().unwrap(), SimpleQueue::<u32>::new().unwrap());
        let (a, b) = Pipe::new().unwrap();
        std::thread::scope(|s| {
            let receiver = s.spawn(|| matches!(b.recv(), Err(RecvError::Decode(_))));
            // Give the receiver time to start waiting (were it late, the test would pass
            // without having looked at the case).
            std::thread::sleep(Duration::from_millis(200));
            a.send(RefusedAfterFirst(Some((first.clone(), second.clone())))).unwrap();
            assert!(receiver.join().unwrap(), "the decoding refuses");
        });
        assert_eq!(first.get(), Err(multiproc::GetError::Disconnected));
        assert_eq!(second.get(), Err(multiproc::GetError::Disconnected));
        drop((a, b, first, second));
    }
    leaks.assert_no_leak();
}

#[test]
fn a_failed_decoding_gives_back_only_the_handles_of_its_own_message() {
    let _w = common::watchdog(LIMIT);
    let leaks = leak_check(LIMIT);
    {
        let queue = SimpleQueue::<u32>::new().unwrap();
        let (a, b) = Pipe::new().unwrap();
        let (c, d) = Pipe::new().unwrap();
        // The same object, in flight twice in one message and once in another.
        c.send(queue.clone()).unwrap();
        a.send(RefusedAfterFirst(Some((queue.clone(), queue.clone())))).unwrap();
        assert!(matches!(b.recv(), Err(RecvError::Decode(_))));
        // The other message's handle is still its own: it is received, and works.
        let received = d.recv().expect("the other message's handle was left in flight");
        queue.put(5).unwrap();
        assert_eq!(received.get().unwrap(), 5);
        drop((a, b, c, d, received));
        assert_eq!(queue.get(), Err(multiproc::GetError::Disconnected), "nothing else holds it");
    }
    leaks.assert_no_leak();
}

// ---- a receiver killed inside recv loses nothing (issue 10, item 6) ---------------------

fn number_of(m: &[u8]) -> usize {
    u64::from_le_bytes(m[..8].try_into().unwrap()) as usize
}

/// A receiver's last step, as it records it in shared memory (the step in the high half,
/// the message's number in the low one): the test reads it once the receiver is killed, to
/// tell in which window the kill found it.
const WAITING: u64 = 0;
const DECODED: u64 = 1 << 32;
const RETURNED: u64 = 2 << 32;
const MARKED: u64 = 3 << 32;

/// Where this process, a receiver, records its step (set in the receivers only).
static STEP: std::sync::OnceLock<RawValue<u64>> = std::sync::OnceLock::new();

fn record_step(step: u64) {
    if let Some(at) = STEP.get() {
        at.set(step);
    }
}

fn step_name(step: u64) -> String {
    let i = step & 0xffff_ffff;
    match step & !0xffff_ffff {
        WAITING if i == 0 => "inside recv, nothing received yet".to_string(),
        WAITING => format!("inside recv, {} marked last", i - 1),
        DECODED => format!("decoded {i} (inside the take, under the lock)"),
        RETURNED => format!("recv returned {i}, not marked yet"),
        MARKED => format!("marked {i}"),
        _ => format!("unknown step {step:#x}"),
    }
}

/// A numbered message whose decoding records, in a receiver, that it has the whole message:
/// the decoding runs inside the ring's take, before the take is committed.
struct Numbered(ByteBuf);

impl serde::Serialize for Numbered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Numbered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = ByteBuf::deserialize(d)?;
        if bytes.len() >= 8 {
            record_step(DECODED | number_of(&bytes) as u64);
        }
        Ok(Numbered(bytes))
    }
}

/// A receiver's arguments: the pipe's end, `got`, `started`, `in_recv`, `step`.
type Receiving = (Connection<Numbered>, RawArray<u8>, Value<u32>, RawValue<u32>, RawValue<u64>);

/// Receives messages and marks each one in `got` the moment `recv` returned it, recording
/// each step in `step`.
fn record_what_you_receive(args: Receiving) {
    let (conn, got, started, in_recv, step) = args;
    let _ = STEP.set(step);
    started.set(started.get() + 1);
    // The number after the last message marked (0 before the first).
    let mut next = 0;
    loop {
        record_step(WAITING | next);
        in_recv.set(1);
        let Ok(m) = conn.recv() else { break };
        let i = number_of(&m.0);
        record_step(RETURNED | i as u64);
        got.set(i, 1);
        record_step(MARKED | i as u64);
        in_recv.set(0);
        next = i as u64 + 1;
    }
    in_recv.set(0);
}

/// Where one kill found its receiver, and the messages the ring had handed over by then.
struct Kill {
    step: u64,
    taken: u64,
}

impl Kill {
    /// Whether this kill explains why message `i` was never marked: the receiver died with
    /// `i` decoded or returned, and the ring had committed the take of `i` (it was the
    /// receiver's, so no one else could receive it). A receiver cannot make its take's
    /// commit and its `recv`'s return one step: a kill between the two is not a loss of the
    /// ring. Anything else unmarked is.
    fn explains(&self, i: usize) -> bool {
        let holding = matches!(self.step & !0xffff_ffff, DECODED | RETURNED) && self.step & 0xffff_ffff == i as u64;
        holding && self.taken == i as u64 + 1
    }
}

#[test]
fn a_receiver_killed_inside_recv_never_loses_a_large_message() {
    let _t = heap_user(LIMIT);
    const N: usize = 40;
    let (rx, tx) = Pipe::<Numbered>::one_way().unwrap();
    let got = RawArray::<u8>::new(N).unwrap();
    let started = Value::new(0u32).unwrap();
    let in_recv = RawValue::new(0u32).unwrap();
    let step = RawValue::new(0u64).unwrap();
    let producer = {
        let got = got.clone();
        std::thread::spawn(move || {
            for i in 0..N {
                // A few messages deep (for a while only: a lost one is never recorded).
                common::eventually(Duration::from_millis(300), || (0..i).filter(|&j| got.get(j) == 0).count() < 4);
                let mut m = vec![0u8; (1 << 20) << (i % 4)];
                m[..8].copy_from_slice(&(i as u64).to_le_bytes());
                tx.send(Numbered(ByteBuf::from(m))).unwrap();
            }
        })
    };
    let mut seed = u64::from(std::process::id());
    let mut kills = Vec::new();
    while !producer.is_finished() {
        let before = started.get();
        let args = (rx.clone(), got.clone(), started.clone(), in_recv.clone(), step.clone());
        let c = Process::new(record_what_you_receive, args).start().unwrap();
        assert!(common::eventually(Duration::from_secs(30), || started.get() > before));
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        std::thread::sleep(Duration::from_micros((seed >> 33) % 40_000));
        // Inside a `recv`, mostly (the steps say where exactly).
        let _ = common::eventually(Duration::from_secs(1), || in_recv.get() == 1);
        c.kill().unwrap();
        c.wait();
        // Read before the next receiver runs: what this one had, and what the ring gave.
        kills.push(Kill { step: step.get(), taken: multiproc::__private::connection_taken(&rx) });
    }
    producer.join().unwrap();
    // What a killed receiver was taking, and what came after, is still in the pipe.
    while let Ok(m) = rx.try_recv() {
        got.set(number_of(&m.0), 1);
    }
    let unmarked = (0..N).filter(|&i| got.get(i) == 0);
    let (explained, lost): (Vec<usize>, Vec<usize>) = unmarked.partition(|&i| kills.iter().any(|k| k.explains(i)));
    for &i in &explained {
        let kill = kills.iter().find(|k| k.explains(i)).expect("explained");
        eprintln!("message {i} was the receiver's when it was killed (not a loss): {}", step_name(kill.step));
    }
    let seen: Vec<String> = kills.iter().map(|k| format!("{} ({} taken)", step_name(k.step), k.taken)).collect();
    assert!(
        lost.is_empty(),
        "{} of {N} messages lost after {} kills: {lost:?}; where the kills found the receivers: {seen:#?}",
        lost.len(),
        kills.len(),
    );
}

// ---- wait on nothing (issue 10, item 5) --------------------------------------------------

#[test]
fn wait_on_nothing_returns_at_once() {
    let _t = heap_user(Duration::from_secs(30));
    assert_eq!(wait(&[], None), Vec::<usize>::new());
    // Closed handles and a send-only end are ready at once: the receive or get that
    // follows fails at once with `Closed` (syn91, after aud81 L3).
    let (rx, tx) = Pipe::<u8>::one_way().unwrap();
    let mut closed = rx.clone();
    closed.close();
    let mut q = Queue::<u8>::new().unwrap();
    q.close();
    assert_eq!(wait(&[&closed, &q, &tx], None), [0, 1, 2]);
}

// ---- receivers sharing an end, the sender gone (issue 10, item 1) -----------------------

fn recv_until_disconnected(args: (Connection<u32>, Value<u32>)) {
    let (conn, disconnected) = args;
    loop {
        match conn.recv() {
            Ok(_) => {}
            Err(RecvError::Disconnected) => {
                *disconnected.lock() += 1;
                return;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn two_processes_sharing_a_receiving_end_are_both_disconnected_when_the_sender_ends() {
    let _t = heap_user(LIMIT);
    let disconnected = Value::new(0u32).unwrap();
    for duplex in [false, true] {
        let (a, b) = if duplex { Pipe::new().unwrap() } else { Pipe::one_way().map(|(r, w)| (w, r)).unwrap() };
        let children: Vec<_> = (0..2)
            .map(|_| Process::new(recv_until_disconnected, (b.clone(), disconnected.clone())).start().unwrap())
            .collect();
        drop(b);
        a.send(1).unwrap();
        drop(a);
        let ended = common::eventually(Duration::from_secs(20), || children.iter().all(|c| !c.is_alive()));
        for c in &children {
            if !ended {
                let _ = c.kill();
            }
            c.wait();
        }
        assert!(ended, "receivers still waiting with the sender gone (duplex: {duplex})");
    }
    assert_eq!(disconnected.get(), 4);
}

// ---- an end in a message that is not read wholly ends the other's stream (side37) --------

/// Sent as an `S` (a tuple); read as a tuple whose first element is an `X`, after which the
/// decoding refuses: what comes after the first element is never reached. With `ANY`, read
/// with `deserialize_any`, so sent self-described (MessagePack).
struct Misread<S, X, const ANY: bool>(Option<S>, std::marker::PhantomData<fn() -> X>);

impl<S, X, const ANY: bool> Misread<S, X, ANY> {
    fn new(sent: S) -> Self {
        Self(Some(sent), std::marker::PhantomData)
    }
}

impl<S: serde::Serialize, X, const ANY: bool> serde::Serialize for Misread<S, X, ANY> {
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        self.0.as_ref().expect("only the sender serializes").serialize(serializer)
    }
}

impl<'de, S, X: serde::Deserialize<'de>, const ANY: bool> serde::Deserialize<'de> for Misread<S, X, ANY> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if ANY {
            deserializer.deserialize_any(FirstAs::<S, X, ANY>(std::marker::PhantomData))
        } else {
            deserializer.deserialize_tuple(2, FirstAs::<S, X, ANY>(std::marker::PhantomData))
        }
    }
}

/// Reads the first element of a sequence as an `X`, then refuses.
struct FirstAs<S, X, const ANY: bool>(std::marker::PhantomData<fn() -> (S, X)>);

impl<'de, S, X: serde::Deserialize<'de>, const ANY: bool> serde::de::Visitor<'de> for FirstAs<S, X, ANY> {
    type Value = Misread<S, X, ANY>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let _first: Option<X> = seq.next_element()?;
        Err(serde::de::Error::custom("refused after the first field"))
    }
}

/// `(u32, end)` whose decoding stops at the number, before the end.
type StopsBeforeTheEnd<const ANY: bool> = Misread<(u32, Connection<u32>), u32, ANY>;
/// `(end, u32)` whose end is read as a queue.
type EndAsAQueue<const ANY: bool> = Misread<(Connection<u32>, u32), SimpleQueue<u32>, ANY>;
/// `(end, u32)` whose end is read as an end of a pipe of another message type.
type EndOfAnotherType<const ANY: bool> = Misread<(Connection<u32>, u32), Connection<String>, ANY>;

/// Sends `message` through a queue or a pipe (`through_a_queue`) and has it taken: the
/// decoding must refuse it (`what` names the case in a failure).
fn sent_and_refused<M>(message: M, through_a_queue: bool, what: &str)
where
    M: serde::Serialize + serde::de::DeserializeOwned,
{
    if through_a_queue {
        let queue = Queue::new().unwrap();
        queue.put(message).unwrap();
        assert!(matches!(queue.get(), Err(multiproc::GetError::Decode(_))), "{what}: the decoding refuses");
    } else {
        let (a, b) = Pipe::new().unwrap();
        a.send(message).unwrap();
        assert!(matches!(b.recv(), Err(RecvError::Decode(_))), "{what}: the decoding refuses");
    }
}

/// Sends one end of a new pipe away in `message` (through a pipe or a queue, `through`),
/// has it taken and refused, and checks that the end kept here then sees the end of the
/// stream rather than waiting for an end nobody holds. Returns the cases that failed.
fn the_kept_end_sees_the_sent_end_gone<M>(what: &str, message: impl Fn(Connection<u32>) -> M) -> Vec<String>
where
    M: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut failed = Vec::new();
    for through_a_queue in [false, true] {
        let (sent, kept) = Pipe::<u32>::new().unwrap();
        sent_and_refused(message(sent), through_a_queue, what);
        // A bound, not a duration asserted (the end is known gone at the next look, a tenth
        // of a second): before side37 this timed out, a plain `recv` waited for ever.
        let got = kept.recv_timeout(Duration::from_secs(10));
        if got != Err(RecvTimeoutError::Disconnected) {
            failed.push(format!("{what} (through a queue: {through_a_queue}): {got:?}"));
        }
    }
    failed
}

#[test]
fn an_end_in_a_message_whose_decoding_stops_before_it_ends_the_other_ends_stream() {
    let leaks = leak_check(LIMIT);
    let mut failed = the_kept_end_sees_the_sent_end_gone("postcard", |end| StopsBeforeTheEnd::<false>::new((13, end)));
    failed.extend(the_kept_end_sees_the_sent_end_gone("MessagePack", |end| StopsBeforeTheEnd::<true>::new((13, end))));
    assert!(failed.is_empty(), "the kept end did not see the end of the stream: {failed:#?}");
    leaks.assert_no_leak();
}

#[test]
fn an_end_read_as_another_type_ends_the_other_ends_stream() {
    let leaks = leak_check(LIMIT);
    let mut failed =
        the_kept_end_sees_the_sent_end_gone("a queue, postcard", |end| EndAsAQueue::<false>::new((end, 13)));
    failed
        .extend(the_kept_end_sees_the_sent_end_gone("a queue, MessagePack", |end| EndAsAQueue::<true>::new((end, 13))));
    failed.extend(the_kept_end_sees_the_sent_end_gone("another end, postcard", |end| {
        EndOfAnotherType::<false>::new((end, 13))
    }));
    failed.extend(the_kept_end_sees_the_sent_end_gone("another end, MessagePack", |end| {
        EndOfAnotherType::<true>::new((end, 13))
    }));
    assert!(failed.is_empty(), "the kept end did not see the end of the stream: {failed:#?}");
    leaks.assert_no_leak();
}

/// An end discarded unread is seen gone by the calls that do not wait too: none of them
/// may report an empty stream, or let a sender pile messages up, for an end nobody holds.
/// (review41 M1: only a waiting receive saw it, at its next slice; `try_recv` said `Empty`,
/// `poll(0)` `false`, and `send` succeeded.)
#[test]
fn an_end_discarded_unread_is_seen_gone_without_a_wait() {
    let leaks = leak_check(LIMIT);
    let mut failed = Vec::new();
    for through_a_queue in [false, true] {
        let (sent, kept) = Pipe::<u32>::new().unwrap();
        let message = EndAsAQueue::<false>::new((sent, 13));
        sent_and_refused(message, through_a_queue, "an end read as a queue");
        let got = kept.try_recv();
        if got != Err(TryRecvError::Disconnected) {
            failed.push(format!("try_recv (through a queue: {through_a_queue}): {got:?}"));
        }
        if !kept.poll(Duration::ZERO) {
            failed.push(format!("poll(0) (through a queue: {through_a_queue}): false"));
        }
        let sent = kept.send(1);
        if !matches!(sent, Err(SendError::Disconnected(1))) {
            failed.push(format!("send (through a queue: {through_a_queue}): {sent:?}"));
        }
    }
    assert!(failed.is_empty(), "a call that does not wait did not see the end gone: {failed:#?}");
    leaks.assert_no_leak();
}

fn never_runs(_: StopsBeforeTheEnd<false>) {
    unreachable!("the argument's decoding refuses");
}

fn never_runs_either(_: EndAsAQueue<false>) {
    unreachable!("the argument's decoding refuses");
}

#[test]
fn an_end_in_a_child_argument_not_read_wholly_ends_the_other_ends_stream() {
    let leaks = leak_check(LIMIT);
    let mut failed = Vec::new();
    for method in METHODS {
        for as_a_queue in [false, true] {
            let (sent, kept) = Pipe::<u32>::new().unwrap();
            let child = if as_a_queue {
                Process::new(never_runs_either, EndAsAQueue::new((sent, 13))).start_method(method).start()
            } else {
                Process::new(never_runs, StopsBeforeTheEnd::new((13, sent))).start_method(method).start()
            };
            if let Ok(child) = child {
                assert!(child.join().is_err(), "{method:?}: the argument's decoding refuses");
            }
            // A bound, not a duration asserted; four of them well inside the watchdog, so
            // that a regression ends in this test's message, not in its abort (review41 L6:
            // four of 30 s were the watchdog's whole 120 s).
            let got = kept.recv_timeout(Duration::from_secs(10));
            if got != Err(RecvTimeoutError::Disconnected) {
                failed.push(format!("{method:?} (read as a queue: {as_a_queue}): {got:?}"));
            }
        }
    }
    assert!(failed.is_empty(), "the kept end did not see the end of the stream: {failed:#?}");
    leaks.assert_no_leak();
}

fn never_runs_in_a_pool(_: StopsBeforeTheEnd<false>) -> u32 {
    unreachable!("the task's decoding refuses");
}

fn never_runs_in_a_pool_either(_: EndAsAQueue<false>) -> u32 {
    unreachable!("the task's decoding refuses");
}

/// review41 L3: a pool's `map` of more than one item with chunk size 1 takes the claims
/// path, where a task's handles travel as counts in flight in the claim table, not in a
/// carrier: a task whose decoding stops before the end, or reads it as a queue, gives the
/// end's counts back (the typeless discard, after the item is marked taken), and the kept
/// end sees the end of the stream. The worker's path held; the second item, which the
/// failed map left unclaimed and the pool dropped itself (`drop_item`, a decoding that did
/// not give back what it did not read), kept its end in flight: `Err(Timeout)` for the
/// decoding that stops before the end.
#[test]
fn an_end_in_a_pool_task_on_the_claims_path_not_read_wholly_ends_the_other_ends_stream() {
    let leaks = leak_check(LIMIT);
    let pool = multiproc::Pool::new(1).unwrap();
    let claims = || multiproc::MapOptions::new().chunksize(1);
    let mut failed = Vec::new();
    for as_a_queue in [false, true] {
        let (sent, kept): (Vec<_>, Vec<_>) = (0..2).map(|_| Pipe::<u32>::new().unwrap()).unzip();
        let mapped = if as_a_queue {
            let items = sent.into_iter().map(|end| EndAsAQueue::<false>::new((end, 13))).collect::<Vec<_>>();
            pool.map_with(never_runs_in_a_pool_either, items, claims())
        } else {
            let items = sent.into_iter().map(|end| StopsBeforeTheEnd::<false>::new((13, end))).collect::<Vec<_>>();
            pool.map_with(never_runs_in_a_pool, items, claims())
        };
        match mapped {
            Err(e) => assert!(!e.to_string().contains("Vec<"), "a chunk's decoding, not a claimed item's: {e}"),
            Ok(_) => panic!("the task's decoding refuses (read as a queue: {as_a_queue})"),
        }
        for (i, kept) in kept.iter().enumerate() {
            // A bound, not a duration asserted.
            let got = kept.recv_timeout(Duration::from_secs(10));
            if got != Err(RecvTimeoutError::Disconnected) {
                failed.push(format!("item {i}, read as a queue: {as_a_queue}: {got:?}"));
            }
        }
    }
    assert!(failed.is_empty(), "the kept end did not see the end of the stream: {failed:#?}");
    drop(pool);
    leaks.assert_no_leak();
}

/// Both ends of one pipe in one message note the same handle read (the object's offset,
/// generation and seal): the first end, read, is matched with its read, and the second,
/// never reached, is given back, its side's count with it.
#[test]
fn of_both_ends_in_one_message_the_one_not_reached_is_given_back() {
    let leaks = leak_check(LIMIT);
    for through_a_queue in [false, true] {
        let (x, y) = Pipe::<u32>::new().unwrap();
        let kept = x.clone();
        let message = Misread::<(Connection<u32>, Connection<u32>), Connection<u32>, false>::new((x, y));
        sent_and_refused(message, through_a_queue, "both ends, the second not reached");
        let got = kept.recv_timeout(Duration::from_secs(10));
        assert_eq!(got, Err(RecvTimeoutError::Disconnected), "through a queue: {through_a_queue}");
    }
    leaks.assert_no_leak();
}

/// Sent as an `S` (a tuple of two); read self-described, its first element skipped
/// unread (`IgnoredAny`: no handle's `Deserialize` runs), its second as an `X`, after which
/// the decoding refuses.
struct SkipsTheFirst<S, X>(Option<S>, std::marker::PhantomData<fn() -> X>);

impl<S: serde::Serialize, X> serde::Serialize for SkipsTheFirst<S, X> {
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        self.0.as_ref().expect("only the sender serializes").serialize(serializer)
    }
}

impl<'de, S, X: serde::Deserialize<'de>> serde::Deserialize<'de> for SkipsTheFirst<S, X> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Second<S, X>(std::marker::PhantomData<fn() -> (S, X)>);
        impl<'de, S, X: serde::Deserialize<'de>> serde::de::Visitor<'de> for Second<S, X> {
            type Value = SkipsTheFirst<S, X>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let _first: Option<serde::de::IgnoredAny> = seq.next_element()?;
                let _second: Option<X> = seq.next_element()?;
                Err(serde::de::Error::custom("refused after the second field"))
            }
        }
        deserializer.deserialize_any(Second(std::marker::PhantomData))
    }
}

/// Both ends of one pipe in one message, the first skipped unread and the second read: the
/// unread scan must give back the skipped one's side, not take the read for it. (review41
/// L4: a read noted the object's offset, generation and seal alone, the same for both
/// ends, and the scan matched it with the first end found, the skipped one: its side's
/// count stayed in flight, and the other end never saw the end of the stream.)
#[test]
fn of_both_ends_in_one_message_the_one_skipped_unread_is_given_back() {
    let leaks = leak_check(LIMIT);
    let mut failed = Vec::new();
    for through_a_queue in [false, true] {
        let (x, y) = Pipe::<u32>::new().unwrap();
        let kept = x.clone();
        let message = SkipsTheFirst::<(Connection<u32>, Connection<u32>), Connection<u32>>(
            Some((y, x)),
            std::marker::PhantomData,
        );
        sent_and_refused(message, through_a_queue, "both ends, the first skipped");
        let got = kept.recv_timeout(Duration::from_secs(10));
        if got != Err(RecvTimeoutError::Disconnected) {
            failed.push(format!("through a queue: {through_a_queue}: {got:?}"));
        }
    }
    assert!(failed.is_empty(), "the kept end did not see the skipped end gone: {failed:#?}");
    leaks.assert_no_leak();
}

// ---- an end whose object's receive is refused for a full heap (review41 M2) ---------------

const FULL_INNER: &str = "MULTIPROC_TEST_PIPE_FULL_INNER";

/// Four processes holding a handle beside this one, until [`FourHolders::let_go`] (or a
/// failed test's drop): its table has no free entry left. Each takes its handle from a
/// queue: a child's argument's carrier would take an entry of its own.
struct FourHolders {
    released: SetOnDrop,
    holders: Vec<multiproc::ProcessHandle<()>>,
}

impl FourHolders {
    fn of<T>(handle: &T, method: StartMethod) -> Self
    where
        T: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        let (release, ready, handles) = (Event::new().unwrap(), Queue::new().unwrap(), Queue::new().unwrap());
        let released = SetOnDrop(release.clone());
        let holders = (0..4)
            .map(|_| {
                handles.put(handle.clone()).unwrap();
                let args = (handles.clone(), ready.clone(), release.clone());
                Process::new(hold_one::<T>, args).start_method(method).start().unwrap()
            })
            .collect();
        for _ in 0..4 {
            ready.get().unwrap();
        }
        Self { released, holders }
    }

    /// Lets the four go, and joins them.
    fn let_go(self) {
        let Self { released, holders } = self;
        drop(released);
        for h in holders {
            h.join().unwrap();
        }
    }
}

/// Gets a handle from `handles` and holds it, says so in `ready`, until `release` is set.
fn hold_one<T: serde::Serialize + serde::de::DeserializeOwned>(args: (Queue<T>, Queue<u32>, Event)) {
    let (handles, ready, release) = args;
    let _held = handles.get().unwrap();
    ready.put(1).unwrap();
    let _ = release.wait();
}

/// Once `go` is set, gets the end in `q`, whose receive the full heap must refuse.
fn get_an_end_on_go(args: (Queue<Connection<u32>>, Event)) {
    let (q, go) = args;
    let _ = go.wait();
    match q.get() {
        Err(multiproc::GetError::Decode(e)) if e.is_heap_full() => {}
        other => panic!("the end's receive was not refused for the full heap: {other:?}"),
    }
}

/// Sets its event when dropped: the parked holders end whatever the test's outcome.
struct SetOnDrop(Event);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

#[test]
fn an_end_refused_for_a_full_heap_ends_the_other_ends_stream_inner() {
    if std::env::var_os(FULL_INNER).is_none() {
        return;
    }
    let mut failed = Vec::new();
    for method in METHODS {
        let leaks = leak_check(LIMIT);
        {
            let (sent, kept) = Pipe::<u32>::new().unwrap();
            let go = Event::new().unwrap();
            // Four holders of the kept end beside this process: the pipe's own table has no
            // free entry left, and a receive of the sent end needs one (the heap being full,
            // it is refused before the end's side is reached). Each gets its end from a
            // queue: a child's argument's carrier would take an entry of its own.
            let holders = FourHolders::of(&kept, method);
            let q = Queue::new().unwrap();
            q.put(sent).unwrap();
            let consumer =
                Process::new(get_an_end_on_go, (q.clone(), go.clone())).start_method(method).start().unwrap();
            let filler = common::fill_heap();
            assert!(!filler.room_for(64), "the heap is full");
            go.set();
            assert_eq!(consumer.wait(), 0, "{method:?}: the consumer was not refused for the full heap");
            drop(filler);
            // A bound, not a duration asserted: before, the sent end's side count stayed in
            // flight for ever, and this timed out.
            let got = kept.recv_timeout(Duration::from_secs(10));
            if got != Err(RecvTimeoutError::Disconnected) {
                failed.push(format!("{method:?}: {got:?}"));
            }
            holders.let_go();
        }
        leaks.assert_no_leak();
    }
    assert!(failed.is_empty(), "the kept end did not see the end of the stream: {failed:#?}");
    println!("INNER-DONE");
}

/// review41 M2: an end in a message whose receive of the pipe itself was refused for a
/// full heap left its side's count in flight for ever (the decoding returned before the
/// side was reached, the wire noted read): the other end waited for ever.
#[test]
fn an_end_refused_for_a_full_heap_ends_the_other_ends_stream() {
    // Another process: the inner test fills the family's heap.
    let _w = common::watchdog(LIMIT);
    common::run_inner_test("an_end_refused_for_a_full_heap_ends_the_other_ends_stream_inner", FULL_INNER);
}

/// A queue in either variant: the first fails on the field beside the queue.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum QueueJob {
    Count(Queue<String>, u32),
    Name(Queue<String>, String),
}

/// Once `go` is set, gets the job in `jobs`, whose queue's receive the full heap must
/// refuse in each of its attempts.
fn get_a_job_on_go(args: (Queue<QueueJob>, Event)) {
    let (jobs, go) = args;
    let _ = go.wait();
    match jobs.get() {
        Err(multiproc::GetError::Decode(e)) if e.is_heap_full() => {}
        Err(e) => panic!("the job's queue was not refused for the full heap: {e}"),
        Ok(_) => panic!("the job's queue was received on a full heap"),
    }
}

#[test]
fn a_queue_refused_for_a_full_heap_in_each_attempt_takes_one_count_inner() {
    if std::env::var_os(FULL_INNER).is_none() {
        return;
    }
    let mut failed = Vec::new();
    for method in METHODS {
        let leaks = leak_check(LIMIT);
        {
            let q = Queue::<String>::new().unwrap();
            let go = Event::new().unwrap();
            // Four holders of `q` beside this process: its table has no free entry left,
            // and the consumer's receive needs one.
            let holders = FourHolders::of(&q, method);
            let jobs = Queue::new().unwrap();
            jobs.put(QueueJob::Name(q.clone(), "x".to_string())).unwrap();
            // Another message naming the same queue, read once the heap is back.
            let plain = Queue::<Queue<String>>::new().unwrap();
            plain.put(q.clone()).unwrap();
            let consumer =
                Process::new(get_a_job_on_go, (jobs.clone(), go.clone())).start_method(method).start().unwrap();
            let filler = common::fill_heap();
            assert!(!filler.room_for(64), "the heap is full");
            go.set();
            assert_eq!(consumer.wait(), 0, "{method:?}: the consumer was not refused for the full heap");
            drop(filler);
            match plain.get_timeout(Duration::from_secs(10)) {
                Ok(got) => {
                    got.put("through the other message".to_string()).unwrap();
                    assert_eq!(q.get().unwrap(), "through the other message");
                }
                Err(e) => failed.push(format!("{method:?}: the other message's queue: {e}")),
            }
            holders.let_go();
        }
        leaks.assert_no_leak();
    }
    assert!(failed.is_empty(), "a message naming the queue was lost: {failed:#?}");
    println!("INNER-DONE");
}

/// A queue twice in one message: decoded, the first copy's read swallowed whatever it
/// says (safe serde code that lies), then the second copy read.
struct TwoCopiesOfAQueue(Option<Queue<String>>);

impl serde::Serialize for TwoCopiesOfAQueue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let queue = self.0.as_ref().expect("only a sender serializes");
        (queue, queue).serialize(serializer)
    }
}

/// A queue's read whose refusal is swallowed.
struct Swallowed;

impl<'de> serde::Deserialize<'de> for Swallowed {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let _ = Queue::<String>::deserialize(deserializer);
        Ok(Swallowed)
    }
}

impl<'de> serde::Deserialize<'de> for TwoCopiesOfAQueue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (Swallowed, second) = <(Swallowed, Queue<String>)>::deserialize(deserializer)?;
        Ok(TwoCopiesOfAQueue(Some(second)))
    }
}

/// Once `go` is set, gets the message in `copies`, whose second copy's receive the full
/// heap must refuse.
fn get_two_copies_on_go(args: (Queue<TwoCopiesOfAQueue>, Event)) {
    let (copies, go) = args;
    let _ = go.wait();
    match copies.get() {
        Err(multiproc::GetError::Decode(e)) if e.is_heap_full() => {}
        Err(e) => panic!("the second copy was not refused for the full heap: {e}"),
        Ok(_) => panic!("the second copy was received on a full heap"),
    }
}

#[test]
fn each_copy_of_a_queue_refused_for_a_full_heap_takes_its_count_inner() {
    if std::env::var_os(FULL_INNER).is_none() {
        return;
    }
    for method in METHODS {
        let leaks = leak_check(LIMIT);
        {
            let q = Queue::<String>::new().unwrap();
            let go = Event::new().unwrap();
            // Four holders of `q` beside this process: its table has no free entry left,
            // and the consumer's receive needs one.
            let holders = FourHolders::of(&q, method);
            let copies = Queue::new().unwrap();
            copies.put(TwoCopiesOfAQueue(Some(q.clone()))).unwrap();
            let consumer =
                Process::new(get_two_copies_on_go, (copies.clone(), go.clone())).start_method(method).start().unwrap();
            let filler = common::fill_heap();
            assert!(!filler.room_for(64), "the heap is full");
            go.set();
            assert_eq!(consumer.wait(), 0, "{method:?}: the consumer was not refused for the full heap");
            drop(filler);
            holders.let_go();
        }
        leaks.assert_no_leak();
    }
    println!("INNER-DONE");
}

/// hand40's price (d): a queue twice in one message, each copy's receive refused for a full
/// heap (the first one's refusal swallowed). The second copy, told apart from the first by
/// its mark only, was taken for another attempt at the first's bytes: refused again
/// without registering the take of its count, which stayed in flight for the family's life
/// (the queue was never freed).
#[test]
fn each_copy_of_a_queue_refused_for_a_full_heap_takes_its_count() {
    // Another process: the inner test fills the family's heap.
    let _w = common::watchdog(LIMIT);
    common::run_inner_test("each_copy_of_a_queue_refused_for_a_full_heap_takes_its_count_inner", FULL_INNER);
}

/// A pipe end in either variant: the first fails on the field beside the end.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum EndJob {
    Count(Connection<u32>, u32),
    Name(Connection<u32>, String),
}

/// Gets the job in `jobs`, whose end's receive the full heap must refuse.
fn get_a_job_refused_for_the_full_heap(jobs: &Queue<EndJob>) {
    match jobs.get() {
        Err(multiproc::GetError::Decode(e)) if e.is_heap_full() => {}
        Err(e) => panic!("the job's end was not refused for the full heap: {e}"),
        Ok(_) => panic!("the job's end was received on a full heap"),
    }
}

/// Once `go` is set, gets the job in `jobs`, whose end's receive the full heap must refuse
/// in each of its attempts.
fn get_an_end_job_on_go(args: (Queue<EndJob>, Event)) {
    let (jobs, go) = args;
    let _ = go.wait();
    get_a_job_refused_for_the_full_heap(&jobs);
}

#[test]
fn an_end_refused_for_a_full_heap_in_each_attempt_takes_one_count_inner() {
    if std::env::var_os(FULL_INNER).is_none() {
        return;
    }
    let mut failed = Vec::new();
    for method in METHODS {
        let leaks = leak_check(LIMIT);
        {
            let (sent, kept) = Pipe::<u32>::new().unwrap();
            let go = Event::new().unwrap();
            // Four holders of the kept end beside this process: the pipe's table has no
            // free entry left (see `an_end_refused_for_a_full_heap_ends_the_other_ends_stream`).
            let holders = FourHolders::of(&kept, method);
            let jobs = Queue::new().unwrap();
            jobs.put(EndJob::Name(sent.clone(), "x".to_string())).unwrap();
            // Another message naming the same end, read once the heap is back.
            let plain = Queue::<Connection<u32>>::new().unwrap();
            plain.put(sent).unwrap();
            let consumer =
                Process::new(get_an_end_job_on_go, (jobs.clone(), go.clone())).start_method(method).start().unwrap();
            let filler = common::fill_heap();
            assert!(!filler.room_for(64), "the heap is full");
            go.set();
            assert_eq!(consumer.wait(), 0, "{method:?}: the consumer was not refused for the full heap");
            drop(filler);
            match plain.get_timeout(Duration::from_secs(10)) {
                Ok(got) => {
                    got.send(7).unwrap();
                    assert_eq!(kept.recv_timeout(Duration::from_secs(10)), Ok(7));
                    drop(got);
                    // The end's last handle: the kept end sees the end of the stream.
                    let end = kept.recv_timeout(Duration::from_secs(10));
                    if end != Err(RecvTimeoutError::Disconnected) {
                        failed.push(format!("{method:?}: after the other message's end: {end:?}"));
                    }
                }
                Err(e) => failed.push(format!("{method:?}: the other message's end: {e}")),
            }
            holders.let_go();
        }
        leaks.assert_no_leak();
    }
    assert!(failed.is_empty(), "a message naming the end was lost: {failed:#?}");
    println!("INNER-DONE");
}

/// review52 M1 for a pipe's end: the object's refusal registered the take of the side's
/// count too, and the next attempt did both again.
#[test]
fn an_end_refused_for_a_full_heap_in_each_attempt_takes_one_count() {
    // Another process: the inner test fills the family's heap.
    let _w = common::watchdog(LIMIT);
    common::run_inner_test("an_end_refused_for_a_full_heap_in_each_attempt_takes_one_count_inner", FULL_INNER);
}

/// review52 M1: a pending receive refused for a full heap leaves the count in flight for
/// the message's take; an untagged enum's next attempt at the same bytes received again
/// (refused again, or received once the heap was back): one wire took two counts at the
/// take, and another message naming the same queue then failed "received already".
#[test]
fn a_queue_refused_for_a_full_heap_in_each_attempt_takes_one_count() {
    // Another process: the inner test fills the family's heap.
    let _w = common::watchdog(LIMIT);
    common::run_inner_test("a_queue_refused_for_a_full_heap_in_each_attempt_takes_one_count_inner", FULL_INNER);
}

/// Gets the pipe's other end from `ends` (so that its object has an entry of this process
/// already), says so, then, once `go` is set, gets the job in `jobs`, whose end's side
/// receive the full heap must refuse in each of its attempts.
fn get_an_end_job_holding_the_other(args: (Queue<Connection<u32>>, Queue<u32>, Queue<EndJob>, Event)) {
    let (ends, ready, jobs, go) = args;
    let _other = ends.get().unwrap();
    ready.put(1).unwrap();
    let _ = go.wait();
    get_a_job_refused_for_the_full_heap(&jobs);
}

#[test]
fn an_ends_side_refused_for_a_full_heap_in_each_attempt_takes_one_count_inner() {
    if std::env::var_os(FULL_INNER).is_none() {
        return;
    }
    let mut failed = Vec::new();
    for method in METHODS {
        let leaks = leak_check(LIMIT);
        {
            let (sent, kept) = Pipe::<u32>::new().unwrap();
            let go = Event::new().unwrap();
            // Four holders of the sent end beside this process: the side's table has no free
            // entry left, and the consumer's receive of the side needs one. The consumer
            // holds the other end: the receive of the pipe itself joins its entry, and is
            // not refused.
            let holders = FourHolders::of(&sent, method);
            let jobs = Queue::new().unwrap();
            jobs.put(EndJob::Name(sent.clone(), "x".to_string())).unwrap();
            // Another message naming the same end, read once the heap is back.
            let plain = Queue::<Connection<u32>>::new().unwrap();
            plain.put(sent.clone()).unwrap();
            let (ends, ready) = (Queue::new().unwrap(), Queue::new().unwrap());
            ends.put(kept).unwrap();
            let args = (ends.clone(), ready.clone(), jobs.clone(), go.clone());
            let consumer = Process::new(get_an_end_job_holding_the_other, args).start_method(method).start().unwrap();
            ready.get().unwrap();
            let filler = common::fill_heap();
            assert!(!filler.room_for(64), "the heap is full");
            go.set();
            assert_eq!(consumer.wait(), 0, "{method:?}: the consumer was not refused for the full heap");
            drop(filler);
            match plain.get_timeout(Duration::from_secs(10)) {
                // The other end went with the consumer: the end sees it.
                Ok(got) => assert!(got.send(7).is_err(), "{method:?}: the other end is gone"),
                Err(e) => failed.push(format!("{method:?}: the other message's end: {e}")),
            }
            drop(sent);
            holders.let_go();
        }
        leaks.assert_no_leak();
    }
    assert!(failed.is_empty(), "a message naming the end was lost: {failed:#?}");
    println!("INNER-DONE");
}

/// review55 L5 (b): review52 M1 where the pipe's receive succeeds and its side's is
/// refused for a full heap (the side's table full, the object's entry this process's
/// already): the next attempt is refused again without a receive, and another message
/// naming the end reads it.
#[test]
fn an_ends_side_refused_for_a_full_heap_in_each_attempt_takes_one_count() {
    // Another process: the inner test fills the family's heap.
    let _w = common::watchdog(LIMIT);
    common::run_inner_test("an_ends_side_refused_for_a_full_heap_in_each_attempt_takes_one_count_inner", FULL_INNER);
}
