//! The console's keys: a YAML list of `{name, sha256, role}` in the same keys-file
//! mechanism as `serve` and `collect` (the SHA-256 of each key, never the key; from a file
//! or a Secrets Manager secret). `role: reader` sees every page; `role: operator` may also
//! act (run now, rewind). A key comes as `Authorization: Bearer KEY`, as `X-Api-Key`, or
//! typed once into the login page, which gives the browser a session cookie.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::keyfile::KeyFile;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads every page; acts on nothing.
    Reader,
    /// Reads, and runs or rewinds jobs.
    Operator,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    name: String,
    sha256: String,
    role: Role,
}

/// Who a key belongs to, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub role: Role,
}

impl crate::keyfile::Entry for Entry {
    type Key = Operator;
    const FILE: &'static str = "console keys file";
    const SHAPE: &'static str = "{name, sha256, role}";
    const EXAMPLE: &'static str = "- {name: alice, sha256: <64 hex digits>, role: operator}";
    const USE: &'static str = "open the console";

    fn name(&self) -> &str {
        &self.name
    }

    fn sha256(&self) -> &str {
        &self.sha256
    }

    fn into_key(self, at: &str) -> Result<Operator> {
        if self.name.trim().is_empty() {
            return Err(Error::user(format!("{at}: name is empty")));
        }
        Ok(Operator {
            name: self.name,
            role: self.role,
        })
    }
}

/// The console's keys, by the SHA-256 of each.
pub type ConsoleKeys = KeyFile<Entry>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyfile::sha256_hex as sha;

    #[test]
    fn keys_have_roles() -> Result<()> {
        let text = format!(
            "- {{name: ann, sha256: {}, role: reader}}\n- {{name: bob, sha256: {}, role: operator}}\n",
            sha("r"),
            sha("o")
        );
        let keys = ConsoleKeys::parse(&text)?;
        assert_eq!(keys.find("r").map(|k| k.role), Some(Role::Reader));
        assert_eq!(keys.find("o").map(|k| k.role), Some(Role::Operator));
        assert!(keys.find("x").is_none());
        let bad = ConsoleKeys::parse(&format!("- {{name: c, sha256: {}, role: admin}}", sha("c")));
        assert!(bad.is_err_and(|e| e.message.contains("{name, sha256, role}")));
        Ok(())
    }
}
