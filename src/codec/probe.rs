//! Whether a type's `Deserialize` needs a self-describing encoding: it asks its
//! deserializer to say what comes next (`deserialize_any`), as `serde_json::Value`,
//! `#[serde(untagged)]` and internally tagged enums and `#[serde(flatten)]` structs do.
//!
//! The probe runs `T::deserialize` against a deserializer that makes up a value of the
//! shape asked for (zeros, empty strings, one element per sequence and map, down to
//! [`MAX_DEPTH`]) and records a `deserialize_any`. Each enum is tried variant by variant,
//! every combination, up to [`MAX_RUNS`] runs. A struct field that refuses the made-up
//! value (a handle checks its seal, a `NonZeroU32` is not zero) is left out of the next
//! runs, so that the fields after it are seen. A tuple or sequence element that refuses
//! hides the elements after it: the probe does not see them. An enum met again inside
//! itself (a recursive type's repeat, known by its visitor's type name) takes no choice
//! of its own, so that recursion does not multiply the combinations: it takes a variant
//! that ended in an earlier run (a pass that had none yet, and learned one, is run
//! again), else its first. A probe that stops short of what it has not seen (the runs
//! end with combinations left, or the depth limit cuts off a type that is not a repeat)
//! says self-describing: MessagePack carries any type, postcard not one that asks for
//! `deserialize_any`, which every receiver would refuse (aud104 M1). A handle's own
//! `Deserialize` reads a tuple (a pipe end is an object and a side), so a guess there
//! would send every pipe end self-described.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::value::{StrDeserializer, U32Deserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

/// How deep the made-up value goes: deep enough for the data of a message, finite for
/// recursive types (a type cut off there that is not a repeat of one entered on the way
/// down makes the answer self-describing).
const MAX_DEPTH: u32 = 12;
/// How many runs the probe makes, over every combination of enum variants (combinations
/// left untried make the answer self-describing).
const MAX_RUNS: usize = 512;

/// Whether decoding a `T` asks for `deserialize_any` (or `deserialize_ignored_any`) along
/// some path the probe reaches.
pub(super) fn needs_self_description<T: DeserializeOwned>() -> bool {
    let ctx = Ctx::default();
    let mut runs = 0;
    loop {
        ctx.fell_back.set(false);
        ctx.learned.set(false);
        // A field may have refused only for a repeat's first variant.
        ctx.skipped.borrow_mut().clear();
        if let Some(any) = probe_pass::<T>(&ctx, &mut runs) {
            return any;
        }
        if ctx.short.get() {
            return true;
        }
        // A repeat that took the first variant may have hidden what comes after it (a
        // tuple's later elements): again, with the ending variants learned since.
        if !(ctx.fell_back.get() && ctx.learned.get()) {
            return false;
        }
    }
}

/// One pass over every combination of variants: `Some` with the answer when one is
/// found (`deserialize_any` met, a panic, or `MAX_RUNS` spent), `None` when none was.
fn probe_pass<T: DeserializeOwned>(ctx: &Ctx, runs: &mut usize) -> Option<bool> {
    loop {
        if *runs == MAX_RUNS {
            // Combinations of variants were left untried: one of them may ask for
            // `deserialize_any`.
            return Some(true);
        }
        *runs += 1;
        ctx.path.borrow_mut().clear();
        // A `Deserialize` impl that panics on the made-up value ends the run, not the
        // sender; the message then goes in postcard, and its receiver meets the same panic
        // (a decode error where a channel or a pool decodes it: `panics::decoding`).
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = T::deserialize(Probe { ctx, depth: 0 });
        }));
        if run.is_err() {
            return Some(ctx.any.get());
        }
        if ctx.any.get() {
            return Some(true);
        }
        // A field that refused is left out of the next runs: the run goes again with the
        // same variants, to see the fields after it.
        if ctx.skipped_now.replace(false) {
            ctx.met.set(0);
            continue;
        }
        if !ctx.next_run() {
            return None;
        }
    }
}

