//! API feeds as partners really deliver, against the partner fixture: a SOAP service
//! that answers `Server.Busy` once and refuses a replayed WS-Security nonce (1.1 and
//! 1.2); 30-second OAuth2 tokens reused across pages; an unreachable `${VAR}` base URL
//! named in the error while the password stays masked; records published later than
//! `lag` picked up by `window.lookback`, once each; a SOAP window whose exclusive upper
//! bound (`{before}`) reads a record exactly on the bound once.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::{Api, SCHEMA, SECRETS, no_secret, rest_job};
use crate::common::Run;

/// The SOAP connection `tags_soap` (WS-Security, digest), fast retries.
fn soap_connection(api: &Api) {
    api.ws.connections(&format!(
        "tags_soap:\n  kind: http\n  base_url: {}\n  retry: {{backoff: 20ms, max_backoff: 2s}}\n  auth: {{kind: ws_security, username: soap-user, password: \"${{TAGS_SOAP_PASSWORD}}\"}}\n",
        api.agent
    ));
}

/// A paged SOAP job on the service of `version` ("1.1" at /soap, "1.2" at /soap12) for
/// `tenant`; `inner` is the operation's parameters, `extra` more source lines.
fn soap_job(api: &Api, job: &str, tenant: &str, version: &str, inner: &str, extra: &str) {
    let (path, namespace) = match version {
        "1.2" => ("/soap12", "http://www.w3.org/2003/05/soap-envelope"),
        _ => ("/soap", "http://schemas.xmlsoap.org/soap/envelope/"),
    };
    let yaml = r#"job: @JOB@
source:
  connection: tags_soap
  fields: {plate: $.vehicle.plate}
@EXTRA@  soap:
    version: "@VERSION@"
    action: GetTransactions
    path: "@PATH@?t=@TENANT@"
    envelope: |
      <s:Envelope xmlns:s="@NS@" xmlns:t="urn:tags">
        <s:Header/>
        <s:Body><t:GetTransactions>@INNER@</t:GetTransactions></s:Body>
      </s:Envelope>
    records: GetTransactionsResponse/GetTransactionsResult/transactions
    next_token: GetTransactionsResponse/GetTransactionsResult/nextPageToken
target:
  table: @JOB@
"#
    .replace("@JOB@", job)
    .replace("@EXTRA@", extra)
    .replace("@VERSION@", version)
    .replace("@PATH@", path)
    .replace("@TENANT@", tenant)
    .replace("@NS@", namespace)
    .replace("@INNER@", inner);
    api.ws
        .write_job(&format!("{job}.yaml"), &format!("{yaml}{SCHEMA}"));
}

#[test]
fn a_busy_soap_service_is_asked_again_with_a_fresh_nonce() {
    for version in ["1.1", "1.2"] {
        let tenant = format!("busy_{}", version.replace('.', ""));
        let api = Api::new(&tenant, json!({"n": 120, "busy_once": true}));
        soap_connection(&api);
        soap_job(
            &api,
            "tolls_busy",
            &tenant,
            version,
            "<t:pageToken>{page_token}</t:pageToken>",
            "",
        );
        // Without a new nonce per attempt, the retry after Busy is refused as a replay.
        let summary = api.run("tolls_busy");
        assert_eq!(summary["status"], "committed", "{version}: {summary}");
        let stats = api.get("stats");
        assert_eq!(stats["busy_answered"], 1, "{version}: {stats}");
        assert_eq!(
            stats["replays"], 0,
            "{version}: no nonce was sent twice: {stats}"
        );
        assert!(
            summary["api"]["retries"].as_u64().unwrap_or(0) >= 1,
            "{version}: the Busy fault was retried: {summary}"
        );
        assert_eq!(api.landed("tolls_busy"), api.truth(), "{version}");
    }
}

#[test]
fn thirty_second_tokens_are_reused_across_pages() {
    let api = Api::new("short_tokens", json!({"n": 2100, "token_seconds": 30}));
    api.connection(
        "  auth: {kind: oauth2, token_url: oauth/token, client_id: sluice-client, client_secret: \"${TAGS_CLIENT_SECRET}\"}\n",
    );
    rest_job(
        &api,
        "tolls",
        "    path: oauth/transactions/page\n    records: $.items[*]\n    paginate: {kind: page, param: page, size_param: per_page, size: 100}",
        "",
    );
    let summary = api.run("tolls");
    assert_eq!(api.landed("tolls"), api.truth(), "{summary}");
    let stats = api.get("stats");
    let tokens = stats["token_requests"].as_u64().unwrap_or(u64::MAX);
    let requests = summary["api"]["requests"].as_u64().unwrap_or(0);
    assert!(requests >= 22, "21 pages and the empty one: {summary}");
    assert!(
        tokens <= 2,
        "a 30-second token serves many pages: {tokens} token requests for {requests} requests"
    );
}

