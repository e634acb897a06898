//! The queues' futures at the channel level: a get and a put that never wait in place
//! (each attempt is the non-waiting `try_` form) and sleep on the ring's notifier through
//! the waker threads (`shm::reactor`).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Channel, Getting, Others, recv_value_then, recv_value_unless, send_value};
use crate::queue::error::Failure;
use crate::shm::{CheckNow, Deadline, Waiting, poll_on};

/// `Channel::get_async`'s future. Cancellation-safe: a message is taken and returned in
/// one poll, so a future dropped between polls took nothing.
pub(crate) struct GetFuture<'a, T> {
    channel: &'a Channel<T>,
    /// The epoch this get was counted in as waiting, once counted (see `Getting`).
    counted: Cell<Option<u64>>,
    waiting: Waiting,
}

impl<T: Serialize + DeserializeOwned> Channel<T> {
    pub(crate) fn get_async(&self) -> GetFuture<'_, T> {
        GetFuture { channel: self, counted: Cell::new(None), waiting: Waiting::new() }
    }

    /// Puts `value`, waiting for room in a bounded queue without blocking the thread.
    pub(crate) fn put_async(&self, value: T) -> PutFuture<'_, T> {
        PutFuture { channel: self, value: Some(value), waiting: Waiting::new() }
    }
}

impl<T: Serialize + DeserializeOwned> Future for GetFuture<'_, T> {
    type Output = Result<T, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let channel = this.channel;
        let finish_shutdown = || channel.finish_shutdown();
        // Dropped when this poll returns `Ready`, it counts the get as waiting no more: an
        // ended get that is held (not dropped) must not make another get `Gone`.
        let watch = Getting {
            shared: &channel.shared,
            counted: Cell::new(this.counted.take()),
            finish_shutdown: &finish_shutdown,
        };
        if channel.shut_down_immediately() {
            // As `Channel::get`: nothing is to be taken any more. Ended, the future no
            // longer waits (as `poll_on`'s `Ready`): a held one keeps no registration.
            this.waiting.reset();
            return Poll::Ready(Err(Failure::ShutDown));
        }
        let ring = &channel.shared.ring;
        let tag = channel.tag;
        let mut after = None;
        let waited = this.waiting.has_waited();
        let outcome = poll_on(&mut this.waiting, ring.readable(), cx, |check| {
            let now = CheckNow::new(&watch, check);
            // One test of the flavor, as `Channel::get`: a `Queue`'s take is never refused.
            let got = if channel.counts_tasks {
                let counted = |decoded| after = channel.count_take(decoded);
                let taking = || {
                    watch.uncount();
                    channel.place_take()
                };
                recv_value_unless(ring, tag, Deadline::now(), &now, Failure::from, taking, counted)
            } else {
                recv_value_then(ring, tag, Deadline::now(), &now, Failure::from, || watch.uncount(), |_| {})
            };
            match got {
                // Nothing there, or the consumers' lock not had within its grace: then the
                // take marked it, and its holder's release wakes the ring's sleepers for the
                // messages left (`Ring::lock_to_take_slow`), this future among them.
                Err(Failure::Wait) => None,
                other => Some(other),
            }
        });
        drop(after);
        if waited && matches!(outcome, Poll::Ready(Err(Failure::HeapFull(_)))) && !ring.is_empty() {
            // A put's `notify(1)` may have woken this get, whose take was refused before it
            // read (a `JoinableQueue` take with no place to be counted): the message stays,
            // and a getter asleep behind this one gets the wake-up, as a failed put's
            // (review130 L1; review48 L1). The `Ready` reset the wait: the drop passes
            // nothing on.
            ring.readable().notify(1);
        }
        if outcome.is_pending() {
            this.counted.set(watch.counted.take());
        }
        outcome
    }
}

impl<T> Drop for GetFuture<'_, T> {
    fn drop(&mut self) {
        // A get dropped while counted as waiting no longer waits.
        if self.counted.take().is_some() {
            self.channel.shared.getters.leave();
        }
        // A put's `notify(1)` may have woken this future, which leaves without the message
        // (a timeout): a getter asleep behind it gets the wake-up, or would sleep out its
        // slice with the message there (review42 L1).
        let ring = &self.channel.shared.ring;
        self.waiting.pass_on(ring.readable(), || !ring.is_empty());
    }
}

