//! The functions that make values larger than their arguments — `repeat`, `lpad`, `rpad`,
//! `array_repeat`, `range`, `generate_series` — sized before they run. One call of
//! `repeat(s, 1000000)` over a batch of 8,192 rows would allocate 8 GB before any
//! operator could count it, and the planner folds a constant call (`repeat('x', 1e9)`)
//! while planning, before any batch exists. Wrapped here, each call first reckons the
//! bytes its result will take from its arguments, and refuses (as past the query's
//! memory) a value past `value_limit` or a call past `call_limit`. A call whose size it
//! cannot reckon (an argument of a type it does not count, such as a date range) runs.

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::compute::{cast, kernels::length::length};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF};
use datafusion::prelude::SessionContext;

use crate::transform::wrapped::{Around, wrap};

/// How a function's arguments size one row of its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: s's bytes, n times.
    Repeat,
    /// `lpad(s, n[, fill])`, `rpad`: n characters (counted a byte each).
    Pad,
    /// `array_repeat(e, n)`: n elements (counted 8 bytes each).
    ArrayRepeat,
    /// `range(stop)`, `range(start, stop[, step])`: the count of values, 8 bytes each.
    Range,
}

const FUNCTIONS: [(&str, Growth); 6] = [
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("array_repeat", Growth::ArrayRepeat),
    ("range", Growth::Range),
    ("generate_series", Growth::Range),
];

/// Puts the sized versions of the growing functions in `ctx` in place of its own.
pub fn register(ctx: &SessionContext, value_limit: usize, call_limit: usize) {
    for (name, growth) in FUNCTIONS {
        if let Some(inner) = ctx.state().scalar_functions().get(name).cloned() {
            ctx.register_udf(wrap(
                inner,
                Bounded {
                    growth,
                    value_limit,
                    call_limit,
                },
            ));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    growth: Growth,
    value_limit: usize,
    call_limit: usize,
}

/// An argument, one value per row, as whole numbers (nothing when it is not one).
fn ints(value: &ColumnarValue, rows: usize) -> Option<Int64Array> {
    let array = value.to_array(rows).ok()?;
    let ints = cast(&array, &DataType::Int64).ok()?;
    ints.as_any().downcast_ref::<Int64Array>().cloned()
}

/// An argument's byte length per row, for a string (nothing otherwise).
fn lengths(value: &ColumnarValue, rows: usize) -> Option<Int64Array> {
    let array = value.to_array(rows).ok()?;
    let text = match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 => array,
        DataType::Utf8View => cast(&array, &DataType::LargeUtf8).ok()?,
        _ => return None,
    };
    ints(&ColumnarValue::Array(length(&text).ok()?), rows)
}

/// Row `i` of `a` (a null counts as nothing).
fn at(a: &Int64Array, i: usize) -> i128 {
    if a.is_null(i) {
        0
    } else {
        i128::from(a.value(i))
    }
}

impl Bounded {
    /// The bytes of each row's result, where they can be reckoned.
    fn sizes(&self, args: &[ColumnarValue], rows: usize) -> Option<Vec<i128>> {
        let n = |i: usize| args.get(i).and_then(|a| ints(a, rows));
        let per_row = |f: &dyn Fn(usize) -> i128| Some((0..rows).map(f).collect::<Vec<i128>>());
        match self.growth {
            Growth::Repeat => {
                let (text, count) = (lengths(args.first()?, rows)?, n(1)?);
                per_row(&|i| at(&text, i) * at(&count, i).max(0))
            }
            Growth::Pad => {
                let count = n(1)?;
                per_row(&|i| at(&count, i).max(0))
            }
            Growth::ArrayRepeat => {
                let count = n(1)?;
                per_row(&|i| at(&count, i).max(0) * 8)
            }
            Growth::Range => {
                let (start, stop, step) = match args.len() {
                    1 => (None, n(0)?, None),
                    2 => (Some(n(0)?), n(1)?, None),
                    _ => (Some(n(0)?), n(1)?, Some(n(2)?)),
                };
                per_row(&|i| {
                    let from = start.as_ref().map_or(0, |s| at(s, i));
                    let by = step.as_ref().map_or(1, |s| at(s, i)).abs().max(1);
                    ((at(&stop, i) - from).abs() / by + 1) * 8
                })
            }
        }
    }

    fn check(&self, name: &str, args: &[ColumnarValue], rows: usize) -> Result<()> {
        let Some(sizes) = self.sizes(args, rows) else {
            return Ok(());
        };
        let refuse = |what: String| {
            DataFusionError::ResourcesExhausted(format!("{name}(…) would make {what}"))
        };
        if let Some(&largest) = sizes.iter().max()
            && largest > self.value_limit as i128
        {
            return Err(refuse(format!(
                "a value of {largest} bytes, more than one value may hold ({} bytes, --max-page-bytes)",
                self.value_limit
            )));
        }
        let total: i128 = sizes.iter().sum();
        if total > self.call_limit as i128 {
            return Err(refuse(format!(
                "values of {total} bytes at once, more than a query may make at once ({} bytes, --query-memory)",
                self.call_limit
            )));
        }
        Ok(())
    }
}

impl Around for Bounded {
    fn invoke(&self, inner: &ScalarUDF, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(inner.name(), &args.args, args.number_rows)?;
        inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(sql: &str) -> Result<usize> {
        let ctx = SessionContext::new();
        register(&ctx, 1 << 20, 4 << 20);
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    #[tokio::test]
    async fn growing_calls_run_within_the_limits_and_are_refused_past_them() -> Result<()> {
        for ok in [
            "SELECT repeat('ab', 1000) AS s",
            "SELECT lpad('x', 1000, 'yz') AS s",
            "SELECT rpad('x', 10) AS s",
            "SELECT array_repeat(1, 1000) AS a",
            "SELECT range(1, 10000, 3) AS r",
            "SELECT generate_series(5) AS r",
            "SELECT repeat(s, 10) AS s FROM (VALUES ('a'), (NULL), ('ccc')) t(s)",
            "SELECT range(DATE '2024-01-01', DATE '2024-02-01', INTERVAL '1' DAY) AS r",
        ] {
            assert_eq!(
                answer(ok).await.map_err(|e| e.to_string()).map(|_| ()),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            "SELECT repeat('x', 2000000) AS s",
            "SELECT lpad('x', 300000000) AS s",
            "SELECT rpad('', 2000000, 'é') AS s",
            "SELECT array_repeat(1, 1000000) AS a",
            "SELECT range(0, 1000000000) AS r",
            "SELECT generate_series(-5, 1000000000, 2) AS r",
            // Each value is small; all of them at once are not.
            "SELECT repeat('x', 800000 + i) AS s FROM (VALUES (1), (2), (3), (4), (5), (6)) t(i)",
        ] {
            let refused = answer(bad).await.err().map(|e| e.find_root().to_string());
            assert!(
                refused.as_ref().is_some_and(|m| m.contains("would make")
                    && (m.contains("--max-page-bytes") || m.contains("--query-memory"))),
                "{bad}: {refused:?}"
            );
        }
        Ok(())
    }
}
