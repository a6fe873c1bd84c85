//! A JSON record read straight into one slot per field: only the fields' values are
//! built (other keys are passed over), and a decimal field keeps its number's very text.

use std::borrow::Cow;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::cell::Found;
use super::folded;
use crate::contract::Column;
use crate::source::types::LakeType;

/// A field's value in a record.
#[derive(Debug)]
pub(super) enum Slot {
    Value(Value),
    /// A number's text (the value of a decimal field).
    Number(String),
}

impl Slot {
    pub(super) fn found(&self) -> Found<'_> {
        match self {
            Slot::Value(v) => Found::Value(v),
            Slot::Number(t) => Found::Number(t),
        }
    }
}

/// One record's slots, and whether each was filled by a key of the field's very name.
#[derive(Default)]
pub(super) struct Scratch {
    pub slots: Vec<Option<Slot>>,
    pub exact: Vec<bool>,
}

impl Scratch {
    pub(super) fn reset(&mut self, fields: usize) {
        self.slots.clear();
        self.slots.resize_with(fields, || None);
        self.exact.clear();
        self.exact.resize(fields, false);
    }
}

/// Deserializes a JSON object into one slot per field: a key of the field's name fills
/// it, else a key spelled another way (when no key of that very name does).
pub(super) struct Slots<'a> {
    pub fields: &'a [Column],
    pub folded: &'a [String],
    pub scratch: &'a mut Scratch,
}

impl<'de> DeserializeSeed<'de> for Slots<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Slots<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Scratch { slots, exact } = self.scratch;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let (index, is_exact) = match self.fields.iter().position(|f| f.name == *key) {
                Some(i) => (Some(i), true),
                None => {
                    let key = folded(&key);
                    (self.folded.iter().position(|f| *f == key), false)
                }
            };
            match index {
                Some(i) if is_exact || !exact[i] => {
                    slots[i] = Some(if matches!(self.fields[i].lake, LakeType::Decimal { .. }) {
                        exact_number(&map.next_value::<Box<RawValue>>()?)?
                    } else {
                        Slot::Value(map.next_value()?)
                    });
                    exact[i] = is_exact;
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A raw value as a slot: a number keeps its text.
fn exact_number<E: serde::de::Error>(raw: &RawValue) -> Result<Slot, E> {
    let text = raw.get().trim();
    if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Ok(Slot::Number(text.to_string()));
    }
    serde_json::from_str(text)
        .map(Slot::Value)
        .map_err(E::custom)
}

/// A message body: one record (an object) or an array of records, each into its own
/// slots.
pub(super) struct Body<'a> {
    pub fields: &'a [Column],
    pub folded: &'a [String],
}

impl<'de> DeserializeSeed<'de> for Body<'_> {
    type Value = Vec<Scratch>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<Scratch>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Body<'_> {
    type Value = Vec<Scratch>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object (one record) or an array of objects")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<Scratch>, A::Error> {
        let mut scratch = Scratch::default();
        scratch.reset(self.fields.len());
        Slots {
            fields: self.fields,
            folded: self.folded,
            scratch: &mut scratch,
        }
        .visit_map(map)?;
        Ok(vec![scratch])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Scratch>, A::Error> {
        let mut records = Vec::new();
        loop {
            let mut scratch = Scratch::default();
            scratch.reset(self.fields.len());
            let seed = Slots {
                fields: self.fields,
                folded: self.folded,
                scratch: &mut scratch,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(records);
            }
            records.push(scratch);
        }
    }
}
