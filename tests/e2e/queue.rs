//! The queue feed against moto's SQS and SNS, with the real SDK clients: every good
//! record lands once, poison goes to quarantine, the queue ends empty; a run killed at
//! each point of the protocol and rerun gives each message once; duplicates (an SNS
//! redelivery, a resent body, a redelivery after a commit) land once; a run slower than
//! the visibility timeout keeps its messages hidden; a receive that fails mid-run (at the
//! test front of moto) commits what was received, and a later run the rest, none of it
//! through the dead-letter queue.

use std::io::{Read, Write};
use std::process::Child;
use std::time::{Duration, Instant};

use aws_sdk_sns::types::PublishBatchRequestEntry;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};

use crate::cloud::Cloud;
use crate::common::{Run, first_row};

struct Feed {
    cloud: Cloud,
    sqs: aws_sdk_sqs::Client,
    url: String,
    /// Jobs and state in DynamoDB, the lake on S3, tables in Glue (else: folders).
    on_aws: bool,
}

impl Feed {
    /// A fresh queue and a workspace with the `gps` connection to it; the lake and state
    /// in the workspace's folders.
    async fn new(test: &str) -> Self {
        Self::with(Cloud::bare(test), false).await
    }

    /// The same with the job rows and state in DynamoDB, the lake on S3 and the tables
    /// published in Glue, as on AWS.
    async fn on_aws(test: &str) -> Self {
        Self::with(Cloud::new(test), true).await
    }

    async fn with(cloud: Cloud, on_aws: bool) -> Self {
        let test = cloud.bucket.clone();
        let sqs = cloud.sqs().await;
        let name = test.replace('_', "-");
        let url = sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        cloud
            .ws
            .connections(&format!("gps:\n  kind: sqs\n  queue_url: {url}\n"));
        Self {
            cloud,
            sqs,
            url,
            on_aws,
        }
    }

    /// Writes the job `gps_positions` with extra `queue:` options.
    fn job(&self, queue_options: &str) {
        self.cloud.ws.write_job(
            "gps_positions.yaml",
            &format!(
                "job: gps_positions
source:
  connection: gps
  record:
    - {{name: truck_id, type: string, nullable: false}}
    - {{name: seq, type: bigint, nullable: false}}
    - {{name: recorded_at, type: timestamp with time zone, nullable: false}}
    - {{name: lat, type: double}}
    - {{name: lon, type: double}}
  message_columns: [message_id, sent_at, received_at]
  queue:
    wait: 1s
{queue_options}
transform: SELECT *, date_format(recorded_at, '%Y-%m-%d') AS dt FROM source
target:
  table: gps_positions
  partition_by: [dt]
"
            ),
        );
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        if self.on_aws {
            self.cloud.command(args)
        } else {
            self.cloud.local_command(args)
        }
    }

