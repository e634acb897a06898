//! A serializer in front of postcard's that notices what postcard would mis-encode, and
//! keeps the message of a custom error (postcard keeps only "Serde Serialization Error").
//!
//! Postcard writes no field names and no lengths it is not told, so a struct that skips a
//! field (`skip_serializing_if`) or a map of unknown length (`flatten`) cannot be read
//! back. Such a message stops with [`Failure::SelfDescribe`] and is written again in the
//! self-describing encoding.
//!
//! For a type whose values may nest past the receivers' depth limit (`keep::MAX_DEPTH`: a
//! recursive type, or one deeper than the probe looks; [`Plan::Nests`](super::Plan)), and
//! for every self-described message, it also counts the depth as the receivers count it
//! (each element, field, map key and value, `Some`, newtype and enum variant a level below
//! its container) and refuses a value nested deeper (aud104 L2: the sender took it, and
//! every receiver refused it, the message lost). A type that cannot nest so deep counts
//! nothing ([`Shallow`]: a zero-sized depth, each step a no-op). In front of MessagePack's
//! serializer (`P` false) it only counts: it refuses nothing postcard cannot carry. There a
//! receiver may read through serde's `Content` (untagged, internally tagged, `flatten`),
//! which counts what is written, not the type: a tuple or struct variant's fields are
//! counted two levels below the enum ([`fields_at`], review156 M1), the larger count; and
//! `Some` and a newtype, which MessagePack writes bare, are still counted as a level (a
//! typed receiver counts them), so such a value may be refused somewhat shallower than
//! 256 levels of what is written (review156 L3, the safe side).
//!
//! In front of postcard it also compares the fields a struct's, tuple struct's or
//! variant's `Serialize` writes with those the probe saw its `Deserialize` read
//! ([`note_fields`]): another count would be misread in postcard, which writes no names
//! (review149 M6), so the value goes self-described, where the fields go by name and the
//! count is not compared. Likewise each variant's index with the variants the probe saw the
//! enum's `Deserialize` read ([`note_variants`]): a variant after one skipped when
//! deserializing has another number there (review157 H3).

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::ser::{self, Serialize, Serializer};