#[derive(Default)]
struct Ctx {
    /// Per enum met in a run, in order: the variant taken and how many there are.
    choices: RefCell<Vec<(u32, u32)>>,
    /// How many enums the current run has met.
    met: Cell<usize>,
    any: Cell<bool>,
    /// Struct fields (by struct name and index) that refused their made-up value.
    skipped: RefCell<Vec<(&'static str, usize)>>,
    /// Whether this run added to `skipped` (the innermost refusal only).
    skipped_now: Cell<bool>,
    /// The visitors (by type name) of the compound values the run is inside, outermost
    /// first: a type among them is a recursive type's repeat, looked into above.
    path: RefCell<Vec<&'static str>>,
    /// Whether the depth limit cut off a type not entered above it.
    short: Cell<bool>,
    /// Per enum (by its visitor's type name), a variant that ended in a run: the one a
    /// recursive enum's repeat takes.
    ending: RefCell<Vec<(&'static str, u32)>>,
    /// Whether a repeat took the first variant in this pass, none having ended yet.
    fell_back: Cell<bool>,
    /// Whether this pass learned an enum's ending variant.
    learned: Cell<bool>,
}

impl Ctx {
    fn choose(&self, variants: usize) -> u32 {
        let at = self.met.replace(self.met.get() + 1);
        let mut choices = self.choices.borrow_mut();
        match choices.get(at) {
            Some(&(taken, _)) => taken,
            None => {
                choices.push((0, u32::try_from(variants).unwrap_or(u32::MAX)));
                0
            }
        }
    }

    /// Moves to the next combination of variants; false when all were tried.
    fn next_run(&self) -> bool {
        self.met.set(0);
        let mut choices = self.choices.borrow_mut();
        while let Some(last) = choices.last_mut() {
            if last.0 + 1 < last.1 {
                last.0 += 1;
                return true;
            }
            choices.pop();
        }
        false
    }
}

/// The probe's error: the run stops (why does not matter, only whether `any` was seen).
#[derive(Debug)]
pub(super) struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe stopped")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Stop
    }
}

#[derive(Clone, Copy)]
struct Probe<'a> {
    ctx: &'a Ctx,
    depth: u32,
}

impl<'a> Probe<'a> {
    /// Whether a `V` is among the compound values the run is inside: a recursive type's
    /// repeat, looked into above.
    fn repeats<V>(self) -> bool {
        self.ctx.path.borrow().contains(&std::any::type_name::<V>())
    }

    /// Whether the probe stops at a compound value read by a `V`, past the depth limit,
    /// rather than look inside; notes it as unseen unless it is a recursive type's repeat.
    fn stops_at<V>(self) -> bool {
        if self.depth < MAX_DEPTH {
            return false;
        }
        if !self.repeats::<V>() {
            self.ctx.short.set(true);
        }
        true
    }

    /// Runs `inside` one level down, with a `V` on the path (checked by `stops_at` first).
    fn enter<V, R>(self, inside: impl FnOnce(Self) -> Result<R, Stop>) -> Result<R, Stop> {
        self.ctx.path.borrow_mut().push(std::any::type_name::<V>());
        let value = inside(Probe { ctx: self.ctx, depth: self.depth + 1 });
        self.ctx.path.borrow_mut().pop();
        value
    }
}

