//! The `messageId`s the collector has accepted within the deduplication window, so that
//! a client's retry (after a lost answer, a timeout, a 503 on another event of its batch)
//! lands once. Kept as 64-bit keys of (source, messageId) with their receive time; the
//! oldest are forgotten past the window, or past `capacity` keys (about 40 bytes each):
//! the window is the shorter of the two. Rebuilt from the spool when the collector
//! starts (the loaded segments are kept for the window for that).

use std::collections::{HashMap, VecDeque};

pub struct Seen {
    /// Key → receive time (Unix seconds) of its latest acceptance.
    keys: HashMap<u64, i64>,
    /// (receive time, key) in acceptance order, for forgetting the oldest.
    order: VecDeque<(i64, u64)>,
    window: i64,
    capacity: usize,
}

impl Seen {
    pub fn new(window: std::time::Duration, capacity: usize) -> Self {
        Self {
            keys: HashMap::new(),
            order: VecDeque::new(),
            window: i64::try_from(window.as_secs()).unwrap_or(i64::MAX),
            capacity: capacity.max(1),
        }
    }

    /// Whether `key` was accepted within the window before `now`.
    pub fn contains(&self, key: u64, now: i64) -> bool {
        self.keys
            .get(&key)
            .is_some_and(|&at| now.saturating_sub(at) < self.window)
    }

    /// Remembers `key` as accepted at `at`, and forgets what fell out of the window or
    /// past the capacity.
    pub fn insert(&mut self, key: u64, at: i64) {
        self.keys.insert(key, at);
        self.order.push_back((at, key));
        while let Some(&(oldest, key)) = self.order.front() {
            if self.order.len() <= self.capacity && at.saturating_sub(oldest) < self.window {
                break;
            }
            self.order.pop_front();
            // A key accepted again later keeps its later time.
            if self.keys.get(&key) == Some(&oldest) {
                self.keys.remove(&key);
            }
        }
    }

    /// How many keys are remembered.
    pub fn remembered(&self) -> usize {
        self.keys.len()
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
        assert!(!seen.contains(1, 100), "the window has passed");
        seen.insert(2, 10);
        seen.insert(3, 20);
        seen.insert(4, 30);
        assert!(!seen.contains(1, 30), "past the capacity, the oldest goes");
        assert!(seen.contains(2, 30) && seen.contains(4, 30));
        seen.insert(5, 150);
        assert!(!seen.contains(2, 150) && !seen.contains(3, 150));
        assert!(seen.contains(5, 150));
        assert!(seen.remembered() <= 3);
    }
}
