//! PostgreSQL through sqlx: column discovery from the prepared statement plus
//! `pg_attribute` (for NUMERIC precision and scale), and the PostgreSQL type mapping.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow, PgValueFormat};
use sqlx::{Column, Postgres, Row, TypeInfo, ValueRef};

use super::batch::{ColumnBuilder, DialectRow, Misfit, ReadError};
use super::cursor::{CursorValue, Window};
use super::pg_binary;
use super::pg_copy;
use super::pg_split;
use super::sql::{
    Dialect, Plan, SqlSource, Syntax, connect as connect_with, describe, extract_loop,
    rows_extract, spawn_stream,
};
use super::types::{LakeType, Read, SourceColumn};
use crate::error::{Error, Result, classify_sqlx};
use crate::job::Relation;
use datafusion::arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;

extract_loop!(Postgres);

/// A window bound as a literal (COPY takes no parameters); only called for values that
/// have one.
fn literal(_: usize, value: &CursorValue) -> String {
    pg_copy::literal(value).unwrap_or_default()
}

pub async fn connect(url: &str, plan: Plan) -> Result<SqlSource<Postgres>> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| Error::user(format!("invalid postgres url: {e}")))?
        .application_name("sluice");
    connect_with(options, plan, "PostgreSQL").await
}

impl Dialect for Postgres {
    const SYNTAX: Syntax = Syntax {
        quote: '"',
        numbered_params: true,
        text_type: "TEXT",
    };

    /// `COPY … (FORMAT binary)` when every bound of the window has a literal form, in
    /// parts on one snapshot for a large table ([`pg_split`]); the row path (bound
    /// parameters) for a text cursor.
    fn extract(
        conn: PgConnection,
        options: PgConnectOptions,
        plan: &Plan,
        columns: Vec<SourceColumn>,
        window: &Window,
    ) -> BoxStream<'static, Result<RecordBatch>> {
        let literals = [&window.lo, &window.hi]
            .into_iter()
            .flatten()
            .all(|v| pg_copy::literal(v).is_some());
        if !literals {
            return rows_extract::<Self>(conn, plan, columns, window);
        }
        let (plan, window, selected) = (plan.clone(), window.clone(), columns.clone());
        spawn_stream(plan.batch(1), columns, move |builder, tx| async move {
            let mut conn = conn;
            let table = Self::SYNTAX.from(&plan.from);
            let parts = pg_split::parts(&mut conn, &plan, &table).await?;
            if parts <= 1 {
                let (select, _) =
                    Self::SYNTAX.window_with(&plan, &selected, &window, &literal, None);
                let copy = format!("COPY ({select}) TO STDOUT (FORMAT binary)");
                tracing::debug!(sql = %copy, "extract");
                return pg_copy::stream(conn, copy, builder, tx).await;
            }
            let (p, c) = (plan.clone(), selected.clone());
            let part_select = Box::new(move |condition: &str| {
                Self::SYNTAX
                    .window_with(&p, &c, &window, &literal, Some(condition))
                    .0
            });
            let split = pg_split::SplitRead {
                options,
                plan,
                columns: selected,
                parts,
                select: part_select,
            };
            pg_split::read(conn, split, builder, tx).await
        })
    }

    async fn constraints(conn: &mut PgConnection, plan: &Plan) -> Result<Vec<super::Constraint>> {
        if matches!(plan.from, Relation::Query(_)) {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, bool, i64)> = sqlx::query_as(
            "SELECT a.attname::text, a.attnotnull, \
                    COALESCE(array_position(i.indkey::int2[], a.attnum) - array_lower(i.indkey::int2[], 1) + 1, 0)::int8 \
             FROM pg_attribute a \
             LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
             WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
        )
        .bind(Self::SYNTAX.from(&plan.from))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify_sqlx(e, "reading the table's constraints"))?;
        Ok(rows.into_iter().map(super::Constraint::from_row).collect())
    }

    async fn columns(conn: &mut PgConnection, plan: &Plan) -> Result<Vec<SourceColumn>> {
        let columns = describe::<Self>(conn, plan).await?;
        let mut out = Vec::new();
        for column in columns {
            let type_name = column.type_info().name().to_string();
            let numeric = match (
                type_name.as_str(),
                column.relation_id(),
                column.relation_attribute_no(),
            ) {
                ("NUMERIC", Some(table), Some(attnum)) => {
                    let typmod: i32 = sqlx::query_scalar(
                        "SELECT atttypmod FROM pg_attribute WHERE attrelid = $1 AND attnum = $2",
                    )
                    .bind(table)
                    .bind(attnum)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| classify_sqlx(e, "reading NUMERIC precision"))?;
                    numeric_typmod(typmod)
                }
                _ => None,
            };
            out.push(map_type(column.name(), &type_name, numeric));
        }
        Ok(out)
    }
}

