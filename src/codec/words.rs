//! A [`plain`](super::plain) value's message built in three words, in registers: the
//! bytes [`encode_plain`](super::encode_plain) writes (the tag byte, then postcard's
//! encoding), computed as whole words.
//!
//! Written byte by byte into a buffer and then read back as words by the ring's
//! `put_small`, the message cost every put a load the processor could not forward (a word
//! load over byte stores, after the buffer's 16-byte zeroing): it waited for the stores to
//! commit (`perf annotate`: a third of `Channel::put`'s samples on that zeroing). Here each
//! word is one value, stored whole or not at all.

use serde::Serialize;
use serde::ser::{Impossible, Serializer};

use super::POSTCARD;

/// Whole words of a small message; the bytes past `len` are zero.
pub(crate) const WORDS: usize = 3;

/// A message of at most `8 * WORDS` bytes, as words: byte `k` is bits `8 * (k % 8)..` of
/// word `k / 8` (little-endian order; the ring stores each with `to_le`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Words {
    pub(crate) words: [u64; WORDS],
    pub(crate) len: usize,
}

/// The continuation bits of a varint's first seven bytes.
const CONTINUE: u64 = 0x8080_8080_8080_8080;

/// The 7-bit groups of `x` (below 2^56), one a byte, without continuation bits.
#[inline]
fn spread(x: u64) -> u64 {
    let mut s = 0;
    let mut k = 0;
    while k < 8 {
        s |= ((x >> (7 * k)) & 0x7f) << (8 * k);
        k += 1;
    }
    s
}

impl Words {
    /// Appends the `n` low bytes of `v` (`n <= 8`; the bytes of `v` above them are zero).
    #[inline]
    fn push(&mut self, v: u64, n: usize) -> Result<(), postcard::Error> {
        if self.len + n > 8 * WORDS {
            return Err(postcard::Error::SerializeBufferFull);
        }
        let (i, shift) = (self.len / 8, (self.len % 8) * 8);
        self.words[i] |= v << shift;
        if shift != 0 && shift + 8 * n > 64 {
            self.words[i + 1] |= v >> (64 - shift);
        }
        self.len += n;
        Ok(())
    }

    /// Appends `x` as postcard's varint (LEB128: seven bits a byte, low first, the high
    /// bit set on every byte but the last).
    #[inline]
    fn varint(&mut self, x: u128) -> Result<(), postcard::Error> {
        if x < 0x80 {
            return self.push(x as u64, 1);
        }
        if x < 0x4000 {
            let x = x as u64;
            return self.push((x & 0x7f) | 0x80 | (x >> 7) << 8, 2);
        }
        self.varint_wide(x)
    }

    #[cold]
    fn varint_wide(&mut self, mut x: u128) -> Result<(), postcard::Error> {
        while x >= 1 << 56 {
            self.push(spread(x as u64 & ((1 << 56) - 1)) | CONTINUE, 8)?;
            x >>= 56;
        }
        let x = x as u64;
        let n = ((64 - (x | 1).leading_zeros() as usize) + 6) / 7;
        self.push(spread(x) | (CONTINUE & ((1u64 << (8 * (n - 1))) - 1)), n)
    }
}

/// `value`'s message as [`encode_plain`](super::encode_plain) writes it, in words: `None`
/// for a value of no [`plain`](super::plain) type, or one that does not fit.
#[inline]
pub(crate) fn encode_plain_words<T: Serialize + ?Sized>(value: &T) -> Option<Words> {
    let mut words = Words { words: [POSTCARD as u64, 0, 0], len: 1 };
    value.serialize(&mut words).ok()?;
    Some(words)
}