impl<T> Unpin for GetFuture<'_, T> {}

/// `Channel::put_async`'s future. Dropped before it completes, the value was not put.
pub(crate) struct PutFuture<'a, T> {
    channel: &'a Channel<T>,
    value: Option<T>,
    waiting: Waiting,
}

impl<T> Unpin for PutFuture<'_, T> {}

impl<T> Drop for PutFuture<'_, T> {
    fn drop(&mut self) {
        // A take's `notify(1)` may have woken this future, which leaves without putting:
        // a putter asleep behind it gets the wake-up (as a get's, above).
        let ring = &self.channel.shared.ring;
        self.waiting.pass_on(ring.writable(), || !ring.is_full());
    }
}

impl<T: Serialize + DeserializeOwned> Future for PutFuture<'_, T> {
    /// The value comes back with a failure.
    type Output = Result<(), (T, Failure)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(value) = this.value.as_ref() else { return Poll::Pending };
        let ring = &this.channel.shared.ring;
        if ring.refuses_puts() {
            // Ended, the future no longer waits (as `poll_on`'s `Ready`): a held one keeps
            // no registration to take a wake-up meant for another putter (review47 L2).
            this.waiting.reset();
            return Poll::Ready(Err((this.value.take().expect("still held"), Failure::ShutDown)));
        }
        let (tag, others) = (this.channel.tag, Others(&this.channel.shared));
        let waited = this.waiting.has_waited();
        let outcome = poll_on(&mut this.waiting, ring.writable(), cx, |check| {
            let now = CheckNow::new(&others, check);
            match send_value(ring, value, tag, Deadline::now(), &now) {
                // A full ring, or the producers' lock not had within its grace: then the put
                // marked it, and its holder's release wakes the ring's `writable` sleepers
                // while there is room (`Ring::lock_to_put_slow`), this future among them.
                Err(Failure::Wait) => None,
                other => Some(other),
            }
        });
        if waited && matches!(outcome, Poll::Ready(Err(_))) && !ring.is_full() {
            // A take's `notify(1)` may have woken this put, which failed without using the
            // room (its encoding, or a heap block, fails at each attempt): a putter asleep
            // behind it gets the wake-up, as at a drop (review48 L1).
            ring.writable().notify(1);
        }
        outcome.map(|r| r.map_err(|f| (this.value.take().expect("still held"), f)))
    }
}

#[cfg(test)]
impl<T> GetFuture<'_, T> {
    /// One whose first liveness check comes after `slice` (see `Waiting::first_check_after`).
    pub(crate) fn first_check_after(mut self, slice: std::time::Duration) -> Self {
        self.waiting = Waiting::first_check_after(slice);
        self
    }
}

