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
//! first by default), and each enum type met in a plan's runs, at a variant not tried yet,
//! is tried again in a new run with the same plan and that variant. A path down to a
//! `deserialize_any` takes each type once (a type's made-up subtree is the same wherever
//! it sits), so the runs are at most one plus the variants of every enum type met, not
//! their product. That holds only for what a run sees:
//!
//! - A struct field (or a struct variant's, read by name as a struct's) that refuses the
//!   made-up value (a handle checks its seal, a `NonZeroU32` is not zero) is left out of
//!   the plan's next runs, so that the fields after it are seen. The fields left out and
//!   the enum types met are a plan's own (review149 M2: a field that refused under one
//!   variant, left out for the whole pass, hid the enum's other variants).
//! - An element that fails (a refusal, or the depth limit's cut) hides what comes after
//!   it: a tuple's (or a tuple struct's or variant's) later elements, a map entry's value
//!   behind its key. The probe cannot go past it (the visitor stops), so it notes it
//!   ([`Ctx::hid`]) and the answer is a give-up (review149 M4).
//! - A `Deserialize` that panics on the made-up value ends the probe with a give-up
//!   (review149 M5: the rest of it, another variant, was never seen).
//!
//! A sequence, map or option met again inside itself (a recursive type's repeat) is
//! empty (or `None`): its element was looked into above, and a recursive type through a
//! sequence then ends there, not at the depth limit, whose cut would fail (and hide) the
//! elements after it at every level above. An enum met again inside itself takes no
//! variant from the plan (that would recurse down to the depth limit): it takes a variant
//! that ended in an earlier run (a pass that had none yet, and learned one, is run again),
//! else its first.
//!
//! The answer is four-way ([`Answer`]). `Any` when a run met `deserialize_any`.
//! `GaveUp` when the probe stopped short of something it had not seen: the runs ran out
//! ([`MAX_RUNS`]), or its work ([`MAX_NODES`]), something was hidden, a panic, or the depth
//! limit cut a type that no run entered above the limit (for an enum, one of whose
//! variants no run entered). A cut type entered elsewhere had its subtree looked into from
//! there, and each further cut on the way to a `deserialize_any` is closer to it, so is
//! itself entered or makes the answer `GaveUp` (the cut's own failure hides nothing
//! unnoted: a hidden sibling makes the answer `GaveUp`). A message of a `GaveUp` type goes
//! self-described (MessagePack carries any type, postcard not one that asks for
//! `deserialize_any`, which every receiver would refuse: aud104 M1); a socket connection,
//! whose messages are postcard only, writes it in postcard behind the checking serializer
//! and decodes it back once before sending it (review149 M1), refusing it unless the value
//! read back encodes to the same bytes (review169 H2: an enum the probe never met is taken
//! as written, and a variant read as the next one decoded fine). A handle's own
//! `Deserialize` reads a tuple (a pipe end is an object and a side), so a guess there
//! would send every pipe end self-described; a tuple with a handle before another element
//! does go self-described (the probe cannot see past the handle).
//!
//! Otherwise the answer is `Nests` or `Postcard`, both postcard. `Nests` when a run met a
//! type inside itself (entered again, or a repeat made empty), cut one at the depth limit,
//! or stopped short of something that hid nothing after it (a last element that refused,
//! a struct missing the field it skipped, whose depth the probe never saw): its values may
//! nest past the receivers' limit, so its sender counts their depth (`check`, fix114). A
//! give-up needs no `Nests`: it goes self-described, and every self-described write counts
//! the depth. `Postcard` when none of these: nothing to count.
//!
//! The probe also notes how many fields each struct, tuple struct and variant's
//! `Deserialize` reads, and what each enum's identifier reads each of its names as
//! (`check::Shapes`, kept per type), for the checking serializer: a `Serialize` that
//! writes another count (`skip_serializing` alone calls no `skip_field`) or another
//! variant number would be misread in postcard (review149 M6, review157 H3). A run takes
//! an enum's variant by its name, not its position among the names, which hold aliases
//! (review162 H1, H2); names read as one value (by `mem::discriminant`) are one variant,
//! numbered in the list's order, as serde_derive lists them.

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;

