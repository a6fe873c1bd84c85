//! The set of record keys a run checks against: the keys committed within the window and
//! the run's own, in bounded memory.
//!
//! A key is 128 bits (of a SHA-256). A Bloom filter of 10 bits a key (about 1 % false
//! positives) answers most lookups from memory; every key is also appended to one of the
//! hash-partitioned bucket files on local disk, and a key the filter may hold is looked up
//! exactly in its bucket, loaded into a cache of a few buckets. So memory is the filter
//! (1.25 bytes a key: 12.5 MB for 10 million), the buckets' append buffers and the cache
//! (`CACHE_BYTES`), whatever the number of keys.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Bits of the Bloom filter per key.
const BITS_PER_KEY: u64 = 10;
/// Hash functions of the Bloom filter.
const HASHES: u64 = 7;
/// Keys a bucket buffers before it is appended to its file.
const BUFFERED: usize = 256;
/// Bytes of loaded buckets kept at once.
const CACHE_BYTES: usize = 32 << 20;
/// Keys a bucket holds, about, at the size the index is made for.
const BUCKET_KEYS: u64 = 32_768;

/// A set of 128-bit keys, mostly on disk.
pub struct KeySet {
    dir: PathBuf,
    bloom: Vec<u64>,
    bits: u64,
    buckets: usize,
    pending: Vec<Vec<u128>>,
    cache: HashMap<usize, HashSet<u128>>,
    order: VecDeque<usize>,
    cached_keys: usize,
    len: u64,
}

impl KeySet {
    /// An empty set made for about `expected` keys, its buckets in `dir` (which it owns).
    pub fn new(dir: PathBuf, expected: u64) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| local(&dir, &e))?;
        let expected = expected.max(1 << 16);
        let words = (expected * BITS_PER_KEY).div_ceil(64);
        let buckets = (expected / BUCKET_KEYS).clamp(16, 4096).next_power_of_two() as usize;
        Ok(Self {
            dir,
            bloom: vec![0; words as usize],
            bits: words * 64,
            buckets,
            pending: vec![Vec::new(); buckets],
            cache: HashMap::new(),
            order: VecDeque::new(),
            cached_keys: 0,
            len: 0,
        })
    }

    /// Keys added so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Adds `key` unless the set holds it; returns whether it was new.
    pub fn insert(&mut self, key: u128) -> Result<bool> {
        if self.may_hold(key) && self.bucket(key)?.contains(&key) {
            return Ok(false);
        }
        self.add(key)?;
        Ok(true)
    }

    /// Adds a key known not to be in the set yet (or whose repeat does not matter: the
    /// committed runs' keys, which are distinct within a run).
    pub fn add(&mut self, key: u128) -> Result<()> {
        for bit in self.probes(key) {
            self.bloom[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        let b = self.bucket_of(key);
        if let Some(set) = self.cache.get_mut(&b) {
            set.insert(key);
            self.cached_keys += 1;
        }
        self.pending[b].push(key);
        if self.pending[b].len() >= BUFFERED {
            self.flush(b)?;
        }
        self.len += 1;
        Ok(())
    }

    fn may_hold(&self, key: u128) -> bool {
        self.probes(key)
            .all(|bit| self.bloom[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// The filter's bit positions of a key (double hashing over its two halves).
    fn probes(&self, key: u128) -> impl Iterator<Item = u64> + use<> {
        let (h1, h2) = (key as u64, (key >> 64) as u64 | 1);
        let bits = self.bits;
        (0..HASHES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
    }

    fn bucket_of(&self, key: u128) -> usize {
        // The top bits: the filter takes the low ones.
        (key >> 116) as usize % self.buckets
    }

    fn path(&self, b: usize) -> PathBuf {
        self.dir.join(format!("{b:04x}.keys"))
    }

    fn flush(&mut self, b: usize) -> Result<()> {
        if self.pending[b].is_empty() {
            return Ok(());
        }
        let path = self.path(b);
        let mut bytes = Vec::with_capacity(self.pending[b].len() * 16);
        for key in self.pending[b].drain(..) {
            bytes.extend_from_slice(&key.to_le_bytes());
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&bytes))
            .map_err(|e| local(&path, &e))
    }

    /// Bucket `key` falls in, loaded (and its pending keys with it).
    fn bucket(&mut self, key: u128) -> Result<&HashSet<u128>> {
        let b = self.bucket_of(key);
        if !self.cache.contains_key(&b) {
            self.flush(b)?;
            let path = self.path(b);
            let mut bytes = Vec::new();
            match std::fs::File::open(&path) {
                Ok(mut f) => {
                    f.read_to_end(&mut bytes).map_err(|e| local(&path, &e))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(local(&path, &e)),
            }
            let set: HashSet<u128> = bytes
                .chunks_exact(16)
                .map(|c| u128::from_le_bytes(c.try_into().unwrap_or([0; 16])))
                .collect();
            self.cached_keys += set.len();
            self.cache.insert(b, set);
            self.order.push_back(b);
            // Keep the newest bucket even when it alone passes the cache's size.
            while self.cached_keys * 32 > CACHE_BYTES && self.order.len() > 1 {
                if let Some(old) = self.order.pop_front()
                    && let Some(set) = self.cache.remove(&old)
                {
                    self.cached_keys -= set.len();
                }
            }
        }
        self.cache
            .get(&b)
            .ok_or_else(|| Error::internal("a key bucket that was just loaded"))
    }

    /// Bytes of memory the set holds (the filter, the buffers, the cache), about.
    pub fn memory(&self) -> usize {
        self.bloom.len() * 8
            + self
                .pending
                .iter()
                .map(|p| p.capacity() * 16)
                .sum::<usize>()
            + self.cached_keys * 32
    }
}

impl Drop for KeySet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn local(path: &Path, e: &std::io::Error) -> Error {
    Error::external(format!("the record-key index at {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "sluice-keyset-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ))
    }

    proptest! {
        /// The set answers as a HashSet does, whatever the filter and the cache do.
        #[test]
        fn answers_as_a_hash_set(keys in proptest::collection::vec(0u128..5000, 0..3000)) {
            // A tiny index: most keys collide in the filter, buckets are evicted.
            let mut set = KeySet::new(dir("model"), 1).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut model = HashSet::new();
            for k in keys {
                let k = k.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
                let new = set.insert(k).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(new, model.insert(k));
            }
            prop_assert_eq!(set.len(), model.len() as u64);
        }
    }

    #[test]
    fn a_million_keys_take_little_memory() -> Result<()> {
        let mut set = KeySet::new(dir("million"), 1_000_000)?;
        let key = |i: u128| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        for i in 0..1_000_000u128 {
            set.add(key(i))?;
        }
        let mut again = 0;
        for i in (0..1_000_000u128).step_by(1000) {
            again += u64::from(!set.insert(key(i))?);
        }
        assert_eq!(again, 1000);
        assert!(set.insert(key(2_000_000))?);
        assert!(
            set.memory() < CACHE_BYTES + (4 << 20),
            "{} bytes",
            set.memory()
        );
        Ok(())
    }
}
