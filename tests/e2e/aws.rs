//! The AWS backends against moto: job rows and state in DynamoDB, the lake on S3,
//! metrics in CloudWatch, a connection from Secrets Manager.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::cloud::Cloud;
use crate::common::Workspace;

/// A SQLite source with `pings` (400k rows, incremental by id) and `trucks` (full).
async fn logistics(ws: &Workspace, pings: u32) -> String {
    let url = ws
        .sqlite_source(&format!(
            "CREATE TABLE pings (id INTEGER PRIMARY KEY, truck INTEGER, note TEXT, at DATETIME);
             WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {pings})
             INSERT INTO pings SELECT n, n % 150, hex(randomblob(24)), datetime('2024-05-01', '+' || (n / 20) || ' minutes') FROM g;
             CREATE TABLE trucks (id INTEGER PRIMARY KEY, plate TEXT NOT NULL, capacity_kg REAL);
             INSERT INTO trucks VALUES (1, 'B-SL 101', 12000.5), (2, 'M-SL 202', NULL), (3, 'HH-SL 303', 7500);"
        ))
        .await;
    ws.connections(&format!("db:\n  kind: sqlite\n  url: {url}\n"));
    ws.write_job(
        "pings.yaml",
        "job: pings\ndescription: GPS pings\nsource:\n  connection: db\n  table: pings\n  cursor: id\n  primary_key: [id]\n  batch_rows: 4096\nmode: incremental\ntransform: SELECT *, date_format(at, '%Y-%m-%d') AS dt FROM source\ntarget:\n  table: pings\n  partition_by: [dt]\n  file_size: 1MiB\n",
    );
    ws.write_job(
        "trucks.yaml",
        "job: trucks\nsource:\n  connection: db\n  table: trucks\nmode: full\ntarget:\n  table: trucks\n",
    );
    url
}

fn yaml_docs(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| serde_yaml::from_str(&std::fs::read_to_string(p).expect("read")).expect("yaml"))
        .collect()
}

#[tokio::test]
async fn push_run_pull_gives_the_same_lake_and_yaml_as_the_files() {
    let cloud = Cloud::new("roundtrip");
    logistics(&cloud.ws, 30_000).await;
    let jobs = cloud.ws.jobs();
    let jobs = jobs.to_str().expect("utf-8 path");

    let pushed = cloud.sluice(&["jobs", "push", jobs]);
    pushed.assert_code(0);
    assert!(
        pushed.stdout().contains("created job/pings"),
        "{}",
        pushed.stdout()
    );
    assert!(
        pushed.stdout().contains("created connection/db"),
        "{}",
        pushed.stdout()
    );
    cloud.sluice(&["jobs", "validate"]).assert_code(0);

    // The same jobs, once from the files into a local lake, once from DynamoDB into S3.
    cloud.ws.sluice(&["run", "--all"]).assert_code(0);
    let run = cloud.sluice(&["run", "--all", "--output", "json"]);
    run.assert_code(0);
    for sql in [
        "SELECT * FROM pings ORDER BY id",
        "SELECT * FROM trucks ORDER BY id",
    ] {
        let local = crate::common::lake_sql(&cloud.ws, sql);
        assert_eq!(local, cloud.lake_sql(sql), "{sql}");
    }
    let s3_files = cloud.keys("lake/pings/");
    assert!(
        s3_files
            .iter()
            .any(|k| k.starts_with("lake/pings/dt=2024-05-01/part-")),
        "{s3_files:?}"
    );
    assert!(!cloud.keys("lake/_sluice/manifests/pings/").is_empty());

    // Pull gives back the same rows and connections.
    let pulled = cloud.ws.dir.path().join("pulled");
    cloud
        .sluice(&["jobs", "pull", pulled.to_str().expect("path")])
        .assert_code(0);
    assert_eq!(yaml_docs(&pulled), yaml_docs(&cloud.ws.jobs()));
    let diff = cloud.sluice(&["jobs", "diff", jobs]);
    diff.assert_code(0);
    assert!(diff.stdout().contains("3 the same"), "{}", diff.stdout());
    // Pushing again changes nothing.
    let again = cloud.sluice(&["jobs", "push", jobs]);
    assert!(again.stdout().contains("3 unchanged"), "{}", again.stdout());
}

