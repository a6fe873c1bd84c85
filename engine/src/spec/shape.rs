//! Checks a job row's shape against the JSON Schema of [`crate::spec`], reporting every
//! problem instead of stopping at the first (serde stops at the first).
//!
//! The schema is the one `sluice jobs schema` publishes, so what an editor accepts and
//! what `sluice jobs validate` accepts cannot drift apart. Only the keywords schemars
//! emits for our types are interpreted: `$ref`, `type`, `properties`, `required`,
//! `additionalProperties`, `items`, `enum`, `const`, `oneOf`/`anyOf`, `pattern`,
//! `minimum`/`maximum`.

use serde_json::{Map, Value};

/// One shape problem: where, and what is wrong and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// Returns every problem of `value` against `schema` (a root schema with `$defs`).
pub fn check(schema: &Value, value: &Value) -> Vec<Problem> {
    let mut out = Vec::new();
    Walker { root: schema }.walk(schema, value, "", &mut out);
    out
}

struct Walker<'a> {
    root: &'a Value,
}

impl<'a> Walker<'a> {
    fn resolve(&self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => reference
                .strip_prefix("#/")
                .map(|p| p.split('/').fold(self.root, |node, key| &node[key]))
                .unwrap_or(schema),
            None => schema,
        }
    }

    fn walk(&self, schema: &'a Value, value: &Value, path: &str, out: &mut Vec<Problem>) {
        let schema = self.resolve(schema);
        if let Some(branches) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array)
        {
            self.walk_branches(schema, branches, value, path, out);
            return;
        }
        if let Some(types) = schema.get("type")
            && !type_matches(types, value)
        {
            out.push(problem(
                path,
                format!(
                    "expected {}, found {}",
                    describe_types(types),
                    describe_value(value)
                ),
            ));
            return;
        }
        if let Some(expected) = schema.get("const")
            && expected != value
        {
            out.push(problem(
                path,
                not_one_of(value, std::slice::from_ref(expected)),
            ));
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            out.push(problem(path, not_one_of(value, allowed)));
            return;
        }
        match value {
            Value::Object(map) => self.walk_object(schema, map, path, out),
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.walk(item_schema, item, &format!("{path}[{i}]"), out);
                    }
                }
            }
            Value::String(s) => {
                if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                    && let Ok(re) = regex::Regex::new(pattern)
                    && !re.is_match(s)
                {
                    let what = schema
                        .get("description")
                        .and_then(Value::as_str)
                        .and_then(|d| d.split(". ").find(|s| s.contains(':')))
                        .map(|d| format!(" ({})", d.trim_end_matches('.')))
                        .unwrap_or_default();
                    out.push(problem(
                        path,
                        format!("{s:?} does not match {pattern}{what}"),
                    ));
                }
            }
            Value::Number(n) => {
                let v = n.as_f64().unwrap_or_default();
                let min = schema.get("minimum").and_then(Value::as_f64);
                let max = schema.get("maximum").and_then(Value::as_f64);
                if min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m) {
                    out.push(problem(
                        path,
                        format!(
                            "{n} is out of range ({} to {})",
                            min.map_or("-".into(), |m| m.to_string()),
                            max.map_or("-".into(), |m| m.to_string())
                        ),
                    ));
                }
            }
            _ => {}
        }
    }

    /// `Option<T>` becomes `anyOf: [T, null]`; documented enums become `oneOf` of consts.
    fn walk_branches(
        &self,
        schema: &'a Value,
        branches: &'a [Value],
        value: &Value,
        path: &str,
        out: &mut Vec<Problem>,
    ) {
        let mut best: Option<Vec<Problem>> = None;
        for branch in branches {
            let mut found = Vec::new();
            self.walk(branch, value, path, &mut found);
            if found.is_empty() {
                return;
            }
            // Prefer the branch whose type fits (its problems are about the content).
            let fits_type = !found
                .iter()
                .any(|p| p.path == path && p.message.starts_with("expected "));
            if fits_type || best.is_none() {
                best = Some(found);
            }
        }
        let consts: Vec<Value> = branches
            .iter()
            .filter_map(|b| self.resolve(b).get("const").cloned())
            .collect();
        if !consts.is_empty() && consts.len() == branches.len() {
            out.push(problem(path, not_one_of(value, &consts)));
        } else if let Some(found) = best {
            out.extend(found);
        } else {
            out.push(problem(path, format!("does not fit {schema}")));
        }
    }

    fn walk_object(
        &self,
        schema: &'a Value,
        map: &Map<String, Value>,
        path: &str,
        out: &mut Vec<Problem>,
    ) {
        let empty = Map::new();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for key in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(key) {
                    let what = properties
                        .get(key)
                        .and_then(|p| {
                            p.get("description")
                                .or_else(|| self.resolve(p).get("description"))
                        })
                        .and_then(Value::as_str)
                        .map(|d| format!(" ({})", first_sentence(d)))
                        .unwrap_or_default();
                    out.push(problem(
                        &join(path, key),
                        format!("is required but missing{what}"),
                    ));
                }
            }
        }
        let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        for (key, value) in map {
            let child = join(path, key);
            match properties.get(key).or(additional) {
                Some(child_schema) => self.walk(child_schema, value, &child, out),
                None if closed => {
                    let known: Vec<&str> = properties.keys().map(String::as_str).collect();
                    out.push(problem(&child, unknown_key(key, &known)));
                }
                None => {}
            }
        }
    }
}

