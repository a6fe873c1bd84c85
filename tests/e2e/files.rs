//! File feeds: the bank's files over a real OpenSSH SFTP server (`scripts/test` starts
//! an ephemeral `sshd` with `internal-sftp`: `SLUICE_TEST_SFTP_*`) and in a local
//! folder. Every format lands value for value; a second run loads nothing and a new file
//! loads alone; a growing file waits, a marked one loads; a wrong host key and a wrong
//! password are refused (exit 2, no secret in any output); a run killed before its
//! commit, or after it and before `after_load`, leaves each record once and the file
//! where `after_load` says; a connection cut mid-transfer is retryable and commits
//! nothing; bad records and a bad file are quarantined; a changed file follows
//! `on_changed_file`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::common::{Run, Workspace, lake_sql};

mod layout;

fn sftp_var(name: &str) -> String {
    std::env::var(format!("SLUICE_TEST_SFTP_{name}")).unwrap_or_else(|_| {
        panic!("SLUICE_TEST_SFTP_{name} is not set: run the tests with scripts/test, which starts an ephemeral sshd")
    })
}

const SCHEMA: &str = "  schema:
    - {name: txn_id, type: bigint, nullable: false}
    - {name: booked_at, type: timestamp}
    - {name: amount, type: 'decimal(12,2)'}
    - {name: currency, type: string}
    - {name: memo, type: string}
";

/// The file columns, in `target.schema` after the record's fields.
const FILE_COLUMNS: &str = "    - {name: _file, type: string, nullable: false}
    - {name: _line, type: bigint, nullable: false}
    - {name: _record, type: bigint, nullable: false}
";

/// One test's bank: a workspace, and a folder on the SFTP server (or a local one).
struct Bank {
    ws: Workspace,
    /// Where the bank's files are written, on this machine.
    root: PathBuf,
}

impl Bank {
    /// A folder of its own in the SFTP user's home, and the connection `bank` to it.
    fn sftp(name: &str, auth: &str) -> Bank {
        let root = PathBuf::from(sftp_var("ROOT")).join(name);
        let _ = std::fs::remove_dir_all(&root);
        make_dir(&root);
        let ws = Workspace::new();
        ws.connections(&format!(
            "bank:\n  kind: sftp\n  host: 127.0.0.1\n  port: {}\n  user: {}\n  {auth}\n  host_key: \"{}\"\n  path: {name}\n",
            sftp_var("PORT"),
            sftp_var("USER"),
            sftp_var("HOST_KEY"),
        ));
        Bank { ws, root }
    }

