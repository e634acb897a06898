//! A deserializer in front of postcard's that keeps the message of a custom error: postcard
//! turns `Error::custom("3 is not even")` into "Serde Deserialization Error". The
//! `Deserialize` impls and visitors behind it make their errors as [`Kept`], which holds
//! the message; where such an error must cross postcard's own access types it travels in
//! a thread-local beside postcard's error.

use std::any::TypeId;
use std::cell::RefCell;
use std::fmt;
use std::sync::OnceLock;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};

/// An error of the decoding, with its message: what [`deserialize`] returns.
#[derive(Debug)]
pub(super) struct Kept(pub(super) String);

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The error of the `Deserialize` impls and visitors behind a [`Keep`]: no bigger than a
/// unit, its message waiting in `PENDING`. A `Result<T, Pending>` is laid out as an
/// `Option<T>`, so that moving a decoded value between it and the deserializer's own
/// result copies the value's words; a `String` kept inside the error made the compiler
/// copy those results in odd-sized pieces, whose loads then waited on the stores just
/// made (measured: a tenth of a 1 KiB message's decoding time).
#[derive(Debug)]
pub(super) struct Pending;

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        PENDING.with(|p| f.write_str(p.borrow().as_deref().unwrap_or("a decoding error")))
    }
}

impl std::error::Error for Pending {}

impl de::Error for Pending {
    #[cold]
    fn custom<M: fmt::Display>(msg: M) -> Self {
        pending(msg.to_string())
    }
}

thread_local! {
    /// The message of the [`Pending`] error made last on this thread (every error made
    /// writes it, so it is never read stale).
    static PENDING: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The innermost [`Pending`] error of the value being decoded that crossed the
    /// deserializer behind.
    static STASHED: RefCell<Option<String>> = const { RefCell::new(None) };
}

#[cold]
fn pending(message: String) -> Pending {
    PENDING.with(|p| *p.borrow_mut() = Some(message));
    Pending
}

/// `e` as the error type `E` of the deserializer behind, its message stashed.
#[cold]
fn cross<E: de::Error>(_: Pending) -> E {
    let message = PENDING.with(|p| p.borrow_mut().take()).unwrap_or_default();
    let out = E::custom(&message);
    STASHED.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_none() {
            *s = Some(message);
        }
    });
    out
}

/// How deep a value may nest (each element, field, map entry, `Some` and newtype a level
/// below its container): a message nested deeper is a decoding error. Decoding recurses
/// once a level, and a message of `n` bytes can nest `n` levels deep, far past the stack
/// of any thread (a million levels of `enum Nest { End, More(Box<Nest>) }` are a megabyte):
/// without a limit, whoever writes a message could abort the process that decodes it.
/// serde_json stops at 128; 256 fit a 2 MiB thread stack in a debug build.
pub(super) const MAX_DEPTH: u32 = 256;

/// The depth below `depth`, or the error past [`MAX_DEPTH`].
#[inline]
fn deeper<E: de::Error>(depth: u32) -> Result<u32, E> {
    if depth < MAX_DEPTH { Ok(depth + 1) } else { Err(too_deep()) }
}

#[cold]
fn too_deep<E: de::Error>() -> E {
    cross(pending(format!("the value nests deeper than {MAX_DEPTH} levels")))
}

#[cold]
fn kept<E: fmt::Display>(e: E) -> Pending {
    pending(e.to_string())
}

/// Decodes a `T` with `deserializer` (postcard's) behind a [`Keep`]; the error is the
/// innermost message.
pub(super) fn deserialize<'de, T: de::Deserialize<'de>, D: Deserializer<'de>>(deserializer: D) -> Result<T, Kept> {
    deserialize_at::<T, D, true>(deserializer)
}

/// [`deserialize`] with a self-describing deserializer behind (MessagePack's): only the
/// depth limit and the errors' messages.
pub(super) fn deserialize_described<'de, T: de::Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<T, Kept> {
    deserialize_at::<T, D, false>(deserializer)
}

