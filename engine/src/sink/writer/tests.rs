use std::collections::BTreeMap;

use datafusion::arrow::array::{AsArray, Int64Array};
use datafusion::arrow::datatypes::{Field, Int64Type};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use proptest::prelude::*;

use super::*;

#[test]
fn hive_escaping() {
    let mut s = String::new();
    escape_partition_value("a/b=c", &mut s);
    assert_eq!(s, "a%2Fb%3Dc");
    let mut s = String::new();
    escape_partition_value("2024-05-01", &mut s);
    assert_eq!(s, "2024-05-01");
}

#[test]
fn dictionaries_only_where_they_pay() {
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("city", DataType::Utf8, true),
    ]);
    let props = writer_properties(Compression::Zstd, &schema);
    assert!(!props.dictionary_enabled(&ColumnPath::from("id")));
    assert!(props.dictionary_enabled(&ColumnPath::from("city")));
}

fn target(file_size: u64) -> Target {
    Target {
        table: "t".into(),
        partition_by: vec!["p".into()],
        compression: Compression::Zstd,
        file_size,
        schema: None,
        on_schema_change: crate::spec::OnSchemaChange::Fail,
        catalog_database: None,
        projection: false,
        format: crate::spec::TableFormat::Parquet,
    }
}

/// A writer of (id, partition value `p`) rows into table `t`, and their schema.
fn id_writer(
    lake: &Lake,
    nullable: bool,
    file_size: u64,
) -> Result<(SchemaRef, PartitionedWriter)> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, nullable),
        Field::new("p", DataType::Utf8, true),
    ]));
    let writer = PartitionedWriter::new(
        lake.clone(),
        &target(file_size),
        "0123456789abcdef",
        &schema,
        None,
        WriterBudget {
            row_groups: 64 << 20,
            open_files: 4,
        },
    )?;
    Ok((schema, writer))
}

/// Writes `batches` of (id, partition value) rows; returns, per file, its path and the
/// ids it holds.
async fn write_and_read(
    batches: Vec<Vec<(i64, Option<String>)>>,
    file_size: u64,
) -> Result<Vec<(String, Vec<i64>)>> {
    let lake = Lake::in_memory();
    let (schema, mut writer) = id_writer(&lake, false, file_size)?;
    for rows in batches {
        let ids = Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>());
        let parts = StringArray::from(rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>());
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(parts)])
            .map_err(|e| Error::internal(e.to_string()))?;
        writer.write(&batch).await?;
    }
    let written = writer.finish().await?;
    let store = lake.store();
    let listed: Vec<_> = store
        .list(None)
        .try_collect()
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
    assert_eq!(
        listed.len(),
        written.len(),
        "every file is reported, and only those"
    );
    for meta in &listed {
        let reported = written.iter().find(|w| w.path == meta.location.as_ref());
        assert_eq!(
            reported.map(|w| w.bytes),
            Some(meta.size),
            "size of {}",
            meta.location
        );
    }
    let mut out = Vec::new();
    for meta in listed {
        let bytes = store
            .get(&meta.location)
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .bytes()
            .await
            .map_err(|e| Error::internal(e.to_string()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| Error::internal(e.to_string()))?;
        let mut ids = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| Error::internal(e.to_string()))?;
            assert_eq!(
                batch.num_columns(),
                1,
                "the partition column is not stored in the file"
            );
            ids.extend(
                batch
                    .column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
        }
        out.push((meta.location.to_string(), ids));
    }
    Ok(out)
}

fn expected_folder(value: &Option<String>) -> String {
    let mut folder = "p=".to_string();
    match value {
        Some(v) => escape_partition_value(v, &mut folder),
        None => folder.push_str(HIVE_NULL),
    }
    folder
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Every row lands exactly once, in the folder of its own partition value; no file
    /// is empty; small targets make files roll.
    #[test]
    fn partitioning_keeps_every_row_in_its_folder(
        batches in prop::collection::vec(
            prop::collection::vec(prop::option::weighted(0.9, "[a-c/=% ]{0,2}"), 1..400),
            1..6,
        ),
        file_size in prop::sample::select(vec![2_000u64, 64_000, 128 << 20]),
    ) {
        let mut next = 0i64;
        let mut by_id = BTreeMap::new();
        let rows: Vec<Vec<(i64, Option<String>)>> = batches
            .into_iter()
            .map(|b| b.into_iter().map(|p| { next += 1; by_id.insert(next, p.clone()); (next, p) }).collect())
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let files = runtime.block_on(write_and_read(rows, file_size)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut seen = BTreeMap::new();
        for (path, ids) in &files {
            prop_assert!(!ids.is_empty(), "empty file {}", path);
            prop_assert!(path.starts_with("t/p="), "{}", path);
            prop_assert!(path.contains("/part-0123456789abcdef-"), "{}", path);
            for id in ids {
                let folder = expected_folder(&by_id[id]);
                prop_assert!(path.starts_with(&format!("t/{folder}/")), "row {} with {:?} is in {}", id, by_id[id], path);
                prop_assert!(seen.insert(*id, path.clone()).is_none(), "row {} twice", id);
            }
        }
        prop_assert_eq!(seen.len(), by_id.len());
    }
}

/// Each file's integer bounds are its own rows' (the Delta statistics a merge prunes
/// by); a text column has none.
#[tokio::test]
async fn files_carry_their_integer_bounds() -> Result<()> {
    let (schema, mut writer) = id_writer(&Lake::in_memory(), true, 1 << 20)?;
    let ids = Int64Array::from(vec![Some(-5), None, Some(40), Some(7)]);
    let parts = StringArray::from(vec!["a", "a", "b", "b"]);
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(parts)])
        .map_err(|e| Error::internal(e.to_string()))?;
    writer.write(&batch).await?;
    let mut files = writer.finish().await?;
    files.sort_by(|a, b| a.partition.cmp(&b.partition));
    let stats: Vec<_> = files.iter().map(|f| f.stats.clone()).collect();
    assert_eq!(
        stats,
        [
            Some(
                serde_json::json!({"minValues": {"id": -5}, "maxValues": {"id": -5}, "nullCount": {"id": 1}})
            ),
            Some(
                serde_json::json!({"minValues": {"id": 7}, "maxValues": {"id": 40}, "nullCount": {"id": 0}})
            ),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn files_roll_at_the_target_size() -> Result<()> {
    // 8 random bytes per row: 200k rows encode to about 1.6 MB whatever the codec.
    let rows: Vec<(i64, Option<String>)> = (0..200_000i64)
        .map(|i| {
            (
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64),
                Some("x".to_string()),
            )
        })
        .collect();
    let batches = rows.chunks(10_000).map(<[_]>::to_vec).collect();
    let files = write_and_read(batches, 1 << 20).await?;
    assert_eq!(files.len(), 2, "1.6 MB at a 1 MiB target: two files");
    assert_eq!(files.iter().map(|f| f.1.len()).sum::<usize>(), 200_000);
    Ok(())
}
