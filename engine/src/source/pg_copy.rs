//! The PostgreSQL bulk path: `COPY (SELECT …) TO STDOUT (FORMAT binary)`, parsed from
//! the byte stream straight into Arrow builders.
//!
//! Why: the row path costs one protocol message, one `PgRow` and a lookup per value for
//! every row; COPY streams tuples back to back, which roughly halves the client's CPU per
//! row. COPY takes no bind parameters, so it is used when the window's bounds are
//! integers, dates or timestamps, rendered as literals from their typed values (nothing a
//! user typed is spliced); a text cursor keeps the row path and its bound parameters.
//!
//! Format (PostgreSQL docs, "Binary Format" of COPY): an 11-byte signature, a 32-bit
//! flags field and a 32-bit header-extension length (and that many bytes); then per
//! tuple a 16-bit field count (-1 ends the data) and per field a 32-bit length (-1 for
//! NULL) followed by that many bytes in the type's binary send format.

use futures::TryStreamExt;
use sqlx::postgres::PgConnection;

use super::batch::{BatchBuilder, ColumnBuilder, DialectRow, Misfit, ReadError};
use super::cursor::CursorValue;
use super::pg_binary;
use super::types::Read;
use crate::error::{Error, Result, classify_sqlx};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// A window bound as a PostgreSQL literal, or `None` for text (which must stay a bound
/// parameter).
pub fn literal(value: &CursorValue) -> Option<String> {
    match value {
        CursorValue::Int(v) => Some(v.to_string()),
        CursorValue::Date(d) => Some(format!("DATE '{}'", d.format("%Y-%m-%d"))),
        CursorValue::Timestamp(t) => {
            Some(format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S%.6f")))
        }
        CursorValue::TimestampUtc(t) => Some(format!(
            "TIMESTAMPTZ '{}+00'",
            t.format("%Y-%m-%d %H:%M:%S%.6f")
        )),
        CursorValue::Text(_) => None,
    }
}

/// Runs `copy` (a `COPY … TO STDOUT (FORMAT binary)` statement) and sends its rows as
/// batches.
pub async fn stream(
    mut conn: PgConnection,
    copy: String,
    mut builder: BatchBuilder,
    tx: tokio::sync::mpsc::Sender<Result<datafusion::arrow::record_batch::RecordBatch>>,
) -> Result<()> {
    let mut chunks = conn
        .copy_out_raw(&copy)
        .await
        .map_err(|e| classify_sqlx(e, "starting COPY on the source"))?;
    let mut reader = CopyReader::default();
    while let Some(chunk) = chunks
        .try_next()
        .await
        .map_err(|e| classify_sqlx(e, "reading rows from the source"))?
    {
        reader.buf.extend_from_slice(&chunk);
        loop {
            reader.decode(&mut builder)?;
            if !builder.is_full() {
                break;
            }
            if tx.send(Ok(builder.finish()?)).await.is_err() {
                return Ok(());
            }
        }
    }
    if !reader.done {
        return Err(Error::external("the COPY stream ended before its trailer"));
    }
    if builder.rows() > 0 {
        let _ = tx.send(Ok(builder.finish()?)).await;
    }
    Ok(())
}

/// Parses tuples out of the bytes received so far.
#[derive(Default)]
struct CopyReader {
    buf: Vec<u8>,
    started: bool,
    done: bool,
    /// Field offsets of the tuple being decoded, reused across tuples.
    fields: Vec<Option<(usize, usize)>>,
}

impl CopyReader {
    /// Decodes every complete tuple in the buffer into `builder`, stopping early when
    /// the batch is full; keeps an incomplete tail for the next chunk.
    fn decode(&mut self, builder: &mut BatchBuilder) -> Result<()> {
        let mut pos = 0;
        if !self.started {
            if self.buf.len() < 19 {
                return Ok(());
            }
            if &self.buf[..11] != SIGNATURE {
                return Err(Error::external(
                    "the source sent a COPY stream without the binary signature",
                ));
            }
            let extension = be_u32(&self.buf[15..19]) as usize;
            if self.buf.len() < 19 + extension {
                return Ok(());
            }
            pos = 19 + extension;
            self.started = true;
        }
        while !self.done && !builder.is_full() {
            let Some(end) = self.scan_tuple(pos)? else {
                break;
            };
            if end == pos + 2 && self.fields.is_empty() {
                self.done = true;
                pos = end;
                break;
            }
            builder.append(&CopyRow {
                data: &self.buf,
                fields: &self.fields,
            })?;
            pos = end;
        }
        self.buf.drain(..pos);
        Ok(())
    }

    /// Finds the tuple at `pos`: its field offsets into `self.fields` and its end, or
    /// `None` when it is not all here yet. The trailer (-1) gives no fields.
    fn scan_tuple(&mut self, pos: usize) -> Result<Option<usize>> {
        self.fields.clear();
        let Some(count) = self.buf.get(pos..pos + 2) else {
            return Ok(None);
        };
        let count = i16::from_be_bytes([count[0], count[1]]);
        if count == -1 {
            return Ok(Some(pos + 2));
        }
        let mut at = pos + 2;
        for _ in 0..count.max(0) {
            let Some(len) = self.buf.get(at..at + 4) else {
                return Ok(None);
            };
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            at += 4;
            if len < 0 {
                self.fields.push(None);
                continue;
            }
            let end = at + len as usize;
            if end > self.buf.len() {
                return Ok(None);
            }
            self.fields.push(Some((at, end)));
            at = end;
        }
        Ok(Some(at))
    }
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// One tuple of the COPY stream, read like a row.
struct CopyRow<'a> {
    data: &'a [u8],
    fields: &'a [Option<(usize, usize)>],
}

impl DialectRow for CopyRow<'_> {
    fn read(
        &self,
        i: usize,
        read: Read,
        b: &mut ColumnBuilder,
    ) -> std::result::Result<(), ReadError> {
        match self.fields.get(i) {
            Some(Some((start, end))) => Ok(pg_binary::append(&self.data[*start..*end], read, b)?),
            Some(None) => {
                b.null();
                Ok(())
            }
            None => Err(Misfit(format!(
                "the COPY tuple has {} fields, fewer than the columns",
                self.fields.len()
            ))
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::types::{LakeType, SourceColumn, arrow_schema};
    use datafusion::arrow::array::{AsArray, Int32Array};
    use datafusion::arrow::datatypes::Int32Type;

    /// A batch builder for one INT4 column `n`.
    fn int_builder(capacity: usize) -> BatchBuilder {
        let columns = vec![SourceColumn::new(
            "n",
            "INT4",
            Read::I32,
            LakeType::Int32,
            false,
        )];
        BatchBuilder::new(
            arrow_schema(&columns),
            columns,
            crate::source::BatchSize::rows(capacity),
        )
    }

    fn stream_bytes(rows: &[Option<i32>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend(0u32.to_be_bytes());
        out.extend(0u32.to_be_bytes());
        for r in rows {
            out.extend(1i16.to_be_bytes());
            match r {
                Some(v) => {
                    out.extend(4i32.to_be_bytes());
                    out.extend(v.to_be_bytes());
                }
                None => out.extend((-1i32).to_be_bytes()),
            }
        }
        out.extend((-1i16).to_be_bytes());
        out
    }

    /// Tuples split across chunks at every possible byte decode the same.
    #[test]
    fn tuples_survive_any_chunking() -> Result<()> {
        let rows = [Some(1), None, Some(-7), Some(i32::MAX)];
        let bytes = stream_bytes(&rows);
        for chunk in 1..bytes.len() {
            let mut builder = int_builder(1024);
            let mut reader = CopyReader::default();
            for piece in bytes.chunks(chunk) {
                reader.buf.extend_from_slice(piece);
                reader.decode(&mut builder)?;
            }
            assert!(reader.done, "chunk {chunk}");
            let batch = builder.finish()?;
            let got = batch.column(0).as_primitive::<Int32Type>().clone();
            assert_eq!(got, Int32Array::from(rows.to_vec()), "chunk {chunk}");
        }
        Ok(())
    }

    #[test]
    fn a_foreign_stream_is_refused() {
        let mut builder = int_builder(8);
        let mut reader = CopyReader {
            buf: b"1\t2\n3\t4\n...........".to_vec(),
            ..Default::default()
        };
        assert!(reader.decode(&mut builder).is_err());
    }
}
