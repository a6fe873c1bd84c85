//! Round trip per source: a table with every common column type (extremes, NULLs in every
//! column) is extracted, and the Parquet read back (with the parquet crate, not sluice)
//! equals the source value for value, with the types the mapping documents — and so does
//! the same table read through a `query:` (SQLite, MariaDB).

use datafusion::arrow::record_batch::RecordBatch;

use crate::common::{Workspace, exec, mysql_db, postgres_db, pretty};

fn torture_job(ws: &Workspace, kind: &str, url: &str) {
    ws.connections(&format!("src:\n  kind: {kind}\n  url: \"{url}\"\n"));
    ws.write_job(
        "torture.yaml",
        "job: torture\nsource:\n  connection: src\n  table: torture\n  primary_key: [id]\nmode: full\ntarget:\n  table: torture\n",
    );
}

fn schema_lines(batches: &[RecordBatch]) -> Vec<String> {
    batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect()
}

/// Row 4 is NULL in every column but `id`; row 3 also in the columns named. (A printed
/// table cannot tell NULL from an empty string; this can.)
fn assert_nulls(batches: &[RecordBatch], also_in_row_3: &[&str]) {
    let schema = batches[0].schema();
    for (i, field) in schema.fields().iter().enumerate() {
        let nulls: usize = batches.iter().map(|b| b.column(i).null_count()).sum();
        let expected = match field.name().as_str() {
            "id" => 0,
            name if also_in_row_3.contains(&name) => 2,
            _ => 1,
        };
        assert_eq!(nulls, expected, "NULLs in column {}", field.name());
    }
}

