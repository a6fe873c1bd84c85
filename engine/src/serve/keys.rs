//! The API keys of `sluice serve`: a YAML file of entries `{name, sha256, tables}` — the
//! key itself is never stored, only the SHA-256 of it (`printf %s "$KEY" | sha256sum`) —
//! each allowed a list of tables (`["*"]` for all). A key comes as `Authorization: Bearer
//! KEY`, as the password of `Authorization: Basic …` (Flight SQL's handshake) or as
//! `X-Api-Key: KEY`. A table outside a key's list is invisible to it.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::keyfile::KeyFile;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    name: String,
    sha256: String,
    tables: Vec<String>,
}

impl crate::keyfile::Entry for Entry {
    type Key = Key;
    const FILE: &'static str = "keys file";
    const SHAPE: &'static str = "{name, sha256, tables}";
    const EXAMPLE: &'static str = "- {name: partner-a, sha256: <64 hex digits>, tables: [orders]}";
    const USE: &'static str = "query";

    fn name(&self) -> &str {
        &self.name
    }

    fn sha256(&self) -> &str {
        &self.sha256
    }

    fn into_key(self, at: &str) -> Result<Key> {
        if self.name.trim().is_empty() {
            return Err(Error::user(format!("{at}: name is empty")));
        }
        if self.tables.is_empty() {
            return Err(Error::user(format!(
                "{at}: tables is empty; list the tables it may read, or [\"*\"] for all"
            )));
        }
        Ok(Key::new(self.name, self.tables))
    }
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
pub type Keys = KeyFile<Entry>;

impl KeyFile<Entry> {
    /// The key a request presents in its `Authorization` or `X-Api-Key` header, if it is
    /// one of these.
    pub fn authenticate(&self, authorization: Option<&str>, api_key: Option<&str>) -> Option<&Key> {
        self.find(&presented(authorization, api_key)?)
    }
}

/// The key a request presents: `Authorization`'s bearer token or Basic password (the user
/// name is not asked for: the key names its owner), else `X-Api-Key`.
pub fn presented(authorization: Option<&str>, api_key: Option<&str>) -> Option<String> {
    let Some(authorization) = authorization else {
        return Some(api_key?.trim().to_string());
    };
    match crate::keyfile::credentials(authorization)? {
        crate::keyfile::Credentials::Bearer(token) => Some(token),
        crate::keyfile::Credentials::Basic { password, .. } => Some(password),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    use crate::keyfile::sha256_hex as sha;

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