    fn sluice(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().expect("run sluice"))
    }

    fn run(&self) -> serde_json::Value {
        let run = self.sluice(&["run", "--job", "gps_positions", "--output", "json"]);
        run.assert_code(0);
        serde_json::from_str(run.stdout().trim()).expect("summary json")
    }

    fn sql(&self, sql: &str) -> String {
        let run = self.sluice(&["query", sql]);
        run.assert_code(0);
        run.stdout()
    }

    async fn send(&self, bodies: &[String]) {
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(b)
                        .build()
                        .expect("entry")
                })
                .collect();
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("send");
            assert!(out.failed().is_empty(), "{:?}", out.failed());
        }
    }

    /// (visible, in flight) messages.
    async fn depth(&self) -> (u64, u64) {
        self.depth_of(&self.url).await
    }

    /// (visible, in flight) messages of the queue at `url`.
    async fn depth_of(&self, url: &str) -> (u64, u64) {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("attributes");
        let attrs = out.attributes().expect("attributes");
        let n = |a: QueueAttributeName| attrs.get(&a).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            n(QueueAttributeName::ApproximateNumberOfMessages),
            n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    async fn arn(&self) -> String {
        self.arn_of(&self.url).await
    }

    async fn arn_of(&self, url: &str) -> String {
        self.sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("arn")
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("queue arn")
    }

    /// A dead-letter queue for the feed's queue that takes a message received once and
    /// not deleted, the next time it would be received (`maxReceiveCount` 1): any message
    /// a run received and did not commit ends there. Returns its URL.
    async fn dead_letter_queue(&self) -> String {
        let name = format!("{}-dlq", self.queue_name());
        let dlq = self
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .expect("create the dead-letter queue")
            .queue_url
            .expect("queue url");
        let arn = self.arn_of(&dlq).await;
        self.sqs
            .set_queue_attributes()
            .queue_url(&self.url)
            .attributes(
                QueueAttributeName::RedrivePolicy,
                serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": "1"}).to_string(),
            )
            .send()
            .await
            .expect("redrive policy");
        dlq
    }

    fn queue_name(&self) -> &str {
        self.url.rsplit('/').next().expect("a queue name")
    }

    /// `sluice run` of the job (JSON summary) with SQS reached through moto's test front
    /// (tests/aws/moto_front.py), which fails the calls a test arms it to.
    fn run_through_front(&self) -> Run {
        let mut cmd = self.command(&["run", "--job", "gps_positions", "--output", "json"]);
        cmd.env("AWS_ENDPOINT_URL_SQS", &self.cloud.cloudwatch_endpoint);
        Run(cmd.output().expect("run sluice"))
    }

    /// Arms the front to fail this queue's ReceiveMessage calls: the next `pass` reach
    /// moto, the `fail` after them are answered 500 (and never reach it); `None` clears
    /// the rule. Returns the rule's counts so far: (calls, failed).
    fn receive_fault(&self, rule: Option<(u64, u64)>) -> (u64, u64) {
        let request = match rule {
            Some((pass, fail)) => serde_json::json!({
                "queue": self.queue_name(), "operation": "ReceiveMessage",
                "pass": pass, "fail": fail
            }),
            None => serde_json::json!({
                "queue": self.queue_name(), "operation": "ReceiveMessage", "clear": true
            }),
        }
        .to_string();
        let front = &self.cloud.cloudwatch_endpoint;
        let host = front.trim_start_matches("http://").trim_end_matches('/');
        let mut stream = std::net::TcpStream::connect(host).expect("connect to the front");
        write!(
            stream,
            "POST /_sluice/faults HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{request}",
            request.len()
        )
        .expect("write to the front");
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .expect("read the front's answer");
        let (_, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        let counts: serde_json::Value = serde_json::from_str(body).expect("the rule's counts");
        let n = |k: &str| counts[k].as_u64().expect("a count");
        (n("calls"), n("failed"))
    }

    /// Starts a run stopped at failpoint `point`; returns once it is there.
    fn start_at(&self, point: &str) -> Child {
        crate::common::start_at_failpoint(self.command(&["run", "--job", "gps_positions"]), point)
    }

    /// Runs until the queue is empty and `rows` records are in the lake (messages a
    /// killed run held come back after their visibility timeout).
    async fn drain(&self, rows: u64) {
        let started = Instant::now();
        loop {
            self.run();
            let (visible, hidden) = self.depth().await;
            let landed = self.count("SELECT count(*) FROM gps_positions");
            if visible + hidden == 0 && landed == rows {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90) && landed <= rows,
                "{landed} of {rows} rows landed, queue {visible}+{hidden}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn count(&self, sql: &str) -> u64 {
        let run = self.sluice(&["query", sql]);
        if run.code() != 0 {
            return 0; // no table yet
        }
        first_row(&run.stdout())[0].parse().expect("a count")
    }

    /// The first row of a query's result, its cells as text.
    fn row(&self, sql: &str) -> Vec<String> {
        first_row(&self.sql(sql))
    }
}

fn position(truck: u64, seq: u64) -> String {
    serde_json::json!({
        "truck_id": format!("T{truck:03}"),
        "seq": seq,
        "recorded_at": format!("2024-05-01T{:02}:{:02}:00Z", seq / 60 % 24, seq % 60),
        "lat": 52.0 + (seq % 1000) as f64 / 1000.0,
        "lon": 13.0,
    })
    .to_string()
}

#[tokio::test]
async fn three_thousand_messages_land_once_with_the_poison_in_quarantine() {
    let feed = Feed::new("gps_mixed").await;
    feed.job("    receivers: 4");
    let sns = feed.cloud.sns().await;
    let queue_arn = feed.arn().await;
    let mut topics = Vec::new();
    for raw in [false, true] {
        let topic = sns
            .create_topic()
            .name(format!(
                "gps-{}-{raw}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ))
            .send()
            .await
            .expect("topic")
            .topic_arn
            .expect("arn");
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(&queue_arn)
            .attributes("RawMessageDelivery", raw.to_string())
            .send()
            .await
            .expect("subscribe");
        topics.push(topic);
    }

    let mut seq = 0;
    let mut next = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                seq += 1;
                position(seq % 150, seq)
            })
            .collect()
    };
    // 1,500 single records and 500 arrays of three, straight into the queue.
    let mut direct = next(1500);
    for _ in 0..500 {
        direct.push(format!("[{}]", next(3).join(",")));
    }
    // 20 that cannot be decoded: not JSON, a missing field, a value of the wrong type.
    for i in 0..20 {
        direct.push(match i % 3 {
            0 => format!("garbage {i}"),
            1 => r#"{"truck_id":"T001","seq":1}"#.to_string(),
            _ => {
                r#"{"truck_id":"T001","seq":"x","recorded_at":"2024-05-01T00:00:00Z"}"#.to_string()
            }
        });
    }
    feed.send(&direct).await;
    // 500 through SNS with its envelope, 480 with raw delivery.
    for (topic, n) in topics.iter().zip([500, 480]) {
        let bodies = next(n);
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    PublishBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message(b)
                        .build()
                        .expect("entry")
                })
                .collect();
            sns.publish_batch()
                .topic_arn(topic)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
                .expect("publish");
        }
    }
    assert_eq!(feed.depth().await, (3000, 0));

    let summary = feed.run();
    assert_eq!(summary["status"], "committed", "{summary}");
    // A standard queue delivers at least once: moto too, to receivers polling at once,
    // now and then. A second copy counts as received and as a duplicate, and is deleted.
    let feed_of = |k: &str| summary["feed"][k].as_u64().expect("a count");
    assert_eq!(
        feed_of("received") - feed_of("duplicates"),
        3000,
        "{summary}"
    );
    assert_eq!(feed_of("quarantined"), 20, "{summary}");
    // Every message is deleted: the distinct ones at least once. Of a message received
    // twice, moto may refuse the older receipt's delete (SQS accepts it), which the summary
    // counts as not deleted; the empty queue below is what matters.
    assert!(
        feed_of("deleted") >= feed_of("received") - feed_of("duplicates"),
        "{summary}"
    );
    assert_eq!(summary["rows"], 3980, "{summary}");
    assert_eq!(
        feed.depth().await,
        (0, 0),
        "the queue is empty after {summary}"
    );

    let counts = feed.row(
        "SELECT count(*), count(DISTINCT seq), min(seq), max(seq), count(DISTINCT _message_id) FROM gps_positions",
    );
    // 1,500 + 500 arrays + 500 SNS + 480 raw = 2,980 messages with records.
    assert_eq!(counts, ["3980", "3980", "1", "3980", "2980"]);
    let enveloped = feed.row(
        "SELECT count(*) FROM gps_positions WHERE seq > 3000 AND seq <= 3500 AND _sent_at IS NOT NULL AND _received_at >= _sent_at",
    );
    assert_eq!(enveloped, ["500"]);
    let quarantine = feed.row(
        "SELECT count(*), count(DISTINCT _message_id), sum(CASE WHEN _body LIKE 'garbage%' THEN 1 ELSE 0 END), sum(CASE WHEN _error LIKE '%recorded_at%' THEN 1 ELSE 0 END) FROM gps_positions__quarantine",
    );
    assert_eq!(quarantine, ["20", "20", "7", "7"]);

    // Nothing left: the next run is up to date and writes nothing.
    let again = feed.run();
    assert_eq!(again["status"], "up_to_date", "{again}");
}

