//! Job rows: every example compiles; every broken row fails with the message it should.

use crate::common::{Workspace, repo};

#[test]
fn every_job_in_the_repository_compiles() {
    let ws = Workspace::new();
    let jobs = repo().join("jobs");
    let run = ws.sluice(&["jobs", "validate", jobs.to_str().expect("utf-8 path")]);
    run.assert_code(0);
    assert!(run.stdout().contains("all valid"), "{}", run.stdout());
    let files = std::fs::read_dir(&jobs)
        .expect("jobs dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        })
        .count();
    let ok_lines = run
        .stdout()
        .lines()
        .filter(|l| l.starts_with("ok "))
        .count();
    assert_eq!(
        ok_lines,
        files - 1,
        "every file but connections.yaml holds a job:\n{}",
        run.stdout()
    );
}

/// Each file of tests/fixtures/broken says, in `# expect: <path>: <message>` lines, what
/// `sluice jobs validate` must report for it; all of it must be reported in one run.
#[test]
fn every_broken_row_fails_with_its_message() {
    let fixtures = repo().join("tests/fixtures");
    let mut files: Vec<_> = std::fs::read_dir(fixtures.join("broken"))
        .expect("broken corpus")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 25, "the corpus has {} rows", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("fixture");
        let expects: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expects.is_empty(),
            "{} has no `# expect:` line",
            file.display()
        );
        let ws = Workspace::new();
        std::fs::copy(
            fixtures.join("connections.yaml"),
            ws.jobs().join("connections.yaml"),
        )
        .expect("copy");
        let name = file.file_name().expect("name").to_str().expect("utf-8");
        std::fs::copy(file, ws.jobs().join(name)).expect("copy");
        let run = ws.sluice(&["jobs", "validate"]);
        let stderr = run.stderr();
        if run.code() != 2 {
            failures.push(format!(
                "{name}: exit code {} (expected 2)\n{stderr}",
                run.code()
            ));
            continue;
        }
        for expect in expects {
            // Every problem line names the file, then the field path, then the message.
            let found = stderr
                .lines()
                .any(|l| l.contains(name) && l.contains(expect));
            if !found {
                failures.push(format!(
                    "{name}: no line with the file name and {expect:?} in:\n{stderr}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_broken_connections_file_fails_only_the_jobs_that_use_it() {
    let ws = Workspace::new();
    ws.connections(
        "good:\n  kind: sqlite\n  url: sqlite:x.db\nbad:\n  kind: postgres\n  url: mysql://u:${PW@h/db\n",
    );
    let job = |id: &str, conn: &str| {
        format!("job: {id}\nsource:\n  connection: {conn}\n  table: t\ntarget:\n  table: {id}\n")
    };
    ws.write_job("a.yaml", &job("uses_good", "good"));
    ws.write_job("b.yaml", &job("uses_bad", "bad"));
    let run = ws.sluice(&["jobs", "validate"]);
    run.assert_code(2);
    let err = run.stderr();
    assert!(
        err.contains("connections.yaml: bad.url: has an unclosed `${` placeholder"),
        "{err}"
    );
    assert!(
        err.contains(
            "connections.yaml: bad.url: a postgres URL starts with postgres:// or postgresql://"
        ),
        "{err}"
    );
    assert!(
        err.contains("b.yaml: source.connection: connection `bad` is invalid"),
        "{err}"
    );
    assert!(run.stdout().contains("ok  uses_good"), "{}", run.stdout());
}

#[test]
fn broken_queue_connections_say_what_a_queue_connection_takes() {
    let ws = Workspace::new();
    let validate = |connections: &str| {
        ws.connections(connections);
        let run = ws.sluice(&["jobs", "validate"]);
        run.assert_code(2);
        run.stderr()
    };
    let err = validate("stream:\n  kind: kafka\n  queue_url: https://x\n");
    assert!(
        err.contains("connections.yaml: stream.kind: `kafka` is not valid. Valid values: `postgres`, `mysql`, `sqlite`, `sqs`"),
        "{err}"
    );
    let err = validate("gps:\n  kind: sqs\n  url: https://sqs.eu-west-1.amazonaws.com/1/gps\n");
    for expected in [
        "connections.yaml: gps.url: a queue connection gives `queue_url` only; its credentials come from the AWS chain (the task role)",
        "connections.yaml: gps.queue_url: missing: give the queue's URL, `https://sqs.<region>.amazonaws.com/<account>/<queue>`",
    ] {
        assert!(err.contains(expected), "{expected}\nin:\n{err}");
    }
}

#[test]
fn the_schema_is_published_and_describes_every_field() {
    let ws = Workspace::new();
    let run = ws.sluice(&["jobs", "schema"]);
    run.assert_code(0);
    let schema: serde_json::Value = serde_json::from_str(&run.stdout()).expect("json schema");
    let text = schema.to_string();
    for field in [
        "connection",
        "cursor",
        "primary_key",
        "lag",
        "partition_by",
        "compression",
        "file_size",
    ] {
        assert!(
            text.contains(&format!("\"{field}\"")),
            "schema lacks {field}"
        );
    }
    assert_eq!(
        schema["additionalProperties"],
        serde_json::Value::Bool(false)
    );
}

#[test]
fn an_unknown_job_is_a_user_error_with_a_suggestion() {
    let ws = Workspace::new();
    ws.connections("db:\n  kind: sqlite\n  url: sqlite:x.db\n");
    ws.write_job(
        "a.yaml",
        "job: orders\nsource:\n  connection: db\n  table: t\ntarget:\n  table: orders\n",
    );
    let run = ws.sluice(&["run", "--job", "order"]);
    run.assert_code(2);
    assert!(run.stderr().contains("no job `order`"), "{}", run.stderr());
    assert!(
        run.stderr().contains("did you mean `orders`?"),
        "{}",
        run.stderr()
    );
}

/// `sluice jobs schema | head -1`: a reader that goes away ends the output quietly.
#[test]
fn a_closed_stdout_ends_the_output_without_a_panic() {
    let ws = Workspace::new();
    let mut child = ws
        .command(&["jobs", "schema"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    // Closed before sluice writes a byte: its first write meets a broken pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("reap");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn broken_file_store_connections_say_what_each_kind_takes() {
    let ws = Workspace::new();
    ws.connections(
        "bank:\n  kind: sftp\n  host: sftp.example\n  password: hunter2\n  private_key: \"${KEY}\"\n  host_key: SHA256:short\n  bucket: b\n  base_url: https://x\n\
         lake_drop:\n  kind: s3\n  path: /in/\n  secret: s\n\
         drop:\n  kind: folder\n\
         db:\n  kind: postgres\n  url: postgres://h/db\n  host_key: \"SHA256:x\"\n",
    );
    let run = ws.sluice(&["jobs", "validate"]);
    run.assert_code(2);
    let err = run.stderr();
    for expected in [
        "bank.user: missing: give the user to log in as",
        "bank.password: is written in the file: give it as one `${VAR}` placeholder, filled from the connection's `secret` or the environment, e.g. `${BANK_SFTP_PASSWORD}`",
        "bank.private_key: give exactly one of `password` and `private_key`",
        "bank.host_key: \"SHA256:short\" is not a host key fingerprint",
        "bank.bucket: a sftp connection does not take it (it takes `host`, `port`, `user`, `password`, `private_key`, `host_key`, `path`)",
        "bank.base_url: is not for a file store",
        "lake_drop.bucket: missing: give the bucket's name",
        "lake_drop.secret: a s3 connection has no credentials of its own",
        "drop.path: missing: give the folder",
        "db.host_key: is for file stores (kind `sftp`, `s3` or `folder`); a postgres connection does not take it",
    ] {
        assert!(err.contains(expected), "{expected}\nin:\n{err}");
    }
    assert!(
        !err.contains("hunter2"),
        "a password written in the file is not repeated:\n{err}"
    );
}
