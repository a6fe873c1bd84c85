//! API feeds against the partner's REST and SOAP fixture (`tests/api/partner.py`, which
//! `scripts/test` starts: `SLUICE_TEST_PARTNER_URL`): every paginator and auth kind lands
//! the partner's data exactly, through injected 500s and 429s; incremental runs ask only
//! for their window; a parent/child listing; SOAP records equal what zeep reads; a run
//! killed mid-way and rerun lands each record once; wrong credentials are exit 2 with no
//! secret in any output; an API that keeps failing is exit 75. How partners really
//! deliver (retries that re-sign, short-lived tokens, late records, exclusive bounds) is
//! in [`deliveries`].

mod deliveries;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Run, Workspace};

const SECRETS: [&str; 5] = [
    "bearer-s3cret-token",
    "key-s3cret-value",
    "basic-s3cret-pw",
    "oauth-s3cret-value",
    "soap-s3cret-pw",
];

fn partner() -> String {
    std::env::var("SLUICE_TEST_PARTNER_URL").unwrap_or_else(|_| {
        panic!("SLUICE_TEST_PARTNER_URL is not set: run the tests with scripts/test, which starts tests/api/partner.py")
    })
}

/// One test's tenant of the fixture and a workspace whose connections reach it.
struct Api {
    ws: Workspace,
    base: String,
    agent: String,
}

impl Api {
    fn new(tenant: &str, setup: Value) -> Self {
        let api = Self {
            ws: Workspace::new(),
            base: format!("{}/t/{tenant}", partner()),
            agent: partner(),
        };
        api.admin("reset", &setup);
        api
    }

    fn admin(&self, what: &str, body: &Value) -> Value {
        let out = Command::new("curl")
            .args([
                "-sf",
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "-d",
            ])
            .arg(body.to_string())
            .arg(format!("{}/admin/{what}", self.base))
            .output()
            .expect("curl");
        assert!(out.status.success(), "admin {what} failed");
        serde_json::from_slice(&out.stdout).expect("admin answer")
    }

    fn get(&self, what: &str) -> Value {
        let out = Command::new("curl")
            .args(["-sf", &format!("{}/admin/{what}", self.base)])
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout).expect("admin answer")
    }

    /// The connection `tags` with `extra` lines (auth, …); fast retries.
    fn connection(&self, extra: &str) {
        self.ws.connections(&format!(
            "tags:\n  kind: http\n  base_url: {}\n  retry: {{backoff: 20ms, max_backoff: 2s}}\n{extra}",
            self.base
        ));
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.ws.command(args);
        for (k, v) in [
            ("TAGS_TOKEN", SECRETS[0]),
            ("TAGS_KEY", SECRETS[1]),
            ("TAGS_PASSWORD", SECRETS[2]),
            ("TAGS_CLIENT_SECRET", SECRETS[3]),
            ("TAGS_SOAP_PASSWORD", SECRETS[4]),
        ] {
            cmd.env(k, v);
        }
        cmd
    }

    fn sluice(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().expect("run sluice"))
    }

    fn run(&self, job: &str) -> Value {
        let run = self.sluice(&["run", "--job", job, "--output", "json"]);
        run.assert_code(0);
        no_secret(&run);
        serde_json::from_str(run.stdout().trim())
            .unwrap_or_else(|e| panic!("summary: {e}: {}", run.stdout()))
    }

    fn row(&self, sql: &str) -> Vec<String> {
        crate::common::first_row(&crate::common::lake_sql(&self.ws, sql))
    }

    /// count, distinct ids, min id, max id, sum of amounts, distinct plates: of the
    /// fixture's records.
    fn truth(&self) -> Vec<String> {
        let records = self.get("records");
        let records = records.as_array().expect("records");
        let ids: Vec<i64> = records
            .iter()
            .map(|r| r["id"].as_i64().expect("id"))
            .collect();
        let cents: i64 = records
            .iter()
            .map(|r| {
                let a = r["amount"].as_str().expect("amount").replace('.', "");
                a.parse::<i64>().expect("cents")
            })
            .sum();
        let plates: std::collections::BTreeSet<&str> = records
            .iter()
            .map(|r| r["vehicle"]["plate"].as_str().expect("plate"))
            .collect();
        vec![
            ids.len().to_string(),
            ids.len().to_string(),
            ids.iter().min().expect("min").to_string(),
            ids.iter().max().expect("max").to_string(),
            format!("{}.{:02}", cents / 100, cents % 100),
            plates.len().to_string(),
        ]
    }

    fn landed(&self, table: &str) -> Vec<String> {
        self.row(&format!(
            "SELECT count(*), count(DISTINCT id), min(id), max(id), sum(amount), count(DISTINCT plate) FROM {table}"
        ))
    }
}

