//! The `messageId`s the collector has accepted within the deduplication window, so that
//! a client's retry (after a lost answer, a timeout, a 503 on another event of its batch)
//! lands once. Kept as 64-bit keys of (source, messageId), in a set and in minute buckets
//! by receive time (about 20 bytes a key); the oldest are forgotten past the window (to
//! the minute: a key is remembered at least the window, at most a minute longer), or past
//! `capacity` keys: the window is the shorter of the two. Rebuilt from the spool when the
//! collector starts (the loaded segments are kept for the window for that).

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Seconds of receive time one bucket holds.
const BUCKET_SECONDS: i64 = 60;

/// The keys accepted in a minute, in order.
struct Bucket {
    /// Its first second.
    first: i64,
    keys: Vec<u64>,
    /// How many of its first keys were forgotten for the capacity.
    forgotten: usize,
}

impl Bucket {
    fn remembered(&self) -> &[u64] {
        &self.keys[self.forgotten..]
    }
}

pub struct Seen {
    keys: HashSet<u64, BuildHasherDefault<KeyHasher>>,
    /// The buckets, oldest first.
    buckets: VecDeque<Bucket>,
    window: i64,
    capacity: usize,
}

impl Seen {
    pub fn new(window: std::time::Duration, capacity: usize) -> Self {
        Self {
            keys: HashSet::default(),
            buckets: VecDeque::new(),
            window: i64::try_from(window.as_secs()).unwrap_or(i64::MAX),
            capacity: capacity.max(1),
        }
    }

    /// Whether `key` was accepted within the window before `now`.
    pub fn contains(&mut self, key: u64, now: i64) -> bool {
        self.expire(now);
        self.keys.contains(&key)
    }

    /// Remembers `key` as accepted at `at` (a key not remembered now), and forgets what
    /// fell out of the window or past the capacity.
    pub fn insert(&mut self, key: u64, at: i64) {
        self.expire(at);
        if !self.keys.insert(key) {
            return;
        }
        match self.buckets.back_mut() {
            Some(bucket) if at < bucket.first + BUCKET_SECONDS => bucket.keys.push(key),
            _ => self.buckets.push_back(Bucket {
                first: at,
                keys: vec![key],
                forgotten: 0,
            }),
        }
        while self.keys.len() > self.capacity {
            let Some(oldest) = self.buckets.front_mut() else {
                break;
            };
            match oldest.remembered().first() {
                Some(&key) => {
                    self.keys.remove(&key);
                    oldest.forgotten += 1;
                }
                None => {
                    self.buckets.pop_front();
                }
            }
        }
    }

    /// Forgets the buckets whose every key is older than the window at `now`.
    fn expire(&mut self, now: i64) {
        while let Some(oldest) = self.buckets.front() {
            if now.saturating_sub(oldest.first.saturating_add(BUCKET_SECONDS)) < self.window {
                break;
            }
            for key in oldest.remembered() {
                self.keys.remove(key);
            }
            self.buckets.pop_front();
        }
    }

    /// How many keys are remembered.
    pub fn remembered(&self) -> usize {
        self.keys.len()
    }
}

/// The keys are SipHash values already: the set takes them as their own hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keys_are_forgotten_past_the_window_or_the_capacity() {
        let mut seen = Seen::new(Duration::from_secs(100), 3);
        seen.insert(1, 0);
        assert!(seen.contains(1, 99));
        assert!(
            seen.contains(1, 159),
            "kept to the end of its minute's bucket"
        );
        assert!(!seen.contains(1, 160), "the window has passed");
        seen.insert(2, 200);
        seen.insert(3, 210);
        seen.insert(4, 220);
        seen.insert(5, 230);
        assert!(!seen.contains(2, 230), "past the capacity, the oldest goes");
        assert!(seen.contains(3, 230) && seen.contains(5, 230));
        assert_eq!(seen.remembered(), 3);
        seen.insert(6, 400);
        assert!(!seen.contains(3, 400) && !seen.contains(5, 400));
        assert!(seen.contains(6, 400));
        assert_eq!(seen.remembered(), 1);
    }

    #[test]
    fn a_million_keys_take_about_twenty_bytes_each() {
        let mut seen = Seen::new(Duration::from_secs(86_400), 1_000_000);
        for i in 0..1_000_000u64 {
            seen.insert(
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                1_000 + (i / 10_000) as i64,
            );
        }
        let bytes = seen.keys.capacity() * 9
            + seen
                .buckets
                .iter()
                .map(|b| b.keys.capacity() * 8)
                .sum::<usize>();
        assert!(bytes < 30 << 20, "{bytes} bytes");
    }
}