#[cfg(test)]
impl<T> PutFuture<'_, T> {
    /// One whose first liveness check comes after `slice` (see `Waiting::first_check_after`).
    pub(crate) fn first_check_after(mut self, slice: std::time::Duration) -> Self {
        self.waiting = Waiting::first_check_after(slice);
        self
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use super::GetFuture;
    use crate::Queue;
    use crate::queue::error::Failure;
    use crate::shm::reactor::tests::{
        LIMIT, SCENES, SETTLE, sleeper_behind_a_future_after_its_wake_up,
        sleeper_behind_a_future_dropped_after_its_wake_up,
    };
    use crate::shm::{Deadline, Owner};
    use crate::sys::{self, FutexWait};

    /// A get waiting for a message is woken by a put's single wake-up and dropped unpolled
    /// (its timeout passed): a blocking getter asleep behind it gets the wake-up. Before,
    /// the future kept it, and the getter, counted served, slept until its slice ended (up
    /// to 100 ms; here `LIMIT`) though the message was there (review42 L1).
    #[test]
    fn a_get_dropped_after_its_wake_up_passes_it_on() {
        let _one = SCENES.lock().unwrap_or_else(|e| e.into_inner());
        let _serial = crate::shm::heap_test_lock();
        let q: Queue<u32> = Queue::new().unwrap();
        let ch = q.ch.as_ref().unwrap();
        let future = ch.get_async().first_check_after(LIMIT);
        let how = sleeper_behind_a_future_dropped_after_its_wake_up(future, ch.ring().readable(), || {
            q.put(1).unwrap();
        });
        assert_ne!(how, FutexWait::TimedOut, "the dropped get kept the wake-up meant for the getter");
    }

    /// As a get: a put waiting for room, woken by a take's single wake-up and dropped
    /// unpolled, passes it on to a blocking putter asleep behind it.
    #[test]
    fn a_put_dropped_after_its_wake_up_passes_it_on() {
        let _one = SCENES.lock().unwrap_or_else(|e| e.into_inner());
        let _serial = crate::shm::heap_test_lock();
        let q: Queue<u32> = Queue::with_maxsize(1).unwrap();
        q.put(1).unwrap();
        let ch = q.ch.as_ref().unwrap();
        let future = ch.put_async(2).first_check_after(LIMIT);
        let how = sleeper_behind_a_future_dropped_after_its_wake_up(future, ch.ring().writable(), || {
            assert_eq!(q.get().unwrap(), 1);
        });
        assert_ne!(how, FutexWait::TimedOut, "the dropped put kept the wake-up meant for the putter");
    }

    /// A value whose encoding fails once `FAIL_ENCODING` is set.
    #[derive(Debug, serde::Deserialize)]
    struct Flaky;

    static FAIL_ENCODING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    impl serde::Serialize for Flaky {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if FAIL_ENCODING.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(serde::ser::Error::custom("told to fail"));
            }
            s.serialize_unit_struct("Flaky")
        }
    }

    /// A put waiting for room is woken by a take's single wake-up and polled: its value's
    /// encoding fails now (as a heap that filled meanwhile would), and the put ends without
    /// using the room. A blocking putter asleep behind it gets the wake-up. Before, the
    /// `Ready` reset the wait and nothing passed the wake-up on: the putter slept out its
    /// slice (here until `LIMIT`) with room there (review48 L1).
    #[test]
    fn a_put_that_fails_after_its_wake_up_passes_it_on() {
        let _one = SCENES.lock().unwrap_or_else(|e| e.into_inner());
        let _serial = crate::shm::heap_test_lock();
        let q: Queue<Flaky> = Queue::with_maxsize(1).unwrap();
        q.put(Flaky).unwrap();
        let ch = q.ch.as_ref().unwrap();
        let future = ch.put_async(Flaky).first_check_after(LIMIT);
        let how = sleeper_behind_a_future_after_its_wake_up(
            future,
            ch.ring().writable(),
            || {
                FAIL_ENCODING.store(true, std::sync::atomic::Ordering::Relaxed);
                q.get().unwrap();
            },
            |mut future| {
                let ended = Pin::new(&mut future).poll(&mut Context::from_waker(Waker::noop()));
                FAIL_ENCODING.store(false, std::sync::atomic::Ordering::Relaxed);
                assert!(matches!(ended, Poll::Ready(Err((Flaky, Failure::Encode(_))))), "{ended:?}");
            },
        );
        assert_ne!(how, FutexWait::TimedOut, "the failed put kept the wake-up meant for the putter");
    }

    /// A `JoinableQueue` get waiting for a message is woken by a put's single wake-up and
    /// polled: its take is refused before it reads (no place to count it: the fail point
    /// `queue.aside.none`, as in a full heap), and the get ends `HeapFull` without using the
    /// message. A blocking getter asleep behind it gets the wake-up. Before, the `Ready`
    /// reset the wait, the drop passed nothing on, and the getter slept out its slice (here
    /// until `LIMIT`) with the message there (review130 L1; a put's twin: review48 L1).
    #[test]
    fn a_get_refused_after_its_wake_up_passes_it_on() {
        let _one = SCENES.lock().unwrap_or_else(|e| e.into_inner());
        let _serial = crate::shm::heap_test_lock();
        let q: crate::JoinableQueue<u32> = crate::JoinableQueue::new().unwrap();
        let ch = q.channel().unwrap();
        let future = ch.get_async().first_check_after(LIMIT);
        let how = sleeper_behind_a_future_after_its_wake_up(
            future,
            ch.ring().readable(),
            || {
                crate::shm::crash::arm(Some("fail:queue.aside.none"));
                q.put(1).unwrap();
            },
            |mut future| {
                let ended = Pin::new(&mut future).poll(&mut Context::from_waker(Waker::noop()));
                crate::shm::crash::arm(None);
                assert!(matches!(ended, Poll::Ready(Err(Failure::HeapFull(_)))), "{ended:?}");
            },
        );
        println!("the sleeper's sleep behind the refused get: {how:?}");
        assert_eq!(q.try_get(), Ok(1), "the refused get left the item");
        q.task_done().unwrap();
        assert_ne!(how, FutexWait::TimedOut, "the refused get kept the wake-up meant for the getter");
    }

    /// Sends on each wake.
    struct Woken(std::sync::Mutex<std::sync::mpsc::Sender<()>>);

    impl std::task::Wake for Woken {
        fn wake(self: std::sync::Arc<Self>) {
            let _ = self.0.lock().unwrap_or_else(|e| e.into_inner()).send(());
        }
    }

    /// A get waiting for a message is woken by a put's single wake-up, but another consumer
    /// holds the consumers' lock (inside its take of an earlier message, slow in its read)
    /// past `LOCK_GRACE`: the poll's attempt is refused, and the future pends again, having
    /// used the wake-up. The holder then lets go, the message still there. The future is
    /// woken by that release and gets the message. Before, it slept until a second put
    /// (the test's) or its liveness check (up to 100 ms; here `LIMIT`), with its sleep owed
    /// a wake-up (que103's "Async, left alone", review138). Decided by the owed count read
    /// once the holder returned, and by whether the future completes before the test's
    /// second put: no duration.
    #[test]
    fn a_get_refused_by_the_consumers_lock_is_woken_when_its_holder_lets_go() {
        let _one = SCENES.lock().unwrap_or_else(|e| e.into_inner());
        let _serial = crate::shm::heap_test_lock();
        let _w = crate::testing::watchdog(3 * LIMIT);
        let q: Queue<u32> = Queue::new().unwrap();
        let ch = q.ch.as_ref().unwrap();
        let ring = ch.ring();
        q.put(1).unwrap();
        let (tx, woken) = std::sync::mpsc::channel();
        let waker = Waker::from(std::sync::Arc::new(Woken(std::sync::Mutex::new(tx))));
        let mut cx = Context::from_waker(&waker);
        let (reading_tx, reading) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        let mut future = ch.get_async().first_check_after(LIMIT);
        let (owed, before_second_put) = std::thread::scope(|s| {
            // Another consumer, inside its take of 1 (the consumers' lock held) until told.
            let holder = s.spawn(|| {
                ring.get(Deadline::after(LIMIT), &crate::shm::Patient, move |b, _| {
                    reading_tx.send(()).unwrap();
                    go_rx.recv_timeout(LIMIT).expect("the holder is let go");
                    b.len()
                })
            });
            reading.recv_timeout(LIMIT).expect("the holder reads");
            assert!(Pin::new(&mut future).poll(&mut cx).is_pending(), "nothing to take yet");
            // The put's wake-up, for the future.
            q.put(2).unwrap();
            woken.recv_timeout(LIMIT).expect("the put wakes the future");
            assert!(Pin::new(&mut future).poll(&mut cx).is_pending(), "the holder still holds the lock");
            go.send(()).unwrap();
            holder.join().expect("the holder ends").expect("the holder took 1");
            let owed = ring.readable_owed();
            if owed == 0 {
                woken.recv_timeout(LIMIT).expect("the holder's release wakes the future");
                return (owed, Pin::new(&mut future).poll(&mut cx));
            }
            // Nothing is coming: a second put, the test's, wakes it.
            q.put(3).unwrap();
            woken.recv_timeout(LIMIT).expect("the second put wakes the future");
            assert!(matches!(Pin::new(&mut future).poll(&mut cx), Poll::Ready(Ok(2))));
            assert_eq!(q.get_timeout(Duration::ZERO), Ok(3));
            (owed, Poll::Pending)
        });
        println!(
            "owed to the refused get after its holder's release: {owed}; its poll before a second put: {before_second_put:?}"
        );
        assert_eq!(owed, 0, "the refused get slept, owed its wake-up, with the message there");
        assert!(matches!(before_second_put, Poll::Ready(Ok(2))), "{before_second_put:?}");
        assert!(q.is_empty());
    }

    /// A put that would not wait for room (an unbounded queue) finds another producer
    /// inside its put, the producers' lock held (at the crash point `ring.put.recorded`, as
    /// a segment's allocation or a stopped producer would hold it) past `LOCK_GRACE`: the
    /// poll's attempts are refused, and the future pends, asleep on the ring's `writable`,
    /// which only a take of a bounded queue notifies. The holder then lets go. The future is
    /// woken by that release and puts. Before, it slept until its liveness check (up to
    /// 100 ms; here `LIMIT`) or a wake-up of the test's own, with the lock free and its
    /// sleep owed a wake-up (que104's "left undone"). Decided by the owed count read once the
    /// holder returned, and by whether the future completes before the test's own wake-up:
    /// no duration.
    #[test]
    fn a_put_refused_by_the_producers_lock_is_woken_when_its_holder_lets_go() {
        const POINT: &str = "ring.put.recorded";
        let _one = SCENES.lock().unwrap_or_else(|e| e.into_inner());
        let _serial = crate::shm::heap_test_lock();
        let _w = crate::testing::watchdog(3 * LIMIT);
        /// Disarms the hold however the test ends: armed, it would hold another test's put.
        struct Disarm;
        impl Drop for Disarm {
            fn drop(&mut self) {
                crate::shm::crash::arm(None);
            }
        }
        let q: Queue<u32> = Queue::new().unwrap();
        let ch = q.ch.as_ref().unwrap();
        let ring = ch.ring();
        let (tx, woken) = std::sync::mpsc::channel();
        let waker = Waker::from(std::sync::Arc::new(Woken(std::sync::Mutex::new(tx))));
        let mut cx = Context::from_waker(&waker);
        let mut future = ch.put_async(2).first_check_after(LIMIT);
        let (owed, before_own_wake_up) = std::thread::scope(|s| {
            let _disarm = Disarm;
            crate::shm::crash::arm(Some(&format!("hold:{POINT}")));
            // Another producer, inside its put of 1 (the producers' lock held) until disarmed.
            let holder = s.spawn(|| q.put(1));
            let watchdog = Deadline::after(LIMIT);
            while crate::shm::crash::held(POINT, holder.thread().id()) == 0 {
                assert!(!watchdog.passed() && !holder.is_finished(), "the holder reaches its hold");
                std::thread::yield_now();
            }
            assert!(Pin::new(&mut future).poll(&mut cx).is_pending(), "the holder holds the lock");
            crate::shm::crash::arm(None);
            holder.join().expect("the holder ends").expect("the holder put 1");
            let owed = ring.writable_owed();
            if owed == 0 {
                woken.recv_timeout(LIMIT).expect("the holder's release wakes the future");
                return (owed, Pin::new(&mut future).poll(&mut cx));
            }
            // Nothing is coming: a wake-up of the test's own (a take's, on a bounded queue).
            ring.writable().notify(1);
            woken.recv_timeout(LIMIT).expect("the test's wake-up wakes the future");
            assert!(matches!(Pin::new(&mut future).poll(&mut cx), Poll::Ready(Ok(()))));
            (owed, Poll::Pending)
        });
        println!(
            "owed to the refused put after its holder's release: {owed}; its poll before a wake-up of the test's own: {before_own_wake_up:?}"
        );
        assert_eq!(q.get_timeout(Duration::ZERO), Ok(1));
        assert_eq!(q.get_timeout(Duration::ZERO), Ok(2));
        assert_eq!(owed, 0, "the refused put slept, owed its wake-up, with the lock free");
        assert!(matches!(before_own_wake_up, Poll::Ready(Ok(()))), "{before_own_wake_up:?}");
    }

    /// A put waiting for room ends with `ShutDown` and is held, not dropped, while the
    /// shutdown, which has refused puts, waits for the producers' lock (a put in progress
    /// holds it) before it wakes anyone. A take's single wake-up then reaches a blocking
    /// putter asleep behind the put's waker thread. Before, the put's `Ready` left its
    /// registration in place until the drop: its waker thread took the wake-up for it, and
    /// the putter slept on (here until `LIMIT`; review47 L2).
    #[test]
    fn a_put_ended_by_a_shutdown_and_held_leaves_a_wake_up_to_the_putter_behind_it() {
        let _one = SCENES.lock().unwrap_or_else(|e| e.into_inner());
        let _serial = crate::shm::heap_test_lock();
        let q: Queue<u32> = Queue::with_maxsize(1).unwrap();
        q.put(1).unwrap();
        let ch = q.ch.as_ref().unwrap();
        let ring = ch.ring();
        let mut cx = Context::from_waker(Waker::noop());
        let mut future = ch.put_async(2).first_check_after(LIMIT);
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        // Ordering only (the futex queue is first come, first woken), nothing measured.
        std::thread::sleep(SETTLE);
        let how = std::thread::scope(|s| {
            /// Lets the shutdown go on, even when an assertion fails (before the scope
            /// joins it).
            struct Unlock<'a>(&'a crate::shm::RawMutex);
            impl Drop for Unlock<'_> {
                fn drop(&mut self) {
                    self.0.unlock();
                }
            }
            let producers = ring.producers_lock();
            producers.lock(Owner::thread(), Deadline::NEVER).unwrap();
            let _unlock = Unlock(producers);
            s.spawn(|| q.shutdown(false));
            let watchdog = Deadline::after(LIMIT);
            while !ring.refuses_puts() {
                assert!(!watchdog.passed(), "the shutdown refuses puts");
                std::thread::yield_now();
            }
            let ended = Pin::new(&mut future).poll(&mut cx);
            assert!(matches!(ended, Poll::Ready(Err((2, Failure::ShutDown)))), "{ended:?}");
            let sleeper = s.spawn(|| {
                // A putter that counts on its wake-up alone (none of a blocking wait's slices).
                let (word, seen) = ring.writable().start_sleeping();
                let how = sys::futex_wait(word, seen, Some(LIMIT));
                ring.writable().stop_sleeping();
                how
            });
            std::thread::sleep(SETTLE);
            // A take's wake-up, for one putter.
            ring.writable().notify(1);
            sleeper.join().expect("the putter's sleep ends")
        });
        drop(future);
        assert_ne!(how, FutexWait::TimedOut, "the ended put kept the wake-up meant for the putter");
    }

    /// A get waiting on the empty queue ends with `ShutDown` when the queue is shut down
    /// immediately: it no longer counts as waiting, though held. Before, its `Ready` skipped
    /// the reset: still registered until the drop, still announced a sleeper on the ring,
    /// and its drop would pass on a wake-up it was never given (review47 L2).
    #[test]
    fn a_get_ended_by_an_immediate_shutdown_no_longer_waits() {
        let _one = SCENES.lock().unwrap_or_else(|e| e.into_inner());
        let _serial = crate::shm::heap_test_lock();
        let q: Queue<u32> = Queue::new().unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let mut future = q.ch.as_ref().unwrap().get_async();
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        q.shutdown(true);
        let ended = Pin::new(&mut future).poll(&mut cx);
        assert!(matches!(ended, Poll::Ready(Err(Failure::ShutDown))), "{ended:?}");
        assert!(!future.waiting.has_waited(), "the ended get still waits");
    }

    /// Two gets on this process's two handles, both waiting on the empty queue, end with
    /// `Gone` (nobody is left who could put); one is dropped, the other held. A new get on
    /// the empty queue then waits: the held get, ended, no longer counts as waiting, and
    /// its handle may put. Before, it was counted until dropped, and the new get's first
    /// check found both handles waiting and ended `Gone` too.
    #[test]
    fn a_get_ended_and_held_no_longer_counts_as_waiting() {
        let _one = SCENES.lock().unwrap_or_else(|e| e.into_inner());
        let _serial = crate::shm::heap_test_lock();
        let q: Queue<u32> = Queue::new().unwrap();
        let q2 = q.clone();
        let (ch, ch2) = (q.ch.as_ref().unwrap(), q2.ch.as_ref().unwrap());
        let mut cx = Context::from_waker(Waker::noop());
        let mut poll = |f: &mut GetFuture<'_, u32>| Pin::new(f).poll(&mut cx);
        // Each poll after the first runs the liveness check.
        let mut held = ch.get_async().first_check_after(Duration::ZERO);
        let mut other = ch2.get_async().first_check_after(Duration::ZERO);
        assert!(poll(&mut held).is_pending());
        assert!(poll(&mut other).is_pending());
        assert!(poll(&mut held).is_pending(), "one handle waits, the other may put");
        assert!(matches!(poll(&mut other), Poll::Ready(Err(Failure::Gone))));
        assert!(matches!(poll(&mut held), Poll::Ready(Err(Failure::Gone))));
        drop(other);
        let mut next = ch2.get_async().first_check_after(Duration::ZERO);
        assert!(poll(&mut next).is_pending());
        assert!(poll(&mut next).is_pending(), "the held get, ended, was counted as waiting");
    }
}
