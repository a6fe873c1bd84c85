//! The one type mapping: source type → how it is read → lake type (Arrow, Parquet,
//! Athena). Each dialect's `match` from its own type names lives in its module and ends
//! in one of these [`LakeType`]s; everything downstream derives from it.
//!
//! | lake type        | Arrow / Parquet                        | Athena          |
//! |------------------|----------------------------------------|-----------------|
//! | Boolean          | Boolean / BOOLEAN                      | boolean         |
//! | Int8 … Int64     | Int8…Int64 / INT32, INT64 (int logical) | tinyint…bigint  |
//! | Float32, Float64 | Float32, Float64 / FLOAT, DOUBLE       | float, double   |
//! | Decimal(p, s)    | Decimal128(p, s) / DECIMAL(p, s)       | decimal(p,s)    |
//! | String           | Utf8 / BYTE_ARRAY (STRING)             | string          |
//! | Binary           | Binary / BYTE_ARRAY                    | binary          |
//! | Date             | Date32 / INT32 (DATE)                  | date            |
//! | Timestamp        | Timestamp(µs) / INT64 (TIMESTAMP µs)    | timestamp       |
//! | TimestampUtc     | Timestamp(µs, UTC) / INT64 (µs, UTC)    | timestamp       |
//!
//! Nothing is lossy by default: unsigned integers widen to the next signed width
//! (BIGINT UNSIGNED → decimal(20,0)); NUMERIC keeps precision and scale up to 38 digits
//! and becomes a string beyond that or when unconstrained; timestamps keep microseconds
//! (never nanoseconds, never INT96); TIME, JSON, UUID, enums, intervals, network types
//! and anything else become strings as the database prints them.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};

pub use crate::lake_type::{LakeType, athena_name};

/// How a value arrives from the driver, which decides the Rust type it is decoded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F32,
    F64,
    /// An exact decimal number.
    Decimal,
    /// Text; also every type the select list casts to text.
    Text,
    Bytes,
    Date,
    DateTime,
    DateTimeUtc,
}

/// One column of an extract.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceColumn {
    /// The name in the source, as the database spells it.
    pub name: String,
    /// The name in the lake: lower case.
    pub lake_name: String,
    /// The source's type name, for messages and `schema infer`.
    pub source_type: String,
    pub read: Read,
    pub lake: LakeType,
    /// Whether the select list must cast the column to text (TIME, JSON, UUID, enums…).
    pub as_text: bool,
    /// Read as text because the database says nothing of its type (a query's computed
    /// column): the run summary names it, so that `target.schema` can pin it.
    pub typeless: bool,
}

impl SourceColumn {
    pub fn new(name: &str, source_type: &str, read: Read, lake: LakeType, as_text: bool) -> Self {
        Self {
            name: name.to_string(),
            lake_name: athena_name(name),
            source_type: source_type.to_string(),
            read,
            lake,
            as_text,
            typeless: false,
        }
    }

    /// This column, marked as read as text for want of a type from the database.
    pub fn without_type(self) -> Self {
        Self {
            typeless: true,
            ..self
        }
    }

    /// A column cast to text by the select list and kept as a string.
    pub fn text(name: &str, source_type: &str) -> Self {
        Self::new(name, source_type, Read::Text, LakeType::String, true)
    }
}

/// The precision and scale of a declared `DECIMAL(p, s)` (`NUMERIC(p)`: scale 0), in any
/// case, with anything after the parenthesis (`unsigned`); `None` without them.
pub fn decimal_args(declared: &str) -> Option<(u32, i32)> {
    let (_, rest) = declared.split_once('(')?;
    let (args, _) = rest.split_once(')')?;
    let mut parts = args.split(',').map(|p| p.trim().parse::<i64>());
    let precision = u32::try_from(parts.next()?.ok()?).ok()?;
    let scale = match parts.next() {
        Some(s) => i32::try_from(s.ok()?).ok()?,
        None => 0,
    };
    Some((precision, scale))
}

/// The Arrow schema of an extract: lake names and types, every column nullable (a source
/// NOT NULL constraint is not a promise the lake can keep across schema changes).
pub fn arrow_schema(columns: &[SourceColumn]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.lake_name, c.lake.arrow(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Lake names are Athena names: two source columns that differ only in case (or in
/// characters Athena does not take) would clash.
pub fn check_name_clashes(columns: &[SourceColumn]) -> Result<(), String> {
    let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    let mut clashes = Vec::new();
    for c in columns {
        if let Some(other) = seen.insert(&c.lake_name, &c.name) {
            clashes.push(format!(
                "`{other}` and `{}` both become `{}`",
                c.name, c.lake_name
            ));
        }
    }
    if clashes.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "column names clash in the lake, where names are lower case with `_` for other characters: {}; rename them with `query:` or `transform:`",
            clashes.join(", ")
        ))
    }
}
