//! The run's memory budget: how `--memory-limit` is shared out, so that the process's
//! peak RSS stays within it.
//!
//! The limit `L` covers the whole process. [`PROCESS`] is what the process holds whatever
//! it reads (code, the async runtime, connections, the allocator's slack). Of the rest,
//! `U = L − PROCESS`, the writer's open files take `F = U/8`, and never less than
//! [`MIN_OPEN_FILES`] files: each its upload buffer and parts in flight and, per column,
//! an encoder with its codec contexts ([`open_file`]). What remains, `R = U − F`, goes:
//! - a quarter to the transform's DataFusion pool (sorts, aggregates and joins spill or
//!   fail beyond it);
//! - an eighth to the writer's row groups being built, counted by the Parquet writer's own
//!   estimate of its memory (the largest is flushed beyond the share), and an eighth left
//!   for what that estimate leaves out (dictionary hash tables, a row group's buffers while
//!   it is compressed and written: measured on 20M rows in 40K-row day files, a quarter
//!   counted this way peaked at 262 MiB under 256MiB, an eighth at 255);
//! - a half to the batches in flight between the extract and the writer, shared by every
//!   batch that can be in flight at once ([`Batches::per_batch`]); each batch is bounded
//!   by its bytes as well as its rows.
//!
//! A limit that leaves the batches too little is refused before anything is read
//! ([`MemoryBudget::new`]), saying what the job needs.

use crate::error::{Error, Result};

/// Files open at once, at most. Each holds an upload buffer and, per column, parquet-rs
/// codec contexts (zstd: the largest part of the heap at peak, measured with massif).
/// Interleaved A/B on the 2M-row day-partitioned bench: 16 and 32 run at the same speed,
/// 16 peaks ~15 MiB lower; 32 splits fewer files when rows arrive out of partition order.
pub const MAX_OPEN_FILES: usize = 32;
/// Parts of a file's upload in flight at once, besides the one being buffered.
pub const UPLOADS_IN_FLIGHT: usize = 2;
/// What the writer may hold (its shares of the run's memory budget): bytes of row groups
/// being built, by the Parquet writer's estimate of its memory (the largest is flushed
/// beyond it), and open files (the least recently written is closed beyond it: an open
/// file costs its upload buffer plus encoder state and codec contexts that its row group
/// does not count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterBudget {
    pub row_groups: usize,
    pub open_files: usize,
}

impl WriterBudget {
    /// A quarter of this budget (for a second writer beside the first: the quarantine's).
    pub fn quarter(&self) -> Self {
        Self {
            row_groups: self.row_groups / 4,
            open_files: (self.open_files / 4).max(2),
        }
    }
}

/// What the process holds whatever it reads: the peak RSS of a release build running a
/// one-row job with a transform (measured: 72–74 MiB, of which 63 MiB are the binary's
/// own pages — its code, mapped 64 KiB around each page first run — and 30 MiB of those
/// are touched by DataFusion's session and planner alone), with room for the allocator.
pub const PROCESS: u64 = 76 << 20;
/// Files a writer may keep open at least: a read in two parts writes a partition per part
/// and a third when one part crosses into the next (with fewer, day-partitioned files are
/// closed and opened again at every crossing: measured, twice the files).
pub const MIN_OPEN_FILES: usize = 3;
/// What a column costs in an open Parquet file besides its data: the encoder's state and
/// two ZSTD contexts (parquet-rs makes a compressor and a decompressor per column; measured
/// with massif on a 40-column file: 96 KiB for the one, 110 KiB for the other).
const PER_COLUMN: u64 = 256 << 10;
/// Bytes a batch should have at least: below this, per-batch costs dominate. A budget is
/// refused unless it gives this much to each batch of a read in [`PARTS`] parts.
const MIN_BATCH: usize = 256 << 10;
/// Parts of a default split read, at most (one per core, up to four).
const PARTS: usize = 4;
/// Batches in flight besides the producers': the extract's channel (2), the transform's
/// input and output, the writer's channel (2), and the batch being written with its
/// rows split out by partition.
const FIXED_IN_FLIGHT: usize = 8;

/// An open file's memory besides its row group: its upload buffer and the parts in
/// flight (`upload_part` bytes each), and its columns' encoders.
pub fn open_file(columns: usize, upload_part: usize) -> u64 {
    ((1 + UPLOADS_IN_FLIGHT) * upload_part) as u64 + columns as u64 * PER_COLUMN
}

/// How one run's `--memory-limit` is shared out.
#[derive(Debug, Clone, Copy)]
pub struct MemoryBudget {
    limit: u64,
    /// What one open file costs besides its row group.
    file: u64,
}

