//! A loaded file's identity: its path, size, modification time and the SHA-256 of its
//! bytes, kept as a key of the loading run's manifest (`<hash> <size> <time> <path>`,
//! `bad:` first for a file recorded in the quarantine table instead).

use super::store::Entry;

/// A loaded file's identity, as a committed run's manifest keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub hash: String,
    pub size: u64,
    pub modified: i64,
    pub path: String,
    /// Recorded in the quarantine table, not loaded: never moved or deleted.
    pub bad: bool,
}

impl Loaded {
    pub fn key(&self) -> String {
        format!(
            "{}{} {} {} {}",
            if self.bad { "bad:" } else { "" },
            self.hash,
            self.size,
            self.modified,
            self.path
        )
    }

    pub fn parse(key: &str) -> Option<Loaded> {
        let (bad, key) = match key.strip_prefix("bad:") {
            Some(rest) => (true, rest),
            None => (false, key),
        };
        let mut parts = key.splitn(4, ' ');
        Some(Loaded {
            hash: parts.next()?.to_string(),
            size: parts.next()?.parse().ok()?,
            modified: parts.next()?.parse().ok()?,
            path: parts.next()?.to_string(),
            bad,
        })
    }

    /// The identity of `entry` as read: its hash and byte count.
    pub fn of(entry: &Entry, (hash, size): (String, u64), bad: bool) -> Loaded {
        Loaded {
            hash,
            size,
            modified: entry.modified,
            path: entry.path.clone(),
            bad,
        }
    }

    pub fn same_listing(&self, entry: &Entry) -> bool {
        self.size == entry.size && self.modified == entry.modified
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_manifest_keys() {
        let file = Loaded {
            hash: "ab".repeat(32),
            size: 120,
            modified: 1_714_564_800,
            path: "incoming/bank 05.json".into(),
            bad: false,
        };
        assert_eq!(Loaded::parse(&file.key()), Some(file.clone()));
        let bad = Loaded { bad: true, ..file };
        assert_eq!(Loaded::parse(&bad.key()), Some(bad.clone()));
        assert_eq!(Loaded::parse("3f2a-message-id"), None);
        let nested = Loaded {
            path: "relevés/2026/11/août 01.json.gz".into(),
            ..bad
        };
        assert_eq!(Loaded::parse(&nested.key()), Some(nested));
    }
}