    fn password() -> &'static str {
        "password: \"${BANK_SFTP_PASSWORD}\""
    }

    /// A local folder (the embedded default's kind).
    fn folder() -> Bank {
        let ws = Workspace::new();
        let root = ws.dir.path().join("drop");
        make_dir(&root);
        ws.connections("bank:\n  kind: folder\n  path: ../drop\n");
        Bank { ws, root }
    }

    /// The job `name` over `pattern`, with `files` lines added to `source.files`.
    fn job(&self, name: &str, pattern: &str, files: &str) {
        self.ws.write_job(
            &format!("{name}.yaml"),
            &format!(
                "job: {name}\nsource:\n  connection: bank\n  coerce: [amount]\n  files:\n    pattern: \"{pattern}\"\n    stable_for: 0s\n{files}  message_columns: [file, line, record]\ntarget:\n  table: {name}\n{SCHEMA}{FILE_COLUMNS}"
            ),
        );
    }

    /// Writes a bank file, its time a minute ago (complete, by `stable_for`).
    fn put(&self, path: &str, bytes: &[u8]) {
        let path = self.root.join(path);
        make_dir(path.parent().expect("parent"));
        std::fs::write(&path, bytes).expect("write bank file");
        age(&path, 60);
    }

    fn run(&self, job: &str) -> Run {
        self.ws
            .command(&["run", "--job", job, "--output", "json"])
            .env(
                "BANK_SFTP_PASSWORD",
                std::env::var("SLUICE_TEST_SFTP_PASSWORD").unwrap_or_default(),
            )
            .env(
                "BANK_SFTP_KEY",
                std::fs::read_to_string(std::env::var("SLUICE_TEST_SFTP_KEY").unwrap_or_default())
                    .unwrap_or_default(),
            )
            .output()
            .map(Run)
            .expect("run sluice")
    }

    fn run_ok(&self, job: &str) -> Value {
        let run = self.run(job);
        run.assert_code(0);
        serde_json::from_str(run.stdout().trim()).expect("summary json")
    }

    /// Starts a run that stops at failpoint `point`; returns once it is there.
    fn start_at(&self, job: &str, point: &str) -> Child {
        let mut command = self.ws.command(&["run", "--job", job]);
        command.env(
            "BANK_SFTP_PASSWORD",
            std::env::var("SLUICE_TEST_SFTP_PASSWORD").unwrap_or_default(),
        );
        crate::common::start_at_failpoint(command, point)
    }

    fn rows(&self, sql: &str) -> Vec<String> {
        lake_sql(&self.ws, sql)
            .lines()
            .filter(|l| l.starts_with('|'))
            .skip(1)
            .map(|l| {
                l.trim_matches('|')
                    .split('|')
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }
}

/// Makes a folder the SFTP user may write in (the tests run as root).
fn make_dir(path: &Path) {
    std::fs::create_dir_all(path).expect("mkdir");
    let mut at = path.to_path_buf();
    let root = PathBuf::from(std::env::var("SLUICE_TEST_SFTP_ROOT").unwrap_or_default());
    loop {
        let _ = std::process::Command::new("chmod")
            .arg("777")
            .arg(&at)
            .status();
        if !at.pop() || !at.starts_with(&root) || at == root {
            break;
        }
    }
}

/// Sets a file's modification time `seconds` ago.
fn age(path: &Path, seconds: u64) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    file.set_modified(SystemTime::now() - Duration::from_secs(seconds))
        .expect("set mtime");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

fn txn(id: u64) -> String {
    format!(
        r#"{{"txn_id": {id}, "booked_at": "2024-05-{:02}T10:{:02}:00", "amount": "{}.{:02}", "currency": "EUR", "memo": "toll A{id}"}}"#,
        1 + id % 28,
        id % 60,
        id * 3,
        id % 100
    )
}

fn expected(ids: &[u64]) -> Vec<String> {
    ids.iter()
        .map(|&id| {
            format!(
                "{id} 2024-05-{:02}T10:{:02}:00 {}.{:02} EUR toll A{id}",
                1 + id % 28,
                id % 60,
                id * 3,
                id % 100
            )
        })
        .collect()
}

const VALUES: &str = "SELECT txn_id, booked_at, amount, currency, memo FROM";

#[test]
fn every_format_loads_over_sftp_value_for_value_and_only_once() {
    let bank = Bank::sftp("formats", Bank::password());
    bank.put("in/json/bank_01.json", txn(1).as_bytes());
    bank.put(
        "in/json/bank_02.json",
        format!("[\n  {},\n  {}\n]\n", txn(2), txn(3)).as_bytes(),
    );
    bank.put(
        "in/json/bank_03.json.gz",
        &gzip(format!("[{}, {}]", txn(4), txn(5)).as_bytes()),
    );
    bank.put("in/json/notes.txt", b"not a bank file");
    bank.put(
        "in/nested/bank_04.json",
        format!(
            r#"{{"bank": {{"bic": "X", "list": [1, 2]}}, "transactions": [{}, {}], "count": 2}}"#,
            txn(6),
            txn(7)
        )
        .as_bytes(),
    );
    bank.put(
        "in/lines/bank_05.ndjson",
        format!("{}\n{}\n", txn(8), txn(9)).as_bytes(),
    );
    bank.put(
        "in/lines/bank_06.ndjson.zst",
        &zstd::encode_all(format!("{}\n", txn(10)).as_bytes(), 3).expect("zstd"),
    );
    bank.put(
        "in/csv/bank_07.csv",
        b"TxnId,BookedAt,Amount,Currency,Memo\n11,2024-05-12T10:11:00,33.11,EUR,toll A11\n12,2024-05-13T10:12:00,36.12,EUR,\"toll A12\"\n",
    );
    bank.job("bank_json", "in/json/bank_*.json*", "");
    bank.job(
        "bank_nested",
        "in/nested/bank_*.json",
        "    records: $.transactions\n",
    );
    bank.job("bank_lines", "in/lines/bank_*", "    format: ndjson\n");
    bank.job("bank_csv", "in/csv/bank_*.csv", "    format: csv\n");
    for (job, ids, files) in [
        ("bank_json", vec![1, 2, 3, 4, 5], 3),
        ("bank_nested", vec![6, 7], 1),
        ("bank_lines", vec![8, 9, 10], 2),
        ("bank_csv", vec![11, 12], 1),
    ] {
        let summary = bank.run_ok(job);
        assert_eq!(summary["status"], "committed", "{summary}");
        assert_eq!(summary["source_files"]["loaded"], files, "{summary}");
        assert_eq!(
            bank.rows(&format!("{VALUES} {job} ORDER BY txn_id")),
            expected(&ids),
            "{job}"
        );
    }
    // Where each row came from.
    assert_eq!(
        bank.rows("SELECT txn_id, _file, _line, _record FROM bank_json ORDER BY txn_id"),
        [
            "1 in/json/bank_01.json 1 0",
            "2 in/json/bank_02.json 2 0",
            "3 in/json/bank_02.json 3 1",
            "4 in/json/bank_03.json.gz 1 0",
            "5 in/json/bank_03.json.gz 1 1",
        ]
    );
    assert_eq!(
        bank.rows("SELECT txn_id, _line FROM bank_csv ORDER BY txn_id"),
        ["11 2", "12 3"]
    );

    // Nothing new: nothing loaded. A new file: it alone.
    let again = bank.run_ok("bank_json");
    assert_eq!(again["status"], "up_to_date", "{again}");
    bank.put("in/json/bank_08.json", format!("[{}]", txn(13)).as_bytes());
    let third = bank.run_ok("bank_json");
    assert_eq!(third["source_files"]["loaded"], 1, "{third}");
    assert_eq!(third["rows"], 1, "{third}");
    assert_eq!(
        bank.rows("SELECT count(*), count(DISTINCT txn_id) FROM bank_json"),
        ["6 6"]
    );
}

#[test]
fn a_growing_file_waits_a_marked_file_loads_and_a_key_logs_in() {
    let bank = Bank::sftp("waiting", "private_key: \"${BANK_SFTP_KEY}\"");
    bank.ws.write_job(
        "bank.yaml",
        &format!(
            "job: bank\nsource:\n  connection: bank\n  coerce: [amount]\n  files:\n    pattern: bank_*.json\n    stable_for: 30s\n    done_marker: .done\n    after_load: {{move: processed}}\ntarget:\n  table: bank\n{SCHEMA}"
        ),
    );
    // Complete but unmarked; marked but still being written (modified just now).
    bank.put("bank_01.json", format!("[{}]", txn(1)).as_bytes());
    bank.put("bank_02.json", format!("[{}]", txn(2)).as_bytes());
    bank.put("bank_02.json.done", b"");
    age(&bank.root.join("bank_02.json"), 0);
    let first = bank.run_ok("bank");
    assert_eq!(first["status"], "up_to_date", "{first}");
    assert_eq!(first["source_files"]["waiting"], 2, "{first}");
    let said = bank
        .ws
        .command(&["run", "--job", "bank"])
        .env(
            "BANK_SFTP_KEY",
            std::fs::read_to_string(sftp_var("KEY")).expect("key"),
        )
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .expect("run");
    assert!(
        said.contains("bank: up to date, no new complete file (2 waiting"),
        "{said}"
    );

    bank.put("bank_01.json.done", b"");
    let second = bank.run_ok("bank");
    assert_eq!(second["source_files"]["loaded"], 1, "{second}");
    assert_eq!(second["source_files"]["waiting"], 1, "{second}");
    assert_eq!(second["source_files"]["after_load"], 1, "{second}");
    assert!(bank.root.join("processed/bank_01.json").exists());
    assert!(bank.root.join("processed/bank_01.json.done").exists());
    assert!(!bank.root.join("bank_01.json").exists());

    age(&bank.root.join("bank_02.json"), 60);
    let third = bank.run_ok("bank");
    assert_eq!(third["source_files"]["loaded"], 1, "{third}");
    assert_eq!(
        bank.rows(&format!("{VALUES} bank ORDER BY txn_id")),
        expected(&[1, 2])
    );

    // The bank sends another file of a loaded (and moved) file's name: a new delivery,
    // which waits like any other until it is complete and marked.
    bank.put("bank_01.json", format!("[{}]", txn(5)).as_bytes());
    age(&bank.root.join("bank_01.json"), 0);
    let writing = bank.run_ok("bank");
    assert_eq!(writing["status"], "up_to_date", "{writing}");
    age(&bank.root.join("bank_01.json"), 60);
    let unmarked = bank.run_ok("bank");
    assert_eq!(
        unmarked["status"], "up_to_date",
        "its marker was moved with the first one"
    );
    bank.put("bank_01.json.done", b"");
    let resent = bank.run_ok("bank");
    assert_eq!(resent["source_files"]["loaded"], 1, "{resent}");
    assert_eq!(
        bank.rows(&format!("{VALUES} bank ORDER BY txn_id")),
        expected(&[1, 2, 5])
    );
}

#[test]
fn a_wrong_host_key_or_password_is_refused_with_no_secret_in_any_output() {
    let bank = Bank::sftp("refused", Bank::password());
    bank.job("bank", "*.json", "");
    bank.put("bank_01.json", txn(1).as_bytes());
    let real = sftp_var("HOST_KEY");
    let wrong = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
    let connections =
        std::fs::read_to_string(bank.ws.jobs().join("connections.yaml")).expect("read");
    bank.ws.connections(&connections.replace(&real, wrong));
    let run = bank.run("bank");
    run.assert_code(2);
    let out = run.stdout() + &run.stderr();
    assert!(out.contains(&format!("presented host key {real}")), "{out}");
    assert!(out.contains(&format!("not the pinned {wrong}")), "{out}");

    if sftp_var("PASSWORD").is_empty() {
        return; // Not root: the server takes keys only.
    }
    bank.ws.connections(&connections);
    let secret = "not-the-bank-pw-4711";
    let run = bank
        .ws
        .command(&["run", "--job", "bank", "--output", "json"])
        .env("BANK_SFTP_PASSWORD", secret)
        .output()
        .map(Run)
        .expect("run");
    run.assert_code(2);
    let out = run.stdout() + &run.stderr();
    assert!(out.contains("refused user"), "{out}");
    assert!(!out.contains(secret), "the password leaked:\n{out}");
    let records = std::fs::read_dir(bank.ws.state())
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(records > 0);
    for entry in walk(&bank.ws.state()) {
        let text = std::fs::read_to_string(entry).unwrap_or_default();
        assert!(!text.contains(secret), "the password is in the state");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn killed_before_the_commit_or_before_the_move_each_record_lands_once() {
    let bank = Bank::sftp("crash", Bank::password());
    bank.job("bank", "in/bank_*.json", "    after_load: {move: done}\n");
    bank.put(
        "in/bank_01.json",
        format!("[{}, {}]", txn(1), txn(2)).as_bytes(),
    );
    bank.put("in/bank_02.json", format!("[{}]", txn(3)).as_bytes());

    // Files written, no commit.
    let mut child = bank.start_at("bank", "written");
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    assert!(
        bank.root.join("in/bank_01.json").exists(),
        "moved before the commit"
    );
    let rerun = bank.run_ok("bank");
    assert_eq!(rerun["rows"], 3, "{rerun}");
    assert!(bank.root.join("done/bank_01.json").exists());
    assert!(bank.root.join("done/bank_02.json").exists());

    // Committed, not moved: the next run moves it and loads nothing again.
    bank.put(
        "in/bank_03.json",
        format!("[{}, {}]", txn(4), txn(5)).as_bytes(),
    );
    let mut child = bank.start_at("bank", "committed");
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    assert!(bank.root.join("in/bank_03.json").exists());
    let after = bank.run_ok("bank");
    assert_eq!(after["status"], "up_to_date", "{after}");
    assert!(!bank.root.join("in/bank_03.json").exists());
    assert!(bank.root.join("done/bank_03.json").exists());
    assert_eq!(
        bank.rows("SELECT count(*), count(DISTINCT txn_id) FROM bank"),
        ["5 5"]
    );
}

/// A file feed into a Delta table: each run one append commit of the files it loaded;
/// killed between its Delta commit and its state's, the next run finishes the commit and
/// moves the file, loading nothing twice; optimize packs the runs' small files.
#[test]
fn a_file_feed_into_a_delta_table_loads_each_file_once_and_packs() {
    let bank = Bank::folder();
    bank.job("bank", "in/bank_*.json", "    after_load: {move: done}\n");
    let path = bank.ws.jobs().join("bank.yaml");
    let row = std::fs::read_to_string(&path).expect("job") + "  format: delta\n";
    std::fs::write(&path, row).expect("job");
    bank.put(
        "in/bank_01.json",
        format!("[{}, {}]", txn(1), txn(2)).as_bytes(),
    );
    bank.run_ok("bank");
    bank.put("in/bank_02.json", format!("[{}]", txn(3)).as_bytes());
    let mut child = bank.start_at("bank", "delta-committed");
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    assert!(
        bank.root.join("in/bank_02.json").exists(),
        "moved before the state's commit"
    );
    let count = "SELECT count(*), count(DISTINCT txn_id) FROM bank";
    assert_eq!(bank.rows(count), ["3 3"], "the Delta commit holds the run");
    let after = bank.run_ok("bank");
    assert_eq!(after["status"], "up_to_date", "{after}");
    assert!(bank.root.join("done/bank_02.json").exists());
    bank.put("in/bank_03.json", format!("[{}]", txn(4)).as_bytes());
    bank.run_ok("bank");
    assert_eq!(bank.rows(count), ["4 4"]);
    let optimize = bank.ws.sluice(&["optimize", "--job", "bank"]);
    optimize.assert_code(0);
    assert!(
        optimize
            .stdout()
            .contains("packs 3 files into 1 in 1 partition"),
        "{}",
        optimize.stdout()
    );
    assert_eq!(bank.rows(count), ["4 4"]);
    assert_eq!(
        bank.rows(&format!("{VALUES} bank ORDER BY txn_id")),
        expected(&[1, 2, 3, 4])
    );
}

#[test]
fn bad_records_and_a_bad_file_are_quarantined_and_the_rest_loads() {
    let bank = Bank::folder();
    bank.job("bank", "bank_*", "    on_bad_file: quarantine\n");
    bank.put(
        "bank_01.ndjson",
        format!("{}\n{{\"txn_id\": \"x\"}}\nnot json\n{}\n", txn(1), txn(2)).as_bytes(),
    );
    bank.put(
        "bank_02.json",
        format!("[{}, {}", txn(3), txn(4)).as_bytes(),
    );
    bank.put("bank_03.json", format!("[{}]", txn(5)).as_bytes());
    let summary = bank.run_ok("bank");
    assert_eq!(summary["source_files"]["bad_files"], 1, "{summary}");
    assert_eq!(summary["source_files"]["quarantined"], 2, "{summary}");
    assert_eq!(
        bank.rows("SELECT txn_id FROM bank ORDER BY txn_id"),
        ["1", "2", "5"]
    );
    let quarantine =
        bank.rows("SELECT _message_id, _error FROM bank__quarantine ORDER BY _message_id");
    assert_eq!(quarantine.len(), 3, "{quarantine:?}");
    assert!(
        quarantine[0].starts_with("bank_01.ndjson:2 record 1 (line 2): field `txn_id`"),
        "{quarantine:?}"
    );
    assert!(
        quarantine[1].starts_with("bank_01.ndjson:3 record 2 (line 3): the record is not JSON"),
        "{quarantine:?}"
    );
    assert!(
        quarantine[2].starts_with("bank_02.json the file cannot be read: at byte"),
        "{quarantine:?}"
    );
    assert!(quarantine[2].contains("cut short"), "{quarantine:?}");
    // The bad file stays, remembered: not read again.
    assert_eq!(bank.run_ok("bank")["status"], "up_to_date");

    // With the default (`fail`), a bad file stops the run before anything commits.
    bank.job("strict", "bank_*", "");
    let run = bank.run("strict");
    run.assert_code(2);
    let out = run.stdout();
    assert!(
        out.contains("bank_02.json cannot be read as its format (auto): at byte"),
        "{out}"
    );
    assert!(out.contains("on_bad_file"), "{out}");
    assert!(bank.ws.parquet_files("strict").is_empty());
}

#[test]
fn a_changed_file_fails_is_skipped_or_reloads_its_run() {
    let bank = Bank::folder();
    bank.job("bank", "bank_*.json", "");
    bank.put(
        "bank_01.json",
        format!("[{}, {}]", txn(1), txn(2)).as_bytes(),
    );
    bank.put("bank_02.json", format!("[{}]", txn(3)).as_bytes());
    bank.run_ok("bank");
    // Touched only: the same content is not changed.
    age(&bank.root.join("bank_01.json"), 5);
    assert_eq!(bank.run_ok("bank")["status"], "up_to_date");

    bank.put(
        "bank_01.json",
        format!("[{}, {}]", txn(1), txn(22)).as_bytes(),
    );
    let run = bank.run("bank");
    run.assert_code(2);
    assert!(
        run.stdout()
            .contains("1 loaded file changed since: bank_01.json"),
        "{}",
        run.stdout()
    );

    bank.job("bank", "bank_*.json", "    on_changed_file: skip\n");
    let skipped = bank.run_ok("bank");
    assert_eq!(skipped["status"], "up_to_date", "{skipped}");

    bank.job("bank", "bank_*.json", "    on_changed_file: reload\n");
    let reloaded = bank.run_ok("bank");
    assert_eq!(reloaded["source_files"]["reloaded_runs"], 1, "{reloaded}");
    assert_eq!(reloaded["source_files"]["loaded"], 2, "{reloaded}");
    assert_eq!(
        bank.rows("SELECT txn_id FROM bank ORDER BY txn_id"),
        ["1", "3", "22"]
    );
    assert_eq!(bank.run_ok("bank")["status"], "up_to_date");
}

#[tokio::test]
async fn files_on_s3_load_and_are_deleted_and_an_sftp_password_comes_from_a_secret() {
    use object_store::{ObjectStoreExt, PutPayload};
    let cloud = crate::cloud::Cloud::new("files-s3");
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
        ("drop/in/bank_01.json", format!("[{}, {}]", txn(1), txn(2))),
        ("drop/in/bank_02.ndjson", format!("{}\n", txn(3))),
        ("drop/in/sub/bank_03.json", format!("[{}]", txn(4))),
    ] {
        store
            .put(
                &object_store::path::Path::from(name),
                PutPayload::from(body.into_bytes()),
            )
            .await
            .expect("put");
    }
    let name = format!("sluice/{}", cloud.bucket);
    cloud
        .secrets()
        .await
        .create_secret()
        .name(&name)
        .secret_string(serde_json::json!({"BANK_SFTP_PASSWORD": sftp_var("PASSWORD")}).to_string())
        .send()
        .await
        .expect("CreateSecret");
    let sftp_root = PathBuf::from(sftp_var("ROOT")).join("secret");
    let _ = std::fs::remove_dir_all(&sftp_root);
    make_dir(&sftp_root);
    std::fs::write(sftp_root.join("bank_09.json"), format!("[{}]", txn(9))).expect("write");
    age(&sftp_root.join("bank_09.json"), 60);
    cloud.ws.connections(&format!(
        "drop:\n  kind: s3\n  bucket: {}\n  path: drop\n\
         bank:\n  kind: sftp\n  secret: {name}\n  host: 127.0.0.1\n  port: {}\n  user: {}\n  password: \"${{BANK_SFTP_PASSWORD}}\"\n  host_key: \"{}\"\n  path: secret\n",
        cloud.bucket,
        sftp_var("PORT"),
        sftp_var("USER"),
        sftp_var("HOST_KEY"),
    ));
    for (job, connection, after) in [("s3_bank", "drop", "delete"), ("sftp_bank", "bank", "keep")] {
        cloud.ws.write_job(
            &format!("{job}.yaml"),
            &format!(
                "job: {job}\nsource:\n  connection: {connection}\n  coerce: [amount]\n  files:\n    pattern: {}\n    stable_for: 0s\n    after_load: {after}\ntarget:\n  table: {job}\n{SCHEMA}",
                if job == "s3_bank" { "in/bank_*" } else { "bank_*.json" }
            ),
        );
    }
    cloud.push_jobs();
    let s3 = cloud.run_ok("s3_bank");
    assert_eq!(s3["source_files"]["loaded"], 2, "{s3}");
    assert_eq!(s3["source_files"]["after_load"], 2, "{s3}");
    assert_eq!(cloud.keys("drop/"), ["drop/in/sub/bank_03.json"]);
    assert!(
        cloud
            .lake_sql("SELECT count(*) AS n FROM s3_bank")
            .contains("| 3 |")
    );
    if sftp_var("PASSWORD").is_empty() {
        return;
    }
    let sftp = cloud.run_ok("sftp_bank");
    assert_eq!(sftp["rows"], 1, "{sftp}");
}

#[test]
fn a_2_gib_json_array_loads_whole_within_the_default_memory_budget() {
    let bank = Bank::folder();
    bank.job("bank", "bank_*.json", "");
    let path = bank.root.join("bank_big.json");
    let mut out =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).expect("create"));
    let memo = "statement line ".repeat(60);
    let (mut written, mut n) = (1u64, 0u64);
    out.write_all(b"[").expect("write");
    while written < 2 << 30 {
        let record = format!(
            "{}\n{{\"txn_id\": {n}, \"booked_at\": \"2024-05-{:02}T10:00:00\", \"amount\": \"{}.{:02}\", \"currency\": \"EUR\", \"memo\": \"{memo}{n}\"}}",
            if n > 0 { "," } else { "" },
            1 + n % 28,
            n % 100_000,
            n % 100
        );
        written += record.len() as u64;
        out.write_all(record.as_bytes()).expect("write");
        n += 1;
    }
    out.write_all(b"\n]\n").expect("write");
    drop(out);
    age(&path, 60);
    let summary = bank.run_ok("bank");
    std::fs::remove_file(&path).expect("remove");
    assert_eq!(summary["rows"], n, "{summary}");
    assert!(summary["source_files"]["bytes"].as_u64().expect("bytes") > 2 << 30);
    let peak = summary["peak_rss"].as_u64().expect("peak rss");
    assert!(peak < 256 << 20, "peak RSS {} MiB", peak >> 20);
    assert_eq!(
        bank.rows("SELECT count(*), count(DISTINCT txn_id), max(txn_id) FROM bank"),
        [format!("{n} {n} {}", n - 1)]
    );
}

