//! What a query may be: one `SELECT` / `WITH` / `EXPLAIN` (of a query) / `SHOW` /
//! `DESCRIBE` of at most `statement_bytes` that nests at most `sql_depth` deep, refused
//! before planning otherwise — a data-changing statement anywhere in it (`WITH … DELETE`)
//! included. DataFusion's own `SQLOptions` (no DDL, no DML, no statements) are the second
//! wall, at planning; the third is the session, which has only the key's tables and no
//! table function that reads a path or a URL.
//!
//! The depth is measured on the parsed statement, stopping as soon as it passes the
//! limit, so that planning (which recurses over expressions) never meets a tree deeper
//! than the limit. Parsing itself is safe at any size the statement limit lets through:
//! the parser's own recursion is bounded by the same limit (it counts parentheses and
//! subqueries), and it builds chains of operators (`a AND b AND …`) in a loop. A deep chain still
//! takes a deep stack to drop, so `check` runs on the query threads (`pool`), whose
//! stacks are large.

use std::ops::ControlFlow;

use axum::http::StatusCode;
use datafusion::error::DataFusionError;
use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Expr, Query, Select, SetExpr, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::parser::ParserError;

use super::limits::Limits;
use super::refusal::Refusal;

/// The statement's size, before anything else is done with it (a 413 naming the limit).
pub fn size(sql: &str, limits: &Limits) -> Result<(), Refusal> {
    if sql.len() > limits.statement_bytes {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "statement_too_large",
            format!(
                "the statement has {} bytes; the most a statement may have is {} (--max-statement-bytes): bind values as params instead of writing them into the SQL",
                sql.len(),
                limits.statement_bytes
            ),
        ));
    }
    Ok(())
}

/// Refuses `sql` unless it may run: its size, its kind, its depth.
pub fn check(sql: &str, limits: &Limits) -> Result<(), Refusal> {
    size(sql, limits)?;
    let refused = |why: String| Refusal::new(StatusCode::BAD_REQUEST, "refused", why);
    let parsed = DFParserBuilder::new(sql)
        .with_recursion_limit(limits.sql_depth.max(1))
        .build()
        .and_then(|mut parser| parser.parse_statements());
    let statements = parsed.map_err(|e| {
        if matches!(&e, DataFusionError::SQL(parsed, _) if matches!(**parsed, ParserError::RecursionLimitExceeded))
        {
            too_deep(None, limits)
        } else {
            refused(format!("the SQL does not parse: {e}"))
        }
    })?;
    if statements.len() != 1 {
        return Err(refused(format!(
            "one statement per query, not {}",
            statements.len()
        )));
    }
    let statement = match &statements[0] {
        DFStatement::Statement(statement) => statement.as_ref(),
        DFStatement::Explain(explain) => match explain.statement.as_ref() {
            DFStatement::Statement(inner) if matches!(**inner, Statement::Query(_)) => {
                inner.as_ref()
            }
            _ => {
                return Err(refused(not_allowed(
                    "EXPLAIN of a statement that is not a query",
                )));
            }
        },
        DFStatement::CreateExternalTable(_) => {
            return Err(refused(not_allowed("CREATE EXTERNAL TABLE")));
        }
        DFStatement::CopyTo(_) => return Err(refused(not_allowed("COPY"))),
        other => return Err(refused(not_allowed(&first_words(&other.to_string())))),
    };
    match statement {
        Statement::Query(_)
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ExplainTable { .. } => {}
        Statement::Explain { statement, .. } if matches!(**statement, Statement::Query(_)) => {}
        other => return Err(refused(not_allowed(&first_words(&other.to_string())))),
    }
    let mut walk = Walk {
        limit: limits.sql_depth,
        depth: 0,
    };
    match statement.visit(&mut walk) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(Stop::TooDeep) => Err(too_deep(Some(limits.sql_depth + 1), limits)),
        ControlFlow::Break(Stop::Writes(kind)) => Err(refused(not_allowed(&kind))),
    }
}

