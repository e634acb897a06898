//! The pool's message channels: a typed wrapper around the shared-memory ring, with the
//! two waits the pool needs (a worker waiting for work, the parent waiting for results).

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::shm::{Deadline, HeapFull, Limits, Patient, Ring, SPIN, Shared, ShmObject, Watch, kind};

#[derive(crate::ShmSafe)]
#[repr(C)]
struct ChannelState {
    ring: Ring,
}

impl ShmObject for ChannelState {
    const KIND: u32 = kind::POOL + 1;
    // The ring's destroy records each step before its free.
    const DESTROY_RESUMES: bool = true;

    fn destroy(&self, heap: &crate::shm::Heap) {
        self.ring.destroy(heap);
    }
}

/// A typed, unbounded, many-to-many channel in the family's shared memory.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct Channel<T> {
    shared: Shared<ChannelState>,
    _message: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone(), _message: PhantomData }
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel").field("len", &self.shared.ring.len()).finish()
    }
}

/// The other holders of the channel are all gone (for a worker: its pool).
struct Others<'a>(&'a Shared<ChannelState>);

impl Watch for Others<'_> {
    type Gone = ();

    fn check(&self) -> Result<(), ()> {
        if self.0.others_alive() { Ok(()) } else { Err(()) }
    }
}

impl<T: Serialize + DeserializeOwned> Channel<T> {
    pub(crate) fn new() -> Result<Self, HeapFull> {
        let shared = Shared::new(ChannelState { ring: Ring::new(Limits::default()) })?;
        shared.ring.open()?;
        Ok(Self { shared, _message: PhantomData })
    }

    /// Sends `message` (never blocks: the channel is unbounded).
    pub(crate) fn send(&self, message: &T) -> Result<(), String> {
        let ring = &self.shared.ring;
        codec::with_own_encoded(message, |bytes, handles| {
            if handles {
                ring.mark_handles();
            }
            let put = ring.put_bytes(bytes, 0, Deadline::NEVER, &Patient);
            (put.is_ok(), put)
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{e:?}"))
    }

    /// The next message if one is there. A message that does not decode is dropped (the
    /// pool's own messages always do).
    pub(crate) fn try_recv(&self) -> Option<T> {
        loop {
            match self.shared.ring.get(Deadline::now(), &Patient, |bytes, _| codec::decode_own::<T>(bytes)) {
                Ok(Ok(message)) => return Some(message),
                Ok(Err(_)) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Waits for the next message; an error when every other holder of the channel is
    /// gone (a worker whose pool died).
    pub(crate) fn recv(&self) -> Result<T, ()> {
        loop {
            match self.shared.ring.get(Deadline::NEVER, &Others(&self.shared), |bytes, _| codec::decode_own::<T>(bytes))
            {
                Ok(Ok(message)) => return Ok(message),
                Ok(Err(_)) => continue,
                Err(_) => return Err(()),
            }
        }
    }

    /// Waits until a message is there (without taking it) or the deadline passes; spins
    /// first when `spin` (a result expected soon), sleeps at once otherwise.
    pub(crate) fn wait_readable(&self, deadline: Deadline, spin: bool) {
        let ring = &self.shared.ring;
        let spin = if spin { SPIN } else { std::time::Duration::ZERO };
        let _ = ring.readable().wait(deadline, spin, || (!ring.is_empty()).then_some(()), || Ok::<(), ()>(()));
    }

    /// Whether no message is there (one load: cheaper than a `try_recv` that finds none).
    pub(crate) fn is_empty(&self) -> bool {
        self.shared.ring.is_empty()
    }

    /// Forgets the handles of this channel counted in messages that are gone (see
    /// [`Shared::forget_lost_messages`]); returns how many. For the pool, once the workers
    /// whose boot messages held them are dead.
    pub(crate) fn forget_lost_messages(&self) -> u32 {
        self.shared.forget_lost_messages()
    }

    /// Wakes whoever waits for a message (something else they wait for happened).
    pub(crate) fn wake_receivers(&self) {
        self.shared.ring.readable().notify_all();
    }
}