macro_rules! made_up {
    ($($method:ident => $visit:ident($($value:expr)?)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
            visitor.$visit($($value)?)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
        self.ctx.any.set(true);
        Err(Stop)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
        self.ctx.any.set(true);
        Err(Stop)
    }

    made_up!(
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i8(0),
        deserialize_i16 => visit_i16(0),
        deserialize_i32 => visit_i32(0),
        deserialize_i64 => visit_i64(0),
        deserialize_i128 => visit_i128(0),
        deserialize_u8 => visit_u8(0),
        deserialize_u16 => visit_u16(0),
        deserialize_u32 => visit_u32(0),
        deserialize_u64 => visit_u64(0),
        deserialize_u128 => visit_u128(0),
        deserialize_f32 => visit_f32(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char('a'),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_bytes => visit_bytes(&[]),
        deserialize_byte_buf => visit_bytes(&[]),
        deserialize_unit => visit_unit(),
        // A key no struct has: a flattened struct keeps it for its flattened fields, which
        // read it with `deserialize_any`.
        deserialize_identifier => visit_str("\u{0}multiproc probe"),
    );

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        if self.stops_at::<V>() { visitor.visit_none() } else { self.enter::<V, _>(|p| visitor.visit_some(p)) }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Stop> {
        if self.stops_at::<V>() {
            return Err(Stop);
        }
        self.enter::<V, _>(|p| visitor.visit_newtype_struct(p))
    }

    /// One element to look inside; none past the depth limit.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        if self.stops_at::<V>() {
            return visitor.visit_seq(Elements { probe: self, left: 0 });
        }
        self.enter::<V, _>(|p| visitor.visit_seq(Elements { probe: p, left: 1 }))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        if self.stops_at::<V>() {
            return Err(Stop);
        }
        self.enter::<V, _>(|p| visitor.visit_seq(Elements { probe: p, left: len }))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        if self.stops_at::<V>() {
            return Err(Stop);
        }
        self.enter::<V, _>(|p| visitor.visit_seq(Elements { probe: p, left: len }))
    }

    /// One entry to look inside; none past the depth limit.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        if self.stops_at::<V>() {
            return visitor.visit_map(Elements { probe: self, left: 0 });
        }
        self.enter::<V, _>(|p| visitor.visit_map(Elements { probe: p, left: 1 }))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        // By name, so that a field that refuses (a handle) can be left out and the fields
        // after it still be seen.
        if self.stops_at::<V>() {
            return Err(Stop);
        }
        self.enter::<V, _>(|p| visitor.visit_map(Fields { probe: p, name, fields, next: 0, current: 0 }))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        if self.stops_at::<V>() {
            return Err(Stop);
        }
        // A recursive enum's repeat takes no choice of its own (the combinations would
        // multiply with each level): it takes a variant that ended in an earlier run, or
        // the first one.
        let key = std::any::type_name::<V>();
        let ending = || self.ctx.ending.borrow().iter().find(|(k, _)| *k == key).map(|e| e.1);
        let variant = if self.repeats::<V>() {
            ending().unwrap_or_else(|| {
                self.ctx.fell_back.set(true);
                0
            })
        } else {
            self.ctx.choose(variants.len())
        };
        let value = self.enter::<V, _>(|p| visitor.visit_enum(Variant { probe: p, variant }));
        if value.is_ok() && ending().is_none() {
            self.ctx.ending.borrow_mut().push((key, variant));
            self.ctx.learned.set(true);
        }
        value
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The elements of a made-up sequence, tuple, struct or map.
struct Elements<'a> {
    probe: Probe<'a>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_> {
    type Error = Stop;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Stop> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(self.probe).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::MapAccess<'de> for Elements<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Stop> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(self.probe).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        seed.deserialize(self.probe)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// The variant a run takes of a made-up enum.
struct Variant<'a> {
    probe: Probe<'a>,
    variant: u32,
}

impl<'de, 'a> de::EnumAccess<'de> for Variant<'a> {
    type Error = Stop;
    type Variant = Probe<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Probe<'a>), Stop> {
        let index: U32Deserializer<Stop> = self.variant.into_deserializer();
        Ok((seed.deserialize(index)?, self.probe))
    }
}

impl<'de> de::VariantAccess<'de> for Probe<'_> {
    type Error = Stop;

    fn unit_variant(self) -> Result<(), Stop> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Stop> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_seq(Elements { probe: self, left: len })
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_seq(Elements { probe: self, left: fields.len() })
    }
}

/// The fields of a made-up struct, by name, less those that refused in an earlier run.
struct Fields<'a> {
    probe: Probe<'a>,
    name: &'static str,
    fields: &'static [&'static str],
    next: usize,
    current: usize,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Stop> {
        let ctx = self.probe.ctx;
        while self.next < self.fields.len() && ctx.skipped.borrow().contains(&(self.name, self.next)) {
            self.next += 1;
        }
        let Some(field) = self.fields.get(self.next) else { return Ok(None) };
        self.current = self.next;
        self.next += 1;
        let key: StrDeserializer<'_, Stop> = field.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        let ctx = self.probe.ctx;
        let value = seed.deserialize(self.probe);
        if value.is_err() && !ctx.any.get() && !ctx.skipped_now.get() {
            ctx.skipped.borrow_mut().push((self.name, self.current));
            ctx.skipped_now.set(true);
        }
        value
    }
}
