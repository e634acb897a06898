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
//! variant's `Serialize` writes with those the probe of the message's type saw its
//! `Deserialize` read ([`Shapes`]): another count would be misread in postcard, which
//! writes no names (review149 M6), so the value goes self-described, where the fields go
//! by name and the count is not compared. Likewise each variant's index with the number
//! the enum's `Deserialize` reads that variant's name as ([`Numbering`]): a variant after
//! one skipped when deserializing has another number there (review157 H3). Each message
//! type is judged by its own probe's shapes (review162 H3).

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

/// What one type's probe saw of the `Deserialize`s inside it (review162 H3: kept per
/// thread, two well-formed types of one serde name made each other's messages
/// self-described): the check judges a message only by its own type's shapes.
#[derive(Default)]
pub(super) struct Shapes {
    /// Each struct, tuple struct and struct or tuple variant's name (the enum's, for a
    /// variant), the variant ([`NOT_VARIANT`] for a struct) and how many fields it reads.
    pub(super) fields: Vec<(&'static str, u32, usize)>,
    /// Each enum's name, the names its `Deserialize` lists, and how it numbers them.
    pub(super) enums: Vec<(&'static str, &'static [&'static str], Numbering)>,
    /// Whether the probe met every enum the type's `Deserialize` reads (it gave no
    /// `GaveUp`): then a variant of an enum name it never met was named otherwise by the
    /// `Serialize` (`rename(deserialize = ..)` on the enum, a hand-written impl), and goes
    /// self-described, by its names (review169 M2).
    pub(super) complete: bool,
}

/// How an enum's `Deserialize` numbers the names it lists (what postcard's index is read
/// as), learnt by the probe.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) enum Numbering {
    /// Each name is the variant of its position in the list: its identifier refused a
    /// name, so the probe took its variants by index (a hand-written `Deserialize`).
    Listed,
    /// Per name, the number of the variant it is read as: the names read as one variant
    /// (a variant and its aliases) are one number, in the list's order.
    Grouped(Vec<u32>),
    /// Not learnt (a name the probe never read, or names of one variant apart in the
    /// list): every variant goes self-described.
    Unknown,
}

impl Numbering {
    /// The number a variant listed at `at` is read as, if known.
    pub(super) fn of(&self, at: usize) -> Option<u32> {
        match self {
            Numbering::Listed => u32::try_from(at).ok(),
            Numbering::Grouped(numbers) => numbers.get(at).copied(),
            Numbering::Unknown => None,
        }
    }

    /// Whether every listed name is read as its position (no alias, no name twice).
    fn is_positional(&self, names: &[&str]) -> bool {
        let distinct = names.iter().enumerate().all(|(i, n)| !names[..i].contains(n));
        match self {
            Numbering::Listed => distinct,
            Numbering::Grouped(numbers) => {
                distinct && numbers.iter().enumerate().all(|(i, &n)| u32::try_from(i) == Ok(n))
            }
            Numbering::Unknown => false,
        }
    }
}

/// The shapes' number of a type probed on another thread or not at all (a child's
/// self-describing result plan, [`super::assume_plan`]): no shapes, never checked.
pub(super) const NO_SHAPES: u32 = u32::MAX;

/// A struct's count as judged: its name's address and length, the variant, the count.
type Written = (usize, usize, u32, usize);
/// A variant as judged: the addresses and lengths of the enum's and the variant's names,
/// the index written.
type Numbered = (usize, usize, usize, usize, u32);

thread_local! {
    /// What each type's probe saw on this thread, by the number [`keep_shapes`] gave it.
    static SHAPES: RefCell<Vec<Shapes>> = const { RefCell::new(Vec::new()) };
    /// [`misread`]'s answers that hold for every type probed on this thread (the count
    /// matches every one noted under the name, or none is), by the name's address and
    /// length, the variant and the count written: a struct serialized again costs a few
    /// compares, not a comparison of names. Emptied when a type's shapes are kept.
    static JUDGED: RefCell<Vec<Written>> = const { RefCell::new(Vec::new()) };
    /// [`misread`]'s other answers, per type (its shapes' number first).
    static JUDGED_OF: RefCell<Vec<(u32, Written, bool)>> = const { RefCell::new(Vec::new()) };
    /// [`renumbered`]'s answers past [`AS_LISTED`], per type: its shapes' number, the
    /// addresses and lengths of the enum's and the variant's names, the index written.
    static NUMBERED: RefCell<Vec<(u32, Numbered, bool)>> = const { RefCell::new(Vec::new()) };
    /// Per enum name (its address and length), in the slot of its address: the list of
    /// names that every type probed on this thread that reads the name reads by position
    /// (review162 L2: a slot per enum, not per variant, so that any number of variants
    /// sent round robin hits it). The message's path reads one slot, no `RefCell` and no
    /// destructor's registration. Emptied when a type's shapes are kept.
    static AS_LISTED: [Cell<(usize, usize, &'static [&'static str])>; SLOTS] =
        const { [const { Cell::new((0, 0, &[])) }; SLOTS] };
    /// In front of [`AS_LISTED`], a few variants read as written, each in the slot of its
    /// name's address and index (the addresses of the enum's and the variant's names, the
    /// index): a variant written again costs three compares. Emptied with `AS_LISTED`.
    static AS_WRITTEN: [Cell<(usize, usize, u32)>; SLOTS] = const { [const { Cell::new((0, 0, 0)) }; SLOTS] };
}

/// How many slots [`AS_LISTED`] has.
const SLOTS: usize = 16;

/// Reaches this thread's locals of the check that have a destructor (see
/// `codec::prepare_for_forks`: a fork child of this thread then registers none of them).
pub(super) fn prepare_for_forks() {
    STASHED.with(|_| ());
    SHAPES.with(|_| ());
    JUDGED.with(|_| ());
    JUDGED_OF.with(|_| ());
    NUMBERED.with(|_| ());
}

/// Keeps what a type's probe saw: the number its messages are judged by (see
/// [`current_shapes`]).
pub(super) fn keep_shapes(shapes: Shapes) -> u32 {
    let number = SHAPES.with(|s| {
        let mut s = s.borrow_mut();
        s.push(shapes);
        u32::try_from(s.len() - 1).unwrap_or(NO_SHAPES)
    });
    // The answers kept for every type may not hold for this one.
    JUDGED.with(|j| j.borrow_mut().clear());
    AS_LISTED.with(|slots| slots.iter().for_each(|slot| slot.set((0, 0, &[]))));
    AS_WRITTEN.with(|slots| slots.iter().for_each(|slot| slot.set((0, 0, 0))));
    number
}

/// The shapes' number of the type whose message is being written, which every writer of a
/// checked message sets around its write (`write_message`, `encode_untagged`, through
/// `judged_by`): a message written inside another's `Serialize` gives the outer one's back
/// at its end (review169 M1).
fn current_shapes() -> u32 {
    super::STATE.with(|s| s.judging.get())
}

/// Whether two names are the same (the same literal, or the same text).
#[inline(always)]
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.as_ptr() == b.as_ptr() || a == b)
}