#[test]
fn an_unreachable_base_url_from_a_variable_is_named_and_the_password_is_not() {
    let api = Api::new("down", json!({"n": 1}));
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    api.ws.connections(
        "tags:\n  kind: http\n  base_url: \"${TAGS_API_URL}\"\n  retry: {attempts: 2, backoff: 10ms}\n  auth: {kind: basic, username: partner, password: \"${TAGS_PASSWORD}\"}\n",
    );
    rest_job(
        &api,
        "tolls",
        "    path: basic/transactions/page\n    records: $.items",
        "",
    );
    let run = Run(api
        .command(&["run", "--job", "tolls"])
        .env("TAGS_API_URL", format!("http://127.0.0.1:{port}/t/down"))
        .output()
        .expect("run"));
    run.assert_code(75);
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(
        all.contains(&format!("127.0.0.1:{port}/t/down/basic/transactions/page")),
        "the error names the host and the request: {all}"
    );
    no_secret(&run);
    assert!(!all.contains(SECRETS[2]), "{all}");
}

fn post(api: &Api, what: &str, body: Value) {
    api.admin(what, &body);
}

/// Waits out `lag` (2s) and the window's whole second, so that what was published is
/// inside the next run's window.
fn past_the_lag() {
    std::thread::sleep(Duration::from_millis(3200));
}

#[test]
fn late_records_are_picked_up_by_the_lookback_once_each() {
    let api = Api::new("late", json!({"n": 50}));
    api.connection("");
    let request = "    path: open/transactions/cursor\n    params: {limit: \"20\"}\n    records: $.data[*]\n    paginate: {kind: cursor, param: cursor, from: $.meta.next}";
    let window = "  cursor: occurred_at\n  lag: 2s\n";
    rest_job(
        &api,
        "late_lookback",
        request,
        &format!(
            "{window}  dedup: {{key: [id]}}\n  window: {{since: since, until: until, start: \"2024-04-30T00:00:00Z\", lookback: 10m}}\n"
        ),
    );
    // The same job without the lookback: what it loses is what the lookback finds.
    rest_job(
        &api,
        "late_plain",
        request,
        &format!(
            "{window}  window: {{since: since, until: until, start: \"2024-04-30T00:00:00Z\"}}\n"
        ),
    );
    let both = |api: &Api| {
        let with = api.run("late_lookback");
        let without = api.run("late_plain");
        (with, without)
    };
    both(&api);
    post(&api, "add", json!({"n": 10}));
    past_the_lag();
    both(&api);
    // Published now, stamped 20 s ago: before the last run's upper bound.
    post(&api, "late", json!({"n": 5, "age_seconds": 20}));
    post(&api, "add", json!({"n": 4}));
    past_the_lag();
    let (third, _) = both(&api);
    assert!(
        third["rows"].as_u64().unwrap_or(0) >= 9,
        "the late records and the new ones: {third}"
    );
    post(&api, "late", json!({"n": 3, "age_seconds": 15}));
    past_the_lag();
    both(&api);
    past_the_lag();
    let (last, _) = both(&api);
    assert_eq!(
        last["rows"], 0,
        "what is read again is dropped by the record key: {last}"
    );
    let truth = api.truth();
    assert_eq!(api.landed("late_lookback"), truth, "each record once");
    let plain = api.landed("late_plain");
    assert_eq!(
        plain[0].parse::<u64>().unwrap_or(0) + 8,
        truth[0].parse::<u64>().unwrap_or(0),
        "without the lookback the 8 late records are lost: {plain:?}"
    );
}

#[test]
fn an_exclusive_upper_bound_reads_a_record_on_the_bound_once() {
    let tenant = "exclusive";
    let api = Api::new(tenant, json!({"n": 0}));
    // A record on every whole second around now: whatever second the run takes as its
    // upper bound, a record sits exactly on it.
    let now = Utc::now().timestamp();
    let times: Vec<String> = (now - 20..=now + 8)
        .map(|s| {
            DateTime::<Utc>::from_timestamp(s, 0)
                .expect("instant")
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        })
        .collect();
    post(&api, "at", json!({ "times": times }));
    soap_connection(&api);
    // The service's `before` is exclusive: `{until}` there would lose the bound's record.
    soap_job(
        &api,
        "tolls_before",
        tenant,
        "1.1",
        "<t:since>{since}</t:since><t:pageToken>{page_token}</t:pageToken><t:before>{before}</t:before>",
        "  cursor: occurred_at\n  window: {start: \"2024-04-30T00:00:00Z\"}\n",
    );
    let first = api.run("tolls_before");
    let hi = first["window"]["hi"]["value"]
        .as_str()
        .expect("hi")
        .to_string();
    let hi = DateTime::parse_from_rfc3339(&hi)
        .expect("hi")
        .with_timezone(&Utc);
    let records = api.get("records");
    let on_bound = records
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| {
            let at = r["occurred_at"].as_str().expect("occurred_at");
            DateTime::parse_from_rfc3339(at).expect("occurred_at") == hi
        })
        .count();
    assert_eq!(on_bound, 1, "a record sits on the bound {hi}: {first}");
    let log = api.get("log");
    let asked = log
        .as_array()
        .expect("log")
        .iter()
        .filter_map(|l| l["args"]["before"].as_str())
        .next_back()
        .expect("a request with `before`")
        .to_string();
    assert_eq!(
        DateTime::parse_from_rfc3339(&asked).expect("before"),
        hi + chrono::Duration::seconds(1),
        "the exclusive bound is the next second"
    );
    // After the last record's second, and past it.
    std::thread::sleep(Duration::from_secs(11));
    api.run("tolls_before");
    assert_eq!(api.landed("tolls_before"), api.truth(), "each record once");
}
