//! MySQL and MariaDB through sqlx: column discovery from the prepared statement plus
//! `information_schema.COLUMNS` (DECIMAL precision and scale, for tables), and the MySQL
//! type mapping. Sessions run in UTC so that TIMESTAMP values arrive as UTC.

use std::collections::HashMap;
use std::str::FromStr;

use bigdecimal::BigDecimal;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::{Column, MySql, Row, TypeInfo};

use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::ConnectOptions;

use super::batch::{ColumnBuilder, DialectRow, Misfit, ReadError, read_common};
use super::cursor::Window;
use super::split;
use super::sql::{
    Dialect, Fetch, Plan, SqlSource, Syntax, connect as connect_with, describe, extract_loop,
    rows_extract,
};
use super::types::{LakeType, Read, SourceColumn, decimal_args};
use crate::error::{Error, Result, classify_sqlx};
use crate::job::Relation;

extract_loop!(MySql);

pub async fn connect(url: &str, plan: Plan) -> Result<SqlSource<MySql>> {
    let url = url.replacen("mariadb://", "mysql://", 1);
    let options = MySqlConnectOptions::from_str(&url)
        .map_err(|e| Error::user(format!("invalid mysql url: {e}")))?
        .timezone(Some("+00:00".to_string()));
    connect_with(options, plan, "MySQL").await
}

impl Dialect for MySql {
    const SYNTAX: Syntax = Syntax {
        quote: '`',
        numbered_params: false,
        text_type: "CHAR",
    };

    /// A large table (or one with `split`) is read in primary-key ranges on several
    /// connections, each in its own consistent-snapshot transaction (MySQL cannot share a
    /// snapshot): the ranges are disjoint and the window's `hi` bounds every part, so no
    /// row is read twice or missed.
    fn extract(
        conn: MySqlConnection,
        options: MySqlConnectOptions,
        plan: &Plan,
        columns: Vec<SourceColumn>,
        window: &Window,
    ) -> BoxStream<'static, Result<RecordBatch>> {
        let (plan, window) = (plan.clone(), window.clone());
        futures::stream::once(split_streams(conn, options, plan, columns, window))
            .flat_map(|streams| match streams {
                Ok(streams) => futures::stream::select_all(streams).boxed(),
                Err(e) => futures::stream::iter([Err(e)]).boxed(),
            })
            .boxed()
    }

    async fn constraints(
        conn: &mut MySqlConnection,
        plan: &Plan,
    ) -> Result<Vec<super::Constraint>> {
        let Relation::Table { schema, name } = &plan.from else {
            return Ok(Vec::new());
        };
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT CAST(c.COLUMN_NAME AS CHAR), CAST(c.IS_NULLABLE = 'NO' AS SIGNED), \
                    CAST(COALESCE((SELECT k.ORDINAL_POSITION FROM information_schema.KEY_COLUMN_USAGE k \
                      WHERE k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME \
                        AND k.COLUMN_NAME = c.COLUMN_NAME AND k.CONSTRAINT_NAME = 'PRIMARY'), 0) AS SIGNED) \
             FROM information_schema.COLUMNS c \
             WHERE c.TABLE_SCHEMA = COALESCE(?, DATABASE()) AND c.TABLE_NAME = ? \
             ORDER BY c.ORDINAL_POSITION",
        )
        .bind(schema)
        .bind(name)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify_sqlx(e, "reading the table's constraints"))?;
        Ok(rows
            .into_iter()
            .map(|(c, n, k)| super::Constraint::from_row((c, n != 0, k)))
            .collect())
    }

    async fn columns(conn: &mut MySqlConnection, plan: &Plan) -> Result<Vec<SourceColumn>> {
        let columns = describe::<Self>(conn, plan).await?;
        let described: Vec<(String, String)> = columns
            .iter()
            .map(|c| (c.name().to_string(), c.type_info().name().to_string()))
            .collect();
        let catalog = match &plan.from {
            Relation::Table { schema, name } => {
                table_catalog(conn, schema.as_deref(), name).await?
            }
            Relation::Query(_) => query_catalog(conn, plan).await,
        };
        Ok(described
            .iter()
            .map(|(name, type_name)| map_type(name, type_name, catalog.get(name)))
            .collect())
    }
}

