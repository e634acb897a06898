//! Whether a type's `Deserialize` needs a self-describing encoding: it asks its
//! deserializer to say what comes next (`deserialize_any`), as `serde_json::Value`,
//! `#[serde(untagged)]` and internally tagged enums and `#[serde(flatten)]` structs do.
//!
//! The probe runs `T::deserialize` against a deserializer that makes up a value of the
//! shape asked for (zeros, empty strings, one element per sequence and map, down to
//! [`MAX_DEPTH`]) and records a `deserialize_any`. Types are known by their visitor's
//! [`TypeId`] (`typeid::of`: unique, where a `type_name` is not, review140 M2).
//!
//! Each enum type's variants are tried once each, not in every combination with the
//! others (review140 M1): a run takes, per enum type, the variant its run plan says (the
//! first by default), and each enum type a run meets, at a variant not tried yet, is
//! tried again in a new run with the same plan and that variant. A path down to a
//! `deserialize_any` takes each type once (a type's made-up subtree is the same wherever
//! it sits), so the runs are at most one plus the variants of every enum type met, not
//! their product. A struct field that refuses the made-up value (a handle checks its
//! seal, a `NonZeroU32` is not zero) is left out of the next runs, so that the fields
//! after it are seen. A tuple or sequence element that refuses hides the elements after
//! it: the probe does not see them. An enum met again inside itself (a recursive type's
//! repeat) takes no variant from the plan (that would recurse down to the depth limit):
//! it takes a variant that ended in an earlier run (a pass that had none yet, and
//! learned one, is run again), else its first.
//!
//! The answer is four-way ([`Answer`]). `Postcard` and `Nests` both go in postcard;
//! `Nests` when a run met a type inside itself, cut one at the depth limit, or stopped
//! short (a tuple element that refused hides the rest): its values may nest past the
//! receivers' limit, so its sender counts their depth (`check`). `Any` when a run met
//! `deserialize_any`.
//! `GaveUp` when the probe stopped short of something it had not seen: the runs ran out
//! ([`MAX_RUNS`]), or the depth limit cut a type that no run entered above the limit (for
//! an enum, one of whose variants no run entered). A cut type entered elsewhere had its
//! subtree looked into from there, and each further cut on the way to a `deserialize_any`
//! is closer to it, so is itself entered or makes the answer `GaveUp`: a recursive type
//! cut wherever its cycle meets the limit stays `Postcard` (review140 M1). A message of a
//! `GaveUp` type goes self-described (MessagePack carries any type, postcard not one that
//! asks for `deserialize_any`, which every receiver would refuse: aud104 M1), but a
//! socket connection, whose messages are postcard only, sends it in postcard behind the
//! checking serializer rather than refuse it. A handle's own `Deserialize` reads a tuple
//! (a pipe end is an object and a side), so a guess there would send every pipe end
//! self-described.

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;

use serde::de::value::{StrDeserializer, U32Deserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::{Deserialize, Serialize};

/// How deep the made-up value goes: deep enough for the data of a message, finite for
/// recursive types (a type cut off there that no run entered above it makes the answer
/// [`Answer::GaveUp`]).
const MAX_DEPTH: u32 = 12;
/// How many runs the probe makes in all (runs left to make then make the answer
/// [`Answer::GaveUp`]).
const MAX_RUNS: usize = 512;
/// The variant recorded for a type that is not an enum.
const NOT_ENUM: u32 = u32::MAX;

/// What the probe found of a type's `Deserialize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Answer {
    /// No `deserialize_any` anywhere: postcard carries it, and its values nest no deeper
    /// than the probe looked (the depth limit cut nothing, no type met inside itself).
    Postcard,
    /// As [`Answer::Postcard`], but its values may nest past the receivers' depth limit (a
    /// recursive type, or one deeper than the probe looks, or one whose `Deserialize`
    /// panicked on the made-up value): the sender counts the depth (`check::Level`).
    Nests,
    /// The probe stopped short of something it had not seen, which might ask for
    /// `deserialize_any`.
    GaveUp,
    /// A run met `deserialize_any` (or `deserialize_ignored_any`).
    Any,
}

impl Answer {
    /// Whether a message of the type goes in the self-describing encoding.
    pub(crate) fn self_describing(self) -> bool {
        matches!(self, Answer::GaveUp | Answer::Any)
    }
}