/// Why [`Check`] stopped.
#[derive(Debug)]
pub(super) enum Failure {
    /// The value needs the self-describing encoding.
    SelfDescribe,
    /// A `Serialize` impl refused, with its message.
    Custom(String),
    /// The serializer behind refused (its own error, such as a full buffer).
    Inner(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::SelfDescribe => f.write_str("the value needs a self-describing encoding"),
            Failure::Custom(m) | Failure::Inner(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Failure {}

impl ser::Error for Failure {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Failure::Custom(msg.to_string())
    }
}

thread_local! {
    /// The innermost [`Failure`] of the value being serialized: a nested value's failure
    /// crosses postcard's compound types as postcard's own error, which keeps no message.
    static STASHED: RefCell<Option<Failure>> = const { RefCell::new(None) };
}

thread_local! {
    /// What the probe saw of each struct, tuple struct and struct or tuple variant's
    /// `Deserialize` on this thread: its name (the enum's, for a variant), the variant
    /// ([`NOT_VARIANT`] for a struct) and how many fields it reads.
    static SHAPES: RefCell<Vec<(&'static str, u32, usize)>> = const { RefCell::new(Vec::new()) };
    /// [`misread`]'s answers, by the name's address (the `Serialize`'s string), the
    /// variant and the count written: a struct serialized again costs a few compares, not
    /// a comparison of names. Emptied when the probe notes a new shape.
    static JUDGED: RefCell<Vec<(usize, u32, usize, bool)>> = const { RefCell::new(Vec::new()) };
    /// What the probe saw of each enum's `Deserialize` on this thread: its name and the
    /// names of the variants it reads, which it numbers in that order.
    static ENUMS: RefCell<Vec<(&'static str, &'static [&'static str])>> = const { RefCell::new(Vec::new()) };
    /// [`renumbered`]'s answers, by the addresses of the enum's and the variant's names
    /// and the index written. Emptied when the probe notes a new enum.
    static NUMBERED: RefCell<Vec<(usize, usize, u32, bool)>> = const { RefCell::new(Vec::new()) };
    /// A few of [`NUMBERED`]'s answers that a variant is read as written, each in the slot
    /// of its variant name's address and index: the message's path reads one slot, no
    /// `RefCell` and no destructor's registration (a variant written again costs a few
    /// compares). Emptied with `NUMBERED`.
    static AS_WRITTEN: [Cell<(usize, usize, u32)>; SLOTS] = const { [const { Cell::new((0, 0, 0)) }; SLOTS] };
}

/// How many slots [`AS_WRITTEN`] has.
const SLOTS: usize = 16;

/// Notes that a `Deserialize` of the enum `name` reads `variants`, numbered in that order:
/// the probe saw it.
pub(super) fn note_variants(name: &'static str, variants: &'static [&'static str]) {
    ENUMS.with(|e| {
        let mut e = e.borrow_mut();
        if !e.iter().any(|&(n, v)| n == name && v == variants) {
            e.push((name, variants));
            NUMBERED.with(|n| n.borrow_mut().clear());
            AS_WRITTEN.with(|slots| slots.iter().for_each(|slot| slot.set((0, 0, 0))));
        }
    });
}

/// Whether a `Serialize` that writes `variant` of the enum `name` as `index` may be read as
/// another variant in postcard, which writes the index alone (review157 H3). serde's
/// `Serialize` numbers every variant; a derived `Deserialize` numbers only those it reads,
/// so a variant after one it skips (`#[serde(skip_deserializing)]`) has another number
/// there: `Shift::C`, written as 2, was read as the next variant, or refused. So the
/// variant must be among those some `Deserialize` of that name reads, at that index, and
/// at no other (two enums of one name: the safe side). A name the probe never saw is
/// taken as it is written. An alias of a variant is among the names read (serde_derive
/// lists them), so the variants after it go self-described too, where they go by name.
#[inline]
fn renumbered(name: &'static str, index: u32, variant: &'static str) -> bool {
    let key = (name.as_ptr() as usize, variant.as_ptr() as usize, index);
    let slot = (key.1 ^ index as usize) % SLOTS;
    if AS_WRITTEN.with(|slots| slots[slot].get() == key) {
        return false;
    }
    renumbered_known(key, slot, name, index, variant)
}

/// [`renumbered`] past its slot: the answer known, or judged.
#[cold]
#[inline(never)]
fn renumbered_known(
    key: (usize, usize, u32),
    slot: usize,
    name: &'static str,
    index: u32,
    variant: &'static str,
) -> bool {
    let (enum_at, variant_at, _) = key;
    let known = NUMBERED
        .with(|n| n.borrow().iter().find(|&&(e, v, i, _)| e == enum_at && v == variant_at && i == index).map(|n| n.3));
    let renumbered = known.unwrap_or_else(|| judge_variant(name, index, variant));
    if !renumbered {
        AS_WRITTEN.with(|slots| slots[slot].set(key));
    }
    renumbered
}

/// [`renumbered`]'s answer the first time (per address of the names, and index).
#[cold]
#[inline(never)]
fn judge_variant(name: &'static str, index: u32, variant: &'static str) -> bool {
    let (mut known, mut here, mut elsewhere) = (false, false, false);
    ENUMS.with(|e| {
        for &(_, variants) in e.borrow().iter().filter(|&&(n, _)| n == name) {
            known = true;
            for (i, &v) in variants.iter().enumerate() {
                if v == variant {
                    if u32::try_from(i) == Ok(index) {
                        here = true;
                    } else {
                        elsewhere = true;
                    }
                }
            }
        }
    });
    let renumbered = known && (!here || elsewhere);
    NUMBERED.with(|n| n.borrow_mut().push((name.as_ptr() as usize, variant.as_ptr() as usize, index, renumbered)));
    renumbered
}

/// The variant noted for a struct or tuple struct (see [`note_fields`]).
pub(super) const NOT_VARIANT: u32 = u32::MAX;

/// Notes that a `Deserialize` reads `len` fields for the struct or tuple struct `name` (or
/// the enum `name`'s `variant`): the probe saw it.
pub(super) fn note_fields(name: &'static str, variant: u32, len: usize) {
    SHAPES.with(|s| {
        let mut s = s.borrow_mut();
        if !s.iter().any(|&(n, v, l)| n == name && v == variant && l == len) {
            s.push((name, variant, len));
            JUDGED.with(|j| j.borrow_mut().clear());
        }
    });
}

/// Whether a `Serialize` that writes `len` fields for `name` (at `variant`) writes fewer
/// or more than some `Deserialize` of that name the probe saw reads: a field skipped
/// always (`skip_serializing` without `skip_deserializing`, which calls no `skip_field`)
/// or written and never read (review149 M6), which postcard, writing no names, would
/// misread. A serde name is no type's own (two `Config`s of two modules share it), so a
/// count that differs from any one noted under the name is taken as misread (review157 H2:
/// a count equal to another type's was taken as fine, and the message lost): a name shared
/// by types of different counts goes self-described, which costs bytes only. A name the
/// probe never saw is taken as it is written (a struct renamed on one side only is not
/// caught).
#[inline]
fn misread(name: &'static str, variant: u32, len: usize) -> bool {
    let address = name.as_ptr() as usize;
    let known =
        JUDGED.with(|j| j.borrow().iter().find(|&&(a, v, l, _)| a == address && v == variant && l == len).map(|j| j.3));
    known.unwrap_or_else(|| judge(name, variant, len))
}

/// [`misread`]'s answer the first time (per address of the name, variant and count).
#[cold]
#[inline(never)]
fn judge(name: &'static str, variant: u32, len: usize) -> bool {
    let misread = SHAPES.with(|s| s.borrow().iter().any(|&(n, v, l)| v == variant && n == name && l != len));
    JUDGED.with(|j| j.borrow_mut().push((name.as_ptr() as usize, variant, len, misread)));
    misread
}

fn stash(f: Failure) {
    STASHED.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_none() {
            *s = Some(f);
        }
    });
}

/// The depth of the value being serialized, as the receivers count it (see the module's
/// doc), or nothing for a type that cannot nest past their limit.
pub(super) trait Depth: Copy {
    /// The depth one level below, or the failure past the receivers' limit.
    fn below(self) -> Result<Self, Failure>;
}

/// No depth counted: a type whose values cannot nest past the receivers' limit.
#[derive(Clone, Copy)]
pub(super) struct Shallow;

impl Depth for Shallow {
    #[inline(always)]
    fn below(self) -> Result<Self, Failure> {
        Ok(self)
    }
}

/// The depth counted (the outermost value at 0, as a receiver's `keep` starts).
#[derive(Clone, Copy)]
pub(super) struct Level(u32);

impl Depth for Level {
    #[inline]
    fn below(self) -> Result<Self, Failure> {
        if self.0 < super::keep::MAX_DEPTH { Ok(Level(self.0 + 1)) } else { Err(too_deep()) }
    }
}

#[cold]
fn too_deep() -> Failure {
    Failure::Custom(format!(
        "the value nests deeper than {} levels, which no receiver reads (each element, field, map entry, \
         Some, newtype and enum variant a level below its container)",
        super::keep::MAX_DEPTH
    ))
}

/// Serializes `value` with `serializer` (postcard's) behind a [`Check`], counting no depth.
pub(super) fn serialize<T: Serialize + ?Sized, S: Serializer>(value: &T, serializer: S) -> Result<(), Failure> {
    serialize_at::<T, S, Shallow, true>(value, serializer, Shallow)
}

/// [`serialize`], refusing a value nested past the receivers' limit.
pub(super) fn serialize_counted<T: Serialize + ?Sized, S: Serializer>(value: &T, serializer: S) -> Result<(), Failure> {
    serialize_at::<T, S, Level, true>(value, serializer, Level(0))
}

/// Serializes `value` with a self-describing `serializer` (MessagePack's), refusing only a
/// value nested past the receivers' limit.
pub(super) fn serialize_described<T: Serialize + ?Sized, S: Serializer>(
    value: &T,
    serializer: S,
) -> Result<(), Failure> {
    serialize_at::<T, S, Level, false>(value, serializer, Level(0))
}

#[inline(always)]
fn serialize_at<T: Serialize + ?Sized, S: Serializer, D: Depth, const P: bool>(
    value: &T,
    serializer: S,
    depth: D,
) -> Result<(), Failure> {
    // The stash is empty here: every failure that fills it ends a serialization, which
    // takes it.
    match value.serialize(Check::<S, D, P>(serializer, depth)) {
        Ok(_) => Ok(()),
        Err(top) => Err(STASHED.with(|s| s.borrow_mut().take()).unwrap_or(top)),
    }
}

/// The depth a tuple or struct variant's compound state starts at (its fields one level
/// below that), the variant's enum at `depth`; past the receivers' limit, the failure.
///
/// A receiver that reads the enum with its own `Deserialize` has the variant and its
/// fields one level below the enum. In postcard (`P`) that is the only reader: postcard
/// cannot buffer a value into serde's `Content`. In MessagePack a receiver may: an untagged
/// or internally tagged enum, a `flatten`ed field, and `serde_json::Value` read the value
/// by what is written, and rmp-serde writes a tuple or struct variant as
/// `{variant: [fields]}` or `{variant: {fields}}`, the fields two levels below the enum
/// (review156 M1: one level counted, a chain of 200 tuple variants under an untagged
/// wrapper was sent and refused by every receiver). So a self-described variant's fields
/// are counted two levels down, the larger of the two counts: a typed receiver would have
/// read a value up to one level per such variant deeper (the safe side).
#[inline(always)]
fn fields_at<D: Depth, const P: bool>(depth: D) -> Result<D, Failure> {
    let variant = depth.below()?;
    if P { Ok(depth) } else { Ok(variant) }
}

/// The length an iterator promises, as serde's default `collect_seq` takes it.
fn iterator_len_hint<I: Iterator>(iter: &I) -> Option<usize> {
    match iter.size_hint() {
        (lo, Some(hi)) if lo == hi => Some(lo),
        _ => None,
    }
}

/// A serializer (or one of its compound states) in front of another, with the depth of the
/// value it writes (of the container, for a compound state). `P`: the serializer behind is
/// postcard's, whose encoding the check guards; otherwise (MessagePack) it only counts.
pub(super) struct Check<S, D, const P: bool>(S, D);

/// A value serialized through a [`Check`] by the serializer behind, at depth `D`.
struct Checked<'a, T: ?Sized, D, const P: bool>(&'a T, D);

impl<T: Serialize + ?Sized, D: Depth, const P: bool> Serialize for Checked<'_, T, D, P> {
    #[inline]
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Check::<S, D, P>(serializer, self.1)).map_err(|f| {
            let e = <S::Error as ser::Error>::custom(&f);
            stash(f);
            e
        })
    }
}