use serde::de::value::{StrDeserializer, U32Deserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::check::{NOT_VARIANT, Numbering, Shapes};

/// How deep the made-up value goes: deep enough for the data of a message, finite for
/// recursive types (a type cut off there that no run entered above it makes the answer
/// [`Answer::GaveUp`]).
const MAX_DEPTH: u32 = 12;
/// How many runs the probe makes in all (runs left to make then make the answer
/// [`Answer::GaveUp`]).
const MAX_RUNS: usize = 512;
/// How many compound values the probe looks into in all, over its runs (past it, the answer
/// is [`Answer::GaveUp`]): a bound on one run's work, which a wide type would otherwise
/// make exponential in [`MAX_DEPTH`] (review149 L1).
const MAX_NODES: u32 = 100_000;
/// The variant recorded for a type that is not an enum.
const NOT_ENUM: u32 = u32::MAX;

/// What the probe found of a type's `Deserialize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Answer {
    /// No `deserialize_any` anywhere: postcard carries it, and its values nest no deeper
    /// than the probe looked (the depth limit cut nothing, no type met inside itself).
    Postcard,
    /// As [`Answer::Postcard`], but its values may nest past the receivers' depth limit (a
    /// recursive type, one deeper than the probe looks, or one whose run stopped short of
    /// something it hid nothing behind): the sender counts the depth (`check::Level`).
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
/// some path the probe reaches, or the probe could not tell; and what the checking
/// serializer compares a `T` message's `Serialize` with.
pub(super) fn needs_self_description<T: DeserializeOwned>() -> (Answer, Shapes) {
    let (answer, _, shapes) = probe::<T>();
    (answer, shapes)
}

/// The answer for a `T`, how many runs it took, and the shapes it saw.
fn probe<T: DeserializeOwned>() -> (Answer, usize, Shapes) {
    let ctx = Ctx::default();
    let (answer, runs) = answer::<T>(&ctx);
    // What the checking serializer compares a `Serialize`'s count of fields and variant
    // numbers with.
    let enums: Vec<_> = ctx.enums.borrow().iter().map(|e| (e.name, e.names, e.numbering())).collect();
    // A variant's count is noted under the number its own enum reads it as, which a
    // `Serialize` writes (a run took it by its position among the names, aliases
    // included). Two enums of one name may number a position differently (review169 H1:
    // the count of one was noted under the position, where the other's variant of that
    // number was checked against it). Where its own numbering is not known, every
    // variant of the name goes self-described (`judge_variant`); the count is noted under
    // every number any enum of the name reads the position as, and the position: more
    // notes only send more values self-described.
    let visitors: Vec<TypeId> = ctx.enums.borrow().iter().map(|e| e.visitor).collect();
    let numbers = |c: &Count| -> Vec<u32> {
        if c.variant == NOT_VARIANT {
            return vec![c.variant];
        }
        let own = visitors.iter().position(|&v| Some(v) == c.owner);
        let mine = own.and_then(|at| enums[at].2.of(c.variant as usize));
        if let Some(number) = mine {
            return vec![number];
        }
        let mut numbers: Vec<u32> =
            enums.iter().filter(|e| e.0 == c.name).filter_map(|e| e.2.of(c.variant as usize)).collect();
        numbers.push(c.variant);
        numbers.sort_unstable();
        numbers.dedup();
        numbers
    };
    let fields =
        ctx.counts.borrow().iter().flat_map(|c| numbers(c).into_iter().map(move |n| (c.name, n, c.fields))).collect();
    let complete = matches!(answer, Answer::Postcard | Answer::Nests);
    (answer, runs, Shapes { fields, enums, complete })
}

/// [`probe`]'s answer, and how many runs it took.
fn answer<T: DeserializeOwned>(ctx: &Ctx) -> (Answer, usize) {
    let mut runs = 0;
    loop {
        ctx.fell_back.set(false);
        ctx.learned.set(false);
        ctx.hid.set(false);
        if let Some(answer) = probe_pass::<T>(ctx, &mut runs) {
            return (answer, runs);
        }
        // A repeat that took the first variant may have hidden what comes after it (a
        // tuple's later elements): again, with the ending variants learned since.
        if !(ctx.fell_back.get() && ctx.learned.get()) {
            break;
        }
    }
    // Something the last pass did not see (cut off and entered nowhere above the limit,
    // or hidden behind a refusal) might ask for `deserialize_any`: a give-up, which goes
    // self-described, and a self-described write counts the depth anyway. Else a type met
    // inside itself, cut at the limit or whose run stopped short is counted (fix114).
    let answer = if ctx.cut_unseen() || ctx.hid.get() || ctx.nodes.get() >= MAX_NODES {
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
        // A plan's own: the fields that refused under it (a field that refused under
        // another plan's variant may not refuse under this one's, review149 M2), and the
        // enum types met in any of its runs (a run that skips a field meets fewer).
        ctx.skipped.borrow_mut().clear();
        ctx.met.borrow_mut().clear();
        loop {
            if *runs == MAX_RUNS || ctx.nodes.get() >= MAX_NODES {
                // Variants were left untried: one of them may ask for `deserialize_any`.
                return Some(Answer::GaveUp);
            }
            *runs += 1;
            ctx.path.borrow_mut().clear();
            // A `Deserialize` impl that panics on the made-up value ends the probe, not
            // the sender. What the panic cut short was not seen (the made-up value is no
            // real one: a real value may go on to a variant that asks for
            // `deserialize_any`, review149 M5), so the answer is a give-up: MessagePack
            // carries any value.
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if T::deserialize(Probe { ctx, depth: 0 }).is_err() && !ctx.skipped_now.get() {
                    // Stopped short: what failed was not looked into (a last element
                    // that refused the made-up value, a struct missing the field it
                    // skipped), so how deep it nests is unknown (fix114). What it hid
                    // after it, if anything, makes the answer a give-up (`hid`).
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
                // Self-described, so its depth is counted too (fix114).
                return Some(Answer::GaveUp);
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
    /// Struct fields (by visitor and index) that refused their made-up value, or whose
    /// key the visitor refused (`true`: a name of a field read already, an alias).
    skipped: RefCell<Vec<(TypeId, usize, bool)>>,
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
    /// Whether a run met a type inside itself (a repeat, entered or made empty) or cut one
    /// at the depth limit, or a run stopped short: its values may nest past the receivers'
    /// limit ([`Answer::Nests`], unless the answer is a give-up).
    deep: Cell<bool>,
    /// Whether a run of this pass left elements unseen behind one that failed (a tuple's,
    /// a tuple or struct variant's, a map entry's value behind its key), or a struct's
    /// fields behind a visitor that failed other than on a field's value (review149 M4).
    hid: Cell<bool>,
    /// How many compound values the runs looked into ([`MAX_NODES`]).
    nodes: Cell<u32>,
    /// The struct visitors (by visitor and variant) given a sequence once, as postcard
    /// gives a struct (review157 H1, H4): the first run to meet one gives it that.
    trials: RefCell<HashSet<(TypeId, u32)>>,
    /// How many fields each struct and struct variant's visitor reads, as best known.
    counts: RefCell<Vec<Count>>,
    /// Each enum's names and what its identifier read each as.
    enums: RefCell<Vec<Named>>,
}

/// An enum's `Deserialize` as the probe saw it: its names (with aliases: serde_derive
/// lists them), and what its identifier read each name as (review162 H1, H2).
struct Named {
    visitor: TypeId,
    name: &'static str,
    names: &'static [&'static str],
    /// Per name, a hash of the variant of the identifier's value (`mem::discriminant`):
    /// names read as one value (a variant and its aliases) hash alike.
    read_as: Vec<Option<u64>>,
    /// Whether its identifier refused a name: its variants are taken by index.
    by_index: bool,
}

impl Named {
    /// How the enum numbers its names: in order of the values its names were read as,
    /// since a derived identifier lists each variant's names together, in the order it
    /// numbers the variants.
    fn numbering(&self) -> Numbering {
        if self.by_index {
            return Numbering::Listed;
        }
        let mut numbers = Vec::with_capacity(self.read_as.len());
        let mut seen: Vec<u64> = Vec::new();
        for read_as in &self.read_as {
            let Some(read_as) = *read_as else { return Numbering::Unknown };
            match seen.iter().position(|&s| s == read_as) {
                Some(at) if at + 1 == seen.len() => {}
                // A name read as a variant listed before another: no order to go by.
                Some(_) => return Numbering::Unknown,
                None => seen.push(read_as),
            }
            numbers.push(u32::try_from(seen.len() - 1).unwrap_or(u32::MAX));
        }
        Numbering::Grouped(numbers)
    }
}

/// How many fields a struct's (or a struct variant's) `Deserialize` reads, as best known.
struct Count {
    visitor: TypeId,
    name: &'static str,
    /// For a variant, its enum's visitor: the numbering its index is read by.
    owner: Option<TypeId>,
    /// For a variant, its position among its enum's names (aliases included).
    variant: u32,
    fields: usize,
    known: Known,
}

/// How a [`Count`] is known, from the least sure.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Known {
    /// The names the struct's `Deserialize` lists: serde_derive lists each field's aliases
    /// too, so this may count more than it reads (the safe side: the value goes
    /// self-described).
    Listed,
    /// The names a run read the struct by, less the keys its visitor refused (an alias
    /// of a field read already).
    ByName,
    /// The elements its visitor took from a sequence, as postcard gives it: exactly what
    /// a receiver reads.
    InSequence,
}

impl Ctx {
    /// Notes that `V` (for `name`, at `variant` of the enum read by `owner`) reads `fields`
    /// fields, known so; a count known better replaces it.
    fn count<V>(&self, name: &'static str, owner: Option<TypeId>, variant: u32, fields: usize, known: Known) {
        let visitor = typeid::of::<V>();
        let mut counts = self.counts.borrow_mut();
        match counts.iter_mut().find(|c| c.visitor == visitor && c.variant == variant) {
            Some(c) if c.known < known => {
                c.fields = fields;
                c.known = known;
            }
            Some(_) => {}
            None => counts.push(Count { visitor, name, owner, variant, fields, known }),
        }
    }

    /// Notes the enum read by a `V`, named `name`, listing `names`.
    fn note_enum<V>(&self, name: &'static str, names: &'static [&'static str]) {
        let visitor = typeid::of::<V>();
        let mut enums = self.enums.borrow_mut();
        if !enums.iter().any(|e| e.visitor == visitor) {
            enums.push(Named { visitor, name, names, read_as: vec![None; names.len()], by_index: false });
        }
    }

    /// Whether a struct `V` (at `variant`) is given a sequence in this run: the first
    /// time the probe meets it.
    fn trial<V>(&self, variant: u32) -> bool {
        self.trials.borrow_mut().insert((typeid::of::<V>(), variant))
    }

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
        let repeat = self.ctx.path.borrow().contains(&typeid::of::<V>());
        if repeat {
            // A recursive type (made empty here, so `enter` may never meet it again): its
            // values may nest past the receivers' limit.
            self.ctx.deep.set(true);
        }
        repeat
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
        let nodes = self.ctx.nodes.get();
        if nodes >= MAX_NODES {
            // Past the budget: the run ends (each value left fails here at once), and the
            // answer is a give-up.
            return Err(Stop);
        }
        self.ctx.nodes.set(nodes + 1);
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
    );

    /// An identifier read from the deserializer itself (a struct's field names come from
    /// [`Fields`], a variant's from a `U32Deserializer`): a `variant_identifier` or
    /// `field_identifier` value or map key, a flattened struct's keys, the tag an
    /// adjacently tagged enum's visitor reads from a sequence. Postcard cannot answer it
    /// (`WontImplement`, read as a `deserialize_any`), so it is one (review157 H5: a made-up
    /// name was answered, and the message sent in postcard and refused by every receiver).
    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
        self.ctx.any.set(true);
        Err(Stop)
    }

    /// `Some` to look inside; `None` past the depth limit, and as a repeat (an option
    /// among the values the run is inside: its `Some` was looked into above).
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        if self.repeats::<V>() || self.stops_at::<V>(NOT_ENUM) {
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

    /// One element to look inside; none past the depth limit, and none as a repeat (a
    /// sequence among the values the run is inside: its element was looked into above, so a
    /// recursive type through a sequence ends there rather than at the depth limit, whose
    /// cut would fail the elements after it, review149 M4).
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        if self.repeats::<V>() || self.stops_at::<V>(NOT_ENUM) {
            return Elements::visit(self, 0, |e| visitor.visit_seq(e));
        }
        self.enter::<V, _>(NOT_ENUM, |p| Elements::visit(p, 1, |e| visitor.visit_seq(e)))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        if self.stops_at::<V>(NOT_ENUM) {
            return Err(Stop);
        }
        self.enter::<V, _>(NOT_ENUM, |p| Elements::visit(p, len, |e| visitor.visit_seq(e)))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.ctx.count::<V>(name, None, NOT_VARIANT, len, Known::InSequence);
        if self.stops_at::<V>(NOT_ENUM) {
            return Err(Stop);
        }
        self.enter::<V, _>(NOT_ENUM, |p| Elements::visit(p, len, |e| visitor.visit_seq(e)))
    }

    /// One entry to look inside; none past the depth limit, and none as a repeat (as a
    /// sequence).
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        if self.repeats::<V>() || self.stops_at::<V>(NOT_ENUM) {
            return Elements::visit(self, 0, |e| visitor.visit_map(e));
        }
        self.enter::<V, _>(NOT_ENUM, |p| Elements::visit(p, 1, |e| visitor.visit_map(e)))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.ctx.count::<V>(name, None, NOT_VARIANT, fields.len(), Known::Listed);
        if self.stops_at::<V>(NOT_ENUM) {
            return Err(Stop);
        }
        // As a sequence the first time (see [`Trial`]); then by name, so that a field that
        // refuses (a handle) can be left out and the fields after it still be seen.
        self.enter::<V, _>(NOT_ENUM, |p| {
            if p.ctx.trial::<V>(NOT_ENUM) {
                Trial::visit::<V, _>(p, name, None, NOT_VARIANT, fields.len(), |t| visitor.visit_seq(t))
            } else {
                Fields::visit::<V, _>(p, name, None, NOT_VARIANT, fields, |f| visitor.visit_map(f))
            }
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let id = typeid::of::<V>();
        // What the checking serializer compares a `Serialize`'s variant and index with.
        self.ctx.note_enum::<V>(name, variants);
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
        let value = self
            .enter::<V, _>(variant, |p| visitor.visit_enum(Variant { probe: p, id, name, names: variants, variant }));
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

/// The elements of a made-up sequence, tuple, tuple struct or variant, or map.
struct Elements<'a> {
    probe: Probe<'a>,
    left: usize,
    /// Whether a map entry's key was read and its value not yet.
    value_due: bool,
}

impl<'a> Elements<'a> {
    /// Runs `visit` on `len` made-up elements; notes as hidden ([`Ctx::hid`]) what a
    /// failure left unread, unless `deserialize_any` was met: the elements after one that
    /// failed (a refusal, the depth limit's cut), or all of them when the visitor refused
    /// the sequence or map itself.
    fn visit<R>(probe: Probe<'a>, len: usize, visit: impl FnOnce(&mut Self) -> Result<R, Stop>) -> Result<R, Stop> {
        let mut elements = Elements { probe, left: len, value_due: false };
        let value = visit(&mut elements);
        let ctx = probe.ctx;
        if value.is_err() && !ctx.any.get() && !ctx.skipped_now.get() && (elements.left > 0 || elements.value_due) {
            ctx.hid.set(true);
        }
        value
    }
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
        self.value_due = true;
        seed.deserialize(self.probe).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        self.value_due = false;
        seed.deserialize(self.probe)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// The variant a run takes of a made-up enum (of name `name`, read by the visitor `id`,
/// listing `names`): the `variant`th name.
#[derive(Clone, Copy)]
struct Variant<'a> {
    probe: Probe<'a>,
    id: TypeId,
    name: &'static str,
    names: &'static [&'static str],
    variant: u32,
}

impl<'de, 'a> de::EnumAccess<'de> for Variant<'a> {
    type Error = Stop;
    type Variant = Self;

    /// By its name, to learn what the identifier reads each name as (review162 H1, H2:
    /// serde_derive lists the aliases among the names, so a name's position is not the
    /// variant's number). An identifier that refuses a name (a hand-written one that
    /// reads indexes only) makes the run go again, with the enum's variants taken by
    /// index from then on.
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Stop> {
        let ctx = self.probe.ctx;
        let by_index = ctx.enums.borrow().iter().any(|e| e.visitor == self.id && e.by_index);
        let name = self.names.get(self.variant as usize);
        let Some(&name) = name.filter(|_| !by_index) else {
            let index: U32Deserializer<Stop> = self.variant.into_deserializer();
            return Ok((seed.deserialize(index)?, self));
        };
        let key: StrDeserializer<'_, Stop> = name.into_deserializer();
        let read = seed.deserialize(key);
        let mut enums = ctx.enums.borrow_mut();
        let Some(named) = enums.iter_mut().find(|e| e.visitor == self.id) else { return Ok((read?, self)) };
        match read {
            Ok(value) => {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::hash::DefaultHasher::new();
                std::mem::discriminant(&value).hash(&mut hasher);
                if let Some(slot) = named.read_as.get_mut(self.variant as usize) {
                    *slot = Some(hasher.finish());
                }
                Ok((value, self))
            }
            Err(e) => {
                if !ctx.any.get() && !ctx.skipped_now.get() {
                    named.by_index = true;
                    ctx.skipped_now.set(true);
                }
                Err(e)
            }
        }
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_> {
    type Error = Stop;

    fn unit_variant(self) -> Result<(), Stop> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Stop> {
        seed.deserialize(self.probe)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        self.probe.ctx.count::<V>(self.name, Some(self.id), self.variant, len, Known::InSequence);
        Elements::visit(self.probe, len, |e| visitor.visit_seq(e))
    }

    /// As a struct: as a sequence the first time ([`Trial`]), then by name (a derived
    /// visitor reads a map too): a field that refuses is left out of the next runs, and the
    /// fields after it are seen (review149 M4).
    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value, Stop> {
        let ctx = self.probe.ctx;
        ctx.count::<V>(self.name, Some(self.id), self.variant, fields.len(), Known::Listed);
        if ctx.trial::<V>(self.variant) {
            Trial::visit::<V, _>(self.probe, self.name, Some(self.id), self.variant, fields.len(), |t| {
                visitor.visit_seq(t)
            })
        } else {
            Fields::visit::<V, _>(self.probe, self.name, Some(self.id), self.variant, fields, |f| visitor.visit_map(f))
        }
    }
}

/// The fields of a made-up struct as a sequence, as postcard gives every struct (review157
/// H1, H4): given to each struct visitor the first time a run meets it.
///
/// - A visitor that fails with no element failing refuses what postcard gives it (it reads
///   only a map: `toml_datetime::Datetime`, `serde_spanned::Spanned`), or reads what
///   postcard cannot answer (serde_derive's adjacently tagged enum reads its tag with
///   `deserialize_identifier`): its messages go self-described ([`Ctx::any`]).
/// - A visitor that ends well took as many elements as it reads fields, which a receiver
///   takes from postcard (serde_derive's list of names holds each field's aliases too).
/// - An element that fails (a handle refuses the made-up value) ends the trial: the run
///   goes again, and the struct is read by name ([`Fields`]) from then on.
struct Trial<'a> {
    probe: Probe<'a>,
    left: usize,
    taken: usize,
    /// Whether the visitor asked for an element at all.
    asked: bool,
}

impl<'a> Trial<'a> {
    /// Runs `visit` on `len` made-up elements, for a `V` (for `name`, at `variant` of the
    /// enum read by `owner`).
    fn visit<V, R>(
        probe: Probe<'a>,
        name: &'static str,
        owner: Option<TypeId>,
        variant: u32,
        len: usize,
        visit: impl FnOnce(&mut Self) -> Result<R, Stop>,
    ) -> Result<R, Stop> {
        let mut trial = Trial { probe, left: len, taken: 0, asked: false };
        let value = visit(&mut trial);
        let ctx = probe.ctx;
        if value.is_ok() {
            ctx.count::<V>(name, owner, variant, trial.taken, Known::InSequence);
        } else if !trial.asked {
            // It refused the sequence itself (reads only a map). Also when
            // `deserialize_any` was met (a no-op then).
            ctx.any.set(true);
        } else if !ctx.any.get() && !ctx.skipped_now.get() {
            // An element failed (a handle refused), or the visitor read its elements and
            // refused their made-up values (`lo < hi`, review162 M1: taken for a map-only
            // visitor, its messages were self-described): read by name from the next run.
            ctx.skipped_now.set(true);
        }
        value
    }
}

impl<'de> de::SeqAccess<'de> for Trial<'_> {
    type Error = Stop;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Stop> {
        self.asked = true;
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let value = seed.deserialize(self.probe)?;
        self.taken += 1;
        Ok(Some(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
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
    /// Whether the current field's key was handed out and its value not asked for yet.
    key_due: bool,
    /// Whether a field's value failed (noted in [`Ctx::skipped`], or under a refusal
    /// noted there in this run: the next run goes on past it).
    value_failed: bool,
}

impl<'a> Fields<'a> {
    /// Runs `visit` on the fields of a `V` (for `name`, at `variant` of the enum read by
    /// `owner`). A key the visitor
    /// refused (a name of a field it read already: serde_derive lists each field's
    /// aliases among its names, review157 H1) is left out of the next runs, as a field
    /// whose value refused is, and not counted as read. Notes as hidden ([`Ctx::hid`]) the
    /// fields left unread when the visitor failed otherwise than on a field (it refused the
    /// map), unless `deserialize_any` was met or the run goes again.
    fn visit<V, R>(
        probe: Probe<'a>,
        name: &'static str,
        owner: Option<TypeId>,
        variant: u32,
        fields: &'static [&'static str],
        visit: impl FnOnce(&mut Self) -> Result<R, Stop>,
    ) -> Result<R, Stop> {
        let id = typeid::of::<V>();
        let mut access = Fields { probe, id, fields, next: 0, current: 0, key_due: false, value_failed: false };
        let value = visit(&mut access);
        let ctx = probe.ctx;
        // Every name read (the visitor may still fail at its end, missing a field left out
        // for refusing its value): the names less the keys it refused.
        let read_all = !access.value_failed && !access.key_due && access.next >= fields.len();
        if value.is_ok() || (read_all && !ctx.any.get()) {
            let refused = ctx.skipped.borrow().iter().filter(|&&(k, _, key)| k == id && key).count();
            ctx.count::<V>(name, owner, variant, fields.len() - refused, Known::ByName);
        }
        if value.is_err() && !ctx.any.get() && !access.value_failed && !ctx.skipped_now.get() {
            if access.key_due {
                ctx.skipped.borrow_mut().push((id, access.current, true));
                ctx.skipped_now.set(true);
            } else if access.next < fields.len() {
                ctx.hid.set(true);
            }
        }
        value
    }
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Stop> {
        let ctx = self.probe.ctx;
        while self.next < self.fields.len()
            && ctx.skipped.borrow().iter().any(|&(k, i, _)| k == self.id && i == self.next)
        {
            self.next += 1;
        }
        let Some(field) = self.fields.get(self.next) else { return Ok(None) };
        self.current = self.next;
        self.next += 1;
        self.key_due = true;
        let key: StrDeserializer<'_, Stop> = field.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        let ctx = self.probe.ctx;
        self.key_due = false;
        let value = seed.deserialize(self.probe);
        if value.is_err() {
            self.value_failed = true;
            if !ctx.any.get() && !ctx.skipped_now.get() {
                ctx.skipped.borrow_mut().push((self.id, self.current, false));
                ctx.skipped_now.set(true);
            }
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::{Answer, probe};

    /// The probe's answer for a `T`, and how many runs it took.
    fn answer_of<T: serde::de::DeserializeOwned>() -> (Answer, usize) {
        let (answer, runs, _) = probe::<T>();
        (answer, runs)
    }

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

    /// A recursive type whose `Deserialize` reads a sequence of itself through one visitor,
    /// entering no struct or enum at each level: its repeat is made empty (review149 M4),
    /// never entered again.
    struct Nested(#[allow(dead_code)] Vec<Nested>);

    impl<'de> Deserialize<'de> for Nested {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Elements;
            impl<'de> serde::de::Visitor<'de> for Elements {
                type Value = Nested;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a sequence of Nested")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Nested, A::Error> {
                    let mut kids = Vec::new();
                    while let Some(kid) = seq.next_element()? {
                        kids.push(kid);
                    }
                    Ok(Nested(kids))
                }
            }
            d.deserialize_seq(Elements)
        }
    }

    /// A field read by an old name too (serde_derive lists `a`, `old`, `b`).
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Aliased {
        #[serde(alias = "old")]
        a: u32,
        b: Option<Option<u32>>,
    }

    /// An alias after a field that refuses the made-up value: read by name, where the
    /// alias is a refused key.
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct AliasedByName {
        n: std::num::NonZeroU32,
        #[serde(alias = "old")]
        a: u32,
        b: u32,
    }

    /// An identifier, read with `deserialize_identifier`.
    #[derive(Deserialize)]
    #[serde(variant_identifier)]
    #[allow(dead_code)]
    enum Ident {
        Alpha,
        Beta,
    }

    /// An adjacently tagged enum with words of its own.
    #[derive(Deserialize)]
    #[serde(tag = "t", content = "c", expecting = "a thing")]
    #[allow(dead_code)]
    enum Beside {
        Count(u32),
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
            ("Tree", answer_of::<Tree>(), Answer::Nests),
            ("Option<Tree>", answer_of::<Option<Tree>>(), Answer::Nests),
            ("Settings", answer_of::<Settings>(), Answer::Postcard),
            ("Expr", answer_of::<Expr>(), Answer::Nests),
            // merge118: met again only as a repeat made empty, it still nests (fix114's
            // count), else a value past the receivers' limit would be sent and lost.
            ("Nested", answer_of::<Nested>(), Answer::Nests),
            ("(u8, String)", answer_of::<(u8, String)>(), Answer::Postcard),
            ("Deep", answer_of::<Deep>(), Answer::GaveUp),
            ("Vec<Value>", answer_of::<Vec<serde_json::Value>>(), Answer::Any),
            // review157 H1, H4, H5: an alias keeps postcard (a refused key is no hidden
            // field); an identifier, and an adjacently tagged enum's sequence whatever its
            // words, are `Any`.
            ("Aliased", answer_of::<Aliased>(), Answer::Postcard),
            // Missing the field it skipped: its depth unseen (fix114).
            ("AliasedByName", answer_of::<AliasedByName>(), Answer::Nests),
            ("Ident", answer_of::<Ident>(), Answer::Any),
            ("Beside", answer_of::<Beside>(), Answer::Any),
        ] {
            eprintln!("{what}: {answer:?} in {runs} runs");
            assert_eq!(answer, expected, "{what} after {runs} runs");
            assert!(runs <= 16, "{what}: {runs} runs");
        }
    }

    /// A variant alias before a variant skipped when deserializing.
    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum AliasThenSkip {
        #[serde(alias = "a2")]
        A,
        #[serde(skip_deserializing)]
        B,
        C,
        D(u32),
    }

    /// The same with a fallthrough.
    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum AliasThenOther {
        #[serde(alias = "a2")]
        A,
        C,
        #[serde(other)]
        U,
    }

    /// review162 H1, H2: the numbering is learnt by name, the aliases one number with their
    /// variant; the list's positions are no numbers.
    #[test]
    fn an_enums_numbering_is_learnt_with_its_aliases() {
        use super::super::check::Numbering;
        let enums = |shapes: super::Shapes| shapes.enums.into_iter().map(|e| (e.1, e.2)).collect::<Vec<_>>();
        let (answer, _, shapes) = probe::<AliasThenSkip>();
        assert_eq!(answer, Answer::Postcard);
        assert_eq!(enums(shapes), [(&["A", "a2", "C", "D"][..], Numbering::Grouped(vec![0, 0, 1, 2]))]);
        let (answer, _, shapes) = probe::<AliasThenOther>();
        assert_eq!(answer, Answer::Postcard);
        assert_eq!(enums(shapes), [(&["A", "a2", "C", "U"][..], Numbering::Grouped(vec![0, 0, 1, 2]))]);
    }
}
