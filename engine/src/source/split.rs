//! What split reads share across databases: which integer column the parts are ranges
//! of, and the ranges themselves (equal width, every value in exactly one part).

use super::sql::Plan;
use super::types::{LakeType, SourceColumn};
use crate::error::{Error, Result};

/// The integer column the parts are ranges of: the job's `split.column`, else a
/// one-column integer primary key, else none (page ranges).
pub fn split_column(plan: &Plan, columns: &[SourceColumn]) -> Result<Option<String>> {
    let integer =
        |c: &SourceColumn| matches!(c.lake, LakeType::Int16 | LakeType::Int32 | LakeType::Int64);
    if let Some(name) = plan.split.as_ref().and_then(|s| s.column.as_ref()) {
        let column =
            super::find_column(columns, name).map_err(|e| e.context("source.split.column"))?;
        if !integer(column) {
            return Err(Error::user(format!(
                "source.split.column: `{name}` has type {}; a split column is an integer column",
                column.source_type
            )));
        }
        return Ok(Some(column.name.clone()));
    }
    Ok(match plan.primary_key.as_slice() {
        [key] => super::find_column(columns, key)
            .ok()
            .filter(|c| integer(c))
            .map(|c| c.name.clone()),
        _ => None,
    })
}

/// One condition per part for values of `column` (quoted) between `lo` and `hi`.
pub fn value_conditions(column: &str, lo: i64, hi: i64, parts: usize) -> Vec<String> {
    let bounds = bounds(i128::from(lo), i128::from(hi) + 1, parts);
    conditions(
        &bounds,
        |b| format!("{column} >= {b}"),
        |b| format!("{column} < {b}"),
        &format!("{column} IS NULL"),
    )
}

/// The inner bounds that cut `[lo, end)` into at most `parts` ranges of equal width.
pub fn bounds(lo: i128, end: i128, parts: usize) -> Vec<i128> {
    let parts = parts.max(1) as i128;
    let width = ((end - lo) + parts - 1) / parts;
    if width <= 0 {
        return Vec::new();
    }
    (1..parts)
        .map(|i| lo + i * width)
        .filter(|b| *b < end)
        .collect()
}

/// One condition per range: below the first bound (or `first_extra`), between bounds,
/// from the last bound on.
pub fn conditions(
    bounds: &[i128],
    from: impl Fn(i128) -> String,
    below: impl Fn(i128) -> String,
    first_extra: &str,
) -> Vec<String> {
    let Some((&first, _)) = bounds.split_first() else {
        return vec!["TRUE".into()];
    };
    let mut out = vec![format!("{} OR {first_extra}", below(first))];
    out.extend(
        bounds
            .windows(2)
            .map(|w| format!("{} AND {}", from(w[0]), below(w[1]))),
    );
    if let Some(&last) = bounds.last() {
        out.push(from(last));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_everything_once() {
        assert_eq!(bounds(1, 101, 4), [26, 51, 76]);
        assert_eq!(bounds(0, 3, 4), [1, 2]);
        assert!(bounds(5, 5, 4).is_empty());
        assert_eq!(
            conditions(
                &[10, 20],
                |b| format!("c >= {b}"),
                |b| format!("c < {b}"),
                "c IS NULL"
            ),
            ["c < 10 OR c IS NULL", "c >= 10 AND c < 20", "c >= 20"]
        );
        assert_eq!(
            conditions(&[], |b| b.to_string(), |b| b.to_string(), "x"),
            ["TRUE"]
        );
        // Extreme values do not overflow.
        assert_eq!(
            bounds(i128::from(i64::MIN), i128::from(i64::MAX) + 1, 2).len(),
            1
        );
    }
}