/// Tables with at least this many rows (`information_schema.TABLES`) are split by default.
const AUTO_SPLIT_ROWS: u64 = 1_000_000;

/// The part streams of the window: one (the row path) unless the table is split.
async fn split_streams(
    mut conn: MySqlConnection,
    options: MySqlConnectOptions,
    plan: Plan,
    columns: Vec<SourceColumn>,
    window: Window,
) -> Result<Vec<BoxStream<'static, Result<RecordBatch>>>> {
    let parts = split_parts(&mut conn, &plan).await?;
    let column = split::split_column(&plan, &columns)?;
    let (Some(column), true) = (column, parts > 1) else {
        return Ok(vec![rows_extract::<MySql>(conn, &plan, columns, &window)]);
    };
    let c = MySql::SYNTAX.ident(&column);
    let (lo, hi): (Option<i64>, Option<i64>) = sqlx::query_as(&format!(
        "SELECT CAST(MIN({c}) AS SIGNED), CAST(MAX({c}) AS SIGNED) FROM {}",
        MySql::SYNTAX.from(&plan.from)
    ))
    .fetch_one(&mut conn)
    .await
    .map_err(|e| classify_sqlx(e, "reading the split column's range"))?;
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(vec![rows_extract::<MySql>(conn, &plan, columns, &window)]);
    };
    let conditions = split::value_conditions(&c, lo, hi, parts);
    tracing::info!(parts = conditions.len(), "reading the table in key ranges");
    let mut connections = vec![conn];
    for _ in 1..conditions.len() {
        connections.push(
            options
                .connect()
                .await
                .map_err(|e| classify_sqlx(e, "opening a connection for a part"))?,
        );
    }
    let mut streams = Vec::new();
    for (mut conn, condition) in connections.into_iter().zip(&conditions) {
        sqlx::query("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .execute(&mut conn)
            .await
            .map_err(|e| classify_sqlx(e, "starting a part's snapshot"))?;
        let (sql, binds) = MySql::SYNTAX.window_part(&plan, &columns, &window, condition);
        streams.push(MySql::stream(
            conn,
            sql,
            binds,
            columns.clone(),
            plan.batch(conditions.len()),
        ));
    }
    Ok(streams)
}

/// The job's `split.parts`, or by default one per core (up to four) for a large table
/// with an integer key.
async fn split_parts(conn: &mut MySqlConnection, plan: &Plan) -> Result<usize> {
    if let Some(split) = &plan.split {
        return Ok(split.parts);
    }
    let Relation::Table { schema, name } = &plan.from else {
        return Ok(1);
    };
    let estimate: Option<u64> = sqlx::query_scalar(
        "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
    )
    .bind(schema.as_deref())
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| classify_sqlx(e, "estimating the table's size"))?
    .flatten();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(if estimate.unwrap_or(0) >= AUTO_SPLIT_ROWS {
        cores.clamp(1, 4)
    } else {
        1
    })
}

/// What `information_schema.COLUMNS` says of a table's column: the protocol alone cannot
/// tell DECIMAL's precision, nor text with a binary collation (`utf8mb4_bin`, MariaDB's
/// JSON) from binary data. A query's columns have no such entry: their DECIMALs are read
/// as text and binary-collated text as binary.
#[derive(Debug, Clone, PartialEq)]
struct CatalogColumn {
    data_type: String,
    precision: Option<u32>,
    scale: Option<i32>,
}