fn not_allowed(kind: &str) -> String {
    format!(
        "{kind} is not allowed: the lake is read-only here; send SELECT, WITH, EXPLAIN, SHOW or DESCRIBE"
    )
}

fn too_deep(depth: Option<usize>, limits: &Limits) -> Refusal {
    let how = depth.map_or_else(
        || "deeper than the limit in parentheses or subqueries".to_string(),
        |d| format!("at least {d} deep"),
    );
    Refusal::new(
        StatusCode::BAD_REQUEST,
        "too_deep",
        format!(
            "the statement nests {how}; the most is {} (--max-sql-depth), counting each operator of a chain like `a AND b AND …`, each subquery and each UNION branch: use IN (…) or a join for long lists of conditions",
            limits.sql_depth
        ),
    )
}

/// Why the walk stopped early.
enum Stop {
    TooDeep,
    /// A statement that changes data, nested in the query.
    Writes(String),
}

/// Measures how deep expressions, queries and selects nest, UNION branches counted as
/// one level each; stops at the first level past the limit, so it never goes deeper.
struct Walk {
    limit: usize,
    depth: usize,
}

impl Walk {
    fn enter(&mut self, levels: usize) -> ControlFlow<Stop> {
        self.depth += levels;
        if self.depth > self.limit {
            ControlFlow::Break(Stop::TooDeep)
        } else {
            ControlFlow::Continue(())
        }
    }

    fn leave(&mut self, levels: usize) -> ControlFlow<Stop> {
        self.depth = self.depth.saturating_sub(levels);
        ControlFlow::Continue(())
    }
}

/// How many set operations chain at the top of `body` (`a UNION b UNION c` is two).
/// The chain leans left, so it is followed in a loop; only a right side that is itself
/// an operation (a tighter-binding INTERSECT) is followed by a call.
fn branches(mut body: &SetExpr) -> usize {
    let mut count = 0;
    while let SetExpr::SetOperation { left, right, .. } = body {
        count += 1 + if matches!(**right, SetExpr::SetOperation { .. }) {
            branches(right)
        } else {
            0
        };
        body = left;
    }
    count
}

