//! The harness of the AWS tests: the `sluice` binary and the real AWS SDK clients pointed
//! at the moto server `scripts/test` starts (`SLUICE_TEST_AWS_ENDPOINT`; CloudWatch
//! through the CBOR front at `SLUICE_TEST_CLOUDWATCH_ENDPOINT`). Every test has its own
//! tables and bucket, so tests run in parallel against one server.

use std::io::{Read, Write};
use std::process::Command;

use aws_config::{BehaviorVersion, Region};

use crate::common::{Run, Workspace};

const REGION: &str = "us-east-1";

fn endpoint(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with scripts/test, which starts moto (or set {var} to a moto server)")
    })
}

pub struct Cloud {
    pub ws: Workspace,
    pub endpoint: String,
    pub cloudwatch_endpoint: String,
    pub jobs_table: String,
    pub state_table: String,
    pub bucket: String,
    /// The Glue database the runs publish in (made by `sluice init`).
    pub database: String,
}

impl Cloud {
    /// A test's names and endpoints, with nothing created yet (the queue tests keep the
    /// lake and state in the workspace's folders).
    pub fn bare(test: &str) -> Self {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        Self {
            ws: Workspace::new(),
            endpoint: endpoint("SLUICE_TEST_AWS_ENDPOINT"),
            cloudwatch_endpoint: endpoint("SLUICE_TEST_CLOUDWATCH_ENDPOINT"),
            jobs_table: format!("{test}-jobs-{id}"),
            state_table: format!("{test}-state-{id}"),
            bucket: format!("{}-{id}", test.replace('_', "-")),
            database: format!("{}_{id}", test.replace('-', "_")),
        }
    }

    /// `sluice <args>` with the workspace's folders, and AWS (for the queue) at moto.
    pub fn local_command(&self, args: &[&str]) -> Command {
        let mut cmd = self.ws.command(args);
        cmd.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE");
        cmd
    }

    /// Fresh tables (created by `sluice init`) and a fresh bucket for one test.
    pub fn new(test: &str) -> Self {
        let cloud = Self::bare(test);
        cloud.http("PUT", &format!("/{}", cloud.bucket));
        cloud.sluice(&["init"]).assert_code(0);
        cloud
    }

    pub fn lake(&self) -> String {
        format!("s3://{}/lake", self.bucket)
    }

    /// `sluice <args>` with jobs and state in DynamoDB and the lake on S3.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.local_command(args);
        cmd.env("SLUICE_JOBS", format!("dynamodb://{}", self.jobs_table))
            .env("SLUICE_STATE", format!("dynamodb://{}", self.state_table))
            .env("SLUICE_LAKE", self.lake())
            .env("SLUICE_CATALOG", format!("glue://{}", self.database))
            .env("AWS_ENDPOINT_URL_CLOUDWATCH", &self.cloudwatch_endpoint);
        cmd
    }

    pub fn sluice(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().expect("run sluice"))
    }

    /// `sluice jobs push` of the workspace's job folder, expected to succeed.
    pub fn push_jobs(&self) -> Run {
        let run = self.sluice(&["jobs", "push", self.ws.jobs().to_str().expect("path")]);
        run.assert_code(0);
        run
    }

    /// Runs SQL over the S3 lake with `sluice query`.
    pub fn lake_sql(&self, sql: &str) -> String {
        let run = self.sluice(&["query", sql]);
        run.assert_code(0);
        run.stdout()
    }

    /// The keys under `prefix` in the test's bucket (one S3 ListObjectsV2 page).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.objects(prefix).into_iter().map(|o| o.0).collect()
    }

    /// The keys under `prefix` with their sizes and ETags (a multipart upload's ETag ends
    /// in `-<parts>`).
    pub fn objects(&self, prefix: &str) -> Vec<(String, u64, String)> {
        let body = self.http(
            "GET",
            &format!("/{}?list-type=2&max-keys=1000&prefix={prefix}", self.bucket),
        );
        let field = |s: &str, tag: &str| {
            s.split(&format!("<{tag}>"))
                .nth(1)
                .and_then(|r| r.split(&format!("</{tag}>")).next())
                .map(str::to_string)
        };
        body.split("<Contents>")
            .skip(1)
            .filter_map(|c| {
                let key = field(c, "Key")?;
                let size = field(c, "Size")?.parse().ok()?;
                Some((key, size, field(c, "ETag")?))
            })
            .collect()
    }

    /// One plain HTTP request to moto (which checks no signatures); the response body.
    fn http(&self, method: &str, path: &str) -> String {
        let host = self.endpoint.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(host).expect("connect to moto");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        assert!(
            response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
            "{method} {path}: {response}"
        );
        response
    }

    /// The SDK configuration of the test clients: moto, or the CloudWatch front.
    async fn sdk(&self, endpoint: &str) -> aws_config::SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .endpoint_url(endpoint)
            .load()
            .await
    }

    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk(&self.endpoint).await)
    }

    pub async fn cloudwatch(&self) -> aws_sdk_cloudwatch::Client {
        aws_sdk_cloudwatch::Client::new(&self.sdk(&self.cloudwatch_endpoint).await)
    }

    pub async fn glue(&self) -> aws_sdk_glue::Client {
        aws_sdk_glue::Client::new(&self.sdk(&self.endpoint).await)
    }

    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk(&self.endpoint).await)
    }

    pub async fn sns(&self) -> aws_sdk_sns::Client {
        aws_sdk_sns::Client::new(&self.sdk(&self.endpoint).await)
    }

    pub async fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.sdk(&self.endpoint).await)
    }

    /// Runs `sluice run --job <job>` and expects it to commit.
    pub fn run_ok(&self, job: &str) -> serde_json::Value {
        let run = self.sluice(&["run", "--job", job, "--output", "json"]);
        run.assert_code(0);
        serde_json::from_str(run.stdout().trim()).expect("summary json")
    }
}