/// An edit made in the console: `SET #f = :v` on one attribute (path `#f` or `#f.sub`).
#[tokio::test]
async fn large_files_reach_s3_as_multipart_uploads() {
    let cloud = Cloud::new("multipart");
    let url = cloud
        .ws
        .sqlite_source(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
             WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 200000)
             INSERT INTO notes SELECT n, hex(randomblob(64)) FROM g;",
        )
        .await;
    cloud
        .ws
        .connections(&format!("db:\n  kind: sqlite\n  url: {url}\n"));
    cloud.ws.write_job(
        "notes.yaml",
        "job: notes\nsource:\n  connection: db\n  table: notes\ntarget:\n  table: notes\n  file_size: 256MiB\n",
    );
    cloud.push_jobs();
    let run = cloud.run_ok("notes");
    assert_eq!(run["files"], 1, "{run}");
    let files = cloud.objects("lake/notes/");
    // Beyond the 8 MiB upload buffer, the file went up in parts.
    assert!(
        files.len() == 1 && files[0].1 > 8 << 20 && files[0].2.contains('-'),
        "one file larger than a part, uploaded in parts: {files:?}"
    );
    let counts = cloud.lake_sql("SELECT count(DISTINCT body) AS n FROM notes");
    assert!(counts.contains("| 200000 |"), "{counts}");
}

async fn console_edit(
    cloud: &Cloud,
    job: &str,
    update: &str,
    attribute: &str,
    values: &[(&str, &str)],
) {
    let mut request = cloud
        .dynamodb()
        .await
        .update_item()
        .table_name(&cloud.jobs_table)
        .key("item_type", AttributeValue::S("job".into()))
        .key("id", AttributeValue::S(job.into()))
        .update_expression(update)
        .expression_attribute_names("#f", attribute);
    for (k, v) in values {
        request = request.expression_attribute_values(*k, AttributeValue::S(v.to_string()));
    }
    request.send().await.expect("console edit");
}

#[tokio::test]
async fn console_edits_are_not_overwritten_and_a_broken_row_fails_alone() {
    let cloud = Cloud::new("console");
    logistics(&cloud.ws, 2_000).await;
    let jobs = cloud.ws.jobs();
    let jobs = jobs.to_str().expect("utf-8 path");
    cloud.sluice(&["jobs", "push", jobs]).assert_code(0);

    // Someone breaks a row in the console.
    console_edit(
        &cloud,
        "pings",
        "SET #f = :m",
        "mode",
        &[(":m", "incremantal")],
    )
    .await;
    let run = cloud.sluice(&["run", "--all"]);
    run.assert_code(2);
    let out = run.stdout();
    assert!(out.contains("trucks: 3 rows"), "{out}");
    assert!(
        out.contains(&format!("dynamodb://{}/job/pings: mode", cloud.jobs_table))
            && out.contains("incremental"),
        "the broken row names its item, field and the valid value:\n{out}"
    );

    // A push from the folder would undo the console's change: refused, named.
    let push = cloud.sluice(&["jobs", "push", jobs]);
    push.assert_code(2);
    assert!(
        push.stderr().contains("job/pings: edited in the table"),
        "{}",
        push.stderr()
    );
    let diff = cloud.sluice(&["jobs", "diff", jobs]);
    assert!(
        diff.stdout()
            .contains("mode: \"incremental\" in the folder, \"incremantal\" in the table"),
        "{}",
        diff.stdout()
    );
    cloud
        .sluice(&["jobs", "push", jobs, "--force"])
        .assert_code(0);
    cloud.sluice(&["run", "--job", "pings"]).assert_code(0);

    // Another engineer's folder, pulled before a change pushed from here, is refused too.
    let theirs = cloud.ws.dir.path().join("theirs");
    let theirs = theirs.to_str().expect("path");
    cloud.sluice(&["jobs", "pull", theirs]).assert_code(0);
    console_edit(
        &cloud,
        "trucks",
        "SET #f.file_size = :s",
        "target",
        &[(":s", "32MiB")],
    )
    .await;
    let stale = cloud.sluice(&["jobs", "push", theirs]);
    stale.assert_code(2);
    assert!(stale.stderr().contains("job/trucks"), "{}", stale.stderr());
    // Pulling takes the table's version, after which a push is a no-op.
    cloud.sluice(&["jobs", "pull", theirs]).assert_code(0);
    let text = std::fs::read_to_string(format!("{theirs}/trucks.yaml")).expect("pulled file");
    assert!(text.contains("file_size: 32MiB"), "{text}");
    cloud.sluice(&["jobs", "push", theirs]).assert_code(0);
}

