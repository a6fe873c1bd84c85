//! The catalog: lake tables as Athena sees them, without a crawler.
//!
//! After each run (and with `sluice catalog sync`) a job's table is created or updated in
//! the Glue Data Catalog: Parquet SerDe, the contract's columns with their Athena types,
//! the partition keys as strings, and either its partitions (registered from the lake's
//! folders; ones no longer in the lake are removed) or partition-projection properties
//! computed from the partition values present (`target.catalog.projection`). Publishing
//! compares before it writes, so repeating it changes nothing. `sluice ddl` prints the
//! same table as an Athena `CREATE EXTERNAL TABLE`.

pub mod commands;
pub mod glue;

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;

use crate::contract::Column;
use crate::error::{Error, Result};
use crate::job::{Compression, Job, Mode};
use crate::lake_type::LakeType;
use crate::quality::{self, RULE_COLUMN, RUN_COLUMN};
use crate::sink::{Lake, run_key_of};

/// Parquet, as Hive and Athena name its classes.
pub const INPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
pub const OUTPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
pub const SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";

/// The value of `--catalog`: where runs publish, if anywhere.
pub fn default_database(setting: &str) -> Result<Option<String>> {
    match setting {
        "" | "none" | "off" => Ok(None),
        other => match other.strip_prefix("glue://") {
            Some(db) if crate::job::is_identifier(db) => Ok(Some(db.to_lowercase())),
            _ => Err(Error::user(format!(
                "--catalog {other:?}: give `none` or `glue://DATABASE` (a Glue database name: letters, digits, `_`)"
            ))),
        },
    }
}

/// One lake table as the catalog holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    pub database: String,
    pub name: String,
    /// `s3://bucket/prefix/table/`.
    pub location: String,
    /// Columns in the files: name and Athena type.
    pub columns: Vec<(String, String)>,
    /// Partition keys (strings in the catalog), outermost first.
    pub partition_keys: Vec<String>,
    pub parameters: BTreeMap<String, String>,
    /// Partition values present in the lake (unescaped), each with its folder.
    pub partitions: Vec<Partition>,
    pub projection: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Partition {
    pub values: Vec<String>,
    /// The folder below the table (`dt=2024-05-01`), escaped as in the lake.
    pub path: String,
}

/// The partition keys of a job's table: `snapshot` first for snapshot jobs.
pub fn partition_keys(job: &Job) -> Vec<String> {
    let mut keys = Vec::new();
    if job.mode == Mode::Snapshot {
        keys.push("snapshot".to_string());
    }
    keys.extend(job.target.partition_by.iter().cloned());
    keys
}

/// The tables a job publishes: its table, and its quarantine table when a rule
/// quarantines or the job reads a feed (whose quarantine holds undecodable messages).
pub fn job_tables(job: &Job, contract: &[Column], database: &str, lake: &Lake) -> Vec<TableDef> {
    let keys = partition_keys(job);
    let data: Vec<(String, String)> = contract
        .iter()
        .filter(|c| !keys.contains(&c.name))
        .map(|c| (c.name.clone(), c.lake.athena()))
        .collect();
    let location = |table: &str| format!("{}/{table}/", lake.url().trim_end_matches('/'));
    let mut parameters = BTreeMap::from([
        ("classification".to_string(), "parquet".to_string()),
        ("EXTERNAL".to_string(), "TRUE".to_string()),
        (
            "parquet.compression".to_string(),
            match job.target.compression {
                Compression::Zstd => "ZSTD",
                Compression::Snappy => "SNAPPY",
                Compression::None => "UNCOMPRESSED",
            }
            .to_string(),
        ),
        ("sluice.job".to_string(), job.id.clone()),
    ]);
    if let Some(description) = &job.description {
        parameters.insert("comment".into(), description.clone());
    }
    let table = TableDef {
        database: database.to_string(),
        name: job.target.table.clone(),
        location: location(&job.target.table),
        columns: data.clone(),
        partition_keys: keys,
        parameters,
        partitions: Vec::new(),
        projection: job.target.projection,
    };
    let quarantine_table = quality::quarantine_table(&job.target.table);
    let quarantine = if job
        .quality
        .iter()
        .any(|r| r.on_fail == crate::spec::OnFail::Quarantine)
    {
        let mut columns = data;
        columns.push((RULE_COLUMN.into(), "string".into()));
        columns.push((RUN_COLUMN.into(), "string".into()));
        let comment = format!(
            "rows of {} that quality rules quarantined",
            job.target.table
        );
        Some((columns, table.partition_keys.clone(), comment))
    } else if matches!(
        job.from,
        crate::job::From::Queue(_) | crate::job::From::Http(_)
    ) {
        let columns = crate::source::records::poison_schema()
            .fields()
            .iter()
            .map(|f| {
                let lake = LakeType::from_arrow(f.data_type()).unwrap_or(LakeType::String);
                (f.name().clone(), lake.athena())
            })
            .collect();
        let comment = format!(
            "messages of {} that could not be decoded, with their raw body",
            job.target.table
        );
        Some((columns, Vec::new(), comment))
    } else {
        None
    };
    let mut out = vec![table.clone()];
    if let Some((columns, partition_keys, comment)) = quarantine {
        let mut parameters = table.parameters.clone();
        parameters.insert("comment".into(), comment);
        out.push(TableDef {
            location: location(&quarantine_table),
            name: quarantine_table,
            columns,
            partition_keys,
            parameters,
            ..table
        });
    }
    if job.target.format == crate::spec::TableFormat::Delta {
        out[0] = delta_table(&out[0], job, contract);
    }
    out
}

