//! The API keys of `sluice serve`: a YAML file of entries `{name, sha256, tables}` — the
//! key itself is never stored, only the SHA-256 of it (`printf %s "$KEY" | sha256sum`) —
//! each allowed a list of tables (`["*"]` for all). A key comes as `Authorization: Bearer
//! KEY`, as the password of `Authorization: Basic …` (Flight SQL's handshake) or as
//! `X-Api-Key: KEY`. A table outside a key's list is invisible to it.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    sha256: String,
    tables: Vec<String>,
}

/// Who a key belongs to, and what it may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    tables: Vec<String>,
}

impl Key {
    pub fn new(name: impl Into<String>, tables: Vec<String>) -> Self {
        Self {
            name: name.into(),
            tables,
        }
    }

    /// Whether this key sees `table`.
    pub fn allows(&self, table: &str) -> bool {
        self.tables.iter().any(|t| t == "*" || t == table)
    }
}

/// The keys, by the SHA-256 of each.
#[derive(Debug, Default)]
pub struct Keys(HashMap<[u8; 32], Key>);

impl Keys {
    /// Reads the keys file; every problem is named with the entry it is in.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::user(format!("cannot read the keys file {}: {e}", path.display()))
        })?;
        Self::parse(&text).map_err(|e| e.context(path.display()))
    }

    /// Reads the keys from a Secrets Manager secret holding the same YAML (or JSON).
    pub async fn from_secret(secret_id: &str) -> Result<Self> {
        let text = crate::aws::secret_string(secret_id).await?;
        Self::parse(&text).map_err(|e| e.context(format!("secret `{secret_id}`")))
    }

    fn parse(text: &str) -> Result<Self> {
        let entries: Vec<Entry> = serde_yaml::from_str(text).map_err(|e| {
            Error::user(format!(
                "{e}; a keys file is a list of {{name, sha256, tables}}, e.g. `- {{name: partner-a, sha256: <64 hex digits>, tables: [orders]}}`"
            ))
        })?;
        let mut keys = HashMap::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let at = format!("entry {} ({})", i + 1, entry.name);
            if entry.name.trim().is_empty() {
                return Err(Error::user(format!("entry {}: name is empty", i + 1)));
            }
            let digest = hex_digest(&entry.sha256).ok_or_else(|| {
                Error::user(format!(
                    "{at}: sha256 must be 64 hex digits (the SHA-256 of the key: printf %s \"$KEY\" | sha256sum), not `{}`",
                    entry.sha256
                ))
            })?;
            if entry.tables.is_empty() {
                return Err(Error::user(format!(
                    "{at}: tables is empty; list the tables it may read, or [\"*\"] for all"
                )));
            }
            let key = Key::new(entry.name, entry.tables);
            if let Some(earlier) = keys.insert(digest, key) {
                return Err(Error::user(format!(
                    "{at}: the same key as `{}`",
                    earlier.name
                )));
            }
        }
        Ok(Self(keys))
    }

    /// The key a request presents in its `Authorization` or `X-Api-Key` header, if it is
    /// one of these.
    pub fn authenticate(&self, authorization: Option<&str>, api_key: Option<&str>) -> Option<&Key> {
        let presented = presented(authorization, api_key)?;
        self.0
            .get(&<[u8; 32]>::from(Sha256::digest(presented.as_bytes())))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The key a request presents: `Authorization`'s bearer token or Basic password (the user
/// name is not asked for: the key names its owner), else `X-Api-Key`.
pub fn presented(authorization: Option<&str>, api_key: Option<&str>) -> Option<String> {
    let Some(authorization) = authorization else {
        return Some(api_key?.trim().to_string());
    };
    let (scheme, value) = authorization.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(value.trim().to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_string())
}

/// What a keys file holds for `key`: its SHA-256 as 64 hex digits.
pub fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The 32 bytes of a SHA-256 written as 64 hex digits.
pub fn hex_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(key: &str) -> String {
        sha256_hex(key)
    }

    #[test]
    fn a_key_is_found_by_its_hash_and_sees_only_its_tables() -> Result<()> {
        let text = format!(
            "- {{name: partner, sha256: {}, tables: [orders]}}\n- {{name: analysts, sha256: {}, tables: ['*']}}\n",
            sha("s3cret"),
            sha("other")
        );
        let keys = Keys::parse(&text)?;
        assert_eq!(keys.len(), 2);
        let partner = keys
            .authenticate(Some("Bearer s3cret"), None)
            .ok_or_else(|| Error::internal("partner not found"))?;
        assert_eq!(partner.name, "partner");
        assert!(partner.allows("orders") && !partner.allows("customers"));
        let analysts = keys
            .authenticate(None, Some("other"))
            .ok_or_else(|| Error::internal("analysts not found"))?;
        assert!(analysts.allows("anything"));
        assert!(keys.authenticate(None, Some("wrong")).is_none());
        assert!(keys.authenticate(None, None).is_none());
        assert!(keys.authenticate(Some("Token s3cret"), None).is_none());
        // Flight SQL's handshake: the key as the password of Basic auth.
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:s3cret");
        assert_eq!(
            keys.authenticate(Some(&format!("Basic {basic}")), None),
            Some(partner)
        );
        Ok(())
    }

    #[test]
    fn a_broken_entry_says_which_and_what_is_valid() {
        let message = |text: &str| match Keys::parse(text) {
            Ok(_) => "valid".to_string(),
            Err(e) => e.message,
        };
        assert!(message("- {name: a, sha256: abc, tables: [x]}").contains("64 hex digits"));
        let twice = format!(
            "- {{name: a, sha256: {0}, tables: [x]}}\n- {{name: b, sha256: {0}, tables: [x]}}",
            sha("k")
        );
        assert!(message(&twice).contains("the same key as `a`"));
        assert!(
            message(&format!("- {{name: a, sha256: {}, tables: []}}", sha("k")))
                .contains("tables is empty")
        );
        assert!(message("- {name: a, key: x}").contains("a keys file is a list"));
    }
}