/// An sshd of this test's own, from the test server's configuration on another port, so
/// that its sessions can be cut without touching the other tests'.
struct OwnServer {
    child: std::process::Child,
    port: u16,
}

impl OwnServer {
    fn start(dir: &Path) -> OwnServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let config = std::fs::read_to_string(dir.join("sshd_config")).expect("sshd_config");
        let own = dir.join(format!("sshd_config.{port}"));
        let config: Vec<String> = config
            .lines()
            .map(|l| match l.split_once(' ') {
                Some(("Port", _)) => format!("Port {port}"),
                Some(("PidFile", _)) => {
                    format!("PidFile {}", dir.join(format!("sshd.{port}.pid")).display())
                }
                _ => l.to_string(),
            })
            .collect();
        std::fs::write(&own, config.join("\n")).expect("write config");
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sshd");
        let child = std::process::Command::new(sshd)
            .arg("-f")
            .arg(&own)
            .args(["-D", "-e"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start sshd");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnServer { child, port }
    }

    /// Kills every session this server is serving (its children and theirs: the
    /// privileged monitor and the user's process), as a network cut would.
    fn cut_sessions(&self) {
        let mut parents = vec![self.child.id().to_string()];
        let mut sessions = Vec::new();
        while let Some(parent) = parents.pop() {
            let found = std::process::Command::new("pgrep")
                .args(["-P", &parent])
                .output()
                .expect("pgrep");
            for pid in String::from_utf8_lossy(&found.stdout).split_whitespace() {
                parents.push(pid.to_string());
                sessions.push(pid.to_string());
            }
        }
        assert!(!sessions.is_empty(), "no session to cut");
        let status = std::process::Command::new("kill")
            .arg("-KILL")
            .args(&sessions)
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_connection_dropped_mid_transfer_is_retryable_and_the_rerun_loads_the_file_once() {
    let dir = PathBuf::from(sftp_var("KEY"))
        .parent()
        .expect("dir")
        .to_path_buf();
    let server = OwnServer::start(&dir);
    let bank = Bank::sftp("dropped", "private_key: \"${BANK_SFTP_KEY}\"");
    let connections =
        std::fs::read_to_string(bank.ws.jobs().join("connections.yaml")).expect("read");
    bank.ws.connections(&connections.replace(
        &format!("port: {}", sftp_var("PORT")),
        &format!("port: {}", server.port),
    ));
    bank.job("bank", "bank_*.json", "");
    // Large enough that the transfer is still going when its session is cut.
    let mut text = String::from("[");
    let mut n = 0u64;
    while text.len() < 256 << 20 {
        if n > 0 {
            text.push(',');
        }
        text.push_str(&txn(n));
        n += 1;
    }
    text.push(']');
    bank.put("bank_01.json", text.as_bytes());
    drop(text);
    let spool = bank.ws.dir.path().join("tmp");
    std::fs::create_dir_all(&spool).expect("spool dir");
    let mut command = bank
        .ws
        .command(&["run", "--job", "bank", "--output", "json"]);
    command
        .env("TMPDIR", &spool)
        .env(
            "BANK_SFTP_KEY",
            std::fs::read_to_string(sftp_var("KEY")).expect("key"),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let child = command.spawn().expect("spawn sluice");
    // Cut once the copy has begun.
    let started = std::time::Instant::now();
    loop {
        let copied: u64 = std::fs::read_dir(spool.join("sluice-spool"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        if copied > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the transfer never began"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    server.cut_sessions();
    let run = Run(child.wait_with_output().expect("wait"));
    let summary = run.stdout();
    assert_eq!(
        run.code(),
        75,
        "a dropped connection is retryable: {summary}"
    );
    assert!(summary.contains("\"status\":\"failed\""), "{summary}");
    assert!(
        bank.ws.parquet_files("bank").is_empty(),
        "nothing of the cut run stands"
    );
    assert_eq!(
        std::fs::read_dir(spool.join("sluice-spool"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "the partial copy is removed"
    );
    let rerun = bank.run_ok("bank");
    assert_eq!(rerun["rows"], n, "{rerun}");
}
