//! The set of record keys a run checks against: the keys committed within the window and
//! the run's own, in bounded memory.
//!
//! A key is 128 bits (keyed SipHash-1-3). A blocked Bloom filter (16 bits a key, each key's
//! bits in one 64-byte block: one cache line a lookup; about 0.1 % false positives)
//! answers most lookups from memory, and doubles (rebuilt from the keys on disk) when the
//! keys outgrow it. Every key is also appended to one of 4,096 buckets (by its top bits),
//! spilled in chunks to one local file (written a MiB at a time); a key the filter may
//! hold is looked up exactly in its bucket, read into a cache of `CACHE_KEYS` keys. So
//! memory is the filter (2 bytes a key: 20 MB for 10 million), the buckets' small append
//! buffers (8 MB at most) and the spill's write buffer (1 MiB), the chunks' index (0.125
//! bytes a key) and the cache (about 32 MB at most), whatever the number of keys.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Bits of the Bloom filter per key it is sized for.
const BITS_PER_KEY: u64 = 16;
/// Bits set per key.
const HASHES: u64 = 11;
/// Buckets (a power of two: the key's top bits choose).
const BUCKETS: usize = 4096;
/// Keys a bucket buffers before they are spilled.
const BUFFERED: usize = 128;
/// Keys of loaded buckets kept at once (about 32 bytes each in a set).
const CACHE_KEYS: usize = 1 << 20;
/// Bytes of spilled chunks gathered before they are written.
const SPILL_WRITE: usize = 1 << 20;

/// A set of 128-bit keys, mostly on disk.
pub struct KeySet {
    dir: PathBuf,
    spill: File,
    /// Bytes written to the spill file; the chunks past them are in `unwritten`.
    written: u64,
    unwritten: Vec<u8>,
    /// Per bucket: its chunks in the spill (offset, keys).
    chunks: Vec<Vec<(u64, u32)>>,
    pending: Vec<Vec<u128>>,
    bloom: Vec<[u64; 8]>,
    /// Per bucket: its keys, when loaded.
    cache: Vec<Option<HashSet<u128>>>,
    order: VecDeque<usize>,
    cached_keys: usize,
    len: u64,
}

