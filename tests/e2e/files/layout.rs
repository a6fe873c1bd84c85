//! File feeds as banks deliver them: a tree of folders per month with JSON, NDJSON and
//! their gzip'd forms side by side (unicode names too), loaded by one job into one
//! table; a statement corrected in place with the same size and time, reloaded under
//! `identity: content` only; next month's folder not made yet, "nothing new" on a
//! folder, over SFTP and on S3 (moto).

use std::path::PathBuf;

use super::*;
use crate::common::Workspace;

/// The statements job: every format at any depth below `relevés/`.
fn statements_job(bank: &Bank, files: &str) {
    bank.ws.write_job(
        "statements.yaml",
        &format!(
            "job: statements
source:
  connection: bank
  coerce: [amount]
  files:
    stable_for: 0s
{files}    patterns:
      - {{pattern: \"relevés/**/*.json\", format: json}}
      - {{pattern: \"relevés/**/*.json.gz\", format: json}}
      - {{pattern: \"relevés/**/*.ndjson\", format: ndjson}}
      - {{pattern: \"relevés/**/*.ndjson.gz\", format: ndjson}}
  message_columns: [file, line, record]
target:
  table: statements
{SCHEMA}{FILE_COLUMNS}"
        ),
    );
}

fn a_tree_of_mixed_formats_loads_into_one_table(bank: &Bank) {
    bank.put(
        "relevés/2026/11/bank_01.json",
        format!("[{}, {}]", txn(1), txn(2)).as_bytes(),
    );
    bank.put(
        "relevés/2026/11/bank_02.ndjson",
        format!("{}\n{}\n", txn(3), txn(4)).as_bytes(),
    );
    bank.put(
        "relevés/2026/11/agence Zürich/bank_03.json.gz",
        &gzip(format!("[{}]", txn(5)).as_bytes()),
    );
    bank.put(
        "relevés/2026/12/été_04.ndjson.gz",
        &gzip(format!("{}\n{}\n", txn(6), txn(7)).as_bytes()),
    );
    bank.put("relevés/2025/12/bank_05.json", txn(8).as_bytes());
    bank.put("relevés/bank_06.json", format!("[{}]", txn(9)).as_bytes());
    bank.put("relevés/2026/11/notes.txt", b"not a statement");
    bank.put("autre/bank_07.json", format!("[{}]", txn(99)).as_bytes());
    statements_job(bank, "");
    bank.ws.sluice(&["jobs", "validate"]).assert_code(0);

    let first = bank.run_ok("statements");
    assert_eq!(first["status"], "committed", "{first}");
    assert_eq!(first["source_files"]["listed"], 6, "{first}");
    assert_eq!(first["source_files"]["loaded"], 6, "{first}");
    assert_eq!(
        bank.rows(&format!("{VALUES} statements ORDER BY txn_id")),
        expected(&[1, 2, 3, 4, 5, 6, 7, 8, 9])
    );
    assert_eq!(
        bank.rows("SELECT txn_id, _file, _line, _record FROM statements ORDER BY txn_id"),
        [
            "1 relevés/2026/11/bank_01.json 1 0",
            "2 relevés/2026/11/bank_01.json 1 1",
            "3 relevés/2026/11/bank_02.ndjson 1 0",
            "4 relevés/2026/11/bank_02.ndjson 2 1",
            "5 relevés/2026/11/agence Zürich/bank_03.json.gz 1 0",
            "6 relevés/2026/12/été_04.ndjson.gz 1 0",
            "7 relevés/2026/12/été_04.ndjson.gz 2 1",
            "8 relevés/2025/12/bank_05.json 1 0",
            "9 relevés/bank_06.json 1 0",
        ]
    );

    // Nothing new; then next month's folder appears, and its file loads alone.
    let again = bank.run_ok("statements");
    assert_eq!(again["status"], "up_to_date", "{again}");
    bank.put(
        "relevés/2027/01/bank_10.ndjson",
        format!("{}\n", txn(10)).as_bytes(),
    );
    let next = bank.run_ok("statements");
    assert_eq!(next["source_files"]["loaded"], 1, "{next}");
    assert_eq!(
        bank.rows("SELECT count(*), count(DISTINCT txn_id) FROM statements"),
        ["10 10"]
    );
}

#[test]
fn a_nested_tree_of_mixed_formats_loads_into_one_table_from_a_folder() {
    a_tree_of_mixed_formats_loads_into_one_table(&Bank::folder());
}

#[test]
fn a_nested_tree_of_mixed_formats_loads_into_one_table_over_sftp() {
    a_tree_of_mixed_formats_loads_into_one_table(&Bank::sftp(
        "tree",
        "private_key: \"${BANK_SFTP_KEY}\"",
    ));
}

#[test]
fn a_correction_of_the_same_size_and_time_is_reloaded_by_content_identity_only() {
    let bank = Bank::folder();
    bank.job("bank", "relevés/*/*.json", "    on_changed_file: reload\n");
    bank.put(
        "relevés/11/bank_01.json",
        format!("[{}, {}]", txn(1), txn(2)).as_bytes(),
    );
    bank.put(
        "relevés/12/bank_02.json",
        format!("[{}]", txn(3)).as_bytes(),
    );
    assert_eq!(bank.run_ok("bank")["source_files"]["loaded"], 2);

    // The bank corrects a memo in place: the same byte count, and its time put back.
    let path = bank.root.join("relevés/11/bank_01.json");
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("mtime");
    let corrected = format!("[{}, {}]", txn(1), txn(2).replace("toll A2", "toll B2"));
    assert_eq!(
        corrected.len() as u64,
        std::fs::metadata(&path).expect("size").len()
    );
    std::fs::write(&path, corrected.as_bytes()).expect("write");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(modified))
        .expect("set mtime");

    // The default identity (`listing`): the same size and time are not looked at, and
    // the stale memo stays. This is the documented default.
    let by_listing = bank.run_ok("bank");
    assert_eq!(by_listing["status"], "up_to_date", "{by_listing}");
    assert_eq!(
        bank.rows("SELECT memo FROM bank WHERE txn_id = 2"),
        ["toll A2"]
    );

    // `identity: content`: every loaded file is hashed, the rewrite is caught and its
    // run reloaded, as for any changed file.
    bank.job(
        "bank",
        "relevés/*/*.json",
        "    on_changed_file: reload\n    identity: content\n",
    );
    let by_content = bank.run_ok("bank");
    assert_eq!(by_content["status"], "committed", "{by_content}");
    assert_eq!(by_content["source_files"]["hashed"], 2, "{by_content}");
    assert_eq!(
        by_content["source_files"]["reloaded_runs"], 1,
        "{by_content}"
    );
    assert_eq!(
        bank.rows("SELECT txn_id, memo FROM bank ORDER BY txn_id"),
        ["1 toll A1", "2 toll B2", "3 toll A3"]
    );
    let again = bank.run_ok("bank");
    assert_eq!(again["status"], "up_to_date", "{again}");
}

/// Jobs over folders nobody made yet: one month's, and a tree's.
fn later_jobs(bank: &Bank) {
    bank.job("later_month", "relevés/2027/01/*.json", "");
    bank.job("later_tree", "relevés/2027/**/*.json", "");
}

fn nothing_new(bank: &Bank) {
    for job in ["later_month", "later_tree"] {
        let run = bank.run_ok(job);
        assert_eq!(run["status"], "up_to_date", "{job}: {run}");
    }
}

#[test]
fn a_folder_not_made_yet_is_nothing_new_in_a_folder_and_over_sftp() {
    let folder = Bank::folder();
    later_jobs(&folder);
    nothing_new(&folder);

    // Over SFTP, from an absolute path (the address in messages has one `/` after the
    // port, not two).
    let root = PathBuf::from(sftp_var("ROOT")).join("not-yet");
    let _ = std::fs::remove_dir_all(&root);
    make_dir(&root);
    let ws = Workspace::new();
    ws.connections(&format!(
        "bank:\n  kind: sftp\n  host: 127.0.0.1\n  port: {}\n  user: {}\n  private_key: \"${{BANK_SFTP_KEY}}\"\n  host_key: \"{}\"\n  path: {}\n",
        sftp_var("PORT"),
        sftp_var("USER"),
        sftp_var("HOST_KEY"),
        root.display(),
    ));
    let sftp = Bank { ws, root };
    later_jobs(&sftp);
    nothing_new(&sftp);

    // A folder the server refuses is still an error, said once.
    make_dir(&sftp.root.join("locked"));
    let _ = std::process::Command::new("chmod")
        .arg("000")
        .arg(sftp.root.join("locked"))
        .status();
    sftp.job("locked", "locked/*.json", "");
    let run = sftp.run("locked");
    let _ = std::process::Command::new("chmod")
        .arg("777")
        .arg(sftp.root.join("locked"))
        .status();
    run.assert_code(2);
    let out = run.stdout();
    assert!(out.contains("Permission denied"), "{out}");
    assert!(
        !out.contains("Permission denied (Permission denied)"),
        "{out}"
    );
    assert!(!out.replace("sftp://", "").contains("//"), "{out}");
}

#[tokio::test]
async fn a_prefix_not_made_yet_is_nothing_new_on_s3_and_a_unicode_tree_loads() {
    use object_store::{ObjectStoreExt, PutPayload};
    let cloud = crate::cloud::Cloud::new("files-tree");
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&cloud.bucket)
        .with_endpoint(&cloud.endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .expect("s3 client");
    for (name, body) in [
        (
            "drop/relevés/2026/11/été.ndjson",
            format!("{}\n{}\n", txn(1), txn(2)),
        ),
        ("drop/relevés/2026/12/bank.json", format!("[{}]", txn(3))),
    ] {
        // Parsed, not `Path::from`: that would percent-encode the accents into the key.
        let path = object_store::path::Path::parse(name).expect("key");
        store
            .put(&path, PutPayload::from(body.into_bytes()))
            .await
            .expect("put");
    }
    cloud.ws.connections(&format!(
        "bank:\n  kind: s3\n  bucket: {}\n  path: drop\n",
        cloud.bucket
    ));
    let job = |name: &str, patterns: &str| {
        cloud.ws.write_job(
            &format!("{name}.yaml"),
            &format!(
                "job: {name}\nsource:\n  connection: bank\n  coerce: [amount]\n  files:\n    stable_for: 0s\n    patterns:\n{patterns}target:\n  table: {name}\n{SCHEMA}"
            ),
        );
    };
    job(
        "s3_tree",
        "      - {pattern: \"relevés/**/*.ndjson\", format: ndjson}\n      - {pattern: \"relevés/**/*.json\", format: json}\n",
    );
    job(
        "s3_later_month",
        "      - {pattern: \"relevés/2027/01/*.json\"}\n",
    );
    job("s3_later_tree", "      - {pattern: \"later/**/*.json\"}\n");
    cloud.push_jobs();
    let tree = cloud.run_ok("s3_tree");
    assert_eq!(tree["source_files"]["loaded"], 2, "{tree}");
    assert!(
        cloud
            .lake_sql("SELECT count(*) AS n FROM s3_tree")
            .contains("| 3 |")
    );
    for job in ["s3_later_month", "s3_later_tree"] {
        let run = cloud.run_ok(job);
        assert_eq!(run["status"], "up_to_date", "{job}: {run}");
    }
}
