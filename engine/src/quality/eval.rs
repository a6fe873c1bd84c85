//! Evaluating the rules on a run's output, batch by batch: counts per rule, the split
//! into committed and quarantined rows, and the verdict at the end.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use datafusion::arrow::compute::{filter_record_batch, kernels::boolean};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use datafusion::arrow::record_batch::RecordBatch;

use super::{Check, RULE_COLUMN, RUN_COLUMN, Rule, RuleResult};
use crate::error::{Error, Result};
use crate::spec::OnFail;

/// The name of row rule `k`'s flag column in the planned output.
fn flag_column(k: usize) -> String {
    format!("__sluice_quality_{k}")
}

/// A run's rules, fed every output batch.
pub struct Evaluator {
    rules: Vec<Rule>,
    /// Indices of the row rules, in flag-column order.
    row: Vec<usize>,
    data: SchemaRef,
    failed: Vec<u64>,
    committed: u64,
    /// Per freshness rule: the column index and the newest value seen (µs since epoch).
    newest: Vec<(usize, usize, Option<i64>)>,
    quarantine: Option<SchemaRef>,
    run_id: String,
}

impl Evaluator {
    /// `data` is the output's schema before the flag columns.
    pub fn new(rules: Vec<Rule>, data: SchemaRef, run_id: &str) -> Result<Self> {
        let row: Vec<usize> = (0..rules.len())
            .filter(|&i| rules[i].is_row_rule())
            .collect();
        let mut newest = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            if let Check::Freshness { column, .. } = &rule.check {
                let index = data.index_of(column).map_err(|_| {
                    Error::user(format!(
                        "quality rule `{}`: the output has no column `{column}`",
                        rule.name
                    ))
                })?;
                match data.field(index).data_type() {
                    DataType::Timestamp(TimeUnit::Microsecond, _) | DataType::Date32 => {}
                    other => {
                        return Err(Error::user(format!(
                            "quality rule `{}`: `{column}` is {other}; freshness needs a timestamp or date column",
                            rule.name
                        )));
                    }
                }
                newest.push((i, index, None));
            }
        }
        let quarantine = rules
            .iter()
            .any(|r| r.on_fail == OnFail::Quarantine)
            .then(|| {
                let mut fields: Vec<Arc<Field>> = data.fields().iter().cloned().collect();
                fields.push(Arc::new(Field::new(RULE_COLUMN, DataType::Utf8, false)));
                fields.push(Arc::new(Field::new(RUN_COLUMN, DataType::Utf8, false)));
                Arc::new(Schema::new(fields))
            });
        Ok(Self {
            failed: vec![0; rules.len()],
            rules,
            row,
            data,
            committed: 0,
            newest,
            quarantine,
            run_id: run_id.to_string(),
        })
    }

    /// The SQL that adds one flag column per row rule to the table `output`, or `None`
    /// when there are no row rules. A NULL result counts as a failure.
    pub fn flag_sql(&self, output: &str) -> Option<String> {
        if self.row.is_empty() {
            return None;
        }
        let flags: Vec<String> = self
            .row
            .iter()
            .enumerate()
            .map(|(k, &i)| match &self.rules[i].check {
                Check::Row(expr) => format!("coalesce(({expr}), false) AS \"{}\"", flag_column(k)),
                _ => String::new(),
            })
            .collect();
        Some(format!("SELECT *, {} FROM {output}", flags.join(", ")))
    }

    /// The quarantine table's schema (the output's plus the rule and run columns), when
    /// a rule quarantines.
    pub fn quarantine_schema(&self) -> Option<SchemaRef> {
        self.quarantine.clone()
    }

    /// Counts one output batch (with its flag columns) and splits it into the rows to
    /// commit and the rows to quarantine.
    pub fn route(&mut self, batch: &RecordBatch) -> Result<(RecordBatch, Option<RecordBatch>)> {
        let n = self.data.fields().len();
        let mut flags: Vec<&BooleanArray> = Vec::with_capacity(self.row.len());
        let mut mask: Option<BooleanArray> = None;
        for (k, &i) in self.row.iter().enumerate() {
            let column = batch
                .column(n + k)
                .as_boolean_opt()
                .ok_or_else(|| Error::internal("a quality flag is not boolean"))?;
            let failed = column.len() - column.true_count();
            self.failed[i] += failed as u64;
            if failed > 0 && self.rules[i].on_fail == OnFail::Quarantine {
                let bad = boolean::not(column).map_err(arrow_error)?;
                mask = Some(match mask {
                    None => bad,
                    Some(m) => boolean::or(&m, &bad).map_err(arrow_error)?,
                });
            }
            flags.push(column);
        }
        let data = batch
            .project(&(0..n).collect::<Vec<_>>())
            .map_err(arrow_error)?;
        let (main, quarantined) = match mask {
            None => (data, None),
            Some(mask) => {
                let keep = boolean::not(&mask).map_err(arrow_error)?;
                let main = filter_record_batch(&data, &keep).map_err(arrow_error)?;
                let moved = filter_record_batch(&data, &mask).map_err(arrow_error)?;
                (main, Some(self.quarantined(moved, &mask, &flags)?))
            }
        };
        self.committed += main.num_rows() as u64;
        for (_, index, newest) in &mut self.newest {
            let column = main.column(*index);
            let max = match column.data_type() {
                DataType::Date32 => {
                    datafusion::arrow::compute::max(column.as_primitive::<Date32Type>())
                        .map(|d| i64::from(d) * 86_400_000_000)
                }
                _ => datafusion::arrow::compute::max(
                    column.as_primitive::<TimestampMicrosecondType>(),
                ),
            };
            *newest = (*newest).max(max);
        }
        Ok((main, quarantined))
    }

    /// The quarantined rows with the names of the quarantine rules each failed.
    fn quarantined(
        &self,
        rows: RecordBatch,
        mask: &BooleanArray,
        flags: &[&BooleanArray],
    ) -> Result<RecordBatch> {
        let mut names = Vec::with_capacity(rows.num_rows());
        for row in (0..mask.len()).filter(|&r| mask.value(r)) {
            let caught: Vec<&str> = self
                .row
                .iter()
                .enumerate()
                .filter(|&(k, &i)| {
                    self.rules[i].on_fail == OnFail::Quarantine && !flags[k].value(row)
                })
                .map(|(_, &i)| self.rules[i].name.as_str())
                .collect();
            names.push(caught.join("; "));
        }
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        columns.push(Arc::new(StringArray::from(names)));
        columns.push(Arc::new(StringArray::from(vec![
            self.run_id.as_str();
            rows.num_rows()
        ])));
        let schema = self
            .quarantine
            .clone()
            .ok_or_else(|| Error::internal("quarantine without its schema"))?;
        RecordBatch::try_new(schema, columns).map_err(arrow_error)
    }

    /// Every rule's result; the error names every `fail` rule that failed.
    pub fn finish(&self, now: DateTime<Utc>) -> (Vec<RuleResult>, Option<Error>) {
        let mut results = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let (passed, detail) = match &rule.check {
                Check::Row(_) => (
                    self.failed[i] == 0,
                    if self.failed[i] == 0 {
                        String::new()
                    } else {
                        format!("{} rows failed", self.failed[i])
                    },
                ),
                Check::RowCount { min, max } => {
                    let n = self.committed;
                    let ok = min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m);
                    let bounds = match (min, max) {
                        (Some(a), Some(b)) => format!("{a} to {b}"),
                        (Some(a), None) => format!("at least {a}"),
                        (None, Some(b)) => format!("at most {b}"),
                        (None, None) => String::new(),
                    };
                    (ok, format!("{n} rows; expected {bounds}"))
                }
                Check::Freshness { column, max_age } => {
                    let newest = self
                        .newest
                        .iter()
                        .find(|(r, _, _)| *r == i)
                        .and_then(|(_, _, v)| *v)
                        .and_then(DateTime::<Utc>::from_timestamp_micros);
                    match newest {
                        None => (false, format!("no values of `{column}` in the run")),
                        Some(t) => {
                            let age = (now - t).to_std().unwrap_or_default();
                            (
                                age <= *max_age,
                                format!(
                                    "newest `{column}` {} is {}s old; at most {}s allowed",
                                    t.format("%Y-%m-%d %H:%M:%S"),
                                    age.as_secs(),
                                    max_age.as_secs()
                                ),
                            )
                        }
                    }
                }
            };
            results.push(RuleResult {
                rule: rule.name.clone(),
                on_fail: rule.on_fail,
                passed,
                failed_rows: self.failed[i],
                detail,
            });
        }
        let failures: Vec<String> = results
            .iter()
            .filter(|r| !r.passed && r.on_fail == OnFail::Fail)
            .map(|r| format!("`{}`: {}", r.rule, r.detail))
            .collect();
        let error = (!failures.is_empty()).then(|| {
            Error::user(format!(
                "quality rules failed (on_fail: fail), nothing was committed: {}; fix the source data, or set the rule's on_fail to `warn` or `quarantine`",
                failures.join("; ")
            ))
        });
        (results, error)
    }
}

fn arrow_error(e: datafusion::arrow::error::ArrowError) -> Error {
    Error::internal(format!("evaluating quality rules: {e}"))
}
