//! SQLite through sqlx, opened read-only. SQLite types are declared, not enforced, so the
//! mapping follows SQLite's own affinity rules on the declared type (`PRAGMA table_info`
//! for a table; for a query, the declared type of the table column each result column
//! names, through joins and subqueries, as a view over the query reports it), and a
//! stored value that does not fit its declared type is an error naming the column.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Column, Row, Sqlite, TypeInfo};

use super::batch::{ColumnBuilder, DialectRow, Misfit, ReadError, read_common};
use super::sql::{
    Dialect, Plan, SqlSource, Syntax, connect as connect_with, describe, extract_loop,
};
use super::types::{LakeType, Read, SourceColumn, decimal_args};
use crate::error::{Error, Result, classify_sqlx};
use crate::job::Relation;

extract_loop!(Sqlite);

/// Opens the database file read-only; a relative path is taken from `base_dir` (the
/// folder of the connections file).
pub async fn connect(url: &str, base_dir: Option<&Path>, plan: Plan) -> Result<SqlSource<Sqlite>> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let file = match base_dir {
        Some(base) if Path::new(path).is_relative() => base.join(path),
        _ => Path::new(path).to_path_buf(),
    };
    if !file.exists() {
        return Err(Error::user(format!(
            "SQLite database {} does not exist",
            file.display()
        )));
    }
    let url = if query.is_empty() {
        format!("sqlite://{}", file.display())
    } else {
        format!("sqlite://{}?{query}", file.display())
    };
    let options = SqliteConnectOptions::from_str(&url)
        .map_err(|e| Error::user(format!("invalid sqlite url: {e}")))?
        .read_only(true);
    connect_with(options, plan, "SQLite").await
}

impl Dialect for Sqlite {
    const SYNTAX: Syntax = Syntax {
        quote: '"',
        numbered_params: false,
        text_type: "TEXT",
    };

    async fn constraints(
        conn: &mut SqliteConnection,
        plan: &Plan,
    ) -> Result<Vec<super::Constraint>> {
        let Relation::Table { schema, name } = &plan.from else {
            return Ok(Vec::new());
        };
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT name, \"notnull\", pk FROM pragma_table_info(?1, COALESCE(?2, 'main'))",
        )
        .bind(name)
        .bind(schema)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify_sqlx(e, "reading the table's constraints"))?;
        Ok(rows
            .into_iter()
            .map(|(c, n, k)| super::Constraint::from_row((c, n != 0, k)))
            .collect())
    }

    async fn columns(conn: &mut SqliteConnection, plan: &Plan) -> Result<Vec<SourceColumn>> {
        if let Relation::Table { schema, name } = &plan.from {
            let declared: Vec<(String, String)> = sqlx::query_as(
                "SELECT name, type FROM pragma_table_info(?1, COALESCE(?2, 'main'))",
            )
            .bind(name)
            .bind(schema)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| classify_sqlx(e, "reading the table's columns"))?;
            if !declared.is_empty() {
                return Ok(declared.iter().map(|(n, t)| map_type(n, t)).collect());
            }
        }
        let columns = describe::<Self>(conn, plan).await?;
        if columns.is_empty() {
            return Err(Error::user(
                "the source has no columns (does the table exist?)",
            ));
        }
        let declared = match &plan.from {
            Relation::Query(query) => query_types(conn, query).await,
            Relation::Table { .. } => Vec::new(),
        };
        Ok(columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let described = c.type_info().name();
                match declared.get(i).map(String::as_str) {
                    // A column declared with no type: the view says BLOB (its affinity,
                    // in newer SQLite) or nothing, and the statement knows no type.
                    Some("BLOB") if described == "NULL" => map_type(c.name(), ""),
                    Some("") | None if described == "NULL" || described == "BLOB" => {
                        map_type(c.name(), "")
                    }
                    Some("") | None => map_type(c.name(), described),
                    Some(declared) => map_type(c.name(), declared),
                }
            })
            .collect())
    }
}