#[tokio::test]
async fn a_run_killed_at_any_point_and_rerun_gives_each_message_once() {
    for point in ["received", "written", "committed"] {
        let feed = Feed::new(&format!("gps_kill_{point}")).await;
        // Killed messages come back within max_seconds + visibility.
        feed.job("    visibility: 10s\n    max_seconds: 2");
        let bodies: Vec<String> = (1..=200).map(|n| position(n % 7, n)).collect();
        feed.send(&bodies).await;

        let mut child = feed.start_at(point);
        if point == "received" {
            // While it runs, a second run of the job is refused: busy, retry later.
            let second = feed.sluice(&["run", "--job", "gps_positions"]);
            second.assert_code(3);
        }
        child.kill().expect("kill");
        child.wait().expect("reap");
        let state = std::fs::read_to_string(feed.cloud.ws.state().join("gps_positions.json"))
            .expect("state");
        match point {
            "committed" => assert!(!state.contains("\"pending\""), "{point}: {state}"),
            _ => assert!(state.contains("\"pending\""), "{point}: {state}"),
        }

        feed.drain(200).await;
        let counts = feed.row(
            "SELECT count(*), count(DISTINCT _message_id), count(DISTINCT seq) FROM gps_positions",
        );
        assert_eq!(counts, ["200", "200", "200"], "{point}");
    }
}

