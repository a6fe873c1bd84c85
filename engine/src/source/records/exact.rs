//! The exact text of a parsed document's long numbers. A `serde_json::Value` holds a
//! number as an `i64`, `u64` or `f64`: exact for every double and 64-bit integer (the
//! shortest form of a double gives its bits back), not for a decimal of more significant
//! digits than a double keeps (`12345678901234567.89`) or a larger integer. A document
//! selected by JSONPath (an API page, a record mapped by `source.fields`) is parsed into a
//! `Value`; its long numbers' texts are found again here, by a second reading of the same
//! text in step with the tree, so that a decimal field takes the digits as sent.

use std::collections::{BTreeMap, HashMap};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Significant digits a double gives back exactly, from any decimal text.
const DOUBLE_DIGITS: usize = 15;

/// The texts of a document's numbers of more than 15 significant digits, by their
/// place in the parsed tree.
#[derive(Debug, Default)]
pub struct ExactNumbers {
    texts: HashMap<usize, String>,
}

impl ExactNumbers {
    /// The long numbers of `value`, parsed from `text`. Reads the text again only when
    /// it has a run of more than 15 digits (in a number or in a string).
    pub fn of(text: &[u8], value: &Value) -> Self {
        let mut out = Self::default();
        if has_long_digits(text)
            && let Ok(raw) = serde_json::from_slice::<&RawValue>(text)
        {
            out.walk(value, raw);
        }
        out
    }

    /// The text of `number`, if it is a long number of the document.
    pub fn text(&self, number: &Value) -> Option<&str> {
        if self.texts.is_empty() {
            return None;
        }
        self.texts.get(&address(number)).map(String::as_str)
    }

    /// `value` as compact JSON text, its long numbers as they were sent.
    pub fn json(&self, value: &Value) -> String {
        if self.texts.is_empty() {
            return value.to_string();
        }
        let mut out = String::new();
        self.write(value, &mut out);
        out
    }

    /// An object as compact JSON text, its long numbers as they were sent, and the
    /// values of the keys `numbers` names written as those texts (numbers copied out of
    /// the document, which their place no longer tells).
    pub fn object(&self, map: &Map<String, Value>, numbers: &BTreeMap<String, String>) -> String {
        if self.texts.is_empty() && numbers.is_empty() {
            return serde_json::to_string(map).unwrap_or_default();
        }
        let mut out = String::from("{");
        for (i, (key, value)) in map.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::String(key.clone()).to_string());
            out.push(':');
            match numbers.get(key) {
                Some(text) => out.push_str(text),
                None => self.write(value, &mut out),
            }
        }
        out.push('}');
        out
    }

    fn write(&self, value: &Value, out: &mut String) {
        match value {
            Value::Number(_) => match self.text(value) {
                Some(text) => out.push_str(text),
                None => out.push_str(&value.to_string()),
            },
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.write(item, out);
                }
                out.push(']');
            }
            Value::Object(map) => out.push_str(&self.object(map, &BTreeMap::new())),
            other => out.push_str(&other.to_string()),
        }
    }

    fn walk(&mut self, value: &Value, raw: &RawValue) {
        match value {
            Value::Object(map) => {
                if let Ok(raws) = serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()) {
                    for (key, child) in map {
                        if let Some(r) = raws.get(key) {
                            self.walk(child, r);
                        }
                    }
                }
            }
            Value::Array(items) => {
                if let Ok(raws) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
                    for (child, r) in items.iter().zip(raws) {
                        self.walk(child, r);
                    }
                }
            }
            Value::Number(_) => {
                let text = raw.get().trim();
                if significant_digits(text) > DOUBLE_DIGITS {
                    self.texts.insert(address(value), text.to_string());
                }
            }
            _ => {}
        }
    }
}

/// A node's place: its address, which stays while the tree is not changed.
fn address(v: &Value) -> usize {
    std::ptr::from_ref(v) as usize
}

/// Whether `text` has more than 15 digits in a row (a `.` between them allowed).
fn has_long_digits(text: &[u8]) -> bool {
    let mut run = 0;
    for &b in text {
        match b {
            b'0'..=b'9' => {
                run += 1;
                if run > DOUBLE_DIGITS {
                    return true;
                }
            }
            b'.' => {}
            _ => run = 0,
        }
    }
    false
}

/// The significant digits of a JSON number's text (its mantissa without leading zeros).
fn significant_digits(text: &str) -> usize {
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .skip_while(|d| *d == b'0')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_numbers_are_found_where_the_tree_has_them() -> Result<(), String> {
        let text = br#"{"data": [{"d": 1234567890123456789012345678.0123456789, "n": 1.5, "z": 0.000000000000000001},
            {"d": -99999999999999999999, "s": "12345678901234567"}], "d": 1, "d": 123456789012345678}"#;
        let value: Value = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        let exact = ExactNumbers::of(text, &value);
        let at = |p: &str| value.pointer(p).and_then(|v| exact.text(v));
        assert_eq!(
            at("/data/0/d"),
            Some("1234567890123456789012345678.0123456789")
        );
        assert_eq!(at("/data/0/n"), None);
        assert_eq!(at("/data/0/z"), None);
        assert_eq!(at("/data/1/d"), Some("-99999999999999999999"));
        assert_eq!(at("/data/1/s"), None);
        // A repeated key: the last one, as the tree keeps it.
        assert_eq!(at("/d"), Some("123456789012345678"));
        let mut numbers = BTreeMap::new();
        numbers.insert("copied".to_string(), "1.00000000000000000001".to_string());
        let Some(Value::Object(data)) = value.pointer("/data/0") else {
            return Err("no record".into());
        };
        let mut with = data.clone();
        with.insert("copied".into(), Value::from(1.0));
        let written = exact.object(&with, &numbers);
        assert!(
            written.contains(r#""copied":1.00000000000000000001"#),
            "{written}"
        );
        // The copy's numbers have lost their place; the document's keep it.
        assert_eq!(
            exact.json(&value["data"][0]),
            r#"{"d":1234567890123456789012345678.0123456789,"n":1.5,"z":1e-18}"#
        );
        let short = br#"{"a": 1.25}"#;
        let value: Value = serde_json::from_slice(short).map_err(|e| e.to_string())?;
        assert!(ExactNumbers::of(short, &value).texts.is_empty());
        Ok(())
    }
}
