//! The result formats of `/v1/query`, chosen by `format=` or the `Accept` header: JSON
//! (rows as objects, or columns), NDJSON, CSV, Arrow IPC stream, Parquet.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"columns": [{name, type}], "rows": [{…}], "next": …}`
    Json,
    /// `{"columns": [{name, type}], "data": {"col": […]}, "next": …}`
    Columns,
    Ndjson,
    Csv,
    Arrow,
    Parquet,
}

const CHOICES: [(&str, &str, Format); 6] = [
    ("json", "application/json", Format::Json),
    (
        "columns",
        "application/vnd.sluice.columns+json",
        Format::Columns,
    ),
    ("ndjson", "application/x-ndjson", Format::Ndjson),
    ("csv", "text/csv", Format::Csv),
    (
        "arrow",
        "application/vnd.apache.arrow.stream",
        Format::Arrow,
    ),
    ("parquet", "application/vnd.apache.parquet", Format::Parquet),
];

impl Format {
    /// `format=` wins over `Accept`; neither is JSON. An unknown one is the caller's
    /// error, with the ones there are.
    pub fn choose(given: Option<&str>, accept: Option<&str>) -> std::result::Result<Self, String> {
        if let Some(name) = given {
            return CHOICES
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, _, f)| *f)
                .ok_or_else(|| format!("format `{name}` is not one of {}", names()));
        }
        let Some(accept) = accept else {
            return Ok(Format::Json);
        };
        for wanted in accept.split(',') {
            let media = wanted.split(';').next().unwrap_or_default().trim();
            if media == "*/*" || media == "application/*" {
                return Ok(Format::Json);
            }
            if let Some((_, _, f)) = CHOICES.iter().find(|(_, m, _)| *m == media) {
                return Ok(*f);
            }
        }
        Err(format!(
            "Accept `{accept}` names none of {}",
            CHOICES
                .iter()
                .map(|(_, m, _)| *m)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    pub fn media_type(self) -> &'static str {
        CHOICES
            .iter()
            .find(|(_, _, f)| *f == self)
            .map(|(_, m, _)| *m)
            .unwrap_or("application/json")
    }
}

fn names() -> String {
    CHOICES
        .iter()
        .map(|(n, _, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The page in `format`; `next` is the continuation token (JSON formats carry it in the
/// body; every format also gets it as a header).
pub fn encode(
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    next: Option<&str>,
) -> Result<Vec<u8>> {
    let failed = |e: &dyn std::fmt::Display| Error::internal(format!("encoding the result: {e}"));
    let mut out = Vec::new();
    match format {
        Format::Json | Format::Columns => {
            let columns: Vec<serde_json::Value> = schema
                .fields()
                .iter()
                .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect();
            let rows = json_rows(batches)?;
            let body = if format == Format::Json {
                serde_json::json!({"columns": columns, "rows": rows, "next": next})
            } else {
                let mut data = serde_json::Map::new();
                for field in schema.fields() {
                    let values: Vec<serde_json::Value> = rows
                        .iter()
                        .map(|r| r.get(field.name()).cloned().unwrap_or_default())
                        .collect();
                    data.insert(field.name().clone(), values.into());
                }
                serde_json::json!({"columns": columns, "data": data, "next": next})
            };
            serde_json::to_writer(&mut out, &body).map_err(|e| failed(&e))?;
        }
        Format::Ndjson => {
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
            for batch in batches {
                writer.write(batch).map_err(|e| failed(&e))?;
            }
            writer.finish().map_err(|e| failed(&e))?;
        }
        Format::Csv if batches.is_empty() => {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            out.extend_from_slice(names.join(",").as_bytes());
            out.push(b'\n');
        }
        Format::Csv => {
            let mut writer = datafusion::arrow::csv::Writer::new(&mut out);
            for batch in batches {
                writer.write(batch).map_err(|e| failed(&e))?;
            }
        }
        Format::Arrow => {
            let mut writer =
                datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)
                    .map_err(|e| failed(&e))?;
            for batch in batches {
                writer.write(batch).map_err(|e| failed(&e))?;
            }
            writer.finish().map_err(|e| failed(&e))?;
        }
        Format::Parquet => {
            let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, schema.clone(), None)
                .map_err(|e| failed(&e))?;
            for batch in batches {
                writer.write(batch).map_err(|e| failed(&e))?;
            }
            writer.close().map_err(|e| failed(&e))?;
        }
    }
    Ok(out)
}

/// The rows as JSON objects (arrow's JSON encoding: NULLs kept as null).
pub fn json_rows(
    batches: &[RecordBatch],
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let mut buffer = Vec::new();
    {
        let mut writer = datafusion::arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, datafusion::arrow::json::writer::JsonArray>(&mut buffer);
        for batch in batches {
            writer
                .write(batch)
                .map_err(|e| Error::internal(format!("encoding the result: {e}")))?;
        }
        writer
            .finish()
            .map_err(|e| Error::internal(format!("encoding the result: {e}")))?;
    }
    if buffer.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buffer)
        .map_err(|e| Error::internal(format!("encoding the result: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_then_accept_then_json() {
        assert_eq!(
            Format::choose(Some("csv"), Some("application/json")),
            Ok(Format::Csv)
        );
        assert_eq!(
            Format::choose(None, Some("application/vnd.apache.arrow.stream, */*;q=0.1")),
            Ok(Format::Arrow)
        );
        assert_eq!(Format::choose(None, None), Ok(Format::Json));
        assert_eq!(Format::choose(None, Some("*/*")), Ok(Format::Json));
        assert!(Format::choose(Some("xml"), None).is_err_and(|e| e.contains("csv")));
        assert!(Format::choose(None, Some("text/html")).is_err_and(|e| e.contains("text/csv")));
    }
}