#[tokio::test]
async fn duplicates_land_once() {
    let feed = Feed::new("gps_dups").await;
    feed.job("    dedup: message_id");
    // SNS delivers a notification twice (the same SNS MessageId in two SQS messages).
    let envelope = |id: &str, seq: u64| {
        serde_json::json!({
            "Type": "Notification",
            "MessageId": id,
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:gps",
            "Message": position(1, seq),
            "Timestamp": "2024-05-01T12:00:00.000Z",
        })
        .to_string()
    };
    feed.send(&[
        envelope("sns-1", 1),
        envelope("sns-1", 1),
        envelope("sns-2", 2),
    ])
    .await;
    let first = feed.run();
    assert_eq!(first["rows"], 2, "{first}");
    assert_eq!(first["feed"]["duplicates"], 1, "{first}");
    assert_eq!(first["feed"]["deleted"], 3, "{first}");

    // The same notification again after the commit: recognised from the committed
    // run's keys, deleted, nothing written.
    feed.send(&[envelope("sns-2", 2)]).await;
    let second = feed.run();
    assert_eq!(second["status"], "up_to_date", "{second}");
    assert_eq!(second["feed"]["duplicates"], 1, "{second}");
    assert_eq!(feed.depth().await, (0, 0));

    // With `dedup: body`, a producer resending the same body is one message.
    feed.job("    dedup: body");
    feed.send(&[position(2, 10), position(2, 10), position(2, 11)])
        .await;
    let third = feed.run();
    assert_eq!(third["rows"], 2, "{third}");
    let counts = feed.row("SELECT count(*), count(DISTINCT seq) FROM gps_positions");
    assert_eq!(counts, ["4", "4"]);
}