fn count_once(cloud: &Cloud, expected: u32) {
    let counts =
        cloud.lake_sql("SELECT count(*) AS n_rows, count(DISTINCT id) AS n_ids FROM pings");
    let row: Vec<&str> = counts
        .lines()
        .nth(3)
        .unwrap_or_default()
        .split('|')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let expected = expected.to_string();
    assert_eq!(
        row,
        [expected.as_str(), expected.as_str()],
        "each row exactly once:\n{counts}\nin {:#?}",
        cloud.keys("lake/")
    );
}

#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// The attempt is recorded as pending; no file yet.
    Pending,
    /// A data file is on S3: the run is writing.
    FirstFile,
    /// A new manifest exists: files written, commit imminent.
    Manifest,
    /// The watermark moved.
    Committed,
}

/// The job's state item as JSON.
async fn state_item(cloud: &Cloud, job: &str) -> serde_json::Value {
    let item = cloud
        .dynamodb()
        .await
        .get_item()
        .table_name(&cloud.state_table)
        .key("job", AttributeValue::S(job.into()))
        .key("sk", AttributeValue::S("state".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .unwrap_or_default();
    serde_dynamo::from_item(item).expect("state item")
}

/// Starts a run of `pings` and returns it once `point` is reached (or it has ended).
async fn start_until(cloud: &Cloud, point: KillAt) -> std::process::Child {
    let manifests = cloud.keys("lake/_sluice/manifests/pings/").len();
    let watermark = state_item(cloud, "pings").await["state"]["watermark"].clone();
    let mut child = cloud
        .command(&["run", "--job", "pings", "--lease-ttl", "3s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        let reached = match point {
            KillAt::Pending => !state_item(cloud, "pings").await["state"]["pending"].is_null(),
            KillAt::FirstFile => cloud
                .keys("lake/pings/")
                .iter()
                .any(|k| k.ends_with(".parquet")),
            KillAt::Manifest => cloud.keys("lake/_sluice/manifests/pings/").len() > manifests,
            KillAt::Committed => {
                state_item(cloud, "pings").await["state"]["watermark"] != watermark
            }
        };
        if reached {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{point:?} not reached"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child
}

fn kill(mut child: std::process::Child) {
    let _ = child.kill();
    child.wait().expect("reap");
}

#[tokio::test]
async fn one_run_at_a_time_and_killed_runs_leave_each_row_once() {
    let cloud = Cloud::new("lease");
    let url = logistics(&cloud.ws, 400_000).await;
    cloud.push_jobs();
    let ttl = ["--lease-ttl", "3s"];

    // Killed mid-write: the second run is refused while the first lives, and after the
    // killed run's lease expires the job runs again and each row lands once.
    let child = start_until(&cloud, KillAt::FirstFile).await;
    let second = cloud.sluice(&["run", "--job", "pings", ttl[0], ttl[1]]);
    second.assert_code(3);
    assert!(
        second.stdout().contains("already running"),
        "{}",
        second.stdout()
    );
    kill(child);
    let show = cloud.sluice(&["state", "show", "pings"]);
    assert!(show.stdout().contains("\"pending\""), "{}", show.stdout());
    // Its lease outlives it until expiry.
    cloud
        .sluice(&["run", "--job", "pings", ttl[0], ttl[1]])
        .assert_code(3);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let rerun = cloud.run_ok("pings");
    assert_eq!(rerun["rows"], 400_000, "{rerun}");
    count_once(&cloud, 400_000);

    // Killed at other points, then rerun after the lease expired: before any file
    // (the attempt recorded as pending), after the files and manifest (around the
    // commit), and after the watermark commit. Each time the lake holds each row once.
    let mut total = 400_000;
    for point in [KillAt::Pending, KillAt::Manifest, KillAt::Committed] {
        crate::common::exec(
            &url,
            &format!(
                "WITH RECURSIVE g(n) AS (SELECT {} UNION ALL SELECT n + 1 FROM g WHERE n < {})
                 INSERT INTO pings SELECT n, n % 150, hex(randomblob(24)), datetime('2024-06-01', '+' || (n / 20) || ' minutes') FROM g;",
                total + 1,
                total + 100_000
            ),
        )
        .await;
        total += 100_000;
        kill(start_until(&cloud, point).await);
        tokio::time::sleep(Duration::from_secs(4)).await;
        cloud
            .sluice(&["run", "--job", "pings", ttl[0], ttl[1]])
            .assert_code(0);
        count_once(&cloud, total);
    }

    // The run records tell the story, newest first.
    let history = cloud.sluice(&["state", "history", "pings"]);
    history.assert_code(0);
    let out = history.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 4, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("FAILED (busy)")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("pings: 400000 rows")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn rewind_rereads_without_duplicates_and_names_the_files() {
    let cloud = Cloud::new("rewind");
    let url = logistics(&cloud.ws, 1_000).await;
    cloud.push_jobs();
    cloud.run_ok("pings");
    crate::common::exec(
        &url,
        "INSERT INTO pings SELECT id + 1000, truck, note, at FROM pings WHERE id <= 500",
    )
    .await;
    cloud.run_ok("pings");

    let dry = cloud.sluice(&["state", "rewind", "pings", "--to", "1200", "--dry-run"]);
    dry.assert_code(0);
    let out = dry.stdout();
    assert!(out.contains("watermark 1500 → 1000"), "{out}");
    assert!(out.contains("(1000, 1500]: 500 rows"), "{out}");
    assert!(
        out.contains("pings/dt=2024-05-01/part-"),
        "names the files:\n{out}"
    );

    let bad = cloud.sluice(&["state", "rewind", "pings", "--to", "soon"]);
    bad.assert_code(2);
    assert!(bad.stderr().contains("not an integer"), "{}", bad.stderr());

    cloud
        .sluice(&["state", "rewind", "pings", "--to", "1200"])
        .assert_code(0);
    count_once(&cloud, 1_000);
    let rerun = cloud.run_ok("pings");
    assert_eq!(rerun["rows"], 500, "{rerun}");
    count_once(&cloud, 1_500);
}

#[tokio::test]
async fn metrics_reach_cloudwatch_and_emf_lines_are_valid() {
    let cloud = Cloud::new("metrics");
    logistics(&cloud.ws, 1_000).await;
    cloud.push_jobs();
    let namespace = format!("Sluice/{}", cloud.bucket);
    let started =
        aws_sdk_cloudwatch::primitives::DateTime::from_secs(chrono::Utc::now().timestamp() - 1);
    cloud
        .sluice(&[
            "run",
            "--all",
            "--metrics",
            "cloudwatch",
            "--metrics-namespace",
            &namespace,
        ])
        .assert_code(0);

    let cw = cloud.cloudwatch().await;
    let listed = cw
        .list_metrics()
        .namespace(&namespace)
        .send()
        .await
        .expect("ListMetrics");
    let names: std::collections::BTreeSet<String> = listed
        .metrics()
        .iter()
        .filter_map(|m| m.metric_name().map(str::to_string))
        .collect();
    for name in [
        "RowsRead",
        "RowsWritten",
        "BytesWritten",
        "FilesWritten",
        "RunSeconds",
        "RunSucceeded",
        "PeakMemory",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    let now = aws_sdk_cloudwatch::primitives::DateTime::from_secs(chrono::Utc::now().timestamp());
    let query = aws_sdk_cloudwatch::types::MetricDataQuery::builder()
        .id("rows")
        .metric_stat(
            aws_sdk_cloudwatch::types::MetricStat::builder()
                .metric(
                    aws_sdk_cloudwatch::types::Metric::builder()
                        .namespace(&namespace)
                        .metric_name("RowsWritten")
                        .dimensions(
                            aws_sdk_cloudwatch::types::Dimension::builder()
                                .name("Job")
                                .value("pings")
                                .build(),
                        )
                        .build(),
                )
                .period(3600)
                .stat("Sum")
                .build(),
        )
        .build();
    let data = cw
        .get_metric_data()
        .start_time(started)
        .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
            now.secs() + 60,
        ))
        .metric_data_queries(query)
        .send()
        .await
        .expect("GetMetricData");
    // From the run's start on, one period: the run's datapoint alone. (moto's
    // GetMetricData does not filter by namespace, so the window must exclude the metrics
    // of earlier runs of this test against the same server.)
    let values: Vec<f64> = data.metric_data_results()[0].values().to_vec();
    assert!(values == [1_000.0], "{values:?}");

    // EMF: one document per run on stdout, valid by the format's rules.
    let run = cloud.sluice(&["run", "--all", "--metrics", "emf"]);
    run.assert_code(0);
    let docs: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("EMF line is JSON"))
        .collect();
    assert_eq!(docs.len(), 2, "{}", run.stdout());
    for doc in docs {
        assert_valid_emf(&doc);
    }
}

/// The rules of the CloudWatch Embedded Metric Format specification.
fn assert_valid_emf(doc: &serde_json::Value) {
    const UNITS: [&str; 4] = ["Count", "Bytes", "Seconds", "None"];
    let aws = &doc["_aws"];
    assert!(
        aws["Timestamp"]
            .as_i64()
            .is_some_and(|t| t > 1_600_000_000_000),
        "{doc}"
    );
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics array");
    assert!(!directives.is_empty());
    for d in directives {
        let ns = d["Namespace"].as_str().expect("Namespace");
        assert!(!ns.is_empty() && ns.len() <= 1024);
        for set in d["Dimensions"].as_array().expect("Dimensions") {
            let set = set.as_array().expect("dimension set");
            assert!(set.len() <= 30);
            for name in set {
                assert!(
                    doc[name.as_str().expect("dimension name")].is_string(),
                    "{doc}"
                );
            }
        }
        let metrics = d["Metrics"].as_array().expect("Metrics");
        assert!(!metrics.is_empty() && metrics.len() <= 100);
        for m in metrics {
            let name = m["Name"].as_str().expect("metric name");
            assert!(doc[name].is_number(), "{name} has no value in {doc}");
            assert!(UNITS.contains(&m["Unit"].as_str().expect("unit")), "{m}");
        }
    }
}

#[tokio::test]
async fn a_secret_based_connection_works_and_its_password_stays_secret() {
    let cloud = Cloud::new("secret");
    let db = crate::common::postgres_db("aws_secret").await;
    crate::common::exec(&db, "CREATE TABLE depots (id int PRIMARY KEY, city text); INSERT INTO depots VALUES (1, 'Berlin'), (2, 'Lyon');").await;
    let url = url::Url::parse(&db).expect("url");
    let password = "Pa55w@rd/with:odd#chars";
    let secret = serde_json::json!({
        "engine": "postgres",
        "host": url.host_str().expect("host"),
        "port": url.port().expect("port"),
        "username": url.username(),
        "password": password,
        "dbname": "aws_secret",
    });
    let name = format!("sluice/{}", cloud.bucket);
    cloud
        .secrets()
        .await
        .create_secret()
        .name(&name)
        .secret_string(secret.to_string())
        .send()
        .await
        .expect("CreateSecret");
    cloud
        .ws
        .connections(&format!("pg:\n  kind: postgres\n  secret: {name}\n"));
    cloud.ws.write_job(
        "depots.yaml",
        "job: depots\nsource:\n  connection: pg\n  table: depots\ntarget:\n  table: depots\n",
    );
    cloud.push_jobs();
    let run = cloud.sluice(&["run", "--job", "depots"]);
    run.assert_code(0);
    assert!(
        cloud
            .lake_sql("SELECT city FROM depots ORDER BY id")
            .contains("Lyon")
    );

    // A secret pointing at a port where nothing listens: a retryable failure whose message
    // does not hold the password, nor does anything sluice stored.
    let wrong = serde_json::json!({"engine": "postgres", "host": "127.0.0.1", "port": 9, "username": "etl", "password": password});
    cloud
        .secrets()
        .await
        .put_secret_value()
        .secret_id(&name)
        .secret_string(wrong.to_string())
        .send()
        .await
        .expect("PutSecretValue");
    let failed = cloud.sluice(&["run", "--job", "depots"]);
    failed.assert_code(75);
    let history = cloud.sluice(&["state", "history", "depots"]);
    let show = cloud.sluice(&["state", "show", "depots"]);
    for text in [
        run.stdout(),
        run.stderr(),
        failed.stdout(),
        failed.stderr(),
        history.stdout(),
        show.stdout(),
    ] {
        assert!(
            !text.contains(password) && !text.contains("Pa55w"),
            "password leaked:\n{text}"
        );
    }
    assert!(
        failed.stdout().contains("connection `pg`"),
        "{}",
        failed.stdout()
    );
}

#[tokio::test]
async fn init_creates_the_tables_terraform_declares_and_is_idempotent() {
    let cloud = Cloud::new("init");
    let again = cloud.sluice(&["init"]);
    again.assert_code(0);
    assert!(
        again
            .stdout()
            .contains(&format!("exists: jobs table `{}`", cloud.jobs_table)),
        "{}",
        again.stdout()
    );
    let ddb = cloud.dynamodb().await;
    let table = ddb
        .describe_table()
        .table_name(&cloud.state_table)
        .send()
        .await
        .expect("describe");
    let keys: Vec<(String, String)> = table
        .table()
        .expect("table")
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_string(),
                k.key_type().as_str().to_string(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("job".to_string(), "HASH".to_string()),
            ("sk".to_string(), "RANGE".to_string())
        ]
    );
    let ttl = ddb
        .describe_time_to_live()
        .table_name(&cloud.state_table)
        .send()
        .await
        .expect("ttl");
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|d| d.attribute_name()),
        Some("ttl")
    );
    let backups = ddb
        .describe_continuous_backups()
        .table_name(&cloud.jobs_table)
        .send()
        .await
        .expect("backups");
    let pitr = backups
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        .map(|s| s.as_str().to_string());
    assert_eq!(pitr.as_deref(), Some("ENABLED"));

    // A table with other keys is not taken for a jobs table.
    let clash = cloud.sluice(&[
        "init",
        "--jobs",
        &format!("dynamodb://{}", cloud.state_table),
    ]);
    clash.assert_code(2);
    assert!(
        clash.stderr().contains("exists with keys"),
        "{}",
        clash.stderr()
    );
}