/// The same table through `query:` (a join, as the demo's toll events join trucks): the
/// database's types survive the query, so the lake gets the same columns and values; the
/// summary names the columns the database gives no type for.
fn assert_query_reads_the_same(ws: &Workspace, table: &[RecordBatch], typeless: &[&str]) {
    ws.write_job(
        "torture_query.yaml",
        "job: torture_query\nsource:\n  connection: src\n  query: SELECT t.* FROM torture t JOIN torture u ON u.id = t.id\n  primary_key: [id]\nmode: full\ntarget:\n  table: torture_query\n",
    );
    let summary = ws.run_ok("torture_query");
    assert_eq!(summary["rows"], 4, "{summary}");
    let named: Vec<&str> = summary["typeless"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(named, typeless, "{summary}");
    let through_query = ws.read_table("torture_query");
    assert_eq!(schema_lines(&through_query), schema_lines(table));
    assert_eq!(pretty(&through_query), pretty(table));
}

fn extract(ws: &Workspace) -> Vec<RecordBatch> {
    let summary = ws.run_ok("torture");
    assert_eq!(summary["rows"], 4, "{summary}");
    let batches = ws.read_table("torture");
    assert!(!batches.is_empty(), "no parquet written");
    batches
}

/// Shared with the independent readers' test (tests/infra/test_lake_readers.py).
const PG_TORTURE: &str = include_str!("../fixtures/torture.postgres.sql");

#[tokio::test]
async fn postgres_every_type_round_trips() {
    let url = postgres_db("sluice_roundtrip").await;
    exec(&url, PG_TORTURE).await;
    let ws = Workspace::new();
    torture_job(&ws, "postgres", &url);
    let batches = extract(&ws);
    assert_eq!(
        schema_lines(&batches),
        [
            "id: Int32",
            "i16: Int16",
            "i32: Int32",
            "i64: Int64",
            "num: Decimal128(12, 3)",
            "wide: Decimal128(38, 10)",
            "free: Utf8",
            "f32: Float32",
            "f64: Float64",
            "flag: Boolean",
            "t: Utf8",
            "vc: Utf8",
            "ch: Utf8",
            "d: Date32",
            "tm: Utf8",
            "ts: Timestamp(µs)",
            "tstz: Timestamp(µs, \"UTC\")",
            "js: Utf8",
            "jsb: Utf8",
            "u: Utf8",
            "b: Binary",
            "mood_arr: Utf8",
        ]
    );
    assert_nulls(
        &batches,
        &["flag", "vc", "ch", "js", "jsb", "u", "b", "mood_arr"],
    );
    assert_eq!(pretty(&batches), PG_EXPECTED.trim());
}

const PG_EXPECTED: &str = r#"
+----+--------+-------------+----------------------+----------------+------------------------------------------+------------------------------------------------------+---------+-------------------------+-------+-------+-------------+----+------------+-----------------+----------------------------+-----------------------------+---------------+-------------+--------------------------------------+--------+----------+
| id | i16    | i32         | i64                  | num            | wide                                     | free                                                 | f32     | f64                     | flag  | t     | vc          | ch | d          | tm              | ts                         | tstz                        | js            | jsb         | u                                    | b      | mood_arr |
+----+--------+-------------+----------------------+----------------+------------------------------------------+------------------------------------------------------+---------+-------------------------+-------+-------+-------------+----+------------+-----------------+----------------------------+-----------------------------+---------------+-------------+--------------------------------------+--------+----------+
| 1  | 12     | 123456      | 1234567890123        | 1234.567       | 123456789012345678901234567.0123456789   | 3.14159265358979323846264338327950288419716939937510 | 1.5     | 2.25                    | true  | hello | värde ☃     | ab | 2024-05-01 | 13:45:10.123456 | 2024-05-01T10:00:00.123456 | 2024-05-01T08:00:00.654321Z | {"a": [1, 2]} | {"b": true} | a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 | 00ff10 | {1,2}    |
| 2  | -32768 | -2147483648 | -9223372036854775808 | -999999999.999 | -9999999999999999999999999999.9999999999 | 0                                                    | -3.4e38 | -1.7976931348623157e308 | false |       | quote ' "x" |    | 0001-01-01 | 00:00:00        | 1970-01-01T00:00:00        | 1969-12-31T23:59:59.999999Z | null          | []          | 00000000-0000-0000-0000-000000000000 |        | {}       |
| 3  | 32767  | 2147483647  | 9223372036854775807  | 999999999.999  | 9999999999999999999999999999.9999999999  | 0.000000000000000000000000000001                     | 3.4e38  | 1.7976931348623157e308  |       | line1 |             |    | 9999-12-31 | 23:59:59.999999 | 9999-12-31T23:59:59.999999 | 2262-04-11T23:47:16.854775Z |               |             |                                      |        |          |
|    |        |             |                      |                |                                          |                                                      |         |                         |       | line2 |             |    |            |                 |                            |                             |               |             |                                      |        |          |
| 4  |        |             |                      |                |                                          |                                                      |         |                         |       |       |             |    |            |                 |                            |                             |               |             |                                      |        |          |
+----+--------+-------------+----------------------+----------------+------------------------------------------+------------------------------------------------------+---------+-------------------------+-------+-------+-------------+----+------------+-----------------+----------------------------+-----------------------------+---------------+-------------+--------------------------------------+--------+----------+
"#;

const MY_TORTURE: &str = r#"
CREATE TABLE torture (
  id INT PRIMARY KEY, i8 TINYINT, u8 TINYINT UNSIGNED, i16 SMALLINT, u16 SMALLINT UNSIGNED,
  i24 MEDIUMINT, i32 INT, u32 INT UNSIGNED, i64 BIGINT, u64 BIGINT UNSIGNED,
  num DECIMAL(12,3), wide DECIMAL(38,10), f32 FLOAT, f64 DOUBLE, flag BOOLEAN,
  t TEXT, vc VARCHAR(20), ch CHAR(5), d DATE, tm TIME(6), dt DATETIME(6), ts TIMESTAMP(6) NULL,
  js JSON, y YEAR, b BLOB, vb VARBINARY(10), e ENUM('small','large'), u CHAR(36)
) DEFAULT CHARSET utf8mb4;
INSERT INTO torture VALUES
 (1, 12, 200, 1234, 60000, 8000000, 123456, 4000000000, 1234567890123, 18000000000000000000,
  1234.567, 123456789012345678901234567.0123456789, 1.5, 2.25, TRUE,
  'hello', 'värde ☃', 'ab', '2024-05-01', '13:45:10.123456', '2024-05-01 10:00:00.123456',
  '2024-05-01 08:00:00.654321', '{"a": [1, 2]}', 2024, X'00FF10', X'CAFE', 'large',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
 (2, -128, 0, -32768, 0, -8388608, -2147483648, 0, -9223372036854775808, 0,
  -999999999.999, -9999999999999999999999999999.9999999999, -3.4e38, -1.7976931348623157e308, FALSE,
  '', 'quote \' "x"', '', '1000-01-01', '-838:59:59.000000', '1000-01-01 00:00:00',
  '1970-01-01 00:00:01', '[]', 1901, X'', X'', 'small', ''),
 (3, 127, 255, 32767, 65535, 8388607, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615,
  999999999.999, 9999999999999999999999999999.9999999999, 3.4e38, 1.7976931348623157e308, NULL,
  'line1\nline2', NULL, NULL, '9999-12-31', '838:59:59.999999', '9999-12-31 23:59:59.999999',
  '2038-01-19 03:14:07.999999', NULL, 2155, NULL, NULL, NULL, NULL),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"#;

#[tokio::test]
async fn mysql_every_type_round_trips() {
    let url = mysql_db("sluice_roundtrip").await;
    exec(&url, &format!("SET time_zone = '+00:00'; {MY_TORTURE}")).await;
    let ws = Workspace::new();
    torture_job(&ws, "mysql", &url);
    let batches = extract(&ws);
    assert_eq!(
        schema_lines(&batches),
        [
            "id: Int32",
            "i8: Int8",
            "u8: Int16",
            "i16: Int16",
            "u16: Int32",
            "i24: Int32",
            "i32: Int32",
            "u32: Int64",
            "i64: Int64",
            "u64: Decimal128(20, 0)",
            "num: Decimal128(12, 3)",
            "wide: Decimal128(38, 10)",
            "f32: Float32",
            "f64: Float64",
            "flag: Int8",
            "t: Utf8",
            "vc: Utf8",
            "ch: Utf8",
            "d: Date32",
            "tm: Utf8",
            "dt: Timestamp(µs)",
            "ts: Timestamp(µs, \"UTC\")",
            "js: Utf8",
            "y: Int16",
            "b: Binary",
            "vb: Binary",
            "e: Utf8",
            "u: Utf8",
        ]
    );
    assert_nulls(&batches, &["flag", "vc", "ch", "js", "b", "vb", "e", "u"]);
    assert_eq!(pretty(&batches), MY_EXPECTED.trim());
    assert_query_reads_the_same(&ws, &batches, &[]);
}

const MY_EXPECTED: &str = r#"
+----+------+-----+--------+-------+----------+-------------+------------+----------------------+----------------------+----------------+------------------------------------------+---------+-------------------------+------+-------+-------------+----+------------+-------------------+----------------------------+-----------------------------+---------------+------+--------+------+-------+--------------------------------------+
| id | i8   | u8  | i16    | u16   | i24      | i32         | u32        | i64                  | u64                  | num            | wide                                     | f32     | f64                     | flag | t     | vc          | ch | d          | tm                | dt                         | ts                          | js            | y    | b      | vb   | e     | u                                    |
+----+------+-----+--------+-------+----------+-------------+------------+----------------------+----------------------+----------------+------------------------------------------+---------+-------------------------+------+-------+-------------+----+------------+-------------------+----------------------------+-----------------------------+---------------+------+--------+------+-------+--------------------------------------+
| 1  | 12   | 200 | 1234   | 60000 | 8000000  | 123456      | 4000000000 | 1234567890123        | 18000000000000000000 | 1234.567       | 123456789012345678901234567.0123456789   | 1.5     | 2.25                    | 1    | hello | värde ☃     | ab | 2024-05-01 | 13:45:10.123456   | 2024-05-01T10:00:00.123456 | 2024-05-01T08:00:00.654321Z | {"a": [1, 2]} | 2024 | 00ff10 | cafe | large | a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 |
| 2  | -128 | 0   | -32768 | 0     | -8388608 | -2147483648 | 0          | -9223372036854775808 | 0                    | -999999999.999 | -9999999999999999999999999999.9999999999 | -3.4e38 | -1.7976931348623157e308 | 0    |       | quote ' "x" |    | 1000-01-01 | -838:59:59.000000 | 1000-01-01T00:00:00        | 1970-01-01T00:00:01Z        | []            | 1901 |        |      | small |                                      |
| 3  | 127  | 255 | 32767  | 65535 | 8388607  | 2147483647  | 4294967295 | 9223372036854775807  | 18446744073709551615 | 999999999.999  | 9999999999999999999999999999.9999999999  | 3.4e38  | 1.7976931348623157e308  |      | line1 |             |    | 9999-12-31 | 838:59:59.999999  | 9999-12-31T23:59:59.999999 | 2038-01-19T03:14:07.999999Z |               | 2155 |        |      |       |                                      |
|    |      |     |        |       |          |             |            |                      |                      |                |                                          |         |                         |      | line2 |             |    |            |                   |                            |                             |               |      |        |      |       |                                      |
| 4  |      |     |        |       |          |             |            |                      |                      |                |                                          |         |                         |      |       |             |    |            |                   |                            |                             |               |      |        |      |       |                                      |
+----+------+-----+--------+-------+----------+-------------+------------+----------------------+----------------------+----------------+------------------------------------------+---------+-------------------------+------+-------+-------------+----+------------+-------------------+----------------------------+-----------------------------+---------------+------+--------+------+-------+--------------------------------------+
"#;

#[tokio::test]
async fn sqlite_every_type_round_trips() {
    let ws = Workspace::new();
    let url = ws
        .sqlite_source(
            r#"
CREATE TABLE torture (id INTEGER PRIMARY KEY, i INTEGER, big BIGINT, num DECIMAL(12,3), f REAL,
  flag BOOLEAN, t TEXT, vc VARCHAR(20), d DATE, ts DATETIME, b BLOB, js JSON, u UUID, untyped);
INSERT INTO torture VALUES
 (1, 42, 1234567890123, 1234.567, 2.25, 1, 'hello', 'värde ☃', '2024-05-01', '2024-05-01 10:00:00.123456',
  X'00FF10', '{"a": [1, 2]}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 42),
 (2, -9223372036854775808, 9223372036854775807, -999999999.999, -1.7976931348623157e308, 0, '', 'quote '' "x"',
  '0001-01-01', '1970-01-01 00:00:00', X'', '[]', '', 'text'),
 (3, 0, 0, '0.5', 1.7976931348623157e308, NULL, 'line1
line2', NULL, '9999-12-31', '9999-12-31 23:59:59.999999', NULL, NULL, NULL, 1.5),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"#,
    )
    .await;
    torture_job(&ws, "sqlite", &url);
    let batches = extract(&ws);
    assert_eq!(
        schema_lines(&batches),
        [
            "id: Int64",
            "i: Int64",
            "big: Int64",
            "num: Decimal128(12, 3)",
            "f: Float64",
            "flag: Boolean",
            "t: Utf8",
            "vc: Utf8",
            "d: Date32",
            "ts: Timestamp(µs)",
            "b: Binary",
            "js: Utf8",
            "u: Utf8",
            "untyped: Utf8",
        ]
    );
    assert_nulls(&batches, &["flag", "vc", "b", "js", "u"]);
    assert_eq!(pretty(&batches), SQLITE_EXPECTED.trim());
    assert_query_reads_the_same(&ws, &batches, &["untyped"]);
}

const SQLITE_EXPECTED: &str = r#"
+----+----------------------+---------------------+----------------+-------------------------+-------+-------+-------------+------------+----------------------------+--------+---------------+--------------------------------------+---------+
| id | i                    | big                 | num            | f                       | flag  | t     | vc          | d          | ts                         | b      | js            | u                                    | untyped |
+----+----------------------+---------------------+----------------+-------------------------+-------+-------+-------------+------------+----------------------------+--------+---------------+--------------------------------------+---------+
| 1  | 42                   | 1234567890123       | 1234.567       | 2.25                    | true  | hello | värde ☃     | 2024-05-01 | 2024-05-01T10:00:00.123456 | 00ff10 | {"a": [1, 2]} | a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 | 42      |
| 2  | -9223372036854775808 | 9223372036854775807 | -999999999.999 | -1.7976931348623157e308 | false |       | quote ' "x" | 0001-01-01 | 1970-01-01T00:00:00        |        | []            |                                      | text    |
| 3  | 0                    | 0                   | 0.500          | 1.7976931348623157e308  |       | line1 |             | 9999-12-31 | 9999-12-31T23:59:59.999999 |        |               |                                      | 1.5     |
|    |                      |                     |                |                         |       | line2 |             |            |                            |        |               |                                      |         |
| 4  |                      |                     |                |                         |       |       |             |            |                            |        |               |                                      |         |
+----+----------------------+---------------------+----------------+-------------------------+-------+-------+-------------+------------+----------------------------+--------+---------------+--------------------------------------+---------+
"#;

#[tokio::test]
async fn a_value_that_does_not_fit_is_a_clear_user_error_and_writes_nothing() {
    let ws = Workspace::new();
    let url = ws
        .sqlite_source(
            "CREATE TABLE torture (id INTEGER PRIMARY KEY, price DECIMAL(5,2));
         INSERT INTO torture VALUES (1, 12.5), (2, 12.345), (3, 1), (4, 2);",
        )
        .await;
    torture_job(&ws, "sqlite", &url);
    let run = ws.sluice(&["run", "--job", "torture"]);
    run.assert_code(2);
    assert!(
        run.stdout()
            .contains("column `price` (DECIMAL(5,2)): 12.345 does not fit decimal(5,2)"),
        "{}",
        run.stdout()
    );
    assert!(
        ws.parquet_files("torture").is_empty(),
        "a failed run left files"
    );
}

/// PostgreSQL has two paths: `COPY … (FORMAT binary)` (full runs, and windows on
/// integer, date and timestamp cursors) and rows with bound parameters (text cursors).
/// Both give the torture table value for value.
#[tokio::test]
async fn postgres_copy_and_row_paths_agree() {
    let url = postgres_db("sluice_paths").await;
    exec(&url, PG_TORTURE).await;
    let ws = Workspace::new();
    torture_job(&ws, "postgres", &url);
    ws.write_job(
        "rows.yaml",
        "job: torture_rows\nsource:\n  connection: src\n  query: SELECT *, lpad(id::text, 3, '0') AS k FROM torture\n  cursor: k\nmode: incremental\ntarget:\n  table: torture_rows\n",
    );
    let copy = ws
        .command(&["run", "--job", "torture"])
        .env("SLUICE_LOG", "sluice=debug")
        .output()
        .expect("run");
    assert_eq!(copy.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&copy.stderr).contains("COPY (SELECT"),
        "the full run used COPY"
    );
    let rows = ws
        .command(&["run", "--job", "torture_rows"])
        .env("SLUICE_LOG", "sluice=debug")
        .output()
        .expect("run");
    assert_eq!(rows.status.code(), Some(0));
    let log = String::from_utf8_lossy(&rows.stderr);
    assert!(
        !log.contains("COPY (SELECT") && log.contains("\\\"k\\\" <= $1"),
        "the text cursor used bound parameters:\n{log}"
    );

    let via_copy = ws.read_table("torture");
    let via_rows: Vec<RecordBatch> = ws
        .read_table("torture_rows")
        .iter()
        .map(|b| {
            b.project(&(0..b.num_columns() - 1).collect::<Vec<_>>())
                .expect("project")
        })
        .collect();
    assert_eq!(pretty(&via_copy), PG_EXPECTED.trim());
    assert_eq!(pretty(&via_rows), PG_EXPECTED.trim());
}

/// `infinity` timestamps and `NaN` numerics have no value in Parquet/Athena: the run
/// fails with the column's name and what to do, and writes nothing.
#[tokio::test]
async fn postgres_infinity_and_nan_are_clear_errors() {
    let url = postgres_db("sluice_infinity").await;
    exec(
        &url,
        "CREATE TABLE at_inf (id int PRIMARY KEY, seen timestamp); INSERT INTO at_inf VALUES (1, now()), (2, 'infinity');
         CREATE TABLE at_nan (id int PRIMARY KEY, x numeric(10,2)); INSERT INTO at_nan VALUES (1, 1.5), (2, 'NaN');",
    )
    .await;
    let ws = Workspace::new();
    ws.connections(&format!("src:\n  kind: postgres\n  url: \"{url}\"\n"));
    for table in ["at_inf", "at_nan"] {
        ws.write_job(
            &format!("{table}.yaml"),
            &format!("job: {table}\nsource:\n  connection: src\n  table: {table}\ntarget:\n  table: {table}\n"),
        );
    }
    let inf = ws.sluice(&["run", "--job", "at_inf"]);
    inf.assert_code(2);
    assert!(
        inf.stdout()
            .contains("column `seen` (TIMESTAMP): timestamp 'infinity' has no value in the lake"),
        "{}",
        inf.stdout()
    );
    let nan = ws.sluice(&["run", "--job", "at_nan"]);
    nan.assert_code(2);
    assert!(
        nan.stdout()
            .contains("column `x` (NUMERIC): NUMERIC 'NaN' has no value in the lake"),
        "{}",
        nan.stdout()
    );
    assert!(ws.parquet_files("at_inf").is_empty() && ws.parquet_files("at_nan").is_empty());
}