/// `P`: postcard is behind (see [`Keep`]).
fn deserialize_at<'de, T: de::Deserialize<'de>, D: Deserializer<'de>, const P: bool>(
    deserializer: D,
) -> Result<T, Kept> {
    // The stash is empty here: every error that fills it ends a decoding (postcard cannot
    // go back to try another way), which takes it.
    T::deserialize(Keep::<D, P>(deserializer, 0)).map_err(|Pending| {
        let top = PENDING.with(|p| p.borrow_mut().take());
        Kept(STASHED.with(|s| s.borrow_mut().take()).or(top).unwrap_or_default())
    })
}

/// The type of the visitor `Vec<u8>`'s `Deserialize` gives `deserialize_seq` (serde's
/// private `VecVisitor<u8>`), learnt once by asking it.
fn byte_vec_visitor() -> TypeId {
    static ID: OnceLock<TypeId> = OnceLock::new();
    *ID.get_or_init(|| {
        let mut seen = None;
        let _ = <Vec<u8> as de::Deserialize>::deserialize(VisitorOf(&mut seen));
        seen.expect("Vec<u8> deserializes as a sequence")
    })
}

/// A deserializer that notes the type of the visitor given to `deserialize_seq`, and
/// refuses everything.
struct VisitorOf<'a>(&'a mut Option<TypeId>);

impl<'de> Deserializer<'de> for VisitorOf<'_> {
    type Error = de::value::Error;

    #[inline]
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only asked for its visitor"))
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        *self.0 = Some(typeid::of::<V>());
        Err(de::Error::custom("only asked for its visitor"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// Reads a byte string into a `Vec<u8>`.
struct ByteVec;

impl<'de> Visitor<'de> for ByteVec {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }

    #[inline]
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    #[inline]
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
}

/// Reads postcard's bytes of a `str` as text, for the visitor of a `str` (`borrow`: it is
/// given the message's own bytes when it can keep them) or of a `String`.
struct Text<V> {
    visitor: V,
    borrow: bool,
}

impl<V> Text<V> {
    fn check<E: de::Error>(v: &[u8]) -> Result<&str, E> {
        crate::shm::utf8(v).map_err(|e| cross(pending(format!("the text is not UTF-8: {e}"))))
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Text<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    #[inline]
    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        let text = Self::check(v)?;
        if self.borrow { self.visitor.visit_borrowed_str(text) } else { self.visitor.visit_str(text) }
    }

    #[inline]
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.visitor.visit_str(Self::check(v)?)
    }
}

/// A deserializer, or one of its access types, in front of another; with the depth of the
/// value it reads (see [`MAX_DEPTH`]). `P`: the deserializer behind is postcard's, whose
/// text and byte vectors the wrapper reads its own, faster way; otherwise (MessagePack)
/// every call goes through as it is. A parameter, not a field: the hot path pays nothing
/// for it.
pub(super) struct Keep<D, const P: bool>(D, u32);

/// A visitor or seed given to the deserializer behind, which runs the one it wraps with
/// [`Pending`] errors; with the depth of the value it reads.
struct Wrapped<V, const P: bool>(V, u32);

macro_rules! forward {
    ($($method:ident),* $(,)?) => {
        $(#[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Pending> {
            self.0.$method(Wrapped::<_, P>(visitor, self.1)).map_err(kept)
        })*
    };
}

