//! What a query may be: one `SELECT` / `WITH` / `EXPLAIN` (of a query) / `SHOW` /
//! `DESCRIBE`, refused before planning otherwise. DataFusion's own `SQLOptions` (no DDL,
//! no DML, no statements) are the second wall, at planning; the third is the session,
//! which has only the key's tables and no table function that reads a path or a URL.

use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::Statement;

/// Why `sql` is refused, or nothing when it may run.
pub fn refusal(sql: &str) -> Option<String> {
    let statements = match DFParser::parse_sql(sql) {
        Ok(statements) => statements,
        Err(e) => return Some(format!("the SQL does not parse: {e}")),
    };
    if statements.len() != 1 {
        return Some(format!("one statement per query, not {}", statements.len()));
    }
    let kind = match &statements[0] {
        DFStatement::Statement(statement) => match statement.as_ref() {
            Statement::Query(_)
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::ExplainTable { .. } => return None,
            Statement::Explain { statement, .. } if matches!(**statement, Statement::Query(_)) => {
                return None;
            }
            other => first_words(&other.to_string()),
        },
        DFStatement::Explain(explain) => match explain.statement.as_ref() {
            DFStatement::Statement(inner) if matches!(**inner, Statement::Query(_)) => return None,
            _ => "EXPLAIN of a statement that is not a query".to_string(),
        },
        DFStatement::CreateExternalTable(_) => "CREATE EXTERNAL TABLE".into(),
        DFStatement::CopyTo(_) => "COPY".into(),
        other => first_words(&other.to_string()),
    };
    Some(format!(
        "{kind} is not allowed: the lake is read-only here; send SELECT, WITH, EXPLAIN, SHOW or DESCRIBE"
    ))
}

/// `INSERT INTO`, `DROP TABLE`, …: the statement's leading keywords (not the names after
/// them), for the message.
fn first_words(sql: &str) -> String {
    use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
    sql.split_whitespace()
        .map(str::to_uppercase)
        .take_while(|w| ALL_KEYWORDS.binary_search(&w.as_str()).is_ok())
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_pass_and_everything_else_is_refused_with_its_name() {
        for ok in [
            "SELECT 1",
            "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
            "EXPLAIN SELECT * FROM orders",
            "SHOW TABLES",
            "SHOW COLUMNS FROM orders",
            "DESCRIBE orders",
        ] {
            assert_eq!(refusal(ok), None, "{ok}");
        }
        for (bad, named) in [
            ("INSERT INTO orders VALUES (1)", "INSERT INTO"),
            ("DROP TABLE orders", "DROP TABLE"),
            ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
                "CREATE EXTERNAL TABLE",
            ),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("DELETE FROM orders", "DELETE FROM"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            (
                "EXPLAIN INSERT INTO orders VALUES (1)",
                "EXPLAIN of a statement that is not a query",
            ),
        ] {
            let message = refusal(bad).unwrap_or_default();
            assert!(
                message.starts_with(&format!("{named} is not allowed")),
                "{bad}: {message}"
            );
            assert!(message.contains("read-only"), "{bad}: {message}");
        }
        assert!(refusal("SELECT 1; SELECT 2").is_some_and(|m| m.contains("one statement")));
        assert!(refusal("SELEC 1").is_some_and(|m| m.contains("does not parse")));
    }
}