/// Whether a `Serialize` that writes `variant` of the enum `name` as `index` may be read as
/// another variant in postcard, which writes the index alone (review157 H3). serde's
/// `Serialize` numbers every variant; a derived `Deserialize` numbers only those it reads,
/// so a variant after one it skips (`#[serde(skip_deserializing)]`) has another number
/// there: `Shift::C`, written as 2, was read as the next variant, or refused. So the
/// variant must be read as `index` by every `Deserialize` of that name in the message's
/// type (two enums of one name: the safe side), as the probe learnt each one's numbering
/// (review162 H1, H2: aliases are in the list of names, so its positions are no numbers).
/// A name the probe never saw is taken as it is written where the probe gave up (a socket
/// then checks that the value decoded back encodes to the same bytes, review169 H2), and
/// as renumbered where it met every enum (review169 M2: the `Serialize` names it otherwise
/// than the `Deserialize`, which would read the index as another variant).
#[inline]
fn renumbered(name: &'static str, index: u32, variant: &'static str) -> bool {
    let written = (name.as_ptr() as usize, variant.as_ptr() as usize, index);
    let slot = (written.1 ^ index as usize) % SLOTS;
    if AS_WRITTEN.with(|slots| slots[slot].get() == written) {
        return false;
    }
    renumbered_listed(written, slot, name, index, variant)
}

/// [`renumbered`] past its variant's slot: its enum's slot, then the answer known, or
/// judged. Out of the message's path (`cold`): it keeps the inlined check small.
#[cold]
#[inline(never)]
fn renumbered_listed(
    written: (usize, usize, u32),
    slot: usize,
    name: &'static str,
    index: u32,
    variant: &'static str,
) -> bool {
    let listed_at = name.as_ptr() as usize % SLOTS;
    let (at, len, listed) = AS_LISTED.with(|slots| slots[listed_at].get());
    if at == name.as_ptr() as usize
        && len == name.len()
        && let Some(&named) = listed.get(index as usize)
        && same(named, variant)
    {
        AS_WRITTEN.with(|slots| slots[slot].set(written));
        return false;
    }
    renumbered_known(written, slot, listed_at, name, index, variant)
}

