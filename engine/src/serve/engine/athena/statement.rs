//! The statement Athena is sent: checked against the key's tables in the database, and
//! its parameters turned into Athena's `?` and literals (bound, never spliced).

use datafusion::common::TableReference;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::serve::keys::Key;
use crate::serve::refusal::Refusal;

/// Refused unless every table the statement names is one of the key's in `database`.
pub(super) fn allowed(sql: &str, key: &Key, database: &str) -> Result<(), Refusal> {
    let mut statements = DFParser::parse_sql(sql)
        .map_err(|e| Refusal::bad(format!("the SQL does not parse: {e}")))?;
    let statement = statements
        .pop_front()
        .ok_or_else(|| Refusal::bad("no statement"))?;
    if let DFStatement::Statement(inner) = &statement
        && matches!(
            inner.as_ref(),
            Statement::ShowTables { .. }
                | Statement::ShowColumns { .. }
                | Statement::ExplainTable { .. }
        )
    {
        return Err(Refusal::bad(
            "SHOW and DESCRIBE are not sent to Athena: GET /v1/tables lists your tables and their columns",
        ));
    }
    let (tables, _) = datafusion::sql::resolve::resolve_table_references(&statement, false)
        .map_err(|e| Refusal::bad(format!("the SQL's tables: {e}")))?;
    for table in tables {
        let visible = match &table {
            TableReference::Bare { table } => key.allows(table),
            TableReference::Partial { schema, table } => {
                schema.as_ref() == database && key.allows(table)
            }
            TableReference::Full { .. } => false,
        };
        if !visible {
            return Err(Refusal::bad(format!(
                "no table `{table}` (GET /v1/tables lists the ones there are)"
            )));
        }
    }
    Ok(())
}

/// The statement's text with each `$1` / `$name` turned into Athena's `?`, and the values
/// in the order the placeholders come, as the literals Athena parses them from.
pub(super) fn bind(
    text: &str,
    params: Option<&serde_json::Value>,
) -> Result<(String, Vec<String>), Refusal> {
    let tokens = Tokenizer::new(&GenericDialect {}, text)
        .tokenize()
        .map_err(|e| Refusal::bad(format!("the SQL does not parse: {e}")))?;
    let mut sql = String::with_capacity(text.len());
    let mut values = Vec::new();
    for token in tokens {
        match &token {
            Token::Placeholder(name) if name.starts_with('$') => {
                let name = &name[1..];
                let value = match (params, name.parse::<usize>()) {
                    (Some(serde_json::Value::Array(list)), Ok(n)) if n >= 1 => list.get(n - 1),
                    (Some(serde_json::Value::Object(map)), _) => map.get(name),
                    _ => None,
                }
                .ok_or_else(|| Refusal::bad(format!("no parameter given for ${name}")))?;
                values.push(literal(value)?);
                sql.push('?');
            }
            other => sql.push_str(&other.to_string()),
        }
    }
    Ok((sql, values))
}

/// A JSON parameter as the SQL literal Athena reads one value from.
fn literal(value: &serde_json::Value) -> Result<String, Refusal> {
    Ok(match value {
        serde_json::Value::Null => "NULL".into(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => format!("'{}'", s.replace('\'', "''")),
        other => {
            return Err(Refusal::bad(format!(
                "a parameter is a string, number, boolean or null, not {other}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused<T>(result: Result<T, Refusal>) -> String {
        match result {
            Ok(_) => "allowed".into(),
            Err(refusal) => refusal.message,
        }
    }

    #[test]
    fn placeholders_become_question_marks_and_values_literals_in_their_order() {
        let params = serde_json::json!(["it's", 42]);
        let (sql, values) = match bind(
            "SELECT '$1 stays' AS s, a FROM t WHERE b = $2 AND c = $1",
            Some(&params),
        ) {
            Ok(bound) => bound,
            Err(refusal) => panic!("{}", refusal.message),
        };
        assert_eq!(
            sql,
            "SELECT '$1 stays' AS s, a FROM t WHERE b = ? AND c = ?"
        );
        assert_eq!(values, vec!["42".to_string(), "'it''s'".to_string()]);
        let named = serde_json::json!({"who": null, "ok": true});
        let bound = bind("SELECT $who, $ok", Some(&named)).map_err(|r| r.message);
        assert_eq!(
            bound,
            Ok(("SELECT ?, ?".into(), vec!["NULL".into(), "true".into()]))
        );
        assert!(refused(bind("SELECT $3", Some(&params))).contains("no parameter given for $3"));
        assert!(refused(bind("SELECT $1", None)).contains("no parameter given for $1"));
        let nested = serde_json::json!([[1]]);
        assert!(refused(bind("SELECT $1", Some(&nested))).contains("not [1]"));
    }

    #[test]
    fn a_statement_names_only_the_keys_tables_in_the_database() {
        let partner = Key::new("partner", vec!["customers".into()]);
        let ok = |sql: &str| refused(allowed(sql, &partner, "lake"));
        assert_eq!(ok("SELECT * FROM customers"), "allowed");
        assert_eq!(ok("SELECT * FROM lake.customers"), "allowed");
        assert_eq!(
            ok("WITH c AS (SELECT * FROM customers) SELECT * FROM c"),
            "allowed"
        );
        assert!(ok("SELECT * FROM orders").contains("no table `orders`"));
        assert!(ok("SELECT * FROM customers JOIN orders USING (id)").contains("`orders`"));
        assert!(ok("SELECT * FROM other.customers").contains("`other.customers`"));
        assert!(ok("SELECT * FROM cat.lake.customers").contains("no table"));
        assert!(ok("SELECT (SELECT max(id) FROM orders) FROM customers").contains("`orders`"));
        assert!(ok("SHOW TABLES").contains("GET /v1/tables"));
    }
}