/// Whether decoding a `T` asks for `deserialize_any` (or `deserialize_ignored_any`) along
/// some path the probe reaches, or the probe could not tell.
pub(super) fn needs_self_description<T: DeserializeOwned>() -> Answer {
    probe::<T>().0
}

/// The answer for a `T`, and how many runs it took.
fn probe<T: DeserializeOwned>() -> (Answer, usize) {
    let ctx = Ctx::default();
    let mut runs = 0;
    loop {
        ctx.fell_back.set(false);
        ctx.learned.set(false);
        // A field may have refused only for a repeat's first variant.
        ctx.skipped.borrow_mut().clear();
        if let Some(answer) = probe_pass::<T>(&ctx, &mut runs) {
            return (answer, runs);
        }
        // A repeat that took the first variant may have hidden what comes after it (a
        // tuple's later elements): again, with the ending variants learned since.
        if !(ctx.fell_back.get() && ctx.learned.get()) {
            break;
        }
    }
    let answer = if ctx.cut_unseen() {
        Answer::GaveUp
    } else if ctx.deep.get() {
        Answer::Nests
    } else {
        Answer::Postcard
    };
    (answer, runs)
}

/// One pass: a run per plan, starting from the empty plan, until no enum type met has a
/// variant left untried. `Some` with the answer when one is found (`deserialize_any`
/// met, a panic, or `MAX_RUNS` spent), `None` when none was.
fn probe_pass<T: DeserializeOwned>(ctx: &Ctx, runs: &mut usize) -> Option<Answer> {
    let mut plans: Vec<Vec<(TypeId, u32)>> = vec![Vec::new()];
    let mut tried: Vec<(TypeId, u32)> = Vec::new();
    while let Some(plan) = plans.pop() {
        *ctx.plan.borrow_mut() = plan;
        loop {
            if *runs == MAX_RUNS {
                // Variants were left untried: one of them may ask for `deserialize_any`.
                return Some(Answer::GaveUp);
            }
            *runs += 1;
            ctx.path.borrow_mut().clear();
            ctx.met.borrow_mut().clear();
            // A `Deserialize` impl that panics on the made-up value ends the probe, not
            // the sender; the message then goes in postcard, and its receiver meets the
            // same panic (a decode error where a channel or a pool decodes it:
            // `panics::decoding`).
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if T::deserialize(Probe { ctx, depth: 0 }).is_err() && !ctx.skipped_now.get() {
                    // Stopped short of the rest (a tuple's element that refused the
                    // made-up value hides those after it): how deep it nests is unknown.
                    ctx.deep.set(true);
                }
            }));
            let panicked = match run {
                Ok(()) => false,
                Err(payload) => {
                    crate::process::panics::drop_payload(payload);
                    true
                }
            };
            if ctx.any.get() {
                return Some(Answer::Any);
            }
            if panicked {
                // Its depth unknown: counted.
                return Some(Answer::Nests);
            }
            // A field that refused is left out of the next runs: the run goes again with
            // the same plan, to see the fields after it.
            if !ctx.skipped_now.replace(false) {
                break;
            }
        }
        // Each enum type met, at each variant not tried yet: a run with this plan and
        // that variant.
        let plan = ctx.plan.borrow();
        for &(id, taken, variants) in ctx.met.borrow().iter() {
            if !tried.contains(&(id, taken)) {
                tried.push((id, taken));
            }
            for variant in 0..variants {
                if tried.contains(&(id, variant)) {
                    continue;
                }
                tried.push((id, variant));
                let mut next: Vec<_> = plan.iter().copied().filter(|(k, _)| *k != id).collect();
                next.push((id, variant));
                plans.push(next);
            }
        }
    }
    None
}