/// The declared types of a query's result columns, in order: SQLite gives a view's column
/// the declared type of the table column it names (DECIMAL(8,2), DATETIME, …) and none to
/// a computed one. The view is temporary (the database stays read-only) and dropped
/// again; if it cannot be made, the prepared statement's types stand.
async fn query_types(conn: &mut SqliteConnection, query: &str) -> Vec<String> {
    const VIEW: &str = "sluice_describe";
    let query = query.trim().trim_end_matches(';');
    let created = sqlx::query(&format!("CREATE TEMP VIEW {VIEW} AS {query}"))
        .execute(&mut *conn)
        .await;
    if let Err(e) = created {
        tracing::debug!(error = %e, "no view over the query: its columns keep the statement's types");
        return Vec::new();
    }
    let types = sqlx::query_scalar("SELECT type FROM pragma_table_info(?1, 'temp')")
        .bind(VIEW)
        .fetch_all(&mut *conn)
        .await;
    if let Err(e) = sqlx::query(&format!("DROP VIEW temp.{VIEW}"))
        .execute(&mut *conn)
        .await
    {
        tracing::debug!(error = %e, "could not drop the temporary view (it ends with the connection)");
    }
    types.unwrap_or_default()
}

/// SQLite's affinity rules (https://sqlite.org/datatype3.html §3.1) refined by the names
/// people declare: BOOLEAN, DATE, DATETIME/TIMESTAMP, DECIMAL(p, s).
fn map_type(name: &str, declared: &str) -> SourceColumn {
    let upper = declared.to_ascii_uppercase();
    let typed = |read, lake| SourceColumn::new(name, declared, read, lake, false);
    let base = upper.split('(').next().unwrap_or_default().trim();
    match base {
        "BOOLEAN" | "BOOL" => return typed(Read::Bool, LakeType::Boolean),
        "DATE" => return typed(Read::Date, LakeType::Date),
        "DATETIME" | "TIMESTAMP" => return typed(Read::DateTime, LakeType::Timestamp),
        "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => {
            return typed(Read::DateTimeUtc, LakeType::TimestampUtc);
        }
        "DECIMAL" | "NUMERIC" => {
            return match decimal_args(&upper) {
                Some((p, s)) => match LakeType::decimal(p, s) {
                    lake @ LakeType::Decimal { .. } => typed(Read::Decimal, lake),
                    _ => typed(Read::Text, LakeType::String),
                },
                None => typed(Read::Text, LakeType::String),
            };
        }
        _ => {}
    }
    if upper.contains("INT") {
        typed(Read::I64, LakeType::Int64)
    } else if upper.contains("CHAR") || upper.contains("CLOB") || upper.contains("TEXT") {
        typed(Read::Text, LakeType::String)
    } else if upper.contains("BLOB") {
        typed(Read::Bytes, LakeType::Binary)
    } else if upper.contains("REAL") || upper.contains("FLOA") || upper.contains("DOUB") {
        typed(Read::F64, LakeType::Float64)
    } else if base.is_empty() || base == "NULL" {
        // No declared type (a computed column): keep the text form, and say so.
        typed(Read::Text, LakeType::String).without_type()
    } else {
        // NUMERIC affinity without precision: keep the text form.
        typed(Read::Text, LakeType::String)
    }
}

impl DialectRow for SqliteRow {
    fn read(
        &self,
        i: usize,
        read: Read,
        b: &mut ColumnBuilder,
    ) -> std::result::Result<(), ReadError> {
        match read {
            // SQLite stores declared decimals as INTEGER, REAL or TEXT; its text form is
            // exact for the first two, and the builder refuses what does not fit.
            Read::Decimal | Read::Text => match self.try_get_unchecked::<Option<&str>, _>(i)? {
                Some(v) => b.text(v)?,
                None => b.null(),
            },
            _ if read_common(self, i, read, b)? => {}
            other => return Err(Misfit(format!("SQLite has no {other:?} values")).into()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_and_declared_names() {
        assert_eq!(map_type("a", "INTEGER").lake, LakeType::Int64);
        assert_eq!(map_type("a", "BIGINT").lake, LakeType::Int64);
        assert_eq!(map_type("a", "VARCHAR(20)").lake, LakeType::String);
        assert_eq!(map_type("a", "DOUBLE PRECISION").lake, LakeType::Float64);
        assert_eq!(
            map_type("a", "DECIMAL(10,2)").lake,
            LakeType::Decimal {
                precision: 10,
                scale: 2
            }
        );
        assert_eq!(map_type("a", "boolean").lake, LakeType::Boolean);
        assert_eq!(map_type("a", "DATETIME").lake, LakeType::Timestamp);
        assert_eq!(map_type("a", "").lake, LakeType::String);
        assert!(map_type("a", "").typeless);
        assert!(!map_type("a", "NUMERIC").typeless);
    }
}