impl KeySet {
    /// An empty set made for about `expected` keys (it grows past them), its files in
    /// `dir` (which it owns and removes).
    pub fn new(dir: PathBuf, expected: u64) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| local(&dir, &e))?;
        let path = dir.join("keys.spill");
        let spill = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| local(&path, &e))?;
        Ok(Self {
            dir,
            spill,
            written: 0,
            unwritten: Vec::new(),
            chunks: vec![Vec::new(); BUCKETS],
            pending: vec![Vec::new(); BUCKETS],
            bloom: vec![[0; 8]; blocks_for(expected)],
            cache: vec![None; BUCKETS],
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

    /// Adds a key known not to be in the set (the committed runs' keys, distinct within
    /// a run; a repeat across runs only costs its room).
    pub fn add(&mut self, key: u128) -> Result<()> {
        if self.len >= self.bloom.len() as u64 * 512 / BITS_PER_KEY {
            self.grow()?;
        }
        self.mark(key);
        let b = bucket_of(key);
        if let Some(set) = self.cache[b].as_mut() {
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

    /// The block and the bits of a key: the block from its low half, the bits by double
    /// hashing over both halves.
    fn probes(&self, key: u128) -> (usize, impl Iterator<Item = u32> + use<>) {
        let (low, high) = (key as u64, (key >> 64) as u64);
        let block = (low % self.bloom.len() as u64) as usize;
        let step = low.rotate_left(32) | 1;
        let bits = (0..HASHES).map(move |i| (high.wrapping_add(i.wrapping_mul(step)) >> 55) as u32);
        (block, bits)
    }

    fn mark(&mut self, key: u128) {
        let (block, bits) = self.probes(key);
        let words = &mut self.bloom[block];
        for bit in bits {
            words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    fn may_hold(&self, key: u128) -> bool {
        let (block, mut bits) = self.probes(key);
        let words = &self.bloom[block];
        bits.all(|bit| words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// Doubles the filter, marking every key again (read back from the buckets).
    fn grow(&mut self) -> Result<()> {
        self.bloom = vec![[0; 8]; self.bloom.len() * 2];
        for b in 0..BUCKETS {
            for key in self.read_bucket(b)? {
                self.mark(key);
            }
        }
        Ok(())
    }

    /// Moves bucket `b`'s pending keys to a chunk of the spill.
    fn flush(&mut self, b: usize) -> Result<()> {
        if self.pending[b].is_empty() {
            return Ok(());
        }
        let offset = self.written + self.unwritten.len() as u64;
        self.chunks[b].push((offset, self.pending[b].len() as u32));
        for key in self.pending[b].drain(..) {
            self.unwritten.extend_from_slice(&key.to_le_bytes());
        }
        if self.unwritten.len() >= SPILL_WRITE {
            self.spill
                .write_all_at(&self.unwritten, self.written)
                .map_err(|e| local(&self.dir, &e))?;
            self.written += self.unwritten.len() as u64;
            self.unwritten.clear();
        }
        Ok(())
    }

    /// Every key of bucket `b`: its chunks and its pending keys.
    fn read_bucket(&self, b: usize) -> Result<Vec<u128>> {
        let total: u32 = self.chunks[b].iter().map(|c| c.1).sum();
        let mut keys = Vec::with_capacity(total as usize + self.pending[b].len());
        let mut read = Vec::new();
        for &(offset, count) in &self.chunks[b] {
            let len = count as usize * 16;
            let bytes = match offset.checked_sub(self.written) {
                Some(at) => self
                    .unwritten
                    .get(at as usize..at as usize + len)
                    .ok_or_else(|| Error::internal("a key chunk past the spill's buffer"))?,
                None => {
                    read.resize(len, 0);
                    self.spill
                        .read_exact_at(&mut read, offset)
                        .map_err(|e| local(&self.dir, &e))?;
                    &read[..]
                }
            };
            keys.extend(
                bytes
                    .chunks_exact(16)
                    .map(|c| u128::from_le_bytes(c.try_into().unwrap_or([0; 16]))),
            );
        }
        keys.extend_from_slice(&self.pending[b]);
        Ok(keys)
    }

    /// The bucket `key` falls in, loaded.
    fn bucket(&mut self, key: u128) -> Result<&HashSet<u128>> {
        let b = bucket_of(key);
        if self.cache[b].is_none() {
            let set: HashSet<u128> = self.read_bucket(b)?.into_iter().collect();
            self.cached_keys += set.len();
            self.cache[b] = Some(set);
            self.order.push_back(b);
            // Keep the newest bucket even when it alone passes the cache's size.
            while self.cached_keys > CACHE_KEYS && self.order.len() > 1 {
                if let Some(old) = self.order.pop_front()
                    && let Some(set) = self.cache[old].take()
                {
                    self.cached_keys -= set.len();
                }
            }
        }
        self.cache[b]
            .as_ref()
            .ok_or_else(|| Error::internal("a key bucket that was just loaded"))
    }

    /// Bytes of memory the set holds (the filter, the buffers, the chunks' index, the
    /// cache), about.
    pub fn memory(&self) -> usize {
        self.bloom.len() * 64
            + self
                .pending
                .iter()
                .map(|p| p.capacity() * 16)
                .sum::<usize>()
            + self.unwritten.capacity()
            + self.chunks.iter().map(|c| c.capacity() * 16).sum::<usize>()
            + self.cached_keys * 32
    }
}

impl Drop for KeySet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Blocks of 512 bits for `keys` keys, at least 1,024 (64 KB).
fn blocks_for(keys: u64) -> usize {
    (keys * BITS_PER_KEY).div_ceil(512).max(1024) as usize
}

fn bucket_of(key: u128) -> usize {
    (key >> 116) as usize % BUCKETS
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

    fn spread(i: u128) -> u128 {
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
    }

    proptest! {
        /// The set answers as a HashSet does, whatever the filter, its growth and the
        /// cache do.
        #[test]
        fn answers_as_a_hash_set(keys in proptest::collection::vec(0u128..20_000, 0..12_000)) {
            let mut set = KeySet::new(dir("model"), 1).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut model = HashSet::new();
            for k in keys {
                let new = set.insert(spread(k)).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(new, model.insert(spread(k)));
            }
            prop_assert_eq!(set.len(), model.len() as u64);
        }
    }

    #[test]
    fn two_million_keys_take_little_memory_past_the_size_it_was_made_for() -> Result<()> {
        let mut set = KeySet::new(dir("million"), 100_000)?;
        for i in 0..2_000_000u128 {
            set.add(spread(i))?;
        }
        let mut again = 0;
        for i in (0..2_000_000u128).step_by(1000) {
            again += u64::from(!set.insert(spread(i))?);
        }
        assert_eq!(again, 2000);
        let mut fresh = 0;
        for i in 2_000_000..2_100_000u128 {
            fresh += u64::from(set.insert(spread(i))?);
        }
        assert_eq!(fresh, 100_000);
        assert!(set.memory() < 48 << 20, "{} bytes", set.memory());
        Ok(())
    }
}