#[derive(Default)]
struct Ctx {
    /// The variant each enum type takes in this run (the first if not named here).
    plan: RefCell<Vec<(TypeId, u32)>>,
    /// The enum types this run met (not as a repeat): the variant taken and how many
    /// there are.
    met: RefCell<Vec<(TypeId, u32, u32)>>,
    any: Cell<bool>,
    /// Struct fields (by visitor and index) that refused their made-up value.
    skipped: RefCell<Vec<(TypeId, usize)>>,
    /// Whether this run added to `skipped` (the innermost refusal only).
    skipped_now: Cell<bool>,
    /// The visitors of the compound values the run is inside, outermost first: a type
    /// among them is a recursive type's repeat, looked into above.
    path: RefCell<Vec<TypeId>>,
    /// Every visitor (and variant, for an enum) entered above the depth limit, in any run.
    entered: RefCell<HashSet<(TypeId, u32)>>,
    /// Every visitor cut at the depth limit, in any run, and its number of variants
    /// ([`NOT_ENUM`] for a type that is not an enum).
    cut: RefCell<HashSet<(TypeId, u32)>>,
    /// Per enum, a variant that ended in a run: the one a recursive enum's repeat takes.
    ending: RefCell<Vec<(TypeId, u32)>>,
    /// Whether a repeat took the first variant in this pass, none having ended yet.
    fell_back: Cell<bool>,
    /// Whether this pass learned an enum's ending variant.
    learned: Cell<bool>,
    /// Whether a run met a type inside itself or cut one at the depth limit: its values
    /// may nest past the receivers' limit ([`Answer::Nests`]).
    deep: Cell<bool>,
}

impl Ctx {
    /// The variant an enum met (not as a repeat) takes: its plan's, noted as met.
    fn choose(&self, id: TypeId, variants: usize) -> u32 {
        let variants = u32::try_from(variants).unwrap_or(NOT_ENUM - 1);
        let taken = self.plan.borrow().iter().find(|(k, _)| *k == id).map_or(0, |p| p.1);
        let mut met = self.met.borrow_mut();
        if !met.iter().any(|m| m.0 == id) {
            met.push((id, taken, variants));
        }
        taken
    }

    /// Whether the depth limit cut a type that no run entered above it (an enum one of
    /// whose variants none entered): what it hides was not looked into anywhere.
    fn cut_unseen(&self) -> bool {
        let entered = self.entered.borrow();
        self.cut.borrow().iter().any(|&(id, variants)| {
            if variants == NOT_ENUM {
                !entered.contains(&(id, NOT_ENUM))
            } else {
                (0..variants).any(|v| !entered.contains(&(id, v)))
            }
        })
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
        self.ctx.path.borrow().contains(&typeid::of::<V>())
    }

    /// Whether the probe stops at a compound value read by a `V` (an enum of `variants`
    /// variants, or [`NOT_ENUM`]), past the depth limit, rather than look inside; notes the
    /// cut, which makes the answer [`Answer::GaveUp`] unless a run entered `V` above it.
    fn stops_at<V>(self, variants: u32) -> bool {
        if self.depth < MAX_DEPTH {
            return false;
        }
        self.ctx.cut.borrow_mut().insert((typeid::of::<V>(), variants));
        self.ctx.deep.set(true);
        true
    }

    /// Runs `inside` one level down, with a `V` (at `variant`, or [`NOT_ENUM`]) on the path
    /// and noted as entered (checked by `stops_at` first).
    fn enter<V, R>(self, variant: u32, inside: impl FnOnce(Self) -> Result<R, Stop>) -> Result<R, Stop> {
        let id = typeid::of::<V>();
        self.ctx.entered.borrow_mut().insert((id, variant));
        let mut path = self.ctx.path.borrow_mut();
        if path.contains(&id) {
            // A recursive type's repeat (a recursive enum takes an ending variant there, so
            // the depth limit may never cut it).
            self.ctx.deep.set(true);
        }
        path.push(id);
        drop(path);
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
        if self.stops_at::<V>(NOT_ENUM) {
            visitor.visit_none()
        } else {
            self.enter::<V, _>(NOT_ENUM, |p| visitor.visit_some(p))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Stop> {
        if self.stops_at::<V>(NOT_ENUM) {
            return Err(Stop);
        }
        self.enter::<V, _>(NOT_ENUM, |p| visitor.visit_newtype_struct(p))
    }

    /// One element to look inside; none past the depth limit.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        if self.stops_at::<V>(NOT_ENUM) {
            return visitor.visit_seq(Elements { probe: self, left: 0 });
        }
        self.enter::<V, _>(NOT_ENUM, |p| visitor.visit_seq(Elements { probe: p, left: 1 }))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        if self.stops_at::<V>(NOT_ENUM) {
            return Err(Stop);
        }
        self.enter::<V, _>(NOT_ENUM, |p| visitor.visit_seq(Elements { probe: p, left: len }))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        if self.stops_at::<V>(NOT_ENUM) {
            return Err(Stop);
        }
        self.enter::<V, _>(NOT_ENUM, |p| visitor.visit_seq(Elements { probe: p, left: len }))
    }