/// NUMERIC(p, s) is stored as typmod `((p << 16) | s) + 4`; -1 means unconstrained.
fn numeric_typmod(typmod: i32) -> Option<(u32, i32)> {
    (typmod >= 4).then(|| {
        let t = typmod - 4;
        (((t >> 16) & 0xffff) as u32, t & 0xffff)
    })
}

/// The PostgreSQL type mapping. Types not listed are read as text.
fn map_type(name: &str, type_name: &str, numeric: Option<(u32, i32)>) -> SourceColumn {
    let typed = |read, lake| SourceColumn::new(name, type_name, read, lake, false);
    match type_name {
        "BOOL" => typed(Read::Bool, LakeType::Boolean),
        "INT2" => typed(Read::I16, LakeType::Int16),
        "INT4" => typed(Read::I32, LakeType::Int32),
        "INT8" => typed(Read::I64, LakeType::Int64),
        "FLOAT4" => typed(Read::F32, LakeType::Float32),
        "FLOAT8" => typed(Read::F64, LakeType::Float64),
        "NUMERIC" => match numeric.map(|(p, s)| LakeType::decimal(p, s)) {
            Some(lake @ LakeType::Decimal { .. }) => typed(Read::Decimal, lake),
            _ => SourceColumn::text(name, type_name),
        },
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => typed(Read::Text, LakeType::String),
        "BYTEA" => typed(Read::Bytes, LakeType::Binary),
        "DATE" => typed(Read::Date, LakeType::Date),
        "TIMESTAMP" => typed(Read::DateTime, LakeType::Timestamp),
        "TIMESTAMPTZ" => typed(Read::DateTimeUtc, LakeType::TimestampUtc),
        // TIME, JSON, JSONB, UUID, INTERVAL, INET, MONEY, arrays, enums, …
        _ => SourceColumn::text(name, type_name),
    }
}

impl DialectRow for PgRow {
    /// Every value is read raw, in PostgreSQL's binary format (what sqlx asks the server
    /// for), and decoded by [`pg_binary`].
    fn read(
        &self,
        i: usize,
        read: Read,
        b: &mut ColumnBuilder,
    ) -> std::result::Result<(), ReadError> {
        let value = self.try_get_raw(i)?;
        if value.is_null() {
            b.null();
            return Ok(());
        }
        if value.format() != PgValueFormat::Binary {
            return Err(Misfit("PostgreSQL sent a value as text, not binary".into()).into());
        }
        let bytes = value.as_bytes().map_err(|e| Misfit(e.to_string()))?;
        Ok(pg_binary::append(bytes, read, b)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typmod_decoding() {
        assert_eq!(numeric_typmod(-1), None);
        assert_eq!(numeric_typmod(((12 << 16) | 2) + 4), Some((12, 2)));
    }

    #[test]
    fn numeric_wider_than_38_is_text() {
        let c = map_type("n", "NUMERIC", Some((50, 2)));
        assert_eq!(c.lake, LakeType::String);
        assert!(c.as_text);
        let c = map_type("n", "NUMERIC", None);
        assert_eq!(c.lake, LakeType::String);
        let c = map_type("n", "NUMERIC", Some((38, 10)));
        assert_eq!(
            c.lake,
            LakeType::Decimal {
                precision: 38,
                scale: 10
            }
        );
    }
}