/// A job's table as Athena's native Delta Lake support takes it from Glue: its location
/// and `table_type = DELTA`, every column (partition columns too, in the table's order),
/// no partition keys.
fn delta_table(def: &TableDef, job: &Job, contract: &[Column]) -> TableDef {
    let mut columns: Vec<(String, String)> = Vec::new();
    if job.mode == Mode::Snapshot {
        columns.push(("snapshot".into(), "string".into()));
    }
    columns.extend(contract.iter().map(|c| (c.name.clone(), c.lake.athena())));
    let mut parameters = def.parameters.clone();
    parameters.insert("table_type".into(), "DELTA".into());
    parameters.insert("classification".into(), "delta".into());
    parameters.remove("parquet.compression");
    TableDef {
        columns,
        partition_keys: Vec::new(),
        parameters,
        projection: false,
        ..def.clone()
    }
}

/// Reads the table's partitions from the lake's folders (sluice's data files only).
async fn lake_partitions(lake: &Lake, def: &TableDef) -> Result<Vec<Partition>> {
    let mut found = BTreeSet::new();
    for object in lake.list(&lake.table_dir(&def.name)?).await? {
        if object.location.filename().and_then(run_key_of).is_none() {
            continue;
        }
        let relative = lake.relative(&object.location);
        let Some(rest) = relative.strip_prefix(&format!("{}/", def.name)) else {
            continue;
        };
        let Some((folder, _file)) = rest.rsplit_once('/') else {
            continue;
        };
        let mut values = Vec::new();
        for (segment, key) in folder.split('/').zip(&def.partition_keys) {
            match segment.split_once('=') {
                Some((k, v)) if k == key => {
                    values.push(crate::sink::writer::unescape_partition_value(v))
                }
                _ => break,
            }
        }
        if values.len() == def.partition_keys.len() {
            found.insert(Partition {
                values,
                path: folder.to_string(),
            });
        }
    }
    Ok(found.into_iter().collect())
}

/// Partition-projection properties from the values present: `date` for `yyyy-MM-dd`
/// values (up to NOW, so that new days need no update, or up to the latest day when the
/// rows hold days after today), `integer` for whole numbers, else `enum` of the values
/// seen (refreshed by every run). A key without values yet is `injected` (queries name
/// the value).
pub fn projection_properties(def: &TableDef, today: chrono::NaiveDate) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("projection.enabled".to_string(), "true".to_string());
    let mut template = def.location.clone();
    for (k, key) in def.partition_keys.iter().enumerate() {
        let values: BTreeSet<&str> = def
            .partitions
            .iter()
            .map(|p| p.values[k].as_str())
            .collect();
        let prop = |name: &str| format!("projection.{key}.{name}");
        let is_date =
            |v: &&str| chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok() && v.len() == 10;
        let ints: Option<Vec<i64>> = values.iter().map(|v| v.parse().ok()).collect();
        if values.is_empty() || values.iter().any(|v| v.contains(',')) {
            out.insert(prop("type"), "injected".into());
        } else if values.iter().all(is_date) {
            out.insert(prop("type"), "date".into());
            out.insert(prop("format"), "yyyy-MM-dd".into());
            // Sorted text of `yyyy-MM-dd` is sorted by day.
            let first = values.iter().next().copied().unwrap_or_default();
            let last = values.iter().next_back().copied().unwrap_or_default();
            let end = if last > today.format("%Y-%m-%d").to_string().as_str() {
                last
            } else {
                "NOW"
            };
            out.insert(prop("range"), format!("{first},{end}"));
            out.insert(prop("interval"), "1".into());
            out.insert(prop("interval.unit"), "DAYS".into());
        } else if let Some(ints) = ints {
            let (lo, hi) = (
                ints.iter().min().copied().unwrap_or(0),
                ints.iter().max().copied().unwrap_or(0),
            );
            out.insert(prop("type"), "integer".into());
            out.insert(prop("range"), format!("{lo},{hi}"));
        } else {
            out.insert(prop("type"), "enum".into());
            out.insert(
                prop("values"),
                values.into_iter().collect::<Vec<_>>().join(","),
            );
        }
        template.push_str(&format!("{key}=${{{key}}}/"));
    }
    out.insert("storage.location.template".to_string(), template);
    out
}