#[tokio::test]
async fn a_run_slower_than_the_visibility_timeout_keeps_its_messages_hidden() {
    let feed = Feed::new("gps_slow").await;
    feed.job("    visibility: 10s\n    max_seconds: 1");
    let bodies: Vec<String> = (1..=50).map(|n| position(3, n)).collect();
    feed.send(&bodies).await;
    // The run pauses 25 s between writing and committing: 2.5 visibility periods.
    let child = feed.start_at("written:25");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let (visible, hidden) = feed.depth().await;
        assert_eq!((visible, hidden), (0, 50), "at {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(feed.depth().await, (0, 0));
    let counts = feed.row("SELECT count(*), count(DISTINCT seq) FROM gps_positions");
    assert_eq!(counts, ["50", "50"]);
}

#[tokio::test]
async fn a_missing_queue_is_a_clear_error_and_not_retryable() {
    let feed = Feed::new("gps_missing").await;
    feed.cloud.ws.connections(&format!(
        "gps:\n  kind: sqs\n  queue_url: {}-nope\n",
        feed.url
    ));
    feed.job("");
    let run = feed.sluice(&["run", "--job", "gps_positions"]);
    run.assert_code(2);
    assert!(
        run.stdout().contains("reading queue") && run.stdout().contains("connection `gps`"),
        "{}",
        run.stdout()
    );
}

#[tokio::test]
async fn on_aws_a_redelivery_after_the_commit_lands_once_and_the_quarantine_is_published() {
    let feed = Feed::on_aws("gps_on_aws").await;
    feed.job("");
    feed.cloud.push_jobs();
    let envelope = |id: &str, seq: u64| {
        serde_json::json!({
            "Type": "Notification",
            "MessageId": id,
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:gps",
            "Message": position(4, seq),
            "Timestamp": "2024-05-01T12:00:00.000Z",
        })
        .to_string()
    };
    feed.send(&[
        envelope("sns-a", 1),
        envelope("sns-b", 2),
        "{oops".to_string(),
    ])
    .await;
    let first = feed.run();
    assert_eq!(first["rows"], 2, "{first}");
    assert_eq!(first["quarantined"], 1, "{first}");

    // The checkpoint lives in DynamoDB, the keys in the run's manifest on S3.
    feed.send(&[envelope("sns-b", 2)]).await;
    let second = feed.run();
    assert_eq!(second["status"], "up_to_date", "{second}");
    assert_eq!(second["feed"]["duplicates"], 1, "{second}");
    assert_eq!(feed.depth().await, (0, 0));
    assert_eq!(
        feed.row("SELECT count(*), count(DISTINCT _message_id) FROM gps_positions"),
        ["2", "2"]
    );

    let glue = feed.cloud.glue().await;
    let quarantine = glue
        .get_table()
        .database_name(&feed.cloud.database)
        .name("gps_positions__quarantine")
        .send()
        .await
        .expect("the quarantine table is in Glue");
    let columns: Vec<String> = quarantine
        .table()
        .and_then(|t| t.storage_descriptor())
        .map(|d| d.columns().iter().map(|c| c.name().to_string()).collect())
        .unwrap_or_default();
    assert_eq!(
        columns,
        [
            "_message_id",
            "_sent_at",
            "_received_at",
            "_error",
            "_body",
            "_run_id"
        ]
    );
}

#[tokio::test]
async fn a_run_that_fails_while_planning_leaves_the_queue_untouched() {
    let feed = Feed::new("gps_bad_plan").await;
    feed.job("");
    feed.send(&[position(5, 1), position(5, 2)]).await;
    // A partition column the transform does not make: found before anything is received.
    let job = std::fs::read_to_string(feed.cloud.ws.jobs().join("gps_positions.yaml"))
        .expect("job")
        .replace("partition_by: [dt]", "partition_by: [day]");
    feed.cloud.ws.write_job("gps_positions.yaml", &job);
    let run = feed.sluice(&["run", "--job", "gps_positions"]);
    run.assert_code(2);
    assert!(run.stdout().contains("`day`"), "{}", run.stdout());
    assert_eq!(
        feed.depth().await,
        (2, 0),
        "nothing was received, so nothing counts toward the dead-letter queue"
    );
}

#[tokio::test]
async fn a_receive_that_fails_mid_run_commits_what_was_received_and_nothing_reaches_the_dlq() {
    let feed = Feed::new("gps_flaky").await;
    // One receiver: each call takes the next 10, so the counts below are exact.
    feed.job("    receivers: 1");
    let dlq = feed.dead_letter_queue().await;
    let bodies: Vec<String> = (1..=100).map(|n| position(6, n)).collect();
    feed.send(&bodies).await;

    // Three receives answer, then every call fails (after the SDK's own retries).
    feed.receive_fault(Some((3, 1000)));
    let run = feed.run_through_front();
    run.assert_code(0);
    let first: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("summary");
    assert_eq!(first["status"], "committed", "{first}");
    assert_eq!(first["rows"], 30, "{first}");
    assert_eq!(first["feed"]["received"], 30, "{first}");
    assert_eq!(first["feed"]["deleted"], 30, "{first}");
    assert_eq!(first["feed"]["receive_failures"], 1, "{first}");
    assert!(
        run.stderr()
            .contains("a receive failed after the SDK's retries"),
        "a warning in the log: {}",
        run.stderr()
    );
    let (calls, failed) = feed.receive_fault(None);
    assert_eq!(calls - failed, 3, "receiving ended at the failure");
    assert!(failed >= 1, "{calls} calls, {failed} failed");
    assert_eq!(feed.depth().await, (70, 0), "the rest waits, visible");

    // The network is back: the next run takes the rest.
    let second = feed.run_through_front();
    second.assert_code(0);
    let second: serde_json::Value = serde_json::from_str(second.stdout().trim()).expect("summary");
    assert_eq!(second["rows"], 70, "{second}");
    assert_eq!(second["feed"]["receive_failures"], 0, "{second}");

    // The very first receive fails: the run fails retryable (75), having taken nothing,
    // and with no receive call beyond the SDK's attempts at that one.
    feed.send(&(101..=120).map(|n| position(6, n)).collect::<Vec<_>>())
        .await;
    feed.receive_fault(Some((0, 1000)));
    let failing = feed.run_through_front();
    failing.assert_code(75);
    let said = format!("{}{}", failing.stdout(), failing.stderr());
    assert!(said.contains("nothing was received"), "{said}");
    let (calls, failed) = feed.receive_fault(None);
    assert_eq!(calls, failed, "no call after the failure");
    assert!(
        calls <= 3,
        "{calls} calls: the SDK's attempts at one receive"
    );
    assert_eq!(feed.depth().await, (20, 0), "nothing was taken");

    let third = feed.run_through_front();
    third.assert_code(0);
    let third: serde_json::Value = serde_json::from_str(third.stdout().trim()).expect("summary");
    assert_eq!(third["rows"], 20, "{third}");

    // Drained: an empty queue is up to date after one receive call (the long poll).
    feed.receive_fault(Some((1000, 0)));
    let empty = feed.run_through_front();
    empty.assert_code(0);
    assert!(empty.stdout().contains("up_to_date"), "{}", empty.stdout());
    assert_eq!(feed.receive_fault(None), (1, 0), "one receive call");

    assert_eq!(feed.depth().await, (0, 0));
    assert_eq!(
        feed.depth_of(&dlq).await,
        (0, 0),
        "nothing in the dead-letter queue"
    );
    assert_eq!(
        feed.row("SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM gps_positions"),
        ["120", "120", "1", "120"]
    );
}