    /// One entry to look inside; none past the depth limit.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        if self.stops_at::<V>(NOT_ENUM) {
            return visitor.visit_map(Elements { probe: self, left: 0 });
        }
        self.enter::<V, _>(NOT_ENUM, |p| visitor.visit_map(Elements { probe: p, left: 1 }))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        // By name, so that a field that refuses (a handle) can be left out and the fields
        // after it still be seen.
        if self.stops_at::<V>(NOT_ENUM) {
            return Err(Stop);
        }
        self.enter::<V, _>(NOT_ENUM, |p| {
            visitor.visit_map(Fields { probe: p, id: typeid::of::<V>(), fields, next: 0, current: 0 })
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let id = typeid::of::<V>();
        if self.stops_at::<V>(u32::try_from(variants.len()).unwrap_or(NOT_ENUM - 1)) {
            return Err(Stop);
        }
        // A recursive enum's repeat takes no variant from the plan (the same variant at
        // each level would recurse down to the depth limit): it takes a variant that ended
        // in an earlier run, or the first one.
        let ending = || self.ctx.ending.borrow().iter().find(|(k, _)| *k == id).map(|e| e.1);
        let variant = if self.repeats::<V>() {
            ending().unwrap_or_else(|| {
                self.ctx.fell_back.set(true);
                0
            })
        } else {
            self.ctx.choose(id, variants.len())
        };
        let value = self.enter::<V, _>(variant, |p| visitor.visit_enum(Variant { probe: p, variant }));
        if value.is_ok() && ending().is_none() {
            self.ctx.ending.borrow_mut().push((id, variant));
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
    /// The struct's visitor.
    id: TypeId,
    fields: &'static [&'static str],
    next: usize,
    current: usize,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Stop> {
        let ctx = self.probe.ctx;
        while self.next < self.fields.len() && ctx.skipped.borrow().contains(&(self.id, self.next)) {
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
            ctx.skipped.borrow_mut().push((self.id, self.current));
            ctx.skipped_now.set(true);
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::{Answer, probe};

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Tree {
        label: Option<String>,
        kids: Vec<Tree>,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum Flag {
        Off,
        On,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Settings(Flag, Flag, Flag, Flag, Flag, Flag, Flag, Flag, Flag, Flag, Flag, Flag);

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum Expr {
        Add(Box<Expr>, Box<Expr>),
        Neg(Box<Expr>),
        Lit(i64),
        Var(String),
        Call(String, Vec<Expr>),
        Let(String, Box<Expr>, Box<Expr>),
    }

    /// A `serde_json::Value` fifteen levels down, no type repeating.
    type Deep = Down<Down<Down<Down<Down<serde_json::Value>>>>>;
    type Down<T> = Option<(Vec<T>,)>;

    /// review140 M1: a recursive type cut by the depth limit off its own cycle, and twelve
    /// two-variant enums (4096 combinations), are postcard, in a few runs each (a six-variant
    /// recursive enum: two passes of six); a `deserialize_any` past the depth limit is a
    /// give-up, within it an `Any`.
    #[test]
    fn the_probe_tells_postcard_from_a_give_up_from_any_in_few_runs() {
        for (what, (answer, runs), expected) in [
            ("Tree", probe::<Tree>(), Answer::Nests),
            ("Option<Tree>", probe::<Option<Tree>>(), Answer::Nests),
            ("Settings", probe::<Settings>(), Answer::Postcard),
            ("Expr", probe::<Expr>(), Answer::Nests),
            ("(u8, String)", probe::<(u8, String)>(), Answer::Postcard),
            ("Deep", probe::<Deep>(), Answer::GaveUp),
            ("Vec<Value>", probe::<Vec<serde_json::Value>>(), Answer::Any),
        ] {
            eprintln!("{what}: {answer:?} in {runs} runs");
            assert_eq!(answer, expected, "{what} after {runs} runs");
            assert!(runs <= 16, "{what}: {runs} runs");
        }
    }
}