async fn table_catalog(
    conn: &mut MySqlConnection,
    schema: Option<&str>,
    table: &str,
) -> Result<HashMap<String, CatalogColumn>> {
    let rows: Vec<(String, String, Option<u64>, Option<u64>)> = sqlx::query_as(
        "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR), NUMERIC_PRECISION, NUMERIC_SCALE \
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| classify_sqlx(e, "reading the table's column types"))?;
    Ok(rows
        .into_iter()
        .map(|(name, data_type, p, s)| {
            let column = CatalogColumn {
                data_type: data_type.to_ascii_lowercase(),
                precision: p.and_then(|p| u32::try_from(p).ok()),
                scale: s.and_then(|s| i32::try_from(s).ok()),
            };
            (name, column)
        })
        .collect())
}

/// A query's result columns as a table would declare them. The column definitions MySQL
/// and MariaDB send carry a DECIMAL's precision and scale, but sqlx keeps neither; a
/// temporary table shaped like the result (no rows) has them in `SHOW COLUMNS`. Without
/// the CREATE TEMPORARY TABLES privilege, such decimals are read as text (the run
/// summary names them).
async fn query_catalog(conn: &mut MySqlConnection, plan: &Plan) -> HashMap<String, CatalogColumn> {
    const TABLE: &str = "sluice_describe";
    let create = format!(
        "CREATE TEMPORARY TABLE {TABLE} AS {}",
        MySql::SYNTAX.describe(&plan.from)
    );
    if let Err(e) = sqlx::query(&create).execute(&mut *conn).await {
        tracing::info!(error = %e, "no temporary table shaped like the query: its decimals are read as text");
        return HashMap::new();
    }
    let rows = sqlx::query(&format!("SHOW COLUMNS FROM {TABLE}"))
        .fetch_all(&mut *conn)
        .await;
    if let Err(e) = sqlx::query(&format!("DROP TEMPORARY TABLE {TABLE}"))
        .execute(&mut *conn)
        .await
    {
        tracing::debug!(error = %e, "could not drop the temporary table (it ends with the session)");
    }
    rows.unwrap_or_default()
        .iter()
        .filter_map(|row| {
            let name: String = row.try_get_unchecked(0).ok()?;
            let declared: String = row.try_get_unchecked(1).ok()?;
            Some((name, declared_column(&declared)))
        })
        .collect()
}

/// `decimal(8,2) unsigned`, `varchar(10)`, `datetime(3)` as a catalog column.
fn declared_column(declared: &str) -> CatalogColumn {
    let lower = declared.to_ascii_lowercase();
    let data_type = lower
        .split(|c: char| c == '(' || c.is_whitespace())
        .next()
        .unwrap_or_default()
        .to_string();
    let args = matches!(data_type.as_str(), "decimal" | "numeric")
        .then(|| decimal_args(&lower))
        .flatten();
    CatalogColumn {
        data_type,
        precision: args.map(|(p, _)| p),
        scale: args.map(|(_, s)| s),
    }
}

/// The MySQL type mapping. Unsigned integers widen so that every value fits; TINYINT(1)
/// (`BOOLEAN`) stays a tinyint because it may hold any value from -128 to 127.
fn map_type(name: &str, type_name: &str, catalog: Option<&CatalogColumn>) -> SourceColumn {
    const TEXT_TYPES: [&str; 8] = [
        "char",
        "varchar",
        "tinytext",
        "text",
        "mediumtext",
        "longtext",
        "enum",
        "set",
    ];
    let typed = |read, lake| SourceColumn::new(name, type_name, read, lake, false);
    if catalog.is_some_and(|c| TEXT_TYPES.contains(&c.data_type.as_str())) {
        return typed(Read::Text, LakeType::String);
    }
    let decimal = catalog.and_then(|c| Some((c.precision?, c.scale?)));
    match type_name {
        "BOOLEAN" | "TINYINT" => typed(Read::I8, LakeType::Int8),
        "TINYINT UNSIGNED" => typed(Read::U8, LakeType::Int16),
        "SMALLINT" => typed(Read::I16, LakeType::Int16),
        "SMALLINT UNSIGNED" => typed(Read::U16, LakeType::Int32),
        "MEDIUMINT" | "INT" => typed(Read::I32, LakeType::Int32),
        "MEDIUMINT UNSIGNED" | "INT UNSIGNED" => typed(Read::U32, LakeType::Int64),
        "BIGINT" => typed(Read::I64, LakeType::Int64),
        "BIGINT UNSIGNED" => typed(Read::U64, LakeType::decimal(20, 0)),
        "YEAR" => typed(Read::U16, LakeType::Int16),
        "FLOAT" => typed(Read::F32, LakeType::Float32),
        "DOUBLE" => typed(Read::F64, LakeType::Float64),
        "DECIMAL" => match decimal.map(|(p, s)| LakeType::decimal(p, s)) {
            Some(lake @ LakeType::Decimal { .. }) => typed(Read::Decimal, lake),
            Some(_) => SourceColumn::text(name, type_name),
            None => SourceColumn::text(name, type_name).without_type(),
        },
        "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" => {
            typed(Read::Text, LakeType::String)
        }
        "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            typed(Read::Bytes, LakeType::Binary)
        }
        "DATE" => typed(Read::Date, LakeType::Date),
        "DATETIME" => typed(Read::DateTime, LakeType::Timestamp),
        "TIMESTAMP" => typed(Read::DateTimeUtc, LakeType::TimestampUtc),
        // TIME, JSON, ENUM, SET, BIT, GEOMETRY, …
        _ => SourceColumn::text(name, type_name),
    }
}

