//! Schema contracts: the columns a lake table promises its readers, and what a run does
//! when its output differs from them (`target.on_schema_change`).
//!
//! The contract is the job row's `target.schema` when given, else the first run's output,
//! frozen in the job's state. Each run compares its output (after the transform) with the
//! contract before any row is written, and [`resolve`] turns the differences into a plan:
//! which output column (cast to which type) or NULL feeds each contract column, the
//! contract after the run, and the drift to report. Under every policy a value is never
//! changed silently: casts are only the lossless ones, or checked ones that fail the run
//! on a value that does not fit.

use datafusion::arrow::datatypes::Schema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::lake_type::{LakeType, athena_name};
use crate::spec::{ColumnSpec, OnSchemaChange};

/// One column of a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub lake: LakeType,
    pub nullable: bool,
}

impl Column {
    pub fn spec(&self) -> ColumnSpec {
        ColumnSpec {
            name: self.name.clone(),
            data_type: self.lake.contract_name(),
            nullable: (!self.nullable).then_some(false),
        }
    }
}

/// Compiles `target.schema`; problems are `(path, message)` pairs.
pub fn compile(specs: &[ColumnSpec]) -> std::result::Result<Vec<Column>, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, spec) in specs.iter().enumerate() {
        if athena_name(&spec.name) != spec.name {
            problems.push((
                format!("target.schema[{i}].name"),
                format!(
                    "{:?} is not an Athena column name: use lower-case letters, digits and `_` (`{}`)",
                    spec.name,
                    athena_name(&spec.name)
                ),
            ));
        }
        if !seen.insert(spec.name.as_str()) {
            problems.push((
                format!("target.schema[{i}].name"),
                format!("`{}` is listed twice", spec.name),
            ));
        }
        match LakeType::parse(&spec.data_type) {
            Ok(lake) => out.push(Column {
                name: spec.name.clone(),
                lake,
                nullable: spec.nullable.unwrap_or(true),
            }),
            Err(m) => problems.push((format!("target.schema[{i}].type"), m)),
        }
    }
    if specs.is_empty() {
        problems.push((
            "target.schema".into(),
            "lists no columns; list the table's columns, or leave it out to freeze the first run's"
                .into(),
        ));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// The contract as the state store keeps it: frozen from a first run, or the job row's
/// as evolved by later runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredContract {
    pub columns: Vec<ColumnSpec>,
    /// A hash of the job row's `target.schema` this contract started from (absent when
    /// frozen from a run). When the row's schema changes, the row's wins again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_row: Option<String>,
}

