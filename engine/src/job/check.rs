//! The checks every part of a job row's compiling shares: names, modes, `${VAR}`
//! placeholders, a SELECT. The bottom of `job/`: it imports nothing of its siblings.

use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;

use crate::spec::Mode;

/// A column or connection name: a letter or `_`, then letters, digits, `_` or `$`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// A mode's name as job rows write it.
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Full => "full",
        Mode::Incremental => "incremental",
        Mode::Snapshot => "snapshot",
        Mode::Merge => "merge",
    }
}

/// `${VAR}` placeholders must be closed and name a variable.
pub(super) fn check_placeholders(url: &str) -> Result<(), String> {
    let mut rest = url;
    while let Some(start) = rest.find("${") {
        let Some(end) = rest[start..].find('}') else {
            return Err("has an unclosed `${` placeholder; write `${VAR_NAME}`".into());
        };
        let name = &rest[start + 2..start + end];
        if !is_identifier(name) {
            return Err(format!(
                "placeholder `${{{name}}}` is not an environment variable name"
            ));
        }
        rest = &rest[start + end + 1..];
    }
    Ok(())
}

/// A list of column names: each one a name, none twice (in any case).
pub(super) fn check_column_list(
    path: &str,
    columns: &[String],
    bad: &mut impl FnMut(&str, String),
) {
    let mut seen = std::collections::HashSet::new();
    for (i, c) in columns.iter().enumerate() {
        if !is_identifier(c) {
            bad(
                &format!("{path}[{i}]"),
                format!("{c:?} is not a column name"),
            );
        } else if !seen.insert(c.to_ascii_lowercase()) {
            bad(&format!("{path}[{i}]"), format!("`{c}` is listed twice"));
        }
    }
}

/// Checks that `sql` is exactly one SELECT (or WITH … SELECT), parsed with the generic
/// dialect: what the source database or DataFusion accepts is checked when the job runs.
pub(super) fn check_select(sql: &str) -> Result<String, String> {
    let trimmed = sql.trim().trim_end_matches(';').trim();
    if trimmed.is_empty() {
        return Err("is empty; expected a SELECT".into());
    }
    let statements = DFParser::parse_sql(trimmed).map_err(|e| format!("is not valid SQL: {e}"))?;
    match statements.iter().collect::<Vec<_>>().as_slice() {
        [DfStatement::Statement(s)] if matches!(**s, Statement::Query(_)) => {
            Ok(trimmed.to_string())
        }
        [_] => Err("must be a SELECT (or WITH … SELECT); it only reads".into()),
        _ => Err(format!(
            "must be one SELECT, found {} statements",
            statements.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_checks() {
        assert!(check_select("SELECT 1;").is_ok());
        assert!(check_select("WITH a AS (SELECT 1) SELECT * FROM a").is_ok());
        assert!(check_select("DELETE FROM t").is_err());
        assert!(check_select("SELECT 1; SELECT 2").is_err());
        assert!(check_select("SELEC 1").is_err());
    }

    #[test]
    fn placeholders() {
        assert!(check_placeholders("postgres://u:${PW}@h/db").is_ok());
        assert!(check_placeholders("postgres://u:${PW@h/db").is_err());
        assert!(check_placeholders("postgres://u:${1x}@h/db").is_err());
    }
}
