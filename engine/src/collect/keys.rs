//! The collector's write keys: a YAML list of `{name, sha256, rate_per_second}` — the key
//! itself is never stored, only its SHA-256 (`printf %s "$KEY" | sha256sum`); `name` names
//! the source the events come from (the `source` column), and `rate_per_second` (optional)
//! bounds its events per second. A key comes as the user of `Authorization: Basic …`
//! (Segment's libraries send `base64(KEY:)`), as a bearer token, or as `X-Write-Key`.

use std::sync::Mutex;
use std::time::Instant;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::keyfile::KeyFile;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
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

impl crate::keyfile::Entry for Entry {
    type Key = WriteKey;
    const FILE: &'static str = "write keys file";
    const SHAPE: &'static str = "{name, sha256, rate_per_second}";
    const EXAMPLE: &'static str = "- {name: web, sha256: <64 hex digits>}";
    const USE: &'static str = "send";

    fn name(&self) -> &str {
        &self.name
    }

    fn sha256(&self) -> &str {
        &self.sha256
    }

    fn into_key(self, at: &str) -> Result<WriteKey> {
        if !crate::job::is_identifier(&self.name) {
            return Err(Error::user(format!(
                "{at}: name must be a source name (letters, digits and _, starting with a letter)"
            )));
        }
        if self.rate_per_second.is_some_and(|r| r.is_nan() || r <= 0.0) {
            return Err(Error::user(format!(
                "{at}: rate_per_second must be a positive number of events"
            )));
        }
        Ok(WriteKey {
            name: self.name,
            rate: self.rate_per_second,
            // Full: the first take caps it at the burst.
            bucket: Mutex::new(Bucket {
                tokens: f64::INFINITY,
                at: Instant::now(),
            }),
        })
    }
}

/// The write keys, by the SHA-256 of each.
pub type WriteKeys = KeyFile<Entry>;

impl KeyFile<Entry> {
    /// The key a request presents in `Authorization` or `X-Write-Key`, if it is one of
    /// these.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        write_key: Option<&str>,
    ) -> Option<&WriteKey> {
        self.find(&presented(authorization, write_key)?)
    }
}

/// The key a request presents: the user of Basic auth (Segment's way), a bearer token,
/// else `X-Write-Key`.
fn presented(authorization: Option<&str>, write_key: Option<&str>) -> Option<String> {
    let Some(authorization) = authorization else {
        return Some(write_key?.trim().to_string()).filter(|k| !k.is_empty());
    };
    let key = match crate::keyfile::credentials(authorization)? {
        crate::keyfile::Credentials::Bearer(token) => token,
        crate::keyfile::Credentials::Basic { user, .. } => user,
    };
    Some(key).filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyfile::sha256_hex as sha;
    use base64::Engine as _;

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