impl Visitor for Walk {
    type Break = Stop;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Stop> {
        self.enter(1 + branches(&query.body))
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<Stop> {
        self.leave(1 + branches(&query.body))
    }

    fn pre_visit_select(&mut self, _select: &Select) -> ControlFlow<Stop> {
        self.enter(1)
    }

    fn post_visit_select(&mut self, _select: &Select) -> ControlFlow<Stop> {
        self.leave(1)
    }

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Stop> {
        self.enter(1)
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Stop> {
        self.leave(1)
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Stop> {
        match statement {
            Statement::Query(_)
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::ExplainTable { .. }
            | Statement::Explain { .. } => ControlFlow::Continue(()),
            other => ControlFlow::Break(Stop::Writes(first_words(&other.to_string()))),
        }
    }
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

    fn refusal(sql: &str) -> Option<Refusal> {
        check(sql, &Limits::default()).err()
    }

    #[test]
    fn queries_pass_and_everything_else_is_refused_with_its_name() {
        for ok in [
            "SELECT 1",
            "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
            "EXPLAIN SELECT * FROM orders",
            "SHOW TABLES",
            "SHOW COLUMNS FROM orders",
            "DESCRIBE orders",
            "SELECT 1 UNION ALL SELECT 2 INTERSECT SELECT 3",
        ] {
            assert!(refusal(ok).is_none(), "{ok}: {:?}", refusal(ok));
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
            ("WITH x AS (SELECT 1) DELETE FROM orders", "DELETE FROM"),
            (
                "WITH x AS (SELECT 1) INSERT INTO orders SELECT * FROM x",
                "INSERT INTO",
            ),
            ("WITH x AS (SELECT 1) UPDATE orders SET a = 1", "UPDATE"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            (
                "EXPLAIN INSERT INTO orders VALUES (1)",
                "EXPLAIN of a statement that is not a query",
            ),
        ] {
            let refused = refusal(bad);
            let message = refused
                .as_ref()
                .map(|r| r.message.clone())
                .unwrap_or_default();
            assert!(
                message.starts_with(&format!("{named} is not allowed")),
                "{bad}: {message}"
            );
            assert!(message.contains("read-only"), "{bad}: {message}");
            assert_eq!(refused.map(|r| r.status), Some(StatusCode::BAD_REQUEST));
        }
        assert!(refusal("SELECT 1; SELECT 2").is_some_and(|r| r.message.contains("one statement")));
        assert!(refusal("SELEC 1").is_some_and(|r| r.message.contains("does not parse")));
    }

    /// A chain of `n` terms joined by `op`, and `n` UNION branches.
    fn chain(n: usize, op: &str) -> String {
        format!("SELECT {}", vec!["true"; n].join(op))
    }

    fn union(n: usize) -> String {
        (0..n)
            .map(|i| format!("SELECT {i} AS x"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    }

    #[test]
    fn nesting_up_to_the_limit_passes_and_past_it_is_refused_naming_it() {
        let limits = Limits {
            sql_depth: 50,
            ..Limits::default()
        };
        let depth = |sql: &str| check(sql, &limits).err().map(|r| (r.status, r.code));
        let deep = Some((StatusCode::BAD_REQUEST, "too_deep"));
        assert_eq!(depth(&chain(40, " AND ")), None);
        assert_eq!(depth(&chain(60, " AND ")), deep);
        assert_eq!(depth(&chain(5_000, " OR ")), deep);
        assert_eq!(depth(&union(40)), None);
        assert_eq!(depth(&union(60)), deep);
        assert_eq!(depth(&format!("SELECT * FROM ({})", union(60))), deep);
        assert_eq!(
            depth(&format!("SELECT {}", vec!["1"; 5000].join("::int::int"))),
            deep
        );
        // Parentheses: the parser's own limit, named as ours.
        let parens = format!("SELECT {}1{}", "(".repeat(500), ")".repeat(500));
        assert_eq!(depth(&parens), deep);
        let message = check(&chain(60, " AND "), &limits)
            .err()
            .map(|r| r.message)
            .unwrap_or_default();
        assert!(
            message.contains("--max-sql-depth") && message.contains("50"),
            "{message}"
        );
    }

    #[test]
    fn a_statement_past_the_size_limit_is_refused_before_parsing() {
        let limits = Limits {
            statement_bytes: 1000,
            ..Limits::default()
        };
        let big = format!("SELECT '{}'", "x".repeat(1000));
        let refused = check(&big, &limits).err();
        assert_eq!(
            refused.as_ref().map(|r| r.status),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
        assert!(
            refused.is_some_and(|r| r.message.contains("1000") && r.code == "statement_too_large")
        );
    }

    proptest::proptest! {
        /// Any chain of operators, casts and UNION branches: refused exactly when it nests
        /// past the limit, never a crash, whatever its length (up to the statement limit).
        #[test]
        fn deep_statements_are_measured_not_crashed_on(
            terms in 1usize..3_000,
            kind in 0usize..4,
        ) {
            let limits = Limits { sql_depth: 200, ..Limits::default() };
            let sql = match kind {
                0 => chain(terms, " AND "),
                1 => chain(terms, " + "),
                2 => format!("SELECT 1{}", "::bigint".repeat(terms)),
                _ => union(terms),
            };
            let refused = check(&sql, &limits).err();
            if let Some(r) = &refused {
                proptest::prop_assert_eq!(r.code, "too_deep", "{}", r.message);
            }
            // Well under the limit always passes; well over it never does.
            if terms < 150 { proptest::prop_assert!(refused.is_none()); }
            if terms > 250 { proptest::prop_assert!(refused.is_some()); }
        }
    }
}
