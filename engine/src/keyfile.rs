//! A keys file, as both servers take their keys: a YAML (or JSON) list of entries, each
//! naming whom a key belongs to and holding the SHA-256 of the key (`printf %s "$KEY" |
//! sha256sum`), never the key; read from a file or from a Secrets Manager secret. What
//! else an entry holds, and what a key resolves to, is the server's ([`Entry`]:
//! `serve::keys`, `collect::keys`); how a request presents its key too.

use std::collections::HashMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One entry of a keys file.
pub trait Entry: DeserializeOwned {
    /// What a request's key resolves to.
    type Key;
    /// What the file is, for messages (`keys file`).
    const FILE: &'static str;
    /// An entry's fields, for messages (`{name, sha256, tables}`).
    const SHAPE: &'static str;
    /// An example entry.
    const EXAMPLE: &'static str;
    /// What nobody could do with no key (`query`).
    const USE: &'static str;

    fn name(&self) -> &str;
    fn sha256(&self) -> &str;
    /// Checks the entry's own fields (`at` names the entry in messages); the key it gives.
    fn into_key(self, at: &str) -> Result<Self::Key>;
}

/// The keys of a file, by the SHA-256 of each.
pub struct KeyFile<E: Entry>(HashMap<[u8; 32], (String, E::Key)>);

impl<E: Entry> KeyFile<E> {
    /// Reads the keys file; every problem is named with the entry it is in.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::user(format!(
                "cannot read the {} {}: {e}",
                E::FILE,
                path.display()
            ))
        })?;
        Self::parse(&text).map_err(|e| e.context(path.display()))
    }

    /// Reads the keys from a Secrets Manager secret holding the same YAML (or JSON).
    pub async fn from_secret(secret_id: &str) -> Result<Self> {
        let text = crate::aws::secret_string(secret_id).await?;
        Self::parse(&text).map_err(|e| e.context(format!("secret `{secret_id}`")))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let entries: Vec<E> = serde_yaml::from_str(text).map_err(|e| {
            Error::user(format!(
                "{e}; a {} is a list of {}, e.g. `{}`",
                E::FILE,
                E::SHAPE,
                E::EXAMPLE
            ))
        })?;
        if entries.is_empty() {
            return Err(Error::user(format!(
                "the {} has no key: nobody could {}; add an entry {}",
                E::FILE,
                E::USE,
                E::SHAPE
            )));
        }
        let mut keys = HashMap::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let at = format!("entry {} ({})", i + 1, entry.name());
            let digest = hex_digest(entry.sha256()).ok_or_else(|| {
                Error::user(format!(
                    "{at}: sha256 must be 64 hex digits (the SHA-256 of the key: printf %s \"$KEY\" | sha256sum), not `{}`",
                    entry.sha256()
                ))
            })?;
            let name = entry.name().to_string();
            let key = entry.into_key(&at)?;
            if let Some((earlier, _)) = keys.insert(digest, (name, key)) {
                return Err(Error::user(format!("{at}: the same key as `{earlier}`")));
            }
        }
        Ok(Self(keys))
    }

    /// No key at all: for a front end that authenticates by itself (the console's query
    /// box runs on `serve`'s engine with the console's own keys).
    pub fn none() -> Self {
        Self(HashMap::new())
    }

    /// The key whose SHA-256 is that of `presented`, if there is one.
    pub fn find(&self, presented: &str) -> Option<&E::Key> {
        self.0
            .get(&<[u8; 32]>::from(Sha256::digest(presented.as_bytes())))
            .map(|(_, key)| key)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What an `Authorization` header presents.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials {
    Bearer(String),
    Basic { user: String, password: String },
}

/// Basic credentials are base64 with or without its `=` padding: clients differ (ADBC's Go
/// driver sends it unpadded).
const BASIC: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// The credentials of an `Authorization` value (`Bearer TOKEN` or `Basic base64(USER:PASSWORD)`,
/// schemes in any case), or nothing for another scheme or a value that does not decode.
pub fn credentials(authorization: &str) -> Option<Credentials> {
    use base64::Engine as _;
    let (scheme, value) = authorization.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Credentials::Bearer(value.trim().to_string()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let text = String::from_utf8(BASIC.decode(value.trim()).ok()?).ok()?;
    let (user, password) = text.split_once(':').unwrap_or((text.as_str(), ""));
    Some(Credentials::Basic {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// What a keys file holds for `key`: its SHA-256 as 64 hex digits.
pub fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The 32 bytes of a SHA-256 written as 64 hex digits.
fn hex_digest(text: &str) -> Option<[u8; 32]> {
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
mod credential_tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn basic_credentials_decode_with_and_without_padding() {
        // Every length of user and password, so that each padding case occurs.
        for user in ["", "a", "ab", "apikey", "user-ü"] {
            for password in [
                "",
                "k",
                "ke",
                "0123456789abcdef0123456789abcdef0123456789abcdef",
            ] {
                let padded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                let unpadded = padded.trim_end_matches('=').to_string();
                let expected = Some(Credentials::Basic {
                    user: user.to_string(),
                    password: password.to_string(),
                });
                assert_eq!(credentials(&format!("Basic {padded}")), expected);
                assert_eq!(credentials(&format!("basic {unpadded}")), expected);
            }
        }
        assert_eq!(
            credentials("Bearer tok"),
            Some(Credentials::Bearer("tok".into()))
        );
        assert_eq!(credentials("Token tok"), None);
        assert_eq!(credentials("Basic !!!"), None);
    }
}