impl DialectRow for MySqlRow {
    fn read(
        &self,
        i: usize,
        read: Read,
        b: &mut ColumnBuilder,
    ) -> std::result::Result<(), ReadError> {
        if read == Read::Text {
            // Text with a binary collation carries the protocol's BINARY flag, which
            // sqlx's checked decode refuses; the catalog already said it is text, and
            // the decode still rejects bytes that are not UTF-8.
            match self.try_get_unchecked::<Option<&str>, _>(i)? {
                Some(v) => b.text(v)?,
                None => b.null(),
            }
            return Ok(());
        }
        if read_common(self, i, read, b)? {
            return Ok(());
        }
        let unsigned = match read {
            Read::Decimal => {
                match self.try_get::<Option<BigDecimal>, _>(i)? {
                    Some(v) => b.decimal(&v)?,
                    None => b.null(),
                }
                return Ok(());
            }
            Read::U8 => self.try_get::<Option<u8>, _>(i)?.map(u64::from),
            Read::U16 => self.try_get::<Option<u16>, _>(i)?.map(u64::from),
            Read::U32 => self.try_get::<Option<u32>, _>(i)?.map(u64::from),
            Read::U64 => self.try_get::<Option<u64>, _>(i)?,
            other => return Err(Misfit(format!("MySQL has no {other:?} values")).into()),
        };
        match unsigned {
            Some(v) => b.uint(v)?,
            None => b.null(),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_columns_of_show_columns() {
        let d = declared_column("decimal(8,2) unsigned");
        assert_eq!(
            (d.data_type.as_str(), d.precision, d.scale),
            ("decimal", Some(8), Some(2))
        );
        let d = declared_column("DECIMAL(12)");
        assert_eq!((d.precision, d.scale), (Some(12), Some(0)));
        let d = declared_column("varchar(10)");
        assert_eq!(
            (d.data_type.as_str(), d.precision, d.scale),
            ("varchar", None, None)
        );
        assert_eq!(declared_column("datetime").data_type, "datetime");
        let typed = map_type("amount", "DECIMAL", Some(&declared_column("decimal(8,2)")));
        assert_eq!(
            typed.lake,
            LakeType::Decimal {
                precision: 8,
                scale: 2
            }
        );
        assert!(!typed.typeless);
        assert!(map_type("amount", "DECIMAL", None).typeless);
    }

    #[test]
    fn unsigned_integers_widen() {
        assert_eq!(
            map_type("a", "TINYINT UNSIGNED", None).lake,
            LakeType::Int16
        );
        assert_eq!(map_type("a", "INT UNSIGNED", None).lake, LakeType::Int64);
        assert_eq!(
            map_type("a", "BIGINT UNSIGNED", None).lake,
            LakeType::Decimal {
                precision: 20,
                scale: 0
            }
        );
        assert_eq!(map_type("a", "DECIMAL", None).lake, LakeType::String);
        assert_eq!(map_type("a", "JSON", None).lake, LakeType::String);
    }
}
