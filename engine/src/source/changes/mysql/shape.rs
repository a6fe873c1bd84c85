//! The captured table as the binlog describes it: a table map's columns by name
//! (`binlog_row_metadata = FULL`) placed against the run's columns, with the labels of
//! its ENUM and SET columns; and whether a statement in the binlog truncates the table
//! or changes its shape.

use mysql_async::binlog::events::{OptionalMetadataField, TableMapEvent};
use mysql_async::consts::ColumnType;

use super::value::MapColumn;
use crate::error::{Error, Result};
use crate::source::types::SourceColumn;

/// The table's columns in one table map: where each of the run's columns is in its rows.
pub struct Shape {
    pub columns: Vec<MapColumn>,
    /// For each of the run's columns, its place in the rows (`None`: a column the rows
    /// predate, NULL in them).
    pub places: Vec<Option<usize>>,
    pub key_places: Vec<usize>,
}

/// What the run expects of the table.
pub struct Expect<'a> {
    /// Its database and name.
    pub table: (&'a str, &'a str),
    /// The run's columns (without the change columns).
    pub columns: &'a [SourceColumn],
    /// The columns the last commit had: a table map that lacks one is refused.
    pub known: &'a [String],
    /// The key columns' names.
    pub key: &'a [String],
}

/// The table map's columns, by name, against what the run expects.
pub fn shape(t: &TableMapEvent<'_>, expect: &Expect<'_>) -> Result<Shape> {
    let (schema, name) = expect.table;
    let bad = |e: std::io::Error| Error::internal(format!("the table map of {schema}.{name}: {e}"));
    let (mut names, mut enums, mut sets) = (Vec::new(), Vec::new(), Vec::new());
    for field in t.iter_optional_meta() {
        match field.map_err(bad)? {
            OptionalMetadataField::ColumnName(n) => {
                for column in n.iter_names() {
                    names.push(column.map_err(bad)?.name().into_owned());
                }
            }
            OptionalMetadataField::EnumStrValue(v) => {
                for labels in v.iter_values() {
                    let labels = labels.map_err(bad)?;
                    let labels: Vec<String> = labels
                        .values()
                        .iter()
                        .map(|l| l.value().into_owned())
                        .collect();
                    enums.push(labels);
                }
            }
            OptionalMetadataField::SetStrValue(v) => {
                for labels in v.iter_values() {
                    let labels = labels.map_err(bad)?;
                    let labels: Vec<String> = labels
                        .values()
                        .iter()
                        .map(|l| l.value().into_owned())
                        .collect();
                    sets.push(labels);
                }
            }
            _ => {}
        }
    }
    let count = usize::try_from(t.columns_count()).unwrap_or(usize::MAX);
    if names.len() != count {
        return Err(Error::user(format!(
            "the binlog's table map of {schema}.{name} does not name its columns: set `binlog_row_metadata = FULL` (it was not when this change was logged)"
        )));
    }
    let (mut enums, mut sets) = (enums.into_iter(), sets.into_iter());
    let mut columns = Vec::with_capacity(count);
    for (i, column) in names.into_iter().enumerate() {
        let kind = t
            .get_column_type(i)
            .map_err(|e| Error::internal(format!("the table map of {schema}.{name}: {e}")))?
            .ok_or_else(|| Error::internal("a table map column without a type"))?;
        let labels = match kind {
            ColumnType::MYSQL_TYPE_ENUM => enums.next().unwrap_or_default(),
            ColumnType::MYSQL_TYPE_SET => sets.next().unwrap_or_default(),
            _ => Vec::new(),
        };
        let meta = t.get_column_metadata(i).unwrap_or_default().to_vec();
        columns.push(MapColumn {
            name: column,
            kind,
            meta,
            labels,
        });
    }
    places(columns, expect)
}

