//! The harness: a workspace (jobs, lake, state folders) per test, the `sluice` binary run
//! as a user runs it, fresh databases on the servers `scripts/test` started, and readers
//! of what landed in the lake.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sqlx::Connection;

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// The repository's top folder.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("jobs")).expect("jobs dir");
        Self { dir }
    }

    pub fn jobs(&self) -> PathBuf {
        self.dir.path().join("jobs")
    }

    pub fn lake(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn write_job(&self, name: &str, yaml: &str) {
        std::fs::write(self.jobs().join(name), yaml).expect("write job");
    }

    pub fn connections(&self, yaml: &str) {
        self.write_job("connections.yaml", yaml);
    }

    /// The command `sluice <args>` with this workspace's folders, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("SLUICE_JOBS", self.jobs())
            .env("SLUICE_LAKE", self.lake())
            .env("SLUICE_STATE", self.state())
            .env("SLUICE_LOG_FORMAT", "json")
            .current_dir(self.dir.path());
        cmd
    }

    /// Creates the SQLite database `src.db` in the workspace with `sql`; returns the
    /// `url:` a connection to it takes.
    pub async fn sqlite_source(&self, sql: &str) -> String {
        let db = self.dir.path().join("src.db");
        exec(&format!("sqlite://{}", db.display()), sql).await;
        format!("sqlite:{}", db.display())
    }

    /// Starts `sluice <args>` and returns once the first Parquet file of `table` exists,
    /// while the run is still going.
    pub fn start_until_first_file(&self, args: &[&str], table: &str) -> std::process::Child {
        let mut child = self
            .command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn sluice");
        let started = std::time::Instant::now();
        while self.parquet_files(table).is_empty() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "no file was written"
            );
            assert!(
                child.try_wait().expect("wait").is_none(),
                "the run ended before it wrote a file"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child
    }

    pub fn sluice(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().expect("run sluice"))
    }

    /// Runs one job and expects it to commit.
    pub fn run_ok(&self, job: &str) -> serde_json::Value {
        let run = self.sluice(&["run", "--job", job, "--output", "json"]);
        run.assert_code(0);
        serde_json::from_str(run.stdout().trim()).expect("summary json")
    }

    /// Every row of a lake table, read straight from its Parquet files (not through
    /// sluice), ordered by the first column.
    pub fn read_table(&self, table: &str) -> Vec<RecordBatch> {
        read_parquet_dir(&self.lake().join(table))
    }

    pub fn parquet_files(&self, table: &str) -> Vec<PathBuf> {
        parquet_files(&self.lake().join(table))
    }
}

/// Starts `command` with `SLUICE_FAILPOINT=point` and returns once the run is stopped
/// there (`point` may be `name:seconds`, a pause).
pub fn start_at_failpoint(mut command: Command, point: &str) -> std::process::Child {
    use std::io::BufRead;
    let mut child = command
        .env("SLUICE_FAILPOINT", point)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    let stderr = child.stderr.take().expect("stderr");
    let name = point.split(':').next().unwrap_or(point).to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains(&format!("failpoint {name} reached")) {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the run did not reach failpoint {point}"));
    child
}

pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

pub fn read_parquet_dir(dir: &Path) -> Vec<RecordBatch> {
    parquet_files(dir)
        .into_iter()
        .flat_map(|p| {
            let file = std::fs::File::open(&p).expect("open parquet");
            ParquetRecordBatchReaderBuilder::try_new(file)
                .expect("parquet reader")
                .build()
                .expect("parquet reader")
                .map(|b| b.expect("parquet batch"))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn pretty(batches: &[RecordBatch]) -> String {
    datafusion::arrow::util::pretty::pretty_format_batches(batches)
        .expect("pretty")
        .to_string()
}

/// The cells of the first data row of a rendered table.
pub fn first_row(table: &str) -> Vec<String> {
    let line = table
        .lines()
        .filter(|l| l.starts_with('|'))
        .nth(1)
        .unwrap_or_else(|| panic!("no rows in\n{table}"));
    line.trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

/// Runs SQL over the lake the way `sluice query` does, and returns the rendered table.
pub fn lake_sql(ws: &Workspace, sql: &str) -> String {
    let run = ws.sluice(&["query", sql]);
    run.assert_code(0);
    run.stdout()
}

fn server_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with scripts/test, which starts the database servers (or set {var} to a server to use)")
    })
}

/// Replaces the database name at the end of a URL.
fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("url with a database");
    format!("{base}/{db}")
}

/// A new, empty PostgreSQL database for one test; returns its URL.
pub async fn postgres_db(name: &str) -> String {
    let admin = server_url("SLUICE_TEST_POSTGRES_URL");
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .expect("drop db");
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create db");
    with_database(&admin, name)
}

/// A new, empty MySQL/MariaDB database for one test; returns its URL.
pub async fn mysql_db(name: &str) -> String {
    let admin = server_url("SLUICE_TEST_MYSQL_URL");
    let mut conn = sqlx::MySqlConnection::connect(&admin)
        .await
        .expect("connect to the test MariaDB");
    sqlx::raw_sql(&format!(
        "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"
    ))
    .execute(&mut conn)
    .await
    .expect("create db");
    with_database(&admin, name)
}

/// Runs statements on a database (setup and changes between runs).
pub async fn exec(url: &str, sql: &str) {
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::raw_sql(sql).execute(&mut c).await.expect("exec");
    } else if url.starts_with("mysql") {
        let mut c = sqlx::MySqlConnection::connect(url).await.expect("connect");
        sqlx::raw_sql(sql).execute(&mut c).await.expect("exec");
    } else {
        let mut c = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .expect("connect");
        sqlx::raw_sql(sql).execute(&mut c).await.expect("exec");
    }
}