impl TableDef {
    /// A Delta Lake table (`table_type = DELTA`): Athena reads its files, schema and
    /// partitions from its log; nothing is registered per partition.
    pub fn is_delta(&self) -> bool {
        self.parameters.get("table_type").map(String::as_str) == Some("DELTA")
    }

    /// The table parameters to publish: the base ones plus projection, when on.
    pub fn all_parameters(&self) -> BTreeMap<String, String> {
        let mut out = self.parameters.clone();
        if self.projection && !self.partition_keys.is_empty() {
            out.extend(projection_properties(self, Utc::now().date_naive()));
        }
        out
    }

    /// Fills `partitions` from the lake, refusing values projection could not reach.
    pub async fn load_partitions(&mut self, lake: &Lake) -> Result<()> {
        self.partitions = lake_partitions(lake, self).await?;
        self.check_projectable()
    }

    /// Partition projection finds a partition's folder by putting its values into
    /// `storage.location.template` as they are; a value the lake escaped in its folder
    /// name (`/`, `:`, `=`, `%`, …) would be looked for in the wrong place and its rows
    /// would be missing from every query. Such a table is refused with what to do.
    fn check_projectable(&self) -> Result<()> {
        if !self.projection {
            return Ok(());
        }
        let unreachable: Vec<&str> = self
            .partitions
            .iter()
            .filter(|p| {
                let plain: Vec<String> = self
                    .partition_keys
                    .iter()
                    .zip(&p.values)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                plain.join("/") != p.path
            })
            .map(|p| p.path.as_str())
            .collect();
        if unreachable.is_empty() {
            return Ok(());
        }
        Err(Error::user(format!(
            "table `{}`: partition projection cannot reach the folder{} {} (a value holding one of \" # % ' * / : = ? \\ {{ [ ] ^ or a control character is escaped in its folder name, and projection does not escape); set target.catalog.projection to false to register partitions instead, or partition by a value without those characters",
            self.name,
            if unreachable.len() == 1 { "" } else { "s" },
            unreachable
                .iter()
                .take(5)
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// The Athena DDL for the table.
    pub fn ddl(&self) -> String {
        let quote = |s: &str| s.replace('\'', "\\'");
        if self.is_delta() {
            // Athena reads a Delta table's columns from its log and takes none here.
            let columns: Vec<String> = self
                .columns
                .iter()
                .map(|(name, t)| format!("--   `{name}` {t}"))
                .collect();
            return format!(
                "-- a Delta Lake table; Athena reads its columns from the log:\n{}\nCREATE EXTERNAL TABLE IF NOT EXISTS `{}`.`{}`\nLOCATION '{}'\nTBLPROPERTIES ('table_type'='DELTA');\n",
                columns.join("\n"),
                self.database,
                self.name,
                quote(&self.location)
            );
        }
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|(name, t)| format!("  `{name}` {t}"))
            .collect();
        let mut out = format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS `{}`.`{}` (\n{}\n)\n",
            self.database,
            self.name,
            columns.join(",\n")
        );
        if !self.partition_keys.is_empty() {
            let keys: Vec<String> = self
                .partition_keys
                .iter()
                .map(|k| format!("`{k}` string"))
                .collect();
            out.push_str(&format!("PARTITIONED BY ({})\n", keys.join(", ")));
        }
        out.push_str(&format!(
            "ROW FORMAT SERDE '{SERDE}'\nSTORED AS INPUTFORMAT '{INPUT_FORMAT}'\nOUTPUTFORMAT '{OUTPUT_FORMAT}'\nLOCATION '{}'\n",
            quote(&self.location)
        ));
        let properties: Vec<String> = self
            .all_parameters()
            .iter()
            .filter(|(k, _)| k.as_str() != "EXTERNAL")
            .map(|(k, v)| format!("  '{}'='{}'", quote(k), quote(v)))
            .collect();
        out.push_str(&format!(
            "TBLPROPERTIES (\n{}\n);\n",
            properties.join(",\n")
        ));
        if !self.partition_keys.is_empty() && !self.projection {
            out.push_str(&format!(
                "-- partitions: sluice registers them after each run; by hand: MSCK REPAIR TABLE `{}`.`{}`;\n",
                self.database, self.name
            ));
        }
        out
    }
}

/// The contract a job's table has now: the row's, else the state's; an error when there
/// is neither (the job never ran and gives no `target.schema`).
pub async fn current_contract(
    job: &Job,
    store: &dyn crate::store::StateStore,
) -> Result<Option<Vec<Column>>> {
    let state = store.load(&job.id).await?;
    crate::contract::effective(job.target.schema.as_deref(), state.value.contract.as_ref())
}

/// Publishes a job's tables in Glue: returns what changed, one line per table.
pub async fn publish(
    job: &Job,
    lake: &Lake,
    contract: &[Column],
    default_database: &str,
) -> Result<String> {
    let database = job
        .target
        .catalog_database
        .as_deref()
        .unwrap_or(default_database);
    let client = glue::client().await;
    let mut notes = Vec::new();
    for mut def in job_tables(job, contract, database, lake) {
        if !def.is_delta() {
            def.load_partitions(lake).await?;
        }
        notes.push(glue::publish(&client, &def).await?);
    }
    Ok(notes.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(values: &[&[&str]]) -> TableDef {
        TableDef {
            database: "lake".into(),
            name: "orders".into(),
            location: "s3://b/lake/orders/".into(),
            columns: vec![("id".into(), "bigint".into())],
            partition_keys: vec!["dt".into(), "region".into()],
            parameters: BTreeMap::new(),
            partitions: values
                .iter()
                .map(|v| Partition {
                    values: v.iter().map(|s| s.to_string()).collect(),
                    path: String::new(),
                })
                .collect(),
            projection: true,
        }
    }

    fn day(text: &str) -> chrono::NaiveDate {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap_or_default()
    }

    #[test]
    fn projection_types_follow_the_values() {
        let today = day("2026-12-01");
        let p = projection_properties(&def(&[&["2024-05-01", "eu"], &["2024-04-30", "us"]]), today);
        assert_eq!(p["projection.dt.type"], "date");
        assert_eq!(p["projection.dt.range"], "2024-04-30,NOW");
        assert_eq!(p["projection.region.type"], "enum");
        assert_eq!(p["projection.region.values"], "eu,us");
        assert_eq!(
            p["storage.location.template"],
            "s3://b/lake/orders/dt=${dt}/region=${region}/"
        );
        let p = projection_properties(&def(&[&["7", "eu"], &["12", "eu"]]), today);
        assert_eq!(p["projection.dt.type"], "integer");
        assert_eq!(p["projection.dt.range"], "7,12");
    }

    #[test]
    fn a_date_range_reaches_days_after_today() {
        let p = projection_properties(
            &def(&[&["2026-11-30", "eu"], &["2027-01-15", "eu"]]),
            day("2026-12-01"),
        );
        assert_eq!(p["projection.dt.range"], "2026-11-30,2027-01-15");
        let p = projection_properties(&def(&[&["2026-12-01", "eu"]]), day("2026-12-01"));
        assert_eq!(p["projection.dt.range"], "2026-12-01,NOW");
    }

    #[test]
    fn projection_refuses_escaped_folders() {
        let mut d = def(&[]);
        d.partitions = vec![
            Partition {
                values: vec!["2024-05-01".into(), "eu".into()],
                path: "dt=2024-05-01/region=eu".into(),
            },
            Partition {
                values: vec!["2024-05-01".into(), "eu/west".into()],
                path: "dt=2024-05-01/region=eu%2Fwest".into(),
            },
        ];
        let message = d.check_projectable().err().map(|e| e.message);
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("`dt=2024-05-01/region=eu%2Fwest`")
                    && m.contains("projection to false")),
            "{message:?}"
        );
        d.partitions.pop();
        assert!(d.check_projectable().is_ok());
        d.projection = false;
        d.partitions = vec![Partition {
            values: vec!["a:b".into(), "x".into()],
            path: "dt=a%3Ab/region=x".into(),
        }];
        assert!(
            d.check_projectable().is_ok(),
            "registered partitions name their folder"
        );
    }

    #[test]
    fn partition_values_are_unescaped() {
        assert_eq!(
            crate::sink::writer::unescape_partition_value("10%3A00%2F1"),
            "10:00/1"
        );
        assert_eq!(
            crate::sink::writer::unescape_partition_value("100%"),
            "100%"
        );
    }

    #[test]
    fn ddl_is_athena_ddl() {
        let mut d = def(&[&["2024-05-01", "eu"]]);
        d.projection = false;
        let ddl = d.ddl();
        assert!(ddl.starts_with("CREATE EXTERNAL TABLE IF NOT EXISTS `lake`.`orders` (\n  `id` bigint\n)\nPARTITIONED BY (`dt` string, `region` string)"), "{ddl}");
        assert!(ddl.contains("LOCATION 's3://b/lake/orders/'"), "{ddl}");
        assert!(ddl.contains("MSCK REPAIR TABLE"), "{ddl}");
    }
}