/// Where the run's columns are among a table map's: a column the run does not know
/// came after its start (retried, it is read); one the job committed that the map
/// lacks was dropped (refused).
fn places(columns: Vec<MapColumn>, expect: &Expect<'_>) -> Result<Shape> {
    let (schema, name) = expect.table;
    if let Some(added) = columns
        .iter()
        .find(|c| !expect.columns.iter().any(|s| s.name == c.name))
    {
        return Err(Error::external(format!(
            "table {schema}.{name} changed while the run read its changes: column `{}` is not among the columns the run started with (it was added, or renamed); nothing was committed, and the next run reads the changes with the table's new columns",
            added.name
        )));
    }
    if let Some(gone) = expect
        .known
        .iter()
        .find(|k| !columns.iter().any(|c| c.name == **k))
    {
        return Err(Error::user(format!(
            "column `{gone}` of {schema}.{name} is gone from the binlog's rows (dropped or renamed): change capture does not follow that. Copy the table again: remove the job's state and lake table and run it (it takes a new snapshot)"
        )));
    }
    let places = expect
        .columns
        .iter()
        .map(|c| columns.iter().position(|m| m.name == c.name))
        .collect();
    let key_places = expect
        .key
        .iter()
        .map(|k| {
            columns
                .iter()
                .position(|m| m.name.eq_ignore_ascii_case(k))
                .ok_or_else(|| {
                    Error::user(format!(
                        "the key column `{k}` (source.primary_key) is not a column of {schema}.{name} in the binlog"
                    ))
                })
        })
        .collect::<Result<_>>()?;
    Ok(Shape {
        columns,
        places,
        key_places,
    })
}

/// What a statement does to the captured table.
#[derive(Debug, PartialEq, Eq)]
pub enum Statement {
    Truncate,
    /// ALTER, DROP, RENAME, CREATE: the table's shape may have changed.
    Ddl,
}

/// Whether `sql` (run in database `current`) is a TRUNCATE or DDL of `schema.table`.
/// A statement that names the table in another way is taken for DDL on it: that only
/// ends a run early.
pub fn statement_on(sql: &str, current: &str, (schema, table): (&str, &str)) -> Option<Statement> {
    let words: Vec<String> = sql
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .map(|w| w.replace('`', "").to_ascii_lowercase())
        .collect();
    let kind = match words.first()?.as_str() {
        "truncate" => Statement::Truncate,
        "alter" | "drop" | "rename" | "create" => Statement::Ddl,
        _ => return None,
    };
    let (schema, table) = (schema.to_ascii_lowercase(), table.to_ascii_lowercase());
    let here = current.eq_ignore_ascii_case(&schema);
    let names = words.iter().any(|w| match w.split_once('.') {
        Some((s, t)) => s == schema && t == table,
        None => here && *w == table,
    });
    names.then_some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::types::{LakeType, Read};

    #[test]
    fn statements_on_the_table_are_told_apart() {
        let on = |sql| statement_on(sql, "shop", ("shop", "orders"));
        assert_eq!(on("TRUNCATE TABLE `orders`"), Some(Statement::Truncate));
        assert_eq!(on("truncate shop.orders"), Some(Statement::Truncate));
        assert_eq!(
            on("ALTER TABLE orders ADD COLUMN x INT"),
            Some(Statement::Ddl)
        );
        assert_eq!(
            on("DROP TABLE `orders` /* generated by server */"),
            Some(Statement::Ddl)
        );
        assert_eq!(on("ALTER TABLE other.orders ADD x INT"), None);
        assert_eq!(on("ALTER TABLE orders_old ADD x INT"), None);
        assert_eq!(on("INSERT INTO orders VALUES (1)"), None);
        assert_eq!(
            statement_on("TRUNCATE orders", "other", ("shop", "orders")),
            None
        );
    }

    #[test]
    fn columns_are_placed_by_name() -> Result<()> {
        let map = |name: &str| MapColumn {
            name: name.into(),
            kind: ColumnType::MYSQL_TYPE_LONG,
            meta: Vec::new(),
            labels: Vec::new(),
        };
        let run = |name: &str| SourceColumn::new(name, "INT", Read::I32, LakeType::Int32, false);
        let columns = [run("id"), run("note"), run("extra")];
        let (known, key) = (
            vec!["id".to_string(), "note".to_string()],
            vec!["ID".to_string()],
        );
        let expect = Expect {
            table: ("shop", "orders"),
            columns: &columns,
            known: &known,
            key: &key,
        };
        // An older row image, before `extra` was added: NULL there.
        let shape = places(vec![map("note"), map("id")], &expect)?;
        assert_eq!(shape.places, vec![Some(1), Some(0), None]);
        assert_eq!(shape.key_places, vec![1]);
        // A column the job committed is gone; one the run does not know arrived.
        assert!(places(vec![map("id"), map("extra")], &expect).is_err());
        assert!(places(vec![map("id"), map("note"), map("new")], &expect).is_err());
        Ok(())
    }
}
