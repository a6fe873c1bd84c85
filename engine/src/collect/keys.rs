//! The collector's write keys: a YAML list of `{name, sha256, rate_per_second}` — the key
//! itself is never stored, only its SHA-256 (`printf %s "$KEY" | sha256sum`); `name` names
//! the source the events come from (the `source` column), and `rate_per_second` (optional)
//! bounds its events per second. A key comes as the user of `Authorization: Basic …`
//! (Segment's libraries send `base64(KEY:)`), as a bearer token, or as `X-Write-Key`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::serve::keys::hex_digest;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    sha256: String,
    #[serde(default)]
    rate_per_second: Option<f64>,
}

/// A source allowed to send, and its rate.
#[derive(Debug)]
pub struct WriteKey {
    pub name: String,
    /// Events per second (`None`: the server's default).
    rate: Option<f64>,
    bucket: Mutex<Bucket>,
}

/// A token bucket of events: it holds a second's worth (a burst) and refills at the rate.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl WriteKey {
    /// Takes `events` from the key's rate; when it has not that many, how many seconds
    /// until it has (for `Retry-After`).
    pub fn take(&self, events: usize, default_rate: Option<f64>) -> std::result::Result<(), u64> {
        let Some(rate) = self.rate.or(default_rate).filter(|r| *r > 0.0) else {
            return Ok(());
        };
        let mut bucket = self
            .bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let burst = rate.max(events as f64);
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate)
            .min(burst.max(rate));
        bucket.at = now;
        let wanted = events as f64;
        if bucket.tokens >= wanted {
            bucket.tokens -= wanted;
            return Ok(());
        }
        let wait = ((wanted - bucket.tokens) / rate).ceil();
        Err((wait as u64).max(1))
    }
}

/// The write keys, by the SHA-256 of each.
#[derive(Debug, Default)]
pub struct WriteKeys(HashMap<[u8; 32], WriteKey>);

impl WriteKeys {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::user(format!(
                "cannot read the write keys file {}: {e}",
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
        let entries: Vec<Entry> = serde_yaml::from_str(text).map_err(|e| {
            Error::user(format!(
                "{e}; a write keys file is a list of {{name, sha256, rate_per_second}}, e.g. `- {{name: web, sha256: <64 hex digits>}}`"
            ))
        })?;
        if entries.is_empty() {
            return Err(Error::user(
                "the write keys file has no key: nobody could send; add an entry {name, sha256}",
            ));
        }
        let mut keys = HashMap::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let at = format!("entry {} ({})", i + 1, entry.name);
            if !crate::job::is_identifier(&entry.name) {
                return Err(Error::user(format!(
                    "{at}: name must be a source name (letters, digits and _, starting with a letter)"
                )));
            }
            let digest = hex_digest(&entry.sha256).ok_or_else(|| {
                Error::user(format!(
                    "{at}: sha256 must be 64 hex digits (the SHA-256 of the key: printf %s \"$KEY\" | sha256sum), not `{}`",
                    entry.sha256
                ))
            })?;
            if entry
                .rate_per_second
                .is_some_and(|r| r.is_nan() || r <= 0.0)
            {
                return Err(Error::user(format!(
                    "{at}: rate_per_second must be a positive number of events"
                )));
            }
            let key = WriteKey {
                name: entry.name,
                rate: entry.rate_per_second,
                // Full: the first take caps it at the burst.
                bucket: Mutex::new(Bucket {
                    tokens: f64::INFINITY,
                    at: Instant::now(),
                }),
            };
            if let Some(earlier) = keys.insert(digest, key) {
                return Err(Error::user(format!(
                    "{at}: the same key as `{}`",
                    earlier.name
                )));
            }
        }
        Ok(Self(keys))
    }

    /// The key a request presents in `Authorization` or `X-Write-Key`, if it is one of
    /// these.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        write_key: Option<&str>,
    ) -> Option<&WriteKey> {
        let presented = presented(authorization, write_key)?;
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

/// The key a request presents: the user of Basic auth (Segment's way), a bearer token,
/// else `X-Write-Key`.
fn presented(authorization: Option<&str>, write_key: Option<&str>) -> Option<String> {
    let Some(authorization) = authorization else {
        return Some(write_key?.trim().to_string()).filter(|k| !k.is_empty());
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
    let user = text.split_once(':').map_or(text.as_str(), |(user, _)| user);
    Some(user.to_string()).filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::keys::sha256_hex as sha;

    #[test]
    fn a_key_comes_as_basic_user_bearer_or_header() -> Result<()> {
        let keys = WriteKeys::parse(&format!(
            "- {{name: web, sha256: {}}}\n- {{name: ios, sha256: {}, rate_per_second: 2}}",
            sha("wk1"),
            sha("wk2")
        ))?;
        let basic = base64::engine::general_purpose::STANDARD.encode("wk1:");
        let web = keys.authenticate(Some(&format!("Basic {basic}")), None);
        assert_eq!(web.map(|k| k.name.as_str()), Some("web"));
        let ios = keys.authenticate(None, Some("wk2"));
        assert_eq!(ios.map(|k| k.name.as_str()), Some("ios"));
        assert!(keys.authenticate(Some("Bearer wk1"), None).is_some());
        assert!(keys.authenticate(None, Some("nope")).is_none());
        assert!(keys.authenticate(None, None).is_none());
        assert!(keys.authenticate(None, Some("")).is_none());
        Ok(())
    }

    #[test]
    fn a_rate_refuses_past_its_burst_and_says_when_to_come_back() -> Result<()> {
        let keys = WriteKeys::parse(&format!(
            "- {{name: ios, sha256: {}, rate_per_second: 2}}",
            sha("k")
        ))?;
        let key = keys
            .authenticate(None, Some("k"))
            .ok_or_else(|| Error::internal("no key"))?;
        assert_eq!(key.take(2, None), Ok(()));
        assert_eq!(key.take(1, None), Err(1));
        assert!(key.take(10, None).is_err_and(|wait| wait >= 4));
        Ok(())
    }

    #[test]
    fn a_broken_entry_says_what_is_valid() {
        let message = |text: &str| WriteKeys::parse(text).err().map(|e| e.message);
        assert!(message("[]").is_some_and(|m| m.contains("no key")));
        assert!(message("- {name: web, sha256: abc}").is_some_and(|m| m.contains("64 hex")));
        assert!(
            message(&format!("- {{name: 'a b', sha256: {}}}", sha("k")))
                .is_some_and(|m| m.contains("source name"))
        );
        assert!(
            message(&format!(
                "- {{name: a, sha256: {}, rate_per_second: 0}}",
                sha("k")
            ))
            .is_some_and(|m| m.contains("positive"))
        );
    }
}
