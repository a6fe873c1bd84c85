//! Reading a body's fields: each refusal names the field's path and what would be valid.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{Invalid, MAX_ID_CHARS};
use crate::source::records::kind as what;

pub(super) fn refuse_unknown(
    body: &Map<String, Value>,
    known: &[&str],
    at: &str,
) -> Result<(), Invalid> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(Invalid::new(
            format!("{at}.{unknown}"),
            format!(
                "is not a field of this body; its fields are {}",
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

pub(super) fn identifier(
    body: &Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<Option<String>, Invalid> {
    let path = || format!("{at}.{name}");
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(Invalid::new(
            path(),
            "is empty; leave it out or give a value",
        )),
        Some(Value::String(s)) if s.chars().count() > MAX_ID_CHARS => Err(Invalid::new(
            path(),
            format!(
                "has {} characters; at most {MAX_ID_CHARS}",
                s.chars().count()
            ),
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // Many clients send numeric user ids: kept as their text.
        Some(Value::Number(n)) if matches!(name, "userId" | "anonymousId" | "previousId") => {
            Ok(Some(n.to_string()))
        }
        Some(other) => Err(Invalid::new(
            path(),
            format!("is {}; it must be a string", what(other)),
        )),
    }
}

pub(super) fn optional_time(
    body: &Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<Option<DateTime<Utc>>, Invalid> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                Invalid::new(
                    format!("{at}.{name}"),
                    format!(
                        "`{s}` is not an ISO 8601 date and time with its offset, such as 2024-05-01T12:30:00.000Z"
                    ),
                )
            }),
        Some(other) => Err(Invalid::new(
            format!("{at}.{name}"),
            format!(
                "is {}; it must be a date and time such as 2024-05-01T12:30:00.000Z",
                what(other)
            ),
        )),
    }
}

pub(super) fn optional_object(
    body: &mut Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<Option<Map<String, Value>>, Invalid> {
    match body.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(other) => Err(Invalid::new(
            format!("{at}.{name}"),
            format!("is {}; it must be an object", what(&other)),
        )),
    }
}
