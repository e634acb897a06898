//! A message whose decoding stops part-way (audit F7): the handles after the point of
//! failure must be given back.

/// Sent as padding and a pair of queues; its decoding reads the padding and the first
/// queue, then refuses: the second queue is never reached.
#[derive(Clone, Debug)]
pub struct RefusedAfterFirst(pub Vec<u8>, pub multiproc::Queue<u32>, pub multiproc::Queue<u32>);

impl serde::Serialize for RefusedAfterFirst {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (serde_bytes::Bytes::new(&self.0), &self.1, &self.2).serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for RefusedAfterFirst {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FirstOnly;

        impl<'de> serde::de::Visitor<'de> for FirstOnly {
            type Value = RefusedAfterFirst;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("padding and two queues")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let _padding: Option<serde_bytes::ByteBuf> = seq.next_element()?;
                let _first: Option<multiproc::Queue<u32>> = seq.next_element()?;
                Err(serde::de::Error::custom("refused after the first queue"))
            }
        }

        deserializer.deserialize_tuple(3, FirstOnly)
    }
}

/// Sent as a pair of queues; its decoding reads the first queue, then panics: the second
/// queue is never reached, and the first was received.
#[derive(Clone, Debug)]
pub struct PanicsAfterFirst(pub multiproc::Queue<u32>, pub multiproc::Queue<u32>);

impl serde::Serialize for PanicsAfterFirst {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.0, &self.1).serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for PanicsAfterFirst {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FirstOnly;

        impl<'de> serde::de::Visitor<'de> for FirstOnly {
            type Value = PanicsAfterFirst;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("two queues")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let _first: Option<multiproc::Queue<u32>> = seq.next_element()?;
                panic!("a Deserialize that panics after the first queue");
            }
        }

        deserializer.deserialize_tuple(2, FirstOnly)
    }
}