fn inner<E: fmt::Display>(e: E) -> Failure {
    Failure::Inner(e.to_string())
}

macro_rules! forward {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(#[inline]
        fn $method(self, v: $ty) -> Result<S::Ok, Failure> {
            self.0.$method(v).map_err(inner)
        })*
    };
}

impl<S: Serializer, D: Depth, const P: bool> Serializer for Check<S, D, P> {
    type Ok = S::Ok;
    type Error = Failure;
    type SerializeSeq = Check<S::SerializeSeq, D, P>;
    type SerializeTuple = Check<S::SerializeTuple, D, P>;
    type SerializeTupleStruct = Check<S::SerializeTupleStruct, D, P>;
    type SerializeTupleVariant = Check<S::SerializeTupleVariant, D, P>;
    type SerializeMap = Check<S::SerializeMap, D, P>;
    type SerializeStruct = Check<S::SerializeStruct, D, P>;
    type SerializeStructVariant = Check<S::SerializeStructVariant, D, P>;

    forward!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    #[inline]
    fn serialize_none(self) -> Result<S::Ok, Failure> {
        self.0.serialize_none().map_err(inner)
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, Failure> {
        self.0.serialize_some(&Checked::<_, D, P>(value, self.1.below()?)).map_err(inner)
    }

    #[inline]
    fn serialize_unit(self) -> Result<S::Ok, Failure> {
        self.0.serialize_unit().map_err(inner)
    }

    #[inline]
    fn serialize_unit_variant(self, name: &'static str, index: u32, variant: &'static str) -> Result<S::Ok, Failure> {
        if P && renumbered(name, index, variant) {
            return Err(Failure::SelfDescribe);
        }
        // A receiver reads the variant a level below the enum.
        self.1.below()?;
        self.0.serialize_unit_variant(name, index, variant).map_err(inner)
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Result<S::Ok, Failure> {
        self.0.serialize_newtype_struct(name, &Checked::<_, D, P>(value, self.1.below()?)).map_err(inner)
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, Failure> {
        if P && renumbered(name, index, variant) {
            return Err(Failure::SelfDescribe);
        }
        // The variant and its value a level below the enum.
        self.0
            .serialize_newtype_variant(name, index, variant, &Checked::<_, D, P>(value, self.1.below()?))
            .map_err(inner)
    }

    #[inline]
    fn collect_seq<I: IntoIterator<Item: Serialize>>(self, iter: I) -> Result<S::Ok, Failure> {
        // A run of bytes (`Vec<u8>`, `[u8]`) as one copy: postcard writes a sequence of
        // `u8` exactly as bytes, its length then the bytes themselves (and a receiver reads
        // a `Vec<u8>` as one run too, its bytes no level below it). Not MessagePack, which
        // writes bytes apart from sequences.
        if P && let Some(bytes) = crate::shm::byte_run(&iter) {
            return self.0.serialize_bytes(bytes).map_err(inner);
        }
        let iter = iter.into_iter();
        let mut seq = self.serialize_seq(iterator_len_hint(&iter))?;
        for item in iter {
            ser::SerializeSeq::serialize_element(&mut seq, &item)?;
        }
        ser::SerializeSeq::end(seq)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, Failure> {
        if P && len.is_none() {
            return Err(Failure::SelfDescribe);
        }
        self.0.serialize_seq(len).map(|c| Check(c, self.1)).map_err(inner)
    }

    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, Failure> {
        self.0.serialize_tuple(len).map(|c| Check(c, self.1)).map_err(inner)
    }

    #[inline]
    fn serialize_tuple_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeTupleStruct, Failure> {
        if P && misread(name, NOT_VARIANT, len) {
            return Err(Failure::SelfDescribe);
        }
        self.0.serialize_tuple_struct(name, len).map(|c| Check(c, self.1)).map_err(inner)
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, Failure> {
        if P && (renumbered(name, index, variant) || misread(name, index, len)) {
            return Err(Failure::SelfDescribe);
        }
        // The variant a level below the enum, as its fields are (typed); MessagePack's
        // fields two levels below (see `fields_at`).
        let fields = fields_at::<D, P>(self.1)?;
        self.0.serialize_tuple_variant(name, index, variant, len).map(|c| Check(c, fields)).map_err(inner)
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, Failure> {
        if P && len.is_none() {
            return Err(Failure::SelfDescribe);
        }
        self.0.serialize_map(len).map(|c| Check(c, self.1)).map_err(inner)
    }

    #[inline]
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeStruct, Failure> {
        if P && misread(name, NOT_VARIANT, len) {
            return Err(Failure::SelfDescribe);
        }
        self.0.serialize_struct(name, len).map(|c| Check(c, self.1)).map_err(inner)
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, Failure> {
        if P && (renumbered(name, index, variant) || misread(name, index, len)) {
            return Err(Failure::SelfDescribe);
        }
        let fields = fields_at::<D, P>(self.1)?;
        self.0.serialize_struct_variant(name, index, variant, len).map(|c| Check(c, fields)).map_err(inner)
    }

    #[inline]
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<S::Ok, Failure> {
        self.0.collect_str(value).map_err(inner)
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! compound {
    ($trait:ident, $method:ident) => {
        impl<S: ser::$trait, D: Depth, const P: bool> ser::$trait for Check<S, D, P> {
            type Ok = S::Ok;
            type Error = Failure;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Failure> {
                self.0.$method(&Checked::<_, D, P>(value, self.1.below()?)).map_err(inner)
            }

            #[inline]
            fn end(self) -> Result<S::Ok, Failure> {
                self.0.end().map_err(inner)
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);

impl<S: ser::SerializeMap, D: Depth, const P: bool> ser::SerializeMap for Check<S, D, P> {
    type Ok = S::Ok;
    type Error = Failure;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Failure> {
        self.0.serialize_key(&Checked::<_, D, P>(key, self.1.below()?)).map_err(inner)
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Failure> {
        self.0.serialize_value(&Checked::<_, D, P>(value, self.1.below()?)).map_err(inner)
    }

    #[inline]
    fn end(self) -> Result<S::Ok, Failure> {
        self.0.end().map_err(inner)
    }
}

macro_rules! fields {
    ($trait:ident) => {
        impl<S: ser::$trait, D: Depth, const P: bool> ser::$trait for Check<S, D, P> {
            type Ok = S::Ok;
            type Error = Failure;

            #[inline]
            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Failure> {
                self.0.serialize_field(key, &Checked::<_, D, P>(value, self.1.below()?)).map_err(inner)
            }

            #[inline]
            fn skip_field(&mut self, key: &'static str) -> Result<(), Failure> {
                // Postcard writes nothing for a skipped field, and its reader would take the
                // next field's bytes for it.
                if P {
                    return Err(Failure::SelfDescribe);
                }
                self.0.skip_field(key).map_err(inner)
            }

            #[inline]
            fn end(self) -> Result<S::Ok, Failure> {
                self.0.end().map_err(inner)
            }
        }
    };
}

fields!(SerializeStruct);
fields!(SerializeStructVariant);