impl Serializer for &mut Words {
    type Ok = ();
    type Error = postcard::Error;
    type SerializeSeq = Impossible<(), postcard::Error>;
    type SerializeTuple = Impossible<(), postcard::Error>;
    type SerializeTupleStruct = Impossible<(), postcard::Error>;
    type SerializeTupleVariant = Impossible<(), postcard::Error>;
    type SerializeMap = Impossible<(), postcard::Error>;
    type SerializeStruct = Impossible<(), postcard::Error>;
    type SerializeStructVariant = Impossible<(), postcard::Error>;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), postcard::Error> {
        self.push(u64::from(v), 1)
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<(), postcard::Error> {
        self.push(u64::from(v as u8), 1)
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result<(), postcard::Error> {
        self.varint(((v << 1) ^ (v >> 15)) as u16 as u128)
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<(), postcard::Error> {
        self.varint(((v << 1) ^ (v >> 31)) as u32 as u128)
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<(), postcard::Error> {
        self.varint(((v << 1) ^ (v >> 63)) as u64 as u128)
    }
    #[inline]
    fn serialize_i128(self, v: i128) -> Result<(), postcard::Error> {
        self.varint(((v << 1) ^ (v >> 127)) as u128)
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<(), postcard::Error> {
        self.push(u64::from(v), 1)
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result<(), postcard::Error> {
        self.varint(u128::from(v))
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<(), postcard::Error> {
        self.varint(u128::from(v))
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<(), postcard::Error> {
        self.varint(u128::from(v))
    }
    #[inline]
    fn serialize_u128(self, v: u128) -> Result<(), postcard::Error> {
        self.varint(v)
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<(), postcard::Error> {
        self.push(u64::from(v.to_bits()), 4)
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), postcard::Error> {
        self.push(v.to_bits(), 8)
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<(), postcard::Error> {
        // postcard writes a `char` as a string: its UTF-8 length, then the bytes.
        let mut buf = [0u8; 4];
        let n = v.encode_utf8(&mut buf).len();
        self.push(n as u64, 1)?;
        self.push(u64::from(u32::from_le_bytes(buf)), n)
    }
    fn serialize_str(self, _: &str) -> Result<(), postcard::Error> {
        Err(postcard::Error::WontImplement)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), postcard::Error> {
        Err(postcard::Error::WontImplement)
    }
    fn serialize_none(self) -> Result<(), postcard::Error> {
        Err(postcard::Error::WontImplement)
    }
    fn serialize_some<V: Serialize + ?Sized>(self, _: &V) -> Result<(), postcard::Error> {
        Err(postcard::Error::WontImplement)
    }
    #[inline]
    fn serialize_unit(self) -> Result<(), postcard::Error> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), postcard::Error> {
        Err(postcard::Error::WontImplement)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), postcard::Error> {
        Err(postcard::Error::WontImplement)
    }
    fn serialize_newtype_struct<V: Serialize + ?Sized>(self, _: &'static str, _: &V) -> Result<(), postcard::Error> {
        Err(postcard::Error::WontImplement)
    }
    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &V,
    ) -> Result<(), postcard::Error> {
        Err(postcard::Error::WontImplement)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, postcard::Error> {
        Err(postcard::Error::WontImplement)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, postcard::Error> {
        Err(postcard::Error::WontImplement)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, postcard::Error> {
        Err(postcard::Error::WontImplement)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, postcard::Error> {
        Err(postcard::Error::WontImplement)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, postcard::Error> {
        Err(postcard::Error::WontImplement)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, postcard::Error> {
        Err(postcard::Error::WontImplement)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, postcard::Error> {
        Err(postcard::Error::WontImplement)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{PLAIN_MAX, encode_plain};

    fn same<T: Serialize + std::fmt::Debug>(value: T) {
        let mut bytes = [0u8; PLAIN_MAX];
        let len = encode_plain(&value, &mut bytes).expect("a plain value encodes");
        let words = encode_plain_words(&value).expect("a plain value encodes in words");
        let mut got = [0u8; 8 * WORDS];
        for (i, w) in words.words.iter().enumerate() {
            got[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
        }
        assert_eq!((&got[..words.len], words.len), (&bytes[..len], len), "{value:?}");
        assert!(got[words.len..].iter().all(|b| *b == 0), "{value:?}: bytes past the message");
    }

    #[test]
    fn words_hold_the_bytes_encode_plain_writes() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Every varint length's edges.
        for bits in 0..=128u32 {
            let v = if bits == 128 { u128::MAX } else { 1u128 << bits };
            for v in [v.wrapping_sub(1), v, v.wrapping_add(1)] {
                same(v);
                same(v as i128);
                same(v as u64);
                same(v as i64);
                same(v as u32);
                same(v as i32);
                same(v as u16);
                same(v as i16);
                same(v as usize);
                same(v as isize);
            }
        }
        for _ in 0..20_000 {
            let r = next();
            let shift = (r % 64) as u32;
            let v = next() >> shift;
            same(v);
            same(v as i64);
            same((v as u128) << 64 | u128::from(next() >> shift));
            same(v as i128 * -3);
            same(v as u32);
            same(v as i32);
            same(v as u16);
            same(v as i16);
            same(v as u8);
            same(v as i8);
            same(f64::from_bits(v));
            same(f32::from_bits(v as u32));
            same(v % 2 == 0);
            same(char::from_u32(v as u32 % 0x11_0000).unwrap_or('\u{fffd}'));
        }
        for c in ['\0', 'a', '\u{7f}', '\u{80}', 'é', '\u{7ff}', '\u{800}', '€', '\u{ffff}', '\u{10000}', '\u{10ffff}']
        {
            same(c);
        }
        same(());
        same(f64::NAN);
        same(-0.0f32);
    }

    #[test]
    fn what_is_not_plain_does_not_encode_in_words() {
        assert_eq!(encode_plain_words("a string"), None);
        assert_eq!(encode_plain_words(&Some(1u8)), None);
        assert_eq!(encode_plain_words(&(1u8, 2u8)), None);
        assert_eq!(encode_plain_words(&vec![1u8]), None);
    }
}