impl MemoryBudget {
    /// The budget of a run writing files of `columns` columns to a lake that uploads in
    /// parts of `upload_part` bytes. Fails (the user's error) when the limit leaves its
    /// batches less than the least a read needs.
    pub fn new(limit: u64, columns: usize, upload_part: usize) -> Result<Self> {
        let budget = Self {
            limit,
            file: open_file(columns, upload_part),
        };
        let least = (MIN_BATCH * (2 * PARTS + FIXED_IN_FLIGHT)) as u64;
        if (budget.batches().bytes as u64) < least {
            // The batches get half of what the files leave: with the least files,
            // (U − 2·file)/2 ≥ least; with U/8 of files, 7U/16 ≥ least.
            let files = MIN_OPEN_FILES as u64 * budget.file;
            let need = PROCESS + (files + 2 * least).max((16 * least).div_ceil(7));
            return Err(Error::user(format!(
                "--memory-limit {} is too small for this job: the process takes about {}, {} open files of {columns} columns {}, and the transform's pool, the row groups being written and the batches in flight need at least {} more; give at least {}",
                mib(limit),
                mib(PROCESS),
                MIN_OPEN_FILES,
                mib(files),
                mib(need - PROCESS - files),
                mib(need.div_ceil(8 << 20) * (8 << 20)),
            )));
        }
        Ok(budget)
    }

    fn usable(&self) -> u64 {
        self.limit.saturating_sub(PROCESS)
    }

    /// What the files leave.
    fn rest(&self) -> u64 {
        self.usable().saturating_sub(self.files())
    }

    /// The transform's DataFusion pool.
    pub fn pool(&self) -> u64 {
        self.rest() / 4
    }

    /// What the writer may hold: row groups, and as many open files as its share pays for.
    pub fn writer(&self) -> WriterBudget {
        WriterBudget {
            row_groups: usize::try_from(self.rest() / 8).unwrap_or(usize::MAX),
            open_files: usize::try_from(self.files() / self.file)
                .unwrap_or(MAX_OPEN_FILES)
                .min(MAX_OPEN_FILES),
        }
    }

    /// What the writer's open files may hold together.
    fn files(&self) -> u64 {
        (self.usable() / 8).max(MIN_OPEN_FILES as u64 * self.file)
    }

    /// What the batches in flight may hold together.
    pub fn batches(&self) -> Batches {
        Batches {
            bytes: usize::try_from(self.rest() / 2).unwrap_or(usize::MAX),
        }
    }
}

/// What the batches in flight between the extract and the writer may hold together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batches {
    bytes: usize,
}

impl Batches {
    /// No bound (a test's or a one-off read's).
    pub fn unbounded() -> Self {
        Self { bytes: usize::MAX }
    }

    /// The bytes one batch may hold when `producers` tasks fill batches at once: each
    /// has one being filled and one waiting to be sent, besides the fixed ones.
    pub fn per_batch(&self, producers: usize) -> usize {
        (self.bytes / (2 * producers.max(1) + FIXED_IN_FLIGHT)).max(1)
    }
}

fn mib(bytes: u64) -> String {
    format!("{}MiB", bytes.div_ceil(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the limit and shape, the shares add up to no more than the limit, with
    /// four parts reading at once.
    #[test]
    fn the_shares_fit_the_limit() {
        for limit in [64u64 << 20, 96 << 20, 128 << 20, 256 << 20, 1 << 30] {
            for columns in [1, 12, 40, 120] {
                for part in [1 << 20, 5 << 20] {
                    let Ok(budget) = MemoryBudget::new(limit, columns, part) else {
                        continue;
                    };
                    let batches = budget.batches();
                    let in_flight = (2 * 4 + FIXED_IN_FLIGHT) * batches.per_batch(4);
                    let writer = budget.writer();
                    assert!(writer.open_files >= MIN_OPEN_FILES);
                    let files = writer.open_files as u64 * open_file(columns, part);
                    let total = PROCESS
                        + budget.pool()
                        + writer.row_groups as u64
                        + files
                        + in_flight as u64;
                    assert!(total <= limit, "{limit} {columns} {part}: {total}");
                }
            }
        }
    }

    #[test]
    fn the_default_and_128mib_take_every_bench_shape() {
        for columns in [12, 40] {
            assert!(MemoryBudget::new(256 << 20, columns, 5 << 20).is_ok());
            assert!(MemoryBudget::new(128 << 20, columns, 1 << 20).is_ok());
        }
        assert!(MemoryBudget::new(64 << 20, 12, 1 << 20).is_err());
    }

    #[test]
    fn a_limit_too_small_is_refused_with_what_it_needs() {
        let e = MemoryBudget::new(96 << 20, 200, 5 << 20)
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|m| m.contains("give at least")),
            "{e:?}"
        );
        // What it says is enough is enough.
        let at_least = e
            .as_deref()
            .and_then(|m| m.rsplit("give at least ").next())
            .and_then(|m| m.trim_end_matches("MiB").parse::<u64>().ok());
        assert!(
            at_least.is_some_and(|n| MemoryBudget::new(n << 20, 200, 5 << 20).is_ok()),
            "{e:?}"
        );
    }
}