fn problem(path: &str, message: String) -> Problem {
    Problem {
        path: if path.is_empty() {
            "(top level)".to_string()
        } else {
            path.to_string()
        },
        message,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn first_sentence(text: &str) -> &str {
    text.split(". ")
        .next()
        .unwrap_or(text)
        .trim_end_matches('.')
}

/// "unknown key `sorce`; did you mean `source`? Valid keys here: …"
pub fn unknown_key(key: &str, known: &[&str]) -> String {
    let valid = known.join(", ");
    match did_you_mean(key, known.iter().copied()) {
        Some(m) => format!("unknown key `{key}`; did you mean `{m}`? Valid keys here: {valid}"),
        None => format!("unknown key `{key}`. Valid keys here: {valid}"),
    }
}

/// The closest candidate to `word`, when one is close enough to be a likely typo.
pub fn did_you_mean<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn not_one_of(value: &Value, allowed: &[Value]) -> String {
    let valid = allowed.iter().map(render).collect::<Vec<_>>().join(", ");
    let close = value
        .as_str()
        .and_then(|s| did_you_mean(s, allowed.iter().filter_map(Value::as_str)));
    match close {
        Some(m) => format!(
            "{} is not valid; did you mean `{m}`? Valid values: {valid}",
            render(value)
        ),
        None => format!("{} is not valid. Valid values: {valid}", render(value)),
    }
}

fn render(value: &Value) -> String {
    match value {
        Value::String(s) => format!("`{s}`"),
        other => other.to_string(),
    }
}

fn type_matches(types: &Value, value: &Value) -> bool {
    match types {
        Value::String(t) => type_name_matches(t, value),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .any(|t| type_name_matches(t, value)),
        _ => true,
    }
}

fn type_name_matches(t: &str, value: &Value) -> bool {
    match t {
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => true,
    }
}

fn describe_types(types: &Value) -> String {
    let name = |t: &str| match t {
        "string" => "a string",
        "boolean" => "true or false",
        "object" => "a mapping (key: value)",
        "array" => "a list",
        "integer" => "a whole number",
        "number" => "a number",
        "null" => "nothing",
        _ => "a value",
    };
    match types {
        Value::String(t) => name(t).to_string(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .map(name)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "a value".to_string(),
    }
}

fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_string(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a mapping".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_suggestions() {
        assert_eq!(
            did_you_mean("sorce", ["source", "target", "mode"].into_iter()),
            Some("source")
        );
        assert_eq!(did_you_mean("zzz", ["source", "target"].into_iter()), None);
    }

    #[test]
    fn unknown_key_message_lists_valid_keys() {
        let m = unknown_key("sorce", &["job", "source"]);
        assert_eq!(
            m,
            "unknown key `sorce`; did you mean `source`? Valid keys here: job, source"
        );
        let m = unknown_key("xyz", &["job"]);
        assert_eq!(m, "unknown key `xyz`. Valid keys here: job");
    }
}