impl<'de, D: Deserializer<'de>, const P: bool> Deserializer<'de> for Keep<D, P> {
    type Error = Pending;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Pending> {
        if !P {
            return self.0.deserialize_str(Wrapped::<_, P>(visitor, self.1)).map_err(kept);
        }
        // Postcard writes text as it writes bytes; read as bytes, it is checked by
        // `shm::utf8`, faster than postcard's own check for ASCII.
        self.0.deserialize_bytes(Text { visitor: Wrapped::<_, P>(visitor, self.1), borrow: true }).map_err(kept)
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Pending> {
        if !P {
            return self.0.deserialize_string(Wrapped::<_, P>(visitor, self.1)).map_err(kept);
        }
        self.0.deserialize_bytes(Text { visitor: Wrapped::<_, P>(visitor, self.1), borrow: false }).map_err(kept)
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Pending> {
        // `Vec<u8>`'s own visitor: the run of bytes as one copy (postcard writes a sequence
        // of `u8` exactly as bytes), not one element at a time.
        if P && typeid::of::<V>() == byte_vec_visitor() {
            let bytes = self.0.deserialize_byte_buf(ByteVec).map_err(kept)?;
            return crate::shm::byte_vec_as::<V::Value>(bytes)
                .or_else(|bytes| visitor.visit_byte_buf(bytes).map_err(|e: Pending| e));
        }
        self.0.deserialize_seq(Wrapped::<_, P>(visitor, self.1)).map_err(kept)
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Pending> {
        self.0.deserialize_unit_struct(name, Wrapped::<_, P>(visitor, self.1)).map_err(kept)
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Pending> {
        self.0.deserialize_newtype_struct(name, Wrapped::<_, P>(visitor, self.1)).map_err(kept)
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Pending> {
        self.0.deserialize_tuple(len, Wrapped::<_, P>(visitor, self.1)).map_err(kept)
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Pending> {
        self.0.deserialize_tuple_struct(name, len, Wrapped::<_, P>(visitor, self.1)).map_err(kept)
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Pending> {
        self.0.deserialize_struct(name, fields, Wrapped::<_, P>(visitor, self.1)).map_err(kept)
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Pending> {
        self.0.deserialize_enum(name, variants, Wrapped::<_, P>(visitor, self.1)).map_err(kept)
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

impl<'de, T: DeserializeSeed<'de>, const P: bool> DeserializeSeed<'de> for Wrapped<T, P> {
    type Value = T::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T::Value, D::Error> {
        self.0.deserialize(Keep::<_, P>(deserializer, deeper(self.1)?)).map_err(cross)
    }
}

macro_rules! visit {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(#[inline]
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.0.$method::<Pending>(v).map_err(cross)
        })*
    };
}

impl<'de, V: Visitor<'de>, const P: bool> Visitor<'de> for Wrapped<V, P> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none::<Pending>().map_err(cross)
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit::<Pending>().map_err(cross)
    }

    #[inline]
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(Keep::<_, P>(deserializer, deeper(self.1)?)).map_err(cross)
    }

    #[inline]
    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(Keep::<_, P>(deserializer, deeper(self.1)?)).map_err(cross)
    }

    #[inline]
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Keep::<_, P>(seq, self.1)).map_err(cross)
    }

    #[inline]
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Keep::<_, P>(map, self.1)).map_err(cross)
    }

    #[inline]
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(Keep::<_, P>(data, self.1)).map_err(cross)
    }
}

impl<'de, A: de::SeqAccess<'de>, const P: bool> de::SeqAccess<'de> for Keep<A, P> {
    type Error = Pending;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Pending> {
        self.0.next_element_seed(Wrapped::<_, P>(seed, self.1)).map_err(kept)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>, const P: bool> de::MapAccess<'de> for Keep<A, P> {
    type Error = Pending;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Pending> {
        self.0.next_key_seed(Wrapped::<_, P>(seed, self.1)).map_err(kept)
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Pending> {
        self.0.next_value_seed(Wrapped::<_, P>(seed, self.1)).map_err(kept)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::EnumAccess<'de>, const P: bool> de::EnumAccess<'de> for Keep<A, P> {
    type Error = Pending;
    type Variant = Keep<A::Variant, P>;

    #[inline]
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Keep<A::Variant, P>), Pending> {
        self.0
            .variant_seed(Wrapped::<_, P>(seed, self.1))
            .map(|(v, rest)| (v, Keep::<_, P>(rest, self.1)))
            .map_err(kept)
    }
}

impl<'de, A: de::VariantAccess<'de>, const P: bool> de::VariantAccess<'de> for Keep<A, P> {
    type Error = Pending;

    #[inline]
    fn unit_variant(self) -> Result<(), Pending> {
        self.0.unit_variant().map_err(kept)
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Pending> {
        self.0.newtype_variant_seed(Wrapped::<_, P>(seed, self.1)).map_err(kept)
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Pending> {
        self.0.tuple_variant(len, Wrapped::<_, P>(visitor, self.1)).map_err(kept)
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value, Pending> {
        self.0.struct_variant(fields, Wrapped::<_, P>(visitor, self.1)).map_err(kept)
    }
}
