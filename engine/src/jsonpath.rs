//! JSONPath (RFC 9535) as the job row writes it: parsed once when the row compiles, so a
//! path that does not parse is the row's error, with where it stopped.

use std::fmt;

use serde_json::Value;

/// A parsed JSONPath, compared and shown by its text.
#[derive(Clone)]
pub struct Path {
    text: String,
    path: serde_json_path::JsonPath,
}

impl Path {
    /// Parses `text`, or says why it is not a JSONPath.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        if !trimmed.starts_with('$') {
            return Err(format!(
                "{text:?} is not a JSONPath: it starts with `$` (the document), e.g. `$.data[*]` or `$.meta.next`"
            ));
        }
        serde_json_path::JsonPath::parse(trimmed)
            .map(|path| Self {
                text: trimmed.to_string(),
                path,
            })
            .map_err(|e| format!("{text:?} is not a JSONPath (RFC 9535): {e}"))
    }

    /// The whole document.
    pub fn root() -> Self {
        Self::parse("$").unwrap_or_else(|_| unreachable!("`$` is a JSONPath"))
    }

    /// Every value the path selects, in document order.
    pub fn all<'v>(&self, value: &'v Value) -> Vec<&'v Value> {
        self.path.query(value).all()
    }

    /// The first value the path selects, if any.
    pub fn first<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.path.query(value).first()
    }

    /// The records the path selects: the elements of an array it selects alone, else
    /// each value it selects.
    pub fn records<'v>(&self, value: &'v Value) -> Vec<&'v Value> {
        let found = self.all(value);
        match found.as_slice() {
            [Value::Array(items)] => items.iter().collect(),
            _ => found,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Path {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.text)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_an_arrays_elements_or_each_match() -> Result<(), String> {
        let page = serde_json::json!({"data": [{"id": 1}, {"id": 2}], "meta": {"next": "c2"}});
        assert_eq!(Path::parse("$.data")?.records(&page).len(), 2);
        assert_eq!(Path::parse("$.data[*]")?.records(&page).len(), 2);
        assert_eq!(Path::parse("$.data[*].id")?.all(&page).len(), 2);
        assert_eq!(
            Path::parse("$.meta.next")?.first(&page),
            Some(&Value::from("c2"))
        );
        assert_eq!(Path::root().records(&page).len(), 1);
        assert!(Path::parse("$.data[").is_err_and(|m| m.contains("RFC 9535")));
        assert!(Path::parse("data").is_err_and(|m| m.contains("starts with `$`")));
        Ok(())
    }
}