/// A short hash of a contract, to tell whether a job row's `target.schema` changed.
pub fn fingerprint(columns: &[Column]) -> String {
    let mut h = Sha256::new();
    for c in columns {
        h.update(format!(
            "{}\0{}\0{}\n",
            c.name,
            c.lake.contract_name(),
            c.nullable
        ));
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl StoredContract {
    pub fn new(columns: &[Column], from_row: Option<String>) -> Self {
        Self {
            columns: columns.iter().map(Column::spec).collect(),
            from_row,
        }
    }

    pub fn columns(&self) -> Result<Vec<Column>> {
        compile(&self.columns).map_err(|p| {
            Error::user(format!(
                "the contract in the job's state is not valid: {}",
                p.into_iter()
                    .map(|(path, m)| format!("{path}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })
    }
}

/// The contract in force: the job row's when it changed since the state's was made
/// (or there is none in the state), else the state's; `None` before the first run of a
/// job without `target.schema`.
pub fn effective(
    row: Option<&[Column]>,
    stored: Option<&StoredContract>,
) -> Result<Option<Vec<Column>>> {
    match (row, stored) {
        (Some(row), Some(stored)) if stored.from_row.as_deref() == Some(&fingerprint(row)) => {
            stored.columns().map(Some)
        }
        (Some(row), _) => Ok(Some(row.to_vec())),
        (None, Some(stored)) => stored.columns().map(Some),
        (None, None) => Ok(None),
    }
}

/// What feeds one contract column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feed {
    /// The output column at this index, cast to the contract type when it differs.
    Output(usize),
    /// NULL: the output no longer has the column.
    Null,
}

/// How the output differs from the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A column the contract does not have.
    Added,
    /// A contract column the output does not have.
    Dropped,
    /// A contract column missing where an added column of the same type stands.
    Renamed,
    /// The output's type is wider than the contract's.
    Widened,
    /// The output's type is narrower than the contract's (its values fit).
    Narrowed,
    /// Neither type holds the other's values.
    Changed,
}

/// One difference between a run's output and the contract, and what the run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub column: String,
    pub change: Change,
    /// The contract's side (a type, or a renamed column's old name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The output's side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// What the run did about it.
    pub action: String,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let change = serde_json::to_value(self.change)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        write!(f, "{change} `{}`", self.column)?;
        match (&self.from, &self.to) {
            (Some(from), Some(to)) if self.change == Change::Renamed => {
                write!(f, " (was `{from}`, {to})")?
            }
            (Some(from), Some(to)) => write!(f, " ({from} → {to})")?,
            (None, Some(to)) => write!(f, " ({to})")?,
            (Some(from), None) => write!(f, " ({from})")?,
            (None, None) => {}
        }
        Ok(())
    }
}

/// The plan for one run's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The contract after this run (what the catalog shows).
    pub contract: Vec<Column>,
    /// What feeds each contract column, in contract order.
    pub feeds: Vec<Feed>,
    pub drift: Vec<Drift>,
    /// The output already is the contract: same names, types and order.
    pub identity: bool,
    /// The contract was frozen from this run's output.
    pub frozen: bool,
}

/// The output's columns as the lake sees them: Athena names and lake types.
pub fn output_columns(output: &Schema) -> Result<Vec<Column>> {
    let mut out: Vec<Column> = Vec::new();
    let mut problems = Vec::new();
    for field in output.fields() {
        let name = athena_name(field.name());
        let Some(lake) = LakeType::from_arrow(field.data_type()) else {
            problems.push(format!(
                "`{}` is {}, which the lake does not hold; cast it in the transform (to a string with `CAST(x AS VARCHAR)`, or pick its parts)",
                field.name(),
                field.data_type()
            ));
            continue;
        };
        if let Some(other) = out.iter().find(|c| c.name == name) {
            problems.push(format!(
                "`{}` and another output column both become `{}` (Athena names are lower case, `_` for other characters); rename one",
                field.name(),
                other.name
            ));
        }
        out.push(Column {
            name,
            lake,
            nullable: true,
        });
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Error::user(format!(
            "the output's columns cannot be lake columns: {}",
            problems.join("; ")
        )))
    }
}

/// Compares the output with the contract under `policy`. Fails (the user's error, nothing
/// written yet) listing every difference the policy refuses.
pub fn resolve(
    contract: Option<&[Column]>,
    policy: OnSchemaChange,
    output: &[Column],
) -> Result<Resolution> {
    let Some(contract) = contract else {
        return Ok(Resolution {
            contract: output.to_vec(),
            feeds: (0..output.len()).map(Feed::Output).collect(),
            drift: Vec::new(),
            identity: true,
            frozen: true,
        });
    };
    let mut next: Vec<Column> = Vec::new();
    let mut feeds = Vec::new();
    let mut drift = Vec::new();
    let mut refused = Vec::new();
    let index = |name: &str| output.iter().position(|o| o.name == name);
    let added: Vec<usize> = (0..output.len())
        .filter(|&i| !contract.iter().any(|c| c.name == output[i].name))
        .collect();
    let mut renamed_to = std::collections::BTreeSet::new();
    for (pos, c) in contract.iter().enumerate() {
        let mut col = c.clone();
        let (change, from, to, feed, action) = match index(&c.name) {
            Some(i) if output[i].lake == c.lake => {
                next.push(col);
                feeds.push(Feed::Output(i));
                continue;
            }
            Some(i) => {
                let (o, t) = (output[i].lake, c.lake);
                let change = if o.fits_in(t) {
                    Change::Narrowed
                } else if t.fits_in(o) {
                    Change::Widened
                } else {
                    Change::Changed
                };
                let action = match (policy, change) {
                    (OnSchemaChange::Fail, _) => None,
                    (_, Change::Narrowed) => Some(format!("cast to {}", t.contract_name())),
                    (OnSchemaChange::Evolve, Change::Widened) => {
                        col.lake = o;
                        Some(format!("contract widened to {}", o.contract_name()))
                    }
                    (OnSchemaChange::Ignore, _) => Some(format!(
                        "cast to {} (a value that does not fit fails the run)",
                        t.contract_name()
                    )),
                    (OnSchemaChange::Evolve, _) => None,
                };
                (
                    change,
                    Some(t.contract_name()),
                    Some(o.contract_name()),
                    Feed::Output(i),
                    action,
                )
            }
            None => {
                // A rename shows as a column gone and one new of the same type at its place.
                let rename = added
                    .iter()
                    .copied()
                    .find(|&i| i == pos && output[i].lake == c.lake);
                let (change, from, to) = match rename {
                    Some(i) => {
                        renamed_to.insert(i);
                        (
                            Change::Renamed,
                            Some(c.name.clone()),
                            Some(format!("now `{}`", output[i].name)),
                        )
                    }
                    None => (Change::Dropped, Some(c.lake.contract_name()), None),
                };
                let action = match policy {
                    OnSchemaChange::Fail => None,
                    _ if !c.nullable => None,
                    _ => Some("written as NULL".to_string()),
                };
                let column = match rename {
                    Some(i) => output[i].name.clone(),
                    None => c.name.clone(),
                };
                drift.push(Drift {
                    column,
                    change,
                    from,
                    to,
                    action: action.clone().unwrap_or_else(|| "refused".into()),
                });
                if action.is_none() {
                    refused.push(drift.len() - 1);
                }
                next.push(col);
                feeds.push(Feed::Null);
                continue;
            }
        };
        drift.push(Drift {
            column: c.name.clone(),
            change,
            from,
            to,
            action: action.clone().unwrap_or_else(|| "refused".into()),
        });
        if action.is_none() {
            refused.push(drift.len() - 1);
        }
        next.push(col);
        feeds.push(feed);
    }
    for i in added {
        let action = match policy {
            OnSchemaChange::Fail => None,
            OnSchemaChange::Evolve => {
                next.push(Column {
                    nullable: true,
                    ..output[i].clone()
                });
                feeds.push(Feed::Output(i));
                Some("added to the contract (nullable)".to_string())
            }
            OnSchemaChange::Ignore => Some("dropped".to_string()),
        };
        if renamed_to.contains(&i) {
            // Reported with the rename; evolve still adds it, ignore still drops it.
            if let (Some(action), Some(d)) = (
                &action,
                drift.iter_mut().find(|d| d.column == output[i].name),
            ) {
                d.action = format!("old column {}; `{}` {action}", d.action, output[i].name);
            }
            continue;
        }
        drift.push(Drift {
            column: output[i].name.clone(),
            change: Change::Added,
            from: None,
            to: Some(output[i].lake.contract_name()),
            action: action.clone().unwrap_or_else(|| "refused".into()),
        });
        if action.is_none() {
            refused.push(drift.len() - 1);
        }
    }
    if !refused.is_empty() {
        return Err(refusal(policy, &drift, &refused));
    }
    let identity = drift.is_empty() && next.len() == output.len();
    Ok(Resolution {
        contract: next,
        feeds,
        drift,
        identity,
        frozen: false,
    })
}

fn refusal(policy: OnSchemaChange, drift: &[Drift], refused: &[usize]) -> Error {
    let listed: Vec<String> = refused.iter().map(|&i| drift[i].to_string()).collect();
    let advice = match policy {
        OnSchemaChange::Fail => {
            "change target.schema to the new columns, or set target.on_schema_change to `evolve` (add columns, widen types) or `ignore` (keep the contract)"
        }
        OnSchemaChange::Evolve => {
            "evolve only adds nullable columns and widens types; a rename, a narrowing, another type or a NOT NULL column gone needs a change to target.schema (or a cast in the transform)"
        }
        OnSchemaChange::Ignore => {
            "a NOT NULL column of the contract is gone: change target.schema, or put the column back in the transform"
        }
    };
    let policy = match policy {
        OnSchemaChange::Fail => "fail",
        OnSchemaChange::Evolve => "evolve",
        OnSchemaChange::Ignore => "ignore",
    };
    Error::user(format!(
        "the output differs from the table's schema contract (on_schema_change: {policy}): {}; {advice}",
        listed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, lake: LakeType) -> Column {
        Column {
            name: name.into(),
            lake,
            nullable: true,
        }
    }

    fn contract() -> Vec<Column> {
        vec![
            col("id", LakeType::Int32),
            col("name", LakeType::String),
            col(
                "amount",
                LakeType::Decimal {
                    precision: 10,
                    scale: 2,
                },
            ),
        ]
    }

    #[test]
    fn same_columns_are_the_identity() -> Result<()> {
        let r = resolve(Some(&contract()), OnSchemaChange::Fail, &contract())?;
        assert!(r.identity && r.drift.is_empty());
        Ok(())
    }

    #[test]
    fn fail_lists_every_difference() {
        let mut out = contract();
        out[0].lake = LakeType::Int64;
        out.push(col("extra", LakeType::Date));
        out.remove(1);
        let err = resolve(Some(&contract()), OnSchemaChange::Fail, &out).err();
        let message = err.map(|e| e.message).unwrap_or_default();
        for part in [
            "widened `id` (int → bigint)",
            "dropped `name`",
            "added `extra` (date)",
        ] {
            assert!(message.contains(part), "{message}");
        }
    }

    #[test]
    fn evolve_adds_and_widens_but_never_narrows_the_contract() -> Result<()> {
        let mut out = contract();
        out[0].lake = LakeType::Int64;
        out[2].lake = LakeType::Decimal {
            precision: 6,
            scale: 2,
        };
        out.push(col("extra", LakeType::Date));
        let r = resolve(Some(&contract()), OnSchemaChange::Evolve, &out)?;
        assert_eq!(r.contract[0].lake, LakeType::Int64);
        assert_eq!(
            r.contract[2].lake,
            LakeType::Decimal {
                precision: 10,
                scale: 2
            }
        );
        assert_eq!(r.contract[3].name, "extra");
        assert_eq!(r.drift.len(), 3);
        let mut changed = contract();
        changed[1].lake = LakeType::Int64;
        assert!(resolve(Some(&contract()), OnSchemaChange::Evolve, &changed).is_err());
        Ok(())
    }

    #[test]
    fn a_rename_is_a_drop_and_an_add() -> Result<()> {
        let mut out = contract();
        out[1].name = "full_name".into();
        assert!(
            resolve(Some(&contract()), OnSchemaChange::Evolve, &out)
                .is_ok_and(|r| r.feeds[1] == Feed::Null && r.contract.len() == 4)
        );
        let r = resolve(Some(&contract()), OnSchemaChange::Ignore, &out)?;
        assert_eq!(r.contract, contract());
        assert_eq!(r.drift[0].change, Change::Renamed);
        Ok(())
    }

    #[test]
    fn ignore_keeps_the_contract() -> Result<()> {
        let mut out = contract();
        out.remove(2);
        out.push(col("extra", LakeType::Date));
        let r = resolve(Some(&contract()), OnSchemaChange::Ignore, &out)?;
        assert_eq!(r.contract, contract());
        assert_eq!(r.feeds, vec![Feed::Output(0), Feed::Output(1), Feed::Null]);
        Ok(())
    }

    #[test]
    fn type_names_read_back() {
        for t in [
            "int",
            "bigint",
            "decimal(38,10)",
            "timestamp with time zone",
            "string",
        ] {
            assert_eq!(
                LakeType::parse(t).map(LakeType::contract_name),
                Ok(t.to_string())
            );
        }
        assert!(LakeType::parse("decimal(40,2)").is_err());
        assert!(LakeType::parse("map<string,int>").is_err());
    }
}