/// [`renumbered`] past its slots: the answer known, or judged.
#[cold]
#[inline(never)]
fn renumbered_known(
    written: (usize, usize, u32),
    slot: usize,
    listed_at: usize,
    name: &'static str,
    index: u32,
    variant: &'static str,
) -> bool {
    let shapes = current_shapes();
    let key = (name.as_ptr() as usize, name.len(), variant.as_ptr() as usize, variant.len(), index);
    let known = NUMBERED.with(|n| n.borrow().iter().find(|&&(s, k, _)| s == shapes && k == key).map(|n| n.2));
    if let Some(renumbered) = known {
        return renumbered;
    }
    let renumbered = SHAPES.with(|all| {
        let all = all.borrow();
        let renumbered = all.get(shapes as usize).is_some_and(|own| judge_variant(own, name, index, variant));
        // A name no type reads fills no slot: a type whose probe met every enum judges it
        // renumbered (review169 M2).
        let mut lists = all.iter().flat_map(|s| s.enums.iter()).filter(|e| e.0 == name);
        let Some(&(_, first, _)) = lists.clone().next() else { return renumbered };
        if renumbered {
            return renumbered;
        }
        // Every type that reads the name reads this variant as written: its slot may
        // answer for any of them, whatever their lists (review169 L1: a list with an alias
        // is never positional, and an aliased enum's every message took the cold path).
        let mut readers = all.iter().filter(|s| s.enums.iter().any(|e| e.0 == name));
        if readers.all(|s| !judge_variant(s, name, index, variant)) {
            AS_WRITTEN.with(|slots| slots[slot].set(written));
        }
        // Every type that reads the name reads this one list by position: its enum's slot
        // may answer for any variant of it.
        if lists.all(|(_, names, numbering)| names == &first && numbering.is_positional(names)) {
            AS_LISTED.with(|slots| slots[listed_at].set((name.as_ptr() as usize, name.len(), first)));
        }
        renumbered
    });
    NUMBERED.with(|n| n.borrow_mut().push((shapes, key, renumbered)));
    renumbered
}

/// [`renumbered`]'s answer by one type's shapes: renumbered unless some `Deserialize` of
/// the enum `name` reads `variant` as `index`, and none reads it as another; a name none
/// reads is renumbered if the probe met every enum (see [`Shapes::complete`]).
fn judge_variant(own: &Shapes, name: &str, index: u32, variant: &str) -> bool {
    let (mut known, mut here, mut elsewhere) = (false, false, false);
    for (_, names, numbering) in own.enums.iter().filter(|e| e.0 == name) {
        known = true;
        if *numbering == Numbering::Unknown {
            elsewhere = true;
        }
        for (at, _) in names.iter().enumerate().filter(|&(_, n)| *n == variant) {
            if numbering.of(at) == Some(index) {
                here = true;
            } else {
                elsewhere = true;
            }
        }
    }
    if !known {
        return own.complete;
    }
    !here || elsewhere
}

/// The variant noted for a struct or tuple struct (see [`Shapes::fields`]).
pub(super) const NOT_VARIANT: u32 = u32::MAX;

/// Whether a `Serialize` that writes `len` fields for `name` (at `variant`) writes fewer
/// or more than some `Deserialize` of that name in the message's type reads: a field
/// skipped always (`skip_serializing` without `skip_deserializing`, which calls no
/// `skip_field`) or written and never read (review149 M6), which postcard, writing no
/// names, would misread. Two `Deserialize`s of one name in one type (two `Config`s of two
/// modules) may read different counts: a count that differs from either is taken as
/// misread (review157 H2: a count equal to the other's was taken as fine, and the message
/// lost). Types are judged apart (review162 H3). A name the probe never saw is taken as it
/// is written (a struct renamed on one side only is not caught).
#[inline]
fn misread(name: &'static str, variant: u32, len: usize) -> bool {
    let key = (name.as_ptr() as usize, name.len(), variant, len);
    if JUDGED.with(|j| j.borrow().contains(&key)) {
        return false;
    }
    misread_known(key, name, variant, len)
}

/// [`misread`] past the answers for every type: this type's answer, known or judged.
#[cold]
#[inline(never)]
fn misread_known(key: Written, name: &'static str, variant: u32, len: usize) -> bool {
    let shapes = current_shapes();
    let known = JUDGED_OF.with(|j| j.borrow().iter().find(|&&(s, k, _)| s == shapes && k == key).map(|j| j.2));
    if let Some(misread) = known {
        return misread;
    }
    let differs = |s: &Shapes| s.fields.iter().any(|&(n, v, l)| v == variant && n == name && l != len);
    let (misread, for_all) = SHAPES.with(|all| {
        let all = all.borrow();
        (all.get(shapes as usize).is_some_and(differs), !all.iter().any(differs))
    });
    if for_all {
        JUDGED.with(|j| j.borrow_mut().push(key));
    } else {
        JUDGED_OF.with(|j| j.borrow_mut().push((shapes, key, misread)));
    }
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
