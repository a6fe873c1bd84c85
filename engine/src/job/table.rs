//! The job compiler for database tables (`source.table` or `source.query` of a
//! `postgres`, `mysql` or `sqlite` connection): the relation read, its cursor window, key,
//! lag and split. Change capture (`changes`) reads the same relations from the log.

use std::time::Duration;

use super::check::{check_column_list, check_select, is_identifier, mode_name};
use crate::spec::units::parse_duration;
use crate::spec::{Mode, SourceSpec};

/// A table or query of a database.
#[derive(Debug, Clone, PartialEq)]
pub enum Relation {
    /// A table, with its schema (PostgreSQL) or database (MySQL) when given.
    Table {
        schema: Option<String>,
        name: String,
    },
    /// A SELECT, read as a subquery.
    Query(String),
}

/// How a table read is split into parts read at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub parts: usize,
    pub column: Option<String>,
}

/// What a table job reads and how: the relation, the key, the lag and the split.
pub(super) struct TableRead {
    pub(super) relation: Option<Relation>,
    pub(super) primary_key: Vec<String>,
    pub(super) lag: Option<Duration>,
    pub(super) split: Option<Split>,
}

/// Compiles the `source` of a table job: the relation, its cursor, key, lag and split.
pub(super) fn table_read(
    source: &SourceSpec,
    mode: Mode,
    mut bad: impl FnMut(&str, String),
) -> TableRead {
    let relation = match (&source.table, &source.query) {
        (Some(_), Some(_)) => {
            bad(
                "source",
                "has both `table` and `query`; give exactly one".into(),
            );
            None
        }
        (None, None) => {
            bad(
                "source",
                "needs `table` (a table name) or `query` (a SELECT)".into(),
            );
            None
        }
        (Some(table), None) => match parse_table_name(table) {
            Ok(from) => Some(from),
            Err(m) => {
                bad("source.table", m);
                None
            }
        },
        (None, Some(query)) => match check_select(query) {
            Ok(q) => Some(Relation::Query(q)),
            Err(m) => {
                bad("source.query", m);
                None
            }
        },
    };

    if let Some(cursor) = &source.cursor
        && !is_identifier(cursor)
    {
        bad("source.cursor", format!("{cursor:?} is not a column name"));
    }
    if mode.reads_window() && source.cursor.is_none() {
        bad(
            "source.cursor",
            format!(
                "is required for mode `{}`: name the column that grows with every change (such as updated_at or id)",
                mode_name(mode)
            ),
        );
    }

    let primary_key = source.primary_key.clone().unwrap_or_default();
    check_column_list("source.primary_key", &primary_key, &mut bad);

    let lag = match &source.lag {
        None => None,
        Some(text) => {
            if !mode.reads_window() {
                bad(
                    "source.lag",
                    format!(
                        "only applies to modes `incremental` and `merge` (this job's mode is `{}`)",
                        mode_name(mode)
                    ),
                );
            }
            match parse_duration(text) {
                Ok(d) => Some(d),
                Err(m) => {
                    bad("source.lag", m);
                    None
                }
            }
        }
    };

    let split = source.split.as_ref().map(|s| Split {
        parts: s.parts as usize,
        column: s.column.clone(),
    });
    if let Some(split) = &source.split {
        if !(1..=32).contains(&split.parts) {
            bad(
                "source.split.parts",
                format!("{} is out of range (1 to 32)", split.parts),
            );
        }
        if source.table.is_none() {
            bad(
                "source.split",
                "splits a `table`; a `query` is read on one connection".into(),
            );
        }
        if let Some(column) = &split.column
            && !is_identifier(column)
        {
            bad(
                "source.split.column",
                format!("{column:?} is not a column name"),
            );
        }
    }

    TableRead {
        relation,
        primary_key,
        lag,
        split,
    }
}

/// `name`, `schema.name`: plain identifiers (letters, digits, `_`, `$`), no quoting, so
/// that sluice quotes them itself for each database.
fn parse_table_name(text: &str) -> Result<Relation, String> {
    let parts: Vec<&str> = text.trim().split('.').collect();
    let valid = "a table name such as `orders` or `sales.orders` (letters, digits, `_`)";
    if parts.iter().any(|p| !is_identifier(p)) || parts.len() > 2 {
        return Err(format!("{text:?} is not {valid}"));
    }
    Ok(match parts.as_slice() {
        [name] => Relation::Table {
            schema: None,
            name: name.to_string(),
        },
        [schema, name] => Relation::Table {
            schema: Some(schema.to_string()),
            name: name.to_string(),
        },
        _ => return Err(format!("{text:?} is not {valid}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        assert_eq!(
            parse_table_name("public.orders"),
            Ok(Relation::Table {
                schema: Some("public".into()),
                name: "orders".into()
            })
        );
        assert!(parse_table_name("a.b.c").is_err());
        assert!(parse_table_name("orders; drop table x").is_err());
    }
}