fn no_secret(run: &Run) {
    let all = format!("{}{}", run.stdout(), run.stderr());
    for s in SECRETS {
        assert!(!all.contains(s), "a secret is in the output: {all}");
    }
}

const SCHEMA: &str = "  schema:
    - {name: id, type: bigint, nullable: false}
    - {name: tag_id, type: string}
    - {name: plaza, type: string}
    - {name: amount, type: \"decimal(8,2)\"}
    - {name: occurred_at, type: timestamp with time zone, nullable: false}
    - {name: plate, type: string}
    - {name: vehicle, type: string}
";

fn rest_job(api: &Api, job: &str, request: &str, extra: &str) {
    api.ws.write_job(
        &format!("{job}.yaml"),
        &format!(
            "job: {job}\nsource:\n  connection: tags\n  fields: {{plate: $.vehicle.plate}}\n  coerce: [amount]\n{extra}  request:\n{request}\ntarget:\n  table: {job}\n{SCHEMA}"
        ),
    );
}

#[test]
fn every_paginator_and_auth_kind_lands_the_partners_data_exactly() {
    let api = Api::new(
        "matrix",
        json!({"n": 1234, "every_500": 9, "every_429": 13}),
    );
    api.connection("");
    let cases = [
        (
            "offset",
            "open",
            "",
            "    records: $.data\n    paginate: {kind: offset, param: offset, limit_param: limit, limit: 100, total: $.total}",
        ),
        (
            "page",
            "bearer",
            "  auth: {kind: bearer, token: \"${TAGS_TOKEN}\"}\n",
            "    records: $.items[*]\n    paginate: {kind: page, param: page, size_param: per_page, size: 100}",
        ),
        (
            "cursor",
            "key",
            "  auth: {kind: api_key, name: X-API-Key, value: \"${TAGS_KEY}\"}\n",
            "    params: {limit: \"150\"}\n    records: $.data[*]\n    paginate: {kind: cursor, param: cursor, from: $.meta.next}",
        ),
        (
            "header",
            "keyq",
            "  auth: {kind: api_key, name: api_key, value: \"${TAGS_KEY}\", in: query}\n",
            "    params: {limit: \"150\"}\n    paginate: {kind: cursor, param: cursor, header: X-Next-Cursor}",
        ),
        (
            "next",
            "basic",
            "  auth: {kind: basic, username: partner, password: \"${TAGS_PASSWORD}\"}\n",
            "    params: {limit: \"150\"}\n    records: $.results\n    paginate: {kind: next_url, from: $.links.next}",
        ),
        (
            "link",
            "oauth",
            "  auth: {kind: oauth2, token_url: oauth/token, client_id: sluice-client, client_secret: \"${TAGS_CLIENT_SECRET}\"}\n",
            "    params: {limit: \"150\"}\n    paginate: {kind: link}",
        ),
    ];
    let truth = api.truth();
    let mut retries = 0;
    for (pager, auth, connection, request) in cases {
        api.connection(connection);
        let job = format!("tolls_{pager}");
        rest_job(
            &api,
            &job,
            &format!("    path: {auth}/transactions/{pager}\n{request}"),
            "",
        );
        let summary = api.run(&job);
        assert_eq!(summary["status"], "committed", "{pager}: {summary}");
        assert_eq!(api.landed(&job), truth, "{pager}/{auth}: {summary}");
        retries += summary["api"]["retries"].as_u64().unwrap_or(0);
        assert!(
            summary["api"]["requests"].as_u64().unwrap_or(0) > 8,
            "{summary}"
        );
        assert!(
            summary["api"]["bytes"].as_u64().unwrap_or(0) > 100_000,
            "{summary}"
        );
    }
    assert!(
        retries >= 6,
        "the injected 500s and 429s were retried: {retries}"
    );
    // The vehicle, a nested object, is kept as its JSON text.
    let vehicle = api.row("SELECT vehicle FROM tolls_link WHERE id = 2");
    assert_eq!(vehicle, [r#"{"class":2,"plate":"B-001"}"#]);
}

#[test]
fn incremental_runs_ask_only_for_their_window_and_a_rerun_changes_nothing() {
    let api = Api::new("window", json!({"n": 600}));
    api.connection("");
    rest_job(
        &api,
        "tolls",
        "    path: open/transactions/cursor\n    params: {limit: \"100\"}\n    records: $.data[*]\n    paginate: {kind: cursor, param: cursor, from: $.meta.next}",
        "  cursor: occurred_at\n  window: {since: since, until: until, start: \"2024-04-30T00:00:00Z\"}\n",
    );
    let first = api.run("tolls");
    assert_eq!(api.landed("tolls")[0], "600", "{first}");
    let hi = first["window"]["hi"]["value"]
        .as_str()
        .expect("hi")
        .to_string();

    std::thread::sleep(Duration::from_millis(1100));
    api.admin("add", &json!({"n": 40}));
    // The window's upper bound is a whole second: records of this second are the next's.
    std::thread::sleep(Duration::from_millis(1100));
    let second = api.run("tolls");
    assert_eq!(second["rows"], 40, "{second}");
    assert_eq!(
        second["api"]["records"], 40,
        "only the window is asked for: {second}"
    );
    let log = api.get("log");
    let asked: Vec<&Value> = log
        .as_array()
        .expect("log")
        .iter()
        .filter(|l| l["args"].get("cursor").is_none())
        .collect();
    let last = asked.last().expect("a request");
    let since = last["args"]["since"].as_str().expect("since");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(since).expect("since"),
        chrono::DateTime::parse_from_rfc3339(&hi).expect("hi"),
        "the second run's lower bound is the first's upper: {last}"
    );
    assert_eq!(api.landed("tolls"), api.truth());

    let third = api.run("tolls");
    assert_eq!(third["rows"], 0, "{third}");
    assert_eq!(api.landed("tolls"), api.truth(), "a rerun changes nothing");
}

#[test]
fn a_parent_listing_and_each_parents_children() {
    let api = Api::new("parents", json!({"n": 300}));
    api.connection("  rate_limit: {concurrency: 4, per_second: 200}\n");
    rest_job(
        &api,
        "tag_tolls",
        "    path: \"open/tags/{tag_id}/transactions\"\n    records: $.transactions\n    paginate: {kind: cursor, param: cursor, from: $.next}",
        "  parent:\n    request:\n      path: open/tags\n      records: $.tags\n      paginate: {kind: page, param: page, size_param: per_page, size: 10}\n    fields: {tag_id: $.id}\n",
    );
    let summary = api.run("tag_tolls");
    assert_eq!(api.landed("tag_tolls"), api.truth(), "{summary}");
    let tags = api.row(
        "SELECT count(DISTINCT tag_id), count(*) FILTER (WHERE tag_id IS NULL) FROM tag_tolls",
    );
    assert_eq!(tags, ["25", "0"], "each child record has its parent's tag");
}

/// A SOAP job whose request's page token is `token` (the `{page_token}` placeholder pages
/// the response).
fn soap_job(api: &Api, job: &str, token: &str) {
    let next = if token == "{page_token}" {
        "    next_token: GetTransactionsResponse/GetTransactionsResult/nextPageToken\n"
    } else {
        ""
    };
    api.ws.write_job(
        &format!("{job}.yaml"),
        &format!(
            r#"job: {job}
source:
  connection: tags_soap
  fields: {{plate: $.vehicle.plate}}
  soap:
    action: GetTransactions
    path: "/soap?t=soap_{job}"
    envelope: |
      <soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="urn:tags">
        <soapenv:Header/>
        <soapenv:Body><t:GetTransactions><t:pageToken>{token}</t:pageToken></t:GetTransactions></soapenv:Body>
      </soapenv:Envelope>
    records: GetTransactionsResponse/GetTransactionsResult/transactions
{next}target:
  table: {job}
{SCHEMA}"#
        ),
    );
}

#[test]
fn soap_records_equal_what_zeep_reads_through_server_faults() {
    let job = "soap_tolls";
    let api = Api::new(&format!("soap_{job}"), json!({"n": 333, "every_fault": 3}));
    api.ws.connections(&format!(
        "tags_soap:\n  kind: http\n  base_url: {}\n  retry: {{backoff: 20ms, max_backoff: 2s}}\n  auth: {{kind: ws_security, username: soap-user, password: \"${{TAGS_SOAP_PASSWORD}}\"}}\n",
        api.agent
    ));
    soap_job(&api, job, "{page_token}");
    let summary = api.run(job);
    assert!(
        summary["api"]["retries"].as_u64().unwrap_or(0) >= 2,
        "server faults were retried: {summary}"
    );
    api.admin("reset", &json!({"n": 333}));
    let python =
        std::env::var("SLUICE_TEST_PYTHON").expect("SLUICE_TEST_PYTHON (scripts/test sets it)");
    let zeep = Command::new(python)
        .arg(crate::common::repo().join("tests/api/zeep_read.py"))
        .arg(format!("{}/soap?wsdl", api.agent))
        .arg(format!("soap_{job}"))
        .args(["soap-user", SECRETS[4]])
        .output()
        .expect("zeep");
    assert!(
        zeep.status.success(),
        "{}",
        String::from_utf8_lossy(&zeep.stderr)
    );
    let mut want: Vec<String> = String::from_utf8_lossy(&zeep.stdout)
        .lines()
        .map(|l| {
            let r: Value = serde_json::from_str(l).expect("zeep line");
            format!(
                "{}|{}|{}|{}",
                r["id"],
                r["tag_id"].as_str().unwrap_or(""),
                r["amount"].as_str().unwrap_or(""),
                r["plate"].as_str().unwrap_or("")
            )
        })
        .collect();
    want.sort();
    let out = crate::common::lake_sql(
        &api.ws,
        &format!(
            "SELECT concat(CAST(id AS VARCHAR), '|', tag_id, '|', CAST(amount AS VARCHAR), '|', plate) AS r FROM {job} ORDER BY r"
        ),
    );
    let mut got: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(|l| l.trim_matches('|').trim().to_string())
        .collect();
    got.sort();
    assert_eq!(want.len(), 333);
    assert_eq!(got, want);

    // A client fault is the job's error, with the fault's text; not retried.
    soap_job(&api, "soap_bad", "bad");
    let bad = api.sluice(&["run", "--job", "soap_bad"]);
    bad.assert_code(2);
    assert!(
        bad.stderr().contains("is not a token this service issued")
            || bad.stdout().contains("is not a token this service issued"),
        "{}",
        bad.stderr()
    );
    // Wrong WS-Security password: the service's client fault, exit 2, no secret shown.
    let wrong = api
        .command(&["run", "--job", job])
        .env("TAGS_SOAP_PASSWORD", "not-the-password")
        .output()
        .expect("run");
    let wrong = Run(wrong);
    wrong.assert_code(2);
    assert!(format!("{}{}", wrong.stdout(), wrong.stderr()).contains("FailedAuthentication"));
    assert!(!wrong.stderr().contains("not-the-password"));
}

#[test]
fn wrong_credentials_are_the_users_error_and_no_secret_is_shown() {
    let api = Api::new("wrong", json!({"n": 10}));
    for (auth, path) in [
        (
            "  auth: {kind: bearer, token: \"${TAGS_TOKEN}\"}\n",
            "bearer/transactions/page",
        ),
        (
            "  auth: {kind: oauth2, token_url: oauth/token, client_id: sluice-client, client_secret: \"${TAGS_CLIENT_SECRET}\"}\n",
            "oauth/transactions/page",
        ),
        (
            "  auth: {kind: api_key, name: api_key, value: \"${TAGS_KEY}\", in: query}\n",
            "keyq/transactions/page",
        ),
    ] {
        api.connection(auth);
        rest_job(
            &api,
            "tolls",
            &format!("    path: {path}\n    records: $.items"),
            "",
        );
        let run = Run(api
            .command(&["run", "--job", "tolls"])
            .env("TAGS_TOKEN", "wrong-token-value")
            .env("TAGS_CLIENT_SECRET", "wrong-client-secret")
            .env("TAGS_KEY", "wrong-key-value")
            .output()
            .expect("run"));
        run.assert_code(2);
        let all = format!("{}{}", run.stdout(), run.stderr());
        assert!(all.contains("401"), "{path}: {all}");
        for s in [
            "wrong-token-value",
            "wrong-client-secret",
            "wrong-key-value",
        ] {
            assert!(!all.contains(s), "{path}: the secret is shown: {all}");
        }
    }
}

#[test]
fn an_api_that_keeps_failing_is_retryable_and_a_missing_path_is_not() {
    let api = Api::new("failing", json!({"n": 10, "every_500": 1}));
    api.ws.connections(&format!(
        "tags:\n  kind: http\n  base_url: {}\n  retry: {{attempts: 3, backoff: 10ms}}\n",
        api.base
    ));
    rest_job(
        &api,
        "tolls",
        "    path: open/transactions/page\n    records: $.items",
        "",
    );
    let run = api.sluice(&["run", "--job", "tolls"]);
    run.assert_code(75);
    assert!(
        run.stderr().contains("gave up after 3 tries"),
        "{}",
        run.stderr()
    );
    rest_job(
        &api,
        "tolls",
        "    path: open/no/such/path\n    records: $.items",
        "",
    );
    let run = api.sluice(&["run", "--job", "tolls"]);
    run.assert_code(2);
    assert!(run.stderr().contains("404"), "{}", run.stderr());
}

#[test]
fn a_run_killed_mid_way_and_rerun_lands_each_record_once() {
    let api = Api::new("killed", json!({"n": 900}));
    api.connection("");
    rest_job(
        &api,
        "tolls",
        "    path: open/transactions/offset\n    records: $.data\n    paginate: {kind: offset, param: offset, limit_param: limit, limit: 100}",
        "  cursor: occurred_at\n  window: {since: since, until: until}\n",
    );
    for point in ["received", "written"] {
        let mut child = api
            .command(&["run", "--job", "tolls"])
            .env("SLUICE_FAILPOINT", point)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("reached") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("failpoint reached");
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        api.admin("add", &json!({"n": 25}));
    }
    std::thread::sleep(Duration::from_millis(1100));
    let mut summary = Value::Null;
    for _ in 0..60 {
        let run = api.sluice(&["run", "--job", "tolls", "--output", "json"]);
        if run.code() == 3 {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        run.assert_code(0);
        summary =
            serde_json::from_str(run.stdout().lines().last().unwrap_or_default()).expect("summary");
        break;
    }
    assert_eq!(summary["status"], "committed", "{summary}");
    assert_eq!(
        api.landed("tolls"),
        api.truth(),
        "each record once after the kills"
    );
}
